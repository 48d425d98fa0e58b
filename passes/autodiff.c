/*
 * autodiff.c — reverse-mode differentiation as a graph-to-graph pass.
 *
 * The backward graph is appended to the forward graph as ordinary nodes,
 * so it goes through the same verifier, passes and emitters.  Only nodes
 * on a path from a requested source (a trainable parameter, or an input
 * whose gradient was asked for) to the loss get gradients: frozen
 * parameters, labels and constants prune their whole branch, and nothing
 * is computed or stored for them.
 *
 * Nodes are visited from the loss down to the first id.  Each op's
 * vector-Jacobian rule (vjp) turns the gradient of its result into
 * contributions for its operands; a contribution to an operand that
 * broadcast is summed back to the operand's shape (reduce_to), and
 * contributions to one operand from several users are added (fan-out).
 * Building a node may move the node array, so nothing here keeps a
 * pointer into it across ir_op: shapes are passed by value and vjp works
 * on a copy of its node.
 *
 * Elementwise ops take their rules from their row of elemwise.def: one
 * generic ew_grad node per operand.  Other rules use primitive ops where a
 * primitive says it well and dedicated gradient ops (softmax_grad,
 * cross_entropy_grad, ...) where a fused kernel is both faster and more
 * accurate.
 */
#include <stdlib.h>
#include <string.h>

#include "ir/elemwise.h"
#include "passes/passes.h"

typedef struct AD {
  Graph *g;
  int n0;          /* nodes before the backward graph */
  int *grad;       /* node -> gradient node, -1 */
  char *needed;    /* on a path from a requested source to the loss */
  SrcLoc loc;
} AD;

static const Node *nd(AD *a, int id) { return &a->g->nodes[id]; }

static int op1(AD *a, OpKind op, int x, const Attrs *at) { return ir_op(a->g, op, &x, 1, at, a->loc); }
static int op2(AD *a, OpKind op, int x, int y, const Attrs *at) {
  int in[2] = {x, y};
  return ir_op(a->g, op, in, 2, at, a->loc);
}
static int op3(AD *a, OpKind op, int x, int y, int z, const Attrs *at) {
  int in[3] = {x, y, z};
  return ir_op(a->g, op, in, 3, at, a->loc);
}

static int reshape_to(AD *a, int x, Shape s) {
  if (ir_shape_eq(&nd(a, x)->shape, &s)) return x;
  Attrs at = ir_attrs_default(OP_RESHAPE);
  ir_attr_set_list(&at, OP_RESHAPE, "shape", s.d, s.rank);
  return op1(a, OP_RESHAPE, x, &at);
}

/* Sums c over the dimensions along which an operand of shape s was
 * broadcast, giving a tensor of shape s. */
static int reduce_to(AD *a, int c, Shape s) {
  Shape cs = nd(a, c)->shape;
  if (ir_shape_eq(&cs, &s)) return c;
  Dim axes[IR_MAX_RANK];
  int n = 0, lead = cs.rank - s.rank;
  for (int i = 0; i < cs.rank; i++)
    if (i < lead || (s.d[i - lead] == 1 && cs.d[i] != 1)) axes[n++] = i;
  if (n) {
    Attrs at = ir_attrs_default(OP_SUM);
    ir_attr_set_list(&at, OP_SUM, "axes", axes, n);
    at.dims.keepdim = 1;
    c = op1(a, OP_SUM, c, &at);
  }
  return reshape_to(a, c, s);
}

static void accumulate(AD *a, int operand, int contribution) {
  if (contribution < 0 || !a->needed[operand]) return;
  contribution = reduce_to(a, contribution, nd(a, operand)->shape);
  int old = a->grad[operand];
  a->grad[operand] = old < 0 ? contribution : op2(a, OP_ADD, old, contribution, NULL);
}

/* The last two axes swapped. */
static int transpose_last2(AD *a, int x) {
  int r = nd(a, x)->shape.rank;
  Dim perm[IR_MAX_RANK];
  for (int i = 0; i < r; i++) perm[i] = i;
  perm[r - 2] = r - 1, perm[r - 1] = r - 2;
  Attrs at = ir_attrs_default(OP_TRANSPOSE);
  ir_attr_set_list(&at, OP_TRANSPOSE, "perm", perm, r);
  return op1(a, OP_TRANSPOSE, x, &at);
}

