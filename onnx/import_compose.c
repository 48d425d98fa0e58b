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
 *                (sqrt(E[x^2] - E[x]^2) + 1e-9) over the axes;
 *   MaxPool, AveragePool over 1 or 3 spatial axes or with pads over half
 *                the kernel: one 2-D pool per axis of an [N, A, L, B] view
 *                (a box window is separable), the padding dlc's pools do
 *                not take padded explicitly;
 *   ConvTranspose 1-D as 2-D with a unit height; output_shape and auto_pad
 *                SAME as the pads and output padding they stand for.
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

/* --- pooling over any number of spatial axes ------------------------------------------------------------ */

/* One spatial axis of a pooling window. */
typedef struct PoolAxis {
  int64_t k, s, d, lo, hi;
} PoolAxis;

typedef struct PoolSpec {
  int max, ceil, cip;
  int sp;
  PoolAxis ax[IR_MAX_RANK];
} PoolSpec;

/* dlc's pools take a padding of at most half the (dilated) kernel, as
 * PyTorch's; the rest is padded explicitly. */
static int64_t pool_inner_pad(const PoolSpec *ps, const PoolAxis *p, int64_t pad) {
  int64_t eff = ps->max ? p->d * (p->k - 1) + 1 : p->k;
  return pad <= eff / 2 ? pad : eff / 2;
}

/* A 2-D pool of the [N, A, L, B] view over L: kernel [k, 1]. */
static int pool_2d(Importer *im, int v, const PoolSpec *ps, const PoolAxis *p, int64_t lo, int64_t hi, int cip) {
  OpKind op = ps->max ? OP_MAX_POOL2D : OP_AVG_POOL2D;
  Attrs a = ir_attrs_default(op);
  int64_t kernel[2] = {p->k, 1}, stride[2] = {p->s, 1}, dil[2] = {p->d, 1}, pad[4] = {lo, hi, 0, 0};
  if (im_set_list(im, &a, op, "kernel", kernel, 2) || im_set_list(im, &a, op, "stride", stride, 2) ||
      im_set_list(im, &a, op, "padding", pad, 4) || (ps->max && im_set_list(im, &a, op, "dilation", dil, 2)))
    return -1;
  a.window.ceil_mode = ps->ceil, a.window.count_include_pad = cip;
  return v < 0 ? -1 : im_op(im, op, &v, 1, &a, -1);
}

/* v [N, A, L, B] padded along L by lo and hi: zeros (avg), or the edge
 * value (max: a window that reaches past the inner padding holds the edge
 * element, which the copy does not change the maximum of). */
static int pad_axis(Importer *im, int v, int64_t lo, int64_t hi, int edge) {
  if (!lo && !hi) return v;
  Attrs a = ir_attrs_default(OP_PAD);
  int64_t pads[4] = {0, 0, lo, hi};
  if (v < 0 || im_set_list(im, &a, OP_PAD, "pads", pads, 4)) return -1;
  if (edge) ir_attr_set_enum(&a, OP_PAD, "mode", "replicate");
  return im_op(im, OP_PAD, &v, 1, &a, -1);
}

/* Average pooling over L without counting padding, when the padding
 * passes dlc's: the sums of the zero-padded input over the sums of the
 * zero-padded ones [L] (both as averages with the padding counted). */
static int avg_uncounted(Importer *im, int v, const PoolSpec *ps, const PoolAxis *p, int64_t L) {
  float *ones = arena_alloc(im->a, (size_t)L * sizeof *ones);
  for (int64_t j = 0; j < L; j++) ones[j] = 1;
  int64_t dims[4] = {1, 1, L, 1};
  int m = im_frozen_param(im, "ones", 4, dims, ones);
  int sx = pool_2d(im, pad_axis(im, v, p->lo, p->hi, 0), ps, p, 0, 0, 1);
  int sm = pool_2d(im, pad_axis(im, m, p->lo, p->hi, 0), ps, p, 0, 0, 1);
  return bin(im, OP_DIV, sx, sm, -1);
}

/* x pooled along spatial axis i (axis 2 + i) through the [N, A, L, B]
 * view, as output k (intermediate when k < 0). */
