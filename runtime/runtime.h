/*
 * runtime.h — executing a graph: sessions over a backend, and the graph analysis (shape
 * inference + constant evaluation) that the specialize and cleanup passes are built on.
 *
 * A session binds a model to a backend ("cpu": oneDNN + own kernels). The first run with a
 * given set of input shapes makes a *plan*: every value's dtype and shape are inferred, every
 * node whose inputs are all constants (initializers, Constant nodes, Shape of a known shape,
 * and the chains that follow) is evaluated once and dropped from the schedule, float16/bfloat16
 * values are computed as float32 (weights converted once), kernels are prepared for the fixed
 * shapes (oneDNN primitives are created here), and the activations are laid out in one buffer
 * by liveness so that values that are never alive together share bytes. Later runs with the
 * same shapes reuse the plan; other shapes make a new one.
 *
 *     ulc_session *s = NULL;
 *     ulc_session_opts o = ulc_session_defaults();      // backend "cpu", every core
 *     if (ulc_session_create(model, &o, &s, ctx) != ULC_OK) ...
 *     ulc_rt_tensor x = {.dtype = ULC_DT_F32, .rank = 4, .dims = {8, 3, 224, 224}, .data = buf};
 *     ulc_session_set_input(s, "input", &x, ctx);       // borrowed until the run returns
 *     ulc_session_run(s, ctx);
 *     const ulc_rt_tensor *y = ulc_session_output(s, "logits");   // owned by the session
 *     ulc_session_free(s);
 *
 * The model must outlive the session (its weights are read in place where possible).
 */
#ifndef ULC_RUNTIME_RUNTIME_H
#define ULC_RUNTIME_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"
#include "ir/graph.h"
#include "runtime/threads.h"

#define ULC_RT_MAX_RANK 8

/* A dense row-major tensor in host memory. `data` may be NULL for a tensor with no elements. */
typedef struct ulc_rt_tensor {
    int dtype;                      /* ulc_dtype */
    int rank;
    int64_t dims[ULC_RT_MAX_RANK];
    void *data;
    size_t nbytes;                  /* numel × dtype size (blocked: with the padded channels) */
    int layout;                     /* ULC_LAYOUT_*: always PLAIN outside the runtime */
    const void *host;               /* inside a plan on a device backend: a plan constant's bytes in
                                       host memory (data is then the device's copy); else NULL */
} ulc_rt_tensor;

/* How a runtime tensor's bytes are laid out. Tensors handed in and out of sessions are PLAIN;
 * inside a plan, float32 [N, C, H, W] activations passed between kernels that both accept it
 * may be NCHW8C: dims stay the logical [N, C, H, W], bytes are [N, ceil(C/8), H, W, 8] with the
 * padding channels zero (oneDNN's nChw8c, what its AVX2 convolutions compute in). */
enum { ULC_LAYOUT_PLAIN = 0, ULC_LAYOUT_NCHW8C = 1 };

/* The product of t's dims in uint64 (wrapping, never UB). Exact for every tensor a plan or an
 * analysis knows: the walk refuses those past 2^48 elements or with a negative dim
 * (runtime/kutil.h, ulc_k_numel). */
uint64_t ulc_rt_numel(const ulc_rt_tensor *t);
/* 1 when a and b have the same rank and dims (dtypes and layouts not compared). */
int ulc_rt_same_shape(const ulc_rt_tensor *a, const ulc_rt_tensor *b);
/* 1 when m broadcasts (numpy, right-aligned) to the shape [dims] of `rank` dims without changing
 * it: every dim of m equals the shape's or is 1 (a mask over attention scores, a bias row). */
int ulc_rt_broadcasts_to(const ulc_rt_tensor *m, int rank, const int64_t *dims);
/* "f32[8,3,224,224]" into buf. */
const char *ulc_rt_shape_str(const ulc_rt_tensor *t, char *buf, size_t size);
/* A runtime view (no copy) of an imported tensor (rt->data points at t's bytes); fails, naming
 * file and tensor, above the runtime's rank limit. */
ulc_status ulc_rt_tensor_view(const ulc_tensor *t, const char *file, ulc_rt_tensor *rt,
                              ulc_ctx *ctx);

/* ---- sessions ------------------------------------------------------------------------------ */

typedef struct ulc_session ulc_session;

typedef struct ulc_session_opts {
    const char *backend; /* "cpu" (the default unless ulc_runtime_set_default_device said) or "cuda" */
    int threads;         /* 0 = follow the load (runtime/threads.h) */
    int profile;         /* 1: time every step (see ulc_session_profile) */
    int device;          /* cuda: the device's index */
    int precision;       /* ULC_PRECISION_*: how products with large operands may round */
} ulc_session_opts;

