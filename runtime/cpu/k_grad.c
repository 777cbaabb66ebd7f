/*
 * k_grad.c — CPU kernels of ulc's own gradient ops (domain "ulc", emitted by autodiff): ReluGrad,
 * GeluGrad, SoftmaxGrad, LogSoftmaxGrad, LayerNormGrad, GatherGrad, MaxPoolGrad and
 * AveragePoolGrad. ConvGradData and ConvGradWeight live in k_grad_conv.c. The contract of every
 * op (inputs, attributes, results) is ir/ops_ulc.def's header comment; the math per op:
 *
 *   ReluGrad        dx = y > 0 ? dy : 0
 *   GeluGrad        erf:  dx = dy · (Φ(x) + x·φ(x)),  Φ(x) = gelu(x) / x (k_elementwise_math's
 *                         GELU has no cancellation in the negative tail; 1/2 at x = 0),
 *                         φ(x) = e^(-x²/2) / √(2π)
 *                   tanh: u = √(2/π)(x + 0.044715x³), s = σ(2u) = (1 + tanh u)/2, so
 *                         dx = dy · (s + 2x·σ(2u)σ(-2u)·√(2/π)(1 + 3·0.044715x²))
 *                         (σ(2u)σ(-2u) = (1 - tanh² u)/4 without the cancellation)
 *   SoftmaxGrad     dx = y · (dy - Σ_axis dy·y)           } over the [O, A, I] view, A = the
 *   LogSoftmaxGrad  dx = dy - e^y · Σ_axis dy             } axis (opset-13 meaning always)
 *   LayerNormGrad   per row r of the normalised dims D (N elements): μ, s = 1/√(σ² + ε) as the
 *                   forward computes them (double sums), x̂ = (x - μ)·s, g = dy·scale,
 *                   dx = s · (g - mean(g) - x̂ · mean(g·x̂)); dscale = Σ_r dy·x̂, dbias = Σ_r dy,
 *                   then summed over the dims where scale broadcasts
 *   GatherGrad      ddata = 0; ddata[o, idx[p], i] += dy[o, p, i] for p in index order
 *   MaxPoolGrad     dx = 0; per output o, dy[o] added at its window's first maximum (row-major
 *                   window order, the forward's rule: a later tap wins only when strictly greater)
 *   AveragePoolGrad dx = 0; per output o, dy[o] / div added at every tap inside the input,
 *                   div = the kernel size with count_include_pad, else the taps inside (as the
 *                   forward divides; ceil_mode's overhang counts as padding, see k_nn.c)
 *
 * Float32 only: the shape rules (runtime/shape/s_grad.c) refuse other dtypes naming the node
 * and the input. Work is split across
 * threads (ulc_k_parallel) so that every output element is written by one thread, its sums in a
 * fixed order: results are the same bits on every run, whatever the thread count. Sums that
 * would cross threads' items are avoided by choosing the items: LayerNorm's dscale/dbias are a
 * second pass over column ranges, GatherGrad's items are (outer index, column block) pairs, so
 * repeated indices add up in index order, pooling's are [n, c] planes. Pooling walks outputs in
 * row-major order and each window's taps in row-major order (the forward's enumeration); 1-D and
 * 2-D windows take a loop with the tap ranges computed per row and column (pg_body2d), more
 * spatial dims the general one (pg_body).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_elementwise.h"
#include "runtime/cpu/k_nn.h"

enum { GRAD_BLOCK = 256 }; /* elements per block of the vector helpers (stack buffers) */

/* ---- ReluGrad, GeluGrad ---------------------------------------------------------------------- */

typedef struct ew_job {
    const float *dy, *x;
    float *dx;
    int tanh_form; /* GeluGrad: approximate = "tanh" */
} ew_job;

static void relu_grad_body(int64_t i0, int64_t i1, void *arg) {
    const ew_job *j = arg;
    for (int64_t i = i0; i < i1; i++) j->dx[i] = j->x[i] > 0.0f ? j->dy[i] : 0.0f;
}

