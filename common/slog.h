/* slog: levelled logging, one JSON object per line on stderr. */
#ifndef SHOP_SLOG_H
#define SHOP_SLOG_H

#include <stdbool.h>

typedef enum { SLOG_DEBUG, SLOG_INFO, SLOG_WARN, SLOG_ERROR } slog_level_t;

/* Sets the service name written in every line and the lowest level written.
 * Call once at start-up, before any thread logs. */
void slog_init(const char *service, slog_level_t min_level);

/* Parses "debug", "info", "warn" or "error"; false if it is none of them. */
bool slog_parse_level(const char *text, slog_level_t *out) __attribute__((warn_unused_result));

/* Writes {"ts":"…","level":"…","service":"…","msg":"…"} as one line. The
 * message is printf-formatted and JSON-escaped. Thread-safe: one write(2)
 * per line. */
void slog_write(slog_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same, with the request's context: "request_id" and "method" fields. */
void slog_call(slog_level_t level, const char *request_id, const char *method, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define slog_debug(...) slog_write(SLOG_DEBUG, __VA_ARGS__)
#define slog_info(...)  slog_write(SLOG_INFO, __VA_ARGS__)
#define slog_warn(...)  slog_write(SLOG_WARN, __VA_ARGS__)
#define slog_error(...) slog_write(SLOG_ERROR, __VA_ARGS__)

#endif
