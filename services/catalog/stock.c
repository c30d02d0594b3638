/* stock: adjustments, reservations and their expiry, and the low-stock
 * list. Each handler runs inside the call's transaction. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "shop/catalog/v1/catalog.pb-c.h"
#include "store.h"

#define MAX_QUANTITY 1000000

typedef Shop__Catalog__V1__ReservationLine line_t;

static Shop__Catalog__V1__StockLevel *s_level(call_t *call, const char *sku,
                                              const store_stock_t *st)
{
    Shop__Catalog__V1__StockLevel *l = call_alloc(call, sizeof *l);

    shop__catalog__v1__stock_level__init(l);
    l->sku = call_strdup(call, sku);
    l->on_hand = st->on_hand;
    l->reserved = st->reserved;
    l->available = st->on_hand - st->reserved;
    l->low_stock_threshold = st->threshold;
    return l;
}

/* Emits LowStock when available stock fell to the threshold from above. */
static int s_low_stock(call_t *call, const char *sku, int32_t before, int32_t after,
                       int32_t threshold)
{
    if (threshold <= 0 || after > threshold || before <= threshold)
        return 0;
    Shop__Catalog__V1__LowStock ev = SHOP__CATALOG__V1__LOW_STOCK__INIT;
    ev.sku = (char *)sku;
    ev.available = after;
    ev.low_stock_threshold = threshold;
    return call_emit(call, &ev.base);
}

status_t catalog_adjust_stock(call_t *call, const ProtobufCMessage *request,
                               ProtobufCMessage *response)
{
    static const char *const reasons[] = {"receipt", "correction", "damage", "return", "count"};
    const Shop__Catalog__V1__AdjustStockRequest *req = (const void *)request;
    Shop__Catalog__V1__AdjustStockResponse *resp = (void *)response;
    db_t *db = call_db(call);
    const char *key = call_idempotency_key(call);
    store_stock_t st;
    int64_t id = 0;
    bool known = false;

    if (!catalog_valid_sku(req->sku))
        return call_fail(call, STATUS_INVALID_ARGUMENT, "sku: 1 to 64 of A-Z a-z 0-9 . _ -");
    if (req->delta == 0 || req->delta > MAX_QUANTITY || req->delta < -MAX_QUANTITY)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "delta: a non-zero change of at most %d units", MAX_QUANTITY);
    for (size_t i = 0; i < 5; i++)
        known = known || strcmp(req->reason, reasons[i]) == 0;
    if (!known)
        return call_fail(call, STATUS_INVALID_ARGUMENT,
                         "reason: one of receipt, correction, damage, return, count");
    if (key[0]) {
        char sku[80];
        int32_t delta;
        int rc = store_adjustment_by_key(db, key, sku, sizeof sku, &delta, &id);
        if (rc < 0)
            return call_db_fail(call, "find adjustment");
        if (rc == 0) {
            if (strcmp(sku, req->sku) != 0 || delta != req->delta)
                return call_fail(call, STATUS_ALREADY_EXISTS,
                                 "idempotency key already used for another adjustment");
            if (store_stock_get(db, req->sku, &st) != 0)
                return call_db_fail(call, "read stock");
            resp->stock = s_level(call, req->sku, &st);
            resp->adjustment_id = id;
            return STATUS_OK;   /* the retry returns the first result */
        }
    }
    int rc = store_adjust(db, req->sku, req->delta, req->reason, req->note, key,
                          call_request_id(call), &st, &id);
    if (rc < 0)
        return call_db_fail(call, "adjust stock");
    if (rc == 1)
        return call_fail(call, STATUS_NOT_FOUND, "no SKU %s", req->sku);
    if (rc == 2)
        return call_fail(call, STATUS_FAILED_PRECONDITION,
                         "%s has %" PRId32 " on hand with %" PRId32 " reserved: cannot change by %" PRId32,
                         req->sku, st.on_hand, st.reserved, req->delta);
    resp->stock = s_level(call, req->sku, &st);
    resp->adjustment_id = id;
    Shop__Catalog__V1__StockChanged ev = SHOP__CATALOG__V1__STOCK_CHANGED__INIT;
    ev.sku = req->sku;
    ev.delta = req->delta;
    ev.reason = req->reason;
    ev.on_hand = st.on_hand;
    ev.reserved = st.reserved;
    ev.adjustment_id = id;
    int32_t after = st.on_hand - st.reserved;
    if (call_emit(call, &ev.base) != 0 ||
        s_low_stock(call, req->sku, after - req->delta, after, st.threshold) != 0)
        return call_db_fail(call, "emit StockChanged");
    return STATUS_OK;
}

