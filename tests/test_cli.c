/*
 * test_cli.c — the dlc command on good and bad input.
 *
 * Each case runs the real executable and checks the exit status (0 for
 * success, 1 for bad input, 2 for bad usage; never a signal) and that the
 * message names what was wrong: the flag, the file, the input, the shape
 * it expected.  Also: compile writes the .c and .h it promises and they
 * build warning-free; --emit=ir/dot print the graph; `check` prints the
 * table; a failed write leaves an existing output file untouched.
 */
#include <criterion/criterion.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

#define MLP (DLC_SOURCE_DIR "/samples/mlp.dl")

typedef struct Run {
  int status;    /* exit status, or -signal */
  char *out;
} Run;

static Run run(const char *dir, const char *args) {
  char cmd[4096], log[600];
  snprintf(log, sizeof log, "%s/log.txt", dir);
  snprintf(cmd, sizeof cmd, "cd %s && %s %s > %s 2>&1", dir, DLC_EXE, args, log);
  int st = system(cmd);
  Run r = {WIFEXITED(st) ? WEXITSTATUS(st) : -1, tu_read_file(log, NULL)};
  cr_assert_not_null(r.out);
  cr_assert(r.status < 128, "dlc %s died (status %d):\n%s", args, r.status, r.out);
  return r;
}

static void expect(const char *dir, const char *args, int status, const char *needle) {
  Run r = run(dir, args);
  cr_expect_eq(r.status, status, "dlc %s: exit %d, wanted %d:\n%s", args, r.status, status, r.out);
  cr_expect(strstr(r.out, needle) != NULL, "dlc %s: no '%s' in:\n%s", args, needle, r.out);
  free(r.out);
}

static void write_npy(const char *dir, const char *name, DType dt, int rank, const int64_t *shape) {
  RtTensor t;
  RtError err;
  char path[600];
  cr_assert_eq(rt_tensor_alloc(&t, dt, rank, shape, &err), RT_OK);
  for (int64_t i = 0; i < rt_tensor_numel(&t) && dt == DT_F32; i++) ((float *)t.data)[i] = (float)(i % 7) / 7;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK);
  rt_tensor_free(&t);
}

Test(cli, compile_writes_c_and_header_that_build) {
  const char *dir = tu_scratch_dir();
  char args[1024], cmd[1200];
  snprintf(args, sizeof args, "%s -o net.c", MLP);
  Run r = run(dir, args);
  cr_expect_eq(r.status, 0, "%s", r.out);
  free(r.out);
  snprintf(cmd, sizeof cmd, "cd %s && cc -std=c99 -Wall -Wextra -pedantic -Werror -c net.c && grep -q mlp_forward net.h", dir);
  cr_expect_eq(system(cmd), 0);
}

Test(cli, emit_ir_dot_and_check) {
  const char *dir = tu_scratch_dir();
  char args[1024];
  snprintf(args, sizeof args, "%s --emit=ir", MLP);
  expect(dir, args, 0, "= linear %0");
  snprintf(args, sizeof args, "%s --emit=dot", MLP);
  expect(dir, args, 0, "digraph");
  snprintf(args, sizeof args, "check %s", MLP);
  expect(dir, args, 0, "total parameters: 235146");
  snprintf(args, sizeof args, "%s --dump-after=all --verify -o x.c", MLP);
  expect(dir, args, 0, "; after dce");
}

/* Every step of the inference pipeline by name, graphs and kernels, each
 * checked (--verify); the training pipeline's steps through --train. */
