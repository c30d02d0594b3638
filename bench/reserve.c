/* bench-reserve: ReserveStock throughput and latency through the catalog's RPC endpoint. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "loadgen.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "status.h"
#include "util.h"

#define S_METHOD_CREATE "shop.catalog.v1.CatalogService/CreateProduct"
#define S_METHOD_ADJUST "shop.catalog.v1.CatalogService/AdjustStock"
#define S_METHOD_RESERVE "shop.catalog.v1.CatalogService/ReserveStock"
#define S_METHOD_RELEASE "shop.catalog.v1.CatalogService/ReleaseReservation"
#define S_MAX_LEVELS 16
#define S_SKUS_PER_PRODUCT 100

typedef struct {
    const char *endpoint;
    const char *prefix;
    int levels[S_MAX_LEVELS];
    int nlevels;
    double duration_s;
    int nskus;
    int timeout_ms;
    bool release;
    bool json;
    bool tsv;
    int load_threads;
    int64_t load_on_hand;
    bool load;
    bool no_run;
} s_opts_t;

/* Shared by the load generator's threads during one level. */
typedef struct {
    const s_opts_t *opts;
    uint64_t nonce;
    atomic_uint_fast64_t releases, release_errors, release_us;
} s_ctx_t;

typedef struct {
    int concurrency;
    uint64_t reserves;
    uint64_t errors;
    uint64_t dropped;
    uint64_t release_errors;
    double elapsed_s;
    double per_s;
    double p50_ms;
    double p99_ms;
    double max_ms;
    double release_avg_ms;
    char first_error[200];
} s_result_t;

static void s_sku_code(const s_opts_t *o, int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s%06d", o->prefix, i);
}

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: bench-reserve [options]\n"
            "  --endpoint URL      catalog RPC endpoint (default $SHOP_CATALOG_RPC or tcp://127.0.0.1:7101)\n"
            "  --levels 1,8,32     concurrency levels, one row each (default 1,8,32)\n"
            "  --duration S        seconds per level (default 10)\n"
            "  --skus N            SKUs in the prepared set (default 10000)\n"
            "  --prefix P          SKU code prefix (default BENCH-); codes are P000001..\n"
            "  --timeout-ms MS     per-call deadline (default 5000)\n"
            "  --release           release each reservation after it (untimed, counted apart)\n"
            "  --load              first create the SKUs (CreateProduct, %d SKUs a product)\n"
            "                      and receive stock (AdjustStock) through the service\n"
            "  --load-only         --load, then exit\n"
            "  --on-hand N         stock received per SKU by --load (default 1000000)\n"
            "  --json | --tsv      machine-readable output instead of the table\n",
            S_SKUS_PER_PRODUCT);
}


static int s_parse(int argc, char **argv, s_opts_t *o)
{
    const char *env = getenv("SHOP_CATALOG_RPC");
    o->endpoint = env && *env ? env : "tcp://127.0.0.1:7101";
    o->prefix = "BENCH-";
    o->levels[0] = 1, o->levels[1] = 8, o->levels[2] = 32, o->nlevels = 3;
    o->duration_s = 10;
    o->nskus = 10000;
    o->timeout_ms = 5000;
    o->load_threads = 8;
    o->load_on_hand = 1000000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            s_usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--release")) {
            o->release = true;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else if (!strcmp(a, "--tsv")) {
            o->tsv = true;
        } else if (!strcmp(a, "--load")) {
            o->load = true;
        } else if (!strcmp(a, "--load-only")) {
            o->load = o->no_run = true;
        } else if (!v) {
            fprintf(stderr, "bench-reserve: %s needs a value (or is unknown)\n", a);
            return -1;
        } else if (!strcmp(a, "--endpoint")) {
            o->endpoint = v, i++;
        } else if (!strcmp(a, "--prefix")) {
            o->prefix = v, i++;
        } else if (!strcmp(a, "--levels")) {
            if ((o->nlevels = lg_parse_levels(v, o->levels, S_MAX_LEVELS)) < 0) {
                fprintf(stderr, "bench-reserve: --levels wants a list like 1,8,32 (1..1024, at most %d)\n",
                        S_MAX_LEVELS);
                return -1;
            }
            i++;
        } else if (!strcmp(a, "--duration")) {
            o->duration_s = strtod(v, &end), i++;
            if (*end || o->duration_s <= 0 || o->duration_s > 3600) {
                fprintf(stderr, "bench-reserve: --duration wants seconds in (0, 3600]\n");
                return -1;
            }
        } else if (!strcmp(a, "--skus")) {
            long n = strtol(v, &end, 10);
            i++;
            if (*end || n < 2 || n > 999999) {
                fprintf(stderr, "bench-reserve: --skus wants 2..999999\n");
                return -1;
            }
            o->nskus = (int)n;
        } else if (!strcmp(a, "--timeout-ms")) {
            long n = strtol(v, &end, 10);
            i++;
            if (*end || n < 1 || n > 600000) {
                fprintf(stderr, "bench-reserve: --timeout-ms wants 1..600000\n");
                return -1;
            }
            o->timeout_ms = (int)n;
        } else if (!strcmp(a, "--on-hand")) {
            long long n = strtoll(v, &end, 10);
            i++;
            if (*end || n < 1 || n > INT32_MAX) {
                fprintf(stderr, "bench-reserve: --on-hand wants 1..%d\n", INT32_MAX);
                return -1;
            }
            o->load_on_hand = n;
        } else {
            fprintf(stderr, "bench-reserve: unknown option %s\n", a);
            s_usage(stderr);
            return -1;
        }
    }
    if (o->json && o->tsv) {
        fprintf(stderr, "bench-reserve: choose one of --json and --tsv\n");
        return -1;
    }
    return 0;
}

