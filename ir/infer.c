/*
 * infer.c — the shape rule of every op.
 *
 * ir_infer computes an op's result type from its operands and attributes,
 * or explains in one sentence why it cannot ("cannot broadcast f32[N, 256]
 * with f32[128]").  It also normalises attributes in place (a negative axis
 * becomes its positive index, a slice end is clamped), so later stages see
 * canonical values.
 *
 * Every extent is computed with the checked arithmetic of ir.h, so an
 * attribute or a shape that would overflow is an error here, and
 * ir_infer refuses a result over IR_MAX_TENSOR_BYTES.
 *
 * Symbolic dimensions follow one rule: a symbol only equals itself.  So
 * broadcasting N against 1 gives N, N against N gives N, and N against 3 is
 * an error, even though N might be 3 at run time.
 */
#include <stdarg.h>
#include <string.h>

#include "ir/elemwise.h"

typedef struct Ctx {
  const Graph *g;
  char *msg;
  size_t len;
} Ctx;

static int fail(Ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Ctx *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->msg, c->len, fmt, ap);
  va_end(ap);
  return -1;
}

static const char *ty(Ctx *c, const Node *n, char *buf) {
  return ir_type_str(c->g, n->dtype, &n->shape, buf, 128);
}

static const char *dimstr(Ctx *c, Dim d, char *buf) {
  if (DIM_IS_SYM(d)) return c->g->syms[DIM_SYM_ID(d)].name;
  snprintf(buf, 32, "%lld", (long long)d);
  return buf;
}

/* Normalises axis against rank (negative counts from the end). */
static int norm_axis(Ctx *c, int64_t *axis, int rank, const char *what) {
  int64_t a = *axis < 0 ? *axis + rank : *axis;
  if (a < 0 || a >= rank)
    return fail(c, "%s %lld is out of range for a tensor of rank %d", what, (long long)*axis, rank);
  *axis = a;
  return 0;
}

static int broadcast(Ctx *c, const Node *x, const Node *y, Shape *out) {
  int r = x->shape.rank > y->shape.rank ? x->shape.rank : y->shape.rank;
  out->rank = r;
  for (int i = 0; i < r; i++) {
    int ix = x->shape.rank - r + i, iy = y->shape.rank - r + i;
    Dim a = ix >= 0 ? x->shape.d[ix] : 1, b = iy >= 0 ? y->shape.d[iy] : 1;
    if (a == b || b == 1)
      out->d[i] = a;
    else if (a == 1)
      out->d[i] = b;
    else {
      char b1[128], b2[128];
      return fail(c, "cannot broadcast %s with %s (dimension %d)", ty(c, x, b1), ty(c, y, b2),
                  i - r);
    }
  }
  return 0;
}

/* The shape every operand broadcasts to (elementwise ops, ew_grad). */
static int broadcast_all(Ctx *c, const Node *const *xs, int nin, Shape *out) {
  Node acc = *xs[0];
  for (int i = 1; i < nin; i++) {
    Shape s;
    if (broadcast(c, &acc, xs[i], &s)) return -1;
    acc.shape = s;
  }
  *out = acc.shape;
  return 0;
}

static int infer_matmul(Ctx *c, const Node *a, const Node *b, Shape *out) {
  char b1[128], b2[128];
  if (a->shape.rank < 1 || b->shape.rank < 1)
    return fail(c, "operands must have rank 1 or more, not %s and %s", ty(c, a, b1), ty(c, b, b2));
  Shape sa = a->shape, sb = b->shape;
  int va = sa.rank == 1, vb = sb.rank == 1;
  if (va) sa = (Shape){2, {1, sa.d[0]}};
  if (vb) sb = (Shape){2, {sb.d[0], 1}};
  Dim k1 = sa.d[sa.rank - 1], k2 = sb.d[sb.rank - 2];
  if (k1 != k2)
    return fail(c, "inner dimensions differ: %s @ %s", ty(c, a, b1), ty(c, b, b2));
  Node ba = {0}, bb = {0};
  ba.shape = sa, bb.shape = sb;
  ba.shape.rank -= 2, bb.shape.rank -= 2;
  ba.dtype = a->dtype, bb.dtype = b->dtype;
  Shape batch;
  if (broadcast(c, &ba, &bb, &batch)) return fail(c, "batch dimensions do not broadcast: %s @ %s", ty(c, a, b1), ty(c, b, b2));
  *out = batch;
  if (!va) out->d[out->rank++] = sa.d[sa.rank - 2];
  if (!vb) out->d[out->rank++] = sb.d[sb.rank - 1];
  return 0;
}

static int infer_linear(Ctx *c, const Node *x, const Node *w, const Node *bias, Shape *out) {
  char b1[128], b2[128];
  if (w->shape.rank != 2) return fail(c, "weight must be [out, in], not %s", ty(c, w, b1));
  if (x->shape.rank < 1 || x->shape.d[x->shape.rank - 1] != w->shape.d[1])
    return fail(c, "input %s does not match weight %s (in = %lld)", ty(c, x, b1), ty(c, w, b2),
                (long long)w->shape.d[1]);
  if (bias && (bias->shape.rank != 1 || bias->shape.d[0] != w->shape.d[0]))
    return fail(c, "bias %s does not match weight %s (out = %lld)", ty(c, bias, b1), ty(c, w, b2),
                (long long)w->shape.d[0]);
  *out = x->shape;
  out->d[out->rank - 1] = w->shape.d[0];
  return 0;
}

/* Element count as a constant times symbols: returns the constant and sets
 * symcount[i] to the power of symbol i. */
static int64_t sym_product(const Shape *s, int from, int to, int *symcount) {
  int64_t k = 1;
  memset(symcount, 0, sizeof(int) * IR_MAX_SYMS);
  for (int i = from; i < to; i++) {
    if (DIM_IS_SYM(s->d[i]))
      symcount[DIM_SYM_ID(s->d[i])]++;
    else
      k = ir_size_mul(k, s->d[i]);
  }
  return k;
}

