/*
 * optim.c — torch.optim's SGD and AdamW (torch 1.13, the single-tensor path that is its
 * default) and the learning-rate schedules of train.h.
 *
 * Bits. torch writes these updates as a few in-place tensor ops; what matters for bitwise
 * agreement is how its CPU kernels round. Measured on torch 1.13 (AVX2 kernels, built by GCC,
 * which contracts a + s*b): `a.add_(b, alpha=s)` is one fused multiply-add fma(b, s, a);
 * `a.addcmul_(b, c, value=s)` is fma(s*b, c, a); `a.addcdiv_(b, c, value=s)` is a + (s*b)/c
 * (no fusion through the division); mul_/div_ by a Python scalar use the scalar rounded to
 * float32. Python-side scalars (1 - lr*wd, lr / bias_correction1, sqrt(bias_correction2)) are
 * doubles rounded to float32 where the kernel takes them. The loops below spell out exactly
 * those operations with fmaf, and are compiled twice: with the FMA instruction where the CPU
 * has it, else through libm's exact fmaf — the same bits either way (ULC_NO_SIMD=1 forces the
 * second; the unit test compares them). The file relies on ISO C's default of no implicit
 * contraction (-std=c11): every fusion here is an explicit fmaf.
 *
 * Each update is element by element, so splitting a tensor over OpenMP threads changes nothing.
 */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_FMA_PATH 1
#endif

/* Tensors smaller than this are updated by one thread (a team costs more than the work). */
#define PAR_MIN 65536

struct ulc_optimizer {
    ulc_optim_opts o;
    int n;
    size_t *numel; /* n entries */
    float **m;     /* SGD: momentum buffers (momentum != 0); AdamW: exp_avg */
    float **v;     /* AdamW: exp_avg_sq */
    long steps;    /* updates done */
    int fma;       /* the hardware-FMA loops */
};

ulc_optim_opts ulc_optim_defaults(ulc_optim_kind kind) {
    ulc_optim_opts o = {.kind = kind, .lr = 1e-3, .schedule = ULC_LR_CONSTANT, .gamma = 0.1};
    if (kind == ULC_OPTIM_ADAMW) {
        o.beta1 = 0.9;
        o.beta2 = 0.999;
        o.eps = 1e-8;
        o.weight_decay = 1e-2; /* torch.optim.AdamW's default */
    }
    return o;
}

double ulc_lr_at(const ulc_optim_opts *o, long step, long total_steps) {
    long w = o->warmup_steps > 0 ? o->warmup_steps : 0;
    if (step < w) return o->lr * ((double)step / (double)w);
    switch (o->schedule) {
    case ULC_LR_LINEAR: {
        long rest = total_steps - w > 1 ? total_steps - w : 1;
        double f = (double)(total_steps - step) / (double)rest;
        return o->lr * (f > 0.0 ? f : 0.0);
    }
    case ULC_LR_STEP: {
        long k = o->step_size > 0 ? (step - w) / o->step_size : 0;
        return o->lr * pow(o->gamma, (double)k);
    }
    case ULC_LR_CONSTANT:
    default: return o->lr;
    }
}

/* ---- the update loops ---------------------------------------------------------------------- */

/* Scalars of one SGD update, already rounded to float32 as torch's kernels take them. */
typedef struct sgd_k {
    float wd, mom, neg_lr;
    int use_wd, use_mom, nesterov, first;
} sgd_k;

typedef struct adamw_k {
    float decay, b1, omb1, b2, omb2, bc2s, eps, neg_ss;
} adamw_k;

