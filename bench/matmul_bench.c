/*
 * matmul_bench.c — GFLOP/s of a 512 x 512 x 512 product through the
 * kernels dlc emits, against this core's FP32 peak measured here.
 *
 *   printf 'model mm\ninput x: f32[N, 512]\noutput y = dense(x, 512, bias=false)\n' > mm.dl
 *   dlc mm.dl --max N=512 -o mm.c
 *   cc -O2 -march=native -I. bench/matmul_bench.c mm.c -lm -o mm_bench && ./mm_bench
 *
 * and the same through LLVM (the JIT's code generator) with
 *
 *   mkdir -p obj && dlc mm.dl --max N=512 --emit=obj -o obj/mm.o
 *   cc -O2 -march=native -Iobj bench/matmul_bench.c obj/mm.o -lm -o mm_llvm && ./mm_llvm
 *
 * The peak is the rate of 12 independent chains of vector FMAs (AVX-512,
 * else AVX2 with FMA, else none is printed) on one thread; both are
 * thread CPU time, the best of several runs, so other work on the machine
 * costs little (but not nothing: on a shared machine run it several
 * times and keep the best).  The dense layer's weight is packed into
 * panels once, before the first call (an inference program's weights
 * never change: a derived layout), and each call runs the register tiles
 * on them (docs/pipeline.md, "The schedule").
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <stdio.h>
#include <time.h>

#include "mm.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GFLOP/s of 12 independent FMA chains, or 0 without vector FMA.  The
 * chains are named locals (an array of them is kept in memory by GCC at
 * -O2, which then measures store forwarding, not the FMA pipes). */
static double peak_gflops(void) {
#if defined(__AVX512F__)
  typedef __m512 V;
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SET1 _mm512_set1_ps
#define LANES 16
#elif defined(__AVX2__) && defined(__FMA__)
  typedef __m256 V;
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SET1 _mm256_set1_ps
#define LANES 8
#endif
#ifdef LANES
  V m = SET1(0.999999f), a = SET1(1e-7f);
  V c0 = SET1(0), c1 = SET1(1), c2 = SET1(2), c3 = SET1(3), c4 = SET1(4), c5 = SET1(5);
  V c6 = SET1(6), c7 = SET1(7), c8 = SET1(8), c9 = SET1(9), c10 = SET1(10), c11 = SET1(11);
  long iters = 2000000;
  double best = 1e30;
  for (int r = 0; r < 20; r++) {
    double t0 = now();
    for (long i = 0; i < iters; i++) {
      c0 = FMA(c0, m, a), c1 = FMA(c1, m, a), c2 = FMA(c2, m, a), c3 = FMA(c3, m, a);
      c4 = FMA(c4, m, a), c5 = FMA(c5, m, a), c6 = FMA(c6, m, a), c7 = FMA(c7, m, a);
      c8 = FMA(c8, m, a), c9 = FMA(c9, m, a), c10 = FMA(c10, m, a), c11 = FMA(c11, m, a);
      __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
      __asm__ volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
    }
    double t = now() - t0;
    if (t < best) best = t;
  }
  V s = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11;
  if (((float *)&s)[0] == 12345.0f) puts("");
  return 2.0 * LANES * 12 * (double)iters / best / 1e9;
#else
  return 0;
#endif
}

int main(void) {
  static float x[512 * 512], y[512 * 512];
  for (int i = 0; i < 512 * 512; i++) x[i] = (float)((i * 7919) % 255) / 255.0f;
  double best = 1e30;
  mm_forward(512, x, y); /* derives the transposed weight */
  for (int r = 0; r < 40; r++) { /* the best of many: the machine may be shared */
    double t0 = now();
    mm_forward(512, x, y);
    double t = now() - t0;
    if (t < best) best = t;
  }
  double gf = 2.0 * 512 * 512 * 512 / best / 1e9, peak = peak_gflops();
  printf("matmul_512_gflops %.1f\n", gf);
  if (peak > 0) printf("peak_fma_gflops %.1f (%.1f%% of it)\n", peak, 100 * gf / peak);
  return 0;
}
