/* builder.c — see builder.h. */
#include "import/hf/builder.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SQRT2 1.41421356237309504880
#define PI 3.14159265358979323846

void hf_begin(ulc_gb *b, ulc_model *m, int64_t opset, const char *producer, ulc_ctx *ctx) {
    ulc_gb_init(b, m->graph, opset, ULC_GB_NAMES_SCOPED, ctx);
    ulc_arena *a = b->g->arena;
    m->has_ir_version = 1;
    m->ir_version = 8;
    m->producer_name = ulc_arena_strdup(a, producer);
    m->producer_version = ulc_arena_strdup(a, ULC_VERSION);
    m->n_opsets = 1;
    m->opsets = ulc_arena_calloc(a, 1, sizeof *m->opsets);
    if (!m->opsets || !m->producer_name) {
        ulc_gb_fail(b, ULC_ERR_NOMEM, "out of memory");
        return;
    }
    m->opsets[0].domain = "";
    m->opsets[0].has_domain = 1;
    m->opsets[0].version = opset;
    m->opsets[0].has_version = 1;
    b->g->name = "main_graph";
}

ulc_value *hf_weight(ulc_gb *b, const char *name, int rank, const int64_t *dims) {
    if (b->status != ULC_OK) return NULL;
    ulc_value *v = ulc_graph_get_value(b->g, name);
    if (!v || !(v->flags & ULC_VALUE_INITIALIZER)) {
        ulc_gb_fail(b, ULC_ERR_INVALID, "the checkpoint has no tensor '%s'", name);
        return NULL;
    }
    const ulc_tensor *t = v->init;
    int good = t->rank == rank;
    for (int i = 0; good && dims && i < rank; i++) good = dims[i] < 0 || t->dims[i] == dims[i];
    if (!good) {
        char want[160], have[160];
        size_t k = 0, j = 0;
        for (int i = 0; i < rank && k < sizeof want; i++)
            k += (size_t)snprintf(want + k, sizeof want - k, "%s%lld", i ? "," : "",
                                  dims ? (long long)dims[i] : -1LL);
        for (int i = 0; i < t->rank && j < sizeof have; i++)
            j += (size_t)snprintf(have + j, sizeof have - j, "%s%lld", i ? "," : "", (long long)t->dims[i]);
        want[k < sizeof want ? k : sizeof want - 1] = '\0';
        have[j < sizeof have ? j : sizeof have - 1] = '\0';
        ulc_gb_fail(b, ULC_ERR_INVALID, "tensor '%s' is [%s], config.json implies [%s]", name,
                    have, want);
        return NULL;
    }
    if (!ulc_dtype_is_float(t->dtype) && dims) {
        ulc_gb_fail(b, ULC_ERR_UNSUPPORTED, "tensor '%s' is %s, expected floats", name,
                    ulc_dtype_name(t->dtype));
        return NULL;
    }
    return v;
}

ulc_value *hf_weightf(ulc_gb *b, int rank, const int64_t *dims, const char *fmt, ...) {
    char name[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return hf_weight(b, name, rank, dims);
}

ulc_value *hf_linear(ulc_gb *b, ulc_value *x, ulc_value *w, ulc_value *bias) {
    ulc_value *y = ulc_gb_op2(b, "MatMul", x, w);
    return bias ? ulc_gb_op2(b, "Add", y, bias) : y;
}

ulc_value *hf_linear_t(ulc_gb *b, ulc_value *x, ulc_value *w, ulc_value *bias) {
    ulc_value *wt = ulc_gb_op1(b, "Transpose", w);
    ulc_gb_attr_ints(b, wt, "perm", 2, (const int64_t[]){1, 0});
    return hf_linear(b, x, wt, bias);
}

ulc_value *hf_layernorm(ulc_gb *b, ulc_value *x, ulc_value *gamma, ulc_value *beta, float eps) {
    ulc_value *y = ulc_gb_op3(b, "LayerNormalization", x, gamma, beta);
    ulc_gb_attr_int(b, y, "axis", -1);
    ulc_gb_attr_float(b, y, "epsilon", eps);
    return y;
}

/* 0.5 x (1 + erf(x / sqrt 2)) */
ulc_value *hf_gelu_erf(ulc_gb *b, ulc_value *x) {
    ulc_value *e = ulc_gb_op1(b, "Erf", ulc_gb_op2(b, "Div", x, ulc_gb_scalar_f32(b, (float)SQRT2)));
    ulc_value *t = ulc_gb_op2(b, "Add", e, ulc_gb_scalar_f32(b, 1.0f));
    return ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "Mul", x, ulc_gb_scalar_f32(b, 0.5f)), t);
}

/* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) — transformers' NewGELUActivation */
ulc_value *hf_gelu_tanh(ulc_gb *b, ulc_value *x) {
    ulc_value *x3 = ulc_gb_op2(b, "Pow", x, ulc_gb_scalar_f32(b, 3.0f));
    ulc_value *inner = ulc_gb_op2(b, "Add", x, ulc_gb_op2(b, "Mul", x3, ulc_gb_scalar_f32(b, 0.044715f)));
    ulc_value *th = ulc_gb_op1(b, "Tanh", ulc_gb_op2(b, "Mul", inner, ulc_gb_scalar_f32(b, (float)sqrt(2.0 / PI))));
    ulc_value *t = ulc_gb_op2(b, "Add", th, ulc_gb_scalar_f32(b, 1.0f));
    return ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "Mul", x, ulc_gb_scalar_f32(b, 0.5f)), t);
}

/* x * sigmoid(1.702 x) — CLIP's quick_gelu */
ulc_value *hf_quick_gelu(ulc_gb *b, ulc_value *x) {
    ulc_value *s = ulc_gb_op1(b, "Sigmoid", ulc_gb_op2(b, "Mul", x, ulc_gb_scalar_f32(b, 1.702f)));
    return ulc_gb_op2(b, "Mul", x, s);
}

static const char *const k_acts[] = {"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast",
                                     "quick_gelu", "relu", "silu", "swish", "tanh", "sigmoid"};

int hf_act_known(const char *name) {
    for (size_t i = 0; name && i < sizeof k_acts / sizeof *k_acts; i++)
        if (strcmp(name, k_acts[i]) == 0) return 1;
    return 0;
}

ulc_value *hf_act(ulc_gb *b, ulc_value *x, const char *name) {
    if (b->status != ULC_OK) return NULL;
    if (!hf_act_known(name)) {
        ulc_gb_fail(b, ULC_ERR_UNSUPPORTED, "activation '%s' is not supported",
                    name ? name : "(none)");
        return NULL;
    }
    if (strcmp(name, "gelu") == 0) return hf_gelu_erf(b, x);
    if (strncmp(name, "gelu_", 5) == 0) return hf_gelu_tanh(b, x); /* same function */
    if (strcmp(name, "quick_gelu") == 0) return hf_quick_gelu(b, x);
    if (strcmp(name, "relu") == 0) return ulc_gb_op1(b, "Relu", x);
    if (strcmp(name, "tanh") == 0) return ulc_gb_op1(b, "Tanh", x);
    if (strcmp(name, "sigmoid") == 0) return ulc_gb_op1(b, "Sigmoid", x);
    return ulc_gb_op2(b, "Mul", x, ulc_gb_op1(b, "Sigmoid", x)); /* silu, swish */
}

ulc_value *hf_conv2d(ulc_gb *b, ulc_value *x, ulc_value *w, ulc_value *bias, int64_t k, int64_t s,
                     int64_t p) {
    ulc_value *in[3] = {x, w, bias};
    ulc_value *y = ulc_gb_op(b, "Conv", bias ? 3 : 2, in);
    ulc_gb_attr_ints(b, y, "kernel_shape", 2, (const int64_t[]){k, k});
    ulc_gb_attr_ints(b, y, "strides", 2, (const int64_t[]){s, s});
    ulc_gb_attr_ints(b, y, "pads", 4, (const int64_t[]){p, p, p, p});
    return y;
}

