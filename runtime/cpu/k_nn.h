/*
 * k_nn.h — what the nn family's files (k_nn.c, k_nn_conv.c, k_nn_pool.c, k_nn_gemm.c) share:
 * the process's oneDNN engine and stream, a scratch buffer for layout reorders (the sliding
 * window geometry of Conv, ConvTranspose and the pooling ops is op-level: runtime/shape/params.h).
 * Private to runtime/cpu/ (it includes oneDNN's header).
 */
#ifndef ULC_RUNTIME_CPU_K_NN_H
#define ULC_RUNTIME_CPU_K_NN_H

#include <oneapi/dnnl/dnnl.h>

#include "runtime/cpu/cpu.h"
#include "runtime/shape/params.h"
#include "runtime/cpu/wino.h"

/* Registration of each file's ops (called by ulc_cpu_register_nn only). */
void ulc_nn_register_conv(const ulc_kernel **table); /* k_nn_conv.c */
void ulc_nn_register_pool(const ulc_kernel **table); /* k_nn_pool.c */
void ulc_nn_register_gemm(const ulc_kernel **table); /* k_nn_gemm.c */

/* ---- oneDNN ---------------------------------------------------------------------------------- */

/* The process's CPU engine and in-order stream, created once (thread-safe). Fails with
 * ULC_ERR_INTERNAL naming the node when oneDNN cannot create them. */
ulc_status ulc_nn_dnnl(ulc_kctx *k, dnnl_engine_t *engine, dnnl_stream_t *stream);
/* 1 when pd's implementation is one of oneDNN's reference loops (or unnamed): what it picks for
 * some bfloat16 layouts, at about 0.5 GFLOP/s, where float32's kernels are the better choice. */
int ulc_nn_impl_is_ref(const_dnnl_primitive_desc_t pd);
/* ULC_OK for dnnl_success; otherwise records "oneDNN: <what> failed (<status>)". */
ulc_status ulc_nn_dnnl_check(ulc_kctx *k, dnnl_status_t s, const char *what);
/* Plain row-major format tag for a tensor of `rank` dims (a, ab, abc, ...). */
dnnl_format_tag_t ulc_nn_plain_tag(int rank);
/* Creates primitive + primitive descriptor for a reorder between two descriptors. */
dnnl_status_t ulc_nn_reorder_create(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                    dnnl_primitive_t *out);
/* Runs a reorder primitive from `from` to `to` (memory objects with handles set). */
dnnl_status_t ulc_nn_reorder_run(dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to);

/* ---- scratch --------------------------------------------------------------------------------- */

/* One process-wide buffer for what kernels need only during a run (blocked copies of
 * activations). A kernel that will use it takes a hold in prepare (ulc_nn_scratch_hold) and
 * drops it in release; the buffer is freed when the last hold goes. run borrows it with
 * acquire/done; it grows on first use to the largest size asked. When another thread has it
 * (two sessions running at once) acquire hands out a private allocation instead, so runs never
 * wait on each other. Buffers are 64-byte aligned. */
typedef struct ulc_nn_scratch {
    void *p; /* NULL: allocation failed */
    int owned; /* 1: a private allocation, freed by ulc_nn_scratch_done */
} ulc_nn_scratch;

void ulc_nn_scratch_hold(void);
void ulc_nn_scratch_drop(void);
ulc_nn_scratch ulc_nn_scratch_acquire(size_t bytes);
void ulc_nn_scratch_done(ulc_nn_scratch *s);
/* A oneDNN run's start: the backend's stream and `need` bytes of scratch (sc->p is NULL when
 * need is 0; release with ulc_nn_scratch_done). Fails naming the size when out of memory. */
ulc_status ulc_nn_run_begin(ulc_kctx *k, size_t need, dnnl_stream_t *stream, ulc_nn_scratch *sc);

/* ---- packed weights, shared across plans (k_nn_pack.c) -------------------------------------- */

/* What a packed weight is: the initializer it comes from (src, its bytes' address and size, a
 * sample of what this plan packs; src NULL: a constant that is no initializer, never shared),
 * the layout (kind and p[], the kernel's own), and oneDNN's descriptor when has_md. */
typedef struct ulc_nn_pack_key {
    const void *src, *data;
    size_t nbytes;
    uint64_t sample;
    int kind, has_md;
    int64_t p[3];
    dnnl_memory_desc_t md;
} ulc_nn_pack_key;

typedef ulc_status (*ulc_nn_pack_fill)(void *dst, void *arg);

