/* quote: Quote, Redeem and Release. A quote takes the cart's SKUs, the
 * candidate rules and the tier from the terms cache (cache.c) and the
 * coupons and counted rules' usage from the usage cache (usage.c), and
 * hands it all to the engine: when they are all in memory it runs on the
 * loop thread with no statement; what memory lacks it reads on a worker,
 * without a transaction. Redeem prices with the terms at least as new as
 * the database's version and reads the coupons and usage from the
 * database, the counted rows locked, then records each use against its
 * limit in the same transaction, once per order id. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"
#include "promotions.h"
#include "util.h"

typedef Shop__Promotions__V1__QuoteRequest quote_request_t;
typedef Shop__Promotions__V1__Quote quote_msg_t;

typedef struct {
    call_t *call;
    eng_line_t *lines;
    size_t n;
    const char *currency;
    const char *customer_id;
    int64_t at_ms;
    eng_rule_t *rules;
    size_t n_rules;
    eng_coupon_t *coupons;
    size_t n_coupons;
    eng_tier_t tier;
    bool has_tier;
    eng_quote_t q;
    bool lock;              /* a redemption: read the database, lock the counted rows */
    int64_t version;        /* terms version just read by the caller, or -1 */
    uint32_t mark;          /* usage_mark() before its reads */
    cache_snap_t *snap;     /* the terms, held until cache_release */
    cache_view_t view;
    const cache_sku_t **skus;   /* each line's, in the view */
} quote_t;

static int s_line_cmp(const void *a, const void *b)
{
    return strcmp(((const eng_line_t *)a)->sku, ((const eng_line_t *)b)->sku);
}

/* Each line's price, cost and category from the terms: NOT_FOUND for a
 * SKU they do not have. */
static status_t s_lines(quote_t *qt)
{
    const cache_sku_t **found = qt->skus = call_alloc_uninit(qt->call, qt->n * sizeof *found);

    qt->currency = NULL;
    for (size_t i = 0; i < qt->n; i++) {
        eng_line_t *l = &qt->lines[i];
        const cache_sku_t *k = found[i] = cache_sku(&qt->view, l->sku);
        if (!k)
            return call_fail(qt->call, STATUS_NOT_FOUND, "no SKU %s (the catalog has not announced it)",
                             l->sku);
        l->category = k->category;
        l->unit_price = k->list_price;
        l->unit_cost = k->cost_price;
        if (!qt->currency)
            qt->currency = k->currency;
        else if (strcmp(qt->currency, k->currency) != 0)
            return call_fail(qt->call, STATUS_INVALID_ARGUMENT, "the cart mixes currencies (%s and %s)",
                             qt->currency, k->currency);
    }
    int64_t worth = 0, line;
    for (size_t i = 0; i < qt->n; i++)
        if (__builtin_mul_overflow(qt->lines[i].unit_price, (int64_t)qt->lines[i].qty, &line) ||
            __builtin_add_overflow(worth, line, &worth) || worth > MONEY_MAX_CART)
            return call_fail(qt->call, STATUS_INVALID_ARGUMENT,
                             "the cart is worth more than %lld minor units", (long long)MONEY_MAX_CART);
    for (size_t i = 0; i < qt->n; i++)
        if (!found[i]->active)
            return call_fail(qt->call, STATUS_FAILED_PRECONDITION, "SKU %s is not for sale",
                             qt->lines[i].sku);
    return STATUS_OK;
}

/* The terms into qt->view, held in qt->snap until the caller lets go: as
 * the cache knows them current, or (`fresh`, or the cache does not know)
 * at least as new as the database's version (qt->version if the caller
 * read it, else read here). */
static status_t s_terms(quote_t *qt, bool fresh)
{
    db_t *db = call_db(qt->call);
    int64_t version = fresh ? qt->version : cache_wanted();

    cache_release(qt->snap);
    qt->snap = NULL;
    if (version < 0 && !db)
        return call_defer(qt->call);
    if (version < 0 && store_rule_version(db, &version) != 0)
        return call_db_fail(qt->call, "read terms version");
    if (!(qt->snap = cache_acquire(db, version, &qt->view)))
        return db ? call_db_fail(qt->call, "load terms") : call_defer(qt->call);
    return STATUS_OK;
}

