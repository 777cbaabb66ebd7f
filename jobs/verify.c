/* verify.c — `ulc verify`: an unlearned model checked against its history and report
 * (verify.h). */
#include "jobs/verify.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/json.h"
#include "common/sha256.h"
#include "io/model.h"
#include "ir/digest.h"
#include "jobs/history.h"

typedef enum { V_OK, V_MISMATCH, V_UNCHECKED } vres;

static const char *const k_res[] = {"ok", "MISMATCH", "not checked"};

typedef struct vitem {
    char what[40];    /* the item's name in the table */
    vres r;
    char detail[400]; /* what was compared, or why it was not */
} vitem;

/* One verification's state. */
typedef struct vrun {
    const ulc_verify_opts *o;
    vitem *items;
    int n, cap;
    cJSON *rep;         /* the report (o->report), or NULL */
    char *rep_dir;      /* the report's directory (relative paths in it are tried there) */
    cJSON *hist;        /* OUT's history */
    const cJSON *last;  /* its last request */
    char wsha[ULC_SHA256_HEX]; /* OUT's weights, recomputed */
    char in_file_sha[ULC_SHA256_HEX]; /* the input model's main file, when checked */
    vres in_file_r;     /* how the input file's check went (V_UNCHECKED: not done) */
} vrun;

__attribute__((format(printf, 4, 5)))
static ulc_status add(vrun *v, const char *what, vres r, const char *fmt, ...) {
    if (v->n == v->cap) {
        int c = v->cap ? 2 * v->cap : 16;
        vitem *b = realloc(v->items, (size_t)c * sizeof *b);
        if (!b) return ULC_ERR_NOMEM;
        v->items = b;
        v->cap = c;
    }
    vitem *it = &v->items[v->n++];
    snprintf(it->what, sizeof it->what, "%s", what);
    it->r = r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->detail, sizeof it->detail, fmt, ap);
    va_end(ap);
    return ULC_OK;
}

#define ADD(v, ...)                                                                              \
    do {                                                                                         \
        if (add(v, __VA_ARGS__) != ULC_OK)                                                       \
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (verify)");                       \
    } while (0)

/* An item comparing a recomputed hash with a recorded one (where: what was hashed). */
static ulc_status compare(vrun *v, const char *what, const char *where, const char *got,
                          const char *want, const char *recorded_in, ulc_ctx *ctx) {
    if (strcmp(got, want) == 0) ADD(v, what, V_OK, "%s: sha256 %.16s", where, got);
    else ADD(v, what, V_MISMATCH, "%s: sha256 %.16s, %s records %.16s", where, got, recorded_in,
             want);
    return ULC_OK;
}

/* ---- the report --------------------------------------------------------------------------------- */

static const cJSON *get(const cJSON *o, const char *key) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *s = get(o, key);
    return cJSON_IsString(s) ? s->valuestring : NULL;
}

/* The report's entry at a.b (b may be NULL): an object with an optional string "path" and
 * "file" and optional sha256 "sha256" and "weights_sha256"; *out NULL when absent or null. */
static ulc_status rep_entry(const vrun *v, const char *a, const char *b, const cJSON **out,
                            ulc_ctx *ctx) {
    *out = NULL;
    const cJSON *e = get(v->rep, a);
    char key[64];
    snprintf(key, sizeof key, "%s%s%s", a, b ? "." : "", b ? b : "");
    if (b && e && !cJSON_IsObject(e))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': expected an object, got %s",
                        v->o->report, a, ulc_json_what(e));
    if (b) e = get(e, b);
    if (!e || cJSON_IsNull(e)) return ULC_OK;
    if (!cJSON_IsObject(e))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': expected an object with a path and "
                        "a sha256, got %s", v->o->report, key, ulc_json_what(e));
    static const char *const strs[] = {"path", "file"}, *const shas[] = {"sha256", "weights_sha256"};
    for (int k = 0; k < 2; k++) {
        const cJSON *s = get(e, strs[k]);
        if (s && !cJSON_IsString(s))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s.%s': expected a string, got %s",
                            v->o->report, key, strs[k], ulc_json_what(s));
        s = get(e, shas[k]);
        if (s && !cJSON_IsString(s))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s.%s': expected a sha256 (64 "
                            "lowercase hex digits), got %s", v->o->report, key, shas[k],
                            ulc_json_what(s));
        if (s && !ulc_history_is_sha256(s->valuestring))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s.%s': expected a sha256 (64 "
                            "lowercase hex digits), got \"%.24s%s\"", v->o->report, key, shas[k],
                            s->valuestring, strlen(s->valuestring) > 24 ? "..." : "");
    }
    *out = e;
    return ULC_OK;
}

