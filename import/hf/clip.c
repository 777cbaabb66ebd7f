/*
 * clip.c — transformers' CLIPModel forward (eval) as a graph: both towers, the projections and
 * logit_scale.
 *
 *   text:   h = tok[input_ids] + pos[0..T);  encoder with causal + padding masks;  LN_final
 *           pooled = h[b, eot(b)]   eot: argmax(input_ids) when eos_token_id == 2 (old configs),
 *                                        else the first position holding eos_token_id
 *   vision: h = [class; conv_p(pixel_values)] + pos;  LN_pre;  encoder;  pooled = LN_post(h[:, 0])
 *   encoder layer (pre-LN): h += out(attn(LN1(h)));  h += fc2(act(fc1(LN2(h))))
 *   t = text_projection(pooled_t) / |.|,  v = visual_projection(pooled_v) / |.|
 *   logits_per_text = t v^T exp(logit_scale),  logits_per_image = its transpose
 */
#include <stdio.h>
#include <string.h>

#include "import/hf/hf_internal.h"

#define FINFO_MIN (-3.4028234663852886e+38f)

typedef struct tower {
    const char *prefix; /* "text_model" / "vision_model" */
    int64_t C, L, H, F;
    float eps;
    const char *act;
    const cJSON *cfg; /* the tower's section of config.json (NULL: all defaults) */
} tower;

/* The tower's sizes from config.json's KEY section; 0 (with b->status set) when they are bad. */
static int read_tower(ulc_gb *b, const cJSON *cfg, const char *key, tower *t, int text) {
    ulc_status s = ULC_OK;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cfg, key);
    t->cfg = c;
    int bad = 0;
    t->C = (int64_t)hf_num(c, "hidden_size", text ? 512 : 768, &bad);
    t->L = (int64_t)hf_num(c, "num_hidden_layers", 12, &bad);
    t->H = (int64_t)hf_num(c, "num_attention_heads", text ? 8 : 12, &bad);
    t->F = (int64_t)hf_num(c, "intermediate_size", text ? 2048 : 3072, &bad);
    t->eps = (float)hf_num(c, "layer_norm_eps", 1e-5, &bad);
    t->act = hf_str(c, "hidden_act", "quick_gelu");
    if (c && !cJSON_IsObject(c))
        s = ulc_fail(b->ctx, ULC_ERR_INVALID, "config.json: %s is not an object", key);
    else if (bad || t->C <= 0 || t->L <= 0 || t->H <= 0 || t->C % t->H || t->F <= 0)
        s = ulc_fail(b->ctx, ULC_ERR_INVALID, "config.json: %s sizes are missing or "
                     "inconsistent (hidden_size, num_hidden_layers, num_attention_heads, "
                     "intermediate_size)", key);
    else if (!hf_act_known(t->act))
        s = ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "config.json: %s.hidden_act '%s' is not "
                     "supported", key, t->act);
    if (s != ULC_OK && b->status == ULC_OK) b->status = s;
    return s == ULC_OK;
}