#define GELU_INV_SQRT2PI 0.3989422804014327f /* 1/√(2π) */
#define GELU_K0 0.7978845608028654f          /* √(2/π) */
#define GELU_K1 0.044715f

static void gelu_grad_body(int64_t i0, int64_t i1, void *arg) {
    const ew_job *j = arg;
    float a[GRAD_BLOCK], b[GRAD_BLOCK];
    for (int64_t s = i0; s < i1; s += GRAD_BLOCK) {
        int64_t n = i1 - s < GRAD_BLOCK ? i1 - s : GRAD_BLOCK;
        const float *x = j->x + s, *dy = j->dy + s;
        float *dx = j->dx + s;
        if (!j->tanh_form) {
            ulc_cpu_vgelu_erf_f32(x, a, n); /* x·Φ(x) */
            for (int64_t i = 0; i < n; i++) b[i] = -0.5f * x[i] * x[i];
            ulc_cpu_vexp_f32(b, b, n);
            for (int64_t i = 0; i < n; i++) {
                float cdf = fabsf(x[i]) > 1e-20f ? a[i] / x[i] : 0.5f;
                dx[i] = dy[i] * (cdf + x[i] * b[i] * GELU_INV_SQRT2PI);
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                a[i] = 2.0f * GELU_K0 * (x[i] + GELU_K1 * x[i] * x[i] * x[i]);
                b[i] = -a[i];
            }
            ulc_cpu_vsigmoid_f32(a, a, n); /* σ(2u) = (1 + tanh u) / 2 */
            ulc_cpu_vsigmoid_f32(b, b, n); /* σ(-2u) = (1 - tanh u) / 2 */
            for (int64_t i = 0; i < n; i++) {
                float du = GELU_K0 * (1.0f + 3.0f * GELU_K1 * x[i] * x[i]);
                dx[i] = dy[i] * (a[i] + 2.0f * x[i] * a[i] * b[i] * du);
            }
        }
    }
}

static ulc_status relu_grad_run(ulc_kctx *k) {
    ew_job j = {k->in[0]->data, k->in[1]->data, k->out[0]->data, 0};
    ulc_k_parallel((int64_t)ulc_rt_numel(k->out[0]), 16384, relu_grad_body, &j);
    return ULC_OK;
}

static ulc_status gelu_grad_run(ulc_kctx *k) {
    ew_job j = {k->in[0]->data, k->in[1]->data, k->out[0]->data, 0};
    ULC_TRY(ulc_sh_gelu_grad_mode(k, &j.tanh_form));
    ulc_k_parallel((int64_t)ulc_rt_numel(k->out[0]), 4096, gelu_grad_body, &j);
    return ULC_OK;
}

/* ---- SoftmaxGrad, LogSoftmaxGrad ------------------------------------------------------------- */

enum { SM_COLS = 64 };

typedef struct smg_job {
    const float *dy, *y;
    float *dx;
    int64_t A, I;
    int log_form;
} smg_job;

/* I = 1: one contiguous row. The sum runs in 8 float lanes (vectorised; the order is fixed),
 * added up in double. */
static void smg_row(const float *dy, const float *y, float *dx, int64_t A, int log_form) {
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    double sum = 0;
    int64_t a = 0;
    if (log_form) {
        for (; a + 8 <= A; a += 8)
            for (int l = 0; l < 8; l++) lanes[l] += dy[a + l];
        for (; a < A; a++) sum += dy[a];
    } else {
        for (; a + 8 <= A; a += 8)
            for (int l = 0; l < 8; l++) lanes[l] += dy[a + l] * y[a + l];
        for (; a < A; a++) sum += (double)dy[a] * y[a];
    }
    for (int l = 0; l < 8; l++) sum += lanes[l];
    float s = (float)sum;
    if (log_form) {
        ulc_cpu_vexp_f32(y, dx, A);
        for (a = 0; a < A; a++) dx[a] = dy[a] - dx[a] * s;
    } else {
        for (a = 0; a < A; a++) dx[a] = y[a] * (dy[a] - s);
    }
}

