/*
 * convert.c — each dlc op as standard ONNX operators (opset ONNX_OPSET),
 * one function per row of ir/onnx.def.
 *
 * A conversion reads the node's canonical attributes (the shape rule has
 * normalised axes, lists and paddings: ir/conv.h) and writes the nodes
 * that compute the same values with the same semantics as the reference
 * interpreter: PyTorch's.  Ops ONNX lacks at this opset (gelu, mish, silu,
 * maxout, softplus with beta and threshold) are written as their standard
 * decompositions, in the form dlc's own formula takes (elemwise.def), so
 * the values agree to rounding.  The last node of a conversion writes the
 * value's name (out); intermediate values get fresh names from it.
 */
#include <math.h>
#include <string.h>

#include "onnx/builder.h"

#define SELU_ALPHA 1.6732632423543772848170429916717
#define SELU_SCALE 1.0507009873554804934193349852946

/* --- sources and simple ops --------------------------------------------------------- */

static void ox_cv_source(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  IR_ASSERT(!"sources are graph inputs and initializers");
}

static void ox_cv_const(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  float v = (float)n->attr.scalar.f;
  const char *c = ox_const_f32(b, v);
  ox_node1(b, "Identity", out, c);
}

static void ox_cv_identity(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "Identity", out, in[0]);
}

#define SIMPLE(fn, type)                                                                          \
  static void ox_cv_##fn(OxBuilder *b, const Node *n, const char *const *in, const char *out) { \
    ox_node(b, type, out, n->nin, in);                                                            \
  }
SIMPLE(matmul, "MatMul")
SIMPLE(add, "Add")
SIMPLE(sub, "Sub")
SIMPLE(mul, "Mul")
SIMPLE(div, "Div")
SIMPLE(neg, "Neg")
SIMPLE(abs, "Abs")
SIMPLE(exp, "Exp")
SIMPLE(log, "Log")
SIMPLE(sqrt, "Sqrt")
SIMPLE(relu, "Relu")
SIMPLE(sigmoid, "Sigmoid")
SIMPLE(tanh, "Tanh")
SIMPLE(erf, "Erf")
SIMPLE(sin, "Sin")
SIMPLE(cos, "Cos")
SIMPLE(tan, "Tan")
SIMPLE(asin, "Asin")
SIMPLE(acos, "Acos")
SIMPLE(atan, "Atan")
SIMPLE(floor, "Floor")
SIMPLE(ceil, "Ceil")
SIMPLE(round, "Round")
SIMPLE(maximum, "Max")
SIMPLE(minimum, "Min")
SIMPLE(global_avg_pool, "GlobalAveragePool")
#undef SIMPLE

/* A comparison: the ONNX operator's bool result as float 1 or 0 (dlc's
 * comparisons are f32, elemwise.def); ne is Not(Equal), so a NaN operand
 * gives 1 as in dlc and PyTorch. */
static void ox_cv_compare(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *type = n->op == OP_LT ? "Less" : n->op == OP_LE ? "LessOrEqual" : n->op == OP_GT ? "Greater"
                     : n->op == OP_GE ? "GreaterOrEqual" : "Equal";
  const char *r = ox_node2(b, type, NULL, in[0], in[1]);
  if (n->op == OP_NE) r = ox_node1(b, "Not", NULL, r);
  ox_node1(b, "Cast", out, r);
  ox_attr_int(b, "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
}

static void ox_cv_where(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *c = ox_node1(b, "Cast", NULL, in[0]);
  ox_attr_int(b, "to", ONNX__TENSOR_PROTO__DATA_TYPE__BOOL);
  const char *w[3] = {c, in[1], in[2]};
  ox_node(b, "Where", out, 3, w);
}

/* gather and index_select: an out-of-range index is an error in ONNX
 * Runtime as in the reference interpreter. */
static void ox_cv_gather(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node2(b, "GatherElements", out, in[0], in[1]);
  ox_attr_int(b, "axis", n->attr.axis.axis);
}

static void ox_cv_index_select(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node2(b, "Gather", out, in[0], in[1]);
  ox_attr_int(b, "axis", n->attr.axis.axis);
}

/* --- linear --------------------------------------------------------------------------- */

/* y = x w^T + b: Gemm for a 2-D x, else MatMul by the transposed weight. */
static void ox_cv_linear(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  if (b->g->nodes[n->in[0]].shape.rank == 2) {
    ox_node(b, "Gemm", out, n->nin, in);
    ox_attr_int(b, "transB", 1);
    return;
  }
  const char *wt = ox_node1(b, "Transpose", NULL, in[1]);
  if (n->nin == 2) {
    ox_node2(b, "MatMul", out, in[0], wt);
    return;
  }
  ox_node2(b, "Add", out, ox_node2(b, "MatMul", NULL, in[0], wt), in[2]);
}

/* --- elementwise with attributes ------------------------------------------------------ */

static void ox_cv_pow(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *e = n->nin == 2 ? in[1] : ox_const_f32(b, (float)n->attr.scalar.f);
  ox_node2(b, "Pow", out, in[0], e);
}

static void ox_cv_leaky_relu(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "LeakyRelu", out, in[0]);
  ox_attr_float(b, "alpha", (float)n->attr.scalar.f);
}

