/* place: PlaceOrder and ImportOrder, the saga that takes an order from a
 * cart to a stored order across three services.
 *
 * 1. The order id: for a placement a retry can repeat (an idempotency key,
 *    or the channel's order id), derived from the key, the request and the
 *    number of earlier failed attempts with the key, read together with the
 *    order that may hold the key already (then that order is the answer);
 *    otherwise random. Nothing is written yet.
 * 2. The catalog reserves the stock (all lines or none) under the order id.
 * 3. Promotions prices the cart and redeems its coupons and capped rules
 *    under the order id (PlaceOrder only; imports come priced).
 * 4. The order is written, placed, with OrderPlaced in the same
 *    transaction: the placement's one write.
 * Steps 2 and 3 are idempotent by order id and held for a time: a retry
 * (even concurrent with the first attempt, or after a crash) reaches the
 * same id and drives the same placement forward, and step 4's insert lets
 * exactly one attempt finish it. A placement that cannot finish is written
 * 'failed' with OrderAbandoned, which the catalog and promotions apply by
 * giving back what steps 2 and 3 took. One that nobody finishes (the
 * service stopped in between, and no retry came) is given back by the
 * maintenance tick's sweep once its reservation is twice
 * ORDERS_PENDING_TIMEOUT_S old (orders_sweep_orphans, at the end), or
 * failing that when its holds expire, after ORDERS_PENDING_TIMEOUT_S +
 * ORDERS_UNPAID_TIMEOUT_S + 600 s. No stock row lock or transaction is held
 * across a call to another service. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "money.h"
#include "orders.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "shop/promotions/v1/promotions.pb-c.h"
#include "slog.h"
#include "util.h"

#define RESERVE_METHOD "shop.catalog.v1.CatalogService/ReserveStock"
#define REDEEM_METHOD  "shop.promotions.v1.PromotionsService/Redeem"

typedef Shop__Common__V1__Money money_t;
typedef Shop__Catalog__V1__Shortage shortage_t;

/* The state of one placement attempt. */
typedef struct {
    call_t *call;
    const orders_settings_t *set;
    /* What the placement is written with; `pl.id` is `id`. */
    store_placement_t pl;
    char id[40];
    /* The answer, when it is an order already there: the one holding the
     * key, or the one a concurrent attempt at this placement finished. */
    order_t *existing;
    /* Shortages of a failed reservation, in the call's arena. */
    shortage_t **shortages;
    size_t n_shortages;
    /* When the catalog made its reservation (Unix ms; 0 before step 2). */
    int64_t reserved_ms;
} saga_t;

/* A deep copy of `msg` in the call's memory (through its wire form). */
static void *s_copy(call_t *call, const ProtobufCMessage *msg)
{
    ProtobufCAllocator a = call_allocator(call);
    size_t len;
    const uint8_t *buf = call_pack(call, msg, &len);

    return protobuf_c_message_unpack(msg->descriptor, &a, len, buf);
}

/* One line of a reservation, in the call's memory. */
static Shop__Catalog__V1__ReservationLine *s_reservation_line(call_t *call, char *sku,
                                                              int32_t quantity)
{
    Shop__Catalog__V1__ReservationLine *l = call_alloc(call, sizeof *l);

    shop__catalog__v1__reservation_line__init(l);
    l->sku = sku;
    l->quantity = quantity;
    return l;
}

static void s_on_existing(void *arg, const store_order_t *row)
{
    saga_t *s = arg;
    ProtobufCAllocator a = call_allocator(s->call);

    s->existing = orders_from_row(row, &a);
}

/* The caller can retry this placement: an idempotency key or an external
 * order id names it. */
static bool s_keyed(const saga_t *s) { return s->pl.idem_key || s->pl.external_id; }

/* An order past its placement: placed or later (not pending, not failed). */
static bool s_finished(const order_t *o)
{
    return o->state != SHOP__ORDERS__V1__ORDER_STATE__ORDER_STATE_UNSPECIFIED;
}

/* Crockford's base32, the digits of an order id. */
static const char s_digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* "O" and 20 characters of Crockford's base32 (100 bits) of `bytes`. */
static void s_id_from(char *id, size_t len, const uint8_t *bytes)
{

    if (len < 22)
        return;
    id[0] = 'O';
    for (int i = 0; i < 20; i++) {
        int bit = i * 5;
        unsigned v = ((unsigned)bytes[bit / 8] << 8 | bytes[bit / 8 + 1]) >> (11 - bit % 8);
        id[1 + i] = s_digits[v & 31];
    }
    id[21] = '\0';
}

/* An order read back, in the call's memory. */
typedef struct {
    call_t *call;
    order_t *order;
} placed_t;

static void s_on_placed(void *arg, const store_order_t *row)
{
    placed_t *p = arg;
    ProtobufCAllocator a = call_allocator(p->call);
    p->order = orders_from_row(row, &a);
}

/* Step 1: the order id. STATUS_OK with s->existing set means the answer is
 * that order. `key` (a PlaceOrder's idempotency key) or `external_id` (an
 * ImportOrder's) may be NULL: then the placement cannot be repeated and its
 * id is random. */