/* One [A, I] slab per item; sums in double, columns in blocks of SM_COLS when I > 1. */
static void smg_body(int64_t o0, int64_t o1, void *arg) {
    const smg_job *j = arg;
    int64_t A = j->A, I = j->I, slab = A * I;
    for (int64_t o = o0; o < o1; o++) {
        const float *dy = j->dy + o * slab, *y = j->y + o * slab;
        float *dx = j->dx + o * slab;
        if (I == 1) {
            smg_row(dy, y, dx, A, j->log_form);
            continue;
        }
        if (j->log_form) ulc_cpu_vexp_f32(y, dx, slab); /* dx holds e^y until overwritten */
        for (int64_t c0 = 0; c0 < I; c0 += SM_COLS) {
            int64_t nc = I - c0 < SM_COLS ? I - c0 : SM_COLS;
            double acc[SM_COLS];
            for (int64_t c = 0; c < nc; c++) acc[c] = 0.0;
            for (int64_t a = 0; a < A; a++) {
                const float *dr = dy + a * I + c0, *yr = y + a * I + c0;
                if (j->log_form)
                    for (int64_t c = 0; c < nc; c++) acc[c] += dr[c];
                else
                    for (int64_t c = 0; c < nc; c++) acc[c] += (double)dr[c] * yr[c];
            }
            float s[SM_COLS];
            for (int64_t c = 0; c < nc; c++) s[c] = (float)acc[c];
            for (int64_t a = 0; a < A; a++) {
                const float *dr = dy + a * I + c0, *yr = y + a * I + c0;
                float *xr = dx + a * I + c0;
                if (j->log_form)
                    for (int64_t c = 0; c < nc; c++) xr[c] = dr[c] - xr[c] * s[c];
                else
                    for (int64_t c = 0; c < nc; c++) xr[c] = yr[c] * (dr[c] - s[c]);
            }
        }
    }
}

static ulc_status smg_run(ulc_kctx *k) {
    smg_job j = {k->in[0]->data, k->in[1]->data, k->out[0]->data, 0, 0,
                 k->node->op == ULC_OP_LogSoftmaxGrad};
    int64_t O;
    ULC_TRY(ulc_sh_softmax_grad_layout(k, &O, &j.A, &j.I));
    if (ulc_rt_numel(k->out[0]) == 0) return ULC_OK;
    ulc_k_parallel(O, 8192 / (j.A * j.I) + 1, smg_body, &j);
    return ULC_OK;
}

/* ---- LayerNormGrad --------------------------------------------------------------------------- */

typedef struct lng_job {
    const float *dy, *x, *g; /* g: scale broadcast to N values */
    float *dx;
    double *stats; /* R pairs (μ, s) */
    double *dg, *db; /* N column sums each (NULL: not wanted) */
    int64_t R, N;
    double eps;
} lng_job;

/* Rows: μ and s as the forward computes them, then dx. */
static void lng_rows(int64_t r0, int64_t r1, void *arg) {
    const lng_job *j = arg;
    int64_t N = j->N;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * N, *dy = j->dy + r * N;
        float *dx = j->dx + r * N;
        double sum = 0, ss = 0;
        for (int64_t i = 0; i < N; i++) sum += x[i];
        double mean = sum / (double)N;
        for (int64_t i = 0; i < N; i++) ss += (x[i] - mean) * (x[i] - mean);
        double inv = 1.0 / sqrt(ss / (double)N + j->eps);
        j->stats[2 * r] = mean;
        j->stats[2 * r + 1] = inv;
        double sg = 0, sgx = 0;
        for (int64_t i = 0; i < N; i++) {
            double gi = (double)dy[i] * j->g[i];
            sg += gi;
            sgx += gi * (x[i] - mean) * inv;
        }
        double mg = sg / (double)N, mgx = sgx / (double)N;
        for (int64_t i = 0; i < N; i++) {
            double xh = (x[i] - mean) * inv;
            dx[i] = (float)(inv * ((double)dy[i] * j->g[i] - mg - xh * mgx));
        }
    }
}

