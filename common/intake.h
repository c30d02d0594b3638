/* intake: messages other systems publish for a service to take in (orders
 * a marketplace publishes, say). A thread SUBscribes to the endpoints it is
 * given with one topic and passes each message's body to one of the
 * service's own methods, through the service's ROUTER, exactly as a call
 * would arrive. PUB/SUB delivers each publish at most once and keeps no
 * backlog while disconnected: what makes a publisher's repeat harmless is
 * the method's own deduplication (ImportOrder keys on the channel's order
 * id). A refusal for a passing reason (UNAVAILABLE, ABORTED,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) is tried again with growing
 * pauses, no new try starting after a minute; what the method refuses for
 * good is logged as a warning. */
#ifndef SHOP_INTAKE_H
#define SHOP_INTAKE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include "metrics.h"

typedef struct intake intake_t;

/* Starts the thread: SUB connected to each of the comma-separated
 * `endpoints`, subscribed to `topic`; each message [topic, body] is unpacked
 * as `method`'s input (at most `max_bytes`) and called on `self` (an
 * endpoint of the service's own ROUTER) as `full_method`. What it drops is
 * counted in `metrics` (may be NULL; its drop counters are shown from
 * then on). NULL on failure (logged). */
intake_t *intake_new(void *zctx, const char *endpoints, const char *topic, const char *self,
                     const ProtobufCMethodDescriptor *method, const char *full_method,
                     size_t max_bytes, metrics_t *metrics);

/* Tells the thread to start no further call (a service that drains, and
 * answers one that comes anyway with UNAVAILABLE): one under way gets its
 * answer unless the drain times out first, a pause between tries ends.
 * Accepts NULL. */
void intake_stop(intake_t *in);

/* Stops and joins. Accepts NULL. */
void intake_destroy(intake_t **p);

#endif
