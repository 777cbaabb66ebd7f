/* clip.c — CLIP requests: the spec's "clip" object, prompts, the zero-shot model (clip.h). */
#include "jobs/clip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/glob.h"
#include "common/json.h"
#include "eval/clip_eval.h"
#include "io/model.h"
#include "io/text_data.h"
#include "jobs/spec_internal.h"
#include "passes/clip_zeroshot.h"
#include "text/tokenizer.h"

static void strs_clear(ulc_strs *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

void ulc_clip_spec_clear(ulc_clip_spec *c) {
    strs_clear(&c->classes);
    strs_clear(&c->templates);
    strs_clear(&c->coarse);
    strs_clear(&c->coarse_templates);
    strs_clear(&c->heldout_classes);
    strs_clear(&c->heldout_templates);
    free(c->coarse_of);
    free(c->tower);
    free(c->captions);
    free(c->heldout_data);
    memset(c, 0, sizeof *c);
}

static int strs_find(const ulc_strs *s, const char *x) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0) return i;
    return -1;
}

static ulc_status strs_push(ulc_strs *s, const char *x, ulc_ctx *ctx) {
    char **v = realloc(s->v, (size_t)(s->n + 1) * sizeof *v);
    if (!v) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    s->v = v;
    if (!(v[s->n] = strdup(x))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    s->n++;
    return ULC_OK;
}

/* A non-empty list of distinct non-empty strings at key (templates: each with "{}" once). */
static ulc_status str_list(const char *path, const char *key, const cJSON *it, int templates,
                           ulc_strs *out, ulc_ctx *ctx) {
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) == 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': expected a non-empty list of "
                        "strings, got %s", path, key,
                        cJSON_IsArray(it) ? "an empty list" : ulc_json_what(it));
    const cJSON *e;
    cJSON_ArrayForEach(e, it) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': expected non-empty strings, got "
                            "%s", path, key, cJSON_IsString(e) ? "an empty string" : ulc_json_what(e));
        const char *s = e->valuestring, *h = strstr(s, "{}");
        if (templates && (!h || strstr(h + 2, "{}")))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': the template '%s' must hold "
                            "\"{}\" (where the class name goes) exactly once", path, key, s);
        if (strs_find(out, s) >= 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': '%s' is given twice", path, key, s);
        ULC_TRY(strs_push(out, s, ctx));
    }
    return ULC_OK;
}

/* A file from the spec, relative to dir; it must exist and be a regular file. */
static ulc_status spec_file(const char *path, const char *dir, const char *key, const cJSON *it,
                            char **out, ulc_ctx *ctx) {
    if (!cJSON_IsString(it) || !it->valuestring[0])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key '%s': expected a file name, got %s", path,
                        key, ulc_json_what(it));
    return ulc_spec_resolve(path, dir, key, it->valuestring, 0, out, ctx);
}

/* "coarse": {fine: coarse} naming every fine class once. */
static ulc_status parse_coarse(const char *path, const cJSON *co, ulc_clip_spec *c, ulc_ctx *ctx) {
    if (!cJSON_IsObject(co))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.coarse': expected an object "
                        "{\"fine class\": \"coarse class\"}, got %s", path, ulc_json_what(co));
    if (!(c->coarse_of = malloc((size_t)c->classes.n * sizeof *c->coarse_of)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    for (int i = 0; i < c->classes.n; i++) c->coarse_of[i] = -1;
    for (const cJSON *e = co->child; e; e = e->next) {
        int f = strs_find(&c->classes, e->string);
        if (f < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.coarse': '%s' is not one of "
                            "clip.classes", path, e->string);
        if (c->coarse_of[f] >= 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.coarse': '%s' is given twice",
                            path, e->string);
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.coarse.%s': expected a coarse "
                            "class name, got %s", path, e->string, ulc_json_what(e));
        int k = strs_find(&c->coarse, e->valuestring);
        if (k < 0) {
            ULC_TRY(strs_push(&c->coarse, e->valuestring, ctx));
            k = c->coarse.n - 1;
        }
        c->coarse_of[f] = k;
    }
    for (int i = 0; i < c->classes.n; i++)
        if (c->coarse_of[i] < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.coarse': the class '%s' has no "
                            "coarse class", path, c->classes.v[i]);
    if (c->coarse.n < 2)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.coarse': every class maps to '%s'; "
                        "a taxonomy needs at least two coarse classes", path, c->coarse.v[0]);
    return ULC_OK;
}