typedef struct {
    call_t *call;
    const char *const *skus;
    Shop__Catalog__V1__StockLevel **found;   /* by the request's order */
    size_t n;
} stock_many_t;

static void s_on_stock(void *arg, const char *sku, const store_stock_t *st)
{
    stock_many_t *m = arg;

    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->skus[i], sku) == 0)
            m->found[i] = s_level(m->call, sku, st);
}

status_t catalog_get_stock(call_t *call, const ProtobufCMessage *request, ProtobufCMessage *response)
{
    const Shop__Catalog__V1__GetStockRequest *req = (const void *)request;
    Shop__Catalog__V1__GetStockResponse *resp = (void *)response;
    const catalog_settings_t *set = call_settings(call);

    if (req->n_skus < 1 || req->n_skus > (size_t)set->max_lines)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "skus: 1 to %" PRId64 " codes",
                         set->max_lines);
    for (size_t i = 0; i < req->n_skus; i++)
        if (!catalog_valid_sku(req->skus[i]))
            return call_fail(call, STATUS_INVALID_ARGUMENT, "skus[%zu]: not a SKU code", i);
    stock_many_t m = {call, (const char *const *)req->skus,
                      call_alloc(call, req->n_skus * sizeof *m.found), req->n_skus};
    if (store_stock_many(call_db(call), m.skus, m.n, s_on_stock, &m) != 0)
        return call_db_fail(call, "read stock");
    for (size_t i = 0; i < m.n; i++)
        if (!m.found[i])
            return call_fail(call, STATUS_NOT_FOUND, "no SKU %s", req->skus[i]);
    resp->stock = m.found;
    resp->n_stock = m.n;
    return STATUS_OK;
}

static int s_line_cmp(const void *a, const void *b)
{
    return strcmp(((const store_line_t *)a)->sku, ((const store_line_t *)b)->sku);
}

/* "sku:qty,…" of sorted lines, as store_reservation_get reports them. */
static void s_lines_text(const store_line_t *lines, size_t n, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s:%" PRId32, i ? "," : "",
                                 lines[i].sku, lines[i].quantity);
}

static Shop__Catalog__V1__Reservation *s_reservation(call_t *call, const char *order_id,
                                                     Shop__Catalog__V1__ReservationState state,
                                                     const store_line_t *lines, size_t n,
                                                     int64_t expires_ms, int64_t created_ms)
{
    Shop__Catalog__V1__Reservation *r = call_alloc(call, sizeof *r);

    shop__catalog__v1__reservation__init(r);
    r->order_id = call_strdup(call, order_id);
    r->state = state;
    r->expires_at_ms = expires_ms;
    r->created_at_ms = created_ms;
    r->lines = call_alloc(call, (n ? n : 1) * sizeof *r->lines);
    for (size_t i = 0; i < n; i++) {
        line_t *l = call_alloc(call, sizeof *l);
        shop__catalog__v1__reservation_line__init(l);
        l->sku = call_strdup(call, lines[i].sku);
        l->quantity = lines[i].quantity;
        r->lines[r->n_lines++] = l;
    }
    return r;
}

static Shop__Catalog__V1__ReservationState s_state_of(const char *state)
{
    return strcmp(state, "held") == 0        ? SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_HELD
           : strcmp(state, "confirmed") == 0 ? SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_CONFIRMED
           : strcmp(state, "released") == 0  ? SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_RELEASED
           : strcmp(state, "expired") == 0   ? SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_EXPIRED
                                             : SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_UNSPECIFIED;
}

