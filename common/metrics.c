/* metrics: atomic counters and histograms rendered as Prometheus text. */
#include "metrics.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double s_bounds[] = {.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5};
#define N_BOUNDS (sizeof s_bounds / sizeof s_bounds[0])

typedef struct {
    char *name;
    _Atomic uint64_t by_code[STATUS_COUNT];
    _Atomic uint64_t buckets[N_BOUNDS + 1];   /* not cumulative; last is +Inf */
    _Atomic uint64_t sum_us;
    _Atomic uint64_t count;
} method_t;

typedef struct {
    char *name;
    _Atomic uint64_t applied, cursor, head, errors;
} stream_t;

typedef struct {
    char *kind;
    _Atomic uint64_t count;
} anomaly_t;

struct metrics {
    char *service;
    anomaly_t *anomalies;
    size_t n_anomalies;
    method_t *methods;   /* n_methods + 1: the last is "unknown" */
    size_t n_methods;
    stream_t *streams;
    size_t n_streams;
    _Atomic uint64_t published, outbox_head;
    _Atomic int64_t relay_lag_ms;
    _Atomic uint64_t connections;
    _Atomic uint64_t unflushed;
    bool intake;
    _Atomic uint64_t dropped[METRICS_DROP_KINDS];
};

metrics_t *metrics_new(const char *service, const char *const *methods, size_t n_methods,
                       const char *const *streams, size_t n_streams)
{
    metrics_t *m = calloc(1, sizeof *m);

    if (!m)
        return NULL;
    m->service = strdup(service);
    m->methods = calloc(n_methods + 1, sizeof *m->methods);
    m->streams = calloc(n_streams + 1, sizeof *m->streams);
    m->n_methods = n_methods;
    m->n_streams = n_streams;
    if (!m->service || !m->methods || !m->streams)
        goto fail;
    for (size_t i = 0; i <= n_methods; i++)
        if (!(m->methods[i].name = strdup(i < n_methods ? methods[i] : "unknown")))
            goto fail;
    for (size_t i = 0; i < n_streams; i++)
        if (!(m->streams[i].name = strdup(streams[i])))
            goto fail;
    return m;
fail:
    metrics_destroy(&m);
    return NULL;
}

void metrics_destroy(metrics_t **p)
{
    metrics_t *m = p ? *p : NULL;

    if (!m)
        return;
    if (m->methods)
        for (size_t i = 0; i <= m->n_methods; i++)
            free(m->methods[i].name);
    if (m->streams)
        for (size_t i = 0; i < m->n_streams; i++)
            free(m->streams[i].name);
    for (size_t i = 0; i < m->n_anomalies; i++)
        free(m->anomalies[i].kind);
    free(m->anomalies);
    free(m->methods);
    free(m->streams);
    free(m->service);
    free(m);
    *p = NULL;
}

void metrics_request(metrics_t *m, size_t method_index, status_t code, int64_t latency_us)
{
    method_t *mt = &m->methods[method_index < m->n_methods ? method_index : m->n_methods];
    size_t b = 0;
    double s = (double)(latency_us < 0 ? 0 : latency_us) / 1e6;

    if ((int)code < 0 || (int)code >= STATUS_COUNT)
        code = STATUS_UNKNOWN;
    atomic_fetch_add_explicit(&mt->by_code[code], 1, memory_order_relaxed);
    while (b < N_BOUNDS && s > s_bounds[b])
        b++;
    atomic_fetch_add_explicit(&mt->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&mt->sum_us, (uint64_t)(latency_us < 0 ? 0 : latency_us),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&mt->count, 1, memory_order_relaxed);
}

void metrics_published(metrics_t *m, uint64_t count, uint64_t head, int64_t lag_ms)
{
    atomic_fetch_add_explicit(&m->published, count, memory_order_relaxed);
    atomic_store_explicit(&m->outbox_head, head, memory_order_relaxed);
    atomic_store_explicit(&m->relay_lag_ms, lag_ms, memory_order_relaxed);
}

