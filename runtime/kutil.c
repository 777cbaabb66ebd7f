/* kutil.c — helpers shared by every backend's kernels: attributes, axes, broadcasting, typed
 * element access, a parallel-for over the OpenMP pool. */
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "runtime/kutil.h"

#ifdef _OPENMP
#include <omp.h>
#endif

ulc_status ulc_k_fail(ulc_kctx *k, ulc_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char label[160];
    return ulc_fail(k->err, s, "%s: %s", ulc_node_label(k->node, label, sizeof label), msg);
}

const ulc_attr *ulc_k_attr(const ulc_kctx *k, const char *name) {
    return ulc_node_attr(k->node, name);
}

int64_t ulc_k_attr_int(const ulc_kctx *k, const char *name, int64_t def) {
    const ulc_attr *a = ulc_node_attr(k->node, name);
    return a && a->type == ULC_ATTR_INT ? a->i : def;
}

float ulc_k_attr_float(const ulc_kctx *k, const char *name, float def) {
    const ulc_attr *a = ulc_node_attr(k->node, name);
    return a && a->type == ULC_ATTR_FLOAT ? a->f : def;
}

const char *ulc_k_attr_str(const ulc_kctx *k, const char *name, const char *def) {
    const ulc_attr *a = ulc_node_attr(k->node, name);
    return a && a->type == ULC_ATTR_STRING && a->s.data ? (const char *)a->s.data : def;
}

int ulc_k_attr_ints(const ulc_kctx *k, const char *name, const int64_t **v) {
    const ulc_attr *a = ulc_node_attr(k->node, name);
    if (!a || a->type != ULC_ATTR_INTS) {
        *v = NULL;
        return -1;
    }
    *v = a->ints;
    return (int)a->n;
}

ulc_status ulc_k_axis(ulc_kctx *k, int64_t axis, int rank, int *out) {
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= (rank > 0 ? rank : 1))
        return ulc_k_fail(k, ULC_ERR_INVALID, "axis %lld is out of range for rank %d",
                          (long long)axis, rank);
    *out = (int)a;
    return ULC_OK;
}

int64_t ulc_k_int_at(const ulc_rt_tensor *t, uint64_t i) {
    const void *d = ulc_k_host_bytes(t); /* a device plan's constant: its host bytes */
    switch (t->dtype) {
    case ULC_DT_I64: return ((const int64_t *)d)[i];
    case ULC_DT_I32: return ((const int32_t *)d)[i];
    case ULC_DT_I16: return ((const int16_t *)d)[i];
    case ULC_DT_I8: return ((const int8_t *)d)[i];
    case ULC_DT_U64: return (int64_t)((const uint64_t *)d)[i];
    case ULC_DT_U32: return ((const uint32_t *)d)[i];
    case ULC_DT_U16: return ((const uint16_t *)d)[i];
    case ULC_DT_U8:
    case ULC_DT_BOOL: return ((const uint8_t *)d)[i];
    case ULC_DT_F32:
    case ULC_DT_F64: {
        int64_t v;
        ulc_f64_to_i64(t->dtype == ULC_DT_F32 ? ((const float *)d)[i]
                                              : ((const double *)d)[i], &v);
        return v;
    }
    default: return 0;
    }
}

double ulc_k_f64_at(const ulc_rt_tensor *t, uint64_t i) {
    const void *d = ulc_k_host_bytes(t);
    switch (t->dtype) {
    case ULC_DT_F32: return ((const float *)d)[i];
    case ULC_DT_F64: return ((const double *)d)[i];
    case ULC_DT_U64: return (double)((const uint64_t *)d)[i];
    default: return (double)ulc_k_int_at(t, i);
    }
}

void ulc_k_store_f64(ulc_rt_tensor *t, uint64_t i, double v) {
    int64_t w; /* v truncated and saturated; narrower integers wrap from it */
    ulc_f64_to_i64(v, &w);
    switch (t->dtype) {
    case ULC_DT_F32: ((float *)t->data)[i] = (float)v; break;
    case ULC_DT_F64: ((double *)t->data)[i] = v; break;
    case ULC_DT_I64: ((int64_t *)t->data)[i] = w; break;
    case ULC_DT_I32: ((int32_t *)t->data)[i] = (int32_t)(uint32_t)(uint64_t)w; break;
    case ULC_DT_I16: ((int16_t *)t->data)[i] = (int16_t)(uint16_t)(uint64_t)w; break;
    case ULC_DT_I8: ((int8_t *)t->data)[i] = (int8_t)(uint8_t)(uint64_t)w; break;
    case ULC_DT_U64:
        ((uint64_t *)t->data)[i] = v >= 9223372036854775808.0 /* 2^63 */
                                       ? (v < 18446744073709551616.0 ? (uint64_t)v : UINT64_MAX)
                                       : (uint64_t)w;
        break;
    case ULC_DT_U32: ((uint32_t *)t->data)[i] = (uint32_t)(uint64_t)w; break;
    case ULC_DT_U16: ((uint16_t *)t->data)[i] = (uint16_t)(uint64_t)w; break;
    case ULC_DT_U8: ((uint8_t *)t->data)[i] = (uint8_t)(uint64_t)w; break;
    case ULC_DT_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
    default: break;
    }
}

