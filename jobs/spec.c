/* spec.c — requests: the forget spec parsed and checked (docs/spec.md), and the pipeline a
 * request runs (request.h). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "common/file.h"
#include "common/json.h"
#include "io/text_data.h"
#include "methods/method.h"
#include "jobs/request.h"
#include "jobs/spec_internal.h"

void ulc_request_clear(ulc_request *s) {
    ulc_pipeline_free(s->passes);
    ulc_pipeline_free(s->robust);
    free(s->dir);
    free(s->train);
    free(s->test);
    free(s->classes);
    free(s->indices);
    free(s->indices_file);
    free(s->forget_file);
    free(s->tokenizer);
    free(s->model_input);
    free(s->model_output);
    free(s->targets);
    free(s->include);
    free(s->exclude);
    free(s->report);
    free(s->reference);
    free(s->ssd_params);
    free(s->megu_similarity);
    ulc_clip_spec_clear(&s->clip);
}


/* "lora" + "rank" → "lora.rank" into buf. */
static const char *key_path(char *buf, size_t n, const char *prefix, const char *key) {
    snprintf(buf, n, "%s%s%s", prefix ? prefix : "", prefix && *prefix ? "." : "", key);
    return buf;
}

ulc_status ulc_spec_check_keys(const char *file, const cJSON *obj, const char *prefix,
                               const char *const *keys, ulc_ctx *ctx) {
    char kp[256];
    for (const cJSON *it = obj->child; it; it = it->next) {
        int known = 0;
        for (int i = 0; keys[i]; i++) known |= strcmp(it->string, keys[i]) == 0;
        if (!known) {
            char list[256] = "";
            size_t o = 0;
            for (int i = 0; keys[i] && o < sizeof list; i++)
                o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", keys[i]);
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: unknown key '%s' (expected %s%s%s%s)", file,
                            key_path(kp, sizeof kp, prefix, it->string),
                            prefix && *prefix ? "in '" : "", prefix && *prefix ? prefix : "",
                            prefix && *prefix ? "': " : "one of: ", list);
        }
        for (const cJSON *jt = it->next; jt; jt = jt->next)
            if (strcmp(it->string, jt->string) == 0)
                return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s' appears twice", file,
                                key_path(kp, sizeof kp, prefix, it->string));
    }
    return ULC_OK;
}

/* An object member that must be an object, or NULL when absent. */
static ulc_status get_object(const char *file, const cJSON *obj, const char *key,
                             const cJSON **out, ulc_ctx *ctx) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = it;
    if (it && !cJSON_IsObject(it))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': expected an object, got %s", file,
                        key, ulc_json_what(it));
    return ULC_OK;
}

static int json_is_int(const cJSON *it, double lo, double hi) {
    return cJSON_IsNumber(it) && it->valuedouble == floor(it->valuedouble) &&
           it->valuedouble >= lo && it->valuedouble <= hi;
}

static ulc_status get_int(const char *file, const cJSON *obj, const char *prefix, const char *key,
                          double lo, double hi, long long *out, ulc_ctx *ctx) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return ULC_OK; /* the default stays */
    char kp[256];
    if (!json_is_int(it, lo, hi)) {
        char got[64];
        if (cJSON_IsNumber(it)) snprintf(got, sizeof got, "%.17g", it->valuedouble);
        else snprintf(got, sizeof got, "%s", ulc_json_what(it));
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': expected an integer in [%.0f, %.0f], "
                        "got %s", file, key_path(kp, sizeof kp, prefix, key), lo, hi, got);
    }
    *out = (long long)it->valuedouble;
    return ULC_OK;
}

/* A number in [lo, hi] (lo excluded when open_lo). */
static ulc_status get_num(const char *file, const cJSON *obj, const char *prefix, const char *key,
                          double lo, int open_lo, double hi, double *out, ulc_ctx *ctx) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return ULC_OK;
    char kp[256];
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!(isfinite(v) && (open_lo ? v > lo : v >= lo) && v <= hi)) {
        char got[64];
        if (cJSON_IsNumber(it)) snprintf(got, sizeof got, "%.17g", it->valuedouble);
        else snprintf(got, sizeof got, "%s", ulc_json_what(it));
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "%s: key '%s': expected a number in %c%g, %g], got %s", file,
                        key_path(kp, sizeof kp, prefix, key), open_lo ? '(' : '[', lo, hi, got);
    }
    *out = v;
    return ULC_OK;
}

/* A string member (non-empty), or *out untouched when absent. Returned pointer is the JSON's. */
static ulc_status get_str(const char *file, const cJSON *obj, const char *prefix, const char *key,
                          const char **out, ulc_ctx *ctx) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return ULC_OK;
    char kp[256];
    if (!cJSON_IsString(it) || !it->valuestring[0])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': expected a non-empty string, got %s",
                        file, key_path(kp, sizeof kp, prefix, key),
                        cJSON_IsString(it) ? "an empty string" : ulc_json_what(it));
    *out = it->valuestring;
    return ULC_OK;
}

/* A list of non-empty strings joined with '|' (lora-inject's list syntax) into *out (malloc'd).
 * allowed (NULL-terminated) restricts the values when given; an empty list is allowed only
 * when may_be_empty (then *out stays NULL). */
static ulc_status get_str_list(const char *file, const cJSON *obj, const char *prefix,
                               const char *key, const char *const *allowed, int may_be_empty,
                               char **out, ulc_ctx *ctx) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return ULC_OK;
    char kp[256];
    key_path(kp, sizeof kp, prefix, key);
    if (!cJSON_IsArray(it))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': expected a list of strings, got %s",
                        file, kp, ulc_json_what(it));
    size_t len = 1;
    int n = 0;
    for (const cJSON *e = it->child; e; e = e->next, n++) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': item %d: expected a non-empty "
                            "string, got %s", file, kp, n,
                            cJSON_IsString(e) ? "an empty string" : ulc_json_what(e));
        if (strchr(e->valuestring, '|'))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': item %d ('%s') may not contain "
                            "'|'", file, kp, n, e->valuestring);
        if (allowed) {
            int ok = 0;
            for (int i = 0; allowed[i]; i++) ok |= strcmp(e->valuestring, allowed[i]) == 0;
            if (!ok)
                return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': '%s' is not one of Conv, "
                                "Gemm, MatMul", file, kp, e->valuestring);
        }
        len += strlen(e->valuestring) + 1;
    }
    if (n == 0) {
        if (may_be_empty) return ULC_OK;
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': the list is empty (it would select "
                        "nothing)", file, kp);
    }
    char *s = malloc(len);
    if (!s) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    size_t o = 0;
    for (const cJSON *e = it->child; e; e = e->next)
        o += (size_t)snprintf(s + o, len - o, "%s%s", o ? "|" : "", e->valuestring);
    *out = s;
    return ULC_OK;
}

/* A list of distinct integers >= 0 (classes or row indices) into a malloc'd array. what names
 * the list in messages ("forget.classes" or "FILE"); item names an element ("class", "row"). */
