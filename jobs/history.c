/* history.c — a model's unlearning requests in its metadata (history.h). */
#include "jobs/history.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileset.h"
#include "common/sha256.h"
#include "ir/digest.h"


/* A whole number in [0, 2^53]. */
static int whole(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0 &&
           floor(v->valuedouble) == v->valuedouble;
}

int ulc_history_is_sha256(const char *s) {
    if (!s || strlen(s) != 64) return 0;
    for (int k = 0; k < 64; k++)
        if (!((s[k] >= '0' && s[k] <= '9') || (s[k] >= 'a' && s[k] <= 'f'))) return 0;
    return 1;
}

/* Key k of o is absent or a sha256. */
static int sha_or_absent(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return !v || (cJSON_IsString(v) && ulc_history_is_sha256(v->valuestring));
}

/* The hashes an entry may hold (history.h), each absent or a sha256 where it belongs. */
static int hashes_ok(const cJSON *e) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(e, "input");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(e, "data");
    if (!sha_or_absent(e, "weights_sha256") || !sha_or_absent(e, "spec_sha256")) return 0;
    if (in && (!cJSON_IsObject(in) || !sha_or_absent(in, "sha256") ||
               !sha_or_absent(in, "weights_sha256")))
        return 0;
    if (!data) return 1;
    if (!cJSON_IsObject(data)) return 0;
    for (const cJSON *d = data->child; d; d = d->next)
        if (!cJSON_IsObject(d) || !sha_or_absent(d, "sha256")) return 0;
    return 1;
}

/* One entry as this file writes it: a method, and exactly one of a list of classes or a list of
 * rows with the data file's sha256 and row count; every number whole and >= 0; the hashes. */
static int entry_ok(const cJSON *e) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "forget");
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(f, "classes");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(f, "rows");
    if (!cJSON_IsObject(e) || !cJSON_IsObject(f) || (cl != NULL) == (rows != NULL) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "method")) || !hashes_ok(e))
        return 0;
    if (rows && (!cJSON_IsArray(rows) ||
                 !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(f, "data_sha256")) ||
                 !whole(cJSON_GetObjectItemCaseSensitive(f, "data_rows"))))
        return 0;
    const cJSON *list = cl ? cl : rows;
    if (!cJSON_IsArray(list)) return 0;
    for (const cJSON *v = list->child; v; v = v->next)
        if (!whole(v)) return 0;
    return 1;
}

ulc_status ulc_history_read(const ulc_model *m, cJSON **out, ulc_ctx *ctx) {
    *out = NULL;
    const char *text = ulc_model_metadata(m, ULC_META_HISTORY);
    if (!text) return ULC_OK;
    const char *where = m->source_path ? m->source_path : "the model";
    cJSON *j = cJSON_Parse(text);
    if (!j || !cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: metadata '%s': expected a JSON list of "
                        "unlearning requests", where, ULC_META_HISTORY);
    }
    int i = 0;
    for (const cJSON *e = j->child; e; e = e->next, i++) {
        if (!entry_ok(e)) {
            cJSON_Delete(j);
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: metadata '%s': request %d is not "
                            "{\"method\", \"forget\": {\"classes\": [...]} or {\"rows\": [...], "
                            "\"data_sha256\", \"data_rows\"}} with its hashes as 64 hex digits",
                            where, ULC_META_HISTORY, i + 1);
        }
    }
    *out = j;
    return ULC_OK;
}

void ulc_history_carry_clear(ulc_history_carry *c) {
    if (!c) return;
    free(c->classes);
    free(c->rows);
    free(c->all_classes);
    memset(c, 0, sizeof *c);
}

/* Appends v to a[0..*n) unless it is there or in skip[0..ns); *cap grows. 0 when out of memory. */
static int add_unique(int64_t **a, int64_t *n, int64_t *cap, int64_t v, const int64_t *skip,
                      int64_t ns) {
    for (int64_t k = 0; k < ns; k++)
        if (skip[k] == v) return 1;
    for (int64_t k = 0; k < *n; k++)
        if ((*a)[k] == v) return 1;
    if (*n == *cap) {
        int64_t c = *cap ? 2 * *cap : 16;
        int64_t *b = realloc(*a, (size_t)c * sizeof *b);
        if (!b) return 0;
        *a = b;
        *cap = c;
    }
    (*a)[(*n)++] = v;
    return 1;
}

