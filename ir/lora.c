#include "ir/lora.h"

#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ulc_lora_adapter_free(ulc_lora_adapter *a) {
    if (!a) return;
    ulc_model_free(a->weights);
    free(a);
}

/* re.match(f".*\.{key}$", module): POSIX ERE, anchored at both ends. */
static int pattern_matches(const char *key, const char *module, ulc_ctx *ctx, int *err) {
    size_t n = strlen(key) + 16;
    char *re_src = malloc(n);
    if (!re_src) {
        *err = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        return 0;
    }
    snprintf(re_src, n, "^.*\\.(%s)$", key);
    regex_t re;
    int rc = regcomp(&re, re_src, REG_EXTENDED | REG_NOSUB);
    free(re_src);
    if (rc != 0) {
        *err = ulc_fail(ctx, ULC_ERR_INVALID, "pattern key '%s' is not a valid regular expression",
                        key);
        return 0;
    }
    int hit = regexec(&re, module, 0, NULL, 0) == 0;
    regfree(&re);
    return hit;
}

static const ulc_lora_pattern *find_key(const ulc_lora_pattern *p, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(p[i].key, key) == 0) return &p[i];
    return NULL;
}

ulc_status ulc_lora_module_params(const ulc_lora_config *c, const char *module, int *r,
                                  double *alpha, double *scale, ulc_ctx *ctx) {
    const char *key = module;
    int err = ULC_OK, found = 0;
    for (int i = 0; i < c->n_rank_pattern && !found; i++) {
        found = pattern_matches(c->rank_pattern[i].key, module, ctx, &err);
        if (err) return (ulc_status)err;
        if (found) key = c->rank_pattern[i].key;
    }
    for (int i = 0; i < c->n_alpha_pattern && !found; i++) {
        found = pattern_matches(c->alpha_pattern[i].key, module, ctx, &err);
        if (err) return (ulc_status)err;
        if (found) key = c->alpha_pattern[i].key;
    }
    const ulc_lora_pattern *pr = find_key(c->rank_pattern, c->n_rank_pattern, key);
    const ulc_lora_pattern *pa = find_key(c->alpha_pattern, c->n_alpha_pattern, key);
    *r = pr ? (int)pr->value : c->r;
    *alpha = pa ? pa->value : c->alpha;
    if (*r <= 0)
        return ulc_fail(ctx, ULC_ERR_INVALID, "module '%s': rank %d, expected a positive rank",
                        module, *r);
    *scale = c->use_rslora ? *alpha / sqrt((double)*r) : *alpha / (double)*r;
    return ULC_OK;
}

double ulc_lora_scale(int r, double alpha, int rslora) {
    return rslora ? alpha / sqrt((double)r) : alpha / (double)r;
}

/* ---- injected adapters --------------------------------------------------------------------- */

static const char *const k_kind_names[] = {"linear_in_out", "linear_out_in", "conv"};

ulc_status ulc_lora_record_add(ulc_model *m, const ulc_lora_record *rec, ulc_ctx *ctx) {
    ulc_arena *a = m->graph->arena;
    ulc_lora_record *r = ulc_arena_alloc(a, sizeof *r);
    if (!r) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (LoRA record)");
    *r = *rec;
    const char **strs[] = {&r->module, &r->node, &r->weight, &r->a, &r->b, &r->out, &r->base_out};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        if (*strs[i] && !(*strs[i] = ulc_arena_strdup(a, *strs[i])))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (LoRA record)");
    if (ulc_ptrvec_push(&m->lora, r) != 0)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (LoRA record)");
    return ULC_OK;
}

ulc_lora_record *ulc_lora_record_find(const ulc_model *m, const char *node) {
    for (size_t i = 0; node && i < m->lora.len; i++) {
        ulc_lora_record *r = m->lora.items[i];
        if (strcmp(r->node, node) == 0) return r;
    }
    return NULL;
}

const ulc_tensor *ulc_lora_record_tensor(const ulc_model *m, const ulc_lora_record *rec, int which) {
    if (rec->merged) return which ? rec->b_t : rec->a_t;
    const ulc_value *v = ulc_graph_get_value(m->graph, which ? rec->b : rec->a);
    return v && (v->flags & ULC_VALUE_INITIALIZER) ? v->init : NULL;
}

