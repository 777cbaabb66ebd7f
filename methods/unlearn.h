/*
 * unlearn.h — the unlearning methods besides RFA (rfa.h), on the shared trainer: DELETE and the
 * baselines users compare against. Each is a loss on the training graph and a choice of rows
 * (forget or retain) and of trained weights.
 *
 *   delete        forget rows only: KL(p ‖ student), batch mean, p = softmax of the frozen
 *                 teacher's logits with the row's own label (mask all_forget: every forget
 *                 class) set to −∞ (shared/methods/delete.md); teacher logits computed once.
 *                 The own label is masked only when its class is forgotten (no retain row has
 *                 it): a row of a kept class (sample forgetting) keeps the teacher's target.
 *                 retain all (classifiers' default): the retain rows train too, toward the
 *                 teacher's own outputs (an anchor for the classes DELETE keeps)
 *   finetune      retain rows only: cross-entropy to the labels
 *   neggrad       forget rows only: gradient ascent on cross-entropy (loss = −CE)
 *   random-label  forget rows only: cross-entropy to a seeded random label ≠ the row's own
 *   scrub         SCRUB (Kurmanji et al.): per epoch, a max pass over forget rows (loss = −KL(t‖s))
 *                 then a min pass over retain rows (KL(t‖s) + CE to the labels)
 *   retrain       the gold standard for small models: every weight re-initialised (seeded,
 *                 PyTorch's default init: kaiming-uniform a=√5 for Conv/Gemm/MatMul weights,
 *                 uniform ±1/√fan_in biases) and trained on retain rows with cross-entropy
 *   graddiff      pairs of a forget and a retain row: −CE(forget rows) + w·CE(retain rows);
 *                 with retain=kl (GA+KL) w·KL(original ‖ model) on the retain rows instead
 *   npo           Negative Preference Optimization (Zhang et al. 2024) on pairs:
 *                 (2/β)·mean_forget log(1 + (π(y|x)/π_ref(y|x))^β), π the row's probability
 *                 (the product over its next tokens; a classifier's: of its label), plus
 *                 w·KL(π_ref ‖ π) per position of the retain rows; π_ref the frozen teacher
 *                 (its log π_ref(y|x) of the forget rows computed once, before training)
 *   ssd           Selective Synaptic Dampening (Foster et al., AAAI 2024): no training. The
 *                 diagonal Fisher of every selected weight on all the training rows (F_D) and on
 *                 the forget rows (F_f) — per row batch, in row order, the squared gradient of
 *                 the batch's mean cross-entropy, averaged over the batches — and where
 *                 F_f,i > α·F_D,i the weight θ_i is scaled by min(λ·F_D,i / F_f,i, 1) (ssd.c)
 *   nhl-kl        knowledge-tracing unlearning for CLIP (Tan & Gong) on its zero-shot form: a
 *                 hinge pushing each forget exemplar's own fine class below the best other one
 *                 by a margin, plus KL to the original over the coarse classes and over the kept
 *                 fine classes on every exemplar (nhl.c)
 *   megu          MeGU, Machine-Guided Unlearning (Wang, Huang et al.): each forget row relabelled
 *                 to the ⌊Kτ⌋-th most likely class (1-based; never a forget class) of R = T·p —
 *                 T the column-normalised class similarity (a user's file, or the original's mean
 *                 softmax per class), p the original's softmax with the row's own label zeroed —
 *                 and moved by α·N⁺(y^p) + (1−α)·N⁻(y), input noises optimised on the frozen
 *                 original toward (N⁺) and away from (N⁻) a class; then cross-entropy on those
 *                 rows and up to retain_rows retain rows (megu.c)
 *
 * graddiff and npo pair rows: every epoch the forget rows in a seeded order, each with the next
 * row of a seeded cycle through the retain rows; a step reads batch_size pairs.
 *
 * Text models (next_token: logits [N, T, V], position t scored against input_ids[t+1] where
 * attention_mask keeps it; lm.c): every loss is per position, averaged over the scored positions
 * of its rows. delete: at each position of a forget row, KL(p ‖ student) with p the teacher's
 * softmax (over the temperature) with the true next token at −∞; the teacher runs on every
 * batch (no cached logits). retrain: transformers' GPT-2 initialisation (N(0, 0.02), c_proj
 * N(0, 0.02/√(2·n_layer)), biases 0, LayerNorm 1/0). random-label, scrub and delete with mask
 * all_forget do not apply (ulc_unlearn_refusal says why; the job refuses them before any work).
 *
 * What trains (`train`): every float32 weight of the model ("all"), all but the classifier (the
 * last linear layer before the output; a text model's head, and with it a tied input embedding),
 * or LoRA adapters (placed as RFA places them).
 */
