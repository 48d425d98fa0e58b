/*
 * train.c — `dlc train MODEL.dl` and `dlc MODEL.dl --train -o OUT.c`.
 *
 * `dlc train` reads the model's training section, lets flags override it,
 * loads the data, compiles the train and eval steps (trainer.c) and runs
 * the epochs: each epoch visits the training set in an order that depends
 * only on (seed, epoch), so a run resumed from a checkpoint continues
 * exactly as the uninterrupted run would have.  A live progress line on a
 * terminal, one summary line per epoch, an optional metrics CSV, and a
 * checkpoint after every epoch (atomic).  Ctrl-C stops after the current
 * batch; the last checkpoint stays intact.
 *
 * With --distributed (under mpirun) every process runs this same loop on
 * its share of each global batch (trainer.c sums the gradients); process
 * 0 alone prints, writes the metrics and the checkpoints.
 */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver/driver.h"
#include "driver/numbers.h"
#include "driver/trainer.h"

static const char *usage_train =
    "usage: dlc train MODEL.dl [options]\n"
    "Trains the model as its training section says; flags override it.\n"
    "  --epochs N             number of epochs\n"
    "  --batch N              mini-batch size\n"
    "  --lr X                 base learning rate\n"
    "  --optimizer NAME       sgd adam adamw rmsprop adagrad: another optimizer\n"
    "                         than the file's starts from torch's defaults (the\n"
    "                         lr stays; a note names what is dropped)\n"
    "  --seed S               initialisation, shuffling, split\n"
    "  --data SPEC            DIR (Fashion-MNIST), fashion_mnist:DIR,\n"
    "                         idx:IMAGES,LABELS, csv:FILE, npy:X,Y, or\n"
    "                         npy:NAME=FILE,... (each input and label by name),\n"
    "                         text:FILE (character windows; dlc sample)\n"
    "  --val-split F          fraction of the training data held out\n"
    "  --augment SPEC         none, or flip, crop=K and/or noise=S (e.g. flip,crop=2)\n"
    "  --schedule SPEC        constant, step:step_size=K[,gamma=G], exponential:gamma=G,\n"
    "                         cosine:t_max=T[,eta_min=E] or cyclic:base_lr=A,max_lr=B,\n"
    "                         step_size_up=K (the file's schedule's formulas)\n"
    "  --save FILE            checkpoint (safetensors) after every epoch\n"
    "  --resume FILE          continue from a checkpoint\n"
    "  --init FILE            start from these weights (fine-tuning)\n"
    "  --steps N              stop after N optimizer steps in all\n"
    "  --bptt K               a recurrent model trains on windows of K steps (its\n"
    "                         scans' length T made K: truncated backpropagation)\n"
    "  --carry-state          the scans' final states of a batch start the next\n"
    "                         (no gradient across; zero at each epoch's start),\n"
    "                         text windows laid out contiguous per batch row\n"
    "  --metrics FILE.csv     a row per batch and per epoch\n"
    "  --backend=jit|c|interp the LLVM JIT (default), emitted C compiled with $CC,\n"
    "                         or the reference interpreter\n"
    "  --threads N            threads for the step's parallel loops (default 1;\n"
    "                         results are the same bits for every N)\n"
    "  --no-fuse              no kernel fusion (every op its own loop nest)\n"
    "  --no-tile              no register tiles (matrix products in row order)\n"
    "  -O0                    neither\n"
    "  --dump-after=STEP|all  print the train pipeline's IR after a step to stderr\n"
    "  --quiet                no per-epoch lines\n"
    "  --distributed          data-parallel over the processes of mpirun -np P:\n"
    "                         each takes 1/P of every batch, gradients summed\n"
    "  --sync-bn              with --distributed: batch norm's statistics over the\n"
    "                         whole global batch (torch's SyncBatchNorm), not each\n"
    "                         process's rows\n"
    "  --no-overlap           with --distributed: sum the gradients after the whole\n"
    "                         backward pass, not bucket by bucket during it\n"
    "  --bucket-kb K          with --distributed: buckets of the gradient sums of at\n"
    "                         most K KiB (default 4096)\n";

typedef struct TrainFlags {
  const char *model, *epochs, *batch, *lr, *optimizer, *seed, *data, *val_split;
  const char *save, *resume, *init, *metrics, *backend, *augment, *steps, *threads, *schedule, *bptt, *bucket_kb;
  const char *dump_after;
  int quiet, distributed, carry_state, sync_bn, no_overlap;
  int no_fuse, no_tile;
} TrainFlags;

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

