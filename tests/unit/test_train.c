/*
 * test_train.c — unit tests for train/train.h: the optimizers against torch.optim's numbers,
 * the learning-rate schedules, the seeded row order, dataset checks, and the training loop on a
 * hand-built linear-regression training graph (loss and gradient written as graph nodes).
 * CHECK records a failure and continues; ends with "N passed, M failed".
 */
#define _XOPEN_SOURCE 700 /* posix_openpt: the progress bar is drawn only on a terminal */

#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir/graph.h"
#include "train/train.h"

#include "tests/unit/check.h"

/* ---- optimizers against torch ------------------------------------------------------------- */

/* Produced by this script (torch 1.13.1, Debian's CPU build):
 *
 *   import torch
 *   N, lrs = 20, [0.1, 0.05, 0.02]
 *   p0 = [(i - 7) / 8 for i in range(N)]
 *   gs = [[((i * (k + 3)) % 11 - 5) / 16 for i in range(N)] for k in range(3)]
 *   def run(make):
 *       p = torch.tensor(p0, requires_grad=True)
 *       opt = make([p])
 *       for g, lr in zip(gs, lrs):
 *           opt.param_groups[0]['lr'] = lr
 *           p.grad = torch.tensor(g)
 *           opt.step()
 *       return p.detach().numpy()
 *   for name, make in [
 *           ('sgd', lambda ps: torch.optim.SGD(ps, lr=0.1)),
 *           ('sgd_mom_wd', lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)),
 *           ('sgd_nesterov', lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.8, nesterov=True,
 *                                                       weight_decay=0.05)),
 *           ('adamw', lambda ps: torch.optim.AdamW(ps, lr=0.1)),
 *           ('adamw_b', lambda ps: torch.optim.AdamW(ps, lr=0.1, betas=(0.8, 0.95), eps=1e-6,
 *                                                    weight_decay=0.1))]:
 *       print('static const float k_%s[%d] = {%s};' % (name, N, ', '.join('%.9gf' % v for v in run(make))))
 *
 * 20 elements: torch's vector loop does 16, its scalar tail the last 4; both are checked. */
static const float k_sgd[20] = {-0.821874976f, -0.734375f, -0.646875024f, -0.511249959f, -0.354999989f, -0.253749996f, -0.131874993f, -0.0306250006f, 0.125624999f, 0.261249989f, 0.348749995f, 0.553125024f, 0.640625f, 0.728124976f, 0.863750041f, 1.01999998f, 1.12125003f, 1.24312496f, 1.34437501f, 1.5006249f};
static const float k_sgd_mom_wd[20] = {-0.794978857f, -0.723744571f, -0.652510285f, -0.520782828f, -0.338790148f, -0.253805816f, -0.135828376f, -0.0508440658f, 0.131148577f, 0.262876034f, 0.33411032f, 0.576596081f, 0.647830427f, 0.719064713f, 0.850792229f, 1.03278482f, 1.11776924f, 1.23574662f, 1.32073092f, 1.50272346f};
static const float k_sgd_nesterov[20] = {-0.746902227f, -0.70248431f, -0.658066392f, -0.518334806f, -0.322024345f, -0.252856433f, -0.137874886f, -0.0687069595f, 0.127603546f, 0.267335087f, 0.311753035f, 0.603377163f, 0.647795141f, 0.692212939f, 0.831944525f, 1.02825499f, 1.09742296f, 1.21240437f, 1.28157246f, 1.47788286f};
static const float k_adamw[20] = {-0.703593194f, -0.58778435f, -0.788128734f, -0.593422472f, -0.242653936f, -0.179818273f, -0.217566907f, -0.144288287f, 0.201602295f, 0.303346038f, 0.208052456f, 0.669070423f, 0.784879208f, 0.584534824f, 0.779241204f, 1.13000965f, 1.19284534f, 1.15509665f, 1.22837532f, 1.57426596f};
static const float k_adamw_b[20] = {-0.690994501f, -0.578585148f, -0.779322207f, -0.581194639f, -0.241193622f, -0.178288653f, -0.212694675f, -0.140635386f, 0.195378199f, 0.301903874f, 0.203866869f, 0.660740435f, 0.773149729f, 0.57241267f, 0.770540297f, 1.11054111f, 1.17344618f, 1.13904023f, 1.21109962f, 1.54711306f};

/* Distance in units in the last place (same-sign floats; enough for these checks). */
static long ulps(float a, float b) {
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    if (x < 0) x = INT32_MIN - x;
    if (y < 0) y = INT32_MIN - y;
    return labs((long)x - (long)y);
}

/* The script's three steps on the script's p0; result into p[20]. */
static void run_torch_case(const ulc_optim_opts *o, float *p) {
    const double lrs[3] = {0.1, 0.05, 0.02};
    for (int i = 0; i < 20; i++) p[i] = (float)((i - 7) / 8.0);
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    size_t n = 20;
    ulc_optimizer *opt = NULL;
    CHECK(ulc_optimizer_create(o, 1, &n, &opt, &ctx) == ULC_OK);
    if (!opt) return;
    for (int k = 0; k < 3; k++) {
        float g[20];
        for (int i = 0; i < 20; i++) g[i] = (float)(((i * (k + 3)) % 11 - 5) / 16.0);
        float *pp = p;
        const float *gg = g;
        ulc_optimizer_step(opt, &pp, &gg, lrs[k]);
    }
    ulc_optimizer_free(opt);
}

