/* registry.c — the unlearning methods as registered passes (method.h): their options, the
 * training settings they resolve, and the call into rfa.h / unlearn.h. */
#include "methods/method.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/cache.h"
#include "ir/lora.h"
#include "methods/rfa.h"
#include "methods/unlearn_internal.h"

/* ---- options ------------------------------------------------------------------------------------ */

static const char *const k_optimizers[] = {"adamw", "sgd", NULL};
static const char *const k_norms[] = {"l2sq", "mse", "l1", "l2", NULL};
static const char *const k_what[] = {"all", "all_but_classifier", "lora", NULL};
static const char *const k_masks[] = {"own", "all_forget", NULL};
static const char *const k_delete_retain[] = {"none", "all", NULL};

/* The training settings every method takes (docs/spec.md's "train" keys, bar the seed: the
 * run's). */
#define TRAIN_OPTS                                                                                 \
    {.key = "epochs", .kind = ULC_OPT_INT, .ilo = 1, .ihi = 1000000, .help = "passes over the data"}, \
    {.key = "batch_size", .kind = ULC_OPT_INT, .ilo = 1, .ihi = 1 << 20, .help = "rows per step"}, \
    {.key = "lr", .kind = ULC_OPT_NUM, .lo = 0, .lo_open = 1, .hi = 1e3, .help = "learning rate"}, \
    {.key = "weight_decay", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e3,                              \
     .help = "decoupled (AdamW) or L2 (SGD)"},                                                     \
    {.key = "momentum", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1, .help = "SGD only"},               \
    {.key = "optimizer", .kind = ULC_OPT_STR, .choices = k_optimizers, .help = "adamw or sgd"}, \
    {.key = "sam_rho", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e3,                                   \
     .help = "sharpness-aware steps of radius rho over the trained weights (0: plain)"}

#define WHAT_OPT                                                                                   \
    {.key = "train", .kind = ULC_OPT_STR, .choices = k_what,                                       \
     .help = "what trains: all, all_but_classifier, or lora (adapters lora-inject added)"}

static const ulc_pass_optdef k_rfa_opts[] = {
    TRAIN_OPTS,
    {.key = "gamma", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1,
     .help = "weight of the feature terms against the task terms (0.5)"},
    {.key = "norm", .kind = ULC_OPT_STR, .choices = k_norms,
     .help = "feature distance: l2sq, mse, l1 or l2 (l2sq)"},
    {.key = "alpha", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6, .help = "retain feature weight (1)"},
    {.key = "beta", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6, .help = "forget feature weight (1)"},
    {.key = "lambda", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6, .help = "retain task weight (1)"},
    {.key = "mu", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6, .help = "forget task weight (1)"},
    {0}};

static const ulc_pass_optdef k_delete_opts[] = {
    TRAIN_OPTS,
    WHAT_OPT,
    {.key = "mask", .kind = ULC_OPT_STR, .choices = k_masks,
     .help = "the logits set to -inf: the row's own label, or every forget class"},
    {.key = "temperature", .kind = ULC_OPT_NUM, .lo = 0, .lo_open = 1, .hi = 1e3,
     .help = "softmax temperature of the teacher (1)"},
    {.key = "retain", .kind = ULC_OPT_STR, .choices = k_delete_retain,
     .help = "all (classifiers' default: the retain rows join, distilled toward the teacher's "
             "own outputs) or none (the paper: forget rows only; text models' only choice)"},
    {0}};

static const ulc_pass_optdef k_scrub_opts[] = {
    TRAIN_OPTS,
    WHAT_OPT,
    {.key = "alpha", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6, .help = "weight of the KL on retain rows (1)"},
    {.key = "gamma", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6, .help = "weight of the CE on retain rows (1)"},
    {0}};

static const ulc_pass_optdef k_plain_opts[] = {TRAIN_OPTS, WHAT_OPT, {0}};

#define RETAIN_WEIGHT_OPT(what)                                                                    \
    {.key = "retain_weight", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6, .help = what}

static const char *const k_retain[] = {"ce", "kl", NULL};
static const ulc_pass_optdef k_graddiff_opts[] = {
    TRAIN_OPTS,
    WHAT_OPT,
    RETAIN_WEIGHT_OPT("weight of the retain term (1)"),
    {.key = "retain", .kind = ULC_OPT_STR, .choices = k_retain,
     .help = "the retain term: ce (the labels; gradient difference) or kl (the original's "
             "outputs; GA+KL)"},
    {0}};