static status_t s_begin(saga_t *s, const ProtobufCMessage *request, const char *customer_id,
                        const char *key, const char *channel, const char *external_id)
{
    size_t len;
    const uint8_t *bytes = call_pack(s->call, request, &len);
    uint8_t digest[32];

    s->pl = (store_placement_t){s->id, customer_id, channel, key, external_id, bytes, len};
    if (!s_keyed(s)) {
        if (getrandom(digest, sizeof digest, 0) != (ssize_t)sizeof digest)
            return call_fail(s->call, STATUS_INTERNAL, "no random bytes for an order id");
        s_id_from(s->id, sizeof s->id, digest);
        return STATUS_OK;
    }
    /* reads only, each by itself: the placement's one write is its last step */
    call_without_transaction(s->call);
    bool same = false;
    int rc = store_lookup(call_db(s->call), customer_id, key, channel, external_id, bytes, len,
                          digest, &same, s_on_existing, s);
    if (rc < 0)
        return call_db_fail(s->call, "look the key up");
    if (rc == 1 && !s->existing)
        return call_fail(s->call, STATUS_INTERNAL, "the order holding the key does not read back");
    if (rc == 1) {
        /* A key stands for one request; an external order id for one order,
         * however its channel sends it again. */
        if (key && !same)
            return call_fail(s->call, STATUS_ALREADY_EXISTS,
                             "this idempotency key is already being used for another order (%s)",
                             s->existing->id);
        if (!s_finished(s->existing))
            /* 'pending', written by an earlier version: given up by the
             * maintenance tick after ORDERS_PENDING_TIMEOUT_S */
            return call_fail(s->call, STATUS_UNAVAILABLE, "order %s is still being placed; "
                             "retry later with the same key", s->existing->id);
        return STATUS_OK;
    }
    /* The same key, request and attempt give the same id: what a crashed or
     * concurrent attempt reserved and redeemed is this one's. */
    s_id_from(s->id, sizeof s->id, digest);
    if (call_commit(s->call) != 0)   /* what follows is one transaction again */
        return call_db_fail(s->call, "end the reads");
    return STATUS_OK;
}

/* A placement whose id was taken by another: whether `o` is this
 * placement's order (the same key), which a concurrent attempt placed. */
static bool s_ours(const saga_t *s, const order_t *o)
{
    if (s->pl.idem_key)
        return strcmp(o->customer_id, s->pl.customer_id) == 0 && strcmp(o->channel, "shop") == 0;
    if (s->pl.external_id)   /* a failed row keeps no external id */
        return strcmp(o->channel, s->pl.channel) == 0 &&
               (strcmp(o->external_id, s->pl.external_id) == 0 || !s_finished(o));
    return false;
}

/* The order with this placement's id, read back into s->existing (NULL if
 * there is none). */
static status_t s_read_back(saga_t *s)
{
    placed_t p = {s->call, NULL};
    int rc = store_order_get(call_db(s->call), s->id, "", "", false, s_on_placed, &p);

    if (rc < 0)
        return call_db_fail(s->call, "read the order");
    s->existing = rc == 0 ? p.order : NULL;
    if (rc == 0 && !p.order)
        return call_fail(s->call, STATUS_INTERNAL, "order %s does not read back", s->id);
    return STATUS_OK;
}

/* Writes the placement 'failed' with OrderAbandoned (which gives back what
 * it holds), kept even though the call fails: 0; 1 if its id is taken;
 * -1 (database). */
static int s_give_back(saga_t *s, const char *why)
{
    db_t *db = call_db(s->call);
    int rc = store_insert_failed(db, &s->pl, why);

    if (rc != 0)
        return rc;
    if (orders_emit_abandoned(db, s->id, why) != 0)
        return -1;
    call_keep_writes(s->call);
    return 0;
}