/* Checks a record's factors against its kind: rank, shapes, float32 in memory. */
static ulc_status check_factors(const ulc_lora_record *rec, const ulc_tensor *a,
                                const ulc_tensor *b, ulc_ctx *ctx) {
    const char *why = NULL;
    if (!a || !b) why = "its factors are missing from the graph";
    else if (a->dtype != ULC_DT_F32 || b->dtype != ULC_DT_F32) why = "its factors are not float32";
    else if ((a->storage != ULC_STORAGE_OWNED && a->storage != ULC_STORAGE_BORROWED) ||
             (b->storage != ULC_STORAGE_OWNED && b->storage != ULC_STORAGE_BORROWED))
        why = "its factors are not in memory";
    else if (rec->kind == ULC_LORA_CONV) {
        int ok = a->rank >= 3 && a->rank <= 8 && b->rank == a->rank && a->dims[0] == rec->r &&
                 b->dims[1] == rec->r;
        for (int i = 2; ok && i < b->rank; i++) ok = b->dims[i] == 1;
        if (!ok) why = "expected conv factors A [r, C, k...] and B [out, r, 1...]";
    } else if (a->rank != 2 || b->rank != 2 || a->dims[1] != rec->r || b->dims[0] != rec->r) {
        why = "expected linear factors A [in, r] and B [r, out]";
    }
    if (why)
        return ulc_fail(ctx, ULC_ERR_INVALID, "LoRA module '%s' (node '%s', rank %d): %s",
                        rec->module, rec->node, rec->r, why);
    return ULC_OK;
}

ulc_status ulc_lora_record_peft_factors(const ulc_model *m, const ulc_lora_record *rec,
                                        float **a_out, int64_t *adims, int *arank, float **b_out,
                                        int64_t *bdims, int *brank, ulc_ctx *ctx) {
    *a_out = *b_out = NULL;
    const ulc_tensor *a = ulc_lora_record_tensor(m, rec, 0), *b = ulc_lora_record_tensor(m, rec, 1);
    ULC_TRY(check_factors(rec, a, b, ctx));
    float *ga = malloc(a->nbytes ? a->nbytes : 1), *gb = malloc(b->nbytes ? b->nbytes : 1);
    if (!ga || !gb) {
        free(ga), free(gb);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (LoRA factors of '%s')", rec->module);
    }
    memcpy(ga, a->data, a->nbytes); /* borrowed data may be unaligned */
    memcpy(gb, b->data, b->nbytes);
    if (rec->kind == ULC_LORA_CONV) {
        *arank = a->rank;
        *brank = b->rank;
        for (int i = 0; i < a->rank; i++) adims[i] = a->dims[i];
        for (int i = 0; i < b->rank; i++) bdims[i] = b->dims[i];
        *a_out = ga;
        *b_out = gb;
        return ULC_OK;
    }
    /* A_g [in, r] -> A [r, in];  B_g [r, out] -> B [out, r] */
    const int64_t in = a->dims[0], out = b->dims[1], r = rec->r;
    float *pa = malloc(a->nbytes ? a->nbytes : 1), *pb = malloc(b->nbytes ? b->nbytes : 1);
    if (!pa || !pb) {
        free(ga), free(gb), free(pa), free(pb);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (LoRA factors of '%s')", rec->module);
    }
    for (int64_t i = 0; i < in; i++)
        for (int64_t q = 0; q < r; q++) pa[q * in + i] = ga[i * r + q];
    for (int64_t q = 0; q < r; q++)
        for (int64_t o = 0; o < out; o++) pb[o * r + q] = gb[q * out + o];
    free(ga), free(gb);
    *arank = *brank = 2;
    adims[0] = r, adims[1] = in;
    bdims[0] = out, bdims[1] = r;
    *a_out = pa;
    *b_out = pb;
    return ULC_OK;
}

/* ---- the "ulc.lora" metadata ---------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *s, const char *t, size_t k) {
    if (s->oom) return;
    if (s->n + k + 1 > s->cap) {
        size_t c = s->cap ? s->cap : 256;
        while (c < s->n + k + 1) c *= 2;
        char *q = realloc(s->p, c);
        if (!q) {
            s->oom = 1;
            return;
        }
        s->p = q;
        s->cap = c;
    }
    memcpy(s->p + s->n, t, k);
    s->n += k;
    s->p[s->n] = 0;
}

static void sb_str(sbuf *s, const char *t) { sb_put(s, t, strlen(t)); }

/* key=value with the value percent-encoded */
static void sb_field(sbuf *s, const char *key, const char *v) {
    sb_str(s, s->n && s->p[s->n - 1] != '\n' ? " " : "");
    sb_str(s, key);
    sb_put(s, "=", 1);
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        if (*c <= 0x20 || *c == '%' || *c == 0x7f) {
            char e[4];
            snprintf(e, sizeof e, "%%%02X", *c);
            sb_put(s, e, 3);
        } else {
            sb_put(s, (const char *)c, 1);
        }
    }
}

