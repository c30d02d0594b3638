/* test_events: concurrent producers -> gap-free, ordered stream via Replay, PUB and heartbeats. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <zmq.h>

#include "check.h"
#include "client.h"
#include "db.h"
#include "harness.h"
#include "outbox.h"
#include "shop/common/v1/common.pb-c.h"
#include "slog.h"
#include "util.h"

#define PRODUCERS 8
#define TXNS_PER_PRODUCER 40
#define MAX_EVENTS (PRODUCERS * TXNS_PER_PRODUCER * 3)
#define EVENT_TYPE "shop.test.v1.Probe"

static char *s_conninfo;
static pthread_mutex_t s_mutex = PTHREAD_MUTEX_INITIALIZER;
static char *s_committed[MAX_EVENTS];
static size_t s_n_committed;
static atomic_int s_failures;

/* Transactions of 1-3 events; every 5th rolled back, every 7th held open. */
static void *s_producer(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned seed = (unsigned)id * 7919u + 1u;
    db_t *db = db_new(s_conninfo, "sink", "test-producer", 0);

    if (!db) {
        atomic_fetch_add(&s_failures, 1);
        return NULL;
    }
    for (int t = 0; t < TXNS_PER_PRODUCER; t++) {
        int n = 1 + (int)(rand_r(&seed) % 3);
        bool rollback = t % 5 == 4;
        char payloads[3][64];

        if (db_begin(db) == -1) {
            atomic_fetch_add(&s_failures, 1);
            break;
        }
        for (int j = 0; j < n; j++) {
            snprintf(payloads[j], sizeof payloads[j], "p%d-t%d-e%d", id, t, j);
            if (outbox_add(db, EVENT_TYPE, (const uint8_t *)payloads[j], strlen(payloads[j]),
                           "corr", NULL, NULL) == -1)
                atomic_fetch_add(&s_failures, 1);
        }
        /* outbox_add queues its rows: send them now, so the sleep below
         * holds a transaction with rows open across the relay's stamps and
         * a rolled-back one really wrote them */
        if (PQtransactionStatus(db_conn(db)) != PQTRANS_INTRANS)
            atomic_fetch_add(&s_failures, 1);
        if (t % 7 == 3)
            util_sleep_ms(20 + (int)(rand_r(&seed) % 80));
        if (rollback) {
            db_rollback(db);
            continue;
        }
        if (db_commit(db) == -1) {
            atomic_fetch_add(&s_failures, 1);
            continue;
        }
        pthread_mutex_lock(&s_mutex);
        for (int j = 0; j < n; j++)
            s_committed[s_n_committed++] = strdup(payloads[j]);
        pthread_mutex_unlock(&s_mutex);
    }
    db_destroy(&db);
    return NULL;
}

/* Replay: up to 100 events after `after`, within `max_bytes` (0: the server's cap). */
static status_t s_replay(client_t *client, uint64_t after, uint32_t max_bytes,
                         ProtobufCMessage **reply)
{
    Shop__Common__V1__ReplayRequest req = SHOP__COMMON__V1__REPLAY_REQUEST__INIT;

    req.after_sequence = after;
    req.limit = 100;
    req.max_bytes = max_bytes;
    return client_call(client, "shop.common.v1.EventService/Replay", &req.base,
                       &shop__common__v1__replay_response__descriptor, reply, NULL, 3000, 1, NULL);
}

