/*
 * k_chain.c — fused chains of float32 elementwise ops (kernel.h, ulc_chain).
 *
 * Exported graphs spell GELU as five to eight elementwise nodes over [tokens, 4·hidden]
 * (Div → Erf → Add → Mul → Mul; Pow → Mul → Add → Mul → Tanh → Add → Mul → Mul); run one by one,
 * each reads and writes the whole tensor. The planner fuses such chains into one step whose
 * program this kernel interprets over blocks of BLOCK elements held in registers (stack
 * arrays in L1), so memory is read and written once. Each instruction is the op its node
 * computes, with the same float32 arithmetic and the same vector math functions as the
 * unfused kernels (k_elementwise_math.c), so fused and unfused runs give the same bits.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_elementwise.h"

#define BLOCK 512

typedef struct chain_run {
    const ulc_chain *c;
    ulc_rt_tensor *const *in;
    float *out;
    int64_t n;
} chain_run;

static void binary(uint8_t op, const float *a, const float *b, float *d, int n) {
    switch (op) {
    case ULC_CH_ADD: for (int i = 0; i < n; i++) d[i] = a[i] + b[i]; break;
    case ULC_CH_SUB: for (int i = 0; i < n; i++) d[i] = a[i] - b[i]; break;
    case ULC_CH_MUL: for (int i = 0; i < n; i++) d[i] = a[i] * b[i]; break;
    case ULC_CH_DIV: for (int i = 0; i < n; i++) d[i] = a[i] / b[i]; break;
    default: for (int i = 0; i < n; i++) d[i] = powf(a[i], b[i]); break;
    }
}

/* One operand a scalar: the loops the unfused kernels run for a broadcast scalar. */
static void binary_imm(uint8_t op, const float *x, float s, int scalar_first, float *d, int n) {
    switch (op) {
    case ULC_CH_ADD: for (int i = 0; i < n; i++) d[i] = scalar_first ? s + x[i] : x[i] + s; break;
    case ULC_CH_MUL: for (int i = 0; i < n; i++) d[i] = scalar_first ? s * x[i] : x[i] * s; break;
    case ULC_CH_SUB:
        if (scalar_first) for (int i = 0; i < n; i++) d[i] = s - x[i];
        else for (int i = 0; i < n; i++) d[i] = x[i] - s;
        break;
    case ULC_CH_DIV:
        if (scalar_first) for (int i = 0; i < n; i++) d[i] = s / x[i];
        else for (int i = 0; i < n; i++) d[i] = x[i] / s;
        break;
    default: /* Pow: x² and x³ as products, like the Pow kernel */
        if (!scalar_first && s == 2.0f) for (int i = 0; i < n; i++) d[i] = x[i] * x[i];
        else if (!scalar_first && s == 3.0f) for (int i = 0; i < n; i++) d[i] = x[i] * x[i] * x[i];
        else if (scalar_first) for (int i = 0; i < n; i++) d[i] = powf(s, x[i]);
        else for (int i = 0; i < n; i++) d[i] = powf(x[i], s);
        break;
    }
}

static void unary(uint8_t op, const float *a, float *d, int n) {
    switch (op) {
    case ULC_CH_NEG: for (int i = 0; i < n; i++) d[i] = -a[i]; break;
    case ULC_CH_RELU: for (int i = 0; i < n; i++) d[i] = a[i] > 0.0f ? a[i] : 0.0f; break;
    case ULC_CH_LOG: for (int i = 0; i < n; i++) d[i] = logf(a[i]); break;
    case ULC_CH_RECIP: for (int i = 0; i < n; i++) d[i] = 1.0f / a[i]; break;
    case ULC_CH_ABS: for (int i = 0; i < n; i++) d[i] = fabsf(a[i]); break;
    case ULC_CH_EXP: ulc_cpu_vexp_f32(a, d, n); break;
    case ULC_CH_SQRT: ulc_cpu_vsqrt_f32(a, d, n); break;
    case ULC_CH_TANH: ulc_cpu_vtanh_f32(a, d, n); break;
    case ULC_CH_ERF: ulc_cpu_verf_f32(a, d, n); break;
    case ULC_CH_SIGMOID: ulc_cpu_vsigmoid_f32(a, d, n); break;
    case ULC_CH_GELU_ERF: ulc_cpu_vgelu_erf_f32(a, d, n); break;
    default: ulc_cpu_vgelu_tanh_f32(a, d, n); break;
    }
}

static void chain_body(int64_t b0, int64_t b1, void *arg) {
    const chain_run *r = arg;
    const ulc_chain *c = r->c;
    float regs[ULC_CHAIN_REGS][BLOCK] __attribute__((aligned(64)));
    int64_t n_total = r->n;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t off = blk * BLOCK;
        int n = (int)(n_total - off < BLOCK ? n_total - off : BLOCK);
        for (int i = 0; i < c->n_ins; i++) {
            const ulc_chain_ins *ins = &c->ins[i];
            float *d = regs[ins->dst];
            if (ins->op == ULC_CH_LOAD) {
                memcpy(d, (const float *)r->in[ins->input]->data + off, sizeof(float) * (size_t)n);
            } else if (ins->op <= ULC_CH_POW) {
                if (ins->imm_side == 1) binary_imm(ins->op, regs[ins->b], ins->imm, 1, d, n);
                else if (ins->imm_side == 2) binary_imm(ins->op, regs[ins->a], ins->imm, 0, d, n);
                else binary(ins->op, regs[ins->a], regs[ins->b], d, n);
            } else {
                unary(ins->op, regs[ins->a], d, n);
            }
        }
        memcpy(r->out + off, regs[c->out], sizeof(float) * (size_t)n);
    }
}

void ulc_cpu_chain_eval(const ulc_chain *c, const float *const *ins, float *out, int n) {
    ulc_rt_tensor ts[2 * ULC_CHAIN_MAX];
    ulc_rt_tensor *tp[2 * ULC_CHAIN_MAX];
    for (int i = 0; i < c->n_ins; i++) {
        const ulc_chain_ins *in = &c->ins[i];
        if (in->op != ULC_CH_LOAD) continue;
        memset(&ts[in->input], 0, sizeof ts[0]);
        ts[in->input].data = (void *)(uintptr_t)ins[in->input];
        tp[in->input] = &ts[in->input];
    }
    chain_run r = {c, tp, out, n};
    chain_body(0, 1, &r);
}

static ulc_status chain_run_fn(ulc_kctx *k) {
    int64_t n = (int64_t)ulc_rt_numel(k->out[0]);
    chain_run r = {k->state, k->in, k->out[0]->data, n};
    int64_t blocks = (n + BLOCK - 1) / BLOCK;
    ulc_k_parallel(blocks, 32, chain_body, &r); /* 16K elements per thread at least */
    return ULC_OK;
}

static void chain_release(void *state) { free(state); }

static const ulc_kernel k_chain = {
    .run = chain_run_fn,
    .release = chain_release,
};

const ulc_kernel *ulc_cpu_chain_kernel(void) { return &k_chain; }
