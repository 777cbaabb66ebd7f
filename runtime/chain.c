/* chain.c — fusing chains of float32 elementwise steps into one step of the backend's chain
 * kernel (a register program), and recognising GELU spellings among them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

static int chain_opcode(const ulc_node *n) {
    switch (n->op) {
    case ULC_OP_Add: return ULC_CH_ADD;
    case ULC_OP_Sub: return ULC_CH_SUB;
    case ULC_OP_Mul: return ULC_CH_MUL;
    case ULC_OP_Div: return ULC_CH_DIV;
    case ULC_OP_Pow: return ULC_CH_POW;
    case ULC_OP_Neg: return ULC_CH_NEG;
    case ULC_OP_Relu: return ULC_CH_RELU;
    case ULC_OP_Exp: return ULC_CH_EXP;
    case ULC_OP_Log: return ULC_CH_LOG;
    case ULC_OP_Sqrt: return ULC_CH_SQRT;
    case ULC_OP_Reciprocal: return ULC_CH_RECIP;
    case ULC_OP_Abs: return ULC_CH_ABS;
    case ULC_OP_Tanh: return ULC_CH_TANH;
    case ULC_OP_Erf: return ULC_CH_ERF;
    case ULC_OP_Sigmoid: return ULC_CH_SIGMOID;
    case ULC_OP_FastGelu: {
        const ulc_attr *ap = ulc_node_attr(n, "approximate");
        return ap && ap->type == ULC_ATTR_STRING && ap->s.data && strcmp((const char *)ap->s.data, "none") == 0
                   ? ULC_CH_GELU_ERF
                   : ULC_CH_GELU_TANH;
    }
    case ULC_OP_Gelu: {
        const ulc_attr *ap = ulc_node_attr(n, "approximate");
        return ap && ap->type == ULC_ATTR_STRING && ap->s.data &&
                       strcmp((const char *)ap->s.data, "tanh") == 0
                   ? ULC_CH_GELU_TANH
                   : ULC_CH_GELU_ERF;
    }
    default: return -1;
    }
}

/* A float32 scalar constant (any rank, one element). */
static int scalar_const(const rt_val *rv) {
    return rv->known == V_CONST && rv->t.dtype == ULC_DT_F32 && ulc_rt_numel(&rv->t) == 1;
}

/* Can step st join a chain: a float32 elementwise op whose operands are tensors shaped like
 * its output or scalar constants? */
static int chain_eligible(const rt_plan *p, const rt_step *st) {
    const ulc_node *n = st->node;
    if (st->removed || st->kc.fuse || chain_opcode(n) < 0 || n->n_outputs != 1 || !st->out0) return 0;
    const rt_val *ov = &p->vals[st->out0->id];
    if (ov->t.dtype != ULC_DT_F32) return 0;
    int arity = n->op == ULC_OP_Add || n->op == ULC_OP_Sub || n->op == ULC_OP_Mul ||
                        n->op == ULC_OP_Div || n->op == ULC_OP_Pow ? 2 : 1;
    if (n->n_inputs != arity) return 0;
    int tensors = 0;
    for (int i = 0; i < arity; i++) {
        const ulc_value *v = n->inputs[i].value;
        if (!v) return 0;
        const rt_val *rv = &p->vals[v->id];
        if (scalar_const(rv)) continue;
        if (rv->t.dtype != ULC_DT_F32 || !ulc_rt_same_shape(&rv->t, &ov->t)) return 0;
        tensors++;
    }
    return tensors > 0;
}

static int uf_find(int *parent, int i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
}

/* Builds the program of the chain whose members are steps[idx[0..m)] (in order) into c;
 * externals get input slots in ext. 0 when it does not fit the register file. */
