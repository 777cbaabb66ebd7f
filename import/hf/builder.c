/* builder.c — see builder.h. */
#include "import/hf/builder.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ATTR_CAP 4
#define SQRT2 1.41421356237309504880
#define PI 3.14159265358979323846

static int ok(hb *b) { return b->status == ULC_OK; }

static void fail(hb *b, ulc_status s) {
    if (b->status == ULC_OK) b->status = s;
}

void hb_init(hb *b, ulc_model *m, int64_t opset, const char *producer, ulc_ctx *ctx) {
    memset(b, 0, sizeof *b);
    b->m = m;
    b->g = m->graph;
    b->ctx = ctx;
    ulc_arena *a = b->g->arena;
    m->has_ir_version = 1;
    m->ir_version = 8;
    m->producer_name = ulc_arena_strdup(a, producer);
    m->producer_version = ulc_arena_strdup(a, ULC_VERSION);
    m->n_opsets = 1;
    m->opsets = ulc_arena_calloc(a, 1, sizeof *m->opsets);
    if (!m->opsets || !m->producer_name) {
        fail(b, ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory"));
        return;
    }
    m->opsets[0].domain = "";
    m->opsets[0].has_domain = 1;
    m->opsets[0].version = opset;
    m->opsets[0].has_version = 1;
    b->g->name = "main_graph";
}

void hb_scope(hb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->scope, sizeof b->scope, fmt, ap);
    va_end(ap);
}

static const char *fresh_name(hb *b, const char *op, const char *suffix) {
    char buf[400];
    snprintf(buf, sizeof buf, "%s/%s_%d%s", b->scope, op, b->counter, suffix);
    return ulc_arena_strdup(b->g->arena, buf);
}

ulc_value *hb_input(hb *b, const char *name, int dtype, int rank, const ulc_dim *dims) {
    if (!ok(b)) return NULL;
    ulc_value *v = ulc_graph_add_value(b->g, name, b->ctx);
    if (!v || ulc_value_set_shape(b->g, v, rank, dims, b->ctx) != ULC_OK ||
        ulc_ptrvec_push(&b->g->inputs, v) != 0) {
        fail(b, b->ctx->status ? b->ctx->status : ULC_ERR_NOMEM);
        return NULL;
    }
    v->flags |= ULC_VALUE_INPUT | ULC_VALUE_HAS_TYPE;
    v->dtype = dtype;
    return v;
}

void hb_output(hb *b, ulc_value *v, const char *name, int dtype, int rank, const ulc_dim *dims) {
    if (!ok(b) || !v) return;
    /* Rename the producing node's output to the public name. */
    if (ulc_graph_get_value(b->g, name)) {
        fail(b, ulc_fail(b->ctx, ULC_ERR_INTERNAL, "output name '%s' is taken", name));
        return;
    }
    ulc_strmap_remove(b->g->by_name, v->name);
    v->name = ulc_arena_strdup(b->g->arena, name);
    if (!v->name || ulc_strmap_put(b->g->by_name, v->name, v) != 0 ||
        ulc_value_set_shape(b->g, v, rank, dims, b->ctx) != ULC_OK ||
        ulc_ptrvec_push(&b->g->outputs, v) != 0) {
        fail(b, ulc_fail(b->ctx, ULC_ERR_NOMEM, "out of memory"));
        return;
    }
    v->flags |= ULC_VALUE_OUTPUT | ULC_VALUE_HAS_TYPE;
    v->dtype = dtype;
}

ulc_value *hb_weight(hb *b, const char *name, int rank, const int64_t *dims) {
    if (!ok(b)) return NULL;
    ulc_value *v = ulc_graph_get_value(b->g, name);
    if (!v || !(v->flags & ULC_VALUE_INITIALIZER)) {
        fail(b, ulc_fail(b->ctx, ULC_ERR_INVALID, "the checkpoint has no tensor '%s'", name));
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
        fail(b, ulc_fail(b->ctx, ULC_ERR_INVALID, "tensor '%s' is [%s], config.json implies [%s]",
                         name, have, want));
        return NULL;
    }
    if (!ulc_dtype_is_float(t->dtype) && dims) {
        fail(b, ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "tensor '%s' is %s, expected floats", name,
                         ulc_dtype_name(t->dtype)));
        return NULL;
    }
    return v;
}