/* A rule that covers the cart (see cache_candidates) is a candidate if
 * its window is within a week of the quote's time (so the quote can still
 * say "expired" or "not yet"). */
static bool s_in_window(const quote_t *qt, const eng_rule_t *r)
{
    const int64_t week = 7LL * 24 * 3600 * 1000;

    return !(r->ends_ms && r->ends_ms <= qt->at_ms - week) &&
           !(r->starts_ms && r->starts_ms >= qt->at_ms + week);
}

static void s_on_usage(void *arg, const char *code, int32_t used, int64_t spent)
{
    quote_t *qt = arg;

    for (size_t i = 0; i < qt->n_rules; i++)
        if (strcmp(qt->rules[i].code, code) == 0) {
            qt->rules[i].used = used;
            qt->rules[i].spent = spent;
        }
    if (!qt->lock)
        usage_rule_put(code, used, spent, qt->mark);
}

/* The candidates among the terms' rules, with fresh usage for the capped
 * or budgeted ones (locked first for a redemption). */
static status_t s_rules(quote_t *qt)
{
    db_t *db = call_db(qt->call);
    bool lock = qt->lock;
    const eng_rule_t *all = qt->view.rules;
    size_t n_all = qt->view.n_rules;

    bool *mark = call_alloc_uninit(qt->call, n_all + 1);   /* cache_candidates clears it */

    cache_candidates(&qt->view, qt->skus, qt->n, mark);
    size_t n_marked = 0;
    for (size_t i = 0; i < n_all; i++)
        n_marked += mark[i];
    /* one array of the right size (growing it by doubling left copies
     * worth 20 KB of the call's memory behind in a quote of the bench's) */
    qt->rules = call_alloc_uninit(qt->call, (n_marked + 1) * sizeof *qt->rules);
    for (size_t i = 0; i < n_all; i++)
        if (mark[i] && s_in_window(qt, &all[i]))
            qt->rules[qt->n_rules++] = all[i];   /* strings stay in the snapshot */
    /* the counted rules' usage: from memory for a quote where it has it,
     * the rest from the database */
    const char **counted = call_alloc(qt->call, (qt->n_rules + 1) * sizeof *counted);
    size_t n_counted = 0;
    for (size_t i = 0; i < qt->n_rules; i++) {
        eng_rule_t *r = &qt->rules[i];
        if ((r->usage_cap || r->budget) && (lock || !usage_rule_get(r->code, &r->used, &r->spent)))
            counted[n_counted++] = r->code;
    }
    if (n_counted && !db)
        return call_defer(qt->call);
    if (n_counted == 0)
        return STATUS_OK;
    if (lock && store_rule_lock(db, counted, n_counted) != 0)
        return call_db_fail(qt->call, "lock rules");
    if (store_rule_usage(db, counted, n_counted, s_on_usage, qt) != 0)
        return call_db_fail(qt->call, "read rule usage");
    return STATUS_OK;
}

static void s_on_coupon(void *arg, const store_coupon_t *c)
{
    quote_t *qt = arg;
    eng_coupon_t *e = &qt->coupons[qt->n_coupons++];

    memset(e, 0, sizeof *e);
    e->code = call_strdup(qt->call, c->code);
    e->currency = call_strdup(qt->call, c->currency);
    e->customer_id = call_strdup(qt->call, c->customer_id);
    e->percent = strcmp(c->kind, "percent_off") == 0;
    e->percent_off = c->percent_off;
    e->amount_off = c->amount_off;
    e->min_spend = c->min_spend;
    e->starts_ms = c->starts_ms;
    e->ends_ms = c->ends_ms;
    e->total_limit = c->total_limit;
    e->per_customer_limit = c->per_customer_limit;
    e->used = c->used;
    e->used_by_customer = c->used_by_customer;
    if (!qt->lock)
        usage_coupon_put(c, qt->mark);
}


/* Validates the request, loads what the engine needs (locking the counted
 * rows when `lock`) and prices the cart. `version` is -1 for a quote (the
 * terms as the cache knows them, at the time asked for); for a redemption
 * it is the terms version the caller has just read from the database, and
 * the cart is priced now with terms at least that new. */
