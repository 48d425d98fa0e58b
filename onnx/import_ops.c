/*
 * import_ops.c — each ONNX operator as dlc ops: the rows of ir/onnx.def
 * read backwards, one conversion per ONNX op type.
 *
 * A conversion reads the node's inputs (as graph nodes through im_tensor,
 * or as values known at import time through im_known: shapes, axes,
 * pads, scales, bounds) and its attributes with the defaults of the
 * node's opset, and builds the dlc ops that compute the same values with
 * ir_op, whose shape rules check them.  Composite patterns that dlc's
 * exporter writes as decompositions (gelu as Erf, Mul, Add) import as the
 * ops they are made of.  Operators on shapes (Shape, Gather, Unsqueeze,
 * Concat, Cast, Slice of known values) are folded at import time, so the
 * dynamic-batch Reshape idiom of exporters needs no run-time shape ops.
 * What has no exact dlc form — an op, an attribute value, a run-time
 * shape — is an error naming the node and the attribute; nothing is
 * approximated.  Attributes a conversion does not read are refused by
 * the table's list of the ones it does.
 */
#include <math.h>
#include <string.h>

#include "onnx/import_ops.h"

#define SELU_ALPHA 1.6732632423543772848170429916717
#define SELU_SCALE 1.0507009873554804934193349852946

/* --- small helpers ---------------------------------------------------------------------------- */

/* axis in [-rank, rank) as a non-negative index, or -1 after an error. */
int64_t im_norm_axis(Importer *im, int64_t axis, int rank, const char *what) {
  if (axis < -rank || axis >= rank) return im_error(im, "%s %lld is out of range for rank %d", what, (long long)axis, rank);
  return axis < 0 ? axis + rank : axis;
}

/* A known i64 vector as plain integers (no symbolic element). */
int im_known_ints(Importer *im, const ImConst *c, const char *what, int64_t *v, int max) {
  if (c->dt != DT_I64 || c->rank > 1) return im_error(im, "%s must be a 1-D integer tensor", what);
  if (c->numel > max) return im_error(im, "%s has %lld entries, at most %d", what, (long long)c->numel, max);
  for (int k = 0; k < c->numel; k++) {
    if (c->sym && c->sym[k] >= 0) return im_error(im, "%s holds a symbolic dimension", what);
    v[k] = c->i[k];
  }
  return (int)c->numel;
}

/* A known scalar f32 (rank 0, or one element). */
static int known_float(Importer *im, const ImConst *c, const char *what, double *v) {
  if (c->numel != 1) return im_error(im, "%s must be a single number", what);
  *v = c->dt == DT_F32 ? c->f[0] : (double)c->i[0];
  return 0;
}

int im_set_list(Importer *im, Attrs *a, OpKind op, const char *name, const int64_t *v, int n) {
  Dim d[IR_MAX_LIST];
  for (int k = 0; k < n; k++) d[k] = v[k];
  if (ir_attr_set_list(a, op, name, d, n)) return im_error(im, "%s of %d entries does not fit dlc's %s", name, n, ir_ops[op].name);
  return 0;
}

/* A window list in its shortest form: nothing when every entry is dflt,
 * one entry when all agree, [top, left] for a symmetric 4-entry padding. */
static int set_window_list(Importer *im, Attrs *a, OpKind op, const char *name, const int64_t *v, int n, int64_t dflt) {
  int same = 1, all_dflt = 1;
  for (int k = 0; k < n; k++) same &= v[k] == v[0], all_dflt &= v[k] == dflt;
  if (all_dflt && dflt >= 0) return 0;
  if (same) return im_set_list(im, a, op, name, v, 1);
  if (n == 4 && v[0] == v[1] && v[2] == v[3]) {
    int64_t two[2] = {v[0], v[2]};
    return im_set_list(im, a, op, name, two, 2);
  }
  return im_set_list(im, a, op, name, v, n);
}

static int one_input(Importer *im, OpKind op, const Attrs *a) {
  int x = im_tensor(im, 0);
  return im_set_out(im, 0, im_op(im, op, &x, 1, a, 0));
}


/* --- building blocks of decompositions -------------------------------------------------------------- */

/* op (sum, mean, max) over axes (all when na < 0) of x. */
int im_reduce_over(Importer *im, OpKind op, int x, const int64_t *ax, int na, int keep, int k) {
  Attrs a = ir_attrs_default(op);
  a.dims.keepdim = keep != 0;
  if (x < 0 || (na > 0 && im_set_list(im, &a, op, "axes", ax, na))) return -1;
  return im_op(im, op, &x, 1, &a, k);
}

/* The axes from..rank-1. */
static int trailing_axes(int from, int rank, int64_t *ax) {
  int n = 0;
  for (int k = from; k < rank; k++) ax[n++] = k;
  return n;
}

/* --- elementwise ---------------------------------------------------------------------------------- */

/* Integer arithmetic on known values (shape computations: a rank minus
 * an axis) is folded: every input a known i64 without symbols, of one
 * shape or a single element.  Returns 1 when it does not apply. */
static int fold_ints(Importer *im, OpKind op) {
  int n = im_nin(im);
  const ImConst *c[2] = {NULL, NULL}, *big = NULL;
  if (n < 1 || n > 2 || (op != OP_ADD && op != OP_SUB && op != OP_MUL && op != OP_NEG && op != OP_ABS)) return 1;
  for (int k = 0; k < n; k++) {
    c[k] = im_known_opt(im, k);
    if (!c[k] || c[k]->dt != DT_I64 || c[k]->sym || c[k]->numel > 64) return 1;
    if (!big || c[k]->numel > big->numel) big = c[k];
  }
  if (n == 2 && c[0]->numel != c[1]->numel && c[0]->numel != 1 && c[1]->numel != 1) return 1;
  ImConst *r = im_known_i64(im, (int)big->numel);
  r->rank = big->rank;
  memcpy(r->dims, big->dims, sizeof r->dims);
  for (int64_t e = 0; e < big->numel; e++) {
    int64_t a = c[0]->i[c[0]->numel == 1 ? 0 : e], b = n == 2 ? c[1]->i[c[1]->numel == 1 ? 0 : e] : 0;
    r->i[e] = op == OP_ADD ? a + b : op == OP_SUB ? a - b : op == OP_MUL ? a * b : op == OP_NEG ? -a : a < 0 ? -a : a;
  }
  return im_set_out_known(im, 0, r);
}

static int cv_unary(Importer *im, const ImOp *row) {
  int f = fold_ints(im, row->op);
  return f <= 0 ? f : one_input(im, row->op, NULL);
}

/* Binary ops; Max, Min and Sum take any number of inputs, folded left. */
static int cv_binary(Importer *im, const ImOp *row) {
  int f = fold_ints(im, row->op);
  if (f <= 0) return f;
  int n = im_nin(im);
  if (n < 1 || (n < 2 && row->max_in == 2)) return im_error(im, "needs 2 inputs, has %d", n);
  int acc = im_tensor(im, 0);
  for (int k = 1; k < n && acc >= 0; k++) {
    int in[2] = {acc, im_tensor(im, k)};
    acc = im_op(im, row->op, in, 2, NULL, k == n - 1 ? 0 : -1);
  }
  return im_set_out(im, 0, acc);
}

/* Pow: a constant exponent as the attribute, else a second operand. */
static int cv_pow(Importer *im, const ImOp *row) {
  const ImConst *e = im_known_opt(im, 1);
  if (e && e->numel == 1 && e->rank == 0 && e->dt == DT_F32 && isfinite(e->f[0])) {
    Attrs a = ir_attrs_default(OP_POW);
    a.scalar.f = e->f[0];
    return one_input(im, OP_POW, &a);
  }
  int in[2] = {im_tensor(im, 0), im_tensor(im, 1)};
  return im_set_out(im, 0, im_op(im, OP_POW, in, 2, NULL, 0));
}

/* One float attribute onto one dlc attribute (LeakyRelu alpha -> slope). */
static int cv_scalar_attr(Importer *im, const ImOp *row) {
  double v;
  if (im_attr_float(im, "alpha", row->op == OP_LEAKY_RELU ? 0.01 : 1.0, &v)) return -1;
  Attrs a = ir_attrs_default(row->op);
  a.scalar.f = v;
  return one_input(im, row->op, &a);
}

/* Selu: gamma elu(x, alpha); dlc's selu when both are PyTorch's. */
static int cv_selu(Importer *im, const ImOp *row) {
  double alpha, gamma;
  if (im_attr_float(im, "alpha", SELU_ALPHA, &alpha) || im_attr_float(im, "gamma", SELU_SCALE, &gamma)) return -1;
  if ((float)alpha == (float)SELU_ALPHA && (float)gamma == (float)SELU_SCALE) return one_input(im, OP_SELU, NULL);
  Attrs a = ir_attrs_default(OP_ELU);
  a.scalar.f = alpha;
  int x = im_tensor(im, 0), e = x < 0 ? -1 : im_op(im, OP_ELU, &x, 1, &a, -1);
  return im_set_out(im, 0, bin(im, OP_MUL, e, konst(im, gamma), 0));
}

/* HardSigmoid: clamp(alpha x + beta, 0, 1); dlc's hardsigmoid with
 * PyTorch's alpha 1/6 and beta 1/2. */
static int cv_hardsigmoid(Importer *im, const ImOp *row) {
  double alpha, beta;
  if (im_attr_float(im, "alpha", 0.2, &alpha) || im_attr_float(im, "beta", 0.5, &beta)) return -1;
  if ((float)alpha == (float)(1.0 / 6) && (float)beta == 0.5f) return one_input(im, OP_HARDSIGMOID, NULL);
  int x = im_tensor(im, 0);
  int y = bin(im, OP_ADD, bin(im, OP_MUL, x, konst(im, alpha), -1), konst(im, beta), -1);
  Attrs a = ir_attrs_default(OP_CLAMP);
  a.scalar.f = 0, a.scalar.f2 = 1;
  return im_set_out(im, 0, y < 0 ? -1 : im_op(im, OP_CLAMP, &y, 1, &a, 0));
}

/* Reciprocal 1 / x; Softsign x / (1 + |x|); Not 1 - x (booleans are 0/1). */
static int cv_reciprocal(Importer *im, const ImOp *row) {
  return im_set_out(im, 0, bin(im, OP_DIV, konst(im, 1), im_tensor(im, 0), 0));
}

static int cv_softsign(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0);
  return im_set_out(im, 0, bin(im, OP_DIV, x, bin(im, OP_ADD, un(im, OP_ABS, x, -1), konst(im, 1), -1), 0));
}

static int cv_not(Importer *im, const ImOp *row) {
  return im_set_out(im, 0, bin(im, OP_SUB, konst(im, 1), im_tensor(im, 0), 0));
}

/* Sign: -1, 1, or x * 0 (0, and NaN for NaN). */
static int cv_sign(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0);
  int in0[3] = {bin(im, OP_GT, x, konst(im, 0), -1), konst(im, 1), bin(im, OP_MUL, x, konst(im, 0), -1)};
  int pos = im_op(im, OP_WHERE, in0, 3, NULL, -1);
  int in1[3] = {bin(im, OP_LT, x, konst(im, 0), -1), konst(im, -1), pos};
  return im_set_out(im, 0, im_op(im, OP_WHERE, in1, 3, NULL, 0));
}

/* The hyperbolic functions from exp, log and sqrt: sinh and cosh as
 * (e^x -+ e^-x) / 2, asinh odd-symmetric as sign(x) log(|x| + sqrt(x^2 + 1))
 * (no cancellation for x < 0), acosh log(x + sqrt(x^2 - 1)), atanh
 * log((1 + x) / (1 - x)) / 2. */
