/*
 * test_oom.c — out-of-memory injection (runtime/alloc.c), the way SQLite
 * tests it: run an operation once to count the allocations it makes, then
 * once for every n from 1 to that count with the n-th allocation failing,
 * and require a clean failure each time: an error status or diagnostic
 * saying "out of memory", outputs left empty, and (under LeakSanitizer)
 * nothing leaked.
 *
 * Readers: every file format dlc reads (.npy, safetensors with and without
 * metadata, IDX gzip'd and plain, CSV, the data-set loaders built on them)
 * and the atomic writers, which must also leave no file behind.  The
 * command: `dlc check` and `dlc MODEL.dl -o` on every sample, `dlc export`
 * of the model of every ONNX-exportable op, run as a
 * subprocess with DLC_FAIL_ALLOC (exit 1, "out of memory", no output file).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "testutil.h"

#define IO(name) FIXTURE("io/" name)
#define DATA(name) FIXTURE("data/" name)

/* --- the sweep ---------------------------------------------------------------- */

/* One operation under test: run it with ctx, leave any output in out, and
 * free that output with release. */
typedef struct OomOp {
  const char *what;
  RtStatus (*run)(const void *ctx, void *out, RtError *err);
  void (*release)(void *out);
  int (*is_empty)(const void *out);
  const void *ctx;
  size_t out_size;
} OomOp;

/* Runs op without injection and returns the number of allocations it made. */
static uint64_t oom_count(const OomOp *op) {
  char out[4096] = {0};
  RtError err = {{0}};
  cr_assert(op->out_size <= sizeof out);
  rt_alloc_fail_at(0, 0);
  RtStatus st = op->run(op->ctx, out, &err);
  uint64_t n = rt_alloc_count();
  cr_assert_eq(st, RT_OK, "%s: %s", op->what, err.msg);
  op->release(out);
  cr_assert_gt(n, 0, "%s makes no allocation", op->what);
  return n;
}

/* Fails allocation k (alone, or with repeat every one from k on). */
static void oom_one(const OomOp *op, uint64_t k, int repeat) {
  char out[4096] = {0};
  RtError err = {{0}};
  rt_alloc_fail_at(k, repeat);
  RtStatus st = op->run(op->ctx, out, &err);
  uint64_t failed = rt_alloc_failures();
  rt_alloc_fail_at(0, 0);
  cr_assert_geq(failed, 1, "%s: allocation %llu was never made", op->what, (unsigned long long)k);
  cr_assert_eq(st, RT_ERR_NOMEM, "%s, allocation %llu failing: status %d (%s)", op->what,
               (unsigned long long)k, st, err.msg);
  cr_assert(strstr(err.msg, "out of memory"), "%s, allocation %llu failing: '%s'", op->what,
            (unsigned long long)k, err.msg);
  cr_assert(op->is_empty(out), "%s, allocation %llu failing: output not left empty", op->what,
            (unsigned long long)k);
  op->release(out);
}

static void oom_sweep(const OomOp *op) {
  uint64_t n = oom_count(op);
  for (uint64_t k = 1; k <= n; k++) oom_one(op, k, 0);
  for (uint64_t k = 1; k <= n; k++) oom_one(op, k, 1);
  char out[4096] = {0};
  RtError err;
  cr_assert_eq(op->run(op->ctx, out, &err), RT_OK, "%s after the sweep: %s", op->what, err.msg);
  op->release(out);
}

/* --- readers ------------------------------------------------------------------- */

static void release_tensor(void *out) { rt_tensor_free(out); }
static int tensor_empty(const void *out) { return ((const RtTensor *)out)->data == NULL; }
static void release_set(void *out) { rt_set_free(out); }
static int set_empty(const void *out) {
  const RtTensorSet *s = out;
  return s->count == 0 && s->nmeta == 0;
}
static void release_dataset(void *out) { rt_dataset_free(out); }
static int dataset_empty(const void *out) {
  const RtDataset *d = out;
  int empty = d->x.data == NULL && d->y.data == NULL && d->ncols == 0;
  for (int c = 0; c < RT_DATA_MAX_COLS; c++) empty &= d->cols[c].data == NULL;
  return empty;
}

