/*
 * k_nn_pack.c — constant weights packed into a kernel's layout, shared by every plan and session
 * that packs the same initializer the same way (k_nn.h, ulc_nn_pack_*).
 *
 * A session makes a plan per input shapes, and greedy decoding (a new length per token), a last
 * partial batch or a second session on the same model each make another; without sharing, each
 * plan would pack and hold its own copy of every weight (DistilGPT2: 335 MB a plan). An entry is
 * keyed by the initializer (its ulc_tensor, the address and size of its bytes, and a sample of
 * its content, so that a weight replaced in place is never mistaken for the old one while a plan
 * still holds that), the layout (a kind and three numbers) and, for oneDNN's layouts, the memory
 * descriptor. Entries are reference counted and freed with their last plan. Constants that are
 * not initializers (folded at plan time) get a private buffer, as before.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_nn.h"

typedef struct pack_entry {
    ulc_nn_pack_key key;
    void *buf;
    size_t bytes;
    int refs;
    struct pack_entry *next;
} pack_entry;

static pthread_mutex_t g_pack_mu = PTHREAD_MUTEX_INITIALIZER;
static pack_entry *g_packs;

/* FNV-1a over 64 evenly spaced 8-byte words of p (all of it when shorter), and its last bytes. */
static uint64_t sample(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    if (!p) return h;
    size_t words = n / 8, step = words > 64 ? words / 64 : 1;
    for (size_t w = 0; w < words && w / step < 64; w += step)
        for (int i = 0; i < 8; i++) h = (h ^ b[w * 8 + (size_t)i]) * 1099511628211ull;
    for (size_t i = words * 8; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

void ulc_nn_pack_key_init(const ulc_kctx *k, int i, int kind, ulc_nn_pack_key *key) {
    memset(key, 0, sizeof *key);
    key->kind = kind;
    const ulc_value *v = i < k->node->n_inputs ? k->node->inputs[i].value : NULL;
    const ulc_tensor *t = v && (v->flags & ULC_VALUE_INITIALIZER) && !(v->flags & ULC_VALUE_INPUT) ? v->init : NULL;
    if (!t || !t->data || !(k->const_inputs & (1u << i))) return; /* not shared */
    key->src = t;
    key->data = t->data;
    key->nbytes = t->nbytes;
    key->sample = sample(k->in[i]->data, k->in[i]->nbytes); /* what this plan packs */
}

static int same_key(const ulc_nn_pack_key *a, const ulc_nn_pack_key *b) {
    if (!a->src || a->src != b->src || a->data != b->data || a->nbytes != b->nbytes || a->sample != b->sample ||
        a->kind != b->kind || a->p[0] != b->p[0] || a->p[1] != b->p[1] || a->p[2] != b->p[2] || a->has_md != b->has_md)
        return 0;
    return !a->has_md || dnnl_memory_desc_equal(&a->md, &b->md);
}

void *ulc_nn_pack_acquire(ulc_kctx *k, const ulc_nn_pack_key *key, size_t bytes, ulc_nn_pack_fill fill, void *arg) {
    pthread_mutex_lock(&g_pack_mu);
    for (pack_entry *e = g_packs; e; e = e->next)
        if (e->bytes == bytes && same_key(&e->key, key)) {
            e->refs++;
            pthread_mutex_unlock(&g_pack_mu);
            return e->buf;
        }
    pack_entry *e = calloc(1, sizeof *e);
    void *buf = ulc_nn_alloc(bytes);
    if (!e || !buf) {
        pthread_mutex_unlock(&g_pack_mu);
        free(e);
        free(buf);
        ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory packing a weight (%zu bytes)", bytes);
        return NULL;
    }
    /* filled under the lock: another plan wanting the same entry waits for it, not a copy */
    if (fill(buf, arg) != ULC_OK) {
        pthread_mutex_unlock(&g_pack_mu);
        free(e);
        free(buf);
        return NULL; /* fill recorded why */
    }
    e->key = *key;
    e->buf = buf;
    e->bytes = bytes;
    e->refs = 1;
    e->next = g_packs;
    g_packs = e;
    pthread_mutex_unlock(&g_pack_mu);
    return buf;
}

void ulc_nn_pack_release(void *buf) {
    if (!buf) return;
    pthread_mutex_lock(&g_pack_mu);
    for (pack_entry **pe = &g_packs; *pe; pe = &(*pe)->next) {
        pack_entry *e = *pe;
        if (e->buf != buf) continue;
        if (--e->refs == 0) {
            *pe = e->next;
            free(e->buf);
            free(e);
        }
        break;
    }
    pthread_mutex_unlock(&g_pack_mu);
}

size_t ulc_nn_pack_bytes(void) {
    size_t n = 0;
    pthread_mutex_lock(&g_pack_mu);
    for (const pack_entry *e = g_packs; e; e = e->next) n += e->bytes;
    pthread_mutex_unlock(&g_pack_mu);
    return n;
}
