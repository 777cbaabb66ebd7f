/* decoder.c — a text model's decoder with a cache; see decoder.h. */
#include "io/decoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import/hf/hf_import.h"
#include "io/data.h"

#define PAST_PREFIX "past_key_values."

const char *ulc_decoder_past(int i, int kv, char *buf, size_t n) {
    snprintf(buf, n, PAST_PREFIX "%d.%s", i, kv ? "value" : "key");
    return buf;
}

const char *ulc_decoder_present(int i, int kv, char *buf, size_t n) {
    snprintf(buf, n, "present.%d.%s", i, kv ? "value" : "key");
    return buf;
}

int ulc_decoder_is_past(const ulc_value *v) {
    return strncmp(v->name, PAST_PREFIX, strlen(PAST_PREFIX)) == 0;
}

static const ulc_value *graph_input(const ulc_graph *g, const char *name) {
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (strcmp(v->name, name) == 0 && !(v->flags & ULC_VALUE_INITIALIZER)) return v;
    }
    return NULL;
}

static const ulc_value *graph_output(const ulc_graph *g, const char *name) {
    for (size_t i = 0; i < g->outputs.len; i++) {
        const ulc_value *v = g->outputs.items[i];
        if (strcmp(v->name, name) == 0) return v;
    }
    return NULL;
}

/* Layer i's past input kv: f32 [batch, H, past, D] with H and D fixed and the same as every
 * other layer's (d->heads, d->head_dim set by the first). */
static ulc_status check_past(const ulc_graph *g, const char *path, int i, int kv, ulc_decoder *d,
                             ulc_ctx *ctx) {
    char name[64], oname[64], sh[160];
    const ulc_value *v = graph_input(g, ulc_decoder_past(i, kv, name, sizeof name));
    if (!v)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: input '%s' is missing (the model has past_"
                        "key_values inputs for %d layers)", path, name, d->layers);
    if (!graph_output(g, ulc_decoder_present(i, kv, oname, sizeof oname)))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: input '%s' has no output '%s' (a cache's "
                        "present)", path, name, oname);
    int ok = (v->flags & ULC_VALUE_HAS_TYPE) && v->dtype == ULC_DT_F32 && v->rank == 4 &&
             v->dims[1].value > 0 && v->dims[3].value > 0;
    if (ok && d->heads == 0) {
        d->heads = v->dims[1].value;
        d->head_dim = v->dims[3].value;
    }
    if (!ok || v->dims[1].value != d->heads || v->dims[3].value != d->head_dim) {
        char first[96] = "";
        if (d->heads && (i || kv))
            snprintf(first, sizeof first, " (past_key_values.0.key has %lld heads of %lld)",
                     (long long)d->heads, (long long)d->head_dim);
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: cache input '%s' is %s; expected float32 "
                        "[batch, heads, past, head_dim] with fixed heads and head_dim, the same "
                        "for every layer%s", path, name, ulc_value_shape_str(v, sh, sizeof sh), first);
    }
    return ULC_OK;
}

/* m's own interface: d->layers 0 when it has no past_key_values inputs. */
static ulc_status interface(const ulc_model *m, const char *path, ulc_decoder *d, ulc_ctx *ctx) {
    const ulc_graph *g = m->graph;
    int layers = 0;
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        if (ulc_decoder_is_past(v)) {
            char *end = NULL;
            long n = strtol(v->name + strlen(PAST_PREFIX), &end, 10);
            if (end == v->name + strlen(PAST_PREFIX) || n < 0 || n > 4096 ||
                (strcmp(end, ".key") != 0 && strcmp(end, ".value") != 0))
                return ulc_fail(ctx, ULC_ERR_INVALID, "%s: cache input '%s' is not named "
                                "past_key_values.N.key or past_key_values.N.value", path, v->name);
            if (n + 1 > layers) layers = (int)n + 1;
        }
    }
    if (!layers) return ULC_OK;
    d->layers = layers;
    for (int i = 0; i < layers; i++)
        for (int kv = 0; kv < 2; kv++) ULC_TRY(check_past(g, path, i, kv, d, ctx));
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if ((v->flags & ULC_VALUE_INITIALIZER) || ulc_decoder_is_past(v)) continue;
        if (strcmp(v->name, "input_ids") == 0) d->ids = v->name;
        else if (strcmp(v->name, "attention_mask") == 0) d->mask = v->name;
        else if (strcmp(v->name, "position_ids") == 0) d->position_ids = v->name;
        else
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: input '%s' of a model with a cache: "
                            "decoding feeds input_ids, attention_mask, position_ids and "
                            "past_key_values.*", path, v->name);
    }
    if (!d->ids || !graph_output(g, "logits"))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: a model with a cache needs input 'input_ids' "
                        "and output 'logits'", path);
    d->mask_positions = d->position_ids != NULL && d->mask != NULL; /* empty slots need a mask */
    return ULC_OK;
}

ulc_status ulc_decoder_find(const ulc_model *m, const char *path, ulc_decoder *d, ulc_ctx *ctx) {
    memset(d, 0, sizeof *d);
    ULC_TRY(interface(m, path, d, ctx));
    if (d->layers) {
        d->m = m;
        return ULC_OK;
    }
    ulc_model *own = NULL;
    ULC_TRY(ulc_hf_build_decoder(m, &own, ctx));
    if (!own) return ULC_OK;
    ulc_status s = interface(own, path, d, ctx);
    if (s == ULC_OK && !d->layers) s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: the built decoder has no cache", path);
    if (s != ULC_OK) {
        ulc_model_free(own);
        memset(d, 0, sizeof *d);
        return s;
    }
    d->m = d->own = own;
    d->mask_positions = 1; /* gpt2.c: positions from the mask */
    return ULC_OK;
}

ulc_status ulc_decoder_check(const ulc_model *m, const char *path, ulc_decoder *d, ulc_ctx *ctx) {
    memset(d, 0, sizeof *d);
    ulc_status s = interface(m, path, d, ctx);
    if (s == ULC_OK && d->layers) d->m = m;
    else if (s != ULC_OK) memset(d, 0, sizeof *d);
    return s;
}

void ulc_decoder_free(ulc_decoder *d) {
    ulc_model_free(d->own);
    memset(d, 0, sizeof *d);
}
