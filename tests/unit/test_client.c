/* test_client: the runtime's client (client.c over zmtp.c) against a real
 * libzmq ROUTER in a thread of this test, as every service answers: echo
 * over tcp:// (by address and by name) and ipc://, frames longer than 255 bytes both ways, a stale
 * reply skipped, the resend after half the time, a peer that is down, one
 * that comes up within the deadline, one that restarted between calls and
 * one lost in the middle of a call, and a peer that is not a ROUTER. */
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "check.h"
#include "client.h"
#include "shop/common/v1/common.pb-c.h"
#include "util.h"

enum { ECHO, STALE_FIRST, SILENT_FIRST, LOST_FIRST };

/* The ROUTER: answers each Request with its own body, as `mode` says. */
static struct {
    void *zctx;
    char endpoint[256];
    atomic_int mode;
    atomic_int down_ms;   /* >= 0: close the socket now, bind again after that long */
    atomic_bool down, stop, bound;
    atomic_int requests;  /* frames received */
} S;

static void *s_bind(void)
{
    void *sock = zmq_socket(S.zctx, ZMQ_ROUTER);
    int linger = 0;

    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    for (int i = 0; i < 200; i++) {   /* the port of a socket just closed may take a moment */
        if (zmq_bind(sock, S.endpoint) == 0) {
            size_t len = sizeof S.endpoint;
            zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, S.endpoint, &len);
            return sock;
        }
        util_sleep_ms(10);
    }
    fprintf(stderr, "cannot bind %s: %s\n", S.endpoint, zmq_strerror(errno));
    exit(2);
}

static void s_reply(void *sock, zmq_msg_t *id, const char *request_id, const ProtobufCBinaryData *body)
{
    Shop__Common__V1__Reply r = SHOP__COMMON__V1__REPLY__INIT;
    uint8_t *buf;

    r.request_id = (char *)request_id;
    r.body = *body;
    buf = malloc(shop__common__v1__reply__get_packed_size(&r) + 1);
    size_t n = shop__common__v1__reply__pack(&r, buf);
    zmq_send(sock, zmq_msg_data(id), zmq_msg_size(id), ZMQ_SNDMORE);
    zmq_send(sock, buf, n, 0);
    free(buf);
}

static void *s_server(void *arg)
{
    void *sock = s_bind();
    char silenced[37] = "";

    (void)arg;
    atomic_store(&S.bound, true);
    while (!atomic_load(&S.stop)) {
        int down = atomic_load(&S.down_ms);
        if (down >= 0) {   /* down before the order is taken: no moment where neither says so */
            atomic_store(&S.down, true);
            atomic_store(&S.down_ms, -1);
            zmq_close(sock);
            util_sleep_ms(down);
            sock = s_bind();
            atomic_store(&S.down, false);
        }
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 10) <= 0)
            continue;
        zmq_msg_t id, frame;
        zmq_msg_init(&id);
        zmq_msg_init(&frame);
        zmq_msg_recv(&id, sock, 0);
        zmq_msg_recv(&frame, sock, 0);
        atomic_fetch_add(&S.requests, 1);
        Shop__Common__V1__Request *req =
            shop__common__v1__request__unpack(NULL, zmq_msg_size(&frame), zmq_msg_data(&frame));
        if (req) {
            switch (atomic_load(&S.mode)) {
            case STALE_FIRST:
                s_reply(sock, &id, "00000000-0000-4000-8000-000000000000", &(ProtobufCBinaryData){0, NULL});
                s_reply(sock, &id, req->request_id, &req->body);
                break;
            case SILENT_FIRST:   /* the first copy of a request gets nothing */
                if (strcmp(silenced, req->request_id) == 0)
                    s_reply(sock, &id, req->request_id, &req->body);
                snprintf(silenced, sizeof silenced, "%s", req->request_id);
                break;
            case LOST_FIRST:     /* read, then gone: a service killed in the middle of a call */
                atomic_store(&S.mode, ECHO);
                atomic_store(&S.down_ms, 100);
                break;
            default:
                s_reply(sock, &id, req->request_id, &req->body);
            }
            shop__common__v1__request__free_unpacked(req, NULL);
        }
        zmq_msg_close(&id);
        zmq_msg_close(&frame);
    }
    zmq_close(sock);
    return NULL;
}

