/* admin: /healthz, /readyz and /metrics over evhttp. */
#include "admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slog.h"

struct admin {
    struct evhttp *http;
    metrics_t *metrics;
    admin_ready_fn ready;
    void *ready_arg;
};

/* Reads a "VmRSS:   1234 kB" line of /proc/self/status, in bytes; 0 if absent. */
static long long s_proc_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = 0;
    size_t n = strlen(field);

    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtoll(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

static void s_reply(struct evhttp_request *req, int code, const char *reason, const char *type,
                    const char *body)
{
    struct evbuffer *out = evbuffer_new();

    if (!out) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(out, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void s_metrics(admin_t *a, struct evhttp_request *req)
{
    char *text = metrics_render(a->metrics);
    char mem[512];

    if (!text) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    snprintf(mem, sizeof mem,
             "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
             "# TYPE process_resident_memory_bytes gauge\n"
             "process_resident_memory_bytes %lld\n"
             "# HELP process_max_resident_memory_bytes Peak resident memory size in bytes.\n"
             "# TYPE process_max_resident_memory_bytes gauge\n"
             "process_max_resident_memory_bytes %lld\n",
             s_proc_kb("VmRSS"), s_proc_kb("VmHWM"));
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        free(text);
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(out, text, strlen(text));
    evbuffer_add(out, mem, strlen(mem));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
    free(text);
}

static void s_route(struct evhttp_request *req, void *arg)
{
    admin_t *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    char reason[256] = "";

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        s_reply(req, 405, "Method Not Allowed", "text/plain", "only GET\n");
    } else if (path && strcmp(path, "/healthz") == 0) {
        s_reply(req, 200, "OK", "text/plain", "ok\n");
    } else if (path && strcmp(path, "/readyz") == 0) {
        if (a->ready(a->ready_arg, reason, sizeof reason)) {
            s_reply(req, 200, "OK", "text/plain", "ready\n");
        } else {
            strncat(reason, "\n", sizeof reason - strlen(reason) - 1);
            s_reply(req, 503, "Service Unavailable", "text/plain", reason);
        }
    } else if (path && strcmp(path, "/metrics") == 0) {
        s_metrics(a, req);
    } else {
        s_reply(req, 404, "Not Found", "text/plain", "not found: try /healthz, /readyz, /metrics\n");
    }
}

admin_t *admin_new(struct event_base *base, const char *addr, int port, metrics_t *m,
                   admin_ready_fn ready, void *ready_arg)
{
    admin_t *a = calloc(1, sizeof *a);

    if (!a)
        goto fail;
    a->metrics = m;
    a->ready = ready;
    a->ready_arg = ready_arg;
    a->http = evhttp_new(base);
    if (!a->http)
        goto fail;
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_body_size(a->http, 4096);
    evhttp_set_max_headers_size(a->http, 8192);
    evhttp_set_timeout(a->http, 10);
    evhttp_set_gencb(a->http, s_route, a);
    if (evhttp_bind_socket(a->http, addr, (ev_uint16_t)port) != 0) {
        slog_error("SHOP_ADMIN_ADDR/SHOP_ADMIN_PORT: cannot bind the admin port %s:%d", addr, port);
        goto fail;
    }
    return a;
fail:
    admin_destroy(&a);
    return NULL;
}

void admin_destroy(admin_t **p)
{
    if (!p || !*p)
        return;
    if ((*p)->http)
        evhttp_free((*p)->http);
    free(*p);
    *p = NULL;
}
