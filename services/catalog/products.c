/* products: create, update, get, list and search products with their SKUs.
 * Every reply carries products as read back from the database, so create,
 * update, get, list and search all show the same shape. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "money.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "store.h"
#include "util.h"

typedef Shop__Catalog__V1__Product product_t;
typedef Shop__Catalog__V1__Sku sku_t;
typedef Shop__Catalog__V1__Attribute attribute_t;

#define PAGE_DEFAULT 20
#define PAGE_MAX 100
#define SEARCH_OFFSET_MAX 10000
#define QUERY_MAX 200

bool catalog_valid_sku(const char *code)
{
    return util_valid_code(code, 64);
}

/* --- messages to rows ---------------------------------------------------- */

/* Attributes as a JSON array of {"name","value"}; malloc'd, NULL on OOM. */
static char *s_attributes_json(attribute_t *const *attrs, size_t n)
{
    json_t *arr = json_array();
    char *out = NULL;

    if (!arr)
        return NULL;
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:s}", "name", attrs[i]->name, "value",
                                             attrs[i]->value));
    out = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return out;
}

static const char *s_status_text(Shop__Catalog__V1__ProductStatus s)
{
    switch (s) {
    case SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_UNSPECIFIED: return "";
    case SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_DRAFT: return "draft";
    case SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ACTIVE: return "active";
    case SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ARCHIVED: return "archived";
    default: return NULL;
    }
}

static Shop__Catalog__V1__ProductStatus s_status_enum(const char *s)
{
    if (strcmp(s, "active") == 0)
        return SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ACTIVE;
    if (strcmp(s, "archived") == 0)
        return SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ARCHIVED;
    return SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_DRAFT;
}

static status_t s_check_attributes(call_t *call, const char *where, attribute_t *const *attrs,
                                   size_t n)
{
    if (n > 64)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s.attributes: at most 64", where);
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(attrs[i]->name), vl = strlen(attrs[i]->value);
        if (nl < 1 || nl > 64 || vl > 1000)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "%s.attributes[%zu]: a name of 1 to 64 and a value of at most 1000 "
                             "characters", where, i);
    }
    return STATUS_OK;
}

/* Checks a product as given to CreateProduct (min_skus 1) or UpdateProduct
 * (min_skus 0, id required). */
static status_t s_validate_product(call_t *call, const product_t *p, size_t min_skus)
{
    char err[200];
    status_t code;

    if (!p)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "product: required");
    size_t tl = strlen(p->title);
    if (tl < 1 || tl > 200)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "product.title: 1 to 200 characters");
    if (strlen(p->description) > 20000)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "product.description: at most 20000 characters");
    if (strlen(p->category) > 100 || strlen(p->brand) > 100)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "product.category and product.brand: at most 100 characters each");
    if (!s_status_text(p->status))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "product.status: unknown value %d",
                         (int)p->status);
    if ((code = s_check_attributes(call, "product", p->attributes, p->n_attributes)) != STATUS_OK)
        return code;
    if (p->n_skus < min_skus || p->n_skus > 100)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "product.skus: %zu to 100 SKUs", min_skus);
    for (size_t i = 0; i < p->n_skus; i++) {
        const sku_t *s = p->skus[i];
        char field[48];
        if (!catalog_valid_sku(s->code))
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "product.skus[%zu].code: 1 to 64 of A-Z a-z 0-9 . _ -", i);
        for (size_t k = 0; k < i; k++)
            if (strcmp(p->skus[k]->code, s->code) == 0)
                return call_fail(call, STATUS_INVALID_ARGUMENT,
                                 "product.skus[%zu].code: %s appears twice", i, s->code);
        if (!s->list_price || !s->cost_price)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "product.skus[%zu]: list_price and cost_price are required", i);
        snprintf(field, sizeof field, "product.skus[%zu].list_price", i);
        if (money_check(field, s->list_price->minor_units, s->list_price->currency, err,
                        sizeof err) != 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "%s", err);
        snprintf(field, sizeof field, "product.skus[%zu].cost_price", i);
        if (money_check(field, s->cost_price->minor_units, s->cost_price->currency, err,
                        sizeof err) != 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "%s", err);
        if (strcmp(s->list_price->currency, s->cost_price->currency) != 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "product.skus[%zu]: cost_price must be in the list price's currency", i);
        if (s->low_stock_threshold < 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "product.skus[%zu].low_stock_threshold: must not be negative", i);
        if (s->on_hand != 0 || s->reserved != 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT,
                             "product.skus[%zu]: stock is set with AdjustStock, not here", i);
        snprintf(field, sizeof field, "product.skus[%zu]", i);
        if ((code = s_check_attributes(call, field, s->attributes, s->n_attributes)) != STATUS_OK)
            return code;
    }
    return STATUS_OK;
}

