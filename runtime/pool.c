/*
 * pool.c — the thread pool that runs the parallel loops of compiled code.
 *
 * A pool of n threads is the calling thread and n - 1 workers, started
 * once by rt_pool_new and kept until rt_pool_free.  rt_pool_run(fn, count)
 * splits the iterations [0, count) into n contiguous chunks, chunk t being
 * [count * t / n, count * (t + 1) / n), hands chunk t to worker t and runs
 * chunk 0 itself, and returns when every chunk is done.  Which thread runs
 * which iterations changes nothing a loop computes: the compiler marks a
 * loop parallel only when its iterations are independent, and each
 * iteration is run whole by one thread, in its own order, so results are
 * the same bits whatever the number of threads.
 *
 * Idle workers sleep on a condition variable and never spin, so a serial
 * stretch of the program (and any other process) keeps every core.  A job
 * is published under the mutex with a new generation number; each worker
 * runs the chunk of each generation once and the last one to finish
 * signals the caller.  One job runs at a time: a call made while another
 * thread's job is running (two models trained side by side on one pool)
 * runs its whole range on the calling thread instead of waiting.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

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
  uint64_t gen;               /* the job's generation */
  int pending;                /* workers still on the job */
  int quit;
  RtParallelFn fn;            /* the job */
  int64_t count;
  void *ctx;
};

/* Chunk t of n of [0, count). */
static void pool_chunk(int64_t count, int t, int n, int64_t *lo, int64_t *hi) {
  *lo = count / n * t + count % n * t / n;
  *hi = count / n * (t + 1) + count % n * (t + 1) / n;
}

static void pool_run_chunk(RtPool *p, RtParallelFn fn, int64_t count, void *ctx, int t) {
  int64_t lo, hi;
  pool_chunk(count, t, p->n, &lo, &hi);
  if (lo < hi) fn(lo, hi, ctx);
}

static void *pool_worker(void *arg) {
  PoolWorker *w = arg;
  RtPool *p = w->pool;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
    if (p->quit) break;
    seen = p->gen;
    RtParallelFn fn = p->fn;
    int64_t count = p->count;
    void *ctx = p->ctx;
    pthread_mutex_unlock(&p->mu);
    pool_run_chunk(p, fn, count, ctx, w->index);
    pthread_mutex_lock(&p->mu);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
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
  pthread_mutex_init(&p->mu, NULL);
  pthread_mutex_init(&p->busy, NULL);
  pthread_cond_init(&p->go, NULL);
  pthread_cond_init(&p->done, NULL);
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
  p->quit = 1;
  pthread_cond_broadcast(&p->go);
  pthread_mutex_unlock(&p->mu);
  for (int t = 1; t <= p->started; t++) pthread_join(p->tids[t], NULL);
  pthread_cond_destroy(&p->go);
  pthread_cond_destroy(&p->done);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->busy);
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
  pthread_mutex_lock(&p->mu);
  p->fn = fn, p->count = count, p->ctx = ctx;
  p->pending = p->n - 1;
  p->gen++;
  pthread_cond_broadcast(&p->go);
  pthread_mutex_unlock(&p->mu);
  pool_run_chunk(p, fn, count, ctx, 0);
  pthread_mutex_lock(&p->mu);
  while (p->pending) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
  pthread_mutex_unlock(&p->busy);
}
