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
#include "runtime/shape/params.h"

#define SC_MAX_RANK (2 * ULC_RT_MAX_RANK) /* Tile doubles the rank it copies over */
#define PAR_BYTES ((int64_t)1 << 16)      /* below this much work per thread, stay single */

/* Fills n elements of es bytes at dst with the element at elem. */
void ulc_ks_fill_elems(void *dst, uint64_t n, const void *elem, size_t es);

/* Copies input 0's bytes to output 0 unless they already are the same bytes (aliased views). */
ulc_status ulc_ks_run_copy(ulc_kctx *k);

/* Fills the data-movement ops' slots (k_shape_move.c); called by ulc_cpu_register_shape. */
void ulc_cpu_register_shape_move(const ulc_kernel **table);

#endif