static int cv_hyperbolic(Importer *im, const ImOp *row) {
  const char *t = im->np->op_type;
  int x = im_tensor(im, 0), one = konst(im, 1), y;
  if (!strcmp(t, "Sinh") || !strcmp(t, "Cosh")) {
    int ep = un(im, OP_EXP, x, -1), en = un(im, OP_EXP, un(im, OP_NEG, x, -1), -1);
    return im_set_out(im, 0, bin(im, OP_DIV, bin(im, t[0] == 'S' ? OP_SUB : OP_ADD, ep, en, -1), konst(im, 2), 0));
  }
  if (!strcmp(t, "Atanh")) {
    y = un(im, OP_LOG, bin(im, OP_DIV, bin(im, OP_ADD, one, x, -1), bin(im, OP_SUB, one, x, -1), -1), -1);
    return im_set_out(im, 0, bin(im, OP_DIV, y, konst(im, 2), 0));
  }
  int acosh = !strcmp(t, "Acosh"), a = acosh ? x : un(im, OP_ABS, x, -1);
  int root = un(im, OP_SQRT, bin(im, acosh ? OP_SUB : OP_ADD, bin(im, OP_MUL, x, x, -1), one, -1), -1);
  y = un(im, OP_LOG, bin(im, OP_ADD, a, root, -1), acosh ? 0 : -1);
  if (acosh) return im_set_out(im, 0, y);
  int in[3] = {bin(im, OP_LT, x, konst(im, 0), -1), un(im, OP_NEG, y, -1), y};
  return im_set_out(im, 0, im_op(im, OP_WHERE, in, 3, NULL, 0));
}

/* Mean: the sum of the inputs divided by their count. */
static int cv_mean(Importer *im, const ImOp *row) {
  int n = im_nin(im), acc = im_tensor(im, 0);
  for (int k = 1; k < n && acc >= 0; k++) acc = bin(im, OP_ADD, acc, im_tensor(im, k), -1);
  return im_set_out(im, 0, n < 1 ? im_error(im, "needs an input") : bin(im, OP_DIV, acc, konst(im, n), 0));
}

/* ThresholdedRelu: x where x > alpha, else 0. */
static int cv_thresholded_relu(Importer *im, const ImOp *row) {
  double alpha;
  if (im_attr_float(im, "alpha", 1.0, &alpha)) return -1;
  int x = im_tensor(im, 0);
  int in[3] = {bin(im, OP_GT, x, konst(im, alpha), -1), x, konst(im, 0)};
  return im_set_out(im, 0, im_op(im, OP_WHERE, in, 3, NULL, 0));
}

/* Shrink: x + bias below -lambd, x - bias above lambd, else 0. */
static int cv_shrink(Importer *im, const ImOp *row) {
  double bias, lambd;
  if (im_attr_float(im, "bias", 0, &bias) || im_attr_float(im, "lambd", 0.5, &lambd)) return -1;
  int x = im_tensor(im, 0);
  int hi[3] = {bin(im, OP_GT, x, konst(im, lambd), -1), bin(im, OP_SUB, x, konst(im, bias), -1), konst(im, 0)};
  int lo[3] = {bin(im, OP_LT, x, konst(im, -lambd), -1), bin(im, OP_ADD, x, konst(im, bias), -1),
               im_op(im, OP_WHERE, hi, 3, NULL, -1)};
  return im_set_out(im, 0, im_op(im, OP_WHERE, lo, 3, NULL, 0));
}

/* Celu: alpha elu(x / alpha). */
static int cv_celu(Importer *im, const ImOp *row) {
  double alpha;
  if (im_attr_float(im, "alpha", 1.0, &alpha)) return -1;
  if (alpha == 0) return im_error(im, "attribute 'alpha' = 0 divides by zero");
  int e = un(im, OP_ELU, bin(im, OP_DIV, im_tensor(im, 0), konst(im, alpha), -1), -1);
  return im_set_out(im, 0, bin(im, OP_MUL, e, konst(im, alpha), 0));
}

/* PRelu: slope x where x < 0, else x (the slope broadcasts). */
static int cv_prelu(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0), slope = im_tensor(im, 1);
  int in[3] = {bin(im, OP_LT, x, konst(im, 0), -1), bin(im, OP_MUL, x, slope, -1), x};
  return im_set_out(im, 0, im_op(im, OP_WHERE, in, 3, NULL, 0));
}

/* Where(condition, x, y): the condition is 0/1 (dlc's booleans). */
static int cv_scan(Importer *im, const ImOp *row) { return im_cv_scan(im); }

/* IsNaN as x != x (1 exactly at NaN, as dlc's ne). */
static int cv_isnan(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0);
  return im_set_out(im, 0, bin(im, OP_NE, x, x, 0));
}

static int cv_where(Importer *im, const ImOp *row) {
  int in[3] = {im_tensor(im, 0), im_tensor(im, 1), im_tensor(im, 2)};
  return im_set_out(im, 0, im_op(im, OP_WHERE, in, 3, NULL, 0));
}

/* Clip with a bound computed at run time: min(max(x, lo), hi). */
static int clip_tensors(Importer *im) {
  int y = im_tensor(im, 0);
  if (im_in_name(im, 1)) y = bin(im, OP_MAXIMUM, y, im_tensor(im, 1), im_in_name(im, 2) ? -1 : 0);
  if (im_in_name(im, 2)) y = bin(im, OP_MINIMUM, y, im_tensor(im, 2), 0);
  return im_set_out(im, 0, y);
}

/* Clip: bounds as attributes (opset < 11) or inputs, constant (clamp) or not. */
static int cv_clip(Importer *im, const ImOp *row) {
  double lo = -INFINITY, hi = INFINITY;
  if (im->opset < 11) {
    if (im_attr_float(im, "min", -INFINITY, &lo) || im_attr_float(im, "max", INFINITY, &hi)) return -1;
  } else {
    if ((im_in_name(im, 1) && !im_known_opt(im, 1)) || (im_in_name(im, 2) && !im_known_opt(im, 2))) return clip_tensors(im);
    if (im_in_name(im, 1) && known_float(im, im_known_opt(im, 1), "min", &lo)) return -1;
    if (im_in_name(im, 2) && known_float(im, im_known_opt(im, 2), "max", &hi)) return -1;
  }
  Attrs a = ir_attrs_default(OP_CLAMP);
  a.scalar.f = lo, a.scalar.f2 = hi;
  return one_input(im, OP_CLAMP, &a);
}

/* --- linear algebra -------------------------------------------------------------------------------- */

/* Gemm: alpha A' B' + beta C.  transB=1 with C a vector of the output's
 * width is linear (dlc's dense layer); the rest is matmul, transpose, mul
 * and add. */
static int cv_gemm(Importer *im, const ImOp *row) {
  int64_t ta, tb;
  double alpha, beta;
  if (im_attr_int(im, "transA", 0, &ta) || im_attr_int(im, "transB", 0, &tb) || im_attr_float(im, "alpha", 1, &alpha) ||
      im_attr_float(im, "beta", 1, &beta))
    return -1;
  int A = im_tensor(im, 0), B = im_tensor(im, 1), C = im_in_name(im, 2) ? im_tensor(im, 2) : -2;
  if (A < 0 || B < 0 || C == -1) return -1;
  if (ta) A = im_op(im, OP_TRANSPOSE, &A, 1, NULL, -1);
  int y;
  const Shape *cs = C >= 0 ? shape_of(im, C) : NULL, *bs = shape_of(im, B);
  if (tb && alpha == 1 && beta == 1 && bs->rank == 2 && (!cs || (cs->rank == 1 && cs->d[0] == bs->d[0]))) {
    int in[3] = {A, B, C};
    return im_set_out(im, 0, im_op(im, OP_LINEAR, in, C >= 0 ? 3 : 2, NULL, 0));
  }
  if (tb) B = im_op(im, OP_TRANSPOSE, &B, 1, NULL, -1);
  int in[2] = {A, B};
  y = im_op(im, OP_MATMUL, in, 2, NULL, C >= 0 || alpha != 1 ? -1 : 0);
  if (alpha != 1) {
    int m[2] = {y, ir_const(im->g, alpha, im->loc)};
    y = im_op(im, OP_MUL, m, 2, NULL, C >= 0 ? -1 : 0);
  }
  if (C >= 0 && beta != 1) {
    int m[2] = {C, ir_const(im->g, beta, im->loc)};
    C = im_op(im, OP_MUL, m, 2, NULL, -1);
  }
  if (C >= 0) {
    int s[2] = {y, C};
    y = im_op(im, OP_ADD, s, 2, NULL, 0);
  }
  return im_set_out(im, 0, y);
}

/* --- axes ------------------------------------------------------------------------------------------- */

/* Softmax, LogSoftmax: before opset 13 the input is flattened to 2-D at
 * axis (default 1), which is dlc's op only when axis is the last one. */
static int cv_softmax(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0);
  if (x < 0) return -1;
  int rank = shape_of(im, x)->rank;
  int64_t axis;
  if (im_attr_int(im, "axis", im->opset < 13 ? 1 : -1, &axis) || (axis = im_norm_axis(im, axis, rank, "axis")) < 0) return -1;
  if (im->opset < 13 && axis != rank - 1)
    return im_error(im, "before opset 13 %s flattens the axes from %lld on; dlc's op is over one axis", im->np->op_type,
                    (long long)axis);
  Attrs a = ir_attrs_default(row->op);
  a.axis.axis = axis;
  return im_set_out(im, 0, im_op(im, row->op, &x, 1, &a, 0));
}

/* A reshape of tensor x to dims d (symbols, DIM_INFER allowed). */
int im_reshape_to(Importer *im, int x, const Dim *d, int n, int k) {
  Attrs a = ir_attrs_default(OP_RESHAPE);
  if (n > IR_MAX_RANK) return im_error(im, "the result has rank %d, over dlc's largest, %d", n, IR_MAX_RANK);
  a.dims.nlist = n;
  memcpy(a.dims.list, d, (size_t)n * sizeof *d);
  return im_op(im, OP_RESHAPE, &x, 1, &a, k);
}

/* A -1 in a reshape of a symbolic input: ONNX infers it from the element
 * count, dlc wants each symbol named; when the static extents match and
 * one symbol is left over, -1 is that symbol. */
static void resolve_infer(const Shape *xs, Dim *d, int n) {
  int left[IR_MAX_SYMS] = {0}, at = -1, nleft = 0, sym = -1;
  int64_t in = 1, out = 1;
  for (int k = 0; k < xs->rank; k++)
    if (DIM_IS_SYM(xs->d[k])) left[DIM_SYM_ID(xs->d[k])]++;
    else in = ir_size_mul(in, xs->d[k]);
  for (int k = 0; k < n; k++)
    if (d[k] == DIM_INFER) at = k;
    else if (DIM_IS_SYM(d[k])) left[DIM_SYM_ID(d[k])]--;
    else out = ir_size_mul(out, d[k]);
  for (int s = 0; s < IR_MAX_SYMS; s++)
    if (left[s]) nleft += left[s], sym = s;
  if (at >= 0 && nleft == 1 && left[sym] == 1 && in == out && in > 0) d[at] = DIM_SYM(sym);
}

