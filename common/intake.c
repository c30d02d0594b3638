/* intake: published messages taken in as calls to the service's own
 * methods. */
#include "intake.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "client.h"
#include "slog.h"
#include "status.h"
#include "util.h"

#define INTAKE_POLL_MS 200
#define INTAKE_CALL_MS 10000
/* A call refused for a passing reason (the database or a service the
 * method calls unavailable, a concurrent attempt, the service overloaded)
 * is made again after pauses of 100 ms, 200, 400 ... at most 5 s, no new
 * try starting after a minute: the message exists nowhere else, and the
 * methods taken in this way are idempotent (ImportOrder by channel and
 * external id). */
#define INTAKE_RETRY_FIRST_MS 100
#define INTAKE_RETRY_MAX_MS 5000
#define INTAKE_RETRY_FOR_MS 60000
/* Room for the Request envelope around a body (request id, method,
 * deadline and the fields' tags and lengths), besides the method's name. */
#define INTAKE_ENVELOPE 128

struct intake {
    void *sub;
    client_t *self;
    char *topic, *full_method;
    const ProtobufCMethodDescriptor *method;
    size_t max_bytes;
    metrics_t *metrics;
    pthread_t thread;
    bool started;
    atomic_bool stop;
};

static bool s_passing(status_t st)
{
    /* RESOURCE_EXHAUSTED is also "too large", but a body that would be
     * is dropped before any call (see s_take) */
    return st == STATUS_UNAVAILABLE || st == STATUS_ABORTED || st == STATUS_DEADLINE_EXCEEDED ||
           st == STATUS_RESOURCE_EXHAUSTED;
}

/* Waits `ms`, a poll interval at a time; false if told to stop meanwhile. */
static bool s_pause(intake_t *in, int64_t ms)
{
    for (int64_t left = ms; left > 0 && !atomic_load(&in->stop); left -= INTAKE_POLL_MS)
        util_sleep_ms(left < INTAKE_POLL_MS ? left : INTAKE_POLL_MS);
    return !atomic_load(&in->stop);
}

/* One message: [topic, body]. */
static void s_take(intake_t *in, zmq_msg_t *parts, int n)
{
    if (n != 2) {
        slog_warn("intake %s: a message of %d frames (expected topic and body); dropped", in->topic, n);
        metrics_intake_dropped(in->metrics, METRICS_DROP_MALFORMED);
        return;
    }
    size_t len = zmq_msg_size(&parts[1]), room = strlen(in->full_method) + INTAKE_ENVELOPE;
    if (len + room > in->max_bytes) {   /* the call, with its envelope, would be too large */
        slog_warn("intake %s: a message of %zu bytes (at most %zu); dropped", in->topic, len,
                  in->max_bytes > room ? in->max_bytes - room : 0);
        metrics_intake_dropped(in->metrics, METRICS_DROP_TOO_LARGE);
        return;
    }
    ProtobufCMessage *req = protobuf_c_message_unpack(in->method->input, NULL, len, zmq_msg_data(&parts[1]));
    if (!req) {
        slog_warn("intake %s: a body that is not a %s; dropped", in->topic, in->method->input->name);
        metrics_intake_dropped(in->metrics, METRICS_DROP_MALFORMED);
        return;
    }
    ProtobufCMessage *resp = NULL;
    char *msg = NULL;
    int64_t wait_ms = INTAKE_RETRY_FIRST_MS, give_up_us = util_mono_us() + INTAKE_RETRY_FOR_MS * 1000LL;
    status_t st = STATUS_UNAVAILABLE;
    bool stopping = false;
    for (;;) {
        if ((stopping = atomic_load(&in->stop)))
            break;
        st = client_call(in->self, in->full_method, req, in->method->output, &resp, NULL,
                         INTAKE_CALL_MS, 1, &msg);
        if (!s_passing(st) || util_mono_us() + wait_ms * 1000 > give_up_us)
            break;
        slog_info("intake %s: %s: %s: %s; trying again in %lld ms", in->topic, in->method->name,
                  status_name(st), msg ? msg : "", (long long)wait_ms);
        free(msg);
        msg = NULL;
        if (resp)
            protobuf_c_message_free_unpacked(resp, NULL);
        resp = NULL;
        if ((stopping = !s_pause(in, wait_ms)))
            break;
        wait_ms = wait_ms * 2 < INTAKE_RETRY_MAX_MS ? wait_ms * 2 : INTAKE_RETRY_MAX_MS;
    }
    if (stopping) {
        slog_warn("intake %s: the service is stopping; a message not taken in is dropped", in->topic);
        metrics_intake_dropped(in->metrics, METRICS_DROP_STOPPING);
    } else if (st == STATUS_OK) {
        slog_debug("intake %s: taken in", in->topic);
    } else {
        slog_warn("intake %s: %s refused it: %s: %s; dropped", in->topic, in->method->name,
                  status_name(st), msg ? msg : "");
        metrics_intake_dropped(in->metrics, METRICS_DROP_REFUSED);
    }
    free(msg);
    if (resp)
        protobuf_c_message_free_unpacked(resp, NULL);
    protobuf_c_message_free_unpacked(req, NULL);
}

