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

ulc_status hf_build_gpt2(hb *b, const cJSON *cfg) {
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
    ulc_value *ids = hb_input(b, "input_ids", ULC_DT_I64, 2, io);
    ulc_value *mask = hb_input(b, "attention_mask", ULC_DT_I64, 2, io);

    hb_scope(b, "/%sembeddings", pre);
    ulc_value *wte = hb_weightf(b, 2, (const int64_t[]){V, C}, "%swte.weight", pre);
    ulc_value *wpe = hb_weightf(b, 2, (const int64_t[]){P, C}, "%swpe.weight", pre);
    ulc_value *tok = hb_op2(b, "Gather", wte, ids);
    hb_attr_int(b, tok, "axis", 0);
    ulc_value *shape = hb_op1(b, "Shape", ids);
    ulc_value *T = hb_op2(b, "Gather", shape, hb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    hb_attr_int(b, T, "axis", 0);
    ulc_value *pos = hb_op3(b, "Range", hb_const_i64(b, 0, NULL, (const int64_t[]){0}), T,
                            hb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    ulc_value *pe = hb_op2(b, "Gather", wpe, pos);
    hb_attr_int(b, pe, "axis", 0);
    ulc_value *h = hb_op2(b, "Add", tok, pe);

    /* causal mask (T, T) and the padding bias (B, 1, 1, T), shared by every layer */
    hb_scope(b, "/%smask", pre);
    ulc_value *T1 = hb_op2(b, "Unsqueeze", T, hb_vec_i64(b, 1, (const int64_t[]){0}));
    ulc_value *TT = hb_op2(b, "Concat", T1, T1);
    hb_attr_int(b, TT, "axis", 0);
    ulc_value *ones = hb_op2(b, "Expand", hb_scalar_f32(b, 1.0f), TT);
    ulc_value *tril = hb_op1(b, "Trilu", ones);
    hb_attr_int(b, tril, "upper", 0);
    ulc_value *causal = hb_op1(b, "Cast", tril);
    hb_attr_int(b, causal, "to", ULC_DT_BOOL);
    ulc_value *mf = hb_op1(b, "Cast", mask);
    hb_attr_int(b, mf, "to", ULC_DT_F32);
    ulc_value *m4 = hb_op2(b, "Unsqueeze", mf, hb_vec_i64(b, 2, (const int64_t[]){1, 2}));
    ulc_value *pad = hb_op2(b, "Mul", hb_op2(b, "Sub", hb_scalar_f32(b, 1.0f), m4),
                            hb_scalar_f32(b, FINFO_MIN));
    ulc_value *minv = hb_scalar_f32(b, FINFO_MIN);

    for (int64_t i = 0; i < L && b->status == ULC_OK; i++) {
        char p[96];
        snprintf(p, sizeof p, "%sh.%lld", pre, (long long)i);
        hb_scope(b, "/%s/attn", p);
        ulc_value *a = hb_layernorm(b, h, hb_weightf(b, 1, &C, "%s.ln_1.weight", p),
                                    hb_weightf(b, 1, &C, "%s.ln_1.bias", p), eps);
        ulc_value *qkv = hb_linear(b, a, hb_weightf(b, 2, (const int64_t[]){C, 3 * C}, "%s.attn.c_attn.weight", p),
                                   hb_weightf(b, 1, (const int64_t[]){3 * C}, "%s.attn.c_attn.bias", p));
        ulc_value *qkv_in[2] = {qkv, hb_vec_i64(b, 3, (const int64_t[]){C, C, C})};
        ulc_value *parts[3] = {NULL, NULL, NULL};
        hb_op_multi(b, "Split", 2, qkv_in, 3, parts);
        if (parts[0]) hb_attr_int(b, parts[0], "axis", 2);
        ulc_value *heads = hb_vec_i64(b, 4, (const int64_t[]){0, 0, H, D});
        ulc_value *q = hb_op1(b, "Transpose", hb_op2(b, "Reshape", parts[0], heads));
        hb_attr_ints(b, q, "perm", 4, (const int64_t[]){0, 2, 1, 3});
        ulc_value *k = hb_op1(b, "Transpose", hb_op2(b, "Reshape", parts[1], heads));
        hb_attr_ints(b, k, "perm", 4, (const int64_t[]){0, 2, 3, 1});
        ulc_value *v = hb_op1(b, "Transpose", hb_op2(b, "Reshape", parts[2], heads));
        hb_attr_ints(b, v, "perm", 4, (const int64_t[]){0, 2, 1, 3});
        ulc_value *s = hb_op2(b, "MatMul", q, k);
        if (scale_attn) s = hb_op2(b, "Div", s, hb_scalar_f32(b, sqrtf((float)D)));
        if (inv_layer) s = hb_op2(b, "Div", s, hb_scalar_f32(b, (float)(i + 1)));
        s = hb_op3(b, "Where", causal, s, minv);
        s = hb_op2(b, "Add", s, pad);
        ulc_value *prob = hb_op1(b, "Softmax", s);
        hb_attr_int(b, prob, "axis", -1);
        ulc_value *ctxv = hb_op1(b, "Transpose", hb_op2(b, "MatMul", prob, v));
        hb_attr_ints(b, ctxv, "perm", 4, (const int64_t[]){0, 2, 1, 3});
        ctxv = hb_op2(b, "Reshape", ctxv, hb_vec_i64(b, 3, (const int64_t[]){0, 0, C}));
        ulc_value *o = hb_linear(b, ctxv, hb_weightf(b, 2, (const int64_t[]){C, C}, "%s.attn.c_proj.weight", p),
                                 hb_weightf(b, 1, &C, "%s.attn.c_proj.bias", p));
        h = hb_op2(b, "Add", h, o);

        hb_scope(b, "/%s/mlp", p);
        ulc_value *m = hb_layernorm(b, h, hb_weightf(b, 1, &C, "%s.ln_2.weight", p),
                                    hb_weightf(b, 1, &C, "%s.ln_2.bias", p), eps);
        m = hb_linear(b, m, hb_weightf(b, 2, (const int64_t[]){C, F}, "%s.mlp.c_fc.weight", p),
                      hb_weightf(b, 1, &F, "%s.mlp.c_fc.bias", p));
        m = act_kind == 0 ? hb_gelu_tanh(b, m) : act_kind == 1 ? hb_gelu_erf(b, m) : hb_op1(b, "Relu", m);
        m = hb_linear(b, m, hb_weightf(b, 2, (const int64_t[]){F, C}, "%s.mlp.c_proj.weight", p),
                      hb_weightf(b, 1, &C, "%s.mlp.c_proj.bias", p));
        h = hb_op2(b, "Add", h, m);
    }
    hb_scope(b, "/%sln_f", pre);
    h = hb_layernorm(b, h, hb_weightf(b, 1, &C, "%sln_f.weight", pre),
                     hb_weightf(b, 1, &C, "%sln_f.bias", pre), eps);
    if (!lm) {
        hb_output(b, h, "last_hidden_state", ULC_DT_F32, 3,
                  (ulc_dim[]){{-1, "batch", NULL}, {-1, "sequence", NULL}, {C, NULL, NULL}});
        return hb_finish(b);
    }
    hb_scope(b, "/lm_head");
    ulc_value *head = ulc_graph_get_value(b->g, "lm_head.weight")
                          ? hb_weight(b, "lm_head.weight", 2, (const int64_t[]){V, C})
                          : wte; /* tied */
    ulc_value *logits = hb_linear_t(b, h, head, NULL);
    hb_output(b, logits, "logits", ULC_DT_F32, 3,
              (ulc_dim[]){{-1, "batch", NULL}, {-1, "sequence", NULL}, {V, NULL, NULL}});
    return hb_finish(b);
}
