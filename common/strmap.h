/*
 * strmap.h — open-addressing hash map from NUL-terminated strings to pointers.
 * Keys are not copied: they must outlive the map (they usually live in a graph's arena).
 *
 *     ulc_strmap *m = ulc_strmap_create();
 *     ulc_strmap_put(m, v->name, v);
 *     ulc_value *v = ulc_strmap_get(m, "x");
 *     ulc_strmap_free(m);
 */
#ifndef ULC_COMMON_STRMAP_H
#define ULC_COMMON_STRMAP_H

#include <stddef.h>

typedef struct ulc_strmap ulc_strmap;

ulc_strmap *ulc_strmap_create(void);
void ulc_strmap_free(ulc_strmap *m); /* accepts NULL */
/* Inserts or replaces. Returns 0 on success, -1 on allocation failure. */
int ulc_strmap_put(ulc_strmap *m, const char *key, void *val);
void *ulc_strmap_get(const ulc_strmap *m, const char *key); /* NULL if absent */
int ulc_strmap_remove(ulc_strmap *m, const char *key);      /* 1 if removed */
size_t ulc_strmap_size(const ulc_strmap *m);

#endif
