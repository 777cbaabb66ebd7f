/*
 * k_nn.c — the CPU backend's neural-network family: convolutions, pooling, normalisation and
 * matrix products, on oneDNN where it is fastest and on own loops elsewhere. This file holds what
 * the family shares (the oneDNN engine, a scratch buffer, window geometry) and
 * BatchNormalization; the ops live in
 *   k_nn_conv.c  Conv, ConvTranspose
 *   k_nn_pool.c  MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool
 *   k_nn_gemm.c  Gemm, MatMul
 *
 * Tensors are [N, C, D1..Dn] (n spatial dims), row-major; o = output position, k = window tap.
 *
 *   Conv           Y[n,m,o] = B[m] + sum_{c in group(m), k} X[n,c, o*s - pb + k*d] · W[m,c',k]
 *                  (taps in the padding read 0; group g splits C and M into g equal blocks)
 *   ConvTranspose  Y[n,m,o] = B[m] + sum_{c in group(m), k: o + pb - k*d = i*s} X[n,c,i]·W[c,m',k]
 *                  (the adjoint of Conv: each input scatters a window into the output)
 *   MaxPool        Y[n,c,o] = max_k X[n,c, o*s - pb + k*d] over taps inside the input;
 *                  Indices = flat index of the max in X (row-major; storage_order 1: column-major
 *                  within each image)
 *   AveragePool    Y[n,c,o] = sum_k X[...] / count, count = taps inside the input, or with
 *                  count_include_pad the kernel size (ceil_mode's overhang counts as padding, as
 *                  in ONNX's reference and onnxruntime; PyTorch would not count it)
 *   GlobalAveragePool / GlobalMaxPool   Y[n,c,1..1] = mean / max of X[n,c,:]
 *   BatchNormalization (inference)
 *                  Y[n,c,i] = (X[n,c,i] - mean[c]) / sqrt(var[c] + eps) · scale[c] + B[c]
 *                           = X · a[c] + b[c]; training_mode uses the batch's own mean and
 *                  (population) variance and also outputs running = input · momentum +
 *                  batch · (1 - momentum)
 *   Gemm           Y = alpha · op(A) · op(B) + beta · C, op = transpose when transA/transB,
 *                  C broadcast to [M, N]
 *   MatMul         numpy matmul: [..., M, K] x [..., K, N] → [..., M, N], batch dims broadcast,
 *                  a 1-D operand gets a dim prepended (A) or appended (B) that the result drops
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_elementwise.h"
#include "runtime/cpu/k_nn.h"

/* ---- oneDNN engine and stream ---------------------------------------------------------------- */

static pthread_once_t g_dnnl_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static dnnl_status_t g_dnnl_status = dnnl_runtime_error;

static void dnnl_init_once(void) {
    g_dnnl_status = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
    if (g_dnnl_status != dnnl_success) return;
    g_dnnl_status = dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags);
}

ulc_status ulc_nn_dnnl(ulc_kctx *k, dnnl_engine_t *engine, dnnl_stream_t *stream) {
    pthread_once(&g_dnnl_once, dnnl_init_once);
    if (g_dnnl_status != dnnl_success)
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "oneDNN could not create its CPU engine (status %d)",
                          (int)g_dnnl_status);
    if (engine) *engine = g_engine;
    if (stream) *stream = g_stream;
    return ULC_OK;
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse4.1";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "another";
    }
}

ulc_status ulc_cpu_check_precision(int precision, ulc_ctx *ctx) {
    if (precision == ULC_PRECISION_FP32) return ULC_OK;
    if (precision == ULC_PRECISION_TF32)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "--precision tf32 is a CUDA mode (with --device cpu: fp32 or bf16)");
    if (precision != ULC_PRECISION_BF16)
        return ulc_fail(ctx, ULC_ERR_INVALID_ARG, "unknown precision %d", precision);
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if ((isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                        "--precision bf16: this CPU has no bfloat16 matrix instructions (oneDNN's ISA here: %s; "
                        "bf16 needs AVX512_BF16 or AMX): use fp32", isa_name(isa));
    return ULC_OK;
}

