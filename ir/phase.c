/*
 * phase.c — the CPU time each phase of a compilation takes, on request.
 *
 * Off unless ir_phase_enable names a stream (dlc does when the
 * environment sets DLC_TIME_PHASES): then every ir_phase_end prints one
 * line "time: NAME SECONDS" there, the CPU time of the calling thread
 * since the matching ir_phase_start.  Thread CPU time, not wall time, so
 * that other processes on the machine do not count; every phase timed
 * (the frontend, each pipeline step, building, optimising and compiling
 * the LLVM module) runs on the thread that started it.  The timer has no
 * state of its own beyond the stream, so phases may nest: the LLVM phases
 * are printed inside the compile of a whole training step, for instance.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <time.h>

#include "ir/ir.h"

static FILE *phase_out;

void ir_phase_enable(FILE *to) { phase_out = to; }

/* Seconds on clock c, or 0 when nothing is timed. */
static double phase_clock(clockid_t c) {
  if (!phase_out) return 0;
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double ir_phase_start(void) { return phase_clock(CLOCK_THREAD_CPUTIME_ID); }

void ir_phase_end(const char *name, double start) {
  if (!phase_out) return;
  fprintf(phase_out, "time: %-22s %8.4f s\n", name, ir_phase_start() - start);
  fflush(phase_out);
}

double ir_wall_start(void) { return phase_clock(CLOCK_MONOTONIC); }

void ir_wall_end(const char *name, double start) {
  if (!phase_out) return;
  fprintf(phase_out, "wall: %-22s %8.4f s\n", name, ir_wall_start() - start);
  fflush(phase_out);
}
