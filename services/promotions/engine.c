/* engine: the quote computation (see engine.h for the rules of the game). */
#include "engine.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "money.h"
#include "util.h"

#define MAX_LINES 1000

typedef struct {
    const eng_mem_t *mem;
    eng_line_t *lines;
    size_t n;
    const char *currency;
    int64_t at_ms;
    eng_quote_t *out;
    const eng_rule_t *rules;
} ctx_t;

static int64_t s_current(const eng_line_t *l)
{
    return l->unit_price * l->qty - l->discount;
}

static eng_entry_t *s_entry(ctx_t *c, bool applied, int source, const char *code)
{
    eng_entry_t *e = applied ? &c->out->applied[c->out->n_applied++]
                             : &c->out->rejected[c->out->n_rejected++];

    memset(e, 0, sizeof *e);
    e->source = source;
    e->code = code;
    return e;
}

char *eng_strndup(const eng_mem_t *m, const char *s, size_t n)
{
    char *p = m->alloc(m->ctx, n + 1);

    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void s_reject(ctx_t *c, int source, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_reject(ctx_t *c, int source, const char *code, const char *fmt, ...)
{
    eng_entry_t *e = s_entry(c, false, source, code);
    char why[240];
    va_list ap;

    va_start(ap, fmt);
    size_t n = util_vfmt(why, sizeof why, fmt, ap);
    va_end(ap);
    e->reason = eng_strndup(c->mem, why, n < sizeof why ? n : sizeof why - 1);
}

static const char *s_money(int64_t minor, const char *currency, char *buf, size_t len)
{
    return money_format(minor, currency, buf, len);
}

static const char *s_time(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm);
    return buf;
}

/* 0 if `at` is in [starts, ends); else writes why into reason. */
static int s_window(int64_t starts, int64_t ends, int64_t at, char *why, size_t len)
{
    char t[40];

    if (starts && at < starts) {
        util_fmt(why, len, "not valid yet: starts %s", s_time(starts, t, sizeof t));
        return -1;
    }
    if (ends && at >= ends) {
        util_fmt(why, len, "expired %s", s_time(ends, t, sizeof t));
        return -1;
    }
    return 0;
}

static bool s_in(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, set[i]) == 0)
            return true;
    return false;
}

/* Splits `amount` over the lines with weight w[i] > 0 in proportion,
 * remainder to the earliest; d[i] receives each share. */
static void s_split(int64_t amount, const int64_t *w, size_t n, int64_t *d)
{
    __int128 total = 0;
    int64_t given = 0;

    for (size_t i = 0; i < n; i++)
        total += w[i];
    for (size_t i = 0; i < n; i++) {
        d[i] = total > 0 ? (int64_t)((__int128)amount * w[i] / total) : 0;
        given += d[i];
    }
    for (size_t i = 0; i < n && given < amount; i++)
        if (w[i] > 0 && d[i] < w[i]) {
            d[i]++;
            given++;
        }
}

/* The targets of a rule that names them without looking at the cart: "the
 * order", or its categories; false for one that lists the lines it gave to. */
static bool s_fixed_targets(const eng_rule_t *r, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    if (r->kind == ENG_BUNDLE || r->scope == ENG_SKUS)
        return false;
    if (r->scope == ENG_ORDER) {
        util_fmt(buf, len, "the order");
        return true;
    }
    for (size_t i = 0; i < r->n_categories && used < len; i++)
        used += util_fmt(buf + used, len - used, "%s%s", i ? ", " : "", r->categories[i]);
    return true;
}

/* "TEA-A, TEA-B" of the lines the discounts d give to, or the categories,
 * or "the order". */
static void s_targets(const ctx_t *c, const eng_rule_t *r, const int64_t *d, char *buf, size_t len)
{
    size_t used = 0;

    if (s_fixed_targets(r, buf, len))
        return;
    for (size_t i = 0, k = 0; i < c->n && used < len; i++)
        if (d[i] > 0)
            used += util_fmt(buf + used, len - used, "%s%s", k++ ? ", " : "", c->lines[i].sku);
}

/* What rule r gives, for the reason: "10% off", "together for ¥99.00 (2
 * sets)"; `sets` and `free_units` as the discount found them. */
