/*
 * test_autodiff.c — gradients: autodiff against finite differences, every
 * backend against the interpreter on the gradient graphs, and whole models
 * against PyTorch.
 *
 * 1. Finite differences.  Every differentiable case of op_cases.h (and
 *    extra broadcasting cases of the binary ops, with random inputs from a
 *    fixed seed) becomes the scalar L = sum(out * w), w a fixed
 *    pseudo-random input of out's shape; pass_build_grads differentiates it
 *    with respect to every f32 input and the interpreter runs the result.
 *    Each gradient element is compared with the central difference
 *    (L(x+h) - L(x-h)) / (2h), L evaluated by the interpreter's forward
 *    pass and summed in double.  The step is h = 1e-2 * max(1, |x|), with
 *    inputs of scale 1.  The tolerance is |g - fd| <= 2e-3 * max(1, |fd|):
 *    the truncation error of the central difference is h^2/6 |f'''|, at
 *    most ~1.6e-3 for these inputs (pow -1 or a denominator at 0.5:
 *    96 h^2/6), and the rounding error is the float32 forward pass's
 *    (about 1e-7 relative per output element, divided by 2h: ~1e-5); the
 *    measured worst case is 3.5e-4 (pow_neg1, div's denominators).  A
 *    wrong rule is off by O(1) (a missing factor, sign or reduction),
 *    hundreds of times the tolerance.  Where an op is not differentiable
 *    (relu, leaky_relu, elu, selu and abs at 0; hardswish and hardsigmoid
 *    at -3 and 3; clamp at its bounds; softplus at its threshold; a tie
 *    of maximum or minimum; a tie at the top of a max or
 *    maxout group or of a max_pool2d window; l1 where x = y; a triplet
 *    sample whose hinge is at 0), elements whose perturbation could cross
 *    the kink are skipped (near_kink; for max_pool2d, numerically), and
 *    each operand must still have 3/4 of its elements checked; the
 *    fixtures are random normals, so only 4 elements of 2 cases are
 *    skipped today.  Broadcast cases also check that every gradient has
 *    its operand's shape.  A frozen parameter must leave no trace in the
 *    gradient graph.  Two disabled tests pin the rule at points finite
 *    differences cannot judge (bce at a zero logit, tied maxima); both
 *    fail today, on open bugs.
 * 2. Backends.  Every gradient graph of (1) is lowered and planned as a
 *    function of one program, so each backend compiles once (one test per
 *    backend, so the C compiler and the JIT run in parallel): the C backend
 *    (-O1 -Werror) and the LLVM JIT.  Every output must agree with the interpreter to a relative error
 *    of 1e-4, measured against max(|value|, 1e-5, 1e-2 * scale), where
 *    the scale is the output's largest magnitude (for the loss, a sum: the
 *    sum of its terms' magnitudes).  All compute in float32, but a backend
 *    may sum in another order and in float where the interpreter sums in
 *    double.  A float sum of K terms of scale s is off by about
 *    sqrt(K) * 6e-8 * s however small the sum, so where terms cancel (a
 *    convolution's input gradient, the loss of pow_2) a value far below
 *    the scale can only be held to an absolute error of that order:
 *    1e-6 * scale.  The worst measured error on this measure is 1.6e-5
 *    (softmax_last), a sixth of the tolerance.
 * 3. PyTorch.  tiny.dl (cross-entropy) and reg.dl (MSE, an f32 label) from
 *    tests/fixtures/train: loss, every parameter gradient and the input
 *    gradient from the interpreter and both backends must match PyTorch's
 *    float64 values to 1e-4 relative (floor 1e-6), the tolerance the
 *    fixtures' README derives for a float32 implementation.
 */
#include <criterion/criterion.h>
#include <math.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/op_cases.h"
#include "tests/testutil.h"

#define FD_TOL 2e-3
#define BACKEND_RTOL 1e-4
#define BACKEND_FLOOR 1e-5
#define BACKEND_SCALE_FLOOR 1e-2
#define TORCH_RTOL 1e-4
#define TORCH_FLOOR 1e-6
#define FAST_CFLAGS "-O1 -Wall -Wextra -pedantic -Werror"
#define MAX_IN (OPCASE_MAX_IN + 1)

/* --- tensors ------------------------------------------------------------------ */

static void tensor_alloc(RtTensor *t, DType dt, int rank, const int64_t *shape) {
  RtError err;
  cr_assert_eq(rt_tensor_alloc(t, dt, rank, shape, &err), RT_OK, "%s", err.msg);
}

static int same_shape(const RtTensor *a, const RtTensor *b) {
  if (a->rank != b->rank) return 0;
  for (int k = 0; k < a->rank; k++)
    if (a->shape[k] != b->shape[k]) return 0;
  return 1;
}

static const char *shape_str(const RtTensor *t, char *buf, size_t n) {
  return rt_shape_str(buf, n, t->dtype, t->rank, t->shape);
}

/* Frees the entries of vals that the interpreter computed (sources are the
 * caller's) and vals itself. */
static void free_computed(const Graph *g, RtTensor *vals) {
  for (int i = 0; i < g->nnodes; i++) {
    OpKind op = g->nodes[i].op;
    if (op != OP_INPUT && op != OP_PARAM && op != OP_STATE) rt_tensor_free(&vals[i]);
  }
  free(vals);
}

/* The largest finite magnitude in t. */
static double max_abs(const RtTensor *t) {
  const float *v = t->data;
  double m = 0;
  for (int64_t i = 0; i < rt_tensor_numel(t); i++)
    if (isfinite(v[i])) m = fmax(m, fabs(v[i]));
  return m;
}

/* The worst relative error (with an absolute floor) of got against want;
 * *at is its element.  NaN must meet NaN and an infinity the same
 * infinity (error 0); anything else against them is an infinite error. */
