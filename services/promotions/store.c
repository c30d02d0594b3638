/* store: the promotions service's SQL, parameterised and prepared once per
 * connection. */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "subscriber.h"

#define MS(col) "coalesce((extract(epoch FROM " col ") * 1000)::bigint, 0)"
#define TS(p) "CASE WHEN " p "::bigint = 0 THEN NULL ELSE to_timestamp(" p "::bigint / 1000.0) END"

static void s_i64(char *buf, size_t len, int64_t v) { snprintf(buf, len, "%" PRId64, v); }

/* Runs a statement whose first parameter is the text[] of `v` (and whose
 * second, if any, is `second`). */
static PGresult *s_exec_array(db_t *db, const db_stmt_t *stmt, const char *const *v, size_t n,
                              const char *second)
{
    char *arr = db_text_array(v, n);
    const char *p[2] = {arr, second};

    if (!arr)
        return NULL;
    PGresult *r = db_exec(db, stmt, p);
    free(arr);
    return r;
}

/* --- the catalog's SKUs ------------------------------------------------------ */

static const db_stmt_t s_sku_upsert = {
    "pro_sku_upsert",
    "INSERT INTO product_sku (sku, product_id, title, category, list_price, cost_price, "
    "                         currency, active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (sku) DO UPDATE SET product_id = excluded.product_id, title = excluded.title, "
    "  category = excluded.category, list_price = excluded.list_price, "
    "  cost_price = excluded.cost_price, currency = excluded.currency, "
    "  active = excluded.active, updated_at = now()",
    8};

static const db_stmt_t s_sku_all = {
    "pro_sku_all",
    "SELECT sku, title, category, currency, product_id, list_price, cost_price, active "
    "FROM product_sku ORDER BY sku",
    0};

int store_sku_upsert(db_t *db, const store_sku_t *s)
{
    char pid[24], lp[24], cp[24];
    const char *p[8] = {s->sku, pid, s->title, s->category, lp, cp, s->currency,
                        s->active ? "true" : "false"};

    s_i64(pid, sizeof pid, s->product_id);
    s_i64(lp, sizeof lp, s->list_price);
    s_i64(cp, sizeof cp, s->cost_price);
    PGresult *r = db_exec(db, &s_sku_upsert, p);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

int store_sku_all(db_t *db, store_sku_fn fn, void *arg)
{
    PGresult *r = db_exec(db, &s_sku_all, NULL);

    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        store_sku_t s = {
            .sku = PQgetvalue(r, i, 0),
            .title = PQgetvalue(r, i, 1),
            .category = PQgetvalue(r, i, 2),
            .currency = PQgetvalue(r, i, 3),
            .product_id = strtoll(PQgetvalue(r, i, 4), NULL, 10),
            .list_price = strtoll(PQgetvalue(r, i, 5), NULL, 10),
            .cost_price = strtoll(PQgetvalue(r, i, 6), NULL, 10),
            .active = PQgetvalue(r, i, 7)[0] == 't',
        };
        fn(arg, &s);
    }
    PQclear(r);
    return 0;
}

/* --- rules ------------------------------------------------------------------------- */

#define RULE_COLS                                                                          \
    "code, name, kind, scope, status, coalesce(currency, ''), array_to_json(skus)::text, " \
    "array_to_json(categories)::text, bundle::text, percent_off, buy_quantity, "           \
    "get_quantity, priority, usage_cap, used, amount_off, bundle_price, min_spend, "       \
    "coalesce(budget, 0), spent, " MS("starts_at") ", " MS("ends_at") ", "                 \
    MS("updated_at") ", exclusive, allow_loss"

