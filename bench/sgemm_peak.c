/*
 * sgemm_peak.c — the machine's practical f32 matrix-multiply peak: oneDNN's dnnl_sgemm on large
 * square matrices, timed with a given OpenMP thread count. bench/bench_runtime.py runs it in the
 * same run as its model benchmarks and reports each model's GFLOP/s as a share of this figure.
 *
 *   sgemm_peak [--threads N] [--sizes 1024,1536,2048] [--seconds S]
 *
 * For each size n: C[n,n] = A[n,n] @ B[n,n] (row-major, no transposes, beta 0), one untimed
 * warm-up call, then calls until S seconds have passed (at least 3); the per-call median gives
 * 2·n³ / t GFLOP/s. Prints one line per size, then the best of them:
 *
 *   sgemm_peak: oneDNN 2.6.3 (avx2), 2 threads
 *   size 1024: median 14.012 ms over 72 calls, 153.3 GFLOP/s
 *   ...
 *   peak 158.1 GFLOP/s
 *
 * oneDNN's headers are not included: docs/ARCHITECTURE.md keeps them under runtime/cpu/
 * (scripts/check_layering.sh), so the three entry points used are declared here, with the
 * types of oneDNN 2.x's C API (dnnl_dim_t is int64_t; dnnl_status_t and dnnl_cpu_isa_t are
 * C enums, passed and returned as int).
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* oneDNN 2.x C API (oneapi/dnnl/dnnl.h, dnnl_types.h, dnnl_debug.h) */
typedef struct {
    int major, minor, patch;
    const char *hash;
    unsigned cpu_runtime, gpu_runtime;
} sgemm_dnnl_version;
extern int dnnl_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);
extern const sgemm_dnnl_version *dnnl_version(void);
extern int dnnl_get_effective_cpu_isa(void);
extern const char *dnnl_cpu_isa2str(int isa);

#define MAX_SIZES 16

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int usage(const char *msg) {
    fprintf(stderr, "sgemm_peak: %s\nusage: sgemm_peak [--threads N] [--sizes N,N,...] [--seconds S]\n",
            msg);
    return 2;
}

/* "1024,2048" -> sizes[]; returns the count, 0 on a malformed list */
static int parse_sizes(const char *s, long *sizes) {
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 16 || v > 16384 || n == MAX_SIZES) return 0;
        sizes[n++] = v;
        if (*end == ',') end++;
        else if (*end) return 0;
        s = end;
    }
    return n;
}

/* Median seconds per call of an n x n x n sgemm, and the number of timed calls. */
static int time_sgemm(long n, double seconds, double *median, int *calls) {
    size_t elems = (size_t)n * (size_t)n;
    float *a = malloc(elems * sizeof *a), *b = malloc(elems * sizeof *b), *c = malloc(elems * sizeof *c);
    size_t cap = 1024;
    double *t = malloc(cap * sizeof *t);
    int rc = -1;
    if (!a || !b || !c || !t) {
        fprintf(stderr, "sgemm_peak: out of memory for size %ld\n", n);
        goto done;
    }
    /* deterministic values in [-1, 1): no denormals, nothing the library could skip */
    uint32_t x = 12345u;
    for (size_t i = 0; i < elems; i++) {
        x = x * 1664525u + 1013904223u;
        a[i] = (float)(x >> 8) / 8388608.0f - 1.0f;
        x = x * 1664525u + 1013904223u;
        b[i] = (float)(x >> 8) / 8388608.0f - 1.0f;
    }
    memset(c, 0, elems * sizeof *c);
    if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != 0) { /* warm-up */
        fprintf(stderr, "sgemm_peak: dnnl_sgemm failed for size %ld\n", n);
        goto done;
    }
    size_t k = 0;
    double start = now_s();
    while (k < 3 || now_s() - start < seconds) {
        if (k == cap) {
            double *grown = realloc(t, 2 * cap * sizeof *t);
            if (!grown) break;
            t = grown;
            cap *= 2;
        }
        double t0 = now_s();
        dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t[k++] = now_s() - t0;
    }
    qsort(t, k, sizeof *t, cmp_double);
    *median = t[k / 2];
    *calls = (int)k;
    rc = 0;
done:
    free(a);
    free(b);
    free(c);
    free(t);
    return rc;
}

int main(int argc, char **argv) {
    long sizes[MAX_SIZES] = {1024, 1536, 2048};
    int nsizes = 3, threads = 0;
    double seconds = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) return usage("every option needs a value");
        const char *v = argv[++i];
        char *end;
        if (strcmp(a, "--threads") == 0) {
            long n = strtol(v, &end, 10);
            if (*end || n < 0 || n > 4096) return usage("--threads needs a count (0 = every core)");
            threads = (int)n;
        } else if (strcmp(a, "--sizes") == 0) {
            if (!(nsizes = parse_sizes(v, sizes))) return usage("--sizes needs sizes 16..16384, comma-separated");
        } else if (strcmp(a, "--seconds") == 0) {
            seconds = strtod(v, &end);
            if (*end || !(seconds >= 0 && seconds <= 600)) return usage("--seconds needs 0..600");
        } else {
            return usage("unknown option");
        }
    }
    if (threads > 0) omp_set_num_threads(threads);
    const sgemm_dnnl_version *ver = dnnl_version();
    printf("sgemm_peak: oneDNN %d.%d.%d (%s), %d threads\n", ver->major, ver->minor, ver->patch,
           dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()), omp_get_max_threads());
    double best = 0;
    for (int s = 0; s < nsizes; s++) {
        double med;
        int calls;
        if (time_sgemm(sizes[s], seconds, &med, &calls) != 0) return 1;
        double gflops = 2.0 * (double)sizes[s] * (double)sizes[s] * (double)sizes[s] / med * 1e-9;
        printf("size %ld: median %.3f ms over %d calls, %.1f GFLOP/s\n", sizes[s], med * 1e3, calls, gflops);
        fflush(stdout);
        if (gflops > best) best = gflops;
    }
    printf("peak %.1f GFLOP/s\n", best);
    return 0;
}
