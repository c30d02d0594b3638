/* shopctl: the operator's command line. Calls any method of any service
 * with JSON arguments, prints replies and events as JSON. Everything goes
 * through the protobuf descriptors (pbjson): a new service or method needs
 * no change here.
 *
 * Exit status: 0 OK, 1 usage or input error, 2 the service answered with
 * an error status, 3 the service did not answer. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "client.h"
#include "jsoncall.h"
#include "pbjson.h"
#include "shop/common/v1/common.pb-c.h"
#include "status.h"
#include "util.h"

#define EXIT_USAGE       1
#define EXIT_STATUS      2
#define EXIT_UNREACHABLE 3
#define REPLAY_METHOD    "shop.common.v1.EventService/Replay"
#define REPLAY_BATCH     500

static const char s_usage[] =
    "usage: shopctl [--timeout MS] [--key KEY] [--endpoint URL] <command>\n"
    "\n"
    "  call <service> <Method> [JSON]   call a method; JSON from the argument, or stdin\n"
    "                                   when it is '-' or missing; prints the reply\n"
    "  methods <service>                list the service's methods and their types\n"
    "  describe <type>                  the fields of a message (shop.catalog.v1.Sku)\n"
    "                                   or of a method's request (catalog ReserveStock)\n"
    "  events <service> [--from N] [--count K]\n"
    "                                   print the service's events after sequence N\n"
    "                                   (default: from now), one JSON object a line;\n"
    "                                   with --count, at most K that exist, then stop;\n"
    "                                   without, keep following until Ctrl-C\n"
    "\n"
    "Services are found at SHOP_<SERVICE>_RPC / SHOP_<SERVICE>_PUB (e.g.\n"
    "SHOP_CATALOG_RPC=tcp://10.0.0.5:7101), else on 127.0.0.1 at the default\n"
    "ports (catalog 7101/7102, promotions 7111/7112, orders 7121/7122,\n"
    "fulfilment 7131/7132, outreach 7141/7142). --endpoint overrides the RPC one.\n"
    "Exit status: 0 OK, 1 usage or input error, 2 error status, 3 no answer.\n";

typedef struct {
    int timeout_ms;
    const char *key;
    const char *endpoint;
} opts_t;

static volatile sig_atomic_t s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static int s_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int s_usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "shopctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(shopctl --help for usage)\n");
    return EXIT_USAGE;
}

/* --- services and endpoints ------------------------------------------------- */

static const struct {
    const char *name;
    int port;
} s_ports[] = {
    {"catalog", 7101}, {"promotions", 7111}, {"orders", 7121},
    {"fulfilment", 7131}, {"outreach", 7141},
};

/* The endpoint of `service`: SHOP_<SERVICE>_<KIND> or the default port
 * (+1 for PUB). Empty if unknown. */
static void s_endpoint(const char *service, const char *kind, char *out, size_t len)
{
    char var[96];
    size_t o = (size_t)snprintf(var, sizeof var, "SHOP_");

    for (const char *p = service; *p && o + 8 < sizeof var; p++)
        var[o++] = (char)toupper((unsigned char)*p);
    snprintf(var + o, sizeof var - o, "_%s", kind);
    const char *env = getenv(var);
    out[0] = '\0';
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    for (size_t i = 0; i < sizeof s_ports / sizeof s_ports[0]; i++)
        if (strcmp(s_ports[i].name, service) == 0)
            snprintf(out, len, "tcp://127.0.0.1:%d",
                     s_ports[i].port + (strcmp(kind, "PUB") == 0 ? 1 : 0));
}

/* The service block of `service`: the one in package shop.<service>.v* (the
 * newest version if there are several), not the common EventService. */
static const ProtobufCServiceDescriptor *s_service(const char *service)
{
    const ProtobufCServiceDescriptor *best = NULL;
    char prefix[96];

    snprintf(prefix, sizeof prefix, "shop.%s.v", service);
    for (size_t i = 0; shop_registry_services[i]; i++) {
        const ProtobufCServiceDescriptor *d = shop_registry_services[i];
        if (strncmp(d->name, prefix, strlen(prefix)) == 0 &&
            (!best || strcmp(d->name, best->name) > 0))
            best = d;
    }
    return best;
}

static const ProtobufCMethodDescriptor *s_method(const ProtobufCServiceDescriptor *svc,
                                                 const char *name)
{
    for (unsigned i = 0; i < svc->n_methods; i++)
        if (strcmp(svc->methods[i].name, name) == 0)
            return &svc->methods[i];
    return NULL;
}

static void s_print(json_t *j, size_t flags)
{
    char *text = json_dumps(j, flags | JSON_PRESERVE_ORDER);

    if (text) {
        puts(text);
        free(text);
    }
    fflush(stdout);
}