Test(cli, dump_after_all_names_every_step) {
  const char *dir = tu_scratch_dir();
  char args[1024];
  snprintf(args, sizeof args, "%s/samples/lenet5.dl --dump-after=all --verify -o l.c", DLC_SOURCE_DIR);
  Run r = run(dir, args);
  cr_expect_eq(r.status, 0, "%s", r.out);
  const char *want[] = {"; decompose skipped (train mode only)\n", "; after dce (forward)\ngraph lenet5",
                        "; after lower\nprogram lenet5", "; after memplan\nprogram lenet5"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) cr_expect(strstr(r.out, want[i]), "no '%s' in the dump", want[i]);
  cr_expect(strstr(r.out, "error") == NULL, "%s", r.out);
  free(r.out);
  snprintf(args, sizeof args, "%s --train --dump-after=all --verify -o t.c", MLP);
  r = run(dir, args);
  cr_expect_eq(r.status, 0, "%s", r.out);
  const char *train[] = {"; after decompose (train_step)", "; after autodiff (train_step)", "; after optimizer (train_step)",
                         "; after eval_graph (eval_step)", "; after lower\nprogram mlp", "; after memplan\nprogram mlp"};
  for (size_t i = 0; i < sizeof train / sizeof *train; i++) cr_expect(strstr(r.out, train[i]), "no '%s' in the dump", train[i]);
  free(r.out);
  snprintf(args, sizeof args, "%s --dump-after=memplan -o m.c", MLP);
  expect(dir, args, 0, "arena f32: ");
}

/* DLC_TIME_PHASES: a line of CPU time per phase on stderr, every phase
 * of --emit=obj named; without it, none. */
Test(cli, time_phases_names_every_phase, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char cmd[2048], log[600];
  snprintf(log, sizeof log, "%s/phases.txt", dir);
  snprintf(cmd, sizeof cmd, "cd %s && DLC_TIME_PHASES=1 %s %s --emit=obj -o m.o 2> %s", dir, DLC_EXE, MLP, log);
  cr_assert_eq(system(cmd), 0);
  char *out = tu_read_file(log, NULL);
  cr_assert_not_null(out);
  const char *want[] = {"time: frontend ", "time: dce ", "time: lower ", "time: schedule ", "time: memplan ",
                        "time: llvm-build ", "time: llvm-optimise ", "time: llvm-codegen "};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) cr_expect(strstr(out, want[i]), "no '%s' in:\n%s", want[i], out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s --emit=obj -o m.o", MLP);
  Run r = run(dir, cmd);
  cr_expect_eq(r.status, 0, "%s", r.out);
  cr_expect(strstr(r.out, "time:") == NULL, "phase times without DLC_TIME_PHASES:\n%s", r.out);
  free(r.out);
}

Test(cli, list_steps_and_unknown_step_names) {
  const char *dir = tu_scratch_dir();
  char args[1024];
  expect(dir, "--list-steps", 0, "grads: ");
  expect(dir, "--list-steps", 0, "  graph    fold_bn ");
  expect(dir, "--list-steps", 0, "  kernel   memplan ");
  snprintf(args, sizeof args, "%s --dump-after=lowr", MLP);
  expect(dir, args, 2, "--dump-after: error: no step named 'lowr' (dlc --list-steps lists them)");
}

Test(cli, usage_errors_exit_2) {
  const char *dir = tu_scratch_dir();
  char args[1024];
  expect(dir, "", 2, "usage:");
  snprintf(args, sizeof args, "%s --emit=wasm", MLP);
  expect(dir, args, 2, "--emit");
  snprintf(args, sizeof args, "%s --train --emit=llvm -o m.ll", MLP); /* once wrote C into m.ll */
  expect(dir, args, 2, "--emit=llvm does not go with it");
  snprintf(args, sizeof args, "%s --frobnicate", MLP);
  expect(dir, args, 2, "--frobnicate");
  snprintf(args, sizeof args, "%s -o", MLP);
  expect(dir, args, 2, "needs a value");
  snprintf(args, sizeof args, "run %s --backend=gpu", MLP);
  expect(dir, args, 2, "--backend");
  snprintf(args, sizeof args, "run %s --input x", MLP);
  expect(dir, args, 2, "NAME=FILE");
  snprintf(args, sizeof args, "%s --max M=3", MLP);
  expect(dir, args, 1, "no symbolic dimension 'M'");
  snprintf(args, sizeof args, "%s --max N=0", MLP);
  expect(dir, args, 1, "--max");
  expect(dir, "run --help", 0, "usage: dlc run");
  expect(dir, "check --help", 0, "usage: dlc check");
}

