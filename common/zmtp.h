/* zmtp: one DEALER connection speaking ZMTP 3.0 (ZeroMQ's RFC 23, the NULL
 * mechanism) on a plain stream socket, tcp:// or ipc://, to a service's
 * ROUTER. client.c calls services through it: a synchronous caller needs
 * no I/O thread, and libzmq's hand-over of every message to its own thread
 * and back was most of the CPU a call cost the caller (see bench/README).
 * It never reconnects by itself; the caller decides when to try again.
 * One thread at a time. */
#ifndef SHOP_ZMTP_H
#define SHOP_ZMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct zmtp zmtp_t;

/* Whether `endpoint` is one zmtp speaks: tcp://host:port or ipc://path
 * (ipc://@name: Linux's abstract namespace, as libzmq reads it). */
bool zmtp_speaks(const char *endpoint);

/* A connection to `endpoint` (see zmtp_speaks), not opened yet; frames
 * longer than `max_frame` end it. NULL (logged) if the endpoint is not one
 * zmtp speaks or memory ran out. */
zmtp_t *zmtp_new(const char *endpoint, size_t max_frame);
void zmtp_destroy(zmtp_t **p);

/* Makes the connection ready to send (and gives back the room a large
 * reply took, once it is read): keeps it when it is open and the peer
 * has not closed it, else opens it (every address the name resolves to in
 * turn) and completes the handshake by `deadline_us` (util_mono_us). 0, or
 * -1 with errno (ETIMEDOUT past the deadline) and the reason in why. */
int zmtp_ready(zmtp_t *z, int64_t deadline_us, char *why, size_t why_len);

/* Sends one frame, a message of its own; 0, or -1 (the connection is then
 * closed) if it could not be written by `deadline_us`. */
int zmtp_send(zmtp_t *z, const void *frame, size_t len, int64_t deadline_us);

/* The first frame of the next message: its body (valid until the next call
 * on z) and length; the message's other frames are dropped as they come
 * (a reply is one frame), commands skipped. 1, 0 if none came by
 * `deadline_us`, or -1 when the connection is lost, the peer sent ZMTP
 * ERROR or a frame too long (the connection is then closed; the reason in
 * why). */
int zmtp_recv(zmtp_t *z, const uint8_t **body, size_t *len, int64_t deadline_us, char *why,
              size_t why_len);

/* Closes the connection (the next zmtp_ready opens it again). */
void zmtp_close(zmtp_t *z);

#endif
