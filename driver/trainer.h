/*
 * trainer.h — a model being trained: its compiled train and eval steps,
 * its parameters and optimizer state, its data, and where it is in the run.
 * `dlc train` drives one from the command line; the REPL drives one
 * interactively.
 */
#ifndef DLC_TRAINER_H
#define DLC_TRAINER_H

#include <signal.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/dist.h"

/* The reference interpreter, emitted C in a shared object, or the LLVM JIT. */
typedef enum Backend { BACKEND_INTERP, BACKEND_C, BACKEND_JIT } Backend;

/* Settings of a run: the model's training section, overridden by flags.
 * A plain value that owns every string it holds, so it can be copied and
 * outlive the model it was read from (the REPL keeps one across reloads). */
typedef struct TrainConfig {
  OptimSpec opt;
  RtSchedule sched;
  int64_t batch, epochs;
  uint64_t seed;
  double val_split;
  Backend backend;
  int threads;                /* threads of the compiled step's parallel loops (--threads; 0 or 1: one) */
  int sync_bn;                /* with a dist: batch norm's statistics over every process (--sync-bn) */
  int grad_collectives;       /* emitted training C: each gradient through the collective hook */
  int no_overlap;             /* with a dist: sum the gradients after the backward pass (--no-overlap) */
  char data_kind[16];         /* fashion_mnist idx csv npy, "" for none */
  char data_args[2][1024];    /* paths, "" when not given */
  int nbinds;                 /* npy:NAME=PATH,...: inputs bound by name (0: the other forms) */
  char bind_name[RT_DATA_MAX_COLS][64];
  char bind_path[RT_DATA_MAX_COLS][1024];
  int64_t max_steps;          /* stop after this many optimizer steps in all (0: no limit) */
  int64_t bptt;               /* windows of this many steps (the scans' T made it; 0: the model's) */
  int carry_state;            /* scans' final states start the next batch (TBPTT); rows laid out contiguous */
  int label_column;           /* csv */
  int augment_flip;           /* random horizontal flips */
  int64_t augment_crop;       /* random shifts of up to this many pixels */
  double augment_noise;       /* Gaussian noise on the input (denoising) */
  char classes[256];          /* a subset of the classes, "" for all */
  const PassOpts *pass;       /* dumps and checks of the train pipeline (NULL: verify graphs) */
  int nsections;              /* named train sections (0: the one unnamed section) */
  char sec_name[FE_MAX_SECTIONS][64];
  OptimSpec sec_opt[FE_MAX_SECTIONS]; /* each section's optimizer (opt is sec_opt[0]) */
  int sec_repeat[FE_MAX_SECTIONS];    /* its steps in a row per round */
  int sec_has_sched[FE_MAX_SECTIONS]; /* a schedule of its own (else sched, scaled) */
  RtSchedule sec_sched[FE_MAX_SECTIONS];
} TrainConfig;

/* Where a model input's batch comes from: the data set's x or y (the
 * fixed forms), the clean batch of feed target_feed (an autoencoder's
 * label), or a named column of the data set (>= 0). */
enum { FEED_X = -1, FEED_Y = -2, FEED_TARGET = -3 };
typedef struct TrainFeed {
  int node;                   /* model graph input */
  int source;
} TrainFeed;
#define TRAINER_MAX_FEEDS (RT_DATA_MAX_COLS + 2)

/* One optimizer step's figures, for a per-batch metrics row. */
typedef struct BatchStats {
  int64_t batch, batches;     /* 1-based within the epoch, and the epoch's count */
  double loss, acc, lr, seconds;
  int section;                /* the named section whose step it was, or -1 */
} BatchStats;

