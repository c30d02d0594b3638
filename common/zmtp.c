/* zmtp: a ZMTP 3.0 DEALER connection on a stream socket (see zmtp.h). The
 * protocol is ZeroMQ's RFC 23: a 64-byte greeting each way, a READY
 * command each way, then frames of a flags byte (MORE 1, LONG 2, COMMAND
 * 4), a size (one byte, or eight in network order when LONG) and the body.
 * The socket is non-blocking; every wait is a poll bounded by the caller's
 * deadline, the connect included. */
#include "zmtp.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "slog.h"
#include "util.h"

#define ZMTP_RESOLVE_US 1000000   /* a name is resolved again at most this often */
#define ZMTP_KEEP_BYTES (256u * 1024)   /* a receive buffer larger than this is freed when empty */

struct zmtp {
    int fd;
    char endpoint[256];
    zmtp_endpoint_t ep;
    struct addrinfo *ai;        /* what ep.host last resolved to */
    int gai;                    /* the last lookup's result, at resolved_us (0: never) */
    int64_t resolved_us;
    size_t max_frame;
    bool rest;                  /* dropping the frames after a message's first */
    uint8_t *buf;               /* received bytes [start, end) */
    size_t start, end, cap;
};

static int s_left_ms(int64_t deadline_us)
{
    int64_t left = deadline_us - util_mono_us();

    if (left <= 0)
        return 0;
    left = (left + 999) / 1000;
    return left > 86400000 ? 86400000 : (int)left;
}

/* Waits for `events` on z->fd: 1, 0 past the deadline, -1 on error. */
static int s_wait(zmtp_t *z, short events, int64_t deadline_us)
{
    for (;;) {
        struct pollfd p = {z->fd, events, 0};
        int rc = poll(&p, 1, s_left_ms(deadline_us));
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

bool zmtp_speaks(const char *endpoint)
{
    return strncmp(endpoint, "tcp://", 6) == 0 || strncmp(endpoint, "ipc://", 6) == 0;
}

int zmtp_endpoint(const char *endpoint, zmtp_endpoint_t *ep)
{
    const char *rest = endpoint + 6;

    memset(ep, 0, sizeof *ep);
    if (strncmp(endpoint, "tcp://", 6) == 0) {
        const char *colon = strrchr(rest, ':');
        size_t hl = colon ? (size_t)(colon - rest) : 0;
        if (hl >= 2 && rest[0] == '[' && rest[hl - 1] == ']') {   /* tcp://[::1]:7101 */
            rest++;
            hl -= 2;
        }
        if (!colon || hl == 0 || hl >= sizeof ep->host || !colon[1] ||
            strlen(colon + 1) >= sizeof ep->port)
            return -1;
        memcpy(ep->host, rest, hl);
        snprintf(ep->port, sizeof ep->port, "%s", colon + 1);
        return 0;
    }
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        size_t pl = strlen(rest);
        if (pl == 0 || pl >= sizeof ep->un.sun_path)
            return -1;
        ep->ipc = true;
        ep->un.sun_family = AF_UNIX;
        memcpy(ep->un.sun_path, rest, pl);
        if (rest[0] == '@')   /* the abstract namespace: a leading NUL, no terminator */
            ep->un.sun_path[0] = '\0';
        ep->un_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl + (rest[0] == '@' ? 0 : 1));
        return 0;
    }
    return -1;
}

zmtp_t *zmtp_new(const char *endpoint, size_t max_frame)
{
    zmtp_t *z = calloc(1, sizeof *z);

    if (!z)
        return NULL;
    z->fd = -1;
    z->max_frame = max_frame;
    snprintf(z->endpoint, sizeof z->endpoint, "%s", endpoint);
    if (zmtp_endpoint(endpoint, &z->ep) != 0) {
        slog_error("zmtp: %s is not tcp://host:port or ipc://path", endpoint);
        free(z);
        return NULL;
    }
    return z;
}

void zmtp_close(zmtp_t *z)
{
    if (z->fd >= 0)
        close(z->fd);
    z->fd = -1;
    z->start = z->end = 0;
    z->rest = false;
}

void zmtp_destroy(zmtp_t **p)
{
    if (!p || !*p)
        return;
    zmtp_close(*p);
    if ((*p)->ai)
        freeaddrinfo((*p)->ai);
    free((*p)->buf);
    free(*p);
    *p = NULL;
}

