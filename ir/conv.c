/*
 * conv.c — the convolution and pooling family's geometry and its reference
 * interpreter (PyTorch's semantics, NCHW).
 *
 * Like interp.c, this is written to be obviously right: every op is a
 * direct loop over its definition, every sum accumulates in double and is
 * rounded once.  Convolutions read padded positions through
 * ir_pad_source, so zeros, reflect and replicate padding are one code
 * path; the gradients that scatter (conv_transpose2d and the data
 * gradient, max and average pooling, bilinear upsampling, reflect and
 * replicate padding) add into a double buffer first.  Max pooling takes
 * the first maximum of each window in scan order (a NaN beats any number,
 * as in PyTorch's CPU kernel); its gradient goes to that element only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/conv.h"

static const float *cf(const RtTensor *t) { return (const float *)t->data; }

/* A zeroed double accumulator of n elements (at least one): n comes from
 * shapes the shape rules have bounded, and is checked again here. */
static double *accumulator(int64_t n) {
  IR_ASSERT(n >= 0 && n <= IR_MAX_TENSOR_BYTES);
  return rt_xcalloc((size_t)(n ? n : 1), sizeof(double));
}
static float *wf(RtTensor *t) { return (float *)t->data; }

/* --- geometry ----------------------------------------------------------------- */

/* The attributes' part of the geometry (canonical lists; absent dilation is 1). */
static void window_geom(const AttrWindow *a, int one_d, ConvGeom *cg) {
  const IntList *k = &a->kernel, *s = &a->stride, *d = &a->dilation, *p = &a->padding;
  if (one_d) {
    cg->sh = cg->dh = 1, cg->pt = cg->pb = 0;
    cg->sw = s->v[0], cg->dw = d->v[0], cg->pl = p->v[0], cg->pr = p->v[1];
    return;
  }
  cg->kh = k->n ? k->v[0] : 1, cg->kw = k->n ? k->v[1] : 1;
  cg->sh = s->n ? s->v[0] : 1, cg->sw = s->n ? s->v[1] : 1;
  cg->dh = d->n ? d->v[0] : 1, cg->dw = d->n ? d->v[1] : 1;
  cg->pt = p->n ? p->v[0] : 0, cg->pb = p->n ? p->v[1] : 0, cg->pl = p->n ? p->v[2] : 0, cg->pr = p->n ? p->v[3] : 0;
}

void ir_conv_geom(const Graph *g, const Node *n, ConvGeom *cg) {
  const Shape *in = NULL, *out = NULL, *w = NULL;
  const Shape *s0 = &g->nodes[n->in[0]].shape, *s1 = n->nin > 1 ? &g->nodes[n->in[1]].shape : NULL;
  switch ((int)n->op) {
  case OP_CONV2D: case OP_CONV1D: in = s0, out = &n->shape, w = s1; break;
  case OP_CONV_TRANSPOSE2D: in = &n->shape, out = s0, w = s1; break;
  case OP_CONV2D_GRAD_WEIGHT: in = s1, out = s0, w = &n->shape; break;
  case OP_MAX_POOL2D: case OP_AVG_POOL2D: case OP_GLOBAL_AVG_POOL: case OP_UPSAMPLE: in = s0, out = &n->shape; break;
  case OP_MAX_POOL2D_GRAD: case OP_AVG_POOL2D_GRAD: case OP_UPSAMPLE_GRAD: in = s1, out = s0; break;
  default: IR_ASSERT(!"not a convolution-family op");
  }
  memset(cg, 0, sizeof *cg);
  int one_d = in->rank == 3;
  cg->n = in->d[0];
  cg->c = in->d[1], cg->o = out->d[1];
  cg->h = one_d ? 1 : in->d[2], cg->w = in->d[in->rank - 1];
  cg->oh = one_d ? 1 : out->d[2], cg->ow = out->d[out->rank - 1];
  static const AttrWindow plain; /* global_avg_pool, upsample: every list absent */
  const AttrWindow *win = n->attr.kind == AK_WINDOW ? &n->attr.window : &plain;
  window_geom(win, one_d, cg);
  cg->groups = win->groups > 0 ? win->groups : 1;
  if (w) cg->kh = one_d ? 1 : w->d[2], cg->kw = w->d[w->rank - 1];
  if (n->op == OP_CONV2D || n->op == OP_CONV1D) cg->mode = n->attr.window.mode;
  if (n->op == OP_UPSAMPLE || n->op == OP_UPSAMPLE_GRAD) cg->sh = n->attr.upsample.scale.v[0], cg->sw = n->attr.upsample.scale.v[1];
  if (n->op == OP_GLOBAL_AVG_POOL) cg->kh = cg->h, cg->kw = cg->w, cg->sh = cg->sw = 1;
}

