/* subscriber: one consumer thread per stream, applying events exactly once. */
#include "subscriber.h"

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

#include "client.h"
#include "slog.h"
#include "util.h"

#define SUB_BATCH         200
#define SUB_POLL_MS       50
#define SUB_QUIET_MS      200   /* heartbeat ahead + nothing new this long -> Replay */
#define SUB_REPLAY_LIMIT  500
#define SUB_REPLAY_MS     3000
#define SUB_SAVE_MS       1000  /* a cursor moved by events that needed nothing */
#define SUB_CAUGHT_UP_MS  2000  /* how often "applied up to" is stored, at most */
#define SUB_BACKOFF_MIN_MS 100
#define SUB_BACKOFF_MAX_MS 5000
#define SUB_MAX_FRAME     (4 * 1024 * 1024)
#define HEARTBEAT_TOPIC   "shop.common.v1.Heartbeat"
#define REPLAY_METHOD     "shop.common.v1.EventService/Replay"

static const db_stmt_t s_lock = {
    "sub_lock", "SELECT pg_try_advisory_lock(hashtext($1))", 1};
static const db_stmt_t s_cursor_init = {
    "sub_cursor_init",
    "INSERT INTO consumer_cursor (stream) VALUES ($1) ON CONFLICT (stream) DO NOTHING", 1};
static const db_stmt_t s_cursor_get = {
    "sub_cursor_get", "SELECT position FROM consumer_cursor WHERE stream = $1", 1};
/* Fails with SQLSTATE SH001 unless the cursor is still at $2. */
static const db_stmt_t s_cursor_move = {
    "sub_cursor_move", "SELECT consumer_cursor_move($1, $2, $3)", 3};
#define CURSOR_MOVED "SH001"
/* Heard from, nothing usable yet (a relay that cannot say, with a
 * transaction open): holds wait rather than end by the clock alone. */
static const db_stmt_t s_heard_stmt = {
    "sub_heard",
    "UPDATE consumer_cursor SET caught_up_at = '-infinity' WHERE stream = $1 AND caught_up_at IS NULL",
    1};
/* Never moves back: a heartbeat's time is the publisher's clock. */
static const db_stmt_t s_caught_up = {
    "sub_caught_up",
    "UPDATE consumer_cursor SET caught_up_at = greatest(caught_up_at, "
    "  to_timestamp($2::bigint / 1000.0)) WHERE stream = $1",
    2};

struct sub {
    pthread_t thread;
    sub_stream_t stream;
    char *stream_name;
    char *topic_prefix;
    char *rpc_endpoint;
    void *zctx;
    void *sock;
    client_t *client;
    db_t *db;
    char *schema;
    void *settings;
    metrics_t *metrics;
    size_t index;
    atomic_bool stop;
    bool locked;
    bool lock_logged;
    /* applied (in memory), and as stored: events that needed nothing move
     * only the first, and the second follows within SUB_SAVE_MS */
    uint64_t cursor;
    uint64_t saved;
    int64_t saved_ms;
    uint64_t head;
    int backoff_ms;
    /* The stream is applied up to the publisher's time `reached_ms`: a
     * heartbeat said all committed before then was at or below a head the
     * cursor has reached since. `wait_head`/`wait_ms`: the oldest heartbeat
     * whose head it has not reached yet (0 = none); `stored_ms`: what
     * consumer_cursor says. */
    bool heard, heard_stored;   /* a heartbeat of the stream; consumer_cursor says so */
    int64_t reached_ms;
    uint64_t wait_head;
    int64_t wait_ms;
    int64_t stored_ms;
    int64_t stored_at_ms;
};

/* Outcome of applying a batch. */
typedef enum { S_APPLIED, S_GAP, S_FAILED } s_outcome_t;

/* Stores that the stream is heard from (see s_heard_stmt); a failure is
 * logged and tried again later, a lost connection gives the lock up. */
static void s_mark_heard(sub_t *s)
{
    const char *params[1] = {s->stream_name};

    s->heard = true;
    if (db_exec_ok(s->db, &s_heard_stmt, params) == 0) {
        s->heard_stored = true;
        return;
    }
    slog_warn("consumer %s: cannot store that the stream is heard: %s", s->stream_name, db_error(s->db));
    if (db_lost(s->db))
        s->locked = false;
    else
        db_rollback(s->db);
}

