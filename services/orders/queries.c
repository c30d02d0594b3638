/* queries: reading orders, reviews after delivery and the operator's daily
 * summary. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orders.h"

typedef struct {
    call_t *call;
    order_t *order;
    char state[16];   /* "pending" and "failed" have no OrderState */
} one_t;

static void s_on_one(void *arg, const store_order_t *o)
{
    one_t *one = arg;
    ProtobufCAllocator a = call_allocator(one->call);

    one->order = orders_from_row(o, &a);
    snprintf(one->state, sizeof one->state, "%s", o->state);
}

typedef struct {
    call_t *call;
    Shop__Orders__V1__Review **v;
    size_t n, cap;
} reviews_t;

static Shop__Orders__V1__Sentiment s_sentiment(const char *s)
{
    if (strcmp(s, "positive") == 0)
        return SHOP__ORDERS__V1__SENTIMENT__SENTIMENT_POSITIVE;
    if (strcmp(s, "neutral") == 0)
        return SHOP__ORDERS__V1__SENTIMENT__SENTIMENT_NEUTRAL;
    return SHOP__ORDERS__V1__SENTIMENT__SENTIMENT_NEGATIVE;
}

static Shop__Orders__V1__Review *s_review(call_t *call, const store_review_t *r)
{
    Shop__Orders__V1__Review *v = call_alloc(call, sizeof *v);

    shop__orders__v1__review__init(v);
    v->order_id = call_strdup(call, r->order_id);
    v->sku = call_strdup(call, r->sku);
    v->customer_id = call_strdup(call, r->customer_id);
    v->rating = r->rating;
    v->text = call_strdup(call, r->text);
    v->sentiment = s_sentiment(r->sentiment);
    v->created_at_ms = r->created_ms;
    return v;
}

static void s_on_review(void *arg, const store_review_t *r)
{
    reviews_t *rv = arg;

    if (rv->n == rv->cap) {
        size_t cap = rv->cap ? rv->cap * 2 : 8;
        Shop__Orders__V1__Review **v = call_alloc(rv->call, cap * sizeof *v);
        if (rv->n)
            memcpy(v, rv->v, rv->n * sizeof *v);
        rv->v = v;
        rv->cap = cap;
    }
    rv->v[rv->n++] = s_review(rv->call, r);
}

ORDERS_HANDLER(orders_get)
{
    const Shop__Orders__V1__GetOrderRequest *req = (const void *)request;
    Shop__Orders__V1__GetOrderResponse *resp = (void *)response;
    one_t one = {call, NULL, ""};
    reviews_t rv = {call, NULL, 0, 0};
    bool by_id = req->id[0] != '\0';
    db_t *db = call_db(call);

    if (by_id == (req->channel[0] || req->external_id[0]))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "give either id or channel and external_id");
    if (!by_id && (!req->channel[0] || !req->external_id[0]))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "channel and external_id go together");
    int rc = store_order_get(db, req->id, req->channel, req->external_id, false, s_on_one, &one);
    if (rc < 0)
        return call_db_fail(call, "read the order");
    /* A placement still pending or given up is not an order yet. */
    if (rc == 1 || strcmp(one.state, "pending") == 0 || strcmp(one.state, "failed") == 0)
        return by_id ? call_fail(call, STATUS_NOT_FOUND, "no order %s", req->id)
                     : call_fail(call, STATUS_NOT_FOUND, "no order %s from %s", req->external_id,
                                 req->channel);
    if (!one.order)
        return call_fail(call, STATUS_INTERNAL, "the order does not read back");
    if (store_reviews(db, one.order->id, s_on_review, &rv) != 0)
        return call_db_fail(call, "read reviews");
    resp->order = one.order;
    resp->reviews = rv.v;
    resp->n_reviews = rv.n;
    return STATUS_OK;
}

/* --- ListOrders ------------------------------------------------------------------ */

