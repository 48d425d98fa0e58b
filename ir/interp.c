/*
 * interp.c — the reference interpreter: the oracle every backend is tested
 * against, so it is written to be obviously right rather than fast.
 *
 * Nodes run in array order (the array is a schedule).  Each op is one small
 * function over dense C-order RtTensors; ir_interp's flat switch over
 * OpKind picks it, so an op added to ops.def and forgotten here fails to
 * build under -Wswitch-enum; the convolution and pooling family lives in
 * conv.c.  Semantics are PyTorch's: NumPy broadcasting,
 * torch.matmul's treatment of 1-D operands, NCHW layouts, the numerically
 * stable softmax and the loss formulas of torch.nn.functional.  Elementwise
 * ops compute in float like PyTorch; every sum (matmul and linear dot
 * products, reductions, softmax denominators, losses) accumulates in double
 * and rounds once, so the interpreter is at least as accurate as any
 * backend it judges.  Indexing is done the plainest way: a flat output
 * index is unravelled into coordinates, and the input offset is rebuilt
 * from them.  Attributes arrive canonical from infer.c (positive axes,
 * clamped slice bounds, sorted reduce axes, a full transpose perm), and
 * every output shape is the node's shape with its symbols evaluated, so
 * the only run-time checks are on the caller's tensors and on label values.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/conv.h"
#include "ir/elemwise.h"

/* --- indexing helpers ---------------------------------------------------- */

static const float *cf(const RtTensor *t) { return (const float *)t->data; }
static float *wf(RtTensor *t) { return (float *)t->data; }

static int64_t prod(const int64_t *shape, int from, int to) {
  int64_t n = 1;
  for (int i = from; i < to; i++) n *= shape[i];
  return n;
}

/* Coordinates c of flat C-order index i in shape. */
static void unravel(int64_t i, const int64_t *shape, int rank, int64_t *c) {
  for (int k = rank - 1; k >= 0; k--) {
    c[k] = i % shape[k];
    i /= shape[k];
  }
}

/* The flat offset, in a tensor of the given shape, of the element that
 * broadcasts to coordinate c of a result of rank r (shapes right-aligned,
 * a dimension of 1 repeats its one element). */
static int64_t bcast_offset(const int64_t *shape, int rank, const int64_t *c, int r) {
  int64_t off = 0;
  for (int k = 0; k < rank; k++) off = off * shape[k] + (shape[k] == 1 ? 0 : c[r - rank + k]);
  return off;
}

/* The tensor seen as [outer, len, inner] around axis. */
static void split_at(const RtTensor *t, int64_t axis, int64_t *outer, int64_t *len, int64_t *inner) {
  *outer = prod(t->shape, 0, (int)axis);
  *len = t->shape[axis];
  *inner = prod(t->shape, (int)axis + 1, t->rank);
}

/* NaN-propagating maximum, as torch.max. */
static double max_nan(double acc, double v) { return isnan(v) || v > acc ? v : acc; }

/* --- elementwise ----------------------------------------------------------- */

/* The formulas are elemwise.def's kernel expressions, built over locals
 * (operand k is local k) and evaluated here per element in float, the
 * type the emitted code computes them in; comparisons are 1 or 0. */
static float eval(const Expr *e, const float *v);

static float eval_unary(UnOp op, float x) {
  switch (op) {
  case UN_NEG: return -x;
  case UN_EXP: return expf(x);
  case UN_LOG: return logf(x);
  case UN_SQRT: return sqrtf(x);
  case UN_TANH: return tanhf(x);
  case UN_ABS: return fabsf(x);
  case UN_LOG1P: return log1pf(x);
  case UN_EXPM1: return expm1f(x);
  case UN_ERF: return erff(x);
  case UN_ERFC: return erfcf(x);
  case UN_COS: return cosf(x);
  case UN_SIN: return sinf(x);
  case UN_TAN: return tanf(x);
  case UN_ASIN: return asinf(x);
  case UN_ACOS: return acosf(x);
  case UN_ATAN: return atanf(x);
  case UN_FLOOR: return floorf(x);
  case UN_CEIL: return ceilf(x);
  case UN_RINT: return rintf(x);
  }
  IR_ASSERT(!"unknown unary operator");
  return 0;
}

static float eval_binary(BinOp op, float a, float b) {
  switch (op) {
  case BIN_ADD: return a + b;
  case BIN_SUB: return a - b;
  case BIN_MUL: return a * b;
  case BIN_DIV: return a / b;
  case BIN_MAX: return a > b || isnan(a) ? a : b; /* NaN propagates, as in torch */
  case BIN_MIN: return a < b || isnan(a) ? a : b;
  case BIN_POW: return powf(a, b);
  case BIN_MOD: return fmodf(a, b);
  case BIN_LT: return a < b;
  case BIN_LE: return a <= b;
  case BIN_GT: return a > b;
  case BIN_GE: return a >= b;
  case BIN_EQ: return a == b;
  case BIN_NE: return a != b;
  case BIN_AND: return a != 0 && b != 0;
  case BIN_OR: return a != 0 || b != 0;
  }
  IR_ASSERT(!"unknown binary operator");
  return 0;
}

static float eval(const Expr *e, const float *v) {
  switch (e->kind) {
  case EX_FCONST: return (float)e->f;
  case EX_ICONST: return (float)e->i;
  case EX_LOCAL: return v[e->id];
  case EX_UNARY: return eval_unary((UnOp)e->op, eval(e->a, v));
  case EX_BINARY: return eval_binary((BinOp)e->op, eval(e->a, v), eval(e->b, v));
  case EX_SELECT: return eval(e->a, v) != 0 ? eval(e->b, v) : eval(e->c, v);
  case EX_CAST: return eval(e->a, v);
  case EX_VAR: case EX_SYM: case EX_LOAD: case EX_RAND: case EX_BROADCAST: case EX_REDUCE: case EX_FMA: case EX_ZIP: break;
  }
  IR_ASSERT(!"not a scalar expression");
  return 0;
}

