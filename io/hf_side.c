/* io/hf_side.c — a checkpoint directory's side files copied to an output directory (hf_side.h). */
#include "io/hf_side.h"

#include <stdlib.h>

#include "common/file.h"

const char *const ulc_io_side_files[] = {"tokenizer.json", "vocab.json", "merges.txt",
                                         "tokenizer_config.json", "special_tokens_map.json",
                                         "added_tokens.json", "generation_config.json", NULL};

/* Whether there is anything to copy from in_dir to out_dir. */
static int copies(const char *in_dir, const char *out_dir) {
    return in_dir && out_dir && ulc_path_is_dir(in_dir) &&
           !(ulc_path_exists(out_dir) && ulc_path_same_file(in_dir, out_dir));
}

ulc_status ulc_io_check_side_outputs(const ulc_fileset *fs, const char *what, const char *in_dir,
                                     const char *out_dir, ulc_ctx *ctx) {
    if (!copies(in_dir, out_dir)) return ULC_OK;
    ulc_status st = ULC_OK;
    for (int k = 0; st == ULC_OK && ulc_io_side_files[k]; k++) {
        char *from = ulc_path_join(in_dir, ulc_io_side_files[k]);
        char *to = ulc_path_join(out_dir, ulc_io_side_files[k]);
        if (!from || !to) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        else if (ulc_path_exists(from)) st = ulc_fileset_check_output(fs, what, to, ctx);
        free(from);
        free(to);
    }
    return st;
}

/* Copies the file from into to, atomically. */
static ulc_status copy_file(const char *from, const char *to, ulc_ctx *ctx) {
    ulc_outfile *o = NULL;
    ulc_mapping *m = NULL;
    ulc_status st = ulc_mapping_open(from, "file", &m, ctx);
    if (st == ULC_OK) st = ulc_outfile_open(to, &o, ctx);
    if (st == ULC_OK && m->size) st = ulc_outfile_copy_from(o, m->fd, 0, m->size, ctx);
    if (st == ULC_OK) {
        st = ulc_outfile_commit(o, ctx);
        o = NULL;
    }
    ulc_outfile_abort(o);
    ulc_mapping_unref(m);
    return st;
}

ulc_status ulc_io_copy_side_files(const char *in_dir, const char *out_dir, ulc_ctx *ctx) {
    if (!copies(in_dir, out_dir)) return ULC_OK;
    ulc_status st = ULC_OK;
    for (int k = 0; st == ULC_OK && ulc_io_side_files[k]; k++) {
        char *from = ulc_path_join(in_dir, ulc_io_side_files[k]);
        char *to = ulc_path_join(out_dir, ulc_io_side_files[k]);
        if (!from || !to) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        else if (ulc_path_exists(from) && !ulc_path_is_dir(from)) st = copy_file(from, to, ctx);
        free(from);
        free(to);
    }
    return st;
}
