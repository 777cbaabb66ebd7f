/*
 * robust.c — the `robust` pass: unlearning that survives relearning, by UNDO (Lee et al.,
 * "Distillation Robustifies Unlearning", NeurIPS 2025; shared/methods/robust-unlearning.md).
 *
 * It follows a method (and lora-merge): the model as the pass receives it is the teacher T, the
 * unlearned model. Then
 *   1. T's logits on the retain rows, once (ulc_teacher_logits, as DELETE's on the forget rows);
 *   2. noise: every trained weight θ ← (1 − α)·θ_T + α·θ_init, θ_init a seeded fresh
 *      initialisation (ulc_unlearn_reinit: PyTorch's default init, as retrain draws it), so
 *      α = 0 keeps T and α = 1 is a random student; weights the initialiser has no rule for
 *      (a BatchNorm's scale, say) keep T's values;
 *   3. distil: every float weight trains on the retain rows with τ²·KL(softmax(z_T/τ) ‖
 *      softmax(z_S/τ)) (unlearn.c's L_DISTILL), no labels.
 * The forget rows are never read: what the student learns of them is what T's outputs on other
 * rows carry. BatchNorm: an ONNX export in eval mode folds it into the convolutions (the digits
 * models have no BatchNormalization node), and running statistics of a model that still has
 * them are initializers the runtime reads, never updated by training: they keep T's values
 * (the paper re-estimates them; ulc's models here have none to re-estimate).
 *
 * Results go to env->robust (method.h): the method's own statistics stay in env->stats.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/half.h"
#include "ir/lora.h"
#include "methods/method.h"
#include "methods/unlearn_internal.h"
#include "train/train_graph.h"

/* The defaults (chosen on the digits default with rfa: docs/results.md, "Robust unlearning"). */
#define ROBUST_ALPHA 0.2
#define ROBUST_EPOCHS 10
#define ROBUST_BATCH 64
#define ROBUST_LR 3e-3
#define ROBUST_WD 1e-4
/* τ: 4 with the original as teacher (its forgotten classes at -inf, so the softened targets carry
 * only what IN knows of the kept classes); 1 with the unlearned model, whose softened outputs
 * still hold the forgotten class's traces (digits, α 0.2, 10 epochs: at τ 4 the probe brings the
 * class back to 51 % in 10 steps, at τ 1 it stays below half). docs/results.md has the sweeps. */
#define ROBUST_TEMPERATURE_ORIGINAL 4.0
#define ROBUST_TEMPERATURE_UNLEARNED 1.0

static const char *const k_optimizers[] = {"adamw", "sgd", NULL};
static const char *const k_teachers[] = {"auto", "unlearned", "original", NULL};

static const ulc_pass_optdef k_robust_opts[] = {
    {.key = "alpha", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1,
     .help = "noise fraction: student = (1-alpha)*teacher + alpha*fresh init (0.2)"},
    {.key = "epochs", .kind = ULC_OPT_INT, .ilo = 1, .ihi = 1000000,
     .help = "distillation passes over the retain rows (10)"},
    {.key = "batch_size", .kind = ULC_OPT_INT, .ilo = 1, .ihi = 1 << 20, .help = "rows per step (64)"},
    {.key = "lr", .kind = ULC_OPT_NUM, .lo = 0, .lo_open = 1, .hi = 1e3,
     .help = "learning rate, decayed linearly to 0 (3e-3)"},
    {.key = "weight_decay", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e3,
     .help = "decoupled (AdamW) or L2 (SGD) (1e-4)"},
    {.key = "optimizer", .kind = ULC_OPT_STR, .choices = k_optimizers, .help = "adamw or sgd (adamw)"},
    {.key = "temperature", .kind = ULC_OPT_NUM, .lo = 0, .lo_open = 1, .hi = 1e3,
     .help = "distillation temperature tau; the loss is tau^2*KL (4 with the original as "
             "teacher, 1 with the unlearned model)"},
    {.key = "teacher", .kind = ULC_OPT_STR, .choices = k_teachers,
     .help = "whose outputs are distilled: the unlearned model's (UNDO), the original's with "
             "the forgotten classes' logits at -inf, or auto (the default: original for class "
             "forgetting, unlearned for rows)"},
    {0}};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Element k of t as float32 (halves widened exactly). */
static float at(const ulc_tensor *t, uint64_t k) {
    if (t->dtype == ULC_DT_F32) { /* the data may sit unaligned inside a mapped file */
        float f;
        memcpy(&f, (const uint8_t *)t->data + 4 * k, 4);
        return f;
    }
    uint16_t x;
    memcpy(&x, (const uint8_t *)t->data + 2 * k, 2);
    return t->dtype == ULC_DT_F16 ? ulc_f16_to_f32(x) : ulc_bf16_to_f32(x);
}