static int cv_reshape(Importer *im, const ImOp *row) {
  int64_t allowzero;
  const ImConst *s = im_known(im, 1, "shape");
  int x = im_tensor(im, 0);
  if (!s || x < 0 || im_attr_int(im, "allowzero", 0, &allowzero)) return -1;
  if (s->dt != DT_I64 || s->rank != 1) return im_error(im, "the shape must be a 1-D integer tensor");
  if (s->numel > IR_MAX_RANK) return im_error(im, "the shape has %lld entries, over dlc's largest rank, %d", (long long)s->numel, IR_MAX_RANK);
  const Shape *xs = shape_of(im, x);
  Dim d[IR_MAX_RANK];
  for (int k = 0; k < s->numel; k++) {
    int64_t v = s->i[k];
    if (s->sym && s->sym[k] >= 0) d[k] = DIM_SYM(s->sym[k]);
    else if (v == 0 && !allowzero && k < xs->rank) d[k] = xs->d[k];
    else if (v == -1) d[k] = DIM_INFER;
    else if (v >= 1) d[k] = v;
    else return im_error(im, "shape entry %d is %lld", k, (long long)v);
  }
  resolve_infer(xs, d, (int)s->numel);
  return im_set_out(im, 0, im_reshape_to(im, x, d, (int)s->numel, 0));
}

/* The product of dims d[from..to) as one Dim: a constant, the one symbol
 * alone, or DIM_INFER when it mixes a symbol with other extents. */
static Dim dims_product(const Shape *s, int from, int to) {
  Dim p = 1;
  int nsym = 0;
  for (int k = from; k < to; k++) {
    if (DIM_IS_SYM(s->d[k])) nsym++, p = to - from == 1 ? s->d[k] : p;
    else p = ir_size_mul(p, s->d[k]);
  }
  return nsym == 0 ? p : nsym == 1 && to - from == 1 ? s->d[from] : DIM_INFER;
}

/* Flatten: [d0 * ... * d(axis-1), d(axis) * ... ] (2-D). */
static int cv_flatten(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0);
  int64_t axis;
  if (x < 0 || im_attr_int(im, "axis", 1, &axis)) return -1;
  const Shape *xs = shape_of(im, x);
  if (axis < -xs->rank || axis > xs->rank) return im_error(im, "axis %lld is out of range for rank %d", (long long)axis, xs->rank);
  if (axis < 0) axis += xs->rank; /* in [-r, r]: a negative axis counts from the end, -1 before the last axis */
  if (axis == 1 && xs->rank >= 2) {
    Attrs a = ir_attrs_default(OP_FLATTEN);
    return im_set_out(im, 0, im_op(im, OP_FLATTEN, &x, 1, &a, 0));
  }
  Dim d[2] = {dims_product(xs, 0, (int)axis), dims_product(xs, (int)axis, xs->rank)};
  if (d[0] == DIM_INFER && d[1] == DIM_INFER) return im_error(im, "both halves of the flattened shape mix symbolic dimensions");
  resolve_infer(xs, d, 2);
  return im_set_out(im, 0, im_reshape_to(im, x, d, 2, 0));
}

static int cv_transpose(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0), n;
  int64_t perm[IR_MAX_RANK];
  if (x < 0 || im_attr_ints(im, "perm", perm, IR_MAX_RANK, &n)) return -1;
  Attrs a = ir_attrs_default(OP_TRANSPOSE);
  if (n >= 0 && im_set_list(im, &a, OP_TRANSPOSE, "perm", perm, n)) return -1;
  return im_set_out(im, 0, im_op(im, OP_TRANSPOSE, &x, 1, &a, 0));
}

/* Concat of known integer vectors (shapes) folds; of tensors is concat. */
static int concat_known(Importer *im) {
  int n = im_nin(im);
  int64_t total = 0;
  for (int k = 0; k < n; k++) {
    const ImConst *c = im_known_opt(im, k);
    if (!c || c->dt != DT_I64 || c->rank != 1) return 1;
    total += c->numel;
  }
  if (total > 64) return 1;
  ImConst *r = im_known_i64(im, (int)total);
  r->sym = arena_alloc(im->a, (size_t)(total ? total : 1) * sizeof *r->sym);
  for (int k = 0, j = 0; k < n; k++) {
    const ImConst *c = im_known_opt(im, k);
    for (int e = 0; e < c->numel; e++, j++) r->i[j] = c->i[e], r->sym[j] = c->sym ? c->sym[e] : -1;
  }
  return im_set_out_known(im, 0, r);
}

static int cv_concat(Importer *im, const ImOp *row) {
  int64_t axis;
  int n = im_nin(im);
  if (!im_attr(im, "axis")) return im_error(im, "attribute 'axis' is required");
  if (im_attr_int(im, "axis", 0, &axis)) return -1;
  if (n < 1) return im_error(im, "needs at least one input");
  if (concat_known(im) <= 0) return 0;
  int *in = arena_alloc(im->a, (size_t)n * sizeof *in);
  for (int k = 0; k < n; k++)
    if ((in[k] = im_tensor(im, k)) < 0) return -1;
  Attrs a = ir_attrs_default(OP_CONCAT);
  a.axis.axis = axis;
  return im_set_out(im, 0, im_op(im, OP_CONCAT, in, n, &a, 0));
}

/* A slice of a known integer vector (a shape), folded: ONNX's clamping of
 * start and end, positive steps. */
static int slice_known(Importer *im, const ImConst *c, int64_t start, int64_t end, int64_t step) {
  int64_t n = c->numel;
  if (step <= 0) return im_error(im, "step %lld is not supported (dlc slices with positive steps)", (long long)step);
  start = start < 0 ? start + n : start, end = end < 0 ? end + n : end;
  start = start < 0 ? 0 : start > n ? n : start, end = end < start ? start : end > n ? n : end;
  ImConst *r = im_known_i64(im, (int)((end - start + step - 1) / step));
  r->sym = arena_alloc(im->a, (size_t)(r->numel + 1) * sizeof *r->sym);
  for (int64_t k = start, j = 0; k < end; k += step, j++) r->i[j] = c->i[k], r->sym[j] = c->sym ? c->sym[k] : -1;
  return im_set_out_known(im, 0, r);
}

/* Slice: starts, ends, axes, steps as attributes (opset < 10) or inputs;
 * one dlc slice per sliced axis. */
static int cv_slice(Importer *im, const ImOp *row) {
  int64_t st[IR_MAX_RANK], en[IR_MAX_RANK], ax[IR_MAX_RANK], sp[IR_MAX_RANK];
  int ns, ne, na = -1, nsp = -1;
  if (im->opset < 10) {
    if (im_attr_ints(im, "starts", st, IR_MAX_RANK, &ns) || im_attr_ints(im, "ends", en, IR_MAX_RANK, &ne) ||
        im_attr_ints(im, "axes", ax, IR_MAX_RANK, &na))
      return -1;
  } else {
    const ImConst *c;
    if (!(c = im_known(im, 1, "starts")) || (ns = im_known_ints(im, c, "starts", st, IR_MAX_RANK)) < 0) return -1;
    if (!(c = im_known(im, 2, "ends")) || (ne = im_known_ints(im, c, "ends", en, IR_MAX_RANK)) < 0) return -1;
    if (im_in_name(im, 3) && (!(c = im_known(im, 3, "axes")) || (na = im_known_ints(im, c, "axes", ax, IR_MAX_RANK)) < 0)) return -1;
    if (im_in_name(im, 4) && (!(c = im_known(im, 4, "steps")) || (nsp = im_known_ints(im, c, "steps", sp, IR_MAX_RANK)) < 0)) return -1;
  }
  if (ns < 0 || ns != ne || (na >= 0 && na != ns) || (nsp >= 0 && nsp != ns))
    return im_error(im, "starts, ends, axes and steps must have the same length");
  const ImConst *kc = im_known_opt(im, 0);
  if (kc && kc->dt == DT_I64 && kc->rank == 1 && ns == 1 && (na < 0 || ax[0] == 0 || ax[0] == -1))
    return slice_known(im, kc, st[0], en[0], nsp >= 0 ? sp[0] : 1);
  int x = im_tensor(im, 0);
  for (int k = 0; k < ns && x >= 0; k++) {
    Attrs a = ir_attrs_default(OP_SLICE);
    a.axis.axis = na >= 0 ? ax[k] : k, a.axis.start = st[k], a.axis.end = en[k], a.axis.step = nsp >= 0 ? sp[k] : 1;
    if (a.axis.step <= 0) return im_error(im, "step %lld is not supported (dlc slices with positive steps)", (long long)a.axis.step);
    x = im_op(im, OP_SLICE, &x, 1, &a, k == ns - 1 ? 0 : -1);
  }
  return im_set_out(im, 0, x);
}

/* The axes of Squeeze and Unsqueeze: an attribute before opset 13. */
static int squeeze_axes(Importer *im, int64_t *ax) {
  int n = -1;
  if (im->opset < 13) return im_attr_ints(im, "axes", ax, IR_MAX_RANK, &n) ? -2 : n;
  if (!im_in_name(im, 1)) return -1;
  const ImConst *c = im_known(im, 1, "axes");
  return c ? im_known_ints(im, c, "axes", ax, IR_MAX_RANK) : -2;
}

/* The rank-r input's dims d (symbols as in a Shape) without, or with new
 * unit, axes; known values keep their elements. */
static int cv_squeeze(Importer *im, const ImOp *row) {
  int64_t ax[IR_MAX_RANK];
  int na = squeeze_axes(im, ax), unsq = row->op == OP_RESHAPE;
  if (na == -2) return -1;
  const ImConst *kc = im_known_opt(im, 0);
  int x = kc ? -1 : im_tensor(im, 0);
  if (!kc && x < 0) return -1;
  Shape in = {0, {0}};
  if (kc) {
    in.rank = kc->rank;
    for (int k = 0; k < kc->rank; k++) in.d[k] = kc->dims[k];
  } else {
    in = *shape_of(im, x);
  }
  int rout = unsq ? in.rank + (na < 0 ? 0 : na) : in.rank;
  if (unsq && na < 0) return im_error(im, "Unsqueeze needs axes");
  if (rout > IR_MAX_RANK) return im_error(im, "the result has rank %d, over dlc's largest, %d", rout, IR_MAX_RANK);
  int mark[IR_MAX_RANK] = {0};
  for (int k = 0; k < na; k++) {
    int64_t a = im_norm_axis(im, ax[k], rout, "axis");
    if (a < 0) return -1;
    if (mark[a]) return im_error(im, "axis %lld is given twice", (long long)ax[k]);
    mark[a] = 1;
  }
  Shape out = {0, {0}};
  for (int k = 0, j = 0; k < rout; k++) {
    if (unsq) out.d[out.rank++] = mark[k] ? 1 : in.d[j++];
    else if (na < 0 ? in.d[k] != 1 : !mark[k]) out.d[out.rank++] = in.d[k];
    else if (in.d[k] != 1) return im_error(im, "axis %d has extent %lld, not 1", k, (long long)in.d[k]);
  }
  if (kc) {
    ImConst *r = arena_alloc(im->a, sizeof *r);
    *r = *kc;
    r->rank = out.rank;
    for (int k = 0; k < out.rank; k++) r->dims[k] = out.d[k];
    return im_set_out_known(im, 0, r);
  }
  return im_set_out(im, 0, im_reshape_to(im, x, out.d, out.rank, 0));
}

/* The axes of a Reduce op: an input from opset 13 (ReduceSum) or 18 (the
 * others), an attribute before; *na = -1 when absent. */