static int infer_reshape(Ctx *c, const Node *x, AttrDims *a, Shape *out) {
  char b1[128];
  if (a->nlist < 0) return fail(c, "needs a target shape");
  int cx[IR_MAX_SYMS], ct[IR_MAX_SYMS], hole = -1;
  int64_t kx = sym_product(&x->shape, 0, x->shape.rank, cx);
  out->rank = a->nlist;
  int64_t kt = 1;
  memset(ct, 0, sizeof ct);
  for (int i = 0; i < a->nlist; i++) {
    Dim d = a->list[i];
    out->d[i] = d;
    if (d == DIM_INFER) {
      if (hole >= 0) return fail(c, "only one dimension can be -1");
      hole = i;
    } else if (DIM_IS_SYM(d)) {
      ct[DIM_SYM_ID(d)]++;
    } else {
      kt = ir_size_mul(kt, d);
    }
  }
  if (kt < 0) return fail(c, "the size of the target shape overflows 64 bits");
  for (int s = 0; s < IR_MAX_SYMS; s++)
    if (cx[s] != ct[s])
      return fail(c, "cannot reshape %s: symbolic dimension %s must appear in the target as often as in the input",
                  ty(c, x, b1), c->g->syms[s].name);
  if (hole >= 0) {
    if (kt == 0 || kx % kt != 0)
      return fail(c, "cannot reshape %s: %lld elements per batch do not divide by %lld", ty(c, x, b1),
                  (long long)kx, (long long)kt);
    out->d[hole] = kx / kt;
    kt = kx;
  }
  if (kt != kx)
    return fail(c, "cannot reshape %s (%lld elements) into %lld elements", ty(c, x, b1), (long long)kx,
                (long long)kt);
  a->nlist = out->rank;
  memcpy(a->list, out->d, sizeof(Dim) * (size_t)out->rank);
  return 0;
}

static int infer_flatten(Ctx *c, const Node *x, AttrAxis *a, Shape *out) {
  char b1[128];
  int r = x->shape.rank;
  if (r == 0) {
    *out = (Shape){1, {1}};
    a->start = a->end = 0;
    return 0;
  }
  if (norm_axis(c, &a->start, r, "start") || norm_axis(c, &a->end, r, "end")) return -1;
  if (a->start > a->end) return fail(c, "start %lld is after end %lld", (long long)a->start, (long long)a->end);
  int cnt[IR_MAX_SYMS];
  int64_t k = sym_product(&x->shape, (int)a->start, (int)a->end + 1, cnt);
  int nsym = 0, which = -1;
  for (int s = 0; s < IR_MAX_SYMS; s++)
    if (cnt[s]) nsym += cnt[s], which = s;
  if (nsym > 1 || (nsym == 1 && k != 1))
    return fail(c, "cannot flatten %s: a symbolic dimension can only be flattened alone", ty(c, x, b1));
  out->rank = 0;
  for (int i = 0; i < a->start; i++) out->d[out->rank++] = x->shape.d[i];
  out->d[out->rank++] = nsym ? DIM_SYM(which) : k;
  for (int i = (int)a->end + 1; i < r; i++) out->d[out->rank++] = x->shape.d[i];
  return 0;
}

static int infer_transpose(Ctx *c, const Node *x, AttrDims *a, Shape *out) {
  int r = x->shape.rank;
  if (a->nlist < 0) {
    a->nlist = r;
    for (int i = 0; i < r; i++) a->list[i] = r - 1 - i;
  }
  if (a->nlist != r) return fail(c, "perm has %d entries for a tensor of rank %d", a->nlist, r);
  int seen[IR_MAX_RANK] = {0};
  out->rank = r;
  for (int i = 0; i < r; i++) {
    int64_t p = a->list[i] < 0 ? a->list[i] + r : a->list[i];
    if (p < 0 || p >= r || seen[p]) return fail(c, "perm is not a permutation of 0..%d", r - 1);
    seen[p] = 1;
    a->list[i] = p;
    out->d[i] = x->shape.d[p];
  }
  return 0;
}

static int infer_concat(Ctx *c, const Node *const *xs, int n, AttrAxis *a, Shape *out) {
  char b1[128], b2[128], b3[32];
  *out = xs[0]->shape;
  if (norm_axis(c, &a->axis, out->rank, "axis")) return -1;
  int64_t total = 0;
  for (int k = 0; k < n; k++) {
    const Shape *s = &xs[k]->shape;
    if (xs[k]->dtype != xs[0]->dtype || s->rank != out->rank)
      return fail(c, "operand %d %s does not match operand 1 %s", k + 1, ty(c, xs[k], b1), ty(c, xs[0], b2));
    for (int i = 0; i < s->rank; i++)
      if (i != a->axis && s->d[i] != out->d[i])
        return fail(c, "operand %d %s does not match operand 1 %s outside axis %lld", k + 1, ty(c, xs[k], b1),
                    ty(c, xs[0], b2), (long long)a->axis);
    if (DIM_IS_SYM(s->d[a->axis]))
      return fail(c, "cannot concatenate along symbolic dimension %s", dimstr(c, s->d[a->axis], b3));
    total = ir_size_add(total, s->d[a->axis]);
  }
  if (total < 0) return fail(c, "the concatenated extent overflows 64 bits");
  out->d[a->axis] = total;
  return 0;
}

static int infer_slice(Ctx *c, const Node *x, AttrAxis *a, Shape *out) {
  char b1[32];
  *out = x->shape;
  if (norm_axis(c, &a->axis, out->rank, "axis")) return -1;
  Dim d = out->d[a->axis];
  if (a->step <= 0) return fail(c, "step must be positive, not %lld", (long long)a->step);
  if (DIM_IS_SYM(d)) {
    if (a->start == 0 && a->end == ATTR_MAX && a->step == 1) return 0;
    return fail(c, "cannot slice symbolic dimension %s", dimstr(c, d, b1));
  }
  int64_t s = a->start < 0 ? a->start + d : a->start, e = a->end < 0 ? a->end + d : a->end;
  s = s < 0 ? 0 : s > d ? d : s;
  e = e < s ? s : e > d ? d : e;
  a->start = s, a->end = e;
  out->d[a->axis] = e > s ? (e - s - 1) / a->step + 1 : 0;   /* no overflow for any step */
  if (out->d[a->axis] == 0) return fail(c, "slice [%lld:%lld] of a dimension of %lld is empty",
                                        (long long)s, (long long)e, (long long)d);
  return 0;
}

