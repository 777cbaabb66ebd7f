/*
 * megu.c — MeGU, Machine-Guided Unlearning (Wang, Huang et al.; shared/methods/
 * megu-clip-and-more.md): every forget row is relabelled to a class the model finds similar to
 * what it saw, moved by a mixed noise, and the model is finetuned on those rows with a sample of
 * the retain rows.
 *
 *   1. S, a K×K class similarity (entries >= 0): the user's (megu.similarity, a JSON list of K
 *      lists of K numbers), else the model's own: S[k][l] = the mean over the training rows of
 *      class k of the frozen original's softmax(f(x))[l] (a class with no training row: S[k] =
 *      the unit row e_k); on a CLIP request without a file, the cosines of CLIP's class text
 *      embeddings, clipped at 0 (jobs/clip.h ulc_clip_class_similarity).
 *   2. T = S column-normalised: T[l][k] = S[k][l] / Σ_j S[k][j] (a zero row of S: T[·][k] = 0).
 *   3. Per forget row (label y, p = softmax(f(x)) of the original, p[y] = 0): R = T·p and the
 *      perturbing label y^p = the class with the r-th largest R, r = ⌊K·τ⌋ counted from 1 (the
 *      paper's "⌊Kτ⌋-th largest"; τ 0.3 and K 10 give the 3rd), among the classes that are
 *      neither the row's own label nor a forget class (ties: the lower class first; r clamps to
 *      [1, eligible classes]).
 *   4. Noise, the original frozen: per perturbing class c a positive noise minimising
 *      CE(f(N), c) + λ·mean(N²), per forget label y a negative noise minimising
 *      −CE(f(N), y) + λ·mean(N²); N is shaped like one input row and fed alone, starts from a
 *      seeded N(0, 1) draw (below) and takes `noise_steps` Adam steps of `noise_lr`. The forget
 *      row i gets N_i = α·N⁺(y^p_i) + (1−α)·N⁻(y_i).
 *   5. Finetune (the marked weights: all, all_but_classifier or LoRA) with cross-entropy on
 *      {(x_i + N_i, y^p_i)} for the forget rows and up to `retain_rows` retain rows (all when
 *      fewer; else a seeded choice), kept in file order.
 *
 * Gradients with respect to the input come from the trainer itself: the noise graph is a
 * shallow clone of the original in which every weight is frozen, one initializer
 * "ulc.megu.noise" [1, ...] flagged ULC_VALUE_PARAM is added to the main input (Add(x, N) takes
 * over every use of x), and the input is fed a zero row. The training graph then makes N its
 * only parameter; its loss is sign·CE(f(N), label) + λ·ReduceMean(N²) with the label and the
 * sign (+1 positive, −1 negative) as one-row data columns. The graph is built once and the loop
 * runs once per noise (one row, batch 1, `noise_steps` epochs, no shuffle) on the noise's own
 * buffer, so each noise gets exactly Adam's trajectory on its own loss.
 *
 * The seeded draw: noise j (positive noises first, by class, then negative ones, by class) uses
 * splitmix64 (unlearn_internal.h) from the state seed ^ 0x4D656755 ^ (j << 32) ^ (kind << 48)
 * (kind 0 positive, 1 negative; class c in j), each element from two draws u1 = ((a >> 11) +
 * 1) / 2^53, u2 = (b >> 11) / 2^53 as sqrt(−2 ln u1)·cos(2π u2). tests/e2e/test_megu.py
 * replays it.
 */
#include "methods/unlearn_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/file.h"
#include "common/json.h"
#include "ir/builder.h"
#include "ir/clone.h"
#include "runtime/runtime.h"
#include "train/loss.h"
#include "train/train_graph.h"

#define NOISE "ulc.megu.noise"
#define COL_LABEL "ulc.megu.label"
#define COL_SIGN "ulc.megu.sign"

#define NN(e)                                                                                  \
    do {                                                                                       \
        if (!(e)) return ctx->status ? ctx->status : ULC_ERR_NOMEM;                            \
    } while (0)

/* ---- the similarity file ---------------------------------------------------------------------- */

