/* store: the catalog's SQL, parameterised and prepared once per connection. */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "       coalesce(string_agg(l.sku || ':' || l.quantity, ',' ORDER BY l.sku), '') "
    "FROM reservation r LEFT JOIN reservation_line l ON l.order_id = r.order_id "
    "WHERE r.order_id = $1 GROUP BY r.order_id",
    1};

/* All lines or none, in one statement: lock the SKU rows in code order,
 * check every line against the latest stock, then (only if all pass)
 * reserve, write the reservation and its lines. */
static const db_stmt_t s_reserve = {
    "cat_reserve",
    "WITH req AS (SELECT sku, qty FROM unnest($2::text[], $3::int[]) AS r(sku, qty)), "
    "cur AS (SELECT s.code, s.on_hand - s.reserved AS available, p.status, s.list_price, "
    "               s.currency, s.low_stock_threshold "
    "        FROM sku s JOIN product p ON p.id = s.product_id "
    "        WHERE s.code = ANY ($2::text[]) ORDER BY s.code FOR UPDATE OF s), "
    "chk AS (SELECT r.sku, r.qty, c.available, c.status, c.list_price, c.currency, "
    "               c.low_stock_threshold FROM req r LEFT JOIN cur c ON c.code = r.sku), "
    "ok AS (SELECT bool_and(available IS NOT NULL AND status = 'active' AND available >= qty) "
    "       AS ok FROM chk), "
    "upd AS (UPDATE sku s SET reserved = s.reserved + c.qty FROM chk c, ok "
    "        WHERE ok.ok AND s.code = c.sku RETURNING s.code), "
    "res AS (INSERT INTO reservation (order_id, state, expires_at) "
    "        SELECT $1, 'held', now() + make_interval(secs => $4::int) FROM ok WHERE ok.ok "
    "        RETURNING expires_at), "
    "lines AS (INSERT INTO reservation_line (order_id, sku, quantity, unit_price, currency) "
    "          SELECT $1, c.sku, c.qty, c.list_price, c.currency FROM chk c, ok WHERE ok.ok) "
    "SELECT c.sku, coalesce(c.available, -1), coalesce(c.status = 'active', false), "
    "       coalesce(c.low_stock_threshold, 0), ok.ok, "
    "       (SELECT (extract(epoch FROM expires_at) * 1000)::bigint FROM res), "
    "       (SELECT count(*) FROM upd) "
    "FROM chk c CROSS JOIN ok ORDER BY c.sku",
    4};

/* held -> confirmed: the units leave the shelf (on_hand and reserved). */
static const db_stmt_t s_confirm = {
    "cat_confirm",
    "WITH r AS (UPDATE reservation SET state = 'confirmed', confirmed_at = now() "
    "           WHERE order_id = $1 AND state = 'held' RETURNING order_id), "
    "l AS (SELECT sku, quantity FROM reservation_line WHERE order_id = (SELECT order_id FROM r)), "
    "u AS (UPDATE sku s SET on_hand = s.on_hand - l.quantity, reserved = s.reserved - l.quantity "
    "      FROM l WHERE s.code = l.sku RETURNING s.code) "
    "SELECT l.sku, l.quantity, (SELECT count(*) FROM u) FROM l ORDER BY l.sku",
    1};

/* held -> released/expired: the units go back to available. */
static const db_stmt_t s_release = {
    "cat_release",
    "WITH r AS (UPDATE reservation SET state = $2, released_at = now() "
    "           WHERE order_id = $1 AND state = 'held' RETURNING order_id), "
    "l AS (SELECT sku, quantity FROM reservation_line WHERE order_id = (SELECT order_id FROM r)), "
    "u AS (UPDATE sku s SET reserved = s.reserved - l.quantity "
    "      FROM l WHERE s.code = l.sku RETURNING s.code) "
    "SELECT l.sku, l.quantity, (SELECT count(*) FROM u) FROM l ORDER BY l.sku",
    2};

static const db_stmt_t s_reservation_exists = {
    "cat_reservation_exists", "SELECT state FROM reservation WHERE order_id = $1", 1};

static const db_stmt_t s_expired = {
    "cat_expired",
    "SELECT order_id FROM reservation WHERE state = 'held' AND expires_at < now() "
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

int store_sku_insert(db_t *db, const char *code, int64_t product_id, int64_t list_price,
                     int64_t cost_price, const char *currency, const char *attributes_json,
                     int32_t low_stock_threshold)
{
    char pid[24], lp[24], cp[24], th[16];
    const char *p[7] = {code, pid, lp, cp, currency, attributes_json, th};

    snprintf(pid, sizeof pid, "%" PRId64, product_id);
    snprintf(lp, sizeof lp, "%" PRId64, list_price);
    snprintf(cp, sizeof cp, "%" PRId64, cost_price);
    snprintf(th, sizeof th, "%" PRId32, low_stock_threshold);
    PGresult *r = db_exec(db, &s_sku_insert, p);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
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
                          char *lines, size_t lineslen, int64_t *expires_ms)
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
    PGresult *r = db_exec(db, confirm ? &s_confirm : &s_release, p);
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

int store_expired(db_t *db, int limit, store_id_fn fn, void *arg)
{
    char l[16];
    const char *p[1] = {l};

    snprintf(l, sizeof l, "%d", limit);
    PGresult *r = db_exec(db, &s_expired, p);
    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        fn(arg, PQgetvalue(r, i, 0));
    PQclear(r);
    return 0;
}
