/*
 * forget_eval.h — the unlearning metrics that run models (docs/metrics.md): class scores over a
 * data file, per-layer feature distance and linear CKA against the original, and the relearning
 * probe. `ulc eval --forget` (jobs/eval.c) and the main command's report (jobs/forget.c) both
 * use these, so the two give the same numbers for the same models, rows and settings.
 *
 *     ulc_fe_rows d = {.path = "train.safetensors", .x = input, .y = label, .forget = flags,
 *                      .rows = n};
 *     cJSON *report = cJSON_CreateObject();
 *     ulc_fe_features(unlearned, "out.onnx", original, "in.onnx", &so, "input", NULL, &d,
 *                     report, ctx);
 *     ulc_fe_relearn(unlearned, "out.onnx", &so, "input", "logits", &d, 10, 1e-3, 0, report, ctx);
 *
 * The models are only read: the probe trains shallow clones (ir/clone.h).
 */
#ifndef ULC_EVAL_FORGET_EVAL_H
#define ULC_EVAL_FORGET_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "common/status.h"
#include "ir/graph.h"
#include "io/data.h"
#include "runtime/runtime.h"
#include "eval/lm_eval.h"

#define ULC_FE_FEAT_ROWS 256 /* Df and Dr rows each for feature distance and CKA */
#define ULC_FE_MAX_LAYERS 512
#define ULC_FE_RELEARN_LR 1e-3 /* the relearning probe's default SGD learning rate */

/* The rows of one data file. */
typedef struct ulc_fe_rows {
    const char *path;      /* the file, for messages */
    const ulc_tensor *x;   /* the model input's column [N, ...] */
    const ulc_tensor *y;   /* labels, int64 [N] */
    const uint8_t *forget; /* N flags: 1 for a forget row (Df), 0 for a retain row (Dr) */
    int64_t rows;
    const ulc_data *data;  /* text models: the bound data (every fed column), or NULL */
    const ulc_iface *f;    /* text models: the interface (f->next_token set), or NULL */
} ulc_fe_rows;

/* Class scores [n, classes] of model m over rows idx[0..n) of x (rows 0..n when idx is NULL),
 * in ulc_rows_run's batches (runtime/runtime.h). The output out_name must be float32 [rows, C]; *classes is set
 * (or, when > 0 on entry, must match). *z is malloc'd. */
ulc_status ulc_fe_logits(const ulc_model *m, const char *mpath, const ulc_session_opts *so,
                         const char *in_name, const char *out_name, const ulc_tensor *x,
                         const char *xpath, const int64_t *idx, int64_t n, int64_t *classes,
                         float **z, ulc_ctx *ctx);

/* Which layers the features compare when not every one: a CLIP request's trained tower
 * (jobs/clip.h, ulc_clip_feature_layers). */
typedef struct ulc_fe_layers {
    const char *weights; /* globs (common/glob.h): the Conv/Gemm/MatMul outputs computed from
                          * the model's input whose weight (input 1) is an initializer of these
                          * names, or a Transpose of one (transformers' linear layers) */
    int last;            /* the last `last` of those in node order (0: all) */
    const char *output;  /* a value compared after them (the scored class scores), or NULL */
} ulc_fe_layers;

/* Adds "features": {"rows_forget", "rows_retain", "layers": [{"name", "features", "l1_forget",
 * "l1_retain", "cka_forget", "cka_retain"}]} to into: the layers of orig that sel picks, else
 * (sel NULL or sel->weights NULL) every Conv/Gemm/MatMul output of orig whose weight is an
 * initializer, on the first ULC_FE_FEAT_ROWS Df and Dr rows, model against orig (the names must
 * exist in model). CKA is null where a side is constant. */
ulc_status ulc_fe_features(const ulc_model *model, const char *mpath, const ulc_model *orig,
                           const char *opath, const ulc_session_opts *so, const char *in_name,
                           const ulc_fe_layers *sel, const ulc_fe_rows *d, cJSON *into,
                           ulc_ctx *ctx);

