/*
 * test_wino.c — the Winograd convolution (runtime/cpu/wino.h) against a direct convolution in
 * double precision: both tile sizes, every pad from 0 to 2 on either side, sizes that leave
 * partial tiles, one and several channel blocks (an odd count included), plain and NCHW8C input
 * and output, the fused bias, per-channel and full addends (in either layout) and activations,
 * the backward-data form (flipped filters), and both work splits (blocks shared by all threads,
 * and a block per thread); and the engine's im2col form (any kernel and stride) likewise. CHECK records a failure and continues; ends with "N passed, M failed".
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/wino.h"
#include "runtime/kutil.h"

#include "tests/unit/check.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *rand_buf(size_t n) {
    float *p = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

/* A copy of src between plain [n, c, hw] and NCHW8C (c a multiple of 8), in the direction
 * to_blocked says. */
static float *relayout(const float *src, int64_t n, int64_t c, int64_t hw, int to_blocked) {
    float *dst = malloc((size_t)(n * c * hw) * sizeof(float) + 1);
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t p = 0; p < hw; p++) {
                size_t plain = (size_t)((i * c + ch) * hw + p);
                size_t blocked = (size_t)(((i * (c / 8) + ch / 8) * hw + p) * 8 + ch % 8);
                if (to_blocked)
                    dst[blocked] = src[plain];
                else
                    dst[plain] = src[blocked];
            }
    return dst;
}

typedef struct fusion {
    int bias, channel, full, full_blocked, act;
} fusion;

/* Direct convolution in double: plain x [n, c, ih, iw]; W [m, c, 3, 3] (or, flipped, [c, m,
 * 3, 3] read with reversed taps); the fused work as the kernel applies it. */
static void reference(const ulc_wino_geom *g, const float *x, const float *W, int flip,
                      const float *bias, const float *chan, const float *full, int act,
                      float alpha, double *y) {
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t m = 0; m < g->m; m++)
            for (int64_t oy = 0; oy < g->oh; oy++)
                for (int64_t ox = 0; ox < g->ow; ox++) {
                    double acc = 0;
                    for (int64_t c = 0; c < g->c; c++)
                        for (int64_t kh = 0; kh < g->kh; kh++)
                            for (int64_t kw = 0; kw < g->kw; kw++) {
                                int64_t iy = oy * g->sh - g->pt + kh, ix = ox * g->sw - g->pl + kw;
                                if (iy < 0 || iy >= g->ih || ix < 0 || ix >= g->iw) continue;
                                double w = flip ? W[((c * g->m + m) * 3 + 2 - kh) * 3 + 2 - kw]
                                                : W[((m * g->c + c) * g->kh + kh) * g->kw + kw];
                                acc += w * x[((n * g->c + c) * g->ih + iy) * g->iw + ix];
                            }
                    size_t o = (size_t)(((n * g->m + m) * g->oh + oy) * g->ow + ox);
                    if (bias) acc += bias[m];
                    if (chan) acc += chan[m];
                    if (full) acc += full[o];
                    if (act == ULC_ACT_RELU && acc < 0) acc = 0;
                    if (act == ULC_ACT_LEAKY_RELU && acc < 0) acc *= alpha;
                    y[o] = acc;
                }
}

static int g_cases;

/* One geometry, every combination of tile (the given ones), layouts, fusion and flip (Winograd
 * only). */
