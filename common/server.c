/* server: the service runtime — configuration, migrations, the libevent loop
 * owning the calls' connections (router.c) and every ZeroMQ socket, worker
 * threads with their own connections, the outbox relay, consumers,
 * maintenance, admin HTTP and draining. */
#include "server.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "admin.h"
#include "arena.h"
#include "client.h"
#include "intake.h"
#include "metrics.h"
#include "outbox.h"
#include "pbpack.h"
#include "router.h"
#include "slog.h"
#include "util.h"
#include "shop/common/v1/common.pb-c.h"

#define REPLAY_METHOD     "shop.common.v1.EventService/Replay"
#define HEARTBEAT_TOPIC   "shop.common.v1.Heartbeat"
#define WORKER_STACK      (256 * 1024)
#define DRAIN_CAP         256      /* messages per socket per wake-up */
#define QUEUE_START       64       /* calls waiting for a free worker: room at first, */
#define QUEUE_CAP         4096     /* doubled as needed up to this */
#define SOCKET_HWM        10000
#define POLL_MS           200      /* how often idle threads look at `stop` */
#define ARENA_CHUNK       (64 * 1024)
#define UNPACK_FACTOR     16       /* unpacked size budget per wire byte */
#define UNPACK_SLACK      (64 * 1024)
#define LOOP_BUSY_GAP_US  20       /* a call this soon after the last is "back to back" */

/* The runtime's own settings, read from the environment. */
typedef struct {
    char *database_url;
    char *rpc_bind;
    char *pub_bind;
    char *admin_addr;
    int64_t admin_port;
    int64_t workers;
    char *log_level;
    int64_t max_message_bytes;
    int64_t statement_timeout_ms;
    int64_t default_deadline_ms;
    int64_t maintenance_ms;
    int64_t heartbeat_ms;
    int64_t drain_timeout_ms;
} rt_cfg_t;

#define RT(field) offsetof(rt_cfg_t, field)
static const cfg_var_t s_runtime_vars[] = {
    {"SHOP_DATABASE_URL", CFG_STR, NULL, 0, 0, RT(database_url),
     "libpq connection string or URL of the service's own role"},
    {"SHOP_RPC_BIND", CFG_STR, "tcp://0.0.0.0:7000", 0, 0, RT(rpc_bind),
     "where the service takes calls: tcp://host:port (host * for every IPv4 and IPv6 address) "
     "or ipc://path"},
    {"SHOP_PUB_BIND", CFG_STR, "tcp://0.0.0.0:7001", 0, 0, RT(pub_bind),
     "ZeroMQ endpoint the PUB socket binds for events"},
    {"SHOP_ADMIN_ADDR", CFG_STR, "0.0.0.0", 0, 0, RT(admin_addr),
     "address of the admin HTTP port (/healthz, /readyz, /metrics)"},
    {"SHOP_ADMIN_PORT", CFG_INT, "8080", 1, 65535, RT(admin_port), "admin HTTP port"},
    {"SHOP_WORKERS", CFG_INT, "8", 1, 64, RT(workers),
     "worker threads, each with its own PostgreSQL connection"},
    {"SHOP_LOG_LEVEL", CFG_STR, "info", 0, 0, RT(log_level), "debug, info, warn or error"},
    {"SHOP_MAX_MESSAGE_BYTES", CFG_INT, "1048576", 1024, 268435456, RT(max_message_bytes),
     "largest request accepted; larger ones get RESOURCE_EXHAUSTED"},
    {"SHOP_STATEMENT_TIMEOUT_MS", CFG_INT, "5000", 0, 3600000, RT(statement_timeout_ms),
     "PostgreSQL statement_timeout of every connection (0 = none)"},
    {"SHOP_DEFAULT_DEADLINE_MS", CFG_INT, "5000", 1, 3600000, RT(default_deadline_ms),
     "deadline of a call whose request sets none"},
    {"SHOP_MAINTENANCE_MS", CFG_INT, "1000", 10, 3600000, RT(maintenance_ms),
     "period of the maintenance tick (expiries) and database health check"},
    {"SHOP_HEARTBEAT_MS", CFG_INT, "1000", 10, 3600000, RT(heartbeat_ms),
     "period of the heartbeat carrying the stream's head sequence"},
    {"SHOP_DRAIN_TIMEOUT_MS", CFG_INT, "10000", 0, 3600000, RT(drain_timeout_ms),
     "how long SIGTERM waits for calls in flight before exiting"},
    CFG_END,
};

typedef struct server server_t;

/* Per-call state, reused by its worker. */
struct call {
    server_t *srv;
    db_t *db;
    arena_t *arena;
    const char *request_id;
    const char *method;
    const char *idempotency_key;
    const char *traceparent;
    int64_t deadline_ms;
    bool keep_writes;
    bool commits_after;         /* call_commits_after */
    bool unflushed;             /* its caller commits after it: Request.commit_with */
    client_t **clients;         /* one per def->calls entry */
    char message[512];
    /* Runs after the response is packed (for responses not in the arena). */
    void (*cleanup)(ProtobufCMessage *response);
};

typedef struct {
    server_t *srv;
    size_t index;
    pthread_t thread;
    bool started;
    db_t *db;
    void *sock;
    call_t call;
} worker_t;

/* A call waiting for a free worker: the client's identity and its frame. */
typedef struct {
    zmq_msg_t id;
    zmq_msg_t frame;
    int64_t received_us;
} job_t;

struct server {
    const server_def_t *def;
    rt_cfg_t cfg;
    void *settings;
    void *zctx;
    metrics_t *metrics;
    /* Method table: the service's methods, then Replay. */
    const ProtobufCMethodDescriptor **mdesc;
    server_handler_fn *handlers;
    bool *on_loop;      /* per method: runs first on the loop (server_def_t.on_loop) */
    bool any_on_loop;
    call_t loop_call;   /* the call of the method running on the loop, without a database */
    int64_t loop_done_us;   /* when the loop last finished with a call */
    size_t lanes;           /* calls at workers beyond which the loop keeps its own */
    size_t n_service_methods;
    size_t replay_index;

    struct event_base *base;
    router_t *router;   /* calls from other processes (SHOP_RPC_BIND) */
    void *front;        /* calls from this one (the intake), over inproc */
    void *back, *pub, *relay_pull;
    struct event *ev_front, *ev_back, *ev_relay, *ev_heartbeat, *ev_drain;
    struct event *ev_term, *ev_int;
    admin_t *admin;
    char back_endpoint[96];
    char relay_endpoint[96];

    worker_t *workers;
    size_t *idle;       /* stack of idle worker indexes */
    size_t n_idle;
    job_t *queue;       /* ring of calls waiting for a worker */
    size_t q_head, q_len, q_cap;
    size_t inflight;    /* dispatched to a worker, reply not yet sent */
    bool touched;       /* front or back written since the last s_kick */
    bool draining;
    int64_t drain_deadline_us;

    pthread_t maint_thread;
    bool maint_started;
    atomic_bool stop;
    _Atomic int64_t db_ok_us;   /* last time the database answered */

    relay_t *relay;
    sub_t **subs;
    intake_t *intake;
    listener_t *listener;
    char self_endpoint[96];     /* a ROUTER for the intake's calls, over inproc */
};

/* --- protobuf-c allocation with a budget (a message cannot unpack into
 * more memory than its size warrants) -------------------------------- */

typedef struct {
    size_t used, cap;
} budget_t;

static void *s_budget_alloc(void *data, size_t size)
{
    budget_t *b = data;

    if (size > b->cap - b->used)
        return NULL;
    b->used += size;
    return malloc(size);
}

