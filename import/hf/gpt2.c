/*
 * gpt2.c — transformers' GPT2LMHeadModel / GPT2Model forward (eval) as a graph.
 *
 *   h = wte[input_ids] + wpe[0..T)                                    (B, T, C)
 *   per layer:  a = LN1(h);  q, k, v = split(a @ Wqkv + bqkv)          Wqkv (C, 3C): Conv1D
 *               s = q k^T / sqrt(D);  s = causal ? s : finfo.min;  s += (1 - mask) * finfo.min
 *               h += (softmax(s) v) @ Wo + bo
 *               h += act(LN2(h) @ Wfc + bfc) @ Wproj + bproj            act: gelu_new by default
 *   logits = LN_f(h) @ wte^T   (lm_head.weight when stored untied)
 *
 * The decoder (hf_build_gpt2_decoder) is the same math with a cache, in optimum's past/present
 * interface: per layer past_key_values.{i}.key/value (B, H, P, D) come in, K = [past_k; k] and
 * V = [past_v; v] (B, H, P+T, D) go out as present.{i}.key/value, the T queries attend to the
 * P+T keys with query i seeing keys 0..P+i, attention_mask is (B, P+T), and query i's position
 * is the count of ones in attention_mask[b, 0..P+i] less one (transformers' cumsum(mask) - 1),
 * P + i where attention_mask[b, P+i] is 0: P + i for a mask of ones, the token's real position
 * when the cache holds empty slots masked with zeros (how extraction uses it), and the
 * positions of the model without past along a right-padded row fed whole after an empty past
 * (how scoring and training use it).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "import/hf/hf_internal.h"

#define FINFO_MIN (-3.4028234663852886e+38f)

/* config.json's sizes for one GPT-2. */
typedef struct gpt2_cfg {
    int64_t V, P, C, L, H, F, D;
    float eps;
    int act_kind; /* 0 gelu_new (tanh), 1 gelu (erf), 2 relu */
    int scale_attn, inv_layer;
} gpt2_cfg;

static ulc_status read_cfg(ulc_gb *b, const cJSON *cfg, gpt2_cfg *c) {
    int bad = 0;
    c->V = (int64_t)hf_num(cfg, "vocab_size", 50257, &bad);
    c->P = (int64_t)hf_num(cfg, "n_positions", 1024, &bad);
    c->C = (int64_t)hf_num(cfg, "n_embd", 768, &bad);
    c->L = (int64_t)hf_num(cfg, "n_layer", 12, &bad);
    c->H = (int64_t)hf_num(cfg, "n_head", 12, &bad);
    const cJSON *ni = cJSON_GetObjectItemCaseSensitive(cfg, "n_inner");
    c->F = cJSON_IsNumber(ni) ? (int64_t)ni->valuedouble : 4 * c->C;
    c->eps = (float)hf_num(cfg, "layer_norm_epsilon", 1e-5, &bad);
    const char *act = hf_str(cfg, "activation_function", "gelu_new");
    c->scale_attn = hf_bool(cfg, "scale_attn_weights", 1);
    c->inv_layer = hf_bool(cfg, "scale_attn_by_inverse_layer_idx", 0);
    if (bad || c->V <= 0 || c->P <= 0 || c->C <= 0 || c->L <= 0 || c->H <= 0 || c->C % c->H || c->F <= 0)
        return ulc_fail(b->ctx, ULC_ERR_INVALID, "config.json: gpt2 sizes are missing or "
                        "inconsistent (vocab_size, n_positions, n_embd, n_layer, n_head, n_inner)");
    c->act_kind = strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0 ? 0
                  : strcmp(act, "gelu") == 0                                          ? 1
                  : strcmp(act, "relu") == 0                                          ? 2
                                                                                      : -1;
    if (c->act_kind < 0)
        return ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "config.json: activation_function '%s' is "
                        "not supported for gpt2", act);
    c->D = c->C / c->H;
    return ULC_OK;
}

/* What every layer shares: the causal mask (T, T), or (T, P+T) with a cache, as bool, the
 * padding bias (B, 1, 1, T or P+T) and finfo.min. */
typedef struct gpt2_masks {
    ulc_value *causal, *pad, *minv;
} gpt2_masks;

/* tok + wpe[pos]. */
static ulc_value *add_positions(ulc_gb *b, ulc_value *wpe, ulc_value *tok, ulc_value *pos) {
    ulc_value *pe = ulc_gb_op2(b, "Gather", wpe, pos);
    ulc_gb_attr_int(b, pe, "axis", 0);
    return ulc_gb_op2(b, "Add", tok, pe);
}

