/* test_orders: the orders service with the real catalog and promotions
 * over real sockets: placement priced and reserved, idempotent retries
 * (also concurrent), every rejection changing nothing that lasts, a flash
 * sale that never oversells, each state transition legal and illegal with
 * exactly one event, what the catalog and promotions do with the order
 * events (stock confirmed, given back, restocked; coupons given back;
 * ratings), the unpaid auto-cancel and the recovery of a placement left
 * pending, imports deduplicated, queries and the daily summary. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <zmq.h>

#include "check.h"
#include "harness.h"
#include "jcall.h"
#include "slog.h"
#include "util.h"

static jcall_t s_cat = {.service = "shop.catalog.v1.CatalogService"};
static jcall_t s_pro = {.service = "shop.promotions.v1.PromotionsService"};
static jcall_t s_ord = {.service = "shop.orders.v1.OrdersService"};
static PGconn *s_pg;
static const char *s_admin;   /* a connection string reading every schema */
static void *s_zctx;
static harness_service_t s_cat_svc, s_pro_svc, s_ord_svc;

#define s_sql(...) harness_sql(s_pg, __VA_ARGS__)
#define O(...) jcall(&s_ord, __VA_ARGS__)
#define STR(path) jcall_str(&s_ord, path)
#define NUM(path) jcall_num(&s_ord, path)
#define LEN(path) jcall_len(&s_ord, path)

#define ADDRESS "\"shippingAddress\":{\"name\":\"Li Wei\",\"line1\":\"1 West Lake Road\"," \
                "\"city\":\"Hangzhou\",\"country\":\"CN\"}"

/* Waits up to 10 s for a query to give `want` (a consumer catching up). */
static long long s_sql_until(long long want, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static long long s_sql_until(long long want, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    long long v = -1;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    for (int i = 0; i < 100; i++) {
        if ((v = harness_sql(s_pg, "%s", sql)) == want)
            return v;
        util_sleep_ms(100);
    }
    return v;
}

/* A counter's value in a service's /metrics, or -1. */
static long long s_metric(const harness_service_t *svc, const char *name)
{
    return harness_metric(svc->admin_port, name);
}

static void s_product(const char *title, const char *sku, int price, int cost, int stock)
{
    CHECK_INT(jcall(&s_cat, "CreateProduct",
                    "{\"product\":{\"title\":\"%s\",\"category\":\"tea\",\"status\":"
                    "\"PRODUCT_STATUS_ACTIVE\",\"skus\":[{\"code\":\"%s\",\"listPrice\":{"
                    "\"minorUnits\":%d,\"currency\":\"CNY\"},\"costPrice\":{\"minorUnits\":%d,"
                    "\"currency\":\"CNY\"}}]}}", title, sku, price, cost), STATUS_OK);
    if (stock)
        CHECK_INT(jcall(&s_cat, "AdjustStock", "{\"sku\":\"%s\",\"delta\":%d,\"reason\":\"receipt\"}",
                        sku, stock), STATUS_OK);
}

static long long s_reserved(const char *sku)
{
    return s_sql("SELECT reserved FROM catalog.sku WHERE code = '%s'", sku);
}

static long long s_on_hand(const char *sku)
{
    return s_sql("SELECT on_hand FROM catalog.sku WHERE code = '%s'", sku);
}

static long long s_events(const char *id, const char *type)
{
    return s_sql("SELECT count(*) FROM orders.outbox WHERE correlation_id = '%s' "
                 "AND type = 'shop.orders.v1.%s'", id, type);
}

/* Places an order (key may be NULL); the status, the order id in `id`. */
static status_t s_place(char *id, const char *key, const char *customer, const char *lines,
                        const char *coupons)
{
    s_ord.key = key;
    status_t st = O("PlaceOrder", "{\"customerId\":\"%s\",\"lines\":[%s],\"couponCodes\":[%s],%s}",
                    customer, lines, coupons ? coupons : "", ADDRESS);
    s_ord.key = NULL;
    if (id)
        snprintf(id, 40, "%s", st == STATUS_OK ? STR("order.id") : "");
    return st;
}

/* --- placement ----------------------------------------------------------------- */

typedef struct {
    const char *key, *lines, *customer;
    const char *coupons;   /* "\"CODE\"" or NULL */
    status_t status;
    char id[40];
    char message[512];
} racer_t;

static void *s_racer(void *arg)
{
    racer_t *r = arg;
    jcall_t j = {.service = "shop.orders.v1.OrdersService", .key = r->key};

    j.client = client_new(s_zctx, s_ord_svc.rpc);
    r->status = jcall(&j, "PlaceOrder", "{\"customerId\":\"%s\",\"lines\":[%s],\"couponCodes\":[%s],%s}",
                      r->customer, r->lines, r->coupons ? r->coupons : "", ADDRESS);
    snprintf(r->id, sizeof r->id, "%s", r->status == STATUS_OK ? jcall_str(&j, "order.id") : "");
    snprintf(r->message, sizeof r->message, "%s", j.message);
    jcall_done(&j);
    client_destroy(&j.client);
    return NULL;
}

/* n buyers at once, each with its own key when keys is true. */
static int s_race(racer_t *r, size_t n)
{
    pthread_t t[32];
    int ok = 0;

    for (size_t i = 0; i < n; i++)
        pthread_create(&t[i], NULL, s_racer, &r[i]);
    for (size_t i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ok += r[i].status == STATUS_OK;
        if (r[i].status != STATUS_OK && r[i].status != STATUS_FAILED_PRECONDITION)
            fprintf(stderr, "test: buyer %zu: %s %s\n", i, status_name(r[i].status), r[i].message);
    }
    return ok;
}

static void s_placement(void)
{
    char id[40], again[40];

    /* priced by promotions, reserved by the catalog */
    CHECK_INT(s_place(id, "k-1", "c1", "{\"sku\":\"TEA-A\",\"quantity\":2},{\"sku\":\"CUP-1\",\"quantity\":1}",
                      "\"WELCOME10\""), STATUS_OK);
    CHECK_STR(STR("order.state"), "ORDER_STATE_PLACED");
    CHECK_STR(STR("order.channel"), "shop");
    CHECK_INT(NUM("order.subtotal.minorUnits"), 22000);
    /* 10% off the tea (2000) and the coupon (1000) */
    CHECK_INT(NUM("order.discount.minorUnits"), 3000);
    CHECK_INT(NUM("order.total.minorUnits"), 19000);
    CHECK_INT(LEN("order.promotions"), 2);
    CHECK_STR(STR("order.couponCodes[0]"), "WELCOME10");
    CHECK(strstr(STR("order.promotions[0].reason"), "10%") != NULL);
    CHECK_STR(STR("order.lines[0].sku"), "CUP-1");
    /* the coupon is shared over the lines: their totals make the order's */
    CHECK_INT(NUM("order.lines[0].total.minorUnits") + NUM("order.lines[1].total.minorUnits"), 19000);
    CHECK_STR(STR("order.shippingAddress.city"), "Hangzhou");
    CHECK_INT(s_reserved("TEA-A"), 2);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'"), 1);
    CHECK_INT(s_events(id, "OrderPlaced"), 1);

    /* the same key: the same order, nothing taken twice */
    CHECK_INT(s_place(again, "k-1", "c1", "{\"sku\":\"TEA-A\",\"quantity\":2},{\"sku\":\"CUP-1\",\"quantity\":1}",
                      "\"WELCOME10\""), STATUS_OK);
    CHECK_STR(again, id);
    CHECK_INT(s_reserved("TEA-A"), 2);
    CHECK_INT(s_events(id, "OrderPlaced"), 1);
    /* the same key for another cart */
    CHECK_INT(s_place(NULL, "k-1", "c1", "{\"sku\":\"TEA-A\",\"quantity\":1}", NULL), STATUS_ALREADY_EXISTS);
    /* another customer's key space */
    CHECK_INT(s_place(again, "k-1", "c2", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL), STATUS_OK);
    CHECK(strcmp(again, id) != 0);

    /* concurrent retries of one placement: one order */
    racer_t r[8];
    for (size_t i = 0; i < 8; i++)
        r[i] = (racer_t){.key = "k-same", .customer = "c3", .lines = "{\"sku\":\"CUP-1\",\"quantity\":3}"};
    CHECK_INT(s_race(r, 8), 8);
    for (size_t i = 1; i < 8; i++)
        CHECK_STR(r[i].id, r[0].id);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE customer_id = 'c3'"), 1);
    CHECK_INT(s_sql("SELECT sum(quantity) FROM catalog.reservation_line WHERE order_id = '%s'", r[0].id), 3);
    CHECK_INT(s_events(r[0].id, "OrderPlaced"), 1);

    /* a shortage: nothing kept, the key free again */
    long long orders = s_sql("SELECT count(*) FROM orders.orders WHERE state <> 'failed'");
    CHECK_INT(s_place(NULL, "k-pot", "c4", "{\"sku\":\"POT-1\",\"quantity\":6}", NULL), STATUS_FAILED_PRECONDITION);
    CHECK_INT(LEN("shortages"), 1);
    CHECK_STR(STR("shortages[0].sku"), "POT-1");
    CHECK_INT(NUM("shortages[0].available"), 5);
    CHECK_INT(s_reserved("POT-1"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE state <> 'failed'"), orders);
    /* the same with a coupon: no use of it is kept */
    long long welcome = s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'");
    CHECK_INT(s_place(NULL, "k-pot-c", "c5", "{\"sku\":\"POT-1\",\"quantity\":6}", "\"WELCOME10\""),
              STATUS_FAILED_PRECONDITION);
    CHECK_STR(STR("shortages[0].sku"), "POT-1");
    CHECK_INT(s_sql_until(0, "SELECT count(*) FROM promotions.redemption WHERE customer_id = 'c5' "
                             "AND state <> 'released'"), 0);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'"), welcome);
    CHECK_INT(s_reserved("POT-1"), 0);
    CHECK_INT(jcall(&s_cat, "AdjustStock", "{\"sku\":\"POT-1\",\"delta\":1,\"reason\":\"receipt\"}"), STATUS_OK);
    CHECK_INT(s_place(id, "k-pot", "c4", "{\"sku\":\"POT-1\",\"quantity\":6}", NULL), STATUS_OK);
    CHECK_INT(s_reserved("POT-1"), 6);
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"%s\"}", id), STATUS_OK);
    CHECK_INT(s_sql_until(0, "SELECT reserved FROM catalog.sku WHERE code = 'POT-1'"), 0);

    /* a coupon that no longer applies (one use per customer): the stock it
     * had reserved goes back through OrderAbandoned */
    long long tea = s_reserved("TEA-A");
    CHECK_INT(s_place(NULL, "k-2", "c1", "{\"sku\":\"TEA-A\",\"quantity\":1}", "\"WELCOME10\""),
              STATUS_FAILED_PRECONDITION);
    CHECK(strstr(s_ord.message, "coupon WELCOME10") != NULL);
    CHECK_INT(s_sql_until(tea, "SELECT reserved FROM catalog.sku WHERE code = 'TEA-A'"), tea);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'"), 1);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders o WHERE state = 'failed' AND EXISTS "
                    "(SELECT 1 FROM orders.outbox x WHERE x.correlation_id = o.id "
                    " AND x.type = 'shop.orders.v1.OrderAbandoned')"),
              s_sql("SELECT count(*) FROM orders.orders WHERE state = 'failed'"));
    /* an unknown SKU */
    CHECK_INT(s_place(NULL, NULL, "c1", "{\"sku\":\"NOPE-1\",\"quantity\":1}", NULL), STATUS_NOT_FOUND);
    CHECK(strstr(s_ord.message, "NOPE-1") != NULL);
}