static ulc_value *encoder(ulc_gb *b, const tower *t, ulc_value *h, ulc_value *bias1, ulc_value *bias2) {
    const int64_t C = t->C, F = t->F, CC[2] = {C, C};
    for (int64_t i = 0; i < t->L && b->status == ULC_OK; i++) {
        char p[96];
        snprintf(p, sizeof p, "%s.encoder.layers.%lld", t->prefix, (long long)i);
        ulc_gb_scope(b, "/%s/self_attn", p);
        ulc_value *a = hf_layernorm(b, h, hf_weightf(b, 1, &C, "%s.layer_norm1.weight", p),
                                    hf_weightf(b, 1, &C, "%s.layer_norm1.bias", p), t->eps);
        ulc_value *proj[3];
        static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
        for (int j = 0; j < 3; j++)
            proj[j] = hf_linear_t(b, a, hf_weightf(b, 2, CC, "%s.self_attn.%s.weight", p, qkv[j]),
                                  hf_weightf(b, 1, &C, "%s.self_attn.%s.bias", p, qkv[j]));
        a = hf_attention(b, proj[0], proj[1], proj[2], t->H, C / t->H, 1, bias1, bias2);
        a = hf_linear_t(b, a, hf_weightf(b, 2, CC, "%s.self_attn.out_proj.weight", p),
                        hf_weightf(b, 1, &C, "%s.self_attn.out_proj.bias", p));
        h = ulc_gb_op2(b, "Add", h, a);

        ulc_gb_scope(b, "/%s/mlp", p);
        ulc_value *m = hf_layernorm(b, h, hf_weightf(b, 1, &C, "%s.layer_norm2.weight", p),
                                    hf_weightf(b, 1, &C, "%s.layer_norm2.bias", p), t->eps);
        m = hf_linear_t(b, m, hf_weightf(b, 2, (const int64_t[]){F, C}, "%s.mlp.fc1.weight", p),
                        hf_weightf(b, 1, &F, "%s.mlp.fc1.bias", p));
        m = hf_act(b, m, t->act);
        m = hf_linear_t(b, m, hf_weightf(b, 2, (const int64_t[]){C, F}, "%s.mlp.fc2.weight", p),
                        hf_weightf(b, 1, &C, "%s.mlp.fc2.bias", p));
        h = ulc_gb_op2(b, "Add", h, m);
    }
    return h;
}

/* The pooled (B, C) text features. */
static ulc_value *text_tower(ulc_gb *b, const cJSON *cfg, ulc_value *ids, ulc_value *mask,
                             int64_t *width) {
    tower t = {"text_model", 0, 0, 0, 0, 0, NULL, NULL};
    if (!read_tower(b, cfg, "text_config", &t, 1)) return NULL;
    const cJSON *tc = t.cfg;
    int bad = 0;
    int64_t V = (int64_t)hf_num(tc, "vocab_size", 49408, &bad);
    int64_t P = (int64_t)hf_num(tc, "max_position_embeddings", 77, &bad);
    int64_t eos = (int64_t)hf_num(tc, "eos_token_id", 49407, &bad);
    if (bad || V <= 0 || P <= 0) {
        b->status = ulc_fail(b->ctx, ULC_ERR_INVALID, "config.json: text_config vocab_size, "
                             "max_position_embeddings or eos_token_id is invalid");
        return NULL;
    }
    const int64_t C = *width = t.C;
    ulc_gb_scope(b, "/text_model/embeddings");
    ulc_value *tok = ulc_gb_op2(b, "Gather", hf_weight(b, "text_model.embeddings.token_embedding.weight", 2,
                                                   (const int64_t[]){V, C}), ids);
    ulc_gb_attr_int(b, tok, "axis", 0);
    ulc_value *T = ulc_gb_dim(b, ids, 1);
    ulc_value *pos = ulc_gb_op3(b, "Range", ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){0}), T,
                            ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    ulc_value *pe = ulc_gb_op2(b, "Gather", hf_weight(b, "text_model.embeddings.position_embedding.weight",
                                                  2, (const int64_t[]){P, C}), pos);
    ulc_gb_attr_int(b, pe, "axis", 0);
    ulc_value *h = ulc_gb_op2(b, "Add", tok, pe);

    /* causal (T, T): 0 on and below the diagonal, finfo.min above; padding (B, 1, 1, T) */
    ulc_gb_scope(b, "/text_model/mask");
    ulc_value *T1 = ulc_gb_op2(b, "Unsqueeze", T, ulc_gb_vec_i64(b, 1, (const int64_t[]){0}));
    ulc_value *TT = ulc_gb_op2(b, "Concat", T1, T1);
    ulc_gb_attr_int(b, TT, "axis", 0);
    ulc_value *k1 = ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){1});
    ulc_value *tri_in[2] = {ulc_gb_op2(b, "Expand", ulc_gb_scalar_f32(b, FINFO_MIN), TT), k1};
    ulc_value *causal = ulc_gb_op(b, "Trilu", 2, tri_in); /* strictly above the diagonal */
    ulc_gb_attr_int(b, causal, "upper", 1);
    ulc_value *mf = ulc_gb_op1(b, "Cast", mask);
    ulc_gb_attr_int(b, mf, "to", ULC_DT_F32);
    ulc_value *m4 = ulc_gb_op2(b, "Unsqueeze", mf, ulc_gb_vec_i64(b, 2, (const int64_t[]){1, 2}));
    ulc_value *pad = ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "Sub", ulc_gb_scalar_f32(b, 1.0f), m4),
                            ulc_gb_scalar_f32(b, FINFO_MIN));

    h = encoder(b, &t, h, causal, pad);
    ulc_gb_scope(b, "/text_model/final_layer_norm");
    h = hf_layernorm(b, h, hf_weight(b, "text_model.final_layer_norm.weight", 1, &C),
                     hf_weight(b, "text_model.final_layer_norm.bias", 1, &C), t.eps);

    ulc_gb_scope(b, "/text_model/pool");
    ulc_value *key = eos == 2 ? ids : ulc_gb_op2(b, "Equal", ids, ulc_gb_const_i64(b, 0, NULL, &eos));
    ulc_value *k32 = ulc_gb_op1(b, "Cast", key);
    ulc_gb_attr_int(b, k32, "to", ULC_DT_I32);
    ulc_value *at = ulc_gb_op1(b, "ArgMax", k32);
    ulc_gb_attr_int(b, at, "axis", -1);
    ulc_gb_attr_int(b, at, "keepdims", 0);
    ulc_value *rows = ulc_gb_op3(b, "Range", ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){0}),
                             ulc_gb_dim(b, ids, 0), ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    ulc_value *flat_idx = ulc_gb_op2(b, "Add", ulc_gb_op2(b, "Mul", rows, T), at);
    ulc_value *flat = ulc_gb_op2(b, "Reshape", h, ulc_gb_vec_i64(b, 2, (const int64_t[]){-1, C}));
    ulc_value *pooled = ulc_gb_op2(b, "Gather", flat, flat_idx);
    ulc_gb_attr_int(b, pooled, "axis", 0);
    return pooled;
}

