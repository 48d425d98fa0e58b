/*
 * test_sections.c — named train sections (several losses, optimizers and
 * steps in one model) and inputs fed with noise.
 *
 *  - sections_step: a model with sections alpha (SGD with momentum, two
 *    steps a round) and beta (Adam, one), on the interpreter and the JIT:
 *    the steps go alpha, alpha, beta, alpha, alpha, beta; each step leaves
 *    the other section's parameters bit-identical and changes its own;
 *    beta's first step (the run's third) is Adam's t = 1, where every
 *    element moves by lr (a t of 3 would move it by about 0.64 lr); the
 *    checkpoint set holds both optimizers' state.  The interpreter and the
 *    JIT give the same losses (the noise input draws the same numbers).
 *  - sections_run: `dlc train` on npy files: the metrics CSV has a column
 *    per section's loss and each batch row fills its section's; a run of
 *    12 steps straight and one of 6 + --resume + 6 end with byte-identical
 *    checkpoints; `dlc check` lists each section's optimizer, steps and
 *    trainable parameters; --lr is refused with sections; a file bound to
 *    the noise input is refused, naming it; `--train` C has a step per
 *    section.
 *
 * The frontend's diagnostics for the syntax are golden tests in
 * tests/fixtures/diag/sections_*.dl (test_fe_diag.c).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver/trainer.h"
#include "runtime/rt.h"
#include "tests/memlog.h"
#include "tests/testutil.h"

static const char model_text[] =
    "model two\n"
    "input x: f32[N, 3]\n"
    "input z: f32[N, 2] = randn\n"
    "a1 = dense(x, 4)\n"
    "b1 = dense(z, 4)\n"
    "h = tanh(a1) + tanh(b1)\n"
    "head = dense(h, 1)\n"
    "output head\n"
    "train {\n"
    "  label y: f32[N, 1]\n"
    "  data = npy(\"x=x.npy,y=y.npy\")\n"
    "  batch = 4\n"
    "  epochs = 3\n"
    "  seed = 7\n"
    "  order = alternate(alpha=2, beta=1)\n"
    "}\n"
    "train alpha {\n"
    "  loss = mse_loss(head, y)\n"
    "  optimizer = sgd(lr=0.05, momentum=0.9)\n"
    "  params = [\"a*\", head]\n"
    "}\n"
    "train beta {\n"
    "  loss = mean(head * head)\n"
    "  optimizer = adam(lr=0.01)\n"
    "  params = b1\n"
    "}\n";

#define BETA_LR 0.01

/* --- helpers ------------------------------------------------------------------------ */

static void copy_set(RtTensorSet *dst, const RtTensorSet *src) {
  RtError err;
  rt_set_init(dst);
  for (int i = 0; i < src->count; i++)
    cr_assert_eq(rt_set_add_copy(dst, src->items[i].name, &src->items[i].t, &err), RT_OK);
}

static int is_beta(const char *name) { return !strncmp(name, "b1.", 3); }

/* Whether tensor name is a parameter (not optimizer state). */
static int is_param(const char *name) {
  return !strcmp(name, "a1.weight") || !strcmp(name, "a1.bias") || !strcmp(name, "b1.weight") ||
         !strcmp(name, "b1.bias") || !strcmp(name, "head.weight") || !strcmp(name, "head.bias");
}

typedef struct Run {
  Log l;
  Model m;
  Trainer t;
} Run;

static void run_open(Run *r, Backend be) {
  log_open(&r->l);
  cr_assert_eq(fe_load_string(&r->m, "two.dl", model_text, &r->l.d), 0, "%s", log_text(&r->l));
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&r->m, &cfg, &r->l.d), 0, "%s", log_text(&r->l));
  cfg.backend = be;
  cfg.nbinds = 0; /* trainer_step takes the batch itself */
  cr_assert_eq(trainer_init(&r->t, &r->m, &cfg, NULL, &r->l.d), 0, "%s", log_text(&r->l));
}

static void run_close(Run *r) {
  trainer_free(&r->t);
  fe_model_free(&r->m);
  log_close(&r->l);
}

static const float batch_x[12] = {0.5f, -1, 2, 1, 0.25f, -0.5f, -2, 1.5f, 0, 0.75f, -0.25f, 1};
static const float batch_y[4] = {1, -1, 0.5f, 2};

