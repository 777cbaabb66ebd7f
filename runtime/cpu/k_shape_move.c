/*
 * k_shape_move.c — the CPU backend's data-movement ops (ONNX default domain, opsets 1–21); the
 * family's views, metadata and constants are in k_shape.c. Every op is dtype-agnostic: it moves
 * elements of 1, 2, 4 or 8 bytes.
 *
 * Data movement (run copies; the generic engine is a strided copy with merged dims, below):
 *   Transpose  Y[i_0..i_{r-1}] = X[i at perm^-1], perm default reversed; contiguous-block and
 *              cache-blocked 2-D paths.
 *   Concat     Y = X_0 ‖ X_1 ‖ … along axis (zero-size inputs allowed).
 *   Split      X cut along axis into `split` sizes (input 1 from opset 13, else attribute),
 *              num_outputs chunks (opset 18, last smaller), or equal parts.
 *   Slice      Y = X[start:end:step] per axis (inputs 1..4 from opset 10, else attributes);
 *              negative starts/ends count from the end, both are clamped, steps may be negative.
 *   Gather     Y[a.., j.., b..] = X[a.., idx[j..], b..] along axis; negative indices count back.
 *   GatherElements  Y[i] = X[i with i_axis replaced by idx[i]]; Y has idx's shape.
 *   Expand     Y = X broadcast bidirectionally with `shape` (input 1).
 *   Tile       Y[i] = X[i mod d], dims d·repeats.
 *   Trilu      Y = X with elements below (upper=1: j − i < k) or above (upper=0: j − i > k) the
 *              k-th diagonal zeroed, over the last two dims; k from input 1 (default 0).
 *   Pad        Y = X padded by pads (begin…, end…) over `axes` (opset 18) in mode constant
 *              (constant_value, default 0), reflect (mirror without the edge), edge (repeat the
 *              edge) or wrap (periodic); negative pads crop.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/half.h"
#include "runtime/cpu/k_shape.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- the strided copy engine ----------------------------------------------------------------- */

/* dst[Σ i_d·os_d] = src[Σ i_d·is_d] over the index box `dims` (element strides; input strides
 * may be 0 for broadcast or negative for reversed slices). Used by Slice, Expand, Tile, Pad,
 * Transpose (contiguous-block case). */
typedef struct sc_plan {
    int rank;
    int64_t dims[SC_MAX_RANK];
    int64_t is[SC_MAX_RANK], os[SC_MAX_RANK];
    const char *src; /* element (0,…,0) */
    char *dst;
    size_t es;
} sc_plan;

/* Drops size-1 dims and merges neighbours that are contiguous in both src and dst, so that the
 * innermost loop is as long as possible (a contiguous slice becomes one memcpy per row). */
static void sc_simplify(sc_plan *p) { p->rank = ulc_k_merge_copy_dims(p->rank, p->dims, p->is, p->os); }

#define SC_ROW(T)                                                                                  \
    do {                                                                                           \
        const T *s_ = (const T *)src;                                                              \
        T *d_ = (T *)dst;                                                                          \
        for (int64_t j = 0; j < n; j++) d_[j * os] = s_[j * is];                                   \
    } while (0)

/* One innermost row: n elements, strides is/os (elements). */
static void sc_row(const char *src, char *dst, int64_t n, int64_t is, int64_t os, size_t es) {
    if (os == 1 && is == 1) {
        memcpy(dst, src, (size_t)n * es);
        return;
    }
    if (os == 1 && is == 0) {
        ulc_ks_fill_elems(dst, (uint64_t)n, src, es);
        return;
    }
    switch (es) {
    case 1: SC_ROW(uint8_t); break;
    case 2: SC_ROW(uint16_t); break;
    case 4: SC_ROW(uint32_t); break;
    default: SC_ROW(uint64_t); break;
    }
}

