/*
 * lower_conv.c — loop kernels for convolutions, pooling, upsample and pad.
 *
 * Convolutions are direct loop nests, no im2col: the innermost loop runs
 * along the output row, which is contiguous in the result and independent
 * from one element to the next, so it vectorises without reassociating
 * any sum.  Inside it the taps of a window (up to 3x3; larger windows keep
 * kh as a loop) are unrolled, with the partial sum in a local: each output
 * element sums its bias, then c, kh, kw in order, but reads and writes its
 * row once per input channel instead of once per tap.  Channels are
 * lowered one at a time; the schedule's channel-block rule (schedule.c)
 * computes several at once so that each input load serves all the
 * channels of the block.  Padding never costs a branch in that loop: a
 * padded input (any mode) is first copied into a temporary buffer, and the
 * convolution then reads it without bounds.  When stride is 1, rows are
 * taken padded-row wide so that a whole plane is one long loop.
 *
 * Gradients: conv2d's data gradient is conv_transpose2d.  With unit strides
 * and one group it is rows of taps: per result channel and kernel row, a
 * sum over the input's rows widened with zeros, which the result adds at
 * whole-row offsets (a matrix product the schedule tiles, sched_ct.c);
 * grouped, a gather, blocked like the forward pass, from a copy of its
 * input with zeros around each plane; otherwise it scatters each product
 * onto an uncropped buffer.  Each crops afterwards.  The weight
 * gradient accumulates each tap's products along output rows in a row
 * buffer (again independent per element) and sums the row once.  Max
 * pooling reads each tap with a guarded load (a tap in the padding gives
 * -inf without reading memory; kernel.h), or a plain load when every
 * window lies inside the input; average pooling loops over each window
 * clipped to the input.  Scatters (pool, bilinear and pad gradients) add into
 * a zeroed result in loop order; every loop is sequential.
 */
#include <math.h>

#include "ir/conv.h"
#include "passes/lower.h"

#define I(v) kx_i(p, (v))
#define V(v) kx_var(p, (v))
#define ADD(a, b) kx_iadd(p, (a), (b))
#define MUL(a, b) kx_imul(p, (a), (b))
#define FADD(a, b) kx_bin(p, BIN_ADD, (a), (b))
#define FMUL(a, b) kx_bin(p, BIN_MUL, (a), (b))

/* var as an index, or 0 when its loop of extent 1 is left out (see loop). */
static Expr *ivar(Program *p, int var, int64_t extent) { return extent == 1 ? I(0) : V(var); }

/* for (var < extent) body; a loop of one iteration is just its body. */
static Stmt *loop(Program *p, int var, int64_t extent, Stmt *body) {
  return extent == 1 ? body : ks_loop(p, var, I(extent), body);
}

/* buf[idx] += v */
static Stmt *add_to(Program *p, int buf, Expr *idx, Expr *v) {
  return ks_store(p, buf, idx, FADD(kx_load(p, buf, idx), v));
}

/* (plane * H + i) * W + j */
static Expr *at(Program *p, Expr *plane, int64_t H, Expr *i, int64_t W, Expr *j) {
  return ADD(MUL(ADD(MUL(plane, I(H)), i), I(W)), j);
}

static Expr *imax(Program *p, Expr *a, Expr *b) { return kx_bin(p, BIN_MAX, a, b); }
static Expr *imin(Program *p, Expr *a, Expr *b) { return kx_bin(p, BIN_MIN, a, b); }

/* The number of planes N * C of a convolution-like operand. */
static Expr *planes(Program *p, const ConvGeom *g, int64_t c) { return MUL(kx_dim(p, g->n), I(c)); }

/* --- pad ------------------------------------------------------------------------------- */

/* The source index along a padded dimension of length len for padded
 * position e (lo in front): reflect mirrors at the ends, replicate clamps. */
static Expr *pad_source(Program *p, Expr *e, int64_t lo, int64_t len, int mode) {
  Expr *j = ADD(e, I(-lo));
  if (mode == PAD_REPLICATE) return imin(p, imax(p, j, I(0)), I(len - 1));
  Expr *abs_j = imax(p, j, kx_bin(p, BIN_SUB, I(0), j)); /* (len-1) - |(len-1) - |j|| */
  Expr *d = kx_bin(p, BIN_SUB, I(len - 1), abs_j);
  Expr *r = kx_bin(p, BIN_SUB, I(len - 1), imax(p, d, kx_bin(p, BIN_SUB, I(0), d)));
  /* The mirror stays in [0, len) for pads shorter than len (the shape rule
   * refuses longer ones), but bounds taken term by term lose that |j| >= 0;
   * the clamp, a no-op here, states the range so the checker can prove it. */
  return imin(p, imax(p, r, I(0)), I(len - 1));
}

/* Padding in front of dimension k of a rank-r tensor, from torch-order pads. */
static int64_t pad_lo(const int64_t *pads, int npads, int r, int k) {
  int e = r - 1 - k;
  return 2 * e < npads ? pads[2 * e] : 0;
}

/* dst (shape out) = src (shape in) padded by pads (torch order) in mode.
 * Constant padding fills with value and copies the interior; reflect and
 * replicate read every element from its source index. */
static Stmt *pad_copy(Lower *L, int dst, int src, const Shape *in, const Shape *out, const int64_t *pads, int npads,
                      int mode, double value) {
  Program *p = L->p;
  int r = in->rank, vars[IR_MAX_RANK];
  Expr *si[IR_MAX_RANK], *di[IR_MAX_RANK], *sidx = I(0), *didx = I(0);
  for (int k = 0; k < r; k++) {
    vars[k] = lower_var(L);
    int64_t lo = pad_lo(pads, npads, r, k);
    int padded = in->d[k] != out->d[k];
    if (mode == PAD_CONSTANT) si[k] = V(vars[k]), di[k] = ADD(V(vars[k]), I(lo));
    else di[k] = V(vars[k]), si[k] = padded ? pad_source(p, V(vars[k]), lo, in->d[k], mode) : V(vars[k]);
    sidx = ADD(MUL(sidx, kx_dim(p, in->d[k])), si[k]);
    didx = ADD(MUL(didx, kx_dim(p, out->d[k])), di[k]);
  }
  Stmt *s = ks_store(p, dst, didx, kx_load(p, src, sidx));
  const Shape *iter = mode == PAD_CONSTANT ? in : out;
  for (int k = r - 1; k >= 0; k--) s = ks_loop(p, vars[k], kx_dim(p, iter->d[k]), s);
  if (mode != PAD_CONSTANT) return s;
  int v = lower_var(L);
  Stmt *fill = ks_loop(p, v, lower_numel(L, out, 0, out->rank), ks_store(p, dst, V(v), kx_f(p, value)));
  ks_append(&fill, s);
  return fill;
}

/* pad_grad: the interior of dy (constant), or each dy element added into
 * its source (reflect, replicate). */
static Stmt *lower_pad_grad(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  const Shape *in = &n->shape, *out = &lower_node_of(L, n->in[0])->shape;
  const AttrPad *a = &n->attr.pad;
  int r = in->rank, vars[IR_MAX_RANK], dy = L->buf[n->in[0]], dx = L->buf[id];
  Expr *xi = I(0), *yi = I(0);
  for (int k = 0; k < r; k++) {
    vars[k] = lower_var(L);
    int64_t lo = pad_lo(a->pads.v, a->pads.n, r, k);
    Expr *e = V(vars[k]), *src = e, *dst = ADD(e, I(lo));
    if (a->mode != PAD_CONSTANT) src = in->d[k] != out->d[k] ? pad_source(p, e, lo, in->d[k], a->mode) : e, dst = e;
    xi = ADD(MUL(xi, kx_dim(p, in->d[k])), src);
    yi = ADD(MUL(yi, kx_dim(p, out->d[k])), dst);
  }
  if (a->mode == PAD_CONSTANT) {
    Stmt *s = ks_store(p, dx, xi, kx_load(p, dy, yi));
    for (int k = r - 1; k >= 0; k--) s = ks_loop(p, vars[k], kx_dim(p, in->d[k]), s);
    return s;
  }
  Stmt *s = add_to(p, dx, xi, kx_load(p, dy, yi));
  for (int k = r - 1; k >= 0; k--) s = ks_loop(p, vars[k], kx_dim(p, out->d[k]), s);
  Stmt *all = lower_zero_fill(L, id);
  ks_append(&all, s);
  return all;
}

/* --- convolutions --------------------------------------------------------------------- */

/* The buffer a convolution reads its input x from: x itself, or a
 * temporary holding x padded (any mode; *pre fills it).  The padded
 * extents are *hp, *wp; the geometry's padding is then 0. */
