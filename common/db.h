/* db: one PostgreSQL connection with lazily prepared statements, transaction
 * helpers and reconnection after the server restarts. One per thread. */
#ifndef SHOP_DB_H
#define SHOP_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct db db_t;

/* A statement of a store: its SQL lives in the store's .c file as a static
 * const db_stmt_t. It is prepared on first use on each connection (and again
 * after a reconnect) under `name`, which must be unique in the process. */
typedef struct {
    const char *name;
    const char *sql;
    int nparams;
} db_stmt_t;

/* Connects with `conninfo` (a libpq URL or key=value string) and sets
 * search_path to `schema` and application_name to `app`. The connection
 * bounds statement and idle-in-transaction time (statement_timeout_ms,
 * 0 = unbounded) so a stuck transaction cannot stall the event relay.
 * Returns NULL if the first connection fails (the error is logged). */
db_t *db_new(const char *conninfo, const char *schema, const char *app, int statement_timeout_ms);

/* The same with more server settings for the session, in the form of
 * libpq's `options` ("-c synchronous_commit=off"); they hold across
 * reconnects. */
db_t *db_new_with(const char *conninfo, const char *schema, const char *app,
                  int statement_timeout_ms, const char *settings);
/* Closes the connection. Accepts NULL; sets *p to NULL. */
void db_destroy(db_t **p);

/* The libpq connection, for what this API does not cover (a pending BEGIN
 * and queued statements are sent first). Owned by db. */
PGconn *db_conn(db_t *db);

/* True if the connection is usable; if not, tries one reconnect (with the
 * same settings, forgetting prepared statements) and returns its outcome. */
bool db_ensure(db_t *db) __attribute__((warn_unused_result));

/* Runs a prepared statement with text parameters (NULL = SQL NULL). Returns
 * the result (caller PQclear()s it) when it succeeded (COMMAND_OK or
 * TUPLES_OK); NULL on failure, after which db_sqlstate()/db_error() say why
 * and the transaction, if any, is aborted. */
PGresult *db_exec(db_t *db, const db_stmt_t *stmt, const char *const *params)
    __attribute__((warn_unused_result));

/* Runs a statement for whether it returns a row (an UPDATE … RETURNING that
 * matched, an INSERT … ON CONFLICT DO NOTHING RETURNING that inserted): 0
 * if it returned one or more, 1 if none, -1 on failure (as db_exec). */
int db_exec_row(db_t *db, const db_stmt_t *stmt, const char *const *params)
    __attribute__((warn_unused_result));

/* Runs a statement and gives the first column of each row, as text, to
 * `fn` (valid during the call only): 0, or -1 on failure. */
int db_exec_each(db_t *db, const db_stmt_t *stmt, const char *const *params,
                 void (*fn)(void *arg, const char *value), void *arg)
    __attribute__((warn_unused_result));

/* Runs a statement whose result does not matter: 0, or -1 on failure. */
int db_exec_ok(db_t *db, const db_stmt_t *stmt, const char *const *params)
    __attribute__((warn_unused_result));

/* Same as db_exec, with binary/text formats and lengths (for bytea parameters). */
PGresult *db_exec_bin(db_t *db, const db_stmt_t *stmt, const char *const *params,
                      const int *lengths, const int *formats) __attribute__((warn_unused_result));

/* Same as db_exec, the result in binary: an int8 column is 8 bytes, big
 * endian (db_int8), a text one its bytes, a bytea one its raw bytes (half
 * the hex text's size, nothing to decode); libpq still ends every value
 * with a zero byte, so a text column reads as a string. */
PGresult *db_exec_binary(db_t *db, const db_stmt_t *stmt, const char *const *params)
    __attribute__((warn_unused_result));
/* An int8 column of a binary result (0 if it is not 8 bytes). */
int64_t db_int8(const PGresult *res, int row, int col);

/* Queues a statement whose result matters only as success or failure (an
 * outbox row, a cursor): it is sent in one pipeline with whatever this
 * connection runs next (a statement, a command, the COMMIT), which saves a
 * round trip. Parameters are copied (at most 8). A failure shows there: that
 * call fails with this statement's error, and the transaction is aborted.
 * A COMMIT that fails this way leaves no transaction open. With no
 * transaction open, the queued statements and the next one form one
 * implicit transaction, unless the queue fills (8 statements) or db_conn
 * sends it first: then what was queued commits by itself. db_rollback drops
 * what is queued. 0, or -1 if it could not be queued (nothing is). */
int db_exec_later(db_t *db, const db_stmt_t *stmt, const char *const *params, const int *lengths,
                  const int *formats) __attribute__((warn_unused_result));

/* Runs a fixed SQL command with no parameters (BEGIN, COMMIT, SET …).
 * Returns 0 or -1. */
int db_command(db_t *db, const char *sql) __attribute__((warn_unused_result));

int db_begin(db_t *db) __attribute__((warn_unused_result));
/* Like db_begin, but BEGIN is sent in one pipeline with the next statement
 * run through db_exec (saving a round trip); db_command and db_conn send it
 * first if it is still pending, db_commit/db_rollback of a transaction
 * that ran nothing do nothing. Always returns 0. */
int db_begin_lazy(db_t *db);
/* Drops a BEGIN db_begin_lazy left pending: each statement from here on is
 * a transaction of its own (for work that only reads and needs no single
 * snapshot: it saves the BEGIN and the COMMIT's round trip). */
void db_autocommit(db_t *db);
/* COMMIT; with no transaction open (nothing ran, or db_autocommit) it does
 * nothing and returns 0. */
int db_commit(db_t *db) __attribute__((warn_unused_result));
/* Like db_commit, but the COMMIT does not wait for the WAL flush
 * (synchronous_commit off for this transaction only, set in the same
 * pipeline): for a transaction that a later synchronous commit in the same
 * cluster makes durable (see db_cluster). Until then a crash of PostgreSQL
 * may lose it. 1 when it committed a transaction so, 0 when none was open
 * (as db_commit), -1 on failure. */
int db_commit_unflushed(db_t *db) __attribute__((warn_unused_result));
/* The cluster this connection reaches: "<system identifier>.<postmaster
 * start time, µs>", read on connecting (again after a reconnect); two
 * connections with the same value write one WAL. "" if it could not be
 * read. */
const char *db_cluster(const db_t *db);
/* Rolls back if a transaction is open; never fails loudly. */
void db_rollback(db_t *db);

/* Runs fn(arg, text) once the open transaction commits, on the thread that
 * commits it, after the COMMIT has returned; also when the connection went
 * during the COMMIT (it may have committed); dropped if the transaction
 * rolls back or its COMMIT fails otherwise. With no transaction open it
 * runs at once. The callback may use the connection. For
 * what must follow the commit (a cache that may forget an entry only once
 * the new value is there to read). `text` is copied. 0, or -1 out of memory
 * (nothing registered). */
typedef void (*db_after_fn)(void *arg, const char *text);
int db_after_commit(db_t *db, db_after_fn fn, void *arg, const char *text)
    __attribute__((warn_unused_result));

/* The n strings as a PostgreSQL text[] literal ({"a","b"}, quoted and
 * escaped), for a parameter such as `code = ANY ($1::text[])`, which lets
 * the planner use the index. malloc'd; NULL on OOM. */
char *db_text_array(const char *const *v, size_t n);

/* SQLSTATE of the last failure ("23505" …), or "" if none / connection lost. */
const char *db_sqlstate(const db_t *db);
/* Human message of the last failure. */
const char *db_error(const db_t *db);
/* True if the last failure was the connection itself (server gone). */
bool db_lost(const db_t *db);

#endif
