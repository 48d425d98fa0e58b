/*
 * scan.c — recurrence: the scan node, its shape rules, its body graph's
 * lifetime and its reference implementation.
 *
 * scan(seqs..., inits..., consts...) runs its body graph once per step t
 * along axis: the body's inputs are slice t of every sequence (the
 * sequence with the axis removed) and the current states; its PARAM nodes
 * are bound to the constant operands (a block's parameters, shared by
 * every step); its outputs are the step's values and the new states, each
 * new state of its state's exact type.  Steps run t = 0 .. T-1, or T-1 .. 0
 * when reverse.  The results (ir.h: ir_scan_result_kind) are the step
 * values stacked along axis, the final states, and the states each step
 * read stacked along axis; scan_out nodes project them, so a graph node
 * stays one value and only projected results are ever stored.
 *
 * The body is a Graph of its own, built apart and then adopted by the
 * graph holding the scan: its arena blocks join the owner's and its
 * arrays are copied into that arena, so it is freed with its owner and a
 * copied graph deep-copies it (ir_clone_node), never sharing it.
 *
 * The interpreter runs the body with ir_interp once per step, moving
 * slices in and out of dense C-order tensors: a tensor of shape
 * [outer..., T, inner...] holds slice t at rows o * T + t of inner
 * elements, for each o of outer.
 */
#include <string.h>

#include "ir/ir.h"

int ir_scan_ny(const AttrScan *a) { return a->body->noutputs - a->nstate; }
int ir_scan_nresults(const AttrScan *a) { return ir_scan_ny(a) + 2 * a->nstate; }

ScanResultKind ir_scan_result_kind(const AttrScan *a, int index, int *which) {
  int ny = ir_scan_ny(a);
  if (index < ny) return *which = index, SCAN_STACKED;
  if (index < ny + a->nstate) return *which = index - ny, SCAN_FINAL;
  return *which = index - ny - a->nstate, SCAN_STATES;
}

Dim ir_scan_steps(const Graph *g, const Node *scan) {
  return g->nodes[scan->in[0]].shape.d[scan->attr.scan.axis];
}

/* s with extent t inserted before dimension axis. */
static Shape insert_axis(const Shape *s, int64_t axis, Dim t) {
  Shape r = *s;
  for (int i = s->rank; i > axis; i--) r.d[i] = r.d[i - 1];
  r.d[axis] = t;
  r.rank++;
  return r;
}

/* s without dimension axis. */
static Shape drop_axis(const Shape *s, int64_t axis) {
  Shape r = {0, {0}};
  for (int i = 0; i < s->rank; i++)
    if (i != axis) r.d[r.rank++] = s->d[i];
  return r;
}

/* The body node output k of the body computes. */
static const Node *body_out(const AttrScan *a, int k) { return &a->body->nodes[a->body->outputs[k].id]; }

void ir_scan_result_type(const Graph *g, const Node *scan, int index, Shape *s) {
  const AttrScan *a = &scan->attr.scan;
  int k;
  Dim t = ir_scan_steps(g, scan);
  switch (ir_scan_result_kind(a, index, &k)) {
  case SCAN_STACKED: *s = insert_axis(&body_out(a, k)->shape, a->axis, t); return;
  case SCAN_FINAL: *s = g->nodes[scan->in[a->nseq + k]].shape; return;
  case SCAN_STATES: *s = insert_axis(&g->nodes[scan->in[a->nseq + k]].shape, a->axis, t); return;
  }
}

int ir_scan_params(const Graph *body, int *ids, int max) {
  int n = 0;
  for (int i = 0; i < body->nnodes; i++)
    if (body->nodes[i].op == OP_PARAM) {
      if (n < max) ids[n] = i;
      n++;
    }
  return n;
}

/* The INPUT nodes of body in order; returns their count. */
static int body_inputs(const Graph *body, int *ids, int max) {
  int n = 0;
  for (int i = 0; i < body->nnodes; i++)
    if (body->nodes[i].op == OP_INPUT) {
      if (n < max) ids[n] = i;
      n++;
    }
  return n;
}

/* --- lifetime ------------------------------------------------------------------ */

const Graph *ir_scan_body_adopt(Graph *owner, Graph *body) {
  Graph *g = arena_alloc(&owner->arena, sizeof *g);
  *g = *body;
  g->nodes = arena_alloc(&body->arena, sizeof(Node) * (size_t)(body->nnodes + 1));
  if (body->nnodes) memcpy(g->nodes, body->nodes, sizeof(Node) * (size_t)body->nnodes);
  g->outputs = arena_alloc(&body->arena, sizeof(Output) * (size_t)(body->noutputs + 1));
  if (body->noutputs) memcpy(g->outputs, body->outputs, sizeof(Output) * (size_t)body->noutputs);
  g->cap = g->nnodes, g->outcap = g->noutputs;
  arena_adopt(&owner->arena, &body->arena);
  memset(&g->arena, 0, sizeof g->arena);
  ir_graph_free(body);
  return g;
}

