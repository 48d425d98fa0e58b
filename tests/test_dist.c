/*
 * test_dist.c — data-parallel training (`dlc train --distributed` under
 * mpirun) against one process.
 *
 * A small perceptron trains for a few steps on 15 samples in batches of 7
 * (so the last batch has one row, and one process of two gets none) with
 * SGD and momentum, once as one process and once as two processes of
 * `mpirun -np 2`, on the JIT and on the C backend.  The two processes take
 * rows 0-2 and 3-6 of each batch, so their gradients weigh 3/7 and 4/7:
 * every parameter and momentum buffer of the checkpoint (written by
 * process 0) must agree with the one process's norm-wise to 1e-5.  The
 * only differences are the order of float sums (a batch's rows summed in
 * two parts and then added, instead of in one loop) and the rounding of
 * scaling by 3/7 and 4/7: a few units in the last place per step (we see
 * about 1e-7 norm-wise after 5 steps here, and after 20 steps of the
 * Fashion-MNIST perceptron), while weighting the two halves equally, or
 * dropping the empty process's share wrongly, is off by about 1e-2.  A
 * run stopped by --steps and resumed is bit for bit the run that never
 * stopped.  A process killed in the middle of training (kill -9 from a
 * wrapper around rank 1) fails the job: mpirun ends the other and exits
 * non-zero naming the process and the signal.  The suites skip, saying
 * so, when dlc was built without MPI;
 * then `--distributed` must be refused with a message.
 *
 * The split step itself (grad_step, the gradient buffer, update_step)
 * needs no MPI: a trainer in this process with a world of one (RtDist of
 * size 1, every collective a no-op) trains as the fused train_step does,
 * bit for bit on the interpreter, on every backend; this is also where
 * the sanitizer build checks the split path for leaks.  The sanitizer
 * build runs the mpirun processes without LeakSanitizer: Open MPI unloads
 * its plugins in MPI_Finalize, so what they keep until exit is reported
 * from "<unknown module>" and no suppression can name it.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver/trainer.h"
#include "runtime/dist.h"
#include "runtime/rt.h"
#include "tests/testutil.h"

#define TOL 1e-5

typedef struct Run {
  int status;
  char *out, *err;
} Run;

/* Runs argv (NULL-terminated; argv[0] looked up in PATH) with stdout and
 * stderr in files under dir. */
static Run run_argv(const char *dir, const char *const *argv) {
  char out[600], err[600];
  snprintf(out, sizeof out, "%s/stdout.txt", dir);
  snprintf(err, sizeof err, "%s/stderr.txt", dir);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(126);
    if (DLC_SANITIZE[0]) { /* see the top of the file */
      char opts[1024];
      snprintf(opts, sizeof opts, "%s:detect_leaks=0", getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "");
      setenv("ASAN_OPTIONS", opts, 1);
    }
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  int ws;
  cr_assert_eq(waitpid(pid, &ws, 0), pid);
  Run r = {WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws), tu_read_file(out, NULL), tu_read_file(err, NULL)};
  cr_assert(r.out && r.err);
  return r;
}

static void run_free(Run *r) {
  free(r->out);
  free(r->err);
}

/* `dlc train DIR/FILE --save CKPT ARGS...`, as np processes of mpirun
 * with --distributed (np > 0) or as one plain process (np 0). */
static Run train_file(const char *dir, const char *file, int np, const char *ckpt, const char *const *args) {
  const char *argv[48];
  int n = 0;
  char nps[8];
  snprintf(nps, sizeof nps, "%d", np);
  if (np) {
    const char *mpi[] = {"mpirun", "--oversubscribe", "--allow-run-as-root", "-np", nps};
    for (size_t k = 0; k < sizeof mpi / sizeof *mpi; k++) argv[n++] = mpi[k];
  }
  char model[600];
  snprintf(model, sizeof model, "%s/%s", dir, file);
  argv[n++] = DLC_EXE, argv[n++] = "train", argv[n++] = model, argv[n++] = "--save", argv[n++] = ckpt;
  if (np) argv[n++] = "--distributed";
  for (int k = 0; args[k]; k++) argv[n++] = args[k];
  argv[n] = NULL;
  return run_argv(dir, argv);
}

/* The same for the perceptron tiny.dl. */
static Run train(const char *dir, int np, const char *ckpt, const char *const *args) {
  return train_file(dir, "tiny.dl", np, ckpt, args);
}