int im_reduce_attrs(Importer *im, int64_t *ax, int *na, int64_t *keep, int64_t *noop) {
  int from_input = !strcmp(im->np->op_type, "ReduceSum") ? im->opset >= 13 : im->opset >= 18;
  *na = -1;
  if (im_attr_int(im, "keepdims", 1, keep) || im_attr_int(im, "noop_with_empty_axes", 0, noop)) return -1;
  if (!from_input && im_attr_ints(im, "axes", ax, IR_MAX_RANK, na)) return -1;
  if (from_input && im_in_name(im, 1)) {
    const ImConst *c = im_known(im, 1, "axes");
    if (!c || (*na = im_known_ints(im, c, "axes", ax, IR_MAX_RANK)) < 0) return -1;
  }
  return 0;
}

/* ReduceSum, ReduceMean, ReduceMax, and the ones dlc composes:
 * ReduceMin -max(-x), ReduceSumSquare sum(x x), ReduceL1 sum(|x|),
 * ReduceL2 sqrt(sum(x x)), ReduceLogSum log(sum(x)), ReduceLogSumExp
 * log(sum(exp(x))).  Empty axes reduce every one unless
 * noop_with_empty_axes. */
static int cv_reduce(Importer *im, const ImOp *row) {
  int64_t ax[IR_MAX_RANK], keep, noop;
  int na;
  if (im_reduce_attrs(im, ax, &na, &keep, &noop)) return -1;
  int x = im_tensor(im, 0);
  if (x < 0) return -1;
  if (na <= 0 && noop) return im_set_out(im, 0, x);
  const char *t = im->np->op_type;
  if (!strcmp(t, "ReduceMin"))
    return im_set_out(im, 0, un(im, OP_NEG, im_reduce_over(im, OP_MAX, un(im, OP_NEG, x, -1), ax, na, (int)keep, -1), 0));
  if (!strcmp(t, "ReduceSumSquare") || !strcmp(t, "ReduceL2")) x = bin(im, OP_MUL, x, x, -1);
  else if (!strcmp(t, "ReduceL1")) x = un(im, OP_ABS, x, -1);
  else if (!strcmp(t, "ReduceLogSumExp")) x = un(im, OP_EXP, x, -1);
  int last = row->op != OP_SUM || !strcmp(t, "ReduceSum") || !strcmp(t, "ReduceSumSquare") || !strcmp(t, "ReduceL1");
  int y = im_reduce_over(im, row->op, x, ax, na, (int)keep, last ? 0 : -1);
  if (last) return im_set_out(im, 0, y);
  return im_set_out(im, 0, un(im, !strcmp(t, "ReduceL2") ? OP_SQRT : OP_LOG, y, 0));
}

/* x normalised over axes: (x - mean) / sqrt(var + eps), the variance
 * biased; *mean and *inv (1 / sqrt(var + eps), when asked) for outputs
 * 1 and 2 of LayerNormalization. */
static int normalise(Importer *im, int x, const int64_t *ax, int na, double eps, int *mean, int *inv) {
  int m = im_reduce_over(im, OP_MEAN, x, ax, na, 1, mean ? 1 : -1);
  int d = bin(im, OP_SUB, x, m, -1);
  int var = im_reduce_over(im, OP_MEAN, bin(im, OP_MUL, d, d, -1), ax, na, 1, -1);
  int sd = un(im, OP_SQRT, bin(im, OP_ADD, var, konst(im, eps), -1), -1);
  if (mean) *mean = m;
  if (inv) *inv = bin(im, OP_DIV, konst(im, 1), sd, 2);
  return bin(im, OP_DIV, d, sd, -1);
}

/* Whether input k is a tensor of the shape of x's axes from axis on. */
static int norm_shaped(Importer *im, int x, int axis, int k) {
  int v = im_tensor(im, k);
  if (v < 0) return 0;
  const Shape *xs = shape_of(im, x), *vs = shape_of(im, v);
  int same = vs->rank == xs->rank - axis;
  for (int i = 0; same && i < vs->rank; i++) same = vs->d[i] == xs->d[axis + i];
  return same;
}

/* LayerNormalization: over the axes from axis on, then Scale and B;
 * dlc's layer_norm when Scale and B have the normalised shape and the
 * Mean and InvStdDev outputs are not used, else its formula. */
static int cv_layernorm(Importer *im, const ImOp *row) {
  int64_t axis, ax[IR_MAX_RANK], stash;
  double eps;
  int x = im_tensor(im, 0);
  if (x < 0 || im_attr_int(im, "axis", -1, &axis) || im_attr_float(im, "epsilon", 1e-5, &eps) ||
      im_attr_int(im, "stash_type", 1, &stash))
    return -1;
  int r = shape_of(im, x)->rank;
  if ((axis = im_norm_axis(im, axis, r, "axis")) < 0) return -1;
  int nout = (int)im->np->n_output, mean = -1, inv = -1;
  int want_mean = nout > 1 && *im->np->output[1], want_inv = nout > 2 && *im->np->output[2];
  if (!want_mean && !want_inv && norm_shaped(im, x, (int)axis, 1) && (!im_in_name(im, 2) || norm_shaped(im, x, (int)axis, 2))) {
    int in[3] = {x, im_tensor(im, 1), im_in_name(im, 2) ? im_tensor(im, 2) : -1};
    Attrs a = ir_attrs_default(OP_LAYER_NORM);
    a.scalar.mode = r - (int)axis, a.scalar.f = eps;
    return im_set_out(im, 0, im_op(im, OP_LAYER_NORM, in, in[2] >= 0 ? 3 : 2, &a, 0));
  }
  int y = normalise(im, x, ax, trailing_axes((int)axis, r, ax), eps, want_mean ? &mean : NULL, want_inv ? &inv : NULL);
  y = bin(im, OP_MUL, y, im_tensor(im, 1), im_in_name(im, 2) ? -1 : 0);
  if (im_in_name(im, 2)) y = bin(im, OP_ADD, y, im_tensor(im, 2), 0);
  if ((want_mean && im_set_out(im, 1, mean)) || (want_inv && im_set_out(im, 2, inv))) return -1;
  return im_set_out(im, 0, y);
}

/* A per-channel vector [C] as [C, 1, ...] for a rank-r NC... tensor. */
static int channel_vector(Importer *im, int v, int r) {
  Dim d[IR_MAX_RANK];
  if (v < 0) return -1;
  if (shape_of(im, v)->rank != 1) return im_error(im, "scale and B must be vectors");
  d[0] = shape_of(im, v)->d[0];
  for (int k = 1; k < r - 1; k++) d[k] = 1;
  return im_reshape_to(im, v, d, r - 1, -1);
}

/* InstanceNormalization: each channel of each sample over its spatial axes. */
static int cv_instancenorm(Importer *im, const ImOp *row) {
  double eps;
  int64_t ax[IR_MAX_RANK];
  int x = im_tensor(im, 0);
  if (x < 0 || im_attr_float(im, "epsilon", 1e-5, &eps)) return -1;
  int r = shape_of(im, x)->rank;
  if (r < 3) return im_error(im, "the input must have a batch, a channel and a spatial axis");
  int y = normalise(im, x, ax, trailing_axes(2, r, ax), eps, NULL, NULL);
  y = bin(im, OP_MUL, y, channel_vector(im, im_tensor(im, 1), r), -1);
  return im_set_out(im, 0, bin(im, OP_ADD, y, channel_vector(im, im_tensor(im, 2), r), 0));
}

/* GlobalMaxPool: max over the spatial axes, kept. */
static int cv_global_max_pool(Importer *im, const ImOp *row) {
  int64_t ax[IR_MAX_RANK];
  int x = im_tensor(im, 0);
  if (x < 0) return -1;
  return im_set_out(im, 0, im_reduce_over(im, OP_MAX, x, ax, trailing_axes(2, shape_of(im, x)->rank, ax), 1, 0));
}

/* --- convolution and pooling ----------------------------------------------------------------------- */

/* The window attributes every conv and pool reads: ONNX pads [begins...,
 * ends...] become dlc's [top, bottom, left, right] (1-D: [left, right]). */
/* auto_pad SAME_UPPER / SAME_LOWER: the pads [begins..., ends...] that
 * give ceil(in / stride) outputs per spatial axis, the odd one at the end
 * (UPPER) or the beginning (LOWER); the extents must be known. */
static int same_pads(Importer *im, int sp, const int64_t *kernel, const int64_t *st, const int64_t *dil, int lower,
                     int64_t *pads) {
  const Shape *xs = shape_of(im, im_tensor(im, 0));
  for (int k = 0; k < sp; k++) {
    Dim in = xs->d[2 + k];
    if (DIM_IS_SYM(in)) return im_error(im, "auto_pad SAME needs known spatial extents");
    int64_t out = (in + st[k] - 1) / st[k], total = (out - 1) * st[k] + (kernel[k] - 1) * dil[k] + 1 - in;
    total = total < 0 ? 0 : total;
    pads[k] = lower ? total - total / 2 : total / 2, pads[sp + k] = total - pads[k];
  }
  return 2 * sp;
}

static int window_attrs(Importer *im, OpKind op, int sp, Attrs *a, int64_t *kernel, int *nk) {
  int64_t v[8], st[2] = {1, 1}, dil[2] = {1, 1};
  int n, ns, nd = -1;
  const char *autopad;
  if (im_attr_str(im, "auto_pad", "NOTSET", &autopad)) return -1;
  int same = !strcmp(autopad, "SAME_UPPER") || !strcmp(autopad, "SAME_LOWER");
  if (strcmp(autopad, "NOTSET") && strcmp(autopad, "VALID") && !same)
    return im_error(im, "attribute 'auto_pad' = '%s' is not supported (NOTSET, VALID, SAME_UPPER, SAME_LOWER)", autopad);
  if (im_attr_ints(im, "kernel_shape", kernel, 2, nk)) return -1;
  if (*nk >= 0 && *nk != sp) return im_error(im, "kernel_shape has %d entries for %d spatial axes", *nk, sp);
  int pool = op == OP_MAX_POOL2D || op == OP_AVG_POOL2D;
  if (im_attr_ints(im, "strides", st, 2, &ns)) return -1;
  if (ns < 0) st[0] = st[1] = 1;
  if (pool && ns < 0) ns = 2; /* ONNX's default stride is 1, dlc's pools' the kernel */
  if (ns >= 0 && set_window_list(im, a, op, "stride", st, ns, pool ? -1 : 1)) return -1;
  if (op != OP_AVG_POOL2D && (im_attr_ints(im, "dilations", dil, 2, &nd) || (nd >= 0 && set_window_list(im, a, op, "dilation", dil, nd, 1))))
    return -1;
  if (nd < 0) dil[0] = dil[1] = 1;
  if (im_attr_ints(im, "pads", v, 4, &n)) return -1;
  if (same && n >= 0) return im_error(im, "attribute 'pads' cannot be given with auto_pad '%s'", autopad);
  if (same) {
    int64_t kw[2] = {kernel[0], kernel[1]};
    for (int k = 0; *nk < 0 && k < sp; k++) kw[k] = shape_of(im, im_tensor(im, 1))->d[2 + k]; /* conv: the weight's */
    if ((n = same_pads(im, sp, kw, st, dil, autopad[5] == 'L', v)) < 0) return -1;
  }
  if (n >= 0 && n != 2 * sp) return im_error(im, "pads has %d entries for %d spatial axes", n, sp);
  for (int k = 0; k < n; k++)
    if (v[k] < 0) return im_error(im, "negative pads are not supported");
  if (n == 4) {
    int64_t p[4] = {v[0], v[2], v[1], v[3]};
    return set_window_list(im, a, op, "padding", p, 4, 0);
  }
  return n == 2 ? set_window_list(im, a, op, "padding", v, 2, 0) : 0;
}

