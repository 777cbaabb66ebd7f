/*
 * k_shape.h — what the shape and data-movement files share (k_shape.c: views, Shape/Size,
 * constants, Range, Dropout, and the family's registration; k_shape_move.c: Transpose, Concat,
 * Split, Slice, Gather, GatherElements, Expand, Tile, Trilu, Pad). Private to runtime/cpu/.
 */
#ifndef ULC_RUNTIME_CPU_K_SHAPE_H
#define ULC_RUNTIME_CPU_K_SHAPE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/cpu/cpu.h"

#define SC_MAX_RANK (2 * ULC_RT_MAX_RANK) /* Tile doubles the rank it copies over */
#define PAR_BYTES ((int64_t)1 << 16)      /* below this much work per thread, stay single */
#define CAT_MAX 1024 /* Concat inputs / Split outputs (pointers and sizes live on the stack) */

static inline const ulc_rt_tensor *in_opt(const ulc_kctx *k, int i) {
    return i < k->n_in ? k->in[i] : NULL;
}

static inline ulc_rt_tensor *out_opt(const ulc_kctx *k, int i) {
    return i < k->n_out ? k->out[i] : NULL;
}

static inline uint64_t dims_numel(int rank, const int64_t *dims) {
    uint64_t n = 1;
    for (int i = 0; i < rank; i++) n *= (uint64_t)dims[i];
    return n;
}

static inline const char *shape_of(const ulc_rt_tensor *t, char *buf, size_t size) {
    return ulc_rt_shape_str(t, buf, size);
}

/* "[2,3,4]" for a dims list (messages). */
const char *ulc_ks_dims_str(int rank, const int64_t *dims, char *buf, size_t size);

/* ULC_OK when input i is present, else "input i (what) is required". */
ulc_status ulc_ks_need_input(ulc_kctx *k, int i, const char *what);

/* Reads a 0-D or 1-D integer tensor input (a shape, axes, starts...) into v[0..*n). */
ulc_status ulc_ks_read_ints(ulc_kctx *k, int slot, const char *what, int64_t *v, int max, int *n);

/* Normalises a list of axes against rank, refusing out-of-range and repeated axes. */
ulc_status ulc_ks_norm_axes(ulc_kctx *k, const int64_t *axes, int n, int rank, int *out);

/* Fills n elements of es bytes at dst with the element at elem. */
void ulc_ks_fill_elems(void *dst, uint64_t n, const void *elem, size_t es);

/* Copies input 0's bytes to output 0 unless they already are the same bytes (aliased views). */
ulc_status ulc_ks_run_copy(ulc_kctx *k);

/* Fills the data-movement ops' slots (k_shape_move.c); called by ulc_cpu_register_shape. */
void ulc_cpu_register_shape_move(const ulc_kernel **table);

#endif
