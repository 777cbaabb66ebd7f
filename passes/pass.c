/* pass.c — the pass registry, typed pass options, pipelines (parsed from text or built in code),
 * and the pipeline runner. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass.h"

#define MAX_LISTS 8     /* registered pass lists */
#define MAX_OPTS 32     /* options one pass may be given */

/* ---- the registry ------------------------------------------------------------------------------ */

static const ulc_pass *const k_core[] = {&ulc_pass_specialize, &ulc_pass_cleanup,
                                         &ulc_pass_lora_inject, &ulc_pass_lora_merge, NULL};

static pthread_mutex_t g_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static const ulc_pass *const *g_lists[MAX_LISTS] = {k_core};
static int g_n_lists = 1;

static const ulc_pass *find_locked(const char *name) {
    for (int l = 0; l < g_n_lists; l++)
        for (int i = 0; g_lists[l][i]; i++)
            if (strcmp(g_lists[l][i]->name, name) == 0) return g_lists[l][i];
    return NULL;
}

ulc_status ulc_pass_register(const ulc_pass *const *list, ulc_ctx *ctx) {
    ulc_status s = ULC_OK;
    pthread_mutex_lock(&g_reg_lock);
    int known = 0;
    for (int l = 0; l < g_n_lists; l++) known |= g_lists[l] == list;
    for (int i = 0; !known && list[i] && s == ULC_OK; i++)
        if (find_locked(list[i]->name))
            s = ulc_fail(ctx, ULC_ERR_INTERNAL, "pass '%s' is registered twice", list[i]->name);
    if (!known && s == ULC_OK) {
        if (g_n_lists == MAX_LISTS)
            s = ulc_fail(ctx, ULC_ERR_INTERNAL, "more than %d pass lists registered", MAX_LISTS);
        else g_lists[g_n_lists++] = list;
    }
    pthread_mutex_unlock(&g_reg_lock);
    return s;
}

int ulc_passes_list(const ulc_pass **out, int cap) {
    int n = 0;
    pthread_mutex_lock(&g_reg_lock);
    for (int l = 0; l < g_n_lists; l++)
        for (int i = 0; g_lists[l][i]; i++, n++)
            if (n < cap) out[n] = g_lists[l][i];
    pthread_mutex_unlock(&g_reg_lock);
    return n;
}

const ulc_pass *ulc_pass_find(const char *name) {
    pthread_mutex_lock(&g_reg_lock);
    const ulc_pass *p = find_locked(name);
    pthread_mutex_unlock(&g_reg_lock);
    return p;
}

static ulc_status unknown_pass(ulc_ctx *ctx, const char *name) {
    const ulc_pass *all[64];
    int n = ulc_passes_list(all, 64);
    char list[512] = "";
    size_t o = 0;
    for (int i = 0; i < n && i < 64 && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", all[i]->name);
    return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "unknown pass '%s' (passes: %s)", name, list);
}

ulc_pass_ctx ulc_pass_ctx_defaults(void) { return (ulc_pass_ctx){0}; }

/* ---- options ----------------------------------------------------------------------------------- */

const ulc_pass_opt *ulc_pass_opt_find(const ulc_pass_opts *o, const char *key) {
    for (int i = 0; o && i < o->n; i++)
        if (strcmp(o->kv[i].def->key, key) == 0) return &o->kv[i];
    return NULL;
}

long long ulc_pass_opt_i(const ulc_pass_opts *o, const char *key, long long def) {
    const ulc_pass_opt *v = ulc_pass_opt_find(o, key);
    return v ? v->i : def;
}

double ulc_pass_opt_num(const ulc_pass_opts *o, const char *key, double def) {
    const ulc_pass_opt *v = ulc_pass_opt_find(o, key);
    return v ? v->num : def;
}

const char *ulc_pass_opt_str(const ulc_pass_opts *o, const char *key, const char *def) {
    const ulc_pass_opt *v = ulc_pass_opt_find(o, key);
    return v ? v->str : def;
}

/* v as the shortest text that reads back to the same double. */
static void num_text(double v, char *buf, size_t n) {
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, n, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* ---- pipelines --------------------------------------------------------------------------------- */

typedef struct pipe_pass {
    const ulc_pass *pass;
    ulc_pass_opt kv[MAX_OPTS];
    ulc_pass_opts opts; /* n, and kv pointing at the array above */
} pipe_pass;

struct ulc_pipeline {
    int n, cap;
    pipe_pass *passes; /* options point into their pass; strings are malloc'd */
};

void ulc_pipeline_free(ulc_pipeline *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++)
        for (int k = 0; k < p->passes[i].opts.n; k++) free((char *)p->passes[i].kv[k].str);
    free(p->passes);
    free(p);
}