typedef struct {
    call_t *call;
    Shop__Orders__V1__ListOrdersResponse *resp;
    int64_t *created_us;   /* of each order listed, for the next page's cursor */
    bool bad;
} list_t;

static void s_on_listed(void *arg, const store_order_t *o, int64_t created_us)
{
    list_t *l = arg;
    ProtobufCAllocator a = call_allocator(l->call);
    order_t *order = orders_from_row(o, &a);

    if (!order) {
        l->bad = true;
        return;
    }
    l->created_us[l->resp->n_orders] = created_us;
    l->resp->orders[l->resp->n_orders++] = order;
}

ORDERS_HANDLER(orders_list)
{
    const Shop__Orders__V1__ListOrdersRequest *req = (const void *)request;
    Shop__Orders__V1__ListOrdersResponse *resp = (void *)response;
    uint32_t size = req->page_size ? req->page_size : 50;
    store_filter_t f = {req->customer_id, orders_state_name(req->state), req->since_ms,
                        req->until_ms, 0, ""};
    char after_id[41] = "";
    list_t l = {call, resp, NULL, false};

    if (size > 500)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "page_size: at most 500");
    if (strlen(req->customer_id) > 128)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "customer_id: at most 128 characters");
    if ((int)req->state < 0 || (req->state && !f.state[0]))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "state: not a state");
    if (req->since_ms < 0 || req->until_ms < 0 || (req->until_ms && req->since_ms >= req->until_ms))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "since_ms must be before until_ms");
    if (req->page_token[0]) {
        /* "<created µs>.<id>" of the last order of the page before. */
        char *end;
        long long us = strtoll(req->page_token, &end, 10);
        if (end == req->page_token || *end != '.' || strlen(end + 1) < 1 || strlen(end + 1) > 40 ||
            us <= 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "page_token: not one this call gave");
        snprintf(after_id, sizeof after_id, "%s", end + 1);
        f.after_us = us;
        f.after_id = after_id;
    }
    resp->orders = call_alloc(call, (size + 1) * sizeof *resp->orders);
    l.created_us = call_alloc(call, (size + 1) * sizeof *l.created_us);
    if (store_order_list(call_db(call), &f, (int)size + 1, s_on_listed, &l) != 0)
        return call_db_fail(call, "list orders");
    if (l.bad)
        return call_fail(call, STATUS_INTERNAL, "an order does not read back");
    if (resp->n_orders > size) {   /* one more than asked: there is a next page */
        char token[80];
        resp->n_orders = size;
        snprintf(token, sizeof token, "%" PRId64 ".%s", l.created_us[size - 1],
                 resp->orders[size - 1]->id);
        resp->next_page_token = call_strdup(call, token);
    }
    return STATUS_OK;
}

/* --- reviews ---------------------------------------------------------------------- */

static const char *s_classify(int32_t rating)
{
    return rating >= 4 ? "positive" : rating == 3 ? "neutral" : "negative";
}