/* One call with a Status as the request and the response (echoed). */
static status_t s_call(client_t *c, const char *text, int timeout_ms, int attempts, char **echo,
                       int64_t *took_ms)
{
    Shop__Common__V1__Status req = SHOP__COMMON__V1__STATUS__INIT;
    ProtobufCMessage *out = NULL;
    char *msg = NULL;
    int64_t t0 = util_mono_ms();

    req.code = 5;
    req.message = (char *)text;
    status_t st = client_call(c, "test.Echo/Echo", &req.base, &shop__common__v1__status__descriptor, &out,
                              NULL, timeout_ms, attempts, &msg);
    if (took_ms)
        *took_ms = util_mono_ms() - t0;
    if (echo)
        *echo = out ? strdup(((Shop__Common__V1__Status *)out)->message) : msg ? strdup(msg) : NULL;
    if (out)
        protobuf_c_message_free_unpacked(out, NULL);
    free(msg);
    return st;
}

/* Until the server has taken the order to go down (and closed its socket;
 * libzmq closes the connections behind it on its own thread a moment
 * later). */
static void s_wait_down(void)
{
    while (atomic_load(&S.down_ms) >= 0 || !atomic_load(&S.down))
        util_sleep_ms(1);
    util_sleep_ms(50);
}

static void s_echo_checks(const char *endpoint)
{
    client_t *c = client_new(NULL, endpoint);
    char *echo = NULL, *big = malloc(100001);

    CHECK(c != NULL);
    CHECK_INT(s_call(c, "hello", 2000, 1, &echo, NULL), STATUS_OK);
    CHECK_STR(echo, "hello");
    CHECK(client_replied(c));
    free(echo);
    memset(big, 'x', 100000);   /* long frames (eight-byte sizes) both ways */
    big[100000] = '\0';
    CHECK_INT(s_call(c, big, 2000, 1, &echo, NULL), STATUS_OK);
    CHECK(echo && strcmp(echo, big) == 0);
    free(echo);
    free(big);
    client_destroy(&c);
}

