/*
 * k_nn_wino.c — Winograd convolution F(f×f, 3×3), f = 2 or 4 (Lavin & Gray, "Fast Algorithms
 * for Convolutional Neural Networks", 2016), for the float32 3×3 stride-1 convolutions that make
 * up most of a ResNet's arithmetic, forward (Conv) and backward-data (ConvGradData, which for
 * stride 1 is a 3×3 convolution of dy with W's channels swapped and its taps reversed).
 *
 * The output is cut into f×f tiles; tile t reads the a×a input patch d_t (a = f + 2) at its
 * top-left corner. With U = G·g·Gᵀ (each filter, transformed once) and V = Bᵀ·d·B (each patch),
 *
 *     y_t = Aᵀ · [ Σ_c U[m,c] ⊙ V_t[c] ] · A,
 *
 *   F(2,3): Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]
 *           Aᵀ = [1 1 1 0; 0 1 -1 -1]
 *   F(4,3): Bᵀ = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
 *                 0 4 0 -5 0 1]
 *           G  = [¼ 0 0; -⅙ -⅙ -⅙; -⅙ ⅙ -⅙; 1/24 1/12 ⅙; 1/24 -1/12 ⅙; 0 0 1]
 *           Aᵀ = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *
 * so the Σ_c becomes a² independent matrix products (one per position ξ of the a×a transform
 * domain): M_ξ[t, m] = Σ_c V_ξ[t, c] · U_ξ[c, m]. Per output and channel pair that is 16/4 = 4
 * multiplies (F(2,3)) or 36/16 = 2.25 (F(4,3)) where direct convolution does 9. F(2,3)'s
 * transforms only add, subtract and halve, so its rounding stays at direct convolution's level;
 * F(4,3)'s larger coefficients cost about one more decimal digit (relative error ~1e-6 against
 * ~1e-7), well inside the 1e-4 the runtime is held to. The shape picks f (pick_tile): F(4,3)
 * where it has enough tiles and its padded tiles waste little, F(2,3) on small outputs and on
 * layers whose few tiles make reading the (a²/9 times larger) transformed weights the cost.
 *
 * Work is done in blocks of whole tile rows (a tile row: one image, TW tiles side by side).
 * When there are enough tiles each thread takes whole blocks sized for its L2 and runs the three
 * phases below on them alone; otherwise (few tiles, wide layers) blocks are sized so that one ξ's
 * V fits in L2 and every phase is shared by all threads:
 *   1. input transform, one (tile row, 8-channel block) per item: the a input rows the tile row
 *      reads are first copied into a small NCHW8C-style buffer with the padding written as
 *      zeros (from either layout: this also does the plain → blocked change), so the
 *      transform itself has no bounds checks; V is stored [ξ][tile][C].
 *   2. the 16 products, one (ξ, 16-channel output block) per item, with a register-blocked
 *      AVX2 kernel (6 tiles × 16 output channels in 12 accumulators; 12 tiles × 8 for a last
 *      odd block), the whole channel sum in registers; results go to M [tile][M/8][ξ][8].
 *   3. output transform, one (tile row, 8-channel output block) per item, adding the bias,
 *      then the fused addend and activation while writing Y in its layout.
 * Every output element is computed by one thread in a fixed order: results do not depend on
 * the thread count.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_nn.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE inline __attribute__((always_inline))

#define MR2 6 /* tiles per call of the two-block product kernel */
#define MR1 12 /* tiles per call of the one-block product kernel */
#define V_XI_BYTES (192 * 1024) /* shared blocks: one ξ's V, what stays in L2 */
#define OWN_BYTES (384 * 1024) /* a thread's own block: its V and M, what stays in L2 */
#define OWN_MIN_TILES 12 /* fewer tiles per own block than this: shared blocks instead */

struct ulc_wino {
    ulc_wino_geom g;
    int f, a, xi; /* output tile side, input rows per tile row (f + 2), a² (im2col: 1, kh, 1) */
    int64_t K; /* the products' reduction length: C (Winograd), kh·kw·C (im2col) */
    int64_t cb, mb; /* 8-channel blocks of the input and of the output */
    int64_t th, tw; /* tile rows per image, tiles per tile row */
    int64_t lw; /* columns of the input row buffer: f·tw + 2 */
    int64_t rows; /* tile rows per shared block */
    int64_t own_rows; /* tile rows per thread-own block; 0: shared blocks only */
    int64_t npair; /* output groups: mb / 2 pairs, plus one single block when mb is odd */
    int zmm; /* phase 2 on the AVX-512 kernels: items are (ξ, two groups) */
    int64_t gitems; /* phase 2's items */
    float *u; /* [ξ][group][K][16 or 8]: U_ξ, 64-byte aligned */
};

/* Winograd's kernel: 3×3, stride 1. */
static int is_3x3s1(const ulc_wino_geom *g) {
    return g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1;
}

int ulc_wino_fits(const ulc_wino_geom *g) {
    int tile_ok = g->tile == 0 || g->tile == 1 || ((g->tile == 2 || g->tile == 4) && is_3x3s1(g));
    return g->n > 0 && g->c > 0 && g->m > 0 && g->c % 8 == 0 && g->m % 8 == 0 && g->ih > 0 &&
           g->iw > 0 && g->oh > 0 && g->ow > 0 && g->pt >= 0 && g->pl >= 0 && g->kh > 0 &&
           g->kw > 0 && g->sh > 0 && g->sw > 0 && tile_ok && ulc_k_avx2();
}

/* Cost of each tile size: a² products of T tiles (padded ones included) each, plus reading U
 * (a² of C × M), which weighs like 16 tiles' rows: on layers with few tiles and many channels
 * the weights, not the arithmetic, set the time. F(4,3) is taken when it saves a tenth and its
 * U stays within F4_MAX_U_BYTES: its transformed filters are 36/9 = 4× the layer's weights
 * (F(2,3)'s 16/9), kept for the session's life, and the widest layers' (ResNet's 512-channel
 * stage: 36 MiB each) would double a ResNet's resident memory for little time (their few tiles
 * make them weight-bound anyway). */