static void ox_cv_elu(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "Elu", out, in[0]);
  ox_attr_float(b, "alpha", (float)n->attr.scalar.f);
}

static void ox_cv_selu(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "Selu", out, in[0]);
  ox_attr_float(b, "alpha", (float)SELU_ALPHA);
  ox_attr_float(b, "gamma", (float)SELU_SCALE);
}

/* none: x/2 (1 + erf(x / sqrt 2)); tanh: x sigmoid(2u), u = sqrt(2/pi) (x
 * + 0.044715 x^3), the form elemwise.def computes. */
static void ox_cv_gelu(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *x = in[0];
  if (!n->attr.scalar.mode) {
    const char *e = ox_node1(b, "Erf", NULL, ox_node2(b, "Mul", NULL, x, ox_const_f32(b, (float)M_SQRT1_2)));
    const char *h = ox_node2(b, "Mul", NULL, x, ox_const_f32(b, 0.5f));
    ox_node2(b, "Mul", out, h, ox_node2(b, "Add", NULL, e, ox_const_f32(b, 1.0f)));
    return;
  }
  const char *x3 = ox_node2(b, "Mul", NULL, ox_node2(b, "Mul", NULL, x, x), x);
  const char *in1 = ox_node2(b, "Add", NULL, x, ox_node2(b, "Mul", NULL, x3, ox_const_f32(b, 0.044715f)));
  const char *u2 = ox_node2(b, "Mul", NULL, in1, ox_const_f32(b, (float)(2 * 0.79788456080286535588)));
  ox_node2(b, "Mul", out, x, ox_node1(b, "Sigmoid", NULL, u2));
}

static void ox_cv_silu(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node2(b, "Mul", out, in[0], ox_node1(b, "Sigmoid", NULL, in[0]));
}

/* x where beta x > threshold, else log(1 + exp(beta x)) / beta. */
static void ox_cv_softplus(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  float beta = (float)n->attr.scalar.f, thr = (float)n->attr.scalar.f2;
  const char *bx = beta == 1 ? in[0] : ox_node2(b, "Mul", NULL, in[0], ox_const_f32(b, beta));
  const char *sp = ox_node1(b, "Softplus", NULL, bx);
  if (beta != 1) sp = ox_node2(b, "Div", NULL, sp, ox_const_f32(b, beta));
  const char *big = ox_node2(b, "Greater", NULL, bx, ox_const_f32(b, thr));
  const char *w[3] = {big, in[0], sp};
  ox_node(b, "Where", out, 3, w);
}

static void ox_cv_hardswish(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "HardSwish", out, in[0]);
}

static void ox_cv_hardsigmoid(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "HardSigmoid", out, in[0]);
  ox_attr_float(b, "alpha", 1.0f / 6);
  ox_attr_float(b, "beta", 0.5f);
}

static void ox_cv_mish(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node2(b, "Mul", out, in[0], ox_node1(b, "Tanh", NULL, ox_node1(b, "Softplus", NULL, in[0])));
}

/* log sigmoid(x) = -softplus(-x). */
static void ox_cv_log_sigmoid(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "Neg", out, ox_node1(b, "Softplus", NULL, ox_node1(b, "Neg", NULL, in[0])));
}

static void ox_cv_clamp(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  double lo = n->attr.scalar.f, hi = n->attr.scalar.f2;
  const char *c[3] = {in[0], isinf(lo) ? "" : ox_const_f32(b, (float)lo), isinf(hi) ? "" : ox_const_f32(b, (float)hi)};
  ox_node(b, "Clip", out, isinf(hi) ? (isinf(lo) ? 1 : 2) : 3, c);
}