static void sc_body(int64_t r0, int64_t r1, void *arg) {
    const sc_plan *p = arg;
    int outer = p->rank - 1;
    int64_t idx[SC_MAX_RANK];
    int64_t so = 0, doff = 0, rem = r0;
    for (int d = outer - 1; d >= 0; d--) {
        idx[d] = rem % p->dims[d];
        rem /= p->dims[d];
        so += idx[d] * p->is[d];
        doff += idx[d] * p->os[d];
    }
    int64_t n = p->dims[outer], is = p->is[outer], os = p->os[outer];
    size_t es = p->es;
    for (int64_t row = r0; row < r1; row++) {
        sc_row(p->src + so * (int64_t)es, p->dst + doff * (int64_t)es, n, is, os, es);
        for (int d = outer - 1; d >= 0; d--) { /* odometer */
            so += p->is[d];
            doff += p->os[d];
            if (++idx[d] < p->dims[d]) break;
            so -= p->is[d] * p->dims[d];
            doff -= p->os[d] * p->dims[d];
            idx[d] = 0;
        }
    }
}

static void sc_run(sc_plan *p) {
    for (int d = 0; d < p->rank; d++)
        if (p->dims[d] == 0) return;
    sc_simplify(p);
    int64_t n = p->dims[p->rank - 1];
    int64_t rows = (int64_t)dims_numel(p->rank - 1, p->dims);
    int64_t row_bytes = n * (int64_t)p->es;
    int64_t grain = PAR_BYTES / (row_bytes > 0 ? row_bytes : 1);
    ulc_k_parallel(rows, grain < 1 ? 1 : grain, sc_body, p);
}

/* ---- Transpose ------------------------------------------------------------------------------- */

/* Blocked 2-D transposes: dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols. */
#define TR_TILE 32
#define TR_2D(NAME, T)                                                                             \
    static void NAME(const T *src, int64_t lds, T *dst, int64_t ldd, int64_t rows, int64_t cols) { \
        for (int64_t r0 = 0; r0 < rows; r0 += TR_TILE) {                                           \
            int64_t r1 = r0 + TR_TILE < rows ? r0 + TR_TILE : rows;                                \
            for (int64_t c0 = 0; c0 < cols; c0 += TR_TILE) {                                       \
                int64_t c1 = c0 + TR_TILE < cols ? c0 + TR_TILE : cols;                            \
                for (int64_t c = c0; c < c1; c++)                                                  \
                    for (int64_t r = r0; r < r1; r++) dst[c * ldd + r] = src[r * lds + c];         \
            }                                                                                      \
        }                                                                                          \
    }
TR_2D(tr2d_u8, uint8_t)
TR_2D(tr2d_u16, uint16_t)
TR_2D(tr2d_u64, uint64_t)

#if defined(__SSE2__)
/* 4-byte elements with SSE2 (baseline on x86-64): 4×4 register transposes inside 32×32 tiles. */
static void tr2d_u32(const uint32_t *src, int64_t lds, uint32_t *dst, int64_t ldd, int64_t rows,
                     int64_t cols) {
    for (int64_t r0 = 0; r0 < rows; r0 += TR_TILE) {
        int64_t r1 = r0 + TR_TILE < rows ? r0 + TR_TILE : rows;
        for (int64_t c0 = 0; c0 < cols; c0 += TR_TILE) {
            int64_t c1 = c0 + TR_TILE < cols ? c0 + TR_TILE : cols;
            int64_t r4 = r0 + ((r1 - r0) & ~(int64_t)3), c4 = c0 + ((c1 - c0) & ~(int64_t)3);
            for (int64_t r = r0; r < r4; r += 4) {
                for (int64_t c = c0; c < c4; c += 4) {
                    __m128 a = _mm_loadu_ps((const float *)(src + r * lds + c));
                    __m128 b = _mm_loadu_ps((const float *)(src + (r + 1) * lds + c));
                    __m128 e = _mm_loadu_ps((const float *)(src + (r + 2) * lds + c));
                    __m128 f = _mm_loadu_ps((const float *)(src + (r + 3) * lds + c));
                    _MM_TRANSPOSE4_PS(a, b, e, f);
                    _mm_storeu_ps((float *)(dst + c * ldd + r), a);
                    _mm_storeu_ps((float *)(dst + (c + 1) * ldd + r), b);
                    _mm_storeu_ps((float *)(dst + (c + 2) * ldd + r), e);
                    _mm_storeu_ps((float *)(dst + (c + 3) * ldd + r), f);
                }
                for (int64_t c = c4; c < c1; c++)
                    for (int64_t rr = r; rr < r + 4; rr++) dst[c * ldd + rr] = src[rr * lds + c];
            }
            for (int64_t c = c0; c < c1; c++)
                for (int64_t r = r4; r < r1; r++) dst[c * ldd + r] = src[r * lds + c];
        }
    }
}
#else
TR_2D(tr2d_u32, uint32_t)
#endif

