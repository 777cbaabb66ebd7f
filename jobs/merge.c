/* merge.c — `ulc merge`: PEFT adapters baked into a base, in its format (jobs/merge.h). */
#include "jobs/merge.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/fileset.h"
#include "import/hf/hf_import.h"
#include "import/peft_import.h"
#include "io/model.h"
#include "passes/lora_merge.h"

/* What merging into a Hugging Face checkpoint needs from its config.json: the tied-embedding
 * pair and the modules stored [in, out] (GPT-2's Conv1D). */
typedef struct hf_hints {
    cJSON *json; /* config.json, or NULL when the directory has none */
    int tied;
    const char *input, *output;
    const char *const *conv1d;
} hf_hints;

static ulc_status read_hints(const char *dir, hf_hints *hc, ulc_ctx *ctx) {
    memset(hc, 0, sizeof *hc);
    char *p = ulc_path_join(dir, "config.json");
    if (!p) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    int has = ulc_path_exists(p);
    free(p);
    if (!has) return ULC_OK; /* weights alone */
    if (!(hc->json = ulc_hf_read_config(dir, NULL, ctx))) return ctx->status;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(hc->json, "tie_word_embeddings");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(hc->json, "model_type");
    hc->tied = !cJSON_IsFalse(tie); /* transformers' default is True */
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "gpt2") == 0) {
        static const char *const conv1d[] = {"c_attn", "c_proj", "c_fc", "q_attn", NULL};
        hc->input = "transformer.wte.weight";
        hc->output = "lm_head.weight";
        hc->conv1d = conv1d;
    }
    return ULC_OK;
}

/* config.json with tie_word_embeddings false, into the open output o. */
static ulc_status write_untied_config(const cJSON *json, ulc_outfile *o, ulc_ctx *ctx) {
    cJSON *c = cJSON_Duplicate(json, 1);
    char *txt = NULL;
    if (c) {
        cJSON_DeleteItemFromObjectCaseSensitive(c, "tie_word_embeddings");
        cJSON_AddFalseToObject(c, "tie_word_embeddings");
        txt = cJSON_Print(c);
    }
    ulc_status s = txt ? ulc_outfile_write(o, txt, strlen(txt), ctx)
                       : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (s == ULC_OK) s = ulc_outfile_write(o, "\n", 1, ctx);
    free(txt);
    cJSON_Delete(c);
    return s;
}

/* Copies the file from into to (config.json untied when asked). */
static ulc_status copy_side_file(const char *name, const char *from, const char *to,
                                 const hf_hints *hc, int untied, ulc_ctx *ctx) {
    ulc_outfile *o = NULL;
    ulc_status s = ulc_outfile_open(to, &o, ctx);
    if (s == ULC_OK && untied && strcmp(name, "config.json") == 0 && hc->json) {
        s = write_untied_config(hc->json, o, ctx);
    } else if (s == ULC_OK) {
        ulc_mapping *m = NULL;
        s = ulc_mapping_open(from, "file", &m, ctx);
        if (s == ULC_OK && m->size) s = ulc_outfile_copy_from(o, m->fd, 0, m->size, ctx);
        ulc_mapping_unref(m);
    }
    if (s == ULC_OK) {
        s = ulc_outfile_commit(o, ctx);
        o = NULL;
    }
    ulc_outfile_abort(o);
    return s;
}

/* Copies every file of src but the weights (config, tokenizer, ...) into dst. */
static ulc_status copy_side_files(const char *src, const char *dst, const hf_hints *hc,
                                  int untied, ulc_ctx *ctx) {
    DIR *d = opendir(src);
    if (!d) return ulc_fail(ctx, ULC_ERR_IO, "%s: cannot list directory: %s", src, strerror(errno));
    ulc_status s = ULC_OK;
    struct dirent *e;
    while (s == ULC_OK && (e = readdir(d))) {
        const char *n = e->d_name;
        size_t k = strlen(n);
        if (n[0] == '.' || (k > 12 && strcmp(n + k - 12, ".safetensors") == 0) ||
            strcmp(n, "model.safetensors.index.json") == 0)
            continue;
        char *from = ulc_path_join(src, n), *to = ulc_path_join(dst, n);
        if (!from || !to) s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        else if (!ulc_path_is_dir(from)) s = copy_side_file(n, from, to, hc, untied, ctx);
        free(from);
        free(to);
    }
    closedir(d);
    return s;
}

/* A checkpoint directory: model.safetensors and the base's other files into out (made when
 * missing; nothing of ours left behind on failure). */
static ulc_status write_dir(ulc_model *m, const ulc_merge_job *j, const hf_hints *hc, int untied,
                            ulc_ctx *ctx) {
    int made = 0;
    if (!ulc_path_is_dir(j->out)) {
        if (mkdir(j->out, 0777) != 0)
            return ulc_fail(ctx, ULC_ERR_IO, "%s: cannot create output directory: %s", j->out,
                            strerror(errno));
        made = 1;
    }
    char *file = ulc_path_join(j->out, "model.safetensors");
    ulc_save_opts so = {.allow_overwrite_input = j->in_place};
    int wrote = 0;
    ulc_status s = file ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (s == ULC_OK)
        wrote = (s = ulc_io_save_model(m, file, ULC_IO_SAFETENSORS, &so, ctx)) == ULC_OK;
    if (s == ULC_OK && !ulc_path_same_file(j->base, j->out))
        s = copy_side_files(j->base, j->out, hc, untied, ctx);
    if (s != ULC_OK && wrote) unlink(file); /* ours, and incomplete without its config */
    if (s != ULC_OK && made) rmdir(j->out);
    free(file);
    return s;
}

