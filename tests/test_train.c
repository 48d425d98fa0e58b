/*
 * test_train.c — training: the optimizers, schedules and frozen layers
 * against PyTorch (tests/fixtures/train, see its README), checkpoints, and
 * the `dlc train` command end to end.
 *
 *  - train_optim: every configuration of optimizers.txt, on the reference
 *    interpreter and on the C backend: tiny.dl from tiny.init, three
 *    trainer_step calls on (tiny.x, tiny.y); the three losses and, after
 *    trainer_sync, every parameter and every optimizer state tensor
 *    ("<param>.<state>") must match torch's to a relative error of 1e-4
 *    (absolute floor 1e-6), and the trainer must hold no state torch does
 *    not have.
 *  - train_schedule: each line of schedules.txt is written into a model's
 *    training section, read back by trainer_config, and rt_schedule_lr must
 *    give lr.NAME.npy (by epoch, cyclic by iteration) within 1e-9 relative.
 *  - train_frozen: `freeze fc1` leaves no optimizer step for fc1.* in the
 *    train graph, fc1 stays bit-identical to init, and the run matches
 *    tiny.frozen (both backends).
 *  - train_checkpoint: save/resume round trip (identical tensors, epoch,
 *    step, and the next step is bit-identical); `dlc train` resumed after 2
 *    epochs ends with a checkpoint byte-identical to 4 epochs straight;
 *    truncated files, flipped header bytes and wrong shapes give an error
 *    (naming the file or tensor), leave the trainer untouched, never crash,
 *    and `dlc train --resume BAD --save BAD` exits 1 without touching BAD.
 *  - dlc_train: runs on npy, csv and Fashion-MNIST-layout data (exit 0,
 *    metrics CSV with a header and a row per epoch, a summary line per
 *    epoch, a test line only when there is a test set), bad flags (exit 2,
 *    the message names the flag) and bad data files (exit 1, named).
 *
 * The data sets of the `dlc train` runs are written by the tests themselves
 * (rt_npy_write, from integer formulas), so there are no extra fixtures.
 * Everything is seeded; the checkpoint comparisons are bit for bit.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver/trainer.h"
#include "runtime/rt.h"
#include "tests/memlog.h"
#include "tests/testutil.h"

#define TRAIN(name) FIXTURE("train/" name)
#define OPT_CONFIGS 13 /* lines of optimizers.txt; train_optim checks the count */

/* --- helpers: diagnostics, files, models ------------------------------------- */

static RtTensor read_npy(const char *path) {
  RtTensor t;
  RtError err;
  cr_assert_eq(rt_npy_read(path, &t, &err), RT_OK, "%s", err.msg);
  return t;
}

static void read_st(const char *path, RtTensorSet *s) {
  RtError err;
  rt_set_init(s);
  cr_assert_eq(rt_safetensors_read(path, s, &err), RT_OK, "%s", err.msg);
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot write %s", path);
  cr_assert_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

/* text with the first `from` replaced by `to` (malloc'd). */
static char *replace_once(const char *text, const char *from, const char *to) {
  const char *at = strstr(text, from);
  cr_assert(at, "no '%s' in the model", from);
  size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  return out;
}

/* tiny.dl with extra lines added at the end of its training section
 * (malloc'd). */
static char *tiny_variant(const char *extra) {
  size_t len;
  char *src = tu_read_file(TRAIN("tiny.dl"), &len);
  cr_assert(src);
  char *close = strrchr(src, '}');
  cr_assert(close);
  size_t head = (size_t)(close - src), n = len + strlen(extra) + 2;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s\n%s", (int)head, src, extra, close);
  free(src);
  return out;
}

static void load_tiny(Model *m, const char *extra, Log *l) {
  if (!extra) {
    cr_assert_eq(fe_load_file(m, TRAIN("tiny.dl"), &l->d), 0, "%s", log_text(l));
    return;
  }
  char *text = tiny_variant(extra);
  cr_assert_eq(fe_load_string(m, "tiny.dl", text, &l->d), 0, "%s\n%s", text, log_text(l));
  free(text);
}

/* The fixture batch: tiny.x f32 [4, 6], tiny.y i64 [4]. */
typedef struct Batch {
  RtTensor x, y;
} Batch;

static Batch tiny_batch(void) {
  Batch b = {read_npy(TRAIN("tiny.x.npy")), read_npy(TRAIN("tiny.y.npy"))};
  cr_assert_eq(b.x.dtype, DT_F32);
  cr_assert_eq(b.y.dtype, DT_I64);
  return b;
}

static void batch_free(Batch *b) {
  rt_tensor_free(&b->x);
  rt_tensor_free(&b->y);
}

static int same_shape(const RtTensor *a, const RtTensor *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return 0;
  for (int k = 0; k < a->rank; k++)
    if (a->shape[k] != b->shape[k]) return 0;
  return 1;
}

/* Every tensor of want is in got with the same shape and values within
 * rtol (absolute floor 1e-6), and got has nothing else. */
static void expect_sets_near(RtTensorSet *got, RtTensorSet *want, double rtol, const char *what) {
  cr_expect_eq(got->count, want->count, "%s: the trainer has %d tensors, torch %d", what, got->count, want->count);
  for (int i = 0; i < got->count; i++)
    cr_expect(rt_set_find(want, got->items[i].name), "%s: '%s' is not in torch's state", what, got->items[i].name);
  for (int i = 0; i < want->count; i++) {
    const char *name = want->items[i].name;
    const RtTensor *w = &want->items[i].t, *g = rt_set_find(got, name);
    if (!g) {
      cr_expect(0, "%s: no tensor '%s'", what, name);
      continue;
    }
    if (!same_shape(g, w)) {
      cr_expect(0, "%s: '%s' has another shape or dtype than torch's", what, name);
      continue;
    }
    const float *a = g->data, *b = w->data;
    int64_t n = rt_tensor_numel(w), worst = -1;
    double worst_err = 0;
    for (int64_t k = 0; k < n; k++) {
      double e = tu_relerr(a[k], b[k], 1e-6);
      if (!(e <= worst_err) || worst < 0) worst_err = e, worst = k;
    }
    cr_expect(n == 0 || worst_err <= rtol, "%s: %s[%lld] = %.9g, torch %.9g (relative error %.3g)", what, name,
              (long long)worst, a[worst], b[worst], worst_err);
  }
}

/* got and want hold the same names with bit-identical data. */
static void expect_sets_equal(RtTensorSet *got, RtTensorSet *want, const char *what) {
  cr_expect_eq(got->count, want->count, "%s: %d tensors, want %d", what, got->count, want->count);
  for (int i = 0; i < want->count; i++) {
    const RtTensor *w = &want->items[i].t, *g = rt_set_find(got, want->items[i].name);
    cr_expect(g && same_shape(g, w) && memcmp(g->data, w->data, rt_tensor_nbytes(w)) == 0,
              "%s: '%s' differs", what, want->items[i].name);
  }
}

static void copy_set(RtTensorSet *dst, const RtTensorSet *src) {
  RtError err;
  rt_set_init(dst);
  for (int i = 0; i < src->count; i++) {
    RtTensor c = src->items[i].t;
    c.data = malloc(rt_tensor_nbytes(&c) + 1);
    memcpy(c.data, src->items[i].t.data, rt_tensor_nbytes(&c));
    cr_assert_eq(rt_set_add(dst, src->items[i].name, &c, &err), RT_OK, "%s", err.msg);
  }
}

/* Removes a scratch directory of plain files (left behind when a test
 * fails, for a look at what it wrote). */
static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  char path[1024];
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

static const char *backend_name(Backend b) { return b == BACKEND_C ? "c" : b == BACKEND_JIT ? "jit" : "interp"; }

/* --- helpers: running the dlc executable ------------------------------------------ */

typedef struct Proc {
  int status;         /* exit code, or -signal */
  char *out, *err;    /* what it printed */
} Proc;

/* Runs `dlc ARGS...` (NULL-terminated) with stdout and stderr captured in
 * files under dir. */
static Proc run_dlc(const char *dir, ...) {
  const char *argv[48] = {DLC_EXE};
  int argc = 1;
  va_list ap;
  va_start(ap, dir);
  for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
    cr_assert(argc < 47);
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
    if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(126);
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

static int count_lines_starting(const char *text, const char *prefix) {
  int n = 0;
  for (const char *s = text; s && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL)
    n += strncmp(s, prefix, strlen(prefix)) == 0;
  return n;
}

/* A data set for tiny.dl (6 features, classes 0..2) that a batch of 4 does
 * not divide, so the last batch is partial and the shuffle matters.  The
 * class shifts one feature, so the model has something to learn. */
static void write_blobs(const char *dir, int64_t n, int64_t feats, const char *xname, const char *yname) {
  RtTensor x, y;
  RtError err;
  int64_t xs[2] = {n, feats};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, xs, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, &n, &err), RT_OK);
  for (int64_t s = 0; s < n; s++) {
    int64_t c = s * 7 % 3;
    ((int64_t *)y.data)[s] = c;
    for (int64_t f = 0; f < feats; f++)
      ((float *)x.data)[s * feats + f] = (float)((s * 37 + f * 11) % 17) / 8.0f - 1.0f + (f == c ? 2.0f : 0.0f);
  }
  char px[600], py[600];
  snprintf(px, sizeof px, "%s/%s", dir, xname);
  snprintf(py, sizeof py, "%s/%s", dir, yname);
  cr_assert_eq(rt_npy_write(px, &x, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_npy_write(py, &y, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
}

/* --- optimizers vs PyTorch ------------------------------------------------------------ */

typedef struct OptCase {
  char name[32];
  OptimSpec opt;
} OptCase;

/* Reads optimizers.txt: NAME OPTIMIZER lr=X key=value ... */
static int read_opt_cases(OptCase *cases, int max) {
  char *text = tu_read_file(TRAIN("optimizers.txt"), NULL), *save_line = NULL;
  cr_assert(text);
  int n = 0;
  for (char *line = strtok_r(text, "\n", &save_line); line; line = strtok_r(NULL, "\n", &save_line)) {
    char *save = NULL, *name = strtok_r(line, " \t", &save), *kind = strtok_r(NULL, " \t", &save);
    if (!name) continue;
    cr_assert(kind && n < max, "optimizers.txt: bad line '%s'", name);
    OptCase *c = &cases[n++];
    snprintf(c->name, sizeof c->name, "%s", name);
    int k = 0;
    while (k < OPT_COUNT && strcmp(pass_optim_names[k], kind)) k++;
    cr_assert(k < OPT_COUNT, "optimizers.txt: unknown optimizer '%s'", kind);
    char *kv[16];
    int nkv = 0;
    double lr = -1;
    for (char *tok; (tok = strtok_r(NULL, " \t", &save)) != NULL && nkv < 16;) kv[nkv++] = tok;
    for (int i = 0; i < nkv; i++)
      if (!strncmp(kv[i], "lr=", 3)) lr = strtod(kv[i] + 3, NULL);
    cr_assert(lr > 0, "%s: no lr", name);
    trainer_optim_defaults(&c->opt, (OptKind)k, lr);
    for (int i = 0; i < nkv; i++) {
      char *eq = strchr(kv[i], '=');
      cr_assert(eq, "%s: '%s' is not key=value", name, kv[i]);
      *eq = 0;
      double v = strtod(eq + 1, NULL);
      if (!strcmp(kv[i], "lr")) continue;
      if (!strcmp(kv[i], "alpha")) {
        c->opt.alpha = v;
        continue;
      }
      int h = ir_attr_hp_index(kv[i]);
      cr_assert(h >= 0, "%s: unknown hyperparameter '%s'", name, kv[i]);
      c->opt.hp[h] = v;
    }
  }
  free(text);
  return n;
}

static void run_opt_case(const OptCase *c, Backend be) {
  Log l;
  log_open(&l);
  Model m;
  load_tiny(&m, NULL, &l);
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &l.d), 0, "%s", log_text(&l));
  cfg.opt = c->opt;
  cfg.batch = 4;
  cfg.backend = be;
  memset(&cfg.sched, 0, sizeof cfg.sched);
  cfg.sched.kind = SCHED_CONSTANT;
  cfg.sched.base_lr = c->opt.lr;
  RtTensorSet init, want;
  read_st(TRAIN("tiny.init.safetensors"), &init);
  Trainer t;
  cr_assert_eq(trainer_init(&t, &m, &cfg, &init, &l.d), 0, "%s (%s): %s", c->name, backend_name(be), log_text(&l));

  Batch b = tiny_batch();
  char path[256], what[64];
  snprintf(what, sizeof what, "%s (%s)", c->name, backend_name(be));
  snprintf(path, sizeof path, TRAIN("tiny.opt.%s.loss.npy"), c->name);
  RtTensor want_loss = read_npy(path);
  cr_assert_eq(rt_tensor_numel(&want_loss), 3);
  for (int i = 0; i < 3; i++) {
    double loss = NAN, lr = rt_schedule_lr(&cfg.sched, 0, i);
    cr_assert_eq(trainer_step(&t, 4, b.x.data, b.y.data, lr, &loss, NULL), 0, "%s: %s", what, log_text(&l));
    double w = ((float *)want_loss.data)[i];
    cr_expect(tu_relerr(loss, w, 1e-6) <= 1e-4, "%s: loss before step %d = %.9g, torch %.9g", what, i + 1, loss, w);
  }
  cr_expect_eq(t.step, 3);
  cr_assert_eq(trainer_sync(&t), 0, "%s", log_text(&l));
  snprintf(path, sizeof path, TRAIN("tiny.opt.%s.safetensors"), c->name);
  read_st(path, &want);
  expect_sets_near(&t.tensors, &want, 1e-4, what);

  rt_set_free(&want);
  rt_tensor_free(&want_loss);
  batch_free(&b);
  trainer_free(&t);
  rt_set_free(&init);
  fe_model_free(&m);
  log_close(&l);
}

Test(train_optim, fixture_has_every_configuration) {
  OptCase cases[32];
  cr_assert_eq(read_opt_cases(cases, 32), OPT_CONFIGS,
               "optimizers.txt changed: update OPT_CONFIGS and the parameter list of train_optim");
}

typedef struct OptParam {
  int index;
  Backend backend;
} OptParam;

#define BOTH(i) {i, BACKEND_INTERP}, {i, BACKEND_C}, {i, BACKEND_JIT}

ParameterizedTestParameters(train_optim, matches_pytorch) {
  static OptParam params[] = {BOTH(0), BOTH(1), BOTH(2), BOTH(3), BOTH(4),  BOTH(5), BOTH(6),
                              BOTH(7), BOTH(8), BOTH(9), BOTH(10), BOTH(11), BOTH(12)};
  return cr_make_param_array(OptParam, params, sizeof params / sizeof params[0]);
}

ParameterizedTest(OptParam *p, train_optim, matches_pytorch, .timeout = 120) {
  OptCase cases[32];
  int n = read_opt_cases(cases, 32);
  cr_assert(p->index < n);
  run_opt_case(&cases[p->index], p->backend);
}

/* --- schedules ---------------------------------------------------------------------------- */

/* Each line of schedules.txt becomes `schedule = KIND(k=v, ...)` in tiny's
 * training section (whose sgd has lr 0.1, the base lr of the fixture), so
 * the frontend, trainer_config and rt_schedule_lr are checked together. */
Test(train_schedule, matches_pytorch) {
  char *text = tu_read_file(TRAIN("schedules.txt"), NULL), *save_line = NULL;
  cr_assert(text);
  int seen = 0;
  for (char *line = strtok_r(text, "\n", &save_line); line; line = strtok_r(NULL, "\n", &save_line)) {
    char *save = NULL, *name = strtok_r(line, " \t", &save), *kind = strtok_r(NULL, " \t", &save);
    if (!name) continue;
    cr_assert(kind);
    char call[256];
    int len = snprintf(call, sizeof call, "schedule = %s(", kind);
    const char *sep = "";
    for (char *tok; (tok = strtok_r(NULL, " \t", &save)) != NULL; sep = ", ")
      len += snprintf(call + len, sizeof call - (size_t)len, "%s%s", sep, tok);
    snprintf(call + len, sizeof call - (size_t)len, ")");

    Log l;
    log_open(&l);
    Model m;
    load_tiny(&m, call, &l);
    TrainConfig cfg;
    cr_assert_eq(trainer_config(&m, &cfg, &l.d), 0, "%s", log_text(&l));
    char path[256];
    snprintf(path, sizeof path, TRAIN("lr.%s.npy"), name);
    RtTensor want = read_npy(path);
    cr_assert_eq(want.dtype, DT_F64);
    int cyclic = !strcmp(kind, "cyclic");
    for (int64_t e = 0; e < rt_tensor_numel(&want); e++) {
      /* the other counter is set to nonsense: it must not matter */
      double lr = cyclic ? rt_schedule_lr(&cfg.sched, e / 5, e) : rt_schedule_lr(&cfg.sched, e, 7 * e + 3);
      double w = ((double *)want.data)[e];
      cr_expect(tu_relerr(lr, w, 1e-12) <= 1e-9, "%s (%s): lr at %s %lld = %.17g, torch %.17g", name, call,
                cyclic ? "iteration" : "epoch", (long long)e, lr, w);
    }
    rt_tensor_free(&want);
    fe_model_free(&m);
    log_close(&l);
    seen++;
  }
  cr_expect_eq(seen, 5, "schedules.txt has %d lines", seen);
  free(text);
}

/* --- frozen layer ------------------------------------------------------------------------ */

static int is_step(OpKind op) {
  return op == OP_SGD_STEP || op == OP_ADAM_STEP || op == OP_RMSPROP_STEP || op == OP_ADAGRAD_STEP;
}

static void run_frozen(Backend be) {
  Log l;
  log_open(&l);
  Model m;
  load_tiny(&m, "  freeze fc1", &l);
  int frozen = 0;
  for (int i = 0; i < m.g.nnodes; i++)
    if (m.g.nodes[i].op == OP_PARAM) {
      int fc1 = !strncmp(m.g.nodes[i].name, "fc1.", 4);
      cr_expect_eq(m.g.nodes[i].frozen, fc1, "%s: frozen = %d", m.g.nodes[i].name, m.g.nodes[i].frozen);
      frozen += m.g.nodes[i].frozen;
    }
  cr_expect_eq(frozen, 2);
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &l.d), 0, "%s", log_text(&l));
  cr_assert_eq(cfg.opt.kind, OPT_SGD);
  cr_assert_eq(cfg.opt.lr, 0.1);
  cfg.backend = be;
  RtTensorSet init, want;
  read_st(TRAIN("tiny.init.safetensors"), &init);
  Trainer t;
  cr_assert_eq(trainer_init(&t, &m, &cfg, &init, &l.d), 0, "%s", log_text(&l));

  int steps = 0;
  for (int i = 0; i < t.tg.nnodes; i++) {
    const Node *n = &t.tg.nodes[i];
    cr_expect(n->op != OP_STATE, "state '%s' in a plain sgd graph", n->name);
    if (!is_step(n->op)) continue;
    const Node *p = &t.tg.nodes[n->in[0]];
    cr_expect_eq(p->op, OP_PARAM);
    cr_expect(strncmp(p->name, "fc1.", 4) != 0, "the train graph steps frozen '%s'", p->name);
    steps++;
  }
  cr_expect_eq(steps, 2, "%d step nodes, want 2 (fc2.weight, fc2.bias)", steps);

  Batch b = tiny_batch();
  RtTensor want_loss = read_npy(TRAIN("tiny.frozen.loss.npy"));
  for (int i = 0; i < 3; i++) {
    double loss = NAN;
    cr_assert_eq(trainer_step(&t, 4, b.x.data, b.y.data, 0.1, &loss, NULL), 0, "%s", log_text(&l));
    double w = ((float *)want_loss.data)[i];
    cr_expect(tu_relerr(loss, w, 1e-6) <= 1e-4, "%s: loss before step %d = %.9g, torch %.9g", backend_name(be), i + 1,
              loss, w);
  }
  cr_assert_eq(trainer_sync(&t), 0, "%s", log_text(&l));
  read_st(TRAIN("tiny.frozen.safetensors"), &want);
  expect_sets_near(&t.tensors, &want, 1e-4, backend_name(be));
  const char *fc1[] = {"fc1.weight", "fc1.bias"};
  for (int k = 0; k < 2; k++) {
    RtTensor *g = rt_set_find(&t.tensors, fc1[k]), *i0 = rt_set_find(&init, fc1[k]);
    cr_assert(g && i0);
    cr_expect(memcmp(g->data, i0->data, rt_tensor_nbytes(i0)) == 0, "%s: frozen %s moved", backend_name(be), fc1[k]);
  }

  rt_set_free(&want);
  rt_tensor_free(&want_loss);
  batch_free(&b);
  trainer_free(&t);
  rt_set_free(&init);
  fe_model_free(&m);
  log_close(&l);
}

