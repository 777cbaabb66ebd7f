/*
 * k_movement.cu — the CUDA backend's shape and data-movement ops: what runtime/cpu/k_shape.c and
 * k_shape_move.c compute on the host (those files state each op's semantics), on the device.
 * Every op here is dtype-agnostic: it moves elements of 1, 2, 4 or 8 bytes (bool is 1 byte), so
 * every runtime dtype is accepted; a dtype of another size is refused in prepare.
 *
 *   views      Identity, Reshape, Flatten, Squeeze, Unsqueeze: the planner points output 0 at
 *              input 0 (runtime/shape.h, ULC_SHAPE_ALIAS) and never runs them; run copies on the
 *              stream only if the bytes are not already the same (the CPU's ulc_ks_run_copy).
 *   Dropout    inference (training_mode absent, false, or ratio 0): Y = X copied (Dropout is not
 *              a view in the shape table), mask (optional) all true; training_mode and ratio
 *              must then be plan constants.
 *   ConstantOfShape, Range   fills from the host values (they are plan constants: the planner
 *              folds them on the host whenever it can, which is always today; the kernels are
 *              here for completeness).
 *   strided copies (Slice, Expand, Tile, Transpose with a contiguous innermost block): one
 *              grid-stride kernel over the output's index box, dims merged as the CPU's sc_plan,
 *              elements widened to 16/8/4/2-byte words when the innermost run allows it.
 *   Transpose  otherwise: 32×32 tiles through shared memory (reads along the input's contiguous
 *              axis, writes along the output's), the other axes as an outer index.
 *   Concat / Split   one launch per 32 parts (a table of parts passed by value, blockIdx.y the
 *              part), each part's [outer, block] moved in the widest word its bytes allow.
 *   Gather     rows of the inner block in the widest word; indices int32/int64, negative counted
 *              back. Plan-constant indices are checked in prepare (the CPU's message); indices
 *              computed at run time cannot be reported without a sync: an out-of-range one
 *              produces zeros for its rows (GatherElements: its element).
 *   GatherElements, Pad (constant/reflect/edge/wrap, negative pads crop), Trilu: one thread per
 *              output element.
 *
 * Plan constants that decide parameters (Slice's starts, Pad's pads, Split's sizes ...) are read
 * at in[i]->host in prepare, through the same decoders as the shape rules (shape/params.h).
 * Values that only enter the computation (Pad's constant_value, Trilu's k) are read at host when
 * they are constants, else by the kernel from device memory.
 */
#include <string.h>

#include "runtime/cuda/cu.h"

extern "C" {
#include "common/half.h"
#include "runtime/shape/params.h"
}

UCU_BEGIN

#define MV_MAX_RANK (2 * ULC_RT_MAX_RANK) /* Tile doubles the rank it copies over */
#define MV_TILE 32
#define MV_TILE_ROWS 8
#define MV_CAT_BATCH 32 /* Concat/Split parts per launch */

/* ---- host helpers ---------------------------------------------------------------------------- */

/* Bytes per element of dt, or an error naming the node for a dtype the backend cannot move. */
static ulc_status mv_es(ulc_kctx *k, int dt, size_t *es) {
    size_t s = ulc_k_dtype_size(dt);
    if (s != 1 && s != 2 && s != 4 && s != 8) return ucu_refuse_dtype(k, dt);
    *es = s;
    return ULC_OK;
}

/* A copy of k whose inputs read their host bytes (plan constants) as `data`, and NULL where there
 * are none (device values): so the shape rules' decoders, which read data, see host memory. */
#define MV_VIEW_IN 8
typedef struct mv_hview {
    ulc_kctx k;
    ulc_rt_tensor t[MV_VIEW_IN];
    ulc_rt_tensor *p[MV_VIEW_IN];
} mv_hview;

static ulc_kctx *mv_host_view(ulc_kctx *k, mv_hview *h) {
    h->k = *k;
    int n = k->n_in < MV_VIEW_IN ? k->n_in : MV_VIEW_IN;
    for (int i = 0; i < n; i++) {
        h->p[i] = NULL;
        if (!k->in[i]) continue;
        h->t[i] = *k->in[i];
        h->t[i].data = (void *)(uintptr_t)h->t[i].host;
        h->p[i] = &h->t[i];
    }
    h->k.in = h->p;
    h->k.n_in = n;
    return &h->k;
}

/* name_prepare: a zeroed state filled by name_prep, kept only when that succeeds (cu.h). */
#define MV_PREPARE(name)                                                                           \
    static ulc_status name##_prepare(ulc_kctx *k) {                                                \
        return ucu_prepare_state(k, name##_prep, "kernel state");                                  \
    }

/* f(W()) with W the unsigned word of es bytes (1, 2, 4 or 8): a kernel's instance for the
 * elements it moves. */
template <typename F> static void mv_by_es(size_t es, F &&f) {
    switch (es) {
    case 1: f(uint8_t()); break;
    case 2: f(uint16_t()); break;
    case 4: f(uint32_t()); break;
    default: f((unsigned long long)0); break;
    }
}

/* The same for a word of w bytes from mv_word (1 to 16; 16: uint4). */
template <typename F> static void mv_by_word(size_t w, F &&f) {
    if (w == 16) f(uint4());
    else mv_by_es(w, f);
}

/* f(I()) with I the C type of indices of dtype int64 (i64) or int32. */
template <typename F> static void mv_by_index(int i64, F &&f) {
    if (i64) f((long long)0);
    else f(int32_t());
}

/* The widest word (16, 8, 4, 2, 1 bytes) that divides every value of v[0..n) and every
 * pointer's address. */
static size_t mv_word(const int64_t *v, int n, const void *const *ptrs, int np) {
    for (size_t w = 16; w > 1; w >>= 1) {
        int ok = 1;
        for (int i = 0; ok && i < n; i++) ok = v[i] % (int64_t)w == 0;
        for (int i = 0; ok && i < np; i++) ok = (uintptr_t)ptrs[i] % w == 0;
        if (ok) return w;
    }
    return 1;
}

/* ---- fills ----------------------------------------------------------------------------------- */

template <typename T> __global__ void mv_fill_kernel(T *p, int64_t n, T v) {
    UCU_FOR(i, n) p[i] = v;
}

