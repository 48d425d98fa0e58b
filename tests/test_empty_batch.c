/*
 * test_empty_batch.c — a batch of 0 on every backend.
 *
 * A symbolic dimension of 0 is an empty batch: the interpreter gives empty
 * outputs, and so must the compiled code.  Memory planning with every
 * symbol's largest value 0 leaves arenas of 0 bytes while temporaries
 * still point into them, so both emitters must still declare them; the
 * size checks of the compiled functions must accept 0 (and still refuse
 * -1 and max + 1); loops of extent 0 must not touch anything.
 *
 *  - empty_batch/samples_*: every model of samples/, compiled for N = 0
 *    and for N = 3, on the C backend and on the JIT; forward with N = 0
 *    returns 0 and leaves guard-filled output storage untouched; -1 and
 *    max + 1 are refused.
 *  - empty_batch/cli_run: `dlc run --backend=interp|c|jit` on a 0-row
 *    input exits 0 and writes an f32[0, 3] .npy, the same on all three.
 *  - empty_batch/train_refuses_batch_size_0: a mini-batch size of 0 is
 *    refused (`--batch 0`: exit 2; `batch = 0` in the model: exit 1).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/wait.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/testutil.h"

#define GUARD 64 /* floats of guard storage per argument */

static CModule *build(const Program *p, int jit, RtError *err) {
  return jit ? cg_jit_build(p, err) : cg_c_build(p, "-O0 -Wall -Wextra -pedantic -Werror", err);
}

/* Calls forward with the symbols at n; every input and output points at
 * guard-filled storage, which an empty batch must leave as it was. */
static RtStatus call_forward(CModule *mod, const Program *p, int64_t n, int *touched, RtError *err) {
  const Func *f = &p->funcs[0];
  float *store = malloc(sizeof(float) * GUARD * (size_t)(f->nargs + 1));
  void *args[64];
  cr_assert_leq(f->nargs, 64);
  for (int i = 0; i < GUARD * (f->nargs + 1); i++) store[i] = 12345.0f;
  for (int i = 0; i < f->nargs; i++) args[i] = store + GUARD * i;
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = n;
  RtStatus st = cg_c_call(mod, "forward", sym, args, err);
  *touched = 0;
  for (int i = 0; i < GUARD * f->nargs; i++) *touched += store[i] != 12345.0f;
  free(store);
  return st;
}

/* One sample compiled for largest batch max on one backend. */
static void check_sample(const char *name, int64_t max, int jit) {
  char path[512];
  snprintf(path, sizeof path, "%s/samples/%s", DLC_SOURCE_DIR, name);
  Model m;
  Diags d;
  diag_init(&d, stderr);
  cr_assert_eq(fe_load_file(&m, path, &d), 0, "%s does not load", name);
  for (int s = 0; s < m.g.nsyms; s++) m.g.syms[s].max = max;
  Program p;
  cr_assert_eq(pass_pipeline_infer(&m.g, &p, NULL, &d), 0, "%s", name);
  RtError err;
  CModule *mod = build(&p, jit, &err);
  cr_assert_not_null(mod, "%s, max %lld, %s: %s", name, (long long)max, jit ? "jit" : "c", err.msg);
  int touched;
  cr_expect_eq(call_forward(mod, &p, 0, &touched, &err), RT_OK, "%s: batch 0 refused: %s", name, err.msg);
  cr_expect_eq(touched, 0, "%s: a batch of 0 wrote %d floats", name, touched);
  cr_expect_neq(call_forward(mod, &p, -1, &touched, &err), RT_OK, "%s: batch -1 accepted", name);
  cr_expect_neq(call_forward(mod, &p, max + 1, &touched, &err), RT_OK, "%s: batch max + 1 accepted", name);
  cg_c_free(mod);
  kir_program_free(&p);
  fe_model_free(&m);
}

static void every_sample(int64_t max, int jit) {
  DIR *dir = opendir(DLC_SOURCE_DIR "/samples");
  cr_assert_not_null(dir);
  int n = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    size_t len = strlen(e->d_name);
    if (len < 4 || strcmp(e->d_name + len - 3, ".dl")) continue;
    check_sample(e->d_name, max, jit);
    n++;
  }
  closedir(dir);
  cr_expect_geq(n, 8, "only %d samples", n);
}

Test(empty_batch, samples_c_planned_for_0, .timeout = 600) { every_sample(0, 0); }
Test(empty_batch, samples_c_planned_for_3, .timeout = 600) { every_sample(3, 0); }
Test(empty_batch, samples_jit_planned_for_0, .timeout = 600) { every_sample(0, 1); }
Test(empty_batch, samples_jit_planned_for_3, .timeout = 600) { every_sample(3, 1); }

/* `dlc run` on a 0-row input, on each backend: exit 0 and an empty output. */
Test(empty_batch, cli_run, .timeout = 300) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  RtTensor x;
  RtError err;
  char path[600], cmd[2048];
  int64_t shape[2] = {0, 6};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, shape, &err), RT_OK);
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK);
  rt_tensor_free(&x);
  const char *backends[] = {"interp", "c", "jit"};
  for (int b = 0; b < 3; b++) {
    snprintf(cmd, sizeof cmd, "cd %s && %s run %s --backend=%s --input x=x.npy --output fc2=out_%s.npy > log.txt 2>&1",
             dir, DLC_EXE, FIXTURE("train/tiny.dl"), backends[b], backends[b]);
    int st = system(cmd);
    snprintf(path, sizeof path, "%s/log.txt", dir);
    char *log = tu_read_file(path, NULL);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "--backend=%s: status %d:\n%s", backends[b], st, log);
    free(log);
    RtTensor out;
    snprintf(path, sizeof path, "%s/out_%s.npy", dir, backends[b]);
    cr_assert_eq(rt_npy_read(path, &out, &err), RT_OK, "--backend=%s: %s", backends[b], err.msg);
    cr_expect(out.dtype == DT_F32 && out.rank == 2 && out.shape[0] == 0 && out.shape[1] == 3,
              "--backend=%s: the output is not f32[0, 3]", backends[b]);
    rt_tensor_free(&out);
  }
}

/* A mini-batch size of 0 means nothing to train on: refused, naming the
 * flag or the line, on the command line and in the training section. */
Test(empty_batch, train_refuses_batch_size_0, .timeout = 60) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  char path[600], cmd[2048];
  snprintf(path, sizeof path, "%s/b0.dl", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs("model b0\ninput x: f32[N, 2]\nfc = dense(x, 2)\noutput fc\n"
        "train {\n  label y: i64[N]\n  loss = cross_entropy(fc, y)\n  batch = 0\n}\n", f);
  fclose(f);
  const char *runs[2][3] = {{"train %s --batch 0", "2", "--batch"}, {"train %s/b0.dl", "1", "b0.dl:8:"}};
  for (int i = 0; i < 2; i++) {
    char args[1024];
    snprintf(args, sizeof args, runs[i][0], i ? dir : FIXTURE("train/tiny.dl"));
    snprintf(cmd, sizeof cmd, "cd %s && %s %s > log.txt 2>&1", dir, DLC_EXE, args);
    int st = system(cmd);
    snprintf(path, sizeof path, "%s/log.txt", dir);
    char *log = tu_read_file(path, NULL);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == atoi(runs[i][1]), "dlc %s: status %d:\n%s", args, st, log);
    cr_expect(log && strstr(log, runs[i][2]), "dlc %s: no '%s' in:\n%s", args, runs[i][2], log);
    free(log);
  }
}