Test(train_frozen, interp_matches_pytorch) { run_frozen(BACKEND_INTERP); }
Test(train_frozen, c_matches_pytorch, .timeout = 120) { run_frozen(BACKEND_C); }
Test(train_frozen, jit_matches_pytorch, .timeout = 120) { run_frozen(BACKEND_JIT); }

/* --- checkpoints: in process --------------------------------------------------------------- */

/* A trainer of tiny with optimizer kind (lr 0.01) and seed 5, from
 * tiny.init when from_fixture, else from the seed. */
typedef struct Fixture {
  Log l;
  Model m;
  Trainer t;
  Batch b;
} Fixture;

static void fixture_open(Fixture *f, Backend be, OptKind kind, int from_fixture) {
  log_open(&f->l);
  load_tiny(&f->m, NULL, &f->l);
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&f->m, &cfg, &f->l.d), 0, "%s", log_text(&f->l));
  trainer_optim_defaults(&cfg.opt, kind, 0.01);
  cfg.backend = be;
  cfg.seed = 5;
  RtTensorSet init;
  read_st(TRAIN("tiny.init.safetensors"), &init);
  cr_assert_eq(trainer_init(&f->t, &f->m, &cfg, from_fixture ? &init : NULL, &f->l.d), 0, "%s", log_text(&f->l));
  rt_set_free(&init);
  f->b = tiny_batch();
}

static double fixture_step(Fixture *f) {
  double loss = NAN;
  cr_assert_eq(trainer_step(&f->t, 4, f->b.x.data, f->b.y.data, 0.01, &loss, NULL), 0, "%s", log_text(&f->l));
  return loss;
}

static void fixture_close(Fixture *f) {
  batch_free(&f->b);
  trainer_free(&f->t);
  fe_model_free(&f->m);
  log_close(&f->l);
}

static void roundtrip(Backend be) {
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/ck.safetensors", dir);
  Fixture a, b;
  fixture_open(&a, be, OPT_ADAM, 1);
  fixture_step(&a);
  fixture_step(&a);
  a.t.epoch = 1;
  cr_assert_eq(trainer_save(&a.t, path), 0, "%s", log_text(&a.l));

  fixture_open(&b, be, OPT_ADAM, 0);
  cr_assert_eq(trainer_resume(&b.t, path), 0, "%s", log_text(&b.l));
  cr_expect_eq(b.t.epoch, 1);
  cr_expect_eq(b.t.step, 2);
  cr_assert_eq(trainer_sync(&b.t), 0); /* C: what the module holds now */
  expect_sets_equal(&b.t.tensors, &a.t.tensors, "resumed");
  cr_expect_eq(a.t.tensors.count, 12, "4 params + exp_avg and exp_avg_sq each");

  /* and the next step is the same step */
  double la = fixture_step(&a), lb = fixture_step(&b);
  cr_expect_eq(la, lb, "%s: loss after resume %.9g, uninterrupted %.9g", backend_name(be), lb, la);
  cr_assert_eq(trainer_sync(&a.t), 0);
  cr_assert_eq(trainer_sync(&b.t), 0);
  expect_sets_equal(&b.t.tensors, &a.t.tensors, "one step after resuming");
  fixture_close(&a);
  fixture_close(&b);
  remove_dir(dir);
}

Test(train_checkpoint, roundtrip_interp) { roundtrip(BACKEND_INTERP); }
Test(train_checkpoint, roundtrip_c, .timeout = 120) { roundtrip(BACKEND_C); }
Test(train_checkpoint, roundtrip_jit, .timeout = 120) { roundtrip(BACKEND_JIT); }

