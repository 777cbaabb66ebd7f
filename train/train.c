/*
 * train.c — the training loop of train.h: dataset checks, the seeded row order, batches
 * gathered into contiguous buffers, one runtime session over the training graph, the optimizer
 * step after each run, and the progress display.
 *
 * Per step: the rows of the batch are copied out of the dataset's (possibly unaligned, mapped)
 * columns into one buffer per data input, bound with the batch's row count as first dim (a
 * last partial batch gets its own plan; the session keeps the full batch's too); the parameter
 * buffers are bound as they are (the optimizer updates them in place between runs); the loss
 * and gradients are read from the session's outputs, checked finite, and handed to the
 * optimizer.
 */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/fileset.h"
#include "runtime/runtime.h"

/* ---- row order ----------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, bound) without modulo bias (rejects the low 2^64 mod bound draws). */
static uint64_t uniform_below(uint64_t *s, uint64_t bound) {
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = splitmix64(s);
        if (r >= threshold) return r % bound;
    }
}

void ulc_train_permutation(uint64_t seed, long epoch, int64_t n, int64_t *perm) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    /* The stream for (seed, epoch): the seed's first draw, mixed with the epoch. */
    uint64_t s = seed;
    uint64_t state = splitmix64(&s) ^ ((uint64_t)epoch * 0xD1B54A32D192ED03ull);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)uniform_below(&state, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* ---- progress ------------------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct progress {
    FILE *f;           /* NULL: quiet */
    int tty;           /* a redrawn bar; else one line per epoch */
    const char *label;
    int epochs;        /* epochs that will run */
    long total;        /* steps that will run */
    double t0, drawn;  /* start, last redraw */
    double ema;        /* smoothed loss (bias-corrected when shown) */
    double ema_w;      /* 1 - 0.9^k: the weight the EMA has gathered */
    int bar_open;      /* a bar line is on screen, not yet ended by a newline */
} progress;

static void fmt_eta(double s, char *buf, size_t size) {
    if (!(s >= 0.0) || s > 1e8) {
        snprintf(buf, size, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

static void progress_draw(progress *pg, int epoch, long done, double samples, int force) {
    double t = now_s();
    if (!force && t - pg->drawn < 0.1) return;
    pg->drawn = t;
    double el = t - pg->t0;
    char eta[32];
    fmt_eta(done > 0 ? el / (double)done * (double)(pg->total - done) : -1.0, eta, sizeof eta);
    fprintf(pg->f, "\r%s epoch %d/%d step %ld/%ld loss %.4g %.1f samples/s ETA %s\033[K",
            pg->label, epoch + 1, pg->epochs, done, pg->total,
            pg->ema_w > 0 ? pg->ema / pg->ema_w : 0.0, el > 0 ? samples / el : 0.0, eta);
    fflush(pg->f);
    pg->bar_open = 1;
}

static void progress_end(progress *pg) {
    if (pg->f && pg->bar_open) {
        fputc('\n', pg->f);
        fflush(pg->f);
        pg->bar_open = 0;
    }
}

/* ---- the loop ------------------------------------------------------------------------------ */

ulc_train_opts ulc_train_defaults(void) {
    return (ulc_train_opts){.optim = ulc_optim_defaults(ULC_OPTIM_ADAMW), .epochs = 1,
                            .batch_size = 32, .shuffle = 1, .progress = stderr, .label = "train"};
}

/* A data input: the dataset column it reads and its batch buffer. */
typedef struct data_bind {
    const char *input;
    const char *column;
    const ulc_tensor *col;
    size_t row_bytes;
    uint8_t *buf;           /* batch_size rows */
    ulc_rt_tensor t;        /* dims[0] set per batch */
    void *dcol, *dbuf;      /* on a device: the whole column, and a batch gathered from it */
} data_bind;

typedef struct loop {
    const ulc_train_graph *tg;
    const ulc_dataset *ds;
    const ulc_train_opts *o;
    float *const *params;
    data_bind *data;
    ulc_rt_tensor *pt;      /* n_params: the parameters as bound */
    size_t *numel;          /* n_params */
    const float **grads;    /* n_params: this step's gradients */
    float **scratch;        /* n_params: copies of gradients that overlap a parameter */
    float **sam_save;       /* n_params: θ while a SAM step runs at θ + e (sam_rho > 0) */
    int64_t *perm;          /* n_rows */
    ulc_session *sess;
    ulc_optimizer *opt;
    /* a session on a device (setup_device): the parameters, their gradients and the optimizer's
     * moments stay there; the host's params are refreshed when someone reads them */
    int on_dev;
    float **dp, **dm, **dv; /* n_params each, device memory */
    float **dscratch;       /* n_params: gradients copied off a parameter (or uploaded) */
    const float **dgrads;   /* n_params: this step's gradients, device memory */
    unsigned *dflag;        /* device: non-finite gradient elements this step */
    int64_t *didx;          /* device: the rows of this step's batch */
} loop;

static ulc_value *find_input(const ulc_graph *g, const char *name) {
    for (size_t i = 0; i < g->inputs.len; i++) {
        ulc_value *v = g->inputs.items[i];
        if (strcmp(v->name, name) == 0) return v;
    }
    return NULL;
}

static ulc_value *find_output(const ulc_graph *g, const char *name) {
    for (size_t i = 0; i < g->outputs.len; i++) {
        ulc_value *v = g->outputs.items[i];
        if (strcmp(v->name, name) == 0) return v;
    }
    return NULL;
}

/* The parameter inputs: float32 with fully declared shapes; their gradients are outputs. */
static ulc_status setup_params(loop *L, ulc_ctx *ctx) {
    const ulc_train_graph *tg = L->tg;
    const ulc_graph *g = tg->model->graph;
    for (int i = 0; i < tg->n_params; i++) {
        const char *name = tg->param_inputs[i];
        ulc_value *v = find_input(g, name);
        if (!v) return ulc_fail(ctx, ULC_ERR_INVALID, "training graph: parameter '%s' is not a graph input", name);
        if (!(v->flags & ULC_VALUE_HAS_TYPE) || v->dtype != ULC_DT_F32)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                            "training graph: parameter '%s' is %s (expected float32)", name,
                            (v->flags & ULC_VALUE_HAS_TYPE) ? ulc_dtype_name(v->dtype) : "untyped");
        if (v->rank < 0 || v->rank > ULC_RT_MAX_RANK)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                            "training graph: parameter '%s' has no declared shape of rank <= %d",
                            name, ULC_RT_MAX_RANK);
        ulc_rt_tensor *t = &L->pt[i];
        *t = (ulc_rt_tensor){.dtype = ULC_DT_F32, .rank = v->rank, .data = L->params[i]};
        size_t n = 1;
        for (int d = 0; d < v->rank; d++) {
            if (v->dims[d].value < 0)
                return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                                "training graph: parameter '%s' has a symbolic dim %d (expected a "
                                "fixed shape)", name, d);
            t->dims[d] = v->dims[d].value;
            n *= (size_t)v->dims[d].value;
        }
        t->nbytes = n * sizeof(float);
        L->numel[i] = n;
        if (!find_output(g, tg->grad_outputs[i]))
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "training graph: gradient '%s' of parameter '%s' is not a graph output",
                            tg->grad_outputs[i], name);
        for (int j = 0; j < i; j++)
            if (strcmp(tg->param_inputs[j], name) == 0)
                return ulc_fail(ctx, ULC_ERR_INVALID, "training graph: parameter '%s' is listed twice", name);
    }
    if (!tg->loss || !find_output(g, tg->loss))
        return ulc_fail(ctx, ULC_ERR_INVALID, "training graph: loss '%s' is not a graph output",
                        tg->loss ? tg->loss : "(none)");
    return ULC_OK;
}