/* --- axes ------------------------------------------------------------------------------ */

static void ox_cv_softmax(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "Softmax", out, in[0]);
  ox_attr_int(b, "axis", n->attr.axis.axis);
}

static void ox_cv_log_softmax(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "LogSoftmax", out, in[0]);
  ox_attr_int(b, "axis", n->attr.axis.axis);
}

/* reshape and flatten: a Reshape to the result's shape. */
static void ox_cv_reshape(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node2(b, "Reshape", out, in[0], ox_shape(b, &n->shape));
}

static void ox_cv_transpose(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  int64_t perm[IR_MAX_RANK];
  for (int k = 0; k < n->attr.dims.nlist; k++) perm[k] = n->attr.dims.list[k];
  ox_node1(b, "Transpose", out, in[0]);
  ox_attr_ints(b, "perm", perm, n->attr.dims.nlist);
}

static void ox_cv_concat(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node(b, "Concat", out, n->nin, in);
  ox_attr_int(b, "axis", n->attr.axis.axis);
}

static void ox_cv_slice(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const AttrAxis *a = &n->attr.axis;
  const char *s[5] = {in[0], ox_const_i64s(b, &a->start, 1), ox_const_i64s(b, &a->end, 1),
                      ox_const_i64s(b, &a->axis, 1), ox_const_i64s(b, &a->step, 1)};
  ox_node(b, "Slice", out, 5, s);
}

/* The reduction's axes (canonical: sorted, every one when none given). */
static int reduce_axes(const Node *n, int64_t *ax) {
  for (int k = 0; k < n->attr.dims.nlist; k++) ax[k] = n->attr.dims.list[k];
  return n->attr.dims.nlist;
}

/* ReduceSum takes its axes as an operand (opset 13); an empty list of
 * axes reduces every one. */
static void ox_cv_sum(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  int64_t ax[IR_MAX_RANK];
  int k = reduce_axes(n, ax);
  ox_node2(b, "ReduceSum", out, in[0], ox_const_i64s(b, ax, k));
  ox_attr_int(b, "keepdims", n->attr.dims.keepdim);
}

static void reduce_attr(OxBuilder *b, const Node *n, const char *type, const char *x, const char *out) {
  int64_t ax[IR_MAX_RANK];
  int k = reduce_axes(n, ax);
  ox_node1(b, type, out, x);
  ox_attr_ints(b, "axes", ax, k);
  ox_attr_int(b, "keepdims", n->attr.dims.keepdim);
}

static void ox_cv_mean(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  reduce_attr(b, n, "ReduceMean", in[0], out);
}

/* NaN propagation: dlc's maximum over a window or an axis is NaN when one
 * element it takes is (as PyTorch's); ONNX leaves that open and ONNX
 * Runtime's MaxPool and ReduceMax skip NaN.  So the result is
 * m + Sqrt(-R(Cast(IsNaN(x)))), where R is the same reduction over the
 * 0/1 NaN mask: Sqrt(-0) is -0 and m + -0 is m, Sqrt(-1) is NaN, so every
 * runtime gives dlc's values, and the form needs no NaN constant (which a
 * .dl file, and so an import, could only hold as a parameter).  The cost
 * is a second reduction over a mask of x's size and four elementwise
 * passes. */
