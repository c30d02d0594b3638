/* migrate: numbered .sql files compiled into the binary, applied at start-up
 * in one transaction and recorded in <schema>.schema_migrations. */
#ifndef SHOP_MIGRATE_H
#define SHOP_MIGRATE_H

#include <stddef.h>
#include "db.h"

typedef struct {
    int version;          /* from the file name: 001_init.sql is 1 */
    const char *name;     /* file name */
    const char *sql;      /* contents */
} migrate_file_t;

/* The runtime's own migrations (common/migrations), applied before a
 * service's own under component "runtime". */
extern const migrate_file_t runtime_migrations[];
extern const size_t runtime_migrations_count;

/* Creates `schema` if missing (the role must own it or be allowed to), then
 * applies, in one transaction under an advisory lock (so concurrent
 * instances do not race), every file of `files` whose version is not yet
 * recorded, in version order. The runtime's own tables (outbox, cursors)
 * are migrations too, applied first. Returns 0, or -1 with the failing file
 * and the server's message logged; nothing is applied then. */
int migrate_apply(db_t *db, const char *schema, const migrate_file_t *files, size_t count)
    __attribute__((warn_unused_result));

#endif
