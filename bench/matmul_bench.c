/*
 * matmul_bench.c — GFLOP/s of a 512 x 512 x 512 product through the
 * kernels dlc emits, against this core's FP32 peak measured here.
 *
 *   printf 'model mm\ninput x: f32[N, 512]\noutput y = dense(x, 512, bias=false)\n' > mm.dl
 *   dlc mm.dl --max N=512 -o mm.c
 *   cc -O3 -march=native -I. bench/matmul_bench.c mm.c -lm -o mm_bench && ./mm_bench
 *
 * The peak is the rate of 16 independent chains of vector FMAs (AVX-512,
 * else AVX2 with FMA, else none is printed) on one thread; both are
 * thread CPU time, the best of several runs, so other work on the machine
 * costs little.  The dense layer reads y.weight transposed (derived once
 * before the first call), so each call is the product alone.
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

/* GFLOP/s of 16 independent FMA chains, or 0 without vector FMA. */
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
  V acc[16], m = SET1(0.999999f), a = SET1(1e-7f);
  for (int i = 0; i < 16; i++) acc[i] = SET1((float)i);
  long iters = 20000000;
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    double t0 = now();
    for (long i = 0; i < iters / 5; i++)
      for (int j = 0; j < 16; j++) acc[j] = FMA(acc[j], m, a);
    double t = now() - t0;
    if (t < best) best = t;
  }
  float sink = 0;
  for (int i = 0; i < 16; i++) sink += ((float *)&acc[i])[0];
  if (sink == 12345.0f) puts("");
  return 2.0 * LANES * 16 * (double)(iters / 5) / best / 1e9;
#else
  return 0;
#endif
}

int main(void) {
  static float x[512 * 512], y[512 * 512];
  for (int i = 0; i < 512 * 512; i++) x[i] = (float)((i * 7919) % 255) / 255.0f;
  double best = 1e30;
  mm_forward(512, x, y); /* derives the transposed weight */
  for (int r = 0; r < 10; r++) {
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
