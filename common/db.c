/* db: a PostgreSQL connection with lazily prepared statements. */
#include "db.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slog.h"

#define MAX_PREPARED 256
#define MAX_LATER 8
#define MAX_LATER_PARAMS 8

/* A statement queued by db_exec_later. */
typedef struct {
    const db_stmt_t *stmt;
    size_t off[MAX_LATER_PARAMS];   /* SIZE_MAX: SQL NULL */
    int len[MAX_LATER_PARAMS];
    int fmt[MAX_LATER_PARAMS];
} later_t;

struct db {
    PGconn *conn;
    /* statements prepared on this connection (forgotten on reconnect) */
    const db_stmt_t *prepared[MAX_PREPARED];
    size_t n_prepared;
    char sqlstate[6];
    char error[256];
    bool lost;
    bool begin_pending;   /* db_begin_lazy: BEGIN goes with the next statement */
    char cluster[64];     /* db_cluster */
    /* db_exec_later: statements that go with the next one; their
     * parameters live in `later_buf` (offsets, as it may move) */
    later_t later[MAX_LATER];
    size_t n_later;
    char *later_buf;
    size_t later_used, later_cap;
    /* db_after_commit: what runs once the open transaction commits */
    struct after {
        db_after_fn fn;
        void *arg;
        char *text;
    } *after;
    size_t n_after, cap_after;
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

/* db->cluster from the server (pg_control_system is PUBLIC by default; a
 * server that refuses it leaves "", and callers then never share a commit). */
static void s_read_cluster(db_t *db)
{
    PGresult *r = PQexec(db->conn, "SELECT system_identifier::text || '.' || "
                                   "(extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint "
                                   "FROM pg_control_system()");

    db->cluster[0] = '\0';
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(db->cluster, sizeof db->cluster, "%s", PQgetvalue(r, 0, 0));
    else
        slog_debug("db: cannot read the cluster's identity: %s", PQerrorMessage(db->conn));
    PQclear(r);
}

const char *db_cluster(const db_t *db) { return db->cluster; }

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
    s_read_cluster(db);
    return db;
}

void db_destroy(db_t **p)
{
    if (!p || !*p)
        return;
    if ((*p)->conn)
        PQfinish((*p)->conn);
    for (size_t i = 0; i < (*p)->n_after; i++)
        free((*p)->after[i].text);
    free((*p)->after);
    free((*p)->later_buf);
    free(*p);
    *p = NULL;
}

static int s_flush(db_t *db);

