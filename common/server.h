/* server: the service runtime. A service declares its methods, migrations,
 * settings and consumed streams in a server_def_t and calls server_main();
 * the runtime does configuration, logging, migrations, the libevent loop
 * (ROUTER, PUB, admin HTTP, signals, maintenance timer), worker threads
 * with their own PostgreSQL connections, the outbox relay and consumers. */
#ifndef SHOP_SERVER_H
#define SHOP_SERVER_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cfg.h"
#include "db.h"
#include "listen.h"
#include "migrate.h"
#include "status.h"
#include "subscriber.h"
#include "shop/common/v1/common.pb-c.h"

/* The context of one call, owned by the runtime, valid during the handler. */
typedef struct call call_t;

/* A method's implementation. Runs on a worker thread inside a transaction
 * the runtime opened on call_db(call): the runtime commits it if the handler
 * returns STATUS_OK (or called call_keep_writes) and rolls it back otherwise.
 * `request` is the unpacked request (read-only, freed by the runtime);
 * `response` is an initialised message of the method's output type that the
 * handler fills; anything it allocates into it must be allocated with
 * call_alloc/call_strdup (freed by the runtime after packing). */
typedef status_t (*server_handler_fn)(call_t *call, const ProtobufCMessage *request,
                                      ProtobufCMessage *response);

/* Binds a handler to the method of the service descriptor whose input type
 * is `request`. server_main refuses to start if a method has no handler. */
typedef struct {
    const ProtobufCMessageDescriptor *request;
    server_handler_fn handler;
} server_method_t;

typedef struct {
    /* Names the service, its schema, its event stream and its log lines. */
    const char *name;
    const ProtobufCServiceDescriptor *service;
    const server_method_t *methods;
    size_t n_methods;
    const migrate_file_t *migrations;
    size_t n_migrations;
    /* The service's own settings (may be NULL): loaded and validated with the
     * runtime's before anything starts; handlers reach them with
     * call_settings(). */
    const cfg_var_t *settings;
    void *settings_out;
    /* Runs on the maintenance thread every SHOP_MAINTENANCE_MS with its own
     * connection, inside a transaction committed on 0 and rolled back on -1,
     * emitting events with server_emit (may be NULL). */
    int (*maintain)(db_t *db, void *settings);
    /* Event streams this service applies (may be empty). */
    const sub_stream_t *consumes;
    size_t n_consumes;
    /* Services this one calls from its handlers (NULL-terminated names, may
     * be NULL). Each endpoint comes from SHOP_<NAME>_RPC, required at
     * start-up; every worker has its own client to each. */
    const char *const *calls;
    /* Kinds of inconsistency the service can see and report with
     * server_anomaly (NULL-terminated, may be NULL), e.g. "reservation_lost":
     * each is a shop_anomalies_total{kind} counter in /metrics. */
    const char *const *anomalies;
    /* Messages other systems publish for this service (see intake.h), taken
     * in as calls to the method whose request is `intake_request`: the
     * environment variable `intake_var` lists the endpoints to subscribe to
     * (comma-separated; unset or empty = none), with topic `intake_topic`. */
    const char *intake_var;
    const char *intake_topic;
    const ProtobufCMessageDescriptor *intake_request;
    /* A channel the service's own database NOTIFYs when something the
     * service keeps in memory changes (may be NULL): `on_notify` runs on a
     * listener thread with a connection of its own, as listen.h describes
     * (NULL payload: re-read everything; NULL db: deaf until further
     * notice). */
    const char *listen;
    listen_fn on_notify;
    /* Server settings for the workers' connections, as libpq options (may
     * be NULL), e.g. "-c plan_cache_mode=force_generic_plan" for a service
     * whose statements are all key lookups that plan the same whatever
     * their parameters. */
    const char *db_settings;
    /* Methods (by request type, NULL-terminated, may be NULL) whose calls
     * run first on the loop thread, with no database (call_db is NULL):
     * for a method that can often answer from memory, this saves the
     * hand-over to a worker and back. A handler that finds it needs the
     * database returns call_defer(call) before changing anything, and the
     * call runs again from the start on a worker. There it must not use
     * call_remote, call_emit or call_commit, nor block. When calls come
     * back to back and the process has a core to spare, a worker runs the
     * call from the start instead (with its database), so the loop is not
     * the only thread that answers them. */
    const ProtobufCMessageDescriptor *const *on_loop;
} server_def_t;

/* Runs the service until SIGTERM/SIGINT, then drains in-flight calls and
 * returns 0. Returns 1 (after logging what to fix) if start-up fails.
 * `--print-config` prints the settings table as Markdown and returns 0. */
int server_main(const server_def_t *def, int argc, char **argv);

/* --- for handlers ------------------------------------------------------ */

/* The worker's connection, in the call's transaction; NULL for a call on
 * the loop thread (see server_def_t.on_loop). */
db_t *call_db(call_t *call);
/* For a call on the loop thread that needs the database: returns
 * STATUS_DEFER, which hands the call to a worker. */