static status_t s_existing(call_t *call, const char *order_id, const char *state,
                           const char *stored, const char *wanted, const store_line_t *lines,
                           size_t n, int64_t expires_ms, int64_t created_ms,
                           Shop__Catalog__V1__ReserveStockResponse *resp)
{
    Shop__Catalog__V1__ReservationState st = s_state_of(state);

    if (st != SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_HELD &&
        st != SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_CONFIRMED) {
        /* its state (not its lines), for a caller that tells an ended
         * reservation from other refusals */
        resp->reservation = s_reservation(call, order_id, st, NULL, 0, expires_ms, created_ms);
        return call_fail(call, STATUS_FAILED_PRECONDITION, "the reservation of order %s was %s",
                         order_id, state);
    }
    if (strcmp(stored, wanted) != 0) {
        /* the other reservation's state and end, for a caller that decides
         * whether to wait for it (not its lines: they are not this call's) */
        resp->reservation = s_reservation(call, order_id, st, NULL, 0, expires_ms, created_ms);
        return call_fail(call, STATUS_ALREADY_EXISTS,
                         "order %s already has a reservation with other lines", order_id);
    }
    resp->reservation = s_reservation(call, order_id, st, lines, n, expires_ms, created_ms);
    return STATUS_OK;
}

/* The reservation already made for this order, if any, as the answer
 * (*found false and STATUS_OK if there is none). */
static status_t s_made_before(call_t *call, const char *order_id, const store_line_t *lines,
                              size_t n, Shop__Catalog__V1__ReserveStockResponse *resp, bool *found)
{
    size_t cap = n * 80 + 1;
    char *wanted = call_alloc(call, cap), *stored = call_alloc(call, cap + 64), state[16];
    int64_t expires_ms = 0, created_ms = 0;

    s_lines_text(lines, n, wanted, cap);
    int rc = store_reservation_get(call_db(call), order_id, state, sizeof state, stored, cap + 64,
                                   &expires_ms, &created_ms);
    if (rc < 0)
        return call_db_fail(call, "read reservation");
    *found = rc == 0;
    return *found ? s_existing(call, order_id, state, stored, wanted, lines, n, expires_ms,
                               created_ms, resp)
                  : STATUS_OK;
}