static const db_stmt_t s_rule_insert = {
    "pro_rule_insert",
    "INSERT INTO rule (code, name, kind, scope, status, currency, skus, categories, bundle, "
    "  percent_off, buy_quantity, get_quantity, priority, usage_cap, amount_off, bundle_price, "
    "  min_spend, budget, starts_at, ends_at, exclusive, allow_loss, targets) "
    "SELECT $1, $2, $3, $4, $5, nullif($6, ''), "
    "  ARRAY(SELECT json_array_elements_text($7::json)), "
    "  ARRAY(SELECT json_array_elements_text($8::json)), $9::jsonb, $10, $11, $12, $13, $14, "
    "  $15, $16, $17, nullif($18::bigint, 0), " TS("$19") ", " TS("$20") ", $21, $22, ARRAY(SELECT json_array_elements_text($23::json)) "
    "ON CONFLICT (code) DO NOTHING RETURNING code",
    23};

static const db_stmt_t s_rule_update = {
    "pro_rule_update",
    "UPDATE rule SET name = $2, kind = $3, scope = $4, status = $5, currency = nullif($6, ''), "
    "  skus = ARRAY(SELECT json_array_elements_text($7::json)), "
    "  categories = ARRAY(SELECT json_array_elements_text($8::json)), bundle = $9::jsonb, "
    "  percent_off = $10, buy_quantity = $11, get_quantity = $12, priority = $13, "
    "  usage_cap = $14, amount_off = $15, bundle_price = $16, min_spend = $17, "
    "  budget = nullif($18::bigint, 0), starts_at = " TS("$19") ", ends_at = " TS("$20") ", "
    "  exclusive = $21, allow_loss = $22, targets = ARRAY(SELECT json_array_elements_text($23::json)), updated_at = now() "
    "WHERE code = $1 RETURNING code",
    23};

static const db_stmt_t s_rule_status = {
    "pro_rule_status",
    "UPDATE rule SET status = $2, updated_at = now() WHERE code = $1 RETURNING code", 2};

static const db_stmt_t s_rule_get = {
    "pro_rule_get", "SELECT " RULE_COLS " FROM rule WHERE code = $1", 1};

static const db_stmt_t s_rule_list = {
    "pro_rule_list",
    "SELECT " RULE_COLS " FROM rule WHERE $1::bigint = 0 OR (status = 'active' "
    "  AND (starts_at IS NULL OR starts_at <= to_timestamp($1::bigint / 1000.0)) "
    "  AND (ends_at IS NULL OR ends_at > to_timestamp($1::bigint / 1000.0))) "
    "ORDER BY priority DESC, code",
    1};

/* Locks rules whose counters a redemption moves, in code order (so two
 * redemptions never deadlock on them); run before reading their usage, so
 * that read (a new statement in READ COMMITTED) sees the latest counts. */
static const db_stmt_t s_rule_lock = {
    "pro_rule_lock", "SELECT code FROM rule WHERE code = ANY ($1::text[]) ORDER BY code FOR UPDATE", 1};

static const db_stmt_t s_rule_version = {
    "pro_rule_version", "SELECT version FROM rule_version WHERE id = 1", 0};
static const db_stmt_t s_rule_active = {
    "pro_rule_active", "SELECT " RULE_COLS " FROM rule WHERE status = 'active'", 0};
static const db_stmt_t s_rule_usage = {
    "pro_rule_usage",
    "SELECT code, used, spent FROM rule WHERE code = ANY ($1::text[])",
    1};

static const db_stmt_t s_rule_tie = {
    "pro_rule_tie",
    "SELECT code FROM rule WHERE status = 'active' AND exclusive AND code <> $1 "
    "  AND priority = $2 AND (scope = 'order' OR $3 = 'order' OR targets && ARRAY(SELECT json_array_elements_text($4::json))) "
    "  AND (ends_at IS NULL OR $5::bigint = 0 OR ends_at > to_timestamp($5::bigint / 1000.0)) "
    "  AND (starts_at IS NULL OR $6::bigint = 0 OR starts_at < to_timestamp($6::bigint / 1000.0)) "
    "ORDER BY code LIMIT 1",
    6};