#define F4_MAX_U_BYTES (10u << 20)

static int pick_tile(const ulc_wino_geom *g) {
    if (g->tile) return g->tile;
    if (!is_3x3s1(g)) return 1;
    if ((double)36 * (double)g->c * (double)g->m * sizeof(float) > F4_MAX_U_BYTES) return 2;
    double cost[2];
    for (int i = 0; i < 2; i++) {
        int64_t f = i ? 4 : 2;
        double tiles = (double)g->n * (double)((g->oh + f - 1) / f) * (double)((g->ow + f - 1) / f);
        cost[i] = (double)((f + 2) * (f + 2)) * (tiles + 16.0);
    }
    return cost[1] < 0.9 * cost[0] ? 4 : 2;
}

ulc_wino *ulc_wino_create(const ulc_wino_geom *g) {
    if (!ulc_wino_fits(g)) return NULL;
    ulc_wino *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->g = *g;
    w->f = pick_tile(g);
    w->cb = g->c / 8;
    w->mb = g->m / 8;
    w->th = (g->oh + w->f - 1) / w->f;
    w->tw = (g->ow + w->f - 1) / w->f;
    if (w->f == 1) {
        w->a = (int)g->kh;
        w->xi = 1;
        w->K = g->kh * g->kw * g->c;
        w->lw = (g->ow - 1) * g->sw + g->kw;
    } else {
        w->a = w->f + 2;
        w->xi = w->a * w->a;
        w->K = g->c;
        w->lw = w->f * w->tw + 2;
    }
    w->npair = (w->mb + 1) / 2;
    w->zmm = ulc_k_avx512();
    w->gitems = (int64_t)w->xi * (w->zmm ? (w->npair + 1) / 2 : w->npair);
    int64_t tmax = V_XI_BYTES / (4 * w->K);
    if (tmax < 2 * MR1) tmax = 2 * MR1;
    w->rows = tmax / w->tw;
    if (w->rows < 1) w->rows = 1;
    if (w->rows > g->n * w->th) w->rows = g->n * w->th;
    /* Own blocks (each thread transforms, multiplies and writes back its own tile rows, all
     * in its L2) when such a block still holds enough tiles to amortise reading U. */
    int64_t per_tile = w->xi * (w->K + g->m) * (int64_t)sizeof(float);
    w->own_rows = OWN_BYTES / per_tile / w->tw;
    if (w->own_rows * w->tw < OWN_MIN_TILES) w->own_rows = 0;
    w->u = ulc_nn_alloc((size_t)w->xi * (size_t)w->K * (size_t)g->m * sizeof(float));
    if (!w->u) {
        free(w);
        return NULL;
    }
    return w;
}

void ulc_wino_free(ulc_wino *w) {
    if (!w) return;
    free(w->u);
    free(w);
}

int ulc_wino_tile(const ulc_wino *w) { return w->f; }

/* Whether this run uses own blocks: enough of them to keep every thread busy. */
static int use_own(const ulc_wino *w) {
    if (!w->own_rows) return 0;
    int64_t blocks = (w->g.n * w->th + w->own_rows - 1) / w->own_rows;
    return blocks >= 4 * (int64_t)omp_get_max_threads();
}

/* One block's V and M. */
static size_t block_bytes(const ulc_wino *w, int64_t rows) {
    size_t t = (size_t)(rows * w->tw);
    return ulc_nn_align64((size_t)w->xi * t * (size_t)(w->K + w->g.m) * sizeof(float));
}

/* One thread's row buffers: a input rows and f output rows of 8-channel pixels (f·tw each). */
static size_t rowbuf_bytes(const ulc_wino *w) {
    return ulc_nn_align64((size_t)(w->a * w->lw + w->f * w->f * w->tw) * 8 * sizeof(float));
}

/* Scratch: [blocks (one, or one per thread)][row buffers, one per thread]. */
size_t ulc_wino_scratch_bytes(const ulc_wino *w) {
    size_t nt = (size_t)omp_get_max_threads();
    size_t blocks = use_own(w) ? block_bytes(w, w->own_rows) * nt : block_bytes(w, w->rows);
    return blocks + rowbuf_bytes(w) * nt + 64;
}

/* ---- weights: U = G·g·Gᵀ ------------------------------------------------------------------- */

typedef struct wt_job {
    ulc_wino *w;
    const float *W;
    int flip; /* 0: W is [M, C, kh, kw]; 1: W is [C, M, 3, 3] read with reversed taps */
} wt_job;

