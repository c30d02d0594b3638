/* store: the orders service's SQL, parameterised and prepared once per
 * connection. */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS(col) "coalesce((extract(epoch FROM " col ") * 1000)::bigint, 0)"

/* The columns every order read returns, in store_order_t's order. */
#define ORDER_COLS                                                                          \
    "id, customer_id, state, channel, coalesce(external_id, ''), payment_ref, carrier, "    \
    "tracking, reason, coalesce(currency, ''), body, total, " MS("created_at") ", " \
    MS("updated_at") ", " MS("paid_at")

static void s_i64(char *buf, size_t len, int64_t v) { snprintf(buf, len, "%" PRId64, v); }

static int64_t s_int(PGresult *r, int row, int col) { return strtoll(PQgetvalue(r, row, col), NULL, 10); }

/* Gives each row of ORDER_COLS (starting at column `at`) to the callbacks;
 * -1 if a bytea does not decode. */
static int s_rows(PGresult *r, int at, store_order_fn fn, store_list_fn lfn, void *arg)
{
    for (int i = 0; i < PQntuples(r); i++) {
        unsigned char *body = NULL;
        size_t body_len = 0;
        if (!PQgetisnull(r, i, at + 10) &&
            !(body = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, at + 10), &body_len)))
            return -1;
        store_order_t o = {
            .id = PQgetvalue(r, i, at),
            .customer_id = PQgetvalue(r, i, at + 1),
            .state = PQgetvalue(r, i, at + 2),
            .channel = PQgetvalue(r, i, at + 3),
            .external_id = PQgetvalue(r, i, at + 4),
            .payment_ref = PQgetvalue(r, i, at + 5),
            .carrier = PQgetvalue(r, i, at + 6),
            .tracking = PQgetvalue(r, i, at + 7),
            .reason = PQgetvalue(r, i, at + 8),
            .currency = PQgetvalue(r, i, at + 9),
            .body = body,
            .body_len = body_len,
            .total = s_int(r, i, at + 11),
            .created_ms = s_int(r, i, at + 12),
            .updated_ms = s_int(r, i, at + 13),
            .paid_ms = s_int(r, i, at + 14),
        };
        if (fn)
            fn(arg, &o);
        if (lfn)
            lfn(arg, &o, s_int(r, i, at + 15));
        PQfreemem(body);
    }
    return 0;
}

/* Runs a statement whose rows are ORDER_COLS; 1 if it returned none. */
static int s_order_rows(db_t *db, const db_stmt_t *stmt, const char *const *p, const int *lengths,
                        const int *formats, store_order_fn fn, void *arg)
{
    PGresult *r = lengths ? db_exec_bin(db, stmt, p, lengths, formats) : db_exec(db, stmt, p);
    int rc;

    if (!r)
        return -1;
    rc = PQntuples(r) == 0 ? 1 : s_rows(r, 0, fn, NULL, arg);
    PQclear(r);
    return rc;
}

/* --- placement -------------------------------------------------------------- */

/* The live order (not failed) holding a placement's key, with whether it
 * came from the same request; and the id digest of the placement's next
 * attempt: SHA-256 of its kind, (customer, key) or (channel, external id),
 * the request's hash (with an idempotency key) and how many failed
 * placements had the key (with an idempotency key, the same request:
 * another cart's failure under the key does not move this one's id). One
 * row, the order's columns NULL when there is none. */
static const db_stmt_t s_lookup = {
    "ord_lookup",
    "WITH k AS (SELECT $2::text IS NOT NULL AS placed, sha256($5) AS h), "
    "n AS (SELECT count(*) AS failed FROM orders f, k WHERE f.freed_key = coalesce($2, $4) "
    "      AND CASE WHEN k.placed THEN f.customer_id = $1 AND f.channel = 'shop' "
    "                AND f.request_hash = k.h ELSE f.channel = $3 END) "
    "SELECT o.*, encode(sha256(convert_to(CASE WHEN k.placed THEN 'place' ELSE 'import' END, 'UTF8') "
    "         || '\\x00'::bytea || convert_to(CASE WHEN k.placed THEN $1 ELSE $3 END, 'UTF8') "
    "         || '\\x00'::bytea || convert_to(coalesce($2, $4), 'UTF8') || '\\x00'::bytea "
    "         || CASE WHEN k.placed THEN k.h ELSE ''::bytea END "
    "         || convert_to(n.failed::text, 'UTF8')), 'hex') "
    "FROM k CROSS JOIN n LEFT JOIN LATERAL "
    "     (SELECT " ORDER_COLS ", request_hash IS NOT DISTINCT FROM k.h FROM orders "
    "      WHERE ($2::text IS NOT NULL AND customer_id = $1 AND idem_key = $2) "
    "         OR ($4::text IS NOT NULL AND channel = $3 AND external_id = $4)) o ON true",
    5};