static status_t s_price(call_t *call, const quote_request_t *req, bool lock, int64_t version,
                        quote_t *qt)
{
    const promo_settings_t *set = call_settings(call);
    db_t *db = call_db(call);
    size_t n = req ? req->n_lines : 0;

    memset(qt, 0, sizeof *qt);
    qt->call = call;
    qt->lock = lock;
    qt->version = version;
    /* before any read: what it reads may be older than a forget (a
     * redemption puts nothing in the usage cache) */
    qt->mark = lock ? 0 : usage_mark();
    if (!req)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "quote: required");
    if (n < 1 || n > (size_t)set->max_lines)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "lines: 1 to %" PRId64 " lines", set->max_lines);
    if (strlen(req->customer_id) > 128)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "customer_id: at most 128 characters");
    if (req->n_coupon_codes > (size_t)set->max_coupons)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "coupon_codes: at most %" PRId64,
                         set->max_coupons);
    for (size_t i = 0; i < req->n_coupon_codes; i++)
        if (!promo_valid_coupon_code(req->coupon_codes[i]))
            return call_fail(call, STATUS_INVALID_ARGUMENT, "coupon_codes[%zu]: 3 to 40 of A-Z 0-9 -", i);
    if (req->at_ms < 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "at_ms: 0 (now) or a time");
    bool redeem = version >= 0;
    /* a quote may look at another time; a redemption is always now */
    qt->at_ms = req->at_ms && !redeem ? req->at_ms : util_now_ms();
    qt->customer_id = req->customer_id;
    qt->lines = call_alloc(call, n * sizeof *qt->lines);
    qt->n = n;
    for (size_t i = 0; i < n; i++) {
        const Shop__Promotions__V1__CartLine *l = req->lines[i];
        if (!promo_valid_sku(l->sku) || l->quantity < 1 || l->quantity > 1000000)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "lines[%zu]: a SKU code and a quantity of 1 to 1000000", i);
        qt->lines[i].sku = l->sku;
        qt->lines[i].qty = l->quantity;
    }
    qsort(qt->lines, n, sizeof *qt->lines, s_line_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(qt->lines[i].sku, qt->lines[i - 1].sku) == 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "lines: SKU %s appears twice",
                             qt->lines[i].sku);
    /* A SKU the cache lacks may be newer than the notification that
     * announces it: ask the database's version once before saying so. */
    status_t rc = s_terms(qt, redeem);
    if (rc == STATUS_OK && (rc = s_lines(qt)) == STATUS_NOT_FOUND && !redeem)
        if ((rc = s_terms(qt, true)) == STATUS_OK)
            rc = s_lines(qt);
    if (rc != STATUS_OK || (rc = s_rules(qt)) != STATUS_OK)
        return rc;
    if (req->tier[0]) {
        const cache_tier_t *t = cache_tier(&qt->view, req->tier);
        if (!t)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "tier: no tier %s", req->tier);
        qt->tier.name = req->tier;
        qt->tier.percent = t->percent;
        qt->has_tier = true;
    }
    if (req->n_coupon_codes) {
        /* distinct codes; an unknown one is an error */
        const char **codes = call_alloc(call, req->n_coupon_codes * sizeof *codes);
        size_t want = 0;
        for (size_t i = 0; i < req->n_coupon_codes; i++) {
            bool dup = false;
            for (size_t k = 0; k < want; k++)
                dup = dup || strcmp(codes[k], req->coupon_codes[i]) == 0;
            if (!dup)
                codes[want++] = req->coupon_codes[i];
        }
        qt->coupons = call_alloc(call, want * sizeof *qt->coupons);
        size_t missing = 0;   /* what memory has, the rest from the database */
        for (size_t i = 0; i < want; i++) {
            if (!lock && usage_coupon_get(call, codes[i], req->customer_id, &qt->coupons[qt->n_coupons]))
                qt->n_coupons++;
            else
                codes[missing++] = codes[i];
        }
        if (missing && !db)
            return call_defer(call);
        size_t from = qt->n_coupons;
        if (missing && store_coupons(db, codes, missing, req->customer_id, lock, s_on_coupon, qt) != 0)
            return call_db_fail(call, "read coupons");
        for (size_t i = 0; i < missing && qt->n_coupons != want; i++) {
            bool found = false;
            for (size_t k = from; k < qt->n_coupons; k++)
                found = found || strcmp(qt->coupons[k].code, codes[i]) == 0;
            if (!found)
                return call_fail(call, STATUS_NOT_FOUND, "no coupon %s", codes[i]);
        }
    }
    eng_mem_t mem = promo_call_mem(call);
    eng_quote(&mem, qt->lines, n, qt->currency, qt->rules, qt->n_rules,
              qt->has_tier ? &qt->tier : NULL, qt->coupons, qt->n_coupons, req->customer_id,
              qt->at_ms, &qt->q);
    return STATUS_OK;
}