/* G's rows for each tile size (a × 3). */
static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double G4[6][3] = {{1.0 / 4, 0, 0},
                                {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                {0, 0, 1}};

/* item = (output channel m, input channel c): U_ξ[c, m] for every ξ. */
static void wt_body(int64_t i0, int64_t i1, void *arg) {
    const wt_job *j = arg;
    ulc_wino *w = j->w;
    int64_t C = w->g.c, M = w->g.m;
    size_t xs = (size_t)C * (size_t)M; /* between ξ */
    int A = w->a;
    const double(*G)[3] = w->f == 4 ? G4 : G2;
    for (int64_t it = i0; it < i1; it++) {
        int64_t m = it / C, c = it % C, grp = m / 16;
        int64_t width = grp * 16 + 16 <= M ? 16 : 8;
        float *dst = w->u + (size_t)(grp * w->K * 16 + c * width + m % width);
        if (w->f == 1) {
            /* im2col: row k = tap·C + c of U holds W[m, c, tap] */
            int64_t taps = w->g.kh * w->g.kw;
            for (int64_t tap = 0; tap < taps; tap++)
                dst[(size_t)(tap * C * width)] = j->W[(m * C + c) * taps + tap];
            continue;
        }
        double g[3][3], t[6][3];
        for (int r = 0; r < 3; r++)
            for (int q = 0; q < 3; q++)
                g[r][q] = j->flip ? j->W[((c * M + m) * 3 + (2 - r)) * 3 + (2 - q)]
                                  : j->W[((m * C + c) * 3 + r) * 3 + q];
        for (int r = 0; r < A; r++)
            for (int q = 0; q < 3; q++)
                t[r][q] = G[r][0] * g[0][q] + G[r][1] * g[1][q] + G[r][2] * g[2][q];
        for (int r = 0; r < A; r++)
            for (int q = 0; q < A; q++)
                dst[(size_t)(r * A + q) * xs] =
                    (float)(t[r][0] * G[q][0] + t[r][1] * G[q][1] + t[r][2] * G[q][2]);
    }
}

void ulc_wino_set_weights(ulc_wino *w, const float *W, int flip) {
    wt_job j = {w, W, flip};
    ulc_k_parallel(w->g.m * w->g.c, 256, wt_body, &j);
}

/* ---- one block's run ----------------------------------------------------------------------- */

typedef struct wino_job {
    const ulc_wino *w;
    const ulc_wino_io *io;
    int64_t r0, nr, T; /* first global tile row, tile rows, tiles in this block */
    float *V; /* [ξ][T][K] */
    float *Mo; /* [T][mb][ξ][8] */
    char *rowbuf; /* per-thread row buffers (rowbuf_bytes apart) */
} wino_job;

static float *my_rowbuf(const wino_job *j) {
    return (float *)(j->rowbuf + rowbuf_bytes(j->w) * (size_t)omp_get_thread_num());
}

/* r[i][j] → r[j][i] for an 8×8 block held in 8 registers. */
AVX2 static INLINE void tr8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Bᵀ·d·B on a×a vectors: d[r][q] at p + (r·stride + q)·8; the a² results go to v + ξ·xs. */
AVX2 static INLINE void in_tf2(const float *p, size_t stride, float *v, size_t xs) {
    __m256 t[4][4];
    for (int r = 0; r < 4; r++) {
        const float *q = p + (size_t)r * stride * 8;
        __m256 d0 = _mm256_load_ps(q), d1 = _mm256_load_ps(q + 8);
        __m256 d2 = _mm256_load_ps(q + 16), d3 = _mm256_load_ps(q + 24);
        t[r][0] = _mm256_sub_ps(d0, d2);
        t[r][1] = _mm256_add_ps(d1, d2);
        t[r][2] = _mm256_sub_ps(d2, d1);
        t[r][3] = _mm256_sub_ps(d1, d3);
    }
    for (int q = 0; q < 4; q++) {
        _mm256_storeu_ps(v + (size_t)(0 + q) * xs, _mm256_sub_ps(t[0][q], t[2][q]));
        _mm256_storeu_ps(v + (size_t)(4 + q) * xs, _mm256_add_ps(t[1][q], t[2][q]));
        _mm256_storeu_ps(v + (size_t)(8 + q) * xs, _mm256_sub_ps(t[2][q], t[1][q]));
        _mm256_storeu_ps(v + (size_t)(12 + q) * xs, _mm256_sub_ps(t[1][q], t[3][q]));
    }
}

/* F(4,3)'s Bᵀ on six vectors. */
#define BT6(d0, d1, d2, d3, d4, d5, r)                                                             \
    do {                                                                                           \
        __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f);                           \
        __m256 two = _mm256_set1_ps(2.0f);                                                         \
        __m256 s12 = _mm256_add_ps(d1, d2), s34 = _mm256_add_ps(d3, d4);                           \
        __m256 m21 = _mm256_sub_ps(d2, d1), m43 = _mm256_sub_ps(d4, d3);                           \
        __m256 m42 = _mm256_sub_ps(d4, d2), m31 = _mm256_sub_ps(d3, d1);                           \
        r[0] = _mm256_fnmadd_ps(five, d2, _mm256_fmadd_ps(four, d0, d4));                          \
        r[1] = _mm256_fnmadd_ps(four, s12, s34);                                                   \
        r[2] = _mm256_fnmadd_ps(four, m21, m43);                                                   \
        r[3] = _mm256_fmadd_ps(two, m31, m42);                                                     \
        r[4] = _mm256_fnmadd_ps(two, m31, m42);                                                    \
        r[5] = _mm256_fnmadd_ps(five, d3, _mm256_fmadd_ps(four, d1, d5));                          \
    } while (0)

AVX2 static INLINE void in_tf4(const float *p, size_t stride, float *v, size_t xs) {
    __m256 t[6][6];
    for (int r = 0; r < 6; r++) {
        const float *q = p + (size_t)r * stride * 8;
        __m256 d0 = _mm256_load_ps(q), d1 = _mm256_load_ps(q + 8), d2 = _mm256_load_ps(q + 16);
        __m256 d3 = _mm256_load_ps(q + 24), d4 = _mm256_load_ps(q + 32), d5 = _mm256_load_ps(q + 40);
        BT6(d0, d1, d2, d3, d4, d5, t[r]);
    }
    for (int q = 0; q < 6; q++) {
        __m256 r[6];
        BT6(t[0][q], t[1][q], t[2][q], t[3][q], t[4][q], t[5][q], r);
        for (int i = 0; i < 6; i++) _mm256_storeu_ps(v + (size_t)(i * 6 + q) * xs, r[i]);
    }
}