/* gather and index_select: x f32, the index i64 or i32. */
static int index_operands(Ctx *c, const Node *x, const Node *idx, AttrAxis *a) {
  char b1[128];
  if (x->dtype != DT_F32) return fail(c, "operand 1 must be f32, not %s", ty(c, x, b1));
  if (idx->dtype != DT_I64 && idx->dtype != DT_I32)
    return fail(c, "the index must be i64 or i32, not %s", ty(c, idx, b1));
  if (x->shape.rank == 0) return fail(c, "cannot index a scalar");
  return norm_axis(c, &a->axis, x->shape.rank, "axis");
}

/* torch.gather: the index has x's rank and, off the axis, extents no
 * larger than x's (a symbol only matches itself); the result its shape. */
static int infer_gather(Ctx *c, const Node *x, const Node *idx, AttrAxis *a, Shape *out) {
  char b1[128], b2[128];
  if (index_operands(c, x, idx, a)) return -1;
  if (idx->shape.rank != x->shape.rank)
    return fail(c, "the index %s must have the rank of %s", ty(c, idx, b1), ty(c, x, b2));
  for (int i = 0; i < x->shape.rank; i++) {
    Dim di = idx->shape.d[i], dx = x->shape.d[i];
    int fits = di == dx || (!DIM_IS_SYM(di) && !DIM_IS_SYM(dx) && di <= dx);
    if (i != a->axis && !fits)
      return fail(c, "the index %s is larger than %s in dimension %d", ty(c, idx, b1), ty(c, x, b2), i);
  }
  *out = idx->shape;
  return 0;
}

/* index_select: x's shape with the axis replaced by the index's shape. */
static int infer_index_select(Ctx *c, const Node *x, const Node *idx, AttrAxis *a, Shape *out) {
  char b1[128], b2[128];
  if (index_operands(c, x, idx, a)) return -1;
  int r = x->shape.rank - 1 + idx->shape.rank, ax = (int)a->axis;
  if (r > IR_MAX_RANK)
    return fail(c, "indexing %s with %s gives rank %d, more than %d", ty(c, x, b1), ty(c, idx, b2), r, IR_MAX_RANK);
  out->rank = r;
  for (int i = 0; i < r; i++)
    out->d[i] = i < ax ? x->shape.d[i] : i < ax + idx->shape.rank ? idx->shape.d[i - ax]
                                                                   : x->shape.d[i - idx->shape.rank + 1];
  return 0;
}

static int infer_reduce(Ctx *c, const Node *x, AttrDims *a, Shape *out) {
  int r = x->shape.rank;
  int mask[IR_MAX_RANK] = {0};
  if (a->nlist <= 0) { /* absent or empty: every axis, as torch.sum(dim=[]) */
    a->nlist = r;
    for (int i = 0; i < r; i++) a->list[i] = i;
  }
  for (int i = 0; i < a->nlist; i++) {
    int64_t ax = a->list[i];
    if (norm_axis(c, &ax, r, "axis")) return -1;
    if (mask[ax]) return fail(c, "axis %lld given twice", (long long)ax);
    mask[ax] = 1;
  }
  /* canonical: sorted axes */
  a->nlist = 0;
  out->rank = 0;
  for (int i = 0; i < r; i++) {
    if (mask[i]) a->list[a->nlist++] = i;
    if (!mask[i])
      out->d[out->rank++] = x->shape.d[i];
    else if (a->keepdim)
      out->d[out->rank++] = 1;
  }
  return 0;
}

static int infer_maxout(Ctx *c, const Node *x, AttrAxis *a, Shape *out) {
  char b1[128];
  *out = x->shape;
  if (norm_axis(c, &a->axis, out->rank, "axis")) return -1;
  Dim d = out->d[a->axis];
  if (a->pieces <= 0) return fail(c, "pieces must be positive");
  if (DIM_IS_SYM(d) || d % a->pieces != 0)
    return fail(c, "dimension %lld of %s does not divide into %lld pieces", (long long)a->axis, ty(c, x, b1),
                (long long)a->pieces);
  out->d[a->axis] = d / a->pieces;
  return 0;
}

/* --- convolution and pooling (canonical forms: conv.h) ---------------------- */

/* Expands list attribute l to want entries: absent gives deflt, one entry
 * is repeated, and a padding of 4 takes 2 entries as (h, w) = [h, h, w, w].
 * Every entry must be at least min. */
static int canon_list(Ctx *c, IntList *l, const char *what, int want, int64_t deflt, int64_t min) {
  if (l->n == 0) l->v[0] = deflt, l->n = 1;
  if (l->n == 2 && want == 4) {
    int64_t h = l->v[0], w = l->v[1];
    l->v[0] = l->v[1] = h, l->v[2] = l->v[3] = w, l->n = 4;
  }
  if (l->n == 1)
    for (int i = 1; i < want; i++) l->v[i] = l->v[0];
  if (l->n != 1 && l->n != want)
    return fail(c, "%s takes %s integers, not %d", what, want == 4 ? "1, 2 or 4" : want == 2 ? "1 or 2" : "1", l->n);
  l->n = want;
  for (int i = 0; i < want; i++) {
    if (l->v[i] < min)
      return fail(c, "%s must be %s, not %lld", what, min > 0 ? "positive" : "zero or more", (long long)l->v[i]);
    if (l->v[i] > IR_MAX_TENSOR_BYTES)
      return fail(c, "%s must be at most %lld, not %lld", what, (long long)IR_MAX_TENSOR_BYTES, (long long)l->v[i]);
  }
  return 0;
}

/* x must have the given rank, and only its batch dimension may be a symbol. */
static int image_input(Ctx *c, const Node *x, int rank, const char *layout) {
  char b1[128];
  if (x->shape.rank != rank) return fail(c, "input must be %s, not %s", layout, ty(c, x, b1));
  for (int i = 1; i < rank; i++)
    if (DIM_IS_SYM(x->shape.d[i]))
      return fail(c, "input %s: only the batch dimension can be a symbol", ty(c, x, b1));
  return 0;
}

static const char *const side_names[4] = {"top", "bottom", "left", "right"};

