/*
 * test_step_graph.c — the step graph of a recurrent model (passes/step.c): run
 * one step at a time by the reference interpreter, each step fed the
 * states the previous one returned (zeros first), it gives the model's
 * logits at every position of a window, for stacked LSTMs, a GRU and a
 * scan over a user block, with a batch of two rows; its inputs and
 * outputs are the model's plus stateJ.NAME; and models that cannot run
 * one step at a time are refused at the line that says why.
 */
#include <criterion/criterion.h>
#include <math.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/memlog.h"
#include "tests/testutil.h"

enum { BATCH = 2, STEPS = 6, VOCAB = 7 };

static void load(Model *m, const char *text, Diags *d) {
  cr_assert_eq(fe_load_string(m, "s.dl", text, d), 0, "the model does not load:\n%s", text);
}

/* vals[i] for every param of g, copied from set. */
static void bind_params(const Graph *g, RtTensor *vals, RtTensorSet *set) {
  RtError err;
  for (int i = 0; i < g->nnodes; i++) {
    if (g->nodes[i].op != OP_PARAM) continue;
    const RtTensor *p = rt_set_find(set, g->nodes[i].name);
    cr_assert_not_null(p, "no value for %s", g->nodes[i].name);
    cr_assert_eq(rt_tensor_alloc(&vals[i], p->dtype, p->rank, p->shape, &err), RT_OK);
    memcpy(vals[i].data, p->data, rt_tensor_nbytes(p));
  }
}

static void free_vals(const Graph *g, RtTensor *vals) {
  for (int i = 0; i < g->nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
}

/* The model's logits [BATCH, STEPS, VOCAB] for ids. */
static float *window_logits(const Graph *g, RtTensorSet *set, const int64_t *ids) {
  RtTensor *vals = calloc((size_t)g->nnodes, sizeof *vals);
  RtError err;
  int64_t shape[2] = {BATCH, STEPS}, sym[IR_MAX_SYMS] = {BATCH};
  bind_params(g, vals, set);
  for (int i = 0; i < g->nnodes; i++) { /* other inputs (initial states) at zero */
    const Node *n = &g->nodes[i];
    if (n->op != OP_INPUT || !strcmp(n->name, "tokens")) continue;
    int64_t s[IR_MAX_RANK] = {BATCH};
    for (int k = 1; k < n->shape.rank; k++) s[k] = n->shape.d[k];
    cr_assert_eq(rt_tensor_alloc(&vals[i], n->dtype, n->shape.rank, s, &err), RT_OK);
  }
  int x = ir_find_input(g, "tokens");
  cr_assert_eq(rt_tensor_alloc(&vals[x], DT_I64, 2, shape, &err), RT_OK);
  memcpy(vals[x].data, ids, sizeof(int64_t) * BATCH * STEPS);
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(g, vals, sym, &io, &err), RT_OK, "%s", err.msg);
  float *out = malloc(sizeof(float) * BATCH * STEPS * VOCAB);
  memcpy(out, vals[g->outputs[0].id].data, sizeof(float) * BATCH * STEPS * VOCAB);
  free_vals(g, vals);
  return out;
}

/* Steps t = 0.. of the step graph, states carried: each step's logits
 * against the window's at t. */
static void expect_steps_match(const Graph *s, RtTensorSet *set, const int64_t *ids, const float *want) {
  RtError err;
  RtTensor state[16] = {{0}};
  int64_t sym[IR_MAX_SYMS] = {BATCH};
  for (int t = 0; t < STEPS; t++) {
    RtTensor *vals = calloc((size_t)s->nnodes, sizeof *vals);
    bind_params(s, vals, set);
    for (int i = 0, k = 0; i < s->nnodes; i++) {
      const Node *n = &s->nodes[i];
      if (n->op != OP_INPUT) continue;
      int64_t shape[IR_MAX_RANK] = {BATCH};
      for (int d = 1; d < n->shape.rank; d++) shape[d] = n->shape.d[d];
      cr_assert_eq(rt_tensor_alloc(&vals[i], n->dtype, n->shape.rank, shape, &err), RT_OK);
      if (!strcmp(n->name, "tokens")) {
        for (int b = 0; b < BATCH; b++) ((int64_t *)vals[i].data)[b] = ids[b * STEPS + t];
        continue;
      }
      if (t) memcpy(vals[i].data, state[k].data, rt_tensor_nbytes(&state[k])); /* else zeros */
      k++;
    }
    InterpOpts io = {0, 0};
    cr_assert_eq(ir_interp(s, vals, sym, &io, &err), RT_OK, "step %d: %s", t, err.msg);
    const float *got = vals[s->outputs[0].id].data;
    for (int b = 0; b < BATCH; b++)
      for (int c = 0; c < VOCAB; c++) {
        float w = want[(b * STEPS + t) * VOCAB + c], g = got[b * VOCAB + c];
        cr_assert(fabsf(w - g) <= 1e-5f * (1 + fabsf(w)), "row %d step %d class %d: step %g, window %g", b, t, c, g, w);
      }
    for (int k = 1; k < s->noutputs; k++) { /* the returned states, in the order of the state inputs */
      rt_tensor_free(&state[k - 1]);
      state[k - 1] = vals[s->outputs[k].id];
      vals[s->outputs[k].id] = (RtTensor){0};
    }
    free_vals(s, vals);
  }
  for (int k = 0; k < 16; k++) rt_tensor_free(&state[k]);
}

