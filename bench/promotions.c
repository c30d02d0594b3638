/* bench-promotions: Quote and Redeem through shop-promotions under load.
 *
 *   bench-promotions --rpc EP --catalog EP --load --codes FILE
 *       creates --skus products in the catalog (promotions learns them from
 *       its events), --rules active rules of every kind, a tier and
 *       --coupons single-use coupons (their codes written to FILE);
 *   bench-promotions --rpc EP --codes FILE --mode quote|redeem|floor --levels 1,8,32
 *       runs each level for --duration seconds and prints ops/s, p50, p99,
 *       max and errors (a table, or --tsv).
 *
 * A quote is a 5-line cart of random SKUs with a coupon and the tier; a
 * redemption is the same with a fresh order id and a coupon never used. */
#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "loadgen.h"
#include "jsoncall.h"
#include "shop/promotions/v1/promotions.pb-c.h"
#include "util.h"

#define PRO "shop.promotions.v1.PromotionsService/"
#define LINES 5
#define CHECK_EVERY 64   /* replies of which one is unpacked and checked */

typedef struct {
    const char *rpc, *catalog, *codes_file, *mode;
    int levels[16], nlevels;
    double duration;
    int skus, rules, coupons;
    bool load, tsv;
} opts_t;

typedef struct {
    const opts_t *o;
    char **codes;
    size_t n_codes;
    atomic_size_t next_code;
    uint64_t nonce;
} ctx_t;

/* One call with a JSON request; 0 if it answered OK (or ALREADY_EXISTS, so
 * loading twice is harmless). The reply goes to *out when out is given. */
static int s_call(client_t *c, const char *service, const char *method, const char *json_text,
                  json_t **out)
{
    json_t *in = json_loads(json_text, 0, NULL);
    char err[256], *msg = NULL;
    status_t st = STATUS_UNKNOWN;

    if (!in || jsoncall(c, service, method, in, NULL, 60000, 1, 0, &st, out, &msg, err, sizeof err) != 0) {
        fprintf(stderr, "bench-promotions: bad %s request: %s\n", method, in ? err : json_text);
        json_decref(in);
        return -1;
    }
    json_decref(in);
    if (st != STATUS_OK && st != STATUS_ALREADY_EXISTS)
        fprintf(stderr, "bench-promotions: %s: %s: %s\n", method, status_name(st), msg ? msg : "");
    free(msg);
    return st == STATUS_OK || st == STATUS_ALREADY_EXISTS ? 0 : -1;
}