static ulc_status int_list(const char *file, const cJSON *arr, const char *what,
                           const char *item, int64_t **out, int64_t *n_out, ulc_ctx *ctx) {
    if (!cJSON_IsArray(arr))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %s: expected a list of integers, got %s", file,
                        what, ulc_json_what(arr));
    int64_t n = cJSON_GetArraySize(arr);
    if (n == 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %s: the list is empty (the forget set would be "
                        "empty)", file, what);
    int64_t *v = malloc((size_t)n * sizeof *v);
    if (!v) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", what);
    int64_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        if (!json_is_int(e, 0, 9007199254740992.0)) {
            char got[64];
            if (cJSON_IsNumber(e)) snprintf(got, sizeof got, "%.17g", e->valuedouble);
            else snprintf(got, sizeof got, "%s", ulc_json_what(e));
            free(v);
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %s: item %lld: expected a %s (an integer "
                            ">= 0), got %s", file, what, (long long)i, item, got);
        }
        v[i] = (int64_t)e->valuedouble;
    }
    *out = v;
    *n_out = n;
    return ULC_OK;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Refuses a value listed twice (on a sorted copy, so the message names the smallest). */
static ulc_status no_duplicates(const char *file, const char *what, const char *item,
                                const int64_t *v, int64_t n, ulc_ctx *ctx) {
    int64_t *c = malloc((size_t)n * sizeof *c);
    if (!c) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", what);
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_i64);
    for (int64_t i = 1; i < n; i++)
        if (c[i] == c[i - 1]) {
            long long d = (long long)c[i];
            free(c);
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %s: %s %lld is listed twice", file, what,
                            item, d);
        }
    free(c);
    return ULC_OK;
}

/* Reads a whole (small) file into a malloc'd buffer. */
static ulc_status read_text(const char *path, const char *what, char **out, size_t *n,
                            ulc_ctx *ctx) {
    ulc_mapping *m = NULL;
    ULC_TRY(ulc_mapping_open(path, what, &m, ctx));
    char *b = malloc(m->size + 1);
    if (!b) {
        ulc_mapping_unref(m);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", path);
    }
    if (m->size) memcpy(b, m->data, m->size);
    b[m->size] = '\0';
    *n = m->size;
    *out = b;
    ulc_mapping_unref(m);
    return ULC_OK;
}

static ulc_status parse_json(const char *path, const char *what, cJSON **out, ulc_ctx *ctx) {
    char *text = NULL;
    size_t n = 0;
    ULC_TRY(read_text(path, what, &text, &n, ctx));
    cJSON *j = NULL; /* repeated keys: check_keys names them with the spec's words */
    ulc_status s = ulc_json_parse(text, n, 0, &j, ctx);
    free(text);
    if (s != ULC_OK) return ulc_fail(ctx, s, "%s", path);
    *out = j;
    return ULC_OK;
}

/* A path from the spec: absolute as written, else relative to the spec's directory. The file
 * must exist (a regular file, or a directory when dir_ok: a Hugging Face model). */
ulc_status ulc_spec_resolve(const char *spec, const char *dir, const char *key, const char *rel,
                            int dir_ok, char **out, ulc_ctx *ctx) {
    char *p = rel[0] == '/' ? strdup(rel) : ulc_path_join(dir, rel);
    if (!p) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    if (!ulc_path_exists(p) || (!dir_ok && ulc_path_is_dir(p))) {
        ulc_status st = ulc_fail(ctx, ULC_ERR_IO, "%s: key '%s': the file '%s' %s", spec, key,
                                 p, ulc_path_is_dir(p) ? "is a directory" : "does not exist");
        free(p);
        return st;
    }
    *out = p;
    return ULC_OK;
}

static ulc_status spec_path(const ulc_request *s, const char *key, const char *rel, int dir_ok, char **out,
                            ulc_ctx *ctx) {
    return ulc_spec_resolve(s->path, s->dir, key, rel, dir_ok, out, ctx);
}

static ulc_status spec_file(const ulc_request *s, const char *key, const char *rel, char **out,
                            ulc_ctx *ctx) {
    return spec_path(s, key, rel, 0, out, ctx);
}

/* Text data by name, as io/text_data.h tells it (".jsonl" or ".txt", any case). */
static int is_text_file(const char *path) {
    size_t n = path ? strlen(path) : 0;
    return (n > 6 && strcasecmp(path + n - 6, ".jsonl") == 0) ||
           (n > 4 && strcasecmp(path + n - 4, ".txt") == 0);
}

/* Each method's own object is a top-level key named after it ("rfa", "delete", ...). */
static const char *const k_top_keys[] = {"method", "data", "forget", "model", "lora", "train",
                                         "rfa", "delete", "finetune", "neggrad", "random-label",
                                         "scrub", "retrain", "graddiff", "npo", "ssd", "nhl-kl",
                                         "gates", "report", "eval", "clip", "megu",
                                         "robust", NULL};
static const char *const k_data_keys[] = {"train", "test", NULL};
static const char *const k_forget_keys[] = {"classes", "indices", "indices_file", "file",
                                            "concepts", NULL};
static const char *const k_model_keys[] = {"input", "output", "max_length", "tokenizer",
                                           "overflow", "stride", NULL};
static const char *const k_lora_keys[] = {"rank", "alpha", "targets", "include", "exclude", NULL};
static const char *const k_train_keys[] = {"epochs", "batch_size", "lr", "optimizer",
                                           "weight_decay", "momentum", "seed", NULL};
static const char *const k_rfa_keys[] = {"gamma", "norm", NULL};
static const char *const k_delete_keys[] = {"mask", "train", "temperature", "retain", NULL};
static const char *const k_scrub_keys[] = {"alpha", "gamma", "train", NULL};
static const char *const k_graddiff_keys[] = {"train", "retain_weight", "retain", NULL};
static const char *const k_npo_keys[] = {"train", "beta", "retain_weight", NULL};
static const char *const k_ssd_keys[] = {"alpha", "lambda", "params", NULL};
static const char *const k_nhl_keys[] = {"train", "margin", "alpha_coarse", "alpha_fine", NULL};
static const char *const k_megu_keys[] = {"train", "tau", "alpha", "noise_steps", "noise_lr",
                                          "noise_lambda", "retain_rows", "similarity", NULL};
static const char *const k_other_keys[] = {"train", NULL}; /* finetune, neggrad, ... */
/* The 'train' keys ssd refuses: it trains nothing (batch_size and seed apply). */
static const char *const k_ssd_no_train[] = {"epochs", "lr", "optimizer", "weight_decay",
                                             "momentum", NULL};
static const char *const k_gate_keys[] = {"forget_acc_max", "retain_acc_drop_max", "mia_max",
                                          "forget_ppl_min", "extract_max", "relearn_steps_min",
                                          NULL};
static const char *const k_eval_keys[] = {"features", "relearn_steps", "relearn_lr", "reference",
                                          "mink_percent", "extract_prefix", "extract_tokens",
                                          "extract_rows", NULL};
static const char *const k_targets[] = {"Conv", "Gemm", "MatMul", NULL};

/* The defaults (docs/spec.md; the paper's: rank 8, alpha 32, AdamW lr 5e-5, batch 128, 1 epoch). */
void ulc_request_init(ulc_request *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->path = path;
    s->rank = 8;
    s->alpha = 32;
    s->epochs = 1;
    s->batch_size = 128;
    s->lr = 5e-5;
    s->optimizer = ULC_OPTIM_ADAMW;
    s->weight_decay = -1; /* 0.01 for AdamW, 0 for SGD: decided once the optimizer is known */
    s->momentum = -1;     /* 0 unless the method's default optimizer has it */
    s->method = ULC_METHOD_RFA;
    s->method_name = "rfa";
    s->seed = 0;
    s->gamma = 0.5;
    s->norm = ULC_RFA_L2SQ;
    s->norm_name = "l2sq";
    s->eval_features = 1;
    s->relearn_steps = ULC_SPEC_RELEARN_STEPS;
    s->relearn_lr = ULC_FE_RELEARN_LR;
    s->lm = ulc_lm_defaults();
}

