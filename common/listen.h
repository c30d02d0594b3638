/* listen: LISTEN on a PostgreSQL channel from a thread and connection of
 * its own, for what a service keeps in memory and must drop when the
 * database changes under it (see server_def_t.listen). */
#ifndef SHOP_LISTEN_H
#define SHOP_LISTEN_H

#include "db.h"

/* Called on the listener's thread: for each notification with its payload
 * and the listener's connection (free to run statements on); with payload
 * NULL each time LISTEN is in place after (re)connecting, since whatever
 * was sent before may have been missed; with db NULL when the connection is
 * lost, after which nothing is heard until the next NULL payload. */
typedef void (*listen_fn)(db_t *db, const char *payload);

typedef struct listener listener_t;

/* Starts listening on `channel` (a plain identifier). NULL if the channel
 * name is invalid or the thread cannot start; a database that cannot be
 * reached is tried again every second. */
listener_t *listener_new(const char *conninfo, const char *schema, const char *channel,
                         listen_fn fn);
/* Stops the thread (within a quarter of a second) and closes the
 * connection. Accepts NULL; sets *p to NULL. */
void listener_destroy(listener_t **p);

#endif