/* torch._single_tensor_sgd for elements [lo, hi). */
static inline __attribute__((always_inline)) void sgd_loop(float *p, const float *g, float *buf,
                                                           size_t lo, size_t hi, sgd_k k) {
    for (size_t i = lo; i < hi; i++) {
        float d = g[i];
        if (k.use_wd) d = fmaf(p[i], k.wd, d);            /* d_p.add(param, alpha=wd) */
        if (k.use_mom) {
            float b;
            if (k.first) b = d;                          /* buf = clone(d_p) */
            else {
                float bm = buf[i] * k.mom;               /* buf.mul_(momentum) */
                b = bm + d;                              /* .add_(d_p, alpha=1 - 0): exact fma */
            }
            buf[i] = b;
            d = k.nesterov ? fmaf(b, k.mom, d) : b;      /* d_p.add(buf, alpha=momentum) */
        }
        p[i] = fmaf(d, k.neg_lr, p[i]);                 /* param.add_(d_p, alpha=-lr) */
    }
}

/* torch._single_tensor_adamw for elements [lo, hi). */
static inline __attribute__((always_inline)) void adamw_loop(float *p, const float *g, float *m,
                                                             float *v, size_t lo, size_t hi,
                                                             adamw_k k) {
    for (size_t i = lo; i < hi; i++) {
        float gi = g[i];
        float pi = p[i] * k.decay;                        /* param.mul_(1 - lr*wd) */
        float mi = fmaf(gi, k.omb1, m[i] * k.b1);          /* exp_avg.mul_(b1).add_(g, 1-b1) */
        float vi = fmaf(k.omb2 * gi, gi, v[i] * k.b2);     /* exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2) */
        float den = sqrtf(vi) / k.bc2s + k.eps;            /* (sqrt(v) / bc2_sqrt).add_(eps) */
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + (k.neg_ss * mi) / den;                /* param.addcdiv_(m, den, -step_size) */
    }
}

/* Each loop compiled for the FMA instruction and for plain x86-64 (libm's exact fmaf). The
 * thread team is opened by the caller: OpenMP outlines a parallel region before inlining, so a
 * region inside these would lose the target attribute. */
static void sgd_plain(float *p, const float *g, float *buf, size_t lo, size_t hi, sgd_k k) {
    sgd_loop(p, g, buf, lo, hi, k);
}
static void adamw_plain(float *p, const float *g, float *m, float *v, size_t lo, size_t hi,
                        adamw_k k) {
    adamw_loop(p, g, m, v, lo, hi, k);
}
#ifdef HAVE_FMA_PATH
__attribute__((target("avx2,fma"))) static void sgd_fma(float *p, const float *g, float *buf,
                                                        size_t lo, size_t hi, sgd_k k) {
    sgd_loop(p, g, buf, lo, hi, k);
}
__attribute__((target("avx2,fma"))) static void adamw_fma(float *p, const float *g, float *m,
                                                          float *v, size_t lo, size_t hi,
                                                          adamw_k k) {
    adamw_loop(p, g, m, v, lo, hi, k);
}
#endif

/* This thread's share [*lo, *hi) of n elements (all of them outside a parallel region). */
static void my_share(size_t n, size_t *lo, size_t *hi) {
#ifdef _OPENMP
    size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
    size_t q = n / nt, r = n % nt;
    *lo = t * q + (t < r ? t : r);
    *hi = *lo + q + (t < r);
#else
    *lo = 0;
    *hi = n;
#endif
}

/* ---- the optimizer ------------------------------------------------------------------------- */