/* forget.file: a text file of the texts to forget (docs/spec.md, "Text data"). */
static ulc_status parse_forget_file(ulc_request *s, const cJSON *f, ulc_ctx *ctx) {
    const char *rel = NULL;
    s->kind = ULC_FORGET_INDICES;
    ULC_TRY(get_str(s->path, f, "forget", "file", &rel, ctx));
    ULC_TRY(spec_file(s, "forget.file", rel, &s->forget_file, ctx));
    if (!is_text_file(s->forget_file))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.file': '%s' is not a text file "
                        "(.jsonl or .txt)", s->path, rel);
    if (!is_text_file(s->train))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.file': forget texts need text "
                        "training data (.jsonl or .txt), and data.train is '%s'", s->path,
                        s->train);
    return ULC_OK;
}

static ulc_status parse_forget(ulc_request *s, const cJSON *f, ulc_ctx *ctx) {
    const char *file = s->path;
    ULC_TRY(ulc_spec_check_keys(file, f, "forget", k_forget_keys, ctx));
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(f, "classes");
    const cJSON *ix = cJSON_GetObjectItemCaseSensitive(f, "indices");
    const cJSON *ixf = cJSON_GetObjectItemCaseSensitive(f, "indices_file");
    const cJSON *ff = cJSON_GetObjectItemCaseSensitive(f, "file");
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(f, "concepts");
    if ((cl != NULL) + (ix != NULL) + (ixf != NULL) + (ff != NULL) + (co != NULL) != 1)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget': expected exactly one of "
                        "'classes', 'indices', 'indices_file', 'file' or 'concepts'", file);
    if (ff) return parse_forget_file(s, f, ctx);
    if (co) { /* class names of clip.classes: class forgetting by name */
        if (!s->clip.given)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.concepts' names classes of "
                            "the spec's 'clip' key, which is missing", file);
        s->kind = ULC_FORGET_CLASSES;
        s->by_concept = 1;
        return ulc_clip_concepts(file, co, &s->clip, &s->classes, &s->n_classes, ctx);
    }
    if (cl) {
        int64_t n = 0;
        s->kind = ULC_FORGET_CLASSES;
        ULC_TRY(int_list(file, cl, "key 'forget.classes'", "class", &s->classes, &n, ctx));
        s->n_classes = (int)n;
        return no_duplicates(file, "key 'forget.classes'", "class", s->classes, n, ctx);
    }
    s->kind = ULC_FORGET_INDICES;
    if (ix) {
        ULC_TRY(int_list(file, ix, "key 'forget.indices'", "row index", &s->indices,
                         &s->n_indices, ctx));
        return no_duplicates(file, "key 'forget.indices'", "row", s->indices, s->n_indices, ctx);
    }
    const char *rel = NULL;
    ULC_TRY(get_str(file, f, "forget", "indices_file", &rel, ctx));
    ULC_TRY(spec_file(s, "forget.indices_file", rel, &s->indices_file, ctx));
    return ulc_request_read_indices(s->indices_file, "forget.indices_file", &s->indices,
                                    &s->n_indices, ctx);
}

ulc_status ulc_request_read_indices(const char *path, const char *what, int64_t **out,
                                    int64_t *n, ulc_ctx *ctx) {
    cJSON *j = NULL;
    ULC_TRY(parse_json(path, "indices file", &j, ctx));
    ulc_status st = int_list(path, j, what, "row index", out, n, ctx);
    cJSON_Delete(j);
    ULC_TRY(st);
    return no_duplicates(path, what, "row", *out, *n, ctx);
}

/* 'ssd': α > 0, λ >= 0, and the globs of the weights it may dampen (checked against the model
 * before any work, by methods/method.h's ulc_method_check_model). */
static ulc_status parse_ssd(ulc_request *s, const cJSON *mo, ulc_ctx *ctx) {
    const char *path = s->path, *str = NULL;
    ULC_TRY(get_num(path, mo, "ssd", "alpha", 0, 1, 1e6, &s->unlearn.ssd_alpha, ctx));
    ULC_TRY(get_num(path, mo, "ssd", "lambda", 0, 0, 1e6, &s->unlearn.ssd_lambda, ctx));
    ULC_TRY(get_str(path, mo, "ssd", "params", &str, ctx));
    if (!str) return ULC_OK;
    size_t n = strlen(str);
    /* the pass option's text rules (passes/pass.h): the pipeline prints back as it parses */
    if (strpbrk(str, ",{}") || isspace((unsigned char)str[0]) || isspace((unsigned char)str[n - 1]))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'ssd.params': '%s' may not hold ',', '{' "
                        "or '}' nor start or end with a space (separate globs with '|')", path, str);
    if (!(s->ssd_params = strdup(str))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    s->unlearn.ssd_params = s->ssd_params;
    return ULC_OK;
}

/* 'megu': tau in (0, 1], alpha in [0, 1], the noises' settings, the retain rows, and the
 * similarity file (relative to the spec; read and checked whole here — square, finite, >= 0 —
 * and against the model's classes before any work, by ulc_method_check_model). */
static ulc_status parse_megu(ulc_request *s, const cJSON *mo, ulc_ctx *ctx) {
    const char *path = s->path, *rel = NULL;
    ulc_unlearn_opts *u = &s->unlearn;
    long long iv = u->megu_noise_steps;
    ULC_TRY(get_num(path, mo, "megu", "tau", 0, 1, 1, &u->megu_tau, ctx));
    ULC_TRY(get_num(path, mo, "megu", "alpha", 0, 0, 1, &u->megu_alpha, ctx));
    ULC_TRY(get_int(path, mo, "megu", "noise_steps", 1, 1e6, &iv, ctx));
    u->megu_noise_steps = (int)iv;
    ULC_TRY(get_num(path, mo, "megu", "noise_lr", 0, 1, 1e3, &u->megu_noise_lr, ctx));
    ULC_TRY(get_num(path, mo, "megu", "noise_lambda", 0, 0, 1e6, &u->megu_noise_lambda, ctx));
    ULC_TRY(get_int(path, mo, "megu", "retain_rows", 0, 1e12, &u->megu_retain_rows, ctx));
    ULC_TRY(get_str(path, mo, "megu", "similarity", &rel, ctx));
    if (!rel) return ULC_OK;
    ULC_TRY(spec_file(s, "megu.similarity", rel, &s->megu_similarity, ctx));
    /* the pass option's text rules (passes/pass.h), as ssd.params */
    size_t n = strlen(s->megu_similarity);
    if (strpbrk(s->megu_similarity, ",{}") || isspace((unsigned char)s->megu_similarity[0]) ||
        isspace((unsigned char)s->megu_similarity[n - 1]))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'megu.similarity': the path '%s' may not "
                        "hold ',', '{' or '}' nor start or end with a space", path,
                        s->megu_similarity);
    u->megu_similarity = s->megu_similarity;
    double *S = NULL;
    ULC_TRY(ulc_megu_similarity_load(s->megu_similarity, -1, &S, NULL, ctx));
    free(S);
    return ULC_OK;
}

/* The method (key 'method') and its own object (key named after it; rfa's is parsed with the
 * rest). Its training defaults are resolved with the spec's 'train' (methods/method.h). */