/* Column ranges: dscale and dbias sums over every row, in row order. */
static void lng_cols(int64_t c0, int64_t c1, void *arg) {
    const lng_job *j = arg;
    int64_t N = j->N;
    for (int64_t c = c0; c < c1; c++) {
        if (j->dg) j->dg[c] = 0;
        if (j->db) j->db[c] = 0;
    }
    for (int64_t r = 0; r < j->R; r++) {
        const float *x = j->x + r * N, *dy = j->dy + r * N;
        double mean = j->stats[2 * r], inv = j->stats[2 * r + 1];
        if (j->dg)
            for (int64_t c = c0; c < c1; c++) j->dg[c] += (double)dy[c] * ((x[c] - mean) * inv);
        if (j->db)
            for (int64_t c = c0; c < c1; c++) j->db[c] += dy[c];
    }
}

/* For each of the N positions of the normalised dims, its element of scale (broadcast). */
static void lng_scale_index(const ulc_rt_tensor *g, int nd, const int64_t *D, int64_t N,
                            int64_t *out) {
    int64_t st[ULC_RT_MAX_RANK], idx[ULC_RT_MAX_RANK] = {0}, off = 0;
    ulc_k_bcast_strides(g, nd, D, st);
    for (int64_t c = 0; c < N; c++) {
        out[c] = off;
        for (int d = nd - 1; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < D[d]) break;
            off -= st[d] * idx[d];
            idx[d] = 0;
        }
    }
}

static ulc_status lng_run(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[1], *g = k->in[2];
    ulc_rt_tensor *dg = k->n_out > 1 ? k->out[1] : NULL, *db = k->n_out > 2 ? k->out[2] : NULL;
    int axis;
    int64_t R, N;
    ULC_TRY(ulc_sh_layernorm_grad_geom(k, &axis, &R, &N));
    int64_t G = (int64_t)ulc_rt_numel(g);
    if (dg) memset(dg->data, 0, dg->nbytes);
    if (db) memset(db->data, 0, db->nbytes);
    if (R == 0 || N == 0) return ULC_OK;
    /* one allocation: stats (2R), column sums (2N), scale index (N), broadcast scale (N) */
    int bcast = G != N, sums = dg || db;
    size_t bytes = (size_t)(2 * R) * sizeof(double) + (sums ? (size_t)(2 * N) * sizeof(double) : 0) +
                   (bcast ? (size_t)N * (sizeof(int64_t) + sizeof(float)) : 0);
    char *buf = malloc(bytes);
    if (!buf) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (%zu bytes of workspace)", bytes);
    lng_job j = {k->in[0]->data, x->data, g->data, k->out[0]->data, (double *)buf, NULL, NULL, R, N,
                 ulc_k_attr_float(k, "epsilon", 1e-5f)};
    char *p = buf + (size_t)(2 * R) * sizeof(double);
    if (sums) {
        j.dg = dg ? (double *)p : NULL;
        j.db = db ? (double *)p + N : NULL;
        p += (size_t)(2 * N) * sizeof(double);
    }
    int64_t *gi = NULL;
    if (bcast) {
        gi = (int64_t *)p;
        float *ge = (float *)(gi + N);
        lng_scale_index(g, x->rank - axis, x->dims + axis, N, gi);
        for (int64_t c = 0; c < N; c++) ge[c] = ((const float *)g->data)[gi[c]];
        j.g = ge;
    }
    ulc_k_parallel(R, 8192 / N + 1, lng_rows, &j);
    if (sums) {
        ulc_k_parallel(N, 64, lng_cols, &j);
        /* fold the N column sums into scale's shape (in column order) */
        float *og = dg ? dg->data : NULL, *ob = db ? db->data : NULL;
        if (!bcast) {
            for (int64_t c = 0; c < N; c++) {
                if (og) og[c] = (float)j.dg[c];
                if (ob) ob[c] = (float)j.db[c];
            }
        } else {
            /* several columns per element: add in double in place of the sums already used */
            double *acc = malloc((size_t)(2 * G) * sizeof(double));
            if (!acc) {
                free(buf);
                return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (scale gradient sums)");
            }
            memset(acc, 0, (size_t)(2 * G) * sizeof(double));
            for (int64_t c = 0; c < N; c++) {
                if (og) acc[gi[c]] += j.dg[c];
                if (ob) acc[G + gi[c]] += j.db[c];
            }
            for (int64_t e = 0; e < G; e++) {
                if (og) og[e] = (float)acc[e];
                if (ob) ob[e] = (float)acc[G + e];
            }
            free(acc);
        }
    }
    free(buf);
    return ULC_OK;
}