int ulc_nn_impl_is_ref(const_dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl ||
           strstr(impl, "ref") != NULL;
}

ulc_status ulc_nn_dnnl_check(ulc_kctx *k, dnnl_status_t s, const char *what) {
    if (s == dnnl_success) return ULC_OK;
    return ulc_k_fail(k, s == dnnl_out_of_memory ? ULC_ERR_NOMEM : ULC_ERR_INTERNAL,
                      "oneDNN: %s failed (status %d)", what, (int)s);
}

dnnl_format_tag_t ulc_nn_plain_tag(int rank) {
    static const dnnl_format_tag_t tags[] = {dnnl_a,    dnnl_ab,    dnnl_abc,
                                             dnnl_abcd, dnnl_abcde, dnnl_abcdef};
    return rank >= 1 && rank <= 6 ? tags[rank - 1] : dnnl_format_tag_undef;
}

dnnl_status_t ulc_nn_reorder_create(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                    dnnl_primitive_t *out) {
    dnnl_primitive_desc_t pd = NULL;
    *out = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, g_engine, to, g_engine, NULL);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_create(out, pd);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

dnnl_status_t ulc_nn_reorder_run(dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return dnnl_primitive_execute(r, g_stream, 2, args);
}

/* ---- scratch --------------------------------------------------------------------------------- */

static pthread_mutex_t g_scratch_mu = PTHREAD_MUTEX_INITIALIZER; /* guards the fields below */
static pthread_mutex_t g_scratch_use = PTHREAD_MUTEX_INITIALIZER; /* held while a run uses it */
static void *g_scratch;
static size_t g_scratch_size;
static int g_scratch_users; /* holds */

void *ulc_nn_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0 || bytes > SIZE_MAX - 64) return NULL;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

void ulc_nn_scratch_hold(void) {
    pthread_mutex_lock(&g_scratch_mu);
    g_scratch_users++;
    pthread_mutex_unlock(&g_scratch_mu);
}

void ulc_nn_scratch_drop(void) {
    pthread_mutex_lock(&g_scratch_mu);
    ULC_ASSERT(g_scratch_users > 0);
    if (--g_scratch_users == 0) {
        free(g_scratch);
        g_scratch = NULL;
        g_scratch_size = 0;
    }
    pthread_mutex_unlock(&g_scratch_mu);
}

ulc_status ulc_nn_run_begin(ulc_kctx *k, size_t need, dnnl_stream_t *stream, ulc_nn_scratch *sc) {
    ULC_TRY(ulc_nn_dnnl(k, NULL, stream));
    *sc = (ulc_nn_scratch){NULL, 0};
    if (need) {
        *sc = ulc_nn_scratch_acquire(need);
        if (!sc->p) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (%zu bytes of scratch)", need);
    }
    return ULC_OK;
}

ulc_nn_scratch ulc_nn_scratch_acquire(size_t bytes) {
    ulc_nn_scratch s = {NULL, 0};
    if (bytes == 0) bytes = 64;
    if (pthread_mutex_trylock(&g_scratch_use) == 0) {
        pthread_mutex_lock(&g_scratch_mu);
        if (g_scratch_size < bytes) {
            free(g_scratch);
            g_scratch = ulc_nn_alloc(bytes);
            g_scratch_size = g_scratch ? bytes : 0;
        }
        s.p = g_scratch;
        pthread_mutex_unlock(&g_scratch_mu);
        if (!s.p) pthread_mutex_unlock(&g_scratch_use);
        return s;
    }
    s.p = ulc_nn_alloc(bytes);
    s.owned = 1;
    return s;
}

void ulc_nn_scratch_done(ulc_nn_scratch *s) {
    if (!s->p) return;
    if (s->owned)
        free(s->p);
    else
        pthread_mutex_unlock(&g_scratch_use);
    s->p = NULL;
}

/* ---- NCHW8C ---------------------------------------------------------------------------------- */

dnnl_status_t ulc_nn_md4(dnnl_memory_desc_t *md, const int64_t *dims, int blocked) {
    dnnl_dims_t d = {dims[0], dims[1], dims[2], dims[3]};
    return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, blocked ? dnnl_nChw8c : dnnl_nchw);
}

