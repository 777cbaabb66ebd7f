/*
 * wino.h — the CPU backend's Winograd convolution (k_nn_wino.c): float32 3×3 stride-1
 * convolutions as F(2×2, 3×3) or F(4×4, 3×3), used by Conv (k_nn_conv.c) and ConvGradData
 * (k_grad_conv.c). Private to runtime/cpu/ and its tests; free of oneDNN.
 */
#ifndef ULC_RUNTIME_CPU_WINO_H
#define ULC_RUNTIME_CPU_WINO_H

#include <stddef.h>
#include <stdint.h>

/* A float32 dilation-1, single-group 2-D convolution y[oy, ox] = Σ x[oy·sh - pt + i, ox·sw - pl
 * + j] · g[i, j] (taps outside X read 0) over [n, c, ih, iw] → [n, m, oh, ow], kernel kh × kw.
 * tile: the algorithm — 2 or 4: Winograd F(2×2, 3×3) or F(4×4, 3×3) (3×3 stride 1 only);
 * 1: im2col, the kernel's taps gathered per output pixel and one product (any kernel and
 * stride); 0: chosen by the shape (Winograd for 3×3 stride 1, else im2col). */
typedef struct ulc_wino_geom {
    int64_t n, c, m;
    int64_t ih, iw, oh, ow;
    int64_t pt, pl;
    int tile;
    int64_t kh, kw, sh, sw;
} ulc_wino_geom;

/* One run's tensors. x and y are plain or NCHW8C (xb, yb); the output gets y = act(conv + bias
 * + addend), the addend either a per-channel vector or a full tensor of y's shape (plain, or
 * NCHW8C when zb), act one of NONE, RELU, LEAKY_RELU (alpha). */
typedef struct ulc_wino_io {
    const float *x;
    float *y;
    int xb, yb;
    const float *bias; /* [m] or NULL */
    const float *add_channel; /* [m] or NULL */
    const float *add_full; /* y's shape or NULL */
    int zb;
    int act;
    float alpha;
    const float *mask; /* plain, y's shape, or NULL: y = mask > 0 ? y : 0 after the addend */
} ulc_wino_io;

typedef struct ulc_wino ulc_wino;

/* 1 when the kernel takes g: channel counts multiples of 8, pads >= 0, a tile it has for the
 * kernel and stride, and a CPU with AVX2 and FMA (ulc_k_avx2). */
int ulc_wino_fits(const ulc_wino_geom *g);
/* NULL when the geometry does not fit or memory runs out. */
ulc_wino *ulc_wino_create(const ulc_wino_geom *g);
void ulc_wino_free(ulc_wino *w);
/* The algorithm the kernel uses: the Winograd output tile side (2 or 4), or 1 (im2col). */
int ulc_wino_tile(const ulc_wino *w);
/* Transforms the filters (threaded): W is Conv's [m, c, kh, kw], or with flip (Winograd only)
 * the forward convolution's [c, m, 3, 3] whose taps are read reversed (the backward-data
 * convolution). */
void ulc_wino_set_weights(ulc_wino *w, const float *W, int flip);
/* Bytes of scratch ulc_wino_run needs (for the current OpenMP thread count). */
size_t ulc_wino_scratch_bytes(const ulc_wino *w);
/* Runs the convolution (threaded); weights must have been set. */
void ulc_wino_run(const ulc_wino *w, const ulc_wino_io *io, void *scratch);
/* 0 when ULC_NO_WINOGRAD is set (to compare with oneDNN's convolution on the same data). */
int ulc_wino_enabled(void);

#endif
