/*
 * rnn.c — the recurrent layers rnn, lstm and gru: a scan over a cell
 * built here, with torch.nn's formulas, gate order and parameter names.
 *
 *   hs, h_n = rnn(x, h0, nonlinearity=tanh, batch_first=false) as r
 *   hs, h_n, c_n = lstm(x, h0, c0, batch_first=false) as r
 *   hs, h_n = gru(x, h0, batch_first=false) as r
 *
 * x is [T, N, I] ([N, T, I] with batch_first), the states [N, H]: one
 * layer, one direction, so torch's leading num_layers axis of h0 and h_n
 * is left out.  Each layer creates r.weight_ih_l0 [G*H, I],
 * r.weight_hh_l0 [G*H, H], r.bias_ih_l0 and r.bias_hh_l0 [G*H] (G = 1, 4,
 * 3), initialised as torch does, uniform in +-1/sqrt(H); the gates are
 * stacked in torch's order: LSTM i, f, g, o; GRU r, z, n.
 *
 *   rnn   h' = act(W_ih x + b_ih + W_hh h + b_hh)
 *   lstm  i, f, g, o = chunks of W_ih x + b_ih + W_hh h + b_hh
 *         c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')
 *   gru   r = sigmoid(a_r + b_r), z = sigmoid(a_z + b_z) with a = W_ih x + b_ih,
 *         b = W_hh h + b_hh;  n = tanh(a_n + r * b_n);  h' = (1 - z) * n + z * h
 *
 * The cell is built directly as the scan's body graph, and the scan made
 * as for scan(block, ...) (scan.c), so the layer trains, lowers and emits
 * like any scan.
 */
#include <math.h>
#include <string.h>

#include "frontend/fe.h"

typedef enum CellKind { CELL_RNN, CELL_LSTM, CELL_GRU } CellKind;

typedef struct Cell {
  Parser *P;
  Graph *b;                 /* the body being built */
  SrcLoc loc;
  const char *prefix;
  Dim hidden;
  int w_ih, w_hh, b_ih, b_hh;
} Cell;

static int cell_param(Cell *c, const char *name, Dim rows, Dim cols) {
  Shape s = {cols ? 2 : 1, {rows, cols}};
  double k = 1 / sqrt((double)c->hidden);
  ParamInit init = {INIT_UNIFORM, -k, k};
  return ir_param(c->b, fe_join(c->P, c->prefix, name), DT_F32, &s, init, c->loc);
}

static int op2(Cell *c, OpKind op, int x, int y) {
  int in[2] = {x, y};
  return x < 0 || y < 0 ? -1 : ir_op(c->b, op, in, 2, NULL, c->loc);
}

static int op1(Cell *c, OpKind op, int x) { return x < 0 ? -1 : ir_op(c->b, op, &x, 1, NULL, c->loc); }

static int affine(Cell *c, int x, int w, int bias) {
  int in[3] = {x, w, bias};
  return x < 0 ? -1 : ir_op(c->b, OP_LINEAR, in, 3, NULL, c->loc);
}

/* Gate k of a [N, G*H] pre-activation. */
static int chunk(Cell *c, int g, int k) {
  Attrs at = ir_attrs_default(OP_SLICE);
  at.axis.axis = 1, at.axis.start = k * c->hidden, at.axis.end = (k + 1) * c->hidden;
  return g < 0 ? -1 : ir_op(c->b, OP_SLICE, &g, 1, &at, c->loc);
}

static int build_rnn(Cell *c, int x, int h, int relu, int *out) {
  int pre = op2(c, OP_ADD, affine(c, x, c->w_ih, c->b_ih), affine(c, h, c->w_hh, c->b_hh));
  out[0] = out[1] = op1(c, relu ? OP_RELU : OP_TANH, pre);
  return 2;
}

static int build_lstm(Cell *c, int x, int h, int cs, int *out) {
  int g = op2(c, OP_ADD, affine(c, x, c->w_ih, c->b_ih), affine(c, h, c->w_hh, c->b_hh));
  int i = op1(c, OP_SIGMOID, chunk(c, g, 0)), f = op1(c, OP_SIGMOID, chunk(c, g, 1));
  int cand = op1(c, OP_TANH, chunk(c, g, 2)), o = op1(c, OP_SIGMOID, chunk(c, g, 3));
  int c2 = op2(c, OP_ADD, op2(c, OP_MUL, f, cs), op2(c, OP_MUL, i, cand));
  out[0] = out[1] = op2(c, OP_MUL, o, op1(c, OP_TANH, c2));
  out[2] = c2;
  return 3;
}

static int build_gru(Cell *c, int x, int h, int *out) {
  int a = affine(c, x, c->w_ih, c->b_ih), b = affine(c, h, c->w_hh, c->b_hh);
  int r = op1(c, OP_SIGMOID, op2(c, OP_ADD, chunk(c, a, 0), chunk(c, b, 0)));
  int z = op1(c, OP_SIGMOID, op2(c, OP_ADD, chunk(c, a, 1), chunk(c, b, 1)));
  int n = op1(c, OP_TANH, op2(c, OP_ADD, chunk(c, a, 2), op2(c, OP_MUL, r, chunk(c, b, 2))));
  int keep = op2(c, OP_SUB, ir_const(c->b, 1.0, c->loc), z);
  out[0] = out[1] = op2(c, OP_ADD, op2(c, OP_MUL, keep, n), op2(c, OP_MUL, z, h));
  return 2;
}

static const SigParam rnn_sig[] = {{"x", SK_TENSOR, NULL, NULL, CHK_NONE},
                                   {"h0", SK_TENSOR, NULL, NULL, CHK_NONE},
                                   {"nonlinearity", SK_ENUM, "tanh", "tanh|relu", CHK_NONE},
                                   {"batch_first", SK_BOOL, "false", NULL, CHK_NONE}};
