/* outbox: adding events, the relay that stamps and publishes them, Replay. */
#include "outbox.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "pbpack.h"
#include "slog.h"
#include "util.h"

#define RELAY_BATCH      "1000"
#define RELAY_IDLE_MIN_MS 2
#define RELAY_GATHER_MS  10   /* after a partial batch (see s_run) */
#define RELAY_IDLE_MAX_MS 50
#define RELAY_LOCK_RETRY_MS 1000
#define RELAY_NOTE_MS    1000  /* how often the relay notes the next xid (see s_note) */
#define RELAY_MARKS      1024  /* notes kept while a transaction holds the xmin back (17 min) */
#define REPLAY_MAX_LIMIT 1000
#define REPLAY_DEFAULT_LIMIT 500
#define REPLAY_MAX_BYTES     (8 * 1024 * 1024)   /* payload per reply, far below what clients take */

static const db_stmt_t s_add = {
    "outbox_add",
    "INSERT INTO outbox (type, payload, correlation_id, causation_id, traceparent) "
    "VALUES ($1, $2, $3, $4, $5)",
    5};

/* A session lock, so one relay per stream; released when the session ends. */
static const db_stmt_t s_relay_lock = {
    "outbox_relay_lock", "SELECT pg_try_advisory_lock(hashtext($1))", 1};

static const db_stmt_t s_head = {
    "outbox_head", "SELECT coalesce(max(position), 0) FROM outbox", 0};

/* Every transaction with an xid below the snapshot's xmin has ended, so no
 * row with a lower (xid, id) can appear later: stamping those rows in (xid,
 * id) order after the current maximum gives gap-free positions in an order
 * no later commit can contradict. The statement's own xid is assigned after
 * its snapshot is taken, so the relay never holds its own xmin back; it
 * commits (autocommit) before the next poll. */
static const db_stmt_t s_stamp = {
    "outbox_stamp",
    "WITH base AS (SELECT coalesce(max(position), 0) AS p FROM outbox), "
    "todo AS (SELECT id, row_number() OVER (ORDER BY xid, id) AS rn FROM outbox "
    "         WHERE position IS NULL AND xid < pg_snapshot_xmin(pg_current_snapshot()) "
    "         ORDER BY xid, id LIMIT $1) "
    "UPDATE outbox o SET position = base.p + todo.rn FROM base, todo WHERE o.id = todo.id "
    "RETURNING o.position, o.message_id::text, o.type, o.payload, o.correlation_id, "
    "o.causation_id, o.traceparent, "
    "(extract(epoch FROM o.occurred_at) * 1000)::bigint",
    1};

/* The oldest xid still running and the next one to be given out, as one
 * snapshot sees them (xid8 as text). */
static const db_stmt_t s_xids = {
    "outbox_xids",
    "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text FROM pg_current_snapshot() s", 0};

static const db_stmt_t s_replay = {
    "outbox_replay",
    "SELECT position, message_id::text, type, payload, correlation_id, causation_id, "
    "traceparent, (extract(epoch FROM occurred_at) * 1000)::bigint "
    "FROM (SELECT *, sum(octet_length(payload)) OVER (ORDER BY position) - octet_length(payload) "
    "             AS before "
    "      FROM (SELECT * FROM outbox WHERE position > $1 ORDER BY position LIMIT $2) n) w "
    "WHERE before < $3 ORDER BY position",
    3};

struct relay {
    pthread_t thread;
    void *push;
    db_t *db;
    char *schema;
    char *source;
    metrics_t *metrics;
    atomic_bool stop;
    _Atomic uint64_t head;
    /* Notes "from at_ms on, every xid given out is >= xid", oldest first:
     * once the stamp has numbered every row below an xmin >= xid, all
     * that committed before at_ms is numbered (see s_note). */
    struct {
        uint64_t xid;
        int64_t at_ms;
    } marks[RELAY_MARKS];
    size_t mark_first, n_marks;
    uint64_t pending_xmin;         /* noted, not yet passed (0: none) */
    int64_t noted_mono_ms;
    char cluster[64];              /* the marks' (db_cluster) */
    _Atomic int64_t complete_ms;   /* everything committed before it is stamped */
    atomic_bool locked;            /* it holds the stream's lock: it numbers */
};

