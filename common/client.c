/* client: blocking calls with a deadline and retries, over a ZMTP
 * connection of its own (zmtp.c) for tcp:// and ipc://, or a libzmq DEALER
 * for inproc:// (a service calling itself). */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "pbpack.h"
#include "shop/common/v1/common.pb-c.h"
#include "slog.h"
#include "util.h"
#include "zmtp.h"

#define CLIENT_HWM       1000
#define CLIENT_MAX_REPLY (64LL * 1024 * 1024)
#define CLIENT_RETRY_MS  20   /* between attempts to connect to a peer that is down */

struct client {
    zmtp_t *conn;        /* tcp://, ipc:// */
    void *zctx;          /* inproc://: through libzmq */
    bool own_ctx;
    void *sock;
    bool unreachable;    /* said so in the log; said again when it answers */
    bool replied;        /* the last call got a reply */
    char endpoint[256];
    char commit_with[64]; /* client_commit_with */
};

client_t *client_new(void *zctx, const char *endpoint)
{
    client_t *c = calloc(1, sizeof *c);
    int linger = 0, hwm = CLIENT_HWM;
    int64_t max = CLIENT_MAX_REPLY;

    if (!c)
        return NULL;
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    if (zmtp_speaks(endpoint)) {
        if (!(c->conn = zmtp_new(endpoint, CLIENT_MAX_REPLY)))
            goto fail;
        return c;
    }
    c->zctx = zctx;
    if (!c->zctx) {
        c->zctx = zmq_ctx_new();
        c->own_ctx = true;
    }
    if (!c->zctx || !(c->sock = zmq_socket(c->zctx, ZMQ_DEALER)))
        goto fail;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (zmq_connect(c->sock, endpoint) != 0) {
        slog_error("client: cannot connect to %s: %s", endpoint, zmq_strerror(errno));
        goto fail;
    }
    return c;
fail:
    client_destroy(&c);
    return NULL;
}

void client_destroy(client_t **p)
{
    client_t *c = p ? *p : NULL;

    if (!c)
        return;
    zmtp_destroy(&c->conn);
    if (c->sock)
        zmq_close(c->sock);
    if (c->own_ctx && c->zctx)
        zmq_ctx_term(c->zctx);
    free(c);
    *p = NULL;
}

bool client_replied(const client_t *c)
{
    return c->replied;
}

/* Sends `frame` by the deadline, connecting first if need be (again every
 * CLIENT_RETRY_MS while the peer is down); 0, or -1 with why. */
static int s_send(client_t *c, const void *frame, size_t len, int64_t deadline_us, char *why,
                  size_t why_len)
{
    if (!c->conn) {
        for (;;) {   /* libzmq queues it unless the queue is full: then wait for room */
            if (zmq_send(c->sock, frame, len, ZMQ_DONTWAIT) >= 0)
                return 0;
            int64_t left = (deadline_us - util_mono_us() + 999) / 1000;
            zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLOUT, 0};
            if ((errno != EAGAIN && errno != EINTR) || left <= 0 ||
                (zmq_poll(&item, 1, (long)left) < 0 && errno != EINTR)) {
                snprintf(why, why_len, "cannot send: %s", zmq_strerror(errno));
                return -1;
            }
        }
    }
    char before[200] = "";   /* why the try before failed */
    for (;;) {
        if (zmtp_ready(c->conn, deadline_us, why, why_len) == 0 &&
            zmtp_send(c->conn, frame, len, deadline_us) == 0)
            return 0;
        if (errno == ETIMEDOUT && before[0])   /* cut short by the deadline: the last reason is the news */
            snprintf(why, why_len, "%s", before);
        else if (!why[0])
            snprintf(why, why_len, "cannot send: %s", strerror(errno));
        int64_t left = deadline_us - util_mono_us();
        if (left <= 0)
            return -1;
        util_sleep_ms(left / 1000 < CLIENT_RETRY_MS ? left / 1000 + 1 : CLIENT_RETRY_MS);
        if (util_mono_us() >= deadline_us)
            return -1;
        snprintf(before, sizeof before, "%s", why);
        why[0] = '\0';
    }
}

/* After a call: says in the log when the service stops or starts again
 * answering; a call that got no reply closes the connection, so that a late
 * reply cannot answer the next call (a reply to a request it could not
 * read carries no request id). */