/* s with a dimension of 1 inserted before position pos (from the end). */
static Shape with_unit(const Shape *s, int from_end) {
  Shape t = *s;
  int pos = s->rank - from_end;
  for (int i = t.rank; i > pos; i--) t.d[i] = t.d[i - 1];
  t.d[pos] = 1;
  t.rank++;
  return t;
}

static void vjp_matmul(AD *a, const Node *n, int dy) {
  int x = n->in[0], w = n->in[1];
  int rx = nd(a, x)->shape.rank, rw = nd(a, w)->shape.rank;
  if (rx == 1 && rw == 1) { /* dot product: dy is a scalar */
    accumulate(a, x, op2(a, OP_MUL, dy, w, NULL));
    accumulate(a, w, op2(a, OP_MUL, dy, x, NULL));
    return;
  }
  if (rw == 1) { /* [.., M, K] @ [K] = [.., M] */
    Shape s = with_unit(&nd(a, dy)->shape, 0);
    int dy2 = reshape_to(a, dy, s);
    if (a->needed[x]) accumulate(a, x, op2(a, OP_MUL, dy2, w, NULL));
    if (a->needed[w]) accumulate(a, w, op2(a, OP_MUL, x, dy2, NULL));
    return;
  }
  if (rx == 1) { /* [K] @ [.., K, N] = [.., N] */
    Shape s = with_unit(&nd(a, dy)->shape, 1), k1 = {2, {nd(a, x)->shape.d[0], 1}};
    int dy2 = reshape_to(a, dy, s);
    if (a->needed[x]) accumulate(a, x, op2(a, OP_MATMUL, dy2, transpose_last2(a, w), NULL));
    if (a->needed[w]) accumulate(a, w, op2(a, OP_MATMUL, reshape_to(a, x, k1), dy2, NULL));
    return;
  }
  if (a->needed[x]) accumulate(a, x, op2(a, OP_MATMUL, dy, transpose_last2(a, w), NULL));
  if (a->needed[w]) accumulate(a, w, op2(a, OP_MATMUL, transpose_last2(a, x), dy, NULL));
}

/* y = x W^T + b: dx = dy W, dW = dy^T x (summed over leading dims), db = sum dy. */
static void vjp_linear(AD *a, const Node *n, int dy) {
  int x = n->in[0], w = n->in[1];
  if (a->needed[x]) accumulate(a, x, op2(a, OP_MATMUL, dy, w, NULL));
  if (a->needed[w]) {
    if (nd(a, x)->shape.rank == 1) {
      Shape col = {2, {nd(a, dy)->shape.d[0], 1}};
      accumulate(a, w, op2(a, OP_MUL, reshape_to(a, dy, col), x, NULL));
    } else {
      accumulate(a, w, op2(a, OP_MATMUL, transpose_last2(a, dy), x, NULL));
    }
  }
  if (n->nin > 2) accumulate(a, n->in[2], dy);
}

static void vjp_reduce(AD *a, const Node *n, int id, int dy) {
  int x = n->in[0];
  if (n->op == OP_MAX) {
    accumulate(a, x, op3(a, OP_MAX_GRAD, dy, x, id, &n->attr));
    return;
  }
  /* dy with the reduced axes kept as 1, then broadcast back; a rank-0 dy
   * (every axis reduced) broadcasts as it is, and is often the constant
   * seed of the backward pass, which must not become a view */
  Shape keep = nd(a, x)->shape;
  for (int i = 0; i < n->attr.dims.nlist; i++) keep.d[n->attr.dims.list[i]] = 1;
  Attrs at = ir_attrs_default(OP_EXPAND_AS);
  at.expand.mean = n->op == OP_MEAN;
  int kept = nd(a, dy)->shape.rank == 0 ? dy : reshape_to(a, dy, keep);
  accumulate(a, x, op2(a, OP_EXPAND_AS, kept, x, &at));
}

