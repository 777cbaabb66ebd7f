/* kernels.c — the CPU backend's kernel table, filled once by the family files. */
#include <pthread.h>

#include "runtime/cpu/cpu.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static const ulc_kernel *g_table[ULC_OP_COUNT_];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fill_table(void) {
    ulc_cpu_register_elementwise(g_table);
    ulc_cpu_register_shape(g_table);
    ulc_cpu_register_reduce(g_table);
    ulc_cpu_register_nn(g_table);
    ulc_cpu_register_grad(g_table);
    ulc_cpu_register_loss(g_table);
    ulc_cpu_register_attn(g_table);
}

const ulc_kernel *ulc_cpu_kernel(ulc_op op) {
    if (op <= ULC_OP_UNKNOWN || op >= ULC_OP_COUNT_) return NULL;
    pthread_once(&g_once, fill_table);
    return g_table[op];
}

void ulc_cpu_set_threads(int threads) {
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

const ulc_backend *ulc_backend_cpu(void) {
    static const ulc_backend cpu = {
        .name = "cpu",
        .kernel = ulc_cpu_kernel,
        .chain_kernel = ulc_cpu_chain_kernel,
        .attn_kernel = ulc_cpu_attn_kernel,
        .chain_eval = ulc_cpu_chain_eval,
        .set_threads = ulc_cpu_set_threads,
        .check_precision = ulc_cpu_check_precision,
    };
    return &cpu;
}