/* 8 racers placing one cart under one key all get the one order, placed,
 * nothing given back. */
static void s_one_order(const char *key, const char *lines, const char *coupons)
{
    racer_t r[8];

    for (size_t i = 0; i < 8; i++)
        r[i] = (racer_t){.key = key, .customer = "c-race", .lines = lines, .coupons = coupons};
    CHECK_INT(s_race(r, 8), 8);
    for (size_t i = 1; i < 8; i++)
        CHECK_STR(r[i].id, r[0].id);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE id = '%s' AND state = 'placed'", r[0].id), 1);
    CHECK_INT(s_events(r[0].id, "OrderAbandoned"), 0);
}

/* Concurrent retries of one placement racing for the last units: an
 * attempt that loses the stock to its own twin must not give the order up,
 * nor give back what the twin took. Several rounds: the window is narrow. */
static void s_retry_races(void)
{
    for (int round = 0; round < 4; round++) {
        char sku[16], key[16], lines[64];
        snprintf(sku, sizeof sku, "RACE-%d", round);
        snprintf(key, sizeof key, "k-race-%d", round);
        snprintf(lines, sizeof lines, "{\"sku\":\"%s\",\"quantity\":3}", sku);
        s_product("Last three", sku, 1000, 500, 3);
        /* promotions prices it once it has applied the catalog's event */
        CHECK_INT(jcall_until_ok(&s_pro, 10000, "Quote", "{\"lines\":[{\"sku\":\"%s\",\"quantity\":1}]}",
                                 sku), STATUS_OK);
        s_one_order(key, lines, NULL);
        CHECK_INT(s_reserved(sku), 3);
    }
    /* the same for a coupon's last use */
    for (int round = 0; round < 3; round++) {
        char code[24], quoted[32], key[24];
        snprintf(code, sizeof code, "LASTUSE-%d", round);
        snprintf(quoted, sizeof quoted, "\"%s\"", code);
        snprintf(key, sizeof key, "k-coupon-%d", round);
        CHECK_INT(jcall(&s_pro, "CreateCoupon", "{\"coupon\":{\"code\":\"%s\",\"kind\":"
                        "\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":100,\"currency\":"
                        "\"CNY\"},\"totalLimit\":1}}", code), STATUS_OK);
        s_one_order(key, "{\"sku\":\"CUP-1\",\"quantity\":1}", quoted);
        CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = '%s'", code), 1);
    }
}

/* A placement given up after a verdict that reserved and redeemed nothing:
 * a reservation or a redemption for it that arrives later (a call its
 * caller stopped waiting for) is refused, and takes nothing. */
static void s_late_calls(void)
{
    char id[40] = "";

    CHECK_INT(s_place(NULL, NULL, "c-late", "{\"sku\":\"NOPE-2\",\"quantity\":1}", NULL),
              STATUS_NOT_FOUND);
    PGresult *r = PQexec(s_pg, "SELECT id FROM orders.orders WHERE customer_id = 'c-late' AND state = 'failed'");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    CHECK(id[0] != '\0');
    /* both consumers of OrderAbandoned record the order as released */
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' "
                             "AND state = 'released'", id), 1);
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM promotions.redemption WHERE order_id = '%s' "
                             "AND state = 'released'", id), 1);
    long long cups = s_reserved("CUP-1");
    CHECK_INT(jcall(&s_cat, "ReserveStock", "{\"orderId\":\"%s\",\"lines\":[{\"sku\":\"CUP-1\","
                    "\"quantity\":1}]}", id), STATUS_FAILED_PRECONDITION);
    CHECK_INT(s_reserved("CUP-1"), cups);
    long long used = s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'");
    CHECK_INT(jcall(&s_pro, "Redeem", "{\"orderId\":\"%s\",\"quote\":{\"customerId\":\"c-late\","
                    "\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],\"couponCodes\":[\"WELCOME10\"]}}",
                    id), STATUS_FAILED_PRECONDITION);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'"), used);
    /* a day on, no late call can come: the records go */
    CHECK_INT(s_sql("WITH u AS (UPDATE catalog.reservation SET released_at = released_at - interval '2 days', "
                    "expires_at = expires_at - interval '2 days' WHERE order_id = '%s' RETURNING 1) "
                    "SELECT count(*) FROM u", id), 1);
    CHECK_INT(s_sql("WITH u AS (UPDATE promotions.redemption SET released_at = released_at - interval '2 days' "
                    "WHERE order_id = '%s' RETURNING 1) SELECT count(*) FROM u", id), 1);
    CHECK_INT(s_sql_until(0, "SELECT count(*) FROM catalog.reservation WHERE order_id = '%s'", id), 0);
    CHECK_INT(s_sql_until(0, "SELECT count(*) FROM promotions.redemption WHERE order_id = '%s'", id), 0);
}

/* An OrderAbandoned for an order whose reservation was sold (confirmed)
 * cannot be: a given-up placement is never paid. The catalog reports it
 * and leaves the stock as it is (written into the orders outbox here, as a
 * faulty producer would publish it). */
static void s_abandoned_sold(void)
{
    long long sold = s_metric(&s_cat_svc, "shop_anomalies_total{kind=\"abandoned_order_sold\"}");

    CHECK_INT(jcall(&s_cat, "ReserveStock", "{\"orderId\":\"O-SOLD\",\"lines\":[{\"sku\":"
                    "\"CUP-1\",\"quantity\":1}]}"), STATUS_OK);
    CHECK_INT(jcall(&s_cat, "ConfirmReservation", "{\"orderId\":\"O-SOLD\"}"), STATUS_OK);
    long long on_hand = s_sql("SELECT on_hand FROM catalog.sku WHERE code = 'CUP-1'");
    /* OrderAbandoned{order_id: "O-SOLD"} */
    CHECK_INT(s_sql("WITH i AS (INSERT INTO orders.outbox (type, payload, correlation_id) VALUES "
                    "('shop.orders.v1.OrderAbandoned', '\\x0a064f2d534f4c44'::bytea, 'O-SOLD') "
                    "RETURNING 1) SELECT count(*) FROM i"), 1);
    for (int i = 0; i < 100 && s_metric(&s_cat_svc, "shop_anomalies_total{kind=\"abandoned_order_sold\"}") != sold + 1; i++)
        util_sleep_ms(100);
    CHECK_INT(s_metric(&s_cat_svc, "shop_anomalies_total{kind=\"abandoned_order_sold\"}"), sold + 1);
    CHECK_INT(s_sql("SELECT on_hand FROM catalog.sku WHERE code = 'CUP-1'"), on_hand);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = 'O-SOLD' "
                    "AND state = 'confirmed'"), 1);
}

