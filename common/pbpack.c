/* pbpack: see pbpack.h. The output grows from the end of the thread's
 * buffer towards its start; w->p is the first byte written so far. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pbpack.h"

#define START_CAP 8192          /* mapped at first: a quote's reply, with room */
#define KEEP_CAP (256 * 1024)   /* a larger buffer is given back at the next pack */
#define HEAD_MAX 20             /* a tag and a length or scalar: 10 bytes each at most */

typedef struct {
    uint8_t *buf;
    uint8_t *p;      /* the output runs from p to end */
    uint8_t *end;
    bool failed;     /* out of memory: nothing more is written */
} w_t;

/* A thread's buffer is mapped by itself, away from malloc's heaps: a
 * buffer that lives as long as its thread would keep memory freed below it
 * in the heap from going back to the system. Its first bytes hold its size. */
typedef struct {
    size_t cap;   /* of the whole mapping */
} head_t;

#define HEAD_ROOM 16   /* head_t, rounded up */

static __thread uint8_t *t_map;   /* the mapping: a head_t, then the buffer */
static pthread_key_t s_key;       /* unmaps a thread's buffer when it exits */
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static bool s_have_key;

static uint8_t *s_map(size_t cap)
{
    uint8_t *m = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (m == MAP_FAILED)
        return NULL;
    ((head_t *)m)->cap = cap;
    return m;
}

static void s_unmap(void *m)
{
    if (m)
        munmap(m, ((head_t *)m)->cap);
}

static void s_thread_end(void *m)
{
    s_unmap(m);
    t_map = NULL;   /* should anything on the way out pack again */
}

static void s_make_key(void)
{
    s_have_key = pthread_key_create(&s_key, s_thread_end) == 0;
}

static void s_keep(uint8_t *m)
{
    t_map = m;
    pthread_once(&s_once, s_make_key);
    if (s_have_key)
        (void)pthread_setspecific(s_key, m);
}

static size_t s_written(const w_t *w)
{
    return (size_t)(w->end - w->p);
}

/* Room for n more bytes in front of the output: the buffer doubles as
 * often as needed, the output moving to the end of the new one. After a
 * failure the old buffer stays, so writes that find room stay in bounds. */
static bool s_grow(w_t *w, size_t n)
{
    if (w->failed)
        return false;
    size_t used = s_written(w), cap = (size_t)(w->end - w->buf) + HEAD_ROOM;
    do
        cap *= 2;
    while (cap - HEAD_ROOM - used < n);
    uint8_t *m = s_map(cap);
    if (!m) {
        w->failed = true;
        return false;
    }
    memcpy(m + cap - used, w->p, used);
    s_unmap(w->buf - HEAD_ROOM);
    w->buf = m + HEAD_ROOM;
    w->end = m + cap;
    w->p = w->end - used;
    return true;
}

static inline bool s_room(w_t *w, size_t n)
{
    return (size_t)(w->p - w->buf) >= n || s_grow(w, n);
}

/* The writers below assume room (HEAD_MAX covers any two of them). */
static void s_varint(w_t *w, uint64_t v)
{
    size_t n = v < 0x80 ? 1 : (size_t)(70 - __builtin_clzll(v)) / 7;
    uint8_t *o = w->p -= n;

    while (v >= 0x80) {
        *o++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *o = (uint8_t)v;
}

static void s_fixed(w_t *w, uint64_t v, size_t n)
{
    w->p -= n;
    for (size_t i = 0; i < n; i++)
        w->p[i] = (uint8_t)(v >> (8 * i));   /* little-endian whatever the host */
}

static void s_tag(w_t *w, uint32_t id, ProtobufCWireType wire)
{
    s_varint(w, (uint64_t)id << 3 | wire);
}

static void s_bytes(w_t *w, const void *data, size_t n)
{
    w->p -= n;
    if (n)
        memcpy(w->p, data, n);
}

/* A value of a type that is neither length-prefixed nor a message. */
static ProtobufCWireType s_scalar(w_t *w, ProtobufCType type, const void *v)
{
    uint32_t u32;
    uint64_t u64;
    int32_t i32;
    int64_t i64;

    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_ENUM:   /* a negative one takes ten bytes, as int64's */
        memcpy(&i32, v, 4);
        s_varint(w, (uint64_t)(int64_t)i32);
        return PROTOBUF_C_WIRE_TYPE_VARINT;
    case PROTOBUF_C_TYPE_SINT32:
        memcpy(&u32, v, 4);
        s_varint(w, (u32 << 1) ^ (0u - (u32 >> 31)));   /* zigzag */
        return PROTOBUF_C_WIRE_TYPE_VARINT;
    case PROTOBUF_C_TYPE_UINT32:
        memcpy(&u32, v, 4);
        s_varint(w, u32);
        return PROTOBUF_C_WIRE_TYPE_VARINT;
    case PROTOBUF_C_TYPE_SINT64:
        memcpy(&u64, v, 8);
        s_varint(w, (u64 << 1) ^ (0u - (u64 >> 63)));
        return PROTOBUF_C_WIRE_TYPE_VARINT;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
        memcpy(&i64, v, 8);
        s_varint(w, (uint64_t)i64);
        return PROTOBUF_C_WIRE_TYPE_VARINT;
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        memcpy(&u32, v, 4);
        s_fixed(w, u32, 4);
        return PROTOBUF_C_WIRE_TYPE_32BIT;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        memcpy(&u64, v, 8);
        s_fixed(w, u64, 8);
        return PROTOBUF_C_WIRE_TYPE_64BIT;
    case PROTOBUF_C_TYPE_BOOL:
        s_varint(w, *(const protobuf_c_boolean *)v ? 1 : 0);
        return PROTOBUF_C_WIRE_TYPE_VARINT;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        break;
    }
    abort();   /* a descriptor protobuf-c would not have made */
}

