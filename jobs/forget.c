/* forget.c — the main job (forget.h): a request run on a model, evaluated and reported. */
#include "jobs/forget.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/file.h"
#include "common/fileset.h"
#include "common/sha256.h"
#include "eval/forget_report.h"
#include "eval/report.h"
#include "eval/score.h"
#include "io/data.h"
#include "io/hf_side.h"
#include "io/model.h"
#include "io/text_data.h"
#include "ir/digest.h"
#include "ir/lora.h"
#include "jobs/history.h"
#include "runtime/threads.h"

/* One run's state. */
typedef struct forget_run {
    const ulc_request *rq;
    const ulc_forget_opts *o;
    ulc_iface f;
    ulc_data tr, te;
    ulc_text_opts to;          /* text data: the spec's model.max_length, ... */
    ulc_tokenizer *tk;         /* text data: the model's tokenizer */
    int64_t *file_texts;       /* forget.file: the texts it names, as indices (fs.indices) */
    ulc_splits sp;
    ulc_forget_set fs;
    ulc_history_carry carry;   /* what earlier requests on the model forgot */
    ulc_forget_facts fx;       /* what the report reads */
    char **modules;            /* adapted module names */
    int n_modules;
    ulc_model *ref;            /* eval.reference */
    ulc_session *ses;          /* the teacher's, for the scores before */
    int n_prep;                /* passes before the method */
    ulc_pass_ctx pc;
    ulc_method_env env;
    char cache_key[96];
    ulc_clip_run clip;         /* a CLIP request: captions, held-out data */
    double *clip_similarity;   /* megu on a CLIP request: from the class text embeddings */
} forget_run;

static void run_clear(forget_run *w) {
    ulc_session_free(w->ses);
    ulc_forget_facts_clear(&w->fx);
    for (int k = 0; k < w->n_modules; k++) free(w->modules[k]);
    free(w->modules);
    ulc_splits_clear(&w->sp);
    ulc_history_carry_clear(&w->carry);
    ulc_data_clear(&w->tr);
    ulc_data_clear(&w->te);
    ulc_tokenizer_free(w->tk);
    free(w->file_texts);
    ulc_model_free(w->ref);
    ulc_method_env_clear(&w->env);
    ulc_clip_run_clear(&w->clip);
    free(w->clip_similarity);
}

void ulc_forget_outcome_clear(ulc_forget_outcome *r) {
    if (!r) return;
    cJSON_Delete(r->report);
    free(r->gate_messages);
    memset(r, 0, sizeof *r);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the passes ------------------------------------------------------------------------------- */

/* The method's place in the request's passes: exactly one method, whose pass index is *at. */
static ulc_status find_method(const ulc_request *rq, int *at, ulc_ctx *ctx) {
    int n = ulc_pipeline_length(rq->passes), found = 0;
    for (int i = 0; i < n; i++) {
        const ulc_pass *p = ulc_pipeline_pass(rq->passes, i, NULL);
        if (ulc_method_of_pass(p->name) < 0) continue;
        if (found++)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: the passes name more than one "
                            "unlearning method ('%s' is the second)", rq->path, p->name);
        *at = i;
    }
    if (!found)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: the passes name no unlearning method "
                        "(rfa, delete, finetune, neggrad, random-label, scrub, retrain, graddiff, "
                        "npo or ssd)", rq->path);
    return ULC_OK;
}

/* Whether the pass called name is among passes [first, first + n). */
static int has_pass(const ulc_pipeline *p, int first, int n, const char *name) {
    for (int i = first; i < first + n; i++)
        if (strcmp(ulc_pipeline_pass(p, i, NULL)->name, name) == 0) return 1;
    return 0;
}

/* The request's passes checked whole before any of them runs: the method's settings resolve,
 * its mask fits the forget set, and a method that trains LoRA adapters has them (lora-inject
 * before it, or adapters the model already holds) and has them merged (lora-merge after it), so
 * OUT keeps IN's nodes. *inject is set when lora-inject runs before the method. */
static ulc_status check_passes(const ulc_request *rq, ulc_model *m, int at, int *inject,
                               ulc_ctx *ctx) {
    const ulc_pass_opts *o = NULL;
    const ulc_pass *p = ulc_pipeline_pass(rq->passes, at, &o);
    ulc_method method = (ulc_method)ulc_method_of_pass(p->name);
    char where[64];
    snprintf(where, sizeof where, "pass %s", p->name);
    ulc_method_hparams h;
    ULC_TRY(ulc_method_resolve(method, &rq->run, o, where, &h, ctx));
    ULC_TRY(ulc_method_check_model(method, o, m, ctx));
    if (strcmp(ulc_pass_opt_str(o, "mask", "own"), "all_forget") == 0 &&
        rq->kind != ULC_FORGET_CLASSES)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: mask=all_forget masks every forget "
                        "class, so it needs class forgetting", p->name);
    int n = ulc_pipeline_length(rq->passes);
    *inject = has_pass(rq->passes, 0, at, "lora-inject");
    if (!ulc_method_uses_lora(method, o)) return ULC_OK;
    if (!has_pass(rq->passes, at + 1, n - at - 1, "lora-merge"))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s trains LoRA adapters: end the passes "
                        "with lora-merge (the output keeps the input's nodes)", p->name);
    if (*inject) return ULC_OK;
    ULC_TRY(ulc_lora_records_load(m, ctx));
    for (size_t i = 0; i < m->lora.len; i++)
        if (!((const ulc_lora_record *)m->lora.items[i])->merged) return ULC_OK;
    return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "pass %s: the model has no LoRA adapters to train "
                    "(put lora-inject before it, and lora-merge after: "
                    "lora-inject{placement=rfa},%s,lora-merge)", p->name, p->name);
}