static double worst_relerr(const RtTensor *got, const RtTensor *want, double floor_, int64_t *at) {
  const float *a = got->data, *b = want->data;
  double worst = 0;
  *at = 0;
  for (int64_t i = 0; i < rt_tensor_numel(want); i++) {
    double e = tu_relerr(a[i], b[i], floor_);
    if (!(e <= worst)) worst = isnan(e) ? INFINITY : e, *at = i;
  }
  return worst;
}

/* --- gradient cases --------------------------------------------------------------
 * A one-op graph "fwd" with inputs in0.. (the case's operands) and w,
 * output "loss" = sum(out * w); "grad" is its gradient graph, and gvals the
 * interpreter's values of grad. */
typedef struct GradCase {
  const char *name;
  Diags d;
  Graph fwd, grad;
  int op;                       /* the op's node in fwd */
  int nin;                      /* inputs: in0.., then w last */
  int in_id[MAX_IN];            /* their node ids in fwd */
  const char *in_name[MAX_IN];
  RtTensor in[MAX_IN];          /* their values (owned) */
  int64_t sym[IR_MAX_SYMS];
  RtTensor *gvals;
} GradCase;

static int case_is_differentiable(const OpCase *c) {
  return (ir_ops[c->op].flags & OPF_DIFF) != 0;
}

/* Fills an f32 tensor with values from r: uniform in [-1, 1), or, with
 * nonzero, |x| in [0.5, 2) of either sign (denominators). */
static void fill_random(RtTensor *t, RtRng *r, int nonzero) {
  float *p = t->data;
  for (int64_t i = 0; i < rt_tensor_numel(t); i++) {
    double u = rt_rng_uniform(r);
    p[i] = (float)(nonzero ? (rt_rng_uniform(r) < 0.5 ? -1 : 1) * (0.5 + 1.5 * u) : 2 * u - 1);
  }
}

/* Appends input w (fixed pseudo-random, of out's shape) and the loss
 * sum(out * w) to gc->fwd; returns the loss.  Symbols are bound from the
 * operands first, to size w. */
static int gc_add_loss(GradCase *gc, int nops) {
  RtError err;
  SrcLoc loc = {0};
  RtTensor *vals = calloc((size_t)gc->fwd.nnodes, sizeof *vals);
  for (int i = 0; i < nops; i++) vals[gc->in_id[i]] = gc->in[i];
  cr_assert_eq(ir_bind_symbols(&gc->fwd, vals, gc->sym, &err), RT_OK, "%s: %s", gc->name, err.msg);
  free(vals);
  Shape os = gc->fwd.nodes[gc->op].shape;
  int64_t wshape[IR_MAX_RANK];
  for (int k = 0; k < os.rank; k++) wshape[k] = ir_dim_value(&gc->fwd, os.d[k], gc->sym);
  tensor_alloc(&gc->in[nops], DT_F32, os.rank, wshape);
  RtRng r;
  rt_rng_seed_stream(&r, 7, gc->name);
  fill_random(&gc->in[nops], &r, 0);
  int w = ir_input(&gc->fwd, "w", DT_F32, &os, loc);
  gc->in_id[nops] = w;
  gc->in_name[nops] = "w";
  int prod = ir_op(&gc->fwd, OP_MUL, (int[]){gc->op, w}, 2, NULL, loc);
  Attrs all = ir_attrs_default(OP_SUM);
  int loss = ir_op(&gc->fwd, OP_SUM, &prod, 1, &all, loc);
  cr_assert_geq(loss, 0, "%s", gc->name);
  ir_output(&gc->fwd, "loss", loss);
  return loss;
}

/* gc->grad = the gradient graph of loss, and gc->gvals its values. */
static void gc_run_grads(GradCase *gc, int loss) {
  RtError err;
  ir_graph_init(&gc->grad, gc->name, &gc->d);
  cr_assert_eq(pass_build_grads(&gc->fwd, loss, 0, 1, &(DecomposeOpts){0, 0}, &gc->grad), 0, "%s: pass_build_grads fails", gc->name);
  cr_assert_eq(ir_verify(&gc->grad, &gc->d), 0, "%s: the gradient graph does not verify", gc->name);
  gc->gvals = calloc((size_t)gc->grad.nnodes, sizeof *gc->gvals);
  for (int i = 0; i < gc->grad.nnodes; i++) {
    const Node *n = &gc->grad.nodes[i];
    if (n->op != OP_INPUT) continue;
    int k = 0;
    while (k < gc->nin && strcmp(gc->in_name[k], n->name) != 0) k++;
    cr_assert_lt(k, gc->nin, "%s: unknown input %s", gc->name, n->name);
    gc->gvals[i] = gc->in[k];
  }
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&gc->grad, gc->gvals, gc->sym, &io, &err), RT_OK, "%s: %s", gc->name, err.msg);
}

/* Builds gc from case c over operands ins (taken over), differentiates it
 * and runs the gradient graph in the interpreter. */
static void gc_build(GradCase *gc, const OpCase *c, RtTensor *ins) {
  memset(gc, 0, sizeof *gc);
  gc->name = c->name;
  diag_init(&gc->d, stderr);
  ir_graph_init(&gc->fwd, c->name, &gc->d);
  gc->op = opcase_build(c, &gc->fwd, ins);
  cr_assert_geq(gc->op, 0, "%s: the case does not build", c->name);
  cr_assert_eq(gc->fwd.nodes[gc->op].dtype, DT_F32, "%s: not an f32 result", c->name);
  gc->nin = c->nin + 1;
  for (int i = 0; i < c->nin; i++) {
    gc->in[i] = ins[i];
    gc->in_id[i] = opcase_input_id(&gc->fwd, i);
    gc->in_name[i] = gc->fwd.nodes[gc->in_id[i]].name;
  }
  gc_run_grads(gc, gc_add_loss(gc, c->nin));
}

