/* catalog: the service's settings and handlers, shared by main.c and
 * handlers.c. */
#ifndef CATALOG_CATALOG_H
#define CATALOG_CATALOG_H

#include <stdint.h>
#include "server.h"

typedef struct {
    int64_t reservation_ttl_s;
    int64_t max_lines;
} catalog_settings_t;

extern const server_method_t catalog_methods[];
extern const size_t catalog_n_methods;

/* Releases expired reservations (the maintenance tick). */
int catalog_maintain(db_t *db, void *settings);

#endif