/* An elementwise op, where or ew_grad over broadcast operands. */
static void op_elemwise(const Graph *g, const Node *n, const RtTensor *vals, RtTensor *out) {
  Program p;
  kir_program_init(&p, g);
  Expr *loc[4];
  IR_ASSERT(n->nin <= 4);
  for (int k = 0; k < n->nin; k++) loc[k] = kx_local(&p, k, DT_F32);
  Expr *e = n->op == OP_EW_GRAD ? ir_ew_grad(&p, &n->attr, loc, n->nin)
            : n->op == OP_WHERE   ? ir_where_item(&p, loc[0], loc[1], loc[2])
                                  : ir_ew_forward(&p, n->op, &n->attr, loc[0], n->nin > 1 ? loc[1] : NULL);
  int64_t count = rt_tensor_numel(out), c[RT_MAX_RANK];
  float v[4];
  for (int64_t i = 0; i < count; i++) {
    unravel(i, out->shape, out->rank, c);
    for (int k = 0; k < n->nin; k++) {
      const RtTensor *t = &vals[n->in[k]];
      v[k] = cf(t)[bcast_offset(t->shape, t->rank, c, out->rank)];
    }
    wf(out)[i] = eval(e, v);
  }
  kir_program_free(&p);
}

/* --- linear algebra -------------------------------------------------------- */

/* A operand of matmul as a matrix stack: a 1-D a is [1, k], a 1-D b [k, 1]. */
static int promote(const RtTensor *t, int is_left, int64_t *shape) {
  if (t->rank != 1) {
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
    return t->rank;
  }
  shape[0] = is_left ? 1 : t->shape[0];
  shape[1] = is_left ? t->shape[0] : 1;
  return 2;
}

/* torch.matmul: [..., m, k] @ [..., k, n] with broadcast batch dimensions;
 * the result's layout is batch x m x n whether or not m or n was dropped. */
static void op_matmul(const RtTensor *a, const RtTensor *b, RtTensor *out) {
  int64_t sa[RT_MAX_RANK], sb[RT_MAX_RANK], batch[RT_MAX_RANK], c[RT_MAX_RANK];
  int ra = promote(a, 1, sa), rb = promote(b, 0, sb);
  int64_t m = sa[ra - 2], k = sa[ra - 1], n = sb[rb - 1];
  int br = (ra > rb ? ra : rb) - 2;
  for (int i = 0; i < br; i++) {
    int ia = i - br + ra - 2, ib = i - br + rb - 2;
    int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
    batch[i] = da == 1 ? db : da;
  }
  int64_t nb = prod(batch, 0, br);
  for (int64_t bi = 0; bi < nb; bi++) {
    unravel(bi, batch, br, c);
    const float *A = cf(a) + bcast_offset(sa, ra - 2, c, br) * m * k;
    const float *B = cf(b) + bcast_offset(sb, rb - 2, c, br) * k * n;
    float *C = wf(out) + bi * m * n;
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double s = 0;
        for (int64_t p = 0; p < k; p++) s += (double)A[i * k + p] * B[p * n + j];
        C[i * n + j] = (float)s;
      }
  }
}

/* y = x @ W^T + b over the last dimension of x; W is [out, in]. */
static void op_linear(const RtTensor *x, const RtTensor *w, const RtTensor *bias, RtTensor *out) {
  int64_t fin = w->shape[1], fout = w->shape[0], rows = prod(x->shape, 0, x->rank - 1);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < fout; o++) {
      double s = bias ? cf(bias)[o] : 0.0;
      for (int64_t i = 0; i < fin; i++) s += (double)cf(x)[r * fin + i] * cf(w)[o * fin + i];
      wf(out)[r * fout + o] = (float)s;
    }
}

/* --- softmax ---------------------------------------------------------------- */

/* softmax or log_softmax along axis, subtracting the maximum first. */
static void op_softmax(const RtTensor *x, RtTensor *out, int64_t axis, int logarithm) {
  int64_t outer, len, inner;
  split_at(x, axis, &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t in = 0; in < inner; in++) {
      const float *src = cf(x) + o * len * inner + in;
      float *dst = wf(out) + o * len * inner + in;
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < len; j++) mx = max_nan(mx, src[j * inner]);
      for (int64_t j = 0; j < len; j++) sum += exp(src[j * inner] - mx);
      for (int64_t j = 0; j < len; j++)
        dst[j * inner] = (float)(logarithm ? src[j * inner] - mx - log(sum)
                                           : exp(src[j * inner] - mx) / sum);
    }
}

/* --- layout ----------------------------------------------------------------- */

/* reshape and flatten: the same elements in the same order. */
static void op_copy(const RtTensor *x, RtTensor *out) {
  IR_ASSERT(rt_tensor_nbytes(x) == rt_tensor_nbytes(out));
  memcpy(out->data, x->data, rt_tensor_nbytes(out));
}

/* out[c] = x[c permuted back]: output dimension i is input dimension perm[i]. */
static void op_transpose(const RtTensor *x, RtTensor *out, const Dim *perm) {
  int64_t stride[RT_MAX_RANK], c[RT_MAX_RANK], n = rt_tensor_numel(out);
  size_t es = rt_dtype_size(x->dtype);
  for (int k = 0; k < x->rank; k++) stride[k] = prod(x->shape, k + 1, x->rank);
  for (int64_t i = 0; i < n; i++) {
    unravel(i, out->shape, out->rank, c);
    int64_t off = 0;
    for (int k = 0; k < out->rank; k++) off += c[k] * stride[perm[k]];
    memcpy((char *)out->data + i * es, (const char *)x->data + off * es, es);
  }
}

static void op_concat(const RtTensor *vals, const int *in, int nin, RtTensor *out, int64_t axis) {
  size_t es = rt_dtype_size(out->dtype);
  int64_t outer = prod(out->shape, 0, (int)axis), inner = prod(out->shape, (int)axis + 1, out->rank);
  char *dst = out->data;
  for (int64_t o = 0; o < outer; o++)
    for (int k = 0; k < nin; k++) {
      const RtTensor *x = &vals[in[k]];
      size_t chunk = (size_t)(x->shape[axis] * inner) * es;
      memcpy(dst, (const char *)x->data + (size_t)o * chunk, chunk);
      dst += chunk;
    }
}

/* Output index j along axis reads input index start + j*step (start is
 * canonical; end only decided the output's extent). */
static void op_slice(const RtTensor *x, RtTensor *out, const AttrAxis *a) {
  size_t es = rt_dtype_size(x->dtype);
  int64_t outer, len, inner, m = out->shape[a->axis];
  split_at(x, a->axis, &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < m; j++) {
      int64_t src = (o * len + a->start + j * a->step) * inner, dst = (o * m + j) * inner;
      memcpy((char *)out->data + dst * es, (const char *)x->data + src * es, (size_t)inner * es);
    }
}

/* --- reductions ------------------------------------------------------------- */

/* sum, mean or max over the axes in a->list.  Each output element walks
 * its reduced sub-block: the kept coordinates come from the output index,
 * the reduced ones from a second counter. */
