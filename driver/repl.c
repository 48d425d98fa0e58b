/*
 * repl.c — `dlc repl [MODEL.dl]`: load a model and data, train it a few
 * epochs at a time, look at it, change it, save it, emit C.
 *
 * The REPL keeps the model's source text (the file plus statements typed
 * at the prompt) and re-reads the whole text for every change, so what it
 * runs is always what `dlc` would compile from the same text.  The Trainer
 * (trainer.c) is built lazily by the first command that needs it and
 * rebuilt, keeping the current weights, when the model, the optimizer or
 * the batch size changes.  Lines come from libedit (history, completion of
 * commands and names) on a terminal, and from plain stdin otherwise, so
 * `dlc repl < session.txt` works.  Ctrl-C while training stops after the
 * current batch and the session goes on.
 */
#include <editline/readline.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver/driver.h"
#include "driver/numbers.h"
#include "driver/plot.h"
#include "driver/trainer.h"
#include "onnx/onnx.h"

#define MAX_HISTORY 1000

typedef struct Repl {
  Diags d;
  char *path;                 /* the model file, NULL before load */
  char *text;                 /* file text + statements typed here */
  Model m;
  int have_model;
  TrainConfig cfg;
  int have_cfg;
  Trainer t;
  int have_trainer;
  RtTensorSet keep;           /* weights carried across rebuilds */
  int have_keep;
  RtDataset train, val, test; /* data carried across rebuilds */
  RtVocab vocab;              /* ... and the vocabulary of text data */
  int64_t epoch, step;
  int tty;
  int threads;                /* --threads: of every trainer built */
  PassOpts po;                /* --no-fuse, --no-tile, -O0: of every program built */
  int nhist;
  EpochStats hist[MAX_HISTORY];
} Repl;

static volatile sig_atomic_t stop_training;
static void on_sigint(int sig) {
  (void)sig;
  stop_training = 1;
}

static Repl *the_repl; /* for completion */

/* --- model and trainer lifetime --------------------------------------------------- */

static void drop_trainer(Repl *r, int keep_weights) {
  if (!r->have_trainer) return;
  if (keep_weights && trainer_sync(&r->t) == 0) {
    if (r->have_keep) rt_set_free(&r->keep);
    rt_set_init(&r->keep);
    RtError err;
    for (int i = 0; i < r->t.tensors.count; i++) { /* parameters only: optimizer state restarts */
      const char *name = r->t.tensors.items[i].name;
      if (ir_find_param(&r->m.g, name) < 0) continue;
      if (rt_set_add_copy(&r->keep, name, &r->t.tensors.items[i].t, &err)) rt_oom(); /* names are unique */
    }
    r->have_keep = 1;
  }
  if (keep_weights) { /* the data and the position in the run carry over too */
    r->train = r->t.train, r->val = r->t.val, r->test = r->t.test, r->vocab = r->t.vocab;
    memset(&r->t.train, 0, sizeof r->t.train), memset(&r->t.val, 0, sizeof r->t.val);
    memset(&r->t.test, 0, sizeof r->t.test);
    r->epoch = r->t.epoch, r->step = r->t.step;
  }
  trainer_free(&r->t);
  r->have_trainer = 0;
}

static void drop_data(Repl *r) {
  rt_dataset_free(&r->train), rt_dataset_free(&r->val), rt_dataset_free(&r->test);
  r->epoch = r->step = 0;
}

/* Replaces the model with the one text describes; on errors keeps the old.
 * The training settings are read from the text on load only, so settings
 * changed at the prompt survive statements typed afterwards. */
static int set_model(Repl *r, const char *path, const char *text, int fresh) {
  Model m;
  if (fe_load_string(&m, path, text, &r->d)) return -1;
  drop_trainer(r, 1);
  if (r->have_model) fe_model_free(&r->m);
  r->m = m;
  r->have_model = 1;
  if (text != r->text) {
    rt_xfree(r->text);
    r->text = rt_xstrdup(text);
  }
  if (fresh || !r->have_cfg)
    r->have_cfg = m.train.present && (m.train.loss >= 0 || m.train.nsections) &&
                  trainer_config(&r->m, &r->cfg, &r->d) == 0;
  return 0;
}

static int need_model(Repl *r) {
  if (r->have_model) return 0;
  fprintf(stderr, "no model: load one with 'load MODEL.dl'\n");
  return -1;
}

/* The trainer, built on first use; weights carried over when there are some. */
static int need_trainer(Repl *r) {
  if (need_model(r)) return -1;
  if (r->have_trainer) return 0;
  if (!r->have_cfg) return fprintf(stderr, "the model has no training section with a loss\n"), -1;
  if (r->train.n && r->cfg.batch > r->train.n) { /* the data is known: fit the batch to it */
    fprintf(stderr, "note: batch %lld is larger than the %lld training samples; using %lld\n",
            (long long)r->cfg.batch, (long long)r->train.n, (long long)r->train.n);
    r->cfg.batch = r->train.n;
  }
  r->cfg.threads = r->threads;
  r->cfg.pass = &r->po;
  if (trainer_init(&r->t, &r->m, &r->cfg, r->have_keep ? &r->keep : NULL, &r->d)) {
    trainer_free(&r->t);
    return -1;
  }
  r->t.train = r->train, r->t.val = r->val, r->t.test = r->test, r->t.vocab = r->vocab;
  memset(&r->train, 0, sizeof r->train), memset(&r->val, 0, sizeof r->val), memset(&r->test, 0, sizeof r->test);
  r->t.epoch = r->epoch, r->t.step = r->step;
  r->have_trainer = 1;
  return 0;
}

