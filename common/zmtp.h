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
#include <sys/socket.h>
#include <sys/un.h>

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

/* --- the wire, for both sides (router.c serves calls with it) ---------- */

#define ZMTP_MORE     1
#define ZMTP_LONG     2
#define ZMTP_COMMAND  4
#define ZMTP_GREETING 64    /* bytes of a greeting */
#define ZMTP_HEAD_MAX 9     /* bytes of the longest frame head */

/* An endpoint taken apart: tcp://host:port (host may be [v6]) or
 * ipc://path (ipc://@name: Linux's abstract namespace, as libzmq reads it). */
typedef struct {
    bool ipc;
    char host[200], port[16];   /* tcp */
    struct sockaddr_un un;      /* ipc */
    socklen_t un_len;
} zmtp_endpoint_t;

/* 0, or -1 if `endpoint` is not one of the two forms above. */
int zmtp_endpoint(const char *endpoint, zmtp_endpoint_t *ep) __attribute__((warn_unused_result));

/* Our greeting: ZMTP 3.0, the NULL mechanism. */
void zmtp_greeting(uint8_t out[ZMTP_GREETING], bool as_server);
/* Whether a peer's greeting is ZMTP 3.x with the NULL mechanism. */
bool zmtp_greeting_ok(const uint8_t g[ZMTP_GREETING]);

/* Writes the head of a frame of `len` bytes into `head`; its length (2, or
 * 9 for a LONG frame). */
size_t zmtp_head(uint8_t head[ZMTP_HEAD_MAX], int flags, size_t len);
/* Reads the head at `p` (`have` bytes): its length, with *flags and *size;
 * 0 if more bytes are needed; -1 if the flags are not ZMTP's. */
int zmtp_parse_head(const uint8_t *p, size_t have, int *flags, uint64_t *size);

/* Whether a command's body is the command `name` ("READY", "PING"). */
bool zmtp_is_command(const uint8_t *body, size_t len, const char *name);
/* A READY command saying Socket-Type `type`, written into `out` (room for
 * 32 bytes); its length. */
size_t zmtp_ready_command(uint8_t *out, const char *type);
/* The Socket-Type a READY's properties name, into `type` (NUL-terminated);
 * false if it names none or the properties are malformed. */
bool zmtp_ready_type(const uint8_t *body, size_t len, char *type, size_t type_len);
/* The PONG answering a PING's body, written into `out` (room for 21
 * bytes); its length. */
size_t zmtp_pong(uint8_t *out, const uint8_t *ping, size_t len);

#endif