typedef struct relayout_job {
    const float *src;
    float *dst;
    int64_t cb, c, hw;
    int to_blocked;
} relayout_job;

/* Items are (n, channel block) pairs: plane [hw, 8] of the blocked side against up to 8
 * [hw] planes of the plain side. */
static void relayout_body(int64_t i0, int64_t i1, void *arg) {
    const relayout_job *j = arg;
    int64_t hw = j->hw;
    for (int64_t i = i0; i < i1; i++) {
        int64_t n = i / j->cb, cb = i % j->cb, c0 = cb * 8;
        int64_t nc = j->c - c0 < 8 ? j->c - c0 : 8;
        size_t bo = (size_t)i * (size_t)hw * 8, po = (size_t)(n * j->c + c0) * (size_t)hw;
        if (j->to_blocked) {
            const float *x = j->src + po;
            float *b = j->dst + bo;
            for (int64_t p = 0; p < hw; p++) {
                for (int64_t l = 0; l < nc; l++) b[p * 8 + l] = x[l * hw + p];
                for (int64_t l = nc; l < 8; l++) b[p * 8 + l] = 0.0f;
            }
        } else {
            const float *b = j->src + bo;
            float *x = j->dst + po;
            for (int64_t l = 0; l < nc; l++)
                for (int64_t p = 0; p < hw; p++) x[l * hw + p] = b[p * 8 + l];
        }
    }
}

static void relayout(const float *src, float *dst, int64_t n, int64_t c, int64_t hw, int to_b) {
    relayout_job j = {src, dst, (c + 7) / 8, c, hw, to_b};
    ulc_k_parallel(n * j.cb, 16384 / (hw * 8 + 1) + 1, relayout_body, &j);
}

void ulc_nn_nchw8c_to_plain(const float *b, float *x, int64_t n, int64_t c, int64_t hw) {
    relayout(b, x, n, c, hw, 0);
}

void ulc_nn_plain_to_nchw8c(const float *x, float *b, int64_t n, int64_t c, int64_t hw) {
    relayout(x, b, n, c, hw, 1);
}

/* ---- fused epilogue -------------------------------------------------------------------------- */

int ulc_nn_can_fuse(const ulc_kctx *k, const ulc_kfuse *f) {
    const ulc_rt_tensor *y = k->out[0];
    if (!y || !ulc_k_is_float(y->dtype) || f->mask || f->residual) return 0;
    if (f->act < ULC_ACT_NONE || f->act > ULC_ACT_GELU_TANH) return 0;
    const ulc_rt_tensor *a = f->addend;
    if (!a) return 1;
    if (a->dtype != y->dtype || a->rank > y->rank) return 0;
    for (int d = 0; d < a->rank; d++) {
        int64_t ad = a->dims[d], yd = y->dims[y->rank - a->rank + d];
        if (ad != yd && ad != 1) return 0;
    }
    return 1;
}

int ulc_nn_can_fuse_residual(const ulc_kctx *k, const ulc_kfuse *f) {
    const ulc_rt_tensor *y = k->out[0], *r = f->residual;
    if (!r) return ulc_nn_can_fuse(k, f);
    if (!y || y->dtype != ULC_DT_F32 || r->dtype != ULC_DT_F32 || !ulc_rt_same_shape(r, y)) return 0;
    ulc_kfuse rest = *f;
    rest.residual = NULL;
    return ulc_nn_can_fuse(k, &rest);
}

ulc_nn_addend ulc_nn_addend_kind(const ulc_kfuse *f, const ulc_rt_tensor *y) {
    const ulc_rt_tensor *a = f ? f->addend : NULL;
    if (!a) return ULC_NN_ADD_NONE;
    if (ulc_rt_numel(a) == ulc_rt_numel(y)) return ULC_NN_ADD_FULL; /* broadcast-compatible */
    int channel = y->rank >= 2 && ulc_rt_numel(a) == (uint64_t)y->dims[1];
    for (int d = 0; channel && d < a->rank; d++) {
        int yd = y->rank - a->rank + d;
        if (yd != 1 && a->dims[d] != 1) channel = 0;
    }
    return channel ? ULC_NN_ADD_CHANNEL : ULC_NN_ADD_OTHER;
}