/* Reads and parses the report: a JSON object with an "output" object, as `ulc IN --forget`
 * writes it. */
static ulc_status read_report(vrun *v, ulc_ctx *ctx) {
    const char *path = v->o->report;
    ulc_mapping *m = NULL;
    ULC_TRY(ulc_mapping_open(path, "report", &m, ctx));
    ulc_status st = ulc_json_parse((const char *)m->data, m->size, ULC_JSON_UNIQUE_KEYS, &v->rep,
                                   ctx);
    ulc_mapping_unref(m);
    if (st != ULC_OK) return ulc_fail(ctx, st, "%s", path);
    if (!cJSON_IsObject(v->rep) || !cJSON_IsObject(get(v->rep, "output")))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: expected the JSON report of `ulc IN --forget` "
                        "(an object with an \"output\" object)", path);
    const cJSON *meth = get(v->rep, "method");
    if (meth && !cJSON_IsString(meth))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'method': expected a string, got %s", path,
                        ulc_json_what(meth));
    if (!(v->rep_dir = ulc_path_dirname(path)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (verify)");
    return ULC_OK;
}

/* ---- files -------------------------------------------------------------------------------------- */

/* Where a file to check is. A path an option named: as given (missing: an error). A path from
 * the report: as given when it exists, else a relative one next to the report; *out NULL when
 * neither exists, and *ambiguous set (and *out NULL) when a relative path names two different
 * files, one from the current directory and one next to the report. *out is malloc'd. */
static ulc_status locate(const vrun *v, const char *path, int from_option, char **out,
                         int *ambiguous, ulc_ctx *ctx) {
    *out = NULL;
    *ambiguous = 0;
    if (from_option && !ulc_path_exists(path))
        return ulc_fail(ctx, ULC_ERR_IO, "%s: no such file or directory", path);
    char *beside = NULL;
    if (!from_option && path[0] != '/' && v->rep_dir) {
        if (!(beside = ulc_path_join(v->rep_dir, path)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        if (!ulc_path_exists(beside)) {
            free(beside);
            beside = NULL;
        }
    }
    if (ulc_path_exists(path)) {
        *ambiguous = beside && strcmp(beside, path) != 0 && !ulc_path_same_file(beside, path);
        free(beside);
        if (*ambiguous) return ULC_OK;
        if (!(*out = strdup(path))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        return ULC_OK;
    }
    *out = beside;
    return ULC_OK;
}

/* One file item: the file flag names (else the report entry's path) hashed and compared with
 * the report entry's sha256 (else hist_sha, the history's). Nothing when neither records it;
 * hint says how to have it checked. */
static ulc_status check_file(vrun *v, const char *what, const char *hint, const char *flag,
                             const cJSON *rep, const char *hist_sha, ulc_ctx *ctx) {
    const char *want = rep ? str(rep, "sha256") : hist_sha;
    const char *path = flag ? flag : str(rep, "file") ? str(rep, "file") : str(rep, "path");
    if (!want && !flag) {
        if (rep || hist_sha) ADD(v, what, V_UNCHECKED, "no sha256 recorded");
        return ULC_OK;
    }
    if (!want) {
        ADD(v, what, V_UNCHECKED, "%s: neither the report nor the history records its sha256",
            flag);
        return ULC_OK;
    }
    if (!path) {
        ADD(v, what, V_UNCHECKED, "no path (%s)", hint);
        return ULC_OK;
    }
    char *at = NULL;
    int amb = 0;
    ULC_TRY(locate(v, path, flag != NULL, &at, &amb, ctx));
    if (!at) {
        ADD(v, what, V_UNCHECKED, "%s %s (%s)", path, amb ? "names one file here and "
            "another next to the report" : "is absent", hint);
        return ULC_OK;
    }
    char sha[ULC_SHA256_HEX];
    ulc_status st = ulc_sha256_file(at, sha, ctx);
    if (st == ULC_OK) st = compare(v, what, at, sha, want, rep ? "the report" : "the history", ctx);
    free(at);
    return st;
}

/* The input model: its main file's bytes, and its weights (loaded, ir/digest.h). */
static ulc_status check_input(vrun *v, const cJSON *hin, ulc_ctx *ctx) {
    const cJSON *rep = NULL;
    ULC_TRY(rep_entry(v, "input", NULL, &rep, ctx));
    const char *flag = v->o->input, *path = flag ? flag : str(rep, "path");
    const char *want_file = rep ? str(rep, "sha256") : str(hin, "sha256");
    const char *want_w = rep ? str(rep, "weights_sha256") : str(hin, "weights_sha256");
    const char *by = rep ? "the report" : "the history";
    if (!want_file && !want_w && !flag) return ULC_OK;
    char *at = NULL;
    int amb = 0;
    if (path) ULC_TRY(locate(v, path, flag != NULL, &at, &amb, ctx));
    const char *why = !path ? "no path (give --input)"
                      : amb ? "names one model here and another next to the report (give --input)"
                      : !at ? "is absent (give --input)" : NULL;
    if (why) {
        ADD(v, "input file", V_UNCHECKED, "%s%s%s", path ? path : "", path ? " " : "", why);
        ADD(v, "input weights", V_UNCHECKED, "%s%s%s", path ? path : "", path ? " " : "", why);
        return ULC_OK;
    }
    ulc_io_format fmt = ulc_io_input_format(at);
    char *main_file = ulc_io_model_main_file(at, fmt);
    ulc_status st = main_file ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    v->in_file_r = V_UNCHECKED;
    if (st == ULC_OK && !want_file)
        st = add(v, "input file", V_UNCHECKED, "%s: no sha256 recorded", main_file);
    else if (st == ULC_OK && !ulc_path_exists(main_file))
        st = add(v, "input file", V_UNCHECKED, "%s is absent", main_file);
    else if (st == ULC_OK && (st = ulc_sha256_file(main_file, v->in_file_sha, ctx)) == ULC_OK) {
        st = compare(v, "input file", main_file, v->in_file_sha, want_file, by, ctx);
        v->in_file_r = v->items[v->n - 1].r;
    }
    free(main_file);
    ulc_model *m = NULL;
    char sha[ULC_SHA256_HEX];
    if (st == ULC_OK && !want_w)
        st = add(v, "input weights", V_UNCHECKED, "%s: no weights sha256 recorded", at);
    else if (st == ULC_OK && v->in_file_r == V_MISMATCH)
        st = add(v, "input weights", V_UNCHECKED, "%s: its file does not match", at);
    else if (st == ULC_OK && (st = ulc_io_load_model(at, NULL, &m, ctx)) == ULC_OK &&
             (st = ulc_model_weights_sha256(m, sha, ctx)) == ULC_OK)
        st = compare(v, "input weights", at, sha, want_w, by, ctx);
    ulc_model_free(m);
    free(at);
    if (st == ULC_ERR_NOMEM && ctx->status == ULC_OK)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (verify)");
    return st;
}

/* The data's sha256 in a history entry: "data.KEY.sha256", or for the training data of an entry
 * written before those, "forget.data_sha256". */
static const char *hist_data_sha(const cJSON *e, const char *key) {
    const char *s = str(get(get(e, "data"), key), "sha256");
    return s || strcmp(key, "train") != 0 ? s : str(get(e, "forget"), "data_sha256");
}

/* Every file the report or the history names, and the output file against the report. */
static ulc_status check_files(vrun *v, ulc_ctx *ctx) {
    const ulc_verify_opts *o = v->o;
    const cJSON *e = v->last, *r = NULL;
    ULC_TRY(check_input(v, get(e, "input"), ctx));
    ULC_TRY(rep_entry(v, "spec", NULL, &r, ctx));
    ULC_TRY(check_file(v, "spec", "give --spec", o->spec, r, str(e, "spec_sha256"), ctx));
    static const char *const keys[] = {"train", "test"};
    static const char *const whats[] = {"train data", "test data"};
    static const char *const opts[] = {"give --train", "give --test"};
    for (int k = 0; k < 2; k++) {
        ULC_TRY(rep_entry(v, "data", keys[k], &r, ctx));
        ULC_TRY(check_file(v, whats[k], opts[k], k ? o->test : o->train, r,
                           hist_data_sha(e, keys[k]), ctx));
    }
    if (!v->rep) return ULC_OK;
    ULC_TRY(rep_entry(v, "forget", "indices_file", &r, ctx));
    if (r) ULC_TRY(check_file(v, "indices file", "put it next to the report", NULL, r, NULL, ctx));
    ULC_TRY(rep_entry(v, "reference", NULL, &r, ctx));
    if (r) ULC_TRY(check_file(v, "reference model", "put it next to the report", NULL, r, NULL, ctx));
    return ULC_OK;
}

/* ---- the output --------------------------------------------------------------------------------- */

/* OUT's weights against the history and the report; OUT's bytes against the report. */
static ulc_status check_output(vrun *v, ulc_ctx *ctx) {
    const char *out = v->o->model;
    const char *hw = str(v->last, "weights_sha256");
    ULC_TRY(compare(v, "weights (history)", out, v->wsha, hw, "the history", ctx));
    if (!v->rep) return ULC_OK;
    const cJSON *r = NULL, *ext = NULL;
    ULC_TRY(rep_entry(v, "output", NULL, &r, ctx));
    ULC_TRY(rep_entry(v, "output", "external_data", &ext, ctx));
    const char *rw = str(r, "weights_sha256");
    if (rw) ULC_TRY(compare(v, "weights (report)", out, v->wsha, rw, "the report", ctx));
    else ADD(v, "weights (report)", V_UNCHECKED, "the report records no output.weights_sha256");
    char *main_file = ulc_io_model_main_file(out, ulc_io_input_format(out));
    if (!main_file) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    char sha[ULC_SHA256_HEX];
    ulc_status st = ULC_OK;
    if (!str(r, "sha256"))
        st = add(v, "output file (report)", V_UNCHECKED, "the report records no output.sha256");
    else if ((st = ulc_sha256_file(main_file, sha, ctx)) == ULC_OK)
        st = compare(v, "output file (report)", main_file, sha, str(r, "sha256"), "the report",
                     ctx);
    free(main_file);
    if (st == ULC_ERR_NOMEM && ctx->status == ULC_OK)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (verify)");
    ULC_TRY(st);
    if (ext) { /* OUT.data, next to OUT */
        size_t n = strlen(out) + 6;
        char *p = malloc(n);
        if (!p) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        snprintf(p, n, "%s.data", out);
        if (!str(ext, "sha256") || !ulc_path_exists(p))
            st = add(v, "output external data", V_UNCHECKED, "%s %s", p,
                     ulc_path_exists(p) ? "has no sha256 in the report" : "is absent");
        else if ((st = ulc_sha256_file(p, sha, ctx)) == ULC_OK)
            st = compare(v, "output external data", p, sha, str(ext, "sha256"), "the report", ctx);
        free(p);
        if (st == ULC_ERR_NOMEM && ctx->status == ULC_OK)
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (verify)");
    }
    return st;
}

/* ---- the record --------------------------------------------------------------------------------- */

/* "report = history: KEY": the two agree (not checked when one of them lacks it). */
static ulc_status agree(vrun *v, const char *key, const char *rep, const char *hist,
                        ulc_ctx *ctx) {
    char what[40];
    snprintf(what, sizeof what, "report = history: %s", key);
    if (!rep && !hist) return ULC_OK;
    if (!rep || !hist)
        ADD(v, what, V_UNCHECKED, "only the %s records it", rep ? "report" : "history");
    else if (strcmp(rep, hist) == 0)
        ADD(v, what, V_OK, "%.*s", strlen(rep) == 64 ? 16 : 32, rep);
    else
        ADD(v, what, V_MISMATCH, "the report has %.*s, the history %.*s",
            strlen(rep) == 64 ? 16 : 32, rep, strlen(hist) == 64 ? 16 : 32, hist);
    return ULC_OK;
}

/* The report against the last request of the history. */
static ulc_status check_agreement(vrun *v, ulc_ctx *ctx) {
    const cJSON *e = v->last, *in = NULL, *spec = NULL, *out = NULL, *tr = NULL, *te = NULL;
    ULC_TRY(rep_entry(v, "input", NULL, &in, ctx));
    ULC_TRY(rep_entry(v, "spec", NULL, &spec, ctx));
    ULC_TRY(rep_entry(v, "output", NULL, &out, ctx));
    ULC_TRY(rep_entry(v, "data", "train", &tr, ctx));
    ULC_TRY(rep_entry(v, "data", "test", &te, ctx));
    ULC_TRY(agree(v, "method", str(v->rep, "method"), str(e, "method"), ctx));
    ULC_TRY(agree(v, "input", str(in, "sha256"), str(get(e, "input"), "sha256"), ctx));
    ULC_TRY(agree(v, "input weights", str(in, "weights_sha256"),
                  str(get(e, "input"), "weights_sha256"), ctx));
    ULC_TRY(agree(v, "spec", str(spec, "sha256"), str(e, "spec_sha256"), ctx));
    ULC_TRY(agree(v, "train data", str(tr, "sha256"), hist_data_sha(e, "train"), ctx));
    ULC_TRY(agree(v, "test data", str(te, "sha256"), hist_data_sha(e, "test"), ctx));
    return agree(v, "weights", str(out, "weights_sha256"), str(e, "weights_sha256"), ctx);
}

/* Each request's input weights are the weights the request before it wrote. */
static ulc_status check_chain(vrun *v, ulc_ctx *ctx) {
    int k = 1;
    for (const cJSON *e = v->hist->child; e && e->next; e = e->next, k++) {
        const char *out = str(e, "weights_sha256"), *in = str(get(e->next, "input"), "weights_sha256");
        char what[40];
        snprintf(what, sizeof what, "history chain %d -> %d", k, k + 1);
        if (!out || !in)
            ADD(v, what, V_UNCHECKED, "request %d records no %s weights sha256", out ? k + 1 : k,
                out ? "input" : "output");
        else if (strcmp(out, in) == 0)
            ADD(v, what, V_OK, "request %d's input weights are request %d's output: %.16s", k + 1,
                k, in);
        else
            ADD(v, what, V_MISMATCH, "request %d's input weights %.16s are not request %d's "
                "output %.16s", k + 1, in, k, out);
    }
    return ULC_OK;
}

/* ---- the job ------------------------------------------------------------------------------------ */

/* OUT, its history and its weights hash. */
static ulc_status load_output(vrun *v, ulc_ctx *ctx) {
    const char *out = v->o->model;
    if (!ulc_path_exists(out)) return ulc_fail(ctx, ULC_ERR_IO, "%s: no such file or directory", out);
    ulc_model *m = NULL;
    ulc_status st = ulc_io_load_model(out, NULL, &m, ctx);
    if (st == ULC_OK) st = ulc_history_read(m, &v->hist, ctx);
    int n = v->hist ? cJSON_GetArraySize(v->hist) : 0;
    if (st == ULC_OK && !n)
        st = ulc_fail(ctx, ULC_ERR_INVALID, "%s: no unlearning history (metadata '%s'): the model "
                      "was not written by `ulc IN --forget`, or its metadata was removed", out,
                      ULC_META_HISTORY);
    if (st == ULC_OK) v->last = cJSON_GetArrayItem(v->hist, n - 1);
    if (st == ULC_OK && !str(v->last, "weights_sha256"))
        st = ulc_fail(ctx, ULC_ERR_INVALID, "%s: metadata '%s': request %d records no "
                      "weights_sha256 (written by a ulc before `ulc verify`): nothing to check the "
                      "weights against", out, ULC_META_HISTORY, n);
    if (st == ULC_OK) st = ulc_model_weights_sha256(m, v->wsha, ctx);
    ulc_model_free(m);
    return st;
}

static void print_table(const vrun *v, const ulc_verify_outcome *res) {
    FILE *t = v->o->table;
    if (!t) return;
    int n = cJSON_GetArraySize(v->hist);
    fprintf(t, "verify %s: request %d of %d (%s)%s%s\n", v->o->model, n, n,
            str(v->last, "method") ? str(v->last, "method") : "?", v->rep ? ", report " : "",
            v->rep ? v->o->report : "");
    for (int i = 0; i < v->n; i++)
        fprintf(t, "  %-11s  %-31s  %s\n", k_res[v->items[i].r], v->items[i].what,
                v->items[i].detail);
    fprintf(t, "%d ok, %d MISMATCH, %d not checked\n", res->matched, res->mismatched,
            res->unchecked);
}

/* The counts and the mismatched items' names. */
static ulc_status tally(const vrun *v, ulc_verify_outcome *res, ulc_ctx *ctx) {
    size_t len = 1;
    for (int i = 0; i < v->n; i++) {
        const vitem *it = &v->items[i];
        res->matched += it->r == V_OK;
        res->mismatched += it->r == V_MISMATCH;
        res->unchecked += it->r == V_UNCHECKED;
        if (it->r == V_MISMATCH) len += strlen(it->what) + 2;
    }
    if (!res->mismatched) return ULC_OK;
    if (!(res->mismatches = malloc(len))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    res->mismatches[0] = '\0';
    for (int i = 0; i < v->n; i++)
        if (v->items[i].r == V_MISMATCH) {
            if (res->mismatches[0]) strcat(res->mismatches, ", ");
            strcat(res->mismatches, v->items[i].what);
        }
    return ULC_OK;
}

void ulc_verify_outcome_clear(ulc_verify_outcome *r) {
    if (!r) return;
    free(r->mismatches);
    memset(r, 0, sizeof *r);
}

ulc_status ulc_verify_files(const ulc_verify_opts *o, ulc_verify_outcome *res, ulc_ctx *ctx) {
    memset(res, 0, sizeof *res);
    if (!o->model) return ulc_fail(ctx, ULC_ERR_INTERNAL, "verify: no model");
    vrun v = {.o = o, .in_file_r = V_UNCHECKED};
    ulc_status st = o->report ? read_report(&v, ctx) : ULC_OK;
    if (st == ULC_OK) st = load_output(&v, ctx);
    if (st == ULC_OK) st = check_output(&v, ctx);
    if (st == ULC_OK) st = check_files(&v, ctx);
    if (st == ULC_OK && v.rep) st = check_agreement(&v, ctx);
    if (st == ULC_OK) st = check_chain(&v, ctx);
    if (st == ULC_OK) st = tally(&v, res, ctx);
    if (st == ULC_OK) print_table(&v, res);
    free(v.items);
    free(v.rep_dir);
    cJSON_Delete(v.rep);
    cJSON_Delete(v.hist);
    if (st != ULC_OK) ulc_verify_outcome_clear(res);
    return st;
}
