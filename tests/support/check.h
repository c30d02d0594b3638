/* check: the few assertion macros the unit and integration tests use. Each
 * failed check prints where and what, and the test exits 1 at check_done(). */
#ifndef SHOP_CHECK_H
#define SHOP_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int check_failed_ = 0;
static int check_passed_ = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            check_passed_++;                                                         \
        } else {                                                                     \
            check_failed_++;                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_INT(a, b)                                                                       \
    do {                                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                                   \
        if (a_ == b_) {                                                                       \
            check_passed_++;                                                                  \
        } else {                                                                              \
            check_failed_++;                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,       \
                    __LINE__, #a, #b, a_, b_);                                                \
        }                                                                                     \
    } while (0)

#define CHECK_STR(a, b)                                                                       \
    do {                                                                                      \
        const char *a_ = (a), *b_ = (b);                                                      \
        if (a_ && b_ && strcmp(a_, b_) == 0) {                                                \
            check_passed_++;                                                                  \
        } else {                                                                              \
            check_failed_++;                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__,   \
                    __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                \
        }                                                                                     \
    } while (0)

/* Prints "N passed, N failed" and returns the exit status for main. */
#define check_done()                                                                     \
    (printf("%d passed, %d failed\n", check_passed_, check_failed_), check_failed_ ? 1 : 0)

#endif