/* Conv (1-D or 2-D), with group; ConvTranspose is im_cv_conv_transpose. */
static int cv_conv(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0), w = im_tensor(im, 1), b = im_in_name(im, 2) ? im_tensor(im, 2) : -2;
  if (x < 0 || w < 0 || b == -1) return -1;
  int sp = shape_of(im, x)->rank - 2;
  OpKind op = sp == 1 ? OP_CONV1D : OP_CONV2D;
  if (sp != 1 && sp != 2) return im_error(im, "a %d-D convolution is not supported (1-D and 2-D)", sp);
  Attrs a = ir_attrs_default(op);
  int64_t kernel[2], group;
  int nk;
  if (window_attrs(im, op, sp, &a, kernel, &nk) || im_attr_int(im, "group", 1, &group)) return -1;
  a.window.groups = group;
  const Shape *ws = shape_of(im, w);
  for (int k = 0; k < nk; k++)
    if (ws->rank != sp + 2 || ws->d[2 + k] != kernel[k]) return im_error(im, "kernel_shape does not match the weight's shape");
  int in[3] = {x, w, b};
  return im_set_out(im, 0, im_op(im, op, in, b >= 0 ? 3 : 2, &a, 0));
}

/* MaxPool and AveragePool (2-D); ONNX's strides default to 1, dlc's to
 * the kernel, so the stride is always written. */
static int cv_pool(Importer *im, const ImOp *row) {
  Attrs a = ir_attrs_default(row->op);
  int64_t kernel[2], ceil, cip, order;
  int nk, x = im_tensor(im, 0);
  if (x >= 0 && !im_pool_is_2d(im, x)) return im_cv_pool_nd(im, row);
  if (window_attrs(im, row->op, 2, &a, kernel, &nk)) return -1;
  if (nk != 2) return im_error(im, "attribute 'kernel_shape' of 2 entries is required (2-D pooling)");
  if (set_window_list(im, &a, row->op, "kernel", kernel, 2, -1) || im_attr_int(im, "ceil_mode", 0, &ceil)) return -1;
  IntList *st = &a.window.stride;
  if (st->n && st->v[0] == kernel[0] && st->v[st->n - 1] == kernel[1]) st->n = 0; /* dlc's default: the kernel */
  a.window.ceil_mode = ceil != 0;
  if (row->op == OP_AVG_POOL2D) {
    if (im_attr_int(im, "count_include_pad", 0, &cip)) return -1;
    a.window.count_include_pad = cip != 0;
  } else if (im_attr_int(im, "storage_order", 0, &order)) {
    return -1;
  }
  return one_input(im, row->op, &a);
}

/* A [1, C, 1, ...] statistic as the [C] vector running statistics are. */
static int as_vector(Importer *im, int v, int k) {
  if (v < 0) return -1;
  Dim c = shape_of(im, v)->d[1];
  return im_reshape_to(im, v, &c, 1, k);
}

/* BatchNormalization with training_mode 1 (opset 14): normalised with
 * the batch's mean and biased variance over every axis but the channel's;
 * outputs 1 and 2, when used, are the running statistics updated with
 * them: input * momentum + batch * (1 - momentum). */
static int batchnorm_training(Importer *im, double eps) {
  double mom;
  int64_t ax[IR_MAX_RANK];
  int x = im_tensor(im, 0);
  if (x < 0 || im_attr_float(im, "momentum", 0.9, &mom)) return -1;
  int r = shape_of(im, x)->rank, na = 1;
  if (r < 2) return im_error(im, "the input must have a batch and a channel axis");
  ax[0] = 0;
  for (int k = 2; k < r; k++) ax[na++] = k;
  int m = im_reduce_over(im, OP_MEAN, x, ax, na, 1, -1), d = bin(im, OP_SUB, x, m, -1);
  int var = im_reduce_over(im, OP_MEAN, bin(im, OP_MUL, d, d, -1), ax, na, 1, -1);
  int y = bin(im, OP_DIV, d, un(im, OP_SQRT, bin(im, OP_ADD, var, konst(im, eps), -1), -1), -1);
  y = bin(im, OP_MUL, y, channel_vector(im, im_tensor(im, 1), r), -1);
  y = bin(im, OP_ADD, y, channel_vector(im, im_tensor(im, 2), r), 0);
  for (int k = 1; k <= 2; k++) {
    if ((int)im->np->n_output <= k || !*im->np->output[k]) continue;
    int run = bin(im, OP_MUL, im_tensor(im, 2 + k), konst(im, mom), -1);
    int now = bin(im, OP_MUL, as_vector(im, k == 1 ? m : var, -1), konst(im, 1 - mom), -1);
    if (im_set_out(im, k, bin(im, OP_ADD, run, now, k))) return -1;
  }
  return im_set_out(im, 0, y);
}

/* LRN: x / (bias + alpha / size * the sum of squares over a window of
 * size channels)^beta; the window sum is an avg_pool2d (padding counted)
 * over the channels of the [N, 1, C, H W] view, times size. */
static int cv_lrn(Importer *im, const ImOp *row) {
  double alpha, beta, bias;
  int64_t size;
  int x = im_tensor(im, 0);
  if (x < 0 || im_attr_float(im, "alpha", 1e-4, &alpha) || im_attr_float(im, "beta", 0.75, &beta) ||
      im_attr_float(im, "bias", 1, &bias) || im_attr_int(im, "size", 0, &size))
    return -1;
  const Shape *xs = shape_of(im, x);
  Shape keep = *xs;
  if (xs->rank != 4 || DIM_IS_SYM(xs->d[1]) || DIM_IS_SYM(xs->d[2]) || DIM_IS_SYM(xs->d[3]) || size < 1 || size > xs->d[1])
    return im_error(im, "needs a rank-4 input with known C, H, W and a size from 1 to C");
  Dim v4[4] = {xs->d[0], 1, xs->d[1], xs->d[2] * xs->d[3]};
  int sq = im_reshape_to(im, bin(im, OP_MUL, x, x, -1), v4, 4, -1);
  Attrs a = ir_attrs_default(OP_AVG_POOL2D);
  int64_t k[2] = {size, 1}, one[2] = {1, 1}, pad[4] = {(size - 1) / 2, size / 2, 0, 0};
  if (sq < 0 || im_set_list(im, &a, OP_AVG_POOL2D, "kernel", k, 2) || im_set_list(im, &a, OP_AVG_POOL2D, "stride", one, 2) ||
      im_set_list(im, &a, OP_AVG_POOL2D, "padding", pad, 4))
    return -1;
  a.window.count_include_pad = 1;
  int avg = im_op(im, OP_AVG_POOL2D, &sq, 1, &a, -1);
  int base = bin(im, OP_ADD, bin(im, OP_MUL, im_reshape_to(im, avg, keep.d, 4, -1), konst(im, alpha), -1), konst(im, bias), -1);
  Attrs p = ir_attrs_default(OP_POW);
  p.scalar.f = -beta;
  int den = base < 0 ? -1 : im_op(im, OP_POW, &base, 1, &p, -1);
  return im_set_out(im, 0, bin(im, OP_MUL, x, den, 0));
}

static int cv_batchnorm(Importer *im, const ImOp *row) {
  double eps;
  int64_t training, spatial;
  if (im_attr_float(im, "epsilon", 1e-5, &eps) || im_attr_int(im, "training_mode", 0, &training) ||
      im_attr_int(im, "spatial", 1, &spatial))
    return -1;
  if (!spatial) return im_error(im, "attribute 'spatial' = 0 is not supported");
  if (training) return batchnorm_training(im, eps);
  int in[5];
  for (int k = 0; k < 5; k++)
    if ((in[k] = im_tensor(im, k)) < 0) return -1;
  Attrs a = ir_attrs_default(OP_BATCHNORM);
  a.hyper.hp[HP_EPS] = eps;
  return im_set_out(im, 0, im_op(im, OP_BATCHNORM, in, 5, &a, 0));
}

/* Resize / Upsample by integer factors on H and W: nearest (asymmetric,
 * floor) or linear (pytorch_half_pixel or half_pixel), as dlc's upsample. */
static int resize_mode(Importer *im, int *mode) {
  const char *m, *ct, *nm;
  if (im_attr_str(im, "mode", "nearest", &m) || im_attr_str(im, "coordinate_transformation_mode", im->opset >= 11 ? "half_pixel" : "asymmetric", &ct) ||
      im_attr_str(im, "nearest_mode", "round_prefer_floor", &nm))
    return -1;
  int nearest = !strcmp(m, "nearest"), linear = !strcmp(m, "linear") || !strcmp(m, "bilinear");
  if (nearest && !strcmp(ct, "asymmetric") && (im->opset < 11 || !strcmp(nm, "floor"))) return *mode = UP_NEAREST, 0;
  if (linear && (!strcmp(ct, "pytorch_half_pixel") || !strcmp(ct, "half_pixel"))) return *mode = UP_BILINEAR, 0;
  return im_error(im, "mode '%s' with coordinate_transformation_mode '%s'%s%s is not supported (nearest: asymmetric, floor; "
                  "linear: half_pixel)", m, ct, nearest ? " and nearest_mode " : "", nearest ? nm : "");
}

static int cv_resize(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0), mode = UP_NEAREST;
  if (x < 0 || resize_mode(im, &mode)) return -1;
  const Shape *xs = shape_of(im, x);
  double sc[4] = {0};
  int n = 0;
  const ImConst *c = NULL;
  int sidx = !strcmp(im->np->op_type, "Upsample") || im->opset < 11 ? 1 : 2;
  if (!strcmp(im->np->op_type, "Upsample") && im->opset < 9) {
    const Onnx__AttributeProto *at = im_attr(im, "scales");
    if (!at || at->n_floats != 4) return im_error(im, "attribute 'scales' of 4 floats is required");
    for (n = 0; n < 4; n++) sc[n] = at->floats[n];
  } else if ((c = im_known_opt(im, sidx)) && c->numel > 0) {
    if (c->numel != 4 || c->dt != DT_F32) return im_error(im, "scales must be 4 floats");
    for (n = 0; n < 4; n++) sc[n] = c->f[n];
  } else if (sidx == 2 && im_in_name(im, 3)) {
    if (!(c = im_known(im, 3, "sizes"))) return -1;
    int64_t sz[4];
    if (im_known_ints(im, c, "sizes", sz, 4) != 4) return im_error(im, "sizes must be 4 integers");
    for (n = 0; n < 4; n++) {
      if (DIM_IS_SYM(xs->d[n]) || xs->rank != 4) sc[n] = n < 2 && sz[n] == 1 ? 1 : -1;
      else sc[n] = sz[n] % xs->d[n] ? -1 : (double)(sz[n] / xs->d[n]);
    }
  } else {
    return im_error(im, "scales or sizes must be given as constants");
  }
  if (sc[0] != 1 || sc[1] != 1 || sc[2] < 1 || sc[3] < 1 || sc[2] != floor(sc[2]) || sc[3] != floor(sc[3]) || sc[2] > 1 << 20 ||
      sc[3] > 1 << 20)
    return im_error(im, "scales [%g, %g, %g, %g] are not supported (1, 1, then positive integers)", sc[0], sc[1], sc[2], sc[3]);
  Attrs a = ir_attrs_default(OP_UPSAMPLE);
  int64_t s2[2] = {(int64_t)sc[2], (int64_t)sc[3]};
  if (im_set_list(im, &a, OP_UPSAMPLE, "scale_factor", s2, 2)) return -1;
  a.upsample.mode = mode;
  return im_set_out(im, 0, im_op(im, OP_UPSAMPLE, &x, 1, &a, 0));
}

