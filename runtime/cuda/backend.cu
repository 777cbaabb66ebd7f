/*
 * backend.cu — the CUDA backend's vtable: the device context a session opens (device, stream,
 * cuBLAS handle), device memory, the kernel table the family files fill, and cuBLAS's entry
 * points, loaded at run time so that neither `ulc` nor libulc links against it: a machine
 * without a GPU (or without the toolkit's libraries) runs everything else, and `--device cuda`
 * fails there with a message saying why.
 *
 * Compiled by nvcc into the real backend (ulc_backend_cuda) and by g++ with -DULC_CUDA_EMU into
 * the host emulator (ulc_backend_cuda_emu): see cu.h.
 */
#include "runtime/cuda/cu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef ULC_CUDA_EMU
#include <dlfcn.h>
#endif

#include <mutex>

UCU_BEGIN

/* ---- cuBLAS ------------------------------------------------------------------------------- */

#ifdef ULC_CUDA_EMU
static const ucu_blas emu_blas = {
    ulc_emu_blas_create, ulc_emu_blas_destroy, ulc_emu_blas_set_stream,
    ulc_emu_blas_set_math_mode, ulc_emu_blas_set_workspace, ulc_emu_sgemm, ulc_emu_sgemm_batched,
};

static const ucu_blas *load_blas(char *why, size_t n) {
    (void)why;
    (void)n;
    return &emu_blas;
}
#else
static ucu_blas real_blas;
static const char *blas_error;
static char blas_why[512];

static void load_blas_once(void) {
    const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so"};
    void *h = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(blas_why, sizeof blas_why, "cuBLAS could not be loaded (libcublas.so.13: %s)", dlerror());
        blas_error = blas_why;
        return;
    }
    struct {
        const char *sym;
        void **slot;
        int optional;
    } syms[] = {
        {"cublasCreate_v2", (void **)&real_blas.create, 0},
        {"cublasDestroy_v2", (void **)&real_blas.destroy, 0},
        {"cublasSetStream_v2", (void **)&real_blas.set_stream, 0},
        {"cublasSetMathMode", (void **)&real_blas.set_math_mode, 0},
        {"cublasSetWorkspace_v2", (void **)&real_blas.set_workspace, 1},
        {"cublasSgemm_v2", (void **)&real_blas.sgemm, 0},
        {"cublasSgemmStridedBatched", (void **)&real_blas.sgemm_batched, 0},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(h, syms[i].sym);
        if (!*syms[i].slot && !syms[i].optional) {
            snprintf(blas_why, sizeof blas_why, "cuBLAS has no %s", syms[i].sym);
            blas_error = blas_why;
            return;
        }
    }
}

static const ucu_blas *load_blas(char *why, size_t n) {
    static std::once_flag once;
    std::call_once(once, load_blas_once);
    if (blas_error) {
        snprintf(why, n, "%s", blas_error);
        return NULL;
    }
    return &real_blas;
}
#endif

/* ---- the kernel table --------------------------------------------------------------------- */

static ucu_table table;

static void fill_table(void) {
    ucu_reg_elementwise(table);
    ucu_reg_movement(table);
    ucu_reg_reduce(table);
    ucu_reg_nn(table);
    ucu_reg_grad(table);
    ucu_reg_attn(table);
}

static const ulc_kernel *kernel_of(ulc_op op) {
    static std::once_flag once;
    std::call_once(once, fill_table);
    return op > 0 && op < ULC_OP_COUNT_ ? table[op] : NULL;
}

/* ---- errors ------------------------------------------------------------------------------- */

ulc_status ucu_check(ulc_kctx *k, const char *what) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return ULC_OK;
    return ulc_k_fail(k, ULC_ERR_INTERNAL, "CUDA %s: %s", what, cudaGetErrorString(e));
}

ulc_status ucu_blas_check(ulc_kctx *k, int status, const char *what) {
    if (status == 0) return ULC_OK;
    return ulc_k_fail(k, ULC_ERR_INTERNAL, "cuBLAS %s failed (status %d)", what, status);
}

