/* test_promotions: the promotions service against the real catalog (whose
 * product events give it prices, costs and categories) over real sockets:
 * every rule kind, stacking and priority, the tier and coupons in one
 * quote with exact amounts; determinism; time windows at their edges; the
 * rejection reasons; the margin guard and a loss leader; bad input changing
 * nothing; Redeem/Release exactly once, idempotent retries, and many
 * concurrent orders racing for the last uses of a coupon and a capped rule.
 *
 * Scenarios use time windows far apart (quotes pass at_ms), so the rules of
 * one never show up in another; the races use rules valid now. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libpq-fe.h>
#include <zmq.h>

#include "check.h"
#include "harness.h"
#include "jcall.h"
#include "slog.h"
#include "util.h"

#define DAY (24LL * 3600 * 1000)

static jcall_t s_cat = {.service = "shop.catalog.v1.CatalogService"};
static jcall_t s_pro = {.service = "shop.promotions.v1.PromotionsService"};
static PGconn *s_pg;
static void *s_zctx;
static char s_rpc[64];
static int64_t s_now;

#define s_sql(...) harness_sql(s_pg, __VA_ARGS__)

#define P(...) jcall(&s_pro, __VA_ARGS__)
#define NUM(path) jcall_num(&s_pro, path)
#define STR(path) jcall_str(&s_pro, path)
#define LEN(path) jcall_len(&s_pro, path)

static void s_product(const char *title, const char *category, const char *sku, int price, int cost)
{
    CHECK_INT(jcall(&s_cat, "CreateProduct",
                    "{\"product\":{\"title\":\"%s\",\"category\":\"%s\",\"status\":"
                    "\"PRODUCT_STATUS_ACTIVE\",\"skus\":[{\"code\":\"%s\",\"listPrice\":{"
                    "\"minorUnits\":%d,\"currency\":\"CNY\"},\"costPrice\":{\"minorUnits\":%d,"
                    "\"currency\":\"CNY\"}}]}}",
                    title, category, sku, price, cost),
              STATUS_OK);
}

/* The entry `i` of applied: code and saving. */
static void s_applied(size_t i, const char *code, long long saved)
{
    char path[64];

    snprintf(path, sizeof path, "quote.applied[%zu].code", i);
    CHECK_STR(STR(path), code);
    snprintf(path, sizeof path, "quote.applied[%zu].saved.minorUnits", i);
    CHECK_INT(NUM(path), saved);
}

/* True if some rejected entry has this code and a reason containing `why`. */
static bool s_rejected(const char *code, const char *why)
{
    for (size_t i = 0; i < LEN("quote.rejected"); i++) {
        char p1[64], p2[64];
        snprintf(p1, sizeof p1, "quote.rejected[%zu].code", i);
        snprintf(p2, sizeof p2, "quote.rejected[%zu].reason", i);
        if (strcmp(STR(p1), code) == 0 && strstr(STR(p2), why))
            return true;
    }
    fprintf(stderr, "test: no rejection of %s for \"%s\"\n", code, why);
    return false;
}

/* True if some applied entry has this code. */
static bool s_applies(const char *code)
{
    for (size_t i = 0; i < LEN("quote.applied"); i++) {
        char p[64];
        snprintf(p, sizeof p, "quote.applied[%zu].code", i);
        if (strcmp(STR(p), code) == 0)
            return true;
    }
    return false;
}

/* A: every kind, stacking and priority, the tier and a coupon, exactly. */
typedef struct {
    const char *cart, *expected;
    long long at;
    int same;
} quoter_t;

static void *s_quoter(void *arg)
{
    quoter_t *q = arg;
    jcall_t j = {.service = "shop.promotions.v1.PromotionsService"};

    j.client = client_new(s_zctx, s_rpc);
    for (int i = 0; j.client && i < 40; i++) {
        if (jcall(&j, "Quote", "{%s,\"atMs\":\"%lld\"}", q->cart, q->at) != STATUS_OK)
            continue;
        char *text = json_dumps(j.out, JSON_SORT_KEYS);
        q->same += text && strcmp(text, q->expected) == 0;
        free(text);
    }
    jcall_done(&j);
    client_destroy(&j.client);
    return NULL;
}

/* Quotes back to back from eight callers (a busy loop hands some to the
 * workers): every one the same as the quote asked alone. */