static int parse_flags(int argc, char **argv, TrainFlags *f, Diags *d) {
  memset(f, 0, sizeof *f);
  struct {
    const char *name;
    const char **dst;
  } table[] = {{"--epochs", &f->epochs}, {"--batch", &f->batch}, {"--lr", &f->lr}, {"--optimizer", &f->optimizer},
               {"--seed", &f->seed}, {"--data", &f->data}, {"--val-split", &f->val_split}, {"--save", &f->save},
               {"--resume", &f->resume}, {"--init", &f->init}, {"--metrics", &f->metrics}, {"--backend", &f->backend}, {"--augment", &f->augment}, {"--steps", &f->steps},
               {"--threads", &f->threads}, {"--schedule", &f->schedule}, {"--bptt", &f->bptt},
               {"--bucket-kb", &f->bucket_kb}, {"--dump-after", &f->dump_after}};
  for (int i = 1; i < argc; i++) {
    int miss = 0, hit = 0;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    if (!strcmp(argv[i], "--carry-state")) {
      f->carry_state = 1;
      continue;
    }
    if (dlc_opt_flag(argv[i], &f->no_fuse, &f->no_tile)) continue;
    if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "--distributed")) {
      *(argv[i][2] == 'q' ? &f->quiet : &f->distributed) = 1;
      continue;
    }
    if (!strcmp(argv[i], "--sync-bn") || !strcmp(argv[i], "--no-overlap")) {
      *(argv[i][2] == 's' ? &f->sync_bn : &f->no_overlap) = 1;
      continue;
    }
    for (size_t k = 0; k < sizeof table / sizeof table[0] && !hit && !miss; k++) {
      const char *v = dlc_flag(argc, argv, &i, table[k].name, &miss);
      if (v) *table[k].dst = v, hit = 1;
    }
    if (hit) continue;
    if (miss) return diag_plain(d, argv[i], "needs a value"), -1;
    if (argv[i][0] == '-') return diag_plain(d, argv[i], "unknown option (see dlc train --help)"), -1;
    if (f->model) return diag_plain(d, argv[i], "only one model file"), -1;
    f->model = argv[i];
  }
  if (!f->model) return diag_plain(d, "dlc train", "no model file given (see dlc train --help)"), -1;
  return 0;
}

/* --data SPEC into cfg (copied: cfg owns its strings).  cfg is changed
 * only when SPEC is good.  npy:NAME=PATH,... binds inputs by name. */
int dlc_parse_data_spec(const char *spec, TrainConfig *cfg, Diags *d) {
  if (!strncmp(spec, "npy:", 4) && strchr(spec, '=')) {
    TrainConfig *c = rt_xmalloc(sizeof *c);
    *c = *cfg;
    int rc = trainer_parse_bindings(spec + 4, c, "--data", d);
    if (!rc) memcpy(c->data_kind, "npy", 4), *cfg = *c;
    rt_xfree(c);
    return rc;
  }
  TrainConfig c = *cfg;
  char *s = rt_xstrdup(spec), *colon = strchr(s, ':'), *comma = NULL;
  if (colon) *colon = 0;
  const char *kind = colon ? s : "fashion_mnist";
  int two = !strcmp(kind, "idx") || !strcmp(kind, "npy"), rc = 0;
  if (two && (comma = strchr(colon + 1, ','))) *comma = 0; /* only the two-file kinds split at a comma */
  if ((strcmp(kind, "fashion_mnist") && strcmp(kind, "idx") && strcmp(kind, "csv") && strcmp(kind, "npy") &&
       strcmp(kind, "text")) ||
      (two && !comma))
    rc = (diag_plain(d, "--data", "expected DIR, fashion_mnist:DIR, idx:IMAGES,LABELS, csv:FILE, npy:X,Y, "
                     "npy:NAME=FILE,... or text:FILE; got '%s'", spec), -1);
  if (!rc && (trainer_cfg_str(c.data_kind, sizeof c.data_kind, kind, "--data", d) ||
              trainer_cfg_str(c.data_args[0], sizeof c.data_args[0], colon ? colon + 1 : s, "--data", d) ||
              trainer_cfg_str(c.data_args[1], sizeof c.data_args[1], comma ? comma + 1 : NULL, "--data", d)))
    rc = -1;
  rt_xfree(s);
  if (!rc) c.nbinds = 0, *cfg = c;
  return rc;
}