static void check_model(const char *text, const char *const *states, int nstates) {
  Log log;
  log_open(&log);
  Model m;
  load(&m, text, &log.d);
  RtTensorSet set;
  RtError err;
  rt_set_init(&set);
  cr_assert_eq(ir_params_init(&m.g, 5, &set, &err), RT_OK, "%s", err.msg);
  int64_t ids[BATCH * STEPS];
  for (int i = 0; i < BATCH * STEPS; i++) ids[i] = (i * 5 + 3) % VOCAB;
  float *want = window_logits(&m.g, &set, ids);
  Graph s;
  cr_assert_eq(pass_step_graph(&m.g, &s), 0, "%s", log_text(&log));
  cr_expect(ir_find_input(&s, "tokens") >= 0 && s.nodes[ir_find_input(&s, "tokens")].shape.d[1] == 1);
  cr_assert_eq(s.noutputs, 1 + nstates);
  cr_expect_str_eq(s.outputs[0].name, "logits");
  for (int k = 0; k < nstates; k++) {
    cr_expect_str_eq(s.outputs[1 + k].name, states[k]);
    cr_expect(ir_find_input(&s, states[k]) >= 0, "no input %s", states[k]);
  }
  expect_steps_match(&s, &set, ids, want);
  free(want);
  ir_graph_free(&s);
  rt_set_free(&set);
  fe_model_free(&m);
  log_close(&log);
}

#define HEAD "model s\ninput tokens: i64[N, 6]\ne = embedding(tokens, 7, 4) as embed\n"

Test(step, stacked_lstms_match_the_window) {
  static const char *const st[] = {"state0.h", "state0.c", "state1.h", "state1.c"};
  check_model(HEAD "hs, h_n, c_n = lstm(e, hidden_size=5, num_layers=2, batch_first=true) as lstm\n"
                   "logits = dense(hs, 7) as head\noutput logits\n", st, 4);
}

Test(step, a_gru_matches_the_window) {
  static const char *const st[] = {"state0.h"};
  check_model(HEAD "hs, h_n = gru(e, hidden_size=3, batch_first=true) as gru\nlogits = dense(hs, 7) as head\n"
                   "output logits\n", st, 1);
}

Test(step, a_scan_over_a_block_matches_the_window) {
  static const char *const st[] = {"state0.acc", "state0.h"};
  check_model("model s\ninput tokens: i64[N, 6]\ninput a0: f32[N, 3]\ninput h0: f32[N, 3]\n"
              "e = embedding(tokens, 7, 3) as embed\n"
              "block cell(x, acc, h) {\n  z = dense(concat(x, h, axis=1), 3)\n  h2 = tanh(z)\n"
              "  acc2 = acc + h2\n  return h2 + acc2, acc2, h2\n}\n"
              "hs, a_n, h_n = scan(cell, e, a0, h0, axis=1)\n"
              "logits = dense(hs, 7) as head\noutput logits\n", st, 2);
}

static void expect_refused(const char *text, const char *want) {
  Log log;
  log_open(&log);
  Model m;
  load(&m, text, &log.d);
  Graph s;
  cr_expect_eq(pass_step_graph(&m.g, &s), -1);
  cr_expect(strstr(log_text(&log), want), "expected '%s' in:\n%s", want, log_text(&log));
  ir_graph_free(&s);
  fe_model_free(&m);
  log_close(&log);
}

Test(step, models_that_cannot_step_are_refused) {
  expect_refused(HEAD "hs, h_n, c_n = lstm(e, hidden_size=5, batch_first=true, bidirectional=true) as lstm\n"
                      "output hs\n", "s.dl:4:16: error: a step function runs forward, but this scan runs in reverse");
  expect_refused(HEAD "y = dense(e, 7)\noutput y\n", "s: error: has no scan (recurrent layer)");
  expect_refused(HEAD "hs, h_n, c_n = lstm(e, hidden_size=5, batch_first=true) as lstm\n"
                      "flat = reshape(hs, [N, 30])\noutput flat\n",
                 "s.dl:5:8: note: in the step function, which runs the model on 1 of its 6 steps");
}