static ulc_status parse_method(ulc_request *s, const cJSON *j, const char *method, ulc_ctx *ctx) {
    const char *path = s->path;
    int m = ulc_method_parse(method);
    if (m < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'method': unknown method '%s' (expected "
                        "rfa, delete, finetune, neggrad, random-label, scrub, retrain, graddiff, "
                        "npo, ssd, nhl-kl or megu)", path, method);
    s->method = (ulc_method)m;
    s->method_name = ulc_method_name(s->method);
    /* another method's object is a mistake (a copied spec whose method was changed) */
    for (int k = 0; k < ULC_METHOD_COUNT_; k++)
        if (k != m && cJSON_HasObjectItem(j, ulc_method_name((ulc_method)k)))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s' configures method %s, but "
                            "'method' is '%s'", path, ulc_method_name((ulc_method)k),
                            ulc_method_name((ulc_method)k), s->method_name);
    if (s->method == ULC_METHOD_RFA) return ULC_OK;
    ulc_optim_opts optim;
    int epochs, batch;
    ulc_unlearn_defaults(s->method, &s->unlearn, &optim, &epochs, &batch);
    const cJSON *mo = NULL;
    ULC_TRY(get_object(path, j, s->method_name, &mo, ctx));
    if (!mo) return ULC_OK;
    const char *const *keys = s->method == ULC_METHOD_DELETE     ? k_delete_keys
                              : s->method == ULC_METHOD_SCRUB    ? k_scrub_keys
                              : s->method == ULC_METHOD_GRADDIFF ? k_graddiff_keys
                              : s->method == ULC_METHOD_NPO      ? k_npo_keys
                              : s->method == ULC_METHOD_SSD      ? k_ssd_keys
                              : s->method == ULC_METHOD_NHL_KL   ? k_nhl_keys
                              : s->method == ULC_METHOD_MEGU     ? k_megu_keys
                                                                 : k_other_keys;
    ULC_TRY(ulc_spec_check_keys(path, mo, s->method_name, keys, ctx));
    if (s->method == ULC_METHOD_SSD) return parse_ssd(s, mo, ctx);
    const char *str = NULL;
    ULC_TRY(get_str(path, mo, s->method_name, "train", &str, ctx));
    if (str) {
        int w = ulc_train_what_parse(str);
        if (w < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s.train': '%s' (expected all, "
                            "all_but_classifier or lora)", path, s->method_name, str);
        if (s->method == ULC_METHOD_RETRAIN && w != ULC_TRAIN_ALL)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'retrain.train': '%s': retrain "
                            "re-initialises and trains every weight (only \"all\")", path, str);
        s->unlearn.what = (ulc_train_what)w;
    }
    if (s->method == ULC_METHOD_DELETE) {
        str = NULL;
        ULC_TRY(get_str(path, mo, "delete", "mask", &str, ctx));
        if (str && strcmp(str, "own") == 0) s->unlearn.mask_all_forget = 0;
        else if (str && strcmp(str, "all_forget") == 0) s->unlearn.mask_all_forget = 1;
        else if (str)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'delete.mask': '%s' (expected own or "
                            "all_forget)", path, str);
        ULC_TRY(get_num(path, mo, "delete", "temperature", 0, 1, 1e3, &s->unlearn.temperature,
                        ctx));
        str = NULL;
        ULC_TRY(get_str(path, mo, "delete", "retain", &str, ctx));
        if (str && strcmp(str, "all") && strcmp(str, "none"))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'delete.retain': '%s' (expected all or "
                            "none)", path, str);
        s->delete_retain = str ? (strcmp(str, "all") == 0 ? "all" : "none") : NULL;
    }
    if (s->method == ULC_METHOD_SCRUB) {
        ULC_TRY(get_num(path, mo, "scrub", "alpha", 0, 0, 1e6, &s->unlearn.scrub_alpha, ctx));
        ULC_TRY(get_num(path, mo, "scrub", "gamma", 0, 0, 1e6, &s->unlearn.scrub_gamma, ctx));
    }
    if (s->method == ULC_METHOD_GRADDIFF || s->method == ULC_METHOD_NPO)
        ULC_TRY(get_num(path, mo, s->method_name, "retain_weight", 0, 0, 1e6,
                        &s->unlearn.retain_weight, ctx));
    if (s->method == ULC_METHOD_GRADDIFF) {
        str = NULL;
        ULC_TRY(get_str(path, mo, "graddiff", "retain", &str, ctx));
        if (str && strcmp(str, "ce") && strcmp(str, "kl"))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'graddiff.retain': '%s' (expected ce "
                            "or kl)", path, str);
        s->unlearn.retain_kl = str && strcmp(str, "kl") == 0;
    }
    if (s->method == ULC_METHOD_NPO)
        ULC_TRY(get_num(path, mo, "npo", "beta", 0, 1, 1e3, &s->unlearn.npo_beta, ctx));
    if (s->method == ULC_METHOD_NHL_KL) {
        ULC_TRY(get_num(path, mo, "nhl-kl", "margin", 0, 0, 1e6, &s->unlearn.nhl_margin, ctx));
        ULC_TRY(get_num(path, mo, "nhl-kl", "alpha_coarse", 0, 0, 1e6,
                        &s->unlearn.nhl_alpha_coarse, ctx));
        ULC_TRY(get_num(path, mo, "nhl-kl", "alpha_fine", 0, 0, 1e6, &s->unlearn.nhl_alpha_fine,
                        ctx));
    }
    if (s->method == ULC_METHOD_MEGU) return parse_megu(s, mo, ctx);
    return ULC_OK;
}

/* 'train': the settings the spec gives (run->set says which). */
static ulc_status parse_train(ulc_request *s, const cJSON *train, ulc_method_train *run, ulc_ctx *ctx) {
    const char *path = s->path;
    long long iv = 0;
    ULC_TRY(ulc_spec_check_keys(path, train, "train", k_train_keys, ctx));
    for (int k = 0; s->method == ULC_METHOD_SSD && k_ssd_no_train[k]; k++)
        if (cJSON_HasObjectItem(train, k_ssd_no_train[k]))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'train.%s': method ssd trains nothing "
                            "(it dampens weights once); of 'train' it takes only batch_size (the "
                            "Fisher estimates' batches) and seed", path, k_ssd_no_train[k]);
    static const struct { const char *key; unsigned bit; } ints[] = {
        {"epochs", ULC_MT_EPOCHS}, {"batch_size", ULC_MT_BATCH}};
    for (int k = 0; k < 2; k++) {
        if (!cJSON_HasObjectItem(train, ints[k].key)) continue;
        ULC_TRY(get_int(path, train, "train", ints[k].key, 1, k ? 1 << 20 : 1e6, &iv, ctx));
        if (k) run->batch_size = (long)iv;
        else run->epochs = (long)iv;
        run->set |= ints[k].bit;
    }
    static const struct { const char *key; unsigned bit; double lo; int open; double hi; } nums[] = {
        {"lr", ULC_MT_LR, 0, 1, 1e3},
        {"weight_decay", ULC_MT_WEIGHT_DECAY, 0, 0, 1e3},
        {"momentum", ULC_MT_MOMENTUM, 0, 0, 1}};
    double *dst[] = {&run->lr, &run->weight_decay, &run->momentum};
    for (int k = 0; k < 3; k++) {
        if (!cJSON_HasObjectItem(train, nums[k].key)) continue;
        ULC_TRY(get_num(path, train, "train", nums[k].key, nums[k].lo, nums[k].open, nums[k].hi,
                        dst[k], ctx));
        run->set |= nums[k].bit;
    }
    iv = 0;
    ULC_TRY(get_int(path, train, "train", "seed", 0, 9007199254740992.0, &iv, ctx));
    s->seed = (uint64_t)iv;
    const char *str = NULL;
    ULC_TRY(get_str(path, train, "train", "optimizer", &str, ctx));
    if (str && strcmp(str, "adamw") != 0 && strcmp(str, "sgd") != 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'train.optimizer': '%s' (expected adamw "
                        "or sgd)", path, str);
    if (str) {
        run->optimizer = strcmp(str, "sgd") == 0 ? ULC_OPTIM_SGD : ULC_OPTIM_ADAMW;
        run->set |= ULC_MT_OPTIMIZER;
    }
    return ULC_OK;
}