/* The data inputs: a float32/int64 column each, whose trailing dims fit the input's. */
static ulc_status setup_data(loop *L, ulc_ctx *ctx) {
    const ulc_train_graph *tg = L->tg;
    const ulc_graph *g = tg->model->graph;
    const ulc_dataset *ds = L->ds;
    for (int i = 0; i < tg->n_data; i++) {
        data_bind *b = &L->data[i];
        b->input = tg->data_inputs[i];
        b->column = tg->data_cols[i];
        ulc_value *v = find_input(g, b->input);
        if (!v) return ulc_fail(ctx, ULC_ERR_INVALID, "training graph: data input '%s' is not a graph input", b->input);
        for (int j = 0; j < tg->n_params; j++)
            if (strcmp(tg->param_inputs[j], b->input) == 0)
                return ulc_fail(ctx, ULC_ERR_INVALID,
                                "training graph: input '%s' is both a parameter and a data input", b->input);
        int c = ulc_dataset_find(ds, b->column);
        if (c < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: no column '%s' (graph input '%s' reads it)",
                            ulc_dataset_path(ds), b->column, b->input);
        const ulc_tensor *col = ds->cols[c];
        b->col = col;
        if (col->dtype != ULC_DT_F32 && col->dtype != ULC_DT_I64)
            return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                            "%s: column '%s' is %s (expected f32 or i64)", ulc_dataset_path(ds),
                            b->column, ulc_dtype_name(col->dtype));
        if ((v->flags & ULC_VALUE_HAS_TYPE) && v->dtype != col->dtype)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: column '%s' is %s, graph input '%s' is %s",
                            ulc_dataset_path(ds), b->column, ulc_dtype_name(col->dtype), b->input,
                            ulc_dtype_name(v->dtype));
        if (col->rank > ULC_RT_MAX_RANK || (v->rank >= 0 && v->rank != col->rank))
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s: column '%s' has rank %d, graph input '%s' has rank %d",
                            ulc_dataset_path(ds), b->column, col->rank, b->input, v->rank);
        b->t = (ulc_rt_tensor){.dtype = col->dtype, .rank = col->rank};
        size_t row = col->dtype == ULC_DT_F32 ? sizeof(float) : sizeof(int64_t);
        for (int d = 1; d < col->rank; d++) {
            if (v->rank >= 0 && v->dims[d].value >= 0 && v->dims[d].value != col->dims[d])
                return ulc_fail(ctx, ULC_ERR_INVALID,
                                "%s: column '%s' has %lld in dim %d, graph input '%s' fixes it to %lld",
                                ulc_dataset_path(ds), b->column, (long long)col->dims[d], d, b->input,
                                (long long)v->dims[d].value);
            b->t.dims[d] = col->dims[d];
            row *= (size_t)col->dims[d];
        }
        b->row_bytes = row;
        b->buf = malloc(row * (size_t)L->o->batch_size + 1);
        if (!b->buf)
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory for a batch of column '%s' (%zu bytes)",
                            b->column, row * (size_t)L->o->batch_size);
        b->t.data = b->buf;
    }
    return ULC_OK;
}

