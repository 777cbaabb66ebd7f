/* clip_eval.c — knowledge-tracing unlearning's metrics on CLIP zero-shot models (clip_eval.h). */
#include "eval/clip_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Per-row argmax of each output over a pass of the rows. */
typedef struct pass_acc {
    const char *out[3];   /* fine, coarse, captions (NULL: skip) */
    const uint8_t *cand;  /* captions: the candidate columns (the retained rows' captions) */
    int64_t *pred[3];     /* [rows] */
    const char *name, *file;
} pass_acc;

static int64_t argmax(const float *z, int64_t K, const uint8_t *cand) {
    int64_t best = -1;
    for (int64_t k = 0; k < K; k++)
        if ((!cand || cand[k]) && (best < 0 || z[k] > z[best])) best = k;
    return best;
}

static ulc_status on_batch(void *arg, ulc_session *s, int64_t r0, int64_t rn, ulc_ctx *ctx) {
    pass_acc *p = arg;
    for (int o = 0; o < 3; o++) {
        if (!p->out[o]) continue;
        const ulc_rt_tensor *z = ulc_session_output(s, p->out[o]);
        if (!z || z->dtype != ULC_DT_F32 || z->rank != 2 || z->dims[0] != rn)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: output '%s' is not float32 [rows, classes] "
                            "on %s", p->name, p->out[o], p->file);
        int64_t K = z->dims[1];
        for (int64_t i = 0; i < rn; i++)
            p->pred[o][r0 + i] = argmax((const float *)z->data + i * K, K, o == 2 ? p->cand : NULL);
    }
    return ULC_OK;
}

static ulc_status predict(ulc_session *s, const ulc_data *d, const char *input, pass_acc *p,
                          ulc_ctx *ctx) {
    ulc_rows r = {.names = {input}, .cols = {d->cols[0]}, .n_feeds = 1, .file = d->path,
                  .n = d->rows};
    p->file = d->path;
    for (int o = 0; o < 3; o++)
        if (p->out[o] && !(p->pred[o] = malloc((size_t)(d->rows + 1) * sizeof(int64_t))))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    return ulc_rows_run(s, &r, on_batch, p, NULL, ctx);
}

static void pass_free(pass_acc *p) {
    for (int o = 0; o < 3; o++) free(p->pred[o]);
}

static double ratio(int64_t hit, int64_t n) { return n ? (double)hit / (double)n : -1; }

/* The session's main input: the model's one fed input. */
static const char *main_input(const ulc_model *m) {
    const ulc_graph *g = m->graph;
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        if (!(v->flags & ULC_VALUE_INITIALIZER)) return v->name;
    }
    return NULL;
}

static ulc_status test_accuracies(ulc_session *s, const char *in, const char *name,
                                  const ulc_clip_task *t, ulc_clip_acc *a, ulc_ctx *ctx) {
    const ulc_data *d = t->test;
    int64_t n = d->rows, nc = 0;
    uint8_t *cand = NULL;
    if (t->captions) { /* the candidates: the captions of the retained rows */
        for (int64_t i = 0; i < t->n_caption_rows; i++) nc = t->caption_of[i] + 1 > nc ? t->caption_of[i] + 1 : nc;
        if (!(cand = calloc((size_t)nc + 1, 1))) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    uint8_t *gone = malloc((size_t)n + 1);
    if (!gone) {
        free(cand);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t y = ulc_data_label(d, i);
        gone[i] = 0;
        for (int j = 0; j < t->n_forget; j++) gone[i] |= t->forget[j] == y;
        if (cand && !gone[i]) cand[t->caption_of[i]] = 1;
    }
    pass_acc p = {.out = {t->fine, t->coarse_of ? t->coarse : NULL, t->captions}, .cand = cand,
                  .name = name};
    ulc_status st = predict(s, d, in, &p, ctx);
    int64_t hit[5] = {0}, cnt[5] = {0}; /* df fine, dr fine, df coarse, dr coarse, r1 */
    for (int64_t i = 0; st == ULC_OK && i < n; i++) {
        int64_t y = ulc_data_label(d, i);
        if (y < 0 || y >= t->n_fine) continue;
        int k = gone[i] ? 0 : 1;
        cnt[k]++, hit[k] += p.pred[0][i] == y;
        if (p.pred[1]) cnt[k + 2]++, hit[k + 2] += p.pred[1][i] == t->coarse_of[y];
        if (p.pred[2] && !gone[i]) cnt[4]++, hit[4] += p.pred[2][i] == t->caption_of[i];
    }
    a->df_fine = ratio(hit[0], cnt[0]);
    a->dr_fine = ratio(hit[1], cnt[1]);
    a->df_coarse = ratio(hit[2], cnt[2]);
    a->dr_coarse = ratio(hit[3], cnt[3]);
    a->r1 = ratio(hit[4], cnt[4]);
    pass_free(&p);
    free(gone);
    free(cand);
    return st;
}

static ulc_status heldout_accuracy(ulc_session *s, const char *in, const char *name,
                                   const ulc_clip_task *t, double *acc, ulc_ctx *ctx) {
    const ulc_data *d = t->heldout_data;
    pass_acc p = {.out = {t->heldout}, .name = name};
    ulc_status st = predict(s, d, in, &p, ctx);
    int64_t hit = 0;
    for (int64_t i = 0; st == ULC_OK && i < d->rows; i++) hit += p.pred[0][i] == ulc_data_label(d, i);
    *acc = ratio(hit, d->rows);
    pass_free(&p);
    return st;
}

ulc_status ulc_clip_accuracies(const ulc_model *m, const char *name, const ulc_clip_task *t,
                               ulc_clip_acc *out, ulc_ctx *ctx) {
    *out = (ulc_clip_acc){-1, -1, -1, -1, -1, -1};
    const char *in = main_input(m);
    if (!in || !t->test || !t->test->label || !t->fine)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: CLIP metrics need labelled images and the "
                        "zero-shot model's image input", name);
    if (t->captions && t->n_caption_rows != t->test->rows)
        return ulc_fail(ctx, ULC_ERR_INVALID, "clip.captions: %lld captions for the %lld rows of "
                        "%s (one caption per row, in row order)", (long long)t->n_caption_rows,
                        (long long)t->test->rows, t->test->path);
    ulc_session_opts so = ulc_session_defaults();
    so.threads = t->threads;
    ulc_session *s = NULL;
    ulc_status st = ulc_session_create(m, &so, &s, ctx);
    if (st == ULC_OK) st = test_accuracies(s, in, name, t, out, ctx);
    if (st == ULC_OK && t->heldout_data && t->heldout)
        st = heldout_accuracy(s, in, name, t, &out->heldout, ctx);
    ulc_session_free(s);
    return st;
}