static const ulc_pass_optdef k_npo_opts[] = {
    TRAIN_OPTS,
    WHAT_OPT,
    {.key = "beta", .kind = ULC_OPT_NUM, .lo = 0, .lo_open = 1, .hi = 1e3,
     .help = "NPO's inverse temperature (0.1)"},
    RETAIN_WEIGHT_OPT("weight of the per-token KL to the original on the retain rows (1)"),
    {0}};
static const ulc_pass_optdef k_retrain_opts[] = {TRAIN_OPTS, {0}};

static const ulc_pass_optdef k_nhl_opts[] = {
    TRAIN_OPTS,
    {.key = "train", .kind = ULC_OPT_STR, .choices = k_what,
     .help = "what trains: lora (adapters lora-inject added; the default), all, or "
             "all_but_classifier"},
    {.key = "margin", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6,
     .help = "the hinge's margin on the logit-scaled similarities (2)"},
    {.key = "alpha_coarse", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6,
     .help = "weight of the KL to the original over the coarse classes (10)"},
    {.key = "alpha_fine", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6,
     .help = "weight of the KL to the original over the kept fine classes (20)"},
    {0}};

/* What trains when the pass does not say: nhl-kl's LoRA adapters, every other method's weights. */
static const char *what_default(ulc_method m) { return m == ULC_METHOD_NHL_KL ? "lora" : "all"; }

/* ssd trains nothing: of the training settings only the batch size (its Fisher's) applies, and
 * the table refuses the others by name. */
static const ulc_pass_optdef k_ssd_opts[] = {
    {.key = "batch_size", .kind = ULC_OPT_INT, .ilo = 1, .ihi = 1 << 20,
     .help = "rows per gradient of the Fisher estimates (64)"},
    {.key = "alpha", .kind = ULC_OPT_NUM, .lo = 0, .lo_open = 1, .hi = 1e6,
     .help = "selection weighting: where F_f > alpha*F_D a weight is dampened (10)"},
    {.key = "lambda", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6,
     .help = "dampening constant: the weight is scaled by min(lambda*F_D/F_f, 1) (1)"},
    {.key = "params", .kind = ULC_OPT_STR,
     .help = "'|'-separated globs of the weights it may dampen (every float weight)"},
    {0}};

static const ulc_pass_optdef k_megu_opts[] = {
    TRAIN_OPTS,
    WHAT_OPT,
    {.key = "tau", .kind = ULC_OPT_NUM, .lo = 0, .lo_open = 1, .hi = 1,
     .help = "the perturbing label is the floor(K*tau)-th most similar class (0.3)"},
    {.key = "alpha", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1,
     .help = "weight of the positive noise in the mixed noise (0.7)"},
    {.key = "noise_steps", .kind = ULC_OPT_INT, .ilo = 1, .ihi = 1000000,
     .help = "Adam steps per noise (25)"},
    {.key = "noise_lr", .kind = ULC_OPT_NUM, .lo = 0, .lo_open = 1, .hi = 1e3,
     .help = "the noises' learning rate (0.1)"},
    {.key = "noise_lambda", .kind = ULC_OPT_NUM, .lo = 0, .hi = 1e6,
     .help = "weight of mean(N^2) in the noise losses (0.1)"},
    {.key = "retain_rows", .kind = ULC_OPT_INT, .ilo = 0, .ihi = 1LL << 40,
     .help = "retain rows finetuned on, at most; a seeded choice when there are more (10000)"},
    {.key = "similarity", .kind = ULC_OPT_STR,
     .help = "a JSON file of the KxK class similarity (the model's mean softmax per class)"},
    {0}};

/* ---- training settings ----------------------------------------------------------------------------- */

ulc_method_train ulc_method_train_defaults(ulc_method m) {
    ulc_method_train t = {.weight_decay = -1, .momentum = -1};
    if (m == ULC_METHOD_RFA) { /* the paper's: AdamW lr 5e-5, batch 128, 1 epoch */
        t.epochs = 1;
        t.batch_size = 128;
        t.lr = 5e-5;
        t.optimizer = ULC_OPTIM_ADAMW;
        return t;
    }
    ulc_unlearn_opts u;
    ulc_optim_opts optim;
    int epochs = 1, batch = 128;
    ulc_unlearn_defaults(m, &u, &optim, &epochs, &batch);
    t.epochs = epochs;
    t.batch_size = batch;
    t.lr = optim.lr;
    t.optimizer = optim.kind;
    t.weight_decay = optim.weight_decay;
    t.momentum = optim.momentum;
    return t;
}

