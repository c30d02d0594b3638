/* reports: the operator's morning check. Units count held and confirmed
 * reservations (stock promised to orders) created in the asked window. */
#include <inttypes.h>
#include <string.h>

#include "catalog.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "store.h"

typedef Shop__Catalog__V1__SkuSales sales_t;

typedef struct {
    call_t *call;
    sales_t **rows;
    size_t n, cap;
} sales_list_t;

static void s_on_sales(void *arg, const store_sales_t *row)
{
    sales_list_t *l = arg;
    sales_t *s = call_alloc(l->call, sizeof *s);

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        sales_t **rows = call_alloc(l->call, cap * sizeof *rows);
        if (l->n)
            memcpy(rows, l->rows, l->n * sizeof *rows);
        l->rows = rows;
        l->cap = cap;
    }
    shop__catalog__v1__sku_sales__init(s);
    s->sku = call_strdup(l->call, row->sku);
    s->product_id = row->product_id;
    s->title = call_strdup(l->call, row->title);
    s->units = row->units;
    s->revenue = call_money(l->call, row->revenue, row->currency);
    s->cumulative_share = row->cumulative_share;
    l->rows[l->n++] = s;
}

static status_t s_window(call_t *call, int64_t since_ms, int64_t until_ms)
{
    if (since_ms < 0 || until_ms < 0 || (until_ms && until_ms <= since_ms))
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "since_ms and until_ms: 0 (open) or 0 <= since < until");
    return STATUS_OK;
}

CATALOG_HANDLER(catalog_best_sellers)
{
    const Shop__Catalog__V1__BestSellersRequest *req = (const void *)request;
    Shop__Catalog__V1__BestSellersResponse *resp = (void *)response;
    sales_list_t l = {.call = call};
    uint32_t limit = req->limit ? req->limit : 10;
    status_t code = s_window(call, req->since_ms, req->until_ms);

    if (code != STATUS_OK)
        return code;
    if (limit > 1000)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "limit: at most 1000");
    if (store_best_sellers(call_db(call), req->since_ms, req->until_ms, (int)limit, s_on_sales,
                           &l) != 0)
        return call_db_fail(call, "best sellers");
    resp->skus = l.rows;
    resp->n_skus = l.n;
    return STATUS_OK;
}

CATALOG_HANDLER(catalog_pareto_report)
{
    const Shop__Catalog__V1__ParetoReportRequest *req = (const void *)request;
    Shop__Catalog__V1__ParetoReportResponse *resp = (void *)response;
    sales_list_t l = {.call = call};
    uint32_t percent = req->percent ? req->percent : 80;
    status_t code = s_window(call, req->since_ms, req->until_ms);

    if (code != STATUS_OK)
        return code;
    if (percent > 100)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "percent: 1 to 100");
    if (store_pareto(call_db(call), req->since_ms, req->until_ms, (int)percent, s_on_sales, &l,
                     &resp->total_units, &resp->skus_with_sales) != 0)
        return call_db_fail(call, "pareto report");
    resp->skus = l.rows;
    resp->n_skus = l.n;
    resp->share_of_skus = resp->skus_with_sales ? 100.0 * (double)l.n / resp->skus_with_sales : 0;
    return STATUS_OK;
}
