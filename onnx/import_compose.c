/*
 * import_compose.c — ONNX operators that dlc has no single op for, each
 * built from several dlc ops whose composition computes the same values
 * (not an approximation of them):
 *
 *   ReduceProd   the product along each reduced axis as a chain of muls of
 *                its one-element slices (the extents are known and small);
 *   Hardmax      1 at the first maximum along the axis: the positions where
 *                x equals its max, weighted n, n-1, ..., 1 by position (a
 *                frozen param), and the first is the largest weight;
 *   MeanVarianceNormalization  ONNX's own function body, (x - E[x]) /
 *                (sqrt(E[x^2] - E[x]^2) + 1e-9) over the axes.
 *
 * Each reads its attributes with the defaults of the node's opset and
 * refuses, naming the node, what it cannot build exactly.
 */
#include <string.h>

#include "onnx/import_ops.h"

int im_slice(Importer *im, int x, int axis, int64_t start, int64_t end, int k) {
  Attrs a = ir_attrs_default(OP_SLICE);
  a.axis.axis = axis, a.axis.start = start, a.axis.end = end, a.axis.step = 1;
  return x < 0 ? -1 : im_op(im, OP_SLICE, &x, 1, &a, k);
}

/* --- ReduceProd ----------------------------------------------------------------------------------- */

#define PROD_MAX_EXTENT 256

/* The product of x along axis, kept as an axis of extent 1. */
static int prod_along(Importer *im, int x, int axis) {
  Dim n = shape_of(im, x)->d[axis];
  if (DIM_IS_SYM(n) || n > PROD_MAX_EXTENT)
    return im_error(im, "a product over an axis of %s extent is not supported (known, at most %d)",
                    DIM_IS_SYM(n) ? "symbolic" : "larger", PROD_MAX_EXTENT);
  int acc = im_slice(im, x, axis, 0, 1, -1);
  for (int64_t j = 1; j < n && acc >= 0; j++) acc = bin(im, OP_MUL, acc, im_slice(im, x, axis, j, j + 1, -1), -1);
  return acc;
}

int im_cv_reduce_prod(Importer *im, const ImOp *row) {
  int64_t ax[IR_MAX_RANK], keep, noop;
  int na, red[IR_MAX_RANK] = {0};
  if (im_reduce_attrs(im, ax, &na, &keep, &noop)) return -1;
  int x = im_tensor(im, 0);
  if (x < 0) return -1;
  if (na <= 0 && noop) return im_set_out(im, 0, x);
  int r = shape_of(im, x)->rank;
  for (int k = 0; k < (na > 0 ? na : r); k++) {
    int64_t a = na > 0 ? im_norm_axis(im, ax[k], r, "axis") : k;
    if (a < 0) return -1;
    red[a] = 1;
  }
  int y = x;
  for (int a = 0; a < r && y >= 0; a++)
    if (red[a]) y = prod_along(im, y, a);
  if (y < 0) return -1;
  Dim d[IR_MAX_RANK];
  int nd = 0;
  for (int a = 0; a < r; a++)
    if (keep || !red[a]) d[nd++] = shape_of(im, y)->d[a];
  return im_set_out(im, 0, im_reshape_to(im, y, d, nd, 0));
}

/* --- Hardmax -------------------------------------------------------------------------------------- */

/* The weights n, n-1, ..., 1 along axis of a rank-r tensor, as a frozen
 * [n, 1, ..., 1] param (rank r - axis) that broadcasts against it. */
static int position_weights(Importer *im, int64_t n, int axis, int r) {
  int64_t dims[IR_MAX_RANK];
  float *w = arena_alloc(im->a, (size_t)n * sizeof *w);
  for (int64_t j = 0; j < n; j++) w[j] = (float)(n - j);
  dims[0] = n;
  for (int k = 1; k < r - axis; k++) dims[k] = 1;
  return im_frozen_param(im, "positions", r - axis, dims, w);
}

/* 1 at the first maximum of x along axis, 0 elsewhere (output k). */
static int hardmax_along(Importer *im, int x, int axis, int k) {
  const Shape *xs = shape_of(im, x);
  Dim n = xs->d[axis];
  if (DIM_IS_SYM(n) || n > (1 << 24)) return im_error(im, "the axis must have a known extent of at most 2^24");
  int64_t ax = axis;
  int at_max = bin(im, OP_EQ, x, im_reduce_over(im, OP_MAX, x, &ax, 1, 1, -1), -1);
  int weighted = bin(im, OP_MUL, at_max, position_weights(im, n, axis, xs->rank), -1);
  return bin(im, OP_EQ, weighted, im_reduce_over(im, OP_MAX, weighted, &ax, 1, 1, -1), k);
}

/* Hardmax: along axis (default -1) from opset 13; before, over the 2-D
 * view [d0 ... d(axis-1), d(axis) ...] (axis default 1), as Softmax. */
int im_cv_hardmax(Importer *im, const ImOp *row) {
  int64_t axis;
  int x = im_tensor(im, 0);
  if (x < 0 || im_attr_int(im, "axis", im->opset >= 13 ? -1 : 1, &axis)) return -1;
  Shape xs = *shape_of(im, x);
  if ((axis = im_norm_axis(im, axis, xs.rank, "axis")) < 0) return -1;
  if (im->opset >= 13 || axis == xs.rank - 1) return im_set_out(im, 0, hardmax_along(im, x, (int)axis, 0));
  Dim d[2] = {1, 1};
  for (int k = 0; k < xs.rank; k++) {
    if (DIM_IS_SYM(xs.d[k])) return im_error(im, "Hardmax before opset 13 over an input with a symbolic dimension is not supported");
    d[k >= axis] *= xs.d[k];
  }
  int y = hardmax_along(im, im_reshape_to(im, x, d, 2, -1), 1, -1);
  return im_set_out(im, 0, y < 0 ? -1 : im_reshape_to(im, y, xs.d, xs.rank, 0));
}

/* --- MeanVarianceNormalization ----------------------------------------------------------------------- */

int im_cv_mvn(Importer *im, const ImOp *row) {
  int64_t ax[IR_MAX_RANK] = {0, 2, 3};
  int na;
  int x = im_tensor(im, 0);
  if (x < 0 || im_attr_ints(im, "axes", ax, IR_MAX_RANK, &na)) return -1;
  if (na < 0) na = 3;
  int mean = im_reduce_over(im, OP_MEAN, x, ax, na, 1, -1);
  int mean_sq = im_reduce_over(im, OP_MEAN, bin(im, OP_MUL, x, x, -1), ax, na, 1, -1);
  int var = bin(im, OP_SUB, mean_sq, bin(im, OP_MUL, mean, mean, -1), -1);
  int sd = bin(im, OP_ADD, un(im, OP_SQRT, var, -1), konst(im, 1e-9), -1);
  return im_set_out(im, 0, bin(im, OP_DIV, bin(im, OP_SUB, x, mean, -1), sd, 0));
}