/* Saves a checkpoint of f to dir/name; returns its bytes (malloc'd). */
static char *save_bytes(Fixture *f, const char *dir, const char *name, size_t *len) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert_eq(trainer_save(&f->t, path), 0, "%s", log_text(&f->l));
  char *bytes = tu_read_file(path, len);
  cr_assert(bytes);
  return bytes;
}

/* Resuming from path fails with a message naming the file, and the
 * trainer is as it was. */
static void expect_resume_fails(Fixture *f, RtTensorSet *before, const char *path, const char *needle,
                                const char *what) {
  fflush(f->l.f);
  size_t at = f->l.len;
  f->l.d.nerrors = 0; /* Diags goes quiet after max_errors */
  int64_t epoch = f->t.epoch, step = f->t.step;
  int rc = trainer_resume(&f->t, path);
  const char *msg = log_text(&f->l) + at;
  cr_expect_eq(rc, -1, "%s: resume succeeded", what);
  if (rc != -1) return;
  cr_expect(strstr(msg, needle) != NULL, "%s: the message does not name '%s': %s", what, needle, msg);
  cr_expect_eq(f->t.epoch, epoch);
  cr_expect_eq(f->t.step, step);
  expect_sets_equal(&f->t.tensors, before, what);
}

Test(train_checkpoint, truncated_file_is_an_error) {
  const char *dir = tu_scratch_dir();
  Fixture f;
  fixture_open(&f, BACKEND_INTERP, OPT_ADAM, 1);
  fixture_step(&f);
  size_t len;
  char *bytes = save_bytes(&f, dir, "good.safetensors", &len);
  uint64_t hlen = 0;
  for (int k = 7; k >= 0; k--) hlen = hlen << 8 | (unsigned char)bytes[k];
  cr_assert(8 + hlen < len);
  fixture_step(&f); /* the trainer moves on: a failed resume must not touch it */
  RtTensorSet before;
  copy_set(&before, &f.t.tensors);
  size_t cuts[] = {0, 1, 7, 8, 9, 8 + hlen / 2, 8 + hlen - 1, 8 + hlen, 8 + hlen + 1, 8 + hlen + 4,
                   (8 + hlen + len) / 2, len - 4, len - 1};
  char path[600];
  snprintf(path, sizeof path, "%s/cut.safetensors", dir);
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    write_bytes(path, bytes, cuts[i]);
    char what[64];
    snprintf(what, sizeof what, "cut at %zu of %zu bytes", cuts[i], len);
    expect_resume_fails(&f, &before, path, "cut.safetensors", what);
  }
  snprintf(path, sizeof path, "%s/none.safetensors", dir);
  expect_resume_fails(&f, &before, path, "none.safetensors", "a missing file");
  rt_set_free(&before);
  free(bytes);
  fixture_close(&f);
  remove_dir(dir);
}

/* XOR 0x80 on each byte of the length and of the tensor entries of the
 * header (after "__metadata__") must be an error; a plain sgd checkpoint,
 * so every entry is a parameter the model needs.  Digits of shapes and
 * offsets changed to another digit must be an error too.  Flips in the
 * metadata may or may not be accepted, but never crash. */
Test(train_checkpoint, flipped_header_byte_is_an_error) {
  const char *dir = tu_scratch_dir();
  Fixture f;
  fixture_open(&f, BACKEND_INTERP, OPT_SGD, 1);
  fixture_step(&f);
  size_t len;
  char *bytes = save_bytes(&f, dir, "good.safetensors", &len);
  uint64_t hlen = 0;
  for (int k = 7; k >= 0; k--) hlen = hlen << 8 | (unsigned char)bytes[k];
  cr_assert(8 + hlen < len);
  char *json = bytes + 8, *meta = strstr(json, "\"__metadata__\"");
  cr_assert(meta && meta < json + hlen);
  size_t meta_end = (size_t)(strchr(meta, '}') - bytes), json_end = 8 + hlen;
  while (bytes[json_end - 1] == ' ') json_end--;
  fixture_step(&f);
  RtTensorSet before;
  copy_set(&before, &f.t.tensors);
  char path[600], what[96];
  snprintf(path, sizeof path, "%s/flip.safetensors", dir);
  int accepted_meta = 0;
  for (size_t pos = 0; pos < 8 + hlen; pos++) {
    char keep = bytes[pos];
    int is_digit = keep >= '0' && keep <= '9';
    for (int variant = 0; variant < 1 + is_digit; variant++) {
      bytes[pos] = variant ? (char)('0' + (keep - '0' + 1) % 10) : (char)(keep ^ 0x80);
      write_bytes(path, bytes, len);
      snprintf(what, sizeof what, "header byte %zu '%c' -> 0x%02x", pos, keep >= 32 && keep < 127 ? keep : '?',
               (unsigned char)bytes[pos]);
      if (pos >= 8 && pos <= meta_end) {
        fflush(f.l.f);
        size_t at = f.l.len;
        f.l.d.nerrors = 0;
        if (trainer_resume(&f.t, path) == 0) {
          accepted_meta++;
          rt_set_free(&f.t.tensors); /* put the trainer back */
          copy_set(&f.t.tensors, &before);
        } else {
          cr_expect(strstr(log_text(&f.l) + at, "flip.safetensors") != NULL, "%s: message without the file name", what);
        }
      } else if (pos < json_end) {
        expect_resume_fails(&f, &before, path, "flip.safetensors", what);
      } else {
        /* the padding: anything but a space after the JSON is not JSON */
        expect_resume_fails(&f, &before, path, "flip.safetensors", what);
      }
    }
    bytes[pos] = keep;
  }
  cr_log_info("%d of %zu flips inside the metadata were accepted", accepted_meta, meta_end - 7);
  rt_set_free(&before);
  free(bytes);
  fixture_close(&f);
  remove_dir(dir);
}

/* Replaces tensor name in the checkpoint at src by one of another shape
 * and writes the result to dst. */
static void reshape_tensor(const char *src, const char *dst, const char *name, int rank, const int64_t *shape) {
  RtTensorSet s;
  RtError err;
  read_st(src, &s);
  RtTensor *t = rt_set_find(&s, name);
  cr_assert(t, "no '%s' in %s", name, src);
  rt_tensor_free(t);
  cr_assert_eq(rt_tensor_alloc(t, DT_F32, rank, shape, &err), RT_OK);
  cr_assert_eq(rt_safetensors_write(dst, &s, &err), RT_OK, "%s", err.msg);
  rt_set_free(&s);
}

Test(train_checkpoint, wrong_shape_names_the_tensor) {
  const char *dir = tu_scratch_dir();
  Fixture f;
  fixture_open(&f, BACKEND_INTERP, OPT_ADAM, 1);
  fixture_step(&f);
  size_t len;
  free(save_bytes(&f, dir, "good.safetensors", &len));
  fixture_step(&f);
  RtTensorSet before;
  copy_set(&before, &f.t.tensors);
  char good[600], bad[600];
  snprintf(good, sizeof good, "%s/good.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  struct {
    const char *name;
    int rank;
    int64_t shape[2];
  } cases[] = {
      {"fc2.bias", 1, {4}},                   /* a parameter, wrong size */
      {"fc1.weight", 2, {6, 5}},              /* a parameter, transposed */
      {"fc2.weight.exp_avg", 2, {3, 6}},      /* state, wrong size */
      {"fc1.weight.exp_avg_sq", 2, {6, 5}},   /* state, transposed: same size */
      {"fc2.bias.exp_avg", 2, {1, 3}},        /* state, another rank */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    reshape_tensor(good, bad, cases[i].name, cases[i].rank, cases[i].shape);
    char what[96];
    snprintf(what, sizeof what, "%s reshaped", cases[i].name);
    expect_resume_fails(&f, &before, bad, cases[i].name, what);
  }
  rt_set_free(&before);
  fixture_close(&f);
  remove_dir(dir);
}

/* --- checkpoints: through dlc train ---------------------------------------------------------- */

/* step decays by epoch; cyclic moves by iteration (so it needs dlc.step).
 * Parameters hold no pointers: Criterion runs each in a new process. */
static const char *const resume_schedules[] = {"step(step_size=1, gamma=0.5)",
                                               "cyclic(base_lr=0.001, max_lr=0.05, step_size_up=3)"};

typedef struct ResumeParam {
  Backend backend;
  int schedule;
} ResumeParam;

ParameterizedTestParameters(train_checkpoint, resume_equals_uninterrupted) {
  static ResumeParam params[] = {{BACKEND_C, 0}, {BACKEND_INTERP, 1}};
  return cr_make_param_array(ResumeParam, params, 2);
}