static ulc_status check_opts(const ulc_optim_opts *o, ulc_ctx *ctx) {
    const char *what = o->kind == ULC_OPTIM_SGD ? "sgd" : "adamw";
    if (o->kind != ULC_OPTIM_SGD && o->kind != ULC_OPTIM_ADAMW)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "optimizer: unknown kind %d", (int)o->kind);
    if (!(o->lr >= 0.0) || !isfinite(o->lr))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: learning rate %g (expected a finite value >= 0)",
                        what, o->lr);
    if (!(o->weight_decay >= 0.0) || !isfinite(o->weight_decay))
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "%s: weight decay %g (expected >= 0)", what,
                        o->weight_decay);
    if (o->kind == ULC_OPTIM_SGD) {
        if (!(o->momentum >= 0.0) || !isfinite(o->momentum))
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "sgd: momentum %g (expected >= 0)", o->momentum);
        if (o->nesterov && o->momentum == 0.0)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "sgd: nesterov needs a momentum > 0");
    } else {
        if (!(o->beta1 >= 0.0 && o->beta1 < 1.0) || !(o->beta2 >= 0.0 && o->beta2 < 1.0))
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                            "adamw: betas (%g, %g) (expected each in [0, 1))", o->beta1, o->beta2);
        if (!(o->eps >= 0.0) || !isfinite(o->eps))
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "adamw: eps %g (expected >= 0)", o->eps);
    }
    if (o->schedule != ULC_LR_CONSTANT && o->schedule != ULC_LR_LINEAR && o->schedule != ULC_LR_STEP)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "lr schedule: unknown kind %d", (int)o->schedule);
    if (o->warmup_steps < 0)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "lr schedule: warmup of %ld steps (expected >= 0)",
                        o->warmup_steps);
    if (o->schedule == ULC_LR_STEP) {
        if (o->step_size < 1)
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG,
                            "lr schedule step: step_size %ld (expected >= 1)", o->step_size);
        if (!(o->gamma > 0.0) || !isfinite(o->gamma))
            return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "lr schedule step: gamma %g (expected > 0)",
                            o->gamma);
    }
    return ULC_OK;
}

static int simd_disabled(void) {
    const char *e = getenv("ULC_NO_SIMD");
    return e && *e && strcmp(e, "0") != 0;
}

static ulc_status create(const ulc_optim_opts *o, int n, const size_t *numel, int state,
                         ulc_optimizer **out, ulc_ctx *ctx);

ulc_status ulc_optimizer_create(const ulc_optim_opts *o, int n, const size_t *numel,
                                ulc_optimizer **out, ulc_ctx *ctx) {
    return create(o, n, numel, 1, out, ctx);
}

ulc_status ulc_optimizer_create_stateless(const ulc_optim_opts *o, int n, const size_t *numel,
                                          ulc_optimizer **out, ulc_ctx *ctx) {
    return create(o, n, numel, 0, out, ctx);
}

static ulc_status create(const ulc_optim_opts *o, int n, const size_t *numel, int state,
                         ulc_optimizer **out, ulc_ctx *ctx) {
    *out = NULL;
    ULC_TRY(check_opts(o, ctx));
    if (n < 0) return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "optimizer: %d parameters", n);
    ulc_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) return ulc_fail(ctx, ULC_ERR_NOMEM, "optimizer: out of memory");
    opt->o = *o;
    opt->n = n;
    size_t cnt = n > 0 ? (size_t)n : 1;
    opt->numel = calloc(cnt, sizeof *opt->numel);
    opt->m = calloc(cnt, sizeof *opt->m);
    opt->v = calloc(cnt, sizeof *opt->v);
    if (!opt->numel || !opt->m || !opt->v) goto nomem;
    int need_m = state && (o->kind == ULC_OPTIM_ADAMW || o->momentum != 0.0);
    int need_v = state && o->kind == ULC_OPTIM_ADAMW;
    for (int i = 0; i < n; i++) {
        opt->numel[i] = numel[i];
        size_t e = numel[i] ? numel[i] : 1;
        if (need_m && !(opt->m[i] = calloc(e, sizeof(float)))) goto nomem;
        if (need_v && !(opt->v[i] = calloc(e, sizeof(float)))) goto nomem;
    }
#ifdef HAVE_FMA_PATH
    opt->fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !simd_disabled();
#else
    (void)simd_disabled;
#endif
    *out = opt;
    return ULC_OK;
nomem:
    ulc_optimizer_free(opt);
    return ulc_fail(ctx, ULC_ERR_NOMEM, "optimizer: out of memory for the state of %d parameters", n);
}

void ulc_optimizer_free(ulc_optimizer *opt) {
    if (!opt) return;
    for (int i = 0; opt->m && opt->v && i < opt->n; i++) {
        free(opt->m[i]);
        free(opt->v[i]);
    }
    free(opt->m);
    free(opt->v);
    free(opt->numel);
    free(opt);
}

