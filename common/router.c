/* router: a ZMTP 3.x ROUTER on the service's libevent loop (see router.h).
 * Each connection is a bufferevent: the greeting and READY each way, then
 * requests, read from its input as they complete. A reply goes straight to
 * the socket when nothing of the connection's is waiting to be written (so
 * a call costs one system call each way), else after what is waiting. */
#include "router.h"

#include <errno.h>
#include <inttypes.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "slog.h"
#include "util.h"
#include "zmtp.h"

#define ROUTE_TAG      'r'                 /* a route: the tag, the slot, its generation, */
#define ROUTE_LEN      9                   /* then a REQ peer's envelope */
#define ENVELOPE_MAX   255                 /* bytes of a REQ peer's envelope, as frames */
#define BACKLOG        256
#define HANDSHAKE_MS   30000               /* a connection must say READY within this */
#define COMMAND_MAX    (64 * 1024)         /* a larger command ends the connection */
#define FRAME_FACTOR   4                   /* a frame over max_bytes times this ends it too */
#define OUT_HIGH       (1024 * 1024)       /* unsent replies over this: stop reading requests */
#define OUT_LOW        (256 * 1024)        /* ... until they are down to this */
#define ACCEPT_RETRY_MS 100                /* after accept fails (out of descriptors) */

enum { S_GREETING, S_READY, S_OPEN };

typedef struct conn {
    router_t *r;
    struct bufferevent *bev;
    uint32_t slot, gen;
    int state;
    bool req;           /* a REQ peer: an envelope before each request and reply */
    bool blocked;       /* its replies back up: not read until they are written */
    int64_t accepted_us;
    /* the request coming in */
    bool delimited;     /* a REQ peer's envelope read, up to its empty delimiter */
    uint8_t envelope[ENVELOPE_MAX];   /* its frames before the delimiter, as [size][bytes] */
    size_t envelope_len;
    size_t frames, bytes;
    uint64_t skip;      /* bytes of a frame being skipped still to come */
    bool skip_last;     /* ... and it ends the request */
} conn_t;

struct router {
    struct event_base *base;
    struct evconnlistener *lis;
    struct event *ev_retry;
    char endpoint[256];
    char unlink_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    size_t max_bytes;
    router_fn fn;
    void *arg;
    conn_t **slots;     /* connections by slot; a route names a slot and its generation */
    uint32_t *gens;
    uint32_t *free_slots;
    size_t n_slots, n_free, n_conns;
    bool paused;
    int64_t handshake_us;
    int64_t accept_logged_us;
};

/* --- writing ---------------------------------------------------------------- */

/* Writes the iovecs to the connection: to the socket at once when nothing
 * is waiting before them, what the socket does not take after. A socket
 * error is left for the bufferevent, which meets it when it writes. */
