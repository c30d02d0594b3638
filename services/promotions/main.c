/* shop-promotions: price rules, coupons, member tiers, quotes and
 * redemption exactly once. */
#include <stddef.h>

#include "promotions.h"

extern const migrate_file_t promotions_migrations[];
extern const size_t promotions_migrations_count;

/* Every method of PromotionsService; the runtime refuses to start if one
 * is missing. */
static const server_method_t s_methods[] = {
    {&shop__promotions__v1__create_rule_request__descriptor, promo_create_rule},
    {&shop__promotions__v1__update_rule_request__descriptor, promo_update_rule},
    {&shop__promotions__v1__set_rule_status_request__descriptor, promo_set_rule_status},
    {&shop__promotions__v1__list_rules_request__descriptor, promo_list_rules},
    {&shop__promotions__v1__create_coupon_request__descriptor, promo_create_coupon},
    {&shop__promotions__v1__issue_coupons_request__descriptor, promo_issue_coupons},
    {&shop__promotions__v1__get_coupon_request__descriptor, promo_get_coupon},
    {&shop__promotions__v1__set_tier_request__descriptor, promo_set_tier},
    {&shop__promotions__v1__list_tiers_request__descriptor, promo_list_tiers},
    {&shop__promotions__v1__quote_request__descriptor, promo_quote},
    {&shop__promotions__v1__redeem_request__descriptor, promo_redeem},
    {&shop__promotions__v1__release_request__descriptor, promo_release},
};

static const ProtobufCMessageDescriptor *const s_on_loop[] = {
    &shop__promotions__v1__quote_request__descriptor, NULL};

/* Prices, costs and categories come from the catalog's product events
 * (the whole stream is taken: see sub_stream_t). */
static const sub_stream_t s_consumes[] = {
    {"catalog", "shop.catalog.v1.", promo_apply_catalog, .commit_each = false},
    /* Cancelled and abandoned orders give their coupon uses back, each
     * release in its own transaction, locking as Redeem does (store.c). */
    {"orders", "shop.orders.v1.", promo_apply_orders, .commit_each = true},
};

/* A redemption held for a time (an order that was never placed) given back. */
static const char *const s_anomalies[] = {"hold_expired", NULL};

#define SET(field) offsetof(promo_settings_t, field)
static const cfg_var_t s_settings[] = {
    {"PROMOTIONS_MAX_LINES", CFG_INT, "100", 1, 1000, SET(max_lines), "most lines in one quote"},
    {"PROMOTIONS_MAX_COUPONS", CFG_INT, "5", 0, 50, SET(max_coupons),
     "most coupon codes in one quote"},
    {"PROMOTIONS_MAX_ISSUE", CFG_INT, "10000", 1, 100000, SET(max_issue),
     "most codes one IssueCoupons call creates"},
    CFG_END,
};

int main(int argc, char **argv)
{
    static promo_settings_t settings;
    server_def_t def = {
        .name = "promotions",
        .service = &shop__promotions__v1__promotions_service__descriptor,
        .methods = s_methods,
        .n_methods = sizeof s_methods / sizeof s_methods[0],
        .migrations = promotions_migrations,
        .n_migrations = promotions_migrations_count,
        .settings = s_settings,
        .settings_out = &settings,
        /* the usage cache's counts, re-read every SHOP_MAINTENANCE_MS */
        .maintain = promo_maintain,
        .consumes = s_consumes,
        .n_consumes = sizeof s_consumes / sizeof s_consumes[0],
        .anomalies = s_anomalies,
        /* a quote's terms live in memory, refreshed when they change */
        .listen = "promotions_terms",
        .on_notify = cache_notified,
        /* Every statement is a lookup by key (`= ANY ($1::text[])` among
         * them, which PostgreSQL otherwise plans again at each run): the
         * generic plan halves the database's CPU per quote (bench/promotions-run,
         * 369 -> 180 µs). */
        .db_settings = "-c plan_cache_mode=force_generic_plan",
        /* a quote whose terms, coupons and usage are in memory is answered
         * on the loop thread, with no hand-over to a worker */
        .on_loop = s_on_loop,
    };
    return server_main(&def, argc, argv);
}
