/* shop-orders: placing orders across catalog and promotions, their state
 * machine, imports from other channels, reviews and the daily summary. */
#include <stddef.h>

#include "orders.h"

extern const migrate_file_t orders_migrations[];
extern const size_t orders_migrations_count;

/* Every method of OrdersService; the runtime refuses to start if one is
 * missing. */
static const server_method_t s_methods[] = {
    {&shop__orders__v1__place_order_request__descriptor, orders_place},
    {&shop__orders__v1__import_order_request__descriptor, orders_import},
    {&shop__orders__v1__get_order_request__descriptor, orders_get},
    {&shop__orders__v1__list_orders_request__descriptor, orders_list},
    {&shop__orders__v1__mark_paid_request__descriptor, orders_mark_paid},
    {&shop__orders__v1__start_fulfilment_request__descriptor, orders_start_fulfilment},
    {&shop__orders__v1__mark_shipped_request__descriptor, orders_mark_shipped},
    {&shop__orders__v1__mark_delivered_request__descriptor, orders_mark_delivered},
    {&shop__orders__v1__complete_order_request__descriptor, orders_complete},
    {&shop__orders__v1__cancel_order_request__descriptor, orders_cancel},
    {&shop__orders__v1__refund_order_request__descriptor, orders_refund},
    {&shop__orders__v1__post_review_request__descriptor, orders_post_review},
    {&shop__orders__v1__daily_summary_request__descriptor, orders_daily_summary},
};

/* Placement reserves stock in the catalog and prices through promotions. */
static const char *const s_calls[] = {"catalog", "promotions", NULL};

static const char *const s_anomalies[] = {"placement_abandoned", "placement_orphaned", NULL};

#define SET(field) offsetof(orders_settings_t, field)
static const cfg_var_t s_settings[] = {
    {"ORDERS_MAX_LINES", CFG_INT, "100", 1, 1000, SET(max_lines), "most lines in one order"},
    /* at most 600000: the stock is held for it plus the pending timeout and
     * ten minutes, within the catalog's 7 days */
    {"ORDERS_UNPAID_TIMEOUT_S", CFG_INT, "1800", 10, 600000, SET(unpaid_timeout_s),
     "an order not paid this long after placement is cancelled (stock and coupons go back); "
     "at most 600000"},
    {"ORDERS_PENDING_TIMEOUT_S", CFG_INT, "60", 5, 3600, SET(pending_timeout_s),
     "a placement not stored this long after its reservation gives up; what one that stopped "
     "half-way (a crash) holds is given back once twice this has passed"},
    {"ORDERS_CALL_TIMEOUT_MS", CFG_INT, "3000", 100, 60000, SET(call_timeout_ms),
     "longest wait for the catalog or promotions during a placement"},
    {"ORDERS_TIMEZONE", CFG_STR, "UTC", 0, 0, SET(timezone),
     "time zone of the daily summary's days (a PostgreSQL zone name: Asia/Shanghai)"},
    {"ORDERS_IMPORT_CONNECT", CFG_STR, "", 0, 0, SET(import_connect),
     "ZeroMQ PUB endpoints (comma-separated) whose shop.orders.v1.ImportOrderRequest "
     "messages are imported (empty = none)"},
    CFG_END,
};

int main(int argc, char **argv)
{
    static orders_settings_t settings;
    server_def_t def = {
        .name = "orders",
        .service = &shop__orders__v1__orders_service__descriptor,
        .methods = s_methods,
        .n_methods = sizeof s_methods / sizeof s_methods[0],
        .migrations = orders_migrations,
        .n_migrations = orders_migrations_count,
        .settings = s_settings,
        .settings_out = &settings,
        .maintain = orders_maintain,
        .calls = s_calls,
        .anomalies = s_anomalies,
        /* Orders other systems publish come in as ImportOrder calls. */
        .intake_var = "ORDERS_IMPORT_CONNECT",
        .intake_topic = "shop.orders.v1.ImportOrderRequest",
        .intake_request = &shop__orders__v1__import_order_request__descriptor,
    };
    return server_main(&def, argc, argv);
}
