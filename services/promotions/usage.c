/* usage: the coupons and the use counts of capped or budgeted rules that
 * quotes read, in memory (see promotions.h). Entries sit in one array,
 * their strings in one text pool, found through an open-addressing index
 * of entry numbers: three allocations whatever the count (10,000 coupons
 * take about 1 MiB), all under one mutex, a lookup copying out what it
 * needs. Entries are never removed one by one; a full table starts over. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promotions.h"
#include "slog.h"
#include "util.h"

#define USAGE_MAX 65536      /* entries; a full table starts over */
#define REFRESH_SLICE 1000   /* codes per statement of a refresh, read at once */

typedef struct {
    uint32_t hash;
    uint32_t gen;         /* of its last put or forget: a refresh read before does not count */
    uint32_t code, customer;   /* offsets into s_text */
    int32_t used;
    int32_t percent_off, total_limit, per_customer_limit;
    int64_t spent;        /* a rule's */
    int64_t amount_off, min_spend, starts_ms, ends_ms;   /* a coupon's terms, which never change */
    char currency[4];
    bool coupon;
    bool known;           /* false: forgotten (used since), read it again */
    bool percent;
} entry_t;

static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static entry_t *s_entries;
static size_t s_n, s_cap_entries;
static uint32_t *s_index;   /* entry number + 1, 0 = empty; a power of two, at most half full */
static size_t s_cap;
static char *s_text;        /* "" at offset 0, then the codes and customers */
static size_t s_text_len, s_text_cap;
static uint32_t s_gen;      /* moves at every put and forget */

static uint32_t s_hash(bool coupon, const char *code)
{
    return util_hash(coupon ? UTIL_HASH_BASIS : UTIL_HASH_BASIS + 2, code);   /* seeded by kind */
}

/* The index slot of (coupon, code): its entry's, or the empty one it would take. */
static uint32_t *s_slot(const uint32_t *index, size_t cap, bool coupon, const char *code, uint32_t h)
{
    for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        uint32_t k = index[i];
        if (!k)
            return (uint32_t *)&index[i];
        const entry_t *e = &s_entries[k - 1];
        if (e->hash == h && e->coupon == coupon && strcmp(s_text + e->code, code) == 0)
            return (uint32_t *)&index[i];
    }
}

static void s_clear(void)
{
    free(s_entries);
    free(s_index);
    free(s_text);
    s_entries = NULL;
    s_index = NULL;
    s_text = NULL;
    s_n = s_cap_entries = s_cap = s_text_len = s_text_cap = 0;
}

/* Room for `more` bytes of text and one more entry; false when out of memory. */
static bool s_room(size_t more)
{
    if (s_text_len + more > s_text_cap) {
        size_t cap = s_text_cap ? s_text_cap : 16384;
        while (s_text_len + more > cap)
            cap *= 2;
        char *t = realloc(s_text, cap);
        if (!t)
            return false;
        if (!s_text_len)
            t[s_text_len++] = '\0';
        s_text = t;
        s_text_cap = cap;
    }
    if (s_n == s_cap_entries) {
        size_t cap = s_cap_entries ? s_cap_entries * 2 : 256;
        entry_t *e = realloc(s_entries, cap * sizeof *e);
        if (!e)
            return false;
        s_entries = e;
        s_cap_entries = cap;
    }
    if ((s_n + 1) * 2 > s_cap) {
        size_t cap = s_cap ? s_cap * 2 : 1024;
        uint32_t *index = calloc(cap, sizeof *index);
        if (!index)
            return false;
        for (size_t i = 0; i < s_n; i++)
            *s_slot(index, cap, s_entries[i].coupon, s_text + s_entries[i].code, s_entries[i].hash) =
                (uint32_t)i + 1;
        free(s_index);
        s_index = index;
        s_cap = cap;
    }
    return true;
}

static uint32_t s_add_text(const char *t)
{
    size_t len = strlen(t) + 1;
    uint32_t at = (uint32_t)s_text_len;

    if (len == 1)
        return 0;
    memcpy(s_text + s_text_len, t, len);
    s_text_len += len;
    return at;
}

/* The entry of (coupon, code), made if new (with `customer`); NULL when out
 * of memory. Called with s_mu held. */