ulc_status ulc_pipeline_create(ulc_pipeline **out, ulc_ctx *ctx) {
    *out = calloc(1, sizeof **out);
    return *out ? ULC_OK : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
}

ulc_status ulc_pipeline_append(ulc_pipeline *p, const char *name, ulc_ctx *ctx) {
    const ulc_pass *pass = ulc_pass_find(name);
    if (!pass) return unknown_pass(ctx, name);
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        pipe_pass *np = realloc(p->passes, (size_t)cap * sizeof *np);
        if (!np) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        p->passes = np;
        p->cap = cap;
        for (int i = 0; i < p->n; i++) p->passes[i].opts.kv = p->passes[i].kv; /* moved */
    }
    pipe_pass *pp = &p->passes[p->n++];
    memset(pp, 0, sizeof *pp);
    pp->pass = pass;
    return ULC_OK;
}

int ulc_pipeline_length(const ulc_pipeline *p) { return p ? p->n : 0; }

const ulc_pass *ulc_pipeline_pass(const ulc_pipeline *p, int i, const ulc_pass_opts **opts) {
    if (!p || i < 0 || i >= p->n) return NULL;
    if (opts) *opts = &p->passes[i].opts;
    return p->passes[i].pass;
}

/* The option key of pp's pass, or ULC_ERR_INVALID_ARG listing the options it has. */
static ulc_status find_def(const pipe_pass *pp, const char *key, const ulc_pass_optdef **out,
                           ulc_ctx *ctx) {
    const ulc_pass_optdef *d = pp->pass->opts;
    for (int i = 0; d && d[i].key; i++)
        if (strcmp(d[i].key, key) == 0) {
            *out = &d[i];
            break;
        }
    if (!*out) {
        char list[512] = "";
        size_t o = 0;
        for (int i = 0; d && d[i].key && o < sizeof list; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", d[i].key);
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: unknown option '%s' (options: %s)",
                        pp->pass->name, key, o ? list : "none");
    }
    for (int i = 0; i < pp->opts.n; i++)
        if (pp->kv[i].def == *out)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option '%s' given twice",
                            pp->pass->name, key);
    if (pp->opts.n == MAX_OPTS)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: more than %d options", pp->pass->name,
                        MAX_OPTS);
    return ULC_OK;
}

/* "a, b or c" from a choice list. */
static void choice_list(const char *const *c, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; c[i] && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i == 0 ? "" : c[i + 1] ? ", " : " or ",
                              c[i]);
}

/* Checks one value against its definition and stores it in pp. text is the value as the user
 * wrote it (for messages); exactly one of the typed arguments is meant, by kind. */
static ulc_status store(pipe_pass *pp, const ulc_pass_optdef *d, const char *text, long long i,
                        double num, const char *str, ulc_ctx *ctx) {
    const char *pn = pp->pass->name;
    ulc_pass_opt v = {.def = d};
    if (d->kind == ULC_OPT_INT) {
        if (i < d->ilo || i > d->ihi)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option %s=%s: expected an integer "
                            "in [%lld, %lld]", pn, d->key, text, d->ilo, d->ihi);
        v.i = i;
        v.num = (double)i;
    } else if (d->kind == ULC_OPT_NUM) {
        if (!isfinite(num) || num < d->lo || num > d->hi || (d->lo_open && num == d->lo))
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option %s=%s: expected a number "
                            "in %s%g, %g]", pn, d->key, text, d->lo_open ? "(" : "[", d->lo, d->hi);
        v.num = num;
    } else {
        int ok = !d->choices;
        for (int k = 0; d->choices && d->choices[k]; k++) ok |= strcmp(d->choices[k], str) == 0;
        if (!ok) {
            char list[256];
            choice_list(d->choices, list, sizeof list);
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option %s=%s: expected %s", pn,
                            d->key, text, list);
        }
        if (!(v.str = strdup(str))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    pp->kv[pp->opts.n++] = v;
    pp->opts.kv = pp->kv;
    return ULC_OK;
}

static ulc_status last_pass(ulc_pipeline *p, const char *key, ulc_ctx *ctx, pipe_pass **pp) {
    if (!p->n)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "option '%s' set before any pass", key);
    *pp = &p->passes[p->n - 1];
    return ULC_OK;
}

static ulc_status kind_error(const pipe_pass *pp, const ulc_pass_optdef *d, const char *given,
                             ulc_ctx *ctx) {
    static const char *const kinds[] = {"an integer", "a number", "text"};
    return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option %s takes %s, not %s",
                    pp->pass->name, d->key, kinds[d->kind], given);
}

