/*
 * io/model.h — models in and out by format: the one place that decides a model's format.
 *
 * Input formats are told apart by content: a directory is a Hugging Face checkpoint (config.json
 * + safetensors; a torchvision ResNet state_dict is recognised by its tensor names), a .json
 * index or a .safetensors name or a file that starts like one is safetensors, anything else is
 * ONNX. Output formats are told by name: ".onnx", ".safetensors", or a directory (an existing
 * one, or a name ending in '/') that receives model.safetensors (+ config.json).
 *
 *     ulc_model *m = NULL;
 *     if (ulc_io_load_model("in.onnx", NULL, &m, ctx) != ULC_OK) ...
 *     ulc_io_format fmt;
 *     if (ulc_io_output_format("out.onnx", &fmt, ctx) != ULC_OK) ...
 *     ulc_io_save_model(m, "out.onnx", fmt, NULL, ctx);
 *     ulc_model_free(m);
 */
#ifndef ULC_IO_MODEL_H
#define ULC_IO_MODEL_H

#include "common/status.h"
#include "ir/graph.h"

typedef enum ulc_io_format {
    ULC_IO_ONNX = 0,
    ULC_IO_SAFETENSORS, /* one file, or a sharded index (.json) */
    ULC_IO_DIR          /* a Hugging Face checkpoint directory */
} ulc_io_format;

/* "an ONNX file (.onnx)", "a .safetensors file", "a directory (a name ending in '/')". */
const char *ulc_io_format_describe(ulc_io_format f);

/* Whether a file (not a directory) reads as safetensors: a .json index or .safetensors name,
 * else its first bytes. */
int ulc_io_is_safetensors_file(const char *path);
/* The format of an existing input, by content (see the top of this file). */
ulc_io_format ulc_io_input_format(const char *path);
/* The format an output path asks for, by name; ULC_ERR_INVALID_ARG naming the path when it
 * cannot be told. */
ulc_status ulc_io_output_format(const char *out, ulc_io_format *fmt, ulc_ctx *ctx);

typedef struct ulc_load_opts {
    int weights_only; /* 1: safetensors files and directories as weights (no graph built) */
} ulc_load_opts;

/* Imports the model at path in its format (opts may be NULL). The caller frees *m with
 * ulc_model_free. */
ulc_status ulc_io_load_model(const char *path, const ulc_load_opts *opts, ulc_model **m,
                             ulc_ctx *ctx);

typedef struct ulc_save_opts {
    int allow_overwrite_input; /* the output may replace a file the model reads (--in-place) */
    int external_data;         /* ONNX: weights in OUT.data */
} ulc_save_opts;

/* Writes m to out in fmt (opts may be NULL): ONNX, safetensors, or a Hugging Face directory
 * (model.safetensors + config.json from the model's metadata). Atomic: temp + rename. */
ulc_status ulc_io_save_model(ulc_model *m, const char *out, ulc_io_format fmt,
                             const ulc_save_opts *opts, ulc_ctx *ctx);

/* The file whose bytes stand for a model: the file itself, or a directory's model.safetensors
 * (its index for a sharded checkpoint). malloc'd; NULL when out of memory. */
char *ulc_io_model_main_file(const char *path, ulc_io_format fmt);

/* The directory a file or directory output will be written in must exist (checked before any
 * work): ULC_ERR_IO "WHAT 'PATH': the directory 'D' does not exist". */
ulc_status ulc_io_check_out_dir(const char *what, const char *path, int is_dir, ulc_ctx *ctx);

/* Whether two models have the same inputs and outputs: names, dtypes and dims (symbolic ones by
 * name). *which gets "inputs" or "outputs" for the first difference. */
int ulc_io_same_interface(const ulc_model *a, const ulc_model *b, const char **which);

/* The shared output check (common/fileset.h) over every file writing a model to out in fmt
 * makes: out (and out.data for ONNX), or DIR/model.safetensors and DIR/config.json. */
struct ulc_fileset;
ulc_status ulc_io_check_model_output(const struct ulc_fileset *s, const char *what,
                                     const char *out, ulc_io_format fmt, ulc_ctx *ctx);

#endif
