/* test_orders_kill: SIGKILL of orders, then of the catalog, then of
 * promotions in the middle of a burst of placements (buyers retrying with
 * their idempotency keys, as a storefront does), each restarted; then the
 * invariants hold with nothing lost or doubled:
 * - every key a buyer saw placed is exactly one placed order, and every
 *   placed order is one a buyer saw placed;
 * - no placement is left pending;
 * - the catalog holds stock for exactly the placed orders, and its
 *   reserved counts add up;
 * - the coupon is redeemed by exactly the placed orders that used it;
 * - each placed order has exactly one OrderPlaced, and the catalog and
 *   promotions have applied the whole orders stream. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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

#define BUYERS   4
#define MAX_KEYS 2000

static void *s_zctx;
static PGconn *s_pg;
static harness_service_t s_cat, s_pro, s_ord;
static char *s_conn[3];   /* orders, catalog, promotions */
static char s_env[8][160];
static const char *s_cat_env[3], *s_pro_env[5], *s_ord_env[7];
static const char *s_admin;
static atomic_bool s_stop;

/* What the buyers saw: per key, the order id placed ("" = refused). */
static struct {
    char key[32], id[40];
    bool placed, refused;
} s_keys[MAX_KEYS];
static atomic_int s_n_keys;
static int s_orphans_placed;   /* s_orphan's buyer's order, placed after all */

#define s_sql(...) harness_sql(s_pg, __VA_ARGS__)

static void *s_buyer(void *arg)
{
    int me = (int)(intptr_t)arg;
    jcall_t j = {.service = "shop.orders.v1.OrdersService", .timeout_ms = 2000};

    j.client = client_new(s_zctx, s_ord.rpc);
    for (int n = 0; !atomic_load(&s_stop); n++) {
        int k = atomic_fetch_add(&s_n_keys, 1);
        if (k >= MAX_KEYS)
            break;
        snprintf(s_keys[k].key, sizeof s_keys[k].key, "kill-%d", k);
        j.key = s_keys[k].key;
        /* retried with the same key until the shop gives a verdict */
        for (int attempt = 0; attempt < 200; attempt++) {
            status_t st = jcall(&j, "PlaceOrder",
                                "{\"customerId\":\"b%d\",\"lines\":[{\"sku\":\"K-%d\",\"quantity\":1},"
                                "{\"sku\":\"K-%d\",\"quantity\":2}],\"couponCodes\":[%s],"
                                "\"shippingAddress\":{\"name\":\"A\",\"line1\":\"B\",\"city\":\"C\","
                                "\"country\":\"CN\"}}",
                                me, n % 4, (n + 1) % 4, n % 2 ? "\"KILL5\"" : "");
            if (st == STATUS_OK) {
                snprintf(s_keys[k].id, sizeof s_keys[k].id, "%s", jcall_str(&j, "order.id"));
                s_keys[k].placed = true;
                break;
            }
            if (st == STATUS_FAILED_PRECONDITION || st == STATUS_INVALID_ARGUMENT ||
                st == STATUS_NOT_FOUND || st == STATUS_ALREADY_EXISTS) {
                fprintf(stderr, "test: %s refused: %s\n", s_keys[k].key, j.message);
                s_keys[k].refused = true;
                break;
            }
            /* no verdict (the victim is down): the same key again. A new
             * client, as a storefront would reconnect. */
            client_destroy(&j.client);
            util_sleep_ms(100);
            j.client = client_new(s_zctx, s_ord.rpc);
        }
    }
    jcall_done(&j);
    client_destroy(&j.client);
    return NULL;
}

static int s_launch(harness_service_t *s, const char *bin, const char *conn, const char *const *env)
{
    return harness_launch(s, bin, conn, env);
}

