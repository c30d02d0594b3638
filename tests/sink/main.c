/* shop-sink: test-only service recording every event it applies; a type
 * ending in "Ignored" it needs nothing for (apply returns 1). */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "server.h"

extern const migrate_file_t sink_migrations[];
extern const size_t sink_migrations_count;

static const db_stmt_t s_insert = {
    "sink_insert", "INSERT INTO applied (sequence, type, message_id) VALUES ($1, $2, $3)", 3};

static int s_apply(db_t *db, const Shop__Common__V1__Envelope *event, void *settings)
{
    char seq[24];
    const char *params[3] = {seq, event->type, event->message_id};
    PGresult *res;

    (void)settings;
    size_t n = strlen(event->type);
    if (n >= 7 && strcmp(event->type + n - 7, "Ignored") == 0)
        return 1;   /* needs nothing: written nowhere, its cursor stored lazily */
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)event->sequence);
    res = db_exec(db, &s_insert, params);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

int main(int argc, char **argv)
{
    /* The stream to consume: SINK_STREAM (default catalog), every event type
     * (prefix "") so that it also receives events the tests inject. */
    const char *stream = getenv("SINK_STREAM");
    /* SINK_COMMIT_EACH=1: a transaction per applied event (commit_each) */
    const char *each = getenv("SINK_COMMIT_EACH");
    const sub_stream_t s_consumes[] = {{stream && *stream ? stream : "catalog", "", s_apply,
                                        .commit_each = each && strcmp(each, "1") == 0}};
    server_def_t def = {
        .name = "sink",
        .service = NULL,
        .migrations = sink_migrations,
        .n_migrations = 0,
        .consumes = s_consumes,
        .n_consumes = 1,
    };
    def.n_migrations = sink_migrations_count;
    return server_main(&def, argc, argv);
}