/* "5x5" or "5" (1-D) */
static const char *extent_str(const int64_t *v, int nsp, char *buf) {
  if (nsp == 1) snprintf(buf, 48, "%lld", (long long)v[0]);
  else snprintf(buf, 48, "%lldx%lld", (long long)v[0], (long long)v[1]);
  return buf;
}

/* Spatial output extents of a window of kernel k over in (nsp dims) with
 * canonical stride, dilation and padding; fails when the dilated kernel
 * does not fit the padded input.  holder names the kernel's weight ("" for
 * pools). */
static int window_out(Ctx *c, const Node *x, const char *holder, int nsp, const int64_t *in, const int64_t *k,
                      const AttrWindow *a, int ceil_mode, int64_t *out) {
  char b1[128], e1[48], e2[48], e3[48];
  int64_t eff[2], padded[2];
  const int64_t *pad = a->padding.v;
  int dilated = 0;
  for (int i = 0; i < nsp; i++) {
    int64_t d = a->dilation.n ? a->dilation.v[i] : 1;
    dilated |= d > 1;
    eff[i] = ir_size_add(ir_size_mul(d, k[i] - 1), 1);
    padded[i] = ir_size_add(in[i], ir_size_add(pad[2 * i], pad[2 * i + 1]));
    if (eff[i] < 0 || padded[i] < 0) return fail(c, "the extent of the window or of the padded input overflows 64 bits");
  }
  for (int i = 0; i < nsp; i++)
    if (eff[i] > padded[i])
      return fail(c, "kernel %s%s%s%s does not fit input %s padded to %s", extent_str(k, nsp, e1),
                  dilated ? " dilated to " : "", dilated ? extent_str(eff, nsp, e2) : "", holder, ty(c, x, b1),
                  extent_str(padded, nsp, e3));
  for (int i = 0; i < nsp; i++) {
    int64_t s = a->stride.v[i], num = padded[i] - eff[i];
    out[i] = (ceil_mode ? ir_size_add(num, s - 1) : num) / s + 1;   /* canon_list bounds s: no overflow */
    if (ceil_mode && (out[i] - 1) * s >= in[i] + pad[2 * i]) out[i]--; /* a last window only in the padding */
  }
  return 0;
}

/* conv2d and conv1d (and conv2d_grad_weight's forward): x [N, C, H, W] or
 * [N, C, L], w [O, C / groups, kh, kw], bias [O]. */
static int infer_conv(Ctx *c, OpKind op, const Node *x, const Node *w, const Node *bias, AttrWindow *a, Shape *out) {
  char b1[128], b2[128];
  int one_d = op == OP_CONV1D, r = one_d ? 3 : 4, nsp = r - 2;
  if (image_input(c, x, r, one_d ? "[N, C, L]" : "[N, C, H, W]")) return -1;
  int wsym = 0;
  for (int i = 0; i < w->shape.rank; i++) wsym |= DIM_IS_SYM(w->shape.d[i]);
  if (w->shape.rank != r || wsym)
    return fail(c, "weight must be %s, not %s", one_d ? "[out, in / groups, k]" : "[out, in / groups, kh, kw]",
                ty(c, w, b1));
  if (canon_list(c, &a->stride, "stride", nsp, 1, 1) || canon_list(c, &a->dilation, "dilation", nsp, 1, 1) ||
      canon_list(c, &a->padding, "padding", 2 * nsp, 0, 0))
    return -1;
  int64_t C = x->shape.d[1], O = w->shape.d[0], G = a->groups;
  if (G < 1) return fail(c, "groups must be positive, not %lld", (long long)G);
  if (C % G) return fail(c, "the %lld channels of input %s do not divide into %lld groups", (long long)C, ty(c, x, b1), (long long)G);
  if (O % G)
    return fail(c, "the %lld output channels of weight %s do not divide into %lld groups", (long long)O, ty(c, w, b1), (long long)G);
  if (ir_size_mul(w->shape.d[1], G) != C) {
    if (G == 1)
      return fail(c, "weight %s takes %lld input channels, but input %s has %lld", ty(c, w, b1),
                  (long long)w->shape.d[1], ty(c, x, b2), (long long)C);
    return fail(c, "weight %s takes %lld input channels per group (%lld groups), but input %s has %lld", ty(c, w, b1),
                (long long)w->shape.d[1], (long long)G, ty(c, x, b2), (long long)C);
  }
  if (bias && (bias->shape.rank != 1 || bias->shape.d[0] != O))
    return fail(c, "bias %s does not match weight %s (out = %lld)", ty(c, bias, b1), ty(c, w, b2), (long long)O);
  const int64_t *in = &x->shape.d[2], *pad = a->padding.v;
  for (int i = 0; i < 2 * nsp && a->mode == PAD_REFLECT; i++)
    if (pad[i] >= in[i / 2])
      return fail(c, "reflect padding (%s %lld) must be smaller than the input's %s (%lld) in %s",
                  side_names[i + (one_d ? 2 : 0)], (long long)pad[i], one_d ? "length" : i < 2 ? "height" : "width",
                  (long long)in[i / 2], ty(c, x, b1));
  char holder[200];
  snprintf(holder, sizeof holder, " of weight %s", ty(c, w, b2));
  int64_t o[2];
  if (window_out(c, x, holder, nsp, in, &w->shape.d[2], a, 0, o)) return -1;
  *out = (Shape){r, {x->shape.d[0], O, o[0], nsp > 1 ? o[1] : 0}};
  return 0;
}

/* conv_transpose2d: x [N, C_in, H, W], w [C_in, O / groups, kh, kw]; each
 * output extent is (in - 1) * stride - padding + dilation * (k - 1) +
 * output_padding + 1. */
