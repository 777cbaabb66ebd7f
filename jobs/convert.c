/* convert.c — `ulc convert`: read, passes, write (jobs/convert.h). */
#include "jobs/convert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileset.h"
#include "export/peft_export.h"
#include "io/decoder.h"
#include "methods/method.h"
#include "runtime/runtime.h"

#define PROBE_T 8 /* tokens the decoder is checked on */

/* Model x's logits for the probe: input_ids 0..T-1 (one row), a mask of ones; with a decoder d,
 * its empty pasts and positions 0..T-1 too. *out borrowed from *s (freed by the caller). */
static ulc_status probe(const ulc_model *x, const ulc_decoder *d, ulc_session **s, const ulc_rt_tensor **out,
                        ulc_ctx *ctx) {
    static const int64_t ids[PROBE_T] = {0, 1, 2, 3, 4, 5, 6, 7}, ones[PROBE_T] = {1, 1, 1, 1, 1, 1, 1, 1};
    static const float none[1] = {0};
    ulc_session_opts o = ulc_session_defaults();
    ULC_TRY(ulc_session_create(x, &o, s, ctx));
    ulc_rt_tensor t = {.dtype = ULC_DT_I64, .rank = 2, .dims = {1, PROBE_T}, .data = (void *)ids,
                       .nbytes = sizeof ids};
    ULC_TRY(ulc_session_set_input(*s, d ? d->ids : "input_ids", &t, ctx));
    const char *mask = d ? d->mask : (ulc_graph_get_value(x->graph, "attention_mask") ? "attention_mask" : NULL);
    t.data = (void *)ones;
    if (mask) ULC_TRY(ulc_session_set_input(*s, mask, &t, ctx));
    if (d && d->position_ids) {
        t.data = (void *)ids;
        ULC_TRY(ulc_session_set_input(*s, d->position_ids, &t, ctx));
    }
    char name[64];
    for (int i = 0; d && i < 2 * d->layers; i++) {
        ulc_rt_tensor p = {.dtype = ULC_DT_F32, .rank = 4, .dims = {1, d->heads, 0, d->head_dim},
                           .data = (void *)none, .nbytes = 0};
        ULC_TRY(ulc_session_set_input(*s, ulc_decoder_past(i / 2, i % 2, name, sizeof name), &p, ctx));
    }
    ULC_TRY(ulc_session_run(*s, ctx));
    *out = ulc_session_output(*s, "logits");
    return ULC_OK;
}

/* A decoder built from the checkpoint's config and weights must compute what the model does:
 * passes or edits that change the graph (an unmerged adapter, a changed head) are not in it. */
static ulc_status check_built(const ulc_model *m, const ulc_decoder *d, const char *path, ulc_ctx *ctx) {
    ulc_session *sm = NULL, *sd = NULL;
    const ulc_rt_tensor *ym = NULL, *yd = NULL;
    ulc_status st = probe(m, NULL, &sm, &ym, ctx);
    if (st == ULC_OK) st = probe(d->m, d, &sd, &yd, ctx);
    if (st == ULC_OK && (!ym || !yd || ym->dtype != ULC_DT_F32 || yd->dtype != ULC_DT_F32 || ym->nbytes != yd->nbytes))
        st = ulc_fail(ctx, ULC_ERR_INVALID, "%s: --with-past: the model's and the decoder's logits "
                      "differ in shape", path);
    if (st == ULC_OK) {
        const float *a = ym->data, *b = yd->data;
        double worst = 0, scale = 1;
        for (size_t i = 0; i < ym->nbytes / sizeof(float); i++) {
            double e = fabs((double)a[i] - (double)b[i]);
            worst = e > worst || isnan(e) ? e : worst;
            scale = fabs((double)a[i]) > scale ? fabs((double)a[i]) : scale;
        }
        if (!(worst <= 1e-4 * scale))
            st = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: --with-past: the decoder built from the "
                          "checkpoint's config and weights does not compute the model's logits "
                          "(largest difference %.3g on a probe of %d tokens): the graph was changed "
                          "by passes or edits (merge adapters with lora-merge first)", path, worst, PROBE_T);
    }
    ulc_session_free(sm);
    ulc_session_free(sd);
    return st;
}

static ulc_status convert(const ulc_convert_job *j, ulc_fileset *fs, ulc_ctx *ctx) {
    /* an adapter directory that would be overwritten is refused before any work */
    if (j->adapter_dir) ULC_TRY(ulc_peft_export_check_dir(j->adapter_dir, ctx));
    ulc_pipeline *pipe = NULL;
    ULC_TRY(ulc_methods_register(ctx)); /* known, so a method pass says what it needs */
    if (j->passes && ulc_pipeline_parse(j->passes, &pipe, ctx) != ULC_OK) {
        ctx->status = ULC_ERR_INVALID_ARG; /* the command line's pipeline: a usage error */
        return ctx->status;
    }
    ulc_model *m = NULL;
    ulc_fileset_tag(fs, "input model", 1);
    ulc_status s = ulc_io_load_model(j->in, NULL, &m, ctx);
    ulc_fileset_tag(fs, NULL, 0);
    if (s == ULC_OK) s = ulc_io_check_model_output(fs, "output", j->out, j->out_format, ctx);
    if (s == ULC_OK && j->print_ir) ulc_model_print(m, j->print_ir);
    if (s == ULC_OK && pipe) s = ulc_pipeline_run(pipe, m, &j->popts, ctx);
    ulc_pipeline_free(pipe);
    /* the adapter first (it is checked whole before anything is written); taken back if the
     * model cannot be written */
    int wrote_adapter = 0;
    if (s == ULC_OK && j->adapter_dir)
        wrote_adapter = (s = ulc_peft_export(m, j->adapter_dir, NULL, ctx)) == ULC_OK;
    ulc_decoder dec = {0};
    if (s == ULC_OK && j->with_past && (s = ulc_decoder_find(m, j->in, &dec, ctx)) == ULC_OK && !dec.m)
        s = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: --with-past: the model has no cache inputs and "
                     "none can be built (a GPT-2 from a Hugging Face checkpoint can)", j->in);
    if (s == ULC_OK && j->with_past && dec.own) s = check_built(m, &dec, j->in, ctx);
    if (s == ULC_OK)
        s = ulc_io_save_model(dec.own ? dec.own : m, j->out, j->out_format, &j->save, ctx);
    ulc_decoder_free(&dec); /* it shares m's weights: freed first */
    ulc_model_free(m);
    if (s != ULC_OK && wrote_adapter) ulc_peft_export_remove(j->adapter_dir);
    return s;
}

ulc_status ulc_convert_files(const ulc_convert_job *j, ulc_ctx *ctx) {
    ulc_fileset fs;
    ulc_fileset_begin(&fs, 0, ctx);
    fs.in_place = j->save.allow_overwrite_input;
    fs.in_place_option = 1;
    return ulc_fileset_end(&fs, convert(j, &fs, ctx), ctx);
}
