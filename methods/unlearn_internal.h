/*
 * unlearn_internal.h — what DELETE and the baselines share (unlearn.c): row subsets of the data,
 * the losses they train with, the trainer call, and the one file each method's run lives in
 * (delete.c, scrub.c, baselines.c, ssd.c). Not for use outside methods/.
 */
#ifndef ULC_METHODS_UNLEARN_INTERNAL_H
#define ULC_METHODS_UNLEARN_INTERNAL_H

#include <stdint.h>

#include "ir/dataset.h"
#include "methods/unlearn.h"

#define TEACHER_COL "ulc.teacher" /* the teacher's logits as one more column of a subset */


/* What a phase optimises: CE to the labels, −CE, DELETE's KL to the masked teacher, −KL to the
 * teacher, KL + CE (SCRUB's min step), plain distillation (robust.c: τ²·KL(softmax(z_t/τ) ‖
 * softmax(z_s/τ)), the teacher column unmasked). */
enum { L_CE, L_NEG_CE, L_DELETE, L_NEG_KL, L_KL_CE, L_DISTILL };

/* One training run of the model's marked weights on d with loss kind. */
ulc_status ulc_unlearn_train(ulc_model *model, const ulc_dataset *d, int kind,
                             const ulc_train_opts *o, const ulc_unlearn_opts *u,
                             ulc_train_stats *stats, ulc_ctx *ctx);
/* Appends a phase's curves to the run's. */
ulc_status ulc_unlearn_stats_add(ulc_train_stats *all, ulc_train_stats *ph, ulc_ctx *ctx);
/* Re-initialises every weight (seeded, PyTorch's default init). */
ulc_status ulc_unlearn_reinit(ulc_model *m, uint64_t seed, ulc_ctx *ctx);
/* Re-initialises every trained weight as transformers' GPT-2 does (seeded): N(0, 0.02) for
 * linear weights and embeddings, N(0, 0.02/√(2·n_layer)) for c_proj weights, biases 0,
 * LayerNorm scale 1 and shift 0. */
ulc_status ulc_unlearn_reinit_gpt2(ulc_model *m, uint64_t seed, ulc_ctx *ctx);
uint64_t ulc_unlearn_splitmix(uint64_t *s);
/* One N(0, 1) draw from the splitmix stream s (Box-Muller on two 53-bit uniforms). */
double ulc_unlearn_gauss(uint64_t *s);
/* The class count of m's output called output (the only/first one when NULL): its last dim when
 * it is [batch, classes] with a fixed class count, else -1. */
int64_t ulc_unlearn_classes(const ulc_model *m, const char *output);

/* A method's run: its weights are marked; it trains model and fills stats. */
typedef struct ulc_unlearn_call {
    ulc_model *model;
    const ulc_model *teacher;
    const ulc_dataset *data;
    const uint8_t *forget;
    const ulc_train_opts *o;
    const ulc_unlearn_opts *u;
    ulc_train_stats *stats;
} ulc_unlearn_call;

ulc_status ulc_delete_run(const ulc_unlearn_call *c, ulc_ctx *ctx);       /* delete.c */
ulc_status ulc_scrub_run(const ulc_unlearn_call *c, ulc_ctx *ctx);        /* scrub.c */
ulc_status ulc_finetune_run(const ulc_unlearn_call *c, ulc_ctx *ctx);     /* baselines.c */
ulc_status ulc_retrain_run(const ulc_unlearn_call *c, ulc_ctx *ctx);
ulc_status ulc_neggrad_run(const ulc_unlearn_call *c, ulc_ctx *ctx);
ulc_status ulc_random_label_run(const ulc_unlearn_call *c, ulc_ctx *ctx);
/* Selective Synaptic Dampening (ssd.c): marks the weights it may dampen itself (u->ssd_params);
 * trains nothing; c->stats holds its two gradient passes (forget rows, then every row). */
ulc_status ulc_ssd_run(const ulc_unlearn_call *c, ulc_ctx *ctx);
/* Whether globs (NULL: every weight) select a weight ssd can dampen in m (ULC_ERR_INVALID naming
 * them if not); m's flags are left as they were. */
ulc_status ulc_ssd_check(ulc_model *m, const char *globs, ulc_ctx *ctx);
/* nhl-kl on a CLIP zero-shot classifier (nhl.c). */
ulc_status ulc_nhl_run(const ulc_unlearn_call *c, ulc_ctx *ctx);
/* MeGU (megu.c): relabelled, noised forget rows and retain rows, cross-entropy. */
ulc_status ulc_megu_run(const ulc_unlearn_call *c, ulc_ctx *ctx);
/* Text models (every method that runs on them), and graddiff / npo on every model (lm.c). */
ulc_status ulc_lm_run(const ulc_unlearn_call *c, ulc_ctx *ctx);

#endif