ORDERS_HANDLER(orders_post_review)
{
    const Shop__Orders__V1__PostReviewRequest *req = (const void *)request;
    Shop__Orders__V1__PostReviewResponse *resp = (void *)response;
    one_t one = {call, NULL, ""};
    db_t *db = call_db(call);
    size_t n = strlen(req->order_id);

    if (n < 1 || n > 40)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "order_id: 1 to 40 characters");
    if (req->rating < 1 || req->rating > 5)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "rating: 1 to 5");
    if (strlen(req->text) > 4000)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "text: at most 4000 characters");
    if (!orders_valid_sku(req->sku))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "sku: 1 to 64 of A-Z a-z 0-9 . _ -");
    int rc = store_order_get(db, req->order_id, "", "", false, s_on_one, &one);
    if (rc < 0)
        return call_db_fail(call, "read the order");
    if (rc == 1 || !one.order || strcmp(one.state, "pending") == 0 || strcmp(one.state, "failed") == 0)
        return call_fail(call, STATUS_NOT_FOUND, "no order %s", req->order_id);
    if (strcmp(one.order->customer_id, req->customer_id) != 0)
        return call_fail(call, STATUS_PERMISSION_DENIED, "order %s is not this customer's",
                         req->order_id);
    if (strcmp(one.state, "delivered") != 0 && strcmp(one.state, "completed") != 0)
        return call_fail(call, STATUS_FAILED_PRECONDITION,
                         "order %s is %s; it can be reviewed once delivered", req->order_id, one.state);
    bool on_order = false;
    for (size_t i = 0; i < one.order->n_lines && !on_order; i++)
        on_order = strcmp(one.order->lines[i]->sku, req->sku) == 0;
    if (!on_order)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "sku: %s is not on order %s", req->sku,
                         req->order_id);

    store_review_t r = {req->order_id, req->sku, req->customer_id, req->text,
                        s_classify(req->rating), req->rating, 0};
    if (store_review_insert(db, &r, &r.created_ms) != 0) {
        if (strcmp(db_sqlstate(db), "23505") == 0)
            return call_fail(call, STATUS_ALREADY_EXISTS, "%s of order %s is already reviewed",
                             req->sku, req->order_id);
        return call_db_fail(call, "store the review");
    }
    resp->review = s_review(call, &r);
    Shop__Orders__V1__ReviewPosted ev = SHOP__ORDERS__V1__REVIEW_POSTED__INIT;
    ev.review = resp->review;
    if (server_emit(db, &ev.base, req->order_id) != 0)
        return call_db_fail(call, "emit ReviewPosted");
    return STATUS_OK;
}

/* --- the daily summary ------------------------------------------------------------- */

static Shop__Orders__V1__DayFigures *s_figures(call_t *call, const store_day_t *d)
{
    Shop__Orders__V1__DayFigures *f = call_alloc(call, sizeof *f);

    shop__orders__v1__day_figures__init(f);
    f->date = call_strdup(call, d->date);
    f->orders = d->orders;
    f->cancelled = d->cancelled;
    f->cancellation_rate = d->orders ? 100.0 * (double)d->cancelled / (double)d->orders : 0;
    f->paid_orders = d->paid_orders;
    f->paid_amount = call_money(call, d->paid_amount, d->currency);
    /* rounded half away from zero, in minor units */
    f->average_order_value = call_money(
        call, d->paid_orders ? (d->paid_amount + d->paid_orders / 2) / d->paid_orders : 0, d->currency);
    return f;
}

static double s_change(double now, double before)
{
    return before > 0 ? 100.0 * (now - before) / before : 0;
}

/* True for a well-formed "YYYY-MM-DD" (the database checks the calendar). */
static bool s_date_form(const char *s)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    return true;
}

ORDERS_HANDLER(orders_daily_summary)
{
    const Shop__Orders__V1__DailySummaryRequest *req = (const void *)request;
    Shop__Orders__V1__DailySummaryResponse *resp = (void *)response;
    const orders_settings_t *set = call_settings(call);
    store_day_t day = {0}, before = {0};
    char date[16];

    if (req->date[0] && !s_date_form(req->date))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "date: YYYY-MM-DD");
    if (req->currency[0] && strlen(req->currency) != 3)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "currency: a three-letter code");
    snprintf(date, sizeof date, "%s", req->date);   /* "" = yesterday, there */
    int rc = store_days(call_db(call), date, set->timezone, req->currency, &day, &before);
    if (rc < 0)
        return call_db_fail(call, "daily figures");
    if (rc == 1)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "date: %s is not a day", req->date);
    resp->day = s_figures(call, &day);
    resp->previous_day = s_figures(call, &before);
    resp->orders_change = s_change((double)day.orders, (double)before.orders);
    resp->paid_amount_change = s_change((double)day.paid_amount, (double)before.paid_amount);
    resp->average_order_value_change =
        s_change((double)resp->day->average_order_value->minor_units,
                 (double)resp->previous_day->average_order_value->minor_units);
    return STATUS_OK;
}