static void s_detail(const eng_rule_t *r, const char *currency, int64_t sets, int64_t free_units,
                     char *buf, size_t len)
{
    char m1[40], m2[40] = "";

    switch (r->kind) {
    case ENG_PERCENT:
        util_fmt(buf, len, "%d%% off", r->percent);
        return;
    case ENG_AMOUNT:
        util_fmt(buf, len, r->scope == ENG_ORDER ? "%s off" : "%s off each",
                 s_money(r->amount, currency, m1, sizeof m1));
        return;
    case ENG_BUNDLE:
        if (sets > 1)
            util_fmt(m2, sizeof m2, " (%lld sets)", (long long)sets);
        util_fmt(buf, len, "together for %s%s", s_money(r->bundle_price, currency, m1, sizeof m1), m2);
        return;
    case ENG_BXGY:
        util_fmt(buf, len, "buy %d get %d free (%lld free)", r->buy, r->get, (long long)free_units);
        return;
    }
    buf[0] = '\0';
}

/* "Spring sale: 10% off on the order", into buf (240 bytes), cut with
 * "..." when the targets make it too long. */
static void s_reason(const eng_rule_t *r, const char *detail, const char *targets, char *buf,
                     size_t len)
{
    if (util_fmt(buf, len, "%s: %s %s %s", r->name, detail, r->kind == ENG_BUNDLE ? "for" : "on",
                 targets) >= len)
        memcpy(buf + len - 4, "...", 4);
}

const char *eng_rule_reason(const eng_mem_t *m, const eng_rule_t *r)
{
    char detail[120], targets[120], reason[240];

    if (r->kind == ENG_BXGY || !s_fixed_targets(r, targets, sizeof targets))
        return NULL;
    s_detail(r, r->currency, 0, 0, detail, sizeof detail);
    s_reason(r, detail, targets, reason, sizeof reason);
    return eng_strndup(m, reason, strlen(reason));
}

/* Cuts each d[i] so no line goes below its cost (unless loss is allowed);
 * returns the index of the first line cut, or -1. */
static int s_margin(ctx_t *c, int64_t *d, bool allow_loss)
{
    int first = -1;

    for (size_t i = 0; i < c->n; i++) {
        const eng_line_t *l = &c->lines[i];
        int64_t floor = allow_loss ? 0 : l->unit_cost * l->qty;
        int64_t room = s_current(l) - floor;
        if (room < 0)
            room = 0;
        if (d[i] > room) {
            d[i] = room;
            if (first < 0)
                first = (int)i;
        }
    }
    return first;
}

/* Adds the discounts d to the lines and records the outcome; `reason` is
 * kept as it is (in the quote's memory, or the rules'). */
static void s_give(ctx_t *c, int source, const char *code, int holder, bool exclusive,
                   bool counted, const int64_t *d, int cut, const char *reason)
{
    int64_t total = 0;

    for (size_t i = 0; i < c->n; i++)
        total += d[i];
    if (total == 0) {
        if (cut >= 0)
            s_reject(c, source, code, "would sell %s below cost", c->lines[cut].sku);
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (d[i] == 0)
            continue;
        c->lines[i].discount += d[i];
        if (holder >= 0 && c->lines[i].touched_by < 0)
            c->lines[i].touched_by = holder;
        if (exclusive)
            c->lines[i].held_by = holder;
    }
    eng_entry_t *e = s_entry(c, true, source, code);
    e->reason = reason;
    e->saved = total;
    e->counted = counted;
    if (cut >= 0)
        s_reject(c, source, code, "limited: would sell %s below cost", c->lines[cut].sku);
}

/* The discount of rule r on the available lines, into d, and for its
 * reason the bundle's *sets or the *free_units. Returns 0, or -1 when the
 * rule does not fit the cart after all (then `why` may say why). */