/* The per-tensor lines: adapter i's entries are [starts[i], starts[i + 1]). */
static void print_report(FILE *out, const ulc_merge_job *j, const ulc_lora_merge_report *rep,
                         const int *starts, const hf_hints *hc) {
    for (int i = 0; i < j->n_adapters; i++) {
        fprintf(out, "%s %s (weight %g): %d tensors\n", j->unmerge ? "unmerged" : "merged",
                j->adapters[i], j->weights[i], starts[i + 1] - starts[i]);
        for (int k = starts[i]; k < starts[i + 1]; k++)
            fprintf(out, "  %-48s max |delta| %.6g%s%s\n", rep->entries[k].tensor,
                    rep->entries[k].max_abs_delta,
                    rep->entries[k].transposed ? "  (stored [in,out])" : "",
                    rep->entries[k].replaced ? "  (replaced)" : "");
    }
    if (rep->untied)
        fprintf(out, "untied: '%s' now has its own copy of '%s' (tie_word_embeddings set to "
                "false)\n", hc->output, hc->input);
}

/* Each adapter in turn (deferred: merged tensors are produced while the output is written). */
static ulc_status merge_all(ulc_model *m, const ulc_merge_job *j, const hf_hints *hc,
                            ulc_lora_merge_report *rep, int *starts, ulc_ctx *ctx) {
    for (int i = 0; i < j->n_adapters; i++) {
        ulc_lora_adapter *ad = NULL;
        ULC_TRY(ulc_peft_import(j->adapters[i], &ad, ctx));
        ulc_lora_merge_opts mo = {j->weights[i], j->unmerge, NULL, NULL, j->untie, hc->conv1d,
                                  j->threads, 1};
        if (hc->tied && hc->input && ulc_graph_get_value(m->graph, hc->input) &&
            !ulc_graph_get_value(m->graph, hc->output)) {
            mo.tied_input = hc->input;
            mo.tied_output = hc->output;
        }
        starts[i] = rep->n;
        ulc_status s = ulc_lora_merge(m, ad, &mo, rep, ctx);
        starts[i + 1] = rep->n;
        ulc_lora_adapter_free(ad);
        ULC_TRY(s);
    }
    return ULC_OK;
}

/* Every file the merge writes — for a directory, model.safetensors and each side file of the
 * base under its name — against every file it read. */
static ulc_status check_outputs(const ulc_merge_job *j, ulc_io_format fmt, const ulc_fileset *fs,
                                ulc_ctx *ctx) {
    ULC_TRY(ulc_io_check_model_output(fs, "output", j->out, fmt, ctx));
    if (fmt != ULC_IO_DIR || ulc_path_same_file(j->base, j->out)) return ULC_OK;
    DIR *d = opendir(j->base);
    if (!d) return ULC_OK; /* the copy says why */
    ulc_status s = ULC_OK;
    struct dirent *e;
    while (s == ULC_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *to = ulc_path_join(j->out, e->d_name);
        s = to ? ulc_fileset_check_output(fs, "output", to, ctx)
               : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        free(to);
    }
    closedir(d);
    return s;
}

static ulc_status merge_files(const ulc_merge_job *j, ulc_fileset *fs, ulc_ctx *ctx) {
    ulc_io_format fmt = ulc_io_input_format(j->base);
    ulc_load_opts lo = {.weights_only = 1};
    ulc_model *m = NULL;
    ulc_fileset_tag(fs, "input model", 1);
    ULC_TRY(ulc_io_load_model(j->base, &lo, &m, ctx));
    hf_hints hc = {0};
    ulc_lora_merge_report rep = {0};
    int *starts = calloc((size_t)j->n_adapters + 1, sizeof *starts);
    ulc_status s = starts ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    if (s == ULC_OK && fmt == ULC_IO_DIR) s = read_hints(j->base, &hc, ctx);
    ulc_fileset_tag(fs, "adapter (--lora)", 0);
    if (s == ULC_OK) s = merge_all(m, j, &hc, &rep, starts, ctx);
    ulc_fileset_tag(fs, NULL, 0);
    if (s == ULC_OK) s = check_outputs(j, fmt, fs, ctx);
    /* written in the base's format (merged tensors are produced as they are written) */
    ulc_save_opts so = {.allow_overwrite_input = j->in_place};
    if (s == ULC_OK && fmt == ULC_IO_DIR) s = write_dir(m, j, &hc, rep.untied, ctx);
    else if (s == ULC_OK) s = ulc_io_save_model(m, j->out, fmt, &so, ctx);
    if (s == ULC_OK && j->report) print_report(j->report, j, &rep, starts, &hc);
    free(starts);
    cJSON_Delete(hc.json);
    ulc_lora_merge_report_clear(&rep);
    ulc_model_free(m);
    return s;
}

ulc_status ulc_merge_files(const ulc_merge_job *j, ulc_ctx *ctx) {
    ulc_fileset fs;
    ulc_fileset_begin(&fs, 0, ctx);
    fs.in_place = j->in_place;
    fs.in_place_option = 1;
    return ulc_fileset_end(&fs, merge_files(j, &fs, ctx), ctx);
}