static const SigParam lstm_sig[] = {{"x", SK_TENSOR, NULL, NULL, CHK_NONE},
                                    {"h0", SK_TENSOR, NULL, NULL, CHK_NONE},
                                    {"c0", SK_TENSOR, NULL, NULL, CHK_NONE},
                                    {"batch_first", SK_BOOL, "false", NULL, CHK_NONE}};
static const SigParam gru_sig[] = {{"x", SK_TENSOR, NULL, NULL, CHK_NONE},
                                   {"h0", SK_TENSOR, NULL, NULL, CHK_NONE},
                                   {"batch_first", SK_BOOL, "false", NULL, CHK_NONE}};

static const struct {
  const char *name;
  const SigParam *sig;
  int nsig, gates, nstate;
} cells[] = {{"rnn", rnn_sig, 4, 1, 1}, {"lstm", lstm_sig, 4, 4, 2}, {"gru", gru_sig, 3, 3, 1}};

int fe_recurrent_layer(const char *name) {
  for (int k = 0; k < 3; k++)
    if (strcmp(cells[k].name, name) == 0) return k;
  return -1;
}

/* x [T, N, I] or [N, T, I]; every state [N, H] with N matching x's. */
static int check_shapes(Parser *P, Expr *e, const int *in, int nstate, int batch_first) {
  const Graph *g = P->g;
  const Shape *x = &g->nodes[in[0]].shape, *h = &g->nodes[in[1]].shape;
  char b1[128], b2[128];
  if (x->rank != 3 || h->rank != 2 || h->d[0] != x->d[batch_first ? 0 : 1]) {
    diag_error(P->d, fe_loc(P, e->tok), "%s takes x as [%s, features] and states as [batch, hidden], not x %s "
               "and h0 %s", e->name, batch_first ? "batch, steps" : "steps, batch",
               ir_type_str(g, DT_F32, x, b1, sizeof b1), ir_type_str(g, DT_F32, h, b2, sizeof b2));
    return -1;
  }
  if (DIM_IS_SYM(x->d[2])) {
    diag_error(P->d, fe_loc(P, e->tok), "%s's input features must be a constant, not %s", e->name,
               ir_type_str(g, DT_F32, x, b1, sizeof b1));
    return -1;
  }
  if (DIM_IS_SYM(h->d[1]) || (nstate == 2 && !ir_shape_eq(h, &g->nodes[in[2]].shape))) {
    diag_error(P->d, fe_loc(P, e->tok), "%s's states must have one fixed hidden size, not %s", e->name,
               ir_type_str(g, DT_F32, h, b1, sizeof b1));
    return -1;
  }
  return 0;
}

/* The cell as a body graph: inputs x_t and the states, torch's params. */
static int build_cell(Parser *P, Expr *e, int kind, const char *prefix, const int *in, int relu, Graph *body) {
  const Shape *x = &P->g->nodes[in[0]].shape;
  Cell c = {P, body, fe_loc(P, e->tok), prefix, P->g->nodes[in[1]].shape.d[1], 0, 0, 0, 0};
  Dim gh = cells[kind].gates * c.hidden;
  Shape step = {2, {P->g->nodes[in[1]].shape.d[0], x->d[2]}}, st = P->g->nodes[in[1]].shape;
  int xt = ir_input(body, "x_t", DT_F32, &step, c.loc), h = ir_input(body, "h", DT_F32, &st, c.loc);
  int cs = cells[kind].nstate == 2 ? ir_input(body, "c", DT_F32, &st, c.loc) : -1;
  c.w_ih = cell_param(&c, "weight_ih_l0", gh, x->d[2]);
  c.w_hh = cell_param(&c, "weight_hh_l0", gh, c.hidden);
  c.b_ih = cell_param(&c, "bias_ih_l0", gh, 0);
  c.b_hh = cell_param(&c, "bias_hh_l0", gh, 0);
  int out[3], n = kind == CELL_RNN ? build_rnn(&c, xt, h, relu, out)
                 : kind == CELL_LSTM ? build_lstm(&c, xt, h, cs, out) : build_gru(&c, xt, h, out);
  for (int k = 0; k < n; k++) {
    if (out[k] < 0) return -1;
    ir_output(body, k ? (k == 1 ? "h" : "c") : "y", out[k]);
  }
  return 0;
}

Value fe_call_recurrent(Parser *P, int kind, Expr *e) {
  Expr *slots[FE_MAX_ARGS];
  Value v[FE_MAX_ARGS];
  int ns = cells[kind].nsig, nstate = cells[kind].nstate, in[3];
  if (fe_bind_args(P, e->name, "argument", e->tok, cells[kind].sig, ns, e->args, e->nargs, slots) ||
      fe_eval_args(P, e->name, cells[kind].sig, ns, slots, v))
    return (Value){V_ERR};
  for (int k = 0; k <= nstate; k++) in[k] = v[k].id;
  int batch_first = (int)v[ns - 1].ival, relu = kind == CELL_RNN && strcmp(v[2].str, "relu") == 0;
  if (check_shapes(P, e, in, nstate, batch_first)) return (Value){V_ERR};
  const char *prefix = fe_call_prefix(P, e, "layer");
  if (!prefix) return (Value){V_ERR};
  Graph body;
  ir_graph_init(&body, e->name, P->d);
  ir_clone_header(&body, P->g);
  if (build_cell(P, e, kind, prefix, in, relu, &body)) {
    ir_graph_free(&body);
    return (Value){V_ERR};
  }
  return fe_make_scan(P, e, &body, in, nstate, batch_first ? 1 : 0, 0);
}