#ifndef ULC_METHODS_UNLEARN_H
#define ULC_METHODS_UNLEARN_H

#include <stdint.h>

#include "common/status.h"
#include "ir/graph.h"
#include "train/train.h"

struct cJSON; /* megu's report object (cjson/cJSON.h) */

typedef enum ulc_method {
    ULC_METHOD_RFA = 0,
    ULC_METHOD_DELETE,
    ULC_METHOD_FINETUNE,
    ULC_METHOD_NEGGRAD,
    ULC_METHOD_RANDOM_LABEL,
    ULC_METHOD_SCRUB,
    ULC_METHOD_RETRAIN,
    ULC_METHOD_GRADDIFF,
    ULC_METHOD_NPO,
    ULC_METHOD_SSD,
    ULC_METHOD_NHL_KL,
    ULC_METHOD_MEGU,
    ULC_METHOD_COUNT_
} ulc_method;

/* "rfa", "delete", "finetune", "neggrad", "random-label", "scrub", "retrain", "graddiff", "npo",
 * "ssd", "nhl-kl", "megu" → method; -1. */
int ulc_method_parse(const char *s);
const char *ulc_method_name(ulc_method m);

typedef enum ulc_train_what {
    ULC_TRAIN_ALL = 0,
    ULC_TRAIN_ALL_BUT_CLASSIFIER,
    ULC_TRAIN_LORA
} ulc_train_what;

/* nhl-kl's default learning rates (Adam, 8 epochs, batch 32, the rest of its defaults): for
 * LoRA adapters and for every weight of the tower. The paper's 1e-7 trains every weight of CLIP
 * ViT-L/14; these are the best Q-U of a sweep on the shipped CLIP (docs/results.md, "nhl-kl's
 * learning rate"): LoRA forgets from 1e-4 and holds Q-U >= 99.4 over 3e-4..1e-2, every weight
 * from 3e-5, >= 99 over 1e-4..1e-3, best at 3e-4. */
#define ULC_NHL_LR_LORA 1e-3
#define ULC_NHL_LR_ALL 3e-4

/* "all", "all_but_classifier", "lora" → what; -1. */
int ulc_train_what_parse(const char *s);

/* What ssd dampened: weight elements and tensors, of those it could. */
typedef struct ulc_ssd_result {
    long long dampened, weights;
    int tensors, of_tensors;
} ulc_ssd_result;

