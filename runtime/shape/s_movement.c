/*
 * s_movement.c — shape rules of the shape and data-movement ops: views (Identity, Reshape,
 * Flatten, Squeeze, Unsqueeze), metadata (Shape, Size), constants (Constant, ConstantOfShape,
 * Range), Dropout (inference), Transpose, Concat, Split, Slice, Gather, GatherElements, Expand,
 * Tile, Trilu, Pad. What each op computes is stated where the CPU backend implements it
 * (runtime/cpu/k_shape.c, k_shape_move.c); the decoders both sides use are in params.h.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/half.h"
#include "runtime/shape/rules.h"

static ulc_status identity_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "input"));
    const ulc_rt_tensor *x = k->in[0];
    ulc_k_set(k->out[0], x->dtype, x->rank, x->dims);
    return ULC_OK;
}

static ulc_status reshape_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
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
        ULC_TRY(ulc_k_read_ints(k, 1, "shape", shape, ULC_RT_MAX_RANK, &n));
    }
    int allowzero = k->opset >= 14 && ulc_k_attr_int(k, "allowzero", 0) != 0;
    int infer_at = -1, has_zero = 0;
    int64_t dims[ULC_RT_MAX_RANK];
    for (int i = 0; i < n; i++) {
        int64_t s = shape[i];
        if (s == -1) {
            if (infer_at >= 0)
                return ulc_k_fail(k, ULC_ERR_INVALID, "shape %s has more than one -1",
                                  ulc_k_dims_str(n, shape, b1, sizeof b1));
            infer_at = i;
            dims[i] = 1;
            continue;
        }
        if (s < -1)
            return ulc_k_fail(k, ULC_ERR_INVALID, "shape %s has a negative dim %lld",
                              ulc_k_dims_str(n, shape, b1, sizeof b1), (long long)s);
        if (s == 0 && !allowzero) {
            if (i >= x->rank)
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "shape %s copies dim %d (0) of data %s, which has only %d dims",
                                  ulc_k_dims_str(n, shape, b1, sizeof b1), i, shape_of(x, b2, sizeof b2),
                                  x->rank);
            s = x->dims[i];
        }
        if (s == 0) has_zero = 1;
        dims[i] = s;
    }
    int64_t known; /* the product of the given dims (a -1 counting 1) */
    if (!ulc_k_numel(n, dims, &known))
        return ulc_k_fail(k, ULC_ERR_INVALID, "shape %s has more than 2^48 elements",
                          ulc_k_dims_str(n, shape, b1, sizeof b1));
    uint64_t total = ulc_rt_numel(x);
    if (infer_at >= 0) {
        if (allowzero && has_zero)
            return ulc_k_fail(k, ULC_ERR_INVALID, "shape %s has both -1 and 0 with allowzero=1",
                              ulc_k_dims_str(n, shape, b1, sizeof b1));
        if (known == 0 || total % (uint64_t)known)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "cannot reshape data %s to %s: %llu elements do not divide into %llu",
                              shape_of(x, b2, sizeof b2), ulc_k_dims_str(n, shape, b1, sizeof b1),
                              (unsigned long long)total, (unsigned long long)known);
        dims[infer_at] = (int64_t)(total / (uint64_t)known);
        known *= dims[infer_at]; /* at most total */
    }
    if ((uint64_t)known != total)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "cannot reshape data %s (%llu elements) to %s (%llu elements)",
                          shape_of(x, b2, sizeof b2), (unsigned long long)total,
                          ulc_k_dims_str(n, dims, b1, sizeof b1), (unsigned long long)known);
    ulc_k_set(k->out[0], x->dtype, n, dims);
    return ULC_OK;
}

static ulc_status flatten_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "input"));
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
        return ulc_k_read_ints(k, 1, "axes", axes, max, n);
    }
    const int64_t *v;
    int c = ulc_k_attr_ints(k, "axes", &v);
    if (c > max) return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "%d axes exceed rank %d", c, max);
    if (c > 0) memcpy(axes, v, (size_t)c * sizeof *v);
    *n = c;
    return ULC_OK;
}