static void vjp_concat(AD *a, const Node *n, int dy) {
  int64_t off = 0;
  for (int k = 0; k < n->nin; k++) {
    int64_t len = nd(a, n->in[k])->shape.d[n->attr.axis.axis];
    if (a->needed[n->in[k]]) {
      Attrs at = ir_attrs_default(OP_SLICE);
      at.axis.axis = n->attr.axis.axis, at.axis.start = off, at.axis.end = off + len;
      accumulate(a, n->in[k], op1(a, OP_SLICE, dy, &at));
    }
    off += len;
  }
}

static void vjp_transpose(AD *a, const Node *n, int dy) {
  Dim inv[IR_MAX_RANK];
  for (int i = 0; i < n->attr.dims.nlist; i++) inv[n->attr.dims.list[i]] = i;
  Attrs at = ir_attrs_default(OP_TRANSPOSE);
  ir_attr_set_list(&at, OP_TRANSPOSE, "perm", inv, n->attr.dims.nlist);
  accumulate(a, n->in[0], op1(a, OP_TRANSPOSE, dy, &at));
}

/* An elementwise op (a row of elemwise.def): for each operand that needs
 * a gradient, one ew_grad node over dy and what the row's vjp reads, or
 * dy itself when the vjp is the identity; a comparison contributes nothing
 * (its result is piecewise constant). */
static void vjp_elemwise(AD *a, const Node *n, int id, int dy) {
  for (int k = 0; k < n->nin; k++) {
    if (!a->needed[n->in[k]] || ir_ew_vjp_is_none(n->op, k, &n->attr)) continue;
    if (ir_ew_vjp_is_dy(n->op, k, &n->attr)) {
      accumulate(a, n->in[k], dy);
      continue;
    }
    unsigned m = ir_ew_needs(n->op, k, n->nin);
    int in[4] = {dy}, nin = 1;
    if (m & EWN_A) in[nin++] = n->in[0];
    if (m & EWN_B) in[nin++] = n->in[1];
    if (m & EWN_Y) in[nin++] = id;
    Attrs at = ir_ew_grad_attrs(n->op, k, n->nin, &n->attr);
    accumulate(a, n->in[k], ir_op(a->g, OP_EW_GRAD, in, nin, &at, a->loc));
  }
}

/* where(c, a, b): dy goes to a where c holds and to b elsewhere, as two
 * wheres against a zero constant (reduced to each operand's shape). */
static void vjp_where(AD *a, const Node *n, int dy) {
  int c = n->in[0], zero = ir_const(a->g, 0, a->loc);
  if (a->needed[n->in[1]]) accumulate(a, n->in[1], op3(a, OP_WHERE, c, dy, zero, NULL));
  if (a->needed[n->in[2]]) accumulate(a, n->in[2], op3(a, OP_WHERE, c, zero, dy, NULL));
}

/* --- convolution and pooling ---------------------------------------------- */

/* Sums dy over every axis but 1 (the channels): a convolution's bias. */
static int channel_sum(AD *a, int dy) {
  Dim axes[IR_MAX_RANK];
  int r = nd(a, dy)->shape.rank, n = 0;
  for (int i = 0; i < r; i++)
    if (i != 1) axes[n++] = i;
  Attrs at = ir_attrs_default(OP_SUM);
  ir_attr_set_list(&at, OP_SUM, "axes", axes, n);
  return op1(a, OP_SUM, dy, &at);
}

/* s with a height of 1 inserted (a 1-D convolution's operand as 2-D). */
static Shape as_2d(const Shape *s) { return with_unit(s, 1); }

/* The 2-D attributes of conv node n (conv2d, or conv1d seen with H = 1). */
static Attrs conv2d_attrs(const Node *n) {
  Attrs at = n->attr;
  if (n->op == OP_CONV1D) {
    at.window.stride = (IntList){2, {1, n->attr.window.stride.v[0]}};
    at.window.dilation = (IntList){2, {1, n->attr.window.dilation.v[0]}};
    at.window.padding = (IntList){4, {0, 0, n->attr.window.padding.v[0], n->attr.window.padding.v[1]}};
  }
  return at;
}