Test(cli, bad_files_exit_1_with_the_file_named) {
  const char *dir = tu_scratch_dir();
  char args[1024], path[600];
  expect(dir, "missing.dl", 1, "missing.dl");
  int64_t good[2] = {2, 784}, wrong[2] = {2, 783};
  write_npy(dir, "x.npy", DT_F32, 2, good);
  write_npy(dir, "x783.npy", DT_F32, 2, wrong);
  write_npy(dir, "xi.npy", DT_I64, 2, good);
  snprintf(args, sizeof args, "run %s --input x=x783.npy", MLP);
  expect(dir, args, 1, "784");
  snprintf(args, sizeof args, "run %s --input x=xi.npy", MLP);
  expect(dir, args, 1, "f32");
  snprintf(args, sizeof args, "run %s --input x=nope.npy", MLP);
  expect(dir, args, 1, "nope.npy");
  snprintf(args, sizeof args, "run %s --input z=x.npy", MLP);
  expect(dir, args, 1, "no input 'z'");
  snprintf(args, sizeof args, "run %s", MLP);
  expect(dir, args, 1, "no value for input 'x'");
  snprintf(args, sizeof args, "run %s --input x=x.npy --output nothing=o.npy", MLP);
  expect(dir, args, 1, "no output 'nothing'");
  /* a truncated .npy and a text file posing as one */
  snprintf(path, sizeof path, "%s/x.npy", dir);
  size_t len = 0;
  char *bytes = tu_read_file(path, &len);
  cr_assert_not_null(bytes);
  snprintf(path, sizeof path, "%s/cut.npy", dir);
  FILE *f = fopen(path, "wb");
  fwrite(bytes, 1, len / 2, f);
  fclose(f);
  free(bytes);
  snprintf(args, sizeof args, "run %s --input x=cut.npy", MLP);
  expect(dir, args, 1, "cut.npy");
  snprintf(path, sizeof path, "%s/text.npy", dir);
  f = fopen(path, "w");
  fputs("not numpy\n", f);
  fclose(f);
  snprintf(args, sizeof args, "run %s --input x=text.npy", MLP);
  expect(dir, args, 1, "text.npy");
  /* weights of the wrong shape, and a weights file that is not one */
  snprintf(args, sizeof args, "run %s --input x=x.npy --params text.npy", MLP);
  expect(dir, args, 1, "text.npy");
  snprintf(args, sizeof args, "%s --embed-params text.npy", MLP);
  expect(dir, args, 1, "text.npy");
}