ulc_value *hb_weightf(hb *b, int rank, const int64_t *dims, const char *fmt, ...) {
    char name[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return hb_weight(b, name, rank, dims);
}

static ulc_value *add_const(hb *b, int dtype, int rank, const int64_t *dims, const void *data,
                            size_t nbytes) {
    if (!ok(b)) return NULL;
    b->counter++;
    const char *name = fresh_name(b, "Constant", "");
    ulc_tensor *t = name ? ulc_tensor_new(b->g, name, dtype, rank, dims, b->ctx) : NULL;
    void *d = malloc(nbytes ? nbytes : 1);
    if (!t || !d) {
        free(d);
        fail(b, ulc_fail(b->ctx, ULC_ERR_NOMEM, "out of memory"));
        return NULL;
    }
    memcpy(d, data, nbytes);
    ulc_value *v = NULL;
    if (ulc_tensor_set_owned(b->g, t, d, nbytes, b->ctx) != ULC_OK ||
        !(v = ulc_graph_add_value(b->g, name, b->ctx)) ||
        ulc_value_set_init(b->g, v, t, b->ctx) != ULC_OK) {
        fail(b, b->ctx->status);
        return NULL;
    }
    v->flags |= ULC_VALUE_CONSTANT;
    return v;
}

ulc_value *hb_const_f32(hb *b, int rank, const int64_t *dims, const float *data) {
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) n *= (uint64_t)dims[i];
    return add_const(b, ULC_DT_F32, rank, dims, data, (size_t)n * 4);
}

ulc_value *hb_const_i64(hb *b, int rank, const int64_t *dims, const int64_t *data) {
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) n *= (uint64_t)dims[i];
    return add_const(b, ULC_DT_I64, rank, dims, data, (size_t)n * 8);
}

ulc_value *hb_scalar_f32(hb *b, float v) { return hb_const_f32(b, 0, NULL, &v); }

ulc_value *hb_vec_i64(hb *b, int n, const int64_t *v) {
    int64_t d = n;
    return hb_const_i64(b, 1, &d, v);
}

int hb_op_multi(hb *b, const char *op_type, int n_in, ulc_value *const *inputs, int n_out,
                ulc_value **outs) {
    if (!ok(b)) return -1;
    for (int i = 0; i < n_in; i++)
        if (!inputs[i]) {
            fail(b, ulc_fail(b->ctx, ULC_ERR_INTERNAL, "%s: missing input %d", op_type, i));
            return -1;
        }
    b->counter++;
    const char *nname = fresh_name(b, op_type, "");
    ulc_node *n = nname ? ulc_graph_add_node(b->g, "", op_type, nname, n_in, n_out, ATTR_CAP, b->ctx)
                        : NULL;
    if (!n) {
        fail(b, ulc_fail(b->ctx, ULC_ERR_NOMEM, "out of memory"));
        return -1;
    }
    for (int i = 0; i < n_in; i++) ulc_node_set_input(n, i, inputs[i]);
    for (int o = 0; o < n_out; o++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, "_output_%d", o);
        const char *vname = fresh_name(b, op_type, suffix);
        ulc_value *v = vname ? ulc_graph_add_value(b->g, vname, b->ctx) : NULL;
        if (!v || ulc_node_set_output(n, o, v, b->ctx) != ULC_OK) {
            fail(b, b->ctx->status ? b->ctx->status : ULC_ERR_NOMEM);
            return -1;
        }
        outs[o] = v;
    }
    return 0;
}

ulc_value *hb_op(hb *b, const char *op_type, int n, ulc_value *const *inputs) {
    ulc_value *out = NULL;
    return hb_op_multi(b, op_type, n, inputs, 1, &out) == 0 ? out : NULL;
}

ulc_value *hb_op1(hb *b, const char *op, ulc_value *x) { return hb_op(b, op, 1, &x); }

ulc_value *hb_op2(hb *b, const char *op, ulc_value *x, ulc_value *y) {
    ulc_value *in[2] = {x, y};
    return hb_op(b, op, 2, in);
}

ulc_value *hb_op3(hb *b, const char *op, ulc_value *x, ulc_value *y, ulc_value *z) {
    ulc_value *in[3] = {x, y, z};
    return hb_op(b, op, 3, in);
}

static ulc_attr *new_attr(hb *b, ulc_value *v, const char *name, int type) {
    if (!ok(b) || !v || !v->producer) return NULL;
    ulc_attr *a = ulc_node_add_attr(v->producer, name);
    if (!a) {
        fail(b, ulc_fail(b->ctx, ULC_ERR_INTERNAL, "too many attributes on one node"));
        return NULL;
    }
    a->type = type;
    a->has_type = 1;
    return a;
}

void hb_attr_int(hb *b, ulc_value *v, const char *name, int64_t i) {
    ulc_attr *a = new_attr(b, v, name, ULC_ATTR_INT);
    if (a) {
        a->i = i;
        a->has_i = 1;
    }
}

