/*
 * step.c — the step graph of a recurrent model: the model run on one step
 * of its sequence, its scans' carried states taken as inputs and returned
 * as outputs, so a caller runs a sequence of any length one step at a
 * time (text generation) without rerunning a window.
 *
 * The window length T is the step count of the model's scans (every scan
 * of the top-level graph must have the same constant T and run forward:
 * a reverse scan reads the future).  The step graph is the part of the
 * model its outputs need, cloned node by node through ir_op (so every
 * shape is inferred again) with these changes:
 *
 *   - each input's first dimension of length T becomes 1;
 *   - scan j's initial state k is a new input "stateJ.NAME" (NAME the
 *     body input's name: h, c for the recurrent layers), of the state's
 *     shape, so whatever computed the initial state in the model (zeros,
 *     or an h0 input) is dropped unless something else reads it;
 *   - after the model's outputs, scan j's final state k is an output
 *     "stateJ.NAME" too (a scan_out made when the model had none).
 *
 * With the states at zero, the step graph on the first step of a window
 * gives what the model gives at that position; fed each step's returned
 * states, the next.  Nothing here knows LSTMs: any scan's carry is
 * exposed.  A node whose attributes spell T out (a reshape to [N, T, 1])
 * cannot run on one step; its shape rule reports it at its line.
 */
#include <string.h>

#include "passes/passes.h"

typedef struct StepBuild {
  const Graph *m;
  Graph *s;
  Dim steps;
  int *map, *live;
  int scans[64], nscans;    /* the model's top-level scans, in order */
} StepBuild;

/* The model's scans: one constant step count, all forward. */
static int find_scans(StepBuild *b) {
  const Graph *m = b->m;
  for (int i = 0; i < m->nnodes; i++) {
    const Node *n = &m->nodes[i];
    if (n->op != OP_SCAN) continue;
    Dim t = ir_scan_steps(m, n);
    if (n->attr.scan.reverse)
      return diag_error(m->diags, n->loc, "a step function runs forward, but this scan runs in reverse (a "
                        "bidirectional layer reads the steps after the current one)"), -1;
    if (DIM_IS_SYM(t) || (b->nscans && t != b->steps))
      return diag_error(m->diags, n->loc, "a step function needs every scan to run over one constant number of "
                        "steps, but this one runs over %s%lld", DIM_IS_SYM(t) ? "a symbol, not " : "",
                        (long long)(DIM_IS_SYM(t) ? b->steps : t)), -1;
    if (b->nscans == 64) return diag_error(m->diags, n->loc, "a step function carries the states of at most 64 scans"), -1;
    b->steps = t, b->scans[b->nscans++] = i;
  }
  if (!b->nscans) diag_plain(m->diags, m->name, "has no scan (recurrent layer): no state to carry step by step");
  return b->nscans ? 0 : -1;
}

static int scan_number(const StepBuild *b, int id) {
  for (int j = 0; j < b->nscans; j++)
    if (b->scans[j] == id) return j;
  return -1;
}

/* What the outputs need; a scan's initial states are not needed. */
static void mark_live(StepBuild *b) {
  const Graph *m = b->m;
  for (int k = 0; k < m->noutputs; k++) b->live[m->outputs[k].id] = 1;
  for (int i = m->nnodes - 1; i >= 0; i--) {
    const Node *n = &m->nodes[i];
    if (!b->live[i]) continue;
    int nseq = n->op == OP_SCAN ? n->attr.scan.nseq : 0, nst = n->op == OP_SCAN ? n->attr.scan.nstate : 0;
    for (int k = 0; k < n->nin; k++)
      if (k < nseq || k >= nseq + nst) b->live[n->in[k]] = 1;
  }
}

/* Input node i with its first dimension of length T made 1. */
static int step_input(StepBuild *b, int i) {
  const Node *n = &b->m->nodes[i];
  Shape sh = n->shape;
  for (int k = 0; k < sh.rank; k++)
    if (sh.d[k] == b->steps) {
      sh.d[k] = 1;
      break;
    }
  int id = ir_input(b->s, n->name, n->dtype, &sh, n->loc);
  b->s->nodes[id].noise = n->noise;
  return id;
}