/* One step's arguments, for the per-parameter updates below. */
typedef struct step_args {
    const ulc_optimizer *opt;
    float *const *params;
    const float *const *grads;
    sgd_k sgd;
    adamw_k adamw;
} step_args;

/* Parameter i's elements [lo, hi) updated by SGD or AdamW, on the FMA path where there is one. */
static void update_range(const step_args *a, int i, size_t lo, size_t hi) {
    const ulc_optimizer *opt = a->opt;
    float *p = a->params[i];
    const float *g = a->grads[i];
    if (opt->o.kind == ULC_OPTIM_SGD) {
#ifdef HAVE_FMA_PATH
        if (opt->fma) sgd_fma(p, g, opt->m[i], lo, hi, a->sgd);
        else
#endif
            sgd_plain(p, g, opt->m[i], lo, hi, a->sgd);
        return;
    }
#ifdef HAVE_FMA_PATH
    if (opt->fma) adamw_fma(p, g, opt->m[i], opt->v[i], lo, hi, a->adamw);
    else
#endif
        adamw_plain(p, g, opt->m[i], opt->v[i], lo, hi, a->adamw);
}

/* This step's scalars at learning rate lr, as both the host loops and a device take them. */
static void step_scalars(const ulc_optimizer *opt, double lr, sgd_k *sgd, adamw_k *adamw) {
    const ulc_optim_opts *o = &opt->o;
    if (o->kind == ULC_OPTIM_SGD) {
        *sgd = (sgd_k){.wd = (float)o->weight_decay, .mom = (float)o->momentum, .neg_lr = (float)-lr,
                       .use_wd = o->weight_decay != 0.0, .use_mom = o->momentum != 0.0,
                       .nesterov = o->nesterov, .first = opt->steps == 0};
    } else {
        double step = (double)(opt->steps + 1);
        double bc1 = 1.0 - pow(o->beta1, step), bc2 = 1.0 - pow(o->beta2, step);
        *adamw = (adamw_k){.decay = (float)(1.0 - lr * o->weight_decay),
                           .b1 = (float)o->beta1, .omb1 = (float)(1.0 - o->beta1),
                           .b2 = (float)o->beta2, .omb2 = (float)(1.0 - o->beta2),
                           .bc2s = (float)sqrt(bc2), .eps = (float)o->eps,
                           .neg_ss = (float)-(lr / bc1)};
    }
}

void ulc_optimizer_device_args(const ulc_optimizer *opt, double lr, ulc_rt_optim *out) {
    sgd_k s = {0};
    adamw_k a = {0};
    step_scalars(opt, lr, &s, &a);
    *out = (ulc_rt_optim){.adamw = opt->o.kind == ULC_OPTIM_ADAMW,
                          .wd = s.wd, .mom = s.mom, .neg_lr = s.neg_lr, .use_wd = s.use_wd,
                          .use_mom = s.use_mom, .nesterov = s.nesterov, .first = s.first,
                          .decay = a.decay, .b1 = a.b1, .omb1 = a.omb1, .b2 = a.b2, .omb2 = a.omb2,
                          .bc2s = a.bc2s, .eps = a.eps, .neg_ss = a.neg_ss};
}

void ulc_optimizer_advance(ulc_optimizer *opt) { opt->steps++; }

int ulc_optimizer_has_m(const ulc_optimizer *opt) {
    return opt->o.kind == ULC_OPTIM_ADAMW || opt->o.momentum != 0.0;
}

int ulc_optimizer_has_v(const ulc_optimizer *opt) { return opt->o.kind == ULC_OPTIM_ADAMW; }

void ulc_optimizer_step(ulc_optimizer *opt, float *const *params, const float *const *grads,
                        double lr) {
    step_args a = {.opt = opt, .params = params, .grads = grads};
    step_scalars(opt, lr, &a.sgd, &a.adamw);
    for (int i = 0; i < opt->n; i++) {
        size_t n = opt->numel[i];
#pragma omp parallel if (n >= PAR_MIN)
        {
            size_t lo, hi;
            my_share(n, &lo, &hi);
            update_range(&a, i, lo, hi);
        }
    }
    opt->steps++;
}
