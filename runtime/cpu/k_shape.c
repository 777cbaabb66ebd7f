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

/* "[2,3,4]" for a dims list (messages). */
const char *ulc_ks_dims_str(int rank, const int64_t *dims, char *buf, size_t size) {
    size_t o = 0;
    buf[0] = 0;
    o += (size_t)snprintf(buf + o, size - o, "[");
    for (int i = 0; i < rank && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
    return buf;
}

ulc_status ulc_ks_need_input(ulc_kctx *k, int i, const char *what) {
    if (in_opt(k, i)) return ULC_OK;
    return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is required", i, what);
}

/* Reads a 0-D or 1-D integer tensor input (a shape, axes, starts...) into v[0..*n). */
ulc_status ulc_ks_read_ints(ulc_kctx *k, int slot, const char *what, int64_t *v, int max, int *n) {
    const ulc_rt_tensor *t = in_opt(k, slot);
    char b[96];
    if (!t) return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is required", slot, what);
    if (!ulc_k_is_int(t->dtype))
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) must be int64 or int32, got %s", slot,
                          what, shape_of(t, b, sizeof b));
    if (t->rank > 1)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) must be 1-D, got %s", slot, what,
                          shape_of(t, b, sizeof b));
    uint64_t cnt = ulc_rt_numel(t);
    if (cnt > (uint64_t)max)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "input %d (%s) has %llu entries; at most %d are supported", slot, what,
                          (unsigned long long)cnt, max);
    if (cnt && !t->data)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "input %d (%s) has no data at plan time (it must be a constant)", slot,
                          what);
    for (uint64_t i = 0; i < cnt; i++) v[i] = ulc_k_int_at(t, i);
    *n = (int)cnt;
    return ULC_OK;
}

/* Normalises a list of axes against rank, refusing out-of-range and repeated axes. */
ulc_status ulc_ks_norm_axes(ulc_kctx *k, const int64_t *axes, int n, int rank, int *out) {
    for (int i = 0; i < n; i++) {
        ULC_TRY(ulc_k_axis(k, axes[i], rank, &out[i]));
        for (int j = 0; j < i; j++)
            if (out[j] == out[i])
                return ulc_k_fail(k, ULC_ERR_INVALID, "axis %lld is repeated in axes",
                                  (long long)axes[i]);
    }
    return ULC_OK;
}

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


/* ---- Identity, Reshape, Flatten, Squeeze, Unsqueeze (views) ---------------------------------- */

static ulc_status identity_infer(ulc_kctx *k) {
    ULC_TRY(ulc_ks_need_input(k, 0, "input"));
    const ulc_rt_tensor *x = k->in[0];
    ulc_k_set(k->out[0], x->dtype, x->rank, x->dims);
    return ULC_OK;
}