/* The data, loaded on first use before the step is built, so a batch
 * larger than the training set is clamped to it and an empty set refused
 * (the weights and the position in the run carry over the rebuild). */
static int need_data(Repl *r) {
  if (need_model(r)) return -1;
  if (!r->have_cfg) return fprintf(stderr, "the model has no training section with a loss\n"), -1;
  int held = r->have_trainer ? r->t.train.n || r->t.test.n : r->train.n || r->test.n;
  if (!held) {
    drop_trainer(r, 1);
    printf("loading %s data...\n", r->cfg.data_kind[0] ? r->cfg.data_kind : "(no)");
    Trainer t;
    int rc = trainer_prepare(&t, &r->m, &r->cfg, &r->d) || trainer_load_data(&t) || trainer_fit_batch(&t) < 0 ? -1 : 0;
    if (rc == 0) {
      r->cfg.batch = t.cfg.batch;
      r->train = t.train, r->val = t.val, r->test = t.test, r->vocab = t.vocab;
      memset(&t.train, 0, sizeof t.train), memset(&t.val, 0, sizeof t.val), memset(&t.test, 0, sizeof t.test);
    }
    trainer_free(&t);
    if (rc) return -1;
  }
  return need_trainer(r);
}

/* --- commands ---------------------------------------------------------------------- */

typedef struct Command {
  const char *name, *args, *help;
  int (*run)(Repl *r, char *arg);
} Command;

/* The source text of a model file: a .dl file, or an ONNX model as the
 * .dl text dlc import writes, its initializers into *weights. */
static char *model_text(Repl *r, const char *path, RtTensorSet *weights) {
  size_t len;
  if (!onnx_is_model_path(path)) return fe_read_source(path, &len, &r->d); /* limits and refuses binary files */
  OnnxImport im;
  if (onnx_import_file(path, &im, &r->d)) return NULL;
  char *text = im.text;
  *weights = im.weights;
  return text;
}

static int cmd_load(Repl *r, char *arg) {
  if (!*arg) return fprintf(stderr, "usage: load MODEL.dl\n"), -1;
  RtTensorSet weights;
  rt_set_init(&weights);
  char *buf = model_text(r, arg, &weights);
  if (!buf) return -1;
  int rc = set_model(r, arg, buf, 1);
  if (rc == 0) { /* a new model starts from scratch, or from an ONNX model's weights */
    drop_trainer(r, 0);
    if (r->have_keep) rt_set_free(&r->keep), r->have_keep = 0;
    if (weights.count) r->keep = weights, r->have_keep = 1, rt_set_init(&weights);
    drop_data(r);
    rt_xfree(r->path);
    r->path = rt_xstrdup(arg);
    r->nhist = 0;
    printf("%s: model '%s', %lld parameters%s\n", arg, r->m.g.name, (long long)ir_param_count(&r->m.g),
           r->have_cfg ? ", training section" : onnx_is_model_path(arg) ? " with the ONNX model's weights (no training section)" : "");
  }
  rt_set_free(&weights);
  rt_xfree(buf);
  return rc;
}

static int cmd_reload(Repl *r, char *arg) {
  (void)arg;
  if (!r->path) return fprintf(stderr, "nothing loaded yet\n"), -1;
  char *p = rt_xstrdup(r->path);
  int rc = cmd_load(r, p);
  rt_xfree(p);
  return rc;
}

static int cmd_summary(Repl *r, char *arg) {
  (void)arg;
  if (need_model(r)) return -1;
  char tb[128];
  const Graph *g = &r->m.g;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_CONST) continue;
    printf("  %-24s %-14s %s%s\n", n->name ? n->name : "-", ir_ops[n->op].name, ir_type_str(g, n->dtype, &n->shape, tb, sizeof tb),
           n->frozen ? " frozen" : "");
  }
  printf("parameters: %lld\n", (long long)ir_param_count(g));
  return 0;
}

static int cmd_ir(Repl *r, char *arg) {
  (void)arg;
  if (need_model(r)) return -1;
  ir_dump(&r->m.g, stdout);
  return 0;
}

static int cmd_dot(Repl *r, char *arg) {
  if (need_model(r)) return -1;
  FILE *f = *arg ? fopen(arg, "w") : stdout;
  if (!f) return fprintf(stderr, "%s: %s\n", arg, strerror(errno)), -1;
  ir_dump_dot(&r->m.g, f);
  if (f != stdout) fclose(f), printf("wrote %s\n", arg);
  return 0;
}

