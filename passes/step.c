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
 *
 * The window graph (pass_window_graph) is the same clone for training a
 * language model by truncated backpropagation through time: T becomes K
 * (the truncation length, or T itself), and with carry the states are
 * exposed as above, so the trainer feeds each batch the final states of
 * the batch before.  A state input is not a parameter: no gradient flows
 * into it, which is PyTorch's hidden.detach() at the window's start.  The
 * whole model is kept, not only what its outputs need (the loss reads
 * labels), except what only computed the initial states.
 */
#include <string.h>

#include "passes/passes.h"

typedef struct StepBuild {
  const Graph *m;
  Graph *s;
  Dim steps;
  Dim window;               /* the new length of the T axis (1 for the step graph) */
  int carry;                /* scans' states become inputs and outputs */
  const char *what;         /* for messages: "a step function" */
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
      return diag_error(m->diags, n->loc, "%s runs forward, but this scan runs in reverse (a "
                        "bidirectional layer reads the steps after the current one)", b->what), -1;
    if (DIM_IS_SYM(t) || (b->nscans && t != b->steps))
      return diag_error(m->diags, n->loc, "%s needs every scan to run over one constant number of "
                        "steps, but this one runs over %s%lld", b->what, DIM_IS_SYM(t) ? "a symbol, not " : "",
                        (long long)(DIM_IS_SYM(t) ? b->steps : t)), -1;
    if (b->nscans == 64) return diag_error(m->diags, n->loc, "a step function carries the states of at most 64 scans"), -1;
    b->steps = t, b->scans[b->nscans++] = i;
  }
  if (!b->nscans) diag_plain(m->diags, m->name, "has no scan (recurrent layer): no state to carry %s",
                             b->window == 1 ? "step by step" : "from window to window");
  return b->nscans ? 0 : -1;
}

static int scan_number(const StepBuild *b, int id) {
  for (int j = 0; j < b->nscans; j++)
    if (b->scans[j] == id) return j;
  return -1;
}

/* What the outputs need (and, with all, every node that nothing reads:
 * the loss, unused inputs); a carried scan's initial states are not
 * needed. */
static void mark_live(StepBuild *b, int all) {
  const Graph *m = b->m;
  for (int k = 0; k < m->noutputs; k++) b->live[m->outputs[k].id] = 1;
  if (all) {
    int *used = b->map; /* scratch: map is filled later */
    memset(used, 0, sizeof(int) * (size_t)m->nnodes);
    for (int i = 0; i < m->nnodes; i++)
      for (int k = 0; k < m->nodes[i].nin; k++) used[m->nodes[i].in[k]] = 1;
    for (int i = 0; i < m->nnodes; i++) b->live[i] |= !used[i];
  }
  for (int i = m->nnodes - 1; i >= 0; i--) {
    const Node *n = &m->nodes[i];
    if (!b->live[i]) continue;
    int carried = b->carry && n->op == OP_SCAN;
    int nseq = carried ? n->attr.scan.nseq : 0, nst = carried ? n->attr.scan.nstate : 0;
    for (int k = 0; k < n->nin; k++)
      if (k < nseq || k >= nseq + nst) b->live[n->in[k]] = 1;
  }
}

/* Input node i with its first dimension of length T made the window's. */
static int step_input(StepBuild *b, int i) {
  const Node *n = &b->m->nodes[i];
  Shape sh = n->shape;
  for (int k = 0; k < sh.rank; k++)
    if (sh.d[k] == b->steps) {
      sh.d[k] = b->window;
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
    int id = n->op == OP_INPUT             ? step_input(b, i)
             : n->op == OP_SCAN && b->carry ? step_scan(b, i)
                                            : ir_clone_node(b->s, m, i, b->map);
    if (id < 0 && b->window == 1)
      return diag_note(m->diags, n->loc, "in the step function, which runs the model on 1 of its %lld steps",
                       (long long)b->steps), -1;
    if (id < 0)
      return diag_note(m->diags, n->loc, "in the model trained on windows of %lld of its %lld steps",
                       (long long)b->window, (long long)b->steps), -1;
    b->map[i] = id;
  }
  return 0;
}

static int add_outputs(StepBuild *b) {
  for (int k = 0; k < b->m->noutputs; k++) ir_output(b->s, b->m->outputs[k].name, b->map[b->m->outputs[k].id]);
  for (int j = 0; j < b->nscans && b->carry; j++) {
    if (!b->live[b->scans[j]]) continue;
    for (int k = 0; k < b->m->nodes[b->scans[j]].attr.scan.nstate; k++) {
      int id = final_state(b, j, k);
      if (id < 0) return -1;
      ir_output(b->s, state_name(b, j, k), id);
    }
  }
  return 0;
}

/* The clone of model into out with window steps (0: T) and the scans'
 * states exposed when carry; all: every node, not only what the outputs
 * need.  map (model->nnodes ints, or NULL) gets each node's id in out, -1
 * for a node left out. */
static int window_graph(const Graph *model, Graph *out, int64_t window, int carry, int all, int *map) {
  StepBuild b = {model, out, 0, window, carry, window == 1 ? "a step function" : "training on windows", NULL, NULL, {0}, 0};
  ir_graph_init(out, model->name, model->diags);
  ir_clone_header(out, model);
  b.map = arena_alloc(&out->arena, sizeof(int) * (size_t)(model->nnodes + 1));
  b.live = arena_alloc(&out->arena, sizeof(int) * (size_t)(model->nnodes + 1));
  memset(b.live, 0, sizeof(int) * (size_t)(model->nnodes + 1));
  if (find_scans(&b)) return -1;
  if (!window) b.window = b.steps;
  mark_live(&b, all);
  for (int i = 0; i < model->nnodes; i++) b.map[i] = -1;
  int rc = clone_live(&b) || add_outputs(&b) ? -1 : 0;
  if (map) memcpy(map, b.map, sizeof(int) * (size_t)model->nnodes);
  return rc;
}

int pass_step_graph(const Graph *model, Graph *step) {
  int rc = window_graph(model, step, 1, 1, 0, NULL);
  step->name = arena_printf(&step->arena, "%s_step", model->name);
  return rc;
}

int pass_window_graph(const Graph *model, Graph *out, int64_t window, int carry, int *map) {
  return window_graph(model, out, window, carry, 1, map);
}