static void test_optim_torch(void) {
    struct {
        const char *name;
        const float *want;
        ulc_optim_opts o;
    } cases[5];
    cases[0].name = "sgd";
    cases[0].want = k_sgd;
    cases[0].o = ulc_optim_defaults(ULC_OPTIM_SGD);
    cases[1].name = "sgd_mom_wd";
    cases[1].want = k_sgd_mom_wd;
    cases[1].o = ulc_optim_defaults(ULC_OPTIM_SGD);
    cases[1].o.momentum = 0.9;
    cases[1].o.weight_decay = 0.01;
    cases[2].name = "sgd_nesterov";
    cases[2].want = k_sgd_nesterov;
    cases[2].o = ulc_optim_defaults(ULC_OPTIM_SGD);
    cases[2].o.momentum = 0.8;
    cases[2].o.nesterov = 1;
    cases[2].o.weight_decay = 0.05;
    cases[3].name = "adamw";
    cases[3].want = k_adamw;
    cases[3].o = ulc_optim_defaults(ULC_OPTIM_ADAMW);
    cases[4].name = "adamw_b";
    cases[4].want = k_adamw_b;
    cases[4].o = ulc_optim_defaults(ULC_OPTIM_ADAMW);
    cases[4].o.beta1 = 0.8;
    cases[4].o.beta2 = 0.95;
    cases[4].o.eps = 1e-6;
    cases[4].o.weight_decay = 0.1;
    for (int c = 0; c < 5; c++) {
        float fast[20], plain[20];
        unsetenv("ULC_NO_SIMD");
        run_torch_case(&cases[c].o, fast);
        setenv("ULC_NO_SIMD", "1", 1);
        run_torch_case(&cases[c].o, plain);
        unsetenv("ULC_NO_SIMD");
        CHECK(memcmp(fast, plain, sizeof fast) == 0); /* FMA instruction vs libm fmaf */
        long worst = 0;
        int exact = 0;
        for (int i = 0; i < 20; i++) {
            long u = ulps(fast[i], cases[c].want[i]);
            if (u > worst) worst = u;
            exact += u == 0;
        }
        if (worst > 0)
            fprintf(stderr, "  %s: %d/20 bit-identical to torch, worst %ld ulp\n", cases[c].name,
                    exact, worst);
        CHECK(worst <= 1);
        CHECK(exact == 20); /* the same operations and roundings as torch's kernels */
    }
}

/* A tensor large enough to be split over threads gives the bits of the same elements updated
 * in small (single-threaded) pieces. */
static void test_optim_threads(void) {
    enum { N = 300000, PIECE = 1000 };
    float *big = malloc(N * sizeof(float)), *small = malloc(N * sizeof(float));
    float *g = malloc(N * sizeof(float));
    float **pp = malloc((N / PIECE) * sizeof *pp);
    const float **gp = malloc((N / PIECE) * sizeof *gp);
    size_t *numel = malloc((N / PIECE) * sizeof *numel);
    for (int i = 0; i < N; i++) {
        big[i] = small[i] = sinf((float)i * 0.001f);
        g[i] = cosf((float)i * 0.37f);
    }
    for (int j = 0; j < N / PIECE; j++) {
        pp[j] = small + (size_t)j * PIECE;
        gp[j] = g + (size_t)j * PIECE;
        numel[j] = PIECE;
    }
    for (int kind = 0; kind < 2; kind++) {
        ulc_optim_opts o = ulc_optim_defaults(kind ? ULC_OPTIM_ADAMW : ULC_OPTIM_SGD);
        o.momentum = kind ? 0.0 : 0.9;
        ulc_ctx ctx;
        ulc_ctx_init(&ctx);
        ulc_optimizer *a = NULL, *b = NULL;
        size_t nbig = N;
        CHECK(ulc_optimizer_create(&o, 1, &nbig, &a, &ctx) == ULC_OK);
        CHECK(ulc_optimizer_create(&o, N / PIECE, numel, &b, &ctx) == ULC_OK);
        if (!a || !b) break;
        for (int s = 0; s < 3; s++) {
            const float *gg = g;
            ulc_optimizer_step(a, &big, &gg, 0.01);
            ulc_optimizer_step(b, pp, gp, 0.01);
        }
        CHECK(memcmp(big, small, N * sizeof(float)) == 0);
        ulc_optimizer_free(a);
        ulc_optimizer_free(b);
    }
    free(big);
    free(small);
    free(g);
    free(pp);
    free(gp);
    free(numel);
}

static void test_optim_bad_opts(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    size_t n = 4;
    ulc_optimizer *opt = NULL;
    ulc_optim_opts o = ulc_optim_defaults(ULC_OPTIM_ADAMW);
    o.beta2 = 1.0;
    CHECK(ulc_optimizer_create(&o, 1, &n, &opt, &ctx) == ULC_ERR_INVALID_ARG && !opt);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "betas");
    ulc_ctx_clear(&ctx);
    o = ulc_optim_defaults(ULC_OPTIM_SGD);
    o.nesterov = 1;
    CHECK(ulc_optimizer_create(&o, 1, &n, &opt, &ctx) == ULC_ERR_INVALID_ARG);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "nesterov");
    ulc_ctx_clear(&ctx);
    o = ulc_optim_defaults(ULC_OPTIM_SGD);
    o.lr = -1;
    CHECK(ulc_optimizer_create(&o, 1, &n, &opt, &ctx) == ULC_ERR_INVALID_ARG);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "learning rate");
    ulc_ctx_clear(&ctx);
    o = ulc_optim_defaults(ULC_OPTIM_SGD);
    o.schedule = ULC_LR_STEP;
    CHECK(ulc_optimizer_create(&o, 1, &n, &opt, &ctx) == ULC_ERR_INVALID_ARG);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "step_size");
    ulc_ctx_clear(&ctx);
}

