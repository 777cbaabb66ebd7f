/*
 * emu_selftest.cc — checks the host CUDA emulator (runtime/cuda/emu.h, emu.cc) on its own:
 *
 *   g++ -std=c++17 -O1 -DULC_CUDA_EMU -I. tests/cuda_emu/emu_selftest.cc runtime/cuda/emu.cc      \
 *       -o /tmp/emu_selftest && /tmp/emu_selftest
 *
 * Kernels are written as the backend's are (in a namespace, launched through a lambda as
 * UCU_LAUNCH does). Exits 0 when every check passes; prints each failure. A few checks fork a
 * child that must abort (a deadlock, a diverged warp, host code touching device memory), some
 * run the program again as `--child MODE`; ULC_CUDA_EMU_UCONTEXT=1 runs the whole test on the
 * ucontext switch instead.
 */
#include "runtime/cuda/emu.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#define LAUNCH(kern, grid, block, smem, ...)                                                       \
    ulc_emu_launch(dim3(grid), dim3(block), (size_t)(smem), [&]() { kern(__VA_ARGS__); })

static int g_failed = 0;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            g_failed++;                                                                            \
        }                                                                                          \
    } while (0)

static unsigned g_rng = 12345u;
static float frand() { /* in [-1, 1) */
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)(g_rng >> 8) / (float)(1u << 23) - 1.0f;
}

template <class T> static T *dev_alloc(size_t n) {
    T *p = nullptr;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc failed\n");
        exit(2);
    }
    return p;
}
template <class T> static void to_dev(T *d, const std::vector<T> &h) {
    cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
}
template <class T> static std::vector<T> to_host(const T *d, size_t n) {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
}

namespace kern { /* as cu.h wraps the backend's kernels */

__global__ void axpb(const float *__restrict__ x, float *__restrict__ y, float a, float b, int n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)blockDim.x * gridDim.x)
        y[i] = a * x[i] + b;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* cu.h's ucu_block_sum: every thread gets the block's sum */
__device__ __forceinline__ float block_sum(float v, float *red) {
    int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5, nw = (int)(blockDim.x >> 5);
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.0f;
    return warp_sum(t);
}

/* per block: out[2b] by warp 0 only (the others returned), out[2b+1] through block_sum */
__global__ void reduce(const float *x, int n, float *out) {
    __shared__ float red[32];
    static __shared__ float red2[32]; /* CUDA accepts the redundant static */
    float v = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        v += x[i];
    float all = block_sum(v, red2);
    if (threadIdx.x == 7) out[2 * blockIdx.x + 1] = all;
    v = warp_sum(v);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) red[w] = v;
    __syncthreads();
    if (w != 0) return;
    v = lane < (int)(blockDim.x / 32) ? red[lane] : 0.0f;
    v = warp_sum(v);
    if (lane == 0) out[2 * blockIdx.x] = v;
}

/* rows x cols -> cols x rows through a 32 x 33 tile of dynamic shared memory; block (32, 8).
 * Thread 0 also records whether the tile held 0xA5 bytes at the block's start. */
__global__ void transpose(const float *in, float *out, int rows, int cols, int *fresh) {
    float *tile = reinterpret_cast<float *>(ulc_emu_dyn_smem());
    if (threadIdx.x == 0 && threadIdx.y == 0) {
        const unsigned char *b = reinterpret_cast<const unsigned char *>(tile);
        int ok = ((uintptr_t)tile % 16) == 0;
        for (int i = 0; i < 32 * 33 * 4; i++) ok &= b[i] == 0xA5;
        fresh[blockIdx.y * gridDim.x + blockIdx.x] = ok;
    }
    __syncthreads();
    int x = blockIdx.x * 32 + threadIdx.x, y = blockIdx.y * 32 + threadIdx.y;
    for (int j = 0; j < 32; j += 8)
        if (x < cols && y + j < rows)
            tile[(threadIdx.y + j) * 33 + threadIdx.x] = in[(y + j) * cols + x];
    __syncthreads();
    x = blockIdx.y * 32 + threadIdx.x;
    y = blockIdx.x * 32 + threadIdx.y;
    for (int j = 0; j < 32; j += 8)
        if (x < rows && y + j < cols)
            out[(y + j) * rows + x] = tile[threadIdx.x * 33 + threadIdx.y + j];
}

