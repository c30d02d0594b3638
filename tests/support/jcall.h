/* jcall: calls to a real service with requests written as JSON (turned into
 * protobuf by pbjson through the descriptors, as shopctl does) and replies
 * read back as JSON by path. For integration tests. */
#ifndef SHOP_JCALL_H
#define SHOP_JCALL_H

#include <jansson.h>
#include "client.h"
#include "status.h"

typedef struct {
    client_t *client;
    const char *service;    /* "shop.catalog.v1.CatalogService" */
    int timeout_ms;         /* per call; 0 = 20000 */
    const char *key;        /* idempotency key sent with each call (NULL = none) */
    json_t *out;            /* the last reply (NULL if it had no body) */
    char message[512];      /* the last status message */
} jcall_t;

/* Calls <service>/<method> with the JSON request (printf-style) and keeps
 * the reply in j->out. Returns the status, or STATUS_UNKNOWN (after
 * printing why) when the request itself is not valid for the method. */
status_t jcall(jcall_t *j, const char *method, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same call repeated every 100 ms until it answers OK or timeout_ms
 * passes (e.g. until a consumer has caught up); the last status. */
status_t jcall_until_ok(jcall_t *j, int timeout_ms, const char *method, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The value at a path such as "product.skus[1].code" in the last reply. */
json_t *jcall_at(const jcall_t *j, const char *path);
/* Its string ("(none)" if absent), integer (64-bit strings too; -999999 if
 * absent) and array length. */
const char *jcall_str(const jcall_t *j, const char *path);
long long jcall_num(const jcall_t *j, const char *path);
size_t jcall_len(const jcall_t *j, const char *path);

void jcall_done(jcall_t *j);

#endif