static const char *nan_mask(OxBuilder *b, const char *x) {
  const char *isnan = ox_node1(b, "IsNaN", NULL, x);
  const char *f = ox_node1(b, "Cast", NULL, isnan);
  ox_attr_int(b, "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
  return f;
}

static void nan_where(OxBuilder *b, const char *mask_max, const char *m, const char *out) {
  const char *nan_or_zero = ox_node1(b, "Sqrt", NULL, ox_node1(b, "Neg", NULL, mask_max));
  ox_node2(b, "Add", out, m, nan_or_zero);
}

static void ox_cv_max(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *m = ox_fresh(b, arena_printf(b->a, "%s/ReduceMax", out));
  reduce_attr(b, n, "ReduceMax", in[0], m);
  const char *k = ox_fresh(b, arena_printf(b->a, "%s/nan_any", out));
  reduce_attr(b, n, "ReduceMax", nan_mask(b, in[0]), k);
  nan_where(b, k, m, out);
}

/* maxout: axis split into [C / pieces, pieces], the maximum over the second. */
static void ox_cv_maxout(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const Node *x = &b->g->nodes[n->in[0]];
  int64_t axis = n->attr.axis.axis, p = n->attr.axis.pieces;
  Shape s = {x->shape.rank + 1, {0}};
  for (int k = 0, j = 0; k < x->shape.rank; k++) {
    s.d[j++] = k == axis ? x->shape.d[k] / p : x->shape.d[k];
    if (k == axis) s.d[j++] = p;
  }
  const char *r = ox_node2(b, "Reshape", NULL, in[0], ox_shape(b, &s));
  int64_t ax = axis + 1;
  const char *m = ox_node1(b, "ReduceMax", NULL, r);
  ox_attr_ints(b, "axes", &ax, 1);
  ox_attr_int(b, "keepdims", 0);
  const char *k = ox_node1(b, "ReduceMax", NULL, nan_mask(b, r));
  ox_attr_ints(b, "axes", &ax, 1);
  ox_attr_int(b, "keepdims", 0);
  nan_where(b, k, m, out);
}

/* --- convolution and pooling ------------------------------------------------------------ */

/* ONNX pads of a 2-D window ([top, left, bottom, right]) from dlc's
 * canonical [top, bottom, left, right]; conv1d's [left, right] as is. */
static int window_pads(const IntList *p, int64_t *v) {
  if (p->n == 2) return v[0] = p->v[0], v[1] = p->v[1], 2;
  v[0] = p->v[0], v[1] = p->v[2], v[2] = p->v[1], v[3] = p->v[3];
  return 4;
}

static void list_attr(OxBuilder *b, const char *name, const IntList *l) {
  ox_attr_ints(b, name, l->v, l->n);
}

/* The weight's spatial extents, the kernel_shape attribute. */
static void kernel_attr(OxBuilder *b, const Node *w) {
  ox_attr_ints(b, "kernel_shape", w->shape.d + 2, w->shape.rank - 2);
}

/* Conv; reflect and replicate padding as a Pad (reflect, edge) first. */
static void ox_cv_conv(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const AttrWindow *a = &n->attr.window;
  int64_t pads[4], zero[4] = {0}, pp[8] = {0};
  int np = window_pads(&a->padding, pads), sp = np / 2;
  const char *ins[3] = {in[0], in[1], n->nin > 2 ? in[2] : ""};
  if (a->mode != PAD_CONSTANT) {
    for (int k = 0; k < sp; k++) pp[2 + k] = pads[k], pp[sp + 4 + k] = pads[sp + k]; /* [begins, ends] of N, C, spatial */
    ins[0] = ox_node2(b, "Pad", NULL, in[0], ox_const_i64s(b, pp, 2 * (sp + 2)));
    ox_attr_str(b, "mode", a->mode == PAD_REFLECT ? "reflect" : "edge");
  }
  ox_node(b, "Conv", out, n->nin, ins);
  kernel_attr(b, &b->g->nodes[n->in[1]]);
  list_attr(b, "strides", &a->stride);
  list_attr(b, "dilations", &a->dilation);
  ox_attr_ints(b, "pads", a->mode != PAD_CONSTANT ? zero : pads, np);
  ox_attr_int(b, "group", a->groups);
}

static void ox_cv_conv_transpose(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const AttrWindow *a = &n->attr.window;
  int64_t pads[4];
  int np = window_pads(&a->padding, pads);
  ox_node(b, "ConvTranspose", out, n->nin, in);
  kernel_attr(b, &b->g->nodes[n->in[1]]);
  list_attr(b, "strides", &a->stride);
  list_attr(b, "dilations", &a->dilation);
  list_attr(b, "output_padding", &a->output_padding);
  ox_attr_ints(b, "pads", pads, np);
  ox_attr_int(b, "group", a->groups);
}

static void pool_attrs(OxBuilder *b, const AttrWindow *a) {
  int64_t pads[4];
  int np = window_pads(&a->padding, pads);
  list_attr(b, "kernel_shape", &a->kernel);
  list_attr(b, "strides", &a->stride);
  ox_attr_ints(b, "pads", pads, np);
  ox_attr_int(b, "ceil_mode", a->ceil_mode);
}

/* MaxPool, NaN propagating as in dlc (nan_where): a MaxPool of the NaN
 * mask with the same window (its padding counts as -inf, never 1). */
static void ox_cv_max_pool(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *m = ox_node1(b, "MaxPool", NULL, in[0]);
  pool_attrs(b, &n->attr.window);
  list_attr(b, "dilations", &n->attr.window.dilation);
  const char *k = ox_node1(b, "MaxPool", NULL, nan_mask(b, in[0]));
  pool_attrs(b, &n->attr.window);
  list_attr(b, "dilations", &n->attr.window.dilation);
  nan_where(b, k, m, out);
}

static void ox_cv_avg_pool(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node1(b, "AveragePool", out, in[0]);
  pool_attrs(b, &n->attr.window);
  ox_attr_int(b, "count_include_pad", n->attr.window.count_include_pad);
}

/* upsample: Resize by the scale factors, with PyTorch's coordinates. */
static void ox_cv_upsample(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const AttrUpsample *a = &n->attr.upsample;
  float sc[4] = {1, 1, (float)a->scale.v[0], (float)a->scale.v[1]};
  const char *r[3] = {in[0], "", ox_const_f32s(b, sc, 4)};
  ox_node(b, "Resize", out, 3, r);
  if (a->mode == UP_NEAREST) {
    ox_attr_str(b, "mode", "nearest");
    ox_attr_str(b, "coordinate_transformation_mode", "asymmetric");
    ox_attr_str(b, "nearest_mode", "floor");
  } else {
    ox_attr_str(b, "mode", "linear");
    ox_attr_str(b, "coordinate_transformation_mode", "pytorch_half_pixel");
  }
}

/* pad: dlc's pads (lo, hi) from the last dimension backwards become
 * ONNX's [begin of each dimension..., end of each dimension...]. */
static void ox_cv_pad(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const AttrPad *a = &n->attr.pad;
  int r = n->shape.rank;
  int64_t pads[2 * IR_MAX_RANK] = {0};
  for (int j = 0; j < a->pads.n / 2; j++) pads[r - 1 - j] = a->pads.v[2 * j], pads[2 * r - 1 - j] = a->pads.v[2 * j + 1];
  const char *p[3] = {in[0], ox_const_i64s(b, pads, 2 * r), NULL};
  if (a->mode == PAD_CONSTANT) p[2] = ox_const_f32(b, (float)a->value);
  ox_node(b, "Pad", out, a->mode == PAD_CONSTANT ? 3 : 2, p);
  ox_attr_str(b, "mode", a->mode == PAD_CONSTANT ? "constant" : a->mode == PAD_REFLECT ? "reflect" : "edge");
}

/* Trilu (opset 14) keeps the lower triangle from diagonal k and zeroes the
 * rest; another fill value is Where(Trilu(ones of x's shape), x, value). */
static void ox_cv_tril(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *k = ox_const_i64s(b, (const int64_t[]){n->attr.scalar.mode}, 1);
  if (n->attr.scalar.f == 0) {
    ox_node2(b, "Trilu", out, in[0], k);
    ox_attr_int(b, "upper", 0);
    return;
  }
  const char *ones = ox_node2(b, "Expand", NULL, ox_const_f32(b, 1), ox_node1(b, "Shape", NULL, in[0]));
  const char *tri = ox_node2(b, "Trilu", NULL, ones, k);
  ox_attr_int(b, "upper", 0);
  const char *cond = ox_node1(b, "Cast", NULL, tri);
  ox_attr_int(b, "to", ONNX__TENSOR_PROTO__DATA_TYPE__BOOL);
  ox_node(b, "Where", out, 3, (const char *[]){cond, in[0], ox_const_f32(b, (float)n->attr.scalar.f)});
}

/* LayerNormalization (opset 17) over the last ndim axes; without a weight
 * its Scale is ones of the normalised shape (Expand of 1). */
static void ox_cv_layer_norm(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  int nd = n->attr.scalar.mode;
  Shape norm = {nd, {0}};
  for (int k = 0; k < nd; k++) norm.d[k] = n->shape.d[n->shape.rank - nd + k];
  const char *ins[3] = {in[0], n->nin > 1 ? in[1] : ox_node2(b, "Expand", NULL, ox_const_f32(b, 1), ox_shape(b, &norm)),
                        n->nin > 2 ? in[2] : NULL};
  ox_node(b, "LayerNormalization", out, n->nin > 2 ? 3 : 2, ins);
  ox_attr_int(b, "axis", -nd);
  ox_attr_float(b, "epsilon", (float)n->attr.scalar.f);
}

static void ox_cv_batchnorm(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  ox_node(b, "BatchNormalization", out, 5, in);
  ox_attr_float(b, "epsilon", (float)n->attr.hyper.hp[HP_EPS]);
}

/* --- losses: the per-sample or per-element values, then the reduction ----------------- */

static void loss_reduce(OxBuilder *b, const Node *n, const char *v, const char *out) {
  int red = n->attr.loss.reduction;
  if (red == RED_NONE) {
    ox_node1(b, "Identity", out, v);
    return;
  }
  ox_node1(b, red == RED_MEAN ? "ReduceMean" : "ReduceSum", out, v);
  ox_attr_int(b, "keepdims", 0);
}

/* SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss (opset 13) have
 * the same three reductions, shapes and ignore_index. */
static void class_loss(OxBuilder *b, const char *op, const Node *n, const char *const *in, const char *out) {
  int red = n->attr.loss.reduction;
  ox_node(b, op, out, 2, in);
  ox_attr_str(b, "reduction", red == RED_MEAN ? "mean" : red == RED_SUM ? "sum" : "none");
  ox_attr_int(b, "ignore_index", n->attr.loss.ignore_index);
}

static void ox_cv_cross_entropy(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  class_loss(b, "SoftmaxCrossEntropyLoss", n, in, out);
}

static void ox_cv_nll_loss(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  class_loss(b, "NegativeLogLikelihoodLoss", n, in, out);
}

/* decompose.c's (1 - y) x + max(-x, 0) + softplus(-|x|). */
static void ox_cv_bce_logits(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *x = in[0], *y = in[1];
  const char *lin = ox_node2(b, "Mul", NULL, ox_node2(b, "Sub", NULL, ox_const_f32(b, 1), y), x);
  const char *neg = ox_node1(b, "Relu", NULL, ox_node1(b, "Neg", NULL, x));
  const char *soft = ox_node1(b, "Softplus", NULL, ox_node1(b, "Neg", NULL, ox_node1(b, "Abs", NULL, x)));
  loss_reduce(b, n, ox_node2(b, "Add", NULL, ox_node2(b, "Add", NULL, lin, neg), soft), out);
}

static void ox_cv_mse_loss(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *d = ox_node2(b, "Sub", NULL, in[0], in[1]);
  loss_reduce(b, n, ox_node2(b, "Mul", NULL, d, d), out);
}

static void ox_cv_l1_loss(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  loss_reduce(b, n, ox_node1(b, "Abs", NULL, ox_node2(b, "Sub", NULL, in[0], in[1])), out);
}

/* ||a - b + 1e-6||_2 over axis 1, as torch.pairwise_distance. */
static const char *pair_dist(OxBuilder *b, const char *a, const char *c) {
  const char *e = ox_node2(b, "Add", NULL, ox_node2(b, "Sub", NULL, a, c), ox_const_f32(b, 1e-6f));
  int64_t ax = 1;
  const char *s = ox_node2(b, "ReduceSum", NULL, ox_node2(b, "Mul", NULL, e, e), ox_const_i64s(b, &ax, 1));
  ox_attr_int(b, "keepdims", 0);
  return ox_node1(b, "Sqrt", NULL, s);
}

static void ox_cv_triplet_loss(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const char *gap = ox_node2(b, "Sub", NULL, pair_dist(b, in[0], in[1]), pair_dist(b, in[0], in[2]));
  const char *m = ox_node2(b, "Add", NULL, gap, ox_const_f32(b, (float)n->attr.loss.margin));
  loss_reduce(b, n, ox_node1(b, "Relu", NULL, m), out);
}

/* --- the table ----------------------------------------------------------------------------- */

#define ox_cv_NONE NULL
static OxConvertFn *const convert_fns[OP_COUNT] = {
#define ONNX(id, onnx, fn, note) [OP_##id] = ox_cv_##fn,
#include "ir/onnx.def"
#undef ONNX
};

static const OnnxOpInfo op_info[OP_COUNT] = {
#define ONNX(id, onnx, fn, note) [OP_##id] = {onnx, note},
#include "ir/onnx.def"
#undef ONNX
};

/* One row per op: as many rows as ops (a duplicate is -Woverride-init). */
enum {
  ONNX_ROWS = 0
#define ONNX(id, onnx, fn, note) +1
#include "ir/onnx.def"
#undef ONNX
};
_Static_assert((int)ONNX_ROWS == (int)OP_COUNT, "ir/onnx.def has one row per op of ir/ops.def");

OxConvertFn *ox_convert_fn(OpKind op) { return convert_fns[op]; }

const OnnxOpInfo *onnx_op_info(OpKind op) { return &op_info[op]; }
