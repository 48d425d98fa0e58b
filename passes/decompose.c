/*
 * decompose.c — rewrites composite ops into primitive ones.
 *
 * Losses other than cross-entropy (bce_with_logits, mse_loss, l1_loss,
 * triplet_margin_loss) and layer_norm are each one node for inference, where a single
 * kernel is best, but their gradients are simplest as the gradients of
 * the primitives they are made of.  Before autodiff, this pass copies the
 * graph into a new one in the same order, writing each composite node as
 * its primitive expression; every other node is copied as is.  map[old] is
 * the new id of each old node, so callers can follow their ids (the loss,
 * the labels) into the new graph.  In training mode dropout becomes
 * dropout_train and each random op gets the "step" input as its last
 * operand (and the run's seed added to its own), so both draw afresh each
 * step and recompute the same numbers in backward.
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
    return reduce(d, op2(d, OP_MUL, diff, diff), n->attr.loss.reduction);
  }
  case OP_L1_LOSS: return reduce(d, op1(d, OP_ABS, op2(d, OP_SUB, x, y)), n->attr.loss.reduction);
  case OP_BCE_LOGITS: { /* elemwise.c's (1 - y) x + max(-x, 0) + log1p(exp(-|x|)) */
    /* max(-x, 0) written (|x| - x) / 2: at x = 0 its derivative is -1/2,
     * so the gradient there is sigmoid(0) - y like torch's, not 1 - y;
     * log1p(exp(-|x|)) is softplus(-|x|), never above its threshold */
    int ax = op1(d, OP_ABS, x);
    int soft = op1(d, OP_SOFTPLUS, op1(d, OP_NEG, ax));
    int neg = op2(d, OP_MUL, op2(d, OP_SUB, ax, x), cst(d, 0.5));
    int lin = op2(d, OP_MUL, op2(d, OP_SUB, cst(d, 1), y), x);
    return reduce(d, op2(d, OP_ADD, op2(d, OP_ADD, lin, neg), soft), n->attr.loss.reduction);
  }
  case OP_TRIPLET_LOSS: {
    int gap = op2(d, OP_SUB, pair_dist(d, x, y), pair_dist(d, x, in[2]));
    return reduce(d, op1(d, OP_RELU, op2(d, OP_ADD, gap, cst(d, n->attr.loss.margin))), n->attr.loss.reduction);
  }
  }
  return -1;
}

/* [1, C, 1, ...] view of a per-channel [C] tensor for x of rank r. */
static int per_channel(Dec *d, int v, int r) {
  Shape s = {r, {0}};
  for (int i = 0; i < r; i++) s.d[i] = 1;
  s.d[1] = d->g->nodes[v].shape.d[0];
  Attrs at = ir_attrs_default(OP_RESHAPE);
  ir_attr_set_list(&at, OP_RESHAPE, "shape", s.d, r);
  return ir_op(d->g, OP_RESHAPE, &v, 1, &at, d->loc);
}

static int flat(Dec *d, int v) {
  Dim c = d->g->nodes[v].shape.d[1];
  Attrs at = ir_attrs_default(OP_RESHAPE);
  ir_attr_set_list(&at, OP_RESHAPE, "shape", &c, 1);
  return ir_op(d->g, OP_RESHAPE, &v, 1, &at, d->loc);
}

/* Mean over every axis but the channels (1), kept as size-1 axes. */
static int channel_mean(Dec *d, int v) {
  int r = d->g->nodes[v].shape.rank;
  Dim axes[IR_MAX_RANK];
  int n = 0;
  for (int i = 0; i < r; i++)
    if (i != 1) axes[n++] = i;
  Attrs at = ir_attrs_default(OP_MEAN);
  ir_attr_set_list(&at, OP_MEAN, "axes", axes, n);
  at.dims.keepdim = 1;
  return ir_op(d->g, OP_MEAN, &v, 1, &at, d->loc);
}

/* With sync, the factor M / (M - 1) that makes the global batch's biased
 * variance unbiased, M the elements per channel over every process (the
 * processes' counts summed by dist_sum), 1 when M is 1 as in
 * running_update. */