static ulc_status reshape_infer(ulc_kctx *k) {
    ULC_TRY(ulc_ks_need_input(k, 0, "data"));
    const ulc_rt_tensor *x = k->in[0];
    int64_t shape[ULC_RT_MAX_RANK];
    int n = 0;
    char b1[96], b2[96];
    if (k->opset < 5) { /* Reshape-1: `shape` attribute */
        const int64_t *v;
        n = ulc_k_attr_ints(k, "shape", &v);
        if (n < 0)
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute 'shape' is required before opset 5");
        if (n > ULC_RT_MAX_RANK)
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "target rank %d exceeds %d", n,
                              ULC_RT_MAX_RANK);
        memcpy(shape, v, (size_t)n * sizeof *v);
    } else {
        ULC_TRY(ulc_ks_read_ints(k, 1, "shape", shape, ULC_RT_MAX_RANK, &n));
    }
    int allowzero = k->opset >= 14 && ulc_k_attr_int(k, "allowzero", 0) != 0;
    int infer_at = -1, has_zero = 0;
    uint64_t known = 1;
    int64_t dims[ULC_RT_MAX_RANK];
    for (int i = 0; i < n; i++) {
        int64_t s = shape[i];
        if (s == -1) {
            if (infer_at >= 0)
                return ulc_k_fail(k, ULC_ERR_INVALID, "shape %s has more than one -1",
                                  ulc_ks_dims_str(n, shape, b1, sizeof b1));
            infer_at = i;
            dims[i] = 1;
            continue;
        }
        if (s < -1)
            return ulc_k_fail(k, ULC_ERR_INVALID, "shape %s has a negative dim %lld",
                              ulc_ks_dims_str(n, shape, b1, sizeof b1), (long long)s);
        if (s == 0 && !allowzero) {
            if (i >= x->rank)
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "shape %s copies dim %d (0) of data %s, which has only %d dims",
                                  ulc_ks_dims_str(n, shape, b1, sizeof b1), i, shape_of(x, b2, sizeof b2),
                                  x->rank);
            s = x->dims[i];
        }
        if (s == 0) has_zero = 1;
        dims[i] = s;
        known *= (uint64_t)s;
    }
    uint64_t total = ulc_rt_numel(x);
    if (infer_at >= 0) {
        if (allowzero && has_zero)
            return ulc_k_fail(k, ULC_ERR_INVALID, "shape %s has both -1 and 0 with allowzero=1",
                              ulc_ks_dims_str(n, shape, b1, sizeof b1));
        if (known == 0 || total % known)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "cannot reshape data %s to %s: %llu elements do not divide into %llu",
                              shape_of(x, b2, sizeof b2), ulc_ks_dims_str(n, shape, b1, sizeof b1),
                              (unsigned long long)total, (unsigned long long)known);
        dims[infer_at] = (int64_t)(total / known);
        known *= (uint64_t)dims[infer_at];
    }
    if (known != total)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "cannot reshape data %s (%llu elements) to %s (%llu elements)",
                          shape_of(x, b2, sizeof b2), (unsigned long long)total,
                          ulc_ks_dims_str(n, dims, b1, sizeof b1), (unsigned long long)known);
    ulc_k_set(k->out[0], x->dtype, n, dims);
    return ULC_OK;
}

static ulc_status flatten_infer(ulc_kctx *k) {
    ULC_TRY(ulc_ks_need_input(k, 0, "input"));
    const ulc_rt_tensor *x = k->in[0];
    int64_t axis = ulc_k_attr_int(k, "axis", 1);
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis > x->rank)
        return ulc_k_fail(k, ULC_ERR_INVALID, "axis %lld is out of range [-%d, %d]",
                          (long long)ulc_k_attr_int(k, "axis", 1), x->rank, x->rank);
    int64_t dims[2] = {(int64_t)dims_numel((int)axis, x->dims),
                       (int64_t)dims_numel(x->rank - (int)axis, x->dims + axis)};
    ulc_k_set(k->out[0], x->dtype, 2, dims);
    return ULC_OK;
}

/* Squeeze/Unsqueeze axes: input 1 from opset 13, else the attribute. *n = -1 when absent. */
static ulc_status read_axes(ulc_kctx *k, int64_t *axes, int max, int *n) {
    if (k->opset >= 13) {
        if (!in_opt(k, 1)) {
            *n = -1;
            return ULC_OK;
        }
        return ulc_ks_read_ints(k, 1, "axes", axes, max, n);
    }
    const int64_t *v;
    int c = ulc_k_attr_ints(k, "axes", &v);
    if (c > max) return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "%d axes exceed rank %d", c, max);
    if (c > 0) memcpy(axes, v, (size_t)c * sizeof *v);
    *n = c;
    return ULC_OK;
}

static ulc_status squeeze_infer(ulc_kctx *k) {
    ULC_TRY(ulc_ks_need_input(k, 0, "data"));
    const ulc_rt_tensor *x = k->in[0];
    int64_t axes[ULC_RT_MAX_RANK];
    int n, ax[ULC_RT_MAX_RANK];
    ULC_TRY(read_axes(k, axes, ULC_RT_MAX_RANK, &n));
    int drop[ULC_RT_MAX_RANK] = {0};
    if (n <= 0) { /* no (or empty) axes: every size-1 dim, as onnxruntime does */
        for (int d = 0; d < x->rank; d++) drop[d] = x->dims[d] == 1;
    } else {
        ULC_TRY(ulc_ks_norm_axes(k, axes, n, x->rank, ax));
        for (int i = 0; i < n; i++) {
            if (x->dims[ax[i]] != 1) {
                char b[96];
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "cannot squeeze axis %d of data %s: its size is %lld, not 1",
                                  ax[i], shape_of(x, b, sizeof b), (long long)x->dims[ax[i]]);
            }
            drop[ax[i]] = 1;
        }
    }
    int64_t dims[ULC_RT_MAX_RANK];
    int r = 0;
    for (int d = 0; d < x->rank; d++)
        if (!drop[d]) dims[r++] = x->dims[d];
    ulc_k_set(k->out[0], x->dtype, r, dims);
    return ULC_OK;
}

