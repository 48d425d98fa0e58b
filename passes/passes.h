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

/* Applies the schedule's rules (schedule.c) to every kernel of p: the
 * step between lowering and memory planning. */
void pass_schedule(Program *p);

/* Fuses kernels that pass a buffer element for element (fuse.c): a
 * producer inlined into its readers, or its consumer's body run at its
 * store; buffers nothing reads any more are no longer stored.  Returns
 * the number of fusions.  A rewrite is kept only where the schedule
 * (with register tiles, or without: pass_fuse_tiles) still does to the
 * kernel what it did. */
int pass_fuse(Program *p);
int pass_fuse_tiles(Program *p, int tiles);

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
  int noise;          /* training: inputs declared `= randn` become random ops (train steps) */
  int sync_bn;        /* training: batch statistics over every process (dist_mean, dist_sum) */
} DecomposeOpts;
int pass_decompose(const Graph *src, Graph *dst, int *map, const DecomposeOpts *o);
/* The rand or randn op (no step operand yet) that draws noise input n,
 * node id of its graph: the input's shape, salted like a random op at id. */
Node pass_noise_node(const Node *n, int id);

/* Appends the backward graph of scalar node loss; grads[i] is the gradient
 * node of wrt[i], or -1 when the loss does not depend on it. */
int pass_autodiff(Graph *g, int loss, const int *wrt, int nwrt, int *grads);
/* The body of the reverse scan that differentiates scan (autodiff_scan.c),
 * given which per-step outputs have a gradient; adopted by owner.  NULL
 * after reporting an error. */
const Graph *pass_scan_backward_body(Graph *owner, const Node *scan, const int *has_dy);

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
/* ... with outputs names[k] = losses[k] (model nodes) after the model's. */
int pass_build_eval_losses(const Graph *src, int loss, const int *losses, const char *const *names, int n, Graph *dst);
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

/* The step graph of a recurrent model (step.c): the model on one step of
 * its scans' sequence, named MODEL_step, with every scan's initial states
 * as inputs and its final states as outputs after the model's, both named
 * "stateJ.NAME" (scan J, NAME its body's state input).  step is
 * initialised here (free it with ir_graph_free, also on failure).  Returns
 * 0, or -1 after a diagnostic: no scan, a reverse scan, scans over
 * different or symbolic lengths, or a node that cannot run on one step. */
int pass_step_graph(const Graph *model, Graph *step);
/* The window graph of a recurrent model (step.c), for truncated
 * backpropagation through time: the whole model with its scans' length T
 * (the inputs' first dimension of that length) made window (0: kept), and
 * with carry the scans' initial states as inputs and their final states as
 * outputs, named as in the step graph.  map (model->nnodes ints, or NULL)
 * gets each model node's id in out, -1 where it was left out (what only
 * computed a carried initial state).  Same errors as pass_step_graph. */
int pass_window_graph(const Graph *model, Graph *out, int64_t window, int carry, int *map);

/* --- the pipeline ------------------------------------------------------------ */
/* Every compilation is one of these pipelines, each a list of named steps
 * (pipeline.c; `dlc --list-steps` prints them).  Graph steps rewrite the
 * graphs, kernel steps the program lowered from them. */
typedef enum PipelineKind {
  PIPE_INFER,        /* the forward pass */
  PIPE_INFER_EMBED,  /* the forward pass with known weights: batch norms folded */
  PIPE_TRAIN,        /* train_step (forward, loss, backward, update) and eval_step */
  PIPE_GRADS,        /* the loss and its gradients (dlc run --grads) */
  PIPE_COUNT
} PipelineKind;

enum {
  PASS_STAGE_GRAPH = 1,   /* the graph steps */
  PASS_STAGE_KERNEL = 2,  /* the kernel steps (lower onwards) */
};

typedef struct PassOpts {
  const char *dump_after;   /* step name, "all", or NULL */
  FILE *dump_to;
  int verify;               /* ir_verify after each graph step, kir_verify after each kernel step */
  int stages;               /* PASS_STAGE_* bits to run; 0: all */
  const char *stop_after;   /* the last step to run, or NULL */
  int train_mode;           /* infer, grads: batch norm on batch statistics, dropout on */
  uint64_t seed;            /* dropout masks in train mode */
  const OptimSpec *optim;   /* train: the optimizer (its seed seeds dropout) */
  int wrt_params;           /* grads: differentiate with respect to trainable params */
  int wrt_inputs;           /* grads: ... and f32 inputs */
  const char *const *train_params; /* train: differentiate only these parameters (a named
                                      section's), by name; NULL: every trainable one */
  int ntrain_params;
  const char *section;      /* train: the named section being built (messages), or NULL */
  const int *eval_losses;   /* train: more model loss nodes (the other named sections'), which */
  const char *const *eval_loss_names; /* the eval step outputs by these names after the model's */
  int neval_losses;
  int no_tiles;             /* schedule: no register tiles (dlc --no-tile) */
  int no_fuse;              /* no fuse step (dlc --no-fuse, -O0) */
  int split_update;         /* train: graphs[0] outputs the gradients ("NAME.grad") instead of
                               updating, and graphs[2] (the caller's third) is the update
                               reading them: data-parallel training sums them in between */
  int sync_bn;              /* train: batch norm's statistics over every process (--sync-bn) */
  int grad_collectives;     /* train: each gradient through dist_mean before its update (the hook
                               of emitted training C built with -DDLC_MPI); with split_update,
                               each gradient output (data-parallel training overlaps the sums
                               with the backward pass) */
} PassOpts;

