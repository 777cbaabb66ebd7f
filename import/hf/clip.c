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
static int read_tower(hb *b, const cJSON *cfg, const char *key, tower *t, int text) {
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
    else if (!hb_act_known(t->act))
        s = ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "config.json: %s.hidden_act '%s' is not "
                     "supported", key, t->act);
    if (s != ULC_OK && b->status == ULC_OK) b->status = s;
    return s == ULC_OK;
}

static ulc_value *encoder(hb *b, const tower *t, ulc_value *h, ulc_value *bias1, ulc_value *bias2) {
    const int64_t C = t->C, F = t->F, CC[2] = {C, C};
    for (int64_t i = 0; i < t->L && b->status == ULC_OK; i++) {
        char p[96];
        snprintf(p, sizeof p, "%s.encoder.layers.%lld", t->prefix, (long long)i);
        hb_scope(b, "/%s/self_attn", p);
        ulc_value *a = hb_layernorm(b, h, hb_weightf(b, 1, &C, "%s.layer_norm1.weight", p),
                                    hb_weightf(b, 1, &C, "%s.layer_norm1.bias", p), t->eps);
        ulc_value *proj[3];
        static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
        for (int j = 0; j < 3; j++)
            proj[j] = hb_linear_t(b, a, hb_weightf(b, 2, CC, "%s.self_attn.%s.weight", p, qkv[j]),
                                  hb_weightf(b, 1, &C, "%s.self_attn.%s.bias", p, qkv[j]));
        a = hb_attention(b, proj[0], proj[1], proj[2], t->H, C / t->H, 1, bias1, bias2);
        a = hb_linear_t(b, a, hb_weightf(b, 2, CC, "%s.self_attn.out_proj.weight", p),
                        hb_weightf(b, 1, &C, "%s.self_attn.out_proj.bias", p));
        h = hb_op2(b, "Add", h, a);

        hb_scope(b, "/%s/mlp", p);
        ulc_value *m = hb_layernorm(b, h, hb_weightf(b, 1, &C, "%s.layer_norm2.weight", p),
                                    hb_weightf(b, 1, &C, "%s.layer_norm2.bias", p), t->eps);
        m = hb_linear_t(b, m, hb_weightf(b, 2, (const int64_t[]){F, C}, "%s.mlp.fc1.weight", p),
                        hb_weightf(b, 1, &F, "%s.mlp.fc1.bias", p));
        m = hb_act(b, m, t->act);
        m = hb_linear_t(b, m, hb_weightf(b, 2, (const int64_t[]){C, F}, "%s.mlp.fc2.weight", p),
                        hb_weightf(b, 1, &C, "%s.mlp.fc2.bias", p));
        h = hb_op2(b, "Add", h, m);
    }
    return h;
}

