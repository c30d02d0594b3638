/* metrics: the runtime's counters and histograms, lock-free to update from
 * any thread, rendered in Prometheus text format for /metrics. */
#ifndef SHOP_METRICS_H
#define SHOP_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "status.h"

typedef struct metrics metrics_t;

/* Families: shop_requests_total{method,code}, shop_request_seconds{method}
 * (histogram), shop_events_published_total, shop_outbox_head_sequence,
 * shop_relay_lag_seconds, shop_events_applied_total{stream},
 * shop_consumer_cursor{stream}, shop_consumer_lag_events{stream},
 * shop_consumer_errors_total{stream}, shop_rpc_connections,
 * shop_commits_unflushed_total. `methods` are full method names, copied. */
metrics_t *metrics_new(const char *service, const char *const *methods, size_t n_methods,
                       const char *const *streams, size_t n_streams);
void metrics_destroy(metrics_t **p);

/* One finished call. method_index out of range counts as "unknown". */
void metrics_request(metrics_t *m, size_t method_index, status_t code, int64_t latency_us);

/* The relay published `count` events; `head` is the stream's head sequence
 * and `lag_ms` the age of the newest published event at publish time. */
void metrics_published(metrics_t *m, uint64_t count, uint64_t head, int64_t lag_ms);

/* A consumer applied `count` events of stream `stream_index`; its cursor is
 * now `cursor` and the producer's known head `head`. */
void metrics_applied(metrics_t *m, size_t stream_index, uint64_t count, uint64_t cursor, uint64_t head);
void metrics_consumer_error(metrics_t *m, size_t stream_index);

/* A call committed without waiting for the WAL flush (Request.commit_with). */
void metrics_unflushed(metrics_t *m);
/* Why the intake dropped a published message (shop_intake_dropped_total,
 * shown once metrics_intake_on has been called). */
typedef enum {
    METRICS_DROP_MALFORMED,   /* not two frames, or not the method's request */
    METRICS_DROP_TOO_LARGE,   /* over SHOP_MAX_MESSAGE_BYTES with its envelope */
    METRICS_DROP_REFUSED,     /* refused for good, or still refused after the retries */
    METRICS_DROP_STOPPING,    /* not taken in before the service stopped */
    METRICS_DROP_KINDS
} metrics_drop_t;
void metrics_intake_on(metrics_t *m);
void metrics_intake_dropped(metrics_t *m, metrics_drop_t why);

/* Callers' connections open now. */
void metrics_connections(metrics_t *m, uint64_t open);

/* Declares the service's anomaly kinds (copied; call before any thread
 * counts): shop_anomalies_total{kind} starts at 0 for each. */
int metrics_set_anomalies(metrics_t *m, const char *const *kinds, size_t n);
/* Counts one anomaly of kind `index` (out of range: ignored). */
void metrics_anomaly(metrics_t *m, size_t index);
/* Prometheus text exposition; caller frees. NULL on allocation failure. */
char *metrics_render(const metrics_t *m);

#endif