static void s_budget_free(void *data, void *ptr)
{
    (void)data;
    free(ptr);
}

/* The running server, for what runs outside a call (server_anomaly). */
static server_t *s_running;

void server_anomaly(const char *kind, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    size_t i = 0;
    const char *const *kinds = s_running ? s_running->def->anomalies : NULL;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    slog_error("anomaly %s: %s", kind, text);
    while (kinds && kinds[i] && strcmp(kinds[i], kind) != 0)
        i++;
    if (kinds && kinds[i] && s_running->metrics)
        metrics_anomaly(s_running->metrics, i);
}

/* db_after_commit's callback: `arg` is the kind (a def's static string). */
static void s_anomaly_committed(void *arg, const char *text)
{
    server_anomaly(arg, "%s", text);
}

int server_anomaly_on_commit(db_t *db, const char *kind, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return db_after_commit(db, s_anomaly_committed, (void *)kind, text);
}

/* --- the call API ------------------------------------------------------- */

db_t *call_db(call_t *call) { return call->db; }
status_t call_defer(call_t *call) { (void)call; return STATUS_DEFER; }
void *call_settings(const call_t *call) { return call->srv->settings; }
const char *call_request_id(const call_t *call) { return call->request_id; }
const char *call_method(const call_t *call) { return call->method; }
const char *call_idempotency_key(const call_t *call) { return call->idempotency_key; }
int64_t call_deadline_ms(const call_t *call) { return call->deadline_ms; }
void call_keep_writes(call_t *call) { call->keep_writes = true; }
void call_commits_after(call_t *call) { call->commits_after = true; }

int call_commit(call_t *call)
{
    if (!call->db || db_commit(call->db) != 0)
        return -1;
    return db_begin_lazy(call->db);
}

void call_without_transaction(call_t *call)
{
    if (call->db)
        db_autocommit(call->db);
}

/* A call to `service` with one of `clients` (in the def's `calls` order). */
static status_t s_remote(const server_t *srv, client_t **clients, const char *service,
                         const char *method, const ProtobufCMessage *request,
                         const ProtobufCMessageDescriptor *response_type,
                         ProtobufCMessage **response, int timeout_ms, const char *commit_with,
                         char **message)
{
    const char *const *calls = srv->def->calls;

    for (size_t i = 0; calls && calls[i]; i++) {
        if (strcmp(calls[i], service) != 0)
            continue;
        client_commit_with(clients[i], commit_with);
        return client_call(clients[i], method, request, response_type, response, NULL,
                           timeout_ms, 2, message);
    }
    slog_error("%s is not among the services %s calls", service, srv->def->name);
    return STATUS_INTERNAL;
}

status_t call_remote(call_t *call, const char *service, const char *method,
                     const ProtobufCMessage *request, const ProtobufCMessageDescriptor *response_type,
                     ProtobufCMessage **response, int timeout_ms, char **message)
{
    int64_t left = call->deadline_ms - util_now_ms();

    *response = NULL;
    if (message)
        *message = NULL;
    if (!call->clients)
        return STATUS_DEFER;   /* on the loop thread: a worker makes the call */
    if (left <= 0)
        return STATUS_DEADLINE_EXCEEDED;
    if (left < timeout_ms)
        timeout_ms = (int)left;
    return s_remote(call->srv, call->clients, service, method, request, response_type, response,
                    timeout_ms, call->commits_after && call->db ? db_cluster(call->db) : NULL,
                    message);
}

static int s_new_clients(server_t *srv, client_t ***out);
static void s_free_clients(server_t *srv, client_t ***clients);

/* The maintenance thread's clients (see server_remote). */
static _Thread_local client_t **s_maint_clients;
static _Thread_local server_t *s_maint_srv;

status_t server_remote(const char *service, const char *method, const ProtobufCMessage *request,
                       const ProtobufCMessageDescriptor *response_type,
                       ProtobufCMessage **response, int timeout_ms, char **message)
{
    *response = NULL;
    if (message)
        *message = NULL;
    if (!s_maint_srv) {
        slog_error("server_remote: only the maintenance thread calls with it");
        return STATUS_INTERNAL;
    }
    if (!s_maint_clients && s_new_clients(s_maint_srv, &s_maint_clients) != 0) {
        s_free_clients(s_maint_srv, &s_maint_clients);
        return STATUS_UNAVAILABLE;
    }
    return s_remote(s_maint_srv, s_maint_clients, service, method, request, response_type,
                    response, timeout_ms, NULL, message);
}

void *call_alloc_uninit(call_t *call, size_t size)
{
    void *p = arena_alloc_uninit(call->arena, size);

    if (!p) {
        slog_error("out of memory allocating %zu bytes for a reply", size);
        abort();
    }
    return p;
}

void *call_alloc(call_t *call, size_t size)
{
    return memset(call_alloc_uninit(call, size), 0, size);
}

char *call_strdup(call_t *call, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = call_alloc_uninit(call, n);

    memcpy(p, s, n);
    return p;
}

Shop__Common__V1__Money *call_money(call_t *call, int64_t minor_units, const char *currency)
{
    Shop__Common__V1__Money *m = call_alloc(call, sizeof *m);

    shop__common__v1__money__init(m);
    m->minor_units = minor_units;
    m->currency = call_strdup(call, currency);
    return m;
}

uint8_t *call_pack(call_t *call, const ProtobufCMessage *msg, size_t *len)
{
    const uint8_t *packed = pbpack(msg, len);

    if (!packed) {
        slog_error("out of memory packing a %s", msg->descriptor->name);
        abort();
    }
    return memcpy(call_alloc_uninit(call, *len ? *len : 1), packed, *len);
}

static void *s_call_alloc(void *data, size_t size) { return call_alloc(data, size); }
static void s_call_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

ProtobufCAllocator call_allocator(call_t *call)
{
    ProtobufCAllocator a = {s_call_alloc, s_call_free, call};
    return a;
}

status_t call_fail(call_t *call, status_t code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(call->message, sizeof call->message, fmt, ap);
    va_end(ap);
    return code;
}

status_t call_db_fail(call_t *call, const char *what)
{
    if (!call->db)
        return call_fail(call, STATUS_INTERNAL, "%s: no database on the loop thread", what);
    const char *state = db_sqlstate(call->db);
    status_t code = STATUS_INTERNAL;
    const char *why = "database error";

    if (db_lost(call->db)) {
        code = STATUS_UNAVAILABLE;
        why = "database unavailable, retry";
    } else if (strcmp(state, "23505") == 0) {
        code = STATUS_ALREADY_EXISTS;
        why = "already exists";
    } else if (strcmp(state, "23514") == 0) {
        code = STATUS_FAILED_PRECONDITION;
        why = "a constraint does not allow it";
    } else if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
        code = STATUS_ABORTED;
        why = "conflict with a concurrent change, retry";
    } else if (strcmp(state, "57014") == 0) {
        code = STATUS_DEADLINE_EXCEEDED;
        why = "statement timed out";
    }
    slog_call(SLOG_WARN, call->request_id, call->method, "%s failed: sqlstate %s: %s", what,
              state[0] ? state : "-", db_error(call->db));
    return call_fail(call, code, "%s: %s", what, why);
}

static int s_emit(db_t *db, const ProtobufCMessage *event, const char *correlation_id,
                  const char *traceparent)
{
    size_t len;
    const uint8_t *buf = pbpack(event, &len);

    if (!buf)
        return -1;
    return outbox_add(db, event->descriptor->name, buf, len, correlation_id, NULL, traceparent);
}