ulc_status ulc_method_resolve(ulc_method m, const ulc_method_train *run, const ulc_pass_opts *o,
                              const char *where, ulc_method_hparams *out, ulc_ctx *ctx) {
    ulc_method_train def = ulc_method_train_defaults(m), t = def;
    unsigned set = run ? run->set : 0;
    if (m == ULC_METHOD_SSD && (set & ~(unsigned)(ULC_MT_BATCH | ULC_MT_WHAT)))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: method ssd trains nothing: of the training "
                        "settings only the batch size applies (not epochs, lr, optimizer, weight "
                        "decay or momentum)", where);
    if (set & ULC_MT_EPOCHS) t.epochs = run->epochs;
    if (set & ULC_MT_BATCH) t.batch_size = run->batch_size;
    if (set & ULC_MT_LR) t.lr = run->lr;
    else if (m == ULC_METHOD_NHL_KL) { /* docs/spec.md, "CLIP": chosen per what trains */
        const char *what = ulc_pass_opt_str(o, "train", NULL);
        int lora = what ? strcmp(what, "lora") == 0
                        : !(set & ULC_MT_WHAT) || run->what == ULC_TRAIN_LORA;
        t.lr = lora ? ULC_NHL_LR_LORA : ULC_NHL_LR_ALL;
    }
    if (set & ULC_MT_OPTIMIZER) t.optimizer = run->optimizer;
    t.weight_decay = (set & ULC_MT_WEIGHT_DECAY) ? run->weight_decay : -1;
    t.momentum = (set & ULC_MT_MOMENTUM) ? run->momentum : -1;
    t.epochs = ulc_pass_opt_i(o, "epochs", t.epochs);
    t.batch_size = ulc_pass_opt_i(o, "batch_size", t.batch_size);
    t.lr = ulc_pass_opt_num(o, "lr", t.lr);
    t.weight_decay = ulc_pass_opt_num(o, "weight_decay", t.weight_decay);
    t.momentum = ulc_pass_opt_num(o, "momentum", t.momentum);
    const char *opt = ulc_pass_opt_str(o, "optimizer", NULL);
    if (opt) t.optimizer = strcmp(opt, "sgd") == 0 ? ULC_OPTIM_SGD : ULC_OPTIM_ADAMW;
    if (t.momentum >= 0 && t.optimizer != ULC_OPTIM_SGD)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: only SGD has momentum (the optimizer is "
                        "adamw)", where);
    /* unset: the method's own when its optimizer is kept */
    if (t.weight_decay < 0)
        t.weight_decay = t.optimizer == def.optimizer && def.weight_decay >= 0 ? def.weight_decay
                         : t.optimizer == ULC_OPTIM_ADAMW                    ? 0.01
                                                                             : 0;
    if (t.momentum < 0)
        t.momentum = t.optimizer == def.optimizer && def.momentum >= 0 ? def.momentum : 0;
    *out = (ulc_method_hparams){t.epochs, t.batch_size, t.lr, t.weight_decay, t.momentum,
                                t.optimizer};
    return ULC_OK;
}

ulc_status ulc_method_check_task(ulc_method m, const ulc_pass_opts *o, int next_token,
                                 ulc_ctx *ctx) {
    int all_forget = strcmp(ulc_pass_opt_str(o, "mask", "own"), "all_forget") == 0;
    const char *no = ulc_unlearn_refusal(m, next_token, all_forget);
    if (!no && m == ULC_METHOD_DELETE && next_token &&
        strcmp(ulc_pass_opt_str(o, "retain", "none"), "all") == 0)
        no = "retain all (the retain rows as an anchor) is implemented for classifiers; a text "
             "model's delete trains on the forget rows (retain none)";
    if (no)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "method %s cannot unlearn on this model: %s",
                        ulc_method_name(m), no);
    return ULC_OK;
}

ulc_status ulc_method_check_model(ulc_method m, const ulc_pass_opts *o, ulc_model *model,
                                  ulc_ctx *ctx) {
    const char *sim = ulc_pass_opt_str(o, "similarity", NULL);
    if (m == ULC_METHOD_MEGU && sim) {
        double *S = NULL;
        ULC_TRY(ulc_megu_similarity_load(sim, ulc_unlearn_classes(model, NULL), &S, NULL, ctx));
        free(S);
    }
    if (m != ULC_METHOD_SSD) return ULC_OK;
    return ulc_ssd_check(model, ulc_pass_opt_str(o, "params", NULL), ctx);
}

