/*
 * rnn.c — the recurrent layers rnn, lstm and gru: a scan over a cell
 * built here, with torch.nn's formulas, gate order and parameter names.
 *
 *   hs, h_n = rnn(x, h0, nonlinearity=tanh, batch_first=false, hidden_size=,
 *                 num_layers=1, bidirectional=false) as r
 *   hs, h_n, c_n = lstm(x, h0, c0, batch_first=false, ...) as r
 *   hs, h_n = gru(x, h0, batch_first=false, ...) as r
 *
 * x is [T, N, I] ([N, T, I] with batch_first); the states are torch's
 * [L*D, N, H] (L layers, D = 2 directions when bidirectional), or [N, H]
 * when L*D is 1 (then h_n is [N, H] too).  Without h0 (and c0) the
 * states start at zero, h_n is [L*D, N, H], and hidden_size= gives H.
 * Each layer l and direction creates r.weight_ih_lL [G*H, I_l],
 * r.weight_hh_lL [G*H, H], r.bias_ih_lL and r.bias_hh_lL [G*H] (G = 1, 4,
 * 3; suffix _reverse for the backward direction; I_l = I, then D*H),
 * initialised as torch does, uniform in +-1/sqrt(H); the gates are
 * stacked in torch's order: LSTM i, f, g, o; GRU r, z, n.  Each layer
 * and direction is one scan (reverse for the backward one, whose output
 * at step t stays at t); a layer's output is its directions' concatenated
 * on the feature axis and is the next layer's input; h_n stacks the final
 * states layer by layer, forward before backward, as torch does.
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
  const char *suffix;       /* "_l0", "_l1_reverse", ... */
  Dim hidden;
  int w_ih, w_hh, b_ih, b_hh;
} Cell;

static int cell_param(Cell *c, const char *name, Dim rows, Dim cols) {
  Shape s = {cols ? 2 : 1, {rows, cols}};
  double k = 1 / sqrt((double)c->hidden);
  ParamInit init = {INIT_UNIFORM, -k, k};
  char full[64];
  snprintf(full, sizeof full, "%s%s", name, c->suffix);
  return ir_param(c->b, fe_join(c->P, c->prefix, arena_strdup(c->P->tmp, full)), DT_F32, &s, init, c->loc);
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
                                   {"h0", SK_TENSOR, "none", NULL, CHK_NONE},
                                   {"nonlinearity", SK_ENUM, "tanh", "tanh|relu", CHK_NONE},
                                   {"batch_first", SK_BOOL, "false", NULL, CHK_NONE},
                                   {"hidden_size", SK_INT, "0", NULL, CHK_NONNEG},
                                   {"num_layers", SK_INT, "1", NULL, CHK_POS},
                                   {"bidirectional", SK_BOOL, "false", NULL, CHK_NONE}};
static const SigParam lstm_sig[] = {{"x", SK_TENSOR, NULL, NULL, CHK_NONE},
                                    {"h0", SK_TENSOR, "none", NULL, CHK_NONE},
                                    {"c0", SK_TENSOR, "none", NULL, CHK_NONE},
                                    {"batch_first", SK_BOOL, "false", NULL, CHK_NONE},
                                    {"hidden_size", SK_INT, "0", NULL, CHK_NONNEG},
                                    {"num_layers", SK_INT, "1", NULL, CHK_POS},
                                    {"bidirectional", SK_BOOL, "false", NULL, CHK_NONE}};
static const SigParam gru_sig[] = {{"x", SK_TENSOR, NULL, NULL, CHK_NONE},
                                   {"h0", SK_TENSOR, "none", NULL, CHK_NONE},
                                   {"batch_first", SK_BOOL, "false", NULL, CHK_NONE},
                                   {"hidden_size", SK_INT, "0", NULL, CHK_NONNEG},
                                   {"num_layers", SK_INT, "1", NULL, CHK_POS},
                                   {"bidirectional", SK_BOOL, "false", NULL, CHK_NONE}};

static const struct {
  const char *name;
  const SigParam *sig;
  int nsig, gates, nstate;
} cells[] = {{"rnn", rnn_sig, 7, 1, 1}, {"lstm", lstm_sig, 7, 4, 2}, {"gru", gru_sig, 6, 3, 1}};