static int padded_input(Lower *L, int id, int x, ConvGeom *g, Stmt **pre, int64_t *hp, int64_t *wp) {
  Program *p = L->p;
  const Shape *xs = &lower_node_of(L, x)->shape;
  *hp = g->h + g->pt + g->pb, *wp = g->w + g->pl + g->pr;
  *pre = NULL;
  if (*hp == g->h && *wp == g->w) return L->buf[x];
  int64_t pads[4] = {g->pl, g->pr, g->pt, g->pb};
  Shape ps = *xs;
  ps.d[ps.rank - 1] = *wp;
  if (ps.rank == 4) ps.d[2] = *hp;
  int b = kir_buffer(p, BUF_TEMP, DT_F32, "padded", &ps, id);
  *pre = pad_copy(L, b, L->buf[x], xs, &ps, pads, ps.rank == 4 ? 4 : 2, g->mode, 0.0);
  g->pt = g->pb = g->pl = g->pr = 0;
  return b;
}

/* How the inner loops of a convolution walk its output plane [oh, ow]
 * against an input plane whose rows are wp wide.  With unit strides, rows
 * of the output are taken wp wide too: output position f = row * wp + col
 * reads input position f + kh*dh*wp + kw*dw for every tap, so the whole
 * plane is one loop of cols = (oh - 1) * wp + ow steps (the wp - ow extra
 * columns per row are computed and dropped, or are zeros in a gradient).
 * A forward pass whose extra columns would cost many times the fmas that
 * a copy of its input costs moves instead (shifted): it reads kw-shifted
 * copies of its input, rows ow wide (shifted_input), and its plane is one
 * loop of exactly oh * ow positions.  Otherwise the loops go row by row,
 * cols = ow. */
typedef struct Rows {
  int64_t rows, cols;     /* the loop nest: rows x cols */
  int64_t pitch;          /* output elements per row in the buffer the loops use */
  int wide;               /* that buffer is a temporary (wp wide, or ow wide when shifted), not the real output */
  int shifted;            /* the input is read from its kw-shifted copies */
} Rows;

/* Fma lanes the shifted form saves per element its copies move, at
 * least: below it the wide rows cost less than the copy (LeNet-5's c1,
 * one input channel and 6 outputs, saves about 4 per element and is
 * left wide; its c2, 16 outputs, about 23). */
#define SHIFTED_MIN_GAIN 8

static Rows row_walk(const ConvGeom *g, int64_t wp) {
  Rows r = {g->oh, g->ow, g->ow, 0};
  if (g->sh != 1 || g->sw != 1) return r;
  r.rows = 1, r.cols = (g->oh - 1) * wp + g->ow, r.pitch = wp, r.wide = wp != g->ow;
  return r;
}

/* The forward pass's walk: row_walk's, or the shifted one when it pays. */
static Rows forward_walk(const ConvGeom *g, int64_t hp, int64_t wp) {
  int64_t opg = g->o / g->groups;
  if (g->sh == 1 && g->sw == 1 && g->oh > 1 && wp != g->ow && g->kw <= 25 &&
      opg * g->kh * g->oh * (wp - g->ow) >= SHIFTED_MIN_GAIN * hp * g->ow)
    return (Rows){1, g->oh * g->ow, g->ow, 1, 1};
  return row_walk(g, wp);
}

/* The kw-shifted copies of a convolution's (padded) input xb, planes
 * [hp, wp]: xs[n, c, k, h, j] = xb[n, c, h, j + k*dw] for j < ow, so the
 * input of output position f = row * ow + col at tap (kh, kw) is
 * xs[n, c, kw, f + kh*dh*ow], contiguous along f across rows: the
 * convolution computes exactly its oh * ow outputs.  The buffer's rank 5
 * tells the schedule (rule_conv_tiles) that the form is this one. */
static int shifted_input(Lower *L, int id, int xb, const ConvGeom *g, int64_t hp, int64_t wp, Stmt **pre) {
  Program *p = L->p;
  Shape ss = {5, {g->n, g->c, g->kw, hp, g->ow}};
  int xs = kir_buffer(p, BUF_TEMP, DT_F32, "shifted", &ss, id);
  int vq = lower_var(L), vk = lower_var(L), vh = lower_var(L), vj = lower_var(L);
  Expr *dst = at(p, ADD(MUL(V(vq), I(g->kw)), V(vk)), hp, V(vh), g->ow, V(vj));
  Expr *src = ADD(at(p, V(vq), hp, V(vh), wp, V(vj)), MUL(V(vk), I(g->dw)));
  Stmt *copy = ks_loop(p, vj, I(g->ow), ks_store(p, xs, dst, kx_load(p, xb, src)));
  ks_append(pre, ks_loop(p, vq, planes(p, g, g->c), ks_loop(p, vk, I(g->kw), ks_loop(p, vh, I(hp), copy))));
  return xs;
}

/* Copies planes of [oh, ow] into planes of [oh, wp] (wide) or back
 * (narrow); widening zeroes the extra columns.  Narrowing with wp = ow
 * is a plain copy (the shifted form's). */
static Stmt *rewidth(Lower *L, int dst, int src, Expr *nplanes, int64_t oh, int64_t ow, int64_t wp, int widen) {
  Program *p = L->p;
  int vp = lower_var(L), vh = lower_var(L), vw = lower_var(L), vz = lower_var(L);
  Expr *wide = at(p, V(vp), oh, V(vh), wp, V(vw)), *narrow = at(p, V(vp), oh, V(vh), ow, V(vw));
  Stmt *row = ks_loop(p, vw, I(ow), widen ? ks_store(p, dst, wide, kx_load(p, src, narrow))
                                          : ks_store(p, dst, narrow, kx_load(p, src, wide)));
  if (widen)
    ks_append(&row, ks_loop(p, vz, I(wp - ow), ks_store(p, dst, at(p, V(vp), oh, V(vh), wp, ADD(V(vz), I(ow))), kx_f(p, 0))));
  return ks_loop(p, vp, nplanes, ks_loop(p, vh, I(oh), row));
}

/* for (var < extent) body, kept even at one iteration and marked as a
 * reduction: the schedule's rules find a convolution's channel loops by
 * their place around the first reduction loop (schedule.c). */
static Stmt *reduce_loop(Program *p, int var, int64_t extent, Stmt *body) {
  Stmt *s = ks_loop(p, var, I(extent), body);
  s->loop = LOOP_REDUCE;
  return s;
}

/* conv2d and conv1d, one output channel at a time, with the taps of a
 * window unrolled:
 *   for n, group, o, row: y[o, row] = b[o]
 *     for c (reduce): w_t = w[o, c, t] (locals)
 *       for col: a = y[o, row, col]
 *         for each tap t (kh, kw in order): v = xp[n, c, row*sh + kh*dh, col*sw + kw*dw]
 *           a += w_t * v
 *         y[o, row, col] = a
 * into a wide temporary that is then narrowed into y (see row_walk; the
 * shifted form reads the kw-shifted copies, and its temporary is only
 * copied into y, where an epilogue fuses as it does into the narrowing).  Each
 * output sums bias, then c, kh, kw in order; the partial sum stays in a
 * register across a window.  Windows of more than 9 taps keep kh (and
 * rows of more than 25 taps kw) as a loop.  The loops n, group, o, row and
 * c are there even at one iteration; the schedule blocks o (several
 * output channels share each input load) and drops the rest. */