static int s_hex(int c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

int store_lookup(db_t *db, const char *customer_id, const char *idem_key, const char *channel,
                 const char *external_id, const uint8_t *request, size_t request_len,
                 uint8_t digest[32], bool *same, store_order_fn fn, void *arg)
{
    const char *p[5] = {customer_id, idem_key, channel, external_id, (const char *)request};
    const int lengths[5] = {0, 0, 0, 0, (int)request_len};
    const int formats[5] = {0, 0, 0, 0, 1};
    PGresult *r = db_exec_bin(db, &s_lookup, p, lengths, formats);
    int rc = 0;

    if (!r)
        return -1;
    const char *hex = PQntuples(r) == 1 ? PQgetvalue(r, 0, 16) : "";
    if (strlen(hex) != 64) {
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < 32; i++)
        digest[i] = (uint8_t)(s_hex(hex[2 * i]) << 4 | s_hex(hex[2 * i + 1]));
    if (!PQgetisnull(r, 0, 0)) {
        *same = PQgetvalue(r, 0, 15)[0] == 't';
        rc = s_rows(r, 0, fn, NULL, arg) == 0 ? 1 : -1;
    }
    PQclear(r);
    return rc;
}

static const db_stmt_t s_insert_placed = {
    "ord_insert_placed",
    "INSERT INTO orders (id, customer_id, state, channel, idem_key, external_id, request_hash, "
    "                    body, currency, total, payment_ref, placed_at, paid_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, sha256($7), $8, $9, $10, $11, now(), "
    "        CASE WHEN $3 = 'paid' THEN now() END) "
    "ON CONFLICT DO NOTHING RETURNING " ORDER_COLS,
    11};

int store_insert_placed(db_t *db, const store_placement_t *pl, const char *state,
                        const uint8_t *body, size_t body_len, const char *currency, int64_t total,
                        const char *payment_ref, store_order_fn fn, void *arg)
{
    char t[24];
    const char *p[11] = {pl->id, pl->customer_id, state, pl->channel, pl->idem_key,
                         pl->external_id, (const char *)pl->request, (const char *)body,
                         currency, t, payment_ref};
    const int lengths[11] = {0, 0, 0, 0, 0, 0, (int)pl->request_len, (int)body_len, 0, 0, 0};
    const int formats[11] = {0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0};

    s_i64(t, sizeof t, total);
    return s_order_rows(db, &s_insert_placed, p, lengths, formats, fn, arg);
}

static const db_stmt_t s_insert_failed = {
    "ord_insert_failed",
    "INSERT INTO orders (id, customer_id, state, channel, freed_key, request_hash, reason) "
    "VALUES ($1, $2, 'failed', $3, coalesce($4, $5), sha256($6), $7) "
    "ON CONFLICT DO NOTHING RETURNING id",
    7};

int store_insert_failed(db_t *db, const store_placement_t *pl, const char *reason)
{
    const char *p[7] = {pl->id, pl->customer_id, pl->channel, pl->idem_key, pl->external_id,
                        (const char *)pl->request, reason};
    const int lengths[7] = {0, 0, 0, 0, 0, (int)pl->request_len, 0};
    const int formats[7] = {0, 0, 0, 0, 0, 1, 0};
    PGresult *r = db_exec_bin(db, &s_insert_failed, p, lengths, formats);
    int rc;

    if (!r)
        return -1;
    rc = PQntuples(r) == 1 ? 0 : 1;
    PQclear(r);
    return rc;
}

static const db_stmt_t s_abandon = {
    "ord_abandon",
    "UPDATE orders SET state = 'failed', reason = $2, idem_key = NULL, external_id = NULL, "
    "  freed_key = coalesce(idem_key, external_id), updated_at = now() "
    "WHERE id = $1 AND state = 'pending' RETURNING id",
    2};

static const db_stmt_t s_state = {"ord_state", "SELECT state FROM orders WHERE id = $1", 1};

int store_abandon(db_t *db, const char *id, const char *reason)
{
    const char *p[2] = {id, reason};
    int rc = db_exec_row(db, &s_abandon, p);

    if (rc != 1)
        return rc;
    /* Not pending: read again (a statement of its own, so it sees what a
     * concurrent attempt committed while the update waited on the row). */
    PGresult *r = db_exec(db, &s_state, p);
    if (!r)
        return -1;
    rc = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "failed") != 0 ? 2 : 1;
    PQclear(r);
    return rc;
}

/* --- reads and transitions ---------------------------------------------------- */

static const db_stmt_t s_get = {
    "ord_get",
    "SELECT " ORDER_COLS " FROM orders "
    "WHERE CASE WHEN $1 <> '' THEN id = $1 ELSE channel = $2 AND external_id = $3 END",
    3};

