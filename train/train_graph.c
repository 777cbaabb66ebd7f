/* train_graph.c — a model's training graph: parameters as inputs, data bindings, loss,
 * gradients (see train_graph.h). */
#include "train/train_graph.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/glob.h"
#include "common/half.h"
#include "ir/clone.h"
#include "ir/lora.h"
#include "train/attention.h"
#include "train/autodiff.h"
#include "train/grad.h"
#include "runtime/runtime.h"

/* Graph inputs of a training graph: data columns, targets and one per trained parameter (a
 * DistilGPT2 trained whole has 76; GPT2-medium 292). */
#define MAX_BIND 1024

static ulc_status nomem(ulc_ctx *ctx) {
    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (training graph)");
}

static int trainable_dtype(int dt) {
    return dt == ULC_DT_F32 || dt == ULC_DT_F16 || dt == ULC_DT_BF16;
}

int ulc_mark_params(ulc_model *m, const char *globs) {
    int count = 0;
    ulc_graph *g = m->graph;
    for (size_t i = 0; i < g->inits.len; i++) {
        ulc_value *v = g->inits.items[i];
        if ((v->flags & (ULC_VALUE_CONSTANT | ULC_VALUE_FROZEN)) || !v->init ||
            !trainable_dtype(v->init->dtype))
            continue;
        if (!ulc_glob_any(globs, v->name)) continue;
        if (!(v->flags & ULC_VALUE_PARAM)) count++;
        v->flags |= ULC_VALUE_PARAM;
    }
    return count;
}

ulc_status ulc_param_set_f32(ulc_graph *g, ulc_value *v, const float *vals, ulc_ctx *ctx) {
    const ulc_tensor *old = v->init;
    int dt = old->dtype;
    size_t es = dt == ULC_DT_F32 ? 4 : 2, nb = (size_t)old->numel * es;
    ulc_tensor *t = ulc_tensor_new(g, old->name, dt, old->rank, old->dims, ctx);
    void *buf = t ? malloc(nb ? nb : 1) : NULL;
    if (!buf) return t ? nomem(ctx) : ctx->status;
    if (dt == ULC_DT_F32) {
        memcpy(buf, vals, nb);
    } else { /* one rounding, to nearest even */
        uint16_t *h = buf;
        for (uint64_t i = 0; i < old->numel; i++)
            h[i] = dt == ULC_DT_F16 ? ulc_f32_to_f16(vals[i]) : ulc_f32_to_bf16(vals[i]);
    }
    ULC_TRY(ulc_tensor_set_owned(g, t, buf, nb, ctx));
    t->form = old->form == ULC_FORM_EXTERNAL ? ULC_FORM_RAW : old->form;
    t->extra = old->extra;
    v->init = t;
    return ULC_OK;
}

void ulc_train_graph_clear(ulc_train_graph *tg) {
    ulc_model_free(tg->model);
    memset(tg, 0, sizeof *tg);
}

/* A new graph input of the training graph. */
static ulc_value *add_input(ulc_graph *g, const char *name, int dtype, int rank,
                            const int64_t *dims, ulc_ctx *ctx) {
    ulc_value *v = ulc_graph_add_value(g, name, ctx);
    if (!v) return NULL;
    ulc_dim d[ULC_RT_MAX_RANK] = {{0}};
    for (int i = 0; i < rank; i++) d[i].value = dims[i];
    if (rank > 0) { /* the batch: the last partial batch is a second plan */
        d[0].value = -1;
        d[0].param = "N";
    }
    if (ulc_value_set_shape(g, v, rank, d, ctx) != ULC_OK) return NULL;
    v->dtype = dtype;
    v->flags |= ULC_VALUE_INPUT | ULC_VALUE_HAS_TYPE;
    if (ulc_ptrvec_push(&g->inputs, v) != 0) {
        nomem(ctx);
        return NULL;
    }
    return v;
}

static const char *arena_str(ulc_graph *g, const char *s) { return ulc_arena_strdup(g->arena, s); }

typedef struct binds {
    int n;
    ulc_rt_binding b[MAX_BIND];
} binds;

static ulc_status bind(binds *bs, const char *name, int dtype, int rank, const int64_t *dims,
                       ulc_ctx *ctx) {
    if (bs->n == MAX_BIND) return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "too many graph inputs");
    ulc_rt_binding *b = &bs->b[bs->n++];
    memset(b, 0, sizeof *b);
    b->name = name;
    b->t.dtype = dtype;
    b->t.rank = rank;
    for (int i = 0; i < rank; i++) b->t.dims[i] = dims[i];
    return ULC_OK;
}

/* Batch-shaped dims of a dataset column: [batch, rest...]. */
static int col_dims(const ulc_tensor *c, int batch, int64_t *dims) {
    dims[0] = batch;
    for (int i = 1; i < c->rank; i++) dims[i] = c->dims[i];
    return c->rank;
}

/* A conv LoRA branch as lora-inject writes it costs, beyond the base convolution, A and B
 * forward, their input gradients and their (small) weight gradients: about 3·r·(C·k + M)
 * multiply-adds per output position (C input channels, k kernel taps, M outputs). Trained
 * through the effective weight W + s·B·A instead, it costs no extra convolution but a full
 * weight gradient, M·C·k per position, and A/B get their gradients from it by two small
 * products — the same function of x, A and B. The training graph takes that form where it is
 * the cheaper one (high ranks on narrow layers; at PEFT's usual ranks the branch wins — measured
 * on ResNet-18 r=8: 786 vs 599 ms a step). ULC_LORA_FUSION=0|1 forces either form. The model
 * keeps lora-inject's structure. Branches that do not have the recorded shape stay as they are. */