ulc_status ulc_megu_similarity_load(const char *path, int64_t want_k, double **out, int64_t *k_out,
                                    ulc_ctx *ctx) {
    *out = NULL;
    ulc_mapping *m = NULL;
    ULC_TRY(ulc_mapping_open(path, "megu similarity file", &m, ctx));
    cJSON *j = NULL; /* ulc_json_parse reads a length: the mapping as it is */
    ulc_status s = m->size ? ulc_json_parse((const char *)m->data, m->size, 0, &j, ctx)
                           : ulc_fail(ctx, ULC_ERR_PARSE, "the file is empty");
    ulc_mapping_unref(m);
    if (s != ULC_OK) return ulc_fail(ctx, ULC_ERR_INVALID, "%s", path);
    int64_t K = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : 0;
    double *S = K > 0 ? malloc((size_t)(K * K) * sizeof *S) : NULL;
    if (!cJSON_IsArray(j) || K < 2)
        s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: the similarity must be a list of K lists of K "
                     "numbers, K >= 2 (got %s)", path,
                     cJSON_IsArray(j) ? "fewer than 2 rows" : ulc_json_what(j));
    else if (!S)
        s = ulc_fail(ctx, ULC_ERR_NOMEM, "%s: out of memory", path);
    int64_t r = 0;
    for (const cJSON *row = j ? j->child : NULL; s == ULC_OK && row; row = row->next, r++) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != K) {
            s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: row %lld: expected a list of %lld numbers "
                         "(the matrix must be square), got %s", path, (long long)r,
                         (long long)K, cJSON_IsArray(row) ? "a list of another length"
                                                          : ulc_json_what(row));
            break;
        }
        int64_t c = 0;
        for (const cJSON *e = row->child; e; e = e->next, c++) {
            double v = cJSON_IsNumber(e) ? e->valuedouble : NAN;
            if (!cJSON_IsNumber(e) || !isfinite(v) || v < 0) {
                s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: row %lld, column %lld: expected a finite "
                             "number >= 0, got %s", path, (long long)r, (long long)c,
                             cJSON_IsNumber(e) ? "a negative number" : ulc_json_what(e));
                break;
            }
            S[r * K + c] = v;
        }
    }
    cJSON_Delete(j);
    if (s == ULC_OK && want_k > 0 && K != want_k)
        s = ulc_fail(ctx, ULC_ERR_INVALID, "%s: the similarity is %lld x %lld but the model has "
                     "%lld classes", path, (long long)K, (long long)K, (long long)want_k);
    if (s != ULC_OK) {
        free(S);
        return s;
    }
    *out = S;
    if (k_out) *k_out = K;
    return ULC_OK;
}

/* ---- what the method works out --------------------------------------------------------------- */

/* The rows finetuning reads. */
typedef struct megu_counts {
    int64_t forget, retain;
} megu_counts;

typedef struct megu_state {
    const ulc_unlearn_call *c;
    int64_t K, n, nf;       /* classes, training rows, forget rows */
    const int64_t *y;       /* the labels [n] */
    float *prob;            /* the original's softmax [n or nf, K] (see rows_all) */
    int rows_all;           /* prob holds every row (else the forget rows, in order) */
    double *S;              /* [K, K] */
    int64_t *yp;            /* the perturbing label of each forget row, in order [nf] */
    int rank;               /* ⌊Kτ⌋, clamped to >= 1 */
    size_t numel;           /* elements of one input row */
    float **pos, **neg;     /* [K] noises by class (NULL: not needed) */
    cJSON *noise_log;       /* per noise: class, kind, losses, mean square */
} megu_state;

static void state_free(megu_state *st) {
    free(st->prob);
    free(st->S);
    free(st->yp);
    for (int64_t k = 0; k < st->K; k++) {
        if (st->pos) free(st->pos[k]);
        if (st->neg) free(st->neg[k]);
    }
    free(st->pos);
    free(st->neg);
    cJSON_Delete(st->noise_log);
}

