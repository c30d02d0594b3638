/* util: clocks and identifiers used across the runtime. */
#ifndef SHOP_UTIL_H
#define SHOP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall clock, UTC milliseconds since the epoch. */
int64_t util_now_ms(void);

/* Monotonic clock in microseconds, for latencies and timeouts. */
int64_t util_mono_us(void);

/* Writes a random UUIDv4 in canonical text form into out[37]. */
void util_uuid(char out[37]);

/* True if `s` is 1 to `max` of A-Z a-z 0-9 . _ - (SKU codes, rule codes). */
bool util_valid_code(const char *s, size_t max);

#endif