static int build_chain(const rt_plan *p, const int *idx, int m, ulc_chain *c, ulc_value **ext,
                       int *n_ext) {
    /* registers: by value id, with last-use counts to free them */
    enum { MAXV = 2 * ULC_CHAIN_MAX };
    const ulc_value *regv[ULC_CHAIN_REGS];
    int reg_uses[ULC_CHAIN_REGS];
    int nregs_free = ULC_CHAIN_REGS;
    (void)nregs_free;
    for (int r = 0; r < ULC_CHAIN_REGS; r++) {
        regv[r] = NULL;
        reg_uses[r] = 0;
    }
    c->n_ins = 0;
    *n_ext = 0;
    for (int k = 0; k < m; k++) {
        const ulc_node *n = p->steps[idx[k]].node;
        int opc = chain_opcode(n);
        int arity = n->n_inputs;
        uint8_t opr[2] = {0, 0};
        int imm_side = 0;
        float imm = 0;
        for (int i = 0; i < arity; i++) {
            const ulc_value *v = n->inputs[i].value;
            const rt_val *rv = &p->vals[v->id];
            if (scalar_const(rv) && arity == 2) {
                imm_side = i + 1;
                imm = *(const float *)rv->t.data;
                continue;
            }
            int r = -1;
            for (int q = 0; q < ULC_CHAIN_REGS; q++)
                if (regv[q] == v) r = q;
            if (r < 0) { /* an external: load it (again, if its register was reused) */
                int slot = -1;
                for (int e = 0; e < *n_ext; e++)
                    if (ext[e] == v) slot = e;
                if (slot < 0) {
                    if (*n_ext >= MAXV) return 0;
                    slot = (*n_ext)++;
                    ext[slot] = (ulc_value *)v;
                }
                for (int q = 0; q < ULC_CHAIN_REGS && r < 0; q++)
                    if (!regv[q]) r = q;
                if (r < 0 || c->n_ins >= ULC_CHAIN_MAX) return 0;
                regv[r] = v;
                /* uses of v left in the chain, counting this one */
                int uses = 0;
                for (int k2 = k; k2 < m; k2++) {
                    const ulc_node *n2 = p->steps[idx[k2]].node;
                    for (int i2 = 0; i2 < n2->n_inputs; i2++) uses += n2->inputs[i2].value == v;
                }
                reg_uses[r] = uses;
                c->ins[c->n_ins++] = (ulc_chain_ins){.op = ULC_CH_LOAD, .dst = (uint8_t)r,
                                                     .input = (int16_t)slot};
            }
            opr[i] = (uint8_t)r;
        }
        if (imm_side == 0 && arity == 2 && n->inputs[0].value == n->inputs[1].value) opr[1] = opr[0];
        /* free the operand registers whose value has no more uses here */
        for (int i = 0; i < arity; i++) {
            if (imm_side == i + 1) continue;
            int r = opr[i];
            if (--reg_uses[r] <= 0) regv[r] = NULL;
        }
        int dst = -1;
        for (int q = 0; q < ULC_CHAIN_REGS && dst < 0; q++)
            if (!regv[q]) dst = q;
        if (dst < 0 || c->n_ins >= ULC_CHAIN_MAX) return 0;
        const ulc_value *out = n->outputs[0];
        int uses = 0;
        for (int k2 = k + 1; k2 < m; k2++) {
            const ulc_node *n2 = p->steps[idx[k2]].node;
            for (int i2 = 0; i2 < n2->n_inputs; i2++) uses += n2->inputs[i2].value == out;
        }
        regv[dst] = out;
        reg_uses[dst] = uses > 0 ? uses : 1;
        ulc_chain_ins ins = {.op = (uint8_t)opc, .dst = (uint8_t)dst, .imm_side = (uint8_t)imm_side,
                             .imm = imm};
        if (arity == 2) {
            if (imm_side == 1) ins.b = opr[1];
            else if (imm_side == 2) ins.a = opr[0];
            else {
                ins.a = opr[0];
                ins.b = opr[1];
            }
        } else {
            ins.a = opr[0];
        }
        c->ins[c->n_ins++] = ins;
        c->out = dst;
    }
    return 1;
}


/* Which GELU a single-input chain computes, probed on values across its range: ULC_ACT_GELU_ERF,
 * ULC_ACT_GELU_TANH, or ULC_ACT_NONE. Exporters spell GELU in many orders of the same five to
 * eight ops; comparing values recognises them all without matching their shapes. */
static ulc_kact chain_gelu(const rt_plan *p, const ulc_chain *c) {
    enum { NP = 64 };
    float x[NP], y[NP];
    for (int i = 0; i < NP; i++) x[i] = -7.0f + 14.0f * (float)i / (NP - 1) + 0.013f;
    const float *ins[1] = {x};
    p->be->chain_eval(c, ins, y, NP);
    int erf_ok = 1, tanh_ok = 1;
    for (int i = 0; i < NP; i++) {
        double v = x[i];
        double ge = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
        double gt = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); /* √(2/π) */
        if (!(fabs(y[i] - ge) <= 1e-5 * fabs(ge) + 1e-6)) erf_ok = 0;
        if (!(fabs(y[i] - gt) <= 1e-5 * fabs(gt) + 1e-6)) tanh_ok = 0;
    }
    return erf_ok ? ULC_ACT_GELU_ERF : tanh_ok ? ULC_ACT_GELU_TANH : ULC_ACT_NONE;
}

/* A chain that computes GELU(x): folded into x's producer as its activation when that kernel
 * takes it and x feeds nothing else, else run as one GELU instruction. 1 if folded. */