static void s_burst(const char *victim_name, harness_service_t *victim, const char *bin,
                    const char *conn, const char *const *env)
{
    pthread_t t[BUYERS];

    atomic_store(&s_stop, false);
    for (int i = 0; i < BUYERS; i++)
        pthread_create(&t[i], NULL, s_buyer, (void *)(intptr_t)i);
    util_sleep_ms(700);
    harness_kill(&victim->proc);
    fprintf(stderr, "test: killed %s\n", victim_name);
    util_sleep_ms(500);
    CHECK_INT(s_launch(victim, bin, conn, env), 0);
    util_sleep_ms(700);
    atomic_store(&s_stop, true);
    for (int i = 0; i < BUYERS; i++)
        pthread_join(t[i], NULL);
}

static long long s_metric(const harness_service_t *svc, const char *name)
{
    return harness_metric(svc->admin_port, name);
}

static long long s_until(long long want, const char *sql)
{
    long long v = -1;
    for (int i = 0; i < 300; i++) {   /* up to 30 s */
        if ((v = s_sql("%s", sql)) == want)
            break;
        util_sleep_ms(100);
    }
    return v;
}

static void *s_place_slow(void *arg)
{
    jcall_t *j = arg;

    return (void *)(intptr_t)jcall(j, "PlaceOrder", "{\"customerId\":\"slow\",\"lines\":[{\"sku\":"
                                   "\"K-1\",\"quantity\":4}],\"couponCodes\":[\"KILL5\"],"
                                   "\"shippingAddress\":{\"name\":\"A\","
                                   "\"line1\":\"B\",\"city\":\"C\",\"country\":\"CN\"}}");
}

/* A placement that stops after reserving: promotions stopped while it
 * prices, so it answers UNAVAILABLE, and its buyer goes away (the Redeem
 * waiting in promotions is past its deadline when promotions goes on, so
 * only the stock is held). The orders service finds the hold (the
 * catalog's, with no order) once it is twice ORDERS_PENDING_TIMEOUT_S old
 * and gives it back, counting an anomaly. The buyer coming back with the
 * same key is told to try again once, and then places with an id of its
 * own. */
static void s_orphan(void)
{
    jcall_t j = {.service = "shop.orders.v1.OrdersService", .timeout_ms = 5000, .key = "orphan-1"};
    const char *order = "{\"customerId\":\"orphan\",\"lines\":[{\"sku\":\"K-0\",\"quantity\":3}],"
                        "\"couponCodes\":[\"KILL5\"],\"shippingAddress\":{\"name\":\"A\","
                        "\"line1\":\"B\",\"city\":\"C\",\"country\":\"CN\"}}";
    /* its reservation: the only one of 3 units, with no order */
    const char *held = "SELECT count(*) FROM catalog.reservation r WHERE r.state = 'held' AND EXISTS "
                       "(SELECT 1 FROM catalog.reservation_line l WHERE l.order_id = r.order_id AND "
                       "l.quantity = 3) AND NOT EXISTS (SELECT 1 FROM orders.orders o WHERE o.id = r.order_id)";

    j.client = client_new(s_zctx, s_ord.rpc);
    CHECK_INT(kill(harness_pid(s_pro.proc), SIGSTOP), 0);
    CHECK_INT(jcall(&j, "PlaceOrder", "%s", order), STATUS_UNAVAILABLE);
    CHECK_INT(kill(harness_pid(s_pro.proc), SIGCONT), 0);
    CHECK_INT(s_sql("%s", held), 1);
    char id[40] = "";
    PGresult *r = PQexec(s_pg, "SELECT order_id FROM catalog.reservation_line WHERE quantity = 3");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    CHECK(id[0] == 'O');
    CHECK_INT(s_until(0, held), 0);   /* given back within 30 s */
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation WHERE order_id = '%s' "
                    "AND state = 'released'", id), 1);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.outbox WHERE type = 'shop.orders.v1.OrderAbandoned' "
                    "AND correlation_id = '%s'", id), 1);
    CHECK_INT(s_metric(&s_ord, "shop_anomalies_total{kind=\"placement_orphaned\"}"), 1);
    CHECK_INT(jcall(&j, "PlaceOrder", "%s", order), STATUS_ABORTED);
    CHECK_INT(jcall(&j, "PlaceOrder", "%s", order), STATUS_OK);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE idem_key = 'orphan-1' AND state = 'placed' "
                    "AND id <> '%s'", id), 1);
    s_orphans_placed = 1;
    jcall_done(&j);
    client_destroy(&j.client);
}

