/*
 * decompose.c — rewrites composite ops into primitive ones.
 *
 * Losses other than cross-entropy (bce_with_logits, mse_loss, l1_loss,
 * triplet_margin_loss) are each one node for inference, where a single
 * kernel is best, but their gradients are simplest as the gradients of
 * the primitives they are made of.  Before autodiff, this pass copies the
 * graph into a new one in the same order, writing each composite node as
 * its primitive expression; every other node is copied as is.  map[old] is
 * the new id of each old node, so callers can follow their ids (the loss,
 * the labels) into the new graph.
 */
#include "passes/passes.h"

typedef struct Dec {
  Graph *g;
  SrcLoc loc;
} Dec;

static int op1(Dec *d, OpKind op, int x) { return ir_op(d->g, op, &x, 1, NULL, d->loc); }
static int op2(Dec *d, OpKind op, int x, int y) {
  int in[2] = {x, y};
  return ir_op(d->g, op, in, 2, NULL, d->loc);
}
static int cst(Dec *d, double v) { return ir_const(d->g, v, d->loc); }

/* mean, sum or nothing over all elements (or over the batch axis only
 * for per-sample values). */
static int reduce(Dec *d, int x, int reduction) {
  if (reduction == RED_NONE) return x;
  return op1(d, reduction == RED_MEAN ? OP_MEAN : OP_SUM, x);
}

/* ||a - b + eps||_2 over axis 1, as torch.pairwise_distance. */
static int pair_dist(Dec *d, int a, int b) {
  int diff = op2(d, OP_ADD, op2(d, OP_SUB, a, b), cst(d, 1e-6));
  Attrs at = ir_attrs_default(OP_SUM);
  Dim ax = 1;
  ir_attr_set_list(&at, OP_SUM, "axes", &ax, 1);
  int sq = op2(d, OP_MUL, diff, diff);
  return op1(d, OP_SQRT, ir_op(d->g, OP_SUM, &sq, 1, &at, d->loc));
}

static int expand(Dec *d, const Node *n, const int *in) {
  int x = in[0], y = n->nin > 1 ? in[1] : -1;
  switch ((int)n->op) { /* composite ops only */
  case OP_MSE_LOSS: {
    int diff = op2(d, OP_SUB, x, y);
    return reduce(d, op2(d, OP_MUL, diff, diff), n->attr.reduction);
  }
  case OP_L1_LOSS: return reduce(d, op1(d, OP_ABS, op2(d, OP_SUB, x, y)), n->attr.reduction);
  case OP_BCE_LOGITS: { /* max(x, 0) - x*y + log(1 + exp(-|x|)) */
    int soft = op1(d, OP_LOG, op2(d, OP_ADD, op1(d, OP_EXP, op1(d, OP_NEG, op1(d, OP_ABS, x))), cst(d, 1)));
    return reduce(d, op2(d, OP_ADD, op2(d, OP_SUB, op1(d, OP_RELU, x), op2(d, OP_MUL, x, y)), soft), n->attr.reduction);
  }
  case OP_TRIPLET_LOSS: {
    int gap = op2(d, OP_SUB, pair_dist(d, x, y), pair_dist(d, x, in[2]));
    return reduce(d, op1(d, OP_RELU, op2(d, OP_ADD, gap, cst(d, n->attr.f))), n->attr.reduction);
  }
  }
  return -1;
}

static int is_composite(OpKind op) {
  return op == OP_MSE_LOSS || op == OP_L1_LOSS || op == OP_BCE_LOGITS || op == OP_TRIPLET_LOSS;
}

int pass_decompose(const Graph *src, Graph *dst, int *map) {
  ir_clone_header(dst, src);
  for (int i = 0; i < src->nnodes; i++) {
    const Node *n = &src->nodes[i];
    if (!is_composite(n->op)) {
      map[i] = ir_clone_node(dst, src, i, map);
    } else {
      int in[8] = {0};
      for (int k = 0; k < n->nin; k++) in[k] = map[n->in[k]];
      Dec d = {dst, n->loc};
      map[i] = expand(&d, n, in);
    }
    if (map[i] < 0) return -1;
  }
  for (int i = 0; i < src->noutputs; i++) ir_output(dst, src->outputs[i].name, map[src->outputs[i].id]);
  return 0;
}
