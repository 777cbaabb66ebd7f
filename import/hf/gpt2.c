/*
 * gpt2.c — transformers' GPT2LMHeadModel / GPT2Model forward (eval) as a graph.
 *
 *   h = wte[input_ids] + wpe[0..T)                                    (B, T, C)
 *   per layer:  a = LN1(h);  q, k, v = split(a @ Wqkv + bqkv)          Wqkv (C, 3C): Conv1D
 *               s = q k^T / sqrt(D);  s = causal ? s : finfo.min;  s += (1 - mask) * finfo.min
 *               h += (softmax(s) v) @ Wo + bo
 *               h += act(LN2(h) @ Wfc + bfc) @ Wproj + bproj            act: gelu_new by default
 *   logits = LN_f(h) @ wte^T   (lm_head.weight when stored untied)
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "import/hf/hf_internal.h"

#define FINFO_MIN (-3.4028234663852886e+38f)

ulc_status hf_build_gpt2(ulc_gb *b, const cJSON *cfg) {
    int bad = 0;
    int64_t V = (int64_t)hf_num(cfg, "vocab_size", 50257, &bad);
    int64_t P = (int64_t)hf_num(cfg, "n_positions", 1024, &bad);
    int64_t C = (int64_t)hf_num(cfg, "n_embd", 768, &bad);
    int64_t L = (int64_t)hf_num(cfg, "n_layer", 12, &bad);
    int64_t H = (int64_t)hf_num(cfg, "n_head", 12, &bad);
    const cJSON *ni = cJSON_GetObjectItemCaseSensitive(cfg, "n_inner");
    int64_t F = cJSON_IsNumber(ni) ? (int64_t)ni->valuedouble : 4 * C;
    float eps = (float)hf_num(cfg, "layer_norm_epsilon", 1e-5, &bad);
    const char *act = hf_str(cfg, "activation_function", "gelu_new");
    int scale_attn = hf_bool(cfg, "scale_attn_weights", 1);
    int inv_layer = hf_bool(cfg, "scale_attn_by_inverse_layer_idx", 0);
    if (bad || V <= 0 || P <= 0 || C <= 0 || L <= 0 || H <= 0 || C % H || F <= 0)
        return ulc_fail(b->ctx, ULC_ERR_INVALID, "config.json: gpt2 sizes are missing or "
                        "inconsistent (vocab_size, n_positions, n_embd, n_layer, n_head, n_inner)");
    int act_kind = strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0 ? 0
                   : strcmp(act, "gelu") == 0                                          ? 1
                   : strcmp(act, "relu") == 0                                          ? 2
                                                                                       : -1;
    if (act_kind < 0)
        return ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "config.json: activation_function '%s' is "
                        "not supported for gpt2", act);
    int64_t D = C / H;
    /* GPT2LMHeadModel checkpoints prefix the body with "transformer."; GPT2Model's do not. */
    const char *pre = ulc_graph_get_value(b->g, "transformer.wte.weight") ? "transformer." : "";
    int lm = *pre != '\0';

    ulc_dim io[2] = {{-1, "batch", NULL}, {-1, "sequence", NULL}};
    ulc_value *ids = ulc_gb_input(b, "input_ids", ULC_DT_I64, 2, io);
    ulc_value *mask = ulc_gb_input(b, "attention_mask", ULC_DT_I64, 2, io);

    ulc_gb_scope(b, "/%sembeddings", pre);
    ulc_value *wte = hf_weightf(b, 2, (const int64_t[]){V, C}, "%swte.weight", pre);
    ulc_value *wpe = hf_weightf(b, 2, (const int64_t[]){P, C}, "%swpe.weight", pre);
    ulc_value *tok = ulc_gb_op2(b, "Gather", wte, ids);
    ulc_gb_attr_int(b, tok, "axis", 0);
    ulc_value *shape = ulc_gb_op1(b, "Shape", ids);
    ulc_value *T = ulc_gb_op2(b, "Gather", shape, ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    ulc_gb_attr_int(b, T, "axis", 0);
    ulc_value *pos = ulc_gb_op3(b, "Range", ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){0}), T,
                            ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    ulc_value *pe = ulc_gb_op2(b, "Gather", wpe, pos);
    ulc_gb_attr_int(b, pe, "axis", 0);
    ulc_value *h = ulc_gb_op2(b, "Add", tok, pe);

    /* causal mask (T, T) and the padding bias (B, 1, 1, T), shared by every layer */
    ulc_gb_scope(b, "/%smask", pre);
    ulc_value *T1 = ulc_gb_op2(b, "Unsqueeze", T, ulc_gb_vec_i64(b, 1, (const int64_t[]){0}));
    ulc_value *TT = ulc_gb_op2(b, "Concat", T1, T1);
    ulc_gb_attr_int(b, TT, "axis", 0);
    ulc_value *ones = ulc_gb_op2(b, "Expand", ulc_gb_scalar_f32(b, 1.0f), TT);
    ulc_value *tril = ulc_gb_op1(b, "Trilu", ones);
    ulc_gb_attr_int(b, tril, "upper", 0);
    ulc_value *causal = ulc_gb_op1(b, "Cast", tril);
    ulc_gb_attr_int(b, causal, "to", ULC_DT_BOOL);
    ulc_value *mf = ulc_gb_op1(b, "Cast", mask);
    ulc_gb_attr_int(b, mf, "to", ULC_DT_F32);
    ulc_value *m4 = ulc_gb_op2(b, "Unsqueeze", mf, ulc_gb_vec_i64(b, 2, (const int64_t[]){1, 2}));
    ulc_value *pad = ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "Sub", ulc_gb_scalar_f32(b, 1.0f), m4),
                            ulc_gb_scalar_f32(b, FINFO_MIN));
    ulc_value *minv = ulc_gb_scalar_f32(b, FINFO_MIN);

    for (int64_t i = 0; i < L && b->status == ULC_OK; i++) {
        char p[96];
        snprintf(p, sizeof p, "%sh.%lld", pre, (long long)i);
        ulc_gb_scope(b, "/%s/attn", p);
        ulc_value *a = hf_layernorm(b, h, hf_weightf(b, 1, &C, "%s.ln_1.weight", p),
                                    hf_weightf(b, 1, &C, "%s.ln_1.bias", p), eps);
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
        ulc_gb_attr_ints(b, k, "perm", 4, (const int64_t[]){0, 2, 3, 1});
        ulc_value *v = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "Reshape", parts[2], heads));
        ulc_gb_attr_ints(b, v, "perm", 4, (const int64_t[]){0, 2, 1, 3});
        ulc_value *s = ulc_gb_op2(b, "MatMul", q, k);
        if (scale_attn) s = ulc_gb_op2(b, "Div", s, ulc_gb_scalar_f32(b, sqrtf((float)D)));
        if (inv_layer) s = ulc_gb_op2(b, "Div", s, ulc_gb_scalar_f32(b, (float)(i + 1)));
        s = ulc_gb_op3(b, "Where", causal, s, minv);
        s = ulc_gb_op2(b, "Add", s, pad);
        ulc_value *prob = ulc_gb_op1(b, "Softmax", s);
        ulc_gb_attr_int(b, prob, "axis", -1);
        ulc_value *ctxv = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "MatMul", prob, v));
        ulc_gb_attr_ints(b, ctxv, "perm", 4, (const int64_t[]){0, 2, 1, 3});
        ctxv = ulc_gb_op2(b, "Reshape", ctxv, ulc_gb_vec_i64(b, 3, (const int64_t[]){0, 0, C}));
        ulc_value *o = hf_linear(b, ctxv, hf_weightf(b, 2, (const int64_t[]){C, C}, "%s.attn.c_proj.weight", p),
                                 hf_weightf(b, 1, &C, "%s.attn.c_proj.bias", p));
        h = ulc_gb_op2(b, "Add", h, o);

        ulc_gb_scope(b, "/%s/mlp", p);
        ulc_value *m = hf_layernorm(b, h, hf_weightf(b, 1, &C, "%s.ln_2.weight", p),
                                    hf_weightf(b, 1, &C, "%s.ln_2.bias", p), eps);
        m = hf_linear(b, m, hf_weightf(b, 2, (const int64_t[]){C, F}, "%s.mlp.c_fc.weight", p),
                      hf_weightf(b, 1, &F, "%s.mlp.c_fc.bias", p));
        m = act_kind == 0 ? hf_gelu_tanh(b, m) : act_kind == 1 ? hf_gelu_erf(b, m) : ulc_gb_op1(b, "Relu", m);
        m = hf_linear(b, m, hf_weightf(b, 2, (const int64_t[]){F, C}, "%s.mlp.c_proj.weight", p),
                      hf_weightf(b, 1, &C, "%s.mlp.c_proj.bias", p));
        h = ulc_gb_op2(b, "Add", h, m);
    }
    ulc_gb_scope(b, "/%sln_f", pre);
    h = hf_layernorm(b, h, hf_weightf(b, 1, &C, "%sln_f.weight", pre),
                     hf_weightf(b, 1, &C, "%sln_f.bias", pre), eps);
    if (!lm) {
        ulc_gb_output(b, h, "last_hidden_state", ULC_DT_F32, 3,
                  (ulc_dim[]){{-1, "batch", NULL}, {-1, "sequence", NULL}, {C, NULL, NULL}});
        return ulc_gb_finish(b);
    }
    ulc_gb_scope(b, "/lm_head");
    ulc_value *head = ulc_graph_get_value(b->g, "lm_head.weight")
                          ? hf_weight(b, "lm_head.weight", 2, (const int64_t[]){V, C})
                          : wte; /* tied */
    ulc_value *logits = hf_linear_t(b, h, head, NULL);
    ulc_gb_output(b, logits, "logits", ULC_DT_F32, 3,
              (ulc_dim[]){{-1, "batch", NULL}, {-1, "sequence", NULL}, {V, NULL, NULL}});
    return ulc_gb_finish(b);
}