static int s_load(const opts_t *o)
{
    client_t *cat = client_new(NULL, o->catalog), *pro = client_new(NULL, o->rpc);
    char buf[1024];
    int rc = -1;

    if (!cat || !pro)
        goto done;
    for (int i = 1; i <= o->skus; i++) {
        snprintf(buf, sizeof buf,
                 "{\"product\":{\"title\":\"Bench %d\",\"category\":\"cat-%d\",\"status\":"
                 "\"PRODUCT_STATUS_ACTIVE\",\"skus\":[{\"code\":\"BP-%04d\",\"listPrice\":{"
                 "\"minorUnits\":%d,\"currency\":\"CNY\"},\"costPrice\":{\"minorUnits\":3000,"
                 "\"currency\":\"CNY\"}}]}}",
                 i, i % 20, i, 10000 + (i % 50) * 100);
        if (s_call(cat, "shop.catalog.v1.CatalogService", "CreateProduct", buf, NULL) != 0)
            goto done;
    }
    /* promotions learns the SKUs from the catalog's events */
    snprintf(buf, sizeof buf, "{\"lines\":[{\"sku\":\"BP-%04d\",\"quantity\":1}]}", o->skus);
    int known = -1;
    for (int i = 0; i < 600 && known != 0; i++) {
        Shop__Promotions__V1__QuoteRequest q = SHOP__PROMOTIONS__V1__QUOTE_REQUEST__INIT;
        Shop__Promotions__V1__CartLine l = SHOP__PROMOTIONS__V1__CART_LINE__INIT, *lp = &l;
        char sku[16];
        ProtobufCMessage *resp = NULL;
        snprintf(sku, sizeof sku, "BP-%04d", o->skus);
        l.sku = sku;
        l.quantity = 1;
        q.lines = &lp;
        q.n_lines = 1;
        known = client_call(pro, PRO "Quote", &q.base, &shop__promotions__v1__quote_response__descriptor,
                            &resp, NULL, 5000, 1, NULL) == STATUS_OK ? 0 : -1;
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        if (known != 0)
            usleep(100 * 1000);
    }
    if (known != 0) {
        fprintf(stderr, "bench-promotions: promotions never learned the catalog's SKUs\n");
        goto done;
    }
    /* A shop's mix: most rules on a few SKUs, some on a category, a few
     * bundles and order-wide offers; a tenth capped, every 25th exclusive. */
    for (int i = 0; i < o->rules; i++) {
        char what[240], target[200], extra[160] = "";
        int kind = i % 20, a = (i * 7) % o->skus + 1, b = (i * 7 + 13) % o->skus + 1,
            c = (i * 7 + 29) % o->skus + 1;
        target[0] = '\0';
        if (kind < 16)
            snprintf(target, sizeof target, ",\"scope\":\"RULE_SCOPE_SKUS\",\"skus\":[\"BP-%04d\",\"BP-%04d\",\"BP-%04d\"]",
                     a, b, c);
        else if (kind < 18)
            snprintf(target, sizeof target, ",\"scope\":\"RULE_SCOPE_CATEGORIES\",\"categories\":[\"cat-%d\"]",
                     i % 20);
        if (kind == 18)
            snprintf(what, sizeof what, "\"kind\":\"RULE_KIND_BUNDLE_PRICE\",\"bundle\":[{\"sku\":\"BP-%04d\","
                                        "\"quantity\":1},{\"sku\":\"BP-%04d\",\"quantity\":1}],\"bundlePrice\":"
                                        "{\"minorUnits\":18000,\"currency\":\"CNY\"}", a, b);
        else if (kind == 19)
            snprintf(what, sizeof what, "\"kind\":\"RULE_KIND_AMOUNT_OFF\",\"scope\":\"RULE_SCOPE_ORDER\","
                                        "\"amountOff\":{\"minorUnits\":%d,\"currency\":\"CNY\"},\"minSpend\":"
                                        "{\"minorUnits\":%d,\"currency\":\"CNY\"}", 500 + i % 7 * 100, 30000 + i % 9 * 5000);
        else if (kind % 4 == 2)
            snprintf(what, sizeof what, "\"kind\":\"RULE_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":%d,"
                                        "\"currency\":\"CNY\"}", 50 + i % 5 * 10);
        else if (kind % 4 == 3)
            snprintf(what, sizeof what, "\"kind\":\"RULE_KIND_BUY_X_GET_Y\",\"buyQuantity\":2,\"getQuantity\":1");
        else
            snprintf(what, sizeof what, "\"kind\":\"RULE_KIND_PERCENT_OFF\",\"percentOff\":%d", 2 + i % 5);
        if (i % 25 == 0)
            snprintf(extra, sizeof extra, ",\"exclusive\":true,\"priority\":%d", 200 + i / 25);
        else
            snprintf(extra, sizeof extra, ",\"priority\":%d%s", i % 100, i % 10 == 0 ? ",\"usageCap\":100000000" : "");
        snprintf(buf, sizeof buf, "{\"rule\":{\"code\":\"BR-%04d\",\"name\":\"Bench rule %d\",%s%s%s}}", i, i,
                 what, target, extra);
        if (s_call(pro, "shop.promotions.v1.PromotionsService", "CreateRule", buf, NULL) != 0)
            goto done;
    }
    if (s_call(pro, "shop.promotions.v1.PromotionsService", "SetTier",
               "{\"tier\":{\"name\":\"silver\",\"percentOff\":3}}", NULL) != 0)
        goto done;
    FILE *f = fopen(o->codes_file, "w");
    if (!f)
        goto done;
    for (int left = o->coupons; left > 0;) {
        int n = left > 10000 ? 10000 : left;
        json_t *resp = NULL;
        snprintf(buf, sizeof buf,
                 "{\"template\":{\"kind\":\"COUPON_KIND_AMOUNT_OFF\",\"amountOff\":{\"minorUnits\":100,"
                 "\"currency\":\"CNY\"},\"campaign\":\"bench\"},\"count\":%d,\"prefix\":\"BENCH\"}", n);
        if (s_call(pro, "shop.promotions.v1.PromotionsService", "IssueCoupons", buf, &resp) != 0 || !resp) {
            fclose(f);
            goto done;
        }
        json_t *codes = json_object_get(resp, "codes");
        for (size_t i = 0; i < json_array_size(codes); i++)
            fprintf(f, "%s\n", json_string_value(json_array_get(codes, i)));
        json_decref(resp);
        left -= n;
    }
    if (fclose(f) != 0)
        goto done;
    rc = 0;
done:
    client_destroy(&cat);
    client_destroy(&pro);
    return rc;
}