PGconn *db_conn(db_t *db)
{
    /* raw use may need the transaction and what is queued: send them now
     * (errors show there) */
    if (s_flush(db) != 0)
        slog_warn("db: a pending statement failed: %s", db->error);
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
    s_read_cluster(db);
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

static void s_drop_later(db_t *db)
{
    db->n_later = 0;
    db->later_used = 0;
    if (db->later_cap > 64 * 1024) {   /* a large event once: do not keep its room */
        free(db->later_buf);
        db->later_buf = NULL;
        db->later_cap = 0;
    }
}

/* Sends one queued statement into the pipeline. */
static int s_send_later(db_t *db, const later_t *l)
{
    const char *params[MAX_LATER_PARAMS];

    for (int i = 0; i < l->stmt->nparams; i++)
        params[i] = l->off[i] == SIZE_MAX ? NULL : db->later_buf + l->off[i];
    return PQsendQueryPrepared(db->conn, l->stmt->name, l->stmt->nparams, params, l->len, l->fmt,
                               0);
}

/* One round trip for what is pending (a lazy BEGIN, the queued statements)
 * and then `stmt` with its parameters, or the command `sql`, or nothing
 * more (both NULL). Returns 0 when every part was sent and succeeded, with
 * the result of `stmt` or `sql` in *out (the caller checks its status and
 * clears it); -1 after recording the first failure. With nothing pending
 * it is a plain call. */
static int s_pipeline(db_t *db, const db_stmt_t *stmt, const char *const *params,
                      const int *lengths, const int *formats, int result_format, const char *sql,
                      PGresult **out)
{
    PGconn *c = db->conn;
    PGresult *last = NULL, *bad = NULL;
    bool begin = db->begin_pending;
    size_t n_later = db->n_later;
    int sent = 0, got = 0, want = (begin ? 1 : 0) + (int)n_later + (stmt || sql ? 1 : 0);
    bool synced = false;

    *out = NULL;
    db->begin_pending = false;
    if (!begin && n_later == 0) {
        if (stmt)
            *out = PQexecPrepared(c, stmt->name, stmt->nparams, params, lengths, formats,
                                  result_format);
        else if (sql)
            *out = PQexec(c, sql);
        return 0;
    }
    if (PQenterPipelineMode(c)) {
        bool ok = !begin || PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
        sent += begin && ok;
        for (size_t i = 0; ok && i < n_later; i++, sent++)
            ok = s_send_later(db, &db->later[i]);
        if (ok && stmt)
            ok = PQsendQueryPrepared(c, stmt->name, stmt->nparams, params, lengths, formats,
                                     result_format);
        else if (ok && sql)
            ok = PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
        sent += ok && (stmt || sql);
        /* synced even after a failed send, so what was sent is read back
         * and the connection leaves pipeline mode clean */
        if ((sent > 0 || ok) && PQpipelineSync(c)) {
            /* each part's result, then NULL; after the last, the sync */
            for (int guard = 0; guard < 4 * want + 8; guard++) {
                PGresult *r = PQgetResult(c);
                if (!r) {
                    if (PQstatus(c) == CONNECTION_BAD)
                        break;
                    continue;
                }
                ExecStatusType st = PQresultStatus(r);
                if (st == PGRES_PIPELINE_SYNC) {
                    PQclear(r);
                    synced = true;
                    break;
                }
                got++;
                if (!bad && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                    bad = r;   /* the first failure; later parts were skipped */
                    continue;
                }
                PQclear(last);
                last = r;
            }
        }
        if (!PQexitPipelineMode(c) && PQstatus(c) == CONNECTION_OK) {
            /* results left unread: the connection cannot be used as it is */
            slog_warn("db: a pipeline did not finish; reconnecting");
            db->n_prepared = 0;
            PQreset(c);
            s_read_cluster(db);
            synced = false;
        }
    }
    s_drop_later(db);
    /* a part failed; or not all was sent, or not all answered (the
     * connection went) */
    if (bad || sent < want || !synced || got != sent) {
        PQclear(last);
        s_fail(db, bad);
        return -1;
    }
    if (stmt || sql)
        *out = last;
    else
        PQclear(last);
    return 0;
}

/* Sends what is pending, if anything. 0 or -1. */
static int s_flush(db_t *db)
{
    PGresult *unused;

    if (!db->begin_pending && db->n_later == 0)
        return 0;
    return s_pipeline(db, NULL, NULL, NULL, NULL, 0, NULL, &unused);
}

/* Bytes parameter i takes in the queue: binary as long as given, text with
 * its NUL, SQL NULL none. */
static size_t s_param_size(const char *const *params, const int *lengths, const int *formats,
                           int i)
{
    if (!params[i])
        return 0;
    return lengths && formats && formats[i] ? (size_t)lengths[i] : strlen(params[i]) + 1;
}

int db_exec_later(db_t *db, const db_stmt_t *stmt, const char *const *params, const int *lengths,
                  const int *formats)
{
    if (stmt->nparams > MAX_LATER_PARAMS || s_prepare(db, stmt) != 0)
        return -1;
    if (db->n_later == MAX_LATER && s_flush(db) != 0)
        return -1;
    size_t need = 1;   /* never an empty buffer: an empty value is not NULL */
    for (int i = 0; i < stmt->nparams; i++)
        need += s_param_size(params, lengths, formats, i);
    if (db->later_used + need > db->later_cap) {
        size_t cap = db->later_cap ? db->later_cap : 1024;
        while (cap < db->later_used + need)
            cap *= 2;
        char *buf = realloc(db->later_buf, cap);
        if (!buf)
            return -1;
        db->later_buf = buf;
        db->later_cap = cap;
    }
    later_t *l = &db->later[db->n_later++];
    l->stmt = stmt;
    for (int i = 0; i < stmt->nparams; i++) {
        bool bin = lengths && formats && formats[i];
        size_t n = s_param_size(params, lengths, formats, i);
        l->off[i] = params[i] ? db->later_used : SIZE_MAX;
        l->len[i] = bin ? lengths[i] : 0;
        l->fmt[i] = bin ? 1 : 0;
        if (n)
            memcpy(db->later_buf + db->later_used, params[i], n);
        db->later_used += n;
    }
    return 0;
}

int db_begin_lazy(db_t *db)
{
    db->begin_pending = true;
    return 0;
}

static PGresult *s_exec(db_t *db, const db_stmt_t *stmt, const char *const *params,
                        const int *lengths, const int *formats, int result_format)
{
    if (s_prepare(db, stmt) != 0)
        return NULL;
    PGresult *res;

    if (s_pipeline(db, stmt, params, lengths, formats, result_format, NULL, &res) != 0)
        return NULL;
    if (!res || !s_ok(res)) {
        s_fail(db, res);
        return NULL;
    }
    return res;
}

PGresult *db_exec_bin(db_t *db, const db_stmt_t *stmt, const char *const *params,
                      const int *lengths, const int *formats)
{
    return s_exec(db, stmt, params, lengths, formats, 0);
}

PGresult *db_exec(db_t *db, const db_stmt_t *stmt, const char *const *params)
{
    return s_exec(db, stmt, params, NULL, NULL, 0);
}

int db_exec_row(db_t *db, const db_stmt_t *stmt, const char *const *params)
{
    PGresult *r = s_exec(db, stmt, params, NULL, NULL, 0);

    if (!r)
        return -1;
    int rc = PQntuples(r) > 0 ? 0 : 1;
    PQclear(r);
    return rc;
}

int db_exec_each(db_t *db, const db_stmt_t *stmt, const char *const *params,
                 void (*fn)(void *arg, const char *value), void *arg)
{
    PGresult *r = s_exec(db, stmt, params, NULL, NULL, 0);

    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        fn(arg, PQgetvalue(r, i, 0));
    PQclear(r);
    return 0;
}

int db_exec_ok(db_t *db, const db_stmt_t *stmt, const char *const *params)
{
    PGresult *r = s_exec(db, stmt, params, NULL, NULL, 0);

    PQclear(r);
    return r ? 0 : -1;
}

PGresult *db_exec_binary(db_t *db, const db_stmt_t *stmt, const char *const *params)
{
    return s_exec(db, stmt, params, NULL, NULL, 1);
}

int64_t db_int8(const PGresult *res, int row, int col)
{
    const unsigned char *p = (const unsigned char *)PQgetvalue(res, row, col);
    uint64_t v = 0;

    if (PQgetlength(res, row, col) != 8)
        return 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

int db_command(db_t *db, const char *sql)
{
    PGresult *res;

    if (s_pipeline(db, NULL, NULL, NULL, NULL, 0, sql, &res) != 0)
        return -1;
    if (!res || !s_ok(res)) {
        s_fail(db, res);
        return -1;
    }
    PQclear(res);
    return 0;
}

int db_begin(db_t *db) { return db_command(db, "BEGIN"); }
void db_autocommit(db_t *db) { db->begin_pending = false; }

/* Takes what db_after_commit registered out of db, then runs it (run) or
 * drops it: a callback may use db again, with a list of its own. */
static void s_after(db_t *db, bool run)
{
    struct after *list = db->after;
    size_t n = db->n_after;

    if (n == 0)
        return;
    db->after = NULL;
    db->n_after = db->cap_after = 0;
    for (size_t i = 0; i < n; i++) {
        if (run)
            list[i].fn(list[i].arg, list[i].text);
        free(list[i].text);
    }
    free(list);
}

int db_after_commit(db_t *db, db_after_fn fn, void *arg, const char *text)
{
    if (!db->begin_pending && db->n_later == 0 && PQtransactionStatus(db->conn) == PQTRANS_IDLE) {
        fn(arg, text);   /* nothing open: what it follows has committed */
        return 0;
    }
    if (db->n_after == db->cap_after) {
        size_t cap = db->cap_after ? db->cap_after * 2 : 8;
        struct after *a = realloc(db->after, cap * sizeof *a);
        if (!a)
            return -1;
        db->after = a;
        db->cap_after = cap;
    }
    char *copy = strdup(text);
    if (!copy)
        return -1;
    db->after[db->n_after++] = (struct after){fn, arg, copy};
    return 0;
}

static int s_commit(db_t *db);
static void s_rollback(db_t *db);

int db_commit(db_t *db)
{
    int rc = s_commit(db);

    /* a COMMIT whose connection went may have committed: what follows it runs */
    s_after(db, rc == 0 || db->lost);
    return rc;
}

int db_commit_unflushed(db_t *db)
{
    static const db_stmt_t nowait = {
        "db_commit_unflushed", "SELECT set_config('synchronous_commit', 'off', true)", 0};
    /* only inside a transaction: queued with none open, it would run as
     * one of its own */
    bool open = db->begin_pending ? db->n_later > 0 : PQtransactionStatus(db->conn) != PQTRANS_IDLE;

    if (open && db_exec_later(db, &nowait, NULL, NULL, NULL) != 0) {
        db_rollback(db);
        return -1;
    }
    int rc = db_commit(db);
    return rc == 0 && open ? 1 : rc;
}

static int s_commit(db_t *db)
{
    if (db->begin_pending && db->n_later == 0) {   /* nothing was run: nothing to commit */
        db->begin_pending = false;
        return 0;
    }
    /* with no transaction open (db_autocommit), what is queued commits by
     * itself */
    bool open = db->begin_pending || PQtransactionStatus(db->conn) != PQTRANS_IDLE;
    PGresult *res;

    if (s_pipeline(db, NULL, NULL, NULL, NULL, 0, open ? "COMMIT" : NULL, &res) != 0) {
        /* a queued statement failed and the COMMIT was skipped: end the
         * aborted transaction, as a COMMIT of one does */
        s_rollback(db);
        return -1;
    }
    if (!open)
        return 0;
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
    s_after(db, false);
    s_rollback(db);
}

/* db_rollback, leaving what db_after_commit registered to the caller. */
static void s_rollback(db_t *db)
{
    db->begin_pending = false;
    s_drop_later(db);   /* never sent: nothing to undo */
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
