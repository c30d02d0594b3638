/* listen: one thread, one connection, LISTEN <channel>, and a poll on the
 * connection's socket that wakes for notifications or every 250 ms to see
 * whether it is asked to stop. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listen.h"
#include "slog.h"
#include "util.h"

struct listener {
    char *conninfo;
    char schema[64];
    char command[96];   /* LISTEN <channel> */
    listen_fn fn;
    pthread_t thread;
    atomic_bool stop;
};

static bool s_identifier(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 63 || !((*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* Hands each notification to fn until the connection fails or stop. */
static void s_listen(listener_t *l, db_t *db)
{
    PGconn *conn = db_conn(db);

    l->fn(db, NULL);
    while (!atomic_load(&l->stop)) {
        struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
        if (p.fd < 0)
            return;
        int n = poll(&p, 1, 250);
        if (n < 0)
            continue;   /* EINTR */
        if (n == 0)
            continue;
        if (!PQconsumeInput(conn))
            return;
        PGnotify *note;
        while ((note = PQnotifies(conn)) != NULL) {
            l->fn(db, note->extra);
            PQfreemem(note);
        }
    }
}

static void *s_main(void *arg)
{
    listener_t *l = arg;
    db_t *db = NULL;
    bool heard = false;   /* fn has been told LISTEN is in place */

    util_thread_name("listen");
    while (!atomic_load(&l->stop)) {
        if (!db)
            db = db_new(l->conninfo, l->schema, "listen", 0);
        if (db && db_ensure(db) && db_command(db, l->command) == 0) {
            heard = true;
            s_listen(l, db);
            if (atomic_load(&l->stop))
                break;
            slog_warn("listen: connection lost; notifications stop until it is back");
        }
        if (heard) {
            l->fn(NULL, NULL);
            heard = false;
        }
        util_nap_ms(&l->stop, 1000);
    }
    db_destroy(&db);
    return NULL;
}

listener_t *listener_new(const char *conninfo, const char *schema, const char *channel,
                         listen_fn fn)
{
    listener_t *l;

    if (!s_identifier(channel)) {
        slog_error("listen: %s is not a plain channel name", channel);
        return NULL;
    }
    if (!(l = calloc(1, sizeof *l)) || !(l->conninfo = strdup(conninfo))) {
        free(l);
        return NULL;
    }
    snprintf(l->schema, sizeof l->schema, "%s", schema);
    snprintf(l->command, sizeof l->command, "LISTEN %s", channel);
    l->fn = fn;
    if (pthread_create(&l->thread, NULL, s_main, l) != 0) {
        free(l->conninfo);
        free(l);
        return NULL;
    }
    return l;
}

void listener_destroy(listener_t **p)
{
    listener_t *l = *p;

    if (!l)
        return;
    atomic_store(&l->stop, true);
    pthread_join(l->thread, NULL);
    free(l->conninfo);
    free(l);
    *p = NULL;
}