/* The original's softmax on every training row (or only the forget rows), in double. */
static ulc_status probabilities(megu_state *st, int all, ulc_ctx *ctx) {
    const ulc_unlearn_call *c = st->c;
    uint8_t *flags = NULL;
    if (all && !(flags = malloc((size_t)st->n + 1))) return ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
    if (all) memset(flags, 1, (size_t)st->n);
    float *z = NULL;
    int64_t rows = 0, C = 0;
    ulc_status s = ulc_teacher_logits(c->teacher, c->data, all ? flags : c->forget, c->u->input,
                                      c->u->output, c->o->threads, &z, &rows, &C, ctx);
    free(flags);
    ULC_TRY(s);
    if (C != st->K) {
        free(z);
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "megu: the model's output has %lld classes, "
                        "not %lld", (long long)C, (long long)st->K);
    }
    for (int64_t i = 0; i < rows; i++) {
        float *q = z + i * C;
        double mx = -INFINITY, sum = 0;
        for (int64_t k = 0; k < C; k++) mx = fmax(mx, q[k]);
        for (int64_t k = 0; k < C; k++) sum += exp((double)q[k] - mx);
        for (int64_t k = 0; k < C; k++) q[k] = (float)(exp((double)q[k] - mx) / sum);
    }
    st->prob = z;
    st->rows_all = all;
    return ULC_OK;
}

/* S from the model: per class, the mean softmax of its training rows. */
static ulc_status similarity_of_model(megu_state *st, ulc_ctx *ctx) {
    int64_t K = st->K;
    double *S = calloc((size_t)(K * K), sizeof *S);
    int64_t *cnt = calloc((size_t)K, sizeof *cnt);
    if (!S || !cnt) {
        free(S), free(cnt);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
    }
    for (int64_t i = 0; i < st->n; i++) {
        cnt[st->y[i]]++;
        for (int64_t l = 0; l < K; l++) S[st->y[i] * K + l] += st->prob[i * K + l];
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t l = 0; l < K; l++)
            S[k * K + l] = cnt[k] ? S[k * K + l] / (double)cnt[k] : (double)(k == l);
    free(cnt);
    st->S = S;
    return ULC_OK;
}

static int is_forget_class(const ulc_unlearn_opts *u, int64_t k) {
    for (int j = 0; j < u->n_forget_classes; j++)
        if (u->forget_classes[j] == k) return 1;
    return 0;
}

/* The perturbing label of every forget row (step 3 of the file comment). */
static ulc_status perturbing_labels(megu_state *st, ulc_ctx *ctx) {
    const ulc_unlearn_call *c = st->c;
    int64_t K = st->K;
    double *T = calloc((size_t)(K * K), sizeof *T), *R = calloc((size_t)K, sizeof *R);
    int64_t *order = calloc((size_t)K, sizeof *order);
    if (!(st->yp = calloc((size_t)st->nf + 1, sizeof *st->yp)) || !T || !R || !order) {
        free(T), free(R), free(order);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
    }
    for (int64_t k = 0; k < K; k++) {
        double rs = 0;
        for (int64_t j = 0; j < K; j++) rs += st->S[k * K + j];
        for (int64_t l = 0; l < K; l++) T[l * K + k] = rs > 0 ? st->S[k * K + l] / rs : 0;
    }
    int64_t f = 0;
    ulc_status s = ULC_OK;
    for (int64_t i = 0; i < st->n; i++) {
        if (!c->forget[i]) continue;
        const float *p = st->prob + (st->rows_all ? i : f) * K;
        int64_t y = st->y[i], m = 0;
        for (int64_t l = 0; l < K; l++) {
            R[l] = 0;
            for (int64_t k = 0; k < K; k++)
                if (k != y) R[l] += T[l * K + k] * (double)p[k];
            if (l != y && !is_forget_class(c->u, l)) order[m++] = l;
        }
        if (!m) {
            s = ulc_fail(ctx, ULC_ERR_INVALID_ARG, "megu: every class is forgotten: no class is "
                         "left to relabel forget rows to");
            break;
        }
        /* insertion sort of the eligible classes by R, descending; ties keep the lower class */
        for (int64_t a = 1; a < m; a++)
            for (int64_t b = a; b > 0 && R[order[b]] > R[order[b - 1]]; b--) {
                int64_t t = order[b];
                order[b] = order[b - 1], order[b - 1] = t;
            }
        st->yp[f++] = order[(st->rank < m ? st->rank : m) - 1];
    }
    free(T), free(R), free(order);
    return s;
}

