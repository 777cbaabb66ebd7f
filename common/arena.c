#include "common/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk {
    struct chunk *next;
    size_t cap;  /* usable bytes after the header */
    size_t used;
    /* data follows, 16-byte aligned */
} chunk;

struct ulc_arena {
    chunk *head;
    size_t chunk_size;
    size_t total;
};

#define HDR (((sizeof(chunk) + 15u) / 16u) * 16u)

ulc_arena *ulc_arena_create(size_t chunk_size) {
    ulc_arena *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->chunk_size = chunk_size ? chunk_size : (size_t)64 * 1024;
    return a;
}

void ulc_arena_free(ulc_arena *a) {
    if (!a) return;
    chunk *c = a->head;
    while (c) {
        chunk *n = c->next;
        free(c);
        c = n;
    }
    free(a);
}

void *ulc_arena_alloc(ulc_arena *a, size_t n) {
    if (n > SIZE_MAX - 15u - HDR) return NULL;
    size_t need = (n + 15u) & ~(size_t)15u;
    if (need == 0) need = 16;
    chunk *c = a->head;
    if (!c || c->cap - c->used < need) {
        /* Big requests get their own chunk, placed second so the current chunk keeps serving. */
        size_t cap = need > a->chunk_size / 4 ? need : a->chunk_size;
        chunk *nc = malloc(HDR + cap);
        if (!nc) return NULL;
        nc->cap = cap;
        nc->used = 0;
        if (c && cap == need && c->cap - c->used >= 16) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
    }
    void *p = (char *)c + HDR + c->used;
    c->used += need;
    a->total += need;
    memset(p, 0, need);
    return p;
}

void *ulc_arena_calloc(ulc_arena *a, size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    return ulc_arena_alloc(a, count * size);
}

char *ulc_arena_strndup(ulc_arena *a, const char *s, size_t n) {
    if (!s) return NULL;
    char *d = ulc_arena_alloc(a, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *ulc_arena_strdup(ulc_arena *a, const char *s) {
    return s ? ulc_arena_strndup(a, s, strlen(s)) : NULL;
}

void *ulc_arena_memdup(ulc_arena *a, const void *p, size_t n) {
    void *d = ulc_arena_alloc(a, n);
    if (d && n) memcpy(d, p, n);
    return d;
}

size_t ulc_arena_used(const ulc_arena *a) { return a->total; }