static void s_concurrent_quotes(const char *cart, long long at, const char *expected)
{
    pthread_t th[8];
    quoter_t q[8];
    int same = 0;

    for (int i = 0; i < 8; i++) {
        q[i] = (quoter_t){cart, expected, at, 0};
        pthread_create(&th[i], NULL, s_quoter, &q[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        same += q[i].same;
    }
    CHECK_INT(same, 8 * 40);
}

static void s_scenario_a(void)
{
    int64_t t0 = s_now + 60 * DAY, t1 = t0 + DAY, at = t0 + 3600 * 1000;
    char win[96];

    snprintf(win, sizeof win, "\"startsAtMs\":\"%lld\",\"endsAtMs\":\"%lld\"", (long long)t0,
             (long long)t1);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"A-GREEN\",\"name\":\"Green tea week\","
                              "\"kind\":\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_CATEGORIES\","
                              "\"categories\":[\"green tea\"],\"percentOff\":10,\"priority\":10,%s}}",
                win), STATUS_OK);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"A-SET\",\"name\":\"Tea and pot set\","
                              "\"kind\":\"RULE_KIND_BUNDLE_PRICE\",\"bundle\":[{\"sku\":\"TEA-A\","
                              "\"quantity\":1},{\"sku\":\"POT-1\",\"quantity\":1}],\"bundlePrice\":"
                              "{\"minorUnits\":36000,\"currency\":\"CNY\"},\"priority\":20,"
                              "\"exclusive\":true,%s}}", win), STATUS_OK);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"A-CUPS\",\"name\":\"Cups 3 for 2\","
                              "\"kind\":\"RULE_KIND_BUY_X_GET_Y\",\"scope\":\"RULE_SCOPE_SKUS\","
                              "\"skus\":[\"CUP-1\"],\"buyQuantity\":2,\"getQuantity\":1,"
                              "\"priority\":5,%s}}", win), STATUS_OK);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"A-ORDER\",\"name\":\"Spend 500 save 10\","
                              "\"kind\":\"RULE_KIND_AMOUNT_OFF\",\"scope\":\"RULE_SCOPE_ORDER\","
                              "\"amountOff\":{\"minorUnits\":1000,\"currency\":\"CNY\"},"
                              "\"minSpend\":{\"minorUnits\":50000,\"currency\":\"CNY\"},"
                              "\"priority\":1,\"usageCap\":3,%s}}", win), STATUS_OK);
    CHECK_INT(P("SetTier", "{\"tier\":{\"name\":\"gold\",\"percentOff\":5}}"), STATUS_OK);
    CHECK_INT(P("CreateCoupon", "{\"coupon\":{\"code\":\"WELCOME10\",\"kind\":"
                                "\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":1000,"
                                "\"currency\":\"CNY\"},\"minSpend\":{\"minorUnits\":20000,"
                                "\"currency\":\"CNY\"},\"totalLimit\":5,\"perCustomerLimit\":1}}"),
              STATUS_OK);

    const char *cart = "\"lines\":[{\"sku\":\"TEA-B\",\"quantity\":2},{\"sku\":\"CUP-1\","
                       "\"quantity\":3},{\"sku\":\"POT-1\",\"quantity\":1},{\"sku\":\"TEA-A\","
                       "\"quantity\":1}],\"customerId\":\"c1\",\"tier\":\"gold\","
                       "\"couponCodes\":[\"WELCOME10\"]";
    CHECK_INT(P("Quote", "{%s,\"atMs\":\"%lld\"}", cart, (long long)at), STATUS_OK);
    CHECK_INT(NUM("quote.subtotal.minorUnits"), 62000);
    /* set 40000 -> 36000; green 10% of TEA-B 16000; one cup free; 1000 off
     * the order; gold 5% of what is left open; the coupon */
    CHECK_INT(LEN("quote.applied"), 6);
    s_applied(0, "A-SET", 4000);
    s_applied(1, "A-GREEN", 1600);
    s_applied(2, "A-CUPS", 2000);
    s_applied(3, "A-ORDER", 1000);
    s_applied(4, "gold", 870);
    s_applied(5, "WELCOME10", 1000);
    CHECK_INT(NUM("quote.totalSaved.minorUnits"), 10470);
    CHECK_INT(NUM("quote.total.minorUnits"), 62000 - 10470);
    CHECK_INT(LEN("quote.rejected"), 0);
    CHECK_STR(STR("quote.lines[0].sku"), "CUP-1");   /* lines by SKU */
    CHECK_INT(NUM("quote.lines[2].discount.minorUnits"), 1000);   /* TEA-A: its share of the set */
    /* every kind's reason; the category and order-wide ones are made once
     * per rule, the others per quote */
    CHECK_STR(STR("quote.applied[0].reason"), "Tea and pot set: together for 360.00 CNY for POT-1, TEA-A");
    CHECK_STR(STR("quote.applied[1].reason"), "Green tea week: 10% off on green tea");
    CHECK_STR(STR("quote.applied[2].reason"), "Cups 3 for 2: buy 2 get 1 free (1 free) on CUP-1");
    CHECK_STR(STR("quote.applied[3].reason"), "Spend 500 save 10: 10.00 CNY off on the order");
    CHECK_STR(STR("quote.applied[4].reason"), "gold member: 5% off");
    CHECK_STR(STR("quote.applied[5].reason"), "coupon WELCOME10: 10.00 CNY off");
    /* the same inputs, the same quote */
    char *first = json_dumps(s_pro.out, JSON_SORT_KEYS);
    CHECK_INT(P("Quote", "{%s,\"atMs\":\"%lld\"}", cart, (long long)at), STATUS_OK);
    char *second = json_dumps(s_pro.out, JSON_SORT_KEYS);
    CHECK(first && second && strcmp(first, second) == 0);
    s_concurrent_quotes(cart, (long long)at, first);
    free(first);
    free(second);

    /* the exclusive set holds TEA-A: the green sale is not stackable there */
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1},{\"sku\":\"POT-1\","
                         "\"quantity\":1}],\"atMs\":\"%lld\"}", (long long)at), STATUS_OK);
    CHECK(s_rejected("A-GREEN", "not stackable with A-SET"));
    CHECK(s_rejected("A-ORDER", "below minimum spend of 500.00 CNY (add 100.00 CNY)"));
    CHECK_INT(NUM("quote.totalSaved.minorUnits"), 4000);

    /* window edges: valid from its first millisecond, expired at its end */
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-B\",\"quantity\":1}],\"atMs\":\"%lld\"}",
                (long long)t0), STATUS_OK);
    s_applied(0, "A-GREEN", 800);
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-B\",\"quantity\":1}],\"atMs\":\"%lld\"}",
                (long long)t0 - 1), STATUS_OK);
    CHECK(s_rejected("A-GREEN", "not valid yet"));
    CHECK_INT(LEN("quote.applied"), 0);
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-B\",\"quantity\":1}],\"atMs\":\"%lld\"}",
                (long long)t1), STATUS_OK);
    CHECK(s_rejected("A-GREEN", "expired"));
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-B\",\"quantity\":1}],\"atMs\":\"%lld\"}",
                (long long)t1 - 1), STATUS_OK);
    CHECK_INT(LEN("quote.applied"), 1);

    /* coupon rejections */
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"CUP-1\",\"quantity\":1}],\"couponCodes\":"
                         "[\"WELCOME10\"],\"customerId\":\"c1\"}"), STATUS_OK);
    CHECK(s_rejected("WELCOME10", "below minimum spend"));
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"POT-1\",\"quantity\":1}],\"couponCodes\":"
                         "[\"WELCOME10\"]}"), STATUS_OK);
    CHECK(s_rejected("WELCOME10", "needs a customer"));
}