/* The carried lists from the parsed history (entries checked by ulc_history_read). */
static ulc_status collect(const cJSON *h, const ulc_forget_set *fs, const ulc_data *tr,
                          const char *data_sha, ulc_history_carry *c, ulc_ctx *ctx) {
    int64_t nc = 0, cc = 0;
    const int64_t *own = fs->kind == ULC_FORGET_CLASSES ? fs->classes : NULL;
    int64_t n_own = own ? fs->n_classes : 0;
    uint8_t *seen = NULL; /* carried rows, one flag per training row */
    for (const cJSON *e = h->child; e; e = e->next) {
        c->requests++;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "forget");
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(f, "classes");
        if (cJSON_IsArray(cl)) {
            for (const cJSON *v = cl->child; v; v = v->next)
                if (!add_unique(&c->classes, &nc, &cc, (int64_t)v->valuedouble, own, n_own)) {
                    free(seen);
                    return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (history)");
                }
            continue;
        }
        const cJSON *rows = cJSON_GetObjectItemCaseSensitive(f, "rows");
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(f, "data_sha256");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(f, "data_rows");
        if (!data_sha || strcmp(sha->valuestring, data_sha) != 0 ||
            (int64_t)n->valuedouble != tr->rows) {
            c->unmatched++;
            continue;
        }
        if (!seen && !(seen = calloc((size_t)tr->rows + 1, 1)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (history)");
        for (const cJSON *v = rows->child; v; v = v->next)
            if ((int64_t)v->valuedouble < tr->rows) seen[(int64_t)v->valuedouble] = 1;
    }
    c->n_classes = (int)nc;
    for (int64_t i = 0; seen && i < tr->rows; i++) c->n_rows += seen[i];
    if (c->n_rows && !(c->rows = malloc((size_t)c->n_rows * sizeof *c->rows))) {
        free(seen);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (history)");
    }
    for (int64_t i = 0, k = 0; c->n_rows && i < tr->rows; i++)
        if (seen[i]) c->rows[k++] = i;
    free(seen);
    return ULC_OK;
}

/* Whether the history holds a row request (only then is the data file hashed). */
static int has_rows(const cJSON *h) {
    for (const cJSON *e = h->child; e; e = e->next)
        if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(e, "forget"), "rows")))
            return 1;
    return 0;
}

ulc_status ulc_history_carry_over(const ulc_model *m, const ulc_forget_set *fs,
                                  const ulc_data *tr, ulc_history_carry *c, ulc_ctx *ctx) {
    memset(c, 0, sizeof *c);
    c->fs = *fs;
    cJSON *h = NULL;
    ULC_TRY(ulc_history_read(m, &h, ctx));
    if (!h) return ULC_OK;
    char sha[ULC_SHA256_HEX];
    ulc_status st = has_rows(h) ? ulc_file_sha256(tr->path, "training data", sha, ctx) : ULC_OK;
    if (st == ULC_OK) st = collect(h, fs, tr, has_rows(h) ? sha : NULL, c, ctx);
    cJSON_Delete(h);
    ULC_TRY(st);
    c->fs.also_classes = c->classes;
    c->fs.n_also_classes = c->n_classes;
    c->fs.also_rows = c->rows;
    c->fs.n_also_rows = c->n_rows;
    int own = fs->kind == ULC_FORGET_CLASSES ? fs->n_classes : 0;
    c->all_classes = malloc(((size_t)own + (size_t)c->n_classes + 1) * sizeof *c->all_classes);
    if (!c->all_classes) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (history)");
    if (own) memcpy(c->all_classes, fs->classes, (size_t)own * sizeof *c->all_classes);
    if (c->n_classes)
        memcpy(c->all_classes + own, c->classes, (size_t)c->n_classes * sizeof *c->all_classes);
    c->n_all_classes = own + c->n_classes;
    return ULC_OK;
}

static cJSON *int_array(const int64_t *v, int64_t n) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t k = 0; a && k < n; k++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[k]));
    return a;
}

/* {"sha256", "rows"} of a data file. */
static void data_entry(cJSON *data, const char *key, const ulc_data *d) {
    if (!d || !ulc_history_is_sha256(d->sha)) return;
    cJSON *o = cJSON_AddObjectToObject(data, key);
    cJSON_AddStringToObject(o, "sha256", d->sha);
    cJSON_AddNumberToObject(o, "rows", (double)d->rows);
}