/* Copies rows perm[at .. at+n) of every data column into the batch buffers (runs of
 * consecutive rows in one memcpy) and binds them. */
static ulc_status bind_batch(loop *L, int64_t at, int64_t n, ulc_ctx *ctx) {
    for (int i = 0; i < L->tg->n_data; i++) {
        data_bind *b = &L->data[i];
        const uint8_t *src = b->col->data;
        int64_t r = 0;
        while (r < n) {
            int64_t first = L->perm[at + r], len = 1;
            while (r + len < n && L->perm[at + r + len] == first + len) len++;
            memcpy(b->buf + (size_t)r * b->row_bytes, src + (size_t)first * b->row_bytes,
                   (size_t)len * b->row_bytes);
            r += len;
        }
        b->t.dims[0] = n;
        b->t.nbytes = (size_t)n * b->row_bytes;
        ULC_TRY(ulc_session_set_input(L->sess, b->input, &b->t, ctx));
    }
    if (!L->didx) return ULC_OK;
    /* on a device: the columns kept there give the session their batch without a copy from the
     * host (the host batch above stays for the hooks, which read flags and masks there) */
    ULC_TRY(ulc_session_device_upload(L->sess, L->didx, L->perm + at, (size_t)n * sizeof(int64_t), ctx));
    for (int i = 0; i < L->tg->n_data; i++) {
        data_bind *b = &L->data[i];
        if (!b->dcol) continue;
        ULC_TRY(ulc_session_device_gather_rows(L->sess, b->dbuf, b->dcol, b->row_bytes, L->didx, n, ctx));
        ulc_rt_tensor t = b->t;
        t.data = b->dbuf;
        ULC_TRY(ulc_session_set_input_device(L->sess, b->input, &t, ctx));
    }
    /* done before anyone reads the batch: a hook's session (RFA's teacher) runs on its own stream */
    return ulc_session_device_sync(L->sess, ctx);
}

static int overlaps(const void *a, size_t na, const void *b, size_t nb) {
    const uint8_t *x = a, *y = b;
    return na && nb && x < y + nb && y < x + na;
}

/* Index of the first non-finite element, or -1. */
static int64_t first_nonfinite(const float *x, size_t n) {
    long bad = 0;
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n >= 65536)
    for (ptrdiff_t i = 0; i < nn; i++) bad += !isfinite(x[i]);
    if (!bad) return -1;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (int64_t)i;
    return -1;
}

/* ---- parameters on the device -------------------------------------------------------------

 * On a device session (a GPU) the parameters live in device buffers the session reads in place
 * (ulc_session_set_input_device), the gradients are read where the run left them, and the update
 * is the same SGD/AdamW arithmetic run there (ulc_session_device_optim): per step only the loss
 * and a count of non-finite gradient elements come back. The host's params are brought up to
 * date for an after-step hook and at the end. SAM (two runs per step, host arithmetic) and
 * ULC_TRAIN_HOST_PARAMS=1 keep the host path. */
/* Data columns whose rows take at least this many bytes live on the device for the run. */
#define DEVICE_COLUMN_ROW_BYTES 1024