typedef struct fuse_job {
    const ulc_kfuse *f;
    ulc_rt_tensor *y;
    int skip_add, skip_residual;
    int64_t n, inner; /* elements; y's last dim */
    int64_t ast[ULC_RT_MAX_RANK]; /* addend strides read as y's shape (0 = broadcast) */
} fuse_job;

#define FUSE_BLOCK 4096

/* Addend of elements [i0, i1): contiguous when full, else row by row through the strides. */
#define FUSE_ADD(T)                                                                                \
    do {                                                                                           \
        const T *A = j->f->addend->data;                                                           \
        T *Y = j->y->data;                                                                         \
        if (ulc_rt_numel(j->f->addend) == (uint64_t)j->n) {                                        \
            for (int64_t i = i0; i < i1; i++) Y[i] += A[i];                                        \
            break;                                                                                 \
        }                                                                                          \
        const ulc_rt_tensor *y = j->y;                                                             \
        int64_t inner = j->inner, last = j->ast[y->rank - 1];                                      \
        for (int64_t i = i0; i < i1;) {                                                            \
            int64_t row = i / inner, col = i % inner, off = 0, rem = row;                          \
            for (int d = y->rank - 2; d >= 0; d--) {                                               \
                off += (rem % y->dims[d]) * j->ast[d];                                             \
                rem /= y->dims[d];                                                                 \
            }                                                                                      \
            int64_t end = i + (inner - col) < i1 ? i + (inner - col) : i1;                         \
            const T *a = A + off;                                                                  \
            if (last)                                                                              \
                for (int64_t c = col; i < end; i++, c++) Y[i] += a[c];                             \
            else                                                                                   \
                for (; i < end; i++) Y[i] += a[0];                                                 \
        }                                                                                          \
    } while (0)