static Shop__Promotions__V1__Source s_source(int s)
{
    return (Shop__Promotions__V1__Source)s;   /* the engine uses the proto's numbers */
}

static quote_msg_t *s_message(quote_t *qt)
{
    call_t *call = qt->call;
    quote_msg_t *m = call_alloc(call, sizeof *m);
    const char *cur = qt->currency;

    shop__promotions__v1__quote__init(m);
    m->lines = call_alloc(call, qt->n * sizeof *m->lines);
    for (size_t i = 0; i < qt->n; i++) {
        const eng_line_t *l = &qt->lines[i];
        Shop__Promotions__V1__LinePrice *p = call_alloc(call, sizeof *p);
        shop__promotions__v1__line_price__init(p);
        p->sku = call_strdup(call, l->sku);
        p->quantity = l->qty;
        p->unit_price = call_money(call, l->unit_price, cur);
        p->list_total = call_money(call, l->unit_price * l->qty, cur);
        p->discount = call_money(call, l->discount, cur);
        p->total = call_money(call, l->unit_price * l->qty - l->discount, cur);
        m->lines[m->n_lines++] = p;
    }
    m->subtotal = call_money(call, qt->q.subtotal, cur);
    m->total_saved = call_money(call, qt->q.saved, cur);
    m->total = call_money(call, qt->q.subtotal - qt->q.saved, cur);
    m->applied = call_alloc(call, (qt->q.n_applied + 1) * sizeof *m->applied);
    for (size_t i = 0; i < qt->q.n_applied; i++) {
        const eng_entry_t *e = &qt->q.applied[i];
        Shop__Promotions__V1__Applied *a = call_alloc(call, sizeof *a);
        shop__promotions__v1__applied__init(a);
        a->source = s_source(e->source);
        a->code = call_strdup(call, e->code);
        a->reason = call_strdup(call, e->reason);   /* a rule's own is the snapshot's */
        a->saved = call_money(call, e->saved, cur);
        m->applied[m->n_applied++] = a;
    }
    m->rejected = call_alloc(call, (qt->q.n_rejected + 1) * sizeof *m->rejected);
    for (size_t i = 0; i < qt->q.n_rejected; i++) {
        const eng_entry_t *e = &qt->q.rejected[i];
        Shop__Promotions__V1__Rejected *r = call_alloc(call, sizeof *r);
        shop__promotions__v1__rejected__init(r);
        r->source = s_source(e->source);
        r->code = call_strdup(call, e->code);
        r->reason = (char *)e->reason;
        m->rejected[m->n_rejected++] = r;
    }
    m->quoted_at_ms = qt->at_ms;
    return m;
}

PROMO_HANDLER(promo_quote)
{
    Shop__Promotions__V1__QuoteResponse *resp = (void *)response;
    quote_t qt;

    call_without_transaction(call);   /* it only reads */
    status_t code = s_price(call, (const quote_request_t *)request, false, -1, &qt);

    if (code == STATUS_OK)
        resp->quote = s_message(&qt);   /* copies what it needs from the rules */
    cache_release(qt.snap);
    return code;
}

/* The request as stored for comparing retries: packed, time left out. */
static uint8_t *s_request_bytes(call_t *call, const quote_request_t *req, size_t *len)
{
    quote_request_t copy = *req;

    copy.at_ms = 0;
    return call_pack(call, &copy.base, len);
}

