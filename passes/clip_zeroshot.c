/* clip_zeroshot.c — a CLIP model as zero-shot image classifiers (clip_zeroshot.h). */
#include "passes/clip_zeroshot.h"

#include <stdlib.h>
#include <string.h>

#include "common/ptrvec.h"
#include "ir/builder.h"
#include "passes/pass.h"

static ulc_value *graph_input(const ulc_graph *g, const char *name) {
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (strcmp(v->name, name) == 0 && !(v->flags & ULC_VALUE_INITIALIZER)) return v;
    }
    return NULL;
}

static ulc_value *graph_output(const ulc_graph *g, const char *name) {
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (strcmp(v->name, name) == 0) return v;
    }
    return NULL;
}

int ulc_clip_is(const ulc_model *m, const char **why) {
    const ulc_graph *g = m->graph;
    const char *w = !graph_input(g, "input_ids")              ? "no text input 'input_ids'"
                    : !graph_output(g, "logits_per_image") ? "no output 'logits_per_image'"
                    : !graph_output(g, "text_embeds")      ? "no output 'text_embeds'"
                                                           : NULL;
    if (why) *why = w;
    return w == NULL;
}

/* The text input v as a constant initializer holding data ([n, len] int64, copied). */
static ulc_status freeze_input(ulc_graph *g, ulc_value *v, const int64_t *data, int64_t n,
                               int64_t len, ulc_ctx *ctx) {
    if (v->flags & ULC_VALUE_HAS_TYPE && v->dtype != ULC_DT_I64)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "CLIP input '%s' is not int64 token ids",
                        v->name);
    if (v->rank >= 0 && v->rank != 2)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "CLIP input '%s' is not [batch, tokens]",
                        v->name);
    for (int d = 0; d < v->rank; d++) {
        int64_t want = d ? len : n;
        if (v->dims[d].value >= 0 && v->dims[d].value != want)
            return ulc_fail(ctx, ULC_ERR_INVALID, "CLIP input '%s' has a fixed dim %d of %lld; "
                            "the prompts need %lld (%lld prompts of %lld tokens)", v->name, d,
                            (long long)v->dims[d].value, (long long)want, (long long)n,
                            (long long)len);
    }
    int64_t dims[2] = {n, len};
    size_t nb = (size_t)(n * len) * sizeof(int64_t);
    ulc_tensor *t = ulc_tensor_new(g, v->name, ULC_DT_I64, 2, dims, ctx);
    int64_t *buf = t ? malloc(nb ? nb : 1) : NULL;
    if (!buf) return t ? ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory") : ctx->status;
    memcpy(buf, data, nb);
    ULC_TRY(ulc_tensor_set_owned(g, t, buf, nb, ctx));
    ulc_ptrvec_remove(&g->inputs, v);
    v->flags &= ~(uint32_t)ULC_VALUE_INPUT;
    ULC_TRY(ulc_value_set_init(g, v, t, ctx));
    v->flags |= ULC_VALUE_CONSTANT;
    ulc_dim d[2] = {{n, NULL, NULL}, {len, NULL, NULL}};
    return ulc_value_set_shape(g, v, 2, d, ctx);
}

/* Rows/columns [first, first + count) of x along axis. */
static ulc_value *slice(ulc_gb *b, ulc_value *x, int64_t axis, int64_t first, int64_t count) {
    ulc_value *in[4] = {x, ulc_gb_vec_i64(b, 1, &first),
                        ulc_gb_vec_i64(b, 1, (const int64_t[]){first + count}),
                        ulc_gb_vec_i64(b, 1, &axis)};
    return ulc_gb_op(b, "Slice", 4, in);
}

/* One head: s / |e| with s the summed scores and e the summed embeddings of each class; *embeds
 * (when given) gets e / |e|, the class embeddings. */
static ulc_value *head_logits(ulc_gb *b, ulc_value *lpi, ulc_value *te, const ulc_clip_head *h,
                              ulc_value **embeds) {
    const int64_t K = h->classes, T = h->templates, n = K * T;
    ulc_gb_scope(b, "/zeroshot/%s", h->output);
    ulc_value *s = ulc_gb_op2(b, "Reshape", slice(b, lpi, 1, h->first, n),
                              ulc_gb_vec_i64(b, 3, (const int64_t[]){0, K, T}));
    s = ulc_gb_reduce_sum(b, s, 1, (const int64_t[]){2}, 0); /* [N, K] */
    ulc_value *e = ulc_gb_op2(b, "Reshape", slice(b, te, 0, h->first, n),
                              ulc_gb_vec_i64(b, 3, (const int64_t[]){K, T, -1}));
    e = ulc_gb_reduce_sum(b, e, 1, (const int64_t[]){1}, 0); /* [K, P] */
    ulc_value *norm = ulc_gb_op1(b, "Sqrt", ulc_gb_reduce_sum(b, ulc_gb_op2(b, "Mul", e, e), 1,
                                                              (const int64_t[]){1}, 0));
    if (embeds)
        *embeds = ulc_gb_op2(b, "Div", e, ulc_gb_unsqueeze(b, norm, 1, (const int64_t[]){1}));
    return ulc_gb_op2(b, "Div", s, norm); /* [N, K] / [K] */
}

