/*
 * history.h — the unlearning requests a model went through, kept in its own metadata.
 *
 * Each request that unlearns a model appends one entry to the metadata key "ulc_history" (ONNX
 * metadata_props; safetensors __metadata__, so Hugging Face directories keep it too): a JSON list,
 * oldest first, of
 *
 *     {"ulc": "0.1.0", "method": "rfa", "passes": "lora-inject{...},rfa{...},lora-merge",
 *      "spec_sha256": "…",                                    (requests read from a spec)
 *      "forget": {"classes": [3]}                             (class forgetting), or
 *      "forget": {"rows": [4, 17], "data_sha256": "…", "data_rows": 1437}}
 *
 * No timestamps: the same request on the same model gives the same bytes. A later request on the
 * model carries what earlier ones forgot: their classes, and their rows when its training data
 * is the same file (by hash and row count), join the forget rows, so no method trains them back
 * as retain rows. The report and the table say what was carried.
 */
#ifndef ULC_JOBS_HISTORY_H
#define ULC_JOBS_HISTORY_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "common/status.h"
#include "eval/splits.h"
#include "io/data.h"
#include "ir/graph.h"
#include "jobs/request.h"

#define ULC_META_HISTORY "ulc_history"

/* What a request carries over from the model's history. */
typedef struct ulc_history_carry {
    ulc_forget_set fs;    /* the request's forget set with the carried classes and rows */
    int64_t *classes;     /* owned: classes earlier requests forgot (not the request's own) */
    int n_classes;
    int64_t *rows;        /* owned: rows of this training data earlier requests forgot */
    int64_t n_rows;
    int64_t *all_classes; /* owned: the request's classes and the carried ones */
    int n_all_classes;
    int requests;         /* entries in the model's history */
    int unmatched;        /* earlier row requests on other data (not carried: no way to match) */
} ulc_history_carry;

/* Reads m's history (ULC_ERR_INVALID naming the model and the entry when it is not what this
 * file describes) and fills c: c->fs is fs plus what is carried over to the training data tr. */
ulc_status ulc_history_carry_over(const ulc_model *m, const ulc_forget_set *fs,
                                  const ulc_data *tr, ulc_history_carry *c, ulc_ctx *ctx);
void ulc_history_carry_clear(ulc_history_carry *c); /* accepts a zeroed struct */

/* Appends the request (its own forget set, the method that ran, its passes) to m's history. */
ulc_status ulc_history_record(ulc_model *m, const ulc_request *rq, const ulc_data *tr,
                              const char *method, ulc_ctx *ctx);

/* Adds "history": {"requests", "carried_classes", "carried_rows", "unmatched_requests"} to the
 * report when the model had a history; the line the table prints. */
void ulc_history_report(cJSON *report, const ulc_history_carry *c);
void ulc_history_print(FILE *out, const ulc_history_carry *c);

/* m's history as parsed JSON (the caller deletes it), NULL when it has none; ULC_ERR_INVALID when
 * the metadata is malformed. */
ulc_status ulc_history_read(const ulc_model *m, cJSON **out, ulc_ctx *ctx);

#endif