/* B: the margin guard and a loss leader. */
static void s_scenario_b(void)
{
    int64_t t0 = s_now + 120 * DAY, at = t0 + 1000;
    char win[96];

    snprintf(win, sizeof win, "\"startsAtMs\":\"%lld\",\"endsAtMs\":\"%lld\"", (long long)t0,
             (long long)(t0 + DAY));
    /* TEA-B costs 60.00 of its 80.00: half off would sell below cost */
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"B-DEEP\",\"name\":\"Half price\","
                              "\"kind\":\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_SKUS\","
                              "\"skus\":[\"TEA-B\"],\"percentOff\":50,%s}}", win), STATUS_OK);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"B-LEADER\",\"name\":\"Cup for a yuan\","
                              "\"kind\":\"RULE_KIND_AMOUNT_OFF\",\"scope\":\"RULE_SCOPE_SKUS\","
                              "\"skus\":[\"CUP-1\"],\"amountOff\":{\"minorUnits\":1900,"
                              "\"currency\":\"CNY\"},\"allowLoss\":true,%s}}", win), STATUS_OK);
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-B\",\"quantity\":1},{\"sku\":\"CUP-1\","
                         "\"quantity\":1}],\"atMs\":\"%lld\"}", (long long)at), STATUS_OK);
    CHECK_INT(LEN("quote.applied"), 2);
    s_applied(0, "B-DEEP", 2000);     /* cut back to the cost */
    s_applied(1, "B-LEADER", 1900);   /* below its cost of 5.00: allowed */
    CHECK(s_rejected("B-DEEP", "limited: would sell TEA-B below cost"));
    CHECK_INT(NUM("quote.lines[1].total.minorUnits"), 6000);
    CHECK_INT(NUM("quote.lines[0].total.minorUnits"), 100);
}

static void s_bad_input(void)
{
    long long rules = s_sql("SELECT count(*) FROM promotions.rule");
    long long coupons = s_sql("SELECT count(*) FROM promotions.coupon");

    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],\"couponCodes\":"
                         "[\"NO-SUCH\"]}"), STATUS_NOT_FOUND);
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"GHOST\",\"quantity\":1}]}"), STATUS_NOT_FOUND);
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],\"couponCodes\":"
                         "[\"not a code!\"]}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":0}]}"), STATUS_INVALID_ARGUMENT);
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],\"tier\":\"platinum\"}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(P("CreateCoupon", "{\"coupon\":{\"code\":\"NEG\",\"kind\":\"COUPON_KIND_AMOUNT_OFF\","
                                "\"amountOff\":{\"minorUnits\":-5,\"currency\":\"CNY\"}}}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(P("CreateCoupon", "{\"coupon\":{\"code\":\"MIX\",\"kind\":\"COUPON_KIND_AMOUNT_OFF\","
                                "\"amountOff\":{\"minorUnits\":5,\"currency\":\"USD\"},\"minSpend\":"
                                "{\"minorUnits\":5,\"currency\":\"CNY\"}}}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"BACKWARDS\",\"name\":\"x\",\"kind\":"
                              "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_ORDER\",\"percentOff\":5,"
                              "\"startsAtMs\":\"2000\",\"endsAtMs\":\"1000\"}}"),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"MIXED\",\"name\":\"x\",\"kind\":"
                              "\"RULE_KIND_AMOUNT_OFF\",\"scope\":\"RULE_SCOPE_ORDER\",\"amountOff\":"
                              "{\"minorUnits\":5,\"currency\":\"CNY\"},\"minSpend\":{\"minorUnits\":5,"
                              "\"currency\":\"EUR\"}}}"), STATUS_INVALID_ARGUMENT);
    /* amounts and carts within int64's reach */
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"HUGE\",\"name\":\"x\",\"kind\":"
                              "\"RULE_KIND_AMOUNT_OFF\",\"scope\":\"RULE_SCOPE_ORDER\",\"amountOff\":"
                              "{\"minorUnits\":\"100000000000000000\",\"currency\":\"CNY\"}}}"),
              STATUS_INVALID_ARGUMENT);
    CHECK(strstr(s_pro.message, "at most") != NULL);
    s_product("Gold pot", "pots", "GOLD-1", 2000000000, 1000000000);
    CHECK_INT(jcall_until_ok(&s_pro, 10000, "Quote", "{\"lines\":[{\"sku\":\"GOLD-1\",\"quantity\":1}]}"),
              STATUS_OK);
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"GOLD-1\",\"quantity\":1000000}]}"),
              STATUS_INVALID_ARGUMENT);
    CHECK(strstr(s_pro.message, "worth more than") != NULL);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"PCT0\",\"name\":\"x\",\"kind\":"
                              "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_ORDER\"}}"),
              STATUS_INVALID_ARGUMENT);
    /* an exclusive rule tying with A-SET (same priority, overlapping) */
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"TIE\",\"name\":\"x\",\"kind\":"
                              "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_SKUS\",\"skus\":"
                              "[\"POT-1\"],\"percentOff\":5,\"priority\":20,\"exclusive\":true}}"),
              STATUS_INVALID_ARGUMENT);
    CHECK(strstr(s_pro.message, "ambiguous with exclusive rule A-SET") != NULL);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"A-GREEN\",\"name\":\"again\",\"kind\":"
                              "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_ORDER\","
                              "\"percentOff\":5}}"), STATUS_ALREADY_EXISTS);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.rule"), rules);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.coupon"), coupons);
}