static int gelu_chain(rt_plan *p, const int *idx, int m, ulc_chain *c, ulc_value *x) {
    ulc_kact act = chain_gelu(p, c);
    if (act == ULC_ACT_NONE) return 0;
    rt_step *root = &p->steps[idx[m - 1]];
    int pi = p->vals[x->id].step;
    if (pi >= 0) {
        rt_step *ps = &p->steps[pi];
        int only_chain = ps->out0 == x && !(x->flags & ULC_VALUE_OUTPUT);
        for (const ulc_use *u = x->first_use; u && only_chain; u = u->next) {
            int in_chain = 0;
            for (int k = 0; k < m; k++) in_chain |= p->steps[idx[k]].node == u->node;
            only_chain = in_chain;
        }
        ulc_kfuse f = ps->kc.fuse ? *ps->kc.fuse : (ulc_kfuse){0};
        /* not after a fused residual or mask: the activation would apply before them */
        if (only_chain && !ps->removed && ps->k->can_fuse && f.act == ULC_ACT_NONE && !f.residual &&
            !f.mask && !ps->alias) {
            f.act = act;
            if (ps->k->can_fuse(&ps->kc, &f)) {
                ps->fuse = f;
                ps->kc.fuse = &ps->fuse;
                p->vals[x->id].step = -1;
                ps->out0 = root->out0;
                ps->out[0] = &p->vals[root->out0->id].t;
                p->vals[root->out0->id].step = pi;
                for (int k = 0; k < m; k++) {
                    p->steps[idx[k]].removed = 1;
                    if (k < m - 1) p->vals[p->steps[idx[k]].out0->id].step = -1;
                }
                return 1;
            }
        }
    }
    c->n_ins = 2;
    c->ins[0] = (ulc_chain_ins){.op = ULC_CH_LOAD, .dst = 0, .input = 0};
    c->ins[1] = (ulc_chain_ins){.op = (uint8_t)(act == ULC_ACT_GELU_ERF ? ULC_CH_GELU_ERF : ULC_CH_GELU_TANH),
                                .dst = 1, .a = 0};
    c->out = 1;
    return 0;
}

/* Fuses connected chains of float32 elementwise steps (linked by values read once, by the next
 * member) into one step running the backend's chain kernel at the last member's place. */
ulc_status ulc_plan_fuse_chains(rt_plan *p, const ulc_graph *g, ulc_ctx *ctx) {
    int ns = p->n_steps;
    int *parent = malloc(sizeof(int) * (size_t)(ns ? ns : 1));
    int *step_of = malloc(sizeof(int) * (size_t)(g->next_node_id > 0 ? g->next_node_id : 1));
    int *idx = malloc(sizeof(int) * (size_t)(ns ? ns : 1));
    uint8_t *ok = calloc((size_t)(ns ? ns : 1), 1);
    if (!parent || !step_of || !idx || !ok) {
        free(parent), free(step_of), free(idx), free(ok);
        return ulc_plan_nomem(ctx, "fusion");
    }
    for (int i = 0; i < g->next_node_id; i++) step_of[i] = -1;
    for (int i = 0; i < ns; i++) {
        parent[i] = i;
        if (!p->steps[i].removed) step_of[p->steps[i].node->id] = i;
        ok[i] = (uint8_t)chain_eligible(p, &p->steps[i]);
    }
    for (int j = 0; j < ns; j++) {
        if (!ok[j]) continue;
        const ulc_node *n = p->steps[j].node;
        for (int i = 0; i < n->n_inputs; i++) {
            const ulc_value *v = n->inputs[i].value;
            if (!v || p->vals[v->id].step < 0) continue;
            int pi = p->vals[v->id].step;
            if (!ok[pi] || p->steps[pi].out0 != v) continue;
            if (ulc_plan_sole_reader(p, step_of, g, v) != j) continue;
            parent[uf_find(parent, pi)] = uf_find(parent, j);
        }
    }
    ulc_status st = ULC_OK;
    for (int root = 0; root < ns && st == ULC_OK; root++) {
        if (!ok[root] || uf_find(parent, root) != root) continue;
        int m = 0;
        for (int i = 0; i < ns; i++)
            if (ok[i] && uf_find(parent, i) == root) idx[m++] = i;
        if (m < 2 || idx[m - 1] != root) continue;
        ulc_chain *c = malloc(sizeof *c);
        ulc_value **ext = malloc(sizeof(ulc_value *) * 2 * ULC_CHAIN_MAX);
        int n_ext = 0;
        if (!c || !ext) {
            free(c), free(ext);
            st = ulc_plan_nomem(ctx, "fusion");
            break;
        }
        if (m > ULC_CHAIN_MAX / 2 || !build_chain(p, idx, m, c, ext, &n_ext)) {
            free(c), free(ext);
            continue;
        }
        if (n_ext == 1 && m >= 4 && !p->no_gelu && gelu_chain(p, idx, m, c, ext[0])) {
            free(c), free(ext);
            continue;
        }
        rt_step *rs = &p->steps[root];
        ulc_rt_tensor **in = malloc(sizeof(ulc_rt_tensor *) * (size_t)n_ext);
        if (!in) {
            free(c), free(ext);
            st = ulc_plan_nomem(ctx, "fusion");
            break;
        }
        for (int e = 0; e < n_ext; e++) in[e] = &p->vals[ext[e]->id].t;
        free(rs->in);
        rs->in = in;
        rs->kc.in = in;
        rs->kc.n_in = n_ext;
        rs->k = p->be->chain_kernel();
        rs->chain = 1;
        rs->kc.state = c;
        rs->reads = ext;
        rs->n_reads = n_ext;
        for (int i = 0; i < m - 1; i++) {
            p->steps[idx[i]].removed = 1;
            p->vals[p->steps[idx[i]].out0->id].step = -1;
        }
    }
    free(parent), free(step_of), free(idx), free(ok);
    return st;
}
