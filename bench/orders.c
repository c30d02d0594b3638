/* bench-orders: orders placed through the whole stack under load.
 *
 *   bench-orders --load --catalog EP --promotions EP --skus N
 *       creates N products with ample stock (promotions learns them from
 *       the catalog's events), a 10% sale on every tenth SKU and the coupon
 *       BENCH5 (5% off, at most 10,000,000 uses);
 *   bench-orders --rpc EP --skus N --levels 1,8,32 --duration S [--tsv]
 *       runs each level and prints orders/s, p50, p99, max and errors.
 *
 * An order is 3 distinct random SKUs, one unit each, every fourth with the
 * coupon, a fresh idempotency key, for one of 1,000 customers. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "loadgen.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "shop/orders/v1/orders.pb-c.h"
#include "shop/promotions/v1/promotions.pb-c.h"
#include "util.h"

#define CAT "shop.catalog.v1.CatalogService/"
#define PRO "shop.promotions.v1.PromotionsService/"
#define ORD "shop.orders.v1.OrdersService/"

typedef struct {
    const char *rpc, *catalog, *promotions;
    int levels[16], nlevels, skus;
    double duration;
    bool load, tsv;
} opts_t;

typedef struct {
    int skus;
    uint64_t nonce;
} ctx_t;

/* A call whose reply is not needed; OK or ALREADY_EXISTS (a second load)
 * pass. */
static int s_call(client_t *c, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *out_type)
{
    ProtobufCMessage *out = NULL;
    char *msg = NULL;
    status_t st = client_call(c, method, req, out_type, &out, NULL, 60000, 1, &msg);

    if (st != STATUS_OK && st != STATUS_ALREADY_EXISTS)
        fprintf(stderr, "bench-orders: %s: %s %s\n", method, status_name(st), msg ? msg : "");
    free(msg);
    if (out)
        protobuf_c_message_free_unpacked(out, NULL);
    return st == STATUS_OK || st == STATUS_ALREADY_EXISTS ? 0 : -1;
}

static void s_sku(char *buf, size_t len, int i) { snprintf(buf, len, "B-%05d", i); }

static int s_load(const opts_t *o)
{
    client_t *cat = client_new(NULL, o->catalog), *pro = client_new(NULL, o->promotions);
    int rc = cat && pro ? 0 : -1;

    for (int i = 0; i < o->skus && rc == 0; i++) {
        Shop__Catalog__V1__CreateProductRequest cr = SHOP__CATALOG__V1__CREATE_PRODUCT_REQUEST__INIT;
        Shop__Catalog__V1__Product p = SHOP__CATALOG__V1__PRODUCT__INIT;
        Shop__Catalog__V1__Sku s = SHOP__CATALOG__V1__SKU__INIT, *sp = &s;
        Shop__Common__V1__Money list = SHOP__COMMON__V1__MONEY__INIT, cost = SHOP__COMMON__V1__MONEY__INIT;
        char code[16], title[32];
        s_sku(code, sizeof code, i);
        snprintf(title, sizeof title, "Bench product %d", i);
        list.minor_units = 1000 + (i % 50) * 100;
        list.currency = cost.currency = "CNY";
        cost.minor_units = list.minor_units / 3;
        s.code = code;
        s.list_price = &list;
        s.cost_price = &cost;
        p.title = title;
        p.category = i % 2 ? "tea" : "teaware";
        p.status = SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ACTIVE;
        p.skus = &sp;
        p.n_skus = 1;
        cr.product = &p;
        rc = s_call(cat, CAT "CreateProduct", &cr.base, &shop__catalog__v1__create_product_response__descriptor);
        Shop__Catalog__V1__AdjustStockRequest ar = SHOP__CATALOG__V1__ADJUST_STOCK_REQUEST__INIT;
        ar.sku = code;
        ar.delta = 1000000;
        ar.reason = "receipt";
        if (rc == 0)
            rc = s_call(cat, CAT "AdjustStock", &ar.base, &shop__catalog__v1__adjust_stock_response__descriptor);
    }
    /* a sale on every tenth SKU, and the coupon */
    char **codes = calloc((size_t)o->skus / 10 + 1, sizeof *codes);
    size_t n = 0;
    for (int i = 0; i < o->skus && codes; i += 10) {
        codes[n] = malloc(16);
        if (codes[n])
            s_sku(codes[n++], 16, i);
    }
    Shop__Promotions__V1__CreateRuleRequest rr = SHOP__PROMOTIONS__V1__CREATE_RULE_REQUEST__INIT;
    Shop__Promotions__V1__Rule rule = SHOP__PROMOTIONS__V1__RULE__INIT;
    rule.code = "BENCH-SALE";
    rule.name = "Bench sale";
    rule.kind = SHOP__PROMOTIONS__V1__RULE_KIND__RULE_KIND_PERCENT_OFF;
    rule.scope = SHOP__PROMOTIONS__V1__RULE_SCOPE__RULE_SCOPE_SKUS;
    rule.skus = codes;
    rule.n_skus = n;
    rule.percent_off = 10;
    rr.rule = &rule;
    if (rc == 0 && codes)
        rc = s_call(pro, PRO "CreateRule", &rr.base, &shop__promotions__v1__create_rule_response__descriptor);
    for (size_t i = 0; i < n; i++)
        free(codes[i]);
    free(codes);
    Shop__Promotions__V1__CreateCouponRequest cc = SHOP__PROMOTIONS__V1__CREATE_COUPON_REQUEST__INIT;
    Shop__Promotions__V1__Coupon coupon = SHOP__PROMOTIONS__V1__COUPON__INIT;
    coupon.code = "BENCH5";
    coupon.kind = SHOP__PROMOTIONS__V1__COUPON_KIND__COUPON_KIND_PERCENT_OFF;
    coupon.percent_off = 5;
    coupon.total_limit = 10000000;
    cc.coupon = &coupon;
    if (rc == 0)
        rc = s_call(pro, PRO "CreateCoupon", &cc.base, &shop__promotions__v1__create_coupon_response__descriptor);
    /* until promotions has applied the last product */
    Shop__Promotions__V1__QuoteRequest q = SHOP__PROMOTIONS__V1__QUOTE_REQUEST__INIT;
    Shop__Promotions__V1__CartLine line = SHOP__PROMOTIONS__V1__CART_LINE__INIT, *lp = &line;
    char last[16];
    s_sku(last, sizeof last, o->skus - 1);
    line.sku = last;
    line.quantity = 1;
    q.lines = &lp;
    q.n_lines = 1;
    int ready = -1;
    for (int i = 0; i < 600 && rc == 0 && ready != 0; i++) {
        ProtobufCMessage *out = NULL;
        ready = client_call(pro, PRO "Quote", &q.base, &shop__promotions__v1__quote_response__descriptor,
                            &out, NULL, 5000, 1, NULL) == STATUS_OK ? 0 : -1;
        if (out)
            protobuf_c_message_free_unpacked(out, NULL);
        if (ready != 0)
            util_sleep_ms(100);
    }
    if (rc == 0 && ready != 0) {
        fprintf(stderr, "bench-orders: promotions does not know %s after 60 s\n", last);
        rc = -1;
    }
    client_destroy(&cat);
    client_destroy(&pro);
    return rc;
}

