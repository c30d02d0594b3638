/* wire: a synchronous ZMTP 3.0 DEALER on a TCP socket (see wire.h). The
 * protocol is ZeroMQ's RFC 23: a 64-byte greeting each way, a READY
 * command each way, then frames of a flags byte (MORE 1, LONG 2, COMMAND
 * 4), a size (one byte, or eight in network order when LONG) and the body. */
#include "wire.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "util.h"

#define F_MORE    1
#define F_LONG    2
#define F_COMMAND 4
#define WIRE_MAX_FRAME (64u * 1024 * 1024)   /* as client.c's largest reply */

struct wire {
    int fd;
    char endpoint[128];
    int timeout_ms;
    uint8_t *buf;           /* received bytes [start, end) */
    size_t start, end, cap;
};

static int64_t s_left_ms(int64_t deadline_us)
{
    int64_t left = (deadline_us - util_mono_us()) / 1000;
    return left > 0 ? left : 0;
}

static int s_write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);   /* a reset peer is an error, not SIGPIPE */
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
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

/* At least `need` bytes buffered from w->start: 0, or -1 (error or the
 * deadline; errno ETIMEDOUT for the latter). */
static int s_fill(wire_t *w, size_t need, int64_t deadline_us)
{
    while (w->end - w->start < need) {
        if (w->start > 0) {   /* keep what is buffered at the front */
            memmove(w->buf, w->buf + w->start, w->end - w->start);
            w->end -= w->start;
            w->start = 0;
        }
        if (w->cap - w->end < need || w->cap - w->end < 4096) {
            size_t cap = w->cap ? w->cap : 65536;
            while (cap - w->end < need || cap - w->end < 4096)
                cap *= 2;
            uint8_t *b = realloc(w->buf, cap);
            if (!b)
                return -1;
            w->buf = b;
            w->cap = cap;
        }
        struct pollfd p = {w->fd, POLLIN, 0};
        int rc = poll(&p, 1, (int)s_left_ms(deadline_us));
        if (rc == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        ssize_t r = read(w->fd, w->buf + w->end, w->cap - w->end);
        if (r == 0) {
            errno = ECONNRESET;
            return -1;
        }
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        w->end += (size_t)r;
    }
    return 0;
}

/* The next frame: its flags, and its body in the buffer (valid until the
 * next read). 0 or -1. */
static int s_frame(wire_t *w, int *flags, const uint8_t **body, size_t *len, int64_t deadline_us)
{
    if (s_fill(w, 2, deadline_us) != 0)
        return -1;
    *flags = w->buf[w->start];
    size_t head = *flags & F_LONG ? 9 : 2, size = 0;
    if (s_fill(w, head, deadline_us) != 0)
        return -1;
    if (*flags & F_LONG)
        for (int i = 1; i < 9; i++)
            size = size << 8 | w->buf[w->start + i];
    else
        size = w->buf[w->start + 1];
    if (size > WIRE_MAX_FRAME) {
        errno = EMSGSIZE;
        return -1;
    }
    if (s_fill(w, head + size, deadline_us) != 0)
        return -1;
    *body = w->buf + w->start + head;
    *len = size;
    w->start += head + size;
    return 0;
}

static int s_send_frame(int fd, int flags, const void *body, size_t len)
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
    return s_write_all(fd, iov, 2);
}

static void s_drop(wire_t *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    w->start = w->end = 0;
}