/* --- the model and its data ----------------------------------------------------------- */

static const char *model_text =
    "model tiny\n"
    "input x: f32[N, 5]\n"
    "fc = dense(x, 8)\n"
    "h = relu(fc)\n"
    "logits = dense(h, 3)\n"
    "output logits\n"
    "train {\n"
    "  label y: i64[N]\n"
    "  loss = cross_entropy(logits, y)\n"
    "  optimizer = sgd(lr=0.2, momentum=0.9)\n"
    "  batch = 7\n"
    "  epochs = 3\n"
    "  seed = 5\n"
    "  val_split = 0.25\n"
    "  data = npy(\"x.npy\", \"y.npy\")\n"
    "}\n";

/* A convolution and batch norm (no bias before it, whose gradient is
 * zero) on 4x4 images of the same 20 samples, for --sync-bn. */
static const char *bn_model_text =
    "model tinybn\n"
    "input x: f32[N, 1, 4, 4]\n"
    "c = conv2d(x, 3, 3, padding=1, bias=false)\n"
    "b = batchnorm(c)\n"
    "h = relu(b)\n"
    "f = flatten(h)\n"
    "logits = dense(f, 3)\n"
    "output logits\n"
    "train {\n"
    "  label y: i64[N]\n"
    "  loss = cross_entropy(logits, y)\n"
    "  optimizer = sgd(lr=0.2, momentum=0.9)\n"
    "  batch = 7\n"
    "  epochs = 3\n"
    "  seed = 5\n"
    "  val_split = 0.25\n"
    "  data = npy(\"x4.npy\", \"y.npy\")\n"
    "}\n";

static void write_text(const char *dir, const char *file, const char *text) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(text, f);
  fclose(f);
}

/* 20 samples of three classes, the class shifting the features. */
static void write_data(const char *dir) {
  char path[600];
  RtError err;
  RtTensor x, y;
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, (int64_t[]){20, 5}, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, (int64_t[]){20}, &err), RT_OK);
  for (int i = 0; i < 20; i++) {
    ((int64_t *)y.data)[i] = i % 3;
    for (int k = 0; k < 5; k++) ((float *)x.data)[i * 5 + k] = (float)(((i * 7 + k * 3) % 11) / 11.0 + (i % 3 == k % 3));
  }
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK, "%s", err.msg);
  snprintf(path, sizeof path, "%s/y.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK, "%s", err.msg);
  RtTensor x4;
  cr_assert_eq(rt_tensor_alloc(&x4, DT_F32, 4, (int64_t[]){20, 1, 4, 4}, &err), RT_OK);
  for (int i = 0; i < 20; i++)
    for (int k = 0; k < 16; k++)
      ((float *)x4.data)[i * 16 + k] = (float)(((i * 7 + k * 3) % 11) / 11.0 + (i % 3 == k % 3));
  snprintf(path, sizeof path, "%s/x4.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x4, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&x4);
  write_text(dir, "tiny.dl", model_text);
  write_text(dir, "bn.dl", bn_model_text);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
}

/* A scratch directory with the model and its data, or a skipped test. */
static const char *setup(void) {
  if (!rt_dist_available()) cr_skip_test("dlc was built without MPI (configure with -Dmpi=enabled): nothing to test");
  if (system("mpirun --version >/dev/null 2>&1") != 0)
    cr_skip_test("dlc has MPI but mpirun is not on PATH (apt-get install openmpi-bin)");
  const char *dir = tu_scratch_dir();
  cr_assert(dir);
  write_data(dir);
  return dir;
}

static void remove_dir(const char *dir) {
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_expect_eq(system(cmd), 0);
}

/* --- comparing checkpoints ----------------------------------------------------------------- */

static void load(const char *path, RtTensorSet *s) {
  RtError err;
  rt_set_init(s);
  cr_assert_eq(rt_safetensors_read(path, s, &err), RT_OK, "%s", err.msg);
}

/* Every tensor of want in got, agreeing norm-wise to tol (0: bit for bit). */
static void expect_agree(const char *what, RtTensorSet *got, const RtTensorSet *want, double tol) {
  cr_expect_eq(got->count, want->count, "%s: %d tensors, expected %d", what, got->count, want->count);
  for (int i = 0; i < want->count; i++) {
    const RtTensor *w = &want->items[i].t, *g = rt_set_find(got, want->items[i].name);
    cr_assert(g, "%s: no tensor %s", what, want->items[i].name);
    int64_t n = (int64_t)(rt_tensor_nbytes(w) / sizeof(float));
    cr_assert_eq(rt_tensor_nbytes(g), rt_tensor_nbytes(w));
    double worst = 0, m = 1e-6;
    for (int64_t k = 0; k < n; k++) m = fmax(m, fabs(((const float *)w->data)[k]));
    for (int64_t k = 0; k < n; k++) {
      double e = fabs((double)((const float *)g->data)[k] - ((const float *)w->data)[k]) / m;
      if (!(e <= worst)) worst = e;
    }
    cr_expect(worst <= tol, "%s: %s differs norm-wise by %g (tolerance %g)", what, want->items[i].name, worst, tol);
  }
}

/* "val loss X" of the first epoch line of out. */
static double val_loss(const char *out) {
  const char *at = strstr(out, "val loss ");
  cr_assert(at, "no validation figures in:\n%s", out);
  return atof(at + 9);
}

/* One process trains the tiny model of dir for 5 steps on backend be,
 * with the fused train_step or (split) the split step in a world of one;
 * its parameters and optimizer state into out. */
static void train_here(const char *dir, int split, Backend be, RtTensorSet *out) {
  Model m;
  Diags d;
  diag_init(&d, stderr);
  char path[600];
  snprintf(path, sizeof path, "%s/tiny.dl", dir);
  cr_assert_eq(fe_load_file(&m, path, &d), 0);
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &d), 0);
  cfg.backend = be, cfg.max_steps = 5;
  Trainer t;
  RtDist one = {.size = 1};
  cr_assert_eq(trainer_prepare(&t, &m, &cfg, &d), 0);
  if (split) t.dist = &one;
  cr_assert(trainer_load_data(&t) == 0 && trainer_fit_batch(&t) == 0 && trainer_build(&t, NULL) == 0);
  EpochStats es;
  int rc;
  while ((rc = trainer_epoch(&t, &es, 0, NULL)) == 0) t.epoch++;
  cr_assert_eq(rc, 2, "--steps 5 stops inside the second epoch");
  cr_assert_eq(t.step, 5);
  cr_assert_eq(trainer_sync(&t), 0);
  RtError err;
  rt_set_init(out);
  for (int i = 0; i < t.tensors.count; i++)
    cr_assert_eq(rt_set_add_copy(out, t.tensors.items[i].name, &t.tensors.items[i].t, &err), RT_OK);
  trainer_free(&t);
  fe_model_free(&m);
}