/* Inserts (create) or upserts (update) the request's SKUs. */
static status_t s_write_skus(call_t *call, const product_t *p, int64_t id, bool upsert)
{
    for (size_t i = 0; i < p->n_skus; i++) {
        const sku_t *s = p->skus[i];
        char *attrs = s_attributes_json(s->attributes, s->n_attributes);
        int rc;
        if (!attrs)
            return call_fail(call, STATUS_INTERNAL, "out of memory");
        if (upsert)
            rc = store_sku_upsert(call_db(call), s->code, id, s->list_price->minor_units,
                                  s->cost_price->minor_units, s->list_price->currency, attrs,
                                  s->low_stock_threshold);
        else
            rc = store_sku_insert(call_db(call), s->code, id, s->list_price->minor_units,
                                  s->cost_price->minor_units, s->list_price->currency, attrs,
                                  s->low_stock_threshold);
        free(attrs);
        if (rc == 1 || (rc < 0 && strcmp(db_sqlstate(call_db(call)), "23505") == 0))
            return call_fail(call, STATUS_ALREADY_EXISTS, "SKU %s belongs to another product",
                             s->code);
        if (rc != 0)
            return call_db_fail(call, "write sku");
    }
    return STATUS_OK;
}

/* --- rows to messages ------------------------------------------------------ */

/* Products read in one call, with their SKUs attached afterwards. */
typedef struct {
    call_t *call;
    product_t **items;
    double *ranks;
    size_t n, cap;
    sku_t **skus;       /* every SKU read, grouped by product in read order */
    size_t n_skus, cap_skus;
} products_t;

static void *s_grow(call_t *call, void *old, size_t n, size_t *cap, size_t size)
{
    size_t want = *cap ? *cap * 2 : 16;
    void *p = call_alloc(call, want * size);

    if (n)
        memcpy(p, old, n * size);
    *cap = want;
    return p;
}

static attribute_t **s_attributes(call_t *call, const char *json, size_t *n)
{
    json_t *arr = json_loads(json, 0, NULL);
    attribute_t **out = NULL;

    *n = 0;
    if (json_is_array(arr) && json_array_size(arr) > 0) {
        out = call_alloc(call, json_array_size(arr) * sizeof *out);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            json_t *o = json_array_get(arr, i);
            attribute_t *a = call_alloc(call, sizeof *a);
            shop__catalog__v1__attribute__init(a);
            a->name = call_strdup(call, json_string_value(json_object_get(o, "name")) ?: "");
            a->value = call_strdup(call, json_string_value(json_object_get(o, "value")) ?: "");
            out[(*n)++] = a;
        }
    }
    json_decref(arr);
    return out;
}

static void s_on_product(void *arg, const store_product_t *row)
{
    products_t *ps = arg;
    call_t *call = ps->call;
    product_t *p = call_alloc(call, sizeof *p);

    if (ps->n == ps->cap) {
        size_t cap = ps->cap;
        ps->items = s_grow(call, ps->items, ps->n, &cap, sizeof *ps->items);
        ps->ranks = s_grow(call, ps->ranks, ps->n, &ps->cap, sizeof *ps->ranks);
    }
    shop__catalog__v1__product__init(p);
    p->id = row->id;
    p->title = call_strdup(call, row->title);
    p->description = call_strdup(call, row->description);
    p->category = call_strdup(call, row->category);
    p->brand = call_strdup(call, row->brand);
    p->attributes = s_attributes(call, row->attributes_json, &p->n_attributes);
    p->status = s_status_enum(row->status);
    p->created_at_ms = row->created_ms;
    p->updated_at_ms = row->updated_ms;
    p->rating_count = row->rating_count;
    p->rating_sum = row->rating_sum;
    ps->ranks[ps->n] = row->rank;
    ps->items[ps->n++] = p;
}

/* Collects SKU rows and the product each belongs to. */
typedef struct {
    products_t *ps;
    int64_t *owner;     /* product id of each SKU read */
} sku_rows_t;

static void s_on_sku(void *arg, const store_sku_t *row)
{
    sku_rows_t *o = arg;
    products_t *ps = o->ps;
    call_t *call = ps->call;
    sku_t *s = call_alloc(call, sizeof *s);

    if (ps->n_skus == ps->cap_skus) {
        size_t cap = ps->cap_skus;
        o->owner = s_grow(call, o->owner, ps->n_skus, &cap, sizeof *o->owner);
        ps->skus = s_grow(call, ps->skus, ps->n_skus, &ps->cap_skus, sizeof *ps->skus);
    }
    shop__catalog__v1__sku__init(s);
    s->code = call_strdup(call, row->code);
    s->list_price = call_money(call, row->list_price, row->currency);
    s->cost_price = call_money(call, row->cost_price, row->currency);
    s->attributes = s_attributes(call, row->attributes_json, &s->n_attributes);
    s->on_hand = row->on_hand;
    s->reserved = row->reserved;
    s->low_stock_threshold = row->threshold;
    o->owner[ps->n_skus] = row->product_id;
    ps->skus[ps->n_skus++] = s;
}