static int infer_conv_transpose(Ctx *c, const Node *x, const Node *w, const Node *bias, AttrWindow *a, Shape *out) {
  char b1[128], b2[128];
  if (image_input(c, x, 4, "[N, C, H, W]")) return -1;
  int wsym = 0;
  for (int i = 0; i < w->shape.rank; i++) wsym |= DIM_IS_SYM(w->shape.d[i]);
  if (w->shape.rank != 4 || wsym) return fail(c, "weight must be [in, out / groups, kh, kw], not %s", ty(c, w, b1));
  if (canon_list(c, &a->stride, "stride", 2, 1, 1) || canon_list(c, &a->dilation, "dilation", 2, 1, 1) ||
      canon_list(c, &a->padding, "padding", 4, 0, 0) || canon_list(c, &a->output_padding, "output_padding", 2, 0, 0))
    return -1;
  int64_t C = x->shape.d[1], G = a->groups, O = ir_size_mul(w->shape.d[1], G);
  if (G < 1) return fail(c, "groups must be positive, not %lld", (long long)G);
  if (O < 0) return fail(c, "the output channels of weight %s times %lld groups overflow 64 bits", ty(c, w, b1), (long long)G);
  if (C % G) return fail(c, "the %lld channels of input %s do not divide into %lld groups", (long long)C, ty(c, x, b1), (long long)G);
  if (w->shape.d[0] != C)
    return fail(c, "weight %s takes %lld input channels, but input %s has %lld", ty(c, w, b1), (long long)w->shape.d[0],
                ty(c, x, b2), (long long)C);
  if (bias && (bias->shape.rank != 1 || bias->shape.d[0] != O))
    return fail(c, "bias %s does not match weight %s (out = %lld)", ty(c, bias, b1), ty(c, w, b2), (long long)O);
  int64_t o[2];
  for (int i = 0; i < 2; i++) {
    int64_t s = a->stride.v[i], op = a->output_padding.v[i];
    if (op >= s) return fail(c, "output_padding %lld must be smaller than stride %lld", (long long)op, (long long)s);
    int64_t grown = ir_size_add(ir_size_add(ir_size_mul(x->shape.d[2 + i] - 1, s),
                                            ir_size_mul(a->dilation.v[i], w->shape.d[2 + i] - 1)), op + 1);
    if (grown < 0) return fail(c, "the output extent of input %s and weight %s overflows 64 bits", ty(c, x, b1), ty(c, w, b2));
    o[i] = grown - a->padding.v[2 * i] - a->padding.v[2 * i + 1];   /* canon_list bounds the padding */
  }
  if (o[0] <= 0 || o[1] <= 0)
    return fail(c, "the padding leaves an output of %lldx%lld from input %s and weight %s", (long long)o[0],
                (long long)o[1], ty(c, x, b1), ty(c, w, b2));
  *out = (Shape){4, {x->shape.d[0], O, o[0], o[1]}};
  return 0;
}

/* max_pool2d and avg_pool2d: padding at most half the (dilated) kernel,
 * as PyTorch requires, so every window holds an input element. */
static int infer_pool(Ctx *c, OpKind op, const Node *x, AttrWindow *a, Shape *out) {
  char b1[128];
  int is_max = op == OP_MAX_POOL2D || op == OP_MAX_POOL2D_GRAD;
  if (image_input(c, x, 4, "[N, C, H, W]")) return -1;
  if (a->kernel.n == 0) return fail(c, "needs a kernel size");
  if (canon_list(c, &a->kernel, "kernel", 2, 1, 1)) return -1;
  if (a->stride.n == 0) a->stride = a->kernel;
  if (canon_list(c, &a->stride, "stride", 2, 1, 1) || canon_list(c, &a->padding, "padding", 4, 0, 0) ||
      (is_max && canon_list(c, &a->dilation, "dilation", 2, 1, 1)))
    return -1;
  for (int i = 0; i < 4; i++) {
    int64_t k = a->kernel.v[i / 2], eff = is_max ? ir_size_add(ir_size_mul(a->dilation.v[i / 2], k - 1), 1) : k;
    if (eff < 0) return fail(c, "the dilated kernel's extent overflows 64 bits");
    if (2 * a->padding.v[i] > eff)
      return fail(c, "%s padding %lld is more than half the %skernel %lld (input %s)", side_names[i],
                  (long long)a->padding.v[i], is_max && eff != k ? "dilated " : "", (long long)eff, ty(c, x, b1));
  }
  int64_t o[2];
  if (window_out(c, x, "", 2, &x->shape.d[2], a->kernel.v, a, a->ceil_mode, o)) return -1;
  *out = (Shape){4, {x->shape.d[0], x->shape.d[1], o[0], o[1]}};
  return 0;
}

static int infer_global_pool(Ctx *c, const Node *x, Shape *out) {
  char b1[128];
  if (x->shape.rank != 4) return fail(c, "input must be [N, C, H, W], not %s", ty(c, x, b1));
  *out = (Shape){4, {x->shape.d[0], x->shape.d[1], 1, 1}};
  return 0;
}

static int infer_upsample(Ctx *c, const Node *x, AttrUpsample *a, Shape *out) {
  if (image_input(c, x, 4, "[N, C, H, W]")) return -1;
  if (canon_list(c, &a->scale, "scale_factor", 2, 1, 1)) return -1;
  *out = x->shape;
  out->d[2] = ir_size_mul(out->d[2], a->scale.v[0]);
  out->d[3] = ir_size_mul(out->d[3], a->scale.v[1]);
  if (out->d[2] < 0 || out->d[3] < 0) return fail(c, "the upsampled extent overflows 64 bits");
  return 0;
}

/* pad: pads covers the last n / 2 dimensions, last first, as torch's pad. */
static int infer_pad(Ctx *c, const Node *x, AttrPad *a, Shape *out) {
  char b1[128], b2[32];
  int r = x->shape.rank, n = a->pads.n;
  if (n == 0 || n % 2 || n > 2 * r)
    return fail(c, "pads takes 2 integers (left, right) per padded dimension, last dimension first, at most %d "
                "for %s, not %d", 2 * r, ty(c, x, b1), n);
  *out = x->shape;
  for (int i = 0; i < n; i++) {
    int dim = r - 1 - i / 2;
    Dim d = x->shape.d[dim];
    int64_t p = a->pads.v[i];
    if (p < 0) return fail(c, "pads must be zero or more, not %lld", (long long)p);
    if (p == 0) continue;
    if (DIM_IS_SYM(d)) return fail(c, "cannot pad symbolic dimension %s of %s", dimstr(c, d, b2), ty(c, x, b1));
    if (a->mode == PAD_REFLECT && p >= d)
      return fail(c, "reflect padding %lld of dimension %d must be smaller than its size %lld in %s", (long long)p, dim,
                  (long long)d, ty(c, x, b1));
    out->d[dim] = ir_size_add(out->d[dim], p);
    if (out->d[dim] < 0) return fail(c, "the padded extent of dimension %d overflows 64 bits", dim);
  }
  return 0;
}