/* A train step per named section (at most 8) and the eval step. */
#define PASS_MAX_GRAPHS 9

/* Everything a step reads and writes: the one argument of every step. */
typedef struct Pipeline Pipeline;

typedef struct PassCtx {
  PipelineKind kind;
  const Pipeline *pipeline; /* the steps being run */
  const Graph *model;       /* the model as loaded (for infer pipelines: graphs[0]) */
  int model_loss;           /* the training loss node of model, or -1 */
  Graph *graphs[PASS_MAX_GRAPHS]; /* one per entry point, caller-owned and initialised */
  int ngraphs;
  const char *funcs[PASS_MAX_GRAPHS]; /* entry point names other than the pipeline's, or NULL */
  Graph *g;                 /* the graph the current step works on */
  int loss;                 /* the loss node of *g, once decomposed */
  int *wrt, *grads, nwrt;   /* autodiff: the nodes differentiated and their gradients */
  Program *prog;            /* the kernels (caller's storage, set up by lower) */
  int lowered;
  RtTensorSet *params;      /* parameter values when known (fold_bn rewrites them) */
  int nfolded;              /* fold_bn: batch norms folded */
  Diags *d;
  const PassOpts *o;
  int train_mode;           /* batch norm and dropout as in training */
} PassCtx;

typedef int (*PassFn)(PassCtx *c);

typedef struct PassStep {
  const char *name;
  PassFn run;
  int kernel;               /* a kernel step (dumped and verified as kernels) */
  int train_mode_only;      /* skipped unless the pipeline runs in train mode */
  const char *what;
} PassStep;

struct Pipeline {
  const char *name;
  const char *what;
  const char *funcs[PASS_MAX_GRAPHS]; /* the entry point each graph becomes */
  const PassStep *steps;
  int nsteps;
};

extern const Pipeline pass_pipelines[PIPE_COUNT];

/* The context of a run of pipeline kind over model (loss: its training
 * loss, or -1) into graphs (caller-owned; for the infer pipelines
 * graphs[0] is the model itself, rewritten in place; otherwise they are
 * initialised and empty) and, for the kernel stage, into p. */
void pass_ctx_init(PassCtx *c, PipelineKind kind, const Graph *model, int loss, Graph **graphs, Program *p,
                   const PassOpts *o, Diags *d);
/* Runs the steps of c's pipeline in the stages o->stages asks for (a
 * second call can run the kernel stage after the graph stage), dumping
 * after the step o->dump_after names and verifying after every step when
 * o->verify is set.  Returns 0, or -1 after diagnostics (the program, if
 * lowered, is freed).  pass_ctx_free releases autodiff's arrays. */
int pass_run(PassCtx *c);
/* The kernel stage of the train pipeline over n graphs (the train step
 * of each named section, then the eval step) into entry points named
 * funcs[i] of one program p, so they share parameter and state storage. */
int pass_lower_train_sections(const Graph *model, Graph **graphs, const char *const *funcs, int n, Program *p,
                              const PassOpts *o, Diags *d);
/* pass_run over the steps of pl instead of c's pipeline (tests). */
int pass_run_steps(PassCtx *c, const Pipeline *pl);
void pass_ctx_free(PassCtx *c);
/* 0 if name is a step of some pipeline (or "all"), else -1 after a
 * diagnostic naming the steps. */
int pass_check_step_name(const char *name, Diags *d);
/* Prints every pipeline and its steps. */
void pass_list_steps(FILE *f);

/* The forward pass of g, in place: pass_run of PIPE_INFER.  Returns 0, or
 * -1 after diagnostics. */
int pass_pipeline_infer(Graph *g, Program *p, const PassOpts *o, Diags *d);

/* Pipeline steps (each in its pass's file). */
int pass_decompose_step(PassCtx *c);
int pass_autodiff_step(PassCtx *c);
int pass_optimizer_step(PassCtx *c);
int pass_eval_graph_step(PassCtx *c);
int pass_grad_outputs_step(PassCtx *c);
int pass_dce_step(PassCtx *c);
int pass_fold_bn_step(PassCtx *c);
int pass_lower_step(PassCtx *c);
int pass_fuse_step(PassCtx *c);
int pass_schedule_step(PassCtx *c);
int pass_memplan_step(PassCtx *c);
/* Replaces *c->g by *with (whose storage is then empty and freed). */
void pass_ctx_replace_graph(PassCtx *c, Graph *with);

#endif