/* "none", or a comma-separated list of flip, crop=K and noise=S. */
static int parse_augment(const char *spec, TrainConfig *cfg, Diags *d) {
  cfg->augment_flip = 0, cfg->augment_crop = 0, cfg->augment_noise = 0;
  if (!strcmp(spec, "none")) return 0;
  char *s = rt_xstrdup(spec), *save = NULL;
  int rc = 0;
  for (char *tok = strtok_r(s, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
    if (!strcmp(tok, "flip")) cfg->augment_flip = 1;
    else if (!strncmp(tok, "crop=", 5)) rc = dlc_parse_int("--augment crop", tok + 5, 0, DLC_MAX_CROP, &cfg->augment_crop, d);
    else if (!strncmp(tok, "noise=", 6)) rc = dlc_parse_real("--augment noise", tok + 6, 0, 1e6, &cfg->augment_noise, d);
    else rc = -2;
  }
  rt_xfree(s);
  if (rc == -2) diag_plain(d, "--augment", "expected none, or flip, crop=K and/or noise=S, got '%s'", spec);
  return rc ? -1 : 0;
}

static const char *const sched_keys[] = {"step_size", "gamma", "t_max", "eta_min", "base_lr", "max_lr", "step_size_up"};
#define NSCHED_KEYS (int)(sizeof sched_keys / sizeof sched_keys[0])

/* One KEY=VALUE of --schedule NAME:... into s: the key's index, or -1
 * after a message. */
static int schedule_arg(RtSchedule *s, const char *tok, Diags *d) {
  double *slot[NSCHED_KEYS] = {NULL, &s->gamma, &s->t_max, &s->eta_min, &s->min_lr, &s->max_lr, &s->step_size_up};
  const char *eq = strchr(tok, '=');
  for (int k = 0; eq && k < NSCHED_KEYS; k++) {
    if (strlen(sched_keys[k]) != (size_t)(eq - tok) || strncmp(tok, sched_keys[k], (size_t)(eq - tok))) continue;
    char what[48];
    snprintf(what, sizeof what, "--schedule %s", sched_keys[k]);
    int bad = slot[k] ? dlc_parse_real(what, eq + 1, k == 3 ? 0 : 1e-300, 1e12, slot[k], d)
                      : dlc_parse_int(what, eq + 1, 1, INT32_MAX, &s->step_size, d);
    return bad ? -1 : k;
  }
  return diag_plain(d, "--schedule", "unknown setting '%s' (step_size, gamma, t_max, eta_min, base_lr, max_lr, "
                    "step_size_up)", tok), -1;
}

/* NAME or NAME:KEY=V,... into cfg->sched (the formulas of the model
 * file's schedule(...)), with the keys it needs there; cfg is changed
 * only when the spec is good. */
static int parse_schedule(const char *spec, TrainConfig *cfg, Diags *d) {
  static const char *const names[SCHED_COUNT] = {"constant", "step", "exponential", "cosine", "cyclic"};
  static const unsigned needs[SCHED_COUNT] = {0, 1u << 0, 1u << 1, 1u << 2, 7u << 4}; /* bits of sched_keys */
  static const char *const example[SCHED_COUNT] = {"", "step_size=10", "gamma=0.9", "t_max=10",
                                                   "base_lr=0.001,max_lr=0.1,step_size_up=2000"};
  size_t n = strcspn(spec, ":");
  int kind = 0;
  while (kind < SCHED_COUNT && (strlen(names[kind]) != n || strncmp(spec, names[kind], n))) kind++;
  if (kind == SCHED_COUNT)
    return diag_plain(d, "--schedule", "expected constant, step, exponential, cosine or cyclic, got '%s'", spec), -1;
  RtSchedule s = {(RtScheduleKind)kind, cfg->opt.lr, 1, 0.1, 1, 0, cfg->opt.lr, cfg->opt.lr, 2000};
  char *args = rt_xstrdup(spec[n] ? spec + n + 1 : ""), *save = NULL;
  unsigned given = 0;
  int k = 0;
  for (char *tok = strtok_r(args, ",", &save); tok && k >= 0; tok = strtok_r(NULL, ",", &save))
    if ((k = schedule_arg(&s, tok, d)) >= 0) given |= 1u << k;
  rt_xfree(args);
  if (k < 0) return -1;
  if ((given & needs[kind]) != needs[kind])
    return diag_plain(d, "--schedule", "%s needs %s", names[kind], example[kind]), -1;
  cfg->sched = s;
  return 0;
}

static int apply_flags(const TrainFlags *f, TrainConfig *cfg, Diags *d) {
  int64_t v;
  const char *per_section = f->lr ? "--lr" : f->optimizer ? "--optimizer" : NULL;
  if (cfg->nsections && per_section)
    return diag_plain(d, per_section, "the model has %d train sections, each with its own optimizer: set it in the "
                      "model file", cfg->nsections), -1;
  if (f->bucket_kb && !f->distributed)
    return diag_plain(d, "--bucket-kb", "sizes the gradient sums of --distributed; one process has none"), -1;
  if (f->sync_bn && !f->distributed)
    return diag_plain(d, "--sync-bn", "synchronises batch norm over the processes of --distributed; without it there "
                      "is one process, whose statistics are the batch's already"), -1;
  cfg->sync_bn = f->sync_bn;
  cfg->no_overlap = f->no_overlap;
  if (f->epochs && dlc_parse_int("--epochs", f->epochs, 1, DLC_MAX_EPOCHS, &cfg->epochs, d)) return -1;
  if (f->batch && dlc_parse_int("--batch", f->batch, 1, DLC_MAX_BATCH, &cfg->batch, d)) return -1;
  if (f->seed && (dlc_parse_int("--seed", f->seed, 0, INT64_MAX, &v, d) || (cfg->seed = (uint64_t)v, 0))) return -1;
  if (f->steps && dlc_parse_int("--steps", f->steps, 1, 1 << 24, &cfg->max_steps, d)) return -1;
  if (f->bptt && dlc_parse_int("--bptt", f->bptt, 1, 1 << 20, &cfg->bptt, d)) return -1;
  cfg->carry_state |= f->carry_state;
  if (f->val_split && dlc_parse_real("--val-split", f->val_split, 0, 0.99, &cfg->val_split, d)) return -1;
  if (f->optimizer) {
    int k = 0;
    while (k < OPT_COUNT && strcmp(pass_optim_names[k], f->optimizer)) k++;
    if (k == OPT_COUNT) return diag_plain(d, "--optimizer", "expected sgd, adam, adamw, rmsprop or adagrad, got '%s'", f->optimizer), -1;
    char why[64];
    snprintf(why, sizeof why, "--optimizer %s", f->optimizer);
    trainer_set_optimizer(cfg, (OptKind)k, why);
  }
  if (f->lr) {
    if (dlc_parse_real("--lr", f->lr, DLC_MIN_LR, DLC_MAX_LR, &cfg->opt.lr, d)) return -1;
    cfg->sched.base_lr = cfg->opt.lr;
  }
  if (trainer_check_optim(&cfg->opt, d)) return -1;
  if (f->init && f->resume)
    return diag_plain(d, "--init", "cannot be combined with --resume (--resume continues a run with its weights; "
                      "--init starts a new one from given weights)"), -1;
  if (f->data && dlc_parse_data_spec(f->data, cfg, d)) return -1;
  if (f->augment && parse_augment(f->augment, cfg, d)) return -1;
  if (f->schedule && parse_schedule(f->schedule, cfg, d)) return -1;
  if (f->backend) {
    if (strcmp(f->backend, "jit") && strcmp(f->backend, "c") && strcmp(f->backend, "interp"))
      return diag_plain(d, "--backend", "expected jit, c or interp, got '%s'", f->backend), -1;
    cfg->backend = !strcmp(f->backend, "jit") ? BACKEND_JIT : !strcmp(f->backend, "c") ? BACKEND_C : BACKEND_INTERP;
  }
  if (f->threads && dlc_parse_threads(f->threads, cfg->backend == BACKEND_INTERP, &cfg->threads, d)) return -1;
  return 0;
}

static void print_epoch(const Trainer *t, const EpochStats *es) {
  printf("epoch %lld/%lld: ", (long long)t->epoch, (long long)t->cfg.epochs);
  for (int s = 0; s < t->cfg.nsections; s++) printf("%s%s loss %.4f", s ? ", " : "", t->cfg.sec_name[s], es->section_loss[s]);
  if (!t->cfg.nsections) printf("loss %.4f", es->loss);
  if (!isnan(es->acc)) printf(", acc %.2f%%", 100 * es->acc);
  for (int s = 0; s < t->cfg.nsections && !isnan(es->val_loss); s++)
    printf(", val %s loss %.4f", t->cfg.sec_name[s], es->val_section_loss[s]);
  if (!t->cfg.nsections && !isnan(es->val_loss)) printf(", val loss %.4f", es->val_loss);
  if (!isnan(es->val_acc)) printf(", val acc %.2f%%", 100 * es->val_acc);
  printf(", lr %.4g, %.1f s (%.0f samples/s)\n", es->lr, es->seconds, (double)t->train.n / es->seconds);
  fflush(stdout);
}

#define METRICS_HEADER "epoch,batch,step,train_loss,train_acc,val_loss,val_acc,lr,seconds"

#define METRICS_COLS 9

/* The header, with columns NAME_loss, then val_NAME_loss, per named
 * section. */
static const char *metrics_header(const Trainer *t, char *buf, size_t len) {
  size_t at = (size_t)snprintf(buf, len, "%s", METRICS_HEADER);
  for (int s = 0; s < t->cfg.nsections && at < len; s++)
    at += (size_t)snprintf(buf + at, len - at, ",%s_loss", t->cfg.sec_name[s]);
  for (int s = 0; s < t->cfg.nsections && at < len; s++)
    at += (size_t)snprintf(buf + at, len - at, ",val_%s_loss", t->cfg.sec_name[s]);
  return buf;
}

/* Adds a row to the metrics log (the 9 columns of every run, then with
 * named sections each one's loss: the batch's in its section's column,
 * the epoch's mean in each; then each one's validation loss), and
 * rewrites the file when write. */
static int record_row(const TrainFlags *f, RtMetricsLog *log, const Trainer *t, double *row, const double *sec,
                      const double *val, int write, Diags *d) {
  RtError err;
  int n = t->cfg.nsections;
  if (!f->metrics) return 0;
  for (int s = 0; s < n; s++) row[METRICS_COLS + s] = sec[s], row[METRICS_COLS + n + s] = val ? val[s] : NAN;
  if (rt_metrics_add(log, row, METRICS_COLS + 2 * n, &err) || (write && rt_metrics_write(log, f->metrics, &err)))
    return diag_plain(d, f->metrics, "%s", err.msg), -1;
  return 0;
}

/* An epoch's row: batch 0 says it sums up the epoch. */
static int record(const TrainFlags *f, RtMetricsLog *log, const Trainer *t, const EpochStats *es, Diags *d) {
  double row[METRICS_COLS + 2 * FE_MAX_SECTIONS] = {(double)t->epoch, 0, (double)t->step, es->loss, es->acc,
                                                    es->val_loss, es->val_acc, es->lr, es->seconds};
  return record_row(f, log, t, row, es->section_loss, es->val_section_loss, 1, d);
}

typedef struct BatchLog {
  const TrainFlags *f;
  RtMetricsLog *log;
  Diags *d;
} BatchLog;

/* A batch's row (batch 1, 2, ... of the epoch in progress); the file is
 * rewritten with the epoch's row. */
static int record_batch(void *ctx, const Trainer *t, const BatchStats *bs) {
  BatchLog *bl = ctx;
  double row[METRICS_COLS + 2 * FE_MAX_SECTIONS] = {(double)t->epoch + 1, (double)bs->batch, (double)t->step, bs->loss,
                                                    bs->acc, NAN, NAN, bs->lr, bs->seconds};
  double sec[FE_MAX_SECTIONS];
  for (int s = 0; s < FE_MAX_SECTIONS; s++) sec[s] = s == bs->section ? bs->loss : NAN;
  return record_row(bl->f, bl->log, t, row, sec, NULL, 0, bl->d);
}

/* --steps N reached inside an epoch: the checkpoint holds the steps done
 * (dlc.epoch_batches says how far into the epoch), and --resume goes on
 * from the next batch. */
static int stop_at_steps(Trainer *t, const TrainFlags *f, RtMetricsLog *log, Diags *d) {
  RtError err;
  printf("stopped after %lld steps, batch %lld of epoch %lld\n", (long long)t->step, (long long)t->epoch_batches,
         (long long)t->epoch + 1);
  fflush(stdout);
  if (f->metrics && rt_metrics_write(log, f->metrics, &err)) return diag_plain(d, f->metrics, "%s", err.msg), -1;
  return f->save && trainer_save(t, f->save) ? -1 : 0;
}

static int train_loop(Trainer *t, const TrainFlags *f, Diags *d) {
  RtMetricsLog log;
  RtError err;
  char header[sizeof METRICS_HEADER + FE_MAX_SECTIONS * 144];
  if (rt_metrics_init(&log, metrics_header(t, header, sizeof header), &err))
    return diag_plain(d, "--metrics", "%s", err.msg), -1;
  BatchLog bl = {f, &log, d};
  if (f->metrics) t->on_batch = record_batch, t->batch_ctx = &bl;
  int tty = isatty(STDERR_FILENO) && (!t->dist || t->dist->rank == 0), rc = 0;
  if (t->cfg.max_steps && t->step >= t->cfg.max_steps)
    fprintf(stderr, "note: the run has taken %lld steps already; --steps %lld trains no more\n", (long long)t->step,
            (long long)t->cfg.max_steps);
  signal(SIGINT, on_sigint);
  while (t->epoch < t->cfg.epochs && rc == 0 && !(t->cfg.max_steps && t->step >= t->cfg.max_steps)) {
    EpochStats es;
    rc = trainer_epoch(t, &es, tty, &interrupted);
    if (rc == 2) rc = stop_at_steps(t, f, &log, d);
    if (rc || t->epoch_batches) break;
    t->epoch++;
    es.val_loss = es.val_acc = NAN;
    if (t->val.n && trainer_evaluate(t, &t->val, &es.val_loss, &es.val_acc)) rc = -1;
    for (int s = 0; s < FE_MAX_SECTIONS; s++) es.val_section_loss[s] = t->val.n ? t->section_loss[s] : NAN;
    if (!f->quiet) print_epoch(t, &es);
    if (!rc && trainer_check_loss(t, &es)) rc = -1;
    if (!rc && (record(f, &log, t, &es, d) || (f->save && trainer_save(t, f->save)))) rc = -1;
  }
  signal(SIGINT, SIG_DFL);
  t->on_batch = NULL;
  rt_metrics_free(&log);
  if (rc == 1) fprintf(stderr, "dlc train: interrupted in epoch %lld; %s\n", (long long)t->epoch + 1,
                       f->save ? "the checkpoint holds the last finished epoch" : "nothing was saved");
  return rc;
}

static int final_test(Trainer *t) {
  if (!t->test.n) return 0;
  double loss, acc;
  if (trainer_evaluate(t, &t->test, &loss, &acc)) return -1;
  printf("test: ");
  for (int s = 0; s < t->cfg.nsections; s++) printf("%s%s loss %.4f", s ? ", " : "", t->cfg.sec_name[s], t->section_loss[s]);
  if (!t->cfg.nsections) printf("loss %.4f", loss);
  if (!isnan(acc)) printf(", accuracy %.2f%%", 100 * acc);
  if (!isnan(t->top5)) printf(", top-5 %.2f%%", 100 * t->top5);
  if (t->autoencode && t->cfg.augment_noise > 0) printf(", noisy-input baseline MSE %.4f", t->baseline);
  printf(" (%lld samples)\n", (long long)t->test.n);
  return 0;
}

/* The model's parameters that the file has, checked for shape; the others
 * start from the seed, the file's other tensors are left out. */
static int load_init(const char *path, const Model *m, RtTensorSet *set, Diags *d) {
  RtError err;
  RtTensorSet file;
  rt_set_init(set);
  rt_set_init(&file);
  if (rt_safetensors_read(path, &file, &err)) return diag_plain(d, path, "%s", err.msg), -1;
  int loaded = 0, fresh = 0, rc = 0;
  for (int i = 0; i < m->g.nnodes && !rc; i++) {
    const Node *n = &m->g.nodes[i];
    if (n->op != OP_PARAM) continue;
    RtTensor *t = rt_set_find(&file, n->name);
    if (!t) {
      fresh++;
      continue;
    }
    char want[128], got[128];
    int same = t->dtype == n->dtype && t->rank == n->shape.rank;
    for (int k = 0; same && k < t->rank; k++) same = t->shape[k] == n->shape.d[k];
    if (!same) {
      diag_plain(d, path, "tensor '%s' is %s but the model needs %s", n->name,
                 rt_shape_str(got, sizeof got, t->dtype, t->rank, t->shape),
                 ir_type_str(&m->g, n->dtype, &n->shape, want, sizeof want));
      rc = -1;
    } else if (rt_set_add(set, n->name, t, &err)) {
      rc = -1;
    } else {
      loaded++;
    }
  }
  rt_set_free(&file);
  if (!rc) printf("%s: %d parameters loaded, %d initialised from the seed\n", path, loaded, fresh);
  return rc;
}

/* --distributed: joins the processes of the run; all but process 0 keep
 * quiet (their stdout goes nowhere) and write no files.  1 after an error. */
static int join_world(TrainFlags *f, RtDist *dist, Diags *d) {
  RtError err;
  if (!f->distributed) return 0;
  if (rt_dist_init(dist, &err)) return diag_plain(d, "--distributed", "%s", err.msg), 1;
  if (dist->rank == 0) return 0;
  f->save = f->metrics = NULL;
  fflush(stdout);
  return freopen("/dev/null", "w", stdout) ? 0 : (diag_plain(d, "--distributed", "cannot silence process %d", dist->rank), 1);
}

/* The figures of the gradient exchange, after the run. */
static void print_dist(const Trainer *t) {
  const RtDist *w = t->dist;
  int64_t steps = t->step > 0 ? t->step : 1;
  printf("distributed: %d processes, %lld allreduce calls, %.2f MB sent into them per process (%.1f KB a step), "
         "%.3f s in them (%.2f ms a step)\n", w->size, (long long)w->calls, w->bytes / 1e6, w->bytes / 1e3 / (double)steps,
         w->seconds, 1e3 * w->seconds / (double)steps);
}

static void fit_epochs(Trainer *t) {
  int64_t nb = (t->train.n + t->cfg.batch - 1) / t->cfg.batch, e = (t->cfg.max_steps + nb - 1) / nb;
  t->cfg.epochs = e < DLC_MAX_EPOCHS ? e : DLC_MAX_EPOCHS;
}

int dlc_cmd_train(int argc, char **argv) {
  Diags d;
  diag_init(&d, stderr);
  TrainFlags f;
  int rc = parse_flags(argc, argv, &f, &d);
  if (rc) return rc > 0 ? dlc_usage(usage_train, 0) : 2;
  if (f.dump_after && pass_check_step_name(f.dump_after, &d)) return 2;
  Model m;
  if (dlc_load_trainable(&m, f.model, "fine-tune", &d)) return 1;
  TrainConfig cfg;
  RtTensorSet init;
  rt_set_init(&init);
  int status = 1;
  if (trainer_config(&m, &cfg, &d) || apply_flags(&f, &cfg, &d)) {
    fe_model_free(&m);
    return 2;
  }
  PassOpts po = {.dump_after = f.dump_after, .dump_to = stderr, .no_fuse = f.no_fuse, .no_tiles = f.no_tile};
  cfg.pass = &po;
  Trainer t;
  RtDist dist = {.size = 1};
  if (join_world(&f, &dist, &d)) goto out_model;
  int64_t kb;
  if (f.bucket_kb) {
    if (dlc_parse_int("--bucket-kb", f.bucket_kb, 1, 1 << 20, &kb, &d)) goto out_model;
    dist.bucket_bytes = kb << 10;
  }
  if (f.init && load_init(f.init, &m, &init, &d)) goto out_model;
  if (trainer_prepare(&t, &m, &cfg, &d)) goto out;
  if (f.distributed) t.dist = &dist;
  if (trainer_load_data(&t) || trainer_fit_batch(&t) < 0) goto out;
  cfg.batch = t.cfg.batch;
  if (cfg.max_steps && !f.epochs) fit_epochs(&t); /* --steps alone: as many epochs as the steps take */
  if (trainer_build(&t, f.init ? &init : NULL) || (f.resume && trainer_resume(&t, f.resume))) goto out;
  printf("training %s: %lld samples (%lld validation, %lld test), batch %lld, ", m.g.name, (long long)t.train.n,
         (long long)t.val.n, (long long)t.test.n, (long long)cfg.batch);
  for (int s = 0; s < cfg.nsections; s++)
    printf("%s %s (%s, lr %g, %d step%s a round), ", s ? "then" : "sections", cfg.sec_name[s],
           pass_optim_names[cfg.sec_opt[s].kind], cfg.sec_opt[s].lr, cfg.sec_repeat[s], cfg.sec_repeat[s] > 1 ? "s" : "");
  if (!cfg.nsections) printf("%s, lr %g, ", pass_optim_names[cfg.opt.kind], cfg.opt.lr);
  printf("%s backend", cfg.backend == BACKEND_JIT ? "jit" : cfg.backend == BACKEND_C ? "c" : "interp");
  if (t.dist) printf(", %d processes of %lld rows", dist.size, (long long)trainer_rows(&t));
  printf("\n");
  rc = train_loop(&t, &f, &d);
  if (rc == 0 && final_test(&t) == 0) status = 0;
  if (rc == 1) status = 130;
  if (t.dist && status == 0) print_dist(&t);
out:
  trainer_free(&t);
out_model:
  rt_set_free(&init);
  fe_model_free(&m);
  if (status == 0 || status == 130) rt_dist_finalize(&dist); /* after an error the others may wait: mpirun ends them */
  return status;
}

/* --- dlc check ---------------------------------------------------------------------- */

char *dlc_describe_sections(const Model *m) {
  const TrainSpec *ts = &m->train;
  if (!ts->nsections) return NULL;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  fprintf(f, "\ntrain sections, in the order of a round:\n");
  for (int s = 0; s < ts->nsections; s++) {
    const TrainSection *sec = &ts->sections[s];
    int64_t count = 0;
    for (int k = 0; k < sec->nparams; k++) count += ir_numel_max(&m->g, &m->g.nodes[sec->params[k]].shape);
    fprintf(f, "  %s: %s, %d step%s a round, %s%s%s%lld trainable parameters:", sec->name,
            sec->optimizer.name ? sec->optimizer.name : "-", sec->repeat, sec->repeat > 1 ? "s" : "",
            sec->schedule.name ? "schedule " : "", sec->schedule.name ? sec->schedule.name : "",
            sec->schedule.name ? ", " : "", (long long)count);
    for (int k = 0; k < sec->nparams; k++) fprintf(f, "%s %s", k ? "," : "", m->g.nodes[sec->params[k]].name);
    fprintf(f, "\n");
  }
  fclose(f);
  char *out = rt_xstrdup(buf);
  free(buf);
  return out;
}

/* --- training code as C ------------------------------------------------------------- */

int dlc_emit_train(Model *m, const char *path, const PassOpts *po, Diags *d) {
  TrainConfig cfg;
  if (trainer_config(m, &cfg, d)) return 1;
  cfg.backend = BACKEND_INTERP; /* the program is emitted, not compiled here */
  cfg.pass = po;
  cfg.grad_collectives = 1; /* summed over MPI when the C is built with -DDLC_MPI */
  Trainer t;
  int status = 1;
  if (trainer_init(&t, m, &cfg, NULL, d) == 0 && trainer_program(&t) == 0) {
    const Program *p = &t.prog;
    /* the C, its header and the initial weights from the seed (for the
     * standalone trainer to load), written as one set */
    size_t n = strlen(path);
    char init[1024];
    snprintf(init, sizeof init, "%.*s.init.safetensors", (int)(n > 2 && !strcmp(path + n - 2, ".c") ? n - 2 : n), path);
    RtEncoded weights;
    RtError err;
    const char *names[FE_MAX_SECTIONS], *funcs[FE_MAX_SECTIONS];
    double lr[FE_MAX_SECTIONS];
    for (int s = 0; s < cfg.nsections; s++) names[s] = cfg.sec_name[s], funcs[s] = t.sec_func[s], lr[s] = cfg.sec_opt[s].lr;
    CgSections sec = {cfg.nsections, names, funcs, cfg.sec_repeat, lr};
    if (rt_safetensors_encode(init, &t.tensors, &weights, &err)) diag_plain(d, init, "%s", err.msg);
    else status = dlc_write_c_sections(p, path, NULL, cfg.nsections ? &sec : NULL, &weights, 1, d) ? 1 : 0;
    rt_encoded_free(&weights);
  }
  trainer_free(&t);
  return status;
}
