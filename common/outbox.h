/* outbox: the durable event log of a service. Producers add rows in their
 * own transaction; one relay per stream stamps gap-free positions in commit
 * order and hands the events to the loop thread for PUB; Replay reads them
 * back. See DESIGN.md §4 for why positions are not a bigserial. */
#ifndef SHOP_OUTBOX_H
#define SHOP_OUTBOX_H

#include <stddef.h>
#include <stdint.h>
#include "shop/common/v1/common.pb-c.h"
#include "db.h"
#include "metrics.h"
#include "status.h"

/* Inserts one event in `db`'s open transaction (no position yet; the row
 * carries pg_current_xact_id()). `type` is the payload's full proto name.
 * correlation_id, causation_id and traceparent may be NULL. The insert is
 * queued (db_exec_later): it goes with the next statement or the COMMIT,
 * and fails there if it fails. Returns 0, or -1 if it cannot be queued. */
int outbox_add(db_t *db, const char *type, const uint8_t *payload, size_t len,
               const char *correlation_id, const char *causation_id, const char *traceparent)
    __attribute__((warn_unused_result));

typedef struct relay relay_t;

/* Starts the relay thread of `source`'s stream (schema `schema`). It takes a
 * session advisory lock so that one instance relays at a time (the others
 * wait and take over when the holder dies), stamps positions on committed
 * rows in (xid, id) order, and sends every stamped event as two frames,
 * [type][packed Envelope], on a ZMQ_PUSH it connects to `inproc_endpoint` in
 * context `zctx` (the loop thread PULLs and PUBlishes). Counts into `m`.
 * Returns NULL on failure (logged). */
relay_t *relay_new(void *zctx, const char *inproc_endpoint, const char *conninfo,
                   const char *schema, const char *source, metrics_t *m);

/* Highest position stamped so far (0 if none); for the heartbeat. */
uint64_t relay_head(relay_t *relay);

/* A time (this host's clock, ms since the epoch) before which every event
 * committed is stamped: at or below relay_head read after it; 1 while
 * nothing is known (a relay that does not number the stream: it has not
 * looked yet, another instance holds the stream's lock, or it lost the lock
 * with its connection and has not taken it again), 0 without a relay. For
 * the heartbeat. */
int64_t relay_complete(relay_t *relay);

/* Stops and joins the relay thread, closes its connection. Accepts NULL. */
void relay_destroy(relay_t **p);

/* Fills `out` (initialised by the caller) with up to `limit` events of the
 * stream after `after`, in order, and the head; no more once their payloads
 * reach `max_bytes` (capped at 8 MiB, 0 = the cap), the first event always
 * (so many large events cannot make a reply no client takes). Envelopes and their fields
 * are malloc'd: free with outbox_replay_clear. Returns 0 or -1 (db error). */
int outbox_replay(db_t *db, const char *source, uint64_t after, uint32_t limit, uint32_t max_bytes,
                  Shop__Common__V1__ReplayResponse *out) __attribute__((warn_unused_result));
void outbox_replay_clear(Shop__Common__V1__ReplayResponse *out);

#endif