/* conv2d and conv1d.  With reflect or replicate padding the input is padded
 * explicitly first, so the rule only ever sees zero padding:
 * dx = conv_transpose2d(dy, w) with the output_padding that restores x's
 * extent, dw = conv2d_grad_weight(dy, x), db = the channel sums of dy. */
static void vjp_conv(AD *a, const Node *n, int dy) {
  int x = n->in[0], w = n->in[1];
  Attrs at = conv2d_attrs(n);
  int x4 = x, w4 = w, dy4 = dy;
  if (n->op == OP_CONV1D) {
    Shape sx = as_2d(&nd(a, x)->shape), sw = as_2d(&nd(a, w)->shape), sy = as_2d(&nd(a, dy)->shape);
    x4 = reshape_to(a, x, sx), w4 = reshape_to(a, w, sw), dy4 = reshape_to(a, dy, sy);
  }
  int xp = x4;
  Attrs pa = ir_attrs_default(OP_PAD);
  if (at.window.mode != PAD_CONSTANT) {
    const int64_t *p = at.window.padding.v;
    Dim pads[4] = {p[2], p[3], p[0], p[1]};
    ir_attr_set_list(&pa, OP_PAD, "pads", pads, 4);
    pa.pad.mode = at.window.mode;
    xp = op1(a, OP_PAD, x4, &pa);
    at.window.padding = (IntList){4, {0, 0, 0, 0}};
    at.window.mode = PAD_CONSTANT;
  }
  if (a->needed[w]) {
    Attrs gw = ir_attrs_default(OP_CONV2D_GRAD_WEIGHT);
    gw.window.stride = at.window.stride, gw.window.padding = at.window.padding, gw.window.dilation = at.window.dilation,
    gw.window.groups = at.window.groups;
    accumulate(a, w, reshape_to(a, op3(a, OP_CONV2D_GRAD_WEIGHT, dy4, xp, w4, &gw), nd(a, w)->shape));
  }
  if (a->needed[x]) {
    Shape sxv = nd(a, xp)->shape, swv = nd(a, w4)->shape; /* copies: ir_op may move the nodes */
    const Shape *sx = &sxv, *sw = &swv;
    Attrs tr = ir_attrs_default(OP_CONV_TRANSPOSE2D);
    tr.window.stride = at.window.stride, tr.window.padding = at.window.padding, tr.window.dilation = at.window.dilation,
    tr.window.groups = at.window.groups;
    tr.window.output_padding.n = 2;
    for (int i = 0; i < 2; i++) /* the rows the forward's floor division dropped */
      tr.window.output_padding.v[i] = (sx->d[2 + i] + at.window.padding.v[2 * i] + at.window.padding.v[2 * i + 1] -
                                       at.window.dilation.v[i] * (sw->d[2 + i] - 1) - 1) % at.window.stride.v[i];
    int dx = op2(a, OP_CONV_TRANSPOSE2D, dy4, w4, &tr);
    if (xp != x4) dx = op2(a, OP_PAD_GRAD, dx, x4, &pa);
    accumulate(a, x, reshape_to(a, dx, nd(a, x)->shape));
  }
  if (n->nin > 2) accumulate(a, n->in[2], channel_sum(a, dy));
}

/* conv_transpose2d is conv2d's data gradient, so its own gradients are
 * conv2d (for x) and conv2d_grad_weight with dy and x in each other's
 * roles (for w). */
static void vjp_conv_transpose(AD *a, const Node *n, int dy) {
  int x = n->in[0], w = n->in[1];
  Attrs c = ir_attrs_default(OP_CONV2D);
  const AttrWindow *t = &n->attr.window;
  c.window.stride = t->stride, c.window.padding = t->padding, c.window.dilation = t->dilation, c.window.groups = t->groups;
  if (a->needed[x]) accumulate(a, x, op2(a, OP_CONV2D, dy, w, &c));
  if (a->needed[w]) {
    Attrs gw = ir_attrs_default(OP_CONV2D_GRAD_WEIGHT);
    gw.window = c.window;
    accumulate(a, w, op3(a, OP_CONV2D_GRAD_WEIGHT, x, dy, w, &gw));
  }
  if (n->nin > 2) accumulate(a, n->in[2], channel_sum(a, dy));
}

