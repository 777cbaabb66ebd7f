/* hparams.c — the report's "hyperparameters", read from the passes a request ran (request.h). */
#include <stdlib.h>
#include <string.h>

#include "jobs/request.h"

/* A '|'-joined list back into a JSON list of strings. */
static cJSON *str_list(const char *joined) {
    cJSON *a = cJSON_CreateArray();
    const char *p = joined;
    while (p && *p) {
        const char *e = strchr(p, '|');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char *item = strndup(p, n);
        if (item) cJSON_AddItemToArray(a, cJSON_CreateString(item));
        free(item);
        p = e ? e + 1 : NULL;
    }
    return a;
}

/* The pass called name in the request's passes, with its options; NULL if it has none. */
static const ulc_pass *find_pass(const ulc_request *rq, const char *name,
                                 const ulc_pass_opts **o) {
    for (int i = 0; i < ulc_pipeline_length(rq->passes); i++) {
        const ulc_pass *p = ulc_pipeline_pass(rq->passes, i, o);
        if (strcmp(p->name, name) == 0) return p;
    }
    return NULL;
}

/* "lora": lora-inject's options and the modules it adapted. */
static void lora_obj(cJSON *hp, const ulc_pass_opts *li, char *const *modules, int n_modules) {
    cJSON *lo = cJSON_AddObjectToObject(hp, "lora");
    long long rank = ulc_pass_opt_i(li, "rank", 8);
    int rfa_placed = strcmp(ulc_pass_opt_str(li, "placement", "all"), "rfa") == 0;
    cJSON_AddNumberToObject(lo, "rank", (double)rank);
    cJSON_AddNumberToObject(lo, "alpha", ulc_pass_opt_num(li, "alpha", (double)rank));
    cJSON_AddStringToObject(lo, "placement", rfa_placed ? "rfa-default" : "spec");
    const char *targets = ulc_pass_opt_str(li, "targets", NULL);
    const char *include = ulc_pass_opt_str(li, "include", NULL);
    if (targets) cJSON_AddItemToObject(lo, "targets", str_list(targets));
    if (include) cJSON_AddItemToObject(lo, "include", str_list(include));
    if (!rfa_placed)
        cJSON_AddItemToObject(lo, "exclude", str_list(ulc_pass_opt_str(li, "exclude", NULL)));
    cJSON *mods = cJSON_AddArrayToObject(lo, "modules");
    for (int k = 0; k < n_modules; k++) cJSON_AddItemToArray(mods, cJSON_CreateString(modules[k]));
}

/* The method's own options (not rfa's: "rfa" below). */
static void method_obj(cJSON *hp, const char *method, const ulc_pass_opts *mo, int next_token) {
    cJSON *o = cJSON_AddObjectToObject(hp, method);
    cJSON_AddStringToObject(o, "train", ulc_pass_opt_str(mo, "train",
                                                         strcmp(method, "nhl-kl") ? "all" : "lora"));
    if (strcmp(method, "delete") == 0) {
        cJSON_AddStringToObject(o, "mask", ulc_pass_opt_str(mo, "mask", "own"));
        cJSON_AddNumberToObject(o, "temperature", ulc_pass_opt_num(mo, "temperature", 1));
        cJSON_AddStringToObject(o, "retain", ulc_pass_opt_str(mo, "retain", next_token ? "none"
                                                                                        : "all"));
    }
    if (strcmp(method, "scrub") == 0) {
        cJSON_AddNumberToObject(o, "alpha", ulc_pass_opt_num(mo, "alpha", 1));
        cJSON_AddNumberToObject(o, "gamma", ulc_pass_opt_num(mo, "gamma", 1));
    }
    if (strcmp(method, "graddiff") == 0 || strcmp(method, "npo") == 0)
        cJSON_AddNumberToObject(o, "retain_weight", ulc_pass_opt_num(mo, "retain_weight", 1));
    if (strcmp(method, "graddiff") == 0)
        cJSON_AddStringToObject(o, "retain", ulc_pass_opt_str(mo, "retain", "ce"));
    if (strcmp(method, "npo") == 0)
        cJSON_AddNumberToObject(o, "beta", ulc_pass_opt_num(mo, "beta", 0.1));
    if (strcmp(method, "nhl-kl") == 0) {
        cJSON_AddNumberToObject(o, "margin", ulc_pass_opt_num(mo, "margin", 2));
        cJSON_AddNumberToObject(o, "alpha_coarse", ulc_pass_opt_num(mo, "alpha_coarse", 10));
        cJSON_AddNumberToObject(o, "alpha_fine", ulc_pass_opt_num(mo, "alpha_fine", 20));
    }
    if (strcmp(method, "megu") == 0) {
        ulc_unlearn_opts d;
        ulc_optim_opts optim;
        int epochs, batch;
        ulc_unlearn_defaults(ULC_METHOD_MEGU, &d, &optim, &epochs, &batch);
        cJSON_AddNumberToObject(o, "tau", ulc_pass_opt_num(mo, "tau", d.megu_tau));
        cJSON_AddNumberToObject(o, "alpha", ulc_pass_opt_num(mo, "alpha", d.megu_alpha));
        cJSON_AddNumberToObject(o, "noise_steps",
                                (double)ulc_pass_opt_i(mo, "noise_steps", d.megu_noise_steps));
        cJSON_AddNumberToObject(o, "noise_lr", ulc_pass_opt_num(mo, "noise_lr", d.megu_noise_lr));
        cJSON_AddNumberToObject(o, "noise_lambda",
                                ulc_pass_opt_num(mo, "noise_lambda", d.megu_noise_lambda));
        cJSON_AddNumberToObject(o, "retain_rows",
                                (double)ulc_pass_opt_i(mo, "retain_rows", d.megu_retain_rows));
        cJSON_AddStringToObject(o, "similarity", ulc_pass_opt_str(mo, "similarity", "model"));
    }
}

