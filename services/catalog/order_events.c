/* order_events: what the catalog does with the orders service's events,
 * applied by the runtime's subscriber exactly once and in order.
 * - OrderPaid: the held stock is sold (the reservation is confirmed);
 * - OrderCancelled, OrderAbandoned: held stock goes back to available;
 *   stock sold to an order cancelled after payment goes back on hand, while
 *   a sold reservation of an abandoned placement (never placed, so never
 *   paid) is reported as an anomaly and left as it is;
 * - ReviewPosted: the product's rating aggregate.
 * A paid order whose reservation is gone (it expired, or was never made)
 * cannot be repaired here: it is reported as an anomaly. */
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "shop/orders/v1/orders.pb-c.h"
#include "slog.h"
#include "store.h"

typedef Shop__Catalog__V1__ReservationLine line_t;

typedef struct {
    line_t **lines;
    size_t n, cap;
    bool oom;
} lines_t;

static void s_on_line(void *arg, const char *sku, int32_t quantity)
{
    lines_t *l = arg;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        line_t **grown = realloc(l->lines, cap * sizeof *grown);
        if (!grown) {
            l->oom = true;
            return;
        }
        l->lines = grown;
        l->cap = cap;
    }
    line_t *x = malloc(sizeof *x);
    char *s = strdup(sku);
    if (!x || !s) {
        free(x);
        free(s);
        l->oom = true;
        return;
    }
    shop__catalog__v1__reservation_line__init(x);
    x->sku = s;
    x->quantity = quantity;
    l->lines[l->n++] = x;
}

static void s_lines_free(lines_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->lines[i]->sku);
        free(l->lines[i]);
    }
    free(l->lines);
}

/* The reservation's state, "" if there is none. */
static int s_state(db_t *db, const char *order_id, char *state, size_t len)
{
    char lines[8];
    int64_t expires;
    int rc = store_reservation_get(db, order_id, state, len, lines, sizeof lines, &expires,
                                   NULL);

    if (rc == 1)
        state[0] = '\0';
    return rc < 0 ? -1 : 0;
}

static int s_paid(db_t *db, const char *order_id)
{
    lines_t l = {0};
    char state[16];
    int rc = store_reservation_finish(db, order_id, "confirmed", s_on_line, &l);

    if (rc == 0 && !l.oom) {
        Shop__Catalog__V1__ReservationConfirmed ev = SHOP__CATALOG__V1__RESERVATION_CONFIRMED__INIT;
        ev.order_id = (char *)order_id;
        ev.lines = l.lines;
        ev.n_lines = l.n;
        rc = server_emit(db, &ev.base, order_id);
    } else if (rc > 0) {
        rc = s_state(db, order_id, state, sizeof state);
        if (rc == 0 && strcmp(state, "confirmed") != 0)
            rc = server_anomaly_on_commit(db, "paid_reservation_lost", "order %s is paid but its "
                                          "reservation is %s: its stock was not taken", order_id,
                                          state[0] ? state : "missing");
    }
    if (l.oom)
        rc = -1;
    s_lines_free(&l);
    return rc;
}

/* Held stock back to available; sold stock back on hand (a cancelled
 * order's). `abandoned`: the placement was given up, and may have reserved
 * nothing yet. */
static int s_give_back(db_t *db, const char *order_id, const char *why, bool abandoned)
{
    lines_t l = {0};
    int rc = store_reservation_finish(db, order_id, "released", s_on_line, &l);
    const char *reason = why;

    if (rc == 2 && abandoned) {
        /* Never reserved. A reservation its caller gave up on may still
         * commit: a released row makes it fail on the key. If one committed
         * while the release ran, it is there now: release it, in a
         * statement that sees it. */
        rc = store_reservation_tombstone(db, order_id);
        if (rc == 1)
            rc = store_reservation_finish(db, order_id, "released", s_on_line, &l);
    }
    if (rc == 1 && abandoned) {
        /* Not held. A placement given up was never placed, so never paid:
         * a reservation it sold is an inconsistency to report, not stock
         * to take back. */
        char state[16];
        rc = s_state(db, order_id, state, sizeof state);
        if (rc == 0 && strcmp(state, "confirmed") == 0)
            rc = server_anomaly_on_commit(db, "abandoned_order_sold", "order %s was given up, but "
                                          "its reservation is confirmed (sold); its stock is left "
                                          "as it is", order_id);
        if (rc == 0)
            rc = 1;
    } else if (rc == 1) {   /* not held: sold already? */
        rc = store_reservation_finish(db, order_id, "restocked", s_on_line, &l);
        reason = "returned to stock: the order was cancelled after payment";
    }
    if (rc == 0 && !l.oom && l.n > 0) {
        Shop__Catalog__V1__ReservationReleased ev = SHOP__CATALOG__V1__RESERVATION_RELEASED__INIT;
        ev.order_id = (char *)order_id;
        ev.lines = l.lines;
        ev.n_lines = l.n;
        ev.reason = (char *)reason;
        rc = server_emit(db, &ev.base, order_id);
    } else if (rc > 0) {
        rc = 0;   /* released before, expired, or never reserved: nothing to give back */
    }
    if (l.oom)
        rc = -1;
    s_lines_free(&l);
    return rc;
}

/* Unpacks the event's payload as `d`; NULL (logged) if it does not. */
static ProtobufCMessage *s_unpack(const Shop__Common__V1__Envelope *event,
                                  const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, event->payload.len, event->payload.data);
    if (!m)
        slog_error("catalog: event %s %llu is malformed; skipped", event->type,
                   (unsigned long long)event->sequence);
    return m;
}

int catalog_apply_orders(db_t *db, const Shop__Common__V1__Envelope *event, void *settings)
{
    ProtobufCMessage *m = NULL;
    int rc = 1;   /* placed, shipped and the rest (or malformed): nothing to do */

    (void)settings;
    if (strcmp(event->type, "shop.orders.v1.OrderPaid") == 0) {
        Shop__Orders__V1__OrderPaid *e = (void *)(m = s_unpack(event, &shop__orders__v1__order_paid__descriptor));
        if (e && e->order)
            rc = s_paid(db, e->order->id);
    } else if (strcmp(event->type, "shop.orders.v1.OrderCancelled") == 0) {
        Shop__Orders__V1__OrderCancelled *e =
            (void *)(m = s_unpack(event, &shop__orders__v1__order_cancelled__descriptor));
        if (e && e->order)
            rc = s_give_back(db, e->order->id, "order cancelled", false);
    } else if (strcmp(event->type, "shop.orders.v1.OrderAbandoned") == 0) {
        Shop__Orders__V1__OrderAbandoned *e =
            (void *)(m = s_unpack(event, &shop__orders__v1__order_abandoned__descriptor));
        if (e)
            rc = s_give_back(db, e->order_id, "order not placed", true);
    } else if (strcmp(event->type, "shop.orders.v1.ReviewPosted") == 0) {
        Shop__Orders__V1__ReviewPosted *e =
            (void *)(m = s_unpack(event, &shop__orders__v1__review_posted__descriptor));
        if (e && e->review && e->review->rating >= 1 && e->review->rating <= 5) {
            rc = store_rating_add(db, e->review->sku, e->review->rating);
            if (rc == 1) {
                server_anomaly("review_of_unknown_sku", "a review of order %s names SKU %s, "
                               "which the catalog does not have", e->review->order_id,
                               e->review->sku);
                rc = 0;
            }
        }
    }
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}