static void check_tiles(ulc_wino_geom g, int t0, int t1) {
    size_t nx = (size_t)(g.n * g.c * g.ih * g.iw), ny = (size_t)(g.n * g.m * g.oh * g.ow);
    int64_t ihw = g.ih * g.iw, ohw = g.oh * g.ow;
    float *x = rand_buf(nx), *W = rand_buf((size_t)(g.m * g.c * g.kh * g.kw));
    float *bias = rand_buf((size_t)g.m), *chan = rand_buf((size_t)g.m), *full = rand_buf(ny);
    float *xb = relayout(x, g.n, g.c, ihw, 1), *fullb = relayout(full, g.n, g.m, ohw, 1);
    float *y = malloc(ny * sizeof(float));
    double *ref = malloc(ny * sizeof(double));
    static const fusion fus[] = {
        {0, 0, 0, 0, ULC_ACT_NONE},
        {1, 0, 0, 0, ULC_ACT_RELU},
        {1, 1, 0, 0, ULC_ACT_LEAKY_RELU},
        {1, 0, 1, 0, ULC_ACT_RELU},
        {0, 0, 1, 1, ULC_ACT_NONE},
    };
    for (int flip = 0; flip < (t0 >= 2 ? 2 : 1); flip++)
        for (size_t fi = 0; fi < sizeof fus / sizeof fus[0]; fi++) {
            const fusion *f = &fus[fi];
            float alpha = 0.25f;
            reference(&g, x, W, flip, f->bias ? bias : NULL, f->channel ? chan : NULL,
                      f->full ? full : NULL, f->act, alpha, ref);
            for (int tile = t0; tile <= t1; tile += 2)
                for (int lay = 0; lay < 4; lay++) {
                    int in_b = lay & 1, out_b = (lay >> 1) & 1;
                    g.tile = tile;
                    ulc_wino *w = ulc_wino_create(&g);
                    CHECK(w != NULL);
                    if (!w) continue;
                    CHECK(ulc_wino_tile(w) == tile);
                    ulc_wino_set_weights(w, W, flip);
                    void *scratch = malloc(ulc_wino_scratch_bytes(w));
                    ulc_wino_io io = {
                        .x = in_b ? xb : x,
                        .y = y,
                        .xb = in_b,
                        .yb = out_b,
                        .bias = f->bias ? bias : NULL,
                        .add_channel = f->channel ? chan : NULL,
                        .add_full = f->full ? (f->full_blocked ? fullb : full) : NULL,
                        .zb = f->full_blocked,
                        .act = f->act,
                        .alpha = alpha,
                    };
                    memset(y, 0xff, ny * sizeof(float)); /* NaN: every element must be written */
                    ulc_wino_run(w, &io, scratch);
                    float *yp = out_b ? relayout(y, g.n, g.m, ohw, 0) : y;
                    double maxref = 0, maxerr = 0;
                    int finite = 1;
                    for (size_t i = 0; i < ny; i++) {
                        if (!isfinite(yp[i])) finite = 0;
                        maxref = fmax(maxref, fabs(ref[i]));
                        maxerr = fmax(maxerr, fabs(yp[i] - ref[i]));
                    }
                    double tol = (tile == 4 ? 2e-5 : 2e-6) * (maxref > 1 ? maxref : 1);
                    CHECK(finite);
                    CHECK(maxerr <= tol);
                    if (!finite || maxerr > tol)
                        fprintf(stderr,
                                "  n%lld c%lld m%lld %lldx%lld -> %lldx%lld k%lldx%lld s%lldx%lld "
                                "pads %lld,%lld tile %d flip %d fusion %zu layout %d: max error "
                                "%.3g (max |y| %.3g)\n",
                                (long long)g.n, (long long)g.c, (long long)g.m, (long long)g.ih,
                                (long long)g.iw, (long long)g.oh, (long long)g.ow, (long long)g.kh,
                                (long long)g.kw, (long long)g.sh, (long long)g.sw, (long long)g.pt,
                                (long long)g.pl, tile, flip, fi, lay, maxerr, maxref);
                    if (out_b) free(yp);
                    free(scratch);
                    ulc_wino_free(w);
                    g_cases++;
                }
        }
    free(x);
    free(W);
    free(bias);
    free(chan);
    free(full);
    free(xb);
    free(fullb);
    free(y);
    free(ref);
}

static void check_geom(ulc_wino_geom g) { check_tiles(g, 2, 4); }

/* im2col: kernel kh × kw, strides sh, sw; oh = (ih + pt + pb - kh) / sh + 1, likewise the width. */
static void check_im2col(int64_t n, int64_t c, int64_t m, int64_t ih, int64_t iw, int64_t kh,
                         int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                         int64_t pr) {
    ulc_wino_geom g = {n,  c,  m,  ih, iw, (ih + pt + pb - kh) / sh + 1, (iw + pl + pr - kw) / sw + 1,
                       pt, pl, 1,  kh, kw, sh, sw};
    check_tiles(g, 1, 1);
}

/* oh = ih + pt + pb - 2 for pads (pt, pb), likewise the width. */
static ulc_wino_geom geom(int64_t n, int64_t c, int64_t m, int64_t ih, int64_t iw, int64_t pt,
                          int64_t pb, int64_t pl, int64_t pr) {
    ulc_wino_geom g = {n, c, m, ih, iw, ih + pt + pb - 2, iw + pl + pr - 2, pt, pl, 0, 3, 3, 1, 1};
    return g;
}

