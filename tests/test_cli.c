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

Test(cli, usage_errors_exit_2) {
  const char *dir = tu_scratch_dir();
  char args[1024];
  expect(dir, "", 2, "usage:");
  snprintf(args, sizeof args, "%s --emit=wasm", MLP);
  expect(dir, args, 2, "--emit");
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
