/*
 * forget.h — the main job: make a model forget what a request names (docs/spec.md).
 *
 *   load IN (and IN again: the frozen teacher) → bind the data to the model's inputs → splits
 *   → the passes before the method (lora-inject: a placement that adapts nothing is refused
 *   before any work) → score IN on the splits → the method and the passes after it (lora-merge)
 *   → score the unlearned model → attacks and extra metrics → write OUT in IN's format → hash
 *   every file → the report, the gates, the table.
 *
 * No specialize or cleanup runs: OUT keeps IN's inputs and outputs (dynamic dims too), nodes and
 * names; only weights change. The same seed gives the same bytes at any thread count. The output model's
 * metadata records the request (jobs/history.h); a request on a model that already forgot rows or
 * classes keeps them out of the retain set.
 *
 *     ulc_request rq;
 *     ulc_spec_parse("spec.json", &rq, ctx);
 *     ulc_forget_opts o = {.in = "in.onnx", .out = "out.onnx", .evaluate = 1, .table = stdout};
 *     ulc_forget_outcome res = {0};
 *     ulc_forget_files(&rq, &o, &res, ctx);   // res.report, res.gates_failed
 *     ulc_forget_outcome_clear(&res);
 *     ulc_request_clear(&rq);
 */
#ifndef ULC_JOBS_FORGET_H
#define ULC_JOBS_FORGET_H

#include <signal.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "common/status.h"
#include "ir/graph.h"
#include "jobs/request.h"

#define ULC_MAX_REPORTS 8 /* report files one run writes at most */

typedef struct ulc_forget_opts {
    const char *in;    /* the input model's path (messages, its hash, the teacher's file) */
    const char *out;   /* the output's path: written by ulc_forget_files, named in the report */
    const char *reports[ULC_MAX_REPORTS]; /* report files (format by extension); none given:
                                             the request's own report, if any */
    int n_reports;
    const char *junit; /* the gates as JUnit XML (eval/report.h), written with the reports
                          (ulc_forget_files only); NULL: none */
    int threads, quiet, profile;
    int evaluate;      /* 1: score before and after, attacks, extra metrics, report, gates;
                          0: unlearn only */
    FILE *table;       /* the before/after table and the gate lines (NULL: not printed) */
    FILE *annotations; /* a GitHub Actions `::error` line per failed gate, printed after the
                          report (on files: once every file is written); NULL: none */
    FILE *progress;    /* training progress and pass summaries (NULL: stderr; quiet: none) */
    /* training stops after the step in which *stop becomes nonzero (NULL: never) */
    const volatile sig_atomic_t *stop;
    /* called when a phase ("unlearn") begins (1) and ends (0); NULL: none */
    void (*phase)(void *arg, const char *name, int begin);
    void *phase_arg;
} ulc_forget_opts;

typedef struct ulc_forget_outcome {
    cJSON *report;       /* the report (evaluate), owned */
    int gates_failed;    /* how many of the request's gates failed */
    char *gate_messages; /* owned: one line per failed gate, or NULL */
} ulc_forget_outcome;

void ulc_forget_outcome_clear(ulc_forget_outcome *r);

/* The job on files: o->in → o->out (IN's format; no output may be a file the run reads),
 * reports and the JUnit file written whatever the gates say. */
ulc_status ulc_forget_files(const ulc_request *rq, const ulc_forget_opts *o,
                            ulc_forget_outcome *res, ulc_ctx *ctx);

/* The job on a model in memory: m is unlearned in place (on failure it may hold a partial
 * result: discard it); teacher is the unchanged original, with m's interface. o->out may be
 * NULL (the report then names no output file). */
ulc_status ulc_forget_model(ulc_model *m, const ulc_model *teacher, const ulc_request *rq,
                            const ulc_forget_opts *o, ulc_forget_outcome *res, ulc_ctx *ctx);

#endif
