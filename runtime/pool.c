/*
 * pool.c — the thread pool that runs the parallel loops of compiled code.
 *
 * A pool of n threads is the calling thread and n - 1 workers, started
 * once by rt_pool_new and kept until rt_pool_free.  rt_pool_run(fn, count)
 * splits the iterations [0, count) into c = min(n, count) contiguous
 * chunks, chunk t being [count * t / c, count * (t + 1) / c), runs them on
 * the caller and the workers, and returns when every chunk is done.
 * Which thread runs which iterations changes nothing a loop computes: the
 * compiler marks a loop parallel only when its iterations are
 * independent, and each iteration is run whole by one thread, in its own
 * order, so results are the same bits whatever the number of threads.
 *
 * The hand-off.  A training step runs dozens of parallel loops a few
 * microseconds to a few hundred apart; a futex sleep and wake-up per loop
 * (tens of microseconds on a virtual machine, a system call for the
 * caller each time) cost as much as the loops.  So a job is one atomic
 * word, `job` = generation << 27 | chunks << 18 | top << 9 | next (chunks,
 * top and next at most RT_POOL_MAX_THREADS = 256): the caller writes the
 * job's function, count and context, then stores the word with a new
 * generation and top = next = 0.  Every thread claims chunks with a
 * compare-and-swap that also checks the generation, the workers from the
 * first up (chunk next, bumping next), the caller from the last down
 * (chunk chunks - 1 - top, bumping top), while next + top < chunks, the
 * last chunk the caller's alone (a worker that finished its chunk before
 * the caller claimed does not take it); each
 * runs the chunks it claims and counts them off `pending`; the caller, out
 * of chunks to claim, waits for pending to reach 0.  So on two threads
 * the caller runs the second half of every loop and the worker the first,
 * whichever gets to the job first: the rows a kernel makes on a thread
 * are the rows the next one reads there, from that core's caches (when
 * the first claim went to whoever came first, 5-7% of the jobs of a
 * training step ran on the other core's data).  A worker that is late
 * (not scheduled: the machine is shared) leaves its chunk to the caller
 * instead of making it wait.  A chunk cannot be claimed once its job is
 * done, and a job is not replaced before its claimed chunks are done, so
 * what a claimer reads of the job (after its claim) stays put.
 *
 * Waiting.  A worker spins on the word for up to POOL_SPIN_NS before it
 * sleeps on the condition variable `go` (never yielding in between: on a
 * busy machine a yield gives the core away for a whole time slice); the caller spins on pending the same way
 * before it sleeps on `done`.  Neither side takes the mutex unless the
 * other sleeps, so a loop that follows another within the spin costs a
 * few cache-line transfers, and an idle pool gives its cores back.  No
 * lost wake-ups: a sleeper registers (sleepers++, waiting = 1, both
 * sequentially consistent) under the mutex and then checks again what it
 * waits for; the other side changes that first and then reads the
 * registration, so of the two orders one side sees the other's write, and
 * a sleeper seen is woken under the mutex, which it holds from its check
 * until it waits.
 *
 * One job runs at a time: a call made while another thread's job is
 * running (two models trained side by side on one pool, or a loop inside
 * a chunk) runs its whole range on the calling thread instead of waiting.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/rt.h"

/* How long a worker waits for the next job, and the caller for the
 * workers, spinning before they sleep: longer than the gaps between two
 * parallel loops of a training step and between two steps (the batch
 * gathered, the loss read), short enough that an idle pool gives its cores
 * back within a fraction of a millisecond. */
#define POOL_SPIN_NS 200000
#define JOB_GEN(w) ((w) >> 27)
#define JOB_CHUNKS(w) ((int)((w) >> 18 & 511))
#define JOB_TOP(w) ((int)((w) >> 9 & 511))
#define JOB_NEXT(w) ((int)((w)&511))

typedef struct PoolWorker {
  RtPool *pool;
  int index;
} PoolWorker;