/* Pad: pads (and the constant) as attributes before opset 11, then
 * inputs; opset 18's axes input names the padded axes. */
static int cv_pad(Importer *im, const ImOp *row) {
  const char *mode;
  int64_t pads[2 * IR_MAX_RANK], ax[IR_MAX_RANK];
  int np = -1, na = -1;
  double value = 0;
  int x = im_tensor(im, 0);
  if (x < 0 || im_attr_str(im, "mode", "constant", &mode)) return -1;
  int r = shape_of(im, x)->rank;
  if (im->opset < 11) {
    if (im_attr_ints(im, "pads", pads, 2 * IR_MAX_RANK, &np) || im_attr_float(im, "value", 0, &value)) return -1;
  } else {
    const ImConst *c = im_known(im, 1, "pads");
    if (!c || (np = im_known_ints(im, c, "pads", pads, 2 * IR_MAX_RANK)) < 0) return -1;
    if (im_in_name(im, 2) && (!(c = im_known(im, 2, "constant_value")) || known_float(im, c, "constant_value", &value))) return -1;
    if (im_in_name(im, 3) && (!(c = im_known(im, 3, "axes")) || (na = im_known_ints(im, c, "axes", ax, IR_MAX_RANK)) < 0)) return -1;
  }
  int n = na >= 0 ? na : r;
  if (np != 2 * n) return im_error(im, "pads has %d entries; %d axes need %d", np, n, 2 * n);
  int64_t lo[IR_MAX_RANK] = {0}, hi[IR_MAX_RANK] = {0};
  for (int k = 0; k < n; k++) {
    int64_t a = na >= 0 ? im_norm_axis(im, ax[k], r, "axis") : k;
    if (a < 0) return -1;
    if (pads[k] < 0 || pads[n + k] < 0) return im_error(im, "negative pads (cropping) are not supported");
    lo[a] = pads[k], hi[a] = pads[n + k];
  }
  int first = 0;
  while (first < r && !lo[first] && !hi[first]) first++;
  if (first == r) return im_set_out(im, 0, x); /* nothing padded */
  int64_t v[2 * IR_MAX_RANK];
  int nv = 0;
  for (int k = r - 1; k >= first; k--) v[nv++] = lo[k], v[nv++] = hi[k];
  Attrs a = ir_attrs_default(OP_PAD);
  if (im_set_list(im, &a, OP_PAD, "pads", v, nv)) return -1;
  const char *dlmode = !strcmp(mode, "constant") ? "constant" : !strcmp(mode, "reflect") ? "reflect" : !strcmp(mode, "edge") ? "replicate" : NULL;
  if (!dlmode) return im_error(im, "attribute 'mode' = '%s' is not supported (constant, reflect, edge)", mode);
  ir_attr_set_enum(&a, OP_PAD, "mode", dlmode);
  a.pad.value = value;
  return im_set_out(im, 0, im_op(im, OP_PAD, &x, 1, &a, 0));
}

/* --- losses ------------------------------------------------------------------------------------------ */

static int cv_sce_loss(Importer *im, const ImOp *row) {
  const char *red;
  if (im_in_name(im, 2)) return im_error(im, "class weights (input 2) are not supported");
  if (im_attr(im, "ignore_index")) return im_error(im, "attribute 'ignore_index' is not supported");
  if (im_attr_str(im, "reduction", "mean", &red)) return -1;
  Attrs a = ir_attrs_default(OP_CROSS_ENTROPY);
  if (ir_attr_set_enum(&a, OP_CROSS_ENTROPY, "reduction", red)) return im_error(im, "attribute 'reduction' = '%s' is not supported", red);
  int in[2] = {im_tensor(im, 0), im_tensor(im, 1)};
  return im_set_out(im, 0, im_op(im, OP_CROSS_ENTROPY, in, 2, &a, 0));
}

/* --- values: aliases, constants and shapes ------------------------------------------------------------ */

/* Identity and Dropout (inference: every unit kept) pass the value on. */
static int cv_identity(Importer *im, const ImOp *row) {
  if (!strcmp(im->np->op_type, "Dropout") && im->opset >= 12 && im_in_name(im, 2)) {
    const ImConst *t = im_known(im, 2, "training_mode");
    if (!t) return -1;
    if (t->numel != 1 || (t->dt == DT_F32 ? t->f[0] : t->i[0]) != 0)
      return im_error(im, "training_mode must be false (dlc imports inference graphs)");
  }
  const ImConst *c = im_known_opt(im, 0);
  if (c) return im_set_out_known(im, 0, (ImConst *)c);
  return im_set_out(im, 0, im_tensor(im, 0));
}

/* Constant: value (a tensor), value_float(s), value_int(s). */
static int cv_constant(Importer *im, const ImOp *row) {
  if (im->np->n_attribute != 1) return im_error(im, "needs exactly one value attribute");
  const Onnx__AttributeProto *at = im->np->attribute[0];
  const char *name = at->name ? at->name : "";
  ImConst *c = NULL;
  int n = 0;
  if (!strcmp(name, "value") && at->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR && at->t) {
    c = im_tensor_known(im, at->t, arena_printf(im->a, "node %d '%s' (Constant): value", im->ni, im->np->name ? im->np->name : ""));
    if (!c) return -1;
  } else if (!strcmp(name, "value_float") || !strcmp(name, "value_floats")) {
    int one = !strcmp(name, "value_float");
    n = one ? 1 : (int)at->n_floats;
    if (at->type != (one ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS))
      return im_error(im, "attribute '%s' has the wrong type", name);
    c = arena_alloc(im->a, sizeof *c);
    c->dt = DT_F32, c->rank = !one, c->dims[0] = n, c->numel = n;
    c->f = arena_alloc(im->a, (size_t)(n ? n : 1) * sizeof *c->f);
    for (int k = 0; k < n; k++) c->f[k] = one ? at->f : at->floats[k];
  } else if (!strcmp(name, "value_int") || !strcmp(name, "value_ints")) {
    int one = !strcmp(name, "value_int");
    n = one ? 1 : (int)at->n_ints;
    if (at->type != (one ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS))
      return im_error(im, "attribute '%s' has the wrong type", name);
    c = im_known_i64(im, n);
    c->rank = !one;
    for (int k = 0; k < n; k++) c->i[k] = one ? at->i : at->ints[k];
  } else {
    return im_error(im, "attribute '%s' is not supported (value, value_float(s), value_int(s))", name);
  }
  c->frozen = 1;
  return im_set_out_known(im, 0, c);
}

/* Shape: the input's dims (symbols included) from start to end (opset 15). */
static int cv_shape(Importer *im, const ImOp *row) {
  const ImConst *kc = im_known_opt(im, 0);
  Shape s = {0, {0}};
  if (kc) {
    s.rank = kc->rank;
    for (int k = 0; k < kc->rank; k++) s.d[k] = kc->dims[k];
  } else {
    int x = im_tensor(im, 0);
    if (x < 0) return -1;
    s = *shape_of(im, x);
  }
  int64_t start, end;
  if (im_attr_int(im, "start", 0, &start) || im_attr_int(im, "end", s.rank, &end)) return -1;
  start = start < 0 ? start + s.rank : start, end = end < 0 ? end + s.rank : end;
  start = start < 0 ? 0 : start > s.rank ? s.rank : start, end = end < start ? start : end > s.rank ? s.rank : end;
  ImConst *c = im_known_i64(im, (int)(end - start));
  c->sym = arena_alloc(im->a, (size_t)(end - start + 1) * sizeof *c->sym);
  for (int64_t k = start; k < end; k++) {
    Dim d = s.d[k];
    c->i[k - start] = DIM_IS_SYM(d) ? -1 : d, c->sym[k - start] = DIM_IS_SYM(d) ? DIM_SYM_ID(d) : -1;
  }
  return im_set_out_known(im, 0, c);
}

/* Gather: of a known integer vector (axis 0) by known indices, folded (a
 * shape computation); of a tensor, index_select. */
static int cv_gather(Importer *im, const ImOp *row) {
  const ImConst *c = im_known_opt(im, 0), *ix = im_known_opt(im, 1);
  int64_t axis;
  if (im_attr_int(im, "axis", 0, &axis)) return -1;
  if (!c || !ix || c->dt != DT_I64 || c->rank != 1 || ix->dt != DT_I64 || ix->rank > 1 || axis != 0 || ix->numel > 64) {
    int in[2] = {im_tensor(im, 0), im_tensor(im, 1)}; /* a tensor: index_select is Gather */
    Attrs a = ir_attrs_default(OP_INDEX_SELECT);
    a.axis.axis = axis;
    return im_set_out(im, 0, im_op(im, OP_INDEX_SELECT, in, 2, &a, 0));
  }
  ImConst *r = im_known_i64(im, (int)ix->numel);
  r->rank = ix->rank;
  r->sym = arena_alloc(im->a, (size_t)(ix->numel + 1) * sizeof *r->sym);
  for (int k = 0; k < ix->numel; k++) {
    int64_t j = ix->i[k] < 0 ? ix->i[k] + c->numel : ix->i[k];
    if (j < 0 || j >= c->numel) return im_error(im, "index %lld is out of range", (long long)ix->i[k]);
    r->i[k] = c->i[j], r->sym[k] = c->sym ? c->sym[j] : -1;
  }
  return im_set_out_known(im, 0, r);
}

/* Cast: known values change type; a tensor only to its own type. */
static int cv_cast(Importer *im, const ImOp *row) {
  int64_t to;
  if (im_attr_int(im, "to", 0, &to)) return -1;
  if (to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL && !im_known_opt(im, 0)) { /* dlc's bools are f32 0 and 1: x != 0 */
    int x = im_tensor(im, 0);
    if (x < 0) return -1;
    if (im->g->nodes[x].dtype != DT_F32) return im_error(im, "a cast to BOOL of a %s tensor is not supported", rt_dtype_name(im->g->nodes[x].dtype));
    return im_set_out(im, 0, bin(im, OP_NE, x, konst(im, 0), 0));
  }
  DType dt = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? DT_F32
             : to == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || to == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? DT_I64
                                                                                                     : DT_COUNT;
  const ImConst *c = im_known_opt(im, 0);
  if (c && to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL) { /* 0/1 floats */
    if (c->sym) return im_error(im, "a cast of a symbolic dimension to BOOL is not supported");
    ImConst *r = arena_alloc(im->a, sizeof *r);
    *r = *c;
    r->dt = DT_F32, r->i = NULL, r->f = arena_alloc(im->a, (size_t)(c->numel + 1) * sizeof *r->f);
    for (int64_t k = 0; k < c->numel; k++) r->f[k] = c->dt == DT_F32 ? c->f[k] != 0 : c->i[k] != 0;
    return im_set_out_known(im, 0, r);
  }
  if (c && dt != DT_COUNT) {
    if (c->dt == dt) return im_set_out_known(im, 0, (ImConst *)c);
    if (c->sym) return im_error(im, "a cast of a symbolic dimension to float is not supported");
    ImConst *r = arena_alloc(im->a, sizeof *r);
    *r = *c;
    r->dt = dt;
    if (dt == DT_F32) r->f = arena_alloc(im->a, (size_t)(c->numel + 1) * sizeof *r->f), r->i = NULL;
    else r->i = arena_alloc(im->a, (size_t)(c->numel + 1) * sizeof *r->i), r->f = NULL;
    for (int64_t k = 0; k < c->numel; k++) {
      if (dt == DT_F32) r->f[k] = (float)c->i[k];
      else if (!(fabsf(c->f[k]) < 9.2e18f)) return im_error(im, "value %g does not fit an integer", c->f[k]);
      else r->i[k] = (int64_t)c->f[k];
    }
    return im_set_out_known(im, 0, r);
  }
  int x = c ? -1 : im_tensor(im, 0);
  if (x >= 0 && dt == im->g->nodes[x].dtype) return im_set_out(im, 0, x);
  if (x < 0 && !c) return -1;
  return im_error(im, "a cast to %lld of a run-time tensor is not supported", (long long)to);
}