/* --- call ------------------------------------------------------------------------ */

static char *s_read_stdin(void)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);

    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, stdin);
        len += n;
        if (n == 0)
            break;
        if (len + 1 == cap) {
            char *more = realloc(buf, cap * 2);
            if (!more)
                free(buf);
            buf = more;
            cap *= 2;
        }
    }
    if (buf)
        buf[len] = '\0';
    return buf;
}

static int s_call(const opts_t *o, const char *service, const char *method, const char *text)
{
    const ProtobufCServiceDescriptor *svc = s_service(service);
    char endpoint[256], err[300];
    char *input = NULL, *message = NULL;
    json_t *json, *out = NULL;
    json_error_t jerr;
    status_t code;
    client_t *c;
    int rc;

    if (!svc)
        return s_usage_error("no service %s", service);
    if (!s_method(svc, method)) {
        fprintf(stderr, "shopctl: %s has no method %s; it has:", svc->name, method);
        for (unsigned i = 0; i < svc->n_methods; i++)
            fprintf(stderr, " %s", svc->methods[i].name);
        fprintf(stderr, "\n");
        return EXIT_USAGE;
    }
    if (o->endpoint)
        snprintf(endpoint, sizeof endpoint, "%s", o->endpoint);
    else
        s_endpoint(service, "RPC", endpoint, sizeof endpoint);
    if (!endpoint[0])
        return s_usage_error("no endpoint for %s: set SHOP_<SERVICE>_RPC or --endpoint", service);
    if (!text || strcmp(text, "-") == 0)
        text = input = s_read_stdin();
    json = text && *text ? json_loads(text, JSON_REJECT_DUPLICATES, &jerr) : json_object();
    free(input);
    if (!json) {
        fprintf(stderr, "shopctl: the arguments are not JSON: %s (at character %d)\n", jerr.text,
                jerr.position);
        return EXIT_USAGE;
    }
    if (!(c = client_new(NULL, endpoint))) {
        json_decref(json);
        fprintf(stderr, "shopctl: cannot use the endpoint %s\n", endpoint);
        return EXIT_UNREACHABLE;
    }
    /* one attempt: a retry without an idempotency key could apply twice */
    rc = jsoncall(c, svc->name, method, json, o->key, o->timeout_ms, o->key ? 3 : 1,
                  PBJSON_DEFAULTS, &code, &out, &message, err, sizeof err);
    json_decref(json);
    bool replied = client_replied(c);
    client_destroy(&c);
    if (rc != 0) {
        fprintf(stderr, "shopctl: %s/%s: %s\n", svc->name, method, err);
        return EXIT_USAGE;   /* nothing was sent */
    }
    if (out)
        s_print(out, JSON_INDENT(2));
    json_decref(out);
    if (code == STATUS_OK) {
        rc = 0;
    } else if (!replied) {
        fprintf(stderr, "error: no answer from %s at %s within %d ms: %s\n", service, endpoint,
                o->timeout_ms, message ? message : "");
        rc = EXIT_UNREACHABLE;
    } else {
        fprintf(stderr, "error: %s: %s\n", status_name(code), message ? message : "");
        rc = EXIT_STATUS;
    }
    free(message);
    return rc;
}

/* --- methods, describe ----------------------------------------------------------- */

static int s_methods(const char *service)
{
    const ProtobufCServiceDescriptor *svc = s_service(service);

    if (!svc)
        return s_usage_error("no service %s", service);
    printf("%s\n", svc->name);
    for (unsigned i = 0; i < svc->n_methods; i++)
        printf("  %-22s %s -> %s\n", svc->methods[i].name, svc->methods[i].input->name,
               svc->methods[i].output->name);
    return 0;
}

static const char *s_type_name(const ProtobufCFieldDescriptor *f)
{
    static const char *const names[] = {
        [PROTOBUF_C_TYPE_INT32] = "int32",     [PROTOBUF_C_TYPE_SINT32] = "sint32",
        [PROTOBUF_C_TYPE_SFIXED32] = "sfixed32", [PROTOBUF_C_TYPE_INT64] = "int64 (JSON string)",
        [PROTOBUF_C_TYPE_SINT64] = "sint64 (JSON string)",
        [PROTOBUF_C_TYPE_SFIXED64] = "sfixed64 (JSON string)",
        [PROTOBUF_C_TYPE_UINT32] = "uint32",   [PROTOBUF_C_TYPE_FIXED32] = "fixed32",
        [PROTOBUF_C_TYPE_UINT64] = "uint64 (JSON string)",
        [PROTOBUF_C_TYPE_FIXED64] = "fixed64 (JSON string)",
        [PROTOBUF_C_TYPE_FLOAT] = "float",     [PROTOBUF_C_TYPE_DOUBLE] = "double",
        [PROTOBUF_C_TYPE_BOOL] = "bool",       [PROTOBUF_C_TYPE_STRING] = "string",
        [PROTOBUF_C_TYPE_BYTES] = "bytes (base64)",
    };
    if (f->type == PROTOBUF_C_TYPE_ENUM)
        return ((const ProtobufCEnumDescriptor *)f->descriptor)->name;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return ((const ProtobufCMessageDescriptor *)f->descriptor)->name;
    return names[f->type];
}

