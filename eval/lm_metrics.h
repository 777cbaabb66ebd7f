/*
 * lm_metrics.h — language-model metrics over plain arrays (docs/metrics.md, "Language models"):
 * a row's token log-probabilities from its logits, Min-K% Prob, the longest common subsequence
 * behind ROUGE-L, the area under the ROC curve by the Mann-Whitney statistic, and the loss and
 * Min-K% membership attacks built on them (AUC of members against non-members; a threshold
 * learnt on known members and non-members, and the fraction of targets it calls member).
 *
 *     double lp = ulc_token_logprob(z, vocab, y);             // log softmax(z)[y]
 *     double s = ulc_mink_score(lp_row, n, 0.2);              // sorts lp_row
 *     int64_t l = ulc_lcs_len(gen, m, ref, m, scratch);       // ROUGE-L recall = l / m
 *     ulc_lm_attack_result r;
 *     ulc_lm_attack(df, nf, dr, nr, dt, nt, &r, ctx);         // higher score = member
 *
 * Everything is in double, in a fixed order, with no randomness. Only common/ is used.
 */
#ifndef ULC_EVAL_LM_METRICS_H
#define ULC_EVAL_LM_METRICS_H

#include <stdint.h>

#include "common/status.h"

#define ULC_LM_MINK 0.2 /* Min-K% Prob's k (Shi et al. 2023): the 20 % least likely tokens */

/* log softmax(z)[y] over one position's logits z [v], max-subtracted, in double: z_y − m −
 * log Σ_c e^{z_c − m}. -inf for a logit of -inf; NaN when z has a NaN. */
double ulc_token_logprob(const float *z, int64_t v, int64_t y);

/* Min-K% Prob of one row: the mean of its k = max(1, floor(frac · n)) lowest token
 * log-probabilities. lp[0..n) is sorted ascending in place. NaN for n = 0. */
double ulc_mink_score(double *lp, int64_t n, double frac);

/* The length of the longest common subsequence of a [na] and b [nb]; scratch holds nb + 1
 * int64s. O(na · nb) time. */
int64_t ulc_lcs_len(const int64_t *a, int64_t na, const int64_t *b, int64_t nb, int64_t *scratch);

/* P(X > Y) + P(X = Y) / 2 for X drawn from pos and Y from neg (the Mann-Whitney U / (np · nn),
 * ties counted half): the ROC AUC of "score higher = positive". NaN when a side is empty.
 * Sorts a copy; fails only when out of memory. */
ulc_status ulc_auc(const double *pos, int64_t np, const double *neg, int64_t nn, double *auc,
                   ulc_ctx *ctx);

/* The threshold t that maximises the balanced accuracy (TPR + TNR) / 2 of "member iff x >= t"
 * on members mem and non-members non: t runs over +inf (nobody called member: 1/2), then the
 * distinct values of both ascending; the first best wins (+inf on a tie with 1/2, else the
 * smallest t). *bacc gets its balanced accuracy. Both sides must be non-empty; NaNs are the
 * caller's to leave out. */
ulc_status ulc_threshold_balanced(const double *mem, int64_t nm, const double *non, int64_t nn,
                                  double *t, double *bacc, ulc_ctx *ctx);

/* A membership attack on an LM's per-row scores (higher = more likely a member). */
typedef struct ulc_lm_attack_result {
    double auc;          /* targets (the forget rows) against the non-members (held-out rows) */
    double threshold;    /* learnt on the known members (Dr) against the non-members */
    double attacker_bacc; /* the threshold's balanced accuracy on Dr against the non-members */
    double member_frac;  /* the fraction of targets with score >= threshold */
    int64_t n_members, n_nonmembers, n_target;
} ulc_lm_attack_result;

/* The attack: AUC of target against non; threshold learnt on mem against non; the fraction of
 * target called member. Every side must be non-empty (INVALID_ARG otherwise). */
ulc_status ulc_lm_attack(const double *target, int64_t nt, const double *mem, int64_t nm,
                         const double *non, int64_t nn, ulc_lm_attack_result *r, ulc_ctx *ctx);

#endif