/* A placement whose insert waits (the orders table locked) until it is
 * past ORDERS_PENDING_TIMEOUT_S from its reservation: not placed, since
 * the sweep may give its holds back, which it then does, its coupon use
 * too (the invariants check the coupon's count). */
static void s_slow_store(void)
{
    jcall_t j = {.service = "shop.orders.v1.OrdersService", .timeout_ms = 15000, .key = "slow-1"};
    PGconn *lock = PQconnectdb(s_admin);
    const char *held = "SELECT count(*) FROM catalog.reservation r WHERE r.state = 'held' AND EXISTS "
                       "(SELECT 1 FROM catalog.reservation_line l WHERE l.order_id = r.order_id AND "
                       "l.quantity = 4)";

    CHECK(PQstatus(lock) == CONNECTION_OK);
    PGresult *r = PQexec(lock, "BEGIN; LOCK TABLE orders.orders IN EXCLUSIVE MODE");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    j.client = client_new(s_zctx, s_ord.rpc);
    pthread_t t;
    /* the placement, from a thread, while this one lets the lock go after 6.5 s */
    CHECK_INT(pthread_create(&t, NULL, s_place_slow, &j), 0);
    util_sleep_ms(6500);
    CHECK_INT(s_sql("%s", held), 1);   /* reserved and redeemed, waiting to store */
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.redemption WHERE state = 'redeemed' AND "
                    "order_id = (SELECT order_id FROM catalog.reservation_line WHERE quantity = 4)"), 1);
    r = PQexec(lock, "COMMIT");
    PQclear(r);
    PQfinish(lock);
    void *out = NULL;
    pthread_join(t, &out);
    CHECK_INT((status_t)(intptr_t)out, STATUS_ABORTED);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE idem_key = 'slow-1'"), 0);
    CHECK_INT(s_until(0, held), 0);   /* given back by the sweep */
    CHECK_INT(s_until(1, "SELECT count(*) FROM promotions.redemption WHERE state = 'released' AND "
                         "order_id = (SELECT order_id FROM catalog.reservation_line WHERE quantity = 4)"), 1);
    jcall_done(&j);
    client_destroy(&j.client);
}