static ulc_status parse_heldout(const char *path, const char *dir, const cJSON *h,
                                ulc_clip_spec *c, ulc_ctx *ctx) {
    static const char *const keys[] = {"data", "classes", "templates", NULL};
    if (!cJSON_IsObject(h))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.heldout': expected an object, got "
                        "%s", path, ulc_json_what(h));
    ULC_TRY(ulc_spec_check_keys(path, h, "clip.heldout", keys, ctx));
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(h, "data");
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(h, "classes");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, "templates");
    if (!d || !cl)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.heldout': needs 'data' (images with "
                        "labels) and 'classes' (their names)", path);
    ULC_TRY(str_list(path, "clip.heldout.classes", cl, 0, &c->heldout_classes, ctx));
    if (t) ULC_TRY(str_list(path, "clip.heldout.templates", t, 1, &c->heldout_templates, ctx));
    return spec_file(path, dir, "clip.heldout.data", d, &c->heldout_data, ctx);
}

ulc_status ulc_clip_spec_parse(const char *path, const char *dir, const cJSON *clip,
                               ulc_clip_spec *c, ulc_ctx *ctx) {
    static const char *const keys[] = {"classes", "templates", "coarse", "coarse_templates",
                                       "tower", "captions", "heldout", NULL};
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(clip))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip': expected an object, got %s", path,
                        ulc_json_what(clip));
    ULC_TRY(ulc_spec_check_keys(path, clip, "clip", keys, ctx));
    c->given = 1;
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(clip, "classes");
    const cJSON *tp = cJSON_GetObjectItemCaseSensitive(clip, "templates");
    if (!cl) return ulc_fail(ctx, ULC_ERR_INVALID, "%s: missing key 'clip.classes' (the class "
                             "names, in label order)", path);
    if (!tp) return ulc_fail(ctx, ULC_ERR_INVALID, "%s: missing key 'clip.templates' (prompts "
                             "such as \"a photo of a {}.\")", path);
    ULC_TRY(str_list(path, "clip.classes", cl, 0, &c->classes, ctx));
    if (c->classes.n < 2)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.classes': a zero-shot classifier "
                        "needs at least two classes", path);
    ULC_TRY(str_list(path, "clip.templates", tp, 1, &c->templates, ctx));
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(clip, "coarse");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(clip, "coarse_templates");
    if (co) ULC_TRY(parse_coarse(path, co, c, ctx));
    if (ct && !co)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.coarse_templates' needs "
                        "'clip.coarse' (the taxonomy)", path);
    if (ct) ULC_TRY(str_list(path, "clip.coarse_templates", ct, 1, &c->coarse_templates, ctx));
    const cJSON *tw = cJSON_GetObjectItemCaseSensitive(clip, "tower");
    const char *tower = "image";
    if (tw && (!cJSON_IsString(tw) || (strcmp(tw->valuestring, "image") &&
                                       strcmp(tw->valuestring, "text") &&
                                       strcmp(tw->valuestring, "both"))))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.tower': expected \"image\", "
                        "\"text\" or \"both\"", path);
    if (tw) tower = tw->valuestring;
    if (!(c->tower = strdup(tower))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    const cJSON *cap = cJSON_GetObjectItemCaseSensitive(clip, "captions");
    if (cap) ULC_TRY(spec_file(path, dir, "clip.captions", cap, &c->captions, ctx));
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(clip, "heldout");
    if (h) ULC_TRY(parse_heldout(path, dir, h, c, ctx));
    return ULC_OK;
}