static ulc_value *vision_tower(ulc_gb *b, const cJSON *cfg, ulc_value **px_out, int64_t *width) {
    tower t = {"vision_model", 0, 0, 0, 0, 0, NULL, NULL};
    if (!read_tower(b, cfg, "vision_config", &t, 0)) return NULL;
    const cJSON *vc = t.cfg;
    int bad = 0;
    int64_t ch = (int64_t)hf_num(vc, "num_channels", 3, &bad);
    int64_t img[2], patch[2];
    hf_size2(vc, "image_size", 224, img, &bad);
    hf_size2(vc, "patch_size", 32, patch, &bad);
    if (bad || ch <= 0 || img[0] <= 0 || img[0] != img[1] || patch[0] <= 0 ||
        patch[0] != patch[1] || img[0] % patch[0]) {
        b->status = ulc_fail(b->ctx, ULC_ERR_INVALID, "config.json: vision_config num_channels, "
                             "image_size or patch_size is invalid (square sizes expected)");
        return NULL;
    }
    const int64_t C = *width = t.C, N = (img[0] / patch[0]) * (img[1] / patch[1]);
    ulc_value *px = ulc_gb_input(b, "pixel_values", ULC_DT_F32, 4,
                             (ulc_dim[]){{-1, "image_batch", NULL}, {ch, NULL, NULL},
                                         {img[0], NULL, NULL}, {img[1], NULL, NULL}});
    *px_out = px;
    ulc_gb_scope(b, "/vision_model/embeddings");
    ulc_value *h = hf_patch_tokens(
        b, px, hf_weight(b, "vision_model.embeddings.patch_embedding.weight", 4,
                         (const int64_t[]){C, ch, patch[0], patch[1]}),
        NULL, patch[0], C, hf_weight(b, "vision_model.embeddings.class_embedding", 1, &C));
    h = ulc_gb_op2(b, "Add", h, hf_weight(b, "vision_model.embeddings.position_embedding.weight", 2,
                                      (const int64_t[]){N + 1, C}));
    ulc_gb_scope(b, "/vision_model/pre_layrnorm");
    h = hf_layernorm(b, h, hf_weight(b, "vision_model.pre_layrnorm.weight", 1, &C),
                     hf_weight(b, "vision_model.pre_layrnorm.bias", 1, &C), t.eps);
    h = encoder(b, &t, h, NULL, NULL);
    ulc_gb_scope(b, "/vision_model/post_layernorm");
    ulc_value *first = ulc_gb_op2(b, "Gather", h, ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){0}));
    ulc_gb_attr_int(b, first, "axis", 1);
    return hf_layernorm(b, first, hf_weight(b, "vision_model.post_layernorm.weight", 1, &C),
                        hf_weight(b, "vision_model.post_layernorm.bias", 1, &C), t.eps);
}