typedef struct ulc_unlearn_opts {
    ulc_method method;
    ulc_train_what what;
    int mask_all_forget;        /* delete: mask every forget class, not only the row's own */
    const int64_t *forget_classes; /* delete with mask_all_forget: the classes */
    int n_forget_classes;
    double temperature;         /* delete: softmax temperature of the teacher only (1) */
    int delete_retain;          /* delete: the retain rows join, their target the teacher's own
                                   distribution (an anchor; the paper trains on forget rows only) */
    double scrub_alpha;         /* scrub: weight of the KL on retain rows (1) */
    double scrub_gamma;         /* scrub: weight of the CE on retain rows (1) */
    double npo_beta;            /* npo: β (0.1) */
    double retain_weight;       /* graddiff: weight of the retain term; npo: of the retain KL (1) */
    int retain_kl;              /* graddiff: the retain term is the KL to the original (GA+KL),
                                   not the CE to the labels */
    double ssd_alpha;           /* ssd: selection weighting α (10): F_f > α·F_D is dampened */
    double ssd_lambda;          /* ssd: dampening constant λ (1): θ·min(λ·F_D / F_f, 1) */
    const char *ssd_params;     /* ssd: '|'-separated globs of the weights it may dampen; NULL:
                                   every float weight (not BatchNorm's running statistics) */
    ulc_ssd_result *ssd_result; /* ssd: where its counts go (NULL: nowhere) */
    double nhl_margin;          /* nhl-kl: the hinge's margin m (2) */
    double nhl_alpha_coarse;    /* nhl-kl: α_c, weight of the KL over the coarse classes (10) */
    double nhl_alpha_fine;      /* nhl-kl: α_f, weight of the KL over the kept fine classes (20) */
    const char *coarse_output;  /* nhl-kl: the output of the coarse classes' logits */
    double megu_tau;            /* megu: the perturbing label is the ⌊K·tau⌋-th largest (0.3) */
    double megu_alpha;          /* megu: weight of the positive noise in the mix (0.7) */
    int megu_noise_steps;       /* megu: Adam steps per noise (25) */
    double megu_noise_lr;       /* megu: their learning rate (0.1) */
    double megu_noise_lambda;   /* megu: weight of mean(N²) in the noise losses (0.1) */
    long long megu_retain_rows; /* megu: retain rows finetuned on, at most (10000) */
    const char *megu_similarity; /* megu: the K×K similarity's JSON file; NULL: the model's */
    const double *megu_text_similarity; /* megu without a file on a CLIP request: the K×K from
                                           CLIP's class text embeddings (jobs/clip.h) */
    struct cJSON **megu_detail; /* megu: where its report object goes (the caller deletes it);
                                   NULL: nowhere */
    int next_token;             /* a text model: every loss per next-token position */
    const char *input, *output; /* model input/output; NULL: the only ones */
    /* delete: teacher logits of the forget rows, in row order ([n_forget, C]); NULL: computed
     * here. The caller caches them (tools/forget.c: zstd, keyed by model and data hashes). */
    const float *teacher_logits;
} ulc_unlearn_opts;

/* The method's defaults: optimizer (delete: SGD momentum 0.9, weight decay 5e-4; the others
 * AdamW), lr and epochs that work on the embedded digits default, what trains. */
void ulc_unlearn_defaults(ulc_method m, ulc_unlearn_opts *u, ulc_optim_opts *optim, int *epochs,
                          int *batch_size);

/* Runs method u->method (not RFA: see rfa.h) on model (modified in place: its trained weights,
 * or its LoRA adapters when u->what is LORA — the caller injects them and merges after). */
ulc_status ulc_unlearn_run(ulc_model *model, const ulc_model *teacher, const ulc_dataset *data,
                           const uint8_t *forget, const ulc_train_opts *o,
                           const ulc_unlearn_opts *u, ulc_train_stats *stats, ulc_ctx *ctx);

/* Why method m cannot run on a model whose task is next-token prediction (next_token) or
 * classification, with delete's mask all_forget or not; NULL when it can. For the checks before
 * any work (methods/method.h ulc_method_check_task). */
const char *ulc_unlearn_refusal(ulc_method m, int next_token, int mask_all_forget);

/* MeGU's similarity file: a JSON list of K lists of K finite numbers >= 0 into *S ([K, K],
 * malloc'd) and *K (when not NULL); want_k > 0: K must be it. ULC_ERR_INVALID naming the file
 * and the row/column at fault. */
ulc_status ulc_megu_similarity_load(const char *path, int64_t want_k, double **S, int64_t *K,
                                    ulc_ctx *ctx);

/* The frozen teacher's logits on the flagged rows ([n_flagged, classes] float32, malloc'd), for
 * DELETE and its cache, and the robust pass. */
ulc_status ulc_teacher_logits(const ulc_model *teacher, const ulc_dataset *data,
                              const uint8_t *forget, const char *input, const char *output,
                              int threads, float **logits, int64_t *n, int64_t *classes,
                              ulc_ctx *ctx);

/* The same for several outputs of one run over the rows: logits[k] ([n, classes[k]]) of
 * outputs[k], k < n_out (at most ULC_TEACHER_MAX_OUT). */
#define ULC_TEACHER_MAX_OUT 4
ulc_status ulc_teacher_outputs(const ulc_model *teacher, const ulc_dataset *data,
                               const uint8_t *rows, const char *input,
                               const char *const *outputs, int n_out, int threads,
                               float **logits, int64_t *n, int64_t *classes, ulc_ctx *ctx);

#endif
