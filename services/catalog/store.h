/* store: all of the catalog's SQL. Every function runs in the caller's
 * transaction on `db` and returns 0, 1 (for "not found" where stated) or -1
 * (a database failure: db_sqlstate/db_error say why). */
#ifndef CATALOG_STORE_H
#define CATALOG_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include "db.h"

/* Inserts a product; its id in *id. */
int store_product_insert(db_t *db, const char *title, const char *description,
                         const char *category, const char *brand, const char *attributes_json,
                         const char *status, int64_t *id) __attribute__((warn_unused_result));

int store_sku_insert(db_t *db, const char *code, int64_t product_id, int64_t list_price,
                     int64_t cost_price, const char *currency, const char *attributes_json,
                     int32_t low_stock_threshold) __attribute__((warn_unused_result));

typedef struct {
    int32_t on_hand, reserved, threshold;
} store_stock_t;

/* Stock of one SKU; 1 if there is no such SKU. */
int store_stock_get(db_t *db, const char *sku, store_stock_t *out) __attribute__((warn_unused_result));

/* Stock of those of the n `skus` that exist (one statement). */
typedef void (*store_stock_fn)(void *arg, const char *sku, const store_stock_t *st);
int store_stock_many(db_t *db, const char *const *skus, size_t n, store_stock_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* The first result of an adjustment made with `key`: 1 if none. */
int store_adjustment_by_key(db_t *db, const char *key, char *sku, size_t skulen, int32_t *delta,
                            int64_t *id) __attribute__((warn_unused_result));

/* Applies `delta` to on_hand if on_hand + delta >= reserved (row locked),
 * records the audit row; 1 if the SKU does not exist, 2 if the stock
 * would fall below what is reserved (then *out has the current stock). */
int store_adjust(db_t *db, const char *sku, int32_t delta, const char *reason, const char *note,
                 const char *key, const char *request_id, store_stock_t *out, int64_t *id)
    __attribute__((warn_unused_result));

/* One line of a reservation attempt, filled by store_reserve. */
typedef struct {
    const char *sku;
    int32_t quantity;
    int32_t available;      /* before the reservation; -1 if the SKU is unknown */
    bool active;            /* the product is for sale */
    int32_t threshold;
} store_line_t;

/* Existing reservation of `order_id`: 1 if none; else its state (text) and
 * lines ("sku:qty,…" sorted by sku) into the buffers, its end and making
 * (Unix ms; `created_ms` may be NULL). */
int store_reservation_get(db_t *db, const char *order_id, char *state, size_t statelen,
                          char *lines, size_t lineslen, int64_t *expires_ms, int64_t *created_ms)
    __attribute__((warn_unused_result));

/* Reserves every line (sorted by sku, no duplicates) or none, in one
 * statement that locks the SKU rows in code order. *ok tells which; each
 * line's fields are filled either way. *expires_ms on success. 1 (and no
 * change) if the order has a reservation already; -1 on failure (23505: a
 * concurrent call for the same order made it meanwhile). */
int store_reserve(db_t *db, const char *order_id, store_line_t *lines, size_t n, int ttl_s,
                  bool *ok, int64_t *expires_ms) __attribute__((warn_unused_result));

/* Moves a held reservation to `state` ("confirmed" or "released"/"expired"),
 * adjusting stock, or with "restocked" a confirmed one to released, its
 * units back on hand (an order cancelled after payment); 1 if it is not in
 * the state that allows it, 2 if it does not exist. Lines of the
 * reservation are returned through the callback. */
typedef void (*store_line_fn)(void *arg, const char *sku, int32_t quantity);
int store_reservation_finish(db_t *db, const char *order_id, const char *state, store_line_fn fn,
                             void *arg) __attribute__((warn_unused_result));

/* Records an order that reserved nothing as released, so a reservation for
 * it made later (by a call its caller gave up on) is refused on the key
 * instead of holding stock; 1 if the order has a reservation after all. */
int store_reservation_tombstone(db_t *db, const char *order_id) __attribute__((warn_unused_result));

/* Deletes up to 500 of those records a day old (no late call can come). */
int store_tombstone_purge(db_t *db) __attribute__((warn_unused_result));

/* Adds a 1-5 rating to the product of `sku`; 1 if there is no such SKU. */
int store_rating_add(db_t *db, const char *sku, int32_t rating) __attribute__((warn_unused_result));

/* Held reservations past their expiry, up to `limit`, locked (SKIP LOCKED). */
typedef void (*store_id_fn)(void *arg, const char *order_id);
int store_expired(db_t *db, int limit, store_id_fn fn, void *arg) __attribute__((warn_unused_result));

/* Held reservations expiring before `before_us` and made before
 * `created_before_us` (Unix µs; 0 = any), after (`after_us`, `after_id`) in
 * (expires_at, order_id) order, up to `limit`: each with its creation (ms)
 * and expiry (µs, the paging key). */
typedef void (*store_held_fn)(void *arg, const char *order_id, int64_t created_ms,
                              int64_t expires_us);
int store_held(db_t *db, int64_t before_us, int64_t created_before_us, int64_t after_us,
               const char *after_id, int limit, store_held_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* --- products ------------------------------------------------------------ */

/* A product row; strings are valid only during the callback. */
typedef struct {
    int64_t id;
    const char *title, *description, *category, *brand, *attributes_json, *status;
    int64_t created_ms, updated_ms, rating_count, rating_sum;
    double rank;            /* search only */
} store_product_t;
typedef void (*store_product_fn)(void *arg, const store_product_t *p);

/* A SKU row; strings are valid only during the callback. */
typedef struct {
    int64_t product_id;
    const char *code, *currency, *attributes_json;
    int64_t list_price, cost_price;
    int32_t on_hand, reserved, threshold;
} store_sku_t;
typedef void (*store_sku_fn)(void *arg, const store_sku_t *s);

/* Product by id, or by one of its SKU codes when id is 0; 1 if none. */
int store_product_get(db_t *db, int64_t id, const char *sku, store_product_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Filters of a list; "" and 0 mean "any". */
typedef struct {
    const char *category, *brand, *status;
    int64_t min_price, max_price;
} store_filter_t;

/* Products matching `f` with id > after_id, by id, up to `limit`. */
int store_product_list(db_t *db, const store_filter_t *f, int64_t after_id, int limit,
                       store_product_fn fn, void *arg) __attribute__((warn_unused_result));

/* Products matching a web-search style query, best rank first (ties by
 * id), skipping `offset`, up to `limit`. */
int store_product_search(db_t *db, const char *query, int offset, int limit, store_product_fn fn,
                         void *arg) __attribute__((warn_unused_result));

/* The SKUs of the given products, by product then code. */
int store_skus_of(db_t *db, const int64_t *ids, size_t n, store_sku_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* Replaces a product's own fields (status "" keeps the current one); 1 if
 * there is no such product. */
int store_product_update(db_t *db, int64_t id, const char *title, const char *description,
                         const char *category, const char *brand, const char *attributes_json,
                         const char *status) __attribute__((warn_unused_result));

/* Inserts the SKU or updates its prices, currency, attributes and
 * threshold (never stock); 1 if the code belongs to another product. */
int store_sku_upsert(db_t *db, const char *code, int64_t product_id, int64_t list_price,
                     int64_t cost_price, const char *currency, const char *attributes_json,
                     int32_t low_stock_threshold) __attribute__((warn_unused_result));

/* SKUs whose available stock is at or below their (positive) threshold,
 * lowest first, up to `limit`. */
int store_low_stock(db_t *db, int limit, store_sku_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* --- reports --------------------------------------------------------------- */

/* Units of one SKU in held or confirmed reservations created in a window;
 * revenue counts lines in the SKU's current currency. */
typedef struct {
    const char *sku, *title, *currency;
    int64_t product_id, units, revenue;
    double cumulative_share;    /* percent of all units, this row included */
} store_sales_t;
typedef void (*store_sales_fn)(void *arg, const store_sales_t *s);

/* Best sellers in [since_ms, until_ms) (0 = open), most units first. */
int store_best_sellers(db_t *db, int64_t since_ms, int64_t until_ms, int limit, store_sales_fn fn,
                       void *arg) __attribute__((warn_unused_result));

/* The fewest best sellers whose units make `percent` of all units in the
 * window; *total and *n_skus describe all SKUs with sales in it. */
int store_pareto(db_t *db, int64_t since_ms, int64_t until_ms, int percent, store_sales_fn fn,
                 void *arg, int64_t *total, int32_t *n_skus) __attribute__((warn_unused_result));

#endif