/* Phase 1: item = (tile row, input channel block). */
AVX2 static void in_body(int64_t i0, int64_t i1, void *arg) {
    const wino_job *j = arg;
    const ulc_wino *w = j->w;
    const ulc_wino_geom *g = &w->g;
    int64_t C = g->c, K = w->K, IH = g->ih, IW = g->iw, TW = w->tw, LW = w->lw;
    int f = w->f, A = w->a;
    int64_t rstep = f == 1 ? g->sh : f; /* input rows between tile rows */
    float *L = my_rowbuf(j);
    for (int64_t it = i0; it < i1; it++) {
        int64_t rr = it / w->cb, cb = it % w->cb, row = j->r0 + rr;
        int64_t n = row / w->th, ty = row % w->th;
        /* the a input rows as [a][LW][8], zeros outside the image */
        for (int r = 0; r < A; r++) {
            float *dst = L + (size_t)r * LW * 8;
            int64_t iy = rstep * ty - g->pt + r;
            int64_t q0 = g->pl, q1 = g->pl + IW; /* columns that hold the image */
            if (q1 > LW) q1 = LW;
            if (iy < 0 || iy >= IH || q0 >= q1) {
                memset(dst, 0, (size_t)LW * 8 * sizeof(float));
                continue;
            }
            if (q0 > 0) memset(dst, 0, (size_t)q0 * 8 * sizeof(float));
            if (q1 < LW) memset(dst + q1 * 8, 0, (size_t)(LW - q1) * 8 * sizeof(float));
            if (j->io->xb) {
                const float *src = j->io->x + (((n * w->cb + cb) * IH + iy) * IW) * 8;
                memcpy(dst + q0 * 8, src, (size_t)(q1 - q0) * 8 * sizeof(float));
            } else {
                const float *src = j->io->x + ((n * C + cb * 8) * IH + iy) * IW;
                size_t plane = (size_t)(IH * IW);
                int64_t q = q0;
                for (; q + 8 <= q1; q += 8) {
                    /* 8 channels × 8 columns: an 8×8 transpose */
                    __m256 blk[8];
                    for (int c = 0; c < 8; c++) blk[c] = _mm256_loadu_ps(src + c * plane + (q - q0));
                    tr8(blk);
                    for (int c = 0; c < 8; c++) _mm256_store_ps(dst + (q + c) * 8, blk[c]);
                }
                for (; q < q1; q++)
                    for (int c = 0; c < 8; c++) dst[q * 8 + c] = src[c * plane + (q - q0)];
            }
        }
        size_t xs = (size_t)j->T * (size_t)K; /* between ξ planes of V */
        float *v = j->V + (size_t)(rr * TW) * (size_t)K + (size_t)cb * 8;
        for (int64_t tx = 0; tx < TW; tx++, v += K) {
            if (f == 1) {
                /* im2col: the kh·kw taps of this output pixel, tap-major */
                for (int r = 0; r < A; r++) {
                    const float *p = L + ((size_t)r * LW + (size_t)(tx * g->sw)) * 8;
                    for (int64_t q = 0; q < g->kw; q++)
                        _mm256_storeu_ps(v + (size_t)((r * g->kw + q) * C),
                                         _mm256_load_ps(p + q * 8));
                }
            } else if (f == 2)
                in_tf2(L + (size_t)(2 * tx) * 8, (size_t)LW, v, xs);
            else
                in_tf4(L + (size_t)(4 * tx) * 8, (size_t)LW, v, xs);
        }
    }
}

/* nt tiles (rows of v, C apart) × 16 output channels (u: [C][16]); o: M for the first tile and
 * block, ots floats between tiles, ob floats between the two blocks. The accumulators are
 * named, not an array, so that they stay in registers; nt is a constant after inlining. */
#define ACC2(T)                                                                                    \
    do {                                                                                           \
        if (nt > T) {                                                                              \
            __m256 b = _mm256_broadcast_ss(v + T * C + c);                                         \
            a##T##0 = _mm256_fmadd_ps(b, u0, a##T##0);                                             \
            a##T##1 = _mm256_fmadd_ps(b, u1, a##T##1);                                             \
        }                                                                                          \
    } while (0)
