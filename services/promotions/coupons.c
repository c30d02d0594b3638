/* coupons: coupon codes (one at a time, in bulk, or for one customer) and
 * member tiers. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "money.h"
#include "promotions.h"

#define ISSUED_PER_EVENT 1000   /* codes per CouponIssued (about 18 KB) */

typedef Shop__Promotions__V1__Coupon coupon_t;

bool promo_valid_coupon_code(const char *code)
{
    size_t n = strlen(code);

    if (n < 3 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((code[i] >= 'A' && code[i] <= 'Z') || (code[i] >= '0' && code[i] <= '9') ||
              code[i] == '-'))
            return false;
    return true;
}

/* Validates a coupon's terms (not its code) into a row. */
static status_t s_terms(call_t *call, const char *what, const coupon_t *m, store_coupon_t *c)
{
    char err[200], field[64];
    const char *cur = NULL;

    memset(c, 0, sizeof *c);
    if (!m)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s: required", what);
    bool pct = m->kind == SHOP__PROMOTIONS__V1__COUPON_KIND__COUPON_KIND_PERCENT_OFF;
    bool amt = m->kind == SHOP__PROMOTIONS__V1__COUPON_KIND__COUPON_KIND_AMOUNT_OFF;
    if (!pct && !amt)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s.kind: required", what);
    if (pct != (m->percent_off != 0) || m->percent_off > 100)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         pct ? "%s.percent_off: 1 to 100" : "%s.percent_off: only for COUPON_KIND_PERCENT_OFF",
                         what);
    if (amt != (m->amount_off != NULL))
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         amt ? "%s.amount_off: required" : "%s.amount_off: only for COUPON_KIND_AMOUNT_OFF",
                         what);
    if (m->amount_off) {
        snprintf(field, sizeof field, "%s.amount_off", what);
        if (money_check(field, m->amount_off->minor_units, m->amount_off->currency, err, sizeof err) != 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "%s", err);
        if (m->amount_off->minor_units == 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "%s: must be more than 0", field);
        cur = m->amount_off->currency;
    }
    if (m->min_spend) {
        snprintf(field, sizeof field, "%s.min_spend", what);
        if (money_check(field, m->min_spend->minor_units, m->min_spend->currency, err, sizeof err) != 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "%s", err);
        if (cur && strcmp(cur, m->min_spend->currency) != 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "%s: in %s, but amount_off is in %s",
                             field, m->min_spend->currency, cur);
        cur = m->min_spend->currency;
    }
    if (m->starts_at_ms < 0 || m->ends_at_ms < 0 ||
        (m->starts_at_ms && m->ends_at_ms && m->ends_at_ms <= m->starts_at_ms))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s.ends_at_ms: must come after starts_at_ms",
                         what);
    if (m->total_limit > 100000000 || m->per_customer_limit > 100000000)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s: limits of at most 100000000", what);
    if (strlen(m->customer_id) > 128 || strlen(m->campaign) > 64)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "%s: customer_id of at most 128 and campaign of at most 64 characters", what);
    c->kind = pct ? "percent_off" : "amount_off";
    c->currency = cur ? cur : "";
    c->customer_id = m->customer_id;
    c->campaign = m->campaign;
    c->percent_off = (int32_t)m->percent_off;
    c->amount_off = m->amount_off ? m->amount_off->minor_units : 0;
    c->min_spend = m->min_spend ? m->min_spend->minor_units : 0;
    c->starts_ms = m->starts_at_ms;
    c->ends_ms = m->ends_at_ms;
    c->total_limit = (int32_t)m->total_limit;
    c->per_customer_limit = (int32_t)m->per_customer_limit;
    return STATUS_OK;
}

static coupon_t *s_msg(call_t *call, const store_coupon_t *c)
{
    coupon_t *m = call_alloc(call, sizeof *m);

    shop__promotions__v1__coupon__init(m);
    m->code = call_strdup(call, c->code);
    m->kind = strcmp(c->kind, "percent_off") == 0 ? SHOP__PROMOTIONS__V1__COUPON_KIND__COUPON_KIND_PERCENT_OFF
                                                   : SHOP__PROMOTIONS__V1__COUPON_KIND__COUPON_KIND_AMOUNT_OFF;
    m->percent_off = (uint32_t)c->percent_off;
    if (c->amount_off)
        m->amount_off = call_money(call, c->amount_off, c->currency);
    if (c->min_spend)
        m->min_spend = call_money(call, c->min_spend, c->currency);
    m->starts_at_ms = c->starts_ms;
    m->ends_at_ms = c->ends_ms;
    m->total_limit = (uint32_t)c->total_limit;
    m->per_customer_limit = (uint32_t)c->per_customer_limit;
    m->customer_id = call_strdup(call, c->customer_id);
    m->campaign = call_strdup(call, c->campaign);
    m->used = (uint32_t)c->used;
    return m;
}