static void *s_main(void *arg)
{
    intake_t *in = arg;
    zmq_pollitem_t item = {in->sub, 0, ZMQ_POLLIN, 0};

    util_thread_name("intake");
    while (!atomic_load(&in->stop)) {
        if (zmq_poll(&item, 1, INTAKE_POLL_MS) <= 0)
            continue;
        zmq_msg_t parts[2];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, in->sub, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (n < 2)
                parts[n] = m;
            else
                zmq_msg_close(&m);
            n++;
        }
        if (n > 0)
            s_take(in, parts, n);
        for (int i = 0; i < n && i < 2; i++)
            zmq_msg_close(&parts[i]);
    }
    return NULL;
}

intake_t *intake_new(void *zctx, const char *endpoints, const char *topic, const char *self,
                     const ProtobufCMethodDescriptor *method, const char *full_method,
                     size_t max_bytes, metrics_t *metrics)
{
    intake_t *in = calloc(1, sizeof *in);
    int linger = 0;
    int64_t cap = (int64_t)max_bytes + 1024;
    char *list = NULL;

    if (!in || !(in->topic = strdup(topic)) || !(in->full_method = strdup(full_method)) ||
        !(list = strdup(endpoints)))
        goto fail;
    in->method = method;
    in->max_bytes = max_bytes;
    in->metrics = metrics;
    if (metrics)
        metrics_intake_on(metrics);   /* before the thread, and the admin loop, start */
    if (!(in->sub = zmq_socket(zctx, ZMQ_SUB)))
        goto fail;
    zmq_setsockopt(in->sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(in->sub, ZMQ_MAXMSGSIZE, &cap, sizeof cap);
    zmq_setsockopt(in->sub, ZMQ_SUBSCRIBE, topic, strlen(topic));
    for (char *save = NULL, *e = strtok_r(list, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
        while (*e == ' ')
            e++;
        if (!*e)
            continue;
        if (zmq_connect(in->sub, e) != 0) {
            slog_error("intake: cannot connect to %s: %s", e, zmq_strerror(errno));
            goto fail;
        }
        slog_info("intake: taking %s from %s into %s", topic, e, method->name);
    }
    if (!(in->self = client_new(zctx, self)))
        goto fail;
    if (pthread_create(&in->thread, NULL, s_main, in) != 0)
        goto fail;
    in->started = true;
    free(list);
    return in;
fail:
    free(list);
    intake_destroy(&in);
    return NULL;
}

void intake_stop(intake_t *in)
{
    if (in)
        atomic_store(&in->stop, true);
}

void intake_destroy(intake_t **p)
{
    intake_t *in = p ? *p : NULL;

    if (!in)
        return;
    atomic_store(&in->stop, true);
    if (in->started)
        pthread_join(in->thread, NULL);
    if (in->sub)
        zmq_close(in->sub);
    client_destroy(&in->self);
    free(in->topic);
    free(in->full_method);
    free(in);
    *p = NULL;
}