/* Replaces (value NULL: removes) the metadata entry key, keeping the order of the others. The
 * array is rebuilt, not edited: a shallow clone (ir/clone.h) shares its source's. */
static ulc_status set_metadata(ulc_model *m, const char *key, const char *value, ulc_ctx *ctx) {
    for (int i = 0; i < m->n_metadata; i++) {
        if (!m->metadata[i].key || strcmp(m->metadata[i].key, key) != 0) continue;
        ulc_arena *a = m->graph->arena;
        ulc_kv *kv = ulc_arena_calloc(a, (size_t)m->n_metadata, sizeof *kv);
        const char *v = value ? ulc_arena_strdup(a, value) : NULL;
        if (!kv || (value && !v)) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (metadata)");
        int n = 0;
        for (int j = 0; j < m->n_metadata; j++) {
            if (j != i) kv[n++] = m->metadata[j];
            else if (value) kv[n++] = (ulc_kv){m->metadata[j].key, v};
        }
        m->metadata = kv;
        m->n_metadata = n;
        return ULC_OK;
    }
    return value ? ulc_model_add_metadata(m, key, value, ctx) : ULC_OK;
}

ulc_status ulc_lora_records_save(ulc_model *m, ulc_ctx *ctx) {
    sbuf s = {0};
    int n = 0;
    sb_str(&s, "ulc.lora 1\n");
    for (size_t i = 0; i < m->lora.len; i++) {
        const ulc_lora_record *r = m->lora.items[i];
        if (r->merged) continue;
        char num[64];
        sb_field(&s, "module", r->module);
        sb_field(&s, "node", r->node);
        sb_field(&s, "weight", r->weight);
        sb_field(&s, "kind", k_kind_names[r->kind]);
        sb_field(&s, "a", r->a);
        sb_field(&s, "b", r->b);
        sb_field(&s, "out", r->out);
        sb_field(&s, "base_out", r->base_out);
        snprintf(num, sizeof num, "%d", r->r);
        sb_field(&s, "r", num);
        snprintf(num, sizeof num, "%.17g", r->alpha);
        sb_field(&s, "alpha", num);
        sb_field(&s, "rslora", r->rslora ? "1" : "0");
        sb_field(&s, "peft_ok", r->peft_ok ? "1" : "0");
        sb_str(&s, "\n");
        n++;
    }
    ulc_status st = s.oom ? ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (metadata %s)", ULC_META_LORA)
                          : set_metadata(m, ULC_META_LORA, n ? s.p : NULL, ctx);
    free(s.p);
    return st;
}

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                          : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes %XX in place; 0 on a malformed escape. */
static int pct_decode(char *v) {
    char *o = v;
    for (const char *c = v; *c; c++) {
        if (*c != '%') {
            *o++ = *c;
            continue;
        }
        int h = hexval((unsigned char)c[1]), l = h < 0 ? -1 : hexval((unsigned char)c[2]);
        if (l < 0) return 0;
        *o++ = (char)(h * 16 + l);
        c += 2;
    }
    *o = 0;
    return 1;
}

static const ulc_node *node_named(const ulc_graph *g, const char *name) {
    for (const ulc_node *n = g->first; n; n = n->next)
        if (n->name && strcmp(n->name, name) == 0) return n;
    return NULL;
}