Test(cli, run_on_both_backends_writes_outputs) {
  const char *dir = tu_scratch_dir();
  char args[1024], path[600];
  int64_t shape[2] = {3, 784};
  write_npy(dir, "x.npy", DT_F32, 2, shape);
  snprintf(args, sizeof args, "run %s --input x=x.npy --output logits=a.npy", MLP);
  expect(dir, args, 0, "");
  snprintf(args, sizeof args, "run %s --backend=c --input x=x.npy --output logits=b.npy", MLP);
  expect(dir, args, 0, "");
  RtTensor a, b;
  RtError err;
  snprintf(path, sizeof path, "%s/a.npy", dir);
  cr_assert_eq(rt_npy_read(path, &a, &err), RT_OK, "%s", err.msg);
  snprintf(path, sizeof path, "%s/b.npy", dir);
  cr_assert_eq(rt_npy_read(path, &b, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_tensor_numel(&a), 30);
  for (int i = 0; i < 30; i++)
    cr_expect_leq(tu_relerr(((float *)b.data)[i], ((float *)a.data)[i], 1e-6), 1e-5);
  rt_tensor_free(&a);
  rt_tensor_free(&b);
  snprintf(args, sizeof args, "run %s --input x=x.npy", MLP);
  expect(dir, args, 0, "logits: f32[3, 10]");
}

Test(cli, a_failed_write_keeps_the_old_file) {
  const char *dir = tu_scratch_dir();
  char args[1024], path[600];
  snprintf(path, sizeof path, "%s/keep.c", dir);
  FILE *f = fopen(path, "w");
  fputs("old contents\n", f);
  fclose(f);
  /* a model with an error must not touch the output */
  snprintf(path, sizeof path, "%s/bad.dl", dir);
  f = fopen(path, "w");
  fputs("input x: f32[N, 4]\ny = relu(z)\noutput y\n", f);
  fclose(f);
  snprintf(args, sizeof args, "bad.dl -o keep.c");
  expect(dir, args, 1, "bad.dl:2:");
  snprintf(path, sizeof path, "%s/keep.c", dir);
  char *s = tu_read_file(path, NULL);
  cr_expect_str_eq(s, "old contents\n");
  free(s);
  /* an output directory that does not exist */
  snprintf(args, sizeof args, "%s -o no/such/dir/out.c", MLP);
  expect(dir, args, 1, "no/such/dir/out");
}

/* Every tensor of the fixture set want is in dir/file, element by element
 * within tol of the largest magnitude of its tensor (batch-norm gradients
 * come out of cancellation), plus 1e-6 absolute: the bias of a layer
 * that batch norm follows has a gradient of exactly 0 in train mode, which
 * float32 reaches only up to the rounding of its terms. */
static void expect_set_matches(const char *dir, const char *file, const char *want_path, double tol) {
  RtTensorSet g, want;
  RtError err;
  char path[600];
  rt_set_init(&g);
  rt_set_init(&want);
  snprintf(path, sizeof path, "%s/%s", dir, file);
  cr_assert_eq(rt_safetensors_read(path, &g, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_safetensors_read(want_path, &want, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(g.count, want.count, "%s: %d tensors, wanted %d", file, g.count, want.count);
  for (int i = 0; i < want.count; i++) {
    RtTensor *a = rt_set_find(&g, want.items[i].name), *b = &want.items[i].t;
    cr_assert_not_null(a, "%s: no gradient for %s", file, want.items[i].name);
    cr_assert_eq(rt_tensor_numel(a), rt_tensor_numel(b));
    int64_t n = rt_tensor_numel(b);
    const float *got = a->data, *ref = b->data;
    double top = 0;
    for (int64_t k = 0; k < n; k++) top = fabs(ref[k]) > top ? fabs(ref[k]) : top;
    for (int64_t k = 0; k < n; k++)
      cr_expect_leq(fabs(got[k] - ref[k]), tol * top + 1e-6, "%s: %s[%lld] = %g, PyTorch %g", file,
                    want.items[i].name, (long long)k, (double)got[k], (double)ref[k]);
  }
  rt_set_free(&g);
  rt_set_free(&want);
}

/* Gradients of a model with batch norm in both modes, on every backend,
 * against torch's module.train() and module.eval(); without --mode the
 * gradients are those of the training loss. */
Test(cli, grads_modes_match_pytorch_train_and_eval, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char args[2048], base[1024], want[600];
  snprintf(base, sizeof base,
           "run %s/tests/fixtures/grads_mode/bnnet.dl --input x=%s/tests/fixtures/grads_mode/bnnet.x.npy "
           "--input y=%s/tests/fixtures/grads_mode/bnnet.y.npy --params %s/tests/fixtures/grads_mode/bnnet.init.safetensors "
           "--grads g.safetensors --input-grads ig.safetensors",
           DLC_SOURCE_DIR, DLC_SOURCE_DIR, DLC_SOURCE_DIR, DLC_SOURCE_DIR);
  const char *modes[] = {"", "train", "eval"}, *backends[] = {"interp", "c", "jit"};
  for (int m = 0; m < 3; m++)
    for (int b = 0; b < 3; b++) {
      const char *mode = m ? modes[m] : "train";
      snprintf(args, sizeof args, "%s --backend=%s%s%s", base, backends[b], m ? " --mode " : "", modes[m]);
      expect(dir, args, 0, strcmp(mode, "train") ? "loss: 5.6142" : "loss: 1.9499");
      snprintf(want, sizeof want, "%s/tests/fixtures/grads_mode/bnnet.%s.grads.safetensors", DLC_SOURCE_DIR, mode);
      expect_set_matches(dir, "g.safetensors", want, 1e-4);
      snprintf(want, sizeof want, "%s/tests/fixtures/grads_mode/bnnet.%s.input_grads.safetensors", DLC_SOURCE_DIR, mode);
      expect_set_matches(dir, "ig.safetensors", want, 1e-4);
    }
  for (int m = 1; m < 3; m++) { /* the forward pass in each mode */
    snprintf(args, sizeof args,
             "run %s/tests/fixtures/grads_mode/bnnet.dl --input x=%s/tests/fixtures/grads_mode/bnnet.x.npy "
             "--params %s/tests/fixtures/grads_mode/bnnet.init.safetensors --mode %s --output out=o.npy",
             DLC_SOURCE_DIR, DLC_SOURCE_DIR, DLC_SOURCE_DIR, modes[m]);
    expect(dir, args, 0, "");
    RtTensor got, ref;
    RtError err;
    char path[600];
    snprintf(path, sizeof path, "%s/o.npy", dir);
    cr_assert_eq(rt_npy_read(path, &got, &err), RT_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/tests/fixtures/grads_mode/bnnet.%s.out.npy", DLC_SOURCE_DIR, modes[m]);
    cr_assert_eq(rt_npy_read(path, &ref, &err), RT_OK, "%s", err.msg);
    for (int64_t k = 0; k < rt_tensor_numel(&ref); k++)
      cr_expect_leq(tu_relerr(((float *)got.data)[k], ((float *)ref.data)[k], 1e-3), 1e-4, "--mode %s: out[%lld]",
                    modes[m], (long long)k);
    rt_tensor_free(&got);
    rt_tensor_free(&ref);
  }
  snprintf(args, sizeof args, "%s --seed 99999999999999999999", base);
  expect(dir, args, 2, "--seed: error: expected an integer in [0, 9223372036854775807]");
  snprintf(args, sizeof args, "%s --seed -1", base);
  expect(dir, args, 2, "--seed: error: expected an integer");
  snprintf(args, sizeof args, "%s --mode training", base);
  expect(dir, args, 2, "expected train or eval, got 'training'");
  snprintf(args, sizeof args, "%s --output out=o.npy", base);
  expect(dir, args, 2, "cannot be combined with --grads");
}

/* Train-mode dropout in gradients: y = flatten(dropout(x, p=0.25)), loss =
 * mean((y - t)^2) with t = flatten(x).  Each input gradient is 0 (dropped) or 2 (x / 0.75 - t) / n / 0.75
 * (kept); the masks come from --seed, so a seed repeats its masks and
 * another seed draws others; in eval mode dropout is the identity. */
Test(cli, grads_train_mode_dropout_uses_the_seed) {
  const char *dir = tu_scratch_dir();
  char path[600], args[1024];
  snprintf(path, sizeof path, "%s/drop.dl", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs("model drop\ninput x: f32[N, 2, 32]\ny = flatten(dropout(x, p=0.25))\noutput y\n"
        "train {\n  label t: f32[N, 64]\n  loss = mse_loss(y, t)\n  optimizer = sgd(lr=0.1)\n}\n", f);
  fclose(f);
  write_npy(dir, "x.npy", DT_F32, 3, (int64_t[]){2, 2, 32});
  write_npy(dir, "t.npy", DT_F32, 2, (int64_t[]){2, 64}); /* the same values: t = flatten(x) */
  RtTensor x;
  RtError err;
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_read(path, &x, &err), RT_OK);
  float *grads[3];
  const char *flags[3] = {"--seed 3", "--seed 3", "--seed 4"};
  for (int r = 0; r < 3; r++) {
    snprintf(args, sizeof args, "run drop.dl --input x=x.npy --input t=t.npy --input-grads ig%d.safetensors %s", r, flags[r]);
    expect(dir, args, 0, "loss: ");
    RtTensorSet s;
    rt_set_init(&s);
    snprintf(path, sizeof path, "%s/ig%d.safetensors", dir, r);
    cr_assert_eq(rt_safetensors_read(path, &s, &err), RT_OK, "%s", err.msg);
    RtTensor *g = rt_set_find(&s, "x");
    cr_assert_not_null(g);
    grads[r] = malloc(sizeof(float) * 128);
    memcpy(grads[r], g->data, sizeof(float) * 128);
    rt_set_free(&s);
  }
  int dropped = 0, same = 1, differ = 0;
  for (int i = 0; i < 128; i++) {
    double xi = ((float *)x.data)[i], kept = 2 * (xi / 0.75 - xi) / 128 / 0.75;
    cr_expect(grads[0][i] == 0 || fabs(grads[0][i] - kept) <= 1e-6 + 1e-4 * fabs(kept), "x[%d]: %g, wanted 0 or %g", i,
              (double)grads[0][i], kept);
    dropped += grads[0][i] == 0 && kept != 0;
    same &= grads[0][i] == grads[1][i];
    differ |= grads[0][i] != grads[2][i];
  }
  cr_expect(dropped > 10 && dropped < 60, "%d of 128 dropped at p=0.25", dropped);
  cr_expect(same, "the same seed draws other masks");
  cr_expect(differ, "another seed draws the same masks");
  snprintf(args, sizeof args, "run drop.dl --input x=x.npy --input t=t.npy --input-grads ig.safetensors --mode eval");
  expect(dir, args, 0, "loss: 0\n");
  for (int r = 0; r < 3; r++) free(grads[r]);
  rt_tensor_free(&x);
}

Test(cli, grads_on_the_command_line) {
  const char *dir = tu_scratch_dir();
  char args[2048];
  snprintf(args, sizeof args,
           "run %s/tests/fixtures/train/tiny.dl --input x=%s/tests/fixtures/train/tiny.x.npy "
           "--input y=%s/tests/fixtures/train/tiny.y.npy --params %s/tests/fixtures/train/tiny.init.safetensors "
           "--grads g.safetensors --input-grads ig.safetensors",
           DLC_SOURCE_DIR, DLC_SOURCE_DIR, DLC_SOURCE_DIR, DLC_SOURCE_DIR);
  expect(dir, args, 0, "loss: 1.17436");
  RtTensorSet g, want;
  RtError err;
  char path[600];
  rt_set_init(&g);
  rt_set_init(&want);
  snprintf(path, sizeof path, "%s/g.safetensors", dir);
  cr_assert_eq(rt_safetensors_read(path, &g, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_safetensors_read(FIXTURE("train/tiny.grads.safetensors"), &want, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(g.count, want.count);
  for (int i = 0; i < want.count; i++) {
    RtTensor *a = rt_set_find(&g, want.items[i].name), *b = &want.items[i].t;
    cr_assert_not_null(a, "no gradient for %s", want.items[i].name);
    for (int64_t k = 0; k < rt_tensor_numel(b); k++)
      cr_expect_leq(tu_relerr(((float *)a->data)[k], ((float *)b->data)[k], 1e-6), 1e-4, "%s[%lld]",
                    want.items[i].name, (long long)k);
  }
  rt_set_free(&g);
  rt_set_free(&want);
  snprintf(args, sizeof args, "run %s --input x=x.npy --grads g.safetensors", MLP);
  expect(dir, args, 1, "");
}

/* The inference C with embedded (and batch-norm folded) weights gives the
 * same test accuracy as the training graph, on a model with batch norm. */
Test(cli, eval_emitted_c_matches_the_training_graph, .timeout = 300) {
  if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0)
    cr_skip_test("Fashion-MNIST is not installed");
  const char *dir = tu_scratch_dir();
  char path[600], args[1024];
  snprintf(path, sizeof path, "%s/bnlog.dl", dir);
  FILE *f = fopen(path, "w");
  fputs("model bnlog\ninput x: f32[N, 784]\nfc = dense(x, 32)\nbn = batchnorm(fc)\nlogits = dense(relu(bn), 10) as out\n"
        "output logits\ntrain {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = adam(lr=1e-3)\n"
        "  batch = 256\n  epochs = 1\n  data = fashion_mnist(\"/usr/share/datasets/fashion-mnist\")\n}\n", f);
  fclose(f);
  expect(dir, "train bnlog.dl --backend=c --save w.safetensors", 0, "test: loss");
  snprintf(args, sizeof args, "eval bnlog.dl --params w.safetensors");
  Run r = run(dir, args);
  cr_assert_eq(r.status, 0, "%s", r.out);
  double emitted = -1, graph = -2;
  const char *p = strstr(r.out, "folded) ");
  cr_assert_not_null(p, "%s", r.out);
  cr_assert(strstr(r.out, "1 batch norms folded") != NULL, "%s", r.out);
  cr_assert_eq(sscanf(p, "folded) %lf%%, training graph %lf%%", &emitted, &graph), 2, "%s", r.out);
  cr_expect(fabs(emitted - graph) <= 0.02, "emitted %.2f%% vs graph %.2f%%", emitted, graph);
  cr_expect(graph > 70, "accuracy %.2f%% after an epoch", graph);
  free(r.out);
  r = run(dir, "eval bnlog.dl --params w.safetensors -O0"); /* unfused, untiled: the same accuracies */
  double emitted0 = -1, graph0 = -2;
  cr_assert_eq(r.status, 0, "%s", r.out);
  cr_assert((p = strstr(r.out, "folded) ")) != NULL, "%s", r.out);
  cr_assert_eq(sscanf(p, "folded) %lf%%, training graph %lf%%", &emitted0, &graph0), 2, "%s", r.out);
  cr_expect(fabs(emitted0 - emitted) <= 0.02 && fabs(graph0 - graph) <= 0.02, "-O0: %.2f%% and %.2f%%, not %.2f%% and %.2f%%",
            emitted0, graph0, emitted, graph);
  free(r.out);
  expect(dir, "eval bnlog.dl --params w.safetensors -O1", 2, "-O1");
}

/* With embedded weights the batch norm after a dense layer is folded away
 * and the C still builds warning-free. */
Test(cli, embed_params_folds_batch_norm) {
  const char *dir = tu_scratch_dir();
  char path[600], args[1024], cmd[1200];
  snprintf(path, sizeof path, "%s/bn.dl", dir);
  FILE *f = fopen(path, "w");
  fputs("model bnc\ninput x: f32[N, 8]\nfc = dense(x, 4)\nbn = batchnorm(fc)\noutput y = relu(bn)\n", f);
  fclose(f);
  RtTensorSet w;
  RtError err;
  rt_set_init(&w);
  const char *names[6] = {"fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
  for (int i = 0; i < 6; i++) {
    RtTensor t;
    int64_t shape[2] = {4, 8};
    cr_assert_eq(rt_tensor_alloc(&t, DT_F32, i ? 1 : 2, shape, &err), RT_OK);
    for (int64_t k = 0; k < rt_tensor_numel(&t); k++) ((float *)t.data)[k] = 0.5f + (float)k / 10;
    cr_assert_eq(rt_set_add(&w, names[i], &t, &err), RT_OK);
  }
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  cr_assert_eq(rt_safetensors_write(path, &w, &err), RT_OK);
  rt_set_free(&w);
  snprintf(args, sizeof args, "bn.dl --embed-params w.safetensors -o out.c");
  expect(dir, args, 0, "");
  snprintf(cmd, sizeof cmd, "cd %s && ! grep -q 'batchnorm' out.c && cc -std=c99 -Wall -Wextra -pedantic -Werror -c out.c", dir);
  cr_expect_eq(system(cmd), 0, "the batch norm is still there, or the C does not build");
}
