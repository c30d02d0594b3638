/* test_catalog: every catalog method's success and error paths through the
 * real service over real sockets, with requests written as JSON and turned
 * into protobuf by pbjson (as shopctl does): products (create, update, get,
 * list with paging and filters, ranked search), stock (adjust, get, low
 * stock), reservations (all or none, idempotency, expiry by the maintenance
 * timer), the reports, the events each writes, and the role's confinement
 * to its own schema. Every failed call is checked to have changed nothing. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <zmq.h>

#include "check.h"
#include "client.h"
#include "harness.h"
#include "jcall.h"
#include "pbjson.h"
#include "shop/common/v1/common.pb-c.h"
#include "slog.h"
#include "util.h"

static jcall_t s_j = {.service = "shop.catalog.v1.CatalogService"};
static PGconn *s_pg;

#define s_call(...) jcall(&s_j, __VA_ARGS__)
#define s_at(path) jcall_at(&s_j, path)
#define s_str(path) jcall_str(&s_j, path)
#define s_num(path) jcall_num(&s_j, path)
#define s_len(path) jcall_len(&s_j, path)
#define s_msg (s_j.message)

#define s_sql(...) harness_sql(s_pg, __VA_ARGS__)

static long long s_events(const char *type)
{
    return s_sql("SELECT count(*) FROM catalog.outbox WHERE type = 'shop.catalog.v1.%s'", type);
}

#define SKU(code, price, cost, cur, thr)                                                  \
    "{\"code\":\"" code "\",\"listPrice\":{\"minorUnits\":" #price ",\"currency\":\"" cur \
    "\"},\"costPrice\":{\"minorUnits\":" #cost ",\"currency\":\"" cur                     \
    "\"},\"lowStockThreshold\":" #thr "}"

static status_t s_create(const char *title, const char *desc, const char *category,
                         const char *brand, const char *status, const char *skus)
{
    return s_call("CreateProduct",
                  "{\"product\":{\"title\":\"%s\",\"description\":\"%s\",\"category\":\"%s\","
                  "\"brand\":\"%s\",\"status\":\"%s\",\"attributes\":[{\"name\":\"origin\","
                  "\"value\":\"Hangzhou\"}],\"skus\":[%s]}}",
                  title, desc, category, brand, status, skus);
}

static status_t s_adjust(const char *sku, int delta)
{
    return s_call("AdjustStock", "{\"sku\":\"%s\",\"delta\":%d,\"reason\":\"receipt\"}", sku, delta);
}

static void s_products(void)
{
    long long n0;

    /* create: the reply is the product as stored */
    CHECK_INT(s_create("Longjing green tea", "Pan-fired green tea from West Lake.", "green tea",
                       "Xihu", "PRODUCT_STATUS_ACTIVE",
                       SKU("LJ-50", 6800, 3900, "CNY", 5) "," SKU("LJ-250", 29800, 17500, "CNY", 3)),
              STATUS_OK);
    long long lj = s_num("product.id");
    CHECK(lj > 0);
    CHECK_STR(s_str("product.status"), "PRODUCT_STATUS_ACTIVE");
    CHECK_INT(s_len("product.skus"), 2);
    CHECK_STR(s_str("product.skus[0].code"), "LJ-250");
    CHECK_INT(s_num("product.skus[1].listPrice.minorUnits"), 6800);
    CHECK_STR(s_str("product.attributes[0].value"), "Hangzhou");
    CHECK(s_num("product.createdAtMs") > 1700000000000LL);
    CHECK_INT(s_events("ProductCreated"), 1);

    /* create: each bad input is refused and writes nothing */
    n0 = s_sql("SELECT count(*) FROM catalog.product");
    CHECK_INT(s_create("", "", "", "", "PRODUCT_STATUS_ACTIVE", SKU("X-1", 100, 50, "CNY", 0)),
              STATUS_INVALID_ARGUMENT);
    CHECK(strstr(s_msg, "product.title") != NULL);
    CHECK_INT(s_create("Bad currency", "", "", "", "PRODUCT_STATUS_ACTIVE",
                       SKU("X-1", 100, 50, "XYZ", 0)), STATUS_INVALID_ARGUMENT);
    CHECK(strstr(s_msg, "currency") != NULL);
    CHECK_INT(s_create("Two currencies", "", "", "", "PRODUCT_STATUS_ACTIVE",
                       "{\"code\":\"X-1\",\"listPrice\":{\"minorUnits\":100,\"currency\":\"CNY\"},"
                       "\"costPrice\":{\"minorUnits\":50,\"currency\":\"USD\"}}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_create("Negative price", "", "", "", "PRODUCT_STATUS_ACTIVE",
                       SKU("X-1", -100, 50, "CNY", 0)), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_create("Bad code", "", "", "", "PRODUCT_STATUS_ACTIVE",
                       SKU("X 1", 100, 50, "CNY", 0)), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_create("Same code twice", "", "", "", "PRODUCT_STATUS_ACTIVE",
                       SKU("X-1", 100, 50, "CNY", 0) "," SKU("X-1", 100, 50, "CNY", 0)),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_create("No SKUs", "", "", "", "PRODUCT_STATUS_ACTIVE", ""), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_create("Stock given", "", "", "", "PRODUCT_STATUS_ACTIVE",
                       "{\"code\":\"X-1\",\"listPrice\":{\"minorUnits\":100,\"currency\":\"CNY\"},"
                       "\"costPrice\":{\"minorUnits\":50,\"currency\":\"CNY\"},\"onHand\":5}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_create("Taken SKU", "", "", "", "PRODUCT_STATUS_ACTIVE",
                       SKU("X-1", 100, 50, "CNY", 0) "," SKU("LJ-50", 100, 50, "CNY", 0)),
              STATUS_ALREADY_EXISTS);
    CHECK_INT(s_call("CreateProduct", "{\"product\":{\"title\":\"Odd status\",\"status\":9,"
                                      "\"skus\":[" SKU("X-1", 100, 50, "CNY", 0) "]}}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.product"), n0);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.sku WHERE code = 'X-1'"), 0);
    CHECK_INT(s_events("ProductCreated"), 1);

    /* more products for lists and search */
    CHECK_INT(s_create("Biluochun", "Spiral green tea; tastes a little like Longjing.",
                       "green tea", "Dongting", "PRODUCT_STATUS_ACTIVE",
                       SKU("BLC-100", 9800, 5200, "CNY", 0)), STATUS_OK);
    long long blc = s_num("product.id");
    CHECK_INT(s_create("Tieguanyin", "Oolong with orchid notes.", "oolong tea", "Anxi",
                       "PRODUCT_STATUS_ACTIVE", SKU("TGY-125", 8800, 4600, "CNY", 0)), STATUS_OK);
    CHECK_INT(s_create("Yixing teapot", "Purple clay.", "teaware", "Yixing",
                       "PRODUCT_STATUS_DRAFT", SKU("POT-1", 38800, 21000, "CNY", 2)), STATUS_OK);
    long long pot = s_num("product.id");
    CHECK_INT(s_create("Gaiwan", "Porcelain bowl with lid.", "teaware", "Jingdezhen",
                       "PRODUCT_STATUS_UNSPECIFIED", SKU("GW-1", 6800, 2500, "CNY", 0)), STATUS_OK);
    CHECK_STR(s_str("product.status"), "PRODUCT_STATUS_DRAFT");   /* the default */

    /* get by id and by SKU */
    CHECK_INT(s_call("GetProduct", "{\"id\":%lld}", lj), STATUS_OK);
    CHECK_STR(s_str("product.title"), "Longjing green tea");
    CHECK_INT(s_call("GetProduct", "{\"sku\":\"BLC-100\"}"), STATUS_OK);
    CHECK_INT(s_num("product.id"), blc);
    CHECK_INT(s_call("GetProduct", "{\"id\":999999}"), STATUS_NOT_FOUND);
    CHECK_INT(s_call("GetProduct", "{\"sku\":\"NOPE\"}"), STATUS_NOT_FOUND);
    CHECK_INT(s_call("GetProduct", "{}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("GetProduct", "{\"id\":%lld,\"sku\":\"LJ-50\"}", lj), STATUS_INVALID_ARGUMENT);

    /* update: own fields replaced, listed SKUs upserted, others kept,
     * unspecified status kept, stock untouched */
    CHECK_INT(s_adjust("LJ-50", 40), STATUS_OK);
    CHECK_INT(s_call("UpdateProduct",
                     "{\"product\":{\"id\":%lld,\"title\":\"Longjing, spring 2026\",\"category\":"
                     "\"green tea\",\"brand\":\"Xihu\",\"skus\":[" SKU("LJ-50", 7200, 3900, "CNY", 5)
                     "," SKU("LJ-500", 52000, 30000, "CNY", 0) "]}}", lj),
              STATUS_OK);
    CHECK_STR(s_str("product.title"), "Longjing, spring 2026");
    CHECK_STR(s_str("product.status"), "PRODUCT_STATUS_ACTIVE");
    CHECK_INT(s_len("product.skus"), 3);
    CHECK_INT(s_len("product.attributes"), 0);
    CHECK_INT(s_sql("SELECT list_price FROM catalog.sku WHERE code = 'LJ-50'"), 7200);
    CHECK_INT(s_sql("SELECT on_hand FROM catalog.sku WHERE code = 'LJ-50'"), 40);
    CHECK_INT(s_events("ProductUpdated"), 1);
    /* a SKU of another product: refused, and the title change rolled back */
    CHECK_INT(s_call("UpdateProduct",
                     "{\"product\":{\"id\":%lld,\"title\":\"Stolen\",\"skus\":["
                     SKU("LJ-50", 100, 50, "CNY", 0) "]}}", blc),
              STATUS_ALREADY_EXISTS);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.product WHERE title = 'Stolen'"), 0);
    CHECK_INT(s_call("UpdateProduct", "{\"product\":{\"id\":999999,\"title\":\"Ghost\"}}"),
              STATUS_NOT_FOUND);
    CHECK_INT(s_call("UpdateProduct", "{\"product\":{\"title\":\"No id\"}}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("UpdateProduct", "{\"product\":{\"id\":%lld,\"title\":\"\"}}", lj),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_events("ProductUpdated"), 1);

    /* list: keyset pages cover every product once, in id order */
    long long seen = 0, pages = 0, last = 0;
    char token[64] = "";
    do {
        CHECK_INT(s_call("ListProducts", "{\"pageSize\":2,\"pageToken\":\"%s\"}", token), STATUS_OK);
        for (size_t i = 0; i < s_len("products"); i++) {
            char path[64];
            snprintf(path, sizeof path, "products[%zu].id", i);
            CHECK(s_num(path) > last);
            last = s_num(path);
            seen++;
        }
        snprintf(token, sizeof token, "%s", json_string_value(s_at("nextPageToken")) ?: "");
        pages++;
    } while (token[0] && pages < 10);
    CHECK_INT(seen, 5);
    CHECK_INT(pages, 3);
    CHECK_INT(s_call("ListProducts", "{\"category\":\"teaware\"}"), STATUS_OK);
    CHECK_INT(s_len("products"), 2);
    CHECK_INT(s_call("ListProducts", "{\"category\":\"teaware\",\"status\":\"PRODUCT_STATUS_DRAFT\","
                                     "\"brand\":\"Yixing\"}"), STATUS_OK);
    CHECK_INT(s_len("products"), 1);
    CHECK_INT(s_num("products[0].id"), pot);
    CHECK_INT(s_num("products[0].skus[0].lowStockThreshold"), 2);
    CHECK_INT(s_call("ListProducts", "{\"minPriceMinor\":9000,\"maxPriceMinor\":40000}"), STATUS_OK);
    CHECK_INT(s_len("products"), 3);   /* Longjing (LJ-250), Biluochun, teapot */
    CHECK_INT(s_call("ListProducts", "{\"status\":\"PRODUCT_STATUS_ARCHIVED\"}"), STATUS_OK);
    CHECK_INT(s_len("products"), 0);
    CHECK_INT(s_call("ListProducts", "{\"pageToken\":\"abc\"}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ListProducts", "{\"pageSize\":101}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ListProducts", "{\"minPriceMinor\":500,\"maxPriceMinor\":100}"),
              STATUS_INVALID_ARGUMENT);

    /* search: a title match outranks a description match */
    CHECK_INT(s_call("SearchProducts", "{\"query\":\"longjing\"}"), STATUS_OK);
    CHECK_INT(s_len("hits"), 2);
    CHECK_INT(s_num("hits[0].product.id"), lj);
    CHECK_INT(s_num("hits[1].product.id"), blc);
    CHECK(json_real_value(s_at("hits[0].rank")) > json_real_value(s_at("hits[1].rank")));
    CHECK_INT(s_call("SearchProducts", "{\"query\":\"longjing\",\"pageSize\":1}"), STATUS_OK);
    CHECK_INT(s_len("hits"), 1);
    CHECK_STR(s_str("nextPageToken"), "1");
    CHECK_INT(s_call("SearchProducts", "{\"query\":\"longjing\",\"pageSize\":1,\"pageToken\":\"1\"}"),
              STATUS_OK);
    CHECK_INT(s_num("hits[0].product.id"), blc);
    CHECK_STR(s_str("nextPageToken"), "");
    CHECK_INT(s_call("SearchProducts", "{\"query\":\"green -biluochun\"}"), STATUS_OK);
    CHECK_INT(s_len("hits"), 1);
    CHECK_INT(s_call("SearchProducts", "{\"query\":\"nothing-like-this\"}"), STATUS_OK);
    CHECK_INT(s_len("hits"), 0);
    CHECK_INT(s_call("SearchProducts", "{\"query\":\"\"}"), STATUS_INVALID_ARGUMENT);
}

static void s_stock(void)
{
    /* adjust and get */
    CHECK_INT(s_adjust("TGY-125", 10), STATUS_OK);
    CHECK_INT(s_num("stock.onHand"), 10);
    CHECK_INT(s_call("GetStock", "{\"skus\":[\"TGY-125\",\"LJ-50\"]}"), STATUS_OK);
    CHECK_INT(s_num("stock[0].available"), 10);
    CHECK_INT(s_num("stock[1].available"), 40);
    CHECK_INT(s_call("GetStock", "{\"skus\":[\"TGY-125\",\"NOPE\"]}"), STATUS_NOT_FOUND);
    CHECK_INT(s_call("GetStock", "{\"skus\":[]}"), STATUS_INVALID_ARGUMENT);
    long long audits = s_sql("SELECT count(*) FROM catalog.stock_adjustment");
    CHECK_INT(s_adjust("TGY-125", 0), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_adjust("TGY-125", 1000001), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_adjust("TGY-125", -11), STATUS_FAILED_PRECONDITION);
    CHECK_INT(s_adjust("NOPE", 5), STATUS_NOT_FOUND);
    CHECK_INT(s_call("AdjustStock", "{\"sku\":\"TGY-125\",\"delta\":1,\"reason\":\"\"}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.stock_adjustment"), audits);
    CHECK_INT(s_sql("SELECT on_hand FROM catalog.sku WHERE code = 'TGY-125'"), 10);

    /* low stock: POT-1 (threshold 2) gets 3, then a correction takes it to 2 */
    CHECK_INT(s_adjust("POT-1", 3), STATUS_OK);
    long long low0 = s_events("LowStock");
    CHECK_INT(s_call("AdjustStock", "{\"sku\":\"POT-1\",\"delta\":-1,\"reason\":\"damage\"}"),
              STATUS_OK);
    CHECK_INT(s_events("LowStock"), low0 + 1);
    CHECK_INT(s_call("ListLowStock", "{}"), STATUS_OK);
    CHECK_INT(s_len("stock"), 2);                  /* lowest available first */
    CHECK_STR(s_str("stock[0].sku"), "LJ-250");    /* none yet, threshold 3 */
    CHECK_STR(s_str("stock[1].sku"), "POT-1");
    CHECK_INT(s_num("stock[1].available"), 2);
    CHECK_INT(s_call("ListLowStock", "{\"limit\":1001}"), STATUS_INVALID_ARGUMENT);
}

static void s_reservations(void)
{
    CHECK_INT(s_adjust("GW-1", 5), STATUS_OK);
    long long rej0 = s_events("ReservationRejected");

    /* all or none: one short line rejects the whole order */
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-1\",\"lines\":[{\"sku\":\"LJ-50\","
                                     "\"quantity\":2},{\"sku\":\"TGY-125\",\"quantity\":11}]}"),
              STATUS_FAILED_PRECONDITION);
    CHECK_INT(s_len("shortages"), 1);
    CHECK_STR(s_str("shortages[0].sku"), "TGY-125");
    CHECK_INT(s_num("shortages[0].available"), 10);
    CHECK_INT(s_events("ReservationRejected"), rej0 + 1);
    CHECK_INT(s_sql("SELECT sum(reserved) FROM catalog.sku"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation"), 0);
    /* a draft product is not for sale */
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-2\",\"lines\":[{\"sku\":\"POT-1\","
                                     "\"quantity\":1}]}"), STATUS_FAILED_PRECONDITION);
    CHECK(strstr(s_str("shortages[0].reason"), "not for sale") != NULL);
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-3\",\"lines\":[{\"sku\":\"LJ-50\","
                                     "\"quantity\":1},{\"sku\":\"LJ-50\",\"quantity\":1}]}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-3\",\"lines\":[{\"sku\":\"LJ-50\","
                                     "\"quantity\":-1}]}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"\",\"lines\":[{\"sku\":\"LJ-50\","
                                     "\"quantity\":1}]}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-3\",\"lines\":[]}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation"), 0);

    /* success, then the same order again is the same reservation */
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-4\",\"lines\":[{\"sku\":\"LJ-50\","
                                     "\"quantity\":2},{\"sku\":\"TGY-125\",\"quantity\":10}]}"),
              STATUS_OK);
    CHECK_STR(s_str("reservation.state"), "RESERVATION_STATE_HELD");
    long long expires = s_num("reservation.expiresAtMs");
    CHECK(expires > util_now_ms() + 800 * 1000);   /* the 900 s default */
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-4\",\"lines\":[{\"sku\":\"TGY-125\","
                                     "\"quantity\":10},{\"sku\":\"LJ-50\",\"quantity\":2}]}"),
              STATUS_OK);
    CHECK_INT(s_num("reservation.expiresAtMs"), expires);
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-4\",\"lines\":[{\"sku\":\"LJ-50\","
                                     "\"quantity\":3}]}"), STATUS_ALREADY_EXISTS);
    CHECK_INT(s_sql("SELECT reserved FROM catalog.sku WHERE code = 'LJ-50'"), 2);
    CHECK_INT(s_events("StockReserved"), 1);
    /* stock cannot go below what is reserved */
    CHECK_INT(s_adjust("TGY-125", -1), STATUS_FAILED_PRECONDITION);

    /* confirm takes the units off the shelf; release is then refused */
    CHECK_INT(s_call("ConfirmReservation", "{\"orderId\":\"o-4\"}"), STATUS_OK);
    CHECK_STR(s_str("reservation.state"), "RESERVATION_STATE_CONFIRMED");
    CHECK_INT(s_len("reservation.lines"), 2);
    CHECK_INT(s_sql("SELECT on_hand * 1000 + reserved FROM catalog.sku WHERE code = 'TGY-125'"), 0);
    CHECK_INT(s_call("ConfirmReservation", "{\"orderId\":\"o-4\"}"), STATUS_OK);
    CHECK_INT(s_events("ReservationConfirmed"), 1);
    CHECK_INT(s_call("ReleaseReservation", "{\"orderId\":\"o-4\"}"), STATUS_FAILED_PRECONDITION);
    CHECK_INT(s_call("ConfirmReservation", "{\"orderId\":\"never\"}"), STATUS_NOT_FOUND);

    /* release gives the units back, once */
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-5\",\"lines\":[{\"sku\":\"GW-1\","
                                     "\"quantity\":1}]}"), STATUS_FAILED_PRECONDITION);
    CHECK(strstr(s_str("shortages[0].reason"), "not for sale") != NULL);   /* a draft */
    CHECK_INT(s_call("UpdateProduct", "{\"product\":{\"id\":%lld,\"title\":\"Gaiwan\",\"status\":"
                                      "\"PRODUCT_STATUS_ACTIVE\"}}",
                     s_sql("SELECT product_id FROM catalog.sku WHERE code = 'GW-1'")), STATUS_OK);
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-5\",\"lines\":[{\"sku\":\"GW-1\","
                                     "\"quantity\":4}]}"), STATUS_OK);
    CHECK_INT(s_call("ReleaseReservation", "{\"orderId\":\"o-5\",\"reason\":\"buyer cancelled\"}"),
              STATUS_OK);
    CHECK_STR(s_str("reservation.state"), "RESERVATION_STATE_RELEASED");
    CHECK_INT(s_call("ReleaseReservation", "{\"orderId\":\"o-5\"}"), STATUS_OK);
    CHECK_INT(s_events("ReservationReleased"), 1);
    CHECK_INT(s_sql("SELECT reserved FROM catalog.sku WHERE code = 'GW-1'"), 0);
    CHECK_INT(s_call("ConfirmReservation", "{\"orderId\":\"o-5\"}"), STATUS_FAILED_PRECONDITION);
    /* a released order id cannot be reserved again under the same id */
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-5\",\"lines\":[{\"sku\":\"GW-1\","
                                     "\"quantity\":4}]}"), STATUS_FAILED_PRECONDITION);

    /* expiry: a 1 s hold is released by the maintenance timer */
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"o-6\",\"ttlSeconds\":1,\"lines\":[{\"sku\":"
                                     "\"GW-1\",\"quantity\":3}]}"), STATUS_OK);
    CHECK_INT(s_sql("SELECT reserved FROM catalog.sku WHERE code = 'GW-1'"), 3);
    long long state = 0;
    for (int i = 0; i < 50 && state != 1; i++) {
        util_sleep_ms(100);
        state = s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = 'o-6' "
                      "AND state = 'expired'");
    }
    CHECK_INT(state, 1);
    CHECK_INT(s_sql("SELECT reserved FROM catalog.sku WHERE code = 'GW-1'"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.outbox WHERE type = "
                    "'shop.catalog.v1.ReservationReleased' AND correlation_id = 'o-6'"), 1);
    CHECK_INT(s_call("ReleaseReservation", "{\"orderId\":\"o-6\"}"), STATUS_OK);
    CHECK_STR(s_str("reservation.state"), "RESERVATION_STATE_EXPIRED");
    CHECK_INT(s_call("ConfirmReservation", "{\"orderId\":\"o-6\"}"), STATUS_FAILED_PRECONDITION);

    /* the invariant: reserved is exactly the held lines, within on_hand */
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.sku s WHERE s.reserved <> "
                    "(SELECT coalesce(sum(l.quantity), 0) FROM catalog.reservation_line l "
                    "JOIN catalog.reservation r USING (order_id) "
                    "WHERE r.state = 'held' AND l.sku = s.code) OR s.reserved > s.on_hand"), 0);
}

