/*
 * fault.h — mapped input files that shrink under us: a SIGBUS inside a guarded range becomes
 * zero pages and a flag, instead of the death of the process.
 *
 * A read-only mapping of a file that another process truncates faults (SIGBUS) on every page
 * past the new end. ulc_mapping_open guards each mapping it makes: the handler, installed once
 * for the process and chaining to the handler that was there before for every fault outside a
 * guarded range, maps anonymous zero pages over the rest of the faulting range (MAP_FIXED),
 * sets the mapping's flag, and returns, so the read that faulted reads zeros. The flag makes
 * every later output commit fail ("changed while ulc was reading it", common/fileset.h), so the
 * zeros never reach a file. Lock-free for the handler: any thread (OpenMP workers too) may fault.
 */
#ifndef ULC_COMMON_FAULT_H
#define ULC_COMMON_FAULT_H

#include <stddef.h>

/* Guards [p, p + n) (page-aligned p, as mmap returns it): a fault there sets *changed to 1.
 * Returns the guard's slot, or -1 when every slot is taken (the range is then unguarded). */
int ulc_fault_guard(const void *p, size_t n, int *changed);
/* Drops a guard (before the range is unmapped). Accepts -1. */
void ulc_fault_unguard(int slot);

#endif