/* Order ids: 100 bits of Crockford's base32 after an O, random without a
 * key, derived from the key otherwise; a placement is written once. */
static bool s_id_ok(const char *id)
{
    if (strlen(id) != 21 || id[0] != 'O')
        return false;
    for (size_t i = 1; i < 21; i++)
        if (!strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", id[i]))
            return false;
    return true;
}

/* Holds of 1 s under order id `order` in promotions (a coupon use) and the
 * catalog (stock), then 4 s: past their end, several maintenance ticks and
 * heartbeats. */
static void s_short_holds(const char *order, const char *customer)
{
    CHECK_INT(jcall(&s_pro, "Redeem", "{\"orderId\":\"%s\",\"holdSeconds\":1,\"quote\":{"
                    "\"customerId\":\"%s\",\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],"
                    "\"couponCodes\":[\"WELCOME10\"]}}", order, customer), STATUS_OK);
    CHECK_INT(jcall(&s_cat, "ReserveStock", "{\"orderId\":\"%s\",\"ttlSeconds\":1,\"lines\":[{"
                    "\"sku\":\"TEA-A\",\"quantity\":1}]}", order), STATUS_OK);
    util_sleep_ms(4000);
}

/* Both of s_short_holds' holds still held, though past their end. */
static void s_holds_kept(const char *order)
{
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' "
                    "AND state = 'held' AND expires_at < now()", order), 1);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.redemption WHERE order_id = '%s' "
                    "AND state = 'redeemed' AND expires_at < now()", order), 1);
}

/* Both given back soon, each counted as an anomaly (`expired` in all). */
static void s_holds_end(const char *order, long long expired)
{
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' "
                             "AND state = 'expired'", order), 1);
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM promotions.redemption WHERE order_id = '%s' "
                             "AND state = 'released'", order), 1);
    CHECK_INT(s_metric(&s_cat_svc, "shop_anomalies_total{kind=\"reservation_expired\"}"), expired);
    CHECK_INT(s_metric(&s_pro_svc, "shop_anomalies_total{kind=\"hold_expired\"}"), expired);
}

/* A hold does not end while the consumer that would apply its order's
 * events runs behind: a payment it has yet to apply could make the hold
 * permanent. Here both consumers of the orders stream are held back (their
 * cursor tables locked against writes) while OrderPlaced waits for them;
 * holds of 1 s stay held, and go back once the consumers have caught up. */
static void s_hold_while_behind(void)
{
    PGconn *lock = PQconnectdb(s_admin);
    char id[40];

    CHECK(PQstatus(lock) == CONNECTION_OK);
    /* the stream has been heard from and applied (heartbeats while caught up) */
    CHECK_INT(s_sql_until(2, "SELECT count(*) FROM (SELECT caught_up_at FROM catalog.consumer_cursor "
                             "WHERE stream = 'orders' UNION ALL SELECT caught_up_at FROM "
                             "promotions.consumer_cursor WHERE stream = 'orders') c "
                             "WHERE caught_up_at > now() - interval '10 seconds'"), 2);
    /* the cursors locked against writes (a table lock: no xid, so the
     * relays go on numbering and the consumers fall behind the head) */
    PGresult *r = PQexec(lock, "BEGIN; LOCK TABLE catalog.consumer_cursor, promotions.consumer_cursor "
                               "IN EXCLUSIVE MODE");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    long long behind = s_sql("SELECT position FROM catalog.consumer_cursor WHERE stream = 'orders'");
    CHECK_INT(s_place(id, "k-behind", "c-behind", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL),
              STATUS_OK);
    CHECK_INT(s_sql_until(1, "SELECT (max(position) > %lld)::int FROM orders.outbox", behind), 1);
    s_short_holds("O-BEHIND", "c-behind");
    CHECK_INT(s_sql("SELECT position FROM catalog.consumer_cursor WHERE stream = 'orders'"), behind);
    s_holds_kept("O-BEHIND");
    r = PQexec(lock, "COMMIT");
    PQclear(r);
    PQfinish(lock);
    s_holds_end("O-BEHIND", 2);   /* caught up */
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' AND state = 'held'",
                    id), 1);
}

/* A transaction holding an xid, left open: no relay of the cluster numbers
 * what commits after it until s_commit. */
static PGconn *s_open_xid(void)
{
    PGconn *c = PQconnectdb(s_admin);
    PGresult *r = PQexec(c, "BEGIN; SELECT pg_current_xact_id()");

    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
    PQclear(r);
    return c;
}

static void s_commit(PGconn *c)
{
    PGresult *r = PQexec(c, "COMMIT");

    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

/* A transaction left open in the cluster keeps the relays from numbering
 * what commits after it: OrderPlaced waits unnumbered, and the heartbeats
 * (their head unchanged, the consumers at it) must not let holds end. */
static void s_hold_while_unnumbered(void)
{
    PGconn *open_tx = s_open_xid();
    char id[40];

    long long head = s_sql("SELECT coalesce(max(position), 0) FROM orders.outbox");
    CHECK_INT(s_place(id, "k-unnumbered", "c-unnumbered", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL),
              STATUS_OK);
    s_short_holds("O-UNNUMBERED", "c-unnumbered");
    CHECK_INT(s_sql("SELECT count(*) FROM orders.outbox WHERE position IS NULL"), 1);   /* OrderPlaced */
    CHECK_INT(s_sql("SELECT coalesce(max(position), 0) FROM orders.outbox"), head);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.consumer_cursor WHERE stream = 'orders' "
                    "AND position = %lld", head), 1);   /* the consumer is at the head */
    s_holds_kept("O-UNNUMBERED");
    s_commit(open_tx);
    s_holds_end("O-UNNUMBERED", 3);
    CHECK_INT(s_sql_until(0, "SELECT count(*) FROM orders.outbox WHERE position IS NULL"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' AND state = 'held'",
                    id), 1);
}