struct RtPool {
  int n;                      /* threads, the caller included */
  int started;                /* workers running */
  pthread_t *tids;
  PoolWorker *workers;
  pthread_mutex_t mu;
  pthread_cond_t go, done;
  pthread_mutex_t busy;       /* held by the thread whose job is running */
  atomic_uint_fast64_t job;   /* generation << 27 | chunks << 18 | claimed from the top << 9 | next from the bottom */
  atomic_int pending;         /* chunks of the job not done */
  atomic_int sleepers;        /* workers asleep (or about to be) on go */
  atomic_int waiting;         /* the caller asleep (or about to be) on done */
  atomic_int quit;
  RtParallelFn fn;            /* the job, written before job is stored */
  int64_t count;
  void *ctx;
  struct PoolTrace *trace;    /* DLC_POOL_TRACE, or NULL */
};

/* Chunk t of c of [0, count). */
static void pool_chunk(int64_t count, int t, int c, int64_t *lo, int64_t *hi) {
  *lo = count / c * t + count % c * t / c;
  *hi = count / c * (t + 1) + count % c * (t + 1) / c;
}

static int64_t pool_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pool_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Spins until stop(p, arg) or POOL_SPIN_NS pass; returns stop's last answer. */
static int pool_spin(RtPool *p, int (*stop)(RtPool *, uint64_t), uint64_t arg) {
  int64_t start = 0;
  for (int i = 1;; i++) {
    if (stop(p, arg)) return 1;
    pool_pause();
    if (i % 64 == 0) {
      int64_t now = pool_now_ns();
      if (!start) start = now;
      else if (now - start > POOL_SPIN_NS) return stop(p, arg);
    }
  }
}

static int pool_new_job(RtPool *p, uint64_t gen) {
  return JOB_GEN(atomic_load_explicit(&p->job, memory_order_acquire)) != gen || atomic_load_explicit(&p->quit, memory_order_acquire);
}

static int pool_job_done(RtPool *p, uint64_t unused) {
  (void)unused;
  return atomic_load_explicit(&p->pending, memory_order_acquire) == 0;
}

/* Waits for a job of a generation other than gen (or quit). */
static void pool_wait_job(RtPool *p, uint64_t gen) {
  if (pool_spin(p, pool_new_job, gen)) return;
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->sleepers, 1);
  while (!pool_new_job(p, gen)) pthread_cond_wait(&p->go, &p->mu);
  atomic_fetch_sub(&p->sleepers, 1);
  pthread_mutex_unlock(&p->mu);
}

/* --- the trace --------------------------------------------------------------------
 *
 * DLC_POOL_TRACE=FILE: every job of a pool of two or more threads is a
 * line of FILE, written when the pool is freed: the function's address,
 * the count, the job's start and end, and each chunk's start, end and
 * thread (0 the caller, 1.. the workers), in nanoseconds of
 * CLOCK_MONOTONIC; with DLC_POOL_TRACE_SERIAL=1 each job runs whole on
 * the caller (the same code on one thread, to compare with).  With the
 * JIT's DLC_PERF_MAP, bench/pool_trace.py names the loops and says where
 * two threads lose time: jobs run on one core, uneven chunks, waits, and
 * the work between jobs. */
#define TRACE_JOBS (1 << 18)
#define TRACE_CHUNKS 4

typedef struct TraceJob {
  RtParallelFn fn;
  int64_t count, t0, t1, cs[TRACE_CHUNKS], ce[TRACE_CHUNKS];
  int who[TRACE_CHUNKS];
} TraceJob;

typedef struct PoolTrace {
  char *path;
  int serial;
  size_t n;
  TraceJob *cur;   /* the running job's, written before job is stored */
  TraceJob jobs[];
} PoolTrace;