/* Prices a redemption from the terms in memory (made current with the
 * database's version, so a cap or budget just added elsewhere is seen)
 * when nothing in it can count against a limit or budget: no coupon, and
 * no candidate rule with a cap or budget. Such a redemption records nothing
 * (see below) and needs no usage, so no lock. STATUS_DEFER when it does not
 * apply (then nothing is held). */
static status_t s_price_quick(call_t *call, const quote_request_t *req, int64_t version,
                              quote_t *qt)
{
    if (!req || req->n_coupon_codes)
        return STATUS_DEFER;
    status_t code = s_price(call, req, false, version, qt);
    for (size_t i = 0; code == STATUS_OK && i < qt->n_rules; i++)
        if (qt->rules[i].usage_cap || qt->rules[i].budget)
            code = STATUS_DEFER;
    if (code == STATUS_DEFER) {
        cache_release(qt->snap);
        memset(qt, 0, sizeof *qt);
    }
    return code;
}

/* The redemption already recorded for this order, if any, as the answer
 * (*found false and STATUS_OK if there is none): the first result,
 * unchanged, if the same cart asks again. */
static status_t s_redeemed_before(call_t *call, const Shop__Promotions__V1__RedeemRequest *req,
                                  bool lock, Shop__Promotions__V1__RedeemResponse *resp,
                                  int64_t *version, bool *found)
{
    uint8_t *stored_req = NULL, *stored_quote = NULL;
    size_t stored_len = 0, stored_qlen = 0, len;
    char state[16];
    ProtobufCAllocator arena = call_allocator(call);
    status_t code = STATUS_OK;

    int rc = store_redemption_get(call_db(call), req->order_id, lock, state, sizeof state, &stored_req,
                                  &stored_len, &stored_quote, &stored_qlen, version);
    if (rc < 0)
        return call_db_fail(call, "read redemption");
    *found = rc == 0;
    if (!*found)
        return STATUS_OK;
    const uint8_t *now = req->quote ? s_request_bytes(call, req->quote, &len) : NULL;
    if (strcmp(state, "redeemed") != 0)
        code = call_fail(call, STATUS_FAILED_PRECONDITION, "order %s was released", req->order_id);
    else if (!now || len != stored_len || memcmp(now, stored_req, len) != 0)
        code = call_fail(call, STATUS_ALREADY_EXISTS, "order %s was redeemed with another cart",
                         req->order_id);
    else if (!(resp->quote = shop__promotions__v1__quote__unpack(&arena, stored_qlen, stored_quote)))
        code = call_fail(call, STATUS_INTERNAL, "stored quote of order %s is unreadable",
                         req->order_id);
    free(stored_req);
    free(stored_quote);
    return code;
}

/* True if a coupon the cart names is not among the quote's applied ones. */
static bool s_coupon_left_out(const Shop__Promotions__V1__QuoteRequest *q, const quote_t *qt)
{
    for (size_t i = 0; i < q->n_coupon_codes; i++) {
        bool applied = false;
        for (size_t k = 0; k < qt->q.n_applied && !applied; k++)
            applied = qt->q.applied[k].source == ENG_SOURCE_COUPON &&
                      strcmp(qt->q.applied[k].code, q->coupon_codes[i]) == 0;
        if (!applied)
            return true;
    }
    return false;
}

/* db_after_commit's callback: `arg` points to whether `code` is a coupon's. */
static void s_forget(void *arg, const char *code)
{
    usage_forget(*(const bool *)arg, code);
}

