/*
 * k_chain.cu — fused chains of float32 elementwise ops (kernel.h's ulc_chain) on the CUDA
 * backend, and the host evaluation of a chain's program (ucu_chain_eval) the planner probes to
 * recognise GELU spellings (runtime/chain.c).
 *
 * The planner (chain.c) stores the program in k->state (malloc'd; release frees it) and makes
 * k->in the chain's external tensors, each shaped like the output; scalar operands are the
 * instructions' immediates. One kernel interprets the program: the program and the input
 * pointers are one by-value parameter, each thread runs it over four consecutive elements at a
 * time (vector loads and stores when every pointer is aligned; the last n % 4 elements, or all of
 * them when a pointer is not, one by one), so memory is read and written once; a program of one
 * unary op on one input (a GELU the planner recognised) runs without the register file (which
 * lives in local memory). Each instruction computes what the unfused node computes (ew_math.h,
 * shared with k_elementwise*.cu) and what the CPU's chain computes (runtime/cpu/k_chain.c):
 * Relu as x > 0 ? x : 0, Pow with a scalar exponent 2 or 3 as products.
 */
#include "runtime/cuda/ew_math.h"

#include <stdlib.h>

UCU_BEGIN

#define CH_MAX_IN (2 * ULC_CHAIN_MAX) /* the planner's bound on a chain's externals */

typedef struct ChainArgs {
    ulc_chain c;
    const float *in[CH_MAX_IN];
} ChainArgs;

/* Runs the program over the V elements x[i..i+V) of every input; the result in res. */
template <int V> __device__ __forceinline__ void chain_exec(const ChainArgs &A, int64_t i, float *res) {
    float r[ULC_CHAIN_REGS][V];
    for (int s = 0; s < A.c.n_ins; s++) {
        const ulc_chain_ins &ins = A.c.ins[s];
        float *d = r[ins.dst];
        if (ins.op == ULC_CH_LOAD) {
            const float *src = A.in[ins.input] + i;
            if (V == 4) {
                V4<float> v = *reinterpret_cast<const V4<float> *>(src);
                for (int j = 0; j < V; j++) d[j] = v.v[j];
            } else {
                for (int j = 0; j < V; j++) d[j] = src[j];
            }
        } else if (ins.op <= ULC_CH_POW) {
            if (ins.imm_side == 1) {
                for (int j = 0; j < V; j++) d[j] = ew_chain_binary(ins.op, ins.imm, r[ins.b][j]);
            } else if (ins.imm_side == 2) {
                for (int j = 0; j < V; j++) d[j] = ew_chain_binary(ins.op, r[ins.a][j], ins.imm);
            } else {
                for (int j = 0; j < V; j++) d[j] = ew_chain_binary(ins.op, r[ins.a][j], r[ins.b][j]);
            }
        } else {
            for (int j = 0; j < V; j++) d[j] = ew_chain_unary(ins.op, r[ins.a][j]);
        }
    }
    for (int j = 0; j < V; j++) res[j] = r[A.c.out][j];
}

__global__ void k_chain(const __grid_constant__ ChainArgs A, float *out, int64_t n, int64_t nvec) {
    UCU_FOR(g, nvec / 4) {
        V4<float> v;
        chain_exec<4>(A, g * 4, v.v);
        *reinterpret_cast<V4<float> *>(out + g * 4) = v;
    }
    UCU_FOR(t, n - nvec) chain_exec<1>(A, nvec + t, out + nvec + t);
}

/* The program LOAD x; y = f(x) (a GELU the planner recognised): no register file. */
__global__ void k_chain_unary(const float *x, float *y, int64_t n, int64_t nvec, int op) {
    UCU_FOR(g, nvec / 4) {
        V4<float> v = reinterpret_cast<const V4<float> *>(x)[g];
        for (int j = 0; j < 4; j++) v.v[j] = ew_chain_unary(op, v.v[j]);
        reinterpret_cast<V4<float> *>(y)[g] = v;
    }
    UCU_FOR(t, n - nvec) y[nvec + t] = ew_chain_unary(op, x[nvec + t]);
}

