/*
 * import_rnn.c — ONNX's RNN, GRU and LSTM, unrolled over the sequence.
 *
 * The sequence length is X's first extent (known at import), so each
 * step is a few dlc ops: the input projection of every step at once,
 * XW = linear(X, W, Wb) [seq, batch, G H] (G gates), then per step t the
 * recurrent projection linear(h, R, Rb) [batch, G H], the gates as column
 * slices of their sum, and the cell's formula exactly as ONNX writes it
 * (gate order z r h for GRU, i o f c for LSTM).  Y stacks the hidden
 * states in time order, Y_h (and Y_c) is the last.  Without initial_h
 * (initial_c) the state starts as zeros.  What this form does not cover
 * is refused by name: bidirectional, sequence_lens, peepholes,
 * input_forget, activations other than the defaults' functions.
 */
#include <string.h>

#include "onnx/import_ops.h"

enum { RK_RNN, RK_GRU, RK_LSTM };

typedef struct Rnn {
  int kind, gates, reverse, lbr;
  int64_t H;
  double clip;
  OpKind f, g, h;   /* ONNX's activations f, g, h */
  int xw, r, rb;    /* XW [seq, batch, G H], R [G H, H], Rb [G H] (or -1) */
} Rnn;

static int act_of(Importer *im, const char *name, OpKind *op) {
  if (!strcmp(name, "Tanh")) return *op = OP_TANH, 0;
  if (!strcmp(name, "Sigmoid")) return *op = OP_SIGMOID, 0;
  if (!strcmp(name, "Relu")) return *op = OP_RELU, 0;
  return im_error(im, "activation '%s' is not supported (Tanh, Sigmoid, Relu)", name);
}

/* The attributes: direction, hidden_size, clip, activations, layout. */
static int rnn_attrs(Importer *im, Rnn *rn, int64_t *layout) {
  const char *dir;
  int64_t lbr, forget;
  if (im_attr_str(im, "direction", "forward", &dir) || im_attr_int(im, "hidden_size", 0, &rn->H) ||
      im_attr_float(im, "clip", 0, &rn->clip) || im_attr_int(im, "layout", 0, layout) ||
      im_attr_int(im, "linear_before_reset", 0, &lbr) || im_attr_int(im, "input_forget", 0, &forget))
    return -1;
  if (strcmp(dir, "forward") && strcmp(dir, "reverse"))
    return im_error(im, "attribute 'direction' = '%s' is not supported (forward, reverse)", dir);
  if (forget) return im_error(im, "attribute 'input_forget' = 1 is not supported");
  if (rn->H < 1) return im_error(im, "attribute 'hidden_size' must be positive");
  rn->reverse = !strcmp(dir, "reverse"), rn->lbr = lbr != 0;
  rn->f = rn->kind == RK_RNN ? OP_TANH : OP_SIGMOID, rn->g = rn->h = OP_TANH;
  const Onnx__AttributeProto *at = im_attr(im, "activations");
  int nact = rn->kind == RK_RNN ? 1 : rn->kind == RK_GRU ? 2 : 3;
  if (at && (int)at->n_strings != nact) return im_error(im, "attribute 'activations' must name %d functions", nact);
  OpKind *slot[3] = {&rn->f, &rn->g, &rn->h};
  for (int k = 0; at && k < nact; k++) {
    char name[32];
    snprintf(name, sizeof name, "%.*s", (int)at->strings[k].len, (const char *)at->strings[k].data);
    if (act_of(im, name, slot[k])) return -1;
  }
  return 0;
}

/* Columns [g H, (g + 1) H) of v [batch, G H]: gate g. */
static int gate(Importer *im, const Rnn *rn, int v, int g) {
  Attrs a = ir_attrs_default(OP_SLICE);
  a.axis.axis = 1, a.axis.start = g * rn->H, a.axis.end = (g + 1) * rn->H, a.axis.step = 1;
  return v < 0 ? -1 : im_op(im, OP_SLICE, &v, 1, &a, -1);
}

/* An activation of a gate's pre-activation, clipped first when clip > 0. */
static int act(Importer *im, const Rnn *rn, OpKind f, int v) {
  if (rn->clip > 0 && v >= 0) {
    Attrs a = ir_attrs_default(OP_CLAMP);
    a.scalar.f = -rn->clip, a.scalar.f2 = rn->clip;
    v = im_op(im, OP_CLAMP, &v, 1, &a, -1);
  }
  return un(im, f, v, -1);
}

