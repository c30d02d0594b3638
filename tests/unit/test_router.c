/* test_router: the serving side of the calls (router.c) on a libevent loop
 * in a thread of this test, called by libzmq's DEALER and REQ sockets, by
 * the runtime's own ZMTP client and by raw bytes on a socket: requests and
 * replies over tcp:// (IPv4, IPv6, every address) and ipc:// (a path, the
 * abstract namespace), frames longer than 255 bytes, pipelined requests,
 * requests of several frames and oversized ones refused unread with the
 * connection still usable (and one far over the limit ending it), REQ
 * sockets with and without request ids, PING answered with PONG, draining
 * (no new connection or request, PINGs and replies still go), running out
 * of descriptors (the connection waits, then is taken), the handshake's
 * deadline, handshakes refused
 * (mechanism, socket type, malformed frames), a reply to a connection that
 * has gone not delivered to the one that took its place, a peer that does
 * not read its replies (not read from until it does, nothing lost), and
 * endpoints that cannot be listened on. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "check.h"
#include "router.h"
#include "util.h"
#include "zmtp.h"

#define MAX_BYTES 100000

/* The loop and what its callback saw. */
static struct {
    struct event_base *base;
    struct event *tick;
    router_t *r;
    pthread_t thread;
    atomic_bool stop;
    atomic_int delivered;       /* requests delivered to the callback */
    atomic_size_t max_unsent;   /* the most router_unsent was after a reply */
    atomic_size_t conns;        /* router_connections, every 2 ms */
    atomic_bool held_dropped;   /* router_reply took the held route (and dropped it) */
    atomic_bool answer_held;    /* the tick answers the held route "held" */
    bool have_held;
    zmq_msg_t held;
    char endpoint[256];
    int handshake_ms;           /* > 0: the next s_serve's handshake deadline */
} L;

static void s_reply(zmq_msg_t *route, const void *data, size_t len)
{
    zmq_msg_t reply;

    zmq_msg_init_size(&reply, len);
    memcpy(zmq_msg_data(&reply), data, len);
    if (!router_reply(L.r, route, &reply)) {
        fprintf(stderr, "router_reply did not take its own route\n");
        exit(2);
    }
    size_t unsent = router_unsent(L.r);
    if (unsent > atomic_load(&L.max_unsent))
        atomic_store(&L.max_unsent, unsent);
}

/* Echoes; "hold" keeps the route unanswered, "flush" answers it, "big:N"
 * answers N bytes, "pause" pauses the router (draining); a refused
 * request is answered "refused FRAMES BYTES". */
static void s_on_request(void *arg, zmq_msg_t *route, zmq_msg_t *frame, size_t frames, size_t bytes)
{
    char text[64];

    (void)arg;
    atomic_fetch_add(&L.delivered, 1);
    if (!frame) {
        int n = snprintf(text, sizeof text, "refused %zu %zu", frames, bytes);
        s_reply(route, text, (size_t)n);
        return;
    }
    size_t len = zmq_msg_size(frame);
    const char *data = zmq_msg_data(frame);
    if (len == 4 && memcmp(data, "hold", 4) == 0) {
        L.held = *route;
        L.have_held = true;
    } else if (len == 5 && memcmp(data, "flush", 5) == 0) {
        zmq_msg_t held;
        zmq_msg_init_size(&held, 4);
        memcpy(zmq_msg_data(&held), "held", 4);
        atomic_store(&L.held_dropped, L.have_held && router_reply(L.r, &L.held, &held));
        L.have_held = false;
        s_reply(route, "flushed", 7);
    } else if (len == 5 && memcmp(data, "pause", 5) == 0) {
        router_pause(L.r);
        s_reply(route, "paused", 6);
    } else if (len > 4 && memcmp(data, "big:", 4) == 0) {
        char digits[16] = "";   /* the frame is not NUL-terminated */
        memcpy(digits, data + 4, len - 4 < sizeof digits - 1 ? len - 4 : sizeof digits - 1);
        size_t n = (size_t)atoi(digits);
        char *big = malloc(n);
        memset(big, 'x', n);
        s_reply(route, big, n);
        free(big);
    } else {
        s_reply(route, data, len);
    }
    zmq_msg_close(frame);
}