/* Gives the placement up (s_give_back), with the error the call returns. */
static status_t s_fail(saga_t *s, status_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static status_t s_fail(saga_t *s, status_t code, const char *fmt, ...)
{
    char why[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    int rc = s_give_back(s, why);
    if (rc < 0)
        return call_db_fail(s->call, "abandon the order");
    if (rc == 0)
        return call_fail(s->call, code, "%s", why);
    /* The id is taken: a concurrent attempt at this placement (a retry with
     * the same key) finished it first. */
    status_t st = s_read_back(s);
    if (st != STATUS_OK)
        return st;
    if (s->existing && s_finished(s->existing) && s_ours(s, s->existing))
        return STATUS_OK;   /* placed: its stock and coupons are that order's, the answer */
    s->existing = NULL;
    /* given up: what it held goes back with its OrderAbandoned, and this
     * failure may only follow from that */
    return call_fail(s->call, STATUS_ABORTED, "order %s was given up meanwhile (%s); try again",
                     s->id, why);
}

/* Another service's verdict on the order, as this call's status. */
static status_t s_verdict(status_t st)
{
    return st == STATUS_INVALID_ARGUMENT || st == STATUS_FAILED_PRECONDITION ||
                   st == STATUS_NOT_FOUND
               ? st
               : STATUS_INTERNAL;
}

static bool s_transient(status_t st)
{
    return st == STATUS_DEADLINE_EXCEEDED || st == STATUS_UNAVAILABLE || st == STATUS_ABORTED;
}

/* A step that got no verdict (no answer, or a conflict with a concurrent
 * attempt that outlasted the retries): nothing is written. The call may
 * still be running there and commit after this gives up, so what it takes
 * can only be given back once it no longer can: by a retry with the same
 * key, which finds it under the same order id, or when its hold expires. */
static status_t s_no_verdict(saga_t *s, const char *who, status_t st, const char *msg)
{
    const orders_settings_t *set = s->set;

    if (s_keyed(s))
        return call_fail(s->call, STATUS_UNAVAILABLE, "%s: %s; order %s is not placed yet: "
                         "retry with the same key", who, msg ? msg : status_name(st), s->id);
    return call_fail(s->call, STATUS_UNAVAILABLE, "%s: %s; order %s is not placed, and what it "
                     "holds goes back in about %lld s (within %lld s if the catalog cannot be "
                     "reached): try again", who, msg ? msg : status_name(st), s->id,
                     (long long)(2 * set->pending_timeout_s), (long long)orders_hold_s(set));
}

/* Calls another service for a step, trying again (a few times, briefly)
 * when a concurrent attempt at the same order holds it. */
static status_t s_step(saga_t *s, const char *service, const char *method,
                       const ProtobufCMessage *req, const ProtobufCMessageDescriptor *type,
                       ProtobufCMessage **out, char **msg)
{
    status_t st = STATUS_UNKNOWN;

    /* What a step commits over there needs no WAL flush of its own when
     * that service shares this one's PostgreSQL cluster: the placement
     * ends in a synchronous commit here (the order placed, or written
     * failed), which flushes it, and nothing outside depends on a step
     * before that (an answer without that commit, UNAVAILABLE, promises
     * nothing about what the step holds). */
    call_commits_after(s->call);
    for (int attempt = 0; attempt < 4; attempt++) {
        if (attempt) {
            util_sleep_ms(5 << attempt);
            free(*msg);
            if (*out)
                protobuf_c_message_free_unpacked(*out, NULL);
        }
        st = call_remote(s->call, service, method, req, type, out, (int)s->set->call_timeout_ms, msg);
        if (st != STATUS_ABORTED)
            break;
    }
    return st;
}

/* When the catalog made reservation `r` (Unix ms, its clock): as it says,
 * or (a catalog older than the field) its end less the hold this service
 * asks for. */
static int64_t s_made_ms(const saga_t *s, const Shop__Catalog__V1__Reservation *r)
{
    return r->created_at_ms ? r->created_at_ms : r->expires_at_ms - orders_hold_s(s->set) * 1000;
}

/* Whether a reservation made at `made_ms` is more than
 * ORDERS_PENDING_TIMEOUT_S old by this service's clock: too old to place
 * an order with. orders_sweep_orphans reads the same clock against the
 * same making time. */
static bool s_too_old(const saga_t *s, int64_t made_ms)
{
    return util_now_ms() - made_ms > s->set->pending_timeout_s * 1000;
}

/* The same for the reservation in a reply; false when it has none. */
static bool s_started_long_ago(const saga_t *s, const Shop__Catalog__V1__ReserveStockResponse *r)
{
    return r && r->reservation && s_too_old(s, s_made_ms(s, r->reservation));
}

/* Step 2: the stock, all lines or none. */
static status_t s_reserve(saga_t *s, Shop__Catalog__V1__ReservationLine **lines, size_t n)
{
    Shop__Catalog__V1__ReserveStockRequest req = SHOP__CATALOG__V1__RESERVE_STOCK_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    char *msg = NULL;
    status_t code = STATUS_OK;

    req.order_id = s->id;
    req.lines = lines;
    req.n_lines = n;
    req.ttl_seconds = (uint32_t)orders_hold_s(s->set);
    status_t st = s_step(s, "catalog", RESERVE_METHOD, &req.base,
                         &shop__catalog__v1__reserve_stock_response__descriptor, &out, &msg);
    const Shop__Catalog__V1__ReserveStockResponse *r = (const void *)out;
    if (s_transient(st)) {
        code = s_no_verdict(s, "the catalog", st, msg);
    } else if (st == STATUS_ALREADY_EXISTS) {
        /* Another attempt under this id holds a reservation of other lines
         * (an import sent again, changed, while the first is under way):
         * that placement is for it to finish or give up, unless it began
         * too long ago to be placed any more. */
        if (s_started_long_ago(s, r))
            code = s_fail(s, STATUS_ABORTED, "order %s was started with other lines more than "
                          "%lld s ago and is given up; try again", s->id,
                          (long long)s->set->pending_timeout_s);
        else
            code = call_fail(s->call, STATUS_ABORTED, "order %s is being placed with other lines "
                             "by another attempt; try again later", s->id);
    } else if (st == STATUS_FAILED_PRECONDITION && r && r->reservation &&
               (r->reservation->state == SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_RELEASED ||
                r->reservation->state == SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_EXPIRED)) {
        /* The reservation under this id has ended (given back with the
         * placement that made it, which stopped half-way). Given up here
         * too, so the next attempt with the key gets an id, and holds, of
         * its own. */
        code = s_fail(s, STATUS_ABORTED, "order %s was started before and given up (%s); "
                      "try again", s->id, msg ? msg : "its reservation ended");
    } else if (st != STATUS_OK) {
        if (r && r->n_shortages) {
            s->shortages = call_alloc(s->call, r->n_shortages * sizeof *s->shortages);
            for (size_t i = 0; i < r->n_shortages; i++)
                s->shortages[i] = s_copy(s->call, &r->shortages[i]->base);
            s->n_shortages = r->n_shortages;
        }
        code = s_fail(s, s_verdict(st), "stock: %s", msg ? msg : status_name(st));
    } else {
        /* A retry reaches the reservation an earlier attempt made: placed
         * with it only within ORDERS_PENDING_TIMEOUT_S of its making, so
         * the order is paid or cancelled before its hold ends. An older
         * placement is given up (its holds go back) and the next attempt
         * gets an id, and holds, of its own. */
        if (!r || !r->reservation || s_started_long_ago(s, r))
            code = s_fail(s, STATUS_ABORTED, "order %s was started more than %lld s ago and is "
                          "given up; try again", s->id, (long long)s->set->pending_timeout_s);
        else
            s->reserved_ms = s_made_ms(s, r->reservation);
    }
    free(msg);
    if (out)
        protobuf_c_message_free_unpacked(out, NULL);
    return code;
}

/* --- PlaceOrder -------------------------------------------------------------- */

/* Step 3: prices and redemptions. On success *quote is promotions' reply
 * (freed by the caller). */
static status_t s_redeem(saga_t *s, const Shop__Orders__V1__PlaceOrderRequest *req,
                         Shop__Promotions__V1__RedeemResponse **quote)
{
    Shop__Promotions__V1__RedeemRequest rr = SHOP__PROMOTIONS__V1__REDEEM_REQUEST__INIT;
    Shop__Promotions__V1__QuoteRequest q = SHOP__PROMOTIONS__V1__QUOTE_REQUEST__INIT;
    Shop__Promotions__V1__CartLine *cart = call_alloc(s->call, req->n_lines * sizeof *cart);
    Shop__Promotions__V1__CartLine **lines = call_alloc(s->call, req->n_lines * sizeof *lines);
    ProtobufCMessage *out = NULL;
    char *msg = NULL;
    status_t code = STATUS_OK;

    for (size_t i = 0; i < req->n_lines; i++) {
        shop__promotions__v1__cart_line__init(&cart[i]);
        cart[i].sku = req->lines[i]->sku;
        cart[i].quantity = req->lines[i]->quantity;
        lines[i] = &cart[i];
    }
    q.lines = lines;
    q.n_lines = req->n_lines;
    q.customer_id = req->customer_id;
    q.tier = req->tier;
    q.coupon_codes = req->coupon_codes;
    q.n_coupon_codes = req->n_coupon_codes;
    rr.order_id = s->id;
    rr.hold_seconds = (uint32_t)orders_hold_s(s->set);
    rr.quote = &q;
    rr.expected_total_saved = req->expected_total_saved;
    status_t st = s_step(s, "promotions", REDEEM_METHOD, &rr.base,
                         &shop__promotions__v1__redeem_response__descriptor, &out, &msg);
    Shop__Promotions__V1__RedeemResponse *r = (void *)out;
    if (st == STATUS_OK && (!r || !r->quote || !r->quote->total)) {
        code = s_fail(s, STATUS_INTERNAL, "promotions answered without a quote");
    } else if (s_transient(st)) {
        code = s_no_verdict(s, "promotions", st, msg);
    } else if (st != STATUS_OK) {
        code = s_fail(s, s_verdict(st), "prices: %s", msg ? msg : status_name(st));
    } else {
        /* Every coupon the buyer gave must have been applied. */
        const Shop__Promotions__V1__Quote *qt = r->quote;
        for (size_t i = 0; i < req->n_coupon_codes && code == STATUS_OK && !s->existing; i++) {
            const char *c = req->coupon_codes[i];
            bool applied = false;
            for (size_t k = 0; k < qt->n_applied && !applied; k++)
                applied = qt->applied[k]->source == SHOP__PROMOTIONS__V1__SOURCE__SOURCE_COUPON &&
                          strcmp(qt->applied[k]->code, c) == 0;
            if (applied)
                continue;
            const char *why = "it does not apply to this cart";
            for (size_t k = 0; k < qt->n_rejected; k++)
                if (qt->rejected[k]->source == SHOP__PROMOTIONS__V1__SOURCE__SOURCE_COUPON &&
                    strcmp(qt->rejected[k]->code, c) == 0)
                    why = qt->rejected[k]->reason;
            code = s_fail(s, STATUS_FAILED_PRECONDITION, "coupon %s: %s", c, why);
        }
    }
    free(msg);
    if (code == STATUS_OK && !s->existing) {
        *quote = r;
        return STATUS_OK;
    }
    if (out)
        protobuf_c_message_free_unpacked(out, NULL);
    return code;
}

/* The order as placed, from promotions' quote: packed into *body. */
static uint8_t *s_placed_body(call_t *call, const saga_t *s,
                              const Shop__Orders__V1__PlaceOrderRequest *req,
                              const Shop__Promotions__V1__Quote *qt, size_t *len)
{
    order_t o = SHOP__ORDERS__V1__ORDER__INIT;
    const char *cur = qt->total->currency;

    o.id = (char *)s->id;
    o.customer_id = req->customer_id;
    o.channel = "shop";
    o.tier = req->tier;
    o.shipping_address = req->shipping_address;
    o.subtotal = qt->subtotal;
    o.discount = qt->total_saved ? qt->total_saved : call_money(call, 0, cur);
    o.total = qt->total;
    o.n_lines = qt->n_lines;
    o.lines = call_alloc(call, (qt->n_lines + 1) * sizeof *o.lines);
    for (size_t i = 0; i < qt->n_lines; i++) {
        const Shop__Promotions__V1__LinePrice *lp = qt->lines[i];
        Shop__Orders__V1__OrderLine *l = call_alloc(call, sizeof *l);
        shop__orders__v1__order_line__init(l);
        l->sku = lp->sku;
        l->quantity = lp->quantity;
        l->unit_price = lp->unit_price;
        l->discount = lp->discount ? lp->discount : call_money(call, 0, cur);
        l->total = lp->total;
        o.lines[i] = l;
    }
    o.promotions = call_alloc(call, (qt->n_applied + 1) * sizeof *o.promotions);
    o.coupon_codes = call_alloc(call, (qt->n_applied + 1) * sizeof *o.coupon_codes);
    for (size_t i = 0; i < qt->n_applied; i++) {
        const Shop__Promotions__V1__Applied *ap = qt->applied[i];
        Shop__Orders__V1__AppliedPromotion *p = call_alloc(call, sizeof *p);
        shop__orders__v1__applied_promotion__init(p);
        p->code = ap->code;
        p->reason = ap->reason;
        p->saved = ap->saved;
        o.promotions[o.n_promotions++] = p;
        if (ap->source == SHOP__PROMOTIONS__V1__SOURCE__SOURCE_COUPON)
            o.coupon_codes[o.n_coupon_codes++] = ap->code;
    }
    return call_pack(call, &o.base, len);
}

/* Step 4: the order written, with its events; *out is the order as stored.
 * If another attempt finished it first, that order is the answer. */
static status_t s_finish(saga_t *s, const char *state, const uint8_t *body, size_t body_len,
                         const char *currency, int64_t total, const char *payment_ref,
                         order_t **out)
{
    db_t *db = call_db(s->call);
    placed_t p = {s->call, NULL};

    /* Past ORDERS_PENDING_TIMEOUT_S from its reservation, a placement may
     * already count as stopped half-way (orders_sweep_orphans, at twice
     * that): then what it holds is being given back, and it must not be
     * placed. Checked before the insert, and after it (which may have
     * waited), so only the COMMIT that follows lies past the check. */
    if (s_too_old(s, s->reserved_ms))
        return s_fail(s, STATUS_ABORTED, "order %s took more than %lld s to place and is given "
                      "up; try again", s->id, (long long)s->set->pending_timeout_s);
    int rc = store_insert_placed(db, &s->pl, state, body, body_len, currency, total, payment_ref,
                                 s_on_placed, &p);

    if (rc < 0)
        return call_db_fail(s->call, "store the order");
    if (rc == 1) {
        /* The id or the key is taken. By a concurrent attempt at this same
         * placement that placed it (the answer) or gave it up (what it held
         * went back with that); or, the key, by another attempt with
         * another id: what this one holds must go back. */
        status_t st = s_read_back(s);
        if (st != STATUS_OK)
            return st;
        if (s->existing && s_ours(s, s->existing)) {
            if (s_finished(s->existing)) {
                *out = s->existing;
                return STATUS_OK;
            }
            s->existing = NULL;
            return call_fail(s->call, STATUS_ABORTED, "order %s was given up meanwhile; try again",
                             s->id);
        }
        if (s->existing)   /* not this placement's: an id can only clash by chance */
            return call_fail(s->call, STATUS_INTERNAL, "order id %s is taken", s->id);
        rc = s_give_back(s, "its key was taken by another placement meanwhile");
        if (rc < 0)
            return call_db_fail(s->call, "abandon the order");
        if (rc == 1)
            return call_fail(s->call, STATUS_ABORTED, "order %s was placed or given up meanwhile; "
                             "try again", s->id);
        /* The order that took the key: the answer if it came from the same
         * request (an import's external id stands for one order). */
        uint8_t digest[32];
        bool same = false;
        rc = store_lookup(db, s->pl.customer_id, s->pl.idem_key, s->pl.channel, s->pl.external_id,
                          s->pl.request, s->pl.request_len, digest, &same, s_on_existing, s);
        if (rc < 0)
            return call_db_fail(s->call, "look the key up");
        if (rc == 1 && s->existing && (same || !s->pl.idem_key) && s_finished(s->existing)) {
            *out = s->existing;
            return STATUS_OK;
        }
        s->existing = NULL;
        return call_fail(s->call, STATUS_ALREADY_EXISTS, "this %s was taken by another order "
                         "meanwhile", s->pl.idem_key ? "idempotency key" : "external order id");
    }
    if (!p.order)
        return call_fail(s->call, STATUS_INTERNAL, "order %s does not read back", s->id);
    if (s_too_old(s, s->reserved_ms))   /* the insert rolls back; the sweep gives back */
        return call_fail(s->call, STATUS_ABORTED, "order %s took more than %lld s to store and is "
                         "given up; try again", s->id, (long long)s->set->pending_timeout_s);
    Shop__Orders__V1__OrderPlaced placed = SHOP__ORDERS__V1__ORDER_PLACED__INIT;
    placed.order = p.order;
    if (server_emit(db, &placed.base, s->id) != 0)
        return call_db_fail(s->call, "emit OrderPlaced");
    if (strcmp(state, "paid") == 0) {
        Shop__Orders__V1__OrderPaid paid = SHOP__ORDERS__V1__ORDER_PAID__INIT;
        paid.order = p.order;
        if (server_emit(db, &paid.base, s->id) != 0)
            return call_db_fail(s->call, "emit OrderPaid");
    }
    *out = p.order;
    return STATUS_OK;
}

/* Checks lines shared by both paths: 0 or a status already failed. */
static status_t s_check_line(call_t *call, const char *what, size_t i, const char *sku,
                             int32_t quantity)
{
    if (!orders_valid_sku(sku))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s[%zu].sku: 1 to 64 of A-Z a-z 0-9 . _ -",
                         what, i);
    if (quantity < 1 || quantity > 10000)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s[%zu].quantity: 1 to 10000", what, i);
    return STATUS_OK;
}

static status_t s_check_customer(call_t *call, const char *customer_id)
{
    size_t n = strlen(customer_id);
    if (n < 1 || n > 128)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "customer_id: 1 to 128 characters");
    return STATUS_OK;
}