/* DELETE's teacher-logits cache key: the hashes of the model file and the data, and of the forget
 * flags and the input/output names (the logits depend on nothing else). */
static ulc_status teacher_cache_key(forget_run *w, ulc_ctx *ctx) {
    char *file = ulc_io_model_main_file(w->o->in, ulc_io_input_format(w->o->in));
    char msha[ULC_SHA256_HEX], dsha[ULC_SHA256_HEX], fsha[ULC_SHA256_HEX];
    ulc_status st = file ? ulc_file_sha256(file, "input model", msha, ctx)
                         : ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    free(file);
    ULC_TRY(st);
    ULC_TRY(ulc_file_sha256(w->rq->train, "training data", dsha, ctx));
    ulc_sha256 h;
    ulc_sha256_init(&h);
    ulc_sha256_update(&h, w->sp.forget, (size_t)w->tr.d.n_rows);
    ulc_sha256_update(&h, w->f.fed[0]->name, strlen(w->f.fed[0]->name) + 1);
    ulc_sha256_update(&h, w->f.out->name, strlen(w->f.out->name) + 1);
    if (w->tr.text) { /* text: the rows depend on the tokenizer, the limit and the forget texts */
        const ulc_data_text *t = w->tr.text;
        char *tok = NULL;
        size_t tn = 0;
        FILE *mf = open_memstream(&tok, &tn);
        if (mf) {
            fprintf(mf, "%s|%lld|%lld|%lld|%d|%lld", t->tokenizer ? t->tokenizer : "",
                    (long long)t->max_length,
                    (long long)t->width, (long long)w->tr.rows, (int)w->to.overflow,
                    (long long)w->to.stride);
            fclose(mf);
        }
        if (!tok) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        ulc_sha256_update(&h, tok, tn);
        free(tok);
        for (int64_t i = 0; i < t->n_texts; i++) ulc_sha256_update(&h, t->text[i], t->len[i] + 1);
    }
    uint8_t dg[ULC_SHA256_BYTES];
    ulc_sha256_final(&h, dg);
    ulc_sha256_hex(dg, fsha);
    snprintf(w->cache_key, sizeof w->cache_key, "teacher-%.16s-%.16s-%.16s", msha, dsha, fsha);
    return ULC_OK;
}

/* The pass context and the method's inputs. */
static ulc_status method_env(forget_run *w, const ulc_model *teacher, const char *method,
                             ulc_ctx *ctx) {
    const ulc_request *rq = w->rq;
    const ulc_forget_opts *o = w->o;
    w->pc = (ulc_pass_ctx){.quiet = o->quiet, .threads = o->threads, .profile = o->profile,
                           .seed = rq->seed, .progress = o->progress ? o->progress : stderr,
                           .stop = o->stop, .env = &w->env};
    w->env = (ulc_method_env){.teacher = teacher, .data = &w->tr.d, .forget = w->sp.forget,
                              .input = w->f.fed[0]->name, .output = w->f.out->name,
                              .next_token = w->f.next_token, .train = rq->run,
                              .coarse_output = rq->clip.coarse.n ? ULC_CLIP_COARSE : NULL};
    if (w->fs.kind == ULC_FORGET_CLASSES) { /* the request's and the carried ones */
        w->env.forget_classes = w->carry.all_classes ? w->carry.all_classes : w->fs.classes;
        w->env.n_forget_classes = w->carry.all_classes ? w->carry.n_all_classes : w->fs.n_classes;
    }
    /* megu on CLIP without a similarity file: the class names' text embeddings give it */
    if (strcmp(method, "megu") == 0 && rq->clip.given && !rq->megu_similarity && o->in) {
        ULC_TRY(ulc_clip_class_similarity(o->in, &rq->clip, rq->tokenizer, rq->path,
                                          &w->clip_similarity, ctx));
        w->env.clip_similarity = w->clip_similarity;
    }
    /* a text model's teacher runs per batch: nothing to cache */
    if (strcmp(method, "delete") == 0 && o->in && !w->f.next_token && !getenv("ULC_NO_CACHE")) {
        ULC_TRY(teacher_cache_key(w, ctx));
        w->env.teacher_cache_key = w->cache_key;
    }
    return ULC_OK;
}

