#define _GNU_SOURCE
#include "pool.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
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
  _Atomic int generation; /* bumped once per run (and on shutdown): what sleeping workers wait on */
  /* the open run: (run number << 32) | slots, slots = thread indices 1..slots not yet claimed; a worker
   * claims index `slots` by decrementing it, the caller closes the run by setting it to 0 */
  _Atomic uint64_t run;
  _Atomic int finished;   /* workers done with their claimed index of the current run */
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
  (void)vp;
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
    uint64_t v = atomic_load_explicit(&P.run, memory_order_acquire);
    while ((uint32_t)v != 0) /* a slot is left: claim it (the run may be newer than `seen`; fn/arg are its own) */
      if (atomic_compare_exchange_weak_explicit(&P.run, &v, v - 1, memory_order_acq_rel, memory_order_acquire)) {
        P.fn(P.arg, (int)(uint32_t)v, P.nth);
        atomic_fetch_add_explicit(&P.finished, 1, memory_order_acq_rel);
        break;
      }
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
  atomic_store(&P.run, 0);
  atomic_store(&P.finished, 0);
}

int mk_pool_resize(int n) {
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  if (n - 1 == P.nworkers) return n;
  mk_pool_shutdown();
  for (int i = 0; i < n - 1; i++) {
    if (pthread_create(&P.threads[i], NULL, worker_main, NULL) != 0) break;
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
  const uint64_t id = (atomic_load_explicit(&P.run, memory_order_relaxed) >> 32) + 1;
  atomic_store_explicit(&P.run, id << 32 | (uint64_t)(nth - 1), memory_order_release);
  atomic_fetch_add(&P.generation, 1); /* seq_cst: ordered before the sleeper check */
  if (atomic_load(&P.sleepers) > 0) futex_wake_all(&P.generation);
  fn(arg, 0, nth);
  /* Close the run and do the indices no worker claimed: on a loaded machine a descheduled worker then
   * costs nothing here (instead of a wait until it is scheduled again). Tasks partition work by index
   * or by shared counters, with no barrier between threads, so any thread may run any index. */
  const int left = (int)(uint32_t)atomic_exchange_explicit(&P.run, id << 32, memory_order_acq_rel);
  for (int i = 1; i <= left; i++) fn(arg, i, nth);
  const int joined = nth - 1 - left;
  int spins = 0;
  while (atomic_load_explicit(&P.finished, memory_order_acquire) < joined) {
    if (++spins < SPIN_ROUNDS) CPU_RELAX();
    else sched_yield();
  }
}
