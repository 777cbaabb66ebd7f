/*
 * score.h — a model scored on data files bound to its inputs (io/data.h), and on the forget
 * splits (eval/splits.h): accuracy per split and per class (classifiers: the first maximum of the
 * scores against the label; text models: next-token predictions whose next token is not masked
 * out), the softmax entropy and true-label confidence of every row, and the two
 * membership-inference attacks built on them (docs/metrics.md). The main command's report and
 * `ulc eval --forget` both score here; every model run goes through ulc_rows_run
 * (runtime/runtime.h).
 *
 *     ulc_eval_probe(s, "in.onnx", &f, &train, ctx);         // f.classes, f.next_token
 *     ulc_scores sc = {0};
 *     ulc_eval_score_splits(s, "in.onnx", &f, &train, &test, &sp, &sc, ctx);
 *     ulc_mia_result r;
 *     ulc_eval_mia(&train, &test, &sp, &sc, 0, &r, ctx);     // entropy / logistic regression
 *     ulc_scores_clear(&sc);
 */
#ifndef ULC_EVAL_SCORE_H
#define ULC_EVAL_SCORE_H

#include <stdint.h>

#include "common/status.h"
#include "io/data.h"
#include "runtime/runtime.h"
#include "eval/metrics.h"
#include "eval/splits.h"

/* The runner's rows for every row of df, each fed input reading its bound column. */
void ulc_eval_rows(const ulc_iface *f, const ulc_data *df, ulc_rows *r);

/* The output's kind, from a run over row 0 of df: class scores [1, C], or next-token logits
 * [1, T, V] when the main input is int64 token ids [1, T]. Sets f->classes and f->next_token. */
ulc_status ulc_eval_probe(ulc_session *s, const char *model_path, ulc_iface *f,
                          const ulc_data *df, ulc_ctx *ctx);

/* Per-row scores of a model over a data file. */
typedef struct ulc_row_scores {
    int32_t *pred;   /* predictions row i makes (1 for a classifier; next-token positions) */
    int32_t *ok;     /* how many of them are right */
    double *entropy; /* classifiers: the softmax entropy of each row (the entropy MIA's feature) */
    double *conf;    /* classifiers: the softmax probability of the row's label (the SVM MIA's) */
    double *nll;     /* text models: Σ −log p(next token) over the row's predictions */
    double *mink;    /* text models: Min-K% Prob of the row (eval/lm_metrics.h), NaN without
                        predictions */
    double mink_frac; /* in: Min-K%'s k as a fraction (0: ULC_LM_MINK) */
} ulc_row_scores;

/* Scores every row of df with the model in s (after ulc_eval_probe set f). rs's arrays are
 * malloc'd: ulc_row_scores_clear (which keeps mink_frac). */
ulc_status ulc_eval_score_rows(ulc_session *s, const char *model_name, const ulc_iface *f,
                               const ulc_data *df, ulc_row_scores *rs, ulc_ctx *ctx);
void ulc_row_scores_clear(ulc_row_scores *rs);

/* A model's scores on the splits: per split, and for classifiers per class and per row
 * ([0] train, [1] test; NULL without test data). Text models have per-split token NLL (the
 * perplexity) and per-row attack scores instead of classes. */
typedef struct ulc_scores {
    ulc_tally split[ULC_SPLIT_COUNT];
    ulc_tally *cls[2];  /* [classes] */
    double *entropy[2]; /* [rows] */
    double *conf[2];    /* [rows] */
    double nll[ULC_SPLIT_COUNT]; /* text: Σ token NLL over the split (split[k].pred tokens) */
    double *loss[2];    /* text, [rows]: the loss attack's score −(mean token NLL); NaN without
                           predictions */
    double *mink[2];    /* text, [rows]: Min-K% Prob */
    double mink_frac;   /* in: Min-K%'s k as a fraction (0: ULC_LM_MINK); kept by clear */
} ulc_scores;

/* exp(nll[k] / split[k].pred): split k's token-weighted perplexity; NaN without predictions. */
double ulc_scores_ppl(const ulc_scores *sc, int split);

/* Scores the model in s on every row of tr and te (te may be NULL). */
ulc_status ulc_eval_score_splits(ulc_session *s, const char *model_name, const ulc_iface *f,
                                 const ulc_data *tr, const ulc_data *te, const ulc_splits *sp,
                                 ulc_scores *out, ulc_ctx *ctx);
void ulc_scores_clear(ulc_scores *sc);

/* The membership-inference attack on a classifier's scores (docs/metrics.md): the attacker
 * learns members (Dr) from non-members (the test rows of the retained classes, Drt, for class
 * forgetting; every test row, Dt, for sample forgetting) by the softmax entropy (svm = 0:
 * logistic regression) or the true-label confidence (svm = 1: RBF SVM), and calls each Df row
 * member or not. */
ulc_status ulc_eval_mia(const ulc_data *tr, const ulc_data *te, const ulc_splits *sp,
                        const ulc_scores *sc, int svm, ulc_mia_result *res, ulc_ctx *ctx);

#endif