static Stmt *lower_conv_forward(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  ConvGeom g;
  ir_conv_geom(L->g, n, &g);
  Stmt *all;
  int64_t hp, wp;
  int xb = padded_input(L, id, n->in[0], &g, &all, &hp, &wp), y = L->buf[id];
  Rows r = forward_walk(&g, hp, wp);
  if (r.shifted) xb = shifted_input(L, id, xb, &g, hp, wp, &all);
  int64_t G = g.groups, cpg = g.c / G, opg = g.o / G, plane = g.oh * r.pitch;
  int unroll_kw = g.kw <= 25, unroll_kh = unroll_kw && g.kh * g.kw <= 9;
  int64_t nkh = unroll_kh ? g.kh : 1, nkw = unroll_kw ? g.kw : 1;
  Shape ws = {3, {g.n, g.o, plane}};
  int yb = r.wide ? kir_buffer(p, BUF_TEMP, DT_F32, r.shifted ? "conv_out" : "wide", &ws, id) : y;
  int vn = lower_var(L), vg = lower_var(L), vo = lower_var(L), vr = lower_var(L), vi = lower_var(L);
  int vc = lower_var(L), vkh = lower_var(L), vkw = lower_var(L), vj = lower_var(L);
  Expr *c = ADD(MUL(ivar(p, vg, G), I(cpg)), ivar(p, vc, cpg)), *row = ivar(p, vr, r.rows);
  Expr *o = ADD(MUL(ivar(p, vg, G), I(opg)), ivar(p, vo, opg));
  Expr *yi = ADD(ADD(MUL(ADD(MUL(V(vn), I(g.o)), o), I(plane)), MUL(row, I(r.pitch))), V(vj));
  Expr *bias = n->nin > 2 ? lower_value(L, n->in[2], o) : kx_f(p, 0);
  Stmt *init = ks_loop(p, vi, I(r.cols), ks_store(p, yb, ADD(MUL(ADD(MUL(V(vn), I(g.o)), o), I(plane)),
                                                                ADD(MUL(row, I(r.pitch)), V(vi))), bias));
  int acc = lower_local(L);
  Stmt *weights = NULL, *col = ks_local(p, acc, DT_F32, kx_load(p, yb, yi));
  for (int64_t a = 0; a < nkh; a++)
    for (int64_t k = 0; k < nkw; k++) {
      Expr *kh = unroll_kh ? I(a) : ivar(p, vkh, g.kh), *kw = unroll_kw ? I(k) : ivar(p, vkw, g.kw);
      Expr *wi = ADD(MUL(ADD(MUL(ADD(MUL(o, I(cpg)), ivar(p, vc, cpg)), I(g.kh)), kh), I(g.kw)), kw);
      int wl = lower_local(L), xv = lower_local(L);
      ks_append(&weights, ks_local(p, wl, DT_F32, lower_value(L, n->in[1], wi)));
      Expr *xi = r.shifted ? at(p, ADD(MUL(ADD(MUL(V(vn), I(g.c)), c), I(g.kw)), kw), hp, MUL(kh, I(g.dh)), g.ow, V(vj))
                           : ADD(at(p, ADD(MUL(V(vn), I(g.c)), c), hp, ADD(MUL(row, I(g.sh)), MUL(kh, I(g.dh))), wp, I(0)),
                                 ADD(MUL(kw, I(g.dw)), MUL(V(vj), I(g.sw))));
      ks_append(&col, ks_local(p, xv, DT_F32, kx_load(p, xb, xi)));
      ks_append(&col, ks_assign(p, acc, FADD(kx_local(p, acc, DT_F32), FMUL(kx_local(p, wl, DT_F32), kx_local(p, xv, DT_F32)))));
    }
  ks_append(&col, ks_store(p, yb, yi, kx_local(p, acc, DT_F32)));
  ks_append(&weights, ks_loop(p, vj, I(r.cols), col));
  Stmt *taps = unroll_kw ? weights : loop(p, vkw, g.kw, weights);
  if (!unroll_kw && g.kw > 1) taps->loop = LOOP_REDUCE;
  if (!unroll_kh && g.kh > 1) taps = reduce_loop(p, vkh, g.kh, taps);
  Stmt *body = init;
  ks_append(&body, reduce_loop(p, vc, cpg, taps));
  ks_append(&all, ks_loop(p, vn, kx_dim(p, g.n), ks_loop(p, vg, I(G), ks_loop(p, vo, I(opg), ks_loop(p, vr, I(r.rows), body)))));
  if (r.wide) ks_append(&all, rewidth(L, y, yb, planes(p, &g, g.o), g.oh, g.ow, r.pitch, 0));
  return all;
}

/* conv2d_grad_weight (dy, x, w): for each tap, the products of dy and the
 * input it read are summed along the output rows into a row buffer
 * (independent per element), then the row is summed:
 * dw[o, c, kh, kw] = sum over n, rows, cols.  With unit strides dy is
 * first widened to the padded input's rows (zeros in the extra columns).
 * Each output channel o has a row buffer of its own, so the iterations of
 * the loops over groups and channels share no storage and run in
 * parallel (the schedule marks them). */
static Stmt *lower_conv_grad_weight(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  ConvGeom g;
  ir_conv_geom(L->g, n, &g);
  Stmt *all;
  int64_t hp, wp;
  int xb = padded_input(L, id, n->in[1], &g, &all, &hp, &wp), dw = L->buf[id], dy = L->buf[n->in[0]];
  Rows r = row_walk(&g, wp);
  int64_t G = g.groups, cpg = g.c / G, opg = g.o / G, plane = g.oh * r.pitch;
  if (r.wide) {
    Shape ws = {3, {g.n, g.o, plane}};
    int wide = kir_buffer(p, BUF_TEMP, DT_F32, "dy_wide", &ws, id);
    ks_append(&all, rewidth(L, wide, dy, planes(p, &g, g.o), g.oh, g.ow, wp, 1));
    dy = wide;
  }
  Shape rs = {2, {g.o, r.cols}};
  int acc = kir_buffer(p, BUF_TEMP, DT_F32, "tap_sums", &rs, id);
  int vg = lower_var(L), vo = lower_var(L), vc = lower_var(L), vkh = lower_var(L), vkw = lower_var(L);
  int vz = lower_var(L), vn = lower_var(L), vr = lower_var(L), vj = lower_var(L), vs = lower_var(L), s = lower_local(L);
  Expr *o = ADD(MUL(ivar(p, vg, G), I(opg)), ivar(p, vo, opg)), *c = ADD(MUL(ivar(p, vg, G), I(cpg)), ivar(p, vc, cpg));
  Expr *row = ivar(p, vr, r.rows), *kh = ivar(p, vkh, g.kh), *kw = ivar(p, vkw, g.kw);
  Expr *yrow = ADD(MUL(ADD(MUL(V(vn), I(g.o)), o), I(plane)), MUL(row, I(r.pitch)));
  Expr *xrow = ADD(at(p, ADD(MUL(V(vn), I(g.c)), c), hp, ADD(MUL(row, I(g.sh)), MUL(kh, I(g.dh))), wp, I(0)),
                   MUL(kw, I(g.dw)));
  Expr *prod = FMUL(kx_load(p, dy, ADD(yrow, V(vj))), kx_load(p, xb, ADD(xrow, MUL(V(vj), I(g.sw)))));
  Expr *arow = MUL(o, I(r.cols));
  Stmt *tap = ks_loop(p, vz, I(r.cols), ks_store(p, acc, ADD(arow, V(vz)), kx_f(p, 0)));
  ks_append(&tap, ks_loop(p, vn, kx_dim(p, g.n), loop(p, vr, r.rows, ks_loop(p, vj, I(r.cols), add_to(p, acc, ADD(arow, V(vj)), prod)))));
  ks_append(&tap, ks_local(p, s, DT_F32, kx_f(p, 0)));
  ks_append(&tap, ks_loop(p, vs, I(r.cols), ks_assign(p, s, FADD(kx_local(p, s, DT_F32), kx_load(p, acc, ADD(arow, V(vs)))))));
  Expr *wi = ADD(MUL(ADD(MUL(ADD(MUL(o, I(cpg)), ivar(p, vc, cpg)), I(g.kh)), kh), I(g.kw)), kw);
  ks_append(&tap, ks_store(p, dw, wi, kx_local(p, s, DT_F32)));
  /* the loop over o stays at one iteration: the outer loop is never one whose iterations share a row */
  ks_append(&all, loop(p, vg, G, ks_loop(p, vo, I(opg), loop(p, vc, cpg, loop(p, vkh, g.kh, loop(p, vkw, g.kw, tap))))));
  return all;
}

/* Crops the uncropped result full (hf x wf planes) of conv_transpose2d
 * into its output, adding the bias; appended to all. */
static Stmt *crop_into(Lower *L, int id, const ConvGeom *g, Stmt *all, int full, int64_t hf, int64_t wf) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  int vn = lower_var(L), vc = lower_var(L), vh = lower_var(L), vw = lower_var(L), y = L->buf[id];
  Expr *pl = ADD(MUL(V(vn), I(g->c)), V(vc));
  Expr *v = kx_load(p, full, at(p, pl, hf, ADD(V(vh), I(g->pt)), wf, ADD(V(vw), I(g->pl))));
  if (n->nin > 2) v = FADD(v, lower_value(L, n->in[2], V(vc)));
  Stmt *crop = ks_loop(p, vh, I(g->h), ks_loop(p, vw, I(g->w), ks_store(p, y, at(p, pl, g->h, V(vh), g->w, V(vw)), v)));
  ks_append(&all, ks_loop(p, vn, kx_dim(p, g->n), ks_loop(p, vc, I(g->c), crop)));
  return all;
}

/* conv_transpose2d with unit strides as a gather: the input x (the
 * convolution's output) is copied into planes of wf-wide rows with front
 * zeros in front and zeros after, so that every uncropped position f reads
 * x at f + front - kh*dh*wf - kw*dw without bounds:
 *   for n, group, c, o (reduce): w_t = w[o, c, t] (locals)
 *     for f: a = full[c, f]; for each tap t: a += w_t * xpad[o, f + front - off_t]
 *       full[c, f] = a
 * Each element sums o, kh, kw in the order the scatter did (plus zero
 * products where the scatter added nothing).  The taps are unrolled up to
 * 9 (3x3); a larger window keeps kh as a (reduce) loop around its row of
 * kw taps, as the forward pass does.  The loops n, group, c and o are
 * there even at one iteration; the schedule blocks c (several result
 * channels share each load of x) and drops the rest.  Only grouped
 * transposes take it (one group: transpose_rows). */
