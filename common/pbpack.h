/* pbpack: protobuf messages packed in one pass.
 *
 * protobuf-c packs in two: protobuf_c_message_get_packed_size() walks the
 * whole message to size the buffer, then protobuf_c_message_pack() walks it
 * again, moving every nested message longer than 127 bytes once its length
 * is known. pbpack writes back to front instead: the last field first, each
 * nested message before the length that prefixes it, so every length is
 * known when it is written and nothing is walked twice or moved. The bytes
 * are protobuf_c_message_pack()'s, byte for byte (tests/unit/test_pbpack.c
 * holds it to that for every message of the contract).
 *
 * The bytes are written into a buffer that belongs to the calling thread
 * and are valid until that thread packs again: copy them out before
 * packing a message that contains them. */
#ifndef SHOP_PBPACK_H
#define SHOP_PBPACK_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* The packed bytes of `msg`, and their count in *len; NULL when out of
 * memory. */
const uint8_t *pbpack(const ProtobufCMessage *msg, size_t *len);

#endif