static ulc_status unsqueeze_infer(ulc_kctx *k) {
    ULC_TRY(ulc_ks_need_input(k, 0, "data"));
    const ulc_rt_tensor *x = k->in[0];
    int64_t axes[ULC_RT_MAX_RANK];
    int n, ax[ULC_RT_MAX_RANK];
    ULC_TRY(read_axes(k, axes, ULC_RT_MAX_RANK, &n));
    if (n < 0) return ulc_k_fail(k, ULC_ERR_INVALID, "axes are required");
    int r = x->rank + n;
    if (r > ULC_RT_MAX_RANK)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "output rank %d exceeds %d", r, ULC_RT_MAX_RANK);
    ULC_TRY(ulc_ks_norm_axes(k, axes, n, r, ax));
    int ins[ULC_RT_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) ins[ax[i]] = 1;
    int64_t dims[ULC_RT_MAX_RANK];
    for (int d = 0, s = 0; d < r; d++) dims[d] = ins[d] ? 1 : x->dims[s++];
    ulc_k_set(k->out[0], x->dtype, r, dims);
    return ULC_OK;
}

/* ---- Shape, Size ----------------------------------------------------------------------------- */

static void shape_range(const ulc_kctx *k, int rank, int64_t *start, int64_t *end) {
    int64_t s = 0, e = rank;
    if (k->opset >= 15) {
        s = ulc_k_attr_int(k, "start", 0);
        e = ulc_k_attr_int(k, "end", rank);
    }
    if (s < 0) s += rank;
    if (e < 0) e += rank;
    s = s < 0 ? 0 : s > rank ? rank : s;
    e = e < 0 ? 0 : e > rank ? rank : e;
    *start = s;
    *end = e < s ? s : e;
}

static ulc_status shape_infer(ulc_kctx *k) {
    ULC_TRY(ulc_ks_need_input(k, 0, "data"));
    int64_t s, e;
    shape_range(k, k->in[0]->rank, &s, &e);
    int64_t n = e - s;
    ulc_k_set(k->out[0], ULC_DT_I64, 1, &n);
    return ULC_OK;
}

static ulc_status shape_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    int64_t s, e;
    shape_range(k, x->rank, &s, &e);
    int64_t *y = k->out[0]->data;
    for (int64_t i = s; i < e; i++) y[i - s] = x->dims[i];
    return ULC_OK;
}

static ulc_status size_infer(ulc_kctx *k) {
    ULC_TRY(ulc_ks_need_input(k, 0, "data"));
    ulc_k_set(k->out[0], ULC_DT_I64, 0, NULL);
    return ULC_OK;
}

static ulc_status size_run(ulc_kctx *k) {
    int64_t n = (int64_t)ulc_rt_numel(k->in[0]);
    memcpy(k->out[0]->data, &n, sizeof n);
    return ULC_OK;
}

/* ---- Constant, ConstantOfShape --------------------------------------------------------------- */

/* The runtime dtype of an attribute tensor's elements, or an error for ones the runtime cannot
 * hold (strings, complex, float8, 4-bit). */
static ulc_status tensor_rt_dtype(ulc_kctx *k, const char *what, const ulc_tensor *t, int *dt) {
    int d = t->dtype;
    if (d == ULC_DT_F16 || d == ULC_DT_BF16) d = ULC_DT_F32;
    if (!ulc_k_dtype_size(d))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "%s has dtype %s, which the CPU runtime does not compute on", what,
                          ulc_dtype_name(t->dtype));
    if (t->numel && !t->data)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "%s has no data in memory", what);
    *dt = d;
    return ULC_OK;
}

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

