/*
 * k_loss.c — CPU kernels of ulc's fused loss ops (domain "ulc", ir/ops_ulc.def):
 *
 *   SoftmaxCrossEntropy      per row r of z [R, V]: m = max z, lse = m + log Σ exp(z - m),
 *                            ce = lse - z[y] (0 for a label outside [0, V)), and with soft
 *                            targets p: sce = lse·Σp - Σ p·z
 *   SoftmaxCrossEntropyGrad  per row: dz = (dce' + dlse + dsce·Σp)·exp(z - lse) - dsce·p, then
 *                            dz[y] -= dce' (dce' = 0 on ignored rows)
 *
 * A language model's loss is this op over [B·T, vocabulary] logits: the log-softmax, the
 * one-hot target and their product are never materialised (one pass over z for the loss, one
 * for the gradient, which writes dz in place of three [R, V] temporaries). Rows are the
 * parallel items: each row's sums run in 8 float lanes in a fixed order, added in double, so
 * the bits do not depend on the thread count.
 *
 *   SquaredDistance          per row r of a, b [R, P]: d = Σ (a - b)²
 *   SquaredDistanceGrad      da = 2·dd[r]·(a - b), db = -da
 *
 * RFA's feature alignment over a vocabulary head is this op over [B, T·V]: one pass reading a
 * and b forward and one writing da backward, where Sub, Mul, ReduceSum and their gradients (an
 * Expand, two Muls and an Add) made eight. Items are chunks of SQ_CHUNK elements of a row, so a
 * few long rows still use every thread; each chunk sums in 8 float lanes per block of
 * SCE_BLOCK, added in double, and a row adds its chunks in order: the bits do not depend on
 * the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_elementwise.h"
#include "runtime/cpu/k_nn.h"

enum { SCE_BLOCK = 512, SQ_CHUNK = 1 << 16 };

typedef struct sce_job {
    const ulc_sh_sce *g;
    const float *z, *p;
    float *ce, *lse, *sce;      /* forward outputs (NULL: not produced) */
    const float *lse_in, *dce, *dlse, *dsce; /* gradient inputs (NULL: 0) */
    float *dz;
} sce_job;

static int64_t label_at(const ulc_rt_tensor *y, int64_t r) {
    if (!y) return -1;
    if (y->dtype == ULC_DT_I64) {
        int64_t v;
        memcpy(&v, (const char *)y->data + 8 * r, 8);
        return v;
    }
    int32_t v;
    memcpy(&v, (const char *)y->data + 4 * r, 4);
    return v;
}

static double lanes_sum(const float *l) {
    double s = 0;
    for (int i = 0; i < 8; i++) s += l[i];
    return s;
}

/* max of a row (NaN never wins; a row of NaN gives -inf, then NaN sums) */
static float row_max(const float *z, int64_t V) {
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int64_t c = 0;
    for (; c + 8 <= V; c += 8)
        for (int l = 0; l < 8; l++) m[l] = z[c + l] > m[l] ? z[c + l] : m[l];
    float r = -INFINITY;
    for (int l = 0; l < 8; l++) r = m[l] > r ? m[l] : r;
    for (; c < V; c++) r = z[c] > r ? z[c] : r;
    return r;
}

/* Σ a[c]·b[c] (b NULL: Σ a) in lanes, then double. */
static double row_dot(const float *a, const float *b, int64_t V) {
    float l8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    double tail = 0;
    int64_t c = 0;
    if (b) {
        for (; c + 8 <= V; c += 8)
            for (int l = 0; l < 8; l++) l8[l] += a[c + l] * b[c + l];
        for (; c < V; c++) tail += (double)a[c] * b[c];
    } else {
        for (; c + 8 <= V; c += 8)
            for (int l = 0; l < 8; l++) l8[l] += a[c + l];
        for (; c < V; c++) tail += a[c];
    }
    return lanes_sum(l8) + tail;
}