/* global_avg_pool: dy spread evenly over each plane (expand_as's mean). */
static void vjp_global_pool(AD *a, const Node *n, int dy) {
  Attrs at = ir_attrs_default(OP_EXPAND_AS);
  at.expand.mean = 1;
  accumulate(a, n->in[0], op2(a, OP_EXPAND_AS, dy, n->in[0], &at));
}

/* --- scan: a reverse scan (autodiff_scan.c) ------------------------------------ */

/* The gradient of result j of scan id: the sum over its projections, or -1. */
static int result_grad(AD *a, int id, int j) {
  int d = -1;
  for (int u = id + 1; u < a->n0; u++) {
    const Node *o = nd(a, u);
    if (o->op != OP_SCAN_OUT || o->in[0] != id || o->attr.scan.index != j || a->grad[u] < 0) continue;
    d = d < 0 ? a->grad[u] : op2(a, OP_ADD, d, a->grad[u], NULL);
  }
  return d;
}

static int project(AD *a, int scan, int j) {
  Attrs at = ir_attrs_default(OP_SCAN_OUT);
  at.scan.index = j;
  return op1(a, OP_SCAN_OUT, scan, &at);
}

static int zeros_like(AD *a, int x) { return op2(a, OP_EXPAND_AS, ir_const(a->g, 0.0, a->loc), x, NULL); }

/* Operands of the reverse scan: sequences (x, the stacked states, the
 * outputs' gradients), initial states (the final states' gradients, zero
 * accumulators), then the forward scan's constants. */
static int reverse_operands(AD *a, int id, const Node *n, const int *dy, int *ops) {
  const AttrScan *s = &n->attr.scan;
  int ny = ir_scan_ny(s), np = n->nin - s->nseq - s->nstate, k = 0;
  for (int i = 0; i < s->nseq; i++) ops[k++] = n->in[i];
  for (int i = 0; i < s->nstate; i++) ops[k++] = project(a, id, ny + s->nstate + i);
  for (int j = 0; j < ny; j++)
    if (dy[j] >= 0) ops[k++] = dy[j];
  for (int i = 0; i < s->nstate; i++) {
    int d = result_grad(a, id, ny + i);
    ops[k++] = d >= 0 ? d : zeros_like(a, n->in[s->nseq + i]);
  }
  for (int p = 0; p < np; p++) ops[k++] = zeros_like(a, n->in[s->nseq + s->nstate + p]);
  for (int p = 0; p < np; p++) ops[k++] = n->in[s->nseq + s->nstate + p];
  return k;
}

static void vjp_scan(AD *a, int id) {
  const Node copy = *nd(a, id), *n = &copy;
  const AttrScan *s = &n->attr.scan;
  int ny = ir_scan_ny(s), np = n->nin - s->nseq - s->nstate, dy[64], has[64], ndy = 0, ops[200];
  for (int j = 0; j < ny; j++) dy[j] = result_grad(a, id, j), has[j] = dy[j] >= 0, ndy += has[j];
  Attrs at = ir_attrs_default(OP_SCAN);
  at.scan = (AttrScan){pass_scan_backward_body(a->g, n, has), s->nseq + s->nstate + ndy, s->nstate + np, s->axis,
                       !s->reverse, 0};
  if (!at.scan.body) return;
  int nops = reverse_operands(a, id, n, dy, ops);
  int r = ir_op(a->g, OP_SCAN, ops, nops, &at, n->loc);
  if (r < 0) return;
  for (int i = 0; i < n->nin; i++)
    if (a->needed[n->in[i]]) accumulate(a, n->in[i], project(a, r, i)); /* result i is operand i's gradient */
}