/* ---- the noises ------------------------------------------------------------------------------- */

/* The model's main input: u->input, else its first fed (non-initializer) input. */
static ulc_value *main_input(ulc_graph *g, const char *name) {
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (v->flags & ULC_VALUE_INITIALIZER) continue;
        if (!name || strcmp(v->name, name) == 0) return v;
    }
    return NULL;
}

/* The noise graph: a clone of the original with every weight frozen and Add(x, N) in place of
 * the main input x, N the one parameter [1, row dims]. */
static ulc_status noise_model(const ulc_unlearn_call *c, const ulc_tensor *xcol, ulc_model **out,
                              ulc_ctx *ctx) {
    ULC_TRY(ulc_model_clone_shallow(c->teacher, out, ctx));
    ulc_graph *g = (*out)->graph;
    for (size_t i = 0; i < g->inits.len; i++)
        ((ulc_value *)g->inits.items[i])->flags &= ~(uint32_t)ULC_VALUE_PARAM;
    ulc_value *x = main_input(g, c->u->input);
    if (!x) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "megu: the model has no input to add noise to");
    int64_t dims[ULC_DATASET_MAX_RANK] = {1};
    size_t numel = 1;
    for (int d = 1; d < xcol->rank; d++) dims[d] = xcol->dims[d], numel *= (size_t)xcol->dims[d];
    ulc_gb gb, *b = &gb;
    ulc_gb_init(b, g, ulc_model_opset(*out, ""), ULC_GB_NAMES_DERIVED, ctx);
    ulc_value *n = ulc_graph_add_value(g, NOISE, ctx);
    NN(n);
    float *zero = calloc(numel, sizeof *zero); /* ulc_gb_set_init takes it over */
    if (!zero) return ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
    NN(ulc_gb_set_init(b, n, ULC_DT_F32, xcol->rank, dims, zero, numel * sizeof *zero));
    n->flags |= ULC_VALUE_PARAM;
    ulc_value *xn = ulc_gb_op2(b, "Add", x, n);
    NN(xn);
    /* every other reader of x reads x + N */
    int uses = ulc_value_num_uses(x);
    ulc_use **list = malloc((size_t)uses * sizeof *list + 1);
    if (!list) return ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
    int k = 0;
    for (ulc_use *u = x->first_use; u; u = u->next)
        if (u->node != xn->producer) list[k++] = u;
    for (int i = 0; i < k; i++) ulc_node_set_input(list[i]->node, list[i]->slot, xn);
    free(list);
    return ulc_graph_toposort(g, ctx);
}

typedef struct noise_arg {
    double lambda;
} noise_arg;

/* sign·CE(f(x + N), label) + λ·mean(N²); label and sign are one-row columns. */
static ulc_status noise_loss(void *arg, ulc_tg *t, ulc_value **loss, ulc_ctx *ctx) {
    const noise_arg *na = arg;
    ulc_gb gb, *b = &gb;
    ulc_gb_init(b, t->g, t->opset, ULC_GB_NAMES_DERIVED, ctx);
    ulc_rt_tensor zt;
    if (!ulc_analysis_get(t->shapes, t->output, &zt) || zt.rank != 2)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "megu: output '%s' is not [batch, classes] "
                        "logits", t->output->name);
    int64_t one = 1;
    ulc_value *label = ulc_tg_input(t, COL_LABEL, ULC_DT_I64, 1, &one, COL_LABEL, ctx);
    ulc_value *sign = ulc_tg_input(t, COL_SIGN, ULC_DT_F32, 1, &one, COL_SIGN, ctx);
    ulc_value *noise = ulc_graph_get_value(t->g, NOISE);
    NN(label && sign && noise);
    ulc_value *ce = NULL;
    ULC_TRY(ulc_loss_build(t->g, t->opset, ULC_LOSS_CROSS_ENTROPY, t->output, 2, zt.dims[1], label,
                           NULL, "ulc.megu.ce", &ce, ctx));
    ulc_value *sg = ulc_gb_op1(b, "ReduceSum", sign);
    if (sg) ulc_gb_attr_int(b, sg, "keepdims", 0);
    ulc_value *sq = ulc_gb_op1(b, "ReduceMean", ulc_gb_op2(b, "Mul", noise, noise));
    if (sq) ulc_gb_attr_int(b, sq, "keepdims", 0);
    ulc_value *total = ulc_gb_op2(b, "Add", ulc_gb_op2(b, "Mul", ce, sg),
                                  ulc_gb_op2(b, "Mul", sq, ulc_gb_scalar_f32(b, (float)na->lambda)));
    NN(total);
    NN(*loss = ulc_gb_named(b, total, "ulc.megu.noise_loss"));
    return ULC_OK;
}

