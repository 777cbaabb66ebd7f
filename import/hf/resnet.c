/*
 * resnet.c — ResNets as graphs, from two naming schemes:
 *
 *   transformers' ResNetForImageClassification / ResNetModel (config.json):
 *     embedder: conv7x7/2 + BN + act, maxpool 3x3/2;  stages of basic (3x3, 3x3) or bottleneck
 *     (1x1, 3x3, 1x1; stride on the 3x3 unless downsample_in_bottleneck) layers with a 1x1
 *     conv + BN shortcut where the shape changes;  global average pool;  classifier.1 (Linear)
 *   torchvision's resnet18..152 / resnext / wide_resnet state_dict (conv1, bn1, layerN.i.*, fc),
 *     recognised by its tensor names alone: block type from conv3, depths by counting,
 *     groups from conv2's shape.
 *
 * Convolutions have no bias; every BatchNormalization is the inference form (eps 1e-5).
 */
#include <stdio.h>
#include <string.h>

#include "import/hf/hf_internal.h"

#define BN_EPS 1e-5f
#define MAX_STAGES 16

static int has(ulc_gb *b, const char *name) { return ulc_graph_get_value(b->g, name) != NULL; }

static int64_t dim0(ulc_gb *b, const char *name) {
    ulc_value *v = ulc_graph_get_value(b->g, name);
    return v && v->init && v->init->rank >= 1 ? v->init->dims[0] : -1;
}

/* conv (no bias) + BN (+ act): PREFIX.convolution / PREFIX.normalization (transformers) */
static ulc_value *hf_conv_bn(ulc_gb *b, ulc_value *x, const char *p, int64_t cin, int64_t cout,
                             int64_t k, int64_t s, const char *act) {
    char bn[256]; /* the prefixes below are at most 239 bytes */
    snprintf(bn, sizeof bn, "%s.normalization", p);
    ulc_value *y = hf_conv2d(b, x, hf_weightf(b, 4, (const int64_t[]){cout, cin, k, k}, "%s.convolution.weight", p),
                             NULL, k, s, k / 2);
    y = hf_batchnorm(b, y, bn, cout, BN_EPS);
    return act ? hf_act(b, y, act) : y;
}

