/* db: a PostgreSQL connection with lazily prepared statements. */
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slog.h"

#define MAX_PREPARED 256

struct db {
    PGconn *conn;
    /* statements prepared on this connection (forgotten on reconnect) */
    const db_stmt_t *prepared[MAX_PREPARED];
    size_t n_prepared;
    char sqlstate[6];
    char error[256];
    bool lost;
    bool begin_pending;   /* db_begin_lazy: BEGIN goes with the next statement */
};

/* Schema names are plain identifiers: [a-z_][a-z0-9_]*. */
static bool s_valid_schema(const char *s)
{
    if (!*s || !((*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return strlen(s) < 64;
}

db_t *db_new(const char *conninfo, const char *schema, const char *app, int statement_timeout_ms)
{
    return db_new_with(conninfo, schema, app, statement_timeout_ms, NULL);
}

db_t *db_new_with(const char *conninfo, const char *schema, const char *app,
                  int statement_timeout_ms, const char *settings)
{
    char options[384];
    int idle = statement_timeout_ms * 2 > 10000 ? statement_timeout_ms * 2 : 10000;
    db_t *db = NULL;

    if (!s_valid_schema(schema)) {
        slog_error("db: schema \"%s\" is not a plain identifier", schema);
        return NULL;
    }
    db = calloc(1, sizeof *db);
    if (!db)
        return NULL;
    snprintf(options, sizeof options,
             "-c search_path=%s -c statement_timeout=%d -c idle_in_transaction_session_timeout=%d%s%s",
             schema, statement_timeout_ms, statement_timeout_ms > 0 ? idle : 0, settings ? " " : "",
             settings ? settings : "");
    const char *keys[] = {"dbname", "options", "application_name", NULL};
    const char *vals[] = {conninfo, options, app, NULL};
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
        slog_error("db: cannot connect: %s",
                   db->conn ? PQerrorMessage(db->conn) : "out of memory");
        db_destroy(&db);
        return NULL;
    }
    return db;
}

void db_destroy(db_t **p)
{
    if (!p || !*p)
        return;
    if ((*p)->conn)
        PQfinish((*p)->conn);
    free(*p);
    *p = NULL;
}

static int s_flush_begin(db_t *db)
{
    if (!db->begin_pending)
        return 0;
    db->begin_pending = false;
    return db_command(db, "BEGIN");
}

PGconn *db_conn(db_t *db)
{
    /* raw use may need the transaction: open it now (errors show there) */
    if (s_flush_begin(db) != 0)
        slog_warn("db: BEGIN failed: %s", db->error);
    return db->conn;
}

bool db_ensure(db_t *db)
{
    if (PQstatus(db->conn) == CONNECTION_OK)
        return true;
    db->n_prepared = 0;
    PQreset(db->conn);
    if (PQstatus(db->conn) != CONNECTION_OK) {
        db->lost = true;
        db->sqlstate[0] = '\0';
        snprintf(db->error, sizeof db->error, "%s", PQerrorMessage(db->conn));
        return false;
    }
    slog_info("db: reconnected");
    return true;
}

/* Records the failure of `res` (may be NULL) and clears it. */
static void s_fail(db_t *db, PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : NULL;

    snprintf(db->sqlstate, sizeof db->sqlstate, "%s", state ? state : "");
    snprintf(db->error, sizeof db->error, "%s",
             msg && *msg ? msg : PQerrorMessage(db->conn));
    size_t n = strlen(db->error);
    while (n > 0 && db->error[n - 1] == '\n')
        db->error[--n] = '\0';
    db->lost = PQstatus(db->conn) == CONNECTION_BAD;
    if (db->lost)
        db->n_prepared = 0;
    if (res)
        PQclear(res);
}

static bool s_ok(PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static int s_prepare(db_t *db, const db_stmt_t *stmt)
{
    for (size_t i = 0; i < db->n_prepared; i++)
        if (db->prepared[i] == stmt)
            return 0;
    PGresult *res = PQprepare(db->conn, stmt->name, stmt->sql, stmt->nparams, NULL);
    if (!res || !s_ok(res)) {
        s_fail(db, res);
        if (!db->lost)
            slog_error("db: cannot prepare %s: %s", stmt->name, db->error);
        return -1;
    }
    PQclear(res);
    if (db->n_prepared < MAX_PREPARED)
        db->prepared[db->n_prepared++] = stmt;
    return 0;
}

/* BEGIN and the statement in one pipeline: one round trip instead of two.
 * Returns the statement's result, or NULL after recording the failure. */
static PGresult *s_exec_with_begin(db_t *db, const db_stmt_t *stmt, const char *const *params,
                                   const int *lengths, const int *formats)
{
    PGconn *c = db->conn;
    PGresult *got[2] = {NULL, NULL};
    int n = 0;

    db->begin_pending = false;
    if (!PQenterPipelineMode(c)) {
        if (db_command(db, "BEGIN") != 0)
            return NULL;
        return PQexecPrepared(c, stmt->name, stmt->nparams, params, lengths, formats, 0);
    }
    if (PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) &&
        PQsendQueryPrepared(c, stmt->name, stmt->nparams, params, lengths, formats, 0) &&
        PQpipelineSync(c)) {
        /* BEGIN's result, NULL, the statement's result, NULL, the sync */
        for (int guard = 0; guard < 16; guard++) {
            PGresult *r = PQgetResult(c);
            if (!r) {
                if (PQstatus(c) == CONNECTION_BAD)
                    break;
                continue;
            }
            if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
                PQclear(r);
                break;
            }
            if (n < 2)
                got[n++] = r;
            else
                PQclear(r);
        }
    }
    PQexitPipelineMode(c);
    if (!got[0] || PQresultStatus(got[0]) != PGRES_COMMAND_OK) {
        PQclear(got[1]);
        s_fail(db, got[0]);
        return NULL;
    }
    PQclear(got[0]);
    return got[1];
}

int db_begin_lazy(db_t *db)
{
    db->begin_pending = true;
    return 0;
}

PGresult *db_exec_bin(db_t *db, const db_stmt_t *stmt, const char *const *params,
                      const int *lengths, const int *formats)
{
    if (s_prepare(db, stmt) != 0)
        return NULL;
    PGresult *res = db->begin_pending
                        ? s_exec_with_begin(db, stmt, params, lengths, formats)
                        : PQexecPrepared(db->conn, stmt->name, stmt->nparams, params, lengths,
                                         formats, 0);
    if (!res || !s_ok(res)) {
        s_fail(db, res);
        return NULL;
    }
    return res;
}

PGresult *db_exec(db_t *db, const db_stmt_t *stmt, const char *const *params)
{
    return db_exec_bin(db, stmt, params, NULL, NULL);
}

int db_command(db_t *db, const char *sql)
{
    if (s_flush_begin(db) != 0)
        return -1;
    PGresult *res = PQexec(db->conn, sql);

    if (!res || !s_ok(res)) {
        s_fail(db, res);
        return -1;
    }
    PQclear(res);
    return 0;
}

int db_begin(db_t *db) { return db_command(db, "BEGIN"); }
void db_autocommit(db_t *db) { db->begin_pending = false; }

int db_commit(db_t *db)
{
    if (db->begin_pending) {   /* nothing was run: nothing to commit */
        db->begin_pending = false;
        return 0;
    }
    if (PQtransactionStatus(db->conn) == PQTRANS_IDLE)   /* db_autocommit */
        return 0;
    PGresult *res = PQexec(db->conn, "COMMIT");

    if (!res || !s_ok(res)) {
        s_fail(db, res);
        return -1;
    }
    /* COMMIT of a transaction that failed earlier answers "ROLLBACK". */
    if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
        PQclear(res);
        snprintf(db->sqlstate, sizeof db->sqlstate, "25P02");
        snprintf(db->error, sizeof db->error, "transaction was aborted and rolled back");
        db->lost = false;
        return -1;
    }
    PQclear(res);
    return 0;
}

void db_rollback(db_t *db)
{
    db->begin_pending = false;
    if (PQtransactionStatus(db->conn) == PQTRANS_IDLE || PQstatus(db->conn) != CONNECTION_OK)
        return;
    PGresult *res = PQexec(db->conn, "ROLLBACK");
    if (res)
        PQclear(res);
}

const char *db_sqlstate(const db_t *db) { return db->sqlstate; }
const char *db_error(const db_t *db) { return db->error; }
bool db_lost(const db_t *db) { return db->lost; }

char *db_text_array(const char *const *v, size_t n)
{
    size_t cap = 3, len = 0;
    char *out;

    for (size_t i = 0; i < n; i++)
        cap += 3 + 2 * strlen(v[i]);
    if (!(out = malloc(cap)))
        return NULL;
    out[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            out[len++] = ',';
        out[len++] = '"';
        for (const char *c = v[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                out[len++] = '\\';
            out[len++] = *c;
        }
        out[len++] = '"';
    }
    out[len++] = '}';
    out[len] = '\0';
    return out;
}
