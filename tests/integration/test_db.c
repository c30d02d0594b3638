/* test_db: migrations applied once and atomically, prepared statements,
 * SQLSTATEs, and reconnecting after PostgreSQL restarts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "db.h"
#include "harness.h"
#include "migrate.h"
#include "slog.h"

static const migrate_file_t s_good[] = {
    {1, "001_items.sql", "CREATE TABLE item (code text PRIMARY KEY, n int NOT NULL);"},
    {2, "002_more.sql", "ALTER TABLE item ADD COLUMN note text; CREATE INDEX ON item (n);"},
};
static const migrate_file_t s_bad[] = {
    {1, "001_items.sql", "CREATE TABLE item (code text PRIMARY KEY, n int NOT NULL);"},
    {2, "002_more.sql", "ALTER TABLE item ADD COLUMN note text; CREATE INDEX ON item (n);"},
    {3, "003_fine.sql", "CREATE TABLE extra (id int);"},
    {4, "004_broken.sql", "CREATE TABLE nonsense (id int REFERENCES nowhere (id));"},
};
static const migrate_file_t s_dupes[] = {
    {5, "005_a.sql", "SELECT 1;"},
    {5, "005_b.sql", "SELECT 1;"},
};

static const db_stmt_t s_insert = {"t_insert", "INSERT INTO item (code, n) VALUES ($1, $2)", 2};
static const db_stmt_t s_count = {"t_count", "SELECT count(*) FROM item", 0};

/* db_after_commit's callback: what ran, and what the database showed then. */
typedef struct {
    db_t *db;
    char seen[64];
    long rows;
} after_t;

static long s_scalar(db_t *db, const char *sql);

static void s_after(void *arg, const char *text)
{
    after_t *a = arg;
    size_t n = strlen(a->seen);

    snprintf(a->seen + n, sizeof a->seen - n, "%s%s", n ? "," : "", text);
    a->rows = s_scalar(a->db, "SELECT count(*) FROM catalog.item WHERE code LIKE 'AC-%'");
}

/* The same, with the connection gone: what it saw is not asked. */
static void s_after_lost(void *arg, const char *text)
{
    after_t *a = arg;

    snprintf(a->seen, sizeof a->seen, "%s", text);
}