#define TRAINER_MAX_CARRY 64
typedef struct Trainer Trainer;
struct Trainer {
  Model *m;
  TrainConfig cfg;
  Diags *d;
  Graph tg, eg;               /* train step (of the first named section), evaluation */
  Graph sec_g[FE_MAX_SECTIONS - 1]; /* the train steps of the other named sections */
  OptimSpec opt;              /* the optimizer the train step was built with */
  OptimSpec sec_opt[FE_MAX_SECTIONS]; /* ... each named section's */
  char sec_func[FE_MAX_SECTIONS][80]; /* their entry points, train_step_NAME */
  int loss;                   /* model graph node */
  int x_input, y_input;       /* model graph nodes fed by the data set */
  int acc_output;             /* index among the model's outputs of the logits, or -1 */
  RtTensorSet tensors;        /* parameters and optimizer state */
  Program prog;               /* BACKEND_C, BACKEND_JIT */
  CModule *mod;
  RtPool *pool;               /* cfg.threads > 1: made with the first backend, kept for the next ones */
  int own_threads;            /* the step runs its loops on threads of its own (OpenMP), not on pool */
  int64_t epoch, step;        /* epochs finished, optimizer steps taken */
  RtDataset train, val, test;
  int autoencode;             /* the label is the clean input (same shape as x) */
  int nfeeds, target_feed;    /* the model's inputs and their sources; target_feed -1 unless autoencode */
  TrainFeed feeds[TRAINER_MAX_FEEDS];
  int64_t epoch_batches;      /* batches done of the unfinished epoch (a run stopped by --steps) */
  int (*on_batch)(void *ctx, const Trainer *t, const BatchStats *bs); /* optional; nonzero stops */
  void *batch_ctx;
  double baseline;            /* last evaluation: MSE of the noisy input itself */
  double top5;                /* last evaluation: top-5 accuracy */
  RtVocab vocab;              /* text data: the corpus's vocabulary, saved as dlc.vocab (n = 0: none) */
  double section_loss[FE_MAX_SECTIONS]; /* last evaluation, named sections: each one's loss */
  /* Data-parallel training (set dist before trainer_build; NULL: one
   * process).  The train step is then split: tg computes the loss and
   * outputs every gradient (from output grad_out on, into gbuf), the
   * gradients are summed over the processes, and ug applies the update. */
  RtDist *dist;
  Graph ug;                   /* the update step */
  int grad_out;               /* the first gradient among tg's outputs */
  float *gbuf;                /* every gradient, then the tail: loss, correct count, stop requests */
  int64_t *goff;              /* each gradient's offset in gbuf */
  int64_t gsize;              /* floats of gbuf before the tail */
  int stop_local, stop_any;   /* this process was asked to stop; some process was (after a step) */
  /* --bptt / --carry-state: m->g is the model's window graph
   * (pass_window_graph) while the trainer lives; the model's own graph
   * and training section are put back by trainer_free. */
  int windowed;
  Graph orig_g;
  TrainSpec orig_train;
  int ncarry;                 /* carried states: inputs and outputs "stateJ.NAME" */
  const char *carry_name[TRAINER_MAX_CARRY];
  int64_t carry_row[TRAINER_MAX_CARRY]; /* floats per batch row */
  float *carry[2][TRAINER_MAX_CARRY];   /* the training batches' states, the evaluation's */
  float coll_w;               /* --sync-bn: this process's share of the global batch in the step running */
  int coll_failed;            /* --sync-bn: a collective of the step failed (reported) */
  int64_t *bucket_left;       /* overlap (compiled backends): floats of each bucket of gbuf not final yet */
  int64_t nbuckets;
};

/* Every integer value of ds that indexes a gather or index_select
 * (embedding) of the model through views is within that op's axis
 * (idcheck.c): 0, or -1 with an error at the op's line naming the first
 * value out of range, its sample and position. */
int trainer_check_ids(Trainer *t, const RtDataset *ds);

/* torch.optim's defaults for optimizer kind with learning rate lr. */
void trainer_optim_defaults(OptimSpec *o, OptKind kind, double lr);
/* torch.optim's checks of o's hyperparameters (lr, eps, momenta and decays
 * finite and >= 0, betas in [0, 1), nesterov only with momentum > 0 and
 * no dampening): 0, or -1 with a message naming the first that fails. */
int trainer_check_optim(const OptimSpec *o, Diags *d);
/* Switches cfg to optimizer kind (why: "--optimizer adam"): a different
 * kind starts from torch's defaults for it, keeping the learning rate and
 * the lr groups, and a note on stderr names the hyperparameters of the
 * old one that are not carried over; the same kind changes nothing. */
void trainer_set_optimizer(TrainConfig *cfg, OptKind kind, const char *why);
/* Copies src into dst[size] for cfg field what; -1 with a message when
 * it does not fit.  src NULL copies "". */
int trainer_cfg_str(char *dst, size_t size, const char *src, const char *what, Diags *d);
/* NAME=PATH,... into cfg's bindings (what names the setting in messages);
 * cfg is changed only when the whole spec is good. */
int trainer_parse_bindings(const char *spec, TrainConfig *cfg, const char *what, Diags *d);
/* Reads the model's training section into cfg: data paths that are
 * relative resolve against the model file's directory.  Returns 0 or -1. */
int trainer_config(const Model *m, TrainConfig *cfg, Diags *d);
/* trainer_prepare then trainer_build. */
int trainer_init(Trainer *t, Model *m, const TrainConfig *cfg, const RtTensorSet *init, Diags *d);
/* Everything but compiling: enough to load data (trainer_load_data), so
 * the batch can be fitted to it before trainer_build. */