int call_emit(call_t *call, const ProtobufCMessage *event)
{
    if (!call->db)
        return -1;
    return s_emit(call->db, event, call->request_id[0] ? call->request_id : NULL,
                  call->traceparent[0] ? call->traceparent : NULL);
}

int server_emit(db_t *db, const ProtobufCMessage *event, const char *correlation_id)
{
    return s_emit(db, event, correlation_id, NULL);
}

/* --- the runtime's own method: Replay ------------------------------------ */

static void s_replay_cleanup(ProtobufCMessage *response)
{
    outbox_replay_clear((Shop__Common__V1__ReplayResponse *)response);
}

static status_t s_replay(call_t *call, const ProtobufCMessage *request, ProtobufCMessage *response)
{
    const Shop__Common__V1__ReplayRequest *req = (const Shop__Common__V1__ReplayRequest *)request;
    Shop__Common__V1__ReplayResponse *resp = (Shop__Common__V1__ReplayResponse *)response;

    call->cleanup = s_replay_cleanup;
    if (outbox_replay(call->db, call->srv->def->name, req->after_sequence, req->limit,
                      req->max_bytes, resp) != 0)
        return call_db_fail(call, "replay");
    return STATUS_OK;
}

/* --- workers -------------------------------------------------------------- */

/* Finds the method named "<service>/<Method>"; its index or SIZE_MAX. */
static size_t s_find_method(const server_t *srv, const char *name)
{
    const char *slash = strrchr(name, '/');
    const ProtobufCServiceDescriptor *svc = srv->def->service;

    if (!slash)
        return SIZE_MAX;
    if (strcmp(name, REPLAY_METHOD) == 0)
        return srv->replay_index;
    if (!svc || strlen(svc->name) != (size_t)(slash - name) ||
        strncmp(name, svc->name, (size_t)(slash - name)) != 0)
        return SIZE_MAX;
    const ProtobufCMethodDescriptor *m =
        protobuf_c_service_descriptor_get_method_by_name(svc, slash + 1);
    return m ? (size_t)(m - svc->methods) : SIZE_MAX;
}

/* Runs one call: `frame` holds a packed Request. Fills reply (whose
 * request_id and status message point into the call). On the loop thread
 * (no call->db), STATUS_DEFER for a method that does not run there or
 * whose handler asked for a worker. */
static status_t s_handle(call_t *call, const uint8_t *frame, size_t len, int64_t received_us,
                         ProtobufCBinaryData *body, size_t *method_index)
{
    server_t *srv = call->srv;
    db_t *db = call->db;
    budget_t budget = {0, len * UNPACK_FACTOR + UNPACK_SLACK};
    ProtobufCAllocator alloc = {s_budget_alloc, s_budget_free, &budget};
    Shop__Common__V1__Request *req = NULL;
    ProtobufCMessage *in = NULL;
    ProtobufCMessage *out = NULL;
    const ProtobufCMethodDescriptor *md;
    status_t code;

    *method_index = SIZE_MAX;
    req = shop__common__v1__request__unpack(&alloc, len, frame);
    if (!req)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "malformed request frame");
    call->request_id = call_strdup(call, req->request_id);
    call->method = call_strdup(call, req->method);
    call->idempotency_key = call_strdup(call, req->idempotency_key);
    call->traceparent = call_strdup(call, req->traceparent);
    call->deadline_ms = req->deadline_ms > 0
                            ? req->deadline_ms
                            : util_now_ms() + srv->cfg.default_deadline_ms -
                                  (util_mono_us() - received_us) / 1000;

    *method_index = s_find_method(srv, req->method);
    if (!db && (*method_index == SIZE_MAX || !srv->on_loop[*method_index])) {
        code = STATUS_DEFER;
        goto done;
    }
    if (*method_index == SIZE_MAX) {
        code = call_fail(call, STATUS_UNIMPLEMENTED, "unknown method \"%.200s\"", req->method);
        goto done;
    }
    md = srv->mdesc[*method_index];
    in = protobuf_c_message_unpack(md->input, &alloc, req->body.len, req->body.data);
    if (!in) {
        code = call_fail(call, STATUS_INVALID_ARGUMENT, "malformed %s body", md->input->name);
        goto done;
    }
    if (util_now_ms() > call->deadline_ms) {
        code = call_fail(call, STATUS_DEADLINE_EXCEEDED, "deadline passed before the call started");
        goto done;
    }
    if (db && !db_ensure(db)) {
        code = call_fail(call, STATUS_UNAVAILABLE, "database unavailable, retry");
        goto done;
    }
    /* after db_ensure: a reconnect reads the cluster's identity again */
    call->unflushed = db && req->commit_with[0] && strcmp(req->commit_with, db_cluster(db)) == 0;
    if (db && db_begin_lazy(db) != 0) {
        code = call_db_fail(call, "begin");
        goto done;
    }
    out = call_alloc(call, md->output->sizeof_message);
    md->output->message_init(out);
    code = srv->handlers[*method_index](call, in, out);
    if (code == STATUS_DEFER) {
        if (call->cleanup)
            call->cleanup(out);
        call->cleanup = NULL;
        out = NULL;
        if (db) {   /* only the loop may defer */
            db_rollback(db);
            code = call_fail(call, STATUS_INTERNAL, "%s deferred on a worker", req->method);
        }
    } else if (!db) {
        /* nothing to commit */
    } else if (code == STATUS_OK || call->keep_writes) {
        int rc = call->unflushed ? db_commit_unflushed(db) : db_commit(db);
        if (rc == 1)
            metrics_unflushed(srv->metrics);
        if (rc < 0) {
            code = call_db_fail(call, "commit");
            if (call->cleanup)
                call->cleanup(out);
            call->cleanup = NULL;
            out = NULL;
        }
    } else {
        db_rollback(db);
    }
    if (out) {
        body->data = call_pack(call, out, &body->len);   /* the Reply is packed next */
        if (call->cleanup)
            call->cleanup(out);
        call->cleanup = NULL;
    }
done:
    if (in)
        protobuf_c_message_free_unpacked(in, &alloc);
    shop__common__v1__request__free_unpacked(req, &alloc);
    return code;
}

/* Packs `m` into a new zmq message. Returns 0 or -1. */
static int s_pack_msg(zmq_msg_t *msg, const ProtobufCMessage *m)
{
    size_t len;
    const uint8_t *packed = pbpack(m, &len);

    if (!packed || zmq_msg_init_size(msg, len) != 0)
        return -1;
    memcpy(zmq_msg_data(msg), packed, len);
    return 0;
}

/* Packs a Reply into a new zmq message. Returns 0 or -1. */
static int s_pack_reply(zmq_msg_t *msg, const char *request_id, status_t code, const char *text,
                        ProtobufCBinaryData body)
{
    Shop__Common__V1__Reply reply = SHOP__COMMON__V1__REPLY__INIT;
    Shop__Common__V1__Status status = SHOP__COMMON__V1__STATUS__INIT;

    status.code = (Shop__Common__V1__Code)code;
    status.message = (char *)text;
    reply.request_id = (char *)request_id;
    reply.status = &status;
    reply.body = body;
    return s_pack_msg(msg, &reply.base);
}

static int s_send_frames(void *sock, zmq_msg_t *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (zmq_msg_send(&parts[i], sock, i + 1 < n ? ZMQ_SNDMORE : 0) < 0) {
            for (size_t j = i; j < n; j++)
                zmq_msg_close(&parts[j]);
            return -1;
        }
    }
    return 0;
}

/* Receives one whole multipart message (up to `max` parts kept; extra parts
 * are read and dropped). Returns the part count, or -1 (EAGAIN etc.). */
