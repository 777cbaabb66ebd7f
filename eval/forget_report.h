/*
 * forget_report.h — the main command's report (docs/spec.md, "The report") as JSON, and its
 * before/after table on stdout, from the facts of one run that the caller fills. eval/report.h
 * renders the JSON as Markdown and HTML and adds the gates.
 *
 *     ulc_forget_facts r = {.method = "rfa", .in = "in.onnx", .out = "out.onnx", ...};
 *     r.hyper = ...;                                   // the method's hyperparameters (caller's)
 *     cJSON *rep = ulc_forget_report_json(&r);         // cJSON_Delete
 *     ulc_forget_print_table(stdout, &r);
 *     ulc_forget_facts_clear(&r);
 */
#ifndef ULC_EVAL_FORGET_REPORT_H
#define ULC_EVAL_FORGET_REPORT_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "common/sha256.h"
#include "io/data.h"
#include "train/train.h"
#include "eval/forget_eval.h"
#include "eval/metrics.h"
#include "eval/score.h"
#include "eval/splits.h"

/* What went into and came out of a run. Pointers are borrowed except where marked owned. */
typedef struct ulc_forget_facts {
    const char *method;         /* the method's name */
    const char *teacher_cache;  /* delete: "hit", "stored", "unwritable"; NULL otherwise */
    /* ssd: the weight elements and tensors it dampened, of those it could (weights 0 for the
     * other methods: no "dampened" in the report) */
    long long ssd_dampened, ssd_weights;
    int ssd_tensors, ssd_of_tensors;
    const char *in, *out;       /* the models as given */
    char *in_file, *out_file;   /* owned: the hashed files (a directory's model.safetensors) */
    char *ext_file;             /* owned: OUT's external data file, or NULL */
    char *ref_file;             /* owned: the reference's hashed file */
    char in_sha[ULC_SHA256_HEX], out_sha[ULC_SHA256_HEX], ext_sha[ULC_SHA256_HEX];
    /* the input's and the output's weights (ir/digest.h); "" when not computed */
    char in_wsha[ULC_SHA256_HEX], out_wsha[ULC_SHA256_HEX];
    const char *spec;           /* the spec's path */
    char spec_sha[ULC_SHA256_HEX];
    const char *reference;      /* the reference model, or NULL */
    char ref_sha[ULC_SHA256_HEX];
    char idx_sha[ULC_SHA256_HEX]; /* the forget set's indices_file */
    const ulc_forget_set *fs;
    const ulc_data *tr, *te;    /* te NULL without test data */
    const ulc_splits *sp;
    const ulc_iface *f;
    cJSON *hyper;               /* owned: "hyperparameters" without "eval" (the method's) */
    cJSON *detail;              /* owned: the method's own object, reported under its name
                                   (megu's); NULL: none */
    ulc_fe_opts eval;           /* "hyperparameters.eval": features, relearn_steps, relearn_lr */
    uint64_t seed;
    int threads;
    ulc_scores before, after;   /* owned */
    int has_mia;                /* a classifier with test data: the attacks were run */
    ulc_mia_result mia_before, mia_after; /* entropy / logistic regression */
    ulc_mia_result svm_before, svm_after; /* confidence / RBF SVM */
    int has_lm_mia;             /* a text model with test data: the LM attacks were run */
    ulc_lm_attack_result lm_loss[2], lm_mink[2]; /* [0] before, [1] after */
    ulc_train_stats st;         /* owned */
    double wall;
    cJSON *extra;               /* owned: "features", "relearn", "activation_distance",
                                   "extraction" */
} ulc_forget_facts;

/* Frees what the facts own. */
void ulc_forget_facts_clear(ulc_forget_facts *r);

/* Both attacks on the before and after scores (has_mia set: the classifier attacks; has_lm_mia:
 * the loss and Min-K% attacks of a text model). */
ulc_status ulc_forget_mia(ulc_forget_facts *r, ulc_ctx *ctx);

/* The report as JSON; NULL when out of memory. */
cJSON *ulc_forget_report_json(const ulc_forget_facts *r);

/* The before/after table (splits, attacks, H-mean, extra metrics, training). */
void ulc_forget_print_table(FILE *out, const ulc_forget_facts *r);

#endif