status_t call_defer(call_t *call);
void *call_settings(const call_t *call);
const char *call_request_id(const call_t *call);
const char *call_method(const call_t *call);
/* "" when the caller sent none. */
const char *call_idempotency_key(const call_t *call);
int64_t call_deadline_ms(const call_t *call);

/* Zeroed memory that lives until the reply is sent (for response fields). Never
 * NULL: allocation failure aborts, as protobuf-c's own allocator would. */
void *call_alloc(call_t *call, size_t size);
/* The same, not zeroed: for a buffer the handler writes before reading. */
void *call_alloc_uninit(call_t *call, size_t size);
char *call_strdup(call_t *call, const char *s);
/* A Money in the call's memory. */
Shop__Common__V1__Money *call_money(call_t *call, int64_t minor_units, const char *currency);
/* `msg` packed into the call's memory; its length in *len. */
uint8_t *call_pack(call_t *call, const ProtobufCMessage *msg, size_t *len);
/* A protobuf-c allocator taking from the call's memory (freeing nothing:
 * it all goes with the call), to unpack into a reply. */
ProtobufCAllocator call_allocator(call_t *call);

/* Sets the reply's status message (printf-style) and returns `code`, so a
 * handler writes `return call_fail(call, STATUS_NOT_FOUND, "no SKU %s", sku);` */
status_t call_fail(call_t *call, status_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Maps the db's last failure to a status, logs it with the call's context
 * and returns the code: connection lost -> UNAVAILABLE, unique violation ->
 * ALREADY_EXISTS, check violation -> FAILED_PRECONDITION, serialization or
 * deadlock -> ABORTED, statement timeout -> DEADLINE_EXCEEDED, else INTERNAL. */
status_t call_db_fail(call_t *call, const char *what);

/* Commit the transaction even though the handler returns an error status
 * (e.g. to record a rejection event). */
void call_keep_writes(call_t *call);

/* Declares that this call commits synchronously in its database after each
 * call_remote it makes from here on, before it answers or anything else
 * outside its database depends on what the remote call did (its answer
 * says nothing about that before the commit, or the commit writes that it
 * failed). A called service on the same PostgreSQL cluster then commits
 * without waiting for the WAL flush (Request.commit_with): this call's
 * commit, later in the same WAL, flushes it. */
void call_commits_after(call_t *call);

/* Adds `event` to the outbox in the call's transaction: type is its full
 * proto name, correlation id and traceparent come from the call. Returns 0
 * or -1 (then return call_db_fail). */
int call_emit(call_t *call, const ProtobufCMessage *event) __attribute__((warn_unused_result));

/* Commits what the call has written so far (its events included) and opens
 * a new transaction for the rest, so a handler can make its progress durable
 * before it calls another service. Returns 0, or -1 (then return
 * call_db_fail). */
int call_commit(call_t *call) __attribute__((warn_unused_result));

/* Its statements run without a transaction (no BEGIN, no COMMIT round
 * trip): each commits by itself, so a failing call undoes none of them. For
 * reads that need no single snapshot, or a write that must stand alone and
 * be on record at once. Call it before the first statement; call_commit
 * opens a transaction again for what follows. */
void call_without_transaction(call_t *call);

/* Calls `method` ("shop.catalog.v1.CatalogService/ReserveStock") of
 * `service`, one of the server_def_t's `calls`, within the call's own
 * deadline (at most `timeout_ms`), sending again once if no reply comes in
 * half of it; the request must be safe to repeat. Never call it while the
 * transaction holds row locks another call could wait for. On return
 * *response (freed by the caller with protobuf_c_message_free_unpacked(…,
 * NULL)) and *message (malloc'd, may be NULL) are as client_call gives
 * them. Returns the reply's status; DEADLINE_EXCEEDED if none came. */
status_t call_remote(call_t *call, const char *service, const char *method,
                     const ProtobufCMessage *request, const ProtobufCMessageDescriptor *response_type,
                     ProtobufCMessage **response, int timeout_ms, char **message);

/* The same for the def's `maintain`, on the maintenance thread only (its
 * own clients, made at the first call): within `timeout_ms`, and before the
 * tick writes anything, so its transaction holds no lock meanwhile. Called
 * from any other thread it is STATUS_INTERNAL. */
status_t server_remote(const char *service, const char *method, const ProtobufCMessage *request,
                       const ProtobufCMessageDescriptor *response_type,
                       ProtobufCMessage **response, int timeout_ms, char **message);

/* The same outside a call (maintenance, consumers): in `db`'s transaction. */
int server_emit(db_t *db, const ProtobufCMessage *event, const char *correlation_id)
    __attribute__((warn_unused_result));

/* Reports an inconsistency the service can see but not repair by itself
 * (an event it cannot apply, a reservation it lost): logs it as an error
 * with the kind and counts it in shop_anomalies_total{kind}. `kind` must be
 * one of the server_def_t's anomalies. Callable from any thread. */
void server_anomaly(const char *kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same once `db`'s open transaction commits (dropped if it rolls back):
 * for an inconsistency that the transaction acts on, such as a hold it gives
 * back. 0, or -1 out of memory. */
int server_anomaly_on_commit(db_t *db, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), warn_unused_result));

#endif