static ulc_status check_prompts(const ulc_graph *g, const ulc_clip_prompts *p, ulc_ctx *ctx) {
    if (p->n <= 0 || p->len <= 0 || !p->ids || p->n_heads <= 0 || p->n_heads > ULC_CLIP_MAX_HEADS)
        return ulc_fail(ctx, ULC_ERR_INVALID, "CLIP zero-shot: no prompts");
    for (int k = 0; k < p->n_heads; k++) {
        const ulc_clip_head *h = &p->heads[k];
        if (h->classes <= 0 || h->templates <= 0 || h->first < 0 ||
            h->first + h->classes * h->templates > p->n)
            return ulc_fail(ctx, ULC_ERR_INVALID, "CLIP zero-shot: head '%s' reads prompts "
                            "outside the %lld given", h->output, (long long)p->n);
        if (ulc_graph_get_value(g, h->output) || (h->embeds && ulc_graph_get_value(g, h->embeds)))
            return ulc_fail(ctx, ULC_ERR_INVALID, "CLIP zero-shot: the model already has a value "
                            "named '%s'", h->output);
        for (int j = 0; j < k; j++)
            if (strcmp(p->heads[j].output, h->output) == 0)
                return ulc_fail(ctx, ULC_ERR_INVALID, "CLIP zero-shot: two heads named '%s'",
                                h->output);
    }
    return ULC_OK;
}

ulc_status ulc_clip_zeroshot(ulc_model *m, const ulc_clip_prompts *p, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    const char *why = NULL;
    if (!ulc_clip_is(m, &why))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "not a CLIP model with both towers: %s (a "
                        "Hugging Face CLIPModel, or its ONNX export with text and image inputs)",
                        why);
    ULC_TRY(check_prompts(g, p, ctx));
    int64_t opset = ulc_model_opset(m, "");
    if (opset < 13)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "CLIP zero-shot: the model's opset %lld is "
                        "older than 13", (long long)opset);
    ulc_value *ids = graph_input(g, "input_ids"), *mask = graph_input(g, "attention_mask");
    ulc_value *lpi = graph_output(g, "logits_per_image"), *te = graph_output(g, "text_embeds");
    ULC_TRY(freeze_input(g, ids, p->ids, p->n, p->len, ctx));
    if (mask) {
        if (!p->mask)
            return ulc_fail(ctx, ULC_ERR_INVALID, "CLIP zero-shot: the model reads "
                            "attention_mask and the prompts have none");
        ULC_TRY(freeze_input(g, mask, p->mask, p->n, p->len, ctx));
    }
    /* the old outputs become plain values; the heads are the outputs */
    for (size_t i = 0; i < g->outputs.len; i++)
        ((ulc_value *)g->outputs.items[i])->flags &= ~(uint32_t)ULC_VALUE_OUTPUT;
    g->outputs.len = 0;
    ulc_gb gb, *b = &gb;
    ulc_gb_init(b, g, opset, ULC_GB_NAMES_SCOPED, ctx);
    for (int k = 0; k < p->n_heads && b->status == ULC_OK; k++) {
        const ulc_clip_head *h = &p->heads[k];
        ulc_value *e = NULL, *z = head_logits(b, lpi, te, h, h->embeds ? &e : NULL);
        ulc_dim d[2] = {{-1, "image_batch", NULL}, {h->classes, NULL, NULL}};
        if (z) ulc_gb_output(b, z, h->output, ULC_DT_F32, 2, d);
        ulc_dim de[2] = {{h->classes, NULL, NULL}, {-1, NULL, NULL}};
        if (e) ulc_gb_output(b, e, h->embeds, ULC_DT_F32, 2, de);
    }
    ULC_TRY(ulc_gb_finish(b));
    ulc_prune_dead(m);
    ULC_TRY(ulc_graph_toposort(g, ctx));
    return ulc_graph_verify(g, ctx);
}
