#define _GNU_SOURCE
#include "pool.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spin this many rounds before sleeping: long enough to cover the JS work between two kernel
 * calls of one decode step, short enough not to steal a core for long when idle. */
#define SPIN_ROUNDS 20000

#define MAX_THREADS 256

static struct {
  pthread_t threads[MAX_THREADS];
  int nworkers;
  /* current job */
  mk_task_fn fn;
  void *arg;
  int nth;
  _Atomic int generation; /* bumped once per run (and on shutdown) */
  _Atomic int finished;   /* workers done with the current generation */
  _Atomic int sleepers;
  _Atomic int stop;
} P;

static void futex_wait(_Atomic int *addr, int expected) {
#if defined(__linux__)
  syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
  (void)addr; (void)expected;
  sched_yield();
#endif
}

static void futex_wake_all(_Atomic int *addr) {
#if defined(__linux__)
  syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
  (void)addr;
#endif
}

static void *worker_main(void *vp) {
  const int ith = (int)(intptr_t)vp;
  int seen = 0;
  for (;;) {
    int g;
    int spins = 0;
    while ((g = atomic_load_explicit(&P.generation, memory_order_acquire)) == seen) {
      if (++spins < SPIN_ROUNDS) {
        CPU_RELAX();
        continue;
      }
      atomic_fetch_add(&P.sleepers, 1);
      if (atomic_load(&P.generation) == seen) futex_wait(&P.generation, seen);
      atomic_fetch_sub(&P.sleepers, 1);
      spins = 0;
    }
    seen = g;
    if (atomic_load_explicit(&P.stop, memory_order_acquire)) return NULL;
    if (ith < P.nth) P.fn(P.arg, ith, P.nth);
    atomic_fetch_add_explicit(&P.finished, 1, memory_order_acq_rel);
  }
}

void mk_pool_shutdown(void) {
  if (P.nworkers == 0) return;
  atomic_store(&P.stop, 1);
  atomic_fetch_add(&P.generation, 1);
  futex_wake_all(&P.generation);
  for (int i = 0; i < P.nworkers; i++) pthread_join(P.threads[i], NULL);
  P.nworkers = 0;
  atomic_store(&P.stop, 0);
  atomic_store(&P.generation, 0);
  atomic_store(&P.finished, 0);
}

int mk_pool_resize(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  if (n - 1 == P.nworkers) return n;
  mk_pool_shutdown();
  for (int i = 0; i < n - 1; i++) {
    if (pthread_create(&P.threads[i], NULL, worker_main, (void *)(intptr_t)(i + 1)) != 0) break;
    P.nworkers++;
  }
  return P.nworkers + 1;
}

int mk_pool_size(void) { return P.nworkers + 1; }

void mk_pool_run(mk_task_fn fn, void *arg, int nth) {
  if (nth > P.nworkers + 1) nth = P.nworkers + 1;
  if (nth <= 1 || P.nworkers == 0) {
    fn(arg, 0, 1);
    return;
  }
  P.fn = fn;
  P.arg = arg;
  P.nth = nth;
  atomic_store_explicit(&P.finished, 0, memory_order_relaxed);
  atomic_fetch_add(&P.generation, 1); /* seq_cst: publishes the job, ordered before the sleeper check */
  if (atomic_load(&P.sleepers) > 0) futex_wake_all(&P.generation);
  fn(arg, 0, nth);
  int spins = 0;
  while (atomic_load_explicit(&P.finished, memory_order_acquire) < P.nworkers) {
    if (++spins < SPIN_ROUNDS) CPU_RELAX();
    else sched_yield();
  }
}