typedef struct HereParam {
  Backend backend;
  double tol;
} HereParam;

ParameterizedTestParameters(dist, split_step_trains_as_the_fused_one) {
  static HereParam ps[] = {{BACKEND_INTERP, 0}, {BACKEND_JIT, TOL}, {BACKEND_C, TOL}};
  return cr_make_param_array(HereParam, ps, sizeof ps / sizeof *ps);
}

ParameterizedTest(HereParam *p, dist, split_step_trains_as_the_fused_one, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  cr_assert(dir);
  write_data(dir);
  RtTensorSet fused, split;
  train_here(dir, 0, p->backend, &fused);
  train_here(dir, 1, p->backend, &split);
  cr_expect_eq(fused.count, 8, "4 parameters and their momentum buffers");
  expect_agree("split", &split, &fused, p->tol);
  rt_set_free(&fused), rt_set_free(&split);
  remove_dir(dir);
}

/* --- the tests ---------------------------------------------------------------------------- */

typedef struct BackendParam {
  char backend[16];
} BackendParam;

ParameterizedTestParameters(dist, two_processes_train_like_one) {
  static BackendParam ps[] = {{"--backend=jit"}, {"--backend=c"}};
  return cr_make_param_array(BackendParam, ps, sizeof ps / sizeof *ps);
}

