/*
 * method.h — unlearning methods as registered passes.
 *
 * Each method (rfa, delete, finetune, neggrad, random-label, scrub, retrain, graddiff, npo, ssd,
 * nhl-kl, megu)
 * is a pass with typed options (its own, and the training settings every method takes: epochs,
 * batch_size, lr, weight_decay, momentum, optimizer; ssd, which trains nothing, takes only
 * batch_size). What a method reads beyond the graph — the frozen teacher, the training rows,
 * which of them to forget — travels in a ulc_method_env that the caller hangs on the pass
 * context; the method leaves its training statistics there.
 *
 *     ulc_methods_register(ctx);                           // once: adds the passes
 *     ulc_method_env env = {.teacher = original, .data = &train.d, .forget = flags,
 *                           .input = "input", .output = "logits"};
 *     ulc_pass_ctx pc = ulc_pass_ctx_defaults();
 *     pc.env = &env;
 *     ulc_pipeline_parse("lora-inject{placement=rfa,alpha=32},rfa{gamma=0.5},lora-merge", &p, ctx);
 *     ulc_pipeline_run(p, model, &(ulc_pipeline_opts){.pass_ctx = &pc}, ctx);
 *     ... env.stats (steps, losses), env.method ...
 *     ulc_method_env_clear(&env);
 *
 * Training settings resolve in three layers: the method's defaults (ulc_method_train_defaults),
 * then the run's (env.train: a spec's "train" object, `ulc train`'s flags), then the pass's own
 * options. An unset weight decay or momentum is the method's when its optimizer is kept (AdamW:
 * 0.01, SGD: 0 otherwise), as docs/spec.md says.
 */
#ifndef ULC_METHODS_METHOD_H
#define ULC_METHODS_METHOD_H

#include <stdint.h>

#include "common/status.h"
#include "ir/dataset.h"
#include "ir/graph.h"
#include "methods/unlearn.h"
#include "passes/pass.h"
#include "train/train.h"

/* Training settings a run may give; a field counts only when its bit is in `set`. */
enum {
    ULC_MT_EPOCHS = 1 << 0,
    ULC_MT_BATCH = 1 << 1,
    ULC_MT_LR = 1 << 2,
    ULC_MT_WEIGHT_DECAY = 1 << 3,
    ULC_MT_MOMENTUM = 1 << 4,
    ULC_MT_OPTIMIZER = 1 << 5,
    ULC_MT_WHAT = 1 << 6
};
typedef struct ulc_method_train {
    unsigned set;
    long epochs, batch_size;
    double lr, weight_decay, momentum;
    ulc_optim_kind optimizer;
    int what; /* ULC_TRAIN_*: what the method trains, when its own option does not say (a
               * default may depend on it: nhl-kl's learning rate) */
} ulc_method_train;

/* The resolved settings of one method run (what the report's hyperparameters show). */
typedef struct ulc_method_hparams {
    long epochs, batch_size;
    double lr, weight_decay, momentum; /* momentum: SGD's (0 for AdamW) */
    ulc_optim_kind optimizer;
} ulc_method_hparams;

/* What the robust pass did (robust.c), when it ran after the method: its resolved settings and
 * its own training statistics (the method's stay in ulc_method_env.stats). */
typedef struct ulc_robust_result {
    int ran;                     /* the pass ran */
    double alpha, temperature;   /* noise fraction, distillation temperature */
    const char *teacher;         /* whose outputs were distilled: "unlearned" or "original" */
    ulc_method_hparams hparams;  /* the distillation's training settings */
    long retain_rows;            /* rows distilled on */
    double teacher_seconds;      /* the teacher's logits on the retain rows */
    double seconds;              /* the whole pass: teacher logits, noise, distillation */
    ulc_train_stats stats;       /* the distillation's steps, losses, seconds */
} ulc_robust_result;