/* The adapters lora-inject added (a placement that adapts nothing is refused before any work). */
static ulc_status adapted_modules(forget_run *w, const ulc_model *m, ulc_ctx *ctx) {
    int adapted = 0;
    for (size_t i = 0; i < m->lora.len; i++)
        adapted += !((const ulc_lora_record *)m->lora.items[i])->merged;
    if (!adapted && w->rq->is_spec)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the spec's lora.targets/include/exclude "
                        "adapt no layer of %s", w->rq->path, w->o->in ? w->o->in : "the model");
    if (!adapted)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: lora-inject adapts no layer of %s",
                        w->rq->path, w->o->in ? w->o->in : "the model");
    if (!(w->modules = calloc((size_t)adapted, sizeof *w->modules)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < m->lora.len; i++) {
        const ulc_lora_record *rec = m->lora.items[i];
        if (!rec->merged && !(w->modules[w->n_modules++] = strdup(rec->module)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    return ULC_OK;
}

/* The method and the passes after it (m is changed in place; *o->stop stops training after a
 * step); the statistics go to the report. */
static ulc_status unlearn(forget_run *w, ulc_model *m, ulc_ctx *ctx) {
    const ulc_forget_opts *o = w->o;
    ulc_pipeline_opts po = {.verify_each = 1, .pass_ctx = &w->pc};
    int n = ulc_pipeline_length(w->rq->passes);
    if (o->phase) o->phase(o->phase_arg, "unlearn", 1);
    ulc_status st = ulc_pipeline_run_range(w->rq->passes, w->n_prep, n - w->n_prep, m, &po, ctx);
    if (o->phase) o->phase(o->phase_arg, "unlearn", 0);
    w->fx.st = w->env.stats; /* the report takes the statistics over */
    memset(&w->env.stats, 0, sizeof w->env.stats);
    w->fx.teacher_cache = w->env.teacher_cache;
    w->fx.ssd_dampened = w->env.ssd.dampened;
    w->fx.ssd_weights = w->env.ssd.weights;
    w->fx.ssd_tensors = w->env.ssd.tensors;
    w->fx.ssd_of_tensors = w->env.ssd.of_tensors;
    w->fx.detail = w->env.detail; /* the report takes the method's own object over */
    w->env.detail = NULL;
    if (st == ULC_OK && ((o->stop && *o->stop) || w->fx.st.interrupted))
        st = ulc_fail(ctx, ULC_ERR_INTERRUPTED, "forget: interrupted");
    return st;
}

/* ---- evaluation ------------------------------------------------------------------------------ */

/* The text models' gates (forget_ppl_min, extract_max) need a text model, and extract_max one
 * that extraction can feed. */
static ulc_status text_gates(const forget_run *w, const char *in, ulc_ctx *ctx) {
    const ulc_request *rq = w->rq;
    char why[256];
    for (int k = ULC_GATE_FORGET_PPL; k <= ULC_GATE_EXTRACT; k++)
        if (rq->gates.set[k] && !w->f.next_token)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: key 'gates.%s': %s is a classifier; the "
                            "gate scores text models", rq->path,
                            k == ULC_GATE_EXTRACT ? "extract_max" : "forget_ppl_min", in);
    if (rq->gates.set[ULC_GATE_EXTRACT] && ulc_lm_extract_skip(&w->f, why, sizeof why))
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: key 'gates.extract_max': extraction cannot "
                        "run on %s: %s", rq->path, in, why);
    return ULC_OK;
}

/* forget.file: the texts it marks (matched or appended) as the forget set's text indices, so the
 * report counts them as it counts forget.indices. */
static ulc_status forget_file_indices(forget_run *w, ulc_ctx *ctx) {
    const ulc_data_text *t = w->tr.text;
    if (!w->rq->forget_file || !t || !t->forget) return ULC_OK;
    if (!(w->file_texts = malloc(((size_t)t->n_texts + 1) * sizeof *w->file_texts)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    int64_t n = 0;
    for (int64_t i = 0; i < t->n_texts; i++)
        if (t->forget[i]) w->file_texts[n++] = i;
    w->fs.indices = w->file_texts;
    w->fs.n_indices = n;
    return ULC_OK;
}

/* The model and the data, checked against each other; the forget set against both. */
static ulc_status bind(forget_run *w, const ulc_model *m, const ulc_model *teacher,
                       ulc_ctx *ctx) {
    const ulc_request *rq = w->rq;
    const char *in = w->o->in ? w->o->in : "the model";
    if (!rq->train || !rq->forget_given)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: the request names no %s", rq->path,
                        rq->train ? "forget set" : "training data");
    ULC_TRY(ulc_iface_resolve(m, in, rq->model_input, rq->model_output, rq->path, &w->f, ctx));
    w->to = (ulc_text_opts){.tokenizer = rq->tokenizer, .max_length = rq->max_length,
                            .overflow = rq->overflow, .stride = rq->stride,
                            .forget_file = rq->forget_file, .where = rq->path};
    ULC_TRY(ulc_data_load_any("data.train", rq->train, in, &w->f, &w->to, &w->tk, &w->tr, ctx));
    ulc_text_opts tto = w->to;
    tto.forget_file = NULL;
    if (rq->test) ULC_TRY(ulc_data_load_any("data.test", rq->test, in, &w->f, &tto, &w->tk, &w->te, ctx));
    if (rq->reference) { /* eval.reference: scored like OUT, so the same interface */
        const char *which;
        ULC_TRY(ulc_io_load_model(rq->reference, NULL, &w->ref, ctx));
        if (rq->clip.given) /* scored as the same zero-shot classifiers */
            ULC_TRY(ulc_clip_view(w->ref, &rq->clip, rq->tokenizer, rq->reference, rq->path, NULL,
                                  ctx));
        if (!ulc_io_same_interface(teacher, w->ref, &which))
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'eval.reference': the model '%s' has "
                            "other %s than '%s' (names, dtypes or dims)", rq->path, rq->reference,
                            which, in);
    }
    ulc_session_opts so = ulc_session_defaults();
    so.threads = w->o->threads;
    ULC_TRY(ulc_session_create(teacher, &so, &w->ses, ctx));
    ULC_TRY(ulc_eval_probe(w->ses, in, &w->f, &w->tr, ctx));
    /* the first point where both the method and the model's task (the probe's: next-token
     * logits or class scores) are known: a method that cannot apply is refused here, before
     * any pass or training runs */
    const ulc_pass_opts *mo = NULL;
    const ulc_pass *mp = ulc_pipeline_pass(rq->passes, w->n_prep, &mo);
    ulc_status ck = ulc_method_check_task((ulc_method)ulc_method_of_pass(mp->name), mo,
                                          w->f.next_token, ctx);
    if (ck != ULC_OK) return ulc_fail(ctx, ck, "%s", rq->path);
    w->fs = ulc_request_forget_set(rq);
    ULC_TRY(forget_file_indices(w, ctx));
    ULC_TRY(ulc_history_carry_over(m, &w->fs, &w->tr, &w->carry, ctx));
    if (w->carry.n_rows || w->carry.n_classes) w->fs = w->carry.fs;
    ULC_TRY(ulc_splits_make(&w->fs, &w->f, &w->tr, rq->test ? &w->te : NULL, &w->sp, ctx));
    if (rq->clip.given)
        ULC_TRY(ulc_clip_check_data(rq->path, &rq->clip, &w->clip, &w->f,
                                    rq->test ? &w->te : &w->tr, in, ctx));
    if (rq->gates.set[ULC_GATE_MIA] && w->f.next_token)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: key 'gates.mia_max': the membership attack "
                        "scores classifiers; %s is scored on next-token predictions", rq->path, in);
    if (rq->gates.set[ULC_GATE_RELEARN] && !w->f.next_token && w->f.n_fed != 1)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: key 'gates.relearn_steps_min': the "
                        "relearning probe feeds a classifier one input; %s is fed %d inputs",
                        rq->path, in, w->f.n_fed);
    return text_gates(w, in, ctx);
}