/* ---- GatherGrad ------------------------------------------------------------------------------ */

typedef struct gg_job {
    const ulc_sh_gather_grad *g;
    const float *dy;
    const int64_t *idx; /* P indices in [0, A) */
    float *dd;
    int64_t blk, nb; /* columns per item, items per outer index */
} gg_job;

/* Item (o, column block): its slice of every ddata row, dy slices added in index order. */
static void gg_body(int64_t i0, int64_t i1, void *arg) {
    const gg_job *j = arg;
    const ulc_sh_gather_grad *g = j->g;
    int64_t A = g->A, I = g->I, P = g->P;
    for (int64_t it = i0; it < i1; it++) {
        int64_t o = it / j->nb, c0 = (it % j->nb) * j->blk;
        int64_t nc = I - c0 < j->blk ? I - c0 : j->blk;
        float *dd = j->dd + o * A * I + c0;
        const float *dy = j->dy + o * P * I + c0;
        for (int64_t a = 0; a < A; a++) memset(dd + a * I, 0, (size_t)nc * sizeof(float));
        for (int64_t p = 0; p < P; p++) {
            float *d = dd + j->idx[p] * I;
            const float *s = dy + p * I;
            for (int64_t c = 0; c < nc; c++) d[c] += s[c];
        }
    }
}

static ulc_status gg_run(ulc_kctx *k) {
    ulc_sh_gather_grad g;
    ULC_TRY(ulc_sh_gather_grad_geom(k, &g));
    if (ulc_rt_numel(k->out[0]) == 0) return ULC_OK;
    const ulc_rt_tensor *ind = k->in[1];
    int64_t *idx = malloc((size_t)(g.P ? g.P : 1) * sizeof(int64_t));
    if (!idx) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (%lld indices)", (long long)g.P);
    for (int64_t p = 0; p < g.P; p++) {
        int64_t v = ulc_k_int_at(ind, (uint64_t)p);
        if (v < -g.A || v >= g.A) {
            free(idx);
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "indices[%lld] = %lld is out of range for axis %d of size %lld",
                              (long long)p, (long long)v, g.axis, (long long)g.A);
        }
        idx[p] = v < 0 ? v + g.A : v;
    }
    /* Few outer indices (axis 0: an embedding's rows): split the columns too, so that every
     * thread has items; blocks of at least 64 columns keep the row loops contiguous. */
    int64_t blk = g.I;
    if (g.O < 32 && g.I > 128) {
        blk = (g.I + 15) / 16;
        blk = blk < 64 ? 64 : (blk + 15) / 16 * 16;
    }
    if (blk < 1) blk = 1;
    gg_job j = {&g, k->in[0]->data, idx, k->out[0]->data, blk, (g.I + blk - 1) / blk};
    if (j.nb < 1) j.nb = 1;
    int64_t work = (g.A + g.P) * blk;
    ulc_k_parallel(g.O * j.nb, 16384 / (work + 1) + 1, gg_body, &j);
    free(idx);
    return ULC_OK;
}

