/*
 * ir/dataset.h — a dataset as the trainer and the evaluators see it: named tensor columns with a
 * common first dimension (rows). io/data.h loads them from files and binds them to a model.
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

#endif
