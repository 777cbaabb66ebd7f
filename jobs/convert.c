/* convert.c — `ulc convert`: read, passes, write (jobs/convert.h). */
#include "jobs/convert.h"

#include "common/fileset.h"
#include "export/peft_export.h"
#include "io/decoder.h"
#include "methods/method.h"

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
