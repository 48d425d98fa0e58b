/*
 * train.c — the training graphs: one train_step (forward, loss, backward,
 * optimizer update), the evaluation graph, and the gradient graph of
 * `dlc run --grads`.
 *
 * The model graph is copied with composite losses decomposed, the loss is
 * differentiated (autodiff.c) with respect to every trainable parameter,
 * and an optimizer step node is appended for each parameter.  The steps
 * read the learning rate and the step number (counting from 1) from two
 * scalar inputs, "lr" and "step", so schedules stay on the host and one
 * compiled step serves every epoch.  Optimizer state lives in STATE nodes
 * named as torch.optim names it ("fc1.weight.exp_avg"), so a checkpoint
 * reads like a PyTorch state dict.  Step nodes are effects and come last:
 * every read of a parameter precedes every write.  A named train section
 * (PassOpts.train_params) differentiates and updates only its own
 * parameters; its step must have a gradient for at least one of them.
 * An input fed with noise becomes its random op here (decompose, in the
 * train step) and in the eval graph.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

const char *const pass_optim_names[OPT_COUNT] = {"sgd", "adam", "adamw", "rmsprop", "adagrad"};

static int scalar_input(Graph *g, const char *name) {
  Shape s = {0, {0}};
  return ir_input(g, name, DT_F32, &s, (SrcLoc){0});
}

static int state(Graph *g, const Node *param, const char *what) {
  char name[512];
  snprintf(name, sizeof name, "%s.%s", param->name, what);
  return ir_state(g, name, &param->shape, param->loc);
}

/* The learning rate of a parameter relative to the base lr: the longest
 * matching group prefix decides. */
static double lr_scale(const OptimSpec *o, const char *name) {
  double scale = 1;
  size_t best = 0;
  for (int i = 0; i < o->ngroups; i++) {
    size_t n = strlen(o->group_prefix[i]);
    if (n < best || strncmp(name, o->group_prefix[i], n) != 0 || (name[n] != 0 && name[n] != '.')) continue;
    best = n;
    scale = o->lr > 0 ? o->group_lr[i] / o->lr : 1;
  }
  return scale;
}

static int add_step(Graph *g, const OptimSpec *o, int param, int grad, int lr, int step) {
  const Node pcopy = g->nodes[param], *p = &pcopy; /* state() adds nodes, which may move the array */
  int in[6] = {param, grad, lr, step, -1, -1}, nin = 4;
  OpKind op = OP_SGD_STEP;
  switch (o->kind) {
  case OPT_SGD:
    if (o->hp[HP_MOMENTUM] != 0) in[nin++] = state(g, p, "momentum_buffer");
    break;
  case OPT_ADAM:
  case OPT_ADAMW:
    op = OP_ADAM_STEP;
    in[nin++] = state(g, p, "exp_avg");
    in[nin++] = state(g, p, "exp_avg_sq");
    break;
  case OPT_RMSPROP:
    op = OP_RMSPROP_STEP;
    in[nin++] = state(g, p, "square_avg");
    if (o->hp[HP_MOMENTUM] != 0) in[nin++] = state(g, p, "momentum_buffer");
    break;
  case OPT_ADAGRAD:
    op = OP_ADAGRAD_STEP;
    in[nin++] = state(g, p, "sum");
    break;
  case OPT_COUNT:
    IR_ASSERT(!"no optimizer");
  }
  Attrs at = ir_attrs_default(op);
  AttrSpec specs[8];
  int ns = ir_attr_specs(op, specs, 8);
  for (int k = 0; k < ns; k++) { /* only the hyperparameters this step takes */
    if (!strcmp(specs[k].name, "alpha")) at.hyper.alpha = o->alpha;
    else if (strcmp(specs[k].name, "lr_scale") != 0)
      ir_attr_set_float(&at, op, specs[k].name, o->hp[ir_attr_hp_index(specs[k].name)]);
  }
  at.hyper.hp[HP_LR_SCALE] = lr_scale(o, p->name);
  if (o->kind == OPT_ADAMW) at.hyper.hp[HP_DECOUPLED] = 1;
  return ir_op(g, op, in, nin, &at, p->loc);
}

static int listed(const PassOpts *o, const char *name) {
  if (!o->train_params) return 1;
  for (int k = 0; k < o->ntrain_params; k++)
    if (!strcmp(o->train_params[k], name)) return 1;
  return 0;
}

/* Every trainable parameter (of a named section: its own) and input, if
 * asked, of g, in graph order. */
static int collect_wrt(const Graph *g, const PassOpts *o, int params, int inputs, int *wrt) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *nd = &g->nodes[i];
    if ((params && nd->op == OP_PARAM && !nd->frozen && !nd->buffer && listed(o, nd->name)) ||
        (inputs && nd->op == OP_INPUT && nd->dtype == DT_F32))
      wrt[n++] = i;
  }
  return n;
}

