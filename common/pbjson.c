/* pbjson: the proto3 JSON mapping over protobuf-c descriptors. */
#include "pbjson.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef const ProtobufCFieldDescriptor field_t;

#define MEMBER(type, msg, off) (*(type *)((char *)(msg) + (off)))
#define MAX_DEPTH 32

/* --- names ------------------------------------------------------------------ */

void pbjson_json_name(const char *name, char *out, size_t len)
{
    size_t o = 0;
    bool up = false;

    for (const char *p = name; *p && o + 1 < len; p++) {
        if (*p == '_') {
            up = true;
            continue;
        }
        out[o++] = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        up = false;
    }
    out[o] = '\0';
}

static field_t *s_field(const ProtobufCMessageDescriptor *d, const char *key)
{
    char jn[128];

    for (unsigned i = 0; i < d->n_fields; i++) {
        pbjson_json_name(d->fields[i].name, jn, sizeof jn);
        if (strcmp(jn, key) == 0 || strcmp(d->fields[i].name, key) == 0)
            return &d->fields[i];
    }
    return NULL;
}

/* --- base64 (RFC 4648; the decoder also takes the URL-safe alphabet) -------- */

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *s_b64_encode(const uint8_t *data, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        *o++ = s_b64[(v >> 18) & 63];
        *o++ = s_b64[(v >> 12) & 63];
        *o++ = i + 1 < len ? s_b64[(v >> 6) & 63] : '=';
        *o++ = i + 2 < len ? s_b64[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static int s_b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decodes into a malloc'd buffer; -1 if `s` is not base64. */
static int s_b64_decode(const char *s, uint8_t **out, size_t *outlen)
{
    size_t n = strlen(s);
    uint8_t *buf;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    while (n > 0 && s[n - 1] == '=')
        n--;
    buf = malloc(n * 3 / 4 + 1);
    if (!buf)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = s_b64_value(s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *outlen = o;
    return 0;
}

/* --- message -> JSON ----------------------------------------------------------- */

static json_t *s_from(const ProtobufCMessage *msg, int flags, int depth);

static json_t *s_real(double v)
{
    if (isnan(v))
        return json_string("NaN");
    if (isinf(v))
        return json_string(v > 0 ? "Infinity" : "-Infinity");
    return json_real(v);
}

static json_t *s_value_json(field_t *f, const void *p, int flags, int depth)
{
    char buf[32];

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)p);
        return json_string(buf);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)p);
        return json_string(buf);
    case PROTOBUF_C_TYPE_FLOAT: return s_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return s_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL: return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        json_t *j = json_string(s ? s : "");
        /* protobuf-c does not check UTF-8; say so rather than fail */
        return j ? j : json_string("(not valid UTF-8)");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        char *enc = s_b64_encode(b->data, b->len);
        json_t *j = enc ? json_string(enc) : NULL;
        free(enc);
        return j;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? s_from(m, flags, depth + 1) : json_null();
    }
    }
    return NULL;
}

static size_t s_elem_size(field_t *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    default: return 4;
    }
}

/* True if a singular field holds its zero value (proto3: "not set"). */
static bool s_is_zero(field_t *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE: return *(ProtobufCMessage *const *)p == NULL;
    case PROTOBUF_C_TYPE_FLOAT: return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE: return *(const double *)p == 0;
    default: {
        static const uint8_t zero[8];
        return memcmp(p, zero, s_elem_size(f)) == 0;
    }
    }
}

/* Whether a singular field is present, from its label and quantifier. */
static bool s_present(const ProtobufCMessage *msg, field_t *f, const void *p, int flags)
{
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return MEMBER(uint32_t, msg, f->quantifier_offset) == f->id;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
        f->type != PROTOBUF_C_TYPE_MESSAGE)
        return MEMBER(protobuf_c_boolean, msg, f->quantifier_offset);
    if (f->label == PROTOBUF_C_LABEL_REQUIRED)
        return true;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return !s_is_zero(f, p);
    return (flags & PBJSON_DEFAULTS) || !s_is_zero(f, p);
}