/* Room for `need` more bytes at the end of the buffer; 0 or -1. */
static int s_room(zmtp_t *z, size_t need)
{
    if (z->start > 0 && z->start == z->end)
        z->start = z->end = 0;
    if (z->cap - z->end >= need)
        return 0;
    if (z->start > 0) {   /* keep what is buffered, at the front */
        memmove(z->buf, z->buf + z->start, z->end - z->start);
        z->end -= z->start;
        z->start = 0;
        if (z->cap - z->end >= need)
            return 0;
    }
    size_t cap = z->cap ? z->cap : 65536;
    while (cap - z->end < need)
        cap *= 2;
    uint8_t *b = realloc(z->buf, cap);
    if (!b)
        return -1;
    z->buf = b;
    z->cap = cap;
    return 0;
}

/* At least `need` bytes buffered from z->start: 1, 0 past the deadline, -1
 * if the connection failed (errno; ECONNRESET when the peer closed it).
 * It waits before it reads: a reply is seldom there yet when it is asked
 * for, and a read that finds nothing would be a system call for nothing. */
static int s_fill(zmtp_t *z, size_t need, int64_t deadline_us)
{
    while (z->end - z->start < need) {
        if (s_room(z, need > 4096 ? need - (z->end - z->start) : 4096) != 0)
            return -1;
        int w = s_wait(z, POLLIN, deadline_us);
        if (w <= 0)
            return w;
        ssize_t r = recv(z->fd, z->buf + z->end, z->cap - z->end, 0);
        if (r > 0) {
            z->end += (size_t)r;
            if (z->end - z->start < need && util_mono_us() >= deadline_us)
                return 0;   /* a frame still coming: what came stays buffered */
            continue;
        }
        if (r == 0) {
            errno = ECONNRESET;
            return -1;
        }
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
    }
    return 1;
}