ulc_status ulc_pipeline_set_int(ulc_pipeline *p, const char *key, long long v, ulc_ctx *ctx) {
    pipe_pass *pp = NULL;
    const ulc_pass_optdef *d = NULL;
    ULC_TRY(last_pass(p, key, ctx, &pp));
    ULC_TRY(find_def(pp, key, &d, ctx));
    char text[32];
    snprintf(text, sizeof text, "%lld", v);
    if (d->kind == ULC_OPT_STR) return kind_error(pp, d, "an integer", ctx);
    return store(pp, d, text, v, (double)v, NULL, ctx);
}

ulc_status ulc_pipeline_set_num(ulc_pipeline *p, const char *key, double v, ulc_ctx *ctx) {
    pipe_pass *pp = NULL;
    const ulc_pass_optdef *d = NULL;
    ULC_TRY(last_pass(p, key, ctx, &pp));
    ULC_TRY(find_def(pp, key, &d, ctx));
    if (d->kind != ULC_OPT_NUM) return kind_error(pp, d, "a number", ctx);
    char text[40];
    num_text(v, text, sizeof text);
    return store(pp, d, text, 0, v, NULL, ctx);
}

ulc_status ulc_pipeline_set_str(ulc_pipeline *p, const char *key, const char *v, ulc_ctx *ctx) {
    pipe_pass *pp = NULL;
    const ulc_pass_optdef *d = NULL;
    ULC_TRY(last_pass(p, key, ctx, &pp));
    ULC_TRY(find_def(pp, key, &d, ctx));
    if (d->kind != ULC_OPT_STR) return kind_error(pp, d, "text", ctx);
    /* what the text form could not say: a pipeline prints back as text that parses the same */
    size_t n = strlen(v);
    if (strpbrk(v, ",{}") || (n && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1]))))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option %s='%s': text values may not "
                        "hold ',', '{' or '}' (a pipeline's separators) nor start or end with a "
                        "space", pp->pass->name, key, v);
    return store(pp, d, v, 0, 0, v, ctx);
}

/* ---- text form --------------------------------------------------------------------------------- */

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

/* key=value as text, converted to the option's kind. */
static ulc_status set_text(pipe_pass *pp, const char *key, const char *val, ulc_ctx *ctx) {
    const ulc_pass_optdef *d = NULL;
    ULC_TRY(find_def(pp, key, &d, ctx));
    char *end = NULL;
    errno = 0;
    if (d->kind == ULC_OPT_INT) {
        long long x = strtoll(val, &end, 10);
        if (errno || end == val || *end)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option %s=%s: expected an "
                            "integer in [%lld, %lld]", pp->pass->name, key, val, d->ilo, d->ihi);
        return store(pp, d, val, x, 0, NULL, ctx);
    }
    if (d->kind == ULC_OPT_NUM) {
        double x = strtod(val, &end);
        if (errno || end == val || *end)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option %s=%s: expected a "
                            "number in %s%g, %g]", pp->pass->name, key, val,
                            d->lo_open ? "(" : "[", d->lo, d->hi);
        return store(pp, d, val, 0, x, NULL, ctx);
    }
    return store(pp, d, val, 0, 0, val, ctx);
}

static ulc_status parse_options(pipe_pass *pp, char *body, ulc_ctx *ctx) {
    /* body: "k=v,k=v" (already without braces) */
    char *save = NULL;
    for (char *item = strtok_r(body, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        item = trim(item);
        if (!*item) continue;
        char *eq = strchr(item, '=');
        if (!eq)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option '%s' has no value (key=value)",
                            pp->pass->name, item);
        *eq = 0;
        ULC_TRY(set_text(pp, trim(item), trim(eq + 1), ctx));
    }
    return ULC_OK;
}

/* One "name{options}" at *cursor; advances past it and its ','. *more is 0 after the last. */
static ulc_status parse_one(ulc_pipeline *p, const char *text, char **cursor, int *more,
                            ulc_ctx *ctx) {
    char *c = *cursor;
    while (isspace((unsigned char)*c)) c++;
    char *name = c;
    while (*c && *c != '{' && *c != '}' && *c != ',') c++;
    char *name_end = c, *body = NULL;
    if (*c == '{') {
        body = c + 1;
        char *close = strchr(body, '}');
        char *open = strchr(body, '{');
        if (!close || (open && open < close)) {
            *name_end = 0;
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pipeline '%s': the options of pass '%s' "
                            "are not closed with '}'", text, trim(name));
        }
        *close = 0;
        c = close + 1;
        while (isspace((unsigned char)*c)) c++;
    }
    char next = *c;
    *name_end = 0;
    name = trim(name);
    if (next && next != ',')
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pipeline '%s': unexpected '%c' after pass '%s'",
                        text, next, name);
    if (!*name) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pipeline '%s': empty pass name", text);
    ULC_TRY(ulc_pipeline_append(p, name, ctx));
    if (body) ULC_TRY(parse_options(&p->passes[p->n - 1], body, ctx));
    *more = next != 0;
    *cursor = next ? c + 1 : c;
    return ULC_OK;
}