/* per thread, 8 results of warp collectives (see check_shuffles) */
__global__ void shuffles(int *out) {
    int t = threadIdx.x, lane = t & 31;
    int *o = out + 8 * t;
    int v = lane + 1;
    int s = v;
    for (int d = 16; d > 0; d >>= 1) s += __shfl_down_sync(0xffffffffu, s, d);
    o[0] = s;                                   /* lane 0: the warp's sum */
    o[1] = __shfl_sync(0xffffffffu, v * 10, 5); /* broadcast of lane 5 */
    o[2] = __shfl_sync(0xffffffffu, v, 3, 16);  /* lane 3 of each half */
    int sc = v;
    for (int d = 1; d < 32; d <<= 1) {
        int u = __shfl_up_sync(0xffffffffu, sc, d);
        if (lane >= d) sc += u;
    }
    o[3] = sc;                                   /* inclusive scan */
    o[4] = __shfl_down_sync(0xffffffffu, v, 16); /* out of a partial warp: own value */
    o[5] = (int)__ballot_sync(0xffffffffu, lane & 1);
    o[6] = __any_sync(0xffffffffu, lane == 3) + 2 * __all_sync(0xffffffffu, lane < 40);
    double dv = __shfl_xor_sync(0xffffffffu, (double)lane + 0.5, 1);
    o[7] = (int)(dv * 2.0); /* 2 * (lane ^ 1) + 1 */
}

/* odd lanes return first: a source lane that returned gives the caller's own value; the even
 * lanes are the active mask; bare min/max as device code calls them */
__global__ void exited_lanes(int *out) {
    int lane = threadIdx.x & 31;
    if (lane & 1) return;
    int a = __shfl_xor_sync(0xffffffffu, lane, 2), b = __shfl_xor_sync(0xffffffffu, lane, 1);
    unsigned m = __activemask();
    out[threadIdx.x] = a + 100 * b + 10000 * (m == 0x55555555u) + 100000 * min(lane, 1) +
                       1000000 * (int)max(0.5f, 1.0f);
}

__global__ void count_big(const float *x, int n, float thr, int *count, float *sum,
                          unsigned long long *bits) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x)
        if (x[i] > thr) {
            atomicAdd(count, 1);
            atomicAdd(sum, x[i]);
            atomicAdd(bits, 1ull);
        }
}

__global__ void flag(int *p) { *p = 1; }

/* every thread writes its global coordinates where they say it should */
__global__ void coords(int *out) {
    int bx = blockIdx.x, by = blockIdx.y, bz = blockIdx.z;
    int tx = threadIdx.x, ty = threadIdx.y, tz = threadIdx.z;
    int gx = bx * blockDim.x + tx, gy = by * blockDim.y + ty, gz = bz * blockDim.z + tz;
    int W = gridDim.x * blockDim.x, H = gridDim.y * blockDim.y;
    int idx = (gz * H + gy) * W + gx;
    __syncthreads(); /* coordinates must survive a switch */
    out[idx * 4 + 0] = gx;
    out[idx * 4 + 1] = gy;
    out[idx * 4 + 2] = gz;
    out[idx * 4 + 3] = __syncthreads_count(tx == 0) * 1000 + out[idx * 4 + 3] + 1;
}

__global__ void early_return_then_sync(int *p) {
    if (threadIdx.x >= 64) return;
    __syncthreads();
    p[threadIdx.x] = 1;
}

__global__ void diverged_warp(int *p) {
    int v = threadIdx.x;
    if (threadIdx.x & 1)
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    else
        v = (int)__ballot_sync(0xffffffffu, v);
    p[threadIdx.x] = v;
}

} // namespace kern

static void check_elementwise() {
    const int n = 10000;
    std::vector<float> x(n);
    for (auto &v : x) v = frand();
    float *dx = dev_alloc<float>(n), *dy = dev_alloc<float>(n);
    to_dev(dx, x);
    LAUNCH(kern::axpb, 8, 256, 0, dx, dy, 2.0f, 0.5f, n);
    CHECK(cudaGetLastError() == cudaSuccess, "launch");
    auto y = to_host(dy, n);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += y[i] != 2.0f * x[i] + 0.5f;
    CHECK(bad == 0, "%d of %d elements wrong", bad, n);
    cudaFree(dx);
    cudaFree(dy);
}

