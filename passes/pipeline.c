/*
 * pipeline.c — every compilation as one list of named steps, and the one
 * runner that drives them.
 *
 * A pipeline (inference, inference with embedded weights, training,
 * gradients) is a table of steps, graph-level first, then kernel-level.
 * Every step has the same shape, int step(PassCtx *), and reads and writes
 * only the context: the model, the graphs being built (one per entry
 * point of the generated code), the program of kernels, the parameter
 * values when known, the options and the diagnostics.  The runner runs the
 * steps in order; after each it dumps the graphs or the kernels when
 * --dump-after names the step (or "all"), and with --verify re-checks them
 * (ir_verify, kir_verify), stopping at the first step that fails.  Drivers
 * choose a pipeline and its options; none sequences passes itself.  A
 * caller that needs to act between the graph and the kernel stage (dlc run
 * binds symbol sizes from its inputs) runs the two stages as two calls.
 */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

/* Step "lower": each graph becomes the kernels of its entry point. */
int pass_lower_step(PassCtx *c) {
  IR_ASSERT(c->prog);
  const Pipeline *pl = c->pipeline;
  kir_program_init(c->prog, c->graphs[0]);
  c->lowered = 1;
  for (int i = 0; i < c->ngraphs; i++)
    pass_lower(c->prog, kir_func(c->prog, c->funcs[i] ? c->funcs[i] : pl->funcs[i], c->graphs[i]));
  return 0;
}

/* Step "memplan". */
int pass_memplan_step(PassCtx *c) {
  pass_memplan(c->prog);
  return 0;
}

#define STEP_DECOMPOSE {"decompose", pass_decompose_step, 0, 0, "composite ops as primitives (losses, batch norm, dropout)"}
#define STEP_DCE {"dce", pass_dce_step, 0, 0, "drop nodes no output or effect needs"}
#define STEP_LOWER {"lower", pass_lower_step, 1, 0, "each graph to the loop kernels of its entry point"}
#define STEP_FUSE {"fuse", pass_fuse_step, 1, 0, "kernels that pass a buffer element for element fused (elementwise chains, epilogues)"}
#define STEP_SCHEDULE {"schedule", pass_schedule_step, 1, 0, "loop nests rewritten by the schedule's rules (lanes, row order, channel blocks)"}
#define STEP_MEMPLAN {"memplan", pass_memplan_step, 1, 0, "arena offsets of temporaries from their live ranges"}

static const PassStep infer_steps[] = {
    {"decompose", pass_decompose_step, 0, 1, "batch norm on batch statistics, dropout on (train mode only)"},
    STEP_DCE,
    STEP_LOWER,
    STEP_FUSE,
    STEP_SCHEDULE,
    STEP_MEMPLAN,
};

static const PassStep infer_embed_steps[] = {
    STEP_DCE,
    {"fold_bn", pass_fold_bn_step, 0, 0, "batch norms folded into the dense or conv2d before them (weights rewritten)"},
    STEP_LOWER,
    STEP_FUSE,
    STEP_SCHEDULE,
    STEP_MEMPLAN,
};

static const PassStep train_steps[] = {
    STEP_DECOMPOSE,
    {"autodiff", pass_autodiff_step, 0, 0, "the backward graph of the loss for every trainable parameter"},
    {"optimizer", pass_optimizer_step, 0, 0, "one update per parameter; outputs loss, then the model's"},
    {"eval_graph", pass_eval_graph_step, 0, 0, "the evaluation graph: the model with its loss"},
    STEP_LOWER,
    STEP_FUSE,
    STEP_SCHEDULE,
    STEP_MEMPLAN,
};

static const PassStep grads_steps[] = {
    STEP_DECOMPOSE,
    {"autodiff", pass_autodiff_step, 0, 0, "the backward graph of the loss for the parameters and inputs asked"},
    {"grad_outputs", pass_grad_outputs_step, 0, 0, "outputs: loss, then each gradient named like its parameter"},
    STEP_DCE,
    STEP_LOWER,
    STEP_FUSE,
    STEP_SCHEDULE,
    STEP_MEMPLAN,
};

#define STEPS(a) a, (int)(sizeof a / sizeof a[0])

const Pipeline pass_pipelines[PIPE_COUNT] = {
    [PIPE_INFER] = {"infer", "the forward pass (dlc MODEL.dl, check, run, repl emit)", {"forward"}, STEPS(infer_steps)},
    [PIPE_INFER_EMBED] = {"infer-embed", "the forward pass with the weights embedded (--embed-params, eval)",
                          {"forward"}, STEPS(infer_embed_steps)},
    [PIPE_TRAIN] = {"train", "the training step and the evaluation step (train, repl, --train)",
                    {"train_step", "eval_step"}, STEPS(train_steps)},
    [PIPE_GRADS] = {"grads", "the loss and its gradients (run --grads, --input-grads)", {"grads"}, STEPS(grads_steps)},
};

void pass_ctx_init(PassCtx *c, PipelineKind kind, const Graph *model, int loss, Graph **graphs, Program *p,
                   const PassOpts *o, Diags *d) {
  static const PassOpts none;
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->pipeline = &pass_pipelines[kind];
  c->model = model;
  c->model_loss = c->loss = loss;
  c->ngraphs = kind == PIPE_TRAIN ? 2 : 1;
  for (int i = 0; i < c->ngraphs; i++) c->graphs[i] = graphs[i];
  c->g = graphs[0];
  c->prog = p;
  c->d = d;
  c->o = o ? o : &none;
  c->train_mode = kind == PIPE_TRAIN || c->o->train_mode;
}

