/* test_consumer_kill: a consumer SIGKILLed mid-stream still applies every event exactly once;
 * a consumer catching up applies a batch in one transaction, or one per event with commit_each. */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "db.h"
#include "harness.h"
#include "outbox.h"
#include "slog.h"
#include "util.h"

#define PRODUCERS 4
#define EVENTS_PER_PRODUCER 1250
#define PRODUCE_MS 3000
#define EVENT_TYPE_A "shop.catalog.v1.TestProbeA"
#define EVENT_TYPE_B "shop.catalog.v1.TestProbeB"
/* the sink needs nothing for it: only its cursor moves, stored lazily */
#define EVENT_TYPE_IGNORED "shop.catalog.v1.TestProbeIgnored"

static char *s_catalog_conninfo;
static atomic_int s_failures;

/* ~EVENTS_PER_PRODUCER events in transactions of 1-3, paced over PRODUCE_MS. */
static void *s_producer(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned seed = (unsigned)id * 104729u + 3u;
    db_t *db = db_new(s_catalog_conninfo, "sink", "test-producer", 0);
    int64_t start = util_mono_ms();
    int done = 0;

    if (!db) {
        atomic_fetch_add(&s_failures, 1);
        return NULL;
    }
    while (done < EVENTS_PER_PRODUCER) {
        int n = 1 + (int)(rand_r(&seed) % 3);
        if (db_begin(db) == -1) {
            atomic_fetch_add(&s_failures, 1);
            break;
        }
        for (int j = 0; j < n; j++) {
            char payload[48];
            snprintf(payload, sizeof payload, "k%d-%d", id, done + j);
            int k = done + j;
            if (outbox_add(db, k % 3 == 2 ? EVENT_TYPE_IGNORED : k % 3 ? EVENT_TYPE_A : EVENT_TYPE_B,
                           (const uint8_t *)payload, strlen(payload), NULL, NULL, NULL) == -1)
                atomic_fetch_add(&s_failures, 1);
        }
        if (db_commit(db) == -1)
            atomic_fetch_add(&s_failures, 1);
        done += n;
        /* Pace so the stream lasts about PRODUCE_MS. */
        int64_t due = start + (int64_t)PRODUCE_MS * done / EVENTS_PER_PRODUCER;
        int64_t now = util_mono_ms();
        if (due > now)
            util_sleep_ms((int)(due - now));
    }
    db_destroy(&db);
    return NULL;
}