static char *metrics_losses(const char *path) {
  /* epoch,batch,step,train_loss of every row: seconds differ from run to run */
  char *csv = tu_read_file(path, NULL), *out = calloc(1, 8192), *save = NULL;
  cr_assert(csv && out);
  for (char *line = strtok_r(csv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *end = line;
    for (int k = 0; k < 4 && end; k++) end = strchr(end + 1, ',');
    if (end) strncat(out, line, (size_t)(end - line)), strcat(out, "\n");
  }
  free(csv);
  return out;
}

ParameterizedTest(ResumeParam *p, train_checkpoint, resume_equals_uninterrupted, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char model[600], data[1300], full[600], half[600], rest[600], mfull[600], mrest[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/model.dl", dir);
  char extra[256];
  const char *sched = resume_schedules[p->schedule];
  snprintf(extra, sizeof extra, "  schedule = %s\n  seed = 3\n  val_split = 0.2", sched);
  char *text = tiny_variant(extra), *adam = replace_once(text, "sgd(lr=0.1)", "adam(lr=0.01)");
  write_text(model, adam);
  free(text);
  free(adam);
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(full, sizeof full, "%s/full.safetensors", dir);
  snprintf(half, sizeof half, "%s/half.safetensors", dir);
  snprintf(rest, sizeof rest, "%s/rest.safetensors", dir);
  snprintf(mfull, sizeof mfull, "%s/full.csv", dir);
  snprintf(mrest, sizeof mrest, "%s/rest.csv", dir);
  const char *be = p->backend == BACKEND_C ? "--backend=c" : "--backend=interp";

  Proc a = run_dlc(dir, "train", model, "--data", data, be, "--epochs", "4", "--save", full, "--metrics", mfull, NULL);
  cr_assert_eq(a.status, 0, "straight run: %s%s", a.out, a.err);
  Proc b = run_dlc(dir, "train", model, "--data", data, be, "--epochs", "2", "--save", half, NULL);
  cr_assert_eq(b.status, 0, "first half: %s%s", b.out, b.err);
  Proc c = run_dlc(dir, "train", model, "--data", data, be, "--epochs", "4", "--resume", half, "--save", rest,
                   "--metrics", mrest, NULL);
  cr_assert_eq(c.status, 0, "resumed run: %s%s", c.out, c.err);
  cr_expect_eq(count_lines_starting(c.out, "epoch "), 2, "the resumed run trains epochs 3 and 4 only:\n%s", c.out);
  cr_expect(strstr(c.out, "epoch 3/4:") && strstr(c.out, "epoch 4/4:"), "%s", c.out);

  size_t lf = 0, lr = 0;
  char *bf = tu_read_file(full, &lf), *br = tu_read_file(rest, &lr);
  cr_assert(bf && br);
  cr_expect(lf == lr && memcmp(bf, br, lf) == 0, "%s, %s: the resumed checkpoint differs from the straight run's",
            backend_name(p->backend), sched);
  RtTensorSet sf, sr;
  read_st(full, &sf);
  read_st(rest, &sr);
  expect_sets_equal(&sr, &sf, "resumed vs straight");
  cr_expect_str_eq(rt_set_get_meta(&sr, "dlc.epoch"), "4");
  cr_expect_str_eq(rt_set_get_meta(&sr, "dlc.step"), "20", "18 samples in batches of 4: 5 steps per epoch");

  /* the resumed run's losses are the last two of the straight run's */
  char *lossf = metrics_losses(mfull), *lossr = metrics_losses(mrest), *third = strstr(lossf, "\n3,");
  char *rows = strchr(lossr, '\n');
  cr_assert(third && rows, "%s\n%s", lossf, lossr);
  cr_expect_str_eq(rows + 1, third + 1, "epoch,train_loss of the resumed run vs the straight run's");
  free(lossf);
  free(lossr);
  rt_set_free(&sf);
  rt_set_free(&sr);
  free(bf);
  free(br);
  proc_free(&a);
  proc_free(&b);
  proc_free(&c);
  remove_dir(dir);
}

/* A bad checkpoint given to `dlc train --resume BAD --save BAD`: exit 1, a
 * message naming BAD, no epoch trained, and BAD as it was. */
Test(train_checkpoint, dlc_train_refuses_bad_checkpoints, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char data[1300], good[600], bad[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(good, sizeof good, "%s/good.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  Proc p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--epochs", "1", "--save", good,
                   "--optimizer", "adam", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  proc_free(&p);
  size_t len;
  char *bytes = tu_read_file(good, &len);
  cr_assert(bytes);
  char *brace = strchr(bytes + 8, '{');
  cr_assert(brace);
  enum { CUT_HEADER, CUT_DATA, FLIP_BRACE, FLIP_LENGTH, WRONG_SHAPE, EMPTY, NCASES };
  static const char *const names[NCASES] = {"cut in the header", "cut in the data", "'{' flipped",
                                            "length flipped", "fc2.bias of another shape", "empty file"};
  for (int k = 0; k < NCASES; k++) {
    size_t n = len;
    if (k == CUT_HEADER) n = 40;
    if (k == CUT_DATA) n = len - 10;
    if (k == EMPTY) n = 0;
    if (k == FLIP_BRACE) *brace ^= 0x80;
    if (k == FLIP_LENGTH) bytes[3] ^= 0x80;
    if (k == WRONG_SHAPE) reshape_tensor(good, bad, "fc2.bias", 1, (int64_t[]){7});
    else write_bytes(bad, bytes, n);
    if (k == FLIP_BRACE) *brace ^= 0x80;
    if (k == FLIP_LENGTH) bytes[3] ^= 0x80;
    size_t before_len = 0;
    char *before = tu_read_file(bad, &before_len);
    Proc r = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--optimizer", "adam",
                     "--epochs", "3", "--resume", bad, "--save", bad, NULL);
    cr_expect_eq(r.status, 1, "%s: exit %d\n%s%s", names[k], r.status, r.out, r.err);
    cr_expect(strstr(r.err, "bad.safetensors") != NULL, "%s: stderr does not name the file: %s", names[k], r.err);
    if (k == WRONG_SHAPE) cr_expect(strstr(r.err, "fc2.bias") != NULL, "%s: %s", names[k], r.err);
    cr_expect_eq(count_lines_starting(r.out, "epoch "), 0, "%s: trained anyway:\n%s", names[k], r.out);
    size_t after_len = 0;
    char *after = tu_read_file(bad, &after_len);
    cr_expect(after && after_len == before_len && memcmp(after, before, after_len) == 0, "%s: the checkpoint was rewritten",
              names[k]);
    free(before);
    free(after);
    proc_free(&r);
  }
  /* --init checks shapes the same way */
  reshape_tensor(good, bad, "fc1.weight", 2, (int64_t[]){6, 5});
  Proc r = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--init", bad, NULL);
  cr_expect_eq(r.status, 1, "--init with a transposed weight: exit %d\n%s", r.status, r.err);
  cr_expect(strstr(r.err, "fc1.weight") != NULL, "%s", r.err);
  proc_free(&r);
  free(bytes);
  remove_dir(dir);
}

/* Writes the checkpoint src to dst with metadata key set to val (NULL:
 * removed), or with tensor drop removed. */
static void edit_checkpoint(const char *src, const char *dst, const char *key, const char *val, const char *drop) {
  RtTensorSet s;
  RtError err;
  read_st(src, &s);
  for (int i = 0; key && !val && i < s.nmeta; i++)
    if (!strcmp(s.meta_keys[i], key)) {
      free(s.meta_keys[i]), free(s.meta_vals[i]);
      s.meta_keys[i] = s.meta_keys[s.nmeta - 1], s.meta_vals[i] = s.meta_vals[s.nmeta - 1];
      s.nmeta--;
    }
  if (key && val) cr_assert_eq(rt_set_meta(&s, key, val, &err), RT_OK);
  for (int i = 0; drop && i < s.count; i++)
    if (!strcmp(s.items[i].name, drop)) {
      free(s.items[i].name), rt_tensor_free(&s.items[i].t);
      memmove(&s.items[i], &s.items[i + 1], sizeof s.items[0] * (size_t)(s.count - i - 1));
      s.count--;
    }
  cr_assert_eq(rt_safetensors_write(dst, &s, &err), RT_OK, "%s", err.msg);
  rt_set_free(&s);
}

/* Checkpoint metadata is checked before anything is used: epoch and step
 * whole non-negative numbers, the same model, optimizer and seed, every
 * optimizer state tensor there.  Each bad file: exit 1, a message naming
 * what is wrong, no epoch trained, the file as it was. */
Test(train_checkpoint, dlc_train_refuses_untrusted_metadata, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char data[1300], good[600], bad[600], other[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(good, sizeof good, "%s/good.safetensors", dir);
  snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
  Proc p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--epochs", "1", "--save", good,
                   "--optimizer", "adam", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  proc_free(&p);
  struct {
    const char *key, *val, *drop, *needle;
  } cases[] = {
      {"dlc.epoch", NULL, NULL, "no 'dlc.epoch' in the metadata"},
      {"dlc.epoch", "one", NULL, "metadata dlc.epoch: error: expected an integer"},
      {"dlc.epoch", "1x", NULL, "metadata dlc.epoch: error"},
      {"dlc.epoch", "-2", NULL, "metadata dlc.epoch: error"},
      {"dlc.step", "-1", NULL, "metadata dlc.step: error"},
      {"dlc.step", "", NULL, "metadata dlc.step: error"},
      {"dlc.step", "0", NULL, "damaged metadata: 0 steps for 1 epochs"},
      {"dlc.step", "99999999999999999999", NULL, "metadata dlc.step: error"},
      {"dlc.seed", NULL, NULL, "no 'dlc.seed'"},
      {"dlc.seed", "5", NULL, "trained with seed 5"},
      {"dlc.model", "resnet", NULL, "the checkpoint is of model 'resnet', not 'tiny'"},
      {"dlc.model", NULL, NULL, "no 'dlc.model'"},
      {"dlc.optimizer", "sgd", NULL, "holds sgd's optimizer state but this run uses adam"},
      {NULL, NULL, "fc1.weight.exp_avg_sq", "no tensor 'fc1.weight.exp_avg_sq'"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    edit_checkpoint(good, bad, cases[k].key, cases[k].val, cases[k].drop);
    size_t before_len = 0, after_len = 0;
    char *before = tu_read_file(bad, &before_len);
    Proc r = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--optimizer", "adam",
                     "--epochs", "3", "--resume", bad, "--save", bad, NULL);
    cr_expect_eq(r.status, 1, "case %zu: exit %d\n%s%s", k, r.status, r.out, r.err);
    cr_expect(strstr(r.err, "bad.safetensors") && strstr(r.err, cases[k].needle), "case %zu: no '%s' in:\n%s", k,
              cases[k].needle, r.err);
    cr_expect_eq(count_lines_starting(r.out, "epoch "), 0, "case %zu trained anyway:\n%s", k, r.out);
    char *after = tu_read_file(bad, &after_len);
    cr_expect(after && after_len == before_len && !memcmp(after, before, after_len), "case %zu: file rewritten", k);
    free(before), free(after);
    proc_free(&r);
  }
  /* the good file resumes, and --init takes the weights of a file without metadata */
  snprintf(other, sizeof other, "%s/weights.safetensors", dir);
  edit_checkpoint(good, other, "dlc.epoch", NULL, NULL);
  p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--optimizer", "adam", "--epochs",
              "2", "--resume", good, NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "epoch 2/2") && !strstr(p.out, "epoch 1/2"), "%s", p.out);
  proc_free(&p);
  p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--epochs", "1", "--init", other, NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  proc_free(&p);
  remove_dir(dir);
}

/* --- dlc train end to end ---------------------------------------------------------------- */

static int count_lines(const char *text) {
  int n = 0;
  for (const char *s = text; *s; s++) n += *s == '\n';
  return n;
}

Test(dlc_train, npy_with_validation_and_metrics, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char data[1300], metrics[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(metrics, sizeof metrics, "%s/m.csv", dir);
  Proc p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=c", "--epochs", "3", "--val-split", "0.25",
                   "--metrics", metrics, NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training tiny: 16 samples (6 validation, 0 test), batch 4, sgd, lr 0.1, c backend\n"),
            "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 3, "%s", p.out);
  for (int e = 1; e <= 3; e++) {
    char want[32];
    snprintf(want, sizeof want, "epoch %d/3: loss ", e);
    cr_expect(strstr(p.out, want), "no line '%s' in:\n%s", want, p.out);
  }
  cr_expect(strstr(p.out, ", val loss ") && strstr(p.out, ", val acc "), "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "test:"), 0, "no test set, no test line:\n%s", p.out);
  cr_expect_eq(count_lines(p.out), 4, "%s", p.out);
  cr_expect_str_eq(p.err, "", "stderr is not a terminal: no progress line");

  char *csv = tu_read_file(metrics, NULL);
  cr_assert(csv);
  cr_expect_eq(count_lines(csv), 16, "a header, 4 batch rows and an epoch row for each of 3 epochs:\n%s", csv);
  cr_expect_eq(strncmp(csv, "epoch,batch,step,train_loss,train_acc,val_loss,val_acc,lr,seconds\n", 66), 0, "%s", csv);
  int rows = 0, epochs = 0;
  double batch_sum = 0;
  for (const char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
    rows++;
    double v[9];
    int got = sscanf(line + 1, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                     &v[7], &v[8]);
    cr_expect_eq(got, 9, "row %d: %.40s", rows, line + 1);
    int epoch = (rows - 1) / 5 + 1, batch = (rows - 1) % 5 + 1;
    cr_expect(v[0] == epoch && v[1] == (batch == 5 ? 0 : batch), "row %d is epoch %d batch %d: %.60s", rows, epoch,
              batch == 5 ? 0 : batch, line + 1);
    cr_expect_eq(v[2], (epoch - 1) * 4 + (batch == 5 ? 4 : batch), "row %d: step %g", rows, v[2]);
    cr_expect(isfinite(v[3]) && v[3] > 0 && v[4] >= 0 && v[4] <= 1 && v[7] == 0.1, "row %d: %.80s", rows, line + 1);
    if (batch < 5) {
      cr_expect(isnan(v[5]) && isnan(v[6]), "a batch row has no validation figures: %.80s", line + 1);
      batch_sum += v[3] * 4;
      continue;
    }
    epochs++;
    cr_expect(isfinite(v[5]), "row %d: %.80s", rows, line + 1);
    cr_expect(fabs(v[3] - batch_sum / 16) < 1e-6, "the epoch's loss %g is the mean of its batches' %g", v[3],
              batch_sum / 16);
    batch_sum = 0;
  }
  cr_expect_eq(epochs, 3);
  free(csv);
  proc_free(&p);
  remove_dir(dir);
}

Test(dlc_train, csv_data_interp, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600], data[700];
  snprintf(model, sizeof model, "%s/csv5.dl", dir);
  /* last.csv: 6 rows of 3 features and a label in 0..4 */
  write_text(model, "model csv5\ninput x: f32[N, 3]\nlogits = dense(x, 5)\noutput logits\n"
                    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = adam(lr=0.01)\n"
                    "  batch = 4\n  epochs = 2\n}\n");
  snprintf(data, sizeof data, "csv:%s", FIXTURE("data/last.csv"));
  Proc p = run_dlc(dir, "train", model, "--data", data, "--backend=interp", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training csv5: 6 samples (0 validation, 0 test), batch 4, adam, lr 0.01, interp backend"),
            "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 2, "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "test:"), 0, "%s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

/* fashion_tiny is laid out like Debian's Fashion-MNIST: 4 training and 3
 * test images, so there is a final test line. */
Test(dlc_train, fashion_layout_has_a_test_line, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600];
  snprintf(model, sizeof model, "%s/fm.dl", dir);
  write_text(model, "model fm\ninput x: f32[N, 784]\nlogits = dense(x, 10)\noutput logits\n"
                    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.05)\n"
                    "  batch = 3\n  epochs = 2\n}\n");
  Proc p = run_dlc(dir, "train", model, "--data", FIXTURE("data/fashion_tiny"), "--backend=interp", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "4 samples (0 validation, 3 test)"), "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 2, "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "test: loss "), 1, "%s", p.out);
  cr_expect(strstr(p.out, "% (3 samples)\n"), "%s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

typedef struct BadRun {
  const char *args[6]; /* after `train MODEL --backend=interp` */
  int status;
  const char *needle;  /* in stderr */
} BadRun;

static void expect_bad_run(const char *dir, const char *model, const BadRun *r) {
  const char *a[6] = {0};
  char shown[256] = "";
  for (int k = 0; k < 6 && r->args[k]; k++) {
    a[k] = r->args[k];
    strncat(shown, " ", sizeof shown - strlen(shown) - 1);
    strncat(shown, a[k], sizeof shown - strlen(shown) - 1);
  }
  Proc p = run_dlc(dir, "train", model, "--backend=interp", a[0], a[1], a[2], a[3], a[4], a[5], NULL);
  cr_expect_eq(p.status, r->status, "dlc train%s: exit %d, want %d\n%s", shown, p.status, r->status, p.err);
  cr_expect(strstr(p.err, r->needle) != NULL, "dlc train%s: stderr lacks '%s':\n%s", shown, r->needle, p.err);
  cr_expect(strstr(p.err, "error") != NULL, "dlc train%s: %s", shown, p.err);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 0, "dlc train%s trained:\n%s", shown, p.out);
  proc_free(&p);
}

Test(dlc_train, bad_flags, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char data[1300], missing[1300], init[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(missing, sizeof missing, "npy:%s/missing.npy,%s/y.npy", dir, dir);
  snprintf(init, sizeof init, "%s/no-such-init.safetensors", dir);
  const BadRun runs[] = {
      {{"--data", data, "--epochs", "-1"}, 2, "--epochs"},
      {{"--data", data, "--epochs", "two"}, 2, "--epochs"},
      {{"--data", data, "--batch", "0"}, 2, "--batch"},
      {{"--data", data, "--lr", "0"}, 2, "--lr"},
      {{"--data", data, "--lr", "fast"}, 2, "--lr"},
      {{"--data", data, "--seed", "-3"}, 2, "--seed"},
      {{"--data", data, "--val-split", "1.5"}, 2, "--val-split"},
      {{"--data", data, "--optimizer", "foo"}, 2, "--optimizer"},
      {{"--data", data, "--backend=gpu"}, 2, "--backend"},
      {{"--data", data, "--frobnicate"}, 2, "--frobnicate"},
      {{"--data", data, "--epochs"}, 2, "--epochs"},
      {{"--data", "npy:only-one.npy"}, 2, "--data"},
      {{"--data", "parquet:x.parquet"}, 2, "--data"},
      {{"--data", missing}, 1, "missing.npy"},
      {{"--data", data, "--init", init}, 1, "no-such-init.safetensors"},
      {{"--data", data, "--resume", init}, 1, "no-such-init.safetensors"},
      {{"--data", data, "extra.dl"}, 2, "extra.dl"},
  };
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) expect_bad_run(dir, TRAIN("tiny.dl"), &runs[i]);

  Proc p = run_dlc(dir, "train", NULL);
  cr_expect_eq(p.status, 2, "no model: exit %d", p.status);
  cr_expect(strstr(p.err, "no model file"), "%s", p.err);
  proc_free(&p);
  p = run_dlc(dir, "train", "/nonexistent/model.dl", "--data", data, NULL);
  cr_expect_eq(p.status, 1, "a missing model: exit %d", p.status);
  cr_expect(strstr(p.err, "/nonexistent/model.dl"), "%s", p.err);
  proc_free(&p);
  p = run_dlc(dir, "train", "--help", NULL);
  cr_expect_eq(p.status, 0, "--help: exit %d", p.status);
  cr_expect(strstr(p.out, "usage: dlc train"), "%s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

/* What the loss compares against is said, never guessed from shapes: a
 * label typed like the input is refused without `target`; `target = t`
 * trains against the label file (targets all 5, so the first epoch's loss
 * is large), `target = x` against the input (an autoencoder, small loss). */
Test(dlc_train, a_label_typed_like_the_input_needs_a_target, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  RtTensor x, y;
  RtError err;
  int64_t shape[2] = {20, 4};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, shape, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_F32, 2, shape, &err), RT_OK);
  for (int i = 0; i < 80; i++) ((float *)x.data)[i] = (float)(i % 9) / 9, ((float *)y.data)[i] = 5;
  char path[600], model[600], data[1300];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK);
  snprintf(path, sizeof path, "%s/y.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK);
  rt_tensor_free(&x), rt_tensor_free(&y);
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(model, sizeof model, "%s/ae.dl", dir);
  const char *targets[3] = {"", "  target = t\n", "  target = x\n"};
  for (int k = 0; k < 3; k++) {
    char text[512];
    snprintf(text, sizeof text,
             "model ae\ninput x: f32[N, 4]\nout = dense(x, 4)\noutput out\ntrain {\n  label t: f32[N, 4]\n%s"
             "  loss = mse_loss(out, t)\n  optimizer = sgd(lr=1e-6)\n  batch = 5\n  epochs = 1\n}\n",
             targets[k]);
    write_text(model, text);
    Proc p = run_dlc(dir, "train", model, "--data", data, "--backend=interp", NULL);
    if (k == 0) {
      cr_expect_eq(p.status, 1, "no target: exit %d\n%s%s", p.status, p.out, p.err);
      cr_expect(strstr(p.err, "'target = x'") && strstr(p.err, "'target = t'"), "%s", p.err);
      cr_expect_eq(count_lines_starting(p.out, "epoch "), 0, "%s", p.out);
    } else {
      cr_expect_eq(p.status, 0, "%s: exit %d\n%s%s", targets[k], p.status, p.out, p.err);
      const char *at = strstr(p.out, "epoch 1/1: loss ");
      double loss = at ? strtod(at + strlen("epoch 1/1: loss "), NULL) : NAN;
      if (k == 1) cr_expect(loss > 10, "target = t: loss %g, wanted the labels' (5) error:\n%s", loss, p.out);
      else cr_expect(loss < 3, "target = x: loss %g, wanted the input's error:\n%s", loss, p.out);
    }
    proc_free(&p);
  }
  remove_dir(dir);
}

/* Runs dlc train on model with args (up to 6) and expects status and a
 * message in stderr, and the checkpoint ck untouched ("old"). */
static void expect_run_keeps(const char *dir, const char *model, const char *const *args, int status,
                             const char *needle, const char *ck) {
  Proc p = run_dlc(dir, "train", model, "--save", ck, args[0], args[1], args[2], args[3], args[4], args[5], NULL);
  cr_expect_eq(p.status, status, "%s %s: exit %d\n%s%s", model, args[1], p.status, p.out, p.err);
  cr_expect(strstr(p.err, needle) != NULL, "stderr lacks '%s':\n%s", needle, p.err);
  char *kept = tu_read_file(ck, NULL);
  cr_expect(kept && !strcmp(kept, "old"), "the checkpoint was overwritten");
  free(kept);
  proc_free(&p);
}

/* A run with nothing to train on, or whose loss stops being finite, is an
 * error (exit 1) and leaves an existing checkpoint as it was. */
Test(dlc_train, empty_or_diverging_runs_fail_and_keep_the_checkpoint, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_blobs(dir, 0, 6, "x0.npy", "y0.npy");
  char ck[600], data[1300], path[600];
  snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
  write_text(ck, "old");
  snprintf(data, sizeof data, "npy:%s/x0.npy,%s/y0.npy", dir, dir);
  const char *empty[6] = {"--data", data, "--backend=interp"};
  expect_run_keeps(dir, TRAIN("tiny.dl"), empty, 1, "the training set is empty", ck);
  /* regression targets of 1e20: the squared error overflows float */
  RtTensor x, t;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, (int64_t[]){10, 4}, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, 2, (int64_t[]){10, 2}, &err), RT_OK);
  for (int i = 0; i < 40; i++) ((float *)x.data)[i] = 1;
  for (int i = 0; i < 20; i++) ((float *)t.data)[i] = 1e20f;
  snprintf(path, sizeof path, "%s/xr.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK);
  snprintf(path, sizeof path, "%s/tr.npy", dir);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK);
  rt_tensor_free(&x), rt_tensor_free(&t);
  snprintf(data, sizeof data, "npy:%s/xr.npy,%s/tr.npy", dir, dir);
  const char *backends[3] = {"--backend=interp", "--backend=c", "--backend=jit"};
  for (int b = 0; b < 3; b++) {
    const char *diverge[6] = {"--data", data, backends[b], "--epochs", "2"};
    expect_run_keeps(dir, TRAIN("reg.dl"), diverge, 1, "training diverged", ck);
  }
  remove_dir(dir);
}