const Graph *ir_scan_body_clone(Graph *owner, const Graph *body) {
  Graph b;
  ir_graph_init(&b, body->name, owner->diags);
  ir_clone_header(&b, body);
  int *map = arena_alloc(&b.arena, sizeof(int) * (size_t)(body->nnodes + 1));
  for (int i = 0; i < body->nnodes; i++) {
    map[i] = ir_clone_node(&b, body, i, map);
    IR_ASSERT(map[i] >= 0);
  }
  for (int o = 0; o < body->noutputs; o++) ir_output(&b, body->outputs[o].name, map[body->outputs[o].id]);
  return ir_scan_body_adopt(owner, &b);
}

/* --- shape rules ---------------------------------------------------------------- */

#define FAIL(...) (snprintf(msg, len, __VA_ARGS__), -1)

static int check_counts(const AttrScan *a, int nin, int nparams, int ninputs, char *msg, size_t len) {
  if (!a->body) return FAIL("has no body");
  if (a->nseq < 1 || a->nstate < 0) return FAIL("needs a sequence to run along");
  if (nin != a->nseq + a->nstate + nparams)
    return FAIL("has %d operands but its body reads %d sequences, %d states and %d parameters", nin, a->nseq,
                a->nstate, nparams);
  if (ninputs != a->nseq + a->nstate)
    return FAIL("body takes %d values but the scan gives it %d (sequences and states)", ninputs, a->nseq + a->nstate);
  if (a->body->noutputs < a->nstate)
    return FAIL("body returns %d values but carries %d states: it must return its new state%s after its per-step "
                "outputs", a->body->noutputs, a->nstate, a->nstate > 1 ? "s" : "");
  return 0;
}

static int check_seqs(const Graph *g, const int *in, AttrScan *a, const int *bin, char *msg, size_t len) {
  const Shape *s0 = &g->nodes[in[0]].shape;
  if (a->axis < -s0->rank || a->axis >= s0->rank)
    return FAIL("axis %lld is out of range for a sequence of rank %d", (long long)a->axis, s0->rank);
  if (a->axis < 0) a->axis += s0->rank;
  char b1[128], b2[128];
  for (int i = 0; i < a->nseq; i++) {
    const Shape *s = &g->nodes[in[i]].shape;
    if (s->rank <= a->axis)
      return FAIL("sequence %d has rank %d, no axis %lld to run along", i + 1, s->rank, (long long)a->axis);
    if (s->d[a->axis] != s0->d[a->axis]) return FAIL("sequence %d has another number of steps than the first", i + 1);
    Shape step = drop_axis(s, a->axis);
    const Node *b = &a->body->nodes[bin[i]];
    if (!ir_shape_eq(&step, &b->shape))
      return FAIL("a step of sequence %d is %s but the body's input %d is %s", i + 1,
                  ir_type_str(g, DT_F32, &step, b1, sizeof b1), i + 1, ir_type_str(g, b->dtype, &b->shape, b2, sizeof b2));
  }
  return 0;
}

static int check_states(const Graph *g, const int *in, const AttrScan *a, const int *bin, char *msg, size_t len) {
  char b1[128], b2[128];
  int ny = ir_scan_ny(a);
  for (int k = 0; k < a->nstate; k++) {
    const Node *init = &g->nodes[in[a->nseq + k]], *b = &a->body->nodes[bin[a->nseq + k]], *nw = body_out(a, ny + k);
    if (!ir_shape_eq(&init->shape, &b->shape))
      return FAIL("initial state %d is %s but the body's state input is %s", k + 1,
                  ir_type_str(g, init->dtype, &init->shape, b1, sizeof b1), ir_type_str(g, b->dtype, &b->shape, b2, sizeof b2));
    if (nw->dtype != DT_F32 || !ir_shape_eq(&nw->shape, &init->shape))
      return FAIL("the body returns new state %d as %s, but the state is %s: a state keeps its shape from step to step",
                  k + 1, ir_type_str(g, nw->dtype, &nw->shape, b1, sizeof b1),
                  ir_type_str(g, init->dtype, &init->shape, b2, sizeof b2));
    if (init->shape.rank < a->axis)
      return FAIL("state %d has rank %d: its steps cannot be stacked along axis %lld", k + 1, init->shape.rank,
                  (long long)a->axis);
  }
  for (int k = 0; k < ny; k++) {
    const Node *y = body_out(a, k);
    if (y->dtype != DT_F32) return FAIL("per-step output %d must be f32", k + 1);
    if (y->shape.rank < a->axis || y->shape.rank >= IR_MAX_RANK)
      return FAIL("per-step output %d has rank %d: its steps cannot be stacked along axis %lld", k + 1, y->shape.rank,
                  (long long)a->axis);
  }
  return 0;
}