static int s_write_all(zmtp_t *z, struct iovec *iov, int n, int64_t deadline_us)
{
    while (n > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(z->fd, &m, MSG_NOSIGNAL);   /* a reset peer is an error, not SIGPIPE */
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            int rc = s_wait(z, POLLOUT, deadline_us);
            if (rc == 0)
                errno = ETIMEDOUT;
            if (rc <= 0)
                return -1;
            continue;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

void zmtp_greeting(uint8_t out[ZMTP_GREETING], bool as_server)
{
    static const uint8_t head[] = {0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0, 'N', 'U', 'L', 'L'};

    memset(out, 0, ZMTP_GREETING);
    memcpy(out, head, sizeof head);
    out[32] = as_server;
}

bool zmtp_greeting_ok(const uint8_t g[ZMTP_GREETING])
{
    static const uint8_t null_mechanism[20] = {'N', 'U', 'L', 'L'};

    return g[0] == 0xFF && g[9] == 0x7F && g[10] >= 3 &&
           memcmp(g + 12, null_mechanism, sizeof null_mechanism) == 0;
}

size_t zmtp_head(uint8_t head[ZMTP_HEAD_MAX], int flags, size_t len)
{
    if (len <= 255) {
        head[0] = (uint8_t)flags;
        head[1] = (uint8_t)len;
        return 2;
    }
    head[0] = (uint8_t)(flags | ZMTP_LONG);
    for (int i = 0; i < 8; i++)
        head[8 - i] = (uint8_t)((uint64_t)len >> (8 * i));
    return 9;
}

int zmtp_parse_head(const uint8_t *p, size_t have, int *flags, uint64_t *size)
{
    if (have < 2)
        return 0;
    if (p[0] & ~(ZMTP_MORE | ZMTP_LONG | ZMTP_COMMAND))
        return -1;
    *flags = p[0];
    if (!(p[0] & ZMTP_LONG)) {
        *size = p[1];
        return 2;
    }
    if (have < 9)
        return 0;
    *size = 0;
    for (int i = 1; i < 9; i++)
        *size = *size << 8 | p[i];
    return 9;
}

bool zmtp_is_command(const uint8_t *body, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len >= n + 1 && body[0] == n && memcmp(body + 1, name, n) == 0;
}

size_t zmtp_ready_command(uint8_t *out, const char *type)
{
    static const uint8_t head[] = {5, 'R', 'E', 'A', 'D', 'Y', 11, 'S', 'o', 'c', 'k', 'e', 't',
                                   '-', 'T', 'y', 'p', 'e', 0, 0, 0};
    size_t tl = strlen(type);

    assert(tl <= 10);
    memcpy(out, head, sizeof head);
    out[sizeof head] = (uint8_t)tl;
    memcpy(out + sizeof head + 1, type, tl);
    return sizeof head + 1 + tl;
}

bool zmtp_ready_type(const uint8_t *body, size_t len, char *type, size_t type_len)
{
    size_t at = 6;   /* properties: a name of a length byte, a value of a four-byte length */

    if (!zmtp_is_command(body, len, "READY"))
        return false;
    while (at < len) {
        size_t nl = body[at++];
        if (at + nl + 4 > len)
            return false;
        const uint8_t *name = body + at;
        at += nl;
        size_t vl = (size_t)body[at] << 24 | (size_t)body[at + 1] << 16 | (size_t)body[at + 2] << 8 | body[at + 3];
        at += 4;
        if (vl > len - at)
            return false;
        if (nl == 11 && strncasecmp((const char *)name, "Socket-Type", 11) == 0) {
            if (vl >= type_len)
                return false;
            memcpy(type, body + at, vl);
            type[vl] = '\0';
            return true;
        }
        at += vl;
    }
    return false;
}

size_t zmtp_pong(uint8_t *out, const uint8_t *ping, size_t len)
{
    size_t ctx = len > 7 ? len - 7 : 0;   /* after "\4PING" and a two-byte TTL */

    if (ctx > 16)
        ctx = 16;
    memcpy(out, "\4PONG", 5);
    memcpy(out + 5, ping + 7, ctx);
    return 5 + ctx;
}

static int s_send_frame(zmtp_t *z, int flags, const void *body, size_t len, int64_t deadline_us)
{
    uint8_t head[ZMTP_HEAD_MAX];
    struct iovec iov[2] = {{head, zmtp_head(head, flags, len)}, {(void *)body, len}};

    return s_write_all(z, iov, len ? 2 : 1, deadline_us);
}

/* The next frame, commands included: 1, 0 past the deadline, -1. */
static int s_frame(zmtp_t *z, int *flags, const uint8_t **body, size_t *len, int64_t deadline_us)
{
    uint64_t size;
    int head, rc = s_fill(z, 2, deadline_us);

    if (rc <= 0)
        return rc;
    while ((head = zmtp_parse_head(z->buf + z->start, z->end - z->start, flags, &size)) == 0)
        if ((rc = s_fill(z, ZMTP_HEAD_MAX, deadline_us)) <= 0)
            return rc;
    if (head < 0 || size > z->max_frame) {
        errno = head < 0 ? EPROTO : EMSGSIZE;
        return -1;
    }
    if ((rc = s_fill(z, (size_t)head + size, deadline_us)) <= 0)
        return rc;
    *body = z->buf + z->start + head;
    *len = size;
    z->start += (size_t)head + size;
    return 1;
}

/* A socket connected to `sa` by the deadline: its descriptor, or -1. */
static int s_connect(int family, const struct sockaddr *sa, socklen_t len, int64_t deadline_us)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    if (fd < 0)
        return -1;
    if (connect(fd, sa, len) == 0)
        return fd;
    if (errno == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        int rc, err = 0;
        socklen_t el = sizeof err;
        while ((rc = poll(&p, 1, s_left_ms(deadline_us))) < 0 && errno == EINTR)
            ;
        if (rc == 0)
            errno = ETIMEDOUT;
        else if (rc > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
            return fd;
        else if (rc > 0)
            errno = err ? err : errno;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* Connection and handshake by the deadline: 0, or -1 with why. */
static int s_open(zmtp_t *z, int64_t deadline_us, char *why, size_t why_len)
{
    zmtp_close(z);
    if (z->ep.ipc) {
        z->fd = s_connect(AF_UNIX, (struct sockaddr *)&z->ep.un, z->ep.un_len, deadline_us);
    } else {
        /* the name again only now and then: the lookup may block, and a
         * peer that is down is tried every few milliseconds */
        int64_t now = util_mono_us();
        if (z->resolved_us == 0 || now - z->resolved_us >= ZMTP_RESOLVE_US) {
            struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
            z->gai = getaddrinfo(z->ep.host, z->ep.port, &hints, &ai);
            z->resolved_us = now;
            if (z->gai == 0 && ai) {
                if (z->ai)
                    freeaddrinfo(z->ai);
                z->ai = ai;
            }
        }
        if (z->gai != 0 || !z->ai) {   /* a failed lookup too is kept for a while */
            snprintf(why, why_len, "cannot resolve %s: %s", z->ep.host,
                     z->gai ? gai_strerror(z->gai) : "no address");
            errno = EHOSTUNREACH;
            return -1;
        }
        for (struct addrinfo *a = z->ai; a && z->fd < 0; a = a->ai_next)   /* each address in turn */
            z->fd = s_connect(a->ai_family, a->ai_addr, a->ai_addrlen, deadline_us);
        if (z->fd >= 0) {
            int one = 1;
            setsockopt(z->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
    }
    if (z->fd < 0) {
        snprintf(why, why_len, "cannot connect: %s", strerror(errno));
        return -1;
    }

    uint8_t greeting[ZMTP_GREETING], ready[32];
    size_t ready_len = zmtp_ready_command(ready, "DEALER");
    char type[16];
    zmtp_greeting(greeting, false);
    struct iovec iov[1] = {{greeting, sizeof greeting}};
    int flags, rc;
    const uint8_t *body;
    size_t len;
    if (s_write_all(z, iov, 1, deadline_us) != 0 || (rc = s_fill(z, ZMTP_GREETING, deadline_us)) < 0)
        goto failed;
    if (rc == 0)
        goto late;
    const uint8_t *peer = z->buf + z->start;
    if (!zmtp_greeting_ok(peer)) {
        snprintf(why, why_len, "the peer does not speak ZMTP 3 with the NULL mechanism");
        goto refused;
    }
    z->start += ZMTP_GREETING;
    if (s_send_frame(z, ZMTP_COMMAND, ready, ready_len, deadline_us) != 0 ||
        (rc = s_frame(z, &flags, &body, &len, deadline_us)) < 0)
        goto failed;
    if (rc == 0)
        goto late;
    if (!(flags & ZMTP_COMMAND) || !zmtp_is_command(body, len, "READY")) {
        snprintf(why, why_len, "the peer did not answer READY");
        goto refused;
    }
    /* not a service: a socket connected to itself, say */
    if (!zmtp_ready_type(body, len, type, sizeof type) || strcmp(type, "ROUTER") != 0) {
        snprintf(why, why_len, "the peer is not a ROUTER");
        goto refused;
    }
    return 0;
late:
    errno = ETIMEDOUT;
failed:
    snprintf(why, why_len, "handshake: %s", strerror(errno));
refused:
    zmtp_close(z);
    if (errno != ETIMEDOUT)
        errno = ECONNREFUSED;
    return -1;
}

int zmtp_ready(zmtp_t *z, int64_t deadline_us, char *why, size_t why_len)
{
    if (z->cap > ZMTP_KEEP_BYTES && z->start == z->end) {   /* a large reply's room, given back */
        free(z->buf);
        z->buf = NULL;
        z->cap = z->start = z->end = 0;
    }
    while (z->fd >= 0) {   /* still open? a peer that restarted has closed it */
        if (s_room(z, 4096) != 0)
            return -1;
        ssize_t r = recv(z->fd, z->buf + z->end, z->cap - z->end, MSG_DONTWAIT);
        if (r > 0) {   /* late replies, kept for zmtp_recv to skip; the close may follow them */
            z->end += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        break;
    }
    return s_open(z, deadline_us, why, why_len);
}

int zmtp_send(zmtp_t *z, const void *frame, size_t len, int64_t deadline_us)
{
    if (z->fd < 0) {
        errno = ENOTCONN;
        return -1;
    }
    if (s_send_frame(z, 0, frame, len, deadline_us) == 0)
        return 0;
    zmtp_close(z);
    return -1;
}

int zmtp_recv(zmtp_t *z, const uint8_t **body, size_t *len, int64_t deadline_us, char *why,
              size_t why_len)
{
    for (;;) {
        int flags;
        int rc = z->fd < 0 ? (errno = ENOTCONN, -1) : s_frame(z, &flags, body, len, deadline_us);
        if (rc < 0) {
            snprintf(why, why_len, "connection lost: %s", strerror(errno));
            zmtp_close(z);
            return -1;
        }
        if (rc == 0)
            return 0;
        if (!(flags & ZMTP_COMMAND)) {
            bool first = !z->rest;
            z->rest = flags & ZMTP_MORE;
            if (first)
                return 1;
            continue;
        }
        if (zmtp_is_command(*body, *len, "PING") && *len >= 7) {   /* ZMTP 3.1: PONG with its context */
            uint8_t pong[21];
            if (s_send_frame(z, ZMTP_COMMAND, pong, zmtp_pong(pong, *body, *len), deadline_us) != 0) {
                snprintf(why, why_len, "connection lost: %s", strerror(errno));
                zmtp_close(z);
                return -1;
            }
            continue;
        }
        if (zmtp_is_command(*body, *len, "ERROR")) {   /* the peer ends the connection */
            snprintf(why, why_len, "the service closed the connection (ZMTP ERROR)");
            zmtp_close(z);
            return -1;
        }
    }
}