/* Contributions of node id (with gradient dy) to its operands. */
static void vjp(AD *a, int id, int dy) {
  const Node copy = *nd(a, id), *n = &copy; /* the rules add nodes, which may move the array */
  int x = n->nin > 0 ? n->in[0] : -1, y = n->nin > 1 ? n->in[1] : -1;
  Attrs at = n->attr;
  switch (n->op) {
  case OP_INPUT:
  case OP_PARAM:
  case OP_STATE:
  case OP_CONST:
    return;
  case OP_MATMUL: vjp_matmul(a, n, dy); return;
  case OP_LINEAR: vjp_linear(a, n, dy); return;
#define EW(id, ...) case OP_##id:
#include "ir/elemwise.def"
#undef EW
    vjp_elemwise(a, n, id, dy);
    return;
  case OP_WHERE: vjp_where(a, n, dy); return;
  case OP_TRIL: /* the kept elements pass dy; the filled ones are constants */
    at.scalar.f = 0;
    accumulate(a, x, ir_op(a->g, OP_TRIL, &dy, 1, &at, a->loc));
    return;
  case OP_SOFTMAX: accumulate(a, x, op2(a, OP_SOFTMAX_GRAD, dy, id, &at)); return;
  case OP_LOG_SOFTMAX: accumulate(a, x, op2(a, OP_LOG_SOFTMAX_GRAD, dy, id, &at)); return;
  case OP_RESHAPE:
  case OP_FLATTEN:
    accumulate(a, x, reshape_to(a, dy, nd(a, x)->shape));
    return;
  case OP_TRANSPOSE: vjp_transpose(a, n, dy); return;
  case OP_CONCAT: vjp_concat(a, n, dy); return;
  case OP_SLICE: accumulate(a, x, op2(a, OP_SLICE_GRAD, dy, x, &at)); return;
  case OP_SUM:
  case OP_MEAN:
  case OP_MAX:
    vjp_reduce(a, n, id, dy);
    return;
  case OP_MAXOUT: accumulate(a, x, op2(a, OP_MAXOUT_GRAD, dy, x, &at)); return;
  case OP_CONV2D:
  case OP_CONV1D:
    vjp_conv(a, n, dy);
    return;
  case OP_CONV_TRANSPOSE2D: vjp_conv_transpose(a, n, dy); return;
  case OP_MAX_POOL2D: accumulate(a, x, op2(a, OP_MAX_POOL2D_GRAD, dy, x, &at)); return;
  case OP_AVG_POOL2D: accumulate(a, x, op2(a, OP_AVG_POOL2D_GRAD, dy, x, &at)); return;
  case OP_GLOBAL_AVG_POOL: vjp_global_pool(a, n, dy); return;
  case OP_UPSAMPLE: accumulate(a, x, op2(a, OP_UPSAMPLE_GRAD, dy, x, &at)); return;
  case OP_PAD: accumulate(a, x, op2(a, OP_PAD_GRAD, dy, x, &at)); return;
  case OP_GATHER:
  case OP_INDEX_SELECT:
    accumulate(a, x, op3(a, OP_GATHER_GRAD, dy, x, y, &at));
    return;
  case OP_CROSS_ENTROPY: accumulate(a, x, op3(a, OP_CE_GRAD, dy, x, y, &at)); return;
  case OP_NLL_LOSS: accumulate(a, x, op3(a, OP_NLL_GRAD, dy, x, y, &at)); return;
  case OP_BCE_LOGITS:
  case OP_MSE_LOSS:
  case OP_L1_LOSS:
  case OP_TRIPLET_LOSS:
  case OP_LAYER_NORM:
    IR_ASSERT(!"composite losses and layer_norm are decomposed before autodiff");
    return;
  case OP_EXPAND_AS:
  case OP_EW_GRAD:
  case OP_SOFTMAX_GRAD:
  case OP_LOG_SOFTMAX_GRAD:
  case OP_SLICE_GRAD:
  case OP_MAX_GRAD:
  case OP_MAXOUT_GRAD:
  case OP_GATHER_GRAD:
  case OP_CE_GRAD:
  case OP_NLL_GRAD:
  case OP_CONV2D_GRAD_WEIGHT:
  case OP_MAX_POOL2D_GRAD:
  case OP_AVG_POOL2D_GRAD:
  case OP_UPSAMPLE_GRAD:
  case OP_PAD_GRAD:
  case OP_SGD_STEP:
  case OP_ADAM_STEP:
  case OP_RMSPROP_STEP:
  case OP_ADAGRAD_STEP:
  case OP_RUNNING_UPDATE:
  case OP_DIST_SUM: /* counts: only running statistics read it */
  case OP_COUNT:
    IR_ASSERT(!"no second derivatives");
    return;
  case OP_BATCHNORM:
    IR_ASSERT(!"batchnorm is decomposed before autodiff");
    return;
  case OP_SCAN_OUT: /* the scan gathers its projections' gradients */
    if (a->grad[x] < 0) a->grad[x] = id;
    return;
  case OP_SCAN: vjp_scan(a, id); return;
  case OP_DROPOUT: accumulate(a, x, dy); return; /* inference mode: the identity */
  case OP_DIST_MEAN: /* y = sum_r w_r x_r; each process's gradient is the share-weighted sum of dy (trainer.c) */
    accumulate(a, x, op1(a, OP_DIST_MEAN, dy, NULL));
    return;
  case OP_DROPOUT_TRAIN: /* the same mask, recomputed from its counter */
    accumulate(a, x, op2(a, OP_DROPOUT_TRAIN, dy, y, &at));
    return;
  case OP_STOP_GRADIENT: /* mark_needed never reaches these */
  case OP_RAND:
  case OP_RANDN:
  case OP_RAND_LIKE:
  case OP_RANDN_LIKE:
  case OP_BERNOULLI:
    return;
  }
}