static int cmd_data(Repl *r, char *arg) {
  if (need_model(r)) return -1;
  if (*arg) {
    if (!r->have_cfg) return fprintf(stderr, "the model has no training section with a loss\n"), -1;
    if (dlc_parse_data_spec(arg, &r->cfg, &r->d)) return -1;
    drop_trainer(r, 1); /* rebuilt from r->cfg by need_data */
    rt_dataset_free(&r->train), rt_dataset_free(&r->val), rt_dataset_free(&r->test);
  }
  if (need_data(r)) return -1;
  printf("data: %lld training, %lld validation, %lld test samples\n", (long long)r->t.train.n, (long long)r->t.val.n,
         (long long)r->t.test.n);
  return 0;
}

/* "loss X", or with named sections "NAME loss X, ..." from sec. */
static void print_losses(const Trainer *t, const char *prefix, double loss, const double *sec) {
  for (int s = 0; s < t->cfg.nsections; s++) printf("%s%s%s loss %.4f", s ? ", " : "", prefix, t->cfg.sec_name[s], sec[s]);
  if (!t->cfg.nsections) printf("%sloss %.4f", prefix, loss);
}

static void print_stats(const Trainer *t, const EpochStats *es) {
  printf("epoch %lld: ", (long long)t->epoch);
  print_losses(t, "", es->loss, es->section_loss);
  if (!isnan(es->acc)) printf(", acc %.2f%%", 100 * es->acc);
  if (!isnan(es->val_loss)) printf(", "), print_losses(t, "val ", es->val_loss, es->val_section_loss);
  if (!isnan(es->val_acc)) printf(", val acc %.2f%%", 100 * es->val_acc);
  printf(", lr %.4g, %.1f s\n", es->lr, es->seconds);
}

static int cmd_train(Repl *r, char *arg) {
  int64_t epochs = 1;
  if (*arg && dlc_parse_int("train", arg, 1, DLC_MAX_EPOCHS, &epochs, &r->d)) return -1;
  if (need_data(r)) return -1;
  stop_training = 0;
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, &old);
  int rc = 0;
  for (int64_t e = 0; e < epochs && rc == 0; e++) {
    EpochStats es;
    rc = trainer_epoch(&r->t, &es, r->tty, &stop_training);
    if (rc) break;
    r->t.epoch++;
    es.val_loss = es.val_acc = NAN;
    if (r->t.val.n && trainer_evaluate(&r->t, &r->t.val, &es.val_loss, &es.val_acc)) rc = -1;
    for (int s = 0; s < FE_MAX_SECTIONS; s++) es.val_section_loss[s] = r->t.val.n ? r->t.section_loss[s] : NAN;
    if (r->nhist < MAX_HISTORY) r->hist[r->nhist++] = es;
    print_stats(&r->t, &es);
    if (!rc && trainer_check_loss(&r->t, &es)) rc = -1;
  }
  sigaction(SIGINT, &old, NULL);
  if (rc == 1) printf("stopped after the current batch; the weights are kept\n");
  return rc < 0 ? -1 : 0;
}

/* A step's line: which section it was (with named sections) and its loss. */
static int print_step(void *ctx, const Trainer *t, const BatchStats *bs) {
  (void)ctx;
  printf("step %lld: %s%sloss %.4f, lr %.4g (batch %lld of %lld, epoch %lld)\n", (long long)t->step,
         bs->section >= 0 ? t->cfg.sec_name[bs->section] : "", bs->section >= 0 ? " " : "", bs->loss, bs->lr,
         (long long)bs->batch, (long long)bs->batches, (long long)t->epoch + 1);
  return 0;
}

/* How many steps the argument of step asks for: N, or NAME (the order's
 * steps up to and including named section NAME's next one); 0 after a
 * message. */
static int64_t steps_asked(Repl *r, const char *arg) {
  int64_t n = 1;
  if (!*arg) return 1;
  if (arg[0] >= '0' && arg[0] <= '9') return dlc_parse_int("step", arg, 1, 1 << 24, &n, &r->d) ? 0 : n;
  const Trainer *t = &r->t;
  int s = 0;
  while (s < t->cfg.nsections && strcmp(t->cfg.sec_name[s], arg)) s++;
  if (s == t->cfg.nsections) {
    fprintf(stderr, "step: '%s' is not a number of steps%s", arg, t->cfg.nsections ? " or a train section (" : "\n");
    for (int k = 0; k < t->cfg.nsections; k++) fprintf(stderr, "%s%s", k ? ", " : "", t->cfg.sec_name[k]);
    if (t->cfg.nsections) fprintf(stderr, ")\n");
    return 0;
  }
  int64_t nth;
  for (n = 1; trainer_section_of(t, t->step + n - 1, &nth) != s; n++) {}
  return n;
}

/* step [N|NAME]: the next optimizer steps of the run, in the order of the
 * sections, on the next batches of the epoch (the epoch ends, and counts,
 * when its last batch is taken). */