static ulc_status constant_infer(ulc_kctx *k) {
    const ulc_node *nd = k->node;
    const ulc_attr *a = NULL;
    for (int i = 0; i < nd->n_attrs; i++) {
        const char *nm = nd->attrs[i].name;
        if (!strcmp(nm, "value") || !strcmp(nm, "value_float") || !strcmp(nm, "value_floats") ||
            !strcmp(nm, "value_int") || !strcmp(nm, "value_ints") || !strcmp(nm, "value_string") ||
            !strcmp(nm, "value_strings") || !strcmp(nm, "sparse_value")) {
            if (a)
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "has both '%s' and '%s'; exactly one value attribute is allowed",
                                  a->name, nm);
            a = &nd->attrs[i];
        }
    }
    if (!a) return ulc_k_fail(k, ULC_ERR_INVALID, "has no value attribute");
    ulc_rt_tensor *y = k->out[0];
    if (!strcmp(a->name, "value")) {
        if (a->type != ULC_ATTR_TENSOR || !a->t)
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute 'value' is not a tensor");
        int dt = ULC_DT_F32;
        ULC_TRY(tensor_rt_dtype(k, "attribute 'value'", a->t, &dt));
        if (a->t->rank > ULC_RT_MAX_RANK)
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "attribute 'value' has rank %d > %d",
                              a->t->rank, ULC_RT_MAX_RANK);
        ulc_k_set(y, dt, a->t->rank, a->t->dims);
        return ULC_OK;
    }
    if (!strcmp(a->name, "value_float") && a->type == ULC_ATTR_FLOAT) {
        ulc_k_set(y, ULC_DT_F32, 0, NULL);
    } else if (!strcmp(a->name, "value_int") && a->type == ULC_ATTR_INT) {
        ulc_k_set(y, ULC_DT_I64, 0, NULL);
    } else if (!strcmp(a->name, "value_floats") && a->type == ULC_ATTR_FLOATS) {
        int64_t n = (int64_t)a->n;
        ulc_k_set(y, ULC_DT_F32, 1, &n);
    } else if (!strcmp(a->name, "value_ints") && a->type == ULC_ATTR_INTS) {
        int64_t n = (int64_t)a->n;
        ulc_k_set(y, ULC_DT_I64, 1, &n);
    } else if (!strcmp(a->name, "value_string") || !strcmp(a->name, "value_strings")) {
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "string constants ('%s') are not supported by the CPU runtime", a->name);
    } else if (!strcmp(a->name, "sparse_value")) {
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "sparse constants ('sparse_value') are not supported by the CPU runtime");
    } else {
        return ulc_k_fail(k, ULC_ERR_INVALID, "attribute '%s' has the wrong type", a->name);
    }
    return ULC_OK;
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

static ulc_status cos_infer(ulc_kctx *k) {
    int64_t dims[ULC_RT_MAX_RANK];
    int n;
    ULC_TRY(ulc_ks_read_ints(k, 0, "shape", dims, ULC_RT_MAX_RANK, &n));
    for (int i = 0; i < n; i++)
        if (dims[i] < 0)
            return ulc_k_fail(k, ULC_ERR_INVALID, "shape has a negative dim %lld",
                              (long long)dims[i]);
    int dt = ULC_DT_F32;
    const ulc_attr *a = ulc_k_attr(k, "value");
    if (a) {
        if (a->type != ULC_ATTR_TENSOR || !a->t)
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute 'value' is not a tensor");
        if (a->t->numel != 1)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "attribute 'value' must hold one element, not %llu",
                              (unsigned long long)a->t->numel);
        ULC_TRY(tensor_rt_dtype(k, "attribute 'value'", a->t, &dt));
    }
    ulc_k_set(k->out[0], dt, n, dims);
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