int fe_recurrent_layer(const char *name) {
  for (int k = 0; k < 3; k++)
    if (strcmp(cells[k].name, name) == 0) return k;
  return -1;
}

/* One call: its arguments and what was derived from them. */
typedef struct Rec {
  Parser *P;
  Expr *e;
  int kind, nstate;
  int x, st[2];             /* st: the initial states, or -1 (zeros) */
  int batch_first, relu, layers, dirs;
  Dim batch, hidden;
  const char *prefix;
  int zero;                 /* [N, H] zeros, made once */
} Rec;

static int rec_error(Rec *r, const char *fmt, const char *a, const char *b) {
  diag_error(r->P->d, fe_loc(r->P, r->e->tok), fmt, r->e->name, a, b);
  return -1;
}

/* x [T, N, I] or [N, T, I] with a constant I. */
static int check_x(Rec *r) {
  const Shape *x = &r->P->g->nodes[r->x].shape;
  char b1[128];
  ir_type_str(r->P->g, DT_F32, x, b1, sizeof b1);
  if (x->rank != 3)
    return rec_error(r, "%s takes x as [%s, features], not %s", r->batch_first ? "batch, steps" : "steps, batch", b1);
  if (DIM_IS_SYM(x->d[2])) return rec_error(r, "%s's input features must be a constant, not %s%s", b1, "");
  r->batch = x->d[r->batch_first ? 0 : 1];
  return 0;
}

/* Each state [L*D, N, H] (or [N, H] when L*D is 1), all of one shape,
 * H a constant agreeing with hidden_size when that is given too. */
static int check_states(Rec *r, int64_t hidden_size) {
  const Graph *g = r->P->g;
  char b1[128], want[32];
  if (r->st[0] < 0) {
    if (r->nstate == 2 && r->st[1] >= 0) return rec_error(r, "%s is given c0 but not h0; give both or neither%s%s", "", "");
    if (!hidden_size) return rec_error(r, "%s needs its hidden size: the initial state h0%s%s, or hidden_size=", "", "");
    r->hidden = hidden_size;
    return 0;
  }
  const Shape *h = &g->nodes[r->st[0]].shape;
  int ld = r->layers * r->dirs, lead = h->rank == 3;
  ir_type_str(g, DT_F32, h, b1, sizeof b1);
  snprintf(want, sizeof want, "%d", ld);
  if ((h->rank != 2 || ld != 1) && (h->rank != 3 || h->d[0] != ld))
    return rec_error(r, "%s takes its states as [num_layers * directions = %s, batch, hidden], not %s", want, b1);
  if (h->d[lead] != r->batch || DIM_IS_SYM(h->d[lead + 1]) || (hidden_size && h->d[lead + 1] != hidden_size))
    return rec_error(r, "%s's states must be [..., batch, hidden] with x's batch and one fixed hidden size%s, not %s",
                     hidden_size ? " (hidden_size)" : "", b1);
  if (r->nstate == 2 && (r->st[1] < 0 || !ir_shape_eq(h, &g->nodes[r->st[1]].shape)))
    return rec_error(r, "%s takes c0 of h0's shape %s%s", b1, "");
  r->hidden = h->d[lead + 1];
  return 0;
}

static int unary(Rec *r, OpKind op, int x, const Attrs *a) {
  return x < 0 ? -1 : ir_op(r->P->g, op, &x, 1, a, fe_loc(r->P, r->e->tok));
}

static int slice_of(Rec *r, int x, int axis, Dim start, Dim end) {
  Attrs a = ir_attrs_default(OP_SLICE);
  a.axis.axis = axis, a.axis.start = start, a.axis.end = end;
  return unary(r, OP_SLICE, x, &a);
}

static int reshape_to(Rec *r, int x, int rank, const Dim *d) {
  Attrs a = ir_attrs_default(OP_RESHAPE);
  a.dims.nlist = rank;
  for (int k = 0; k < rank; k++) a.dims.list[k] = d[k];
  return unary(r, OP_RESHAPE, x, &a);
}

