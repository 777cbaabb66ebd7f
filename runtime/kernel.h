/*
 * kernel.h — the contract between the planner/executor (runtime/plan.h and its files) and a
 * backend's kernels. The helpers kernels share are in runtime/kutil.h.
 *
 * One ulc_kernel per op. Output dtypes and shapes are not the kernel's business: the planner
 * asks the op's shape rule (runtime/shape.h, the same table for every backend and for
 * ulc_analyze) once per plan, then calls, for every node it schedules:
 *
 *   prepare(k)  optional, once per plan, shapes fixed: build primitives, cache constants in state.
 *   run(k)      every execution: inputs and outputs have data (outputs are uninitialised).
 *   release(s)  optional: frees what prepare put in k->state.
 *
 * The kernel context (ulc_kctx) is also what shape rules read (node, opset, inputs, outputs,
 * error context); op-level decoders that rules and kernels share (Slice's parameters, Conv's
 * geometry, …) are in runtime/shape/params.h.
 *
 * Dtypes: float16 and bfloat16 never reach a kernel: the planner computes them as float32
 * (weights converted once), so kernels see F32, F64, the integer types and BOOL. An op whose
 * result must be *rounded* to half precision (Cast to=FLOAT16) rounds and keeps float32; the
 * planner converts graph outputs back to their declared dtype.
 *
 * Kernels never allocate output memory and never keep pointers to tensors between calls.
 * What an op's semantics fix for every backend — which inputs' values decide shapes, which ops
 * are metadata-only (Shape, Size) or views (Reshape, …: output 0 aliases input 0, and run must
 * not copy output 0 when it is called for the node's other outputs) — is in runtime/shape.h too.
 */
#ifndef ULC_RUNTIME_KERNEL_H
#define ULC_RUNTIME_KERNEL_H

#include <stdint.h>

#include "common/status.h"
#include "ir/graph.h"
#include "runtime/runtime.h"

/* Elementwise work the planner fused into a step: y = act(op(...) + addend). The addend has the
 * output's dtype and a shape that broadcasts to the output's (unidirectionally). */
typedef enum ulc_kact {
    ULC_ACT_NONE = 0,
    ULC_ACT_RELU,
    ULC_ACT_LEAKY_RELU, /* a: alpha */
    ULC_ACT_CLIP,       /* a: min, b: max */
    ULC_ACT_SIGMOID,
    ULC_ACT_TANH,
    ULC_ACT_GELU_ERF,   /* 0.5·x·(1 + erf(x/√2)) */
    ULC_ACT_GELU_TANH   /* 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) */
} ulc_kact;

typedef struct ulc_kfuse {
    const ulc_rt_tensor *addend; /* NULL: none */
    ulc_kact act;
    float a, b;
    /* NULL, or a tensor of y's shape: y = mask > 0 ? y : 0 after the addend (a ReluGrad(y, mask)
     * that followed; then act is NONE). Only kernels whose can_fuse accepts it see one. */
    const ulc_rt_tensor *mask;
    /* NULL, or a float32 tensor of y's shape added last: y = act(op + addend) + residual (a
     * transformer's residual Add after a linear layer's bias Add). Only kernels whose can_fuse
     * accepts it see one. */
    const ulc_rt_tensor *residual;
} ulc_kfuse;

typedef struct ulc_kctx {
    const ulc_node *node;
    int64_t opset;              /* the model's default-domain opset */
    int n_in, n_out;            /* = node->n_inputs, node->n_outputs */
    ulc_rt_tensor *const *in;   /* n_in; NULL = missing optional input */
    ulc_rt_tensor *const *out;  /* n_out; NULL = optional output not produced */
    uint32_t const_inputs;      /* bit i: input i is a constant of the plan (same bytes on every
                                   run: weights, folded values), so prepare may pack it once */
    const ulc_kfuse *fuse;      /* NULL, or work fused after the op (see can_fuse) */
    uint32_t packed_inputs;     /* set by prepare: bit i: constant input i now lives in the
                                   kernel's state (packed, transformed) and run never reads it,
                                   so the planner may free bytes it made for it (folds) */
    void *state;                /* the kernel's own, from prepare until release */
    int threads;                /* threads the kernel may use */
    int precision;              /* the session's ULC_PRECISION_* (runtime.h); 0 when folding */
    void *dev;                  /* a device backend's per-session context (its stream, library
                                   handles: runtime/cuda/cu.h's ucu_dev); NULL on the cpu */
    ulc_ctx *err;
} ulc_kctx;