int ulc_method_uses_lora(ulc_method m, const ulc_pass_opts *o) {
    if (m == ULC_METHOD_RFA) return 1;
    if (m == ULC_METHOD_RETRAIN || m == ULC_METHOD_SSD) return 0;
    return strcmp(ulc_pass_opt_str(o, "train", what_default(m)), "lora") == 0;
}

/* ---- running a method ------------------------------------------------------------------------------ */

void ulc_method_env_clear(ulc_method_env *env) {
    if (!env) return;
    ulc_train_stats_clear(&env->stats);
    memset(&env->stats, 0, sizeof env->stats);
    env->method = NULL;
    env->teacher_cache = NULL;
    memset(&env->ssd, 0, sizeof env->ssd);
    cJSON_Delete(env->detail);
    env->detail = NULL;
    ulc_train_stats_clear(&env->robust.stats);
    memset(&env->robust, 0, sizeof env->robust);
}

ulc_train_opts ulc_method_train_opts(const char *name, const ulc_method_hparams *h,
                                     const ulc_pass_ctx *pc) {
    ulc_train_opts o = ulc_train_defaults();
    o.optim = ulc_optim_defaults(h->optimizer);
    o.optim.lr = h->lr;
    o.optim.weight_decay = h->weight_decay;
    o.optim.momentum = h->momentum;
    o.epochs = (int)h->epochs;
    o.batch_size = (int)h->batch_size;
    o.seed = pc->seed;
    o.threads = pc->threads;
    o.quiet = pc->quiet;
    o.profile = pc->profile;
    o.progress = pc->progress ? pc->progress : stderr;
    o.stop = pc->stop;
    o.label = name;
    return o;
}

static ulc_status need_adapters(ulc_model *m, const char *name, ulc_ctx *ctx) {
    ULC_TRY(ulc_lora_records_load(m, ctx));
    for (size_t i = 0; i < m->lora.len; i++)
        if (!((const ulc_lora_record *)m->lora.items[i])->merged) return ULC_OK;
    return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: the model has no LoRA adapters to train "
                    "(put lora-inject before it, and lora-merge after: "
                    "lora-inject{placement=rfa},%s,lora-merge)", name, name);
}

static ulc_status run_rfa(ulc_model *m, const ulc_pass_opts *o, ulc_method_env *env,
                          const ulc_train_opts *to, ulc_ctx *ctx) {
    ulc_rfa_opts r = ulc_rfa_defaults();
    r.gamma = ulc_pass_opt_num(o, "gamma", r.gamma);
    r.norm = (ulc_rfa_norm)ulc_rfa_norm_parse(ulc_pass_opt_str(o, "norm", "l2sq"));
    r.alpha = ulc_pass_opt_num(o, "alpha", r.alpha);
    r.beta = ulc_pass_opt_num(o, "beta", r.beta);
    r.lambda = ulc_pass_opt_num(o, "lambda", r.lambda);
    r.mu = ulc_pass_opt_num(o, "mu", r.mu);
    r.input = env->input;
    r.output = env->output;
    r.next_token = env->next_token;
    return ulc_rfa_run(m, env->teacher, env->data, env->forget, to, &r, &env->stats, ctx);
}

/* DELETE's teacher logits through the cache (a key from the caller), computed on a miss. */
static ulc_status cached_teacher(ulc_method_env *env, const ulc_unlearn_opts *u, int threads,
                                 float **out, ulc_ctx *ctx) {
    /* the forget rows' logits, or every row's with retain all (a key of its own) */
    int64_t nf = 0, rows = env->data->n_rows;
    for (int64_t i = 0; i < rows; i++) nf += u->delete_retain || env->forget[i] != 0;
    uint8_t *all = u->delete_retain ? malloc((size_t)rows + 1) : NULL;
    if (u->delete_retain && !all) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (all) memset(all, 1, (size_t)rows);
    char key[128];
    snprintf(key, sizeof key, "%s%s", env->teacher_cache_key, all ? "-all" : "");
    int64_t C = ulc_unlearn_classes(env->teacher, u->output);
    if (C > 0 && (*out = ulc_cache_load(key, (size_t)(nf * C) * sizeof(float)))) {
        env->teacher_cache = "hit";
        free(all);
        return ULC_OK;
    }
    int64_t n = 0, c = 0;
    ulc_status s = ulc_teacher_logits(env->teacher, env->data, all ? all : env->forget, u->input,
                                      u->output, threads, out, &n, &c, ctx);
    free(all);
    ULC_TRY(s);
    env->teacher_cache = ulc_cache_store(key, *out, (size_t)(n * c) * sizeof(float)) == 0
                             ? "stored" : "unwritable";
    return ULC_OK;
}