ulc_value *hf_batchnorm(ulc_gb *b, ulc_value *x, const char *prefix, int64_t c, float eps) {
    ulc_value *in[5] = {x, hf_weightf(b, 1, &c, "%s.weight", prefix),
                        hf_weightf(b, 1, &c, "%s.bias", prefix),
                        hf_weightf(b, 1, &c, "%s.running_mean", prefix),
                        hf_weightf(b, 1, &c, "%s.running_var", prefix)};
    ulc_value *y = ulc_gb_op(b, "BatchNormalization", 5, in);
    ulc_gb_attr_float(b, y, "epsilon", eps);
    return y;
}

ulc_value *hf_patch_tokens(ulc_gb *b, ulc_value *px, ulc_value *w, ulc_value *bias, int64_t patch,
                           int64_t c, ulc_value *token) {
    ulc_value *x = hf_conv2d(b, px, w, bias, patch, patch, 0);
    x = ulc_gb_op2(b, "Reshape", x, ulc_gb_vec_i64(b, 3, (const int64_t[]){0, c, -1}));
    x = ulc_gb_op1(b, "Transpose", x);
    ulc_gb_attr_ints(b, x, "perm", 3, (const int64_t[]){0, 2, 1});
    ulc_value *batch = ulc_gb_op2(b, "Unsqueeze", ulc_gb_dim(b, px, 0), ulc_gb_vec_i64(b, 1, (const int64_t[]){0}));
    ulc_value *shape = ulc_gb_op3(b, "Concat", batch, ulc_gb_vec_i64(b, 1, (const int64_t[]){1}),
                              ulc_gb_vec_i64(b, 1, &c));
    ulc_gb_attr_int(b, shape, "axis", 0);
    ulc_value *h = ulc_gb_op2(b, "Concat", ulc_gb_op2(b, "Expand", token, shape), x);
    ulc_gb_attr_int(b, h, "axis", 1);
    return h;
}

ulc_value *hf_attention(ulc_gb *b, ulc_value *q, ulc_value *k, ulc_value *v, int64_t heads,
                        int64_t head_dim, int scale_q, ulc_value *bias1, ulc_value *bias2) {
    float scale = 1.0f / sqrtf((float)head_dim);
    if (scale_q) q = ulc_gb_op2(b, "Mul", q, ulc_gb_scalar_f32(b, scale));
    ulc_value *split = ulc_gb_vec_i64(b, 4, (const int64_t[]){0, 0, heads, head_dim});
    ulc_value *qh = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "Reshape", q, split));
    ulc_gb_attr_ints(b, qh, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    ulc_value *kh = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "Reshape", k, split));
    ulc_gb_attr_ints(b, kh, "perm", 4, (const int64_t[]){0, 2, 3, 1});
    ulc_value *vh = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "Reshape", v, split));
    ulc_gb_attr_ints(b, vh, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    ulc_value *s = ulc_gb_op2(b, "MatMul", qh, kh);
    if (!scale_q) s = ulc_gb_op2(b, "Div", s, ulc_gb_scalar_f32(b, sqrtf((float)head_dim)));
    if (bias1) s = ulc_gb_op2(b, "Add", s, bias1);
    if (bias2) s = ulc_gb_op2(b, "Add", s, bias2);
    ulc_value *p = ulc_gb_op1(b, "Softmax", s);
    ulc_gb_attr_int(b, p, "axis", -1);
    ulc_value *c = ulc_gb_op1(b, "Transpose", ulc_gb_op2(b, "MatMul", p, vh));
    ulc_gb_attr_ints(b, c, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    return ulc_gb_op2(b, "Reshape", c, ulc_gb_vec_i64(b, 3, (const int64_t[]){0, 0, heads * head_dim}));
}