/* Step 2: θ ← (1 − α)·θ + α·θ_init for every weight flagged PARAM that the initialiser redraws.
 * ulc_unlearn_reinit gives a redrawn weight a new tensor and leaves the old one in the graph, so
 * both are read in place: nothing is copied but the blend, written once per weight. */
static ulc_status add_noise(ulc_model *m, double alpha, uint64_t seed, ulc_ctx *ctx) {
    if (alpha <= 0) return ULC_OK; /* θ stays θ_T */
    ulc_graph *g = m->graph;
    size_t n = g->inits.len;
    const ulc_tensor **old = calloc(n + 1, sizeof *old);
    ulc_status s = old ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && s == ULC_OK; i++) {
        ulc_value *v = g->inits.items[i];
        if (!(v->flags & ULC_VALUE_PARAM) || !v->init) continue;
        if ((s = ulc_tensor_materialize(g, v->init, ctx)) == ULC_OK) old[i] = v->init; /* lora-merge's */
    }
    if (s == ULC_OK) s = ulc_unlearn_reinit(m, seed, ctx);
    for (size_t i = 0; i < n && s == ULC_OK; i++) {
        ulc_value *v = g->inits.items[i];
        if (!old[i] || v->init == old[i]) continue; /* not redrawn: T's values */
        float *mix = malloc((size_t)v->init->numel * sizeof *mix + 1);
        if (!mix) {
            s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
            break;
        }
        for (uint64_t k = 0; k < v->init->numel; k++)
            mix[k] = (float)((1.0 - alpha) * at(old[i], k) + alpha * at(v->init, k));
        s = ulc_param_set_f32(g, v, mix, ctx);
        free(mix);
    }
    free(old);
    return s;
}

/* The distillation's settings: the pass's options over the defaults. */
static ulc_method_hparams robust_hparams(const ulc_pass_opts *o) {
    ulc_method_hparams h = {.epochs = ROBUST_EPOCHS, .batch_size = ROBUST_BATCH, .lr = ROBUST_LR,
                            .weight_decay = ROBUST_WD, .optimizer = ULC_OPTIM_ADAMW};
    const char *opt = ulc_pass_opt_str(o, "optimizer", "adamw");
    h.optimizer = strcmp(opt, "sgd") == 0 ? ULC_OPTIM_SGD : ULC_OPTIM_ADAMW;
    h.epochs = ulc_pass_opt_i(o, "epochs", h.epochs);
    h.batch_size = ulc_pass_opt_i(o, "batch_size", h.batch_size);
    h.lr = ulc_pass_opt_num(o, "lr", h.lr);
    h.weight_decay = ulc_pass_opt_num(o, "weight_decay", h.weight_decay);
    return h;
}

static ulc_train_opts robust_train_opts(const ulc_method_hparams *h, const ulc_pass_ctx *pc) {
    ulc_train_opts o = ulc_method_train_opts("robust", h, pc);
    o.optim.schedule = ULC_LR_LINEAR; /* as retrain's recipe */
    return o;
}

/* What the pass needs before any work: the data and forget set, a classifier, no adapters left
 * unmerged, and at least one retain row (into *keep: 1 for a retain row). */
static ulc_status robust_check(ulc_model *m, const ulc_method_env *env, uint8_t **keep,
                               int64_t *n_keep, ulc_ctx *ctx) {
    if (!env || !env->data || !env->forget)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass robust: distillation needs the training "
                        "data and the forget set (a forget spec, or `ulc train --data D` with "
                        "--forget-classes or --forget-indices), and follows an unlearning method");
    if (env->next_token)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "pass robust: implemented for classifiers "
                        "only ([batch, classes] logits), not per next-token position");
    ULC_TRY(ulc_lora_records_load(m, ctx));
    for (size_t i = 0; i < m->lora.len; i++)
        if (!((const ulc_lora_record *)m->lora.items[i])->merged)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass robust: the model has unmerged LoRA "
                            "adapters: put robust after lora-merge");
    const ulc_dataset *d = env->data;
    if (!(*keep = malloc((size_t)d->n_rows + 1))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    *n_keep = 0;
    for (int64_t i = 0; i < d->n_rows; i++) *n_keep += ((*keep)[i] = env->forget[i] == 0);
    if (*n_keep == 0)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass robust: every training row is to be "
                        "forgotten: no retain rows to distil on");
    return ULC_OK;
}

