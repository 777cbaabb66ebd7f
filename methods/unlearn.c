/*
 * unlearn.c — DELETE and the baselines on the shared trainer (see unlearn.h).
 *
 * Every method trains on a row subset of the data (forget rows or retain rows), gathered into
 * its own columns, plus, where the method needs the frozen teacher, a column "ulc.teacher" of
 * the teacher's logits for those rows (computed once). Losses are graph (custom_loss of the
 * training graph), so DELETE's target is built in the graph from the teacher column, whose
 * masked logits delete.c set to −∞ (the row's own label when its class is forgotten, or any
 * forget class):  p = softmax(z_t / T), and the KL of loss.c (0·log 0 = 0) compares it with the
 * student; the softmax kernel subtracts the row maximum, so the −∞ entries are exact zeros.
 */
#include "methods/unlearn_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/grad.h"
#include "train/loss.h"
#include "methods/rfa.h"
#include "train/train_graph.h"
#include "runtime/runtime.h"


static const char *const k_methods[ULC_METHOD_COUNT_] = {
    "rfa", "delete", "finetune", "neggrad", "random-label", "scrub", "retrain", "graddiff", "npo",
    "ssd", "nhl-kl", "megu"};

int ulc_method_parse(const char *s) {
    for (int i = 0; i < ULC_METHOD_COUNT_; i++)
        if (strcmp(s, k_methods[i]) == 0) return i;
    return -1;
}

const char *ulc_method_name(ulc_method m) {
    return m >= 0 && m < ULC_METHOD_COUNT_ ? k_methods[m] : "?";
}

int ulc_train_what_parse(const char *s) {
    if (!strcmp(s, "all")) return ULC_TRAIN_ALL;
    if (!strcmp(s, "all_but_classifier")) return ULC_TRAIN_ALL_BUT_CLASSIFIER;
    if (!strcmp(s, "lora")) return ULC_TRAIN_LORA;
    return -1;
}

void ulc_unlearn_defaults(ulc_method m, ulc_unlearn_opts *u, ulc_optim_opts *optim, int *epochs,
                          int *batch_size) {
    memset(u, 0, sizeof *u);
    u->method = m;
    u->what = ULC_TRAIN_ALL;
    u->temperature = 1.0;
    u->scrub_alpha = 1.0;
    u->scrub_gamma = 1.0;
    u->npo_beta = 0.1;
    u->retain_weight = 1.0;
    u->ssd_alpha = 10.0; /* the paper's */
    u->ssd_lambda = 1.0;
    u->nhl_margin = 2.0; /* the paper's */
    u->nhl_alpha_coarse = 10.0;
    u->nhl_alpha_fine = 20.0;
    u->megu_tau = 0.3; /* the paper's (MeGU, and UNSIR's noise for the noise settings) */
    u->megu_alpha = 0.7;
    u->megu_noise_steps = 25;
    u->megu_noise_lr = 0.1;
    u->megu_noise_lambda = 0.1;
    u->megu_retain_rows = 10000;
    *optim = ulc_optim_defaults(ULC_OPTIM_ADAMW);
    *batch_size = 64;
    switch (m) {
    case ULC_METHOD_DELETE: /* the paper's supplementary: SGD, momentum 0.9, wd 5e-4, 20 epochs */
        *optim = ulc_optim_defaults(ULC_OPTIM_SGD);
        optim->momentum = 0.9;
        optim->weight_decay = 5e-4;
        optim->lr = 1e-4; /* digits: Dft 0 %, Drt 99.4 % (1e-3 and up collapse the retain classes) */
        *epochs = 20;
        break;
    case ULC_METHOD_FINETUNE: optim->lr = 1e-3, *epochs = 5; break;
    case ULC_METHOD_NEGGRAD: /* a knife edge on digits (5 epochs): 1e-3 forgets nothing, 2e-3
                                collapses every class; 1.5e-3 forgets part and keeps the rest */
        *optim = ulc_optim_defaults(ULC_OPTIM_SGD);
        optim->lr = 1.5e-3;
        *epochs = 5;
        break;
    case ULC_METHOD_RANDOM_LABEL: optim->lr = 1e-3, *epochs = 5; break;
    case ULC_METHOD_SCRUB: optim->lr = 1e-3, *epochs = 5; break;
    case ULC_METHOD_GRADDIFF: /* the NPO paper's TOFU settings for both: AdamW 1e-5, batch 32 */
    case ULC_METHOD_NPO: optim->lr = 1e-5, *epochs = 5, *batch_size = 32; break;
    case ULC_METHOD_SSD: break; /* no training: only the batch size counts (the Fisher's) */
    case ULC_METHOD_NHL_KL: /* the paper's Adam, 8 epochs, batch 32; its lr 1e-7 is for every
                               weight of CLIP ViT-L/14: ours is swept on the shipped CLIP, per
                               what trains (ulc_method_resolve picks ULC_NHL_LR_ALL) */
        optim->lr = ULC_NHL_LR_LORA;
        optim->weight_decay = 0;
        u->what = ULC_TRAIN_LORA;
        *epochs = 8;
        *batch_size = 32;
        break;
    case ULC_METHOD_MEGU: /* the paper's ResNet-18 recipe: Adam lr 3e-4, 3 epochs, batch 32 */
        optim->lr = 3e-4;
        optim->weight_decay = 0;
        *epochs = 3;
        *batch_size = 32;
        break;
    case ULC_METHOD_RETRAIN: /* the digits model's own recipe (models/digits/gen_digits.py) */
        optim->lr = 3e-3;
        optim->weight_decay = 1e-4;
        optim->schedule = ULC_LR_LINEAR;
        *epochs = 40;
        break;
    default: /* rfa: see rfa.h */
        optim->lr = 5e-5;
        *epochs = 1;
        *batch_size = 128;
        break;
    }
}