/* 'gates': thresholds in [0, 1] on the result (eval/report.h checks them), except
 * forget_ppl_min, a perplexity > 0, and relearn_steps_min, a step count >= 1. mia_max needs
 * held-out rows (the attack's non-members). */
static ulc_status parse_gates(ulc_request *s, const cJSON *j, int has_test, ulc_ctx *ctx) {
    const cJSON *g = NULL;
    ULC_TRY(get_object(s->path, j, "gates", &g, ctx));
    if (!g) return ULC_OK;
    ULC_TRY(ulc_spec_check_keys(s->path, g, "gates", k_gate_keys, ctx));
    for (int k = 0; k < ULC_GATE_COUNT; k++) {
        if (!cJSON_HasObjectItem(g, k_gate_keys[k])) continue;
        s->gates.set[k] = 1;
        if (k == ULC_GATE_RELEARN) {
            long long steps = 0;
            ULC_TRY(get_int(s->path, g, "gates", k_gate_keys[k], 1, 100000, &steps, ctx));
            s->gates.max[k] = (double)steps;
            continue;
        }
        int ppl = k == ULC_GATE_FORGET_PPL;
        ULC_TRY(get_num(s->path, g, "gates", k_gate_keys[k], 0, ppl, ppl ? 1e30 : 1,
                        &s->gates.max[k], ctx));
    }
    if (s->gates.set[ULC_GATE_MIA] && !has_test)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'gates.mia_max': the membership attack "
                        "needs held-out rows (data.test) as its non-members", s->path);
    return ULC_OK;
}

/* 'eval': the report's extra metrics (the reference file is checked with the other files). */
static ulc_status parse_eval(ulc_request *s, const cJSON *e, const char **reference, ulc_ctx *ctx) {
    ULC_TRY(ulc_spec_check_keys(s->path, e, "eval", k_eval_keys, ctx));
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "features");
    if (f && !cJSON_IsBool(f))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'eval.features': expected true or false, got %s",
                        s->path, ulc_json_what(f));
    if (f) s->eval_features = cJSON_IsTrue(f);
    long long iv = s->relearn_steps;
    ULC_TRY(get_int(s->path, e, "eval", "relearn_steps", 0, 100000, &iv, ctx));
    s->relearn_steps = (long)iv;
    ULC_TRY(get_num(s->path, e, "eval", "relearn_lr", 0, 1, 1e3, &s->relearn_lr, ctx));
    double pct = 100 * s->lm.mink_frac; /* text models (docs/metrics.md, "Language models") */
    ULC_TRY(get_num(s->path, e, "eval", "mink_percent", 0, 1, 100, &pct, ctx));
    s->lm.mink_frac = pct / 100;
    long long pre = s->lm.extract_prefix, tok = s->lm.extract_tokens, rows = s->lm.extract_rows;
    ULC_TRY(get_int(s->path, e, "eval", "extract_prefix", 1, 100000, &pre, ctx));
    ULC_TRY(get_int(s->path, e, "eval", "extract_tokens", 1, 100000, &tok, ctx));
    ULC_TRY(get_int(s->path, e, "eval", "extract_rows", 0, 1000000, &rows, ctx));
    s->lm.extract_prefix = (long)pre;
    s->lm.extract_tokens = (long)tok;
    s->lm.extract_rows = (long)rows;
    return get_str(s->path, e, "eval", "reference", reference, ctx);
}

/* 'model' keys of text data: max_length, overflow, stride (the tokenizer's path is resolved with
 * the other files). */
static ulc_status parse_text_model(ulc_request *s, const cJSON *model, ulc_ctx *ctx) {
    const char *path = s->path, *ov = NULL;
    long long iv = 0;
    ULC_TRY(get_int(path, model, "model", "max_length", 1, 1 << 24, &iv, ctx));
    s->max_length = iv;
    ULC_TRY(get_str(path, model, "model", "overflow", &ov, ctx));
    int k = ov ? ulc_text_overflow_parse(ov) : (int)s->overflow;
    if (k < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'model.overflow': '%s' (expected error, "
                        "truncate or windows)", path, ov);
    s->overflow = (ulc_overflow)k;
    iv = 0;
    ULC_TRY(get_int(path, model, "model", "stride", 0, 1 << 24, &iv, ctx));
    s->stride = iv;
    if (cJSON_HasObjectItem(model, "stride") && s->overflow != ULC_OVERFLOW_WINDOWS)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'model.stride': a stride is for "
                        "model.overflow \"windows\"", path);
    if (s->max_length && s->overflow == ULC_OVERFLOW_WINDOWS && s->stride >= s->max_length)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'model.stride': %lld, but a window is "
                        "%lld tokens (model.max_length): the stride must be smaller", path,
                        (long long)s->stride, (long long)s->max_length);
    return ULC_OK;
}

/* The text keys go with text data; model.tokenizer is resolved (a file or a directory). */
static ulc_status text_files(ulc_request *s, const char *tok_rel, const cJSON *model,
                             ulc_ctx *ctx) {
    static const char *const keys[] = {"max_length", "tokenizer", "overflow", "stride"};
    int text = is_text_file(s->train) || (s->test && is_text_file(s->test));
    for (int k = 0; model && !text && k < 4; k++)
        if (cJSON_HasObjectItem(model, keys[k]) && !(k == 1 && s->clip.given)) /* clip: prompts' */
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'model.%s' is for text data (.jsonl "
                            "or .txt), and data.train is '%s'", s->path, keys[k], s->train);
    if (tok_rel) ULC_TRY(spec_path(s, "model.tokenizer", tok_rel, 1, &s->tokenizer, ctx));
    return ULC_OK;
}