static status_t s_check_place(call_t *call, const orders_settings_t *set,
                              const Shop__Orders__V1__PlaceOrderRequest *req)
{
    char why[160];
    status_t code;

    if ((code = s_check_customer(call, req->customer_id)) != STATUS_OK)
        return code;
    if (req->n_lines < 1 || req->n_lines > (size_t)set->max_lines)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "lines: 1 to %lld lines",
                         (long long)set->max_lines);
    for (size_t i = 0; i < req->n_lines; i++) {
        if ((code = s_check_line(call, "lines", i, req->lines[i]->sku, req->lines[i]->quantity)))
            return code;
        for (size_t k = 0; k < i; k++)
            if (strcmp(req->lines[k]->sku, req->lines[i]->sku) == 0)
                return call_fail(call, STATUS_INVALID_ARGUMENT,
                                 "lines[%zu].sku: %s is already on line %zu", i, req->lines[i]->sku, k);
    }
    if (orders_check_address(req->shipping_address, why, sizeof why) != 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s", why);
    if (strlen(req->tier) > 64)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "tier: at most 64 characters");
    if (req->n_coupon_codes > 5)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "coupon_codes: at most 5");
    for (size_t i = 0; i < req->n_coupon_codes; i++)
        if (!util_valid_code(req->coupon_codes[i], 64))
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "coupon_codes[%zu]: 1 to 64 of A-Z a-z 0-9 . _ -", i);
    return STATUS_OK;
}

