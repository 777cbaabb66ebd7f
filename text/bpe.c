/*
 * bpe.c — the BPE model over one pre-tokenized word: its bytes become the vocabulary's
 * one-character symbols (with the model's continuing-subword prefix and end-of-word suffix),
 * then the adjacent pair of lowest merge rank is merged, leftmost first, until no pair has a
 * merge — tokenizers' order, kept with a min-heap of (rank, position) whose stale entries are
 * skipped. Merges live in a hash of id pairs; a word cache maps the bytes of words seen before
 * to their ids, so a repeated word costs one lookup.
 */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"

#define CACHE_WORD_MAX 256        /* longer words are merged every time */
#define CACHE_ENTRIES_MAX (1u << 16)
#define CACHE_POOL_MAX ((size_t)64 << 20)

int tk_ids_push(ulc_ids *ids, int64_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int64_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return -1;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 0;
}

static inline uint64_t pair_key(int32_t l, int32_t r) {
    return ((uint64_t)(uint32_t)(l + 1) << 32) | (uint32_t)(r + 1);
}

static inline size_t pair_hash(uint64_t k) {
    k *= 0x9e3779b97f4a7c15ull;
    return (size_t)(k ^ (k >> 31));
}

static int merges_grow(tk_bpe *b) {
    size_t cap = b->merge_cap ? b->merge_cap * 2 : 1024;
    tk_merge *m = calloc(cap, sizeof *m);
    if (!m) return -1;
    for (size_t i = 0; i < b->merge_cap; i++) {
        if (!b->merges[i].key) continue;
        size_t j = pair_hash(b->merges[i].key) & (cap - 1);
        while (m[j].key) j = (j + 1) & (cap - 1);
        m[j] = b->merges[i];
    }
    free(b->merges);
    b->merges = m;
    b->merge_cap = cap;
    return 0;
}

int tk_bpe_add_merge(tk_bpe *b, int32_t left, int32_t right, int32_t id, int32_t rank) {
    if ((b->n_merges + 1) * 2 > b->merge_cap && merges_grow(b) != 0) return -1;
    uint64_t k = pair_key(left, right);
    size_t j = pair_hash(k) & (b->merge_cap - 1);
    while (b->merges[j].key && b->merges[j].key != k) j = (j + 1) & (b->merge_cap - 1);
    if (!b->merges[j].key) b->n_merges++;
    b->merges[j] = (tk_merge){.key = k, .rank = rank, .id = id};
    return 0;
}

/* The rank of merging (l, r) and in *id the merged token, or -1. */
static inline int32_t merge_get(const tk_bpe *b, int32_t l, int32_t r, int32_t *id) {
    if (!b->merge_cap) return -1;
    uint64_t k = pair_key(l, r);
    for (size_t j = pair_hash(k) & (b->merge_cap - 1);; j = (j + 1) & (b->merge_cap - 1)) {
        if (b->merges[j].key == k) {
            *id = b->merges[j].id;
            return b->merges[j].rank;
        }
        if (!b->merges[j].key) return -1;
    }
}

/* ---- the merge heap: (rank << 32 | position), smallest first ---------------------------------- */
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (h[up] <= v) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

static int scratch(tk_bpe *b, size_t n) {
    if (n <= b->scratch_cap) return 0;
    size_t cap = b->scratch_cap ? b->scratch_cap : 64;
    while (cap < n) cap *= 2;
    int32_t *s = realloc(b->sym, cap * sizeof *s), *p = s ? realloc(b->prev, cap * sizeof *p) : NULL;
    if (s) b->sym = s;
    if (p) b->prev = p;
    int32_t *x = p ? realloc(b->next, cap * sizeof *x) : NULL;
    if (x) b->next = x;
    uint64_t *h = x ? realloc(b->heap, 3 * cap * sizeof *h) : NULL;
    if (h) b->heap = h;
    if (!h) return -1;
    b->scratch_cap = cap;
    return 0;
}

/* The word's first symbols (tokenizers' BPE::merge_word: a character out of the vocabulary
 * becomes unk — fused with the one before when fuse_unk — or is dropped without one). */
static size_t first_symbols(tk_bpe *b, const unsigned char *w, size_t n) {
    size_t ns = 0;
    int pending = 0; /* an unk not yet placed */
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[i == 0][i == n - 1][w[i]];
        if (id >= 0) {
            if (pending) b->sym[ns++] = (int32_t)b->unk_id;
            pending = 0;
            b->sym[ns++] = id;
        } else if (b->unk_id >= 0) {
            if (pending && !b->fuse_unk) b->sym[ns++] = (int32_t)b->unk_id;
            pending = 1;
        }
    }
    if (pending) b->sym[ns++] = (int32_t)b->unk_id;
    return ns;
}

static void merge_all(tk_bpe *b, size_t ns) {
    int32_t *sym = b->sym, *prev = b->prev, *next = b->next;
    size_t hn = 0;
    for (size_t i = 0; i < ns; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
        int32_t id, r;
        if (i + 1 < ns && (r = merge_get(b, sym[i], sym[i + 1], &id)) >= 0)
            heap_push(b->heap, &hn, (uint64_t)r << 32 | i);
    }
    while (hn) {
        uint64_t top = heap_pop(b->heap, &hn);
        int32_t pos = (int32_t)(top & 0xffffffffu), rank = (int32_t)(top >> 32), id = 0, r;
        int32_t nx = next[pos];
        if (sym[pos] == INT32_MIN || nx < 0) continue;
        if (merge_get(b, sym[pos], sym[nx], &id) != rank) continue;
        sym[pos] = id;
        sym[nx] = INT32_MIN;
        next[pos] = next[nx];
        if (next[nx] >= 0) prev[next[nx]] = pos;
        if (prev[pos] >= 0 && (r = merge_get(b, sym[prev[pos]], sym[pos], &id)) >= 0)
            heap_push(b->heap, &hn, (uint64_t)r << 32 | (uint32_t)prev[pos]);
        if (next[pos] >= 0 && (r = merge_get(b, sym[pos], sym[next[pos]], &id)) >= 0)
            heap_push(b->heap, &hn, (uint64_t)r << 32 | (uint32_t)pos);
    }
}