static void s_out(conn_t *c, struct iovec *iov, int n)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t done = 0;

    if (evbuffer_get_length(out) == 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(bufferevent_getfd(c->bev), &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        done = w > 0 ? (size_t)w : 0;
    }
    for (int i = 0; i < n; i++) {
        size_t skip = done < iov[i].iov_len ? done : iov[i].iov_len;
        done -= skip;
        if (iov[i].iov_len > skip)
            evbuffer_add(out, (const uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip);
    }
    if (!c->blocked && evbuffer_get_length(out) > OUT_HIGH) {
        c->blocked = true;
        bufferevent_disable(c->bev, EV_READ);
    }
}

/* A frame; a reply to a REQ peer goes after its request's envelope
 * (`envelope`: frames as [size][bytes]) and an empty delimiter. */
static void s_frame_out(conn_t *c, int flags, const void *body, size_t len, const uint8_t *envelope,
                        size_t envelope_len)
{
    uint8_t head[2 * ENVELOPE_MAX + 2 + ZMTP_HEAD_MAX];
    size_t hl = 0;

    if (c->req && !(flags & ZMTP_COMMAND)) {
        for (size_t at = 0; at < envelope_len; at += 1 + envelope[at]) {
            head[hl++] = ZMTP_MORE;
            memcpy(head + hl, envelope + at, 1 + (size_t)envelope[at]);
            hl += 1 + (size_t)envelope[at];
        }
        head[hl++] = ZMTP_MORE;   /* the delimiter */
        head[hl++] = 0;
    }
    hl += zmtp_head(head + hl, flags, len);
    struct iovec iov[2] = {{head, hl}, {(void *)body, len}};
    s_out(c, iov, len ? 2 : 1);
}

/* --- connections -------------------------------------------------------------- */

static void s_peer(const conn_t *c, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[64], port[16];

    if (getpeername(bufferevent_getfd(c->bev), (struct sockaddr *)&ss, &sl) == 0 &&
        ss.ss_family != AF_UNIX &&
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(buf, len, "%s port %s", host, port);
    else
        snprintf(buf, len, "%s", c->r->endpoint);
}

static void s_free(conn_t *c)
{
    router_t *r = c->r;

    r->slots[c->slot] = NULL;
    r->gens[c->slot]++;
    r->free_slots[r->n_free++] = c->slot;
    r->n_conns--;
    bufferevent_free(c->bev);
    free(c);
}

/* Ends a connection that broke the protocol: says why to the peer (a ZMTP
 * ERROR, once the greetings are done) and in the log. */
static void s_refuse(conn_t *c, const char *why)
{
    char peer[300];

    if (c->state != S_GREETING) {
        uint8_t error[7 + 255] = {5, 'E', 'R', 'R', 'O', 'R'};
        size_t wl = strlen(why) > 255 ? 255 : strlen(why);
        error[6] = (uint8_t)wl;
        memcpy(error + 7, why, wl);
        s_frame_out(c, ZMTP_COMMAND, error, 7 + wl, NULL, 0);   /* straight out, as a rule: best effort */
    }
    s_peer(c, peer, sizeof peer);
    slog_warn("rpc: closed the connection from %s: %s", peer, why);
    s_free(c);
}

/* The request read in full, to the router's callback with its one frame
 * (NULL: refused unread), which takes it. */
static void s_deliver(conn_t *c, zmq_msg_t *frame)
{
    router_t *r = c->r;
    zmq_msg_t route;

    if (zmq_msg_init_size(&route, ROUTE_LEN + c->envelope_len) != 0) {
        slog_error("rpc: out of memory for a request");
        abort();
    }
    uint8_t *p = zmq_msg_data(&route);
    p[0] = ROUTE_TAG;
    memcpy(p + 1, &c->slot, 4);
    memcpy(p + 5, &c->gen, 4);
    memcpy(p + ROUTE_LEN, c->envelope, c->envelope_len);
    r->fn(r->arg, &route, frame, c->frames, c->bytes);
    c->delimited = false;
    c->frames = c->bytes = c->envelope_len = 0;
}

/* A command: 0, or -1 when the connection was ended. */
static int s_command(conn_t *c, const uint8_t *body, size_t len)
{
    char type[16];

    if (c->state == S_READY) {
        if (!zmtp_ready_type(body, len, type, sizeof type))
            return s_refuse(c, "expected READY with a Socket-Type"), -1;
        if (strcmp(type, "DEALER") != 0 && strcmp(type, "REQ") != 0 && strcmp(type, "ROUTER") != 0)
            return s_refuse(c, "a service is called from a DEALER, REQ or ROUTER socket"), -1;
        c->req = strcmp(type, "REQ") == 0;
        c->state = S_OPEN;
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        return 0;
    }
    if (zmtp_is_command(body, len, "PING") && len >= 7) {   /* ZMTP 3.1 heartbeats */
        uint8_t pong[21];
        s_frame_out(c, ZMTP_COMMAND, pong, zmtp_pong(pong, body, len), NULL, 0);
    } else if (zmtp_is_command(body, len, "ERROR")) {
        s_free(c);   /* the peer ends the connection */
        return -1;
    } else if (zmtp_is_command(body, len, "READY")) {
        return s_refuse(c, "READY twice"), -1;
    }
    return 0;   /* PONG, and commands of later versions */
}

/* Reads what has come in: the greeting, commands, requests. The connection
 * may be freed on return. */
static void s_process(conn_t *c)
{
    router_t *r = c->r;
    struct evbuffer *in = bufferevent_get_input(c->bev);

    if (c->state != S_OPEN) {   /* a deadline from the accept, however the bytes trickle in */
        int64_t left = c->accepted_us + r->handshake_us - util_mono_us();
        if (left <= 0)
            return s_refuse(c, "no handshake in time");
        struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};
        bufferevent_set_timeouts(c->bev, &tv, NULL);
    }
    while (!c->blocked) {
        size_t have = evbuffer_get_length(in);
        if (c->skip > 0) {   /* a frame not kept, dropped as it comes */
            size_t n = have < c->skip ? have : (size_t)c->skip;
            if (n == 0)
                return;
            evbuffer_drain(in, n);
            if ((c->skip -= n) == 0 && c->skip_last)
                s_deliver(c, NULL);
            continue;
        }
        if (c->state == S_GREETING) {
            uint8_t g[ZMTP_GREETING], ready[32];
            if (have < ZMTP_GREETING)
                return;
            evbuffer_remove(in, g, sizeof g);
            if (!zmtp_greeting_ok(g))
                return s_refuse(c, "the peer does not speak ZMTP 3 with the NULL mechanism");
            c->state = S_READY;
            s_frame_out(c, ZMTP_COMMAND, ready, zmtp_ready_command(ready, "ROUTER"), NULL, 0);
            continue;
        }
        uint8_t h[ZMTP_HEAD_MAX];
        int flags;
        uint64_t size;
        size_t hn = have < sizeof h ? have : sizeof h;
        evbuffer_copyout(in, h, hn);
        int hl = zmtp_parse_head(h, hn, &flags, &size);
        if (hl == 0)
            return;
        if (hl < 0)
            return s_refuse(c, "malformed frame");
        if (flags & ZMTP_COMMAND) {
            if ((flags & ZMTP_MORE) || size > COMMAND_MAX)
                return s_refuse(c, "malformed command");
            if (have < (size_t)hl + size)
                return;
            evbuffer_drain(in, (size_t)hl);
            const uint8_t *body = evbuffer_pullup(in, (ssize_t)size);
            if (!body && size > 0)
                return s_refuse(c, "out of memory");
            if (s_command(c, body, (size_t)size) != 0)
                return;
            evbuffer_drain(in, (size_t)size);
            continue;
        }
        if (c->state != S_OPEN)
            return s_refuse(c, "a message before READY");
        if (r->paused)
            return;   /* draining: requests stay unread, commands are still answered */
        if (size > (uint64_t)r->max_bytes * FRAME_FACTOR)
            return s_refuse(c, "a frame far over the size limit");
        bool more = flags & ZMTP_MORE;
        if (c->req && !c->delimited && more) {   /* a REQ peer's envelope */
            if (size > 0) {   /* its request id (ZMQ_REQ_CORRELATE), kept for the reply */
                if (c->envelope_len + 1 + size > sizeof c->envelope)
                    return s_refuse(c, "a REQ envelope over 255 bytes");
                if (have < (size_t)hl + size)
                    return;
                c->envelope[c->envelope_len] = (uint8_t)size;
                evbuffer_drain(in, (size_t)hl);
                evbuffer_remove(in, c->envelope + c->envelope_len + 1, (size_t)size);
                c->envelope_len += 1 + (size_t)size;
                continue;
            }
            evbuffer_drain(in, (size_t)hl);   /* the empty delimiter */
            c->delimited = true;
            continue;
        }
        if (c->frames == 0 && !more && size <= r->max_bytes) {   /* a request of one frame: kept */
            if (have < (size_t)hl + size)
                return;
            zmq_msg_t frame;
            if (zmq_msg_init_size(&frame, (size_t)size) != 0) {
                slog_error("rpc: out of memory for a request of %" PRIu64 " bytes", size);
                abort();
            }
            evbuffer_drain(in, (size_t)hl);
            evbuffer_remove(in, zmq_msg_data(&frame), (size_t)size);
            c->frames = 1;
            c->bytes = (size_t)size;
            s_deliver(c, &frame);
            continue;
        }
        /* a frame of a request refused unread (several frames, or too long) */
        evbuffer_drain(in, (size_t)hl);
        c->frames++;
        c->bytes = size > SIZE_MAX - c->bytes ? SIZE_MAX : c->bytes + (size_t)size;
        c->skip = size;
        c->skip_last = !more;
        if (size == 0 && !more)
            s_deliver(c, NULL);
    }
}

static void s_on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    s_process(arg);
}