static int s_describe(const char *a, const char *b)
{
    const ProtobufCMessageDescriptor *d = NULL;

    if (b) {
        const ProtobufCServiceDescriptor *svc = s_service(a);
        const ProtobufCMethodDescriptor *m = svc ? s_method(svc, b) : NULL;
        if (!m)
            return s_usage_error("no such method: %s", b);
        d = m->input;
    } else if (!(d = pbjson_message_type(a))) {
        return s_usage_error("no message type %s (give its full name: shop.catalog.v1.Sku)", a);
    }
    printf("%s\n", d->name);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char jn[128];
        pbjson_json_name(f->name, jn, sizeof jn);
        printf("  %-24s %s%s\n", jn, f->label == PROTOBUF_C_LABEL_REPEATED ? "repeated " : "",
               s_type_name(f));
        if (f->type == PROTOBUF_C_TYPE_ENUM) {
            const ProtobufCEnumDescriptor *e = f->descriptor;
            for (unsigned k = 0; k < e->n_values; k++)
                printf("  %-24s   %s\n", "", e->values[k].name);
        }
    }
    return 0;
}

/* --- events ---------------------------------------------------------------------- */

/* Prints one envelope as a line, the payload decoded by its type. */
static void s_print_event(const Shop__Common__V1__Envelope *ev)
{
    json_t *j = pbjson_from_message(&ev->base, 0);
    const ProtobufCMessageDescriptor *d = pbjson_message_type(ev->type);
    ProtobufCMessage *payload =
        d ? protobuf_c_message_unpack(d, NULL, ev->payload.len, ev->payload.data) : NULL;

    if (!j)
        return;
    if (payload) {
        json_object_set_new(j, "payload", pbjson_from_message(payload, 0));
        protobuf_c_message_free_unpacked(payload, NULL);
    }
    s_print(j, JSON_COMPACT);
    json_decref(j);
}

/* Replays after *cursor, printing up to *left events (negative: no bound).
 * Returns the number printed, or -1 when the service did not answer. */
static int s_replay(const opts_t *o, client_t *c, uint64_t *cursor, int64_t *left,
                    uint64_t *head)
{
    Shop__Common__V1__ReplayRequest req = SHOP__COMMON__V1__REPLAY_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char *message = NULL;
    int printed = 0;

    req.after_sequence = *cursor;
    req.limit = *left >= 0 && *left < REPLAY_BATCH ? (uint32_t)*left : REPLAY_BATCH;
    status_t code = client_call(c, REPLAY_METHOD, &req.base,
                                &shop__common__v1__replay_response__descriptor, &resp, NULL,
                                o->timeout_ms, 2, &message);
    if (code != STATUS_OK) {
        fprintf(stderr, "error: Replay: %s: %s\n", status_name(code), message ? message : "");
        free(message);
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        return -1;
    }
    free(message);
    const Shop__Common__V1__ReplayResponse *r = (const void *)resp;
    *head = r->head_sequence;
    for (size_t i = 0; i < r->n_events && *left != 0; i++) {
        if (r->events[i]->sequence <= *cursor)
            continue;
        s_print_event(r->events[i]);
        *cursor = r->events[i]->sequence;
        if (*left > 0)
            (*left)--;
        printed++;
    }
    protobuf_c_message_free_unpacked(resp, NULL);
    return printed;
}