static ulc_status run_unlearn(ulc_method method, ulc_model *m, const ulc_pass_opts *o,
                              ulc_method_env *env, const ulc_train_opts *to, ulc_ctx *ctx) {
    ulc_unlearn_opts u;
    ulc_optim_opts optim;
    int epochs, batch;
    ulc_unlearn_defaults(method, &u, &optim, &epochs, &batch);
    u.what = (ulc_train_what)ulc_train_what_parse(ulc_pass_opt_str(o, "train", what_default(method)));
    u.mask_all_forget = strcmp(ulc_pass_opt_str(o, "mask", "own"), "all_forget") == 0;
    u.temperature = ulc_pass_opt_num(o, "temperature", u.temperature);
    u.delete_retain = strcmp(ulc_pass_opt_str(o, "retain", env->next_token ? "none" : "all"),
                             "all") == 0;
    if (method == ULC_METHOD_SCRUB) {
        u.scrub_alpha = ulc_pass_opt_num(o, "alpha", u.scrub_alpha);
        u.scrub_gamma = ulc_pass_opt_num(o, "gamma", u.scrub_gamma);
    }
    if (method == ULC_METHOD_GRADDIFF || method == ULC_METHOD_NPO)
        u.retain_weight = ulc_pass_opt_num(o, "retain_weight", u.retain_weight);
    if (method == ULC_METHOD_GRADDIFF)
        u.retain_kl = strcmp(ulc_pass_opt_str(o, "retain", "ce"), "kl") == 0;
    if (method == ULC_METHOD_NPO) u.npo_beta = ulc_pass_opt_num(o, "beta", u.npo_beta);
    if (method == ULC_METHOD_SSD) {
        u.ssd_alpha = ulc_pass_opt_num(o, "alpha", u.ssd_alpha);
        u.ssd_lambda = ulc_pass_opt_num(o, "lambda", u.ssd_lambda);
        u.ssd_params = ulc_pass_opt_str(o, "params", NULL);
        u.ssd_result = &env->ssd;
    }
    if (method == ULC_METHOD_NHL_KL) {
        u.nhl_margin = ulc_pass_opt_num(o, "margin", u.nhl_margin);
        u.nhl_alpha_coarse = ulc_pass_opt_num(o, "alpha_coarse", u.nhl_alpha_coarse);
        u.nhl_alpha_fine = ulc_pass_opt_num(o, "alpha_fine", u.nhl_alpha_fine);
        u.coarse_output = env->coarse_output;
    }
    if (method == ULC_METHOD_MEGU) {
        u.megu_tau = ulc_pass_opt_num(o, "tau", u.megu_tau);
        u.megu_alpha = ulc_pass_opt_num(o, "alpha", u.megu_alpha);
        u.megu_noise_steps = (int)ulc_pass_opt_i(o, "noise_steps", u.megu_noise_steps);
        u.megu_noise_lr = ulc_pass_opt_num(o, "noise_lr", u.megu_noise_lr);
        u.megu_noise_lambda = ulc_pass_opt_num(o, "noise_lambda", u.megu_noise_lambda);
        u.megu_retain_rows = ulc_pass_opt_i(o, "retain_rows", u.megu_retain_rows);
        u.megu_similarity = ulc_pass_opt_str(o, "similarity", NULL);
        u.megu_text_similarity = env->clip_similarity;
        u.megu_detail = &env->detail;
    }
    u.next_token = env->next_token;
    u.forget_classes = env->forget_classes;
    u.n_forget_classes = env->n_forget_classes;
    u.input = env->input;
    u.output = env->output;
    float *cached = NULL;
    /* text: the teacher runs per batch (its [rows, T, V] logits are not kept, nor cached) */
    if (method == ULC_METHOD_DELETE && env->teacher_cache_key && !env->next_token)
        ULC_TRY(cached_teacher(env, &u, to->threads, &cached, ctx));
    u.teacher_logits = cached;
    ulc_status s = ulc_unlearn_run(m, env->teacher, env->data, env->forget, to, &u, &env->stats, ctx);
    free(cached);
    return s;
}

