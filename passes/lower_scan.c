/*
 * lower_scan.c — a scan node as one kernel: its body lowered once inside a
 * loop over the steps, never unrolled, so the kernel's size does not grow
 * with the number of steps.
 *
 * The body graph is lowered with the ordinary node lowerings into the
 * scan's own kernel (its loop variables and locals are the kernel's), with
 * buffers of its own: each sequence input is a temporary holding one step,
 * each state a buffer carried across steps (the final-state result's own
 * buffer when the scan's final state is read), each parameter the buffer
 * of the scan's constant operand, and every other body node a temporary.
 * The kernel is
 *
 *   state_k = init_k                          for every state
 *   for t < T {                               (step tt = t, or T-1-t reversed)
 *     x_i[...] = seq_i[..., tt, ...]          gather a step of each sequence
 *     states_k[..., tt, ...] = state_k[...]   when the stacked states are read
 *     <the body's kernels, in node order>
 *     ys_j[..., tt, ...] = y_j[...]           when the stacked output is read
 *     state_k = new_k                         (through a copy when new states
 *   }                                          read each other's buffers)
 *   final_k = state_k                         for a second projection
 *
 * Each body node's nest is scheduled as it is lowered, by the schedule's
 * rule for its op (schedule_body_node): the schedule step sees only the
 * scan's one kernel, and the gate products of a recurrent layer are most
 * of its work.  (--no-tile does not reach these nests.)
 *
 * Every body buffer is live in this one kernel, so the memory planner
 * keeps them apart from each other and from everything live across the
 * scan; buffers of results that nothing projects are not written.  Both
 * emitters print the kernel as they print any other: a loop around a
 * sequence of kernels is a loop statement whose body is their statements.
 */
#include <stdlib.h>
#include <string.h>

#include "passes/lower.h"
#include "passes/schedule.h"

typedef struct ScanLower {
  Lower *L, B;              /* the outer lowering, the body's */
  const Node *n;
  const AttrScan *a;
  int *res;                 /* result -> first projecting buffer, or -1 */
  int *state;               /* state k -> its carried buffer */
  int *bin;                 /* body inputs */
  Expr *t;                  /* the step being run */
} ScanLower;

/* for idx over shape step: one side indexed by idx, the other (of shape
 * stacked) by idx with the step inserted at axis. */
static Stmt *move_step(ScanLower *S, Lower *from, int src, int dst, int64_t axis, int gather) {
  Program *p = S->L->p;
  const Node *sn = lower_node_of(from, src);
  Shape step = gather ? S->B.g->nodes[dst].shape : sn->shape;
  const Shape *stk = gather ? &sn->shape : &p->bufs[dst].shape;
  int vars[IR_MAX_RANK];
  Expr *si[IR_MAX_RANK], *ki[IR_MAX_RANK];
  for (int i = 0; i < step.rank; i++) vars[i] = lower_var(S->L), si[i] = kx_var(p, vars[i]);
  for (int i = 0, j = 0; i < stk->rank; i++) ki[i] = i == axis ? S->t : si[j++];
  Expr *sidx = lower_index(S->L, &step, si), *kidx = lower_index(S->L, stk, ki);
  Stmt *s = gather ? ks_store(p, S->B.buf[dst], sidx, lower_value(from, src, kidx))
                   : ks_store(p, dst, kidx, lower_value(from, src, sidx));
  for (int i = step.rank - 1; i >= 0; i--) s = ks_loop(p, vars[i], kx_dim(p, step.d[i]), s);
  return s;
}

/* A flat copy of node src (read through from) into buffer dst. */
static Stmt *flat_copy(ScanLower *S, Lower *from, int src, int dst) {
  Program *p = S->L->p;
  int v = lower_var(S->L);
  const Shape *s = &p->bufs[dst].shape;
  Stmt *body = ks_store(p, dst, kx_var(p, v), lower_value(from, src, kx_var(p, v)));
  return ks_loop(p, v, lower_numel(S->L, s, 0, s->rank), body);
}

/* Buffers of the body's nodes: inputs are step temporaries and carried
 * states, params the scan's constants, views their operand's. */
