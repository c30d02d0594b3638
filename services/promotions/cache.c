/* cache: the quote's terms in memory — the active rules compiled for the
 * engine, every SKU the catalog announced and the member tiers — built
 * once per terms version and read by every quote (on the loop thread or a
 * worker), so a quote runs no statement for them.
 *
 * Which version is current comes from PostgreSQL: every change of terms
 * moves rule_version and NOTIFYs promotions_terms with the new number
 * (migration 003); the runtime's listener hands it to cache_notified, and
 * a handler that changed terms itself says so with cache_written once it
 * has committed (so its caller's next quote sees them). While the listener
 * is not connected nothing is known, and cache_wanted tells the caller to
 * read the version itself. A quote that finds its snapshot older than the
 * wanted version builds a new one (one builder at a time; the others wait
 * for it) and swaps it in; quotes still using the old one keep it until
 * they let go (reference counts). Usage and spending are not part of the
 * terms: usage.c keeps them, by another mechanism. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "promotions.h"
#include "slog.h"
#include "util.h"

struct cache_snap {
    int64_t version;
    int refs;               /* holders, plus one while it is the current one */
    arena_t *arena;         /* the rules' and SKUs' strings and arrays */
    eng_rule_t *rules;
    size_t n_rules, cap_rules;
    cache_sku_t *skus;      /* by code (strcmp's order) */
    size_t n_skus, cap_skus;
    uint32_t *sku_index;    /* see cache_view_t */
    size_t sku_index_mask;
    cache_tier_t *tiers;
    size_t n_tiers, cap_tiers;
    /* which rules a SKU or a category brings in, by key; and the rules on
     * the whole order, which every cart meets */
    cache_key_t *sku_keys, *category_keys;
    size_t n_sku_keys, cap_sku_keys, n_category_keys, cap_category_keys;
    uint32_t *order_rules;
    size_t n_order_rules, cap_order_rules;
};

static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;      /* s_current, refs */
static pthread_mutex_t s_build_mu = PTHREAD_MUTEX_INITIALIZER; /* one builder */
static cache_snap_t *s_current;
/* The newest version known to be committed; -1 while the listener is deaf. */
static _Atomic int64_t s_wanted = -1;
static _Atomic int64_t s_known;   /* the newest seen, kept while deaf */

static void *s_alloc(void *ctx, size_t size)
{
    void *p = arena_alloc(ctx, size);

    if (!p)
        abort();   /* as the call arena does: out of memory is not recoverable here */
    return p;
}

static char *s_strdup(arena_t *a, const char *s)
{
    size_t n = strlen(s) + 1;

    return memcpy(s_alloc(a, n), s, n);
}

/* Room for one more element of `size` bytes in *v (malloc'd). */
static void *s_grow(void **v, size_t *n, size_t *cap, size_t size)
{
    if (*n == *cap) {
        size_t more = *cap ? *cap * 2 : 64;
        void *p = realloc(*v, more * size);
        if (!p)
            abort();
        *v = p;
        *cap = more;
    }
    return (char *)*v + (*n)++ * size;
}

static void s_free(cache_snap_t *s)
{
    if (!s)
        return;
    arena_destroy(&s->arena);
    free(s->rules);
    free(s->skus);
    free(s->sku_index);
    free(s->tiers);
    free(s->sku_keys);
    free(s->category_keys);
    free(s->order_rules);
    free(s);
}

static void s_on_rule(void *arg, const store_rule_t *r)
{
    cache_snap_t *s = arg;
    eng_mem_t mem = {s_alloc, s->arena};

    promo_rule_eng(&mem, r, s_grow((void **)&s->rules, &s->n_rules, &s->cap_rules, sizeof *s->rules));
}

static void s_on_sku(void *arg, const store_sku_t *r)
{
    cache_snap_t *s = arg;
    cache_sku_t *k = s_grow((void **)&s->skus, &s->n_skus, &s->cap_skus, sizeof *s->skus);

    k->sku = s_strdup(s->arena, r->sku);
    k->category = s_strdup(s->arena, r->category);
    k->currency = s_strdup(s->arena, r->currency);
    k->list_price = r->list_price;
    k->cost_price = r->cost_price;
    k->active = r->active;
}

static void s_on_tier(void *arg, const char *name, int32_t percent)
{
    cache_snap_t *s = arg;
    cache_tier_t *t = s_grow((void **)&s->tiers, &s->n_tiers, &s->cap_tiers, sizeof *s->tiers);

    t->name = s_strdup(s->arena, name);
    t->percent = percent;
}

static int s_sku_cmp(const void *a, const void *b)
{
    return strcmp(((const cache_sku_t *)a)->sku, ((const cache_sku_t *)b)->sku);
}

static int s_key_cmp(const void *a, const void *b)
{
    const cache_key_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c ? c : (x->rule > y->rule) - (x->rule < y->rule);
}