ulc_status ulc_clip_spec_read(const char *path, ulc_clip_spec *c, ulc_ctx *ctx) {
    memset(c, 0, sizeof *c);
    ulc_mapping *mp = NULL;
    ULC_TRY(ulc_mapping_open(path, "CLIP prompts file", &mp, ctx));
    cJSON *j = NULL;
    ulc_status st = mp->size ? ulc_json_parse((const char *)mp->data, mp->size,
                                              ULC_JSON_UNIQUE_KEYS, &j, ctx)
                             : ulc_fail(ctx, ULC_ERR_PARSE, "the file is empty");
    ulc_mapping_unref(mp);
    if (st != ULC_OK) return ulc_fail(ctx, st, "%s", path);
    char *dir = ulc_path_dirname(path);
    const cJSON *clip = cJSON_GetObjectItemCaseSensitive(j, "clip");
    if (!dir) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    else st = ulc_clip_spec_parse(path, dir, clip ? clip : j, c, ctx);
    free(dir);
    cJSON_Delete(j);
    return st;
}

ulc_status ulc_clip_concepts(const char *path, const cJSON *list, const ulc_clip_spec *c,
                             int64_t **classes, int *n, ulc_ctx *ctx) {
    ulc_strs names = {0};
    ulc_status st = str_list(path, "forget.concepts", list, 0, &names, ctx);
    int64_t *out = st == ULC_OK ? malloc((size_t)names.n * sizeof *out) : NULL;
    if (st == ULC_OK && !out) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (spec)");
    for (int i = 0; st == ULC_OK && i < names.n; i++) {
        int k = strs_find(&c->classes, names.v[i]);
        if (k < 0) {
            char known[512] = "";
            for (int j = 0; j < c->classes.n && strlen(known) < 400; j++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s'%s'",
                         j ? ", " : "", c->classes.v[j]);
            st = ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.concepts': '%s' is not one of "
                          "clip.classes (%s)", path, names.v[i], known);
        }
        else out[i] = k;
    }
    if (st == ULC_OK && names.n >= c->classes.n)
        st = ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.concepts': every class of "
                      "clip.classes is named; at least one must be kept", path);
    int count = names.n;
    strs_clear(&names);
    if (st != ULC_OK) {
        free(out);
        return st;
    }
    *classes = out;
    *n = count;
    return ULC_OK;
}

const char *ulc_clip_tower_globs(const ulc_clip_spec *c) {
    const char *t = c->tower ? c->tower : "image";
    /* the projections by module name (lora-inject's include) and by weight name */
    if (strcmp(t, "text") == 0) return "text_model.*|text_projection|text_projection.*";
    if (strcmp(t, "both") == 0)
        return "vision_model.*|visual_projection|visual_projection.*|text_model.*|"
               "text_projection|text_projection.*";
    return "vision_model.*|visual_projection|visual_projection.*";
}

ulc_fe_layers ulc_clip_feature_layers(const ulc_clip_spec *c) {
    return (ulc_fe_layers){.weights = ulc_clip_tower_globs(c), .last = ULC_CLIP_FEATURE_LAYERS,
                           .output = ULC_CLIP_FINE};
}

/* ---- the prompts --------------------------------------------------------------------------------- */

/* "a photo of a {}." with name → malloc'd text. */
static char *fill(const char *tmpl, const char *name) {
    const char *h = strstr(tmpl, "{}");
    size_t a = (size_t)(h - tmpl), nn = strlen(name), tail = strlen(h + 2);
    char *s = malloc(a + nn + tail + 1);
    if (!s) return NULL;
    memcpy(s, tmpl, a);
    memcpy(s + a, name, nn);
    memcpy(s + a + nn, h + 2, tail + 1);
    return s;
}

typedef struct prompt_set {
    char **text;
    size_t *len;
    int64_t n, cap;
} prompt_set;