/* Held reservations, soonest to expire first, paged; a page's token
 * continues after it later too (what a sweep keeps). */
static void s_held_list(void)
{
    char token[200], last[200];

    for (int i = 1; i <= 3; i++)
        CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"h-%d\",\"ttlSeconds\":%d,\"lines\":[{"
                         "\"sku\":\"LJ-50\",\"quantity\":1}]}", i, 100 * i), STATUS_OK);
    /* the reply says when it was made, as the catalog keeps it */
    CHECK_INT(s_num("reservation.createdAtMs"),
              s_sql("SELECT (extract(epoch FROM created_at) * 1000)::bigint FROM catalog.reservation "
                    "WHERE order_id = 'h-3'"));
    CHECK_INT(s_call("ListHeldReservations", "{}"), STATUS_OK);
    CHECK_INT(s_len("reservations"), 3);
    CHECK_STR(s_str("reservations[0].orderId"), "h-1");
    CHECK_STR(s_str("reservations[2].orderId"), "h-3");
    CHECK_STR(s_str("reservations[1].state"), "RESERVATION_STATE_HELD");
    CHECK_INT(s_len("reservations[1].lines"), 0);
    CHECK(s_num("reservations[1].createdAtMs") > util_now_ms() - 60000);
    CHECK(s_num("reservations[1].expiresAtMs") > util_now_ms() + 190000);
    /* pages of two */
    CHECK_INT(s_call("ListHeldReservations", "{\"pageSize\":2}"), STATUS_OK);
    CHECK_INT(s_len("reservations"), 2);
    CHECK_STR(s_str("reservations[1].orderId"), "h-2");
    snprintf(token, sizeof token, "%s", s_str("nextPageToken"));
    CHECK_INT(s_call("ListHeldReservations", "{\"pageSize\":2,\"pageToken\":\"%s\"}", token),
              STATUS_OK);
    CHECK_INT(s_len("reservations"), 1);
    CHECK_STR(s_str("reservations[0].orderId"), "h-3");
    snprintf(last, sizeof last, "%s", s_str("nextPageToken"));
    CHECK_INT(s_call("ListHeldReservations", "{\"pageToken\":\"%s\"}", last), STATUS_OK);
    CHECK_INT(s_len("reservations"), 0);
    CHECK_STR(s_str("nextPageToken"), "");
    /* only those expiring before a time; only those held */
    CHECK_INT(s_call("ListHeldReservations", "{\"expiringBeforeMs\":\"%lld\"}",
                     (long long)util_now_ms() + 150000), STATUS_OK);
    CHECK_INT(s_len("reservations"), 1);
    CHECK_STR(s_str("reservations[0].orderId"), "h-1");
    CHECK_INT(s_call("ReleaseReservation", "{\"orderId\":\"h-2\"}"), STATUS_OK);
    CHECK_INT(s_call("ListHeldReservations", "{}"), STATUS_OK);
    CHECK_INT(s_len("reservations"), 2);
    CHECK_STR(s_str("reservations[1].orderId"), "h-3");
    /* the last page's token, later: what came since */
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"h-4\",\"ttlSeconds\":400,\"lines\":[{"
                     "\"sku\":\"LJ-50\",\"quantity\":1}]}"), STATUS_OK);
    CHECK_INT(s_call("ListHeldReservations", "{\"pageToken\":\"%s\"}", last), STATUS_OK);
    CHECK_INT(s_len("reservations"), 1);
    CHECK_STR(s_str("reservations[0].orderId"), "h-4");
    /* only those made before a time */
    CHECK_INT(s_call("ListHeldReservations", "{\"createdBeforeMs\":\"%lld\"}",
                     (long long)util_now_ms() - 3600000), STATUS_OK);
    CHECK_INT(s_len("reservations"), 0);
    CHECK_INT(s_sql("WITH u AS (UPDATE catalog.reservation SET created_at = created_at - interval '2 hours' "
                    "WHERE order_id = 'h-3' RETURNING 1) SELECT count(*) FROM u"), 1);
    CHECK_INT(s_call("ListHeldReservations", "{\"createdBeforeMs\":\"%lld\"}",
                     (long long)util_now_ms() - 3600000), STATUS_OK);
    CHECK_INT(s_len("reservations"), 1);
    CHECK_STR(s_str("reservations[0].orderId"), "h-3");
    /* the same end: pages of one go through both, by order id */
    CHECK_INT(s_sql("WITH u AS (UPDATE catalog.reservation SET expires_at = "
                    "(SELECT expires_at FROM catalog.reservation WHERE order_id = 'h-1') "
                    "WHERE order_id = 'h-3' RETURNING 1) SELECT count(*) FROM u"), 1);
    CHECK_INT(s_call("ListHeldReservations", "{\"pageSize\":1}"), STATUS_OK);
    CHECK_STR(s_str("reservations[0].orderId"), "h-1");
    snprintf(token, sizeof token, "%s", s_str("nextPageToken"));
    CHECK_INT(s_call("ListHeldReservations", "{\"pageSize\":1,\"pageToken\":\"%s\"}", token),
              STATUS_OK);
    CHECK_STR(s_str("reservations[0].orderId"), "h-3");
    snprintf(token, sizeof token, "%s", s_str("nextPageToken"));
    CHECK_INT(s_call("ListHeldReservations", "{\"pageSize\":1,\"pageToken\":\"%s\"}", token),
              STATUS_OK);
    CHECK_STR(s_str("reservations[0].orderId"), "h-4");
    /* bad input */
    CHECK_INT(s_call("ListHeldReservations", "{\"pageSize\":1001}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ListHeldReservations", "{\"pageToken\":\"99999999999999999999.h-1\"}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ListHeldReservations", "{\"createdBeforeMs\":\"-5\"}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ListHeldReservations", "{\"pageToken\":\"h-1\"}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ListHeldReservations", "{\"pageToken\":\"12.\"}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("ListHeldReservations", "{\"expiringBeforeMs\":\"-1\"}"),
              STATUS_INVALID_ARGUMENT);
    for (int i = 1; i <= 4; i++)
        CHECK_INT(s_call("ReleaseReservation", "{\"orderId\":\"h-%d\"}", i), STATUS_OK);
}

