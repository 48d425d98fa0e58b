/*
 * infer_bench.c — times the inference code dlc emits for samples/mlp.dl:
 * batch-1 latency, batch-64 throughput, and the GFLOP/s of the whole
 * forward pass (2 * multiply-adds of the three dense layers).
 *
 *   dlc samples/mlp.dl --max N=64 -o mlp.c && cc -O3 -march=native infer_bench.c mlp.c -lm
 */
#include <stdio.h>
#include <time.h>

#include "mlp.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
  static float x[64 * 784], logits[64 * 10], probs[64 * 10];
  for (int i = 0; i < 64 * 784; i++) x[i] = (float)((i * 7919) % 255) / 255.0f;
  for (int i = 0; i < 200; i++) mlp_forward(1, x, logits, probs);
  int reps = 5000;
  double t0 = now();
  for (int i = 0; i < reps; i++) mlp_forward(1, x, logits, probs);
  double lat1 = (now() - t0) / reps;
  reps = 1000;
  t0 = now();
  for (int i = 0; i < reps; i++) mlp_forward(64, x, logits, probs);
  double lat64 = (now() - t0) / reps;
  double flops = 2.0 * 64 * (784 * 256 + 256 * 128 + 128 * 10);
  printf("latency_b1_us %.2f\n", lat1 * 1e6);
  printf("throughput_b64_per_s %.1f\n", 64 / lat64);
  printf("gflops_b64 %.2f\n", flops / lat64 / 1e9);
  return 0;
}