static void s_rule_rows(PGresult *r, store_rule_fn fn, void *arg)
{
    for (int i = 0; i < PQntuples(r); i++) {
        store_rule_t x = {
            .code = PQgetvalue(r, i, 0),
            .name = PQgetvalue(r, i, 1),
            .kind = PQgetvalue(r, i, 2),
            .scope = PQgetvalue(r, i, 3),
            .status = PQgetvalue(r, i, 4),
            .currency = PQgetvalue(r, i, 5),
            .skus_json = PQgetvalue(r, i, 6),
            .categories_json = PQgetvalue(r, i, 7),
            .bundle_json = PQgetvalue(r, i, 8),
            .percent_off = atoi(PQgetvalue(r, i, 9)),
            .buy = atoi(PQgetvalue(r, i, 10)),
            .get = atoi(PQgetvalue(r, i, 11)),
            .priority = atoi(PQgetvalue(r, i, 12)),
            .usage_cap = atoi(PQgetvalue(r, i, 13)),
            .used = atoi(PQgetvalue(r, i, 14)),
            .amount_off = strtoll(PQgetvalue(r, i, 15), NULL, 10),
            .bundle_price = strtoll(PQgetvalue(r, i, 16), NULL, 10),
            .min_spend = strtoll(PQgetvalue(r, i, 17), NULL, 10),
            .budget = strtoll(PQgetvalue(r, i, 18), NULL, 10),
            .spent = strtoll(PQgetvalue(r, i, 19), NULL, 10),
            .starts_ms = strtoll(PQgetvalue(r, i, 20), NULL, 10),
            .ends_ms = strtoll(PQgetvalue(r, i, 21), NULL, 10),
            .updated_ms = strtoll(PQgetvalue(r, i, 22), NULL, 10),
            .exclusive = PQgetvalue(r, i, 23)[0] == 't',
            .allow_loss = PQgetvalue(r, i, 24)[0] == 't',
        };
        fn(arg, &x);
    }
}

static int s_rules(db_t *db, const db_stmt_t *stmt, const char *const *p, store_rule_fn fn,
                   void *arg, int *rows)
{
    PGresult *r = db_exec(db, stmt, p);

    if (!r)
        return -1;
    if (rows)
        *rows = PQntuples(r);
    s_rule_rows(r, fn, arg);
    PQclear(r);
    return 0;
}

int store_rule_write(db_t *db, const store_rule_t *x, const char *targets, bool update)
{
    char pct[16], buy[16], get[16], prio[16], cap[16], amt[24], bp[24], ms[24], bud[24], st[24],
        en[24];
    const char *p[23] = {x->code, x->name, x->kind, x->scope, x->status, x->currency,
                         x->skus_json, x->categories_json, x->bundle_json, pct, buy, get, prio,
                         cap, amt, bp, ms, bud, st, en, x->exclusive ? "true" : "false",
                         x->allow_loss ? "true" : "false", targets};

    snprintf(pct, sizeof pct, "%d", x->percent_off);
    snprintf(buy, sizeof buy, "%d", x->buy);
    snprintf(get, sizeof get, "%d", x->get);
    snprintf(prio, sizeof prio, "%d", x->priority);
    snprintf(cap, sizeof cap, "%d", x->usage_cap);
    s_i64(amt, sizeof amt, x->amount_off);
    s_i64(bp, sizeof bp, x->bundle_price);
    s_i64(ms, sizeof ms, x->min_spend);
    s_i64(bud, sizeof bud, x->budget);
    s_i64(st, sizeof st, x->starts_ms);
    s_i64(en, sizeof en, x->ends_ms);
    PGresult *r = db_exec(db, update ? &s_rule_update : &s_rule_insert, p);
    if (!r)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    PQclear(r);
    return rc;
}

int store_rule_status(db_t *db, const char *code, const char *status)
{
    const char *p[2] = {code, status};
    PGresult *r = db_exec(db, &s_rule_status, p);

    if (!r)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    PQclear(r);
    return rc;
}