static entry_t *s_put(bool coupon, const char *code, const char *customer)
{
    uint32_t h = s_hash(coupon, code);

    if (s_n >= USAGE_MAX) {
        slog_info("usage cache: %zu entries, starting over", s_n);
        s_clear();
    }
    if (s_cap) {
        uint32_t k = *s_slot(s_index, s_cap, coupon, code, h);
        if (k)
            return &s_entries[k - 1];
    }
    if (!s_room(strlen(code) + strlen(customer) + 3))
        return NULL;
    entry_t *e = &s_entries[s_n];
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->coupon = coupon;
    e->code = s_add_text(code);
    e->customer = s_add_text(customer);
    *s_slot(s_index, s_cap, coupon, code, h) = (uint32_t)++s_n;
    return e;
}

/* The entry of (coupon, code), or NULL. Called with s_mu held. */
static entry_t *s_find(bool coupon, const char *code)
{
    if (!s_cap)
        return NULL;
    uint32_t k = *s_slot(s_index, s_cap, coupon, code, s_hash(coupon, code));
    return k ? &s_entries[k - 1] : NULL;
}

uint32_t usage_mark(void)
{
    pthread_mutex_lock(&s_mu);
    uint32_t gen = s_gen;
    pthread_mutex_unlock(&s_mu);
    return gen;
}

/* The entry a read started at `mark` may write: (coupon, code)'s, made if
 * new; NULL if it was put or forgotten after `mark` (generations wrap:
 * compared as a difference) or out of memory. Called with s_mu held. */
static entry_t *s_put_since(bool coupon, const char *code, const char *customer, uint32_t mark)
{
    entry_t *e = s_find(coupon, code);

    if (e)
        return (int32_t)(e->gen - mark) > 0 ? NULL : e;
    return s_put(coupon, code, customer);
}

void usage_coupon_put(const store_coupon_t *c, uint32_t mark)
{
    pthread_mutex_lock(&s_mu);
    entry_t *e = s_put_since(true, c->code, c->customer_id, mark);
    if (e) {
        e->known = true;
        e->gen = ++s_gen;
        e->used = c->used;
        e->percent = strcmp(c->kind, "percent_off") == 0;
        snprintf(e->currency, sizeof e->currency, "%s", c->currency);
        e->percent_off = c->percent_off;
        e->total_limit = c->total_limit;
        e->per_customer_limit = c->per_customer_limit;
        e->amount_off = c->amount_off;
        e->min_spend = c->min_spend;
        e->starts_ms = c->starts_ms;
        e->ends_ms = c->ends_ms;
    }
    pthread_mutex_unlock(&s_mu);
}

bool usage_coupon_get(call_t *call, const char *code, const char *customer_id, eng_coupon_t *out)
{
    bool got = false;

    pthread_mutex_lock(&s_mu);
    const entry_t *e = s_find(true, code);
    /* a per-customer limit needs the customer's uses, which only the
     * database has */
    if (e && e->known && !(e->per_customer_limit && customer_id[0])) {
        memset(out, 0, sizeof *out);
        out->code = call_strdup(call, s_text + e->code);
        out->currency = call_strdup(call, e->currency);
        out->customer_id = call_strdup(call, s_text + e->customer);
        out->percent = e->percent;
        out->percent_off = e->percent_off;
        out->amount_off = e->amount_off;
        out->min_spend = e->min_spend;
        out->starts_ms = e->starts_ms;
        out->ends_ms = e->ends_ms;
        out->total_limit = e->total_limit;
        out->per_customer_limit = e->per_customer_limit;
        out->used = e->used;
        got = true;
    }
    pthread_mutex_unlock(&s_mu);
    return got;
}

void usage_rule_put(const char *code, int32_t used, int64_t spent, uint32_t mark)
{
    pthread_mutex_lock(&s_mu);
    entry_t *e = s_put_since(false, code, "", mark);
    if (e) {
        e->known = true;
        e->gen = ++s_gen;
        e->used = used;
        e->spent = spent;
    }
    pthread_mutex_unlock(&s_mu);
}

bool usage_rule_get(const char *code, int32_t *used, int64_t *spent)
{
    pthread_mutex_lock(&s_mu);
    const entry_t *e = s_find(false, code);
    bool got = e && e->known;
    if (got) {
        *used = e->used;
        *spent = e->spent;
    }
    pthread_mutex_unlock(&s_mu);
    return got;
}

void usage_forget(bool coupon, const char *code)
{
    pthread_mutex_lock(&s_mu);
    entry_t *e = s_find(coupon, code);
    if (e) {
        e->known = false;
        e->gen = ++s_gen;
    }
    pthread_mutex_unlock(&s_mu);
}

