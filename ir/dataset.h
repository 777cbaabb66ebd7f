/*
 * ir/dataset.h — a dataset as the trainer and the evaluators see it: named tensor columns with a
 * common first dimension (rows), and row subsets of one gathered into columns of their own (what
 * a method trains on). io/data.h loads datasets from files and binds them to a model.
 */
#ifndef ULC_IR_DATASET_H
#define ULC_IR_DATASET_H

#include <stdint.h>

#include "common/status.h"
#include "ir/graph.h"

/* Named columns with a common first dimension (rows). Tensors are the importer's (safetensors
 * file mapped and borrowed): float32 or int64 here (other dtypes are refused by the loader). */
typedef struct ulc_dataset {
    int n_cols;
    const char **names;
    const ulc_tensor **cols;
    int64_t n_rows;
    const char *path; /* for messages */
} ulc_dataset;

/* Checks that every column has rank >= 1 and the same first dim; sets n_rows. */
ulc_status ulc_dataset_check(ulc_dataset *d, ulc_ctx *ctx);
/* The column named name, or -1. */
int ulc_dataset_find(const ulc_dataset *d, const char *name);
/* d->path, or "dataset" when it has none (for messages). */
const char *ulc_dataset_path(const ulc_dataset *d);

#define ULC_DATASET_MAX_RANK 8 /* columns of a subset have at most this rank */

/* A row subset of a dataset, gathered into columns of its own (owned copies). */
typedef struct ulc_row_subset {
    ulc_dataset d;
    ulc_tensor *t;      /* n_cols tensors (gathered copies) */
    int64_t *dims;      /* their dims */
    void **bufs;
} ulc_row_subset;

/* The rows with forget[i] == want (every row with want < 0), every column, plus `extra` (a
 * float32 [rows, w] column already in subset order, copied) named extra_name. */
ulc_status ulc_row_subset_make(const ulc_dataset *d, const uint8_t *forget, int want,
                               const char *extra_name, const float *extra, int64_t w,
                               ulc_row_subset *s, ulc_ctx *ctx);
void ulc_row_subset_free(ulc_row_subset *s); /* accepts a zeroed struct */

#endif