ulc_status hf_build_resnet(ulc_gb *b, const cJSON *cfg) {
    int bad = 0;
    int64_t ch = (int64_t)hf_num(cfg, "num_channels", 3, &bad);
    int64_t E = (int64_t)hf_num(cfg, "embedding_size", 64, &bad);
    int64_t hs[MAX_STAGES], dp[MAX_STAGES];
    int ns = hf_ints(cfg, "hidden_sizes", (const int64_t[]){256, 512, 1024, 2048}, 4, hs, MAX_STAGES, &bad);
    int nd = hf_ints(cfg, "depths", (const int64_t[]){3, 4, 6, 3}, 4, dp, MAX_STAGES, &bad);
    const char *type = hf_str(cfg, "layer_type", "bottleneck");
    const char *act = hf_str(cfg, "hidden_act", "relu");
    int ds_first = hf_bool(cfg, "downsample_in_first_stage", 0);
    int ds_bneck = hf_bool(cfg, "downsample_in_bottleneck", 0);
    int bottleneck = strcmp(type, "bottleneck") == 0;
    int good = !bad && ch > 0 && E > 0 && ns > 0 && ns == nd;
    for (int i = 0; good && i < ns; i++) good = hs[i] > 0 && dp[i] > 0 && (!bottleneck || hs[i] % 4 == 0);
    if (!good)
        return ulc_fail(b->ctx, ULC_ERR_INVALID, "config.json: resnet sizes are missing or "
                        "inconsistent (num_channels, embedding_size, hidden_sizes, depths)");
    if (!bottleneck && strcmp(type, "basic") != 0)
        return ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "config.json: layer_type '%s' is not "
                        "supported (basic, bottleneck)", type);
    if (!hf_act_known(act))
        return ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "config.json: hidden_act '%s' is not "
                        "supported", act);
    /* ResNetForImageClassification prefixes the body with "resnet."; ResNetModel does not. */
    const char *pre = has(b, "resnet.embedder.embedder.convolution.weight") ? "resnet." : "";
    int cls = *pre != '\0';

    ulc_value *x = ulc_gb_input(b, "pixel_values", ULC_DT_F32, 4,
                            (ulc_dim[]){{-1, "batch", NULL}, {ch, NULL, NULL},
                                        {-1, "height", NULL}, {-1, "width", NULL}});
    char p[200];
    ulc_gb_scope(b, "/%sembedder", pre);
    snprintf(p, sizeof p, "%sembedder.embedder", pre);
    x = hf_conv_bn(b, x, p, ch, E, 7, 2, act);
    x = ulc_gb_op1(b, "MaxPool", x);
    ulc_gb_attr_ints(b, x, "kernel_shape", 2, (const int64_t[]){3, 3});
    ulc_gb_attr_ints(b, x, "strides", 2, (const int64_t[]){2, 2});
    ulc_gb_attr_ints(b, x, "pads", 4, (const int64_t[]){1, 1, 1, 1});

    int64_t cin = E;
    for (int s = 0; s < ns && b->status == ULC_OK; s++) {
        int64_t cout = hs[s];
        for (int64_t l = 0; l < dp[s] && b->status == ULC_OK; l++) {
            int64_t stride = l > 0 ? 1 : s == 0 ? (ds_first ? 2 : 1) : 2;
            int64_t in = l == 0 ? cin : cout;
            snprintf(p, sizeof p, "%sencoder.stages.%d.layers.%lld", pre, s, (long long)l);
            ulc_gb_scope(b, "/%s", p);
            char q[240];
            ulc_value *r = x;
            if (in != cout || stride != 1) {
                snprintf(q, sizeof q, "%s.shortcut", p);
                r = hf_conv_bn(b, x, q, in, cout, 1, stride, NULL);
            }
            ulc_value *y;
            if (bottleneck) {
                int64_t red = cout / 4;
                snprintf(q, sizeof q, "%s.layer.0", p);
                y = hf_conv_bn(b, x, q, in, red, 1, ds_bneck ? stride : 1, "relu");
                snprintf(q, sizeof q, "%s.layer.1", p);
                y = hf_conv_bn(b, y, q, red, red, 3, ds_bneck ? 1 : stride, "relu");
                snprintf(q, sizeof q, "%s.layer.2", p);
                y = hf_conv_bn(b, y, q, red, cout, 1, 1, NULL);
            } else {
                snprintf(q, sizeof q, "%s.layer.0", p);
                y = hf_conv_bn(b, x, q, in, cout, 3, stride, "relu");
                snprintf(q, sizeof q, "%s.layer.1", p);
                y = hf_conv_bn(b, y, q, cout, cout, 3, 1, NULL);
            }
            x = hf_act(b, ulc_gb_op2(b, "Add", y, r), act);
        }
        cin = cout;
    }
    ulc_gb_scope(b, "/%spooler", pre);
    ulc_value *pooled = ulc_gb_op1(b, "GlobalAveragePool", x);
    if (!cls) {
        ulc_gb_output(b, x, "last_hidden_state", ULC_DT_F32, 4,
                  (ulc_dim[]){{-1, "batch", NULL}, {cin, NULL, NULL}, {-1, "out_height", NULL},
                              {-1, "out_width", NULL}});
        ulc_gb_output(b, pooled, "pooler_output", ULC_DT_F32, 4,
                  (ulc_dim[]){{-1, "batch", NULL}, {cin, NULL, NULL}, {1, NULL, NULL}, {1, NULL, NULL}});
        return ulc_gb_finish(b);
    }
    ulc_gb_scope(b, "/classifier");
    ulc_value *flat = ulc_gb_op1(b, "Flatten", pooled);
    ulc_gb_attr_int(b, flat, "axis", 1);
    int64_t K = dim0(b, "classifier.1.weight");
    ulc_value *logits = hf_linear_t(b, flat, hf_weight(b, "classifier.1.weight", 2, (const int64_t[]){K, cin}),
                                    hf_weight(b, "classifier.1.bias", 1, &K));
    ulc_gb_output(b, logits, "logits", ULC_DT_F32, 2, (ulc_dim[]){{-1, "batch", NULL}, {K, NULL, NULL}});
    return ulc_gb_finish(b);
}

/* ---- torchvision naming ---- */

static const char *const k_tv_roots[] = {"conv1.", "bn1.", "layer1.", "layer2.", "layer3.",
                                         "layer4.", "fc."};

int hf_is_torchvision_resnet(const ulc_graph *g) {
    static const char *const need[] = {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
                                       "fc.weight", "fc.bias"};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        if (!ulc_graph_get_value(g, need[i])) return 0;
    if (g->n_nodes || g->inputs.len) return 0;
    for (size_t i = 0; i < g->inits.len; i++) {
        const char *n = ((const ulc_value *)g->inits.items[i])->name;
        int known = 0;
        for (size_t r = 0; !known && r < sizeof k_tv_roots / sizeof *k_tv_roots; r++)
            known = strncmp(n, k_tv_roots[r], strlen(k_tv_roots[r])) == 0;
        if (!known) return 0;
    }
    return 1;
}

/* conv (no bias) + BN + optional ReLU: NAME.weight, BN.{weight,bias,running_*} */
static ulc_value *tv_conv_bn(ulc_gb *b, ulc_value *x, const char *conv, const char *bn, int64_t k,
                             int64_t s, int64_t groups, int relu) {
    ulc_value *w = hf_weightf(b, 4, (const int64_t[]){-1, -1, k, k}, "%s.weight", conv);
    if (!w) return NULL;
    int64_t cout = w->init->dims[0];
    ulc_value *y = hf_conv2d(b, x, w, NULL, k, s, k / 2);
    if (groups != 1) ulc_gb_attr_int(b, y, "group", groups);
    y = hf_batchnorm(b, y, bn, cout, BN_EPS);
    return relu ? ulc_gb_op1(b, "Relu", y) : y;
}