/* Its unsent replies are down to OUT_LOW: read requests again. */
static void s_on_write(struct bufferevent *bev, void *arg)
{
    conn_t *c = arg;

    (void)bev;
    if (!c->blocked)
        return;
    c->blocked = false;
    bufferevent_enable(c->bev, EV_READ);
    s_process(c);
}

static void s_on_event(struct bufferevent *bev, short what, void *arg)
{
    conn_t *c = arg;

    (void)bev;
    if (what & BEV_EVENT_TIMEOUT)
        s_refuse(c, "no handshake in time");
    else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        s_free(c);   /* the peer has gone */
}

/* A free slot; -1 if memory ran out. */
static int64_t s_slot(router_t *r)
{
    if (r->n_free == 0) {
        size_t n = r->n_slots ? r->n_slots * 2 : 64;
        conn_t **slots = realloc(r->slots, n * sizeof *slots);
        if (slots)
            r->slots = slots;
        uint32_t *gens = realloc(r->gens, n * sizeof *gens);
        if (gens)
            r->gens = gens;
        uint32_t *free_slots = realloc(r->free_slots, n * sizeof *free_slots);
        if (free_slots)
            r->free_slots = free_slots;
        if (!slots || !gens || !free_slots)
            return -1;
        for (size_t i = r->n_slots; i < n; i++) {
            r->slots[i] = NULL;
            r->gens[i] = 0;
            r->free_slots[r->n_free++] = (uint32_t)(n - 1 - (i - r->n_slots));
        }
        r->n_slots = n;
    }
    return r->free_slots[--r->n_free];
}