static int cmd_step(Repl *r, char *arg) {
  if (need_data(r)) return -1;
  int64_t n = steps_asked(r, arg);
  if (!n) return -1;
  Trainer *t = &r->t;
  t->cfg.max_steps = t->step + n;
  t->on_batch = print_step;
  stop_training = 0;
  int rc = 0;
  while (rc == 0 && t->step < t->cfg.max_steps) {
    EpochStats es;
    rc = trainer_epoch(t, &es, 0, &stop_training);
    if (rc == 0) {
      t->epoch++;
      es.val_loss = es.val_acc = NAN;
      for (int s = 0; s < FE_MAX_SECTIONS; s++) es.val_section_loss[s] = NAN;
      if (r->nhist < MAX_HISTORY) r->hist[r->nhist++] = es;
      printf("epoch %lld done\n", (long long)t->epoch);
    }
  }
  t->cfg.max_steps = 0;
  t->on_batch = NULL;
  return rc < 0 ? -1 : 0;
}

static int cmd_eval(Repl *r, char *arg) {
  if (need_data(r)) return -1;
  const RtDataset *ds = !strcmp(arg, "val") ? &r->t.val : !strcmp(arg, "train") ? &r->t.train : &r->t.test;
  const char *what = !strcmp(arg, "val") ? "validation" : !strcmp(arg, "train") ? "training" : "test";
  if (!ds->n) return fprintf(stderr, "no %s data\n", what), -1;
  double loss, acc;
  if (trainer_evaluate(&r->t, ds, &loss, &acc)) return -1;
  printf("%s: ", what);
  print_losses(&r->t, "", loss, r->t.section_loss);
  if (!isnan(acc)) printf(", accuracy %.2f%%", 100 * acc);
  printf(" (%lld samples)\n", (long long)ds->n);
  return 0;
}

static const char *const fashion_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* A square grey image as text, two characters per pixel. */
static void show_image(const float *x, int64_t n) {
  int64_t side = (int64_t)sqrt((double)n);
  if (side * side != n) return;
  static const char ramp[] = " .:-=+*#%@";
  for (int64_t i = 0; i < side; i++) {
    for (int64_t j = 0; j < side; j++) {
      float v = x[i * side + j];
      int k = (int)(v < 0 ? 0 : v > 1 ? 9 : v * 9.999f);
      putchar(ramp[k]);
      putchar(ramp[k]);
    }
    putchar('\n');
  }
}

static int cmd_predict(Repl *r, char *arg) {
  if (need_data(r)) return -1;
  const RtDataset *ds = r->t.test.n ? &r->t.test : &r->t.val;
  int64_t i = 0;
  if (!ds->n) return fprintf(stderr, "predict: no test or validation samples\n"), -1;
  if (*arg && dlc_parse_int("predict", arg, 0, ds->n - 1, &i, &r->d)) return -1;
  if (r->t.acc_output < 0) return fprintf(stderr, "predict needs a classification model\n"), -1;
  if (ds->ncols) return fprintf(stderr, "predict shows one input and its label: it needs data x, y, not named files\n"), -1;
  int64_t feat = rt_dataset_features(ds), idx = i;
  const Node *lg = &r->m.g.nodes[r->m.g.outputs[r->t.acc_output].id];
  int64_t classes = lg->shape.d[1];
  float *x = rt_xmalloc(sizeof(float) * (size_t)feat), *logits = rt_xmalloc(sizeof(float) * (size_t)classes);
  int64_t y;
  rt_batch_gather(ds, &idx, 1, x, &y);
  int rc = trainer_predict(&r->t, 1, x, &y, logits);
  if (rc == 0) {
    show_image(x, feat);
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < classes; c++) mx = fmax(mx, logits[c]);
    for (int64_t c = 0; c < classes; c++) sum += exp(logits[c] - mx);
    int is_fashion = !strcmp(r->cfg.data_kind, "fashion_mnist") && classes == 10;
    printf("sample %lld, label %lld%s%s\n", (long long)i, (long long)y, is_fashion ? " " : "", is_fashion ? fashion_classes[y] : "");
    for (int k = 0; k < 3 && k < classes; k++) {
      int64_t best = -1;
      for (int64_t c = 0; c < classes; c++)
        if (logits[c] > -INFINITY && (best < 0 || logits[c] > logits[best])) best = c;
      if (best < 0) break;
      printf("  %d. class %lld%s%-12s %6.2f%%\n", k + 1, (long long)best, is_fashion ? " " : "",
             is_fashion ? fashion_classes[best] : "", 100 * exp(logits[best] - mx) / sum);
      logits[best] = -INFINITY;
    }
  }
  rt_xfree(x);
  rt_xfree(logits);
  return rc;
}