static ulc_status fuse_conv_lora(ulc_graph *g, const ulc_model *src, int64_t opset, int *fused,
                                 ulc_ctx *ctx) {
    const char *env = getenv("ULC_LORA_FUSION");
    int force = env && *env ? (env[0] == '1' ? 1 : 0) : -1;
    *fused = 0;
    for (size_t i = 0; i < src->lora.len; i++) {
        const ulc_lora_record *rec = src->lora.items[i];
        if (rec->merged || rec->kind != ULC_LORA_CONV) continue;
        ulc_value *out = ulc_graph_get_value(g, rec->out);
        ulc_value *base_out = ulc_graph_get_value(g, rec->base_out);
        ulc_value *A = ulc_graph_get_value(g, rec->a), *B = ulc_graph_get_value(g, rec->b);
        ulc_node *add = out ? out->producer : NULL, *base = base_out ? base_out->producer : NULL;
        if (!add || !base || add->op != ULC_OP_Add || base->op != ULC_OP_Conv || !A || !B ||
            !A->init || !B->init || base->n_inputs < 2 || add->inputs[0].value != base_out)
            continue;
        ulc_value *s_out = add->inputs[1].value;
        ulc_node *mul = s_out ? s_out->producer : NULL;
        if (!mul || mul->op != ULC_OP_Mul) continue;
        ulc_value *b_out = mul->inputs[0].value, *scale = mul->inputs[1].value;
        ulc_node *nb = b_out ? b_out->producer : NULL;
        if (!nb || nb->op != ULC_OP_Conv || nb->inputs[1].value != B || !scale || !scale->init)
            continue;
        ulc_value *a_out = nb->inputs[0].value;
        ulc_node *na = a_out ? a_out->producer : NULL;
        if (!na || na->op != ULC_OP_Conv || na->inputs[1].value != A ||
            na->inputs[0].value != base->inputs[0].value)
            continue;
        if (ulc_value_num_uses(base_out) != 1 || ulc_value_num_uses(a_out) != 1 ||
            ulc_value_num_uses(b_out) != 1 || ulc_value_num_uses(s_out) != 1)
            continue;
        ulc_value *W = base->inputs[1].value;
        const ulc_tensor *wt = W ? W->init : NULL;
        if (!wt || wt->rank < 3 || wt->dtype != ULC_DT_F32) continue;
        int64_t o = wt->dims[0], r = A->init->dims[0], ck = 1;
        for (int d = 1; d < wt->rank; d++) ck *= wt->dims[d];
        if (force == 0 || (force < 0 && o * ck >= 3 * r * (ck + o))) continue;
        ulc_gb gb, *b = &gb;
        ulc_gb_init(b, g, opset, ULC_GB_NAMES_DERIVED, ctx);
        gb.origin = base;
        int64_t bshape[2] = {o, r}, ashape[2] = {r, -1};
        ulc_value *bm = ulc_gb_op2(b, "Reshape", B, ulc_gb_vec_i64(b, 2, bshape));
        ulc_value *am = ulc_gb_op2(b, "Reshape", A, ulc_gb_vec_i64(b, 2, ashape));
        ulc_value *delta = ulc_gb_op2(b, "Mul", ulc_gb_op2(b, "MatMul", bm, am), scale);
        ulc_value *dw = ulc_gb_op2(b, "Reshape", delta, ulc_gb_vec_i64(b, wt->rank, wt->dims));
        ulc_value *weff = ulc_gb_op2(b, "Add", W, dw);
        if (!weff) return ctx->status ? ctx->status : nomem(ctx);
        ulc_graph_remove_node(g, add);
        ulc_graph_remove_node(g, mul);
        ulc_graph_remove_node(g, nb);
        ulc_graph_remove_node(g, na);
        ulc_node_set_input(base, 1, weff);
        ULC_TRY(ulc_node_set_output(base, 0, out, ctx));
        (*fused)++;
    }
    return *fused ? ulc_graph_toposort(g, ctx) : ULC_OK;
}

struct tg_priv {
    binds *bs;
    ulc_train_graph *tg;
};

ulc_value *ulc_tg_input(ulc_tg *b, const char *name, int dtype, int rank, const int64_t *dims,
                        const char *column, ulc_ctx *ctx) {
    int64_t d[ULC_RT_MAX_RANK] = {0};
    if (rank < 0 || rank > ULC_RT_MAX_RANK) {
        ulc_fail(ctx, ULC_ERR_INVALID_ARG, "training input '%s': rank %d", name, rank);
        return NULL;
    }
    for (int i = 0; i < rank; i++) d[i] = i ? dims[i] : b->batch;
    ulc_value *v = add_input(b->g, name, dtype, rank, d, ctx);
    if (!v) return NULL;
    if (bind(b->priv->bs, v->name, dtype, rank, d, ctx) != ULC_OK) return NULL;
    if (column) {
        ulc_train_graph *tg = b->priv->tg;
        tg->data_inputs[tg->n_data] = v->name;
        tg->data_cols[tg->n_data++] = arena_str(b->g, column);
    }
    return v;
}

ulc_value *ulc_tg_scalar_input(ulc_tg *b, const char *name, ulc_ctx *ctx) {
    return ulc_tg_input(b, name, ULC_DT_F32, 0, NULL, NULL, ctx);
}

static ulc_status next_token_target(ulc_graph *g, ulc_value *main_in, ulc_gb *b, ulc_value *out,
                                    int out_rank, int whole, ulc_value **z, ulc_value **target,
                                    ulc_ctx *ctx);

ulc_status ulc_tg_next_token(ulc_tg *b, ulc_value **z, ulc_value **target, ulc_ctx *ctx) {
    ulc_rt_tensor ot;
    const char *mi = b->priv->tg->main_input;
    if (!ulc_analysis_get(b->shapes, b->output, &ot))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "next-token loss: output '%s' has no known shape",
                        b->output->name);
    ulc_gb gb;
    ulc_gb_init(&gb, b->g, b->opset, ULC_GB_NAMES_DERIVED, ctx);
    return next_token_target(b->g, mi ? ulc_graph_get_value(b->g, mi) : NULL, &gb, b->output,
                             ot.rank, 0, z, target, ctx);
}

/* Copies a float32 constant initializer of n elements into dst (its bytes may sit unaligned in
 * a file mapping); 0 if v is not one. */
static int f32_const(const ulc_value *v, int64_t n, float *dst) {
    while (v && v->producer && v->producer->op == ULC_OP_Identity) /* exporters' aliases */
        v = v->producer->inputs[0].value;
    if (!v || !(v->flags & ULC_VALUE_INITIALIZER) || (v->flags & ULC_VALUE_PARAM) || !v->init ||
        v->init->dtype != ULC_DT_F32 || v->init->nbytes != (size_t)n * sizeof(float) ||
        !v->init->data)
        return 0;
    memcpy(dst, v->init->data, (size_t)n * sizeof(float));
    return 1;
}

/* A float32 constant named HINT.N, the first N free. */
static ulc_value *new_const(ulc_gb *b, const char *hint, int rank, const int64_t *dims,
                            const float *data) {
    char name[256];
    int i = 0;
    do snprintf(name, sizeof name, "%s.%d", hint, i++);
    while (ulc_graph_get_value(b->g, name));
    return ulc_gb_const_as(b, name, ULC_DT_F32, rank, dims, data);
}