static void s_on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                        int sa_len, void *arg)
{
    router_t *r = arg;
    conn_t *c = calloc(1, sizeof *c);
    int64_t slot = c ? s_slot(r) : -1;
    struct timeval handshake = {(time_t)(r->handshake_us / 1000000),
                                (suseconds_t)(r->handshake_us % 1000000)};
    uint8_t greeting[ZMTP_GREETING];

    (void)lis;
    (void)sa_len;
    if (slot < 0 || !(c->bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
        slog_error("rpc: out of memory for a connection");
        if (slot >= 0)
            r->free_slots[r->n_free++] = (uint32_t)slot;
        evutil_closesocket(fd);
        free(c);
        return;
    }
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->r = r;
    c->accepted_us = util_mono_us();
    c->slot = (uint32_t)slot;
    c->gen = r->gens[slot];
    r->slots[slot] = c;
    r->n_conns++;
    bufferevent_setcb(c->bev, s_on_read, s_on_write, s_on_event, c);
    /* a request of max_bytes fits; past that, reading waits for it to be taken */
    bufferevent_setwatermark(c->bev, EV_READ, 0, r->max_bytes + COMMAND_MAX + ZMTP_HEAD_MAX);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
    bufferevent_set_timeouts(c->bev, &handshake, NULL);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    zmtp_greeting(greeting, true);
    struct iovec iov = {greeting, sizeof greeting};
    s_out(c, &iov, 1);
}

static void s_on_retry(evutil_socket_t fd, short what, void *arg)
{
    router_t *r = arg;

    (void)fd;
    (void)what;
    if (!r->paused)
        evconnlistener_enable(r->lis);
}

/* accept failed, most likely out of descriptors: waits a little rather
 * than spin on a connection it cannot take. */
static void s_on_accept_error(struct evconnlistener *lis, void *arg)
{
    router_t *r = arg;
    struct timeval retry = {0, ACCEPT_RETRY_MS * 1000};
    int64_t now = util_mono_us();
    int err = EVUTIL_SOCKET_ERROR();

    if (now - r->accept_logged_us > 10 * 1000000) {
        slog_error("rpc: cannot accept a connection on %s: %s", r->endpoint, strerror(err));
        r->accept_logged_us = now;
    }
    evconnlistener_disable(lis);
    evtimer_add(r->ev_retry, &retry);
}

/* --- listening ------------------------------------------------------------------- */

static int s_bound(int fd, const struct sockaddr *sa, socklen_t len)
{
    if (bind(fd, sa, len) != 0 || listen(fd, BACKLOG) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int s_listen_tcp(const zmtp_endpoint_t *ep, char *err, size_t err_len)
{
    char *end;
    long port = strtol(ep->port, &end, 10);
    int one = 1, zero = 0, fd = -1;

    if (*end || port < 1 || port > 65535) {
        snprintf(err, err_len, "the port must be a number from 1 to 65535");
        return -1;
    }
    if (strcmp(ep->host, "*") == 0) {   /* every address: IPv6 and IPv4 where there is IPv6 */
        struct sockaddr_in6 any6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                                    .sin6_addr = IN6ADDR_ANY_INIT};
        struct sockaddr_in any4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                   .sin_addr.s_addr = htonl(INADDR_ANY)};
        fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            fd = s_bound(fd, (struct sockaddr *)&any6, sizeof any6);
        }
        /* no IPv6 here (a kernel without it, a sandbox): IPv4 alone; a
         * port in use stays an error */
        if (fd < 0 && errno != EADDRINUSE &&
            (fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            fd = s_bound(fd, (struct sockaddr *)&any4, sizeof any4);
        }
    } else {
        struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
        struct addrinfo *ai = NULL;
        int gai = getaddrinfo(ep->host, ep->port, &hints, &ai);
        if (gai != 0) {
            snprintf(err, err_len, "cannot resolve %.100s: %s", ep->host, gai_strerror(gai));
            return -1;
        }
        /* IPv4 first, as libzmq binds a name: `localhost` may list ::1 first */
        for (int pass = 0; pass < 2 && fd < 0; pass++)
            for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
                if ((a->ai_family == AF_INET) != (pass == 0))
                    continue;
                fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
                if (fd < 0)
                    continue;
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                fd = s_bound(fd, a->ai_addr, a->ai_addrlen);
            }
        freeaddrinfo(ai);
    }
    if (fd < 0)
        snprintf(err, err_len, "%s", strerror(errno));
    return fd;
}

