/*
 * test_check.c — what dlc check reports beyond the graph: the float
 * operations per example of the forward pass and of the training step,
 * and the training step's arena next to the inference one.
 *
 * A model small enough to count by hand: dense 16 -> 8, relu, dense 8 ->
 * 4.  Its forward pass is 2 * (16 * 8 + 8 * 4) = 320 operations per
 * example (each output starts at its bias and adds its products: one
 * multiply and one add per weight).  The training step does that, then
 * the two weight gradients (the same 320), the gradient through the second
 * layer (2 * 4 * 8 = 64; none for the input), and SGD's w - lr * g for
 * 172 parameters once a batch of 32 (10.75 per example), plus the loss,
 * the softmax and the bias gradients, which are a few dozen more: so
 * `dlc check -O0` counts; the default program's register tiles recompute
 * a few rows and count them.  The arena printed is the one the trainer's
 * program has.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver/trainer.h"
#include "tests/testutil.h"

static const char tiny[] =
    "model tiny\n"
    "input x: f32[N, 16]\n"
    "h = dense(x, 8)\n"
    "logits = dense(relu(h), 4)\n"
    "output logits\n"
    "train {\n"
    "  label y: i64[N]\n"
    "  loss = cross_entropy(logits, y)\n"
    "  optimizer = sgd(lr=0.1)\n"
    "  batch = 32\n"
    "  epochs = 1\n"
    "  data = npy(\"x.npy\", \"y.npy\")\n"
    "}\n";

/* The number after prefix on a line of text, or NAN. */
static double number_after(const char *text, const char *prefix) {
  const char *at = strstr(text, prefix);
  return at ? strtod(at + strlen(prefix), NULL) : NAN;
}

/* The bytes of the trainer's arenas for the model at path, built with po
 * (NULL: the defaults). */
static long long trainer_arena(const char *path, const PassOpts *po) {
  Diags d;
  diag_init(&d, stderr);
  Model m;
  cr_assert_eq(fe_load_file(&m, path, &d), 0);
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &d), 0);
  cfg.backend = BACKEND_INTERP;
  cfg.pass = po;
  Trainer t;
  cr_assert_eq(trainer_init(&t, &m, &cfg, NULL, &d), 0);
  cr_assert_eq(trainer_program(&t), 0);
  long long n = 0;
  for (int k = 0; k < DT_COUNT; k++) n += t.prog.arena_size[k] * (long long)rt_dtype_size((DType)k);
  trainer_free(&t);
  fe_model_free(&m);
  return n;
}

/* dlc check's output for the model at path with flags, as text (free it). */
static char *check_text(const char *path, const char *flags, const char *out) {
  char cmd[2000];
  snprintf(cmd, sizeof cmd, "%s check %s %s >%s 2>&1", DLC_EXE, path, flags, out);
  cr_assert_eq(system(cmd), 0, "dlc check %s", flags);
  char *text = tu_read_file(out, NULL);
  cr_assert_not_null(text);
  return text;
}

Test(check, flops_and_training_arena, .timeout = 60) {
  const char *dir = tu_scratch_dir();
  char path[600], out[600];
  snprintf(path, sizeof path, "%s/tiny.dl", dir);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  FILE *f = fopen(path, "w");
  fputs(tiny, f);
  fclose(f);
  /* -O0: the model's own operations, counted by hand above */
  char *plain = check_text(path, "-O0", out);
  cr_expect(strstr(plain, "forward: 320 FLOP per example\n"), "%s", plain);
  double step0 = number_after(plain, "training step: ");
  cr_expect(step0 >= 320 + 320 + 64 + 10.75 && step0 < 320 + 320 + 64 + 10.75 + 100, "training step %g FLOP:\n%s", step0,
            plain);
  free(plain);
  char *text = check_text(path, "", out);
  cr_expect(strstr(text, "inference arena: "), "%s", text);
  /* counted as the kernels run: in register tiles of 6 rows, the last of
   * which recomputes 4 of the 32 rows' outputs (36 rows of work); the
   * training step's tiles add such rows too, never fewer operations */
  cr_expect(strstr(text, "forward: 360 FLOP per example\n"), "%s", text);
  double step = number_after(text, "training step: ");
  cr_expect(step >= step0 && step < step0 * 1.15, "training step %g FLOP in tiles, %g without:\n%s", step, step0, text);
  char want[128];
  snprintf(want, sizeof want, "training arena: %lld bytes at batch 32\n", trainer_arena(path, NULL));
  cr_expect(strstr(text, want), "want '%s' in:\n%s", want, text);
  free(text);
  unlink(out);
  unlink(path);
  rmdir(dir);
}

/* A model without a training section has no training lines. */
Test(check, no_training_section_no_training_lines, .timeout = 60) {
  const char *dir = tu_scratch_dir();
  char path[600], out[600], cmd[2000];
  snprintf(path, sizeof path, "%s/fwd.dl", dir);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  FILE *f = fopen(path, "w");
  fputs("model fwd\ninput x: f32[N, 16]\ny = dense(x, 8)\noutput y\n", f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s check %s >%s 2>&1", DLC_EXE, path, out);
  cr_assert_eq(system(cmd), 0);
  char *text = tu_read_file(out, NULL);
  cr_assert_not_null(text);
  cr_expect(strstr(text, "forward: 264 FLOP per example\n"), "%s", text); /* 256 a row, 66 rows of work for 64 */
  cr_expect(!strstr(text, "training"), "%s", text);
  free(text);
  unlink(out);
  unlink(path);
  rmdir(dir);
}

/* --no-fuse, --no-tile and -O0 make check count the program those flags
 * build: its training arena is the trainer's with the same options, and
 * the flags change it for LeNet-5 (fusion keeps some temporaries alive
 * across a group). */
Test(check, optimisation_flags_count_their_own_program, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  const char *flags[] = {"", "--no-fuse", "--no-tile", "-O0"};
  const PassOpts opts[] = {{.no_fuse = 0}, {.no_fuse = 1}, {.no_tiles = 1}, {.no_fuse = 1, .no_tiles = 1}};
  char path[600], out[600], cmd[2000];
  snprintf(path, sizeof path, "%s/samples/lenet5.dl", DLC_SOURCE_DIR);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  long long seen[4];
  for (int i = 0; i < 4; i++) {
    snprintf(cmd, sizeof cmd, "%s check %s %s >%s 2>&1", DLC_EXE, path, flags[i], out);
    cr_assert_eq(system(cmd), 0, "dlc check %s", flags[i]);
    char *text = tu_read_file(out, NULL), want[128];
    cr_assert_not_null(text);
    seen[i] = trainer_arena(path, &opts[i]);
    snprintf(want, sizeof want, "training arena: %lld bytes at batch 64\n", seen[i]);
    cr_expect(strstr(text, want), "dlc check %s: want '%s' in:\n%s", flags[i], want, text);
    free(text);
  }
  cr_expect(seen[0] != seen[1] && seen[0] != seen[3], "the flags changed nothing: %lld bytes", seen[0]);
  snprintf(cmd, sizeof cmd, "%s check %s --no-such-flag >%s 2>&1", DLC_EXE, path, out);
  cr_expect_eq(WEXITSTATUS(system(cmd)), 2);
  unlink(out);
  rmdir(dir);
}