ulc_status ucu_copy(ulc_kctx *k, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return ULC_OK;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ucu_stream(k));
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "CUDA copy of %zu bytes: %s", bytes,
                          cudaGetErrorString(e));
    }
    return ULC_OK;
}

void *ucu_scratch(ulc_kctx *k, size_t bytes) {
    ucu_dev *d = ucu_ctx(k);
    if (bytes <= d->scratch_size) return d->scratch;
    /* the stream may still read the old scratch: free is ordered after it by cudaFree's
     * implicit synchronisation; growth is rare (once per larger plan) */
    cudaFree(d->scratch);
    d->scratch = NULL;
    d->scratch_size = 0;
    size_t want = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes;
    if (cudaMalloc(&d->scratch, want) != cudaSuccess) {
        (void)cudaGetLastError();
        d->scratch = NULL;
        ulc_k_fail(k, ULC_ERR_NOMEM, "out of device memory (%zu bytes of scratch)", bytes);
        return NULL;
    }
    d->scratch_size = want;
    return d->scratch;
}

/* ---- the device context ------------------------------------------------------------------- */

static void dev_close(void *p) {
    ucu_dev *d = (ucu_dev *)p;
    if (!d) return;
    if (d->stream) cudaStreamSynchronize(d->stream);
    if (d->blas) d->b->destroy(d->blas);
    cudaFree(d->scratch);
    if (d->stream) cudaStreamDestroy(d->stream);
    (void)cudaGetLastError();
    free(d);
}

static ulc_status dev_open(int device, int precision, void **out, ulc_ctx *ctx) {
    *out = NULL;
    if (precision != ULC_PRECISION_FP32 && precision != ULC_PRECISION_TF32)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "--precision %s: not offered on cuda (fp32 or tf32)",
                        precision == ULC_PRECISION_BF16 ? "bf16" : "?");
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        const char *why = e != cudaSuccess ? cudaGetErrorString(e) : "no device";
        (void)cudaGetLastError();
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "--device cuda: no CUDA device is visible (%s)", why);
    }
    if (device < 0 || device >= n) /* not there: as no device at all (exit 2) */
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "--device cuda:%d: this machine has %d CUDA device%s (0 to %d)",
                        device, n, n == 1 ? "" : "s", n - 1);
    char why[512];
    const ucu_blas *b = load_blas(why, sizeof why);
    if (!b) return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "--device cuda: %s", why);
    ucu_dev *d = (ucu_dev *)calloc(1, sizeof *d);
    if (!d) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (CUDA context)");
    d->device = device;
    d->b = b;
    d->precision = precision;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        (void)cudaGetLastError();
        dev_close(d);
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "--device cuda:%d: %s", device, cudaGetErrorString(e));
    }
    snprintf(d->name, sizeof d->name, "%s (sm_%d%d, %.0f GiB)", prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    int bs = b->create(&d->blas);
    if (bs == 0) bs = b->set_stream(d->blas, d->stream);
    /* float32 products by default: TF32 off, so outputs match the CPU runtime's */
    if (bs == 0) bs = b->set_math_mode(d->blas, precision == ULC_PRECISION_TF32 ? 3 : 0);
    if (bs != 0) {
        dev_close(d);
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED, "--device cuda:%d: cuBLAS could not start (status %d)", device, bs);
    }
    *out = d;
    return ULC_OK;
}

/* Every service makes the context's device current first: sessions on several GPUs in one
 * process (cudaSetDevice costs nothing when it already is). */
static void enter_quiet(void *p) {
    cudaSetDevice(((ucu_dev *)p)->device);
    (void)cudaGetLastError();
}

static ulc_status dev_enter(void *p, ulc_ctx *ctx) {
    cudaError_t e = cudaSetDevice(((ucu_dev *)p)->device);
    if (e == cudaSuccess) return ULC_OK;
    (void)cudaGetLastError();
    return ulc_fail(ctx, ULC_ERR_INTERNAL, "CUDA device %d: %s", ((ucu_dev *)p)->device, cudaGetErrorString(e));
}