static void s_on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    atomic_store(&L.conns, router_connections(L.r));
    if (atomic_load(&L.answer_held) && L.have_held) {
        s_reply(&L.held, "held", 4);
        L.have_held = false;
        atomic_store(&L.answer_held, false);
    }
    if (atomic_load(&L.stop))
        event_base_loopbreak(L.base);
}

static void *s_loop(void *arg)
{
    (void)arg;
    event_base_dispatch(L.base);
    return NULL;
}

/* Serves `endpoint`; one with port P (tcp://HOST:P) is served on the first
 * free port from a random one. The endpoint served is L.endpoint. */
static void s_serve(const char *endpoint, size_t max_bytes)
{
    char err[512];
    struct timeval two_ms = {0, 2000};

    L.base = event_base_new();
    atomic_store(&L.stop, false);
    atomic_store(&L.delivered, 0);
    atomic_store(&L.max_unsent, 0);
    atomic_store(&L.conns, SIZE_MAX);   /* until the loop has counted */
    for (int port = 20000 + (int)(util_mono_us() % 20000), tries = 0; !L.r && tries < 200; port++, tries++) {
        const char *p = strstr(endpoint, ":P");
        if (p)
            snprintf(L.endpoint, sizeof L.endpoint, "%.*s:%d", (int)(p - endpoint), endpoint, port);
        else
            snprintf(L.endpoint, sizeof L.endpoint, "%s", endpoint);
        L.r = router_new(L.base, L.endpoint, max_bytes, s_on_request, NULL, err, sizeof err);
        if (!p)
            break;
    }
    if (!L.r) {
        fprintf(stderr, "cannot serve %s: %s\n", endpoint, err);
        exit(2);
    }
    if (L.handshake_ms > 0)
        router_set_handshake_ms(L.r, L.handshake_ms);
    L.handshake_ms = 0;
    L.tick = event_new(L.base, -1, EV_PERSIST, s_on_tick, NULL);
    event_add(L.tick, &two_ms);
    pthread_create(&L.thread, NULL, s_loop, NULL);
}

static void s_unserve(void)
{
    atomic_store(&L.stop, true);
    pthread_join(L.thread, NULL);
    if (L.have_held)
        zmq_msg_close(&L.held);
    L.have_held = false;
    router_destroy(&L.r);
    event_free(L.tick);
    event_base_free(L.base);
}

/* --- callers ------------------------------------------------------------------ */

static void *s_zsock(void *zctx, int type, const char *endpoint)
{
    void *s = zmq_socket(zctx, type);
    int linger = 0, timeout = 3000;

    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    if (zmq_connect(s, endpoint) != 0) {
        fprintf(stderr, "cannot connect to %s: %s\n", endpoint, zmq_strerror(errno));
        exit(2);
    }
    return s;
}

/* Sends `text` and returns whether the reply is `expect`. */
static bool s_ask(void *s, const char *text, const char *expect)
{
    char buf[256];

    if (zmq_send(s, text, strlen(text), 0) < 0)
        return false;
    int n = zmq_recv(s, buf, sizeof buf - 1, 0);
    if (n < 0)
        return false;
    buf[n < (int)sizeof buf - 1 ? n : (int)sizeof buf - 1] = '\0';
    if (strcmp(buf, expect) != 0)
        fprintf(stderr, "asked \"%s\": \"%s\", expected \"%s\"\n", text, buf, expect);
    return strcmp(buf, expect) == 0;
}

static bool s_wait_conns(size_t n)
{
    for (int i = 0; i < 1000; i++) {
        if (atomic_load(&L.conns) == n)
            return true;
        util_sleep_ms(2);
    }
    return false;
}

/* A raw stream socket to L.endpoint (tcp://127.0.0.1:P), blocking, with a
 * receive timeout. */