ORDERS_HANDLER(orders_place)
{
    const Shop__Orders__V1__PlaceOrderRequest *req = (const void *)request;
    Shop__Orders__V1__PlaceOrderResponse *resp = (void *)response;
    saga_t s = {.call = call, .set = call_settings(call)};
    const char *key = call_idempotency_key(call);
    Shop__Promotions__V1__RedeemResponse *quote = NULL;
    status_t code;

    if ((code = s_check_place(call, s.set, req)) != STATUS_OK)
        return code;
    if (strlen(key) > 128)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "idempotency key: at most 128 characters");
    if ((code = s_begin(&s, request, req->customer_id, key[0] ? key : NULL, "shop", NULL)) !=
        STATUS_OK)
        return code;
    if (s.existing) {
        resp->order = s.existing;
        return STATUS_OK;
    }

    Shop__Catalog__V1__ReservationLine **lines = call_alloc(call, req->n_lines * sizeof *lines);
    for (size_t i = 0; i < req->n_lines; i++)
        lines[i] = s_reservation_line(call, req->lines[i]->sku, req->lines[i]->quantity);
    code = s_reserve(&s, lines, req->n_lines);
    if (code != STATUS_OK || s.existing) {
        resp->order = s.existing;
        if (!s.existing) {
            resp->shortages = s.shortages;
            resp->n_shortages = s.n_shortages;
        }
        return code;
    }
    if ((code = s_redeem(&s, req, &quote)) != STATUS_OK || s.existing) {
        resp->order = s.existing;
        return code;
    }
    size_t body_len;
    const Shop__Promotions__V1__Quote *qt = quote->quote;
    const uint8_t *body = s_placed_body(call, &s, req, qt, &body_len);
    code = s_finish(&s, "placed", body, body_len, qt->total->currency, qt->total->minor_units, "",
                    &resp->order);
    protobuf_c_message_free_unpacked(&quote->base, NULL);
    return code;
}

