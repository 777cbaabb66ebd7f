/*
 * lm_eval.h — the language-model metrics that need splits or run models (docs/metrics.md,
 * "Language models"): perplexity per split from a model's scores (eval/score.h), the loss and
 * Min-K% membership attacks, and verbatim extraction by greedy decoding. `ulc eval --forget`
 * (jobs/eval.c) and the main command's report (jobs/forget.c) both use these.
 *
 *     ulc_lm_opts o = ulc_lm_defaults();
 *     cJSON *ppl = ulc_lm_ppl_json(&scores, &splits);            // {"Df": 41.2, "Dr": ...}
 *     ulc_lm_attack_result loss, mink;
 *     ulc_lm_mia(&train, &test, &splits, &scores, &loss, &mink, ctx);
 *     ulc_lm_extract(model, "out.onnx", &so, &iface, &train, &splits, &o, into, ctx);
 *
 * Text models are those ulc_eval_probe calls next_token: int64 input_ids [N, T] fed, logits
 * [N, T, V] out. A row's real tokens are the positions before its first attention_mask 0 (every
 * position without a mask).
 */
#ifndef ULC_EVAL_LM_EVAL_H
#define ULC_EVAL_LM_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/status.h"
#include "io/data.h"
#include "runtime/runtime.h"
#include "eval/lm_metrics.h"
#include "eval/score.h"
#include "eval/splits.h"

#define ULC_LM_EXTRACT_PREFIX 32 /* prefix tokens given at most (half the row's at most) */
#define ULC_LM_EXTRACT_TOKENS 32 /* tokens generated at most */
#define ULC_LM_EXTRACT_ROWS 64   /* Df rows (and Dr rows, for contrast) extracted at most */
#define ULC_LM_GEN_BATCH 64      /* rows per run while decoding */

/* The spec's "eval" settings for text models. */
typedef struct ulc_lm_opts {
    double mink_frac;     /* Min-K% Prob's k as a fraction (ULC_LM_MINK) */
    long extract_prefix;  /* P: the prefix is min(P, floor(L / 2)) of a row's L real tokens */
    long extract_tokens;  /* M: min(M, L − prefix) tokens are generated and compared */
    long extract_rows;    /* the first R Df rows and the first R Dr rows; 0: no extraction */
} ulc_lm_opts;

ulc_lm_opts ulc_lm_defaults(void);

/* {split: perplexity} over the splits present (null for a split without predictions). */
cJSON *ulc_lm_ppl_json(const ulc_scores *sc, const ulc_splits *sp);

/* Both attacks on a text model's per-row scores (sc->loss, sc->mink): targets Df, known members
 * Dr, non-members the test rows outside Dft (Dt, or Drt for class forgetting). Rows without
 * predictions are left out. Needs te. */
ulc_status ulc_lm_mia(const ulc_data *tr, const ulc_data *te, const ulc_splits *sp,
                      const ulc_scores *sc, ulc_lm_attack_result *loss, ulc_lm_attack_result *mink,
                      ulc_ctx *ctx);
/* {"auc", "mia" (the fraction of Df called member), "threshold", "attacker_bacc", "members",
 * "nonmembers", "targets"}. */
cJSON *ulc_lm_attack_json(const ulc_lm_attack_result *r);

/* Extraction of model m (mpath for messages) on the first o->extract_rows Df rows (forget[i]
 * set) and the first o->extract_rows Dr rows of tr: adds {"Df": {"rows", "rouge_l", "exact"}, "Dr": {...}} to
 * into (rows: those with at least 2 real tokens; the means over them, null without rows). The
 * model is fed input_ids and, when f has one, an attention_mask of ones. A model fed other
 * inputs, or with a fixed sequence length, gets {"skipped": why} instead (not a failure). */
ulc_status ulc_lm_extract(const ulc_model *m, const char *mpath, const ulc_session_opts *so,
                          const ulc_iface *f, const ulc_data *tr, const uint8_t *forget,
                          const ulc_lm_opts *o, cJSON *into, ulc_ctx *ctx);

/* 1 when extraction cannot feed the model f describes (why says so: inputs other than input_ids
 * and attention_mask, or a fixed sequence length); 0 when it can. */
int ulc_lm_extract_skip(const ulc_iface *f, char *why, size_t n);

/* The extraction settings into o: "prefix", "max_tokens", "max_rows". */
void ulc_lm_extract_settings(cJSON *o, const ulc_lm_opts *opts);

#endif
