/* jcall: JSON calls for integration tests. */
#include "jcall.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pbjson.h"

status_t jcall(jcall_t *j, const char *method, const char *fmt, ...)
{
    const ProtobufCServiceDescriptor *svc = pbjson_service_type(j->service);
    const ProtobufCMethodDescriptor *m =
        svc ? protobuf_c_service_descriptor_get_method_by_name(svc, method) : NULL;
    char text[16384], err[256], full[160];
    ProtobufCMessage *req, *resp = NULL;
    char *message = NULL;
    va_list ap;

    json_decref(j->out);
    j->out = NULL;
    j->message[0] = '\0';
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_t *in = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    if (!m || !in) {
        fprintf(stderr, "jcall: bad call %s %s\n", method, text);
        json_decref(in);
        return STATUS_UNKNOWN;
    }
    req = pbjson_to_message(m->input, in, err, sizeof err);
    json_decref(in);
    if (!req) {
        fprintf(stderr, "jcall: %s: %s\n", method, err);
        return STATUS_UNKNOWN;
    }
    snprintf(full, sizeof full, "%s/%s", j->service, method);
    status_t code = client_call(j->client, full, req, m->output, &resp, NULL,
                                j->timeout_ms ? j->timeout_ms : 20000, 1, &message);
    if (resp) {
        j->out = pbjson_from_message(resp, PBJSON_DEFAULTS);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    snprintf(j->message, sizeof j->message, "%s", message ? message : "");
    free(message);
    protobuf_c_message_free_unpacked(req, NULL);
    return code;
}

json_t *jcall_at(const jcall_t *j, const char *path)
{
    json_t *cur = j->out;
    char buf[256], *save = NULL;

    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save)) {
        char *br = strchr(tok, '[');
        if (br)
            *br = '\0';
        cur = json_object_get(cur, tok);
        while (br && cur) {
            cur = json_array_get(cur, strtoul(br + 1, &br, 10));
            br = strchr(br, '[');
        }
    }
    return cur;
}

const char *jcall_str(const jcall_t *j, const char *path)
{
    const char *s = json_string_value(jcall_at(j, path));
    return s ? s : "(none)";
}

long long jcall_num(const jcall_t *j, const char *path)
{
    json_t *v = jcall_at(j, path);

    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return -999999;
}

size_t jcall_len(const jcall_t *j, const char *path)
{
    return json_array_size(jcall_at(j, path));
}

void jcall_done(jcall_t *j)
{
    json_decref(j->out);
    j->out = NULL;
}