/* A socket file at the path is taken over if nothing listens on it (a
 * process that has gone left it); anything else there is left alone. */
static int s_listen_ipc(router_t *r, const zmtp_endpoint_t *ep, char *err, size_t err_len)
{
    const char *path = ep->un.sun_path;
    struct stat st;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        snprintf(err, err_len, "%s", strerror(errno));
        return -1;
    }
    if (path[0] && lstat(path, &st) == 0) {
        /* only a refused connection says nothing is there: a full backlog
         * (EAGAIN), another kind of socket or no permission is someone's */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int rc = probe < 0 ? -1 : connect(probe, (const struct sockaddr *)&ep->un, ep->un_len);
        int why = rc == 0 ? 0 : errno;
        if (probe >= 0)
            close(probe);
        if (!S_ISSOCK(st.st_mode) || rc == 0 || why != ECONNREFUSED) {
            snprintf(err, err_len, "%s",
                     !S_ISSOCK(st.st_mode) ? "a file that is not a socket is there"
                     : rc == 0 || why == EAGAIN ? "another process is listening there"
                                                : strerror(why));
            close(fd);
            return -1;
        }
        unlink(path);
    }
    if ((fd = s_bound(fd, (const struct sockaddr *)&ep->un, ep->un_len)) < 0) {
        snprintf(err, err_len, "%s", strerror(errno));
        return -1;
    }
    if (path[0])
        snprintf(r->unlink_path, sizeof r->unlink_path, "%s", path);
    return fd;
}