/* Fills n elements of es bytes at p with the element whose bytes are elem. */
static ulc_status mv_fill(ulc_kctx *k, void *p, int64_t n, const void *elem, size_t es) {
    if (n <= 0) return ULC_OK;
    unsigned g = ucu_blocks(n, UCU_THREADS);
    mv_by_es(es, [&](auto z) {
        typedef decltype(z) W;
        W v;
        memcpy(&v, elem, sizeof v);
        auto f = mv_fill_kernel<W>;
        UCU_LAUNCH(f, g, UCU_THREADS, 0, ucu_stream(k), (W *)p, n, v);
    });
    UCU_TRY_LAUNCH(k, "fill");
    return ULC_OK;
}

/* ---- the strided copy ------------------------------------------------------------------------ */

/* dst[Σ c_d·os_d] = src[Σ c_d·is_d] over the index box dims (element strides; input strides may
 * be 0 for broadcast or negative for reversed slices). */
typedef struct mv_geo {
    int rank;
    int64_t dims[MV_MAX_RANK];
    int64_t is[MV_MAX_RANK], os[MV_MAX_RANK];
} mv_geo;

/* Drops size-1 dims and merges neighbours contiguous in both src and dst (as the CPU's
 * sc_simplify: kutil's ulc_k_merge_copy_dims). */
static void mv_simplify(mv_geo *p) {
    p->rank = ulc_k_merge_copy_dims(p->rank, p->dims, p->is, p->os);
}

static int64_t mv_geo_numel(const mv_geo *p) {
    int64_t n = 1;
    for (int d = 0; d < p->rank; d++) n *= p->dims[d];
    return n;
}

typedef struct mv_sc_args {
    const char *src; /* element (0, …, 0) */
    char *dst;
    int64_t n;
    int rank;
    int64_t dims[MV_MAX_RANK];
    int64_t is[MV_MAX_RANK], os[MV_MAX_RANK];
} mv_sc_args;

/* W: the word moved; I: the index type the box is decomposed in (uint32 when n fits). */
template <typename W, typename I> __global__ void mv_sc_kernel(mv_sc_args a) {
    const W *src = reinterpret_cast<const W *>(a.src);
    W *dst = reinterpret_cast<W *>(a.dst);
    UCU_FOR(i, a.n) {
        I rem = (I)i;
        int64_t so = 0, doff = 0;
        for (int d = a.rank - 1; d > 0; d--) {
            I dim = (I)a.dims[d];
            I c = rem % dim;
            rem /= dim;
            so += (int64_t)c * a.is[d];
            doff += (int64_t)c * a.os[d];
        }
        so += (int64_t)rem * a.is[0];
        doff += (int64_t)rem * a.os[0];
        dst[doff] = src[so];
    }
}

template <typename W> static void mv_sc_launch(ulc_kctx *k, const mv_sc_args &a) {
    (void)k; /* the emulator ignores the stream */
    unsigned g = ucu_blocks(a.n, UCU_THREADS);
    if (a.n <= (int64_t)UINT32_MAX) {
        auto f = mv_sc_kernel<W, uint32_t>;
        UCU_LAUNCH(f, g, UCU_THREADS, 0, ucu_stream(k), a);
    } else {
        auto f = mv_sc_kernel<W, uint64_t>;
        UCU_LAUNCH(f, g, UCU_THREADS, 0, ucu_stream(k), a);
    }
}

/* Runs the copy of geometry p (already simplified) from src to dst, elements of es bytes. */
static ulc_status mv_sc_run(ulc_kctx *k, const mv_geo *p, const void *src, void *dst, size_t es,
                            const char *what) {
    for (int d = 0; d < p->rank; d++)
        if (p->dims[d] == 0) return ULC_OK;
    mv_sc_args a;
    memset(&a, 0, sizeof a);
    a.src = (const char *)src;
    a.dst = (char *)dst;
    a.rank = p->rank;
    memcpy(a.dims, p->dims, sizeof a.dims);
    memcpy(a.is, p->is, sizeof a.is);
    memcpy(a.os, p->os, sizeof a.os);
    /* widen: an innermost run contiguous on both sides moves in words of up to 16 bytes */
    size_t w = es;
    int last = p->rank - 1;
    if (p->is[last] == 1 && p->os[last] == 1) {
        int64_t v[2 * MV_MAX_RANK + 1];
        int nv = 0;
        v[nv++] = p->dims[last] * (int64_t)es;
        for (int d = 0; d < last; d++) {
            v[nv++] = p->is[d] * (int64_t)es;
            v[nv++] = p->os[d] * (int64_t)es;
        }
        const void *ptrs[2] = {src, dst};
        w = mv_word(v, nv, ptrs, 2);
        if (w < es) w = es;
        int64_t f = (int64_t)(w / es);
        if (f > 1) {
            a.dims[last] /= f;
            for (int d = 0; d < last; d++) {
                a.is[d] /= f;
                a.os[d] /= f;
            }
        }
    }
    a.n = 1;
    for (int d = 0; d < a.rank; d++) a.n *= a.dims[d];
    mv_by_word(w, [&](auto z) { mv_sc_launch<decltype(z)>(k, a); });
    UCU_TRY_LAUNCH(k, what);
    return ULC_OK;
}

/* ---- views, Dropout -------------------------------------------------------------------------- */

/* Output 0 is input 0's bytes (the planner's alias): copies only when it is not. */
static ulc_status view_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    if (!y || !x) return ULC_OK;
    return ucu_copy(k, y->data, x->data, (size_t)ulc_rt_numel(x) * ulc_k_dtype_size(x->dtype));
}

typedef struct dropout_state {
    size_t es, mask_es;
    uint8_t one[8]; /* 1 in the mask's dtype */
} dropout_state;

static ulc_status dropout_prep(ulc_kctx *k, dropout_state *s) {
    const ulc_rt_tensor *tm = k->opset >= 12 ? in_opt(k, 2) : NULL;
    if (tm) {
        if (!tm->host)
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                              "training_mode computed at run time is not supported on backend "
                              "cuda, input 2 must be a constant");
        ulc_rt_tensor h = *tm;
        h.data = (void *)(uintptr_t)tm->host;
        if (ulc_rt_numel(&h) && ulc_k_int_at(&h, 0)) {
            const ulc_rt_tensor *ratio = in_opt(k, 1);
            double rv = 0.5;
            if (ratio) {
                if (!ratio->host)
                    return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                                      "with training_mode=true, input 1 (ratio) must be a "
                                      "constant on backend cuda");
                ulc_rt_tensor hr = *ratio;
                hr.data = (void *)(uintptr_t)ratio->host;
                rv = ulc_k_f64_at(&hr, 0);
            }
            if (rv != 0)
                return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                                  "training_mode=true (random dropout) is not supported by "
                                  "backend cuda");
        }
    }
    ULC_TRY(mv_es(k, k->in[0]->dtype, &s->es));
    ulc_rt_tensor *mask = out_opt(k, 1);
    if (mask) {
        ULC_TRY(mv_es(k, mask->dtype, &s->mask_es));
        ulc_rt_tensor tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.dtype = mask->dtype;
        tmp.data = s->one;
        ulc_k_store_f64(&tmp, 0, 1.0);
    }
    return ULC_OK;
}