static ulc_status add_head(prompt_set *ps, ulc_clip_prompts *p, const char *output,
                           const ulc_strs *classes, const ulc_strs *templates, ulc_ctx *ctx) {
    int64_t need = ps->n + (int64_t)classes->n * templates->n;
    if (need > ps->cap) {
        char **t = realloc(ps->text, (size_t)need * sizeof *t);
        if (t) ps->text = t;
        size_t *l = t ? realloc(ps->len, (size_t)need * sizeof *l) : NULL;
        if (!l) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (prompts)");
        ps->len = l;
        ps->cap = need;
    }
    ulc_clip_head *h = &p->heads[p->n_heads++];
    *h = (ulc_clip_head){.output = output, .first = ps->n, .classes = classes->n,
                         .templates = templates->n};
    for (int c = 0; c < classes->n; c++)
        for (int t = 0; t < templates->n; t++) {
            char *s = fill(templates->v[t], classes->v[c]);
            if (!s) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (prompts)");
            ps->len[ps->n] = strlen(s);
            ps->text[ps->n++] = s;
        }
    return ULC_OK;
}

/* The text tower's context from the Hugging Face config the model carries (0: unknown). */
static int64_t text_context(const ulc_model *m) {
    const char *cfg = ulc_model_metadata(m, ULC_META_HF_CONFIG);
    cJSON *j = cfg ? cJSON_Parse(cfg) : NULL;
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(j, "text_config");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(tc, "max_position_embeddings");
    double v = cJSON_IsNumber(p) ? p->valuedouble : 77; /* transformers' default */
    int64_t n = !tc || !(v >= 1 && v <= 1e9) ? 0 : (int64_t)v; /* out of range: unknown */
    cJSON_Delete(j);
    return n;
}

static ulc_status tokenize(ulc_model *m, const prompt_set *ps, ulc_tokenizer *tk,
                           const char *where, ulc_tok_rows *rows, ulc_ctx *ctx) {
    int64_t end = ulc_tokenizer_special(tk, "eos");
    if (end < 0) end = ulc_tokenizer_token_id(tk, "<|endoftext|>", 13);
    if (end < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the tokenizer '%s' has no end token to pad "
                        "the prompts with", where, ulc_tokenizer_path(tk));
    int64_t ctxlen = text_context(m), bad = -1;
    ulc_tok_rows_opts o = {.max_length = ctxlen > 0 ? ctxlen : 1 << 20,
                           .overflow = ULC_OVERFLOW_ERROR, .pad_id = end, .add_special = 1};
    ulc_ctx tctx;
    ulc_ctx_init(&tctx);
    if (ulc_tokenizer_encode_rows(tk, (const char *const *)ps->text, ps->len, ps->n, &o, rows,
                                  &bad, &tctx) != ULC_OK)
        return bad >= 0 ? ulc_fail(ctx, ULC_ERR_INVALID, "%s: the prompt \"%s\" does not fit "
                                   "the text tower (%lld tokens at most): %s", where,
                                   ps->text[bad], (long long)ctxlen, tctx.msg)
                        : ulc_fail(ctx, tctx.status, "%s: prompts: %s", where, tctx.msg);
    return ULC_OK;
}

void ulc_clip_run_clear(ulc_clip_run *r) {
    free(r->caption_of);
    ulc_data_clear(&r->heldout);
    memset(r, 0, sizeof *r);
}

/* The captions file: its distinct texts (in first-seen order) and each line's index among them. */
static ulc_status read_captions(const char *path, ulc_strs *distinct, int64_t **of, int64_t *n,
                                ulc_ctx *ctx) {
    ulc_texts t = {0};
    ulc_status st = ulc_texts_read(path, &t, ctx);
    int64_t *idx = st == ULC_OK ? malloc((size_t)t.n * sizeof *idx) : NULL;
    if (st == ULC_OK && !idx) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (captions)");
    for (int64_t i = 0; st == ULC_OK && i < t.n; i++) { /* quadratic: captions are few */
        int k = strs_find(distinct, t.text[i]);
        if (k < 0 && (st = strs_push(distinct, t.text[i], ctx)) == ULC_OK) k = distinct->n - 1;
        idx[i] = k;
    }
    if (st == ULC_OK) {
        *of = idx;
        *n = t.n;
    } else {
        free(idx);
    }
    ulc_texts_clear(&t);
    return st;
}

