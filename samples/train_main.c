/*
 * train_main.c — a trainer with no dlc at run time: the training step that
 * `dlc samples/mlp.dl --train -o mlp_train.c` emits, plus dlc's small
 * runtime for the data (IDX reading, shuffling, batching, schedules).
 *
 *   dlc samples/mlp.dl --train -o mlp_train.c    # also mlp_train.init.safetensors
 *   cc -O2 -I. -Idlc train_main.c mlp_train.c libdlc_runtime.a -lz -lm -o train
 *   ./train /usr/share/datasets/fashion-mnist mlp_train.init.safetensors 10
 *
 * It follows what `dlc train` does for this model: SGD with momentum 0.9,
 * base lr 0.1 with cosine annealing over the epochs, batches of MLP_MAX_N,
 * a new shuffle every epoch from the seed — so with the same initial
 * weights and seed it reaches the same accuracy.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mlp_train.h"
#include "runtime/rt.h"

#define CLASSES 10

static double accuracy(const RtDataset *d, float *x, int64_t *y, float *logits, float *probs) {
  int64_t idx[MLP_MAX_N], correct = 0;
  float loss;
  for (int64_t start = 0; start < d->n; start += MLP_MAX_N) {
    int64_t n = d->n - start < MLP_MAX_N ? d->n - start : MLP_MAX_N;
    for (int64_t i = 0; i < n; i++) idx[i] = start + i;
    rt_batch_gather(d, idx, n, x, y);
    if (mlp_eval_step(n, x, y, &loss, logits, probs) != 0) return -1;
    correct += rt_topk_correct(logits, y, n, CLASSES, 1);
  }
  return (double)correct / (double)d->n;
}

int main(int argc, char **argv) {
  static float x[MLP_MAX_N * 784], logits[MLP_MAX_N * CLASSES], probs[MLP_MAX_N * CLASSES];
  static int64_t y[MLP_MAX_N];
  if (argc < 3) {
    fprintf(stderr, "usage: %s FASHION_MNIST_DIR INIT.safetensors [EPOCHS] [SEED]\n", argv[0]);
    return 2;
  }
  int epochs = argc > 3 ? atoi(argv[3]) : 10;
  uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 42;
  RtDataset train, test;
  RtError err;
  if (rt_data_fashion_mnist(argv[1], &train, &test, &err) != RT_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  if (mlp_load(argv[2]) != 0) {
    fprintf(stderr, "%s\n", mlp_error());
    return 1;
  }
  RtSchedule sched = {SCHED_COSINE, 0.1, 1, 0.1, (double)epochs, 0, 0, 0, 0};
  int64_t *order = malloc(sizeof(int64_t) * (size_t)train.n);
  float step = 0;
  for (int e = 0; e < epochs; e++) {
    double sum = 0;
    float lr = (float)rt_schedule_lr(&sched, e, 0), loss;
    rt_epoch_order(train.n, seed, e, 1, order);
    for (int64_t start = 0; start < train.n; start += MLP_MAX_N) {
      int64_t n = train.n - start < MLP_MAX_N ? train.n - start : MLP_MAX_N;
      rt_batch_gather(&train, order + start, n, x, y);
      step += 1;
      if (mlp_train_step(n, x, y, &lr, &step, &loss, logits, probs) != 0) return 1;
      sum += loss * (double)n;
    }
    printf("epoch %d: loss %.4f, test accuracy %.2f%%\n", e + 1, sum / (double)train.n,
           100 * accuracy(&test, x, y, logits, probs));
  }
  free(order);
  rt_dataset_free(&train);
  rt_dataset_free(&test);
  return 0;
}