ulc_status ulc_pipeline_parse(const char *text, ulc_pipeline **out, ulc_ctx *ctx) {
    *out = NULL;
    ulc_pipeline *p = NULL;
    char *copy = strdup(text ? text : "");
    ulc_status s = copy ? ulc_pipeline_create(&p, ctx) : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    char *c = copy;
    for (int more = 1; s == ULC_OK && more;) s = parse_one(p, text ? text : "", &c, &more, ctx);
    free(copy);
    if (s == ULC_OK && p->n == 0) s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "empty pipeline");
    if (s != ULC_OK) {
        ulc_pipeline_free(p);
        return s;
    }
    *out = p;
    return ULC_OK;
}

/* Appends the strings of parts (NULL-terminated) to *buf (size *cap, length *len); 0 when out of
 * memory. */
static int put(char **buf, size_t *len, size_t *cap, const char *const *parts) {
    for (int i = 0; parts[i]; i++) {
        size_t n = strlen(parts[i]);
        if (*len + n + 1 > *cap) {
            size_t nc = (*cap + n + 1) * 2;
            char *nb = realloc(*buf, nc);
            if (!nb) return 0;
            *buf = nb;
            *cap = nc;
        }
        memcpy(*buf + *len, parts[i], n + 1);
        *len += n;
    }
    return 1;
}

char *ulc_pipeline_text(const ulc_pipeline *p) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ok = put(&buf, &len, &cap, (const char *const[]){"", NULL});
    for (int i = 0; ok && p && i < p->n; i++) {
        const pipe_pass *pp = &p->passes[i];
        ok = put(&buf, &len, &cap, (const char *const[]){i ? "," : "", pp->pass->name, NULL});
        for (int k = 0; ok && k < pp->opts.n; k++) {
            const ulc_pass_opt *o = &pp->kv[k];
            char num[40];
            if (o->def->kind == ULC_OPT_INT) snprintf(num, sizeof num, "%lld", o->i);
            else if (o->def->kind == ULC_OPT_NUM) num_text(o->num, num, sizeof num);
            const char *val = o->def->kind == ULC_OPT_STR ? o->str : num;
            ok = put(&buf, &len, &cap, (const char *const[]){k ? "," : "{", o->def->key, "=", val, NULL});
        }
        if (ok && pp->opts.n) ok = put(&buf, &len, &cap, (const char *const[]){"}", NULL});
    }
    if (!ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- running ----------------------------------------------------------------------------------- */

ulc_status ulc_pipeline_run(const ulc_pipeline *p, ulc_model *m, const ulc_pipeline_opts *o,
                            ulc_ctx *ctx) {
    return ulc_pipeline_run_range(p, 0, p->n, m, o, ctx);
}

ulc_status ulc_pipeline_run_range(const ulc_pipeline *p, int first, int count, ulc_model *m,
                                  const ulc_pipeline_opts *o, ulc_ctx *ctx) {
    ulc_pipeline_opts d = {0};
    if (!o) o = &d;
    ulc_pass_ctx dpc = ulc_pass_ctx_defaults();
    ulc_pass_ctx *pc = o->pass_ctx ? o->pass_ctx : &dpc;
    FILE *pf = o->print_to ? o->print_to : stdout;
    if (o->print_ir_after && strcmp(o->print_ir_after, "all") != 0 && !ulc_pass_find(o->print_ir_after))
        return unknown_pass(ctx, o->print_ir_after);
    if (first < 0 || count < 0 || first + count > p->n)
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "passes [%d, %d) of a pipeline of %d", first,
                        first + count, p->n);
    for (int i = first; i < first + count; i++) {
        const ulc_pass_opts *po;
        const ulc_pass *pass = ulc_pipeline_pass(p, i, &po);
        ulc_status s = pass->run(m, po, pc, ctx);
        if (s != ULC_OK) return s; /* passes name themselves in their messages */
        if (o->verify_each && (s = ulc_graph_verify(m->graph, ctx)) != ULC_OK)
            return ulc_fail(ctx, s, "the graph after pass %s is invalid", pass->name);
        if (o->print_ir_after &&
            (strcmp(o->print_ir_after, "all") == 0 || strcmp(o->print_ir_after, pass->name) == 0)) {
            fprintf(pf, "// ---- IR after %s ----\n", pass->name);
            ulc_model_print(m, pf);
        }
    }
    return ULC_OK;
}