static void gc_from_fixture(GradCase *gc, const OpCase *c) {
  RtTensor ins[OPCASE_MAX_IN];
  RtError err;
  for (int i = 0; i < c->nin; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.in%d.npy", FIXTURE("ops"), c->name, i);
    cr_assert_eq(rt_npy_read(path, &ins[i], &err), RT_OK, "%s", err.msg);
  }
  gc_build(gc, c, ins);
}

static void gc_free(GradCase *gc) {
  if (gc->gvals) free_computed(&gc->grad, gc->gvals);
  for (int i = 0; i < gc->nin; i++) rt_tensor_free(&gc->in[i]);
  ir_graph_free(&gc->grad);
  ir_graph_free(&gc->fwd);
}

/* L = sum(out * w) for the current inputs, out by the interpreter, the sum
 * in double. */
static double gc_loss(GradCase *gc) {
  RtError err;
  RtTensor *vals = calloc((size_t)gc->fwd.nnodes, sizeof *vals);
  for (int k = 0; k < gc->nin; k++) vals[gc->in_id[k]] = gc->in[k];
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&gc->fwd, vals, gc->sym, &io, &err), RT_OK, "%s: %s", gc->name, err.msg);
  const float *out = vals[gc->op].data, *w = gc->in[gc->nin - 1].data;
  double s = 0;
  for (int64_t i = 0; i < rt_tensor_numel(&vals[gc->op]); i++) s += (double)out[i] * w[i];
  free_computed(&gc->fwd, vals);
  return s;
}

/* --- kinks -------------------------------------------------------------------------- */

/* The value tensor of operand j of the op, or NULL for a constant. */
static const RtTensor *operand(const GradCase *gc, int j) {
  int id = gc->fwd.nodes[gc->op].in[j];
  for (int k = 0; k < gc->nin; k++)
    if (gc->in_id[k] == id) return &gc->in[k];
  return NULL;
}

static int operand_pos(const GradCase *gc, int k) {
  const Node *n = &gc->fwd.nodes[gc->op];
  for (int j = 0; j < n->nin; j++)
    if (n->in[j] == gc->in_id[k]) return j;
  return -1;
}

/* The group of element e of a max or maxout operand x: elements of one
 * group compete for one output. */
static int64_t max_group(const Node *n, const RtTensor *x, int64_t e) {
  int64_t c[RT_MAX_RANK], g = 0;
  for (int k = x->rank - 1; k >= 0; k--) c[k] = e % x->shape[k], e /= x->shape[k];
  if (n->op == OP_MAXOUT) c[n->attr.axis.axis] /= n->attr.axis.pieces;
  for (int k = 0; k < x->rank; k++) {
    int reduced = 0;
    for (int i = 0; n->op == OP_MAX && i < n->attr.dims.nlist; i++) reduced |= n->attr.dims.list[i] == k;
    g = g * x->shape[k] + (reduced ? 0 : c[k]);
  }
  return g;
}

/* Whether element e is within 2h of another element of its group while
 * both are at the group's maximum: moving it by h may change the winner. */
static int near_max_tie(const Node *n, const RtTensor *x, int64_t e, double h) {
  const float *v = x->data;
  int64_t ge = max_group(n, x, e);
  double top = -INFINITY, near = 0;
  for (int64_t i = 0; i < rt_tensor_numel(x); i++)
    if (max_group(n, x, i) == ge) top = fmax(top, v[i]);
  for (int64_t i = 0; i < rt_tensor_numel(x); i++)
    if (i != e && max_group(n, x, i) == ge && fabs((double)v[i] - v[e]) < 2 * h) near = 1;
  return near && v[e] >= top - 2 * h;
}

/* The offset in t of the element that broadcasts to flat index i of a
 * result of rank r and extents out[]. */
static int64_t bcast_at(const RtTensor *t, const int64_t *out, int r, int64_t i) {
  int64_t c[RT_MAX_RANK], off = 0;
  for (int k = r - 1; k >= 0; k--) c[k] = i % out[k], i /= out[k];
  for (int k = 0; k < t->rank; k++) off = off * t->shape[k] + (t->shape[k] == 1 ? 0 : c[r - t->rank + k]);
  return off;
}

/* maximum, minimum: whether element e of operand j is within 2h of an
 * element of the other operand (a constant when NULL) it is compared with. */
static int near_tie(const GradCase *gc, int j, int64_t e, double h) {
  const RtTensor *x = operand(gc, j), *o = operand(gc, 1 - j);
  const float *v = x->data;
  if (!o) return fabs(v[e] - gc->fwd.nodes[gc->fwd.nodes[gc->op].in[1 - j]].attr.scalar.f) < 2 * h;
  int r = x->rank > o->rank ? x->rank : o->rank;
  int64_t out[RT_MAX_RANK], n = 1;
  for (int k = 0; k < r; k++) {
    int kx = k - (r - x->rank), ko = k - (r - o->rank);
    int64_t dx = kx >= 0 ? x->shape[kx] : 1, dox = ko >= 0 ? o->shape[ko] : 1;
    out[k] = dx > dox ? dx : dox;
    n *= out[k];
  }
  for (int64_t i = 0; i < n; i++)
    if (bcast_at(x, out, r, i) == e && fabs(v[e] - ((const float *)o->data)[bcast_at(o, out, r, i)]) < 2 * h) return 1;
  return 0;
}

/* torch.pairwise_distance of row i, as the interpreter computes it. */
static double pair_dist(const RtTensor *a, const RtTensor *b, int64_t i) {
  int64_t d = a->shape[1];
  const float *pa = a->data, *pb = b->data;
  double s = 0;
  for (int64_t j = 0; j < d; j++) {
    double v = (double)pa[i * d + j] - pb[i * d + j] + 1e-6;
    s += v * v;
  }
  return sqrt(s);
}