/* The arithmetic of a session's matrix products (--precision). FP32 is the default everywhere:
 * float32 in, float32 out, float32 sums. TF32 (cuda only): cuBLAS's TF32 tensor-core products.
 * BF16 (cpu, where oneDNN has a bfloat16 brgemm: AVX512_BF16 or AMX): the products of a
 * constant weight — linear layers, packed once per plan (runtime/cpu/k_nn_gemm.c) — take both
 * operands rounded to bfloat16 and sum in float32; everything else stays float32. */
enum { ULC_PRECISION_FP32 = 0, ULC_PRECISION_TF32 = 1, ULC_PRECISION_BF16 = 2 };

/* Sessions on the process's default device: the backend and device ulc_runtime_set_default_device
 * chose ("cpu" until then), every core. */
ulc_session_opts ulc_session_defaults(void);
/* The device every later ulc_session_defaults() names: "cpu", "cuda" or "cuda:N" (a command's
 * --device). A device that cannot be used fails here, with why ("no CUDA device is visible",
 * "built without the CUDA backend"): ULC_ERR_UNSUPPORTED; a malformed spec ULC_ERR_INVALID_ARG.
 * Set it before making sessions, from one thread. */
ulc_status ulc_runtime_set_default_device(const char *spec, int precision, ulc_ctx *ctx);
/* The default device in words, for reports: "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3 (sm_90,
 * 79 GiB))". */
const char *ulc_runtime_device_name(void);
/* 1 when the named backend computes in its own memory (cuda). */
int ulc_backend_on_device(const char *backend);
/* The backends this build can run, for messages and --version: "cpu" or "cpu, cuda". */
const char *ulc_backend_names(void);

/* Checks that every node the model needs is supported by the backend (the message names the
 * first that is not: "node 'n0' (MyOp, domain com.x): not supported by backend cpu"). */
ulc_status ulc_session_create(const ulc_model *m, const ulc_session_opts *opts,
                              ulc_session **out, ulc_ctx *ctx);
void ulc_session_free(ulc_session *s); /* accepts NULL */

/* Binds graph input `name` to t (not copied: t's data must stay valid through the next run).
 * dtype and rank must match the graph's declaration; fixed dims must match. */
ulc_status ulc_session_set_input(ulc_session *s, const char *name, const ulc_rt_tensor *t,
                                 ulc_ctx *ctx);
/* The same for float32 data of shape dims[0..rank) (a hook's per-step targets and weights). */
ulc_status ulc_session_set_f32(ulc_session *s, const char *name, float *data, int rank,
                               const int64_t *dims, ulc_ctx *ctx);
ulc_status ulc_session_run(ulc_session *s, ulc_ctx *ctx);
/* The graph output `name` after a run, in the graph's declared dtype; valid until the next run
 * or ulc_session_free. NULL if no such output or no run yet. */
const ulc_rt_tensor *ulc_session_output(const ulc_session *s, const char *name);
/* Sessions on a device (a GPU): tensors handed from one session to another without a copy
 * through the host. ulc_session_output copies an output back (once per run, on first ask);
 * these leave it where it is. */
int ulc_session_on_device(const ulc_session *s); /* 1 on a backend with its own memory */
/* Output `name` of the last run in device memory (float32 where the graph declares a half type;
 * data valid until the session's next run or free), or NULL: no such output, no run yet, a
 * constant output (ulc_session_output has it), or a session on the cpu. These three and
 * ulc_session_output change the session's record of what is where: one thread at a time. */
const ulc_rt_tensor *ulc_session_output_device(const ulc_session *s, const char *name);
/* Input `name` in device memory: the device tensor it is bound to (set_input_device), else the
 * copy the last run read of its current binding (valid likewise); NULL otherwise (bound again
 * since, on the cpu, never run). */
const ulc_rt_tensor *ulc_session_input_device(const ulc_session *s, const char *name);
/* Binds input `name` to a device tensor from another session on the same device (the two
 * above, or memory from ulc_session_device_alloc): read in place. The tensor must stay valid
 * through this session's next run (its maker must not run again first), and the work that wrote
 * it must be finished: a run's outputs are (a run ends by waiting for its stream); work queued
 * with ulc_session_device_* is once ulc_session_device_sync returned. Not for inputs whose
 * bytes decide shapes (ulc_session_input_decides_shapes). */