/* Reads the SKUs of every product read and gives each product its slice
 * (the store returns them grouped by product id). */
static int s_attach_skus(products_t *ps)
{
    sku_rows_t o = {ps, NULL};
    int64_t *ids;

    if (ps->n == 0)
        return 0;
    ids = call_alloc(ps->call, ps->n * sizeof *ids);
    for (size_t i = 0; i < ps->n; i++)
        ids[i] = ps->items[i]->id;
    if (store_skus_of(call_db(ps->call), ids, ps->n, s_on_sku, &o) != 0)
        return -1;
    for (size_t k = 0; k < ps->n_skus;) {
        size_t start = k;
        while (k < ps->n_skus && o.owner[k] == o.owner[start])
            k++;
        for (size_t i = 0; i < ps->n; i++)
            if (ps->items[i]->id == o.owner[start]) {
                ps->items[i]->skus = &ps->skus[start];
                ps->items[i]->n_skus = k - start;
            }
    }
    return 0;
}

/* The whole product by id (or by SKU when id is 0); NULL with *rc 1 if
 * there is none, -1 on a database failure. */
static product_t *s_load(call_t *call, int64_t id, const char *sku, int *rc)
{
    products_t ps = {.call = call};

    *rc = store_product_get(call_db(call), id, sku, s_on_product, &ps);
    if (*rc != 0)
        return NULL;
    if (s_attach_skus(&ps) != 0) {
        *rc = -1;
        return NULL;
    }
    return ps.items[0];
}

/* --- handlers ---------------------------------------------------------------- */

CATALOG_HANDLER(catalog_create_product)
{
    const Shop__Catalog__V1__CreateProductRequest *req = (const void *)request;
    Shop__Catalog__V1__CreateProductResponse *resp = (void *)response;
    const product_t *p = req->product;
    status_t code = s_validate_product(call, p, 1);
    const char *status;
    char *attrs;
    int64_t id = 0;
    int rc;

    if (code != STATUS_OK)
        return code;
    if (p->id != 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "product.id: assigned by the catalog");
    status = p->status ? s_status_text(p->status) : "draft";
    attrs = s_attributes_json(p->attributes, p->n_attributes);
    if (!attrs)
        return call_fail(call, STATUS_INTERNAL, "out of memory");
    rc = store_product_insert(call_db(call), p->title, p->description, p->category, p->brand,
                              attrs, status, &id);
    free(attrs);
    if (rc != 0)
        return call_db_fail(call, "insert product");
    if ((code = s_write_skus(call, p, id, false)) != STATUS_OK)
        return code;
    resp->product = s_load(call, id, "", &rc);
    if (!resp->product)
        return call_db_fail(call, "read product");
    Shop__Catalog__V1__ProductCreated ev = SHOP__CATALOG__V1__PRODUCT_CREATED__INIT;
    ev.product = resp->product;
    if (call_emit(call, &ev.base) != 0)
        return call_db_fail(call, "emit ProductCreated");
    return STATUS_OK;
}

CATALOG_HANDLER(catalog_update_product)
{
    const Shop__Catalog__V1__UpdateProductRequest *req = (const void *)request;
    Shop__Catalog__V1__UpdateProductResponse *resp = (void *)response;
    const product_t *p = req->product;
    status_t code = s_validate_product(call, p, 0);
    char *attrs;
    int rc;

    if (code != STATUS_OK)
        return code;
    if (p->id <= 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "product.id: required");
    attrs = s_attributes_json(p->attributes, p->n_attributes);
    if (!attrs)
        return call_fail(call, STATUS_INTERNAL, "out of memory");
    /* status unspecified keeps the current one */
    rc = store_product_update(call_db(call), p->id, p->title, p->description, p->category,
                              p->brand, attrs, s_status_text(p->status));
    free(attrs);
    if (rc < 0)
        return call_db_fail(call, "update product");
    if (rc == 1)
        return call_fail(call, STATUS_NOT_FOUND, "no product %" PRId64, p->id);
    if ((code = s_write_skus(call, p, p->id, true)) != STATUS_OK)
        return code;
    resp->product = s_load(call, p->id, "", &rc);
    if (!resp->product)
        return call_db_fail(call, "read product");
    Shop__Catalog__V1__ProductUpdated ev = SHOP__CATALOG__V1__PRODUCT_UPDATED__INIT;
    ev.product = resp->product;
    if (call_emit(call, &ev.base) != 0)
        return call_db_fail(call, "emit ProductUpdated");
    return STATUS_OK;
}

