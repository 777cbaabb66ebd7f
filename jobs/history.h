/*
 * history.h — the unlearning requests a model went through, kept in its own metadata.
 *
 * Each request that unlearns a model appends one entry to the metadata key "ulc_history" (ONNX
 * metadata_props; safetensors __metadata__, so Hugging Face directories keep it too): a JSON list,
 * oldest first, of
 *
 *     {"ulc": "0.1.0", "method": "rfa", "passes": "lora-inject{...},rfa{...},lora-merge",
 *      "spec_sha256": "…",                                    (requests read from a spec)
 *      "input": {"sha256": "…",                               (IN's file, when it was one)
 *                "weights_sha256": "…"},                      (IN's weights, ir/digest.h)
 *      "data": {"train": {"sha256": "…", "rows": 1437},
 *               "test": {"sha256": "…", "rows": 360}},        (with test data)
 *      "forget": {"classes": [3]}                             (class forgetting), or
 *      "forget": {"rows": [4, 17], "data_sha256": "…", "data_rows": 1437},
 *      "weights_sha256": "…"}                                 (the weights written, ir/digest.h)
 *
 * Every sha256 is of a file's bytes as the run read them (common/fileset.h), except the two
 * weights hashes: the output's cannot be of the file the entry sits in, so both are of the
 * weights alone (format, layout and metadata apart). IN's "sha256" is of its main file
 * (ulc_io_model_main_file: the .onnx without its external data, a directory's model.safetensors
 * or a sharded checkpoint's index); its "weights_sha256" covers all of its weights. A request's
 * input weights are the previous request's output weights when nothing else changed the model
 * in between. `ulc verify` (jobs/verify.h) checks all of it. "input", "data" and
 * "weights_sha256" are missing from entries ulc wrote before it recorded them.
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

/* The files a request read, hashed by the caller (hex; NULL or "": not recorded). */
typedef struct ulc_history_inputs {
    const char *in_sha;         /* the input model's main file */
    const char *in_weights_sha; /* the input model's weights (ir/digest.h) */
    const ulc_data *tr, *te;    /* the data, their sha filled; te NULL without test data */
} ulc_history_inputs;

/* Appends the request (its own forget set, the method that ran, its passes, the hashes of what
 * it read) to m's history. The entry has no "weights_sha256" until ulc_history_seal. */
ulc_status ulc_history_record(ulc_model *m, const ulc_request *rq, const ulc_history_inputs *in,
                              const char *method, ulc_ctx *ctx);

/* Sets the last entry's "weights_sha256" to the hash of m's weights as they are now (call it
 * just before m is written; the metadata does not count) and copies it to hex (may be NULL).
 * ULC_ERR_INTERNAL when m has no history. */
ulc_status ulc_history_seal(ulc_model *m, char *hex, ulc_ctx *ctx);

/* Whether s is 64 lowercase hex digits (a sha256 as ulc writes it). */
int ulc_history_is_sha256(const char *s);

/* Adds "history": {"requests", "carried_classes", "carried_rows", "unmatched_requests"} to the
 * report when the model had a history; the line the table prints. */
void ulc_history_report(cJSON *report, const ulc_history_carry *c);
void ulc_history_print(FILE *out, const ulc_history_carry *c);

/* m's history as parsed JSON (the caller deletes it), NULL when it has none; ULC_ERR_INVALID when
 * the metadata is malformed. */
ulc_status ulc_history_read(const ulc_model *m, cJSON **out, ulc_ctx *ctx);

#endif