static int pool_along(Importer *im, int x, const PoolSpec *ps, int i, int k) {
  const Shape *xs = shape_of(im, x);
  const PoolAxis *p = &ps->ax[i];
  int axis = 2 + i, r = xs->rank;
  Dim v4[4] = {xs->d[0], 1, xs->d[axis], 1};
  for (int j = 1; j < r; j++) {
    if (DIM_IS_SYM(xs->d[j])) return im_error(im, "pooling needs known channel and spatial extents");
    if (j < axis) v4[1] *= xs->d[j];
    else if (j > axis) v4[3] *= xs->d[j];
  }
  int64_t lo = pool_inner_pad(ps, p, p->lo), hi = pool_inner_pad(ps, p, p->hi);
  if ((p->lo > lo || p->hi > hi) && ps->max && (p->d != 1 || p->lo >= p->k || p->hi >= p->k))
    return im_error(im, "max pooling with pads over half the kernel needs dilation 1 and pads smaller than the kernel");
  int v = im_reshape_to(im, x, v4, 4, -1), y;
  if ((p->lo > lo || p->hi > hi) && !ps->max && !ps->cip) y = avg_uncounted(im, v, ps, p, xs->d[axis]);
  else y = pool_2d(im, pad_axis(im, v, p->lo - lo, p->hi - hi, ps->max), ps, p, lo, hi, ps->cip);
  if (y < 0) return -1;
  Shape out = *xs;
  out.d[axis] = shape_of(im, y)->d[2];
  return im_reshape_to(im, y, out.d, r, k);
}

/* The window of a MaxPool or AveragePool over sp spatial axes; false
 * (0) when an attribute is absent that the form needs. */
static int pool_spec(Importer *im, int sp, PoolSpec *ps) {
  int64_t v[2 * IR_MAX_RANK], ceil = 0, cip = 0;
  int n;
  const char *autopad;
  ps->sp = sp;
  if (im_attr_str(im, "auto_pad", "NOTSET", &autopad) || im_attr_int(im, "ceil_mode", 0, &ceil) ||
      (!ps->max && im_attr_int(im, "count_include_pad", 0, &cip)))
    return -1;
  ps->ceil = ceil != 0, ps->cip = cip != 0;
  if (strcmp(autopad, "NOTSET") && strcmp(autopad, "VALID"))
    return im_error(im, "attribute 'auto_pad' = '%s' is not supported for %d spatial axes (NOTSET, VALID)", autopad, sp);
  if (im_attr_ints(im, "kernel_shape", v, IR_MAX_RANK, &n)) return -1;
  if (n != sp) return im_error(im, "attribute 'kernel_shape' of %d entries is required (one per spatial axis)", sp);
  for (int i = 0; i < sp; i++) ps->ax[i] = (PoolAxis){v[i], 1, 1, 0, 0};
  const char *names[3] = {"strides", "dilations", "pads"};
  for (int w = 0; w < 3; w++) {
    if (w == 1 && !ps->max) continue; /* AveragePool has no dilations before opset 19 */
    if (im_attr_ints(im, names[w], v, 2 * IR_MAX_RANK, &n)) return -1;
    if (n >= 0 && n != (w == 2 ? 2 * sp : sp)) return im_error(im, "attribute '%s' has %d entries for %d spatial axes", names[w], n, sp);
    for (int i = 0; i < sp && n >= 0; i++) {
      if (v[i] < (w == 2 ? 0 : 1) || (w == 2 && v[sp + i] < 0)) return im_error(im, "attribute '%s' has an entry out of range", names[w]);
      if (w == 0) ps->ax[i].s = v[i];
      else if (w == 1) ps->ax[i].d = v[i];
      else ps->ax[i].lo = v[i], ps->ax[i].hi = v[sp + i];
    }
  }
  return 0;
}

/* Whether MaxPool or AveragePool has a form dlc's 2-D pools take whole:
 * two spatial axes and every padding within half the kernel. */
int im_pool_is_2d(Importer *im, int x) {
  int64_t v[2 * IR_MAX_RANK], k[IR_MAX_RANK];
  int n, nk;
  if (shape_of(im, x)->rank != 4) return 0;
  if (im_attr_ints(im, "kernel_shape", k, IR_MAX_RANK, &nk) || im_attr_ints(im, "pads", v, 2 * IR_MAX_RANK, &n)) return 1;
  for (int i = 0; i < n && nk == 2; i++)
    if (v[i] > k[i % 2] / 2) return 0;
  return 1;
}

