/* pbjson: protobuf messages to and from JSON through their descriptors, in
 * the proto3 JSON mapping (lowerCamelCase names, 64-bit integers as
 * strings, enums by name, bytes as base64). Used by shopctl and tests; no
 * per-message code anywhere. Map fields appear as arrays of entries. */
#ifndef SHOP_PBJSON_H
#define SHOP_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* Also print singular scalar fields that hold their zero value (proto3
 * JSON leaves them out), so a reader sees "reserved": 0. */
#define PBJSON_DEFAULTS 1

/* New JSON object for `msg`; caller json_decref()s it. NULL on failure. */
json_t *pbjson_from_message(const ProtobufCMessage *msg, int flags);

/* New message of type `desc` from the JSON object `json` (accepts field
 * names in lowerCamelCase or as in the .proto, enums by name or number,
 * 64-bit integers as numbers or strings, null as "not set"). Caller frees
 * with protobuf_c_message_free_unpacked(msg, NULL). On failure returns NULL
 * and writes what and where ("lines[1].quantity: expected an integer") to
 * err. */
ProtobufCMessage *pbjson_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                    char *err, size_t errlen);

/* The field name as proto3 JSON spells it (lowerCamelCase, as protoc's
 * json_name): "low_stock_threshold" -> "lowStockThreshold". */
void pbjson_json_name(const char *name, char *out, size_t len);

/* Message and service descriptors of every .proto in the project, by full
 * name ("shop.catalog.v1.Product"); NULL if unknown. */
const ProtobufCMessageDescriptor *pbjson_message_type(const char *full_name);
const ProtobufCServiceDescriptor *pbjson_service_type(const char *full_name);

/* The registry itself, NULL-terminated (generated at build time). */
extern const ProtobufCMessageDescriptor *const shop_registry_messages[];
extern const ProtobufCServiceDescriptor *const shop_registry_services[];

#endif
