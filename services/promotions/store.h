/* store: all of the promotions service's SQL. Every function runs in the
 * caller's transaction on `db` and returns 0, 1 where a "not found" or
 * "refused" outcome is stated, or -1 on a database failure (db_sqlstate and
 * db_error say why). Rows handed to callbacks are valid only during the
 * callback. Times are epoch milliseconds, 0 meaning "open". */
#ifndef PROMOTIONS_STORE_H
#define PROMOTIONS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "db.h"

/* --- the catalog's SKUs ---------------------------------------------------- */

typedef struct {
    const char *sku, *title, *category, *currency;
    int64_t product_id, list_price, cost_price;
    bool active;
} store_sku_t;
typedef void (*store_sku_fn)(void *arg, const store_sku_t *s);

int store_sku_upsert(db_t *db, const store_sku_t *s) __attribute__((warn_unused_result));

/* Every SKU the catalog announced, by code (for the quote's terms). */
int store_sku_all(db_t *db, store_sku_fn fn, void *arg) __attribute__((warn_unused_result));

/* --- rules ------------------------------------------------------------------- */

typedef struct {
    const char *code, *name, *kind, *scope, *status, *currency;
    const char *skus_json, *categories_json, *bundle_json;   /* JSON arrays */
    int32_t percent_off, buy, get, priority, usage_cap, used;
    int64_t amount_off, bundle_price, min_spend, budget, spent;
    int64_t starts_ms, ends_ms, updated_ms;
    bool exclusive, allow_loss;
} store_rule_t;
typedef void (*store_rule_fn)(void *arg, const store_rule_t *r);

/* Inserts (update false: 1 if the code is taken) or replaces the rule's
 * terms keeping its usage (update true: 1 if there is no such rule). The
 * JSON fields are arrays; `targets` is the JSON array of what a cart must
 * hold ("sku:X", "cat:Y"). */
int store_rule_write(db_t *db, const store_rule_t *r, const char *targets, bool update)
    __attribute__((warn_unused_result));

/* 1 if there is no such rule. */
int store_rule_status(db_t *db, const char *code, const char *status)
    __attribute__((warn_unused_result));

int store_rule_get(db_t *db, const char *code, store_rule_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Every rule (at_ms 0) or those valid at at_ms, by priority then code. */
int store_rule_list(db_t *db, int64_t at_ms, store_rule_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Locks the rules among the n `codes` FOR UPDATE, in code order. */
int store_rule_lock(db_t *db, const char *const *codes, size_t n) __attribute__((warn_unused_result));

/* An active exclusive rule other than `code` with the same priority whose
 * targets (or order scope) and window overlap; its code into `other`.
 * 1 if there is none. */
int store_rule_tie(db_t *db, const store_rule_t *r, const char *targets, char *other,
                   size_t len) __attribute__((warn_unused_result));

/* The version of the quote's terms: rules (but their usage), tiers and SKUs. */
int store_rule_version(db_t *db, int64_t *version) __attribute__((warn_unused_result));

/* Every active rule, for the cache. */
int store_rule_active(db_t *db, store_rule_fn fn, void *arg) __attribute__((warn_unused_result));

/* Usage and spending of the rules among the n `codes`. */
typedef void (*store_usage_fn)(void *arg, const char *code, int32_t used, int64_t spent);
int store_rule_usage(db_t *db, const char *const *codes, size_t n, store_usage_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* --- coupons and tiers ----------------------------------------------------- */

typedef struct {
    const char *code, *kind, *currency, *customer_id, *campaign;
    int32_t percent_off, total_limit, per_customer_limit, used, used_by_customer;
    int64_t amount_off, min_spend, starts_ms, ends_ms;
} store_coupon_t;
typedef void (*store_coupon_fn)(void *arg, const store_coupon_t *c);

/* Coupons with the terms of `c` (its code ignored) under each of the n
 * `codes`, in one statement; fn sees each code inserted (taken ones are
 * skipped). */
typedef void (*store_code_fn)(void *arg, const char *code);
int store_coupon_insert(db_t *db, const store_coupon_t *c, const char *const *codes, size_t n,
                        store_code_fn fn, void *arg) __attribute__((warn_unused_result));

/* Coupons among the n `codes`, with how often `customer_id` used each;
 * with lock, FOR UPDATE in code order. */
int store_coupons(db_t *db, const char *const *codes, size_t n, const char *customer_id, bool lock,
                  store_coupon_fn fn, void *arg) __attribute__((warn_unused_result));

/* How often each coupon among the n `codes` was used (fn's spent is 0). */
int store_coupon_used(db_t *db, const char *const *codes, size_t n, store_usage_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Inserts or replaces a tier. */
int store_tier_set(db_t *db, const char *name, int32_t percent) __attribute__((warn_unused_result));
typedef void (*store_tier_fn)(void *arg, const char *name, int32_t percent);
int store_tier_list(db_t *db, store_tier_fn fn, void *arg) __attribute__((warn_unused_result));

/* --- redemptions ----------------------------------------------------------------- */

/* The order's redemption: state ("redeemed"/"released"), request and quote
 * bytes (malloc'd, caller frees); 1 if none. `lock` locks the row. *version
 * (if not NULL) gets the terms version, read in the same statement. */
int store_redemption_get(db_t *db, const char *order_id, bool lock, char *state, size_t statelen,
                         uint8_t **request, size_t *request_len, uint8_t **quote,
                         size_t *quote_len, int64_t *version) __attribute__((warn_unused_result));

int store_redemption_insert(db_t *db, const char *order_id, const char *customer_id,
                            const uint8_t *request, size_t request_len, const uint8_t *quote,
                            size_t quote_len, uint32_t hold_seconds) __attribute__((warn_unused_result));

/* Counts one use of a coupon against its limits: 1 if the total limit or
 * the customer's limit is reached. Call after store_coupons(lock true),
 * so the customer's count is read after the lock. */
int store_coupon_use(db_t *db, const char *order_id, const char *code, const char *customer_id,
                     int32_t per_customer_limit, int64_t saved) __attribute__((warn_unused_result));

/* Counts one use of a capped or budgeted rule with `saved` of its budget:
 * 1 if the cap or budget would be passed. *exhausted says whether this use
 * reached the cap or the budget ("usage cap"/"budget", else ""). */
int store_rule_use(db_t *db, const char *order_id, const char *code, int64_t saved,
                   const char **exhausted) __attribute__((warn_unused_result));

/* Marks the redemption released and gives every use back; the coupon codes
 * given back through fn. 1 if it was not redeemed (or, `expired_only`, if
 * its hold has not ended: kept, or paid for meanwhile). */
int store_redemption_release(db_t *db, const char *order_id, bool expired_only, store_code_fn fn,
                             void *arg)
    __attribute__((warn_unused_result));

/* Records an order that redeemed nothing as released, so a Redeem of it
 * that commits later (one its caller gave up on) fails on the key instead
 * of keeping its uses; 1 if the order has a redemption after all. */
int store_redemption_tombstone(db_t *db, const char *order_id) __attribute__((warn_unused_result));

/* Deletes up to 500 of those records a day old (no late call can come). */
int store_tombstone_purge(db_t *db) __attribute__((warn_unused_result));

/* Order ids of up to `limit` redemptions held for a time that has passed,
 * the oldest first, through fn. 0 or -1. */
int store_hold_expired(db_t *db, int limit, store_code_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* The order's redemption is kept until released (its hold no longer
 * expires): 0; 1 if it had no hold. */
int store_hold_keep(db_t *db, const char *order_id) __attribute__((warn_unused_result));

#endif