router_t *router_new(struct event_base *base, const char *endpoint, size_t max_bytes,
                     router_fn fn, void *arg, char *err, size_t err_len)
{
    router_t *r = calloc(1, sizeof *r);
    zmtp_endpoint_t ep;
    char why[200] = "out of memory";
    int fd = -1;

    if (!r)
        goto fail;
    r->base = base;
    r->max_bytes = max_bytes;
    r->handshake_us = HANDSHAKE_MS * 1000LL;
    r->fn = fn;
    r->arg = arg;
    snprintf(r->endpoint, sizeof r->endpoint, "%s", endpoint);
    if (zmtp_endpoint(endpoint, &ep) != 0) {
        snprintf(why, sizeof why, "expected tcp://host:port or ipc://path");
        goto fail;
    }
    fd = ep.ipc ? s_listen_ipc(r, &ep, why, sizeof why) : s_listen_tcp(&ep, why, sizeof why);
    if (fd < 0)
        goto fail;
    r->ev_retry = evtimer_new(base, s_on_retry, r);
    r->lis = evconnlistener_new(base, s_on_accept, r, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                0, fd);   /* 0: listening already */
    if (!r->ev_retry || !r->lis)
        goto fail;
    evconnlistener_set_error_cb(r->lis, s_on_accept_error);
    return r;
fail:
    snprintf(err, err_len, "cannot listen on %s: %s", endpoint, why);
    if (r && !r->lis && fd >= 0)
        close(fd);
    router_destroy(&r);
    return NULL;
}

void router_destroy(router_t **p)
{
    router_t *r = p ? *p : NULL;

    if (!r)
        return;
    for (size_t i = 0; i < r->n_slots; i++)
        if (r->slots[i])
            s_free(r->slots[i]);
    if (r->lis)
        evconnlistener_free(r->lis);
    if (r->ev_retry)
        event_free(r->ev_retry);
    if (r->unlink_path[0])
        unlink(r->unlink_path);
    free(r->slots);
    free(r->gens);
    free(r->free_slots);
    free(r);
    *p = NULL;
}

bool router_reply(router_t *r, zmq_msg_t *route, zmq_msg_t *reply)
{
    const uint8_t *p = zmq_msg_data(route);
    uint32_t slot, gen;

    size_t len = zmq_msg_size(route);

    if (!r || len < ROUTE_LEN || len > ROUTE_LEN + ENVELOPE_MAX || p[0] != ROUTE_TAG)
        return false;
    memcpy(&slot, p + 1, 4);
    memcpy(&gen, p + 5, 4);
    if (slot < r->n_slots && r->slots[slot] && r->gens[slot] == gen)
        s_frame_out(r->slots[slot], 0, zmq_msg_data(reply), zmq_msg_size(reply), p + ROUTE_LEN,
                    len - ROUTE_LEN);
    zmq_msg_close(route);
    zmq_msg_close(reply);
    return true;
}

void router_set_handshake_ms(router_t *r, int ms)
{
    r->handshake_us = (int64_t)ms * 1000;
}

void router_pause(router_t *r)
{
    if (!r || r->paused)
        return;
    r->paused = true;
    evconnlistener_disable(r->lis);   /* connections are still read: PINGs, and a close */
}

size_t router_unsent(const router_t *r)
{
    size_t n = 0;

    for (size_t i = 0; r && i < r->n_slots; i++)
        if (r->slots[i])
            n += evbuffer_get_length(bufferevent_get_output(r->slots[i]->bev));
    return n;
}

size_t router_connections(const router_t *r)
{
    return r ? r->n_conns : 0;
}