/* MaxPool and AveragePool over 1, 2 or 3 spatial axes as one 2-D pool
 * per axis (a box window is separable: the maximum, and the average
 * whose count is the product of the per-axis counts). */
int im_cv_pool_nd(Importer *im, const ImOp *row) {
  PoolSpec ps = {.max = row->op == OP_MAX_POOL2D};
  int64_t order;
  int x = im_tensor(im, 0);
  if (x < 0 || (ps.max && im_attr_int(im, "storage_order", 0, &order))) return -1;
  int sp = shape_of(im, x)->rank - 2;
  if (sp < 1 || sp > 3) return im_error(im, "pooling over %d spatial axes is not supported (1 to 3)", sp);
  if (pool_spec(im, sp, &ps)) return -1;
  int y = x;
  for (int i = 0; i < sp && y >= 0; i++) y = pool_along(im, y, &ps, i, i == sp - 1 ? 0 : -1);
  return im_set_out(im, 0, y);
}

/* --- ConvTranspose ----------------------------------------------------------------------------------- */

/* One spatial axis of a transposed convolution. */
typedef struct TconvAxis {
  int64_t in, k, s, d, op, lo, hi;
} TconvAxis;

/* The pads (or, past the default extent, the output padding) that give
 * output extent want: ONNX's total padding s (in - 1) + op + d (k - 1) + 1
 * - want, the odd one at the end for SAME_UPPER, else at the beginning. */
static int tconv_fit(Importer *im, TconvAxis *t, int64_t want, int upper) {
  int64_t total = t->s * (t->in - 1) + t->op + t->d * (t->k - 1) + 1 - want;
  if (total < 0) t->op -= total, total = 0;
  if (t->op >= t->s)
    return im_error(im, "output extent %lld needs an output padding of %lld, not below the stride %lld", (long long)want,
                    (long long)t->op, (long long)t->s);
  t->lo = upper ? total / 2 : total - total / 2, t->hi = total - t->lo;
  return 0;
}

/* The attributes of a ConvTranspose over sp spatial axes of x and w. */
static int tconv_axes(Importer *im, int x, int w, int sp, TconvAxis *t) {
  int64_t v[4][2 * IR_MAX_RANK], shape[IR_MAX_RANK + 2];
  int n[4], ns;
  const char *names[4] = {"strides", "dilations", "output_padding", "pads"}, *autopad;
  if (im_attr_str(im, "auto_pad", "NOTSET", &autopad) || im_attr_ints(im, "output_shape", shape, IR_MAX_RANK + 2, &ns)) return -1;
  for (int a = 0; a < 4; a++) {
    if (im_attr_ints(im, names[a], v[a], 2 * IR_MAX_RANK, &n[a])) return -1;
    if (n[a] >= 0 && n[a] != (a == 3 ? 2 * sp : sp)) return im_error(im, "attribute '%s' has %d entries for %d spatial axes", names[a], n[a], sp);
  }
  int same = !strcmp(autopad, "SAME_UPPER") || !strcmp(autopad, "SAME_LOWER");
  if (!same && strcmp(autopad, "NOTSET") && strcmp(autopad, "VALID"))
    return im_error(im, "attribute 'auto_pad' = '%s' is not supported (NOTSET, VALID, SAME_UPPER, SAME_LOWER)", autopad);
  if (ns >= 0 && ns != sp && ns != sp + 2) return im_error(im, "attribute 'output_shape' has %d entries for %d spatial axes", ns, sp);
  for (int i = 0; i < sp; i++) {
    Dim in = shape_of(im, x)->d[2 + i];
    if (DIM_IS_SYM(in) && (ns >= 0 || same)) return im_error(im, "output_shape and auto_pad SAME need known spatial extents");
    t[i] = (TconvAxis){in, shape_of(im, w)->d[2 + i], n[0] >= 0 ? v[0][i] : 1, n[1] >= 0 ? v[1][i] : 1,
                       n[2] >= 0 ? v[2][i] : 0, n[3] >= 0 ? v[3][i] : 0, n[3] >= 0 ? v[3][sp + i] : 0};
    if (t[i].s < 1 || t[i].d < 1 || t[i].op < 0 || t[i].lo < 0 || t[i].hi < 0)
      return im_error(im, "strides, dilations, output_padding or pads out of range");
    if (ns >= 0 || same) {
      int64_t want = ns >= 0 ? shape[ns - sp + i] : in * t[i].s;
      if (tconv_fit(im, &t[i], want, !strcmp(autopad, "SAME_UPPER"))) return -1;
    }
  }
  return 0;
}