/* ulc_clip_view; with embeds, the fine head's class embeddings are one more output (named so). */
static ulc_status view(ulc_model *m, const ulc_clip_spec *c, const char *tokenizer,
                       const char *model_path, const char *where, ulc_clip_run *run,
                       const char *embeds, ulc_ctx *ctx) {
    const char *why = NULL;
    if (!ulc_clip_is(m, &why))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: key 'clip': '%s' is not a CLIP model with "
                        "both towers (%s)", where, model_path, why);
    const char *tpath = tokenizer ? tokenizer : ulc_path_is_dir(model_path) ? model_path : NULL;
    if (!tpath)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip': '%s' is a file; name the CLIP "
                        "tokenizer (a tokenizer.json or its directory: the spec's "
                        "model.tokenizer, or `ulc eval --tokenizer`)",
                        where, model_path);
    ulc_tokenizer *tk = NULL;
    ULC_TRY(ulc_tokenizer_load(tpath, &tk, ctx));
    prompt_set ps = {0};
    ulc_clip_prompts p = {0};
    ulc_tok_rows rows = {0};
    ulc_status st = add_head(&ps, &p, ULC_CLIP_FINE, &c->classes, &c->templates, ctx);
    if (st == ULC_OK) p.heads[0].embeds = embeds;
    if (st == ULC_OK && c->coarse.n)
        st = add_head(&ps, &p, ULC_CLIP_COARSE, &c->coarse,
                      c->coarse_templates.n ? &c->coarse_templates : &c->templates, ctx);
    if (st == ULC_OK && c->heldout_data)
        st = add_head(&ps, &p, ULC_CLIP_HELDOUT, &c->heldout_classes,
                      c->heldout_templates.n ? &c->heldout_templates : &c->templates, ctx);
    ulc_strs caps = {0}, bare = {0};
    int64_t *cap_of = NULL, n_cap = 0;
    if (st == ULC_OK && c->captions) st = read_captions(c->captions, &caps, &cap_of, &n_cap, ctx);
    if (st == ULC_OK && c->captions) st = strs_push(&bare, "{}", ctx);
    if (st == ULC_OK && c->captions) st = add_head(&ps, &p, ULC_CLIP_CAPTIONS, &caps, &bare, ctx);
    strs_clear(&caps);
    strs_clear(&bare);
    if (st == ULC_OK && run) {
        free(run->caption_of);
        run->caption_of = cap_of;
        run->n_caption_rows = n_cap;
        cap_of = NULL;
    }
    free(cap_of);
    if (st == ULC_OK) st = tokenize(m, &ps, tk, where, &rows, ctx);
    if (st == ULC_OK) {
        p.ids = rows.ids, p.mask = rows.mask, p.n = rows.rows, p.len = rows.width;
        st = ulc_clip_zeroshot(m, &p, ctx);
        if (st != ULC_OK) st = ulc_fail(ctx, st, "%s: '%s'", where, model_path);
    }
    /* the other tower (and logit_scale) stays as it is, whatever the method trains */
    const char *tower = ulc_clip_tower_globs(c);
    for (size_t i = 0; st == ULC_OK && i < m->graph->inits.len; i++) {
        ulc_value *v = m->graph->inits.items[i];
        if (!(v->flags & ULC_VALUE_CONSTANT) && !ulc_glob_any(tower, v->name))
            v->flags |= ULC_VALUE_FROZEN;
    }
    ulc_tok_rows_clear(&rows);
    for (int64_t i = 0; i < ps.n; i++) free(ps.text[i]);
    free(ps.text);
    free(ps.len);
    ulc_tokenizer_free(tk);
    return st;
}

ulc_status ulc_clip_view(ulc_model *m, const ulc_clip_spec *c, const char *tokenizer,
                         const char *model_path, const char *where, ulc_clip_run *run,
                         ulc_ctx *ctx) {
    return view(m, c, tokenizer, model_path, where, run, NULL, ctx);
}

#define CLASS_EMBEDS "ulc.clip.class_embeds"