/* Takes the per-stream lock and loads the cursor. Returns true when held. */
static bool s_take_lock(sub_t *s)
{
    bool got = false;
    char key[256];
    const char *params[1] = {key};
    PGresult *res = NULL;

    snprintf(key, sizeof key, "%s.consume.%s", s->schema, s->stream_name);
    res = db_exec(s->db, &s_lock, params);
    if (!res)
        goto fail;
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        if (!s->lock_logged)
            slog_info("consumer %s: another instance applies this stream; waiting", s->stream_name);
        s->lock_logged = true;
        goto fail;
    }
    PQclear(res);
    params[0] = s->stream_name;
    res = db_exec(s->db, &s_cursor_init, params);
    if (!res)
        goto fail;
    PQclear(res);
    res = db_exec(s->db, &s_cursor_get, params);
    if (!res || PQntuples(res) != 1)
        goto fail;
    s->cursor = s->saved = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    s->saved_ms = util_mono_ms();
    slog_info("consumer %s: applying from sequence %" PRIu64, s->stream_name, s->cursor);
    s->lock_logged = false;
    got = true;
    /* a stream applied before is deployed: from here on (a backlog to catch
     * up on, say) holds wait for a heartbeat's time, not the clock */
    if (s->cursor > 0 && !s->heard_stored) {
        PQclear(res);
        res = NULL;
        s_mark_heard(s);
        got = !db_lost(s->db);   /* (the lock went with the connection) */
    }
fail:
    if (res)
        PQclear(res);
    return got;
}

/* After a failure: a cursor moved by someone else, or a lost connection,
 * means the lock (and what this thread knows) must be taken again. */
static void s_failed(sub_t *s)
{
    if (db_lost(s->db) || strcmp(db_sqlstate(s->db), CURSOR_MOVED) == 0) {
        if (!db_lost(s->db))
            slog_error("consumer %s: %s; taking the stream again", s->stream_name, db_error(s->db));
        s->locked = false;
    }
    db_rollback(s->db);
    metrics_consumer_error(s->metrics, s->index);
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : SUB_BACKOFF_MIN_MS;
    if (s->backoff_ms > SUB_BACKOFF_MAX_MS)
        s->backoff_ms = SUB_BACKOFF_MAX_MS;
}

/* Queues the move of the stored cursor from s->saved to `to`. */
static int s_queue_move(sub_t *s, uint64_t to)
{
    char from_s[24], to_s[24];
    const char *params[3] = {s->stream_name, from_s, to_s};

    snprintf(from_s, sizeof from_s, "%" PRIu64, s->saved);
    snprintf(to_s, sizeof to_s, "%" PRIu64, to);
    return db_exec_later(s->db, &s_cursor_move, params, NULL, NULL);
}

/* Stores a cursor that moved over events that needed nothing, once it has
 * waited SUB_SAVE_MS (or at once when `now`). */
static void s_save(sub_t *s, bool now)
{
    if (s->saved == s->cursor || !s->locked ||
        (!now && util_mono_ms() - s->saved_ms < SUB_SAVE_MS))
        return;
    if (s_queue_move(s, s->cursor) != 0 || db_commit(s->db) != 0) {
        s_failed(s);
        return;
    }
    s->saved = s->cursor;
    s->saved_ms = util_mono_ms();
}

/* Commits what was applied up to `cursor`, moving the stored cursor with
 * it when something was written. */
static int s_commit(sub_t *s, uint64_t cursor, bool wrote, uint64_t applied)
{
    if (wrote && s_queue_move(s, cursor) != 0)
        return -1;
    if (db_commit(s->db) == -1)
        return -1;
    s->cursor = cursor;
    if (wrote) {
        s->saved = cursor;
        s->saved_ms = util_mono_ms();
    }
    if (s->head < cursor)
        s->head = cursor;
    if (applied > 0)
        metrics_applied(s->metrics, s->index, applied, s->cursor, s->head);
    return 0;
}

/* Applies events in order inside one transaction (one per written event
 * with commit_each). Stops at the first gap. The cursor in memory moves
 * only after COMMIT. Only this thread moves the stored cursor while it
 * holds the stream's lock, so what it knows is what is stored: the move
 * checks that rather than reading it first. A batch of events that all
 * needed nothing writes nothing at all. */
