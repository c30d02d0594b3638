/* client: blocking DEALER calls with a deadline and retries. */
#include "client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "shop/common/v1/common.pb-c.h"
#include "slog.h"
#include "util.h"

#define CLIENT_HWM       1000
#define CLIENT_MAX_REPLY (64LL * 1024 * 1024)

struct client {
    void *zctx;
    bool own_ctx;
    void *sock;
};

client_t *client_new(void *zctx, const char *endpoint)
{
    client_t *c = calloc(1, sizeof *c);
    int linger = 0, hwm = CLIENT_HWM;
    int64_t max = CLIENT_MAX_REPLY;

    if (!c)
        return NULL;
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
    if (c->sock)
        zmq_close(c->sock);
    if (c->own_ctx && c->zctx)
        zmq_ctx_term(c->zctx);
    free(c);
    *p = NULL;
}

/* Waits up to `ms` for a frame; returns it in msg (1), 0 on timeout, -1 on error. */
static int s_recv(client_t *c, zmq_msg_t *msg, int ms)
{
    zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
    int n = zmq_poll(&item, 1, ms < 0 ? 0 : ms);

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

uint8_t *client_frame(const char *method, const ProtobufCMessage *request,
                      const char *idempotency_key, int timeout_ms, char id[37], size_t *len)
{
    Shop__Common__V1__Request req = SHOP__COMMON__V1__REQUEST__INIT;
    size_t body_len = protobuf_c_message_get_packed_size(request);
    uint8_t *body = malloc(body_len ? body_len : 1), *frame = NULL;

    if (!body)
        return NULL;
    protobuf_c_message_pack(request, body);
    util_uuid(id);
    req.request_id = id;
    req.method = (char *)method;
    req.deadline_ms = util_now_ms() + timeout_ms;
    req.idempotency_key = (char *)(idempotency_key ? idempotency_key : "");
    req.body.data = body;
    req.body.len = body_len;
    *len = shop__common__v1__request__get_packed_size(&req);
    if ((frame = malloc(*len)))
        shop__common__v1__request__pack(&req, frame);
    free(body);
    return frame;
}

int client_reply(const void *data, size_t len, const char *id,
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

status_t client_call(client_t *c, const char *method, const ProtobufCMessage *request,
                     const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                     const char *idempotency_key, int timeout_ms, int attempts, char **message)
{
    char id[37];
    size_t frame_len;
    status_t code = STATUS_DEADLINE_EXCEEDED;
    int64_t start = util_mono_us();

    if (response)
        *response = NULL;
    if (message)
        *message = NULL;
    if (attempts < 1)
        attempts = 1;
    uint8_t *frame = client_frame(method, request, idempotency_key, timeout_ms, id, &frame_len);
    if (!frame)
        return STATUS_INTERNAL;

    for (int a = 0; a < attempts; a++) {
        int64_t attempt_end = start + (int64_t)timeout_ms * 1000 * (a + 1) / attempts;
        if (zmq_send(c->sock, frame, frame_len, ZMQ_DONTWAIT) < 0 && errno != EAGAIN)
            break;
        for (;;) {
            int left = (int)((attempt_end - util_mono_us()) / 1000);
            if (left <= 0)
                break;
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            int got = s_recv(c, &msg, left);
            if (got <= 0) {
                zmq_msg_close(&msg);
                if (got < 0)
                    goto done;
                break;
            }
            int stale = client_reply(zmq_msg_data(&msg), zmq_msg_size(&msg), id, response_type,
                                     response, message, &code);
            zmq_msg_close(&msg);
            if (!stale)
                goto done;
        }
    }
    if (message && !*message && code == STATUS_DEADLINE_EXCEEDED)
        *message = strdup(CLIENT_NO_REPLY);
done:
    free(frame);
    return code;
}

int client_raw(client_t *c, const void *frame, size_t len, void *reply, size_t cap, int timeout_ms)
{
    zmq_msg_t msg;
    int rc = -1;

    if (zmq_send(c->sock, frame, len, 0) < 0)
        return -1;
    zmq_msg_init(&msg);
    if (s_recv(c, &msg, timeout_ms) == 1) {
        size_t n = zmq_msg_size(&msg);
        memcpy(reply, zmq_msg_data(&msg), n < cap ? n : cap);
        rc = (int)n;
    }
    zmq_msg_close(&msg);
    return rc;
}
