/*
 * infer_time.c — times the inference code dlc emits for one model at one
 * batch size, REPS times, for bench/run.sh.
 *
 *   dlc samples/lenet5.dl --max N=256 -o lenet5.c
 *   cc -std=c99 -O3 -march=native -I. -DMODEL=lenet5 -DMODEL_H='"lenet5.h"' \
 *      bench/infer_time.c lenet5.c -lm -o infer_time
 *   ./infer_time BATCH REPS
 *
 * The model takes one f32 input of IN_SIZE values per example (784
 * unless -DIN_SIZE=...) and returns logits and probs of OUT_SIZE values
 * (10).  Its parameters are set once to small deterministic values (the
 * time does not depend on them, but zeros could take shortcuts no real
 * model takes).  After a warm-up, each repetition calls the forward pass
 * for at least 0.1 s of process CPU time (other work on the machine costs
 * little of it) and prints the mean time per call; one line:
 *
 *   us_per_call 412.5 409.8 ...      (REPS values, microseconds)
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include MODEL_H

#ifndef IN_SIZE
#define IN_SIZE 784
#endif
#ifndef OUT_SIZE
#define OUT_SIZE 10
#endif
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define FN(suffix) CAT(MODEL, suffix)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Every parameter filled with values of size about 1/sqrt(fan-in). */
static void set_params(void) {
  for (int i = 0; FN(_param)(i); i++) {
    const FN(_param_info) *p = FN(_param)(i);
    if (p->is_state) continue;
    float *v = malloc((size_t)p->numel * sizeof *v);
    if (!v) exit(1);
    double scale = p->rank > 1 ? 1.0 / sqrt((double)p->numel / (double)p->shape[0]) : 0.01;
    for (int64_t k = 0; k < p->numel; k++) v[k] = (float)(scale * sin(0.37 * (double)k + i));
    FN(_set_param)(i, v);
    free(v);
  }
}

int main(int argc, char **argv) {
  int n = argc > 2 ? atoi(argv[1]) : 0, reps = argc > 2 ? atoi(argv[2]) : 0;
  if (n < 1 || reps < 1 || reps > 1000) {
    fprintf(stderr, "usage: infer_time BATCH REPS\n");
    return 2;
  }
  float *x = malloc((size_t)n * IN_SIZE * sizeof *x);
  float *logits = malloc((size_t)n * OUT_SIZE * sizeof *logits);
  float *probs = malloc((size_t)n * OUT_SIZE * sizeof *probs);
  if (!x || !logits || !probs) return 1;
  for (long i = 0; i < (long)n * IN_SIZE; i++) x[i] = (float)((i * 7919) % 255) / 255.0f;
  set_params();
  if (FN(_forward)(n, x, logits, probs) != 0) {
    fprintf(stderr, "infer_time: batch %d is above the compiled maximum\n", n);
    return 1;
  }
  double t0 = now();
  long calls = 0;
  while (now() - t0 < 0.05) FN(_forward)(n, x, logits, probs), calls++; /* warm-up */
  printf("us_per_call");
  for (int r = 0; r < reps; r++) {
    t0 = now();
    double t;
    calls = 0;
    do {
      FN(_forward)(n, x, logits, probs);
      calls++;
    } while ((t = now() - t0) < 0.1);
    printf(" %.3f", 1e6 * t / (double)calls);
  }
  putchar('\n');
  if (!(probs[0] >= 0)) fputs("infer_time: the probabilities are not numbers\n", stderr);
  free(x);
  free(logits);
  free(probs);
  return 0;
}