/* Whether moving element e of operand j by up to h may cross a point where
 * the op is not differentiable. */
static int near_kink(const GradCase *gc, int j, int64_t e, double h) {
  const Node *n = &gc->fwd.nodes[gc->op];
  const RtTensor *x = operand(gc, j);
  const float *v = x->data;
  switch ((int)n->op) {
  case OP_RELU:
  case OP_LEAKY_RELU:
  case OP_ELU:
  case OP_SELU:
  case OP_ABS: return fabs(v[e]) < 2 * h;
  case OP_HARDSWISH:
  case OP_HARDSIGMOID: return fabs(fabs(v[e]) - 3) < 2 * h;
  case OP_FLOOR:
  case OP_CEIL: return fabs(v[e] - nearbyint(v[e])) < 2 * h;    /* steps at the integers */
  case OP_ROUND: return fabs(v[e] - floor(v[e]) - 0.5) < 2 * h; /* steps at the halves */
  case OP_CLAMP: return fabs(v[e] - n->attr.scalar.f) < 2 * h || fabs(v[e] - n->attr.scalar.f2) < 2 * h;
  case OP_SOFTPLUS: return fabs(v[e] * n->attr.scalar.f - n->attr.scalar.f2) < 2 * h * fabs(n->attr.scalar.f);
  case OP_MAXIMUM:
  case OP_MINIMUM: return near_tie(gc, j, e, h);
  case OP_L1_LOSS: {
    const RtTensor *a = operand(gc, 0), *b = operand(gc, 1);
    cr_assert(same_shape(a, b));
    return fabs((double)((const float *)a->data)[e] - ((const float *)b->data)[e]) < 2 * h;
  }
  case OP_MAX:
  case OP_MAXOUT: return near_max_tie(n, x, e, h);
  case OP_TRIPLET_LOSS: { /* each distance moves by at most h */
    int64_t i = e / x->shape[1];
    const RtTensor *a = operand(gc, 0), *p = operand(gc, 1), *q = operand(gc, 2);
    return fabs(pair_dist(a, p, i) - pair_dist(a, q, i) + n->attr.loss.margin) < 3 * h;
  }
  }
  return 0;
}

/* max_pool2d's windows overlap and depend on five attributes, so its kinks
 * (ties at the top of a window) are found numerically instead: the op is
 * piecewise linear, so away from a kink the one-sided differences agree
 * to rounding error, and an element whose one-sided differences disagree
 * by more than a quarter of the tolerance straddles a kink. */
static int kinks_found_numerically(OpKind op) { return op == OP_MAX_POOL2D; }

/* --- finite differences -------------------------------------------------------- */

/* where's condition is piecewise constant (0 or nonzero): no gradient
 * reaches it, so its gradient must be exactly 0, and finite differences,
 * which would flip a 0 to nonzero, do not apply. */
static int is_condition(const GradCase *gc, int j) { return gc->fwd.nodes[gc->op].op == OP_WHERE && j == 0; }

static void expect_zero(const GradCase *gc, const RtTensor *g, const char *what) {
  const float *gv = g->data;
  for (int64_t e = 0; e < rt_tensor_numel(g); e++)
    cr_expect_eq(gv[e], 0.0f, "%s: d loss / d %s[%lld] is %g, not 0", gc->name, what, (long long)e, gv[e]);
}

/* Compares every gradient element of gc with central differences. */
static void gc_check_fd(GradCase *gc) {
  char b1[64], b2[64];
  int numeric = kinks_found_numerically(gc->fwd.nodes[gc->op].op);
  double l0 = numeric ? gc_loss(gc) : 0;
  for (int k = 0; k < gc->nin; k++) {
    RtTensor *x = &gc->in[k];
    if (x->dtype != DT_F32) continue; /* class labels */
    int o = ir_find_output(&gc->grad, gc->in_name[k]);
    cr_assert_geq(o, 0, "%s: no gradient output for %s", gc->name, gc->in_name[k]);
    const RtTensor *g = &gc->gvals[gc->grad.outputs[o].id];
    cr_assert(same_shape(g, x), "%s: the gradient of %s is %s, the operand %s", gc->name, gc->in_name[k],
              shape_str(g, b1, sizeof b1), shape_str(x, b2, sizeof b2));
    int j = operand_pos(gc, k);
    if (is_condition(gc, j)) {
      expect_zero(gc, g, gc->in_name[k]);
      continue;
    }
    float *xv = x->data;
    const float *gv = g->data;
    int64_t n = rt_tensor_numel(x), skipped = 0, at = -1;
    double worst = 0, wg = 0, wfd = 0;
    for (int64_t e = 0; e < n; e++) {
      float x0 = xv[e];
      double h = 1e-2 * fmax(1, fabs(x0));
      if (j >= 0 && near_kink(gc, j, e, h)) {
        skipped++;
        continue;
      }
      float xp = (float)(x0 + h), xm = (float)(x0 - h);
      xv[e] = xp;
      double lp = gc_loss(gc);
      xv[e] = xm;
      double lm = gc_loss(gc);
      xv[e] = x0;
      double fd = (lp - lm) / ((double)xp - xm), err = fabs(gv[e] - fd) / fmax(1, fabs(fd));
      if (numeric && fabs((lp - l0) / ((double)xp - x0) - (l0 - lm) / ((double)x0 - xm)) > FD_TOL / 4 * fmax(1, fabs(fd))) {
        skipped++;
        continue;
      }
      if (!(err <= worst)) worst = err, at = e, wg = gv[e], wfd = fd;
    }
    cr_expect(worst <= FD_TOL, "%s: d loss / d %s[%lld] is %.7g, finite differences say %.7g (error %.3g)",
              gc->name, gc->in_name[k], (long long)at, wg, wfd, worst);
    cr_expect(skipped * 4 <= n, "%s: %lld of %lld elements of %s are near a kink", gc->name, (long long)skipped,
              (long long)n, gc->in_name[k]);
  }
}