int trainer_prepare(Trainer *t, Model *m, const TrainConfig *cfg, Diags *d);
/* Builds the graphs and the backend for t->cfg.batch, and initialises
 * parameters from the seed (or takes them from init, a set of named
 * tensors, when not NULL).  A step whose static storage exceeds
 * TRAINER_STATIC_LIMIT is refused with a message naming the limit. */
int trainer_build(Trainer *t, const RtTensorSet *init);
#define TRAINER_STATIC_LIMIT (((int64_t)2 << 30) - ((int64_t)64 << 20)) /* 2 GiB less room for code */
/* After loading: an empty training set is an error (-1); a batch larger
 * than the training set is clamped to it with a note (returns 1: the
 * step must be built, or rebuilt, for the new batch); else 0. */
int trainer_fit_batch(Trainer *t);
/* Lowers the train and eval steps into t->prog (the kernel stage of the
 * train pipeline); trainer_build does it for the compiled backends. */
int trainer_program(Trainer *t);
/* Loads the data set named by cfg into t->train, t->val, t->test. */
int trainer_load_data(Trainer *t);
/* One optimizer step on a batch: x (f32) and y (the label input's dtype),
 * n samples.  Returns the loss and, when there are logits, the number of
 * correct top-1 predictions. */
int trainer_step(Trainer *t, int64_t n, const float *x, const void *y, double lr, double *loss, int64_t *correct);
/* Mean loss and accuracy over a data set, in batches. */
int trainer_evaluate(Trainer *t, const RtDataset *ds, double *loss, double *acc);
typedef struct EpochStats {
  double loss, acc, val_loss, val_acc, lr, seconds;
  double section_loss[FE_MAX_SECTIONS]; /* named sections: the mean loss of each one's steps */
  double val_section_loss[FE_MAX_SECTIONS]; /* ... and each one's validation loss */
} EpochStats;

/* With named sections, optimizer step k (from 0) of the run is a step of
 * section s: the rounds take each section's repeat steps in turn.  Returns
 * s and sets *nth to the section's own steps before it (its Adam t - 1).
 * Without named sections: 0 and k. */
int trainer_section_of(const Trainer *t, int64_t k, int64_t *nth);
/* The learning rate of optimizer step k (from 0) of the run in this
 * epoch: a named section with a schedule of its own takes it at (epoch,
 * the section's own steps before k); otherwise the run's schedule at
 * (epoch, k), scaled for a named section by its lr over the first
 * section's.  (trainer_step's lr stands for the run's schedule.) */
double trainer_step_lr(const Trainer *t, int64_t k);

/* One pass over the training set in the order of (seed, epoch), with a
 * progress line on stderr when tty.  Stops after the current batch once
 * *stop is set.  Returns 0, -1 on error, 1 if stopped; t->epoch is not
 * advanced (the caller decides whether the epoch counts).  An epoch that
 * a run with cfg.max_steps left unfinished (t->epoch_batches > 0)
 * continues at its next batch, the skipped batches' augmentation drawn
 * again so the rest is the same; reaching cfg.max_steps before the end
 * returns 2 with t->epoch_batches set. */
int trainer_epoch(Trainer *t, EpochStats *es, int tty, volatile sig_atomic_t *stop);
/* -1 with a message when the epoch's training (or validation) loss is
 * not finite: the run diverged and must not be saved. */
int trainer_check_loss(Trainer *t, const EpochStats *es);
/* Logits of n samples x (the model's input layout) into logits (n x classes);
 * y are their labels (the eval step computes the loss too). */
int trainer_predict(Trainer *t, int64_t n, const float *x, const void *y, float *logits);
/* The most rows one call of a compiled step takes: the batch, or with
 * t->dist this process's share of it, ceil(batch / processes). */
int64_t trainer_rows(const Trainer *t);
/* With t->dist: batch norm's running statistics (each process's own)
 * become their mean over the processes, and the processes check that
 * their parameters agree bit for bit.  Without: nothing. */
int trainer_dist_sync(Trainer *t);
/* The hook of --sync-bn's collectives (IrCollective; ctx a Trainer with a
 * dist): the grad step calls it between kernels on batch norm's statistics. */
void trainer_collective(void *ctx, int kind, float *data, int64_t n);
/* Brings t->tensors up to date with the backend. */
int trainer_sync(Trainer *t);
/* Checkpoints: parameters, optimizer state, and metadata (epoch, step,
 * seed, model, optimizer); written atomically.  trainer_resume trusts
 * nothing: it checks every tensor and the metadata against this run
 * before it copies anything, so a refused file leaves t as it was. */
int trainer_save(Trainer *t, const char *path);
int trainer_resume(Trainer *t, const char *path);
void trainer_free(Trainer *t);

#endif