static ulc_status squeeze_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    const ulc_rt_tensor *x = k->in[0];
    int64_t axes[ULC_RT_MAX_RANK];
    int n, ax[ULC_RT_MAX_RANK];
    ULC_TRY(read_axes(k, axes, ULC_RT_MAX_RANK, &n));
    int drop[ULC_RT_MAX_RANK] = {0};
    if (n <= 0) { /* no (or empty) axes: every size-1 dim, as onnxruntime does */
        for (int d = 0; d < x->rank; d++) drop[d] = x->dims[d] == 1;
    } else {
        ULC_TRY(ulc_k_norm_axes(k, axes, n, x->rank, ax));
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
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    const ulc_rt_tensor *x = k->in[0];
    int64_t axes[ULC_RT_MAX_RANK];
    int n, ax[ULC_RT_MAX_RANK];
    ULC_TRY(read_axes(k, axes, ULC_RT_MAX_RANK, &n));
    if (n < 0) return ulc_k_fail(k, ULC_ERR_INVALID, "axes are required");
    int r = x->rank + n;
    if (r > ULC_RT_MAX_RANK)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "output rank %d exceeds %d", r, ULC_RT_MAX_RANK);
    ULC_TRY(ulc_k_norm_axes(k, axes, n, r, ax));
    int ins[ULC_RT_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) ins[ax[i]] = 1;
    int64_t dims[ULC_RT_MAX_RANK];
    for (int d = 0, s = 0; d < r; d++) dims[d] = ins[d] ? 1 : x->dims[s++];
    ulc_k_set(k->out[0], x->dtype, r, dims);
    return ULC_OK;
}

void ulc_sh_shape_range(const ulc_kctx *k, int rank, int64_t *start, int64_t *end) {
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
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    int64_t s, e;
    ulc_sh_shape_range(k, k->in[0]->rank, &s, &e);
    int64_t n = e - s;
    ulc_k_set(k->out[0], ULC_DT_I64, 1, &n);
    return ULC_OK;
}

static ulc_status size_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    ulc_k_set(k->out[0], ULC_DT_I64, 0, NULL);
    return ULC_OK;
}

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

static ulc_status cos_infer(ulc_kctx *k) {
    int64_t dims[ULC_RT_MAX_RANK];
    int n;
    ULC_TRY(ulc_k_read_ints(k, 0, "shape", dims, ULC_RT_MAX_RANK, &n));
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

static ulc_status dropout_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    const ulc_rt_tensor *x = k->in[0];
    ulc_k_set(k->out[0], x->dtype, x->rank, x->dims);
    ulc_rt_tensor *mask = out_opt(k, 1);
    if (mask) ulc_k_set(mask, k->opset >= 10 ? ULC_DT_BOOL : x->dtype, x->rank, x->dims);
    return ULC_OK;
}

ulc_status ulc_sh_transpose_perm(ulc_kctx *k, int rank, int *perm) {
    const int64_t *p;
    int n = ulc_k_attr_ints(k, "perm", &p);
    if (n < 0) {
        for (int i = 0; i < rank; i++) perm[i] = rank - 1 - i;
        return ULC_OK;
    }
    if (n != rank)
        return ulc_k_fail(k, ULC_ERR_INVALID, "perm has %d entries for an input of rank %d", n,
                          rank);
    int seen[ULC_RT_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) {
        int64_t a = p[i] < 0 ? p[i] + rank : p[i];
        if (a < 0 || a >= rank || seen[a])
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "perm is not a permutation of 0..%d (entry %d is %lld)", rank - 1, i,
                              (long long)p[i]);
        seen[a] = 1;
        perm[i] = (int)a;
    }
    return ULC_OK;
}

static ulc_status transpose_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    const ulc_rt_tensor *x = k->in[0];
    int perm[ULC_RT_MAX_RANK];
    ULC_TRY(ulc_sh_transpose_perm(k, x->rank, perm));
    int64_t dims[ULC_RT_MAX_RANK];
    for (int i = 0; i < x->rank; i++) dims[i] = x->dims[perm[i]];
    ulc_k_set(k->out[0], x->dtype, x->rank, dims);
    return ULC_OK;
}