Test(autodiff, every_differentiable_op_matches_finite_differences, .timeout = 120) {
  int checked = 0;
  for (int ci = 0; ci < OPCASE_COUNT; ci++) {
    if (!case_is_differentiable(&op_cases[ci])) continue;
    GradCase gc;
    gc_from_fixture(&gc, &op_cases[ci]);
    if (opcase_nonfinite(gc.in, gc.nin - 1)) { /* the _nan cases: the backends check those */
      gc_free(&gc);
      continue;
    }
    gc_check_fd(&gc);
    gc_free(&gc);
    checked++;
  }
  cr_expect_geq(checked, 70, "only %d cases checked", checked);
}

/* --- broadcasting: random operands of the binary ops ------------------------------ */

typedef struct BcastShapes {
  const char *tag;
  int ra;
  int64_t a[4];
  int rb;           /* -1: b is the scalar constant 1.5, on the left */
  int64_t b[4];
} BcastShapes;

static const BcastShapes bcast_shapes[] = {
    {"314_24", 3, {3, 1, 4}, 2, {2, 4}},
    {"24_314", 2, {2, 4}, 3, {3, 1, 4}},
    {"5_235", 1, {5}, 3, {2, 3, 5}},
    {"21_13", 2, {2, 1}, 2, {1, 3}},
    {"23_rank0", 2, {2, 3}, 0, {0}},
    {"const_23", 2, {2, 3}, -1, {0}},
};
#define NBCAST ((int)(sizeof bcast_shapes / sizeof bcast_shapes[0]))
static const OpKind bcast_ops[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV};
#define NBCAST_OPS 4
#define NBCAST_CASES (NBCAST * NBCAST_OPS)

/* Case i of the broadcast cases: its OpCase and random operands.  The
 * denominator of div is kept away from 0. */
static void bcast_case(int i, OpCase *c, char *name, size_t len, RtTensor *ins) {
  const BcastShapes *s = &bcast_shapes[i % NBCAST];
  OpKind op = bcast_ops[i / NBCAST];
  snprintf(name, len, "bcast_%s_%s", ir_ops[op].name, s->tag);
  memset(c, 0, sizeof *c);
  c->name = name;
  c->op = op;
  c->nin = s->rb < 0 ? 1 : 2;
  if (s->rb < 0) c->cpos = 1, c->cvalue = 1.5; /* 1.5 op x */
  RtRng r;
  rt_rng_seed_stream(&r, 11, name);
  tensor_alloc(&ins[0], DT_F32, s->ra, s->a);
  fill_random(&ins[0], &r, op == OP_DIV && s->rb < 0);
  if (s->rb >= 0) {
    tensor_alloc(&ins[1], DT_F32, s->rb, s->b);
    fill_random(&ins[1], &r, op == OP_DIV);
  }
}

Test(autodiff, broadcast_gradients_reduce_to_each_operand, .timeout = 60) {
  for (int i = 0; i < NBCAST_CASES; i++) {
    OpCase c;
    char name[64];
    RtTensor ins[2];
    bcast_case(i, &c, name, sizeof name, ins);
    GradCase gc;
    gc_build(&gc, &c, ins);
    gc_check_fd(&gc);
    gc_free(&gc);
  }
}

/* --- frozen parameters ------------------------------------------------------------ */

static int users_of(const Graph *g, int id, int *user) {
  int n = 0;
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++)
      if (g->nodes[i].in[k] == id) n++, *user = i;
  return n;
}

/* x -> linear(w1, b1) -> tanh -> linear(w2, b2) -> sum; frozen_mask bit 0
 * freezes w1, bit 1 b1.  Returns the loss. */
static int two_layers(Graph *g, unsigned frozen_mask) {
  SrcLoc loc = {0};
  ParamInit init = {INIT_ZEROS, 0, 0};
  Shape sx = {2, {4, 3}}, sw1 = {2, {5, 3}}, sb1 = {1, {5}}, sw2 = {2, {2, 5}}, sb2 = {1, {2}};
  int x = ir_input(g, "x", DT_F32, &sx, loc);
  int w1 = ir_param(g, "fc1.weight", DT_F32, &sw1, init, loc), b1 = ir_param(g, "fc1.bias", DT_F32, &sb1, init, loc);
  int w2 = ir_param(g, "fc2.weight", DT_F32, &sw2, init, loc), b2 = ir_param(g, "fc2.bias", DT_F32, &sb2, init, loc);
  g->nodes[w1].frozen = frozen_mask & 1;
  g->nodes[b1].frozen = frozen_mask >> 1 & 1;
  int h = ir_op(g, OP_TANH, (int[]){ir_op(g, OP_LINEAR, (int[]){x, w1, b1}, 3, NULL, loc)}, 1, NULL, loc);
  int y = ir_op(g, OP_LINEAR, (int[]){h, w2, b2}, 3, NULL, loc);
  Attrs all = ir_attrs_default(OP_SUM);
  int loss = ir_op(g, OP_SUM, &y, 1, &all, loc);
  cr_assert_geq(loss, 0);
  ir_output(g, "y", y);
  return loss;
}