static void sce_fwd_body(int64_t r0, int64_t r1, void *arg) {
    const sce_job *j = arg;
    int64_t V = j->g->V;
    float buf[SCE_BLOCK];
    for (int64_t r = r0; r < r1; r++) {
        const float *z = j->z + r * V;
        float m = row_max(z, V);
        double s = 0;
        for (int64_t c0 = 0; c0 < V; c0 += SCE_BLOCK) {
            int64_t n = V - c0 < SCE_BLOCK ? V - c0 : SCE_BLOCK;
            for (int64_t c = 0; c < n; c++) buf[c] = z[c0 + c] - m;
            ulc_cpu_vexp_f32(buf, buf, n);
            s += row_dot(buf, NULL, n);
        }
        double lse = (double)m + log(s);
        if (j->lse) j->lse[r] = (float)lse;
        if (j->ce) {
            int64_t y = label_at(j->g->y, r);
            j->ce[r] = y >= 0 && y < V ? (float)(lse - (double)z[y]) : 0.0f;
        }
        if (j->sce) {
            const float *p = j->p + (j->g->p_rows == 1 ? 0 : r * V);
            j->sce[r] = (float)(lse * row_dot(p, NULL, V) - row_dot(p, z, V));
        }
    }
}

static void sce_grad_body(int64_t r0, int64_t r1, void *arg) {
    const sce_job *j = arg;
    int64_t V = j->g->V;
    for (int64_t r = r0; r < r1; r++) {
        const float *z = j->z + r * V;
        float *dz = j->dz + r * V;
        int64_t y = label_at(j->g->y, r);
        int hard = y >= 0 && y < V;
        double dce = j->dce && hard ? j->dce[r] : 0.0;
        double dsce = j->dsce ? j->dsce[r] : 0.0;
        const float *p = j->p ? j->p + (j->g->p_rows == 1 ? 0 : r * V) : NULL;
        double coef = dce + (j->dlse ? j->dlse[r] : 0.0) + (p && dsce != 0.0 ? dsce * row_dot(p, NULL, V) : 0.0);
        float lse = j->lse_in[r], cf = (float)coef, ds = (float)dsce;
        for (int64_t c = 0; c < V; c++) dz[c] = z[c] - lse;
        ulc_cpu_vexp_f32(dz, dz, V);
        if (p && ds != 0.0f)
            for (int64_t c = 0; c < V; c++) dz[c] = cf * dz[c] - ds * p[c];
        else
            for (int64_t c = 0; c < V; c++) dz[c] *= cf;
        if (hard) dz[y] -= (float)dce;
    }
}

static const float *opt_f32(const ulc_kctx *k, int slot) {
    return slot < k->n_in && k->in[slot] ? k->in[slot]->data : NULL;
}

static ulc_status sce_run(ulc_kctx *k) {
    ulc_sh_sce g;
    ULC_TRY(ulc_sh_sce_geom(k, 0, &g));
    sce_job j = {.g = &g, .z = g.z->data, .p = g.p ? g.p->data : NULL};
    float **outs[3] = {&j.ce, &j.lse, &j.sce};
    for (int i = 0; i < 3 && i < k->n_out; i++)
        if (k->out[i]) *outs[i] = k->out[i]->data;
    if (g.R == 0 || g.V == 0) {
        for (int i = 0; i < 3 && i < k->n_out; i++)
            if (k->out[i] && g.R) memset(k->out[i]->data, 0, k->out[i]->nbytes);
        if (j.lse && g.V == 0)
            for (int64_t r = 0; r < g.R; r++) j.lse[r] = -INFINITY;
        return ULC_OK;
    }
    ulc_k_parallel(g.R, ulc_k_grain(1 << 15, 4.0 * (double)g.V), sce_fwd_body, &j);
    return ULC_OK;
}

static ulc_status sce_grad_run(ulc_kctx *k) {
    ulc_sh_sce g;
    ULC_TRY(ulc_sh_sce_geom(k, 1, &g));
    sce_job j = {.g = &g, .z = g.z->data, .p = g.p ? g.p->data : NULL, .lse_in = opt_f32(k, 2),
                 .dce = opt_f32(k, 3), .dlse = opt_f32(k, 4), .dsce = opt_f32(k, 5),
                 .dz = k->out[0]->data};
    if (g.R == 0 || g.V == 0) return ULC_OK;
    ulc_k_parallel(g.R, ulc_k_grain(1 << 15, 4.0 * (double)g.V), sce_grad_body, &j);
    return ULC_OK;
}

/* ---- SquaredDistance ------------------------------------------------------------------------ */

typedef struct sq_job {
    const float *a, *b, *dd;
    float *da, *db;
    double *part; /* forward: one sum per chunk */
    int64_t P, nchunk;
} sq_job;

