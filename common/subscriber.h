/* subscriber: applies another service's events exactly once, in order. The
 * cursor (last applied sequence) is stored in the same transaction as the
 * effect; duplicates are skipped; gaps, start-up and a heartbeat ahead of the
 * cursor are caught up through the producer's Replay call. */
#ifndef SHOP_SUBSCRIBER_H
#define SHOP_SUBSCRIBER_H

#include <stddef.h>
#include "shop/common/v1/common.pb-c.h"
#include "db.h"
#include "metrics.h"

/* Applies one event inside `db`'s open transaction. Returns 0 when applied;
 * 1 when the event needs nothing from this service and nothing was written
 * for it (its cursor is then stored lazily, within a second: after a crash
 * such events may be offered again, and must again need nothing); -1 to
 * roll back and retry later (logged and counted as a consumer error; the
 * stream stops there, never skips). */
typedef int (*sub_apply_fn)(db_t *db, const Shop__Common__V1__Envelope *event, void *settings);

/* One consumed stream, declared by the consuming service. Its endpoints come
 * from SHOP_<STREAM>_RPC and SHOP_<STREAM>_PUB (stream name upper-cased). */
typedef struct {
    const char *stream;        /* producer service name: "catalog" */
    /* e.g. "shop.catalog.v1." ("" = all events). Take the whole stream and
     * let `apply` skip what it does not need: events a narrower prefix
     * filters out leave gaps in the sequence, which the consumer fills
     * through Replay (measured: one Replay per order under the order
     * benchmark when promotions took only "shop.catalog.v1.Product"). */
    const char *topic_prefix;
    sub_apply_fn apply;
    /* Commit after each event that wrote (apply returned 0) rather than
     * once per batch, for effects that lock rows the service's calls lock
     * too: each event then locks in the order its own statements do, and
     * two events of one batch cannot form a lock cycle with a call (one
     * holding a row the other's call waits for). Events that need nothing
     * still share a transaction. */
    bool commit_each;
} sub_stream_t;

/* SQL: true once the consumed `stream` is applied past the time `at` (an
 * SQL expression), as consumer_cursor.caught_up_at records it from the
 * publisher's heartbeats ('-infinity' once heard from, before any says up
 * to when it is complete); also true while none has been heard (a stream
 * not deployed: the clock alone decides). For a hold that the stream's
 * events end: it may end by the clock only when this holds at its end, so
 * a consumer running behind never gives back what an event it has yet to
 * apply made permanent. Both arguments are string literals. */
#define SUB_APPLIED_PAST(stream, at)                                                    \
    "NOT EXISTS (SELECT 1 FROM consumer_cursor WHERE consumer_cursor.stream = '" stream \
    "' AND consumer_cursor.caught_up_at < " at ")"

typedef struct sub sub_t;

/* Starts the consumer thread of one stream. The thread owns its SUB (to
 * pub_endpoint) and DEALER (to rpc_endpoint, for Replay) sockets and its own
 * connection; it holds an advisory lock so one instance applies at a time.
 * `index` is the stream's index in metrics. Returns NULL on failure. */
sub_t *sub_new(void *zctx, const sub_stream_t *stream, const char *pub_endpoint,
               const char *rpc_endpoint, const char *conninfo, const char *schema,
               void *settings, metrics_t *m, size_t index);

/* Stops (finishing the batch in hand) and joins. Accepts NULL. */
void sub_destroy(sub_t **p);

#endif