static int binary(Rec *r, OpKind op, int a, int b) {
  int in[2] = {a, b};
  return a < 0 || b < 0 ? -1 : ir_op(r->P->g, op, in, 2, NULL, fe_loc(r->P, r->e->tok));
}

/* Zeros [N, H], exact whatever x holds: where(1, 0, a + b) over a
 * [N, 1] taken from x and b [H] from the first bias (created here, in
 * the model, before its scan binds it), neither of which gets a gradient. */
static int zero_state(Rec *r) {
  if (r->zero) return r->zero;
  Parser *P = r->P;
  SrcLoc loc = fe_loc(P, r->e->tok);
  const char *bname = fe_join(P, r->prefix, "bias_hh_l0");
  Shape bs = {1, {cells[r->kind].gates * r->hidden}};
  double k = 1 / sqrt((double)r->hidden);
  int b = ir_find_param(P->g, bname);
  if (b < 0) {
    b = ir_param(P->g, bname, DT_F32, &bs, (ParamInit){INIT_UNIFORM, -k, k, 0}, loc);
    fe_map_put(&P->params, P->tmp, P->g->nodes[b].name, b);
  }
  Dim col[2] = {r->batch, 1};
  int xs = reshape_to(r, slice_of(r, slice_of(r, r->x, r->batch_first, 0, 1), 2, 0, 1), 2, col);
  int sum = binary(r, OP_ADD, unary(r, OP_STOP_GRADIENT, xs, NULL),
                   unary(r, OP_STOP_GRADIENT, slice_of(r, b, 0, 0, r->hidden), NULL));
  int in[3] = {ir_const(P->g, 1, loc), ir_const(P->g, 0, loc), sum};
  r->zero = sum < 0 ? -1 : ir_op(P->g, OP_WHERE, in, 3, NULL, loc);
  return r->zero;
}

/* State s's start for layer l, direction d: its slice of [L*D, N, H]. */
static int initial_state(Rec *r, int s, int l, int d) {
  if (r->st[s] < 0) return zero_state(r);
  if (r->P->g->nodes[r->st[s]].shape.rank == 2) return r->st[s];
  int k = l * r->dirs + d;
  Dim nh[2] = {r->batch, r->hidden};
  return reshape_to(r, slice_of(r, r->st[s], 0, k, k + 1), 2, nh);
}

/* The cell as a body graph: inputs x_t and the states, torch's params. */
static int build_cell(Rec *r, int x, const char *suffix, Graph *body) {
  Parser *P = r->P;
  Cell c = {P, body, fe_loc(P, r->e->tok), r->prefix, suffix, r->hidden, 0, 0, 0, 0};
  Dim gh = cells[r->kind].gates * c.hidden, in = P->g->nodes[x].shape.d[2];
  Shape step = {2, {r->batch, in}}, st = {2, {r->batch, r->hidden}};
  int xt = ir_input(body, "x_t", DT_F32, &step, c.loc), h = ir_input(body, "h", DT_F32, &st, c.loc);
  int cs = r->nstate == 2 ? ir_input(body, "c", DT_F32, &st, c.loc) : -1;
  c.w_ih = cell_param(&c, "weight_ih", gh, in);
  c.w_hh = cell_param(&c, "weight_hh", gh, c.hidden);
  c.b_ih = cell_param(&c, "bias_ih", gh, 0);
  c.b_hh = cell_param(&c, "bias_hh", gh, 0);
  int out[3], n = r->kind == CELL_RNN ? build_rnn(&c, xt, h, r->relu, out)
                 : r->kind == CELL_LSTM ? build_lstm(&c, xt, h, cs, out) : build_gru(&c, xt, h, out);
  for (int k = 0; k < n; k++) {
    if (out[k] < 0) return -1;
    ir_output(body, k ? (k == 1 ? "h" : "c") : "y", out[k]);
  }
  return 0;
}

/* One layer in one direction over x: a scan; its per-step output in
 * *y, its final states in fin[]. */