static s_outcome_t s_apply(sub_t *s, Shop__Common__V1__Envelope *const *events, size_t n)
{
    uint64_t cursor = s->cursor, applied = 0, duplicates = 0;
    bool gap = false, wrote = false;

    (void)db_begin_lazy(s->db);
    for (size_t i = 0; i < n; i++) {
        const Shop__Common__V1__Envelope *e = events[i];
        if (e->sequence <= cursor) {
            duplicates++;
            continue;
        }
        if (e->sequence > cursor + 1) {
            gap = true;
            break;
        }
        int rc = s->stream.apply(s->db, e, s->settings);
        if (rc == -1) {
            slog_error("consumer %s: applying event %" PRIu64 " (%s) failed; will retry",
                       s->stream_name, e->sequence, e->type);
            goto fail;
        }
        wrote |= rc == 0;
        cursor = e->sequence;
        applied++;
        if (rc == 0 && s->stream.commit_each) {
            if (s_commit(s, cursor, true, applied) != 0)
                goto fail;
            wrote = false;
            applied = 0;
            (void)db_begin_lazy(s->db);
        }
    }
    if (s_commit(s, cursor, wrote, applied) != 0)
        goto fail;
    if (duplicates > 0)
        slog_debug("consumer %s: skipped %" PRIu64 " duplicates", s->stream_name, duplicates);
    s->backoff_ms = 0;
    return gap ? S_GAP : S_APPLIED;
fail:
    s_failed(s);
    return S_FAILED;
}

/* Replays from the cursor up to the producer's head. Returns 0 when caught
 * up, -1 when it must be tried again later. */
static int s_catch_up(sub_t *s)
{
    while (!atomic_load(&s->stop)) {
        Shop__Common__V1__ReplayRequest req = SHOP__COMMON__V1__REPLAY_REQUEST__INIT;
        ProtobufCMessage *reply = NULL;
        char *msg = NULL;
        Shop__Common__V1__ReplayResponse *resp;
        s_outcome_t o;
        size_t n;

        req.after_sequence = s->cursor;
        req.limit = SUB_REPLAY_LIMIT;
        status_t st = client_call(s->client, REPLAY_METHOD, &req.base,
                                  &shop__common__v1__replay_response__descriptor, &reply, NULL,
                                  SUB_REPLAY_MS, 3, &msg);
        if (st != STATUS_OK || !reply) {
            slog_warn("consumer %s: Replay after %" PRIu64 " failed: %s %s", s->stream_name,
                      s->cursor, status_name(st), msg ? msg : "");
            free(msg);
            if (reply)
                protobuf_c_message_free_unpacked(reply, NULL);
            return -1;
        }
        free(msg);
        resp = (Shop__Common__V1__ReplayResponse *)reply;
        if (resp->head_sequence > s->head)
            s->head = resp->head_sequence;
        n = resp->n_events;
        o = n ? s_apply(s, resp->events, n) : S_APPLIED;
        protobuf_c_message_free_unpacked(reply, NULL);
        if (o == S_FAILED)
            return -1;
        /* Replay starts right after the cursor, so a gap means the producer
         * lost history: log it loudly and stop rather than skip. */
        if (o == S_GAP) {
            slog_error("consumer %s: Replay after %" PRIu64 " does not continue the stream",
                       s->stream_name, s->cursor);
            return -1;
        }
        if (n == 0 || s->cursor >= s->head)
            return 0;
    }
    return 0;
}

/* A heartbeat: every event committed before the publisher's time `at_ms`
 * is at or below `head` (its complete_before_ms).
 * One below the highest head known (s->head, from Replay and heartbeats)
 * comes from an instance that does not number the stream (another holds
 * its relay's lock, or it is starting): it says nothing about what is
 * applied. */
static void s_heard(sub_t *s, uint64_t head, int64_t at_ms)
{
    if (head < s->head || at_ms <= s->reached_ms)
        return;   /* (nor would waiting for it tell anything new) */
    if (s->cursor >= head) {
        s->reached_ms = at_ms;
    } else if (s->wait_head == 0) {
        s->wait_head = head;
        s->wait_ms = at_ms;
    }
}

/* Stores how far the stream is applied (see s_heard), at most every
 * SUB_CAUGHT_UP_MS, with no transaction open. A failure is only logged:
 * the stored time then lags, which delays holds, never ends one early. */