static size_t s_elt_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_INT64:
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

static void s_message(w_t *w, const ProtobufCMessage *m);

/* One field's value with its tag. A NULL string or message is written
 * empty, as protobuf-c does for a required one (in a repeated one, where
 * protobuf-c would crash, too). */
static inline void s_value(w_t *w, const ProtobufCFieldDescriptor *f, const void *member)
{
    ProtobufCWireType wire = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;

    if (f->type == PROTOBUF_C_TYPE_STRING) {
        const char *s = *(char *const *)member;
        size_t n = s ? strlen(s) : 0;
        if (!s_room(w, n + HEAD_MAX))
            return;
        s_bytes(w, s, n);
        s_varint(w, n);
    } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
        const ProtobufCBinaryData *b = member;
        if (!s_room(w, b->len + HEAD_MAX))
            return;
        s_bytes(w, b->data, b->len);
        s_varint(w, b->len);
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;
        size_t before = s_written(w);
        if (sub)
            s_message(w, sub);
        if (!s_room(w, HEAD_MAX))
            return;
        s_varint(w, s_written(w) - before);
    } else {
        if (!s_room(w, HEAD_MAX))
            return;
        wire = s_scalar(w, f->type, member);
    }
    s_tag(w, f->id, wire);
}

static void s_repeated(w_t *w, const ProtobufCFieldDescriptor *f, size_t n, const void *array)
{
    size_t size = s_elt_size(f->type);
    const char *a = array;

    if (n == 0)
        return;
    if (!(f->flags & PROTOBUF_C_FIELD_FLAG_PACKED)) {
        for (size_t i = n; i-- > 0 && !w->failed;)
            s_value(w, f, a + i * size);
        return;
    }
    size_t before = s_written(w);   /* packed: one tag, one length, the values */
    for (size_t i = n; i-- > 0;) {
        if (!s_room(w, HEAD_MAX))
            return;
        s_scalar(w, f->type, a + i * size);
    }
    if (!s_room(w, HEAD_MAX))
        return;
    s_varint(w, s_written(w) - before);
    s_tag(w, f->id, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
}

/* A proto3 field (no label) is left out at its zero value. */
static bool s_zero(const ProtobufCFieldDescriptor *f, const void *member)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)member == 0;
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
        return *(const uint32_t *)member == 0;
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)member == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)member == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)member == 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)member;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)member)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)member == NULL;
    }
    return true;
}

/* Whether a field that is not repeated is written: protobuf-c's rules. */
static bool s_present(const ProtobufCFieldDescriptor *f, const void *member, const void *quantifier)
{
    if (f->label == PROTOBUF_C_LABEL_NONE && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return !s_zero(f, member);   /* proto3's, the most common: first */
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;

    bool pointer = f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;
    const void *p = pointer ? *(const void *const *)member : NULL;

    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)quantifier == f->id && (!pointer || (p && p != f->default_value));
    return pointer ? p && p != f->default_value : *(const protobuf_c_boolean *)quantifier;   /* optional */
}

/* The fields last to first, after the unknown ones, which protobuf-c
 * writes at the end. */
static void s_message(w_t *w, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;

    for (size_t i = m->n_unknown_fields; i-- > 0;) {
        const ProtobufCMessageUnknownField *u = &m->unknown_fields[i];
        if (!s_room(w, u->len + HEAD_MAX))
            return;
        s_bytes(w, u->data, u->len);
        s_tag(w, u->tag, u->wire_type);
    }
    for (size_t i = d->n_fields; i-- > 0 && !w->failed;) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *member = base + f->offset, *quantifier = base + f->quantifier_offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            s_repeated(w, f, *(const size_t *)quantifier, *(void *const *)member);
        else if (s_present(f, member, quantifier))
            s_value(w, f, member);
    }
}

const uint8_t *pbpack(const ProtobufCMessage *msg, size_t *len)
{
    if (t_map && ((head_t *)t_map)->cap > KEEP_CAP) {   /* the last message was a large one */
        s_unmap(t_map);
        s_keep(NULL);
    }
    if (!t_map) {
        uint8_t *m = s_map(START_CAP);
        if (!m)
            return NULL;
        s_keep(m);
    }
    size_t cap = ((head_t *)t_map)->cap;
    w_t w = {t_map + HEAD_ROOM, t_map + cap, t_map + cap, false};
    s_message(&w, msg);
    if (w.buf != t_map + HEAD_ROOM)
        s_keep(w.buf - HEAD_ROOM);
    if (w.failed)
        return NULL;
    *len = s_written(&w);
    return w.p;
}
