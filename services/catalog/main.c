/* shop-catalog: products, SKUs, stock and reservations. */
#include <stddef.h>

#include "catalog.h"
#include "shop/catalog/v1/catalog.pb-c.h"

extern const migrate_file_t catalog_migrations[];
extern const size_t catalog_migrations_count;

/* Every method of CatalogService; the runtime refuses to start if one is
 * missing. */
static const server_method_t s_methods[] = {
    {&shop__catalog__v1__create_product_request__descriptor, catalog_create_product},
    {&shop__catalog__v1__update_product_request__descriptor, catalog_update_product},
    {&shop__catalog__v1__get_product_request__descriptor, catalog_get_product},
    {&shop__catalog__v1__list_products_request__descriptor, catalog_list_products},
    {&shop__catalog__v1__search_products_request__descriptor, catalog_search_products},
    {&shop__catalog__v1__adjust_stock_request__descriptor, catalog_adjust_stock},
    {&shop__catalog__v1__get_stock_request__descriptor, catalog_get_stock},
    {&shop__catalog__v1__reserve_stock_request__descriptor, catalog_reserve_stock},
    {&shop__catalog__v1__confirm_reservation_request__descriptor, catalog_confirm_reservation},
    {&shop__catalog__v1__release_reservation_request__descriptor, catalog_release_reservation},
    {&shop__catalog__v1__list_low_stock_request__descriptor, catalog_list_low_stock},
    {&shop__catalog__v1__list_held_reservations_request__descriptor,
     catalog_list_held_reservations},
    {&shop__catalog__v1__best_sellers_request__descriptor, catalog_best_sellers},
    {&shop__catalog__v1__pareto_report_request__descriptor, catalog_pareto_report},
};

/* Orders' payments confirm reservations, cancellations give stock back and
 * reviews feed the products' ratings. Each event that writes commits by
 * itself, so no transaction holds two orders' SKU rows at once, which
 * could wait in a cycle with a ReserveStock (locking its own in code
 * order) for PostgreSQL's deadlock_timeout. */
static const sub_stream_t s_consumes[] = {
    {"orders", "shop.orders.v1.", catalog_apply_orders, .commit_each = true},
};

static const char *const s_anomalies[] = {"paid_reservation_lost", "review_of_unknown_sku",
                                          "reservation_expired", "abandoned_order_sold", NULL};

#define SET(field) offsetof(catalog_settings_t, field)
static const cfg_var_t s_settings[] = {
    {"CATALOG_RESERVATION_TTL_S", CFG_INT, "900", 1, 604800, SET(reservation_ttl_s),
     "how long a reservation holds stock unless the request sets ttl_seconds"},
    {"CATALOG_MAX_LINES", CFG_INT, "100", 1, 1000, SET(max_lines),
     "most lines in one reservation"},
    CFG_END,
};

int main(int argc, char **argv)
{
    static catalog_settings_t settings;
    server_def_t def = {
        .name = "catalog",
        .service = &shop__catalog__v1__catalog_service__descriptor,
        .methods = s_methods,
        .n_methods = sizeof s_methods / sizeof s_methods[0],
        .migrations = catalog_migrations,
        .n_migrations = catalog_migrations_count,
        .settings = s_settings,
        .settings_out = &settings,
        .maintain = catalog_maintain,
        .consumes = s_consumes,
        .n_consumes = sizeof s_consumes / sizeof s_consumes[0],
        .anomalies = s_anomalies,
        /* The reservation statement's plan made for its values was no
         * better and cost more than running it: generic plans cut the
         * catalog's PostgreSQL CPU per order from 1833 to 1003 µs (perf of
         * bench/run at concurrency 8). The product list asks for its own
         * (store.c). */
        .db_settings = "-c plan_cache_mode=force_generic_plan",
    };
    return server_main(&def, argc, argv);
}