ulc_status ulc_clip_class_similarity(const char *model_path, const ulc_clip_spec *c,
                                     const char *tokenizer, const char *where, double **S,
                                     ulc_ctx *ctx) {
    ulc_model *m = NULL;
    ulc_session *s = NULL;
    float *img = NULL;
    ULC_TRY(ulc_io_load_model(model_path, NULL, &m, ctx));
    ulc_status st = view(m, c, tokenizer, model_path, where, NULL, CLASS_EMBEDS, ctx);
    /* the embeddings do not read the image: one zero image feeds the input all the same */
    const ulc_value *in = st == ULC_OK && m->graph->inputs.len == 1 ? m->graph->inputs.items[0] : NULL;
    int64_t dims[4] = {1, 0, 0, 0}, n = 1;
    if (st == ULC_OK && (!in || in->rank != 4))
        st = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: '%s': the image input is not [batch, "
                      "channels, height, width]", where, model_path);
    for (int d = 1; st == ULC_OK && d < 4; d++) {
        dims[d] = in->dims[d].value;
        if (dims[d] <= 0)
            st = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: '%s': the image input's dim %d is not "
                          "fixed", where, model_path, d);
        n *= dims[d];
    }
    if (st == ULC_OK && !(img = calloc((size_t)n, sizeof *img)))
        st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ulc_session_opts so = ulc_session_defaults();
    if (st == ULC_OK) st = ulc_session_create(m, &so, &s, ctx);
    if (st == ULC_OK) st = ulc_session_set_f32(s, in->name, img, 4, dims, ctx);
    if (st == ULC_OK) st = ulc_session_run(s, ctx);
    const ulc_rt_tensor *e = st == ULC_OK ? ulc_session_output(s, CLASS_EMBEDS) : NULL;
    int64_t K = c->classes.n;
    if (st == ULC_OK && (!e || e->rank != 2 || e->dims[0] != K))
        st = ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: the class embeddings are not [%lld, P]", where,
                      (long long)K);
    double *out = st == ULC_OK ? malloc((size_t)(K * K) * sizeof *out) : NULL;
    if (st == ULC_OK && !out) st = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == ULC_OK && i < K; i++) /* cosines of unit rows, clipped at 0 */
        for (int64_t j = 0; j < K; j++) {
            const float *a = (const float *)e->data + i * e->dims[1];
            const float *b = (const float *)e->data + j * e->dims[1];
            double dot = 0;
            for (int64_t q = 0; q < e->dims[1]; q++) dot += (double)a[q] * b[q];
            out[i * K + j] = dot > 0 ? dot : 0;
        }
    if (st == ULC_OK) *S = out;
    ulc_session_free(s);
    free(img);
    ulc_model_free(m);
    return st;
}

/* ---- the weights back -------------------------------------------------------------------------------- */

static int same_bytes(const ulc_tensor *a, const ulc_tensor *b) {
    return a == b || (a->dtype == b->dtype && a->nbytes == b->nbytes && a->data && b->data &&
                      (a->data == b->data || memcmp(a->data, b->data, a->nbytes) == 0));
}

ulc_status ulc_clip_take_weights(ulc_model *dst, const ulc_model *view, int *changed,
                                 ulc_ctx *ctx) {
    ulc_graph *g = dst->graph;
    *changed = 0;
    for (size_t i = 0; i < g->inits.len; i++) {
        ulc_value *v = g->inits.items[i];
        const ulc_value *w = ulc_graph_get_value(view->graph, v->name);
        if (!w || !(w->flags & ULC_VALUE_INITIALIZER) || !w->init || !v->init) continue;
        ULC_TRY(ulc_tensor_materialize(g, v->init, ctx));
        ULC_TRY(ulc_tensor_materialize(view->graph, w->init, ctx));
        if (same_bytes(v->init, w->init)) continue;
        const ulc_tensor *src = w->init;
        if (src->dtype != v->init->dtype || src->nbytes != v->init->nbytes)
            return ulc_fail(ctx, ULC_ERR_INTERNAL, "clip: '%s' changed its type in the zero-shot "
                            "model", v->name);
        ulc_tensor *t = ulc_tensor_new(g, v->init->name, src->dtype, src->rank, src->dims, ctx);
        void *buf = t ? malloc(src->nbytes ? src->nbytes : 1) : NULL;
        if (!buf) return t ? ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory") : ctx->status;
        memcpy(buf, src->data, src->nbytes);
        ULC_TRY(ulc_tensor_set_owned(g, t, buf, src->nbytes, ctx));
        t->form = v->init->form == ULC_FORM_EXTERNAL ? ULC_FORM_RAW : v->init->form;
        t->extra = v->init->extra;
        v->init = t;
        (*changed)++;
    }
    for (int k = 0; k < view->n_metadata; k++) {
        const ulc_kv *kv = &view->metadata[k];
        if (strncmp(kv->key, ULC_META_PREFIX, strlen(ULC_META_PREFIX)) == 0 &&
            strcmp(kv->key, ULC_META_HF_CONFIG) != 0)
            ULC_TRY(ulc_model_set_metadata(dst, kv->key, kv->value, ctx));
    }
    return ULC_OK;
}

