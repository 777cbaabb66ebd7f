/*
 * metrics.h — unlearning evaluation metrics over plain arrays (docs/metrics.md defines each one
 * exactly): softmax entropy, H-mean, activation distance, per-row L1 feature distance, linear
 * CKA, a 1-D logistic regression (sklearn's LogisticRegression(class_weight="balanced") fit by
 * Newton's method) and an RBF support vector classifier (libsvm's SMO with second-order working
 * set selection), and the two membership-inference attacks built on them.
 *
 *     double p[10]; ulc_softmax(z, 10, p);                 // z: one row of logits
 *     double h = ulc_entropy(p, 10);
 *     double frac; ulc_mia_logreg(mem, nm, non, nn, df, nf, &frac, NULL, ctx);
 *
 * Everything is computed in double, in a fixed order, with no randomness: the same arrays give
 * the same numbers on every run. Only common/ is used.
 */
#ifndef ULC_EVAL_METRICS_H
#define ULC_EVAL_METRICS_H

#include <stdint.h>

#include "common/status.h"

/* p[c] = softmax(z)[c], max-subtracted; -inf logits get 0; a row of all -inf or a NaN gives
 * NaNs. */
void ulc_softmax(const float *z, int64_t c, double *p);
/* -Σ p log p (natural log), with 0 · log 0 = 0. */
double ulc_entropy(const double *p, int64_t c);
/* DELETE's H-mean: 2ab / (a + b), and 0 when a <= 0 or b <= 0. */
double ulc_hmean(double a, double b);

/* Mean over n rows of ||softmax(za_i) - softmax(zb_i)||_2 (logits [n, c]); 0 for n = 0. */
double ulc_activation_distance(const float *za, const float *zb, int64_t n, int64_t c);
/* Mean over n rows of Σ_k |a_ik - b_ik| (features [n, p]); 0 for n = 0. */
double ulc_feature_l1(const float *a, const float *b, int64_t n, int64_t p);
/* Linear CKA of x [n, p] and y [n, q] (rows = samples; row i of x starts at x + i * x_stride,
 * x_stride >= p, same for y): columns centred, ||YᵀX||_F² / (||XᵀX||_F ||YᵀY||_F), computed
 * through the n×n Gram matrices when that is cheaper (the same number). NaN when either side
 * is constant over the rows (a zero denominator). Fails (NOMEM / INVALID_ARG for n < 2). */
ulc_status ulc_cka_linear(const float *x, int64_t n, int64_t p, int64_t x_stride, const float *y,
                          int64_t q, int64_t y_stride, double *out, ulc_ctx *ctx);

/* ---- 1-D logistic regression ----------------------------------------------------------------- */

typedef struct ulc_logreg {
    double w, b;   /* P(y = 1 | x) = 1 / (1 + exp(-(w x + b))) */
    int iters;     /* Newton iterations taken */
} ulc_logreg;

/* Minimises Σ s_i [log(1 + e^{z_i}) - y_i z_i] + w² / (2C), z_i = w x_i + b (the intercept is not
 * penalised), s_i = n / (2 n_{y_i}) when balanced (sklearn's class_weight="balanced"), else 1.
 * y[i] is 0 or 1; both classes must occur. Newton's method with a halving line search, in
 * double, until the step is below 1e-12 (relative) or 100 iterations. */
ulc_status ulc_logreg_fit(const double *x, const uint8_t *y, int64_t n, double C, int balanced,
                          ulc_logreg *out, ulc_ctx *ctx);
/* 1 when w x + b > 0 (P > 0.5; sklearn's predict), else 0. */
int ulc_logreg_predict(const ulc_logreg *m, double x);

/* ---- RBF support vector classifier ----------------------------------------------------------- */

typedef struct ulc_svm {
    int d;           /* features per row */
    int64_t n_sv;    /* support vectors */
    double *sv;      /* [n_sv, d] */
    double *coef;    /* y_i α_i per support vector */
    double rho;      /* decision: Σ coef_i K(sv_i, x) - rho */
    double gamma;    /* K(a, b) = exp(-gamma ||a - b||²) */
    long iters;      /* SMO iterations */
} ulc_svm;

/* C-SVC with an RBF kernel on x [n, d], labels y[i] in {0, 1} (1 is the positive side), solved
 * as libsvm does: SMO with second-order working set selection (Fan, Chen and Lin 2005), stopping
 * when the maximal violation is below tol (sklearn: 1e-3), no shrinking. out->sv and out->coef
 * are malloc'd: ulc_svm_free. Both classes must occur. */
ulc_status ulc_svm_fit(const double *x, int d, const uint8_t *y, int64_t n, double C, double gamma,
                       double tol, ulc_svm *out, ulc_ctx *ctx);
double ulc_svm_decision(const ulc_svm *m, const double *x);
/* 1 when the decision is > 0, else 0. */
int ulc_svm_predict(const ulc_svm *m, const double *x);
void ulc_svm_free(ulc_svm *m);

/* ---- membership inference ---------------------------------------------------------------------- */

/* An attacker trained on members (label 1) vs non-members (label 0), each a 1-D feature, and the
 * fraction of `target` it predicts member. */
typedef struct ulc_mia_result {
    double member_frac;   /* the MIA number: fraction of target rows predicted member */
    int64_t n_members, n_nonmembers, n_target; /* rows the attacker was trained / scored on */
    double train_acc;     /* the attacker's accuracy on its own training set */
} ulc_mia_result;

/* Logistic regression (C = 1, class_weight balanced) on every member and non-member. */
ulc_status ulc_mia_logreg(const double *mem, int64_t nm, const double *non, int64_t nn,
                          const double *target, int64_t nt, ulc_mia_result *r, ulc_ctx *ctx);

/* The balanced set of the SVM attack: k = min(nm, nn, cap) rows of each, the first k in order. */
#define ULC_MIA_SVM_CAP 2000
/* SVC(C = 3, rbf, gamma = 1 (= 1 / n_features), tol 1e-3) on the balanced set above. */
ulc_status ulc_mia_svm(const double *mem, int64_t nm, const double *non, int64_t nn,
                       const double *target, int64_t nt, ulc_mia_result *r, ulc_ctx *ctx);

/* Knowledge-tracing unlearning's scores (CLIP; eval/clip_eval.h): a model's zero-shot accuracies
 * (-1: not measured), and Ā(S) = min(1, after/before) (1 when before is 0: nothing to lose; NaN
 * when unmeasured), Q = 1 − Ā(Df fine), U = mean(Ā(Dr fine), Ā(Dr coarse), Ā(Df coarse)),
 * Q-U = 2QU/(Q+U) (0 when Q + U is 0). */
typedef struct ulc_clip_acc {
    double df_fine, dr_fine, df_coarse, dr_coarse, heldout, r1;
} ulc_clip_acc;
typedef struct ulc_clip_qu {
    double a_df_fine, a_dr_fine, a_dr_coarse, a_df_coarse, q, u, qu;
} ulc_clip_qu;
ulc_clip_qu ulc_clip_qu_of(const ulc_clip_acc *before, const ulc_clip_acc *after);

#endif