static void s_after(client_t *c, bool sent, bool replied, const char *why)
{
    c->replied = replied;
    if (replied && c->unreachable)
        slog_info("client: %s answers again", c->endpoint);
    else if (!sent && !c->unreachable)
        slog_warn("client: cannot reach %s: %s", c->endpoint, why);
    if (replied || !sent)
        c->unreachable = !replied;
    if (!replied && c->conn)
        zmtp_close(c->conn);
}

int client_open(client_t *c, int timeout_ms)
{
    char why[200] = "";

    if (!c->conn || zmtp_ready(c->conn, util_mono_us() + (int64_t)timeout_ms * 1000, why, sizeof why) == 0)
        return 0;
    slog_error("client: cannot reach %s: %s", c->endpoint, why);
    return -1;
}

/* libzmq: waits until the deadline for a frame; returns it in msg (1), 0
 * past the deadline, -1 on error. */
static int s_zmq_recv(client_t *c, zmq_msg_t *msg, int64_t deadline_us)
{
    zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
    int n;

    do {
        int64_t left = (deadline_us - util_mono_us() + 999) / 1000;
        n = zmq_poll(&item, 1, left > 0 ? (long)left : 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n;
    if (zmq_msg_recv(msg, c->sock, 0) < 0)
        return -1;
    while (zmq_msg_more(msg)) {   /* a reply is one frame; drop extras */
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        zmq_msg_recv(&extra, c->sock, 0);
        int more = zmq_msg_more(&extra);
        zmq_msg_close(&extra);
        if (!more)
            break;
    }
    return 1;
}

/* The first frame of the next message by the deadline, passed to `take`
 * (which returns nonzero to wait for another): 1 when taken, 0 past the
 * deadline, -1 if the connection was lost (why says how). */
typedef int (*s_take_fn)(void *arg, const void *data, size_t len);

static int s_recv(client_t *c, int64_t deadline_us, s_take_fn take, void *arg, char *why,
                  size_t why_len)
{
    for (;;) {
        if (!c->conn) {
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            int got = s_zmq_recv(c, &msg, deadline_us);
            int again = got == 1 ? take(arg, zmq_msg_data(&msg), zmq_msg_size(&msg)) : 0;
            zmq_msg_close(&msg);
            if (got < 0)
                snprintf(why, why_len, "cannot receive: %s", zmq_strerror(errno));
            if (got != 1 || !again)
                return got;
            continue;
        }
        const uint8_t *body;
        size_t len;
        int got = zmtp_recv(c->conn, &body, &len, deadline_us, why, why_len);
        if (got != 1 || !take(arg, body, len))
            return got;
    }
}

/* `request` in a Request envelope with a new request id (written to id),
 * the deadline now + timeout_ms and the idempotency key (may be NULL);
 * malloc'd, its length in *len; NULL when out of memory. */
static uint8_t *s_frame(const char *method, const ProtobufCMessage *request,
                      const char *idempotency_key, const char *commit_with, int timeout_ms,
                      char id[37], size_t *len)
{
    Shop__Common__V1__Request req = SHOP__COMMON__V1__REQUEST__INIT;
    size_t body_len;
    const uint8_t *packed = pbpack(request, &body_len);
    uint8_t *body = packed ? malloc(body_len ? body_len : 1) : NULL, *frame = NULL;

    if (!body)
        return NULL;
    memcpy(body, packed, body_len);   /* the envelope is packed next, in the same buffer */
    util_uuid(id);
    req.request_id = id;
    req.method = (char *)method;
    req.deadline_ms = util_now_ms() + timeout_ms;
    req.idempotency_key = (char *)(idempotency_key ? idempotency_key : "");
    req.commit_with = (char *)commit_with;
    req.body.data = body;
    req.body.len = body_len;
    if ((packed = pbpack(&req.base, len)) && (frame = malloc(*len ? *len : 1)))
        memcpy(frame, packed, *len);
    free(body);
    return frame;
}

/* Reads a reply frame to the call `id`: 1 if it answers another call
 * (stale: nothing set), else 0 with *code, *response and *message set as
 * client_call sets them. */
static int s_reply(const void *data, size_t len, const char *id,
                   const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                   char **message, status_t *code)
{
    Shop__Common__V1__Reply *reply = shop__common__v1__reply__unpack(NULL, len, data);

    if (!reply) {
        *code = STATUS_INTERNAL;
        if (message)
            *message = strdup("malformed reply frame");
        return 0;
    }
    if (strcmp(reply->request_id, id) != 0 && reply->request_id[0]) {
        shop__common__v1__reply__free_unpacked(reply, NULL);   /* stale */
        return 1;
    }
    *code = reply->status ? (status_t)reply->status->code : STATUS_OK;
    if (message && reply->status && reply->status->message[0])
        *message = strdup(reply->status->message);
    /* an OK reply with an empty body is a message of all defaults */
    if (response && response_type && (reply->body.len > 0 || *code == STATUS_OK)) {
        *response = protobuf_c_message_unpack(response_type, NULL, reply->body.len, reply->body.data);
        if (!*response && *code == STATUS_OK)
            *code = STATUS_INTERNAL;
    }
    shop__common__v1__reply__free_unpacked(reply, NULL);
    return 0;
}

typedef struct {
    const char *id;
    const ProtobufCMessageDescriptor *type;
    ProtobufCMessage **response;
    char **message;
    status_t *code;
} s_reply_t;

static int s_take_reply(void *arg, const void *data, size_t len)
{
    s_reply_t *r = arg;
    return s_reply(data, len, r->id, r->type, r->response, r->message, r->code);
}

void client_commit_with(client_t *c, const char *cluster)
{
    snprintf(c->commit_with, sizeof c->commit_with, "%s", cluster ? cluster : "");
}

status_t client_call(client_t *c, const char *method, const ProtobufCMessage *request,
                     const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                     const char *idempotency_key, int timeout_ms, int attempts, char **message)
{
    char id[37], why[200] = "";
    size_t frame_len;
    status_t code = STATUS_DEADLINE_EXCEEDED;
    int64_t start = util_mono_us();
    bool sent = false;
    s_reply_t r = {id, response_type, response, message, &code};

    if (response)
        *response = NULL;
    if (message)
        *message = NULL;
    if (attempts < 1)
        attempts = 1;
    uint8_t *frame = s_frame(method, request, idempotency_key, c->commit_with, timeout_ms, id,
                             &frame_len);
    if (!frame)
        return STATUS_INTERNAL;

    for (int a = 0; a < attempts; a++) {
        int64_t attempt_end = start + (int64_t)timeout_ms * 1000 * (a + 1) / attempts;
        why[0] = '\0';
        if (s_send(c, frame, frame_len, attempt_end, why, sizeof why) != 0)
            continue;
        sent = true;
        /* no reply in time: sent again; the connection lost: sent again at once */
        if (s_recv(c, attempt_end, s_take_reply, &r, why, sizeof why) == 1) {
            s_after(c, true, true, why);
            goto done;
        }
    }
    s_after(c, sent, false, why);
    if (!sent)
        code = STATUS_UNAVAILABLE;
    if (message) {
        char text[512];
        if (!sent)
            snprintf(text, sizeof text, "cannot reach %s: %s", c->endpoint, why);
        else if (why[0])
            snprintf(text, sizeof text, "no reply from %s: %s", c->endpoint, why);
        else
            snprintf(text, sizeof text, "%s", CLIENT_NO_REPLY);
        *message = strdup(text);
    }
done:
    free(frame);
    return code;
}

typedef struct {
    void *buf;
    size_t cap;
    int len;
} s_raw_t;

static int s_take_raw(void *arg, const void *data, size_t len)
{
    s_raw_t *r = arg;
    memcpy(r->buf, data, len < r->cap ? len : r->cap);
    r->len = (int)len;
    return 0;
}

int client_raw(client_t *c, const void *frame, size_t len, void *reply, size_t cap, int timeout_ms)
{
    int64_t deadline = util_mono_us() + (int64_t)timeout_ms * 1000;
    char why[200] = "";
    s_raw_t r = {reply, cap, -1};

    bool sent = s_send(c, frame, len, deadline, why, sizeof why) == 0;
    bool replied = sent && s_recv(c, deadline, s_take_raw, &r, why, sizeof why) == 1;

    s_after(c, sent, replied, why);
    return replied ? r.len : -1;
}