/* ---- schedules ------------------------------------------------------------------------------ */

static int near(double a, double b) {
    return fabs(a - b) <= 1e-12 * (fabs(b) > 1 ? fabs(b) : 1);
}

static void test_schedules(void) {
    ulc_optim_opts o = ulc_optim_defaults(ULC_OPTIM_SGD);
    o.lr = 0.5;
    CHECK(ulc_lr_at(&o, 0, 10) == 0.5 && ulc_lr_at(&o, 9, 10) == 0.5);
    o.warmup_steps = 4; /* constant with warmup: 0, lr/4, lr/2, 3lr/4, lr, lr, ... */
    CHECK(ulc_lr_at(&o, 0, 10) == 0.0);
    CHECK(near(ulc_lr_at(&o, 1, 10), 0.125) && near(ulc_lr_at(&o, 3, 10), 0.375));
    CHECK(ulc_lr_at(&o, 4, 10) == 0.5 && ulc_lr_at(&o, 9, 10) == 0.5);
    /* linear: total 10, warmup 2; the rates transformers' get_linear_schedule_with_warmup(opt,
     * 2, 10) gives an SGD(lr=0.5) at steps 0..10 (opt.param_groups[0]['lr'] before each step) */
    o.schedule = ULC_LR_LINEAR;
    o.warmup_steps = 2;
    static const double hf[11] = {0.0, 0.25, 0.5, 0.4375, 0.375, 0.3125, 0.25, 0.1875, 0.125, 0.0625, 0.0};
    for (int s = 0; s <= 10; s++) CHECK(ulc_lr_at(&o, s, 10) == hf[s]);
    CHECK(ulc_lr_at(&o, 0, 10) == 0.0 && near(ulc_lr_at(&o, 1, 10), 0.25));
    CHECK(near(ulc_lr_at(&o, 2, 10), 0.5));
    CHECK(near(ulc_lr_at(&o, 6, 10), 0.25));
    CHECK(near(ulc_lr_at(&o, 9, 10), 0.5 / 8));
    CHECK(ulc_lr_at(&o, 10, 10) == 0.0 && ulc_lr_at(&o, 11, 10) == 0.0);
    o.warmup_steps = 0;
    CHECK(near(ulc_lr_at(&o, 0, 4), 0.5) && near(ulc_lr_at(&o, 3, 4), 0.125));
    /* step: gamma 0.1 every 3 steps after a warmup of 2 */
    o.schedule = ULC_LR_STEP;
    o.step_size = 3;
    o.gamma = 0.1;
    o.warmup_steps = 2;
    CHECK(near(ulc_lr_at(&o, 1, 20), 0.25));
    CHECK(ulc_lr_at(&o, 2, 20) == 0.5 && ulc_lr_at(&o, 4, 20) == 0.5);
    CHECK(near(ulc_lr_at(&o, 5, 20), 0.05) && near(ulc_lr_at(&o, 7, 20), 0.05));
    CHECK(near(ulc_lr_at(&o, 8, 20), 0.005));
}

/* ---- row order ------------------------------------------------------------------------------ */

static int is_permutation(const int64_t *p, int64_t n) {
    char *seen = calloc((size_t)n + 1, 1);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_permutation(void) {
    enum { N = 1000 };
    int64_t a[N], b[N], c[N], d[N];
    ulc_train_permutation(42, 0, N, a);
    ulc_train_permutation(42, 0, N, b);
    ulc_train_permutation(42, 1, N, c);
    ulc_train_permutation(43, 0, N, d);
    CHECK(is_permutation(a, N) && is_permutation(c, N) && is_permutation(d, N));
    CHECK(memcmp(a, b, sizeof a) == 0);     /* seeded */
    CHECK(memcmp(a, c, sizeof a) != 0);     /* another epoch, another order */
    CHECK(memcmp(a, d, sizeof a) != 0);     /* another seed, another order */
    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += a[i] == i;
    CHECK(fixed < 20); /* a shuffle, not the identity (about 1 fixed point expected) */
    /* every position takes every row about equally often over many seeds (n = 4) */
    int count[4][4] = {{0}};
    for (uint64_t s = 0; s < 4000; s++) {
        int64_t p[4];
        ulc_train_permutation(s, 0, 4, p);
        CHECK(is_permutation(p, 4));
        for (int i = 0; i < 4; i++) count[i][p[i]]++;
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) CHECK(count[i][j] > 850 && count[i][j] < 1150);
    int64_t one[1] = {5};
    ulc_train_permutation(1, 0, 1, one);
    CHECK(one[0] == 0);
    ulc_train_permutation(1, 0, 0, one); /* n = 0: nothing */
}

/* ---- datasets -------------------------------------------------------------------------------- */

/* A column over caller memory (BORROWED-style: data may be unaligned). */
typedef struct col {
    int64_t dims[4];
    ulc_tensor t;
} col;

static void col_init(col *c, const char *name, int dtype, int rank, const int64_t *dims,
                     const void *data) {
    memset(c, 0, sizeof *c);
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) {
        c->dims[i] = dims[i];
        n *= (uint64_t)dims[i];
    }
    c->t.name = name;
    c->t.dtype = dtype;
    c->t.rank = rank;
    c->t.dims = c->dims;
    c->t.numel = n;
    c->t.storage = ULC_STORAGE_BORROWED;
    c->t.data = data;
    c->t.nbytes = (size_t)n * ulc_dtype_bits(dtype) / 8;
}