/* The setting after "set": lr X, optimizer NAME, batch N, epochs N. */
static int cmd_set(Repl *r, char *arg) {
  char key[32] = "", val[64] = "", more;
  if (sscanf(arg, "%31s %63s %c", key, val, &more) != 2) return fprintf(stderr, "usage: set lr|optimizer|batch VALUE\n"), -1;
  if (need_model(r)) return -1;
  if (!r->have_cfg) return fprintf(stderr, "the model has no training section\n"), -1;
  if (r->cfg.nsections && (!strcmp(key, "lr") || !strcmp(key, "optimizer")))
    return fprintf(stderr, "set %s: the model has %d train sections, each with its own optimizer: set it in the "
                   "model file\n", key, r->cfg.nsections), -1;
  if (!strcmp(key, "lr")) {
    double lr;
    if (dlc_parse_real("set lr", val, DLC_MIN_LR, DLC_MAX_LR, &lr, &r->d)) return -1;
    r->cfg.opt.lr = r->cfg.sched.base_lr = lr;
    if (r->have_trainer) r->t.cfg.opt.lr = r->t.cfg.sched.base_lr = lr;
  } else if (!strcmp(key, "optimizer")) {
    int k = 0;
    while (k < OPT_COUNT && strcmp(pass_optim_names[k], val)) k++;
    if (k == OPT_COUNT) return fprintf(stderr, "set optimizer: sgd, adam, adamw, rmsprop or adagrad\n"), -1;
    trainer_set_optimizer(&r->cfg, (OptKind)k, "set optimizer");
    drop_trainer(r, 1); /* rebuilt on next use, weights kept, optimizer state restarts */
  } else if (!strcmp(key, "batch")) {
    if (dlc_parse_int("set batch", val, 1, DLC_MAX_BATCH, &r->cfg.batch, &r->d)) return -1;
    drop_trainer(r, 1);
  } else {
    return fprintf(stderr, "set: unknown setting '%s' (lr, optimizer, batch)\n", key), -1;
  }
  printf("%s = %s\n", key, val);
  return 0;
}

/* One series of the history as a small text chart. */
static void chart(const char *title, const Repl *r, int which) {
  double v[MAX_HISTORY], lo = INFINITY, hi = -INFINITY;
  int n = 0;
  for (int i = 0; i < r->nhist; i++) {
    const EpochStats *e = &r->hist[i];
    double x = which == 0 ? e->loss : which == 1 ? e->val_loss : which == 2 ? e->acc : e->val_acc;
    if (isnan(x)) continue;
    v[n++] = x, lo = fmin(lo, x), hi = fmax(hi, x);
  }
  if (!n) return;
  if (hi == lo) hi = lo + 1e-9;
  const int rows = 8;
  printf("%s (%d epochs, %.4g .. %.4g)\n", title, n, lo, hi);
  for (int row = rows - 1; row >= 0; row--) {
    printf("%9.4g |", lo + (hi - lo) * row / (rows - 1));
    for (int i = 0; i < n; i++) {
      int level = (int)lround((v[i] - lo) / (hi - lo) * (rows - 1));
      fputs(level == row ? " * " : level > row ? " | " : "   ", stdout);
    }
    putchar('\n');
  }
  printf("          +");
  for (int i = 0; i < n; i++) printf("---");
  printf("\n           ");
  for (int i = 0; i < n; i++) printf("%-3d", i + 1);
  putchar('\n');
}

/* The history as the table dlc plot draws (plot.c), into path. */
static int plot_file(const Repl *r, const char *path) {
  PlotTable t;
  RtError err;
  RtStatus st = plot_table_init(&t, "epoch,train_loss,train_acc,val_loss,val_acc", &err);
  for (int i = 0; i < r->nhist && !st; i++) {
    const EpochStats *e = &r->hist[i];
    double row[5] = {i + 1, e->loss, e->acc, e->val_loss, e->val_acc};
    st = plot_table_add(&t, row, &err);
  }
  if (!st) st = plot_write(&t, path, &err);
  plot_table_free(&t);
  if (st) return fprintf(stderr, "plot: %s\n", err.msg), -1;
  printf("wrote %s (%d epochs)\n", path, r->nhist);
  return 0;
}

static int cmd_plot(Repl *r, char *arg) {
  if (!r->nhist) return fprintf(stderr, "nothing to plot: train first\n"), -1;
  if (*arg) return plot_file(r, arg);
  chart("training loss", r, 0);
  chart("validation loss", r, 1);
  chart("training accuracy", r, 2);
  chart("validation accuracy", r, 3);
  return 0;
}

static int cmd_save(Repl *r, char *arg) {
  if (!*arg) return fprintf(stderr, "usage: save FILE.safetensors\n"), -1;
  if (need_trainer(r) || trainer_save(&r->t, arg)) return -1;
  printf("saved %s (epoch %lld, step %lld)\n", arg, (long long)r->t.epoch, (long long)r->t.step);
  return 0;
}

static int cmd_restore(Repl *r, char *arg) {
  if (!*arg) return fprintf(stderr, "usage: restore FILE.safetensors\n"), -1;
  if (need_trainer(r) || trainer_resume(&r->t, arg)) return -1;
  printf("restored %s (epoch %lld, step %lld)\n", arg, (long long)r->t.epoch, (long long)r->t.step);
  return 0;
}

