/* test_runtime: the call server of a real service binary over real sockets —
 * malformed, unknown, oversized and late calls, Replay, a burst of calls
 * queued for the workers, the admin port,
 * PostgreSQL restarting under it, SIGTERM draining calls in flight, and the
 * service starting itself again without GnuTLS's implicit initialization,
 * with its threads named. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <zmq.h>

#include "check.h"
#include "harness.h"
#include "shop/common/v1/common.pb-c.h"
#include "util.h"

#define REPLAY "shop.common.v1.EventService/Replay"
#define MAX_BYTES 4096

static char s_rpc[64];
static void *s_zctx;

static int64_t s_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void *s_dealer(void)
{
    void *s = zmq_socket(s_zctx, ZMQ_DEALER);
    int linger = 0;

    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, s_rpc) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* Sends `nframes` frames and waits for one reply; returns it unpacked or NULL. */
static Shop__Common__V1__Reply *s_raw(void *s, const void *const *frames, const size_t *lens,
                                      int nframes, int timeout_ms)
{
    zmq_pollitem_t item = {s, 0, ZMQ_POLLIN, 0};
    zmq_msg_t msg;
    Shop__Common__V1__Reply *reply = NULL;

    for (int i = 0; i < nframes; i++)
        if (zmq_send(s, frames[i], lens[i], i + 1 < nframes ? ZMQ_SNDMORE : 0) < 0)
            return NULL;
    if (zmq_poll(&item, 1, timeout_ms) <= 0)
        return NULL;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, s, 0) >= 0)
        reply = shop__common__v1__reply__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
    zmq_msg_close(&msg);
    return reply;
}

/* Calls `method` with `body` and the given deadline (0 = none). */
static Shop__Common__V1__Reply *s_call(void *s, const char *id, const char *method,
                                       const uint8_t *body, size_t len, int64_t deadline_ms)
{
    Shop__Common__V1__Request req = SHOP__COMMON__V1__REQUEST__INIT;
    uint8_t buf[MAX_BYTES * 2];

    req.request_id = (char *)id;
    req.method = (char *)method;
    req.deadline_ms = deadline_ms;
    req.body.data = (uint8_t *)body;
    req.body.len = len;
    size_t n = shop__common__v1__request__pack(&req, buf);
    const void *frames[1] = {buf};
    size_t lens[1] = {n};
    return s_raw(s, frames, lens, 1, 3000);
}

static int s_status(Shop__Common__V1__Reply *r)
{
    int code = r && r->status ? (int)r->status->code : -1;
    if (r)
        shop__common__v1__reply__free_unpacked(r, NULL);
    return code;
}

static Shop__Common__V1__Reply *s_replay(void *s, const char *id, uint64_t after)
{
    Shop__Common__V1__ReplayRequest rr = SHOP__COMMON__V1__REPLAY_REQUEST__INIT;
    uint8_t body[32];

    rr.after_sequence = after;
    rr.limit = 10;
    size_t n = shop__common__v1__replay_request__pack(&rr, body);
    return s_call(s, id, REPLAY, body, n, s_now_ms() + 3000);
}

static void s_check_bad_input(void *s)
{
    uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    const void *one[1] = {garbage};
    size_t one_len[1] = {sizeof garbage};

    CHECK_INT(s_status(s_raw(s, one, one_len, 1, 3000)), SHOP__COMMON__V1__CODE__CODE_INVALID_ARGUMENT);

    const void *two[2] = {"a", "b"};
    size_t two_len[2] = {1, 1};
    CHECK_INT(s_status(s_raw(s, two, two_len, 2, 3000)), SHOP__COMMON__V1__CODE__CODE_INVALID_ARGUMENT);

    Shop__Common__V1__Reply *r = s_call(s, "r-unknown-method", "shop.common.v1.EventService/Nope",
                                        NULL, 0, 0);
    CHECK(r && strcmp(r->request_id, "r-unknown-method") == 0);
    CHECK(r && r->status && strstr(r->status->message, "EventService/Nope") != NULL);
    CHECK_INT(s_status(r), SHOP__COMMON__V1__CODE__CODE_UNIMPLEMENTED);
    CHECK_INT(s_status(s_call(s, "r2", "shop.nothing.v1.NoService/Replay", NULL, 0, 0)),
              SHOP__COMMON__V1__CODE__CODE_UNIMPLEMENTED);
    CHECK_INT(s_status(s_call(s, "r3", "no-slash", NULL, 0, 0)),
              SHOP__COMMON__V1__CODE__CODE_UNIMPLEMENTED);

    r = s_call(s, "r4", REPLAY, garbage, sizeof garbage, 0);
    CHECK(r && r->status && strstr(r->status->message, "ReplayRequest") != NULL);
    CHECK_INT(s_status(r), SHOP__COMMON__V1__CODE__CODE_INVALID_ARGUMENT);

    static uint8_t big[MAX_BYTES + 100];
    memset(big, 'x', sizeof big);
    const void *bf[1] = {big};
    size_t bl[1] = {sizeof big};
    r = s_raw(s, bf, bl, 1, 3000);
    CHECK(r && r->status && strstr(r->status->message, "SHOP_MAX_MESSAGE_BYTES") != NULL);
    CHECK_INT(s_status(r), SHOP__COMMON__V1__CODE__CODE_RESOURCE_EXHAUSTED);

    CHECK_INT(s_status(s_call(s, "r5", REPLAY, NULL, 0, s_now_ms() - 1000)),
              SHOP__COMMON__V1__CODE__CODE_DEADLINE_EXCEEDED);
}