static void check_reduce() {
    const int n = 5000, blocks = 3;
    std::vector<float> x(n);
    for (auto &v : x) v = frand();
    float *dx = dev_alloc<float>(n), *dout = dev_alloc<float>(2 * blocks);
    to_dev(dx, x);
    for (int threads : {256, 96, 1024, 32}) {
        LAUNCH(kern::reduce, blocks, threads, 0, dx, n, dout);
        CHECK(cudaGetLastError() == cudaSuccess, "launch with %d threads", threads);
        auto out = to_host(dout, 2 * blocks);
        for (int b = 0; b < blocks; b++) {
            double ref = 0;
            for (int i = b * threads; i < n; i += threads * blocks)
                for (int k = i; k < i + threads && k < n; k++) ref += x[k];
            CHECK(fabs(out[2 * b] - ref) < 1e-3, "threads %d block %d: warp-0 sum %g, host %g",
                  threads, b, out[2 * b], ref);
            CHECK(fabs(out[2 * b + 1] - ref) < 1e-3, "threads %d block %d: block_sum %g, host %g",
                  threads, b, out[2 * b + 1], ref);
        }
    }
    cudaFree(dx);
    cudaFree(dout);
}

static void check_transpose() {
    const int rows = 70, cols = 100;
    std::vector<float> a(rows * cols);
    for (auto &v : a) v = frand();
    dim3 grid((cols + 31) / 32, (rows + 31) / 32);
    float *din = dev_alloc<float>(a.size()), *dout = dev_alloc<float>(a.size());
    int *dfresh = dev_alloc<int>(grid.x * grid.y);
    to_dev(din, a);
    LAUNCH(kern::transpose, grid, dim3(32, 8), 32 * 33 * sizeof(float), din, dout, rows, cols,
           dfresh);
    CHECK(cudaGetLastError() == cudaSuccess, "launch");
    auto t = to_host(dout, a.size());
    int bad = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) bad += t[c * rows + r] != a[r * cols + c];
    CHECK(bad == 0, "%d elements wrong", bad);
    auto fresh = to_host(dfresh, grid.x * grid.y);
    for (unsigned b = 0; b < grid.x * grid.y; b++)
        CHECK(fresh[b] == 1, "block %u: dynamic shared memory not aligned 0xA5 at its start", b);
    cudaFree(din);
    cudaFree(dout);
    cudaFree(dfresh);
}

static void check_shuffles() {
    const int threads = 48; /* a full warp and a partial one of 16 lanes */
    int *d = dev_alloc<int>(8 * threads);
    LAUNCH(kern::shuffles, 1, threads, 0, d);
    CHECK(cudaGetLastError() == cudaSuccess, "launch");
    auto o = to_host(d, 8 * threads);
    for (int t = 0; t < threads; t++) {
        const int *r = &o[8 * t];
        int lane = t & 31, nl = t < 32 ? 32 : 16, v = lane + 1;
        /* in the partial warp, lanes past the 16th give back the caller's own value */
        if (lane == 0)
            CHECK(r[0] == (nl == 32 ? 1 : 2) * nl * (nl + 1) / 2, "thread %d: down-sum %d", t,
                  r[0]);
        CHECK(r[1] == 60, "thread %d: broadcast %d", t, r[1]);
        int src = (lane & ~15) + 3;
        CHECK(r[2] == (src < nl ? src + 1 : v), "thread %d: width-16 shfl %d", t, r[2]);
        CHECK(r[3] == v * (v + 1) / 2, "thread %d: scan %d", t, r[3]);
        CHECK(r[4] == (lane + 16 < nl ? lane + 17 : v), "thread %d: down 16 %d", t, r[4]);
        unsigned ballot = nl == 32 ? 0xaaaaaaaau : 0xaaaau;
        CHECK((unsigned)r[5] == ballot, "thread %d: ballot %08x", t, (unsigned)r[5]);
        CHECK(r[6] == 3, "thread %d: any/all %d", t, r[6]);
        CHECK(r[7] == 2 * (lane ^ 1) + 1, "thread %d: double xor %d", t, r[7]);
    }
    int *e = dev_alloc<int>(32);
    LAUNCH(kern::exited_lanes, 1, 32, 0, e);
    auto x = to_host(e, 32);
    for (int l = 0; l < 32; l += 2)
        CHECK(x[l] == (l ^ 2) + 100 * l + 10000 + 100000 * (l > 0) + 1000000,
              "lane %d with odd lanes returned: %d", l, x[l]);
    cudaFree(d);
    cudaFree(e);
}