/* --- ImportOrder --------------------------------------------------------------- */

static status_t s_check_money(call_t *call, const char *what, size_t i, const money_t *m,
                              const char *currency, bool required)
{
    if (!m) {
        if (required)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "lines[%zu].%s: required", i, what);
        return STATUS_OK;
    }
    if (m->minor_units < 0 || m->minor_units > MONEY_MAX_MINOR)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "lines[%zu].%s: 0 to 10^12 minor units",
                         i, what);
    if (strcmp(m->currency, currency) != 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "lines[%zu].%s: currency %s, but the order is in %s", i, what,
                         m->currency, currency);
    return STATUS_OK;
}

static status_t s_check_import(call_t *call, const orders_settings_t *set,
                               const Shop__Orders__V1__ImportOrderRequest *req)
{
    char why[160];
    status_t code;

    if (!util_valid_code(req->channel, 64))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "channel: 1 to 64 of A-Z a-z 0-9 . _ -");
    if (strcmp(req->channel, "shop") == 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "channel: \"shop\" is this shop's own");
    size_t n = strlen(req->external_id);
    if (n < 1 || n > 128)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "external_id: 1 to 128 characters");
    if ((code = s_check_customer(call, req->customer_id)) != STATUS_OK)
        return code;
    if (req->n_lines < 1 || req->n_lines > (size_t)set->max_lines)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "lines: 1 to %lld lines",
                         (long long)set->max_lines);
    if (!req->lines[0]->unit_price || strlen(req->lines[0]->unit_price->currency) != 3)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "lines[0].unit_price: required, with a three-letter currency");
    const char *cur = req->lines[0]->unit_price->currency;
    for (size_t i = 0; i < req->n_lines; i++) {
        const Shop__Orders__V1__ImportLine *l = req->lines[i];
        if ((code = s_check_line(call, "lines", i, l->sku, l->quantity)) ||
            (code = s_check_money(call, "unit_price", i, l->unit_price, cur, true)) ||
            (code = s_check_money(call, "discount", i, l->discount, cur, false)))
            return code;
        if (l->discount && l->discount->minor_units > l->unit_price->minor_units * l->quantity)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "lines[%zu].discount: more than the line is worth", i);
        for (size_t k = 0; k < i; k++)
            if (strcmp(req->lines[k]->sku, l->sku) == 0)
                return call_fail(call, STATUS_INVALID_ARGUMENT,
                                 "lines[%zu].sku: %s is already on line %zu", i, l->sku, k);
    }
    if (orders_check_address(req->shipping_address, why, sizeof why) != 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s", why);
    if (strlen(req->payment_reference) > 200)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "payment_reference: at most 200 characters");
    return STATUS_OK;
}

