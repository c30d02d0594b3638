/* pbjson: protobuf messages to and from JSON through their descriptors, in
 * the proto3 JSON mapping (lowerCamelCase names, int64 as strings, enums by
 * name, bytes as base64). Used by shopctl and event tracing. */
#ifndef SHOP_PBJSON_H
#define SHOP_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* New JSON object for `msg`; caller json_decref()s it. NULL on failure. */
json_t *pbjson_from_message(const ProtobufCMessage *msg);

/* New message of type `desc` from the JSON object `json` (accepts field
 * names in lowerCamelCase or as in the .proto, enums by name or number,
 * 64-bit integers as numbers or strings). Caller frees with
 * protobuf_c_message_free_unpacked(msg, NULL). On failure returns NULL and
 * writes what and where ("lines[1].quantity: expected an integer") to err. */
ProtobufCMessage *pbjson_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                    char *err, size_t errlen);

#endif