static Stmt *transpose_gather(Lower *L, int id, const ConvGeom *gp, int full, int64_t hf, int64_t wf) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  ConvGeom g = *gp;
  int64_t G = g.groups, cpg = g.c / G, opg = g.o / G;
  int64_t front = (g.kh - 1) * g.dh * wf + (g.kw - 1) * g.dw, len = front + hf * wf;
  Shape xs = {3, {g.n, g.o, len}};
  int xp = kir_buffer(p, BUF_TEMP, DT_F32, "dy_padded", &xs, id), x = L->buf[n->in[0]];
  int vz = lower_var(L), vp = lower_var(L), vh = lower_var(L), vw = lower_var(L);
  Stmt *all = ks_loop(p, vz, MUL(planes(p, &g, g.o), I(len)), ks_store(p, xp, V(vz), kx_f(p, 0)));
  ks_append(&all, ks_loop(p, vp, planes(p, &g, g.o), ks_loop(p, vh, I(g.oh), ks_loop(p, vw, I(g.ow),
            ks_store(p, xp, ADD(ADD(MUL(V(vp), I(len)), I(front)), ADD(MUL(V(vh), I(wf)), V(vw))),
                     kx_load(p, x, at(p, V(vp), g.oh, V(vh), g.ow, V(vw))))))));
  int vn = lower_var(L), vg = lower_var(L), vc = lower_var(L), vo = lower_var(L), vf = lower_var(L);
  Expr *o = ADD(MUL(ivar(p, vg, G), I(opg)), ivar(p, vo, opg));
  Expr *cl = ivar(p, vc, cpg), *c = ADD(MUL(ivar(p, vg, G), I(cpg)), cl);
  Expr *fi = ADD(MUL(ADD(MUL(V(vn), I(g.c)), c), I(hf * wf)), V(vf));
  int acc = lower_local(L), vkh = lower_var(L), unroll_kh = g.kh * g.kw <= 9;
  Stmt *weights = NULL, *col = ks_local(p, acc, DT_F32, kx_load(p, full, fi));
  for (int64_t a = 0; a < (unroll_kh ? g.kh : 1); a++)
    for (int64_t b = 0; b < g.kw; b++) {
      Expr *kh = unroll_kh ? I(a) : V(vkh);
      int wl = lower_local(L), xv = lower_local(L);
      Expr *wi = ADD(MUL(ADD(MUL(ADD(MUL(o, I(cpg)), cl), I(g.kh)), kh), I(g.kw)), I(b));
      ks_append(&weights, ks_local(p, wl, DT_F32, lower_value(L, n->in[1], wi)));
      Expr *xi = ADD(ADD(MUL(ADD(MUL(V(vn), I(g.o)), o), I(len)), I(front - b * g.dw)), V(vf));
      if (!unroll_kh) xi = kx_bin(p, BIN_SUB, xi, MUL(kh, I(g.dh * wf)));
      else xi = ADD(xi, I(-a * g.dh * wf));
      ks_append(&col, ks_local(p, xv, DT_F32, kx_load(p, xp, xi)));
      ks_append(&col, ks_assign(p, acc, FADD(kx_local(p, acc, DT_F32), FMUL(kx_local(p, wl, DT_F32), kx_local(p, xv, DT_F32)))));
    }
  ks_append(&col, ks_store(p, full, fi, kx_local(p, acc, DT_F32)));
  ks_append(&weights, ks_loop(p, vf, I(hf * wf), col));
  Stmt *taps = unroll_kh ? weights : reduce_loop(p, vkh, g.kh, weights);
  ks_append(&all, ks_loop(p, vn, kx_dim(p, g.n), ks_loop(p, vg, I(G), ks_loop(p, vc, I(cpg), reduce_loop(p, vo, opg, taps)))));
  return all;
}

/* The copy of item n's planes of conv_transpose2d's input x (the
 * convolution's output) that transpose_rows reads: each row of x in a row
 * of wf floats after fx = (kw-1)*dw zeros (and zeros to the row's end),
 * and zeros after the last row up to len, so that row y's column
 * j - kw*dw (0 <= j < wf) is at y*wf + fx + j - kw*dw and reads a zero
 * wherever it lies outside x.  Each element is written once (no zero
 * fill and copy over it), just before the tiles read it. */
static Stmt *row_padded(Lower *L, const ConvGeom *g, int xp, int x, int64_t wf, int64_t len, int vn) {
  Program *p = L->p;
  int64_t fx = (g->kw - 1) * g->dw, back = wf - fx - g->ow, end = len - g->oh * wf;
  int vo = lower_var(L), vy = lower_var(L), va = lower_var(L), vx = lower_var(L), vb = lower_var(L), vt = lower_var(L);
  Expr *pl = ADD(MUL(V(vn), I(g->o)), V(vo)), *row = ADD(MUL(pl, I(len)), MUL(V(vy), I(wf)));
  Stmt *r = fx ? ks_loop(p, va, I(fx), ks_store(p, xp, ADD(row, V(va)), kx_f(p, 0))) : NULL;
  ks_append(&r, ks_loop(p, vx, I(g->ow), ks_store(p, xp, ADD(row, ADD(V(vx), I(fx))), kx_load(p, x, at(p, pl, g->oh, V(vy), g->ow, V(vx))))));
  if (back) ks_append(&r, ks_loop(p, vb, I(back), ks_store(p, xp, ADD(row, ADD(V(vb), I(fx + g->ow))), kx_f(p, 0))));
  Stmt *plane = ks_loop(p, vy, I(g->oh), r);
  if (end) ks_append(&plane, ks_loop(p, vt, I(end), ks_store(p, xp, ADD(MUL(pl, I(len)), ADD(V(vt), I(g->oh * wf))), kx_f(p, 0))));
  return ks_loop(p, vo, I(g->o), plane);
}

/* tab[kk] = value (an index in terms of kk < K), filled on every call. */
static Stmt *tap_table(Lower *L, int id, int64_t K, const char *name, int *tab, int vk, Expr *value) {
  Program *p = L->p;
  Shape ts = {1, {K}};
  *tab = kir_buffer(p, BUF_TEMP, DT_I64, name, &ts, id);
  return ks_loop(p, vk, I(K), ks_store(p, *tab, V(vk), value));
}

/* conv_transpose2d with unit strides and one group, by rows of taps: for
 * each batch item n, every result channel c and kernel row kh has a row
 * sum over the convolution's output positions q = y*wf + j (y < oh, j < wf)
 *   rows[n, c*kh' + kh, q] = sum over kk = (o, kw) of
 *                            w[o, c, kh, kw] * xp[n, o, q + fx - kw*dw]
 * (xp: row_padded), which the result takes at an offset of whole rows:
 *   full[n, c, f] = init[c]; then for kh in order: full[n, c, kh*dh*wf + q] += rows[n, c*kh' + kh, q]
 * Only the columns of the kernel read zeros (wf of every oh rows, for ow
 * real ones), not its rows too as a gather over all hf x wf positions of
 * the result would (hf rows of the result, each with kh taps).  The row
 * sums are a matrix product in the row form (rows c*kh' + kh, columns q,
 * K = o*kw' + kw, the weight and input offsets of term kk in two tables),
 * which the schedule puts in register tiles (sched_ct.c).  Each element of
 * the result sums init, then kh, then o, kw: a different order from the
 * scatter's (o, kh, kw). */
