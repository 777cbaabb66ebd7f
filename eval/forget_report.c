/* forget_report.c — the main command's report and table from one run's facts (see
 * forget_report.h). */
#include "eval/clip_eval.h"
#include "eval/forget_report.h"
#include "runtime/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ulc_forget_facts_clear(ulc_forget_facts *r) {
    free(r->in_file);
    free(r->out_file);
    free(r->ext_file);
    free(r->ref_file);
    cJSON_Delete(r->hyper);
    cJSON_Delete(r->extra);
    cJSON_Delete(r->detail);
    r->detail = NULL;
    ulc_scores_clear(&r->before);
    ulc_scores_clear(&r->after);
    ulc_train_stats_clear(&r->st);
    r->in_file = r->out_file = r->ext_file = r->ref_file = NULL;
    r->hyper = r->extra = NULL;
}

ulc_status ulc_forget_mia(ulc_forget_facts *r, ulc_ctx *ctx) {
    const ulc_scores *sc[2] = {&r->before, &r->after};
    for (int k = 0; r->has_lm_mia && k < 2; k++) {
        ulc_status st = ulc_lm_mia(r->tr, r->te, r->sp, sc[k], &r->lm_loss[k], &r->lm_mink[k], ctx);
        if (st != ULC_OK) return ulc_fail(ctx, st, "forget: the membership attacks on the LM");
    }
    if (!r->has_mia) return ULC_OK;
    ulc_mia_result *res[2][2] = {{&r->mia_before, &r->mia_after}, {&r->svm_before, &r->svm_after}};
    for (int svm = 0; svm < 2; svm++)
        for (int k = 0; k < 2; k++) {
            ulc_status st = ulc_eval_mia(r->tr, r->te, r->sp, sc[k], svm, res[svm][k], ctx);
            if (st != ULC_OK)
                return ulc_fail(ctx, st, "forget: the membership-inference attack (MIA)");
        }
    return ULC_OK;
}

/* {"path", "sha256"}, or null for a model that was never a file (the C API's in-memory runs). */
static cJSON *file_entry(const char *path, const char *sha) {
    if (!path) return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "sha256", sha);
    return o;
}

/* A text model's report: "perplexity" before and after, and "mia" from the loss and Min-K%
 * attacks (the fractions of Df called member after, "before", the AUCs and the row counts). */
static void lm_json(cJSON *o, const ulc_forget_facts *r) {
    cJSON *ppl = cJSON_AddObjectToObject(o, "perplexity");
    cJSON_AddItemToObject(ppl, "before", ulc_lm_ppl_json(&r->before, r->sp));
    cJSON_AddItemToObject(ppl, "after", ulc_lm_ppl_json(&r->after, r->sp));
    if (!r->has_lm_mia) return;
    cJSON *mia = cJSON_AddObjectToObject(o, "mia");
    cJSON_AddNumberToObject(mia, "loss", r->lm_loss[1].member_frac);
    cJSON_AddNumberToObject(mia, "min_k", r->lm_mink[1].member_frac);
    cJSON *mb = cJSON_AddObjectToObject(mia, "before");
    cJSON_AddNumberToObject(mb, "loss", r->lm_loss[0].member_frac);
    cJSON_AddNumberToObject(mb, "min_k", r->lm_mink[0].member_frac);
    cJSON *auc = cJSON_AddObjectToObject(mia, "auc");
    for (int k = 0; k < 2; k++) {
        cJSON *a = cJSON_AddObjectToObject(auc, k ? "after" : "before");
        cJSON_AddNumberToObject(a, "loss", r->lm_loss[k].auc);
        cJSON_AddNumberToObject(a, "min_k", r->lm_mink[k].auc);
    }
    cJSON_AddNumberToObject(mia, "min_k_percent", 100 * r->eval.lm.mink_frac);
    cJSON *mr = cJSON_AddObjectToObject(mia, "rows");
    cJSON_AddNumberToObject(mr, "members", (double)r->lm_loss[1].n_members);
    cJSON_AddNumberToObject(mr, "nonmembers", (double)r->lm_loss[1].n_nonmembers);
    cJSON_AddNumberToObject(mr, "target", (double)r->lm_loss[1].n_target);
}