/* Scores of the unlearned model, the attacks and the extra metrics (the spec's "eval"; for
 * models with one fed input). */
static ulc_status evaluate_after(forget_run *w, const ulc_model *m, const ulc_model *teacher,
                                 ulc_ctx *ctx) {
    const ulc_request *rq = w->rq;
    ulc_forget_facts *r = &w->fx;
    ulc_session *ses = NULL;
    ulc_session_opts so = ulc_session_defaults();
    so.threads = w->o->threads;
    const char *name = w->o->out ? w->o->out : "the unlearned model";
    ulc_status st = ulc_session_create(m, &so, &ses, ctx);
    r->after.mink_frac = rq->lm.mink_frac;
    if (st == ULC_OK)
        st = ulc_eval_score_splits(ses, name, &w->f, &w->tr, rq->test ? &w->te : NULL, &w->sp,
                                   &r->after, ctx);
    ulc_session_free(ses);
    ULC_TRY(st);
    r->tr = &w->tr;
    r->te = rq->test ? &w->te : NULL;
    r->sp = &w->sp;
    r->f = &w->f;
    r->fs = &w->fs;
    if (r->has_mia || r->has_lm_mia) ULC_TRY(ulc_forget_mia(r, ctx));
    r->eval = (ulc_fe_opts){.features = rq->eval_features, .relearn_steps = rq->relearn_steps,
                            .relearn_lr = rq->relearn_lr, .seed = rq->seed,
                            .so = ulc_session_defaults(), .lm = rq->lm};
    r->eval.so.threads = r->threads;
    if (rq->clip.given) r->eval.layers = ulc_clip_feature_layers(&rq->clip);
    if (!(r->extra = cJSON_CreateObject())) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ulc_fe_models ms = {.model = m, .orig = teacher, .ref = w->ref, .model_path = name,
                        .orig_path = w->o->in ? w->o->in : "the model",
                        .ref_path = rq->reference};
    ulc_fe_rows rows = {.path = w->tr.path, .x = w->tr.cols[0], .y = w->tr.label,
                        .forget = w->sp.forget, .rows = w->tr.rows, .data = &w->tr, .f = &w->f};
    ULC_TRY(ulc_fe_extra(&ms, &r->eval, w->f.fed[0]->name, w->f.out->name, w->f.next_token, &rows,
                         r->extra, ctx));
    if (!rq->clip.given) return ULC_OK;
    cJSON *cj = NULL;
    ULC_TRY(ulc_clip_metrics(teacher, ms.orig_path, m, name, &rq->clip, &w->clip, &w->f,
                             rq->test ? &w->te : &w->tr, w->fs.classes, w->fs.n_classes,
                             w->o->in, r->threads, &cj, ctx));
    cJSON_AddItemToObject(r->extra, "clip", cj);
    return ULC_OK;
}