/* ---- the metrics ------------------------------------------------------------------------------------ */

ulc_status ulc_clip_check_data(const char *where, const ulc_clip_spec *c, ulc_clip_run *run,
                               const ulc_iface *f, const ulc_data *test, const char *model_path,
                               ulc_ctx *ctx) {
    if (c->captions && run->n_caption_rows != test->rows)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.captions': %s has %lld captions for "
                        "the %lld rows of %s (one caption per row, in row order)", where,
                        c->captions, (long long)run->n_caption_rows, (long long)test->rows,
                        test->path);
    if (!c->heldout_data || run->has_heldout) return ULC_OK;
    ulc_status st = ulc_data_load("clip.heldout.data", c->heldout_data, model_path, f,
                                  &run->heldout, ctx);
    if (st != ULC_OK) return ulc_fail(ctx, st, "%s: key 'clip.heldout.data'", where);
    run->has_heldout = 1;
    if (!run->heldout.label)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.heldout.data': %s has no 'label' "
                        "(int64 [rows], indices into clip.heldout.classes)", where,
                        c->heldout_data);
    for (int64_t i = 0; i < run->heldout.rows; i++) {
        int64_t y = ulc_data_label(&run->heldout, i);
        if (y < 0 || y >= c->heldout_classes.n)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'clip.heldout.data': %s: row %lld has "
                            "label %lld; clip.heldout.classes names %d", where, c->heldout_data,
                            (long long)i, (long long)y, c->heldout_classes.n);
    }
    return ULC_OK;
}

ulc_status ulc_clip_metrics(const ulc_model *before, const char *before_name,
                            const ulc_model *after, const char *after_name,
                            const ulc_clip_spec *c, ulc_clip_run *run, const ulc_iface *f,
                            const ulc_data *test, const int64_t *forget, int n_forget,
                            const char *model_path, int threads, cJSON **out, ulc_ctx *ctx) {
    ULC_TRY(ulc_clip_check_data("clip", c, run, f, test, model_path, ctx));
    ulc_clip_task t = {.n_fine = c->classes.n, .coarse_of = c->coarse.n ? c->coarse_of : NULL,
                       .forget = forget, .n_forget = n_forget, .fine = ULC_CLIP_FINE,
                       .coarse = c->coarse.n ? ULC_CLIP_COARSE : NULL,
                       .heldout = c->heldout_data ? ULC_CLIP_HELDOUT : NULL,
                       .captions = c->captions ? ULC_CLIP_CAPTIONS : NULL,
                       .caption_of = run->caption_of, .n_caption_rows = run->n_caption_rows,
                       .test = test, .heldout_data = c->heldout_data ? &run->heldout : NULL,
                       .threads = threads};
    ulc_clip_acc b, a;
    if (before) ULC_TRY(ulc_clip_accuracies(before, before_name, &t, &b, ctx));
    ULC_TRY(ulc_clip_accuracies(after, after_name, &t, &a, ctx));
    if (!(*out = ulc_clip_json(before ? &b : NULL, &a)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    return ULC_OK;
}