static int s_rule_discount(ctx_t *c, const eng_rule_t *r, const bool *avail, int64_t *d,
                           char *why, size_t len, int64_t *sets_out, int64_t *free_out)
{
    switch (r->kind) {
    case ENG_PERCENT:
        for (size_t i = 0; i < c->n; i++)
            if (avail[i])
                d[i] = (s_current(&c->lines[i]) * r->percent + 50) / 100;
        return 0;
    case ENG_AMOUNT:
        if (r->scope == ENG_ORDER) {
            int64_t w[MAX_LINES], sum = 0;
            for (size_t i = 0; i < c->n; i++) {
                w[i] = avail[i] ? s_current(&c->lines[i]) : 0;
                sum += w[i];
            }
            s_split(r->amount < sum ? r->amount : sum, w, c->n, d);
        } else {
            for (size_t i = 0; i < c->n; i++)
                if (avail[i]) {
                    int64_t want, cur = s_current(&c->lines[i]);
                    /* (an amount stored before amounts were bounded may be huge) */
                    if (__builtin_mul_overflow(r->amount, (int64_t)c->lines[i].qty, &want))
                        want = cur;
                    d[i] = want < cur ? want : cur;
                }
        }
        return 0;
    case ENG_BUNDLE: {
        int64_t sets = -1, set_value = 0, w[MAX_LINES];
        memset(w, 0, c->n * sizeof *w);
        for (size_t k = 0; k < r->n_bundle; k++) {
            int64_t have = 0;
            for (size_t i = 0; i < c->n; i++)
                if (avail[i] && strcmp(c->lines[i].sku, r->bundle[k].sku) == 0) {
                    have = c->lines[i].qty / r->bundle[k].qty;
                    w[i] = c->lines[i].unit_price * r->bundle[k].qty;
                    set_value += w[i];
                }
            if (sets < 0 || have < sets)
                sets = have;
        }
        if (sets <= 0 || set_value <= r->bundle_price)
            return -1;
        s_split(sets * (set_value - r->bundle_price), w, c->n, d);
        for (size_t i = 0; i < c->n; i++) {
            int64_t cur = s_current(&c->lines[i]);
            if (d[i] > cur)
                d[i] = cur;
        }
        *sets_out = sets;
        return 0;
    }
    case ENG_BXGY: {
        int64_t units = 0;
        for (size_t i = 0; i < c->n; i++)
            if (avail[i])
                units += c->lines[i].qty;
        int64_t free_units = units / (r->buy + r->get) * r->get;
        if (free_units == 0) {
            util_fmt(why, len, "buy %d get %d free: %lld in the cart", r->buy, r->get,
                     (long long)units);
            return -1;
        }
        *free_out = free_units;
        /* the cheapest units go free; lines are in SKU order, so ties are too */
        int64_t f[MAX_LINES];
        memset(f, 0, c->n * sizeof *f);
        while (free_units > 0) {
            int best = -1;
            for (size_t i = 0; i < c->n; i++)
                if (avail[i] && f[i] < c->lines[i].qty &&
                    (best < 0 || c->lines[i].unit_price < c->lines[best].unit_price))
                    best = (int)i;
            if (best < 0)
                break;
            int64_t take = c->lines[best].qty - f[best];
            if (take > free_units)
                take = free_units;
            f[best] += take;
            free_units -= take;
        }
        for (size_t i = 0; i < c->n; i++)
            d[i] = f[i] * c->lines[i].unit_price;
        for (size_t i = 0; i < c->n; i++) {
            int64_t cur = s_current(&c->lines[i]);
            if (d[i] > cur)
                d[i] = cur;
        }
        return 0;
    }
    }
    return -1;
}

static bool s_eligible(const eng_rule_t *r, const eng_line_t *l)
{
    if (r->kind == ENG_BUNDLE) {
        for (size_t k = 0; k < r->n_bundle; k++)
            if (strcmp(r->bundle[k].sku, l->sku) == 0)
                return true;
        return false;
    }
    switch (r->scope) {
    case ENG_SKUS: return s_in(l->sku, r->skus, r->n_skus);
    case ENG_CATEGORIES: return s_in(l->category, r->categories, r->n_categories);
    case ENG_ORDER: return true;
    }
    return false;
}