/* A transpose whose innermost output axis is strided in the input: for every index of the
 * other axes ("outer"), a 2-D transpose of rows along output axis A (the output's innermost:
 * input stride sA, output stride 1) by columns along output axis Q (input stride 1, output
 * stride oQ). Work items are (outer index, band of TR_TILE rows). */
typedef struct tr_job {
    const sc_plan *p; /* simplified: dims, input strides `is` and output strides `os` */
    int a, q;         /* the two axes of the 2-D transposes */
    int64_t bands;    /* bands of rows per outer index */
} tr_job;

static void tr_body(int64_t i0, int64_t i1, void *arg) {
    const tr_job *j = arg;
    const sc_plan *p = j->p;
    int64_t nA = p->dims[j->a], nQ = p->dims[j->q], sA = p->is[j->a], oQ = p->os[j->q];
    size_t es = p->es;
    for (int64_t it = i0; it < i1; it++) {
        int64_t outer = it / j->bands, band = it % j->bands;
        int64_t so = 0, doff = 0, rem = outer;
        for (int d = p->rank - 1; d >= 0; d--) {
            if (d == j->a || d == j->q) continue;
            int64_t c = rem % p->dims[d];
            rem /= p->dims[d];
            so += c * p->is[d];
            doff += c * p->os[d];
        }
        int64_t r0 = band * TR_TILE, rows = nA - r0 < TR_TILE ? nA - r0 : TR_TILE;
        so += r0 * sA;
        doff += r0;
        const char *s = p->src + so * (int64_t)es;
        char *dd = p->dst + doff * (int64_t)es;
        switch (es) {
        case 1: tr2d_u8((const uint8_t *)s, sA, (uint8_t *)dd, oQ, rows, nQ); break;
        case 2: tr2d_u16((const uint16_t *)s, sA, (uint16_t *)dd, oQ, rows, nQ); break;
        case 4: tr2d_u32((const uint32_t *)s, sA, (uint32_t *)dd, oQ, rows, nQ); break;
        default: tr2d_u64((const uint64_t *)s, sA, (uint64_t *)dd, oQ, rows, nQ); break;
        }
    }
}

static ulc_status transpose_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    int perm[ULC_RT_MAX_RANK];
    ULC_TRY(ulc_sh_transpose_perm(k, x->rank, perm));
    size_t es = ulc_k_dtype_size(x->dtype);
    uint64_t n = ulc_rt_numel(x);
    if (!n) return ULC_OK;
    /* Output order: dims and input strides permuted, output dense. Simplifying drops size-1
     * axes and merges axes that stay neighbours (so [B,T,H,D]→[B,H,T,D] keeps 4 axes while
     * [N,C,1,1]→[N,1,1,C] becomes a copy). */
    sc_plan p = {.rank = x->rank, .src = x->data, .dst = y->data, .es = es};
    int64_t xs[ULC_RT_MAX_RANK];
    ulc_k_strides(x->rank, x->dims, xs);
    for (int i = 0; i < x->rank; i++) {
        p.dims[i] = x->dims[perm[i]];
        p.is[i] = xs[perm[i]];
    }
    ulc_k_strides(x->rank, p.dims, p.os);
    sc_simplify(&p);
    int last = p.rank - 1;
    if (p.is[last] == 1) { /* contiguous inner blocks: one memcpy per block */
        sc_run(&p);
        return ULC_OK;
    }
    int q = -1;
    for (int d = 0; d < p.rank; d++)
        if (p.is[d] == 1) q = d;
    ULC_ASSERT(q >= 0 && q != last);
    tr_job j = {.p = &p, .a = last, .q = q, .bands = (p.dims[last] + TR_TILE - 1) / TR_TILE};
    int64_t items = (int64_t)(n / (uint64_t)(p.dims[last] * p.dims[q])) * j.bands;
    int64_t per_item = TR_TILE * p.dims[q] * (int64_t)es;
    int64_t grain = PAR_BYTES / per_item;
    ulc_k_parallel(items, grain < 1 ? 1 : grain, tr_body, &j);
    return ULC_OK;
}