struct ulc_method_env {
    /* inputs (the caller's; the method only reads them) */
    const ulc_model *teacher;    /* the frozen original: same interface as the model */
    const ulc_dataset *data;     /* training rows; the fed columns named after the model inputs */
    const uint8_t *forget;       /* data->n_rows flags: 1 for a row to forget */
    const int64_t *forget_classes; /* class forgetting: the classes (delete's all_forget mask) */
    int n_forget_classes;
    const char *input, *output;  /* the main input and the scored output (NULL: the only ones) */
    int next_token;              /* a text model: task loss on next-token prediction */
    ulc_method_train train;      /* the run's training settings */
    /* delete: the cache key of the teacher's logits on the forget rows (io/cache.h; the caller
     * makes it name every file and choice they depend on); NULL: no cache */
    const char *teacher_cache_key;
    /* results (the method's; ulc_method_env_clear frees them) */
    const char *method;          /* the last method that ran (its pass name) */
    ulc_method_hparams hparams;  /* its resolved training settings */
    ulc_train_stats stats;       /* its training statistics */
    const char *teacher_cache;   /* delete with a key: "hit", "stored" or "unwritable" */
    ulc_ssd_result ssd;          /* ssd: what it dampened (zero for the other methods) */
    /* a CLIP request (jobs/clip.h): the output of the coarse classes' logits, or NULL; megu's
     * similarity from CLIP's class text embeddings (K×K, row-major), or NULL */
    const char *coarse_output;
    const double *clip_similarity;
    /* the method's own report object (megu's: similarity, perturbing labels, noises), or NULL;
     * ulc_method_env_clear deletes it (a caller that keeps it sets this to NULL) */
    struct cJSON *detail;
    /* the robust pass's results (robust.c; ulc_method_env_clear frees them) */
    ulc_robust_result robust;
};

/* The robust pass (robust.c): UNDO — noise the unlearned model toward a fresh initialisation,
 * then distil its own outputs back on the retain rows. Registered with the methods; not a
 * method itself (it follows one). */
extern const ulc_pass ulc_pass_robust;

/* Registers the method passes (idempotent, thread-safe). */
ulc_status ulc_methods_register(ulc_ctx *ctx);

/* Frees the results (accepts NULL). */
void ulc_method_env_clear(ulc_method_env *env);

/* The method whose pass is called name (-1 if none). */
int ulc_method_of_pass(const char *name);

/* A method's default training settings (the paper's for rfa and delete; the embedded digits
 * default's for the baselines: unlearn.h). weight_decay/momentum < 0: "the optimizer's". */
ulc_method_train ulc_method_train_defaults(ulc_method m);

/* Resolves the settings of method m: defaults, then run, then pass options o (NULL: none).
 * nhl-kl's default learning rate is ULC_NHL_LR_LORA when it trains LoRA adapters (its default:
 * o's "train", else run->what with ULC_MT_WHAT) and ULC_NHL_LR_ALL when it trains weights.
 * Momentum with AdamW is refused (ULC_ERR_INVALID_ARG naming `where`), and so is any run
 * setting but the batch size for ssd. */
ulc_status ulc_method_resolve(ulc_method m, const ulc_method_train *run, const ulc_pass_opts *o,
                              const char *where, ulc_method_hparams *out, ulc_ctx *ctx);

/* Whether method m with its options o (NULL: none) applies to the model: next_token for a text
 * model (next-token logits), else a classifier. ULC_ERR_UNSUPPORTED naming the method and why
 * (random-label and scrub on text, delete's mask all_forget on text). Callers check before any
 * work (jobs/forget.c, once the model's interface is known); the pass checks again. */
ulc_status ulc_method_check_task(ulc_method m, const ulc_pass_opts *o, int next_token,
                                 ulc_ctx *ctx);

/* Whether method m with its options o fits the model itself, before any work: ssd's params
 * globs must select a weight, megu's similarity file must hold a K×K matrix for the model's K
 * classes (ULC_ERR_INVALID naming them); every other method fits. */
ulc_status ulc_method_check_model(ulc_method m, const ulc_pass_opts *o, ulc_model *model,
                                  ulc_ctx *ctx);

/* The trainer's options for one run of the pass called name with settings h, on the pass
 * context's seed, threads, progress and stop flag (the methods' runs and the robust pass's). */
ulc_train_opts ulc_method_train_opts(const char *name, const ulc_method_hparams *h,
                                     const ulc_pass_ctx *pc);

/* Whether method m trains LoRA adapters with its options o (rfa always; the others with
 * train=lora): the pipeline then needs lora-inject before it and lora-merge after. */
int ulc_method_uses_lora(ulc_method m, const ulc_pass_opts *o);

#endif