static void test_dataset_check(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    float xs[12] = {0};
    int64_t ys[4] = {0};
    col cx, cy;
    col_init(&cx, "x", ULC_DT_F32, 2, (int64_t[]){4, 3}, xs);
    col_init(&cy, "y", ULC_DT_I64, 1, (int64_t[]){4}, ys);
    const char *names[2] = {"x", "y"};
    const ulc_tensor *cols[2] = {&cx.t, &cy.t};
    ulc_dataset d = {.n_cols = 2, .names = names, .cols = cols, .path = "data.safetensors"};
    CHECK(ulc_dataset_check(&d, &ctx) == ULC_OK && d.n_rows == 4);
    CHECK(ulc_dataset_find(&d, "y") == 1 && ulc_dataset_find(&d, "z") == -1);
    col_init(&cy, "y", ULC_DT_I64, 1, (int64_t[]){3}, ys);
    CHECK(ulc_dataset_check(&d, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "data.safetensors: column 'y' has 3 rows");
    ulc_ctx_clear(&ctx);
    col_init(&cy, "y", ULC_DT_I64, 0, NULL, ys);
    CHECK(ulc_dataset_check(&d, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "column 'y' is a scalar");
    ulc_ctx_clear(&ctx);
    col_init(&cy, "y", ULC_DT_I64, 1, (int64_t[]){4}, ys);
    cy.t.nbytes = 8;
    CHECK(ulc_dataset_check(&d, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "column 'y': 8 bytes");
    ulc_ctx_clear(&ctx);
}

/* ---- the loop on linear regression ------------------------------------------------------- */

enum { IN = 3, OUT = 2, ROWS = 10 };

static ulc_value *add_io(ulc_graph *g, const char *name, int input, int rank, const ulc_dim *dims,
                         ulc_ctx *ctx) {
    ulc_value *v = ulc_graph_add_value(g, name, ctx);
    v->flags |= (input ? ULC_VALUE_INPUT : ULC_VALUE_OUTPUT) | ULC_VALUE_HAS_TYPE;
    v->dtype = ULC_DT_F32;
    ulc_value_set_shape(g, v, rank, dims, ctx);
    ulc_ptrvec_push(input ? &g->inputs : &g->outputs, v);
    return v;
}

static ulc_value *node(ulc_graph *g, const char *op, const char *out, ulc_value *a, ulc_value *b,
                       ulc_ctx *ctx) {
    ulc_node *n = ulc_graph_add_node(g, "", op, out, b ? 2 : 1, 1, 1, ctx);
    ulc_node_set_input(n, 0, a);
    if (b) ulc_node_set_input(n, 1, b);
    ulc_value *v = ulc_graph_get_value(g, out);
    if (!v) v = ulc_graph_add_value(g, out, ctx);
    ulc_node_set_output(n, 0, v, ctx);
    return v;
}

static void int_attr(ulc_graph *g, const char *out, const char *name, int64_t value) {
    ulc_node *n = ulc_graph_get_value(g, out)->producer;
    ulc_attr *a = ulc_node_add_attr(n, name);
    a->type = ULC_ATTR_INT;
    a->has_type = 1;
    a->i = value;
    a->has_i = 1;
}

static ulc_value *scalar_init(ulc_graph *g, const char *name, float value, ulc_ctx *ctx) {
    ulc_tensor *t = ulc_tensor_new(g, name, ULC_DT_F32, 0, NULL, ctx);
    float *d = malloc(sizeof(float));
    *d = value;
    ulc_tensor_set_owned(g, t, d, sizeof(float), ctx);
    ulc_value *v = ulc_graph_add_value(g, name, ctx);
    ulc_value_set_init(g, v, t, ctx);
    return v;
}

/* An empty model at IR 8, opset 17, whose graph is called name. */
static ulc_model *new_model(const char *name) {
    ulc_model *m = ulc_model_create();
    ulc_graph *g = m->graph;
    m->has_ir_version = 1;
    m->ir_version = 8;
    m->n_opsets = 1;
    m->opsets = ulc_arena_calloc(g->arena, 1, sizeof *m->opsets);
    m->opsets[0].domain = "";
    m->opsets[0].version = 17;
    m->opsets[0].has_version = 1;
    g->name = name;
    return m;
}

/* y = x @ W; loss = ReduceMean((y - t)^2); dW = x^T @ ((2 / size(d)) * d), d = y - t: the
 * gradient by hand, with the batch's size read from the data so a partial batch is right.
 * bad_grad: dW is divided by zero (a finite loss with an infinite gradient). */
static ulc_model *build_linreg(int bad_grad, ulc_ctx *ctx) {
    ulc_model *m = new_model("linreg_train");
    ulc_graph *g = m->graph;
    ulc_dim xd[2] = {{-1, "N", NULL}, {IN, NULL, NULL}};
    ulc_dim td[2] = {{-1, "N", NULL}, {OUT, NULL, NULL}};
    ulc_dim wd[2] = {{IN, NULL, NULL}, {OUT, NULL, NULL}};
    ulc_value *x = add_io(g, "x", 1, 2, xd, ctx);
    ulc_value *t = add_io(g, "t", 1, 2, td, ctx);
    ulc_value *w = add_io(g, "W", 1, 2, wd, ctx);
    ulc_value *loss = add_io(g, "loss", 0, 0, NULL, ctx);
    add_io(g, "dW", 0, 2, wd, ctx);
    (void)loss;
    ulc_value *y = node(g, "MatMul", "y", x, w, ctx);
    ulc_value *d = node(g, "Sub", "d", y, t, ctx);
    ulc_value *sq = node(g, "Mul", "sq", d, d, ctx);
    node(g, "ReduceMean", "loss", sq, NULL, ctx);
    int_attr(g, "loss", "keepdims", 0);
    ulc_value *sz = node(g, "Size", "size", d, NULL, ctx);
    ulc_value *szf = node(g, "Cast", "size_f", sz, NULL, ctx);
    int_attr(g, "size_f", "to", ULC_DT_F32);
    ulc_value *scale = node(g, "Div", "scale", scalar_init(g, "two", 2.0f, ctx), szf, ctx);
    ulc_value *gd = node(g, "Mul", "gd", d, scale, ctx);
    ulc_value *xt = node(g, "Transpose", "xT", x, NULL, ctx);
    if (bad_grad) {
        ulc_value *raw = node(g, "MatMul", "dW_raw", xt, gd, ctx);
        node(g, "Div", "dW", raw, scalar_init(g, "zero", 0.0f, ctx), ctx);
    } else {
        node(g, "MatMul", "dW", xt, gd, ctx);
    }
    return m;
}

static const char *k_params[1] = {"W"};
static const char *k_grads[1] = {"dW"};
static const char *k_data_in[2] = {"x", "t"};
static const char *k_data_cols[2] = {"features", "target"};

/* The dataset: x in [-1, 1], t = x @ W_true (+ a little structure the model can fit). Columns
 * start one byte into their buffers: unaligned, as a mapped file's may be. */
typedef struct linreg_data {
    uint8_t *xbuf, *tbuf;
    float x[ROWS][IN], t[ROWS][OUT];
    col cx, ct;
    const char *names[2];
    const ulc_tensor *cols[2];
    ulc_dataset ds;
} linreg_data;

static void linreg_data_init(linreg_data *L) {
    static const float w_true[IN][OUT] = {{1.5f, -2.0f}, {0.5f, 1.0f}, {-1.0f, 0.25f}};
    for (int r = 0; r < ROWS; r++) {
        for (int i = 0; i < IN; i++) L->x[r][i] = sinf((float)((r * IN + i) * (r * IN + i)) * 0.7f + 0.3f);
        for (int o = 0; o < OUT; o++) {
            float s = 0.0f;
            for (int i = 0; i < IN; i++) s += L->x[r][i] * w_true[i][o];
            L->t[r][o] = s;
        }
    }
    L->xbuf = malloc(sizeof L->x + 1);
    L->tbuf = malloc(sizeof L->t + 1);
    memcpy(L->xbuf + 1, L->x, sizeof L->x);
    memcpy(L->tbuf + 1, L->t, sizeof L->t);
    col_init(&L->cx, "features", ULC_DT_F32, 2, (int64_t[]){ROWS, IN}, L->xbuf + 1);
    col_init(&L->ct, "target", ULC_DT_F32, 2, (int64_t[]){ROWS, OUT}, L->tbuf + 1);
    L->names[0] = "features";
    L->names[1] = "target";
    L->cols[0] = &L->cx.t;
    L->cols[1] = &L->ct.t;
    L->ds = (ulc_dataset){.n_cols = 2, .names = L->names, .cols = L->cols, .path = "lin.safetensors"};
}

static void linreg_data_free(linreg_data *L) {
    free(L->xbuf);
    free(L->tbuf);
}

static ulc_train_graph linreg_tg(ulc_model *m) {
    return (ulc_train_graph){.model = m, .n_params = 1, .param_inputs = k_params,
                             .grad_outputs = k_grads, .loss = "loss", .n_data = 2,
                             .data_inputs = k_data_in, .data_cols = k_data_cols};
}

static ulc_train_opts quiet_opts(void) {
    ulc_train_opts o = ulc_train_defaults();
    o.quiet = 1;
    o.threads = 1;
    return o;
}

static void w_init(float *w) {
    for (int i = 0; i < IN * OUT; i++) w[i] = 0.1f * (float)(i % 3) - 0.05f;
}

static void test_loop_learns(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_linreg(0, &ctx);
    CHECK(ctx.status == ULC_OK && ulc_graph_verify(m->graph, &ctx) == ULC_OK);
    linreg_data D;
    linreg_data_init(&D);
    CHECK(ulc_dataset_check(&D.ds, &ctx) == ULC_OK && D.ds.n_rows == ROWS);
    ulc_train_graph tg = linreg_tg(m);
    ulc_train_opts o = quiet_opts();
    o.optim = ulc_optim_defaults(ULC_OPTIM_SGD);
    o.optim.lr = 0.2;
    o.optim.momentum = 0.5;
    o.epochs = 30;
    o.batch_size = 4; /* 10 rows: 4, 4, 2 */
    o.seed = 7;
    float w[IN * OUT];
    w_init(w);
    float *params[1] = {w};
    ulc_train_stats st;
    ulc_status s = ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx);
    if (s != ULC_OK) fprintf(stderr, "  %s\n", ulc_ctx_message(&ctx));
    CHECK(s == ULC_OK);
    CHECK(st.steps == 90 && !st.interrupted);
    CHECK(st.loss_curve && st.first_loss == st.loss_curve[0] && st.last_loss == st.loss_curve[89]);
    CHECK(st.last_loss < 1e-3 * st.first_loss);
    CHECK(st.mean_last_epoch_loss < 1e-3 * st.first_loss);
    CHECK(st.seconds > 0 && st.samples_per_s > 0);
    CHECK(fabsf(w[0] - 1.5f) < 0.01f && fabsf(w[1] + 2.0f) < 0.01f && fabsf(w[5] - 0.25f) < 0.01f);
    ulc_train_stats_clear(&st);

    /* AdamW with a linear schedule and warmup learns too; max_steps stops early */
    w_init(w);
    o.optim = ulc_optim_defaults(ULC_OPTIM_ADAMW);
    o.optim.lr = 0.05;
    o.optim.schedule = ULC_LR_LINEAR;
    o.optim.warmup_steps = 5;
    o.max_steps = 80;
    s = ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx);
    CHECK(s == ULC_OK && st.steps == 80);
    CHECK(st.last_loss < 0.05 * st.first_loss);
    ulc_train_stats_clear(&st);
    ulc_model_free(m);
    linreg_data_free(&D);
}

/* Unshuffled, one epoch of batches 4, 4, 2: the parameters SGD gives, computed here in double. */
static void test_loop_partial_batch(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_linreg(0, &ctx);
    linreg_data D;
    linreg_data_init(&D);
    ulc_dataset_check(&D.ds, &ctx);
    ulc_train_graph tg = linreg_tg(m);
    ulc_train_opts o = quiet_opts();
    o.optim = ulc_optim_defaults(ULC_OPTIM_SGD);
    o.optim.lr = 0.1;
    o.batch_size = 4;
    o.shuffle = 0;
    float w[IN * OUT];
    double ref[IN * OUT];
    w_init(w);
    for (int i = 0; i < IN * OUT; i++) ref[i] = w[i];
    for (int at = 0; at < ROWS; at += 4) {
        int b = ROWS - at < 4 ? ROWS - at : 4;
        double grad[IN * OUT] = {0};
        for (int r = at; r < at + b; r++)
            for (int oo = 0; oo < OUT; oo++) {
                double y = 0;
                for (int i = 0; i < IN; i++) y += D.x[r][i] * ref[i * OUT + oo];
                double dd = 2.0 / (b * OUT) * (y - D.t[r][oo]);
                for (int i = 0; i < IN; i++) grad[i * OUT + oo] += D.x[r][i] * dd;
            }
        for (int i = 0; i < IN * OUT; i++) ref[i] -= 0.1 * grad[i];
    }
    float *params[1] = {w};
    ulc_train_stats st;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_OK);
    CHECK(st.steps == 3);
    for (int i = 0; i < IN * OUT; i++) CHECK(fabs(w[i] - ref[i]) < 1e-5);
    ulc_train_stats_clear(&st);
    /* drop_last: two full batches */
    o.drop_last = 1;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_OK);
    CHECK(st.steps == 2);
    ulc_train_stats_clear(&st);
    /* no full batch at all */
    o.batch_size = 11;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "make no full batch of 11");
    ulc_ctx_clear(&ctx);
    ulc_train_stats_clear(&st);
    ulc_model_free(m);
    linreg_data_free(&D);
}