static int s_raw(void)
{
    int port = atoi(strrchr(L.endpoint, ':') + 1);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval t = {3, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        perror("connect");
        exit(2);
    }
    return fd;
}

static bool s_read_all(int fd, void *buf, size_t len)
{
    for (size_t at = 0; at < len;) {
        ssize_t r = recv(fd, (uint8_t *)buf + at, len - at, 0);
        if (r <= 0)
            return false;
        at += (size_t)r;
    }
    return true;
}

static void s_write_frame(int fd, int flags, const void *body, size_t len)
{
    uint8_t head[ZMTP_HEAD_MAX];
    size_t hl = zmtp_head(head, flags, len);

    if (send(fd, head, hl, MSG_NOSIGNAL) != (ssize_t)hl ||
        (len && send(fd, body, len, MSG_NOSIGNAL) != (ssize_t)len))
        perror("send");
}

/* The next frame into buf (up to cap bytes kept); its flags, or -1 when
 * the connection closed or nothing came. */
static int s_read_frame(int fd, uint8_t *buf, size_t cap, size_t *len)
{
    uint8_t h[ZMTP_HEAD_MAX];
    int flags;
    uint64_t size;

    if (!s_read_all(fd, h, 2))
        return -1;
    if ((h[0] & ZMTP_LONG) && !s_read_all(fd, h + 2, 7))
        return -1;
    if (zmtp_parse_head(h, h[0] & ZMTP_LONG ? 9 : 2, &flags, &size) <= 0)
        return -1;
    *len = (size_t)size;
    for (uint64_t left = size; left > 0;) {
        uint8_t sink[4096];
        size_t n = left > sizeof sink ? sizeof sink : (size_t)left;
        uint8_t *to = size <= cap ? buf + (size - left) : sink;
        if (!s_read_all(fd, to, n))
            return -1;
        left -= n;
    }
    return flags;
}

/* Greets as `mechanism` and, if the router answers, says READY as `type`
 * (NULL: nothing after the greeting). */
static int s_raw_open(const char *mechanism, const char *type)
{
    int fd = s_raw();
    uint8_t g[ZMTP_GREETING], peer[ZMTP_GREETING], buf[64];
    size_t len;

    zmtp_greeting(g, false);
    memset(g + 12, 0, 20);
    memcpy(g + 12, mechanism, strlen(mechanism));
    send(fd, g, sizeof g, MSG_NOSIGNAL);
    if (!s_read_all(fd, peer, sizeof peer))
        return fd;
    if (type) {
        uint8_t ready[32];
        s_write_frame(fd, ZMTP_COMMAND, ready, zmtp_ready_command(ready, type));
        if (s_read_frame(fd, buf, sizeof buf, &len) != ZMTP_COMMAND)   /* the router's READY */
            fprintf(stderr, "no READY from the router\n");
    }
    return fd;
}

/* Whether the peer closes the connection (after an ERROR naming `why`,
 * when why is not NULL). */
static bool s_closed(int fd, const char *why)
{
    uint8_t buf[300];
    size_t len;
    int flags = s_read_frame(fd, buf, sizeof buf - 1, &len);
    bool ok = true;

    if (flags == ZMTP_COMMAND && zmtp_is_command(buf, len, "READY"))   /* the router's */
        flags = s_read_frame(fd, buf, sizeof buf - 1, &len);

    if (why) {
        ok = flags == ZMTP_COMMAND && zmtp_is_command(buf, len, "ERROR");
        buf[len < sizeof buf - 1 ? len : sizeof buf - 1] = '\0';
        ok = ok && strstr((char *)buf + 7, why) != NULL;
        if (!ok)
            fprintf(stderr, "expected ERROR \"%s\", got flags %d \"%s\"\n", why, flags,
                    flags >= 0 ? (char *)buf : "");
        flags = s_read_frame(fd, buf, sizeof buf, &len);
    }
    close(fd);
    return ok && flags == -1;
}

/* --- the tests --------------------------------------------------------------- */