static json_t *s_from(const ProtobufCMessage *msg, int flags, int depth)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    json_t *obj = json_object();
    char jn[128];

    if (!obj || depth > MAX_DEPTH) {
        json_decref(obj);
        return NULL;
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        field_t *f = &d->fields[i];
        const char *p = (const char *)msg + f->offset;
        json_t *v;
        pbjson_json_name(f->name, jn, sizeof jn);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = MEMBER(size_t, msg, f->quantifier_offset);
            const char *arr = *(char *const *)p;
            if (n == 0)
                continue;
            v = json_array();
            for (size_t k = 0; v && k < n; k++)
                if (json_array_append_new(v, s_value_json(f, arr + k * s_elem_size(f), flags,
                                                          depth)) != 0) {
                    json_decref(v);
                    v = NULL;
                }
        } else {
            if (!s_present(msg, f, p, flags))
                continue;
            v = s_value_json(f, p, flags, depth);
        }
        if (!v || json_object_set_new(obj, jn, v) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

json_t *pbjson_from_message(const ProtobufCMessage *msg, int flags)
{
    return msg ? s_from(msg, flags, 0) : NULL;
}

/* --- JSON -> message ------------------------------------------------------------ */

typedef struct {
    char *err;
    size_t errlen;
    char path[256];
} parse_t;

static int s_fail(parse_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int s_fail(parse_t *ps, const char *fmt, ...)
{
    char what[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errlen, "%s%s%s", ps->path, ps->path[0] ? ": " : "", what);
    return -1;
}

static ProtobufCMessage *s_new(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = malloc(d->sizeof_message);

    if (m)
        d->message_init(m);
    return m;
}

static int s_to(parse_t *ps, ProtobufCMessage *msg, const json_t *obj, int depth);

/* A signed or unsigned integer from a JSON integer or decimal string. */
static int s_integer(parse_t *ps, const json_t *j, bool is_signed, int64_t lo, uint64_t hi,
                     uint64_t *out)
{
    if (json_is_integer(j)) {
        json_int_t v = json_integer_value(j);
        if ((is_signed && (v < lo || (v > 0 && (uint64_t)v > hi))) ||
            (!is_signed && (v < 0 || (uint64_t)v > hi)))
            return s_fail(ps, "out of range");
        *out = (uint64_t)v;
        return 0;
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        char *end;
        errno = 0;
        if (!*s || (!is_signed && *s == '-'))
            return s_fail(ps, "expected an integer");
        if (is_signed) {
            long long v = strtoll(s, &end, 10);
            if (*end || errno || v < lo || (v > 0 && (uint64_t)v > hi))
                return s_fail(ps, *end ? "expected an integer" : "out of range");
            *out = (uint64_t)v;
        } else {
            unsigned long long v = strtoull(s, &end, 10);
            if (*end || errno || v > hi)
                return s_fail(ps, *end ? "expected an integer" : "out of range");
            *out = v;
        }
        return 0;
    }
    return s_fail(ps, "expected an integer");
}

static int s_double(parse_t *ps, const json_t *j, double *out)
{
    if (json_is_number(j)) {
        *out = json_number_value(j);
        return 0;
    }
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (strcmp(s, "NaN") == 0)
            *out = NAN;
        else if (strcmp(s, "Infinity") == 0)
            *out = INFINITY;
        else if (strcmp(s, "-Infinity") == 0)
            *out = -INFINITY;
        else
            return s_fail(ps, "expected a number");
        return 0;
    }
    return s_fail(ps, "expected a number");
}

/* Parses one value of field f into p (an element or the member itself). */
static int s_value(parse_t *ps, field_t *f, const json_t *j, void *p, int depth)
{
    uint64_t u;
    double dv;

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (s_integer(ps, j, true, INT32_MIN, INT32_MAX, &u) != 0)
            return -1;
        *(int32_t *)p = (int32_t)(int64_t)u;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (s_integer(ps, j, false, 0, UINT32_MAX, &u) != 0)
            return -1;
        *(uint32_t *)p = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (s_integer(ps, j, true, INT64_MIN, INT64_MAX, &u) != 0)
            return -1;
        *(int64_t *)p = (int64_t)u;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (s_integer(ps, j, false, 0, UINT64_MAX, &u) != 0)
            return -1;
        *(uint64_t *)p = u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
        if (s_double(ps, j, &dv) != 0)
            return -1;
        *(float *)p = (float)dv;
        return 0;
    case PROTOBUF_C_TYPE_DOUBLE: return s_double(ps, j, (double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j))
            return s_fail(ps, "expected true or false");
        *(protobuf_c_boolean *)p = json_is_true(j);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        if (json_is_string(j)) {
            const ProtobufCEnumValue *ev =
                protobuf_c_enum_descriptor_get_value_by_name(ed, json_string_value(j));
            if (!ev)
                return s_fail(ps, "%s is not a value of %s", json_string_value(j), ed->name);
            *(int *)p = ev->value;
            return 0;
        }
        if (s_integer(ps, j, true, INT32_MIN, INT32_MAX, &u) != 0)
            return s_fail(ps, "expected a name of %s", ed->name);
        *(int *)p = (int)(int64_t)u;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(j))
            return s_fail(ps, "expected a string");
        char *s = strdup(json_string_value(j));
        if (!s)
            return s_fail(ps, "out of memory");
        *(char **)p = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = p;
        if (!json_is_string(j) || s_b64_decode(json_string_value(j), &b->data, &b->len) != 0)
            return s_fail(ps, "expected base64");
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (!json_is_object(j))
            return s_fail(ps, "expected an object");
        ProtobufCMessage *m = s_new(f->descriptor);
        if (!m)
            return s_fail(ps, "out of memory");
        *(ProtobufCMessage **)p = m;   /* owned by the parent from here on */
        return s_to(ps, m, j, depth + 1);
    }
    }
    return s_fail(ps, "unsupported field type");
}

