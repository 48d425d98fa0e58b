/*
 * test_train.c — training: the optimizers, schedules and frozen layers
 * against PyTorch (tests/fixtures/train, see its README) and checkpoints
 * (the `dlc train` command end to end is test_train_cli.c; what both use,
 * tests/train_util.h).
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
 * The data sets of the `dlc train` runs are written by the tests themselves
 * (rt_npy_write, from integer formulas), so there are no extra fixtures.
 * Everything is seeded; the checkpoint comparisons are bit for bit.
 */
#include "tests/train_util.h"

#define OPT_CONFIGS 13 /* lines of optimizers.txt; train_optim checks the count */

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
