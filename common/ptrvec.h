/*
 * ptrvec.h — a growable array of pointers (malloc-backed). Used for ordered lists whose order
 * matters on export (graph inputs, outputs, initializers, value_info).
 */
#ifndef ULC_COMMON_PTRVEC_H
#define ULC_COMMON_PTRVEC_H

#include <stddef.h>

typedef struct ulc_ptrvec {
    void **items;
    size_t len, cap;
} ulc_ptrvec;

/* Returns 0, or -1 on allocation failure (the vector is unchanged). */
int ulc_ptrvec_push(ulc_ptrvec *v, void *p);
/* Removes every occurrence of p, keeping order; returns how many were removed. */
size_t ulc_ptrvec_remove(ulc_ptrvec *v, const void *p);
/* Index of p, or -1. */
long ulc_ptrvec_find(const ulc_ptrvec *v, const void *p);
void ulc_ptrvec_clear(ulc_ptrvec *v); /* frees the storage */

#endif