/* Inference C for the current text and weights. */
static int cmd_emit(Repl *r, char *arg) {
  if (!*arg) return fprintf(stderr, "usage: emit OUT.c\n"), -1;
  if (need_trainer(r) || trainer_sync(&r->t)) return -1;
  Model m;
  if (fe_load_string(&m, r->path ? r->path : "<repl>", r->text, &r->d)) return -1;
  dlc_default_max(&m);
  Program p;
  int rc = -1;
  if (pass_pipeline_infer(&m.g, &p, &r->po, &r->d) == 0) {
    rc = dlc_write_c(&p, arg, &r->t.tensors, NULL, 0, &r->d);
    kir_program_free(&p);
  }
  fe_model_free(&m);
  if (rc == 0) printf("wrote %s and its header (weights embedded)\n", arg);
  return rc;
}

/* Shape and statistics of a value of the model on the first samples. */
static int cmd_stats(Repl *r, char *arg) {
  if (need_data(r) || trainer_sync(&r->t)) return -1;
  Graph *mg = &r->m.g;
  int id = -1;
  for (int i = 0; i < mg->nnodes; i++)
    if (mg->nodes[i].name && !strcmp(mg->nodes[i].name, arg)) id = i;
  if (id < 0) return fprintf(stderr, "no value named '%s'\n", arg), -1;
  const Node *n = &mg->nodes[id];
  char tb[128];
  printf("%s: %s (%s)\n", arg, ir_type_str(mg, n->dtype, &n->shape, tb, sizeof tb), ir_ops[n->op].name);
  const RtTensor *v = n->op == OP_PARAM ? rt_set_find(&r->t.tensors, n->name) : NULL;
  RtTensor *vals = NULL;
  int64_t sym[IR_MAX_SYMS];
  if (!v) { /* run the graph up to id on a batch with the interpreter */
    const RtDataset *ds = r->t.val.n ? &r->t.val : &r->t.train;
    if (ds->ncols) return fprintf(stderr, "stats of a computed value needs data x, y, not named files\n"), -1;
    int64_t b = ds->n < 16 ? ds->n : 16, feat = rt_dataset_features(ds), idx[16];
    for (int64_t i = 0; i < b; i++) idx[i] = i;
    for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = b;
    vals = rt_xcalloc((size_t)id + 1, sizeof *vals);
    float *x = rt_xmalloc(sizeof(float) * (size_t)(b * feat));
    rt_batch_gather(ds, idx, b, x, NULL);
    Graph g;
    ir_graph_init(&g, "stats", &r->d);
    ir_clone_header(&g, mg);
    int *map = rt_xmalloc(sizeof(int) * (size_t)(id + 1)), ok = 1;
    for (int i = 0; i <= id && ok; i++) ok = (map[i] = ir_clone_node(&g, mg, i, map)) >= 0;
    for (int i = 0; i < g.nnodes; i++) {
      const Node *gn = &g.nodes[i];
      if (gn->op == OP_PARAM) vals[i] = *rt_set_find(&r->t.tensors, gn->name);
      if (gn->op == OP_INPUT) {
        int64_t shape[IR_MAX_RANK];
        for (int k = 0; k < gn->shape.rank; k++) shape[k] = DIM_IS_SYM(gn->shape.d[k]) ? b : gn->shape.d[k];
        rt_tensor_alloc(&vals[i], gn->dtype, gn->shape.rank, shape, NULL);
        if (i == r->t.x_input) memcpy(vals[i].data, x, sizeof(float) * (size_t)(b * feat));
      }
    }
    RtError err;
    InterpOpts io = {0, 0};
    if (!ok || ir_interp(&g, vals, sym, &io, &err)) ok = 0, fprintf(stderr, "stats: %s\n", err.msg);
    if (ok) v = &vals[map[id]];
    for (int i = 0; i < g.nnodes && !ok; i++)
      if (g.nodes[i].op != OP_PARAM) rt_tensor_free(&vals[i]);
    rt_xfree(map);
    rt_xfree(x);
    if (!ok) {
      ir_graph_free(&g);
      rt_xfree(vals);
      return -1;
    }
    double sum = 0, sq = 0, lo = INFINITY, hi = -INFINITY;
    int64_t cnt = rt_tensor_numel(v);
    for (int64_t i = 0; i < cnt && v->dtype == DT_F32; i++) {
      double e = ((const float *)v->data)[i];
      sum += e, sq += e * e, lo = fmin(lo, e), hi = fmax(hi, e);
    }
    printf("  on %lld samples: mean %.5g, std %.5g, min %.5g, max %.5g\n", (long long)b, sum / (double)cnt,
           sqrt(fmax(0, sq / (double)cnt - (sum / (double)cnt) * (sum / (double)cnt))), lo, hi);
    for (int i = 0; i < g.nnodes; i++)
      if (g.nodes[i].op != OP_PARAM) rt_tensor_free(&vals[i]);
    ir_graph_free(&g);
    rt_xfree(vals);
    return 0;
  }
  double sum = 0, sq = 0, lo = INFINITY, hi = -INFINITY;
  int64_t cnt = rt_tensor_numel(v);
  for (int64_t i = 0; i < cnt; i++) {
    double e = ((const float *)v->data)[i];
    sum += e, sq += e * e, lo = fmin(lo, e), hi = fmax(hi, e);
  }
  printf("  mean %.5g, std %.5g, min %.5g, max %.5g\n", sum / (double)cnt,
         sqrt(fmax(0, sq / (double)cnt - (sum / (double)cnt) * (sum / (double)cnt))), lo, hi);
  return 0;
}

