/* util: clocks, sleeps and identifiers used across the runtime. */
#ifndef SHOP_UTIL_H
#define SHOP_UTIL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall clock, UTC milliseconds since the epoch. */
int64_t util_now_ms(void);

/* Monotonic clock in microseconds, for latencies and timeouts. */
int64_t util_mono_us(void);

/* The same in milliseconds. */
int64_t util_mono_ms(void);

/* Sleeps `ms` milliseconds (resumed after a signal). */
void util_sleep_ms(int64_t ms);

/* Sleeps up to `ms` in steps of at most 50 ms, returning early once *stop
 * is set: how a runtime thread waits and still stops promptly. */
void util_nap_ms(const atomic_bool *stop, int64_t ms);

/* Names the calling thread (what top -H, ps -L, gdb and perf show): the
 * formatted name, cut to the kernel's 15 characters. */
void util_thread_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes a random UUIDv4 in canonical text form into out[37]. */
void util_uuid(char out[37]);

/* True if `s` is 1 to `max` of A-Z a-z 0-9 . _ - (SKU codes, rule codes). */
bool util_valid_code(const char *s, size_t max);

/* FNV-1a of a string, for hash tables: start from UTIL_HASH_BASIS, or
 * another basis to keep two kinds of key apart. */
#define UTIL_HASH_BASIS 2166136261u
uint32_t util_hash(uint32_t basis, const char *s);

/* snprintf for hot paths, without stdio: only %s, %d, %ld, %lld, %u, %lu,
 * %llu, %zu and %% (anything else is written as '?'; PRId64 and PRIu64
 * are among them). Like snprintf it writes at most
 * len - 1 characters and a NUL (if len > 0) and returns the length the
 * whole text would have. A promotions quote formats a reason for each of
 * its candidate rules: through stdio that was a fifth of its CPU. */
size_t util_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
size_t util_vfmt(char *buf, size_t len, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