int outbox_add(db_t *db, const char *type, const uint8_t *payload, size_t len,
               const char *correlation_id, const char *causation_id, const char *traceparent)
{
    const char *params[5] = {type, (const char *)payload, correlation_id, causation_id, traceparent};
    int lengths[5] = {0, (int)len, 0, 0, 0};
    int formats[5] = {0, 1, 0, 0, 0};
    static const uint8_t empty = 0;

    if (!db || !type || (!payload && len > 0) || len > INT32_MAX)
        return -1;
    if (!payload)
        params[1] = (const char *)&empty;
    /* sent with the next statement or the COMMIT: a failure shows there */
    return db_exec_later(db, &s_add, params, lengths, formats);
}

/* Text column to a malloc'd string; "" for NULL (proto3 strings). In a
 * binary result too: libpq ends every value with a zero byte. */
static char *s_col(const PGresult *res, int row, int col)
{
    return strdup(PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

/* Builds one envelope from a row of s_stamp/s_replay's shape, read in binary
 * (db_exec_binary: no hex to decode). Returns 0/-1;
 * on -1 the envelope may be partly filled (free with s_envelope_clear). */
static int s_envelope_from_row(const PGresult *res, int row, const char *source,
                               Shop__Common__V1__Envelope *env)
{
    size_t blen = (size_t)PQgetlength(res, row, 3);

    shop__common__v1__envelope__init(env);
    env->sequence = (uint64_t)db_int8(res, row, 0);
    env->message_id = s_col(res, row, 1);
    env->type = s_col(res, row, 2);
    env->source = strdup(source);
    env->correlation_id = s_col(res, row, 4);
    env->causation_id = s_col(res, row, 5);
    env->traceparent = s_col(res, row, 6);
    env->occurred_at_ms = db_int8(res, row, 7);
    env->payload.data = malloc(blen ? blen : 1);
    if (env->payload.data) {
        memcpy(env->payload.data, PQgetvalue(res, row, 3), blen);
        env->payload.len = blen;
    }
    if (!env->message_id || !env->type || !env->source || !env->correlation_id ||
        !env->causation_id || !env->traceparent || !env->payload.data)
        return -1;
    return 0;
}

static void s_envelope_clear(Shop__Common__V1__Envelope *env)
{
    /* The envelope's default strings are protobuf-c's static "" only after
     * init; every field we set is malloc'd, so free only those we own. */
    free(env->message_id);
    free(env->type);
    free(env->source);
    free(env->correlation_id);
    free(env->causation_id);
    free(env->traceparent);
    free(env->payload.data);
    memset(env, 0, sizeof *env);
}

/* Sends one envelope as [type][packed Envelope]. Returns 0/-1. */
static int s_send(void *push, const Shop__Common__V1__Envelope *env)
{
    size_t len;
    const uint8_t *buf = pbpack(&env->base, &len);

    if (!buf || zmq_send(push, env->type, strlen(env->type), ZMQ_SNDMORE) == -1)
        return -1;
    return zmq_send(push, buf, len, 0) == -1 ? -1 : 0;
}

typedef struct {
    uint64_t position;
    int row;
} s_order_t;

static int s_order_cmp(const void *a, const void *b)
{
    const s_order_t *x = a, *y = b;
    return (x->position > y->position) - (x->position < y->position);
}

/* Publishes the rows one stamp returned, in position order. Returns the
 * number sent. */
static uint64_t s_publish(relay_t *r, const PGresult *res)
{
    int n = PQntuples(res);
    uint64_t sent = 0;
    int64_t newest_ms = 0;
    bool sending = true;
    s_order_t *order = calloc((size_t)n, sizeof *order);

    if (!order) {   /* stamped all the same: the head moves (Replay has them) */
        slog_error("relay: out of memory publishing %d events", n);
        for (int i = 0; i < n; i++)
            if ((uint64_t)db_int8(res, i, 0) > atomic_load(&r->head))
                atomic_store(&r->head, (uint64_t)db_int8(res, i, 0));
        return 0;
    }
    for (int i = 0; i < n; i++) {
        order[i].position = (uint64_t)db_int8(res, i, 0);
        order[i].row = i;
    }
    qsort(order, (size_t)n, sizeof *order, s_order_cmp);
    for (int i = 0; i < n; i++) {
        Shop__Common__V1__Envelope env;
        if (s_envelope_from_row(res, order[i].row, r->source, &env) == 0) {
            /* PUB is only the fast path: a lost send is recovered by Replay.
             * After one send times out, skip the rest of the batch rather
             * than wait for each. */
            if (sending && !atomic_load(&r->stop) && s_send(r->push, &env) == 0)
                sent++;
            else
                sending = false;
            newest_ms = env.occurred_at_ms;
        } else {
            slog_error("relay: out of memory building event %" PRIu64, order[i].position);
        }
        s_envelope_clear(&env);
        atomic_store(&r->head, order[i].position);
    }
    if (n > 0)
        metrics_published(r->metrics, sent, atomic_load(&r->head), util_now_ms() - newest_ms);
    free(order);
    return sent;
}


/* Tries to become the stream's relay; on success loads the head. */
static bool s_take_lock(relay_t *r, bool *waiting_logged)
{
    bool got = false;
    char key[256];
    const char *params[1] = {key};
    PGresult *res = NULL;

    snprintf(key, sizeof key, "%s.relay", r->schema);
    res = db_exec(r->db, &s_relay_lock, params);
    if (!res)
        goto fail;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        if (!*waiting_logged)
            slog_info("relay: another instance relays stream %s; waiting", r->source);
        *waiting_logged = true;
        goto fail;
    }
    PQclear(res);
    res = db_exec(r->db, &s_head, NULL);
    if (!res)
        goto fail;
    if (strcmp(r->cluster, db_cluster(r->db)) != 0) {
        /* another cluster (a standby promoted): its xids are not the ones
         * noted, and nothing is known of it yet (before its head: see
         * relay_complete) */
        r->n_marks = 0;
        r->pending_xmin = 0;
        atomic_store(&r->complete_ms, 1);
        snprintf(r->cluster, sizeof r->cluster, "%s", db_cluster(r->db));
    }
    atomic_store(&r->head, strtoull(PQgetvalue(res, 0, 0), NULL, 10));
    slog_info("relay: relaying stream %s from position %" PRIu64, r->source,
              (uint64_t)atomic_load(&r->head));
    *waiting_logged = false;
    got = true;
fail:
    if (res)
        PQclear(res);
    return got;
}

/* Every RELAY_NOTE_MS, before a stamp: the time now and the snapshot's next
 * xid go into the marks (a transaction that committed by then has a lower
 * xid), and the oldest running xid becomes pending. Any later stamp numbers
 * every row with an xid below its own xmin, which is no lower; the first
 * one that numbers all of them (fewer than a batch) passes every mark at or
 * below the pending xmin (s_passed). A transaction held open for long keeps
 * the xmin, and so the time, back: that is the point. The time is this
 * host's clock, as the heartbeat's. */
static void s_note(relay_t *r)
{
    int64_t mono = util_mono_ms();

    if (mono - r->noted_mono_ms < RELAY_NOTE_MS)
        return;
    r->noted_mono_ms = mono;
    int64_t at = util_now_ms();
    PGresult *res = db_exec(r->db, &s_xids, NULL);
    if (!res || PQntuples(res) != 1) {
        if (res)
            PQclear(res);
        return;   /* the stamp that follows says what went wrong */
    }
    r->pending_xmin = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    uint64_t next = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
    PQclear(res);
    if (r->n_marks < RELAY_MARKS) {   /* full: the time stays back until xmin moves */
        size_t i = (r->mark_first + r->n_marks++) % RELAY_MARKS;
        r->marks[i].xid = next;
        r->marks[i].at_ms = at;
    }
}

/* Every row with an xid below `xmin` is stamped: the marks it passes go,
 * the latest one's time becomes relay_complete's. */
static void s_passed(relay_t *r, uint64_t xmin)
{
    int64_t at = 0;

    while (r->n_marks > 0 && r->marks[r->mark_first].xid <= xmin) {
        at = r->marks[r->mark_first].at_ms;
        r->mark_first = (r->mark_first + 1) % RELAY_MARKS;
        r->n_marks--;
    }
    if (at > atomic_load(&r->complete_ms))
        atomic_store(&r->complete_ms, at);   /* after head: see relay_complete */
}

static void *s_relay_run(void *arg)
{
    relay_t *r = arg;
    bool locked = false;
    bool waiting_logged = false;
    int idle_ms = RELAY_IDLE_MIN_MS;
    const char *params[1] = {RELAY_BATCH};

    util_thread_name("relay");
    while (!atomic_load(&r->stop)) {
        if (!db_ensure(r->db)) {
            atomic_store(&r->locked, locked = false);
            util_nap_ms(&r->stop, RELAY_LOCK_RETRY_MS);
            continue;
        }
        if (!locked) {
            atomic_store(&r->locked, locked = s_take_lock(r, &waiting_logged));
            if (!locked) {
                if (db_lost(r->db))
                    continue;
                util_nap_ms(&r->stop, RELAY_LOCK_RETRY_MS);
                continue;
            }
        }
        s_note(r);
        PGresult *res = db_exec_binary(r->db, &s_stamp, params);
        if (!res) {
            /* A lost connection also lost the session lock: take it again. */
            if (db_lost(r->db))
                atomic_store(&r->locked, locked = false);
            else
                slog_warn("relay: stamping failed: %s", db_error(r->db));
            util_nap_ms(&r->stop, 100);
            continue;
        }
        int n = PQntuples(res);
        if (n > 0) {
            s_publish(r, res);
            idle_ms = RELAY_IDLE_MIN_MS;
        }
        PQclear(res);
        if (r->pending_xmin && n < atoi(RELAY_BATCH)) {
            s_passed(r, r->pending_xmin);
            r->pending_xmin = 0;
        }
        if (n == 0) {
            util_nap_ms(&r->stop, idle_ms);
            idle_ms = idle_ms * 2 > RELAY_IDLE_MAX_MS ? RELAY_IDLE_MAX_MS : idle_ms * 2;
        } else if (n < atoi(RELAY_BATCH)) {
            /* Caught up: let the next events gather for a moment rather
             * than stamp them one or two at a time, each stamp being a
             * durable commit that rewrites its rows (2 ms: 0.46 stamps per
             * order and relay in bench/run at concurrency 8; 10 ms: see the
             * README's "Events"). Idle, the relay looks every 50 ms. */
            util_nap_ms(&r->stop, RELAY_GATHER_MS);
        }
    }
    return NULL;
}

relay_t *relay_new(void *zctx, const char *inproc_endpoint, const char *conninfo,
                   const char *schema, const char *source, metrics_t *m)
{
    relay_t *r = calloc(1, sizeof *r);
    char app[128];
    int linger = 0;
    /* A loop thread that stopped pulling must not keep the relay from
     * stopping: PUB is the fast path only, and Replay recovers a drop. */
    int sndtimeo = 200;

    if (!r)
        goto fail;
    atomic_init(&r->stop, false);
    atomic_init(&r->head, 0);
    atomic_init(&r->complete_ms, 1);   /* true of any stream: nothing known yet */
    atomic_init(&r->locked, false);
    r->noted_mono_ms = util_mono_ms() - RELAY_NOTE_MS;
    r->metrics = m;
    r->schema = strdup(schema);
    r->source = strdup(source);
    if (!r->schema || !r->source)
        goto fail;
    snprintf(app, sizeof app, "%s-relay", source);
    r->db = db_new(conninfo, schema, app, 0);
    if (!r->db)
        goto fail;
    r->push = zmq_socket(zctx, ZMQ_PUSH);
    if (!r->push)
        goto fail;
    zmq_setsockopt(r->push, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(r->push, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    if (zmq_connect(r->push, inproc_endpoint) == -1) {
        slog_error("relay: cannot connect to %s: %s", inproc_endpoint, zmq_strerror(errno));
        goto fail;
    }
    if (pthread_create(&r->thread, NULL, s_relay_run, r) != 0)
        goto fail;
    return r;
fail:
    slog_error("relay: cannot start the relay of stream %s", source ? source : "?");
    if (r) {
        if (r->push)
            zmq_close(r->push);
        db_destroy(&r->db);
        free(r->schema);
        free(r->source);
        free(r);
    }
    return NULL;
}

uint64_t relay_head(relay_t *relay)
{
    return relay ? atomic_load(&relay->head) : 0;
}

int64_t relay_complete(relay_t *relay)
{
    if (!relay)
        return 0;
    /* one that lost the lock (its connection went: the cluster may have
     * failed over, or another instance numbers now) knows nothing until it
     * holds it again */
    return atomic_load(&relay->locked) ? atomic_load(&relay->complete_ms) : 1;
}

void relay_destroy(relay_t **p)
{
    relay_t *r = p ? *p : NULL;

    if (!r)
        return;
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    zmq_close(r->push);
    db_destroy(&r->db);
    free(r->schema);
    free(r->source);
    free(r);
    *p = NULL;
}

int outbox_replay(db_t *db, const char *source, uint64_t after, uint32_t limit, uint32_t max_bytes,
                  Shop__Common__V1__ReplayResponse *out)
{
    int rc = -1;
    PGresult *res = NULL;
    char after_s[24], limit_s[16], bytes_s[16];
    const char *params[3] = {after_s, limit_s, bytes_s};
    int n;

    if (limit == 0)
        limit = REPLAY_DEFAULT_LIMIT;
    if (limit > REPLAY_MAX_LIMIT)
        limit = REPLAY_MAX_LIMIT;
    /* position is a bigint: anything above its range means "nothing after". */
    if (after > (uint64_t)INT64_MAX)
        after = (uint64_t)INT64_MAX;
    snprintf(after_s, sizeof after_s, "%" PRIu64, after);
    snprintf(limit_s, sizeof limit_s, "%" PRIu32, limit);
    if (max_bytes == 0 || max_bytes > REPLAY_MAX_BYTES)
        max_bytes = REPLAY_MAX_BYTES;
    snprintf(bytes_s, sizeof bytes_s, "%" PRIu32, max_bytes);
    res = db_exec_binary(db, &s_replay, params);
    if (!res)
        goto fail;
    n = PQntuples(res);
    out->events = n ? calloc((size_t)n, sizeof *out->events) : NULL;
    if (n && !out->events)
        goto fail;
    for (int i = 0; i < n; i++) {
        Shop__Common__V1__Envelope *env = malloc(sizeof *env);
        if (!env)
            goto fail;
        out->events[out->n_events++] = env;
        if (s_envelope_from_row(res, i, source, env) == -1)
            goto fail;
    }
    PQclear(res);
    res = db_exec(db, &s_head, NULL);
    if (!res)
        goto fail;
    out->head_sequence = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    rc = 0;
fail:
    if (res)
        PQclear(res);
    if (rc == -1)
        outbox_replay_clear(out);
    return rc;
}

void outbox_replay_clear(Shop__Common__V1__ReplayResponse *out)
{
    if (!out)
        return;
    for (size_t i = 0; i < out->n_events; i++) {
        s_envelope_clear(out->events[i]);
        free(out->events[i]);
    }
    free(out->events);
    out->events = NULL;
    out->n_events = 0;
    out->head_sequence = 0;
}