Test(autodiff, frozen_param_gets_no_gradient_nodes) {
  Diags d;
  diag_init(&d, stderr);
  Graph src, dst;
  ir_graph_init(&src, "frozen", &d);
  int loss = two_layers(&src, 1);
  ir_graph_init(&dst, "frozen", &d);
  cr_assert_eq(pass_build_grads(&src, loss, 1, 0, &(DecomposeOpts){0, 0}, &dst), 0);
  cr_assert_eq(ir_verify(&dst, &d), 0);
  cr_expect_eq(dst.noutputs, 4, "outputs: loss, fc1.bias, fc2.weight, fc2.bias");
  cr_expect_lt(ir_find_output(&dst, "fc1.weight"), 0, "a frozen parameter has a gradient output");
  cr_expect_geq(ir_find_output(&dst, "fc1.bias"), 0);
  cr_expect_geq(ir_find_output(&dst, "fc2.weight"), 0);
  int w1 = ir_find_param(&dst, "fc1.weight"), user = -1;
  cr_assert_geq(w1, 0);
  cr_expect_eq(users_of(&dst, w1, &user), 1, "fc1.weight is used by the backward graph");
  cr_expect_eq(dst.nodes[user].op, OP_LINEAR);
  ir_graph_free(&dst);
  ir_graph_free(&src);
}

/* With the whole first layer frozen and no input gradient asked for,
 * nothing flows below the tanh: x and w1 keep their one forward use. */
Test(autodiff, frozen_layer_prunes_its_branch) {
  Diags d;
  diag_init(&d, stderr);
  Graph src, dst;
  ir_graph_init(&src, "frozen", &d);
  int loss = two_layers(&src, 3);
  ir_graph_init(&dst, "frozen", &d);
  cr_assert_eq(pass_build_grads(&src, loss, 1, 0, &(DecomposeOpts){0, 0}, &dst), 0);
  cr_expect_eq(dst.noutputs, 3, "outputs: loss, fc2.weight, fc2.bias");
  cr_expect_lt(ir_find_output(&dst, "fc1.bias"), 0);
  int user;
  const char *names[] = {"fc1.weight", "fc1.bias"};
  for (int i = 0; i < 2; i++) cr_expect_eq(users_of(&dst, ir_find_param(&dst, names[i]), &user), 1, "%s", names[i]);
  cr_expect_eq(users_of(&dst, ir_find_input(&dst, "x"), &user), 1, "x is used by the backward graph");
  for (int i = 0; i < dst.nnodes; i++) {
    const Node *n = &dst.nodes[i];
    cr_expect(n->op != OP_EW_GRAD || n->attr.ew_grad.of != OP_TANH, "the gradient flows into the frozen layer (node %d)", i);
  }
  ir_graph_free(&dst);
  ir_graph_free(&src);
}

/* --- backends --------------------------------------------------------------------- */

/* The backends that run a Program in-process. */
typedef struct Backend {
  const char *name;
  CModule *(*build)(const Program *p, RtError *err);
} Backend;

static CModule *build_c(const Program *p, RtError *err) { return cg_c_build(p, FAST_CFLAGS, err); }

static const Backend backends[] = {{"C backend", build_c}, {"JIT", cg_jit_build}};
#define NBACKENDS ((int)(sizeof backends / sizeof backends[0]))

/* Calls function f of m with the interpreter's input values vals of f's
 * graph; got[o] receives output o (allocated like want[o]). */
static void call_compiled(CModule *m, const Program *p, const Func *f, const int64_t *sym, RtTensor *vals,
                          const RtTensor *const *want, RtTensor *got) {
  RtError err;
  void **args = calloc((size_t)f->nargs + 1, sizeof *args);
  int o = 0;
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &p->bufs[f->args[i]];
    if (b->kind == BUF_INPUT) {
      args[i] = vals[b->node].data;
    } else {
      tensor_alloc(&got[o], want[o]->dtype, want[o]->rank, want[o]->shape);
      args[i] = got[o++].data;
    }
  }
  cr_assert_eq(o, f->g->noutputs);
  cr_assert_eq(cg_c_call(m, f->name, sym, args, &err), RT_OK, "%s: %s", f->name, err.msg);
  free(args);
}

/* The magnitude that output o's rounding errors scale with: for the loss,
 * a sum, the sum of its terms' magnitudes; for the others, their largest
 * element. */
static double output_scale(const Graph *g, const RtTensor *vals, int o) {
  const Node *n = &g->nodes[g->outputs[o].id];
  if (strcmp(g->outputs[o].name, "loss") != 0 || n->op != OP_SUM) return max_abs(&vals[g->outputs[o].id]);
  const RtTensor *terms = &vals[n->in[0]];
  double s = 0;
  for (int64_t i = 0; i < rt_tensor_numel(terms); i++) {
    float t = ((const float *)terms->data)[i];
    if (isfinite(t)) s += fabs(t);
  }
  return s;
}

/* Every output of g (got, compiled) against the interpreter's vals. */
static void expect_outputs_agree(const char *what, const Graph *g, RtTensor *vals, RtTensor *got) {
  for (int o = 0; o < g->noutputs; o++) {
    const RtTensor *want = &vals[g->outputs[o].id];
    int64_t at;
    double floor_ = fmax(BACKEND_FLOOR, BACKEND_SCALE_FLOOR * output_scale(g, vals, o));
    double e = worst_relerr(&got[o], want, floor_, &at);
    cr_expect(e <= BACKEND_RTOL, "%s: output %s[%lld] is %.7g compiled, %.7g interpreted (rel. error %.3g)", what,
              g->outputs[o].name, (long long)at, (double)((float *)got[o].data)[at],
              (double)((float *)want->data)[at], e);
    rt_tensor_free(&got[o]);
  }
}

/* Compiles every case's gradient graph with backend be, as functions of
 * one program, and compares each output with the interpreter. */