static void body_buffers(ScanLower *S) {
  Program *p = S->L->p;
  const Graph *b = S->B.g;
  int np = 0, ni = 0;
  for (int id = 0; id < b->nnodes; id++) {
    const Node *bn = &b->nodes[id];
    const char *name = arena_printf(&p->arena, "%s.%s", S->n->name ? S->n->name : "scan",
                                    bn->name ? bn->name : ir_ops[bn->op].name);
    if (bn->op == OP_INPUT && ni >= S->a->nseq) S->B.buf[id] = S->state[ni++ - S->a->nseq];
    else if (bn->op == OP_INPUT) ni++, S->B.buf[id] = kir_buffer(p, BUF_TEMP, DT_F32, name, &bn->shape, -1);
    else if (bn->op == OP_PARAM) S->B.buf[id] = S->L->buf[S->n->in[S->a->nseq + S->a->nstate + np++]];
    else if (bn->op == OP_CONST || bn->op == OP_SCAN || (ir_ops[bn->op].flags & OPF_EFFECT)) S->B.buf[id] = -1;
    else if (ir_ops[bn->op].flags & OPF_VIEW) S->B.buf[id] = S->B.buf[bn->in[0]];
    else S->B.buf[id] = kir_buffer(p, BUF_TEMP, bn->dtype, name, &bn->shape, -1);
  }
}

/* The projections of the scan: res[j] is the buffer of the first
 * scan_out of result j; state k is carried in its final result's. */
static void find_results(ScanLower *S, int id) {
  const Graph *g = S->L->g;
  int nres = ir_scan_nresults(S->a), ny = ir_scan_ny(S->a);
  for (int j = 0; j < nres; j++) S->res[j] = -1;
  for (int j = id + 1; j < g->nnodes; j++)
    if (g->nodes[j].op == OP_SCAN_OUT && g->nodes[j].in[0] == id && S->res[g->nodes[j].attr.scan.index] < 0)
      S->res[g->nodes[j].attr.scan.index] = S->L->buf[j];
  for (int k = 0; k < S->a->nstate; k++) {
    const Node *init = &g->nodes[S->n->in[S->a->nseq + k]];
    S->state[k] = S->res[ny + k] >= 0 ? S->res[ny + k]
                                      : kir_buffer(S->L->p, BUF_TEMP, DT_F32, "scan.state", &init->shape, -1);
  }
}

/* Whether buffer b is carried as some state's. */
static int is_state_buffer(ScanLower *S, int b) {
  for (int k = 0; k < S->a->nstate; k++)
    if (S->state[k] == b) return 1;
  return 0;
}

/* state_k = new_k for every k; a new state held in another state's
 * buffer is copied aside first, so the states update as one. */
static void carry_states(ScanLower *S, Stmt **blk) {
  Program *p = S->L->p;
  int ny = ir_scan_ny(S->a);
  int *from = rt_xmalloc(sizeof(int) * (size_t)(S->a->nstate + 1));
  IR_ASSERT(from);
  for (int k = 0; k < S->a->nstate; k++) {
    int nw = S->B.g->outputs[ny + k].id, b = S->B.buf[nw];
    from[k] = -1;
    if (b == S->state[k] || !is_state_buffer(S, b)) continue;
    from[k] = kir_buffer(p, BUF_TEMP, DT_F32, "scan.carry", &p->bufs[S->state[k]].shape, -1);
    ks_append(blk, flat_copy(S, &S->B, nw, from[k]));
  }
  for (int k = 0; k < S->a->nstate; k++) {
    int nw = S->B.g->outputs[ny + k].id;
    if (S->B.buf[nw] == S->state[k]) continue;
    if (from[k] < 0) ks_append(blk, flat_copy(S, &S->B, nw, S->state[k]));
    else {
      int v = lower_var(S->L);
      const Shape *s = &p->bufs[from[k]].shape;
      Stmt *st = ks_store(p, S->state[k], kx_var(p, v), kx_load(p, from[k], kx_var(p, v)));
      ks_append(blk, ks_loop(p, v, lower_numel(S->L, s, 0, s->rank), st));
    }
  }
  rt_xfree(from);
}

/* Body node id's nest s scheduled as a kernel of its own would be: the
 * schedule's rule for its op (a linear layer's row order and register
 * tiles) applied to it alone, with the scan kernel's variable counters.
 * The schedule step sees only the scan's one kernel, so without this the
 * matrix products of every step stay plain dot products.  The rules read
 * the body's shapes at the symbols' largest values, which are set on the
 * outer graph (the batch, --max) after the body was built: the body is
 * seen with the outer graph's symbol table (the body's starts as a copy
 * of it, so the indices agree). */
