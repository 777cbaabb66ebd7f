/*
 * k_nn_pool.c — MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (math in k_nn.c's header
 * comment).
 *
 * 1-D and 2-D windows without Indices run an own row loop (pool_rows): per output row the
 * window's input rows are reduced into a padded row buffer with contiguous, vectorised loops, then
 * the window slides along that buffer. oneDNN's pooling on NCHW tensors is a simple reference
 * loop (ResNet-18's 3x3/2 max pool: 24 ms there, 0.25 ms here on one core; onnxruntime 0.25 ms).
 * 3-D float32 windows run as a oneDNN pooling primitive built in prepare (ceil_mode becomes extra
 * padding after the input, which max pooling ignores and average pooling either ignores or —
 * with count_include_pad — counts, exactly as ONNX's reference and onnxruntime divide by the
 * full kernel size). MaxPool's Indices output and the rest run a general N-D loop.
 *
 * NCHW8C (runtime.h): MaxPool and AveragePool read X and write Y blocked when the planner says
 * so. 2-D float32 windows then run pool_blocked (8 channels per vector; a plain side goes
 * through a blocked copy); oneDNN's nChw8c pooling measured slower (0.55 ms vs 0.27 ms on
 * ResNet-18's max pool). With Indices the general loop runs on plain copies (Indices are plain).
 *
 * Global pooling reduces each [n, c] plane with a contiguous loop, threads over planes; a
 * blocked X is reduced 8 channels at a time into the plain [N, C, 1.., 1] result.
 */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_nn.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef struct pool_state {
    ulc_sh_pool g; /* the geometry (runtime/shape/params.h) */
    dnnl_primitive_t prim; /* oneDNN pooling, or NULL for the own loop */
    dnnl_memory_t m_src, m_dst;
    /* NCHW8C (runtime.h): X and Y as the planner laid them out. A 2-D float32 node with either
     * blocked runs oneDNN's pooling on nChw8c on both sides (the side that is plain goes through
     * a blocked copy in buf); one oneDNN cannot take (Indices, a window wholly in the padding)
     * runs the own loops on plain copies in buf. */
    int xb, yb;
    int blocked_loop; /* pool_blocked_f32 runs (X and Y as NCHW8C, copies for a plain side) */
    float *buf; /* x's copy, then y's copy (floats: bx, then the rest) */
    size_t bx;
} pool_state;

static void pool_release(void *p) {
    pool_state *s = p;
    if (!s) return;
    free(s->buf);
    if (s->prim) dnnl_primitive_destroy(s->prim);
    if (s->m_src) dnnl_memory_destroy(s->m_src);
    if (s->m_dst) dnnl_memory_destroy(s->m_dst);
    free(s);
}

/* ---- own loop -------------------------------------------------------------------------------- */

typedef struct pool_job {
    const pool_state *s;
    const void *x;
    void *y;
    int64_t *ind;
    int failed; /* a row buffer could not be allocated */
} pool_job;

/* One past the last tap t < k with b + t·dl <= in - 1. */
static inline int64_t in_range_hi(int64_t b, int64_t dl, int64_t in, int64_t k) {
    if (b > in - 1) return 0;
    int64_t h = (in - 1 - b) / dl + 1;
    return h < k ? h : k;
}

/* For output position oc: per dim the first input index base[d] = oc·s - pb and the valid taps
 * [lo, hi) (those with base + t·d inside [0, in)). Returns 0 when some dim has none. */
static int pool_taps(const ulc_nn_window *w, const int64_t *oc, int64_t *base, int64_t *lo,
                     int64_t *hi) {
    int any = 1;
    for (int d = 0; d < w->nsp; d++) {
        int64_t b = oc[d] * w->s[d] - w->pb[d], dl = w->d[d];
        base[d] = b;
        lo[d] = b < 0 ? (-b + dl - 1) / dl : 0;
        hi[d] = in_range_hi(b, dl, w->in[d], w->k[d]);
        if (lo[d] >= hi[d]) any = 0;
    }
    return any;
}