ParameterizedTest(BackendParam *p, dist, two_processes_train_like_one, .timeout = 300) {
  const char *dir = setup();
  char one[600], two[600];
  snprintf(one, sizeof one, "%s/one.safetensors", dir);
  snprintf(two, sizeof two, "%s/two.safetensors", dir);
  const char *args[] = {"--steps", "5", p->backend, NULL};
  Run a = train(dir, 0, one, args), b = train(dir, 2, two, args);
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  cr_expect(strstr(b.out, "2 processes of 4 rows\n"), "%s", b.out);
  cr_expect(strstr(b.out, "stopped after 5 steps, batch 2 of epoch 2\n"), "%s", b.out);
  cr_expect(strstr(b.out, "\ndistributed: 2 processes, "), "%s", b.out);
  cr_expect(!strstr(a.out, "distributed:"), "%s", a.out);
  cr_expect(fabs(val_loss(a.out) - val_loss(b.out)) <= 1e-4, "validation, sharded: %s\nagainst one process: %s", b.out,
            a.out);
  RtTensorSet sa, sb, init;
  load(one, &sa), load(two, &sb);
  expect_agree(p->backend, &sb, &sa, TOL);
  /* and the steps did move the weights: the comparison is not of two starts */
  char none[600];
  snprintf(none, sizeof none, "%s/none.safetensors", dir);
  const char *zero[] = {"--steps", "1", "--lr", "1e-12", p->backend, NULL};
  Run z = train(dir, 0, none, zero);
  cr_assert_eq(z.status, 0, "%s%s", z.out, z.err);
  load(none, &init);
  const RtTensor *w0 = rt_set_find(&init, "logits.weight"), *w5 = rt_set_find(&sa, "logits.weight");
  cr_assert(w0 && w5);
  double moved = 0;
  for (int k = 0; k < 24; k++) moved = fmax(moved, fabs(((float *)w0->data)[k] - ((float *)w5->data)[k]));
  cr_expect(moved > 1e-2, "5 steps moved logits.weight by only %g", moved);
  rt_set_free(&sa), rt_set_free(&sb), rt_set_free(&init);
  run_free(&a), run_free(&b), run_free(&z);
  remove_dir(dir);
}

/* Worst norm-wise difference of any tensor of a from b's. */
static double worst_difference(const RtTensorSet *a, const RtTensorSet *b) {
  double worst = 0;
  for (int i = 0; i < a->count; i++) {
    const RtTensor *x = &a->items[i].t, *y = rt_set_find((RtTensorSet *)b, a->items[i].name);
    cr_assert(y && rt_tensor_nbytes(x) == rt_tensor_nbytes(y), "%s", a->items[i].name);
    int64_t n = (int64_t)(rt_tensor_nbytes(x) / sizeof(float));
    double m = 1e-6, e = 0;
    for (int64_t k = 0; k < n; k++) m = fmax(m, fabs(((const float *)x->data)[k]));
    for (int64_t k = 0; k < n; k++) e = fmax(e, fabs((double)((const float *)x->data)[k] - ((const float *)y->data)[k]));
    worst = fmax(worst, e / m);
  }
  return worst;
}

/* --sync-bn: batch norm's statistics over both processes' rows make the
 * two processes the one process with the whole batch, the last batch of
 * one row included (process 0 has none: it adds nothing to the sums but
 * takes part in every collective).  Without it each process normalises
 * its own rows and the parameters differ by about 0.1 norm-wise, far
 * outside the tolerance: the comparison can fail. */
ParameterizedTestParameters(dist, sync_bn_trains_like_one_process) {
  static BackendParam ps[] = {{"--backend=jit"}, {"--backend=c"}};
  return cr_make_param_array(BackendParam, ps, sizeof ps / sizeof *ps);
}

ParameterizedTest(BackendParam *p, dist, sync_bn_trains_like_one_process, .timeout = 300) {
  const char *dir = setup();
  char one[600], sync[600], own[600];
  snprintf(one, sizeof one, "%s/one.safetensors", dir);
  snprintf(sync, sizeof sync, "%s/sync.safetensors", dir);
  snprintf(own, sizeof own, "%s/own.safetensors", dir);
  const char *args[] = {"--steps", "5", p->backend, NULL}, *sargs[] = {"--steps", "5", "--sync-bn", p->backend, NULL};
  Run a = train_file(dir, "bn.dl", 0, one, args), b = train_file(dir, "bn.dl", 2, sync, sargs),
      c = train_file(dir, "bn.dl", 2, own, args);
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  cr_assert_eq(c.status, 0, "%s%s", c.out, c.err);
  RtTensorSet sa, sb, sc;
  load(one, &sa), load(sync, &sb), load(own, &sc);
  cr_expect_eq(sa.count, 12, "5 parameters, their momentum buffers and 2 running statistics");
  expect_agree("--sync-bn", &sb, &sa, TOL);
  double apart = worst_difference(&sc, &sa);
  cr_expect(apart > 100 * TOL, "without --sync-bn the processes differ from one by only %g", apart);
  cr_log_info("--sync-bn %s: 2 processes against 1 differ by %g norm-wise; without it by %g", p->backend,
              worst_difference(&sb, &sa), apart);
  rt_set_free(&sa), rt_set_free(&sb), rt_set_free(&sc);
  run_free(&a), run_free(&b), run_free(&c);
  remove_dir(dir);
}