static status_t s_op(void *arg, client_t *c, int thread, uint64_t seq, uint64_t *rng,
                     int64_t *untimed_us, char *err, size_t errlen)
{
    const ctx_t *x = arg;
    Shop__Orders__V1__PlaceOrderRequest req = SHOP__ORDERS__V1__PLACE_ORDER_REQUEST__INIT;
    Shop__Orders__V1__PlaceLine lines[3], *lp[3];
    Shop__Orders__V1__Address addr = SHOP__ORDERS__V1__ADDRESS__INIT;
    char skus[3][16], customer[16], key[64], *coupon = "BENCH5";
    int pick[3];

    (void)untimed_us;
    for (int i = 0; i < 3; i++) {
        do
            pick[i] = (int)(lg_rand(rng) % (uint64_t)x->skus);
        while ((i > 0 && pick[i] == pick[0]) || (i > 1 && pick[i] == pick[1]));
        s_sku(skus[i], sizeof skus[i], pick[i]);
        shop__orders__v1__place_line__init(&lines[i]);
        lines[i].sku = skus[i];
        lines[i].quantity = 1;
        lp[i] = &lines[i];
    }
    snprintf(customer, sizeof customer, "bc%d", (int)(lg_rand(rng) % 1000));
    snprintf(key, sizeof key, "bench-%" PRIx64 "-%d-%" PRIu64, x->nonce, thread, seq);
    addr.name = "Bench Buyer";
    addr.line1 = "1 Load Street";
    addr.city = "Hangzhou";
    addr.country = "CN";
    req.customer_id = customer;
    req.lines = lp;
    req.n_lines = 3;
    req.shipping_address = &addr;
    if (seq % 4 == 0) {
        req.coupon_codes = &coupon;
        req.n_coupon_codes = 1;
    }
    ProtobufCMessage *out = NULL;
    char *msg = NULL;
    status_t st = client_call(c, ORD "PlaceOrder", &req.base,
                              &shop__orders__v1__place_order_response__descriptor, &out, key, 10000, 1, &msg);
    if (st != STATUS_OK)
        snprintf(err, errlen, "%s: %s", status_name(st), msg ? msg : "");
    free(msg);
    if (out)
        protobuf_c_message_free_unpacked(out, NULL);
    return st;
}

int main(int argc, char **argv)
{
    opts_t o = {.duration = 10, .skus = 1000};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--load") == 0) {
            o.load = true;
        } else if (strcmp(a, "--tsv") == 0) {
            o.tsv = true;
        } else if (v && strcmp(a, "--rpc") == 0) {
            o.rpc = v, i++;
        } else if (v && strcmp(a, "--catalog") == 0) {
            o.catalog = v, i++;
        } else if (v && strcmp(a, "--promotions") == 0) {
            o.promotions = v, i++;
        } else if (v && strcmp(a, "--skus") == 0) {
            o.skus = atoi(v), i++;
        } else if (v && strcmp(a, "--duration") == 0) {
            o.duration = atof(v), i++;
        } else if (v && strcmp(a, "--levels") == 0) {
            if ((o.nlevels = lg_parse_levels(v, o.levels, 16)) < 0) {
                fprintf(stderr, "bench-orders: --levels wants a list like 1,8,32\n");
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "usage: bench-orders --load --catalog EP --promotions EP [--skus N]\n"
                            "       bench-orders --rpc EP --levels 1,8,32 [--duration S] [--skus N] [--tsv]\n");
            return 2;
        }
    }
    if (o.skus < 3 || (o.load ? !o.catalog || !o.promotions : !o.rpc || !o.nlevels)) {
        fprintf(stderr, "bench-orders: missing or bad options (see --help)\n");
        return 2;
    }
    int rc;
    if (o.load) {
        rc = s_load(&o) == 0 ? 0 : 1;
    } else {
        ctx_t x = {o.skus, (uint64_t)util_now_ms() ^ (uint64_t)getpid() << 40};
        rc = lg_levels(o.rpc, o.levels, o.nlevels, o.duration, s_op, &x, o.tsv) == 0 ? 0 : 1;
    }
    return rc;
}