/* The seeded N(0, 1) start of noise j of kind (0 positive, 1 negative). */
static void noise_init(float *v, size_t n, uint64_t seed, int64_t j, int kind) {
    uint64_t s = seed ^ 0x4D656755ull ^ ((uint64_t)j << 32) ^ ((uint64_t)kind << 48);
    for (size_t i = 0; i < n; i++) v[i] = (float)ulc_unlearn_gauss(&s);
}

/* The one-row dataset the noise graph trains on. */
typedef struct noise_data {
    ulc_tensor t[3];
    int64_t dims[3][ULC_DATASET_MAX_RANK];
    const char *names[3];
    const ulc_tensor *cols[3];
    float *x, sign;
    int64_t label;
    ulc_dataset d;
} noise_data;

static ulc_status noise_data_make(noise_data *nd, const char *xname, const ulc_tensor *xcol,
                                  size_t numel, ulc_ctx *ctx) {
    if (!(nd->x = calloc(numel, sizeof *nd->x))) return ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
    const char *names[3] = {xname, COL_LABEL, COL_SIGN};
    void *data[3] = {nd->x, &nd->label, &nd->sign};
    int dt[3] = {ULC_DT_F32, ULC_DT_I64, ULC_DT_F32};
    for (int i = 0; i < 3; i++) {
        ulc_tensor *t = &nd->t[i];
        nd->dims[i][0] = 1;
        t->rank = i ? 1 : xcol->rank;
        for (int d = 1; d < t->rank; d++) nd->dims[i][d] = xcol->dims[d];
        t->name = names[i];
        t->dtype = dt[i];
        t->dims = nd->dims[i];
        t->numel = i ? 1 : numel;
        t->storage = ULC_STORAGE_OWNED;
        t->data = data[i];
        t->nbytes = (size_t)t->numel * (i == 1 ? sizeof(int64_t) : sizeof(float));
        nd->names[i] = names[i];
        nd->cols[i] = t;
    }
    nd->d = (ulc_dataset){.n_cols = 3, .names = nd->names, .cols = nd->cols, .n_rows = 1,
                          .path = "megu noise"};
    return ULC_OK;
}

/* Optimises noise j (class k, kind) in place from its seeded start; logs its losses. */
static ulc_status one_noise(megu_state *st, const ulc_train_graph *tg, noise_data *nd,
                            float **vals, int64_t j, int64_t k, int kind, ulc_ctx *ctx) {
    const ulc_unlearn_opts *u = st->c->u;
    ulc_train_opts o = *st->c->o;
    o.optim = ulc_optim_defaults(ULC_OPTIM_ADAMW);
    o.optim.lr = u->megu_noise_lr;
    o.optim.weight_decay = 0; /* Adam */
    o.epochs = u->megu_noise_steps;
    o.batch_size = 1;
    o.max_steps = 0;
    o.shuffle = 0;
    o.drop_last = 0;
    o.quiet = 1;
    o.label = "megu noise";
    o.before_step = NULL;
    o.after_step = NULL;
    o.on_grads = NULL;
    nd->label = k;
    nd->sign = kind ? -1.0f : 1.0f;
    noise_init(vals[0], st->numel, st->c->o->seed, j, kind);
    ulc_train_stats ph = {0};
    ulc_status s = ulc_train_run(tg, &nd->d, &o, vals, &ph, ctx);
    if (s == ULC_OK) {
        double ms = 0;
        for (size_t i = 0; i < st->numel; i++) ms += (double)vals[0][i] * vals[0][i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "class", (double)k);
        cJSON_AddStringToObject(e, "kind", kind ? "negative" : "positive");
        cJSON *curve = cJSON_AddArrayToObject(e, "loss");
        for (long i = 0; i < ph.steps; i++)
            cJSON_AddItemToArray(curve, cJSON_CreateNumber(ph.loss_curve[i]));
        cJSON_AddNumberToObject(e, "mean_square", ms / (double)st->numel);
        cJSON_AddItemToArray(st->noise_log, e);
        float **dst = kind ? st->neg : st->pos;
        if (!(dst[k] = malloc(st->numel * sizeof **dst)))
            s = ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
        else
            memcpy(dst[k], vals[0], st->numel * sizeof **dst);
    }
    ulc_train_stats_clear(&ph);
    return s;
}