static int device_params_wanted(const loop *L) {
    const char *e = getenv("ULC_TRAIN_HOST_PARAMS");
    return ulc_session_on_device(L->sess) && L->o->sam_rho <= 0 && !(e && *e && strcmp(e, "0") != 0);
}

static ulc_status setup_device(loop *L, ulc_ctx *ctx) {
    const ulc_train_graph *tg = L->tg;
    size_t np = tg->n_params > 0 ? (size_t)tg->n_params : 1;
    L->dp = calloc(np, sizeof *L->dp);
    L->dm = calloc(np, sizeof *L->dm);
    L->dv = calloc(np, sizeof *L->dv);
    L->dscratch = calloc(np, sizeof *L->dscratch);
    L->dgrads = calloc(np, sizeof *L->dgrads);
    if (!L->dp || !L->dm || !L->dv || !L->dscratch || !L->dgrads)
        return ulc_fail(ctx, ULC_ERR_NOMEM, "training: out of memory");
    L->on_dev = 1;
    for (int i = 0; i < tg->n_params; i++) {
        size_t bytes = L->numel[i] * sizeof(float);
        if (!(L->dp[i] = ulc_session_device_alloc(L->sess, bytes)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "training: out of device memory for parameter '%s' "
                            "(%zu bytes)", tg->param_inputs[i], bytes);
        ULC_TRY(ulc_session_device_upload(L->sess, L->dp[i], L->params[i], bytes, ctx));
        ulc_rt_tensor t = L->pt[i];
        t.data = L->dp[i];
        ULC_TRY(ulc_session_set_input_device(L->sess, tg->param_inputs[i], &t, ctx));
        if (L->o->on_grads) continue; /* the hook updates: no moments */
        if (ulc_optimizer_has_m(L->opt)) {
            if (!(L->dm[i] = ulc_session_device_alloc(L->sess, bytes)))
                return ulc_fail(ctx, ULC_ERR_NOMEM, "training: out of device memory for the optimizer");
            ULC_TRY(ulc_session_device_zero(L->sess, L->dm[i], bytes, ctx));
        }
        if (ulc_optimizer_has_v(L->opt)) {
            if (!(L->dv[i] = ulc_session_device_alloc(L->sess, bytes)))
                return ulc_fail(ctx, ULC_ERR_NOMEM, "training: out of device memory for the optimizer");
            ULC_TRY(ulc_session_device_zero(L->sess, L->dv[i], bytes, ctx));
        }
    }
    if (!(L->dflag = ulc_session_device_alloc(L->sess, sizeof *L->dflag)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "training: out of device memory");
    /* the data columns of large rows (images, features) go to the device once, when they fit;
     * small ones (labels, flags, masks) are cheaper bound from the host with the batch */
    int any = 0;
    const char *e = getenv("ULC_DEVICE_COLUMN_ROW_BYTES"); /* tests: which columns go */
    size_t min_row = e && *e ? (size_t)strtoull(e, NULL, 10) : DEVICE_COLUMN_ROW_BYTES;
    /* at most a quarter of what is free now: the plans (activations, weights, the teacher's)
     * come after, and a column that does not fit is bound from the host as on the cpu */
    size_t budget = ulc_session_device_free_bytes(L->sess) / 4;
    for (int i = 0; i < tg->n_data; i++) {
        data_bind *b = &L->data[i];
        size_t bytes = (size_t)L->ds->n_rows * b->row_bytes;
        if (b->row_bytes < min_row || !bytes || bytes > budget) continue;
        if (ulc_session_input_decides_shapes(L->sess, b->input)) continue; /* host bytes plan */
        if (!(b->dcol = ulc_session_device_alloc(L->sess, bytes))) continue; /* stays on the host */
        if (!(b->dbuf = ulc_session_device_alloc(L->sess, b->row_bytes * (size_t)L->o->batch_size))) {
            ulc_session_device_free(L->sess, b->dcol);
            b->dcol = NULL;
            continue;
        }
        ULC_TRY(ulc_session_device_upload(L->sess, b->dcol, b->col->data, bytes, ctx));
        budget -= bytes;
        any = 1;
    }
    if (any && !(L->didx = ulc_session_device_alloc(L->sess, (size_t)L->o->batch_size * sizeof(int64_t))))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "training: out of device memory");
    return ULC_OK;
}

/* The host's params from the device's. */
static ulc_status download_params(loop *L, ulc_ctx *ctx) {
    for (int i = 0; i < L->tg->n_params; i++)
        if (L->dp[i])
            ULC_TRY(ulc_session_device_download(L->sess, L->params[i], L->dp[i], L->numel[i] * sizeof(float), ctx));
    return ULC_OK;
}

/* This step's gradients in device memory (checked like the host path's: shapes, finiteness, not
 * inside a parameter's bytes). */
static ulc_status device_grads(loop *L, long step, ulc_ctx *ctx) {
    const ulc_train_graph *tg = L->tg;
    char sh[160], ps[160];
    for (int i = 0; i < tg->n_params; i++) {
        const ulc_rt_tensor *pt = &L->pt[i];
        size_t bytes = L->numel[i] * sizeof(float);
        const ulc_rt_tensor *gt = ulc_session_output_device(L->sess, tg->grad_outputs[i]);
        int on_host = !gt;
        if (on_host) gt = ulc_session_output(L->sess, tg->grad_outputs[i]); /* a constant gradient */
        int same = gt && gt->dtype == ULC_DT_F32 && gt->rank == pt->rank;
        for (int d = 0; same && d < pt->rank; d++) same = gt->dims[d] == pt->dims[d];
        if (!same)
            return ulc_fail(ctx, ULC_ERR_INVALID, "step %ld: gradient '%s' is %s, parameter '%s' is %s",
                            step, tg->grad_outputs[i], gt ? ulc_rt_shape_str(gt, sh, sizeof sh) : "missing",
                            tg->param_inputs[i], ulc_rt_shape_str(pt, ps, sizeof ps));
        const float *g = gt->data;
        int alias = 0;
        for (int j = 0; !on_host && j < tg->n_params; j++)
            alias |= overlaps(g, bytes, L->dp[j], L->numel[j] * sizeof(float));
        if (on_host || alias) {
            if (!L->dscratch[i] && !(L->dscratch[i] = ulc_session_device_alloc(L->sess, bytes ? bytes : 4)))
                return ulc_fail(ctx, ULC_ERR_NOMEM, "out of device memory for gradient '%s'", tg->grad_outputs[i]);
            ULC_TRY(on_host ? ulc_session_device_upload(L->sess, L->dscratch[i], g, bytes, ctx)
                            : ulc_session_device_copy(L->sess, L->dscratch[i], g, bytes, ctx));
            g = L->dscratch[i];
        }
        L->dgrads[i] = g;
    }
    unsigned bad = 0;
    ULC_TRY(ulc_session_device_zero(L->sess, L->dflag, sizeof bad, ctx));
    for (int i = 0; i < tg->n_params; i++)
        ULC_TRY(ulc_session_device_count_nonfinite(L->sess, L->dgrads[i], L->numel[i], L->dflag, ctx));
    ULC_TRY(ulc_session_device_download(L->sess, &bad, L->dflag, sizeof bad, ctx));
    if (!bad) return ULC_OK;
    for (int i = 0; i < tg->n_params; i++) { /* which one: the host path's message */
        const ulc_rt_tensor *gt = ulc_session_output(L->sess, tg->grad_outputs[i]);
        int64_t at = gt ? first_nonfinite(gt->data, L->numel[i]) : -1;
        if (at >= 0)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "step %ld: gradient of parameter '%s' is not finite (element %lld is %g)",
                            step, tg->param_inputs[i], (long long)at, (double)((const float *)gt->data)[at]);
    }
    return ulc_fail(ctx, ULC_ERR_INVALID, "step %ld: a gradient is not finite", step);
}