static void check_atomics() {
    const int n = 10000;
    std::vector<float> x(n);
    int ref = 0;
    double refsum = 0;
    for (auto &v : x) {
        v = frand();
        if (v > 0.25f) ref++, refsum += v;
    }
    float *dx = dev_alloc<float>(n), *dsum = dev_alloc<float>(1);
    int *dcount = dev_alloc<int>(1);
    unsigned long long *dbits = dev_alloc<unsigned long long>(1);
    to_dev(dx, x);
    cudaMemset(dsum, 0, sizeof(float));
    cudaMemsetAsync(dcount, 0, sizeof(int), nullptr);
    cudaMemset(dbits, 0, sizeof(unsigned long long));
    LAUNCH(kern::count_big, 8, 256, 0, dx, n, 0.25f, dcount, dsum, dbits);
    int count = to_host(dcount, 1)[0];
    float sum = to_host(dsum, 1)[0];
    unsigned long long bits = to_host(dbits, 1)[0];
    CHECK(count == ref && bits == (unsigned long long)ref, "count %d/%llu, host %d", count, bits,
          ref);
    CHECK(fabs(sum - refsum) < 1e-2, "sum %g, host %g", sum, refsum);
    int h = 5;
    CHECK(atomicCAS(&h, 5, 9) == 5 && h == 9 && atomicMax(&h, 3) == 9 && atomicMin(&h, 2) == 9 &&
              h == 2 && atomicExch(&h, 4) == 2 && h == 4,
          "CAS/max/min/exch");
    cudaFree(dx);
    cudaFree(dsum);
    cudaFree(dcount);
    cudaFree(dbits);
}

static void check_launch_errors() {
    int *d = dev_alloc<int>(1);
    cudaMemset(d, 0, sizeof(int));
    CHECK(cudaGetLastError() == cudaSuccess, "no error before");
    LAUNCH(kern::flag, 1, 2048, 0, d);
    cudaError_t e = cudaGetLastError();
    CHECK(e == cudaErrorInvalidConfiguration, "block 2048: %s", cudaGetErrorName(e));
    CHECK(cudaGetLastError() == cudaSuccess, "the error is cleared by reading it");
    LAUNCH(kern::flag, dim3(1, 0), 32, 0, d);
    CHECK(cudaPeekAtLastError() != cudaSuccess && cudaGetLastError() != cudaSuccess, "grid y 0");
    LAUNCH(kern::flag, 1, dim3(1, 1, 65), 0, d);
    CHECK(cudaGetLastError() != cudaSuccess, "block z 65");
    LAUNCH(kern::flag, 1, 32, 228 << 10, d);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue, "dynamic smem 228 KiB");
    LAUNCH(kern::flag, 1, 32, 100 << 10, d);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue, "dynamic smem 100 KiB, no opt-in");
    CHECK(to_host(d, 1)[0] == 0, "a refused launch ran");
    CHECK(cudaFuncSetAttribute(kern::flag, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               100 << 10) == cudaSuccess,
          "opt-in");
    LAUNCH(kern::flag, 1, 32, 100 << 10, d);
    CHECK(cudaGetLastError() == cudaSuccess && to_host(d, 1)[0] == 1, "100 KiB after opt-in");
    /* memory checks */
    int h[4] = {0, 0, 0, 0};
    CHECK(cudaMemcpy(d, h, 2 * sizeof(int), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the end of an allocation");
    CHECK(cudaMemcpy(h, h + 2, sizeof(int), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a host pointer as the device side");
    cudaGetLastError();
    CHECK(cudaFree(d) == cudaSuccess && cudaFree(d) == cudaErrorInvalidValue, "double free");
    CHECK(cudaGetLastError() == cudaErrorInvalidValue && cudaGetLastError() == cudaSuccess,
          "the failed free is the last error");
    void *big = nullptr;
    CHECK(cudaMalloc(&big, (size_t)9 << 30) == cudaErrorMemoryAllocation && !big,
          "9 GiB on an 8 GiB device");
    cudaGetLastError();
    int count = 0;
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceCount(&count) == cudaSuccess && count == 1, "device count");
    CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major == 9 &&
              prop.sharedMemPerBlockOptin == (227u << 10) &&
              !strcmp(prop.name, "ulc CUDA emulator"),
          "properties");
    cudaStream_t s;
    cudaEvent_t e0, e1;
    float ms = -1;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess &&
              cudaEventCreate(&e0) == cudaSuccess && cudaEventCreate(&e1) == cudaSuccess &&
              cudaEventRecord(e0, s) == cudaSuccess && cudaEventRecord(e1, s) == cudaSuccess &&
              cudaEventSynchronize(e1) == cudaSuccess &&
              cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess && ms >= 0 &&
              cudaStreamSynchronize(s) == cudaSuccess && cudaStreamDestroy(s) == cudaSuccess &&
              cudaEventDestroy(e0) == cudaSuccess && cudaEventDestroy(e1) == cudaSuccess,
          "streams and events");
}