/* key's identity for constant input i of k (zeroed first; kind set). */
void ulc_nn_pack_key_init(const ulc_kctx *k, int i, int kind, ulc_nn_pack_key *key);
/* The 64-byte aligned buffer of `bytes` holding key's packed weight: one already made by any
 * plan (shared, referenced), or a new one filled by fill(buf, arg). NULL on failure, with the
 * error in k (or fill's). Every buffer goes back through ulc_nn_pack_release. */
void *ulc_nn_pack_acquire(ulc_kctx *k, const ulc_nn_pack_key *key, size_t bytes, ulc_nn_pack_fill fill, void *arg);
void ulc_nn_pack_release(void *buf);
/* Bytes of packed weights held now (every entry once). */
size_t ulc_nn_pack_bytes(void);

/* n rounded up to a multiple of 64 (scratch offsets that stay 64-byte aligned). */
static inline size_t ulc_nn_align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* 64-byte aligned allocation (free with free()); NULL on failure or for 0 bytes. */
void *ulc_nn_alloc(size_t bytes);

/* ---- NCHW8C (runtime.h's ULC_LAYOUT_NCHW8C) ------------------------------------------------ */

/* 1 if t is a blocked float32 [N, C, H, W] activation. */
static inline int ulc_nn_blocked(const ulc_rt_tensor *t) {
    return t && t->layout == ULC_LAYOUT_NCHW8C;
}
/* oneDNN descriptor of a float32 [N, C, H, W] tensor: nChw8c when blocked, else nchw. */
dnnl_status_t ulc_nn_md4(dnnl_memory_desc_t *md, const int64_t *dims, int blocked);
/* Layout copies between plain [N, C, H, W] (x) and NCHW8C ([N, ceil(C/8), H, W, 8], b) float32,
 * hw = H·W. to_blocked writes the padding channels as zero. Threaded over (n, channel block). */
void ulc_nn_nchw8c_to_plain(const float *b, float *x, int64_t n, int64_t c, int64_t hw);
void ulc_nn_plain_to_nchw8c(const float *x, float *b, int64_t n, int64_t c, int64_t hw);

/* ---- Winograd convolution: runtime/cpu/wino.h (k_nn_wino.c) --------------------------------- */

/* A kernel's side of the engine (Conv, ConvGradData; W is input 1, flip as ulc_wino_set_weights).
 * prepare: creates it for g (NULL *out, ULC_OK, when g does not fit), takes a scratch hold
 * (dropped by the caller's release) and, for a constant W, transforms the filters now and
 * marks W packed. exec: transforms a W that is not constant, borrows the scratch, runs io. */
ulc_status ulc_wino_prepare(ulc_kctx *k, const ulc_wino_geom *g, int flip, ulc_wino **out);
ulc_status ulc_wino_exec(ulc_kctx *k, ulc_wino *w, int flip, const ulc_wino_io *io);

/* ---- fused elementwise work (kernel.h's ulc_kfuse) ------------------------------------------ */

/* can_fuse for the family: y = act(op + addend) on float32/float64 output 0, any act of
 * ulc_kact, an addend of y's dtype that broadcasts to y. */
int ulc_nn_can_fuse(const ulc_kctx *k, const ulc_kfuse *f);
/* ulc_nn_can_fuse, and a residual (kernel.h) too: the products' can_fuse. */
int ulc_nn_can_fuse_residual(const ulc_kctx *k, const ulc_kfuse *f);
/* Applies f to all of y in place: y = act(y + addend), or y = act(y) with skip_add. Threads
 * over blocks of elements. */
void ulc_nn_fuse_apply(const ulc_kfuse *f, ulc_rt_tensor *y, int skip_add);
/* Appends f's activation (none: nothing) to po as oneDNN's eltwise post-op. */
dnnl_status_t ulc_nn_append_act(dnnl_post_ops_t po, const ulc_kfuse *f);
/* How the addend broadcasts to y ([N, C, ...] for the channel case). */
typedef enum ulc_nn_addend {
    ULC_NN_ADD_NONE,
    ULC_NN_ADD_FULL, /* y's shape */
    ULC_NN_ADD_CHANNEL, /* one value per dim-1 index ([C, 1.., 1], [1, C, 1.., 1]) */
    ULC_NN_ADD_OTHER
} ulc_nn_addend;
ulc_nn_addend ulc_nn_addend_kind(const ulc_kfuse *f, const ulc_rt_tensor *y);

#endif
