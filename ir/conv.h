/*
 * conv.h — the geometry of the convolution and pooling ops, shared by
 * their shape rules (infer.c), the reference interpreter (conv.c) and the
 * lowering (passes/lower_conv.c).
 *
 * Every op of the family is described in the terms of one convolution: an
 * input plane [C, H, W] is read through a window of kh x kw taps (stride,
 * dilation, padding) to give an output plane [O, OH, OW].  conv2d, conv1d
 * (H = OH = kh = 1), the pools and upsample map their operand to their
 * result.  conv_transpose2d is the adjoint of a convolution, so its
 * *result* is the convolution's input and its operand the convolution's
 * output; likewise every gradient op reads dy as the convolution's output.
 *
 * The shape rule leaves the attributes canonical:
 *   conv2d, conv_transpose2d, conv2d_grad_weight: stride [h, w], dilation
 *     [h, w], padding [top, bottom, left, right], output_padding [h, w];
 *   conv1d: stride [s], dilation [d], padding [left, right];
 *   pools and their gradients: kernel [h, w], stride [h, w] (the kernel when
 *     absent), padding [top, bottom, left, right], dilation [h, w] (max);
 *   upsample: scale_factor [h, w];
 *   pad: pads as given, torch.nn.functional.pad's order — (left, right) of
 *     the last dimension, then of the one before it, and so on.
 */
#ifndef DLC_CONV_H
#define DLC_CONV_H

#include "ir/ir.h"

typedef struct ConvGeom {
  Dim n;                    /* batch, possibly a symbol */
  int64_t c, h, w;          /* the convolution's input */
  int64_t o, oh, ow;        /* its output */
  int64_t kh, kw, sh, sw, dh, dw;
  int64_t pt, pb, pl, pr;   /* padding: top, bottom, left, right */
  int64_t groups;
  int mode;                 /* PadMode of padded positions (conv2d, conv1d) */
} ConvGeom;

/* The geometry of node n of g: any op of the family except pad and
 * pad_grad.  For upsample, sh and sw are the scale factors. */
void ir_conv_geom(const Graph *g, const Node *n, ConvGeom *cg);

/* The source index of padded position i along a dimension of size len
 * with lo positions of padding in front: i - lo when inside, else the
 * reflected or clamped index, or -1 for constant padding. */
static inline int64_t ir_pad_source(int64_t i, int64_t lo, int64_t len, int mode) {
  int64_t j = i - lo;
  if (j >= 0 && j < len) return j;
  if (mode == PAD_CONSTANT) return -1;
  if (mode == PAD_REPLICATE) return j < 0 ? 0 : len - 1;
  return j < 0 ? -j : 2 * (len - 1) - j; /* reflect: |pad| < len */
}

/* The reference interpreter of the family (ir_interp calls it). */
void ir_interp_conv(const Graph *g, const Node *n, const RtTensor *vals, RtTensor *out);

#endif