/* Every noise the forget rows need: positive for their perturbing labels, negative for their
 * own labels. */
static ulc_status noises(megu_state *st, const char *xname, const ulc_tensor *xcol, ulc_ctx *ctx) {
    const ulc_unlearn_call *c = st->c;
    int64_t K = st->K;
    uint8_t *want = calloc((size_t)(2 * K), 1);
    st->pos = calloc((size_t)K, sizeof *st->pos);
    st->neg = calloc((size_t)K, sizeof *st->neg);
    st->noise_log = cJSON_CreateArray();
    if (!want || !st->pos || !st->neg || !st->noise_log) {
        free(want);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
    }
    for (int64_t i = 0, f = 0; i < st->n; i++)
        if (c->forget[i]) want[st->yp[f++]] = 1, want[K + st->y[i]] = 1;
    ulc_model *nm = NULL;
    noise_data nd = {0};
    noise_arg na = {.lambda = c->u->megu_noise_lambda};
    ulc_train_task task = {.input = c->u->input, .output = c->u->output,
                           .custom_loss = noise_loss, .custom_arg = &na};
    ulc_train_graph tg = {0};
    float **vals = NULL;
    ulc_status s = noise_model(c, xcol, &nm, ctx);
    if (s == ULC_OK) s = noise_data_make(&nd, xname, xcol, st->numel, ctx);
    if (s == ULC_OK) s = ulc_train_graph_build(nm, &nd.d, &task, 1, &tg, ctx);
    if (s == ULC_OK) s = ulc_train_graph_params(nm, &tg, &vals, ctx);
    for (int64_t j = 0, done = 0; s == ULC_OK && j < 2 * K; j++)
        if (want[j]) s = one_noise(st, &tg, &nd, vals, done++, j % K, j >= K, ctx);
    ulc_train_graph_free_params(&tg, vals);
    ulc_train_graph_clear(&tg);
    ulc_model_free(nm);
    free(nd.x);
    free(want);
    return s;
}

/* ---- the finetuning set ----------------------------------------------------------------------- */

/* The forget rows and up to retain_rows retain rows (a seeded choice), in file order. */
static ulc_status pick_rows(const megu_state *st, uint8_t **out, ulc_ctx *ctx) {
    const ulc_unlearn_call *c = st->c;
    int64_t n = st->n, nr = n - st->nf;
    uint8_t *pick = malloc((size_t)n + 1);
    int64_t *ridx = malloc(((size_t)nr + 1) * sizeof *ridx);
    int64_t *perm = malloc(((size_t)nr + 1) * sizeof *perm);
    if (!pick || !ridx || !perm) {
        free(pick), free(ridx), free(perm);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
    }
    for (int64_t i = 0, r = 0; i < n; i++) {
        pick[i] = c->forget[i] != 0;
        if (!c->forget[i]) ridx[r++] = i;
    }
    int64_t keep = c->u->megu_retain_rows < nr ? c->u->megu_retain_rows : nr;
    ulc_train_permutation(c->o->seed ^ 0x4D6567ull, 0, nr, perm);
    for (int64_t a = 0; a < keep; a++) pick[ridx[perm[a]]] = 1;
    free(ridx), free(perm);
    *out = pick;
    return ULC_OK;
}