/* GatherElements: torch.gather, dlc's gather. */
static int cv_gather_elements(Importer *im, const ImOp *row) {
  int64_t axis;
  if (im_attr_int(im, "axis", 0, &axis)) return -1;
  int in[2] = {im_tensor(im, 0), im_tensor(im, 1)};
  Attrs a = ir_attrs_default(OP_GATHER);
  a.axis.axis = axis;
  return im_set_out(im, 0, im_op(im, OP_GATHER, in, 2, &a, 0));
}

/* Size: the input's element count, known at import time. */
static int cv_size(Importer *im, const ImOp *row) {
  const ImConst *kc = im_known_opt(im, 0);
  int x = kc ? -1 : im_tensor(im, 0);
  if (!kc && x < 0) return -1;
  ImConst *c = im_known_i64(im, 1);
  c->rank = 0, c->i[0] = 1;
  const Shape *xs = kc ? NULL : shape_of(im, x);
  for (int k = 0; k < (kc ? kc->rank : xs->rank); k++) {
    Dim d = kc ? kc->dims[k] : xs->d[k];
    if (DIM_IS_SYM(d)) return im_error(im, "the size of a tensor with a symbolic dimension is known only at run time");
    c->i[0] *= d;
  }
  return im_set_out_known(im, 0, c);
}

/* The part sizes of Split along an axis of extent n into nout parts:
 * the split input (opset 13) or attribute, else equal parts (the last
 * smaller, opset 18). */
static int split_sizes(Importer *im, int64_t n, int nout, int64_t *sz) {
  int ns = -1;
  if (im->opset < 13) {
    if (im_attr_ints(im, "split", sz, ONNX_MAX_NODE_IO, &ns)) return -1;
  } else if (im_in_name(im, 1)) {
    const ImConst *c = im_known(im, 1, "split");
    if (!c || (ns = im_known_ints(im, c, "split", sz, ONNX_MAX_NODE_IO)) < 0) return -1;
  }
  if (ns >= 0) {
    int64_t total = 0;
    for (int k = 0; k < ns; k++) total += sz[k];
    if (ns != nout || total != n) return im_error(im, "split sizes do not add up to the axis (%lld) in %d parts", (long long)n, nout);
    return 0;
  }
  int64_t part = (n + nout - 1) / nout;
  for (int k = 0; k < nout; k++) sz[k] = k < nout - 1 ? part : n - part * (nout - 1);
  if (sz[nout - 1] <= 0) return im_error(im, "cannot split %lld into %d parts", (long long)n, nout);
  return 0;
}

/* Split: one slice per output. */
static int cv_split(Importer *im, const ImOp *row) {
  int64_t axis, nattr, *sz = arena_alloc(im->a, ONNX_MAX_NODE_IO * sizeof *sz);
  int x = im_tensor(im, 0), nout = (int)im->np->n_output;
  if (x < 0 || im_attr_int(im, "axis", 0, &axis) || im_attr_int(im, "num_outputs", nout, &nattr)) return -1;
  const Shape *xs = shape_of(im, x);
  if ((axis = im_norm_axis(im, axis, xs->rank, "axis")) < 0) return -1;
  if (DIM_IS_SYM(xs->d[axis])) return im_error(im, "splitting a symbolic dimension is not supported");
  if (split_sizes(im, xs->d[axis], nout, sz)) return -1;
  for (int k = 0, at = 0; k < nout; at += (int)sz[k], k++) {
    Attrs a = ir_attrs_default(OP_SLICE);
    a.axis.axis = axis, a.axis.start = at, a.axis.end = at + sz[k], a.axis.step = 1;
    if (*im->np->output[k] && im_set_out(im, k, im_op(im, OP_SLICE, &x, 1, &a, k))) return -1;
  }
  return 0;
}

/* DepthToSpace (DCR, CRD) and SpaceToDepth: a reshape to rank 6, a
 * transpose, a reshape back. */
static int cv_depth_space(Importer *im, const ImOp *row) {
  int64_t b;
  const char *mode;
  int x = im_tensor(im, 0), to_space = !strcmp(im->np->op_type, "DepthToSpace");
  if (x < 0 || im_attr_int(im, "blocksize", 0, &b) || im_attr_str(im, "mode", "DCR", &mode)) return -1;
  const Shape *xs = shape_of(im, x);
  if (xs->rank != 4 || DIM_IS_SYM(xs->d[1]) || DIM_IS_SYM(xs->d[2]) || DIM_IS_SYM(xs->d[3]) || b < 1)
    return im_error(im, "needs a rank-4 input with known C, H, W and a positive blocksize");
  Dim n = xs->d[0], c = xs->d[1], h = xs->d[2], w = xs->d[3];
  int crd = to_space && !strcmp(mode, "CRD");
  if (to_space && !crd && strcmp(mode, "DCR")) return im_error(im, "attribute 'mode' = '%s' is not supported (DCR, CRD)", mode);
  if (to_space ? c % (b * b) : h % b || w % b) return im_error(im, "the blocksize %lld does not divide the input", (long long)b);
  Dim d6[6] = {n, b, b, c / (b * b), h, w}, dc[6] = {n, c / (b * b), b, b, h, w}, ds[6] = {n, c, h / b, b, w / b, b};
  int64_t p_dcr[6] = {0, 3, 4, 1, 5, 2}, p_crd[6] = {0, 1, 4, 2, 5, 3}, p_s2d[6] = {0, 3, 5, 1, 2, 4};
  Dim out[4] = {n, to_space ? c / (b * b) : c * b * b, to_space ? h * b : h / b, to_space ? w * b : w / b};
  int y = im_reshape_to(im, x, !to_space ? ds : crd ? dc : d6, 6, -1);
  Attrs a = ir_attrs_default(OP_TRANSPOSE);
  if (y < 0 || im_set_list(im, &a, OP_TRANSPOSE, "perm", !to_space ? p_s2d : crd ? p_crd : p_dcr, 6)) return -1;
  y = im_op(im, OP_TRANSPOSE, &y, 1, &a, -1);
  return im_set_out(im, 0, y < 0 ? -1 : im_reshape_to(im, y, out, 4, 0));
}

/* ConstantOfShape: a known shape filled with the value attribute (a
 * one-element tensor; 0.0 by default). */
static int cv_constant_of_shape(Importer *im, const ImOp *row) {
  const ImConst *sh = im_known(im, 0, "shape");
  int64_t d[IR_MAX_RANK];
  int n = sh ? im_known_ints(im, sh, "shape", d, IR_MAX_RANK) : -1;
  if (n < 0) return -1;
  const Onnx__AttributeProto *at = im_attr(im, "value");
  const ImConst *v = at && at->t ? im_tensor_known(im, at->t, "attribute 'value'") : NULL;
  if (at && (!v || v->numel != 1)) return v ? im_error(im, "attribute 'value' must hold one element") : -1;
  int64_t numel = 1;
  for (int k = 0; k < n; k++) {
    if (d[k] < 0 || ir_ckd_mul(&numel, numel, d[k]) || numel > (1 << 24)) return im_error(im, "the shape is too large or negative");
  }
  ImConst *c = arena_alloc(im->a, sizeof *c);
  c->dt = v ? v->dt : DT_F32, c->rank = n, c->numel = numel, c->frozen = 1;
  memcpy(c->dims, d, (size_t)n * sizeof *d);
  if (c->dt == DT_F32) c->f = arena_alloc(im->a, (size_t)(numel + 1) * sizeof *c->f);
  else c->i = arena_alloc(im->a, (size_t)(numel + 1) * sizeof *c->i);
  for (int64_t e = 0; e < numel; e++) {
    if (c->dt == DT_F32) c->f[e] = v ? v->f[0] : 0;
    else c->i[e] = v->i[0];
  }
  return im_set_out_known(im, 0, c);
}

/* Trilu with upper = 0: dlc's tril from diagonal k (a constant, 0 when
 * absent).  The upper triangle (upper = 1, the default) has no exact form
 * in dlc (x - tril(x, k - 1) turns an infinity into NaN) and is refused. */
static int cv_trilu(Importer *im, const ImOp *row) {
  (void)row;
  int64_t upper, k = 0;
  if (im_attr_int(im, "upper", 1, &upper)) return -1;
  if (upper != 0) return im_error(im, "attribute 'upper' = %lld: only the lower triangle (upper = 0) is supported", (long long)upper);
  if (im_in_name(im, 1)) {
    const ImConst *kc = im_known(im, 1, "k");
    if (!kc) return -1;
    if (kc->dt != DT_I64 || kc->numel != 1 || kc->sym) return im_error(im, "input 1 (k) must be one integer");
    k = kc->i[0];
  }
  Attrs a = ir_attrs_default(OP_TRIL);
  a.scalar.mode = k;
  a.scalar.f = 0;
  int x = im_tensor(im, 0);
  return im_set_out(im, 0, x < 0 ? -1 : im_op(im, OP_TRIL, &x, 1, &a, -1));
}

/* Expand of a constant (PyTorch writes a recurrent layer's zero initial
 * states so): the value broadcast to the shape, numpy's bidirectional
 * rule, folded at import.  Expand of a value computed at run time is
 * refused (dlc has no broadcast op of its own). */
static int cv_expand(Importer *im, const ImOp *row) {
  (void)row;
  const ImConst *x = im_known(im, 0, "input");
  const ImConst *sh = x ? im_known(im, 1, "shape") : NULL;
  int64_t d[IR_MAX_RANK];
  int n = sh ? im_known_ints(im, sh, "shape", d, IR_MAX_RANK) : -1;
  if (n < 0) return -1;
  if (x->sym) return im_error(im, "input 0 (input) holds a symbolic dimension");
  int rank = n > x->rank ? n : x->rank;
  int64_t out[IR_MAX_RANK], numel = 1;
  for (int k = 0; k < rank; k++) {
    int64_t a = k - (rank - x->rank) >= 0 ? x->dims[k - (rank - x->rank)] : 1;
    int64_t b = k - (rank - n) >= 0 ? d[k - (rank - n)] : 1;
    if (a != b && a != 1 && b != 1) return im_error(im, "shape entry %d (%lld) does not broadcast with the input's %lld", k, (long long)b, (long long)a);
    out[k] = a == 1 ? b : a;
    if (out[k] < 0 || ir_ckd_mul(&numel, numel, out[k]) || numel > (1 << 24)) return im_error(im, "the shape is too large or negative");
  }
  ImConst *c = arena_alloc(im->a, sizeof *c);
  c->dt = x->dt, c->rank = rank, c->numel = numel, c->frozen = x->frozen;
  memcpy(c->dims, out, (size_t)rank * sizeof *out);
  if (c->dt == DT_F32) c->f = arena_alloc(im->a, (size_t)(numel + 1) * sizeof *c->f);
  else c->i = arena_alloc(im->a, (size_t)(numel + 1) * sizeof *c->i);
  for (int64_t e = 0; e < numel; e++) { /* the source element of e: each index modulo the input's dim */
    int64_t rest = e, src = 0, stride = 1;
    for (int k = rank - 1; k >= 0; k--) {
      int64_t idx = rest % out[k];
      rest /= out[k];
      int kx = k - (rank - x->rank);
      if (kx >= 0) {
        src += (x->dims[kx] == 1 ? 0 : idx) * stride;
        stride *= x->dims[kx];
      }
    }
    if (c->dt == DT_F32) c->f[e] = x->f[src];
    else c->i[e] = x->i[src];
  }
  return im_set_out_known(im, 0, c);
}