static Stmt *transpose_rows(Lower *L, int id, const ConvGeom *g, int full, int64_t hf, int64_t wf) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  /* the row sums are computed for Qt >= Q positions, whole vectors of 16 (TILE_WIDTH, schedule.c):
   * the tiles then have no narrow panel for the last positions */
  int64_t fx = (g->kw - 1) * g->dw, Q = g->oh * wf, Qt = (Q + 15) / 16 * 16, len = Qt + fx, R = g->c * g->kh, K = g->o * g->kw;
  Shape xs = {3, {g->n, g->o, len}}, rs = {3, {g->n, R, Qt}};
  int xp = kir_buffer(p, BUF_TEMP, DT_F32, "dy_rows", &xs, id), rb = kir_buffer(p, BUF_TEMP, DT_F32, "tap_rows", &rs, id);
  int wtab, xtab, vk = lower_var(L), vk2 = lower_var(L);
  Expr *o = kx_bin(p, BIN_DIV, V(vk), I(g->kw)), *kw = kx_bin(p, BIN_MOD, V(vk), I(g->kw));
  Stmt *all = tap_table(L, id, K, "tap_weights", &wtab, vk, ADD(MUL(o, I(g->c * g->kh * g->kw)), kw));
  o = kx_bin(p, BIN_DIV, V(vk2), I(g->kw)), kw = kx_bin(p, BIN_MOD, V(vk2), I(g->kw));
  ks_append(&all, tap_table(L, id, K, "tap_offsets", &xtab, vk2, kx_bin(p, BIN_SUB, ADD(MUL(o, I(len)), I(fx)), MUL(kw, I(g->dw)))));
  int vn = lower_var(L), vc = lower_var(L), vf = lower_var(L), vr = lower_var(L), vi = lower_var(L), vkk = lower_var(L);
  int vj = lower_var(L), vc2 = lower_var(L), vh = lower_var(L), vq = lower_var(L), vb = lower_var(L), xl = lower_local(L);
  Expr *plane = ADD(MUL(V(vn), I(g->c)), V(vc));
  Expr *bias = n->nin > 2 && full == L->buf[id] ? lower_value(L, n->in[2], V(vc)) : kx_f(p, 0); /* else the crop adds it */
  Stmt *body = row_padded(L, g, xp, L->buf[n->in[0]], wf, len, vn);
  Expr *ri = ADD(MUL(ADD(MUL(V(vn), I(R)), V(vr)), I(Qt)), V(vi)), *ui = ADD(MUL(ADD(MUL(V(vn), I(R)), V(vr)), I(Qt)), V(vj));
  Stmt *rows = ks_loop(p, vi, I(Qt), ks_store(p, rb, ri, kx_f(p, 0)));
  Stmt *term = ks_local(p, xl, DT_F32, lower_value(L, n->in[1], ADD(MUL(V(vr), I(g->kw)), kx_load(p, wtab, V(vkk)))));
  Expr *src = ADD(ADD(MUL(V(vn), I(g->o * len)), kx_load(p, xtab, V(vkk))), V(vj));
  ks_append(&term, ks_loop(p, vj, I(Qt), ks_store(p, rb, ui, FADD(kx_load(p, rb, ui), FMUL(kx_local(p, xl, DT_F32), kx_load(p, xp, src))))));
  ks_append(&rows, reduce_loop(p, vkk, K, term));
  ks_append(&body, ks_loop(p, vr, I(R), rows));
  /* init[c] + rows of kh = 0 (rows' first Q positions of the result), init alone after them */
  Expr *row0 = kx_load(p, rb, ADD(MUL(ADD(MUL(V(vn), I(R)), MUL(V(vc), I(g->kh))), I(Qt)), V(vf)));
  Stmt *first = ks_loop(p, vf, I(Q), ks_store(p, full, ADD(MUL(plane, I(hf * wf)), V(vf)), FADD(bias, row0)));
  if (hf * wf > Q)
    ks_append(&first, ks_loop(p, vb, I(hf * wf - Q), ks_store(p, full, ADD(MUL(kir_clone_expr(p, plane), I(hf * wf)), ADD(V(vb), I(Q))),
                                                                   kir_clone_expr(p, bias))));
  ks_append(&body, ks_loop(p, vc, I(g->c), first));
  Expr *dst = ADD(MUL(ADD(MUL(V(vn), I(g->c)), V(vc2)), I(hf * wf)), ADD(MUL(ADD(V(vh), I(1)), I(g->dh * wf)), V(vq)));
  Expr *sum = kx_load(p, rb, ADD(MUL(ADD(MUL(ADD(MUL(V(vn), I(g->c)), V(vc2)), I(g->kh)), ADD(V(vh), I(1))), I(Qt)), V(vq)));
  if (g->kh > 1) ks_append(&body, ks_loop(p, vc2, I(g->c), ks_loop(p, vh, I(g->kh - 1), ks_loop(p, vq, I(Q), add_to(p, full, dst, sum)))));
  ks_append(&all, ks_loop(p, vn, kx_dim(p, g->n), body));
  return all;
}

/* Whether conv_transpose2d (unit strides and dilations, one group, the
 * uncropped result exactly (oh + kh - 1) x (ow + kw - 1)) takes the taps
 * form (transpose_taps) rather than the rows of taps: the rows form's
 * products cover wf columns per row of x where x has ow, the taps form
 * has no product on a zero but gathers kh*kw taps into each element of
 * the result (about two operations a tap: the select and the add).  It
 * pays when the fmas it saves outweigh the gather by a margin (LeNet-5's
 * second convolution, 6 x 14 x 14 from 16 x 10 x 10: 345,600 products as
 * rows, 240,000 as taps and 58,800 gather operations).  A window one
 * column wide has no zero column to save.  An item's taps (kh*kw rows of
 * products per result channel, kw times the rows form's) stay within
 * TAPS_MAX floats, so that no large layer gets an im2col-sized buffer
 * (LeNet-5's: 15,000). */
#define TAPS_MAX (256 * 1024)
static int taps_pay(const ConvGeom *g, int64_t hf, int64_t wf) {
  if (g->dh != 1 || g->dw != 1 || hf != g->oh + g->kh - 1 || wf != g->ow + g->kw - 1 || g->oh * g->ow < 16 || wf < 4 ||
      g->kw < 2 || g->c * g->kh * g->kw * g->oh * g->ow > TAPS_MAX)
    return 0;
  int64_t Q = g->oh * g->ow, Qt = (g->oh * wf + 15) / 16 * 16, taps = g->c * g->kh * g->kw;
  int64_t rows = g->c * g->kh * Qt * g->o * g->kw, form = taps * Q * g->o + 2 * g->c * hf * wf * g->kh * g->kw;
  return form * 11 < rows * 10;
}

/* conv_transpose2d by taps: for each batch item n, each tap t = (c, kh,
 * kw) of the kernel has a row of products over the convolution's output
 * positions q = y*ow + x (x, conv_transpose2d's input, read where it is):
 *   taps[n, t, q] = sum over o of w[o, c, kh, kw] * x[n, o, q]
 * a matrix product in the row form (rows t, columns q, K = o) with no
 * product on a zero, which the schedule puts in register tiles (sched_ct.c);
 * then each element of the uncropped result gathers its taps:
 *   full[n, c, Y, j] = init[c] + sum over kh (0 <= Y - kh < oh), then kw, of
 *                      (mask[kw, j] > 0 ? taps[n, t, (Y - kh)*ow + j - kw] : 0)
 * where mask[kw, j] = 1 when kw <= j < kw + ow (0 <= the tap's column < ow),
 * a table filled on every call.  Each item's taps have kw - 1 zeros
 * before and after them, so a gather's read off its row (at most kw - 1
 * columns before or after it), which the mask drops, stays inside the
 * item's own part of the buffer (the schedule reads whole vectors of j).
 * Each element sums init, then kh, kw, each tap's o in order. */
static Stmt *transpose_taps(Lower *L, int id, const ConvGeom *g, int full, int64_t hf, int64_t wf) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  int64_t Q = g->oh * g->ow, T = g->c * g->kh * g->kw, S = g->kw - 1, P = T * Q + 2 * S;
  Shape ts = {2, {g->n, P}}, ms = {1, {g->kw * wf}};
  int tb = kir_buffer(p, BUF_TEMP, DT_F32, "taps", &ts, id), mt = kir_buffer(p, BUF_TEMP, DT_F32, "tap_mask", &ms, id);
  int x = L->buf[n->in[0]];
  int vm = lower_var(L), vmj = lower_var(L);
  Expr *mj = V(vmj), *mk = V(vm);
  Expr *below = kx_bin(p, BIN_LT, kir_clone_expr(p, mj), ADD(kir_clone_expr(p, mk), I(g->ow)));
  Expr *inside = kx_select(p, kx_bin(p, BIN_GE, mj, kir_clone_expr(p, mk)), kx_select(p, below, kx_f(p, 1), kx_f(p, 0)), kx_f(p, 0));
  Stmt *all = ks_loop(p, vm, I(g->kw), ks_loop(p, vmj, I(wf), ks_store(p, mt, ADD(MUL(V(vm), I(wf)), V(vmj)), inside)));
  int vn = lower_var(L), vs = lower_var(L), vs2 = lower_var(L), vr = lower_var(L), vi = lower_var(L);
  int vkk = lower_var(L), vj = lower_var(L), xl = lower_local(L);
  Expr *base = MUL(V(vn), I(P));
  /* the zeros around the item's taps (kw >= 2: S >= 1) */
  Stmt *body = ks_loop(p, vs, I(S), ks_store(p, tb, ADD(base, V(vs)), kx_f(p, 0)));
  ks_append(&body, ks_loop(p, vs2, I(S), ks_store(p, tb, ADD(ADD(kir_clone_expr(p, base), I(S + T * Q)), V(vs2)), kx_f(p, 0))));
  /* the taps' rows */
  Expr *ri = ADD(ADD(kir_clone_expr(p, base), I(S)), ADD(MUL(V(vr), I(Q)), V(vi)));
  Expr *ui = ADD(ADD(kir_clone_expr(p, base), I(S)), ADD(MUL(V(vr), I(Q)), V(vj)));
  Stmt *rows = ks_loop(p, vi, I(Q), ks_store(p, tb, ri, kx_f(p, 0)));
  Stmt *term = ks_local(p, xl, DT_F32, lower_value(L, n->in[1], ADD(MUL(V(vkk), I(T)), V(vr))));
  Expr *src = ADD(MUL(ADD(MUL(V(vn), I(g->o)), V(vkk)), I(Q)), V(vj));
  Expr *prod = FMUL(kx_local(p, xl, DT_F32), kx_load(p, x, src));
  ks_append(&term, ks_loop(p, vj, I(Q), ks_store(p, tb, ui, FADD(kx_load(p, tb, kir_clone_expr(p, ui)), prod))));
  ks_append(&rows, reduce_loop(p, vkk, g->o, term));
  ks_append(&body, ks_loop(p, vr, I(T), rows));
  /* the gather: for c, Y, j: init, then kh in lo(Y) .. hi(Y), kw */
  int vc = lower_var(L), vy = lower_var(L), vq = lower_var(L), vh = lower_var(L), vw = lower_var(L), acc = lower_local(L);
  Expr *bias = n->nin > 2 && full == L->buf[id] ? lower_value(L, n->in[2], V(vc)) : kx_f(p, 0); /* else the crop adds it */
  Expr *lo = imax(p, I(0), ADD(V(vy), I(1 - g->oh)));
  Expr *cnt = ADD(kx_bin(p, BIN_SUB, imin(p, I(g->kh - 1), V(vy)), kir_clone_expr(p, lo)), I(1));
  /* kh = lo + vh and its row Y - kh = min(Y, oh - 1) - vh, each clamped to where it always is (for the verifier) */
  Expr *kh = imin(p, ADD(kir_clone_expr(p, lo), V(vh)), I(g->kh - 1));
  Expr *yy = imax(p, kx_bin(p, BIN_SUB, imin(p, V(vy), I(g->oh - 1)), V(vh)), I(0));
  Expr *t = ADD(MUL(ADD(MUL(V(vc), I(g->kh)), kh), I(g->kw)), V(vw));
  Expr *ti = ADD(ADD(kir_clone_expr(p, base), I(S)), ADD(ADD(MUL(t, I(Q)), MUL(yy, I(g->ow))), ADD(V(vq), MUL(V(vw), I(-1)))));
  Expr *on = kx_bin(p, BIN_GT, kx_load(p, mt, ADD(MUL(V(vw), I(wf)), V(vq))), kx_f(p, 0));
  Stmt *tap = ks_assign(p, acc, FADD(kx_local(p, acc, DT_F32), kx_select(p, on, kx_load(p, tb, ti), kx_f(p, 0))));
  Stmt *khl = ks_loop(p, vh, cnt, reduce_loop(p, vw, g->kw, tap));
  khl->loop = LOOP_REDUCE;
  Stmt *elem = ks_local(p, acc, DT_F32, bias);
  ks_append(&elem, khl);
  ks_append(&elem, ks_store(p, full, at(p, ADD(MUL(V(vn), I(g->c)), V(vc)), hf, V(vy), wf, V(vq)), kx_local(p, acc, DT_F32)));
  ks_append(&body, ks_loop(p, vc, I(g->c), ks_loop(p, vy, I(hf), ks_loop(p, vq, I(wf), elem))));
  ks_append(&all, ks_loop(p, vn, kx_dim(p, g->n), body));
  return all;
}