/* The embeddings h (B, T, C) and the masks. With past (the first layer's cached keys, (B, H, P,
 * D)), positions come from the mask as the header says and the causal mask is shifted by P. */
static ulc_value *embed(ulc_gb *b, const gpt2_cfg *c, const char *pre, ulc_value *ids,
                        ulc_value *mask, ulc_value *past, gpt2_masks *mk) {
    ulc_gb_scope(b, "/%sembeddings", pre);
    ulc_value *wte = hf_weightf(b, 2, (const int64_t[]){c->V, c->C}, "%swte.weight", pre);
    ulc_value *wpe = hf_weightf(b, 2, (const int64_t[]){c->P, c->C}, "%swpe.weight", pre);
    ulc_value *tok = ulc_gb_op2(b, "Gather", wte, ids);
    ulc_gb_attr_int(b, tok, "axis", 0);
    ulc_value *shape = ulc_gb_op1(b, "Shape", ids);
    ulc_value *T = ulc_gb_op2(b, "Gather", shape, ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    ulc_gb_attr_int(b, T, "axis", 0);
    ulc_value *pos = ulc_gb_op3(b, "Range", ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){0}), T,
                                ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    ulc_value *h = past ? NULL : add_positions(b, wpe, tok, pos); /* with past: from the mask */

    ulc_gb_scope(b, "/%smask", pre);
    ulc_value *T1 = ulc_gb_op2(b, "Unsqueeze", T, ulc_gb_vec_i64(b, 1, (const int64_t[]){0}));
    ulc_value *TK = T1, *P = NULL; /* keys: T, or P + T */
    if (past) {
        P = ulc_gb_dim(b, past, 2);
        TK = ulc_gb_op2(b, "Add", T1, ulc_gb_op2(b, "Unsqueeze", P, ulc_gb_vec_i64(b, 1, (const int64_t[]){0})));
    }
    ulc_value *TT = ulc_gb_op2(b, "Concat", T1, TK);
    ulc_gb_attr_int(b, TT, "axis", 0);
    ulc_value *ones = ulc_gb_op2(b, "Expand", ulc_gb_scalar_f32(b, 1.0f), TT);
    ulc_value *tril = past ? ulc_gb_op2(b, "Trilu", ones, P) : ulc_gb_op1(b, "Trilu", ones);
    ulc_gb_attr_int(b, tril, "upper", 0);
    mk->causal = ulc_gb_op1(b, "Cast", tril);
    ulc_gb_attr_int(b, mk->causal, "to", ULC_DT_BOOL);
    ulc_value *mf = ulc_gb_op1(b, "Cast", mask);
    ulc_gb_attr_int(b, mf, "to", ULC_DT_F32);
    if (past) { /* (B, T): the ones of the mask up to each query's key, less one; P + i where
                 * the query itself is masked (a right-padded row's padding, as without past) */
        ulc_value *seen = ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "Unsqueeze", mf, ulc_gb_vec_i64(b, 1, (const int64_t[]){1})), tril);
        ulc_value *cnt = ulc_gb_reduce_sum(b, seen, 1, (const int64_t[]){2}, 0);
        ulc_value *at = ulc_gb_op2(b, "Add", pos, P);     /* the queries' keys: P + i */
        ulc_value *mq = ulc_gb_op2(b, "Gather", mf, at);  /* (B, T): the queries' mask */
        ulc_gb_attr_int(b, mq, "axis", 1);
        ulc_value *atf = ulc_gb_op1(b, "Cast", at);
        ulc_gb_attr_int(b, atf, "to", ULC_DT_F32);
        ulc_value *real = ulc_gb_op2(b, "Sub", cnt, ulc_gb_scalar_f32(b, 1.0f));
        ulc_value *pf = ulc_gb_op2(b, "Add", ulc_gb_op2(b, "Mul", mq, real),
                                   ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "Sub", ulc_gb_scalar_f32(b, 1.0f), mq), atf));
        pos = ulc_gb_op1(b, "Cast", pf);
        ulc_gb_attr_int(b, pos, "to", ULC_DT_I64);
    }
    ulc_value *m4 = ulc_gb_op2(b, "Unsqueeze", mf, ulc_gb_vec_i64(b, 2, (const int64_t[]){1, 2}));
    mk->pad = ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "Sub", ulc_gb_scalar_f32(b, 1.0f), m4),
                         ulc_gb_scalar_f32(b, FINFO_MIN));
    mk->minv = ulc_gb_scalar_f32(b, FINFO_MIN);
    if (!past) return h;
    ulc_gb_scope(b, "/%sembeddings", pre);
    return add_positions(b, wpe, tok, pos);
}