/* A named section's step must update something. */
static int check_section_grads(PassCtx *c) {
  for (int i = 0; i < c->nwrt; i++)
    if (c->grads[i] >= 0) return 0;
  return diag_plain(c->d, c->o->section, "the loss of this train section has no gradient with respect to any of its "
                    "%d parameters, so its step would change nothing", c->nwrt), -1;
}

/* Step "decompose": the current graph becomes the model with composite
 * ops written as primitives (batch norm and dropout as the mode says). */
int pass_decompose_step(PassCtx *c) {
  DecomposeOpts o = {c->train_mode, c->kind == PIPE_TRAIN && c->o->optim ? c->o->optim->seed : c->o->seed,
                     c->kind == PIPE_TRAIN, c->o->sync_bn};
  Graph dst;
  ir_graph_init(&dst, c->model->name, c->d);
  int *map = rt_xmalloc(sizeof(int) * ((size_t)c->model->nnodes + 1));
  IR_ASSERT(map);
  int rc = pass_decompose(c->model, &dst, map, &o);
  if (rc == 0 && c->model_loss >= 0) c->loss = map[c->model_loss];
  rt_xfree(map);
  pass_ctx_replace_graph(c, &dst);
  return rc ? -1 : 0;
}

/* Step "autodiff": the backward graph of the loss with respect to every
 * trainable parameter (train; grads as asked) and, for grads, f32 input. */
int pass_autodiff_step(PassCtx *c) {
  Graph *g = c->g;
  if (c->loss < 0) return diag_plain(c->d, g->name, "differentiating needs a training section with a loss"), -1;
  rt_xfree(c->wrt);
  rt_xfree(c->grads);
  c->wrt = rt_xmalloc(sizeof(int) * ((size_t)g->nnodes + 1));
  c->grads = rt_xmalloc(sizeof(int) * ((size_t)g->nnodes + 1));
  IR_ASSERT(c->wrt && c->grads);
  int train = c->kind == PIPE_TRAIN;
  c->nwrt = collect_wrt(g, c->o, train || c->o->wrt_params, !train && c->o->wrt_inputs, c->wrt);
  if (pass_autodiff(g, c->loss, c->wrt, c->nwrt, c->grads)) return -1;
  return train && c->o->section ? check_section_grads(c) : 0;
}

/* The loss becomes the first output, before the model's. */
static void loss_first(PassCtx *c) {
  Graph *g = c->g;
  ir_output(g, "loss", c->loss);
  Output first = g->outputs[g->noutputs - 1];
  memmove(g->outputs + 1, g->outputs, sizeof(Output) * (size_t)(g->noutputs - 1));
  g->outputs[0] = first;
}

/* The split form: each gradient is an output "NAME.grad" of the train
 * graph, after the loss and the model's outputs, and the update graph
 * (graphs[2]) has an input of that name, the parameter and its step. */
static int split_update(PassCtx *c) {
  Graph *g = c->g, *u = c->graphs[2];
  IR_ASSERT(c->ngraphs == 3 && u && !u->nnodes);
  ir_clone_header(u, g);
  int lr = scalar_input(u, "lr"), step = scalar_input(u, "step");
  loss_first(c);
  for (int i = 0; i < c->nwrt; i++) {
    if (c->grads[i] < 0) continue;
    const Node p = g->nodes[c->wrt[i]];
    char name[512];
    snprintf(name, sizeof name, "%s.grad", p.name);
    /* with grad_collectives, the hook sees each gradient as soon as it is final */
    int grad = c->o->grad_collectives ? ir_op(g, OP_DIST_MEAN, &c->grads[i], 1, NULL, p.loc) : c->grads[i];
    if (grad < 0) return -1;
    ir_output(g, name, grad);
    int pid = ir_clone_node(u, g, c->wrt[i], NULL), gin = ir_input(u, name, DT_F32, &p.shape, p.loc);
    if (pid < 0 || gin < 0 || add_step(u, c->o->optim, pid, gin, lr, step) < 0) return -1;
  }
  return 0;
}

/* Step "optimizer": one update node per differentiated parameter, reading
 * the "lr" and "step" inputs; outputs "loss" then the model's.  With
 * split_update the updates go into an entry point of their own. */