status_t catalog_reserve_stock(call_t *call, const ProtobufCMessage *request,
                                ProtobufCMessage *response)
{
    const Shop__Catalog__V1__ReserveStockRequest *req = (const void *)request;
    Shop__Catalog__V1__ReserveStockResponse *resp = (void *)response;
    const catalog_settings_t *set = call_settings(call);
    db_t *db = call_db(call);
    size_t n = req->n_lines;
    size_t ol = strlen(req->order_id);
    int64_t expires_ms = 0;
    bool ok = false;

    if (ol < 1 || ol > 128)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "order_id: 1 to 128 characters");
    if (n < 1 || n > (size_t)set->max_lines)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "lines: 1 to %" PRId64 " lines",
                         set->max_lines);
    if (req->ttl_seconds > 604800)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "ttl_seconds: at most 604800");
    store_line_t *lines = call_alloc(call, n * sizeof *lines);
    for (size_t i = 0; i < n; i++) {
        if (!catalog_valid_sku(req->lines[i]->sku))
            return call_fail(call, STATUS_INVALID_ARGUMENT, "lines[%zu].sku: not a SKU code", i);
        if (req->lines[i]->quantity < 1 || req->lines[i]->quantity > MAX_QUANTITY)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "lines[%zu].quantity: 1 to %d", i,
                             MAX_QUANTITY);
        lines[i].sku = req->lines[i]->sku;
        lines[i].quantity = req->lines[i]->quantity;
    }
    qsort(lines, n, sizeof *lines, s_line_cmp);
    for (size_t i = 1; i < n; i++)
        if (strcmp(lines[i].sku, lines[i - 1].sku) == 0)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "lines: SKU %s appears twice",
                             lines[i].sku);

    int ttl = req->ttl_seconds ? (int)req->ttl_seconds : (int)set->reservation_ttl_s;
    int rc = store_reserve(db, req->order_id, lines, n, ttl, &ok, &expires_ms);
    if (rc < 0) {
        if (strcmp(db_sqlstate(db), "23505") == 0)   /* a concurrent call for the same order */
            return call_fail(call, STATUS_ABORTED, "order %s is being reserved meanwhile; retry",
                             req->order_id);
        return call_db_fail(call, "reserve");
    }
    bool found = false;
    if (rc == 1) {   /* idempotent by order id: that reservation is the answer */
        status_t code = s_made_before(call, req->order_id, lines, n, resp, &found);
        if (code == STATUS_OK && !found)
            return call_fail(call, STATUS_INTERNAL, "reservation %s does not read back",
                             req->order_id);
        return code;
    }
    for (size_t i = 0; i < n; i++)
        if (lines[i].available < 0)
            return call_fail(call, STATUS_NOT_FOUND, "no SKU %s", lines[i].sku);
    if (!ok) {
        /* A concurrent call for the same order (a retry) may have reserved
         * while this one waited on the rows' locks: the stock it counted
         * short is then that reservation's, which is the answer. Read in a
         * statement of its own, which sees what committed meanwhile. */
        status_t code = s_made_before(call, req->order_id, lines, n, resp, &found);
        if (code != STATUS_OK || found)
            return code;
        resp->shortages = call_alloc(call, n * sizeof *resp->shortages);
        for (size_t i = 0; i < n; i++) {
            if (lines[i].active && lines[i].available >= lines[i].quantity)
                continue;
            Shop__Catalog__V1__Shortage *s = call_alloc(call, sizeof *s);
            shop__catalog__v1__shortage__init(s);
            s->sku = call_strdup(call, lines[i].sku);
            s->requested = lines[i].quantity;
            s->available = lines[i].active ? lines[i].available : 0;
            s->reason = lines[i].active ? "not enough stock" : "product is not for sale";
            resp->shortages[resp->n_shortages++] = s;
        }
        Shop__Catalog__V1__ReservationRejected ev = SHOP__CATALOG__V1__RESERVATION_REJECTED__INIT;
        ev.order_id = req->order_id;
        ev.shortages = resp->shortages;
        ev.n_shortages = resp->n_shortages;
        if (call_emit(call, &ev.base) != 0)
            return call_db_fail(call, "emit ReservationRejected");
        call_keep_writes(call);   /* the rejection event, no stock change */
        return call_fail(call, STATUS_FAILED_PRECONDITION,
                         "not enough stock for order %s: %s short of %" PRId32, req->order_id,
                         resp->shortages[0]->sku, resp->shortages[0]->requested);
    }
    resp->reservation = s_reservation(call, req->order_id,
                                      SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_HELD,
                                      lines, n, expires_ms,
                                      expires_ms - (int64_t)ttl * 1000);   /* expires = made + ttl */
    Shop__Catalog__V1__StockReserved ev = SHOP__CATALOG__V1__STOCK_RESERVED__INIT;
    ev.order_id = req->order_id;
    ev.lines = resp->reservation->lines;
    ev.n_lines = resp->reservation->n_lines;
    ev.expires_at_ms = expires_ms;
    if (call_emit(call, &ev.base) != 0)
        return call_db_fail(call, "emit StockReserved");
    for (size_t i = 0; i < n; i++)
        if (s_low_stock(call, lines[i].sku, lines[i].available,
                        lines[i].available - lines[i].quantity, lines[i].threshold) != 0)
            return call_db_fail(call, "emit LowStock");
    return STATUS_OK;
}

/* Collects a finished reservation's lines into the call's arena. */
typedef struct {
    call_t *call;
    Shop__Catalog__V1__Reservation *r;
    size_t cap;
} collect_t;

static void s_collect(void *arg, const char *sku, int32_t quantity)
{
    collect_t *c = arg;

    if (c->r->n_lines == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        line_t **lines = call_alloc(c->call, cap * sizeof *lines);
        if (c->r->n_lines)
            memcpy(lines, c->r->lines, c->r->n_lines * sizeof *lines);
        c->r->lines = lines;
        c->cap = cap;
    }
    line_t *l = call_alloc(c->call, sizeof *l);
    shop__catalog__v1__reservation_line__init(l);
    l->sku = call_strdup(c->call, sku);
    l->quantity = quantity;
    c->r->lines[c->r->n_lines++] = l;
}

