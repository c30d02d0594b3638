/* zmtp: a ZMTP 3.0 DEALER connection on a stream socket (see zmtp.h). The
 * protocol is ZeroMQ's RFC 23: a 64-byte greeting each way, a READY
 * command each way, then frames of a flags byte (MORE 1, LONG 2, COMMAND
 * 4), a size (one byte, or eight in network order when LONG) and the body.
 * The socket is non-blocking; every wait is a poll bounded by the caller's
 * deadline, the connect included. */
#include "zmtp.h"

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

#define F_MORE    1
#define F_LONG    2
#define F_COMMAND 4
#define ZMTP_RESOLVE_US 1000000   /* a name is resolved again at most this often */
#define ZMTP_KEEP_BYTES (256u * 1024)   /* a receive buffer larger than this is freed when empty */

struct zmtp {
    int fd;
    bool ipc;
    char endpoint[256];
    char host[200], port[16];   /* tcp */
    struct addrinfo *ai;        /* what host last resolved to */
    int gai;                    /* the last lookup's result, at resolved_us (0: never) */
    int64_t resolved_us;
    struct sockaddr_un un;      /* ipc */
    socklen_t un_len;
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

zmtp_t *zmtp_new(const char *endpoint, size_t max_frame)
{
    zmtp_t *z = calloc(1, sizeof *z);

    if (!z)
        return NULL;
    z->fd = -1;
    z->max_frame = max_frame;
    snprintf(z->endpoint, sizeof z->endpoint, "%s", endpoint);
    const char *rest = endpoint + 6;
    if (strncmp(endpoint, "tcp://", 6) == 0) {
        const char *colon = strrchr(rest, ':');
        size_t hl = colon ? (size_t)(colon - rest) : 0;
        if (hl >= 2 && rest[0] == '[' && rest[hl - 1] == ']') {   /* tcp://[::1]:7101 */
            rest++;
            hl -= 2;
        }
        if (!colon || hl == 0 || hl >= sizeof z->host || !colon[1] || strlen(colon + 1) >= sizeof z->port)
            goto bad;
        memcpy(z->host, rest, hl);
        snprintf(z->port, sizeof z->port, "%s", colon + 1);
    } else if (strncmp(endpoint, "ipc://", 6) == 0) {
        size_t pl = strlen(rest);
        if (pl == 0 || pl >= sizeof z->un.sun_path)
            goto bad;
        z->ipc = true;
        z->un.sun_family = AF_UNIX;
        memcpy(z->un.sun_path, rest, pl);
        if (rest[0] == '@')   /* the abstract namespace: a leading NUL, no terminator */
            z->un.sun_path[0] = '\0';
        z->un_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl + (rest[0] == '@' ? 0 : 1));
    } else {
        goto bad;
    }
    return z;
bad:
    slog_error("zmtp: %s is not tcp://host:port or ipc://path", endpoint);
    free(z);
    return NULL;
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

static int s_send_frame(zmtp_t *z, int flags, const void *body, size_t len, int64_t deadline_us)
{
    uint8_t head[9];
    size_t n;

    if (len > 255) {
        head[0] = (uint8_t)(flags | F_LONG);
        for (int i = 0; i < 8; i++)
            head[8 - i] = (uint8_t)(len >> (8 * i));
        n = 9;
    } else {
        head[0] = (uint8_t)flags;
        head[1] = (uint8_t)len;
        n = 2;
    }
    struct iovec iov[2] = {{head, n}, {(void *)body, len}};
    return s_write_all(z, iov, len ? 2 : 1, deadline_us);
}

/* The next frame, commands included: 1, 0 past the deadline, -1. */
static int s_frame(zmtp_t *z, int *flags, const uint8_t **body, size_t *len, int64_t deadline_us)
{
    int rc = s_fill(z, 2, deadline_us);

    if (rc <= 0)
        return rc;
    *flags = z->buf[z->start];
    size_t head = *flags & F_LONG ? 9 : 2, size = 0;
    if ((rc = s_fill(z, head, deadline_us)) <= 0)
        return rc;
    if (*flags & F_LONG)
        for (int i = 1; i < 9; i++)
            size = size << 8 | z->buf[z->start + i];
    else
        size = z->buf[z->start + 1];
    if (size > z->max_frame) {
        errno = EMSGSIZE;
        return -1;
    }
    if ((rc = s_fill(z, head + size, deadline_us)) <= 0)
        return rc;
    *body = z->buf + z->start + head;
    *len = size;
    z->start += head + size;
    return 1;
}

static bool s_is_command(const uint8_t *body, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len >= n + 1 && body[0] == n && memcmp(body + 1, name, n) == 0;
}

/* Whether a READY's properties (a name of a length byte, a value of a
 * four-byte length, in turn) say Socket-Type ROUTER. */
static bool s_ready_from_router(const uint8_t *body, size_t len)
{
    size_t at = 6;   /* after the command name */

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
        if (nl == 11 && strncasecmp((const char *)name, "Socket-Type", 11) == 0)
            return vl == 6 && memcmp(body + at, "ROUTER", 6) == 0;
        at += vl;
    }
    return false;
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
    if (z->ipc) {
        z->fd = s_connect(AF_UNIX, (struct sockaddr *)&z->un, z->un_len, deadline_us);
    } else {
        /* the name again only now and then: the lookup may block, and a
         * peer that is down is tried every few milliseconds */
        int64_t now = util_mono_us();
        if (z->resolved_us == 0 || now - z->resolved_us >= ZMTP_RESOLVE_US) {
            struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
            z->gai = getaddrinfo(z->host, z->port, &hints, &ai);
            z->resolved_us = now;
            if (z->gai == 0 && ai) {
                if (z->ai)
                    freeaddrinfo(z->ai);
                z->ai = ai;
            }
        }
        if (z->gai != 0 || !z->ai) {   /* a failed lookup too is kept for a while */
            snprintf(why, why_len, "cannot resolve %s: %s", z->host,
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

    /* greeting: signature, version 3.0, the NULL mechanism, as a client */
    uint8_t greeting[64] = {0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0, 'N', 'U', 'L', 'L'};
    /* READY with the one property a ROUTER checks: our socket type */
    static const uint8_t ready[] = {5, 'R', 'E', 'A', 'D', 'Y', 11, 'S', 'o', 'c', 'k', 'e', 't',
                                    '-', 'T', 'y', 'p', 'e', 0, 0, 0, 6, 'D', 'E', 'A', 'L', 'E', 'R'};
    struct iovec iov[1] = {{greeting, sizeof greeting}};
    int flags, rc;
    const uint8_t *body;
    size_t len;
    if (s_write_all(z, iov, 1, deadline_us) != 0 || (rc = s_fill(z, 64, deadline_us)) < 0)
        goto failed;
    if (rc == 0)
        goto late;
    const uint8_t *peer = z->buf + z->start;
    if (peer[0] != 0xFF || peer[9] != 0x7F || peer[10] < 3 || memcmp(peer + 12, "NULL", 5) != 0) {
        snprintf(why, why_len, "the peer does not speak ZMTP 3 with the NULL mechanism");
        goto refused;
    }
    z->start += 64;
    if (s_send_frame(z, F_COMMAND, ready, sizeof ready, deadline_us) != 0 ||
        (rc = s_frame(z, &flags, &body, &len, deadline_us)) < 0)
        goto failed;
    if (rc == 0)
        goto late;
    if (!(flags & F_COMMAND) || !s_is_command(body, len, "READY")) {
        snprintf(why, why_len, "the peer did not answer READY");
        goto refused;
    }
    if (!s_ready_from_router(body, len)) {   /* not a service (a socket connected to itself, say) */
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
        if (!(flags & F_COMMAND)) {
            bool first = !z->rest;
            z->rest = flags & F_MORE;
            if (first)
                return 1;
            continue;
        }
        if (s_is_command(*body, *len, "PING") && *len >= 7) {   /* ZMTP 3.1: PONG with its context */
            uint8_t pong[5 + 16] = {4, 'P', 'O', 'N', 'G'};
            size_t ctx = *len - 7 > 16 ? 16 : *len - 7;
            memcpy(pong + 5, *body + 7, ctx);
            if (s_send_frame(z, F_COMMAND, pong, 5 + ctx, deadline_us) != 0) {
                snprintf(why, why_len, "connection lost: %s", strerror(errno));
                zmtp_close(z);
                return -1;
            }
            continue;
        }
        if (s_is_command(*body, *len, "ERROR")) {   /* the peer ends the connection */
            snprintf(why, why_len, "the service closed the connection (ZMTP ERROR)");
            zmtp_close(z);
            return -1;
        }
    }
}