/* C = alpha op(A) op(B) + beta C, column-major, float accumulation in k order */
static void ref_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float s = 0;
            for (int p = 0; p < k; p++)
                s +=
                    (ta ? A[p + i * lda] : A[i + p * lda]) * (tb ? B[j + p * ldb] : B[p + j * ldb]);
            float &c = C[i + j * ldc];
            c = alpha * s + (beta == 0 ? 0.0f : beta * c);
        }
}

static void check_sgemm() {
    void *h = nullptr;
    CHECK(ulc_emu_blas_create(&h) == 0 && ulc_emu_blas_set_stream(h, nullptr) == 0 &&
              ulc_emu_blas_set_math_mode(h, 0) == 0 &&
              ulc_emu_blas_set_workspace(h, nullptr, 0) == 0,
          "handle");
    const int m = 5, n = 7, k = 6, batch = 3;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = (ta ? k : m) + 3, ldb = (tb ? n : k) + 2, ldc = m + 1;
            long long sa = (long long)lda * (ta ? m : k) + 5, sb = (long long)ldb * (tb ? k : n),
                      sc = (long long)ldc * n + 3;
            std::vector<float> A(sa * batch), B(sb * batch), C(sc * batch);
            for (auto &v : A) v = frand();
            for (auto &v : B) v = frand();
            for (auto &v : C) v = frand();
            float *dA = dev_alloc<float>(A.size()), *dB = dev_alloc<float>(B.size()),
                  *dC = dev_alloc<float>(C.size());
            to_dev(dA, A);
            to_dev(dB, B);
            float alpha = 1.5f, beta = 0.75f, zero = 0.0f, one = 1.0f;
            /* single, beta 0.75 */
            to_dev(dC, C);
            std::vector<float> R = C;
            ref_gemm(ta, tb, m, n, k, alpha, A.data(), lda, B.data(), ldb, beta, R.data(), ldc);
            CHECK(ulc_emu_sgemm(h, ta, tb, m, n, k, &alpha, dA, lda, dB, ldb, &beta, dC, ldc) == 0,
                  "sgemm %d%d", ta, tb);
            auto got = to_host(dC, C.size());
            int bad = 0;
            for (size_t i = 0; i < C.size(); i++) bad += !(fabsf(got[i] - R[i]) <= 1e-5f);
            CHECK(bad == 0, "sgemm ta %d tb %d: %d values wrong", ta, tb, bad);
            /* batched, beta 0 over NaN, then beta 1 */
            std::vector<float> N(C.size(), NAN);
            to_dev(dC, N);
            R = N;
            for (int b = 0; b < batch; b++)
                ref_gemm(ta, tb, m, n, k, alpha, A.data() + b * sa, lda, B.data() + b * sb, ldb,
                         zero, R.data() + b * sc, ldc);
            CHECK(ulc_emu_sgemm_batched(h, ta, tb, m, n, k, &alpha, dA, lda, sa, dB, ldb, sb, &zero,
                                        dC, ldc, sc, batch) == 0,
                  "batched %d%d", ta, tb);
            for (int b = 0; b < batch; b++)
                ref_gemm(ta, tb, m, n, k, alpha, A.data() + b * sa, lda, B.data() + b * sb, ldb,
                         one, R.data() + b * sc, ldc);
            CHECK(ulc_emu_sgemm_batched(h, ta, tb, m, n, k, &alpha, dA, lda, sa, dB, ldb, sb, &one,
                                        dC, ldc, sc, batch) == 0,
                  "batched beta 1 %d%d", ta, tb);
            got = to_host(dC, C.size());
            int nan_in = 0;
            bad = 0;
            for (int b = 0; b < batch; b++)
                for (int j = 0; j < n; j++)
                    for (int i = 0; i < m; i++) {
                        size_t at = b * sc + i + (size_t)j * ldc;
                        nan_in += std::isnan(got[at]);
                        bad += !(fabsf(got[at] - R[at]) <= 1e-5f);
                    }
            CHECK(nan_in == 0 && bad == 0, "batched ta %d tb %d: %d NaN, %d wrong", ta, tb, nan_in,
                  bad);
            cudaFree(dA);
            cudaFree(dB);
            cudaFree(dC);
        }
    float one = 1.0f, x[4] = {0, 0, 0, 0};
    CHECK(ulc_emu_sgemm(h, 0, 0, 4, 1, 1, &one, x, 3, x, 1, &one, x, 4) == 7, "lda < m");
    CHECK(ulc_emu_sgemm(h, 1, 0, 1, 1, 4, &one, x, 3, x, 4, &one, x, 1) == 7, "lda < k (T)");
    CHECK(ulc_emu_sgemm(h, 0, 0, -1, 1, 1, &one, x, 1, x, 1, &one, x, 1) == 7, "m < 0");
    CHECK(ulc_emu_sgemm_batched(h, 0, 0, 1, 1, 1, &one, x, 1, 1, x, 1, 1, &one, x, 1, 1, -1) == 7,
          "batch < 0");
    CHECK(ulc_emu_blas_destroy(h) == 0, "destroy");
}