static RtStatus run_npy(const void *ctx, void *out, RtError *err) { return rt_npy_read(ctx, out, err); }
static RtStatus run_idx(const void *ctx, void *out, RtError *err) { return rt_idx_read(ctx, out, err); }
static RtStatus run_csv(const void *ctx, void *out, RtError *err) { return rt_csv_read(ctx, out, err); }

static RtStatus run_safetensors(const void *ctx, void *out, RtError *err) {
  rt_set_init(out);
  return rt_safetensors_read(ctx, out, err);
}

#define TENSOR_OP(fn, path) {path, fn, release_tensor, tensor_empty, path, sizeof(RtTensor)}

Test(oom, npy_reader) {
  const char *files[] = {IO("f4_2x3.npy"), IO("f4_v2_3x2.npy"), IO("i8_2x2x2.npy"), IO("u1_4x3.npy"),
                         IO("f8_5.npy"), IO("i4_0d.npy"), IO("f4_empty_0x3.npy")};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    OomOp op = TENSOR_OP(run_npy, files[i]);
    oom_sweep(&op);
  }
}

Test(oom, idx_reader_plain_and_gzip) {
  const char *files[] = {IO("images_3x4x5.idx"), IO("images_3x4x5.idx.gz"), IO("labels_3.idx.gz"),
                         IO("f64_3.idx"), DATA("images_5x2x3.idx.gz")};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    OomOp op = TENSOR_OP(run_idx, files[i]);
    oom_sweep(&op);
  }
}

Test(oom, csv_reader) {
  const char *files[] = {IO("header.csv"), IO("noheader.csv"), DATA("last.csv")};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    OomOp op = TENSOR_OP(run_csv, files[i]);
    oom_sweep(&op);
  }
}

Test(oom, safetensors_reader) {
  const char *files[] = {IO("model.safetensors"), IO("nometa.safetensors"), IO("good_escapes.safetensors"),
                         FIXTURE("train/tiny.init.safetensors")};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    OomOp op = {files[i], run_safetensors, release_set, set_empty, files[i], sizeof(RtTensorSet)};
    oom_sweep(&op);
  }
}

/* --- data-set loaders ---------------------------------------------------------- */

static RtStatus run_data_idx(const void *ctx, void *out, RtError *err) {
  return rt_data_idx(DATA("images_5x2x3.idx.gz"), DATA("labels_5.idx"), out, err);
}
static RtStatus run_data_csv(const void *ctx, void *out, RtError *err) { return rt_data_csv(ctx, -1, out, err); }
static RtStatus run_data_npy(const void *ctx, void *out, RtError *err) {
  return rt_data_npy(DATA("x_6x3.npy"), DATA("y_6_i32.npy"), out, err);
}
static RtStatus run_data_npy_columns(const void *ctx, void *out, RtError *err) {
  const char *paths[] = {DATA("x_6x3.npy"), DATA("y_6_i32.npy"), DATA("x_6x3.npy")};
  return rt_data_npy_columns(paths, 3, out, err);
}
static RtStatus run_data_fashion(const void *ctx, void *out, RtError *err) {
  RtDataset *d = out;
  return rt_data_fashion_mnist(ctx, &d[0], &d[1], err);
}
static void release_two(void *out) {
  rt_dataset_free(out);
  rt_dataset_free((RtDataset *)out + 1);
}
static int two_empty(const void *out) { return dataset_empty(out) && dataset_empty((const RtDataset *)out + 1); }

Test(oom, dataset_loaders) {
  OomOp ops[] = {
      {"rt_data_idx", run_data_idx, release_dataset, dataset_empty, NULL, sizeof(RtDataset)},
      {"rt_data_csv", run_data_csv, release_dataset, dataset_empty, DATA("last.csv"), sizeof(RtDataset)},
      {"rt_data_npy", run_data_npy, release_dataset, dataset_empty, NULL, sizeof(RtDataset)},
      {"rt_data_npy_columns", run_data_npy_columns, release_dataset, dataset_empty, NULL, sizeof(RtDataset)},
      {"rt_data_fashion_mnist", run_data_fashion, release_two, two_empty, DATA("fashion_tiny"),
       2 * sizeof(RtDataset)},
  };
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) oom_sweep(&ops[i]);
}

/* --- checkpoints: a tensor set with metadata, written and read back ------------ */

typedef struct WriteCtx {
  const char *path;
  const char *dir;
} WriteCtx;