/* x / ||x||_2 over the last axis */
static ulc_value *l2_normalize(ulc_gb *b, ulc_value *x) {
    ulc_value *ss = ulc_gb_op2(b, "ReduceSum", ulc_gb_op2(b, "Mul", x, x), ulc_gb_vec_i64(b, 1, (const int64_t[]){-1}));
    ulc_gb_attr_int(b, ss, "keepdims", 1);
    return ulc_gb_op2(b, "Div", x, ulc_gb_op1(b, "Sqrt", ss));
}

ulc_status hf_build_clip(ulc_gb *b, const cJSON *cfg) {
    ulc_dim io[2] = {{-1, "text_batch", NULL}, {-1, "sequence", NULL}};
    ulc_value *ids = ulc_gb_input(b, "input_ids", ULC_DT_I64, 2, io);
    ulc_value *px = NULL;
    int64_t cv = 0, ct = 0;
    ulc_value *vis = vision_tower(b, cfg, &px, &cv);
    ulc_value *mask = ulc_gb_input(b, "attention_mask", ULC_DT_I64, 2, io);
    ulc_value *txt = text_tower(b, cfg, ids, mask, &ct);
    if (b->status != ULC_OK) return b->status;

    ulc_gb_scope(b, "/projection");
    ulc_value *tp = hf_weight(b, "text_projection.weight", 2, (const int64_t[]){-1, ct});
    ulc_value *vp = hf_weight(b, "visual_projection.weight", 2, (const int64_t[]){-1, cv});
    if (b->status != ULC_OK) return b->status;
    int64_t P = tp->init->dims[0];
    if (vp->init->dims[0] != P)
        return ulc_fail(b->ctx, ULC_ERR_INVALID, "text_projection.weight projects to %lld, "
                        "visual_projection.weight to %lld", (long long)P,
                        (long long)vp->init->dims[0]);
    ulc_value *te = l2_normalize(b, hf_linear_t(b, txt, tp, NULL));
    ulc_value *ie = l2_normalize(b, hf_linear_t(b, vis, vp, NULL));
    ulc_gb_scope(b, "/logits");
    ulc_value *scale = ulc_gb_op1(b, "Exp", hf_weight(b, "logit_scale", 0, (const int64_t[]){0}));
    ulc_value *iet = ulc_gb_op1(b, "Transpose", ie);
    ulc_gb_attr_ints(b, iet, "perm", 2, (const int64_t[]){1, 0});
    ulc_value *lpt = ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "MatMul", te, iet), scale);
    ulc_value *lpi = ulc_gb_op1(b, "Transpose", lpt);
    ulc_gb_attr_ints(b, lpi, "perm", 2, (const int64_t[]){1, 0});
    ulc_dim tb = {-1, "text_batch", NULL}, ib = {-1, "image_batch", NULL}, pd = {P, NULL, NULL};
    ulc_gb_output(b, lpi, "logits_per_image", ULC_DT_F32, 2, (ulc_dim[]){ib, tb});
    ulc_gb_output(b, lpt, "logits_per_text", ULC_DT_F32, 2, (ulc_dim[]){tb, ib});
    ulc_gb_output(b, te, "text_embeds", ULC_DT_F32, 2, (ulc_dim[]){tb, pd});
    ulc_gb_output(b, ie, "image_embeds", ULC_DT_F32, 2, (ulc_dim[]){ib, pd});
    return ulc_gb_finish(b);
}