/* ---- the teacher's logits --------------------------------------------------------------------- */

/* The column the model's main input reads: its own name (io/data.h names bound columns so),
 * else "input" / "input_ids". */
static int main_col(const ulc_dataset *d, const char *input) {
    int c = ulc_dataset_find(d, input);
    if (c < 0) c = ulc_dataset_find(d, "input");
    return c >= 0 ? c : ulc_dataset_find(d, "input_ids");
}

/* ulc_rows_logits's message for a teacher output (arg: its name) that is not float32 [rows,
 * classes]. */
static ulc_status teacher_bad_output(void *arg, const ulc_rt_tensor *o, int64_t rows,
                                     int64_t classes, ulc_ctx *ctx) {
    (void)o, (void)rows, (void)classes;
    return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "teacher: output '%s' is not [batch, classes] "
                    "float32 logits", (const char *)arg);
}

/* ulc_teacher_outputs's collector: each batch's outputs appended to their buffers. */
typedef struct teacher_acc {
    const char *const *outputs;
    int n_out;
    float **z;
    int64_t *classes, rows;
} teacher_acc;

static ulc_status teacher_batch(void *arg, ulc_session *s, int64_t r0, int64_t rn, ulc_ctx *ctx) {
    teacher_acc *a = arg;
    for (int k = 0; k < a->n_out; k++) {
        const ulc_rt_tensor *o = ulc_session_output(s, a->outputs[k]);
        int64_t C = o && o->dtype == ULC_DT_F32 && o->rank == 2 && o->dims[0] == rn ? o->dims[1] : 0;
        if (C <= 0 || (a->classes[k] && C != a->classes[k]))
            return teacher_bad_output((void *)a->outputs[k], o, rn, a->classes[k], ctx);
        if (!a->z[k] && !(a->z[k] = malloc((size_t)(a->rows * C) * sizeof(float) + 1)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (teacher logits)");
        a->classes[k] = C;
        memcpy(a->z[k] + r0 * C, o->data, (size_t)(rn * C) * sizeof(float));
    }
    return ULC_OK;
}

ulc_status ulc_teacher_outputs(const ulc_model *teacher, const ulc_dataset *data,
                               const uint8_t *rows, const char *input,
                               const char *const *outputs, int n_out, int threads,
                               float **logits, int64_t *n, int64_t *classes, ulc_ctx *ctx) {
    *n = 0;
    for (int k = 0; k < n_out; k++) logits[k] = NULL, classes[k] = 0;
    const ulc_graph *g = teacher->graph;
    const ulc_value *in = NULL;
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        if (input ? !strcmp(v->name, input) : !in) in = v;
    }
    int col = in ? main_col(data, in->name) : -1;
    if (!in || col < 0 || n_out < 1 || n_out > ULC_TEACHER_MAX_OUT)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "teacher: no input/output to read, or no "
                        "'input' column in %s", data->path ? data->path : "the data");
    int64_t nf = 0;
    for (int64_t i = 0; i < data->n_rows; i++) nf += rows[i] != 0;
    int64_t *idx = malloc(((size_t)nf + 1) * sizeof *idx);
    if (!idx) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0, k = 0; i < data->n_rows; i++)
        if (rows[i]) idx[k++] = i;
    ulc_session_opts so = ulc_session_defaults();
    so.threads = threads;
    ulc_session *s = NULL;
    ulc_rows r = {.names = {in->name}, .cols = {data->cols[col]}, .n_feeds = 1,
                  .file = data->path, .idx = idx, .n = nf};
    teacher_acc a = {outputs, n_out, logits, classes, nf};
    ulc_status st = ulc_session_create(teacher, &so, &s, ctx);
    if (st == ULC_OK) st = ulc_rows_run(s, &r, teacher_batch, &a, NULL, ctx);
    free(idx);
    ulc_session_free(s);
    if (st != ULC_OK) {
        for (int k = 0; k < n_out; k++) free(logits[k]), logits[k] = NULL;
        return st;
    }
    *n = nf;
    return ULC_OK;
}