static void s_order_ids(void)
{
    char a[40], b[40], c[40], d[40];

    CHECK_INT(s_place(a, NULL, "c-num", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL), STATUS_OK);
    CHECK_INT(s_place(b, NULL, "c-num", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL), STATUS_OK);
    CHECK(s_id_ok(a) && s_id_ok(b));
    CHECK(strcmp(a, b) != 0);
    /* one write: placed in the transaction that created the row */
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE id IN ('%s', '%s') "
                    "AND created_at = placed_at AND updated_at = placed_at", a, b), 2);
    /* with a key: a failed attempt, then the key places an order of its own */
    CHECK_INT(s_place(NULL, "k-ids", "c-num", "{\"sku\":\"LAST-1\",\"quantity\":50}", NULL),
              STATUS_FAILED_PRECONDITION);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE customer_id = 'c-num' "
                    "AND freed_key = 'k-ids' AND state = 'failed' AND idem_key IS NULL"), 1);
    CHECK_INT(jcall(&s_cat, "AdjustStock", "{\"sku\":\"LAST-1\",\"delta\":50,\"reason\":\"receipt\"}"),
              STATUS_OK);
    CHECK_INT(s_place(c, "k-ids", "c-num", "{\"sku\":\"LAST-1\",\"quantity\":50}", NULL), STATUS_OK);
    CHECK(s_id_ok(c));
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE freed_key = 'k-ids' AND id <> '%s'", c), 1);
    long long last = s_reserved("LAST-1");
    CHECK(last >= 50);
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"%s\"}", c), STATUS_OK);
    CHECK_INT(s_sql_until(last - 50, "SELECT reserved FROM catalog.sku WHERE code = 'LAST-1'"), last - 50);
    CHECK_INT(jcall(&s_cat, "AdjustStock", "{\"sku\":\"LAST-1\",\"delta\":-50,\"reason\":\"correction\"}"),
              STATUS_OK);
    /* a placement cut short after its reservation (here: its row removed)
     * is finished by a retry under the same id, whatever another cart
     * under the key did meanwhile */
    char e[40], f[40];
    CHECK_INT(s_place(e, "k-cut", "c-cut", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL), STATUS_OK);
    CHECK_INT(s_sql("WITH d AS (DELETE FROM orders.orders WHERE id = '%s' RETURNING 1) "
                    "SELECT count(*) FROM d", e), 1);
    CHECK_INT(s_place(NULL, "k-cut", "c-cut", "{\"sku\":\"POT-1\",\"quantity\":99}", NULL),
              STATUS_FAILED_PRECONDITION);
    CHECK_INT(s_place(f, "k-cut", "c-cut", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL), STATUS_OK);
    CHECK_STR(f, e);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' AND state = 'held'", e), 1);
    /* ... but not once it began more than the pending timeout ago: given up
     * (its stock goes back), and the retry after that gets an id of its own */
    CHECK_INT(s_sql("WITH d AS (DELETE FROM orders.orders WHERE id = '%s' RETURNING 1) "
                    "SELECT count(*) FROM d", e), 1);
    /* (its making, as the catalog reports it, is what counts) */
    CHECK_INT(s_sql("WITH u AS (UPDATE catalog.reservation SET created_at = created_at - interval '61 seconds' "
                    "WHERE order_id = '%s' RETURNING 1) SELECT count(*) FROM u", e), 1);
    CHECK_INT(s_place(NULL, "k-cut", "c-cut", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL), STATUS_ABORTED);
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' "
                             "AND state = 'released'", e), 1);
    CHECK_INT(s_place(f, "k-cut", "c-cut", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL), STATUS_OK);
    CHECK(strcmp(f, e) != 0);
    CHECK_INT(s_sql("SELECT round(extract(epoch FROM expires_at - created_at)) FROM catalog.reservation "
                    "WHERE order_id = '%s'", f), 2460);
    /* the stock and the coupon use are held past the latest the order can be
     * cancelled for not being paid: pending timeout (60 s) + unpaid timeout
     * (1800 s) + 600 s */
    CHECK_INT(s_place(d, "k-hold", "c-hold", "{\"sku\":\"TEA-A\",\"quantity\":1}", "\"WELCOME10\""),
              STATUS_OK);
    long long total = NUM("order.total.minorUnits");
    CHECK_INT(s_sql("SELECT round(extract(epoch FROM expires_at - created_at)) FROM catalog.reservation "
                    "WHERE order_id = '%s'", d), 2460);
    CHECK_INT(s_sql("SELECT round(extract(epoch FROM expires_at - created_at)) FROM promotions.redemption "
                    "WHERE order_id = '%s'", d), 2460);
    /* paid: the coupon use is the order's for good */
    CHECK_INT(O("MarkPaid", "{\"orderId\":\"%s\",\"amount\":{\"minorUnits\":%lld,\"currency\":\"CNY\"},"
                "\"paymentReference\":\"pay-hold\"}", d, total), STATUS_OK);
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM promotions.redemption WHERE order_id = '%s' "
                             "AND state = 'redeemed' AND expires_at IS NULL", d), 1);
    /* a redemption whose order never comes: given back when its hold ends */
    long long used = s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'");
    CHECK_INT(jcall(&s_pro, "Redeem", "{\"orderId\":\"O-NEVER\",\"holdSeconds\":1,\"quote\":{"
                    "\"customerId\":\"c-never\",\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],"
                    "\"couponCodes\":[\"WELCOME10\"]}}"), STATUS_OK);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'"), used + 1);
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM promotions.redemption WHERE order_id = 'O-NEVER' "
                             "AND state = 'released'"), 1);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'"), used);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.outbox WHERE correlation_id = 'O-NEVER' "
                    "AND type = 'shop.promotions.v1.CouponReleased'"), 1);
    /* and its stock, the same */
    long long tea = s_reserved("TEA-A");
    CHECK_INT(jcall(&s_cat, "ReserveStock", "{\"orderId\":\"O-NEVER\",\"ttlSeconds\":1,\"lines\":[{"
                    "\"sku\":\"TEA-A\",\"quantity\":1}]}"), STATUS_OK);
    CHECK_INT(s_reserved("TEA-A"), tea + 1);
    CHECK_INT(s_sql_until(tea, "SELECT reserved FROM catalog.sku WHERE code = 'TEA-A'"), tea);
    /* both counted as anomalies: a placement that never finished */
    CHECK_INT(s_metric(&s_pro_svc, "shop_anomalies_total{kind=\"hold_expired\"}"), 1);
    CHECK_INT(s_metric(&s_cat_svc, "shop_anomalies_total{kind=\"reservation_expired\"}"), 1);
    s_hold_while_behind();
    s_hold_while_unnumbered();
    /* a hold longer than 7 days is refused */
    CHECK_INT(jcall(&s_pro, "Redeem", "{\"orderId\":\"O-LONG\",\"holdSeconds\":604801,\"quote\":{"
                    "\"customerId\":\"c-long\",\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}]}}"),
              STATUS_INVALID_ARGUMENT);
}

static void s_flash_sale(void)
{
    racer_t r[20];
    char keys[20][16];

    for (size_t i = 0; i < 20; i++) {
        snprintf(keys[i], sizeof keys[i], "flash-%zu", i);
        r[i] = (racer_t){.key = keys[i], .customer = "flash", .lines = "{\"sku\":\"LAST-1\",\"quantity\":1}"};
    }
    CHECK_INT(s_race(r, 20), 3);
    int short_ = 0;
    for (size_t i = 0; i < 20; i++)
        short_ += r[i].status == STATUS_FAILED_PRECONDITION;
    CHECK_INT(short_, 17);
    CHECK_INT(s_reserved("LAST-1"), 3);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE customer_id = 'flash' AND state = 'placed'"), 3);
}