/* h R^T + Rb for state h [batch, H] (or [1, H] zeros). */
static int recur(Importer *im, int h, int r, int rb) {
  int in[3] = {h, r, rb};
  return im_op(im, OP_LINEAR, in, rb >= 0 ? 3 : 2, NULL, -1);
}

/* One step at time t: *h (and *c for LSTM) from the previous state. */
static int step(Importer *im, const Rnn *rn, int64_t t, int *h, int *c) {
  const Shape *xs = shape_of(im, rn->xw);
  Dim d2[2] = {xs->d[1], xs->d[2]};
  int xw = im_reshape_to(im, im_slice(im, rn->xw, 0, t, t + 1, -1), d2, 2, -1);
  int hr = recur(im, *h, rn->r, rn->rb);
  if (rn->kind == RK_RNN) return (*h = act(im, rn, rn->f, bin(im, OP_ADD, xw, hr, -1))) < 0 ? -1 : 0;
  if (rn->kind == RK_GRU) {
    int z = act(im, rn, rn->f, bin(im, OP_ADD, gate(im, rn, xw, 0), gate(im, rn, hr, 0), -1));
    int r = act(im, rn, rn->f, bin(im, OP_ADD, gate(im, rn, xw, 1), gate(im, rn, hr, 1), -1));
    int hh = rn->lbr ? bin(im, OP_MUL, r, gate(im, rn, hr, 2), -1)
                     : gate(im, rn, recur(im, bin(im, OP_MUL, r, *h, -1), rn->r, rn->rb), 2);
    hh = act(im, rn, rn->g, bin(im, OP_ADD, gate(im, rn, xw, 2), hh, -1));
    int keep = bin(im, OP_MUL, z, *h, -1), upd = bin(im, OP_MUL, bin(im, OP_SUB, konst(im, 1), z, -1), hh, -1);
    return (*h = bin(im, OP_ADD, upd, keep, -1)) < 0 ? -1 : 0;
  }
  int pre = bin(im, OP_ADD, xw, hr, -1);
  int i = act(im, rn, rn->f, gate(im, rn, pre, 0)), o = act(im, rn, rn->f, gate(im, rn, pre, 1));
  int f = act(im, rn, rn->f, gate(im, rn, pre, 2)), cc = act(im, rn, rn->g, gate(im, rn, pre, 3));
  *c = bin(im, OP_ADD, bin(im, OP_MUL, f, *c, -1), bin(im, OP_MUL, i, cc, -1), -1);
  return (*h = bin(im, OP_MUL, o, un(im, rn->h, *c, -1), -1)) < 0 ? -1 : 0;
}

/* Input k ([1, batch, H]) as [batch, H], or [1, H] zeros when absent. */
static int initial_state(Importer *im, const Rnn *rn, int k, Dim batch) {
  if (!im_in_name(im, k)) {
    int64_t dims[2] = {1, rn->H};
    float *z = arena_alloc(im->a, (size_t)rn->H * sizeof *z);
    memset(z, 0, (size_t)rn->H * sizeof *z);
    return im_frozen_param(im, k == 5 ? "h0" : "c0", 2, dims, z);
  }
  Dim d[2] = {batch, rn->H};
  return im_reshape_to(im, im_tensor(im, k), d, 2, -1);
}

/* W [1, G H, in] as [G H, in] (R likewise), B [1, 2 G H] as its halves. */
static int weights(Importer *im, Rnn *rn, int x, int *w, int *wb) {
  const Shape *ws = shape_of(im, im_tensor(im, 1)), *rs = shape_of(im, im_tensor(im, 2));
  int64_t gh = rn->gates * rn->H;
  if (ws->rank != 3 || ws->d[0] != 1 || ws->d[1] != gh || rs->rank != 3 || rs->d[0] != 1 || rs->d[1] != gh || rs->d[2] != rn->H)
    return im_error(im, "W must be [1, %lld, input] and R [1, %lld, %lld]", (long long)gh, (long long)gh, (long long)rn->H);
  Dim dw[2] = {gh, ws->d[2]}, dr[2] = {gh, rn->H}, db[1] = {2 * gh};
  *w = im_reshape_to(im, im_tensor(im, 1), dw, 2, -1);
  rn->r = im_reshape_to(im, im_tensor(im, 2), dr, 2, -1);
  *wb = rn->rb = -1;
  if (im_in_name(im, 3)) {
    int b = im_reshape_to(im, im_tensor(im, 3), db, 1, -1);
    *wb = im_slice(im, b, 0, 0, gh, -1), rn->rb = im_slice(im, b, 0, gh, 2 * gh, -1);
  }
  int in[3] = {x, *w, *wb};
  rn->xw = im_op(im, OP_LINEAR, in, *wb >= 0 ? 3 : 2, NULL, -1);
  return *w < 0 || rn->r < 0 || rn->xw < 0 ? -1 : 0;
}

