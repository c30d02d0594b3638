/* arena: a bump allocator for memory that lives for one call; reset after
 * the reply is sent, keeping its first chunk so steady state allocates
 * nothing. Not thread-safe: one per worker. */
#ifndef SHOP_ARENA_H
#define SHOP_ARENA_H

#include <stddef.h>

typedef struct arena arena_t;

/* Creates an arena whose chunks hold at least `chunk` bytes. NULL on OOM. */
arena_t *arena_new(size_t chunk);
void arena_destroy(arena_t **p);

/* Returns `size` bytes aligned for any type, zeroed; NULL on OOM. */
void *arena_alloc(arena_t *a, size_t size);
/* The same, not zeroed. */
void *arena_alloc_uninit(arena_t *a, size_t size);

/* Frees everything allocated since the last reset (keeps the first chunk). */
void arena_reset(arena_t *a);

#endif
