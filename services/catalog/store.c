/* store: the catalog's SQL, parameterised and prepared once per connection. */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subscriber.h"

static const db_stmt_t s_product_insert = {
    "cat_product_insert",
    "INSERT INTO product (title, description, category, brand, attributes, status) "
    "VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING id",
    6};

static const db_stmt_t s_sku_insert = {
    "cat_sku_insert",
    "INSERT INTO sku (code, product_id, list_price, cost_price, currency, attributes, "
    "low_stock_threshold) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
    7};

static const db_stmt_t s_stock_get = {
    "cat_stock_get", "SELECT on_hand, reserved, low_stock_threshold FROM sku WHERE code = $1", 1};

static const db_stmt_t s_stock_many = {
    "cat_stock_many",
    "SELECT code, on_hand, reserved, low_stock_threshold FROM sku WHERE code = ANY ($1::text[])", 1};

static const db_stmt_t s_adjustment_by_key = {
    "cat_adjustment_by_key",
    "SELECT sku, delta, id FROM stock_adjustment WHERE idempotency_key = $1", 1};

/* Locks the row, applies the delta only if stock stays above what is
 * reserved, and audits it, in one round trip. */
static const db_stmt_t s_adjust = {
    "cat_adjust",
    "WITH cur AS (SELECT code, on_hand, reserved, low_stock_threshold FROM sku "
    "             WHERE code = $1 FOR UPDATE), "
    "upd AS (UPDATE sku s SET on_hand = s.on_hand + $2::int FROM cur "
    "        WHERE s.code = cur.code AND cur.on_hand + $2::int >= cur.reserved "
    "        RETURNING s.code, s.on_hand), "
    "audit AS (INSERT INTO stock_adjustment (sku, delta, reason, note, on_hand_after, "
    "          idempotency_key, request_id) "
    "          SELECT code, $2::int, $3, $4, on_hand, nullif($5, ''), $6 FROM upd RETURNING id) "
    "SELECT cur.on_hand, cur.reserved, cur.low_stock_threshold, upd.on_hand, "
    "       (SELECT id FROM audit) FROM cur LEFT JOIN upd ON true",
    6};

static const db_stmt_t s_reservation_get = {
    "cat_reservation_get",
    "SELECT r.state, (extract(epoch FROM r.expires_at) * 1000)::bigint, "
    "       coalesce(string_agg(l.sku || ':' || l.quantity, ',' ORDER BY l.sku), ''), "
    "       (extract(epoch FROM r.created_at) * 1000)::bigint "
    "FROM reservation r LEFT JOIN reservation_line l ON l.order_id = r.order_id "
    "WHERE r.order_id = $1 GROUP BY r.order_id",
    1};

/* All lines or none, in one statement: lock the SKU rows in code order,
 * check every line against the latest stock, then (only if all pass)
 * reserve, write the reservation and its lines. */
static const db_stmt_t s_reserve = {
    "cat_reserve",
    "WITH req AS (SELECT sku, qty FROM unnest($2::text[], $3::int[]) AS r(sku, qty)), "
    /* a retry of a reservation made before locks and writes nothing: the
     * caller reads that one instead */
    "dup AS (SELECT EXISTS (SELECT 1 FROM reservation WHERE order_id = $1) AS dup), "
    /* NO KEY UPDATE: what the UPDATE below takes anyway, no stronger.
     * Lookups by key only (scalar subselects, = ANY on the primary key):
     * a generic plan of a join here seq-scanned sku and product, about one
     * scan of each per reservation. */
    "cur AS (SELECT s.code, s.on_hand - s.reserved AS available, "
    "               (SELECT p.status FROM product p WHERE p.id = s.product_id) AS status, "
    "               s.list_price, s.currency, s.low_stock_threshold "
    "        FROM sku s WHERE s.code = ANY ($2::text[]) AND NOT (SELECT dup FROM dup) "
    "        ORDER BY s.code FOR NO KEY UPDATE), "
    "chk AS (SELECT r.sku, r.qty, c.available, c.status, c.list_price, c.currency, "
    "               c.low_stock_threshold FROM req r LEFT JOIN cur c ON c.code = r.sku), "
    "ok AS (SELECT bool_and(available IS NOT NULL AND status = 'active' AND available >= qty) "
    "              AND NOT (SELECT dup FROM dup) AS ok FROM chk), "
    "upd AS (UPDATE sku s SET reserved = s.reserved + "
    "               (SELECT r.qty FROM req r WHERE r.sku = s.code) "
    "        WHERE s.code = ANY ($2::text[]) AND (SELECT ok FROM ok) RETURNING s.code), "
    "res AS (INSERT INTO reservation (order_id, state, expires_at) "
    "        SELECT $1, 'held', now() + make_interval(secs => $4::int) FROM ok WHERE ok.ok "
    "        RETURNING expires_at), "
    "lines AS (INSERT INTO reservation_line (order_id, sku, quantity, unit_price, currency) "
    "          SELECT $1, c.sku, c.qty, c.list_price, c.currency FROM chk c, ok WHERE ok.ok) "
    "SELECT c.sku, coalesce(c.available, -1), coalesce(c.status = 'active', false), "
    "       coalesce(c.low_stock_threshold, 0), ok.ok, "
    "       (SELECT (extract(epoch FROM expires_at) * 1000)::bigint FROM res), "
    "       (SELECT count(*) FROM upd), (SELECT dup FROM dup) "
    "FROM chk c CROSS JOIN ok ORDER BY c.sku",
    4};

