/*
 * train.h — training: a training graph (autodiff.h builds it), a dataset of tensors, and the loop
 * that feeds batches to the graph, runs it and updates the parameters with an optimizer.
 *
 * The training graph is a model whose graph
 *   - reads the batch: one graph input per dataset column it uses (float32/int64 [B, ...]);
 *   - reads the parameters: one graph input per trained parameter (float32, the parameter's
 *     shape), bound each step to the trainer's own buffers, which the optimizer updates in place;
 *   - writes the loss (a float32 scalar) and one gradient per parameter (the parameter's shape).
 * Everything else (frozen weights) stays initializers, so the runtime packs them once.
 *
 * Determinism: shuffling draws from a counter-based generator seeded by `seed` and the epoch,
 * the runtime's reductions have a fixed order for a given thread count, and the optimizer runs
 * element by element: the same seed, data and threads give bit-identical parameters.
 */
#ifndef ULC_TRAIN_TRAIN_H
#define ULC_TRAIN_TRAIN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"
#include "ir/dataset.h"
#include "ir/graph.h"
#include "runtime/runtime.h"

/* ---- optimizers and schedules ------------------------------------------------------------- */

typedef enum ulc_optim_kind { ULC_OPTIM_SGD = 0, ULC_OPTIM_ADAMW } ulc_optim_kind;
/* Learning-rate schedules: the rate used by step s (0-based) of T steps, W = warmup_steps.
 * Every schedule first warms up linearly: lr * s / W for s < W (so step 0 of a warmup runs at
 * 0, as transformers' schedules and torch's LambdaLR do). Then:
 *   CONSTANT  lr                                   (transformers get_constant_schedule_with_warmup)
 *   LINEAR    lr * max(0, (T - s) / max(1, T - W)) (transformers get_linear_schedule_with_warmup:
 *             lr at the end of warmup, lr / (T - W) at the last step, 0 after it)
 *   STEP      lr * gamma^floor((s - W) / step_size) (torch StepLR's closed form, counted from the
 *             end of warmup; step_size >= 1) */
typedef enum ulc_lr_kind {
    ULC_LR_CONSTANT = 0,
    ULC_LR_LINEAR,
    ULC_LR_STEP
} ulc_lr_kind;

typedef struct ulc_optim_opts {
    ulc_optim_kind kind;
    double lr;
    double weight_decay; /* SGD: L2 added to the gradient (torch.optim.SGD); AdamW: decoupled */
    double momentum;     /* SGD */
    int nesterov;        /* SGD */
    double beta1, beta2, eps; /* AdamW (torch defaults 0.9, 0.999, 1e-8) */
    ulc_lr_kind schedule;
    long warmup_steps;
    long step_size;      /* ULC_LR_STEP */
    double gamma;        /* ULC_LR_STEP */
} ulc_optim_opts;

/* torch's defaults with lr 1e-3: SGD without momentum or decay; AdamW betas (0.9, 0.999),
 * eps 1e-8, weight_decay 1e-2. Schedule CONSTANT, no warmup, gamma 0.1, step_size unset (0). */
ulc_optim_opts ulc_optim_defaults(ulc_optim_kind kind);
/* The learning rate at step (0-based) of total_steps (the schedules above). */
double ulc_lr_at(const ulc_optim_opts *o, long step, long total_steps);

typedef struct ulc_optimizer ulc_optimizer;
/* State for n parameters of numel[i] float32 elements each. Checks the options (torch's rules:
 * lr, weight_decay, momentum, eps >= 0; betas in [0, 1); nesterov needs momentum; STEP needs
 * step_size >= 1 and gamma > 0) and fails with ULC_ERR_INVALID_ARG naming the bad one. */
ulc_status ulc_optimizer_create(const ulc_optim_opts *o, int n, const size_t *numel,
                                ulc_optimizer **out, ulc_ctx *ctx);
void ulc_optimizer_free(ulc_optimizer *opt);
/* One update with learning rate lr: params[i] -= ... from grads[i]; exactly torch.optim's
 * SGD/AdamW arithmetic (float32 state, same operation order and roundings as torch 1.13's CPU
 * kernels: see optim.c). grads must not overlap params. */
void ulc_optimizer_step(ulc_optimizer *opt, float *const *params, const float *const *grads,
                        double lr);
/* The same update run elsewhere (a GPU: runtime.h's ulc_session_device_optim): the scalars of
 * this step at learning rate lr, rounded to float32 as the loops take them; then
 * ulc_optimizer_advance counts the step. The moments live with the caller (opt holds none when
 * made with ulc_optimizer_create_stateless). */
void ulc_optimizer_device_args(const ulc_optimizer *opt, double lr, ulc_rt_optim *out);
void ulc_optimizer_advance(ulc_optimizer *opt);
/* 1 if the update keeps a first moment (SGD with momentum, AdamW) / a second (AdamW). */
int ulc_optimizer_has_m(const ulc_optimizer *opt);
int ulc_optimizer_has_v(const ulc_optimizer *opt);
/* An optimizer whose moments the caller keeps (ulc_optimizer_step must not be called). */
ulc_status ulc_optimizer_create_stateless(const ulc_optim_opts *o, int n, const size_t *numel,
                                          ulc_optimizer **out, ulc_ctx *ctx);

/* ---- the loop ------------------------------------------------------------------------------ */

