/* lifecycle: the order's state machine. Every transition is one row of
 * s_transitions: the states it may start from, the state it leads to and
 * the event it emits, written in the same transaction as the change. A
 * transition to the state the order is already in is a no-op that returns
 * the order (a repeated callback); from any other state it is
 * FAILED_PRECONDITION and changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "money.h"
#include "orders.h"

typedef struct {
    const char *verb;        /* for messages: "pay" */
    const char *to;
    const char *from[4];     /* NULL-terminated */
    const ProtobufCMessageDescriptor *event;
} transition_t;

static const transition_t s_paid = {
    "pay", "paid", {"placed"}, &shop__orders__v1__order_paid__descriptor};
static const transition_t s_fulfilling = {
    "start fulfilling", "fulfilling", {"paid"}, &shop__orders__v1__order_fulfilling__descriptor};
static const transition_t s_shipped = {
    "ship", "shipped", {"paid", "fulfilling"}, &shop__orders__v1__order_shipped__descriptor};
static const transition_t s_delivered = {
    "deliver", "delivered", {"shipped"}, &shop__orders__v1__order_delivered__descriptor};
static const transition_t s_completed = {
    "complete", "completed", {"delivered"}, &shop__orders__v1__order_completed__descriptor};
static const transition_t s_cancelled = {
    "cancel", "cancelled", {"placed", "paid", "fulfilling"},
    &shop__orders__v1__order_cancelled__descriptor};
static const transition_t s_refunded = {
    "refund", "refunded", {"shipped", "delivered", "completed"},
    &shop__orders__v1__order_refunded__descriptor};

/* What a transition may carry besides the new state ("" = nothing). */
typedef struct {
    const char *payment_ref, *carrier, *tracking, *reason;
    const Shop__Common__V1__Money *amount;   /* MarkPaid: must equal the total */
} extra_t;

typedef struct {
    ProtobufCAllocator *a;
    order_t *order;
    char state[16], payment_ref[208], currency[4];
    int64_t total;
} row_t;

static void s_on_row(void *arg, const store_order_t *o)
{
    row_t *r = arg;

    if (r->order)
        protobuf_c_message_free_unpacked(&r->order->base, r->a);
    r->order = orders_from_row(o, r->a);
    snprintf(r->state, sizeof r->state, "%s", o->state);
    snprintf(r->payment_ref, sizeof r->payment_ref, "%s", o->payment_ref);
    snprintf(r->currency, sizeof r->currency, "%s", o->currency);
    r->total = o->total;
}

/* The transition's event, carrying the order (and for a cancellation,
 * whether money is due back). */
static int s_emit(db_t *db, const transition_t *t, order_t *order, bool refund_due)
{
    const ProtobufCMessageDescriptor *d = t->event;
    ProtobufCMessage *ev = calloc(1, d->sizeof_message);
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, "order");
    int rc;

    if (!ev || !f) {
        free(ev);
        return -1;
    }
    d->message_init(ev);
    *(order_t **)((char *)ev + f->offset) = order;
    f = protobuf_c_message_descriptor_get_field_by_name(d, "refund_due");
    if (f)
        *(protobuf_c_boolean *)((char *)ev + f->offset) = refund_due;
    rc = server_emit(db, ev, order->id);   /* correlated by order */
    free(ev);
    return rc;
}

static bool s_from(const transition_t *t, const char *state)
{
    for (size_t i = 0; t->from[i]; i++)
        if (strcmp(t->from[i], state) == 0)
            return true;
    return false;
}

/* Runs transition `t` on order `id` in `db`'s transaction, for a call
 * (`call` set: its allocator and context) or for the maintenance tick.
 * *out is the order after it. On failure `why` says why. */