/* One layer's attention on a = LN1(h): returns its c_proj output (B, T, C). With past_k/past_v
 * (B, H, P, D), the keys and values are concatenated after them and kout, vout get the
 * results (B, H, P+T, D). */
static ulc_value *attention(ulc_gb *b, const gpt2_cfg *c, const char *p, int64_t i, ulc_value *a,
                            const gpt2_masks *mk, ulc_value *past_k, ulc_value *past_v,
                            ulc_value **kout, ulc_value **vout) {
    int64_t C = c->C, H = c->H, D = c->D;
    ulc_value *qkv = hf_linear(b, a, hf_weightf(b, 2, (const int64_t[]){C, 3 * C}, "%s.attn.c_attn.weight", p),
                               hf_weightf(b, 1, (const int64_t[]){3 * C}, "%s.attn.c_attn.bias", p));
    ulc_value *qkv_in[2] = {qkv, ulc_gb_vec_i64(b, 3, (const int64_t[]){C, C, C})};
    ulc_value *parts[3] = {NULL, NULL, NULL};
    ulc_gb_opn(b, NULL, "Split", 2, qkv_in, 3, parts);
    if (parts[0]) ulc_gb_attr_int(b, parts[0], "axis", 2);
    ulc_value *heads = ulc_gb_vec_i64(b, 4, (const int64_t[]){0, 0, H, D});
    ulc_value *q = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "Reshape", parts[0], heads));
    ulc_gb_attr_ints(b, q, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    ulc_value *k = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "Reshape", parts[1], heads));
    ulc_gb_attr_ints(b, k, "perm", 4, (const int64_t[]){0, 2, past_k ? 1 : 3, past_k ? 3 : 1});
    ulc_value *v = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "Reshape", parts[2], heads));
    ulc_gb_attr_ints(b, v, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    if (past_k) { /* K, V = [past; new] (B, H, P+T, D); the product reads K^T */
        *kout = k = ulc_gb_op2(b, "Concat", past_k, k);
        ulc_gb_attr_int(b, k, "axis", 2);
        *vout = v = ulc_gb_op2(b, "Concat", past_v, v);
        ulc_gb_attr_int(b, v, "axis", 2);
        k = ulc_gb_transpose(b, k, 4, (const int64_t[]){0, 1, 3, 2});
    }
    ulc_value *s = ulc_gb_op2(b, "MatMul", q, k);
    if (c->scale_attn) s = ulc_gb_op2(b, "Div", s, ulc_gb_scalar_f32(b, sqrtf((float)D)));
    if (c->inv_layer) s = ulc_gb_op2(b, "Div", s, ulc_gb_scalar_f32(b, (float)(i + 1)));
    s = ulc_gb_op3(b, "Where", mk->causal, s, mk->minv);
    s = ulc_gb_op2(b, "Add", s, mk->pad);
    ulc_value *prob = ulc_gb_op1(b, "Softmax", s);
    ulc_gb_attr_int(b, prob, "axis", -1);
    ulc_value *ctxv = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "MatMul", prob, v));
    ulc_gb_attr_ints(b, ctxv, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    ctxv = ulc_gb_op2(b, "Reshape", ctxv, ulc_gb_vec_i64(b, 3, (const int64_t[]){0, 0, C}));
    return hf_linear(b, ctxv, hf_weightf(b, 2, (const int64_t[]){C, C}, "%s.attn.c_proj.weight", p),
                     hf_weightf(b, 1, &C, "%s.attn.c_proj.bias", p));
}

static ulc_value *mlp(ulc_gb *b, const gpt2_cfg *c, const char *p, ulc_value *h) {
    int64_t C = c->C, F = c->F;
    ulc_value *m = hf_layernorm(b, h, hf_weightf(b, 1, &C, "%s.ln_2.weight", p),
                                hf_weightf(b, 1, &C, "%s.ln_2.bias", p), c->eps);
    m = hf_linear(b, m, hf_weightf(b, 2, (const int64_t[]){C, F}, "%s.mlp.c_fc.weight", p),
                  hf_weightf(b, 1, &F, "%s.mlp.c_fc.bias", p));
    m = c->act_kind == 0 ? hf_gelu_tanh(b, m) : c->act_kind == 1 ? hf_gelu_erf(b, m) : ulc_gb_op1(b, "Relu", m);
    return hf_linear(b, m, hf_weightf(b, 2, (const int64_t[]){F, C}, "%s.mlp.c_proj.weight", p),
                     hf_weightf(b, 1, &C, "%s.mlp.c_proj.bias", p));
}