/* Entries of dir other than "." and "..". */
static int dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  if (d) closedir(d);
  return n;
}

/* Builds a checkpoint-like set (weights, optimizer state, metadata) and
 * writes it: every allocation of building and writing is swept. */
static RtStatus run_write_checkpoint(const void *ctx, void *out, RtError *err) {
  const WriteCtx *w = ctx;
  RtTensorSet *s = out;
  rt_set_init(s);
  const char *names[] = {"fc.weight", "fc.bias", "adam.m/fc.weight", "adam.v/fc.weight"};
  int64_t shape[2] = {3, 4};
  RtStatus st = RT_OK;
  for (int i = 0; i < 4 && !st; i++) {
    RtTensor t = {0};
    st = rt_tensor_alloc(&t, DT_F32, 2, shape, err);
    for (int k = 0; !st && k < 12; k++) ((float *)t.data)[k] = (float)(i * 12 + k);
    if (!st) st = rt_set_add(s, names[i], &t, err);
    rt_tensor_free(&t);
  }
  if (!st) st = rt_set_meta(s, "epoch", "3", err);
  if (!st) st = rt_set_meta(s, "optimizer", "adam", err);
  if (!st) st = rt_safetensors_write(w->path, s, err);
  rt_set_free(s);
  if (st) {
    cr_assert_eq(dir_entries(w->dir), 0, "a failed write left a file behind");
    return st;
  }
  return rt_safetensors_read(w->path, s, err);
}

Test(oom, checkpoint_write_and_read, .timeout = 60) {
  const char *dir = tu_scratch_dir();
  cr_assert(dir);
  char path[600];
  snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
  WriteCtx w = {path, dir};
  OomOp op = {"checkpoint", run_write_checkpoint, release_set, set_empty, &w, sizeof(RtTensorSet)};
  /* Each run reads back what it wrote; remove it so a failed write is seen. */
  uint64_t n = oom_count(&op);
  for (uint64_t k = 1; k <= n; k++) {
    unlink(path);
    oom_one(&op, k, 0);
  }
  unlink(path);
  char out[4096] = {0};
  RtError err;
  cr_assert_eq(op.run(op.ctx, out, &err), RT_OK, "%s", err.msg);
  RtTensorSet *s = (RtTensorSet *)out;
  cr_assert_eq(s->count, 4);
  cr_assert_str_eq(rt_set_get_meta(s, "epoch"), "3");
  rt_set_free(s);
  unlink(path);
  rmdir(dir);
}

Test(oom, npy_write) {
  const char *dir = tu_scratch_dir();
  cr_assert(dir);
  char path[600];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  int64_t shape[2] = {2, 3};
  RtTensor t = {0};
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, 2, shape, &err), RT_OK);
  rt_alloc_fail_at(0, 0);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK, "%s", err.msg);
  uint64_t n = rt_alloc_count();
  for (uint64_t k = 1; k <= n; k++) {
    unlink(path);
    rt_alloc_fail_at(k, 0);
    RtStatus st = rt_npy_write(path, &t, &err);
    rt_alloc_fail_at(0, 0);
    cr_assert_eq(st, RT_ERR_NOMEM, "allocation %llu: %s", (unsigned long long)k, err.msg);
    cr_assert(strstr(err.msg, "out of memory"), "%s", err.msg);
    cr_assert_eq(dir_entries(dir), 0, "allocation %llu failing left a file", (unsigned long long)k);
  }
  rt_tensor_free(&t);
  rmdir(dir);
}

/* --- the allocator itself ------------------------------------------------------ */

Test(oom, counts_and_injects) {
  rt_alloc_fail_at(2, 0);
  void *a = rt_malloc(8), *b = rt_malloc(8), *c = rt_calloc(2, 4);
  cr_expect(a && !b && c);
  cr_expect_eq(rt_alloc_count(), 3);
  cr_expect_eq(rt_alloc_failures(), 1);
  free(a), free(c);
  rt_alloc_fail_at(1, 1);
  cr_expect_null(rt_malloc(1));
  cr_expect_null(rt_strdup("x"));
  cr_expect_eq(rt_alloc_failures(), 2);
  rt_alloc_fail_at(0, 0);
}