/* ---- MaxPoolGrad, AveragePoolGrad ------------------------------------------------------------ */

typedef struct pg_job {
    const ulc_sh_pool_grad *g;
    const float *dy, *x; /* x: MaxPoolGrad only */
    float *dx;
    int avg;
} pg_job;

/* One past the last tap t < k with b + t·dl <= in - 1 (k_nn_pool.c's rule). */
static inline int64_t pg_hi(int64_t b, int64_t dl, int64_t in, int64_t k) {
    if (b > in - 1) return 0;
    int64_t h = (in - 1 - b) / dl + 1;
    return h < k ? h : k;
}

/* One [n, c] plane per item, output positions in row-major order, taps in row-major window
 * order: the same enumeration as the forward's general loop. */
static void pg_body(int64_t r0, int64_t r1, void *arg) {
    const pg_job *j = arg;
    const ulc_sh_pool_grad *g = j->g;
    const ulc_nn_window *w = &g->w;
    int nsp = w->nsp;
    for (int64_t r = r0; r < r1; r++) {
        const float *dy = j->dy + r * g->osz, *x = j->x ? j->x + r * g->isz : NULL;
        float *dx = j->dx + r * g->isz;
        memset(dx, 0, (size_t)g->isz * sizeof(float));
        int64_t oc[ULC_NN_MAX_SP] = {0};
        for (int64_t o = 0; o < g->osz; o++) {
            int64_t base[ULC_NN_MAX_SP], lo[ULC_NN_MAX_SP], hi[ULC_NN_MAX_SP], t[ULC_NN_MAX_SP];
            int64_t taps = 1;
            for (int d = 0; d < nsp; d++) {
                int64_t b = oc[d] * w->s[d] - w->pb[d], dl = w->d[d];
                base[d] = b;
                lo[d] = b < 0 ? (-b + dl - 1) / dl : 0;
                hi[d] = pg_hi(b, dl, w->in[d], w->k[d]);
                taps *= hi[d] > lo[d] ? hi[d] - lo[d] : 0;
                t[d] = lo[d];
            }
            if (taps > 0) {
                float v = dy[o];
                int64_t best = -1;
                float bv = 0;
                if (j->avg) v /= (float)(g->include_pad ? g->kprod : taps);
                for (;;) {
                    int64_t off = 0;
                    for (int d = 0; d < nsp; d++) off = off * w->in[d] + base[d] + t[d] * w->d[d];
                    if (j->avg) {
                        dx[off] += v;
                    } else if (best < 0 || x[off] > bv) {
                        bv = x[off];
                        best = off;
                    }
                    int d = nsp - 1;
                    while (d >= 0 && ++t[d] == hi[d]) {
                        t[d] = lo[d];
                        d--;
                    }
                    if (d < 0) break;
                }
                if (!j->avg) dx[best] += v;
            }
            for (int d = nsp - 1; d >= 0 && ++oc[d] == w->out[d]; d--) oc[d] = 0;
        }
    }
}

/* 1-D and 2-D windows (1-D as a single row): the same enumeration as pg_body with the tap
 * ranges computed once per output row and column instead of per output position. */