static ulc_status concat_infer(ulc_kctx *k) {
    const ulc_rt_tensor *first = NULL;
    for (int i = 0; i < k->n_in && !first; i++) first = k->in[i];
    if (!first) return ulc_k_fail(k, ULC_ERR_INVALID, "has no inputs");
    if (k->n_in > CAT_MAX)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "%d inputs exceed %d", k->n_in, CAT_MAX);
    if (first->rank < 1)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "inputs must have rank >= 1 (scalars cannot be concatenated)");
    int64_t a = ulc_k_attr_int(k, "axis", k->opset < 4 ? 1 : INT64_MIN);
    if (a == INT64_MIN) return ulc_k_fail(k, ULC_ERR_INVALID, "attribute 'axis' is required");
    int axis;
    ULC_TRY(ulc_k_axis(k, a, first->rank, &axis));
    int64_t dims[ULC_RT_MAX_RANK];
    memcpy(dims, first->dims, sizeof dims);
    dims[axis] = 0;
    for (int i = 0; i < k->n_in; i++) {
        const ulc_rt_tensor *t = k->in[i];
        if (!t) continue;
        char b1[96], b2[96];
        int ok = t->rank == first->rank && t->dtype == first->dtype;
        for (int d = 0; ok && d < t->rank; d++) ok = d == axis || t->dims[d] == first->dims[d];
        if (!ok)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "input %d %s does not match input 0 %s outside axis %d", i,
                              shape_of(t, b1, sizeof b1), shape_of(first, b2, sizeof b2), axis);
        if (ulc_i64_add(dims[axis], t->dims[axis], &dims[axis]))
            return ulc_k_fail(k, ULC_ERR_INVALID, "the inputs' sizes along axis %d overflow int64",
                              axis);
    }
    ulc_k_set(k->out[0], first->dtype, first->rank, dims);
    return ULC_OK;
}

/* Split sizes along axis for the n_out outputs. */
ulc_status ulc_sh_split_sizes(ulc_kctx *k, int *axis_out, int64_t *sizes) {
    const ulc_rt_tensor *x = k->in[0];
    int axis, n = k->n_out;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), x->rank, &axis));
    int64_t d = x->dims[axis];
    int have = 0, cnt = 0;
    if (k->opset >= 13 && in_opt(k, 1)) {
        ULC_TRY(ulc_k_read_ints(k, 1, "split", sizes, CAT_MAX, &cnt));
        have = 1;
    } else if (k->opset < 13) {
        const int64_t *v;
        cnt = ulc_k_attr_ints(k, "split", &v);
        if (cnt > CAT_MAX)
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                              "attribute 'split' has %d entries (at most %d)", cnt, CAT_MAX);
        if (cnt >= 0) {
            memcpy(sizes, v, (size_t)cnt * sizeof *v);
            have = 1;
        }
    }
    if (have) {
        int64_t sum = 0;
        for (int i = 0; i < cnt; i++) {
            if (sizes[i] < 0)
                return ulc_k_fail(k, ULC_ERR_INVALID, "split size %lld is negative",
                                  (long long)sizes[i]);
            if (ulc_i64_add(sum, sizes[i], &sum))
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "split sizes add up past int64 (entry %d is %lld)", i,
                                  (long long)sizes[i]);
        }
        if (cnt != n || sum != d)
            return ulc_k_fail(
                k, ULC_ERR_INVALID,
                "split sizes (%d of them, sum %lld) do not cut dim %d of size %lld into %d outputs",
                cnt, (long long)sum, axis, (long long)d, n);
    } else {
        int64_t parts = n;
        if (k->opset >= 18) {
            int64_t no = ulc_k_attr_int(k, "num_outputs", -1);
            if (no >= 0 && no != n)
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "num_outputs is %lld but the node has %d outputs", (long long)no,
                                  n);
        }
        /* Equal parts; an uneven dim gives ceil-sized chunks and a smaller last one. */
        int64_t c = (d + parts - 1) / parts;
        for (int i = 0; i < n; i++) {
            int64_t left = d - i * c;
            sizes[i] = left < 0 ? 0 : left < c ? left : c;
        }
    }
    *axis_out = axis;
    return ULC_OK;
}