static void s_check_replay(void *s)
{
    Shop__Common__V1__Reply *r = s_replay(s, "replay-1", 0);
    CHECK(r && strcmp(r->request_id, "replay-1") == 0);
    if (r && r->status && r->status->code == SHOP__COMMON__V1__CODE__CODE_OK) {
        Shop__Common__V1__ReplayResponse *rr =
            shop__common__v1__replay_response__unpack(NULL, r->body.len, r->body.data);
        CHECK(rr != NULL);
        if (rr) {
            CHECK_INT(rr->n_events, 0);
            CHECK_INT(rr->head_sequence, 0);
            shop__common__v1__replay_response__free_unpacked(rr, NULL);
        }
    }
    CHECK_INT(s_status(r), SHOP__COMMON__V1__CODE__CODE_OK);
}

/* Replies to the burst's calls, up to `want` of them: counted by id, and
 * any that came more than 48 places after a later call's counted in *late
 * (the calls wait in order, but a worker held up on one while the other
 * answers lets later ones overtake it: that one is late). */
static void s_burst_replies(void *s, int want, int *seen, int n, int *ok, int *last, int *late)
{
    zmq_pollitem_t item = {s, 0, ZMQ_POLLIN, 0};

    for (int got = 0; got < want && zmq_poll(&item, 1, 5000) > 0; got++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, s, 0) >= 0) {
            Shop__Common__V1__Reply *r =
                shop__common__v1__reply__unpack(NULL, zmq_msg_size(&msg), zmq_msg_data(&msg));
            int k = -1;
            if (r && sscanf(r->request_id, "burst-%d", &k) == 1 && k >= 0 && k < n) {
                seen[k]++;
                *late += k < *last - 48;
                *last = k > *last ? k : *last;
            }
            *ok += r && r->status && r->status->code == SHOP__COMMON__V1__CODE__CODE_OK;
            if (r)
                shop__common__v1__reply__free_unpacked(r, NULL);
        }
        zmq_msg_close(&msg);
    }
}

/* Bursts far past the waiting ring's first size (64) and the service's two
 * workers, the second while the first drains (so the ring, grown to 1,024
 * and wrapped, grows again): every call is answered once, OK, and in turn
 * but for a few a stalled worker held (taking the ring's slots in their
 * order when it grows makes about a hundred late). */
static void s_check_burst(void *s)
{
    enum { FIRST = 1000, N = 1800 };
    Shop__Common__V1__ReplayRequest rr = SHOP__COMMON__V1__REPLAY_REQUEST__INIT;
    Shop__Common__V1__Request req = SHOP__COMMON__V1__REQUEST__INIT;
    uint8_t body[32], buf[256];
    char id[16];
    static int seen[N];
    int ok = 0, last = -1, late = 0;

    rr.limit = 10;
    req.method = REPLAY;
    req.body.data = body;
    req.body.len = shop__common__v1__replay_request__pack(&rr, body);
    req.request_id = id;
    for (int i = 0; i < N; i++) {
        if (i == FIRST)
            s_burst_replies(s, FIRST / 2, seen, N, &ok, &last, &late);
        snprintf(id, sizeof id, "burst-%d", i);
        size_t n = shop__common__v1__request__pack(&req, buf);
        CHECK(zmq_send(s, buf, n, 0) == (int)n);
    }
    s_burst_replies(s, N - FIRST / 2, seen, N, &ok, &last, &late);
    int once = 0;
    for (int i = 0; i < N; i++)
        once += seen[i] == 1;
    CHECK_INT(once, N);
    CHECK_INT(ok, N);
    CHECK(late < 10);
}