static void check_backend_on_cases(const Backend *be) {
  int ncases = 0;
  GradCase *cases = calloc(OPCASE_COUNT + NBCAST_CASES, sizeof *cases);
  for (int ci = 0; ci < OPCASE_COUNT; ci++)
    if (case_is_differentiable(&op_cases[ci])) gc_from_fixture(&cases[ncases++], &op_cases[ci]);
  char names[NBCAST_CASES][64];
  for (int i = 0; i < NBCAST_CASES; i++) {
    OpCase c;
    RtTensor ins[2];
    bcast_case(i, &c, names[i], sizeof names[i], ins);
    gc_build(&cases[ncases++], &c, ins);
  }
  /* one program, one function per case; every case's batch symbol is
   * symbol 0, "N", as opcase_build declares it */
  Diags d;
  diag_init(&d, stderr);
  Graph header;
  ir_graph_init(&header, "grads", &d);
  int n = ir_symbol(&header, "N", (SrcLoc){0});
  header.syms[n].max = OPCASE_N_MAX;
  Program p;
  kir_program_init(&p, &header);
  for (int i = 0; i < ncases; i++) {
    const Graph *g = &cases[i].grad;
    cr_assert(g->nsyms == 0 || (g->nsyms == 1 && strcmp(g->syms[0].name, "N") == 0), "%s", cases[i].name);
    pass_lower(&p, kir_func(&p, arena_printf(&p.arena, "g_%s", cases[i].name), g));
  }
  pass_schedule(&p);
  pass_memplan(&p);
  RtError err;
  CModule *m = be->build(&p, &err);
  cr_assert_not_null(m, "%s: %s", be->name, err.msg);
  for (int i = 0; i < ncases; i++) {
    GradCase *gc = &cases[i];
    const Graph *g = &gc->grad;
    const RtTensor *want[64];
    RtTensor got[64];
    char what[128];
    cr_assert_lt(g->noutputs, 64);
    for (int o = 0; o < g->noutputs; o++) want[o] = &gc->gvals[g->outputs[o].id];
    int64_t sym = g->nsyms ? gc->sym[0] : 1;
    call_compiled(m, &p, &p.funcs[i], &sym, gc->gvals, want, got);
    snprintf(what, sizeof what, "%s, %s", be->name, gc->name);
    expect_outputs_agree(what, g, gc->gvals, got);
    gc_free(gc);
  }
  cg_c_free(m);
  kir_program_free(&p);
  ir_graph_free(&header);
  free(cases);
}

/* One test per backend, so that the two compilations run in parallel. */
Test(autodiff, c_backend_agrees_with_interpreter_on_gradients, .timeout = 300) { check_backend_on_cases(&backends[0]); }

Test(autodiff, jit_agrees_with_interpreter_on_gradients, .timeout = 300) { check_backend_on_cases(&backends[1]); }

/* --- whole models against PyTorch ---------------------------------------------------- */

static void expect_close(const char *what, const char *name, const RtTensor *got, const RtTensor *want) {
  char b1[64], b2[64];
  cr_assert(same_shape(got, want), "%s: %s is %s, PyTorch's %s", what, name, shape_str(got, b1, sizeof b1),
            shape_str(want, b2, sizeof b2));
  int64_t at;
  double e = worst_relerr(got, want, TORCH_FLOOR, &at);
  cr_expect(e <= TORCH_RTOL, "%s: %s[%lld] is %.7g, PyTorch says %.7g (rel. error %.3g)", what, name, (long long)at,
            (double)((const float *)got->data)[at], (double)((const float *)want->data)[at], e);
}

static void read_npy(const char *model, const char *part, RtTensor *t) {
  char path[512];
  RtError err;
  snprintf(path, sizeof path, "%s/%s.%s.npy", FIXTURE("train"), model, part);
  cr_assert_eq(rt_npy_read(path, t, &err), RT_OK, "%s", err.msg);
}

static void read_set(const char *model, const char *part, RtTensorSet *s) {
  char path[512];
  RtError err;
  snprintf(path, sizeof path, "%s/%s.%s.safetensors", FIXTURE("train"), model, part);
  cr_assert_eq(rt_safetensors_read(path, s, &err), RT_OK, "%s", err.msg);
}

/* Compares the outputs of the gradient graph g (values out[o]) with the
 * fixtures of model; `what` names the backend. */
static void expect_torch_grads(const char *model, const char *what, const Graph *g, RtTensor *const *out) {
  RtTensor loss;
  RtTensorSet grads, igrads;
  read_npy(model, "loss", &loss);
  rt_set_init(&grads);
  rt_set_init(&igrads);
  read_set(model, "grads", &grads);
  read_set(model, "input_grads", &igrads);
  int lo = ir_find_output(g, "loss");
  cr_assert_geq(lo, 0);
  expect_close(what, "loss", out[lo], &loss);
  int checked = 0;
  for (int s = 0; s < 2; s++) {
    RtTensorSet *set = s ? &igrads : &grads;
    for (int i = 0; i < set->count; i++) {
      int o = ir_find_output(g, set->items[i].name);
      cr_assert_geq(o, 0, "%s: no gradient output %s", what, set->items[i].name);
      expect_close(what, set->items[i].name, out[o], &set->items[i].t);
      checked++;
    }
  }
  cr_expect_eq(checked, grads.count + 1, "%s: expected the parameters and x", model);
  rt_tensor_free(&loss);
  rt_set_free(&grads);
  rt_set_free(&igrads);
}

/* Loads tests/fixtures/train/MODEL.dl, builds its gradient graph for the
 * fixture batch and checks it in the interpreter and the C backend. */
