/* loadgen: closed-loop load for the benchmarks. N threads, each with its own
 * client (client.h), start together and call `op` back to back for
 * a fixed time; every latency is kept, then throughput, p50/p99 (nearest
 * rank) and max are computed. */
#ifndef BENCH_LOADGEN_H
#define BENCH_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "client.h"

/* One timed operation by thread `thread` (its `seq`-th); `rng` is the
 * thread's random state (lg_rand). Time the op spends on work that is not
 * to be measured (a clean-up call) it adds to *untimed_us. Returns the
 * call's status; on failure may write why into err. */
typedef status_t (*lg_op_fn)(void *ctx, client_t *c, int thread, uint64_t seq, uint64_t *rng,
                             int64_t *untimed_us, char *err, size_t errlen);

typedef struct {
    int concurrency;
    uint64_t ok, errors;
    uint64_t unrecorded;    /* successes past the latency buffer (counted, not timed) */
    double elapsed_s, per_s, p50_ms, p99_ms, max_ms;
    char first_error[200];
} lg_result_t;

/* Runs one level; 0, or -1 if the threads or clients could not start. */
int lg_run(const char *endpoint, int concurrency, double duration_s, lg_op_fn op, void *ctx,
           lg_result_t *r);

/* Parses a list of concurrency levels such as "1,8,32" (each 1 to 1024)
 * into levels[0..max); their count, or -1 if the list is not one. */
int lg_parse_levels(const char *arg, int *levels, int max);

/* Runs each of the n levels and prints a line per level: a table, or with
 * `tsv` concurrency, ops/s, p50, p99, max (ms) and errors tab-separated.
 * 0, or -1 if a level could not start. */
int lg_levels(const char *endpoint, const int *levels, int n, double duration_s, lg_op_fn op,
              void *ctx, bool tsv);

/* xorshift64*: a fast per-thread generator. */
uint64_t lg_rand(uint64_t *state);

#endif