ulc_status ulc_teacher_logits(const ulc_model *teacher, const ulc_dataset *data,
                              const uint8_t *forget, const char *input, const char *output,
                              int threads, float **logits, int64_t *n, int64_t *classes,
                              ulc_ctx *ctx) {
    *logits = NULL;
    *n = *classes = 0;
    const ulc_graph *g = teacher->graph;
    const char *out = NULL;
    for (size_t i = 0; i < g->outputs.len && !out; i++) {
        const ulc_value *v = g->outputs.items[i];
        if (!output || !strcmp(v->name, output)) out = v->name;
    }
    if (!out)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "teacher: no output '%s'", output ? output : "");
    return ulc_teacher_outputs(teacher, data, forget, input, &out, 1, threads, logits, n, classes,
                               ctx);
}

/* ---- losses ----------------------------------------------------------------------------------- */

typedef struct loss_ctx {
    const ulc_unlearn_opts *u;
    int kind;     /* what the phase optimises (below) */
} loss_ctx;


#define NN(e)                                                                                  \
    do {                                                                                       \
        if (!(e)) return ctx->status ? ctx->status : ULC_ERR_NOMEM;                            \
    } while (0)

/* L_DISTILL: τ²·KL(softmax(z_t/τ) ‖ softmax(z_s/τ)) over the teacher column, no mask (Hinton's
 * τ² keeps the gradient's scale across temperatures). */
