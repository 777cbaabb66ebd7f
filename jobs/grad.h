/*
 * grad.h — `ulc grad` as a library call: gradients of a model's output with respect to its
 * inputs and weights, computed by ulc's autodiff (train/autodiff.h) and the runtime (for checking
 * them against finite differences or another framework, and for debugging backward rules).
 *
 * The differentiated scalar is L = Σ output ⊙ S, where S is the feeds' tensor "grad:<output>"
 * (torch's y.backward(S)), or all ones when there is none. `wrt` picks graph inputs and
 * initializers by name ('|'-separated globs; NULL: every float32 graph input). The output file
 * holds "loss" and "grad:<name>" for each picked value (zeros where no path leads to the output).
 *
 *     ulc_grad_job j = {.model = "m.onnx", .feeds = "feeds.safetensors",
 *                       .out = "grads.safetensors", .wrt = "conv*"};
 *     ulc_grad_files(&j, ctx);
 */
#ifndef ULC_JOBS_GRAD_H
#define ULC_JOBS_GRAD_H

#include <stdio.h>

#include "common/status.h"

typedef struct ulc_grad_job {
    const char *model, *feeds, *out;
    const char *output; /* the output differentiated (NULL: the first) */
    const char *wrt;    /* globs, or NULL */
    int threads;        /* 0: the default (runtime/threads.h) */
} ulc_grad_job;

ulc_status ulc_grad_files(const ulc_grad_job *j, ulc_ctx *ctx);

/* The ops autodiff can differentiate, one a line. */
void ulc_grad_print_ops(FILE *out);

#endif
