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

/* A SKU code as the catalog allows it: 1 to 64 of A-Z a-z 0-9 . _ - */
bool promo_valid_sku(const char *code);

/* Where promo_rule_eng puts strings and arrays (the rule cache's arena).
 * alloc never returns NULL. */
typedef struct {
    void *(*alloc)(void *ctx, size_t size);
    void *ctx;
} promo_mem_t;

/* A stored rule as a message (in the call's arena), and as the engine's
 * input (in m). */
Shop__Promotions__V1__Rule *promo_rule_msg(call_t *call, const store_rule_t *r);
void promo_rule_eng(const promo_mem_t *m, const store_rule_t *r, eng_rule_t *out);

/* cache.c: the active rules' terms compiled once per rule version and
 * shared by the workers' quotes. cache_acquire returns a snapshot at least
 * as new as `version` (read from rule_version in the caller's transaction),
 * building it if needed; its rules stay valid until cache_release. NULL on
 * a database failure. */
typedef struct cache_snap cache_snap_t;
cache_snap_t *cache_acquire(db_t *db, int64_t version, const eng_rule_t **rules, size_t *n);
void cache_release(cache_snap_t *snap);

#endif
