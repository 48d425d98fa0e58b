/*
 * fold_bn.c — folds inference batch norm into the layer before it.
 *
 * In inference, batchnorm(y) is y * s + t per channel with
 * s = weight / sqrt(running_var + eps) and t = bias - running_mean * s.
 * When y is a linear or conv2d whose only user is the batch norm, the
 * scale goes into the layer's weight (row o, or output channel o, times
 * s[o]) and the shift into its bias (b[o] * s[o] + t[o]), and the batch
 * norm disappears: one kernel and one pass over the activations less.
 * This changes parameter values, so it runs only when the values are
 * known at compile time (--embed-params): the folded weights replace the
 * layer's in the set, and a layer without a bias gets the batch norm's
 * bias tensor name for its new one.  The graph is copied in order, so it
 * stays a schedule.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static int use_count(const Graph *g, int id) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++) n += g->nodes[i].in[k] == id;
  for (int i = 0; i < g->noutputs; i++) n += g->outputs[i].id == id;
  return n;
}

/* The layer node batch norm bn can fold into, or -1. */
static int foldable(const Graph *g, int bn, const RtTensorSet *params) {
  int y = g->nodes[bn].in[0];
  const Node *l = &g->nodes[y];
  if ((l->op != OP_LINEAR && !(l->op == OP_CONV2D && l->attr.window.mode == 0)) || use_count(g, y) != 1) return -1;
  for (int k = 1; k < 5; k++)
    if (g->nodes[g->nodes[bn].in[k]].op != OP_PARAM || !rt_set_find((RtTensorSet *)params, g->nodes[g->nodes[bn].in[k]].name))
      return -1;
  for (int k = 1; k < l->nin; k++)
    if (g->nodes[l->in[k]].op != OP_PARAM || !rt_set_find((RtTensorSet *)params, g->nodes[l->in[k]].name)) return -1;
  return y;
}

static const float *param(const Graph *g, RtTensorSet *params, int id) {
  return rt_set_find(params, g->nodes[id].name)->data;
}

/* Scales the layer's weight in params and returns the folded bias (malloc'd). */
static float *fold_values(const Graph *g, int bn, int layer, RtTensorSet *params) {
  const Node *b = &g->nodes[bn], *l = &g->nodes[layer];
  int64_t c = g->nodes[b->in[1]].shape.d[0];
  const float *w = param(g, params, b->in[1]), *beta = param(g, params, b->in[2]);
  const float *rm = param(g, params, b->in[3]), *rv = param(g, params, b->in[4]);
  float *lw = rt_set_find(params, g->nodes[l->in[1]].name)->data;
  const float *lb = l->nin > 2 ? param(g, params, l->in[2]) : NULL;
  int64_t per = ir_numel_max(g, &g->nodes[l->in[1]].shape) / c;
  float *bias = rt_malloc(sizeof(float) * (size_t)c); /* params will own it */
  if (!bias) rt_oom();
  for (int64_t o = 0; o < c; o++) {
    double s = w[o] / sqrt((double)rv[o] + b->attr.hyper.hp[HP_EPS]);
    for (int64_t k = 0; k < per; k++) lw[o * per + k] = (float)(lw[o * per + k] * s);
    bias[o] = (float)((lb ? lb[o] : 0.0) * s + beta[o] - rm[o] * s);
  }
  return bias;
}

int pass_fold_batchnorm(const Graph *src, Graph *dst, RtTensorSet *params) {
  ir_clone_header(dst, src);
  int *map = rt_xmalloc(sizeof(int) * ((size_t)src->nnodes + 1)), *fold_into = rt_xmalloc(sizeof(int) * ((size_t)src->nnodes + 1));
  IR_ASSERT(map && fold_into);
  for (int i = 0; i < src->nnodes; i++) fold_into[i] = -1;
  for (int i = 0; i < src->nnodes; i++)
    if (src->nodes[i].op == OP_BATCHNORM) {
      int l = foldable(src, i, params);
      if (l >= 0) fold_into[l] = i;
    }
  int rc = 0, folded = 0;
  for (int i = 0; i < src->nnodes && !rc; i++) {
    const Node *n = &src->nodes[i];
    int bn = fold_into[i];
    if (n->op == OP_BATCHNORM && fold_into[n->in[0]] == i) {
      map[i] = map[n->in[0]]; /* folded: its users read the layer */
    } else if (bn < 0) {
      map[i] = ir_clone_node(dst, src, i, map);
    } else { /* the layer, with a folded bias */
      RtError err;
      float *bias = fold_values(src, bn, i, params);
      const Node *bias_src = n->nin > 2 ? &src->nodes[n->in[2]] : &src->nodes[src->nodes[bn].in[2]];
      RtTensor t = {DT_F32, 1, {bias_src->shape.d[0]}, bias};
      RtTensor *old = rt_set_find(params, bias_src->name);
      if (old) memcpy(old->data, bias, sizeof(float) * (size_t)bias_src->shape.d[0]), free(bias);
      else if (rt_set_add(params, bias_src->name, &t, &err)) free(bias), rt_oom(); /* not there: only NOMEM */
      ParamInit zero = {INIT_ZEROS, 0, 0};
      int b = n->nin > 2 ? map[n->in[2]] : ir_param(dst, bias_src->name, DT_F32, &bias_src->shape, zero, bias_src->loc);
      int in[3] = {map[n->in[0]], map[n->in[1]], b};
      map[i] = ir_op(dst, n->op, in, 3, &n->attr, n->loc);
      if (map[i] >= 0 && n->name) dst->nodes[map[i]].name = arena_strdup(&dst->arena, n->name);
      folded++;
    }
    if (map[i] < 0) rc = -1;
  }
  for (int i = 0; i < src->noutputs && !rc; i++) ir_output(dst, src->outputs[i].name, map[src->outputs[i].id]);
  rt_xfree(map);
  rt_xfree(fold_into);
  if (!rc) pass_dce(dst);
  return rc ? -1 : folded;
}

/* Step "fold_bn": needs the weights (c->params), which it rewrites. */
int pass_fold_bn_step(PassCtx *c) {
  if (!c->params) return diag_plain(c->d, c->g->name, "folding batch norm needs the weights' values"), -1;
  Graph dst;
  ir_graph_init(&dst, c->g->name, c->d);
  int rc = pass_fold_batchnorm(c->g, &dst, c->params);
  pass_ctx_replace_graph(c, &dst);
  c->nfolded = rc < 0 ? 0 : rc;
  return rc < 0 ? -1 : 0;
}