static int s_recv_parts(void *sock, zmq_msg_t *parts, int max, int flags)
{
    int n = 0;
    int more = 1;

    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, n == 0 ? flags : 0) < 0) {
            zmq_msg_close(&m);
            for (int i = 0; i < n && i < max; i++)
                zmq_msg_close(&parts[i]);
            return -1;
        }
        more = zmq_msg_more(&m);
        if (n < max)
            parts[n] = m;
        else
            zmq_msg_close(&m);
        n++;
    }
    return n;
}

/* Runs the call in `frame` and packs its reply into *reply; STATUS_DEFER
 * (nothing packed, counted or logged) when a call on the loop thread goes
 * to a worker. */
static status_t s_run(call_t *call, zmq_msg_t *frame, int64_t received_us, zmq_msg_t *reply)
{
    ProtobufCBinaryData body = {0, NULL};
    size_t method_index;
    status_t code;

    call->request_id = call->method = call->idempotency_key = call->traceparent = "";
    call->keep_writes = call->commits_after = call->unflushed = false;
    call->message[0] = '\0';
    call->cleanup = NULL;
    code = s_handle(call, zmq_msg_data(frame), zmq_msg_size(frame), received_us, &body,
                    &method_index);
    if (code != STATUS_DEFER) {
        if (code != STATUS_OK)
            slog_call(SLOG_WARN, call->request_id, call->method, "call failed: %s: %s",
                      status_name(code), call->message);
        metrics_request(call->srv->metrics, method_index, code, util_mono_us() - received_us);
        if (s_pack_reply(reply, call->request_id, code, call->message, body) != 0) {
            slog_error("out of memory packing a reply");
            abort();
        }
    }
    arena_reset(call->arena);
    return code;
}

static void *s_worker_main(void *arg)
{
    worker_t *w = arg;
    server_t *srv = w->srv;
    zmq_msg_t ready;
    zmq_pollitem_t item = {w->sock, 0, ZMQ_POLLIN, 0};

    util_thread_name("worker-%zu", w->index);
    zmq_msg_init(&ready);
    if (zmq_msg_send(&ready, w->sock, 0) < 0)
        zmq_msg_close(&ready);
    while (!atomic_load(&srv->stop)) {
        zmq_msg_t parts[3];
        int64_t received_us;

        if (zmq_poll(&item, 1, POLL_MS) <= 0)
            continue;
        int n = s_recv_parts(w->sock, parts, 3, ZMQ_DONTWAIT);
        if (n < 0)
            continue;
        if (n != 3) {
            for (int i = 0; i < n && i < 3; i++)
                zmq_msg_close(&parts[i]);
            continue;
        }
        memcpy(&received_us, zmq_msg_data(&parts[2]), sizeof received_us);
        zmq_msg_close(&parts[2]);

        zmq_msg_t reply;
        s_run(&w->call, &parts[1], received_us, &reply);
        zmq_msg_close(&parts[1]);
        parts[1] = reply;
        if (s_send_frames(w->sock, parts, 2) != 0)
            slog_error("worker %zu: cannot hand a reply to the loop: %s", w->index,
                       zmq_strerror(errno));
    }
    return NULL;
}

/* --- maintenance ------------------------------------------------------------ */


static void *s_maint_main(void *arg)
{
    server_t *srv = arg;

    util_thread_name("maintenance");
    s_maint_srv = srv;
    db_t *db = db_new(srv->cfg.database_url, srv->def->name, "maintenance",
                      (int)srv->cfg.statement_timeout_ms);

    while (!atomic_load(&srv->stop)) {
        if (!db) {
            db = db_new(srv->cfg.database_url, srv->def->name, "maintenance",
                        (int)srv->cfg.statement_timeout_ms);
        } else if (db_ensure(db) && db_command(db, "SELECT 1") == 0) {
            atomic_store(&srv->db_ok_us, util_mono_us());
            if (srv->def->maintain) {
                if (db_begin(db) != 0) {
                    slog_warn("maintenance: cannot begin: %s", db_error(db));
                } else if (srv->def->maintain(db, srv->settings) == 0) {
                    if (db_commit(db) != 0)
                        slog_warn("maintenance: commit failed: %s", db_error(db));
                } else {
                    db_rollback(db);
                }
            }
        }
        util_nap_ms(&srv->stop, srv->cfg.maintenance_ms);
    }
    db_destroy(&db);
    s_free_clients(srv, &s_maint_clients);
    return NULL;
}

static bool s_ready(void *arg, char *reason, size_t len)
{
    server_t *srv = arg;
    int64_t ok = atomic_load(&srv->db_ok_us);
    int64_t window = 3 * srv->cfg.maintenance_ms * 1000 + 1000000;

    if (srv->draining) {
        snprintf(reason, len, "draining: shutting down");
        return false;
    }
    if (ok == 0 || util_mono_us() - ok > window) {
        snprintf(reason, len, "database has not answered in the last %" PRId64 " ms",
                 window / 1000);
        return false;
    }
    return true;
}

/* --- the loop ----------------------------------------------------------------- */

/* True if `sock` has a message to read now (ZMQ_EVENTS, not the fd). */
static bool s_readable(void *sock)
{
    int events;
    size_t sz = sizeof events;

    return zmq_getsockopt(sock, ZMQ_EVENTS, &events, &sz) == 0 && (events & ZMQ_POLLIN);
}

/* Activates the events of sockets with input waiting: ZMQ_FD is edge
 * triggered and a send can consume the edge of a pending receive. */
static void s_kick(server_t *srv)
{
    srv->touched = false;
    if (s_readable(srv->front))
        event_active(srv->ev_front, EV_READ, 0);
    if (s_readable(srv->back))
        event_active(srv->ev_back, EV_READ, 0);
}

/* Sends a reply to the caller `id` names, over the router or the inproc
 * ROUTER it came in on; takes both messages. */
static void s_send_reply(server_t *srv, zmq_msg_t *id, zmq_msg_t *reply)
{
    zmq_msg_t parts[2];

    if (router_reply(srv->router, id, reply))
        return;
    parts[0] = *id;
    parts[1] = *reply;
    srv->touched = true;
    s_send_frames(srv->front, parts, 2);
}

/* Answers a call from the loop itself (the call never reached a worker). */
static void s_reply_direct(server_t *srv, zmq_msg_t *id, status_t code, const char *text)
{
    zmq_msg_t reply;
    ProtobufCBinaryData none = {0, NULL};

    if (s_pack_reply(&reply, "", code, text, none) != 0) {
        zmq_msg_close(id);
        return;
    }
    metrics_request(srv->metrics, SIZE_MAX, code, 0);
    s_send_reply(srv, id, &reply);
}

static void s_dispatch(server_t *srv, size_t worker, zmq_msg_t *id, zmq_msg_t *frame,
                       int64_t received_us)
{
    zmq_msg_t parts[4];
    char wid[16];
    int n = snprintf(wid, sizeof wid, "w%zu", worker);

    zmq_msg_init_size(&parts[0], (size_t)n);
    memcpy(zmq_msg_data(&parts[0]), wid, (size_t)n);
    parts[1] = *id;
    parts[2] = *frame;
    zmq_msg_init_size(&parts[3], sizeof received_us);
    memcpy(zmq_msg_data(&parts[3]), &received_us, sizeof received_us);
    srv->touched = true;
    if (s_send_frames(srv->back, parts, 4) != 0) {
        slog_error("cannot hand a call to worker %zu: %s", worker, zmq_strerror(errno));
        return;
    }
    srv->inflight++;
}

/* The waiting ring twice as large, unwrapped; false at QUEUE_CAP or out
 * of memory. It starts small: a ring cycles through all its slots under
 * steady load, and 4,096 of them kept 557 KiB resident in every service. */