/* ---- the run ---------------------------------------------------------------------------------- */

static ulc_status hash_inputs(forget_run *w, ulc_ctx *ctx);

/* Everything between loading and writing: m unlearned in place, evaluated when asked. */
static ulc_status run(forget_run *w, ulc_model *m, const ulc_model *teacher, ulc_ctx *ctx) {
    const ulc_request *rq = w->rq;
    const ulc_forget_opts *o = w->o;
    ULC_TRY(find_method(rq, &w->n_prep, ctx));
    ULC_TRY(bind(w, m, teacher, ctx));
    w->fx.has_mia = rq->test && !w->f.next_token;
    w->fx.has_lm_mia = rq->test && w->f.next_token;
    w->fx.before.mink_frac = rq->lm.mink_frac;
    w->fx.threads = ulc_threads_pick(o->threads);
    /* the passes before the method (lora-inject) now: a placement that adapts nothing is
     * refused before any work */
    int inject = 0;
    ULC_TRY(check_passes(rq, m, w->n_prep, &inject, ctx));
    const ulc_pass *method = ulc_pipeline_pass(rq->passes, w->n_prep, NULL);
    ULC_TRY(method_env(w, teacher, method->name, ctx));
    ulc_pipeline_opts po = {.verify_each = 1, .pass_ctx = &w->pc};
    ULC_TRY(ulc_pipeline_run_range(rq->passes, 0, w->n_prep, m, &po, ctx));
    if (inject) ULC_TRY(adapted_modules(w, m, ctx));
    /* before: the input model on every split (this also checks every label and token) */
    if (o->evaluate)
        ULC_TRY(ulc_eval_score_splits(w->ses, o->in ? o->in : "the model", &w->f, &w->tr,
                                      rq->test ? &w->te : NULL, &w->sp, &w->fx.before, ctx));
    ulc_session_free(w->ses);
    w->ses = NULL;
    ULC_TRY(unlearn(w, m, ctx));
    ULC_TRY(ulc_graph_verify(m->graph, ctx));
    const char *which;
    if (!ulc_io_same_interface(teacher, m, &which)) /* a ulc bug: nothing is written */
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "forget: the unlearned model's %s differ from "
                        "the input model's", which);
    ULC_TRY(hash_inputs(w, ctx));
    ulc_history_inputs hin = {.in_sha = w->fx.in_file ? w->fx.in_sha : NULL,
                              .in_weights_sha = w->fx.in_wsha, .tr = &w->tr,
                              .te = rq->test ? &w->te : NULL};
    ULC_TRY(ulc_history_record(m, rq, &hin, w->env.method, ctx));
    return o->evaluate ? evaluate_after(w, m, teacher, ctx) : ULC_OK;
}

/* Text data: how the texts became rows (the report's "text_data", and a table line). */
static void text_report(const forget_run *w, cJSON *report, FILE *t) {
    const ulc_data_text *d = w->tr.text;
    if (!d) return;
    cJSON *o = cJSON_AddObjectToObject(report, "text_data");
    if (o) {
        cJSON_AddStringToObject(o, "tokenizer", d->tokenizer ? d->tokenizer : "");
        cJSON_AddNumberToObject(o, "max_length", (double)d->max_length);
        cJSON_AddNumberToObject(o, "width", (double)d->width);
        cJSON_AddStringToObject(o, "overflow", ulc_text_overflow_name(w->to.overflow));
        if (w->to.overflow == ULC_OVERFLOW_WINDOWS)
            cJSON_AddNumberToObject(o, "stride", (double)w->to.stride);
        cJSON_AddNumberToObject(o, "texts", (double)d->n_texts);
        cJSON_AddNumberToObject(o, "rows", (double)w->tr.rows);
    }
    if (o && w->rq->forget_file) {
        cJSON *ff = cJSON_AddObjectToObject(o, "forget_file");
        cJSON_AddStringToObject(ff, "path", w->rq->forget_file);
        cJSON_AddNumberToObject(ff, "texts", (double)d->forget_texts.n);
        cJSON_AddNumberToObject(ff, "matched", (double)d->n_matched);
        cJSON_AddNumberToObject(ff, "appended", (double)d->n_appended);
    }
    if (t && w->rq->forget_file)
        fprintf(t, "forget.file: %lld texts, %lld found in data.train, %lld appended as forget "
                "rows\n", (long long)d->forget_texts.n, (long long)d->n_matched,
                (long long)d->n_appended);
}