static void test_loop_deterministic(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_linreg(0, &ctx);
    linreg_data D;
    linreg_data_init(&D);
    ulc_dataset_check(&D.ds, &ctx);
    ulc_train_graph tg = linreg_tg(m);
    ulc_train_opts o = quiet_opts();
    o.optim.lr = 0.01;
    o.epochs = 3;
    o.batch_size = 3;
    o.seed = 1234;
    float a[IN * OUT], b[IN * OUT], c[IN * OUT];
    float *pa[1] = {a}, *pb[1] = {b}, *pc[1] = {c};
    w_init(a);
    w_init(b);
    w_init(c);
    ulc_train_stats sa, sb, sc;
    CHECK(ulc_train_run(&tg, &D.ds, &o, pa, &sa, &ctx) == ULC_OK);
    CHECK(ulc_train_run(&tg, &D.ds, &o, pb, &sb, &ctx) == ULC_OK);
    o.seed = 1235;
    CHECK(ulc_train_run(&tg, &D.ds, &o, pc, &sc, &ctx) == ULC_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(sa.steps == 12 && memcmp(sa.loss_curve, sb.loss_curve, 12 * sizeof(float)) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0); /* another seed, another order, other bits */
    ulc_train_stats_clear(&sa);
    ulc_train_stats_clear(&sb);
    ulc_train_stats_clear(&sc);
    ulc_model_free(m);
    linreg_data_free(&D);
}

static void test_loop_stop_and_errors(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_linreg(0, &ctx);
    linreg_data D;
    linreg_data_init(&D);
    ulc_dataset_check(&D.ds, &ctx);
    ulc_train_graph tg = linreg_tg(m);
    ulc_train_opts o = quiet_opts();
    o.batch_size = 2;
    o.epochs = 5;
    float w[IN * OUT];
    w_init(w);
    float *params[1] = {w};
    ulc_train_stats st;

    /* the stop flag, set (as a SIGINT handler would) before the first step ends */
    volatile sig_atomic_t stop = 1;
    o.stop = &stop;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_ERR_INTERRUPTED);
    CHECK(st.interrupted == 1 && st.steps == 1);
    CHECK(strcmp(ulc_ctx_message(&ctx), "interrupted at step 1") == 0);
    ulc_ctx_clear(&ctx);
    ulc_train_stats_clear(&st);
    o.stop = NULL;

    /* a NaN in the data: the loss is not finite at step 1 */
    w_init(w);
    float saved = D.x[0][0];
    float nan = NAN;
    memcpy(D.xbuf + 1, &nan, sizeof nan);
    o.shuffle = 0;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "step 1: loss 'loss' is nan");
    CHECK(st.steps == 0);
    ulc_ctx_clear(&ctx);
    ulc_train_stats_clear(&st);
    memcpy(D.xbuf + 1, &saved, sizeof saved);

    /* an infinite gradient with a finite loss */
    ulc_model *bad = build_linreg(1, &ctx);
    ulc_train_graph tgb = linreg_tg(bad);
    CHECK(ulc_train_run(&tgb, &D.ds, &o, params, &st, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "step 1: gradient of parameter 'W' is not finite");
    ulc_ctx_clear(&ctx);
    ulc_train_stats_clear(&st);
    ulc_model_free(bad);

    /* a column of a dtype the trainer does not batch */
    int32_t ints[ROWS * OUT] = {0};
    col ci;
    col_init(&ci, "target", ULC_DT_I32, 2, (int64_t[]){ROWS, OUT}, ints);
    D.cols[1] = &ci.t;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_ERR_UNSUPPORTED);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "lin.safetensors: column 'target' is i32 (expected f32 or i64)");
    ulc_ctx_clear(&ctx);
    ulc_train_stats_clear(&st);
    D.cols[1] = &D.ct.t;

    /* a missing column, a column of the wrong width, a parameter that is not an input */
    const char *cols2[2] = {"features", "labels"};
    tg.data_cols = cols2;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "lin.safetensors: no column 'labels' (graph input 't' reads it)");
    ulc_ctx_clear(&ctx);
    ulc_train_stats_clear(&st);
    const char *cols3[2] = {"features", "features"};
    tg.data_cols = cols3;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "column 'features' has 3 in dim 1, graph input 't' fixes it to 2");
    ulc_ctx_clear(&ctx);
    ulc_train_stats_clear(&st);
    tg.data_cols = k_data_cols;
    const char *p2[1] = {"V"};
    tg.param_inputs = p2;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "parameter 'V' is not a graph input");
    ulc_ctx_clear(&ctx);
    ulc_train_stats_clear(&st);
    tg.param_inputs = k_params;
    o.batch_size = 0;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_ERR_INVALID_ARG);
    ulc_ctx_clear(&ctx);
    ulc_train_stats_clear(&st);
    ulc_model_free(m);
    linreg_data_free(&D);
}

