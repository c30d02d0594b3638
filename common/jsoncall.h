/* jsoncall: a call whose request and reply are JSON in the proto3 mapping,
 * converted through the method's descriptors (pbjson). What shopctl, the
 * integration tests and the benchmark loaders use, so no caller builds
 * messages by hand. */
#ifndef SHOP_JSONCALL_H
#define SHOP_JSONCALL_H

#include <jansson.h>
#include <stddef.h>
#include "client.h"
#include "status.h"

/* Calls `method` of the service with full name `service`
 * ("shop.catalog.v1.CatalogService") with `request`. Returns -1, having
 * sent nothing, when there is no such method or the JSON does not fit its
 * input (err says what and where); else 0 with *status the reply's status,
 * *reply (may be NULL) the reply body as JSON or NULL (flags as for
 * pbjson_from_message; caller json_decref()s), and *message (may be NULL)
 * the status message, malloc'd. key, timeout_ms and attempts are as for
 * client_call. */
int jsoncall(client_t *c, const char *service, const char *method, const json_t *request,
             const char *key, int timeout_ms, int attempts, int flags, status_t *status,
             json_t **reply, char **message, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
