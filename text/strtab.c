/* strtab.c — byte strings to int64, open addressing over a key pool (tok_internal.h). Keys may
 * hold any byte (a byte-level token's bytes include NUL), so common/strmap.h does not fit. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

uint32_t tk_hash(const void *p, size_t n) {
    /* FNV-1a over 8-byte words, finished with a multiply-shift mix */
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

static int grow_slots(tk_strtab *t) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    uint32_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (size_t i = 0; i < t->n; i++) {
        size_t j = t->ent[i].hash & (cap - 1);
        while (slot[j]) j = (j + 1) & (cap - 1);
        slot[j] = (uint32_t)(i + 1);
    }
    free(t->slot);
    t->slot = slot;
    t->cap = cap;
    return 0;
}

int64_t tk_strtab_get(const tk_strtab *t, const void *p, size_t n) {
    if (!t->cap) return -1;
    uint32_t h = tk_hash(p, n);
    for (size_t j = h & (t->cap - 1);; j = (j + 1) & (t->cap - 1)) {
        uint32_t s = t->slot[j];
        if (!s) return -1;
        const tk_entry *e = &t->ent[s - 1];
        if (e->hash == h && e->len == n && memcmp(t->pool + e->off, p, n) == 0) return e->val;
    }
}

int tk_strtab_put(tk_strtab *t, const void *p, size_t n, int64_t val, int64_t *prev) {
    if (prev) *prev = -1;
    if ((t->n + 1) * 2 > t->cap && grow_slots(t) != 0) return -1;
    uint32_t h = tk_hash(p, n);
    size_t j = h & (t->cap - 1);
    for (;; j = (j + 1) & (t->cap - 1)) {
        uint32_t s = t->slot[j];
        if (!s) break;
        tk_entry *e = &t->ent[s - 1];
        if (e->hash == h && e->len == n && memcmp(t->pool + e->off, p, n) == 0) {
            if (prev) *prev = e->val;
            e->val = val;
            return 0;
        }
    }
    if (n > UINT32_MAX) return -1;
    if (t->n == t->ent_cap) {
        size_t cap = t->ent_cap ? t->ent_cap * 2 : 64;
        tk_entry *e = realloc(t->ent, cap * sizeof *e);
        if (!e) return -1;
        t->ent = e;
        t->ent_cap = cap;
    }
    if (t->pool_n + n + 1 > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 1024;
        while (cap < t->pool_n + n + 1) cap *= 2;
        char *pool = realloc(t->pool, cap);
        if (!pool) return -1;
        t->pool = pool;
        t->pool_cap = cap;
    }
    memcpy(t->pool + t->pool_n, p, n);
    t->pool[t->pool_n + n] = '\0';
    t->ent[t->n] = (tk_entry){.off = t->pool_n, .len = (uint32_t)n, .hash = h, .val = val};
    t->pool_n += n + 1;
    t->slot[j] = (uint32_t)(++t->n);
    return 0;
}

const char *tk_strtab_key(const tk_strtab *t, size_t i, size_t *len) {
    *len = t->ent[i].len;
    return t->pool + t->ent[i].off;
}

void tk_strtab_free(tk_strtab *t) {
    free(t->slot);
    free(t->ent);
    free(t->pool);
    memset(t, 0, sizeof *t);
}