/* --- races ---------------------------------------------------------------------- */

static atomic_int s_ok, s_refused, s_other;
static pthread_barrier_t s_start;

typedef struct {
    int id;
    const char *expected;   /* expectedTotalSaved JSON or "" */
} buyer_t;

static void *s_buyer(void *arg)
{
    const buyer_t *b = arg;
    jcall_t j = {.service = "shop.promotions.v1.PromotionsService"};

    j.client = client_new(s_zctx, s_rpc);
    pthread_barrier_wait(&s_start);
    status_t code = j.client
        ? jcall(&j, "Redeem", "{\"orderId\":\"race-%d-%s\",\"quote\":{\"lines\":[{\"sku\":"
                              "\"RACE-1\",\"quantity\":1}],\"customerId\":\"buyer-%d\","
                              "\"couponCodes\":[\"LAST-TWO\"]}%s}",
                b->id, b->expected[0] ? "x" : "y", b->id, b->expected)
        : STATUS_INTERNAL;
    if (code == STATUS_OK)
        atomic_fetch_add(&s_ok, 1);
    else if (code == STATUS_FAILED_PRECONDITION)
        atomic_fetch_add(&s_refused, 1);
    else {
        atomic_fetch_add(&s_other, 1);
        fprintf(stderr, "buyer %d: %s: %s\n", b->id, status_name(code), j.message);
    }
    jcall_done(&j);
    client_destroy(&j.client);
    return NULL;
}