static ulc_status distill_kl(ulc_gb *b, ulc_tg *t, const ulc_unlearn_opts *u, int64_t C,
                             ulc_value **out, ulc_ctx *ctx) {
    int64_t td[2] = {1, C};
    ulc_value *zt = ulc_tg_input(t, "ulc.unlearn.teacher", ULC_DT_F32, 2, td, TEACHER_COL, ctx);
    NN(zt);
    ulc_value *zs = t->output, *kl = NULL;
    float tau = (float)u->temperature;
    if (tau != 1.0f) {
        NN(zt = ulc_gb_op2(b, "Div", zt, ulc_gb_scalar_f32(b, tau)));
        NN(zs = ulc_gb_op2(b, "Div", zs, ulc_gb_scalar_f32(b, tau)));
    }
    ulc_value *p = ulc_gb_op1(b, "Softmax", zt);
    NN(p);
    ulc_gb_attr_int(b, p, "axis", 1);
    ULC_TRY(ulc_loss_build(t->g, t->opset, ULC_LOSS_KL, zs, 2, C, p, NULL, "ulc.unlearn.kl", &kl,
                           ctx));
    NN(*out = tau != 1.0f ? ulc_gb_op2(b, "Mul", kl, ulc_gb_scalar_f32(b, tau * tau)) : kl);
    return ULC_OK;
}

static ulc_status build_loss(void *arg, ulc_tg *t, ulc_value **loss, ulc_ctx *ctx) {
    const loss_ctx *lc = arg;
    const ulc_unlearn_opts *u = lc->u;
    ulc_gb gb, *b = &gb;
    ulc_gb_init(b, t->g, t->opset, ULC_GB_NAMES_DERIVED, ctx);
    ulc_rt_tensor zt;
    if (!ulc_analysis_get(t->shapes, t->output, &zt) || zt.rank != 2)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: output '%s' is not [batch, classes] logits",
                        ulc_method_name(u->method), t->output->name);
    int64_t C = zt.dims[1], one = 1;
    ulc_value *label = ulc_tg_input(t, "ulc.unlearn.label", ULC_DT_I64, 1, &one, "label", ctx);
    NN(label);
    ulc_value *ce = NULL, *kl = NULL;
    if (lc->kind == L_CE || lc->kind == L_NEG_CE || lc->kind == L_KL_CE)
        ULC_TRY(ulc_loss_build(t->g, t->opset, ULC_LOSS_CROSS_ENTROPY, t->output, 2, C, label,
                               NULL, "ulc.unlearn.ce", &ce, ctx));
    if (lc->kind == L_DELETE || lc->kind == L_NEG_KL || lc->kind == L_KL_CE) {
        int64_t td[2] = {1, C};
        ulc_value *zt_in = ulc_tg_input(t, "ulc.unlearn.teacher", ULC_DT_F32, 2, td, TEACHER_COL, ctx);
        NN(zt_in);
        ulc_value *z = zt_in;
        /* DELETE: the column's masked logits are −∞ already (delete.c) */
        if (lc->kind == L_DELETE && u->temperature != 1.0)
            NN(z = ulc_gb_op2(b, "Div", z, ulc_gb_scalar_f32(b, (float)u->temperature)));
        ulc_value *p = ulc_gb_op1(b, "Softmax", z);
        NN(p);
        ulc_gb_attr_int(b, p, "axis", 1);
        ULC_TRY(ulc_loss_build(t->g, t->opset, ULC_LOSS_KL, t->output, 2, C, p, NULL,
                               "ulc.unlearn.kl", &kl, ctx));
    }
    if (lc->kind == L_DISTILL) ULC_TRY(distill_kl(b, t, u, C, &kl, ctx));
    ulc_value *total = NULL;
    switch (lc->kind) {
    case L_CE: total = ce; break;
    case L_NEG_CE: total = ulc_gb_op1(b, "Neg", ce); break;
    case L_DELETE: total = kl; break;
    case L_NEG_KL: total = ulc_gb_op1(b, "Neg", kl); break;
    case L_DISTILL: total = kl; break;
    case L_KL_CE:
        total = ulc_gb_op2(b, "Add", ulc_gb_op2(b, "Mul", kl, ulc_gb_scalar_f32(b, (float)u->scrub_alpha)),
                          ulc_gb_op2(b, "Mul", ce, ulc_gb_scalar_f32(b, (float)u->scrub_gamma)));
        break;
    default: break;
    }
    NN(*loss = ulc_gb_named(b, total, "ulc.unlearn.loss"));
    return ULC_OK;
}