static void s_on_coupon(void *arg, const store_coupon_t *c)
{
    void **a = arg;
    *(coupon_t **)a[1] = s_msg(a[0], c);
}

/* The coupon as stored, or NULL (rc 1) if there is none. */
static coupon_t *s_read(call_t *call, const char *code, int *rc)
{
    coupon_t *out = NULL;
    void *a[2] = {call, &out};

    *rc = store_coupons(call_db(call), &code, 1, "", false, s_on_coupon, a);
    if (*rc == 0 && !out)
        *rc = 1;
    return out;
}

/* Codes inserted so far (in the call's arena). */
typedef struct {
    call_t *call;
    char **codes;
    size_t n;
} issued_t;

static void s_on_issued(void *arg, const char *code)
{
    issued_t *is = arg;

    if (is->codes)
        is->codes[is->n] = call_strdup(is->call, code);
    is->n++;
}

static int s_issued(call_t *call, char **codes, size_t n, const store_coupon_t *c)
{
    Shop__Promotions__V1__CouponIssued ev = SHOP__PROMOTIONS__V1__COUPON_ISSUED__INIT;

    ev.codes = codes;
    ev.n_codes = n;
    ev.campaign = (char *)c->campaign;
    ev.customer_id = (char *)c->customer_id;
    return call_emit(call, &ev.base);
}

PROMO_HANDLER(promo_create_coupon)
{
    const Shop__Promotions__V1__CreateCouponRequest *req = (const void *)request;
    Shop__Promotions__V1__CreateCouponResponse *resp = (void *)response;
    store_coupon_t c;
    status_t code = s_terms(call, "coupon", req->coupon, &c);
    int rc;

    if (code != STATUS_OK)
        return code;
    if (!promo_valid_coupon_code(req->coupon->code))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "coupon.code: 3 to 40 of A-Z 0-9 -");
    c.code = req->coupon->code;
    issued_t one = {call, NULL, 0};
    if (store_coupon_insert(call_db(call), &c, &c.code, 1, s_on_issued, &one) != 0)
        return call_db_fail(call, "insert coupon");
    if (one.n == 0)
        return call_fail(call, STATUS_ALREADY_EXISTS, "coupon %s already exists", c.code);
    resp->coupon = s_read(call, c.code, &rc);
    if (!resp->coupon)
        return call_db_fail(call, "read coupon");
    char *codes[1] = {resp->coupon->code};
    if (s_issued(call, codes, 1, &c) != 0)
        return call_db_fail(call, "emit CouponIssued");
    return STATUS_OK;
}

