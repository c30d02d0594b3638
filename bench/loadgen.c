/* loadgen: the timing loop shared by the benchmark drivers. */
#include "loadgen.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* A synchronous caller cannot do more than this many calls a second on
 * loopback; latencies past it are not recorded (the count still is). */
#define LG_MAX_RATE 40000

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state;   /* 0 wait, 1 go, -1 abort */
    int64_t start_us;
} gate_t;

typedef struct {
    const char *endpoint;
    double duration_s;
    lg_op_fn op;
    void *ctx;
    gate_t *gate;
    int index;
    uint32_t *lat_us;
    size_t nlat, cap;
    uint64_t ok, errors, unrecorded;
    int64_t end_us;
    bool setup_failed;
    char first_error[200];   /* "CODE: " and up to 160 of the message */
} worker_t;

uint64_t lg_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static void *s_worker(void *arg)
{
    worker_t *w = arg;
    client_t *c = client_new(NULL, w->endpoint);
    uint64_t rng = ((uint64_t)util_now_ms() << 16 ^ (uint64_t)(w->index + 1) * 0x9E3779B97F4A7C15ULL) | 1;

    w->setup_failed = !c || client_open(c, 5000) != 0;
    pthread_mutex_lock(&w->gate->mu);
    while (w->gate->state == 0)
        pthread_cond_wait(&w->gate->cv, &w->gate->mu);
    bool go = w->gate->state == 1;
    int64_t deadline = w->gate->start_us + (int64_t)(w->duration_s * 1e6);
    pthread_mutex_unlock(&w->gate->mu);
    for (uint64_t seq = 0; !w->setup_failed && go && util_mono_us() < deadline; seq++) {
        char err[160] = "";
        int64_t untimed = 0, t0 = util_mono_us();
        status_t st = w->op(w->ctx, c, w->index, seq, &rng, &untimed, err, sizeof err);
        int64_t us = util_mono_us() - t0 - untimed;
        if (st == STATUS_OK) {
            w->ok++;
            if (w->nlat < w->cap)
                w->lat_us[w->nlat++] = (uint32_t)(us > UINT32_MAX ? UINT32_MAX : us);
            else
                w->unrecorded++;
        } else {
            w->errors++;
            if (!w->first_error[0])
                snprintf(w->first_error, sizeof w->first_error, "%s: %s", status_name(st), err);
        }
    }
    w->end_us = util_mono_us();
    client_destroy(&c);
    return NULL;
}

static int s_cmp(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

static double s_pct_ms(const uint32_t *v, size_t n, double p)
{
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);

    if (n == 0)
        return 0;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1000.0;
}

int lg_run(const char *endpoint, int conc, double duration_s, lg_op_fn op, void *ctx, lg_result_t *r)
{
    gate_t gate = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t *th = calloc((size_t)conc, sizeof *th);
    worker_t *w = calloc((size_t)conc, sizeof *w);
    size_t cap = (size_t)(duration_s * LG_MAX_RATE) + 16, total = 0;
    uint32_t *all = NULL;
    int started = 0, rc = -1;
    bool failed = false;

    memset(r, 0, sizeof *r);
    r->concurrency = conc;
    if (!th || !w)
        goto done;
    for (int i = 0; i < conc; i++) {
        w[i] = (worker_t){.endpoint = endpoint, .duration_s = duration_s, .op = op,
                          .ctx = ctx, .gate = &gate, .index = i, .cap = cap};
        if (!(w[i].lat_us = malloc(cap * sizeof *w[i].lat_us)))
            goto done;
    }
    for (; started < conc; started++)
        if (pthread_create(&th[started], NULL, s_worker, &w[started]) != 0)
            break;
    if (started == conc)
        usleep(100 * 1000);   /* let the connections open before the clock starts */
    pthread_mutex_lock(&gate.mu);
    gate.state = started == conc ? 1 : -1;
    gate.start_us = util_mono_us();
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    int64_t end = gate.start_us;
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        failed = failed || w[i].setup_failed;
        if (w[i].end_us > end)
            end = w[i].end_us;
    }
    if (started < conc || failed) {
        fprintf(stderr, "loadgen: %s\n", failed ? "a client could not connect" : "cannot start threads");
        goto done;
    }
    for (int i = 0; i < conc; i++) {
        total += w[i].nlat;
        r->ok += w[i].ok;
        r->errors += w[i].errors;
        r->unrecorded += w[i].unrecorded;
        if (!r->first_error[0] && w[i].first_error[0])
            snprintf(r->first_error, sizeof r->first_error, "%s", w[i].first_error);
    }
    if (!(all = malloc((total ? total : 1) * sizeof *all)))
        goto done;
    for (int i = 0, k = 0; i < conc; i++) {
        memcpy(all + k, w[i].lat_us, w[i].nlat * sizeof *all);
        k += (int)w[i].nlat;
    }
    qsort(all, total, sizeof *all, s_cmp);
    r->elapsed_s = (double)(end - gate.start_us) / 1e6;
    r->per_s = r->elapsed_s > 0 ? (double)r->ok / r->elapsed_s : 0;
    r->p50_ms = s_pct_ms(all, total, 50);
    r->p99_ms = s_pct_ms(all, total, 99);
    r->max_ms = total ? (double)all[total - 1] / 1000.0 : 0;
    rc = 0;
done:
    free(all);
    for (int i = 0; w && i < conc; i++)
        free(w[i].lat_us);
    free(w);
    free(th);
    return rc;
}

int lg_levels(const char *endpoint, const int *levels, int n, double duration_s, lg_op_fn op,
              void *ctx, bool tsv)
{
    if (!tsv)
        printf("%11s | %10s | %8s | %8s | %8s | %7s\n", "concurrency", "ops/s", "p50 ms", "p99 ms",
               "max ms", "errors");
    for (int l = 0; l < n; l++) {
        lg_result_t r;
        if (lg_run(endpoint, levels[l], duration_s, op, ctx, &r) != 0)
            return -1;
        printf(tsv ? "%d\t%.1f\t%.3f\t%.3f\t%.3f\t%" PRIu64 "\n"
                   : "%11d | %10.1f | %8.3f | %8.3f | %8.3f | %7" PRIu64 "\n",
               r.concurrency, r.per_s, r.p50_ms, r.p99_ms, r.max_ms, r.errors);
        fflush(stdout);
        if (r.first_error[0])
            fprintf(stderr, "concurrency %d: first error %s\n", r.concurrency, r.first_error);
    }
    return 0;
}

int lg_parse_levels(const char *arg, int *levels, int max)
{
    int n = 0;

    for (const char *p = arg;; p++) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1024 || n == max || (*end && *end != ','))
            return -1;
        levels[n++] = (int)v;
        if (!*end)
            return n;
        p = end;
    }
}
