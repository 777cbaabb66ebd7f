/*
 * plan.h — what the planner's files share (internal to runtime/; never included by a backend).
 *
 * A plan is made in stages, one file each:
 *
 *   plan.c      the walk: every value gets a runtime tensor, every node's outputs are inferred
 *               by its op's shape rule (shape.h),
 *               nodes whose inputs are all known are folded, the rest become steps (rt_step);
 *               ulc_analyze (analysis.c) runs the same walk with partial knowledge;
 *   bnfold.c    an inference BatchNormalization after a constant-weight Conv folds into it;
 *   fuse.c      Add / activation / ReluGrad after a step whose kernel accepts them (can_fuse);
 *   attn.c      MatMul → scale/mask → Softmax → MatMul becomes one step of the attention kernel;
 *   chain.c     chains of float32 elementwise steps become one step of the chain kernel;
 *   layout.c    activations stay NCHW8C between kernels that all accept it;
 *   memplan.c   liveness and placement in one buffer;
 *   device.c    a device backend's plan: constants uploaded once, inputs and outputs moved;
 *   session.c   the public session API: plans per input shapes, binding, running, profiling;
 *   backend.c   the list of backends (the only place that names one) and backend queries.
 *
 * The planner reaches a backend's kernels only through its ulc_backend vtable (kernel.h).
 */
#ifndef ULC_RUNTIME_PLAN_H
#define ULC_RUNTIME_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/kutil.h"
#include "runtime/shape.h"

#define PLAN_ALIGN 64

enum { V_UNKNOWN = 0, V_SHAPE, V_CONST }; /* what the plan knows about a value */

typedef struct rt_val {
    ulc_rt_tensor t;  /* compute dtype, shape, data (constants, or placed in the arena) */
    int known;        /* V_* */
    int decl_dtype;   /* the graph's dtype (F16/BF16 before the float32 mapping) */
    void *owned;      /* malloc'd bytes this plan frees (constants, converted inputs) */
    int step;         /* scheduled step that produces it, -1 otherwise */
    int root;         /* value id whose bytes these are (itself, or a view's source) */
    int last;         /* last step reading it (roots: of any of their views); INT32_MAX: kept */
    size_t offset;    /* roots placed in the arena */
    int placed;
} rt_val;

typedef struct rt_step {
    const ulc_node *node;
    const ulc_kernel *k;
    ulc_kctx kc;
    ulc_rt_tensor **in, **out;
    int prepared;
    int alias;           /* the node is a view (shape.h's ULC_SHAPE_ALIAS): 1, or 2 when the view
                            is all it makes (ulc_plan_alias_only: nothing to run) */
    ulc_value *out0;     /* the value output 0 writes (node->outputs[0], or the last fused node's) */
    ulc_value *addend;   /* fused addend read by this step, or NULL */
    ulc_value *mask;     /* fused ReluGrad mask read by this step, or NULL */
    ulc_value *residual; /* fused residual Add operand read by this step, or NULL */
    ulc_kfuse fuse;      /* kc.fuse points here when something was fused */
    struct rt_fold *fold; /* a Conv with a BatchNormalization folded in: its new W and B */
    ulc_value **reads;   /* a fused chain: the values it reads (malloc'd), instead of the node's */
    int n_reads;
    int removed;         /* fused into an earlier step */
    int chain;           /* runs the backend's chain kernel; kc.state is its program */
    int attn;            /* runs the backend's attention kernel; kc.state is its ulc_attn */
} rt_step;

/* Weights a plan computed for a step (BatchNormalization folded into a Conv). */
typedef struct rt_fold {
    ulc_rt_tensor w, b;
} rt_fold;

typedef struct rt_key_input {
    int rank;
    int64_t dims[ULC_RT_MAX_RANK];
    void *bytes; /* plan-keyed inputs: a copy of their data */
    size_t nbytes;
} rt_key_input;

typedef struct rt_plan {
    rt_val *vals;        /* graph->values.len */
    rt_step *steps;
    int n_steps;
    void *arena;
    size_t arena_size, unshared;
    rt_key_input *key;   /* per graph input */
    ulc_rt_tensor *outs; /* per graph output, in its declared dtype */
    void **out_owned;    /* per graph output: converted bytes (declared half dtypes) */
    uint64_t used;       /* LRU stamp */
    int threads;         /* the thread count it was prepared for (oneDNN fixes it then) */
    int no_gelu;         /* ULC_NO_GELU_FUSION=1: GELU chains stay as their ops */
    const ulc_backend *be;
    /* a device backend's plan (device.c): the arena is device memory, each constant a step reads
     * has a device copy (its tensor's host keeps the host bytes), and inputs and outputs move
     * through per-plan buffers */
    const ulc_device_ops *dops; /* NULL: host memory */
    void *dev;                  /* the session's device context */
    struct rt_dconst *dconst;   /* the constants its steps read, on the device */
    struct rt_dcache *dcache;   /* the session's uploads, shared by its plans */
    int n_dconst;
    void **dev_in;              /* per graph input: its device buffer (made at the first run) */
    void **out_host;            /* per graph output: the host copy a run downloads into */
    uint8_t *out_fresh;         /* per graph output: out_host holds this run's values */
    ulc_rt_tensor *out_dev;     /* per graph output: what ulc_session_output_device hands out */
    ulc_rt_tensor *in_dev;      /* per graph input: what ulc_session_input_device hands out */
} rt_plan;