/* --- convolutions ----------------------------------------------------------------- */

/* x[n, c] read at padded coordinates (i, j), under the padding mode. */
static double padded_at(const ConvGeom *cg, const float *plane, int64_t i, int64_t j) {
  int64_t si = ir_pad_source(i, 0, cg->h, cg->mode), sj = ir_pad_source(j, 0, cg->w, cg->mode);
  return si < 0 || sj < 0 ? 0.0 : plane[si * cg->w + sj];
}

/* y[n, o, oh, ow] = b[o] + sum over the group's channels and the taps of
 * x[n, c, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw] * w[o, c', kh, kw]. */
static void conv_forward(const ConvGeom *cg, int64_t N, const float *x, const float *w, const float *b, float *y) {
  int64_t cpg = cg->c / cg->groups, opg = cg->o / cg->groups;
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < cg->o; o++)
      for (int64_t oh = 0; oh < cg->oh; oh++)
        for (int64_t ow = 0; ow < cg->ow; ow++) {
          double s = b ? b[o] : 0.0;
          for (int64_t ci = 0; ci < cpg; ci++) {
            const float *plane = x + (n * cg->c + o / opg * cpg + ci) * cg->h * cg->w;
            const float *taps = w + (o * cpg + ci) * cg->kh * cg->kw;
            for (int64_t kh = 0; kh < cg->kh; kh++)
              for (int64_t kw = 0; kw < cg->kw; kw++)
                s += padded_at(cg, plane, oh * cg->sh - cg->pt + kh * cg->dh, ow * cg->sw - cg->pl + kw * cg->dw) *
                     taps[kh * cg->kw + kw];
          }
          y[((n * cg->o + o) * cg->oh + oh) * cg->ow + ow] = (float)s;
        }
}

/* The adjoint of conv_forward with zero padding: every product of dy (the
 * convolution's output) and a tap lands on the input position it read;
 * plus a bias over the input's channels (conv_transpose2d). */
static void conv_backward_data(const ConvGeom *cg, int64_t N, const float *dy, const float *w, const float *b,
                               float *dx) {
  int64_t cpg = cg->c / cg->groups, opg = cg->o / cg->groups, plane = ir_size_mul(cg->h, cg->w);
  int64_t total = ir_size_mul(ir_size_mul(N, cg->c), plane);
  double *acc = accumulator(total);
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < cg->o; o++)
      for (int64_t oh = 0; oh < cg->oh; oh++)
        for (int64_t ow = 0; ow < cg->ow; ow++) {
          double g = dy[((n * cg->o + o) * cg->oh + oh) * cg->ow + ow];
          for (int64_t ci = 0; ci < cpg; ci++)
            for (int64_t kh = 0; kh < cg->kh; kh++)
              for (int64_t kw = 0; kw < cg->kw; kw++) {
                int64_t i = oh * cg->sh - cg->pt + kh * cg->dh, j = ow * cg->sw - cg->pl + kw * cg->dw;
                if (i < 0 || i >= cg->h || j < 0 || j >= cg->w) continue;
                acc[(n * cg->c + o / opg * cpg + ci) * plane + i * cg->w + j] +=
                    g * w[((o * cpg + ci) * cg->kh + kh) * cg->kw + kw];
              }
        }
  for (int64_t i = 0; i < total; i++) dx[i] = (float)(acc[i] + (b ? b[i / plane % cg->c] : 0.0));
  rt_xfree(acc);
}

