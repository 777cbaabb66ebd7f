#include "common/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Linear probing with tombstones; capacity is a power of two, load kept under 1/2. */
typedef struct slot {
    const char *key; /* NULL = empty, TOMB = deleted */
    void *val;
    uint64_t hash;
} slot;

struct ulc_strmap {
    slot *slots;
    size_t cap, size, used; /* used counts live + tombstones */
};

static const char tomb_[1];
#define TOMB ((const char *)tomb_)

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

ulc_strmap *ulc_strmap_create(void) { return calloc(1, sizeof(ulc_strmap)); }

void ulc_strmap_free(ulc_strmap *m) {
    if (!m) return;
    free(m->slots);
    free(m);
}

static slot *find(const ulc_strmap *m, const char *key, uint64_t h, slot **tomb) {
    if (!m->cap) return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        slot *s = &m->slots[i];
        if (!s->key) return s;
        if (s->key == TOMB) {
            if (tomb && !*tomb) *tomb = s;
        } else if (s->hash == h && strcmp(s->key, key) == 0) {
            return s;
        }
    }
}

static int grow(ulc_strmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 16;
    while (m->size * 2 >= ncap) ncap *= 2;
    slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        slot *s = &m->slots[i];
        if (!s->key || s->key == TOMB) continue;
        size_t j = s->hash & (ncap - 1);
        while (ns[j].key) j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    m->used = m->size;
    return 0;
}

int ulc_strmap_put(ulc_strmap *m, const char *key, void *val) {
    if ((m->used + 1) * 2 > m->cap && grow(m) != 0) return -1;
    uint64_t h = hash_str(key);
    slot *tomb = NULL;
    slot *s = find(m, key, h, &tomb);
    if (s->key && s->key != TOMB) {
        s->val = val;
        return 0;
    }
    if (tomb) s = tomb;
    else m->used++;
    s->key = key;
    s->val = val;
    s->hash = h;
    m->size++;
    return 0;
}

void *ulc_strmap_get(const ulc_strmap *m, const char *key) {
    slot *s = find(m, key, hash_str(key), NULL);
    return (s && s->key) ? s->val : NULL;
}

int ulc_strmap_remove(ulc_strmap *m, const char *key) {
    slot *s = find(m, key, hash_str(key), NULL);
    if (!s || !s->key) return 0;
    s->key = TOMB;
    s->val = NULL;
    m->size--;
    return 1;
}

size_t ulc_strmap_size(const ulc_strmap *m) { return m->size; }