/* The optimizer's update on the device. */
static ulc_status device_update(loop *L, double lr, ulc_ctx *ctx) {
    ulc_rt_optim a;
    ulc_optimizer_device_args(L->opt, lr, &a);
    for (int i = 0; i < L->tg->n_params; i++)
        ULC_TRY(ulc_session_device_optim(L->sess, &a, L->dp[i], L->dgrads[i], L->dm[i], L->dv[i], L->numel[i], ctx));
    ulc_optimizer_advance(L->opt);
    return ULC_OK;
}

/* Runs the graph on the bound batch; fills L->grads and *loss. step is 1-based for messages. */
static ulc_status run_step(loop *L, long step, float *loss, ulc_ctx *ctx) {
    const ulc_train_graph *tg = L->tg;
    char sh[160];
    if (ulc_session_run(L->sess, ctx) != ULC_OK) return ulc_fail(ctx, ctx->status, "step %ld", step);
    const ulc_rt_tensor *lt = ulc_session_output(L->sess, tg->loss);
    if (!lt || lt->dtype != ULC_DT_F32 || ulc_rt_numel(lt) != 1)
        return ulc_fail(ctx, ULC_ERR_INVALID, "step %ld: loss '%s' is %s (expected one float32)",
                        step, tg->loss, lt ? ulc_rt_shape_str(lt, sh, sizeof sh) : "missing");
    memcpy(loss, lt->data, sizeof *loss);
    if (!isfinite(*loss))
        return ulc_fail(ctx, ULC_ERR_INVALID, "step %ld: loss '%s' is %g", step, tg->loss, (double)*loss);
    if (L->on_dev) {
        ULC_TRY(device_grads(L, step, ctx));
        if (!L->o->on_grads) return ULC_OK;
        /* a hook reads the gradients on the host: the session copies them back */
    }
    for (int i = 0; i < tg->n_params; i++) {
        const ulc_rt_tensor *gt = ulc_session_output(L->sess, tg->grad_outputs[i]);
        const ulc_rt_tensor *pt = &L->pt[i];
        int same = gt && gt->dtype == ULC_DT_F32 && gt->rank == pt->rank;
        for (int d = 0; same && d < pt->rank; d++) same = gt->dims[d] == pt->dims[d];
        if (!same) {
            char ps[160];
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "step %ld: gradient '%s' is %s, parameter '%s' is %s", step,
                            tg->grad_outputs[i], gt ? ulc_rt_shape_str(gt, sh, sizeof sh) : "missing",
                            tg->param_inputs[i], ulc_rt_shape_str(pt, ps, sizeof ps));
        }
        const float *g = gt->data;
        int64_t bad = first_nonfinite(g, L->numel[i]);
        if (bad >= 0)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "step %ld: gradient of parameter '%s' is not finite (element %lld is %g)",
                            step, tg->param_inputs[i], (long long)bad, (double)g[bad]);
        /* A gradient the runtime left in a parameter's own bytes (a view of the input) would
         * change under the update: copy it first. */
        for (int j = 0; j < tg->n_params; j++) {
            if (!overlaps(g, L->numel[i] * sizeof(float), L->params[j], L->numel[j] * sizeof(float)))
                continue;
            if (!L->scratch[i] && !(L->scratch[i] = malloc(L->numel[i] * sizeof(float) + 1)))
                return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory for gradient '%s'", tg->grad_outputs[i]);
            memcpy(L->scratch[i], g, L->numel[i] * sizeof(float));
            g = L->scratch[i];
            break;
        }
        L->grads[i] = g;
    }
    return ULC_OK;
}