static void test_fits(void) {
    ulc_wino_geom g = geom(1, 8, 8, 4, 4, 1, 1, 1, 1);
    CHECK(ulc_wino_fits(&g));
    g.c = 12;
    CHECK(!ulc_wino_fits(&g));
    g.c = 8;
    g.m = 4;
    CHECK(!ulc_wino_fits(&g));
    g.m = 8;
    g.tile = 3;
    CHECK(!ulc_wino_fits(&g));
    CHECK(ulc_wino_create(&g) == NULL);
    g.tile = 0;
    g.pt = -1;
    CHECK(!ulc_wino_fits(&g));
}

/* The shape's own choice: F(4,3) on large outputs, F(2,3) on 2×2 ones, on layers with few
 * tiles and on wide layers (the transformed filters' memory), im2col for other kernels and
 * strides. */
static void test_pick(void) {
    struct {
        ulc_wino_geom g;
        int tile;
    } cases[] = {
        {geom(1, 64, 64, 56, 56, 1, 1, 1, 1), 4},
        {geom(64, 64, 64, 16, 16, 1, 1, 1, 1), 4},
        {geom(64, 512, 512, 2, 2, 1, 1, 1, 1), 2},
        {geom(1, 512, 512, 7, 7, 1, 1, 1, 1), 2},
        {geom(8, 128, 128, 7, 7, 1, 1, 1, 1), 4},
        {geom(64, 256, 256, 4, 4, 1, 1, 1, 1), 4}, /* 9 MiB of F(4,3) filters */
        {geom(8, 512, 512, 7, 7, 1, 1, 1, 1), 2}, /* F(4,3)'s filters would take 36 MiB */
        {{8, 64, 128, 16, 16, 8, 8, 1, 1, 0, 3, 3, 2, 2}, 1}, /* stride 2: im2col */
        {{8, 64, 128, 16, 16, 10, 10, 0, 0, 0, 7, 7, 1, 1}, 1}, /* 7×7: im2col */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ulc_wino *w = ulc_wino_create(&cases[i].g);
        CHECK(w && ulc_wino_tile(w) == cases[i].tile);
        ulc_wino_free(w);
    }
}

int main(void) {
    if (!ulc_k_avx2()) {
        printf("test_wino: skipped (no AVX2+FMA, or ULC_NO_SIMD set): the Winograd path is off\n");
        return 0;
    }
    test_fits();
    test_pick();
    check_geom(geom(1, 8, 8, 5, 5, 1, 1, 1, 1));
    check_geom(geom(2, 16, 24, 7, 9, 1, 1, 1, 1));  /* odd sizes; 3 output blocks (one single) */
    check_geom(geom(1, 8, 16, 6, 6, 0, 0, 0, 0));   /* no padding */
    check_geom(geom(3, 24, 8, 2, 2, 1, 1, 1, 1));   /* 2×2: one F(2,3) tile, a padded F(4,3) one */
    check_geom(geom(1, 8, 8, 11, 13, 2, 1, 0, 2));  /* asymmetric pads up to 2 */
    check_geom(geom(1, 16, 16, 3, 17, 1, 1, 1, 1)); /* transposes of 8 columns and a tail */
    check_geom(geom(1, 8, 8, 1, 1, 1, 1, 1, 1));    /* a single pixel */
    check_geom(geom(2, 40, 32, 10, 10, 1, 1, 1, 1)); /* 5 input blocks */
    check_geom(geom(64, 8, 8, 16, 16, 1, 1, 1, 1)); /* many tiles: a block per thread */
    check_im2col(2, 16, 24, 9, 9, 3, 3, 2, 2, 1, 1, 1, 1); /* ResNet's stride-2 3×3 */
    check_im2col(1, 8, 16, 10, 7, 3, 3, 2, 2, 1, 0, 0, 1); /* even/odd sizes, asymmetric pads */
    check_im2col(1, 8, 8, 11, 11, 7, 7, 2, 2, 3, 3, 3, 3); /* a 7×7 stem */
    check_im2col(2, 16, 8, 6, 9, 2, 5, 1, 3, 0, 1, 2, 2);  /* rectangular kernel, mixed strides */
    check_im2col(3, 24, 40, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1); /* 3×3 stride 1 through im2col too */
    check_im2col(64, 8, 8, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1);  /* a block per thread */
    printf("test_wino: %d configurations; %s\n", g_cases, g_failed_checks ? "FAILED" : "ok");
    printf("%d passed, %d failed\n", g_failed_checks ? 0 : 1, g_failed_checks ? 1 : 0);
    return g_failed_checks ? 1 : 0;
}
