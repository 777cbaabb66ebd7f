/*
 * splits.h — the forget set and the splits it makes of the data (docs/metrics.md): train rows
 * are Df (forget) or Dr (retain); test rows are Dft / Drt (forgotten / retained classes) for
 * class forgetting, Dt for sample forgetting. The main command and `ulc eval --forget` both
 * split here, so they score the same rows.
 *
 *     ulc_forget_set fs = {.kind = ULC_FORGET_CLASSES, .classes = cls, .n_classes = 1,
 *                          .where = "spec.json"};
 *     ulc_splits sp;
 *     if (ulc_splits_make(&fs, &iface, &train, &test, &sp, ctx) != ULC_OK) ...
 *     ... sp.train[i] (ULC_SPLIT_DF / ULC_SPLIT_DR), sp.forget[i], sp.rows[ULC_SPLIT_DFT] ...
 *     ulc_splits_clear(&sp);
 */
#ifndef ULC_EVAL_SPLITS_H
#define ULC_EVAL_SPLITS_H

#include <stdint.h>

#include "common/status.h"
#include "io/data.h"

enum { ULC_SPLIT_DF, ULC_SPLIT_DR, ULC_SPLIT_DFT, ULC_SPLIT_DRT, ULC_SPLIT_DT, ULC_SPLIT_COUNT };

/* "Df", "Dr", "Dft", "Drt", "Dt". */
const char *ulc_split_name(int split);
/* "forget (train)", "retain (train)", "forget classes (test)", "retain classes (test)", "test". */
const char *ulc_split_what(int split);

typedef enum ulc_forget_kind { ULC_FORGET_CLASSES, ULC_FORGET_INDICES } ulc_forget_kind;

/* What to forget: classes (by label) or train row indices. */
typedef struct ulc_forget_set {
    ulc_forget_kind kind;
    const int64_t *classes;   /* ULC_FORGET_CLASSES */
    int n_classes;
    const int64_t *indices;   /* ULC_FORGET_INDICES: rows of the train data, >= 0 */
    int64_t n_indices;
    const char *where;        /* the file that asks (the spec), for messages */
    const char *indices_file; /* the file the indices came from, or NULL: where's 'forget.indices' */
    /* text data (io/text_data.h): indices are text indices (every row of a text is selected);
     * forget_file (forget.file) selects the texts it names instead (ulc_data_text.forget) */
    const char *forget_file;
    /* classes named by forget.concepts (a CLIP request): every class's name, for messages; NULL:
     * forget.classes */
    char *const *class_names;
    /* what earlier requests on the model forgot (jobs/history.h): forgotten again, never retained */
    const int64_t *also_classes;
    int n_also_classes;
    const int64_t *also_rows;  /* rows of the train data */
    int64_t n_also_rows;
} ulc_forget_set;

/* 1 when class y is one the set forgets (also_classes included). */
int ulc_forget_has_class(const ulc_forget_set *fs, int64_t y);

/* Which split each row is in. */
typedef struct ulc_splits {
    uint8_t *train;                /* ULC_SPLIT_DF / DR per train row */
    uint8_t *forget;               /* 1 for forget rows (what the methods take) */
    uint8_t *test;                 /* ULC_SPLIT_DFT / DRT / DT per test row, or NULL */
    int present[ULC_SPLIT_COUNT];
    int64_t rows[ULC_SPLIT_COUNT];
} ulc_splits;

/* Marks the forget rows and checks the forget set against the data and the model (f after
 * ulc_eval_probe): classes inside the model's classes and present in the train labels, indices
 * inside the train rows, a forget set that is neither empty nor everything. te may be NULL. */
ulc_status ulc_splits_make(const ulc_forget_set *fs, const ulc_iface *f, const ulc_data *tr,
                           const ulc_data *te, ulc_splits *sp, ulc_ctx *ctx);
void ulc_splits_clear(ulc_splits *sp); /* accepts a zeroed struct */

/* Rows, predictions and right ones over a set of rows. */
typedef struct ulc_tally {
    int64_t rows, pred, ok;
} ulc_tally;

/* ok / pred, 0 without predictions. */
double ulc_tally_acc(const ulc_tally *t);

#endif