static int s_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One [topic, body] message (within the socket's receive time-out): the
 * body's length, or -1 if none came or it did not fit. */
static int s_recv(void *sub, char *topic, size_t topic_cap, uint8_t *body, size_t body_cap)
{
    int tl = zmq_recv(sub, topic, topic_cap - 1, 0);
    if (tl < 0)
        return -1;
    topic[tl < (int)topic_cap ? tl : (int)topic_cap - 1] = '\0';
    int bl = zmq_recv(sub, body, body_cap, 0);
    return bl < 0 || bl > (int)body_cap ? -1 : bl;
}

/* The lowest and highest complete_before_ms of the sink's heartbeats over
 * `ms`; 0 and 0 if none came. */
static void s_heartbeats(void *sub, int ms, int64_t *lo, int64_t *hi)
{
    int64_t end = util_mono_ms() + ms;

    *lo = *hi = 0;
    while (util_mono_ms() < end) {
        char topic[128];
        uint8_t body[4096];
        int bl = s_recv(sub, topic, sizeof topic, body, sizeof body);
        if (bl < 0 || strcmp(topic, "shop.common.v1.Heartbeat") != 0)
            continue;
        Shop__Common__V1__Heartbeat *hb = shop__common__v1__heartbeat__unpack(NULL, (size_t)bl, body);
        if (hb && strcmp(hb->source, "sink") == 0) {
            if (!*lo || hb->complete_before_ms < *lo)
                *lo = hb->complete_before_ms;
            if (hb->complete_before_ms > *hi)
                *hi = hb->complete_before_ms;
        }
        shop__common__v1__heartbeat__free_unpacked(hb, NULL);
    }
}

/* A relay that lost its lock with its connection (the cluster failed over
 * to a standby, or another instance took the stream over) says nothing of
 * the stream being complete until it holds the lock again: its heartbeats
 * carry 1, not the time it knew before. Here its connection is ended and
 * the lock taken by this test meanwhile, then given back. */
static void s_lock_lost(void *sub, const char *admin)
{
    PGconn *c = PQconnectdb(admin);
    int64_t lo, hi;

    CHECK(PQstatus(c) == CONNECTION_OK);
    s_heartbeats(sub, 600, &lo, &hi);
    CHECK(lo > 1);   /* it numbers, and says up to when */
    /* its connection ended, and the lock taken before it takes it again
     * (if it wins the race, once more) */
    long long got = 0;
    for (int round = 0; round < 20 && got != 1; round++) {
        /* this database's: other tests run their own sinks in the cluster */
        CHECK(harness_sql(c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE application_name = 'sink-relay' AND datname = current_database()")
              <= 1);
        for (int i = 0; i < 100 && got != 1; i++) {
            got = harness_sql(c, "SELECT pg_try_advisory_lock(hashtext('sink.relay'))::int");
            if (got != 1)
                util_sleep_ms(2);
        }
    }
    CHECK_INT(got, 1);
    /* once the relay has found its connection gone, only 1 */
    for (int i = 0; i < 20 && hi != 1; i++)
        s_heartbeats(sub, 250, &lo, &hi);
    s_heartbeats(sub, 1000, &lo, &hi);
    CHECK_INT(lo, 1);
    CHECK_INT(hi, 1);
    CHECK_INT(harness_sql(c, "SELECT pg_advisory_unlock(hashtext('sink.relay'))::int"), 1);
    for (int i = 0; i < 10 && lo <= 1; i++)   /* its own again */
        s_heartbeats(sub, 500, &lo, &hi);
    CHECK(lo > 1);
    PQfinish(c);
}

int main(void)
{
    const char *services[] = {"sink", NULL};
    char rpc[64], pub[64], admin[32], url[600], rpc_env[80], pub_env[80], admin_env[48];
    int rpc_port = harness_free_port(), pub_port = harness_free_port();
    int admin_port = harness_free_port();
    harness_proc_t *producer = NULL;
    void *zctx = zmq_ctx_new();
    void *sub = zmq_socket(zctx, ZMQ_SUB);
    client_t *client = NULL;
    pthread_t threads[PRODUCERS];
    char *replayed[MAX_EVENTS];
    size_t n_replayed = 0;
    uint64_t head = 0;
    bool ordered = true, payloads_ok = true;

    slog_init("test_events", SLOG_WARN);
    s_conninfo = harness_create_db("test_events", services);
    CHECK(s_conninfo != NULL);
    if (!s_conninfo)
        return check_done();
    snprintf(rpc, sizeof rpc, "tcp://127.0.0.1:%d", rpc_port);
    snprintf(pub, sizeof pub, "tcp://127.0.0.1:%d", pub_port);
    snprintf(admin, sizeof admin, "%d", admin_port);
    snprintf(url, sizeof url, "SHOP_DATABASE_URL=%s", s_conninfo);
    snprintf(rpc_env, sizeof rpc_env, "SHOP_RPC_BIND=%s", rpc);
    snprintf(pub_env, sizeof pub_env, "SHOP_PUB_BIND=%s", pub);
    snprintf(admin_env, sizeof admin_env, "SHOP_ADMIN_PORT=%s", admin);
    const char *env[] = {url, rpc_env, pub_env, admin_env, "SHOP_ADMIN_ADDR=127.0.0.1",
                         "SHOP_HEARTBEAT_MS=200",
                         /* the sink also consumes a stream nobody produces here */
                         "SHOP_CATALOG_RPC=tcp://127.0.0.1:9", "SHOP_CATALOG_PUB=tcp://127.0.0.1:9",
                         NULL};
    producer = harness_spawn("shop-sink", env);
    CHECK(producer != NULL);
    CHECK_INT(harness_wait_ready(admin_port, 10000), 0);

    /* Subscribe before producing (slow joiner). */
    int timeout = 200;
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, EVENT_TYPE, strlen(EVENT_TYPE));
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "shop.common.v1.Heartbeat", 24);
    CHECK_INT(zmq_connect(sub, pub), 0);
    util_sleep_ms(500);

    for (int i = 0; i < PRODUCERS; i++)
        pthread_create(&threads[i], NULL, s_producer, (void *)(intptr_t)i);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(threads[i], NULL);
    CHECK_INT(atomic_load(&s_failures), 0);
    CHECK(s_n_committed > 0);
    int64_t all_committed_ms = util_now_ms();

    /* PUB: every event in sequence order, topic = type; then a heartbeat
     * carrying head = N, and that everything committed before the
     * producers finished is at or below it (no transaction stays open) */
    uint64_t expect = 1, hb_head = 0;
    int64_t hb_complete = 0, hb_sent = 0;
    int64_t deadline = util_mono_ms() + 15000;
    while (util_mono_ms() < deadline &&
           (expect <= s_n_committed || hb_head != s_n_committed || hb_complete < all_committed_ms)) {
        char topic[128];
        uint8_t body[4096];
        int bl = s_recv(sub, topic, sizeof topic, body, sizeof body);
        if (bl < 0)
            continue;
        if (strcmp(topic, "shop.common.v1.Heartbeat") == 0) {
            Shop__Common__V1__Heartbeat *hb = shop__common__v1__heartbeat__unpack(NULL, (size_t)bl, body);
            if (hb && strcmp(hb->source, "sink") == 0) {
                hb_head = hb->head_sequence;
                hb_complete = hb->complete_before_ms;
                hb_sent = hb->sent_at_ms;
            }
            shop__common__v1__heartbeat__free_unpacked(hb, NULL);
            continue;
        }
        Shop__Common__V1__Envelope *e = shop__common__v1__envelope__unpack(NULL, (size_t)bl, body);
        if (!e) {
            ordered = false;
            continue;
        }
        if (strcmp(topic, e->type) != 0 || e->sequence != expect)
            ordered = false;
        expect = e->sequence + 1;
        shop__common__v1__envelope__free_unpacked(e, NULL);
    }
    CHECK(ordered);
    CHECK_INT((long long)(expect - 1), (long long)s_n_committed);
    CHECK_INT((long long)hb_head, (long long)s_n_committed);
    CHECK(hb_complete >= all_committed_ms && hb_complete <= hb_sent);

    /* Replay: 1..N, no gap, no duplicate, payloads intact. */
    client = client_new(zctx, rpc);
    CHECK(client != NULL);
    uint64_t after = 0;
    while (client && n_replayed < MAX_EVENTS) {
        ProtobufCMessage *reply = NULL;
        status_t st = s_replay(client, after, 0, &reply);
        CHECK_INT(st, STATUS_OK);
        if (st != STATUS_OK || !reply)
            break;
        Shop__Common__V1__ReplayResponse *r = (Shop__Common__V1__ReplayResponse *)reply;
        head = r->head_sequence;
        for (size_t i = 0; i < r->n_events && n_replayed < MAX_EVENTS; i++) {
            Shop__Common__V1__Envelope *e = r->events[i];
            if (e->sequence != after + 1 || strcmp(e->type, EVENT_TYPE) != 0 ||
                strcmp(e->source, "sink") != 0 || strcmp(e->correlation_id, "corr") != 0)
                ordered = false;
            after = e->sequence;
            char *copy = malloc(e->payload.len + 1);   /* payloads carry no NUL */
            if (copy) {
                memcpy(copy, e->payload.data, e->payload.len);
                copy[e->payload.len] = '\0';
            }
            replayed[n_replayed++] = copy;
        }
        size_t got = r->n_events;
        protobuf_c_message_free_unpacked(reply, NULL);
        if (got == 0)
            break;
    }
    CHECK(ordered);
    CHECK_INT((long long)head, (long long)s_n_committed);
    CHECK_INT((long long)n_replayed, (long long)s_n_committed);
    /* A byte budget ends a reply early, after its first event at least:
     * one byte takes one event, the first payload's length and one more
     * byte takes two. */
    size_t first_len = 0;
    for (int k = 0; client && n_replayed > 2 && k < 2; k++) {
        ProtobufCMessage *reply = NULL;
        status_t st = s_replay(client, 0, k == 0 ? 1 : (uint32_t)first_len + 1, &reply);
        CHECK_INT(st, STATUS_OK);
        if (st != STATUS_OK || !reply)
            break;
        Shop__Common__V1__ReplayResponse *r = (Shop__Common__V1__ReplayResponse *)reply;
        CHECK_INT((long long)r->n_events, (long long)(k + 1));
        CHECK_INT((long long)r->head_sequence, (long long)s_n_committed);
        if (k == 0 && r->n_events == 1)
            first_len = r->events[0]->payload.len;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    if (n_replayed == s_n_committed) {
        qsort(replayed, n_replayed, sizeof *replayed, s_strcmp);
        qsort(s_committed, s_n_committed, sizeof *s_committed, s_strcmp);
        for (size_t i = 0; i < n_replayed; i++)
            if (strcmp(replayed[i], s_committed[i]) != 0)
                payloads_ok = false;
    }
    CHECK(payloads_ok);

    char *superuser = harness_conninfo("test_events", "postgres");
    s_lock_lost(sub, superuser);
    free(superuser);

    for (size_t i = 0; i < n_replayed; i++)
        free(replayed[i]);
    for (size_t i = 0; i < s_n_committed; i++)
        free(s_committed[i]);
    client_destroy(&client);
    zmq_close(sub);
    zmq_ctx_term(zctx);
    if (producer)
        CHECK_INT(harness_stop(&producer, 10000), 0);
    free(s_conninfo);
    return check_done();
}
