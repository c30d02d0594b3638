/* catalog: the service's settings and handlers, shared by main.c (which
 * binds them to the CatalogService methods), products.c, stock.c and
 * reports.c. */
#ifndef CATALOG_CATALOG_H
#define CATALOG_CATALOG_H

#include <stdbool.h>
#include <stdint.h>
#include "server.h"

typedef struct {
    int64_t reservation_ttl_s;
    int64_t max_lines;
} catalog_settings_t;

/* A SKU code: 1 to 64 of A-Z a-z 0-9 . _ - */
bool catalog_valid_sku(const char *code);

#define CATALOG_HANDLER(name) \
    status_t name(call_t *call, const ProtobufCMessage *request, ProtobufCMessage *response)

/* products.c */
CATALOG_HANDLER(catalog_create_product);
CATALOG_HANDLER(catalog_update_product);
CATALOG_HANDLER(catalog_get_product);
CATALOG_HANDLER(catalog_list_products);
CATALOG_HANDLER(catalog_search_products);
/* stock.c */
CATALOG_HANDLER(catalog_adjust_stock);
CATALOG_HANDLER(catalog_get_stock);
CATALOG_HANDLER(catalog_reserve_stock);
CATALOG_HANDLER(catalog_confirm_reservation);
CATALOG_HANDLER(catalog_release_reservation);
CATALOG_HANDLER(catalog_list_low_stock);
CATALOG_HANDLER(catalog_list_held_reservations);
/* reports.c */
CATALOG_HANDLER(catalog_best_sellers);
CATALOG_HANDLER(catalog_pareto_report);

/* order_events.c: applies the orders stream (payments, cancellations,
 * reviews). */
int catalog_apply_orders(db_t *db, const Shop__Common__V1__Envelope *event, void *settings);

/* Releases expired reservations (the maintenance tick). */
int catalog_maintain(db_t *db, void *settings);

#endif