void metrics_applied(metrics_t *m, size_t stream_index, uint64_t count, uint64_t cursor, uint64_t head)
{
    if (stream_index >= m->n_streams)
        return;
    stream_t *s = &m->streams[stream_index];
    atomic_fetch_add_explicit(&s->applied, count, memory_order_relaxed);
    atomic_store_explicit(&s->cursor, cursor, memory_order_relaxed);
    atomic_store_explicit(&s->head, head, memory_order_relaxed);
}

void metrics_consumer_error(metrics_t *m, size_t stream_index)
{
    if (stream_index < m->n_streams)
        atomic_fetch_add_explicit(&m->streams[stream_index].errors, 1, memory_order_relaxed);
}

int metrics_set_anomalies(metrics_t *m, const char *const *kinds, size_t n)
{
    if (n == 0)
        return 0;
    if (!(m->anomalies = calloc(n, sizeof *m->anomalies)))
        return -1;
    for (; m->n_anomalies < n; m->n_anomalies++)
        if (!(m->anomalies[m->n_anomalies].kind = strdup(kinds[m->n_anomalies])))
            return -1;
    return 0;
}

void metrics_anomaly(metrics_t *m, size_t index)
{
    if (index < m->n_anomalies)
        atomic_fetch_add_explicit(&m->anomalies[index].count, 1, memory_order_relaxed);
}

/* Writes `v` as a Prometheus label value (escapes \, " and newlines). */
static void s_label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

void metrics_connections(metrics_t *m, uint64_t open)
{
    atomic_store(&m->connections, open);
}

void metrics_unflushed(metrics_t *m)
{
    atomic_fetch_add(&m->unflushed, 1);
}

void metrics_intake_on(metrics_t *m)
{
    m->intake = true;
}

void metrics_intake_dropped(metrics_t *m, metrics_drop_t why)
{
    if (m && why < METRICS_DROP_KINDS)
        atomic_fetch_add(&m->dropped[why], 1);
}