static void op_reduce(const RtTensor *x, RtTensor *out, const AttrDims *a, OpKind op) {
  int reduced[RT_MAX_RANK] = {0}, nk = 0, nr = 0;
  int64_t kshape[RT_MAX_RANK], rshape[RT_MAX_RANK], kc[RT_MAX_RANK], rc[RT_MAX_RANK];
  for (int i = 0; i < a->nlist; i++) reduced[a->list[i]] = 1;
  for (int k = 0; k < x->rank; k++) {
    if (reduced[k]) rshape[nr++] = x->shape[k];
    else kshape[nk++] = x->shape[k];
  }
  int64_t nout = prod(kshape, 0, nk), count = prod(rshape, 0, nr);
  for (int64_t o = 0; o < nout; o++) {
    unravel(o, kshape, nk, kc);
    double acc = op == OP_MAX ? -INFINITY : 0.0;
    for (int64_t r = 0; r < count; r++) {
      unravel(r, rshape, nr, rc);
      int64_t off = 0;
      for (int k = 0, ik = 0, ir = 0; k < x->rank; k++)
        off = off * x->shape[k] + (reduced[k] ? rc[ir++] : kc[ik++]);
      double v = cf(x)[off];
      acc = op == OP_MAX ? max_nan(acc, v) : acc + v;
    }
    wf(out)[o] = (float)(op == OP_MEAN ? acc / (double)count : acc);
  }
}

/* out[.., j, ..] = max over k < pieces of x[.., j*pieces + k, ..]. */
static void op_maxout(const RtTensor *x, RtTensor *out, const AttrAxis *a) {
  int64_t outer, len, inner, m = out->shape[a->axis];
  split_at(x, a->axis, &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < m; j++)
      for (int64_t in = 0; in < inner; in++) {
        double acc = -INFINITY;
        for (int64_t k = 0; k < a->pieces; k++)
          acc = max_nan(acc, cf(x)[(o * len + j * a->pieces + k) * inner + in]);
        wf(out)[(o * m + j) * inner + in] = (float)acc;
      }
}

/* --- losses ------------------------------------------------------------------ */

/* Records loss value v of element i: stored when the reduction is none,
 * always added to *total. */
static void loss_put(RtTensor *out, int red, int64_t i, double v, double *total) {
  if (red == RED_NONE) wf(out)[i] = (float)v;
  *total += v;
}

static void loss_finish(RtTensor *out, int red, double total, int64_t n) {
  if (red == RED_SUM) wf(out)[0] = (float)total;
  if (red == RED_MEAN) wf(out)[0] = (float)(total / (double)n);
}

static int64_t label_at(const RtTensor *y, int64_t i) {
  return y->dtype == DT_I64 ? ((const int64_t *)y->data)[i] : ((const int32_t *)y->data)[i];
}

/* --- indexing ------------------------------------------------------------------ */

/* Element i of a gather (select 0) or index_select (select 1) whose
 * result has shape oshape (rank orank) reads x at the flat offset this
 * returns; *pos is the position in idx it took its index from and *k the
 * index, or the offset is -1 when k is outside x's axis.  A negative
 * index k >= -extent counts from the end (x[k] of NumPy and ONNX). */
static int64_t index_source(const RtTensor *x, const RtTensor *idx, const int64_t *oshape, int orank, int64_t axis,
                            int select, int64_t i, int64_t *pos, int64_t *k) {
  int64_t c[RT_MAX_RANK], xc[RT_MAX_RANK];
  unravel(i, oshape, orank, c);
  int ri = select ? idx->rank : 0;
  *pos = i;
  if (select) {
    *pos = 0;
    for (int j = 0; j < ri; j++) *pos = *pos * idx->shape[j] + c[axis + j];
  }
  *k = label_at(idx, *pos);
  for (int d = 0; d < x->rank; d++) xc[d] = d < axis || !select ? c[d] : c[d + ri - 1];
  xc[axis] = *k < 0 ? *k + x->shape[axis] : *k;
  if (xc[axis] < 0 || xc[axis] >= x->shape[axis]) return -1;
  int64_t off = 0;
  for (int d = 0; d < x->rank; d++) off = off * x->shape[d] + xc[d];
  return off;
}

static RtStatus index_range_error(const Node *n, int64_t pos, int64_t k, int64_t extent, int64_t axis, RtError *err) {
  return rt_fail(err, RT_ERR_SHAPE, "%s%s%s: index %lld at position %lld of the index is out of range for axis %lld of extent %lld",
                 ir_ops[n->op == OP_GATHER_GRAD ? OP_GATHER : n->op].name, n->name ? " " : "", n->name ? n->name : "",
                 (long long)k, (long long)pos, (long long)axis, (long long)extent);
}

/* gather, index_select: every index is checked before anything is read. */
static RtStatus op_gather(const Node *n, const RtTensor *x, const RtTensor *idx, RtTensor *out, RtError *err) {
  int select = n->op == OP_INDEX_SELECT;
  int64_t axis = n->attr.axis.axis, pos, k;
  for (int64_t i = 0; i < rt_tensor_numel(out); i++) {
    int64_t off = index_source(x, idx, out->shape, out->rank, axis, select, i, &pos, &k);
    if (off < 0) return index_range_error(n, pos, k, x->shape[axis], axis, err);
    wf(out)[i] = cf(x)[off];
  }
  return RT_OK;
}

/* gather_grad (dy, x, index): dy added into zeros at the places read. */
static RtStatus op_gather_grad(const Node *n, const RtTensor *dy, const RtTensor *x, const RtTensor *idx, RtTensor *out,
                               RtError *err) {
  int select = dy->rank != idx->rank;
  int64_t axis = n->attr.axis.axis, pos, k;
  memset(out->data, 0, rt_tensor_nbytes(out));
  for (int64_t i = 0; i < rt_tensor_numel(dy); i++) {
    int64_t off = index_source(x, idx, dy->shape, dy->rank, axis, select, i, &pos, &k);
    if (off < 0) return index_range_error(n, pos, k, x->shape[axis], axis, err);
    wf(out)[off] += cf(dy)[i];
  }
  return RT_OK;
}

/* cross_entropy and nll_loss over x [N, C, d...] (inner = prod d) and
 * targets [N, d...]: target t = n * inner + i reads class y_t of x at
 * (n * C + y_t) * inner + i.  A target equal to ignore_index adds 0 and is
 * not counted; mean divides by the count (0/0 = NaN when every target is
 * ignored, as PyTorch).  Targets are checked before anything is computed. */
