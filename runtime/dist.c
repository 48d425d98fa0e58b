/*
 * dist.c — the collectives of data-parallel training, over MPI.
 *
 * A run joins MPI_COMM_WORLD once (rt_dist_init) and sets its error
 * handler to MPI_ERRORS_RETURN, so a failing call (a peer that died, a
 * broken link) comes back here as a status and a message naming the call
 * and MPI's own words, and the caller decides; nothing aborts behind its
 * back.  Gradients are summed with MPI_Allreduce in place, in buckets of at
 * most RT_DIST_BUCKET_BYTES: a few large messages, as a ring allreduce
 * wants, without asking MPI for a temporary as large as the whole model.
 * Every call adds to the counters of RtDist (calls, bytes, wall seconds)
 * for the scaling figures.  In a world of one process the collectives
 * return at once, and without MPI (DLC_HAVE_MPI undefined) joining fails
 * with a message, so every other call is unreachable.
 */
#include <stdint.h>
#include <string.h>

#include "runtime/dist.h"

#ifdef DLC_HAVE_MPI
#include <mpi.h>

int rt_dist_available(void) { return 1; }

/* A failed MPI call as err: which call, and MPI's message. */
static RtStatus mpi_fail(RtError *err, const char *call, int rc) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = 0;
  return rt_fail(err, RT_ERR_IO, "%s failed: %s (error %d; a process of the run may have died)", call,
                 len ? msg : "no message", rc);
}

RtStatus rt_dist_init(RtDist *d, RtError *err) {
  memset(d, 0, sizeof *d);
  d->bucket_bytes = RT_DIST_BUCKET_BYTES;
  int already = 0, rc;
  MPI_Initialized(&already);
  if (!already && (rc = MPI_Init(NULL, NULL)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Init", rc);
  d->initialized = !already;
  if ((rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN)) != MPI_SUCCESS)
    return mpi_fail(err, "MPI_Comm_set_errhandler", rc);
  if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, &d->rank)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Comm_rank", rc);
  if ((rc = MPI_Comm_size(MPI_COMM_WORLD, &d->size)) != MPI_SUCCESS) return mpi_fail(err, "MPI_Comm_size", rc);
  return RT_OK;
}

/* One in-place MPI_Allreduce of n elements of type t, counted. */
static RtStatus allreduce(RtDist *d, void *buf, int n, MPI_Datatype t, size_t esize, MPI_Op op, RtError *err) {
  double start = rt_now();
  int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, t, op, MPI_COMM_WORLD);
  d->seconds += rt_now() - start;
  d->calls++;
  d->bytes += (double)n * (double)esize;
  return rc == MPI_SUCCESS ? RT_OK : mpi_fail(err, "MPI_Allreduce", rc);
}

RtStatus rt_dist_sum_f32(RtDist *d, float *buf, int64_t n, RtError *err) {
  if (d->size <= 1) return RT_OK;
  int64_t bucket = d->bucket_bytes / (int64_t)sizeof(float);
  for (int64_t at = 0; at < n; at += bucket) {
    int cnt = (int)(n - at < bucket ? n - at : bucket);
    if (allreduce(d, buf + at, cnt, MPI_FLOAT, sizeof(float), MPI_SUM, err)) return RT_ERR_IO;
  }
  return RT_OK;
}

RtStatus rt_dist_sum_f64(RtDist *d, double *buf, int n, RtError *err) {
  return d->size <= 1 ? RT_OK : allreduce(d, buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM, err);
}

/* The sums started are requests in d->reqs, completed by rt_dist_wait;
 * the counters take the time spent in starting, testing and waiting:
 * what the backward pass did not hide. */
RtStatus rt_dist_start_sum_f32(RtDist *d, float *buf, int64_t n, RtError *err) {
  if (d->size <= 1) return RT_OK;
  if (n * (int64_t)sizeof(float) > d->bucket_bytes)
    return rt_fail(err, RT_ERR_SHAPE, "a sum of %lld floats is larger than a bucket", (long long)n);
  if (d->nreqs == d->reqcap) {
    d->reqcap = d->reqcap ? 2 * d->reqcap : 16;
    d->reqs = rt_xrealloc(d->reqs, sizeof(MPI_Request) * (size_t)d->reqcap);
  }
  double start = rt_now();
  MPI_Request *r = (MPI_Request *)d->reqs + d->nreqs;
  int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, r);
  d->seconds += rt_now() - start;
  d->calls++;
  d->bytes += (double)n * sizeof(float);
  if (rc != MPI_SUCCESS) return mpi_fail(err, "MPI_Iallreduce", rc);
  d->nreqs++;
  return RT_OK;
}

void rt_dist_progress(RtDist *d) {
  int done = 0;
  if (!d->nreqs) return;
  double start = rt_now();
  MPI_Testall(d->nreqs, d->reqs, &done, MPI_STATUSES_IGNORE);
  d->seconds += rt_now() - start;
}

RtStatus rt_dist_wait(RtDist *d, RtError *err) {
  if (!d->nreqs) return RT_OK;
  double start = rt_now();
  int rc = MPI_Waitall(d->nreqs, d->reqs, MPI_STATUSES_IGNORE);
  d->seconds += rt_now() - start;
  d->nreqs = 0;
  return rc == MPI_SUCCESS ? RT_OK : mpi_fail(err, "MPI_Waitall", rc);
}

RtStatus rt_dist_minmax_u64(RtDist *d, uint64_t v, uint64_t *lo, uint64_t *hi, RtError *err) {
  *lo = *hi = v;
  if (d->size <= 1) return RT_OK;
  uint64_t w[2] = {v, ~v}; /* the max of ~v is ~min */
  if (allreduce(d, w, 2, MPI_UINT64_T, sizeof(uint64_t), MPI_MAX, err)) return RT_ERR_IO;
  *hi = w[0], *lo = ~w[1];
  return RT_OK;
}

void rt_dist_finalize(RtDist *d) {
  if (d->initialized) MPI_Finalize();
  d->initialized = 0;
  rt_xfree(d->reqs);
  d->reqs = NULL, d->nreqs = d->reqcap = 0;
}

#else /* built without MPI */

int rt_dist_available(void) { return 0; }

RtStatus rt_dist_init(RtDist *d, RtError *err) {
  memset(d, 0, sizeof *d);
  d->size = 1;
  d->bucket_bytes = RT_DIST_BUCKET_BYTES;
  return rt_fail(err, RT_ERR_IO, "this dlc was built without MPI, so it cannot train --distributed (install Open MPI, "
                 "e.g. apt-get install openmpi-bin libopenmpi-dev, and configure again with -Dmpi=enabled)");
}

RtStatus rt_dist_sum_f32(RtDist *d, float *buf, int64_t n, RtError *err) { return RT_OK; }

RtStatus rt_dist_sum_f64(RtDist *d, double *buf, int n, RtError *err) { return RT_OK; }

RtStatus rt_dist_start_sum_f32(RtDist *d, float *buf, int64_t n, RtError *err) { return RT_OK; }

void rt_dist_progress(RtDist *d) {}

RtStatus rt_dist_wait(RtDist *d, RtError *err) { return RT_OK; }

RtStatus rt_dist_minmax_u64(RtDist *d, uint64_t v, uint64_t *lo, uint64_t *hi, RtError *err) {
  *lo = *hi = v;
  return RT_OK;
}

void rt_dist_finalize(RtDist *d) { d->initialized = 0; }

#endif