/* The forward result of a family gradient op's x, to check dy against. */
static int infer_conv_family_grad(Ctx *c, OpKind op, const Node *const *xs, Attrs *a, Shape *fwd) {
  const Node *x = xs[1];
  switch ((int)op) {
  case OP_CONV2D_GRAD_WEIGHT: return infer_conv(c, OP_CONV2D, x, xs[2], NULL, &a->window, fwd);
  case OP_MAX_POOL2D_GRAD:
  case OP_AVG_POOL2D_GRAD: return infer_pool(c, op, x, &a->window, fwd);
  case OP_UPSAMPLE_GRAD: return infer_upsample(c, x, &a->upsample, fwd);
  case OP_PAD_GRAD: return infer_pad(c, x, &a->pad, fwd);
  }
  IR_ASSERT(!"not a convolution-family gradient");
  return -1;
}

static int check_operands(Ctx *c, OpKind op, const Node *const *xs, int nin) {
  const OpInfo *info = &ir_ops[op];
  char b1[128];
  if (nin < info->min_in || (info->max_in >= 0 && nin > info->max_in)) {
    if (info->min_in == info->max_in)
      return fail(c, "takes %d tensor operand%s, not %d", info->min_in, info->min_in == 1 ? "" : "s", nin);
    return fail(c, "takes %d to %d tensor operands, not %d", info->min_in, info->max_in, nin);
  }
  if (info->flags & OPF_FLOAT)
    for (int i = 0; i < nin; i++)
      if (xs[i]->dtype != DT_F32) return fail(c, "operand %d must be f32, not %s", i + 1, ty(c, xs[i], b1));
  return 0;
}

/* cross_entropy and nll_loss: x f32[N, C, d1, ...] and class indices
 * [N, d1, ...] (x's shape without the class axis, which is also the shape
 * of the per-target losses). */
static int infer_class_targets(Ctx *c, OpKind op, const Node *x, const Node *y, Shape *per) {
  char b1[128], b2[128], b3[128];
  const char *what = op == OP_NLL_LOSS ? "log-probabilities" : "logits";
  if (x->dtype != DT_F32 || x->shape.rank < 2)
    return fail(c, "%s must be f32[batch, classes, ...], not %s", what, ty(c, x, b1));
  *per = (Shape){x->shape.rank - 1, {x->shape.d[0]}};
  for (int k = 2; k < x->shape.rank; k++) per->d[k - 1] = x->shape.d[k];
  if ((y->dtype != DT_I32 && y->dtype != DT_I64) || !ir_shape_eq(&y->shape, per))
    return fail(c, "labels must be %s (class indices) to match %s %s, not %s",
                ir_type_str(c->g, DT_I64, per, b3, 128), what, ty(c, x, b2), ty(c, y, b1));
  return 0;
}

static int infer_loss(Ctx *c, OpKind op, const Node *const *xs, int nin, const AttrLoss *a, DType *dt,
                      Shape *out) {
  char b1[128], b2[128];
  const Node *x = xs[0], *y = xs[1];
  *dt = DT_F32;
  Shape per = {1, {x->shape.rank ? x->shape.d[0] : 1}};
  if (op == OP_CROSS_ENTROPY || op == OP_NLL_LOSS) {
    if (infer_class_targets(c, op, x, y, &per)) return -1;
  } else if (op == OP_TRIPLET_LOSS) {
    for (int i = 1; i < nin; i++)
      if (!ir_shape_eq(&xs[i]->shape, &x->shape))
        return fail(c, "operand %d %s does not match the anchor %s", i + 1, ty(c, xs[i], b1), ty(c, x, b2));
    if (x->shape.rank != 2) return fail(c, "embeddings must be [batch, dim], not %s", ty(c, x, b1));
  } else {
    if (!ir_shape_eq(&x->shape, &y->shape))
      return fail(c, "prediction %s and target %s must have the same shape", ty(c, x, b1), ty(c, y, b2));
    per = x->shape;
  }
  if (a->reduction == RED_NONE)
    *out = per;
  else
    out->rank = 0;
  return 0;
}

/* Gradient ops: the result has the shape of the forward operand x, and
 * applying the forward rule to x must give dy's shape. */
static int infer_grad(Ctx *c, OpKind op, const Node *const *xs, Attrs *a, Shape *out) {
  char b1[128], b2[128];
  const Node *dy = xs[0], *x = xs[1];
  Shape fwd;
  int rc = 0;
  *out = x->shape;
  switch ((int)op) {
  case OP_EXPAND_AS:
    rc = broadcast(c, dy, x, &fwd);
    if (!rc && !ir_shape_eq(&fwd, &x->shape))
      return fail(c, "%s does not broadcast to %s", ty(c, dy, b1), ty(c, x, b2));
    return rc;
  case OP_SOFTMAX_GRAD:
  case OP_LOG_SOFTMAX_GRAD:
    if (norm_axis(c, &a->axis.axis, x->shape.rank, "axis")) return -1;
    fwd = x->shape;
    break;
  case OP_SLICE_GRAD: rc = infer_slice(c, x, &a->axis, &fwd); break;
  case OP_MAX_GRAD:
    rc = infer_reduce(c, x, &a->dims, &fwd);
    if (!rc && !ir_shape_eq(&xs[2]->shape, &fwd)) return fail(c, "the maximum %s does not match", ty(c, xs[2], b1));
    break;
  case OP_MAXOUT_GRAD: rc = infer_maxout(c, x, &a->axis, &fwd); break;
  case OP_CONV2D_GRAD_WEIGHT:
  case OP_MAX_POOL2D_GRAD:
  case OP_AVG_POOL2D_GRAD:
  case OP_UPSAMPLE_GRAD:
  case OP_PAD_GRAD:
    rc = infer_conv_family_grad(c, op, xs, a, &fwd);
    if (op == OP_CONV2D_GRAD_WEIGHT) *out = xs[2]->shape;
    break;
  case OP_GATHER_GRAD: /* gather when dy has the index's rank, else index_select */
    rc = dy->shape.rank == xs[2]->shape.rank ? infer_gather(c, x, xs[2], &a->axis, &fwd)
                                             : infer_index_select(c, x, xs[2], &a->axis, &fwd);
    break;
  case OP_CE_GRAD:
  case OP_NLL_GRAD: {
    const Node *ops[2] = {x, xs[2]};
    DType dt;
    rc = infer_loss(c, op == OP_CE_GRAD ? OP_CROSS_ENTROPY : OP_NLL_LOSS, ops, 2, &a->loss, &dt, &fwd);
    break;
  }
  default: fwd = x->shape; break; /* elementwise */
  }
  if (rc) return rc;
  if (!ir_shape_eq(&fwd, &dy->shape))
    return fail(c, "gradient %s does not match the forward result %s", ty(c, dy, b1),
                ir_type_str(c->g, DT_F32, &fwd, b2, 128));
  return 0;
}