#define ST2(T)                                                                                     \
    do {                                                                                           \
        if (nt > T) {                                                                              \
            _mm256_storeu_ps(o + T * ots, a##T##0);                                                \
            _mm256_storeu_ps(o + T * ots + ob, a##T##1);                                          \
        }                                                                                          \
    } while (0)

AVX2 static INLINE void mk2(int nt, int64_t C, const float *v, const float *u, float *o,
                            int64_t ots, int64_t ob) {
    __m256 z = _mm256_setzero_ps();
    __m256 a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z;
    __m256 a30 = z, a31 = z, a40 = z, a41 = z, a50 = z, a51 = z;
    for (int64_t c = 0; c < C; c++) {
        __m256 u0 = _mm256_load_ps(u + c * 16), u1 = _mm256_load_ps(u + c * 16 + 8);
        ACC2(0); ACC2(1); ACC2(2); ACC2(3); ACC2(4); ACC2(5);
    }
    ST2(0); ST2(1); ST2(2); ST2(3); ST2(4); ST2(5);
}

#define ACC1(T)                                                                                    \
    do {                                                                                           \
        if (nt > T) a##T = _mm256_fmadd_ps(_mm256_broadcast_ss(v + T * C + c), u0, a##T);          \
    } while (0)
#define ST1(T)                                                                                     \
    do {                                                                                           \
        if (nt > T) _mm256_storeu_ps(o + T * ots, a##T);                                           \
    } while (0)

/* nt tiles × 8 output channels (u: [C][8]). */
AVX2 static INLINE void mk1(int nt, int64_t C, const float *v, const float *u, float *o,
                            int64_t ots, int64_t ob) {
    (void)ob;
    __m256 z = _mm256_setzero_ps();
    __m256 a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z, a8 = z, a9 = z;
    __m256 a10 = z, a11 = z;
    for (int64_t c = 0; c < C; c++) {
        __m256 u0 = _mm256_load_ps(u + c * 8);
        ACC1(0); ACC1(1); ACC1(2); ACC1(3); ACC1(4); ACC1(5);
        ACC1(6); ACC1(7); ACC1(8); ACC1(9); ACC1(10); ACC1(11);
    }
    ST1(0); ST1(1); ST1(2); ST1(3); ST1(4); ST1(5); ST1(6); ST1(7); ST1(8); ST1(9); ST1(10);
    ST1(11);
}

#define MK_CASE(K, N) \
    case N: K(N, C, v, u, o, ots, ob); break

AVX2 static void mk2_n(int nt, int64_t C, const float *v, const float *u, float *o, int64_t ots,
                       int64_t ob) {
    switch (nt) {
        MK_CASE(mk2, 1); MK_CASE(mk2, 2); MK_CASE(mk2, 3);
        MK_CASE(mk2, 4); MK_CASE(mk2, 5); MK_CASE(mk2, 6);
    default: break;
    }
}

AVX2 static void mk1_n(int nt, int64_t C, const float *v, const float *u, float *o, int64_t ots,
                       int64_t ob) {
    switch (nt) {
        MK_CASE(mk1, 1); MK_CASE(mk1, 2); MK_CASE(mk1, 3); MK_CASE(mk1, 4);
        MK_CASE(mk1, 5); MK_CASE(mk1, 6); MK_CASE(mk1, 7); MK_CASE(mk1, 8);
        MK_CASE(mk1, 9); MK_CASE(mk1, 10); MK_CASE(mk1, 11); MK_CASE(mk1, 12);
    default: break;
    }
}

/* ---- the same products on AVX-512F: a 16-channel group is one zmm register ---- */

#define AVX512 __attribute__((target("avx512f,avx2,fma")))

/* The low and high 8 floats of a zmm register into two 8-channel blocks of M. */
#define STZ(p, q, acc)                                                                             \
    do {                                                                                           \
        _mm256_storeu_ps(p, _mm512_castps512_ps256(acc));                                          \
        _mm256_storeu_ps(q, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));   \
    } while (0)

/* nt tiles × 32 output channels: two groups, u0 and u1 ([C][16] each); their M blocks start at
 * o and o + 2·ob. 24 accumulators, two loads of U and nt broadcasts of V per channel. */
#define ACCZ2(T)                                                                                   \
    do {                                                                                           \
        if (nt > T) {                                                                              \
            __m512 b = _mm512_set1_ps(v[T * C + c]);                                               \
            a##T##0 = _mm512_fmadd_ps(b, x0, a##T##0);                                             \
            a##T##1 = _mm512_fmadd_ps(b, x1, a##T##1);                                             \
        }                                                                                          \
    } while (0)
#define STZ2(T)                                                                                    \
    do {                                                                                           \
        if (nt > T) {                                                                              \
            STZ(o + T * ots, o + T * ots + ob, a##T##0);                                           \
            STZ(o + T * ots + 2 * ob, o + T * ots + 3 * ob, a##T##1);                              \
        }                                                                                          \
    } while (0)

AVX512 static INLINE void mz2(int nt, int64_t C, const float *v, const float *u0, const float *u1,
                              float *o, int64_t ots, int64_t ob) {
    __m512 z = _mm512_setzero_ps();
    __m512 a00 = z, a01 = z, a10 = z, a11 = z, a20 = z, a21 = z, a30 = z, a31 = z;
    __m512 a40 = z, a41 = z, a50 = z, a51 = z, a60 = z, a61 = z, a70 = z, a71 = z;
    __m512 a80 = z, a81 = z, a90 = z, a91 = z, a100 = z, a101 = z, a110 = z, a111 = z;
    for (int64_t c = 0; c < C; c++) {
        __m512 x0 = _mm512_load_ps(u0 + c * 16), x1 = _mm512_load_ps(u1 + c * 16);
        ACCZ2(0); ACCZ2(1); ACCZ2(2); ACCZ2(3); ACCZ2(4); ACCZ2(5);
        ACCZ2(6); ACCZ2(7); ACCZ2(8); ACCZ2(9); ACCZ2(10); ACCZ2(11);
    }
    STZ2(0); STZ2(1); STZ2(2); STZ2(3); STZ2(4); STZ2(5);
    STZ2(6); STZ2(7); STZ2(8); STZ2(9); STZ2(10); STZ2(11);
}

/* nt tiles × 16 output channels (one group, u: [C][16]). */
#define ACCZ1(T)                                                                                   \
    do {                                                                                           \
        if (nt > T) a##T = _mm512_fmadd_ps(_mm512_set1_ps(v[T * C + c]), x0, a##T);                \
    } while (0)
#define STZ1(T)                                                                                    \
    do {                                                                                           \
        if (nt > T) STZ(o + T * ots, o + T * ots + ob, a##T);                                      \
    } while (0)

AVX512 static INLINE void mz1(int nt, int64_t C, const float *v, const float *u, float *o,
                              int64_t ots, int64_t ob) {
    __m512 z = _mm512_setzero_ps();
    __m512 a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z;
    __m512 a8 = z, a9 = z, a10 = z, a11 = z, a12 = z, a13 = z, a14 = z, a15 = z;
    for (int64_t c = 0; c < C; c++) {
        __m512 x0 = _mm512_load_ps(u + c * 16);
        ACCZ1(0); ACCZ1(1); ACCZ1(2); ACCZ1(3); ACCZ1(4); ACCZ1(5); ACCZ1(6); ACCZ1(7);
        ACCZ1(8); ACCZ1(9); ACCZ1(10); ACCZ1(11); ACCZ1(12); ACCZ1(13); ACCZ1(14); ACCZ1(15);
    }
    STZ1(0); STZ1(1); STZ1(2); STZ1(3); STZ1(4); STZ1(5); STZ1(6); STZ1(7);
    STZ1(8); STZ1(9); STZ1(10); STZ1(11); STZ1(12); STZ1(13); STZ1(14); STZ1(15);
}

#define MRZ2 12 /* tiles per call of mz2 */
#define MRZ1 16 /* tiles per call of mz1 */
#define MZ2_CASE(N) \
    case N: mz2(N, C, v, u0, u1, o, ots, ob); break
#define MZ1_CASE(N) \
    case N: mz1(N, C, v, u0, o, ots, ob); break

AVX512 static void mz2_n(int nt, int64_t C, const float *v, const float *u0, const float *u1,
                         float *o, int64_t ots, int64_t ob) {
    switch (nt) {
        MZ2_CASE(1); MZ2_CASE(2); MZ2_CASE(3); MZ2_CASE(4); MZ2_CASE(5); MZ2_CASE(6);
        MZ2_CASE(7); MZ2_CASE(8); MZ2_CASE(9); MZ2_CASE(10); MZ2_CASE(11); MZ2_CASE(12);
    default: break;
    }
}

AVX512 static void mz1_n(int nt, int64_t C, const float *v, const float *u0, float *o, int64_t ots,
                         int64_t ob) {
    switch (nt) {
        MZ1_CASE(1); MZ1_CASE(2); MZ1_CASE(3); MZ1_CASE(4); MZ1_CASE(5); MZ1_CASE(6);
        MZ1_CASE(7); MZ1_CASE(8); MZ1_CASE(9); MZ1_CASE(10); MZ1_CASE(11); MZ1_CASE(12);
        MZ1_CASE(13); MZ1_CASE(14); MZ1_CASE(15); MZ1_CASE(16);
    default: break;
    }
}

/* One group's products on the AVX2 kernels (an 8-wide last group, or every group without
 * AVX-512). */
AVX2 static void group_ymm(const wino_job *j, int64_t xi, int64_t grp) {
    const ulc_wino *w = j->w;
    int64_t C = w->K, M = w->g.m, T = j->T, XI = w->xi, ots = w->mb * XI * 8;
    const float *u = w->u + (size_t)xi * (size_t)C * (size_t)M + (size_t)grp * (size_t)C * 16;
    const float *v = j->V + (size_t)xi * (size_t)T * (size_t)C;
    float *o = j->Mo + ((size_t)(grp * 2) * (size_t)XI + (size_t)xi) * 8;
    int pair = grp * 16 + 16 <= M;
    int mr = pair ? MR2 : MR1;
    for (int64_t t = 0; t < T; t += mr) {
        int nt = (int)(T - t < mr ? T - t : mr);
        if (pair)
            mk2_n(nt, C, v + t * C, u, o + t * ots, ots, XI * 8);
        else
            mk1_n(nt, C, v + t * C, u, o + t * ots, ots, XI * 8);
    }
}

/* Phase 2 on AVX-512F: item = (ξ, groups 2q and 2q + 1). Each output is the same channel sum in
 * the same order as on the AVX2 kernels: results do not depend on which ran. */
AVX512 static void gemm_body_zmm(int64_t i0, int64_t i1, void *arg) {
    const wino_job *j = arg;
    const ulc_wino *w = j->w;
    int64_t C = w->K, M = w->g.m, T = j->T, XI = w->xi, ots = w->mb * XI * 8, ob = XI * 8;
    int64_t nq = (w->npair + 1) / 2;
    for (int64_t it = i0; it < i1; it++) {
        int64_t xi = it / nq, g0 = (it % nq) * 2;
        int full0 = g0 * 16 + 16 <= M, full1 = g0 + 1 < w->npair && (g0 + 1) * 16 + 16 <= M;
        const float *ux = w->u + (size_t)xi * (size_t)C * (size_t)M;
        const float *u0 = ux + (size_t)g0 * (size_t)C * 16, *u1 = u0 + (size_t)C * 16;
        const float *v = j->V + (size_t)xi * (size_t)T * (size_t)C;
        float *o = j->Mo + ((size_t)(g0 * 2) * (size_t)XI + (size_t)xi) * 8;
        if (full0 && full1) {
            for (int64_t t = 0; t < T; t += MRZ2) {
                int nt = (int)(T - t < MRZ2 ? T - t : MRZ2);
                mz2_n(nt, C, v + t * C, u0, u1, o + t * ots, ots, ob);
            }
            continue;
        }
        for (int64_t grp = g0; grp < g0 + 2 && grp < w->npair; grp++) {
            if (grp * 16 + 16 > M) {
                group_ymm(j, xi, grp);
                continue;
            }
            const float *u = ux + (size_t)grp * (size_t)C * 16;
            float *og = j->Mo + ((size_t)(grp * 2) * (size_t)XI + (size_t)xi) * 8;
            for (int64_t t = 0; t < T; t += MRZ1) {
                int nt = (int)(T - t < MRZ1 ? T - t : MRZ1);
                mz1_n(nt, C, v + t * C, u, og + t * ots, ots, ob);
            }
        }
    }
}

/* Phase 2: item = (ξ, output group), or (ξ, two groups) on AVX-512F (w->zmm). */
AVX2 static void gemm_body(int64_t i0, int64_t i1, void *arg) {
    const wino_job *j = arg;
    const ulc_wino *w = j->w;
    if (w->zmm) {
        gemm_body_zmm(i0, i1, arg);
        return;
    }
    for (int64_t it = i0; it < i1; it++) group_ymm(j, it / w->npair, it % w->npair);
}

/* act(v + addend) for ULC_ACT_NONE / RELU / LEAKY_RELU. */
AVX2 static INLINE __m256 act8(__m256 v, int act, float alpha) {
    if (act == ULC_ACT_RELU) return _mm256_max_ps(v, _mm256_setzero_ps());
    if (act == ULC_ACT_LEAKY_RELU) {
        __m256 z = _mm256_setzero_ps();
        return _mm256_add_ps(_mm256_max_ps(v, z),
                             _mm256_mul_ps(_mm256_set1_ps(alpha), _mm256_min_ps(v, z)));
    }
    return v;
}

static INLINE float act1(float v, int act, float alpha) {
    if (act == ULC_ACT_RELU) return v > 0 ? v : 0.0f;
    if (act == ULC_ACT_LEAKY_RELU) return v > 0 ? v : alpha * v;
    return v;
}

/* Aᵀ·m·A of one tile (m[ξ] at mo + ξ·8) plus bias, into O rows (OWF pixels apart) at column
 * f·tx. */
AVX2 static INLINE void out_tf2(const float *mo, __m256 bias, float *O, size_t OWF, int64_t tx) {
    __m256 s[2][4];
    for (int c = 0; c < 4; c++) {
        __m256 m0 = _mm256_loadu_ps(mo + (0 + c) * 8), m1 = _mm256_loadu_ps(mo + (4 + c) * 8);
        __m256 m2 = _mm256_loadu_ps(mo + (8 + c) * 8), m3 = _mm256_loadu_ps(mo + (12 + c) * 8);
        s[0][c] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
        s[1][c] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
    }
    for (int a = 0; a < 2; a++) {
        __m256 y0 = _mm256_add_ps(_mm256_add_ps(s[a][0], s[a][1]), s[a][2]);
        __m256 y1 = _mm256_sub_ps(_mm256_sub_ps(s[a][1], s[a][2]), s[a][3]);
        _mm256_store_ps(O + ((size_t)a * OWF + 2 * tx) * 8, _mm256_add_ps(y0, bias));
        _mm256_store_ps(O + ((size_t)a * OWF + 2 * tx + 1) * 8, _mm256_add_ps(y1, bias));
    }
}

/* F(4,3)'s Aᵀ on six vectors. */
#define AT6(m0, m1, m2, m3, m4, m5, y)                                                             \
    do {                                                                                           \
        __m256 p12 = _mm256_add_ps(m1, m2), d12 = _mm256_sub_ps(m1, m2);                           \
        __m256 p34 = _mm256_add_ps(m3, m4), d34 = _mm256_sub_ps(m3, m4);                           \
        y[0] = _mm256_add_ps(_mm256_add_ps(m0, p12), p34);                                         \
        y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), d34, d12);                                    \
        y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), p34, p12);                                    \
        y[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), d34, d12), m5);                 \
    } while (0)