static void s_rule(ctx_t *c, int k)
{
    const eng_rule_t *r = &c->rules[k];
    bool elig[MAX_LINES], avail[MAX_LINES];
    int64_t d[MAX_LINES];
    char why[200], detail[120], targets[120], m1[40], m2[40], reason[240];
    int64_t sets = 0, free_units = 0;
    int any = 0, n_avail = 0, blocker = -1;

    if (r->currency[0] && strcmp(r->currency, c->currency) != 0)
        return;   /* priced in another currency: not for this cart */
    memset(d, 0, c->n * sizeof *d);
    for (size_t i = 0; i < c->n; i++) {
        elig[i] = s_eligible(r, &c->lines[i]);
        any += elig[i];
    }
    if (!any)
        return;
    if (s_window(r->starts_ms, r->ends_ms, c->at_ms, why, sizeof why) != 0) {
        s_reject(c, ENG_SOURCE_RULE, r->code, "%s", why);
        return;
    }
    if (r->min_spend && c->out->subtotal < r->min_spend) {
        s_reject(c, ENG_SOURCE_RULE, r->code, "below minimum spend of %s (add %s)",
                 s_money(r->min_spend, c->currency, m1, sizeof m1),
                 s_money(r->min_spend - c->out->subtotal, c->currency, m2, sizeof m2));
        return;
    }
    if (r->usage_cap && r->used >= r->usage_cap) {
        s_reject(c, ENG_SOURCE_RULE, r->code, "limit reached: used by %d orders", r->used);
        return;
    }
    if (r->budget && r->spent >= r->budget) {
        s_reject(c, ENG_SOURCE_RULE, r->code, "budget of %s used up",
                 s_money(r->budget, c->currency, m1, sizeof m1));
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        avail[i] = elig[i] && c->lines[i].held_by < 0;
        n_avail += avail[i];
        if (elig[i] && c->lines[i].held_by >= 0 && blocker < 0)
            blocker = c->lines[i].held_by;
        if (r->exclusive && elig[i] && c->lines[i].touched_by >= 0 && blocker < 0)
            blocker = c->lines[i].touched_by;
    }
    if (n_avail == 0 || (r->exclusive && blocker >= 0)) {
        s_reject(c, ENG_SOURCE_RULE, r->code, "not stackable with %s", c->rules[blocker].code);
        return;
    }
    why[0] = '\0';
    if (s_rule_discount(c, r, avail, d, why, sizeof why, &sets, &free_units) != 0) {
        if (why[0])
            s_reject(c, ENG_SOURCE_RULE, r->code, "%s", why);
        return;
    }
    if (r->budget) {
        int64_t total = 0;
        for (size_t i = 0; i < c->n; i++)
            total += d[i];
        if (total > r->budget - r->spent) {
            s_reject(c, ENG_SOURCE_RULE, r->code, "budget nearly used up: %s left",
                     s_money(r->budget - r->spent, c->currency, m1, sizeof m1));
            return;
        }
    }
    int cut = s_margin(c, d, r->allow_loss);
    const char *said = r->reason;   /* the same for every cart, made once */
    if (!said) {
        s_targets(c, r, d, targets, sizeof targets);
        s_detail(r, c->currency, sets, free_units, detail, sizeof detail);
        s_reason(r, detail, targets, reason, sizeof reason);
        said = eng_strndup(c->mem, reason, strlen(reason));
    }
    s_give(c, ENG_SOURCE_RULE, r->code, k, r->exclusive, r->usage_cap > 0 || r->budget > 0, d,
           cut, said);
}

/* Lines a tier or coupon may discount: those no exclusive rule holds. */
static int s_open_lines(ctx_t *c, bool *avail, int *blocker)
{
    int n = 0;

    *blocker = -1;
    for (size_t i = 0; i < c->n; i++) {
        avail[i] = c->lines[i].held_by < 0;
        n += avail[i];
        if (!avail[i] && *blocker < 0)
            *blocker = c->lines[i].held_by;
    }
    return n;
}