static PoolTrace *trace_new(void) {
  const char *path = getenv("DLC_POOL_TRACE");
  if (!path || !*path) return NULL;
  PoolTrace *t = calloc(1, sizeof *t + TRACE_JOBS * sizeof(TraceJob));
  if (t) t->path = strdup(path), t->serial = getenv("DLC_POOL_TRACE_SERIAL") != NULL;
  return t;
}

static void trace_write(PoolTrace *t) {
  FILE *f = t->path ? fopen(t->path, "w") : NULL;
  if (!f) fprintf(stderr, "dlc: DLC_POOL_TRACE: cannot write %s\n", t->path ? t->path : "the trace");
  for (size_t i = 0; f && i < t->n; i++) {
    const TraceJob *j = &t->jobs[i];
    fprintf(f, "%p %lld %lld %lld", (void *)(uintptr_t)j->fn, (long long)j->count, (long long)j->t0, (long long)j->t1);
    for (int c = 0; c < TRACE_CHUNKS && j->cs[c]; c++)
      fprintf(f, " %lld %lld %d", (long long)j->cs[c], (long long)j->ce[c], j->who[c]);
    fputc('\n', f);
  }
  if (f) fclose(f);
  free(t->path);
  free(t);
}

/* Claims and runs chunks of generation gen while there are any: the
 * caller (top) from the last chunk down, the workers from the first up
 * but never the last, which is the caller's (it is never late). */
static void pool_claim(RtPool *p, uint64_t gen, int top, int me) {
  uint64_t w = atomic_load(&p->job);
  while (JOB_GEN(w) == gen && JOB_NEXT(w) + (top || JOB_TOP(w) ? JOB_TOP(w) : 1) < JOB_CHUNKS(w)) {
    if (!atomic_compare_exchange_weak(&p->job, &w, w + (top ? 1u << 9 : 1u))) continue; /* w reloaded */
    int64_t lo, hi;
    int c = top ? JOB_CHUNKS(w) - 1 - JOB_TOP(w) : JOB_NEXT(w);
    pool_chunk(p->count, c, JOB_CHUNKS(w), &lo, &hi);
    TraceJob *tj = p->trace && c < TRACE_CHUNKS ? p->trace->cur : NULL;
    if (tj) tj->cs[c] = pool_now_ns(), tj->who[c] = me;
    p->fn(lo, hi, p->ctx);
    if (tj) tj->ce[c] = pool_now_ns();
    if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->waiting)) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
    w = atomic_load(&p->job);
  }
}

static void *pool_worker(void *arg) {
  PoolWorker *w = arg;
  RtPool *p = w->pool;
  uint64_t gen = 0;
  for (;;) {
    pool_wait_job(p, gen);
    if (atomic_load(&p->quit)) break;
    gen = JOB_GEN(atomic_load(&p->job));
    pool_claim(p, gen, 0, w->index);
  }
  return NULL;
}

RtStatus rt_pool_new(int nthreads, RtPool **out, RtError *err) {
  *out = NULL;
  if (nthreads < 1 || nthreads > RT_POOL_MAX_THREADS)
    return rt_fail(err, RT_ERR_FORMAT, "a pool has 1 to %d threads, not %d", RT_POOL_MAX_THREADS, nthreads);
  RtPool *p = rt_calloc(1, sizeof *p);
  if (p) p->tids = rt_calloc((size_t)nthreads, sizeof *p->tids);
  if (p) p->workers = rt_calloc((size_t)nthreads, sizeof *p->workers);
  if (!p || !p->tids || !p->workers) {
    if (p) free(p->tids), free(p->workers);
    free(p);
    return rt_fail(err, RT_ERR_NOMEM, "out of memory making a pool of %d threads", nthreads);
  }
  p->n = nthreads;
  if (nthreads > 1) p->trace = trace_new();
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->busy, NULL);
  pthread_cond_init(&p->go, NULL);
  pthread_cond_init(&p->done, NULL);
  atomic_init(&p->job, 0);
  atomic_init(&p->pending, 0);
  atomic_init(&p->sleepers, 0);
  atomic_init(&p->waiting, 0);
  atomic_init(&p->quit, 0);
  for (int t = 1; t < nthreads; t++, p->started++) {
    p->workers[t] = (PoolWorker){p, t};
    int rc = pthread_create(&p->tids[t], NULL, pool_worker, &p->workers[t]);
    if (rc) {
      rt_pool_free(p);
      return rt_fail(err, RT_ERR_NOMEM, "cannot start thread %d of %d: %s", t + 1, nthreads, strerror(rc));
    }
  }
  *out = p;
  return RT_OK;
}

