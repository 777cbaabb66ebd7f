/* io/model.c — models in and out by format (model.h). */
#include "io/model.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/fileset.h"
#include "export/hf_export.h"
#include "export/onnx_export.h"
#include "export/safetensors_export.h"
#include "import/hf/hf_import.h"
#include "import/onnx_import.h"
#include "import/safetensors_import.h"

static const char *const k_format_name[] = {"an ONNX file (.onnx)", "a .safetensors file",
                                            "a directory (a name ending in '/')"};

const char *ulc_io_format_describe(ulc_io_format f) {
    return (unsigned)f < sizeof k_format_name / sizeof *k_format_name ? k_format_name[f] : "?";
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int ulc_io_is_safetensors_file(const char *path) {
    if (ends_with(path, ".json") || ends_with(path, ".safetensors")) return 1;
    unsigned char head[16];
    ssize_t n = 0;
    /* never blocks: a FIFO or device is left to the importer, which refuses it by name */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) n = pread(fd, head, sizeof head, 0);
    if (fd >= 0) close(fd);
    return ulc_safetensors_sniff(head, n > 0 ? (size_t)n : 0);
}

ulc_io_format ulc_io_input_format(const char *path) {
    if (ulc_path_is_dir(path)) return ULC_IO_DIR;
    return ulc_io_is_safetensors_file(path) ? ULC_IO_SAFETENSORS : ULC_IO_ONNX;
}

ulc_status ulc_io_output_format(const char *out, ulc_io_format *fmt, ulc_ctx *ctx) {
    if (ulc_path_is_dir(out) || ends_with(out, "/")) *fmt = ULC_IO_DIR;
    else if (ends_with(out, ".onnx")) *fmt = ULC_IO_ONNX;
    else if (ends_with(out, ".safetensors")) *fmt = ULC_IO_SAFETENSORS;
    else
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "cannot tell the output format of '%s' "
                        "(expected a name ending in .onnx or .safetensors, or a directory)", out);
    return ULC_OK;
}

ulc_status ulc_io_load_model(const char *path, const ulc_load_opts *opts, ulc_model **m,
                             ulc_ctx *ctx) {
    int weights_only = opts && opts->weights_only;
    int dir = ulc_path_is_dir(path);
    if (dir && !weights_only && ulc_hf_is_supported(path)) return ulc_hf_import(path, m, ctx);
    if (!dir && !ulc_io_is_safetensors_file(path)) return ulc_onnx_import(path, m, ctx);
    ULC_TRY(ulc_safetensors_import(path, m, ctx));
    if (weights_only) return ULC_OK;
    /* weights alone; a known naming (torchvision ResNet) gets its graph */
    int built = 0;
    ulc_status s = ulc_hf_build_from_names(*m, &built, ctx);
    if (s != ULC_OK) {
        ulc_model_free(*m);
        *m = NULL;
    }
    return s;
}

ulc_status ulc_io_save_model(ulc_model *m, const char *out, ulc_io_format fmt,
                             const ulc_save_opts *opts, ulc_ctx *ctx) {
    ulc_save_opts none = {0};
    if (!opts) opts = &none;
    if (fmt == ULC_IO_ONNX) {
        ulc_onnx_export_opts eo = ulc_onnx_export_defaults();
        eo.allow_overwrite_input = opts->allow_overwrite_input;
        eo.external_data = opts->external_data;
        return ulc_onnx_export(m, out, &eo, ctx);
    }
    if (opts->external_data)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: external data applies to ONNX output only",
                        out);
    ulc_safetensors_export_opts so = {.allow_overwrite_input = opts->allow_overwrite_input};
    if (fmt == ULC_IO_SAFETENSORS) return ulc_safetensors_export(m, out, &so, ctx);
    return ulc_hf_export(m, out, &so, ctx);
}

char *ulc_io_model_main_file(const char *path, ulc_io_format fmt) {
    if (fmt != ULC_IO_DIR) return strdup(path);
    char *p = ulc_path_join(path, "model.safetensors");
    if (p && !ulc_path_exists(p)) {
        free(p);
        p = ulc_path_join(path, "model.safetensors.index.json");
    }
    return p;
}

ulc_status ulc_io_check_out_dir(const char *what, const char *path, int is_dir, ulc_ctx *ctx) {
    char *trim = strdup(path);
    if (!trim) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    size_t n = strlen(trim);
    while (is_dir && n > 1 && trim[n - 1] == '/') trim[--n] = '\0';
    char *dir = ulc_path_dirname(trim);
    ulc_status st = ULC_OK;
    if (!dir) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    else if (!ulc_path_is_dir(dir))
        st = ulc_fail(ctx, ULC_ERR_IO, "%s '%s': the directory '%s' does not exist", what, path,
                      dir);
    else /* writable now, without creating anything: temporaries come when it is written */
        st = ulc_path_check_writable_dir(what, is_dir && ulc_path_is_dir(trim) ? trim : dir, ctx);
    free(dir);
    free(trim);
    return st;
}

static int same_value(const ulc_value *u, const ulc_value *v) {
    if (strcmp(u->name, v->name) != 0 || u->dtype != v->dtype || u->rank != v->rank) return 0;
    for (int d = 0; d < u->rank; d++)
        if (u->dims[d].value != v->dims[d].value || !u->dims[d].param != !v->dims[d].param ||
            (u->dims[d].param && strcmp(u->dims[d].param, v->dims[d].param) != 0))
            return 0;
    return 1;
}

int ulc_io_same_interface(const ulc_model *a, const ulc_model *b, const char **which) {
    for (int outputs = 0; outputs < 2; outputs++) {
        const ulc_ptrvec *x = outputs ? &a->graph->outputs : &a->graph->inputs;
        const ulc_ptrvec *y = outputs ? &b->graph->outputs : &b->graph->inputs;
        int same = x->len == y->len;
        for (size_t i = 0; same && i < x->len; i++) same = same_value(x->items[i], y->items[i]);
        if (!same) {
            *which = outputs ? "outputs" : "inputs";
            return 0;
        }
    }
    return 1;
}

ulc_status ulc_io_check_model_output(const ulc_fileset *s, const char *what, const char *out,
                                     ulc_io_format fmt, ulc_ctx *ctx) {
    static const char *const dir_files[] = {"model.safetensors", "config.json"};
    ULC_TRY(ulc_fileset_check_output(s, what, out, ctx)); /* (a "directory" may be a file) */
    if (fmt == ULC_IO_SAFETENSORS) return ULC_OK;
    for (size_t i = 0; i < 2; i++) {
        char *p = NULL;
        if (fmt == ULC_IO_DIR) {
            p = ulc_path_join(out, dir_files[i]);
        } else if (i == 0 && (p = malloc(strlen(out) + 6))) {
            sprintf(p, "%s.data", out);
        } else if (i) {
            break;
        }
        if (!p) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        ulc_status st = ulc_fileset_check_output(s, what, p, ctx);
        free(p);
        ULC_TRY(st);
    }
    return ULC_OK;
}
