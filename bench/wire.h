/* wire: the load generators' client — a DEALER speaking ZMTP 3.0 (the NULL
 * mechanism) on a plain blocking TCP socket, one per thread, to a service's
 * ROUTER. It sends and receives the same frames as the runtime's libzmq
 * client (client.h) without libzmq's I/O thread: on two cores shared with
 * the services, the hand-over of every message to that thread and back
 * cost the driver more CPU than the services spent on a quote. */
#ifndef BENCH_WIRE_H
#define BENCH_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include "status.h"

typedef struct wire wire_t;

/* Connects to `endpoint` ("tcp://127.0.0.1:7311": each address it
 * resolves to in turn; a connection on loopback is taken or refused at
 * once) and completes the ZMTP handshake within `timeout_ms`; NULL (after
 * a line on stderr) on failure. */
wire_t *wire_connect(const char *endpoint, int timeout_ms);
void wire_close(wire_t **p);

/* As client_call with one attempt: `method` with `request` (and the
 * idempotency key, may be NULL), waiting at most `timeout_ms`; *response
 * (when `response` is not NULL: NULL skips unpacking the body) and
 * *message (malloc'd, may be NULL) as client_call gives them. Returns the
 * reply's status; DEADLINE_EXCEEDED if none came in time (the connection is
 * then closed and opened again on the next call); UNAVAILABLE, after 50 ms,
 * if the connection could not be opened again; INTERNAL for a malformed
 * reply or a broken connection. */
status_t wire_call(wire_t *w, const char *method, const ProtobufCMessage *request,
                   const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **response,
                   const char *idempotency_key, int timeout_ms, char **message);

#endif
