/*
 * test_l2_sample.c — samples/l2_explicit.dl trains as weight_decay.
 *
 * The sample writes L2 regularisation in its loss, (wd / 2) * the sum of
 * every parameter squared with wd = 5e-4.  Its twin is the same text with
 * the penalty taken out of the loss and weight_decay=5e-4 given to SGD
 * instead; both train for 20 steps of dlc train on Fashion-MNIST (same
 * seed, same batches), and every parameter of the two checkpoints must
 * agree within 1e-5 of the largest parameter magnitude.  The two compute
 * the same update, g + wd * p, but the penalty's gradient comes out of
 * autodiff (2 * 2.5e-4 * p, added to the cross-entropy's) where
 * weight_decay adds wd * p in the optimizer's kernel: the float sums may
 * be associated differently and differ in the last bit of a step, which
 * 20 steps with momentum grow to tens of float32 ulps at most; 1e-5
 * relative is about 80 ulps of the largest weight.  (Measured on this
 * machine with the JIT: bit-identical.)  A third run with neither must
 * differ by far more than that, so the comparison can fail.
 */
#include <criterion/criterion.h>
#include <sys/wait.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

#define SAMPLE (DLC_SOURCE_DIR "/samples/l2_explicit.dl")
#define FMNIST "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

/* Writes dir/name.dl: the sample with its penalty line and optimizer
 * line replaced (NULL keeps a line). */
static void write_variant(const char *dir, const char *name, const char *loss, const char *optimizer) {
  char *src = tu_read_file(SAMPLE, NULL), path[700];
  cr_assert_not_null(src);
  snprintf(path, sizeof path, "%s/%s.dl", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  int replaced = 0;
  for (char *line = strtok(src, "\n"); line; line = strtok(NULL, "\n")) {
    if (loss && !strncmp(line, "  loss = cross_entropy(logits, y) + ", 36)) line = (char *)loss, replaced++;
    else if (optimizer && !strncmp(line, "  optimizer = sgd(", 18)) line = (char *)optimizer, replaced++;
    fprintf(f, "%s\n", line);
  }
  fclose(f);
  free(src);
  cr_assert_eq(replaced, (loss != NULL) + (optimizer != NULL), "the sample's loss or optimizer line moved");
}

static void train(const char *dir, const char *name, RtTensorSet *out) {
  char cmd[1200], path[700];
  snprintf(cmd, sizeof cmd, "cd %s && %s train %s.dl --steps 20 --save %s.safetensors > %s.log 2>&1", dir, DLC_EXE,
           name, name, name);
  int st = system(cmd);
  snprintf(path, sizeof path, "%s/%s.log", dir, name);
  char *log = tu_read_file(path, NULL);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "dlc train %s:\n%s", name, log);
  free(log);
  snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
  RtError err;
  rt_set_init(out);
  cr_assert_eq(rt_safetensors_read(path, out, &err), RT_OK, "%s", err.msg);
}

/* The largest difference over the parameters of want (not the optimizer
 * state), relative to their largest magnitude. */
static double param_err(const RtTensorSet *got, const RtTensorSet *want) {
  static const char *const params[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "logits.weight",
                                       "logits.bias"};
  double m = 1e-6, d = 0;
  for (int i = 0; i < 6; i++) {
    const RtTensor *a = rt_set_find(got, params[i]), *b = rt_set_find(want, params[i]);
    cr_assert(a && b && rt_tensor_numel(a) == rt_tensor_numel(b), "%s", params[i]);
    for (int64_t k = 0; k < rt_tensor_numel(b); k++) {
      double x = ((const float *)a->data)[k], y = ((const float *)b->data)[k];
      m = fmax(m, fabs(y)), d = fmax(d, fabs(x - y));
    }
  }
  return d / m;
}

Test(l2_sample, explicit_l2_trains_as_weight_decay, .timeout = 300) {
  FILE *probe = fopen(FMNIST, "rb");
  if (!probe) cr_skip_test("Fashion-MNIST is not installed (dataset-fashion-mnist)");
  fclose(probe);
  const char *dir = tu_scratch_dir();
  write_variant(dir, "l2", NULL, NULL);
  write_variant(dir, "wd", "  loss = cross_entropy(logits, y)", "  optimizer = sgd(lr=0.1, momentum=0.9, weight_decay=5e-4)");
  write_variant(dir, "none", "  loss = cross_entropy(logits, y)", NULL);
  RtTensorSet l2, wd, none;
  train(dir, "l2", &l2);
  train(dir, "wd", &wd);
  train(dir, "none", &none);
  double e = param_err(&l2, &wd), control = param_err(&none, &wd);
  cr_expect(e <= 1e-5, "explicit L2 against weight_decay: %g of the largest parameter", e);
  cr_expect(control > 1e-3, "without L2 the parameters differ by only %g: the comparison could not fail", control);
  rt_set_free(&l2), rt_set_free(&wd), rt_set_free(&none);
}