static void s_store_reached(sub_t *s)
{
    if (s->wait_head && s->cursor >= s->wait_head) {
        if (s->wait_ms > s->reached_ms)
            s->reached_ms = s->wait_ms;
        s->wait_head = 0;
    }
    if (s->locked && s->heard && !s->heard_stored && s->reached_ms == 0 &&
        util_mono_ms() - s->stored_at_ms >= SUB_CAUGHT_UP_MS) {
        s->stored_at_ms = util_mono_ms();
        s_mark_heard(s);
    }
    if (!s->locked || s->reached_ms <= s->stored_ms ||
        util_mono_ms() - s->stored_at_ms < SUB_CAUGHT_UP_MS)
        return;
    char at[24];
    const char *params[2] = {s->stream_name, at};
    snprintf(at, sizeof at, "%" PRId64, s->reached_ms);
    if (db_exec_ok(s->db, &s_caught_up, params) != 0) {
        slog_warn("consumer %s: cannot store how far the stream is applied: %s", s->stream_name,
                  db_error(s->db));
        db_rollback(s->db);
    } else {
        s->stored_ms = s->reached_ms;
    }
    s->stored_at_ms = util_mono_ms();
}

/* Reads one two-frame message. Returns 1 with an envelope in *env, 2 for a
 * heartbeat handled in place, 0 when nothing is queued, 3 to ignore. */
static int s_recv(sub_t *s, Shop__Common__V1__Envelope **env)
{
    char topic[256];
    zmq_msg_t body;
    int more = 0;
    size_t more_len = sizeof more;
    int tlen = zmq_recv(s->sock, topic, sizeof topic - 1, ZMQ_DONTWAIT);
    int rc = 3;

    if (tlen == -1)
        return 0;
    if (tlen > (int)sizeof topic - 1)
        tlen = (int)sizeof topic - 1;
    topic[tlen] = '\0';
    zmq_getsockopt(s->sock, ZMQ_RCVMORE, &more, &more_len);
    if (!more)
        return 3;
    zmq_msg_init(&body);
    if (zmq_msg_recv(&body, s->sock, 0) == -1) {
        zmq_msg_close(&body);
        return 3;
    }
    /* Drain any unexpected extra frames. */
    for (bool more_frames = zmq_msg_more(&body); more_frames;) {
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        more_frames = zmq_msg_recv(&extra, s->sock, 0) != -1 && zmq_msg_more(&extra);
        zmq_msg_close(&extra);
        rc = -1;
    }
    if (rc == -1 || zmq_msg_size(&body) > SUB_MAX_FRAME) {
        rc = 3;
        goto done;
    }
    if (strcmp(topic, HEARTBEAT_TOPIC) == 0) {
        Shop__Common__V1__Heartbeat *hb = shop__common__v1__heartbeat__unpack(
            NULL, zmq_msg_size(&body), zmq_msg_data(&body));
        if (hb) {
            if (strcmp(hb->source, s->stream_name) == 0) {
                s->heard = true;
                /* 1: a publisher that does not know (it does not hold
                 * the relay's lock, or just started); 0: one older than
                 * the field, which does not know either (its sent_at_ms
                 * was only true while no transaction stayed open long) */
                if (hb->complete_before_ms > 1)
                    s_heard(s, hb->head_sequence, hb->complete_before_ms);
                if (hb->head_sequence > s->head)
                    s->head = hb->head_sequence;
            }
            shop__common__v1__heartbeat__free_unpacked(hb, NULL);
        }
        rc = 2;
        goto done;
    }
    *env = shop__common__v1__envelope__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
    if (!*env) {
        slog_warn("consumer %s: malformed event on topic %s", s->stream_name, topic);
        goto done;
    }
    if (strcmp((*env)->source, s->stream_name) != 0) {
        shop__common__v1__envelope__free_unpacked(*env, NULL);
        *env = NULL;
        goto done;
    }
    rc = 1;
done:
    zmq_msg_close(&body);
    return rc;
}