static ulc_status dropout_run(ulc_kctx *k) {
    const dropout_state *s = (const dropout_state *)k->state;
    const ulc_rt_tensor *x = k->in[0];
    ulc_rt_tensor *y = k->out[0];
    if (y) ULC_TRY(ucu_copy(k, y->data, x->data, (size_t)ulc_rt_numel(x) * s->es));
    ulc_rt_tensor *mask = out_opt(k, 1);
    if (mask) ULC_TRY(mv_fill(k, mask->data, (int64_t)ulc_rt_numel(mask), s->one, s->mask_es));
    return ULC_OK;
}

/* ---- ConstantOfShape, Range ------------------------------------------------------------------ */

typedef struct cos_state {
    size_t es;
    uint8_t value[8];
} cos_state;

static ulc_status cos_prep(ulc_kctx *k, cos_state *s) {
    ulc_rt_tensor *y = k->out[0];
    ULC_TRY(mv_es(k, y->dtype, &s->es));
    const ulc_attr *a = ulc_k_attr(k, "value"); /* default: f32 0 */
    if (a && a->t && a->t->numel) {
        const ulc_tensor *t = a->t;
        if (!t->data) return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "attribute 'value' has no data");
        if (t->dtype == ULC_DT_F16 || t->dtype == ULC_DT_BF16) {
            uint16_t h;
            memcpy(&h, t->data, 2);
            float f = t->dtype == ULC_DT_F16 ? ulc_f16_to_f32(h) : ulc_bf16_to_f32(h);
            memcpy(s->value, &f, 4);
        } else {
            memcpy(s->value, t->data, s->es);
        }
    }
    return ULC_OK;
}

static ulc_status cos_run(ulc_kctx *k) {
    const cos_state *s = (const cos_state *)k->state;
    ulc_rt_tensor *y = k->out[0];
    return mv_fill(k, y->data, (int64_t)ulc_rt_numel(y), s->value, s->es);
}

__device__ __forceinline__ double mv_dmul(double a, double b) {
#ifdef ULC_CUDA_EMU
    return a * b;
#else
    return __dmul_rn(a, b);
#endif
}

__device__ __forceinline__ double mv_dadd(double a, double b) {
#ifdef ULC_CUDA_EMU
    return a + b;
#else
    return __dadd_rn(a, b);
#endif
}

/* start + i·delta rounded as the CPU does (a product, then a sum: never contracted to an fma) */
__global__ void range_f32_kernel(float *y, int64_t n, float s, float d) {
    UCU_FOR(i, n) y[i] = __fadd_rn(s, __fmul_rn((float)i, d));
}

__global__ void range_f64_kernel(double *y, int64_t n, double s, double d) {
    UCU_FOR(i, n) y[i] = mv_dadd(s, mv_dmul((double)i, d));
}

/* integers: start + i·delta in uint64 (wrapping), then wrapped to T */
template <typename T> __global__ void range_int_kernel(T *y, int64_t n, uint64_t s, uint64_t d) {
    UCU_FOR(i, n) y[i] = (T)(s + (uint64_t)i * d);
}

typedef struct range_state {
    int dtype;
    double fs, fd;
    int64_t is, id;
} range_state;

static ulc_status range_prep(ulc_kctx *k, range_state *s) {
    int dt = k->out[0]->dtype;
    s->dtype = dt;
    size_t es;
    ULC_TRY(mv_es(k, dt, &es));
    ulc_rt_tensor h[3];
    for (int i = 0; i < 3; i++) {
        const ulc_rt_tensor *t = in_opt(k, i);
        if (!t || !t->host)
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                              "on backend cuda, input %d must be a constant", i);
        h[i] = *t;
        h[i].data = (void *)(uintptr_t)t->host;
    }
    if (ulc_k_is_float(dt)) {
        s->fs = ulc_k_f64_at(&h[0], 0);
        s->fd = ulc_k_f64_at(&h[2], 0);
    } else if (ulc_k_is_int(dt)) {
        s->is = ulc_k_int_at(&h[0], 0);
        s->id = ulc_k_int_at(&h[2], 0);
    } else {
        return ucu_refuse_dtype(k, dt);
    }
    return ULC_OK;
}

static ulc_status range_run(ulc_kctx *k) {
    const range_state *s = (const range_state *)k->state;
    ulc_rt_tensor *y = k->out[0];
    int64_t n = (int64_t)ulc_rt_numel(y);
    if (!n) return ULC_OK;
    unsigned g = ucu_blocks(n, UCU_THREADS);
    cudaStream_t st = ucu_stream(k);
    (void)st; /* the emulator ignores the stream */
    uint64_t us = (uint64_t)s->is, ud = (uint64_t)s->id;
    auto launch_int = [&](auto z) { /* range_int_kernel for the C type of z */
        typedef decltype(z) T;
        auto f = range_int_kernel<T>;
        UCU_LAUNCH(f, g, UCU_THREADS, 0, st, (T *)y->data, n, us, ud);
    };
    switch (s->dtype) {
    case ULC_DT_F32:
        UCU_LAUNCH(range_f32_kernel, g, UCU_THREADS, 0, st, (float *)y->data, n, (float)s->fs,
                   (float)s->fd);
        break;
    case ULC_DT_F64:
        UCU_LAUNCH(range_f64_kernel, g, UCU_THREADS, 0, st, (double *)y->data, n, s->fs, s->fd);
        break;
    case ULC_DT_I64: launch_int((long long)0); break;
    case ULC_DT_U64: launch_int((unsigned long long)0); break;
    case ULC_DT_I32: launch_int(int32_t()); break;
    case ULC_DT_U32: launch_int(uint32_t()); break;
    case ULC_DT_I16: launch_int(int16_t()); break;
    case ULC_DT_U16: launch_int(uint16_t()); break;
    case ULC_DT_I8: launch_int(int8_t()); break;
    case ULC_DT_U8: launch_int(uint8_t()); break;
    default:
        return ucu_refuse_dtype(k, s->dtype);
    }
    UCU_TRY_LAUNCH(k, "Range");
    return ULC_OK;
}