static ulc_status build(ulc_gb *b, const cJSON *cfg, int cached) {
    gpt2_cfg c;
    ULC_TRY(read_cfg(b, cfg, &c));
    /* GPT2LMHeadModel checkpoints prefix the body with "transformer."; GPT2Model's do not. */
    const char *pre = ulc_graph_get_value(b->g, "transformer.wte.weight") ? "transformer." : "";
    int lm = *pre != '\0';
    if (cached && !lm)
        return ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "a decoder needs a GPT2LMHeadModel "
                        "checkpoint (transformer.* weights and a language-model head)");
    const char *seq = "sequence", *keys = cached ? "past_sequence + sequence" : "sequence";
    ulc_value *ids = ulc_gb_input(b, "input_ids", ULC_DT_I64, 2, (ulc_dim[]){{-1, "batch", NULL}, {-1, seq, NULL}});
    ulc_value *mask = ulc_gb_input(b, "attention_mask", ULC_DT_I64, 2, (ulc_dim[]){{-1, "batch", NULL}, {-1, keys, NULL}});
    ulc_dim pdims[4] = {{-1, "batch", NULL}, {c.H, NULL, NULL}, {-1, "past_sequence", NULL}, {c.D, NULL, NULL}};
    ulc_value *past[2 * ULC_HF_MAX_LAYERS] = {NULL}, *present[2 * ULC_HF_MAX_LAYERS] = {NULL};
    if (cached && c.L > ULC_HF_MAX_LAYERS)
        return ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "a decoder of %lld layers (at most %d)",
                        (long long)c.L, ULC_HF_MAX_LAYERS);
    for (int64_t i = 0; cached && i < 2 * c.L; i++) {
        char name[64];
        snprintf(name, sizeof name, "past_key_values.%lld.%s", (long long)(i / 2), i % 2 ? "value" : "key");
        past[i] = ulc_gb_input(b, name, ULC_DT_F32, 4, pdims);
    }
    gpt2_masks mk;
    ulc_value *h = embed(b, &c, pre, ids, mask, past[0], &mk);
    for (int64_t i = 0; i < c.L && b->status == ULC_OK; i++) {
        char p[96];
        snprintf(p, sizeof p, "%sh.%lld", pre, (long long)i);
        ulc_gb_scope(b, "/%s/attn", p);
        ulc_value *a = hf_layernorm(b, h, hf_weightf(b, 1, &c.C, "%s.ln_1.weight", p),
                                    hf_weightf(b, 1, &c.C, "%s.ln_1.bias", p), c.eps);
        h = ulc_gb_op2(b, "Add", h, attention(b, &c, p, i, a, &mk, past[2 * i], past[2 * i + 1],
                                              &present[2 * i], &present[2 * i + 1]));
        ulc_gb_scope(b, "/%s/mlp", p);
        h = ulc_gb_op2(b, "Add", h, mlp(b, &c, p, h));
    }
    ulc_gb_scope(b, "/%sln_f", pre);
    h = hf_layernorm(b, h, hf_weightf(b, 1, &c.C, "%sln_f.weight", pre),
                     hf_weightf(b, 1, &c.C, "%sln_f.bias", pre), c.eps);
    if (!lm) {
        ulc_gb_output(b, h, "last_hidden_state", ULC_DT_F32, 3,
                      (ulc_dim[]){{-1, "batch", NULL}, {-1, seq, NULL}, {c.C, NULL, NULL}});
        return ulc_gb_finish(b);
    }
    ulc_gb_scope(b, "/lm_head");
    ulc_value *head = ulc_graph_get_value(b->g, "lm_head.weight")
                          ? hf_weight(b, "lm_head.weight", 2, (const int64_t[]){c.V, c.C})
                          : ulc_graph_get_value(b->g, "transformer.wte.weight"); /* tied */
    ulc_value *logits = hf_linear_t(b, h, head, NULL);
    ulc_gb_output(b, logits, "logits", ULC_DT_F32, 3,
                  (ulc_dim[]){{-1, "batch", NULL}, {-1, seq, NULL}, {c.V, NULL, NULL}});
    ulc_dim odims[4] = {{-1, "batch", NULL}, {c.H, NULL, NULL}, {-1, keys, NULL}, {c.D, NULL, NULL}};
    for (int64_t i = 0; cached && i < 2 * c.L; i++) {
        char name[64];
        snprintf(name, sizeof name, "present.%lld.%s", (long long)(i / 2), i % 2 ? "value" : "key");
        ulc_gb_output(b, present[i], name, ULC_DT_F32, 4, odims);
    }
    return ulc_gb_finish(b);
}

ulc_status hf_build_gpt2(ulc_gb *b, const cJSON *cfg) { return build(b, cfg, 0); }

ulc_status hf_build_gpt2_decoder(ulc_gb *b, const cJSON *cfg) { return build(b, cfg, 1); }
