/*
 * classify.c — uses the C that dlc emits for samples/mlp.dl: reads the
 * Fashion-MNIST test set (uncompressed IDX files), runs mlp_forward in
 * batches of MLP_MAX_N and prints the accuracy.  It needs nothing but a
 * C99 compiler and libm:
 *
 *   dlc samples/mlp.dl --embed-params mlp.safetensors -o mlp.c
 *   cc -std=c99 -O2 classify.c mlp.c -lm -o classify
 *   ./classify t10k-images-idx3-ubyte t10k-labels-idx1-ubyte
 *
 * Without --embed-params, pass the weights as a third argument and the
 * program loads them with mlp_load.
 */
#include <stdio.h>
#include <stdlib.h>

#include "mlp.h"

static long read_be32(FILE *f) {
  unsigned char b[4];
  if (fread(b, 1, 4, f) != 4) return -1;
  return (long)b[0] << 24 | (long)b[1] << 16 | (long)b[2] << 8 | (long)b[3];
}

/* Reads an IDX file of unsigned bytes; returns the data and sets *count
 * (items) and *size (bytes per item). */
static unsigned char *read_idx(const char *path, long *count, long *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  long magic = read_be32(f), rank = magic & 0xff;
  *count = read_be32(f);
  *size = 1;
  for (long i = 1; i < rank; i++) *size *= read_be32(f);
  unsigned char *data = NULL;
  if ((magic >> 8) == 0x08 && *count > 0 && *size > 0) {
    data = malloc((size_t)(*count * *size));
    if (data && fread(data, 1, (size_t)(*count * *size), f) != (size_t)(*count * *size)) {
      free(data);
      data = NULL;
    }
  }
  fclose(f);
  return data;
}

int main(int argc, char **argv) {
  static float x[MLP_MAX_N * 784], logits[MLP_MAX_N * 10], probs[MLP_MAX_N * 10];
  long n, size, nl, one;
  if (argc < 3) {
    fprintf(stderr, "usage: %s IMAGES LABELS [WEIGHTS.safetensors]\n", argv[0]);
    return 2;
  }
  if (argc > 3 && mlp_load(argv[3]) != 0) {
    fprintf(stderr, "%s\n", mlp_error());
    return 1;
  }
  unsigned char *images = read_idx(argv[1], &n, &size), *labels = read_idx(argv[2], &nl, &one);
  if (!images || !labels || size != 784 || nl != n) {
    fprintf(stderr, "cannot read the test set\n");
    return 1;
  }
  long correct = 0;
  for (long start = 0; start < n; start += MLP_MAX_N) {
    long b = n - start < MLP_MAX_N ? n - start : MLP_MAX_N;
    for (long i = 0; i < b * 784; i++) x[i] = images[start * 784 + i] / 255.0f;
    if (mlp_forward(b, x, logits, probs) != 0) return 1;
    for (long i = 0; i < b; i++) {
      int best = 0;
      for (int c = 1; c < 10; c++)
        if (logits[i * 10 + c] > logits[i * 10 + best]) best = c;
      correct += best == labels[start + i];
    }
  }
  printf("accuracy of the emitted C on %ld test images: %.2f%%\n", n, 100.0 * (double)correct / (double)n);
  free(images);
  free(labels);
  return 0;
}