CATALOG_HANDLER(catalog_get_product)
{
    const Shop__Catalog__V1__GetProductRequest *req = (const void *)request;
    Shop__Catalog__V1__GetProductResponse *resp = (void *)response;
    int rc;

    if (req->id < 0 || (req->id == 0 && !req->sku[0]) || (req->id > 0 && req->sku[0]))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "give either id or sku");
    if (req->sku[0] && !catalog_valid_sku(req->sku))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "sku: not a SKU code");
    resp->product = s_load(call, req->id, req->sku, &rc);
    if (rc < 0)
        return call_db_fail(call, "read product");
    if (rc == 1)
        return req->id ? call_fail(call, STATUS_NOT_FOUND, "no product %" PRId64, req->id)
                       : call_fail(call, STATUS_NOT_FOUND, "no SKU %s", req->sku);
    return STATUS_OK;
}

/* A page token is the decimal position to continue after (list: the last
 * product id; search: the offset). */
static int s_token(const char *token, int64_t max, int64_t *out)
{
    char *end;

    *out = 0;
    if (!token[0])
        return 0;
    if (token[0] < '0' || token[0] > '9')
        return -1;
    long long v = strtoll(token, &end, 10);
    if (*end || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static status_t s_page_size(call_t *call, uint32_t asked, int *out)
{
    if (asked > PAGE_MAX)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "page_size: at most %d", PAGE_MAX);
    *out = asked ? (int)asked : PAGE_DEFAULT;
    return STATUS_OK;
}

CATALOG_HANDLER(catalog_list_products)
{
    const Shop__Catalog__V1__ListProductsRequest *req = (const void *)request;
    Shop__Catalog__V1__ListProductsResponse *resp = (void *)response;
    products_t ps = {.call = call};
    store_filter_t f = {req->category, req->brand, s_status_text(req->status),
                        req->min_price_minor, req->max_price_minor};
    int64_t after;
    int size = PAGE_DEFAULT;
    status_t code;

    if ((code = s_page_size(call, req->page_size, &size)) != STATUS_OK)
        return code;
    if (s_token(req->page_token, INT64_MAX, &after) != 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "page_token: not one this list returned");
    if (!f.status)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "status: unknown value %d",
                         (int)req->status);
    if (f.min_price < 0 || f.max_price < 0 || (f.max_price && f.min_price > f.max_price))
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "min_price_minor and max_price_minor: 0 (any) or 0 <= min <= max");
    /* one row more than the page tells whether another page follows */
    if (store_product_list(call_db(call), &f, after, size + 1, s_on_product, &ps) != 0)
        return call_db_fail(call, "list products");
    if (ps.n > (size_t)size) {
        ps.n = (size_t)size;
        char tok[24];
        snprintf(tok, sizeof tok, "%" PRId64, ps.items[size - 1]->id);
        resp->next_page_token = call_strdup(call, tok);
    }
    if (s_attach_skus(&ps) != 0)
        return call_db_fail(call, "read skus");
    resp->products = ps.items;
    resp->n_products = ps.n;
    return STATUS_OK;
}

CATALOG_HANDLER(catalog_search_products)
{
    const Shop__Catalog__V1__SearchProductsRequest *req = (const void *)request;
    Shop__Catalog__V1__SearchProductsResponse *resp = (void *)response;
    products_t ps = {.call = call};
    size_t ql = strlen(req->query);
    int64_t offset;
    int size = PAGE_DEFAULT;
    status_t code;

    if (ql < 1 || ql > QUERY_MAX)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "query: 1 to %d characters", QUERY_MAX);
    if ((code = s_page_size(call, req->page_size, &size)) != STATUS_OK)
        return code;
    if (s_token(req->page_token, SEARCH_OFFSET_MAX, &offset) != 0)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "page_token: not one this search returned");
    if (store_product_search(call_db(call), req->query, (int)offset, size + 1, s_on_product, &ps) != 0)
        return call_db_fail(call, "search products");
    if (ps.n > (size_t)size) {
        ps.n = (size_t)size;
        if (offset + size <= SEARCH_OFFSET_MAX) {
            char tok[24];
            snprintf(tok, sizeof tok, "%" PRId64, offset + size);
            resp->next_page_token = call_strdup(call, tok);
        }
    }
    if (s_attach_skus(&ps) != 0)
        return call_db_fail(call, "read skus");
    resp->hits = call_alloc(call, (ps.n ? ps.n : 1) * sizeof *resp->hits);
    for (size_t i = 0; i < ps.n; i++) {
        Shop__Catalog__V1__SearchHit *h = call_alloc(call, sizeof *h);
        shop__catalog__v1__search_hit__init(h);
        h->product = ps.items[i];
        h->rank = ps.ranks[i];
        resp->hits[resp->n_hits++] = h;
    }
    return STATUS_OK;
}