/* Every numeric flag is one whole, finite number in range; a batch larger
 * than the data set is clamped to it with a note; a step too large for
 * the compiled backends is refused naming the limit. */
Test(dlc_train, numbers_are_strict_and_the_batch_fits_the_data, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char data[1300];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  const BadRun runs[] = {
      {{"--data", data, "--batch", "99999999999999999999"}, 2, "--batch"},
      {{"--data", data, "--batch", "2147483648"}, 2, "--batch"},
      {{"--data", data, "--batch", " 4"}, 2, "--batch"},
      {{"--data", data, "--epochs", "1e3"}, 2, "--epochs"},
      {{"--data", data, "--epochs", ""}, 2, "--epochs"},
      {{"--data", data, "--lr", "inf"}, 2, "--lr"},
      {{"--data", data, "--lr", "nan"}, 2, "--lr"},
      {{"--data", data, "--lr", "1e400"}, 2, "--lr"},
      {{"--data", data, "--lr", "0.1x"}, 2, "--lr"},
      {{"--data", data, "--val-split", "nan"}, 2, "--val-split"},
      {{"--data", data, "--seed", "18446744073709551616"}, 2, "--seed"},
      {{"--data", data, "--augment", "crop=99999999999999999999"}, 2, "--augment crop"},
  };
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) expect_bad_run(dir, TRAIN("tiny.dl"), &runs[i]);
  Proc p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--batch", "1000000", "--epochs", "1", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.err, "note: batch 1000000 is larger than the 22 training samples; using 22"), "%s", p.err);
  cr_expect(strstr(p.out, "batch 22,") && strstr(p.out, "epoch 1/1: loss "), "%s", p.out);
  proc_free(&p);
  /* an outer product of 8192 features per sample: 2.7 GB of arena at batch 10 */
  char model[600];
  snprintf(model, sizeof model, "%s/big.dl", dir);
  write_text(model, "model big\ninput x: f32[N, 6]\nw = dense(x, 8192)\na = reshape(w, [N, 8192, 1])\n"
                    "b = reshape(w, [N, 1, 8192])\ns = mean(a * b, axes=[2])\nlogits = dense(s, 3)\noutput logits\n"
                    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.1)\n"
                    "  batch = 10\n}\n");
  for (int b = 0; b < 2; b++) {
    p = run_dlc(dir, "train", model, "--data", data, b ? "--backend=c" : "--backend=jit", NULL);
    cr_expect_eq(p.status, 1, "%s%s", p.out, p.err);
    cr_expect(strstr(p.err, "at batch 10 the compiled step needs") && strstr(p.err, "can address at most 1984 MiB"),
              "%s", p.err);
    proc_free(&p);
  }
  remove_dir(dir);
}

/* torch.optim's checks, for every way a configuration is made (the model
 * file, flags, the REPL, the API). */