/* Splits line into words at blanks; "double quotes" keep blanks and \" a
 * quote.  Returns the count (at most max), or -1 for an unclosed quote. */
static int split_words(char *line, char **argv, int max) {
  int n = 0;
  char *in = line, *out = line;
  while (*in) {
    while (*in == ' ' || *in == '\t') in++;
    if (!*in) break;
    if (n == max) return -1;
    argv[n++] = out;
    int quoted = 0;
    for (; *in && (quoted || (*in != ' ' && *in != '\t')); in++) {
      if (*in == '"') quoted = !quoted;
      else if (*in == '\\' && in[1] == '"') *out++ = *++in;
      else *out++ = *in;
    }
    if (quoted) return -1;
    if (*in) in++;
    *out++ = 0;
  }
  return n;
}

static int cmd_generate(Repl *r, char *arg) {
  char *argv[32] = {"generate"};
  int argc = split_words(arg, argv + 1, 30);
  if (argc < 0) return fprintf(stderr, "generate: an unclosed quote, or more than 30 words\n"), -1;
  if (need_trainer(r) || trainer_sync(&r->t)) return -1;
  const RtVocab *v = r->t.vocab.n ? &r->t.vocab : &r->vocab;
  return dlc_generate(r->path ? r->path : "<repl>", r->text, &r->t.tensors, v, argc + 1, argv, &r->d);
}

static int cmd_help(Repl *r, char *arg);
static int cmd_quit(Repl *r, char *arg) {
  (void)r, (void)arg;
  return 1;
}

static const Command commands[] = {
    {"help", "", "this list", cmd_help},
    {"load", "MODEL.dl", "load a model (its training section sets the defaults)", cmd_load},
    {"reload", "", "read the model file again", cmd_reload},
    {"summary", "", "values, types and parameters", cmd_summary},
    {"ir", "", "the graph as text", cmd_ir},
    {"dot", "[FILE]", "the graph as Graphviz", cmd_dot},
    {"data", "[SPEC]", "load data (DIR, idx:I,L, csv:F, npy:X,Y; default: the model's)", cmd_data},
    {"train", "[EPOCHS]", "train (Ctrl-C stops after the current batch)", cmd_train},
    {"step", "[N|SECTION]", "N optimizer steps, or up to a train section's next", cmd_step},
    {"eval", "[test|val|train]", "loss and accuracy on a data set", cmd_eval},
    {"predict", "[INDEX]", "show a test sample and the top classes", cmd_predict},
    {"set", "lr|optimizer|batch V", "change a hyperparameter between epochs", cmd_set},
    {"plot", "[FILE.svg|png]", "loss and accuracy curves (as text, or into an image)", cmd_plot},
    {"stats", "NAME", "shape and statistics of a value or parameter", cmd_stats},
    {"save", "FILE", "checkpoint: weights, optimizer state, epoch", cmd_save},
    {"restore", "FILE", "load a checkpoint", cmd_restore},
    {"emit", "OUT.c", "inference C with the current weights embedded", cmd_emit},
    {"generate", "[--prime TEXT ...]", "text from a language model (dlc sample's flags)", cmd_generate},
    {"quit", "", "leave (also Ctrl-D)", cmd_quit},
};
#define NCOMMANDS ((int)(sizeof commands / sizeof commands[0]))

static int cmd_help(Repl *r, char *arg) {
  (void)r, (void)arg;
  for (int i = 0; i < NCOMMANDS; i++) printf("  %-8s %-22s %s\n", commands[i].name, commands[i].args, commands[i].help);
  printf("Anything else is read as .dl statements and added to the model, e.g.\n"
         "  h3 = tanh(fc2)          then 'stats h3'\n"
         "  block twice(x) { return x * 2 }\n");
  return 0;
}

/* A .dl statement: appended to the text if the whole still compiles. */
static int statement(Repl *r, const char *line) {
  if (need_model(r)) return -1;
  size_t n = strlen(r->text) + strlen(line) + 3;
  char *text = rt_xmalloc(n);
  snprintf(text, n, "%s\n%s\n", r->text, line);
  int rc = set_model(r, r->path ? r->path : "<repl>", text, 0);
  if (rc == 0) {
    rt_xfree(r->text);
    r->text = text;
    char name[128] = "";
    if (sscanf(line, " %127[A-Za-z0-9_] =", name) == 1) {
      for (int i = r->m.g.nnodes - 1; i >= 0; i--)
        if (r->m.g.nodes[i].name && !strcmp(r->m.g.nodes[i].name, name)) {
          char tb[128];
          const Node *nd = &r->m.g.nodes[i];
          printf("%s: %s\n", name, ir_type_str(&r->m.g, nd->dtype, &nd->shape, tb, sizeof tb));
          break;
        }
    }
  } else {
    rt_xfree(text);
  }
  return rc;
}