Test(dist, sync_bn_needs_distributed, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  cr_assert(dir);
  write_data(dir);
  char ckpt[600];
  snprintf(ckpt, sizeof ckpt, "%s/c.safetensors", dir);
  Run r = train_file(dir, "bn.dl", 0, ckpt, (const char *[]){"--sync-bn", "--steps", "1", NULL});
  cr_expect_eq(r.status, 2, "%s%s", r.out, r.err);
  cr_expect(strstr(r.err, "--sync-bn: error: synchronises batch norm over the processes of --distributed"), "%s", r.err);
  cr_expect_eq(access(ckpt, F_OK), -1, "nothing trained, nothing saved");
  run_free(&r);
  remove_dir(dir);
}

/* --- emitted training C over MPI --------------------------------------------------------- */

/* A trainer of the emitted C alone: 5 steps on batches of 7 of 21
 * samples, each process taking its share of every batch (rows 0-3 and
 * 4-6 of two), then process 0 writes every parameter and momentum buffer
 * as text. */
static const char *mpi_main_c =
    "#include <stdio.h>\n"
    "#include \"t_train.h\"\n"
    "#ifdef DLC_MPI\n"
    "#include <mpi.h>\n"
    "#endif\n"
    "int main(int argc, char **argv) {\n"
    "  int rank = 0, size = 1;\n"
    "#ifdef DLC_MPI\n"
    "  MPI_Init(&argc, &argv);\n"
    "  MPI_Comm_rank(MPI_COMM_WORLD, &rank);\n"
    "  MPI_Comm_size(MPI_COMM_WORLD, &size);\n"
    "#endif\n"
    "  static float x[21 * 5], logits[TINY_MAX_N * 3];\n"
    "  static int64_t y[21];\n"
    "  for (int i = 0; i < 21; i++) {\n"
    "    y[i] = i % 3;\n"
    "    for (int k = 0; k < 5; k++) x[i * 5 + k] = (float)(((i * 7 + k * 3) % 11) / 11.0 + (i % 3 == k % 3));\n"
    "  }\n"
    "  if (tiny_load(argv[1])) return fprintf(stderr, \"%s\\n\", tiny_error()), 1;\n"
    "  float lr = 0.2f, step = 0, loss;\n"
    "  for (int k = 0; k < 5; k++) {\n"
    "    int64_t at = (k % 3) * 7, per = (7 + size - 1) / size, lo = rank * per, hi = lo + per > 7 ? 7 : lo + per;\n"
    "    if (lo > hi) lo = hi;\n"
    "#ifdef DLC_MPI\n"
    "    if (argc < 4 && tiny_mpi_share(hi - lo, 7)) return 1; /* a 3rd argument: no sums */\n"
    "#endif\n"
    "    step += 1;\n"
    "    if (tiny_train_step(hi - lo, x + (at + lo) * 5, y + at + lo, &lr, &step, &loss, logits)) return 1;\n"
    "  }\n"
    "#ifdef DLC_MPI\n"
    "  if (tiny_mpi_status() != MPI_SUCCESS) return fprintf(stderr, \"MPI failed\\n\"), 1;\n"
    "#endif\n"
    "  if (rank == 0) {\n"
    "    FILE *f = fopen(argv[2], \"w\");\n"
    "    for (int i = 0; tiny_param(i); i++)\n"
    "      for (int64_t j = 0; j < tiny_param(i)->numel; j++) fprintf(f, \"%s %.9g\\n\", tiny_param(i)->name, tiny_param(i)->data[j]);\n"
    "    fclose(f);\n"
    "  }\n"
    "#ifdef DLC_MPI\n"
    "  MPI_Finalize();\n"
    "#endif\n"
    "  return 0;\n"
    "}\n"
    ;

/* `sh -c cmd` in dir. */
static Run sh_in(const char *dir, const char *cmd) {
  char full[2000];
  snprintf(full, sizeof full, "cd '%s' && %s", dir, cmd);
  return run_argv(dir, (const char *const[]){"sh", "-c", full, NULL});
}

/* The largest difference between the values of two such files, relative
 * to the largest value; -1 when their names or counts differ. */