typedef struct ClassLoss {
  int64_t n, classes, inner;
  int ce;                   /* cross_entropy (logits), else nll_loss */
  const AttrLoss *a;
} ClassLoss;

static ClassLoss class_loss(const RtTensor *x, int ce, const AttrLoss *a) {
  return (ClassLoss){x->shape[0], x->shape[1], prod(x->shape, 2, x->rank), ce, a};
}

static int64_t class_count(const ClassLoss *c, const RtTensor *y) {
  int64_t k = 0;
  for (int64_t t = 0; t < c->n * c->inner; t++) k += label_at(y, t) != c->a->ignore_index;
  return k;
}

/* log sum exp of the logits of target t (its max subtracted first). */
static double class_lse(const ClassLoss *c, const float *x, int64_t t) {
  const float *col = x + (t / c->inner) * c->classes * c->inner + t % c->inner;
  double mx = -INFINITY, sum = 0;
  for (int64_t j = 0; j < c->classes; j++) mx = max_nan(mx, col[j * c->inner]);
  for (int64_t j = 0; j < c->classes; j++) sum += exp(col[j * c->inner] - mx);
  return mx + log(sum);
}

static RtStatus op_class_loss(const RtTensor *x, const RtTensor *y, RtTensor *out, int ce, const AttrLoss *a,
                              RtError *err) {
  ClassLoss c = class_loss(x, ce, a);
  for (int64_t t = 0; t < c.n * c.inner; t++)
    if (label_at(y, t) != a->ignore_index && (label_at(y, t) < 0 || label_at(y, t) >= c.classes))
      return rt_fail(err, RT_ERR_SHAPE, "%s: label %lld at index %lld is out of range for %lld classes",
                     ce ? "cross_entropy" : "nll_loss", (long long)label_at(y, t), (long long)t, (long long)c.classes);
  double total = 0;
  for (int64_t t = 0; t < c.n * c.inner; t++) {
    int64_t k = label_at(y, t), at = ((t / c.inner) * c.classes + k) * c.inner + t % c.inner;
    double v = k == a->ignore_index ? 0.0 : (ce ? class_lse(&c, cf(x), t) : 0.0) - cf(x)[at];
    loss_put(out, a->reduction, t, v, &total);
  }
  loss_finish(out, a->reduction, total, a->reduction == RED_MEAN ? class_count(&c, y) : 1);
  return RT_OK;
}

/* The per-element losses of mse_loss and l1_loss. */
static double mse_elem(double x, double y) { return (x - y) * (x - y); }
static double l1_elem(double x, double y) { return fabs(x - y); }

static void op_pointwise_loss(const RtTensor *x, const RtTensor *y, RtTensor *out, int red,
                              double (*elem)(double, double)) {
  int64_t n = rt_tensor_numel(x);
  double total = 0;
  for (int64_t i = 0; i < n; i++) loss_put(out, red, i, elem(cf(x)[i], cf(y)[i]), &total);
  loss_finish(out, red, total, n);
}

/* bce_with_logits: elemwise.c's one formula per element, summed in double. */
static void op_bce_logits(const Graph *g, const RtTensor *x, const RtTensor *y, RtTensor *out, int red) {
  Program p;
  kir_program_init(&p, g);
  Expr *e = ir_bce_logits_item(&p, kx_local(&p, 0, DT_F32), kx_local(&p, 1, DT_F32));
  int64_t n = rt_tensor_numel(x);
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    float v[2] = {cf(x)[i], cf(y)[i]};
    loss_put(out, red, i, eval(e, v), &total);
  }
  loss_finish(out, red, total, n);
  kir_program_free(&p);
}

/* torch.pairwise_distance(a, b, p=2, eps=1e-6) = ||a - b + eps||_2 of row i. */
static double pair_dist(const RtTensor *a, const RtTensor *b, int64_t i) {
  int64_t d = a->shape[1];
  double s = 0;
  for (int64_t j = 0; j < d; j++) {
    double v = (double)cf(a)[i * d + j] - cf(b)[i * d + j] + 1e-6;
    s += v * v;
  }
  return sqrt(s);
}

static void op_triplet(const RtTensor *an, const RtTensor *po, const RtTensor *ne, RtTensor *out,
                       const AttrLoss *a) {
  int64_t n = an->shape[0];
  double total = 0;
  for (int64_t i = 0; i < n; i++)
    loss_put(out, a->reduction, i, fmax(pair_dist(an, po, i) - pair_dist(an, ne, i) + a->margin, 0), &total);
  loss_finish(out, a->reduction, total, n);
}

/* --- gradients ------------------------------------------------------------------ */

/* dy broadcast to x's shape; with mean, divided by how many x elements
 * each dy element stands for. */
static void op_expand_as(const RtTensor *dy, RtTensor *out, int mean) {
  int64_t c[RT_MAX_RANK], n = rt_tensor_numel(out);
  double scale = mean ? (double)rt_tensor_numel(dy) / (double)n : 1.0;
  for (int64_t i = 0; i < n; i++) {
    unravel(i, out->shape, out->rank, c);
    wf(out)[i] = (float)(cf(dy)[bcast_offset(dy->shape, dy->rank, c, out->rank)] * scale);
  }
}

/* softmax: y * (dy - sum(dy * y)); log_softmax: dy - exp(y) * sum(dy). */
static void op_softmax_grad(const RtTensor *dy, const RtTensor *y, RtTensor *out, int64_t axis, int logarithm) {
  int64_t outer, len, inner;
  split_at(y, axis, &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t in = 0; in < inner; in++) {
      double s = 0;
      for (int64_t j = 0; j < len; j++) {
        int64_t k = (o * len + j) * inner + in;
        s += logarithm ? cf(dy)[k] : (double)cf(dy)[k] * cf(y)[k];
      }
      for (int64_t j = 0; j < len; j++) {
        int64_t k = (o * len + j) * inner + in;
        wf(out)[k] = (float)(logarithm ? cf(dy)[k] - exp(cf(y)[k]) * s : cf(y)[k] * (cf(dy)[k] - s));
      }
    }
}

static void op_slice_grad(const RtTensor *dy, RtTensor *out, const AttrAxis *a) {
  int64_t outer, len, inner, m = dy->shape[a->axis];
  split_at(out, a->axis, &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < m; j++)
      for (int64_t in = 0; in < inner; in++)
        wf(out)[(o * len + a->start + j * a->step) * inner + in] = cf(dy)[(o * m + j) * inner + in];
}

/* The gradient of a max reduction is shared by the elements equal to the
 * max, as torch.amax does. */