static ulc_status split_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "input"));
    if (k->n_out > CAT_MAX)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "%d outputs exceed %d", k->n_out, CAT_MAX);
    int64_t sizes[CAT_MAX];
    int axis;
    ULC_TRY(ulc_sh_split_sizes(k, &axis, sizes));
    const ulc_rt_tensor *x = k->in[0];
    for (int i = 0; i < k->n_out; i++) {
        if (!k->out[i]) continue;
        ulc_k_set(k->out[i], x->dtype, x->rank, x->dims);
        k->out[i]->dims[axis] = sizes[i];
    }
    return ULC_OK;
}

/* Per axis of the input: first index, step and count of the slice. */
ulc_status ulc_sh_slice_params(ulc_kctx *k, int64_t *first, int64_t *step, int64_t *count) {
    const ulc_rt_tensor *x = k->in[0];
    int r = x->rank;
    int64_t st[ULC_RT_MAX_RANK], en[ULC_RT_MAX_RANK], ax[ULC_RT_MAX_RANK], sp[ULC_RT_MAX_RANK];
    int ns, ne, na = -1, np = -1;
    if (k->opset < 10) {
        const int64_t *v;
        ns = ulc_k_attr_ints(k, "starts", &v);
        if (ns < 0 || ns > r)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "attribute 'starts' is required (at most rank entries)");
        memcpy(st, v, (size_t)ns * sizeof *v);
        ne = ulc_k_attr_ints(k, "ends", &v);
        if (ne < 0 || ne > r)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "attribute 'ends' is required (at most rank entries)");
        memcpy(en, v, (size_t)ne * sizeof *v);
        na = ulc_k_attr_ints(k, "axes", &v);
        if (na > r)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "attribute 'axes' has more entries than the rank");
        if (na > 0) memcpy(ax, v, (size_t)na * sizeof *v);
    } else {
        ULC_TRY(ulc_k_read_ints(k, 1, "starts", st, r, &ns));
        ULC_TRY(ulc_k_read_ints(k, 2, "ends", en, r, &ne));
        if (in_opt(k, 3)) ULC_TRY(ulc_k_read_ints(k, 3, "axes", ax, r, &na));
        if (in_opt(k, 4)) ULC_TRY(ulc_k_read_ints(k, 4, "steps", sp, r, &np));
    }
    if (na < 0) {
        na = ns;
        for (int i = 0; i < na; i++) ax[i] = i;
    }
    if (np < 0) {
        np = ns;
        for (int i = 0; i < np; i++) sp[i] = 1;
    }
    if (ne != ns || na != ns || np != ns)
        return ulc_k_fail(
            k, ULC_ERR_INVALID,
            "starts, ends, axes and steps have %d, %d, %d and %d entries; they must match", ns, ne,
            na, np);
    int axes[ULC_RT_MAX_RANK];
    ULC_TRY(ulc_k_norm_axes(k, ax, na, r, axes));
    for (int d = 0; d < r; d++) {
        first[d] = 0;
        step[d] = 1;
        count[d] = x->dims[d];
    }
    for (int i = 0; i < ns; i++) {
        int d = axes[i];
        int64_t dim = x->dims[d], s = st[i], e = en[i], p = sp[i];
        if (p == 0) return ulc_k_fail(k, ULC_ERR_INVALID, "step for axis %d is 0", d);
        if (s < 0) s += dim;
        if (e < 0) e += dim;
        int64_t n;
        if (p > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            n = e > s ? (e - s - 1) / p + 1 : 0;
        } else {
            s = s < 0 ? 0 : s;
            s = s > dim - 1 ? dim - 1 : s; /* an empty axis leaves s = -1: nothing taken */
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            /* in uint64: -p does not fit int64 when p is INT64_MIN */
            n = s > e ? (int64_t)((uint64_t)(s - e - 1) / (0 - (uint64_t)p)) + 1 : 0;
        }
        first[d] = n ? s : 0;
        step[d] = n > 1 ? p : 1; /* then |p| < dim, so stride·p fits; else p is never used */
        count[d] = n;
    }
    return ULC_OK;
}