/* ---- Transpose ------------------------------------------------------------------------------- */

typedef struct tr_args {
    const char *src;
    char *dst;
    int64_t nA, nQ; /* A: the output's innermost axis; Q: the input's contiguous axis */
    int64_t sA, oQ; /* input stride of A, output stride of Q (elements) */
    int64_t tA, tQ, tiles;
    int nouter;
    int64_t odims[ULC_RT_MAX_RANK], ois[ULC_RT_MAX_RANK], oos[ULC_RT_MAX_RANK];
} tr_args;

/* A 32×32 tile per step: read along Q (coalesced in the input), written along A (coalesced in
 * the output). Blocks of 32×8 threads step over (A tile, Q tile, outer index). */
template <typename T> __global__ void tr_tiled_kernel(tr_args a) {
    __shared__ T tile[MV_TILE][MV_TILE + 1];
    const T *src = reinterpret_cast<const T *>(a.src);
    T *dst = reinterpret_cast<T *>(a.dst);
    int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    for (int64_t t = blockIdx.x; t < a.tiles; t += gridDim.x) {
        int64_t ta = t % a.tA, r = t / a.tA;
        int64_t tq = r % a.tQ, o = r / a.tQ;
        int64_t so = 0, doff = 0;
        for (int d = a.nouter - 1; d >= 0; d--) {
            int64_t c = o % a.odims[d];
            o /= a.odims[d];
            so += c * a.ois[d];
            doff += c * a.oos[d];
        }
        int64_t a0 = ta * MV_TILE, q0 = tq * MV_TILE;
        for (int j = ty; j < MV_TILE; j += MV_TILE_ROWS) {
            int64_t ai = a0 + j, qi = q0 + tx;
            if (ai < a.nA && qi < a.nQ) tile[j][tx] = src[so + ai * a.sA + qi];
        }
        __syncthreads();
        for (int j = ty; j < MV_TILE; j += MV_TILE_ROWS) {
            int64_t qi = q0 + j, ai = a0 + tx;
            if (ai < a.nA && qi < a.nQ) dst[doff + qi * a.oQ + ai] = tile[tx][j];
        }
        __syncthreads(); /* the tile is reloaded */
    }
}

typedef struct tr_state {
    size_t es;
    int tiled;
    mv_geo g; /* simplified: output-order dims, input strides, dense output strides */
    int a, q;
} tr_state;

static ulc_status transpose_prep(ulc_kctx *k, tr_state *s) {
    const ulc_rt_tensor *x = k->in[0];
    ULC_TRY(mv_es(k, x->dtype, &s->es));
    int perm[ULC_RT_MAX_RANK];
    ULC_TRY(ulc_sh_transpose_perm(k, x->rank, perm));
    int64_t xs[ULC_RT_MAX_RANK];
    ulc_k_strides(x->rank, x->dims, xs);
    s->g.rank = x->rank;
    for (int i = 0; i < x->rank; i++) {
        s->g.dims[i] = x->dims[perm[i]];
        s->g.is[i] = xs[perm[i]];
    }
    ulc_k_strides(x->rank, s->g.dims, s->g.os);
    if (!ulc_rt_numel(x)) return ULC_OK;
    mv_simplify(&s->g);
    int last = s->g.rank - 1;
    if (s->g.is[last] == 1) return ULC_OK; /* contiguous inner blocks: the strided copy */
    s->tiled = 1;
    s->a = last;
    s->q = -1;
    for (int d = 0; d < s->g.rank; d++)
        if (s->g.is[d] == 1) s->q = d;
    if (s->q < 0 || s->q == last)
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "transpose geometry without a contiguous axis");
    return ULC_OK;
}

template <typename T> static void tr_launch(ulc_kctx *k, const tr_args &a) {
    (void)k; /* the emulator ignores the stream */
    int64_t b = a.tiles < UCU_MAX_BLOCKS ? a.tiles : UCU_MAX_BLOCKS;
    auto f = tr_tiled_kernel<T>;
    UCU_LAUNCH(f, (unsigned)b, dim3(MV_TILE, MV_TILE_ROWS), 0, ucu_stream(k), a);
}

static ulc_status transpose_run(ulc_kctx *k) {
    const tr_state *s = (const tr_state *)k->state;
    const ulc_rt_tensor *x = k->in[0];
    if (!ulc_rt_numel(x)) return ULC_OK;
    if (!s->tiled) return mv_sc_run(k, &s->g, x->data, k->out[0]->data, s->es, "Transpose");
    const mv_geo *g = &s->g;
    tr_args a;
    memset(&a, 0, sizeof a);
    a.src = (const char *)x->data;
    a.dst = (char *)k->out[0]->data;
    a.nA = g->dims[s->a];
    a.nQ = g->dims[s->q];
    a.sA = g->is[s->a];
    a.oQ = g->os[s->q];
    a.tA = (a.nA + MV_TILE - 1) / MV_TILE;
    a.tQ = (a.nQ + MV_TILE - 1) / MV_TILE;
    int64_t outer = 1;
    for (int d = 0; d < g->rank; d++) {
        if (d == s->a || d == s->q) continue;
        a.odims[a.nouter] = g->dims[d];
        a.ois[a.nouter] = g->is[d];
        a.oos[a.nouter] = g->os[d];
        a.nouter++;
        outer *= g->dims[d];
    }
    a.tiles = a.tA * a.tQ * outer;
    mv_by_es(s->es, [&](auto z) { tr_launch<decltype(z)>(k, a); });
    UCU_TRY_LAUNCH(k, "Transpose");
    return ULC_OK;
}

/* ---- Concat, Split --------------------------------------------------------------------------- */

/* For each outer index, part p holds a contiguous block of len words; the whole holds every
 * part's block in order, part p's at word offset off in a row of `row` words. */
typedef struct cat_args {
    char *whole;
    int64_t row, outer;
    int n;
    struct {
        char *p;
        int64_t len, off;
    } part[MV_CAT_BATCH];
} cat_args;

template <typename W, bool SPLIT> __global__ void cat_kernel(cat_args a) {
    char *pp = a.part[blockIdx.y].p;
    int64_t len = a.part[blockIdx.y].len, off = a.part[blockIdx.y].off;
    int64_t n = len * a.outer;
    W *part = reinterpret_cast<W *>(pp);
    W *whole = reinterpret_cast<W *>(a.whole);
    UCU_FOR(i, n) {
        int64_t o = i / len, c = i - o * len;
        if (SPLIT)
            part[i] = whole[o * a.row + off + c];
        else
            whole[o * a.row + off + c] = part[i];
    }
}