Test(train_optim, hyperparameters_are_checked_as_torch_does) {
  struct {
    OptKind kind;
    const char *key;
    double v;
    int ok;
  } cases[] = {
      {OPT_SGD, "momentum", 0.9, 1},      {OPT_SGD, "momentum", -0.1, 0},   {OPT_SGD, "weight_decay", -1, 0},
      {OPT_SGD, "nesterov", 1, 0},        {OPT_ADAM, "beta1", 1, 0},        {OPT_ADAM, "beta2", -0.5, 0},
      {OPT_ADAM, "beta2", 0.999, 1},      {OPT_ADAMW, "eps", -1e-8, 0},     {OPT_ADAMW, "eps", NAN, 0},
      {OPT_RMSPROP, "momentum", INFINITY, 0}, {OPT_ADAGRAD, "lr_decay", -1, 0}, {OPT_ADAGRAD, "eps", 0, 1},
  };
  Diags d;
  diag_init(&d, stderr);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    OptimSpec o;
    trainer_optim_defaults(&o, cases[i].kind, 0.1);
    o.hp[ir_attr_hp_index(cases[i].key)] = cases[i].v;
    cr_expect_eq(trainer_check_optim(&o, &d) == 0, cases[i].ok, "%s %s=%g", pass_optim_names[cases[i].kind],
                 cases[i].key, cases[i].v);
  }
  OptimSpec o;
  trainer_optim_defaults(&o, OPT_SGD, 0.1);
  o.hp[HP_NESTEROV] = 1, o.hp[HP_MOMENTUM] = 0.9;
  cr_expect_eq(trainer_check_optim(&o, &d), 0, "nesterov with momentum");
  o.hp[HP_DAMPENING] = 0.1;
  cr_expect_eq(trainer_check_optim(&o, &d), -1, "nesterov with dampening");
  trainer_optim_defaults(&o, OPT_ADAM, NAN);
  cr_expect_eq(trainer_check_optim(&o, &d), -1, "lr NaN");
  trainer_optim_defaults(&o, OPT_RMSPROP, 0.1);
  o.alpha = -0.5;
  cr_expect_eq(trainer_check_optim(&o, &d), -1, "alpha < 0");
}

/* --optimizer NAME: another optimizer starts from torch's defaults with the
 * file's learning rate, and a note names what is dropped; the file's own
 * optimizer keeps its hyperparameters; --init with --resume is refused. */