static ulc_status slice_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    int64_t first[ULC_RT_MAX_RANK], step[ULC_RT_MAX_RANK], count[ULC_RT_MAX_RANK];
    ULC_TRY(ulc_sh_slice_params(k, first, step, count));
    ulc_k_set(k->out[0], k->in[0]->dtype, k->in[0]->rank, count);
    return ULC_OK;
}

static ulc_status gather_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    ULC_TRY(ulc_k_need_input(k, 1, "indices"));
    const ulc_rt_tensor *x = k->in[0], *idx = k->in[1];
    if (idx->dtype != ULC_DT_I64 && idx->dtype != ULC_DT_I32)
        return ulc_k_fail(k, ULC_ERR_INVALID, "indices must be int32 or int64, not %s",
                          ulc_dtype_name(idx->dtype));
    if (x->rank < 1) return ulc_k_fail(k, ULC_ERR_INVALID, "data must have rank >= 1");
    int axis;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), x->rank, &axis));
    int r = x->rank - 1 + idx->rank;
    if (r > ULC_RT_MAX_RANK)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "output rank %d exceeds %d", r, ULC_RT_MAX_RANK);
    int64_t dims[ULC_RT_MAX_RANK];
    int o = 0;
    for (int d = 0; d < axis; d++) dims[o++] = x->dims[d];
    for (int d = 0; d < idx->rank; d++) dims[o++] = idx->dims[d];
    for (int d = axis + 1; d < x->rank; d++) dims[o++] = x->dims[d];
    ulc_k_set(k->out[0], x->dtype, r, dims);
    return ULC_OK;
}

static ulc_status gather_el_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    ULC_TRY(ulc_k_need_input(k, 1, "indices"));
    const ulc_rt_tensor *x = k->in[0], *idx = k->in[1];
    char b1[96], b2[96];
    if (idx->dtype != ULC_DT_I64 && idx->dtype != ULC_DT_I32)
        return ulc_k_fail(k, ULC_ERR_INVALID, "indices must be int32 or int64, not %s",
                          ulc_dtype_name(idx->dtype));
    if (x->rank < 1 || idx->rank != x->rank)
        return ulc_k_fail(k, ULC_ERR_INVALID, "indices %s must have the rank of data %s (>= 1)",
                          shape_of(idx, b1, sizeof b1), shape_of(x, b2, sizeof b2));
    int axis;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), x->rank, &axis));
    ulc_k_set(k->out[0], x->dtype, idx->rank, idx->dims);
    return ULC_OK;
}

static ulc_status expand_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "input"));
    const ulc_rt_tensor *x = k->in[0];
    int64_t shape[ULC_RT_MAX_RANK], dims[ULC_RT_MAX_RANK];
    int n;
    ULC_TRY(ulc_k_read_ints(k, 1, "shape", shape, ULC_RT_MAX_RANK, &n));
    int r = n > x->rank ? n : x->rank;
    for (int d = 0; d < r; d++) {
        int xd = d - (r - x->rank), sd = d - (r - n);
        int64_t a = xd >= 0 ? x->dims[xd] : 1, b = sd >= 0 ? shape[sd] : 1;
        if (b < 0)
            return ulc_k_fail(k, ULC_ERR_INVALID, "shape has a negative dim %lld", (long long)b);
        if (a == b || b == 1)
            dims[d] = a;
        else if (a == 1)
            dims[d] = b;
        else {
            char b1[96], b2[96];
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "input %s does not broadcast to shape %s (dim %d: %lld vs %lld)",
                              shape_of(x, b1, sizeof b1), ulc_k_dims_str(n, shape, b2, sizeof b2), d,
                              (long long)a, (long long)b);
        }
    }
    ulc_k_set(k->out[0], x->dtype, r, dims);
    return ULC_OK;
}