static ulc_status run_method(const char *name, ulc_model *m, const ulc_pass_opts *o,
                             ulc_pass_ctx *pc, ulc_ctx *ctx) {
    ulc_method method = (ulc_method)ulc_method_of_pass(name);
    ulc_method_env *env = pc->env;
    if (!env || !env->teacher || !env->data || !env->forget)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: unlearning needs the training data "
                        "and a forget set (a forget spec, or `ulc train --data D` with "
                        "--forget-classes or --forget-indices)", name);
    ULC_TRY(ulc_method_check_task(method, o, env->next_token, ctx));
    if (ulc_method_uses_lora(method, o)) ULC_TRY(need_adapters(m, name, ctx));
    char where[64];
    snprintf(where, sizeof where, "pass %s", name);
    ulc_method_hparams h;
    ULC_TRY(ulc_method_resolve(method, &env->train, o, where, &h, ctx));
    ulc_method_env_clear(env);
    env->method = name;
    env->hparams = h;
    ulc_train_opts to = ulc_method_train_opts(name, &h, pc);
    to.sam_rho = ulc_pass_opt_num(o, "sam_rho", 0); /* train.h: SAM (0: plain steps) */
    return method == ULC_METHOD_RFA ? run_rfa(m, o, env, &to, ctx)
                                    : run_unlearn(method, m, o, env, &to, ctx);
}

/* ---- the passes ------------------------------------------------------------------------------------ */

#define METHOD_PASS(ident, pname, table, text)                                                     \
    static ulc_status run_##ident(ulc_model *m, const ulc_pass_opts *o, ulc_pass_ctx *pc,          \
                                  ulc_ctx *ctx) {                                                  \
        return run_method(pname, m, o, pc, ctx);                                                   \
    }                                                                                              \
    static const ulc_pass k_pass_##ident = {.name = pname, .opts = table, .summary = text,       \
                                            .run = run_##ident};

METHOD_PASS(rfa_pass, "rfa", k_rfa_opts,
            "unlearn by residual feature alignment on LoRA adapters (shared/methods/rfa.md)")
METHOD_PASS(delete_pass, "delete", k_delete_opts,
            "unlearn by decoupled distillation on the forget rows (DELETE)")
METHOD_PASS(finetune_pass, "finetune", k_plain_opts, "baseline: fine-tune on the retain rows")
METHOD_PASS(neggrad_pass, "neggrad", k_plain_opts, "baseline: gradient ascent on the forget rows")
METHOD_PASS(random_label_pass, "random-label", k_plain_opts,
            "baseline: train the forget rows to random other labels")
METHOD_PASS(scrub_pass, "scrub", k_scrub_opts, "SCRUB: max on forget rows, min on retain rows")
METHOD_PASS(retrain_pass, "retrain", k_retrain_opts,
            "gold standard: re-initialise every weight and train on the retain rows")
METHOD_PASS(graddiff_pass, "graddiff", k_graddiff_opts,
            "baseline: gradient ascent on forget rows plus descent on paired retain rows")
METHOD_PASS(npo_pass, "npo", k_npo_opts,
            "negative preference optimisation on the forget rows, KL to the original on retain rows")
METHOD_PASS(nhl_pass, "nhl-kl", k_nhl_opts,
            "CLIP: forget fine concepts by a margin hinge, keeping their coarse classes and the "
            "other fine classes by KL to the original (knowledge-tracing unlearning)")
METHOD_PASS(ssd_pass, "ssd", k_ssd_opts,
            "selective synaptic dampening: no training; shrink the weights far more important to "
            "the forget rows (Fisher) than to the training data")
METHOD_PASS(megu_pass, "megu", k_megu_opts,
            "MeGU: relabel forget rows to similar classes, move them by optimised input noise, "
            "and finetune on them with retain rows")

static const ulc_pass *const k_method_passes[] = {
    &k_pass_rfa_pass,          &k_pass_delete_pass, &k_pass_finetune_pass, &k_pass_neggrad_pass,
    &k_pass_random_label_pass, &k_pass_scrub_pass,  &k_pass_retrain_pass,  &k_pass_graddiff_pass,
    &k_pass_npo_pass,          &k_pass_ssd_pass,    &k_pass_nhl_pass,      &k_pass_megu_pass,
    NULL};

int ulc_method_of_pass(const char *name) { return name ? ulc_method_parse(name) : -1; }

/* Passes that follow a method (robust.c), registered with the methods. */
static const ulc_pass *const k_after_method_passes[] = {&ulc_pass_robust, NULL};

ulc_status ulc_methods_register(ulc_ctx *ctx) {
    ULC_TRY(ulc_pass_register(k_method_passes, ctx));
    return ulc_pass_register(k_after_method_passes, ctx);
}
