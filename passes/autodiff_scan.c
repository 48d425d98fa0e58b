/*
 * autodiff_scan.c — the body of a scan's gradient: backpropagation
 * through time as a reverse scan.
 *
 * For a forward body f(x_t, h; W) -> (y_t, h'), the backward body runs
 * once per step from the last to the first and takes
 *
 *   sequences  x_t, h_t (the state step t read, stacked by the forward
 *              scan), and dy_t for each per-step output that has a gradient
 *   states     dh (the gradient of the state step t returned: the final
 *              state's gradient at the start), and one accumulator per
 *              parameter (zero at the start)
 *   params     W, shared as in the forward body
 *
 * and returns dx_t (stacked into the sequence's gradient), then the new
 * states: dh_t (the gradient of the state step t read) and each
 * accumulator plus that step's parameter gradient.  Its final states are
 * the gradient of the initial states and of the parameters.
 *
 * The step's gradients are the vector-Jacobian product of the forward
 * body, which the backward body recomputes from x_t and h_t: it is the
 * forward body's nodes, a scalar s = sum(y_t * dy_t) + sum(h' * dh), and
 * pass_autodiff of s with respect to x_t, h and W.  So only the states
 * are stored across steps (T states, not every intermediate of every
 * step), and a body whose ops pass_autodiff differentiates needs nothing
 * more here.
 */
#include <string.h>

#include "passes/passes.h"

typedef struct BwBody {
  Graph g;
  const Graph *f;           /* the forward body */
  const AttrScan *a;
  int *map;                 /* forward body node -> backward body node */
  int nparams, pids[64];    /* the forward body's params */
  int dy[64], dh[64], acc[64];
} BwBody;

static int bw_input(BwBody *b, const char *name, const Shape *s, SrcLoc loc) {
  return ir_input(&b->g, name, DT_F32, s, loc);
}

/* Inputs in the order the reverse scan binds them. */
static void bw_inputs(BwBody *b, const int *has_dy) {
  const Graph *f = b->f;
  int ny = ir_scan_ny(b->a), k = 0;
  for (int i = 0; i < f->nnodes; i++)
    if (f->nodes[i].op == OP_INPUT) b->map[i] = bw_input(b, f->nodes[i].name, &f->nodes[i].shape, f->nodes[i].loc), k++;
  for (int j = 0; j < ny; j++) {
    const Node *y = &f->nodes[f->outputs[j].id];
    b->dy[j] = has_dy[j] ? bw_input(b, arena_printf(&b->g.arena, "d.%s", f->outputs[j].name), &y->shape, y->loc) : -1;
  }
  for (int s = 0; s < b->a->nstate; s++) {
    const Node *h = &f->nodes[f->outputs[ny + s].id];
    b->dh[s] = bw_input(b, arena_printf(&b->g.arena, "d.%s", f->outputs[ny + s].name), &h->shape, h->loc);
  }
  for (int p = 0; p < b->nparams; p++) {
    const Node *w = &f->nodes[b->pids[p]];
    b->acc[p] = bw_input(b, arena_printf(&b->g.arena, "d.%s", w->name), &w->shape, w->loc);
  }
}

static int bw_op2(BwBody *b, OpKind op, int x, int y, SrcLoc loc) {
  int in[2] = {x, y};
  return ir_op(&b->g, op, in, 2, NULL, loc);
}

/* sum(v * dv) added to the running scalar s (or started). */
static int bw_dot(BwBody *b, int s, int v, int dv, SrcLoc loc) {
  int m = bw_op2(b, OP_MUL, v, dv, loc);
  if (m < 0) return -1;
  int t = ir_op(&b->g, OP_SUM, &m, 1, NULL, loc);
  if (t < 0 || s < 0) return t;
  return bw_op2(b, OP_ADD, s, t, loc);
}

/* A zero tensor shaped like node like. */
static int bw_zeros(BwBody *b, int like, SrcLoc loc) {
  int z = ir_const(&b->g, 0.0, loc);
  return bw_op2(b, OP_EXPAND_AS, z, like, loc);
}