/* Parses and checks the whole spec (everything that does not need the model or the data). */
/* 'data' and 'model': the data files (resolved last) and the model's input/output names. */
static ulc_status parse_data_model(ulc_request *s, const cJSON *data, const cJSON *forget,
                                   const cJSON *model, const char **train_rel,
                                   const char **test_rel, ulc_ctx *ctx) {
    const char *path = s->path;
    if (!data)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: missing key 'data' ({\"train\": FILE, \"test\": "
                        "FILE})", path);
    ULC_TRY(ulc_spec_check_keys(path, data, "data", k_data_keys, ctx));
    ULC_TRY(get_str(path, data, "data", "train", train_rel, ctx));
    ULC_TRY(get_str(path, data, "data", "test", test_rel, ctx));
    if (!*train_rel)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: missing key 'data.train' (the training data, "
                        "safetensors, .jsonl or .txt)", path);
    if (!forget)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: missing key 'forget' ({\"classes\": [...]}, "
                        "{\"indices\": [...]}, {\"indices_file\": FILE} or {\"file\": "
                        "TEXTS})", path);
    if (!model) return ULC_OK;
    const char *in = NULL, *out = NULL;
    ULC_TRY(ulc_spec_check_keys(path, model, "model", k_model_keys, ctx));
    ULC_TRY(get_str(path, model, "model", "input", &in, ctx));
    ULC_TRY(get_str(path, model, "model", "output", &out, ctx));
    if ((in && !(s->model_input = strdup(in))) || (out && !(s->model_output = strdup(out))))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    return parse_text_model(s, model, ctx);
}

/* 'lora': the adapters of RFA, or of a method that trains them. */
static ulc_status parse_lora(ulc_request *s, const cJSON *lora, ulc_ctx *ctx) {
    const char *path = s->path;
    if (s->method == ULC_METHOD_SSD)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'lora': method ssd dampens the model's own "
                        "weights; it uses no LoRA adapters", path);
    if (s->method != ULC_METHOD_RFA && s->unlearn.what != ULC_TRAIN_LORA)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'lora': method %s trains %s, not LoRA "
                        "adapters (set \"%s\": {\"train\": \"lora\"} to use them)", path,
                        s->method_name, s->unlearn.what == ULC_TRAIN_ALL ? "every weight"
                        : "every weight but the classifier's", s->method_name);
    ULC_TRY(ulc_spec_check_keys(path, lora, "lora", k_lora_keys, ctx));
    long long iv = s->rank;
    ULC_TRY(get_int(path, lora, "lora", "rank", 1, 65536, &iv, ctx));
    s->rank = (long)iv;
    ULC_TRY(get_num(path, lora, "lora", "alpha", 0, 1, 1e9, &s->alpha, ctx));
    ULC_TRY(get_str_list(path, lora, "lora", "targets", k_targets, 0, &s->targets, ctx));
    ULC_TRY(get_str_list(path, lora, "lora", "include", NULL, 0, &s->include, ctx));
    ULC_TRY(get_str_list(path, lora, "lora", "exclude", NULL, 1, &s->exclude, ctx));
    s->lora_custom = cJSON_HasObjectItem(lora, "targets") || cJSON_HasObjectItem(lora, "include") ||
                     cJSON_HasObjectItem(lora, "exclude");
    return ULC_OK;
}

/* The training settings: the spec's over the method's defaults, resolved as the method's pass
 * resolves them (methods/method.h). */
static ulc_status resolve_train(ulc_request *s, const ulc_method_train *run, ulc_ctx *ctx) {
    ulc_ctx rctx;
    ulc_ctx_init(&rctx);
    char where[512];
    snprintf(where, sizeof where, "%s: key 'train.momentum'", s->path);
    if (ulc_request_resolve_train(s, run, where, &rctx) != ULC_OK)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s", rctx.msg);
    return ULC_OK;
}

ulc_status ulc_request_resolve_train(ulc_request *rq, const ulc_method_train *run,
                                     const char *where, ulc_ctx *ctx) {
    ulc_method_hparams h;
    ulc_method_train r = *run; /* a default may depend on what trains */
    r.set |= ULC_MT_WHAT;
    r.what = (int)rq->unlearn.what;
    ULC_TRY(ulc_method_resolve(rq->method, &r, NULL, where, &h, ctx));
    rq->epochs = h.epochs;
    rq->batch_size = h.batch_size;
    rq->lr = h.lr;
    rq->weight_decay = h.weight_decay;
    rq->momentum = h.momentum;
    rq->optimizer = h.optimizer;
    return ULC_OK;
}

/* 'rfa': gamma and the feature distance. */
static ulc_status parse_rfa(ulc_request *s, const cJSON *rfa, ulc_ctx *ctx) {
    const char *path = s->path, *str = NULL;
    ULC_TRY(ulc_spec_check_keys(path, rfa, "rfa", k_rfa_keys, ctx));
    ULC_TRY(get_num(path, rfa, "rfa", "gamma", 0, 0, 1, &s->gamma, ctx));
    ULC_TRY(get_str(path, rfa, "rfa", "norm", &str, ctx));
    if (!str) return ULC_OK;
    int nk = ulc_rfa_norm_parse(str);
    if (nk < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'rfa.norm': '%s' (expected l2sq, mse, l1 "
                        "or l2)", path, str);
    static const char *const names[] = {"l2sq", "mse", "l1", "l2"};
    s->norm = (ulc_rfa_norm)nk;
    s->norm_name = names[nk];
    return ULC_OK;
}

/* No file may be given twice (docs/spec.md, Paths), whatever path names it: the same string, a
 * symlink or a hard link (same device and inode). Nor may a file be the spec itself. */
static ulc_status distinct_files(const ulc_request *s, ulc_ctx *ctx) {
    const char *key[] = {"data.train", "data.test", "forget.indices_file", "eval.reference",
                         "forget.file"};
    const char *file[] = {s->train, s->test, s->indices_file, s->reference, s->forget_file};
    for (int i = 0; i < 5; i++) {
        if (!file[i]) continue;
        if (strcmp(file[i], s->path) == 0 || ulc_path_same_file(file[i], s->path))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': '%s' is the spec itself",
                            s->path, key[i], file[i]);
        for (int j = 0; j < i; j++)
            if (file[j] && (strcmp(file[i], file[j]) == 0 || ulc_path_same_file(file[i], file[j])))
                return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': '%s' is the same file as "
                                "%s ('%s'); no file may be given twice", s->path, key[i],
                                file[i], key[j], file[j]);
    }
    return ULC_OK;
}

/* The files, last (a typo in a key is reported before a missing file), and the forget set. */
static ulc_status parse_files(ulc_request *s, const cJSON *forget, const cJSON *model,
                              const char *train_rel, const char *test_rel, const char *ref_rel,
                              ulc_ctx *ctx) {
    ULC_TRY(spec_file(s, "data.train", train_rel, &s->train, ctx));
    if (test_rel) ULC_TRY(spec_file(s, "data.test", test_rel, &s->test, ctx));
    const char *tok_rel = NULL;
    if (model) ULC_TRY(get_str(s->path, model, "model", "tokenizer", &tok_rel, ctx));
    ULC_TRY(text_files(s, tok_rel, model, ctx));
    if (ref_rel) ULC_TRY(spec_path(s, "eval.reference", ref_rel, 1, &s->reference, ctx));
    ULC_TRY(parse_forget(s, forget, ctx));
    ULC_TRY(distinct_files(s, ctx));
    s->forget_given = 1;
    if (s->unlearn.mask_all_forget && s->kind != ULC_FORGET_CLASSES)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'delete.mask': \"all_forget\" masks every "
                        "forget class, so it needs class forgetting (forget.classes)", s->path);
    return ULC_OK;
}

/* 'clip' (jobs/clip.h): the zero-shot classes, the taxonomy, and what the report adds; nhl-kl
 * needs the taxonomy. The scored output is the fine classes' logits. */