static int s_repeated(parse_t *ps, ProtobufCMessage *msg, field_t *f, const json_t *arr, int depth)
{
    size_t n = json_array_size(arr), size = s_elem_size(f), plen = strlen(ps->path);
    size_t *count = &MEMBER(size_t, msg, f->quantifier_offset);
    char *elems;

    if (!json_is_array(arr))
        return s_fail(ps, "expected an array");
    if (n == 0)
        return 0;
    elems = calloc(n, size);
    if (!elems)
        return s_fail(ps, "out of memory");
    MEMBER(char *, msg, f->offset) = elems;
    for (size_t k = 0; k < n; k++) {
        snprintf(ps->path + plen, sizeof ps->path - plen, "[%zu]", k);
        /* counted first so a failure inside still frees what was set */
        (*count)++;
        if (s_value(ps, f, json_array_get(arr, k), elems + k * size, depth) != 0)
            return -1;
    }
    ps->path[plen] = '\0';
    return 0;
}

static int s_to(parse_t *ps, ProtobufCMessage *msg, const json_t *obj, int depth)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    size_t plen = strlen(ps->path);
    const char *key;
    json_t *val;

    if (depth > MAX_DEPTH)
        return s_fail(ps, "nested too deeply");
    json_object_foreach((json_t *)obj, key, val) {
        field_t *f = s_field(d, key);
        char jn[128];
        if (!f)
            return s_fail(ps, "%s has no field %s", d->name, key);
        if (json_is_null(val))
            continue;
        pbjson_json_name(f->name, jn, sizeof jn);
        snprintf(ps->path + plen, sizeof ps->path - plen, "%s%s", plen ? "." : "", jn);
        void *p = (char *)msg + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (MEMBER(size_t, msg, f->quantifier_offset) != 0)
                return s_fail(ps, "given twice");
            if (s_repeated(ps, msg, f, val, depth) != 0)
                return -1;
        } else {
            if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                uint32_t *which = &MEMBER(uint32_t, msg, f->quantifier_offset);
                if (*which != 0)
                    return s_fail(ps, "another field of the same oneof is set");
                if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE ||
                    f->type == PROTOBUF_C_TYPE_BYTES)
                    memset(p, 0, s_elem_size(f));   /* the union may hold another member */
                *which = f->id;
            } else if (f->type == PROTOBUF_C_TYPE_STRING) {
                if (*(char **)p != f->default_value && *(char **)p != NULL)
                    return s_fail(ps, "given twice");
            } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(void **)p) {
                return s_fail(ps, "given twice");
            }
            if (s_value(ps, f, val, p, depth) != 0)
                return -1;
            if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
                f->type != PROTOBUF_C_TYPE_MESSAGE && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
                MEMBER(protobuf_c_boolean, msg, f->quantifier_offset) = 1;
        }
        ps->path[plen] = '\0';
    }
    return 0;
}

ProtobufCMessage *pbjson_to_message(const ProtobufCMessageDescriptor *desc, const json_t *json,
                                    char *err, size_t errlen)
{
    parse_t ps = {err, errlen, ""};
    ProtobufCMessage *m;

    if (!json_is_object(json)) {
        snprintf(err, errlen, "expected a JSON object for %s", desc->name);
        return NULL;
    }
    m = s_new(desc);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (s_to(&ps, m, json, 0) != 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        return NULL;
    }
    return m;
}

/* --- registry ---------------------------------------------------------------------- */

const ProtobufCMessageDescriptor *pbjson_message_type(const char *full_name)
{
    for (size_t i = 0; shop_registry_messages[i]; i++)
        if (strcmp(shop_registry_messages[i]->name, full_name) == 0)
            return shop_registry_messages[i];
    return NULL;
}

const ProtobufCServiceDescriptor *pbjson_service_type(const char *full_name)
{
    for (size_t i = 0; shop_registry_services[i]; i++)
        if (strcmp(shop_registry_services[i]->name, full_name) == 0)
            return shop_registry_services[i];
    return NULL;
}
