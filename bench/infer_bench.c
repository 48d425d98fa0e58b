/*
 * infer_bench.c — times the inference code dlc emits for samples/mlp.dl.
 * Built for batch 1 (--max N=1: the dot-product form of the dense
 * layers) it prints the batch-1 latency; built for a larger maximum it
 * prints the batch-64 throughput and the forward pass's GFLOP/s
 * (2 * multiply-adds of the three dense layers).
 *
 *   dlc samples/mlp.dl --max N=1 -o mlp.c && cc -O3 -march=native infer_bench.c mlp.c -lm
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <stdio.h>
#include <time.h>

#include "mlp.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
  static float x[MLP_MAX_N * 784], logits[MLP_MAX_N * 10], probs[MLP_MAX_N * 10];
  for (int i = 0; i < MLP_MAX_N * 784; i++) x[i] = (float)((i * 7919) % 255) / 255.0f;
  int n = MLP_MAX_N < 64 ? MLP_MAX_N : 64, reps = n == 1 ? 5000 : 1000;
  for (int i = 0; i < 200; i++) mlp_forward(n, x, logits, probs);
  double t0 = now();
  for (int i = 0; i < reps; i++) mlp_forward(n, x, logits, probs);
  double t = (now() - t0) / reps;
  if (n == 1) {
    printf("latency_b1_us %.2f\n", t * 1e6);
  } else {
    printf("throughput_b64_per_s %.1f\n", n / t);
    printf("gflops_b64 %.2f\n", 2.0 * n * (784 * 256 + 256 * 128 + 128 * 10) / t / 1e9);
  }
  return 0;
}