/* Progress: one line per epoch into a file; a redrawn bar on a terminal; nothing when quiet. */
static void test_progress(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_linreg(0, &ctx);
    linreg_data D;
    linreg_data_init(&D);
    ulc_dataset_check(&D.ds, &ctx);
    ulc_train_graph tg = linreg_tg(m);
    ulc_train_opts o = quiet_opts();
    o.quiet = 0;
    o.epochs = 3;
    o.batch_size = 4;
    o.label = "rfa";
    float w[IN * OUT];
    float *params[1] = {w};
    ulc_train_stats st;
    char buf[4096];

    FILE *f = tmpfile();
    o.progress = f;
    w_init(w);
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_OK);
    ulc_train_stats_clear(&st);
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    CHECK_CONTAINS(buf, "rfa: epoch 1/3  loss ");
    CHECK_CONTAINS(buf, "rfa: epoch 3/3  loss ");
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += buf[i] == '\n';
    CHECK(lines == 3 && !strchr(buf, '\r'));

    f = tmpfile();
    o.progress = f;
    o.quiet = 1;
    CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_OK);
    ulc_train_stats_clear(&st);
    CHECK(ftell(f) == 0);
    fclose(f);

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0 && ptsname(master)) {
        int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
        FILE *tty = slave >= 0 ? fdopen(slave, "w") : NULL;
        if (tty) {
            o.quiet = 0;
            o.progress = tty;
            CHECK(ulc_train_run(&tg, &D.ds, &o, params, &st, &ctx) == ULC_OK);
            ulc_train_stats_clear(&st);
            fclose(tty);
            ssize_t got = 0; /* everything written, in as many reads as the terminal gives */
            struct pollfd pfd = {.fd = master, .events = POLLIN};
            while ((size_t)got < sizeof buf - 1 && poll(&pfd, 1, 200) == 1) {
                ssize_t r = read(master, buf + got, sizeof buf - 1 - (size_t)got);
                if (r <= 0) break;
                got += r;
            }
            buf[got] = '\0';
            CHECK_CONTAINS(buf, "\rrfa epoch 3/3 step 9/9 loss ");
            CHECK_CONTAINS(buf, "samples/s ETA 0:00");
            CHECK(got > 0 && buf[got - 1] == '\n');
        }
    } else {
        fprintf(stderr, "  progress: no pseudo-terminal here, the bar is not checked\n");
    }
    if (master >= 0) close(master);
    ulc_model_free(m);
    linreg_data_free(&D);
}

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* ---- packed weights shared across plans (runtime/cpu/k_nn_pack.c) ------------------------- */