/* Adds "relearn": {"steps", "batch_size", "lr", "forget_rows", "forget_acc": [steps + 1],
 * "loss": [steps]} to into: a copy of model fine-tuned for `steps` steps of plain SGD (lr,
 * batches of min(32, |Df|) shuffled with seed) with cross-entropy on the Df rows, training the
 * float32 weights and biases of Conv/Gemm/MatMul and the scale and shift of normalisations;
 * forget_acc[0] is Df accuracy before the first step, forget_acc[s] after step s. For a text
 * model (d->f->next_token, d->data set) the loss is next-token cross-entropy on every fed
 * column of the Df rows, forget_acc is Df next-token accuracy and "forget_ppl": [steps + 1] is
 * Df perplexity alongside. "steps_to_50" and "steps_to_90" are the first s with forget_acc[s]
 * >= 0.5 (0.9), or null when no point of the curve reaches it ("not within `steps`"). */
ulc_status ulc_fe_relearn(const ulc_model *model, const char *mpath, const ulc_session_opts *so,
                          const char *in_name, const char *out_name, const ulc_fe_rows *d,
                          long steps, double lr, uint64_t seed, cJSON *into, ulc_ctx *ctx);

/* The models compared: model (the unlearned one), orig (the original, or NULL), ref (a
 * reference, e.g. retrained without Df, or NULL), each with its path for messages. */
typedef struct ulc_fe_models {
    const ulc_model *model, *orig, *ref;
    const char *model_path, *orig_path, *ref_path;
} ulc_fe_models;

/* Adds "activation_distance": {"model", "original" (with orig)} to into: the mean L2 distance
 * of the softmax outputs of model (and orig) to ref's on the Df rows (docs/metrics.md). */
ulc_status ulc_fe_activation_distance(const ulc_fe_models *ms, const ulc_session_opts *so,
                                      const char *in_name, const char *out_name,
                                      const ulc_fe_rows *d, cJSON *into, ulc_ctx *ctx);

/* ulc_fe_relearn on ms->model into into, and with ms->ref the same probe (the same rows, seed,
 * lr, steps and batches) on the reference, added as "relearn"."reference": {"forget_acc",
 * "loss", "forget_ppl" (text), "steps_to_50", "steps_to_90"}. */
ulc_status ulc_fe_relearn_models(const ulc_fe_models *ms, const ulc_session_opts *so,
                                 const char *in_name, const char *out_name, const ulc_fe_rows *d,
                                 long steps, double lr, uint64_t seed, cJSON *into, ulc_ctx *ctx);

/* The recovery line of a "relearn" object, e.g. "relearning probe: steps until Df accuracy >=
 * 50%: 3, >= 90%: 5 (reference: not within 10, not within 10)". */
void ulc_fe_relearn_print(FILE *out, const cJSON *relearn);

/* What ulc_fe_extra computes beyond accuracy and the attacks (the spec's "eval" key). */
typedef struct ulc_fe_opts {
    int features;         /* per-layer feature distance and CKA of model against orig */
    ulc_fe_layers layers; /* which layers (weights NULL: every Conv/Gemm/MatMul) */
    long relearn_steps;   /* the relearning probe's steps (0: no probe) */
    double relearn_lr;    /* its SGD learning rate */
    uint64_t seed;        /* its batch order */
    ulc_session_opts so;  /* sessions for every model run */
    ulc_lm_opts lm;       /* text models: Min-K% and extraction settings */
} ulc_fe_opts;

/* The main report's extra metrics, in its order: "features" (o->features; needs orig and a
 * model fed one input), then for classifiers with labels (next_token 0, d->y set, one fed input)
 * "relearn" (o->relearn_steps > 0; with ms->ref its "reference" too) and "activation_distance"
 * (with ms->ref; needs orig); for
 * text models (next_token, d->data and d->f set) "extraction": {"prefix", "max_tokens",
 * "max_rows", "before" (orig's, when given), "after" (model's)} (o->lm.extract_rows > 0) and the
 * text "relearn". */
ulc_status ulc_fe_extra(const ulc_fe_models *ms, const ulc_fe_opts *o, const char *in_name,
                        const char *out_name, int next_token, const ulc_fe_rows *d, cJSON *into,
                        ulc_ctx *ctx);

#endif