static ulc_status parse_clip(ulc_request *s, const cJSON *j, ulc_ctx *ctx) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "clip");
    if (!c) {
        if (s->method == ULC_METHOD_NHL_KL)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: method nhl-kl unlearns concepts of a CLIP "
                            "model: the spec needs the 'clip' key (classes, templates, coarse)",
                            s->path);
        return ULC_OK;
    }
    ULC_TRY(ulc_clip_spec_parse(s->path, s->dir, c, &s->clip, ctx));
    if (s->method == ULC_METHOD_NHL_KL && !s->clip.coarse.n)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: method nhl-kl keeps the forgotten concepts' "
                        "coarse classes: the spec needs 'clip.coarse' ({\"fine\": \"coarse\", "
                        "...})", s->path);
    if (s->model_input)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'model.input': a CLIP request feeds the "
                        "image input", s->path);
    if (!s->model_output && !(s->model_output = strdup(ULC_CLIP_FINE)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    return ULC_OK;
}

static ulc_status parse_spec(ulc_request *s, const cJSON *j, ulc_ctx *ctx) {
    const char *path = s->path;
    const cJSON *data, *forget, *model, *lora, *train, *rfa, *ev;
    const char *method = NULL, *train_rel = NULL, *test_rel = NULL, *str = NULL, *ref_rel = NULL;
    ulc_method_train run = {0};
    if (!cJSON_IsObject(j))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: expected a JSON object, got %s", path,
                        ulc_json_what(j));
    ULC_TRY(ulc_spec_check_keys(path, j, "", k_top_keys, ctx));
    ULC_TRY(get_object(path, j, "data", &data, ctx));
    ULC_TRY(get_object(path, j, "forget", &forget, ctx));
    ULC_TRY(get_object(path, j, "model", &model, ctx));
    ULC_TRY(get_object(path, j, "lora", &lora, ctx));
    ULC_TRY(get_object(path, j, "train", &train, ctx));
    ULC_TRY(get_object(path, j, "rfa", &rfa, ctx));
    ULC_TRY(get_object(path, j, "eval", &ev, ctx));
    ULC_TRY(get_str(path, j, "", "method", &method, ctx));
    if (!method) return ulc_fail(ctx, ULC_ERR_INVALID, "%s: missing key 'method' (\"rfa\")", path);
    ULC_TRY(parse_method(s, j, method, ctx));
    ULC_TRY(parse_data_model(s, data, forget, model, &train_rel, &test_rel, ctx));
    if (lora) ULC_TRY(parse_lora(s, lora, ctx));
    if (train) ULC_TRY(parse_train(s, train, &run, ctx));
    ULC_TRY(resolve_train(s, &run, ctx));
    if (rfa) ULC_TRY(parse_rfa(s, rfa, ctx));
    ULC_TRY(parse_gates(s, j, test_rel != NULL, ctx));
    if (ev) ULC_TRY(parse_eval(s, ev, &ref_rel, ctx));
    if (s->gates.set[ULC_GATE_EXTRACT] && s->lm.extract_rows == 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'gates.extract_max': extraction is off "
                        "(eval.extract_rows is 0)", path);
    if (s->gates.set[ULC_GATE_RELEARN] && s->relearn_steps == 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'gates.relearn_steps_min': the relearning "
                        "probe is off (eval.relearn_steps is 0)", path);
    if (s->gates.set[ULC_GATE_RELEARN] && s->gates.max[ULC_GATE_RELEARN] > (double)s->relearn_steps)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'gates.relearn_steps_min': %.0f is more "
                        "than the probe's eval.relearn_steps (%ld), so it could never be measured",
                        path, s->gates.max[ULC_GATE_RELEARN], s->relearn_steps);
    /* report: relative to the spec; the file need not exist */
    ULC_TRY(get_str(path, j, "", "report", &str, ctx));
    if (str && !(s->report = str[0] == '/' ? strdup(str) : ulc_path_join(s->dir, str)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    ULC_TRY(parse_clip(s, j, ctx));
    ULC_TRY(ulc_request_parse_robust(s, j, ctx));
    ULC_TRY(parse_files(s, forget, model, train_rel, test_rel, ref_rel, ctx));
    return ulc_request_passes(s, ctx);
}

ulc_status ulc_spec_parse(const char *path, ulc_request *s, ulc_ctx *ctx) {
    ulc_request_init(s, path);
    s->is_spec = 1;
    if (!(s->dir = ulc_path_dirname(path))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    cJSON *j = NULL;
    ULC_TRY(parse_json(path, "forget spec", &j, ctx));
    ulc_status st = parse_spec(s, j, ctx);
    cJSON_Delete(j);
    return st;
}

/* ---- the passes ---------------------------------------------------------------------------------- */

/* The method's pipeline: lora-inject (the spec's targets/include/exclude, else RFA's placement)
 * when the method trains adapters, the method with every setting explicit, lora-merge. */
ulc_status ulc_request_passes(ulc_request *s, ulc_ctx *ctx) {
    if (s->passes) return ULC_OK;
    ULC_TRY(ulc_methods_register(ctx));
    ulc_pipeline *p = NULL;
    int lora = s->method == ULC_METHOD_RFA || s->unlearn.what == ULC_TRAIN_LORA;
    ulc_status st = ulc_pipeline_create(&p, ctx);
#define SET(call)                                                                                  \
    do {                                                                                           \
        if (st == ULC_OK) st = (call);                                                             \
    } while (0)
    if (lora) {
        SET(ulc_pipeline_append(p, "lora-inject", ctx));
        SET(ulc_pipeline_set_int(p, "rank", s->rank, ctx));
        SET(ulc_pipeline_set_num(p, "alpha", s->alpha, ctx));
        if (!s->lora_custom && s->clip.given) { /* the tower's linear layers */
            SET(ulc_pipeline_set_str(p, "targets", "MatMul|Gemm", ctx));
            SET(ulc_pipeline_set_str(p, "include", ulc_clip_tower_globs(&s->clip), ctx));
        } else if (!s->lora_custom) SET(ulc_pipeline_set_str(p, "placement", "rfa", ctx));
        if (s->targets) SET(ulc_pipeline_set_str(p, "targets", s->targets, ctx));
        if (s->include) SET(ulc_pipeline_set_str(p, "include", s->include, ctx));
        if (s->exclude) SET(ulc_pipeline_set_str(p, "exclude", s->exclude, ctx));
    }
    SET(ulc_pipeline_append(p, s->method_name, ctx));
    if (s->method == ULC_METHOD_SSD) { /* trains nothing: no optimizer settings */
        SET(ulc_pipeline_set_int(p, "batch_size", s->batch_size, ctx));
        SET(ulc_pipeline_set_num(p, "alpha", s->unlearn.ssd_alpha, ctx));
        SET(ulc_pipeline_set_num(p, "lambda", s->unlearn.ssd_lambda, ctx));
        if (s->unlearn.ssd_params) SET(ulc_pipeline_set_str(p, "params", s->unlearn.ssd_params, ctx));
    } else {
        SET(ulc_pipeline_set_int(p, "epochs", s->epochs, ctx));
        SET(ulc_pipeline_set_int(p, "batch_size", s->batch_size, ctx));
        SET(ulc_pipeline_set_num(p, "lr", s->lr, ctx));
        SET(ulc_pipeline_set_num(p, "weight_decay", s->weight_decay, ctx));
        SET(ulc_pipeline_set_str(p, "optimizer", s->optimizer == ULC_OPTIM_SGD ? "sgd" : "adamw", ctx));
        if (s->optimizer == ULC_OPTIM_SGD) SET(ulc_pipeline_set_num(p, "momentum", s->momentum, ctx));
    }
    if (s->method == ULC_METHOD_RFA) {
        SET(ulc_pipeline_set_num(p, "gamma", s->gamma, ctx));
        SET(ulc_pipeline_set_str(p, "norm", s->norm_name, ctx));
    } else if (s->method != ULC_METHOD_RETRAIN && s->method != ULC_METHOD_SSD) {
        static const char *const what[] = {"all", "all_but_classifier", "lora"};
        SET(ulc_pipeline_set_str(p, "train", what[s->unlearn.what], ctx));
    }
    if (s->method == ULC_METHOD_DELETE) {
        SET(ulc_pipeline_set_str(p, "mask", s->unlearn.mask_all_forget ? "all_forget" : "own", ctx));
        SET(ulc_pipeline_set_num(p, "temperature", s->unlearn.temperature, ctx));
        if (s->delete_retain) SET(ulc_pipeline_set_str(p, "retain", s->delete_retain, ctx));
    }
    if (s->method == ULC_METHOD_SCRUB) {
        SET(ulc_pipeline_set_num(p, "alpha", s->unlearn.scrub_alpha, ctx));
        SET(ulc_pipeline_set_num(p, "gamma", s->unlearn.scrub_gamma, ctx));
    }
    if (s->method == ULC_METHOD_GRADDIFF || s->method == ULC_METHOD_NPO)
        SET(ulc_pipeline_set_num(p, "retain_weight", s->unlearn.retain_weight, ctx));
    if (s->method == ULC_METHOD_GRADDIFF)
        SET(ulc_pipeline_set_str(p, "retain", s->unlearn.retain_kl ? "kl" : "ce", ctx));
    if (s->method == ULC_METHOD_NPO) SET(ulc_pipeline_set_num(p, "beta", s->unlearn.npo_beta, ctx));
    if (s->method == ULC_METHOD_NHL_KL) {
        SET(ulc_pipeline_set_num(p, "margin", s->unlearn.nhl_margin, ctx));
        SET(ulc_pipeline_set_num(p, "alpha_coarse", s->unlearn.nhl_alpha_coarse, ctx));
        SET(ulc_pipeline_set_num(p, "alpha_fine", s->unlearn.nhl_alpha_fine, ctx));
    }
    if (s->method == ULC_METHOD_MEGU) {
        const ulc_unlearn_opts *u = &s->unlearn;
        SET(ulc_pipeline_set_num(p, "tau", u->megu_tau, ctx));
        SET(ulc_pipeline_set_num(p, "alpha", u->megu_alpha, ctx));
        SET(ulc_pipeline_set_int(p, "noise_steps", u->megu_noise_steps, ctx));
        SET(ulc_pipeline_set_num(p, "noise_lr", u->megu_noise_lr, ctx));
        SET(ulc_pipeline_set_num(p, "noise_lambda", u->megu_noise_lambda, ctx));
        SET(ulc_pipeline_set_int(p, "retain_rows", u->megu_retain_rows, ctx));
        if (u->megu_similarity) SET(ulc_pipeline_set_str(p, "similarity", u->megu_similarity, ctx));
    }
    if (lora) SET(ulc_pipeline_append(p, "lora-merge", ctx));
    SET(ulc_request_append_robust(s, p, ctx)); /* key "robust": after everything (jobs/robust.c) */
#undef SET
    if (st != ULC_OK) {
        ulc_pipeline_free(p);
        return ulc_fail(ctx, st, "%s: the spec as passes", s->path);
    }
    s->passes = p;
    return ULC_OK;
}

ulc_forget_set ulc_request_forget_set(const ulc_request *s) {
    return (ulc_forget_set){.kind = s->kind == ULC_FORGET_CLASSES ? ULC_FORGET_CLASSES
                                                              : ULC_FORGET_INDICES,
                            .classes = s->classes, .n_classes = s->n_classes,
                            .indices = s->indices, .n_indices = s->n_indices, .where = s->path,
                            .indices_file = s->indices_file, .forget_file = s->forget_file,
                            .class_names = s->by_concept ? s->clip.classes.v : NULL};
}

/* ---- requests built in code ------------------------------------------------------------------------ */

static ulc_status set_str(char **dst, const char *v, ulc_ctx *ctx) {
    char *c = v ? strdup(v) : NULL;
    if (v && !c) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (request)");
    free(*dst);
    *dst = c;
    return ULC_OK;
}

ulc_status ulc_request_set_data(ulc_request *rq, const char *train, const char *test,
                                ulc_ctx *ctx) {
    if (!train) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: no training data given", rq->path);
    ULC_TRY(set_str(&rq->train, train, ctx));
    return set_str(&rq->test, test, ctx);
}

/* A copy of v[0..n) after the checks the spec makes: not empty, >= 0, no value twice. */
static ulc_status id_list(const char *file, const char *what, const char *item,
                          const int64_t *v, int64_t n, int64_t **out, ulc_ctx *ctx) {
    if (n <= 0)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: %s: the list is empty (the forget set "
                        "would be empty)", file, what);
    for (int64_t i = 0; i < n; i++)
        if (v[i] < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: %s: item %lld: expected a %s (an "
                            "integer >= 0), got %lld", file, what, (long long)i, item,
                            (long long)v[i]);
    ulc_ctx dctx;
    ulc_ctx_init(&dctx);
    if (no_duplicates(file, what, item, v, n, &dctx) != ULC_OK)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s", dctx.msg);
    if (!(*out = malloc((size_t)n * sizeof **out)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (request)");
    memcpy(*out, v, (size_t)n * sizeof **out);
    return ULC_OK;
}

/* The forget set: classes or rows (the other list is dropped). */
static ulc_status set_forget(ulc_request *rq, ulc_forget_kind kind, const int64_t *v, int64_t n,
                             const char *what, ulc_ctx *ctx) {
    int64_t *c = NULL;
    int classes = kind == ULC_FORGET_CLASSES;
    ULC_TRY(id_list(rq->path, what, classes ? "class" : "row", v, n, &c, ctx));
    free(rq->classes);
    free(rq->indices);
    free(rq->indices_file); /* the rows are the caller's now, not a file's */
    rq->indices_file = NULL;
    rq->by_concept = 0;
    free(rq->forget_file);
    rq->forget_file = NULL;
    rq->classes = classes ? c : NULL;
    rq->n_classes = classes ? (int)n : 0;
    rq->indices = classes ? NULL : c;
    rq->n_indices = classes ? 0 : n;
    rq->kind = kind;
    rq->forget_given = 1;
    return ULC_OK;
}

ulc_status ulc_request_set_classes(ulc_request *rq, const int64_t *classes, int n,
                                   const char *what, ulc_ctx *ctx) {
    return set_forget(rq, ULC_FORGET_CLASSES, classes, n, what, ctx);
}

ulc_status ulc_request_set_rows(ulc_request *rq, const int64_t *rows, int64_t n,
                                const char *what, ulc_ctx *ctx) {
    return set_forget(rq, ULC_FORGET_INDICES, rows, n, what, ctx);
}

ulc_status ulc_request_set_passes(ulc_request *rq, const char *pipeline, ulc_ctx *ctx) {
    ULC_TRY(ulc_methods_register(ctx));
    ulc_pipeline *p = NULL;
    ULC_TRY(ulc_pipeline_parse(pipeline, &p, ctx));
    int methods = 0;
    for (int i = 0; i < ulc_pipeline_length(p); i++)
        methods += ulc_method_of_pass(ulc_pipeline_pass(p, i, NULL)->name) >= 0;
    if (methods != 1) {
        ulc_pipeline_free(p);
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "passes '%s': expected one unlearning method "
                        "(rfa, delete, finetune, neggrad, random-label, scrub, retrain, graddiff, "
                        "npo, ssd, nhl-kl or megu), found %d", pipeline, methods);
    }
    ulc_pipeline_free(rq->passes);
    rq->passes = p;
    return ULC_OK;
}