/* ---- loading the prepared SKU set through the service ---- */

typedef struct {
    const s_opts_t *opts;
    int index;
    int nthreads;
    int failed;
} s_loader_t;

/* Products [index, index + nthreads, …) of S_SKUS_PER_PRODUCT SKUs each. */
static void *s_load_thread(void *arg)
{
    s_loader_t *l = arg;
    const s_opts_t *o = l->opts;
    client_t *c = client_new(NULL, o->endpoint);
    int nproducts = (o->nskus + S_SKUS_PER_PRODUCT - 1) / S_SKUS_PER_PRODUCT;
    if (!c) {
        fprintf(stderr, "bench-reserve: cannot connect to %s\n", o->endpoint);
        l->failed = 1;
        return NULL;
    }
    for (int p = l->index; p < nproducts && !l->failed; p += l->nthreads) {
        int first = p * S_SKUS_PER_PRODUCT + 1;
        int last = first + S_SKUS_PER_PRODUCT - 1;
        if (last > o->nskus)
            last = o->nskus;
        int n = last - first + 1;
        Shop__Catalog__V1__Sku skus[S_SKUS_PER_PRODUCT];
        Shop__Catalog__V1__Sku *skup[S_SKUS_PER_PRODUCT];
        Shop__Common__V1__Money price[S_SKUS_PER_PRODUCT];
        Shop__Common__V1__Money cost[S_SKUS_PER_PRODUCT];
        char codes[S_SKUS_PER_PRODUCT][48];
        char title[64];
        char key[96];
        snprintf(title, sizeof title, "%sproduct %d", o->prefix, p + 1);
        for (int k = 0; k < n; k++) {
            shop__catalog__v1__sku__init(&skus[k]);
            shop__common__v1__money__init(&price[k]);
            shop__common__v1__money__init(&cost[k]);
            s_sku_code(o, first + k, codes[k], sizeof codes[k]);
            price[k].minor_units = 1000, price[k].currency = "CNY";
            cost[k].minor_units = 600, cost[k].currency = "CNY";
            skus[k].code = codes[k];
            skus[k].list_price = &price[k];
            skus[k].cost_price = &cost[k];
            skup[k] = &skus[k];
        }
        Shop__Catalog__V1__Product prod;
        shop__catalog__v1__product__init(&prod);
        prod.title = title;
        prod.description = "benchmark product";
        prod.category = "bench";
        prod.brand = "bench";
        prod.status = SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ACTIVE;
        prod.n_skus = (size_t)n;
        prod.skus = skup;
        Shop__Catalog__V1__CreateProductRequest req;
        shop__catalog__v1__create_product_request__init(&req);
        req.product = &prod;
        ProtobufCMessage *resp = NULL;
        char *msg = NULL;
        snprintf(key, sizeof key, "bench-load-product-%s%d", o->prefix, p + 1);
        status_t st = client_call(c, S_METHOD_CREATE, &req.base, &shop__catalog__v1__create_product_response__descriptor,
                                  &resp, key, 30000, 3, &msg);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        if (st != STATUS_OK && st != STATUS_ALREADY_EXISTS) {
            fprintf(stderr, "bench-reserve: CreateProduct %s: %s %s\n", title, status_name(st), msg ? msg : "");
            l->failed = 1;
        }
        free(msg);
        for (int k = 0; k < n && !l->failed; k++) {
            Shop__Catalog__V1__AdjustStockRequest adj;
            shop__catalog__v1__adjust_stock_request__init(&adj);
            adj.sku = codes[k];
            adj.delta = (int32_t)o->load_on_hand;
            adj.reason = "receipt";
            adj.note = "bench-reserve --load";
            /* The key makes a re-run of --load receive the stock only once. */
            snprintf(key, sizeof key, "bench-load-stock-%.60s", codes[k]);
            resp = NULL;
            msg = NULL;
            st = client_call(c, S_METHOD_ADJUST, &adj.base, &shop__catalog__v1__adjust_stock_response__descriptor,
                             &resp, key, 30000, 3, &msg);
            if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
            if (st != STATUS_OK) {
                fprintf(stderr, "bench-reserve: AdjustStock %s: %s %s\n", codes[k], status_name(st), msg ? msg : "");
                l->failed = 1;
            }
            free(msg);
        }
    }
    client_destroy(&c);
    return NULL;
}

