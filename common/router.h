/* router: the serving side of a service's calls, a ZeroMQ ROUTER speaking
 * ZMTP 3.x (RFC 23, the NULL mechanism) itself on tcp:// and ipc://
 * listeners of the service's libevent loop. Requests are read and replies
 * written on the loop thread: no hand-over through libzmq's I/O thread,
 * which cost a third of a busy service's CPU (see bench/README). Any
 * ZeroMQ DEALER or REQ socket (libzmq, pyzmq, the runtime's client) calls
 * it. Loop thread only. */
#ifndef SHOP_ROUTER_H
#define SHOP_ROUTER_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

typedef struct router router_t;

/* A request came in on connection `route` (a small opaque message naming
 * the connection, to hand back to router_reply; the callee owns it) in
 * `frames` frames of `bytes` bytes in all. `frame` is its one frame (the
 * callee owns it), or NULL when the request is refused unread: more than
 * one frame, or more than the router's `max_bytes`. */
typedef void (*router_fn)(void *arg, zmq_msg_t *route, zmq_msg_t *frame, size_t frames,
                          size_t bytes);

/* Listens on `endpoint`: tcp://host:port (host `*` for every address, IPv4
 * and IPv6; a name or a literal, [v6] bracketed), or ipc://path (a socket
 * file left there by a process that has gone is replaced; ipc://@name is in
 * Linux's abstract namespace). Requests longer than `max_bytes` are skipped
 * unread. NULL with the reason in `err` if the endpoint is malformed or
 * cannot be bound. */
router_t *router_new(struct event_base *base, const char *endpoint, size_t max_bytes,
                     router_fn fn, void *arg, char *err, size_t err_len);

/* Closes the listener and every connection (replies not yet written are
 * lost: see router_unsent) and removes an ipc:// socket file. Accepts NULL;
 * sets *p to NULL. */
void router_destroy(router_t **p);

/* Sends `reply` (one frame) on the connection `route` names, and takes both
 * messages (true), or leaves them to the caller if `route` is not one of
 * this router's (false). A reply to a connection that has closed is
 * dropped. A connection whose replies back up (its peer does not read
 * them) is not read from until they are written. */
bool router_reply(router_t *r, zmq_msg_t *route, zmq_msg_t *reply);

/* How long a connection has from its accept to finish the handshake
 * (default 30 s; then it is closed). Applies to connections accepted
 * after the call. */
void router_set_handshake_ms(router_t *r, int ms);

/* Stops taking connections and reading requests (replies still go out):
 * for draining. */
void router_pause(router_t *r);

/* Bytes of replies not yet written to their connections. */
size_t router_unsent(const router_t *r);

/* Open connections (for tests and metrics). */
size_t router_connections(const router_t *r);

#endif