static void s_test_dealer_and_req(void *zctx)
{
    s_serve("tcp://127.0.0.1:P", MAX_BYTES);
    void *d = s_zsock(zctx, ZMQ_DEALER, L.endpoint);
    CHECK(s_ask(d, "hello", "hello"));

    /* pipelined: 200 sent before any is read, answered in order */
    char text[32], buf[32];
    bool in_order = true;
    for (int i = 0; i < 200; i++) {
        snprintf(text, sizeof text, "n%d", i);
        zmq_send(d, text, strlen(text), 0);
    }
    for (int i = 0; i < 200; i++) {
        int n = zmq_recv(d, buf, sizeof buf - 1, 0);
        snprintf(text, sizeof text, "n%d", i);
        in_order = in_order && n == (int)strlen(text) && memcmp(buf, text, (size_t)n) == 0;
    }
    CHECK(in_order);

    /* 90 KB each way: LONG frames */
    char *big = malloc(90000), *back = malloc(90001);
    for (int i = 0; i < 90000; i++)
        big[i] = (char)('a' + i % 26);
    zmq_send(d, big, 90000, 0);
    CHECK_INT(zmq_recv(d, back, 90001, 0), 90000);
    CHECK(memcmp(big, back, 90000) == 0);
    free(big);
    free(back);

    /* a REQ socket: its delimiter is taken off the request and put on the reply */
    void *q = s_zsock(zctx, ZMQ_REQ, L.endpoint);
    CHECK(s_ask(q, "from req", "from req"));
    CHECK(s_ask(q, "again", "again"));
    /* one that puts its request id before the delimiter, kept for the reply */
    void *qc = zmq_socket(zctx, ZMQ_REQ);
    int on = 1, linger = 0, timeout = 3000;
    zmq_setsockopt(qc, ZMQ_REQ_CORRELATE, &on, sizeof on);
    zmq_setsockopt(qc, ZMQ_REQ_RELAXED, &on, sizeof on);
    zmq_setsockopt(qc, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(qc, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_connect(qc, L.endpoint);
    CHECK(s_ask(qc, "correlated", "correlated"));
    CHECK(s_ask(qc, "twice", "twice"));
    zmq_close(qc);
    CHECK(s_wait_conns(2));
    zmq_close(q);
    zmq_close(d);
    CHECK(s_wait_conns(0));
    s_unserve();
}

static void s_test_refused_requests(void *zctx)
{
    s_serve("tcp://127.0.0.1:P", 1000);
    void *d = s_zsock(zctx, ZMQ_DEALER, L.endpoint);

    /* three frames: refused unread, the connection goes on */
    zmq_send(d, "a", 1, ZMQ_SNDMORE);
    zmq_send(d, "bb", 2, ZMQ_SNDMORE);
    CHECK(s_ask(d, "ccc", "refused 3 6"));
    CHECK(s_ask(d, "after", "after"));

    /* one frame over the limit: skipped unread; the limit itself is taken */
    char *big = calloc(1, 5000);
    char reply[1001];
    zmq_send(d, big, 3000, 0);
    int n = zmq_recv(d, reply, sizeof reply - 1, 0);
    reply[n > 0 ? n : 0] = '\0';
    CHECK_STR(reply, "refused 1 3000");
    memset(big, 'y', 1000);
    zmq_send(d, big, 1000, 0);
    CHECK_INT(zmq_recv(d, reply, sizeof reply, 0), 1000);
    CHECK(s_ask(d, "still", "still"));

    /* an empty request is a request */
    zmq_send(d, "", 0, 0);
    CHECK_INT(zmq_recv(d, reply, sizeof reply, 0), 0);

    /* a frame over four times the limit ends the connection, unanswered */
    CHECK(s_wait_conns(1));
    int delivered = atomic_load(&L.delivered), timeout = 300;
    zmq_setsockopt(d, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_send(d, big, 5000, 0);
    CHECK(zmq_recv(d, reply, sizeof reply, 0) < 0);
    CHECK_INT(atomic_load(&L.delivered), delivered);
    free(big);
    zmq_close(d);
    s_unserve();
}

static void s_test_endpoints(void *zctx)
{
    char path[108], err[512];

    /* ipc:// by path: a socket file left behind is taken over, removed at the end */
    snprintf(path, sizeof path, "/tmp/shop-test-router-%d.sock", (int)getpid());
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    unlink(path);
    CHECK(bind(stale, (struct sockaddr *)&un, sizeof un) == 0);
    close(stale);   /* its file stays, with nothing listening */
    char ep[200];
    snprintf(ep, sizeof ep, "ipc://%s", path);
    s_serve(ep, MAX_BYTES);
    void *d = s_zsock(zctx, ZMQ_DEALER, ep);
    CHECK(s_ask(d, "over ipc", "over ipc"));
    zmq_close(d);
    struct event_base *other = event_base_new();
    router_t *second = router_new(other, ep, MAX_BYTES, s_on_request, NULL, err, sizeof err);
    CHECK(second == NULL && strstr(err, "another process is listening"));
    s_unserve();
    struct stat st;
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
    int file = open(path, O_CREAT | O_WRONLY, 0600);
    close(file);
    second = router_new(other, ep, MAX_BYTES, s_on_request, NULL, err, sizeof err);
    CHECK(second == NULL && strstr(err, "not a socket"));
    CHECK(stat(path, &st) == 0);   /* left alone */
    unlink(path);

    /* ipc:// in the abstract namespace, with the runtime's ZMTP client */
    snprintf(ep, sizeof ep, "ipc://@shop-test-router-%d", (int)getpid());
    s_serve(ep, MAX_BYTES);
    zmtp_t *z = zmtp_new(ep, MAX_BYTES);
    char why[256] = "";
    const uint8_t *body;
    size_t len;
    int64_t deadline = util_mono_us() + 3000000;
    CHECK(zmtp_ready(z, deadline, why, sizeof why) == 0);
    CHECK(zmtp_send(z, "zmtp", 4, deadline) == 0);
    CHECK(zmtp_recv(z, &body, &len, deadline, why, sizeof why) == 1 && len == 4 &&
          memcmp(body, "zmtp", 4) == 0);
    zmtp_destroy(&z);
    s_unserve();

    /* every address: IPv4, and IPv6 where the machine has it */
    s_serve("tcp://*:P", MAX_BYTES);
    const char *port = strrchr(L.endpoint, ':') + 1;
    /* the port taken: an error, not IPv4 alone */
    CHECK(!router_new(other, L.endpoint, 1, s_on_request, NULL, err, sizeof err) &&
          strstr(err, "Address already in use"));
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%s", port);
    d = s_zsock(zctx, ZMQ_DEALER, ep);
    CHECK(s_ask(d, "v4", "v4"));
    zmq_close(d);
    int v6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have_v6 = v6 >= 0 && bind(v6, (struct sockaddr *)&lo6, sizeof lo6) == 0;
    if (v6 >= 0)
        close(v6);
    if (have_v6) {
        int ipv6 = 1;
        snprintf(ep, sizeof ep, "tcp://[::1]:%s", port);
        d = zmq_socket(zctx, ZMQ_DEALER);
        zmq_setsockopt(d, ZMQ_IPV6, &ipv6, sizeof ipv6);
        int linger = 0, timeout = 3000;
        zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(d, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        zmq_connect(d, ep);
        CHECK(s_ask(d, "v6", "v6"));
        zmq_close(d);
    } else {
        printf("no IPv6 loopback here: IPv6 not tried\n");
    }
    s_unserve();

    /* a name: its IPv4 address first, as libzmq binds it */
    s_serve("tcp://localhost:P", MAX_BYTES);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%s", strrchr(L.endpoint, ':') + 1);
    d = s_zsock(zctx, ZMQ_DEALER, ep);
    CHECK(s_ask(d, "by name", "by name"));
    zmq_close(d);
    s_unserve();

    /* endpoints that cannot be listened on */
    CHECK(!router_new(other, "udp://127.0.0.1:7000", 1, s_on_request, NULL, err, sizeof err) &&
          strstr(err, "expected tcp://host:port or ipc://path"));
    CHECK(!router_new(other, "tcp://127.0.0.1:0", 1, s_on_request, NULL, err, sizeof err) &&
          strstr(err, "port must be a number"));
    CHECK(!router_new(other, "tcp://127.0.0.1:http", 1, s_on_request, NULL, err, sizeof err) &&
          strstr(err, "port must be a number"));
    CHECK(!router_new(other, "tcp://no-such-host.invalid:7000", 1, s_on_request, NULL, err, sizeof err) &&
          strstr(err, "cannot resolve no-such-host.invalid"));
    s_serve("tcp://127.0.0.1:P", MAX_BYTES);
    CHECK(!router_new(other, L.endpoint, 1, s_on_request, NULL, err, sizeof err) &&
          strstr(err, "Address already in use"));
    s_unserve();
    event_base_free(other);
}

static void s_test_protocol(void)
{
    uint8_t buf[64];
    size_t len;

    s_serve("tcp://127.0.0.1:P", MAX_BYTES);

    /* PING (ZMTP 3.1) answered with PONG and its context */
    int fd = s_raw_open("NULL", "DEALER");
    static const uint8_t ping[] = {4, 'P', 'I', 'N', 'G', 0, 10, 'c', 't', 'x', '4', '2'};
    s_write_frame(fd, ZMTP_COMMAND, ping, sizeof ping);
    int flags = s_read_frame(fd, buf, sizeof buf, &len);
    CHECK(flags == ZMTP_COMMAND && len == 10 && memcmp(buf, "\4PONGctx42", 10) == 0);
    s_write_frame(fd, 0, "raw", 3);   /* and requests go on */
    flags = s_read_frame(fd, buf, sizeof buf, &len);
    CHECK(flags == 0 && len == 3 && memcmp(buf, "raw", 3) == 0);
    close(fd);

    /* refused: another mechanism, a socket type that does not call,
     * flags ZMTP does not have, a message before READY */
    CHECK(s_closed(s_raw_open("CURVE", NULL), NULL));
    CHECK(s_closed(s_raw_open("NULL", "PUB"), "DEALER, REQ or ROUTER"));
    fd = s_raw_open("NULL", "DEALER");
    s_write_frame(fd, 0x40, "x", 1);
    CHECK(s_closed(fd, "malformed frame"));
    fd = s_raw_open("NULL", NULL);
    s_write_frame(fd, 0, "early", 5);
    CHECK(s_closed(fd, "before READY"));
    fd = s_raw();   /* not ZMTP at all */
    send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789012345678901234567890123456789", 66, MSG_NOSIGNAL);
    uint8_t greeting[ZMTP_GREETING];
    CHECK(s_read_all(fd, greeting, sizeof greeting));
    CHECK(s_closed(fd, NULL));
    CHECK(s_wait_conns(0));
    s_unserve();
}

static void s_test_gone_peer(void *zctx)
{
    s_serve("tcp://127.0.0.1:P", MAX_BYTES);
    void *a = s_zsock(zctx, ZMQ_DEALER, L.endpoint);
    zmq_send(a, "hold", 4, 0);
    for (int i = 0; i < 1000 && atomic_load(&L.delivered) < 1; i++)
        util_sleep_ms(2);
    CHECK(s_wait_conns(1));
    zmq_close(a);
    CHECK(s_wait_conns(0));

    /* the next connection takes the slot of the one that has gone */
    void *b = s_zsock(zctx, ZMQ_DEALER, L.endpoint);
    CHECK(s_ask(b, "flush", "flushed"));
    CHECK(atomic_load(&L.held_dropped));
    int timeout = 100;
    char buf[16];
    zmq_setsockopt(b, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    CHECK(zmq_recv(b, buf, sizeof buf, 0) < 0);   /* not the other's reply */
    zmq_close(b);
    s_unserve();
}

/* Paused (draining): no new connection or request is taken, PINGs are
 * answered, a reply to a request taken before still goes out. */
static void s_test_pause(void *zctx)
{
    uint8_t buf[64];
    size_t len;

    s_serve("tcp://127.0.0.1:P", MAX_BYTES);
    void *a = s_zsock(zctx, ZMQ_DEALER, L.endpoint);
    zmq_send(a, "hold", 4, 0);
    int raw = s_raw_open("NULL", "DEALER");
    void *b = s_zsock(zctx, ZMQ_DEALER, L.endpoint);
    CHECK(s_ask(b, "pause", "paused"));
    int delivered = atomic_load(&L.delivered);

    static const uint8_t ping[] = {4, 'P', 'I', 'N', 'G', 0, 10, 'd', 'r'};
    s_write_frame(raw, ZMTP_COMMAND, ping, sizeof ping);
    CHECK(s_read_frame(raw, buf, sizeof buf, &len) == ZMTP_COMMAND && len == 7 &&
          memcmp(buf, "\4PONGdr", 7) == 0);
    s_write_frame(raw, 0, "late", 4);
    util_sleep_ms(200);
    CHECK_INT(atomic_load(&L.delivered), delivered);   /* not read */

    atomic_store(&L.answer_held, true);
    char reply[16];
    CHECK_INT(zmq_recv(a, reply, sizeof reply, 0), 4);
    CHECK(memcmp(reply, "held", 4) == 0);

    /* no new connection is greeted */
    int late = s_raw();
    struct timeval t = {0, 300000};
    setsockopt(late, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
    CHECK(recv(late, buf, sizeof buf, 0) < 0);
    close(late);
    close(raw);
    zmq_close(a);
    zmq_close(b);
    s_unserve();
}

/* The handshake's deadline counts from the accept: a silent connection and
 * one trickling its greeting a byte at a time are both closed by then; a
 * handshake in time goes on. */
static void s_test_handshake_deadline(void)
{
    uint8_t g[ZMTP_GREETING], buf[64];
    size_t len;

    L.handshake_ms = 300;
    s_serve("tcp://127.0.0.1:P", MAX_BYTES);
    int silent = s_raw(), trickle = s_raw();
    int64_t t0 = util_mono_us();
    zmtp_greeting(g, false);
    bool open = true;
    for (int i = 0; i < 12 && open; i++) {   /* a byte every 100 ms */
        open = send(trickle, g + i, 1, MSG_NOSIGNAL) == 1;
        util_sleep_ms(100);
    }
    CHECK(s_read_all(trickle, buf, ZMTP_GREETING));   /* the router's greeting, then the close */
    CHECK(recv(trickle, buf, sizeof buf, 0) == 0);
    int64_t trickled_ms = (util_mono_us() - t0) / 1000;
    CHECK(trickled_ms < 1000);   /* not 12 bytes' worth of reset timeouts */
    CHECK(s_read_all(silent, buf, ZMTP_GREETING));
    CHECK(recv(silent, buf, sizeof buf, 0) == 0);
    close(silent);
    close(trickle);
    int fd = s_raw_open("NULL", "DEALER");   /* in time: goes on past the deadline */
    util_sleep_ms(400);
    s_write_frame(fd, 0, "late", 4);
    CHECK(s_read_frame(fd, buf, sizeof buf, &len) == 0 && len == 4);
    close(fd);
    printf("handshake deadline 300 ms: a trickling greeting closed after %lld ms\n",
           (long long)trickled_ms);
    s_unserve();
}

/* Out of descriptors: the listener waits and takes the connection once
 * some are free, rather than spin or drop it. */
static void s_test_out_of_descriptors(void)
{
    struct rlimit old, low;
    enum { N = 6, ROOM = 2 };
    int fds[N], n = N;

    s_serve("tcp://127.0.0.1:P", MAX_BYTES);
    for (int i = 0; i < N; i++) {   /* the callers' sockets first, so the limit only binds the router */
        struct timeval t = {0, 200000};
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
    }
    getrlimit(RLIMIT_NOFILE, &old);
    int probe = dup(0);   /* the lowest free descriptor: those below are in use */
    close(probe);
    low = old;
    low.rlim_cur = (rlim_t)probe + ROOM;   /* room for ROOM accepted connections */
    setrlimit(RLIMIT_NOFILE, &low);
    int port = atoi(strrchr(L.endpoint, ':') + 1);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < N; i++)
        connect(fds[i], (struct sockaddr *)&sin, sizeof sin);
    uint8_t g[ZMTP_GREETING];
    int greeted = 0, waiting = -1;
    for (int i = 0; i < n; i++) {
        if (recv(fds[i], g, sizeof g, MSG_WAITALL) == (ssize_t)sizeof g)
            greeted++;
        else if (waiting < 0)
            waiting = i;
    }
    CHECK(greeted < N && waiting >= 0);   /* not all accepted (about ROOM are) */
    struct rusage r0, r1;   /* meanwhile the loop waits, not spins */
    getrusage(RUSAGE_SELF, &r0);
    util_sleep_ms(300);
    getrusage(RUSAGE_SELF, &r1);
    int64_t cpu_us = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) *
                         1000000LL + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) +
                     (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
    CHECK(cpu_us < 100000);
    for (int i = 0; i < n; i++)   /* free the router's descriptors too */
        if (i != waiting)
            close(fds[i]);
    setrlimit(RLIMIT_NOFILE, &old);
    struct timeval t = {3, 0};
    if (waiting >= 0) {
        setsockopt(fds[waiting], SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
        CHECK(recv(fds[waiting], g, sizeof g, MSG_WAITALL) == (ssize_t)sizeof g && g[0] == 0xFF);
        close(fds[waiting]);
    }
    printf("out of descriptors: %d of %d connections greeted, the next once some were free; "
           "%lld µs of CPU in 300 ms meanwhile\n", greeted, n, (long long)cpu_us);
    s_unserve();
}

static void s_test_backpressure(void)
{
    enum { N = 400, SIZE = 65536 };
    s_serve("tcp://127.0.0.1:P", MAX_BYTES);
    int fd = s_raw_open("NULL", "DEALER");

    for (int i = 0; i < N; i++) {
        char text[32];
        int n = snprintf(text, sizeof text, "big:%d", SIZE);
        s_write_frame(fd, 0, text, (size_t)n);
    }
    util_sleep_ms(300);   /* nothing read: the router stops reading the requests */
    int stalled = atomic_load(&L.delivered);
    CHECK(stalled < N);
    CHECK(atomic_load(&L.max_unsent) <= 1024 * 1024 + SIZE + 16);
    printf("backpressure: %d of %d requests taken while the replies were not read, "
           "at most %zu bytes unsent\n", stalled, N, atomic_load(&L.max_unsent));

    /* reading them all: every request answered, in full */
    uint8_t *buf = malloc(SIZE);
    int whole = 0;
    size_t len;
    for (int i = 0; i < N; i++)
        if (s_read_frame(fd, buf, SIZE, &len) == ZMTP_LONG && len == SIZE && buf[0] == 'x' &&
            buf[SIZE - 1] == 'x')
            whole++;
    CHECK_INT(whole, N);
    CHECK_INT(atomic_load(&L.delivered), N);
    free(buf);
    close(fd);
    s_unserve();
}

int main(void)
{
    void *zctx = zmq_ctx_new();

    signal(SIGPIPE, SIG_IGN);
    /* first: libzmq closes the sockets of later tests in the background,
     * freeing descriptors under this one's limit */
    s_test_out_of_descriptors();
    s_test_dealer_and_req(zctx);
    s_test_refused_requests(zctx);
    s_test_endpoints(zctx);
    s_test_protocol();
    s_test_gone_peer(zctx);
    s_test_pause(zctx);
    s_test_handshake_deadline();
    s_test_backpressure();
    zmq_ctx_term(zctx);
    return check_done();
}