/* ---- the word cache -------------------------------------------------------------------------- */
void tk_bpe_cache_clear(tk_bpe *b) {
    if (b->cache_slot) memset(b->cache_slot, 0, b->cache_cap * sizeof *b->cache_slot);
    b->cache_n = 0;
    b->cache_pool_n = 0;
}

static const tk_cache_ent *cache_get(const tk_bpe *b, const unsigned char *w, size_t n, uint32_t h) {
    if (!b->cache_n) return NULL;
    for (size_t j = h & (b->cache_cap - 1);; j = (j + 1) & (b->cache_cap - 1)) {
        uint32_t s = b->cache_slot[j];
        if (!s) return NULL;
        const tk_cache_ent *e = &b->cache_ent[s - 1];
        if (e->hash == h && e->len == n && memcmp(b->cache_pool + e->off, w, n) == 0) return e;
    }
}

static void cache_put(tk_bpe *b, const unsigned char *w, size_t n, uint32_t h, const int64_t *ids,
                      size_t nids) {
    size_t need = ((n + 3) & ~(size_t)3) + nids * 4;
    if (b->cache_n + 1 > CACHE_ENTRIES_MAX || b->cache_pool_n + need > CACHE_POOL_MAX)
        tk_bpe_cache_clear(b);
    if (!b->cache_slot) {
        b->cache_cap = 2 * (size_t)CACHE_ENTRIES_MAX;
        b->cache_slot = calloc(b->cache_cap, sizeof *b->cache_slot);
        b->cache_ent = malloc(CACHE_ENTRIES_MAX * sizeof *b->cache_ent);
        if (!b->cache_slot || !b->cache_ent) {
            free(b->cache_slot), free(b->cache_ent);
            b->cache_slot = NULL, b->cache_ent = NULL;
            return; /* no cache: every word is merged */
        }
    }
    if (b->cache_pool_n + need > b->cache_pool_cap) {
        size_t cap = b->cache_pool_cap ? b->cache_pool_cap * 2 : (size_t)1 << 20;
        while (cap < b->cache_pool_n + need) cap *= 2;
        unsigned char *p = realloc(b->cache_pool, cap);
        if (!p) return;
        b->cache_pool = p;
        b->cache_pool_cap = cap;
    }
    size_t off = b->cache_pool_n;
    memcpy(b->cache_pool + off, w, n);
    size_t io = off + ((n + 3) & ~(size_t)3);
    for (size_t i = 0; i < nids; i++) {
        int32_t v = (int32_t)ids[i];
        memcpy(b->cache_pool + io + 4 * i, &v, 4);
    }
    b->cache_pool_n += need;
    b->cache_ent[b->cache_n] = (tk_cache_ent){.off = off, .len = (uint32_t)n, .nids = (uint32_t)nids,
                                              .hash = h};
    size_t j = h & (b->cache_cap - 1);
    while (b->cache_slot[j]) j = (j + 1) & (b->cache_cap - 1);
    b->cache_slot[j] = (uint32_t)(++b->cache_n);
}

ulc_status tk_bpe_word(tk_bpe *b, const unsigned char *w, size_t n, ulc_ids *out, ulc_ctx *ctx) {
    if (!n) return ULC_OK;
    uint32_t h = 0;
    int cacheable = n <= CACHE_WORD_MAX;
    if (cacheable) {
        h = tk_hash(w, n);
        const tk_cache_ent *e = cache_get(b, w, n, h);
        if (e) {
            if (out->n + e->nids > out->cap) {
                size_t cap = out->cap ? out->cap : 64;
                while (cap < out->n + e->nids) cap *= 2;
                int64_t *v = realloc(out->v, cap * sizeof *v);
                if (!v) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory encoding text");
                out->v = v;
                out->cap = cap;
            }
            const unsigned char *ids = b->cache_pool + e->off + ((e->len + 3) & ~(size_t)3);
            for (uint32_t i = 0; i < e->nids; i++) {
                int32_t v;
                memcpy(&v, ids + 4 * i, 4);
                out->v[out->n++] = v;
            }
            return ULC_OK;
        }
    }
    size_t start = out->n;
    int64_t whole = b->ignore_merges && b->bytes_vocab ? tk_strtab_get(b->bytes_vocab, w, n) : -1;
    if (whole >= 0) {
        if (tk_ids_push(out, whole) != 0) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory encoding text");
    } else {
        if (scratch(b, n) != 0) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory encoding text");
        size_t ns = first_symbols(b, w, n);
        merge_all(b, ns);
        for (int32_t i = ns ? 0 : -1; i >= 0; i = b->next[i])
            if (tk_ids_push(out, b->sym[i]) != 0)
                return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory encoding text");
    }
    if (cacheable) cache_put(b, w, n, h, out->v + start, out->n - start);
    return ULC_OK;
}

void tk_bpe_free(tk_bpe *b) {
    free(b->merges);
    free(b->cache_slot);
    free(b->cache_ent);
    free(b->cache_pool);
    free(b->sym);
    free(b->prev);
    free(b->next);
    free(b->heap);
    memset(b, 0, sizeof *b);
}
