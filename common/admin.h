/* admin: the service's HTTP admin port (libevent evhttp on the loop's
 * event_base): /healthz, /readyz and /metrics in Prometheus text format. */
#ifndef SHOP_ADMIN_H
#define SHOP_ADMIN_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include "metrics.h"

typedef struct admin admin_t;

/* Answers whether the service is ready; when not, writes why into reason. */
typedef bool (*admin_ready_fn)(void *arg, char *reason, size_t len);

/* Binds addr:port on `base`. Returns NULL (logged) if the port cannot be
 * bound. `m` and `ready_arg` must outlive the admin server. */
admin_t *admin_new(struct event_base *base, const char *addr, int port, metrics_t *m,
                   admin_ready_fn ready, void *ready_arg);

/* Closes the port. Accepts NULL; sets *p to NULL. */
void admin_destroy(admin_t **p);

#endif