static int unbias_factor(Dec *d, int x) {
  int ones = op2(d, OP_ADD, op2(d, OP_MUL, x, cst(d, 0)), cst(d, 1));
  int m = op2(d, OP_MUL, op1(d, OP_DIST_SUM, op1(d, OP_SUM, ones)), cst(d, 1.0 / (double)d->g->nodes[x].shape.d[1]));
  return op2(d, OP_DIV, m, op2(d, OP_MAXIMUM, op2(d, OP_SUB, m, cst(d, 1)), cst(d, 1)));
}

/* Batch norm with batch statistics (training): normalise with the mean and
 * biased variance of the batch, and update the running statistics with
 * the unbiased variance, as torch.nn.BatchNorm does in train mode.  With
 * sync (--sync-bn, like torch.nn.SyncBatchNorm) the batch is the global
 * one: the mean, then the mean of squared deviations from it, are each
 * weighted over the processes by dist_mean (two passes, as one process
 * computes them, rather than the sum of squares less the squared mean,
 * which cancels badly), and the gradients flow back through dist_mean. */
static int batchnorm_train(Dec *d, const Node *n, const int *in, int sync) {
  int x = in[0], r = d->g->nodes[x].shape.rank;
  double eps = n->attr.hyper.hp[HP_EPS];
  int mean = channel_mean(d, x);
  if (sync) mean = op1(d, OP_DIST_MEAN, mean);
  int diff = op2(d, OP_SUB, x, mean);
  int var = channel_mean(d, op2(d, OP_MUL, diff, diff));
  if (sync) var = op1(d, OP_DIST_MEAN, var);
  Attrs pw = ir_attrs_default(OP_POW);
  pw.scalar.f = -0.5;
  int inv = ir_op(d->g, OP_POW, (int[]){op2(d, OP_ADD, var, cst(d, eps))}, 1, &pw, d->loc);
  int y = op2(d, OP_ADD, op2(d, OP_MUL, op2(d, OP_MUL, diff, inv), per_channel(d, in[1], r)), per_channel(d, in[2], r));
  Attrs up = ir_attrs_default(OP_RUNNING_UPDATE);
  up.hyper.hp[HP_MOMENTUM] = n->attr.hyper.hp[HP_MOMENTUM];
  int ops[3] = {in[3], flat(d, mean), x};
  if (ir_op(d->g, OP_RUNNING_UPDATE, ops, 3, &up, d->loc) < 0) return -1;
  up.hyper.unbiased = !sync;
  ops[0] = in[4], ops[1] = sync ? op2(d, OP_MUL, flat(d, var), unbias_factor(d, x)) : flat(d, var);
  if (ir_op(d->g, OP_RUNNING_UPDATE, ops, 3, &up, d->loc) < 0) return -1;
  return y;
}

/* Batch norm with the running statistics, in primitives (for gradients in
 * inference mode: `dlc run --grads`). */
static int batchnorm_eval(Dec *d, const Node *n, const int *in) {
  int x = in[0], r = d->g->nodes[x].shape.rank;
  Attrs pw = ir_attrs_default(OP_POW);
  pw.scalar.f = -0.5;
  int inv = ir_op(d->g, OP_POW, (int[]){op2(d, OP_ADD, in[4], cst(d, n->attr.hyper.hp[HP_EPS]))}, 1, &pw, d->loc);
  int scale = per_channel(d, op2(d, OP_MUL, in[1], inv), r);
  return op2(d, OP_ADD, op2(d, OP_MUL, op2(d, OP_SUB, x, per_channel(d, in[3], r)), scale), per_channel(d, in[2], r));
}

/* layer_norm in primitives, for its gradients: the mean and biased
 * variance over the last ndim axes (kept as size-1 axes), then
 * (x - mean) * (var + eps)^-1/2, times weight, plus bias (both broadcast
 * from the right). */
static int layer_norm(Dec *d, const Node *n, const int *in) {
  int x = in[0], r = d->g->nodes[x].shape.rank;
  Dim axes[IR_MAX_RANK];
  for (int k = 0; k < n->attr.scalar.mode; k++) axes[k] = r - n->attr.scalar.mode + k;
  Attrs at = ir_attrs_default(OP_MEAN);
  ir_attr_set_list(&at, OP_MEAN, "axes", axes, n->attr.scalar.mode);
  at.dims.keepdim = 1;
  int diff = op2(d, OP_SUB, x, ir_op(d->g, OP_MEAN, &x, 1, &at, d->loc));
  int sq = op2(d, OP_MUL, diff, diff);
  int var = ir_op(d->g, OP_MEAN, &sq, 1, &at, d->loc);
  Attrs pw = ir_attrs_default(OP_POW);
  pw.scalar.f = -0.5;
  int inv = ir_op(d->g, OP_POW, (int[]){op2(d, OP_ADD, var, cst(d, n->attr.scalar.f))}, 1, &pw, d->loc);
  int y = op2(d, OP_MUL, diff, inv);
  if (n->nin > 1) y = op2(d, OP_MUL, y, in[1]);
  return n->nin > 2 ? op2(d, OP_ADD, y, in[2]) : y;
}