static void s_check_admin(int admin)
{
    char *body = NULL;

    CHECK_INT(harness_http_get(admin, "/healthz", &body), 200);
    free(body);
    body = NULL;
    CHECK_INT(harness_http_get(admin, "/nothing-here", &body), 404);
    free(body);
    body = NULL;
    CHECK_INT(harness_http_get(admin, "/metrics", &body), 200);
    CHECK(body && strstr(body, "shop_requests_total{method=\"" REPLAY "\",code=\"OK\"}") != NULL);
    CHECK(body && strstr(body, "code=\"INVALID_ARGUMENT\"") != NULL);
    CHECK(body && strstr(body, "shop_request_seconds_bucket") != NULL);
    CHECK(body && strstr(body, "process_resident_memory_bytes ") != NULL);
    free(body);
    /* this test's DEALER is connected: counted within a heartbeat */
    long open = 0;
    for (int i = 0; i < 40 && open < 1; i++) {
        body = NULL;
        harness_http_get(admin, "/metrics", &body);
        const char *g = body ? strstr(body, "\nshop_rpc_connections ") : NULL;
        open = g ? strtol(g + 22, NULL, 10) : 0;
        free(body);
        if (open < 1)
            util_sleep_ms(100);
    }
    CHECK(open >= 1);
}

/* After a restart of PostgreSQL calls may fail UNAVAILABLE for a moment,
 * then succeed again on the same service. */
static void s_check_pg_restart(void *s)
{
    int ok_after = 0, other = 0;

    CHECK_INT(harness_pg_restart(), 0);
    for (int i = 0; i < 100 && !ok_after; i++) {
        char id[32];
        snprintf(id, sizeof id, "after-restart-%d", i);
        int code = s_status(s_replay(s, id, 0));
        if (code == SHOP__COMMON__V1__CODE__CODE_OK)
            ok_after = 1;
        else if (code != SHOP__COMMON__V1__CODE__CODE_UNAVAILABLE)
            other++;
        else
            util_sleep_ms(100);
    }
    CHECK(ok_after);
    CHECK_INT(other, 0);
}

typedef struct {
    atomic_int sent, answered, stop;
} load_t;

/* A service started without GNUTLS_NO_IMPLICIT_INIT runs (same pid, same
 * name) with it set to 1: it started itself again so GnuTLS skipped its
 * constructor. */
static void s_check_gnutls_env(pid_t pid, const char *name)
{
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    char *var = NULL;
    size_t cap = 0;
    bool found = false;
    while (getdelim(&var, &cap, '\0', f) > 0)
        found = found || strcmp(var, "GNUTLS_NO_IMPLICIT_INIT=1") == 0;
    free(var);
    fclose(f);
    CHECK(found);
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    f = fopen(path, "r");
    CHECK(f != NULL);
    if (f) {
        if (fgets(comm, sizeof comm, f))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
    }
    CHECK_STR(comm, name);
}

/* The runtime names its threads (top -H, ps -L, perf): both workers of
 * SHOP_WORKERS=2, the relay, the maintenance tick and the consumer of the
 * catalog stream (each thread names itself as it starts: looked for a few
 * times). */
static bool s_threads_named(pid_t pid, const char *const *want, size_t n, bool *seen)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return false;
    for (struct dirent *e; (e = readdir(d));) {
        char comm_path[600], comm[32] = "";
        snprintf(comm_path, sizeof comm_path, "%s/%s/comm", path, e->d_name);
        FILE *f = fopen(comm_path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof comm, f))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
        for (size_t i = 0; i < n; i++)
            seen[i] = seen[i] || strcmp(comm, want[i]) == 0;
    }
    closedir(d);
    bool all = true;
    for (size_t i = 0; i < n; i++)
        all = all && seen[i];
    return all;
}

static void s_check_thread_names(pid_t pid)
{
    const char *want[] = {"worker-0", "worker-1", "relay", "maintenance", "sub-catalog"};
    bool seen[5] = {false};
    for (int i = 0; i < 30 && !s_threads_named(pid, want, 5, seen); i++)
        util_sleep_ms(100);
    for (size_t i = 0; i < 5; i++)
        CHECK_STR(seen[i] ? want[i] : "(none)", want[i]);
}