static void s_race(int n, const char *expected)
{
    pthread_t th[32];
    buyer_t b[32];

    atomic_store(&s_ok, 0);
    atomic_store(&s_refused, 0);
    atomic_store(&s_other, 0);
    pthread_barrier_init(&s_start, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        b[i].id = i;
        b[i].expected = expected;
        pthread_create(&th[i], NULL, s_buyer, &b[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&s_start);
}

static void s_redemption(void)
{
    /* RACE-1: 50.00; coupon of 5.00 for two orders; 10% for three orders */
    CHECK_INT(P("CreateCoupon", "{\"coupon\":{\"code\":\"LAST-TWO\",\"kind\":"
                                "\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":500,"
                                "\"currency\":\"CNY\"},\"totalLimit\":2}}"), STATUS_OK);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"R-CAPPED\",\"name\":\"First three\",\"kind\":"
                              "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_SKUS\",\"skus\":"
                              "[\"RACE-1\"],\"percentOff\":10,\"usageCap\":3}}"), STATUS_OK);
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"RACE-1\",\"quantity\":1}],\"couponCodes\":"
                         "[\"LAST-TWO\"]}"), STATUS_OK);
    CHECK_INT(NUM("quote.totalSaved.minorUnits"), 500 + 500);

    /* 20 orders expecting that saving race for it: exactly two get it */
    s_race(20, ",\"expectedTotalSaved\":{\"minorUnits\":1000,\"currency\":\"CNY\"}");
    CHECK_INT(atomic_load(&s_ok), 2);
    CHECK_INT(atomic_load(&s_refused), 18);
    CHECK_INT(atomic_load(&s_other), 0);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'LAST-TWO'"), 2);
    CHECK_INT(s_sql("SELECT used FROM promotions.rule WHERE code = 'R-CAPPED'"), 2);
    /* 20 more that take whatever is left: all placed, one gets the last rule use */
    s_race(20, "");
    CHECK_INT(atomic_load(&s_ok), 20);
    CHECK_INT(s_sql("SELECT used FROM promotions.rule WHERE code = 'R-CAPPED'"), 3);
    CHECK_INT(s_sql("SELECT spent FROM promotions.rule WHERE code = 'R-CAPPED'"), 3 * 500);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'LAST-TWO'"), 2);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.outbox WHERE type = "
                    "'shop.promotions.v1.BudgetExhausted'"), 1);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.outbox WHERE type = "
                    "'shop.promotions.v1.CouponRedeemed'"), 2);
    /* a quote after the race knows the uses at once (it had the coupon and
     * the rule in memory, with nothing used, before it) */
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"RACE-1\",\"quantity\":1}],\"couponCodes\":"
                         "[\"LAST-TWO\"]}"), STATUS_OK);
    CHECK(s_rejected("LAST-TWO", "limit reached: used 2 of 2"));
    CHECK(s_rejected("R-CAPPED", "limit reached: used by 3 orders"));
    CHECK_INT(NUM("quote.totalSaved.minorUnits"), 0);
    /* a use this instance did not make (another instance's) shows within
     * a refresh (SHOP_MAINTENANCE_MS) */
    CHECK_INT(P("CreateCoupon", "{\"coupon\":{\"code\":\"ELSEWHERE\",\"kind\":\"COUPON_KIND_PERCENT_OFF\","
                                "\"percentOff\":10,\"totalLimit\":1}}"), STATUS_OK);
    const char *elsewhere = "{\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],\"couponCodes\":[\"ELSEWHERE\"]}";
    CHECK_INT(P("Quote", "%s", elsewhere), STATUS_OK);
    CHECK(s_applies("ELSEWHERE"));
    CHECK_INT(s_sql("UPDATE promotions.coupon SET used = 1 WHERE code = 'ELSEWHERE' RETURNING used"), 1);
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        CHECK_INT(P("Quote", "%s", elsewhere), STATUS_OK);
        seen = !s_applies("ELSEWHERE");
        if (!seen)
            usleep(50 * 1000);
    }
    CHECK(seen);
    CHECK(s_rejected("ELSEWHERE", "limit reached: used 1 of 1"));
    CHECK_INT(s_sql("UPDATE promotions.coupon SET used = 0 WHERE code = 'ELSEWHERE' RETURNING used"), 0);

    /* a retry returns the first result and counts nothing again */
    const char *cart = "{\"lines\":[{\"sku\":\"RACE-1\",\"quantity\":1}],\"customerId\":\"solo\","
                       "\"couponCodes\":[\"SOLO-1\"]}";
    CHECK_INT(P("CreateCoupon", "{\"coupon\":{\"code\":\"SOLO-1\",\"kind\":\"COUPON_KIND_PERCENT_OFF\","
                                "\"percentOff\":20,\"perCustomerLimit\":1}}"), STATUS_OK);
    CHECK_INT(P("Redeem", "{\"orderId\":\"solo-1\",\"quote\":%s}", cart), STATUS_OK);
    long long saved = NUM("quote.totalSaved.minorUnits");
    CHECK_INT(saved, 1000);
    CHECK_INT(P("Redeem", "{\"orderId\":\"solo-1\",\"quote\":%s}", cart), STATUS_OK);
    CHECK_INT(NUM("quote.totalSaved.minorUnits"), saved);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'SOLO-1'"), 1);
    CHECK_INT(P("Redeem", "{\"orderId\":\"solo-1\",\"quote\":{\"lines\":[{\"sku\":\"RACE-1\","
                          "\"quantity\":2}]}}"), STATUS_ALREADY_EXISTS);
    /* the same customer's second order: the coupon is refused, the order is not */
    CHECK_INT(P("Redeem", "{\"orderId\":\"solo-2\",\"quote\":%s}", cart), STATUS_OK);
    CHECK(s_rejected("SOLO-1", "limit reached for this customer"));
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'SOLO-1'"), 1);

    /* release gives the use back, once */
    CHECK_INT(P("Release", "{\"orderId\":\"solo-1\",\"reason\":\"cancelled\"}"), STATUS_OK);
    CHECK_INT(LEN("couponCodes"), 1);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'SOLO-1'"), 0);
    CHECK_INT(P("Release", "{\"orderId\":\"solo-1\"}"), STATUS_OK);
    CHECK_INT(LEN("couponCodes"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.outbox WHERE type = "
                    "'shop.promotions.v1.CouponReleased'"), 1);
    CHECK_INT(P("Release", "{\"orderId\":\"never\"}"), STATUS_NOT_FOUND);
    CHECK_INT(P("Redeem", "{\"orderId\":\"solo-1\",\"quote\":%s}", cart), STATUS_FAILED_PRECONDITION);

    /* the books add up: every counter equals its recorded uses */
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.coupon c WHERE c.used <> (SELECT count(*) "
                    "FROM promotions.redemption_use u WHERE u.source = 'coupon' AND u.code = c.code)"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.rule r WHERE r.used <> (SELECT count(*) "
                    "FROM promotions.redemption_use u WHERE u.source = 'rule' AND u.code = r.code) "
                    "OR r.spent <> (SELECT coalesce(sum(saved), 0) FROM promotions.redemption_use u "
                    "WHERE u.source = 'rule' AND u.code = r.code)"), 0);
}

/* A Release and a Redeem sharing a coupon and a capped rule take their
 * locks in one order. Set up so that each would wait for the other: the
 * coupon's row is held from outside; the release of one order and then the
 * Redeem of another queue behind it. Taking the coupon before the rule, the
 * release waited on the Redeem's rule lock while the Redeem waited on its
 * coupon, and PostgreSQL aborted one after deadlock_timeout. */
typedef struct {
    const char *method, *body;
    status_t code;
    char message[512];
} lock_call_t;

static void *s_lock_call(void *arg)
{
    lock_call_t *c = arg;
    jcall_t j = {.service = "shop.promotions.v1.PromotionsService"};

    j.client = client_new(s_zctx, s_rpc);
    c->code = j.client ? jcall(&j, c->method, "%s", c->body) : STATUS_INTERNAL;
    snprintf(c->message, sizeof c->message, "%s", j.message);
    jcall_done(&j);
    client_destroy(&j.client);
    return NULL;
}

/* Waits until `n` of the promotions service's statements wait on a lock
 * (its connections exist already: pg_stat_activity's rows are fixed for a
 * transaction, their wait events are not). */
static bool s_lock_waiters(int n)
{
    for (int i = 0; i < 500; i++) {
        if (s_sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'promotions' "
                  "AND datname = current_database() AND wait_event_type = 'Lock'") >= n)
            return true;
        usleep(10 * 1000);
    }
    return false;
}