/* The name of scan j's state k: "stateJ.NAME". */
static const char *state_name(StepBuild *b, int j, int k) {
  const AttrScan *a = &b->m->nodes[b->scans[j]].attr.scan;
  int seen = 0;
  for (int i = 0; i < a->body->nnodes; i++)
    if (a->body->nodes[i].op == OP_INPUT && seen++ == a->nseq + k)
      return arena_printf(&b->s->arena, "state%d.%s", j, a->body->nodes[i].name);
  return arena_printf(&b->s->arena, "state%d.%d", j, k);
}

/* Scan node i with its initial states read from new inputs. */
static int step_scan(StepBuild *b, int i) {
  const Node *n = &b->m->nodes[i];
  int in[64], j = scan_number(b, i);
  const AttrScan *a = &n->attr.scan;
  for (int k = 0; k < n->nin; k++) {
    if (k < a->nseq || k >= a->nseq + a->nstate) {
      in[k] = b->map[n->in[k]];
      continue;
    }
    const Node *init = &b->m->nodes[n->in[k]];
    in[k] = ir_input(b->s, state_name(b, j, k - a->nseq), DT_F32, &init->shape, n->loc);
  }
  Attrs at = n->attr;
  at.scan.body = ir_scan_body_clone(b->s, a->body);
  return ir_op(b->s, OP_SCAN, in, n->nin, &at, n->loc);
}

/* Scan j's final state k in the step graph: an existing projection, or a new one. */
static int final_state(StepBuild *b, int j, int k) {
  int scan = b->map[b->scans[j]], index = ir_scan_ny(&b->m->nodes[b->scans[j]].attr.scan) + k;
  for (int i = scan + 1; i < b->s->nnodes; i++)
    if (b->s->nodes[i].op == OP_SCAN_OUT && b->s->nodes[i].in[0] == scan && b->s->nodes[i].attr.scan.index == index)
      return i;
  Attrs at = ir_attrs_default(OP_SCAN_OUT);
  at.scan.index = index;
  return ir_op(b->s, OP_SCAN_OUT, &scan, 1, &at, b->s->nodes[scan].loc);
}

static int clone_live(StepBuild *b) {
  const Graph *m = b->m;
  for (int i = 0; i < m->nnodes; i++) {
    if (!b->live[i]) continue;
    const Node *n = &m->nodes[i];
    int id = n->op == OP_INPUT ? step_input(b, i) : n->op == OP_SCAN && scan_number(b, i) >= 0 ? step_scan(b, i)
                                                                                             : ir_clone_node(b->s, m, i, b->map);
    if (id < 0)
      return diag_note(m->diags, n->loc, "in the step function, which runs the model on 1 of its %lld steps",
                       (long long)b->steps), -1;
    b->map[i] = id;
  }
  return 0;
}

static int add_outputs(StepBuild *b) {
  for (int k = 0; k < b->m->noutputs; k++) ir_output(b->s, b->m->outputs[k].name, b->map[b->m->outputs[k].id]);
  for (int j = 0; j < b->nscans; j++) {
    if (!b->live[b->scans[j]]) continue;
    for (int k = 0; k < b->m->nodes[b->scans[j]].attr.scan.nstate; k++) {
      int id = final_state(b, j, k);
      if (id < 0) return -1;
      ir_output(b->s, state_name(b, j, k), id);
    }
  }
  return 0;
}

int pass_step_graph(const Graph *model, Graph *step) {
  StepBuild b = {model, step, 0, NULL, NULL, {0}, 0};
  ir_graph_init(step, model->name, model->diags);
  ir_clone_header(step, model);
  step->name = arena_printf(&step->arena, "%s_step", model->name);
  b.map = arena_alloc(&step->arena, sizeof(int) * (size_t)(model->nnodes + 1));
  b.live = arena_alloc(&step->arena, sizeof(int) * (size_t)(model->nnodes + 1));
  memset(b.live, 0, sizeof(int) * (size_t)(model->nnodes + 1));
  if (find_scans(&b)) return -1;
  mark_live(&b);
  return clone_live(&b) || add_outputs(&b) ? -1 : 0;
}
