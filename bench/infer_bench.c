/*
 * infer_bench.c — times the inference code dlc emits for samples/mlp.dl.
 * Built for batch 1 (--max N=1: the dot-product form of the dense
 * layers) it prints the batch-1 latency (thread CPU time, the fastest of
 * 20 runs); built for a larger maximum it
 * prints the batch-64 throughput and the forward pass's GFLOP/s
 * (2 * multiply-adds of the three dense layers).
 *
 *   dlc samples/mlp.dl --max N=1 -o mlp.c && cc -O3 -march=native infer_bench.c mlp.c -lm
 *
 * Another model with one 784-value input per sample and outputs logits
 * and probs (samples/lenet5.dl) is timed the same way when built with
 * -DMODEL_H='"lenet5.h"' -DFORWARD=lenet5_forward -DMAXN=LENET5_MAX_N
 * (bench/compare.sh does); GFLOP/s is then not printed.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <stdio.h>
#include <time.h>

#ifdef MODEL_H
#include MODEL_H
#else
#include "mlp.h"
#define FORWARD mlp_forward
#define MAXN MLP_MAX_N
#define MLP_FLOPS (2.0 * (784 * 256 + 256 * 128 + 128 * 10))
#endif

/* The thread's CPU time: time the machine's other work takes from this
 * thread is not counted (wall-clock time on a shared machine is). */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
  static float x[MAXN * 784], logits[MAXN * 10], probs[MAXN * 10];
  for (int i = 0; i < MAXN * 784; i++) x[i] = (float)((i * 7919) % 255) / 255.0f;
  int n = MAXN < 64 ? MAXN : 64, reps = n == 1 ? 250 : 50;
  for (int i = 0; i < 200; i++) FORWARD(n, x, logits, probs);
  double t = 1e30; /* the fastest of 20 runs of reps calls: the least disturbed */
  for (int r = 0; r < 20; r++) {
    double t0 = now();
    for (int i = 0; i < reps; i++) FORWARD(n, x, logits, probs);
    double ti = (now() - t0) / reps;
    if (ti < t) t = ti;
  }
  if (n == 1) {
    printf("latency_b1_us %.2f\n", t * 1e6);
  } else {
    printf("throughput_b64_per_s %.1f\n", n / t);
#ifdef MLP_FLOPS
    printf("gflops_b64 %.2f\n", n * MLP_FLOPS / t / 1e9);
#endif
  }
  return 0;
}