static int s_events(const opts_t *o, const char *service, int64_t from, int64_t count)
{
    char rpc[256], pub[256];
    uint64_t cursor = from >= 0 ? (uint64_t)from : 0, head = 0;
    int64_t left = count;
    client_t *c;
    void *zctx = NULL, *sub = NULL;
    int rc = 0;

    if (o->endpoint)
        snprintf(rpc, sizeof rpc, "%s", o->endpoint);
    else
        s_endpoint(service, "RPC", rpc, sizeof rpc);
    s_endpoint(service, "PUB", pub, sizeof pub);
    if (!rpc[0])
        return s_usage_error("no endpoint for %s: set SHOP_<SERVICE>_RPC or --endpoint", service);
    if (!(c = client_new(NULL, rpc)))
        return EXIT_UNREACHABLE;
    if (from < 0) {
        /* from now: learn the head without printing anything */
        int64_t zero = 0;
        if (s_replay(o, c, &cursor, &zero, &head) < 0) {
            client_destroy(&c);
            return EXIT_UNREACHABLE;
        }
        cursor = head;
    }
    if (count < 0 && pub[0]) {
        /* following: any message on PUB (event or heartbeat) wakes the
         * loop; Replay does the ordered, gap-free reading */
        int linger = 0;
        zctx = zmq_ctx_new();
        sub = zmq_socket(zctx, ZMQ_SUB);
        zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
        if (zmq_connect(sub, pub) != 0) {
            zmq_close(sub);
            sub = NULL;
        }
    }
    int64_t behind_since = 0;   /* when Replay last returned nothing below its head */
    while (!s_stop && left != 0) {
        int n = s_replay(o, c, &cursor, &left, &head);
        if (n < 0) {
            rc = EXIT_UNREACHABLE;
            break;
        }
        if (n > 0) {
            behind_since = 0;
            continue;
        }
        if (cursor < head) {
            /* numbered, not yet read back (the head is read after the
             * events): again in a moment, not in a tight loop, and with
             * --count not for longer than the call time-out */
            int64_t now = util_mono_us();
            if (!behind_since)
                behind_since = now;
            else if (count >= 0 && now - behind_since > (int64_t)o->timeout_ms * 1000) {
                fprintf(stderr, "error: Replay: the head is at %" PRIu64 " but nothing after %" PRIu64
                                " comes back\n", head, cursor);
                rc = EXIT_UNREACHABLE;
                break;
            }
            zmq_poll(NULL, 0, 10);
            continue;
        }
        if (count >= 0)
            break;   /* at the head: --count stops here */
        if (sub) {
            zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&item, 1, 1000) > 0) {
                char buf[256];
                while (zmq_recv(sub, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {
                }
            }
        } else {
            zmq_poll(NULL, 0, 500);
        }
    }
    if (sub)
        zmq_close(sub);
    if (zctx)
        zmq_ctx_term(zctx);
    client_destroy(&c);
    return rc;
}

/* --- main -------------------------------------------------------------------------- */

static int s_int(const char *flag, const char *v, int64_t min, int64_t *out)
{
    char *end;

    errno = 0;
    long long n = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || n < min) {
        fprintf(stderr, "shopctl: %s needs a whole number of at least %" PRId64 "\n", flag, min);
        return -1;
    }
    *out = n;
    return 0;
}

int main(int argc, char **argv)
{
    opts_t o = {.timeout_ms = 5000};
    int i = 1;
    int64_t v;

    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    signal(SIGPIPE, SIG_IGN);
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(s_usage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--timeout") == 0) {
            if (s_int("--timeout", i + 1 < argc ? argv[++i] : NULL, 1, &v) != 0 || v > 3600000)
                return EXIT_USAGE;
            o.timeout_ms = (int)v;
        } else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) {
            o.key = argv[++i];
        } else if (strcmp(argv[i], "--endpoint") == 0 && i + 1 < argc) {
            o.endpoint = argv[++i];
        } else {
            return s_usage_error("unknown option %s", argv[i]);
        }
    }
    if (i >= argc) {
        fputs(s_usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[i++];
    int rest = argc - i;
    if (strcmp(cmd, "call") == 0 && (rest == 2 || rest == 3))
        return s_call(&o, argv[i], argv[i + 1], rest == 3 ? argv[i + 2] : NULL);
    if (strcmp(cmd, "methods") == 0 && rest == 1)
        return s_methods(argv[i]);
    if (strcmp(cmd, "describe") == 0 && (rest == 1 || rest == 2))
        return s_describe(argv[i], rest == 2 ? argv[i + 1] : NULL);
    if (strcmp(cmd, "events") == 0 && rest >= 1) {
        int64_t from = -1, count = -1;
        for (int k = i + 1; k < argc; k++) {
            if (strcmp(argv[k], "--from") == 0) {
                if (s_int("--from", k + 1 < argc ? argv[++k] : NULL, 0, &from) != 0)
                    return EXIT_USAGE;
            } else if (strcmp(argv[k], "--count") == 0) {
                if (s_int("--count", k + 1 < argc ? argv[++k] : NULL, 1, &count) != 0)
                    return EXIT_USAGE;
            } else {
                return s_usage_error("events: unknown option %s", argv[k]);
            }
        }
        return s_events(&o, argv[i], from, count);
    }
    return s_usage_error("cannot read this command line (command %s)", cmd);
}