static bool s_queue_grow(server_t *srv)
{
    job_t *q = srv->q_cap < QUEUE_CAP ? malloc(2 * srv->q_cap * sizeof *q) : NULL;

    if (!q)
        return false;
    for (size_t i = 0; i < srv->q_len; i++)
        q[i] = srv->queue[(srv->q_head + i) % srv->q_cap];
    free(srv->queue);
    srv->queue = q;
    srv->q_head = 0;
    srv->q_cap *= 2;
    return true;
}

/* A call from `id`: its one frame, or NULL when it came in `frames`
 * frames or `bytes` over SHOP_MAX_MESSAGE_BYTES (refused unread). Takes
 * both messages. */
static void s_on_call(server_t *srv, zmq_msg_t *id, zmq_msg_t *frame, size_t frames, size_t bytes)
{
    char text[160];
    int64_t now = util_mono_us();

    if (frames != 1) {
        if (frame)
            zmq_msg_close(frame);
        snprintf(text, sizeof text, "expected one frame per request, got %zu", frames);
        s_reply_direct(srv, id, STATUS_INVALID_ARGUMENT, text);
        return;
    }
    if (!frame || bytes > (size_t)srv->cfg.max_message_bytes) {
        if (frame)
            zmq_msg_close(frame);
        snprintf(text, sizeof text, "request of %zu bytes exceeds SHOP_MAX_MESSAGE_BYTES (%" PRId64 ")",
                 bytes, srv->cfg.max_message_bytes);
        s_reply_direct(srv, id, STATUS_RESOURCE_EXHAUSTED, text);
        return;
    }
    /* A method that runs on the loop runs there unless calls come back
     * to back (the loop is the bottleneck) and fewer calls are at the
     * workers than the process has other cores: then a worker takes it.
     * Measured (bench/promotions-run, 2 cores, one worker at a time):
     * quotes/s +10-13% and p99 -15% at concurrency 8, +3% CPU a quote;
     * handing every call over when busy cost 10-15% more CPU a quote. */
    bool offload = srv->n_idle > 0 && srv->inflight < srv->lanes &&
                   now - srv->loop_done_us < LOOP_BUSY_GAP_US;
    if (srv->any_on_loop && !offload) {
        zmq_msg_t reply;
        if (s_run(&srv->loop_call, frame, now, &reply) != STATUS_DEFER) {
            zmq_msg_close(frame);
            s_send_reply(srv, id, &reply);
            srv->loop_done_us = util_mono_us();
            return;
        }
    }
    srv->loop_done_us = util_mono_us();
    if (srv->n_idle > 0) {
        s_dispatch(srv, srv->idle[--srv->n_idle], id, frame, now);
        return;
    }
    if (srv->q_len == srv->q_cap && !s_queue_grow(srv)) {
        zmq_msg_close(frame);
        s_reply_direct(srv, id, STATUS_RESOURCE_EXHAUSTED, "server overloaded, retry later");
        return;
    }
    job_t *j = &srv->queue[(srv->q_head + srv->q_len++) % srv->q_cap];
    j->id = *id;
    j->frame = *frame;
    j->received_us = now;
}

static void s_on_router(void *arg, zmq_msg_t *route, zmq_msg_t *frame, size_t frames, size_t bytes)
{
    server_t *srv = arg;

    s_on_call(srv, route, frame, frames, bytes);
    /* a call answered on the loop touched no ZeroMQ socket, so no edge of
     * theirs can have been consumed: two ZMQ_EVENTS reads (a poll each)
     * saved per call */
    if (srv->touched)
        s_kick(srv);
}

/* Calls over inproc (the intake's). */
static void s_on_front(evutil_socket_t fd, short what, void *arg)
{
    server_t *srv = arg;

    (void)fd;
    (void)what;
    for (int i = 0; i < DRAIN_CAP; i++) {
        zmq_msg_t parts[3];
        if (!s_readable(srv->front))
            goto out;
        int n = s_recv_parts(srv->front, parts, 3, ZMQ_DONTWAIT);
        if (n < 0)
            goto out;
        if (n == 1) { /* an identity with no frame: nothing to answer */
            zmq_msg_close(&parts[0]);
            continue;
        }
        size_t bytes = zmq_msg_size(&parts[1]);
        if (n > 2) {   /* refused unread: the two frames kept go */
            zmq_msg_close(&parts[1]);
            zmq_msg_close(&parts[2]);
        }
        if (srv->draining) {   /* answered at once, not left waiting for its time-out */
            if (n == 2)
                zmq_msg_close(&parts[1]);
            s_reply_direct(srv, &parts[0], STATUS_UNAVAILABLE, "shutting down; call again");
            continue;
        }
        s_on_call(srv, &parts[0], n == 2 ? &parts[1] : NULL, (size_t)n - 1, bytes);
    }
    event_active(srv->ev_front, EV_READ, 0);   /* cap reached: yield, then go on */
out:
    s_kick(srv);
}

static void s_on_back(evutil_socket_t fd, short what, void *arg)
{
    server_t *srv = arg;

    (void)fd;
    (void)what;
    for (int i = 0; i < DRAIN_CAP; i++) {
        zmq_msg_t parts[3];
        if (!s_readable(srv->back))
            goto out;
        int n = s_recv_parts(srv->back, parts, 3, ZMQ_DONTWAIT);
        if (n < 0)
            goto out;
        size_t worker = SIZE_MAX;
        char wid[16] = "";
        size_t wl = zmq_msg_size(&parts[0]);
        if (wl > 1 && wl < sizeof wid) {
            memcpy(wid, zmq_msg_data(&parts[0]), wl);
            wid[wl] = '\0';
            worker = strtoul(wid + 1, NULL, 10);
        }
        zmq_msg_close(&parts[0]);
        if (n == 3) { /* [worker][client][reply] */
            srv->inflight--;
            s_send_reply(srv, &parts[1], &parts[2]);
        } else {
            for (int k = 1; k < n && k < 3; k++)
                zmq_msg_close(&parts[k]);
        }
        if (worker >= (size_t)srv->cfg.workers)
            continue;
        if (srv->q_len > 0) {
            job_t *j = &srv->queue[srv->q_head];
            /* an empty ring starts over at its front, so the pages it
             * touches are those of its deepest backlog, not all of it */
            srv->q_head = --srv->q_len ? (srv->q_head + 1) % srv->q_cap : 0;
            s_dispatch(srv, worker, &j->id, &j->frame, j->received_us);
        } else {
            srv->idle[srv->n_idle++] = worker;
        }
    }
    event_active(srv->ev_back, EV_READ, 0);
out:
    s_kick(srv);
}

static void s_on_relay(evutil_socket_t fd, short what, void *arg)
{
    server_t *srv = arg;

    (void)fd;
    (void)what;
    for (int i = 0; i < DRAIN_CAP; i++) {
        zmq_msg_t parts[2];
        if (!s_readable(srv->relay_pull))
            return;
        int n = s_recv_parts(srv->relay_pull, parts, 2, ZMQ_DONTWAIT);
        if (n < 0)
            return;
        if (n == 2)
            s_send_frames(srv->pub, parts, 2);   /* PUB never blocks: drops at HWM */
        else
            for (int k = 0; k < n && k < 2; k++)
                zmq_msg_close(&parts[k]);
    }
    event_active(srv->ev_relay, EV_READ, 0);
}

