/* order: the Order message as rows store it, and the checks shared by
 * placement and import. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"
#include "util.h"

static void *s_alloc(ProtobufCAllocator *a, size_t size)
{
    void *p = a ? a->alloc(a->allocator_data, size) : malloc(size);
    if (!p)
        abort();   /* as protobuf-c's own allocator does */
    return p;
}

/* Replaces a string field (freeing what the field held) with a copy of v. */
static void s_set(ProtobufCAllocator *a, char **field, const char *v)
{
    size_t n = strlen(v) + 1;

    if (*field && *field != protobuf_c_empty_string) {
        if (a)
            a->free(a->allocator_data, *field);
        else
            free(*field);
    }
    *field = memcpy(s_alloc(a, n), v, n);
}

static const char *const s_states[] = {
    [SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_PLACED] = "placed",
    [SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_PAID] = "paid",
    [SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_FULFILLING] = "fulfilling",
    [SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_SHIPPED] = "shipped",
    [SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_DELIVERED] = "delivered",
    [SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_COMPLETED] = "completed",
    [SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_CANCELLED] = "cancelled",
    [SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_REFUNDED] = "refunded",
};
#define N_STATES (sizeof s_states / sizeof s_states[0])

Shop__Orders__V1__OrderState orders_state(const char *name)
{
    for (size_t i = 1; i < N_STATES; i++)
        if (strcmp(s_states[i], name) == 0)
            return (Shop__Orders__V1__OrderState)i;
    return SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_UNSPECIFIED;
}

const char *orders_state_name(Shop__Orders__V1__OrderState state)
{
    return (size_t)state > 0 && (size_t)state < N_STATES ? s_states[state] : "";
}

order_t *orders_from_row(const store_order_t *row, ProtobufCAllocator *a)
{
    order_t *o;

    if (row->body) {
        o = shop__orders__v1__order__unpack(a, row->body_len, row->body);
        if (!o)
            return NULL;
    } else {   /* pending or failed: nothing but the row */
        o = s_alloc(a, sizeof *o);
        shop__orders__v1__order__init(o);
        s_set(a, &o->customer_id, row->customer_id);
        s_set(a, &o->channel, row->channel);
    }
    s_set(a, &o->id, row->id);
    s_set(a, &o->external_id, row->external_id);
    s_set(a, &o->payment_reference, row->payment_ref);
    s_set(a, &o->carrier, row->carrier);
    s_set(a, &o->tracking_number, row->tracking);
    s_set(a, &o->reason, row->reason);
    o->state = orders_state(row->state);
    o->created_at_ms = row->created_ms;
    o->updated_at_ms = row->updated_ms;
    o->paid_at_ms = row->paid_ms;
    return o;
}

int orders_emit_abandoned(db_t *db, const char *id, const char *reason)
{
    Shop__Orders__V1__OrderAbandoned ev = SHOP__ORDERS__V1__ORDER_ABANDONED__INIT;

    ev.order_id = (char *)id;
    ev.reason = (char *)reason;
    return server_emit(db, &ev.base, id);   /* correlated by order */
}

int orders_abandon(db_t *db, const char *id, const char *reason)
{
    int rc = store_abandon(db, id, reason);

    if (rc < 0)
        return -1;
    /* Placed meanwhile by a concurrent attempt (a retry with the same key):
     * what the placement took is that order's now, nothing goes back. */
    if (rc == 2)
        return 1;
    /* Emitted even if the order was abandoned before (rc 1): whatever this
     * placement reserved or redeemed since must be given back too. */
    if (orders_emit_abandoned(db, id, reason) != 0)
        return -1;
    return rc == 1 ? 2 : 0;
}

int orders_check_address(const Shop__Orders__V1__Address *a, char *why, size_t len)
{
    if (!a) {
        snprintf(why, len, "shipping_address: required");
        return -1;
    }
    const struct {
        const char *name, *value;
        size_t min, max;
    } f[] = {
        {"name", a->name, 1, 200},   {"phone", a->phone, 0, 40},         {"line1", a->line1, 1, 200},
        {"line2", a->line2, 0, 200}, {"city", a->city, 1, 100},          {"region", a->region, 0, 100},
        {"postal_code", a->postal_code, 0, 20}, {"country", a->country, 2, 2},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        size_t n = strlen(f[i].value);
        if (n < f[i].min || n > f[i].max) {
            snprintf(why, len, "shipping_address.%s: %zu to %zu characters", f[i].name, f[i].min,
                     f[i].max);
            return -1;
        }
    }
    if (!(a->country[0] >= 'A' && a->country[0] <= 'Z' && a->country[1] >= 'A' &&
          a->country[1] <= 'Z')) {
        snprintf(why, len, "shipping_address.country: a two-letter code such as CN");
        return -1;
    }
    return 0;
}

bool orders_valid_sku(const char *code) { return util_valid_code(code, 64); }