static int check_params(const Graph *g, const int *in, const AttrScan *a, const int *bp, int np, char *msg, size_t len) {
  char b1[128], b2[128];
  for (int k = 0; k < np; k++) {
    const Node *o = &g->nodes[in[a->nseq + a->nstate + k]], *b = &a->body->nodes[bp[k]];
    if (!ir_shape_eq(&o->shape, &b->shape))
      return FAIL("operand for the body's parameter '%s' is %s, not %s", b->name,
                  ir_type_str(g, o->dtype, &o->shape, b1, sizeof b1), ir_type_str(g, b->dtype, &b->shape, b2, sizeof b2));
  }
  return 0;
}

int ir_scan_infer(const Graph *g, const int *in, int nin, AttrScan *a, Shape *out, char *msg, size_t len) {
  int bin[64], bp[64];
  if (!a->body) return FAIL("has no body");
  int ninputs = body_inputs(a->body, bin, 64), np = ir_scan_params(a->body, bp, 64);
  if (ninputs > 64 || np > 64) return FAIL("body has too many inputs");
  if (check_counts(a, nin, np, ninputs, msg, len) || check_seqs(g, in, a, bin, msg, len) ||
      check_states(g, in, a, bin, msg, len) || check_params(g, in, a, bp, np, msg, len))
    return -1;
  out->rank = 0;
  return 0;
}

int ir_scan_out_infer(const Graph *g, const int *in, int nin, const AttrScan *a, DType *dt, Shape *out, char *msg,
                      size_t len) {
  const Node *s = &g->nodes[in[0]];
  if (nin != 1 || s->op != OP_SCAN) return FAIL("projects a result of a scan, not of %s", ir_ops[s->op].name);
  if (a->index < 0 || a->index >= ir_scan_nresults(&s->attr.scan))
    return FAIL("result %d of a scan with %d results", a->index, ir_scan_nresults(&s->attr.scan));
  *dt = DT_F32;
  ir_scan_result_type(g, s, a->index, out);
  return 0;
}

/* --- the reference implementation ------------------------------------------------ */

typedef struct Slab {   /* [outer, T, inner] view of a dense tensor */
  int64_t outer, steps, inner;
} Slab;

static Slab slab_of(const RtTensor *t, int64_t axis) {
  Slab s = {1, t->shape[axis], 1};
  for (int i = 0; i < axis; i++) s.outer *= t->shape[i];
  for (int i = (int)axis + 1; i < t->rank; i++) s.inner *= t->shape[i];
  return s;
}

/* Copies step t between the stacked tensor st and the step tensor x. */
static void slab_move(RtTensor *st, RtTensor *x, int64_t axis, int64_t t, int into_stack) {
  Slab s = slab_of(st, axis);
  float *a = (float *)st->data, *b = (float *)x->data;
  for (int64_t o = 0; o < s.outer; o++) {
    float *row = a + (o * s.steps + t) * s.inner, *step = b + o * s.inner;
    memcpy(into_stack ? row : step, into_stack ? step : row, sizeof(float) * (size_t)s.inner);
  }
}

static RtStatus alloc_like(RtTensor *t, const Graph *g, const Shape *s, const int64_t *symvals, RtError *err) {
  int64_t shape[IR_MAX_RANK];
  for (int k = 0; k < s->rank; k++) shape[k] = ir_dim_value(g, s->d[k], symvals);
  return rt_tensor_alloc(t, DT_F32, s->rank, shape, err);
}

typedef struct ScanRun {
  const Graph *g, *body;
  const Node *n;
  const AttrScan *a;
  RtTensor *vals, *bvals;
  int *bin, *outs;          /* body inputs; result index -> scan_out node or -1 */
  const int64_t *symvals;
  const InterpOpts *o;
} ScanRun;

/* The new states replace the states all at once (a new state may be
 * another state's input: the body returns them swapped). */
static RtStatus carry(ScanRun *r, RtError *err) {
  const AttrScan *a = r->a;
  int ny = ir_scan_ny(a);
  RtTensor *nw = rt_xcalloc((size_t)a->nstate + 1, sizeof(RtTensor));
  IR_ASSERT(nw);
  RtStatus s = RT_OK;
  for (int k = 0; k < a->nstate && !s; k++) {
    const RtTensor *src = &r->bvals[r->body->outputs[ny + k].id];
    s = rt_tensor_alloc(&nw[k], DT_F32, src->rank, src->shape, err);
    if (!s) memcpy(nw[k].data, src->data, sizeof(float) * (size_t)rt_tensor_numel(src));
  }
  for (int k = 0; k < a->nstate && !s; k++) {
    RtTensor *h = &r->bvals[r->bin[a->nseq + k]];
    memcpy(h->data, nw[k].data, sizeof(float) * (size_t)rt_tensor_numel(h));
  }
  for (int k = 0; k < a->nstate; k++) rt_tensor_free(&nw[k]);
  rt_xfree(nw);
  return s;
}