static status_t s_redeem(call_t *call, const Shop__Promotions__V1__RedeemRequest *req,
                         Shop__Promotions__V1__RedeemResponse *resp, quote_t *qt)
{
    db_t *db = call_db(call);
    size_t ol = strlen(req->order_id), req_len, quote_len;
    char m1[40], m2[40];
    bool found = false;
    int rc;

    if (ol < 1 || ol > 128)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "order_id: 1 to 128 characters");
    if (req->hold_seconds > PROMO_MAX_HOLD_S)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "hold_seconds: at most %d (7 days)",
                         PROMO_MAX_HOLD_S);
    /* reads first, each by itself; a redemption that records something
     * opens its transaction below */
    call_without_transaction(call);
    int64_t version = -1;
    status_t code = s_redeemed_before(call, req, true, resp, &version, &found);
    if (code != STATUS_OK || found)
        return code;
    code = s_price_quick(call, req->quote, version, qt);
    bool locked = code == STATUS_DEFER;
    if (locked) {
        if (call_commit(call) != 0)   /* one transaction from here */
            return call_db_fail(call, "begin");
        code = s_price(call, req->quote, true, version, qt);
    }
    if (code != STATUS_OK)
        return code;
    /* A concurrent Redeem of this same order (a retry) may have committed
     * after the read above, taking the last use of a coupon or a capped
     * rule this one then counted as used up: its redemption is the answer.
     * Read again when that can be (the coupons and rules were locked for
     * counting, or a coupon was left out), in a statement that sees what
     * committed meanwhile, without the row lock (a release of it waits on
     * this transaction's coupon and rule locks before it takes that row). */
    if (req->quote && (locked || s_coupon_left_out(req->quote, qt))) {
        code = s_redeemed_before(call, req, false, resp, NULL, &found);
        if (code != STATUS_OK || found)
            return code;
    }
    if (req->expected_total_saved && req->expected_total_saved->minor_units != qt->q.saved)
        return call_fail(call, STATUS_FAILED_PRECONDITION,
                         "the saving changed: expected %s, now %s",
                         money_format(req->expected_total_saved->minor_units, qt->currency, m1, sizeof m1),
                         money_format(qt->q.saved, qt->currency, m2, sizeof m2));
    resp->quote = s_message(qt);
    /* Nothing that counts against a limit or budget: nothing to record (a
     * retry prices again, and Release has nothing to give back). Most
     * orders use no coupon and no capped rule, so this keeps their
     * redemption a read. */
    bool counts = false;
    for (size_t i = 0; i < qt->q.n_applied && !counts; i++)
        counts = qt->q.applied[i].counted;
    if (!counts)
        return STATUS_OK;
    const uint8_t *req_bytes = s_request_bytes(call, req->quote, &req_len);
    const uint8_t *quote_bytes = call_pack(call, &resp->quote->base, &quote_len);
    /* the order's row first: a concurrent Redeem of the same order waits
     * here, then fails on the key and its retry reads this result */
    if (store_redemption_insert(db, req->order_id, req->quote->customer_id, req_bytes, req_len,
                                quote_bytes, quote_len, req->hold_seconds) != 0) {
        if (strcmp(db_sqlstate(db), "23505") == 0)
            return call_fail(call, STATUS_ABORTED, "order %s is being redeemed meanwhile; retry",
                             req->order_id);
        return call_db_fail(call, "insert redemption");
    }
    for (size_t i = 0; i < qt->q.n_applied; i++) {
        const eng_entry_t *e = &qt->q.applied[i];
        if (!e->counted)
            continue;
        if (e->source == ENG_SOURCE_COUPON) {
            int32_t per_customer = 0;
            for (size_t k = 0; k < qt->n_coupons; k++)
                if (strcmp(qt->coupons[k].code, e->code) == 0)
                    per_customer = qt->coupons[k].per_customer_limit;
            rc = store_coupon_use(db, req->order_id, e->code, req->quote->customer_id,
                                  per_customer, e->saved);
            if (rc < 0)
                return call_db_fail(call, "use coupon");
            if (rc == 1) {
                usage_forget(true, e->code);   /* a quote from memory may think otherwise */
                return call_fail(call, STATUS_FAILED_PRECONDITION, "coupon %s: limit reached", e->code);
            }
            Shop__Promotions__V1__CouponRedeemed ev = SHOP__PROMOTIONS__V1__COUPON_REDEEMED__INIT;
            ev.code = (char *)e->code;
            ev.order_id = req->order_id;
            ev.customer_id = req->quote->customer_id;
            ev.saved = call_money(call, e->saved, qt->currency);
            if (call_emit(call, &ev.base) != 0)
                return call_db_fail(call, "emit CouponRedeemed");
        } else {
            const char *exhausted = "";
            rc = store_rule_use(db, req->order_id, e->code, e->saved, &exhausted);
            if (rc < 0)
                return call_db_fail(call, "use rule");
            if (rc == 1) {
                usage_forget(false, e->code);
                return call_fail(call, STATUS_FAILED_PRECONDITION, "rule %s: limit or budget reached",
                                 e->code);
            }
            if (exhausted[0]) {
                Shop__Promotions__V1__BudgetExhausted ev = SHOP__PROMOTIONS__V1__BUDGET_EXHAUSTED__INIT;
                ev.rule_code = (char *)e->code;
                ev.what = (char *)exhausted;
                if (call_emit(call, &ev.base) != 0)
                    return call_db_fail(call, "emit BudgetExhausted");
            }
        }
    }
    /* the usage cache forgets what it had once this commits (with the
     * call, flushed or not as its caller asked) */
    static const bool coupon = true, rule = false;
    for (size_t i = 0; i < qt->q.n_applied; i++)
        if (qt->q.applied[i].counted &&
            db_after_commit(call_db(call), s_forget,
                            (void *)(qt->q.applied[i].source == ENG_SOURCE_COUPON ? &coupon : &rule),
                            qt->q.applied[i].code) != 0)
            return call_fail(call, STATUS_INTERNAL, "out of memory");
    return STATUS_OK;
}


