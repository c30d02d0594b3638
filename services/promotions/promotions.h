/* promotions: settings, handlers and the helpers shared by main.c,
 * rules.c, coupons.c, quote.c and replica.c. */
#ifndef PROMOTIONS_PROMOTIONS_H
#define PROMOTIONS_PROMOTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include "engine.h"
#include "server.h"
#include "shop/promotions/v1/promotions.pb-c.h"
#include "store.h"

typedef struct {
    int64_t max_lines;
    int64_t max_coupons;
    int64_t max_issue;
} promo_settings_t;

#define PROMO_HANDLER(name) \
    status_t name(call_t *call, const ProtobufCMessage *request, ProtobufCMessage *response)

/* rules.c */
PROMO_HANDLER(promo_create_rule);
PROMO_HANDLER(promo_update_rule);
PROMO_HANDLER(promo_set_rule_status);
PROMO_HANDLER(promo_list_rules);
/* coupons.c */
PROMO_HANDLER(promo_create_coupon);
PROMO_HANDLER(promo_issue_coupons);
PROMO_HANDLER(promo_get_coupon);
PROMO_HANDLER(promo_set_tier);
PROMO_HANDLER(promo_list_tiers);
/* quote.c */
PROMO_HANDLER(promo_quote);
PROMO_HANDLER(promo_redeem);
PROMO_HANDLER(promo_release);

/* replica.c: applies the catalog's ProductCreated/ProductUpdated. */
int promo_apply_catalog(db_t *db, const Shop__Common__V1__Envelope *event, void *settings);
/* order_events.c: cancelled and abandoned orders give their redemptions back. */
int promo_apply_orders(db_t *db, const Shop__Common__V1__Envelope *event, void *settings);
/* The maintain hook: old records of abandoned orders deleted, the usage
 * counts read again. 0, or -1 (database). */
int promo_maintain(db_t *db, void *settings);

/* The longest a redemption may be held for a time (RedeemRequest.hold_seconds). */
#define PROMO_MAX_HOLD_S 604800

/* A SKU code as the catalog allows it: 1 to 64 of A-Z a-z 0-9 . _ - */
bool promo_valid_sku(const char *code);
/* A coupon code: 3 to 40 of A-Z 0-9 - (coupons.c). */
bool promo_valid_coupon_code(const char *code);

/* A stored rule as a message (in the call's arena), and as the engine's
 * input (in m). */
Shop__Promotions__V1__Rule *promo_rule_msg(call_t *call, const store_rule_t *r);
void promo_rule_eng(const eng_mem_t *m, const store_rule_t *r, eng_rule_t *out);
/* The call's arena as the engine's memory. */
eng_mem_t promo_call_mem(call_t *call);

/* cache.c: the quote's terms (active rules compiled for the engine, SKUs,
 * tiers) in memory, built once per terms version and shared by the
 * workers' quotes. */
typedef struct {
    const char *sku, *category, *currency;
    int64_t list_price, cost_price;
    bool active;
    /* the rules it brings in: runs of the view's sku_keys and category_keys */
    uint32_t sku_key_at, sku_key_n, category_key_at, category_key_n;
} cache_sku_t;
typedef struct {
    const char *name;
    int32_t percent;
} cache_tier_t;
typedef struct {
    const char *key;
    uint32_t rule;
} cache_key_t;
typedef struct {
    const eng_rule_t *rules;
    size_t n_rules;
    const cache_sku_t *skus;   /* by code */
    size_t n_skus;
    const uint32_t *sku_index;   /* open addressing: entry number + 1, 0 empty */
    size_t sku_index_mask;       /* its size - 1, a power of two less one */
    const cache_tier_t *tiers;
    size_t n_tiers;
    const cache_key_t *sku_keys, *category_keys;   /* see cache_candidates */
    size_t n_sku_keys, n_category_keys;
    const uint32_t *order_rules;
    size_t n_order_rules;
    int64_t version;
} cache_view_t;
typedef struct cache_snap cache_snap_t;

/* A snapshot at least as new as `version` into *view, built on `db` if
 * needed; it stays valid until cache_release. NULL on a database failure. */
cache_snap_t *cache_acquire(db_t *db, int64_t version, cache_view_t *view);
void cache_release(cache_snap_t *snap);
/* The SKU or tier of that name in the view, or NULL. */
const cache_sku_t *cache_sku(const cache_view_t *v, const char *code);
const cache_tier_t *cache_tier(const cache_view_t *v, const char *name);
/* mark[i] (v->n_rules of them) set for each rule that covers one of the
 * n SKUs (by SKU, category or bundle item; the SKUs as cache_sku found
 * them) or the whole order. */
void cache_candidates(const cache_view_t *v, const cache_sku_t *const *skus, size_t n, bool *mark);
/* The newest terms version known to be committed, or -1 when unknown (the
 * listener is not connected): then read it with store_rule_version. */
int64_t cache_wanted(void);
/* The runtime's on_notify for channel promotions_terms (see listen.h). */
void cache_notified(db_t *db, const char *payload);
/* For a handler that changed terms: commits them (call_commit) and makes
 * the next quotes of this instance see them. 0, or -1 (call_db_fail). */
int cache_written(call_t *call) __attribute__((warn_unused_result));

/* usage.c: what quotes read of the coupons (their terms, which never
 * change, and use counts) and of the capped or budgeted rules (use counts),
 * in memory. Every read of the database puts what it read; this instance's
 * own uses and releases forget theirs once committed (the next read puts
 * it again); the maintenance thread re-reads every count known each
 * SHOP_MAINTENANCE_MS, so a quote sees another instance's uses about that
 * late. Redeem never relies on it: it reads and checks the database. */
uint32_t usage_mark(void);
/* Puts what a read started after usage_mark() returned `mark` found, unless
 * the entry was put or forgotten since (the read may predate that use). */
void usage_coupon_put(const store_coupon_t *c, uint32_t mark);
/* The coupon into *out (strings in the call's arena): false if unknown, or
 * if its per-customer limit makes the customer's uses matter. */
bool usage_coupon_get(call_t *call, const char *code, const char *customer_id, eng_coupon_t *out);
void usage_rule_put(const char *code, int32_t used, int64_t spent, uint32_t mark);
bool usage_rule_get(const char *code, int32_t *used, int64_t *spent);
void usage_forget(bool coupon, const char *code);
/* Re-reads the known counts (each maintenance tick). 0, or -1 (database). */
int usage_refresh(db_t *db, void *settings);

#endif