static void s_bad_input(void)
{
    long long before = s_sql("SELECT count(*) FROM orders.orders");
    const struct {
        const char *json, *why;
    } bad[] = {
        {"{\"customerId\":\"c1\",\"lines\":[]," ADDRESS "}", "lines"},
        {"{\"customerId\":\"\",\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}]," ADDRESS "}", "customer_id"},
        {"{\"customerId\":\"c1\",\"lines\":[{\"sku\":\"TEA A\",\"quantity\":1}]," ADDRESS "}", "lines[0].sku"},
        {"{\"customerId\":\"c1\",\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":0}]," ADDRESS "}", "quantity"},
        {"{\"customerId\":\"c1\",\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1},{\"sku\":\"TEA-A\","
         "\"quantity\":1}]," ADDRESS "}", "already on line 0"},
        {"{\"customerId\":\"c1\",\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}]}", "shipping_address"},
        {"{\"customerId\":\"c1\",\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],\"shippingAddress\":"
         "{\"name\":\"A\",\"line1\":\"B\",\"city\":\"C\",\"country\":\"China\"}}", "country"},
        {"{\"customerId\":\"c1\",\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],\"couponCodes\":"
         "[\"A\",\"B\",\"C\",\"D\",\"E\",\"F\"]," ADDRESS "}", "coupon_codes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(O("PlaceOrder", "%s", bad[i].json), STATUS_INVALID_ARGUMENT);
        if (!strstr(s_ord.message, bad[i].why))
            fprintf(stderr, "test: \"%s\" does not name %s\n", s_ord.message, bad[i].why);
        CHECK(strstr(s_ord.message, bad[i].why) != NULL);
    }
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders"), before);
    CHECK_INT(O("MarkPaid", "{\"orderId\":\"O-nope\",\"amount\":{\"minorUnits\":1,\"currency\":\"CNY\"},"
                "\"paymentReference\":\"p\"}"), STATUS_NOT_FOUND);
    CHECK_INT(O("MarkPaid", "{\"orderId\":\"O-nope\",\"paymentReference\":\"p\"}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("GetOrder", "{}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("GetOrder", "{\"id\":\"x\",\"channel\":\"tmall\"}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("GetOrder", "{\"id\":\"O-nope\"}"), STATUS_NOT_FOUND);
}

/* --- the state machine ------------------------------------------------------------ */

static void s_lifecycle(void)
{
    char id[40];

    CHECK_INT(s_place(id, "life-1", "c5", "{\"sku\":\"TEA-A\",\"quantity\":1}", NULL), STATUS_OK);
    long long total = NUM("order.total.minorUnits");
    long long on_hand = s_on_hand("TEA-A");
    /* illegal from placed: nothing changes, no event */
    CHECK_INT(O("StartFulfilment", "{\"orderId\":\"%s\"}", id), STATUS_FAILED_PRECONDITION);
    CHECK(strstr(s_ord.message, "is placed") != NULL);
    CHECK_INT(O("MarkShipped", "{\"orderId\":\"%s\",\"carrier\":\"SF\",\"trackingNumber\":\"1\"}", id),
              STATUS_FAILED_PRECONDITION);
    CHECK_INT(O("MarkDelivered", "{\"orderId\":\"%s\"}", id), STATUS_FAILED_PRECONDITION);
    CHECK_INT(O("CompleteOrder", "{\"orderId\":\"%s\"}", id), STATUS_FAILED_PRECONDITION);
    CHECK_INT(O("RefundOrder", "{\"orderId\":\"%s\"}", id), STATUS_FAILED_PRECONDITION);
    /* paid: the amount must match */
    CHECK_INT(O("MarkPaid", "{\"orderId\":\"%s\",\"amount\":{\"minorUnits\":%lld,\"currency\":\"CNY\"},"
                "\"paymentReference\":\"pay-1\"}", id, total - 1), STATUS_FAILED_PRECONDITION);
    CHECK(strstr(s_ord.message, "does not match") != NULL);
    CHECK_INT(O("MarkPaid", "{\"orderId\":\"%s\",\"amount\":{\"minorUnits\":%lld,\"currency\":\"CNY\"},"
                "\"paymentReference\":\"pay-1\"}", id, total), STATUS_OK);
    CHECK_STR(STR("order.state"), "ORDER_STATE_PAID");
    CHECK_STR(STR("order.paymentReference"), "pay-1");
    CHECK(NUM("order.paidAtMs") > 0);
    /* the provider calls back twice: no second event */
    CHECK_INT(O("MarkPaid", "{\"orderId\":\"%s\",\"amount\":{\"minorUnits\":%lld,\"currency\":\"CNY\"},"
                "\"paymentReference\":\"pay-1\"}", id, total), STATUS_OK);
    CHECK_INT(O("MarkPaid", "{\"orderId\":\"%s\",\"amount\":{\"minorUnits\":%lld,\"currency\":\"CNY\"},"
                "\"paymentReference\":\"pay-2\"}", id, total), STATUS_FAILED_PRECONDITION);
    CHECK_INT(s_events(id, "OrderPaid"), 1);
    /* the catalog sells the held unit */
    CHECK_INT(s_sql_until(on_hand - 1, "SELECT on_hand FROM catalog.sku WHERE code = 'TEA-A'"), on_hand - 1);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' AND state = 'confirmed'", id), 1);

    CHECK_INT(O("MarkDelivered", "{\"orderId\":\"%s\"}", id), STATUS_FAILED_PRECONDITION);
    CHECK_INT(O("StartFulfilment", "{\"orderId\":\"%s\"}", id), STATUS_OK);
    CHECK_STR(STR("order.state"), "ORDER_STATE_FULFILLING");
    CHECK_INT(O("MarkShipped", "{\"orderId\":\"%s\",\"carrier\":\"\",\"trackingNumber\":\"1\"}", id),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("MarkShipped", "{\"orderId\":\"%s\",\"carrier\":\"SF Express\",\"trackingNumber\":\"SF123\"}", id),
              STATUS_OK);
    CHECK_STR(STR("order.trackingNumber"), "SF123");
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"%s\"}", id), STATUS_FAILED_PRECONDITION);
    CHECK(strstr(s_ord.message, "is shipped") != NULL);
    /* no review before delivery */
    CHECK_INT(O("PostReview", "{\"orderId\":\"%s\",\"sku\":\"TEA-A\",\"customerId\":\"c5\",\"rating\":5}", id),
              STATUS_FAILED_PRECONDITION);
    CHECK_INT(O("MarkDelivered", "{\"orderId\":\"%s\"}", id), STATUS_OK);
    CHECK_STR(STR("order.state"), "ORDER_STATE_DELIVERED");

    /* reviews */
    CHECK_INT(O("PostReview", "{\"orderId\":\"%s\",\"sku\":\"TEA-A\",\"customerId\":\"c9\",\"rating\":5}", id),
              STATUS_PERMISSION_DENIED);
    CHECK_INT(O("PostReview", "{\"orderId\":\"%s\",\"sku\":\"CUP-1\",\"customerId\":\"c5\",\"rating\":5}", id),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("PostReview", "{\"orderId\":\"%s\",\"sku\":\"TEA-A\",\"customerId\":\"c5\",\"rating\":6}", id),
              STATUS_INVALID_ARGUMENT);
    long long count = s_sql("SELECT rating_count FROM catalog.product p JOIN catalog.sku s "
                            "ON s.product_id = p.id WHERE s.code = 'TEA-A'");
    CHECK_INT(O("PostReview", "{\"orderId\":\"%s\",\"sku\":\"TEA-A\",\"customerId\":\"c5\",\"rating\":2,"
                "\"text\":\"Stale leaves\"}", id), STATUS_OK);
    CHECK_STR(STR("review.sentiment"), "SENTIMENT_NEGATIVE");
    CHECK_INT(O("PostReview", "{\"orderId\":\"%s\",\"sku\":\"TEA-A\",\"customerId\":\"c5\",\"rating\":4}", id),
              STATUS_ALREADY_EXISTS);
    CHECK_INT(s_sql_until(count + 1, "SELECT rating_count FROM catalog.product p JOIN catalog.sku s "
                                     "ON s.product_id = p.id WHERE s.code = 'TEA-A'"), count + 1);
    CHECK_INT(O("GetOrder", "{\"id\":\"%s\"}", id), STATUS_OK);
    CHECK_INT(LEN("reviews"), 1);
    CHECK_STR(STR("reviews[0].text"), "Stale leaves");

    CHECK_INT(O("CompleteOrder", "{\"orderId\":\"%s\"}", id), STATUS_OK);
    CHECK_INT(O("RefundOrder", "{\"orderId\":\"%s\",\"reason\":\"leaves were stale\"}", id), STATUS_OK);
    CHECK_STR(STR("order.state"), "ORDER_STATE_REFUNDED");
    CHECK_STR(STR("order.reason"), "leaves were stale");
    CHECK_INT(O("RefundOrder", "{\"orderId\":\"%s\"}", id), STATUS_OK);   /* already */
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"%s\"}", id), STATUS_FAILED_PRECONDITION);
    CHECK_INT(O("MarkPaid", "{\"orderId\":\"%s\",\"amount\":{\"minorUnits\":%lld,\"currency\":\"CNY\"},"
                "\"paymentReference\":\"pay-1\"}", id, total), STATUS_FAILED_PRECONDITION);
    /* one event per transition, nothing for the refusals and repeats */
    const char *types[] = {"OrderPlaced", "OrderPaid", "OrderFulfilling", "OrderShipped",
                           "OrderDelivered", "OrderCompleted", "OrderRefunded", "ReviewPosted"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        CHECK_INT(s_events(id, types[i]), 1);
    CHECK_INT(s_events(id, "OrderCancelled"), 0);

    /* cancelled before payment: stock and coupon back */
    CHECK_INT(s_place(id, "life-2", "c6", "{\"sku\":\"TEA-A\",\"quantity\":1}", "\"WELCOME10\""), STATUS_OK);
    long long used = s_sql("SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'");
    long long held = s_reserved("TEA-A");
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"%s\",\"reason\":\"changed my mind\"}", id), STATUS_OK);
    CHECK_STR(STR("order.state"), "ORDER_STATE_CANCELLED");
    CHECK_INT(s_sql_until(held - 1, "SELECT reserved FROM catalog.sku WHERE code = 'TEA-A'"), held - 1);
    CHECK_INT(s_sql_until(used - 1, "SELECT used FROM promotions.coupon WHERE code = 'WELCOME10'"), used - 1);
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"%s\"}", id), STATUS_OK);   /* already */
    CHECK_INT(s_events(id, "OrderCancelled"), 1);

    /* cancelled after payment: the sold unit goes back on hand */
    CHECK_INT(s_place(id, "life-3", "c7", "{\"sku\":\"CUP-1\",\"quantity\":2}", NULL), STATUS_OK);
    total = NUM("order.total.minorUnits");
    on_hand = s_on_hand("CUP-1");
    CHECK_INT(O("MarkPaid", "{\"orderId\":\"%s\",\"amount\":{\"minorUnits\":%lld,\"currency\":\"CNY\"},"
                "\"paymentReference\":\"pay-3\"}", id, total), STATUS_OK);
    CHECK_INT(s_sql_until(on_hand - 2, "SELECT on_hand FROM catalog.sku WHERE code = 'CUP-1'"), on_hand - 2);
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"%s\"}", id), STATUS_OK);
    CHECK_INT(s_sql_until(on_hand, "SELECT on_hand FROM catalog.sku WHERE code = 'CUP-1'"), on_hand);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.outbox WHERE correlation_id = '%s' AND "
                    "type = 'shop.orders.v1.OrderCancelled'", id), 1);
}

/* --- timers: unpaid orders, placements left pending ------------------------------------ */