/* The pooled (B, C) text features. */
static ulc_value *text_tower(hb *b, const cJSON *cfg, ulc_value *ids, ulc_value *mask,
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
    hb_scope(b, "/text_model/embeddings");
    ulc_value *tok = hb_op2(b, "Gather", hb_weight(b, "text_model.embeddings.token_embedding.weight", 2,
                                                   (const int64_t[]){V, C}), ids);
    hb_attr_int(b, tok, "axis", 0);
    ulc_value *T = hb_dim(b, ids, 1);
    ulc_value *pos = hb_op3(b, "Range", hb_const_i64(b, 0, NULL, (const int64_t[]){0}), T,
                            hb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    ulc_value *pe = hb_op2(b, "Gather", hb_weight(b, "text_model.embeddings.position_embedding.weight",
                                                  2, (const int64_t[]){P, C}), pos);
    hb_attr_int(b, pe, "axis", 0);
    ulc_value *h = hb_op2(b, "Add", tok, pe);

    /* causal (T, T): 0 on and below the diagonal, finfo.min above; padding (B, 1, 1, T) */
    hb_scope(b, "/text_model/mask");
    ulc_value *T1 = hb_op2(b, "Unsqueeze", T, hb_vec_i64(b, 1, (const int64_t[]){0}));
    ulc_value *TT = hb_op2(b, "Concat", T1, T1);
    hb_attr_int(b, TT, "axis", 0);
    ulc_value *k1 = hb_const_i64(b, 0, NULL, (const int64_t[]){1});
    ulc_value *tri_in[2] = {hb_op2(b, "Expand", hb_scalar_f32(b, FINFO_MIN), TT), k1};
    ulc_value *causal = hb_op(b, "Trilu", 2, tri_in); /* strictly above the diagonal */
    hb_attr_int(b, causal, "upper", 1);
    ulc_value *mf = hb_op1(b, "Cast", mask);
    hb_attr_int(b, mf, "to", ULC_DT_F32);
    ulc_value *m4 = hb_op2(b, "Unsqueeze", mf, hb_vec_i64(b, 2, (const int64_t[]){1, 2}));
    ulc_value *pad = hb_op2(b, "Mul", hb_op2(b, "Sub", hb_scalar_f32(b, 1.0f), m4),
                            hb_scalar_f32(b, FINFO_MIN));

    h = encoder(b, &t, h, causal, pad);
    hb_scope(b, "/text_model/final_layer_norm");
    h = hb_layernorm(b, h, hb_weight(b, "text_model.final_layer_norm.weight", 1, &C),
                     hb_weight(b, "text_model.final_layer_norm.bias", 1, &C), t.eps);

    hb_scope(b, "/text_model/pool");
    ulc_value *key = eos == 2 ? ids : hb_op2(b, "Equal", ids, hb_const_i64(b, 0, NULL, &eos));
    ulc_value *k32 = hb_op1(b, "Cast", key);
    hb_attr_int(b, k32, "to", ULC_DT_I32);
    ulc_value *at = hb_op1(b, "ArgMax", k32);
    hb_attr_int(b, at, "axis", -1);
    hb_attr_int(b, at, "keepdims", 0);
    ulc_value *rows = hb_op3(b, "Range", hb_const_i64(b, 0, NULL, (const int64_t[]){0}),
                             hb_dim(b, ids, 0), hb_const_i64(b, 0, NULL, (const int64_t[]){1}));
    ulc_value *flat_idx = hb_op2(b, "Add", hb_op2(b, "Mul", rows, T), at);
    ulc_value *flat = hb_op2(b, "Reshape", h, hb_vec_i64(b, 2, (const int64_t[]){-1, C}));
    ulc_value *pooled = hb_op2(b, "Gather", flat, flat_idx);
    hb_attr_int(b, pooled, "axis", 0);
    return pooled;
}

static ulc_value *vision_tower(hb *b, const cJSON *cfg, ulc_value **px_out, int64_t *width) {
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
    ulc_value *px = hb_input(b, "pixel_values", ULC_DT_F32, 4,
                             (ulc_dim[]){{-1, "image_batch", NULL}, {ch, NULL, NULL},
                                         {img[0], NULL, NULL}, {img[1], NULL, NULL}});
    *px_out = px;
    hb_scope(b, "/vision_model/embeddings");
    ulc_value *h = hb_patch_tokens(
        b, px, hb_weight(b, "vision_model.embeddings.patch_embedding.weight", 4,
                         (const int64_t[]){C, ch, patch[0], patch[1]}),
        NULL, patch[0], C, hb_weight(b, "vision_model.embeddings.class_embedding", 1, &C));
    h = hb_op2(b, "Add", h, hb_weight(b, "vision_model.embeddings.position_embedding.weight", 2,
                                      (const int64_t[]){N + 1, C}));
    hb_scope(b, "/vision_model/pre_layrnorm");
    h = hb_layernorm(b, h, hb_weight(b, "vision_model.pre_layrnorm.weight", 1, &C),
                     hb_weight(b, "vision_model.pre_layrnorm.bias", 1, &C), t.eps);
    h = encoder(b, &t, h, NULL, NULL);
    hb_scope(b, "/vision_model/post_layernorm");
    ulc_value *first = hb_op2(b, "Gather", h, hb_const_i64(b, 0, NULL, (const int64_t[]){0}));
    hb_attr_int(b, first, "axis", 1);
    return hb_layernorm(b, first, hb_weight(b, "vision_model.post_layernorm.weight", 1, &C),
                        hb_weight(b, "vision_model.post_layernorm.bias", 1, &C), t.eps);
}

/* x / ||x||_2 over the last axis */
static ulc_value *l2_normalize(hb *b, ulc_value *x) {
    ulc_value *ss = hb_op2(b, "ReduceSum", hb_op2(b, "Mul", x, x), hb_vec_i64(b, 1, (const int64_t[]){-1}));
    hb_attr_int(b, ss, "keepdims", 1);
    return hb_op2(b, "Div", x, hb_op1(b, "Sqrt", ss));
}

ulc_status hf_build_clip(hb *b, const cJSON *cfg) {
    ulc_dim io[2] = {{-1, "text_batch", NULL}, {-1, "sequence", NULL}};
    ulc_value *ids = hb_input(b, "input_ids", ULC_DT_I64, 2, io);
    ulc_value *px = NULL;
    int64_t cv = 0, ct = 0;
    ulc_value *vis = vision_tower(b, cfg, &px, &cv);
    ulc_value *mask = hb_input(b, "attention_mask", ULC_DT_I64, 2, io);
    ulc_value *txt = text_tower(b, cfg, ids, mask, &ct);
    if (b->status != ULC_OK) return b->status;

    hb_scope(b, "/projection");
    ulc_value *tp = hb_weight(b, "text_projection.weight", 2, (const int64_t[]){-1, ct});
    ulc_value *vp = hb_weight(b, "visual_projection.weight", 2, (const int64_t[]){-1, cv});
    if (b->status != ULC_OK) return b->status;
    int64_t P = tp->init->dims[0];
    if (vp->init->dims[0] != P)
        return ulc_fail(b->ctx, ULC_ERR_INVALID, "text_projection.weight projects to %lld, "
                        "visual_projection.weight to %lld", (long long)P,
                        (long long)vp->init->dims[0]);
    ulc_value *te = l2_normalize(b, hb_linear_t(b, txt, tp, NULL));
    ulc_value *ie = l2_normalize(b, hb_linear_t(b, vis, vp, NULL));
    hb_scope(b, "/logits");
    ulc_value *scale = hb_op1(b, "Exp", hb_weight(b, "logit_scale", 0, (const int64_t[]){0}));
    ulc_value *iet = hb_op1(b, "Transpose", ie);
    hb_attr_ints(b, iet, "perm", 2, (const int64_t[]){1, 0});
    ulc_value *lpt = hb_op2(b, "Mul", hb_op2(b, "MatMul", te, iet), scale);
    ulc_value *lpi = hb_op1(b, "Transpose", lpt);
    hb_attr_ints(b, lpi, "perm", 2, (const int64_t[]){1, 0});
    ulc_dim tb = {-1, "text_batch", NULL}, ib = {-1, "image_batch", NULL}, pd = {P, NULL, NULL};
    hb_output(b, lpi, "logits_per_image", ULC_DT_F32, 2, (ulc_dim[]){ib, tb});
    hb_output(b, lpt, "logits_per_text", ULC_DT_F32, 2, (ulc_dim[]){tb, ib});
    hb_output(b, te, "text_embeds", ULC_DT_F32, 2, (ulc_dim[]){tb, pd});
    hb_output(b, ie, "image_embeds", ULC_DT_F32, 2, (ulc_dim[]){ib, pd});
    return hb_finish(b);
}