AVX2 static INLINE void out_tf4(const float *mo, __m256 bias, float *O, size_t OWF, int64_t tx) {
    __m256 s[4][6];
    for (int c = 0; c < 6; c++) {
        __m256 y[4];
        AT6(_mm256_loadu_ps(mo + (0 + c) * 8), _mm256_loadu_ps(mo + (6 + c) * 8),
            _mm256_loadu_ps(mo + (12 + c) * 8), _mm256_loadu_ps(mo + (18 + c) * 8),
            _mm256_loadu_ps(mo + (24 + c) * 8), _mm256_loadu_ps(mo + (30 + c) * 8), y);
        for (int a = 0; a < 4; a++) s[a][c] = y[a];
    }
    for (int a = 0; a < 4; a++) {
        __m256 y[4];
        AT6(s[a][0], s[a][1], s[a][2], s[a][3], s[a][4], s[a][5], y);
        for (int b = 0; b < 4; b++)
            _mm256_store_ps(O + ((size_t)a * OWF + 4 * tx + b) * 8, _mm256_add_ps(y[b], bias));
    }
}

/* Phase 3: item = (tile row, output channel block). */
AVX2 static void out_body(int64_t i0, int64_t i1, void *arg) {
    const wino_job *j = arg;
    const ulc_wino *w = j->w;
    const ulc_wino_io *io = j->io;
    const ulc_wino_geom *g = &w->g;
    int64_t M = g->m, OH = g->oh, OW = g->ow, TW = w->tw, XI = w->xi;
    int f = w->f;
    size_t OWF = (size_t)(f * TW);
    float *O = my_rowbuf(j) + (size_t)w->a * (size_t)w->lw * 8;
    for (int64_t it = i0; it < i1; it++) {
        int64_t rr = it / w->mb, mb = it % w->mb, row = j->r0 + rr;
        int64_t n = row / w->th, ty = row % w->th;
        __m256 bias = io->bias ? _mm256_loadu_ps(io->bias + mb * 8) : _mm256_setzero_ps();
        if (io->add_channel) bias = _mm256_add_ps(bias, _mm256_loadu_ps(io->add_channel + mb * 8));
        const float *mo = j->Mo + ((size_t)(rr * TW) * (size_t)w->mb + (size_t)mb) * XI * 8;
        for (int64_t tx = 0; tx < TW; tx++, mo += w->mb * XI * 8) {
            if (f == 1)
                _mm256_store_ps(O + (size_t)tx * 8, _mm256_add_ps(_mm256_loadu_ps(mo), bias));
            else if (f == 2)
                out_tf2(mo, bias, O, OWF, tx);
            else
                out_tf4(mo, bias, O, OWF, tx);
        }
        for (int a = 0; a < f; a++) {
            int64_t oy = f * ty + a;
            if (oy >= OH) break;
            const float *src = O + (size_t)a * OWF * 8;
            size_t bo = (size_t)(((n * w->mb + mb) * OH + oy) * OW) * 8; /* blocked row */
            size_t po = (size_t)((n * M + mb * 8) * OH + oy) * OW; /* plain row, lane 0 */
            size_t plane = (size_t)(OH * OW);
            const float *z = io->add_full;
            const float *mk = io->mask;
            if (io->yb && (!z || io->zb) && !mk) {
                float *dst = io->y + bo;
                for (int64_t ox = 0; ox < OW; ox++) {
                    __m256 v = _mm256_load_ps(src + ox * 8);
                    if (z) v = _mm256_add_ps(v, _mm256_loadu_ps(z + bo + ox * 8));
                    _mm256_storeu_ps(dst + ox * 8, act8(v, io->act, io->alpha));
                }
            } else if (!io->yb && (!z || !io->zb)) {
                /* plain: 8 columns × 8 channels at a time, transposed */
                int64_t ox = 0;
                for (; ox + 8 <= OW; ox += 8) {
                    __m256 r[8];
                    for (int c = 0; c < 8; c++) r[c] = _mm256_load_ps(src + (ox + c) * 8);
                    tr8(r);
                    for (int c = 0; c < 8; c++) {
                        float *dst = io->y + po + c * plane + ox;
                        __m256 v = r[c];
                        if (z) v = _mm256_add_ps(v, _mm256_loadu_ps(z + po + c * plane + ox));
                        if (mk)
                            v = _mm256_and_ps(v, _mm256_cmp_ps(_mm256_loadu_ps(mk + po + c * plane + ox),
                                                               _mm256_setzero_ps(), _CMP_GT_OQ));
                        _mm256_storeu_ps(dst, act8(v, io->act, io->alpha));
                    }
                }
                for (int c = 0; c < 8; c++)
                    for (int64_t x = ox; x < OW; x++) {
                        float v = src[x * 8 + c];
                        if (z) v += z[po + c * plane + x];
                        if (mk && !(mk[po + c * plane + x] > 0)) v = 0.0f;
                        io->y[po + c * plane + x] = act1(v, io->act, io->alpha);
                    }
            } else {
                /* mixed layouts of y and the addend (rare): element by element */
                for (int c = 0; c < 8; c++)
                    for (int64_t ox = 0; ox < OW; ox++) {
                        float v = src[ox * 8 + c];
                        if (z) v += io->zb ? z[bo + ox * 8 + c] : z[po + c * plane + ox];
                        if (mk && !(mk[po + c * plane + ox] > 0)) v = 0.0f;
                        v = act1(v, io->act, io->alpha);
                        if (io->yb)
                            io->y[bo + ox * 8 + c] = v;
                        else
                            io->y[po + c * plane + ox] = v;
                    }
            }
        }
    }
}