static ulc_status fold_lora_affine(ulc_graph *g, const ulc_model *src, const ulc_train_task *t,
                                   int *folded, ulc_ctx *ctx) {
    *folded = 0;
    for (size_t i = 0; i < src->lora.len; i++) {
        const ulc_lora_record *rec = src->lora.items[i];
        if (rec->merged || rec->kind != ULC_LORA_CONV) continue;
        ulc_value *out = ulc_graph_get_value(g, rec->out);
        ulc_value *base_out = ulc_graph_get_value(g, rec->base_out);
        ulc_value *B = ulc_graph_get_value(g, rec->b);
        ulc_node *add = out ? out->producer : NULL, *base = base_out ? base_out->producer : NULL;
        if (!add || !base || add->op != ULC_OP_Add || base->op != ULC_OP_Conv || !B || !B->init ||
            add->inputs[0].value != base_out || ulc_value_num_uses(base_out) != 1)
            continue;
        ulc_value *s_out = add->inputs[1].value;
        ulc_node *mul = s_out ? s_out->producer : NULL;
        if (!mul || mul->op != ULC_OP_Mul || ulc_value_num_uses(s_out) != 1) continue;
        ulc_value *b_out = mul->inputs[0].value;
        ulc_node *nb = b_out ? b_out->producer : NULL;
        float scale[1];
        if (!nb || nb->op != ULC_OP_Conv || nb->inputs[1].value != B ||
            !f32_const(mul->inputs[1].value, 1, scale) ||
            ulc_value_num_uses(b_out) != 1)
            continue;
        int64_t M = B->init->dims[0];
        float *k = malloc((size_t)M * sizeof *k), *shift = calloc((size_t)M, sizeof *shift);
        float *bnp = malloc(5 * (size_t)M * sizeof *bnp);
        if (!k || !shift || !bnp) {
            free(k), free(shift), free(bnp);
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        }
        for (int64_t o = 0; o < M; o++) k[o] = 1.0f;
        /* an inference BN reading only the branch's output: y = k·out + shift */
        ulc_node *bn = out->first_use && !out->first_use->next ? out->first_use->node : NULL;
        for (int j = 0; bn && j < t->n_keep; j++) /* the loss reads the pre-BN output */
            if (t->keep[j] && strcmp(t->keep[j], rec->out) == 0) bn = NULL;
        int with_bn = 0;
        int has_bw = 0;
        if (bn && bn->op == ULC_OP_BatchNormalization && bn->n_outputs == 1 && bn->n_inputs == 5 &&
            !(out->flags & ULC_VALUE_OUTPUT) && bn->inputs[0].value == out) {
            const ulc_attr *tm = ulc_node_attr(bn, "training_mode");
            const ulc_attr *ea = ulc_node_attr(bn, "epsilon");
            float *sc = bnp, *bi = bnp + M, *mu = bnp + 2 * M, *va = bnp + 3 * M, *bw = bnp + 4 * M;
            int got = f32_const(bn->inputs[1].value, M, sc) && f32_const(bn->inputs[2].value, M, bi) &&
                      f32_const(bn->inputs[3].value, M, mu) && f32_const(bn->inputs[4].value, M, va);
            int has_b = base->n_inputs > 2 && base->inputs[2].value;
            has_bw = has_b && f32_const(base->inputs[2].value, M, bw);
            if ((!tm || tm->i == 0) && got && (!has_b || has_bw)) {
                float eps = ea ? ea->f : 1e-5f;
                for (int64_t o = 0; o < M; o++) {
                    k[o] = sc[o] / sqrtf(va[o] + eps);
                    shift[o] = bi[o] - mu[o] * k[o] + (has_bw ? bw[o] * k[o] : 0.0f);
                }
                with_bn = 1;
            }
        }
        /* B' = B · (scale · k) per output channel, computed every step (B trains) */
        ulc_value *W = base->inputs[1].value;
        const ulc_tensor *wt = W && W->init ? W->init : NULL;
        if (!wt || wt->rank < 3 || wt->dims[0] != M) {
            free(k), free(shift), free(bnp);
            continue;
        }
        int64_t cdims[ULC_RT_MAX_RANK];
        cdims[0] = M;
        for (int d = 1; d < wt->rank; d++) cdims[d] = 1;
        for (int64_t o = 0; o < M; o++) shift[o] = with_bn ? shift[o] : 0.0f;
        float *ks = malloc((size_t)M * sizeof *ks);
        if (!ks) {
            free(k), free(shift), free(bnp);
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        }
        for (int64_t o = 0; o < M; o++) ks[o] = k[o] * scale[0];
        ulc_gb gb;
        ulc_gb_init(&gb, g, 0, ULC_GB_NAMES_DERIVED, ctx);
        gb.origin = nb;
        ulc_value *kb = new_const(&gb, "ulc.lora.bscale", wt->rank, cdims, ks);
        free(ks);
        ulc_value *bprime = kb ? ulc_gb_op2(&gb, "Mul", B, kb) : NULL;
        if (!bprime) {
            free(k), free(shift), free(bnp);
            return ctx->status ? ctx->status : ULC_ERR_NOMEM;
        }
        ulc_node_set_input(nb, 1, bprime);
        /* the Add now reads B's output directly; the Mul goes */
        ulc_node_set_input(add, 1, b_out);
        ulc_graph_remove_node(g, mul);
        if (with_bn) { /* the base conv: W·k and bias shift (constants the planner folds) */
            ulc_value *kw = new_const(&gb, "ulc.lora.bnscale", wt->rank, cdims, k);
            ulc_value *bias = new_const(&gb, "ulc.lora.bnshift", 1, &M, shift);
            ulc_value *wk = kw ? ulc_gb_op2(&gb, "Mul", W, kw) : NULL;
            if (wk && bias) { /* the base conv again, on W·k and the shift; the Add on after it */
                ulc_value *cin[3] = {base->inputs[0].value, wk, bias}, *y = bn->outputs[0];
                ulc_value *ain[2] = {base_out, b_out};
                ulc_graph_remove_node(g, base);
                ulc_graph_remove_node(g, bn);
                if (ulc_gb_node(&gb, base->domain, base->op_type, base->name, 3, cin, 1, &base_out))
                    ulc_gb_attr_copy(&gb, base_out, base, NULL);
                ulc_graph_remove_node(g, add);
                ulc_gb_node(&gb, "", "Add", add->name, 2, ain, 1, &y);
            }
            if (gb.status != ULC_OK || !wk || !bias) {
                free(k), free(shift), free(bnp);
                return ctx->status ? ctx->status : ULC_ERR_NOMEM;
            }
        }
        free(k), free(shift), free(bnp);
        (*folded)++;
    }
    return *folded ? ulc_graph_toposort(g, ctx) : ULC_OK;
}

/* A linear branch's scaling moves to its rank side: Add(base, Mul(MatMul(MatMul(x, A), B), s))
 * trains as Add(base, MatMul(Mul(MatMul(x, A), s), B)), the same function of x, A and B. The
 * Mul then runs over [.., r] instead of [.., out], forward and backward (on a vocabulary head,
 * two passes over [B·T, 50,257] a step), and the runtime fuses the Add into the MatMul before
 * it (runtime/fuse.c): the branch's output is written once. The bits agree with the model's
 * form whenever s is a power of two (alpha / r at PEFT's usual settings); otherwise within a
 * rounding of each output. ULC_LORA_SCALE_OUT=1 keeps the model's form. */