/* For the statements below that move a reservation's lines (l) back or off
 * the shelf: its SKU rows locked in code order first (k), as ReserveStock
 * locks them, then updated only after (the UPDATE's condition). By key
 * (= ANY): a generic plan of a join with l seq-scanned sku. */
#define LINES_LOCKED                                                                         \
    "k AS (SELECT code FROM sku WHERE code = ANY ((SELECT array_agg(sku) FROM l)::text[]) " \
    "      ORDER BY code FOR NO KEY UPDATE), "
#define AFTER_LINES_LOCKED                                                                   \
    "s.code = ANY ((SELECT array_agg(sku) FROM l)::text[]) AND (SELECT count(*) FROM k) >= 0"

/* held -> confirmed: the units leave the shelf (on_hand and reserved). */
static const db_stmt_t s_confirm = {
    "cat_confirm",
    "WITH r AS (UPDATE reservation SET state = 'confirmed', confirmed_at = now() "
    "           WHERE order_id = $1 AND state = 'held' RETURNING order_id), "
    "l AS (SELECT sku, quantity FROM reservation_line WHERE order_id = (SELECT order_id FROM r)), "
    LINES_LOCKED
    "u AS (UPDATE sku s SET on_hand = s.on_hand - l.quantity, reserved = s.reserved - l.quantity "
    "      FROM l WHERE s.code = l.sku AND " AFTER_LINES_LOCKED " RETURNING s.code) "
    "SELECT l.sku, l.quantity, (SELECT count(*) FROM u) FROM l ORDER BY l.sku",
    1};

/* held -> released/expired: the units go back to available. */
static const db_stmt_t s_release = {
    "cat_release",
    "WITH r AS (UPDATE reservation SET state = $2, released_at = now() "
    "           WHERE order_id = $1 AND state = 'held' RETURNING order_id), "
    "l AS (SELECT sku, quantity FROM reservation_line WHERE order_id = (SELECT order_id FROM r)), "
    LINES_LOCKED
    "u AS (UPDATE sku s SET reserved = s.reserved - l.quantity "
    "      FROM l WHERE s.code = l.sku AND " AFTER_LINES_LOCKED " RETURNING s.code) "
    "SELECT l.sku, l.quantity, (SELECT count(*) FROM u) FROM l ORDER BY l.sku",
    2};

/* confirmed -> released: the order was cancelled after payment but before
 * shipping, so its units go back on hand. */
static const db_stmt_t s_restock = {
    "cat_restock",
    "WITH r AS (UPDATE reservation SET state = 'released', released_at = now() "
    "           WHERE order_id = $1 AND state = 'confirmed' RETURNING order_id), "
    "l AS (SELECT sku, quantity FROM reservation_line WHERE order_id = (SELECT order_id FROM r)), "
    LINES_LOCKED
    "u AS (UPDATE sku s SET on_hand = s.on_hand + l.quantity "
    "      FROM l WHERE s.code = l.sku AND " AFTER_LINES_LOCKED " RETURNING s.code) "
    "SELECT l.sku, l.quantity, (SELECT count(*) FROM u) FROM l ORDER BY l.sku",
    1};

