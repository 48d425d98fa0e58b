/*
 * dist.h — data-parallel training across processes: the world a run is
 * part of (its rank and size) and the collective operations the trainer
 * needs, over MPI when dlc is built with it (meson option `mpi`).
 *
 * A library of its own (dlc_dist), apart from the installed runtime, so
 * nothing that links the runtime needs MPI.  Every call returns a status
 * and never aborts: MPI errors come back as messages (MPI_ERRORS_RETURN).
 * In a world of one process every collective is a no-op.
 */
#ifndef DLC_DIST_H
#define DLC_DIST_H

#include "runtime/rt.h"

/* The gradient buckets: each MPI_Allreduce sums at most this many bytes
 * (unless RtDist.bucket_bytes says otherwise). */
#define RT_DIST_BUCKET_BYTES ((int64_t)4 << 20)

typedef struct RtDist {
  int rank, size;             /* this process and the number of processes */
  int initialized;            /* MPI_Init was called (rt_dist_finalize calls MPI_Finalize) */
  int64_t bucket_bytes;       /* the buckets' size (rt_dist_init: RT_DIST_BUCKET_BYTES) */
  int64_t calls;              /* MPI_Allreduce calls made */
  double bytes;               /* bytes this process passed to them */
  double seconds;             /* wall time spent in them (waiting for the slowest rank included) */
  void *reqs;                 /* the sums started (MPI_Request[]) and not yet waited for */
  int nreqs, reqcap;
} RtDist;

/* 1 when dlc was built with MPI. */
int rt_dist_available(void);
/* Joins the world (MPI_Init; a process not started by mpirun is a world
 * of one).  Without MPI: an error saying so. */
RtStatus rt_dist_init(RtDist *d, RtError *err);
/* Sums n floats of buf over every process, in place, in buckets of
 * d->bucket_bytes; afterwards every process holds the same sums. */
RtStatus rt_dist_sum_f32(RtDist *d, float *buf, int64_t n, RtError *err);
/* Starts summing n floats of buf (at most d->bucket_bytes) over
 * every process, in place, without waiting (MPI_Iallreduce): buf must not
 * be touched until rt_dist_wait.  Every process starts the same sums in
 * the same order. */
RtStatus rt_dist_start_sum_f32(RtDist *d, float *buf, int64_t n, RtError *err);
/* Lets the sums started advance (MPI_Testall), without waiting. */
void rt_dist_progress(RtDist *d);
/* Waits for every sum started; the time waited counts in d->seconds. */
RtStatus rt_dist_wait(RtDist *d, RtError *err);
/* The same for n doubles (evaluation totals). */
RtStatus rt_dist_sum_f64(RtDist *d, double *buf, int n, RtError *err);
/* The smallest and the largest of every process's v (a check that the
 * processes agree). */
RtStatus rt_dist_minmax_u64(RtDist *d, uint64_t v, uint64_t *lo, uint64_t *hi, RtError *err);
/* Leaves the world (MPI_Finalize) when rt_dist_init joined it. */
void rt_dist_finalize(RtDist *d);

#endif
