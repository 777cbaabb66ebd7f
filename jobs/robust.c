/*
 * robust.c — a spec's "robust" key (docs/spec.md): the robust pass (methods/robust.c) after the
 * method. Its options are checked by the pass's own option table (kinds, ranges, choices) when
 * the spec is read, before any work, and carried as a one-pass pipeline that ulc_request_passes
 * appends after lora-merge / the method; the report's "hyperparameters.robust" and "robust"
 * (what the pass did: its steps, seconds and losses) are written here too.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "jobs/request.h"

ulc_status ulc_request_parse_robust(ulc_request *rq, const cJSON *j, ulc_ctx *ctx) {
    const cJSON *ro = cJSON_GetObjectItemCaseSensitive(j, "robust");
    if (!ro) return ULC_OK;
    if (!cJSON_IsObject(ro))
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'robust': expected an object (its options, "
                        "or {} for the defaults), got %s", rq->path, ulc_json_what(ro));
    ULC_TRY(ulc_methods_register(ctx));
    ulc_pipeline *p = NULL;
    ulc_ctx pctx;
    ulc_ctx_init(&pctx);
    ulc_status st = ulc_pipeline_create(&p, &pctx);
    if (st == ULC_OK) st = ulc_pipeline_append(p, "robust", &pctx);
    const char *key = "";
    for (const cJSON *it = ro->child; it && st == ULC_OK; it = it->next) {
        key = it->string;
        if (cJSON_IsString(it)) st = ulc_pipeline_set_str(p, key, it->valuestring, &pctx);
        else if (cJSON_IsNumber(it) && fabs(it->valuedouble) < 9e15 && /* cast only in range */
                 it->valuedouble == (double)(long long)it->valuedouble)
            st = ulc_pipeline_set_int(p, key, (long long)it->valuedouble, &pctx);
        else if (cJSON_IsNumber(it)) st = ulc_pipeline_set_num(p, key, it->valuedouble, &pctx);
        else
            st = ulc_fail(&pctx, ULC_ERR_INVALID_ARG, "expected a number or a string, got %s",
                          ulc_json_what(it));
    }
    if (st != ULC_OK) {
        ulc_pipeline_free(p);
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'robust%s%s': %s", rq->path,
                        *key ? "." : "", key, pctx.msg);
    }
    ulc_pipeline_free(rq->robust);
    rq->robust = p;
    return ULC_OK;
}

ulc_status ulc_request_append_robust(const ulc_request *rq, ulc_pipeline *p, ulc_ctx *ctx) {
    if (!rq->robust) return ULC_OK;
    const ulc_pass_opts *o = NULL;
    ulc_pipeline_pass(rq->robust, 0, &o);
    ULC_TRY(ulc_pipeline_append(p, "robust", ctx));
    for (int i = 0; i < o->n; i++) {
        const ulc_pass_opt *kv = &o->kv[i];
        switch (kv->def->kind) {
        case ULC_OPT_INT: ULC_TRY(ulc_pipeline_set_int(p, kv->def->key, kv->i, ctx)); break;
        case ULC_OPT_NUM: ULC_TRY(ulc_pipeline_set_num(p, kv->def->key, kv->num, ctx)); break;
        default: ULC_TRY(ulc_pipeline_set_str(p, kv->def->key, kv->str, ctx)); break;
        }
    }
    return ULC_OK;
}

void ulc_request_robust_hyperparameters(cJSON *hp, const ulc_method_env *env) {
    const ulc_robust_result *r = &env->robust;
    if (!r->ran) return;
    cJSON *o = cJSON_AddObjectToObject(hp, "robust");
    cJSON_AddNumberToObject(o, "alpha", r->alpha);
    cJSON_AddNumberToObject(o, "temperature", r->temperature);
    cJSON_AddStringToObject(o, "teacher", r->teacher ? r->teacher : "unlearned");
    cJSON_AddNumberToObject(o, "epochs", (double)r->hparams.epochs);
    cJSON_AddNumberToObject(o, "batch_size", (double)r->hparams.batch_size);
    cJSON_AddNumberToObject(o, "lr", r->hparams.lr);
    cJSON_AddStringToObject(o, "optimizer", r->hparams.optimizer == ULC_OPTIM_ADAMW ? "adamw" : "sgd");
    cJSON_AddNumberToObject(o, "weight_decay", r->hparams.weight_decay);
    cJSON_AddStringToObject(o, "schedule", "linear");
}

void ulc_request_robust_report(cJSON *report, const ulc_method_env *env, FILE *table) {
    const ulc_robust_result *r = &env->robust;
    if (!r->ran) return;
    cJSON *o = cJSON_AddObjectToObject(report, "robust");
    cJSON_AddNumberToObject(o, "retain_rows", (double)r->retain_rows);
    cJSON_AddNumberToObject(o, "steps", (double)r->stats.steps);
    cJSON_AddNumberToObject(o, "first_loss", r->stats.first_loss);
    cJSON_AddNumberToObject(o, "last_loss", r->stats.last_loss);
    cJSON_AddNumberToObject(o, "teacher_seconds", r->teacher_seconds);
    cJSON_AddNumberToObject(o, "train_seconds", r->stats.seconds);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON *lc = cJSON_AddArrayToObject(o, "loss_curve");
    for (long k = 0; r->stats.loss_curve && k < r->stats.steps; k++)
        cJSON_AddItemToArray(lc, cJSON_CreateNumber(r->stats.loss_curve[k]));
    if (table)
        fprintf(table, "robust (alpha %g): %ld distillation steps on %ld retain rows, KL %.4f -> "
                "%.4f, %.1f s\n", r->alpha, r->stats.steps, r->retain_rows, r->stats.first_loss,
                r->stats.last_loss, r->seconds);
}