/* The imported order as placed, priced by its channel: packed. */
static uint8_t *s_imported_body(call_t *call, const saga_t *s,
                                const Shop__Orders__V1__ImportOrderRequest *req, int64_t *total,
                                size_t *len)
{
    order_t o = SHOP__ORDERS__V1__ORDER__INIT;
    const char *cur = req->lines[0]->unit_price->currency;
    int64_t subtotal = 0, discount = 0;

    o.id = (char *)s->id;
    o.customer_id = req->customer_id;
    o.channel = req->channel;
    o.external_id = req->external_id;
    o.shipping_address = req->shipping_address;
    o.n_lines = req->n_lines;
    o.lines = call_alloc(call, req->n_lines * sizeof *o.lines);
    for (size_t i = 0; i < req->n_lines; i++) {
        const Shop__Orders__V1__ImportLine *il = req->lines[i];
        Shop__Orders__V1__OrderLine *l = call_alloc(call, sizeof *l);
        int64_t gross = il->unit_price->minor_units * il->quantity;
        int64_t off = il->discount ? il->discount->minor_units : 0;
        shop__orders__v1__order_line__init(l);
        l->sku = il->sku;
        l->quantity = il->quantity;
        l->unit_price = il->unit_price;
        l->discount = call_money(call, off, cur);
        l->total = call_money(call, gross - off, cur);
        subtotal += gross;
        discount += off;
        o.lines[i] = l;
    }
    o.subtotal = call_money(call, subtotal, cur);
    o.discount = call_money(call, discount, cur);
    o.total = call_money(call, subtotal - discount, cur);
    *total = subtotal - discount;
    return call_pack(call, &o.base, len);
}

ORDERS_HANDLER(orders_import)
{
    const Shop__Orders__V1__ImportOrderRequest *req = (const void *)request;
    Shop__Orders__V1__ImportOrderResponse *resp = (void *)response;
    saga_t s = {.call = call, .set = call_settings(call)};
    status_t code;

    if ((code = s_check_import(call, s.set, req)) != STATUS_OK)
        return code;
    if ((code = s_begin(&s, request, req->customer_id, NULL, req->channel, req->external_id)) !=
        STATUS_OK)
        return code;
    if (s.existing) {
        resp->order = s.existing;
        resp->duplicate = true;
        return STATUS_OK;
    }
    Shop__Catalog__V1__ReservationLine **lines = call_alloc(call, req->n_lines * sizeof *lines);
    for (size_t i = 0; i < req->n_lines; i++)
        lines[i] = s_reservation_line(call, req->lines[i]->sku, req->lines[i]->quantity);
    if ((code = s_reserve(&s, lines, req->n_lines)) != STATUS_OK || s.existing) {
        resp->order = s.existing;
        resp->duplicate = s.existing != NULL;
        if (!s.existing) {
            resp->shortages = s.shortages;
            resp->n_shortages = s.n_shortages;
        }
        return code;
    }
    int64_t total;
    size_t body_len;
    const uint8_t *body = s_imported_body(call, &s, req, &total, &body_len);
    return s_finish(&s, req->paid ? "paid" : "placed", body, body_len,
                    req->lines[0]->unit_price->currency, total, req->payment_reference,
                    &resp->order);
}

/* --- holds a stopped placement left behind ------------------------------------ */

/* A placement that stops between its reservation and its order (the
 * process killed, and no retry with its key) leaves stock, and perhaps
 * coupon uses, held under an order id that has no order. The maintenance
 * tick lists the catalog's held reservations made more than twice
 * ORDERS_PENDING_TIMEOUT_S ago and emits OrderAbandoned for each under an
 * id of this service's form that has no order row: the catalog and
 * promotions give back what it holds, within minutes rather than at the end
 * of its hold. Nothing can place it after that: an attempt past
 * ORDERS_PENDING_TIMEOUT_S from its reservation gives up (s_finish,
 * s_reserve), and so does a retry that finds the reservation ended. No row
 * is written here, so that retry records the failure with the key and the
 * next one gets an id of its own. */

