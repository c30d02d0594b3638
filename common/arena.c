/* arena: chunked bump allocation for per-call memory. */
#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    alignas(max_align_t) unsigned char data[];
} chunk_t;

struct arena {
    chunk_t *head;   /* the chunk being filled; its list ends at the first */
    size_t chunk;
};

static chunk_t *s_chunk_new(size_t size)
{
    chunk_t *c = malloc(sizeof *c + size);

    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

arena_t *arena_new(size_t chunk)
{
    arena_t *a = calloc(1, sizeof *a);

    if (!a)
        return NULL;
    a->chunk = chunk < 1024 ? 1024 : chunk;
    a->head = s_chunk_new(a->chunk);
    if (!a->head) {
        free(a);
        return NULL;
    }
    return a;
}

void arena_destroy(arena_t **p)
{
    if (!p || !*p)
        return;
    chunk_t *c = (*p)->head;
    while (c) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
    free(*p);
    *p = NULL;
}

void *arena_alloc(arena_t *a, size_t size)
{
    void *p = arena_alloc_uninit(a, size);

    if (p)
        memset(p, 0, size);
    return p;
}

void *arena_alloc_uninit(arena_t *a, size_t size)
{
    const size_t align = alignof(max_align_t);
    size_t need = (size + align - 1) & ~(align - 1);
    chunk_t *c = a->head;

    if (need < size)
        return NULL;
    if (c->size - c->used < need) {
        size_t sz = need > a->chunk ? need : a->chunk;
        chunk_t *n = s_chunk_new(sz);
        if (!n)
            return NULL;
        n->next = c;
        a->head = n;
        c = n;
    }
    void *p = c->data + c->used;
    c->used += need;
    return p;
}

void arena_reset(arena_t *a)
{
    chunk_t *c = a->head;

    while (c->next) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
    c->used = 0;
    a->head = c;
}