static ulc_status lora_scale_rank_side(ulc_graph *g, const ulc_model *src, int64_t opset,
                                       int *moved, ulc_ctx *ctx) {
    const char *env = getenv("ULC_LORA_SCALE_OUT");
    *moved = 0;
    if (env && env[0] == '1') return ULC_OK;
    for (size_t i = 0; i < src->lora.len; i++) {
        const ulc_lora_record *rec = src->lora.items[i];
        if (rec->merged || rec->kind == ULC_LORA_CONV) continue;
        ulc_value *out = ulc_graph_get_value(g, rec->out);
        ulc_value *base_out = ulc_graph_get_value(g, rec->base_out);
        ulc_value *B = ulc_graph_get_value(g, rec->b);
        ulc_node *add = out ? out->producer : NULL;
        if (!add || add->op != ULC_OP_Add || add->n_inputs != 2 || !base_out ||
            add->inputs[0].value != base_out || !B || !B->init || B->init->rank != 2)
            continue;
        ulc_value *s_out = add->inputs[1].value;
        ulc_node *mul = s_out ? s_out->producer : NULL;
        float scale[1];
        if (!mul || mul->op != ULC_OP_Mul || mul->n_inputs != 2 || ulc_value_num_uses(s_out) != 1 ||
            !f32_const(mul->inputs[1].value, 1, scale))
            continue;
        ulc_value *b_out = mul->inputs[0].value;
        ulc_node *nb = b_out ? b_out->producer : NULL;
        if (!nb || nb->op != ULC_OP_MatMul || nb->inputs[1].value != B || ulc_value_num_uses(b_out) != 1 ||
            B->init->dims[1] <= B->init->dims[0]) /* out <= r: the model's form is no dearer */
            continue;
        ulc_gb gb, *b = &gb;
        ulc_gb_init(b, g, opset, ULC_GB_NAMES_DERIVED, ctx);
        gb.origin = mul;
        ulc_value *scaled = ulc_gb_op2(b, "Mul", nb->inputs[0].value, mul->inputs[1].value);
        ulc_value *prod = ulc_gb_op2(b, "MatMul", scaled, B);
        if (!prod) return ctx->status ? ctx->status : nomem(ctx);
        ulc_graph_remove_node(g, mul);
        ulc_graph_remove_node(g, nb);
        ulc_node_set_input(add, 1, prod);
        (*moved)++;
    }
    return *moved ? ulc_graph_toposort(g, ctx) : ULC_OK;
}

/* ---- GELU's tanh form as one op -------------------------------------------------------------- */

/* The producer of v when it is a single-use op of type op (v not a graph output), else NULL. */
static ulc_node *sole(const ulc_value *v, ulc_op op) {
    ulc_node *n = v ? v->producer : NULL;
    if (!n || n->op != op || (v->flags & ULC_VALUE_OUTPUT) || ulc_value_num_uses(v) != 1) return NULL;
    return n;
}

/* The one node reading v when it is of type op (v not a graph output, read once), else NULL. */
static ulc_node *sole_reader(const ulc_value *v, ulc_op op) {
    if (!v || (v->flags & ULC_VALUE_OUTPUT) || ulc_value_num_uses(v) != 1) return NULL;
    ulc_node *n = v->first_use->node;
    return n->op == op ? n : NULL;
}

/* Binary node n reads v and a float32 scalar constant within 1e-6 of c (either order). */
static int with_scalar(const ulc_node *n, const ulc_value *v, double c) {
    float f;
    if (!n || n->n_inputs != 2) return 0;
    for (int i = 0; i < 2; i++)
        if (n->inputs[i].value == v && f32_const(n->inputs[1 - i].value, 1, &f) &&
            fabs((double)f - c) <= 1e-6 * fabs(c))
            return 1;
    return 0;
}

/* The operand of binary node n other than v, or NULL. */
static ulc_value *other_in(const ulc_node *n, const ulc_value *v) {
    if (!n || n->n_inputs != 2) return NULL;
    return n->inputs[0].value == v ? n->inputs[1].value
           : n->inputs[1].value == v ? n->inputs[0].value : NULL;
}

/* GELU's tanh form spelled in elementwise ops (import/hf/builder.c's hf_gelu_tanh, GPT-2's
 * gelu_new: Mul(Mul(x, 0.5), Add(Tanh(Mul(Add(x, Mul(Pow(x, 3), 0.044715)), √(2/π))), 1)),
 * operands in either order) trains as one ulc FastGelu (ir/ops_ulc.def): its forward fuses into
 * the product before it and its backward is one GeluGrad pass, where the spelled-out form keeps
 * five intermediates for autodiff and its gradient takes some ten passes (DistilGPT2-sized: 60 ms
 * of 75 per MLP and step). The values agree to the kernels' rounding (a few ulp).
 * ULC_NO_FAST_GELU=1 keeps the spelled-out form. */
