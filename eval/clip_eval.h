/*
 * clip_eval.h — what knowledge-tracing unlearning is judged by (Tan & Gong; shared/methods/
 * megu-clip-and-more.md), on CLIP as zero-shot classifiers (passes/clip_zeroshot.h):
 *
 *   accuracies on the test rows: Df fine / Dr fine (the fine classes, over every fine class),
 *   Df coarse / Dr coarse (the coarse classes of the same rows), where Df are the rows of the
 *   forgotten concepts; zero-shot accuracy on held-out data (its own classes); image→text
 *   retrieval R@1 on the retained rows' captions (each retained image against the distinct
 *   captions of the retained rows: a hit when the best is its own)
 *   Ā(S) = min(1, ACC(S; θ_u) / ACC(S; θ0))   (1 when ACC(S; θ0) is 0: nothing to lose)
 *   Q = 1 − Ā(Df fine);  U = mean(Ā(Dr fine), Ā(Dr coarse), Ā(Df coarse));  Q-U = 2QU/(Q+U)
 */
#ifndef ULC_EVAL_CLIP_EVAL_H
#define ULC_EVAL_CLIP_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "common/status.h"
#include "eval/metrics.h"
#include "io/data.h"
#include "runtime/runtime.h"


/* What the request says about the classes and what there is to score. */
typedef struct ulc_clip_task {
    int64_t n_fine;
    const int64_t *coarse_of;       /* [n_fine] coarse class of each fine class, or NULL */
    const int64_t *forget;          /* the forgotten fine classes */
    int n_forget;
    const char *fine, *coarse, *heldout, *captions; /* the outputs (NULL: absent) */
    const int64_t *caption_of;      /* [test rows]: each row's caption (captions' column) */
    int64_t n_caption_rows;
    const ulc_data *test;           /* the rows scored (data.test, else data.train) */
    const ulc_data *heldout_data;   /* or NULL */
    int threads;
} ulc_clip_task;

/* The accuracies of model m (a zero-shot CLIP model) on the task's rows. */
ulc_status ulc_clip_accuracies(const ulc_model *m, const char *name, const ulc_clip_task *t,
                               ulc_clip_acc *out, ulc_ctx *ctx);


/* The report's "clip" object: the accuracies of before (may be NULL) and after, and with both
 * Ā, Q, U, Q-U. NULL when out of memory. */
cJSON *ulc_clip_json(const ulc_clip_acc *before, const ulc_clip_acc *after);

/* The "clip" object as table lines (before/after, and Q, U, Q-U when there). */
void ulc_clip_print(FILE *out, const cJSON *clip);

#endif