ulc_status hf_build_torchvision_resnet(ulc_gb *b) {
    ulc_value *c1 = ulc_graph_get_value(b->g, "conv1.weight");
    int64_t ch = c1 && c1->init && c1->init->rank == 4 ? c1->init->dims[1] : -1;
    ulc_value *x = ulc_gb_input(b, "input", ULC_DT_F32, 4,
                            (ulc_dim[]){{-1, "batch", NULL}, {ch, NULL, NULL},
                                        {-1, "height", NULL}, {-1, "width", NULL}});
    ulc_gb_scope(b, "/stem");
    x = tv_conv_bn(b, x, "conv1", "bn1", 7, 2, 1, 1);
    x = ulc_gb_op1(b, "MaxPool", x);
    ulc_gb_attr_ints(b, x, "kernel_shape", 2, (const int64_t[]){3, 3});
    ulc_gb_attr_ints(b, x, "strides", 2, (const int64_t[]){2, 2});
    ulc_gb_attr_ints(b, x, "pads", 4, (const int64_t[]){1, 1, 1, 1});
    int bottleneck = has(b, "layer1.0.conv3.weight");
    for (int s = 1; s <= 4 && b->status == ULC_OK; s++) {
        char p[64], n[96];
        snprintf(p, sizeof p, "layer%d.0.conv1.weight", s);
        if (!has(b, p)) {
            if (s == 1) break;
            return ulc_fail(b->ctx, ULC_ERR_INVALID, "torchvision ResNet checkpoint: no %s", p);
        }
        for (int i = 0; b->status == ULC_OK; i++) {
            snprintf(p, sizeof p, "layer%d.%d", s, i);
            snprintf(n, sizeof n, "%s.conv1.weight", p);
            if (!has(b, n)) break;
            int64_t stride = i == 0 && s > 1 ? 2 : 1;
            ulc_gb_scope(b, "/%s", p);
            ulc_value *r = x;
            snprintf(n, sizeof n, "%s.downsample.0.weight", p);
            if (has(b, n)) {
                char c[96], bn[96];
                snprintf(c, sizeof c, "%s.downsample.0", p);
                snprintf(bn, sizeof bn, "%s.downsample.1", p);
                r = tv_conv_bn(b, x, c, bn, 1, stride, 1, 0);
            } else if (stride != 1) {
                return ulc_fail(b->ctx, ULC_ERR_INVALID, "torchvision ResNet checkpoint: %s "
                                "changes the resolution but has no downsample", p);
            }
            char c1n[96], b1n[96], c2n[96], b2n[96], c3n[96], b3n[96];
            snprintf(c1n, sizeof c1n, "%s.conv1", p);
            snprintf(b1n, sizeof b1n, "%s.bn1", p);
            snprintf(c2n, sizeof c2n, "%s.conv2", p);
            snprintf(b2n, sizeof b2n, "%s.bn2", p);
            snprintf(c3n, sizeof c3n, "%s.conv3", p);
            snprintf(b3n, sizeof b3n, "%s.bn3", p);
            ulc_value *y;
            if (bottleneck) {
                /* groups = width / (conv2's input channels per group) */
                ulc_value *w2 = hf_weightf(b, 4, (const int64_t[]){-1, -1, 3, 3}, "%s.weight", c2n);
                int64_t groups = w2 && w2->init->dims[1] > 0 ? w2->init->dims[0] / w2->init->dims[1] : 1;
                y = tv_conv_bn(b, x, c1n, b1n, 1, 1, 1, 1);
                y = tv_conv_bn(b, y, c2n, b2n, 3, stride, groups, 1); /* v1.5: stride on the 3x3 */
                y = tv_conv_bn(b, y, c3n, b3n, 1, 1, 1, 0);
            } else {
                y = tv_conv_bn(b, x, c1n, b1n, 3, stride, 1, 1);
                y = tv_conv_bn(b, y, c2n, b2n, 3, 1, 1, 0);
            }
            x = ulc_gb_op1(b, "Relu", ulc_gb_op2(b, "Add", y, r));
        }
    }
    ulc_gb_scope(b, "/head");
    ulc_value *flat = ulc_gb_op1(b, "Flatten", ulc_gb_op1(b, "GlobalAveragePool", x));
    ulc_gb_attr_int(b, flat, "axis", 1);
    int64_t K = dim0(b, "fc.weight");
    ulc_value *fc = ulc_gb_op3(b, "Gemm", flat, hf_weight(b, "fc.weight", 2, (const int64_t[]){K, -1}),
                           hf_weight(b, "fc.bias", 1, &K));
    ulc_gb_attr_int(b, fc, "transB", 1);
    ulc_gb_output(b, fc, "logits", ULC_DT_F32, 2, (ulc_dim[]){{-1, "batch", NULL}, {K, NULL, NULL}});
    return ulc_gb_finish(b);
}