static status_t s_transition(call_t *call, db_t *db, const char *id, const transition_t *t,
                             const extra_t *x, order_t **out, char *why, size_t len)
{
    ProtobufCAllocator arena;
    row_t r = {NULL, NULL, "", "", "", 0};
    status_t code = STATUS_OK;

    if (call) {
        arena = call_allocator(call);
        r.a = &arena;
    }
    int rc = store_order_get(db, id, "", "", true, s_on_row, &r);
    if (rc < 0) {
        snprintf(why, len, "read the order");
        return STATUS_INTERNAL;
    }
    if (rc == 1 || strcmp(r.state, "failed") == 0) {   /* a placement given up is no order */
        snprintf(why, len, "no order %s", id);
        code = STATUS_NOT_FOUND;
        goto done_fail;
    }
    if (!r.order) {
        snprintf(why, len, "order %s does not read back", id);
        return STATUS_INTERNAL;
    }
    if (strcmp(r.state, t->to) == 0) {
        if (t == &s_paid && x->payment_ref[0] && strcmp(x->payment_ref, r.payment_ref) != 0) {
            snprintf(why, len, "order %s is already paid (payment %s)", id, r.payment_ref);
            code = STATUS_FAILED_PRECONDITION;
        }
        goto done;   /* already there: nothing to do */
    }
    if (!s_from(t, r.state)) {
        char from[64] = "";
        for (size_t i = 0; t->from[i]; i++)
            snprintf(from + strlen(from), sizeof from - strlen(from), "%s%s", i ? " or " : "",
                     t->from[i]);
        snprintf(why, len, "order %s is %s; only an order that is %s can %s", id,
                 strcmp(r.state, "pending") == 0 ? "still being placed" : r.state, from, t->verb);
        code = STATUS_FAILED_PRECONDITION;
        goto done;
    }
    if (x->amount && (x->amount->minor_units != r.total || strcmp(x->amount->currency, r.currency))) {
        char paid[48], total[48];
        money_format(x->amount->minor_units, x->amount->currency, paid, sizeof paid);
        money_format(r.total, r.currency, total, sizeof total);
        snprintf(why, len, "the payment of %s does not match the order's total of %s", paid, total);
        code = STATUS_FAILED_PRECONDITION;
        goto done;
    }
    bool refund_due = strcmp(r.state, "paid") == 0 || strcmp(r.state, "fulfilling") == 0;
    rc = store_set_state(db, id, t->to, x->payment_ref, x->carrier, x->tracking, x->reason, s_on_row,
                         &r);
    if (rc != 0 || s_emit(db, t, r.order, refund_due) != 0) {
        snprintf(why, len, "store the change");
        code = STATUS_INTERNAL;
    }
done:
    if (code == STATUS_OK && call) {
        *out = r.order;
        return code;
    }
done_fail:
    if (r.order && !call)
        protobuf_c_message_free_unpacked(&r.order->base, NULL);
    return code;
}

/* A transition as a call: its order in the reply, its failure as the
 * call's status. */
static status_t s_call(call_t *call, const char *id, const transition_t *t, const extra_t *x,
                       Shop__Orders__V1__Order **out)
{
    char why[300];
    size_t n = strlen(id);

    if (n < 1 || n > 40)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "order_id: 1 to 40 characters");
    status_t code = s_transition(call, call_db(call), id, t, x, out, why, sizeof why);
    if (code == STATUS_INTERNAL)
        return call_db_fail(call, why);
    if (code != STATUS_OK)
        return call_fail(call, code, "%s", why);
    return STATUS_OK;
}

static status_t s_text(call_t *call, const char *field, const char *v, size_t min, size_t max)
{
    size_t n = strlen(v);
    if (n < min || n > max)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "%s: %zu to %zu characters", field, min, max);
    return STATUS_OK;
}

ORDERS_HANDLER(orders_mark_paid)
{
    const Shop__Orders__V1__MarkPaidRequest *req = (const void *)request;
    Shop__Orders__V1__MarkPaidResponse *resp = (void *)response;
    extra_t x = {req->payment_reference, "", "", "", req->amount};
    status_t code;

    if (!req->amount)
        return call_fail(call, STATUS_INVALID_ARGUMENT, "amount: required");
    if ((code = s_text(call, "payment_reference", req->payment_reference, 1, 200)))
        return code;
    return s_call(call, req->order_id, &s_paid, &x, &resp->order);
}

ORDERS_HANDLER(orders_start_fulfilment)
{
    const Shop__Orders__V1__StartFulfilmentRequest *req = (const void *)request;
    Shop__Orders__V1__StartFulfilmentResponse *resp = (void *)response;
    extra_t x = {"", "", "", "", NULL};

    return s_call(call, req->order_id, &s_fulfilling, &x, &resp->order);
}