/* Trains on the picked rows, the forget rows' inputs moved by their mixed noise and relabelled
 * to their perturbing labels. */
static ulc_status finetune(megu_state *st, const char *xcol, megu_counts *mc, ulc_ctx *ctx) {
    const ulc_unlearn_call *c = st->c;
    double a = c->u->megu_alpha;
    uint8_t *pick = NULL;
    ULC_TRY(pick_rows(st, &pick, ctx));
    ulc_row_subset sub = {0};
    ulc_status s = ulc_row_subset_make(c->data, pick, 1, NULL, NULL, 0, &sub, ctx);
    int xc = s == ULC_OK ? ulc_dataset_find(&sub.d, xcol) : -1;
    int lc = s == ULC_OK ? ulc_dataset_find(&sub.d, "label") : -1;
    if (s == ULC_OK && (xc < 0 || lc < 0))
        s = ulc_fail(ctx, ULC_ERR_INTERNAL, "megu: the row subset lost its columns");
    if (s == ULC_OK) {
        float *x = sub.bufs[xc];
        int64_t *lab = sub.bufs[lc];
        for (int64_t i = 0, j = 0, f = 0; i < st->n; i++) {
            if (!pick[i]) continue;
            if (c->forget[i]) {
                const float *np = st->pos[st->yp[f]], *nn = st->neg[st->y[i]];
                float *row = x + (size_t)j * st->numel;
                for (size_t e = 0; e < st->numel; e++)
                    row[e] += (float)(a * np[e] + (1.0 - a) * nn[e]);
                lab[j] = st->yp[f++];
                mc->forget++;
            } else {
                mc->retain++;
            }
            j++;
        }
        s = ulc_unlearn_train(c->model, &sub.d, L_CE, c->o, c->u, c->stats, ctx);
    }
    ulc_row_subset_free(&sub);
    free(pick);
    return s;
}

/* ---- the run ---------------------------------------------------------------------------------- */

/* The report's "megu" object: the similarity, the rank, the perturbing labels' counts, the
 * noises' losses, the rows trained on. */
static cJSON *detail(megu_state *st, const megu_counts *mc) {
    const ulc_unlearn_opts *u = st->c->u;
    int64_t K = st->K;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "similarity_source", u->megu_similarity ? u->megu_similarity
                                                     : u->megu_text_similarity ? "clip-text"
                                                                               : "model");
    cJSON *sm = cJSON_AddArrayToObject(o, "similarity");
    for (int64_t k = 0; k < K; k++)
        cJSON_AddItemToArray(sm, cJSON_CreateDoubleArray(st->S + k * K, (int)K));
    cJSON_AddNumberToObject(o, "rank", st->rank);
    int64_t *cnt = calloc((size_t)K, sizeof *cnt);
    cJSON *pl = cJSON_AddObjectToObject(o, "perturbing_labels");
    for (int64_t f = 0; cnt && f < st->nf; f++) cnt[st->yp[f]]++;
    for (int64_t k = 0; cnt && k < K; k++) {
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)k);
        if (cnt[k]) cJSON_AddNumberToObject(pl, key, (double)cnt[k]);
    }
    free(cnt);
    cJSON_AddItemToObject(o, "noise", st->noise_log);
    st->noise_log = NULL;
    cJSON *rows = cJSON_AddObjectToObject(o, "rows");
    cJSON_AddNumberToObject(rows, "forget", (double)mc->forget);
    cJSON_AddNumberToObject(rows, "retain", (double)mc->retain);
    return o;
}