static ulc_status tile_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "input"));
    const ulc_rt_tensor *x = k->in[0];
    int64_t rep[ULC_RT_MAX_RANK], dims[ULC_RT_MAX_RANK];
    int n;
    ULC_TRY(ulc_k_read_ints(k, 1, "repeats", rep, ULC_RT_MAX_RANK, &n));
    if (n != x->rank)
        return ulc_k_fail(k, ULC_ERR_INVALID, "repeats has %d entries for an input of rank %d", n,
                          x->rank);
    for (int d = 0; d < n; d++) {
        if (rep[d] < 0)
            return ulc_k_fail(k, ULC_ERR_INVALID, "repeats[%d] is negative (%lld)", d,
                              (long long)rep[d]);
        if (ulc_i64_mul(x->dims[d], rep[d], &dims[d]))
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "repeats[%d] = %lld takes axis %d of size %lld past int64", d,
                              (long long)rep[d], d, (long long)x->dims[d]);
    }
    ulc_k_set(k->out[0], x->dtype, n, dims);
    return ULC_OK;
}

static ulc_status trilu_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "input"));
    const ulc_rt_tensor *x = k->in[0];
    if (x->rank < 2)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input must have rank >= 2, not %d", x->rank);
    const ulc_rt_tensor *kt = in_opt(k, 1);
    if (kt && (ulc_rt_numel(kt) != 1 || !ulc_k_is_int(kt->dtype)))
        return ulc_k_fail(k, ULC_ERR_INVALID, "k must be an int64 scalar");
    ulc_k_set(k->out[0], x->dtype, x->rank, x->dims);
    return ULC_OK;
}

/* Begin/end pads per input axis, and the mode. */
ulc_status ulc_sh_check_indices(ulc_kctx *k, const ulc_rt_tensor *idx, const void *vals,
                                int64_t dim, int axis) {
    uint64_t n = ulc_rt_numel(idx);
    int64_t bad = 0;
    uint64_t at = 0;
    int found = 0;
    if (idx->dtype == ULC_DT_I64) {
        const int64_t *v = vals;
        for (uint64_t i = 0; i < n && !found; i++)
            if (v[i] < -dim || v[i] >= dim) found = 1, bad = v[i], at = i;
    } else {
        const int32_t *v = vals;
        for (uint64_t i = 0; i < n && !found; i++)
            if (v[i] < -dim || v[i] >= dim) found = 1, bad = v[i], at = i;
    }
    if (found)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "index %lld (at flat position %llu of indices) is out of range [-%lld, "
                          "%lld) for axis %d",
                          (long long)bad, (unsigned long long)at, (long long)dim, (long long)dim,
                          axis);
    return ULC_OK;
}