/* x [..., d1, ..., dk] normalised over its last k = ndim axes; weight and
 * bias (either may be given, weight first) have the shape [d1, ..., dk]. */
static int infer_layer_norm(Ctx *c, const Node *const *xs, int nin, const AttrScalar *a, Shape *out) {
  char b1[128], b2[128];
  const Node *x = xs[0];
  if (a->mode < 1 || a->mode > x->shape.rank)
    return fail(c, "ndim %d must be between 1 and the rank of %s", a->mode, ty(c, x, b1));
  if (!(a->f >= 0)) return fail(c, "eps must be >= 0, not %g", a->f);
  Shape norm = {a->mode, {0}};
  for (int k = 0; k < a->mode; k++) norm.d[k] = x->shape.d[x->shape.rank - a->mode + k];
  for (int i = 1; i < nin; i++)
    if (!ir_shape_eq(&xs[i]->shape, &norm))
      return fail(c, "%s %s must have the shape of the normalised axes %s", i == 1 ? "weight" : "bias", ty(c, xs[i], b1),
                  ir_type_str(c->g, DT_F32, &norm, b2, 128));
  *out = x->shape;
  return 0;
}

/* tril: a matrix or a stack of them, the same shape out. */
static int infer_tril(Ctx *c, const Node *x, Shape *out) {
  char b1[128];
  if (x->shape.rank < 2) return fail(c, "needs a tensor of rank 2 or more, not %s", ty(c, x, b1));
  *out = x->shape;
  return 0;
}

/* x [N, C, ...] with per-channel weight, bias and running statistics [C]. */
static int infer_batchnorm(Ctx *c, const Node *const *xs, Shape *out) {
  char b1[128], b2[128];
  const Node *x = xs[0];
  static const char *const what[] = {"", "weight", "bias", "running_mean", "running_var"};
  if (x->shape.rank < 2) return fail(c, "input must be [batch, channels, ...], not %s", ty(c, x, b1));
  for (int i = 1; i < 5; i++)
    if (xs[i]->shape.rank != 1 || xs[i]->shape.d[0] != x->shape.d[1])
      return fail(c, "%s %s does not match the %lld channels of %s", what[i], ty(c, xs[i], b1),
                  (long long)x->shape.d[1], ty(c, x, b2));
  *out = x->shape;
  return 0;
}

static int infer_running_update(Ctx *c, const Node *const *xs, Shape *out) {
  char b1[128], b2[128];
  if (xs[0]->op != OP_PARAM) return fail(c, "operand 1 must be a running statistic (a parameter buffer)");
  if (!ir_shape_eq(&xs[0]->shape, &xs[1]->shape))
    return fail(c, "statistic %s does not match %s", ty(c, xs[1], b1), ty(c, xs[0], b2));
  out->rank = 0;
  return 0;
}

/* Optimizer steps: grad and state like the parameter, lr and step scalars. */
static int infer_step(Ctx *c, OpKind op, const Node *const *xs, int nin, Shape *out) {
  char b1[128], b2[128];
  const Node *p = xs[0];
  if (p->op != OP_PARAM) return fail(c, "operand 1 must be a parameter");
  for (int i = 1; i < nin; i++) {
    int scalar = i == 2 || i == 3;
    if (scalar ? xs[i]->shape.rank != 0 : !ir_shape_eq(&xs[i]->shape, &p->shape))
      return fail(c, "operand %d %s does not fit parameter %s", i + 1, ty(c, xs[i], b1), ty(c, p, b2));
    if (!scalar && i != 1 && xs[i]->op != OP_STATE) return fail(c, "operand %d must be optimizer state", i + 1);
  }
  out->rank = 0;
  return 0;
}

/* The random ops: the shape of the attribute (rand, randn; every extent
 * positive or a symbol) or of operand 1, and the step operand that
 * decompose adds a scalar. */
static int infer_random(Ctx *c, OpKind op, const Node *const *xs, int nin, const AttrRandom *a, Shape *out) {
  int nop = ir_ops[op].min_in;
  if (nin > nop && xs[nin - 1]->shape.rank != 0) return fail(c, "the step operand must be a scalar");
  if (nop) {
    *out = xs[0]->shape;
    return 0;
  }
  if (a->shape.n > IR_MAX_RANK) return fail(c, "a shape has at most %d dimensions", IR_MAX_RANK);
  out->rank = a->shape.n;
  for (int i = 0; i < a->shape.n; i++) {
    Dim d = a->shape.v[i];
    if (d == 0 || d == DIM_INFER || (DIM_IS_SYM(d) && DIM_SYM_ID(d) >= c->g->nsyms))
      return fail(c, "dimension %d of the shape must be positive or a dimension symbol, not %lld", i,
                  (long long)d);
    out->d[i] = d;
  }
  return 0;
}