typedef struct own_job {
    const ulc_wino *w;
    const ulc_wino_io *io;
    char *buf; /* one block's V and M per thread */
    size_t bytes;
    char *rowbuf;
} own_job;

/* Own blocks: item = block of w->own_rows tile rows, all three phases on this thread. */
static void own_body(int64_t b0, int64_t b1, void *arg) {
    const own_job *oj = arg;
    const ulc_wino *w = oj->w;
    int64_t rows_total = w->g.n * w->th;
    float *V = (float *)(oj->buf + oj->bytes * (size_t)omp_get_thread_num());
    for (int64_t b = b0; b < b1; b++) {
        int64_t r0 = b * w->own_rows;
        int64_t nr = rows_total - r0 < w->own_rows ? rows_total - r0 : w->own_rows;
        int64_t T = nr * w->tw;
        wino_job j = {w, oj->io, r0, nr, T, V, V + (size_t)w->xi * (size_t)T * (size_t)w->K,
                      oj->rowbuf};
        in_body(0, nr * w->cb, &j);
        gemm_body(0, w->gitems, &j);
        out_body(0, nr * w->mb, &j);
    }
}

void ulc_wino_run(const ulc_wino *w, const ulc_wino_io *io, void *scratch) {
    const ulc_wino_geom *g = &w->g;
    int64_t rows_total = g->n * w->th;
    size_t nt = (size_t)omp_get_max_threads();
    char *base = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    if (use_own(w)) {
        size_t bb = block_bytes(w, w->own_rows);
        own_job oj = {w, io, base, bb, base + bb * nt};
        ulc_k_parallel((rows_total + w->own_rows - 1) / w->own_rows, 1, own_body, &oj);
        return;
    }
    float *V = (float *)base;
    char *rowbuf = base + block_bytes(w, w->rows);
    for (int64_t r0 = 0; r0 < rows_total; r0 += w->rows) {
        int64_t nr = rows_total - r0 < w->rows ? rows_total - r0 : w->rows;
        int64_t T = nr * w->tw;
        wino_job j = {w, io, r0, nr, T, V, V + (size_t)w->xi * (size_t)T * (size_t)w->K, rowbuf};
        ulc_k_parallel(nr * w->cb, 1, in_body, &j);
        ulc_k_parallel(w->gitems, 1, gemm_body, &j);
        ulc_k_parallel(nr * w->mb, 1, out_body, &j);
    }
}