static const db_stmt_t s_get_lock = {
    "ord_get_lock",
    "SELECT " ORDER_COLS " FROM orders "
    "WHERE CASE WHEN $1 <> '' THEN id = $1 ELSE channel = $2 AND external_id = $3 END "
    "FOR UPDATE",
    3};

int store_order_get(db_t *db, const char *id, const char *channel, const char *external_id,
                    bool lock, store_order_fn fn, void *arg)
{
    const char *p[3] = {id, channel, external_id};

    return s_order_rows(db, lock ? &s_get_lock : &s_get, p, NULL, NULL, fn, arg);
}

static const db_stmt_t s_set_state = {
    "ord_set_state",
    "UPDATE orders SET state = $2, updated_at = now(), "
    "  payment_ref = CASE WHEN $3 = '' THEN payment_ref ELSE $3 END, "
    "  carrier = CASE WHEN $4 = '' THEN carrier ELSE $4 END, "
    "  tracking = CASE WHEN $5 = '' THEN tracking ELSE $5 END, "
    "  reason = CASE WHEN $6 = '' THEN reason ELSE $6 END, "
    "  paid_at = CASE WHEN $2 = 'paid' THEN now() ELSE paid_at END, "
    "  cancelled_at = CASE WHEN $2 IN ('cancelled', 'refunded') THEN now() ELSE cancelled_at END "
    "WHERE id = $1 RETURNING " ORDER_COLS,
    6};

int store_set_state(db_t *db, const char *id, const char *state, const char *payment_ref,
                    const char *carrier, const char *tracking, const char *reason,
                    store_order_fn fn, void *arg)
{
    const char *p[6] = {id, state, payment_ref, carrier, tracking, reason};

    return s_order_rows(db, &s_set_state, p, NULL, NULL, fn, arg);
}

/* One statement per state, written out: the partial index on the states a
 * timer scans (orders_state) serves only a literal state, not a parameter. */
