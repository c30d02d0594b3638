/* orders: the service's settings and handlers, shared by main.c (which
 * binds them to the OrdersService methods), place.c (placement and
 * import), lifecycle.c (the state machine and its timers) and queries.c. */
#ifndef ORDERS_ORDERS_H
#define ORDERS_ORDERS_H

#include <stdbool.h>
#include <stdint.h>
#include "server.h"
#include "shop/orders/v1/orders.pb-c.h"
#include "store.h"

typedef struct {
    int64_t max_lines;
    int64_t unpaid_timeout_s;
    int64_t pending_timeout_s;
    int64_t call_timeout_ms;
    char *timezone;
    char *import_connect;   /* read by the runtime's intake */
} orders_settings_t;

typedef Shop__Orders__V1__Order order_t;

/* How long a placement's stock and coupon uses are held before they go
 * back by themselves: a retry may finish the placement up to the pending
 * timeout from now, the unpaid timeout then cancels it (which gives them
 * back); ten minutes to spare. The settings' ranges keep this within the
 * 7 days the catalog and promotions allow. */
static inline int64_t orders_hold_s(const orders_settings_t *set)
{
    return set->pending_timeout_s + set->unpaid_timeout_s + 600;
}

#define ORDERS_HANDLER(name) \
    status_t name(call_t *call, const ProtobufCMessage *request, ProtobufCMessage *response)

/* place.c */
ORDERS_HANDLER(orders_place);
ORDERS_HANDLER(orders_import);
/* lifecycle.c */
ORDERS_HANDLER(orders_mark_paid);
ORDERS_HANDLER(orders_start_fulfilment);
ORDERS_HANDLER(orders_mark_shipped);
ORDERS_HANDLER(orders_mark_delivered);
ORDERS_HANDLER(orders_complete);
ORDERS_HANDLER(orders_cancel);
ORDERS_HANDLER(orders_refund);
/* Cancels orders left unpaid and gives back placements left pending (the
 * maintenance tick). */
int orders_maintain(db_t *db, void *settings);
/* place.c: gives back what placements that stopped half-way hold (see
 * there); on the maintenance thread, before the tick writes anything. */
int orders_sweep_orphans(db_t *db, const orders_settings_t *set);
/* queries.c */
ORDERS_HANDLER(orders_get);
ORDERS_HANDLER(orders_list);
ORDERS_HANDLER(orders_post_review);
ORDERS_HANDLER(orders_daily_summary);

/* --- order.c: the Order message and its rows ------------------------------ */

/* The order of a row: its body with the row's mutable columns laid over
 * it, allocated with `a` (NULL = malloc; free with
 * protobuf_c_message_free_unpacked(…, NULL)). NULL if the body does not
 * unpack. */
order_t *orders_from_row(const store_order_t *row, ProtobufCAllocator *a);

/* "placed" -> SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_PLACED, and back. */
Shop__Orders__V1__OrderState orders_state(const char *name);
const char *orders_state_name(Shop__Orders__V1__OrderState state);

/* Emits OrderAbandoned for a placement given up, correlated by the order
 * id, in the caller's transaction: the catalog and promotions give back
 * what it holds. 0, or -1. */
int orders_emit_abandoned(db_t *db, const char *id, const char *reason);

/* Gives a pending placement (left by an earlier version) up ('failed', its
 * keys freed) and emits OrderAbandoned: 0, or 2 if it had been given up
 * before (by a concurrent attempt or the pending timeout; emitted again
 * for what this attempt took since). 1 if a concurrent attempt has placed
 * the order meanwhile (nothing changed, nothing emitted: what was taken is
 * that order's); -1 on a database failure. */
int orders_abandon(db_t *db, const char *id, const char *reason);

/* Checks an address for a new order: 0, or -1 with what is wrong in `why`. */
int orders_check_address(const Shop__Orders__V1__Address *a, char *why, size_t len);

/* A SKU code: 1 to 64 of A-Z a-z 0-9 . _ - */
bool orders_valid_sku(const char *code);

#endif