Test(oom, scope_frees_owned_blocks_since_entry) {
  void *volatile before = rt_xmalloc(32); /* changed after setjmp */
  RtOomScope s;
  volatile int caught = 0;
  rt_oom_enter(&s);
  if (setjmp(s.jb)) {
    caught = 1;
  } else {
    before = rt_xrealloc(before, 4096); /* grows, stays the outer scope's */
    for (int i = 0; i < 10; i++) rt_xmalloc(100);
    rt_alloc_fail_at(1, 0);
    rt_xcalloc(4, 4);
    cr_assert_fail("no unwinding");
  }
  rt_alloc_fail_at(0, 0);
  cr_expect(caught);
  memset(before, 1, 4096); /* still live: ASan would flag a freed block */
  rt_xfree(before);
}

Test(oom, env_variable) {
  setenv("DLC_FAIL_ALLOC", "2+", 1);
  cr_assert_eq(rt_alloc_fail_from_env(), 0);
  void *a = rt_malloc(1);
  cr_expect_not_null(a);
  cr_expect_null(rt_malloc(1));
  cr_expect_null(rt_malloc(1));
  free(a);
  setenv("DLC_FAIL_ALLOC", "x", 1);
  cr_expect_eq(rt_alloc_fail_from_env(), -1);
  rt_alloc_fail_at(0, 0);
}

/* --- the dlc command on every sample ----------------------------------------------
 * `dlc check S.dl` and `dlc S.dl -o out.c` run as subprocesses with
 * DLC_FAIL_ALLOC=n for n = 1, 2, ... until a run reports that no
 * allocation failed.  Every earlier run must exit 1 saying "out of memory",
 * leave no file behind and (in the sanitizer build) nothing leaked. */

typedef struct CliCase {
  char model[128];   /* relative to the source tree */
  char extra[160];   /* weights to embed, or "" */
  int compile;       /* 0: check, 1: C (-o out.c), 2: object file (--emit=obj -o out.o), 3: dlc export --fold-bn */
  int full;          /* every n even without DLC_OOM_STRIDE */
} CliCase;

/* The suite tries every n on mlp.dl and the embedded-weights case, and on
 * the other samples n = 1 and then every OOM_STRIDE-th n from a seeded
 * offset: about 150 runs of dlc instead of 560, which is what keeps the
 * suite fast (each run loads LLVM's shared library).  DLC_OOM_STRIDE=1
 * (scripts/oomtest.sh) tries every n everywhere. */
#define OOM_STRIDE 7
#define OOM_SEED 20261201

/* Runs build/dlc with argv in cwd, DLC_FAIL_ALLOC=fail, output to log.
 * Returns the exit status, or 128 + signal. */
static int dlc_spawn(const char *cwd, char *const *argv, const char *fail, const char *log) {
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    FILE *f = freopen(log, "w", stdout);
    if (!f || dup2(fileno(stdout), 2) < 0 || chdir(cwd)) _exit(126);
    setenv("DLC_FAIL_ALLOC", fail, 1);
    execv(DLC_EXE, argv);
    _exit(127);
  }
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Sweeps n = 1.. over one command; returns the number of allocations a
 * successful run makes.  stride > 1 tries only n = 1, then every stride-th
 * n from a seeded offset (scripts/oomtest.sh runs every n). */
static uint64_t cli_sweep(char *const *argv, const char *what, uint64_t stride, uint64_t seed) {
  const char *base = tu_scratch_dir();
  cr_assert(base);
  char out[600], log[600];
  snprintf(out, sizeof out, "%s/out", base);
  snprintf(log, sizeof log, "%s/log.txt", base);
  cr_assert_eq(mkdir(out, 0755), 0);
  uint64_t n = 1, made = 0;
  for (int runs = 0; runs < 100000; runs++) {
    char fail[32];
    snprintf(fail, sizeof fail, "%llu", (unsigned long long)n);
    int st = dlc_spawn(out, argv, fail, log);
    char *text = tu_read_file(log, NULL);
    cr_assert_not_null(text);
    const char *end = strstr(text, "no allocation failed (");
    if (end) {
      cr_assert_eq(st, 0, "%s: a run without failures exits %d:\n%s", what, st, text);
      made = strtoull(end + strlen("no allocation failed ("), NULL, 10);
      free(text);
      break;
    }
    cr_assert_eq(st, 1, "%s with allocation %llu failing: exit %d, wanted 1:\n%s", what, (unsigned long long)n, st,
                 text);
    cr_assert(strstr(text, "out of memory"), "%s with allocation %llu failing says:\n%s", what,
              (unsigned long long)n, text);
    cr_assert_eq(dir_entries(out), 0, "%s with allocation %llu failing left a file behind", what,
                 (unsigned long long)n);
    free(text);
    n = n == 1 && stride > 1 ? 1 + seed % stride + 1 : n + stride;
  }
  cr_assert_gt(made, 0);
  int outputs = !strcmp(argv[1], "check") ? 0 : !strcmp(argv[1], "export") ? 1 : 2;
  cr_assert_eq(dir_entries(out), outputs, "%s: outputs of the good run", what);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", base);
  cr_assert_eq(system(cmd), 0);
  return made;
}

