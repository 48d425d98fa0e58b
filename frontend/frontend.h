/*
 * frontend.h — the .dl language: lexer, parser and the builder that turns a
 * model file into a Graph (see docs/language.md for the language itself).
 *
 * fe_load_* reads a whole model.  Errors are reported to the Diags as they
 * are found (several per run where the parser can recover); the return
 * value is the number of errors, and a model with errors must not be used.
 */
#ifndef DLC_FRONTEND_H
#define DLC_FRONTEND_H

#include "ir/ir.h"

#define FE_MAX_ARGS 16

/* A call written in the training section, e.g. sgd(lr=0.1, momentum=0.9)
 * or fashion_mnist("/usr/share/datasets/fashion-mnist").  Positional
 * arguments have key NULL.  A number argument has str NULL; a string or
 * identifier argument has str set and num 0.  The calls in TrainSpec are
 * checked and normalised by the frontend: every argument of the callee's
 * signature is present, keyed by its name, in signature order, with the
 * defaults filled in (so keys are never NULL there). */
typedef struct CallSpec {
  const char *name;          /* NULL: not given */
  int nargs;
  const char *keys[FE_MAX_ARGS];
  double nums[FE_MAX_ARGS];
  const char *strs[FE_MAX_ARGS];
  SrcLoc loc;
} CallSpec;

/* A named training section, `train NAME { loss = ...; optimizer = ...;
 * params = ... }`: its own step over its own parameters. */
#define FE_MAX_SECTIONS 8
typedef struct TrainSection {
  const char *name;
  SrcLoc loc;
  int loss;                  /* graph node of its scalar loss, or -1 */
  CallSpec optimizer;
  CallSpec schedule;         /* its own learning-rate schedule (name NULL: the run's, scaled) */
  int nparams;
  int *params;               /* the trainable parameters it updates (graph nodes, graph order) */
  int repeat;                /* its steps in a row per round (order = alternate(NAME=K, ...)) */
} TrainSection;

/* The training section.  Values not written keep the defaults set by the
 * parser: batch 64, epochs 10, seed 0, val_split 0, loss -1, target -1.
 * With named sections, the unnamed one (optional) holds the run's
 * settings and loss and optimizer are the sections'. */
typedef struct TrainSpec {
  int present;
  SrcLoc loc;
  int loss;                  /* graph node of the scalar loss, or -1 */
  int nlabels;
  int labels[4];             /* input nodes declared with `label` */
  int target;                /* `target = NAME`: a label (its values come from the data set)
                                or the data input (labels[0] gets the clean input: an
                                autoencoder); -1 when not given */
  CallSpec optimizer;        /* sgd adam adamw rmsprop adagrad (checked) */
  CallSpec schedule;         /* constant step exponential cosine cyclic (checked) */
  CallSpec data;             /* fashion_mnist idx csv npy (checked) */
  CallSpec augment;          /* augment(flip, crop): per mini-batch, training only */
  int64_t batch, epochs, seed;
  double val_split;
  int ngroups;               /* per-parameter-group learning rates */
  const char *group_prefix[16];
  double group_lr[16];
  SrcLoc group_loc[16];
  int nsections;             /* named sections, in the order of a round */
  TrainSection sections[FE_MAX_SECTIONS];
} TrainSpec;

typedef struct Model {
  Graph g;
  Source src;                /* path and text, owned by the model */
  TrainSpec train;
  RtTensorSet *weights;      /* values the model file carries (an ONNX model's
                                initializers: driver/import.c), or NULL */
} Model;

/* The largest .dl text, and the most tokens it may hold: far above any
 * real model, low enough that hostile input cannot exhaust memory. */
#define FE_MAX_FILE_BYTES (16 << 20)
#define FE_MAX_TOKENS 1000000

int fe_load_file(Model *m, const char *path, Diags *d);
/* The text of a .dl file, an rt_x block (free it with rt_xfree),
 * NUL-terminated, *len bytes; NULL
 * after reporting an unreadable, too large or binary (NUL bytes) file. */
char *fe_read_source(const char *path, size_t *len, Diags *d);
int fe_load_string(Model *m, const char *path, const char *text, Diags *d);
/* len bytes of text, which may contain NUL bytes (reported as an error);
 * path is only used in messages and for the default model name. */
int fe_load_buffer(Model *m, const char *path, const char *text, size_t len, Diags *d);
void fe_model_free(Model *m);

#endif