enum {
    ULC_K_BLOCKED_OUT = 1u << 2, /* can write output 0 as NCHW8C (when the planner sets
                                   out[0]->layout before prepare) */
    ULC_K_BLOCKED_ADDEND = 1u << 3, /* a fused addend (k->fuse->addend) may be NCHW8C */
    ULC_K_RESIDUAL = 1u << 4        /* can_fuse may accept a residual (ulc_kfuse.residual) */
};

typedef struct ulc_kernel {
    uint32_t blocked_inputs; /* bit i set: input i may be NCHW8C (see runtime.h's layouts): the
                                kernel reads in[i]->layout in prepare and run */
    unsigned flags;        /* ULC_K_* */
    ulc_status (*prepare)(ulc_kctx *k); /* may be NULL */
    ulc_status (*run)(ulc_kctx *k);
    void (*release)(void *state);       /* may be NULL */
    /* May be NULL. At plan time, after the shape rule: 1 if this node's run can also apply f to its
     * output 0 (then k->fuse is set before prepare and the planner drops the fused nodes). */
    int (*can_fuse)(const ulc_kctx *k, const ulc_kfuse *f);
} ulc_kernel;

/* A chain of float32 elementwise ops the planner fused into one step (the backend's chain_kernel):
 * every operand is either a tensor shaped like the output (k->in[input]) or a scalar, so the
 * chain runs block by block in registers and reads and writes memory once. The ops are those
 * of the nodes, in their order, so results are the same bits as unfused. */
typedef enum ulc_chain_op {
    ULC_CH_LOAD, /* dst = in[input] */
    ULC_CH_ADD, ULC_CH_SUB, ULC_CH_MUL, ULC_CH_DIV, ULC_CH_POW, /* dst = a op b (imm for a scalar) */
    ULC_CH_NEG, ULC_CH_RELU, ULC_CH_EXP, ULC_CH_LOG, ULC_CH_SQRT, ULC_CH_RECIP, ULC_CH_ABS,
    ULC_CH_TANH, ULC_CH_ERF, ULC_CH_SIGMOID, ULC_CH_GELU_ERF, ULC_CH_GELU_TANH /* dst = f(a) */
} ulc_chain_op;

#define ULC_CHAIN_REGS 12
#define ULC_CHAIN_MAX 48

typedef struct ulc_chain_ins {
    uint8_t op, dst, a, b; /* registers */
    uint8_t imm_side;      /* binary ops: 1 = a is `imm`, 2 = b is `imm`, 0 = both registers */
    int16_t input;         /* LOAD: index into k->in */
    float imm;
} ulc_chain_ins;

typedef struct ulc_chain {
    int n_ins;
    ulc_chain_ins ins[ULC_CHAIN_MAX];
    int out; /* register holding the result */
} ulc_chain;

/* Attention the planner fused into one step of the backend's attn_kernel (runtime/attn.c): per
 * batch entry, S = Q · Kᵀ (Q [..., Tq, D], Kᵀ [..., D, Tk]), then ops[] in the nodes' order,
 * P = softmax of each row of S, O = P · V (V [..., Tk, Dv]) into O [..., Tq, Dv]. Q, Kᵀ, V and O
 * are k->in[0..2] and k->out[0] read through views: a Transpose the planner folded in (the
 * heads' split and merge) leaves its input in the slot, and the view says where element
 * (batch entry, row, column) is. A kernel may compute S a block of query rows at a time: the
 * [Tq, Tk] scores are never materialised whole. The ops are those of the nodes, so each score
 * is the value the unfused nodes computed. */
typedef enum ulc_attn_op {
    ULC_ATTN_MUL,   /* S = S · imm */
    ULC_ATTN_DIV,   /* S = S / imm */
    ULC_ATTN_WHERE, /* S = in[input] ? S : imm (s_is_x), or in[input] ? imm : S; bool, broadcast */
    ULC_ATTN_ADD    /* S = S + in[input] (float32, broadcast to S's shape) */
} ulc_attn_op;

#define ULC_ATTN_MAX_OPS ULC_ATTENTION_MAX_OPS

/* Element strides of one operand: of each leading (batch) dim of the scores' shape, of a
 * matrix row and of a matrix column. A kernel needs cs == 1 or rs == 1 (cs == 1 for O). */
typedef struct ulc_attn_view {
    int64_t bs[ULC_RT_MAX_RANK];
    int64_t rs, cs;
} ulc_attn_view;

typedef struct ulc_attn {
    int n_ops;
    struct {
        uint8_t op, input, s_is_x;
        float imm;
    } ops[ULC_ATTN_MAX_OPS];
    /* the geometry: the scores' shape [leading..., Tq, Tk] (rank >= 2), D and Dv */
    int rank;
    int64_t sdims[ULC_RT_MAX_RANK];
    int64_t d, dv;
    ulc_attn_view q, kt, v, o;
} ulc_attn;

