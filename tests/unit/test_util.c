/* test_util: UUID format and uniqueness, clocks, the call arena, and
 * util_fmt against snprintf. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "check.h"
#include "util.h"

int main(void)
{
    char a[37], b[37];

    util_uuid(a);
    util_uuid(b);
    CHECK_INT(strlen(a), 36);
    CHECK(strcmp(a, b) != 0);
    CHECK(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
    CHECK(a[14] == '4');
    CHECK(strchr("89ab", a[19]) != NULL);
    CHECK(strspn(a, "0123456789abcdef-") == 36);

    /* util_fmt writes and counts as snprintf does, for what it supports */
    char f1[160], f2[160], tiny[8];
    long long big_ll = LLONG_MIN;
    size_t n1 = util_fmt(f1, sizeof f1, "%s: %d%% off, %lld left of %ld (%zu, %u) %s %llu %lu", "SALE-1", -42,
                         big_ll, (long)LONG_MAX, (size_t)7, 4000000000u, "", ULLONG_MAX, 0ul);
    int n2 = snprintf(f2, sizeof f2, "%s: %d%% off, %lld left of %ld (%zu, %u) %s %llu %lu", "SALE-1", -42,
                      big_ll, (long)LONG_MAX, (size_t)7, 4000000000u, "", ULLONG_MAX, 0ul);
    CHECK_STR(f1, f2);
    CHECK_INT(n1, n2);
    CHECK_INT(util_fmt(tiny, sizeof tiny, "%s-%d", "ABCDEF", 12345), 12);   /* cut, counted */
    CHECK_STR(tiny, "ABCDEF-");
    /* cut at every length, inside literal text, a string and a number */
    bool same = true;
    for (size_t len = 1; len <= 40; len++) {
        char c1[48], c2[48];
        memset(c1, 'Z', sizeof c1);
        memset(c2, 'Z', sizeof c2);
        size_t na = util_fmt(c1, len, "off %s by %lld%% at %s!", "RULE-7", -1234567LL, "");
        int nb = snprintf(c2, len, "off %s by %lld%% at %s!", "RULE-7", -1234567LL, "");
        same = same && na == (size_t)nb && memcmp(c1, c2, sizeof c1) == 0;
    }
    CHECK(same);
    CHECK_INT(util_fmt(tiny, 0, "%d", 5), 1);                               /* nothing written */
    CHECK_INT(util_fmt(tiny, sizeof tiny, "%d", 0), 1);
    CHECK_STR(tiny, "0");

    int64_t t0 = util_mono_us(), t1 = util_mono_us();
    CHECK(t1 >= t0);
    CHECK(util_now_ms() > 1700000000000LL);

    arena_t *ar = arena_new(1024);
    CHECK(ar != NULL);
    char *p = arena_alloc(ar, 10), *q = arena_alloc(ar, 10);
    CHECK(p && q && q - p >= 10 && ((uintptr_t)q % 16) == 0);
    char *big = arena_alloc(ar, 100000);   /* larger than a chunk */
    CHECK(big != NULL && big[99999] == 0);
    memset(big, 1, 100000);
    arena_reset(ar);
    char *r = arena_alloc(ar, 10);
    CHECK(r == p);   /* the first chunk is reused */
    arena_destroy(&ar);
    CHECK(ar == NULL);
    return check_done();
}