#define SWEEP_PAGE      500
#define SWEEP_PAGES     4      /* per tick */
#define SWEEP_BUDGET_MS 500   /* for the catalog's answers, per tick */
#define SWEEP_PAGE_MIN_MS 100 /* the least left to ask for another page */

#define LIST_HELD_METHOD "shop.catalog.v1.CatalogService/ListHeldReservations"

/* An id s_id_from makes: "O" and 20 of Crockford's base32. */
static bool s_our_id(const char *id)
{
    if (id[0] != 'O' || strlen(id) != 21)
        return false;
    for (int i = 1; i < 21; i++)
        if (!strchr(s_digits, id[i]))
            return false;
    return true;
}

typedef struct {
    db_t *db;
    int rc;
} orphans_t;

static void s_on_orphan(void *arg, const char *id)
{
    orphans_t *o = arg;
    const char *why = "the placement stopped after reserving stock";

    if (o->rc != 0)
        return;
    if (orders_emit_abandoned(o->db, id, why) != 0 ||
        server_anomaly_on_commit(o->db, "placement_orphaned", "order %s: %s; its stock and "
                                 "coupons are given back", id, why) != 0)
        o->rc = -1;
}

/* The maintenance thread's: where the last page given back ended (moved
 * on only once the tick has committed what it gave back), and whether the
 * catalog answered last time (its silence is logged once). */
static char s_token[200];
static bool s_quiet;

static void s_moved_on(void *arg, const char *token)
{
    (void)arg;
    snprintf(s_token, sizeof s_token, "%s", token);
}

int orders_sweep_orphans(db_t *db, const orders_settings_t *set)
{
    ProtobufCMessage *pages[SWEEP_PAGES] = {0};
    const char *ids[SWEEP_PAGES * SWEEP_PAGE];
    char token[sizeof s_token];
    size_t n = 0;
    int n_pages = 0, rc = 0;
    int64_t age_ms = 2 * set->pending_timeout_s * 1000, start_us = util_mono_us();

    /* The catalog first, within SWEEP_BUDGET_MS, while this transaction
     * holds no xid (one held open would keep every event of the cluster
     * from being numbered); then the writes. */
    snprintf(token, sizeof token, "%s", s_token);
    while (n_pages < SWEEP_PAGES) {
        Shop__Catalog__V1__ListHeldReservationsRequest req =
            SHOP__CATALOG__V1__LIST_HELD_RESERVATIONS_REQUEST__INIT;
        char *msg = NULL;
        int64_t now = util_now_ms(), left = SWEEP_BUDGET_MS - (util_mono_us() - start_us) / 1000;

        if (left < SWEEP_PAGE_MIN_MS)   /* the rest next tick */
            break;
        /* this service's reservations end orders_hold_s after their making */
        req.expiring_before_ms = now + orders_hold_s(set) * 1000 - age_ms;
        req.created_before_ms = now - age_ms;
        req.page_size = SWEEP_PAGE;
        req.page_token = token;
        status_t st = server_remote("catalog", LIST_HELD_METHOD, &req.base,
                                    &shop__catalog__v1__list_held_reservations_response__descriptor,
                                    &pages[n_pages], (int)left, &msg);
        if (st != STATUS_OK) {
            /* a later page out of this tick's time is no news */
            bool news = n_pages == 0 || st != STATUS_DEADLINE_EXCEEDED;
            if (news && !s_quiet)
                slog_warn("orders: cannot list the catalog's held reservations (%s: %s); "
                          "holds of stopped placements wait", status_name(st), msg ? msg : "");
            s_quiet = s_quiet || news;
            free(msg);
            if (pages[n_pages])
                protobuf_c_message_free_unpacked(pages[n_pages], NULL);
            pages[n_pages] = NULL;
            break;   /* what was listed is swept; the rest of the tick goes on */
        }
        free(msg);
        const Shop__Catalog__V1__ListHeldReservationsResponse *r = (const void *)pages[n_pages++];
        bool odd = r->n_reservations > SWEEP_PAGE;
        for (size_t i = 0; i < r->n_reservations && !odd; i++)
            /* too young: a catalog that ignores created_before_ms (older
             * than the field) */
            odd = r->reservations[i]->created_at_ms > req.created_before_ms;   /* (ms rounded) */
        if (odd) {
            if (!s_quiet)
                slog_warn("orders: the catalog's ListHeldReservations answers more than it was "
                          "asked for; holds of stopped placements wait");
            s_quiet = true;
            n = 0;
            snprintf(token, sizeof token, "%s", s_token);
            break;
        }
        s_quiet = false;
        for (size_t i = 0; i < r->n_reservations; i++)
            if (s_our_id(r->reservations[i]->order_id))
                ids[n++] = r->reservations[i]->order_id;
        if (r->next_page_token[0])
            snprintf(token, sizeof token, "%s", r->next_page_token);
        if (r->n_reservations < SWEEP_PAGE)
            break;
    }
    orphans_t o = {db, 0};
    if (n && store_unknown_ids(db, ids, n, s_on_orphan, &o) != 0)
        rc = -1;
    if (rc == 0 && o.rc != 0)
        rc = -1;
    /* the token moves on only with what this tick gives back */
    if (rc == 0 && strcmp(token, s_token) != 0 && db_after_commit(db, s_moved_on, NULL, token) != 0)
        rc = -1;
    for (int k = 0; k < n_pages; k++)
        protobuf_c_message_free_unpacked(pages[k], NULL);
    return rc;
}
