/* util: clocks, sleeps, UUIDs and code checks. */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t util_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void util_thread_name(const char *fmt, ...)
{
    char name[16];
    va_list ap;

    va_start(ap, fmt);
    util_vfmt(name, sizeof name, fmt, ap);
    va_end(ap);
    pthread_setname_np(pthread_self(), name);
}

void util_uuid(char out[37])
{
    unsigned char b[16];
    size_t got = 0;

    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);   /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

uint32_t util_hash(uint32_t basis, const char *s)
{
    uint32_t h = basis;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

bool util_valid_code(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n < 1 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int64_t util_mono_ms(void)
{
    return util_mono_us() / 1000;
}

void util_sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

void util_nap_ms(const atomic_bool *stop, int64_t ms)
{
    while (ms > 0 && !atomic_load(stop)) {
        int64_t step = ms < 50 ? ms : 50;
        util_sleep_ms(step);
        ms -= step;
    }
}

/* Appends the k characters at s, counting them whether or not they fit. */
static inline void s_put_n(char *buf, size_t len, size_t *n, const char *s, size_t k)
{
    if (*n + 1 < len) {
        size_t room = len - 1 - *n;
        memcpy(buf + *n, s, k < room ? k : room);
    }
    *n += k;
}

static void s_put_unsigned(char *buf, size_t len, size_t *n, unsigned long long v)
{
    char digits[24];
    int k = (int)sizeof digits;

    do
        digits[--k] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    s_put_n(buf, len, n, digits + k, sizeof digits - (size_t)k);
}

static void s_put_signed(char *buf, size_t len, size_t *n, long long v)
{
    if (v < 0) {
        s_put_n(buf, len, n, "-", 1);
        s_put_unsigned(buf, len, n, (unsigned long long)0 - (unsigned long long)v);
    } else {
        s_put_unsigned(buf, len, n, (unsigned long long)v);
    }
}

/* Text and arguments are copied a run at a time: quotes format a reason for
 * each of a hundred promotions (bench/promotions-run), and a character at
 * a time made this a tenth of a quote's CPU. */
size_t util_vfmt(char *buf, size_t len, const char *fmt, va_list ap)
{
    size_t n = 0;

    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            const char *run = p;
            while (p[1] && p[1] != '%')
                p++;
            s_put_n(buf, len, &n, run, (size_t)(p - run) + 1);
            continue;
        }
        p++;
        if (*p == '%') {
            s_put_n(buf, len, &n, "%", 1);
        } else if (*p == 's') {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            s_put_n(buf, len, &n, s, strlen(s));
        } else if (*p == 'd') {
            s_put_signed(buf, len, &n, va_arg(ap, int));
        } else if (*p == 'u') {
            s_put_unsigned(buf, len, &n, va_arg(ap, unsigned));
        } else if (p[0] == 'l' && p[1] == 'd') {
            s_put_signed(buf, len, &n, va_arg(ap, long));
            p++;
        } else if (p[0] == 'l' && p[1] == 'l' && p[2] == 'd') {
            s_put_signed(buf, len, &n, va_arg(ap, long long));
            p += 2;
        } else if (p[0] == 'l' && p[1] == 'u') {
            s_put_unsigned(buf, len, &n, va_arg(ap, unsigned long));
            p++;
        } else if (p[0] == 'l' && p[1] == 'l' && p[2] == 'u') {
            s_put_unsigned(buf, len, &n, va_arg(ap, unsigned long long));
            p += 2;
        } else if (p[0] == 'z' && p[1] == 'u') {
            s_put_unsigned(buf, len, &n, va_arg(ap, size_t));
            p++;
        } else {
            s_put_n(buf, len, &n, "?", 1);
            if (!*p)
                break;
        }
    }
    if (len > 0)
        buf[n < len ? n : len - 1] = '\0';
    return n;
}

size_t util_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    size_t n = util_vfmt(buf, len, fmt, ap);
    va_end(ap);
    return n;
}