static void op_max_grad(const RtTensor *dy, const RtTensor *x, const RtTensor *y, RtTensor *out, const AttrDims *a) {
  int reduced[RT_MAX_RANK] = {0};
  int64_t c[RT_MAX_RANK], kshape[RT_MAX_RANK], kc[RT_MAX_RANK], n = rt_tensor_numel(x);
  int nk = 0;
  for (int i = 0; i < a->nlist; i++) reduced[a->list[i]] = 1;
  for (int k = 0; k < x->rank; k++)
    if (!reduced[k]) kshape[nk++] = x->shape[k];
  double *ties = rt_xcalloc((size_t)rt_tensor_numel(y) + 1, sizeof *ties);
  IR_ASSERT(ties);
  for (int pass = 0; pass < 2; pass++) /* count the maxima of each group, then share dy among them */
    for (int64_t i = 0; i < n; i++) {
      unravel(i, x->shape, x->rank, c);
      for (int k = 0, j = 0; k < x->rank; k++)
        if (!reduced[k]) kc[j++] = c[k];
      int64_t o = 0;
      for (int k = 0; k < nk; k++) o = o * kshape[k] + kc[k];
      int is_max = cf(x)[i] == cf(y)[o];
      if (pass == 0) ties[o] += is_max;
      else wf(out)[i] = is_max ? (float)(cf(dy)[o] / ties[o]) : 0.0f;
    }
  rt_xfree(ties);
}

/* The first maximum of each group of pieces gets the gradient. */
static void op_maxout_grad(const RtTensor *dy, const RtTensor *x, RtTensor *out, const AttrAxis *a) {
  int64_t outer, len, inner, m = dy->shape[a->axis];
  split_at(x, a->axis, &outer, &len, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < m; j++)
      for (int64_t in = 0; in < inner; in++) {
        int64_t best = 0;
        for (int64_t k = 1; k < a->pieces; k++)
          if (cf(x)[(o * len + j * a->pieces + k) * inner + in] > cf(x)[(o * len + j * a->pieces + best) * inner + in])
            best = k;
        wf(out)[(o * len + j * a->pieces + best) * inner + in] = cf(dy)[(o * m + j) * inner + in];
      }
}

/* cross_entropy: (softmax(x) - onehot(y)) times the loss gradient of each
 * target; nll_loss: minus that gradient at the target's class; nothing for
 * an ignored target. */
static void op_class_grad(const RtTensor *dl, const RtTensor *x, const RtTensor *y, RtTensor *out, int ce,
                          const AttrLoss *a) {
  ClassLoss c = class_loss(x, ce, a);
  double count = a->reduction == RED_MEAN ? (double)class_count(&c, y) : 1.0;
  for (int64_t t = 0; t < c.n * c.inner; t++) {
    int64_t k = label_at(y, t), base = (t / c.inner) * c.classes * c.inner + t % c.inner;
    double g = (a->reduction == RED_NONE ? cf(dl)[t] : cf(dl)[0]) / count, lse = ce ? class_lse(&c, cf(x), t) : 0;
    for (int64_t j = 0; j < c.classes; j++) {
      double v = (ce ? exp(cf(x)[base + j * c.inner] - lse) : 0.0) - (j == k);
      wf(out)[base + j * c.inner] = k == a->ignore_index ? 0.0f : (float)(v * g);
    }
  }
}

/* Each row of the last ndim axes: (x - mean) / sqrt(var + eps) * w + b,
 * with the biased variance, in double. */
static void op_layer_norm(const Node *n, const RtTensor *vals, RtTensor *out) {
  const RtTensor *x = &vals[n->in[0]];
  const float *w = n->nin > 1 ? cf(&vals[n->in[1]]) : NULL, *b = n->nin > 2 ? cf(&vals[n->in[2]]) : NULL;
  int64_t len = prod(x->shape, x->rank - n->attr.scalar.mode, x->rank), rows = rt_tensor_numel(x) / (len ? len : 1);
  for (int64_t r = 0; r < rows; r++) {
    const float *src = cf(x) + r * len;
    double mean = 0, var = 0;
    for (int64_t j = 0; j < len; j++) mean += src[j];
    mean /= (double)len;
    for (int64_t j = 0; j < len; j++) var += (src[j] - mean) * (src[j] - mean);
    double inv = 1.0 / sqrt(var / (double)len + n->attr.scalar.f);
    for (int64_t j = 0; j < len; j++)
      wf(out)[r * len + j] = (float)((src[j] - mean) * inv * (w ? w[j] : 1.0) + (b ? b[j] : 0.0));
  }
}

/* tril: element (..., i, j) is x's where j <= i + diagonal, else value. */
static void op_tril(const RtTensor *x, RtTensor *out, const AttrScalar *a) {
  int64_t rows = x->shape[x->rank - 2], cols = x->shape[x->rank - 1];
  for (int64_t e = 0; e < rt_tensor_numel(x); e++) {
    int64_t j = e % cols, i = e / cols % rows;
    wf(out)[e] = j <= i + a->mode ? cf(x)[e] : (float)a->f;
  }
}

/* --- optimizer steps (torch.optim, torch 1.13) ------------------------------------ */

static float scalar(const RtTensor *t) { return cf(t)[0]; }

static void op_sgd(const Node *n, RtTensor *vals) {
  const double *h = n->attr.hyper.hp;
  float *p = wf(&vals[n->in[0]]), *buf = n->nin > 4 ? wf(&vals[n->in[4]]) : NULL;
  const float *g = cf(&vals[n->in[1]]);
  double lr = scalar(&vals[n->in[2]]) * h[HP_LR_SCALE], step = scalar(&vals[n->in[3]]);
  int64_t sz = rt_tensor_numel(&vals[n->in[0]]);
  for (int64_t i = 0; i < sz; i++) {
    double d = g[i] + h[HP_WEIGHT_DECAY] * p[i];
    if (buf) {
      buf[i] = (float)(step <= 1 ? d : h[HP_MOMENTUM] * buf[i] + (1 - h[HP_DAMPENING]) * d);
      d = h[HP_NESTEROV] != 0 ? d + h[HP_MOMENTUM] * buf[i] : buf[i];
    }
    p[i] = (float)(p[i] - lr * d);
  }
}