static double text_difference(const char *a, const char *b) {
  FILE *fa = fopen(a, "r"), *fb = fopen(b, "r");
  cr_assert(fa && fb, "%s, %s", a, b);
  char na[256], nb[256];
  double va, vb, diff = 0, big = 1e-6;
  int rows = 0, ra, rb;
  while ((ra = fscanf(fa, "%255s %lf", na, &va)) == 2 && (rb = fscanf(fb, "%255s %lf", nb, &vb)) == 2) {
    if (strcmp(na, nb)) return fclose(fa), fclose(fb), -1;
    diff = fmax(diff, fabs(va - vb)), big = fmax(big, fabs(va)), rows++;
  }
  int rest = fscanf(fb, "%255s %lf", nb, &vb);
  fclose(fa), fclose(fb);
  return rows == 150 && rest != 2 ? diff / big : -1; /* 75 weights and biases (5*8 + 8 + 8*3 + 3), and momentum */
}

/* The emitted training C built with mpicc -DDLC_MPI and run as two
 * processes sums the gradients (each weighted by its share of the batch)
 * into the steps of one process built with cc: the same parameters and
 * momentum buffers, norm-wise to 1e-5; when the program does not ask for
 * the sums (no P_mpi_share) the processes train apart, and differ.  The
 * same C with -DDLC_MPI and no <mpi.h> stops at its #error. */
Test(dist, emitted_training_c_over_mpi, .timeout = 300) {
  const char *dir = setup();
  write_text(dir, "t.dl", model_text); /* its data and epochs are dlc train's; the emitted step ignores them */
  write_text(dir, "main.c", mpi_main_c);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "%s t.dl --train -o t_train.c", DLC_EXE);
  Run e = sh_in(dir, cmd);
  cr_assert_eq(e.status, 0, "%s%s", e.out, e.err);
  const char *san = DLC_SANITIZE[0] ? "-fsanitize=" DLC_SANITIZE : "";
  snprintf(cmd, sizeof cmd, "cc -O2 -std=c11 %s -I. main.c t_train.c -lm -o serial && ./serial t_train.init.safetensors one.txt", san);
  Run a = sh_in(dir, cmd);
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  snprintf(cmd, sizeof cmd, "mpicc -O2 -std=c11 %s -DDLC_MPI -I. main.c t_train.c -lm -o par && "
           "mpirun --oversubscribe --allow-run-as-root -np 2 ./par t_train.init.safetensors two.txt && "
           "mpirun --oversubscribe --allow-run-as-root -np 2 ./par t_train.init.safetensors apart.txt nosum", san);
  Run b = sh_in(dir, cmd);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  char one[700], two[700], apart[700];
  snprintf(one, sizeof one, "%s/one.txt", dir);
  snprintf(two, sizeof two, "%s/two.txt", dir);
  snprintf(apart, sizeof apart, "%s/apart.txt", dir);
  double same = text_difference(two, one), differ = text_difference(apart, one);
  cr_expect(same >= 0 && same <= TOL, "2 processes against 1: %g norm-wise (tolerance %g)", same, TOL);
  cr_expect(differ > 100 * TOL, "2 processes without sums against 1: only %g", differ);
  cr_log_info("emitted C over MPI: 2 processes against 1 differ by %g norm-wise; unsummed by %g", same, differ);
  Run c = sh_in(dir, "cc -std=c11 -DDLC_MPI -I. -c t_train.c -o t_train.o");
  cr_expect_neq(c.status, 0, "-DDLC_MPI without mpi.h must not compile");
  cr_expect(strstr(c.err, "DLC_MPI sums the gradients over MPI, but there is no <mpi.h>: compile with mpicc"), "%s", c.err);
  run_free(&e), run_free(&a), run_free(&b), run_free(&c);
  remove_dir(dir);
}

Test(dist, resumed_run_is_the_uninterrupted_one, .timeout = 300) {
  const char *dir = setup();
  char whole[600], part[600];
  snprintf(whole, sizeof whole, "%s/whole.safetensors", dir);
  snprintf(part, sizeof part, "%s/part.safetensors", dir);
  const char *all[] = {"--steps", "5", NULL}, *first[] = {"--steps", "2", NULL},
             *rest[] = {"--steps", "5", "--resume", part, NULL};
  Run a = train(dir, 2, whole, all), b = train(dir, 2, part, first);
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  Run c = train(dir, 2, part, rest);
  cr_assert_eq(c.status, 0, "%s%s", c.out, c.err);
  RtTensorSet sa, sc;
  load(whole, &sa), load(part, &sc);
  expect_agree("resumed", &sc, &sa, 0);
  cr_expect_str_eq(rt_set_get_meta(&sc, "dlc.step"), "5");
  rt_set_free(&sa), rt_set_free(&sc);
  run_free(&a), run_free(&b), run_free(&c);
  remove_dir(dir);
}

