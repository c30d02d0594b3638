/* order_events: an order cancelled, or a placement abandoned, gives its
 * coupon uses and rule budget back (the same as Release), applied by the
 * runtime's subscriber exactly once and in order. A paid order keeps what
 * it redeemed for good: a hold for a time (RedeemRequest.hold_seconds) no
 * longer expires. The maintenance tick gives back holds that expired. */
#include <stdio.h>
#include <string.h>

#include "promotions.h"
#include "shop/orders/v1/orders.pb-c.h"
#include "slog.h"

typedef struct {
    db_t *db;
    const char *order_id, *reason;
    int rc;
} released_t;

static void s_forget_coupon(void *arg, const char *code)
{
    (void)arg;
    usage_forget(true, code);
}

static void s_on_released(void *arg, const char *code)
{
    released_t *r = arg;
    Shop__Promotions__V1__CouponReleased ev = SHOP__PROMOTIONS__V1__COUPON_RELEASED__INIT;

    /* In memory, the use counts until it is read again: once the release
     * has committed, or a quote in between would read the count before it
     * and keep that. */
    if (db_after_commit(r->db, s_forget_coupon, NULL, code) != 0)
        r->rc = -1;
    ev.code = (char *)code;
    ev.order_id = (char *)r->order_id;
    ev.reason = (char *)r->reason;
    if (r->rc == 0 && server_emit(r->db, &ev.base, r->order_id) != 0)
        r->rc = -1;
}

/* `abandoned`: the placement was given up, and may have redeemed nothing
 * yet (a cancelled order was placed: its Redeem answered long ago).
 * `expired_only`: given back only if its hold has ended (it may have been
 * paid for, or released, since it was found). 0 if something was given
 * back, 1 if nothing was, -1 on failure. */
static int s_release(db_t *db, const char *order_id, const char *reason, bool abandoned,
                     bool expired_only)
{
    released_t r = {db, order_id, reason, 0};
    int rc = store_redemption_release(db, order_id, expired_only, s_on_released, &r);

    if (rc == 1 && abandoned) {
        /* Nothing redeemed (or released before). A Redeem its caller gave
         * up on may still commit: a released row makes it fail on the key.
         * If one committed while the release ran, the row is there now:
         * release it, in a statement that sees it. */
        rc = store_redemption_tombstone(db, order_id);
        if (rc == 1)
            rc = store_redemption_release(db, order_id, false, s_on_released, &r);
    }
    return rc < 0 || r.rc != 0 ? -1 : rc;
}

int promo_apply_orders(db_t *db, const Shop__Common__V1__Envelope *event, void *settings)
{
    const ProtobufCBinaryData *b = &event->payload;
    int rc = 1;   /* placed, paid and the rest: nothing to give back */

    (void)settings;
    if (strcmp(event->type, "shop.orders.v1.OrderCancelled") == 0) {
        Shop__Orders__V1__OrderCancelled *e =
            shop__orders__v1__order_cancelled__unpack(NULL, b->len, b->data);
        if (!e || !e->order) {
            slog_error("promotions: event %s %llu is malformed; skipped", event->type,
                       (unsigned long long)event->sequence);
        } else {
            rc = s_release(db, e->order->id, "order cancelled", false, false);
        }
        if (e)
            shop__orders__v1__order_cancelled__free_unpacked(e, NULL);
    } else if (strcmp(event->type, "shop.orders.v1.OrderPaid") == 0) {
        Shop__Orders__V1__OrderPaid *e = shop__orders__v1__order_paid__unpack(NULL, b->len, b->data);
        if (!e || !e->order) {
            slog_error("promotions: event %s %llu is malformed; skipped", event->type,
                       (unsigned long long)event->sequence);
        } else {
            rc = store_hold_keep(db, e->order->id);
        }
        if (e)
            shop__orders__v1__order_paid__free_unpacked(e, NULL);
    } else if (strcmp(event->type, "shop.orders.v1.OrderAbandoned") == 0) {
        Shop__Orders__V1__OrderAbandoned *e =
            shop__orders__v1__order_abandoned__unpack(NULL, b->len, b->data);
        if (!e) {
            slog_error("promotions: event %s %llu is malformed; skipped", event->type,
                       (unsigned long long)event->sequence);
        } else {
            rc = s_release(db, e->order_id, "order not placed", true, false);
            shop__orders__v1__order_abandoned__free_unpacked(e, NULL);
        }
    }
    return rc;
}

typedef struct {
    char ids[100][129];
    int n;
} expired_t;

static void s_expired(void *arg, const char *order_id)
{
    expired_t *e = arg;
    snprintf(e->ids[e->n++], sizeof e->ids[0], "%s", order_id);
}

int promo_maintain(db_t *db, void *settings)
{
    static expired_t e;   /* one maintenance thread per process */

    e.n = 0;
    if (store_tombstone_purge(db) != 0 || store_hold_expired(db, 100, s_expired, &e) != 0)
        return -1;
    /* each release committed by itself, as the orders consumer does (see
     * pro_release_lock: no transaction holds two releases' locks) */
    for (int i = 0; i < e.n; i++) {
        if (db_commit(db) != 0 || db_begin(db) != 0)
            return -1;
        int rc = s_release(db, e.ids[i], "hold expired", false, true);
        if (rc < 0)
            return -1;
        if (rc == 0 && server_anomaly_on_commit(db, "hold_expired", "order %s: its redemption's "
                                                "hold ended before the order was paid or "
                                                "cancelled; its coupon and rule uses are given back",
                                                e.ids[i]) != 0)
            return -1;
    }
    return usage_refresh(db, settings);
}