/* The report object, its gates, and the table and gate lines. */
static ulc_status report(forget_run *w, double t0, ulc_forget_outcome *res, ulc_ctx *ctx) {
    const ulc_request *rq = w->rq;
    ulc_forget_facts *r = &w->fx;
    r->wall = now_s() - t0;
    r->method = w->env.method;
    r->reference = rq->reference;
    r->seed = rq->seed;
    if (!(r->hyper = ulc_request_hyperparameters(rq, &w->env, w->f.next_token, w->modules,
                                                 w->n_modules)) ||
        !(res->report = ulc_forget_report_json(r)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (report)");
    ulc_history_report(res->report, &w->carry);
    ulc_request_robust_report(res->report, &w->env, w->o->table);
    text_report(w, res->report, w->o->table);
    ULC_TRY(ulc_report_gates(res->report, &rq->gates, &res->gates_failed, &res->gate_messages,
                             ctx));
    FILE *t = w->o->table;
    if (!t) return ULC_OK;
    ulc_forget_print_table(t, r);
    ulc_history_print(t, &w->carry);
    for (const cJSON *g = cJSON_GetObjectItemCaseSensitive(res->report, "gates")->child; g;
         g = g->next)
        fprintf(t, "gate %s: %s (%.4g %s %g)\n",
                cJSON_GetObjectItemCaseSensitive(g, "name")->valuestring,
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "passed")) ? "passed" : "FAILED",
                cJSON_GetObjectItemCaseSensitive(g, "value")->valuedouble, ulc_report_gate_op(g),
                cJSON_GetObjectItemCaseSensitive(g, "threshold")->valuedouble);
    return ULC_OK;
}

/* ---- on files ---------------------------------------------------------------------------------- */

