/* cache: the active rules' terms, compiled once per rule version and read
 * by every worker's quotes. A change of any rule's terms moves rule_version
 * (a trigger); the next quote that sees the new version builds a new
 * snapshot and swaps it in, while quotes still using the old one keep it
 * until they let go (reference counts, so no reader ever waits for a
 * reload). Usage and spending are never cached: quote.c reads them fresh
 * for the rules it considers. Redeem does not use the cache at all. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "promotions.h"
#include "slog.h"

struct cache_snap {
    int64_t version;
    int refs;               /* holders, plus one while it is the current one */
    arena_t *arena;         /* the rules' strings and arrays */
    eng_rule_t *rules;
    size_t n, cap;
};

static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static cache_snap_t *s_current;

static void *s_alloc(void *ctx, size_t size)
{
    void *p = arena_alloc(ctx, size);

    if (!p)
        abort();   /* as the call arena does: out of memory is not recoverable here */
    return p;
}

static void s_free(cache_snap_t *s)
{
    if (!s)
        return;
    arena_destroy(&s->arena);
    free(s->rules);
    free(s);
}

typedef struct {
    cache_snap_t *snap;
    promo_mem_t mem;
} build_t;

static void s_on_rule(void *arg, const store_rule_t *r)
{
    build_t *b = arg;
    cache_snap_t *s = b->snap;

    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        eng_rule_t *more = realloc(s->rules, cap * sizeof *more);
        if (!more)
            abort();
        s->rules = more;
        s->cap = cap;
    }
    promo_rule_eng(&b->mem, r, &s->rules[s->n++]);
}

static cache_snap_t *s_build(db_t *db, int64_t version)
{
    cache_snap_t *s = calloc(1, sizeof *s);
    build_t b = {s, {s_alloc, NULL}};

    if (!s || !(s->arena = arena_new(64 * 1024))) {
        s_free(s);
        return NULL;
    }
    b.mem.ctx = s->arena;
    s->version = version;
    if (store_rule_active(db, s_on_rule, &b) != 0) {
        s_free(s);
        return NULL;
    }
    slog_debug("rule cache: %zu active rules at version %lld", s->n, (long long)version);
    return s;
}

cache_snap_t *cache_acquire(db_t *db, int64_t version, const eng_rule_t **rules, size_t *n)
{
    cache_snap_t *s;

    pthread_mutex_lock(&s_mu);
    s = s_current;
    if (s && s->version >= version)
        s->refs++;
    else
        s = NULL;
    pthread_mutex_unlock(&s_mu);
    if (!s) {
        /* built outside the lock; if two quotes race, the later swap wins */
        if (!(s = s_build(db, version)))
            return NULL;
        s->refs = 2;   /* the caller, and being current */
        pthread_mutex_lock(&s_mu);
        cache_snap_t *old = s_current;
        s_current = s;
        bool drop = old && --old->refs == 0;
        pthread_mutex_unlock(&s_mu);
        if (drop)
            s_free(old);
    }
    *rules = s->rules;
    *n = s->n;
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