void pass_ctx_free(PassCtx *c) {
  rt_xfree(c->wrt);
  rt_xfree(c->grads);
  c->wrt = c->grads = NULL;
}

/* The old graph's arena lives on in the new one's: what it holds (the
 * model's sources, which node locations point into) outlives the swap. */
void pass_ctx_replace_graph(PassCtx *c, Graph *with) {
  Graph old = *c->g;
  *c->g = *with;
  arena_adopt(&c->g->arena, &old.arena);
  ir_graph_free(&old);
  memset(with, 0, sizeof *with);
}

static int wants_dump(const PassOpts *o, const char *name) {
  return o->dump_after && o->dump_to && (!strcmp(o->dump_after, name) || !strcmp(o->dump_after, "all"));
}

/* Dump and verification after step s. */
static int after_step(PassCtx *c, const PassStep *s) {
  const PassOpts *o = c->o;
  int bad = 0;
  if (s->kernel) {
    if (wants_dump(o, s->name)) fprintf(o->dump_to, "; after %s\n", s->name), kir_dump(c->prog, o->dump_to);
    return o->verify ? kir_verify(c->prog, c->d) : 0;
  }
  for (int i = 0; i < c->ngraphs; i++) {
    const Graph *g = c->graphs[i];
    if (wants_dump(o, s->name) && g == c->g)
      fprintf(o->dump_to, "; after %s (%s)\n", s->name, c->funcs[i] ? c->funcs[i] : c->pipeline->funcs[i]),
          ir_dump(g, o->dump_to);
    if (o->verify && (g->nnodes || g == c->g)) bad += ir_verify(g, c->d); /* graphs not built yet are empty */
  }
  return bad;
}

int pass_run(PassCtx *c) { return pass_run_steps(c, &pass_pipelines[c->kind]); }

int pass_run_steps(PassCtx *c, const Pipeline *pl) {
  c->pipeline = pl;
  int stages = c->o->stages ? c->o->stages : PASS_STAGE_GRAPH | PASS_STAGE_KERNEL;
  int rc = 0;
  for (int i = 0; i < pl->nsteps && rc == 0; i++) {
    const PassStep *s = &pl->steps[i];
    if (!(stages & (s->kernel ? PASS_STAGE_KERNEL : PASS_STAGE_GRAPH))) continue;
    if (s->train_mode_only && !c->train_mode) {
      if (wants_dump(c->o, s->name)) fprintf(c->o->dump_to, "; %s skipped (train mode only)\n", s->name);
      continue;
    }
    double t0 = ir_phase_start();
    rc = s->run(c);
    ir_phase_end(s->name, t0);
    if (rc == 0 && after_step(c, s)) {
      diag_plain(c->d, "--verify", "the %s does not check after step '%s' of the %s pipeline", s->kernel ? "kernel IR" : "graph",
                 s->name, pl->name);
      rc = -1;
    }
    if (c->o->stop_after && !strcmp(c->o->stop_after, s->name)) break;
  }
  if (rc && c->lowered) {
    kir_program_free(c->prog);
    c->lowered = 0;
  }
  return rc;
}

int pass_lower_train_sections(const Graph *model, Graph **graphs, const char *const *funcs, int n, Program *p,
                              const PassOpts *o, Diags *d) {
  IR_ASSERT(n >= 2 && n <= PASS_MAX_GRAPHS);
  PassOpts ko = *o;
  ko.stages = PASS_STAGE_KERNEL;
  PassCtx c;
  pass_ctx_init(&c, PIPE_TRAIN, model, -1, graphs, p, &ko, d);
  c.ngraphs = n;
  for (int i = 0; i < n; i++) c.graphs[i] = graphs[i], c.funcs[i] = funcs[i];
  int rc = pass_run(&c);
  pass_ctx_free(&c);
  return rc;
}

int pass_pipeline_infer(Graph *g, Program *p, const PassOpts *o, Diags *d) {
  PassCtx c;
  pass_ctx_init(&c, PIPE_INFER, g, -1, &g, p, o, d);
  int rc = pass_run(&c);
  pass_ctx_free(&c);
  return rc;
}

int pass_check_step_name(const char *name, Diags *d) {
  if (!strcmp(name, "all")) return 0;
  for (int k = 0; k < PIPE_COUNT; k++)
    for (int i = 0; i < pass_pipelines[k].nsteps; i++)
      if (!strcmp(pass_pipelines[k].steps[i].name, name)) return 0;
  diag_plain(d, "--dump-after", "no step named '%s' (dlc --list-steps lists them)", name);
  return -1;
}

void pass_list_steps(FILE *f) {
  for (int k = 0; k < PIPE_COUNT; k++) {
    const Pipeline *pl = &pass_pipelines[k];
    fprintf(f, "%s: %s\n", pl->name, pl->what);
    for (int i = 0; i < pl->nsteps; i++) {
      const PassStep *s = &pl->steps[i];
      fprintf(f, "  %-8s %-13s %s\n", s->kernel ? "kernel" : "graph", s->name, s->what);
    }
  }
}