/* A usage error (exit 1) after the request is read. */
__attribute__((format(printf, 2, 3)))
static ulc_status usage(ulc_ctx *ctx, const char *fmt, ...) {
    char msg[ULC_CTX_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s", msg);
}

/* The outputs' formats and folders, before anything is read. */
static ulc_status check_formats(const ulc_forget_opts *o, ulc_io_format *ifmt, ulc_io_format *ofmt,
                                ulc_ctx *ctx) {
    const char *in = o->in, *out = o->out;
    if (!ulc_path_exists(in)) return ulc_fail(ctx, ULC_ERR_IO, "%s: no such file or directory", in);
    *ifmt = ulc_io_input_format(in);
    if (ulc_io_output_format(out, ofmt, NULL) != ULC_OK || *ofmt != *ifmt)
        return usage(ctx, "forget: the output '%s' must be %s, like the input '%s'", out,
                     ulc_io_format_describe(*ifmt), in);
    for (int q = 0; q < o->n_reports; q++) {
        const char *report = o->reports[q];
        if (strcmp(report, out) == 0 || ulc_path_same_file(report, out))
            return usage(ctx, "forget: the report '%s' would overwrite the output", report);
        for (int p = 0; p < q; p++)
            if (strcmp(report, o->reports[p]) == 0 || ulc_path_same_file(report, o->reports[p]))
                return usage(ctx, "forget: the report '%s' is given twice", report);
        if (ulc_path_is_dir(report)) return usage(ctx, "forget: the report '%s' is a directory", report);
        ULC_TRY(ulc_io_check_out_dir("report", report, 0, ctx));
    }
    if (o->junit) {
        const char *j = o->junit;
        if (strcmp(j, out) == 0 || ulc_path_same_file(j, out))
            return usage(ctx, "forget: the JUnit file '%s' would overwrite the output", j);
        for (int q = 0; q < o->n_reports; q++)
            if (strcmp(j, o->reports[q]) == 0 || ulc_path_same_file(j, o->reports[q]))
                return usage(ctx, "forget: the JUnit file '%s' is also a report", j);
        if (ulc_path_is_dir(j)) return usage(ctx, "forget: the JUnit file '%s' is a directory", j);
        ULC_TRY(ulc_io_check_out_dir("JUnit file", j, 0, ctx));
    }
    return ulc_io_check_out_dir("output", out, *ofmt == ULC_IO_DIR, ctx);
}

/* The shared check (common/fileset.h), once the model is loaded and before any work: neither
 * OUT nor a report may be, or alias, a file the run reads. The spec and the indices file are
 * hashed now (their bytes were read when the request was parsed); the data and the reference
 * join by identity, and by their bytes when they are loaded. */
static ulc_status check_outputs(const ulc_request *rq, const ulc_forget_opts *o, ulc_fileset *fs,
                                ulc_io_format ofmt, ulc_ctx *ctx) {
    char sha[ULC_SHA256_HEX];
    if (rq->is_spec) ULC_TRY(ulc_fileset_sha256(fs, rq->path, "spec", sha, ctx));
    if (rq->indices_file) ULC_TRY(ulc_fileset_sha256(fs, rq->indices_file, "indices file", sha, ctx));
    ULC_TRY(ulc_fileset_add_path(fs, "training data (data.train)", rq->train, ctx));
    ULC_TRY(ulc_fileset_add_path(fs, "test data (data.test)", rq->test, ctx));
    ULC_TRY(ulc_fileset_add_path(fs, "reference model (eval.reference)", rq->reference, ctx));
    ULC_TRY(ulc_fileset_add_path(fs, "forget texts (forget.file)", rq->forget_file, ctx));
    if (rq->tokenizer && !ulc_path_is_dir(rq->tokenizer))
        ULC_TRY(ulc_fileset_add_path(fs, "tokenizer (model.tokenizer)", rq->tokenizer, ctx));
    ULC_TRY(ulc_io_check_model_output(fs, "output", o->out, ofmt, ctx));
    if (ofmt == ULC_IO_DIR) ULC_TRY(ulc_io_check_side_outputs(fs, "output", o->in, o->out, ctx));
    for (int q = 0; q < o->n_reports; q++)
        ULC_TRY(ulc_fileset_check_output(fs, "report", o->reports[q], ctx));
    if (o->junit) ULC_TRY(ulc_fileset_check_output(fs, "JUnit file", o->junit, ctx));
    return ULC_OK;
}

/* The sha256 of the files the run read — IN (when it is a file), the spec, the reference, the
 * data and the indices file — as they were when the run read them (common/fileset.h); before
 * the request is recorded in the model's history, which holds them too. */
static ulc_status hash_inputs(forget_run *w, ulc_ctx *ctx) {
    const ulc_request *rq = w->rq;
    ulc_forget_facts *r = &w->fx;
    if (w->o->in) {
        if (!(r->in_file = ulc_io_model_main_file(w->o->in, ulc_io_input_format(w->o->in))))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        ULC_TRY(ulc_file_sha256(r->in_file, "input model", r->in_sha, ctx));
    }
    if (rq->is_spec) ULC_TRY(ulc_file_sha256(rq->path, "spec", r->spec_sha, ctx));
    if (rq->reference) {
        if (!(r->ref_file = ulc_io_model_main_file(rq->reference, ulc_io_input_format(rq->reference))))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
        ULC_TRY(ulc_file_sha256(r->ref_file, "reference model", r->ref_sha, ctx));
    }
    ULC_TRY(ulc_file_sha256(w->tr.path, "training data", w->tr.sha, ctx));
    if (rq->test) ULC_TRY(ulc_file_sha256(w->te.path, "test data", w->te.sha, ctx));
    if (rq->indices_file) ULC_TRY(ulc_file_sha256(rq->indices_file, "indices file", r->idx_sha, ctx));
    return ULC_OK;
}

/* The sha256 of OUT (and its external data) once written. */
static ulc_status hash_output(forget_run *w, const ulc_model *teacher, ulc_io_format ofmt,
                              ulc_ctx *ctx) {
    ulc_forget_facts *r = &w->fx;
    const char *out = w->o->out;
    if (!(r->out_file = ulc_io_model_main_file(out, ofmt)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ULC_TRY(ulc_sha256_file(r->out_file, r->out_sha, ctx));
    if (ofmt == ULC_IO_ONNX && teacher->had_external_data) {
        size_t n = strlen(out) + 6;
        if ((r->ext_file = malloc(n))) snprintf(r->ext_file, n, "%s.data", out);
        if (r->ext_file && ulc_path_exists(r->ext_file))
            ULC_TRY(ulc_sha256_file(r->ext_file, r->ext_sha, ctx));
        else {
            free(r->ext_file);
            r->ext_file = NULL;
        }
    }
    return ULC_OK;
}

/* text (malloc'd, freed here; NULL: out of memory) written atomically to path. */
static ulc_status write_text(const char *path, const char *what, char *text, ulc_ctx *ctx) {
    if (!text) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s %s)", what, path);
    ulc_outfile *f = NULL;
    ulc_status st = ulc_outfile_open(path, &f, ctx);
    if (st == ULC_OK) st = ulc_outfile_write(f, text, strlen(text), ctx);
    free(text);
    if (st == ULC_OK) {
        st = ulc_outfile_commit(f, ctx);
        f = NULL;
    }
    ulc_outfile_abort(f);
    return st;
}

/* Each report file in the format its name asks for, and the JUnit file (written whatever the
 * gates say); their temporaries are made now, not when the run starts. */
static ulc_status write_reports(const ulc_forget_opts *o, const cJSON *report, ulc_ctx *ctx) {
    for (int q = 0; q < o->n_reports; q++)
        ULC_TRY(write_text(o->reports[q], "report",
                           ulc_report_render(report, ulc_report_format_of(o->reports[q])), ctx));
    if (o->junit) ULC_TRY(write_text(o->junit, "JUnit file", ulc_report_junit(report), ctx));
    return ULC_OK;
}

/* The GitHub Actions lines of the failed gates, to o->annotations (when given). */
static ulc_status print_annotations(const ulc_forget_opts *o, const cJSON *report,
                                    ulc_ctx *ctx) {
    if (!o->annotations) return ULC_OK;
    char *text = ulc_report_github_annotations(report);
    if (!text) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (annotations)");
    fputs(text, o->annotations);
    free(text);
    return ULC_OK;
}

/* Loading, the run, the output and the reports. */
static ulc_status forget_files(forget_run *w, ulc_fileset *fs, ulc_model **m, ulc_model **teacher,
                               ulc_forget_outcome *res, ulc_ctx *ctx) {
    const ulc_forget_opts *o = w->o;
    double t0 = now_s();
    ulc_io_format ifmt = ULC_IO_ONNX, ofmt = ULC_IO_ONNX;
    ULC_TRY(check_formats(o, &ifmt, &ofmt, ctx));
    ulc_fileset_tag(fs, "input model", 1);
    ULC_TRY(ulc_io_load_model(o->in, NULL, m, ctx));
    ULC_TRY(ulc_io_load_model(o->in, NULL, teacher, ctx)); /* the frozen original */
    ulc_fileset_tag(fs, NULL, 0);
    ULC_TRY(ulc_model_weights_sha256(*teacher, w->fx.in_wsha, ctx)); /* IN's, before any view */
    ULC_TRY(check_outputs(w->rq, o, fs, ofmt, ctx));
    const ulc_clip_spec *clip = &w->rq->clip;
    if (clip->given) { /* both as zero-shot classifiers; OUT is the CLIP model with m's weights */
        ULC_TRY(ulc_clip_view(*m, clip, w->rq->tokenizer, o->in, w->rq->path, &w->clip, ctx));
        ULC_TRY(ulc_clip_view(*teacher, clip, w->rq->tokenizer, o->in, w->rq->path, NULL, ctx));
    }
    ULC_TRY(run(w, *m, *teacher, ctx));
    if (clip->given) {
        ulc_model *full = NULL;
        int changed = 0;
        ulc_fileset_tag(fs, "input model", 1);
        ulc_status st = ulc_io_load_model(o->in, NULL, &full, ctx);
        ulc_fileset_tag(fs, NULL, 0);
        if (st == ULC_OK) st = ulc_clip_take_weights(full, *m, &changed, ctx);
        if (st == ULC_OK) /* the request, recorded on the view, and the weights written */
            st = ulc_model_set_metadata(full, ULC_META_HISTORY,
                                        ulc_model_metadata(*m, ULC_META_HISTORY), ctx);
        if (st == ULC_OK) st = ulc_history_seal(full, w->fx.out_wsha, ctx);
        if (st == ULC_OK) st = ulc_io_save_model(full, o->out, ofmt, NULL, ctx);
        ulc_model_free(full);
        ULC_TRY(st);
    } else {
        ULC_TRY(ulc_history_seal(*m, w->fx.out_wsha, ctx)); /* the weights as written */
        ULC_TRY(ulc_io_save_model(*m, o->out, ofmt, NULL, ctx));
    }
    if (ofmt == ULC_IO_DIR) ULC_TRY(ulc_io_copy_side_files(o->in, o->out, ctx));
    if (!o->evaluate) return ULC_OK;
    ULC_TRY(hash_output(w, *teacher, ofmt, ctx));
    ULC_TRY(report(w, t0, res, ctx));
    ULC_TRY(write_reports(o, res->report, ctx));
    for (int q = 0; o->table && q < o->n_reports; q++) fprintf(o->table, "report: %s\n", o->reports[q]);
    if (o->table && o->junit) fprintf(o->table, "JUnit: %s\n", o->junit);
    return print_annotations(o, res->report, ctx);
}

ulc_status ulc_forget_files(const ulc_request *rq, const ulc_forget_opts *opts,
                            ulc_forget_outcome *res, ulc_ctx *ctx) {
    memset(res, 0, sizeof *res);
    ulc_forget_opts o = *opts;
    if (!o.in || !o.out) return ulc_fail(ctx, ULC_ERR_INTERNAL, "forget: no input or output");
    if (!o.n_reports && rq->report) o.reports[o.n_reports++] = rq->report;
    if (!rq->passes) return ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: the request has no passes", rq->path);
    forget_run w = {.rq = rq, .o = &o, .fx = {.in = o.in, .out = o.out,
                                               .spec = rq->is_spec ? rq->path : NULL}};
    ulc_model *m = NULL, *teacher = NULL;
    ulc_fileset fs; /* hashed as read: the report and the history describe those bytes */
    ulc_fileset_begin(&fs, 1, ctx);
    ulc_status st = forget_files(&w, &fs, &m, &teacher, res, ctx);
    run_clear(&w);
    ulc_model_free(teacher);
    ulc_model_free(m);
    st = ulc_fileset_end(&fs, st, ctx);
    if (st != ULC_OK) ulc_forget_outcome_clear(res);
    return st;
}

/* ---- in memory --------------------------------------------------------------------------------- */

ulc_status ulc_forget_model(ulc_model *m, const ulc_model *teacher, const ulc_request *rq,
                            const ulc_forget_opts *o, ulc_forget_outcome *res, ulc_ctx *ctx) {
    double t0 = now_s();
    memset(res, 0, sizeof *res);
    if (!rq->passes) return ulc_fail(ctx, ULC_ERR_INTERNAL, "%s: the request has no passes", rq->path);
    if (rq->clip.given) /* the zero-shot rewrite needs a model of its own to write back from */
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "%s: a CLIP request (key 'clip') runs on files "
                        "(`ulc IN --forget SPEC -o OUT`), not on a model in memory", rq->path);
    forget_run w = {.rq = rq, .o = o, .fx = {.in = o->in, .out = o->out, .spec = rq->is_spec ? rq->path : NULL}};
    ulc_fileset fs; /* the data, hashed as read */
    ulc_fileset_begin(&fs, 1, ctx);
    ulc_status st = ulc_model_weights_sha256(teacher, w.fx.in_wsha, ctx);
    if (st == ULC_OK) st = run(&w, m, teacher, ctx);
    if (st == ULC_OK) st = ulc_history_seal(m, w.fx.out_wsha, ctx);
    if (st == ULC_OK && o->evaluate) st = report(&w, t0, res, ctx);
    if (st == ULC_OK && o->evaluate) st = print_annotations(o, res->report, ctx);
    run_clear(&w);
    st = ulc_fileset_end(&fs, st, ctx);
    if (st != ULC_OK) ulc_forget_outcome_clear(res);
    return st;
}