static void s_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *metrics_render(const metrics_t *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f)
        return NULL;
    s_family(f, "shop_service_info", "gauge", "The service this process runs.");
    fputs("shop_service_info{service=\"", f);
    s_label(f, m->service);
    fputs("\"} 1\n", f);

    s_family(f, "shop_requests_total", "counter", "Calls answered, by method and status.");
    for (size_t i = 0; i <= m->n_methods; i++)
        for (int c = 0; c < STATUS_COUNT; c++) {
            uint64_t v = atomic_load(&m->methods[i].by_code[c]);
            if (!v)
                continue;
            fputs("shop_requests_total{method=\"", f);
            s_label(f, m->methods[i].name);
            fprintf(f, "\",code=\"%s\"} %llu\n", status_name((status_t)c), (unsigned long long)v);
        }

    s_family(f, "shop_request_seconds", "histogram", "Call latency from receipt to reply.");
    for (size_t i = 0; i <= m->n_methods; i++) {
        const method_t *mt = &m->methods[i];
        uint64_t cum = 0;
        if (i == m->n_methods && atomic_load(&mt->count) == 0)
            continue;
        for (size_t b = 0; b <= N_BOUNDS; b++) {
            cum += atomic_load(&mt->buckets[b]);
            fputs("shop_request_seconds_bucket{method=\"", f);
            s_label(f, mt->name);
            if (b < N_BOUNDS)
                fprintf(f, "\",le=\"%g\"} %llu\n", s_bounds[b], (unsigned long long)cum);
            else
                fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        fputs("shop_request_seconds_sum{method=\"", f);
        s_label(f, mt->name);
        fprintf(f, "\"} %.6f\n", (double)atomic_load(&mt->sum_us) / 1e6);
        fputs("shop_request_seconds_count{method=\"", f);
        s_label(f, mt->name);
        fprintf(f, "\"} %llu\n", (unsigned long long)atomic_load(&mt->count));
    }

    s_family(f, "shop_rpc_connections", "gauge", "Callers' connections open.");
    fprintf(f, "shop_rpc_connections %llu\n", (unsigned long long)atomic_load(&m->connections));
    s_family(f, "shop_commits_unflushed_total", "counter",
             "Calls committed without waiting for the WAL flush, their caller's later commit "
             "in the same cluster making them durable.");
    fprintf(f, "shop_commits_unflushed_total %llu\n", (unsigned long long)atomic_load(&m->unflushed));

    s_family(f, "shop_events_published_total", "counter", "Events published by the relay.");
    fprintf(f, "shop_events_published_total %llu\n", (unsigned long long)atomic_load(&m->published));
    s_family(f, "shop_outbox_head_sequence", "gauge", "Highest sequence of this service's stream.");
    fprintf(f, "shop_outbox_head_sequence %llu\n", (unsigned long long)atomic_load(&m->outbox_head));
    s_family(f, "shop_relay_lag_seconds", "gauge", "Age of the newest event when published.");
    fprintf(f, "shop_relay_lag_seconds %.3f\n", (double)atomic_load(&m->relay_lag_ms) / 1e3);

    if (m->n_streams) {
        s_family(f, "shop_events_applied_total", "counter", "Events applied, by consumed stream.");
        for (size_t i = 0; i < m->n_streams; i++) {
            fputs("shop_events_applied_total{stream=\"", f);
            s_label(f, m->streams[i].name);
            fprintf(f, "\"} %llu\n", (unsigned long long)atomic_load(&m->streams[i].applied));
        }
        s_family(f, "shop_consumer_cursor", "gauge", "Last sequence applied, by stream.");
        for (size_t i = 0; i < m->n_streams; i++) {
            fputs("shop_consumer_cursor{stream=\"", f);
            s_label(f, m->streams[i].name);
            fprintf(f, "\"} %llu\n", (unsigned long long)atomic_load(&m->streams[i].cursor));
        }
        s_family(f, "shop_consumer_lag_events", "gauge", "Producer head minus cursor, by stream.");
        for (size_t i = 0; i < m->n_streams; i++) {
            uint64_t h = atomic_load(&m->streams[i].head), c = atomic_load(&m->streams[i].cursor);
            fputs("shop_consumer_lag_events{stream=\"", f);
            s_label(f, m->streams[i].name);
            fprintf(f, "\"} %llu\n", (unsigned long long)(h > c ? h - c : 0));
        }
        s_family(f, "shop_consumer_errors_total", "counter", "Failed applies, by stream.");
        for (size_t i = 0; i < m->n_streams; i++) {
            fputs("shop_consumer_errors_total{stream=\"", f);
            s_label(f, m->streams[i].name);
            fprintf(f, "\"} %llu\n", (unsigned long long)atomic_load(&m->streams[i].errors));
        }
    }
    if (m->intake) {
        static const char *const why[METRICS_DROP_KINDS] = {"malformed", "too_large", "refused",
                                                            "stopping"};
        s_family(f, "shop_intake_dropped_total", "counter",
                 "Published messages the intake dropped (each also logged), by reason.");
        for (int i = 0; i < METRICS_DROP_KINDS; i++)
            fprintf(f, "shop_intake_dropped_total{reason=\"%s\"} %llu\n", why[i],
                    (unsigned long long)atomic_load(&m->dropped[i]));
    }
    if (m->n_anomalies) {
        s_family(f, "shop_anomalies_total", "counter",
                 "Inconsistencies the service saw and logged, by kind.");
        for (size_t i = 0; i < m->n_anomalies; i++) {
            fputs("shop_anomalies_total{kind=\"", f);
            s_label(f, m->anomalies[i].kind);
            fprintf(f, "\"} %llu\n", (unsigned long long)atomic_load(&m->anomalies[i].count));
        }
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