/* 1 when the program is one unary op of one input: LOAD r; r' = f(r); out r'. */
static int chain_is_unary(const ulc_chain *c) {
    return c->n_ins == 2 && c->ins[0].op == ULC_CH_LOAD && c->ins[1].op > ULC_CH_POW &&
           c->ins[1].a == c->ins[0].dst && c->out == c->ins[1].dst;
}

static ulc_status chain_prepare(ulc_kctx *k) {
    const ulc_chain *c = (const ulc_chain *)k->state;
    if (!c || c->n_ins < 1 || c->n_ins > ULC_CHAIN_MAX || c->out < 0 || c->out >= ULC_CHAIN_REGS)
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "fused chain without a valid program");
    if (k->n_in > CH_MAX_IN)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "fused chain with %d inputs (backend cuda takes %d)", k->n_in,
                          CH_MAX_IN);
    if (!k->out[0] || k->out[0]->dtype != ULC_DT_F32)
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "fused chain without a float32 output");
    uint64_t n = ulc_rt_numel(k->out[0]);
    for (int i = 0; i < k->n_in; i++)
        if (!k->in[i] || k->in[i]->dtype != ULC_DT_F32 || ulc_rt_numel(k->in[i]) != n)
            return ulc_k_fail(k, ULC_ERR_INTERNAL, "fused chain input %d is not a float32 tensor of the output's size", i);
    for (int s = 0; s < c->n_ins; s++) {
        const ulc_chain_ins *in = &c->ins[s];
        if (in->op > ULC_CH_GELU_TANH || in->dst >= ULC_CHAIN_REGS || in->a >= ULC_CHAIN_REGS ||
            in->b >= ULC_CHAIN_REGS || (in->op == ULC_CH_LOAD && (in->input < 0 || in->input >= k->n_in)))
            return ulc_k_fail(k, ULC_ERR_INTERNAL, "fused chain instruction %d is not valid", s);
    }
    return ULC_OK;
}

static ulc_status chain_run(ulc_kctx *k) {
    const ulc_chain *c = (const ulc_chain *)k->state;
    float *out = (float *)k->out[0]->data;
    int64_t n = (int64_t)ulc_rt_numel(k->out[0]);
    if (n <= 0) return ULC_OK;
    ChainArgs A;
    memset(&A, 0, sizeof A);
    A.c = *c;
    int ok = ((uintptr_t)out % 16) == 0;
    for (int i = 0; i < k->n_in; i++) {
        A.in[i] = (const float *)k->in[i]->data;
        ok = ok && ((uintptr_t)A.in[i] % 16) == 0;
    }
    int64_t nvec = ok ? n & ~(int64_t)3 : 0;
    int64_t items = nvec / 4 > n - nvec ? nvec / 4 : n - nvec;
    if (chain_is_unary(c))
        UCU_LAUNCH(k_chain_unary, ucu_blocks(items, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k),
                   A.in[c->ins[0].input], out, n, nvec, (int)c->ins[1].op);
    else
        UCU_LAUNCH(k_chain, ucu_blocks(items, UCU_THREADS), UCU_THREADS, 0, ucu_stream(k), A, out, n, nvec);
    UCU_TRY_LAUNCH(k, "fused chain");
    return ULC_OK;
}

static const ulc_kernel k_chain_k = {0, 0, chain_prepare, chain_run, ucu_free_state, NULL};

const ulc_kernel *ucu_chain_kernel(void) { return &k_chain_k; }

/* The program over n elements on the host, with the device's scalar functions. */
void ucu_chain_eval(const ulc_chain *c, const float *const *ins, float *out, int n) {
    for (int i = 0; i < n; i++) {
        float r[ULC_CHAIN_REGS] = {0};
        for (int s = 0; s < c->n_ins; s++) {
            const ulc_chain_ins *in = &c->ins[s];
            float v;
            if (in->op == ULC_CH_LOAD) v = ins[in->input][i];
            else if (in->op <= ULC_CH_POW)
                v = in->imm_side == 1   ? ew_chain_binary(in->op, in->imm, r[in->b])
                    : in->imm_side == 2 ? ew_chain_binary(in->op, r[in->a], in->imm)
                                        : ew_chain_binary(in->op, r[in->a], r[in->b]);
            else v = ew_chain_unary(in->op, r[in->a]);
            r[in->dst] = v;
        }
        out[i] = r[c->out];
    }
}

UCU_END