/* x (or w) with a spatial axis of extent 1 put before its last one. */
static int with_unit_axis(Importer *im, int v) {
  const Shape *s = shape_of(im, v);
  Dim d[4] = {s->d[0], s->d[1], 1, s->d[2]};
  return im_reshape_to(im, v, d, 4, -1);
}

/* ConvTranspose over 1 or 2 spatial axes (1-D as 2-D with a unit height):
 * conv_transpose2d, with output_shape and auto_pad SAME as the pads and
 * output padding they stand for. */
int im_cv_conv_transpose(Importer *im, const ImOp *row) {
  int x = im_tensor(im, 0), w = im_tensor(im, 1), b = im_in_name(im, 2) ? im_tensor(im, 2) : -2;
  int64_t group, kernel[IR_MAX_RANK];
  int nk;
  TconvAxis t[2] = {{1, 1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 0, 0, 0}};
  if (x < 0 || w < 0 || b == -1 || im_attr_int(im, "group", 1, &group) || im_attr_ints(im, "kernel_shape", kernel, IR_MAX_RANK, &nk))
    return -1;
  int sp = shape_of(im, x)->rank - 2;
  if (sp != 1 && sp != 2) return im_error(im, "a ConvTranspose over %d spatial axes is not supported (1 or 2)", sp);
  if (shape_of(im, w)->rank != sp + 2) return im_error(im, "the weight must have rank %d", sp + 2);
  for (int i = 0; i < nk; i++)
    if (nk != sp || shape_of(im, w)->d[2 + i] != kernel[i]) return im_error(im, "kernel_shape does not match the weight's shape");
  if (tconv_axes(im, x, w, sp, &t[2 - sp])) return -1;
  Attrs a = ir_attrs_default(OP_CONV_TRANSPOSE2D);
  int64_t st[2] = {t[0].s, t[1].s}, dil[2] = {t[0].d, t[1].d}, op[2] = {t[0].op, t[1].op};
  int64_t pad[4] = {t[0].lo, t[0].hi, t[1].lo, t[1].hi};
  if (im_set_list(im, &a, OP_CONV_TRANSPOSE2D, "stride", st, 2) || im_set_list(im, &a, OP_CONV_TRANSPOSE2D, "dilation", dil, 2) ||
      im_set_list(im, &a, OP_CONV_TRANSPOSE2D, "output_padding", op, 2) || im_set_list(im, &a, OP_CONV_TRANSPOSE2D, "padding", pad, 4))
    return -1;
  a.window.groups = group;
  int in[3] = {sp == 1 ? with_unit_axis(im, x) : x, sp == 1 ? with_unit_axis(im, w) : w, b};
  int y = im_op(im, OP_CONV_TRANSPOSE2D, in, b >= 0 ? 3 : 2, &a, sp == 1 ? -1 : 0);
  if (sp == 2 || y < 0) return im_set_out(im, 0, y);
  const Shape *ys = shape_of(im, y);
  Dim d[3] = {ys->d[0], ys->d[1], ys->d[3]};
  return im_set_out(im, 0, im_reshape_to(im, y, d, 3, 0));
}

/* --- GridSample ------------------------------------------------------------------------------------ */

typedef struct Grid {
  int mode;          /* 0 bilinear, 1 nearest, 2 bicubic */
  int pad;           /* 0 zeros, 1 border, 2 reflection */
  int align;
} Grid;