template <typename W>
static void cat_launch(ulc_kctx *k, const cat_args &a, int64_t maxn, int split) {
    (void)k; /* the emulator ignores the stream */
    dim3 grid(ucu_blocks(maxn, UCU_THREADS), (unsigned)a.n);
    if (split) {
        auto f = cat_kernel<W, true>;
        UCU_LAUNCH(f, grid, UCU_THREADS, 0, ucu_stream(k), a);
    } else {
        auto f = cat_kernel<W, false>;
        UCU_LAUNCH(f, grid, UCU_THREADS, 0, ucu_stream(k), a);
    }
}

/* Moves the parts (n of them: pointers, block bytes) to (split 0) or from (split 1) whole, whose
 * rows are row bytes, over outer rows. Parts with a NULL pointer or no bytes are skipped. */
static ulc_status cat_move(ulc_kctx *k, int split, char *whole, int64_t row, int64_t outer, int n,
                           char *const *parts, const int64_t *len, const char *what) {
    if (!row || !outer) return ULC_OK;
    int64_t off = 0;
    int i = 0;
    while (i < n) {
        /* a batch of up to MV_CAT_BATCH non-empty parts, in bytes */
        cat_args a;
        memset(&a, 0, sizeof a);
        a.whole = whole;
        int64_t maxb = 0;
        for (; i < n && a.n < MV_CAT_BATCH; i++) {
            int64_t l = len[i];
            if (parts[i] && l) {
                a.part[a.n].p = parts[i];
                a.part[a.n].len = l;
                a.part[a.n].off = off;
                if (l > maxb) maxb = l;
                a.n++;
            }
            off += l;
        }
        if (!a.n) continue;
        int64_t v[2 * MV_CAT_BATCH + 1];
        const void *ptrs[MV_CAT_BATCH + 1];
        int nv = 0;
        v[nv++] = row;
        ptrs[0] = whole;
        for (int j = 0; j < a.n; j++) {
            v[nv++] = a.part[j].len;
            v[nv++] = a.part[j].off;
            ptrs[j + 1] = a.part[j].p;
        }
        size_t w = mv_word(v, nv, ptrs, a.n + 1);
        a.row = row / (int64_t)w;
        a.outer = outer;
        for (int j = 0; j < a.n; j++) {
            a.part[j].len /= (int64_t)w;
            a.part[j].off /= (int64_t)w;
        }
        int64_t maxn = maxb / (int64_t)w * outer;
        mv_by_word(w, [&](auto z) { cat_launch<decltype(z)>(k, a, maxn, split); });
        UCU_TRY_LAUNCH(k, what);
    }
    return ULC_OK;
}

typedef struct cat_state {
    int axis;
    size_t es;
    int64_t outer, inner; /* elements before the axis; bytes of one index along it */
} cat_state;

static ulc_status concat_prep(ulc_kctx *k, cat_state *s) {
    ulc_rt_tensor *y = k->out[0];
    ULC_TRY(mv_es(k, y->dtype, &s->es));
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 1), y->rank, &s->axis));
    if (k->n_in > CAT_MAX)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "%d inputs exceed %d", k->n_in, CAT_MAX);
    s->inner = (int64_t)dims_numel(y->rank - s->axis - 1, y->dims + s->axis + 1) * (int64_t)s->es;
    s->outer = (int64_t)dims_numel(s->axis, y->dims);
    return ULC_OK;
}

static ulc_status concat_run(ulc_kctx *k) {
    const cat_state *s = (const cat_state *)k->state;
    ulc_rt_tensor *y = k->out[0];
    char *parts[CAT_MAX];
    int64_t len[CAT_MAX];
    for (int i = 0; i < k->n_in; i++) {
        parts[i] = k->in[i] ? (char *)k->in[i]->data : NULL;
        len[i] = k->in[i] ? k->in[i]->dims[s->axis] * s->inner : 0;
    }
    return cat_move(k, 0, (char *)y->data, y->dims[s->axis] * s->inner, s->outer, k->n_in, parts,
                    len, "Concat");
}

typedef struct split_state {
    int axis;
    size_t es;
    int64_t outer, row;
    int64_t len[CAT_MAX]; /* bytes of each output's block */
} split_state;

static ulc_status split_prep(ulc_kctx *k, split_state *s) {
    const ulc_rt_tensor *x = k->in[0];
    ULC_TRY(mv_es(k, x->dtype, &s->es));
    if (k->n_out > CAT_MAX)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "%d outputs exceed %d", k->n_out, CAT_MAX);
    mv_hview h;
    ULC_TRY(ulc_sh_split_sizes(mv_host_view(k, &h), &s->axis, s->len));
    int64_t inner =
        (int64_t)dims_numel(x->rank - s->axis - 1, x->dims + s->axis + 1) * (int64_t)s->es;
    for (int i = 0; i < k->n_out; i++) s->len[i] *= inner;
    s->row = x->dims[s->axis] * inner;
    s->outer = (int64_t)dims_numel(s->axis, x->dims);
    return ULC_OK;
}

static ulc_status split_run(ulc_kctx *k) {
    const split_state *s = (const split_state *)k->state;
    char *parts[CAT_MAX];
    for (int i = 0; i < k->n_out; i++) parts[i] = k->out[i] ? (char *)k->out[i]->data : NULL;
    return cat_move(k, 1, (char *)k->in[0]->data, s->row, s->outer, k->n_out, parts, s->len,
                    "Split");
}

/* ---- Slice, Expand, Tile: strided copies ----------------------------------------------------- */

typedef struct sc_state {
    size_t es;
    int64_t src_off; /* elements from input 0's start to the box's first element */
    mv_geo g;
} sc_state;

static ulc_status slice_prep(ulc_kctx *k, sc_state *s) {
    const ulc_rt_tensor *x = k->in[0];
    ULC_TRY(mv_es(k, x->dtype, &s->es));
    int64_t first[ULC_RT_MAX_RANK], step[ULC_RT_MAX_RANK], count[ULC_RT_MAX_RANK];
    mv_hview h;
    ULC_TRY(ulc_sh_slice_params(mv_host_view(k, &h), first, step, count));
    int64_t xs[ULC_RT_MAX_RANK];
    ulc_k_strides(x->rank, x->dims, xs);
    s->g.rank = x->rank;
    for (int d = 0; d < x->rank; d++) {
        s->src_off += first[d] * xs[d];
        s->g.dims[d] = count[d];
        s->g.is[d] = xs[d] * step[d];
    }
    ulc_k_strides(x->rank, count, s->g.os);
    if (dims_numel(x->rank, count)) mv_simplify(&s->g);
    return ULC_OK;
}