static void op_adam(const Node *n, RtTensor *vals) {
  const double *h = n->attr.hyper.hp;
  float *p = wf(&vals[n->in[0]]), *m = wf(&vals[n->in[4]]), *v = wf(&vals[n->in[5]]);
  const float *g = cf(&vals[n->in[1]]);
  double lr = scalar(&vals[n->in[2]]) * h[HP_LR_SCALE], t = scalar(&vals[n->in[3]]);
  double b1 = h[HP_BETA1], b2 = h[HP_BETA2], bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
  int64_t sz = rt_tensor_numel(&vals[n->in[0]]);
  for (int64_t i = 0; i < sz; i++) {
    double d = g[i], w = p[i];
    if (h[HP_DECOUPLED] != 0) w *= 1 - lr * h[HP_WEIGHT_DECAY];
    else d += h[HP_WEIGHT_DECAY] * w;
    m[i] = (float)(b1 * m[i] + (1 - b1) * d);
    v[i] = (float)(b2 * v[i] + (1 - b2) * d * d);
    double denom = sqrt(v[i]) / sqrt(bc2) + h[HP_EPS];
    p[i] = (float)(w - lr / bc1 * m[i] / denom);
  }
}

static void op_rmsprop(const Node *n, RtTensor *vals) {
  const double *h = n->attr.hyper.hp;
  float *p = wf(&vals[n->in[0]]), *sq = wf(&vals[n->in[4]]), *buf = n->nin > 5 ? wf(&vals[n->in[5]]) : NULL;
  const float *g = cf(&vals[n->in[1]]);
  double lr = scalar(&vals[n->in[2]]) * h[HP_LR_SCALE], alpha = n->attr.hyper.alpha;
  int64_t sz = rt_tensor_numel(&vals[n->in[0]]);
  for (int64_t i = 0; i < sz; i++) {
    double d = g[i] + h[HP_WEIGHT_DECAY] * p[i];
    sq[i] = (float)(alpha * sq[i] + (1 - alpha) * d * d);
    double upd = d / (sqrt(sq[i]) + h[HP_EPS]);
    if (buf) upd = buf[i] = (float)(h[HP_MOMENTUM] * buf[i] + upd);
    p[i] = (float)(p[i] - lr * upd);
  }
}

static void op_adagrad(const Node *n, RtTensor *vals) {
  const double *h = n->attr.hyper.hp;
  float *p = wf(&vals[n->in[0]]), *sum = wf(&vals[n->in[4]]);
  const float *g = cf(&vals[n->in[1]]);
  double lr = scalar(&vals[n->in[2]]) * h[HP_LR_SCALE], t = scalar(&vals[n->in[3]]);
  double clr = lr / (1 + (t - 1) * h[HP_LR_DECAY]);
  int64_t sz = rt_tensor_numel(&vals[n->in[0]]);
  for (int64_t i = 0; i < sz; i++) {
    double d = g[i] + h[HP_WEIGHT_DECAY] * p[i];
    sum[i] = (float)(sum[i] + d * d);
    p[i] = (float)(p[i] - clr * d / (sqrt(sum[i]) + h[HP_EPS]));
  }
}

/* --- normalisation and dropout --------------------------------------------------- */

/* (x - mean) / sqrt(var + eps) * weight + bias with the running statistics. */
static void op_batchnorm(const RtTensor *vals, const int *in, RtTensor *out, double eps) {
  const RtTensor *x = &vals[in[0]];
  const float *w = cf(&vals[in[1]]), *b = cf(&vals[in[2]]), *rm = cf(&vals[in[3]]), *rv = cf(&vals[in[4]]);
  int64_t outer, chans, inner;
  split_at(x, 1, &outer, &chans, &inner);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t ch = 0; ch < chans; ch++) {
      double scale = w[ch] / sqrt((double)rv[ch] + eps);
      for (int64_t i = 0; i < inner; i++) {
        int64_t k = (o * chans + ch) * inner + i;
        wf(out)[k] = (float)((cf(x)[k] - rm[ch]) * scale + b[ch]);
      }
    }
}

/* Inverted dropout: kept elements are scaled by 1 / (1 - p). */
static void op_dropout_train(const RtTensor *x, const RtTensor *step, RtTensor *out, const AttrRandom *a) {
  uint64_t key = ir_random_key((uint64_t)a->seed, (uint64_t)a->salt), s = (uint64_t)cf(step)[0];
  int64_t n = rt_tensor_numel(out);
  float scale = (float)(1.0 / (1.0 - a->p));
  for (int64_t i = 0; i < n; i++)
    wf(out)[i] = ir_random_uniform(key, (s << 32) + (uint64_t)i) >= (float)a->p ? cf(x)[i] * scale : 0.0f;
}

/* The random ops: element i of step s from counter (s << 32) + i, or the
 * pair from 2i for a normal (ir_random_normal); bernoulli is 1 where the
 * uniform is below p.  Without a step operand the step is 0. */
static void op_random(const Node *n, const RtTensor *vals, RtTensor *out) {
  uint64_t key = ir_random_key((uint64_t)n->attr.random.seed, (uint64_t)n->attr.random.salt), base = 0;
  int nop = ir_ops[n->op].min_in;
  if (n->nin > nop) base = (uint64_t)cf(&vals[n->in[nop]])[0] << IR_RANDOM_STEP_SHIFT;
  int64_t count = rt_tensor_numel(out);
  for (int64_t i = 0; i < count; i++) {
    uint64_t c = base + (uint64_t)i;
    switch ((int)n->op) { /* the random ops only */
    case OP_RAND: case OP_RAND_LIKE: wf(out)[i] = ir_random_uniform(key, c); break;
    case OP_RANDN: case OP_RANDN_LIKE: wf(out)[i] = ir_random_normal(key, base + 2 * (uint64_t)i); break;
    case OP_BERNOULLI: wf(out)[i] = ir_random_uniform(key, c) < cf(&vals[n->in[0]])[i] ? 1.0f : 0.0f; break;
    }
  }
}

/* running = (1 - m) running + m stat, the statistic made unbiased (n / (n - 1)
 * with n the samples per channel) for the variance. */
static void op_running_update(RtTensor *vals, const Node *n) {
  RtTensor *run = &vals[n->in[0]];
  const RtTensor *stat = &vals[n->in[1]], *like = &vals[n->in[2]];
  int64_t c = rt_tensor_numel(run), per = rt_tensor_numel(like) / (c ? c : 1);
  double m = n->attr.hyper.hp[HP_MOMENTUM], f = n->attr.hyper.unbiased && per > 1 ? (double)per / (double)(per - 1) : 1.0;
  for (int64_t i = 0; i < c; i++) wf(run)[i] = (float)((1 - m) * cf(run)[i] + m * cf(stat)[i] * f);
}

/* --- checking the caller's tensors ------------------------------------------- */