/* The positions 0, 1, ..., n - 1 as a frozen [1, 1, n] param. */
static int positions(Importer *im, int64_t n, const char *what) {
  float *p = arena_alloc(im->a, (size_t)n * sizeof *p);
  for (int64_t j = 0; j < n; j++) p[j] = (float)j;
  int64_t dims[3] = {1, 1, n};
  return im_frozen_param(im, what, 3, dims, p);
}

static int clamp_to(Importer *im, int v, double lo, double hi) {
  Attrs a = ir_attrs_default(OP_CLAMP);
  a.scalar.f = lo, a.scalar.f2 = hi;
  return v < 0 ? -1 : im_op(im, OP_CLAMP, &v, 1, &a, -1);
}

/* PyTorch's reflect_coordinates: v reflected into [lo, lo + span]:
 * t = |v - lo|, flips = floor(t / span), extra = t - flips span; even
 * flips give lo + extra, odd ones lo + span - extra. */
static int reflect(Importer *im, int v, double lo, double span) {
  int t = un(im, OP_ABS, bin(im, OP_SUB, v, konst(im, lo), -1), -1);
  int flips = un(im, OP_FLOOR, bin(im, OP_DIV, t, konst(im, span), -1), -1);
  int extra = bin(im, OP_SUB, t, bin(im, OP_MUL, flips, konst(im, span), -1), -1);
  int half = un(im, OP_FLOOR, bin(im, OP_DIV, flips, konst(im, 2), -1), -1);
  int odd = bin(im, OP_NE, flips, bin(im, OP_MUL, half, konst(im, 2), -1), -1);
  int in[3] = {odd, bin(im, OP_SUB, konst(im, lo + span), extra, -1), bin(im, OP_ADD, extra, konst(im, lo), -1)};
  return im_op(im, OP_WHERE, in, 3, NULL, -1);
}

/* The sampling weights [N, P, n] of the n pixels along one axis for the
 * normalised coordinates g [N, P, 1]: bilinear's tent max(0, 1 - |d|),
 * nearest's 1 where the rounded coordinate is the pixel, bicubic's
 * kernel (A = -0.75) of d = coordinate - pixel. */
static int axis_weights(Importer *im, const Grid *gr, int g, int64_t n, const char *what) {
  int x = gr->align ? bin(im, OP_MUL, bin(im, OP_ADD, g, konst(im, 1), -1), konst(im, (n - 1) / 2.0), -1)
                    : bin(im, OP_DIV, bin(im, OP_SUB, bin(im, OP_MUL, bin(im, OP_ADD, g, konst(im, 1), -1), konst(im, (double)n), -1),
                                          konst(im, 1), -1), konst(im, 2), -1);
  if (gr->pad == 2 && n > 1) x = reflect(im, x, gr->align ? 0 : -0.5, gr->align ? n - 1 : (double)n);
  if (gr->pad >= 1) x = clamp_to(im, x, 0, (double)(n - 1));
  int pos = positions(im, n, what);
  if (gr->mode == 1) return bin(im, OP_EQ, un(im, OP_ROUND, x, -1), pos, -1);
  int a = un(im, OP_ABS, bin(im, OP_SUB, x, pos, -1), -1);
  if (gr->mode == 0) return un(im, OP_RELU, bin(im, OP_SUB, konst(im, 1), a, -1), -1);
  const double A = -0.75;
  int a2 = bin(im, OP_MUL, a, a, -1);
  int near = bin(im, OP_ADD, bin(im, OP_MUL, bin(im, OP_SUB, bin(im, OP_MUL, a, konst(im, A + 2), -1), konst(im, A + 3), -1), a2, -1),
                 konst(im, 1), -1);
  int far = bin(im, OP_SUB, bin(im, OP_MUL, bin(im, OP_ADD, bin(im, OP_MUL, bin(im, OP_SUB, bin(im, OP_MUL, a, konst(im, A), -1),
                                                                                          konst(im, 5 * A), -1), a, -1),
                                                   konst(im, 8 * A), -1), a, -1), konst(im, 4 * A), -1);
  int in1[3] = {bin(im, OP_LT, a, konst(im, 2), -1), far, konst(im, 0)};
  int in0[3] = {bin(im, OP_LE, a, konst(im, 1), -1), near, im_op(im, OP_WHERE, in1, 3, NULL, -1)};
  return im_op(im, OP_WHERE, in0, 3, NULL, -1);
}

