/*
 * io/hf_side.h — the files of a Hugging Face directory beside the weights and config.json that a
 * complete checkpoint carries: the tokenizer's (tokenizer.json, vocab.json, merges.txt,
 * tokenizer_config.json, special_tokens_map.json, added_tokens.json) and generation_config.json.
 * A job that writes a directory from a directory copies them (as `ulc merge` copies a base's side
 * files), so that `from_pretrained` finds OUT complete.
 *
 *     ulc_io_check_side_outputs(&fs, "output", "in_dir", "out_dir", ctx);   // before any work
 *     ...write out_dir/model.safetensors and config.json...
 *     ulc_io_copy_side_files("in_dir", "out_dir", ctx);
 */
#ifndef ULC_IO_HF_SIDE_H
#define ULC_IO_HF_SIDE_H

#include "common/fileset.h"
#include "common/status.h"

/* The side files' names (NULL-terminated). */
extern const char *const ulc_io_side_files[];

/* Each side file in_dir has must not be one the run reads (common/fileset.h): checked against
 * out_dir's file of the same name. Nothing to check when in and out are one directory. */
ulc_status ulc_io_check_side_outputs(const ulc_fileset *fs, const char *what, const char *in_dir,
                                     const char *out_dir, ulc_ctx *ctx);
/* Copies each side file in_dir has into out_dir (atomically, one by one); nothing when in_dir
 * is not a directory or is out_dir. */
ulc_status ulc_io_copy_side_files(const char *in_dir, const char *out_dir, ulc_ctx *ctx);

#endif