static void fuse_body(int64_t b0, int64_t b1, void *arg) {
    const fuse_job *j = arg;
    const ulc_kfuse *f = j->f;
    int64_t i0 = b0 * FUSE_BLOCK, i1 = b1 * FUSE_BLOCK < j->n ? b1 * FUSE_BLOCK : j->n, n = i1 - i0;
    if (j->y->dtype == ULC_DT_F32) {
        if (f->addend && !j->skip_add) FUSE_ADD(float);
        float *y = (float *)j->y->data + i0, a = f->a, b = f->b;
        switch (f->act) {
        case ULC_ACT_RELU:
            for (int64_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : 0.0f;
            break;
        case ULC_ACT_LEAKY_RELU:
            for (int64_t i = 0; i < n; i++) y[i] = y[i] >= 0 ? y[i] : y[i] * a;
            break;
        case ULC_ACT_CLIP:
            for (int64_t i = 0; i < n; i++) y[i] = y[i] < a ? a : (y[i] > b ? b : y[i]);
            break;
        case ULC_ACT_SIGMOID: ulc_cpu_vsigmoid_f32(y, y, n); break;
        case ULC_ACT_TANH: ulc_cpu_vtanh_f32(y, y, n); break;
        case ULC_ACT_GELU_ERF: ulc_cpu_vgelu_erf_f32(y, y, n); break;
        case ULC_ACT_GELU_TANH: ulc_cpu_vgelu_tanh_f32(y, y, n); break;
        default: break;
        }
        if (f->residual && !j->skip_residual) {
            const float *r = (const float *)f->residual->data + i0;
            for (int64_t i = 0; i < n; i++) y[i] += r[i];
        }
        return;
    }
    if (f->addend && !j->skip_add) FUSE_ADD(double);
    double *y = (double *)j->y->data + i0, a = f->a, b = f->b;
    for (int64_t i = 0; i < n; i++) {
        double v = y[i];
        switch (f->act) {
        case ULC_ACT_RELU: v = v > 0 ? v : 0.0; break;
        case ULC_ACT_LEAKY_RELU: v = v >= 0 ? v : v * a; break;
        case ULC_ACT_CLIP: v = v < a ? a : (v > b ? b : v); break;
        case ULC_ACT_SIGMOID: v = 1.0 / (1.0 + exp(-v)); break;
        case ULC_ACT_TANH: v = tanh(v); break;
        case ULC_ACT_GELU_ERF: v = 0.5 * v * (1.0 + erf(v / sqrt(2.0))); break;
        case ULC_ACT_GELU_TANH:
            v = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
            break;
        default: break;
        }
        y[i] = v;
    }
}

dnnl_status_t ulc_nn_append_act(dnnl_post_ops_t po, const ulc_kfuse *f) {
    if (!f || f->act == ULC_ACT_NONE) return dnnl_success;
    dnnl_alg_kind_t alg = dnnl_eltwise_relu;
    float a = 0, b = 0;
    switch (f->act) {
    case ULC_ACT_RELU: break;
    case ULC_ACT_LEAKY_RELU: a = f->a; break;
    case ULC_ACT_CLIP:
        alg = dnnl_eltwise_clip_v2;
        a = f->a;
        b = f->b;
        break;
    case ULC_ACT_SIGMOID: alg = dnnl_eltwise_logistic; break;
    case ULC_ACT_TANH: alg = dnnl_eltwise_tanh; break;
    case ULC_ACT_GELU_ERF: alg = dnnl_eltwise_gelu_erf; break;
    case ULC_ACT_GELU_TANH: alg = dnnl_eltwise_gelu_tanh; break;
    default: return dnnl_unimplemented;
    }
    return dnnl_post_ops_append_eltwise(po, 1.0f, alg, a, b);
}

void ulc_nn_fuse_apply(const ulc_kfuse *f, ulc_rt_tensor *y, int skip_add) {
    if (!f || (f->act == ULC_ACT_NONE && (!f->addend || skip_add) && !f->residual)) return;
    fuse_job j = {f,  y, skip_add, 0, (int64_t)ulc_rt_numel(y), y->rank ? y->dims[y->rank - 1] : 1,
                  {0}};
    if (j.inner < 1) j.inner = 1;
    if (f->addend) ulc_k_bcast_strides(f->addend, y->rank, y->dims, j.ast);
    ulc_k_parallel((j.n + FUSE_BLOCK - 1) / FUSE_BLOCK, 4, fuse_body, &j);
}

/* ---- BatchNormalization ---------------------------------------------------------------------- */

/* X [N, C, D1..Dn] viewed as [N, P, inner]: P = C with per-channel parameters (inner = the
 * spatial size), or P = C·D1·…·Dn in the spatial=0 form of opsets < 9 (inner = 1). */
typedef struct bn_state {
    ulc_sh_bn g;
    int consts; /* a and b were computed in prepare */
    float *af, *bf; /* P each (F32 input) */
    double *ad, *bd; /* P each (F64 input) */
} bn_state;

static void bn_release(void *p) {
    bn_state *s = p;
    if (!s) return;
    free(s->af);
    free(s->bf);
    free(s->ad);
    free(s->bd);
    free(s);
}

/* a = scale / sqrt(var + eps), b = B - mean · a (in double, stored in X's precision). */
static void bn_fold(ulc_kctx *k, bn_state *s) {
    const ulc_sh_bn *g = &s->g;
    for (int64_t i = 0; i < g->p; i++) {
        double a = ulc_k_f64_at(k->in[1], (uint64_t)i) /
                   sqrt(ulc_k_f64_at(k->in[4], (uint64_t)i) + g->eps);
        double b = ulc_k_f64_at(k->in[2], (uint64_t)i) - ulc_k_f64_at(k->in[3], (uint64_t)i) * a;
        if (s->af) {
            s->af[i] = (float)a;
            s->bf[i] = (float)b;
        } else {
            s->ad[i] = a;
            s->bd[i] = b;
        }
    }
}

static ulc_status bn_prepare(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    bn_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    ulc_sh_bn_params(k, &s->g);
    size_t np = (size_t)(s->g.p > 0 ? s->g.p : 1);
    if (x->dtype == ULC_DT_F32) {
        s->af = malloc(np * sizeof(float));
        s->bf = malloc(np * sizeof(float));
    } else {
        s->ad = malloc(np * sizeof(double));
        s->bd = malloc(np * sizeof(double));
    }
    if (!(s->af || s->ad) || !(s->bf || s->bd))
        return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    s->consts = (k->const_inputs & 0x1eu) == 0x1eu && !s->g.training;
    if (s->consts) bn_fold(k, s);
    return ULC_OK;
}

typedef struct bn_job {
    const bn_state *s;
    const void *x;
    void *y;
} bn_job;

static void bn_body(int64_t r0, int64_t r1, void *arg) {
    const bn_job *j = arg;
    const bn_state *s = j->s;
    int64_t inner = s->g.inner;
    for (int64_t r = r0; r < r1; r++) {
        int64_t ch = r % s->g.p;
        if (s->af) {
            const float *x = (const float *)j->x + r * inner;
            float *y = (float *)j->y + r * inner, a = s->af[ch], b = s->bf[ch];
            for (int64_t i = 0; i < inner; i++) y[i] = x[i] * a + b;
        } else {
            const double *x = (const double *)j->x + r * inner;
            double *y = (double *)j->y + r * inner, a = s->ad[ch], b = s->bd[ch];
            for (int64_t i = 0; i < inner; i++) y[i] = x[i] * a + b;
        }
    }
}

/* Training form: batch statistics per channel (two passes in double), then the same affine. */
static void bn_train(ulc_kctx *k, bn_state *s) {
    const ulc_sh_bn *g = &s->g;
    const ulc_rt_tensor *x = k->in[0];
    int64_t cnt = g->n * g->inner;
    for (int64_t c = 0; c < g->p; c++) {
        double sum = 0, sq = 0;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t i = 0; i < g->inner; i++)
                sum += ulc_k_f64_at(x, (uint64_t)((n * g->p + c) * g->inner + i));
        double mean = cnt ? sum / (double)cnt : 0;
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t i = 0; i < g->inner; i++) {
                double v = ulc_k_f64_at(x, (uint64_t)((n * g->p + c) * g->inner + i)) - mean;
                sq += v * v;
            }
        double var = cnt ? sq / (double)cnt : 0;
        double a = ulc_k_f64_at(k->in[1], (uint64_t)c) / sqrt(var + g->eps);
        double b = ulc_k_f64_at(k->in[2], (uint64_t)c) - mean * a;
        if (s->af) {
            s->af[c] = (float)a;
            s->bf[c] = (float)b;
        } else {
            s->ad[c] = a;
            s->bd[c] = b;
        }
        if (k->n_out > 1 && k->out[1])
            ulc_k_store_f64(k->out[1], (uint64_t)c,
                            ulc_k_f64_at(k->in[3], (uint64_t)c) * g->momentum +
                                mean * (1 - g->momentum));
        if (k->n_out > 2 && k->out[2])
            ulc_k_store_f64(k->out[2], (uint64_t)c,
                            ulc_k_f64_at(k->in[4], (uint64_t)c) * g->momentum +
                                var * (1 - g->momentum));
    }
}

static ulc_status bn_run(ulc_kctx *k) {
    bn_state *s = k->state;
    if (s->g.training)
        bn_train(k, s);
    else if (!s->consts)
        bn_fold(k, s);
    bn_job j = {s, k->in[0]->data, k->out[0]->data};
    int64_t rows = s->g.n * s->g.p;
    ulc_k_parallel(rows, (16384 + s->g.inner - 1) / (s->g.inner ? s->g.inner : 1), bn_body, &j);
    ulc_nn_fuse_apply(k->fuse, k->out[0], 0);
    return ULC_OK;
}

static const ulc_kernel k_batchnorm = {.prepare = bn_prepare, .run = bn_run, .release = bn_release, .can_fuse = ulc_nn_can_fuse};

void ulc_cpu_register_nn(const ulc_kernel **table) {
    table[ULC_OP_BatchNormalization] = &k_batchnorm;
    ulc_nn_register_conv(table);
    ulc_nn_register_pool(table);
    ulc_nn_register_gemm(table);
}
