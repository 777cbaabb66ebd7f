/*
 * io/text_data.h — text data (docs/spec.md, "Text data"): JSONL files (one JSON object a line,
 * `text` required, `label` and `id` optional) and plain text files (one text a line), read into
 * texts with their line numbers; and the dataset made of them with a model's tokenizer, bound
 * to the model's `input_ids` / `attention_mask` as io/data.h binds safetensors columns, so that
 * everything downstream (methods, scoring, reports) sees int64 columns as it does for a
 * safetensors file.
 *
 * Rows are texts, never packed: each text is tokenized on its own (text/tokenizer.h,
 * ulc_tokenizer_encode_rows), right-padded with attention_mask 0 to the longest row (or to the
 * model's fixed sequence length), one row per text, or one per window with overflow "windows".
 *
 *     ulc_text_opts to = {.tokenizer = NULL, .overflow = ULC_OVERFLOW_ERROR};  // IN's directory
 *     ulc_tokenizer *tk = NULL;
 *     ulc_data tr = {0};
 *     ulc_data_load_any("data.train", "train.jsonl", "gpt2_dir", &f, &to, &tk, &tr, ctx);
 *     ... tr.d (columns), tr.text->text_of[row], tr.text->line[text] ...
 *     ulc_data_clear(&tr);
 *     ulc_tokenizer_free(tk);
 */
#ifndef ULC_IO_TEXT_DATA_H
#define ULC_IO_TEXT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "io/data.h"
#include "text/tokenizer.h"

/* A data file's kind, by its name: ".jsonl" or ".txt" (any case) are text, anything else is
 * safetensors. */
typedef enum ulc_text_format { ULC_TEXT_NONE = 0, ULC_TEXT_JSONL, ULC_TEXT_TXT } ulc_text_format;
ulc_text_format ulc_text_format_of(const char *path);

/* The texts of one file, in file order. Blank lines (nothing but spaces, tabs and a trailing
 * '\r') are skipped and take no index; every other line is a text. A UTF-8 byte order mark at
 * the start of the file is skipped. */
typedef struct ulc_texts {
    const char *path;  /* the file (borrowed), for messages */
    int64_t n;
    char **text;       /* [n] NUL-terminated (malloc'd); len[i] bytes of valid UTF-8, not empty */
    size_t *len;       /* [n] */
    int64_t *line;     /* [n] the 1-based line it is on */
    int64_t *label;    /* [n] JSONL `label` (an integer >= 0), or -1 where not given */
    int64_t n_labels;  /* texts with a label */
    char **id;         /* [n] JSONL `id` as written (a string, or an integer's digits), or NULL */
    int64_t cap;
} ulc_texts;

/* Parses bytes[0..n) (the whole file at path) as fmt. Errors (ULC_ERR_INVALID) name the file and
 * line: "PATH:LINE: ..." — an empty file (no texts), invalid UTF-8 (with the byte offset in the
 * line and in the file), a JSONL line that is not JSON, not an object, has no `text` or a `text`
 * that is not a non-empty string, a `label` that is not an integer >= 0, an `id` that is neither
 * a string nor an integer, or an `id` given twice. */
ulc_status ulc_texts_parse(const char *path, ulc_text_format fmt, const char *bytes, size_t n,
                           ulc_texts *t, ulc_ctx *ctx);
/* Reads the file at path (its format by name) and parses it. */
ulc_status ulc_texts_read(const char *path, ulc_texts *t, ulc_ctx *ctx);
void ulc_texts_clear(ulc_texts *t); /* accepts a zeroed struct */

/* "error", "truncate", "windows" as ulc_overflow, or -1. */
int ulc_text_overflow_parse(const char *s);
/* The name of an ulc_overflow. */
const char *ulc_text_overflow_name(ulc_overflow o);

/* How texts become rows (the spec's model.max_length, model.overflow, model.stride,
 * model.tokenizer and forget.file). */