void hb_attr_float(hb *b, ulc_value *v, const char *name, float f) {
    ulc_attr *a = new_attr(b, v, name, ULC_ATTR_FLOAT);
    if (a) {
        a->f = f;
        a->has_f = 1;
    }
}

void hb_attr_ints(hb *b, ulc_value *v, const char *name, int n, const int64_t *ints) {
    ulc_attr *a = new_attr(b, v, name, ULC_ATTR_INTS);
    if (!a) return;
    a->n = (size_t)n;
    a->ints = ulc_arena_memdup(b->g->arena, ints, (size_t)n * sizeof *ints);
    if (!a->ints) fail(b, ulc_fail(b->ctx, ULC_ERR_NOMEM, "out of memory"));
}

ulc_value *hb_linear(hb *b, ulc_value *x, ulc_value *w, ulc_value *bias) {
    ulc_value *y = hb_op2(b, "MatMul", x, w);
    return bias ? hb_op2(b, "Add", y, bias) : y;
}

ulc_value *hb_linear_t(hb *b, ulc_value *x, ulc_value *w, ulc_value *bias) {
    ulc_value *wt = hb_op1(b, "Transpose", w);
    hb_attr_ints(b, wt, "perm", 2, (const int64_t[]){1, 0});
    return hb_linear(b, x, wt, bias);
}

ulc_value *hb_layernorm(hb *b, ulc_value *x, ulc_value *gamma, ulc_value *beta, float eps) {
    ulc_value *y = hb_op3(b, "LayerNormalization", x, gamma, beta);
    hb_attr_int(b, y, "axis", -1);
    hb_attr_float(b, y, "epsilon", eps);
    return y;
}

/* 0.5 x (1 + erf(x / sqrt 2)) */
ulc_value *hb_gelu_erf(hb *b, ulc_value *x) {
    ulc_value *e = hb_op1(b, "Erf", hb_op2(b, "Div", x, hb_scalar_f32(b, (float)SQRT2)));
    ulc_value *t = hb_op2(b, "Add", e, hb_scalar_f32(b, 1.0f));
    return hb_op2(b, "Mul", hb_op2(b, "Mul", x, hb_scalar_f32(b, 0.5f)), t);
}

/* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) — transformers' NewGELUActivation */
ulc_value *hb_gelu_tanh(hb *b, ulc_value *x) {
    ulc_value *x3 = hb_op2(b, "Pow", x, hb_scalar_f32(b, 3.0f));
    ulc_value *inner = hb_op2(b, "Add", x, hb_op2(b, "Mul", x3, hb_scalar_f32(b, 0.044715f)));
    ulc_value *th = hb_op1(b, "Tanh", hb_op2(b, "Mul", inner, hb_scalar_f32(b, (float)sqrt(2.0 / PI))));
    ulc_value *t = hb_op2(b, "Add", th, hb_scalar_f32(b, 1.0f));
    return hb_op2(b, "Mul", hb_op2(b, "Mul", x, hb_scalar_f32(b, 0.5f)), t);
}

/* x * sigmoid(1.702 x) — CLIP's quick_gelu */
ulc_value *hb_quick_gelu(hb *b, ulc_value *x) {
    ulc_value *s = hb_op1(b, "Sigmoid", hb_op2(b, "Mul", x, hb_scalar_f32(b, 1.702f)));
    return hb_op2(b, "Mul", x, s);
}

static const char *const k_acts[] = {"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast",
                                     "quick_gelu", "relu", "silu", "swish", "tanh", "sigmoid"};

int hb_act_known(const char *name) {
    for (size_t i = 0; name && i < sizeof k_acts / sizeof *k_acts; i++)
        if (strcmp(name, k_acts[i]) == 0) return 1;
    return 0;
}

ulc_value *hb_act(hb *b, ulc_value *x, const char *name) {
    if (!ok(b)) return NULL;
    if (!hb_act_known(name)) {
        fail(b, ulc_fail(b->ctx, ULC_ERR_UNSUPPORTED, "activation '%s' is not supported",
                         name ? name : "(none)"));
        return NULL;
    }
    if (strcmp(name, "gelu") == 0) return hb_gelu_erf(b, x);
    if (strncmp(name, "gelu_", 5) == 0) return hb_gelu_tanh(b, x); /* same function */
    if (strcmp(name, "quick_gelu") == 0) return hb_quick_gelu(b, x);
    if (strcmp(name, "relu") == 0) return hb_op1(b, "Relu", x);
    if (strcmp(name, "tanh") == 0) return hb_op1(b, "Tanh", x);
    if (strcmp(name, "sigmoid") == 0) return hb_op1(b, "Sigmoid", x);
    return hb_op2(b, "Mul", x, hb_op1(b, "Sigmoid", x)); /* silu, swish */
}

