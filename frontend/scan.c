/*
 * scan.c — the scan call: a user block as the body of a recurrence.
 *
 *   ys, h_T = scan(cell, x, h0, axis=1)
 *   scan_call = "scan" "(" BLOCK "," SEQ { "," STATE } { "," KEY "=" expr } ")"
 *
 * The block takes (x_t, state...) and returns (y_t..., new_state...): its
 * per-step outputs first, then one new value per state, each of its
 * state's shape (lax.scan's carry, nn.RNN's (output, h_n) order).  The
 * call gives the per-step outputs stacked along axis, then the final
 * states.  The block is expanded once, into a graph of its own whose
 * inputs are a step of the sequence and the states; the parameters it
 * creates are the model's (named after the statement, as for any block
 * call) and are shared by every step, so they become the scan's constant
 * operands.  The scan's shape rule (ir/scan.c) checks the body against
 * the call and its messages are reported at the call.
 */
#include <string.h>

#include "frontend/fe.h"

typedef struct ScanCall {
  const BlockDef *b;
  int in[64];               /* seq, states, then constants */
  int nstate;
  int64_t axis;
  int reverse;
} ScanCall;

static int scan_keyword(Parser *P, ScanCall *c, const Arg *a) {
  const char *k = fe_tokstr(P, a->key);
  int is_axis = strcmp(k, "axis") == 0;
  if (!is_axis && strcmp(k, "reverse") != 0) {
    diag_error(P->d, fe_loc(P, a->key), "scan has no argument '%s'; it takes axis= and reverse=", k);
    return -1;
  }
  Value v = fe_eval_as(P, a->val, is_axis ? SK_INT : SK_BOOL, is_axis ? "scan's axis" : "scan's reverse", NULL);
  if (v.kind == V_ERR) return -1;
  if (is_axis) c->axis = v.ival;
  else c->reverse = (int)v.ival;
  return 0;
}

/* scan(BLOCK, SEQ, STATE..., axis=, reverse=): the block and the operands. */
static int scan_args(Parser *P, Expr *e, ScanCall *c) {
  if (e->nargs < 2 || e->args[0].key || e->args[0].val->kind != EX_NAME) {
    diag_error(P->d, fe_loc(P, e->tok), "scan takes a block, a sequence and its initial states: "
               "ys, h = scan(cell, x, h0, axis=1)");
    return -1;
  }
  c->b = fe_find_block(P, e->args[0].val->name);
  if (!c->b) {
    diag_error(P->d, fe_loc(P, e->args[0].val->tok), "'%s' is not a block; scan runs a block once per step",
               e->args[0].val->name);
    return -1;
  }
  int npos = 0, bad = 0;
  for (int i = 1; i < e->nargs; i++) {
    if (e->args[i].key) {
      bad |= scan_keyword(P, c, &e->args[i]);
      continue;
    }
    if (npos == 32) {
      diag_error(P->d, fe_loc(P, e->args[i].val->tok), "scan carries at most 31 states");
      return -1;
    }
    c->in[npos] = fe_tensor(P, e->args[i].val, fe_eval(P, e->args[i].val));
    bad |= c->in[npos++] < 0;
  }
  c->nstate = npos - 1;
  return bad || c->b->def->broken ? -1 : 0;
}

static int check_call(Parser *P, Expr *e, ScanCall *c) {
  const Shape *s = &P->g->nodes[c->in[0]].shape;
  int np = c->b->def->nparams;
  if (np != 1 + c->nstate) {
    diag_error(P->d, fe_loc(P, e->tok), "block '%s' takes %d parameter%s, but scan passes it %d: a step of the "
               "sequence and %d state%s", c->b->name, np, np == 1 ? "" : "s", 1 + c->nstate, c->nstate,
               c->nstate == 1 ? "" : "s");
    return -1;
  }
  if (c->axis < -s->rank || c->axis >= s->rank) {
    diag_error(P->d, fe_loc(P, e->args[1].val->tok), "scan's axis %lld is out of range for a sequence of rank %d",
               (long long)c->axis, s->rank);
    return -1;
  }
  if (c->axis < 0) c->axis += s->rank;
  return 0;
}

/* The body's inputs: a step of the sequence, then the states. */
static void body_inputs(Parser *P, Graph *body, const ScanCall *c, Value *args) {
  const BlockDef *b = c->b;
  for (int i = 0; i <= c->nstate; i++) {
    const Node *o = &P->g->nodes[c->in[i]];
    Shape s = o->shape;
    if (i == 0) {
      for (int k = (int)c->axis; k + 1 < s.rank; k++) s.d[k] = s.d[k + 1];
      s.rank--;
    }
    args[i] = (Value){V_TENSOR};
    args[i].id = ir_input(body, fe_tokstr(P, b->def->params[i]), DT_F32, &s, o->loc);
  }
}