static ulc_status sc_run(ulc_kctx *k) {
    const sc_state *s = (const sc_state *)k->state;
    if (!ulc_rt_numel(k->out[0])) return ULC_OK;
    const char *src = (const char *)k->in[0]->data + s->src_off * (int64_t)s->es;
    return mv_sc_run(k, &s->g, src, k->out[0]->data, s->es, k->node->op_type);
}

static ulc_status expand_prep(ulc_kctx *k, sc_state *s) {
    const ulc_rt_tensor *x = k->in[0];
    const ulc_rt_tensor *y = k->out[0];
    ULC_TRY(mv_es(k, x->dtype, &s->es));
    s->g.rank = y->rank;
    memcpy(s->g.dims, y->dims, (size_t)y->rank * sizeof *y->dims);
    ulc_k_bcast_strides(x, y->rank, y->dims, s->g.is);
    ulc_k_strides(y->rank, y->dims, s->g.os);
    if (ulc_rt_numel(y)) mv_simplify(&s->g);
    return ULC_OK;
}

static ulc_status tile_prep(ulc_kctx *k, sc_state *s) {
    const ulc_rt_tensor *x = k->in[0];
    const ulc_rt_tensor *y = k->out[0];
    ULC_TRY(mv_es(k, x->dtype, &s->es));
    /* Y viewed as [rep_0, d_0, rep_1, d_1, …]: the repeat axes read with stride 0 */
    int r = x->rank;
    int64_t xs[ULC_RT_MAX_RANK];
    ulc_k_strides(r, x->dims, xs);
    s->g.rank = 2 * r;
    for (int d = 0; d < r; d++) {
        s->g.dims[2 * d] = x->dims[d] ? y->dims[d] / x->dims[d] : 0;
        s->g.dims[2 * d + 1] = x->dims[d];
        s->g.is[2 * d] = 0;
        s->g.is[2 * d + 1] = xs[d];
    }
    ulc_k_strides(2 * r, s->g.dims, s->g.os);
    if (ulc_rt_numel(y) && mv_geo_numel(&s->g)) mv_simplify(&s->g);
    return ULC_OK;
}

/* ---- Gather, GatherElements ------------------------------------------------------------------ */

typedef struct gather_args {
    const char *src;
    char *dst;
    const void *idx;
    int64_t n_idx, dim, inner, n; /* inner: words per copied block */
} gather_args;

template <typename W, typename IT> __global__ void gather_kernel(gather_args a) {
    const W *src = reinterpret_cast<const W *>(a.src);
    W *dst = reinterpret_cast<W *>(a.dst);
    const IT *idx = reinterpret_cast<const IT *>(a.idx);
    UCU_FOR(i, a.n) {
        int64_t r = i / a.inner, c = i - r * a.inner;
        int64_t o = r / a.n_idx, t = r - o * a.n_idx;
        int64_t v = (int64_t)idx[t];
        if (v < 0) v += a.dim;
        W w = W();
        if (v >= 0 && v < a.dim) w = src[(o * a.dim + v) * a.inner + c];
        dst[i] = w; /* an index out of range at run time: zeros */
    }
}

typedef struct gather_state {
    int axis;
    size_t es;
    int64_t outer, dim, block; /* block: bytes per copied row */
} gather_state;

static ulc_status gather_prep(ulc_kctx *k, gather_state *s) {
    const ulc_rt_tensor *x = k->in[0], *idx = k->in[1];
    ULC_TRY(mv_es(k, x->dtype, &s->es));
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), x->rank, &s->axis));
    s->dim = x->dims[s->axis];
    if (idx->host) ULC_TRY(ulc_sh_check_indices(k, idx, idx->host, s->dim, s->axis));
    s->outer = (int64_t)dims_numel(s->axis, x->dims);
    s->block = (int64_t)dims_numel(x->rank - s->axis - 1, x->dims + s->axis + 1) * (int64_t)s->es;
    return ULC_OK;
}

static ulc_status gather_run(ulc_kctx *k) {
    const gather_state *s = (const gather_state *)k->state;
    const ulc_rt_tensor *idx = k->in[1];
    gather_args a;
    memset(&a, 0, sizeof a);
    a.src = (const char *)k->in[0]->data;
    a.dst = (char *)k->out[0]->data;
    a.idx = idx->data;
    a.n_idx = (int64_t)ulc_rt_numel(idx);
    a.dim = s->dim;
    if (!a.n_idx || !s->block || !s->outer) return ULC_OK;
    const void *ptrs[2] = {a.src, a.dst};
    size_t w = mv_word(&s->block, 1, ptrs, 2);
    a.inner = s->block / (int64_t)w;
    a.n = s->outer * a.n_idx * a.inner;
    unsigned g = ucu_blocks(a.n, UCU_THREADS);
    mv_by_word(w, [&](auto z) {
        mv_by_index(idx->dtype == ULC_DT_I64, [&](auto ix) {
            auto f = gather_kernel<decltype(z), decltype(ix)>;
            UCU_LAUNCH(f, g, UCU_THREADS, 0, ucu_stream(k), a);
        });
    });
    UCU_TRY_LAUNCH(k, "Gather");
    return ULC_OK;
}

typedef struct ge_args {
    const char *src;
    char *dst;
    const void *idx;
    int rank, axis;
    int64_t n, dim;
    int64_t idims[ULC_RT_MAX_RANK], xs[ULC_RT_MAX_RANK];
} ge_args;

template <typename T, typename IT> __global__ void ge_kernel(ge_args a) {
    const T *src = reinterpret_cast<const T *>(a.src);
    T *dst = reinterpret_cast<T *>(a.dst);
    const IT *idx = reinterpret_cast<const IT *>(a.idx);
    UCU_FOR(i, a.n) {
        int64_t v = (int64_t)idx[i];
        if (v < 0) v += a.dim;
        int64_t so = 0, rem = i;
        for (int d = a.rank - 1; d >= 0; d--) {
            int64_t c = rem % a.idims[d];
            rem /= a.idims[d];
            so += (d == a.axis ? v : c) * a.xs[d];
        }
        T w = T();
        if (v >= 0 && v < a.dim) w = src[so];
        dst[i] = w; /* an index out of range at run time: zero */
    }
}

