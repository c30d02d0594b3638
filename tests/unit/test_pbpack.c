/* test_pbpack: pbpack writes what protobuf-c writes, byte for byte, for
 * random messages of every type of the contract and of two test protos
 * that hold every kind of field protobuf-c knows (tests/unit/proto/); and
 * what it writes reads back. */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "check.h"
#include "pbjson.h"
#include "pbpack.h"
#include "pbpack2.pb-c.h"
#include "pbpack3.pb-c.h"

#define ROUNDS 300    /* random messages per type */
#define MAX_DEPTH 4

static uint64_t s_state = 0x9e3779b97f4a7c15ull;

static uint64_t s_rand(void)
{
    s_state ^= s_state >> 12;
    s_state ^= s_state << 25;
    s_state ^= s_state >> 27;
    return s_state * 2685821657736338717ull;
}

static bool s_one_in(unsigned n) { return s_rand() % n == 0; }

/* Lengths around the varint boundaries of a length prefix, now and then. */
static size_t s_len(void)
{
    if (s_one_in(300))
        return 16380 + s_rand() % 8;
    if (s_one_in(8))
        return 120 + s_rand() % 300;
    return s_rand() % 12;
}

static uint64_t s_bits(void)
{
    switch (s_rand() % 6) {
    case 0: return 0;
    case 1: return s_rand() % 200;
    case 2: return (uint64_t)-(int64_t)(s_rand() % 200);   /* negative */
    case 3: return s_rand() % 2 ? UINT64_MAX : (uint64_t)INT64_MIN;
    default: return s_rand() >> (s_rand() % 64);
    }
}

static double s_double(void)
{
    switch (s_rand() % 6) {
    case 0: return 0.0;
    case 1: return -0.0;
    case 2: return NAN;
    case 3: return -INFINITY;
    default: return (double)(int64_t)s_bits() / 7.0;
    }
}

static ProtobufCMessage *s_message(arena_t *a, const ProtobufCMessageDescriptor *d, int depth);

/* A value for one element of field f at `member`; never NULL for a
 * string or message unless `may_be_null`. */
static void s_value(arena_t *a, const ProtobufCFieldDescriptor *f, void *member, int depth,
                    bool may_be_null)
{
    uint64_t b = s_bits();
    uint32_t b32 = (uint32_t)b;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
        memcpy(member, &b32, 4);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        int32_t v = s_one_in(4) ? (int32_t)b32 : e->values[s_rand() % e->n_values].value;
        memcpy(member, &v, 4);
        break;
    }
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
        memcpy(member, &b, 8);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)member = (float)s_double();
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        *(double *)member = s_double();
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)member = (protobuf_c_boolean)(s_rand() % 3);   /* 2 is true too */
        break;
    case PROTOBUF_C_TYPE_STRING: {
        if (may_be_null && s_one_in(6)) {
            *(char **)member = NULL;
            break;
        }
        size_t n = s_len();
        char *s = arena_alloc(a, n + 1);
        for (size_t i = 0; i < n; i++)
            s[i] = (char)('a' + s_rand() % 26);
        *(char **)member = s;
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *bd = member;
        bd->len = s_len();
        /* empty is a length of 0, whatever the pointer */
        bd->data = bd->len || s_one_in(2) ? arena_alloc(a, bd->len + 1) : NULL;
        for (size_t i = 0; i < bd->len; i++)
            bd->data[i] = (uint8_t)s_rand();
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        *(ProtobufCMessage **)member =
            (may_be_null && (depth >= MAX_DEPTH || s_one_in(4))) ? NULL
                                                                 : s_message(a, f->descriptor, depth + 1);
        break;
    }
}