/* Flat offset of the input coordinate (row-major, or column-major for MaxPool indices). */
static inline int64_t pool_off(const ulc_nn_window *w, const int64_t *ic, int col_major) {
    int64_t off = 0;
    if (!col_major) {
        for (int d = 0; d < w->nsp; d++) off = off * w->in[d] + ic[d];
    } else {
        for (int d = w->nsp - 1; d >= 0; d--) off = off * w->in[d] + ic[d];
    }
    return off;
}

#define DEFINE_POOL_LOOP(NAME, T, ACC, IS_MAX, LOWEST)                                             \
    static void NAME(int64_t r0, int64_t r1, void *arg) {                                          \
        const pool_job *j = arg;                                                                   \
        const pool_state *s = j->s;                                                                \
        const ulc_nn_window *w = &s->g.w;                                                            \
        int nsp = w->nsp;                                                                          \
        int64_t kprod = 1;                                                                         \
        for (int d = 0; d < nsp; d++) kprod *= w->k[d];                                            \
        for (int64_t r = r0; r < r1; r++) {                                                        \
            const T *x = (const T *)j->x + r * s->g.isz;                                             \
            T *y = (T *)j->y + r * s->g.osz;                                                         \
            int64_t *ind = j->ind ? j->ind + r * s->g.osz : NULL;                                    \
            int64_t oc[ULC_NN_MAX_SP] = {0};                                                       \
            for (int64_t o = 0; o < s->g.osz; o++) {                                                 \
                int64_t base[ULC_NN_MAX_SP], lo[ULC_NN_MAX_SP], hi[ULC_NN_MAX_SP];                 \
                int64_t t[ULC_NN_MAX_SP], ic[ULC_NN_MAX_SP];                                       \
                ACC acc = IS_MAX ? (ACC)(LOWEST) : (ACC)0;                                         \
                int64_t cnt = 0, best = -1;                                                        \
                if (pool_taps(w, oc, base, lo, hi)) {                                              \
                    for (int d = 0; d < nsp; d++) t[d] = lo[d];                                    \
                    for (;;) {                                                                     \
                        int64_t off = 0;                                                           \
                        for (int d = 0; d < nsp; d++) {                                            \
                            ic[d] = base[d] + t[d] * w->d[d];                                      \
                            off = off * w->in[d] + ic[d];                                          \
                        }                                                                          \
                        ACC v = (ACC)x[off];                                                       \
                        if (IS_MAX) {                                                              \
                            if (v > acc || best < 0) {                                             \
                                acc = v;                                                           \
                                best = s->g.col_major ? pool_off(w, ic, 1) : off;                    \
                            }                                                                      \
                        } else {                                                                   \
                            acc += v;                                                              \
                        }                                                                          \
                        cnt++;                                                                     \
                        int d = nsp - 1;                                                           \
                        while (d >= 0 && ++t[d] == hi[d]) {                                        \
                            t[d] = lo[d];                                                          \
                            d--;                                                                   \
                        }                                                                          \
                        if (d < 0) break;                                                          \
                    }                                                                              \
                }                                                                                  \
                if (IS_MAX) {                                                                      \
                    y[o] = (T)acc;                                                                 \
                    if (ind) ind[o] = best < 0 ? -1 : r * s->g.isz + best;                           \
                } else {                                                                           \
                    int64_t div = s->g.include_pad ? kprod : cnt;                                    \
                    y[o] = div ? (T)(acc / (ACC)div) : (T)0;                                       \
                }                                                                                  \
                for (int d = nsp - 1; d >= 0 && ++oc[d] == w->out[d]; d--) oc[d] = 0;              \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_POOL_LOOP(maxpool_f32, float, float, 1, -FLT_MAX)
DEFINE_POOL_LOOP(maxpool_f64, double, double, 1, -DBL_MAX)
DEFINE_POOL_LOOP(maxpool_i8, int8_t, int, 1, -128)
DEFINE_POOL_LOOP(maxpool_u8, uint8_t, int, 1, 0)
DEFINE_POOL_LOOP(avgpool_f32, float, float, 0, 0)
DEFINE_POOL_LOOP(avgpool_f64, double, double, 0, 0)

/* pool_rows: 1-D and 2-D windows (no Indices). For each output row, reduce the window's valid
 * input rows into a row buffer that also holds the padding (contiguous: vectorises), then slide
 * the window along the buffer. Buffer index b is input column b - pb. */
#define POOL_ROW_STACK 2048
#define POOL_HPASS(T, IS_MAX, yr, buf, OW, SW, kw, dw)                                             \
    do {                                                                                           \
        for (int64_t ow = 0; ow < (OW); ow++) (yr)[ow] = (buf)[ow * (SW)];                         \
        for (int64_t t = 1; t < (kw); t++) {                                                       \
            const T *bt = (buf) + t * (dw);                                                        \
            if (IS_MAX)                                                                            \
                for (int64_t ow = 0; ow < (OW); ow++) {                                            \
                    T v = bt[ow * (SW)];                                                           \
                    (yr)[ow] = v > (yr)[ow] ? v : (yr)[ow];                                        \
                }                                                                                  \
            else                                                                                   \
                for (int64_t ow = 0; ow < (OW); ow++) (yr)[ow] += bt[ow * (SW)];                   \
        }                                                                                          \
    } while (0)
#define DEFINE_POOL_ROWS(NAME, T, IS_MAX, PADV)                                                    \
    static void NAME(int64_t r0, int64_t r1, void *arg) {                                          \
        const pool_job *j = arg;                                                                   \
        const pool_state *s = j->s;                                                                \
        const ulc_nn_window *w = &s->g.w;                                                            \
        int two = w->nsp == 2;                                                                     \
        int64_t H = two ? w->in[0] : 1, W = w->in[two], OH = two ? w->out[0] : 1;                  \
        int64_t OW = w->out[two], kh = two ? w->k[0] : 1, kw = w->k[two];                          \
        int64_t sh = two ? w->s[0] : 1, sw = w->s[two], dh = two ? w->d[0] : 1, dw = w->d[two];    \
        int64_t ph = two ? w->pb[0] : 0, pw = w->pb[two];                                          \
        int64_t L = (OW - 1) * sw + (kw - 1) * dw + 1;                                             \
        int64_t vb0 = pw < L ? pw : L, vb1 = pw + W < L ? pw + W : L; /* valid [vb0, vb1) */       \
        T stack[POOL_ROW_STACK];                                                                   \
        T *buf = L <= POOL_ROW_STACK ? stack : malloc((size_t)L * sizeof(T));                      \
        if (!buf) {                                                                                \
            ((pool_job *)arg)->failed = 1;                                                         \
            return;                                                                                \
        }                                                                                          \
        for (int64_t b = 0; b < vb0; b++) buf[b] = (T)(PADV);                                      \
        for (int64_t b = vb1; b < L; b++) buf[b] = (T)(PADV);                                      \
        for (int64_t r = r0; r < r1; r++) {                                                        \
            const T *x = (const T *)j->x + r * s->g.isz;                                             \
            T *y = (T *)j->y + r * s->g.osz;                                                         \
            for (int64_t oh = 0; oh < OH; oh++) {                                                  \
                int64_t h0 = oh * sh - ph;                                                         \
                int64_t tlo = h0 < 0 ? (-h0 + dh - 1) / dh : 0;                                    \
                int64_t thi = in_range_hi(h0, dh, H, kh), rows = thi > tlo ? thi - tlo : 0;        \
                T *bv = buf + vb0;                                                                 \
                const T *xc = x + (vb0 - pw);                                                      \
                int64_t nv = vb1 - vb0;                                                            \
                if (rows == 0) {                                                                   \
                    for (int64_t b = 0; b < nv; b++) bv[b] = (T)(PADV);                            \
                } else {                                                                           \
                    const T *x0 = xc + (h0 + tlo * dh) * W;                                        \
                    for (int64_t b = 0; b < nv; b++) bv[b] = x0[b];                                \
                    for (int64_t t = tlo + 1; t < thi; t++) {                                      \
                        const T *xr = xc + (h0 + t * dh) * W;                                      \
                        if (IS_MAX)                                                                \
                            for (int64_t b = 0; b < nv; b++)                                       \
                                bv[b] = xr[b] > bv[b] ? xr[b] : bv[b];                             \
                        else                                                                       \
                            for (int64_t b = 0; b < nv; b++) bv[b] += xr[b];                       \
                    }                                                                              \
                }                                                                                  \
                T *yr = y + oh * OW;                                                               \
                /* Taps outer, outputs inner: with the stride a constant (1, 2) the inner loop \
                 * vectorises. */   \
                if (sw == 1)                                                                       \
                    POOL_HPASS(T, IS_MAX, yr, buf, OW, 1, kw, dw);                                 \
                else if (sw == 2)                                                                  \
                    POOL_HPASS(T, IS_MAX, yr, buf, OW, 2, kw, dw);                                 \
                else                                                                               \
                    POOL_HPASS(T, IS_MAX, yr, buf, OW, sw, kw, dw);                                \
                if (!IS_MAX) {                                                                     \
                    for (int64_t ow = 0; ow < OW; ow++) {                                          \
                        int64_t div = kh * kw;                                                     \
                        if (!s->g.include_pad) {                                                     \
                            int64_t c0 = ow * sw - pw;                                             \
                            int64_t clo = c0 < 0 ? (-c0 + dw - 1) / dw : 0;                        \
                            int64_t chi = in_range_hi(c0, dw, W, kw);                              \
                            div = rows * (chi > clo ? chi - clo : 0);                              \
                        }                                                                          \
                        yr[ow] = div ? yr[ow] / (T)div : (T)0;                                     \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        if (buf != stack) free(buf);                                                               \
    }

DEFINE_POOL_ROWS(maxrows_f32, float, 1, -FLT_MAX)
DEFINE_POOL_ROWS(maxrows_f64, double, 1, -DBL_MAX)
DEFINE_POOL_ROWS(maxrows_i8, int8_t, 1, -128)
DEFINE_POOL_ROWS(maxrows_u8, uint8_t, 1, 0)
DEFINE_POOL_ROWS(avgrows_f32, float, 0, 0)
DEFINE_POOL_ROWS(avgrows_f64, double, 0, 0)

/* pool_blocked: 2-D float32 windows over NCHW8C ([N, C/8, H, W, 8]): one item per (n, channel
 * block, output row); each output pixel reduces its window's valid taps as 8-lane vectors (the
 * lanes are channels, so the loop over them vectorises). Padding lanes stay zero: their inputs
 * are zero, and a window with no valid tap writes them as zero explicitly. */
typedef struct pool_blocked_job {
    const pool_state *s;
    const float *x;
    float *y;
    int64_t c, cb;
} pool_blocked_job;

static void pool_blocked_f32(int64_t i0, int64_t i1, void *arg) {
    const pool_blocked_job *j = arg;
    const pool_state *s = j->s;
    const ulc_nn_window *w = &s->g.w;
    int64_t H = w->in[0], W = w->in[1], OH = w->out[0], OW = w->out[1];
    int64_t kh = w->k[0], kw = w->k[1], sh = w->s[0], sw = w->s[1], dh = w->d[0], dw = w->d[1];
    int is_max = s->g.kind == POOL_MAX;
    for (int64_t i = i0; i < i1; i++) {
        int64_t oh = i % OH, plane = i / OH, cb = plane % j->cb;
        int64_t nc = j->c - cb * 8 < 8 ? j->c - cb * 8 : 8;
        const float *x = j->x + (size_t)plane * (size_t)(H * W) * 8;
        float *y = j->y + ((size_t)plane * (size_t)OH + (size_t)oh) * (size_t)OW * 8;
        int64_t h0 = oh * sh - w->pb[0];
        int64_t tlo = h0 < 0 ? (-h0 + dh - 1) / dh : 0, thi = in_range_hi(h0, dh, H, kh);
        for (int64_t ow = 0; ow < OW; ow++) {
            int64_t c0 = ow * sw - w->pb[1];
            int64_t ulo = c0 < 0 ? (-c0 + dw - 1) / dw : 0, uhi = in_range_hi(c0, dw, W, kw);
            float acc[8];
#if defined(__SSE2__)
            /* Two 4-lane registers; max_ps(v, a) is v > a ? v : a, the scalar rule (NaN too). */
            __m128 a0 = _mm_set1_ps(is_max ? -FLT_MAX : 0.0f), a1 = a0;
            for (int64_t t = tlo; t < thi; t++) {
                const float *xr = x + (h0 + t * dh) * W * 8;
                for (int64_t u = ulo; u < uhi; u++) {
                    const float *v = xr + (c0 + u * dw) * 8;
                    __m128 v0 = _mm_loadu_ps(v), v1 = _mm_loadu_ps(v + 4);
                    if (is_max) {
                        a0 = _mm_max_ps(v0, a0);
                        a1 = _mm_max_ps(v1, a1);
                    } else {
                        a0 = _mm_add_ps(a0, v0);
                        a1 = _mm_add_ps(a1, v1);
                    }
                }
            }
            _mm_storeu_ps(acc, a0);
            _mm_storeu_ps(acc + 4, a1);
#else
            for (int l = 0; l < 8; l++) acc[l] = is_max ? -FLT_MAX : 0.0f;
            for (int64_t t = tlo; t < thi; t++) {
                const float *xr = x + (h0 + t * dh) * W * 8;
                for (int64_t u = ulo; u < uhi; u++) {
                    const float *v = xr + (c0 + u * dw) * 8;
                    if (is_max)
                        for (int l = 0; l < 8; l++) acc[l] = v[l] > acc[l] ? v[l] : acc[l];
                    else
                        for (int l = 0; l < 8; l++) acc[l] += v[l];
                }
            }
#endif
            int64_t taps = (thi > tlo ? thi - tlo : 0) * (uhi > ulo ? uhi - ulo : 0);
            float *yo = y + ow * 8;
            if (!is_max) {
                int64_t div = s->g.include_pad ? kh * kw : taps;
                for (int l = 0; l < 8; l++) acc[l] = div ? acc[l] / (float)div : 0.0f;
            }
            for (int l = 0; l < 8; l++) yo[l] = l < nc ? acc[l] : 0.0f;
        }
    }
}

/* ---- oneDNN pooling -------------------------------------------------------------------------- */

/* Builds the primitive when oneDNN can express the case; leaves s->prim NULL otherwise. */
static ulc_status pool_dnnl_prepare(ulc_kctx *k, pool_state *s) {
    if (s->g.dtype != ULC_DT_F32 || s->g.nsp != 3 || s->g.indices || s->g.planes == 0) return ULC_OK;
    dnnl_engine_t eng;
    ULC_TRY(ulc_nn_dnnl(k, &eng, NULL));
    const ulc_nn_window *w = &s->g.w;
    int rank = s->g.nsp + 2;
    const ulc_rt_tensor *x = k->in[0];
    dnnl_dims_t sd, dd, str, ker, dil, pl, pr;
    sd[0] = dd[0] = x->dims[0];
    sd[1] = dd[1] = x->dims[1];
    for (int i = 0; i < s->g.nsp; i++) {
        int64_t ext = (w->k[i] - 1) * w->d[i] + 1;
        sd[2 + i] = w->in[i];
        dd[2 + i] = w->out[i];
        str[i] = w->s[i];
        ker[i] = w->k[i];
        dil[i] = w->d[i] - 1;
        pl[i] = w->pb[i];
        /* oneDNN wants out = (in + pl + pr - ext) / s + 1 exactly: ceil_mode's last window
         * becomes padding after the input. */
        pr[i] = w->pe[i];
        if ((w->in[i] + pl[i] + pr[i] - ext) / w->s[i] + 1 != w->out[i])
            pr[i] = (w->out[i] - 1) * w->s[i] + ext - w->in[i] - pl[i];
        if (pr[i] < 0 || (w->in[i] + pl[i] + pr[i] - ext) / w->s[i] + 1 != w->out[i]) return ULC_OK;
        /* A window lying wholly in the padding has no defined value in oneDNN. */
        if (pl[i] >= ext || pr[i] >= ext) return ULC_OK;
    }
    dnnl_memory_desc_t smd, dmd;
    dnnl_status_t st =
        dnnl_memory_desc_init_by_tag(&smd, rank, sd, dnnl_f32, ulc_nn_plain_tag(rank));
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&dmd, rank, dd, dnnl_f32, ulc_nn_plain_tag(rank));
    ULC_TRY(ulc_nn_dnnl_check(k, st, "memory descriptors for pooling"));
    dnnl_alg_kind_t alg = s->g.kind == POOL_MAX ? dnnl_pooling_max
                          : s->g.include_pad    ? dnnl_pooling_avg_include_padding
                                              : dnnl_pooling_avg_exclude_padding;
    dnnl_pooling_v2_desc_t pdsc;
    st = dnnl_pooling_v2_forward_desc_init(&pdsc, dnnl_forward_inference, alg, &smd, &dmd, str, ker,
                                           dil, pl, pr);
    if (st != dnnl_success) return ULC_OK;
    dnnl_primitive_desc_t pd = NULL;
    st = dnnl_primitive_desc_create(&pd, &pdsc, NULL, eng, NULL);
    if (st == dnnl_unimplemented) return ULC_OK;
    ULC_TRY(ulc_nn_dnnl_check(k, st, "pooling primitive descriptor"));
    st = dnnl_primitive_create(&s->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st == dnnl_success) st = dnnl_memory_create(&s->m_src, &smd, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success) st = dnnl_memory_create(&s->m_dst, &dmd, eng, DNNL_MEMORY_NONE);
    return ulc_nn_dnnl_check(k, st, "pooling primitive");
}

static ulc_status pool_prepare_common(ulc_kctx *k, int kind) {
    pool_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    ULC_TRY(ulc_sh_pool_geom(k, kind, &s->g));
    s->xb = ulc_nn_blocked(k->in[0]);
    s->yb = ulc_nn_blocked(k->out[0]);
    ULC_TRY(pool_dnnl_prepare(k, s));
    if (!s->xb && !s->yb) return ULC_OK;
    /* Copies: with the blocked loop, of the plain side in NCHW8C; with Indices (the general
     * loop), of the blocked sides in plain. */
    const ulc_rt_tensor *x = k->in[0], *y = k->out[0];
    size_t nx = 0, ny = 0;
    s->blocked_loop = s->g.dtype == ULC_DT_F32 && s->g.nsp == 2 && !s->g.indices;
    if (s->blocked_loop) {
        nx = s->xb ? 0 : x->dims[0] * ((x->dims[1] + 7) / 8) * 8 * x->dims[2] * x->dims[3];
        ny = s->yb ? 0 : y->dims[0] * ((y->dims[1] + 7) / 8) * 8 * y->dims[2] * y->dims[3];
    } else {
        nx = s->xb ? ulc_rt_numel(x) : 0;
        ny = s->yb ? ulc_rt_numel(y) : 0;
    }
    s->bx = nx;
    if (nx + ny) {
        s->buf = ulc_nn_alloc((nx + ny) * sizeof(float));
        if (!s->buf) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (pooling layout copies)");
    }
    return ULC_OK;
}

static ulc_status maxpool_prepare(ulc_kctx *k) { return pool_prepare_common(k, POOL_MAX); }
static ulc_status avgpool_prepare(ulc_kctx *k) { return pool_prepare_common(k, POOL_AVG); }

static ulc_status pool_compute(ulc_kctx *k, pool_state *s, const void *x, void *y);

static ulc_status pool_run(ulc_kctx *k) {
    pool_state *s = k->state;
    const ulc_rt_tensor *xt = k->in[0], *yt = k->out[0];
    int64_t n = xt->dims[0], c = xt->dims[1];
    int64_t ihw = s->g.nsp == 2 ? s->g.isz : 0, ohw = s->g.nsp == 2 ? s->g.osz : 0;
    void *x = xt->data, *y = yt->data;
    /* Where the loop or primitive reads and writes: copies in buf where the layouts differ. */
    void *xr = x, *yw = y;
    if (s->buf) {
        if (s->blocked_loop ? !s->xb : s->xb) xr = s->buf;
        if (s->blocked_loop ? !s->yb : s->yb) yw = s->buf + s->bx;
        if (xr != x) {
            if (s->xb)
                ulc_nn_nchw8c_to_plain(x, xr, n, c, ihw);
            else
                ulc_nn_plain_to_nchw8c(x, xr, n, c, ihw);
        }
    }
    ULC_TRY(pool_compute(k, s, xr, yw));
    if (yw != y) {
        if (s->yb)
            ulc_nn_plain_to_nchw8c(yw, y, n, c, ohw);
        else
            ulc_nn_nchw8c_to_plain(yw, y, n, c, ohw);
    }
    return ULC_OK;
}

static ulc_status pool_compute(ulc_kctx *k, pool_state *s, const void *x, void *y) {
    if (s->prim) {
        dnnl_stream_t stream;
        ULC_TRY(ulc_nn_dnnl(k, NULL, &stream));
        dnnl_status_t st = dnnl_memory_set_data_handle(s->m_src, (void *)x);
        if (st == dnnl_success) st = dnnl_memory_set_data_handle(s->m_dst, y);
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, s->m_src}, {DNNL_ARG_DST, s->m_dst}};
        if (st == dnnl_success) st = dnnl_primitive_execute(s->prim, stream, 2, args);
        return ulc_nn_dnnl_check(k, st, "executing pooling");
    }
    if (s->blocked_loop) {
        const ulc_rt_tensor *xt = k->in[0];
        pool_blocked_job b = {s, x, y, xt->dims[1], (xt->dims[1] + 7) / 8};
        double work = (double)s->g.w.out[1] * (double)s->g.w.k[0] * (double)s->g.w.k[1] * 8;
        ulc_k_parallel(xt->dims[0] * b.cb * s->g.w.out[0], ulc_k_grain(16384, work), pool_blocked_f32,
                       &b);
        return ULC_OK;
    }
    pool_job j = {s, x, y, s->g.indices ? k->out[1]->data : NULL, 0};
    int rows = s->g.nsp <= 2 && !s->g.indices, is_max = s->g.kind == POOL_MAX;
    void (*body)(int64_t, int64_t, void *) = NULL;
    switch (s->g.dtype) {
    case ULC_DT_F32:
        body = rows ? (is_max ? maxrows_f32 : avgrows_f32) : (is_max ? maxpool_f32 : avgpool_f32);
        break;
    case ULC_DT_F64:
        body = rows ? (is_max ? maxrows_f64 : avgrows_f64) : (is_max ? maxpool_f64 : avgpool_f64);
        break;
    case ULC_DT_I8: body = rows ? maxrows_i8 : maxpool_i8; break;
    case ULC_DT_U8: body = rows ? maxrows_u8 : maxpool_u8; break;
    default:
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "no pooling loop for dtype %s",
                          ulc_dtype_name(s->g.dtype));
    }
    double taps = (double)s->g.osz;
    for (int d = 0; d < s->g.nsp; d++) taps *= (double)s->g.w.k[d];
    ulc_k_parallel(s->g.planes, ulc_k_grain(1 << 15, taps), body, &j);
    if (j.failed) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (pooling row buffer)");
    return ULC_OK;
}

static const ulc_kernel k_maxpool = {.blocked_inputs = 1u, .flags = ULC_K_BLOCKED_OUT, .prepare = maxpool_prepare, .run = pool_run, .release = pool_release};
static const ulc_kernel k_avgpool = {.blocked_inputs = 1u, .flags = ULC_K_BLOCKED_OUT, .prepare = avgpool_prepare, .run = pool_run, .release = pool_release};

/* ---- global pooling -------------------------------------------------------------------------- */

typedef struct gpool_job {
    const void *x;
    void *y;
    int64_t inner;
    int is_max;
} gpool_job;

static void gpool_f32(int64_t r0, int64_t r1, void *arg) {
    const gpool_job *j = arg;
    int64_t n = j->inner;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = (const float *)j->x + r * n;
        if (j->is_max) {
            float m = n ? x[0] : -FLT_MAX;
            for (int64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
            ((float *)j->y)[r] = m;
        } else {
            /* 8 partial sums: vectorisable without -ffast-math, and more accurate. */
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int64_t i = 0;
            for (; i + 8 <= n; i += 8)
                for (int l = 0; l < 8; l++) acc[l] += x[i + l];
            float sum = 0;
            for (; i < n; i++) sum += x[i];
            for (int l = 0; l < 8; l++) sum += acc[l];
            ((float *)j->y)[r] = n ? sum / (float)n : 0.0f;
        }
    }
}

static void gpool_f64(int64_t r0, int64_t r1, void *arg) {
    const gpool_job *j = arg;
    int64_t n = j->inner;
    for (int64_t r = r0; r < r1; r++) {
        const double *x = (const double *)j->x + r * n;
        double a = j->is_max ? (n ? x[0] : -DBL_MAX) : 0;
        for (int64_t i = j->is_max ? 1 : 0; i < n; i++) {
            if (j->is_max)
                a = x[i] > a ? x[i] : a;
            else
                a += x[i];
        }
        ((double *)j->y)[r] = j->is_max ? a : (n ? a / (double)n : 0.0);
    }
}

/* X in NCHW8C ([N, C/8, H, W, 8]): one item per (n, channel block), the 8 channels reduced side
 * by side (8 lanes of a vector), written to the plain [N, C] result. */
typedef struct gpool_blocked_job {
    const float *x;
    float *y;
    int64_t c, cb, hw;
    int is_max;
} gpool_blocked_job;

static void gpool_blocked_f32(int64_t i0, int64_t i1, void *arg) {
    const gpool_blocked_job *j = arg;
    int64_t hw = j->hw;
    for (int64_t i = i0; i < i1; i++) {
        const float *x = j->x + (size_t)i * (size_t)hw * 8;
        int64_t n = i / j->cb, c0 = (i % j->cb) * 8, nc = j->c - c0 < 8 ? j->c - c0 : 8;
        float acc[8];
        for (int l = 0; l < 8; l++) acc[l] = j->is_max ? (hw ? x[l] : -FLT_MAX) : 0.0f;
        if (j->is_max) {
            for (int64_t p = 1; p < hw; p++)
                for (int l = 0; l < 8; l++) acc[l] = x[p * 8 + l] > acc[l] ? x[p * 8 + l] : acc[l];
        } else {
            for (int64_t p = 0; p < hw; p++)
                for (int l = 0; l < 8; l++) acc[l] += x[p * 8 + l];
            for (int l = 0; l < 8; l++) acc[l] = hw ? acc[l] / (float)hw : 0.0f;
        }
        for (int64_t l = 0; l < nc; l++) j->y[n * j->c + c0 + l] = acc[l];
    }
}

static ulc_status gpool_run_common(ulc_kctx *k, int is_max) {
    const ulc_rt_tensor *x = k->in[0];
    int64_t inner = 1;
    for (int i = 2; i < x->rank; i++) inner *= x->dims[i];
    if (ulc_nn_blocked(x)) {
        gpool_blocked_job b = {x->data, k->out[0]->data, x->dims[1], (x->dims[1] + 7) / 8, inner,
                               is_max};
        ulc_k_parallel(x->dims[0] * b.cb, 2048 / (inner + 1) + 1, gpool_blocked_f32, &b);
        return ULC_OK;
    }
    gpool_job j = {x->data, k->out[0]->data, inner, is_max};
    ulc_k_parallel(x->dims[0] * x->dims[1], 16384 / (inner + 1) + 1,
                   x->dtype == ULC_DT_F32 ? gpool_f32 : gpool_f64, &j);
    return ULC_OK;
}

static ulc_status gavgpool_run(ulc_kctx *k) { return gpool_run_common(k, 0); }
static ulc_status gmaxpool_run(ulc_kctx *k) { return gpool_run_common(k, 1); }

static const ulc_kernel k_gavgpool = {.blocked_inputs = 1u, .run = gavgpool_run};
static const ulc_kernel k_gmaxpool = {.blocked_inputs = 1u, .run = gmaxpool_run};

void ulc_nn_register_pool(const ulc_kernel **table) {
    table[ULC_OP_MaxPool] = &k_maxpool;
    table[ULC_OP_AveragePool] = &k_avgpool;
    table[ULC_OP_GlobalAveragePool] = &k_gavgpool;
    table[ULC_OP_GlobalMaxPool] = &k_gmaxpool;
}