/* With `coupon`'s row held from outside, the release of `released` queues
 * behind it, then the Redeem of `order` (quote JSON `quote`); once the row
 * is let go, both must succeed: neither waits for the other in a cycle. */
static void s_lock_race(const char *coupon, const char *released, const char *order,
                        const char *quote)
{
    char release_body[128], redeem_body[512];
    lock_call_t release = {"Release", release_body, STATUS_UNKNOWN, ""};
    lock_call_t redeem = {"Redeem", redeem_body, STATUS_UNKNOWN, ""};
    pthread_t a, b;

    snprintf(release_body, sizeof release_body, "{\"orderId\":\"%s\",\"reason\":\"cancelled\"}",
             released);
    snprintf(redeem_body, sizeof redeem_body, "{\"orderId\":\"%s\",\"quote\":%s}", order, quote);
    PQclear(PQexec(s_pg, "BEGIN"));
    CHECK_INT(s_sql("SELECT count(*) FROM (SELECT 1 FROM promotions.coupon WHERE code = '%s' "
                    "FOR UPDATE) l", coupon), 1);
    pthread_create(&a, NULL, s_lock_call, &release);
    CHECK(s_lock_waiters(1));
    pthread_create(&b, NULL, s_lock_call, &redeem);
    CHECK(s_lock_waiters(2));
    PQclear(PQexec(s_pg, "COMMIT"));
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    if (release.code != STATUS_OK || redeem.code != STATUS_OK)
        fprintf(stderr, "release: %s: %s; redeem: %s: %s\n", status_name(release.code),
                release.message, status_name(redeem.code), redeem.message);
    CHECK_INT(release.code, STATUS_OK);
    CHECK_INT(redeem.code, STATUS_OK);
}

#define LOCK_CART(customer, coupons)                                                   \
    "{\"lines\":[{\"sku\":\"RACE-1\",\"quantity\":1}],\"customerId\":\"" customer "\"," \
    "\"couponCodes\":[" coupons "]}"

static void s_lock_order(void)
{
    /* A coupon and a capped rule: Redeem takes the rule first. */
    CHECK_INT(P("CreateCoupon", "{\"coupon\":{\"code\":\"LOCK-C\",\"kind\":"
                                "\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":100,"
                                "\"currency\":\"CNY\"},\"totalLimit\":100}}"), STATUS_OK);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"LOCK-R\",\"name\":\"Capped\",\"kind\":"
                              "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_SKUS\",\"skus\":"
                              "[\"RACE-1\"],\"percentOff\":2,\"usageCap\":100}}"), STATUS_OK);
    CHECK_INT(P("Redeem", "{\"orderId\":\"lock-x\",\"quote\":%s}",
                LOCK_CART("lock-1", "\"LOCK-C\"")), STATUS_OK);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.redemption_use WHERE order_id = 'lock-x' "
                    "AND code IN ('LOCK-C', 'LOCK-R')"), 2);
    s_lock_race("LOCK-C", "lock-x", "lock-y", LOCK_CART("lock-2", "\"LOCK-C\""));
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'LOCK-C'"), 1);
    CHECK_INT(s_sql("SELECT used FROM promotions.rule WHERE code = 'LOCK-R'"), 1);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.redemption_use WHERE order_id = 'lock-y' "
                    "AND code IN ('LOCK-C', 'LOCK-R')"), 2);

    /* Two coupons, one with a per-customer limit (Redeem locks it first)
     * and one without (locked when used), and no rule they both count
     * (whose lock would order them first): the release takes the coupons
     * in that order too. In code order it took LOCK-A first and waited for
     * LOCK-B, which the Redeem held while it waited for LOCK-A. */
    CHECK_INT(P("CreateCoupon", "{\"coupon\":{\"code\":\"LOCK-A\",\"kind\":"
                                "\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":100,"
                                "\"currency\":\"CNY\"},\"totalLimit\":100}}"), STATUS_OK);
    CHECK_INT(P("CreateCoupon", "{\"coupon\":{\"code\":\"LOCK-B\",\"kind\":"
                                "\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":100,"
                                "\"currency\":\"CNY\"},\"perCustomerLimit\":5}}"), STATUS_OK);
    CHECK_INT(P("SetRuleStatus", "{\"code\":\"LOCK-R\",\"status\":\"RULE_STATUS_PAUSED\"}"), STATUS_OK);
    CHECK_INT(P("Redeem", "{\"orderId\":\"lock-v\",\"quote\":%s}",
                LOCK_CART("lock-1", "\"LOCK-A\",\"LOCK-B\"")), STATUS_OK);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.redemption_use WHERE order_id = 'lock-v' "
                    "AND source = 'rule'"), 0);
    CHECK_INT(s_sql("SELECT count(*) FROM promotions.redemption_use WHERE order_id = 'lock-v' "
                    "AND code IN ('LOCK-A', 'LOCK-B')"), 2);
    s_lock_race("LOCK-A", "lock-v", "lock-w", LOCK_CART("lock-2", "\"LOCK-A\",\"LOCK-B\""));
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'LOCK-A'"), 1);
    CHECK_INT(s_sql("SELECT used FROM promotions.coupon WHERE code = 'LOCK-B'"), 1);
}

/* The usage cache is refreshed a slice of 1,000 codes at a time: with the
 * 2,500 codes just issued (the last reply's) quoted into it, a use made
 * elsewhere of the one put last shows too. */