/* ---- Concat, Split --------------------------------------------------------------------------- */

/* Concat and Split move the same blocks: for each outer index (dims before axis), part i holds
 * a contiguous block of len[i] bytes, and the big tensor holds all parts' blocks in order. */
typedef struct cat_job {
    int n;
    char **parts;       /* n part pointers (NULL: skipped) */
    const int64_t *len; /* n block lengths in bytes */
    char *whole;
    int64_t row; /* bytes of one outer row of the whole */
    int split;   /* 0: parts → whole (Concat); 1: whole → parts (Split) */
} cat_job;

static void cat_body(int64_t o0, int64_t o1, void *arg) {
    const cat_job *j = arg;
    for (int64_t o = o0; o < o1; o++) {
        char *w = j->whole + o * j->row;
        for (int i = 0; i < j->n; i++) {
            int64_t l = j->len[i];
            if (j->parts[i] && l) {
                char *pp = j->parts[i] + o * l;
                if (j->split)
                    memcpy(pp, w, (size_t)l);
                else
                    memcpy(w, pp, (size_t)l);
            }
            w += l;
        }
    }
}

static void cat_move(cat_job *j, int64_t outer) {
    if (!j->row || !outer) return;
    int64_t grain = PAR_BYTES / j->row;
    ulc_k_parallel(outer, grain < 1 ? 1 : grain, cat_body, j);
}

static ulc_status concat_run(ulc_kctx *k) {
    ulc_rt_tensor *y = k->out[0];
    int axis;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 1), y->rank, &axis));
    if (k->n_in > CAT_MAX)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "%d inputs exceed %d", k->n_in, CAT_MAX);
    size_t es = ulc_k_dtype_size(y->dtype);
    int64_t inner = (int64_t)dims_numel(y->rank - axis - 1, y->dims + axis + 1) * (int64_t)es;
    char *parts[CAT_MAX];
    int64_t len[CAT_MAX];
    for (int i = 0; i < k->n_in; i++) {
        parts[i] = k->in[i] ? k->in[i]->data : NULL;
        len[i] = k->in[i] ? k->in[i]->dims[axis] * inner : 0;
    }
    cat_job j = {.n = k->n_in,
                 .parts = parts,
                 .len = len,
                 .whole = y->data,
                 .row = y->dims[axis] * inner,
                 .split = 0};
    cat_move(&j, (int64_t)dims_numel(axis, y->dims));
    return ULC_OK;
}

static ulc_status split_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    int64_t sizes[CAT_MAX];
    int axis;
    ULC_TRY(ulc_sh_split_sizes(k, &axis, sizes));
    size_t es = ulc_k_dtype_size(x->dtype);
    int64_t inner = (int64_t)dims_numel(x->rank - axis - 1, x->dims + axis + 1) * (int64_t)es;
    char *parts[CAT_MAX];
    for (int i = 0; i < k->n_out; i++) {
        parts[i] = k->out[i] ? k->out[i]->data : NULL;
        sizes[i] *= inner;
    }
    cat_job j = {.n = k->n_out,
                 .parts = parts,
                 .len = sizes,
                 .whole = x->data,
                 .row = x->dims[axis] * inner,
                 .split = 1};
    cat_move(&j, (int64_t)dims_numel(axis, x->dims));
    return ULC_OK;
}

/* ---- Slice ----------------------------------------------------------------------------------- */

static ulc_status slice_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    int64_t first[ULC_RT_MAX_RANK], step[ULC_RT_MAX_RANK], count[ULC_RT_MAX_RANK];
    ULC_TRY(ulc_sh_slice_params(k, first, step, count));
    if (!ulc_rt_numel(y)) return ULC_OK;
    size_t es = ulc_k_dtype_size(x->dtype);
    int64_t xs[ULC_RT_MAX_RANK], off = 0;
    ulc_k_strides(x->rank, x->dims, xs);
    sc_plan p = {.rank = x->rank, .dst = y->data, .es = es};
    for (int d = 0; d < x->rank; d++) {
        off += first[d] * xs[d];
        p.dims[d] = count[d];
        p.is[d] = xs[d] * step[d];
    }
    ulc_k_strides(x->rank, count, p.os);
    p.src = (const char *)x->data + off * (int64_t)es;
    sc_run(&p);
    return ULC_OK;
}