/* The surrogate scalar, its gradients, and the outputs. */
static int bw_grads(BwBody *b, SrcLoc loc) {
  const Graph *f = b->f;
  int ny = ir_scan_ny(b->a), s = -1, nw = b->a->nseq + b->a->nstate, wrt[128], grads[128];
  for (int j = 0; j < ny; j++)
    if (b->dy[j] >= 0) s = bw_dot(b, s, b->map[f->outputs[j].id], b->dy[j], loc);
  for (int k = 0; k < b->a->nstate; k++) s = bw_dot(b, s, b->map[f->outputs[ny + k].id], b->dh[k], loc);
  if (s < 0) return -1;
  for (int i = 0; i < nw; i++) wrt[i] = i; /* the forward inputs come first */
  for (int p = 0; p < b->nparams; p++) wrt[nw + p] = b->map[b->pids[p]];
  if (pass_autodiff(&b->g, s, wrt, nw + b->nparams, grads)) return -1;
  for (int i = 0; i < nw + b->nparams; i++)
    if (grads[i] < 0) grads[i] = bw_zeros(b, wrt[i], loc);
  for (int i = 0; i < b->a->nseq; i++) ir_output(&b->g, arena_printf(&b->g.arena, "d.x%d", i), grads[i]);
  for (int k = 0; k < b->a->nstate; k++)
    ir_output(&b->g, arena_printf(&b->g.arena, "d.h%d", k), grads[b->a->nseq + k]);
  for (int p = 0; p < b->nparams; p++) {
    int acc = bw_op2(b, OP_ADD, b->acc[p], grads[nw + p], loc);
    if (acc < 0) return -1;
    ir_output(&b->g, arena_printf(&b->g.arena, "d.w%d", p), acc);
  }
  return 0;
}

/* Ops pass_autodiff takes only after decomposition, or not at all. */
static const char *bw_unsupported(const Graph *f) {
  for (int i = 0; i < f->nnodes; i++) switch ((int)f->nodes[i].op) {
    case OP_BCE_LOGITS: case OP_MSE_LOSS: case OP_L1_LOSS: case OP_TRIPLET_LOSS: case OP_BATCHNORM: case OP_LAYER_NORM:
      return ir_ops[f->nodes[i].op].name;
    default:
      if ((ir_ops[f->nodes[i].op].flags & OPF_INTERNAL) && f->nodes[i].op != OP_SCAN && f->nodes[i].op != OP_SCAN_OUT &&
          f->nodes[i].op != OP_EW_GRAD && f->nodes[i].op != OP_DROPOUT_TRAIN)
        return ir_ops[f->nodes[i].op].name;
    }
  return NULL;
}

const Graph *pass_scan_backward_body(Graph *owner, const Node *scan, const int *has_dy) {
  const AttrScan *a = &scan->attr.scan;
  const char *bad = bw_unsupported(a->body);
  if (bad) {
    diag_error(owner->diags, scan->loc, "the gradient of a scan whose body uses %s is not supported", bad);
    return NULL;
  }
  BwBody b = {.f = a->body, .a = a};
  b.nparams = ir_scan_params(a->body, b.pids, 64);
  ir_graph_init(&b.g, arena_printf(&owner->arena, "%s.grad", a->body->name), owner->diags);
  ir_clone_header(&b.g, a->body);
  b.map = arena_alloc(&b.g.arena, sizeof(int) * (size_t)(a->body->nnodes + 1));
  bw_inputs(&b, has_dy);
  for (int i = 0; i < a->body->nnodes; i++)
    if (a->body->nodes[i].op != OP_INPUT && (b.map[i] = ir_clone_node(&b.g, a->body, i, b.map)) < 0) {
      ir_graph_free(&b.g);
      return NULL;
    }
  if (bw_grads(&b, scan->loc)) {
    ir_graph_free(&b.g);
    return NULL;
  }
  return ir_scan_body_adopt(owner, &b.g);
}