static void s_refresh_in_slices(void)
{
    enum { N = 2500 };
    static char codes[N][48];
    char cart[400];

    for (int i = 0; i < N; i++) {
        char path[32];
        snprintf(path, sizeof path, "codes[%d]", i);
        snprintf(codes[i], sizeof codes[i], "%s", STR(path));
    }
    for (int i = 0; i < N; i += 5) {
        int n = snprintf(cart, sizeof cart, "{\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],"
                         "\"couponCodes\":[\"%s\",\"%s\",\"%s\",\"%s\",\"%s\"]}", codes[i],
                         codes[i + 1], codes[i + 2], codes[i + 3], codes[i + 4]);
        CHECK(n > 0 && (size_t)n < sizeof cart);
        CHECK_INT(P("Quote", "%s", cart), STATUS_OK);
    }
    int n = snprintf(cart, sizeof cart, "{\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1}],"
                     "\"couponCodes\":[\"%s\"]}", codes[N - 1]);
    CHECK(n > 0 && (size_t)n < sizeof cart);
    CHECK_INT(s_sql("UPDATE promotions.coupon SET used = 1 WHERE code = '%s' RETURNING used",
                    codes[N - 1]), 1);
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        CHECK_INT(P("Quote", "%s", cart), STATUS_OK);
        seen = s_rejected(codes[N - 1], "limit reached: used 1 of 1");
        if (!seen)
            usleep(50 * 1000);
    }
    CHECK(seen);
    CHECK_INT(s_sql("UPDATE promotions.coupon SET used = 0 WHERE code = '%s' RETURNING used",
                    codes[N - 1]), 0);
}

/* Rule upkeep and coupons issued in bulk or to one customer. */
static void s_upkeep(void)
{
    int64_t t0 = s_now + 180 * DAY, at = t0 + 1000;
    char win[96], cart[160];

    snprintf(win, sizeof win, "\"startsAtMs\":\"%lld\",\"endsAtMs\":\"%lld\"", (long long)t0,
             (long long)(t0 + DAY));
    snprintf(cart, sizeof cart, "{\"lines\":[{\"sku\":\"POT-1\",\"quantity\":1}],\"atMs\":\"%lld\"}",
             (long long)at);
    CHECK_INT(P("CreateRule", "{\"rule\":{\"code\":\"U-POT\",\"name\":\"Pot sale\",\"kind\":"
                              "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_SKUS\",\"skus\":"
                              "[\"POT-1\"],\"percentOff\":10,%s}}", win), STATUS_OK);
    CHECK_INT(P("Quote", "%s", cart), STATUS_OK);
    s_applied(0, "U-POT", 3000);
    CHECK_INT(P("UpdateRule", "{\"rule\":{\"code\":\"U-POT\",\"name\":\"Pot sale\",\"kind\":"
                              "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_SKUS\",\"skus\":"
                              "[\"POT-1\"],\"percentOff\":20,%s}}", win), STATUS_OK);
    CHECK_INT(NUM("rule.percentOff"), 20);
    CHECK_INT(P("Quote", "%s", cart), STATUS_OK);
    s_applied(0, "U-POT", 6000);
    CHECK_INT(P("SetRuleStatus", "{\"code\":\"U-POT\",\"status\":\"RULE_STATUS_PAUSED\"}"), STATUS_OK);
    CHECK_STR(STR("rule.status"), "RULE_STATUS_PAUSED");
    CHECK_INT(P("Quote", "%s", cart), STATUS_OK);
    CHECK_INT(LEN("quote.applied"), 0);
    CHECK_INT(P("ListRules", "{\"activeAtMs\":\"%lld\"}", (long long)at), STATUS_OK);
    CHECK_INT(LEN("rules"), 0);
    CHECK_INT(P("SetRuleStatus", "{\"code\":\"U-POT\",\"status\":\"RULE_STATUS_ACTIVE\"}"), STATUS_OK);
    CHECK_INT(P("ListRules", "{\"activeAtMs\":\"%lld\"}", (long long)at), STATUS_OK);
    CHECK_INT(LEN("rules"), 1);
    CHECK_INT(P("ListRules", "{}"), STATUS_OK);
    CHECK_INT(LEN("rules"), s_sql("SELECT count(*) FROM promotions.rule"));
    CHECK_INT(P("UpdateRule", "{\"rule\":{\"code\":\"NOPE\",\"name\":\"x\",\"kind\":"
                              "\"RULE_KIND_PERCENT_OFF\",\"scope\":\"RULE_SCOPE_ORDER\","
                              "\"percentOff\":5}}"), STATUS_NOT_FOUND);
    CHECK_INT(P("SetRuleStatus", "{\"code\":\"NOPE\",\"status\":\"RULE_STATUS_PAUSED\"}"),
              STATUS_NOT_FOUND);
    CHECK(s_sql("SELECT count(*) FROM promotions.outbox WHERE type = "
                "'shop.promotions.v1.PromotionChanged'") >= 4);

    /* 50 single-use codes at once, all different */
    CHECK_INT(P("IssueCoupons", "{\"template\":{\"kind\":\"COUPON_KIND_PERCENT_OFF\",\"percentOff\":5,"
                                "\"campaign\":\"spring-mail\"},\"count\":50,\"prefix\":\"SPRING\"}"),
              STATUS_OK);
    CHECK_INT(LEN("codes"), 50);
    CHECK_INT(s_sql("SELECT count(DISTINCT code) FROM promotions.coupon WHERE campaign = 'spring-mail' "
                    "AND total_limit = 1 AND code LIKE 'SPRING-%%'"), 50);
    char code[64];
    snprintf(code, sizeof code, "%s", STR("codes[7]"));
    CHECK_INT(P("GetCoupon", "{\"code\":\"%s\"}", code), STATUS_OK);
    CHECK_INT(NUM("coupon.totalLimit"), 1);
    CHECK_INT(P("IssueCoupons", "{\"template\":{\"kind\":\"COUPON_KIND_PERCENT_OFF\",\"percentOff\":5},"
                                "\"count\":0,\"prefix\":\"X\"}"), STATUS_INVALID_ARGUMENT);
    /* a bulk issue is published as events of at most 1,000 codes */
    CHECK_INT(P("IssueCoupons", "{\"template\":{\"kind\":\"COUPON_KIND_PERCENT_OFF\",\"percentOff\":5,"
                                "\"campaign\":\"bulk-chunks\"},\"count\":2500,\"prefix\":\"BULK\"}"),
              STATUS_OK);
    CHECK_INT(LEN("codes"), 2500);
    s_refresh_in_slices();
#define BULK_EVENTS "SELECT (length(t) - length(replace(t, 'BULK-', ''))) / 5 AS n FROM (SELECT " \
                    "encode(payload, 'escape') AS t FROM promotions.outbox WHERE type = " \
                    "'shop.promotions.v1.CouponIssued' AND position('bulk-chunks'::bytea IN payload) > 0) e"
    CHECK_INT(s_sql("SELECT count(*) FROM (" BULK_EVENTS ") x"), 3);
    CHECK_INT(s_sql("SELECT max(n) FROM (" BULK_EVENTS ") x"), 1000);
    CHECK_INT(s_sql("SELECT sum(n) FROM (" BULK_EVENTS ") x"), 2500);
#undef BULK_EVENTS
    /* a birthday coupon for one customer */
    CHECK_INT(P("IssueCoupons", "{\"template\":{\"kind\":\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":"
                                "{\"minorUnits\":800,\"currency\":\"CNY\"},\"customerId\":\"c-bday\","
                                "\"campaign\":\"birthday\"},\"count\":1,\"prefix\":\"BDAY\"}"),
              STATUS_OK);
    snprintf(code, sizeof code, "%s", STR("codes[0]"));
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"POT-1\",\"quantity\":1}],\"customerId\":\"c-other\","
                         "\"couponCodes\":[\"%s\"]}", code), STATUS_OK);
    CHECK(s_rejected(code, "issued to another customer"));
    CHECK_INT(P("Quote", "{\"lines\":[{\"sku\":\"POT-1\",\"quantity\":1}],\"customerId\":\"c-bday\","
                         "\"couponCodes\":[\"%s\"]}", code), STATUS_OK);
    s_applied(0, code, 800);
    CHECK_INT(P("GetCoupon", "{\"code\":\"NOPE-NOPE\"}"), STATUS_NOT_FOUND);
}