static ulc_status fast_gelu(ulc_graph *g, int64_t opset, int *fused, ulc_ctx *ctx) {
    const char *env = getenv("ULC_NO_FAST_GELU");
    *fused = 0;
    if (env && env[0] == '1') return ULC_OK;
    /* the Tanh nodes first: a rewrite removes its own Tanh and no other */
    size_t nt = 0, cap = 0;
    for (const ulc_node *n = g->first; n; n = n->next) cap += n->op == ULC_OP_Tanh;
    if (!cap) return ULC_OK;
    ulc_node **tanhs = malloc(cap * sizeof *tanhs);
    if (!tanhs) return nomem(ctx);
    for (ulc_node *n = g->first; n; n = n->next)
        if (n->op == ULC_OP_Tanh) tanhs[nt++] = n;
    ulc_status st = ULC_OK;
    for (size_t ti = 0; ti < nt && st == ULC_OK; ti++) {
        ulc_node *th = tanhs[ti];
        if (th->n_inputs != 1 || th->n_outputs != 1) continue;
        ulc_node *scale = sole(th->inputs[0].value, ULC_OP_Mul), *inner = NULL, *cube = NULL,
                 *pw = NULL;
        ulc_value *x = NULL;
        for (int i = 0; scale && i < 2 && !x; i++) {
            ulc_value *iv = scale->inputs[i].value;
            if (!with_scalar(scale, iv, 0.7978845608028654) || !(inner = sole(iv, ULC_OP_Add))) continue;
            for (int j = 0; j < 2 && !x; j++) {
                ulc_value *cand = inner->inputs[j].value, *m1 = inner->inputs[1 - j].value;
                cube = sole(m1, ULC_OP_Mul);
                for (int k = 0; cube && k < 2 && !x; k++) {
                    ulc_value *x3 = cube->inputs[k].value;
                    pw = with_scalar(cube, x3, 0.044715) ? sole(x3, ULC_OP_Pow) : NULL;
                    if (pw && pw->n_inputs == 2 && pw->inputs[0].value == cand &&
                        with_scalar(pw, cand, 3.0))
                        x = cand;
                }
            }
        }
        ulc_value *thv = th->outputs[0];
        ulc_node *plus = x ? sole_reader(thv, ULC_OP_Add) : NULL;
        if (!plus || !with_scalar(plus, thv, 1.0) || plus->n_outputs != 1) continue;
        ulc_value *tv = plus->outputs[0];
        ulc_node *prod = sole_reader(tv, ULC_OP_Mul);
        ulc_node *half = prod ? sole(other_in(prod, tv), ULC_OP_Mul) : NULL;
        if (!half || !with_scalar(half, x, 0.5) || prod->n_outputs != 1) continue;
        ulc_value *y = prod->outputs[0];
        ulc_gb gb;
        ulc_gb_init(&gb, g, opset, ULC_GB_NAMES_DERIVED, ctx);
        gb.origin = prod;
        ulc_value *fy = ulc_gb_opn(&gb, ULC_DOMAIN, "FastGelu", 1, &x, 1, NULL);
        if (!fy) {
            st = ctx->status ? ctx->status : nomem(ctx);
            break;
        }
        ulc_node *fg = fy->producer;
        ulc_node *dead[] = {prod, half, plus, th, scale, inner, cube, pw};
        for (size_t d = 0; d < sizeof dead / sizeof *dead; d++) ulc_graph_remove_node(g, dead[d]);
        st = ulc_node_set_output(fg, 0, y, ctx);
        (*fused)++;
    }
    free(tanhs);
    if (st != ULC_OK) return st;
    return *fused ? ulc_graph_toposort(g, ctx) : ULC_OK;
}

/* GELU's erf form spelled in elementwise ops — Mul(Mul(x, 0.5), Add(Erf(Div(x, √2)), 1)) as
 * import/hf/builder.c writes it (ViT, BERT, CLIP's gelu), or Mul(Mul(x, Add(Erf(..), 1)), 0.5) as
 * torch exports nn.GELU; Mul by 1/√2 for the Div; operands in either order — trains as one ulc
 * FastGelu with approximate "none" (fast_gelu's reasons: it fuses into the product before it and
 * its backward is one GeluGrad where the spelled form keeps four [.., 4C] intermediates and takes
 * some eight passes). ULC_NO_FAST_GELU=1 keeps this form too. The Erf nodes are collected
 * first: a rewrite removes its own Erf and no other. */
static ulc_status erf_gelu(ulc_graph *g, int64_t opset, int *fused, ulc_ctx *ctx) {
    const char *env = getenv("ULC_NO_FAST_GELU");
    *fused = 0;
    if (env && env[0] == '1') return ULC_OK;
    size_t ne = 0, cap = 0;
    for (const ulc_node *n = g->first; n; n = n->next) cap += n->op == ULC_OP_Erf;
    if (!cap) return ULC_OK;
    ulc_node **erfs = malloc(cap * sizeof *erfs);
    if (!erfs) return nomem(ctx);
    for (ulc_node *n = g->first; n; n = n->next)
        if (n->op == ULC_OP_Erf) erfs[ne++] = n;
    ulc_status st = ULC_OK;
    for (size_t ei = 0; ei < ne && st == ULC_OK; ei++) {
        ulc_node *er = erfs[ei];
        if (er->n_inputs != 1 || er->n_outputs != 1) continue;
        ulc_node *sc = er->inputs[0].value ? er->inputs[0].value->producer : NULL;
        if (!sc || ulc_value_num_uses(er->inputs[0].value) != 1 || (er->inputs[0].value->flags & ULC_VALUE_OUTPUT))
            continue;
        ulc_value *x = NULL;
        if (sc->op == ULC_OP_Div && sc->n_inputs == 2 && with_scalar(sc, sc->inputs[0].value, 1.4142135623730951) &&
            sc->inputs[1].value != sc->inputs[0].value)
            x = sc->inputs[0].value;
        for (int i = 0; !x && sc->op == ULC_OP_Mul && i < 2; i++)
            if (with_scalar(sc, sc->inputs[i].value, 0.7071067811865476) && sc->inputs[1 - i].value != sc->inputs[i].value)
                x = sc->inputs[i].value;
        if (!x) continue;
        ulc_value *ev = er->outputs[0];
        ulc_node *plus = sole_reader(ev, ULC_OP_Add);
        if (!plus || !with_scalar(plus, ev, 1.0) || plus->n_outputs != 1) continue;
        ulc_value *tv = plus->outputs[0];
        ulc_node *prod = sole_reader(tv, ULC_OP_Mul), *half = NULL, *last = NULL;
        ulc_value *o = prod ? other_in(prod, tv) : NULL;
        if (!prod || prod->n_outputs != 1 || !o) continue;
        if (o == x) { /* torch: Mul(Mul(x, 1 + erf), 0.5) */
            last = sole_reader(prod->outputs[0], ULC_OP_Mul);
            if (!last || !with_scalar(last, prod->outputs[0], 0.5) || last->n_outputs != 1) continue;
        } else { /* ulc's builder: Mul(Mul(x, 0.5), 1 + erf) */
            half = sole(o, ULC_OP_Mul);
            if (!half || !with_scalar(half, x, 0.5) || other_in(half, x) == x) continue;
            last = prod;
        }
        ulc_value *y = last->outputs[0];
        ulc_gb gb;
        ulc_gb_init(&gb, g, opset, ULC_GB_NAMES_DERIVED, ctx);
        gb.origin = last;
        ulc_value *fy = ulc_gb_opn(&gb, ULC_DOMAIN, "FastGelu", 1, &x, 1, NULL);
        if (fy) ulc_gb_attr_string(&gb, fy, "approximate", "none");
        if (!fy || gb.status != ULC_OK) {
            st = ctx->status ? ctx->status : nomem(ctx);
            break;
        }
        ulc_node *fg = fy->producer;
        ulc_node *dead[] = {last, half, last == prod ? NULL : prod, plus, er, sc}; /* each once */
        for (size_t d = 0; d < sizeof dead / sizeof *dead; d++)
            if (dead[d]) ulc_graph_remove_node(g, dead[d]);
        st = ulc_node_set_output(fg, 0, y, ctx);
        (*fused)++;
    }
    free(erfs);
    if (st != ULC_OK) return st;
    return *fused ? ulc_graph_toposort(g, ctx) : ULC_OK;
}

