/*
 * Persistent worker pool. Workers are created once and reused for every op; the calling
 * thread is worker 0. A run wakes the workers (they spin briefly, then sleep on a futex) and
 * calls fn(arg, ith, nth) once for every ith in [0, nth): workers claim indices as they arrive,
 * and the caller runs, after its own, the indices no worker claimed yet. So fn must not wait for
 * another index to run concurrently (no barriers between indices); it returns when all are done.
 */
#ifndef MOEKIT_POOL_H
#define MOEKIT_POOL_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void mk_cpu_relax(void) { _mm_pause(); }
#else
static inline void mk_cpu_relax(void) {}
#endif

typedef void (*mk_task_fn)(void *arg, int ith, int nth);

/* Ensure the pool has exactly n threads in total (n - 1 workers). Returns the thread count. */
int mk_pool_resize(int n);
int mk_pool_size(void);
/* Run fn on min(nth, pool size) threads, the caller included. Not reentrant. */
void mk_pool_run(mk_task_fn fn, void *arg, int nth);
void mk_pool_shutdown(void);

#endif