/* Confirm or release: `state` "confirmed" or "released". */
static status_t s_finish(call_t *call, const char *order_id, const char *state, const char *reason,
                         Shop__Catalog__V1__Reservation **out)
{
    db_t *db = call_db(call);
    bool confirm = strcmp(state, "confirmed") == 0;
    collect_t c = {call, call_alloc(call, sizeof *c.r), 0};
    char cur[16], lines[8];
    int64_t expires = 0;

    if (strlen(order_id) < 1 || strlen(order_id) > 128)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "order_id: 1 to 128 characters");
    shop__catalog__v1__reservation__init(c.r);
    c.r->order_id = call_strdup(call, order_id);
    int rc = store_reservation_finish(db, order_id, state, s_collect, &c);
    if (rc < 0)
        return call_db_fail(call, confirm ? "confirm" : "release");
    if (rc == 2)
        return call_fail(call, STATUS_NOT_FOUND, "no reservation for order %s", order_id);
    if (rc == 1) {
        if (store_reservation_get(db, order_id, cur, sizeof cur, lines, sizeof lines, &expires,
                                  NULL) != 0)
            return call_db_fail(call, "read reservation");
        if (strcmp(cur, state) == 0 || (!confirm && strcmp(cur, "expired") == 0)) {
            c.r->state = s_state_of(cur);
            *out = c.r;
            return STATUS_OK;   /* already done: idempotent */
        }
        return call_fail(call, STATUS_FAILED_PRECONDITION, "the reservation of order %s is %s",
                         order_id, cur);
    }
    c.r->state = confirm ? SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_CONFIRMED
                         : SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_RELEASED;
    *out = c.r;
    if (confirm) {
        Shop__Catalog__V1__ReservationConfirmed ev = SHOP__CATALOG__V1__RESERVATION_CONFIRMED__INIT;
        ev.order_id = c.r->order_id;
        ev.lines = c.r->lines;
        ev.n_lines = c.r->n_lines;
        if (call_emit(call, &ev.base) != 0)
            return call_db_fail(call, "emit ReservationConfirmed");
    } else {
        Shop__Catalog__V1__ReservationReleased ev = SHOP__CATALOG__V1__RESERVATION_RELEASED__INIT;
        ev.order_id = c.r->order_id;
        ev.lines = c.r->lines;
        ev.n_lines = c.r->n_lines;
        ev.reason = (char *)(reason && *reason ? reason : "released");
        if (call_emit(call, &ev.base) != 0)
            return call_db_fail(call, "emit ReservationReleased");
    }
    return STATUS_OK;
}

status_t catalog_confirm_reservation(call_t *call, const ProtobufCMessage *request, ProtobufCMessage *response)
{
    const Shop__Catalog__V1__ConfirmReservationRequest *req = (const void *)request;
    Shop__Catalog__V1__ConfirmReservationResponse *resp = (void *)response;

    return s_finish(call, req->order_id, "confirmed", NULL, &resp->reservation);
}

status_t catalog_release_reservation(call_t *call, const ProtobufCMessage *request, ProtobufCMessage *response)
{
    const Shop__Catalog__V1__ReleaseReservationRequest *req = (const void *)request;
    Shop__Catalog__V1__ReleaseReservationResponse *resp = (void *)response;

    return s_finish(call, req->order_id, "released", req->reason, &resp->reservation);
}

typedef struct {
    call_t *call;
    Shop__Catalog__V1__ListLowStockResponse *resp;
} low_t;

static void s_low_row(void *arg, const store_sku_t *s)
{
    low_t *l = arg;
    store_stock_t st = {s->on_hand, s->reserved, s->threshold};

    l->resp->stock[l->resp->n_stock++] = s_level(l->call, s->code, &st);
}

status_t catalog_list_low_stock(call_t *call, const ProtobufCMessage *request,
                                ProtobufCMessage *response)
{
    const Shop__Catalog__V1__ListLowStockRequest *req = (const void *)request;
    Shop__Catalog__V1__ListLowStockResponse *resp = (void *)response;
    uint32_t limit = req->limit ? req->limit : 50;
    low_t l = {call, resp};

    if (limit > 1000)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "limit: at most 1000");
    resp->stock = call_alloc(call, limit * sizeof *resp->stock);
    if (store_low_stock(call_db(call), (int)limit, s_low_row, &l) != 0)
        return call_db_fail(call, "list low stock");
    return STATUS_OK;
}

typedef struct {
    call_t *call;
    Shop__Catalog__V1__ListHeldReservationsResponse *resp;
    int64_t *expires_us;   /* each one's paging key */
} held_t;

static void s_held_row(void *arg, const char *order_id, int64_t created_ms, int64_t expires_us)
{
    held_t *h = arg;
    Shop__Catalog__V1__Reservation *r = s_reservation(
        h->call, order_id, SHOP__CATALOG__V1__RESERVATION_STATE__RESERVATION_STATE_HELD, NULL, 0,
        (expires_us + 500) / 1000, created_ms);   /* to the nearest ms, as elsewhere */

    h->expires_us[h->resp->n_reservations] = expires_us;
    h->resp->reservations[h->resp->n_reservations++] = r;
}