/* One step: body inputs in, body run, results out, states carried. */
static RtStatus scan_step(ScanRun *r, int64_t t, RtError *err) {
  const AttrScan *a = r->a;
  int ny = ir_scan_ny(a);
  for (int i = 0; i < a->nseq; i++) slab_move(&r->vals[r->n->in[i]], &r->bvals[r->bin[i]], a->axis, t, 0);
  for (int k = 0; k < a->nstate; k++) {
    int st = r->outs[ny + a->nstate + k];
    if (st >= 0) slab_move(&r->vals[st], &r->bvals[r->bin[a->nseq + k]], a->axis, t, 1);
  }
  RtStatus s = ir_interp(r->body, r->bvals, r->symvals, r->o, err);
  for (int k = 0; k < ny && !s; k++)
    if (r->outs[k] >= 0) slab_move(&r->vals[r->outs[k]], &r->bvals[r->body->outputs[k].id], a->axis, t, 1);
  if (!s) s = carry(r, err);
  for (int i = 0; i < r->body->nnodes; i++) {
    Node *b = &r->body->nodes[i];
    if (b->op != OP_INPUT && b->op != OP_PARAM && b->op != OP_STATE) rt_tensor_free(&r->bvals[i]);
  }
  return s;
}

/* Allocates the body's inputs and the projected results, binds params. */
static RtStatus scan_setup(ScanRun *r, RtError *err) {
  const AttrScan *a = r->a;
  int bp[64], np = ir_scan_params(r->body, bp, 64);
  for (int k = 0; k < np; k++) r->bvals[bp[k]] = r->vals[r->n->in[a->nseq + a->nstate + k]];
  for (int i = 0; i < a->nseq + a->nstate; i++) {
    RtStatus s = alloc_like(&r->bvals[r->bin[i]], r->body, &r->body->nodes[r->bin[i]].shape, r->symvals, err);
    if (s) return s;
  }
  for (int k = 0; k < a->nstate; k++) {
    RtTensor *h = &r->bvals[r->bin[a->nseq + k]];
    memcpy(h->data, r->vals[r->n->in[a->nseq + k]].data, sizeof(float) * (size_t)rt_tensor_numel(h));
  }
  for (int j = 0; j < ir_scan_nresults(a); j++) {
    if (r->outs[j] < 0) continue;
    RtStatus s = alloc_like(&r->vals[r->outs[j]], r->g, &r->g->nodes[r->outs[j]].shape, r->symvals, err);
    if (s) return s;
  }
  return RT_OK;
}

static void scan_finish(ScanRun *r) {
  const AttrScan *a = r->a;
  int ny = ir_scan_ny(a);
  for (int k = 0; k < a->nstate; k++) {
    int f = r->outs[ny + k];
    RtTensor *h = &r->bvals[r->bin[a->nseq + k]];
    if (f >= 0) memcpy(r->vals[f].data, h->data, sizeof(float) * (size_t)rt_tensor_numel(h));
  }
  for (int i = 0; i < a->nseq + a->nstate; i++) rt_tensor_free(&r->bvals[r->bin[i]]);
}

RtStatus ir_interp_scan(const Graph *g, int id, RtTensor *vals, const int64_t *symvals, const InterpOpts *o,
                        RtError *err) {
  const Node *n = &g->nodes[id];
  const AttrScan *a = &n->attr.scan;
  int nres = ir_scan_nresults(a), bin[64];
  body_inputs(a->body, bin, 64);
  ScanRun r = {g, a->body, n, a, vals, rt_xcalloc((size_t)a->body->nnodes + 1, sizeof(RtTensor)), bin,
               rt_xmalloc(sizeof(int) * (size_t)(nres + 1)), symvals, o};
  IR_ASSERT(r.bvals && r.outs);
  for (int j = 0; j < nres; j++) r.outs[j] = -1;
  for (int j = id + 1; j < g->nnodes; j++)
    if (g->nodes[j].op == OP_SCAN_OUT && g->nodes[j].in[0] == id) r.outs[g->nodes[j].attr.scan.index] = j;
  RtStatus s = scan_setup(&r, err);
  int64_t steps = vals[n->in[0]].shape[a->axis];
  for (int64_t i = 0; i < steps && !s; i++) s = scan_step(&r, a->reverse ? steps - 1 - i : i, err);
  if (!s) scan_finish(&r);
  else
    for (int i = 0; i < a->nseq + a->nstate; i++) rt_tensor_free(&r.bvals[bin[i]]);
  rt_xfree(r.bvals);
  rt_xfree(r.outs);
  return s;
}