/* Expands the block into body; its returned values become body outputs. */
static int build_body(Parser *P, Expr *e, ScanCall *c, Graph *body) {
  Value args[33];
  body_inputs(P, body, c, args);
  Graph *g = P->g, *top = P->model_g;
  P->model_g = top ? top : g;
  P->g = body;
  Value r = fe_expand_block(P, c->b, e, args);
  P->g = g, P->model_g = top;
  if (r.kind == V_ERR) return -1;
  int n = r.kind == V_TUPLE ? r.nlist : 1;
  if (n < c->nstate) {
    diag_error(P->d, fe_loc(P, e->tok), "block '%s' returns %d value%s, but scan carries %d states: the block "
               "returns its per-step outputs, then its new states", c->b->name, n, n == 1 ? "" : "s", c->nstate);
    return -1;
  }
  for (int k = 0; k < n; k++) {
    int id = r.kind == V_TUPLE ? (int)r.list[k] : r.id;
    int ny = n - c->nstate;
    char name[32];
    snprintf(name, sizeof name, k < ny ? "y%d" : "state%d", k < ny ? k : k - ny);
    ir_output(body, name, id);
  }
  return 0;
}

/* The body's parameters become the model's (or the enclosing body's). */
static int bind_params(Parser *P, const Graph *body, ScanCall *c, int nin) {
  int ids[64], np = ir_scan_params(body, ids, 64);
  if (nin + np > 64) {
    diag_error(P->d, body->nodes[ids[0]].loc, "a scan body uses at most %d parameters", 64 - nin);
    return -1;
  }
  for (int k = 0; k < np; k++) {
    const Node *bp = &body->nodes[ids[k]];
    int id = ir_find_param(P->g, bp->name);
    if (id < 0) {
      id = ir_param(P->g, bp->name, bp->dtype, &bp->shape, bp->init, bp->loc);
      P->g->nodes[id].frozen = bp->frozen, P->g->nodes[id].buffer = bp->buffer;
      fe_map_put(&P->params, P->tmp, P->g->nodes[id].name, id);
    }
    c->in[nin + k] = id;
  }
  return np;
}

static Value scan_results(Parser *P, Expr *e, int scan, int n);

/* The scan node over body (adopted) and its results. */
static Value make_scan(Parser *P, Expr *e, ScanCall *cp, Graph *body) {
  ScanCall c = *cp;
  const Graph *bg = ir_scan_body_adopt(P->g, body);
  int np = bind_params(P, bg, &c, 1 + c.nstate);
  if (np < 0) return (Value){V_ERR};
  Attrs at = ir_attrs_default(OP_SCAN);
  at.scan = (AttrScan){bg, 1, c.nstate, c.axis, c.reverse, 0};
  int scan = ir_op(P->g, OP_SCAN, c.in, 1 + c.nstate + np, &at, fe_loc(P, e->tok));
  if (scan < 0) return (Value){V_ERR};
  return scan_results(P, e, scan, bg->noutputs);
}

static Value scan_results(Parser *P, Expr *e, int scan, int n) {
  int ids[IR_MAX_LIST];
  if (n > IR_MAX_LIST || n < 1) {
    diag_error(P->d, fe_loc(P, e->tok), "a scan gives 1 to %d results, not %d", IR_MAX_LIST, n);
    return (Value){V_ERR};
  }
  for (int j = 0; j < n; j++) {
    Attrs at = ir_attrs_default(OP_SCAN_OUT);
    at.scan.index = j;
    ids[j] = ir_op(P->g, OP_SCAN_OUT, &scan, 1, &at, fe_loc(P, e->tok));
    if (ids[j] < 0) return (Value){V_ERR};
  }
  if (n == 1) {
    Value v = {V_TENSOR};
    v.id = ids[0];
    return v;
  }
  return fe_tuple(n, ids);
}

Value fe_call_scan(Parser *P, Expr *e) {
  ScanCall c = {0};
  if (scan_args(P, e, &c) || check_call(P, e, &c)) return (Value){V_ERR};
  Graph body;
  ir_graph_init(&body, c.b->name, P->d);
  ir_clone_header(&body, P->g);
  if (build_body(P, e, &c, &body)) {
    ir_graph_free(&body);
    return (Value){V_ERR};
  }
  return make_scan(P, e, &c, &body);
}

Value fe_make_scan(Parser *P, Expr *e, Graph *body, const int *in, int nstate, int64_t axis, int reverse) {
  ScanCall c = {0};
  memcpy(c.in, in, sizeof(int) * (size_t)(nstate + 1));
  c.nstate = nstate, c.axis = axis, c.reverse = reverse;
  return make_scan(P, e, &c, body);
}
