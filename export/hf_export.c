/* hf_export.c — see hf_export.h. */
#include "export/hf_export.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"

const char *ulc_hf_config_text(const ulc_model *m) {
    return ulc_model_metadata(m, ULC_META_HF_CONFIG);
}

ulc_status ulc_hf_export(const ulc_model *m, const char *dir,
                         const ulc_safetensors_export_opts *opts, ulc_ctx *ctx) {
    ulc_safetensors_export_opts so = {0};
    if (opts) so = *opts;
    so.format_pt = 1;
    const char *config = ulc_hf_config_text(m);
    char *weights = ulc_path_join(dir, "model.safetensors");
    char *cfg_path = ulc_path_join(dir, "config.json");
    if (!weights || !cfg_path) {
        free(weights);
        free(cfg_path);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    int made_dir = 0;
    ulc_status s = ULC_OK;
    if (!ulc_path_is_dir(dir)) {
        if (mkdir(dir, 0777) != 0) s = ulc_fail(ctx, ULC_ERR_IO, "%s: cannot create output directory", dir);
        else made_dir = 1;
    }
    if (s == ULC_OK && config && !so.allow_overwrite_input && ulc_model_reads_file(m, cfg_path))
        s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: refusing to overwrite a file the input model "
                     "reads from (use --in-place)", cfg_path);
    /* config.json is written to its temporary first and renamed only once the weights are in */
    ulc_outfile *cf = NULL;
    if (s == ULC_OK && config) {
        s = ulc_outfile_open(cfg_path, &cf, ctx);
        if (s == ULC_OK) s = ulc_outfile_write(cf, config, strlen(config), ctx);
    }
    if (s == ULC_OK) s = ulc_safetensors_export(m, weights, &so, ctx);
    if (s == ULC_OK && cf) {
        s = ulc_outfile_commit(cf, ctx);
        cf = NULL;
    }
    ulc_outfile_abort(cf);
    if (s != ULC_OK && made_dir) rmdir(dir);
    free(weights);
    free(cfg_path);
    return s;
}
