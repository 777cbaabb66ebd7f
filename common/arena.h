/*
 * arena.h — bump allocator: everything a graph owns (nodes, values, names, attributes) lives in
 * one arena and dies with it. Allocation failure returns NULL; callers report ULC_ERR_NOMEM.
 *
 *     ulc_arena *a = ulc_arena_create(0);
 *     char *s = ulc_arena_strdup(a, "conv1.weight");
 *     ulc_arena_free(a);               // frees s and everything else
 */
#ifndef ULC_COMMON_ARENA_H
#define ULC_COMMON_ARENA_H

#include <stddef.h>

typedef struct ulc_arena ulc_arena;

/* chunk_size 0 picks a default (64 KiB). Returns NULL on allocation failure. */
ulc_arena *ulc_arena_create(size_t chunk_size);
void ulc_arena_free(ulc_arena *a); /* accepts NULL */

/* Zeroed, 16-byte-aligned memory; NULL on failure or on n overflowing. */
void *ulc_arena_alloc(ulc_arena *a, size_t n);
/* Zeroed array of count elements of size each; NULL on overflow or failure. */
void *ulc_arena_calloc(ulc_arena *a, size_t count, size_t size);
char *ulc_arena_strdup(ulc_arena *a, const char *s); /* NULL in, NULL out */
char *ulc_arena_strndup(ulc_arena *a, const char *s, size_t n);
void *ulc_arena_memdup(ulc_arena *a, const void *p, size_t n);

/* Bytes handed out so far (for statistics). */
size_t ulc_arena_used(const ulc_arena *a);

#endif