/* conv_transpose2d (and so conv2d's data gradient): each product of an
 * input element (the convolution's output position) and a tap is added
 * at the position the convolution read, in an uncropped buffer of
 * hf x wf; then the padding is cropped off and the bias added.  Without
 * padding the result is the uncropped buffer itself.  With unit strides
 * it is rows of taps (one group, transpose_rows) or the gather
 * (transpose_gather) instead, so the scatter walks its input row by row. */
static Stmt *lower_conv_transpose(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  ConvGeom g;
  ir_conv_geom(L->g, n, &g);
  int64_t hf = (g.oh - 1) * g.sh + g.dh * (g.kh - 1) + 1, wf = (g.ow - 1) * g.sw + g.dw * (g.kw - 1) + 1;
  if (hf < g.pt + g.h) hf = g.pt + g.h;
  if (wf < g.pl + g.w) wf = g.pl + g.w;
  int direct = g.pt == 0 && g.pl == 0 && hf == g.h && wf == g.w, y = L->buf[id], x = L->buf[n->in[0]];
  Shape fs = {4, {g.n, g.c, hf, wf}};
  int full = direct ? y : kir_buffer(p, BUF_TEMP, DT_F32, "uncropped", &fs, id);
  if (g.sh == 1 && g.sw == 1 && g.groups == 1) {
    Stmt *all = taps_pay(&g, hf, wf) ? transpose_taps(L, id, &g, full, hf, wf) : transpose_rows(L, id, &g, full, hf, wf);
    return direct ? all : crop_into(L, id, &g, all, full, hf, wf);
  }
  Rows r = row_walk(&g, wf);
  int64_t G = g.groups, cpg = g.c / G, opg = g.o / G, plane = g.oh * r.pitch;
  int vn = lower_var(L), vc0 = lower_var(L), vi = lower_var(L);
  Expr *bias = n->nin > 2 && direct ? lower_value(L, n->in[2], V(vc0)) : kx_f(p, 0);
  Stmt *all = ks_loop(p, vn, kx_dim(p, g.n), ks_loop(p, vc0, I(g.c), ks_loop(p, vi, I(hf * wf),
                      ks_store(p, full, ADD(MUL(ADD(MUL(V(vn), I(g.c)), V(vc0)), I(hf * wf)), V(vi)), bias))));
  if (g.sh == 1 && g.sw == 1) {
    ks_append(&all, transpose_gather(L, id, &g, full, hf, wf));
    return direct ? all : crop_into(L, id, &g, all, full, hf, wf);
  }
  int vg = lower_var(L), vo = lower_var(L), vc = lower_var(L), vkh = lower_var(L), vkw = lower_var(L);
  int vr = lower_var(L), vj = lower_var(L), t = lower_local(L);
  Expr *o = ADD(MUL(ivar(p, vg, G), I(opg)), ivar(p, vo, opg)), *c = ADD(MUL(ivar(p, vg, G), I(cpg)), ivar(p, vc, cpg));
  Expr *kh = ivar(p, vkh, g.kh), *kw = ivar(p, vkw, g.kw), *row = ivar(p, vr, r.rows);
  Expr *xi = ADD(ADD(MUL(ADD(MUL(V(vn), I(g.o)), o), I(plane)), MUL(row, I(r.pitch))), V(vj));
  Expr *fi = ADD(at(p, ADD(MUL(V(vn), I(g.c)), c), hf, ADD(MUL(row, I(g.sh)), MUL(kh, I(g.dh))), wf, MUL(kw, I(g.dw))),
                 MUL(V(vj), I(g.sw)));
  Expr *wi = ADD(MUL(ADD(MUL(ADD(MUL(o, I(cpg)), ivar(p, vc, cpg)), I(g.kh)), kh), I(g.kw)), kw);
  Stmt *tap = ks_local(p, t, DT_F32, lower_value(L, n->in[1], wi));
  ks_append(&tap, loop(p, vr, r.rows, ks_loop(p, vj, I(r.cols), add_to(p, full, fi, FMUL(kx_local(p, t, DT_F32), kx_load(p, x, xi))))));
  Stmt *taps = loop(p, vg, G, loop(p, vo, opg, loop(p, vc, cpg, loop(p, vkh, g.kh, loop(p, vkw, g.kw, tap)))));
  ks_append(&all, ks_loop(p, vn, kx_dim(p, g.n), taps));
  return direct ? all : crop_into(L, id, &g, all, full, hf, wf);
}

/* --- pooling ---------------------------------------------------------------------------- */

/* Whether every window of g lies inside the input (no padding is read). */
static int windows_inside(const ConvGeom *g) {
  return g->pt == 0 && g->pl == 0 && (g->oh - 1) * g->sh + g->dh * (g->kh - 1) < g->h &&
         (g->ow - 1) * g->sw + g->dw * (g->kw - 1) < g->w;
}

/* One tap of a window: its row i and column j, whether it is inside the
 * input (NULL: always), and its index within the plane (read only where
 * it is inside: a guarded load). */
typedef struct Tap {
  Expr *i, *j, *ok, *idx;
} Tap;

static Tap window_tap(Program *p, const ConvGeom *g, Expr *oh, Expr *ow, Expr *kh, Expr *kw) {
  Tap t;
  t.i = ADD(ADD(MUL(oh, I(g->sh)), I(-g->pt)), MUL(kh, I(g->dh)));
  t.j = ADD(ADD(MUL(ow, I(g->sw)), I(-g->pl)), MUL(kw, I(g->dw)));
  t.idx = ADD(MUL(t.i, I(g->w)), t.j);
  t.ok = NULL;
  if (windows_inside(g)) return t;
  Expr *in_h = kx_bin(p, BIN_AND, kx_bin(p, BIN_GE, t.i, I(0)), kx_bin(p, BIN_LT, t.i, I(g->h)));
  Expr *in_w = kx_bin(p, BIN_AND, kx_bin(p, BIN_GE, t.j, I(0)), kx_bin(p, BIN_LT, t.j, I(g->w)));
  t.ok = kx_bin(p, BIN_AND, in_h, in_w);
  return t;
}

/* max_pool2d, and with grad its gradient: the first maximum of each window
 * in scan order (a NaN wins, as in PyTorch); the gradient adds dy there.
 * When the windows tile the input exactly (stride = kernel, no padding,
 * no rest), each element of the gradient belongs to one window, and the
 * window writes all of its elements, 0 + dy at its maximum and 0
 * elsewhere, instead of a zeroed result and a scatter. */
#define POOL_TAPS 16

/* max_pool2d with windows inside the input of at most POOL_TAPS taps: the
 * taps written out in scan order, the first one the initial maximum (the
 * loop's "nothing taken yet" test goes) and no index kept: m = max(v, m)
 * for each later tap, BIN_MAX being exactly the loop's select
 * (v > m || v != v ? v : m), so the same first maximum and the same NaN.
 * The output column loop is then straight-line code the C compiler
 * vectorises.  (The gradient keeps the loop over the taps: gcc vectorises
 * that form over the output columns and not the written-out one, whose
 * index selects it turns into branches.) */
