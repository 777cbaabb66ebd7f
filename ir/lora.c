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