/* dw[o, c', kh, kw] = sum over n, oh, ow of dy[n, o, oh, ow] times the
 * input element that tap read (zero padding). */
static void conv_backward_weight(const ConvGeom *cg, int64_t N, const float *dy, const float *x, float *dw) {
  int64_t cpg = cg->c / cg->groups, opg = cg->o / cg->groups;
  for (int64_t o = 0; o < cg->o; o++)
    for (int64_t ci = 0; ci < cpg; ci++)
      for (int64_t kh = 0; kh < cg->kh; kh++)
        for (int64_t kw = 0; kw < cg->kw; kw++) {
          double s = 0;
          for (int64_t n = 0; n < N; n++) {
            const float *plane = x + (n * cg->c + o / opg * cpg + ci) * cg->h * cg->w;
            for (int64_t oh = 0; oh < cg->oh; oh++)
              for (int64_t ow = 0; ow < cg->ow; ow++)
                s += padded_at(cg, plane, oh * cg->sh - cg->pt + kh * cg->dh, ow * cg->sw - cg->pl + kw * cg->dw) *
                     dy[((n * cg->o + o) * cg->oh + oh) * cg->ow + ow];
          }
          dw[((o * cpg + ci) * cg->kh + kh) * cg->kw + kw] = (float)s;
        }
}

/* --- pooling ------------------------------------------------------------------------ */

/* The window of output (oh, ow) in padded coordinates, clipped to the
 * input: rows [*h0, *h1) step dh, columns [*w0, *w1) step dw.  The first
 * valid tap is found by stepping in from the padding, as PyTorch does. */
static void window(const ConvGeom *cg, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1) {
  *h0 = oh * cg->sh - cg->pt, *w0 = ow * cg->sw - cg->pl;
  *h1 = *h0 + (cg->kh - 1) * cg->dh + 1, *w1 = *w0 + (cg->kw - 1) * cg->dw + 1;
  while (*h0 < 0) *h0 += cg->dh;
  while (*w0 < 0) *w0 += cg->dw;
  if (*h1 > cg->h) *h1 = cg->h;
  if (*w1 > cg->w) *w1 = cg->w;
}

/* The flat index (within its plane) of the maximum of window (oh, ow). */
static int64_t window_argmax(const ConvGeom *cg, const float *plane, int64_t oh, int64_t ow) {
  int64_t h0, h1, w0, w1, best = -1;
  window(cg, oh, ow, &h0, &h1, &w0, &w1);
  double m = -INFINITY;
  for (int64_t i = h0; i < h1; i += cg->dh)
    for (int64_t j = w0; j < w1; j += cg->dw) {
      double v = plane[i * cg->w + j];
      if (best < 0 || v > m || isnan(v)) m = v, best = i * cg->w + j;
    }
  return best;
}

/* The divisor of average window (oh, ow): its size clipped to the padded
 * input, or to the input alone without count_include_pad. */
static int64_t avg_divisor(const ConvGeom *cg, const AttrWindow *a, int64_t oh, int64_t ow) {
  int64_t hs = oh * cg->sh - cg->pt, ws = ow * cg->sw - cg->pl;
  int64_t he = hs + cg->kh, we = ws + cg->kw;
  if (he > cg->h + cg->pb) he = cg->h + cg->pb;
  if (we > cg->w + cg->pr) we = cg->w + cg->pr;
  if (a->count_include_pad) return (he - hs) * (we - ws);
  hs = hs < 0 ? 0 : hs, ws = ws < 0 ? 0 : ws;
  he = he > cg->h ? cg->h : he, we = we > cg->w ? cg->w : we;
  return (he - hs) * (we - ws);
}