static void check_coords() {
    dim3 grid(3, 2, 2), block(4, 3, 2);
    const int total = 3 * 2 * 2 * 4 * 3 * 2;
    int *d = dev_alloc<int>(total * 4);
    cudaMemset(d, 0, total * 4 * sizeof(int));
    LAUNCH(kern::coords, grid, block, 0, d);
    CHECK(cudaGetLastError() == cudaSuccess, "launch");
    auto o = to_host(d, total * 4);
    int W = 12, H = 6, bad = 0;
    for (int z = 0; z < 4; z++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                const int *r = &o[((z * H + y) * W + x) * 4];
                bad += r[0] != x || r[1] != y || r[2] != z || r[3] != 3 * 2 * 1000 + 1;
            }
    CHECK(bad == 0, "%d of %d threads wrong", bad, total);
}

/* A child runs fn and must abort with `expect` on stderr. */
static void check_aborts(void (*fn)(), const char *expect) {
    int fds[2];
    if (pipe(fds) != 0) return;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn();
        _exit(0);
    }
    close(fds[1]);
    std::string err;
    char buf[512];
    ssize_t r;
    while ((r = read(fds[0], buf, sizeof buf)) > 0) err.append(buf, (size_t)r);
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "child should abort (%s)", expect);
    CHECK(err.find(expect) != std::string::npos, "stderr lacks \"%s\": %s", expect, err.c_str());
}

static void deadlock_child() {
    int *d = dev_alloc<int>(128);
    LAUNCH(kern::early_return_then_sync, 2, 128, 0, d);
}
static void diverged_child() {
    int *d = dev_alloc<int>(64);
    LAUNCH(kern::diverged_warp, 1, 64, 0, d);
}

/* ---- the allocator: blocks of many sizes, over several chunks, freed in any order ---------- */

static void check_alloc() {
    size_t free0 = 0, total = 0;
    cudaMemGetInfo(&free0, &total);
    std::vector<std::pair<unsigned char *, size_t>> live;
    /* about 110 MiB at the most: two 64 MiB chunks and a region of its own (above 32 MiB) */
    const size_t sizes[] = {1, 255, 256, 257, 4096, 100000, 1u << 20, 9u << 20};
    int bad = 0;
    unsigned char *own = nullptr;
    bad += cudaMalloc(&own, (size_t)33 << 20) != cudaSuccess;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 40; i++) {
            size_t n = sizes[(size_t)(i * 7 + round) % (sizeof sizes / sizeof sizes[0])];
            unsigned char *p = nullptr;
            if (cudaMalloc(&p, n) != cudaSuccess) {
                bad++;
                continue;
            }
            bad += ((uintptr_t)p % 256) != 0;
            std::vector<unsigned char> h = to_host(p, n);
            for (size_t j = 0; j < n; j += 97) bad += h[j] != 0xff; /* fresh memory is 0xFF */
            live.push_back({p, n});
        }
        for (size_t i = 0; i < live.size(); i++) /* each block its own byte */
            cudaMemset(live[i].first, (int)(i & 0x7f), live[i].second);
        for (size_t i = 0; i < live.size(); i++) {
            std::vector<unsigned char> h = to_host(live[i].first, live[i].second);
            for (size_t j = 0; j < h.size(); j += 61) bad += h[j] != (unsigned char)(i & 0x7f);
            bad += h.back() != (unsigned char)(i & 0x7f);
        }
        /* free every other one (then, in the last round, all) */
        std::vector<std::pair<unsigned char *, size_t>> keep;
        for (size_t i = 0; i < live.size(); i++) {
            if (round < 2 && (i + (size_t)round) % 2) keep.push_back(live[i]);
            else bad += cudaFree(live[i].first) != cudaSuccess;
        }
        live.swap(keep);
    }
    for (auto &b : live) bad += cudaFree(b.first) != cudaSuccess;
    bad += cudaFree(own) != cudaSuccess;
    size_t free1 = 0;
    cudaMemGetInfo(&free1, &total);
    CHECK(bad == 0, "%d allocator checks failed", bad);
    CHECK(free1 == free0, "free memory %zu after freeing everything, %zu before", free1, free0);
}

