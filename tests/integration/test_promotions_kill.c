/* test_promotions_kill: shop-promotions SIGKILLed in the middle of a burst
 * of redemptions, then restarted. Every order is retried until it is
 * redeemed; afterwards each order is redeemed exactly once, no coupon or
 * capped rule is past its limit, and every counter equals the uses it
 * records: a kill leaves nothing half-done. */
#include <pthread.h>
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

#define BUYERS 8
#define ORDERS 60   /* per buyer at most */

static void *s_zctx;
static char s_rpc[64];
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int s_stop, s_placed[BUYERS];

static status_t s_redeem(jcall_t *j, int buyer, int order)
{
    return jcall(j, "Redeem",
                 "{\"orderId\":\"k-%d-%d\",\"quote\":{\"lines\":[{\"sku\":\"KILL-1\",\"quantity\":1}],"
                 "\"customerId\":\"c-%d\",\"couponCodes\":[\"KILL-C\"]}}",
                 buyer, order, buyer);
}

static void *s_buyer(void *arg)
{
    int id = (int)(intptr_t)arg;
    jcall_t j = {.service = "shop.promotions.v1.PromotionsService", .timeout_ms = 2000};
    char rpc[64];

    pthread_mutex_lock(&s_lock);
    snprintf(rpc, sizeof rpc, "%s", s_rpc);
    pthread_mutex_unlock(&s_lock);
    j.client = client_new(s_zctx, rpc);
    for (int i = 0; i < ORDERS && !atomic_load(&s_stop); i++) {
        atomic_store(&s_placed[id], i + 1);   /* attempted, maybe not answered */
        if (s_redeem(&j, id, i) != STATUS_OK)
            break;   /* the service died under us */
    }
    jcall_done(&j);
    client_destroy(&j.client);
    return NULL;
}

int main(void)
{
    const char *svcs[] = {"promotions", "catalog", NULL};
    char *conninfo = harness_create_db("t_promotions_kill", svcs);
    char *cat_conn = harness_conninfo("t_promotions_kill", "catalog");
    harness_service_t cat = {0}, pro = {0};
    jcall_t c = {.service = "shop.catalog.v1.CatalogService"};
    jcall_t p = {.service = "shop.promotions.v1.PromotionsService"};
    PGconn *pg = NULL;

    slog_init("test_promotions_kill", SLOG_ERROR);
    s_zctx = zmq_ctx_new();
    CHECK(conninfo != NULL);
    if (!conninfo)
        return check_done();
    CHECK_INT(harness_start_service(&cat, "shop-catalog", cat_conn, NULL), 0);
    CHECK_INT(harness_start_consumer(&pro, "shop-promotions", conninfo, "catalog", &cat), 0);
    c.client = client_new(s_zctx, cat.rpc);
    p.client = client_new(s_zctx, pro.rpc);
    snprintf(s_rpc, sizeof s_rpc, "%s", pro.rpc);
    pg = PQconnectdb(conninfo);
    if (!cat.proc || !pro.proc || PQstatus(pg) != CONNECTION_OK)
        goto done;

    CHECK_INT(jcall(&c, "CreateProduct",
                    "{\"product\":{\"title\":\"Kill tea\",\"status\":\"PRODUCT_STATUS_ACTIVE\",\"skus\":"
                    "[{\"code\":\"KILL-1\",\"listPrice\":{\"minorUnits\":5000,\"currency\":\"CNY\"},"
                    "\"costPrice\":{\"minorUnits\":1000,\"currency\":\"CNY\"}}]}}"), STATUS_OK);
    CHECK_INT(jcall(&p, "CreateCoupon", "{\"coupon\":{\"code\":\"KILL-C\",\"kind\":"
                                        "\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":300,"
                                        "\"currency\":\"CNY\"},\"totalLimit\":100}}"), STATUS_OK);
    CHECK_INT(jcall(&p, "CreateRule", "{\"rule\":{\"code\":\"K-CAP\",\"name\":\"Capped\",\"kind\":"
                                      "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_SKUS\",\"skus\":"
                                      "[\"KILL-1\"],\"percentOff\":10,\"usageCap\":150,\"budget\":"
                                      "{\"minorUnits\":60000,\"currency\":\"CNY\"}}}"), STATUS_OK);
    CHECK_INT(jcall_until_ok(&p, 10000, "Quote", "{\"lines\":[{\"sku\":\"KILL-1\",\"quantity\":1}]}"),
              STATUS_OK);

    /* the burst, and a kill in the middle of it */
    pthread_t th[BUYERS];
    for (int i = 0; i < BUYERS; i++)
        pthread_create(&th[i], NULL, s_buyer, (void *)(intptr_t)i);
    for (int i = 0; i < 200 && harness_sql(pg, "SELECT count(*) FROM promotions.redemption") < 40; i++)
        util_sleep_ms(10);
    long long before = harness_sql(pg, "SELECT count(*) FROM promotions.redemption");
    harness_kill(&pro.proc);
    atomic_store(&s_stop, 1);
    for (int i = 0; i < BUYERS; i++)
        pthread_join(th[i], NULL);
    CHECK(before >= 40);
    CHECK(before < BUYERS * ORDERS);   /* killed mid-burst, not after it */

    /* restarted: retry every order that was attempted */
    CHECK_INT(harness_start_consumer(&pro, "shop-promotions", conninfo, "catalog", &cat), 0);
    client_destroy(&p.client);
    p.client = client_new(s_zctx, pro.rpc);
    int attempted = 0, redeemed = 0;
    for (int b = 0; b < BUYERS; b++)
        for (int i = 0; i < atomic_load(&s_placed[b]); i++) {
            attempted++;
            redeemed += s_redeem(&p, b, i) == STATUS_OK;
        }
    CHECK_INT(redeemed, attempted);
    CHECK_INT(harness_sql(pg, "SELECT count(*) FROM promotions.redemption"), attempted);
    /* each order at most once per code, and the counters are the uses */
    CHECK_INT(harness_sql(pg, "SELECT count(*) FROM (SELECT order_id, code FROM "
                              "promotions.redemption_use GROUP BY 1, 2 HAVING count(*) > 1) d"), 0);
    CHECK_INT(harness_sql(pg, "SELECT used FROM promotions.coupon WHERE code = 'KILL-C'"),
              harness_sql(pg, "SELECT count(*) FROM promotions.redemption_use WHERE code = 'KILL-C'"));
    CHECK(harness_sql(pg, "SELECT used FROM promotions.coupon WHERE code = 'KILL-C'") <= 100);
    CHECK_INT(harness_sql(pg, "SELECT count(*) FROM promotions.rule r WHERE r.used <> (SELECT "
                              "count(*) FROM promotions.redemption_use u WHERE u.code = r.code) OR "
                              "r.spent <> (SELECT coalesce(sum(saved), 0) FROM promotions.redemption_use u "
                              "WHERE u.code = r.code) OR r.used > r.usage_cap OR r.spent > r.budget"), 0);
done:
    jcall_done(&c);
    jcall_done(&p);
    PQfinish(pg);
    client_destroy(&c.client);
    client_destroy(&p.client);
    if (pro.proc)
        CHECK_INT(harness_stop(&pro.proc, 10000), 0);
    if (cat.proc)
        CHECK_INT(harness_stop(&cat.proc, 10000), 0);
    zmq_ctx_term(s_zctx);
    free(conninfo);
    free(cat_conn);
    return check_done();
}
