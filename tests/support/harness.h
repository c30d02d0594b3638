/* harness: what integration tests stand on — the throwaway PostgreSQL
 * cluster started by the CTest fixture, a fresh database per test with the
 * service's own role and schema, free ports, and the real service binaries
 * started and stopped as processes. */
#ifndef SHOP_HARNESS_H
#define SHOP_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

/* Superuser conninfo of the test cluster (from $SHOP_TEST_PGDIR/conninfo,
 * written by tests/pg/start). Exits the test with a message if absent. */
const char *harness_pg_admin(void);

/* Creates database `db` (dropped first if it exists) with, for each service
 * name in the NULL-terminated `services`, a login role of that name (once
 * per cluster) owning a schema of that name, exactly as deploy/db does.
 * Returns a malloc'd conninfo for `db` as role `services[0]`, or NULL. */
char *harness_create_db(const char *db, const char *const *services);

/* Conninfo for `db` as `role`; malloc'd. */
char *harness_conninfo(const char *db, const char *role);

/* A TCP port on 127.0.0.1 free at the time of the call. */
int harness_free_port(void);

typedef struct harness_proc harness_proc_t;

/* Starts $SHOP_BIN_DIR/<binary> with the current environment plus `env`
 * (NULL-terminated "NAME=VALUE" strings); its stderr goes to
 * $SHOP_TEST_LOGDIR/<binary>-<pid>.log. Returns NULL on failure. */
harness_proc_t *harness_spawn(const char *binary, const char *const *env);

/* Polls http://127.0.0.1:<admin_port>/readyz until it answers 200 or
 * `timeout_ms` passes. Returns 0 when ready, -1 otherwise. */
int harness_wait_ready(int admin_port, int timeout_ms);

/* GETs http://127.0.0.1:<port><path>; returns the HTTP status and a
 * malloc'd body in *body (may be NULL), or -1. */
int harness_http_get(int port, const char *path, char **body);

/* The value of the line `name value` of the /metrics served at `port`
 * (name with its labels, as printed); -1 if there is none. */
long long harness_metric(int port, const char *name);

pid_t harness_pid(const harness_proc_t *p);

/* SIGTERM, waits up to `timeout_ms`, then SIGKILL. Returns the exit status
 * (0-255), 128+signal if killed, or -1. Frees *p and sets it to NULL. */
int harness_stop(harness_proc_t **p, int timeout_ms);

/* SIGKILL at once and reap. Frees *p and sets it to NULL. */
void harness_kill(harness_proc_t **p);

/* A service binary started on free loopback ports. */
typedef struct {
    harness_proc_t *proc;
    char rpc[64], pub[64];     /* tcp://127.0.0.1:<port> */
    int admin_port;
} harness_service_t;

/* Starts `binary` against `conninfo` with its RPC, PUB and admin ports on
 * free loopback ports, plus `extra_env` (NULL-terminated, may be NULL), and
 * waits up to 10 s for /readyz. Returns 0 when ready; -1 otherwise (then
 * s->proc, if set, still has to be stopped). */
int harness_start_service(harness_service_t *s, const char *binary, const char *conninfo,
                          const char *const *extra_env);

/* The two steps of harness_start_service, for services that need each
 * other's endpoints before either starts: harness_ports picks s's free
 * ports (clearing s), harness_launch starts `binary` on them and waits for
 * /readyz. Peers the environment does not name (SHOP_<X>_RPC/PUB) point at
 * a closed port. */
void harness_ports(harness_service_t *s);
int harness_launch(harness_service_t *s, const char *binary, const char *conninfo,
                   const char *const *extra_env);

/* Starts `binary` like harness_start_service, as a consumer of the stream
 * of `producer` (SHOP_<STREAM>_RPC and SHOP_<STREAM>_PUB, `stream` being
 * the producer's service name). */
int harness_start_consumer(harness_service_t *s, const char *binary, const char *conninfo,
                           const char *stream, const harness_service_t *producer);

/* Runs a query expected to give one integer (printf-style) on `pg`;
 * returns it, or -1 (after printing the error) if it did not. */
long long harness_sql(void *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Restarts the test cluster (pg_ctl restart -m fast) and returns when it
 * accepts connections again; 0 or -1. */
int harness_pg_restart(void);

#endif