static const char *source_kind(const Node *n) {
  return n->op == OP_INPUT ? "input" : n->op == OP_STATE ? "optimizer state" : "parameter";
}

static int is_source(const Node *n) { return n->op == OP_INPUT || n->op == OP_PARAM || n->op == OP_STATE; }

/* The dtype and rank of t against node n's declared type. */
static RtStatus check_type(const Graph *g, const Node *n, const RtTensor *t, RtError *err) {
  char want[128], got[128];
  ir_type_str(g, n->dtype, &n->shape, want, sizeof want);
  rt_shape_str(got, sizeof got, t->dtype, t->rank, t->shape);
  if (t->dtype != n->dtype)
    return rt_fail(err, RT_ERR_DTYPE, "%s '%s' is %s but the model declares %s", source_kind(n), n->name,
                   got, want);
  if (t->rank != n->shape.rank)
    return rt_fail(err, RT_ERR_SHAPE, "%s '%s' has rank %d (%s) but the model declares %s", source_kind(n),
                   n->name, t->rank, got, want);
  if (!t->data && rt_tensor_numel(t) > 0)
    return rt_fail(err, RT_ERR_SHAPE, "%s '%s' has no data", source_kind(n), n->name);
  return RT_OK;
}

/* Every dimension of t against n's shape with symbols evaluated. */
static RtStatus check_source(const Graph *g, const Node *n, const RtTensor *t, const int64_t *symvals,
                             RtError *err) {
  RtStatus st = check_type(g, n, t, err);
  if (st) return st;
  for (int k = 0; k < t->rank; k++) {
    int64_t want = ir_dim_value(g, n->shape.d[k], symvals);
    if (t->shape[k] != want) {
      char decl[128];
      ir_type_str(g, n->dtype, &n->shape, decl, sizeof decl);
      return rt_fail(err, RT_ERR_SHAPE, "%s '%s': dimension %d is %lld but must be %lld (declared %s)",
                     source_kind(n), n->name, k, (long long)t->shape[k], (long long)want, decl);
    }
  }
  return RT_OK;
}

/* Binds or checks one symbolic dimension: dimension k of input n is v. */
static RtStatus bind_dim(const Graph *g, const Node *n, int k, int64_t v, int64_t *symvals,
                         int *bound_by, RtError *err) {
  int s = DIM_SYM_ID(n->shape.d[k]);
  const char *sym = g->syms[s].name;
  if (bound_by[s] >= 0) {
    if (symvals[s] == v) return RT_OK;
    return rt_fail(err, RT_ERR_SHAPE, "input '%s': dimension %d is %lld but %s = %lld from input '%s'", n->name, k,
                   (long long)v, sym, (long long)symvals[s], g->nodes[bound_by[s]].name);
  }
  if (g->syms[s].max > 0 && v > g->syms[s].max)
    return rt_fail(err, RT_ERR_SHAPE, "input '%s': dimension %d is %lld but %s is at most %lld", n->name, k,
                   (long long)v, sym, (long long)g->syms[s].max);
  symvals[s] = v;
  bound_by[s] = (int)(n - g->nodes);
  return RT_OK;
}

static int symbol_used(const Graph *g, int s) {
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].shape.rank; k++)
      if (g->nodes[i].shape.d[k] == DIM_SYM(s)) return 1;
  return 0;
}

RtStatus ir_bind_symbols(const Graph *g, const RtTensor *vals, int64_t *symvals, RtError *err) {
  int bound_by[IR_MAX_SYMS];
  for (int s = 0; s < g->nsyms; s++) bound_by[s] = -1, symvals[s] = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_INPUT) continue;
    RtStatus st = check_type(g, n, &vals[i], err);
    for (int k = 0; !st && k < n->shape.rank; k++) {
      Dim d = n->shape.d[k];
      if (DIM_IS_SYM(d))
        st = bind_dim(g, n, k, vals[i].shape[k], symvals, bound_by, err);
      else if (vals[i].shape[k] != d)
        st = rt_fail(err, RT_ERR_SHAPE, "input '%s': dimension %d is %lld but the model declares %lld", n->name, k,
                     (long long)vals[i].shape[k], (long long)d);
    }
    if (st) return st;
  }
  for (int s = 0; s < g->nsyms; s++)
    if (bound_by[s] < 0 && symbol_used(g, s))
      return rt_fail(err, RT_ERR_SHAPE, "symbol %s is not bound: no input has it as a dimension", g->syms[s].name);
  return RT_OK;
}

/* --- the interpreter ----------------------------------------------------------- */

/* Allocates node id's result and computes it from its operands. */
/* The scan fills its projections; a second projection of one result
 * copies the first. */
static RtStatus scan_out_again(const Graph *g, int id, RtTensor *vals, RtError *err) {
  const Node *n = &g->nodes[id];
  int first = id;
  for (int j = n->in[0] + 1; j < id && first == id; j++)
    if (g->nodes[j].op == OP_SCAN_OUT && g->nodes[j].in[0] == n->in[0] && g->nodes[j].attr.scan.index == n->attr.scan.index)
      first = j;
  if (first == id) return RT_OK; /* filled by the scan */
  RtStatus st = rt_tensor_alloc(&vals[id], DT_F32, vals[first].rank, vals[first].shape, err);
  if (!st) op_copy(&vals[first], &vals[id]);
  return st;
}