int main(void)
{
    const char *svcs[] = {"promotions", "catalog", NULL};
    char *conninfo = harness_create_db("t_promotions", svcs);
    char *cat_conn = harness_conninfo("t_promotions", "catalog");
    harness_service_t cat = {0}, pro = {0};

    slog_init("test_promotions", SLOG_ERROR);
    s_zctx = zmq_ctx_new();
    s_now = util_now_ms();
    CHECK(conninfo != NULL);
    if (!conninfo)
        return check_done();
    CHECK_INT(harness_start_service(&cat, "shop-catalog", cat_conn, NULL), 0);
    CHECK_INT(harness_start_consumer(&pro, "shop-promotions", conninfo, "catalog", &cat), 0);
    s_cat.client = client_new(s_zctx, cat.rpc);
    s_pro.client = client_new(s_zctx, pro.rpc);
    snprintf(s_rpc, sizeof s_rpc, "%s", pro.rpc);
    s_pg = PQconnectdb(conninfo);
    if (cat.proc && pro.proc && PQstatus(s_pg) == CONNECTION_OK) {
        s_product("Longjing", "green tea", "TEA-A", 10000, 5000);
        s_product("Biluochun", "green tea", "TEA-B", 8000, 6000);
        s_product("Yixing pot", "teaware", "POT-1", 30000, 20000);
        s_product("Cup", "teaware", "CUP-1", 2000, 500);
        s_product("Race tea", "race", "RACE-1", 5000, 1000);
        /* promotions learns them from the catalog's events */
        CHECK_INT(jcall_until_ok(&s_pro, 10000, "Quote", "{\"lines\":[{\"sku\":\"TEA-A\",\"quantity\":1},"
                                                          "{\"sku\":\"RACE-1\",\"quantity\":1}]}"),
                  STATUS_OK);
        CHECK_INT(s_sql("SELECT cost_price FROM promotions.product_sku WHERE sku = 'POT-1'"), 20000);
        s_scenario_a();
        s_scenario_b();
        s_bad_input();
        s_upkeep();
        s_redemption();
        s_lock_order();
    }
    jcall_done(&s_cat);
    jcall_done(&s_pro);
    PQfinish(s_pg);
    client_destroy(&s_cat.client);
    client_destroy(&s_pro.client);
    if (pro.proc)
        CHECK_INT(harness_stop(&pro.proc, 10000), 0);
    if (cat.proc)
        CHECK_INT(harness_stop(&cat.proc, 10000), 0);
    zmq_ctx_term(s_zctx);
    free(conninfo);
    free(cat_conn);
    return check_done();
}