static cJSON *accuracy_obj(const ulc_splits *sp, const ulc_tally t[ULC_SPLIT_COUNT]) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < ULC_SPLIT_COUNT; k++)
        if (sp->present[k]) cJSON_AddNumberToObject(o, ulc_split_name(k), ulc_tally_acc(&t[k]));
    return o;
}

cJSON *ulc_forget_report_json(const ulc_forget_facts *r) {
    const ulc_forget_set *fs = r->fs;
    const ulc_data *tr = r->tr, *te = r->te;
    const ulc_splits *sp = r->sp;
    const ulc_iface *f = r->f;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "method", r->method);
    if (r->teacher_cache) cJSON_AddStringToObject(o, "teacher_cache", r->teacher_cache);
    if (r->ssd_weights) {
        cJSON *d = cJSON_AddObjectToObject(o, "dampened");
        cJSON_AddNumberToObject(d, "weights", (double)r->ssd_dampened);
        cJSON_AddNumberToObject(d, "of_weights", (double)r->ssd_weights);
        cJSON_AddNumberToObject(d, "tensors", r->ssd_tensors);
        cJSON_AddNumberToObject(d, "of_tensors", r->ssd_of_tensors);
    }
    if (r->detail) cJSON_AddItemToObject(o, r->method, cJSON_Duplicate(r->detail, 1));
    cJSON *in = file_entry(r->in, r->in_sha);
    if (r->in && r->in_file && strcmp(r->in, r->in_file) != 0)
        cJSON_AddStringToObject(in, "file", r->in_file);
    if (r->in && r->in_wsha[0]) cJSON_AddStringToObject(in, "weights_sha256", r->in_wsha);
    cJSON_AddItemToObject(o, "input", in);
    cJSON *out = file_entry(r->out, r->out_sha);
    if (r->out && r->out_file && strcmp(r->out, r->out_file) != 0)
        cJSON_AddStringToObject(out, "file", r->out_file);
    if (r->ext_file)
        cJSON_AddItemToObject(out, "external_data", file_entry(r->ext_file, r->ext_sha));
    if (r->out && r->out_wsha[0]) cJSON_AddStringToObject(out, "weights_sha256", r->out_wsha);
    cJSON_AddItemToObject(o, "output", out);
    cJSON_AddItemToObject(o, "spec", file_entry(r->spec, r->spec_sha));
    if (r->reference) {
        cJSON *ref = file_entry(r->reference, r->ref_sha);
        if (strcmp(r->reference, r->ref_file) != 0) cJSON_AddStringToObject(ref, "file", r->ref_file);
        cJSON_AddItemToObject(o, "reference", ref);
    }
    cJSON *data = cJSON_AddObjectToObject(o, "data");
    for (int k = 0; k < 2; k++) {
        const ulc_data *df = k ? te : tr;
        if (!df) continue;
        cJSON *e = file_entry(df->path, df->sha);
        cJSON_AddNumberToObject(e, "rows", (double)df->rows);
        cJSON_AddItemToObject(data, k ? "test" : "train", e);
    }
    cJSON *fg = cJSON_AddObjectToObject(o, "forget");
    cJSON_AddStringToObject(fg, "kind", fs->kind == ULC_FORGET_CLASSES ? "classes" : "indices");
    if (fs->kind == ULC_FORGET_CLASSES) {
        cJSON *cl = cJSON_AddArrayToObject(fg, "classes");
        for (int k = 0; k < fs->n_classes; k++)
            cJSON_AddItemToArray(cl, cJSON_CreateNumber((double)fs->classes[k]));
    } else {
        cJSON_AddNumberToObject(fg, "indices", (double)fs->n_indices);
        if (fs->indices_file)
            cJSON_AddItemToObject(fg, "indices_file", file_entry(fs->indices_file, r->idx_sha));
    }
    cJSON_AddNumberToObject(fg, "rows", (double)sp->rows[ULC_SPLIT_DF]);
    cJSON *splits_o = cJSON_AddObjectToObject(o, "splits");
    for (int k = 0; k < ULC_SPLIT_COUNT; k++)
        if (sp->present[k]) {
            cJSON *e = cJSON_AddObjectToObject(splits_o, ulc_split_name(k));
            cJSON_AddNumberToObject(e, "rows", (double)sp->rows[k]);
            cJSON_AddNumberToObject(e, "predictions", (double)r->before.split[k].pred);
        }
    cJSON *hp = r->hyper ? cJSON_Duplicate(r->hyper, 1) : cJSON_CreateObject();
    cJSON_AddItemToObject(o, "hyperparameters", hp);
    cJSON_AddNumberToObject(o, "seed", (double)r->seed);
    cJSON_AddNumberToObject(o, "threads", r->threads);
    cJSON_AddStringToObject(o, "device", ulc_runtime_device_name());
    cJSON *acc = cJSON_AddObjectToObject(o, "accuracy");
    cJSON_AddItemToObject(acc, "before", accuracy_obj(sp, r->before.split));
    cJSON_AddItemToObject(acc, "after", accuracy_obj(sp, r->after.split));
    if (sp->present[ULC_SPLIT_DFT]) { /* DELETE's H-mean (docs/metrics.md), in points */
        double art = 100 * ulc_tally_acc(&r->after.split[ULC_SPLIT_DRT]);
        double drop = 100 * (ulc_tally_acc(&r->before.split[ULC_SPLIT_DFT]) - ulc_tally_acc(&r->after.split[ULC_SPLIT_DFT]));
        cJSON *hm = cJSON_AddObjectToObject(o, "h_mean");
        cJSON_AddNumberToObject(hm, "acc_rt", art);
        cJSON_AddNumberToObject(hm, "drop_ft", drop);
        cJSON_AddNumberToObject(hm, "h_mean", ulc_hmean(art, drop));
    }
    if (f->next_token) lm_json(o, r);
    if (r->has_mia) {
        cJSON *mia = cJSON_AddObjectToObject(o, "mia");
        cJSON_AddNumberToObject(mia, "entropy", r->mia_after.member_frac);
        cJSON_AddNumberToObject(mia, "confidence_svm", r->svm_after.member_frac);
        cJSON *mb = cJSON_AddObjectToObject(mia, "before");
        cJSON_AddNumberToObject(mb, "entropy", r->mia_before.member_frac);
        cJSON_AddNumberToObject(mb, "confidence_svm", r->svm_before.member_frac);
        cJSON *mr = cJSON_AddObjectToObject(mia, "rows");
        cJSON_AddNumberToObject(mr, "members", (double)r->mia_after.n_members);
        cJSON_AddNumberToObject(mr, "nonmembers", (double)r->mia_after.n_nonmembers);
        cJSON_AddNumberToObject(mr, "target", (double)r->mia_after.n_target);
    }
    if (!f->next_token) {
        cJSON *pc = cJSON_AddObjectToObject(o, "per_class");
        for (int w = 0; w < 2; w++) {
            if (!r->before.cls[w] || !r->after.cls[w]) continue;
            cJSON *list = cJSON_AddArrayToObject(pc, w ? "test" : "train");
            for (int64_t c = 0; c < f->classes; c++) {
                const ulc_tally *b = &r->before.cls[w][c], *a = &r->after.cls[w][c];
                if (!b->rows) continue; /* classes without rows in this file */
                cJSON *e = cJSON_CreateObject();
                cJSON_AddItemToArray(list, e);
                cJSON_AddNumberToObject(e, "class", (double)c);
                cJSON_AddNumberToObject(e, "rows", (double)b->rows);
                cJSON_AddNumberToObject(e, "before", ulc_tally_acc(b));
                cJSON_AddNumberToObject(e, "after", ulc_tally_acc(a));
                cJSON_AddBoolToObject(e, "forget", fs->kind == ULC_FORGET_CLASSES &&
                                                       ulc_forget_has_class(fs, c));
            }
        }
    }
    for (const cJSON *e = r->extra ? r->extra->child : NULL; e; e = e->next)
        cJSON_AddItemToObject(o, e->string, cJSON_Duplicate(e, 1));
    cJSON *eo = cJSON_AddObjectToObject(hp, "eval");
    cJSON_AddBoolToObject(eo, "features", r->eval.features);
    cJSON_AddNumberToObject(eo, "relearn_steps", (double)r->eval.relearn_steps);
    cJSON_AddNumberToObject(eo, "relearn_lr", r->eval.relearn_lr);
    if (f->next_token) {
        cJSON_AddNumberToObject(eo, "mink_percent", 100 * r->eval.lm.mink_frac);
        cJSON_AddNumberToObject(eo, "extract_prefix", (double)r->eval.lm.extract_prefix);
        cJSON_AddNumberToObject(eo, "extract_tokens", (double)r->eval.lm.extract_tokens);
        cJSON_AddNumberToObject(eo, "extract_rows", (double)r->eval.lm.extract_rows);
    }
    cJSON *tro = cJSON_AddObjectToObject(o, "train");
    cJSON_AddNumberToObject(tro, "steps", (double)r->st.steps);
    cJSON_AddNumberToObject(tro, "first_loss", r->st.first_loss);
    cJSON_AddNumberToObject(tro, "last_loss", r->st.last_loss);
    cJSON_AddNumberToObject(tro, "seconds", r->st.seconds);
    cJSON *lc = cJSON_AddArrayToObject(tro, "loss_curve");
    for (long k = 0; r->st.loss_curve && k < r->st.steps; k++)
        cJSON_AddItemToArray(lc, cJSON_CreateNumber(r->st.loss_curve[k]));
    cJSON_AddNumberToObject(o, "wall_seconds", r->wall);
    return o;
}