size_t ulc_k_dtype_size(int dt) {
    switch (dt) {
    case ULC_DT_F64:
    case ULC_DT_I64:
    case ULC_DT_U64: return 8;
    case ULC_DT_F32:
    case ULC_DT_F16:
    case ULC_DT_BF16:
    case ULC_DT_I32:
    case ULC_DT_U32: return 4;
    case ULC_DT_I16:
    case ULC_DT_U16: return 2;
    case ULC_DT_I8:
    case ULC_DT_U8:
    case ULC_DT_BOOL: return 1;
    default: return 0;
    }
}

int ulc_k_is_int(int dt) {
    switch (dt) {
    case ULC_DT_I8: case ULC_DT_I16: case ULC_DT_I32: case ULC_DT_I64:
    case ULC_DT_U8: case ULC_DT_U16: case ULC_DT_U32: case ULC_DT_U64: return 1;
    default: return 0;
    }
}

int ulc_k_is_float(int dt) { return dt == ULC_DT_F32 || dt == ULC_DT_F64; }

void ulc_k_set(ulc_rt_tensor *t, int dtype, int rank, const int64_t *dims) {
    t->dtype = dtype;
    t->rank = rank;
    for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
}

/* ---- checked arithmetic (kutil.h) ------------------------------------------------------------ */

int ulc_k_numel(int rank, const int64_t *dims, int64_t *r) {
    int64_t cap = 1; /* the product of the non-zero dims */
    int zero = 0;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) return 0;
        if (dims[i] == 0) {
            zero = 1;
            continue;
        }
        if (dims[i] > ULC_RT_MAX_NUMEL / cap) return 0;
        cap *= dims[i];
    }
    *r = zero ? 0 : cap;
    return 1;
}

int ulc_k_dims_ok(int rank, const int64_t *dims) {
    int64_t n;
    return ulc_k_numel(rank, dims, &n);
}

int ulc_f64_to_i64(double v, int64_t *r) {
    /* [-2^63, 2^63) is exactly int64's range after truncation; both bounds are doubles */
    if (v >= -9223372036854775808.0 && v < 9223372036854775808.0) {
        *r = (int64_t)v;
        return 1;
    }
    *r = v != v ? 0 : v < 0 ? INT64_MIN : INT64_MAX;
    return 0;
}

ulc_status ulc_k_broadcast(ulc_kctx *k, const ulc_rt_tensor *const *ts, int n, ulc_rt_tensor *out) {
    int rank = 0;
    for (int i = 0; i < n; i++)
        if (ts[i] && ts[i]->rank > rank) rank = ts[i]->rank;
    int64_t dims[ULC_RT_MAX_RANK];
    for (int d = 0; d < rank; d++) dims[d] = 1;
    for (int i = 0; i < n; i++) {
        const ulc_rt_tensor *t = ts[i];
        if (!t) continue;
        for (int d = 0; d < t->rank; d++) {
            int od = rank - t->rank + d;
            int64_t a = dims[od], b = t->dims[d];
            if (a == b || b == 1) continue;
            if (a == 1) {
                dims[od] = b;
                continue;
            }
            char s1[96], s2[96];
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "input %d %s does not broadcast with the other inputs (dim %d: %lld vs %lld; first input %s)",
                              i, ulc_rt_shape_str(t, s1, sizeof s1), od, (long long)b, (long long)a,
                              ulc_rt_shape_str(ts[0], s2, sizeof s2));
        }
    }
    out->rank = rank;
    for (int d = 0; d < rank; d++) out->dims[d] = dims[d];
    return ULC_OK;
}

void ulc_k_strides(int rank, const int64_t *dims, int64_t *strides) {
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; d--) {
        strides[d] = s;
        s *= dims[d];
    }
}

void ulc_k_bcast_strides(const ulc_rt_tensor *t, int rank, const int64_t *dims, int64_t *strides) {
    int64_t own[ULC_RT_MAX_RANK];
    ulc_k_strides(t->rank, t->dims, own);
    for (int d = 0; d < rank; d++) {
        int td = d - (rank - t->rank);
        strides[d] = (td < 0 || t->dims[td] == 1 || dims[d] == 1) ? 0 : own[td];
    }
}

