/*
 * k_shape.c — the CPU backend's shape ops (ONNX default domain, opsets 1–21).
 * None of them computes on element values: each either describes a new shape over the same bytes
 * or moves bytes, so all are dtype-agnostic (they copy elements of 1, 2, 4 or 8 bytes).
 *
 * Views (ULC_SHAPE_ALIAS in runtime/shape.h: the planner points output 0 at input 0's bytes; run
 * copies when it cannot):
 *   Reshape    Y = X read under `shape` (input 1; attribute before opset 5): 0 copies X's dim at
 *              that position (a literal 0 when allowzero=1, opset 14), one -1 is inferred.
 *   Flatten    Y[prod(d[0:axis]), prod(d[axis:])] = X, axis in [-r, r] (default 1).
 *   Squeeze    drops the size-1 dims named by axes (input 1 from opset 13, else attribute;
 *              none or empty: every size-1 dim, as onnxruntime does).
 *   Unsqueeze  inserts size-1 dims at `axes`, positions in the *output* rank r + len(axes).
 *   Identity   Y = X.
 * Metadata (ULC_SHAPE_ONLY: run reads only the input's shape):
 *   Shape      Y = int64[end - start] of X's dims[start:end] (start/end from opset 15, clamped).
 *   Size       Y = int64 scalar numel(X).
 * Constants:
 *   Constant         Y = the `value` tensor attribute, or value_float(s) → f32, value_int(s) → i64.
 *   ConstantOfShape  Y[shape] filled with `value` (a one-element tensor, default f32 0).
 *   Range            Y[i] = start + i·delta, n = max(ceil((limit − start) / delta), 0).
 * Other:
 *   Dropout    inference: Y = X, mask (optional) all true; training_mode true is unsupported.
 * Data movement (Transpose, Concat, Split, Slice, Gather, GatherElements, Expand, Tile, Trilu,
 * Pad): k_shape_move.c.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/half.h"
#include "runtime/cpu/k_shape.h"

/* ---- small helpers --------------------------------------------------------------------------- */

/* Fills n elements of es bytes at dst with the element at elem. */
void ulc_ks_fill_elems(void *dst, uint64_t n, const void *elem, size_t es) {
    if (!n) return;
    switch (es) {
    case 1: memset(dst, *(const uint8_t *)elem, n); break;
    case 2: {
        uint16_t v;
        memcpy(&v, elem, 2);
        uint16_t *d = dst;
        for (uint64_t i = 0; i < n; i++) d[i] = v;
        break;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, elem, 4);
        uint32_t *d = dst;
        for (uint64_t i = 0; i < n; i++) d[i] = v;
        break;
    }
    default: {
        uint64_t v;
        memcpy(&v, elem, 8);
        uint64_t *d = dst;
        for (uint64_t i = 0; i < n; i++) d[i] = v;
        break;
    }
    }
}

/* Copies input 0's bytes to output 0 unless they already are the same bytes (aliased views). */
ulc_status ulc_ks_run_copy(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    size_t n = (size_t)ulc_rt_numel(x) * ulc_k_dtype_size(x->dtype);
    if (n && y->data != x->data) memmove(y->data, x->data, n);
    return ULC_OK;
}

/* ---- Shape, Size ----------------------------------------------------------------------------- */

static ulc_status shape_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    int64_t s, e;
    ulc_sh_shape_range(k, x->rank, &s, &e);
    int64_t *y = k->out[0]->data;
    for (int64_t i = s; i < e; i++) y[i - s] = x->dims[i];
    return ULC_OK;
}

static ulc_status size_run(ulc_kctx *k) {
    int64_t n = (int64_t)ulc_rt_numel(k->in[0]);
    memcpy(k->out[0]->data, &n, sizeof n);
    return ULC_OK;
}

/* ---- Constant, ConstantOfShape --------------------------------------------------------------- */

/* Copies n elements of attribute tensor t (possibly unaligned, f16/bf16 widened to f32). */
static void tensor_copy_out(const ulc_tensor *t, void *dst, uint64_t n) {
    if (t->dtype == ULC_DT_F16 || t->dtype == ULC_DT_BF16) {
        const uint8_t *s = t->data;
        float *d = dst;
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            d[i] = t->dtype == ULC_DT_F16 ? ulc_f16_to_f32(h) : ulc_bf16_to_f32(h);
        }
        return;
    }
    if (n) memcpy(dst, t->data, (size_t)n * ulc_k_dtype_size(t->dtype));
}

static ulc_status constant_run(ulc_kctx *k) {
    ulc_rt_tensor *y = k->out[0];
    const ulc_attr *a;
    if ((a = ulc_k_attr(k, "value")) != NULL) {
        tensor_copy_out(a->t, y->data, a->t->numel);
    } else if ((a = ulc_k_attr(k, "value_float")) != NULL) {
        memcpy(y->data, &a->f, sizeof a->f);
    } else if ((a = ulc_k_attr(k, "value_int")) != NULL) {
        memcpy(y->data, &a->i, sizeof a->i);
    } else if ((a = ulc_k_attr(k, "value_floats")) != NULL) {
        if (a->n) memcpy(y->data, a->floats, a->n * sizeof *a->floats);
    } else if ((a = ulc_k_attr(k, "value_ints")) != NULL) {
        if (a->n) memcpy(y->data, a->ints, a->n * sizeof *a->ints);
    } else {
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "run without a value attribute");
    }
    return ULC_OK;
}