static ulc_status range_count(ulc_kctx *k, int64_t *count) {
    for (int i = 0; i < 3; i++) {
        static const char *const names[] = {"start", "limit", "delta"};
        const ulc_rt_tensor *t = in_opt(k, i);
        if (!t) return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is required", i, names[i]);
        if (ulc_rt_numel(t) != 1 || t->rank > 1)
            return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) must be a scalar", i, names[i]);
        if (!t->data)
            return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) has no data at plan time", i,
                              names[i]);
        if (t->dtype != k->in[0]->dtype)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "inputs must share one dtype (%s is %s, start is %s)", names[i],
                              ulc_dtype_name(t->dtype), ulc_dtype_name(k->in[0]->dtype));
    }
    int dt = k->in[0]->dtype;
    int64_t n;
    if (ulc_k_is_float(dt)) {
        double s = ulc_k_f64_at(k->in[0], 0), l = ulc_k_f64_at(k->in[1], 0),
               d = ulc_k_f64_at(k->in[2], 0);
        if (d == 0 || isnan(d)) return ulc_k_fail(k, ULC_ERR_INVALID, "delta is %g", d);
        double c = ceil((l - s) / d);
        if (isnan(c)) return ulc_k_fail(k, ULC_ERR_INVALID, "start/limit are not finite");
        if (c > (double)(INT64_MAX / 16))
            return ulc_k_fail(k, ULC_ERR_INVALID, "range of %g elements is too large", c);
        n = c > 0 ? (int64_t)c : 0;
    } else if (ulc_k_is_int(dt)) {
        int64_t s = ulc_k_int_at(k->in[0], 0), l = ulc_k_int_at(k->in[1], 0),
                d = ulc_k_int_at(k->in[2], 0);
        if (d == 0) return ulc_k_fail(k, ULC_ERR_INVALID, "delta is 0");
        if ((l > 0 && s < INT64_MIN + l) || (l < 0 && s > INT64_MAX + l))
            return ulc_k_fail(k, ULC_ERR_INVALID, "limit - start overflows int64");
        int64_t diff = l - s;
        if (d > 0)
            n = diff > 0 ? (diff - 1) / d + 1 : 0;
        else
            n = diff < 0 ? (diff + 1) / d + 1 : 0;
    } else {
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "dtype %s is not supported", ulc_dtype_name(dt));
    }
    *count = n;
    return ULC_OK;
}

static ulc_status range_infer(ulc_kctx *k) {
    int64_t n;
    ULC_TRY(range_count(k, &n));
    ulc_k_set(k->out[0], k->in[0]->dtype, 1, &n);
    return ULC_OK;
}

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
        } else {
            for (int64_t i = 0; i < n; i++) ulc_k_store_f64(y, (uint64_t)i, (double)(s + i * d));
        }
        break;
    }
    }
    return ULC_OK;
}


/* ---- Dropout (inference) --------------------------------------------------------------------- */

static ulc_status dropout_infer(ulc_kctx *k) {
    ULC_TRY(ulc_ks_need_input(k, 0, "data"));
    const ulc_rt_tensor *x = k->in[0];
    ulc_k_set(k->out[0], x->dtype, x->rank, x->dims);
    ulc_rt_tensor *mask = out_opt(k, 1);
    if (mask) ulc_k_set(mask, k->opset >= 10 ? ULC_DT_BOOL : x->dtype, x->rank, x->dims);
    return ULC_OK;
}

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

static const ulc_kernel k_identity = {.infer = identity_infer, .run = ulc_ks_run_copy};
static const ulc_kernel k_reshape = {.infer = reshape_infer, .run = ulc_ks_run_copy};
static const ulc_kernel k_flatten = {.infer = flatten_infer, .run = ulc_ks_run_copy};
static const ulc_kernel k_squeeze = {.infer = squeeze_infer, .run = ulc_ks_run_copy};
static const ulc_kernel k_unsqueeze = {.infer = unsqueeze_infer, .run = ulc_ks_run_copy};
static const ulc_kernel k_shape = {.infer = shape_infer, .run = shape_run};
static const ulc_kernel k_size = {.infer = size_infer, .run = size_run};
static const ulc_kernel k_constant = {.infer = constant_infer, .run = constant_run};
static const ulc_kernel k_cos = {.infer = cos_infer, .run = cos_run};
static const ulc_kernel k_range = {.infer = range_infer, .run = range_run};
static const ulc_kernel k_dropout = {.infer = dropout_infer, .run = dropout_run};

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