static void s_invariants(void)
{
    int n = atomic_load(&s_n_keys), placed = 0, unresolved = 0;

    if (n > MAX_KEYS)
        n = MAX_KEYS;
    for (int k = 0; k < n; k++) {
        placed += s_keys[k].placed;
        unresolved += !s_keys[k].placed && !s_keys[k].refused;
    }
    fprintf(stderr, "test: %d placements, %d placed, %d without a verdict\n", n, placed, unresolved);
    CHECK(placed > 20);
    CHECK_INT(unresolved, 0);
    /* nothing left pending: every placement placed, or given up and given back */
    CHECK_INT(s_until(0, "SELECT count(*) FROM orders.orders WHERE state = 'pending'"), 0);
    /* each key a buyer saw placed: one placed order with that id */
    for (int k = 0; k < n; k++) {
        if (!s_keys[k].placed)
            continue;
        long long c = s_sql("SELECT count(*) FROM orders.orders WHERE id = '%s' AND idem_key = '%s' "
                            "AND state = 'placed'", s_keys[k].id, s_keys[k].key);
        if (c != 1)
            fprintf(stderr, "test: key %s order %s: %lld placed rows\n", s_keys[k].key, s_keys[k].id, c);
        CHECK_INT(c, 1);
    }
    placed += s_orphans_placed;
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders WHERE state = 'placed'"), placed);
    /* one OrderPlaced per placed order, none for others */
    CHECK_INT(s_sql("SELECT count(*) FROM orders.outbox WHERE type = 'shop.orders.v1.OrderPlaced'"), placed);
    CHECK_INT(s_sql("SELECT count(*) FROM (SELECT correlation_id FROM orders.outbox WHERE type = "
                    "'shop.orders.v1.OrderPlaced' GROUP BY 1 HAVING count(*) > 1) d"), 0);
    /* the downstream consumers have applied the whole orders stream, once
     * all of it is numbered (another test may hold numbering back) */
    CHECK_INT(s_until(1, "SELECT (NOT EXISTS (SELECT 1 FROM orders.outbox WHERE position IS NULL) AND "
                         "(SELECT position FROM catalog.consumer_cursor WHERE stream = 'orders') = "
                         "(SELECT max(position) FROM orders.outbox))::int"), 1);
    CHECK_INT(s_until(s_sql("SELECT count(*) FROM orders.outbox WHERE type LIKE 'shop.orders.v1.Order%%'"),
                      "SELECT count(*) FROM orders.outbox WHERE type LIKE 'shop.orders.v1.Order%%' AND "
                      "position <= (SELECT position FROM promotions.consumer_cursor WHERE stream = 'orders')"),
              s_sql("SELECT count(*) FROM orders.outbox WHERE type LIKE 'shop.orders.v1.Order%%'"));
    /* stock is held for exactly the placed orders, and adds up */
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.reservation r WHERE r.state = 'held' AND NOT EXISTS "
                    "(SELECT 1 FROM orders.orders o WHERE o.id = r.order_id AND o.state = 'placed')"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM orders.orders o WHERE o.state = 'placed' AND NOT EXISTS "
                    "(SELECT 1 FROM catalog.reservation r WHERE r.order_id = o.id AND r.state = 'held')"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM catalog.sku s WHERE reserved <> (SELECT coalesce(sum(l.quantity), 0) "
                    "FROM catalog.reservation_line l JOIN catalog.reservation r USING (order_id) "
                    "WHERE r.state = 'held' AND l.sku = s.code) OR reserved < 0 OR reserved > on_hand"), 0);
    /* the coupon: redeemed by exactly the placed orders that carry it */
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'KILL5'"),
              s_sql("SELECT count(*) FROM promotions.redemption_use u JOIN orders.orders o "
                    "ON o.id = u.order_id WHERE u.code = 'KILL5' AND o.state = 'placed'"));
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.redemption r WHERE r.state = 'redeemed' AND NOT EXISTS "
                    "(SELECT 1 FROM orders.orders o WHERE o.id = r.order_id AND o.state = 'placed')"), 0);
}