/* --- the table ------------------------------------------------------------------------------------- */

#define UN(type, op) {type, cv_unary, OP_##op, 1, ""}
static const ImOp im_ops[] = {
    UN("Neg", NEG), UN("Abs", ABS), UN("Exp", EXP), UN("Log", LOG), UN("Sqrt", SQRT), UN("Relu", RELU),
    UN("Sigmoid", SIGMOID), UN("Tanh", TANH), UN("Erf", ERF), UN("Softplus", SOFTPLUS), UN("HardSwish", HARDSWISH),
    UN("Sin", SIN), UN("Cos", COS), UN("Tan", TAN), UN("Asin", ASIN), UN("Acos", ACOS), UN("Atan", ATAN),
    UN("Floor", FLOOR), UN("Ceil", CEIL), UN("Round", ROUND),
    UN("GlobalAveragePool", GLOBAL_AVG_POOL),
    {"Add", cv_binary, OP_ADD, 2, ""},
    {"Sub", cv_binary, OP_SUB, 2, ""},
    {"Mul", cv_binary, OP_MUL, 2, ""},
    {"Div", cv_binary, OP_DIV, 2, ""},
    {"Max", cv_binary, OP_MAXIMUM, ONNX_MAX_NODE_IO, ""},
    {"Min", cv_binary, OP_MINIMUM, ONNX_MAX_NODE_IO, ""},
    {"Sum", cv_binary, OP_ADD, ONNX_MAX_NODE_IO, ""},
    {"Pow", cv_pow, OP_POW, 2, ""},
    {"MatMul", cv_binary, OP_MATMUL, 2, ""},
    {"LeakyRelu", cv_scalar_attr, OP_LEAKY_RELU, 1, "alpha"},
    {"Elu", cv_scalar_attr, OP_ELU, 1, "alpha"},
    {"Selu", cv_selu, OP_SELU, 1, "alpha gamma"},
    {"HardSigmoid", cv_hardsigmoid, OP_HARDSIGMOID, 1, "alpha beta"},
    {"Clip", cv_clip, OP_CLAMP, 3, "min max"},
    {"Gemm", cv_gemm, OP_LINEAR, 3, "alpha beta transA transB"},
    {"Softmax", cv_softmax, OP_SOFTMAX, 1, "axis"},
    {"LogSoftmax", cv_softmax, OP_LOG_SOFTMAX, 1, "axis"},
    {"Reshape", cv_reshape, OP_RESHAPE, 2, "allowzero"},
    {"Flatten", cv_flatten, OP_FLATTEN, 1, "axis"},
    {"Transpose", cv_transpose, OP_TRANSPOSE, 1, "perm"},
    {"Concat", cv_concat, OP_CONCAT, ONNX_MAX_NODE_IO, "axis"},
    {"Slice", cv_slice, OP_SLICE, 5, "starts ends axes"},
    {"Squeeze", cv_squeeze, OP_FLATTEN, 2, "axes"},
    {"Unsqueeze", cv_squeeze, OP_RESHAPE, 2, "axes"},
    {"ReduceSum", cv_reduce, OP_SUM, 2, "axes keepdims noop_with_empty_axes"},
    {"ReduceMean", cv_reduce, OP_MEAN, 2, "axes keepdims noop_with_empty_axes"},
    {"ReduceMax", cv_reduce, OP_MAX, 2, "axes keepdims noop_with_empty_axes"},
    {"Conv", cv_conv, OP_CONV2D, 3, "auto_pad dilations group kernel_shape pads strides"},
    {"ConvTranspose", im_cv_conv_transpose, OP_CONV_TRANSPOSE2D, 3, "auto_pad dilations group kernel_shape pads strides output_padding output_shape"},
    {"MaxPool", cv_pool, OP_MAX_POOL2D, 1, "auto_pad ceil_mode dilations kernel_shape pads storage_order strides"},
    {"AveragePool", cv_pool, OP_AVG_POOL2D, 1, "auto_pad ceil_mode count_include_pad kernel_shape pads strides"},
    {"BatchNormalization", cv_batchnorm, OP_BATCHNORM, 5, "epsilon momentum spatial training_mode"},
    {"Resize", cv_resize, OP_UPSAMPLE, 4, "mode coordinate_transformation_mode nearest_mode cubic_coeff_a exclude_outside extrapolation_value"},
    {"Upsample", cv_resize, OP_UPSAMPLE, 2, "mode scales"},
    {"Pad", cv_pad, OP_PAD, 4, "mode pads value"},
    {"SoftmaxCrossEntropyLoss", cv_sce_loss, OP_CROSS_ENTROPY, 3, "reduction ignore_index"},
    {"ReduceMin", cv_reduce, OP_MAX, 2, "axes keepdims noop_with_empty_axes"},
    {"ReduceSumSquare", cv_reduce, OP_SUM, 2, "axes keepdims noop_with_empty_axes"},
    {"ReduceL1", cv_reduce, OP_SUM, 2, "axes keepdims noop_with_empty_axes"},
    {"ReduceL2", cv_reduce, OP_SUM, 2, "axes keepdims noop_with_empty_axes"},
    {"ReduceLogSum", cv_reduce, OP_SUM, 2, "axes keepdims noop_with_empty_axes"},
    {"ReduceLogSumExp", cv_reduce, OP_SUM, 2, "axes keepdims noop_with_empty_axes"},
    {"ReduceProd", im_cv_reduce_prod, OP_MUL, 2, "axes keepdims noop_with_empty_axes"},
    {"Hardmax", im_cv_hardmax, OP_EQ, 1, "axis"},
    {"MeanVarianceNormalization", im_cv_mvn, OP_MEAN, 1, "axes"},
    {"GridSample", im_cv_grid_sample, OP_MATMUL, 2, "align_corners mode padding_mode"},
    {"RNN", im_cv_recurrent, OP_LINEAR, 6, "activations clip direction hidden_size layout"},
    {"GRU", im_cv_recurrent, OP_LINEAR, 6, "activations clip direction hidden_size layout linear_before_reset"},
    {"LSTM", im_cv_recurrent, OP_LINEAR, 8, "activations clip direction hidden_size layout input_forget"},
    {"LayerNormalization", cv_layernorm, OP_MEAN, 3, "axis epsilon stash_type"},
    {"InstanceNormalization", cv_instancenorm, OP_MEAN, 3, "epsilon"},
    {"GlobalMaxPool", cv_global_max_pool, OP_MAX, 1, ""},
    {"LRN", cv_lrn, OP_AVG_POOL2D, 1, "alpha beta bias size"},
    {"Reciprocal", cv_reciprocal, OP_DIV, 1, ""},
    {"Softsign", cv_softsign, OP_DIV, 1, ""},
    {"Not", cv_not, OP_SUB, 1, ""},
    {"Sign", cv_sign, OP_WHERE, 1, ""},
    {"Mean", cv_mean, OP_ADD, ONNX_MAX_NODE_IO, ""},
    {"Sinh", cv_hyperbolic, OP_EXP, 1, ""},
    {"Cosh", cv_hyperbolic, OP_EXP, 1, ""},
    {"Asinh", cv_hyperbolic, OP_LOG, 1, ""},
    {"Acosh", cv_hyperbolic, OP_LOG, 1, ""},
    {"Atanh", cv_hyperbolic, OP_LOG, 1, ""},
    {"ThresholdedRelu", cv_thresholded_relu, OP_WHERE, 1, "alpha"},
    {"Shrink", cv_shrink, OP_WHERE, 1, "bias lambd"},
    {"Celu", cv_celu, OP_ELU, 1, "alpha"},
    {"PRelu", cv_prelu, OP_WHERE, 2, ""},
    {"Where", cv_where, OP_WHERE, 3, ""},
    {"IsNaN", cv_isnan, OP_NE, 1, ""},
    {"Scan", cv_scan, OP_SCAN, 64 + 32, "body num_scan_inputs scan_input_axes scan_input_directions scan_output_axes scan_output_directions"},
    {"Equal", cv_binary, OP_EQ, 2, ""},
    {"Less", cv_binary, OP_LT, 2, ""},
    {"LessOrEqual", cv_binary, OP_LE, 2, ""},
    {"Greater", cv_binary, OP_GT, 2, ""},
    {"GreaterOrEqual", cv_binary, OP_GE, 2, ""},
    {"And", cv_binary, OP_MUL, 2, ""},
    {"Or", cv_binary, OP_MAXIMUM, 2, ""},
    {"Xor", cv_binary, OP_NE, 2, ""},
    {"GatherElements", cv_gather_elements, OP_GATHER, 2, "axis"},
    {"Size", cv_size, OP_INPUT, 1, ""},
    {"ConstantOfShape", cv_constant_of_shape, OP_INPUT, 1, "value"},
    {"Expand", cv_expand, OP_INPUT, 2, ""},
    {"Trilu", cv_trilu, OP_TRIL, 2, "upper"},
    {"Split", cv_split, OP_SLICE, 2, "axis split num_outputs"},
    {"DepthToSpace", cv_depth_space, OP_TRANSPOSE, 1, "blocksize mode"},
    {"SpaceToDepth", cv_depth_space, OP_TRANSPOSE, 1, "blocksize"},
    {"Identity", cv_identity, OP_DROPOUT, 1, ""},
    {"Dropout", cv_identity, OP_DROPOUT, 3, "ratio seed"},
    {"Constant", cv_constant, OP_CONST, 0, "value value_float value_floats value_int value_ints"},
    {"Shape", cv_shape, OP_INPUT, 1, "start end"},
    {"Gather", cv_gather, OP_INPUT, 2, "axis"},
    {"Cast", cv_cast, OP_INPUT, 1, "to saturate"},
};
#undef UN

/* Whether word is one of the space-separated words of list. */
static int in_list(const char *list, const char *word) {
  size_t n = strlen(word);
  for (const char *p = list; *p;) {
    size_t k = strcspn(p, " ");
    if (k == n && !strncmp(p, word, n)) return 1;
    p += k + (p[k] == ' ');
  }
  return 0;
}

int im_convert_node(Importer *im) {
  const Onnx__NodeProto *np = im->np;
  const char *dom = np->domain ? np->domain : "";
  if (*dom && strcmp(dom, "ai.onnx")) return im_error(im, "ops of domain '%s' are not supported", dom);
  const ImOp *row = NULL;
  for (size_t i = 0; i < sizeof im_ops / sizeof *im_ops && !row; i++)
    if (np->op_type && !strcmp(np->op_type, im_ops[i].type)) row = &im_ops[i];
  if (!row) return im_error(im, "op '%s' is not supported by dlc's ONNX import", np->op_type ? np->op_type : "");
  for (size_t i = 0; i < np->n_attribute; i++) {
    const char *a = np->attribute[i]->name ? np->attribute[i]->name : "";
    if (!in_list(row->attrs, a)) return im_error(im, "attribute '%s' is not supported", a);
  }
  if (im_nin(im) > row->max_in) return im_error(im, "has %d inputs; dlc reads at most %d", im_nin(im), row->max_in);
  size_t used = 0;
  for (size_t k = 0; k < np->n_output; k++) used += np->output[k] && *np->output[k];
  if (!used) return im_error(im, "has no output");
  return row->fn(im, row);
}