/* Steps 2 and 3 on the retain subset r, with the model's weights marked for the run only. */
static ulc_status noise_and_distil(ulc_model *m, const ulc_dataset *r, double alpha,
                                   const ulc_train_opts *to, const ulc_unlearn_opts *u,
                                   ulc_train_stats *stats, ulc_ctx *ctx) {
    ulc_graph *g = m->graph;
    size_t n = g->inits.len;
    unsigned char *was = malloc(n + 1);
    if (!was) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        was[i] = (((const ulc_value *)g->inits.items[i])->flags & ULC_VALUE_PARAM) != 0;
    ulc_status s = ulc_mark_params(m, "*") ? ULC_OK
                   : ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass robust: the model has no float "
                              "weights to train");
    if (s == ULC_OK) s = add_noise(m, alpha, to->seed ^ 0x0D0ull, ctx);
    if (s == ULC_OK) s = ulc_unlearn_train(m, r, L_DISTILL, to, u, stats, ctx);
    for (size_t i = 0; i < n && i < g->inits.len; i++) {
        ulc_value *v = g->inits.items[i];
        v->flags = was[i] ? v->flags | ULC_VALUE_PARAM : v->flags & ~(uint32_t)ULC_VALUE_PARAM;
    }
    free(was);
    return s;
}

static ulc_status run_robust(ulc_model *m, const ulc_pass_opts *o, ulc_pass_ctx *pc,
                             ulc_ctx *ctx) {
    ulc_method_env *env = pc->env;
    double t0 = now_s();
    uint8_t *keep = NULL;
    int64_t n_keep = 0;
    ulc_status s = robust_check(m, env, &keep, &n_keep, ctx);
    if (s != ULC_OK) {
        free(keep);
        return s;
    }
    ulc_robust_result *res = &env->robust;
    ulc_train_stats_clear(&res->stats);
    memset(res, 0, sizeof *res);
    res->alpha = ulc_pass_opt_num(o, "alpha", ROBUST_ALPHA);
    res->hparams = robust_hparams(o);
    res->retain_rows = (long)n_keep;
    ulc_train_opts to = robust_train_opts(&res->hparams, pc);
    ulc_unlearn_opts u;
    ulc_optim_opts optim;
    int epochs, batch;
    ulc_unlearn_defaults(ULC_METHOD_FINETUNE, &u, &optim, &epochs, &batch);
    u.input = env->input;
    u.output = env->output;
    /* 1. the teacher (the model as received) on the retain rows */
    float *zt = NULL;
    int64_t nt = 0, C = 0;
    ulc_row_subset r = {0};
    const char *who = ulc_pass_opt_str(o, "teacher", "auto");
    int original = strcmp(who, "original") == 0 ||
                   (strcmp(who, "auto") == 0 && env->n_forget_classes > 0);
    res->teacher = original ? "original" : "unlearned";
    res->temperature = ulc_pass_opt_num(o, "temperature", original ? ROBUST_TEMPERATURE_ORIGINAL
                                                                   : ROBUST_TEMPERATURE_UNLEARNED);
    u.temperature = res->temperature;
    s = ulc_teacher_logits(original ? env->teacher : m, env->data, keep, env->input, env->output,
                           pc->threads, &zt, &nt, &C, ctx);
    for (int64_t i = 0; s == ULC_OK && original && i < nt; i++) /* the forgotten classes gone */
        for (int k = 0; k < env->n_forget_classes; k++)
            if (env->forget_classes[k] >= 0 && env->forget_classes[k] < C)
                zt[i * C + env->forget_classes[k]] = -INFINITY; /* softmax 0 */
    res->teacher_seconds = now_s() - t0;
    if (s == ULC_OK)
        s = ulc_row_subset_make(env->data, env->forget, 0, TEACHER_COL, zt, C, &r, ctx);
    free(zt);
    free(keep);
    /* 2, 3. noise, distil */
    if (s == ULC_OK) s = noise_and_distil(m, &r.d, res->alpha, &to, &u, &res->stats, ctx);
    ulc_row_subset_free(&r);
    res->ran = s == ULC_OK;
    res->seconds = now_s() - t0;
    return s;
}

const ulc_pass ulc_pass_robust = {
    .name = "robust", .opts = k_robust_opts,
    .summary = "after a method: noise the unlearned model toward a fresh init and distil its "
               "outputs back on the retain rows (UNDO), so the forgotten does not relearn fast",
    .run = run_robust};