/* The labels (int64, within the classes) and the main input's column (float32). */
static ulc_status check_data(megu_state *st, const char **xcol, ulc_ctx *ctx) {
    const ulc_unlearn_call *c = st->c;
    const ulc_dataset *d = c->data;
    int lc = ulc_dataset_find(d, "label");
    if (lc < 0 || d->cols[lc]->dtype != ULC_DT_I64)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "megu: %s has no int64 'label' column (each "
                        "row's class)", ulc_dataset_path(d));
    st->y = d->cols[lc]->data;
    for (int64_t i = 0; i < st->n; i++) {
        if (st->y[i] < 0 || st->y[i] >= st->K)
            return ulc_fail(ctx, ULC_ERR_INVALID, "megu: %s: row %lld has label %lld, outside the "
                            "%lld classes", ulc_dataset_path(d), (long long)i,
                            (long long)st->y[i], (long long)st->K);
        st->nf += c->forget[i] != 0;
    }
    if (!st->nf)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "megu: %s has no forget rows",
                        ulc_dataset_path(d));
    const ulc_value *in = main_input(c->teacher->graph, c->u->input);
    int xc = in ? ulc_dataset_find(d, in->name) : -1;
    if (xc < 0) xc = ulc_dataset_find(d, "input");
    if (!in || xc < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "megu: no column of %s feeds the model's input",
                        ulc_dataset_path(d));
    const ulc_tensor *x = d->cols[xc];
    if (x->rank > ULC_DATASET_MAX_RANK)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "megu: the input column '%s' has rank %d (at "
                        "most %d)", d->names[xc], x->rank, ULC_DATASET_MAX_RANK);
    if (x->dtype != ULC_DT_F32 || x->rank < 2)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "megu: the input column '%s' is %s of rank %d: "
                        "the noise is added to float32 rows", d->names[xc],
                        ulc_dtype_name(x->dtype), x->rank);
    st->numel = 1;
    for (int k = 1; k < x->rank; k++) st->numel *= (size_t)x->dims[k];
    *xcol = d->names[xc];
    return ULC_OK;
}

ulc_status ulc_megu_run(const ulc_unlearn_call *c, ulc_ctx *ctx) {
    const ulc_unlearn_opts *u = c->u;
    megu_state st = {.c = c, .n = c->data->n_rows};
    st.K = ulc_unlearn_classes(c->teacher, u->output);
    if (st.K < 2)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "megu: the model's output is not [batch, "
                        "classes] logits with a fixed class count of at least 2");
    /* ⌊Kτ⌋, robust to τ·K landing a rounding below an integer (0.3 · 10 is 3.0000000000000004,
     * but 0.29 · 100 is 28.999999999999996) */
    st.rank = (int)floor((double)st.K * u->megu_tau + 1e-9);
    if (st.rank < 1) st.rank = 1;
    const char *xcol = NULL;
    megu_counts mc = {0};
    ulc_status s = check_data(&st, &xcol, ctx);
    if (s == ULC_OK) s = probabilities(&st, !u->megu_similarity && !u->megu_text_similarity, ctx);
    if (s == ULC_OK && u->megu_similarity)
        s = ulc_megu_similarity_load(u->megu_similarity, st.K, &st.S, NULL, ctx);
    else if (s == ULC_OK && u->megu_text_similarity) { /* a CLIP request's (jobs/clip.h) */
        if (!(st.S = malloc((size_t)(st.K * st.K) * sizeof *st.S)))
            s = ulc_fail(ctx, ULC_ERR_NOMEM, "megu: out of memory");
        else memcpy(st.S, u->megu_text_similarity, (size_t)(st.K * st.K) * sizeof *st.S);
    } else if (s == ULC_OK) {
        s = similarity_of_model(&st, ctx);
    }
    if (s == ULC_OK) s = perturbing_labels(&st, ctx);
    if (s == ULC_OK) s = noises(&st, xcol, c->data->cols[ulc_dataset_find(c->data, xcol)], ctx);
    if (s == ULC_OK) s = finetune(&st, xcol, &mc, ctx);
    if (s == ULC_OK && u->megu_detail) *u->megu_detail = detail(&st, &mc);
    if (s == ULC_OK && !c->o->quiet)
        fprintf(c->o->progress ? c->o->progress : stderr, "megu: %lld forget rows relabelled "
                "(rank %d of %lld classes), %lld retain rows\n", (long long)mc.forget, st.rank,
                (long long)st.K, (long long)mc.retain);
    state_free(&st);
    return s;
}