/* A cart of LINES distinct random SKUs. */
static void s_cart(const opts_t *o, uint64_t *rng, Shop__Promotions__V1__CartLine *lines,
                   Shop__Promotions__V1__CartLine **lp, char skus[LINES][16])
{
    int picked[LINES];

    for (int k = 0; k < LINES; k++) {
        int s;
        bool dup;
        do {
            s = (int)(lg_rand(rng) % (uint64_t)o->skus) + 1;
            dup = false;
            for (int m = 0; m < k; m++)
                dup = dup || picked[m] == s;
        } while (dup);
        picked[k] = s;
        snprintf(skus[k], 16, "BP-%04d", s);
        shop__promotions__v1__cart_line__init(&lines[k]);
        lines[k].sku = skus[k];
        lines[k].quantity = (int32_t)(lg_rand(rng) % 3) + 1;
        lp[k] = &lines[k];
    }
}

/* A quote of the bench's carts: every line priced, the totals adding up,
 * a saving from the tier at least. */
static bool s_quote_ok(const Shop__Promotions__V1__Quote *q)
{
    int64_t sum = 0;

    if (!q || q->n_lines != LINES || !q->subtotal || !q->total || !q->total_saved || q->n_applied == 0)
        return false;
    for (size_t i = 0; i < q->n_lines; i++) {
        if (!q->lines[i]->total)
            return false;
        sum += q->lines[i]->total->minor_units;
    }
    return sum == q->total->minor_units && q->total_saved->minor_units > 0 &&
           q->subtotal->minor_units - q->total_saved->minor_units == q->total->minor_units;
}

static status_t s_op(void *arg, client_t *c, int thread, uint64_t seq, uint64_t *rng,
                     int64_t *untimed_us, char *err, size_t errlen)
{
    ctx_t *x = arg;
    (void)untimed_us;
    bool redeem = strcmp(x->o->mode, "redeem") == 0;
    Shop__Promotions__V1__CartLine lines[LINES], *lp[LINES];
    char skus[LINES][16], customer[32], order[64], *code = NULL;
    Shop__Promotions__V1__QuoteRequest q = SHOP__PROMOTIONS__V1__QUOTE_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char *msg = NULL;
    status_t st;

    if (strcmp(x->o->mode, "floor") == 0) {
        /* a quote with no lines, refused at once on the service's loop
         * thread: the round trip through driver, ZeroMQ and runtime alone */
        st = client_call(c, PRO "Quote", &q.base, &shop__promotions__v1__quote_response__descriptor, &resp,
                         NULL, 10000, 1, &msg);
        if (st != STATUS_INVALID_ARGUMENT)
            snprintf(err, errlen, "floor: %s %s", status_name(st), msg ? msg : "");
        free(msg);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        return st == STATUS_INVALID_ARGUMENT ? STATUS_OK : (st == STATUS_OK ? STATUS_INTERNAL : st);
    }

    s_cart(x->o, rng, lines, lp, skus);
    snprintf(customer, sizeof customer, "c-%d", thread);
    q.lines = lp;
    q.n_lines = LINES;
    q.customer_id = customer;
    q.tier = "silver";
    if (x->n_codes) {
        size_t i = redeem ? atomic_fetch_add(&x->next_code, 1) : (size_t)(lg_rand(rng) % x->n_codes);
        if (i < x->n_codes)
            code = x->codes[i];
    }
    q.coupon_codes = code ? &code : NULL;
    q.n_coupon_codes = code ? 1 : 0;
    /* The driver shares the machine's cores with the service: it reads the
     * status of every reply, and unpacks and checks the quote in one reply
     * of CHECK_EVERY (a quote's reply lists about a hundred promotions with
     * their reasons; unpacking each cost the driver as much CPU as the
     * service spent answering). */
    ProtobufCMessage **out = seq % CHECK_EVERY == 0 ? &resp : NULL;
    if (redeem) {
        Shop__Promotions__V1__RedeemRequest r = SHOP__PROMOTIONS__V1__REDEEM_REQUEST__INIT;
        snprintf(order, sizeof order, "bp-%" PRIx64 "-%d-%" PRIu64, x->nonce, thread, seq);
        r.order_id = order;
        r.quote = &q;
        st = client_call(c, PRO "Redeem", &r.base, &shop__promotions__v1__redeem_response__descriptor, out,
                         NULL, 10000, 1, &msg);
    } else {
        st = client_call(c, PRO "Quote", &q.base, &shop__promotions__v1__quote_response__descriptor, out, NULL,
                         10000, 1, &msg);
    }
    if (st != STATUS_OK)
        snprintf(err, errlen, "%s", msg ? msg : "");
    else if (out && !s_quote_ok(redeem ? ((Shop__Promotions__V1__RedeemResponse *)resp)->quote
                                       : ((Shop__Promotions__V1__QuoteResponse *)resp)->quote)) {
        snprintf(err, errlen, "a reply's quote does not add up");
        st = STATUS_INTERNAL;
    }
    free(msg);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return st;
}

