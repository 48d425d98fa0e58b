/*
 * passes.h — graph-to-graph passes and the lowering to kernels.
 *
 * The compile pipeline (pass_pipeline_infer) is one list of named steps;
 * each step can be dumped with --dump-after=NAME and is followed by
 * ir_verify when checking is on.
 */
#ifndef DLC_PASSES_H
#define DLC_PASSES_H

#include "ir/ir.h"
#include "ir/kernel.h"

/* Removes nodes no output depends on; renumbers ids (order is kept).
 * Inputs and params that are not needed go too. */
void pass_dce(Graph *g);

/* Lowers every node of g into kernels of f: f's arguments are g's inputs
 * (in graph order) then its outputs (in output order).  Buffers for params
 * are created once per Program and shared by every function. */
void pass_lower(Program *p, Func *f);

/* Assigns arena offsets to BUF_TEMP buffers from their live ranges over
 * the kernels of every function (functions never run at the same time, so
 * their temporaries share the arena). */
void pass_memplan(Program *p);

/* Copies src into dst (initialised, empty), writing composite ops (the
 * losses other than cross-entropy, batch norm) as primitives; map[old] =
 * new id.  In training mode batch norm uses batch statistics and updates
 * its running statistics, and dropout draws masks from seed and the
 * "step" input (made when needed). */
typedef struct DecomposeOpts {
  int training;
  uint64_t seed;
} DecomposeOpts;
int pass_decompose(const Graph *src, Graph *dst, int *map, const DecomposeOpts *o);

/* Appends the backward graph of scalar node loss; grads[i] is the gradient
 * node of wrt[i], or -1 when the loss does not depend on it. */
int pass_autodiff(Graph *g, int loss, const int *wrt, int nwrt, int *grads);

/* --- training ------------------------------------------------------------- */
typedef enum OptKind { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP, OPT_ADAGRAD, OPT_COUNT } OptKind;
extern const char *const pass_optim_names[OPT_COUNT];

typedef struct OptimSpec {
  OptKind kind;
  double lr;                  /* base learning rate (before schedules) */
  double hp[HP_COUNT];        /* momentum, betas, eps, weight decay, ... */
  double alpha;               /* RMSprop smoothing */
  int ngroups;                /* parameter groups with their own lr */
  char group_prefix[16][128]; /* owned: an OptimSpec is a plain value */
  double group_lr[16];
  uint64_t seed;              /* of the random ops in the step (dropout) */
} OptimSpec;

/* dst = src + decomposition + autodiff + one optimizer step per trainable
 * parameter.  Extra inputs "lr" and "step" (f32 scalars); outputs "loss"
 * then src's outputs.  Returns 0, or -1 after diagnostics. */
int pass_build_train(const Graph *src, int loss, const OptimSpec *o, Graph *dst);
/* dst = src with outputs "loss" then src's outputs, nothing else. */
int pass_build_eval(const Graph *src, int loss, Graph *dst);
/* dst computes "loss" and the gradient of the loss with respect to every
 * trainable parameter (params) and f32 input (inputs), as outputs named
 * like them.  mode says how batch norm and dropout behave: mode->training
 * (batch statistics, running statistics updated, dropout masks from
 * mode->seed and a "step" input) as in a train step, or inference
 * (running statistics, dropout the identity) as in torch's eval(). */
int pass_build_grads(const Graph *src, int loss, int params, int inputs, const DecomposeOpts *mode, Graph *dst);

/* Copies src into dst with every inference batch norm that follows a
 * linear or conv2d (its only user) folded into that layer's weight and
 * bias, whose values in params change accordingly.  Returns the number of
 * batch norms folded, or -1. */
int pass_fold_batchnorm(const Graph *src, Graph *dst, RtTensorSet *params);

/* A named step of the pipeline. */
typedef struct PassOpts {
  const char *dump_after;   /* step name, "all", or NULL */
  FILE *dump_to;
  int verify;               /* run ir_verify after each graph step */
} PassOpts;

/* dce -> lower(forward) -> memplan.  Returns 0, or the number of
 * verification problems (reported to d). */
int pass_pipeline_infer(Graph *g, Program *p, const PassOpts *o, Diags *d);

#endif