ulc_status ulc_sh_pad_params(ulc_kctx *k, int64_t *pb, int64_t *pe, int *mode) {
    const ulc_rt_tensor *x = k->in[0];
    int r = x->rank;
    const char *m = ulc_k_attr_str(k, "mode", "constant");
    if (!strcmp(m, "constant"))
        *mode = PAD_CONSTANT;
    else if (!strcmp(m, "reflect"))
        *mode = PAD_REFLECT;
    else if (!strcmp(m, "edge"))
        *mode = PAD_EDGE;
    else if (!strcmp(m, "wrap"))
        *mode = PAD_WRAP;
    else
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "mode '%s' is not supported (constant, reflect, edge, wrap)", m);
    int64_t pads[2 * ULC_RT_MAX_RANK], axv[ULC_RT_MAX_RANK];
    int np, na = -1;
    if (k->opset >= 11) {
        ULC_TRY(ulc_k_read_ints(k, 1, "pads", pads, 2 * ULC_RT_MAX_RANK, &np));
        if (k->opset >= 18 && in_opt(k, 3))
            ULC_TRY(ulc_k_read_ints(k, 3, "axes", axv, ULC_RT_MAX_RANK, &na));
    } else {
        const int64_t *v;
        np = ulc_k_attr_ints(k, k->opset < 2 ? "paddings" : "pads", &v);
        if (np < 0)
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute '%s' is required",
                              k->opset < 2 ? "paddings" : "pads");
        if (np > 2 * ULC_RT_MAX_RANK)
            return ulc_k_fail(k, ULC_ERR_INVALID, "too many pads (%d)", np);
        memcpy(pads, v, (size_t)np * sizeof *v);
    }
    if (na < 0) {
        na = r;
        for (int i = 0; i < r; i++) axv[i] = i;
    }
    if (np != 2 * na)
        return ulc_k_fail(k, ULC_ERR_INVALID, "pads has %d entries; %d axes need %d", np, na,
                          2 * na);
    int axes[ULC_RT_MAX_RANK];
    ULC_TRY(ulc_k_norm_axes(k, axv, na, r, axes));
    for (int d = 0; d < r; d++) pb[d] = pe[d] = 0;
    for (int i = 0; i < na; i++) {
        int d = axes[i];
        pb[d] = pads[i];
        pe[d] = pads[na + i];
        int64_t size; /* in pad_infer's order, so its sum cannot overflow either */
        if (__builtin_add_overflow(x->dims[d], pb[d], &size) ||
            __builtin_add_overflow(size, pe[d], &size) || size < 0)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "pads %lld/%lld take axis %d of size %lld below 0 or past int64",
                              (long long)pb[d], (long long)pe[d], d, (long long)x->dims[d]);
        if (pb[d] < -x->dims[d] || pe[d] < -x->dims[d]) /* keeps the kernels' i - pb in int64 */
            return ulc_k_fail(k, ULC_ERR_INVALID, "pads %lld/%lld crop more than axis %d's %lld",
                              (long long)pb[d], (long long)pe[d], d, (long long)x->dims[d]);
        if (*mode != PAD_CONSTANT && x->dims[d] == 0 && (pb[d] > 0 || pe[d] > 0))
            return ulc_k_fail(k, ULC_ERR_INVALID, "mode '%s' cannot pad the empty axis %d", m, d);
    }
    return ULC_OK;
}

static ulc_status pad_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "data"));
    const ulc_rt_tensor *x = k->in[0];
    int64_t pb[ULC_RT_MAX_RANK], pe[ULC_RT_MAX_RANK], dims[ULC_RT_MAX_RANK];
    int mode;
    ULC_TRY(ulc_sh_pad_params(k, pb, pe, &mode));
    for (int d = 0; d < x->rank; d++) dims[d] = x->dims[d] + pb[d] + pe[d];
    const ulc_rt_tensor *cv = k->opset >= 11 ? in_opt(k, 2) : NULL;
    if (cv && (cv->dtype != x->dtype || ulc_rt_numel(cv) != 1))
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "constant_value must be one element of the data's dtype %s",
                          ulc_dtype_name(x->dtype));
    ulc_k_set(k->out[0], x->dtype, x->rank, dims);
    return ULC_OK;
}

void ulc_shape_register_movement(ulc_shape_rule *t) {
    t[ULC_OP_Identity].infer = identity_infer;
    t[ULC_OP_Reshape].infer = reshape_infer;
    t[ULC_OP_Flatten].infer = flatten_infer;
    t[ULC_OP_Squeeze].infer = squeeze_infer;
    t[ULC_OP_Unsqueeze].infer = unsqueeze_infer;
    t[ULC_OP_Shape].infer = shape_infer;
    t[ULC_OP_Size].infer = size_infer;
    t[ULC_OP_Constant].infer = constant_infer;
    t[ULC_OP_ConstantOfShape].infer = cos_infer;
    t[ULC_OP_Range].infer = range_infer;
    t[ULC_OP_Dropout].infer = dropout_infer;
    t[ULC_OP_Transpose].infer = transpose_infer;
    t[ULC_OP_Concat].infer = concat_infer;
    t[ULC_OP_Split].infer = split_infer;
    t[ULC_OP_Slice].infer = slice_infer;
    t[ULC_OP_Gather].infer = gather_infer;
    t[ULC_OP_GatherElements].infer = gather_el_infer;
    t[ULC_OP_Expand].infer = expand_infer;
    t[ULC_OP_Tile].infer = tile_infer;
    t[ULC_OP_Trilu].infer = trilu_infer;
    t[ULC_OP_Pad].infer = pad_infer;
}