static size_t dev_free_bytes(void *p) {
    enter_quiet(p);
    size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return free_b;
}

static void *dev_alloc(void *p, size_t bytes) {
    enter_quiet(p);
    void *q = NULL;
    if (cudaMalloc(&q, bytes ? bytes : 256) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return q;
}

static void dev_free(void *p, void *q) {
    if (!q) return;
    enter_quiet(p);
    cudaFree(q); /* a buffer the stream may still use: cudaFree waits for the device */
    (void)cudaGetLastError();
}

static ulc_status copy(ucu_dev *d, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                       const char *what, ulc_ctx *ctx) {
    if (!bytes) return ULC_OK;
    enter_quiet(d);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, d->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "CUDA %s of %zu bytes: %s", what, bytes, cudaGetErrorString(e));
    }
    return ULC_OK;
}

static ulc_status dev_upload(void *p, void *dst, const void *src, size_t bytes, ulc_ctx *ctx) {
    return copy((ucu_dev *)p, dst, src, bytes, cudaMemcpyHostToDevice, "upload", ctx);
}

static ulc_status dev_sync(void *p, ulc_ctx *ctx) {
    ucu_dev *d = (ucu_dev *)p;
    enter_quiet(d);
    cudaError_t e = cudaStreamSynchronize(d->stream);
    if (e == cudaSuccess) e = cudaGetLastError();
    if (e != cudaSuccess)
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "CUDA device %d: %s", d->device, cudaGetErrorString(e));
    return ULC_OK;
}

static ulc_status dev_download(void *p, void *dst, const void *src, size_t bytes, ulc_ctx *ctx) {
    ULC_TRY(copy((ucu_dev *)p, dst, src, bytes, cudaMemcpyDeviceToHost, "download", ctx));
    return dev_sync(p, ctx);
}

static const char *dev_describe(void *p) { return ((ucu_dev *)p)->name; }

static void set_threads(int threads) { (void)threads; }

void ucu_chain_eval(const ulc_chain *c, const float *const *ins, float *out, int n); /* k_chain.cu */

/* dev_ops.cu */
ulc_status ucu_dev_copy(void *dev, void *dst, const void *src, size_t bytes, ulc_ctx *ctx);
ulc_status ucu_dev_zero(void *dev, void *dst, size_t bytes, ulc_ctx *ctx);
ulc_status ucu_dev_optim(void *dev, const ulc_rt_optim *o, float *p, const float *g, float *m, float *v,
                         size_t n, ulc_ctx *ctx);
ulc_status ucu_dev_count_nonfinite(void *dev, const float *x, size_t n, unsigned *count, ulc_ctx *ctx);
ulc_status ucu_dev_gather_rows(void *dev, void *dst, const void *src, size_t row_bytes, const int64_t *idx,
                               int64_t n, ulc_ctx *ctx);

static const ulc_device_ops device_ops = {
    dev_open,     dev_close,     dev_alloc,     dev_free,
    dev_upload,   dev_download,  dev_sync,      dev_describe,
    ucu_dev_copy, ucu_dev_zero,  ucu_dev_optim, ucu_dev_count_nonfinite,
    ucu_dev_gather_rows, dev_enter, dev_free_bytes,
};

static const ulc_backend *backend(void) {
    static ulc_backend be;
    static std::once_flag once;
    std::call_once(once, [] {
        be.name = "cuda";
        be.kernel = kernel_of;
        be.chain_kernel = ucu_chain_kernel;
        be.attn_kernel = ucu_attn_kernel;
        be.chain_eval = ucu_chain_eval;
        be.set_threads = set_threads;
        be.device = &device_ops;
    });
    return &be;
}

UCU_END

#ifdef ULC_CUDA_EMU
extern "C" const ulc_backend *ulc_backend_cuda_emu(void) { return UCU_NS::backend(); }
#else
extern "C" const ulc_backend *ulc_backend_cuda(void) { return UCU_NS::backend(); }
#endif