/* --- the refresh ------------------------------------------------------------ */

typedef struct {
    const char *code;   /* in the batch's text */
    uint32_t gen;
} seen_t;

typedef struct {
    seen_t *seen;       /* by code */
    const char **codes;
    char *text;
    size_t n;
} batch_t;

static void s_batch_free(batch_t *b)
{
    free(b->seen);
    free(b->codes);
    free(b->text);
}

static size_t s_n_now(void)
{
    pthread_mutex_lock(&s_mu);
    size_t n = s_n;
    pthread_mutex_unlock(&s_mu);
    return n;
}

static int s_seen_cmp(const void *a, const void *b)
{
    return strcmp(((const seen_t *)a)->code, ((const seen_t *)b)->code);
}

static bool s_counted(const entry_t *e, bool coupon)
{
    return e->known && e->coupon == coupon && (!coupon || e->total_limit);
}

/* The codes of up to REFRESH_SLICE known entries of one kind (a coupon
 * only if a limit makes its count matter) from entry *from on, with their
 * generations, sorted; *from moves past them. 0, or -1 out of memory. A
 * slice at a time keeps a refresh's memory small whatever the count (all
 * 10,000 of the bench's coupons at once took 280 KiB of heap). */
static int s_collect(bool coupon, size_t *from, batch_t *b)
{
    size_t len = 0, end;
    int rc = 0;

    memset(b, 0, sizeof *b);
    pthread_mutex_lock(&s_mu);
    for (end = *from; end < s_n && b->n < REFRESH_SLICE; end++)
        if (s_counted(&s_entries[end], coupon)) {
            len += strlen(s_text + s_entries[end].code) + 1;
            b->n++;
        }
    if (b->n && (!(b->seen = malloc(b->n * sizeof *b->seen)) || !(b->text = malloc(len))))
        rc = -1;
    size_t k = 0;
    char *t = b->text;
    for (size_t i = *from; rc == 0 && i < end; i++) {
        const entry_t *e = &s_entries[i];
        if (!s_counted(e, coupon))
            continue;
        size_t l = strlen(s_text + e->code) + 1;
        memcpy(t, s_text + e->code, l);
        b->seen[k].code = t;
        b->seen[k++].gen = e->gen;
        t += l;
    }
    pthread_mutex_unlock(&s_mu);
    *from = end;
    if (rc != 0) {
        b->n = 0;
        return -1;
    }
    if (b->n) {
        qsort(b->seen, b->n, sizeof *b->seen, s_seen_cmp);
        if (!(b->codes = malloc(b->n * sizeof *b->codes)))
            return -1;
        for (size_t i = 0; i < b->n; i++)
            b->codes[i] = b->seen[i].code;
    }
    return 0;
}

/* Writes a count read by the refresh, unless the entry was forgotten or
 * dropped since its code was collected (the read may predate that use). */
static void s_refreshed(batch_t *b, bool coupon, const char *code, int32_t used, int64_t spent)
{
    seen_t key = {code, 0};
    const seen_t *s = bsearch(&key, b->seen, b->n, sizeof *b->seen, s_seen_cmp);

    if (!s)
        return;
    pthread_mutex_lock(&s_mu);
    entry_t *e = s_find(coupon, code);
    if (e && e->known && e->gen == s->gen) {
        e->used = used;
        e->spent = spent;
    }
    pthread_mutex_unlock(&s_mu);
}

static void s_on_rule(void *arg, const char *code, int32_t used, int64_t spent)
{
    s_refreshed(arg, false, code, used, spent);
}

static void s_on_coupon(void *arg, const char *code, int32_t used, int64_t spent)
{
    (void)spent;
    s_refreshed(arg, true, code, used, 0);
}

int usage_refresh(db_t *db, void *settings)
{
    (void)settings;
    for (int coupon = 0; coupon < 2; coupon++) {
        size_t from = 0;
        int rc = 0;
        do {
            batch_t b;
            rc = s_collect(coupon, &from, &b);
            if (rc == 0 && b.n)
                rc = coupon ? store_coupon_used(db, b.codes, b.n, s_on_coupon, &b)
                            : store_rule_usage(db, b.codes, b.n, s_on_rule, &b);
            s_batch_free(&b);
        } while (rc == 0 && from < s_n_now());
        if (rc != 0)
            return -1;
    }
    return 0;
}