static int s_read_codes(const char *file, ctx_t *x)
{
    FILE *f = fopen(file, "r");
    char line[64];
    size_t cap = 0;

    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!line[0])
            continue;
        if (x->n_codes == cap) {
            cap = cap ? cap * 2 : 1024;
            char **more = realloc(x->codes, cap * sizeof *more);
            if (!more)
                break;
            x->codes = more;
        }
        x->codes[x->n_codes++] = strdup(line);
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    opts_t o = {.mode = "quote", .duration = 10, .skus = 2000, .rules = 1000, .coupons = 10000};
    ctx_t x = {.o = &o};

    o.levels[o.nlevels++] = 8;
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
        } else if (v && strcmp(a, "--codes") == 0) {
            o.codes_file = v, i++;
        } else if (v && strcmp(a, "--mode") == 0) {
            o.mode = v, i++;
        } else if (v && strcmp(a, "--duration") == 0) {
            o.duration = atof(v), i++;
        } else if (v && strcmp(a, "--skus") == 0) {
            o.skus = atoi(v), i++;
        } else if (v && strcmp(a, "--rules") == 0) {
            o.rules = atoi(v), i++;
        } else if (v && strcmp(a, "--coupons") == 0) {
            o.coupons = atoi(v), i++;
        } else if (v && strcmp(a, "--levels") == 0) {
            if ((o.nlevels = lg_parse_levels(v, o.levels, 16)) < 0) {
                fprintf(stderr, "bench-promotions: --levels wants a list like 1,8,32\n");
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "usage: bench-promotions --rpc EP [--catalog EP --load] --codes FILE "
                            "[--mode quote|redeem|floor] [--levels 1,8,32] [--duration S] [--skus N] "
                            "[--rules N] [--coupons N] [--tsv]\n");
            return 2;
        }
    }
    if (!o.rpc || !o.codes_file || o.skus < LINES || o.duration <= 0 ||
        (strcmp(o.mode, "quote") != 0 && strcmp(o.mode, "redeem") != 0 && strcmp(o.mode, "floor") != 0) ||
        (o.load && !o.catalog)) {
        fprintf(stderr, "bench-promotions: --rpc and --codes are needed (--catalog with --load), "
                        "--skus >= %d, --mode quote, redeem or floor\n", LINES);
        return 2;
    }
    if (o.load)
        return s_load(&o) == 0 ? 0 : 1;
    if (s_read_codes(o.codes_file, &x) != 0) {
        fprintf(stderr, "bench-promotions: cannot read %s\n", o.codes_file);
        return 1;
    }
    x.nonce = (uint64_t)util_now_ms() ^ (uint64_t)getpid() << 40;
    int rc = 0;
    if (lg_levels(o.rpc, o.levels, o.nlevels, o.duration, s_op, &x, o.tsv) != 0)
        rc = 1;
    for (size_t i = 0; i < x.n_codes; i++)
        free(x.codes[i]);
    free(x.codes);
    return rc;
}