static const db_stmt_t s_reservation_exists = {
    "cat_reservation_exists", "SELECT state FROM reservation WHERE order_id = $1", 1};

static const db_stmt_t s_rating = {
    "cat_rating",
    "UPDATE product SET rating_count = rating_count + 1, rating_sum = rating_sum + $2 "
    "WHERE id = (SELECT product_id FROM sku WHERE code = $1) RETURNING id",
    2};

int store_rating_add(db_t *db, const char *sku, int32_t rating)
{
    char v[16];
    const char *p[2] = {sku, v};

    snprintf(v, sizeof v, "%d", (int)rating);
    PGresult *r = db_exec(db, &s_rating, p);
    if (!r)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    PQclear(r);
    return rc;
}

static const db_stmt_t s_expired = {
    "cat_expired",
    "SELECT order_id FROM reservation WHERE state = 'held' AND expires_at < now() "
    "AND " SUB_APPLIED_PAST("orders", "reservation.expires_at") " "
    "ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    1};

int store_product_insert(db_t *db, const char *title, const char *description,
                         const char *category, const char *brand, const char *attributes_json,
                         const char *status, int64_t *id)
{
    const char *p[6] = {title, description, category, brand, attributes_json, status};
    PGresult *r = db_exec(db, &s_product_insert, p);

    if (!r)
        return -1;
    *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

/* Runs the insert or the upsert of a SKU; rows returned in *rows. */
static int s_sku_write(db_t *db, const db_stmt_t *stmt, const char *code, int64_t product_id,
                       int64_t list_price, int64_t cost_price, const char *currency,
                       const char *attributes_json, int32_t low_stock_threshold, int *rows)
{
    char pid[24], lp[24], cp[24], th[16];
    const char *p[7] = {code, pid, lp, cp, currency, attributes_json, th};

    snprintf(pid, sizeof pid, "%" PRId64, product_id);
    snprintf(lp, sizeof lp, "%" PRId64, list_price);
    snprintf(cp, sizeof cp, "%" PRId64, cost_price);
    snprintf(th, sizeof th, "%" PRId32, low_stock_threshold);
    PGresult *r = db_exec(db, stmt, p);
    if (!r)
        return -1;
    *rows = PQntuples(r);
    PQclear(r);
    return 0;
}

int store_sku_insert(db_t *db, const char *code, int64_t product_id, int64_t list_price,
                     int64_t cost_price, const char *currency, const char *attributes_json,
                     int32_t low_stock_threshold)
{
    int rows;

    return s_sku_write(db, &s_sku_insert, code, product_id, list_price, cost_price, currency,
                       attributes_json, low_stock_threshold, &rows);
}

int store_stock_get(db_t *db, const char *sku, store_stock_t *out)
{
    const char *p[1] = {sku};
    PGresult *r = db_exec(db, &s_stock_get, p);
    int rc = 1;

    if (!r)
        return -1;
    if (PQntuples(r) == 1) {
        out->on_hand = atoi(PQgetvalue(r, 0, 0));
        out->reserved = atoi(PQgetvalue(r, 0, 1));
        out->threshold = atoi(PQgetvalue(r, 0, 2));
        rc = 0;
    }
    PQclear(r);
    return rc;
}

int store_stock_many(db_t *db, const char *const *skus, size_t n, store_stock_fn fn, void *arg)
{
    char *arr = db_text_array(skus, n);
    const char *p[1] = {arr};

    if (!arr)
        return -1;
    PGresult *r = db_exec(db, &s_stock_many, p);
    free(arr);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        store_stock_t st = {atoi(PQgetvalue(r, i, 1)), atoi(PQgetvalue(r, i, 2)),
                            atoi(PQgetvalue(r, i, 3))};
        fn(arg, PQgetvalue(r, i, 0), &st);
    }
    PQclear(r);
    return 0;
}

int store_adjustment_by_key(db_t *db, const char *key, char *sku, size_t skulen, int32_t *delta,
                            int64_t *id)
{
    const char *p[1] = {key};
    PGresult *r = db_exec(db, &s_adjustment_by_key, p);
    int rc = 1;

    if (!r)
        return -1;
    if (PQntuples(r) == 1) {
        snprintf(sku, skulen, "%s", PQgetvalue(r, 0, 0));
        *delta = atoi(PQgetvalue(r, 0, 1));
        *id = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        rc = 0;
    }
    PQclear(r);
    return rc;
}

int store_adjust(db_t *db, const char *sku, int32_t delta, const char *reason, const char *note,
                 const char *key, const char *request_id, store_stock_t *out, int64_t *id)
{
    char d[16];
    const char *p[6] = {sku, d, reason, note, key, request_id};
    int rc;

    snprintf(d, sizeof d, "%" PRId32, delta);
    PGresult *r = db_exec(db, &s_adjust, p);
    if (!r)
        return -1;
    if (PQntuples(r) == 0) {
        rc = 1;
    } else {
        out->on_hand = atoi(PQgetvalue(r, 0, 0));
        out->reserved = atoi(PQgetvalue(r, 0, 1));
        out->threshold = atoi(PQgetvalue(r, 0, 2));
        if (PQgetisnull(r, 0, 3)) {
            rc = 2;
        } else {
            out->on_hand = atoi(PQgetvalue(r, 0, 3));
            *id = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
            rc = 0;
        }
    }
    PQclear(r);
    return rc;
}

int store_reservation_get(db_t *db, const char *order_id, char *state, size_t statelen,
                          char *lines, size_t lineslen, int64_t *expires_ms, int64_t *created_ms)
{
    const char *p[1] = {order_id};
    PGresult *r = db_exec(db, &s_reservation_get, p);
    int rc = 1;

    if (!r)
        return -1;
    if (PQntuples(r) == 1) {
        snprintf(state, statelen, "%s", PQgetvalue(r, 0, 0));
        *expires_ms = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        snprintf(lines, lineslen, "%s", PQgetvalue(r, 0, 2));
        if (created_ms)
            *created_ms = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
        rc = 0;
    }
    PQclear(r);
    return rc;
}

/* Writes a PostgreSQL array literal of the lines' SKUs or quantities. SKU
 * codes are validated ([A-Za-z0-9._-]) so they need no quoting. */
static char *s_array(const store_line_t *lines, size_t n, bool skus)
{
    size_t cap = 3 + n * 80;
    char *buf = malloc(cap);
    size_t len = 0;

    if (!buf)
        return NULL;
    buf[len++] = '{';
    for (size_t i = 0; i < n; i++) {
        int w = skus ? snprintf(buf + len, cap - len, "%s%s", i ? "," : "", lines[i].sku)
                     : snprintf(buf + len, cap - len, "%s%" PRId32, i ? "," : "", lines[i].quantity);
        if (w < 0 || (size_t)w >= cap - len) {
            free(buf);
            return NULL;
        }
        len += (size_t)w;
    }
    snprintf(buf + len, cap - len, "}");
    return buf;
}

int store_reserve(db_t *db, const char *order_id, store_line_t *lines, size_t n, int ttl_s,
                  bool *ok, int64_t *expires_ms)
{
    char *skus = s_array(lines, n, true), *qtys = s_array(lines, n, false);
    char ttl[16];
    const char *p[4] = {order_id, skus, qtys, ttl};
    PGresult *r = NULL;
    int rc = -1;

    if (!skus || !qtys)
        goto done;
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    r = db_exec(db, &s_reserve, p);
    if (!r || PQntuples(r) != (int)n)
        goto done;
    if (PQgetvalue(r, 0, 7)[0] == 't') {
        rc = 1;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        lines[i].available = atoi(PQgetvalue(r, (int)i, 1));
        lines[i].active = PQgetvalue(r, (int)i, 2)[0] == 't';
        lines[i].threshold = atoi(PQgetvalue(r, (int)i, 3));
    }
    *ok = PQgetvalue(r, 0, 4)[0] == 't';
    *expires_ms = *ok ? strtoll(PQgetvalue(r, 0, 5), NULL, 10) : 0;
    rc = 0;
done:
    PQclear(r);
    free(skus);
    free(qtys);
    return rc;
}

int store_reservation_finish(db_t *db, const char *order_id, const char *state, store_line_fn fn,
                             void *arg)
{
    const char *p[2] = {order_id, state};
    bool confirm = strcmp(state, "confirmed") == 0;
    bool restock = strcmp(state, "restocked") == 0;
    PGresult *r = db_exec(db, confirm ? &s_confirm : restock ? &s_restock : &s_release, p);
    int rc = 1;

    if (!r)
        return -1;
    if (PQntuples(r) > 0) {
        for (int i = 0; i < PQntuples(r); i++)
            fn(arg, PQgetvalue(r, i, 0), atoi(PQgetvalue(r, i, 1)));
        rc = 0;
    } else {
        /* a held reservation always has lines; none means it was not held */
        PQclear(r);
        const char *q[1] = {order_id};
        r = db_exec(db, &s_reservation_exists, q);
        if (!r)
            return -1;
        rc = PQntuples(r) == 1 ? 1 : 2;
    }
    PQclear(r);
    return rc;
}

static const db_stmt_t s_tombstone = {
    "cat_tombstone",
    "INSERT INTO reservation (order_id, state, expires_at, released_at) "
    "VALUES ($1, 'released', now(), now()) ON CONFLICT (order_id) DO NOTHING RETURNING 1",
    1};

int store_reservation_tombstone(db_t *db, const char *order_id)
{
    const char *p[1] = {order_id};
    return db_exec_row(db, &s_tombstone, p);
}

static const db_stmt_t s_tombstone_purge = {
    "cat_tombstone_purge",
    "DELETE FROM reservation WHERE order_id IN "
    "  (SELECT order_id FROM reservation WHERE state = 'released' AND expires_at = released_at "
    "   AND released_at < now() - interval '1 day' LIMIT 500)",
    0};

int store_tombstone_purge(db_t *db) { return db_exec_ok(db, &s_tombstone_purge, NULL); }

int store_expired(db_t *db, int limit, store_id_fn fn, void *arg)
{
    char l[16];
    const char *p[1] = {l};

    snprintf(l, sizeof l, "%d", limit);
    return db_exec_each(db, &s_expired, p, fn, arg);
}

/* Times as whole µs from the epoch, both ways, so a page ends exactly where
 * the next begins. */
static const db_stmt_t s_held = {
    "cat_held",
    "SELECT order_id, (extract(epoch FROM created_at) * 1000)::bigint, "
    "       (extract(epoch FROM expires_at) * 1000000)::bigint "
    "FROM reservation WHERE state = 'held' "
    "AND ($1::bigint = 0 OR expires_at < 'epoch'::timestamptz + $1::bigint * interval '1 us') "
    "AND ($5::bigint = 0 OR created_at < 'epoch'::timestamptz + $5::bigint * interval '1 us') "
    "AND (expires_at, order_id) > ('epoch'::timestamptz + $2::bigint * interval '1 us', $3) "
    "ORDER BY expires_at, order_id LIMIT $4",
    5};

int store_held(db_t *db, int64_t before_us, int64_t created_before_us, int64_t after_us,
               const char *after_id, int limit, store_held_fn fn, void *arg)
{
    char b[24], a[24], l[16], c[24];
    const char *p[5] = {b, a, after_id, l, c};

    snprintf(c, sizeof c, "%" PRId64, created_before_us);
    snprintf(b, sizeof b, "%" PRId64, before_us);
    snprintf(a, sizeof a, "%" PRId64, after_us);
    snprintf(l, sizeof l, "%d", limit);
    PGresult *r = db_exec(db, &s_held, p);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        fn(arg, PQgetvalue(r, i, 0), strtoll(PQgetvalue(r, i, 1), NULL, 10),
           strtoll(PQgetvalue(r, i, 2), NULL, 10));
    PQclear(r);
    return 0;
}

/* --- products -------------------------------------------------------------- */

#define PRODUCT_COLS                                                                   \
    "p.id, p.title, p.description, p.category, p.brand, p.attributes::text, p.status, " \
    "(extract(epoch FROM p.created_at) * 1000)::bigint, "                              \
    "(extract(epoch FROM p.updated_at) * 1000)::bigint, p.rating_count, p.rating_sum"

#define SKU_COLS                                                                          \
    "s.product_id, s.code, s.currency, s.attributes::text, s.list_price, s.cost_price, " \
    "s.on_hand, s.reserved, s.low_stock_threshold"

static const db_stmt_t s_product_get = {
    "cat_product_get",
    "SELECT " PRODUCT_COLS ", 0 FROM product p "
    "WHERE p.id = CASE WHEN $1::bigint <> 0 THEN $1::bigint "
    "                  ELSE (SELECT product_id FROM sku WHERE code = $2) END",
    2};

static const db_stmt_t s_product_list = {
    "cat_product_list",
    "SELECT " PRODUCT_COLS ", 0 FROM product p "
    "WHERE p.id > $1::bigint AND ($2 = '' OR p.category = $2) AND ($3 = '' OR p.brand = $3) "
    "  AND ($4 = '' OR p.status = $4) "
    "  AND (($5::bigint = 0 AND $6::bigint = 0) OR EXISTS ("
    "       SELECT 1 FROM sku s WHERE s.product_id = p.id "
    "       AND ($5::bigint = 0 OR s.list_price >= $5::bigint) "
    "       AND ($6::bigint = 0 OR s.list_price <= $6::bigint))) "
    "ORDER BY p.id LIMIT $7",
    7};

static const db_stmt_t s_product_search = {
    "cat_product_search",
    "SELECT " PRODUCT_COLS ", ts_rank_cd(p.search, q.q) AS rank "
    "FROM product p, websearch_to_tsquery('simple', $1) AS q(q) "
    "WHERE p.search @@ q.q ORDER BY rank DESC, p.id OFFSET $2 LIMIT $3",
    3};

static const db_stmt_t s_skus_of = {
    "cat_skus_of",
    "SELECT " SKU_COLS " FROM sku s WHERE s.product_id = ANY ($1::bigint[]) "
    "ORDER BY s.product_id, s.code",
    1};

static const db_stmt_t s_product_update = {
    "cat_product_update",
    "UPDATE product SET title = $2, description = $3, category = $4, brand = $5, "
    "       attributes = $6::jsonb, status = coalesce(nullif($7, ''), status), "
    "       updated_at = now() "
    "WHERE id = $1 RETURNING id",
    7};

static const db_stmt_t s_sku_upsert = {
    "cat_sku_upsert",
    "INSERT INTO sku (code, product_id, list_price, cost_price, currency, attributes, "
    "                 low_stock_threshold) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) "
    "ON CONFLICT (code) DO UPDATE SET list_price = excluded.list_price, "
    "       cost_price = excluded.cost_price, currency = excluded.currency, "
    "       attributes = excluded.attributes, low_stock_threshold = excluded.low_stock_threshold "
    "WHERE sku.product_id = excluded.product_id RETURNING code",
    7};

static const db_stmt_t s_low_stock = {
    "cat_low_stock",
    "SELECT " SKU_COLS " FROM sku s "
    "WHERE s.low_stock_threshold > 0 AND s.on_hand - s.reserved <= s.low_stock_threshold "
    "ORDER BY s.on_hand - s.reserved, s.code LIMIT $1",
    1};

static void s_product_rows(PGresult *r, store_product_fn fn, void *arg)
{
    for (int i = 0; i < PQntuples(r); i++) {
        store_product_t p = {
            .id = strtoll(PQgetvalue(r, i, 0), NULL, 10),
            .title = PQgetvalue(r, i, 1),
            .description = PQgetvalue(r, i, 2),
            .category = PQgetvalue(r, i, 3),
            .brand = PQgetvalue(r, i, 4),
            .attributes_json = PQgetvalue(r, i, 5),
            .status = PQgetvalue(r, i, 6),
            .created_ms = strtoll(PQgetvalue(r, i, 7), NULL, 10),
            .updated_ms = strtoll(PQgetvalue(r, i, 8), NULL, 10),
            .rating_count = strtoll(PQgetvalue(r, i, 9), NULL, 10),
            .rating_sum = strtoll(PQgetvalue(r, i, 10), NULL, 10),
            .rank = strtod(PQgetvalue(r, i, 11), NULL),
        };
        fn(arg, &p);
    }
}

static void s_sku_rows(PGresult *r, store_sku_fn fn, void *arg)
{
    for (int i = 0; i < PQntuples(r); i++) {
        store_sku_t s = {
            .product_id = strtoll(PQgetvalue(r, i, 0), NULL, 10),
            .code = PQgetvalue(r, i, 1),
            .currency = PQgetvalue(r, i, 2),
            .attributes_json = PQgetvalue(r, i, 3),
            .list_price = strtoll(PQgetvalue(r, i, 4), NULL, 10),
            .cost_price = strtoll(PQgetvalue(r, i, 5), NULL, 10),
            .on_hand = atoi(PQgetvalue(r, i, 6)),
            .reserved = atoi(PQgetvalue(r, i, 7)),
            .threshold = atoi(PQgetvalue(r, i, 8)),
        };
        fn(arg, &s);
    }
}

/* Runs a statement whose rows are products; the number of rows in *rows. */
static int s_products(db_t *db, const db_stmt_t *stmt, const char *const *params,
                      store_product_fn fn, void *arg, int *rows)
{
    PGresult *r = db_exec(db, stmt, params);

    if (!r)
        return -1;
    *rows = PQntuples(r);
    s_product_rows(r, fn, arg);
    PQclear(r);
    return 0;
}

int store_product_get(db_t *db, int64_t id, const char *sku, store_product_fn fn, void *arg)
{
    char idt[24];
    const char *p[2] = {idt, sku};
    int rows = 0;

    snprintf(idt, sizeof idt, "%" PRId64, id);
    if (s_products(db, &s_product_get, p, fn, arg, &rows) != 0)
        return -1;
    return rows == 1 ? 0 : 1;
}

int store_product_list(db_t *db, const store_filter_t *f, int64_t after_id, int limit,
                       store_product_fn fn, void *arg)
{
    char after[24], lo[24], hi[24], lim[16];
    const char *p[7] = {after, f->category, f->brand, f->status, lo, hi, lim};
    int rows;

    snprintf(after, sizeof after, "%" PRId64, after_id);
    snprintf(lo, sizeof lo, "%" PRId64, f->min_price);
    snprintf(hi, sizeof hi, "%" PRId64, f->max_price);
    snprintf(lim, sizeof lim, "%d", limit);
    /* The catalog's connections use generic plans (see main.c); the
     * filters a call leaves empty fold away, and an index on the ones it
     * sets is used, only in a plan made for its values. */
    if (db_command(db, "SET LOCAL plan_cache_mode = force_custom_plan") != 0)
        return -1;
    return s_products(db, &s_product_list, p, fn, arg, &rows);
}

int store_product_search(db_t *db, const char *query, int offset, int limit, store_product_fn fn,
                         void *arg)
{
    char off[16], lim[16];
    const char *p[3] = {query, off, lim};
    int rows;

    snprintf(off, sizeof off, "%d", offset);
    snprintf(lim, sizeof lim, "%d", limit);
    return s_products(db, &s_product_search, p, fn, arg, &rows);
}

int store_skus_of(db_t *db, const int64_t *ids, size_t n, store_sku_fn fn, void *arg)
{
    char *arr = malloc(3 + n * 21);
    size_t len = 0;

    if (!arr)
        return -1;
    arr[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(arr + len, "%s%" PRId64, i ? "," : "", ids[i]);
    arr[len++] = '}';
    arr[len] = '\0';
    const char *p[1] = {arr};
    PGresult *r = db_exec(db, &s_skus_of, p);
    free(arr);
    if (!r)
        return -1;
    s_sku_rows(r, fn, arg);
    PQclear(r);
    return 0;
}

int store_product_update(db_t *db, int64_t id, const char *title, const char *description,
                         const char *category, const char *brand, const char *attributes_json,
                         const char *status)
{
    char idt[24];
    const char *p[7] = {idt, title, description, category, brand, attributes_json, status};

    snprintf(idt, sizeof idt, "%" PRId64, id);
    PGresult *r = db_exec(db, &s_product_update, p);
    if (!r)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    PQclear(r);
    return rc;
}

int store_sku_upsert(db_t *db, const char *code, int64_t product_id, int64_t list_price,
                     int64_t cost_price, const char *currency, const char *attributes_json,
                     int32_t low_stock_threshold)
{
    int rows = 0;

    if (s_sku_write(db, &s_sku_upsert, code, product_id, list_price, cost_price, currency,
                    attributes_json, low_stock_threshold, &rows) != 0)
        return -1;
    return rows == 1 ? 0 : 1;
}

int store_low_stock(db_t *db, int limit, store_sku_fn fn, void *arg)
{
    char l[16];
    const char *p[1] = {l};

    snprintf(l, sizeof l, "%d", limit);
    PGresult *r = db_exec(db, &s_low_stock, p);
    if (!r)
        return -1;
    s_sku_rows(r, fn, arg);
    PQclear(r);
    return 0;
}

/* --- reports ---------------------------------------------------------------- */

/* Units and revenue per SKU over held and confirmed reservations created in
 * the window ($1, $2 in ms; 0 = open), with a running share of all units. */
#define SALES_CTE                                                                            \
    "WITH sales AS ("                                                                        \
    "  SELECT l.sku, s.product_id, p.title, s.currency, sum(l.quantity)::bigint AS units, "  \
    "         coalesce(sum(l.quantity::bigint * l.unit_price) "                              \
    "                  FILTER (WHERE l.currency = s.currency), 0)::bigint AS revenue "       \
    "  FROM reservation r JOIN reservation_line l ON l.order_id = r.order_id "              \
    "  JOIN sku s ON s.code = l.sku JOIN product p ON p.id = s.product_id "                 \
    "  WHERE r.state IN ('held', 'confirmed') "                                              \
    "    AND ($1::bigint = 0 OR r.created_at >= to_timestamp($1::bigint / 1000.0)) "        \
    "    AND ($2::bigint = 0 OR r.created_at < to_timestamp($2::bigint / 1000.0)) "         \
    "  GROUP BY l.sku, s.product_id, p.title, s.currency), "                                 \
    "ranked AS (SELECT *, sum(units) OVER (ORDER BY units DESC, sku ROWS UNBOUNDED PRECEDING) " \
    "                     AS running, sum(units) OVER () AS total, count(*) OVER () AS n "   \
    "           FROM sales) "

static const db_stmt_t s_best_sellers = {
    "cat_best_sellers",
    SALES_CTE "SELECT sku, product_id, title, currency, units, revenue, "
              "       running * 100.0 / total, total, n "
              "FROM ranked ORDER BY units DESC, sku LIMIT $3",
    3};

/* A SKU is in the report while the units before it fall short of the share. */
static const db_stmt_t s_pareto = {
    "cat_pareto",
    SALES_CTE "SELECT sku, product_id, title, currency, units, revenue, "
              "       running * 100.0 / total, total, n "
              "FROM ranked WHERE (running - units) * 100 < total * $3::int "
              "ORDER BY units DESC, sku",
    3};

static int s_sales(db_t *db, const db_stmt_t *stmt, int64_t since_ms, int64_t until_ms, int third,
                   store_sales_fn fn, void *arg, int64_t *total, int32_t *n_skus)
{
    char since[24], until[24], t[16];
    const char *p[3] = {since, until, t};

    snprintf(since, sizeof since, "%" PRId64, since_ms);
    snprintf(until, sizeof until, "%" PRId64, until_ms);
    snprintf(t, sizeof t, "%d", third);
    PGresult *r = db_exec(db, stmt, p);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        store_sales_t s = {
            .sku = PQgetvalue(r, i, 0),
            .product_id = strtoll(PQgetvalue(r, i, 1), NULL, 10),
            .title = PQgetvalue(r, i, 2),
            .currency = PQgetvalue(r, i, 3),
            .units = strtoll(PQgetvalue(r, i, 4), NULL, 10),
            .revenue = strtoll(PQgetvalue(r, i, 5), NULL, 10),
            .cumulative_share = strtod(PQgetvalue(r, i, 6), NULL),
        };
        if (i == 0 && total) {
            *total = strtoll(PQgetvalue(r, i, 7), NULL, 10);
            *n_skus = atoi(PQgetvalue(r, i, 8));
        }
        fn(arg, &s);
    }
    PQclear(r);
    return 0;
}

int store_best_sellers(db_t *db, int64_t since_ms, int64_t until_ms, int limit, store_sales_fn fn,
                       void *arg)
{
    return s_sales(db, &s_best_sellers, since_ms, until_ms, limit, fn, arg, NULL, NULL);
}

int store_pareto(db_t *db, int64_t since_ms, int64_t until_ms, int percent, store_sales_fn fn,
                 void *arg, int64_t *total, int32_t *n_skus)
{
    *total = 0;
    *n_skus = 0;
    return s_sales(db, &s_pareto, since_ms, until_ms, percent, fn, arg, total, n_skus);
}
