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
 * every read of a parameter precedes every write.
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
    if (!strcmp(specs[k].name, "alpha")) at.f = o->alpha;
    else if (strcmp(specs[k].name, "lr_scale") != 0)
      ir_attr_set_float(&at, op, specs[k].name, o->hp[ir_attr_hp_index(specs[k].name)]);
  }
  at.hp[HP_LR_SCALE] = lr_scale(o, p->name);
  if (o->kind == OPT_ADAMW) at.hp[HP_DECOUPLED] = 1;
  return ir_op(g, op, in, nin, &at, p->loc);
}

/* Copies src into dst with composites decomposed; *loss follows. */
static int copy_decomposed(const Graph *src, int *loss, Graph *dst, const DecomposeOpts *o) {
  int *map = rt_xmalloc(sizeof(int) * ((size_t)src->nnodes + 1));
  IR_ASSERT(map);
  int rc = pass_decompose(src, dst, map, o);
  if (rc == 0) *loss = map[*loss];
  rt_xfree(map);
  return rc;
}

/* Every trainable parameter (and input, if asked) of g, in graph order. */
static int collect_wrt(const Graph *g, int params, int inputs, int *wrt) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *nd = &g->nodes[i];
    if ((params && nd->op == OP_PARAM && !nd->frozen && !nd->buffer) || (inputs && nd->op == OP_INPUT && nd->dtype == DT_F32))
      wrt[n++] = i;
  }
  return n;
}

int pass_build_train(const Graph *src, int loss, const OptimSpec *o, Graph *dst) {
  DecomposeOpts dopts = {1, o->seed};
  if (copy_decomposed(src, &loss, dst, &dopts)) return -1;
  int *wrt = rt_xmalloc(sizeof(int) * ((size_t)dst->nnodes + 1)), *grads = rt_xmalloc(sizeof(int) * ((size_t)dst->nnodes + 1));
  IR_ASSERT(wrt && grads);
  int n = collect_wrt(dst, 1, 0, wrt), rc = pass_autodiff(dst, loss, wrt, n, grads);
  int lr = scalar_input(dst, "lr"), step = ir_find_input(dst, "step");
  if (step < 0) step = scalar_input(dst, "step");
  for (int i = 0; i < n && rc == 0; i++)
    if (grads[i] >= 0 && add_step(dst, o, wrt[i], grads[i], lr, step) < 0) rc = -1;
  /* outputs: the loss first, then the model's (already copied) */
  if (rc == 0) {
    ir_output(dst, "loss", loss);
    Output first = dst->outputs[dst->noutputs - 1];
    memmove(dst->outputs + 1, dst->outputs, sizeof(Output) * (size_t)(dst->noutputs - 1));
    dst->outputs[0] = first;
  }
  rt_xfree(wrt);
  rt_xfree(grads);
  return rc;
}

int pass_build_eval(const Graph *src, int loss, Graph *dst) {
  ir_clone_header(dst, src);
  int *map = rt_xmalloc(sizeof(int) * ((size_t)src->nnodes + 1));
  IR_ASSERT(map);
  int rc = 0;
  for (int i = 0; i < src->nnodes && rc == 0; i++)
    if ((map[i] = ir_clone_node(dst, src, i, map)) < 0) rc = -1;
  if (rc == 0) {
    ir_output(dst, "loss", map[loss]);
    for (int i = 0; i < src->noutputs; i++) ir_output(dst, src->outputs[i].name, map[src->outputs[i].id]);
    pass_dce(dst);
  }
  rt_xfree(map);
  return rc;
}

int pass_build_grads(const Graph *src, int loss, int params, int inputs, const DecomposeOpts *mode, Graph *dst) {
  if (copy_decomposed(src, &loss, dst, mode)) return -1;
  int *wrt = rt_xmalloc(sizeof(int) * ((size_t)dst->nnodes + 1)), *grads = rt_xmalloc(sizeof(int) * ((size_t)dst->nnodes + 1));
  IR_ASSERT(wrt && grads);
  int n = collect_wrt(dst, params, inputs, wrt), rc = pass_autodiff(dst, loss, wrt, n, grads);
  dst->noutputs = 0;
  if (rc == 0) {
    ir_output(dst, "loss", loss);
    for (int i = 0; i < n; i++) {
      char name[512];
      snprintf(name, sizeof name, "%s", dst->nodes[wrt[i]].name);
      /* a parameter or input the loss does not depend on has a zero gradient */
      int gid = grads[i] >= 0 ? grads[i] : ir_op(dst, OP_MUL, (int[]){wrt[i], ir_const(dst, 0, (SrcLoc){0})}, 2, NULL, (SrcLoc){0});
      ir_output(dst, name, gid);
    }
    pass_dce(dst);
  }
  rt_xfree(wrt);
  rt_xfree(grads);
  return rc;
}
