/* client: blocking calls to a service's ROUTER, with a deadline and
 * retries. tcp:// and ipc:// endpoints are spoken to over a ZMTP
 * connection of the client's own (zmtp.h), inproc:// through a libzmq
 * DEALER. One per thread. */
#ifndef SHOP_CLIENT_H
#define SHOP_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>
#include "status.h"

typedef struct client client_t;

/* The status message of a call that got no reply at all (its status is
 * DEADLINE_EXCEEDED, as a service's own deadline answer would be). */
#define CLIENT_NO_REPLY "no reply before the deadline"

/* A client of `endpoint` ("tcp://127.0.0.1:7101"); `zctx` is the libzmq
 * context for an inproc:// endpoint (NULL: a private one) and unused
 * otherwise. The connection is opened by the first call, so the service
 * need not be up yet. Returns NULL (logged) if the endpoint is not one. */
client_t *client_new(void *zctx, const char *endpoint);
void client_destroy(client_t **p);

/* Opens the connection now rather than on the first call (a benchmark
 * that must not time it): 0, or -1 (logged) if the service could not be
 * reached within timeout_ms. */
int client_open(client_t *c, int timeout_ms);

/* Calls `method` ("shop.catalog.v1.CatalogService/ReserveStock") with
 * `request`, waiting at most `timeout_ms` in all. If no reply comes within
 * an attempt's share of the time the same request (same request id and
 * idempotency key) is sent again, up to `attempts` times in all; at once
 * if the connection was lost (a service that restarted). A service that
 * is down is tried again every 20 ms within the time. On return
 * *response (if the reply had a body, or was OK: an empty body is a message
 * of defaults) is unpacked with `response_type`;
 * the caller frees it with protobuf_c_message_free_unpacked(…, NULL).
 * `message` (may be NULL) receives the status message, malloc'd. Returns
 * the reply's status, DEADLINE_EXCEEDED if none came, or INTERNAL for a
 * malformed reply; UNAVAILABLE if the request could not be sent at all
 * (the message says why). idempotency_key may be NULL. */
status_t client_call(client_t *c, const char *method, const ProtobufCMessage *request,
                     const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                     const char *idempotency_key, int timeout_ms, int attempts, char **message);

/* Names the caller's database cluster (db_cluster) in the calls that
 * follow, as Request.commit_with: the caller promises to commit
 * synchronously there after each, before anything outside its database
 * depends on it. NULL or "" stops it. */
void client_commit_with(client_t *c, const char *cluster);

/* Whether the last call got a reply from the service (else its status is
 * the client's own: the service was not reached or did not answer). */
bool client_replied(const client_t *c);

/* Sends raw bytes as the single request frame and waits for one reply frame
 * (for tests of malformed input). Returns the reply's length, or -1. */
int client_raw(client_t *c, const void *frame, size_t len, void *reply, size_t cap, int timeout_ms);

#endif
