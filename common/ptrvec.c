#include "common/ptrvec.h"

#include <stdlib.h>

int ulc_ptrvec_push(ulc_ptrvec *v, void *p) {
    if (v->len == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 8;
        void **n = realloc(v->items, ncap * sizeof *n);
        if (!n) return -1;
        v->items = n;
        v->cap = ncap;
    }
    v->items[v->len++] = p;
    return 0;
}

size_t ulc_ptrvec_remove(ulc_ptrvec *v, const void *p) {
    size_t j = 0;
    for (size_t i = 0; i < v->len; i++)
        if (v->items[i] != p) v->items[j++] = v->items[i];
    size_t removed = v->len - j;
    v->len = j;
    return removed;
}

long ulc_ptrvec_find(const ulc_ptrvec *v, const void *p) {
    for (size_t i = 0; i < v->len; i++)
        if (v->items[i] == p) return (long)i;
    return -1;
}

void ulc_ptrvec_clear(ulc_ptrvec *v) {
    free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}