Test(dlc_train, optimizer_override_is_explicit, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char data[1300], model[600], ck[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(model, sizeof model, "%s/mom.dl", dir);
  snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
  write_text(model, "model mom\ninput x: f32[N, 6]\nlogits = dense(x, 3)\noutput logits\ntrain {\n  label y: i64[N]\n"
                    "  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.1, momentum=0.9)\n  batch = 4\n}\n");
  Proc p = run_dlc(dir, "train", model, "--data", data, "--epochs", "1", "--optimizer", "adam", "--save", ck, NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.err, "note: --optimizer adam replaces sgd(momentum=0.9): adam takes torch's defaults, the learning "
                          "rate 0.1 stays"), "%s", p.err);
  cr_expect(strstr(p.out, "adam, lr 0.1,"), "%s", p.out);
  proc_free(&p);
  p = run_dlc(dir, "train", model, "--data", data, "--epochs", "1", "--optimizer", "sgd", "--save", ck, NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(!strstr(p.err, "note:"), "%s", p.err);
  RtTensorSet s;
  read_st(ck, &s);
  cr_expect_not_null(rt_set_find(&s, "logits.weight.momentum_buffer"), "the file's momentum was dropped");
  rt_set_free(&s);
  proc_free(&p);
  p = run_dlc(dir, "train", model, "--data", data, "--init", ck, "--resume", ck, NULL);
  cr_expect_eq(p.status, 2, "%s%s", p.out, p.err);
  cr_expect(strstr(p.err, "--init: error: cannot be combined with --resume"), "%s", p.err);
  proc_free(&p);
  remove_dir(dir);
}

/* Data files that exist but are wrong for the model or broken. */
Test(dlc_train, bad_data_files, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  write_blobs(dir, 5, 6, "x5.npy", "y5.npy");       /* only y5 is used */
  write_blobs(dir, 22, 5, "x22x5.npy", "y22.npy");  /* only x22x5 is used */
  RtTensor y;
  RtError err;
  int64_t n = 22;
  char path[600];
  /* labels 0..3 for a model with 3 classes */
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, &n, &err), RT_OK);
  for (int64_t s = 0; s < n; s++) ((int64_t *)y.data)[s] = s % 4;
  snprintf(path, sizeof path, "%s/y4.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK);
  rt_tensor_free(&y);
  /* float targets for a class label */
  cr_assert_eq(rt_tensor_alloc(&y, DT_F32, 1, &n, &err), RT_OK);
  snprintf(path, sizeof path, "%s/yf.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK);
  rt_tensor_free(&y);
  /* a truncated x and a file that is not .npy at all */
  size_t len;
  snprintf(path, sizeof path, "%s/x.npy", dir);
  char *bytes = tu_read_file(path, &len);
  cr_assert(bytes);
  snprintf(path, sizeof path, "%s/xcut.npy", dir);
  write_bytes(path, bytes, len - 7);
  snprintf(path, sizeof path, "%s/xhead.npy", dir);
  write_bytes(path, bytes, 30);
  free(bytes);
  snprintf(path, sizeof path, "%s/text.npy", dir);
  write_text(path, "this is not an npy file\n");
  snprintf(path, sizeof path, "%s/bad.csv", dir);
  write_text(path, "a,b,c,d,e,f,label\n1,2,3,4,5,6,0\n1,2,x,4,5,6,1\n");

  struct {
    const char *x, *y, *needle;
  } cases[] = {
      {"x.npy", "y5.npy", "y5.npy"},        /* 22 samples, 5 labels */
      {"x.npy", "y4.npy", "label"},         /* label 3 of 3 classes */
      {"x22x5.npy", "y.npy", "input 'x'"},  /* 5 features for 6 */
      {"x.npy", "yf.npy", "label 'y'"},     /* f32 targets for an i64 label */
      {"xcut.npy", "y.npy", "xcut.npy"},
      {"xhead.npy", "y.npy", "xhead.npy"},
      {"text.npy", "y.npy", "text.npy"},
      {"bad.csv", NULL, "bad.csv"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char data[1300];
    if (cases[i].y) snprintf(data, sizeof data, "npy:%s/%s,%s/%s", dir, cases[i].x, dir, cases[i].y);
    else snprintf(data, sizeof data, "csv:%s/%s", dir, cases[i].x);
    BadRun r = {{"--data", data}, 1, cases[i].needle};
    expect_bad_run(dir, TRAIN("tiny.dl"), &r);
  }
  remove_dir(dir);
}

/* --- data bound by name, --steps ------------------------------------------------------------- */

/* tiny.dl with its input x split in two halves a and b joined again by
 * concat: the same parameters (same names, same initial values), so on
 * the same samples in the same order it trains bit for bit like tiny. */
static const char split_model[] =
    "model tiny\n"
    "input a: f32[N, 3]\n"
    "input b: f32[N, 3]\n"
    "fc1 = dense(concat(a, b, axis=1), 5)\n"
    "h = tanh(fc1)\n"
    "fc2 = dense(h, 3)\n"
    "output fc2\n"
    "train {\n"
    "  label y: i64[N]\n"
    "  loss = cross_entropy(fc2, y)\n"
    "  optimizer = sgd(lr=0.1)\n"
    "  batch = 4\n"
    "  %s\n"
    "}\n";

static void write_model(const char *path, const char *fmt, const char *data_line) {
  char text[2048];
  snprintf(text, sizeof text, fmt, data_line);
  write_text(path, text);
}

/* cols [c0, c1) of x.npy in dir as NAME (f32), or as dtype dt. */
static void write_npy_slice(const char *dir, const char *name, DType dt, int64_t rows, int64_t c0, int64_t c1) {
  char path[600];
  RtError err;
  snprintf(path, sizeof path, "%s/x.npy", dir);
  RtTensor x = read_npy(path), out;
  int64_t shape[2] = {rows, c1 - c0};
  cr_assert_eq(rt_tensor_alloc(&out, dt, 2, shape, &err), RT_OK);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = c0; c < c1; c++) {
      float v = ((float *)x.data)[r * x.shape[1] + c];
      if (dt == DT_F32) ((float *)out.data)[r * (c1 - c0) + c - c0] = v;
      else if (dt == DT_F64) ((double *)out.data)[r * (c1 - c0) + c - c0] = v;
      else ((int64_t *)out.data)[r * (c1 - c0) + c - c0] = (int64_t)v;
    }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert_eq(rt_npy_write(path, &out, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&x);
  rt_tensor_free(&out);
}

/* y.npy of dir as NAME in dtype dt (i32, f32 or i64), with rank dims [n] or [n, 1]. */
static void write_labels_as(const char *dir, const char *name, DType dt, int rank) {
  char path[600];
  RtError err;
  snprintf(path, sizeof path, "%s/y.npy", dir);
  RtTensor y = read_npy(path), out;
  int64_t shape[2] = {y.shape[0], 1};
  cr_assert_eq(rt_tensor_alloc(&out, dt, rank, shape, &err), RT_OK);
  for (int64_t i = 0; i < y.shape[0]; i++) {
    int64_t v = ((int64_t *)y.data)[i];
    if (dt == DT_I32) ((int32_t *)out.data)[i] = (int32_t)v;
    else if (dt == DT_F32) ((float *)out.data)[i] = (float)v;
    else ((int64_t *)out.data)[i] = v;
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert_eq(rt_npy_write(path, &out, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&y);
  rt_tensor_free(&out);
}

static void expect_same_file(const char *a, const char *b, const char *what) {
  size_t la = 0, lb = 0;
  char *ba = tu_read_file(a, &la), *bb = tu_read_file(b, &lb);
  cr_assert(ba && bb, "%s: %s or %s missing", what, a, b);
  cr_expect(la == lb && memcmp(ba, bb, la) == 0, "%s: %s and %s differ", what, a, b);
  free(ba);
  free(bb);
}

typedef struct BindParam {
  Backend backend;
} BindParam;

ParameterizedTestParameters(dlc_data, named_files_train_like_the_fixed_form) {
  static BindParam params[] = {{BACKEND_INTERP}, {BACKEND_C}, {BACKEND_JIT}};
  return cr_make_param_array(BindParam, params, 3);
}

/* The same samples through npy:X,Y into tiny, and by name (listed in
 * another order, labels widened from i32, paths in the model file relative
 * to it) into the split model: with a validation split, the checkpoints
 * are byte-identical, so both forms shuffle, split and batch every array
 * alike and the labels stay integers on every backend. */
ParameterizedTest(BindParam *p, dlc_data, named_files_train_like_the_fixed_form, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char model[600], fixed[1300], ck1[600], ck2[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  write_npy_slice(dir, "a.npy", DT_F32, 22, 0, 3);
  write_npy_slice(dir, "b.npy", DT_F32, 22, 3, 6);
  write_labels_as(dir, "y32.npy", DT_I32, 1);
  snprintf(model, sizeof model, "%s/split.dl", dir);
  write_model(model, split_model, "data = npy(\"b=b.npy,y=y32.npy,a=a.npy\")");
  snprintf(fixed, sizeof fixed, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(ck1, sizeof ck1, "%s/fixed.safetensors", dir);
  snprintf(ck2, sizeof ck2, "%s/named.safetensors", dir);
  const char *be = backend_name(p->backend), *flag = p->backend == BACKEND_C ? "--backend=c"
                                                     : p->backend == BACKEND_JIT ? "--backend=jit" : "--backend=interp";
  Proc a = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", fixed, flag, "--epochs", "2", "--val-split", "0.25",
                   "--save", ck1, NULL);
  cr_assert_eq(a.status, 0, "%s: %s%s", be, a.out, a.err);
  Proc b = run_dlc(dir, "train", model, flag, "--epochs", "2", "--val-split", "0.25", "--save", ck2, NULL);
  cr_assert_eq(b.status, 0, "%s: %s%s", be, b.out, b.err);
  cr_expect(strstr(b.out, "16 samples (6 validation, 0 test)"), "%s", b.out);
  cr_expect(strstr(b.out, ", acc ") && strstr(b.out, ", val acc "), "class labels by name give accuracy: %s", b.out);
  expect_same_file(ck1, ck2, be);
  /* an integer input that is not a label (the class index as a plain i64
   * input) is fed as integers too: it trains exactly as tiny's label */
  char ck3[600], kmodel[600];
  snprintf(kmodel, sizeof kmodel, "%s/k.dl", dir);
  write_text(kmodel, "model tiny\ninput x: f32[N, 6]\ninput k: i64[N]\nfc1 = dense(x, 5)\nh = tanh(fc1)\n"
                     "fc2 = dense(h, 3)\noutput fc2\ntrain {\n  loss = cross_entropy(fc2, k)\n"
                     "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = npy(\"k=y32.npy,x=x.npy\")\n}\n");
  snprintf(ck3, sizeof ck3, "%s/k.safetensors", dir);
  Proc c = run_dlc(dir, "train", kmodel, flag, "--epochs", "2", "--val-split", "0.25", "--save", ck3, NULL);
  cr_assert_eq(c.status, 0, "%s: %s%s", be, c.out, c.err);
  expect_same_file(ck1, ck3, be);
  proc_free(&c);
  proc_free(&a);
  proc_free(&b);
  remove_dir(dir);
}

/* Every way a named spec can miss the model is refused before training,
 * naming the input and the file. */
Test(dlc_data, mismatched_bindings_are_named, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  write_blobs(dir, 21, 6, "x21.npy", "y21.npy");
  write_npy_slice(dir, "a.npy", DT_F32, 22, 0, 3);
  write_npy_slice(dir, "b.npy", DT_F32, 22, 3, 6);
  write_npy_slice(dir, "b4.npy", DT_F32, 22, 2, 6);
  write_npy_slice(dir, "bi.npy", DT_I64, 22, 3, 6);
  write_npy_slice(dir, "b64.npy", DT_F64, 22, 3, 6);
  write_labels_as(dir, "yf.npy", DT_F32, 1);
  write_labels_as(dir, "y2.npy", DT_I64, 2);
  snprintf(model, sizeof model, "%s/split.dl", dir);
  write_model(model, split_model, "");
  struct {
    const char *spec, *needle1, *needle2;
    int status;
  } cases[] = {
      {"a=a.npy,y=y.npy", "input 'b' has no file", "b=PATH", 1},
      {"a=a.npy,b=b.npy,y=y.npy,c=x.npy", "'c' is not an input or label of model 'tiny'", "x.npy", 1},
      {"a=a.npy,b=bi.npy,y=y.npy", "input 'b' is f32[N, 3] but the file holds i64[22, 3]", "bi.npy", 1},
      {"a=a.npy,b=b64.npy,y=y.npy", "f64 values are not narrowed", "b64.npy", 1},
      {"a=a.npy,b=b.npy,y=yf.npy", "label 'y' is i64[N] but the file holds f32[22]: a float file", "yf.npy", 1},
      {"a=a.npy,b=b4.npy,y=y.npy", "dimension 1 is 4, expected 3", "b4.npy", 1},
      {"a=a.npy,b=b.npy,y=y2.npy", "label 'y' is i64[N] but the file holds i64[22, 1]: rank 2, expected 1", "y2.npy", 1},
      {"a=a.npy,b=b.npy,y=y21.npy", "has 21 rows but", "y21.npy", 1},
      {"a=a.npy,a=b.npy,y=y.npy", "'a' is bound twice", "--data", 2},
      {"a=a.npy,b.npy,y=y.npy", "expected NAME=PATH", "b.npy", 2},
      {"a=a.npy,b=b.npy,y=x.npy", "label 'y' is i64[N] but the file holds f32[22, 6]", "x.npy", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char spec[1400] = "npy:", *at = spec + 4;
    char copy[256], *save = NULL;
    snprintf(copy, sizeof copy, "%s", cases[i].spec);
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
      char *eq = strchr(item, '=');
      at += eq ? snprintf(at, sizeof spec - (size_t)(at - spec), "%s%.*s=%s/%s", at == spec + 4 ? "" : ",",
                          (int)(eq - item), item, dir, eq + 1)
               : snprintf(at, sizeof spec - (size_t)(at - spec), ",%s/%s", dir, item);
    }
    BadRun r = {{"--data", spec}, cases[i].status, cases[i].needle1};
    expect_bad_run(dir, model, &r);
    BadRun r2 = {{"--data", spec}, cases[i].status, cases[i].needle2};
    expect_bad_run(dir, model, &r2);
  }
  remove_dir(dir);
}

/* The fixed forms feed one input and one label: a model with more inputs,
 * or an integer data input, is told to bind them by name. */
Test(dlc_data, fixed_form_refuses_what_it_cannot_feed, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600], data[1300], ints[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(model, sizeof model, "%s/split.dl", dir);
  write_model(model, split_model, "");
  BadRun r = {{"--data", data}, 1, "input 'b' gets no data: the npy form feeds only input 'a' and label y"};
  expect_bad_run(dir, model, &r);
  snprintf(ints, sizeof ints, "%s/ints.dl", dir);
  write_text(ints, "model ints\ninput k: i64[N]\ninput x: f32[N, 6]\nfc2 = dense(x, 3)\noutput fc2\n"
                   "train {\n  loss = cross_entropy(fc2, k)\n  optimizer = sgd(lr=0.1)\n  batch = 4\n}\n");
  BadRun r2 = {{"--data", data}, 1, "input 'k' is i64, but the npy form gives f32 samples"};
  expect_bad_run(dir, ints, &r2);
  remove_dir(dir);
}

/* Paths in the model file resolve against its directory, as #include
 * does; paths on the command line against the working directory. */
Test(dlc_data, model_paths_are_relative_to_the_model, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char sub[600], model[700], data[700];
  snprintf(sub, sizeof sub, "%s/models", dir);
  cr_assert_eq(mkdir(sub, 0755), 0);
  snprintf(data, sizeof data, "%s/models/data", dir);
  cr_assert_eq(mkdir(data, 0755), 0);
  write_blobs(data, 22, 6, "x.npy", "y.npy");
  write_blobs(dir, 10, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/tiny.dl", sub);
  char *text = tiny_variant("  data = npy(\"data/x.npy\", \"data/y.npy\")");
  write_text(model, text);
  free(text);
  cr_assert_eq(chdir(dir), 0);
  Proc p = run_dlc(dir, "train", "models/tiny.dl", "--backend=interp", "--epochs", "1", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training tiny: 22 samples"), "models/data/x.npy, next to the model: %s", p.out);
  proc_free(&p);
  p = run_dlc(dir, "train", "models/tiny.dl", "--backend=interp", "--epochs", "1", "--data", "npy:x.npy,y.npy", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training tiny: 10 samples"), "--data x.npy is ./x.npy: %s", p.out);
  proc_free(&p);
  text = tiny_variant("  data = npy(\"x.npy\", \"y.npy\")");
  write_text(model, text);
  free(text);
  p = run_dlc(dir, "train", "models/tiny.dl", "--backend=interp", "--epochs", "1", NULL);
  cr_expect_eq(p.status, 1, "./x.npy exists, models/x.npy does not: %s%s", p.out, p.err);
  cr_expect(strstr(p.err, "models/x.npy"), "%s", p.err);
  proc_free(&p);
  remove_dir(dir);
}

/* IDX bytes: magic (u8, rank), dimensions big-endian, then the values. */
static void write_idx(const char *path, int rank, const int *dims, const unsigned char *v, size_t n) {
  unsigned char head[4 + 4 * 4] = {0, 0, 8, (unsigned char)rank};
  for (int k = 0; k < rank; k++)
    for (int b = 0; b < 4; b++) head[4 + 4 * k + b] = (unsigned char)(dims[k] >> (24 - 8 * b));
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fwrite(head, 1, 4 + 4 * (size_t)rank, f);
  fwrite(v, 1, n, f);
  fclose(f);
}

/* n images of h x w bytes and their labels (0..2) as IDX files. */
static void write_idx_pair(const char *images, const char *labels, int n, int h, int w) {
  unsigned char *img = malloc((size_t)(n * h * w)), lab[64];
  cr_assert(img && n <= 64);
  for (int s = 0; s < n; s++) {
    lab[s] = (unsigned char)(s * 7 % 3);
    for (int f = 0; f < h * w; f++) img[s * h * w + f] = (unsigned char)((s * 37 + f * 11) % 200 + (f == lab[s] ? 55 : 0));
  }
  write_idx(images, 3, (int[]){n, h, w}, img, (size_t)(n * h * w));
  write_idx(labels, 1, (int[]){n}, lab, (size_t)n);
  free(img);
}

/* Every data form of the model file (npy by name, csv, idx, fashion_mnist,
 * text) reads its paths next to the model, run from another directory. */
Test(dlc_data, every_data_form_reads_paths_next_to_the_model, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char sub[600], data[700], path[800], fm[800];
  snprintf(sub, sizeof sub, "%s/models", dir);
  snprintf(data, sizeof data, "%s/models/data", dir);
  snprintf(fm, sizeof fm, "%s/models/data/fm", dir);
  cr_assert(mkdir(sub, 0755) == 0 && mkdir(data, 0755) == 0 && mkdir(fm, 0755) == 0);
  write_blobs(data, 22, 6, "x.npy", "y.npy");
  snprintf(path, sizeof path, "%s/d.csv", data);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  for (int s = 0; s < 20; s++) fprintf(f, "%d,%d,%d,%d,%d,%d,%d\n", s % 5, s % 3, s % 7, s % 2, s % 4, s % 6, s * 7 % 3);
  fclose(f);
  char img[900], lab[900];
  snprintf(img, sizeof img, "%s/img-idx3-ubyte", data), snprintf(lab, sizeof lab, "%s/lab-idx1-ubyte", data);
  write_idx_pair(img, lab, 18, 2, 3);
  static const char *const fm_files[2][2] = {{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"},
                                             {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}};
  for (int k = 0; k < 2; k++) { /* plain bytes under the .gz names: zlib reads both */
    snprintf(img, sizeof img, "%s/%s", fm, fm_files[k][0]), snprintf(lab, sizeof lab, "%s/%s", fm, fm_files[k][1]);
    write_idx_pair(img, lab, k ? 8 : 24, 28, 28);
  }
  snprintf(path, sizeof path, "%s/corpus.txt", data);
  f = fopen(path, "w");
  cr_assert_not_null(f);
  for (int i = 0; i < 30; i++) fputs("abc", f);
  fclose(f);
  static const struct {
    const char *form, *samples;
  } forms[] = {{"  data = npy(\"x=data/x.npy,y=data/y.npy\")", "training tiny: 22 samples"},
               {"  data = csv(\"data/d.csv\")", "training tiny: 20 samples"},
               {"  data = idx(\"data/img-idx3-ubyte\", \"data/lab-idx1-ubyte\")", "training tiny: 18 samples"}};
  cr_assert_eq(chdir(dir), 0);
  snprintf(path, sizeof path, "%s/tiny.dl", sub);
  for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
    char *text = tiny_variant(forms[k].form);
    write_text(path, text);
    free(text);
    Proc p = run_dlc(dir, "train", "models/tiny.dl", "--backend=interp", "--steps", "2", NULL);
    cr_expect_eq(p.status, 0, "%s: %s%s", forms[k].form, p.out, p.err);
    cr_expect(strstr(p.out, forms[k].samples), "%s: %s", forms[k].form, p.out);
    proc_free(&p);
  }
  snprintf(path, sizeof path, "%s/fm.dl", sub); /* Fashion-MNIST's 28 x 28 images */
  write_text(path, "model fm\ninput x: f32[N, 784]\nfc = dense(x, 10)\noutput fc\ntrain {\n  label y: i64[N]\n"
                   "  loss = cross_entropy(fc, y)\n  optimizer = sgd(lr=0.1)\n  batch = 4\n"
                   "  data = fashion_mnist(\"data/fm\")\n}\n");
  Proc q = run_dlc(dir, "train", "models/fm.dl", "--backend=interp", "--steps", "2", NULL);
  cr_expect_eq(q.status, 0, "fashion_mnist: %s%s", q.out, q.err);
  cr_expect(strstr(q.out, "training fm: 24 samples (0 validation, 8 test)"), "fashion_mnist: %s", q.out);
  proc_free(&q);
  snprintf(path, sizeof path, "%s/lm.dl", sub);
  write_text(path, "model lm\ninput tokens: i64[N, 4]\ne = embedding(tokens, 3, 4)\nlogits = dense(e, 3)\n"
                   "output logits\ntrain {\n  label next: i64[N, 4]\n  target = next\n"
                   "  loss = -mean(gather(log_softmax(logits, axis=-1), reshape(next, [N, 4, 1]), axis=2))\n"
                   "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = text(\"data/corpus.txt\")\n}\n");
  Proc p = run_dlc(dir, "train", "models/lm.dl", "--backend=interp", "--steps", "2", NULL);
  cr_expect_eq(p.status, 0, "text: %s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training lm: 22 samples"), "text: 90 bytes, windows of 4 and the byte after: %s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

/* The lr column of the epoch rows (batch 0) of a metrics file, in order. */
static int epoch_lrs(const char *path, double *lr, int max) {
  char *csv = tu_read_file(path, NULL);
  cr_assert(csv, "no %s", path);
  int n = 0;
  for (const char *line = strchr(csv, '\n'); line && line[1] && n < max; line = strchr(line + 1, '\n')) {
    double v[9];
    if (sscanf(line + 1, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
               &v[8]) >= 8 && v[1] == 0)
      lr[n++] = v[7];
  }
  free(csv);
  return n;
}

/* The first epoch's training loss in a metrics file. */
static double first_epoch_loss(const char *path) {
  char *csv = tu_read_file(path, NULL);
  cr_assert(csv, "no %s", path);
  const char *row = strstr(csv, "\n1,0,");
  cr_assert(row, "%s", csv);
  double v[4];
  cr_assert_eq(sscanf(row + 1, "%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3]), 4);
  free(csv);
  return v[3];
}

/* --schedule on the command line replaces the file's schedule with the
 * same formulas; --augment noise=S adds Gaussian noise to the input of an
 * autoencoder (the loss changes; without it two runs agree exactly). */
Test(dlc_data, schedule_and_noise_flags, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char data[1300], m[600], model[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(m, sizeof m, "%s/m.csv", dir);
  Proc p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--epochs", "3", "--metrics", m,
                   "--schedule", "step:step_size=1,gamma=0.5", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  proc_free(&p);
  double lr[4];
  cr_assert_eq(epoch_lrs(m, lr, 4), 3);
  cr_expect(lr[0] == 0.1 && fabs(lr[1] - 0.05) < 1e-12 && fabs(lr[2] - 0.025) < 1e-12, "lr %g %g %g", lr[0], lr[1], lr[2]);
  p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--epochs", "2", "--metrics", m,
              "--schedule", "cosine:t_max=2", "--lr", "0.2", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  proc_free(&p);
  cr_assert_eq(epoch_lrs(m, lr, 4), 2);
  cr_expect(lr[0] == 0.2 && fabs(lr[1] - 0.1) < 1e-12, "cosine from --lr 0.2: %g %g", lr[0], lr[1]);
  static const struct {
    const char *spec, *msg;
  } bad[] = {{"cosine", "--schedule: error: cosine needs t_max=10"},
             {"warm", "expected constant, step, exponential, cosine or cyclic, got 'warm'"},
             {"step:step_size=0", "--schedule step_size"},
             {"step:size=3", "unknown setting 'size=3'"},
             {"cyclic:base_lr=0.01,max_lr=0.1", "cyclic needs base_lr=0.001,max_lr=0.1,step_size_up=2000"}};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--schedule", bad[k].spec, NULL);
    cr_expect_eq(p.status, 2, "%s: %s", bad[k].spec, p.err);
    cr_expect(strstr(p.err, bad[k].msg), "%s: %s", bad[k].spec, p.err);
    proc_free(&p);
  }
  snprintf(model, sizeof model, "%s/ae.dl", dir);
  write_text(model, "model ae\ninput x: f32[N, 6]\ne = dense(x, 3)\nh = tanh(e)\nout = dense(h, 6)\noutput out\n"
                    "train {\n  label t: f32[N, 6]\n  target = x\n  loss = mse_loss(out, t)\n"
                    "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = npy(\"x=x.npy\")\n}\n");
  double loss[3];
  const char *augment[3] = {"none", "none", "noise=0.5"};
  for (int k = 0; k < 3; k++) {
    p = run_dlc(dir, "train", model, "--backend=interp", "--epochs", "1", "--metrics", m, "--augment", augment[k], NULL);
    cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
    proc_free(&p);
    loss[k] = first_epoch_loss(m);
  }
  cr_expect(loss[0] == loss[1], "two runs without noise: %.9g, %.9g", loss[0], loss[1]);
  cr_expect(loss[2] > loss[0], "noise 0.5 on the input: loss %.9g, without %.9g", loss[2], loss[0]);
  p = run_dlc(dir, "train", model, "--augment", "noise=-1", NULL);
  cr_expect_eq(p.status, 2, "%s", p.err);
  cr_expect(strstr(p.err, "--augment noise"), "%s", p.err);
  proc_free(&p);
  /* noise on a classifier would do nothing: refused */
  p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--augment", "noise=0.3", NULL);
  cr_expect_eq(p.status, 1, "%s", p.err);
  cr_expect(strstr(p.err, "noise=0.3 makes a denoising autoencoder: it needs 'target = INPUT'"), "%s", p.err);
  proc_free(&p);
  remove_dir(dir);
}

/* target = x with named files: the label gets the input's clean values and
 * takes no file of its own. */
Test(dlc_data, autoencoder_target_by_name, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600], data[1300];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/ae.dl", dir);
  write_text(model, "model ae\ninput x: f32[N, 6]\ne = dense(x, 3)\nh = tanh(e)\nout = dense(h, 6)\noutput out\n"
                    "train {\n  label t: f32[N, 6]\n  target = x\n  loss = mse_loss(out, t)\n"
                    "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = npy(\"x=x.npy\")\n}\n");
  Proc p = run_dlc(dir, "train", model, "--backend=c", "--epochs", "2", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 2, "%s", p.out);
  proc_free(&p);
  snprintf(data, sizeof data, "npy:x=%s/x.npy,t=%s/x.npy", dir, dir);
  BadRun r = {{"--data", data}, 1, "label 't' gets the clean input 'x' (target = x), not a file"};
  expect_bad_run(dir, model, &r);
  remove_dir(dir);
}

/* target = t naming the label itself, with named files: the label is fed
 * from its own file like any other, and the input's batch is left alone
 * (no autoencoder target is made; this once stopped on an internal check). */
Test(dlc_data, label_target_by_name, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/lt.dl", dir);
  write_text(model, "model lt\ninput x: f32[N, 6]\nout = dense(x, 6)\noutput out\n"
                    "train {\n  label t: f32[N, 6]\n  target = t\n  loss = mse_loss(out, t)\n"
                    "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = npy(\"x=x.npy,t=x.npy\")\n}\n");
  Proc p = run_dlc(dir, "train", model, "--backend=c", "--epochs", "2", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 2, "%s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

/* --steps N stops after N optimizer steps in all, inside an epoch if need
 * be; its checkpoint resumes at the next batch and the run ends bit for
 * bit like one that never stopped.  Metrics have a row per batch. */
ParameterizedTestParameters(dlc_data, steps_stop_and_resume_like_one_run) {
  static BindParam params[] = {{BACKEND_INTERP}, {BACKEND_C}};
  return cr_make_param_array(BindParam, params, 2);
}

ParameterizedTest(BindParam *p, dlc_data, steps_stop_and_resume_like_one_run, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char model[600], data[1300], full[600], part[600], rest[600], mpart[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/model.dl", dir);
  char *text = tiny_variant("  schedule = cyclic(base_lr=0.001, max_lr=0.05, step_size_up=3)\n  seed = 3\n"
                            "  val_split = 0.2"),
       *adam = replace_once(text, "sgd(lr=0.1)", "adam(lr=0.01)");
  write_text(model, adam);
  free(text);
  free(adam);
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(full, sizeof full, "%s/full.safetensors", dir);
  snprintf(part, sizeof part, "%s/part.safetensors", dir);
  snprintf(rest, sizeof rest, "%s/rest.safetensors", dir);
  snprintf(mpart, sizeof mpart, "%s/part.csv", dir);
  const char *be = p->backend == BACKEND_C ? "--backend=c" : "--backend=interp";

  Proc a = run_dlc(dir, "train", model, "--data", data, be, "--epochs", "3", "--save", full, NULL);
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  /* 18 training samples in batches of 4: 5 steps an epoch; 7 steps end in batch 2 of epoch 2 */
  Proc b = run_dlc(dir, "train", model, "--data", data, be, "--steps", "7", "--save", part, "--metrics", mpart, NULL);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  cr_expect_eq(count_lines_starting(b.out, "epoch 1/2: "), 1, "%s", b.out);
  cr_expect_eq(count_lines_starting(b.out, "epoch 2/2"), 0, "%s", b.out);
  cr_expect(strstr(b.out, "stopped after 7 steps, batch 2 of epoch 2\n"), "%s", b.out);
  RtTensorSet sp;
  read_st(part, &sp);
  cr_expect_str_eq(rt_set_get_meta(&sp, "dlc.step"), "7");
  cr_expect_str_eq(rt_set_get_meta(&sp, "dlc.epoch"), "1");
  cr_expect_str_eq(rt_set_get_meta(&sp, "dlc.epoch_batches"), "2");
  rt_set_free(&sp);
  char *csv = tu_read_file(mpart, NULL);
  cr_assert(csv);
  cr_expect_eq(count_lines(csv), 1 + 7 + 1, "header, 7 batch rows, one epoch row:\n%s", csv);
  cr_expect(strstr(csv, "\n1,0,5,") && strstr(csv, "\n2,2,7,"), "%s", csv);
  free(csv);

  Proc c = run_dlc(dir, "train", model, "--data", data, be, "--epochs", "3", "--resume", part, "--save", rest, NULL);
  cr_assert_eq(c.status, 0, "%s%s", c.out, c.err);
  cr_expect(strstr(c.out, "epoch 2/3:") && strstr(c.out, "epoch 3/3:") && !strstr(c.out, "epoch 1/3"), "%s", c.out);
  expect_same_file(full, rest, be);

  /* the position inside an epoch holds only for the batch size it was taken at */
  BadRun r = {{"--data", data, "--resume", part, "--batch", "3"}, 1, "resume with --batch 4"};
  expect_bad_run(dir, model, &r);
  /* --steps on an epoch's end: whole epochs, no stop line */
  Proc d = run_dlc(dir, "train", model, "--data", data, be, "--steps", "10", NULL);
  cr_expect_eq(d.status, 0, "%s%s", d.out, d.err);
  cr_expect(strstr(d.out, "epoch 2/2:") && !strstr(d.out, "stopped"), "%s", d.out);
  BadRun r2 = {{"--data", data, "--steps", "0"}, 2, "--steps"};
  expect_bad_run(dir, model, &r2);
  Proc e = run_dlc(dir, "train", model, "--data", data, be, "--resume", part, "--steps", "5", NULL);
  cr_expect_eq(e.status, 0, "%s%s", e.out, e.err);
  cr_expect(strstr(e.err, "note: the run has taken 7 steps already; --steps 5 trains no more"), "%s", e.err);
  cr_expect_eq(count_lines_starting(e.out, "epoch "), 0, "%s", e.out);
  proc_free(&e);
  proc_free(&a);
  proc_free(&b);
  proc_free(&c);
  proc_free(&d);
  remove_dir(dir);
}

/* An i32 label fed by a fixed form gets i32 labels (the loaders read i64):
 * it trains exactly as the same model with an i64 label. */
Test(dlc_data, fixed_form_feeds_an_i32_label_as_i32, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600], data[1300], ck64[600], ck32[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/tiny32.dl", dir);
  char *text = tiny_variant(""), *i32 = replace_once(text, "label y: i64[N]", "label y: i32[N]");
  write_text(model, i32);
  free(text);
  free(i32);
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(ck64, sizeof ck64, "%s/i64.safetensors", dir);
  snprintf(ck32, sizeof ck32, "%s/i32.safetensors", dir);
  Proc a = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--epochs", "2", "--save", ck64,
                   NULL);
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  Proc b = run_dlc(dir, "train", model, "--data", data, "--backend=c", "--epochs", "2", "--save", ck32, NULL);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  RtTensorSet s64, s32;
  read_st(ck64, &s64);
  read_st(ck32, &s32);
  const char *names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
  for (int i = 0; i < 4; i++) {
    const RtTensor *p = rt_set_find(&s64, names[i]), *q = rt_set_find(&s32, names[i]);
    cr_assert(p && q, "%s", names[i]);
    int64_t n = (int64_t)(rt_tensor_nbytes(p) / sizeof(float));
    for (int64_t k = 0; k < n; k++)
      cr_expect(fabsf(((float *)p->data)[k] - ((float *)q->data)[k]) <= 1e-5f, "%s[%lld]: i64 %g, i32 %g", names[i],
                (long long)k, ((float *)p->data)[k], ((float *)q->data)[k]);
  }
  rt_set_free(&s64);
  rt_set_free(&s32);
  proc_free(&a);
  proc_free(&b);
  remove_dir(dir);
}