/* A checkpoint of two processes resumed by one process, and by three:
 * the same global batches in the same order (the data order follows the
 * seed and the step, not the processes), so the same parameters as the
 * two processes that never stopped, to the tolerance of their sums. */
Test(dist, resumed_with_other_process_counts, .timeout = 300) {
  const char *dir = setup();
  char whole[600], one[600], three[600];
  snprintf(whole, sizeof whole, "%s/whole.safetensors", dir);
  snprintf(one, sizeof one, "%s/one.safetensors", dir);
  snprintf(three, sizeof three, "%s/three.safetensors", dir);
  const char *all[] = {"--steps", "5", NULL}, *first[] = {"--steps", "2", NULL};
  Run a = train(dir, 2, whole, all), b = train(dir, 2, one, first), c = train(dir, 2, three, first);
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  cr_assert_eq(c.status, 0, "%s%s", c.out, c.err);
  Run r1 = train(dir, 0, one, (const char *[]){"--steps", "5", "--resume", one, NULL});
  Run r3 = train(dir, 3, three, (const char *[]){"--steps", "5", "--resume", three, NULL});
  cr_assert_eq(r1.status, 0, "%s%s", r1.out, r1.err);
  cr_assert_eq(r3.status, 0, "%s%s", r3.out, r3.err);
  cr_expect(strstr(r3.out, "3 processes of 3 rows\n"), "%s", r3.out);
  RtTensorSet sa, s1, s3;
  load(whole, &sa), load(one, &s1), load(three, &s3);
  expect_agree("2 processes resumed by 1", &s1, &sa, TOL);
  expect_agree("2 processes resumed by 3", &s3, &sa, TOL);
  cr_expect_str_eq(rt_set_get_meta(&s1, "dlc.step"), "5");
  cr_expect_str_eq(rt_set_get_meta(&s3, "dlc.step"), "5");
  rt_set_free(&sa), rt_set_free(&s1), rt_set_free(&s3);
  run_free(&a), run_free(&b), run_free(&c), run_free(&r1), run_free(&r3);
  remove_dir(dir);
}

/* The overlap: each gradient's sum may start while the backward pass
 * goes on.  In the compiled grad_step of a world of one, the gradients go
 * through dist_mean kernels placed right after each gradient's last
 * kernel, so the first comes before the backward pass ends; and two
 * processes summing bucket by bucket during it (MPI_Iallreduce; one
 * bucket, or three of 1 KiB) write the same tensors, bit for bit, as two
 * summing after it (--no-overlap). */
Test(dist, collectives_follow_their_gradients, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  cr_assert(dir);
  write_data(dir);
  Model m;
  Diags d;
  diag_init(&d, stderr);
  char path[600];
  snprintf(path, sizeof path, "%s/tiny.dl", dir);
  cr_assert_eq(fe_load_file(&m, path, &d), 0);
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &d), 0);
  cfg.backend = BACKEND_C;
  Trainer t;
  RtDist one = {.size = 1};
  cr_assert_eq(trainer_prepare(&t, &m, &cfg, &d), 0);
  t.dist = &one;
  cr_assert(trainer_load_data(&t) == 0 && trainer_fit_batch(&t) == 0 && trainer_build(&t, NULL) == 0);
  const Func *f = NULL;
  for (int i = 0; i < t.prog.nfuncs; i++)
    if (!strcmp(t.prog.funcs[i].name, "grad_step")) f = &t.prog.funcs[i];
  cr_assert(f);
  int first = -1, last = -1, count = 0;
  for (int k = 0; k < f->nkernels; k++) {
    if (f->kernels[k].op == OP_DIST_MEAN) count++, first = first < 0 ? k : first;
    else last = k;
  }
  cr_expect_eq(count, 4, "a dist_mean per gradient");
  cr_expect(first >= 0 && first < last, "the first gradient's sum at kernel %d, the backward pass ends at %d", first, last);
  trainer_free(&t);
  fe_model_free(&m);
  remove_dir(dir);
}