ulc_status ulc_wino_prepare(ulc_kctx *k, const ulc_wino_geom *g, int flip, ulc_wino **out) {
    *out = NULL;
    if (!ulc_wino_fits(g)) return ULC_OK;
    ulc_wino *w = ulc_wino_create(g);
    if (!w) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (Winograd filters)");
    ulc_nn_scratch_hold();
    if (k->const_inputs & 2u) {
        ulc_wino_set_weights(w, k->in[1]->data, flip);
        k->packed_inputs |= 2u; /* run reads U, never W */
    }
    *out = w;
    return ULC_OK;
}

ulc_status ulc_wino_exec(ulc_kctx *k, ulc_wino *w, int flip, const ulc_wino_io *io) {
    if (!(k->const_inputs & 2u)) ulc_wino_set_weights(w, k->in[1]->data, flip);
    size_t need = ulc_wino_scratch_bytes(w);
    ulc_nn_scratch sc = ulc_nn_scratch_acquire(need);
    if (!sc.p) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (%zu bytes of scratch)", need);
    ulc_wino_run(w, io, sc.p);
    ulc_nn_scratch_done(&sc);
    return ULC_OK;
}

int ulc_wino_enabled(void) {
    const char *e = getenv("ULC_NO_WINOGRAD");
    return !(e && *e && strcmp(e, "0") != 0);
}
