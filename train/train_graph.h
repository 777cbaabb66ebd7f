/*
 * train_graph.h — from a model to its training graph (train.h describes the result):
 * which values are trained, which dataset columns feed which inputs, the loss, and autodiff.
 *
 *     ulc_train_task t = {.loss = ULC_LOSS_CROSS_ENTROPY};       // input/output: the only ones
 *     ulc_train_graph tg;
 *     ulc_train_graph_build(model, &data, &t, 128, &tg, ctx);     // model: PARAMs flagged
 *     float **p = ...; ulc_train_graph_params(model, &tg, p)      // their current values
 *     ulc_train_run(&tg, &data, &opts, p, &stats, ctx);
 *     ulc_train_graph_write_back(model, &tg, p, ctx);             // only after success
 *     ulc_train_graph_clear(&tg);
 *
 * The trained values are the initializers flagged ULC_VALUE_PARAM (lora-inject flags its
 * adapters; ulc_mark_params flags by name): float32, or float16/bfloat16 weights, which train as
 * float32 master copies (exact widening) and are rounded back into their dtype once, at
 * write-back (to nearest even, as torch rounds).
 */
#ifndef ULC_TRAIN_TRAIN_GRAPH_H
#define ULC_TRAIN_TRAIN_GRAPH_H

#include "common/status.h"
#include "ir/graph.h"
#include "train/loss.h"
#include "train/train.h"

/* The training graph's input holding the loss target: dataset labels ("label" column, for
 * CROSS_ENTROPY) or values ("target", MSE) are batched into it by the loop; for KL and
 * SOFT_CROSS_ENTROPY it holds probabilities shaped like the output, which a before_step hook
 * binds (a teacher's). */
#define ULC_TRAIN_TARGET "ulc.train.target"

/* What a custom loss (ulc_train_task.custom_loss) builds with: the training graph once the
 * parameters and the model's own inputs are bound. */
typedef struct ulc_tg {
    ulc_graph *g;
    int64_t opset;
    int batch;                 /* the batch the shapes below were inferred at */
    ulc_value *output;         /* the model output the task chose */
    const struct ulc_analysis *shapes; /* forward values' shapes at `batch` (ulc_analysis_get) */
    struct tg_priv *priv;
} ulc_tg;

/* A new batch-shaped graph input (dims[0] is replaced by the batch, which stays symbolic in the
 * graph). With `column`, the loop batches that dataset column into it; without, a before_step
 * hook must bind it every step. NULL on failure (ctx says why). */
ulc_value *ulc_tg_input(ulc_tg *b, const char *name, int dtype, int rank, const int64_t *dims,
                        const char *column, ulc_ctx *ctx);
/* A new scalar float32 input bound by the hook. */
ulc_value *ulc_tg_scalar_input(ulc_tg *b, const char *name, ulc_ctx *ctx);
/* The next-token task's logits and target, as the built-in next_token loss makes them: *z =
 * the output [B, T, V] without its last position ([B, T-1, V]), *target = the main input
 * (int64 input_ids [B, T]) shifted by one ([B, T-1]), -100 where attention_mask (when the model
 * reads one) is 0 at the next position. */
ulc_status ulc_tg_next_token(ulc_tg *b, ulc_value **z, ulc_value **target, ulc_ctx *ctx);

typedef struct ulc_train_task {
    const char *input;   /* model input fed from the data column "input" (or "input_ids"); NULL:
                            the model's only input that no same-named column feeds */
    const char *output;  /* model output the loss reads; NULL: the only one (the first of
                            several when it is float) */
    ulc_loss_kind loss;  /* CROSS_ENTROPY reads the "label" column, MSE "target"; KL and
                            SOFT_CROSS_ENTROPY read ULC_TRAIN_TARGET from a hook; next_token
                            reads input_ids */
    int next_token;      /* language modelling: logits[:, t] predict input_ids[:, t+1]; positions
                            whose next token is masked out (attention_mask 0) count for nothing */
    /* Instead of `loss`: builds the loss on the training graph (adding its inputs with
     * ulc_tg_input) and returns it in *loss. */
    ulc_status (*custom_loss)(void *arg, ulc_tg *b, ulc_value **loss, ulc_ctx *ctx);
    void *custom_arg;
    /* Values the custom loss reads by name (RFA's features: the adapted modules' outputs): the
     * training graph's rewrites keep them (no BatchNormalization is folded across them). */
    const char *const *keep;
    int n_keep;
} ulc_train_task;

ulc_status ulc_train_graph_build(const ulc_model *m, const ulc_dataset *d,
                                 const ulc_train_task *t, int batch, ulc_train_graph *tg,
                                 ulc_ctx *ctx);
void ulc_train_graph_clear(ulc_train_graph *tg);

/* malloc'd float32 copies of the parameters' current values (vals[i] for tg->param_inputs[i]);
 * free with ulc_train_graph_free_params. */
ulc_status ulc_train_graph_params(const ulc_model *m, const ulc_train_graph *tg, float ***vals,
                                  ulc_ctx *ctx);
void ulc_train_graph_free_params(const ulc_train_graph *tg, float **vals);
/* Replaces each parameter's initializer data in m by vals[i] (copied; rounded once into the
 * weight's dtype when it is a half one). */
ulc_status ulc_train_graph_write_back(ulc_model *m, const ulc_train_graph *tg,
                                      float *const *vals, ulc_ctx *ctx);

/* Flags as ULC_VALUE_PARAM every float32, float16 or bfloat16 initializer of m that is a model
 * weight (not a ULC_VALUE_CONSTANT, not ULC_VALUE_FROZEN) whose name matches one of the
 * '|'-separated globs; returns the count. */
int ulc_mark_params(ulc_model *m, const char *globs);

/* Replaces v's initializer by vals (float32, v's element count) in v's own dtype: copied for
 * float32, rounded once to nearest even for float16 / bfloat16. */
ulc_status ulc_param_set_f32(ulc_graph *g, ulc_value *v, const float *vals, ulc_ctx *ctx);

#endif