/* One bigint from a query on `conn`; -1 on failure. */
static long long s_scalar(PGconn *conn, const char *sql)
{
    long long v = -1;
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        v = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static harness_proc_t *s_spawn_sink(const char *sink_url, const char *rpc, const char *pub,
                                    int admin_port, bool commit_each)
{
    char url[600], rpc_env[80], pub_env[80], admin_env[48], rbind[64], pbind[64];
    int rp = harness_free_port(), pp = harness_free_port();
    snprintf(url, sizeof url, "SHOP_DATABASE_URL=%s", sink_url);
    snprintf(rpc_env, sizeof rpc_env, "SHOP_SINK_RPC=%s", rpc);
    snprintf(pub_env, sizeof pub_env, "SHOP_SINK_PUB=%s", pub);
    snprintf(admin_env, sizeof admin_env, "SHOP_ADMIN_PORT=%d", admin_port);
    snprintf(rbind, sizeof rbind, "SHOP_RPC_BIND=tcp://127.0.0.1:%d", rp);
    snprintf(pbind, sizeof pbind, "SHOP_PUB_BIND=tcp://127.0.0.1:%d", pp);
    const char *env[] = {url, rpc_env, pub_env, admin_env, rbind, pbind,
                         "SHOP_ADMIN_ADDR=127.0.0.1", "SINK_STREAM=sink",
                         commit_each ? "SINK_COMMIT_EACH=1" : "SINK_COMMIT_EACH=0", NULL};
    return harness_spawn("shop-sink", env);
}

/* Waits until the sink's cursor reaches `head` (bounded); returns the cursor. */
static long long s_wait_cursor(PGconn *sink, long long head, int timeout_ms)
{
    int64_t deadline = util_mono_ms() + timeout_ms;
    long long cur = -1;
    while (util_mono_ms() < deadline) {
        cur = s_scalar(sink, "SELECT position FROM sink.consumer_cursor WHERE stream = 'sink'");
        if (cur == head)
            break;
        util_sleep_ms(100);
    }
    return cur;
}

/* The sink's applied rows are exactly the events of 1..head it needs, once
 * each, with the outbox's types; the ignored ones left no row. */
static void s_check_applied(PGconn *sink, PGconn *catalog, long long head)
{
    long long wanted = s_scalar(catalog, "SELECT count(*) FROM sink.outbox WHERE position IS NOT "
                                         "NULL AND type <> '" EVENT_TYPE_IGNORED "'");
    CHECK(wanted > 0 && wanted < head);
    CHECK_INT(s_scalar(sink, "SELECT count(*) FROM sink.applied"), wanted);
    CHECK_INT(s_scalar(sink, "SELECT count(DISTINCT sequence) FROM sink.applied"), wanted);
    CHECK_INT(s_scalar(sink, "SELECT count(*) FROM sink.applied WHERE type = '" EVENT_TYPE_IGNORED "'"), 0);

    PGresult *a = PQexec(sink, "SELECT sequence, type FROM sink.applied ORDER BY sequence");
    PGresult *o = PQexec(catalog, "SELECT position, type FROM sink.outbox WHERE position IS NOT "
                                  "NULL AND type <> '" EVENT_TYPE_IGNORED "' ORDER BY position");
    bool same = PQresultStatus(a) == PGRES_TUPLES_OK && PQresultStatus(o) == PGRES_TUPLES_OK &&
                PQntuples(a) == PQntuples(o);
    for (int i = 0; same && i < PQntuples(a); i++)
        if (strcmp(PQgetvalue(a, i, 0), PQgetvalue(o, i, 0)) != 0 ||
            strcmp(PQgetvalue(a, i, 1), PQgetvalue(o, i, 1)) != 0)
            same = false;
    CHECK(same);
    PQclear(a);
    PQclear(o);
}

int main(void)
{
    /* The producer is a sink service too, in its own database: the
     * consumer applies its stream "sink". */
    const char *services[] = {"sink", NULL};
    char rpc[64], pub[64], url[600], rpc_env[80], pub_env[80], admin_env[48];
    int cat_admin = harness_free_port(), sink_admin = harness_free_port();
    harness_proc_t *catalog = NULL, *sink = NULL;
    pthread_t threads[PRODUCERS];
    char *sink_url = NULL, *late_url = NULL;
    PGconn *sink_conn = NULL, *cat_conn = NULL, *late_conn = NULL;

    slog_init("test_consumer_kill", SLOG_WARN);
    s_catalog_conninfo = harness_create_db("test_consumer_kill_producer", services);
    sink_url = harness_create_db("test_consumer_kill", services);
    CHECK(s_catalog_conninfo != NULL && sink_url != NULL);
    if (!s_catalog_conninfo || !sink_url)
        return check_done();
    snprintf(rpc, sizeof rpc, "tcp://127.0.0.1:%d", harness_free_port());
    snprintf(pub, sizeof pub, "tcp://127.0.0.1:%d", harness_free_port());
    snprintf(url, sizeof url, "SHOP_DATABASE_URL=%s", s_catalog_conninfo);
    snprintf(rpc_env, sizeof rpc_env, "SHOP_RPC_BIND=%s", rpc);
    snprintf(pub_env, sizeof pub_env, "SHOP_PUB_BIND=%s", pub);
    snprintf(admin_env, sizeof admin_env, "SHOP_ADMIN_PORT=%d", cat_admin);
    const char *env[] = {url, rpc_env, pub_env, admin_env, "SHOP_ADMIN_ADDR=127.0.0.1",
                         "SHOP_HEARTBEAT_MS=200", "SHOP_CATALOG_RPC=tcp://127.0.0.1:9",
                         "SHOP_CATALOG_PUB=tcp://127.0.0.1:9", NULL};
    catalog = harness_spawn("shop-sink", env);
    CHECK(catalog != NULL);
    CHECK_INT(harness_wait_ready(cat_admin, 10000), 0);
    sink = s_spawn_sink(sink_url, rpc, pub, sink_admin, false);
    CHECK(sink != NULL);
    CHECK_INT(harness_wait_ready(sink_admin, 10000), 0);

    int64_t t0 = util_mono_ms();
    for (int i = 0; i < PRODUCERS; i++)
        pthread_create(&threads[i], NULL, s_producer, (void *)(intptr_t)i);
    /* Kill the sink at ~1 s and ~2 s, restarting it each time. */
    for (int k = 1; k <= 2; k++) {
        int64_t wait = t0 + 1000 * k - util_mono_ms();
        if (wait > 0)
            util_sleep_ms((int)wait);
        harness_kill(&sink);
        sink = s_spawn_sink(sink_url, rpc, pub, sink_admin, false);
        CHECK(sink != NULL);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(threads[i], NULL);
    CHECK_INT(atomic_load(&s_failures), 0);

    cat_conn = PQconnectdb(s_catalog_conninfo);
    sink_conn = PQconnectdb(sink_url);
    CHECK(PQstatus(cat_conn) == CONNECTION_OK && PQstatus(sink_conn) == CONNECTION_OK);

    /* The relay stamps everything committed; wait for the head to settle. */
    long long total = (long long)PRODUCERS * EVENTS_PER_PRODUCER, head = -1;
    int64_t deadline = util_mono_ms() + 10000;
    while (util_mono_ms() < deadline) {
        head = s_scalar(cat_conn, "SELECT coalesce(max(position), 0) FROM sink.outbox");
        if (head >= total)
            break;
        util_sleep_ms(50);
    }
    CHECK(head >= total);
    CHECK_INT(s_wait_cursor(sink_conn, head, 20000), head);
    s_check_applied(sink_conn, cat_conn, head);
    /* catching up after each kill, and keeping up, it applied events in
     * batches: fewer transactions than events */
    CHECK(s_scalar(sink_conn, "SELECT count(DISTINCT xmin::text) FROM sink.applied") <
          s_scalar(sink_conn, "SELECT count(*) FROM sink.applied"));
    CHECK_INT(harness_stop(&sink, 10000), 0);

    /* A sink started after everything was produced catches up from 0,
     * with commit_each: Replay's batches, each event in its own
     * transaction. */
    late_url = harness_create_db("test_consumer_kill_late", services);
    CHECK(late_url != NULL);
    if (late_url) {
        sink = s_spawn_sink(late_url, rpc, pub, sink_admin, true);
        CHECK(sink != NULL);
        late_conn = PQconnectdb(late_url);
        CHECK(PQstatus(late_conn) == CONNECTION_OK);
        CHECK_INT(s_wait_cursor(late_conn, head, 20000), head);
        s_check_applied(late_conn, cat_conn, head);
        CHECK_INT(s_scalar(late_conn, "SELECT count(DISTINCT xmin::text) FROM sink.applied"),
                  s_scalar(late_conn, "SELECT count(*) FROM sink.applied"));
        CHECK_INT(harness_stop(&sink, 10000), 0);
    }

    PQfinish(late_conn);
    PQfinish(sink_conn);
    PQfinish(cat_conn);
    if (catalog)
        CHECK_INT(harness_stop(&catalog, 10000), 0);
    free(late_url);
    free(sink_url);
    free(s_catalog_conninfo);
    return check_done();
}