static void s_on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    server_t *srv = arg;
    Shop__Common__V1__Heartbeat hb = SHOP__COMMON__V1__HEARTBEAT__INIT;
    zmq_msg_t parts[2];
    size_t topic = strlen(HEARTBEAT_TOPIC);

    (void)fd;
    (void)what;
    metrics_connections(srv->metrics, router_connections(srv->router));
    hb.source = (char *)srv->def->name;
    hb.complete_before_ms = relay_complete(srv->relay);   /* before the head it covers */
    hb.head_sequence = relay_head(srv->relay);
    hb.sent_at_ms = util_now_ms();
    if (zmq_msg_init_size(&parts[0], topic) != 0)
        return;
    memcpy(zmq_msg_data(&parts[0]), HEARTBEAT_TOPIC, topic);
    if (s_pack_msg(&parts[1], &hb.base) != 0) {
        zmq_msg_close(&parts[0]);
        return;
    }
    s_send_frames(srv->pub, parts, 2);
}

static void s_on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    server_t *srv = arg;

    (void)fd;
    (void)what;
    if (srv->inflight == 0 && srv->q_len == 0 && router_unsent(srv->router) == 0 &&
        !s_readable(srv->front)) {   /* the intake's last call answered too */
        event_base_loopbreak(srv->base);
    } else if (util_mono_us() > srv->drain_deadline_us) {
        slog_warn("drain timeout: %zu calls still in flight, %zu queued, %zu bytes of replies unsent",
                  srv->inflight, srv->q_len, router_unsent(srv->router));
        event_base_loopbreak(srv->base);
    }
}

static void s_on_signal(evutil_socket_t sig, short what, void *arg)
{
    server_t *srv = arg;
    struct timeval tick = {0, 10000};

    (void)what;
    if (srv->draining)
        return;
    slog_info("signal %d: draining %zu calls in flight", (int)sig, srv->inflight + srv->q_len);
    srv->draining = true;
    router_pause(srv->router);
    intake_stop(srv->intake);   /* no new call; one that comes anyway gets UNAVAILABLE */
    srv->drain_deadline_us = util_mono_us() + srv->cfg.drain_timeout_ms * 1000;
    event_add(srv->ev_drain, &tick);
}

/* --- start-up and shut-down ----------------------------------------------- */

static void *s_socket(server_t *srv, int type)
{
    void *s = zmq_socket(srv->zctx, type);
    int linger = 0, hwm = SOCKET_HWM;

    if (!s)
        return NULL;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    return s;
}

static struct event *s_zmq_event(server_t *srv, void *sock, event_callback_fn cb)
{
    int fd;
    size_t sz = sizeof fd;

    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &sz) != 0)
        return NULL;
    return event_new(srv->base, fd, EV_READ | EV_PERSIST | EV_ET, cb, srv);
}

/* Binds the method table; returns -1 (logged) if a method has no handler. */
static int s_bind_methods(server_t *srv)
{
    const server_def_t *def = srv->def;
    const ProtobufCServiceDescriptor *svc = def->service;
    size_t n = svc ? svc->n_methods : 0;

    srv->n_service_methods = n;
    srv->replay_index = n;
    srv->mdesc = calloc(n + 1, sizeof *srv->mdesc);
    srv->handlers = calloc(n + 1, sizeof *srv->handlers);
    srv->on_loop = calloc(n + 1, sizeof *srv->on_loop);
    if (!srv->mdesc || !srv->handlers || !srv->on_loop)
        return -1;
    for (size_t i = 0; i < n; i++) {
        srv->mdesc[i] = &svc->methods[i];
        for (size_t k = 0; k < def->n_methods; k++)
            if (def->methods[k].request == svc->methods[i].input)
                srv->handlers[i] = def->methods[k].handler;
        for (size_t k = 0; def->on_loop && def->on_loop[k]; k++)
            if (def->on_loop[k] == svc->methods[i].input)
                srv->on_loop[i] = srv->any_on_loop = true;
        if (!srv->handlers[i]) {
            slog_error("%s/%s has no handler in the service's method table", svc->name,
                       svc->methods[i].name);
            return -1;
        }
    }
    srv->mdesc[n] = &shop__common__v1__event_service__descriptor.methods[0];
    srv->handlers[n] = s_replay;
    return 0;
}

static metrics_t *s_metrics_new(server_t *srv)
{
    size_t n = srv->n_service_methods + 1;
    const char **names = calloc(n, sizeof *names);
    char **owned = calloc(n, sizeof *owned);
    const char **streams = calloc(srv->def->n_consumes + 1, sizeof *streams);
    metrics_t *m = NULL;

    if (!names || !owned || !streams)
        goto done;
    for (size_t i = 0; i < srv->n_service_methods; i++) {
        if (asprintf(&owned[i], "%s/%s", srv->def->service->name, srv->mdesc[i]->name) < 0) {
            owned[i] = NULL;
            goto done;
        }
        names[i] = owned[i];
    }
    names[n - 1] = REPLAY_METHOD;
    for (size_t i = 0; i < srv->def->n_consumes; i++)
        streams[i] = srv->def->consumes[i].stream;
    m = metrics_new(srv->def->name, names, n, streams, srv->def->n_consumes);
    size_t n_kinds = 0;
    while (srv->def->anomalies && srv->def->anomalies[n_kinds])
        n_kinds++;
    if (m && metrics_set_anomalies(m, srv->def->anomalies, n_kinds) != 0)
        metrics_destroy(&m);
done:
    if (owned)
        for (size_t i = 0; i < n; i++)
            free(owned[i]);
    free(owned);
    free(names);
    free(streams);
    return m;
}

/* SHOP_<SERVICE>_<what>: where another service's sockets are. */
static void s_peer_var(char *buf, size_t len, const char *service, const char *what)
{
    size_t k = 0;
    char upper[64];

    for (; service[k] && k + 1 < sizeof upper; k++)
        upper[k] = (char)(service[k] >= 'a' && service[k] <= 'z' ? service[k] - 32 : service[k]);
    upper[k] = '\0';
    snprintf(buf, len, "SHOP_%s_%s", upper, what);
}

/* Clients to the services the def calls, in *out (NULL-terminated), for
 * the thread that makes the calls; -1 (logged) if an endpoint is not
 * configured. */
static int s_new_clients(server_t *srv, client_t ***out)
{
    const char *const *calls = srv->def->calls;
    size_t n = 0;

    while (calls && calls[n])
        n++;
    client_t **clients = *out = calloc(n + 1, sizeof *clients);
    if (!clients)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char var[96];
        s_peer_var(var, sizeof var, calls[i], "RPC");
        const char *endpoint = getenv(var);
        if (!endpoint || !*endpoint) {
            slog_error("%s: required to call the %s service but not set", var, calls[i]);
            return -1;
        }
        if (!(clients[i] = client_new(srv->zctx, endpoint)))
            return -1;
    }
    return 0;
}

static void s_free_clients(server_t *srv, client_t ***clients)
{
    for (size_t k = 0; *clients && srv->def->calls && srv->def->calls[k]; k++)
        client_destroy(&(*clients)[k]);
    free(*clients);
    *clients = NULL;
}