static ulc_status cos_run(ulc_kctx *k) {
    ulc_rt_tensor *y = k->out[0];
    uint8_t elem[8] = {0}; /* default: f32 0 */
    const ulc_attr *a = ulc_k_attr(k, "value");
    if (a) tensor_copy_out(a->t, elem, 1);
    ulc_ks_fill_elems(y->data, ulc_rt_numel(y), elem, ulc_k_dtype_size(y->dtype));
    return ULC_OK;
}

/* ---- Range ----------------------------------------------------------------------------------- */

static ulc_status range_run(ulc_kctx *k) {
    ulc_rt_tensor *y = k->out[0];
    int64_t n = y->dims[0];
    switch (y->dtype) {
    case ULC_DT_F32: {
        float s = *(const float *)k->in[0]->data, d = *(const float *)k->in[2]->data;
        float *o = y->data;
        for (int64_t i = 0; i < n; i++) o[i] = s + (float)i * d;
        break;
    }
    case ULC_DT_F64: {
        double s = *(const double *)k->in[0]->data, d = *(const double *)k->in[2]->data;
        double *o = y->data;
        for (int64_t i = 0; i < n; i++) o[i] = s + (double)i * d;
        break;
    }
    default: {
        int64_t s = ulc_k_int_at(k->in[0], 0), d = ulc_k_int_at(k->in[2], 0);
        if (y->dtype == ULC_DT_I64) {
            int64_t *o = y->data;
            for (int64_t i = 0; i < n; i++) o[i] = s + i * d;
        } else if (y->dtype == ULC_DT_I32) {
            int32_t *o = y->data;
            for (int64_t i = 0; i < n; i++) o[i] = (int32_t)(s + i * d);
        } else if (y->dtype == ULC_DT_U64) { /* exact past 2^53, where a double is not */
            uint64_t *o = y->data;
            for (int64_t i = 0; i < n; i++) o[i] = (uint64_t)s + (uint64_t)i * (uint64_t)d;
        } else {
            for (int64_t i = 0; i < n; i++) ulc_k_store_f64(y, (uint64_t)i, (double)(s + i * d));
        }
        break;
    }
    }
    return ULC_OK;
}

/* ---- Dropout (inference) --------------------------------------------------------------------- */

static ulc_status dropout_run(ulc_kctx *k) {
    const ulc_rt_tensor *tm = k->opset >= 12 ? in_opt(k, 2) : NULL;
    if (tm && tm->data && ulc_k_int_at(tm, 0)) {
        const ulc_rt_tensor *ratio = in_opt(k, 1);
        double rv = ratio && ratio->data ? ulc_k_f64_at(ratio, 0) : 0.5;
        if (rv != 0)
            return ulc_k_fail(
                k, ULC_ERR_UNSUPPORTED,
                "training_mode=true (random dropout) is not supported by the CPU runtime");
    }
    ULC_TRY(ulc_ks_run_copy(k));
    ulc_rt_tensor *mask = out_opt(k, 1);
    if (mask) {
        uint8_t one[8] = {0};
        ulc_rt_tensor tmp = {.dtype = mask->dtype, .data = one};
        ulc_k_store_f64(&tmp, 0, 1.0);
        ulc_ks_fill_elems(mask->data, ulc_rt_numel(mask), one, ulc_k_dtype_size(mask->dtype));
    }
    return ULC_OK;
}

/* ---- the table ------------------------------------------------------------------------------- */

static const ulc_kernel k_identity = {.run = ulc_ks_run_copy};
static const ulc_kernel k_reshape = {.run = ulc_ks_run_copy};
static const ulc_kernel k_flatten = {.run = ulc_ks_run_copy};
static const ulc_kernel k_squeeze = {.run = ulc_ks_run_copy};
static const ulc_kernel k_unsqueeze = {.run = ulc_ks_run_copy};
static const ulc_kernel k_shape = {.run = shape_run};
static const ulc_kernel k_size = {.run = size_run};
static const ulc_kernel k_constant = {.run = constant_run};
static const ulc_kernel k_cos = {.run = cos_run};
static const ulc_kernel k_range = {.run = range_run};
static const ulc_kernel k_dropout = {.run = dropout_run};

void ulc_cpu_register_shape(const ulc_kernel **table) {
    table[ULC_OP_Identity] = &k_identity;
    table[ULC_OP_Reshape] = &k_reshape;
    table[ULC_OP_Flatten] = &k_flatten;
    table[ULC_OP_Squeeze] = &k_squeeze;
    table[ULC_OP_Unsqueeze] = &k_unsqueeze;
    table[ULC_OP_Shape] = &k_shape;
    table[ULC_OP_Size] = &k_size;
    table[ULC_OP_Constant] = &k_constant;
    table[ULC_OP_ConstantOfShape] = &k_cos;
    table[ULC_OP_Range] = &k_range;
    table[ULC_OP_Dropout] = &k_dropout;
    ulc_cpu_register_shape_move(table);
}