int store_rule_get(db_t *db, const char *code, store_rule_fn fn, void *arg)
{
    const char *p[1] = {code};
    int rows = 0;

    if (s_rules(db, &s_rule_get, p, fn, arg, &rows) != 0)
        return -1;
    return rows == 1 ? 0 : 1;
}

int store_rule_list(db_t *db, int64_t at_ms, store_rule_fn fn, void *arg)
{
    char at[24];
    const char *p[1] = {at};

    s_i64(at, sizeof at, at_ms);
    return s_rules(db, &s_rule_list, p, fn, arg, NULL);
}

int store_rule_lock(db_t *db, const char *const *codes, size_t n)
{
    PGresult *r = s_exec_array(db, &s_rule_lock, codes, n, NULL);

    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

int store_rule_tie(db_t *db, const store_rule_t *x, const char *targets, char *other, size_t len)
{
    char prio[16], st[24], en[24];
    const char *p[6] = {x->code, prio, x->scope, targets, st, en};

    snprintf(prio, sizeof prio, "%d", x->priority);
    s_i64(st, sizeof st, x->starts_ms);
    s_i64(en, sizeof en, x->ends_ms);
    PGresult *r = db_exec(db, &s_rule_tie, p);
    if (!r)
        return -1;
    int rc = 1;
    if (PQntuples(r) == 1) {
        snprintf(other, len, "%s", PQgetvalue(r, 0, 0));
        rc = 0;
    }
    PQclear(r);
    return rc;
}

int store_rule_version(db_t *db, int64_t *version)
{
    PGresult *r = db_exec(db, &s_rule_version, NULL);

    if (!r)
        return -1;
    *version = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return 0;
}

int store_rule_active(db_t *db, store_rule_fn fn, void *arg)
{
    return s_rules(db, &s_rule_active, NULL, fn, arg, NULL);
}

int store_rule_usage(db_t *db, const char *const *codes, size_t n, store_usage_fn fn,
                     void *arg)
{
    PGresult *r = s_exec_array(db, &s_rule_usage, codes, n, NULL);

    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        fn(arg, PQgetvalue(r, i, 0), atoi(PQgetvalue(r, i, 1)), strtoll(PQgetvalue(r, i, 2), NULL, 10));
    PQclear(r);
    return 0;
}

/* --- coupons and tiers -------------------------------------------------------------- */

#define COUPON_COLS                                                                        \
    "c.code, c.kind, coalesce(c.currency, ''), c.customer_id, c.campaign, c.percent_off, " \
    "c.total_limit, c.per_customer_limit, c.used, c.amount_off, c.min_spend, "             \
    MS("c.starts_at") ", " MS("c.ends_at")

/* Coupons with the same terms under each of the codes in $1; taken codes
 * are skipped (and not returned). */
static const db_stmt_t s_coupon_insert = {
    "pro_coupon_insert",
    "INSERT INTO coupon (code, kind, currency, customer_id, campaign, percent_off, total_limit, "
    "  per_customer_limit, amount_off, min_spend, starts_at, ends_at) "
    "SELECT code, $2, nullif($3, ''), $4, $5, $6, $7, $8, $9, $10, " TS("$11") ", " TS("$12") " "
    "FROM unnest($1::text[]) AS code ON CONFLICT (code) DO NOTHING RETURNING code",
    12};

#define COUPONS                                                                          \
    "SELECT " COUPON_COLS ", (SELECT count(*) FROM redemption_use u WHERE u.source = 'coupon' " \
    "  AND u.code = c.code AND $2 <> '' AND u.customer_id = $2) "                          \
    "FROM coupon c WHERE c.code = ANY ($1::text[]) ORDER BY c.code"

static const db_stmt_t s_coupons = {"pro_coupons", COUPONS, 2};
static const db_stmt_t s_coupon_used = {
    "pro_coupon_used", "SELECT code, used FROM coupon WHERE code = ANY ($1::text[])", 1};
/* Locks first, in code order, the coupons with a per-customer limit: the
 * read that follows sees the customer's latest uses, which the use's
 * conditional UPDATE could not (its count is of the statement's snapshot).
 * A total limit needs no lock: that UPDATE checks `used` on the row it
 * changes, after any concurrent use has committed. Left unlocked, a
 * popular coupon's row is held only from its use to the commit, not for
 * the whole redemption (bench/run: every order with the coupon waited
 * 1.8 ms on the lock). */
static const db_stmt_t s_coupons_lock = {
    "pro_coupons_lock",
    "SELECT code FROM coupon WHERE code = ANY ($1::text[]) AND per_customer_limit > 0 "
    "ORDER BY code FOR UPDATE",
    1};

static const db_stmt_t s_tier_set = {
    "pro_tier_set",
    "INSERT INTO tier (name, percent_off) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE "
    "SET percent_off = excluded.percent_off, updated_at = now()",
    2};
static const db_stmt_t s_tier_list = {"pro_tier_list", "SELECT name, percent_off FROM tier ORDER BY name", 0};

int store_coupon_insert(db_t *db, const store_coupon_t *c, const char *const *codes, size_t n,
                        store_code_fn fn, void *arg)
{
    char pct[16], tl[16], pcl[16], amt[24], ms[24], st[24], en[24];
    char *arr = db_text_array(codes, n);
    const char *p[12] = {arr, c->kind, c->currency, c->customer_id, c->campaign, pct, tl,
                         pcl, amt, ms, st, en};

    if (!arr)
        return -1;
    snprintf(pct, sizeof pct, "%d", c->percent_off);
    snprintf(tl, sizeof tl, "%d", c->total_limit);
    snprintf(pcl, sizeof pcl, "%d", c->per_customer_limit);
    s_i64(amt, sizeof amt, c->amount_off);
    s_i64(ms, sizeof ms, c->min_spend);
    s_i64(st, sizeof st, c->starts_ms);
    s_i64(en, sizeof en, c->ends_ms);
    int rc = db_exec_each(db, &s_coupon_insert, p, fn, arg);
    free(arr);
    return rc;
}

int store_coupons(db_t *db, const char *const *codes, size_t n, const char *customer_id, bool lock,
                  store_coupon_fn fn, void *arg)
{
    PGresult *r;

    if (lock) {
        if (!(r = s_exec_array(db, &s_coupons_lock, codes, n, NULL)))
            return -1;
        PQclear(r);
    }
    r = s_exec_array(db, &s_coupons, codes, n, customer_id);

    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++) {
        store_coupon_t c = {
            .code = PQgetvalue(r, i, 0),
            .kind = PQgetvalue(r, i, 1),
            .currency = PQgetvalue(r, i, 2),
            .customer_id = PQgetvalue(r, i, 3),
            .campaign = PQgetvalue(r, i, 4),
            .percent_off = atoi(PQgetvalue(r, i, 5)),
            .total_limit = atoi(PQgetvalue(r, i, 6)),
            .per_customer_limit = atoi(PQgetvalue(r, i, 7)),
            .used = atoi(PQgetvalue(r, i, 8)),
            .amount_off = strtoll(PQgetvalue(r, i, 9), NULL, 10),
            .min_spend = strtoll(PQgetvalue(r, i, 10), NULL, 10),
            .starts_ms = strtoll(PQgetvalue(r, i, 11), NULL, 10),
            .ends_ms = strtoll(PQgetvalue(r, i, 12), NULL, 10),
            .used_by_customer = atoi(PQgetvalue(r, i, 13)),
        };
        fn(arg, &c);
    }
    PQclear(r);
    return 0;
}