typedef struct ge_state {
    size_t es;
    ge_args a; /* pointers filled by run */
} ge_state;

static ulc_status gather_el_prep(ulc_kctx *k, ge_state *s) {
    const ulc_rt_tensor *x = k->in[0], *idx = k->in[1];
    ULC_TRY(mv_es(k, x->dtype, &s->es));
    int axis, r = x->rank;
    ULC_TRY(ulc_k_axis(k, ulc_k_attr_int(k, "axis", 0), r, &axis));
    int64_t dim = x->dims[axis];
    if (idx->host) ULC_TRY(ulc_sh_check_indices(k, idx, idx->host, dim, axis));
    for (int d = 0; d < r; d++)
        if (d != axis && idx->dims[d] > x->dims[d]) {
            char b1[96], b2[96];
            return ulc_k_fail(k, ULC_ERR_INVALID, "indices %s exceed data %s on axis %d",
                              shape_of(idx, b1, sizeof b1), shape_of(x, b2, sizeof b2), d);
        }
    s->a.rank = r;
    s->a.axis = axis;
    s->a.dim = dim;
    s->a.n = (int64_t)ulc_rt_numel(idx);
    memcpy(s->a.idims, idx->dims, sizeof s->a.idims);
    ulc_k_strides(r, x->dims, s->a.xs);
    return ULC_OK;
}

static ulc_status gather_el_run(ulc_kctx *k) {
    const ge_state *s = (const ge_state *)k->state;
    if (!s->a.n) return ULC_OK;
    ge_args a = s->a;
    a.src = (const char *)k->in[0]->data;
    a.dst = (char *)k->out[0]->data;
    a.idx = k->in[1]->data;
    unsigned g = ucu_blocks(a.n, UCU_THREADS);
    mv_by_es(s->es, [&](auto z) {
        mv_by_index(k->in[1]->dtype == ULC_DT_I64, [&](auto ix) {
            auto f = ge_kernel<decltype(z), decltype(ix)>;
            UCU_LAUNCH(f, g, UCU_THREADS, 0, ucu_stream(k), a);
        });
    });
    UCU_TRY_LAUNCH(k, "GatherElements");
    return ULC_OK;
}

/* ---- Trilu ----------------------------------------------------------------------------------- */

typedef struct trilu_args {
    const char *src;
    char *dst;
    int64_t rows, cols, n, kk;
    const void *kp; /* k read on the device (a run-time input), else NULL and kk holds it */
    int k64, upper;
} trilu_args;

template <typename T> __global__ void trilu_kernel(trilu_args a) {
    const T *src = reinterpret_cast<const T *>(a.src);
    T *dst = reinterpret_cast<T *>(a.dst);
    int64_t kk = a.kk;
    if (a.kp) {
        kk = a.k64 ? (int64_t)*reinterpret_cast<const long long *>(a.kp)
                   : (int64_t)*reinterpret_cast<const int32_t *>(a.kp);
        int64_t lim = a.rows + a.cols; /* beyond the matrix: keeps i + k from overflowing */
        kk = kk > lim ? lim : kk < -lim ? -lim : kk;
    }
    UCU_FOR(i, a.n) {
        int64_t r = i / a.cols, j = i - r * a.cols;
        r %= a.rows;
        /* upper keeps columns j >= i + k; lower keeps j <= i + k */
        bool keep = a.upper ? j >= r + kk : j <= r + kk;
        dst[i] = keep ? src[i] : T();
    }
}

typedef struct trilu_state {
    size_t es;
    trilu_args a;
} trilu_state;

static ulc_status trilu_prep(ulc_kctx *k, trilu_state *s) {
    const ulc_rt_tensor *x = k->in[0];
    ULC_TRY(mv_es(k, x->dtype, &s->es));
    s->a.rows = x->dims[x->rank - 2];
    s->a.cols = x->dims[x->rank - 1];
    s->a.n = (int64_t)ulc_rt_numel(x);
    s->a.upper = ulc_k_attr_int(k, "upper", 1) != 0;
    const ulc_rt_tensor *kt = in_opt(k, 1);
    int64_t kk = 0;
    if (kt && kt->host) {
        ulc_rt_tensor h = *kt;
        h.data = (void *)(uintptr_t)kt->host;
        kk = ulc_k_int_at(&h, 0);
    } else if (kt && kt->dtype != ULC_DT_I64 && kt->dtype != ULC_DT_I32) {
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "k of dtype %s computed at run time is not supported on backend cuda, "
                          "input 1 must be a constant",
                          ulc_dtype_name(kt->dtype));
    }
    int64_t lim = s->a.rows + s->a.cols;
    s->a.kk = kk > lim ? lim : kk < -lim ? -lim : kk;
    return ULC_OK;
}

static ulc_status trilu_run(ulc_kctx *k) {
    const trilu_state *s = (const trilu_state *)k->state;
    if (!s->a.n) return ULC_OK;
    trilu_args a = s->a;
    a.src = (const char *)k->in[0]->data;
    a.dst = (char *)k->out[0]->data;
    const ulc_rt_tensor *kt = in_opt(k, 1);
    if (kt && !kt->host) {
        a.kp = kt->data;
        a.k64 = kt->dtype == ULC_DT_I64;
    }
    unsigned g = ucu_blocks(a.n, UCU_THREADS);
    mv_by_es(s->es, [&](auto z) {
        auto f = trilu_kernel<decltype(z)>;
        UCU_LAUNCH(f, g, UCU_THREADS, 0, ucu_stream(k), a);
    });
    UCU_TRY_LAUNCH(k, "Trilu");
    return ULC_OK;
}

/* ---- Pad ------------------------------------------------------------------------------------- */

typedef struct pad_args {
    const char *src;
    char *dst;
    const void *cvp; /* constant_value read on the device (a run-time input), else NULL */
    unsigned long long cv; /* the constant's bytes otherwise */
    int rank, mode;
    int64_t n;
    int64_t ydims[ULC_RT_MAX_RANK], xdims[ULC_RT_MAX_RANK], xs[ULC_RT_MAX_RANK],
        pb[ULC_RT_MAX_RANK];
} pad_args;

