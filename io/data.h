/*
 * io/data.h — datasets: safetensors files of named columns (docs/spec.md, "Data"), and their
 * binding to a model's inputs.
 *
 * A data file holds float32/int64 tensors with a common first dim (rows): the model's input
 * under `input`, `input_ids` or the input's own name (e.g. `pixel_values`), further inputs under
 * their own names (`attention_mask`), and `label` (int64 [rows]). The interface (ulc_iface) says
 * which model inputs are fed and which output is scored; ulc_data_load binds each fed input to
 * its column and checks dtype, rank and fixed dims against the model's declaration. The bound
 * dataset (ulc_data.d) names every fed column after the input it feeds, so trainers and
 * methods find it by the model's own input name, whatever the file called it.
 *
 *     ulc_iface f;
 *     ulc_iface_resolve(m, "in.onnx", NULL, NULL, NULL, &f, ctx);   // the only input/output
 *     ulc_data tr = {0};
 *     ulc_data_load("data.train", "train.safetensors", "in.onnx", &f, &tr, ctx);
 *     ... tr.d (columns), tr.cols[k] (fed input k's column), tr.label ...
 *     ulc_data_clear(&tr);
 */
#ifndef ULC_IO_DATA_H
#define ULC_IO_DATA_H

#include <stdint.h>

#include "common/sha256.h"
#include "common/status.h"
#include "ir/graph.h"
#include "ir/dataset.h"

/* graph inputs a model may need fed (input_ids, attention_mask, ..., a cache's pasts: two a
 * layer) */
#define ULC_IO_MAX_FED 256

/* Which model inputs are fed and which output is scored.
 *
 * A model with a cache (optimum's past/present interface, io/decoder.h: inputs
 * past_key_values.{i}.key/.value, outputs present.{i}.*) is scored on whole rows with every
 * past empty, [rows, heads, 0, head_dim]: its pasts are the last n_past fed inputs, and their
 * columns, and position_ids' when the data has none (0, 1, ... in every row), are made by
 * ulc_data_load, not read from the data. Its output is `logits` unless named. */
typedef struct ulc_iface {
    const ulc_value *fed[ULC_IO_MAX_FED]; /* fed[0] is the main input */
    int n_fed;
    const ulc_value *out;
    int next_token;  /* a text model scored (and trained) on next-token prediction */
    int mask;        /* index in fed of attention_mask, or -1 */
    int n_past;      /* fed[n_fed - n_past ..] are a cache's pasts (fed empty) */
    int pos;         /* a model with a cache: index in fed of position_ids, or -1 */
    int64_t classes; /* the output's last dim (set by the first run: ulc_eval_probe) */
} ulc_iface;

/* The inputs to feed (not defaulted by an initializer) and the output to score: `input` and
 * `output` name them (NULL: the only ones; a text model's input_ids is the main input when there
 * are several). `where` names the setting for messages (e.g. "spec.json: key 'model.input'";
 * NULL: "model.input"); model_path names the model. */
ulc_status ulc_iface_resolve(const ulc_model *m, const char *model_path, const char *input,
                             const char *output, const char *where, ulc_iface *f, ulc_ctx *ctx);

/* A loaded data file. */
typedef struct ulc_data {
    const char *key;  /* what the file is for, in messages ("data.train") */
    const char *path;
    ulc_model *m;     /* the safetensors file, weights-only (owned) */
    ulc_dataset d;    /* its columns (fed columns named after their inputs when bound) */
    const ulc_tensor *cols[ULC_IO_MAX_FED]; /* bound: the column each fed input reads */
    const ulc_tensor *label; /* int64 [rows], or NULL */
    int64_t rows;
    char sha[ULC_SHA256_HEX]; /* filled by the caller when it hashes the file */
    /* text data (io/text_data.h): the texts, each row's text and line, the tokenizer; the
     * columns above point into it (owned); NULL for a safetensors file */
    struct ulc_data_text *text;
    struct ulc_data_made *made; /* columns made, not read: empty pasts, positions (owned) */
} ulc_data;

/* Opens a safetensors data file as columns (every tensor a column; checked: rank >= 1, one row
 * count). */
ulc_status ulc_data_open(const char *key, const char *path, ulc_data *df, ulc_ctx *ctx);
/* Opens and binds to f: the main input reads `input`, `input_ids` or its own name; the others
 * their own names; dtype, rank and fixed dims must match the model's declaration (messages name
 * the file, key, tensor and model_path's input); `label`, when present, must be int64 [rows]. */
ulc_status ulc_data_load(const char *key, const char *path, const char *model_path,
                         const ulc_iface *f, ulc_data *df, ulc_ctx *ctx);
/* 1 when fed input k is fed from a column ulc makes (a cache's past, a cache model's
 * position_ids) rather than from the data: ulc_data_load leaves it to ulc_data_make. */
int ulc_iface_made(const ulc_iface *f, int k);
/* The made columns of df (rows, and width: the main input's second dim) for every fed input
 * ulc_iface_made says, bound in df->cols and added to df->d under the inputs' names. For
 * ulc_data_load and text data (io/text_data.c); position_ids read from the data stay. */
ulc_status ulc_data_make(ulc_data *df, const ulc_iface *f, ulc_ctx *ctx);
/* Frees what open/load made (accepts a zeroed struct). */
void ulc_data_clear(ulc_data *df);

/* label[i] (the file's bytes may be unaligned). */
int64_t ulc_data_label(const ulc_data *df, int64_t i);

/* "f32[N,1,8,8]" for a value's declared type / a tensor, into buf. */
const char *ulc_value_shape_str(const ulc_value *v, char *buf, size_t n);
const char *ulc_tensor_shape_str(const ulc_tensor *t, char *buf, size_t n);

#endif