static void *s_run(void *arg)
{
    sub_t *s = arg;
    Shop__Common__V1__Envelope *batch[SUB_BATCH];
    bool need_catch_up = true;
    int64_t last_event_ms = util_mono_ms();

    util_thread_name("sub-%s", s->stream_name);
    while (!atomic_load(&s->stop)) {
        size_t n = 0;
        zmq_pollitem_t item = {s->sock, 0, ZMQ_POLLIN, 0};

        if (!s->locked) {
            if (!db_ensure(s->db) || !(s->locked = s_take_lock(s))) {
                util_nap_ms(&s->stop, 1000);
                continue;
            }
            need_catch_up = true;
        }
        if (s->backoff_ms > 0)
            util_nap_ms(&s->stop, s->backoff_ms);
        if (need_catch_up && !atomic_load(&s->stop)) {
            need_catch_up = s_catch_up(s) == -1;
            if (need_catch_up && s->backoff_ms == 0)
                s->backoff_ms = SUB_BACKOFF_MIN_MS;
            last_event_ms = util_mono_ms();
            continue;
        }
        if (zmq_poll(&item, 1, SUB_POLL_MS) == -1 && errno != EINTR)
            util_nap_ms(&s->stop, SUB_POLL_MS);
        while (n < SUB_BATCH) {
            Shop__Common__V1__Envelope *e = NULL;
            int r = s_recv(s, &e);
            if (r == 0)
                break;
            if (r == 1)
                batch[n++] = e;
        }
        if (n > 0) {
            last_event_ms = util_mono_ms();
            if (s_apply(s, batch, n) != S_APPLIED)
                need_catch_up = true; /* a gap, or a failure: Replay refetches */
            for (size_t i = 0; i < n; i++)
                shop__common__v1__envelope__free_unpacked(batch[i], NULL);
        } else if (s->head > s->cursor && util_mono_ms() - last_event_ms >= SUB_QUIET_MS) {
            need_catch_up = true;
        }
        s_save(s, false);
        s_store_reached(s);
    }
    s_save(s, true);
    return NULL;
}

/* Frees a consumer whose thread is not running (never started, or joined). */
static void s_free(sub_t *s)
{
    if (!s)
        return;
    if (s->sock)
        zmq_close(s->sock);
    client_destroy(&s->client);
    db_destroy(&s->db);
    free(s->stream_name);
    free(s->topic_prefix);
    free(s->rpc_endpoint);
    free(s->schema);
    free(s);
}

sub_t *sub_new(void *zctx, const sub_stream_t *stream, const char *pub_endpoint,
               const char *rpc_endpoint, const char *conninfo, const char *schema,
               void *settings, metrics_t *m, size_t index)
{
    sub_t *s = calloc(1, sizeof *s);
    char app[160];
    int linger = 0, hwm = 100000;
    int64_t maxmsg = SUB_MAX_FRAME;

    if (!s || !stream || !stream->apply)
        goto fail;
    atomic_init(&s->stop, false);
    s->stream = *stream;
    s->stream_name = strdup(stream->stream);
    s->topic_prefix = strdup(stream->topic_prefix ? stream->topic_prefix : "");
    s->rpc_endpoint = strdup(rpc_endpoint);
    s->schema = strdup(schema);
    if (!s->stream_name || !s->topic_prefix || !s->rpc_endpoint || !s->schema)
        goto fail;
    s->zctx = zctx;
    s->settings = settings;
    s->metrics = m;
    s->index = index;
    snprintf(app, sizeof app, "%s-consume-%s", schema, stream->stream);
    /* The consumer's commits need not wait for the WAL flush: an effect
     * and its cursor are one transaction, so a commit lost in a crash of
     * PostgreSQL loses both and the events are applied again; and anything
     * that leaves the database afterwards (an event the relay stamps and
     * publishes) commits synchronously later in the same WAL, which makes
     * this commit durable before it. */
    s->db = db_new_with(conninfo, schema, app, 0, "-c synchronous_commit=off");
    if (!s->db)
        goto fail;
    s->client = client_new(zctx, rpc_endpoint);
    if (!s->client)
        goto fail;
    s->sock = zmq_socket(zctx, ZMQ_SUB);
    if (!s->sock)
        goto fail;
    zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, s->topic_prefix, strlen(s->topic_prefix));
    zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, HEARTBEAT_TOPIC, strlen(HEARTBEAT_TOPIC));
    if (zmq_connect(s->sock, pub_endpoint) == -1) {
        slog_error("consumer %s: cannot connect to %s: %s", stream->stream, pub_endpoint,
                   zmq_strerror(errno));
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, s_run, s) != 0)
        goto fail;
    return s;
fail:
    slog_error("consumer: cannot start the consumer of stream %s",
               stream && stream->stream ? stream->stream : "?");
    s_free(s);
    return NULL;
}

void sub_destroy(sub_t **p)
{
    sub_t *s = p ? *p : NULL;

    if (!s)
        return;
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    s_free(s);
    *p = NULL;
}
