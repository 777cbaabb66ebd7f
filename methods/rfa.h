/*
 * rfa.h — residual feature alignment unlearning (shared/methods/rfa.md), on LoRA adapters.
 *
 * The model arrives with LoRA adapters injected (lora-inject; their records name the adapted
 * modules' outputs, the aligned features x_k). The frozen original is the teacher. Batches come
 * from the whole train set; each row is retain or forget (forget[i] != 0). Per batch, with the
 * teacher's features t_k and logits:
 *
 *   L_inter,k = α/|b_r| Σ_{retain} d(s_k, t_k) + β/|b_f| Σ_{forget} d(s_k, mean_{b_r} t_k)
 *   L_task    = λ/|b_r| Σ_{retain} CE(z, y)    + μ/|b_f| Σ_{forget} softCE(z, mean_{b_r} softmax(t_z))
 *   L         = γ/m Σ_k L_inter,k + (1 − γ) L_task          (m = number of adapted layers)
 *
 * d is the squared L2 distance of a row's feature (norm "l2sq", the default), its mean over the
 * feature's elements ("mse"), the L1 distance ("l1"), or sqrt(l2sq + 1e-12) ("l2"). Means over
 * the retain rows are detached (teacher constants). A batch with no retain rows reuses the last
 * means (the first such batch before any retain row: its forget terms are skipped); a batch with
 * no forget rows has no forget terms. Only the adapters train (AdamW by default).
 *
 *     ulc_rfa_opts r = ulc_rfa_defaults();
 *     ulc_rfa_run(model, teacher, &data, forget, &train_opts, &r, &stats, ctx);
 *     // model's adapters now hold the trained values (merge with lora-merge)
 */
#ifndef ULC_METHODS_RFA_H
#define ULC_METHODS_RFA_H

#include <stdint.h>

#include "common/status.h"
#include "ir/graph.h"
#include "train/train.h"

typedef enum ulc_rfa_norm { ULC_RFA_L2SQ = 0, ULC_RFA_MSE, ULC_RFA_L1, ULC_RFA_L2 } ulc_rfa_norm;

typedef struct ulc_rfa_opts {
    double gamma;                     /* 0.5 */
    double alpha, beta, lambda, mu;   /* 1 each */
    ulc_rfa_norm norm;                /* l2sq */
    const char *input, *output;       /* model input/output; NULL: the only ones */
    int next_token;                   /* text models: the task loss is next-token CE (labels =
                                         input_ids shifted), and a row's class is its label */
} ulc_rfa_opts;

ulc_rfa_opts ulc_rfa_defaults(void);
/* "l2sq", "mse", "l1", "l2" → norm; -1 if unknown. */
int ulc_rfa_norm_parse(const char *s);

/* Trains model's unmerged LoRA adapters (ulc_model.lora) with RFA against teacher (the
 * unmodified original: same input/output names, and the adapted modules' outputs exist in it
 * under the records' `out` names). data: "input" (or "input_ids") and "label" columns (label
 * may be absent with next_token). forget: n_rows flags. On success the adapters' initializers in
 * model hold the trained values. */
ulc_status ulc_rfa_run(ulc_model *model, const ulc_model *teacher, const ulc_dataset *data,
                       const uint8_t *forget, const ulc_train_opts *o, const ulc_rfa_opts *r,
                       ulc_train_stats *stats, ulc_ctx *ctx);


#endif