/* ---- Gather, GatherElements ------------------------------------------------------------------ */

typedef struct gather_job {
    const char *src;
    char *dst;
    const ulc_rt_tensor *idx;
    int64_t n_idx, dim, block; /* indices count, axis size, bytes per copied block */
} gather_job;

static void gather_body(int64_t i0, int64_t i1, void *arg) {
    const gather_job *j = arg;
    const int64_t *i64 = j->idx->dtype == ULC_DT_I64 ? j->idx->data : NULL;
    const int32_t *i32 = j->idx->data;
    int64_t blk = j->block;
    for (int64_t it = i0; it < i1; it++) {
        int64_t o = it / j->n_idx, t = it % j->n_idx;
        int64_t v = i64 ? i64[t] : i32[t];
        if (v < 0) v += j->dim;
        memcpy(j->dst + it * blk, j->src + (o * j->dim + v) * blk, (size_t)blk);
    }
}

static ulc_status gather_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0], *idx = k->in[1];
    int axis;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), x->rank, &axis));
    ULC_TRY(ulc_sh_check_indices(k, idx, idx->data, x->dims[axis], axis)); /* before any copy */
    size_t es = ulc_k_dtype_size(x->dtype);
    gather_job j = {.src = x->data,
                    .dst = k->out[0]->data,
                    .idx = idx,
                    .n_idx = (int64_t)ulc_rt_numel(idx),
                    .dim = x->dims[axis],
                    .block =
                        (int64_t)dims_numel(x->rank - axis - 1, x->dims + axis + 1) * (int64_t)es};
    int64_t outer = (int64_t)dims_numel(axis, x->dims), items = outer * j.n_idx;
    if (!items || !j.block) return ULC_OK;
    int64_t grain = PAR_BYTES / j.block;
    ulc_k_parallel(items, grain < 1 ? 1 : grain, gather_body, &j);
    return ULC_OK;
}

#define GE_LOOP(T)                                                                                 \
    do {                                                                                           \
        const T *s_ = x->data;                                                                     \
        T *d_ = y->data;                                                                           \
        for (uint64_t i = 0; i < n; i++) {                                                         \
            int64_t v = i64 ? i64[i] : i32[i], src = 0, rem = (int64_t)i;                          \
            if (v < 0) v += dim;                                                                   \
            for (int d = r - 1; d >= 0; d--) {                                                     \
                int64_t c = rem % idx->dims[d];                                                    \
                rem /= idx->dims[d];                                                               \
                src += (d == axis ? v : c) * xs[d];                                                \
            }                                                                                      \
            d_[i] = s_[src];                                                                       \
        }                                                                                          \
    } while (0)

static ulc_status gather_el_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0], *idx = k->in[1];
    ulc_rt_tensor *y = k->out[0];
    int axis, r = x->rank;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), r, &axis));
    int64_t dim = x->dims[axis];
    ULC_TRY(ulc_sh_check_indices(k, idx, idx->data, dim, axis));
    for (int d = 0; d < r; d++)
        if (d != axis && idx->dims[d] > x->dims[d]) {
            char b1[96], b2[96];
            return ulc_k_fail(k, ULC_ERR_INVALID, "indices %s exceed data %s on axis %d",
                              shape_of(idx, b1, sizeof b1), shape_of(x, b2, sizeof b2), d);
        }
    int64_t xs[ULC_RT_MAX_RANK];
    ulc_k_strides(r, x->dims, xs);
    const int64_t *i64 = idx->dtype == ULC_DT_I64 ? idx->data : NULL;
    const int32_t *i32 = idx->data;
    uint64_t n = ulc_rt_numel(idx);
    switch (ulc_k_dtype_size(x->dtype)) {
    case 1: GE_LOOP(uint8_t); break;
    case 2: GE_LOOP(uint16_t); break;
    case 4: GE_LOOP(uint32_t); break;
    default: GE_LOOP(uint64_t); break;
    }
    return ULC_OK;
}

/* ---- Expand, Tile ---------------------------------------------------------------------------- */