static Stmt *max_pool_taps(Lower *L, int id, const ConvGeom *g) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  int x = L->buf[n->in[0]], out = L->buf[id];
  int vp = lower_var(L), vh = lower_var(L), vw = lower_var(L), m = lower_local(L);
  Expr *plane = MUL(V(vp), I(g->h * g->w)), *mv = kx_local(p, m, DT_F32);
  Stmt *body = NULL;
  for (int64_t a = 0; a < g->kh; a++)
    for (int64_t b = 0; b < g->kw; b++) {
      Tap t = window_tap(p, g, V(vh), V(vw), I(a), I(b));
      Expr *xv = kx_load(p, x, ADD(plane, t.idx));
      ks_append(&body, a == 0 && b == 0 ? ks_local(p, m, DT_F32, xv) : ks_assign(p, m, kx_bin(p, BIN_MAX, xv, mv)));
    }
  ks_append(&body, ks_store(p, out, at(p, V(vp), g->oh, V(vh), g->ow, V(vw)), mv));
  return ks_loop(p, vp, planes(p, g, g->c), ks_loop(p, vh, I(g->oh), ks_loop(p, vw, I(g->ow), body)));
}

static Stmt *lower_max_pool(Lower *L, int id, int grad) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  ConvGeom g;
  ir_conv_geom(L->g, n, &g);
  /* windows that tile the input exactly: every element of the gradient is in one window */
  int tiled = g.sh == g.kh && g.sw == g.kw && g.dh == 1 && g.dw == 1 && g.pt == 0 && g.pl == 0 && g.oh * g.kh == g.h &&
              g.ow * g.kw == g.w;
  if (!grad && windows_inside(&g) && g.kh * g.kw <= POOL_TAPS) return max_pool_taps(L, id, &g);
  int x = L->buf[n->in[grad ? 1 : 0]], out = L->buf[id];
  int vp = lower_var(L), vh = lower_var(L), vw = lower_var(L), vkh = lower_var(L), vkw = lower_var(L);
  int m = lower_local(L), best = lower_local(L), v = lower_local(L);
  Tap t = window_tap(p, &g, V(vh), V(vw), ivar(p, vkh, g.kh), ivar(p, vkw, g.kw));
  Expr *plane = MUL(V(vp), I(g.h * g.w));
  /* The tiled gradient names the taken tap by its place in the window's band of rows, a * w + j, kept as
   * an f32 (exact below 2^24), so that every lane of the loop is 32 bits wide.  The place depends on the
   * output column: a number that did not (the tap's number in the window) gcc turns into branches and
   * does not vectorise.  Otherwise the tap's index in the plane, as an i64. */
  DType bt = grad && tiled && g.kh * g.w < (1 << 24) ? DT_F32 : DT_I64;
  Expr *mv = kx_local(p, m, DT_F32), *vv = kx_local(p, v, DT_F32), *bv = kx_local(p, best, bt);
  Expr *tapno = bt == DT_F32 ? kx_cast(p, DT_F32, ADD(MUL(ivar(p, vkh, g.kh), I(g.w)), t.j)) : t.idx;
  Expr *load = t.ok ? kx_load_guarded(p, x, ADD(plane, t.idx), t.ok, kx_f(p, -INFINITY)) : kx_load(p, x, ADD(plane, t.idx));
  Stmt *tap = ks_local(p, v, DT_F32, load);
  /* take = ok && (best < 0 || v > m || v != v) */
  Expr *take = kx_bin(p, BIN_OR, kx_bin(p, BIN_OR, kx_bin(p, BIN_LT, bv, bt == DT_F32 ? kx_f(p, 0) : I(0)), kx_bin(p, BIN_GT, vv, mv)),
                      kx_bin(p, BIN_NE, vv, vv));
  if (t.ok) take = kx_bin(p, BIN_AND, t.ok, take);
  int tk = lower_local(L);
  ks_append(&tap, ks_local(p, tk, DT_BOOL, take));
  Expr *tv = kx_local(p, tk, DT_BOOL);
  ks_append(&tap, ks_assign(p, m, kx_select(p, tv, vv, mv)));
  ks_append(&tap, ks_assign(p, best, kx_select(p, tv, tapno, bv)));
  Stmt *body = ks_local(p, m, DT_F32, kx_f(p, -INFINITY));
  ks_append(&body, ks_local(p, best, bt, bt == DT_F32 ? kx_f(p, -1) : I(-1)));
  ks_append(&body, loop(p, vkh, g.kh, loop(p, vkw, g.kw, tap)));
  Expr *o = at(p, V(vp), g.oh, V(vh), g.ow, V(vw));
  if (grad && tiled) { /* each tap of the window gets 0 + dy (as the zeroed result plus dy would) or 0 */
    int va = lower_var(L), vb = lower_var(L), d = lower_local(L);
    Tap u = window_tap(p, &g, V(vh), V(vw), ivar(p, va, g.kh), ivar(p, vb, g.kw));
    ks_append(&body, ks_local(p, d, DT_F32, FADD(kx_f(p, 0), lower_value(L, n->in[0], o))));
    Expr *un = bt == DT_F32 ? kx_cast(p, DT_F32, ADD(MUL(ivar(p, va, g.kh), I(g.w)), u.j)) : u.idx;
    Expr *pick = kx_select(p, kx_bin(p, BIN_EQ, bv, un), kx_local(p, d, DT_F32), kx_f(p, 0));
    ks_append(&body, loop(p, va, g.kh, loop(p, vb, g.kw, ks_store(p, out, ADD(plane, u.idx), pick))));
  } else if (grad) {
    ks_append(&body, add_to(p, out, ADD(plane, bv), lower_value(L, n->in[0], o)));
  } else {
    ks_append(&body, ks_store(p, out, o, mv));
  }
  Stmt *s = ks_loop(p, vp, planes(p, &g, g.c), ks_loop(p, vh, I(g.oh), ks_loop(p, vw, I(g.ow), body)));
  if (!grad || tiled) return s;
  Stmt *all = lower_zero_fill(L, id);
  ks_append(&all, s);
  return all;
}

/* avg_pool2d, and with grad its gradient: each window clipped to the input
 * (loops over the clipped extents, no per-element test), divided by its
 * size clipped to the padded input, or to the input without
 * count_include_pad. */
static Stmt *lower_avg_pool(Lower *L, int id, int grad) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  ConvGeom g;
  ir_conv_geom(L->g, n, &g);
  int x = L->buf[n->in[grad ? 1 : 0]], out = L->buf[id];
  int vp = lower_var(L), vh = lower_var(L), vw = lower_var(L), va = lower_var(L), vb = lower_var(L);
  int hs = lower_local(L), ws = lower_local(L), h0 = lower_local(L), w0 = lower_local(L), h1 = lower_local(L);
  int w1 = lower_local(L), div = lower_local(L), acc = lower_local(L);
#define LI(l) kx_local(p, (l), DT_I64)
  Stmt *body = ks_local(p, hs, DT_I64, ADD(MUL(V(vh), I(g.sh)), I(-g.pt)));
  ks_append(&body, ks_local(p, ws, DT_I64, ADD(MUL(V(vw), I(g.sw)), I(-g.pl))));
  Expr *he = imin(p, ADD(LI(hs), I(g.kh)), I(g.h + g.pb)), *we = imin(p, ADD(LI(ws), I(g.kw)), I(g.w + g.pr));
  ks_append(&body, ks_local(p, h0, DT_I64, imax(p, LI(hs), I(0))));
  ks_append(&body, ks_local(p, w0, DT_I64, imax(p, LI(ws), I(0))));
  ks_append(&body, ks_local(p, h1, DT_I64, imin(p, ADD(LI(hs), I(g.kh)), I(g.h))));
  ks_append(&body, ks_local(p, w1, DT_I64, imin(p, ADD(LI(ws), I(g.kw)), I(g.w))));
  Expr *count = n->attr.window.count_include_pad
                    ? MUL(kx_bin(p, BIN_SUB, he, LI(hs)), kx_bin(p, BIN_SUB, we, LI(ws)))
                    : MUL(kx_bin(p, BIN_SUB, LI(h1), LI(h0)), kx_bin(p, BIN_SUB, LI(w1), LI(w0)));
  ks_append(&body, ks_local(p, div, DT_F32, kx_cast(p, DT_F32, count)));
  Expr *plane = MUL(V(vp), I(g.h * g.w));
  Expr *xi = ADD(plane, ADD(MUL(ADD(LI(h0), V(va)), I(g.w)), ADD(LI(w0), V(vb))));
  Expr *o = at(p, V(vp), g.oh, V(vh), g.ow, V(vw));
  Expr *ext_h = kx_bin(p, BIN_SUB, LI(h1), LI(h0)), *ext_w = kx_bin(p, BIN_SUB, LI(w1), LI(w0));
