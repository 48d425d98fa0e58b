/*
 * peak_fma.c — this core's peak FP32 rate, measured: the rate of
 * independent chains of vector fused multiply-adds on one thread.
 *
 *   cc -O2 -march=native bench/peak_fma.c -o peak_fma && ./peak_fma [REPS]
 *
 * A chain is acc = acc * m + a on one vector register; an FMA's result is
 * ready a few cycles after it issues (4 on recent x86) and a core issues
 * up to two a cycle, so at least 8 chains must be in flight to keep both
 * units busy: 16 chains of AVX-512 (32 registers) and 12 of AVX2 (16
 * registers, a few kept for the constants); the chain loop is unrolled
 * (GCC unroll) so the accumulators live in registers, not memory.  Each run is about 0.1 s of
 * thread CPU time (time the machine's other work takes from this thread
 * is not counted); the peak is the fastest of REPS runs (default 5), the
 * one least disturbed by other work sharing the core.  Prints
 * "key value" lines for bench/run.sh:
 *
 *   cpu_model Intel(R) Xeon(R) Processor       (from /proc/cpuinfo)
 *   vector_isa avx512f                         (the widest with FMA)
 *   peak_gflops 174.9                          (fastest run, widest ISA)
 *   peak_runs_gflops 170.1 174.9 ...           (every run)
 *   peak_avx2_gflops 88.0                      (256-bit FMAs, for reference)
 *
 * Without vector FMA (no -march=native, another architecture) it prints
 * the scalar rate and vector_isa none.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Read by the end of each run so the compiler keeps the chains. */
static volatile float sink;

/* One timed run of CHAINS chains of type V for ITERS steps; returns
 * GFLOP/s (an FMA is 2 FLOPs per lane). */
#define CHAIN_RUN(name, V, SET1, FMA, GET0, LANES, CHAINS)                   \
  static double name(long iters) {                                          \
    V acc[CHAINS], m = SET1(0.999999f), a = SET1(1e-7f);                    \
    for (int j = 0; j < CHAINS; j++) acc[j] = SET1((float)j);              \
    double t0 = now();                                                      \
    for (long i = 0; i < iters; i++) {                                      \
      _Pragma("GCC unroll 16")                                              \
      for (int j = 0; j < CHAINS; j++) acc[j] = FMA(acc[j], m, a);         \
    }                                                                       \
    double t = now() - t0;                                                  \
    float s = 0;                                                            \
    for (int j = 0; j < CHAINS; j++) s += GET0(acc[j]);                     \
    sink = s;                                                               \
    return 2.0 * (LANES) * (CHAINS) * (double)iters / t / 1e9;              \
  }

#if defined(__AVX512F__)
CHAIN_RUN(run_avx512, __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_cvtss_f32, 16, 16)
#endif
#if defined(__AVX2__) && defined(__FMA__)
CHAIN_RUN(run_avx2, __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_cvtss_f32, 8, 12)
#endif
#define S_SET1(x) (x)
#define S_FMA(a, b, c) ((a) * (b) + (c))
#define S_GET0(x) (x)
CHAIN_RUN(run_scalar, float, S_SET1, S_FMA, S_GET0, 1, 8)

/* The fastest of reps runs of fn, each about 0.1 s; every run's rate goes
 * to runs (may be NULL). */
static double best_of(double (*fn)(long), int reps, double *runs) {
  long iters = 1000;
  while (1) { /* calibrate to about 0.1 s a run */
    double t0 = now();
    fn(iters);
    if (now() - t0 > 0.02) break;
    iters *= 2;
  }
  iters *= 5;
  double best = 0;
  for (int r = 0; r < reps; r++) {
    double g = fn(iters);
    if (runs) runs[r] = g;
    if (g > best) best = g;
  }
  return best;
}

static void print_cpu_model(void) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512];
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0) {
      const char *v = strchr(line, ':');
      v = v ? v + 1 : line;
      while (*v == ' ' || *v == '\t') v++;
      printf("cpu_model %s", v);
      fclose(f);
      return;
    }
  }
  if (f) fclose(f);
  puts("cpu_model unknown");
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 5;
  if (reps < 1 || reps > 100) {
    fprintf(stderr, "usage: peak_fma [REPS]  (1 to 100 runs, default 5)\n");
    return 2;
  }
  double runs[100];
  const char *isa = "none";
  double (*widest)(long) = run_scalar;
#if defined(__AVX512F__)
  isa = "avx512f";
  widest = run_avx512;
#elif defined(__AVX2__) && defined(__FMA__)
  isa = "avx2+fma";
  widest = run_avx2;
#endif
  print_cpu_model();
  printf("vector_isa %s\n", isa);
  printf("peak_gflops %.1f\n", best_of(widest, reps, runs));
  printf("peak_runs_gflops");
  for (int r = 0; r < reps; r++) printf(" %.1f", runs[r]);
  putchar('\n');
#if defined(__AVX512F__) && defined(__FMA__)
  printf("peak_avx2_gflops %.1f\n", best_of(run_avx2, reps, NULL));
#endif
  return 0;
}