/* A text model's lines: perplexity per split, the LM attacks, extraction. */
static void print_lm(FILE *out, const ulc_forget_facts *r) {
    fprintf(out, "(accuracy: next-token predictions)\nperplexity                     rows    "
            "before     after\n");
    for (int k = 0; k < ULC_SPLIT_COUNT; k++)
        if (r->sp->present[k])
            fprintf(out, "%-4s %-22s %9lld %9.3f %9.3f\n", ulc_split_name(k), ulc_split_what(k),
                    (long long)r->sp->rows[k], ulc_scores_ppl(&r->before, k),
                    ulc_scores_ppl(&r->after, k));
    if (r->has_lm_mia) {
        fprintf(out, "MIA  loss attack: Df called member    %7.2f%%  %7.2f%%  (AUC %.3f -> %.3f)\n",
                100 * r->lm_loss[0].member_frac, 100 * r->lm_loss[1].member_frac,
                r->lm_loss[0].auc, r->lm_loss[1].auc);
        fprintf(out, "MIA  Min-K%% Prob: Df called member    %7.2f%%  %7.2f%%  (AUC %.3f -> %.3f)\n",
                100 * r->lm_mink[0].member_frac, 100 * r->lm_mink[1].member_frac,
                r->lm_mink[0].auc, r->lm_mink[1].auc);
    }
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(r->extra, "extraction");
    for (int side = 0; ex && side < 2; side++) { /* Df, then Dr for contrast */
        const char *sp = side ? "Dr" : "Df";
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ex, "before"), sp);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ex, "after"), sp);
        const cJSON *bv[2] = {cJSON_GetObjectItemCaseSensitive(b, "rouge_l"), cJSON_GetObjectItemCaseSensitive(b, "exact")};
        const cJSON *av[2] = {cJSON_GetObjectItemCaseSensitive(a, "rouge_l"), cJSON_GetObjectItemCaseSensitive(a, "exact")};
        const cJSON *skip = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ex, "after"), "skipped");
        if (cJSON_IsString(skip) && !side) fprintf(out, "extraction skipped: %s\n", skip->valuestring);
        if (!cJSON_IsNumber(av[0])) continue;
        fprintf(out, "extraction %s (%d rows): ROUGE-L %.3f -> %.3f, exact %.2f%% -> %.2f%%\n", sp,
                cJSON_GetObjectItemCaseSensitive(a, "rows")->valueint,
                cJSON_IsNumber(bv[0]) ? bv[0]->valuedouble : NAN, av[0]->valuedouble,
                cJSON_IsNumber(bv[1]) ? 100 * bv[1]->valuedouble : NAN, 100 * av[1]->valuedouble);
    }
}

