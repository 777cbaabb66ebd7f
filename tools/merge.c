/*
 * merge.c — `ulc merge BASE --lora ADAPTER[:WEIGHT] [--lora …] -o OUT`: bake PEFT LoRA adapters
 * into a safetensors file, a Hugging Face checkpoint directory, or an ONNX model, and write the
 * result in the base's format.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "export/onnx_export.h"
#include "export/safetensors_export.h"
#include "import/onnx_import.h"
#include "import/peft_import.h"
#include "import/safetensors_import.h"
#include "passes/lora_merge.h"
#include "tools/cli.h"

#define MAX_ADAPTERS 64

static int usage(const char *msg, const char *arg) {
    fprintf(stderr, "ulc: error: merge: %s%s%s\n(see 'ulc --help')\n", msg, arg ? " " : "",
            arg ? arg : "");
    return ULC_EXIT_USAGE;
}

/* The tied-embedding pair of an HF checkpoint, from its config.json. */
typedef struct hf_config {
    cJSON *json;
    int tied;
    const char *input, *output;
    const char *const *conv1d; /* modules stored [in, out] */
} hf_config;

static void read_hf_config(const char *dir, hf_config *hc) {
    memset(hc, 0, sizeof *hc);
    char *p = ulc_path_join(dir, "config.json");
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_mapping *m = NULL;
    if (p && ulc_path_exists(p) && ulc_mapping_open(p, "config", &m, &ctx) == ULC_OK) {
        hc->json = cJSON_ParseWithLength((const char *)m->data, m->size);
        ulc_mapping_unref(m);
    }
    free(p);
    if (!hc->json) return;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(hc->json, "tie_word_embeddings");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(hc->json, "model_type");
    hc->tied = !cJSON_IsFalse(tie); /* transformers' default is True */
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "gpt2") == 0) {
        static const char *const conv1d[] = {"c_attn", "c_proj", "c_fc", "q_attn", NULL};
        hc->input = "transformer.wte.weight";
        hc->output = "lm_head.weight";
        hc->conv1d = conv1d;
    }
}

/* Copies every file of src but the weights (config, tokenizer, ...) into dst. */
static ulc_status copy_side_files(const char *src, const char *dst, const hf_config *hc,
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
        else if (!ulc_path_is_dir(from)) {
            ulc_outfile *o = NULL;
            if (untied && strcmp(n, "config.json") == 0 && hc->json) {
                cJSON *c = cJSON_Duplicate(hc->json, 1);
                cJSON_DeleteItemFromObjectCaseSensitive(c, "tie_word_embeddings");
                cJSON_AddFalseToObject(c, "tie_word_embeddings");
                char *txt = cJSON_Print(c);
                s = ulc_outfile_open(to, &o, ctx);
                if (s == ULC_OK) s = ulc_outfile_write(o, txt, strlen(txt), ctx);
                if (s == ULC_OK) s = ulc_outfile_write(o, "\n", 1, ctx);
                free(txt);
                cJSON_Delete(c);
            } else {
                ulc_mapping *m = NULL;
                s = ulc_mapping_open(from, "file", &m, ctx);
                if (s == ULC_OK) s = ulc_outfile_open(to, &o, ctx);
                if (s == ULC_OK && m->size) s = ulc_outfile_copy_from(o, m->fd, 0, m->size, ctx);
                ulc_mapping_unref(m);
            }
            if (s == ULC_OK) {
                s = ulc_outfile_commit(o, ctx);
                o = NULL;
            }
            ulc_outfile_abort(o);
        }
        free(from);
        free(to);
    }
    closedir(d);
    return s;
}