static void s_tier(ctx_t *c, const eng_tier_t *t)
{
    bool avail[MAX_LINES];
    int64_t d[MAX_LINES];
    char reason[240];
    int blocker;

    memset(d, 0, c->n * sizeof *d);

    if (s_open_lines(c, avail, &blocker) == 0) {
        s_reject(c, ENG_SOURCE_TIER, t->name, "not stackable with %s", c->rules[blocker].code);
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        if (avail[i])
            d[i] = (s_current(&c->lines[i]) * t->percent + 50) / 100;
    int cut = s_margin(c, d, false);
    size_t len = util_fmt(reason, sizeof reason, "%s member: %d%% off", t->name, t->percent);
    s_give(c, ENG_SOURCE_TIER, t->name, -1, false, false, d, cut,
           eng_strndup(c->mem, reason, len < sizeof reason ? len : sizeof reason - 1));
}

static void s_coupon(ctx_t *c, const eng_coupon_t *cp, const char *customer_id)
{
    bool avail[MAX_LINES];
    int64_t d[MAX_LINES], w[MAX_LINES], open = 0;
    char why[200], reason[240], m1[40], m2[40];
    int blocker;

    memset(d, 0, c->n * sizeof *d);

    if (cp->customer_id[0] && strcmp(cp->customer_id, customer_id) != 0) {
        s_reject(c, ENG_SOURCE_COUPON, cp->code, "issued to another customer");
        return;
    }
    if (s_window(cp->starts_ms, cp->ends_ms, c->at_ms, why, sizeof why) != 0) {
        s_reject(c, ENG_SOURCE_COUPON, cp->code, "%s", why);
        return;
    }
    if (cp->currency[0] && strcmp(cp->currency, c->currency) != 0) {
        s_reject(c, ENG_SOURCE_COUPON, cp->code, "in %s, the cart is in %s", cp->currency,
                 c->currency);
        return;
    }
    int64_t now_total = 0;
    for (size_t i = 0; i < c->n; i++)
        now_total += s_current(&c->lines[i]);
    if (cp->min_spend && now_total < cp->min_spend) {
        s_reject(c, ENG_SOURCE_COUPON, cp->code, "below minimum spend of %s (add %s)",
                 s_money(cp->min_spend, c->currency, m1, sizeof m1),
                 s_money(cp->min_spend - now_total, c->currency, m2, sizeof m2));
        return;
    }
    if (cp->total_limit && cp->used >= cp->total_limit) {
        s_reject(c, ENG_SOURCE_COUPON, cp->code, "limit reached: used %d of %d times", cp->used,
                 cp->total_limit);
        return;
    }
    if (cp->per_customer_limit && !customer_id[0]) {
        s_reject(c, ENG_SOURCE_COUPON, cp->code, "needs a customer: limited per customer");
        return;
    }
    if (cp->per_customer_limit && cp->used_by_customer >= cp->per_customer_limit) {
        s_reject(c, ENG_SOURCE_COUPON, cp->code, "limit reached for this customer: %d of %d",
                 cp->used_by_customer, cp->per_customer_limit);
        return;
    }
    if (s_open_lines(c, avail, &blocker) == 0) {
        s_reject(c, ENG_SOURCE_COUPON, cp->code, "not stackable with %s", c->rules[blocker].code);
        return;
    }
    if (cp->percent) {
        for (size_t i = 0; i < c->n; i++)
            if (avail[i])
                d[i] = (s_current(&c->lines[i]) * cp->percent_off + 50) / 100;
        util_fmt(reason, sizeof reason, "coupon %s: %d%% off", cp->code, cp->percent_off);
    } else {
        for (size_t i = 0; i < c->n; i++) {
            w[i] = avail[i] ? s_current(&c->lines[i]) : 0;
            open += w[i];
        }
        s_split(cp->amount_off < open ? cp->amount_off : open, w, c->n, d);
        util_fmt(reason, sizeof reason, "coupon %s: %s off", cp->code,
                 s_money(cp->amount_off, c->currency, m1, sizeof m1));
    }
    int cut = s_margin(c, d, false);
    s_give(c, ENG_SOURCE_COUPON, cp->code, -1, false, true, d, cut,
           eng_strndup(c->mem, reason, strlen(reason)));
}

int eng_rule_order(const void *a, const void *b)
{
    const eng_rule_t *x = a, *y = b;

    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return strcmp(x->code, y->code);
}

static int s_coupon_cmp(const void *a, const void *b)
{
    return strcmp(((const eng_coupon_t *)a)->code, ((const eng_coupon_t *)b)->code);
}

void eng_quote(const eng_mem_t *mem, eng_line_t *lines, size_t n, const char *currency,
               eng_rule_t *rules, size_t n_rules, const eng_tier_t *tier, eng_coupon_t *coupons,
               size_t n_coupons, const char *customer_id, int64_t at_ms, eng_quote_t *out)
{
    ctx_t c = {mem, lines, n < MAX_LINES ? n : MAX_LINES, currency, at_ms, out, rules};
    size_t room = n_rules + n_coupons + 1;   /* one of each per rule, coupon and the tier */

    out->applied = mem->alloc(mem->ctx, room * sizeof *out->applied);
    out->rejected = mem->alloc(mem->ctx, room * sizeof *out->rejected);
    out->n_applied = out->n_rejected = 0;
    out->subtotal = out->saved = 0;
    for (size_t i = 0; i < c.n; i++) {
        lines[i].discount = 0;
        lines[i].held_by = lines[i].touched_by = -1;
        out->subtotal += lines[i].unit_price * lines[i].qty;
    }
    size_t sorted = 1;
    while (sorted < n_rules && eng_rule_order(&rules[sorted - 1], &rules[sorted]) <= 0)
        sorted++;
    if (sorted < n_rules)
        qsort(rules, n_rules, sizeof *rules, eng_rule_order);
    if (n_coupons)
        qsort(coupons, n_coupons, sizeof *coupons, s_coupon_cmp);
    for (size_t k = 0; k < n_rules; k++)
        s_rule(&c, (int)k);
    if (tier)
        s_tier(&c, tier);
    for (size_t k = 0; k < n_coupons; k++)
        s_coupon(&c, &coupons[k], customer_id ? customer_id : "");
    for (size_t i = 0; i < c.n; i++)
        out->saved += lines[i].discount;
}
