/*
 * vit.c — transformers' ViTForImageClassification / ViTModel forward (eval) as a graph.
 *
 *   x = conv_p(pixel_values)  (patch embedding, kernel = stride = patch)  -> (B, N, C)
 *   h = [cls; x] + position_embeddings                                     (B, N+1, C)
 *   per layer:  h += Wo attn(LN_before(h)) ;  h += W2 act(W1 LN_after(h))  (pre-LN)
 *   h = LN(h);  logits = classifier(h[:, 0])       ViTModel: pooler = tanh(dense(h[:, 0]))
 *
 * Only the configured image size is accepted (no position-embedding interpolation).
 */
#include <stdio.h>
#include <string.h>

#include "import/hf/hf_internal.h"

ulc_status hf_build_vit(ulc_gb *b, const cJSON *cfg) {
    int bad = 0;
    int64_t C = (int64_t)hf_num(cfg, "hidden_size", 768, &bad);
    int64_t L = (int64_t)hf_num(cfg, "num_hidden_layers", 12, &bad);
    int64_t H = (int64_t)hf_num(cfg, "num_attention_heads", 12, &bad);
    int64_t F = (int64_t)hf_num(cfg, "intermediate_size", 3072, &bad);
    int64_t ch = (int64_t)hf_num(cfg, "num_channels", 3, &bad);
    float eps = (float)hf_num(cfg, "layer_norm_eps", 1e-12, &bad);
    int qkv_bias = hf_bool(cfg, "qkv_bias", 1);
    const char *act = hf_str(cfg, "hidden_act", "gelu");
    int64_t img[2], patch[2];
    hf_size2(cfg, "image_size", 224, img, &bad);
    hf_size2(cfg, "patch_size", 16, patch, &bad);
    if (bad || C <= 0 || L <= 0 || H <= 0 || C % H || F <= 0 || ch <= 0 || img[0] <= 0 ||
        img[1] <= 0 || patch[0] <= 0 || patch[1] <= 0 || img[0] % patch[0] || img[1] % patch[1])
        return ulc_fail(b->ctx, ULC_ERR_INVALID, "config.json: vit sizes are missing or "
                        "inconsistent (hidden_size, num_hidden_layers, num_attention_heads, "
                        "intermediate_size, num_channels, image_size, patch_size)");
    if (patch[0] != patch[1])
        return ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "config.json: non-square patch_size");
    if (!hf_act_known(act))
        return ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "config.json: hidden_act '%s' is not "
                        "supported", act);
    int64_t D = C / H, N = (img[0] / patch[0]) * (img[1] / patch[1]);
    /* ViTForImageClassification prefixes the body with "vit."; ViTModel does not. */
    const char *pre = ulc_graph_get_value(b->g, "vit.embeddings.cls_token") ? "vit." : "";
    int cls = *pre != '\0';

    ulc_value *px = ulc_gb_input(b, "pixel_values", ULC_DT_F32, 4,
                             (ulc_dim[]){{-1, "batch", NULL}, {ch, NULL, NULL},
                                         {img[0], NULL, NULL}, {img[1], NULL, NULL}});
    ulc_gb_scope(b, "/%sembeddings", pre);
    ulc_value *h = hf_patch_tokens(
        b, px,
        hf_weightf(b, 4, (const int64_t[]){C, ch, patch[0], patch[1]},
                   "%sembeddings.patch_embeddings.projection.weight", pre),
        hf_weightf(b, 1, &C, "%sembeddings.patch_embeddings.projection.bias", pre), patch[0], C,
        hf_weightf(b, 3, (const int64_t[]){1, 1, C}, "%sembeddings.cls_token", pre));
    h = ulc_gb_op2(b, "Add", h, hf_weightf(b, 3, (const int64_t[]){1, N + 1, C},
                                       "%sembeddings.position_embeddings", pre));

    for (int64_t i = 0; i < L && b->status == ULC_OK; i++) {
        char p[96];
        snprintf(p, sizeof p, "%sencoder.layer.%lld", pre, (long long)i);
        ulc_gb_scope(b, "/%s/attention", p);
        const int64_t CC[2] = {C, C};
        ulc_value *a = hf_layernorm(b, h, hf_weightf(b, 1, &C, "%s.layernorm_before.weight", p),
                                    hf_weightf(b, 1, &C, "%s.layernorm_before.bias", p), eps);
        ulc_value *proj[3];
        static const char *const qkv[3] = {"query", "key", "value"};
        for (int j = 0; j < 3; j++)
            proj[j] = hf_linear_t(
                b, a, hf_weightf(b, 2, CC, "%s.attention.attention.%s.weight", p, qkv[j]),
                qkv_bias ? hf_weightf(b, 1, &C, "%s.attention.attention.%s.bias", p, qkv[j]) : NULL);
        a = hf_attention(b, proj[0], proj[1], proj[2], H, D, 0, NULL, NULL);
        a = hf_linear_t(b, a, hf_weightf(b, 2, CC, "%s.attention.output.dense.weight", p),
                        hf_weightf(b, 1, &C, "%s.attention.output.dense.bias", p));
        h = ulc_gb_op2(b, "Add", a, h);

        ulc_gb_scope(b, "/%s/mlp", p);
        ulc_value *m = hf_layernorm(b, h, hf_weightf(b, 1, &C, "%s.layernorm_after.weight", p),
                                    hf_weightf(b, 1, &C, "%s.layernorm_after.bias", p), eps);
        m = hf_linear_t(b, m, hf_weightf(b, 2, (const int64_t[]){F, C}, "%s.intermediate.dense.weight", p),
                        hf_weightf(b, 1, &F, "%s.intermediate.dense.bias", p));
        m = hf_act(b, m, act);
        m = hf_linear_t(b, m, hf_weightf(b, 2, (const int64_t[]){C, F}, "%s.output.dense.weight", p),
                        hf_weightf(b, 1, &C, "%s.output.dense.bias", p));
        h = ulc_gb_op2(b, "Add", m, h);
    }
    ulc_gb_scope(b, "/%slayernorm", pre);
    h = hf_layernorm(b, h, hf_weightf(b, 1, &C, "%slayernorm.weight", pre),
                     hf_weightf(b, 1, &C, "%slayernorm.bias", pre), eps);
    ulc_value *first = NULL;
    if (cls || ulc_graph_get_value(b->g, "pooler.dense.weight")) {
        first = ulc_gb_op2(b, "Gather", h, ulc_gb_const_i64(b, 0, NULL, (const int64_t[]){0}));
        ulc_gb_attr_int(b, first, "axis", 1);
    }
    if (cls) {
        ulc_gb_scope(b, "/classifier");
        ulc_value *w = hf_weight(b, "classifier.weight", 2, (const int64_t[]){-1, C});
        int64_t K = w ? w->init->dims[0] : 0;
        ulc_value *logits = hf_linear_t(b, first, w, hf_weight(b, "classifier.bias", 1, &K));
        ulc_gb_output(b, logits, "logits", ULC_DT_F32, 2,
                  (ulc_dim[]){{-1, "batch", NULL}, {K, NULL, NULL}});
        return ulc_gb_finish(b);
    }
    ulc_gb_output(b, h, "last_hidden_state", ULC_DT_F32, 3,
              (ulc_dim[]){{-1, "batch", NULL}, {N + 1, NULL, NULL}, {C, NULL, NULL}});
    if (first) {
        ulc_gb_scope(b, "/pooler");
        ulc_value *pool = ulc_gb_op1(b, "Tanh", hf_linear_t(b, first, hf_weight(b, "pooler.dense.weight", 2, (const int64_t[]){C, C}),
                                                         hf_weight(b, "pooler.dense.bias", 1, &C)));
        ulc_gb_output(b, pool, "pooler_output", ULC_DT_F32, 2,
                  (ulc_dim[]){{-1, "batch", NULL}, {C, NULL, NULL}});
    }
    return ulc_gb_finish(b);
}