static ulc_status expand_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    sc_plan p = {.rank = y->rank, .src = x->data, .dst = y->data, .es = ulc_k_dtype_size(x->dtype)};
    memcpy(p.dims, y->dims, (size_t)y->rank * sizeof *p.dims);
    ulc_k_bcast_strides(x, y->rank, y->dims, p.is);
    ulc_k_strides(y->rank, y->dims, p.os);
    sc_run(&p);
    return ULC_OK;
}

static ulc_status tile_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    /* Y viewed as [rep_0, d_0, rep_1, d_1, …]: the repeat axes read with stride 0. */
    int r = x->rank;
    int64_t xs[ULC_RT_MAX_RANK];
    ulc_k_strides(r, x->dims, xs);
    sc_plan p = {.rank = 2 * r, .src = x->data, .dst = y->data, .es = ulc_k_dtype_size(x->dtype)};
    for (int d = 0; d < r; d++) {
        p.dims[2 * d] = x->dims[d] ? y->dims[d] / x->dims[d] : 0;
        p.dims[2 * d + 1] = x->dims[d];
        p.is[2 * d] = 0;
        p.is[2 * d + 1] = xs[d];
    }
    ulc_k_strides(2 * r, p.dims, p.os);
    sc_run(&p);
    return ULC_OK;
}

/* ---- Trilu ----------------------------------------------------------------------------------- */

static ulc_status trilu_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    int64_t rows = x->dims[x->rank - 2], cols = x->dims[x->rank - 1];
    int64_t kk = in_opt(k, 1) ? ulc_k_int_at(k->in[1], 0) : 0;
    int upper = ulc_k_attr_int(k, "upper", 1) != 0;
    if (kk > rows + cols) kk = rows + cols; /* beyond the matrix: keeps i + k from overflowing */
    if (kk < -(rows + cols)) kk = -(rows + cols);
    size_t es = ulc_k_dtype_size(x->dtype);
    int64_t mats = (int64_t)dims_numel(x->rank - 2, x->dims);
    const char *src = x->data;
    char *dst = y->data;
    for (int64_t m = 0; m < mats * rows; m++) {
        int64_t i = m % rows;
        const char *s = src + m * cols * (int64_t)es;
        char *d = dst + m * cols * (int64_t)es;
        /* upper keeps columns j >= i + k; lower keeps j <= i + k */
        int64_t cut = upper ? i + kk : i + kk + 1;
        cut = cut < 0 ? 0 : cut > cols ? cols : cut;
        if (upper) {
            memset(d, 0, (size_t)(cut * (int64_t)es));
            if (d != s)
                memmove(d + cut * (int64_t)es, s + cut * (int64_t)es,
                        (size_t)((cols - cut) * (int64_t)es));
        } else {
            if (d != s) memmove(d, s, (size_t)(cut * (int64_t)es));
            memset(d + cut * (int64_t)es, 0, (size_t)((cols - cut) * (int64_t)es));
        }
    }
    return ULC_OK;
}

/* ---- Pad ------------------------------------------------------------------------------------- */