static void s_reports(void)
{
    long long since = util_now_ms() - 1;

    /* in this window: LJ-250 8 units, LJ-500 1, BLC-100 1 (+ o-4 before it) */
    CHECK_INT(s_adjust("LJ-250", 20), STATUS_OK);
    CHECK_INT(s_adjust("LJ-500", 5), STATUS_OK);
    CHECK_INT(s_adjust("BLC-100", 5), STATUS_OK);
    util_sleep_ms(20);
    since = util_now_ms();
    util_sleep_ms(20);
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"r-1\",\"lines\":[{\"sku\":\"LJ-250\","
                                     "\"quantity\":5},{\"sku\":\"BLC-100\",\"quantity\":1}]}"),
              STATUS_OK);
    CHECK_INT(s_call("ConfirmReservation", "{\"orderId\":\"r-1\"}"), STATUS_OK);
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"r-2\",\"lines\":[{\"sku\":\"LJ-250\","
                                     "\"quantity\":3},{\"sku\":\"LJ-500\",\"quantity\":1}]}"),
              STATUS_OK);   /* held counts too */
    CHECK_INT(s_call("ReserveStock", "{\"orderId\":\"r-3\",\"lines\":[{\"sku\":\"BLC-100\","
                                     "\"quantity\":4}]}"), STATUS_OK);
    CHECK_INT(s_call("ReleaseReservation", "{\"orderId\":\"r-3\"}"), STATUS_OK);   /* does not */

    CHECK_INT(s_call("BestSellers", "{\"sinceMs\":%lld}", since), STATUS_OK);
    CHECK_INT(s_len("skus"), 3);
    CHECK_STR(s_str("skus[0].sku"), "LJ-250");
    CHECK_INT(s_num("skus[0].units"), 8);
    CHECK_INT(s_num("skus[0].revenue.minorUnits"), 8 * 29800);
    CHECK_STR(s_str("skus[0].revenue.currency"), "CNY");
    CHECK_STR(s_str("skus[1].sku"), "BLC-100");   /* ties by code */
    CHECK_STR(s_str("skus[2].sku"), "LJ-500");
    CHECK_INT((long long)(json_real_value(s_at("skus[2].cumulativeShare")) + 0.5), 100);
    CHECK_INT(s_call("BestSellers", "{\"sinceMs\":%lld,\"limit\":1}", since), STATUS_OK);
    CHECK_INT(s_len("skus"), 1);
    CHECK_INT(s_call("BestSellers", "{}"), STATUS_OK);   /* all time: o-4 counts too */
    CHECK_STR(s_str("skus[0].sku"), "TGY-125");
    CHECK_INT(s_num("skus[0].units"), 10);
    CHECK_STR(s_str("skus[1].sku"), "LJ-250");
    CHECK_INT(s_call("BestSellers", "{\"sinceMs\":%lld,\"untilMs\":%lld}", since, since - 1),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_call("BestSellers", "{\"sinceMs\":\"%lld\"}", (long long)util_now_ms() + 60000), STATUS_OK);
    CHECK_INT(s_len("skus"), 0);

    /* 80/20: LJ-250 alone makes 80% of the 10 units */
    CHECK_INT(s_call("ParetoReport", "{\"sinceMs\":%lld}", since), STATUS_OK);
    CHECK_INT(s_len("skus"), 1);
    CHECK_STR(s_str("skus[0].sku"), "LJ-250");
    CHECK_INT(s_num("totalUnits"), 10);
    CHECK_INT(s_num("skusWithSales"), 3);
    CHECK_INT((long long)(json_real_value(s_at("shareOfSkus")) * 10 + 0.5), 333);
    CHECK_INT(s_call("ParetoReport", "{\"sinceMs\":%lld,\"percent\":81}", since), STATUS_OK);
    CHECK_INT(s_len("skus"), 2);
    CHECK_INT(s_call("ParetoReport", "{\"percent\":101}"), STATUS_INVALID_ARGUMENT);
}