static void rfa_obj(cJSON *hp, const ulc_pass_opts *mo, int next_token) {
    ulc_rfa_opts d = ulc_rfa_defaults();
    cJSON *rf = cJSON_AddObjectToObject(hp, "rfa");
    cJSON_AddNumberToObject(rf, "gamma", ulc_pass_opt_num(mo, "gamma", d.gamma));
    cJSON_AddStringToObject(rf, "norm", ulc_pass_opt_str(mo, "norm", "l2sq"));
    cJSON_AddNumberToObject(rf, "alpha", ulc_pass_opt_num(mo, "alpha", d.alpha));
    cJSON_AddNumberToObject(rf, "beta", ulc_pass_opt_num(mo, "beta", d.beta));
    cJSON_AddNumberToObject(rf, "lambda", ulc_pass_opt_num(mo, "lambda", d.lambda));
    cJSON_AddNumberToObject(rf, "mu", ulc_pass_opt_num(mo, "mu", d.mu));
    cJSON_AddStringToObject(rf, "task", next_token ? "next-token" : "classification");
}

/* ssd trains nothing: "train" holds what applies (the batch size of its Fisher estimates, the
 * seed), "ssd" its own options with the defaults filled in. */
static void ssd_obj(cJSON *hp, const ulc_request *rq, const ulc_method_hparams *h,
                    const ulc_pass_opts *mo) {
    ulc_unlearn_opts d;
    ulc_optim_opts optim;
    int epochs, batch;
    ulc_unlearn_defaults(ULC_METHOD_SSD, &d, &optim, &epochs, &batch);
    cJSON *tr = cJSON_AddObjectToObject(hp, "train");
    cJSON_AddNumberToObject(tr, "batch_size", (double)h->batch_size);
    cJSON_AddNumberToObject(tr, "seed", (double)rq->seed);
    cJSON *o = cJSON_AddObjectToObject(hp, "ssd");
    cJSON_AddNumberToObject(o, "alpha", ulc_pass_opt_num(mo, "alpha", d.ssd_alpha));
    cJSON_AddNumberToObject(o, "lambda", ulc_pass_opt_num(mo, "lambda", d.ssd_lambda));
    cJSON_AddStringToObject(o, "params", ulc_pass_opt_str(mo, "params", "*"));
}

cJSON *ulc_request_hyperparameters(const ulc_request *rq, const ulc_method_env *env,
                                   int next_token, char *const *modules, int n_modules) {
    cJSON *hp = cJSON_CreateObject();
    if (!hp || !env->method) return hp;
    const ulc_pass_opts *li = NULL, *mo = NULL;
    if (find_pass(rq, "lora-inject", &li)) lora_obj(hp, li, modules, n_modules);
    find_pass(rq, env->method, &mo);
    const ulc_method_hparams *h = &env->hparams;
    if (strcmp(env->method, "ssd") == 0) {
        ssd_obj(hp, rq, h, mo);
        ulc_request_robust_hyperparameters(hp, env);
        return hp;
    }
    cJSON *tr = cJSON_AddObjectToObject(hp, "train");
    cJSON_AddNumberToObject(tr, "epochs", (double)h->epochs);
    cJSON_AddNumberToObject(tr, "batch_size", (double)h->batch_size);
    cJSON_AddNumberToObject(tr, "lr", h->lr);
    cJSON_AddStringToObject(tr, "optimizer", h->optimizer == ULC_OPTIM_ADAMW ? "adamw" : "sgd");
    cJSON_AddNumberToObject(tr, "weight_decay", h->weight_decay);
    if (h->optimizer == ULC_OPTIM_SGD) cJSON_AddNumberToObject(tr, "momentum", h->momentum);
    cJSON_AddNumberToObject(tr, "seed", (double)rq->seed);
    double rho = ulc_pass_opt_num(mo, "sam_rho", 0); /* a pass option (docs/cli.md) */
    if (rho > 0) cJSON_AddNumberToObject(tr, "sam_rho", rho);
    if (strcmp(env->method, "rfa") != 0) method_obj(hp, env->method, mo, next_token);
    else rfa_obj(hp, mo, next_token);
    ulc_request_robust_hyperparameters(hp, env);
    return hp;
}