int ulc_k_bcast_collapse(const ulc_rt_tensor *out, const ulc_rt_tensor *const *ops, int nops,
                         int64_t *dims, int64_t (*st)[ULC_RT_MAX_RANK]) {
    /* in place: the collapsed entry r never lies past the dim d being read */
    for (int k = 0; k < nops; k++) ulc_k_bcast_strides(ops[k], out->rank, out->dims, st[k]);
    int r = 0;
    for (int d = 0; d < out->rank; d++) {
        int64_t n = out->dims[d];
        if (n == 1) continue;
        int merge = r > 0;
        for (int k = 0; k < nops && merge; k++) merge = st[k][r - 1] == st[k][d] * n;
        if (merge) {
            dims[r - 1] *= n;
            for (int k = 0; k < nops; k++) st[k][r - 1] = st[k][d];
            continue;
        }
        dims[r] = n;
        for (int k = 0; k < nops; k++) st[k][r] = st[k][d];
        r++;
    }
    for (int d = r; d < ULC_RT_MAX_RANK; d++) {
        dims[d] = 0;
        for (int k = 0; k < nops; k++) st[k][d] = 0;
    }
    return r;
}

int ulc_k_merge_copy_dims(int rank, int64_t *dims, int64_t *is, int64_t *os) {
    int r = 0;
    for (int d = 0; d < rank; d++) {
        if (dims[d] == 1) continue;
        if (r > 0 && is[r - 1] == is[d] * dims[d] && os[r - 1] == os[d] * dims[d]) {
            dims[r - 1] *= dims[d];
            is[r - 1] = is[d];
            os[r - 1] = os[d];
            continue;
        }
        dims[r] = dims[d];
        is[r] = is[d];
        os[r] = os[d];
        r++;
    }
    if (r == 0) { /* one element */
        dims[0] = 1;
        is[0] = os[0] = 1;
        r = 1;
    }
    return r;
}

void ulc_k_parallel(int64_t n, int64_t grain, void (*body)(int64_t, int64_t, void *), void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
#ifdef _OPENMP
    int nt = omp_get_max_threads();
    int64_t chunks = n / grain;
    if (chunks > nt) chunks = nt;
    if (chunks > 1) {
#pragma omp parallel num_threads((int)chunks)
        {
            int t = omp_get_thread_num();
            int64_t i0 = n * t / chunks, i1 = n * (t + 1) / chunks;
            body(i0, i1, arg);
        }
        return;
    }
#endif
    body(0, n, arg);
}

int ulc_k_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    static int cached = -1; /* benign race: every thread computes the same value */
    if (cached < 0) {
        const char *e = getenv("ULC_NO_SIMD");
        int off = e && *e && strcmp(e, "0") != 0;
        cached = !off && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return 0;
#endif
}

int ulc_k_avx512(void) {
#if defined(__x86_64__)
    static int cached = -1; /* benign race: every thread computes the same value */
    if (cached < 0) {
        const char *e = getenv("ULC_NO_AVX512");
        int off = e && *e && strcmp(e, "0") != 0;
        /* libgcc's check includes the OS's XSAVE support of the zmm state */
        cached = !off && ulc_k_avx2() && __builtin_cpu_supports("avx512f");
    }
    return cached;
#else
    return 0;
#endif
}

/* ---- inputs of shape-like ops (shapes, axes, starts…) --------------------------------------- */

static const ulc_rt_tensor *in_opt(const ulc_kctx *k, int i) {
    return i < k->n_in ? k->in[i] : NULL;
}

/* "[2,3,4]" for a dims list (messages). */
const char *ulc_k_dims_str(int rank, const int64_t *dims, char *buf, size_t size) {
    size_t o = 0;
    buf[0] = 0;
    o += (size_t)snprintf(buf + o, size - o, "[");
    for (int i = 0; i < rank && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (o < size) snprintf(buf + o, size - o, "]");
    return buf;
}

ulc_status ulc_k_need_input(ulc_kctx *k, int i, const char *what) {
    if (in_opt(k, i)) return ULC_OK;
    return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is required", i, what);
}

/* Reads a 0-D or 1-D integer tensor input (a shape, axes, starts...) into v[0..*n). */
ulc_status ulc_k_read_ints(ulc_kctx *k, int slot, const char *what, int64_t *v, int max, int *n) {
    const ulc_rt_tensor *t = in_opt(k, slot);
    char b[96];
    if (!t) return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) is required", slot, what);
    if (!ulc_k_is_int(t->dtype))
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) must be int64 or int32, got %s", slot,
                          what, ulc_rt_shape_str(t, b, sizeof b));
    if (t->rank > 1)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input %d (%s) must be 1-D, got %s", slot, what,
                          ulc_rt_shape_str(t, b, sizeof b));
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
ulc_status ulc_k_norm_axes(ulc_kctx *k, const int64_t *axes, int n, int rank, int *out) {
    for (int i = 0; i < n; i++) {
        ULC_TRY(ulc_k_axis(k, axes[i], rank, &out[i]));
        for (int j = 0; j < i; j++)
            if (out[j] == out[i])
                return ulc_k_fail(k, ULC_ERR_INVALID, "axis %lld is repeated in axes",
                                  (long long)axes[i]);
    }
    return ULC_OK;
}