static void *s_load(void *arg)
{
    load_t *l = arg;
    void *s = s_dealer();
    int i = 0;

    while (s && !atomic_load(&l->stop)) {
        char id[32];
        snprintf(id, sizeof id, "load-%d", i++);
        atomic_fetch_add(&l->sent, 1);
        Shop__Common__V1__Reply *r = s_replay(s, id, 0);
        if (!r)
            break;   /* the service closed: no reply, no more sends */
        atomic_fetch_add(&l->answered, 1);
        shop__common__v1__reply__free_unpacked(r, NULL);
    }
    if (s)
        zmq_close(s);
    return NULL;
}

int main(void)
{
    const char *svcs[] = {"sink", NULL};
    char *conninfo = harness_create_db("t_runtime", svcs);
    int rpc = harness_free_port(), pub = harness_free_port(), admin = harness_free_port();
    char env_db[512], env_rpc[96], env_pub[64], env_admin[32];
    char cat_rpc[64], cat_pub[64];

    CHECK(conninfo != NULL);
    if (!conninfo)
        return check_done();
    snprintf(s_rpc, sizeof s_rpc, "tcp://127.0.0.1:%d", rpc);
    snprintf(env_db, sizeof env_db, "SHOP_DATABASE_URL=%s", conninfo);
    snprintf(env_rpc, sizeof env_rpc, "SHOP_RPC_BIND=%s", s_rpc);
    snprintf(env_pub, sizeof env_pub, "SHOP_PUB_BIND=tcp://127.0.0.1:%d", pub);
    snprintf(env_admin, sizeof env_admin, "SHOP_ADMIN_PORT=%d", admin);
    /* The sink consumes a catalog stream that nobody produces here. */
    snprintf(cat_rpc, sizeof cat_rpc, "SHOP_CATALOG_RPC=tcp://127.0.0.1:%d", harness_free_port());
    snprintf(cat_pub, sizeof cat_pub, "SHOP_CATALOG_PUB=tcp://127.0.0.1:%d", harness_free_port());
    const char *env[] = {env_db, env_rpc, env_pub, env_admin, cat_rpc, cat_pub,
                         "SHOP_ADMIN_ADDR=127.0.0.1", "SHOP_MAX_MESSAGE_BYTES=4096",
                         "SHOP_MAINTENANCE_MS=100", "SHOP_WORKERS=2", NULL};

    /* A bad setting stops start-up with a message naming it. */
    const char *bad_env[] = {env_db, "SHOP_WORKERS=lots", NULL};
    harness_proc_t *bad = harness_spawn("shop-sink", bad_env);
    CHECK(bad != NULL);
    if (bad) {
        util_sleep_ms(1000);   /* it exits by itself */
        CHECK_INT(harness_stop(&bad, 5000), 1);
    }

    unsetenv("GNUTLS_NO_IMPLICIT_INIT");   /* the service is started without it */
    harness_proc_t *p = harness_spawn("shop-sink", env);
    CHECK(p != NULL);
    int ready = harness_wait_ready(admin, 10000);
    CHECK_INT(ready, 0);
    s_zctx = zmq_ctx_new();
    void *s = s_dealer();
    CHECK(s != NULL);
    if (p && s && ready == 0) {
        s_check_gnutls_env(harness_pid(p), "shop-sink");
        s_check_thread_names(harness_pid(p));
        s_check_bad_input(s);
        s_check_replay(s);
        s_check_burst(s);
        s_check_admin(admin);
        s_check_pg_restart(s);

        load_t l;
        pthread_t th[8];
        atomic_init(&l.sent, 0);
        atomic_init(&l.answered, 0);
        atomic_init(&l.stop, 0);
        for (int i = 0; i < 8; i++)
            pthread_create(&th[i], NULL, s_load, &l);
        util_sleep_ms(300);
        int64_t t0 = s_now_ms();
        CHECK_INT(harness_stop(&p, 5000), 0);
        CHECK(s_now_ms() - t0 < 5000);
        atomic_store(&l.stop, 1);
        for (int i = 0; i < 8; i++)
            pthread_join(th[i], NULL);
        /* Each thread may have one call unanswered: the one the close cut. */
        CHECK(atomic_load(&l.answered) > 100);
        CHECK(atomic_load(&l.sent) - atomic_load(&l.answered) <= 8);
    }
    if (s)
        zmq_close(s);
    if (p)
        harness_kill(&p);
    zmq_ctx_term(s_zctx);
    free(conninfo);
    return check_done();
}