status_t catalog_list_held_reservations(call_t *call, const ProtobufCMessage *request,
                                        ProtobufCMessage *response)
{
    const Shop__Catalog__V1__ListHeldReservationsRequest *req = (const void *)request;
    Shop__Catalog__V1__ListHeldReservationsResponse *resp = (void *)response;
    uint32_t size = req->page_size ? req->page_size : 100;
    int64_t after_us = 0;
    const char *after_id = "";

    if (size > 1000)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "page_size: at most 1000");
    /* times within PostgreSQL's range (up to the year 294276) */
    const int64_t max_ms = 9000000000000000;
    if (req->expiring_before_ms < 0 || req->expiring_before_ms > max_ms)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "expiring_before_ms: 0 or a Unix time in ms");
    if (req->created_before_ms < 0 || req->created_before_ms > max_ms)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "created_before_ms: 0 or a Unix time in ms");
    if (req->page_token[0]) {
        /* "<expires µs>.<order id>" of the last reservation of the page before */
        char *end;
        long long us = strtoll(req->page_token, &end, 10);
        size_t idlen = *end == '.' ? strlen(end + 1) : 0;
        if (req->page_token[0] < '0' || req->page_token[0] > '9' || us > max_ms * 1000 ||
            idlen < 1 || idlen > 128)
            return call_fail(call, STATUS_INVALID_ARGUMENT, "page_token: not one this list returned");
        after_us = us;
        after_id = end + 1;
    }
    held_t h = {call, resp, call_alloc(call, size * sizeof *h.expires_us)};
    resp->reservations = call_alloc(call, size * sizeof *resp->reservations);
    if (store_held(call_db(call), req->expiring_before_ms * 1000, req->created_before_ms * 1000,
                   after_us, after_id, (int)size, s_held_row, &h) != 0)
        return call_db_fail(call, "list held reservations");
    if (resp->n_reservations > 0) {   /* where the next page starts, now or later */
        char token[200];
        size_t last = resp->n_reservations - 1;
        snprintf(token, sizeof token, "%" PRId64 ".%s", h.expires_us[last],
                 resp->reservations[last]->order_id);
        resp->next_page_token = call_strdup(call, token);
    }
    return STATUS_OK;
}

/* --- expiry (maintenance) --------------------------------------------------- */

typedef struct {
    char ids[500][129];
    int n;
} expired_t;

static void s_expired_id(void *arg, const char *order_id)
{
    expired_t *e = arg;
    snprintf(e->ids[e->n++], sizeof e->ids[0], "%s", order_id);
}

typedef struct {
    line_t *lines[1000];
    line_t store[1000];
    size_t n;
} expired_lines_t;

static void s_expired_line(void *arg, const char *sku, int32_t quantity)
{
    expired_lines_t *l = arg;
    if (l->n >= 1000)
        return;
    shop__catalog__v1__reservation_line__init(&l->store[l->n]);
    l->store[l->n].sku = strdup(sku);
    l->store[l->n].quantity = quantity;
    l->lines[l->n] = &l->store[l->n];
    l->n++;
}

int catalog_maintain(db_t *db, void *settings)
{
    static expired_t e;   /* one maintenance thread per process */
    static expired_lines_t l;
    int rc = 0;

    (void)settings;
    e.n = 0;
    if (store_tombstone_purge(db) != 0 || store_expired(db, 500, s_expired_id, &e) != 0)
        return -1;
    for (int i = 0; i < e.n && rc == 0; i++) {
        l.n = 0;
        if (store_reservation_finish(db, e.ids[i], "expired", s_expired_line, &l) < 0) {
            rc = -1;
        } else if (l.n > 0) {
            Shop__Catalog__V1__ReservationReleased ev = SHOP__CATALOG__V1__RESERVATION_RELEASED__INIT;
            ev.order_id = e.ids[i];
            ev.lines = l.lines;
            ev.n_lines = l.n;
            ev.reason = "expired";
            if (server_emit(db, &ev.base, e.ids[i]) != 0 ||
                server_anomaly_on_commit(db, "reservation_expired", "order %s: its hold ended "
                                         "before the order was paid or cancelled; the stock is "
                                         "given back", e.ids[i]) != 0)
                rc = -1;
        }
        for (size_t k = 0; k < l.n; k++)
            free(l.store[k].sku);
    }
    return rc;
}