static void s_key(cache_key_t **v, size_t *n, size_t *cap, const char *key, size_t rule)
{
    cache_key_t *k = s_grow((void **)v, n, cap, sizeof **v);

    k->key = key;
    k->rule = (uint32_t)rule;
}

/* The run of `keys` (sorted) filed under `key`: its first entry and length. */
static void s_run(const cache_key_t *keys, size_t n, const char *key, uint32_t *at, uint32_t *len)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {   /* the first entry not below key */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(keys[mid].key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = (uint32_t)lo;
    for (hi = lo; hi < n && strcmp(keys[hi].key, key) == 0; hi++)
        ;
    *len = (uint32_t)(hi - lo);
}

/* The candidate index: each rule under the SKUs or categories it covers
 * (a bundle under its items), or among the order-wide ones. */
static void s_index(cache_snap_t *s)
{
    for (size_t i = 0; i < s->n_rules; i++) {
        const eng_rule_t *r = &s->rules[i];
        if (r->kind == ENG_BUNDLE) {
            for (size_t k = 0; k < r->n_bundle; k++)
                s_key(&s->sku_keys, &s->n_sku_keys, &s->cap_sku_keys, r->bundle[k].sku, i);
        } else if (r->scope == ENG_ORDER) {
            *(uint32_t *)s_grow((void **)&s->order_rules, &s->n_order_rules, &s->cap_order_rules,
                                sizeof *s->order_rules) = (uint32_t)i;
        } else if (r->scope == ENG_SKUS) {
            for (size_t k = 0; k < r->n_skus; k++)
                s_key(&s->sku_keys, &s->n_sku_keys, &s->cap_sku_keys, r->skus[k], i);
        } else {
            for (size_t k = 0; k < r->n_categories; k++)
                s_key(&s->category_keys, &s->n_category_keys, &s->cap_category_keys, r->categories[k], i);
        }
    }
    if (s->n_sku_keys)
        qsort(s->sku_keys, s->n_sku_keys, sizeof *s->sku_keys, s_key_cmp);
    if (s->n_category_keys)
        qsort(s->category_keys, s->n_category_keys, sizeof *s->category_keys, s_key_cmp);
    for (size_t i = 0; i < s->n_skus; i++) {
        cache_sku_t *k = &s->skus[i];
        s_run(s->sku_keys, s->n_sku_keys, k->sku, &k->sku_key_at, &k->sku_key_n);
        s_run(s->category_keys, s->n_category_keys, k->category, &k->category_key_at,
              &k->category_key_n);
    }
}

/* The SKUs by hash, at most half full: a quote finds each of its lines
 * with one string compare where a binary search of 2,000 took eleven. */
static void s_index_skus(cache_snap_t *s)
{
    size_t cap = 16;

    while (cap < 2 * s->n_skus)
        cap *= 2;
    if (!(s->sku_index = calloc(cap, sizeof *s->sku_index)))
        abort();
    s->sku_index_mask = cap - 1;
    for (size_t i = 0; i < s->n_skus; i++) {
        size_t at = util_hash(UTIL_HASH_BASIS, s->skus[i].sku) & s->sku_index_mask;
        while (s->sku_index[at])
            at = (at + 1) & s->sku_index_mask;
        s->sku_index[at] = (uint32_t)i + 1;
    }
}

/* Labelled with `version`, read before the terms: they are at least that
 * new (a later change moves the version again and is rebuilt for). */
static cache_snap_t *s_build(db_t *db, int64_t version)
{
    cache_snap_t *s = calloc(1, sizeof *s);

    if (!s || !(s->arena = arena_new(64 * 1024))) {
        s_free(s);
        return NULL;
    }
    s->version = version;
    if (store_rule_active(db, s_on_rule, s) != 0 || store_sku_all(db, s_on_sku, s) != 0 ||
        store_tier_list(db, s_on_tier, s) != 0) {
        s_free(s);
        return NULL;
    }
    /* in the engine's order, so a quote's candidates need no sorting */
    if (s->n_rules)
        qsort(s->rules, s->n_rules, sizeof *s->rules, eng_rule_order);
    /* the statement sorts by the database's collation; lookups use strcmp */
    if (s->n_skus)
        qsort(s->skus, s->n_skus, sizeof *s->skus, s_sku_cmp);
    s_index(s);
    s_index_skus(s);
    slog_debug("terms cache: %zu active rules, %zu SKUs, %zu tiers at version %lld", s->n_rules,
               s->n_skus, s->n_tiers, (long long)version);
    return s;
}

/* The current snapshot if it is at least `version` (held), else NULL. */
static cache_snap_t *s_hold(int64_t version)
{
    cache_snap_t *s;

    pthread_mutex_lock(&s_mu);
    s = s_current;
    if (s && s->version >= version)
        s->refs++;
    else
        s = NULL;
    pthread_mutex_unlock(&s_mu);
    return s;
}

cache_snap_t *cache_acquire(db_t *db, int64_t version, cache_view_t *view)
{
    cache_snap_t *s = s_hold(version);

    if (!s && !db)
        return NULL;
    if (!s) {
        pthread_mutex_lock(&s_build_mu);
        /* another quote may have built it while this one waited */
        if (!(s = s_hold(version)) && (s = s_build(db, version)) != NULL) {
            s->refs = 2;   /* the caller, and being current */
            pthread_mutex_lock(&s_mu);
            cache_snap_t *old = s_current;
            s_current = s;
            bool drop = old && --old->refs == 0;
            pthread_mutex_unlock(&s_mu);
            if (drop)
                s_free(old);
        }
        pthread_mutex_unlock(&s_build_mu);
        if (!s)
            return NULL;
    }
    view->rules = s->rules;
    view->n_rules = s->n_rules;
    view->skus = s->skus;
    view->n_skus = s->n_skus;
    view->sku_index = s->sku_index;
    view->sku_index_mask = s->sku_index_mask;
    view->tiers = s->tiers;
    view->n_tiers = s->n_tiers;
    view->sku_keys = s->sku_keys;
    view->n_sku_keys = s->n_sku_keys;
    view->category_keys = s->category_keys;
    view->n_category_keys = s->n_category_keys;
    view->order_rules = s->order_rules;
    view->n_order_rules = s->n_order_rules;
    view->version = s->version;
    return s;
}

void cache_release(cache_snap_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s_mu);
    bool drop = --s->refs == 0;
    pthread_mutex_unlock(&s_mu);
    if (drop)
        s_free(s);
}

