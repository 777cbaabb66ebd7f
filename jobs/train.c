/* train.c — the training job (`ulc train`; train.h): a model trained on a dataset with ulc's
 * own autodiff and trainer, optionally through pipelines before and after (LoRA). */
#include "jobs/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileset.h"
#include "export/peft_export.h"
#include "io/data.h"
#include "io/hf_side.h"
#include "io/model.h"
#include "io/text_data.h"
#include "methods/method.h"
#include "train/train_graph.h"

/* --loss distill: the frozen teacher's softmax is the target of a KL loss (self-distillation
 * when the teacher is the input model itself, as when training LoRA adapters). */
typedef struct teacher {
    ulc_session *s;
    const ulc_model *m;
    const ulc_train_graph *tg;
    const char *output;
    float *probs;
    size_t cap;
} teacher;

static ulc_status teacher_step(void *arg, ulc_session *student, const ulc_rt_tensor *const *batch,
                               int n, ulc_ctx *ctx) {
    teacher *t = arg;
    const ulc_graph *g = t->m->graph;
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        int k = 0;
        while (k < n && strcmp(t->tg->data_inputs[k], v->name) != 0) k++;
        if (k == n)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "teacher input '%s' is not in the data", v->name);
        ULC_TRY(ulc_session_set_input(t->s, v->name, batch[k], ctx));
    }
    ULC_TRY(ulc_session_run(t->s, ctx));
    const ulc_rt_tensor *z = ulc_session_output(t->s, t->output);
    if (!z || z->dtype != ULC_DT_F32 || z->rank < 1)
        return ulc_fail(ctx, ULC_ERR_INVALID, "teacher output '%s' is not float32", t->output);
    size_t numel = ulc_rt_numel(z), c = (size_t)z->dims[z->rank - 1];
    if (numel > t->cap) {
        free(t->probs);
        if (!(t->probs = malloc(numel * sizeof *t->probs)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (teacher targets)");
        t->cap = numel;
    }
    const float *x = z->data;
    for (size_t r = 0; c && r < numel / c; r++) { /* softmax over the last axis */
        const float *xr = x + r * c;
        float *p = t->probs + r * c, mx = xr[0];
        for (size_t j = 1; j < c; j++) mx = xr[j] > mx ? xr[j] : mx;
        double sum = 0;
        for (size_t j = 0; j < c; j++) sum += (p[j] = expf(xr[j] - mx));
        for (size_t j = 0; j < c; j++) p[j] = (float)(p[j] / sum);
    }
    ulc_rt_tensor pt = *z;
    pt.data = t->probs;
    return ulc_session_set_input(student, ULC_TRAIN_TARGET, &pt, ctx);
}

/* The loss curve as JSON, written atomically as every output is. */
static ulc_status write_losses(const char *path, const ulc_train_stats *st, ulc_ctx *ctx) {
    char *text = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&text, &n);
    if (!f) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", path);
    fprintf(f, "{\"steps\": %ld, \"seconds\": %.6f, \"loss\": [", st->steps, st->seconds);
    for (long i = 0; i < st->steps; i++) fprintf(f, "%s%.9g", i ? ", " : "", st->loss_curve[i]);
    fputs("], \"step_ms\": [", f);
    for (long i = 0; i < st->steps; i++) fprintf(f, "%s%.3f", i ? ", " : "", st->step_ms[i]);
    fputs("]}\n", f);
    if (fclose(f) != 0) {
        free(text);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (%s)", path);
    }
    ulc_outfile *o = NULL;
    ulc_status s = ulc_outfile_open(path, &o, ctx);
    if (s == ULC_OK) s = ulc_outfile_write(o, text, n, ctx);
    if (s == ULC_OK) {
        s = ulc_outfile_commit(o, ctx);
        o = NULL;
    }
    ulc_outfile_abort(o);
    free(text);
    return s;
}