static void s_timers(void)
{
    char id[40];

    CHECK_INT(s_place(id, "late-1", "c8", "{\"sku\":\"TEA-A\",\"quantity\":1}", NULL), STATUS_OK);
    long long held = s_reserved("TEA-A");
    /* as if placed two hours ago */
    CHECK_INT(s_sql("WITH u AS (UPDATE orders.orders SET updated_at = now() - interval '2 hours' "
                    "WHERE id = '%s' RETURNING 1) SELECT count(*) FROM u", id), 1);
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM orders.orders WHERE id = '%s' AND state = 'cancelled'", id), 1);
    CHECK_INT(O("GetOrder", "{\"id\":\"%s\"}", id), STATUS_OK);
    CHECK(strstr(STR("order.reason"), "not paid within") != NULL);
    CHECK_INT(s_sql_until(held - 1, "SELECT reserved FROM catalog.sku WHERE code = 'TEA-A'"), held - 1);

    /* a placement that crashed after reserving: a pending row and a held
     * reservation under its id */
    held = s_reserved("TEA-A");
    CHECK_INT(jcall(&s_cat, "ReserveStock", "{\"orderId\":\"O-crashed\",\"lines\":[{\"sku\":\"TEA-A\","
                    "\"quantity\":2}]}"), STATUS_OK);
    CHECK_INT(s_sql("WITH i AS (INSERT INTO orders.orders (id, customer_id, state, channel, idem_key, "
                    "updated_at) VALUES ('O-crashed', 'c9', 'pending', 'shop', 'k-crash', "
                    "now() - interval '10 minutes') RETURNING 1) SELECT count(*) FROM i"), 1);
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM orders.orders WHERE id = 'O-crashed' AND state = 'failed'"), 1);
    CHECK_INT(s_sql_until(held, "SELECT reserved FROM catalog.sku WHERE code = 'TEA-A'"), held);
    CHECK_INT(O("GetOrder", "{\"id\":\"O-crashed\"}"), STATUS_NOT_FOUND);
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"O-crashed\"}"), STATUS_NOT_FOUND);
    char *metrics = NULL;
    CHECK_INT(harness_http_get(s_ord_svc.admin_port, "/metrics", &metrics), 200);
    CHECK(metrics && strstr(metrics, "shop_anomalies_total{kind=\"placement_abandoned\"} 1") != NULL);
    free(metrics);
    /* its key is free for the customer's retry */
    CHECK_INT(s_place(id, "k-crash", "c9", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL), STATUS_OK);
}

/* --- imports ------------------------------------------------------------------------- */

static void s_imports(void)
{
    char id[40];
    long long on_hand = s_on_hand("CUP-1");
    const char *order = "{\"channel\":\"tmall\",\"externalId\":\"TM-1001\",\"customerId\":\"tm-77\","
                        "\"lines\":[{\"sku\":\"CUP-1\",\"quantity\":2,\"unitPrice\":{\"minorUnits\":1900,"
                        "\"currency\":\"CNY\"},\"discount\":{\"minorUnits\":300,\"currency\":\"CNY\"}}],"
                        ADDRESS ",\"paid\":true,\"paymentReference\":\"alipay-9\"}";

    CHECK_INT(O("ImportOrder", "%s", order), STATUS_OK);
    snprintf(id, sizeof id, "%s", STR("order.id"));
    CHECK_STR(STR("order.state"), "ORDER_STATE_PAID");
    CHECK_STR(STR("order.externalId"), "TM-1001");
    CHECK_INT(NUM("order.total.minorUnits"), 3500);
    CHECK(jcall_at(&s_ord, "duplicate") == NULL || !json_is_true(jcall_at(&s_ord, "duplicate")));
    CHECK_INT(O("ImportOrder", "%s", order), STATUS_OK);
    CHECK_STR(STR("order.id"), id);
    CHECK(json_is_true(jcall_at(&s_ord, "duplicate")));
    CHECK_INT(s_events(id, "OrderPlaced"), 1);
    CHECK_INT(s_events(id, "OrderPaid"), 1);
    CHECK_INT(s_sql_until(on_hand - 2, "SELECT on_hand FROM catalog.sku WHERE code = 'CUP-1'"), on_hand - 2);
    CHECK_INT(O("GetOrder", "{\"channel\":\"tmall\",\"externalId\":\"TM-1001\"}"), STATUS_OK);
    CHECK_STR(STR("order.id"), id);

    long long before = s_sql("SELECT count(*) FROM orders.orders");
    CHECK_INT(O("ImportOrder", "{\"channel\":\"shop\",\"externalId\":\"X\",\"customerId\":\"a\",\"lines\":"
                "[{\"sku\":\"CUP-1\",\"quantity\":1,\"unitPrice\":{\"minorUnits\":1,\"currency\":\"CNY\"}}],"
                ADDRESS "}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("ImportOrder", "{\"channel\":\"jd\",\"externalId\":\"X\",\"customerId\":\"a\",\"lines\":"
                "[{\"sku\":\"CUP-1\",\"quantity\":1,\"unitPrice\":{\"minorUnits\":100,\"currency\":\"CNY\"},"
                "\"discount\":{\"minorUnits\":101,\"currency\":\"CNY\"}}]," ADDRESS "}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("ImportOrder", "{\"channel\":\"jd\",\"externalId\":\"X\",\"customerId\":\"a\",\"lines\":"
                "[{\"sku\":\"CUP-1\",\"quantity\":1,\"unitPrice\":{\"minorUnits\":100,\"currency\":\"CNY\"}},"
                "{\"sku\":\"TEA-A\",\"quantity\":1,\"unitPrice\":{\"minorUnits\":100,\"currency\":\"USD\"}}],"
                ADDRESS "}"), STATUS_INVALID_ARGUMENT);
    CHECK(strstr(s_ord.message, "currency") != NULL);
    CHECK_INT(O("ImportOrder", "{\"channel\":\"jd\",\"externalId\":\"X\",\"customerId\":\"a\",\"lines\":"
                "[{\"sku\":\"CUP-1\",\"quantity\":1,\"unitPrice\":{\"minorUnits\":-5,\"currency\":\"CNY\"}}],"
                ADDRESS "}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders"), before);
    /* a shortage: failed, and the same external id can come again */
    CHECK_INT(O("ImportOrder", "{\"channel\":\"jd\",\"externalId\":\"JD-1\",\"customerId\":\"a\",\"lines\":"
                "[{\"sku\":\"LAST-1\",\"quantity\":1,\"unitPrice\":{\"minorUnits\":100,\"currency\":\"CNY\"}}],"
                ADDRESS "}"), STATUS_FAILED_PRECONDITION);
    CHECK_INT(O("ImportOrder", "{\"channel\":\"jd\",\"externalId\":\"JD-1\",\"customerId\":\"a\",\"lines\":"
                "[{\"sku\":\"CUP-1\",\"quantity\":1,\"unitPrice\":{\"minorUnits\":100,\"currency\":\"CNY\"}}],"
                ADDRESS "}"), STATUS_OK);
    CHECK_STR(STR("order.state"), "ORDER_STATE_PLACED");
    /* sent again with other lines while the first attempt is under way
     * (here cut short after its reservation: its row is gone): it leaves
     * that attempt alone, until it began too long ago to be placed */
    char first[40], second[40];
#define JD2 "{\"channel\":\"jd\",\"externalId\":\"JD-2\",\"customerId\":\"a\",\"lines\":"    \
            "[{\"sku\":\"CUP-1\",\"quantity\":%d,\"unitPrice\":{\"minorUnits\":100,"  \
            "\"currency\":\"CNY\"}}]," ADDRESS "}"
    CHECK_INT(O("ImportOrder", JD2, 1), STATUS_OK);
    snprintf(first, sizeof first, "%s", STR("order.id"));
    CHECK_INT(s_sql("WITH d AS (DELETE FROM orders.orders WHERE id = '%s' RETURNING 1) "
                    "SELECT count(*) FROM d", first), 1);
    CHECK_INT(O("ImportOrder", JD2, 2), STATUS_ABORTED);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE id = '%s'", first), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' AND state = 'held'",
                    first), 1);
    CHECK_INT(s_sql("WITH u AS (UPDATE catalog.reservation SET expires_at = expires_at - interval '61 seconds', "
                    "created_at = created_at - interval '61 seconds' WHERE order_id = '%s' RETURNING 1) SELECT count(*) FROM u", first), 1);
    CHECK_INT(O("ImportOrder", JD2, 2), STATUS_ABORTED);
    CHECK_INT(s_sql_until(1, "SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' "
                             "AND state = 'released'", first), 1);
    CHECK_INT(O("ImportOrder", JD2, 2), STATUS_OK);
    snprintf(second, sizeof second, "%s", STR("order.id"));
    CHECK(strcmp(first, second) != 0);
    CHECK_INT(NUM("order.lines[0].quantity"), 2);
#undef JD2
}