static long s_scalar(db_t *db, const char *sql)
{
    PGresult *r = PQexec(db_conn(db), sql);
    long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

int main(void)
{
    const char *svcs[] = {"catalog", NULL};
    char *conninfo = harness_create_db("t_db", svcs);
    db_t *db = NULL;

    slog_init("test_db", SLOG_ERROR);
    CHECK(conninfo != NULL);
    if (!conninfo)
        return check_done();
    CHECK(db_new(conninfo, "Bad-Schema", "t", 1000) == NULL);
    db = db_new(conninfo, "catalog", "test_db", 1000);
    CHECK(db != NULL);
    if (!db)
        return check_done();

    CHECK_INT(migrate_apply(db, "catalog", s_good, 2), 0);
    CHECK_INT(migrate_apply(db, "catalog", s_good, 2), 0);   /* nothing new */
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.schema_migrations WHERE component = 'service'"), 2);
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.schema_migrations WHERE component = 'runtime'"), (long)runtime_migrations_count);
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.outbox"), 0);

    /* A failing file undoes the whole run: 003 applied before it leaves no trace. */
    CHECK_INT(migrate_apply(db, "catalog", s_bad, 4), -1);
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'catalog' AND tablename = 'extra'"), 0);
    CHECK_INT(s_scalar(db, "SELECT max(version) FROM catalog.schema_migrations WHERE component = 'service'"), 2);
    CHECK_INT(migrate_apply(db, "catalog", s_dupes, 2), -1);

    /* Prepared statements, results, SQLSTATEs. */
    const char *p1[] = {"A-1", "3"};
    PGresult *r = db_exec(db, &s_insert, p1);
    CHECK(r != NULL);
    PQclear(r);
    r = db_exec(db, &s_insert, p1);
    CHECK(r == NULL);
    CHECK_STR(db_sqlstate(db), "23505");
    CHECK(!db_lost(db));
    const char *p2[] = {"A-2", "not a number"};
    CHECK(db_exec(db, &s_insert, p2) == NULL);
    CHECK_STR(db_sqlstate(db), "22P02");

    /* COMMIT of a failed transaction is a failure, not a silent rollback. */
    CHECK_INT(db_begin(db), 0);
    CHECK(db_exec(db, &s_insert, p1) == NULL);
    CHECK_INT(db_commit(db), -1);
    CHECK_INT(db_begin(db), 0);
    const char *p3[] = {"A-3", "1"};
    r = db_exec(db, &s_insert, p3);
    PQclear(r);
    db_rollback(db);
    r = db_exec(db, &s_count, NULL);
    CHECK(r && strcmp(PQgetvalue(r, 0, 0), "1") == 0);
    PQclear(r);

    /* A lazy BEGIN travels with the first statement: rolled back, the
     * insert is gone (so BEGIN was sent); committed, it stays; a failing
     * statement reports its own SQLSTATE; an empty transaction commits. */
    CHECK_INT(db_begin_lazy(db), 0);
    CHECK_INT(PQtransactionStatus(db_conn(db)) == PQTRANS_INTRANS, 1);   /* raw use opens it */
    db_rollback(db);
    CHECK_INT(db_begin_lazy(db), 0);
    const char *p4[] = {"A-4", "1"};
    r = db_exec(db, &s_insert, p4);
    CHECK(r != NULL);
    PQclear(r);
    
    db_rollback(db);
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.item WHERE code = 'A-4'"), 0);
    CHECK_INT(db_begin_lazy(db), 0);
    r = db_exec(db, &s_insert, p4);
    PQclear(r);
    CHECK_INT(db_commit(db), 0);
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.item WHERE code = 'A-4'"), 1);
    CHECK_INT(db_begin_lazy(db), 0);
    CHECK(db_exec(db, &s_insert, p4) == NULL);
    CHECK_STR(db_sqlstate(db), "23505");
    CHECK_INT(db_commit(db), -1);
    CHECK_INT(db_begin_lazy(db), 0);
    CHECK_INT(db_commit(db), 0);
    CHECK_INT(PQtransactionStatus(db_conn(db)) == PQTRANS_IDLE, 1);
    r = db_exec(db, &s_count, NULL);
    CHECK(r && strcmp(PQgetvalue(r, 0, 0), "2") == 0);
    PQclear(r);

    /* Queued statements go with the next one: committed together; rolled
     * back unsent; a queued failure fails the COMMIT it went with (with its
     * own SQLSTATE) and nothing of that transaction stays; with no
     * transaction they commit with the next statement; a binary empty value
     * is not NULL. */
    const char *q1[] = {"Q-1", "1"}, *q2[] = {"Q-2", "2"};
    CHECK_INT(db_begin_lazy(db), 0);
    CHECK_INT(db_exec_later(db, &s_insert, q1, NULL, NULL), 0);
    CHECK_INT(s_scalar(db, "SELECT 0") == 0 && PQtransactionStatus(db_conn(db)) == PQTRANS_INTRANS, 1);
    db_rollback(db);
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.item WHERE code LIKE 'Q-%'"), 0);
    CHECK_INT(db_begin_lazy(db), 0);
    CHECK_INT(db_exec_later(db, &s_insert, q1, NULL, NULL), 0);
    db_rollback(db);   /* never sent */
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.item WHERE code LIKE 'Q-%'"), 0);
    CHECK_INT(db_begin_lazy(db), 0);
    CHECK_INT(db_exec_later(db, &s_insert, q1, NULL, NULL), 0);
    CHECK_INT(db_exec_later(db, &s_insert, q2, NULL, NULL), 0);
    CHECK_INT(db_commit(db), 0);
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.item WHERE code LIKE 'Q-%'"), 2);
    const char *q3[] = {"Q-3", "3"};
    CHECK_INT(db_begin_lazy(db), 0);
    CHECK_INT(db_exec_later(db, &s_insert, q3, NULL, NULL), 0);
    CHECK_INT(db_exec_later(db, &s_insert, q1, NULL, NULL), 0);   /* a duplicate */
    CHECK_INT(db_commit(db), -1);
    CHECK_STR(db_sqlstate(db), "23505");
    CHECK_INT(PQtransactionStatus(db_conn(db)) == PQTRANS_IDLE, 1);   /* the failed COMMIT ended it */
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.item WHERE code = 'Q-3'"), 0);
    CHECK_INT(db_begin_lazy(db), 0);   /* a queued failure fails the statement it goes with */
    CHECK_INT(db_exec_later(db, &s_insert, q1, NULL, NULL), 0);
    CHECK(db_exec(db, &s_count, NULL) == NULL);
    CHECK_STR(db_sqlstate(db), "23505");
    db_rollback(db);
    CHECK_INT(db_exec_later(db, &s_insert, q3, NULL, NULL), 0);   /* autocommit */
    r = db_exec(db, &s_count, NULL);
    CHECK(r != NULL);
    PQclear(r);
    CHECK_INT(PQtransactionStatus(db_conn(db)) == PQTRANS_IDLE, 1);
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.item WHERE code = 'Q-3'"), 1);
    static const db_stmt_t s_note = {"t_note", "UPDATE item SET note = $2 WHERE code = $1", 2};
    const char *n1[] = {"Q-3", ""};
    int lens[] = {0, 0}, fmts[] = {0, 1};
    CHECK_INT(db_exec_later(db, &s_note, n1, lens, fmts), 0);
    CHECK_INT(db_commit(db), 0);
    CHECK_INT(s_scalar(db, "SELECT count(*) FROM catalog.item WHERE code = 'Q-3' AND note = ''"), 1);
    CHECK_INT(s_scalar(db, "WITH d AS (DELETE FROM catalog.item WHERE code LIKE 'Q-%' RETURNING 1) SELECT count(*) FROM d"), 3);

    /* What follows a commit runs after it, in order, and not after a rollback. */
    after_t after = {db, "", -1};
    const char *a1[] = {"AC-1", "1"}, *a2[] = {"AC-2", "2"};
    CHECK_INT(db_begin_lazy(db), 0);
    CHECK_INT(db_exec_later(db, &s_insert, a1, NULL, NULL), 0);
    CHECK_INT(db_after_commit(db, s_after, &after, "one"), 0);
    CHECK_INT(db_after_commit(db, s_after, &after, "two"), 0);
    CHECK_STR(after.seen, "");
    CHECK_INT(db_commit(db), 0);
    CHECK_STR(after.seen, "one,two");
    CHECK_INT(after.rows, 1);   /* the insert had committed */
    after.seen[0] = '\0';
    CHECK_INT(db_begin(db), 0);
    r = db_exec(db, &s_insert, a2);
    PQclear(r);
    CHECK_INT(db_after_commit(db, s_after, &after, "gone"), 0);
    db_rollback(db);
    CHECK_INT(db_commit(db), 0);   /* nothing open */
    CHECK_STR(after.seen, "");
    CHECK_INT(db_begin(db), 0);
    CHECK(db_exec(db, &s_insert, a1) == NULL);   /* a duplicate: the COMMIT rolls back */
    CHECK_INT(db_after_commit(db, s_after, &after, "failed"), 0);
    CHECK_INT(db_commit(db), -1);
    CHECK_STR(after.seen, "");
    CHECK_INT(db_after_commit(db, s_after, &after, "now"), 0);   /* none open: at once */
    CHECK_STR(after.seen, "now");
    CHECK_INT(s_scalar(db, "WITH d AS (DELETE FROM catalog.item WHERE code LIKE 'AC-%' RETURNING 1) SELECT count(*) FROM d"), 1);

    /* A consumer's cursor moves only from where it was stored. */
    static const db_stmt_t s_move = {"t_move", "SELECT consumer_cursor_move($1, $2, $3)", 3};
    const char *m1[] = {"t-stream", "0", "5"}, *m2[] = {"t-stream", "0", "6"};
    CHECK_INT(s_scalar(db, "WITH i AS (INSERT INTO catalog.consumer_cursor (stream) "
                           "VALUES ('t-stream') RETURNING 1) SELECT count(*) FROM i"), 1);
    r = db_exec(db, &s_move, m1);
    CHECK(r != NULL);
    PQclear(r);
    CHECK(db_exec(db, &s_move, m2) == NULL);
    CHECK_STR(db_sqlstate(db), "SH001");
    CHECK_INT(s_scalar(db, "SELECT position FROM catalog.consumer_cursor WHERE stream = 't-stream'"), 5);

    /* PostgreSQL restarts: the next call fails as lost, db_ensure reconnects
     * and the statement is prepared again. A COMMIT that went with the
     * connection may have committed: what follows a commit runs. */
    after.seen[0] = '\0';
    CHECK_INT(db_begin(db), 0);
    CHECK_INT(db_exec_later(db, &s_insert, a1, NULL, NULL), 0);
    CHECK_INT(db_after_commit(db, s_after_lost, &after, "unknown"), 0);
    CHECK_INT(harness_pg_restart(), 0);
    CHECK_INT(db_commit(db), -1);
    CHECK(db_lost(db));
    CHECK_STR(after.seen, "unknown");
    r = db_exec(db, &s_count, NULL);
    if (r) {
        PQclear(r);   /* libpq may notice only on the next round trip */
        r = db_exec(db, &s_count, NULL);
    }
    CHECK(r == NULL);
    CHECK(db_lost(db));
    CHECK(db_ensure(db));
    r = db_exec(db, &s_count, NULL);
    CHECK(r && strcmp(PQgetvalue(r, 0, 0), "2") == 0);
    PQclear(r);
    r = PQexec(db_conn(db), "SHOW search_path");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "catalog") == 0);
    PQclear(r);

    db_destroy(&db);
    CHECK(db == NULL);
    free(conninfo);
    return check_done();
}