/* Ops whose result does not depend differentiably on their operands:
 * stop_gradient, and the random draws (bernoulli's p only sets odds). */
static int blocks_gradient(OpKind op) { return op == OP_STOP_GRADIENT || (ir_ops[op].flags & OPF_RANDOM); }

/* needed = reachable forward from a requested source and backward from loss;
 * forward reach stops at the ops that block gradients. */
static void mark_needed(AD *a, int loss, const int *wrt, int nwrt) {
  const Graph *g = a->g;
  char *fwd = rt_xcalloc((size_t)g->nnodes + 1, 1), *bwd = rt_xcalloc((size_t)g->nnodes + 1, 1);
  IR_ASSERT(fwd && bwd);
  for (int i = 0; i < nwrt; i++) fwd[wrt[i]] = 1;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin && !fwd[i]; k++)
      if (fwd[g->nodes[i].in[k]] && g->nodes[i].dtype == DT_F32 && !blocks_gradient(g->nodes[i].op)) fwd[i] = 1;
  bwd[loss] = 1;
  for (int i = loss; i >= 0; i--)
    if (bwd[i])
      for (int k = 0; k < g->nodes[i].nin; k++) bwd[g->nodes[i].in[k]] = 1;
  for (int i = 0; i < g->nnodes; i++) a->needed[i] = fwd[i] && bwd[i];
  rt_xfree(fwd);
  rt_xfree(bwd);
}

int pass_autodiff(Graph *g, int loss, const int *wrt, int nwrt, int *grads) {
  int n0 = g->nnodes;
  AD a = {g, n0, rt_xmalloc(sizeof(int) * ((size_t)n0 + 1)), rt_xcalloc((size_t)n0 + 1, 1), g->nodes[loss].loc};
  IR_ASSERT(a.grad && a.needed);
  for (int i = 0; i < n0; i++) a.grad[i] = -1;
  mark_needed(&a, loss, wrt, nwrt);
  int bad = 0;
  if (a.needed[loss]) {
    a.grad[loss] = ir_const(g, 1.0, a.loc);
    for (int id = loss; id >= 0 && !bad; id--) {
      if (a.grad[id] < 0 || !a.needed[id]) continue;
      int before = g->diags ? g->diags->nerrors : 0;
      vjp(&a, id, a.grad[id]);
      if (g->diags && g->diags->nerrors > before) bad = 1;
    }
  }
  for (int i = 0; i < nwrt; i++) grads[i] = a.grad[wrt[i]];
  rt_xfree(a.grad);
  rt_xfree(a.needed);
  return bad ? -1 : 0;
}