static int s_load(const s_opts_t *o)
{
    s_loader_t l[64];
    pthread_t t[64];
    int n = o->load_threads > 64 ? 64 : o->load_threads;
    int started = 0, rc = 0;
    int64_t t0 = util_mono_us();
    for (; started < n; started++) {
        l[started] = (s_loader_t){.opts = o, .index = started, .nthreads = n};
        if (pthread_create(&t[started], NULL, s_load_thread, &l[started]) != 0) {
            rc = -1;
            break;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(t[i], NULL);
        if (l[i].failed)
            rc = -1;
    }
    if (rc == 0)
        fprintf(stderr, "bench-reserve: loaded %d SKUs (%" PRId64 " on hand each) in %.1f s\n", o->nskus,
                o->load_on_hand, (double)(util_mono_us() - t0) / 1e6);
    return rc;
}

/* ---- the measured loop ---- */

/* One reservation of two distinct random SKUs (timed), then its release
 * when asked (untimed, counted apart). */
static status_t s_op(void *arg, client_t *c, int thread, uint64_t seq, uint64_t *rng,
                     int64_t *untimed_us, char *err, size_t errlen)
{
    s_ctx_t *x = arg;
    const s_opts_t *o = x->opts;
    char order_id[96], code_a[48], code_b[48], *msg = NULL;
    int a = (int)(lg_rand(rng) % (uint64_t)o->nskus);
    /* A distinct second SKU: an offset in [1, nskus-1]. */
    int b = (a + 1 + (int)(lg_rand(rng) % (uint64_t)(o->nskus - 1))) % o->nskus;
    Shop__Catalog__V1__ReservationLine lines[2], *linep[2] = {&lines[0], &lines[1]};
    Shop__Catalog__V1__ReserveStockRequest req = SHOP__CATALOG__V1__RESERVE_STOCK_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;

    s_sku_code(o, a + 1, code_a, sizeof code_a);
    s_sku_code(o, b + 1, code_b, sizeof code_b);
    snprintf(order_id, sizeof order_id, "bench-%016" PRIx64 "-%d-%" PRIu64, x->nonce, thread, seq);
    for (int k = 0; k < 2; k++) {
        shop__catalog__v1__reservation_line__init(&lines[k]);
        lines[k].quantity = 1;
    }
    lines[0].sku = code_a;
    lines[1].sku = code_b;
    req.order_id = order_id;
    req.n_lines = 2;
    req.lines = linep;
    status_t st = client_call(c, S_METHOD_RESERVE, &req.base,
                              &shop__catalog__v1__reserve_stock_response__descriptor, &resp, order_id,
                              o->timeout_ms, 1, &msg);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    if (st != STATUS_OK)
        snprintf(err, errlen, "%s", msg ? msg : "");
    free(msg);
    if (st == STATUS_OK && o->release) {
        Shop__Catalog__V1__ReleaseReservationRequest rel = SHOP__CATALOG__V1__RELEASE_RESERVATION_REQUEST__INIT;
        int64_t t0 = util_mono_us();
        rel.order_id = order_id;
        rel.reason = "bench";
        resp = NULL;
        msg = NULL;
        status_t rs = client_call(c, S_METHOD_RELEASE, &rel.base,
                                  &shop__catalog__v1__release_reservation_response__descriptor, &resp,
                                  NULL, o->timeout_ms, 1, &msg);
        int64_t us = util_mono_us() - t0;
        *untimed_us += us;
        atomic_fetch_add(&x->releases, 1);
        atomic_fetch_add(&x->release_us, (uint64_t)us);
        if (rs != STATUS_OK)
            atomic_fetch_add(&x->release_errors, 1);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        free(msg);
    }
    return st;
}

static int s_run_level(const s_opts_t *o, int conc, s_result_t *r)
{
    s_ctx_t x = {.opts = o, .nonce = ((uint64_t)util_now_ms() << 20) ^ (uint64_t)getpid() ^ ((uint64_t)conc << 56)};
    lg_result_t lg;

    memset(r, 0, sizeof *r);
    r->concurrency = conc;
    if (lg_run(o->endpoint, conc, o->duration_s, s_op, &x, &lg) != 0)
        return -1;
    r->reserves = lg.ok;
    r->errors = lg.errors;
    r->dropped = lg.unrecorded;
    r->release_errors = atomic_load(&x.release_errors);
    r->elapsed_s = lg.elapsed_s;
    r->per_s = lg.per_s;
    r->p50_ms = lg.p50_ms;
    r->p99_ms = lg.p99_ms;
    r->max_ms = lg.max_ms;
    uint64_t releases = atomic_load(&x.releases);
    r->release_avg_ms = releases ? (double)atomic_load(&x.release_us) / (double)releases / 1000.0 : 0;
    snprintf(r->first_error, sizeof r->first_error, "%s", lg.first_error);
    return 0;
}

static void s_print(const s_opts_t *o, const s_result_t *r, int n)
{
    if (o->json) {
        printf("{\"endpoint\":\"%s\",\"duration_s\":%.3f,\"skus\":%d,\"release\":%s,\"levels\":[", o->endpoint,
               o->duration_s, o->nskus, o->release ? "true" : "false");
        for (int i = 0; i < n; i++) {
            printf("%s{\"concurrency\":%d,\"reserves\":%" PRIu64 ",\"elapsed_s\":%.3f,\"reserves_per_s\":%.1f,"
                   "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%" PRIu64 ",\"release_errors\":%" PRIu64
                   ",\"release_avg_ms\":%.3f,\"unrecorded\":%" PRIu64 ",\"first_error\":",
                   i ? "," : "", r[i].concurrency, r[i].reserves, r[i].elapsed_s, r[i].per_s, r[i].p50_ms,
                   r[i].p99_ms, r[i].max_ms, r[i].errors, r[i].release_errors, r[i].release_avg_ms, r[i].dropped);
            if (r[i].first_error[0] == '\0') {
                printf("null}");
            } else {
                putchar('"');
                for (const char *p = r[i].first_error; *p; p++) {
                    if (*p == '"' || *p == '\\')
                        printf("\\%c", *p);
                    else if ((unsigned char)*p < 0x20)
                        printf("\\u%04x", (unsigned char)*p);
                    else
                        putchar(*p);
                }
                printf("\"}");
            }
        }
        printf("]}\n");
        return;
    }
    if (o->tsv) {
        for (int i = 0; i < n; i++)
            printf("%d\t%.1f\t%.3f\t%.3f\t%.3f\t%" PRIu64 "\t%" PRIu64 "\n", r[i].concurrency, r[i].per_s,
                   r[i].p50_ms, r[i].p99_ms, r[i].max_ms, r[i].errors + r[i].release_errors, r[i].reserves);
        return;
    }
    printf("%11s | %10s | %8s | %8s | %8s | %7s\n", "concurrency", "reserves/s", "p50 ms", "p99 ms", "max ms",
           "errors");
    for (int i = 0; i < n; i++)
        printf("%11d | %10.1f | %8.3f | %8.3f | %8.3f | %7" PRIu64 "\n", r[i].concurrency, r[i].per_s, r[i].p50_ms,
               r[i].p99_ms, r[i].max_ms, r[i].errors + r[i].release_errors);
    for (int i = 0; i < n; i++)
        if (r[i].first_error[0])
            printf("concurrency %d: first error %s\n", r[i].concurrency, r[i].first_error);
}

int main(int argc, char **argv)
{
    int rc = 1;
    s_opts_t o;
    s_result_t res[S_MAX_LEVELS];
    int done = 0;

    memset(&o, 0, sizeof o);
    if (s_parse(argc, argv, &o) != 0)
        goto fail;
    if (o.load && s_load(&o) != 0)
        goto fail;
    if (o.no_run) {
        rc = 0;
        goto fail;
    }
    for (; done < o.nlevels; done++) {
        if (s_run_level(&o, o.levels[done], &res[done]) != 0)
            goto fail;
        if (!o.json && !o.tsv)
            fprintf(stderr, "bench-reserve: concurrency %d: %" PRIu64 " reserves in %.1f s\n", o.levels[done],
                    res[done].reserves, res[done].elapsed_s);
    }
    s_print(&o, res, done);
    rc = 0;
    for (int i = 0; i < done; i++)
        if (res[i].reserves == 0)
            rc = 2; /* nothing succeeded: the numbers mean nothing */
fail:
    return rc;
}