/* --- queries ----------------------------------------------------------------------------- */

static void s_queries(void)
{
    char token[128] = "", seen[64][40];
    size_t n = 0;
    long long c1 = s_sql("SELECT count(*) FROM orders.orders WHERE customer_id = 'c1' AND state "
                         "NOT IN ('pending', 'failed')");

    CHECK(c1 >= 1);
    /* every order of c1 once, newest first, two at a time */
    for (int page = 0; page < 20; page++) {
        CHECK_INT(O("ListOrders", "{\"customerId\":\"c1\",\"pageSize\":1,\"pageToken\":\"%s\"}", token),
                  STATUS_OK);
        for (size_t i = 0; i < LEN("orders") && n < 64; i++) {
            char p[32];
            snprintf(p, sizeof p, "orders[%zu].id", i);
            snprintf(seen[n++], sizeof seen[0], "%s", STR(p));
        }
        snprintf(token, sizeof token, "%s", jcall_at(&s_ord, "nextPageToken") ? STR("nextPageToken") : "");
        if (!token[0])
            break;
    }
    CHECK_INT(n, c1);
    for (size_t i = 1; i < n; i++)
        CHECK(strcmp(seen[i - 1], seen[i]) != 0);
    CHECK_INT(O("ListOrders", "{\"state\":\"ORDER_STATE_REFUNDED\"}"), STATUS_OK);
    CHECK_INT(LEN("orders"), 1);
    CHECK_INT(O("ListOrders", "{\"pageToken\":\"garbage\"}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("ListOrders", "{\"sinceMs\":\"10\",\"untilMs\":\"5\"}"), STATUS_INVALID_ARGUMENT);

    /* today's figures against the database */
    char today[16];
    time_t t = (time_t)(util_now_ms() / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    CHECK_INT(O("DailySummary", "{\"date\":\"%s\"}", today), STATUS_OK);
    CHECK_STR(STR("day.date"), today);
    CHECK_STR(STR("day.paidAmount.currency"), "CNY");
    CHECK_INT(NUM("day.orders"), s_sql("SELECT count(*) FROM orders.orders WHERE state NOT IN "
                                       "('pending', 'failed') AND created_at >= current_date"));
    CHECK_INT(NUM("day.cancelled"), s_sql("SELECT count(*) FROM orders.orders WHERE state = 'cancelled'"));
    CHECK_INT(NUM("day.paidAmount.minorUnits"),
              s_sql("SELECT sum(total) FROM orders.orders WHERE paid_at IS NOT NULL"));
    CHECK_INT(NUM("day.paidOrders"), s_sql("SELECT count(*) FROM orders.orders WHERE paid_at IS NOT NULL"));
    CHECK_INT(NUM("previousDay.orders"), 0);
    CHECK_INT(O("DailySummary", "{\"date\":\"2026-13-45\"}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("DailySummary", "{\"date\":\"yesterday\"}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(O("DailySummary", "{}"), STATUS_OK);   /* yesterday: nothing */
    CHECK_INT(NUM("day.orders"), 0);
}

/* Placements let the catalog and promotions commit without waiting for the
 * WAL flush, as they share the orders service's cluster: the order's own
 * commit flushes theirs. A caller naming another cluster, or none, gets
 * durable commits. */
static void s_unflushed(void)
{
    char id[40], cluster[64] = "";
    long long cat = s_metric(&s_cat_svc, "shop_commits_unflushed_total");
    long long pro = s_metric(&s_pro_svc, "shop_commits_unflushed_total");

    CHECK(cat >= 0 && pro >= 0);
    CHECK_INT(s_place(id, "k-unflushed", "c-unflushed", "{\"sku\":\"CUP-1\",\"quantity\":1}",
                      "\"WELCOME10\""), STATUS_FAILED_PRECONDITION);   /* below the coupon's minimum */
    pro = s_metric(&s_pro_svc, "shop_commits_unflushed_total");
    CHECK_INT(s_place(id, "k-unflushed2", "c-unflushed", "{\"sku\":\"TEA-A\",\"quantity\":1}",
                      "\"WELCOME10\""), STATUS_OK);
    CHECK_INT(s_metric(&s_cat_svc, "shop_commits_unflushed_total"), cat + 2);
    /* the redemption's writes themselves, the coupon's use among them */
    CHECK_INT(s_metric(&s_pro_svc, "shop_commits_unflushed_total"), pro + 1);
    /* as a caller sees it: the value names the cluster, and only a match counts */
    PGresult *r = PQexec(s_pg, "SELECT system_identifier::text || '.' || (extract(epoch FROM "
                               "pg_postmaster_start_time()) * 1000000)::bigint FROM pg_control_system()");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(cluster, sizeof cluster, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    CHECK(cluster[0] != '\0');
    cat = s_metric(&s_cat_svc, "shop_commits_unflushed_total");
    CHECK_INT(jcall(&s_cat, "ReserveStock", "{\"orderId\":\"O-DURABLE\",\"lines\":[{\"sku\":\"CUP-1\","
                    "\"quantity\":1}]}"), STATUS_OK);
    client_commit_with(s_cat.client, "1.2");
    CHECK_INT(jcall(&s_cat, "ReserveStock", "{\"orderId\":\"O-DURABLE2\",\"lines\":[{\"sku\":\"CUP-1\","
                    "\"quantity\":1}]}"), STATUS_OK);
    CHECK_INT(s_metric(&s_cat_svc, "shop_commits_unflushed_total"), cat);
    client_commit_with(s_cat.client, cluster);
    CHECK_INT(jcall(&s_cat, "ReserveStock", "{\"orderId\":\"O-UNFLUSHED\",\"lines\":[{\"sku\":\"CUP-1\","
                    "\"quantity\":1}]}"), STATUS_OK);
    client_commit_with(s_cat.client, NULL);
    CHECK_INT(s_metric(&s_cat_svc, "shop_commits_unflushed_total"), cat + 1);
    /* committed all the same */
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id IN "
                    "('O-DURABLE', 'O-DURABLE2', 'O-UNFLUSHED') AND state = 'held'"), 3);
    CHECK_INT(jcall(&s_cat, "ReleaseReservation", "{\"orderId\":\"O-DURABLE\"}"), STATUS_OK);
    CHECK_INT(jcall(&s_cat, "ReleaseReservation", "{\"orderId\":\"O-DURABLE2\"}"), STATUS_OK);
    CHECK_INT(jcall(&s_cat, "ReleaseReservation", "{\"orderId\":\"O-UNFLUSHED\"}"), STATUS_OK);
}

/* Cancellations the catalog and promotions take in after a restart come
 * back in one Replay batch; each release is still a transaction of its own
 * (commit_each), so none holds two orders' locks. */
static void s_release_batch(const char *cat_conn, const char *const *cat_env,
                            const char *pro_conn, const char *const *pro_env)
{
    char a[40], b[40];

    CHECK_INT(s_place(a, "batch-1", "c-batch-1", "{\"sku\":\"TEA-A\",\"quantity\":1}", "\"WELCOME10\""),
              STATUS_OK);
    CHECK_INT(s_place(b, "batch-2", "c-batch-2", "{\"sku\":\"TEA-A\",\"quantity\":1}", "\"WELCOME10\""),
              STATUS_OK);
    CHECK_INT(harness_stop(&s_cat_svc.proc, 10000), 0);
    CHECK_INT(harness_stop(&s_pro_svc.proc, 10000), 0);
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"%s\"}", a), STATUS_OK);
    CHECK_INT(O("CancelOrder", "{\"orderId\":\"%s\"}", b), STATUS_OK);
    /* both on the orders stream before anyone reads it again */
    CHECK_INT(s_sql_until(2, "SELECT count(*) FROM orders.outbox WHERE type = "
                             "'shop.orders.v1.OrderCancelled' AND correlation_id IN ('%s', '%s') "
                             "AND position IS NOT NULL", a, b), 2);
    CHECK_INT(harness_launch(&s_cat_svc, "shop-catalog", cat_conn, cat_env), 0);
    CHECK_INT(harness_launch(&s_pro_svc, "shop-promotions", pro_conn, pro_env), 0);
    CHECK_INT(s_sql_until(2, "SELECT count(*) FROM catalog.reservation WHERE order_id IN ('%s', '%s') "
                             "AND state = 'released'", a, b), 2);
    CHECK_INT(s_sql_until(2, "SELECT count(*) FROM promotions.redemption WHERE order_id IN ('%s', '%s') "
                             "AND state = 'released'", a, b), 2);
    CHECK_INT(s_sql("SELECT count(DISTINCT xmin::text) FROM catalog.reservation WHERE order_id IN "
                    "('%s', '%s')", a, b), 2);
    CHECK_INT(s_sql("SELECT count(DISTINCT xmin::text) FROM promotions.redemption WHERE order_id IN "
                    "('%s', '%s')", a, b), 2);
}

/* Just after all three restart, the orders service cannot yet say up to
 * when its stream is complete (it says 1), and the consumers have not heard
 * it say more, nor anything before (their caught_up_at cleared, as on a
 * first deployment): with a transaction open in the cluster, holds must
 * still wait. */
static void s_hold_after_restarts(const char *ord_conn, const char *const *ord_env,
                                  const char *cat_conn, const char *const *cat_env,
                                  const char *pro_conn, const char *const *pro_env)
{
    PGconn *open_tx = s_open_xid();
    char id[40];

    /* a later xid committed: the snapshots' xmax passes the open one's, so
     * the new relay's first note cannot be passed while it stays open */
    CHECK(s_sql("SELECT pg_current_xact_id()::text::bigint") > 0);
    CHECK_INT(harness_stop(&s_ord_svc.proc, 10000), 0);
    CHECK_INT(harness_stop(&s_cat_svc.proc, 10000), 0);
    CHECK_INT(harness_stop(&s_pro_svc.proc, 10000), 0);
    CHECK_INT(s_sql("WITH c AS (UPDATE catalog.consumer_cursor SET caught_up_at = NULL RETURNING 1), "
                    "p AS (UPDATE promotions.consumer_cursor SET caught_up_at = NULL RETURNING 1) "
                    "SELECT (SELECT count(*) FROM c) + (SELECT count(*) FROM p)"), 3);   /* orders; catalog, orders */
    CHECK_INT(harness_launch(&s_cat_svc, "shop-catalog", cat_conn, cat_env), 0);
    CHECK_INT(harness_launch(&s_pro_svc, "shop-promotions", pro_conn, pro_env), 0);
    /* both consumers applied the stream before: heard from, nothing known,
     * though the orders service is still down (no heartbeat yet) */
    CHECK_INT(s_sql_until(2, "SELECT count(*) FROM (SELECT caught_up_at FROM catalog.consumer_cursor WHERE "
                             "stream = 'orders' UNION ALL SELECT caught_up_at FROM promotions.consumer_cursor "
                             "WHERE stream = 'orders') c WHERE caught_up_at = '-infinity'"), 2);
    CHECK_INT(harness_launch(&s_ord_svc, "shop-orders", ord_conn, ord_env), 0);
    CHECK_INT(s_place(id, "k-restarted", "c-restarted", "{\"sku\":\"CUP-1\",\"quantity\":1}", NULL),
              STATUS_OK);
    s_short_holds("O-RESTARTED", "c-restarted");
    CHECK_INT(s_sql("SELECT count(*) FROM orders.outbox WHERE position IS NULL"), 1);   /* OrderPlaced */
    s_holds_kept("O-RESTARTED");
    CHECK_INT(s_sql("SELECT count(*) FROM (SELECT caught_up_at FROM catalog.consumer_cursor WHERE stream = "
                    "'orders' UNION ALL SELECT caught_up_at FROM promotions.consumer_cursor WHERE stream = "
                    "'orders') c WHERE caught_up_at = '-infinity'"), 2);   /* heard, nothing known */
    s_commit(open_tx);
    s_holds_end("O-RESTARTED", 1);   /* the counters count since the restart */
    CHECK_INT(s_sql_until(0, "SELECT count(*) FROM orders.outbox WHERE position IS NULL"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' AND state = 'held'",
                    id), 1);
}

int main(void)
{
    const char *svcs[] = {"orders", "catalog", "promotions", NULL};
    char *conninfo = harness_create_db("t_orders", svcs);
    char *cat_conn = harness_conninfo("t_orders", "catalog");
    char *pro_conn = harness_conninfo("t_orders", "promotions");
    char *admin = harness_conninfo("t_orders", "postgres");   /* reads every schema */
    char e[8][128];

    slog_init("test_orders", SLOG_ERROR);
    s_zctx = zmq_ctx_new();
    CHECK(conninfo != NULL);
    if (!conninfo)
        return check_done();
    harness_ports(&s_cat_svc);
    harness_ports(&s_pro_svc);
    harness_ports(&s_ord_svc);
    snprintf(e[0], sizeof e[0], "SHOP_ORDERS_RPC=%s", s_ord_svc.rpc);
    snprintf(e[1], sizeof e[1], "SHOP_ORDERS_PUB=%s", s_ord_svc.pub);
    snprintf(e[2], sizeof e[2], "SHOP_CATALOG_RPC=%s", s_cat_svc.rpc);
    snprintf(e[3], sizeof e[3], "SHOP_CATALOG_PUB=%s", s_cat_svc.pub);
    snprintf(e[4], sizeof e[4], "SHOP_PROMOTIONS_RPC=%s", s_pro_svc.rpc);
    const char *cat_env[] = {e[0], e[1], NULL};
    const char *pro_env[] = {e[0], e[1], e[2], e[3], NULL};
    const char *ord_env[] = {e[2], e[4], "SHOP_MAINTENANCE_MS=200", NULL};
    CHECK_INT(harness_launch(&s_cat_svc, "shop-catalog", cat_conn, cat_env), 0);
    CHECK_INT(harness_launch(&s_pro_svc, "shop-promotions", pro_conn, pro_env), 0);
    CHECK_INT(harness_launch(&s_ord_svc, "shop-orders", conninfo, ord_env), 0);
    s_cat.client = client_new(s_zctx, s_cat_svc.rpc);
    s_pro.client = client_new(s_zctx, s_pro_svc.rpc);
    s_ord.client = client_new(s_zctx, s_ord_svc.rpc);
    s_pg = PQconnectdb(admin);
    s_admin = admin;
    if (s_cat_svc.proc && s_pro_svc.proc && s_ord_svc.proc && PQstatus(s_pg) == CONNECTION_OK) {
        s_product("Longjing", "TEA-A", 10000, 5000, 50);
        s_product("Yixing pot", "POT-1", 30000, 20000, 5);
        s_product("Cup", "CUP-1", 2000, 500, 100);
        s_product("Last pots", "LAST-1", 30000, 20000, 3);
        CHECK_INT(jcall(&s_pro, "CreateRule", "{\"rule\":{\"code\":\"TEA10\",\"name\":\"Tea week\","
                        "\"kind\":\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_SKUS\",\"skus\":"
                        "[\"TEA-A\"],\"percentOff\":10}}"), STATUS_OK);
        CHECK_INT(jcall(&s_pro, "CreateCoupon", "{\"coupon\":{\"code\":\"WELCOME10\",\"kind\":"
                        "\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":1000,\"currency\":"
                        "\"CNY\"},\"minSpend\":{\"minorUnits\":5000,\"currency\":\"CNY\"},"
                        "\"totalLimit\":100,\"perCustomerLimit\":1}}"), STATUS_OK);
        /* promotions knows the products once it has applied the catalog's events */
        CHECK_INT(jcall_until_ok(&s_pro, 10000, "Quote", "{\"lines\":[{\"sku\":\"LAST-1\",\"quantity\":1}]}"),
                  STATUS_OK);
        s_placement();
        s_flash_sale();
        s_bad_input();
        s_lifecycle();
        s_timers();
        s_imports();
        s_queries();
        s_retry_races();
        s_late_calls();
        s_abandoned_sold();
        s_order_ids();
        s_unflushed();
        s_release_batch(cat_conn, cat_env, pro_conn, pro_env);
        s_hold_after_restarts(conninfo, ord_env, cat_conn, cat_env, pro_conn, pro_env);
        /* the invariants: stock adds up, nothing below zero */
        CHECK_INT(s_sql("SELECT count(*) FROM catalog.sku WHERE reserved < 0 OR reserved > on_hand"), 0);
        CHECK_INT(s_sql("SELECT count(*) FROM catalog.sku s WHERE reserved <> (SELECT coalesce(sum(l.quantity), 0) "
                        "FROM catalog.reservation_line l JOIN catalog.reservation r USING (order_id) "
                        "WHERE r.state = 'held' AND l.sku = s.code)"), 0);
    }
    jcall_done(&s_cat);
    jcall_done(&s_pro);
    jcall_done(&s_ord);
    PQfinish(s_pg);
    client_destroy(&s_cat.client);
    client_destroy(&s_pro.client);
    client_destroy(&s_ord.client);
    if (s_ord_svc.proc)
        CHECK_INT(harness_stop(&s_ord_svc.proc, 10000), 0);
    if (s_pro_svc.proc)
        CHECK_INT(harness_stop(&s_pro_svc.proc, 10000), 0);
    if (s_cat_svc.proc)
        CHECK_INT(harness_stop(&s_cat_svc.proc, 10000), 0);
    zmq_ctx_term(s_zctx);
    free(conninfo);
    free(cat_conn);
    free(pro_conn);
    free(admin);
    return check_done();
}