typedef struct ulc_text_opts {
    const char *tokenizer;     /* a tokenizer.json or a directory; NULL: the model's directory */
    int64_t max_length;        /* 0: the model's context (ulc_text_context) */
    ulc_overflow overflow;     /* text/tokenizer.h: error (default), truncate or windows */
    int64_t stride;            /* windows: tokens each window shares with the one before */
    const char *forget_file;   /* data.train only: forget.file, or NULL */
    const char *where;         /* the spec (messages about its keys), or NULL */
} ulc_text_opts;

/* What a dataset made from text holds beyond its columns (ulc_data.text). Texts are the data
 * file's, then forget.file's that match none of them (appended as forget rows). */
typedef struct ulc_data_text {
    ulc_texts file;            /* the data file's texts */
    ulc_texts forget_texts;    /* forget.file's texts (n = 0 without one) */
    int64_t n_texts;           /* file.n + appended */
    int64_t n_appended;        /* forget.file's texts not in the data file (rows appended) */
    int64_t n_matched;         /* forget.file's texts equal to one (or more) of the data file's */
    const char **text;         /* [n_texts] each text (borrowed from file / forget) */
    size_t *len;               /* [n_texts] */
    const char **src;          /* [n_texts] the file it was read from */
    int64_t *line;             /* [n_texts] its line there */
    const char **id;           /* [n_texts] its JSONL `id` as written, or NULL */
    uint8_t *forget;           /* [n_texts] named by forget.file, or NULL without one */
    int64_t *labels;           /* [n_texts] each text's label, or NULL without labels */
    int64_t *text_of;          /* [rows] the text each row was made from (rows.text_of) */
    int64_t max_length, width; /* the rows' limit and width (width <= max_length) */
    int64_t context;           /* the model's context, or 0 when unknown */
    const char *tokenizer;     /* the tokenizer's file (for reports; the tokenizer's string) */
    ulc_tok_rows rows;         /* ids, mask, text_of, length (tokens before padding) [rows] */
    int64_t *row_label;        /* [rows] the label column's data, or NULL */
    ulc_tensor cols[3];        /* input_ids, attention_mask, label (what ulc_data.d points at) */
    int64_t dims[3][2];
} ulc_data_text;

void ulc_data_text_free(ulc_data_text *t); /* accepts NULL (ulc_data_clear calls it) */

/* The model's context: config.json's n_positions, n_ctx or max_position_embeddings when
 * model_path is a Hugging Face directory, else the fixed second dim of f's main input; 0 when
 * neither says. */
int64_t ulc_text_context(const char *model_path, const ulc_iface *f);

/* The tokenizer: o->tokenizer, else model_path when it is a directory holding tokenizer.json (or
 * vocab.json + merges.txt); otherwise ULC_ERR_INVALID saying that `data` (a text file) needs one. */
ulc_status ulc_text_tokenizer(const ulc_text_opts *o, const char *model_path, const char *data,
                              ulc_tokenizer **tk, ulc_ctx *ctx);

/* Reads the text file at path, tokenizes it with tk and binds it to f (model_path names the
 * model): df->d gets `input_ids` (named after the main input), `attention_mask` (when the model
 * has that input) and `label` (when every text has one), df->text the rest. Every error names the
 * file and line; nothing is half-made (ulc_data_clear frees it either way). */
ulc_status ulc_data_load_text(const char *key, const char *path, const char *model_path,
                              const ulc_iface *f, ulc_tokenizer *tk, const ulc_text_opts *o,
                              ulc_data *df, ulc_ctx *ctx);

/* Any data file: text (by name) through ulc_data_load_text, loading *tk on first use
 * (ulc_text_tokenizer), else safetensors through ulc_data_load. o may be NULL (defaults). */
ulc_status ulc_data_load_any(const char *key, const char *path, const char *model_path,
                             const ulc_iface *f, const ulc_text_opts *o, ulc_tokenizer **tk,
                             ulc_data *df, ulc_ctx *ctx);

#endif