static void sq_fwd_body(int64_t i0, int64_t i1, void *arg) {
    const sq_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        int64_t r = i / j->nchunk, c0 = i % j->nchunk * SQ_CHUNK;
        int64_t c1 = c0 + SQ_CHUNK < j->P ? c0 + SQ_CHUNK : j->P;
        const float *a = j->a + r * j->P, *b = j->b + r * j->P;
        double s = 0;
        for (int64_t q0 = c0; q0 < c1; q0 += SCE_BLOCK) {
            int64_t q1 = q0 + SCE_BLOCK < c1 ? q0 + SCE_BLOCK : c1, c = q0;
            float l8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (; c + 8 <= q1; c += 8)
                for (int l = 0; l < 8; l++) {
                    float d = a[c + l] - b[c + l];
                    l8[l] += d * d;
                }
            s += lanes_sum(l8);
            for (; c < q1; c++) {
                double d = (double)a[c] - b[c];
                s += d * d;
            }
        }
        j->part[i] = s;
    }
}

static void sq_grad_body(int64_t i0, int64_t i1, void *arg) {
    const sq_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        int64_t r = i / j->nchunk, c0 = i % j->nchunk * SQ_CHUNK;
        int64_t c1 = c0 + SQ_CHUNK < j->P ? c0 + SQ_CHUNK : j->P;
        size_t o = (size_t)(r * j->P);
        const float *a = j->a + o, *b = j->b + o;
        float g = 2.0f * j->dd[r], *da = j->da ? j->da + o : NULL, *db = j->db ? j->db + o : NULL;
        if (da)
            for (int64_t c = c0; c < c1; c++) da[c] = g * (a[c] - b[c]);
        if (db)
            for (int64_t c = c0; c < c1; c++) db[c] = -(g * (a[c] - b[c]));
    }
}

static ulc_status sq_run(ulc_kctx *k) {
    int64_t R, P;
    ULC_TRY(ulc_sh_sqdist_geom(k, 0, &R, &P));
    float *d = k->out[0]->data;
    if (R == 0) return ULC_OK;
    if (P == 0) {
        memset(d, 0, (size_t)R * sizeof *d);
        return ULC_OK;
    }
    sq_job j = {.a = k->in[0]->data, .b = k->in[1]->data, .P = P, .nchunk = (P + SQ_CHUNK - 1) / SQ_CHUNK};
    if (!(j.part = malloc((size_t)(R * j.nchunk) * sizeof *j.part)))
        return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (%lld partial sums)", (long long)(R * j.nchunk));
    ulc_k_parallel(R * j.nchunk, ulc_k_grain(1 << 15, 2.0 * (double)(P < SQ_CHUNK ? P : SQ_CHUNK)),
                   sq_fwd_body, &j);
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t c = 0; c < j.nchunk; c++) s += j.part[r * j.nchunk + c];
        d[r] = (float)s;
    }
    free(j.part);
    return ULC_OK;
}

static ulc_status sq_grad_run(ulc_kctx *k) {
    int64_t R, P;
    ULC_TRY(ulc_sh_sqdist_geom(k, 1, &R, &P));
    sq_job j = {.a = k->in[0]->data, .b = k->in[1]->data, .dd = k->in[2]->data,
                .da = k->out[0] ? k->out[0]->data : NULL,
                .db = k->n_out > 1 && k->out[1] ? k->out[1]->data : NULL, .P = P,
                .nchunk = (P + SQ_CHUNK - 1) / SQ_CHUNK};
    if (R == 0 || P == 0) return ULC_OK;
    ulc_k_parallel(R * j.nchunk, ulc_k_grain(1 << 15, 2.0 * (double)(P < SQ_CHUNK ? P : SQ_CHUNK)),
                   sq_grad_body, &j);
    return ULC_OK;
}

static const ulc_kernel k_sce = {.run = sce_run};
static const ulc_kernel k_sce_grad = {.run = sce_grad_run};
static const ulc_kernel k_sq = {.run = sq_run};
static const ulc_kernel k_sq_grad = {.run = sq_grad_run};

void ulc_cpu_register_loss(const ulc_kernel **table) {
    table[ULC_OP_SoftmaxCrossEntropy] = &k_sce;
    table[ULC_OP_SoftmaxCrossEntropyGrad] = &k_sce_grad;
    table[ULC_OP_SquaredDistance] = &k_sq;
    table[ULC_OP_SquaredDistanceGrad] = &k_sq_grad;
}