/* A constant a device plan's steps read: t's data is dev while the plan lives (host before). */
typedef struct rt_dconst {
    ulc_rt_tensor *t;
    const void *host;
    void *dev;                  /* an upload of the session's cache */
} rt_dconst;

/* A session's uploads: the same host bytes (a weight every plan reads) are on the device once,
 * however many plans (batch sizes) read them; an entry goes with the last plan using it. */
typedef struct rt_dcache {
    struct rt_dcache_entry {
        const void *host;
        size_t bytes;
        void *dev;
        int refs;
    } *e;
    int n, cap;
} rt_dcache;

typedef struct rt_walk {
    const ulc_graph *g;
    const ulc_backend *be; /* runs the steps (plans) and the folds; an analysis may pass NULL:
                              shapes only, nothing folded */
    int64_t opset;
    rt_val *vals;
    int analysis;        /* 1: partial knowledge, no schedule, size-limited folding */
    size_t limit_bytes;  /* analysis folding limit */
    const uint8_t *needed; /* plans: nodes to schedule (NULL = all) */
    uint8_t *folded;     /* analysis: per node id */
    rt_step *steps;
    int n_steps, cap_steps;
    int precision;       /* plans: the session's ULC_PRECISION_* (each step's kc.precision, so
                            can_fuse sees it); folds compute in float32 */
    ulc_ctx *ctx;
} rt_walk;

/* ---- plan.c: helpers and the walk ---------------------------------------------------------- */

/* Records an out-of-memory error naming what was being allocated. */
ulc_status ulc_plan_nomem(ulc_ctx *ctx, const char *what);
/* PLAN_ALIGN-aligned bytes (n rounded up; at least PLAN_ALIGN); free with free(). */
void *ulc_plan_alloc(size_t n);
/* numel × compute-dtype size, with overflow → SIZE_MAX. */
size_t ulc_plan_nbytes(const ulc_rt_tensor *t);
/* 1 when the runtime computes in dtype dt. */
static inline int ulc_plan_dtype_ok(int dt) { return ulc_k_dtype_size(dt) != 0; }
/* n halves (f16 or bf16, dt) to float32, and back. */
void ulc_plan_halves_to_f32(int dt, const void *src, float *dst, uint64_t n);
void ulc_plan_f32_to_halves(int dt, const float *src, void *dst, uint64_t n);
/* Frees p and everything it owns (accepts NULL). */
void ulc_plan_free(rt_plan *p, const ulc_graph *g);
/* A view node whose only product is the view itself: nothing to run. */
int ulc_plan_alias_only(const ulc_node *n);
/* Initializers and bound inputs (keyed: per value id, bound inputs whose bytes key the plan),
 * then every node: fills w->vals, and w->steps unless w->analysis. */
ulc_status ulc_plan_walk(rt_walk *w, const ulc_rt_binding *bind, int n_bind, const uint8_t *keyed);

/* ---- the rewrites, in the order make_plan runs them ---------------------------------------- */

/* The one step reading v (v not a graph output, read in one slot), or -1 (fuse.c). */
int ulc_plan_sole_reader(const rt_plan *p, const int *step_of, const ulc_graph *g,
                         const ulc_value *v);
ulc_status ulc_plan_fold_batchnorms(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx); /* bnfold.c */
ulc_status ulc_plan_fuse_steps(rt_plan *p, const ulc_graph *g, int64_t opset, ulc_ctx *ctx); /* fuse.c */
ulc_status ulc_plan_fuse_chains(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx); /* chain.c */
ulc_status ulc_plan_fuse_attention(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx); /* attn.c */
void ulc_plan_compact(rt_plan *p);                           /* fuse.c: drops removed steps */
void ulc_plan_choose_layouts(rt_plan *p, const ulc_graph *g); /* layout.c */
/* Liveness, then placement in one arena (memplan.c): sets every scheduled value's data. */
ulc_status ulc_plan_place(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx);

/* ---- device.c: plans on a device backend -------------------------------------------------- */

/* After placement: uploads every constant a step reads (once per distinct bytes) and points the
 * steps at the device copies; allocates the outputs' host copies. */
ulc_status ulc_plan_upload_constants(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx);
/* Before each run: the bound inputs into their device buffers. */
ulc_status ulc_plan_upload_inputs(rt_plan *p, const ulc_graph *g, const ulc_rt_tensor *bound,
                                  const uint8_t *is_bound, ulc_ctx *ctx);
/* After a run (its stream waited for): graph output i into its host copy. */
ulc_status ulc_plan_download_output(rt_plan *p, const ulc_graph *g, size_t i, ulc_ctx *ctx);
/* Frees what device.c made (ulc_plan_free calls it first: tensors get their host bytes back). */
void ulc_plan_free_device(rt_plan *p, const ulc_graph *g);

/* ---- backend.c ----------------------------------------------------------------------------- */

/* The backend named name (NULL: the default), or NULL. */
const ulc_backend *ulc_backend_find(const char *name);

#endif