/* What the steps of building a training graph share. */
typedef struct tg_build {
    const ulc_model *m;
    const ulc_graph *sg;  /* the model's graph */
    ulc_graph *g;         /* the training graph (a clone) */
    int64_t opset;
    const ulc_dataset *d;
    const ulc_train_task *t;
    int batch;
    ulc_train_graph *tg;
    binds bs;             /* every input's shape for the analysis */
    ulc_value **params;   /* the parameters, now graph inputs */
    int np;
    ulc_value *main_in;   /* the model's main input */
} tg_build;

/* Parameters: initializers flagged ULC_VALUE_PARAM become graph inputs. */
static ulc_status params_to_inputs(tg_build *w, ulc_ctx *ctx) {
    ulc_graph *g = w->g;
    ulc_train_graph *tg = w->tg;
    for (size_t i = 0; i < w->sg->inits.len; i++)
        w->np += (((const ulc_value *)w->sg->inits.items[i])->flags & ULC_VALUE_PARAM) != 0;
    if (!w->np)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                        "nothing to train: no parameter is marked trainable (inject LoRA "
                        "adapters, or name the weights to train)");
    w->params = ulc_arena_calloc(g->arena, (size_t)w->np, sizeof *w->params);
    tg->param_inputs = ulc_arena_calloc(g->arena, (size_t)w->np, sizeof *tg->param_inputs);
    tg->grad_outputs = ulc_arena_calloc(g->arena, (size_t)w->np, sizeof *tg->grad_outputs);
    if (!w->params || !tg->param_inputs || !tg->grad_outputs) return nomem(ctx);
    for (size_t i = 0; i < w->sg->inits.len; i++) {
        const ulc_value *sv = w->sg->inits.items[i];
        if (!(sv->flags & ULC_VALUE_PARAM)) continue;
        if (!sv->init || !trainable_dtype(sv->init->dtype))
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                            "parameter '%s': only float32, float16 and bfloat16 weights can be "
                            "trained (it is %s)", sv->name,
                            sv->init ? ulc_dtype_name(sv->init->dtype) : "no tensor");
        ulc_value *v = ulc_graph_get_value(g, sv->name);
        v->dtype = ULC_DT_F32; /* a half weight trains as its float32 master copy */
        ulc_ptrvec_remove(&g->inits, v);
        v->flags &= ~(uint32_t)ULC_VALUE_INITIALIZER;
        v->flags |= ULC_VALUE_INPUT;
        v->init = NULL;
        if (ulc_ptrvec_push(&g->inputs, v) != 0) return nomem(ctx);
        ULC_TRY(bind(&w->bs, v->name, ULC_DT_F32, sv->init->rank, sv->init->dims, ctx));
        tg->param_inputs[tg->n_params] = v->name;
        w->params[tg->n_params++] = v;
    }
    return ULC_OK;
}

/* The column model input sv reads, checked against its declaration. */
static ulc_status data_column(tg_build *w, const ulc_value *sv, const char **col_out,
                              ulc_ctx *ctx) {
    const ulc_dataset *d = w->d;
    const ulc_train_task *t = w->t;
    const char *col = NULL;
    if (ulc_dataset_find(d, sv->name) >= 0) col = sv->name;
    else if ((t->input && strcmp(t->input, sv->name) == 0) || (!t->input && !w->main_in)) {
        if (ulc_dataset_find(d, "input") >= 0) col = "input";
        else if (ulc_dataset_find(d, "input_ids") >= 0) col = "input_ids";
    }
    if (!col)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                        "%s: no column feeds model input '%s' (expected a column of that "
                        "name, or 'input'/'input_ids' for the model's main input)",
                        d->path ? d->path : "data", sv->name);
    const ulc_tensor *c = d->cols[ulc_dataset_find(d, col)];
    const ulc_value *v = ulc_graph_get_value(w->g, sv->name);
    if ((v->flags & ULC_VALUE_HAS_TYPE) && v->dtype != c->dtype)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                        "%s: column '%s' is %s but model input '%s' is %s",
                        d->path ? d->path : "data", col, ulc_dtype_name(c->dtype), sv->name,
                        ulc_dtype_name(v->dtype));
    if (v->rank >= 0 && v->rank != c->rank)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                        "%s: column '%s' has rank %d but model input '%s' has rank %d",
                        d->path ? d->path : "data", col, c->rank, sv->name, v->rank);
    for (int k = 1; v->rank > 0 && k < c->rank; k++)
        if (v->dims[k].value >= 0 && v->dims[k].value != c->dims[k])
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                            "%s: column '%s' has dim %d = %lld but model input '%s' "
                            "wants %lld", d->path ? d->path : "data", col, k,
                            (long long)c->dims[k], sv->name, (long long)v->dims[k].value);
    *col_out = col;
    return ULC_OK;
}

/* Data inputs: a same-named column, or the main input from "input"/"input_ids". */
static ulc_status bind_data(tg_build *w, ulc_ctx *ctx) {
    ulc_graph *g = w->g;
    ulc_train_graph *tg = w->tg;
    int n_data_in = 0;
    for (size_t i = 0; i < w->sg->inputs.len; i++) {
        const ulc_value *sv = w->sg->inputs.items[i];
        n_data_in += !(sv->flags & (ULC_VALUE_INITIALIZER | ULC_VALUE_PARAM));
    }
    tg->data_inputs = ulc_arena_calloc(g->arena, (size_t)n_data_in + MAX_BIND, sizeof *tg->data_inputs);
    tg->data_cols = ulc_arena_calloc(g->arena, (size_t)n_data_in + MAX_BIND, sizeof *tg->data_cols);
    if (!tg->data_inputs || !tg->data_cols) return nomem(ctx);
    for (size_t i = 0; i < w->sg->inputs.len; i++) {
        const ulc_value *sv = w->sg->inputs.items[i];
        if (sv->flags & (ULC_VALUE_INITIALIZER | ULC_VALUE_PARAM)) continue;
        const char *col = NULL;
        ULC_TRY(data_column(w, sv, &col, ctx));
        const ulc_tensor *c = w->d->cols[ulc_dataset_find(w->d, col)];
        ulc_value *v = ulc_graph_get_value(g, sv->name);
        int64_t dims[ULC_RT_MAX_RANK];
        ULC_TRY(bind(&w->bs, v->name, c->dtype, col_dims(c, w->batch, dims), dims, ctx));
        tg->data_inputs[tg->n_data] = v->name;
        tg->data_cols[tg->n_data++] = arena_str(g, col);
        if (!w->main_in && (w->t->input ? strcmp(w->t->input, sv->name) == 0
                                        : strcmp(col, "input") == 0 || strcmp(col, "input_ids") == 0))
            w->main_in = v;
    }
    if (!w->main_in && tg->n_data == 1) w->main_in = ulc_graph_get_value(g, tg->data_inputs[0]);
    tg->main_input = w->main_in ? w->main_in->name : NULL;
    return ULC_OK;
}