static int grid_attrs(Importer *im, Grid *gr) {
  const char *mode, *pad;
  int64_t align;
  if (im_attr_str(im, "mode", "bilinear", &mode) || im_attr_str(im, "padding_mode", "zeros", &pad) ||
      im_attr_int(im, "align_corners", 0, &align))
    return -1;
  gr->mode = !strcmp(mode, "bilinear") ? 0 : !strcmp(mode, "nearest") ? 1 : !strcmp(mode, "bicubic") ? 2 : -1;
  gr->pad = !strcmp(pad, "zeros") ? 0 : !strcmp(pad, "border") ? 1 : !strcmp(pad, "reflection") ? 2 : -1;
  gr->align = align != 0;
  if (gr->mode < 0) return im_error(im, "attribute 'mode' = '%s' is not supported (bilinear, nearest, bicubic)", mode);
  if (gr->pad < 0) return im_error(im, "attribute 'padding_mode' = '%s' is not supported (zeros, border, reflection)", pad);
  if (gr->mode == 2 && gr->pad) return im_error(im, "bicubic sampling with padding_mode '%s' is not supported (zeros)", pad);
  return 0;
}

/* w [N, P, n] as [N, 1, n, P]. */
static int weights_by_pixel(Importer *im, int w, Dim batch, int64_t n, int64_t np) {
  Attrs a = ir_attrs_default(OP_TRANSPOSE);
  int64_t perm[3] = {0, 2, 1};
  Dim d[4] = {batch, 1, n, np};
  if (w < 0 || im_set_list(im, &a, OP_TRANSPOSE, "perm", perm, 3)) return -1;
  return im_reshape_to(im, im_op(im, OP_TRANSPOSE, &w, 1, &a, -1), d, 4, -1);
}

/* GridSample (4-D): out[n, c, p] = sum over pixels (i, j) of
 * X[n, c, i, j] wy[n, p, i] wx[n, p, j], the separable weights of each
 * axis: a matmul over the width, then a weighted sum over the height.
 * Zeros padding is the weights' own (a pixel outside gets none), border
 * clamps the coordinate, reflection reflects it first (as PyTorch). */
int im_cv_grid_sample(Importer *im, const ImOp *row) {
  Grid gr;
  int x = im_tensor(im, 0), g = im_tensor(im, 1);
  if (x < 0 || g < 0 || grid_attrs(im, &gr)) return -1;
  const Shape *xs = shape_of(im, x), *gs = shape_of(im, g);
  if (xs->rank != 4 || gs->rank != 4 || gs->d[3] != 2) return im_error(im, "X must be [N, C, H, W] and the grid [N, Ho, Wo, 2]");
  Dim batch = xs->d[0], C = xs->d[1], H = xs->d[2], W = xs->d[3], Ho = gs->d[1], Wo = gs->d[2];
  if (DIM_IS_SYM(C) || DIM_IS_SYM(H) || DIM_IS_SYM(W) || DIM_IS_SYM(Ho) || DIM_IS_SYM(Wo))
    return im_error(im, "GridSample needs known channel, spatial and grid extents");
  Dim d3[3] = {gs->d[0], Ho * Wo, 1};
  int gx = im_reshape_to(im, im_slice(im, g, 3, 0, 1, -1), d3, 3, -1);
  int gy = im_reshape_to(im, im_slice(im, g, 3, 1, 2, -1), d3, 3, -1);
  int wx = weights_by_pixel(im, axis_weights(im, &gr, gx, W, "x_positions"), gs->d[0], W, Ho * Wo);
  int wy = weights_by_pixel(im, axis_weights(im, &gr, gy, H, "y_positions"), gs->d[0], H, Ho * Wo);
  int rows = bin(im, OP_MATMUL, x, wx, -1); /* [N, C, H, P] */
  int64_t ax = 2;
  int s = im_reduce_over(im, OP_SUM, bin(im, OP_MUL, rows, wy, -1), &ax, 1, 0, -1);
  Dim out[4] = {batch, C, Ho, Wo};
  return im_set_out(im, 0, s < 0 ? -1 : im_reshape_to(im, s, out, 4, 0));
}