size_t ulc_nn_pack_bytes(void); /* runtime/cpu/k_nn.h (oneDNN's header is not on this path) */

enum { PK_IN = 256, PK_OUT = 512 };

/* y = x @ W, W a [256, 512] initializer: packed by its MatMul (oneDNN's layout or a padded copy). */
static ulc_model *build_packed(float *w, ulc_ctx *ctx) {
    ulc_model *m = new_model("packed");
    ulc_graph *g = m->graph;
    ulc_dim xd[2] = {{-1, "N", NULL}, {PK_IN, NULL, NULL}};
    ulc_value *x = add_io(g, "x", 1, 2, xd, ctx);
    add_io(g, "y", 0, 0, NULL, ctx)->rank = -1;
    ulc_tensor *t = ulc_tensor_new(g, "W", ULC_DT_F32, 2, (int64_t[]){PK_IN, PK_OUT}, ctx);
    ulc_tensor_set_owned(g, t, w, sizeof(float) * PK_IN * PK_OUT, ctx);
    ulc_value *wv = ulc_graph_add_value(g, "W", ctx);
    ulc_value_set_init(g, wv, t, ctx);
    node(g, "MatMul", "y", x, wv, ctx);
    return m;
}

/* Runs s on n rows of x; 1 when y matches x @ w to float rounding. */
static int packed_run_ok(ulc_session *s, const float *w, int n, ulc_ctx *ctx) {
    static float x[8 * PK_IN];
    for (int i = 0; i < n * PK_IN; i++) x[i] = sinf((float)i * 0.37f);
    if (ulc_session_set_f32(s, "x", x, 2, (int64_t[]){n, PK_IN}, ctx) != ULC_OK || ulc_session_run(s, ctx) != ULC_OK)
        return 0;
    const ulc_rt_tensor *y = ulc_session_output(s, "y");
    if (!y || y->rank != 2 || y->dims[0] != n || y->dims[1] != PK_OUT) return 0;
    const float *yd = y->data;
    for (int r = 0; r < n; r++)
        for (int c = 0; c < PK_OUT; c += 37) {
            double ref = 0;
            for (int i = 0; i < PK_IN; i++) ref += (double)x[r * PK_IN + i] * w[i * PK_OUT + c];
            if (fabs(yd[r * PK_OUT + c] - ref) > 1e-4 * (1 + fabs(ref))) return 0;
        }
    return 1;
}