static int infer_op(const Graph *g, OpKind op, const int *in, int nin, const Attrs *attrs, DType *dt,
                    Shape *out, char *msg, size_t msglen) {
  Ctx c = {g, msg, msglen};
  Attrs *a = (Attrs *)attrs;
  if (a->kind != ir_op_family(op))
    return fail(&c, "has %s attributes, not its own %s ones", ir_attr_family_name(a->kind),
                ir_attr_family_name(ir_op_family(op)));
  const Node *xs[64];
  if (nin > 64) return fail(&c, "too many operands (%d)", nin);
  for (int i = 0; i < nin; i++) {
    IR_ASSERT(in[i] >= 0 && in[i] < g->nnodes);
    xs[i] = &g->nodes[in[i]];
  }
  if (check_operands(&c, op, xs, nin)) return -1;
  *dt = nin ? xs[0]->dtype : DT_F32;
  switch (op) {
  case OP_INPUT:
  case OP_PARAM:
  case OP_STATE:
  case OP_CONST:
    return fail(&c, "is not computed from operands");
  case OP_MATMUL:
    return infer_matmul(&c, xs[0], xs[1], out);
  case OP_LINEAR:
    return infer_linear(&c, xs[0], xs[1], nin > 2 ? xs[2] : NULL, out);
#define EW(id, ...) case OP_##id:
#include "ir/elemwise.def"
#undef EW
    if (ir_ew_check(op, nin, a)) return fail(&c, "%s", ir_ew_check(op, nin, a));
    return broadcast_all(&c, xs, nin, out);
  case OP_EW_GRAD:
  case OP_WHERE:
    return broadcast_all(&c, xs, nin, out);
  case OP_SOFTMAX:
  case OP_LOG_SOFTMAX:
    *out = xs[0]->shape;
    return norm_axis(&c, &a->axis.axis, out->rank, "axis");
  case OP_RESHAPE:
    return infer_reshape(&c, xs[0], &a->dims, out);
  case OP_FLATTEN:
    return infer_flatten(&c, xs[0], &a->axis, out);
  case OP_TRANSPOSE:
    return infer_transpose(&c, xs[0], &a->dims, out);
  case OP_CONCAT:
    return infer_concat(&c, xs, nin, &a->axis, out);
  case OP_SLICE:
    return infer_slice(&c, xs[0], &a->axis, out);
  case OP_GATHER:
    return infer_gather(&c, xs[0], xs[1], &a->axis, out);
  case OP_INDEX_SELECT:
    return infer_index_select(&c, xs[0], xs[1], &a->axis, out);
  case OP_SUM:
  case OP_MEAN:
  case OP_MAX:
    return infer_reduce(&c, xs[0], &a->dims, out);
  case OP_MAXOUT:
    return infer_maxout(&c, xs[0], &a->axis, out);
  case OP_CONV2D:
  case OP_CONV1D:
    return infer_conv(&c, op, xs[0], xs[1], nin > 2 ? xs[2] : NULL, &a->window, out);
  case OP_CONV_TRANSPOSE2D:
    return infer_conv_transpose(&c, xs[0], xs[1], nin > 2 ? xs[2] : NULL, &a->window, out);
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D:
    return infer_pool(&c, op, xs[0], &a->window, out);
  case OP_GLOBAL_AVG_POOL:
    return infer_global_pool(&c, xs[0], out);
  case OP_UPSAMPLE:
    return infer_upsample(&c, xs[0], &a->upsample, out);
  case OP_PAD:
    return infer_pad(&c, xs[0], &a->pad, out);
  case OP_CROSS_ENTROPY:
  case OP_NLL_LOSS:
  case OP_BCE_LOGITS:
  case OP_MSE_LOSS:
  case OP_L1_LOSS:
  case OP_TRIPLET_LOSS:
    return infer_loss(&c, op, xs, nin, &a->loss, dt, out);
  case OP_EXPAND_AS:
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
    *dt = DT_F32;
    return infer_grad(&c, op, xs, a, out);
  case OP_SGD_STEP:
  case OP_ADAM_STEP:
  case OP_RMSPROP_STEP:
  case OP_ADAGRAD_STEP:
    return infer_step(&c, op, xs, nin, out);
  case OP_BATCHNORM: return infer_batchnorm(&c, xs, out);
  case OP_LAYER_NORM: return infer_layer_norm(&c, xs, nin, &a->scalar, out);
  case OP_TRIL: return infer_tril(&c, xs[0], out);
  case OP_DROPOUT:
    if (!(a->scalar.f >= 0 && a->scalar.f < 1)) return fail(&c, "p must be in [0, 1), not %g", a->scalar.f);
    *out = xs[0]->shape;
    return 0;
  case OP_DROPOUT_TRAIN:
    if (xs[1]->shape.rank != 0) return fail(&c, "the step operand must be a scalar");
    *out = xs[0]->shape;
    return 0;
  case OP_RUNNING_UPDATE: return infer_running_update(&c, xs, out);
  case OP_RAND:
  case OP_RANDN:
  case OP_RAND_LIKE:
  case OP_RANDN_LIKE:
  case OP_BERNOULLI:
    *dt = DT_F32;
    return infer_random(&c, op, xs, nin, &a->random, out);
  case OP_DIST_MEAN:
  case OP_DIST_SUM:
    for (int k = 0; k < xs[0]->shape.rank; k++)
      if (DIM_IS_SYM(xs[0]->shape.d[k])) return fail(&c, "a collective's operand must have a fixed shape");
    /* fall through */
  case OP_STOP_GRADIENT:
    *dt = xs[0]->dtype;
    *out = xs[0]->shape;
    return 0;
  case OP_SCAN: return ir_scan_infer(g, in, nin, &a->scan, out, msg, msglen); /* scan.c */
  case OP_SCAN_OUT: return ir_scan_out_infer(g, in, nin, &a->scan, dt, out, msg, msglen);
  case OP_COUNT:
    break;
  }
  return fail(&c, "unknown op");
}

/* The shape rule, then the size of its result: an extent or element count
 * that overflows, or a tensor over IR_MAX_TENSOR_BYTES per unit of its
 * symbols, is refused where it is built (with the symbols' largest values,
 * ir_check_sizes checks again once they are known). */
int ir_infer(const Graph *g, OpKind op, const int *in, int nin, const Attrs *attrs, DType *dt, Shape *out,
             char *msg, size_t msglen) {
  if (infer_op(g, op, in, nin, attrs, dt, out, msg, msglen)) return -1;
  return ir_size_check(g, *dt, out, IR_SYMS_AS_ONE, msg, msglen);
}