static void pg_body2d(int64_t r0, int64_t r1, void *arg) {
    const pg_job *j = arg;
    const ulc_sh_pool_grad *g = j->g;
    const ulc_nn_window *w = &g->w;
    int two = w->nsp == 2;
    int64_t H = two ? w->in[0] : 1, W = w->in[two], OH = two ? w->out[0] : 1, OW = w->out[two];
    int64_t kh = two ? w->k[0] : 1, kw = w->k[two], sh = two ? w->s[0] : 1, sw = w->s[two];
    int64_t dh = two ? w->d[0] : 1, dw = w->d[two], ph = two ? w->pb[0] : 0, pw = w->pb[two];
    for (int64_t r = r0; r < r1; r++) {
        const float *dy = j->dy + r * g->osz, *x = j->x ? j->x + r * g->isz : NULL;
        float *dx = j->dx + r * g->isz;
        memset(dx, 0, (size_t)g->isz * sizeof(float));
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * sh - ph;
            int64_t tlo = h0 < 0 ? (-h0 + dh - 1) / dh : 0, thi = pg_hi(h0, dh, H, kh);
            if (tlo >= thi) continue;
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ow * sw - pw;
                int64_t ulo = w0 < 0 ? (-w0 + dw - 1) / dw : 0, uhi = pg_hi(w0, dw, W, kw);
                if (ulo >= uhi) continue;
                float v = dy[oh * OW + ow];
                if (j->avg) {
                    v /= (float)(g->include_pad ? g->kprod : (thi - tlo) * (uhi - ulo));
                    for (int64_t t = tlo; t < thi; t++) {
                        float *row = dx + (h0 + t * dh) * W + w0;
                        for (int64_t u = ulo; u < uhi; u++) row[u * dw] += v;
                    }
                } else {
                    int64_t best = (h0 + tlo * dh) * W + w0 + ulo * dw;
                    float bv = x[best];
                    for (int64_t t = tlo; t < thi; t++) {
                        const float *row = x + (h0 + t * dh) * W + w0;
                        for (int64_t u = ulo; u < uhi; u++)
                            if (row[u * dw] > bv) {
                                bv = row[u * dw];
                                best = (h0 + t * dh) * W + w0 + u * dw;
                            }
                    }
                    dx[best] += v;
                }
            }
        }
    }
}

static ulc_status pg_run_common(ulc_kctx *k, int avg) {
    ulc_sh_pool_grad g;
    ULC_TRY(ulc_sh_pool_grad_geom(k, avg, &g));
    if (g.planes == 0 || g.isz == 0) return ULC_OK;
    pg_job j = {&g, k->in[0]->data, avg ? NULL : k->in[1]->data, k->out[0]->data, avg};
    ulc_k_parallel(g.planes, ulc_k_grain(1 << 15, (double)g.osz * (double)g.kprod + (double)g.isz),
                   g.w.nsp <= 2 ? pg_body2d : pg_body, &j);
    return ULC_OK;
}

static ulc_status maxpool_grad_run(ulc_kctx *k) { return pg_run_common(k, 0); }
static ulc_status avgpool_grad_run(ulc_kctx *k) { return pg_run_common(k, 1); }

/* ---- registration ---------------------------------------------------------------------------- */

static const ulc_kernel k_relu_grad = {.run = relu_grad_run};
static const ulc_kernel k_gelu_grad = {.run = gelu_grad_run};
static const ulc_kernel k_softmax_grad = {.run = smg_run};
static const ulc_kernel k_layernorm_grad = {.run = lng_run};
static const ulc_kernel k_gather_grad = {.run = gg_run};
static const ulc_kernel k_maxpool_grad = {.run = maxpool_grad_run};
static const ulc_kernel k_avgpool_grad = {.run = avgpool_grad_run};

/* ConvGradData and ConvGradWeight's slots (k_grad_conv.c). */
void ulc_cpu_register_grad_conv(const ulc_kernel **table);

void ulc_cpu_register_grad(const ulc_kernel **table) {
    table[ULC_OP_ReluGrad] = &k_relu_grad;
    table[ULC_OP_GeluGrad] = &k_gelu_grad;
    table[ULC_OP_SoftmaxGrad] = &k_softmax_grad;
    table[ULC_OP_LogSoftmaxGrad] = &k_softmax_grad;
    table[ULC_OP_LayerNormGrad] = &k_layernorm_grad;
    table[ULC_OP_GatherGrad] = &k_gather_grad;
    table[ULC_OP_MaxPoolGrad] = &k_maxpool_grad;
    table[ULC_OP_AveragePoolGrad] = &k_avgpool_grad;
    ulc_cpu_register_grad_conv(table);
}