#undef LI
  if (grad) {
    ks_append(&body, ks_local(p, acc, DT_F32, kx_bin(p, BIN_DIV, lower_value(L, n->in[0], o), kx_local(p, div, DT_F32))));
    ks_append(&body, ks_loop(p, va, ext_h, ks_loop(p, vb, ext_w, add_to(p, out, xi, kx_local(p, acc, DT_F32)))));
  } else {
    Stmt *sum = ks_assign(p, acc, FADD(kx_local(p, acc, DT_F32), kx_load(p, x, xi)));
    ks_append(&body, ks_local(p, acc, DT_F32, kx_f(p, 0)));
    ks_append(&body, ks_loop(p, va, ext_h, ks_loop(p, vb, ext_w, sum)));
    ks_append(&body, ks_store(p, out, o, kx_bin(p, BIN_DIV, kx_local(p, acc, DT_F32), kx_local(p, div, DT_F32))));
  }
  Stmt *s = ks_loop(p, vp, planes(p, &g, g.c), ks_loop(p, vh, I(g.oh), ks_loop(p, vw, I(g.ow), body)));
  if (!grad) return s;
  Stmt *all = lower_zero_fill(L, id);
  ks_append(&all, s);
  return all;
}

static Stmt *lower_global_avg_pool(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  ConvGeom g;
  ir_conv_geom(L->g, n, &g);
  int vp = lower_var(L), vi = lower_var(L), s = lower_local(L);
  Expr *sv = kx_local(p, s, DT_F32);
  Stmt *body = ks_local(p, s, DT_F32, kx_f(p, 0));
  ks_append(&body, ks_loop(p, vi, I(g.h * g.w),
                           ks_assign(p, s, FADD(sv, kx_load(p, L->buf[n->in[0]], ADD(MUL(V(vp), I(g.h * g.w)), V(vi)))))));
  ks_append(&body, ks_store(p, L->buf[id], V(vp), kx_bin(p, BIN_DIV, sv, kx_f(p, (double)(g.h * g.w)))));
  return ks_loop(p, vp, planes(p, &g, g.c), body);
}

/* --- upsample --------------------------------------------------------------------------- */

/* Bilinear source of output index e along a dimension of len inputs:
 * locals i0, i1 (the neighbours) and l1 (the weight of i1), computed in
 * float as PyTorch does: src = max((e + 0.5) / scale - 0.5, 0). */
static Stmt *bilinear_src(Lower *L, Expr *e, int64_t scale, int64_t len, int src, int i0, int i1, int l1) {
  Program *p = L->p;
  Expr *f = FADD(FMUL(FADD(kx_cast(p, DT_F32, e), kx_f(p, 0.5)), kx_f(p, 1.0 / (double)scale)), kx_f(p, -0.5));
  Stmt *s = ks_local(p, src, DT_F32, kx_bin(p, BIN_MAX, f, kx_f(p, 0)));
  ks_append(&s, ks_local(p, i0, DT_I64, kx_cast(p, DT_I64, kx_local(p, src, DT_F32))));
  Expr *i0v = kx_local(p, i0, DT_I64);
  ks_append(&s, ks_local(p, i1, DT_I64, ADD(i0v, kx_select(p, kx_bin(p, BIN_LT, i0v, I(len - 1)), I(1), I(0)))));
  ks_append(&s, ks_local(p, l1, DT_F32, kx_bin(p, BIN_SUB, kx_local(p, src, DT_F32), kx_cast(p, DT_F32, i0v))));
  return s;
}

/* upsample and its gradient.  Nearest reads x[i / scale] and its gradient
 * sums each scale x scale block of dy; bilinear mixes four neighbours and
 * its gradient adds dy into them with the same weights. */
static Stmt *lower_upsample(Lower *L, int id, int grad) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  ConvGeom g;
  ir_conv_geom(L->g, n, &g);
  int x = L->buf[n->in[0]], out = L->buf[id];
  int vp = lower_var(L), vh = lower_var(L), vw = lower_var(L);
  if (n->attr.upsample.mode == UP_NEAREST && !grad) {
    Expr *src = at(p, V(vp), g.h, kx_bin(p, BIN_DIV, V(vh), I(g.sh)), g.w, kx_bin(p, BIN_DIV, V(vw), I(g.sw)));
    Stmt *s = ks_store(p, out, at(p, V(vp), g.oh, V(vh), g.ow, V(vw)), kx_load(p, x, src));
    return ks_loop(p, vp, planes(p, &g, g.c), ks_loop(p, vh, I(g.oh), ks_loop(p, vw, I(g.ow), s)));
  }
  if (n->attr.upsample.mode == UP_NEAREST) {
    int s = lower_local(L), va = lower_var(L), vb = lower_var(L);
    Expr *src = at(p, V(vp), g.oh, ADD(MUL(V(vh), I(g.sh)), V(va)), g.ow, ADD(MUL(V(vw), I(g.sw)), V(vb)));
    Stmt *body = ks_local(p, s, DT_F32, kx_f(p, 0));
    ks_append(&body, ks_loop(p, va, I(g.sh), ks_loop(p, vb, I(g.sw), ks_assign(p, s, FADD(kx_local(p, s, DT_F32), kx_load(p, x, src))))));
    ks_append(&body, ks_store(p, out, at(p, V(vp), g.h, V(vh), g.w, V(vw)), kx_local(p, s, DT_F32)));
    return ks_loop(p, vp, planes(p, &g, g.c), ks_loop(p, vh, I(g.h), ks_loop(p, vw, I(g.w), body)));
  }
  int hsrc = lower_local(L), h0 = lower_local(L), h1 = lower_local(L), lh = lower_local(L);
  int wsrc = lower_local(L), w0 = lower_local(L), w1 = lower_local(L), lw = lower_local(L);
  Expr *l1h = kx_local(p, lh, DT_F32), *l1w = kx_local(p, lw, DT_F32);
  Expr *l0h = kx_bin(p, BIN_SUB, kx_f(p, 1), l1h), *l0w = kx_bin(p, BIN_SUB, kx_f(p, 1), l1w);
  Expr *hh[2] = {kx_local(p, h0, DT_I64), kx_local(p, h1, DT_I64)}, *ww[2] = {kx_local(p, w0, DT_I64), kx_local(p, w1, DT_I64)};
  Expr *wh[2] = {l0h, l1h}, *wv[2] = {l0w, l1w};
  Expr *o = at(p, V(vp), g.oh, V(vh), g.ow, V(vw));
  Stmt *inner = bilinear_src(L, V(vw), g.sw, g.w, wsrc, w0, w1, lw);
  if (grad) {
    int d = lower_local(L);
    ks_append(&inner, ks_local(p, d, DT_F32, kx_load(p, x, o)));
    for (int a = 0; a < 2; a++)
      for (int b = 0; b < 2; b++)
        ks_append(&inner, add_to(p, out, at(p, V(vp), g.h, hh[a], g.w, ww[b]),
                                 FMUL(kx_local(p, d, DT_F32), FMUL(wh[a], wv[b]))));
  } else {
    Expr *row[2];
    for (int a = 0; a < 2; a++)
      row[a] = FADD(FMUL(l0w, kx_load(p, x, at(p, V(vp), g.h, hh[a], g.w, ww[0]))),
                    FMUL(l1w, kx_load(p, x, at(p, V(vp), g.h, hh[a], g.w, ww[1]))));
    ks_append(&inner, ks_store(p, out, o, FADD(FMUL(l0h, row[0]), FMUL(l1h, row[1]))));
  }
  Stmt *body = bilinear_src(L, V(vh), g.sh, g.h, hsrc, h0, h1, lh);
  ks_append(&body, ks_loop(p, vw, I(g.ow), inner));
  Stmt *s = ks_loop(p, vp, planes(p, &g, g.c), ks_loop(p, vh, I(g.oh), body));
  if (!grad) return s;
  Stmt *all = lower_zero_fill(L, id);
  ks_append(&all, s);
  return all;
}

/* --- entry -------------------------------------------------------------------------------- */

Stmt *lower_conv(Lower *L, int id) {
  const Node *n = lower_node_of(L, id);
  switch ((int)n->op) { /* the family only: lower_node's switch is the exhaustive one */
  case OP_CONV2D:
  case OP_CONV1D: return lower_conv_forward(L, id);
  case OP_CONV_TRANSPOSE2D: return lower_conv_transpose(L, id);
  case OP_CONV2D_GRAD_WEIGHT: return lower_conv_grad_weight(L, id);
  case OP_MAX_POOL2D: return lower_max_pool(L, id, 0);
  case OP_MAX_POOL2D_GRAD: return lower_max_pool(L, id, 1);
  case OP_AVG_POOL2D: return lower_avg_pool(L, id, 0);
  case OP_AVG_POOL2D_GRAD: return lower_avg_pool(L, id, 1);
  case OP_GLOBAL_AVG_POOL: return lower_global_avg_pool(L, id);
  case OP_UPSAMPLE: return lower_upsample(L, id, 0);
  case OP_UPSAMPLE_GRAD: return lower_upsample(L, id, 1);
  case OP_PAD: {
    const Node *x = lower_node_of(L, n->in[0]);
    return pad_copy(L, L->buf[id], L->buf[n->in[0]], &x->shape, &n->shape, n->attr.pad.pads.v, n->attr.pad.pads.n,
                    n->attr.pad.mode, n->attr.pad.value);
  }
  case OP_PAD_GRAD: return lower_pad_grad(L, id);
  }
  IR_ASSERT(!"not a convolution-family op");
  return NULL;
}