int store_coupon_used(db_t *db, const char *const *codes, size_t n, store_usage_fn fn, void *arg)
{
    PGresult *r = s_exec_array(db, &s_coupon_used, codes, n, NULL);

    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        fn(arg, PQgetvalue(r, i, 0), atoi(PQgetvalue(r, i, 1)), 0);
    PQclear(r);
    return 0;
}

int store_tier_set(db_t *db, const char *name, int32_t percent)
{
    char pct[16];
    const char *p[2] = {name, pct};

    snprintf(pct, sizeof pct, "%d", percent);
    PGresult *r = db_exec(db, &s_tier_set, p);
    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

int store_tier_list(db_t *db, store_tier_fn fn, void *arg)
{
    PGresult *r = db_exec(db, &s_tier_list, NULL);

    if (!r)
        return -1;
    for (int i = 0; i < PQntuples(r); i++)
        fn(arg, PQgetvalue(r, i, 0), atoi(PQgetvalue(r, i, 1)));
    PQclear(r);
    return 0;
}

/* --- redemptions ------------------------------------------------------------------------ */

/* With the terms version, so a redemption that needs nothing more runs one
 * statement. */
#define REDEMPTION_READ(lock)                                                                 \
    "SELECT v.version, r.state, r.request, r.quote "                                          \
    "FROM rule_version v LEFT JOIN LATERAL "                                                  \
    "     (SELECT state, request, quote FROM redemption WHERE order_id = $1" lock ") r ON true " \
    "WHERE v.id = 1"
static const db_stmt_t s_redemption_get = {"pro_redemption_get", REDEMPTION_READ(" FOR UPDATE"), 1};
/* The same without the row lock: for a second look from a transaction that
 * holds coupon or rule locks (a release locks those, then the redemption). */
static const db_stmt_t s_redemption_peek = {"pro_redemption_peek", REDEMPTION_READ(""), 1};

static const db_stmt_t s_redemption_insert = {
    "pro_redemption_insert",
    "INSERT INTO redemption (order_id, customer_id, state, request, quote, expires_at) "
    "VALUES ($1, $2, 'redeemed', $3, $4, "
    "        CASE WHEN $5::int > 0 THEN now() + make_interval(secs => $5::int) END)",
    5};

/* One use of a coupon, refused past its total limit or the customer's. */
static const db_stmt_t s_coupon_use = {
    "pro_coupon_use",
    "WITH c AS (UPDATE coupon SET used = used + 1 WHERE code = $2 "
    "             AND (total_limit = 0 OR used < total_limit) "
    "             AND ($4::int = 0 OR (SELECT count(*) FROM redemption_use u "
    "                  WHERE u.source = 'coupon' AND u.code = $2 AND u.customer_id = $3) < $4::int) "
    "           RETURNING code) "
    "INSERT INTO redemption_use (order_id, source, code, customer_id, saved) "
    "SELECT $1, 'coupon', code, $3, $5 FROM c RETURNING code",
    5};

static const db_stmt_t s_rule_use = {
    "pro_rule_use",
    "WITH r AS (UPDATE rule SET used = used + 1, spent = spent + $3 WHERE code = $2 "
    "             AND (usage_cap = 0 OR used < usage_cap) "
    "             AND (budget IS NULL OR spent + $3 <= budget) "
    "           RETURNING code, usage_cap > 0 AND used = usage_cap AS capped, "
    "                     budget IS NOT NULL AND spent = budget AS broke), "
    "u AS (INSERT INTO redemption_use (order_id, source, code, saved) "
    "      SELECT $1, 'rule', code, $3 FROM r) "
    "SELECT capped, broke FROM r",
    3};

static const db_stmt_t s_release = {
    "pro_release",
    "WITH r AS (UPDATE redemption SET state = 'released', released_at = now() "
    "           WHERE order_id = $1 AND state = 'redeemed' "
    "             AND (NOT $2::bool OR (expires_at < now() AND "
    SUB_APPLIED_PAST("orders", "redemption.expires_at") ")) RETURNING order_id), "
    "u AS (DELETE FROM redemption_use WHERE order_id = (SELECT order_id FROM r) "
    "      RETURNING source, code, saved), "
    "c AS (UPDATE coupon SET used = used - 1 FROM u "
    "      WHERE u.source = 'coupon' AND coupon.code = u.code RETURNING coupon.code), "
    "k AS (UPDATE rule SET used = used - 1, spent = spent - u.saved FROM u "
    "      WHERE u.source = 'rule' AND rule.code = u.code RETURNING rule.code) "
    "SELECT (SELECT count(*) FROM r), code FROM c "
    "UNION ALL SELECT (SELECT count(*) FROM r), NULL WHERE NOT EXISTS (SELECT 1 FROM c) "
    "ORDER BY 2",
    2};

/* Locks what an order's redemption counted in the order Redeem takes it:
 * the rules, then the coupons with a per-customer limit, each as
 * pro_rule_lock and pro_coupons_lock sort them; then the other coupons, in
 * the byte order (COLLATE "C", as strcmp) in which Redeem's uses reach
 * them. Left to the release's own UPDATEs, the coupons went first, so a
 * release and a Redeem sharing a coupon and a capped rule could deadlock
 * (one of them ABORTED after PostgreSQL's deadlock_timeout). This orders
 * one release; the orders consumer commits each release by itself
 * (commit_each), so no transaction holds two releases' locks. */
static const db_stmt_t s_release_lock = {
    "pro_release_lock",
    "WITH u AS (SELECT source, code FROM redemption_use WHERE order_id = $1), "
    "k AS (SELECT code FROM rule WHERE code IN (SELECT code FROM u WHERE source = 'rule') "
    "      ORDER BY code FOR UPDATE), "
    "p AS (SELECT code FROM coupon WHERE code IN (SELECT code FROM u WHERE source = 'coupon') "
    "      AND per_customer_limit > 0 AND (SELECT count(*) FROM k) >= 0 "
    "      ORDER BY code FOR UPDATE), "
    "o AS (SELECT code FROM coupon WHERE code IN (SELECT code FROM u WHERE source = 'coupon') "
    "      AND per_customer_limit = 0 AND (SELECT count(*) FROM p) >= 0 "
    "      ORDER BY code COLLATE \"C\" FOR UPDATE) "
    "SELECT count(*) FROM o",
    1};

static const db_stmt_t s_tombstone = {
    "pro_tombstone",
    "INSERT INTO redemption (order_id, state, request, quote, released_at) "
    "VALUES ($1, 'released', '', '', now()) ON CONFLICT (order_id) DO NOTHING RETURNING 1",
    1};

static uint8_t *s_bytea(PGresult *r, int row, int col, size_t *len)
{
    size_t n = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
    uint8_t *out = NULL;

    if (raw) {
        out = malloc(n ? n : 1);
        if (out)
            memcpy(out, raw, n);
        PQfreemem(raw);
    }
    *len = n;
    return out;
}

int store_redemption_get(db_t *db, const char *order_id, bool lock, char *state, size_t statelen,
                         uint8_t **request, size_t *request_len, uint8_t **quote,
                         size_t *quote_len, int64_t *version)
{
    const char *p[1] = {order_id};
    PGresult *r = db_exec(db, lock ? &s_redemption_get : &s_redemption_peek, p);
    int rc = 1;

    if (!r)
        return -1;
    if (PQntuples(r) != 1) {
        rc = -1;   /* rule_version has its one row from the first migration on */
    } else {
        if (version)
            *version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        if (!PQgetisnull(r, 0, 1)) {
            snprintf(state, statelen, "%s", PQgetvalue(r, 0, 1));
            *request = s_bytea(r, 0, 2, request_len);
            *quote = s_bytea(r, 0, 3, quote_len);
            rc = (*request && *quote) ? 0 : -1;
        }
    }
    PQclear(r);
    return rc;
}

int store_redemption_insert(db_t *db, const char *order_id, const char *customer_id,
                            const uint8_t *request, size_t request_len, const uint8_t *quote,
                            size_t quote_len, uint32_t hold_seconds)
{
    char hold[16];
    const char *p[5] = {order_id, customer_id, (const char *)request, (const char *)quote, hold};
    int lengths[5] = {0, 0, (int)request_len, (int)quote_len, 0};
    int formats[5] = {0, 0, 1, 1, 0};

    snprintf(hold, sizeof hold, "%u", hold_seconds);
    PGresult *r = db_exec_bin(db, &s_redemption_insert, p, lengths, formats);

    if (!r)
        return -1;
    PQclear(r);
    return 0;
}

int store_coupon_use(db_t *db, const char *order_id, const char *code, const char *customer_id,
                     int32_t per_customer_limit, int64_t saved)
{
    char pcl[16], sv[24];
    const char *p[5] = {order_id, code, customer_id, pcl, sv};

    snprintf(pcl, sizeof pcl, "%d", per_customer_limit);
    s_i64(sv, sizeof sv, saved);
    PGresult *r = db_exec(db, &s_coupon_use, p);
    if (!r)
        return -1;
    int rc = PQntuples(r) == 1 ? 0 : 1;
    PQclear(r);
    return rc;
}

int store_rule_use(db_t *db, const char *order_id, const char *code, int64_t saved,
                   const char **exhausted)
{
    char sv[24];
    const char *p[3] = {order_id, code, sv};

    s_i64(sv, sizeof sv, saved);
    PGresult *r = db_exec(db, &s_rule_use, p);
    if (!r)
        return -1;
    int rc = 1;
    *exhausted = "";
    if (PQntuples(r) == 1) {
        if (PQgetvalue(r, 0, 0)[0] == 't')
            *exhausted = "usage cap";
        else if (PQgetvalue(r, 0, 1)[0] == 't')
            *exhausted = "budget";
        rc = 0;
    }
    PQclear(r);
    return rc;
}

int store_redemption_tombstone(db_t *db, const char *order_id)
{
    const char *p[1] = {order_id};
    return db_exec_row(db, &s_tombstone, p);
}

static const db_stmt_t s_tombstone_purge = {
    "pro_tombstone_purge",
    "DELETE FROM redemption WHERE order_id IN "
    "  (SELECT order_id FROM redemption WHERE state = 'released' AND request = ''::bytea "
    "   AND released_at < now() - interval '1 day' LIMIT 500)",
    0};

int store_tombstone_purge(db_t *db) { return db_exec_ok(db, &s_tombstone_purge, NULL); }

static const db_stmt_t s_hold_expired = {
    "pro_hold_expired",
    "SELECT order_id FROM redemption WHERE state = 'redeemed' AND expires_at IS NOT NULL "
    "AND expires_at < now() AND " SUB_APPLIED_PAST("orders", "redemption.expires_at") " "
    "ORDER BY expires_at LIMIT $1",
    1};

int store_hold_expired(db_t *db, int limit, store_code_fn fn, void *arg)
{
    char lim[16];
    const char *p[1] = {lim};

    snprintf(lim, sizeof lim, "%d", limit);
    return db_exec_each(db, &s_hold_expired, p, fn, arg);
}

static const db_stmt_t s_hold_keep = {
    "pro_hold_keep",
    "UPDATE redemption SET expires_at = NULL WHERE order_id = $1 AND expires_at IS NOT NULL "
    "RETURNING 1",
    1};

int store_hold_keep(db_t *db, const char *order_id)
{
    const char *p[1] = {order_id};
    return db_exec_row(db, &s_hold_keep, p);
}

int store_redemption_release(db_t *db, const char *order_id, bool expired_only, store_code_fn fn,
                             void *arg)
{
    const char *p[2] = {order_id, expired_only ? "true" : "false"};

    if (db_exec_ok(db, &s_release_lock, p) != 0)
        return -1;
    PGresult *r = db_exec(db, &s_release, p);
    if (!r)
        return -1;
    int rc = PQntuples(r) > 0 && strcmp(PQgetvalue(r, 0, 0), "1") == 0 ? 0 : 1;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++)
        if (!PQgetisnull(r, i, 1))
            fn(arg, PQgetvalue(r, i, 1));
    PQclear(r);
    return rc;
}
