/* pass.c — the pass registry, the pipeline parser and the pipeline runner. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "passes/pass.h"

static const ulc_pass *const k_passes[] = {&ulc_pass_specialize, &ulc_pass_cleanup,
                                            &ulc_pass_lora_inject, &ulc_pass_lora_merge, NULL};

const ulc_pass *const *ulc_passes(void) { return k_passes; }

const ulc_pass *ulc_pass_find(const char *name) {
    for (int i = 0; k_passes[i]; i++)
        if (strcmp(k_passes[i]->name, name) == 0) return k_passes[i];
    return NULL;
}

const char *ulc_pass_opt_get(const ulc_pass_opts *o, const char *key) {
    for (int i = 0; o && i < o->n; i++)
        if (strcmp(o->kv[i].key, key) == 0) return o->kv[i].value;
    return NULL;
}

ulc_status ulc_pass_opt_int(const ulc_pass_opts *o, const char *pass, const char *key, long long lo,
                            long long hi, long long def, long long *out, ulc_ctx *ctx) {
    const char *v = ulc_pass_opt_get(o, key);
    if (!v) {
        *out = def;
        return ULC_OK;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option %s=%s: expected an integer in [%lld, %lld]",
                        pass, key, v, lo, hi);
    *out = x;
    return ULC_OK;
}

/* ---- parsing ------------------------------------------------------------------------------- */

typedef struct pipe_pass {
    const ulc_pass *pass;
    ulc_pass_opts opts;
    ulc_pass_opt *kv;
} pipe_pass;

struct ulc_pipeline {
    int n;
    pipe_pass *passes;
    char *text; /* a copy of the text; keys and values point into it */
};

void ulc_pipeline_free(ulc_pipeline *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) free(p->passes[i].kv);
    free(p->passes);
    free(p->text);
    free(p);
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static ulc_status known_passes(ulc_ctx *ctx, const char *name) {
    char list[256] = "";
    size_t o = 0;
    for (int i = 0; k_passes[i] && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", k_passes[i]->name);
    return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "unknown pass '%s' (passes: %s)", name, list);
}

static ulc_status parse_options(pipe_pass *pp, char *body, ulc_ctx *ctx) {
    /* body: "k=v,k=v" (already without braces) */
    int cap = 1;
    for (char *c = body; *c; c++) cap += *c == ',';
    pp->kv = calloc((size_t)cap, sizeof *pp->kv);
    if (!pp->kv) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    char *save = NULL;
    for (char *item = strtok_r(body, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        item = trim(item);
        if (!*item) continue;
        char *eq = strchr(item, '=');
        if (!eq)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option '%s' has no value (key=value)",
                            pp->pass->name, item);
        *eq = 0;
        char *key = trim(item), *val = trim(eq + 1);
        int ok = 0;
        for (int i = 0; pp->pass->keys && pp->pass->keys[i]; i++)
            if (strcmp(pp->pass->keys[i], key) == 0) ok = 1;
        if (!ok) {
            char list[256] = "";
            size_t o = 0;
            for (int i = 0; pp->pass->keys && pp->pass->keys[i] && o < sizeof list; i++)
                o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", pp->pass->keys[i]);
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: unknown option '%s' (options: %s)",
                            pp->pass->name, key, o ? list : "none");
        }
        for (int i = 0; i < pp->opts.n; i++)
            if (strcmp(pp->kv[i].key, key) == 0)
                return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: option '%s' given twice",
                                pp->pass->name, key);
        pp->kv[pp->opts.n++] = (ulc_pass_opt){key, val};
    }
    pp->opts.kv = pp->kv;
    return ULC_OK;
}

ulc_status ulc_pipeline_parse(const char *text, ulc_pipeline **out, ulc_ctx *ctx) {
    *out = NULL;
    ulc_pipeline *p = calloc(1, sizeof *p);
    if (!p || !(p->text = strdup(text ? text : ""))) {
        free(p);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    int cap = 1;
    for (const char *c = p->text; *c; c++) cap += *c == ',';
    p->passes = calloc((size_t)cap, sizeof *p->passes);
    if (!p->passes) {
        ulc_pipeline_free(p);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    char *c = p->text;
    ulc_status s = ULC_OK;
    for (;;) {
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
                s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pipeline '%s': the options of pass '%s' are "
                             "not closed with '}'", text, trim(name));
                break;
            }
            *close = 0;
            c = close + 1;
            while (isspace((unsigned char)*c)) c++;
        }
        char next = *c;
        *name_end = 0;
        name = trim(name);
        if (next && next != ',') {
            s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pipeline '%s': unexpected '%c' after pass '%s'",
                         text, next, name);
            break;
        }
        if (!*name) {
            s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pipeline '%s': empty pass name", text);
            break;
        }
        const ulc_pass *pass = ulc_pass_find(name);
        if (!pass) {
            s = known_passes(ctx, name);
            break;
        }
        pipe_pass *pp = &p->passes[p->n++];
        pp->pass = pass;
        if (body && (s = parse_options(pp, body, ctx)) != ULC_OK) break;
        if (!next) break;
        c++; /* past ',' */
    }
    if (s == ULC_OK && p->n == 0) s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "empty pipeline");
    if (s != ULC_OK) {
        ulc_pipeline_free(p);
        return s;
    }
    *out = p;
    return ULC_OK;
}

ulc_status ulc_pipeline_run(const ulc_pipeline *p, ulc_model *m, const ulc_pipeline_opts *o,
                            ulc_ctx *ctx) {
    ulc_pipeline_opts d = {0};
    if (!o) o = &d;
    FILE *pf = o->print_to ? o->print_to : stdout;
    if (o->print_ir_after && strcmp(o->print_ir_after, "all") != 0 && !ulc_pass_find(o->print_ir_after))
        return known_passes(ctx, o->print_ir_after);
    for (int i = 0; i < p->n; i++) {
        const pipe_pass *pp = &p->passes[i];
        ulc_status s = pp->pass->run(m, &pp->opts, ctx);
        if (s != ULC_OK) return s; /* passes name themselves in their messages */
        if (o->verify_each && (s = ulc_graph_verify(m->graph, ctx)) != ULC_OK)
            return ulc_fail(ctx, s, "the graph after pass %s is invalid", pp->pass->name);
        if (o->print_ir_after &&
            (strcmp(o->print_ir_after, "all") == 0 || strcmp(o->print_ir_after, pp->pass->name) == 0)) {
            fprintf(pf, "// ---- IR after %s ----\n", pp->pass->name);
            ulc_model_print(m, pf);
        }
    }
    return ULC_OK;
}