static size_t s_elt(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

static ProtobufCMessage *s_message(arena_t *a, const ProtobufCMessageDescriptor *d, int depth)
{
    ProtobufCMessage *m = arena_alloc(a, d->sizeof_message);

    d->message_init(m);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        void *member = (char *)m + f->offset, *q = (char *)m + f->quantifier_offset;

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            /* at most one of the group: the first that draws it */
            if (*(uint32_t *)q == 0 && s_one_in(3)) {
                *(uint32_t *)q = f->id;
                s_value(a, f, member, depth, true);
            }
        } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            bool deep = f->type == PROTOBUF_C_TYPE_MESSAGE && depth >= MAX_DEPTH;
            size_t n = deep ? 0 : s_one_in(40) ? 150 : s_rand() % 4;
            void *array = n ? arena_alloc(a, n * s_elt(f->type)) : NULL;
            for (size_t k = 0; k < n; k++)
                s_value(a, f, (char *)array + k * s_elt(f->type), depth, false);
            *(size_t *)q = n;
            *(void **)member = array;
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
            bool pointer = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;
            if (!pointer)
                *(protobuf_c_boolean *)q = (protobuf_c_boolean)(s_rand() % 2);
            if (!s_one_in(4))   /* else its default: the default value's own pointer */
                s_value(a, f, member, depth, true);
        } else if (f->label == PROTOBUF_C_LABEL_REQUIRED) {
            s_value(a, f, member, depth, true);   /* NULL: written empty */
        } else if (!s_one_in(3)) {   /* proto3: else left at zero */
            s_value(a, f, member, depth, true);
        }
    }
    if (s_one_in(10)) {   /* fields a newer sender added: each wire type */
        size_t n = 1 + s_rand() % 3;
        ProtobufCMessageUnknownField *u = arena_alloc(a, n * sizeof *u);
        for (size_t k = 0; k < n; k++) {
            static const ProtobufCWireType wires[] = {
                PROTOBUF_C_WIRE_TYPE_VARINT, PROTOBUF_C_WIRE_TYPE_64BIT,
                PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, PROTOBUF_C_WIRE_TYPE_32BIT};
            u[k].tag = 1000 + (uint32_t)(s_rand() % ((1u << 29) - 2000));   /* no known id */
            u[k].wire_type = wires[s_rand() % 4];
            u[k].data = arena_alloc(a, 11 + 300);
            if (u[k].wire_type == PROTOBUF_C_WIRE_TYPE_VARINT) {
                uint64_t v = s_bits();
                for (u[k].len = 0; v >= 0x80; v >>= 7)
                    u[k].data[u[k].len++] = (uint8_t)(v | 0x80);
                u[k].data[u[k].len++] = (uint8_t)v;
            } else if (u[k].wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) {
                size_t body = s_rand() % 300;   /* its length prefix, then its bytes */
                u[k].len = body < 0x80 ? 1 : 2;
                u[k].data[0] = (uint8_t)(body < 0x80 ? body : (body & 0x7f) | 0x80);
                if (body >= 0x80)
                    u[k].data[1] = (uint8_t)(body >> 7);
                for (size_t i = 0; i < body; i++)
                    u[k].data[u[k].len++] = (uint8_t)s_rand();
            } else {
                u[k].len = u[k].wire_type == PROTOBUF_C_WIRE_TYPE_64BIT ? 8 : 4;
                for (size_t i = 0; i < u[k].len; i++)
                    u[k].data[i] = (uint8_t)s_rand();
            }
        }
        m->n_unknown_fields = (unsigned)n;
        m->unknown_fields = u;
    }
    return m;
}

/* Packs m both ways; true when the bytes agree and read back to the same
 * bytes again. */
static bool s_same(const ProtobufCMessage *m)
{
    size_t want_len = protobuf_c_message_get_packed_size(m), got_len = 0;
    uint8_t *want = malloc(want_len ? want_len : 1);
    bool ok = want && protobuf_c_message_pack(m, want) == want_len;
    const uint8_t *got = ok ? pbpack(m, &got_len) : NULL;

    ok = got && got_len == want_len && memcmp(got, want, want_len) == 0;
    if (!ok && got) {
        size_t at = 0;
        while (at < want_len && at < got_len && got[at] == want[at])
            at++;
        fprintf(stderr, "%s: %zu bytes from protobuf-c, %zu from pbpack, first difference at %zu\n",
                m->descriptor->name, want_len, got_len, at);
    }
    if (ok) {
        ProtobufCMessage *back = protobuf_c_message_unpack(m->descriptor, NULL, got_len, got);
        size_t again_len = 0;
        const uint8_t *again = back ? pbpack(back, &again_len) : NULL;
        ok = again && again_len == want_len && memcmp(again, want, want_len) == 0;
        if (back)
            protobuf_c_message_free_unpacked(back, NULL);
    }
    free(want);
    return ok;
}

static int s_type(arena_t *a, const ProtobufCMessageDescriptor *d)
{
    int bad = 0;

    for (int r = 0; r < ROUNDS && bad < 3; r++) {
        bad += !s_same(s_message(a, d, 0));
        arena_reset(a);
    }
    return bad;
}

static void *s_thread(void *arg)
{
    size_t len = 0;
    const uint8_t *p = pbpack(arg, &len);
    return (void *)(uintptr_t)(p && len > 0);
}

int main(void)
{
    arena_t *a = arena_new(1 << 16);
    size_t types = 0;

    CHECK(a != NULL);
    for (size_t i = 0; a && shop_registry_messages[i]; i++, types++)
        if (s_type(a, shop_registry_messages[i]) != 0) {
            fprintf(stderr, "differs: %s\n", shop_registry_messages[i]->name);
            CHECK(!"pbpack differs from protobuf-c");
        }
    CHECK(types > 50);
    CHECK_INT(s_type(a, &pbpacktest__every2__descriptor), 0);
    CHECK_INT(s_type(a, &pbpacktest__every3__descriptor), 0);

    /* the empty message is no bytes */
    Pbpacktest__Every3 empty = PBPACKTEST__EVERY3__INIT;
    size_t len = 99;
    CHECK(pbpack(&empty.base, &len) != NULL);
    CHECK_INT(len, 0);

    /* a message far past the thread's buffer, then a small one */
    Pbpacktest__Every3 big = PBPACKTEST__EVERY3__INIT;
    big.v_bytes.len = 3 << 20;
    big.v_bytes.data = calloc(1, big.v_bytes.len);
    CHECK(big.v_bytes.data && s_same(&big.base));
    free(big.v_bytes.data);
    big.v_bytes.len = 0;
    big.v_int32 = -1;
    CHECK(pbpack(&big.base, &len) != NULL);
    CHECK_INT(len, 11);   /* a tag, and -1 in ten bytes */

    /* another thread packs into a buffer of its own */
    pthread_t th;
    void *ok = NULL;
    CHECK(pthread_create(&th, NULL, s_thread, &big.base) == 0 && pthread_join(th, &ok) == 0);
    CHECK(ok != NULL);
    arena_destroy(&a);
    return check_done();
}