/* The catalog's role reaches its own schema only. */
static void s_role(const char *db)
{
    char *ci = harness_conninfo(db, "catalog");
    PGconn *pg = PQconnectdb(ci);
    const char *denied[] = {"SELECT count(*) FROM sink.outbox",
                            "CREATE TABLE sink.intruder (x int)",
                            "CREATE TABLE public.intruder (x int)"};

    CHECK(PQstatus(pg) == CONNECTION_OK);
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        PGresult *r = PQexec(pg, denied[i]);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        CHECK_STR(st ? st : "", "42501");
        PQclear(r);
    }
    PGresult *r = PQexec(pg, "SELECT count(*) FROM catalog.product");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(pg);
    free(ci);
}

int main(void)
{
    const char *svcs[] = {"catalog", "sink", NULL};
    char *conninfo = harness_create_db("t_catalog", svcs);
    const char *extra[] = {"SHOP_MAINTENANCE_MS=200", NULL};
    harness_service_t svc;
    void *zctx = zmq_ctx_new();

    slog_init("test_catalog", SLOG_ERROR);
    CHECK(conninfo != NULL);
    if (!conninfo)
        return check_done();
    int ready = harness_start_service(&svc, "shop-catalog", conninfo, extra);
    CHECK_INT(ready, 0);
    s_j.client = client_new(zctx, svc.rpc);
    s_pg = PQconnectdb(conninfo);
    if (ready == 0 && s_j.client && PQstatus(s_pg) == CONNECTION_OK) {
        s_products();
        s_stock();
        s_reservations();
        s_held_list();
        s_reports();
        /* a method the service does not have */
        char *message = NULL;
        Shop__Common__V1__Status st = SHOP__COMMON__V1__STATUS__INIT;
        CHECK_INT(client_call(s_j.client, "shop.catalog.v1.CatalogService/DropEverything", &st.base,
                              NULL, NULL, NULL, 5000, 1, &message), STATUS_UNIMPLEMENTED);
        free(message);
        s_role("t_catalog");
    }
    jcall_done(&s_j);
    PQfinish(s_pg);
    client_destroy(&s_j.client);
    if (svc.proc)
        CHECK_INT(harness_stop(&svc.proc, 10000), 0);
    zmq_ctx_term(zctx);
    free(conninfo);
    return check_done();
}