/* ---- the trap: host code touching device memory ------------------------------------------ */

static int *g_live; /* keeps a chunk mapped while a child reads freed memory next to it */

static void host_read_child() {
    int *d = dev_alloc<int>(16);
    cudaMemset(d, 0, 16 * sizeof(int));
    volatile int *v = d;
    fprintf(stderr, "read %d\n", v[3]); /* a host read of device memory */
}
static void host_write_child() {
    int *d = dev_alloc<int>(1000);
    LAUNCH(kern::flag, 1, 32, 0, d); /* the launch opens device memory, and closes it again */
    volatile int *v = d;
    v[999] = 1;
}
static void big_read_child() {
    float *d = dev_alloc<float>((size_t)40 << 18); /* 40 MiB: a region of its own */
    volatile float *v = d;
    fprintf(stderr, "read %g\n", (double)v[5]);
}
static void freed_read_child() {
    int *d = dev_alloc<int>(64);
    g_live = dev_alloc<int>(64);
    cudaFree(d);
    volatile int *v = d;
    fprintf(stderr, "read %d\n", v[0]);
}
static int *volatile g_null = nullptr; /* opaque to the compiler */
static void null_read_child() { /* not device memory: the default action, SIGSEGV */
    volatile int *v = g_null;
    fprintf(stderr, "read %d\n", v[1]);
}

/* Runs this program again as `--child mode` (ULC_CUDA_EMU_PROTECT=protect unless null) and
 * returns its wait status; its stderr in *err. */