PROMO_HANDLER(promo_issue_coupons)
{
    static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";   /* no 0/O, 1/I */
    const Shop__Promotions__V1__IssueCouponsRequest *req = (const void *)request;
    Shop__Promotions__V1__IssueCouponsResponse *resp = (void *)response;
    const promo_settings_t *set = call_settings(call);
    size_t pl = strlen(req->prefix);
    store_coupon_t c;
    status_t code = s_terms(call, "template", req->template_, &c);

    if (code != STATUS_OK)
        return code;
    if (req->template_->code[0])
        return call_fail(call, STATUS_INVALID_ARGUMENT, "template.code: leave empty; codes are generated");
    if (req->count < 1 || req->count > (uint32_t)set->max_issue)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "count: 1 to %" PRId64, set->max_issue);
    if (pl < 1 || pl > 16)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "prefix: 1 to 16 of A-Z 0-9");
    for (size_t i = 0; i < pl; i++)
        if (!((req->prefix[i] >= 'A' && req->prefix[i] <= 'Z') || (req->prefix[i] >= '0' && req->prefix[i] <= '9')))
            return call_fail(call, STATUS_INVALID_ARGUMENT, "prefix: 1 to 16 of A-Z 0-9");
    if (req->count > 1 && c.customer_id[0])
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "template.customer_id: a customer's coupon is issued one at a time");
    if (req->count > 1 || !c.total_limit)
        c.total_limit = 1;   /* bulk codes are single-use */
    /* random codes, inserted together; a taken one (rare) is drawn again */
    issued_t out = {call, call_alloc(call, req->count * sizeof *out.codes), 0};
    const char **draw = call_alloc(call, req->count * sizeof *draw);
    for (int round = 0; round < 8 && out.n < req->count; round++) {
        size_t want = req->count - out.n;
        for (size_t k = 0; k < want; k++) {
            uint8_t rnd[10];
            char *drawn = call_alloc(call, pl + 2 + sizeof rnd);
            if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
                return call_fail(call, STATUS_INTERNAL, "no randomness");
            size_t o = (size_t)sprintf(drawn, "%s-", req->prefix);
            for (size_t i = 0; i < sizeof rnd; i++)
                drawn[o++] = alphabet[rnd[i] % 32];
            draw[k] = drawn;
        }
        if (store_coupon_insert(call_db(call), &c, draw, want, s_on_issued, &out) != 0)
            return call_db_fail(call, "insert coupons");
    }
    if (out.n < req->count)
        return call_fail(call, STATUS_ABORTED, "could not find free codes; retry");
    resp->codes = out.codes;
    resp->n_codes = out.n;
    /* in events of at most ISSUED_PER_EVENT codes: 100,000 in one would be
     * a 1.8 MB event that every relay and consumer holds whole (and a
     * replay of a few of them, a reply past the clients' limit) */
    for (size_t at = 0; at < out.n; at += ISSUED_PER_EVENT) {
        size_t n = out.n - at < ISSUED_PER_EVENT ? out.n - at : ISSUED_PER_EVENT;
        if (s_issued(call, resp->codes + at, n, &c) != 0)
            return call_db_fail(call, "emit CouponIssued");
    }
    return STATUS_OK;
}

PROMO_HANDLER(promo_get_coupon)
{
    const Shop__Promotions__V1__GetCouponRequest *req = (const void *)request;
    Shop__Promotions__V1__GetCouponResponse *resp = (void *)response;
    int rc;

    if (!promo_valid_coupon_code(req->code))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "code: 3 to 40 of A-Z 0-9 -");
    resp->coupon = s_read(call, req->code, &rc);
    if (rc < 0)
        return call_db_fail(call, "read coupon");
    if (rc == 1)
        return call_fail(call, STATUS_NOT_FOUND, "no coupon %s", req->code);
    return STATUS_OK;
}

static bool s_valid_tier(const char *name)
{
    size_t n = strlen(name);

    if (n < 1 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '_' || name[i] == '-'))
            return false;
    return true;
}

PROMO_HANDLER(promo_set_tier)
{
    const Shop__Promotions__V1__SetTierRequest *req = (const void *)request;
    Shop__Promotions__V1__SetTierResponse *resp = (void *)response;

    if (!req->tier || !s_valid_tier(req->tier->name))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "tier.name: 1 to 32 of a-z 0-9 _ -");
    if (req->tier->percent_off < 1 || req->tier->percent_off > 100)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "tier.percent_off: 1 to 100");
    if (store_tier_set(call_db(call), req->tier->name, (int32_t)req->tier->percent_off) != 0)
        return call_db_fail(call, "set tier");
    if (cache_written(call) != 0)
        return call_db_fail(call, "commit tier");
    resp->tier = call_alloc(call, sizeof *resp->tier);
    shop__promotions__v1__tier__init(resp->tier);
    resp->tier->name = call_strdup(call, req->tier->name);
    resp->tier->percent_off = req->tier->percent_off;
    return STATUS_OK;
}

typedef struct {
    call_t *call;
    Shop__Promotions__V1__ListTiersResponse *resp;
} tiers_t;

static void s_on_tier(void *arg, const char *name, int32_t percent)
{
    tiers_t *t = arg;
    Shop__Promotions__V1__Tier *x = call_alloc(t->call, sizeof *x);
    Shop__Promotions__V1__Tier **grown =
        call_alloc(t->call, (t->resp->n_tiers + 1) * sizeof *grown);

    shop__promotions__v1__tier__init(x);
    x->name = call_strdup(t->call, name);
    x->percent_off = (uint32_t)percent;
    if (t->resp->n_tiers)
        memcpy(grown, t->resp->tiers, t->resp->n_tiers * sizeof *grown);
    grown[t->resp->n_tiers++] = x;
    t->resp->tiers = grown;
}

PROMO_HANDLER(promo_list_tiers)
{
    tiers_t t = {call, (void *)response};

    (void)request;
    if (store_tier_list(call_db(call), s_on_tier, &t) != 0)
        return call_db_fail(call, "list tiers");
    return STATUS_OK;
}