/* Every file the job writes, against every file it read (before training). */
static ulc_status check_outputs(const ulc_train_job *j, const ulc_fileset *fs, ulc_ctx *ctx) {
    ulc_io_format ofmt;
    if (ulc_io_output_format(j->out, &ofmt, NULL) != ULC_OK) ofmt = ULC_IO_DIR;
    ULC_TRY(ulc_io_check_model_output(fs, "output", j->out, ofmt, ctx));
    if (ofmt == ULC_IO_DIR) ULC_TRY(ulc_io_check_side_outputs(fs, "output", j->in, j->out, ctx));
    if (j->losses) ULC_TRY(ulc_fileset_check_output(fs, "losses file", j->losses, ctx));
    if (j->losses) ULC_TRY(ulc_io_check_out_dir("losses file", j->losses, 0, ctx));
    return ULC_OK;
}

/* Text data: the texts tokenized and bound to the model's input_ids/attention_mask, for
 * next-token training (the only loss text gives targets for). */
static ulc_status load_text(const ulc_train_job *j, const ulc_model *m, ulc_train_task *task,
                            ulc_tokenizer **tk, ulc_data *data, ulc_ctx *ctx) {
    if (j->task.loss != ULC_LOSS_CROSS_ENTROPY || j->task.custom_loss)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "train: --data '%s' is text: it trains with "
                        "--loss next-token (the texts' next tokens are the targets)", j->data);
    ulc_iface f;
    ULC_TRY(ulc_iface_resolve(m, j->in, j->task.input, j->task.output, NULL, &f, ctx));
    ulc_text_opts to = {.tokenizer = j->tokenizer, .max_length = j->max_length,
                        .overflow = (ulc_overflow)j->overflow, .stride = j->stride};
    ULC_TRY(ulc_data_load_any("--data", j->data, j->in, &f, &to, tk, data, ctx));
    task->next_token = 1;
    task->input = f.fed[0]->name;
    task->output = f.out->name;
    return ULC_OK;
}