/* The next-token target: input_ids shifted left by one, -100 (ignored) where attention_mask is 0.
 * whole: the target keeps T positions, the last one ignored (it predicts nothing), and *z = out,
 * so the fused cross-entropy (loss.c) reads the logits whole and never copies a [B, T, vocabulary]
 * slice of them; else *z = out without its last position and the target has T - 1 positions. */
static ulc_status next_token_target(ulc_graph *g, ulc_value *main_in, ulc_gb *b, ulc_value *out,
                                    int out_rank, int whole, ulc_value **z, ulc_value **target,
                                    ulc_ctx *ctx) {
    if (!main_in || main_in->dtype != ULC_DT_I64 || out_rank != 3)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                        "next-token loss: needs int64 input_ids [B, T] and logits [B, T, V]");
    int64_t s0 = 0, e1 = -1, s1 = 1, emax = INT64_MAX, ax = 1, ign = -100, pads[4] = {0, 0, 0, 1};
    ulc_value *tl[4] = {main_in, ulc_gb_vec_i64(b, 1, &s1), ulc_gb_vec_i64(b, 1, &emax),
                        ulc_gb_vec_i64(b, 1, &ax)};
    ulc_value *t = tl[1] && tl[2] && tl[3] ? ulc_gb_opn(b, NULL, "Slice", 4, tl, 1, NULL) : NULL;
    ulc_value *mask = ulc_graph_get_value(g, "attention_mask");
    if (t && mask && (mask->flags & ULC_VALUE_INPUT)) {
        tl[0] = mask;
        ulc_value *mn = ulc_gb_opn(b, NULL, "Slice", 4, tl, 1, NULL);
        ulc_value *zero = mask->dtype == ULC_DT_F32 ? ulc_gb_scalar_f32(b, 0.0f)
                                                    : ulc_gb_vec_i64(b, 1, &s0);
        ulc_value *wh[3] = {mn && zero ? ulc_gb_op2(b, "Greater", mn, zero) : NULL, t,
                            ulc_gb_vec_i64(b, 1, &ign)};
        t = wh[0] && wh[2] ? ulc_gb_opn(b, NULL, "Where", 3, wh, 1, NULL) : NULL;
    }
    if (whole) {
        ulc_value *pi[3] = {t, ulc_gb_vec_i64(b, 4, pads), ulc_gb_const_i64(b, 0, NULL, &ign)};
        t = pi[0] && pi[1] && pi[2] ? ulc_gb_opn(b, NULL, "Pad", 3, pi, 1, NULL) : NULL;
        *z = out;
    } else {
        ulc_value *sl[4] = {out, ulc_gb_vec_i64(b, 1, &s0), ulc_gb_vec_i64(b, 1, &e1), tl[3]};
        *z = sl[1] && sl[2] ? ulc_gb_opn(b, NULL, "Slice", 4, sl, 1, NULL) : NULL;
    }
    if (!t || !*z) return ctx->status ? ctx->status : nomem(ctx);
    *target = t;
    return ULC_OK;
}

/* The built-in losses: their targets (a data column, or bound per step) and the loss node. */
static ulc_status builtin_loss(tg_build *w, ulc_value *out, const ulc_rt_tensor *ot,
                               ulc_value **loss, ulc_ctx *ctx) {
    const ulc_train_task *t = w->t;
    const ulc_dataset *d = w->d;
    ulc_graph *g = w->g;
    ulc_gb gb;
    ulc_gb_init(&gb, g, w->opset, ULC_GB_NAMES_DERIVED, ctx);
    ulc_value *z = out, *target = NULL;
    int64_t dims[ULC_RT_MAX_RANK];
    if (t->next_token) {
        /* the whole-logits target pads with an input-form Pad (opset 11) */
        ULC_TRY(next_token_target(g, w->main_in, &gb, out, ot->rank, w->opset >= 11, &z, &target,
                                  ctx));
    } else if (t->loss == ULC_LOSS_CROSS_ENTROPY || t->loss == ULC_LOSS_MSE) {
        const char *col = t->loss == ULC_LOSS_CROSS_ENTROPY ? "label" : "target";
        int ci = ulc_dataset_find(d, col);
        if (ci < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: no '%s' column (%s) for the %s loss",
                            d->path ? d->path : "data", col,
                            t->loss == ULC_LOSS_CROSS_ENTROPY ? "int64 [N]" : "float32 like the output",
                            t->loss == ULC_LOSS_CROSS_ENTROPY ? "cross-entropy" : "mse");
        const ulc_tensor *c = d->cols[ci];
        int want_dt = t->loss == ULC_LOSS_CROSS_ENTROPY ? ULC_DT_I64 : ULC_DT_F32;
        int want_rank = t->loss == ULC_LOSS_CROSS_ENTROPY ? ot->rank - 1 : ot->rank;
        if (c->dtype != want_dt || c->rank != want_rank)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                            "%s: column '%s' is %s of rank %d; the %s loss on output '%s' needs "
                            "%s of rank %d", d->path ? d->path : "data", col,
                            ulc_dtype_name(c->dtype), c->rank, col, out->name,
                            ulc_dtype_name(want_dt), want_rank);
        int r = col_dims(c, w->batch, dims);
        if (!(target = add_input(g, ULC_TRAIN_TARGET, c->dtype, r, dims, ctx))) return ctx->status;
        ULC_TRY(bind(&w->bs, target->name, c->dtype, r, dims, ctx));
        w->tg->data_inputs[w->tg->n_data] = target->name;
        w->tg->data_cols[w->tg->n_data++] = arena_str(g, col);
    } else if (t->loss == ULC_LOSS_KL || t->loss == ULC_LOSS_SOFT_CROSS_ENTROPY) {
        /* probabilities shaped like the output, bound per step by the caller's hook */
        for (int i = 0; i < ot->rank; i++) dims[i] = ot->dims[i];
        if (!(target = add_input(g, ULC_TRAIN_TARGET, ULC_DT_F32, ot->rank, dims, ctx)))
            return ctx->status;
        ULC_TRY(bind(&w->bs, target->name, ULC_DT_F32, ot->rank, dims, ctx));
    } else if (t->loss != ULC_LOSS_ENTROPY) {
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "loss %d has no training target", (int)t->loss);
    }
    return ulc_loss_build(g, w->opset, t->loss, z, ot->rank, ot->dims[ot->rank - 1], target, NULL,
                          "ulc.train.loss", loss, ctx);
}