ORDERS_HANDLER(orders_mark_shipped)
{
    const Shop__Orders__V1__MarkShippedRequest *req = (const void *)request;
    Shop__Orders__V1__MarkShippedResponse *resp = (void *)response;
    extra_t x = {"", req->carrier, req->tracking_number, "", NULL};
    status_t code;

    if ((code = s_text(call, "carrier", req->carrier, 1, 64)) ||
        (code = s_text(call, "tracking_number", req->tracking_number, 1, 128)))
        return code;
    return s_call(call, req->order_id, &s_shipped, &x, &resp->order);
}

ORDERS_HANDLER(orders_mark_delivered)
{
    const Shop__Orders__V1__MarkDeliveredRequest *req = (const void *)request;
    Shop__Orders__V1__MarkDeliveredResponse *resp = (void *)response;
    extra_t x = {"", "", "", "", NULL};

    return s_call(call, req->order_id, &s_delivered, &x, &resp->order);
}

ORDERS_HANDLER(orders_complete)
{
    const Shop__Orders__V1__CompleteOrderRequest *req = (const void *)request;
    Shop__Orders__V1__CompleteOrderResponse *resp = (void *)response;
    extra_t x = {"", "", "", "", NULL};

    return s_call(call, req->order_id, &s_completed, &x, &resp->order);
}

ORDERS_HANDLER(orders_cancel)
{
    const Shop__Orders__V1__CancelOrderRequest *req = (const void *)request;
    Shop__Orders__V1__CancelOrderResponse *resp = (void *)response;
    extra_t x = {"", "", "", req->reason[0] ? req->reason : "cancelled on request", NULL};
    status_t code;

    if ((code = s_text(call, "reason", req->reason, 0, 200)))
        return code;
    return s_call(call, req->order_id, &s_cancelled, &x, &resp->order);
}

ORDERS_HANDLER(orders_refund)
{
    const Shop__Orders__V1__RefundOrderRequest *req = (const void *)request;
    Shop__Orders__V1__RefundOrderResponse *resp = (void *)response;
    extra_t x = {"", "", "", req->reason[0] ? req->reason : "refunded on request", NULL};
    status_t code;

    if ((code = s_text(call, "reason", req->reason, 0, 200)))
        return code;
    return s_call(call, req->order_id, &s_refunded, &x, &resp->order);
}

/* --- the maintenance tick ---------------------------------------------------- */

#define TICK_LIMIT 100

typedef struct {
    char ids[TICK_LIMIT][41];
    int n;
} ids_t;

static void s_on_id(void *arg, const char *id)
{
    ids_t *ids = arg;
    if (ids->n < TICK_LIMIT)
        snprintf(ids->ids[ids->n++], sizeof ids->ids[0], "%s", id);
}

int orders_maintain(db_t *db, void *settings)
{
    static ids_t ids;   /* one maintenance thread per process */
    const orders_settings_t *set = settings;
    char why[300], reason[96];

    /* Placements that stopped after reserving, with no order: given back.
     * First, while the transaction holds nothing. */
    if (orders_sweep_orphans(db, set) != 0)
        return -1;

    /* Placements a crash (or a stuck call) left pending: given back. */
    ids.n = 0;
    if (store_stale(db, "pending", set->pending_timeout_s, TICK_LIMIT, s_on_id, &ids) != 0)
        return -1;
    for (int i = 0; i < ids.n; i++) {
        snprintf(reason, sizeof reason, "the placement did not finish within %lld s",
                 (long long)set->pending_timeout_s);
        int rc = orders_abandon(db, ids.ids[i], reason);
        if (rc < 0)
            return -1;
        if (rc == 1)
            continue;   /* finished meanwhile */
        server_anomaly("placement_abandoned", "order %s: %s; its stock and coupons are given back",
                       ids.ids[i], reason);
    }

    /* Orders left unpaid: cancelled, which gives their stock and coupons back. */
    ids.n = 0;
    if (store_stale(db, "placed", set->unpaid_timeout_s, TICK_LIMIT, s_on_id, &ids) != 0)
        return -1;
    snprintf(reason, sizeof reason, "not paid within %lld s", (long long)set->unpaid_timeout_s);
    extra_t x = {"", "", "", reason, NULL};
    for (int i = 0; i < ids.n; i++) {
        status_t code = s_transition(NULL, db, ids.ids[i], &s_cancelled, &x, NULL, why, sizeof why);
        if (code == STATUS_INTERNAL)
            return -1;
    }
    return 0;
}