/* SAM's second half of a step (o->sam_rho > 0), after run_step filled L->grads at θ: runs the
 * bound batch again at θ + ρ·g/‖g‖ and restores θ; L->grads then hold the gradient there. A
 * zero gradient leaves the step as it was. */
static ulc_status sam_step(loop *L, long step, ulc_ctx *ctx) {
    const ulc_train_graph *tg = L->tg;
    double sq = 0.0;
    for (int i = 0; i < tg->n_params; i++)
        for (size_t k = 0; k < L->numel[i]; k++) sq += (double)L->grads[i][k] * L->grads[i][k];
    if (!(sq > 0.0)) return ULC_OK;
    double scale = L->o->sam_rho / sqrt(sq);
    for (int i = 0; i < tg->n_params; i++) {
        if (!L->sam_save[i] && !(L->sam_save[i] = malloc(L->numel[i] * sizeof(float) + 1)))
            return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (SAM)");
        memcpy(L->sam_save[i], L->params[i], L->numel[i] * sizeof(float));
        for (size_t k = 0; k < L->numel[i]; k++)
            L->params[i][k] += (float)(scale * L->grads[i][k]);
    }
    float loss2 = 0.0f;
    ulc_status st = run_step(L, step, &loss2, ctx);
    for (int i = 0; i < tg->n_params; i++)
        memcpy(L->params[i], L->sam_save[i], L->numel[i] * sizeof(float));
    return st;
}

static void loop_free(loop *L) {
    for (int i = 0; L->on_dev && i < L->tg->n_params; i++) {
        ulc_session_device_free(L->sess, L->dp[i]);
        ulc_session_device_free(L->sess, L->dm[i]);
        ulc_session_device_free(L->sess, L->dv[i]);
        ulc_session_device_free(L->sess, L->dscratch[i]);
    }
    if (L->on_dev) ulc_session_device_free(L->sess, L->dflag);
    if (L->on_dev) ulc_session_device_free(L->sess, L->didx);
    for (int i = 0; L->on_dev && L->data && i < L->tg->n_data; i++) {
        ulc_session_device_free(L->sess, L->data[i].dcol);
        ulc_session_device_free(L->sess, L->data[i].dbuf);
    }
    free(L->dp);
    free(L->dm);
    free(L->dv);
    free(L->dscratch);
    free(L->dgrads);
    for (int i = 0; L->sam_save && i < L->tg->n_params; i++) free(L->sam_save[i]);
    free(L->sam_save);
    for (int i = 0; L->data && i < L->tg->n_data; i++) free(L->data[i].buf);
    for (int i = 0; L->scratch && i < L->tg->n_params; i++) free(L->scratch[i]);
    free(L->data);
    free(L->pt);
    free(L->numel);
    free(L->grads);
    free(L->scratch);
    free(L->perm);
    ulc_session_free(L->sess);
    ulc_optimizer_free(L->opt);
}