/* The entry for this request. */
static ulc_status entry(const ulc_request *rq, const ulc_history_inputs *in, const char *method,
                        cJSON *e, ulc_ctx *ctx) {
    const ulc_data *tr = in->tr;
    cJSON_AddStringToObject(e, "ulc", ULC_VERSION);
    cJSON_AddStringToObject(e, "method", method ? method : "?");
    char *passes = ulc_pipeline_text(rq->passes);
    if (!passes) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (history)");
    cJSON_AddStringToObject(e, "passes", passes);
    free(passes);
    char sha[ULC_SHA256_HEX];
    if (rq->is_spec) {
        ULC_TRY(ulc_file_sha256(rq->path, "spec", sha, ctx));
        cJSON_AddStringToObject(e, "spec_sha256", sha);
    }
    int has_in = in->in_sha && *in->in_sha, has_w = in->in_weights_sha && *in->in_weights_sha;
    if (has_in || has_w) {
        cJSON *io = cJSON_AddObjectToObject(e, "input");
        if (has_in) cJSON_AddStringToObject(io, "sha256", in->in_sha);
        if (has_w) cJSON_AddStringToObject(io, "weights_sha256", in->in_weights_sha);
    }
    if (tr && ulc_history_is_sha256(tr->sha)) {
        cJSON *data = cJSON_AddObjectToObject(e, "data");
        data_entry(data, "train", tr);
        data_entry(data, "test", in->te);
    }
    cJSON *f = cJSON_AddObjectToObject(e, "forget");
    if (rq->kind == ULC_FORGET_CLASSES) {
        cJSON_AddItemToObject(f, "classes", int_array(rq->classes, rq->n_classes));
        return ULC_OK;
    }
    ULC_TRY(ulc_file_sha256(tr->path, "training data", sha, ctx));
    cJSON_AddItemToObject(f, "rows", int_array(rq->indices, rq->n_indices));
    cJSON_AddStringToObject(f, "data_sha256", sha);
    cJSON_AddNumberToObject(f, "data_rows", (double)tr->rows);
    return ULC_OK;
}

/* h, printed, as m's history. */
static ulc_status write_back(ulc_model *m, const cJSON *h, ulc_ctx *ctx) {
    char *text = cJSON_PrintUnformatted(h);
    if (!text) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (history)");
    ulc_status st = ulc_model_set_metadata(m, ULC_META_HISTORY, text, ctx);
    free(text);
    return st;
}

ulc_status ulc_history_record(ulc_model *m, const ulc_request *rq, const ulc_history_inputs *in,
                              const char *method, ulc_ctx *ctx) {
    cJSON *h = NULL;
    ULC_TRY(ulc_history_read(m, &h, ctx));
    if (!h && !(h = cJSON_CreateArray())) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    cJSON *e = cJSON_CreateObject();
    ulc_status st = e ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (history)");
    if (st == ULC_OK) {
        cJSON_AddItemToArray(h, e);
        st = entry(rq, in, method, e, ctx);
    }
    if (st == ULC_OK) st = write_back(m, h, ctx);
    cJSON_Delete(h);
    return st;
}

ulc_status ulc_history_seal(ulc_model *m, char *hex, ulc_ctx *ctx) {
    char sha[ULC_SHA256_HEX];
    cJSON *h = NULL;
    ULC_TRY(ulc_history_read(m, &h, ctx));
    cJSON *last = h ? cJSON_GetArrayItem(h, cJSON_GetArraySize(h) - 1) : NULL;
    ulc_status st = last ? ulc_model_weights_sha256(m, sha, ctx)
                         : ulc_fail(ctx, ULC_ERR_INTERNAL, "history: no request to seal");
    if (st == ULC_OK) {
        cJSON *v = cJSON_CreateString(sha);
        if (!v) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (history)");
        else if (cJSON_GetObjectItemCaseSensitive(last, "weights_sha256"))
            cJSON_ReplaceItemInObjectCaseSensitive(last, "weights_sha256", v);
        else cJSON_AddItemToObject(last, "weights_sha256", v);
    }
    if (st == ULC_OK) st = write_back(m, h, ctx);
    cJSON_Delete(h);
    if (st == ULC_OK && hex) memcpy(hex, sha, ULC_SHA256_HEX);
    return st;
}

void ulc_history_report(cJSON *report, const ulc_history_carry *c) {
    if (!c->requests) return;
    cJSON *o = cJSON_AddObjectToObject(report, "history");
    cJSON_AddNumberToObject(o, "requests", c->requests);
    cJSON_AddItemToObject(o, "carried_classes", int_array(c->classes, c->n_classes));
    cJSON_AddNumberToObject(o, "carried_rows", (double)c->n_rows);
    cJSON_AddNumberToObject(o, "unmatched_requests", c->unmatched);
}

void ulc_history_print(FILE *out, const ulc_history_carry *c) {
    if (!c->requests) return;
    fprintf(out, "history: %d earlier request%s; kept out of the retain set:", c->requests,
            c->requests == 1 ? "" : "s");
    if (c->n_classes) {
        fprintf(out, " class%s", c->n_classes == 1 ? "" : "es");
        for (int k = 0; k < c->n_classes; k++)
            fprintf(out, "%s%lld", k ? "," : " ", (long long)c->classes[k]);
    }
    if (c->n_rows) fprintf(out, "%s %lld rows", c->n_classes ? ";" : "", (long long)c->n_rows);
    if (!c->n_classes && !c->n_rows) fprintf(out, " nothing");
    if (c->unmatched)
        fprintf(out, " (%d request%s on other training data not matched)", c->unmatched,
                c->unmatched == 1 ? "" : "s");
    fputc('\n', out);
}