ulc_value *hb_conv2d(hb *b, ulc_value *x, ulc_value *w, ulc_value *bias, int64_t k, int64_t s,
                     int64_t p) {
    ulc_value *in[3] = {x, w, bias};
    ulc_value *y = hb_op(b, "Conv", bias ? 3 : 2, in);
    hb_attr_ints(b, y, "kernel_shape", 2, (const int64_t[]){k, k});
    hb_attr_ints(b, y, "strides", 2, (const int64_t[]){s, s});
    hb_attr_ints(b, y, "pads", 4, (const int64_t[]){p, p, p, p});
    return y;
}

ulc_value *hb_batchnorm(hb *b, ulc_value *x, const char *prefix, int64_t c, float eps) {
    ulc_value *in[5] = {x, hb_weightf(b, 1, &c, "%s.weight", prefix),
                        hb_weightf(b, 1, &c, "%s.bias", prefix),
                        hb_weightf(b, 1, &c, "%s.running_mean", prefix),
                        hb_weightf(b, 1, &c, "%s.running_var", prefix)};
    ulc_value *y = hb_op(b, "BatchNormalization", 5, in);
    hb_attr_float(b, y, "epsilon", eps);
    return y;
}

ulc_value *hb_dim(hb *b, ulc_value *x, int64_t axis) {
    ulc_value *d = hb_op2(b, "Gather", hb_op1(b, "Shape", x), hb_const_i64(b, 0, NULL, &axis));
    hb_attr_int(b, d, "axis", 0);
    return d;
}

ulc_value *hb_patch_tokens(hb *b, ulc_value *px, ulc_value *w, ulc_value *bias, int64_t patch,
                           int64_t c, ulc_value *token) {
    ulc_value *x = hb_conv2d(b, px, w, bias, patch, patch, 0);
    x = hb_op2(b, "Reshape", x, hb_vec_i64(b, 3, (const int64_t[]){0, c, -1}));
    x = hb_op1(b, "Transpose", x);
    hb_attr_ints(b, x, "perm", 3, (const int64_t[]){0, 2, 1});
    ulc_value *batch = hb_op2(b, "Unsqueeze", hb_dim(b, px, 0), hb_vec_i64(b, 1, (const int64_t[]){0}));
    ulc_value *shape = hb_op3(b, "Concat", batch, hb_vec_i64(b, 1, (const int64_t[]){1}),
                              hb_vec_i64(b, 1, &c));
    hb_attr_int(b, shape, "axis", 0);
    ulc_value *h = hb_op2(b, "Concat", hb_op2(b, "Expand", token, shape), x);
    hb_attr_int(b, h, "axis", 1);
    return h;
}

ulc_value *hb_attention(hb *b, ulc_value *q, ulc_value *k, ulc_value *v, int64_t heads,
                        int64_t head_dim, int scale_q, ulc_value *bias1, ulc_value *bias2) {
    float scale = 1.0f / sqrtf((float)head_dim);
    if (scale_q) q = hb_op2(b, "Mul", q, hb_scalar_f32(b, scale));
    ulc_value *split = hb_vec_i64(b, 4, (const int64_t[]){0, 0, heads, head_dim});
    ulc_value *qh = hb_op1(b, "Transpose", hb_op2(b, "Reshape", q, split));
    hb_attr_ints(b, qh, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    ulc_value *kh = hb_op1(b, "Transpose", hb_op2(b, "Reshape", k, split));
    hb_attr_ints(b, kh, "perm", 4, (const int64_t[]){0, 2, 3, 1});
    ulc_value *vh = hb_op1(b, "Transpose", hb_op2(b, "Reshape", v, split));
    hb_attr_ints(b, vh, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    ulc_value *s = hb_op2(b, "MatMul", qh, kh);
    if (!scale_q) s = hb_op2(b, "Div", s, hb_scalar_f32(b, sqrtf((float)head_dim)));
    if (bias1) s = hb_op2(b, "Add", s, bias1);
    if (bias2) s = hb_op2(b, "Add", s, bias2);
    ulc_value *p = hb_op1(b, "Softmax", s);
    hb_attr_int(b, p, "axis", -1);
    ulc_value *c = hb_op1(b, "Transpose", hb_op2(b, "MatMul", p, vh));
    hb_attr_ints(b, c, "perm", 4, (const int64_t[]){0, 2, 1, 3});
    return hb_op2(b, "Reshape", c, hb_vec_i64(b, 3, (const int64_t[]){0, 0, heads * head_dim}));
}

ulc_status hb_finish(hb *b) {
    if (!ok(b)) return b->status;
    b->status = ulc_graph_verify(b->g, b->ctx);
    return b->status;
}