static void check_model(const char *model, const char *label) {
  char path[512];
  Diags d;
  Model m;
  RtError err;
  diag_init(&d, stderr);
  snprintf(path, sizeof path, "%s/%s.dl", FIXTURE("train"), model);
  cr_assert_eq(fe_load_file(&m, path, &d), 0, "%s does not load", path);
  cr_assert_geq(m.train.loss, 0);
  RtTensor x, y;
  read_npy(model, "x", &x);
  read_npy(model, label, &y);
  int n = ir_symbol_find(&m.g, "N");
  cr_assert_geq(n, 0);
  m.g.syms[n].max = x.shape[0];
  Graph g;
  ir_graph_init(&g, model, &d);
  cr_assert_eq(pass_build_grads(&m.g, m.train.loss, 1, 1, &(DecomposeOpts){1, 0}, &g), 0);
  cr_assert_eq(ir_verify(&g, &d), 0);

  RtTensorSet init;
  rt_set_init(&init);
  read_set(model, "init", &init);
  RtTensor *vals = calloc((size_t)g.nnodes, sizeof *vals);
  for (int i = 0; i < g.nnodes; i++) {
    const Node *nd = &g.nodes[i];
    if (nd->op == OP_PARAM) {
      RtTensor *t = rt_set_find(&init, nd->name);
      cr_assert_not_null(t, "%s: no initial value for %s", model, nd->name);
      vals[i] = *t;
    } else if (nd->op == OP_INPUT) {
      cr_assert(!strcmp(nd->name, "x") || !strcmp(nd->name, label), "%s: unexpected input %s", model, nd->name);
      vals[i] = strcmp(nd->name, "x") ? y : x;
    }
  }
  int64_t sym[IR_MAX_SYMS];
  cr_assert_eq(ir_bind_symbols(&g, vals, sym, &err), RT_OK, "%s", err.msg);
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&g, vals, sym, &io, &err), RT_OK, "%s", err.msg);
  RtTensor *interp_out[64];
  const RtTensor *want[64];
  cr_assert_lt(g.noutputs, 64);
  for (int o = 0; o < g.noutputs; o++) interp_out[o] = &vals[g.outputs[o].id], want[o] = interp_out[o];
  expect_torch_grads(model, "interpreter", &g, interp_out);

  Program p;
  kir_program_init(&p, &g);
  Func *f = kir_func(&p, "grads", &g);
  pass_lower(&p, f);
  pass_schedule(&p);
  pass_memplan(&p);
  for (int be = 0; be < NBACKENDS; be++) {
    CModule *cm = backends[be].build(&p, &err);
    cr_assert_not_null(cm, "%s: %s", backends[be].name, err.msg);
    cr_assert_eq(cg_c_set_params(cm, &init, &err), RT_OK, "%s", err.msg);
    RtTensor got[64], *got_p[64];
    call_compiled(cm, &p, f, sym, vals, want, got);
    for (int o = 0; o < g.noutputs; o++) got_p[o] = &got[o];
    expect_torch_grads(model, backends[be].name, &g, got_p);
    for (int o = 0; o < g.noutputs; o++) rt_tensor_free(&got[o]);
    cg_c_free(cm);
  }
  kir_program_free(&p);

  free_computed(&g, vals);
  rt_set_free(&init);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
  ir_graph_free(&g);
  fe_model_free(&m);
}

Test(autodiff, tiny_cross_entropy_gradients_match_pytorch, .timeout = 60) { check_model("tiny", "y"); }

Test(autodiff, reg_mse_gradients_match_pytorch, .timeout = 60) { check_model("reg", "t"); }

/* --- points where the rule, not finite differences, must decide -------------------- */

/* The gradient of in0 of a case built from the given values. */
static void gradient_at(const OpCase *c, const float *x, const float *y, int64_t n, float *g, float *w) {
  RtTensor ins[2];
  int64_t shape[2] = {1, n};
  tensor_alloc(&ins[0], DT_F32, 2, shape);
  memcpy(ins[0].data, x, sizeof(float) * (size_t)n);
  if (y) {
    tensor_alloc(&ins[1], DT_F32, 2, shape);
    memcpy(ins[1].data, y, sizeof(float) * (size_t)n);
  }
  GradCase gc;
  gc_build(&gc, c, ins);
  cr_assert_eq(rt_tensor_numel(&gc.in[gc.nin - 1]), 1, "a scalar result");
  *w = *(const float *)gc.in[gc.nin - 1].data;
  memcpy(g, gc.gvals[gc.grad.outputs[ir_find_output(&gc.grad, "in0")].id].data, sizeof(float) * (size_t)n);
  gc_free(&gc);
}

/* d bce / dx = sigmoid(x) - y, also at x = 0 exactly (zero-initialised
 * logits): decompose.c must not write max(x, 0) as relu(x), whose
 * derivative at 0 is 0 and would give -y there, not 0.5 - y. */
Test(autodiff, bce_gradient_at_zero_logit) {
  const OpCase c = {"bce_at_zero", OP_BCE_LOGITS, 2, 0, "reduction=sum"};
  float x[3] = {0, 2, -3}, y[3] = {0.25f, 0.5f, 0.75f}, g[3], w;
  gradient_at(&c, x, y, 3, g, &w);
  for (int i = 0; i < 3; i++) {
    double want = (1 / (1 + exp(-(double)x[i])) - y[i]) * w;
    cr_expect(fabs(g[i] - want) <= 1e-6, "x = %g: gradient %g, want %g", (double)x[i], (double)g[i], want);
  }
}

/* Tied maxima share the gradient evenly, as torch.amax's does; giving each
 * the whole of it would not be a subgradient: raising all tied elements by
 * t raises the max by t, not by count * t. */
Test(autodiff, max_ties_share_the_gradient) {
  const OpCase c = {"max_ties", OP_MAX, 1, 0, "axes=1"};
  float x[3] = {0, 1, 1}, g[3], w;
  gradient_at(&c, x, NULL, 3, g, &w);
  float want[3] = {0, w / 2, w / 2};
  for (int i = 0; i < 3; i++) cr_expect(fabs(g[i] - want[i]) <= 1e-6, "x[%d]: gradient %g, want %g", i, (double)g[i], (double)want[i]);
}