static int s_start_workers(server_t *srv)
{
    pthread_attr_t attr;
    int rc = -1;

    srv->workers = calloc((size_t)srv->cfg.workers, sizeof *srv->workers);
    srv->idle = calloc((size_t)srv->cfg.workers, sizeof *srv->idle);
    if (!srv->workers || !srv->idle)
        return -1;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, WORKER_STACK);
    for (size_t i = 0; i < (size_t)srv->cfg.workers; i++) {
        worker_t *w = &srv->workers[i];
        char app[64], wid[16];
        snprintf(app, sizeof app, "%s-worker-%zu", srv->def->name, i);
        int n = snprintf(wid, sizeof wid, "w%zu", i);
        w->srv = srv;
        w->index = i;
        w->call.srv = srv;
        w->call.arena = arena_new(ARENA_CHUNK);
        w->db = db_new_with(srv->cfg.database_url, srv->def->name, app,
                            (int)srv->cfg.statement_timeout_ms, srv->def->db_settings);
        w->call.db = w->db;
        w->sock = s_socket(srv, ZMQ_DEALER);
        if (!w->call.arena || !w->db || !w->sock || s_new_clients(srv, &w->call.clients) != 0)
            goto done;
        if (zmq_setsockopt(w->sock, ZMQ_ROUTING_ID, wid, (size_t)n) != 0 ||
            zmq_connect(w->sock, srv->back_endpoint) != 0)
            goto done;
        if (pthread_create(&w->thread, &attr, s_worker_main, w) != 0)
            goto done;
        w->started = true;
    }
    rc = 0;
done:
    pthread_attr_destroy(&attr);
    return rc;
}