const cache_sku_t *cache_sku(const cache_view_t *v, const char *code)
{
    if (!v->sku_index)
        return NULL;
    for (size_t at = util_hash(UTIL_HASH_BASIS, code) & v->sku_index_mask;; at = (at + 1) & v->sku_index_mask) {
        uint32_t k = v->sku_index[at];
        if (!k)
            return NULL;
        if (strcmp(v->skus[k - 1].sku, code) == 0)
            return &v->skus[k - 1];
    }
}

static void s_mark(const cache_key_t *keys, uint32_t at, uint32_t n, bool *mark)
{
    for (uint32_t i = at; i < at + n; i++)
        mark[keys[i].rule] = true;
}

void cache_candidates(const cache_view_t *v, const cache_sku_t *const *skus, size_t n, bool *mark)
{
    memset(mark, 0, v->n_rules * sizeof *mark);
    for (size_t i = 0; i < v->n_order_rules; i++)
        mark[v->order_rules[i]] = true;
    for (size_t i = 0; i < n; i++) {
        s_mark(v->sku_keys, skus[i]->sku_key_at, skus[i]->sku_key_n, mark);
        s_mark(v->category_keys, skus[i]->category_key_at, skus[i]->category_key_n, mark);
    }
}

const cache_tier_t *cache_tier(const cache_view_t *v, const char *name)
{
    for (size_t i = 0; i < v->n_tiers; i++)
        if (strcmp(v->tiers[i].name, name) == 0)
            return &v->tiers[i];
    return NULL;
}

/* --- which version is current ------------------------------------------------ */

static void s_raise(_Atomic int64_t *v, int64_t to)
{
    int64_t cur = atomic_load(v);

    while (cur < to && !atomic_compare_exchange_weak(v, &cur, to))
        ;
}

/* The same for s_wanted, which -1 marks deaf: left alone then, in the same
 * compare-and-swap (a check before it could miss the listener going deaf
 * in between, and mark the cache current while nobody listens). */
static void s_raise_heard(_Atomic int64_t *v, int64_t to)
{
    int64_t cur = atomic_load(v);

    while (cur >= 0 && cur < to && !atomic_compare_exchange_weak(v, &cur, to))
        ;
}

int64_t cache_wanted(void) { return atomic_load(&s_wanted); }

void cache_notified(db_t *db, const char *payload)
{
    if (!db) {   /* deaf from now on: quotes read the version themselves */
        atomic_store(&s_wanted, -1);
        return;
    }
    if (payload) {
        char *end;
        long long v = strtoll(payload, &end, 10);
        if (*end || v < 0) {
            slog_warn("terms cache: notification '%s' is not a version; ignored", payload);
            return;
        }
        s_raise(&s_known, v);
        s_raise_heard(&s_wanted, v);
        return;
    }
    /* listening again: what was missed is in the table */
    int64_t v;
    if (store_rule_version(db, &v) != 0) {
        slog_warn("terms cache: cannot read the version: %s", db_error(db));
        return;   /* stays deaf; the listener reconnects if the connection went */
    }
    s_raise(&s_known, v);
    atomic_store(&s_wanted, atomic_load(&s_known));
}

int cache_written(call_t *call)
{
    int64_t v;

    if (store_rule_version(call_db(call), &v) != 0 || call_commit(call) != 0)
        return -1;
    s_raise(&s_known, v);
    s_raise_heard(&s_wanted, v);
    return 0;
}