void rt_pool_free(RtPool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->quit, 1);
  pthread_cond_broadcast(&p->go);
  pthread_mutex_unlock(&p->mu);
  for (int t = 1; t <= p->started; t++) pthread_join(p->tids[t], NULL);
  pthread_cond_destroy(&p->go);
  pthread_cond_destroy(&p->done);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->busy);
  if (p->trace) trace_write(p->trace);
  free(p->tids);
  free(p->workers);
  free(p);
}

int rt_pool_threads(const RtPool *p) { return p ? p->n : 1; }

void rt_pool_run(RtPool *p, RtParallelFn fn, int64_t count, void *ctx) {
  if (count <= 0) return;
  if (!p || p->n == 1 || count == 1 || pthread_mutex_trylock(&p->busy)) {
    fn(0, count, ctx);
    return;
  }
  TraceJob *tj = p->trace && p->trace->n < TRACE_JOBS ? &p->trace->jobs[p->trace->n++] : NULL;
  if (tj) {
    tj->fn = fn, tj->count = count, tj->t0 = pool_now_ns();
    if (p->trace->serial) {
      tj->cs[0] = tj->t0;
      fn(0, count, ctx);
      tj->t1 = tj->ce[0] = pool_now_ns();
      pthread_mutex_unlock(&p->busy);
      return;
    }
  }
  if (p->trace) p->trace->cur = tj;
  int chunks = count < p->n ? (int)count : p->n;
  p->fn = fn, p->count = count, p->ctx = ctx;
  atomic_store_explicit(&p->pending, chunks, memory_order_relaxed);
  uint64_t gen = JOB_GEN(atomic_load_explicit(&p->job, memory_order_relaxed)) + 1;
  atomic_store(&p->job, gen << 27 | (uint64_t)chunks << 18); /* seq_cst: before the read of sleepers */
  if (atomic_load(&p->sleepers)) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
  }
  pool_claim(p, gen, 1, 0);
  if (!pool_spin(p, pool_job_done, 0)) {
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->waiting, 1);
    while (!pool_job_done(p, 0)) pthread_cond_wait(&p->done, &p->mu);
    atomic_store(&p->waiting, 0);
    pthread_mutex_unlock(&p->mu);
  }
  if (tj) tj->t1 = pool_now_ns();
  pthread_mutex_unlock(&p->busy);
}

/* --- row gathers ------------------------------------------------------------------
 *
 * A training step's batch is rows of the data set picked in a shuffled
 * order: copying them is bound by memory latency (each row starts at a
 * random place), and with the step's loops on two threads it is a large
 * share of what runs on one.  Each thread copies its own rows. */
typedef struct PoolGather {
  const char *src;
  char *dst;
  size_t row;
  const int64_t *idx;
} PoolGather;

static void pool_gather_chunk(int64_t lo, int64_t hi, void *ctx) {
  const PoolGather *g = ctx;
  for (int64_t i = lo; i < hi; i++) memcpy(g->dst + (size_t)i * g->row, g->src + (size_t)g->idx[i] * g->row, g->row);
}

void rt_pool_gather_rows(RtPool *p, const void *src, size_t row, const int64_t *idx, int64_t count, void *dst) {
  PoolGather g = {src, dst, row, idx};
  rt_pool_run(p, pool_gather_chunk, count, &g);
}
