/* client: a blocking DEALER client for calls to a service's ROUTER, with a
 * deadline and retries. One per thread. */
#ifndef SHOP_CLIENT_H
#define SHOP_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include "status.h"

typedef struct client client_t;

/* The status message of a call that got no reply at all (its status is
 * DEADLINE_EXCEEDED, as a service's own deadline answer would be). */
#define CLIENT_NO_REPLY "no reply before the deadline"

/* Connects a DEALER to `endpoint` ("tcp://127.0.0.1:7101") in `zctx` (NULL:
 * a private context). Returns NULL on failure. */
client_t *client_new(void *zctx, const char *endpoint);
void client_destroy(client_t **p);

/* Calls `method` ("shop.catalog.v1.CatalogService/ReserveStock") with
 * `request`, waiting at most `timeout_ms` in all. If no reply comes within
 * an attempt's share of the time the same request (same request id and
 * idempotency key) is sent again, up to `attempts` times in all. On return
 * *response (if the reply had a body, or was OK: an empty body is a message
 * of defaults) is unpacked with `response_type`;
 * the caller frees it with protobuf_c_message_free_unpacked(…, NULL).
 * `message` (may be NULL) receives the status message, malloc'd. Returns
 * the reply's status, DEADLINE_EXCEEDED if none came, or INTERNAL for a
 * malformed reply. idempotency_key may be NULL. */
status_t client_call(client_t *c, const char *method, const ProtobufCMessage *request,
                     const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                     const char *idempotency_key, int timeout_ms, int attempts, char **message);

/* The two halves of client_call, for a caller with its own transport
 * (bench/wire.c). client_frame: `request` in a Request envelope with a new
 * request id (written to id), the deadline now + timeout_ms and the
 * idempotency key (may be NULL); malloc'd, its length in *len; NULL when
 * out of memory. client_reply: reads a reply frame to the call `id`;
 * returns 1 if it answers another call (stale: nothing set), else 0 with
 * *code, *response and *message set as client_call sets them. */
uint8_t *client_frame(const char *method, const ProtobufCMessage *request,
                      const char *idempotency_key, int timeout_ms, char id[37], size_t *len);
int client_reply(const void *data, size_t len, const char *id,
                 const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                 char **message, status_t *code);

/* Sends raw bytes as the single request frame and waits for one reply frame
 * (for tests of malformed input). Returns the reply's length, or -1. */
int client_raw(client_t *c, const void *frame, size_t len, void *reply, size_t cap, int timeout_ms);

#endif