/* ---- which weights train ---------------------------------------------------------------------- */

/* The weight a linear node reads: its initializer, or the one its Transpose reads (a text
 * model's head over the output embedding); NULL if neither. */
static ulc_value *linear_weight(const ulc_node *p) {
    ulc_value *w = p->n_inputs > 1 ? p->inputs[1].value : NULL;
    if (w && !(w->flags & ULC_VALUE_INITIALIZER) && p->op == ULC_OP_MatMul && w->producer &&
        w->producer->op == ULC_OP_Transpose && w->producer->inputs[0].value)
        w = w->producer->inputs[0].value;
    return w && (w->flags & ULC_VALUE_INITIALIZER) ? w : NULL;
}

/* The classifier: the last linear layer (MatMul/Gemm with a weight initializer, or a MatMul over
 * a transposed one) before the first output, through the ops that only move or add a bias. */
static const ulc_node *classifier(const ulc_graph *g) {
    const ulc_value *v = g->outputs.len ? g->outputs.items[0] : NULL;
    for (int hops = 0; v && v->producer && hops < 6; hops++) {
        const ulc_node *p = v->producer;
        if ((p->op == ULC_OP_Gemm || p->op == ULC_OP_MatMul) && linear_weight(p)) return p;
        if (p->op != ULC_OP_Add && p->op != ULC_OP_Reshape && p->op != ULC_OP_Flatten &&
            p->op != ULC_OP_Identity)
            return NULL;
        v = p->inputs[0].value;
    }
    return NULL;
}

static ulc_status mark_weights(ulc_model *m, ulc_train_what what, ulc_ctx *ctx) {
    if (what == ULC_TRAIN_LORA) {
        for (size_t i = 0; i < m->graph->inits.len; i++)
            if (((const ulc_value *)m->graph->inits.items[i])->flags & ULC_VALUE_PARAM) return ULC_OK;
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "train \"lora\": the model has no LoRA adapters");
    }
    if (!ulc_mark_params(m, "*"))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "the model has no float32, float16 or bfloat16 "
                        "weights to train");
    if (what == ULC_TRAIN_ALL_BUT_CLASSIFIER) {
        const ulc_node *head = classifier(m->graph);
        if (!head)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                            "train \"all_but_classifier\": no linear classifier found before the "
                            "output");
        for (int i = 1; i < head->n_inputs; i++) /* a tied head's weight is the embedding too */
            if (head->inputs[i].value) head->inputs[i].value->flags &= ~(uint32_t)ULC_VALUE_PARAM;
        linear_weight(head)->flags &= ~(uint32_t)ULC_VALUE_PARAM;
    }
    return ULC_OK;
}

/* Seeded re-initialisation of every trained weight, as PyTorch initialises a fresh layer:
 * kaiming_uniform(a=√5) for weights — U(±1/√fan_in) — and U(±1/√fan_in) for biases, fan_in from
 * the weight the bias belongs to. */
int64_t ulc_unlearn_classes(const ulc_model *m, const char *output) {
    const ulc_graph *g = m->graph;
    for (size_t i = 0; i < g->outputs.len; i++) {
        const ulc_value *v = g->outputs.items[i];
        if (output && strcmp(v->name, output) != 0) continue;
        return v->rank == 2 ? v->dims[1].value : -1;
    }
    return -1;
}

/* The dtypes a weight trains in: float32, and float16/bfloat16 through float32 master copies
 * (train/train_graph.h). */
static int is_trained_dtype(int dt) {
    return dt == ULC_DT_F32 || dt == ULC_DT_F16 || dt == ULC_DT_BF16;
}