static Stmt *schedule_body_node(ScanLower *S, int id, Stmt *s) {
  Kernel *k = S->L->k;
  Stmt *body = k->body;
  int node = k->node, op = k->op;
  Graph bg = *S->B.g;
  memcpy(bg.syms, S->L->g->syms, sizeof bg.syms);
  bg.nsyms = S->L->g->nsyms;
  Func f = *S->L->f;
  f.g = &bg;
  k->body = s, k->node = id, k->op = (int)S->B.g->nodes[id].op;
  sched_kernel(S->L->p, &f, k);
  s = k->body;
  k->body = body, k->node = node, k->op = op;
  return s;
}

/* The statements of one step. */
static Stmt *step_body(ScanLower *S) {
  const AttrScan *a = S->a;
  const Graph *b = S->B.g;
  int ny = ir_scan_ny(a);
  Stmt *blk = NULL;
  for (int i = 0; i < a->nseq; i++) ks_append(&blk, move_step(S, S->L, S->n->in[i], S->bin[i], a->axis, 1));
  for (int k = 0; k < a->nstate; k++)
    if (S->res[ny + a->nstate + k] >= 0)
      ks_append(&blk, move_step(S, &S->B, S->bin[a->nseq + k], S->res[ny + a->nstate + k], a->axis, 0));
  for (int id = 0; id < b->nnodes; id++) {
    Stmt *s = lower_node_stmt(&S->B, id);
    if (s) ks_append(&blk, schedule_body_node(S, id, s));
  }
  for (int j = 0; j < ny; j++)
    if (S->res[j] >= 0) ks_append(&blk, move_step(S, &S->B, b->outputs[j].id, S->res[j], a->axis, 0));
  carry_states(S, &blk);
  return blk;
}

/* Every further projection of a result gets a copy of the first's. */
static void copy_projections(ScanLower *S, int id, Stmt **blk) {
  const Graph *g = S->L->g;
  for (int j = id + 1; j < g->nnodes; j++) {
    const Node *o = &g->nodes[j];
    if (o->op != OP_SCAN_OUT || o->in[0] != id || S->L->buf[j] == S->res[o->attr.scan.index]) continue;
    int v = lower_var(S->L), src = S->res[o->attr.scan.index];
    Program *p = S->L->p;
    Stmt *st = ks_store(p, S->L->buf[j], kx_var(p, v), kx_load(p, src, kx_var(p, v)));
    ks_append(blk, ks_loop(p, v, lower_numel(S->L, &o->shape, 0, o->shape.rank), st));
  }
}

Stmt *lower_scan(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = lower_node_of(L, id);
  const AttrScan *a = &n->attr.scan;
  int nres = ir_scan_nresults(a), bin[64], ni = 0;
  for (int i = 0; i < a->body->nnodes; i++)
    if (a->body->nodes[i].op == OP_INPUT && ni < 64) bin[ni++] = i;
  ScanLower S = {L, {p, L->f, a->body, rt_xcalloc((size_t)a->body->nnodes + 1, sizeof(int)), L->k}, n, a,
                 rt_xmalloc(sizeof(int) * (size_t)(nres + 1)), rt_xmalloc(sizeof(int) * (size_t)(a->nstate + 1)),
                 bin, NULL};
  IR_ASSERT(S.B.buf && S.res && S.state);
  find_results(&S, id);
  body_buffers(&S);
  Stmt *blk = NULL;
  for (int k = 0; k < a->nstate; k++) ks_append(&blk, flat_copy(&S, L, n->in[a->nseq + k], S.state[k]));
  int tv = lower_var(L);
  Dim steps = ir_scan_steps(L->g, n);
  S.t = kx_var(p, tv);
  if (a->reverse) S.t = kx_bin(p, BIN_SUB, kx_iadd(p, kx_dim(p, steps), kx_i(p, -1)), S.t);
  ks_append(&blk, ks_loop(p, tv, kx_dim(p, steps), step_body(&S)));
  copy_projections(&S, id, &blk);
  rt_xfree(S.B.buf);
  rt_xfree(S.res);
  rt_xfree(S.state);
  return blk;
}
