/* test_reserve_race: 50 buyers race for the last 10 units of a SKU through
 * the real catalog service — exactly 10 win, nothing is oversold — then
 * idempotent retries, confirm and release keep the stock adding up. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <zmq.h>

#include "check.h"
#include "client.h"
#include "harness.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "slog.h"

#define BUYERS 50
#define UNITS 10
#define M(name) "shop.catalog.v1.CatalogService/" name

static char s_rpc[64];
static void *s_zctx;
static atomic_int s_ok, s_short, s_other;
static pthread_barrier_t s_start;

static status_t s_reserve(client_t *c, const char *order, const char *sku, int qty,
                          Shop__Catalog__V1__ReserveStockResponse **out)
{
    Shop__Catalog__V1__ReserveStockRequest req = SHOP__CATALOG__V1__RESERVE_STOCK_REQUEST__INIT;
    Shop__Catalog__V1__ReservationLine line = SHOP__CATALOG__V1__RESERVATION_LINE__INIT;
    Shop__Catalog__V1__ReservationLine *lines[1] = {&line};
    ProtobufCMessage *resp = NULL;

    line.sku = (char *)sku;
    line.quantity = qty;
    req.order_id = (char *)order;
    req.lines = lines;
    req.n_lines = 1;
    status_t code = client_call(c, M("ReserveStock"), &req.base,
                                &shop__catalog__v1__reserve_stock_response__descriptor, &resp,
                                NULL, 5000, 1, NULL);
    if (out)
        *out = (Shop__Catalog__V1__ReserveStockResponse *)resp;
    else if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return code;
}

static void *s_buyer(void *arg)
{
    int id = (int)(intptr_t)arg;
    client_t *c = client_new(s_zctx, s_rpc);
    char order[32];

    snprintf(order, sizeof order, "race-%d", id);
    pthread_barrier_wait(&s_start);
    status_t code = c ? s_reserve(c, order, "RACE-1", 1, NULL) : STATUS_INTERNAL;
    if (code == STATUS_OK)
        atomic_fetch_add(&s_ok, 1);
    else if (code == STATUS_FAILED_PRECONDITION)
        atomic_fetch_add(&s_short, 1);
    else
        atomic_fetch_add(&s_other, 1);
    client_destroy(&c);
    return NULL;
}

static status_t s_simple(client_t *c, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *type, const char *key)
{
    ProtobufCMessage *resp = NULL;
    status_t code = client_call(c, method, req, type, &resp, key, 5000, 1, NULL);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    return code;
}

static long s_scalar(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    long v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
                 ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return v;
}

int main(void)
{
    const char *svcs[] = {"catalog", NULL};
    char *conninfo = harness_create_db("t_reserve_race", svcs);
    const char *extra[] = {"SHOP_WORKERS=8", NULL};
    harness_service_t svc;

    slog_init("test_reserve_race", SLOG_ERROR);
    CHECK(conninfo != NULL);
    if (!conninfo)
        return check_done();
    int ready = harness_start_service(&svc, "shop-catalog", conninfo, extra);
    CHECK_INT(ready, 0);
    snprintf(s_rpc, sizeof s_rpc, "%s", svc.rpc);
    s_zctx = zmq_ctx_new();
    client_t *c = client_new(s_zctx, s_rpc);
    PGconn *pg = PQconnectdb(conninfo);
    if (ready != 0 || !c || PQstatus(pg) != CONNECTION_OK)
        goto done;

    /* A product with one SKU and 10 units. */
    Shop__Common__V1__Money price = SHOP__COMMON__V1__MONEY__INIT, cost = SHOP__COMMON__V1__MONEY__INIT;
    price.minor_units = 1990;
    price.currency = "CNY";
    cost.minor_units = 900;
    cost.currency = "CNY";
    Shop__Catalog__V1__Sku sku = SHOP__CATALOG__V1__SKU__INIT;
    Shop__Catalog__V1__Sku *skus[1] = {&sku};
    sku.code = "RACE-1";
    sku.list_price = &price;
    sku.cost_price = &cost;
    Shop__Catalog__V1__Product prod = SHOP__CATALOG__V1__PRODUCT__INIT;
    prod.title = "Last units";
    prod.status = SHOP__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ACTIVE;
    prod.skus = skus;
    prod.n_skus = 1;
    Shop__Catalog__V1__CreateProductRequest cp = SHOP__CATALOG__V1__CREATE_PRODUCT_REQUEST__INIT;
    cp.product = &prod;
    CHECK_INT(s_simple(c, M("CreateProduct"), &cp.base,
                       &shop__catalog__v1__create_product_response__descriptor, NULL), STATUS_OK);
    CHECK_INT(s_simple(c, M("CreateProduct"), &cp.base,
                       &shop__catalog__v1__create_product_response__descriptor, NULL),
              STATUS_ALREADY_EXISTS);
    price.currency = "XYZ";
    sku.code = "RACE-2";
    CHECK_INT(s_simple(c, M("CreateProduct"), &cp.base,
                       &shop__catalog__v1__create_product_response__descriptor, NULL),
              STATUS_INVALID_ARGUMENT);
    CHECK_INT(s_scalar(pg, "SELECT count(*) FROM catalog.product"), 1);

    Shop__Catalog__V1__AdjustStockRequest adj = SHOP__CATALOG__V1__ADJUST_STOCK_REQUEST__INIT;
    adj.sku = "RACE-1";
    adj.delta = UNITS;
    adj.reason = "receipt";
    CHECK_INT(s_simple(c, M("AdjustStock"), &adj.base,
                       &shop__catalog__v1__adjust_stock_response__descriptor, "receipt-1"), STATUS_OK);
    /* the same key again: the first result, no second receipt */
    CHECK_INT(s_simple(c, M("AdjustStock"), &adj.base,
                       &shop__catalog__v1__adjust_stock_response__descriptor, "receipt-1"), STATUS_OK);
    CHECK_INT(s_scalar(pg, "SELECT on_hand FROM catalog.sku WHERE code = 'RACE-1'"), UNITS);
    adj.sku = "NOPE";
    CHECK_INT(s_simple(c, M("AdjustStock"), &adj.base,
                       &shop__catalog__v1__adjust_stock_response__descriptor, NULL), STATUS_NOT_FOUND);
    adj.sku = "RACE-1";
    adj.reason = "gift";
    CHECK_INT(s_simple(c, M("AdjustStock"), &adj.base,
                       &shop__catalog__v1__adjust_stock_response__descriptor, NULL),
              STATUS_INVALID_ARGUMENT);

    /* The race. */
    pthread_t th[BUYERS];
    pthread_barrier_init(&s_start, NULL, BUYERS);
    for (int i = 0; i < BUYERS; i++)
        pthread_create(&th[i], NULL, s_buyer, (void *)(intptr_t)i);
    for (int i = 0; i < BUYERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&s_start);
    CHECK_INT(atomic_load(&s_ok), UNITS);
    CHECK_INT(atomic_load(&s_short), BUYERS - UNITS);
    CHECK_INT(atomic_load(&s_other), 0);
    CHECK_INT(s_scalar(pg, "SELECT reserved FROM catalog.sku WHERE code = 'RACE-1'"), UNITS);
    CHECK_INT(s_scalar(pg, "SELECT count(*) FROM catalog.reservation WHERE state = 'held'"), UNITS);
    CHECK_INT(s_scalar(pg, "SELECT count(*) FROM catalog.outbox WHERE type = "
                           "'shop.catalog.v1.ReservationRejected'"), BUYERS - UNITS);

    /* Retrying a winner's order is idempotent; other lines under it are refused. */
    Shop__Catalog__V1__ReserveStockResponse *r = NULL;
    CHECK_INT(s_reserve(c, "race-0", "RACE-1", 1, &r) == STATUS_OK ||
              s_reserve(c, "race-0", "RACE-1", 1, NULL) == STATUS_FAILED_PRECONDITION, 1);
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    CHECK_INT(s_reserve(c, "new-order", "NOPE", 1, NULL), STATUS_NOT_FOUND);
    CHECK_INT(s_reserve(c, "new-order", "RACE-1", 0, NULL), STATUS_INVALID_ARGUMENT);

    /* Confirm one winner, release another: stock adds up. */
    PGresult *w = PQexec(pg, "SELECT order_id FROM catalog.reservation WHERE state = 'held' "
                             "ORDER BY order_id LIMIT 2");
    CHECK(PQntuples(w) == 2);
    if (PQntuples(w) == 2) {
        Shop__Catalog__V1__ConfirmReservationRequest cr = SHOP__CATALOG__V1__CONFIRM_RESERVATION_REQUEST__INIT;
        cr.order_id = PQgetvalue(w, 0, 0);
        CHECK_INT(s_simple(c, M("ConfirmReservation"), &cr.base,
                           &shop__catalog__v1__confirm_reservation_response__descriptor, NULL), STATUS_OK);
        CHECK_INT(s_simple(c, M("ConfirmReservation"), &cr.base,
                           &shop__catalog__v1__confirm_reservation_response__descriptor, NULL), STATUS_OK);
        Shop__Catalog__V1__ReleaseReservationRequest rr = SHOP__CATALOG__V1__RELEASE_RESERVATION_REQUEST__INIT;
        rr.order_id = PQgetvalue(w, 0, 0);
        CHECK_INT(s_simple(c, M("ReleaseReservation"), &rr.base,
                           &shop__catalog__v1__release_reservation_response__descriptor, NULL),
                  STATUS_FAILED_PRECONDITION);
        rr.order_id = PQgetvalue(w, 1, 0);
        CHECK_INT(s_simple(c, M("ReleaseReservation"), &rr.base,
                           &shop__catalog__v1__release_reservation_response__descriptor, NULL), STATUS_OK);
        rr.order_id = "never-reserved";
        CHECK_INT(s_simple(c, M("ReleaseReservation"), &rr.base,
                           &shop__catalog__v1__release_reservation_response__descriptor, NULL),
                  STATUS_NOT_FOUND);
    }
    PQclear(w);
    CHECK_INT(s_scalar(pg, "SELECT on_hand FROM catalog.sku WHERE code = 'RACE-1'"), UNITS - 1);
    CHECK_INT(s_scalar(pg, "SELECT reserved FROM catalog.sku WHERE code = 'RACE-1'"), UNITS - 2);
    /* the invariant: reserved is exactly the held lines, within on_hand */
    CHECK_INT(s_scalar(pg, "SELECT count(*) FROM catalog.sku s WHERE s.reserved <> "
                           "(SELECT coalesce(sum(l.quantity), 0) FROM catalog.reservation_line l "
                           "JOIN catalog.reservation r USING (order_id) "
                           "WHERE r.state = 'held' AND l.sku = s.code) "
                           "OR s.reserved < 0 OR s.reserved > s.on_hand"), 0);
done:
    PQfinish(pg);
    client_destroy(&c);
    if (svc.proc)
        CHECK_INT(harness_stop(&svc.proc, 10000), 0);
    zmq_ctx_term(s_zctx);
    free(conninfo);
    return check_done();
}