int main(void)
{
    pthread_t server;
    char *echo = NULL;
    int64_t took;

    S.zctx = zmq_ctx_new();
    atomic_store(&S.down_ms, -1);

    /* ipc:// first: the server thread binds there, then moves to tcp:// */
    char dir[] = "/tmp/shop-client-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    snprintf(S.endpoint, sizeof S.endpoint, "ipc://%s/echo", dir);
    pthread_create(&server, NULL, s_server, NULL);
    while (!atomic_load(&S.bound))
        util_sleep_ms(1);
    s_echo_checks(S.endpoint);
    atomic_store(&S.stop, true);
    pthread_join(server, NULL);
    char path[64];
    snprintf(path, sizeof path, "%s/echo", dir);
    unlink(path);
    rmdir(dir);

    snprintf(S.endpoint, sizeof S.endpoint, "tcp://127.0.0.1:*");
    atomic_store(&S.stop, false);
    atomic_store(&S.bound, false);
    pthread_create(&server, NULL, s_server, NULL);
    while (!atomic_load(&S.bound))
        util_sleep_ms(1);
    s_echo_checks(S.endpoint);

    /* a host name (as the compose file's tcp://catalog:7000): localhost
     * may resolve to ::1 first, where nothing listens, then 127.0.0.1 */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo("localhost", NULL, &hints, &ai) == 0) {
        char by_name[300];
        freeaddrinfo(ai);
        snprintf(by_name, sizeof by_name, "tcp://localhost:%s", strrchr(S.endpoint, ':') + 1);
        s_echo_checks(by_name);
    } else {
        printf("skipped: localhost does not resolve on this machine\n");
    }

    client_t *c = client_new(NULL, S.endpoint);

    /* a reply to another call is skipped; the call's own answers it */
    atomic_store(&S.mode, STALE_FIRST);
    CHECK_INT(s_call(c, "mine", 2000, 1, &echo, NULL), STATUS_OK);
    CHECK_STR(echo, "mine");
    free(echo);

    /* no reply in half the time: sent again (same request id), answered */
    atomic_store(&S.mode, SILENT_FIRST);
    int before = atomic_load(&S.requests);
    CHECK_INT(s_call(c, "again", 600, 2, &echo, &took), STATUS_OK);
    CHECK_STR(echo, "again");
    CHECK_INT(atomic_load(&S.requests) - before, 2);
    CHECK(took >= 280 && took < 600);
    free(echo);
    /* with one attempt: sent once, no reply, DEADLINE_EXCEEDED */
    before = atomic_load(&S.requests);
    CHECK_INT(s_call(c, "once", 300, 1, &echo, &took), STATUS_DEADLINE_EXCEEDED);
    CHECK_STR(echo, CLIENT_NO_REPLY);
    CHECK(!client_replied(c));
    CHECK_INT(atomic_load(&S.requests) - before, 1);
    CHECK(took >= 280 && took < 1000);
    free(echo);
    atomic_store(&S.mode, ECHO);

    /* the peer restarted between two calls: the next call opens a new
     * connection and is answered, with one attempt */
    CHECK_INT(s_call(c, "before", 2000, 1, NULL, NULL), STATUS_OK);
    atomic_store(&S.down_ms, 50);
    while (atomic_load(&S.down_ms) >= 0 || atomic_load(&S.down))
        util_sleep_ms(1);
    CHECK_INT(s_call(c, "after", 2000, 1, &echo, NULL), STATUS_OK);
    CHECK_STR(echo, "after");
    free(echo);

    /* a peer that is down when the call starts and up within its time */
    atomic_store(&S.down_ms, 300);
    s_wait_down();
    CHECK_INT(s_call(c, "late", 3000, 1, &echo, &took), STATUS_OK);
    CHECK_STR(echo, "late");
    CHECK(took >= 200 && took < 3000);
    free(echo);

    /* a peer lost in the middle of a call: sent again at once over a new
     * connection (not after half the time) when attempts remain ... */
    atomic_store(&S.mode, LOST_FIRST);
    CHECK_INT(s_call(c, "lost", 4000, 2, &echo, &took), STATUS_OK);
    CHECK_STR(echo, "lost");
    CHECK(took < 1500);
    free(echo);
    /* ... and with one attempt, a DEADLINE_EXCEEDED (sent; fate unknown) without waiting it out */
    atomic_store(&S.mode, LOST_FIRST);
    CHECK_INT(s_call(c, "lost once", 4000, 1, &echo, &took), STATUS_DEADLINE_EXCEEDED);
    CHECK(echo && strstr(echo, "connection lost"));
    CHECK(took < 1500);
    free(echo);
    while (atomic_load(&S.down_ms) >= 0 || atomic_load(&S.down))
        util_sleep_ms(1);

    /* a peer that is down for the whole time: UNAVAILABLE, nothing sent */
    atomic_store(&S.down_ms, 1500);
    s_wait_down();
    CHECK_INT(s_call(c, "nobody", 300, 2, &echo, &took), STATUS_UNAVAILABLE);
    CHECK(echo && strstr(echo, "cannot reach"));
    CHECK(!client_replied(c));
    CHECK(took >= 280 && took < 1000);
    free(echo);
    while (atomic_load(&S.down))
        util_sleep_ms(1);
    CHECK_INT(s_call(c, "back", 2000, 1, NULL, NULL), STATUS_OK);
    client_destroy(&c);

    /* a ZeroMQ peer that is not a ROUTER is refused */
    void *rep = zmq_socket(S.zctx, ZMQ_REP);
    char rep_ep[256];
    size_t len = sizeof rep_ep;
    CHECK_INT(zmq_bind(rep, "tcp://127.0.0.1:*"), 0);
    zmq_getsockopt(rep, ZMQ_LAST_ENDPOINT, rep_ep, &len);
    c = client_new(NULL, rep_ep);
    CHECK_INT(s_call(c, "rep", 300, 1, &echo, NULL), STATUS_UNAVAILABLE);
    CHECK(echo && strstr(echo, "not a ROUTER"));
    free(echo);
    client_destroy(&c);
    zmq_close(rep);

    /* endpoints that are not ones */
    CHECK(client_new(NULL, "tcp://nohost") == NULL);
    CHECK(client_new(NULL, "tcp://:7000") == NULL);
    CHECK(client_new(NULL, "ipc://") == NULL);

    atomic_store(&S.stop, true);
    pthread_join(server, NULL);
    zmq_ctx_term(S.zctx);
    return check_done();
}
