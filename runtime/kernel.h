/*
 * kernel.h — the contract between the planner/executor (runtime/plan.c) and a backend's kernels.
 *
 * One ulc_kernel per op. The planner calls, for every node it schedules:
 *
 *   infer(k)    once per plan: from the inputs' dtypes and shapes (and, for the input slots in
 *               `value_inputs`, their data, which the planner guarantees is known at plan time:
 *               Reshape's shape, Slice's starts/ends, …) set every present output's dtype, rank
 *               and dims. Attribute and shape errors are reported here, naming the node.
 *   prepare(k)  optional, once per plan, shapes fixed: build primitives, cache constants in state.
 *   run(k)      every execution: inputs and outputs have data (outputs are uninitialised).
 *   release(s)  optional: frees what prepare put in k->state.
 *
 * Dtypes: float16 and bfloat16 never reach a kernel: the planner computes them as float32
 * (weights converted once), so kernels see F32, F64, the integer types and BOOL. An op whose
 * result must be *rounded* to half precision (Cast to=FLOAT16) rounds and keeps float32; the
 * planner converts graph outputs back to their declared dtype.
 *
 * Kernels never allocate output memory and never keep pointers to tensors between calls.
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
    ulc_ctx *err;
} ulc_kctx;

enum {
    ULC_K_SHAPE_ONLY = 1u << 0, /* run reads input shapes only, never their data (Shape, Size):
                                   the planner evaluates it at plan time */
    ULC_K_BLOCKED_OUT = 1u << 2, /* can write output 0 as NCHW8C (when the planner sets
                                   out[0]->layout before prepare) */
    ULC_K_BLOCKED_ADDEND = 1u << 3, /* a fused addend (k->fuse->addend) may be NCHW8C */
    ULC_K_ALIAS = 1u << 1       /* output 0 is input 0's bytes under another shape (Reshape,
                                   Flatten, Squeeze, Unsqueeze, Identity, Dropout): the planner
                                   points the output at the input's bytes; run is called only
                                   when the node has other outputs (Dropout's mask), and then
                                   out[0]->data == in[0]->data: run must not copy output 0 */
};

typedef struct ulc_kernel {
    uint32_t value_inputs; /* bit i set: input i's data decides the output shapes */
    uint32_t blocked_inputs; /* bit i set: input i may be NCHW8C (see runtime.h's layouts): the
                                kernel reads in[i]->layout in prepare and run */
    unsigned flags;        /* ULC_K_* */
    ulc_status (*infer)(ulc_kctx *k);
    ulc_status (*prepare)(ulc_kctx *k); /* may be NULL */
    ulc_status (*run)(ulc_kctx *k);
    void (*release)(void *state);       /* may be NULL */
    /* May be NULL. At plan time, after infer: 1 if this node's run can also apply f to its
     * output 0 (then k->fuse is set before prepare and the planner drops the fused nodes). */
    int (*can_fuse)(const ulc_kctx *k, const ulc_kfuse *f);
} ulc_kernel;

/* A chain of float32 elementwise ops the planner fused into one step (runtime/cpu/k_chain.c):
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

/* The chain kernel: k->state is a malloc'd ulc_chain (freed by its release); no infer. */
const ulc_kernel *ulc_cpu_chain_kernel(void);
/* Evaluates c over n elements (n ≤ 512) of the inputs ins[] into out (the planner probes chains
 * with it to recognise the GELU spellings). */
void ulc_cpu_chain_eval(const ulc_chain *c, const float *const *ins, float *out, int n);

/* A backend as the planner sees it: a kernel table and the few services fusion needs. The
 * planner and sessions only ever go through this vtable (runtime/plan.c keeps the list). */
typedef struct ulc_backend {
    const char *name;
    const ulc_kernel *(*kernel)(ulc_op op);  /* NULL: the backend does not run op */
    const ulc_kernel *(*chain_kernel)(void); /* fused elementwise chains; NULL: none */
    void (*chain_eval)(const ulc_chain *c, const float *const *ins, float *out, int n);
    void (*set_threads)(int threads);        /* 0 = the default */
} ulc_backend;