static int run_direction(Rec *r, int x, int l, int d, int *y, int *fin) {
  char suffix[32];
  snprintf(suffix, sizeof suffix, "_l%d%s", l, d ? "_reverse" : "");
  int in[3] = {x, initial_state(r, 0, l, d), r->nstate == 2 ? initial_state(r, 1, l, d) : -1};
  for (int k = 0; k <= r->nstate; k++)
    if (in[k] < 0) return -1;
  Graph body;
  ir_graph_init(&body, r->e->name, r->P->d);
  ir_clone_header(&body, r->P->g);
  if (build_cell(r, x, suffix, &body)) {
    ir_graph_free(&body);
    return -1;
  }
  Value v = fe_make_scan(r->P, r->e, &body, in, r->nstate, r->batch_first ? 1 : 0, d);
  if (v.kind != V_TUPLE) return -1;
  *y = (int)v.list[0];
  for (int k = 0; k < r->nstate; k++) fin[k] = (int)v.list[1 + k];
  return 0;
}

/* h_n (or c_n): the final states stacked [L*D, N, H], or the one [N, H]
 * when the states were given as [N, H]. */
static int stack_finals(Rec *r, const int *fin, int n) {
  if (r->st[0] >= 0 && r->P->g->nodes[r->st[0]].shape.rank == 2) return fin[0];
  Dim one[3] = {1, r->batch, r->hidden};
  int parts[IR_MAX_LIST];
  for (int k = 0; k < n; k++)
    if ((parts[k] = reshape_to(r, fin[k], 3, one)) < 0) return -1;
  if (n == 1) return parts[0];
  Attrs a = ir_attrs_default(OP_CONCAT);
  a.axis.axis = 0;
  return ir_op(r->P->g, OP_CONCAT, parts, n, &a, fe_loc(r->P, r->e->tok));
}

/* Every layer, each direction; the last layer's output and the finals. */
static Value run_layers(Rec *r) {
  int x = r->x, fin[2][IR_MAX_LIST], nfin = 0;
  for (int l = 0; l < r->layers; l++) {
    int y[2], f[2];
    for (int d = 0; d < r->dirs; d++) {
      if (run_direction(r, x, l, d, &y[d], f)) return (Value){V_ERR};
      for (int s = 0; s < r->nstate; s++) fin[s][nfin] = f[s];
      nfin++;
    }
    Attrs a = ir_attrs_default(OP_CONCAT);
    a.axis.axis = 2;
    x = r->dirs == 1 ? y[0] : ir_op(r->P->g, OP_CONCAT, y, 2, &a, fe_loc(r->P, r->e->tok));
    if (x < 0) return (Value){V_ERR};
  }
  int ids[3] = {x, stack_finals(r, fin[0], nfin), r->nstate == 2 ? stack_finals(r, fin[1], nfin) : 0};
  for (int k = 0; k <= r->nstate; k++)
    if (ids[k] < 0) return (Value){V_ERR};
  return fe_tuple(1 + r->nstate, ids);
}

Value fe_call_recurrent(Parser *P, int kind, Expr *e) {
  Expr *slots[FE_MAX_ARGS];
  Value v[FE_MAX_ARGS];
  int ns = cells[kind].nsig, nstate = cells[kind].nstate;
  if (fe_bind_args(P, e->name, "argument", e->tok, cells[kind].sig, ns, e->args, e->nargs, slots) ||
      fe_eval_args(P, e->name, cells[kind].sig, ns, slots, v))
    return (Value){V_ERR};
  Rec r = {P, e, kind, nstate, v[0].id, {-1, -1}, (int)v[ns - 4].ival, 0, (int)v[ns - 2].ival,
           v[ns - 1].ival ? 2 : 1, 0, 0, NULL, 0};
  for (int k = 0; k < nstate; k++) r.st[k] = slots[1 + k] ? v[1 + k].id : -1;
  r.relu = kind == CELL_RNN && strcmp(v[2].str, "relu") == 0;
  if (r.layers * r.dirs > IR_MAX_LIST) {
    diag_error(P->d, fe_loc(P, e->tok), "%s runs at most %d layers and directions in all, not %d", e->name,
               IR_MAX_LIST, r.layers * r.dirs);
    return (Value){V_ERR};
  }
  if (check_x(&r) || check_states(&r, v[ns - 3].ival)) return (Value){V_ERR};
  r.prefix = fe_call_prefix(P, e, "layer");
  if (!r.prefix) return (Value){V_ERR};
  return run_layers(&r);
}