/* TCP connection and handshake; 0 or -1 (logged). */
static int s_open(wire_t *w)
{
    char host[96], port[16];
    const char *hp = w->endpoint + strlen("tcp://"), *colon = strrchr(hp, ':');
    int64_t deadline = util_mono_us() + (int64_t)w->timeout_ms * 1000;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;

    if (strncmp(w->endpoint, "tcp://", 6) != 0 || !colon || (size_t)(colon - hp) >= sizeof host) {
        fprintf(stderr, "wire: %s is not tcp://host:port\n", w->endpoint);
        return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp);
    snprintf(port, sizeof port, "%s", colon + 1);
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
        fprintf(stderr, "wire: cannot resolve %s\n", w->endpoint);
        return -1;
    }
    int rc = -1;
    for (struct addrinfo *a = ai; a && rc != 0; a = a->ai_next) {   /* each address in turn */
        s_drop(w);
        w->fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        rc = w->fd < 0 ? -1 : connect(w->fd, a->ai_addr, a->ai_addrlen);
    }
    freeaddrinfo(ai);
    if (rc != 0) {
        fprintf(stderr, "wire: cannot connect to %s: %s\n", w->endpoint, strerror(errno));
        s_drop(w);
        return -1;
    }
    int one = 1;
    setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    /* greeting: signature, version 3.0, the NULL mechanism, as a client */
    uint8_t greeting[64] = {0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0, 'N', 'U', 'L', 'L'};
    /* READY with the one property a peer checks: our socket type */
    static const uint8_t ready[] = {5, 'R', 'E', 'A', 'D', 'Y', 11, 'S', 'o', 'c', 'k', 'e', 't',
                                    '-', 'T', 'y', 'p', 'e', 0, 0, 0, 6, 'D', 'E', 'A', 'L', 'E', 'R'};
    struct iovec iov[1] = {{greeting, sizeof greeting}};
    if (s_write_all(w->fd, iov, 1) != 0 || s_fill(w, 64, deadline) != 0)
        goto fail;
    const uint8_t *peer = w->buf + w->start;
    if (peer[0] != 0xFF || peer[9] != 0x7F || peer[10] < 3 || memcmp(peer + 12, "NULL", 5) != 0) {
        fprintf(stderr, "wire: %s does not speak ZMTP 3 with the NULL mechanism\n", w->endpoint);
        goto refused;
    }
    w->start += 64;
    if (s_send_frame(w->fd, F_COMMAND, ready, sizeof ready) != 0)
        goto fail;
    int flags;
    const uint8_t *body;
    size_t len;
    if (s_frame(w, &flags, &body, &len, deadline) != 0)
        goto fail;
    if (!(flags & F_COMMAND) || len < 6 || body[0] != 5 || memcmp(body + 1, "READY", 5) != 0) {
        fprintf(stderr, "wire: %s did not answer READY\n", w->endpoint);
        goto refused;
    }
    return 0;
fail:
    fprintf(stderr, "wire: handshake with %s: %s\n", w->endpoint, strerror(errno));
refused:
    s_drop(w);
    return -1;
}

wire_t *wire_connect(const char *endpoint, int timeout_ms)
{
    wire_t *w = calloc(1, sizeof *w);

    if (!w)
        return NULL;
    w->fd = -1;
    w->timeout_ms = timeout_ms;
    snprintf(w->endpoint, sizeof w->endpoint, "%s", endpoint);
    if (s_open(w) != 0) {
        wire_close(&w);
        return NULL;
    }
    return w;
}

void wire_close(wire_t **p)
{
    if (!p || !*p)
        return;
    s_drop(*p);
    free((*p)->buf);
    free(*p);
    *p = NULL;
}

status_t wire_call(wire_t *w, const char *method, const ProtobufCMessage *request,
                   const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                   const char *idempotency_key, int timeout_ms, char **message)
{
    int64_t deadline = util_mono_us() + (int64_t)timeout_ms * 1000;
    status_t code = STATUS_INTERNAL;
    char id[37];
    size_t frame_len;

    if (response)
        *response = NULL;
    if (message)
        *message = NULL;
    if (w->fd < 0 && s_open(w) != 0) {
        util_sleep_ms(50);   /* a service that is down: not a busy loop */
        if (message)
            *message = strdup("cannot connect");
        return STATUS_UNAVAILABLE;
    }
    uint8_t *frame = client_frame(method, request, idempotency_key, timeout_ms, id, &frame_len);
    if (!frame)
        return STATUS_INTERNAL;
    if (s_send_frame(w->fd, 0, frame, frame_len) != 0) {
        s_drop(w);
        if (message)
            *message = strdup("connection lost");
        goto done;
    }
    for (;;) {   /* a message: its first frame, the rest (if any) dropped */
        int flags;
        const uint8_t *data;
        size_t len;
        if (s_frame(w, &flags, &data, &len, deadline) != 0) {
            code = errno == ETIMEDOUT ? STATUS_DEADLINE_EXCEEDED : STATUS_INTERNAL;
            if (message)
                *message = strdup(code == STATUS_DEADLINE_EXCEEDED ? CLIENT_NO_REPLY : "connection lost");
            s_drop(w);   /* a late reply must not answer the next call */
            goto done;
        }
        if (flags & F_COMMAND) {   /* none is expected but ERROR, which ends the connection */
            if (len >= 6 && data[0] == 5 && memcmp(data + 1, "ERROR", 5) == 0) {
                s_drop(w);
                if (message)
                    *message = strdup("the service closed the connection (ZMTP ERROR)");
                goto done;
            }
            continue;
        }
        int stale = client_reply(data, len, id, response_type, response, message, &code);
        while (flags & F_MORE)
            if (s_frame(w, &flags, &data, &len, deadline) != 0) {
                s_drop(w);
                if (stale) {
                    code = STATUS_INTERNAL;
                    if (message)
                        *message = strdup("connection lost");
                }
                goto done;
            }
        if (!stale)
            break;
    }
done:
    free(frame);
    return code;
}