static ulc_status pad_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    int64_t pb[ULC_RT_MAX_RANK], pe[ULC_RT_MAX_RANK];
    int mode, r = x->rank;
    ULC_TRY(ulc_sh_pad_params(k, pb, pe, &mode));
    size_t es = ulc_k_dtype_size(x->dtype);
    uint64_t total = ulc_rt_numel(y);
    if (!total) return ULC_OK;
    uint8_t value[8] = {0};
    const ulc_rt_tensor *cv = k->opset >= 11 ? in_opt(k, 2) : NULL;
    if (cv && cv->data) {
        memcpy(value, cv->data, es);
    } else if (k->opset < 11) {
        ulc_rt_tensor tmp = {.dtype = x->dtype, .data = value};
        ulc_k_store_f64(&tmp, 0, ulc_k_attr_float(k, "value", 0.0f));
    }
    if (r == 0) {
        memcpy(y->data, x->data, es);
        return ULC_OK;
    }
    if (mode == PAD_CONSTANT || ulc_rt_numel(x) == 0) {
        /* fill, then copy the part of X that lands inside Y */
        ulc_ks_fill_elems(y->data, total, value, es);
        int64_t xs[ULC_RT_MAX_RANK], ys[ULC_RT_MAX_RANK];
        ulc_k_strides(r, x->dims, xs);
        ulc_k_strides(r, y->dims, ys);
        sc_plan p = {.rank = r, .es = es};
        int64_t so = 0, doff = 0;
        for (int d = 0; d < r; d++) {
            int64_t lo = pb[d] < 0 ? -pb[d] : 0;               /* first source index kept */
            int64_t hi = x->dims[d] + (pe[d] < 0 ? pe[d] : 0); /* one past the last */
            p.dims[d] = hi > lo ? hi - lo : 0;
            so += lo * xs[d];
            doff += (pb[d] > 0 ? pb[d] : 0) * ys[d];
            p.is[d] = xs[d];
            p.os[d] = ys[d];
        }
        p.src = (const char *)x->data + so * (int64_t)es;
        p.dst = (char *)y->data + doff * (int64_t)es;
        sc_run(&p);
        return ULC_OK;
    }
    /* reflect / edge / wrap: every output row maps each outer coordinate to a source index;
     * the innermost axis copies the in-range middle in one memcpy and the borders one by one. */
    int64_t xs[ULC_RT_MAX_RANK];
    ulc_k_strides(r, x->dims, xs);
    int64_t cols = y->dims[r - 1], n_last = x->dims[r - 1];
    int64_t rows = (int64_t)(total / (uint64_t)cols);
    int64_t idx[ULC_RT_MAX_RANK] = {0};
    const char *src = x->data;
    char *dst = y->data;
    int64_t m0 = pb[r - 1] > 0 ? pb[r - 1] : 0;                         /* middle: output columns */
    int64_t m1 = pb[r - 1] + n_last < cols ? pb[r - 1] + n_last : cols; /* mapping in range */
    for (int64_t row = 0; row < rows; row++) {
        int64_t so = 0;
        for (int d = 0; d < r - 1; d++)
            so += ulc_sh_pad_src(idx[d] - pb[d], x->dims[d], mode) * xs[d];
        const char *s = src + so * (int64_t)es;
        char *o = dst + row * cols * (int64_t)es;
        for (int64_t c = 0; c < m0; c++)
            memcpy(o + c * (int64_t)es,
                   s + ulc_sh_pad_src(c - pb[r - 1], n_last, mode) * (int64_t)es, es);
        if (m1 > m0)
            memcpy(o + m0 * (int64_t)es, s + (m0 - pb[r - 1]) * (int64_t)es,
                   (size_t)(m1 - m0) * es);
        for (int64_t c = m1 > m0 ? m1 : m0; c < cols; c++)
            memcpy(o + c * (int64_t)es,
                   s + ulc_sh_pad_src(c - pb[r - 1], n_last, mode) * (int64_t)es, es);
        for (int d = r - 2; d >= 0; d--) {
            if (++idx[d] < y->dims[d]) break;
            idx[d] = 0;
        }
    }
    return ULC_OK;
}

/* ---- the table ------------------------------------------------------------------------------- */

static const ulc_kernel k_transpose = {.run = transpose_run};
static const ulc_kernel k_concat = {.run = concat_run};
static const ulc_kernel k_split = {.run = split_run};
static const ulc_kernel k_slice = {.run = slice_run};
static const ulc_kernel k_gather = {.run = gather_run};
static const ulc_kernel k_gather_el = {.run = gather_el_run};
static const ulc_kernel k_expand = {.run = expand_run};
static const ulc_kernel k_tile = {.run = tile_run};
static const ulc_kernel k_trilu = {.run = trilu_run};
static const ulc_kernel k_pad = {.run = pad_run};

void ulc_cpu_register_shape_move(const ulc_kernel **table) {
    table[ULC_OP_Transpose] = &k_transpose;
    table[ULC_OP_Concat] = &k_concat;
    table[ULC_OP_Split] = &k_split;
    table[ULC_OP_Slice] = &k_slice;
    table[ULC_OP_Gather] = &k_gather;
    table[ULC_OP_GatherElements] = &k_gather_el;
    table[ULC_OP_Expand] = &k_expand;
    table[ULC_OP_Tile] = &k_tile;
    table[ULC_OP_Trilu] = &k_trilu;
    table[ULC_OP_Pad] = &k_pad;
}