/* The loss: the task's own (custom_loss) or a built-in one, on the output it reads. */
static ulc_status add_loss(tg_build *w, ulc_value **loss, ulc_ctx *ctx) {
    const ulc_train_task *t = w->t;
    ulc_graph *g = w->g;
    ulc_value *out = NULL;
    if (t->output) {
        out = ulc_graph_get_value(g, t->output);
        if (!out || !(out->flags & ULC_VALUE_OUTPUT))
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "the model has no output '%s'", t->output);
    } else if (g->outputs.len) {
        out = g->outputs.items[0];
    }
    if (!out) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "the model has no output");
    ulc_analysis *an = NULL;
    ULC_TRY(ulc_analyze(g, w->opset, w->bs.b, w->bs.n, (size_t)1 << 16, &an, ctx));
    ulc_rt_tensor ot;
    int known = ulc_analysis_get(an, out, &ot);
    if (!known || ot.rank < 1) {
        ulc_analysis_free(an);
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                        "cannot infer the shape of output '%s' for batch %d", out->name, w->batch);
    }
    if (!t->custom_loss) {
        ulc_analysis_free(an);
        return builtin_loss(w, out, &ot, loss, ctx);
    }
    struct tg_priv priv = {.bs = &w->bs, .tg = w->tg};
    ulc_tg tb = {.g = g, .opset = w->opset, .batch = w->batch, .output = out, .shapes = an,
                 .priv = &priv};
    ulc_status st = t->custom_loss(t->custom_arg, &tb, loss, ctx);
    ulc_analysis_free(an);
    ULC_TRY(st);
    (*loss)->flags |= ULC_VALUE_LOSS;
    return ULC_OK;
}

/* The backward pass; the outputs become the loss and one gradient per parameter. */
static ulc_status differentiate(tg_build *w, ulc_value *loss, ulc_ctx *ctx) {
    ulc_graph *g = w->g;
    w->tg->loss = loss->name;
    ulc_value **grads = ulc_arena_calloc(g->arena, (size_t)w->np, sizeof *grads);
    if (!grads) return nomem(ctx);
    ULC_TRY(ulc_autodiff(g, w->opset, loss, w->np, w->params, w->bs.b, w->bs.n, grads, ctx));
    for (size_t i = 0; i < g->outputs.len; i++)
        ((ulc_value *)g->outputs.items[i])->flags &= ~(uint32_t)ULC_VALUE_OUTPUT;
    ulc_ptrvec_clear(&g->outputs);
    loss->flags |= ULC_VALUE_OUTPUT;
    if (ulc_ptrvec_push(&g->outputs, loss) != 0) return nomem(ctx);
    for (int i = 0; i < w->np; i++) {
        if (!grads[i])
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                            "parameter '%s' does not influence the loss", w->params[i]->name);
        grads[i]->flags |= ULC_VALUE_OUTPUT;
        if (ulc_ptrvec_push(&g->outputs, grads[i]) != 0) return nomem(ctx);
        w->tg->grad_outputs[i] = grads[i]->name;
    }
    return ulc_graph_verify(g, ctx);
}

static ulc_status build(const ulc_model *m, const ulc_dataset *d, const ulc_train_task *t,
                        int batch, ulc_train_graph *tg, ulc_ctx *ctx) {
    tg_build w = {.m = m, .sg = m->graph, .opset = ulc_model_opset(m, ""), .d = d, .t = t,
                  .batch = batch, .tg = tg};
    ULC_TRY(ulc_model_clone_shallow(m, &tg->model, ctx));
    w.g = tg->model->graph;
    int fused = 0, folded = 0, moved = 0;
    ULC_TRY(fuse_conv_lora(w.g, m, w.opset, &fused, ctx));
    ULC_TRY(lora_scale_rank_side(w.g, m, w.opset, &moved, ctx));
    int gelus = 0;
    ULC_TRY(fast_gelu(w.g, w.opset, &gelus, ctx));
    ULC_TRY(erf_gelu(w.g, w.opset, &gelus, ctx));
    if (!getenv("ULC_NO_LORA_AFFINE")) ULC_TRY(fold_lora_affine(w.g, m, t, &folded, ctx));
    ulc_value *loss = NULL;
    ULC_TRY(params_to_inputs(&w, ctx));
    ULC_TRY(bind_data(&w, ctx));
    int attns = 0;
    ULC_TRY(ulc_train_fuse_attention(w.g, w.opset, w.bs.b, w.bs.n, w.params, w.np, &attns, ctx));
    ULC_TRY(add_loss(&w, &loss, ctx));
    return differentiate(&w, loss, ctx);
}

ulc_status ulc_train_graph_build(const ulc_model *m, const ulc_dataset *d,
                                 const ulc_train_task *t, int batch, ulc_train_graph *tg,
                                 ulc_ctx *ctx) {
    memset(tg, 0, sizeof *tg);
    ulc_status s = build(m, d, t, batch, tg, ctx);
    if (s != ULC_OK) ulc_train_graph_clear(tg);
    return s;
}

ulc_status ulc_train_graph_params(const ulc_model *m, const ulc_train_graph *tg, float ***vals,
                                  ulc_ctx *ctx) {
    float **v = calloc((size_t)tg->n_params + 1, sizeof *v);
    if (!v) return nomem(ctx);
    for (int i = 0; i < tg->n_params; i++) {
        const ulc_value *p = ulc_graph_get_value(m->graph, tg->param_inputs[i]);
        if (!p || !p->init || !p->init->data) {
            ulc_train_graph_free_params(tg, v);
            return ulc_fail(ctx, ULC_ERR_INTERNAL, "parameter '%s' has no data",
                            tg->param_inputs[i]);
        }
        const ulc_tensor *t = p->init;
        if (!(v[i] = malloc(t->numel ? (size_t)t->numel * sizeof(float) : 1))) {
            ulc_train_graph_free_params(tg, v);
            return nomem(ctx);
        }
        if (t->dtype == ULC_DT_F32) {
            memcpy(v[i], t->data, t->nbytes);
        } else { /* float16 / bfloat16: the float32 master copy (exact) */
            const uint8_t *h = t->data;
            for (uint64_t k = 0; k < t->numel; k++) {
                uint16_t x;
                memcpy(&x, h + 2 * k, 2);
                v[i][k] = t->dtype == ULC_DT_F16 ? ulc_f16_to_f32(x) : ulc_bf16_to_f32(x);
            }
        }
    }
    *vals = v;
    return ULC_OK;
}

void ulc_train_graph_free_params(const ulc_train_graph *tg, float **vals) {
    if (!vals) return;
    for (int i = 0; i < tg->n_params; i++) free(vals[i]);
    free(vals);
}

ulc_status ulc_train_graph_write_back(ulc_model *m, const ulc_train_graph *tg,
                                      float *const *vals, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    for (int i = 0; i < tg->n_params; i++)
        ULC_TRY(ulc_param_set_f32(g, ulc_graph_get_value(g, tg->param_inputs[i]), vals[i], ctx));
    return ULC_OK;
}