/* Checks step k of the run: which section stepped, what it changed. */
static double check_step(Run *r, int k, const char *be) {
  static const int want[6] = {0, 0, 1, 0, 0, 1}; /* alpha=2, beta=1 */
  int64_t nth;
  int s = trainer_section_of(&r->t, k, &nth);
  cr_assert_eq(s, want[k], "%s: step %d is section %d", be, k, s);
  RtTensorSet before;
  cr_assert_eq(trainer_sync(&r->t), 0);
  copy_set(&before, &r->t.tensors);
  double loss = NAN;
  cr_assert_eq(trainer_step(&r->t, 4, batch_x, batch_y, r->t.cfg.opt.lr, &loss, NULL), 0, "%s", log_text(&r->l));
  cr_assert_eq(trainer_sync(&r->t), 0);
  for (int i = 0; i < before.count; i++) {
    const char *name = before.items[i].name;
    if (!is_param(name)) continue;
    const RtTensor *a = &before.items[i].t, *b = rt_set_find(&r->t.tensors, name);
    int same = !memcmp(a->data, b->data, rt_tensor_nbytes(a));
    int mine = is_beta(name) == (s == 1);
    cr_expect(mine ? !same : same, "%s: step %d (%s) %s %s", be, k, s ? "beta" : "alpha",
              mine ? "left its own" : "changed the other section's", name);
    if (mine && s == 1 && nth == 0) { /* Adam at t = 1: |delta| = lr |g| / (|g| + eps) */
      int64_t n = (int64_t)(rt_tensor_nbytes(a) / sizeof(float)), full = 0;
      for (int64_t e = 0; e < n; e++) {
        double dp = fabs((double)((float *)b->data)[e] - ((float *)a->data)[e]);
        cr_expect(dp <= BETA_LR * 1.001, "%s: %s[%lld] moved %g > lr", be, name, (long long)e, dp);
        full += dp >= BETA_LR * 0.99;
      }
      cr_expect(full * 10 >= n * 9, "%s: only %lld of %lld elements of %s moved by lr: not Adam's first step", be,
                (long long)full, (long long)n, name);
    }
  }
  rt_set_free(&before);
  return loss;
}

Test(sections_step, alternate_and_touch_only_their_own_params, .timeout = 120) {
  double losses[2][6];
  const Backend bes[2] = {BACKEND_INTERP, BACKEND_JIT};
  for (int b = 0; b < 2; b++) {
    Run r;
    run_open(&r, bes[b]);
    for (int k = 0; k < 6; k++) losses[b][k] = check_step(&r, k, b ? "jit" : "interp");
    /* every optimizer's state is in the checkpoint set */
    const char *states[] = {"a1.weight.momentum_buffer", "head.bias.momentum_buffer", "b1.weight.exp_avg",
                            "b1.bias.exp_avg_sq"};
    for (size_t i = 0; i < sizeof states / sizeof *states; i++)
      cr_expect(rt_set_find(&r.t.tensors, states[i]), "no state tensor %s", states[i]);
    cr_expect(!rt_set_find(&r.t.tensors, "b1.weight.momentum_buffer"), "beta's params got alpha's optimizer state");
    run_close(&r);
  }
  for (int k = 0; k < 6; k++)
    cr_expect(tu_relerr(losses[1][k], losses[0][k], 1e-6) < 1e-5, "step %d: jit loss %g, interp %g", k, losses[1][k],
              losses[0][k]);
}

Test(sections_step, round_positions) {
  Run r;
  run_open(&r, BACKEND_INTERP);
  /* alpha=2, beta=1: steps 0..8 are a a b a a b a a b; each section counts its own */
  static const int sec[9] = {0, 0, 1, 0, 0, 1, 0, 0, 1};
  static const int64_t nth[9] = {0, 1, 0, 2, 3, 1, 4, 5, 2};
  for (int k = 0; k < 9; k++) {
    int64_t n;
    cr_expect_eq(trainer_section_of(&r.t, k, &n), sec[k], "step %d", k);
    cr_expect_eq(n, nth[k], "step %d: the section's own count %lld, not %lld", k, (long long)n, (long long)nth[k]);
  }
  run_close(&r);
}

/* --- dlc train, check ----------------------------------------------------------------- */

typedef struct Proc {
  int status;
  char *out, *err;
} Proc;

static Proc run_dlc(const char *dir, ...) {
  const char *argv[32] = {DLC_EXE};
  int argc = 1;
  va_list ap;
  va_start(ap, dir);
  for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
    cr_assert(argc < 31);
    argv[argc++] = a;
  }
  va_end(ap);
  char out[600], err[600];
  snprintf(out, sizeof out, "%s/stdout.txt", dir);
  snprintf(err, sizeof err, "%s/stderr.txt", dir);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 || chdir(dir) < 0) _exit(126);
    execv(DLC_EXE, (char *const *)argv);
    _exit(127);
  }
  int ws;
  cr_assert_eq(waitpid(pid, &ws, 0), pid);
  Proc p = {WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws), tu_read_file(out, NULL), tu_read_file(err, NULL)};
  cr_assert(p.out && p.err);
  return p;
}

static void proc_free(Proc *p) {
  free(p->out);
  free(p->err);
}