static int dispatch(Repl *r, char *line) {
  while (*line == ' ' || *line == '\t') line++;
  size_t len = strlen(line);
  while (len && (line[len - 1] == '\n' || line[len - 1] == ' ' || line[len - 1] == '\r')) line[--len] = 0;
  if (!*line || *line == '#') return 0;
  size_t w = strcspn(line, " \t");
  for (int i = 0; i < NCOMMANDS; i++)
    if (strlen(commands[i].name) == w && !strncmp(line, commands[i].name, w)) {
      char *arg = line + w;
      while (*arg == ' ' || *arg == '\t') arg++;
      return commands[i].run(r, arg);
    }
  if (!strcmp(line, "exit")) return 1;
  if (strchr(line, '=') || !strncmp(line, "block", 5) || !strncmp(line, "output", 6) || !strncmp(line, "freeze", 6))
    return statement(r, line);
  fprintf(stderr, "unknown command '%.*s' (type help)\n", (int)w, line);
  return -1;
}

/* --- completion -------------------------------------------------------------------- */

static char *complete_word(const char *text, int state) {
  static int i, phase;
  if (!state) i = 0, phase = 0;
  size_t n = strlen(text);
  for (; phase == 0 && i < NCOMMANDS; i++)
    if (!strncmp(commands[i].name, text, n)) return strdup(commands[i++].name); /* libedit frees it */
  if (phase == 0) phase = 1, i = 0;
  if (the_repl && the_repl->have_model) {
    const Graph *g = &the_repl->m.g;
    for (; i < g->nnodes; i++)
      if (g->nodes[i].name && !strncmp(g->nodes[i].name, text, n)) return strdup(g->nodes[i++].name);
  }
  return NULL;
}

static char **complete(const char *text, int start, int end) {
  (void)start, (void)end;
  return rl_completion_matches(text, complete_word);
}

/* --- the loop ------------------------------------------------------------------------ */

static char *next_line(Repl *r) {
  if (r->tty) {
    char *l = readline("dlc> ");
    if (l && *l) add_history(l);
    return l;
  }
  char *l = NULL;
  size_t cap = 0;
  if (getline(&l, &cap, stdin) < 0) {
    free(l);
    return NULL;
  }
  return l;
}

/* dlc repl [--threads N] [MODEL.dl]: 0, 1 after --help, or -1 after a message. */
static int parse_repl_args(int argc, char **argv, Repl *r, char **model) {
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: dlc repl [--threads N] [--no-fuse] [--no-tile] [-O0] [MODEL.dl]\n"
             "An interactive session; type help at the prompt.\n"
             "  --threads N    threads for the training step's parallel loops (default 1)\n"
             "  --no-fuse      no kernel fusion (every op its own loop nest)\n"
             "  --no-tile      no register tiles (matrix products in row order)\n"
             "  -O0            neither\n");
      return 1;
    }
    if (dlc_opt_flag(argv[i], &r->po.no_fuse, &r->po.no_tiles)) continue;
    if ((v = dlc_flag(argc, argv, &i, "--threads", &miss))) {
      if (dlc_parse_threads(v, 0, &r->threads, &r->d)) return -1;
    } else if (miss) return diag_plain(&r->d, argv[i], "needs a value"), -1;
    else if (argv[i][0] == '-') return diag_plain(&r->d, argv[i], "unknown option (see dlc repl --help)"), -1;
    else if (*model) return diag_plain(&r->d, argv[i], "only one model file"), -1;
    else *model = argv[i];
  }
  return 0;
}

int dlc_cmd_repl(int argc, char **argv) {
  static Repl r;
  memset(&r, 0, sizeof r);
  diag_init(&r.d, stderr);
  r.threads = 1;
  char *model = NULL;
  int args = parse_repl_args(argc, argv, &r, &model);
  if (args) return args > 0 ? 0 : 2;
  r.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  the_repl = &r;
  rl_attempted_completion_function = complete;
  if (r.tty) printf("dlc repl — type help for commands, Ctrl-D to leave\n");
  int failures = 0;
  if (model && cmd_load(&r, model)) failures++;
  for (;;) {
    char *line = next_line(&r);
    if (!line) break;
    r.d.nerrors = 0;
    int rc = dispatch(&r, line);
    free(line);
    fflush(stdout);
    if (rc > 0) break;
    if (rc < 0) failures++;
  }
  if (r.tty) putchar('\n');
  drop_trainer(&r, 0);
  drop_data(&r);
  if (r.have_keep) rt_set_free(&r.keep);
  if (r.have_model) fe_model_free(&r.m);
  rt_xfree(r.text);
  rt_xfree(r.path);
  /* scripted sessions report failed commands through the exit status */
  return !r.tty && failures ? 1 : 0;
}