static int run_self(const char *mode, const char *protect, std::string *err) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        if (protect) setenv("ULC_CUDA_EMU_PROTECT", protect, 1);
        else unsetenv("ULC_CUDA_EMU_PROTECT");
        char self[] = "/proc/self/exe", flag[] = "--child";
        char *argv[] = {self, flag, const_cast<char *>(mode), nullptr};
        execv(self, argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[512];
    ssize_t r;
    while ((r = read(fds[0], buf, sizeof buf)) > 0) err->append(buf, (size_t)r);
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

static void on_segv_before(int) {
    const char msg[] = "the earlier SIGSEGV handler\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(4);
    _exit(3);
}

/* The modes of run_self, in a fresh process (so that the emulator starts under its settings). */
static int child_main(const char *mode) {
    if (!strcmp(mode, "read")) { /* with ULC_CUDA_EMU_PROTECT=0: survives */
        int *d = dev_alloc<int>(4);
        cudaMemset(d, 0, 4 * sizeof(int));
        volatile int *v = d;
        return v[2] == 0 ? 0 : 1;
    }
    if (!strcmp(mode, "chain") || !strcmp(mode, "chain-dev")) {
        signal(SIGSEGV, on_segv_before); /* installed before the emulator's */
        int *d = dev_alloc<int>(4);
        volatile int *v = !strcmp(mode, "chain") ? g_null : d;
        return v[1];
    }
    return 2;
}

static void check_protect() {
    const char *env = getenv("ULC_CUDA_EMU_PROTECT");
    if (!(env && !strcmp(env, "0"))) { /* the trap is on in this process */
        check_aborts(host_read_child, "host code touched device memory at ");
        check_aborts(host_read_child, "(allocation of 64 bytes at ");
        check_aborts(host_read_child, ", offset 12)");
        check_aborts(host_read_child, "backtrace");
        check_aborts(host_write_child, ", offset 3996)");
        check_aborts(big_read_child, "(allocation of 41943040 bytes at ");
        check_aborts(freed_read_child, "(no live allocation there: freed device memory)");
    }
    { /* a fault elsewhere is not the emulator's */
        int fds[2];
        if (pipe(fds) == 0) {
            fflush(stderr);
            pid_t pid = fork();
            if (pid == 0) {
                dup2(fds[1], 2);
                close(fds[0]);
                int *d = dev_alloc<int>(4); /* the trap is installed */
                (void)d;
                null_read_child();
                _exit(0);
            }
            close(fds[1]);
            std::string err;
            char buf[256];
            ssize_t r;
            while ((r = read(fds[0], buf, sizeof buf)) > 0) err.append(buf, (size_t)r);
            close(fds[0]);
            int st = 0;
            waitpid(pid, &st, 0);
            CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "a null read should die of SIGSEGV");
            CHECK(err.find("device memory") == std::string::npos, "null read reported: %s",
                  err.c_str());
        }
    }
    std::string err;
    int st = run_self("read", "0", &err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ULC_CUDA_EMU_PROTECT=0: a host read works: %s",
          err.c_str());
    err.clear();
    st = run_self("chain", nullptr, &err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3 && err.find("earlier SIGSEGV handler") != std::string::npos,
          "a fault outside device memory goes to the earlier handler: %s", err.c_str());
    err.clear();
    st = run_self("chain-dev", nullptr, &err);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT &&
              err.find("host code touched device memory") != std::string::npos,
          "a host read of device memory with an earlier handler: %s", err.c_str());
    /* the emulator's own device work still reaches device memory: copies every way, sets, a
     * launch, and copies with the host side in device memory refused */
    int *a = dev_alloc<int>(8), *b = dev_alloc<int>(8);
    std::vector<int> h(8, 7), back(8, 0);
    CHECK(cudaMemcpy(a, h.data(), 8 * sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess &&
              cudaMemcpy(b, a, 8 * sizeof(int), cudaMemcpyDeviceToDevice) == cudaSuccess &&
              cudaMemcpyAsync(back.data(), b, 8 * sizeof(int), cudaMemcpyDefault) == cudaSuccess &&
              back[7] == 7,
          "copies");
    CHECK(cudaMemcpy(a, b, 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue &&
              cudaMemcpy(h.data(), a, 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy whose host side is device memory");
    cudaGetLastError();
    LAUNCH(kern::flag, 1, 32, 0, a);
    CHECK(to_host(a, 1)[0] == 1, "a launch writes device memory");
    static __device__ int sym[4];
    CHECK(cudaMemcpyToSymbol(sym, a, sizeof(int), 0, cudaMemcpyDeviceToDevice) == cudaSuccess &&
              sym[0] == 1,
          "a device-to-device copy to a symbol");
    cudaFree(a);
    cudaFree(b);
}

static void check_threads() { /* two OS threads launching at once keep their own state */
    const int n = 20000;
    std::vector<float> x(n);
    for (auto &v : x) v = frand();
    double ref = 0;
    for (float v : x) ref += v;
    float *dx = dev_alloc<float>(n);
    to_dev(dx, x);
    int bad[2] = {0, 0};
    auto work = [&](int id) {
        float *dout = dev_alloc<float>(2);
        for (int it = 0; it < 50; it++) {
            LAUNCH(kern::reduce, 1, id ? 512 : 256, 0, dx, n, dout);
            auto o = to_host(dout, 2);
            bad[id] += fabs(o[0] - ref) > 1e-2 || fabs(o[1] - ref) > 1e-2;
        }
        cudaFree(dout);
    };
    std::thread t1(work, 1);
    work(0);
    t1.join();
    CHECK(bad[0] == 0 && bad[1] == 0, "concurrent launches: %d, %d wrong sums", bad[0], bad[1]);
    cudaFree(dx);
}

static void bench() { /* not a check: what a reduction launch costs */
    const int n = 8 * 256 * 4;
    std::vector<float> x(n, 1.0f);
    float *dx = dev_alloc<float>(n), *dy = dev_alloc<float>(n), *dout = dev_alloc<float>(16);
    to_dev(dx, x);
    auto t0 = std::chrono::steady_clock::now();
    const int iters = 50;
    for (int i = 0; i < iters; i++) LAUNCH(kern::reduce, 8, 256, 0, dx, n, dout);
    auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; i++) LAUNCH(kern::axpb, 8, 256, 0, dx, dy, 1.0f, 0.0f, n);
    auto t2 = std::chrono::steady_clock::now();
    auto us = [](auto a, auto b) {
        return std::chrono::duration<double, std::micro>(b - a).count();
    };
    printf("emu_selftest: a launch of 8 x 256 threads: %.0f us with barriers and shuffles, "
           "%.0f us without\n",
           us(t0, t1) / iters, us(t1, t2) / iters);
    cudaFree(dx);
    cudaFree(dy);
    cudaFree(dout);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--child")) return child_main(argv[2]);
    check_elementwise();
    check_reduce();
    check_transpose();
    check_shuffles();
    check_atomics();
    check_launch_errors();
    check_sgemm();
    check_coords();
    check_aborts(deadlock_child, "deadlock");
    check_aborts(diverged_child, "diverged collective");
    check_alloc();
    check_protect();
    check_threads();
    bench();
    if (g_failed) {
        fprintf(stderr, "emu_selftest: %d check(s) failed\n", g_failed);
        return 1;
    }
    printf("emu_selftest: all checks passed\n");
    return 0;
}