template <typename T> __global__ void pad_kernel(pad_args a) {
    const T *src = reinterpret_cast<const T *>(a.src);
    T *dst = reinterpret_cast<T *>(a.dst);
    T cv;
    if (a.cvp) {
        cv = *reinterpret_cast<const T *>(a.cvp);
    } else {
        memcpy(&cv, &a.cv, sizeof cv);
    }
    UCU_FOR(i, a.n) {
        int64_t rem = i, so = 0;
        bool in = true;
        for (int d = a.rank - 1; d >= 0; d--) {
            int64_t c = rem % a.ydims[d];
            rem /= a.ydims[d];
            int64_t s = ulc_sh_pad_src(c - a.pb[d], a.xdims[d], a.mode);
            if (s < 0) in = false;
            so += s * a.xs[d];
        }
        dst[i] = in ? src[so] : cv;
    }
}

typedef struct pad_state {
    size_t es;
    pad_args a;
} pad_state;

static ulc_status pad_prep(ulc_kctx *k, pad_state *s) {
    const ulc_rt_tensor *x = k->in[0];
    const ulc_rt_tensor *y = k->out[0];
    ULC_TRY(mv_es(k, x->dtype, &s->es));
    int64_t pb[ULC_RT_MAX_RANK], pe[ULC_RT_MAX_RANK];
    int mode, r = x->rank;
    mv_hview h;
    ULC_TRY(ulc_sh_pad_params(mv_host_view(k, &h), pb, pe, &mode));
    uint8_t value[8] = {0};
    const ulc_rt_tensor *cv = k->opset >= 11 ? in_opt(k, 2) : NULL;
    if (cv && cv->host) {
        memcpy(value, cv->host, s->es);
    } else if (k->opset < 11) {
        ulc_rt_tensor tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.dtype = x->dtype;
        tmp.data = value;
        ulc_k_store_f64(&tmp, 0, ulc_k_attr_float(k, "value", 0.0f));
    }
    memcpy(&s->a.cv, value, sizeof s->a.cv);
    s->a.rank = r;
    /* an empty input can only be padded with the constant (the rule refuses the others) */
    s->a.mode = ulc_rt_numel(x) == 0 ? PAD_CONSTANT : mode;
    s->a.n = (int64_t)ulc_rt_numel(y);
    ulc_k_strides(r, x->dims, s->a.xs);
    for (int d = 0; d < r; d++) {
        s->a.ydims[d] = y->dims[d];
        s->a.xdims[d] = x->dims[d];
        s->a.pb[d] = pb[d];
    }
    return ULC_OK;
}

static ulc_status pad_run(ulc_kctx *k) {
    const pad_state *s = (const pad_state *)k->state;
    if (!s->a.n) return ULC_OK;
    pad_args a = s->a;
    a.src = (const char *)k->in[0]->data;
    a.dst = (char *)k->out[0]->data;
    const ulc_rt_tensor *cv = k->opset >= 11 ? in_opt(k, 2) : NULL;
    if (cv && !cv->host) a.cvp = cv->data;
    unsigned g = ucu_blocks(a.n, UCU_THREADS);
    mv_by_es(s->es, [&](auto z) {
        auto f = pad_kernel<decltype(z)>;
        UCU_LAUNCH(f, g, UCU_THREADS, 0, ucu_stream(k), a);
    });
    UCU_TRY_LAUNCH(k, "Pad");
    return ULC_OK;
}

/* ---- the table ------------------------------------------------------------------------------- */

MV_PREPARE(dropout)
MV_PREPARE(cos)
MV_PREPARE(range)
MV_PREPARE(transpose)
MV_PREPARE(concat)
MV_PREPARE(split)
MV_PREPARE(slice)
MV_PREPARE(expand)
MV_PREPARE(tile)
MV_PREPARE(gather)
MV_PREPARE(gather_el)
MV_PREPARE(trilu)
MV_PREPARE(pad)

/* blocked_inputs, flags, prepare, run, release, can_fuse */
static const ulc_kernel k_view = {0, 0, NULL, view_run, NULL, NULL};
static const ulc_kernel k_dropout = {0, 0, dropout_prepare, dropout_run, ucu_free_state, NULL};
static const ulc_kernel k_cos = {0, 0, cos_prepare, cos_run, ucu_free_state, NULL};
static const ulc_kernel k_range = {0, 0, range_prepare, range_run, ucu_free_state, NULL};
static const ulc_kernel k_transpose = {0, 0, transpose_prepare, transpose_run, ucu_free_state,
                                       NULL};
static const ulc_kernel k_concat = {0, 0, concat_prepare, concat_run, ucu_free_state, NULL};
static const ulc_kernel k_split = {0, 0, split_prepare, split_run, ucu_free_state, NULL};
static const ulc_kernel k_slice = {0, 0, slice_prepare, sc_run, ucu_free_state, NULL};
static const ulc_kernel k_expand = {0, 0, expand_prepare, sc_run, ucu_free_state, NULL};
static const ulc_kernel k_tile = {0, 0, tile_prepare, sc_run, ucu_free_state, NULL};
static const ulc_kernel k_gather = {0, 0, gather_prepare, gather_run, ucu_free_state, NULL};
static const ulc_kernel k_gather_el = {0, 0, gather_el_prepare, gather_el_run, ucu_free_state,
                                       NULL};
static const ulc_kernel k_trilu = {0, 0, trilu_prepare, trilu_run, ucu_free_state, NULL};
static const ulc_kernel k_pad = {0, 0, pad_prepare, pad_run, ucu_free_state, NULL};

/* Shape, Size and Constant have no cuda kernel: the planner always folds them on the host with
 * the cpu's kernels (Shape/Size read shapes only; Constant has no inputs). */
void ucu_reg_movement(ucu_table t) {
    t[ULC_OP_Identity] = &k_view;
    t[ULC_OP_Reshape] = &k_view;
    t[ULC_OP_Flatten] = &k_view;
    t[ULC_OP_Squeeze] = &k_view;
    t[ULC_OP_Unsqueeze] = &k_view;
    t[ULC_OP_Dropout] = &k_dropout;
    t[ULC_OP_ConstantOfShape] = &k_cos;
    t[ULC_OP_Range] = &k_range;
    t[ULC_OP_Transpose] = &k_transpose;
    t[ULC_OP_Concat] = &k_concat;
    t[ULC_OP_Split] = &k_split;
    t[ULC_OP_Slice] = &k_slice;
    t[ULC_OP_Gather] = &k_gather;
    t[ULC_OP_GatherElements] = &k_gather_el;
    t[ULC_OP_Expand] = &k_expand;
    t[ULC_OP_Tile] = &k_tile;
    t[ULC_OP_Trilu] = &k_trilu;
    t[ULC_OP_Pad] = &k_pad;
}

UCU_END