void ulc_train_stats_clear(ulc_train_stats *s) {
    free(s->loss_curve);
    free(s->step_ms);
    s->loss_curve = s->step_ms = NULL;
}

ulc_status ulc_train_run(const ulc_train_graph *tg, const ulc_dataset *data,
                         const ulc_train_opts *o, float *const *params, ulc_train_stats *stats,
                         ulc_ctx *ctx) {
    memset(stats, 0, sizeof *stats);
    if (!tg || !tg->model || tg->n_params < 0 || tg->n_data < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "training: no training graph");
    if (o->epochs < 1) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "training: %d epochs (expected >= 1)", o->epochs);
    if (o->batch_size < 1)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "training: batch size %d (expected >= 1)", o->batch_size);
    if (o->max_steps < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "training: max_steps %ld (expected >= 0)", o->max_steps);
    int64_t rows = data->n_rows;
    if (rows < 1) return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the dataset has no rows", ulc_dataset_path(data));
    int64_t per_epoch = o->drop_last ? rows / o->batch_size : (rows + o->batch_size - 1) / o->batch_size;
    if (per_epoch < 1)
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "%s: %lld rows make no full batch of %d (drop_last is set)", ulc_dataset_path(data),
                        (long long)rows, o->batch_size);
    int64_t total = per_epoch * o->epochs;
    if (o->max_steps > 0 && o->max_steps < total) total = o->max_steps;
    int epochs = (int)((total + per_epoch - 1) / per_epoch);

    loop L = {.tg = tg, .ds = data, .o = o, .params = params};
    size_t np = tg->n_params > 0 ? (size_t)tg->n_params : 1;
    L.data = calloc(tg->n_data > 0 ? (size_t)tg->n_data : 1, sizeof *L.data);
    L.pt = calloc(np, sizeof *L.pt);
    L.numel = calloc(np, sizeof *L.numel);
    L.grads = calloc(np, sizeof *L.grads);
    L.scratch = calloc(np, sizeof *L.scratch);
    L.sam_save = calloc(np, sizeof *L.sam_save);
    L.perm = malloc((size_t)rows * sizeof *L.perm);
    stats->loss_curve = malloc((size_t)total * sizeof *stats->loss_curve);
    stats->step_ms = malloc((size_t)total * sizeof *stats->step_ms);
    ulc_status st = ULC_OK;
    if (!L.data || !L.pt || !L.numel || !L.grads || !L.scratch || !L.sam_save || !L.perm || !stats->loss_curve ||
        !stats->step_ms) {
        st = ulc_fail(ctx, ULC_ERR_NOMEM, "training: out of memory (%lld rows, %lld steps)",
                      (long long)rows, (long long)total);
        goto done;
    }
    if ((st = setup_params(&L, ctx)) != ULC_OK || (st = setup_data(&L, ctx)) != ULC_OK) goto done;
    ulc_session_opts so = ulc_session_defaults();
    so.threads = o->threads;
    so.profile = o->profile;
    if ((st = ulc_session_create(tg->model, &so, &L.sess, ctx)) != ULC_OK) goto done;
    int on_dev = device_params_wanted(&L);
    if (!o->on_grads &&
        (st = (on_dev ? ulc_optimizer_create_stateless : ulc_optimizer_create)(
             &o->optim, tg->n_params, L.numel, &L.opt, ctx)) != ULC_OK)
        goto done;
    for (int i = 0; i < tg->n_params; i++)
        if ((st = ulc_session_set_input(L.sess, tg->param_inputs[i], &L.pt[i], ctx)) != ULC_OK) goto done;
    if (on_dev && (st = setup_device(&L, ctx)) != ULC_OK) goto done;

    progress pg = {.f = o->quiet ? NULL : o->progress, .label = o->label ? o->label : "train",
                   .epochs = epochs, .total = total};
    if (pg.f) pg.tty = isatty(fileno(pg.f));
    pg.t0 = now_s();
    long done = 0;
    double samples = 0.0;
    for (int e = 0; e < epochs && st == ULC_OK; e++) {
        if (o->shuffle) ulc_train_permutation(o->seed, e, rows, L.perm);
        else
            for (int64_t r = 0; r < rows; r++) L.perm[r] = r;
        double e_t0 = now_s(), e_loss = 0.0;
        long e_steps = 0;
        for (int64_t b = 0; b < per_epoch && done < total; b++) {
            int64_t at = b * o->batch_size;
            int64_t n = rows - at < o->batch_size ? rows - at : o->batch_size;
            float loss = 0.0f;
            double s_t0 = now_s(), t_bind, t_hook, t_run;
            if ((st = bind_batch(&L, at, n, ctx)) != ULC_OK) break;
            t_bind = now_s();
            if (o->before_step) {
                const ulc_rt_tensor *bt[64];
                int nb = tg->n_data < 64 ? tg->n_data : 64;
                for (int i = 0; i < nb; i++) bt[i] = &L.data[i].t;
                if ((st = o->before_step(o->hook_arg, L.sess, bt, nb, ctx)) != ULC_OK) {
                    st = ulc_fail(ctx, st, "step %ld", done + 1);
                    break;
                }
            }
            t_hook = now_s();
            if ((st = run_step(&L, done + 1, &loss, ctx)) != ULC_OK) break;
            if (o->sam_rho > 0 && !o->on_grads && (st = sam_step(&L, done + 1, ctx)) != ULC_OK) break;
            t_run = now_s();
            if (o->on_grads) {
                if ((st = o->on_grads(o->hook_arg, L.grads, tg->n_params, ctx)) != ULC_OK) {
                    st = ulc_fail(ctx, st, "step %ld", done + 1);
                    break;
                }
            } else if (L.on_dev) {
                if ((st = device_update(&L, ulc_lr_at(&o->optim, done, total), ctx)) != ULC_OK) break;
            } else {
                ulc_optimizer_step(L.opt, params, L.grads, ulc_lr_at(&o->optim, done, total));
            }
            stats->step_ms[done] = (float)((now_s() - s_t0) * 1e3);
            if (o->profile)
                fprintf(o->progress ? o->progress : stderr,
                        "%s: step %ld  %.1f ms: batch %.1f, before-step hook %.1f, graph %.1f, "
                        "optimizer %.1f\n", pg.label, done + 1, (double)stats->step_ms[done],
                        (t_bind - s_t0) * 1e3, (t_hook - t_bind) * 1e3, (t_run - t_hook) * 1e3,
                        (now_s() - t_run) * 1e3);
            stats->loss_curve[done++] = loss;
            stats->steps = done;
            samples += (double)n;
            if (o->after_step && L.on_dev && (st = download_params(&L, ctx)) != ULC_OK) break;
            if (o->after_step &&
                (st = o->after_step(o->hook_arg, done, (const float *const *)params,
                                    tg->n_params, loss, ctx)) != ULC_OK) {
                st = ulc_fail(ctx, st, "after step %ld", done);
                break;
            }
            e_loss += loss;
            e_steps++;
            pg.ema = 0.9 * pg.ema + 0.1 * loss;
            pg.ema_w = 0.9 * pg.ema_w + 0.1;
            if (pg.f && pg.tty) progress_draw(&pg, e, done, samples, done == total);
            if (o->stop && *o->stop) {
                stats->interrupted = 1;
                st = ulc_fail(ctx, ULC_ERR_INTERRUPTED, "interrupted at step %ld", done);
                break;
            }
            /* an input file that changed under the run (common/fileset.h) ends it now */
            if (ctx && ctx->reads && (st = ulc_fileset_verify(ctx->reads, ctx)) != ULC_OK) break;
        }
        if (e_steps) stats->mean_last_epoch_loss = e_loss / (double)e_steps;
        if (st == ULC_OK && pg.f && !pg.tty)
            fprintf(pg.f, "%s: epoch %d/%d  loss %.6g  %.1fs\n", pg.label, e + 1, epochs,
                    stats->mean_last_epoch_loss, now_s() - e_t0);
    }
    if (L.on_dev) { /* the host's parameters, as far as training got */
        ulc_status ds = download_params(&L, ctx);
        if (st == ULC_OK) st = ds;
    }
    progress_end(&pg);
    stats->seconds = now_s() - pg.t0;
    stats->samples_per_s = stats->seconds > 0 ? samples / stats->seconds : 0.0;
    if (done > 0) {
        stats->first_loss = stats->loss_curve[0];
        stats->last_loss = stats->loss_curve[done - 1];
    }
    if (o->profile) {
        FILE *pf = o->progress ? o->progress : stderr;
        fprintf(pf, "%s: the trained graph's session\n", pg.label);
        ulc_session_profile(L.sess, pf);
    }
done:
    loop_free(&L);
    return st;
}
