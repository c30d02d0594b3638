/* store: all of the orders service's SQL. Every function runs in the
 * caller's transaction on `db` and returns 0, 1 (for "not found" where
 * stated) or -1 (a database failure: db_sqlstate/db_error say why). */
#ifndef ORDERS_STORE_H
#define ORDERS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "db.h"

/* An order row; everything is valid only during the callback. `body` is
 * the packed Order as placed (NULL while pending). */
typedef struct {
    const char *id, *customer_id, *state, *channel, *external_id;
    const char *payment_ref, *carrier, *tracking, *reason, *currency;
    const uint8_t *body;
    size_t body_len;
    int64_t total, created_ms, updated_ms, paid_ms;
} store_order_t;
typedef void (*store_order_fn)(void *arg, const store_order_t *o);

/* What a placement is written with: its id, and the key a retry finds it
 * by, (customer_id, idem_key) or (channel, external_id), NULL = none. */
typedef struct {
    const char *id, *customer_id, *channel, *idem_key, *external_id;
    const uint8_t *request;   /* the request as sent (its SHA-256 is kept) */
    size_t request_len;
} store_placement_t;

/* The live order (placed or later) holding (customer_id, idem_key) or
 * (channel, external_id) (NULL = not that key): 1, the order to `fn` and
 * *same whether it came from this request; 0 if none. Either way `digest`
 * receives the SHA-256 the placement's order id is made of: the same for
 * the same key, request (with an idempotency key) and number of failed
 * attempts with them. */
int store_lookup(db_t *db, const char *customer_id, const char *idem_key, const char *channel,
                 const char *external_id, const uint8_t *request, size_t request_len,
                 uint8_t digest[32], bool *same, store_order_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Writes the placement as `state` ("placed" or "paid"): 0 and the row as
 * stored to `fn`; 1 if its id or its key is taken. */
int store_insert_placed(db_t *db, const store_placement_t *pl, const char *state,
                        const uint8_t *body, size_t body_len, const char *currency, int64_t total,
                        const char *payment_ref, store_order_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Writes the placement as 'failed', its key kept as freed_key: 0; 1 if its
 * id is taken (placed or failed by a concurrent attempt). */
int store_insert_failed(db_t *db, const store_placement_t *pl, const char *reason)
    __attribute__((warn_unused_result));

/* A pending placement (left by an earlier version) that will not finish: 'failed', its keys freed so a
 * retry can place the order anew (0); 1 if it was failed already (or is
 * not there), 2 if it is past pending: placed by a concurrent attempt. */
int store_abandon(db_t *db, const char *id, const char *reason) __attribute__((warn_unused_result));

/* The order with this id, or with (channel, external_id) when id is "";
 * `lock` takes its row lock. 1 if none. */
int store_order_get(db_t *db, const char *id, const char *channel, const char *external_id,
                    bool lock, store_order_fn fn, void *arg) __attribute__((warn_unused_result));

/* Moves an order (locked by store_order_get) to `state`; "" leaves a text
 * field as it is. The row as stored goes to `fn`. */
int store_set_state(db_t *db, const char *id, const char *state, const char *payment_ref,
                    const char *carrier, const char *tracking, const char *reason,
                    store_order_fn fn, void *arg) __attribute__((warn_unused_result));

/* Ids of orders in `state` ("pending" or "placed") whose last change is older than `age_s`, up to
 * `limit`, oldest first (rows locked by others are skipped). */
typedef void (*store_id_fn)(void *arg, const char *id);
int store_stale(db_t *db, const char *state, int64_t age_s, int limit, store_id_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Those of the n `ids` that no order row has (placed, failed or any). */
int store_unknown_ids(db_t *db, const char *const *ids, size_t n, store_id_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Filters of a list; "" and 0 mean "any". */
typedef struct {
    const char *customer_id, *state;
    int64_t since_ms, until_ms;
    /* Keyset cursor: orders before (after_us, after_id) in (created, id)
     * order; after_id "" = from the newest. */
    int64_t after_us;
    const char *after_id;
} store_filter_t;

/* Orders matching `f`, newest first, up to `limit`; `fn` also gets each
 * one's creation time in microseconds for the next cursor. */
typedef void (*store_list_fn)(void *arg, const store_order_t *o, int64_t created_us);
int store_order_list(db_t *db, const store_filter_t *f, int limit, store_list_fn fn, void *arg)
    __attribute__((warn_unused_result));

typedef struct {
    const char *order_id, *sku, *customer_id, *text, *sentiment;
    int32_t rating;
    int64_t created_ms;
} store_review_t;
typedef void (*store_review_fn)(void *arg, const store_review_t *r);

/* Inserts a review (ALREADY_EXISTS on a second one for the same line);
 * its creation time into *created_ms. */
int store_review_insert(db_t *db, const store_review_t *r, int64_t *created_ms)
    __attribute__((warn_unused_result));
int store_reviews(db_t *db, const char *order_id, store_review_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* One day's figures (a day in `timezone`, one currency). */
typedef struct {
    char date[16], currency[4];
    int64_t orders, cancelled, paid_orders, paid_amount;
} store_day_t;

/* `date` ("" = yesterday there) and the day before, in `timezone`, in
 * `currency` ("" = the one
 * most of that day's orders are in). 1 if `date` or `timezone` is not
 * valid. */
int store_days(db_t *db, const char *date, const char *timezone, const char *currency,
               store_day_t *day, store_day_t *before) __attribute__((warn_unused_result));

#endif