void ulc_forget_print_table(FILE *out, const ulc_forget_facts *r) {
    const ulc_forget_set *fs = r->fs;
    const ulc_splits *sp = r->sp;
    fprintf(out, "ulc forget: %s -> %s (%s; ", r->in ? r->in : "(model)",
            r->out ? r->out : "(in memory)", r->method);
    if (fs->kind == ULC_FORGET_CLASSES) {
        fprintf(out, "class%s", fs->n_classes > 1 ? "es" : "");
        for (int k = 0; k < fs->n_classes; k++)
            fprintf(out, "%s%lld", k ? "," : " ", (long long)fs->classes[k]);
    } else {
        fprintf(out, "%lld sample%s", (long long)fs->n_indices, fs->n_indices > 1 ? "s" : "");
    }
    fprintf(out, ": %lld of %lld train rows)\n\n", (long long)sp->rows[ULC_SPLIT_DF], (long long)r->tr->rows);
    fprintf(out, "split                          rows    before     after\n");
    for (int k = 0; k < ULC_SPLIT_COUNT; k++)
        if (sp->present[k])
            fprintf(out, "%-4s %-22s %9lld  %7.2f%%  %7.2f%%\n", ulc_split_name(k), ulc_split_what(k),
                    (long long)sp->rows[k], 100 * ulc_tally_acc(&r->before.split[k]),
                    100 * ulc_tally_acc(&r->after.split[k]));
    if (r->f->next_token) print_lm(out, r);
    if (r->has_mia)
        fprintf(out, "MIA  entropy attack: Df called member  %7.2f%%  %7.2f%%\n",
                100 * r->mia_before.member_frac, 100 * r->mia_after.member_frac);
    if (r->has_mia)
        fprintf(out, "MIA  confidence SVM: Df called member  %7.2f%%  %7.2f%%\n",
                100 * r->svm_before.member_frac, 100 * r->svm_after.member_frac);
    if (sp->present[ULC_SPLIT_DFT])
        fprintf(out, "H-mean of Drt and the drop of Dft            %7.2f\n",
                ulc_hmean(100 * ulc_tally_acc(&r->after.split[ULC_SPLIT_DRT]),
                          100 * (ulc_tally_acc(&r->before.split[ULC_SPLIT_DFT]) - ulc_tally_acc(&r->after.split[ULC_SPLIT_DFT]))));
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(r->extra, "activation_distance");
    if (ad)
        fprintf(out, "activation distance to the reference on Df  %7.4f  %7.4f\n",
                cJSON_GetObjectItemCaseSensitive(ad, "original")->valuedouble,
                cJSON_GetObjectItemCaseSensitive(ad, "model")->valuedouble);
    const cJSON *fe = cJSON_GetObjectItemCaseSensitive(r->extra, "features");
    if (fe) { /* the mean CKA over the layers where it is defined */
        double sum[2] = {0, 0};
        int n[2] = {0, 0}, layers = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(fe, "layers")) {
            layers++;
            for (int k = 0; k < 2; k++) {
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, k ? "cka_retain" : "cka_forget");
                if (cJSON_IsNumber(c)) sum[k] += c->valuedouble, n[k]++;
            }
        }
        if (n[0] && n[1])
            fprintf(out, "features vs IN: mean linear CKA %.4f on Df, %.4f on Dr (%d layers)\n",
                    sum[0] / n[0], sum[1] / n[1], layers);
    }
    const cJSON *clip = cJSON_GetObjectItemCaseSensitive(r->extra, "clip");
    if (clip) ulc_clip_print(out, clip);
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(r->extra, "relearn");
    if (rl) {
        const cJSON *acc = cJSON_GetObjectItemCaseSensitive(rl, "forget_acc");
        int n = cJSON_GetArraySize(acc), every = n > 11 ? (n + 9) / 10 : 1;
        fprintf(out, "relearning probe: Df accuracy after SGD steps on Df (lr %g):\n ",
                cJSON_GetObjectItemCaseSensitive(rl, "lr")->valuedouble);
        for (int k = 0; k < n; k += every)
            fprintf(out, " %d: %.1f%%", k, 100 * cJSON_GetArrayItem(acc, k)->valuedouble);
        if ((n - 1) % every)
            fprintf(out, " %d: %.1f%%", n - 1, 100 * cJSON_GetArrayItem(acc, n - 1)->valuedouble);
        fprintf(out, "\n");
        const cJSON *ppl = cJSON_GetObjectItemCaseSensitive(rl, "forget_ppl");
        if (cJSON_GetArraySize(ppl) == n && cJSON_IsNumber(cJSON_GetArrayItem(ppl, n - 1)))
            fprintf(out, "  Df perplexity %.3f -> %.3f\n", cJSON_GetArrayItem(ppl, 0)->valuedouble,
                    cJSON_GetArrayItem(ppl, n - 1)->valuedouble);
        ulc_fe_relearn_print(out, rl);
    }
    fprintf(out, "\n%s: %ld steps, loss %.4f -> %.4f, %.1f s; wall time %.1f s\n", r->method,
            r->st.steps, r->st.first_loss, r->st.last_loss, r->st.seconds, r->wall);
}