/* The order in which epoch `epoch` (0-based) visits n rows, into perm[n]: a Fisher-Yates
 * shuffle of 0..n-1 driven by splitmix64 seeded from (seed, epoch). Same arguments, same
 * order, on every machine. */
void ulc_train_permutation(uint64_t seed, long epoch, int64_t n, int64_t *perm);

typedef struct ulc_train_graph {
    ulc_model *model;       /* the training model (see the top of this file) */
    int n_params;
    const char **param_inputs; /* graph input names of the parameters */
    const char **grad_outputs; /* gradient output of each parameter */
    const char *loss;          /* loss output name */
    int n_data;
    const char **data_inputs;  /* graph inputs read from the dataset ... */
    const char **data_cols;    /* ... and the dataset column each one reads */
    const char *main_input;    /* the model's main input (task input, else the one fed from
                                  "input"/"input_ids", else the only one); NULL if none */
} ulc_train_graph;

typedef struct ulc_train_opts {
    ulc_optim_opts optim;
    int epochs;              /* passes over the data (>= 1) */
    long max_steps;          /* 0: no limit; else stop after this many steps */
    int batch_size;
    int drop_last;           /* 0: the last partial batch is a smaller step */
    int shuffle;             /* 1: seeded permutation per epoch */
    uint64_t seed;
    int threads;             /* 0: every core */
    int quiet;               /* no progress bar */
    int profile;             /* time every op; the table goes to `progress` at the end */
    FILE *progress;          /* where the bar goes (stderr); drawn only when it is a TTY */
    const volatile sig_atomic_t *stop; /* set (by a SIGINT handler) to stop after this step */
    const char *label;       /* shown before the bar ("rfa", "train") */
    /* Optional, called before every step once the batch is bound: batch[i] is the tensor
     * bound to tg->data_inputs[i]. Binds what the data does not hold (a teacher's outputs,
     * method-specific targets) with ulc_session_set_input on s; the tensors must stay valid
     * until the step has run. */
    ulc_status (*before_step)(void *arg, ulc_session *s, const ulc_rt_tensor *const *batch,
                              int n, ulc_ctx *ctx);
    void *hook_arg;
    /* Optional, called after each optimizer step: step is 1-based, params[i] the parameters'
     * values after the update (read-only; n = tg->n_params), loss the step's loss. An error
     * stops the run with it (ulc_train_run returns it, naming the step). Uses hook_arg. */
    ulc_status (*after_step)(void *arg, long step, const float *const *params, int n,
                             float loss, ulc_ctx *ctx);
    /* Optional: gradients only. Called after each run in place of the optimizer step (none is
     * made, and the parameters never change): grads[i] is the batch's gradient of
     * tg->param_inputs[i] (read-only, checked finite, valid until the next step; n =
     * tg->n_params). For estimates over the data (methods/ssd.c's Fisher diagonal); an error
     * stops the run with it, naming the step. Uses hook_arg. */
    ulc_status (*on_grads)(void *arg, const float *const *grads, int n, ulc_ctx *ctx);
    /* Sharpness-aware minimisation (Foret et al. 2021; for unlearning: Fan et al., ICML 2025):
     * > 0: each step takes the gradient g, moves the parameters to θ + ρ·g/‖g‖ (‖g‖ over every
     * trained parameter together), runs the same batch again there, restores θ and updates it
     * with that second gradient (twice the graph runs per step; the step's loss is the first
     * run's). 0: plain steps. Not with on_grads. */
    double sam_rho;
} ulc_train_opts;

/* AdamW defaults, 1 epoch, batch 32, shuffled with seed 0, every core, progress on stderr,
 * label "train". */
ulc_train_opts ulc_train_defaults(void);

typedef struct ulc_train_stats {
    long steps;
    double first_loss, last_loss, mean_last_epoch_loss;
    double seconds;
    double samples_per_s;
    float *loss_curve;  /* malloc'd, one entry per step done */
    float *step_ms;     /* malloc'd, wall time of each step done: hook, run and update */
    int interrupted;    /* stopped by opts.stop: the caller must discard the parameters */
} ulc_train_stats;

/* Frees the curves (on failure too); accepts a zeroed struct. */
void ulc_train_stats_clear(ulc_train_stats *s);

/* Trains: for every epoch, batches of rows (in ulc_train_permutation's order with the seed, or
 * in file order without shuffle) gathered into one buffer per data input and bound with the
 * batch's row count as first dim — the last partial batch is a smaller step (its own plan)
 * unless drop_last; params[i] (float32, the shape param_inputs[i] declares — every dim fixed —
 * in/out) bound to param_inputs[i]; after each run the optimizer steps with the gradients at
 * ulc_lr_at(step, total steps). Data columns must be float32 or int64 and fit the input's
 * declared dtype, rank and fixed dims (messages name the file and column). A non-finite loss or
 * gradient stops with ULC_ERR_INVALID naming the step (1-based) and the parameter. opts.stop is
 * read after each step: set, the run ends with ULC_ERR_INTERRUPTED ("interrupted at step N")
 * and stats->interrupted = 1. Progress on opts.progress unless quiet: a bar redrawn in place
 * (label, epoch, step, smoothed loss, samples/s, ETA) when it is a terminal, else one line per
 * epoch (mean loss, seconds). On any failure the params hold a partial result: discard them. */
ulc_status ulc_train_run(const ulc_train_graph *tg, const ulc_dataset *data,
                         const ulc_train_opts *o, float *const *params, ulc_train_stats *stats,
                         ulc_ctx *ctx);

#endif