static const db_stmt_t s_stale_pending = {
    "ord_stale_pending",
    "SELECT id FROM orders WHERE state = 'pending' "
    "  AND updated_at < now() - $1::bigint * interval '1 second' "
    "ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    2};

static const db_stmt_t s_stale_placed = {
    "ord_stale_placed",
    "SELECT id FROM orders WHERE state = 'placed' "
    "  AND updated_at < now() - $1::bigint * interval '1 second' "
    "ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    2};

int store_stale(db_t *db, const char *state, int64_t age_s, int limit, store_id_fn fn, void *arg)
{
    char a[24], l[24];
    const char *p[2] = {a, l};

    s_i64(a, sizeof a, age_s);
    s_i64(l, sizeof l, limit);
    return db_exec_each(db, strcmp(state, "pending") == 0 ? &s_stale_pending : &s_stale_placed, p,
                        fn, arg);
}

static const db_stmt_t s_unknown = {
    "ord_unknown",
    "SELECT u FROM unnest($1::text[]) u WHERE NOT EXISTS (SELECT 1 FROM orders WHERE id = u)",
    1};

int store_unknown_ids(db_t *db, const char *const *ids, size_t n, store_id_fn fn, void *arg)
{
    char *arr = db_text_array(ids, n);
    const char *p[1] = {arr};

    if (!arr)
        return -1;
    int rc = db_exec_each(db, &s_unknown, p, fn, arg);
    free(arr);
    return rc;
}

static const db_stmt_t s_list = {
    "ord_list",
    "SELECT " ORDER_COLS ", "
    "  (extract(epoch FROM created_at) * 1000000)::bigint FROM orders "
    "WHERE state NOT IN ('pending', 'failed') "
    "  AND ($1 = '' OR customer_id = $1) AND ($2 = '' OR state = $2) "
    "  AND ($3::bigint = 0 OR created_at >= to_timestamp($3::bigint / 1000.0)) "
    "  AND ($4::bigint = 0 OR created_at < to_timestamp($4::bigint / 1000.0)) "
    "  AND ($6 = '' OR (created_at, id) < "
    "       ('epoch'::timestamptz + $5::bigint * interval '1 microsecond', $6)) "
    "ORDER BY created_at DESC, id DESC LIMIT $7",
    7};

int store_order_list(db_t *db, const store_filter_t *f, int limit, store_list_fn fn, void *arg)
{
    char since[24], until[24], after[24], lim[24];
    const char *p[7] = {f->customer_id, f->state, since, until, after, f->after_id, lim};

    s_i64(since, sizeof since, f->since_ms);
    s_i64(until, sizeof until, f->until_ms);
    s_i64(after, sizeof after, f->after_us);
    s_i64(lim, sizeof lim, limit);
    PGresult *r = db_exec(db, &s_list, p);
    if (!r)
        return -1;
    int rc = s_rows(r, 0, NULL, fn, arg);
    PQclear(r);
    return rc;
}

/* --- reviews ------------------------------------------------------------------- */

static const db_stmt_t s_review_insert = {
    "ord_review_insert",
    "INSERT INTO review (order_id, sku, customer_id, rating, text, sentiment) "
    "VALUES ($1, $2, $3, $4, $5, $6) RETURNING " MS("created_at"),
    6};

int store_review_insert(db_t *db, const store_review_t *rv, int64_t *created_ms)
{
    char rating[16];
    const char *p[6] = {rv->order_id, rv->sku, rv->customer_id, rating, rv->text, rv->sentiment};

    snprintf(rating, sizeof rating, "%d", (int)rv->rating);
    PGresult *r = db_exec(db, &s_review_insert, p);
    if (!r)
        return -1;
    *created_ms = s_int(r, 0, 0);
    PQclear(r);
    return 0;
}

static const db_stmt_t s_reviews = {
    "ord_reviews",
    "SELECT order_id, sku, customer_id, rating, text, sentiment, " MS("created_at")
    " FROM review WHERE order_id = $1 ORDER BY sku",
    1};

int store_reviews(db_t *db, const char *order_id, store_review_fn fn, void *arg)
{
    const char *p[1] = {order_id};
    PGresult *r = db_exec(db, &s_reviews, p);

    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        store_review_t rv = {
            .order_id = PQgetvalue(r, i, 0),
            .sku = PQgetvalue(r, i, 1),
            .customer_id = PQgetvalue(r, i, 2),
            .rating = (int32_t)s_int(r, i, 3),
            .text = PQgetvalue(r, i, 4),
            .sentiment = PQgetvalue(r, i, 5),
            .created_ms = s_int(r, i, 6),
        };
        fn(arg, &rv);
    }
    PQclear(r);
    return 0;
}

/* --- the daily summary ------------------------------------------------------------ */

/* Both days in one statement. A day is [local midnight, next midnight) in
 * $2, so the indexes on created_at and paid_at serve it. */
static const db_stmt_t s_days = {
    "ord_days",
    "WITH p(day0) AS (SELECT coalesce(nullif($1, '')::date, "
    "                                 (now() AT TIME ZONE $2)::date - 1)), "
    "d(day) AS (SELECT day0 FROM p UNION ALL SELECT day0 - 1 FROM p), "
    "b AS (SELECT day, day::timestamp AT TIME ZONE $2 AS lo, "
    "             (day + 1)::timestamp AT TIME ZONE $2 AS hi FROM d), "
    "cur(c) AS (SELECT coalesce(nullif($3, ''), "
    "  (SELECT o.currency FROM orders o, b WHERE b.day = (SELECT day0 FROM p) "
    "     AND o.state NOT IN ('pending', 'failed') AND o.created_at >= b.lo AND o.created_at < b.hi "
    "   GROUP BY o.currency ORDER BY count(*) DESC, o.currency LIMIT 1), '')) "
    "SELECT to_char(b.day, 'YYYY-MM-DD'), cur.c, "
    "  (SELECT count(*) FROM orders o WHERE o.state NOT IN ('pending', 'failed') "
    "     AND o.created_at >= b.lo AND o.created_at < b.hi AND o.currency = cur.c), "
    "  (SELECT count(*) FROM orders o WHERE o.state = 'cancelled' "
    "     AND o.created_at >= b.lo AND o.created_at < b.hi AND o.currency = cur.c), "
    "  (SELECT count(*) FROM orders o WHERE o.paid_at >= b.lo AND o.paid_at < b.hi "
    "     AND o.currency = cur.c), "
    "  (SELECT coalesce(sum(o.total), 0) FROM orders o WHERE o.paid_at >= b.lo "
    "     AND o.paid_at < b.hi AND o.currency = cur.c) "
    "FROM b, cur ORDER BY b.day DESC",
    3};

int store_days(db_t *db, const char *date, const char *timezone, const char *currency,
               store_day_t *day, store_day_t *before)
{
    const char *p[3] = {date, timezone, currency};
    PGresult *r = db_exec(db, &s_days, p);

    if (!r)
        return strncmp(db_sqlstate(db), "22", 2) == 0 ? 1 : -1;
    for (int i = 0; i < PQntuples(r) && i < 2; i++) {
        store_day_t *d = i == 0 ? day : before;
        snprintf(d->date, sizeof d->date, "%s", PQgetvalue(r, i, 0));
        snprintf(d->currency, sizeof d->currency, "%s", PQgetvalue(r, i, 1));
        d->orders = s_int(r, i, 2);
        d->cancelled = s_int(r, i, 3);
        d->paid_orders = s_int(r, i, 4);
        d->paid_amount = s_int(r, i, 5);
    }
    PQclear(r);
    return 0;
}
