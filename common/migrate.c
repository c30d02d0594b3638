/* migrate: numbered SQL files applied once, in order, in one transaction. */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slog.h"

/* Versions of `files` must be unique (a programmer error otherwise). */
static int s_check_unique(const char *component, const migrate_file_t *files, size_t count)
{
    for (size_t i = 0; i < count; i++)
        for (size_t k = i + 1; k < count; k++)
            if (files[i].version == files[k].version) {
                slog_error("migrations: %s files %s and %s share version %d", component,
                           files[i].name, files[k].name, files[i].version);
                return -1;
            }
    return 0;
}

static int s_exec(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    int ok = res && (PQresultStatus(res) == PGRES_COMMAND_OK ||
                     PQresultStatus(res) == PGRES_TUPLES_OK);

    if (!ok)
        slog_error("migrations: %s failed: %s", what,
                   res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    PQclear(res);
    return ok ? 0 : -1;
}

/* Is (component, version) recorded? 1 yes, 0 no, -1 error. */
static int s_applied(PGconn *conn, const char *table, const char *component, int version)
{
    char sql[512], v[16];
    const char *params[2] = {component, v};

    snprintf(v, sizeof v, "%d", version);
    snprintf(sql, sizeof sql, "SELECT 1 FROM %s WHERE component = $1 AND version = $2", table);
    PGresult *res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
        rc = PQntuples(res) > 0;
    else
        slog_error("migrations: cannot read %s: %s", table, PQerrorMessage(conn));
    PQclear(res);
    return rc;
}

static int s_apply_set(PGconn *conn, const char *table, const char *component,
                       const migrate_file_t *files, size_t count)
{
    char sql[512], v[16];

    if (s_check_unique(component, files, count) != 0)
        return -1;
    /* in version order, whatever the array order */
    for (int done = 0, last = -1; done < (int)count; done++) {
        const migrate_file_t *next = NULL;
        for (size_t i = 0; i < count; i++)
            if (files[i].version > last && (!next || files[i].version < next->version))
                next = &files[i];
        last = next->version;
        int applied = s_applied(conn, table, component, next->version);
        if (applied < 0)
            return -1;
        if (applied)
            continue;
        if (s_exec(conn, next->sql, next->name) != 0)
            return -1;
        snprintf(v, sizeof v, "%d", next->version);
        snprintf(sql, sizeof sql,
                 "INSERT INTO %s (component, version, name) VALUES ($1, $2, $3)", table);
        const char *params[3] = {component, v, next->name};
        PGresult *res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
        int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
            slog_error("migrations: cannot record %s: %s", next->name, PQerrorMessage(conn));
        PQclear(res);
        if (!ok)
            return -1;
        slog_info("migrations: applied %s %s", component, next->name);
    }
    return 0;
}

int migrate_apply(db_t *db, const char *schema, const migrate_file_t *files, size_t count)
{
    PGconn *conn = db_conn(db);
    char *ident = PQescapeIdentifier(conn, schema, strlen(schema));
    char sql[512], table[256], lock[256];
    int rc = -1;

    if (!ident) {
        slog_error("migrations: bad schema name %s", schema);
        return -1;
    }
    snprintf(table, sizeof table, "%s.schema_migrations", ident);
    if (db_begin(db) != 0) {
        slog_error("migrations: cannot begin: %s", db_error(db));
        goto done;
    }
    snprintf(lock, sizeof lock, "%s.migrate", schema);
    const char *params[1] = {lock};
    PGresult *res = PQexecParams(conn, "SELECT pg_advisory_xact_lock(hashtext($1))", 1, NULL,
                                 params, NULL, NULL, 0);
    int ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    if (!ok) {
        slog_error("migrations: cannot take the migration lock: %s", PQerrorMessage(conn));
        goto rollback;
    }
    /* CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
     * schema exists, which a service role normally lacks: look first. */
    res = PQexecParams(conn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, NULL,
                       (const char *const[]){schema}, NULL, NULL, 0);
    ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;
    int exists = ok && PQntuples(res) > 0;
    PQclear(res);
    if (!ok) {
        slog_error("migrations: cannot look up schema %s: %s", schema, PQerrorMessage(conn));
        goto rollback;
    }
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", ident);
    if (!exists && s_exec(conn, sql, "creating the schema") != 0) {
        slog_error("migrations: schema %s is missing and this role cannot create it: run "
                   "deploy/db/service.sql (psql -v service=%s) as a superuser first", schema, schema);
        goto rollback;
    }
    snprintf(sql, sizeof sql,
             "CREATE TABLE IF NOT EXISTS %s (component text NOT NULL, version int NOT NULL, "
             "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
             "PRIMARY KEY (component, version))", table);
    if (s_exec(conn, sql, "creating schema_migrations") != 0)
        goto rollback;
    snprintf(sql, sizeof sql, "SET LOCAL search_path = %s", ident);
    if (s_exec(conn, sql, "setting search_path") != 0 ||
        s_apply_set(conn, table, "runtime", runtime_migrations, runtime_migrations_count) != 0 ||
        s_apply_set(conn, table, "service", files, count) != 0)
        goto rollback;
    if (db_commit(db) != 0) {
        slog_error("migrations: commit failed: %s", db_error(db));
        goto done;
    }
    rc = 0;
    goto done;
rollback:
    db_rollback(db);
done:
    PQfreemem(ident);
    return rc;
}