/* max_pool2d, avg_pool2d and their gradients: one loop over the windows of
 * each plane; a gradient adds dy (or dy / divisor) into its window. */
static void pool(const ConvGeom *cg, const AttrWindow *a, OpKind op, int64_t planes, const float *x, const float *dy,
                 float *out) {
  int64_t in_plane = cg->h * cg->w, out_plane = cg->oh * cg->ow;
  int grad = op == OP_MAX_POOL2D_GRAD || op == OP_AVG_POOL2D_GRAD;
  double *acc = grad ? accumulator(ir_size_mul(planes, in_plane)) : NULL;
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oh = 0; oh < cg->oh; oh++)
      for (int64_t ow = 0; ow < cg->ow; ow++) {
        int64_t o = p * out_plane + oh * cg->ow + ow, h0, h1, w0, w1;
        if (op == OP_MAX_POOL2D || op == OP_MAX_POOL2D_GRAD) {
          int64_t best = window_argmax(cg, x + p * in_plane, oh, ow);
          if (grad) acc[p * in_plane + best] += dy[o];
          else out[o] = x[p * in_plane + best];
          continue;
        }
        window(cg, oh, ow, &h0, &h1, &w0, &w1);
        double div = (double)avg_divisor(cg, a, oh, ow), s = 0;
        for (int64_t i = h0; i < h1; i++)
          for (int64_t j = w0; j < w1; j++) {
            if (grad) acc[p * in_plane + i * cg->w + j] += dy[o] / div;
            else s += x[p * in_plane + i * cg->w + j];
          }
        if (!grad) out[o] = (float)(s / div);
      }
  for (int64_t i = 0; grad && i < planes * in_plane; i++) out[i] = (float)acc[i];
  rt_xfree(acc);
}

static void global_avg_pool(const ConvGeom *cg, int64_t planes, const float *x, float *y) {
  int64_t len = cg->h * cg->w;
  for (int64_t p = 0; p < planes; p++) {
    double s = 0;
    for (int64_t i = 0; i < len; i++) s += x[p * len + i];
    y[p] = (float)(s / (double)len);
  }
}

/* --- upsampling ------------------------------------------------------------------------ */

/* Source row (or column) of bilinear output index i with align_corners
 * false: the half-pixel mapping (i + 0.5) / scale - 0.5, clamped at 0;
 * i0 and i1 are the neighbours, l1 the weight of i1. */
static void bilinear_src(int64_t i, int64_t scale, int64_t len, int64_t *i0, int64_t *i1, double *l1) {
  double src = ((double)i + 0.5) / (double)scale - 0.5;
  if (src < 0) src = 0;
  *i0 = (int64_t)src;
  *i1 = *i0 + (*i0 < len - 1);
  *l1 = src - (double)*i0;
}

/* upsample and its gradient: nearest reads x[i / scale]; bilinear mixes
 * the four neighbours.  The gradient adds each dy into what it read. */
static void upsample(const ConvGeom *cg, int mode, int grad, int64_t planes, const float *x, float *out) {
  int64_t in_plane = cg->h * cg->w, out_plane = cg->oh * cg->ow;
  double *acc = grad ? accumulator(ir_size_mul(planes, in_plane)) : NULL;
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oh = 0; oh < cg->oh; oh++)
      for (int64_t ow = 0; ow < cg->ow; ow++) {
        int64_t h[2] = {oh / cg->sh, oh / cg->sh}, w[2] = {ow / cg->sw, ow / cg->sw};
        double lh[2] = {1, 0}, lw[2] = {1, 0}, s = 0;
        if (mode == UP_BILINEAR) {
          bilinear_src(oh, cg->sh, cg->h, &h[0], &h[1], &lh[1]);
          bilinear_src(ow, cg->sw, cg->w, &w[0], &w[1], &lw[1]);
          lh[0] = 1 - lh[1], lw[0] = 1 - lw[1];
        }
        int64_t o = p * out_plane + oh * cg->ow + ow;
        for (int a = 0; a < 2; a++)
          for (int b = 0; b < 2; b++) {
            int64_t at = p * in_plane + h[a] * cg->w + w[b];
            if (grad) acc[at] += x[o] * lh[a] * lw[b];
            else s += x[at] * lh[a] * lw[b];
          }
        if (!grad) out[o] = (float)s;
      }
  for (int64_t i = 0; grad && i < planes * in_plane; i++) out[i] = (float)acc[i];
  rt_xfree(acc);
}

