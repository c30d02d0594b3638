/* jcall: JSON calls for integration tests. */
#include "jcall.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsoncall.h"
#include "pbjson.h"
#include "util.h"

static status_t s_call_text(jcall_t *j, const char *method, const char *text)
{
    char err[256], *message = NULL;
    status_t code = STATUS_UNKNOWN;

    json_decref(j->out);
    j->out = NULL;
    j->message[0] = '\0';
    json_t *in = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    if (!in || jsoncall(j->client, j->service, method, in, j->key, j->timeout_ms ? j->timeout_ms : 20000,
                        1, PBJSON_DEFAULTS, &code, &j->out, &message, err, sizeof err) != 0) {
        fprintf(stderr, "jcall: bad call %s %s%s%s\n", method, text, in ? ": " : "", in ? err : "");
        json_decref(in);
        return STATUS_UNKNOWN;
    }
    json_decref(in);
    snprintf(j->message, sizeof j->message, "%s", message ? message : "");
    free(message);
    return code;
}

status_t jcall(jcall_t *j, const char *method, const char *fmt, ...)
{
    char text[16384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return s_call_text(j, method, text);
}

status_t jcall_until_ok(jcall_t *j, int timeout_ms, const char *method, const char *fmt, ...)
{
    char text[16384];
    status_t code = STATUS_UNKNOWN;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    for (int waited = 0; waited <= timeout_ms; waited += 100) {
        if ((code = s_call_text(j, method, text)) == STATUS_OK)
            break;
        util_sleep_ms(100);
    }
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