static void write_file(const char *dir, const char *name, const char *text) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(text, f);
  fclose(f);
}

/* 22 samples: 6 batches of 4 an epoch, the last one partial. */
static void write_data(const char *dir) {
  RtTensor x, y;
  RtError err;
  int64_t xs[2] = {22, 3}, ys[2] = {22, 1};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, xs, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_F32, 2, ys, &err), RT_OK);
  for (int i = 0; i < 22; i++) {
    for (int f = 0; f < 3; f++) ((float *)x.data)[i * 3 + f] = (float)((i * 7 + f * 5) % 11) / 5.0f - 1.0f;
    ((float *)y.data)[i] = (float)(i % 5) / 2.0f - 1.0f;
  }
  char px[600], py[600];
  snprintf(px, sizeof px, "%s/x.npy", dir);
  snprintf(py, sizeof py, "%s/y.npy", dir);
  cr_assert_eq(rt_npy_write(px, &x, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_npy_write(py, &y, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
}

static char *read_in(const char *dir, const char *name, size_t *len) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *s = tu_read_file(path, len);
  cr_assert(s, "no file %s", path);
  return s;
}

/* The fields of the CSV line at line (up to its newline) into f; their count. */
static int csv_fields(const char *line, char f[][32], int max) {
  int n = 0;
  for (const char *p = line; n < max;) {
    size_t len = strcspn(p, ",\n");
    snprintf(f[n++], 32, "%.*s", (int)(len < 31 ? len : 31), p);
    if (p[len] != ',') break;
    p += len + 1;
  }
  return n;
}

Test(sections_run, resume_is_bit_exact_and_metrics_name_sections, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  write_data(dir);
  write_file(dir, "two.dl", model_text);
  Proc p = run_dlc(dir, "train", "two.dl", "--steps", "12", "--save", "straight.st", "--metrics", "m.csv", NULL);
  cr_assert_eq(p.status, 0, "%s", p.err);
  cr_expect(strstr(p.out, "sections alpha (sgd, lr 0.05, 2 steps a round), then beta (adam, lr 0.01, 1 step a round)"),
            "%s", p.out);
  proc_free(&p);
  p = run_dlc(dir, "train", "two.dl", "--steps", "6", "--save", "halves.st", NULL);
  cr_assert_eq(p.status, 0, "%s", p.err);
  proc_free(&p);
  p = run_dlc(dir, "train", "two.dl", "--steps", "12", "--resume", "halves.st", "--save", "halves.st", NULL);
  cr_assert_eq(p.status, 0, "%s", p.err);
  proc_free(&p);
  size_t na, nb;
  char *a = read_in(dir, "straight.st", &na), *b = read_in(dir, "halves.st", &nb);
  cr_expect(na == nb && !memcmp(a, b, na), "12 steps straight and 6 + resume + 6 differ");
  const char *meta = "\"dlc.optimizer\":\"alpha=sgd,beta=adam\"";
  cr_expect(memmem(a, na, meta, strlen(meta)), "the metadata names each section's optimizer");
  cr_expect(memmem(a, na, "a1.weight.momentum_buffer", 25) && memmem(a, na, "b1.weight.exp_avg_sq", 20),
            "both optimizers' state");
  free(a);
  free(b);
  char *csv = read_in(dir, "m.csv", NULL);
  static const char header[] = "epoch,batch,step,train_loss,train_acc,val_loss,val_acc,lr,seconds,alpha_loss,beta_loss,"
                                "val_alpha_loss,val_beta_loss\n";
  cr_expect(!strncmp(csv, header, strlen(header)), "%s", csv);
  /* batch rows: steps 1 and 2 alpha's, 3 beta's (its column filled, alpha's empty) */
  const char *row3 = strstr(csv, "\n1,3,3,");
  cr_assert(row3, "%s", csv);
  char f[13][32];
  cr_assert_eq(csv_fields(row3 + 1, f, 13), 13, "%.80s", row3 + 1);
  cr_expect(!f[9][0] || !strcmp(f[9], "nan"), "step 3 is beta's: alpha's column empty: %s", f[9]);
  cr_expect(f[10][0] && strcmp(f[10], "nan"), "step 3 has beta's loss: '%s'", f[10]);
  free(csv);
}

/* model_text with text inserted after the line that starts with after. */
static char *model_with(const char *after, const char *text) {
  const char *at = strstr(model_text, after);
  cr_assert(at);
  at = strchr(at, '\n') + 1;
  size_t n = strlen(model_text) + strlen(text) + 1;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s%s", (int)(at - model_text), model_text, text, at);
  return out;
}

/* Validation, the test line and the metrics give every section's loss;
 * a section's own schedule sets its rate (beta halves every epoch, alpha
 * keeps the rate of its optimizer). */
Test(sections_run, every_section_validates_and_schedules_its_own_rate, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  write_data(dir);
  char *text = model_with("  params = b1", "  schedule = step(step_size=1, gamma=0.5)\n");
  write_file(dir, "two.dl", text);
  free(text);
  Proc p = run_dlc(dir, "check", "two.dl", NULL);
  cr_expect(strstr(p.out, "  beta: adam, 1 step a round, schedule step, 12 trainable parameters"), "%s", p.out);
  proc_free(&p);
  p = run_dlc(dir, "train", "two.dl", "--epochs", "2", "--val-split", "0.25", "--metrics", "m.csv", NULL);
  cr_assert_eq(p.status, 0, "%s", p.err);
  cr_expect(strstr(p.out, "epoch 2/2: alpha loss ") && strstr(p.out, ", val alpha loss ") &&
            strstr(p.out, ", val beta loss "), "%s", p.out);
  proc_free(&p);
  char *csv = read_in(dir, "m.csv", NULL), f[13][32];
  int epoch_rows = 0, beta_rows = 0, steps = 0;
  for (const char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
    cr_assert_eq(csv_fields(line + 1, f, 13), 13, "%.80s", line + 1);
    double lr = atof(f[7]);
    int epoch = atoi(f[0]), is_beta = f[10][0] && strcmp(f[10], "nan") && !(f[9][0] && strcmp(f[9], "nan"));
    if (!strcmp(f[1], "0")) { /* an epoch's row: each section's validation loss */
      epoch_rows++;
      cr_expect(f[11][0] && f[12][0] && strcmp(f[11], "nan") && strcmp(f[12], "nan") && strcmp(f[11], f[12]),
                "epoch %d: val_alpha_loss '%s', val_beta_loss '%s'", epoch, f[11], f[12]);
      cr_expect(!strcmp(f[5], f[11]), "val_loss is the first section's: %s vs %s", f[5], f[11]);
    } else if ((++steps, is_beta)) {
      beta_rows++;
      cr_expect(fabs(lr - (epoch == 1 ? 0.01 : 0.005)) < 1e-12, "beta step in epoch %d at lr %g", epoch, lr);
    } else {
      cr_expect(fabs(lr - 0.05) < 1e-12, "alpha step in epoch %d at lr %g", epoch, lr);
    }
  }
  cr_expect_eq(epoch_rows, 2, "%s", csv);
  cr_expect_eq(beta_rows, steps / 3, "%s", csv); /* alternate(alpha=2, beta=1): steps 3, 6, ... */
  free(csv);
}

Test(sections_run, check_lists_each_sections_parameters, .timeout = 60) {
  const char *dir = tu_scratch_dir();
  write_file(dir, "two.dl", model_text);
  Proc p = run_dlc(dir, "check", "two.dl", NULL);
  cr_assert_eq(p.status, 0, "%s", p.err);
  cr_expect(strstr(p.out, "  alpha: sgd, 2 steps a round, 21 trainable parameters: a1.weight, a1.bias, head.weight, "
                          "head.bias\n"), "%s", p.out);
  cr_expect(strstr(p.out, "  beta: adam, 1 step a round, 12 trainable parameters: b1.weight, b1.bias\n"), "%s", p.out);
  proc_free(&p);
}

Test(sections_run, refused_flags_and_files, .timeout = 60) {
  const char *dir = tu_scratch_dir();
  write_data(dir);
  write_file(dir, "two.dl", model_text);
  Proc p = run_dlc(dir, "train", "two.dl", "--lr", "0.1", NULL);
  cr_expect_eq(p.status, 2);
  cr_expect(strstr(p.err, "--lr: error: the model has 2 train sections, each with its own optimizer"), "%s", p.err);
  proc_free(&p);
  p = run_dlc(dir, "train", "two.dl", "--data", "npy:x=x.npy,y=y.npy,z=x.npy", NULL);
  cr_expect_eq(p.status, 1);
  cr_expect(strstr(p.err, "x.npy: error: input 'z' is fed with noise (= randn) while training, not from a file"), "%s",
            p.err);
  proc_free(&p);
}

Test(sections_run, train_c_has_a_step_per_section, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_file(dir, "two.dl", model_text);
  Proc p = run_dlc(dir, "two.dl", "--train", "-o", "two_train.c", NULL);
  cr_assert_eq(p.status, 0, "%s", p.err);
  proc_free(&p);
  char *h = read_in(dir, "two_train.h", NULL);
  cr_expect(strstr(h, "train_step_alpha(") && strstr(h, "train_step_beta(") && strstr(h, "eval_step("), "%s", h);
  cr_expect(!strstr(h, "float *z"), "the noise input is drawn inside the steps, not an argument: %s", h);
  free(h);
}