ulc_status ulc_session_set_input_device(ulc_session *s, const char *name, const ulc_rt_tensor *t,
                                        ulc_ctx *ctx);
/* 1 when input `name`'s bytes decide shapes (plans are made per value: host bytes only). */
int ulc_session_input_decides_shapes(const ulc_session *s, const char *name);
/* Waits for the work queued on the session's device (its stream); reports a failure of it. */
ulc_status ulc_session_device_sync(ulc_session *s, ulc_ctx *ctx);
/* Device memory free now, in bytes (0 on the cpu). */
size_t ulc_session_device_free_bytes(ulc_session *s);
/* Device memory of a session on a device, for state a caller keeps there between runs (a
 * trainer's parameters, gradients' copies and optimizer moments): NULL on the cpu or when out
 * of device memory. Copies are ordered with the session's runs; download waits for them. */
void *ulc_session_device_alloc(ulc_session *s, size_t bytes);
void ulc_session_device_free(ulc_session *s, void *p); /* accepts NULL */
ulc_status ulc_session_device_upload(ulc_session *s, void *dst, const void *src, size_t bytes,
                                     ulc_ctx *ctx);
ulc_status ulc_session_device_download(ulc_session *s, void *dst, const void *src, size_t bytes,
                                       ulc_ctx *ctx);
ulc_status ulc_session_device_copy(ulc_session *s, void *dst, const void *src, size_t bytes,
                                   ulc_ctx *ctx); /* device to device */
ulc_status ulc_session_device_zero(ulc_session *s, void *dst, size_t bytes, ulc_ctx *ctx);

/* One optimizer update of n float32 elements in device memory, the same float operations as
 * train/optim.c's loops (torch's single-tensor SGD and AdamW), so a GPU and the cpu update alike.
 * The scalars come from ulc_optimizer_device_args (train.h). */
typedef struct ulc_rt_optim {
    int adamw;                         /* 0: SGD, 1: AdamW */
    /* SGD */
    float wd, mom, neg_lr;
    int use_wd, use_mom, nesterov, first;
    /* AdamW */
    float decay, b1, omb1, b2, omb2, bc2s, eps, neg_ss;
} ulc_rt_optim;
/* p -= update(g); m (SGD with momentum, AdamW) and v (AdamW) are the moments, or NULL. */
ulc_status ulc_session_device_optim(ulc_session *s, const ulc_rt_optim *o, float *p, const float *g,
                                    float *m, float *v, size_t n, ulc_ctx *ctx);
/* dst[r] = src[idx[r]] for r < n rows of row_bytes each (dst, src and idx in device memory;
 * idx int64): a batch gathered from a dataset kept on the device. */
ulc_status ulc_session_device_gather_rows(ulc_session *s, void *dst, const void *src, size_t row_bytes,
                                          const int64_t *idx, int64_t n, ulc_ctx *ctx);
/* Adds to *count (a device unsigned) the number of non-finite elements of x (device). */
ulc_status ulc_session_device_count_nonfinite(ulc_session *s, const float *x, size_t n,
                                              unsigned *count, ulc_ctx *ctx);
/* With opts.profile: writes time per op type (total, share, calls, mean) over every run so far
 * except those that made a plan (first runs: primitives are created, pages touched), slowest
 * first, then the ten slowest nodes. */
void ulc_session_profile(const ulc_session *s, FILE *out);
/* Number of plans made so far (a new input shape makes a new plan). */
int ulc_session_plan_count(const ulc_session *s);
/* Bytes of the activation buffer the current plan uses, and what it would need without
 * sharing (every intermediate in its own buffer). */
void ulc_session_memory(const ulc_session *s, size_t *planned, size_t *unshared);

/* ---- host math ------------------------------------------------------------------------------ */

/* y[i] = e^x[i] over float32 arrays in host memory (y may be x): the elementwise kernels'
 * vectorised exp (≤ 1 ulp, runtime/cpu/k_elementwise_math.c), for the host work a method's
 * hook does each step (RFA's retain mean of the teacher's softmax). */
void ulc_rt_vexp_f32(const float *x, float *y, int64_t n);

/* ---- analysis: shapes and constants -------------------------------------------------------- */

/* Shape inference and constant evaluation over g. `inputs` pins graph inputs by name: a pinned
 * input has a known shape (dims from the tensor); with data it is also a known value. Inputs
 * not pinned keep the shapes the graph declares when those are fully concrete, and are
 * otherwise unknown (so is everything computed from them). A node is evaluated when every
 * input is a known value and its results take at most limit_bytes. */