uint64_t ulc_unlearn_splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double ulc_unlearn_gauss(uint64_t *s) {
    /* Box-Muller on two 53-bit uniforms in (0, 1] and [0, 1) */
    double u1 = ((double)(ulc_unlearn_splitmix(s) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (double)(ulc_unlearn_splitmix(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

ulc_status ulc_unlearn_reinit(ulc_model *m, uint64_t seed, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    uint64_t st = seed ^ 0x5EEDull;
    for (const ulc_node *n = g->first; n; n = n->next) {
        if ((n->op != ULC_OP_Conv && n->op != ULC_OP_Gemm && n->op != ULC_OP_MatMul) ||
            n->n_inputs < 2 || !n->inputs[1].value || !n->inputs[1].value->init)
            continue;
        const ulc_tensor *w = n->inputs[1].value->init;
        int64_t fan_in = 1;
        if (n->op == ULC_OP_Conv)
            for (int d = 1; d < w->rank; d++) fan_in *= w->dims[d];
        else if (n->op == ULC_OP_Gemm && ulc_node_attr(n, "transB") && ulc_node_attr(n, "transB")->i)
            fan_in = w->rank == 2 ? w->dims[1] : 1;
        else
            fan_in = w->rank >= 1 ? w->dims[0] : 1;
        double bound = 1.0 / sqrt((double)(fan_in > 0 ? fan_in : 1));
        for (int k = 1; k < n->n_inputs && k <= 2; k++) {
            ulc_value *v = n->inputs[k].value;
            if (!v || !v->init || !(v->flags & ULC_VALUE_PARAM) || !is_trained_dtype(v->init->dtype))
                continue;
            const ulc_tensor *old = v->init;
            float *p = malloc((size_t)old->numel * sizeof *p + 1);
            if (!p) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
            for (uint64_t i = 0; i < old->numel; i++)
                p[i] = (float)((((double)(ulc_unlearn_splitmix(&st) >> 11) / 9007199254740992.0) * 2 - 1) * bound);
            ulc_status s = ulc_param_set_f32(g, v, p, ctx); /* in the weight's dtype */
            free(p);
            ULC_TRY(s);
        }
    }
    return ULC_OK;
}

/* GPT-2's initialisation (transformers' GPT2PreTrainedModel._init_weights), by the role a weight
 * plays in the graph: an embedding (Gather's data) or a linear weight (MatMul/Gemm, directly or
 * through a Transpose) draws N(0, 0.02) — c_proj weights N(0, 0.02/√(2·n_layer)) —, a bias (Gemm's
 * C, or a vector added to a MatMul/Gemm output) and a LayerNorm shift are 0, a LayerNorm scale 1.
 * Weights with none of these roles keep their values. */
enum { R_KEEP, R_NORMAL, R_ZERO, R_ONE };

static int gpt2_role(const ulc_value *v) {
    for (const ulc_use *u = v->first_use; u; u = u->next) {
        const ulc_node *n = u->node;
        if (n->op == ULC_OP_Gather && u->slot == 0) return R_NORMAL;
        if ((n->op == ULC_OP_MatMul || n->op == ULC_OP_Gemm) && u->slot == 1) return R_NORMAL;
        if (n->op == ULC_OP_Gemm && u->slot == 2) return R_ZERO;
        if (n->op == ULC_OP_Transpose && n->outputs[0])
            for (const ulc_use *w = n->outputs[0]->first_use; w; w = w->next)
                if (w->node->op == ULC_OP_MatMul && w->slot == 1) return R_NORMAL;
        if (n->op == ULC_OP_LayerNormalization && u->slot >= 1) return u->slot == 1 ? R_ONE : R_ZERO;
        if (n->op == ULC_OP_Add && v->rank == 1 && n->n_inputs == 2) {
            const ulc_value *o = n->inputs[1 - u->slot].value;
            if (o && o->producer && (o->producer->op == ULC_OP_MatMul || o->producer->op == ULC_OP_Gemm))
                return R_ZERO;
        }
    }
    return R_KEEP;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

ulc_status ulc_unlearn_reinit_gpt2(ulc_model *m, uint64_t seed, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    int n_layer = 0, n_ln = 0;
    for (size_t i = 0; i < g->inits.len; i++)
        n_layer += ends_with(((const ulc_value *)g->inits.items[i])->name, "mlp.c_proj.weight");
    for (const ulc_node *n = g->first; n; n = n->next) n_ln += n->op == ULC_OP_LayerNormalization;
    if (!n_layer) n_layer = n_ln > 1 ? (n_ln - 1) / 2 : 1; /* two per block, and ln_f */
    uint64_t st = seed ^ 0x6E72ull;
    for (size_t i = 0; i < g->inits.len; i++) {
        ulc_value *v = g->inits.items[i];
        if (!v->init || !(v->flags & ULC_VALUE_PARAM) || !is_trained_dtype(v->init->dtype)) continue;
        int role = gpt2_role(v);
        if (role == R_KEEP) continue;
        double sd = ends_with(v->name, "c_proj.weight") ? 0.02 / sqrt(2.0 * n_layer) : 0.02;
        const ulc_tensor *old = v->init;
        float *p = malloc((size_t)old->numel * sizeof *p + 1);
        if (!p) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        for (uint64_t k = 0; k < old->numel; k++) {
            if (role != R_NORMAL) {
                p[k] = role == R_ONE ? 1.0f : 0.0f;
                continue;
            }
            p[k] = (float)(sd * ulc_unlearn_gauss(&st));
        }
        ulc_status s = ulc_param_set_f32(g, v, p, ctx); /* in the weight's dtype */
        free(p);
        ULC_TRY(s);
    }
    return ULC_OK;
}

const char *ulc_unlearn_refusal(ulc_method m, int next_token, int mask_all_forget) {
    if (!next_token) return NULL;
    switch (m) {
    case ULC_METHOD_RANDOM_LABEL:
        return "a text model has no classes to draw a random label from (next-token logits); "
               "use neggrad, graddiff or npo";
    case ULC_METHOD_SCRUB:
        return "SCRUB is implemented for classifiers only, not per next-token position; use npo "
               "(its retain term is the per-token KL to the original) or graddiff";
    case ULC_METHOD_DELETE:
        return mask_all_forget ? "mask all_forget masks every forget class; a text model has no "
                                 "classes (use mask own: the true next token)"
                               : NULL;
    case ULC_METHOD_MEGU:
        return "MeGU relabels forget rows to similar classes and adds noise to their float "
               "inputs; a text model has neither classes (next-token logits) nor float inputs";
    default: return NULL;
    }
}

/* ---- running ---------------------------------------------------------------------------------- */

ulc_status ulc_unlearn_train(ulc_model *model, const ulc_dataset *d, int kind,
                           const ulc_train_opts *o, const ulc_unlearn_opts *u,
                           ulc_train_stats *stats, ulc_ctx *ctx) {
    loss_ctx lc = {.u = u, .kind = kind};
    ulc_train_task task = {.input = u->input, .output = u->output, .custom_loss = build_loss,
                           .custom_arg = &lc};
    ulc_train_graph tg = {0};
    float **vals = NULL;
    ulc_status s = ulc_train_graph_build(model, d, &task, o->batch_size, &tg, ctx);
    if (s == ULC_OK) s = ulc_train_graph_params(model, &tg, &vals, ctx);
    if (s == ULC_OK) s = ulc_train_run(&tg, d, o, vals, stats, ctx);
    if (s == ULC_OK) s = ulc_train_graph_write_back(model, &tg, vals, ctx);
    ulc_train_graph_free_params(&tg, vals);
    ulc_train_graph_clear(&tg);
    return s;
}

/* Appends a phase's curves to the run's. */
ulc_status ulc_unlearn_stats_add(ulc_train_stats *all, ulc_train_stats *ph, ulc_ctx *ctx) {
    long n = all->steps + ph->steps;
    float *lc = realloc(all->loss_curve, (size_t)(n ? n : 1) * sizeof *lc);
    if (lc) all->loss_curve = lc;
    float *sm = lc ? realloc(all->step_ms, (size_t)(n ? n : 1) * sizeof *sm) : NULL;
    if (sm) all->step_ms = sm;
    if (!lc || !sm) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (ph->steps) {
        memcpy(all->loss_curve + all->steps, ph->loss_curve, (size_t)ph->steps * sizeof *lc);
        memcpy(all->step_ms + all->steps, ph->step_ms, (size_t)ph->steps * sizeof *sm);
    }
    if (!all->steps) all->first_loss = ph->first_loss;
    all->steps = n;
    all->last_loss = ph->last_loss;
    all->mean_last_epoch_loss = ph->mean_last_epoch_loss;
    all->seconds += ph->seconds;
    all->interrupted = ph->interrupted;
    return ULC_OK;
}

ulc_status ulc_unlearn_run(ulc_model *model, const ulc_model *teacher, const ulc_dataset *data,
                           const uint8_t *forget, const ulc_train_opts *o,
                           const ulc_unlearn_opts *u, ulc_train_stats *stats, ulc_ctx *ctx) {
    static ulc_status (*const run[ULC_METHOD_COUNT_])(const ulc_unlearn_call *, ulc_ctx *) = {
        [ULC_METHOD_DELETE] = ulc_delete_run,           [ULC_METHOD_FINETUNE] = ulc_finetune_run,
        [ULC_METHOD_NEGGRAD] = ulc_neggrad_run,         [ULC_METHOD_RANDOM_LABEL] = ulc_random_label_run,
        [ULC_METHOD_SCRUB] = ulc_scrub_run,             [ULC_METHOD_RETRAIN] = ulc_retrain_run,
        [ULC_METHOD_SSD] = ulc_ssd_run,                 [ULC_METHOD_NHL_KL] = ulc_nhl_run,
        [ULC_METHOD_MEGU] = ulc_megu_run};
    memset(stats, 0, sizeof *stats);
    if (u->method >= ULC_METHOD_COUNT_ || u->method == ULC_METHOD_RFA)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "unlearn: method %s runs through rfa.h",
                        ulc_method_name(u->method));
    const char *no = ulc_unlearn_refusal(u->method, u->next_token, u->mask_all_forget);
    if (no) return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: %s", ulc_method_name(u->method), no);
    /* text models, and the paired methods on every model: per-position losses (lm.c); ssd
     * trains nothing, and takes a text model's next-token loss from the training graph */
    int ssd = u->method == ULC_METHOD_SSD;
    ulc_status (*fn)(const ulc_unlearn_call *, ulc_ctx *) =
        !ssd && (u->next_token || u->method == ULC_METHOD_GRADDIFF || u->method == ULC_METHOD_NPO)
            ? ulc_lm_run : run[u->method];
    /* the weights a method trains are marked for the run only: the model keeps its own flags
     * (adapters lora-inject added stay trainable), so a later request starts as this one did */
    size_t n = model->graph->inits.len;
    unsigned char *was = malloc(n + 1);
    if (!was) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        was[i] = (((const ulc_value *)model->graph->inits.items[i])->flags & ULC_VALUE_PARAM) != 0;
    ulc_status s = ssd ? ULC_OK /* ssd.c marks what it may dampen */
                       : mark_weights(model, u->method == ULC_METHOD_RETRAIN ? ULC_TRAIN_ALL : u->what, ctx);
    ulc_unlearn_call c = {model, teacher, data, forget, o, u, stats};
    if (s == ULC_OK) s = fn(&c, ctx);
    for (size_t i = 0; i < n && i < model->graph->inits.len; i++) {
        ulc_value *v = model->graph->inits.items[i];
        v->flags = was[i] ? v->flags | ULC_VALUE_PARAM : v->flags & ~(uint32_t)ULC_VALUE_PARAM;
    }
    free(was);
    return s;
}