static void add_num(cJSON *o, const char *k, double v) {
    if (isnan(v) || v < -0.5) cJSON_AddNullToObject(o, k);
    else cJSON_AddNumberToObject(o, k, v);
}

static cJSON *acc_json(const ulc_clip_acc *a) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    add_num(o, "df_fine", a->df_fine);
    add_num(o, "dr_fine", a->dr_fine);
    add_num(o, "df_coarse", a->df_coarse);
    add_num(o, "dr_coarse", a->dr_coarse);
    add_num(o, "heldout", a->heldout);
    add_num(o, "retrieval_r1", a->r1);
    return o;
}

cJSON *ulc_clip_json(const ulc_clip_acc *before, const ulc_clip_acc *after) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (before) cJSON_AddItemToObject(o, "before", acc_json(before));
    cJSON_AddItemToObject(o, "after", acc_json(after));
    if (before) {
        ulc_clip_qu q = ulc_clip_qu_of(before, after);
        cJSON *ab = cJSON_AddObjectToObject(o, "a_bar");
        if (ab) {
            add_num(ab, "df_fine", q.a_df_fine);
            add_num(ab, "dr_fine", q.a_dr_fine);
            add_num(ab, "dr_coarse", q.a_dr_coarse);
            add_num(ab, "df_coarse", q.a_df_coarse);
        }
        add_num(o, "Q", q.q);
        add_num(o, "U", q.u);
        add_num(o, "QU", q.qu);
    }
    return o;
}

void ulc_clip_print(FILE *out, const cJSON *clip) {
    static const char *const keys[] = {"df_fine", "dr_fine", "df_coarse", "dr_coarse", "heldout",
                                       "retrieval_r1"};
    static const char *const what[] = {"Df fine (forgotten concepts)", "Dr fine (kept concepts)",
                                       "Df coarse (their parents)", "Dr coarse",
                                       "zero-shot, held-out data", "retrieval R@1, kept captions"};
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(clip, "before");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(clip, "after");
    fprintf(out, "CLIP zero-shot (test rows)              before     after\n");
    for (int k = 0; k < 6; k++) {
        const cJSON *bv = cJSON_GetObjectItemCaseSensitive(b, keys[k]);
        const cJSON *av = cJSON_GetObjectItemCaseSensitive(a, keys[k]);
        if (!cJSON_IsNumber(av)) continue;
        fprintf(out, "  %-34s", what[k]);
        if (cJSON_IsNumber(bv)) fprintf(out, " %7.2f%%", 100 * bv->valuedouble);
        else fprintf(out, " %8s", "-");
        fprintf(out, "  %7.2f%%\n", 100 * av->valuedouble);
    }
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(clip, "Q");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(clip, "U");
    const cJSON *qu = cJSON_GetObjectItemCaseSensitive(clip, "QU");
    if (cJSON_IsNumber(q) && cJSON_IsNumber(u))
        fprintf(out, "  forgetting Q %.2f, utility U %.2f, Q-U %.2f\n", 100 * q->valuedouble,
                100 * u->valuedouble, cJSON_IsNumber(qu) ? 100 * qu->valuedouble : NAN);
}
