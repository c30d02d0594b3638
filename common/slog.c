/* slog: JSON-lines logging to stderr, one write(2) per line. */
#include "slog.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096

static const char *s_service = "shop";
static atomic_int s_min = SLOG_INFO;
static const char *const s_level_names[] = {"debug", "info", "warn", "error"};

void slog_init(const char *service, slog_level_t min_level)
{
    s_service = service;
    atomic_store(&s_min, (int)min_level);
}

bool slog_parse_level(const char *text, slog_level_t *out)
{
    for (int i = SLOG_DEBUG; i <= SLOG_ERROR; i++) {
        if (strcmp(text, s_level_names[i]) == 0) {
            *out = (slog_level_t)i;
            return true;
        }
    }
    return false;
}

/* A line being built; `full` once it ran out of room. */
typedef struct {
    char buf[LINE_MAX_BYTES];
    size_t len;
    bool full;
} line_t;

static void s_raw(line_t *l, const char *s, size_t n)
{
    /* keep room for the "…\"}\n" ending */
    const size_t limit = sizeof l->buf - 8;

    if (l->full)
        return;
    if (l->len + n > limit) {
        l->full = true;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void s_str(line_t *l, const char *s)
{
    s_raw(l, s, strlen(s));
}

/* Appends `s` JSON-escaped. */
static void s_esc(line_t *l, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p && !l->full; p++) {
        char tmp[8];
        switch (*p) {
        case '"': s_raw(l, "\\\"", 2); break;
        case '\\': s_raw(l, "\\\\", 2); break;
        case '\n': s_raw(l, "\\n", 2); break;
        case '\r': s_raw(l, "\\r", 2); break;
        case '\t': s_raw(l, "\\t", 2); break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                snprintf(tmp, sizeof tmp, "\\u%04x", *p);
                s_raw(l, tmp, 6);
            } else {
                s_raw(l, (const char *)p, 1);
            }
        }
    }
}

static void s_emit(slog_level_t level, const char *request_id, const char *method, const char *fmt,
                   va_list ap)
{
    line_t l;
    char msg[LINE_MAX_BYTES];
    char ts[40];
    struct timeval tv;
    struct tm tm;

    if ((int)level < atomic_load(&s_min))
        return;
    l.len = 0;
    l.full = false;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    vsnprintf(msg, sizeof msg, fmt, ap);

    s_str(&l, "{\"ts\":\"");
    s_str(&l, ts);
    s_str(&l, "\",\"level\":\"");
    s_str(&l, s_level_names[level]);
    s_str(&l, "\",\"service\":\"");
    s_esc(&l, s_service);
    s_str(&l, "\"");
    if (request_id) {
        s_str(&l, ",\"request_id\":\"");
        s_esc(&l, request_id);
        s_str(&l, "\",\"method\":\"");
        s_esc(&l, method ? method : "");
        s_str(&l, "\"");
    }
    s_str(&l, ",\"msg\":\"");
    s_esc(&l, msg);
    if (l.full) {
        /* drop a trailing partial escape, then mark the cut */
        while (l.len > 0 && l.buf[l.len - 1] == '\\')
            l.len--;
        memcpy(l.buf + l.len, "\xe2\x80\xa6", 3);
        l.len += 3;
    }
    memcpy(l.buf + l.len, "\"}\n", 3);
    l.len += 3;
    ssize_t w = write(STDERR_FILENO, l.buf, l.len);
    (void)w;
}

void slog_write(slog_level_t level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    s_emit(level, NULL, NULL, fmt, ap);
    va_end(ap);
}

void slog_call(slog_level_t level, const char *request_id, const char *method, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    s_emit(level, request_id ? request_id : "", method, fmt, ap);
    va_end(ap);
}