/* --- pad -------------------------------------------------------------------------------- */

/* pad, or with grad its gradient: y element i reads x at the source of each
 * padded coordinate; the gradient adds dy into that source. */
static void pad(const AttrPad *a, int grad, const RtTensor *x, const RtTensor *y, const float *src, float *dst) {
  int64_t c[RT_MAX_RANK], n = rt_tensor_numel(y), nx = rt_tensor_numel(x);
  int r = x->rank;
  double *acc = grad ? accumulator(nx) : NULL;
  for (int64_t i = 0; i < n; i++) {
    int64_t rest = i, off = 0, inside = 1;
    for (int k = r - 1; k >= 0; k--) c[k] = rest % y->shape[k], rest /= y->shape[k];
    for (int k = 0; k < r; k++) {
      int from_end = r - 1 - k;
      int64_t lo = 2 * from_end < a->pads.n ? a->pads.v[2 * from_end] : 0;
      int64_t s = ir_pad_source(c[k], lo, x->shape[k], a->mode);
      inside &= s >= 0;
      off = off * x->shape[k] + (s < 0 ? 0 : s);
    }
    if (grad && inside) acc[off] += src[i];
    if (!grad) dst[i] = inside ? src[off] : (float)a->value;
  }
  for (int64_t i = 0; grad && i < nx; i++) dst[i] = (float)acc[i];
  rt_xfree(acc);
}

/* --- entry ---------------------------------------------------------------------------- */

void ir_interp_conv(const Graph *g, const Node *n, const RtTensor *vals, RtTensor *out) {
  const RtTensor *x = &vals[n->in[0]], *y = n->nin > 1 ? &vals[n->in[1]] : NULL;
  const float *bias = n->nin > 2 ? cf(&vals[n->in[2]]) : NULL;
  ConvGeom cg;
  if (n->op != OP_PAD && n->op != OP_PAD_GRAD) ir_conv_geom(g, n, &cg);
  int64_t N = x->shape[0];
  switch ((int)n->op) {
  case OP_CONV2D:
  case OP_CONV1D: conv_forward(&cg, N, cf(x), cf(y), bias, wf(out)); break;
  case OP_CONV_TRANSPOSE2D: conv_backward_data(&cg, N, cf(x), cf(y), bias, wf(out)); break;
  case OP_CONV2D_GRAD_WEIGHT: conv_backward_weight(&cg, N, cf(x), cf(y), wf(out)); break;
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D: pool(&cg, &n->attr.window, n->op, N * cg.c, cf(x), NULL, wf(out)); break;
  case OP_MAX_POOL2D_GRAD:
  case OP_AVG_POOL2D_GRAD: pool(&cg, &n->attr.window, n->op, N * cg.c, cf(y), cf(x), wf(out)); break;
  case OP_GLOBAL_AVG_POOL: global_avg_pool(&cg, N * cg.c, cf(x), wf(out)); break;
  case OP_UPSAMPLE: upsample(&cg, n->attr.upsample.mode, 0, N * cg.c, cf(x), wf(out)); break;
  case OP_UPSAMPLE_GRAD: upsample(&cg, n->attr.upsample.mode, 1, N * cg.c, cf(x), wf(out)); break;
  case OP_PAD: pad(&n->attr.pad, 0, x, out, cf(x), wf(out)); break;
  case OP_PAD_GRAD: pad(&n->attr.pad, 1, y, x, cf(x), wf(out)); break;
  default: IR_ASSERT(!"not a convolution-family op");
  }
}