static RtStatus run_node(const Graph *g, int id, RtTensor *vals, const int64_t *symvals, const InterpOpts *o,
                         RtError *err) {
  if (g->nodes[id].op == OP_SCAN_OUT) return scan_out_again(g, id, vals, err);
  const Node *n = &g->nodes[id];
  int64_t shape[IR_MAX_RANK];
  for (int k = 0; k < n->shape.rank; k++) shape[k] = ir_dim_value(g, n->shape.d[k], symvals);
  RtStatus st = rt_tensor_alloc(&vals[id], n->dtype, n->shape.rank, shape, err);
  if (st) return st;
  RtTensor *out = &vals[id];
  const RtTensor *x = n->nin > 0 ? &vals[n->in[0]] : NULL, *y = n->nin > 1 ? &vals[n->in[1]] : NULL;
  const Attrs *a = &n->attr;
  switch (n->op) {
  case OP_INPUT:
  case OP_PARAM:
  case OP_STATE: IR_ASSERT(!"sources are not computed"); break;
  case OP_CONST: wf(out)[0] = (float)a->scalar.f; break;
  case OP_MATMUL: op_matmul(x, y, out); break;
  case OP_LINEAR: op_linear(x, y, n->nin > 2 ? &vals[n->in[2]] : NULL, out); break;
#define EW(id, ...) case OP_##id:
#include "ir/elemwise.def"
#undef EW
  case OP_EW_GRAD:
  case OP_WHERE:
    op_elemwise(g, n, vals, out);
    break;
  case OP_SOFTMAX: op_softmax(x, out, a->axis.axis, 0); break;
  case OP_LOG_SOFTMAX: op_softmax(x, out, a->axis.axis, 1); break;
  case OP_RESHAPE:
  case OP_FLATTEN: op_copy(x, out); break;
  case OP_TRANSPOSE: op_transpose(x, out, a->dims.list); break;
  case OP_CONCAT: op_concat(vals, n->in, n->nin, out, a->axis.axis); break;
  case OP_SLICE: op_slice(x, out, &a->axis); break;
  case OP_GATHER:
  case OP_INDEX_SELECT: return op_gather(n, x, y, out, err);
  case OP_SUM:
  case OP_MEAN:
  case OP_MAX: op_reduce(x, out, &a->dims, n->op); break;
  case OP_MAXOUT: op_maxout(x, out, &a->axis); break;
  case OP_CONV2D:
  case OP_CONV1D:
  case OP_CONV_TRANSPOSE2D:
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D:
  case OP_GLOBAL_AVG_POOL:
  case OP_UPSAMPLE:
  case OP_PAD:
  case OP_CONV2D_GRAD_WEIGHT:
  case OP_MAX_POOL2D_GRAD:
  case OP_AVG_POOL2D_GRAD:
  case OP_UPSAMPLE_GRAD:
  case OP_PAD_GRAD:
    ir_interp_conv(g, n, vals, out); /* conv.c */
    break;
  case OP_CROSS_ENTROPY:
  case OP_NLL_LOSS:
    return op_class_loss(x, y, out, n->op == OP_CROSS_ENTROPY, &a->loss, err);
  case OP_BCE_LOGITS: op_bce_logits(g, x, y, out, a->loss.reduction); break;
  case OP_MSE_LOSS: op_pointwise_loss(x, y, out, a->loss.reduction, mse_elem); break;
  case OP_L1_LOSS: op_pointwise_loss(x, y, out, a->loss.reduction, l1_elem); break;
  case OP_TRIPLET_LOSS: op_triplet(x, y, &vals[n->in[2]], out, &a->loss); break;
  case OP_EXPAND_AS: op_expand_as(x, out, a->expand.mean); break;
  case OP_SOFTMAX_GRAD: op_softmax_grad(x, y, out, a->axis.axis, 0); break;
  case OP_LOG_SOFTMAX_GRAD: op_softmax_grad(x, y, out, a->axis.axis, 1); break;
  case OP_SLICE_GRAD: op_slice_grad(x, out, &a->axis); break;
  case OP_MAX_GRAD: op_max_grad(x, y, &vals[n->in[2]], out, &a->dims); break;
  case OP_MAXOUT_GRAD: op_maxout_grad(x, y, out, &a->axis); break;
  case OP_GATHER_GRAD: return op_gather_grad(n, x, y, &vals[n->in[2]], out, err);
  case OP_CE_GRAD:
  case OP_NLL_GRAD:
    op_class_grad(x, y, &vals[n->in[2]], out, n->op == OP_CE_GRAD, &a->loss);
    break;
  case OP_SGD_STEP: op_sgd(n, vals); break;
  case OP_ADAM_STEP: op_adam(n, vals); break;
  case OP_RMSPROP_STEP: op_rmsprop(n, vals); break;
  case OP_ADAGRAD_STEP: op_adagrad(n, vals); break;
  case OP_BATCHNORM: op_batchnorm(vals, n->in, out, a->hyper.hp[HP_EPS]); break;
  case OP_LAYER_NORM: op_layer_norm(n, vals, out); break;
  case OP_TRIL: op_tril(x, out, &a->scalar); break;
  case OP_DROPOUT: op_copy(x, out); break;
  case OP_STOP_GRADIENT: op_copy(x, out); break;
  case OP_RAND:
  case OP_RANDN:
  case OP_RAND_LIKE:
  case OP_RANDN_LIKE:
  case OP_BERNOULLI:
    op_random(n, vals, out);
    break;
  case OP_DROPOUT_TRAIN: op_dropout_train(x, y, out, &a->random); break;
  case OP_RUNNING_UPDATE: op_running_update(vals, n); break;
  case OP_DIST_MEAN:
  case OP_DIST_SUM:
    op_copy(x, out);
    if (o->collective)
      o->collective(o->collective_ctx, n->op == OP_DIST_MEAN ? IR_COLLECTIVE_MEAN : IR_COLLECTIVE_SUM, wf(out),
                    rt_tensor_numel(out));
    break;
  case OP_SCAN: return ir_interp_scan(g, id, vals, symvals, o, err); /* scan.c */
  case OP_SCAN_OUT: return scan_out_again(g, id, vals, err);
  case OP_COUNT: IR_ASSERT(!"no such op"); break;
  }
  return RT_OK;
}

/* Computed entries are zeroed first, so after a failure the caller can
 * still rt_tensor_free every entry. */
/* A node's failure names its place in the model (file:line:col:) first,
 * once: a scan body's failure already carries its own place. */
static RtStatus at_node(const Node *n, RtStatus st, RtError *err) {
  const Source *src = n->loc.src;
  if (!src || !src->path) return st;
  char where[256];
  int len = snprintf(where, sizeof where, "%s:%d:%d: ", src->path, n->loc.line, n->loc.col);
  if (len <= 0 || (size_t)len >= sizeof where || strncmp(err->msg, src->path, strlen(src->path)) == 0) return st;
  char msg[sizeof err->msg];
  snprintf(msg, sizeof msg, "%s%s", where, err->msg);
  memcpy(err->msg, msg, sizeof msg);
  return st;
}

RtStatus ir_interp(const Graph *g, RtTensor *vals, const int64_t *symvals, const InterpOpts *o,
                   RtError *err) {
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (!is_source(n)) memset(&vals[i], 0, sizeof vals[i]);
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (!is_source(n)) continue;
    RtStatus st = check_source(g, n, &vals[i], symvals, err);
    if (st) return st;
  }
  for (int i = 0; i < g->nnodes; i++) {
    if (is_source(&g->nodes[i])) continue;
    RtStatus st = run_node(g, i, vals, symvals, o, err);
    if (st) return at_node(&g->nodes[i], st, err);
  }
  return RT_OK;
}