/* v for a dense row-major tensor of the scores' leading dims (a->sdims) and a rows × cols
 * matrix per entry. */
static inline void ulc_attn_dense_view(const ulc_attn *a, int64_t rows, int64_t cols, ulc_attn_view *v) {
    int64_t s = rows * cols;
    v->cs = 1;
    v->rs = cols;
    for (int d = a->rank - 3; d >= 0; d--) {
        v->bs[d] = s;
        s *= a->sdims[d];
    }
}

/* A backend that computes in its own memory (a GPU): what a session needs to keep a plan's
 * tensors there. Every call takes the context open() made for the session (one stream). A plan
 * on such a backend holds its activations in one device buffer, uploads each constant a step
 * reads once (the host bytes stay at the tensor's `host`, for kernels that read values in
 * prepare), uploads the bound inputs before each run and downloads the outputs after it. */
typedef struct ulc_device_ops {
    /* The per-session context; fails with a message naming why (no device visible, a driver
     * too old, out of memory). precision: 0 float32 (TF32 off), 1 TF32 products. */
    ulc_status (*open)(int device, int precision, void **dev, ulc_ctx *ctx);
    void (*close)(void *dev);
    void *(*alloc)(void *dev, size_t bytes); /* NULL: out of device memory */
    void (*free)(void *dev, void *p);        /* accepts NULL */
    /* Ordered on the session's stream; upload may return before the copy is done but src must
     * then stay valid until the next sync (the session's bound inputs and plan constants do). */
    ulc_status (*upload)(void *dev, void *dst, const void *src, size_t bytes, ulc_ctx *ctx);
    ulc_status (*download)(void *dev, void *dst, const void *src, size_t bytes, ulc_ctx *ctx);
    /* Waits for the stream; reports a kernel's asynchronous failure. */
    ulc_status (*sync)(void *dev, ulc_ctx *ctx);
    /* "NVIDIA H100 80GB HBM3 (sm_90, 79 GiB)" */
    const char *(*describe)(void *dev);
    /* Services for state a caller keeps on the device (runtime.h's ulc_session_device_*):
     * a device-to-device copy, zeroing, an optimizer update, counting non-finite values. */
    ulc_status (*copy)(void *dev, void *dst, const void *src, size_t bytes, ulc_ctx *ctx);
    ulc_status (*zero)(void *dev, void *dst, size_t bytes, ulc_ctx *ctx);
    ulc_status (*optim)(void *dev, const ulc_rt_optim *o, float *p, const float *g, float *m,
                        float *v, size_t n, ulc_ctx *ctx);
    ulc_status (*count_nonfinite)(void *dev, const float *x, size_t n, unsigned *count, ulc_ctx *ctx);
    ulc_status (*gather_rows)(void *dev, void *dst, const void *src, size_t row_bytes, const int64_t *idx,
                              int64_t n, ulc_ctx *ctx);
    /* Makes the context's device the calling thread's current one (before a run's launches:
     * sessions on several devices in one process). */
    ulc_status (*enter)(void *dev, ulc_ctx *ctx);
    size_t (*free_bytes)(void *dev); /* device memory free now */
} ulc_device_ops;

/* A backend as the planner sees it: a kernel table and the few services fusion needs. The
 * planner and sessions only ever go through this vtable (runtime/backend.c keeps the list). */
typedef struct ulc_backend {
    const char *name;
    const ulc_kernel *(*kernel)(ulc_op op);  /* NULL: the backend does not run op */
    const ulc_kernel *(*chain_kernel)(void); /* fused elementwise chains; NULL: none */
    const ulc_kernel *(*attn_kernel)(void);  /* fused attention (ulc_attn); NULL: none */
    void (*chain_eval)(const ulc_chain *c, const float *const *ins, float *out, int n);
    void (*set_threads)(int threads);        /* 0 = the default */
    const ulc_device_ops *device;            /* NULL: computes in host memory */
    /* ULC_OK when sessions may compute at this ULC_PRECISION_* here (host backends; a device
     * backend's open decides); otherwise fails with why. NULL: float32 only. */
    ulc_status (*check_precision)(int precision, ulc_ctx *ctx);
} ulc_backend;

/* Backend registrations: the only symbols of a backend the planner names (runtime/backend.c
 * keeps the list). The CPU backend: runtime/cpu/kernels.c. The CUDA backend (runtime/cuda/,
 * built with nvcc when the toolkit is present; NULL otherwise) and its host emulator (the same
 * sources built with g++: what "cuda" names under ULC_CUDA_EMULATE=1, for the tests). */
const ulc_backend *ulc_backend_cpu(void);
const ulc_backend *ulc_backend_cuda(void);
const ulc_backend *ulc_backend_cuda_emu(void);

#endif
