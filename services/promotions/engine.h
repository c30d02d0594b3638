/* engine: prices a cart against rules, a member tier and coupons, with no
 * I/O, so the same inputs always give the same quote. The caller loads
 * everything (store.c) and turns the result into messages (quote.c).
 *
 * Order: rules by priority (higher first), ties by code; then the tier;
 * then coupons by code. Each discounts the lines' current prices:
 * - an exclusive rule applies only to lines nothing has touched yet, and
 *   afterwards nothing else applies to those lines;
 * - no discount takes a line below its cost unless the rule allows a loss:
 *   it is cut back to the cost, and the cut is reported as a rejection;
 * - money is split over lines in proportion to their current prices, the
 *   remainder going to the earliest lines (lines are sorted by SKU). */
#ifndef PROMOTIONS_ENGINE_H
#define PROMOTIONS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *sku, *category;
    int32_t qty;
    int64_t unit_price, unit_cost;
    /* filled by eng_quote */
    int64_t discount;
    int held_by;            /* rule holding it exclusively, or -1 */
    int touched_by;         /* first rule that discounted it, or -1 */
} eng_line_t;

typedef enum { ENG_PERCENT, ENG_AMOUNT, ENG_BUNDLE, ENG_BXGY } eng_kind_t;
typedef enum { ENG_SKUS, ENG_CATEGORIES, ENG_ORDER } eng_scope_t;

typedef struct {
    const char *sku;
    int32_t qty;
} eng_item_t;

typedef struct {
    const char *code, *name;
    const char *currency;           /* "" when the rule holds no money */
    eng_kind_t kind;
    eng_scope_t scope;
    const char *const *skus;
    size_t n_skus;
    const char *const *categories;
    size_t n_categories;
    int32_t percent;
    int64_t amount;
    const eng_item_t *bundle;
    size_t n_bundle;
    int64_t bundle_price;
    int32_t buy, get;
    int64_t min_spend;
    int64_t starts_ms, ends_ms;     /* 0 = open */
    int32_t priority;
    bool exclusive, allow_loss;
    int64_t budget, spent;          /* budget 0 = none */
    int32_t usage_cap, used;        /* cap 0 = none */
    const char *reason;             /* eng_rule_reason's, kept with the rule; NULL = made per quote */
} eng_rule_t;

typedef struct {
    const char *code, *currency, *customer_id;
    bool percent;
    int32_t percent_off;
    int64_t amount_off, min_spend;
    int64_t starts_ms, ends_ms;
    int32_t total_limit, per_customer_limit, used, used_by_customer;
} eng_coupon_t;

typedef struct {
    const char *name;
    int32_t percent;
} eng_tier_t;

enum { ENG_SOURCE_RULE = 1, ENG_SOURCE_TIER = 2, ENG_SOURCE_COUPON = 3 };

typedef struct {
    int source;
    const char *code;
    const char *reason;     /* in the quote's memory */
    int64_t saved;
    bool counted;           /* redemption counts it: a coupon, or a capped/budgeted rule */
} eng_entry_t;

typedef struct {
    eng_entry_t *applied, *rejected;    /* in the quote's memory */
    size_t n_applied, n_rejected;
    int64_t subtotal, saved;
} eng_quote_t;

/* Where the engine puts what it makes (a call's arena, the rule cache's):
 * alloc returns memory aligned for any type and never NULL. */
typedef struct {
    void *(*alloc)(void *ctx, size_t size);
    void *ctx;
} eng_mem_t;

/* The first n bytes of s as a string in m. */
char *eng_strndup(const eng_mem_t *m, const char *s, size_t n);

/* The reason an applied rule gives when it does not depend on the cart (a
 * percent or amount off the order or categories), in m; else NULL. A
 * caller that compiles rules once for many quotes keeps it in
 * eng_rule_t.reason, sparing each quote the formatting. */
const char *eng_rule_reason(const eng_mem_t *m, const eng_rule_t *r);

/* The order rules apply in: higher priority first, then by code (a qsort
 * comparator over eng_rule_t). */
int eng_rule_order(const void *a, const void *b);

/* Prices `lines` (sorted by SKU, one currency) in place and fills `out`,
 * its entries and their reasons in `mem`, or a rule's own reason, which
 * must then outlive `out` (each rule, the tier and each coupon give at
 * most one applied and one rejected entry). Rules (unless already in
 * eng_rule_order) and coupons are sorted here (the arrays are reordered). */
void eng_quote(const eng_mem_t *mem, eng_line_t *lines, size_t n, const char *currency,
               eng_rule_t *rules, size_t n_rules, const eng_tier_t *tier, eng_coupon_t *coupons,
               size_t n_coupons, const char *customer_id, int64_t at_ms, eng_quote_t *out);

#endif