static ulc_status train_files(const ulc_train_job *j, ulc_fileset *fs, ulc_ctx *ctx) {
    ulc_train_opts o = j->opts;
    ulc_pipeline *pb = NULL, *pa = NULL;
    ulc_model *m = NULL, *tm = NULL;
    teacher tch = {0};
    ulc_data data = {0};
    const ulc_dataset *dp = &data.d;
    ulc_train_task task = j->task;
    ulc_tokenizer *tk = NULL;
    ulc_train_graph tg = {0};
    ulc_train_stats st = {0};
    float **vals = NULL;
    ulc_status s = ULC_OK;
    ulc_pipeline_opts po = {0};
    if ((s = ulc_methods_register(ctx)) != ULC_OK) goto done; /* a method pass says what it needs */
    if ((j->before && (s = ulc_pipeline_parse(j->before, &pb, ctx)) != ULC_OK) ||
        (j->after && (s = ulc_pipeline_parse(j->after, &pa, ctx)) != ULC_OK))
        goto done;
    if (j->adapter_dir && (s = ulc_peft_export_check_dir(j->adapter_dir, ctx)) != ULC_OK) goto done;
    ulc_fileset_tag(fs, "input model", 1);
    if ((s = ulc_io_load_model(j->in, NULL, &m, ctx)) != ULC_OK) goto done;
    ulc_fileset_tag(fs, "training data (--data)", 0);
    if (ulc_text_format_of(j->data) != ULC_TEXT_NONE)
        s = load_text(j, m, &task, &tk, &data, ctx);
    else if (j->tokenizer || j->max_length || j->overflow || j->stride)
        s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "train: --tokenizer, --max-length, --overflow and "
                     "--stride are for text data (.jsonl, .txt), and --data is '%s'", j->data);
    else s = ulc_data_open("--data", j->data, &data, ctx);
    if (s != ULC_OK) goto done;
    ulc_fileset_tag(fs, "teacher model (--teacher)", 0);
    if (j->teacher && (s = ulc_fileset_add_path(fs, NULL, j->teacher, ctx)) != ULC_OK) goto done;
    if ((s = check_outputs(j, fs, ctx)) != ULC_OK) goto done;
    if (pb && (s = ulc_pipeline_run(pb, m, &po, ctx)) != ULC_OK) goto done;
    if (j->params && ulc_mark_params(m, j->params) == 0) {
        s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "train: --params '%s' matches no float32, float16 or bfloat16 weight",
                     j->params);
        goto done;
    }
    if ((s = ulc_train_graph_build(m, dp, &task, o.batch_size, &tg, ctx)) != ULC_OK) goto done;
    if ((s = ulc_train_graph_params(m, &tg, &vals, ctx)) != ULC_OK) goto done;
    if (task.loss == ULC_LOSS_KL) {
        ulc_session_opts so = ulc_session_defaults();
        so.threads = o.threads;
        if ((s = ulc_io_load_model(j->teacher ? j->teacher : j->in, NULL, &tm, ctx)) != ULC_OK ||
            (s = ulc_session_create(tm, &so, &tch.s, ctx)) != ULC_OK)
            goto done;
        tch.m = tm;
        tch.tg = &tg;
        tch.output = task.output ? task.output
                                 : ((const ulc_value *)tm->graph->outputs.items[0])->name;
        o.before_step = teacher_step;
        o.hook_arg = &tch;
    } else if (j->teacher) {
        s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "train: --teacher needs --loss distill");
        goto done;
    }
    if (j->phase) j->phase(j->phase_arg, "train", 1);
    s = ulc_train_run(&tg, dp, &o, vals, &st, ctx);
    if (j->phase) j->phase(j->phase_arg, "train", 0);
    if (s != ULC_OK) goto done;
    if (!o.quiet)
        fprintf(o.progress ? o.progress : stderr, "train: %ld steps, loss %.4f -> %.4f, %.1f s (%.0f samples/s)\n", st.steps,
                st.first_loss, st.last_loss, st.seconds, st.samples_per_s);
    if ((s = ulc_train_graph_write_back(m, &tg, vals, ctx)) != ULC_OK) goto done;
    if (pa && (s = ulc_pipeline_run(pa, m, &po, ctx)) != ULC_OK) goto done;
    if (j->losses && (s = write_losses(j->losses, &st, ctx)) != ULC_OK) goto done;
    /* the adapter first (checked whole before anything is written), taken back if the model
     * cannot be written */
    if (j->adapter_dir && (s = ulc_peft_export(m, j->adapter_dir, NULL, ctx)) != ULC_OK) goto done;
    ulc_io_format ofmt;
    if (ulc_io_output_format(j->out, &ofmt, NULL) != ULC_OK) ofmt = ULC_IO_DIR; /* a new directory */
    if ((s = ulc_io_save_model(m, j->out, ofmt, NULL, ctx)) != ULC_OK && j->adapter_dir)
        ulc_peft_export_remove(j->adapter_dir);
    if (s == ULC_OK && ofmt == ULC_IO_DIR) s = ulc_io_copy_side_files(j->in, j->out, ctx);
done:
    ulc_train_graph_free_params(&tg, vals);
    ulc_train_graph_clear(&tg);
    ulc_train_stats_clear(&st);
    ulc_data_clear(&data);
    ulc_tokenizer_free(tk);
    ulc_session_free(tch.s);
    free(tch.probs);
    ulc_model_free(tm);
    ulc_model_free(m);
    ulc_pipeline_free(pb);
    ulc_pipeline_free(pa);
    return s;
}

ulc_status ulc_train_files(const ulc_train_job *j, ulc_ctx *ctx) {
    ulc_fileset fs;
    ulc_fileset_begin(&fs, 0, ctx);
    return ulc_fileset_end(&fs, train_files(j, &fs, ctx), ctx);
}