int ulc_cli_merge(int argc, char **argv) {
    const char *base_path = NULL, *out = NULL;
    const char *adapters[MAX_ADAPTERS];
    double weights[MAX_ADAPTERS];
    int n_ad = 0, unmerge = 0, untie = 0, in_place = 0, quiet = 0, threads = 0;
    int starts[MAX_ADAPTERS + 1] = {0}; /* report entries of adapter i: [starts[i], starts[i+1]) */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (++i >= argc) return usage("-o needs a path", NULL);
            out = argv[i];
        } else if (strcmp(a, "--lora") == 0) {
            if (++i >= argc) return usage("--lora needs an adapter", NULL);
            if (n_ad == MAX_ADAPTERS) return usage("too many adapters", NULL);
            /* ADAPTER[:WEIGHT]: the part after the last ':' is a weight if it is a number */
            char *spec = argv[i], *colon = strrchr(spec, ':'), *end = NULL;
            weights[n_ad] = 1.0;
            if (colon && colon[1]) {
                double w = strtod(colon + 1, &end);
                if (end && *end == '\0') {
                    *colon = '\0';
                    weights[n_ad] = w;
                }
            }
            adapters[n_ad++] = spec;
        } else if (strcmp(a, "--unmerge") == 0) {
            unmerge = 1;
        } else if (strcmp(a, "--untie-embeddings") == 0) {
            untie = 1;
        } else if (strcmp(a, "--in-place") == 0) {
            in_place = 1;
        } else if (strcmp(a, "--threads") == 0) {
            char *end = NULL;
            long t = ++i < argc ? strtol(argv[i], &end, 10) : 0;
            if (i >= argc || !end || *end || t < 1 || t > 64)
                return usage("--threads needs a number from 1 to 64", i < argc ? argv[i] : NULL);
            threads = (int)t;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            return usage("unknown option", a);
        } else if (base_path) {
            return usage("more than one base model given:", a);
        } else {
            base_path = a;
        }
    }
    if (!base_path) return usage("no base model given", NULL);
    if (!n_ad) return usage("no adapter given (--lora ADAPTER[:WEIGHT])", NULL);
    if (!out) return usage("no output given (-o OUT)", NULL);

    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    int base_dir = ulc_path_is_dir(base_path);
    size_t bl = strlen(base_path);
    int base_onnx = !base_dir && !(bl > 12 && strcmp(base_path + bl - 12, ".safetensors") == 0);
    if (base_onnx) {
        FILE *f = fopen(base_path, "rb");
        unsigned char head[16];
        size_t n = f ? fread(head, 1, sizeof head, f) : 0;
        if (f) fclose(f);
        base_onnx = !ulc_safetensors_sniff(head, n);
    }
    ulc_model *m = NULL;
    ulc_status s = base_onnx ? ulc_onnx_import(base_path, &m, &ctx)
                             : ulc_safetensors_import(base_path, &m, &ctx);
    if (s != ULC_OK) return ulc_cli_report(&ctx);

    hf_config hc = {0};
    if (base_dir) read_hf_config(base_path, &hc);
    ulc_lora_merge_report rep = {0};
    for (int i = 0; s == ULC_OK && i < n_ad; i++) {
        ulc_lora_adapter *ad = NULL;
        s = ulc_peft_import(adapters[i], &ad, &ctx);
        if (s != ULC_OK) break;
        /* deferred: merged tensors are produced while the output is written */
        ulc_lora_merge_opts mo = {weights[i], unmerge, NULL, NULL, untie, hc.conv1d, threads, 1};
        if (hc.tied && hc.input && ulc_graph_get_value(m->graph, hc.input) &&
            !ulc_graph_get_value(m->graph, hc.output)) {
            mo.tied_input = hc.input;
            mo.tied_output = hc.output;
        }
        starts[i] = rep.n;
        s = ulc_lora_merge(m, ad, &mo, &rep, &ctx);
        starts[i + 1] = rep.n;
        ulc_lora_adapter_free(ad);
    }

    /* write in the base's format (merged tensors are produced as they are written) */
    if (s == ULC_OK) {
        if (base_onnx) {
            ulc_onnx_export_opts eo = ulc_onnx_export_defaults();
            eo.allow_overwrite_input = in_place;
            s = ulc_onnx_export(m, out, &eo, &ctx);
        } else if (base_dir) {
            int made = 0;
            if (!ulc_path_is_dir(out)) {
                if (mkdir(out, 0777) != 0)
                    s = ulc_fail(&ctx, ULC_ERR_IO, "%s: cannot create output directory: %s", out,
                                 strerror(errno));
                else made = 1;
            }
            char *file = s == ULC_OK ? ulc_path_join(out, "model.safetensors") : NULL;
            ulc_safetensors_export_opts so = {.allow_overwrite_input = in_place};
            int wrote = 0;
            if (s == ULC_OK) wrote = (s = ulc_safetensors_export(m, file, &so, &ctx)) == ULC_OK;
            if (s == ULC_OK && !ulc_path_same_file(base_path, out))
                s = copy_side_files(base_path, out, &hc, rep.untied, &ctx);
            if (s != ULC_OK && wrote) unlink(file); /* ours, and incomplete without its config */
            if (s != ULC_OK && made) rmdir(out);
            free(file);
        } else {
            ulc_safetensors_export_opts so = {.allow_overwrite_input = in_place};
            s = ulc_safetensors_export(m, out, &so, &ctx);
        }
    }
    for (int i = 0; s == ULC_OK && !quiet && i < n_ad; i++) {
        printf("%s %s (weight %g): %d tensors\n", unmerge ? "unmerged" : "merged", adapters[i],
               weights[i], starts[i + 1] - starts[i]);
        for (int k = starts[i]; k < starts[i + 1]; k++)
            printf("  %-48s max |delta| %.6g%s%s\n", rep.entries[k].tensor,
                   rep.entries[k].max_abs_delta, rep.entries[k].transposed ? "  (stored [in,out])" : "",
                   rep.entries[k].replaced ? "  (replaced)" : "");
    }
    if (s == ULC_OK && rep.untied && !quiet)
        printf("untied: '%s' now has its own copy of '%s' (tie_word_embeddings set to false)\n",
               hc.output, hc.input);
    cJSON_Delete(hc.json);
    ulc_lora_merge_report_clear(&rep);
    ulc_model_free(m);
    if (s != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}