/* Every .dl in samples/, once for check and once for compile; a model
 * with embedded weights; the object-file path through LLVM. */
static size_t cli_cases(CliCase **out) {
  DIR *d = opendir(DLC_SOURCE_DIR "/samples");
  cr_assert(d);
  size_t n = 0;
  CliCase *c = cr_calloc(64, sizeof *c);
  for (struct dirent *e; (e = readdir(d)) && n + 2 <= 62;) {
    size_t len = strlen(e->d_name);
    if (len < 4 || strcmp(e->d_name + len - 3, ".dl") || len + 9 > sizeof c->model) continue;
    for (int k = 0; k < 2; k++, n++) {
      snprintf(c[n].model, sizeof c[n].model, "samples/%.*s", (int)len, e->d_name);
      c[n].compile = k;
      c[n].full = !strcmp(e->d_name, "mlp.dl");
    }
  }
  closedir(d);
  /* with embedded weights (batch norm folding reads them) */
  snprintf(c[n].model, sizeof c[n].model, "tests/fixtures/train/tiny.dl");
  snprintf(c[n].extra, sizeof c[n].extra, "tests/fixtures/train/tiny.init.safetensors");
  c[n].full = 1;
  c[n++].compile = 1;
  /* through LLVM to an object file and its header */
  snprintf(c[n].model, sizeof c[n].model, "samples/mlp.dl");
  c[n++].compile = 2;
  /* an ONNX file of every exportable op (batch norm folded) */
  snprintf(c[n].model, sizeof c[n].model, "tests/fixtures/onnx/all_ops.dl");
  c[n].full = 1;
  c[n++].compile = 3;
  *out = c;
  return n;
}

static void free_cases(struct criterion_test_params *p) { cr_free(p->params); }

ParameterizedTestParameters(oom_cli, every_allocation) {
  CliCase *c;
  size_t n = cli_cases(&c);
  return cr_make_param_array(CliCase, c, n, free_cases);
}

ParameterizedTest(CliCase *c, oom_cli, every_allocation, .timeout = 300) {
  char model[400], extra[400], what[800];
  snprintf(model, sizeof model, "%s/%s", DLC_SOURCE_DIR, c->model);
  snprintf(extra, sizeof extra, "%s/%s", DLC_SOURCE_DIR, c->extra);
  char *check[] = {"dlc", "check", model, NULL};
  char *compile[] = {"dlc", model, "-o", "out.c", c->extra[0] ? "--embed-params" : NULL, extra, NULL};
  char *object[] = {"dlc", model, "--emit=obj", "-o", "out.o", NULL};
  char *export[] = {"dlc", "export", model, "--fold-bn", "-o", "out.onnx", NULL};
  char *const *argv = c->compile == 0 ? check : c->compile == 1 ? compile : c->compile == 2 ? object : export;
  snprintf(what, sizeof what, "dlc %s%s%s", c->compile == 0 ? "check " : c->compile == 3 ? "export " : "", c->model,
           c->compile == 1 ? " -o out.c" : c->compile == 2 ? " --emit=obj -o out.o" : c->compile == 3 ? " --fold-bn -o out.onnx" : "");
  const char *s = getenv("DLC_OOM_STRIDE");
  uint64_t stride = s && *s ? strtoull(s, NULL, 10) : c->full ? 1 : OOM_STRIDE;
  uint64_t made = cli_sweep(argv, what, stride ? stride : 1, OOM_SEED + (uint64_t)c->compile);
  cr_log_info("%s: %llu allocations", what, (unsigned long long)made);
}