/* One record line (modified in place) into rec; its strings point into the line. */
static ulc_status parse_record(char *line, int lineno, ulc_lora_record *rec, ulc_ctx *ctx) {
    memset(rec, 0, sizeof *rec);
    rec->kind = (ulc_lora_kind)-1;
    int have_r = 0, have_alpha = 0;
    char *save = NULL;
    for (char *f = strtok_r(line, " ", &save); f; f = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(f, '=');
        if (!eq || !pct_decode(eq + 1))
            return ulc_fail(ctx, ULC_ERR_INVALID, "line %d: malformed field '%s'", lineno, f);
        *eq = 0;
        const char *k = f, *v = eq + 1;
        char *end = NULL;
        if (strcmp(k, "module") == 0) rec->module = v;
        else if (strcmp(k, "node") == 0) rec->node = v;
        else if (strcmp(k, "weight") == 0) rec->weight = v;
        else if (strcmp(k, "a") == 0) rec->a = v;
        else if (strcmp(k, "b") == 0) rec->b = v;
        else if (strcmp(k, "out") == 0) rec->out = v;
        else if (strcmp(k, "base_out") == 0) rec->base_out = v;
        else if (strcmp(k, "rslora") == 0) rec->rslora = strcmp(v, "1") == 0;
        else if (strcmp(k, "peft_ok") == 0) rec->peft_ok = strcmp(v, "1") == 0;
        else if (strcmp(k, "kind") == 0) {
            for (int i = 0; i < 3; i++)
                if (strcmp(v, k_kind_names[i]) == 0) rec->kind = (ulc_lora_kind)i;
        } else if (strcmp(k, "r") == 0) {
            long x = strtol(v, &end, 10);
            if (!*v || *end || x < 1 || x > (1 << 24))
                return ulc_fail(ctx, ULC_ERR_INVALID, "line %d: r=%s is not a positive rank",
                                lineno, v);
            rec->r = (int)x;
            have_r = 1;
        } else if (strcmp(k, "alpha") == 0) {
            rec->alpha = strtod(v, &end);
            if (!*v || *end || !isfinite(rec->alpha))
                return ulc_fail(ctx, ULC_ERR_INVALID, "line %d: alpha=%s is not a number", lineno, v);
            have_alpha = 1;
        } /* other keys: written by a newer ulc, ignored */
    }
    const char *missing = !rec->module ? "module" : !rec->node ? "node" : !rec->weight ? "weight"
                        : !rec->a ? "a" : !rec->b ? "b" : !rec->out ? "out"
                        : !rec->base_out ? "base_out" : !have_r ? "r" : !have_alpha ? "alpha"
                        : (int)rec->kind < 0 ? "kind (linear_in_out, linear_out_in or conv)" : NULL;
    if (missing) return ulc_fail(ctx, ULC_ERR_INVALID, "line %d: no %s", lineno, missing);
    return ULC_OK;
}

/* The graph still holds the branch a record describes (checked before anything relies on it). */
static ulc_status check_record(const ulc_model *m, const ulc_lora_record *rec, ulc_ctx *ctx) {
    const ulc_graph *g = m->graph;
    const ulc_node *n = node_named(g, rec->node);
    const ulc_value *bo = ulc_graph_get_value(g, rec->base_out);
    const ulc_value *w = ulc_graph_get_value(g, rec->weight);
    const ulc_value *o = ulc_graph_get_value(g, rec->out);
    const char *why = !n ? "its base node is not in the graph"
                    : !bo || bo->producer != n ? "the base node does not produce base_out"
                    : !w || !(w->flags & ULC_VALUE_INITIALIZER) ? "its weight is not an initializer"
                    : !o || !o->producer ? "nothing produces its output" : NULL;
    if (why)
        return ulc_fail(ctx, ULC_ERR_INVALID, "LoRA module '%s' (node '%s'): %s", rec->module,
                        rec->node, why);
    return check_factors(rec, ulc_lora_record_tensor(m, rec, 0), ulc_lora_record_tensor(m, rec, 1),
                         ctx);
}

ulc_status ulc_lora_records_load(ulc_model *m, ulc_ctx *ctx) {
    const char *meta = ulc_model_metadata(m, ULC_META_LORA);
    if (m->lora.len || !meta) return ULC_OK;
    char *text = strdup(meta);
    if (!text) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ulc_status s = ULC_OK;
    char *save = NULL;
    int lineno = 0;
    for (char *line = strtok_r(text, "\n", &save); s == ULC_OK && line;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (lineno == 1) {
            if (strcmp(line, "ulc.lora 1") != 0)
                s = ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "the first line is '%.40s', expected "
                             "'ulc.lora 1' (written by a newer ulc?)", line);
            continue;
        }
        ulc_lora_record rec;
        s = parse_record(line, lineno, &rec, ctx);
        if (s == ULC_OK && ulc_lora_record_find(m, rec.node))
            s = ulc_fail(ctx, ULC_ERR_INVALID, "line %d: node '%s' is adapted twice", lineno,
                         rec.node);
        if (s == ULC_OK) s = check_record(m, &rec, ctx);
        if (s == ULC_OK) s = ulc_lora_record_add(m, &rec, ctx);
    }
    free(text);
    for (size_t i = 0; s == ULC_OK && i < m->lora.len; i++) {
        const ulc_lora_record *r = m->lora.items[i];
        ulc_graph_get_value(m->graph, r->a)->flags |= ULC_VALUE_PARAM;
        ulc_graph_get_value(m->graph, r->b)->flags |= ULC_VALUE_PARAM;
    }
    if (s != ULC_OK) {
        ulc_ptrvec_clear(&m->lora);
        return ulc_fail(ctx, s, "model metadata '%s'", ULC_META_LORA);
    }
    return ULC_OK;
}