/* The CPU backend (runtime/cpu/kernels.c). */
const ulc_backend *ulc_backend_cpu(void);
/* The CPU backend's kernel for op, or NULL. */
const ulc_kernel *ulc_cpu_kernel(ulc_op op);
/* Sets the thread count of the CPU backend's thread pool (OpenMP, shared with oneDNN). */
void ulc_cpu_set_threads(int threads);

/* ---- helpers for kernels (runtime/kutil.c) -------------------------------------------------- */

/* Records "node 'name' (Op): <message>" and returns s. */
ulc_status ulc_k_fail(ulc_kctx *k, ulc_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Attributes (absent → def; a present attribute of the wrong type is an error reported by
 * ulc_k_check_attrs, which the planner runs before infer). */
int64_t ulc_k_attr_int(const ulc_kctx *k, const char *name, int64_t def);
float ulc_k_attr_float(const ulc_kctx *k, const char *name, float def);
const char *ulc_k_attr_str(const ulc_kctx *k, const char *name, const char *def);
/* Number of ints (and *v), or -1 when the attribute is absent. */
int ulc_k_attr_ints(const ulc_kctx *k, const char *name, const int64_t **v);
const ulc_attr *ulc_k_attr(const ulc_kctx *k, const char *name);

/* Normalises axis into [0, rank) (negative counts from the end); error when out of range. */
ulc_status ulc_k_axis(ulc_kctx *k, int64_t axis, int rank, int *out);

/* Element i of an integer tensor (any int dtype, or bool) as int64. */
int64_t ulc_k_int_at(const ulc_rt_tensor *t, uint64_t i);
/* Element i of any numeric tensor as double. */
double ulc_k_f64_at(const ulc_rt_tensor *t, uint64_t i);
/* Stores v into element i of t, converting to t's dtype (ints wrap as C casts do). */
void ulc_k_store_f64(ulc_rt_tensor *t, uint64_t i, double v);

/* Bytes per element of a runtime dtype (F16/BF16 count 4: they are computed as float32). */
size_t ulc_k_dtype_size(int dt);
int ulc_k_is_int(int dt);   /* i8..u64 (not bool) */
int ulc_k_is_float(int dt); /* f32, f64 */

/* out = shape of the multidirectional broadcast of the given tensors (numpy rules). */
ulc_status ulc_k_broadcast(ulc_kctx *k, const ulc_rt_tensor *const *ts, int n, ulc_rt_tensor *out);
/* Element strides of t read as if broadcast to `rank` dims `dims` (0 for broadcast dims). */
void ulc_k_bcast_strides(const ulc_rt_tensor *t, int rank, const int64_t *dims, int64_t *strides);
/* Dense row-major element strides. */
void ulc_k_strides(int rank, const int64_t *dims, int64_t *strides);

void ulc_k_set(ulc_rt_tensor *t, int dtype, int rank, const int64_t *dims);

/* dtype code the runtime computes a declared dtype in (F16/BF16 → F32; others unchanged). */
static inline int ulc_k_compute_dtype(int dt) {
    return (dt == ULC_DT_F16 || dt == ULC_DT_BF16) ? ULC_DT_F32 : dt;
}

/* 1 when kernels may take their AVX2+FMA paths: the CPU has both and ULC_NO_SIMD is not set
 * (tests set it to check the portable twins on the same data). Cached; thread-safe. */
int ulc_k_avx2(void);

/* Runs body(i0, i1, arg) over [0, n) split across the pool's threads in contiguous ranges
 * (ranges of at least `grain` items; one thread when n is small). */
void ulc_k_parallel(int64_t n, int64_t grain, void (*body)(int64_t i0, int64_t i1, void *arg),
                    void *arg);

#endif