static int s_bind(void *sock, const char *endpoint, const char *var)
{
    if (zmq_bind(sock, endpoint) != 0) {
        slog_error("%s: cannot bind %s: %s", var, endpoint, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

/* Starts the consumers of def->consumes; -1 (logged) on a missing setting. */
static int s_start_consumers(server_t *srv)
{
    const server_def_t *def = srv->def;

    srv->subs = calloc(def->n_consumes + 1, sizeof *srv->subs);
    if (!srv->subs)
        return -1;
    for (size_t i = 0; i < def->n_consumes; i++) {
        char rpc_var[96], pub_var[96];
        const char *name = def->consumes[i].stream;
        s_peer_var(rpc_var, sizeof rpc_var, name, "RPC");
        s_peer_var(pub_var, sizeof pub_var, name, "PUB");
        const char *rpc = getenv(rpc_var), *pub = getenv(pub_var);
        if (!rpc || !*rpc || !pub || !*pub) {
            slog_error("%s: required to consume the %s stream but not set",
                       (!rpc || !*rpc) ? rpc_var : pub_var, name);
            return -1;
        }
        srv->subs[i] = sub_new(srv->zctx, &def->consumes[i], pub, rpc, srv->cfg.database_url,
                               def->name, srv->settings, srv->metrics, i);
        if (!srv->subs[i])
            return -1;
    }
    return 0;
}

/* The intake of def->intake_request, if endpoints are configured; -1
 * (logged) on failure. */
static int s_start_intake(server_t *srv)
{
    const server_def_t *def = srv->def;
    const char *endpoints = def->intake_var ? getenv(def->intake_var) : NULL;

    if (!def->intake_request || !endpoints || !*endpoints)
        return 0;
    for (size_t i = 0; i < srv->n_service_methods; i++) {
        if (srv->mdesc[i]->input != def->intake_request)
            continue;
        char full[256];
        snprintf(full, sizeof full, "%s/%s", def->service->name, srv->mdesc[i]->name);
        srv->intake = intake_new(srv->zctx, endpoints, def->intake_topic, srv->self_endpoint,
                                 srv->mdesc[i], full, (size_t)srv->cfg.max_message_bytes,
                                 srv->metrics);
        return srv->intake ? 0 : -1;
    }
    slog_error("%s: no method takes %s", def->intake_var, def->intake_request->name);
    return -1;
}

static int s_start(server_t *srv)
{
    const server_def_t *def = srv->def;
    db_t *db = NULL;
    int rc = -1;
    struct timeval hb = {srv->cfg.heartbeat_ms / 1000, (srv->cfg.heartbeat_ms % 1000) * 1000};

    if (s_bind_methods(srv) != 0)
        goto done;
    db = db_new(srv->cfg.database_url, def->name, def->name, (int)srv->cfg.statement_timeout_ms);
    if (!db) {
        slog_error("SHOP_DATABASE_URL: cannot connect to the database");
        goto done;
    }
    if (migrate_apply(db, def->name, def->migrations, def->n_migrations) != 0)
        goto done;
    atomic_store(&srv->db_ok_us, util_mono_us());
    srv->metrics = s_metrics_new(srv);
    srv->zctx = zmq_ctx_new();
    srv->base = event_base_new();
    srv->queue = calloc(srv->q_cap = QUEUE_START, sizeof *srv->queue);
    srv->loop_call.srv = srv;
    cpu_set_t mine;   /* the cores this process may run on (a container's cpuset), else all */
    long cpus = sched_getaffinity(0, sizeof mine, &mine) == 0 ? CPU_COUNT(&mine)
                                                               : sysconf(_SC_NPROCESSORS_ONLN);
    srv->lanes = cpus > 1 ? (size_t)cpus - 1 : 0;
    srv->loop_call.arena = arena_new(ARENA_CHUNK);
    if (!srv->metrics || !srv->zctx || !srv->base || !srv->queue || !srv->loop_call.arena)
        goto done;
    snprintf(srv->back_endpoint, sizeof srv->back_endpoint, "inproc://%s-workers", def->name);
    snprintf(srv->relay_endpoint, sizeof srv->relay_endpoint, "inproc://%s-relay", def->name);
    snprintf(srv->self_endpoint, sizeof srv->self_endpoint, "inproc://%s-calls", def->name);
    srv->front = s_socket(srv, ZMQ_ROUTER);
    srv->back = s_socket(srv, ZMQ_ROUTER);
    srv->pub = s_socket(srv, ZMQ_PUB);
    srv->relay_pull = s_socket(srv, ZMQ_PULL);
    if (!srv->front || !srv->back || !srv->pub || !srv->relay_pull)
        goto done;
    int64_t cap = srv->cfg.max_message_bytes * 4;
    zmq_setsockopt(srv->front, ZMQ_MAXMSGSIZE, &cap, sizeof cap);
    char err[512];
    srv->router = router_new(srv->base, srv->cfg.rpc_bind, (size_t)srv->cfg.max_message_bytes,
                             s_on_router, srv, err, sizeof err);
    if (!srv->router) {
        slog_error("SHOP_RPC_BIND: %s", err);
        goto done;
    }
    if (s_bind(srv->pub, srv->cfg.pub_bind, "SHOP_PUB_BIND") != 0 ||
        s_bind(srv->back, srv->back_endpoint, "workers") != 0 ||
        s_bind(srv->relay_pull, srv->relay_endpoint, "relay") != 0 ||
        s_bind(srv->front, srv->self_endpoint, "calls") != 0)
        goto done;
    srv->ev_front = s_zmq_event(srv, srv->front, s_on_front);
    srv->ev_back = s_zmq_event(srv, srv->back, s_on_back);
    srv->ev_relay = s_zmq_event(srv, srv->relay_pull, s_on_relay);
    srv->ev_heartbeat = event_new(srv->base, -1, EV_PERSIST, s_on_heartbeat, srv);
    srv->ev_drain = event_new(srv->base, -1, EV_PERSIST, s_on_drain_tick, srv);
    srv->ev_term = evsignal_new(srv->base, SIGTERM, s_on_signal, srv);
    srv->ev_int = evsignal_new(srv->base, SIGINT, s_on_signal, srv);
    if (!srv->ev_front || !srv->ev_back || !srv->ev_relay || !srv->ev_heartbeat ||
        !srv->ev_drain || !srv->ev_term || !srv->ev_int)
        goto done;
    srv->admin = admin_new(srv->base, srv->cfg.admin_addr, (int)srv->cfg.admin_port, srv->metrics,
                           s_ready, srv);
    if (!srv->admin)
        goto done;
    if (s_start_workers(srv) != 0) {
        slog_error("cannot start the worker threads (is the database reachable?)");
        goto done;
    }
    if (pthread_create(&srv->maint_thread, NULL, s_maint_main, srv) != 0)
        goto done;
    srv->maint_started = true;
    srv->relay = relay_new(srv->zctx, srv->relay_endpoint, srv->cfg.database_url, def->name,
                           def->name, srv->metrics);
    if (!srv->relay || s_start_consumers(srv) != 0 || s_start_intake(srv) != 0)
        goto done;
    if (def->listen && def->on_notify &&
        !(srv->listener = listener_new(srv->cfg.database_url, def->name, def->listen, def->on_notify)))
        goto done;
    event_add(srv->ev_front, NULL);
    event_add(srv->ev_back, NULL);
    event_add(srv->ev_relay, NULL);
    event_add(srv->ev_heartbeat, &hb);
    event_add(srv->ev_term, NULL);
    event_add(srv->ev_int, NULL);
    /* Anything queued before the events were added has no edge left. */
    event_active(srv->ev_front, EV_READ, 0);
    event_active(srv->ev_back, EV_READ, 0);
    event_active(srv->ev_relay, EV_READ, 0);
    rc = 0;
done:
    db_destroy(&db);
    return rc;
}

static void s_free_event(struct event **ev)
{
    if (*ev)
        event_free(*ev);
    *ev = NULL;
}

static void s_close(void **sock)
{
    if (*sock)
        zmq_close(*sock);
    *sock = NULL;
}

static void s_stop(server_t *srv)
{
    atomic_store(&srv->stop, true);
    listener_destroy(&srv->listener);
    intake_destroy(&srv->intake);
    if (srv->subs) {
        for (size_t i = 0; i < srv->def->n_consumes; i++)
            sub_destroy(&srv->subs[i]);
        free(srv->subs);
    }
    relay_destroy(&srv->relay);
    if (srv->maint_started)
        pthread_join(srv->maint_thread, NULL);
    if (srv->workers) {
        for (size_t i = 0; i < (size_t)srv->cfg.workers; i++) {
            worker_t *w = &srv->workers[i];
            if (w->started)
                pthread_join(w->thread, NULL);
            s_close(&w->sock);
            s_free_clients(srv, &w->call.clients);
            db_destroy(&w->db);
            arena_destroy(&w->call.arena);
        }
        free(srv->workers);
    }
    free(srv->idle);
    arena_destroy(&srv->loop_call.arena);
    if (srv->queue) {
        for (; srv->q_len > 0; srv->q_len--, srv->q_head = (srv->q_head + 1) % srv->q_cap) {
            zmq_msg_close(&srv->queue[srv->q_head].id);
            zmq_msg_close(&srv->queue[srv->q_head].frame);
        }
        free(srv->queue);
    }
    admin_destroy(&srv->admin);
    router_destroy(&srv->router);
    s_free_event(&srv->ev_front);
    s_free_event(&srv->ev_back);
    s_free_event(&srv->ev_relay);
    s_free_event(&srv->ev_heartbeat);
    s_free_event(&srv->ev_drain);
    s_free_event(&srv->ev_term);
    s_free_event(&srv->ev_int);
    s_close(&srv->front);
    s_close(&srv->back);
    s_close(&srv->pub);
    s_close(&srv->relay_pull);
    if (srv->zctx)
        zmq_ctx_term(srv->zctx);
    if (srv->base)
        event_base_free(srv->base);
    metrics_destroy(&srv->metrics);
    free(srv->mdesc);
    free(srv->handlers);
    free(srv->on_loop);
}

/* GnuTLS comes with libzmq (for wss://) and, through libldap, with libpq;
 * the services use neither. Its library constructor initializes it all
 * the same, before main: about 0.5 to 1 MiB of every service's RSS. Only
 * the environment the process starts with can stop that (GnuTLS reads
 * GNUTLS_NO_IMPLICIT_INIT in the constructor), so a service started
 * without the variable starts itself again, once, with it set to 1: the
 * same binary by its own path (so the process keeps its name), the same
 * arguments and pid. A value set by the operator is left alone, as is a
 * service started through the dynamic loader (its /proc/self/exe is the
 * loader); if anything fails the service runs on as it was started. */
static void s_skip_gnutls_init(char **argv)
{
    char self[4096];

    if (getenv("GNUTLS_NO_IMPLICIT_INIT") || getauxval(AT_BASE) == 0)
        return;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || (size_t)n >= sizeof self - 1)
        return;
    self[n] = '\0';
    if (setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 0) != 0)
        return;
    execv(self, argv);
    unsetenv("GNUTLS_NO_IMPLICIT_INIT");   /* not started again: as it was */
}

int server_main(const server_def_t *def, int argc, char **argv)
{
    static const cfg_var_t none[] = {CFG_END};
    server_t srv;
    char err[512];
    slog_level_t level = SLOG_INFO;
    int rc = 1;

    s_skip_gnutls_init(argv);
    /* glibc gives each thread that allocates an arena of its own (up to 8
     * per core); a service's threads allocate little and briefly (a call's
     * memory is its arena's), and one arena for all of them cut peak RSS
     * with no loss of throughput: against the default, two arenas saved
     * about 1.5 MiB (bench/promotions-run, concurrency 8); against two,
     * one saved 0.2-0.9 MiB more (promotions under Redeem at concurrency
     * 32: 15.5-16.0 MiB against 16.0-16.4). Its mmap threshold otherwise
     * rises to the largest block freed so far (a big query result), after
     * which large tables that grow (promotions' usage cache) are copied
     * within the heap and leave holes there: fixed at 256 KiB they are
     * mapped and grow in place. MALLOC_ARENA_MAX and MALLOC_MMAP_THRESHOLD_
     * override. */
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, 1);
    if (!getenv("MALLOC_MMAP_THRESHOLD_"))
        mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    memset(&srv, 0, sizeof srv);
    srv.def = def;
    s_running = &srv;
    srv.settings = def->settings_out;
    if (argc > 1 && strcmp(argv[1], "--print-config") == 0) {
        cfg_print_markdown(s_runtime_vars, stdout);
        cfg_print_markdown(def->settings ? def->settings : none, stdout);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: %s [--print-config]  (settings come from the environment)\n",
                argv[0]);
        return 1;
    }
    if (cfg_load(s_runtime_vars, &srv.cfg, err, sizeof err) != 0 ||
        (def->settings && cfg_load(def->settings, def->settings_out, err, sizeof err) != 0)) {
        fprintf(stderr, "%s: %s\n", def->name, err);
        goto done;
    }
    if (!slog_parse_level(srv.cfg.log_level, &level)) {
        fprintf(stderr, "%s: SHOP_LOG_LEVEL: expected debug, info, warn or error, got \"%s\"\n",
                def->name, srv.cfg.log_level);
        goto done;
    }
    slog_init(def->name, level);
    signal(SIGPIPE, SIG_IGN);
    if (s_start(&srv) != 0) {
        slog_error("start-up failed; see the lines above");
        goto done;
    }
    slog_info("serving calls on %s, events on %s, admin on %s:%" PRId64 " with %" PRId64 " workers",
              srv.cfg.rpc_bind, srv.cfg.pub_bind, srv.cfg.admin_addr, srv.cfg.admin_port,
              srv.cfg.workers);
    event_base_dispatch(srv.base);
    slog_info("stopped");
    rc = 0;
done:
    s_stop(&srv);
    s_running = NULL;
    cfg_free(s_runtime_vars, &srv.cfg);
    if (def->settings)
        cfg_free(def->settings, def->settings_out);
    return rc;
}