int main(void)
{
    const char *svcs[] = {"orders", "catalog", "promotions", NULL};
    jcall_t cat = {.service = "shop.catalog.v1.CatalogService"};
    jcall_t pro = {.service = "shop.promotions.v1.PromotionsService"};

    slog_init("test_orders_kill", SLOG_ERROR);
    s_conn[0] = harness_create_db("t_orders_kill", svcs);
    s_conn[1] = harness_conninfo("t_orders_kill", "catalog");
    s_conn[2] = harness_conninfo("t_orders_kill", "promotions");
    char *admin = harness_conninfo("t_orders_kill", "postgres");
    s_admin = admin;
    CHECK(s_conn[0] != NULL);
    if (!s_conn[0])
        return check_done();
    s_zctx = zmq_ctx_new();
    harness_ports(&s_cat);
    harness_ports(&s_pro);
    harness_ports(&s_ord);
    snprintf(s_env[0], sizeof s_env[0], "SHOP_ORDERS_RPC=%s", s_ord.rpc);
    snprintf(s_env[1], sizeof s_env[1], "SHOP_ORDERS_PUB=%s", s_ord.pub);
    snprintf(s_env[2], sizeof s_env[2], "SHOP_CATALOG_RPC=%s", s_cat.rpc);
    snprintf(s_env[3], sizeof s_env[3], "SHOP_CATALOG_PUB=%s", s_cat.pub);
    snprintf(s_env[4], sizeof s_env[4], "SHOP_PROMOTIONS_RPC=%s", s_pro.rpc);
    const char *cat_env[] = {s_env[0], s_env[1], NULL};
    const char *pro_env[] = {s_env[0], s_env[1], s_env[2], s_env[3], NULL};
    const char *ord_env[] = {s_env[2], s_env[4], "SHOP_MAINTENANCE_MS=200", "ORDERS_PENDING_TIMEOUT_S=5",
                             "ORDERS_CALL_TIMEOUT_MS=1000",
                             /* s_slow_store's insert waits longer than the pending timeout */
                             "SHOP_STATEMENT_TIMEOUT_MS=20000", NULL};
    memcpy(s_cat_env, cat_env, sizeof cat_env);
    memcpy(s_pro_env, pro_env, sizeof pro_env);
    memcpy(s_ord_env, ord_env, sizeof ord_env);
    CHECK_INT(s_launch(&s_cat, "shop-catalog", s_conn[1], s_cat_env), 0);
    CHECK_INT(s_launch(&s_pro, "shop-promotions", s_conn[2], s_pro_env), 0);
    CHECK_INT(s_launch(&s_ord, "shop-orders", s_conn[0], s_ord_env), 0);
    cat.client = client_new(s_zctx, s_cat.rpc);
    pro.client = client_new(s_zctx, s_pro.rpc);
    s_pg = PQconnectdb(admin);
    if (s_cat.proc && s_pro.proc && s_ord.proc && PQstatus(s_pg) == CONNECTION_OK) {
        for (int i = 0; i < 4; i++) {
            CHECK_INT(jcall(&cat, "CreateProduct",
                            "{\"product\":{\"title\":\"Kill %d\",\"status\":\"PRODUCT_STATUS_ACTIVE\","
                            "\"skus\":[{\"code\":\"K-%d\",\"listPrice\":{\"minorUnits\":1000,"
                            "\"currency\":\"CNY\"},\"costPrice\":{\"minorUnits\":100,\"currency\":"
                            "\"CNY\"}}]}}", i, i), STATUS_OK);
            CHECK_INT(jcall(&cat, "AdjustStock", "{\"sku\":\"K-%d\",\"delta\":100000,\"reason\":\"receipt\"}", i),
                      STATUS_OK);
        }
        CHECK_INT(jcall(&pro, "CreateCoupon", "{\"coupon\":{\"code\":\"KILL5\",\"kind\":"
                        "\"COUPON_KIND_PERCENT_OFF\",\"percentOff\":5}}"), STATUS_OK);
        CHECK_INT(jcall_until_ok(&pro, 10000, "Quote", "{\"lines\":[{\"sku\":\"K-3\",\"quantity\":1}]}"),
                  STATUS_OK);
        s_burst("shop-orders", &s_ord, "shop-orders", s_conn[0], s_ord_env);
        s_burst("shop-catalog", &s_cat, "shop-catalog", s_conn[1], s_cat_env);
        s_burst("shop-promotions", &s_pro, "shop-promotions", s_conn[2], s_pro_env);
        s_orphan();
        s_slow_store();
        s_invariants();
    }
    PQfinish(s_pg);
    jcall_done(&cat);
    jcall_done(&pro);
    client_destroy(&cat.client);
    client_destroy(&pro.client);
    if (s_ord.proc)
        CHECK_INT(harness_stop(&s_ord.proc, 10000), 0);
    if (s_pro.proc)
        CHECK_INT(harness_stop(&s_pro.proc, 10000), 0);
    if (s_cat.proc)
        CHECK_INT(harness_stop(&s_cat.proc, 10000), 0);
    zmq_ctx_term(s_zctx);
    for (int i = 0; i < 3; i++)
        free(s_conn[i]);
    free(admin);
    return check_done();
}