PROMO_HANDLER(promo_redeem)
{
    quote_t qt = {0};
    status_t code = s_redeem(call, (const void *)request, (void *)response, &qt);

    cache_release(qt.snap);   /* the rules' terms were held while pricing */
    return code;
}

typedef struct {
    call_t *call;
    Shop__Promotions__V1__ReleaseResponse *resp;
    const char *order_id, *reason;
    int failed;
} release_t;

static void s_on_released(void *arg, const char *code)
{
    release_t *r = arg;
    char **grown = call_alloc(r->call, (r->resp->n_coupon_codes + 1) * sizeof *grown);

    if (r->resp->n_coupon_codes)
        memcpy(grown, r->resp->coupon_codes, r->resp->n_coupon_codes * sizeof *grown);
    grown[r->resp->n_coupon_codes++] = call_strdup(r->call, code);
    r->resp->coupon_codes = grown;
}

PROMO_HANDLER(promo_release)
{
    const Shop__Promotions__V1__ReleaseRequest *req = (const void *)request;
    Shop__Promotions__V1__ReleaseResponse *resp = (void *)response;
    release_t r = {call, resp, req->order_id, req->reason, 0};
    db_t *db = call_db(call);
    size_t ol = strlen(req->order_id);

    if (ol < 1 || ol > 128)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "order_id: 1 to 128 characters");
    if (strlen(req->reason) > 200)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "reason: at most 200 characters");
    int rc = store_redemption_release(db, req->order_id, false, s_on_released, &r);
    if (rc < 0)
        return call_db_fail(call, "release");
    if (rc == 1) {
        char state[16];
        uint8_t *a = NULL, *b = NULL;
        size_t al, bl;
        rc = store_redemption_get(db, req->order_id, true, state, sizeof state, &a, &al, &b, &bl, NULL);
        free(a);
        free(b);
        if (rc < 0)
            return call_db_fail(call, "read redemption");
        if (rc == 1)
            return call_fail(call, STATUS_NOT_FOUND, "no redemption for order %s", req->order_id);
        return STATUS_OK;   /* released before: nothing more to give back */
    }
    for (size_t i = 0; i < resp->n_coupon_codes; i++) {
        Shop__Promotions__V1__CouponReleased ev = SHOP__PROMOTIONS__V1__COUPON_RELEASED__INIT;
        ev.code = resp->coupon_codes[i];
        ev.order_id = req->order_id;
        ev.reason = (char *)(req->reason[0] ? req->reason : "released");
        if (call_emit(call, &ev.base) != 0)
            return call_db_fail(call, "emit CouponReleased");
    }
    /* committed here, so the usage cache can forget the coupons (a rule's
     * count given back shows at its next refresh) */
    if (call_commit(call) != 0)
        return call_db_fail(call, "commit");
    for (size_t i = 0; i < resp->n_coupon_codes; i++)
        usage_forget(true, resp->coupon_codes[i]);
    return STATUS_OK;
}