/* The "step" input of a training graph, made on first use. */
static int step_input(Graph *g) {
  int id = ir_find_input(g, "step");
  Shape s = {0, {0}};
  return id >= 0 ? id : ir_input(g, "step", DT_F32, &s, (SrcLoc){0});
}

static int is_composite(OpKind op, int training) {
  return op == OP_MSE_LOSS || op == OP_L1_LOSS || op == OP_BCE_LOGITS || op == OP_TRIPLET_LOSS ||
         op == OP_BATCHNORM || op == OP_LAYER_NORM || (training && (op == OP_DROPOUT || (ir_ops[op].flags & OPF_RANDOM)));
}

/* A random op in training: the same draw offset by the run's seed, with
 * the step as its last operand, so each step draws afresh. */
static int random_train(Dec *d, const Node *n, const int *in, const DecomposeOpts *o) {
  Attrs at = n->attr;
  at.random.seed = (int64_t)((uint64_t)at.random.seed + o->seed);
  int ops[2] = {in[0], step_input(d->g)}, nop = ir_ops[n->op].min_in;
  if (!nop) ops[0] = ops[1];
  int id = ir_op(d->g, n->op, ops, nop + 1, &at, d->loc);
  if (id >= 0 && n->name) d->g->nodes[id].name = arena_strdup(&d->g->arena, n->name);
  return id;
}

static int expand_mode(Dec *d, const Node *n, const int *in, const DecomposeOpts *o, int salt) {
  if (ir_ops[n->op].flags & OPF_RANDOM) return random_train(d, n, in, o);
  if (n->op == OP_BATCHNORM) return o->training ? batchnorm_train(d, n, in, o->sync_bn) : batchnorm_eval(d, n, in);
  if (n->op == OP_LAYER_NORM) return layer_norm(d, n, in);
  if (n->op == OP_DROPOUT) {
    Attrs at = ir_attrs_default(OP_DROPOUT_TRAIN);
    at.random.p = n->attr.scalar.f, at.random.seed = (int64_t)o->seed, at.random.salt = salt;
    return ir_op(d->g, OP_DROPOUT_TRAIN, (int[]){in[0], step_input(d->g)}, 2, &at, d->loc);
  }
  return expand(d, n, in);
}

Node pass_noise_node(const Node *n, int id) {
  Node r = *n;
  r.op = n->noise == NOISE_RAND ? OP_RAND : OP_RANDN;
  r.nin = 0, r.in = NULL, r.noise = NOISE_NONE;
  r.attr = ir_attrs_default(r.op);
  ir_attr_set_list(&r.attr, r.op, "shape", n->shape.d, n->shape.rank);
  r.attr.random.salt = IR_RANDOM_SALT_BASE + id;
  return r;
}

int pass_decompose(const Graph *src, Graph *dst, int *map, const DecomposeOpts *o) {
  ir_clone_header(dst, src);
  for (int i = 0; i < src->nnodes; i++) {
    const Node *n = &src->nodes[i];
    if (o->training && o->noise && n->op == OP_INPUT && n->noise) {
      Node r = pass_noise_node(n, i);
      Dec d = {dst, n->loc};
      map[i] = random_train(&d, &r, (int[]){0}, o);
    } else if (!is_composite(n->op, o->training)) {
      map[i] = ir_clone_node(dst, src, i, map);
    } else {
      int in[8] = {0};
      for (int k = 0; k < n->nin; k++) in[k] = map[n->in[k]];
      Dec d = {dst, n->loc};
      map[i] = expand_mode(&d, n, in, o, i);
    }
    if (map[i] < 0) return -1;
  }
  for (int i = 0; i < src->noutputs; i++) ir_output(dst, src->outputs[i].name, map[src->outputs[i].id]);
  return 0;
}