/* The outputs: Y [seq, 1, batch, H] (layout 1: [batch, seq, 1, H]),
 * Y_h and Y_c [1, batch, H] (layout 1: [batch, 1, H]). */
static int rnn_outputs(Importer *im, const int *hs, int64_t seq, int h, int c, Dim batch, int64_t layout) {
  int nout = (int)im->np->n_output;
  Dim d3[3] = {layout ? batch : 1, layout ? 1 : batch, 0}, d4[4] = {1, 1, batch, 0};
  d3[2] = d4[3] = shape_of(im, h)->d[1];
  for (int k = 1; k <= 2; k++)
    if (nout > k && *im->np->output[k] && im_set_out(im, k, im_reshape_to(im, k == 1 ? h : c, d3, 3, k))) return -1;
  if (!*im->np->output[0]) return 0;
  int *steps = arena_alloc(im->a, (size_t)seq * sizeof *steps);
  for (int64_t t = 0; t < seq; t++) steps[t] = im_reshape_to(im, hs[t], d4, 4, -1);
  Attrs a = ir_attrs_default(OP_CONCAT);
  a.axis.axis = 0;
  int y = im_op(im, OP_CONCAT, steps, (int)seq, &a, layout ? -1 : 0);
  if (!layout || y < 0) return im_set_out(im, 0, y);
  Attrs p = ir_attrs_default(OP_TRANSPOSE);
  int64_t perm[4] = {2, 0, 1, 3};
  if (im_set_list(im, &p, OP_TRANSPOSE, "perm", perm, 4)) return -1;
  return im_set_out(im, 0, im_op(im, OP_TRANSPOSE, &y, 1, &p, 0));
}

int im_cv_recurrent(Importer *im, const ImOp *row) {
  const char *t = im->np->op_type;
  Rnn rn = {.kind = !strcmp(t, "RNN") ? RK_RNN : !strcmp(t, "GRU") ? RK_GRU : RK_LSTM};
  rn.gates = rn.kind == RK_RNN ? 1 : rn.kind == RK_GRU ? 3 : 4;
  int64_t layout;
  int x = im_tensor(im, 0), w, wb;
  if (x < 0 || rnn_attrs(im, &rn, &layout)) return -1;
  if (im_in_name(im, 4)) return im_error(im, "input 4 (sequence_lens) is not supported: every sequence has X's length");
  if (rn.kind == RK_LSTM && im_in_name(im, 7)) return im_error(im, "input 7 (peepholes P) is not supported");
  if (shape_of(im, x)->rank != 3) return im_error(im, "X must have rank 3");
  if (layout) {
    Attrs p = ir_attrs_default(OP_TRANSPOSE);
    int64_t perm[3] = {1, 0, 2};
    if (im_set_list(im, &p, OP_TRANSPOSE, "perm", perm, 3) || (x = im_op(im, OP_TRANSPOSE, &x, 1, &p, -1)) < 0) return -1;
  }
  Dim seq = shape_of(im, x)->d[0], batch = shape_of(im, x)->d[1];
  if (DIM_IS_SYM(seq) || seq > 4096) return im_error(im, "the sequence length must be known (at most 4096) to unroll it");
  if (weights(im, &rn, x, &w, &wb)) return -1;
  int h = initial_state(im, &rn, 5, batch), c = rn.kind == RK_LSTM ? initial_state(im, &rn, 6, batch) : -1;
  int *hs = arena_alloc(im->a, (size_t)seq * sizeof *hs);
  for (int64_t k = 0; k < seq; k++) {
    int64_t at = rn.reverse ? seq - 1 - k : k;
    if (h < 0 || step(im, &rn, at, &h, &c)) return -1;
    hs[at] = h;
  }
  return rnn_outputs(im, hs, seq, h, c, batch, layout);
}