int pass_optimizer_step(PassCtx *c) {
  Graph *g = c->g;
  IR_ASSERT(c->o->optim && c->wrt);
  if (c->o->split_update) return split_update(c);
  int lr = scalar_input(g, "lr"), step = ir_find_input(g, "step");
  if (step < 0) step = scalar_input(g, "step");
  for (int i = 0; i < c->nwrt; i++) {
    if (c->grads[i] < 0) continue;
    int grad = c->o->grad_collectives ? ir_op(g, OP_DIST_MEAN, &c->grads[i], 1, NULL, g->nodes[c->wrt[i]].loc)
                                      : c->grads[i];
    if (grad < 0 || add_step(g, c->o->optim, c->wrt[i], grad, lr, step) < 0) return -1;
  }
  loss_first(c);
  return 0;
}

/* Step "eval_graph": the next graph is the model with outputs "loss" then
 * the model's (the evaluation step). */
int pass_eval_graph_step(PassCtx *c) {
  IR_ASSERT(c->ngraphs > 1 && c->model_loss >= 0);
  c->g = c->graphs[1];
  return pass_build_eval_losses(c->model, c->model_loss, c->o->eval_losses, c->o->eval_loss_names, c->o->neval_losses,
                                c->g);
}

/* Step "grad_outputs": the outputs become "loss" and the gradient of each
 * differentiated node, named like it. */
int pass_grad_outputs_step(PassCtx *c) {
  Graph *g = c->g;
  IR_ASSERT(c->wrt);
  g->noutputs = 0;
  ir_output(g, "loss", c->loss);
  for (int i = 0; i < c->nwrt; i++) {
    char name[512];
    snprintf(name, sizeof name, "%s", g->nodes[c->wrt[i]].name);
    /* a parameter or input the loss does not depend on has a zero gradient */
    int gid = c->grads[i] >= 0 ? c->grads[i]
                               : ir_op(g, OP_MUL, (int[]){c->wrt[i], ir_const(g, 0, (SrcLoc){0})}, 2, NULL, (SrcLoc){0});
    if (gid < 0) return -1;
    ir_output(g, name, gid);
  }
  return 0;
}

/* The graph stage of pipeline kind into graphs. */
static int build(PipelineKind kind, const Graph *src, int loss, Graph **graphs, const PassOpts *o) {
  PassCtx c;
  PassOpts go = *o;
  go.stages = PASS_STAGE_GRAPH;
  pass_ctx_init(&c, kind, src, loss, graphs, NULL, &go, graphs[0]->diags);
  int rc = pass_run(&c);
  pass_ctx_free(&c);
  return rc;
}

int pass_build_train(const Graph *src, int loss, const OptimSpec *o, Graph *dst) {
  Graph scratch;
  ir_graph_init(&scratch, src->name, dst->diags);
  PassOpts po = {.optim = o};
  int rc = build(PIPE_TRAIN, src, loss, (Graph *[]){dst, &scratch}, &po);
  ir_graph_free(&scratch);
  return rc;
}

/* Node i of src into the evaluation graph: a noise input becomes its
 * random op in inference form (the same draws at every evaluation). */
static int eval_clone(Graph *dst, const Graph *src, int i, const int *map) {
  const Node *n = &src->nodes[i];
  if (n->op != OP_INPUT || !n->noise) return ir_clone_node(dst, src, i, map);
  Node r = pass_noise_node(n, i);
  int id = ir_op(dst, r.op, (int[]){0}, 0, &r.attr, n->loc);
  if (id >= 0) dst->nodes[id].name = arena_strdup(&dst->arena, n->name);
  return id;
}

int pass_build_eval(const Graph *src, int loss, Graph *dst) { return pass_build_eval_losses(src, loss, NULL, NULL, 0, dst); }

int pass_build_eval_losses(const Graph *src, int loss, const int *losses, const char *const *names, int n, Graph *dst) {
  ir_clone_header(dst, src);
  int *map = rt_xmalloc(sizeof(int) * ((size_t)src->nnodes + 1));
  IR_ASSERT(map);
  int rc = 0;
  for (int i = 0; i < src->nnodes && rc == 0; i++)
    if ((map[i] = eval_clone(dst, src, i, map)) < 0) rc = -1;
  if (rc == 0) {
    ir_output(dst, "loss", map[loss]);
    for (int i = 0; i < src->noutputs; i++) ir_output(dst, src->outputs[i].name, map[src->outputs[i].id]);
    for (int k = 0; k < n; k++) ir_output(dst, names[k], map[losses[k]]);
    pass_dce(dst);
  }
  rt_xfree(map);
  return rc;
}

int pass_build_grads(const Graph *src, int loss, int params, int inputs, const DecomposeOpts *mode, Graph *dst) {
  PassOpts po = {.train_mode = mode->training, .seed = mode->seed, .wrt_params = params, .wrt_inputs = inputs};
  return build(PIPE_GRADS, src, loss, (Graph *[]){dst}, &po);
}
