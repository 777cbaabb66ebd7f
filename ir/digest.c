/* digest.c — the sha256 of a model's weights (digest.h). */
#include "ir/digest.h"

#include <stdlib.h>
#include <string.h>

static void put_u64(ulc_sha256 *h, uint64_t v) {
    uint8_t b[8];
    for (int k = 0; k < 8; k++) b[k] = (uint8_t)(v >> (8 * k));
    ulc_sha256_update(h, b, sizeof b);
}

static void put_u32(ulc_sha256 *h, uint32_t v) {
    uint8_t b[4];
    for (int k = 0; k < 4; k++) b[k] = (uint8_t)(v >> (8 * k));
    ulc_sha256_update(h, b, sizeof b);
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const ulc_value *const *)a)->name, (*(const ulc_value *const *)b)->name);
}

/* A LAZY tensor's chunks, in order (on the stream's writer thread, one call at a time). */
static ulc_status sink(void *arg, const void *p, size_t n, ulc_ctx *ctx) {
    (void)ctx;
    ulc_sha256_update(arg, p, n);
    return ULC_OK;
}

/* Whether v is one of the model's weights (digest.h). */
static int is_weight(const ulc_value *v) {
    return (v->flags & ULC_VALUE_INITIALIZER) && v->init && !(v->flags & ULC_VALUE_CONSTANT);
}

ulc_status ulc_model_weights_sha256(const ulc_model *m, char hex[ULC_SHA256_HEX], ulc_ctx *ctx) {
    const ulc_ptrvec *inits = &m->graph->inits;
    const ulc_value **order = malloc((inits->len ? inits->len : 1) * sizeof *order);
    if (!order) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (weights hash)");
    size_t n = 0;
    for (size_t i = 0; i < inits->len; i++)
        if (is_weight(inits->items[i])) order[n++] = inits->items[i];
    qsort(order, n, sizeof *order, by_name);
    ulc_sha256 h;
    ulc_sha256_init(&h);
    static const char tag[] = "ulc-weights-v1";
    ulc_sha256_update(&h, tag, sizeof tag); /* with its NUL */
    put_u64(&h, n);
    ulc_status st = ULC_OK;
    for (size_t i = 0; st == ULC_OK && i < n; i++) {
        const ulc_tensor *t = order[i]->init;
        const char *name = order[i]->name;
        put_u64(&h, strlen(name));
        ulc_sha256_update(&h, name, strlen(name));
        put_u32(&h, (uint32_t)t->dtype);
        put_u32(&h, (uint32_t)t->rank);
        for (int d = 0; d < t->rank; d++) put_u64(&h, (uint64_t)t->dims[d]);
        if (t->storage == ULC_STORAGE_DEVICE) {
            st = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "weights hash: tensor '%s' is in device "
                          "memory", name);
        } else if (t->storage == ULC_STORAGE_NONE || t->form == ULC_FORM_NONE) {
            put_u64(&h, 0);
        } else {
            put_u64(&h, t->nbytes);
            st = ulc_tensor_stream(t, sink, &h, ctx);
        }
    }
    free(order);
    ULC_TRY(st);
    uint8_t d[ULC_SHA256_BYTES];
    ulc_sha256_final(&h, d);
    ulc_sha256_hex(d, hex);
    return ULC_OK;
}