ParameterizedTestParameters(dist, overlap_sums_as_after_the_backward_pass) {
  static BackendParam ps[] = {{"--backend=jit"}, {"--backend=c"}};
  return cr_make_param_array(BackendParam, ps, sizeof ps / sizeof *ps);
}

ParameterizedTest(BackendParam *p, dist, overlap_sums_as_after_the_backward_pass, .timeout = 300) {
  const char *dir = setup();
  /* the perceptron 64 wide: 579 floats of gradients, 3 buckets of 1 KiB */
  char wide[1024];
  const char *at = strstr(model_text, "dense(x, 8)");
  cr_assert(at);
  snprintf(wide, sizeof wide, "%.*sdense(x, 64)%s", (int)(at - model_text), model_text, at + strlen("dense(x, 8)"));
  write_text(dir, "wide.dl", wide);
  char during[600], after[600], small[600];
  snprintf(during, sizeof during, "%s/during.safetensors", dir);
  snprintf(after, sizeof after, "%s/after.safetensors", dir);
  snprintf(small, sizeof small, "%s/small.safetensors", dir);
  Run a = train_file(dir, "wide.dl", 2, during, (const char *[]){"--steps", "5", p->backend, NULL});
  Run b = train_file(dir, "wide.dl", 2, after, (const char *[]){"--steps", "5", "--no-overlap", p->backend, NULL});
  Run c = train_file(dir, "wide.dl", 2, small, (const char *[]){"--steps", "5", "--bucket-kb", "1", p->backend, NULL});
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  cr_assert_eq(c.status, 0, "%s%s", c.out, c.err);
  /* 5 steps: the buckets and the tail each during, one sum each after; then the check and the test totals */
  cr_expect(strstr(a.out, "distributed: 2 processes, 13 allreduce calls"), "%s", a.out);
  cr_expect(strstr(b.out, "distributed: 2 processes, 8 allreduce calls"), "%s", b.out);
  cr_expect(strstr(c.out, "distributed: 2 processes, 23 allreduce calls"), "%s", c.out);
  RtTensorSet sa, sb, sc;
  load(during, &sa), load(after, &sb), load(small, &sc);
  expect_agree("overlapped", &sa, &sb, 0);
  expect_agree("overlapped in 3 buckets", &sc, &sb, 0);
  rt_set_free(&sa), rt_set_free(&sb), rt_set_free(&sc);
  run_free(&a), run_free(&b), run_free(&c);
  remove_dir(dir);
}

Test(dist, a_killed_process_fails_the_job, .timeout = 300) {
  const char *dir = setup();
  char wrapper[600], model[600];
  snprintf(wrapper, sizeof wrapper, "%s/kill1.sh", dir);
  snprintf(model, sizeof model, "%s/tiny.dl", dir);
  FILE *f = fopen(wrapper, "w");
  cr_assert(f);
  fputs("#!/bin/sh\nif [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (sleep 3; kill -9 $$) & fi\nexec \"$@\"\n", f);
  fclose(f);
  cr_assert_eq(chmod(wrapper, 0755), 0);
  const char *argv[] = {"mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "2", wrapper, DLC_EXE, "train", model,
                        "--distributed", "--epochs", "1000000", "--quiet", NULL};
  Run r = run_argv(dir, argv);
  cr_expect_neq(r.status, 0, "%s%s", r.out, r.err);
  cr_expect(strstr(r.err, "rank 1") && strstr(r.err, "signal 9"), "mpirun names the process and the signal:\n%s", r.err);
  run_free(&r);
  remove_dir(dir);
}

Test(dist, refused_without_mpi, .timeout = 120) {
  if (rt_dist_available()) cr_skip_test("dlc was built with MPI: --distributed is not refused");
  const char *dir = tu_scratch_dir();
  cr_assert(dir);
  write_data(dir);
  char ckpt[600];
  snprintf(ckpt, sizeof ckpt, "%s/c.safetensors", dir);
  Run r = train(dir, 0, ckpt, (const char *[]){"--distributed", "--steps", "1", NULL});
  cr_expect_eq(r.status, 1, "%s%s", r.out, r.err);
  cr_expect(strstr(r.err, "--distributed: error: this dlc was built without MPI"), "%s", r.err);
  cr_expect_eq(access(ckpt, F_OK), -1, "nothing trained, nothing saved");
  run_free(&r);
  remove_dir(dir);
}