typedef struct ulc_analysis ulc_analysis;

typedef struct ulc_rt_binding {
    const char *name;
    ulc_rt_tensor t; /* data NULL: shape only */
} ulc_rt_binding;

ulc_status ulc_analyze(const ulc_graph *g, int64_t opset, const ulc_rt_binding *inputs,
                       int n_inputs, size_t limit_bytes, ulc_analysis **out, ulc_ctx *ctx);
void ulc_analysis_free(ulc_analysis *a); /* accepts NULL */
/* v's inferred type and shape: 1 if known (t->data is the value when it is a known constant,
 * else NULL), 0 if not. */
int ulc_analysis_get(const ulc_analysis *a, const ulc_value *v, ulc_rt_tensor *t);
/* 1 if node n's outputs were all evaluated to constants. */
int ulc_analysis_folded(const ulc_analysis *a, const ulc_node *n);

/* ---- backends ------------------------------------------------------------------------------ */

/* 1 if the named backend can run node n (domain, op, and the op's attributes/dtypes as far as
 * they can be checked without shapes); otherwise 0 with the reason in why. */
int ulc_backend_supports(const char *backend, const ulc_node *n, char *why, size_t why_size);
/* The ops a backend claims, as a NULL-terminated list of op names. */
const char *const *ulc_backend_ops(const char *backend);

/* ---- rows: a model over the rows of data columns, in batches ------------------------------- */

/* Rows per run: at most ULC_ROWS_BATCH (or the caller's max_rows), fewer when the inputs of that
 * many rows would take more than ULC_ROWS_BYTES (at least one row per run). */
#define ULC_ROWS_BATCH 256
#define ULC_ROWS_BYTES (64u << 20)
#define ULC_ROWS_MAX_FEEDS 256 /* a cache model's empty pasts count too (io/data.h) */

/* The rows to run: columns [N, ...] (row i at data + i * row bytes; any alignment: rows are
 * copied into aligned batch buffers) feeding the named graph inputs. */
typedef struct ulc_rows {
    const char *names[ULC_ROWS_MAX_FEEDS];      /* graph inputs fed */
    const ulc_tensor *cols[ULC_ROWS_MAX_FEEDS]; /* the column each reads */
    int n_feeds;
    const char *file;   /* the columns' file, for messages */
    const int64_t *idx; /* the rows: idx[0..n), or rows 0..n when NULL */
    int64_t n;
    int64_t max_rows;   /* rows per run at most; 0: ULC_ROWS_BATCH */
} ulc_rows;

/* The rows per run ulc_rows_run uses for r. */
int64_t ulc_rows_batch(const ulc_rows *r);

/* Called after each run with the batch's position in the rows: r->idx[r0..r0+rn) (or rows
 * r0..r0+rn); the outputs are the session's (ulc_session_output). */
typedef ulc_status (*ulc_rows_fn)(void *arg, ulc_session *s, int64_t r0, int64_t rn,
                                  ulc_ctx *ctx);

/*
 * Runs s over the rows, ulc_rows_batch(r) rows per run, and hands each batch to fn (may be NULL).
 * When binding or running a batch fails, *failed_at (may be NULL) is that batch's r0 (callers
 * name the batch in their message); otherwise -1.
 *
 *     ulc_rows r = {.names = {"input"}, .cols = {x}, .n_feeds = 1, .file = "d.safetensors",
 *                   .n = x->dims[0]};
 *     ulc_rows_run(s, &r, on_batch, &acc, &at, ctx);
 */
ulc_status ulc_rows_run(ulc_session *s, const ulc_rows *r, ulc_rows_fn fn, void *arg,
                        int64_t *failed_at, ulc_ctx *ctx);

/* Makes the message for a batch output o (NULL: missing) that is not float32 [rows, classes]
 * (classes > 0: the count earlier batches had). Returns the failure. */
typedef ulc_status (*ulc_rows_check_fn)(void *arg, const ulc_rt_tensor *o, int64_t rows,
                                        int64_t classes, ulc_ctx *ctx);

/* ulc_rows_run collecting output `out`, float32 [rows, C] for every batch (C the same), into
 * *z ([r->n, C], malloc'd; NULL on failure or without rows); *classes gets C (> 0 on entry: must
 * match). A batch output of another shape fails with check's message (NULL: a generic one). */
ulc_status ulc_rows_logits(ulc_session *s, const ulc_rows *r, const char *out,
                           ulc_rows_check_fn check, void *check_arg, int64_t *classes, float **z,
                           int64_t *failed_at, ulc_ctx *ctx);

#endif