/* A second plan (another batch size) and a second session reuse the packed weight; a model whose
 * weight holds other values does not, even while the first still runs; all of it is freed with
 * the last plan. */
static void test_packed_weights_shared(void) {
    ulc_ctx ctx = {0};
    size_t before = ulc_nn_pack_bytes();
    float *w = malloc(sizeof(float) * PK_IN * PK_OUT), *w2 = malloc(sizeof(float) * PK_IN * PK_OUT);
    for (int i = 0; i < PK_IN * PK_OUT; i++) {
        w[i] = cosf((float)i * 0.011f) * 0.1f;
        w2[i] = w[i] + 0.5f;
    }
    float *wcopy = malloc(sizeof(float) * PK_IN * PK_OUT), *w2copy = malloc(sizeof(float) * PK_IN * PK_OUT);
    memcpy(wcopy, w, sizeof(float) * PK_IN * PK_OUT);
    memcpy(w2copy, w2, sizeof(float) * PK_IN * PK_OUT);
    ulc_model *m = build_packed(w, &ctx), *m2 = build_packed(w2, &ctx);
    ulc_session_opts o = ulc_session_defaults();
    o.threads = 2;
    ulc_session *s = NULL, *s2 = NULL, *s3 = NULL;
    CHECK(ulc_session_create(m, &o, &s, &ctx) == ULC_OK);
    CHECK(packed_run_ok(s, wcopy, 3, &ctx));
    size_t one = ulc_nn_pack_bytes() - before;
    CHECK(one >= sizeof(float) * PK_IN * PK_OUT); /* the weight was packed */
    CHECK(packed_run_ok(s, wcopy, 5, &ctx));      /* a second plan */
    CHECK(ulc_session_plan_count(s) == 2);
    CHECK(ulc_nn_pack_bytes() - before == one);   /* sharing the first plan's */
    CHECK(ulc_session_create(m, &o, &s2, &ctx) == ULC_OK);
    CHECK(packed_run_ok(s2, wcopy, 3, &ctx));
    CHECK(ulc_nn_pack_bytes() - before == one);   /* another session too */
    CHECK(ulc_session_create(m2, &o, &s3, &ctx) == ULC_OK);
    CHECK(packed_run_ok(s3, w2copy, 3, &ctx));    /* its own values, not the first model's */
    CHECK(ulc_nn_pack_bytes() - before == 2 * one);
    ulc_session_free(s);
    ulc_session_free(s2);
    CHECK(ulc_nn_pack_bytes() - before == one);
    ulc_session_free(s3);
    CHECK(ulc_nn_pack_bytes() == before);
    if (ctx.status != ULC_OK) fprintf(stderr, "  %s\n", ctx.msg);
    ulc_model_free(m);
    ulc_model_free(m2);
    free(wcopy);
    free(w2copy);
}

static const test_case k_tests[] = {
    {"optim_torch", test_optim_torch},
    {"optim_threads", test_optim_threads},
    {"optim_bad_opts", test_optim_bad_opts},
    {"schedules", test_schedules},
    {"permutation", test_permutation},
    {"dataset_check", test_dataset_check},
    {"loop_learns", test_loop_learns},
    {"loop_partial_batch", test_loop_partial_batch},
    {"loop_deterministic", test_loop_deterministic},
    {"loop_stop_and_errors", test_loop_stop_and_errors},
    {"progress", test_progress},
    {"packed_weights_shared", test_packed_weights_shared},
};

int main(int argc, char **argv) {
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof k_tests / sizeof *k_tests; i++) {
        if (argc > 1 && !strstr(k_tests[i].name, argv[1])) continue;
        int before = g_failed_checks;
        k_tests[i].fn();
        int ok = g_failed_checks == before;
        printf("%s %s\n", ok ? "PASS" : "FAIL", k_tests[i].name);
        if (ok) passed++;
        else failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
