/*
 * test_seq_carry.c — truncated backpropagation through time with the state
 * carried across batches (passes/step.c's window graph, `dlc train --bptt
 * K --carry-state`): the window graph run on consecutive windows, each fed
 * the states the one before returned, gives what the model gives on the
 * whole sequence (reference interpreter); training on a text with the
 * state carried and detached matches PyTorch's word_language_model way
 * (tests/fixtures/gen_seq_carry_fixtures.py): the loss of every step, the
 * weights after them and the validation loss, on the interpreter and the
 * JIT; and what cannot carry a state is refused with a message.
 */
#include <criterion/criterion.h>
#include <math.h>

#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/memlog.h"
#include "tests/testutil.h"

enum { BATCH = 2, STEPS = 8, HALF = 4, VOCAB = 7 };

static void load(Model *m, const char *text, Diags *d, Log *l) {
  cr_assert_eq(fe_load_string(m, "c.dl", text, d), 0, "the model does not load:\n%s\n%s", text, log_text(l));
}

/* Interpreter values of g: params from set, inputs zero at batch BATCH
 * (tokens from ids, the window of length tokens' T from column t0). */
static RtTensor *bind(const Graph *g, RtTensorSet *set, const int64_t *ids, int t0) {
  RtTensor *vals = calloc((size_t)g->nnodes + 1, sizeof *vals);
  RtError err;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_PARAM) {
      const RtTensor *p = rt_set_find(set, n->name);
      cr_assert_not_null(p, "no value for %s", n->name);
      cr_assert_eq(rt_tensor_alloc(&vals[i], p->dtype, p->rank, p->shape, &err), RT_OK);
      memcpy(vals[i].data, p->data, rt_tensor_nbytes(p));
    } else if (n->op == OP_INPUT) {
      int64_t s[IR_MAX_RANK] = {BATCH};
      for (int k = 1; k < n->shape.rank; k++) s[k] = n->shape.d[k];
      cr_assert_eq(rt_tensor_alloc(&vals[i], n->dtype, n->shape.rank, s, &err), RT_OK);
      if (strcmp(n->name, "tokens")) continue;
      int64_t len = n->shape.d[1];
      for (int b = 0; b < BATCH; b++)
        for (int t = 0; t < len; t++) ((int64_t *)vals[i].data)[b * len + t] = ids[b * STEPS + t0 + t];
    }
  }
  return vals;
}

static void free_vals(const Graph *g, RtTensor *vals) {
  for (int i = 0; i < g->nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
}

static void run(const Graph *g, RtTensor *vals) {
  RtError err;
  int64_t sym[IR_MAX_SYMS] = {BATCH};
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(g, vals, sym, &io, &err), RT_OK, "%s", err.msg);
}

/* The window graph of text (T = STEPS) over windows of HALF, run on the
 * two halves of the sequence with the states carried, against the model
 * on the whole sequence. */
static void check_halves(const char *text, int nstates) {
  Log log;
  log_open(&log);
  Model m;
  load(&m, text, &log.d, &log);
  RtTensorSet set;
  RtError err;
  rt_set_init(&set);
  cr_assert_eq(ir_params_init(&m.g, 7, &set, &err), RT_OK, "%s", err.msg);
  int64_t ids[BATCH * STEPS];
  for (int i = 0; i < BATCH * STEPS; i++) ids[i] = (i * 5 + 3 + i / 3) % VOCAB;
  RtTensor *whole = bind(&m.g, &set, ids, 0);
  run(&m.g, whole);
  const float *want = whole[m.g.outputs[0].id].data;

  Graph w;
  cr_assert_eq(pass_window_graph(&m.g, &w, HALF, 1, NULL), 0, "%s", log_text(&log));
  cr_assert_eq(w.noutputs, 1 + nstates);
  cr_expect_eq(w.nodes[ir_find_input(&w, "tokens")].shape.d[1], HALF);
  RtTensor state[8] = {{0}};
  for (int half = 0; half < 2; half++) {
    RtTensor *vals = bind(&w, &set, ids, half * HALF);
    for (int k = 0; k < nstates && half; k++) { /* the first half starts from zeros */
      int in = ir_find_input(&w, w.outputs[1 + k].name);
      cr_assert(in >= 0, "no input %s", w.outputs[1 + k].name);
      memcpy(vals[in].data, state[k].data, rt_tensor_nbytes(&state[k]));
    }
    run(&w, vals);
    const float *got = vals[w.outputs[0].id].data;
    for (int b = 0; b < BATCH; b++)
      for (int t = 0; t < HALF; t++)
        for (int c = 0; c < VOCAB; c++) {
          float x = want[(b * STEPS + half * HALF + t) * VOCAB + c], y = got[(b * HALF + t) * VOCAB + c];
          cr_assert(fabsf(x - y) <= 1e-5f * (1 + fabsf(x)), "row %d step %d class %d: carried %g, whole %g", b,
                    half * HALF + t, c, y, x);
        }
    for (int k = 0; k < nstates; k++) {
      rt_tensor_free(&state[k]);
      state[k] = vals[w.outputs[1 + k].id];
      vals[w.outputs[1 + k].id] = (RtTensor){0};
    }
    free_vals(&w, vals);
  }
  for (int k = 0; k < nstates; k++) rt_tensor_free(&state[k]);
  ir_graph_free(&w);
  free_vals(&m.g, whole);
  rt_set_free(&set);
  fe_model_free(&m);
  log_close(&log);
}

#define HEAD "model c\ninput tokens: i64[N, 8]\ne = embedding(tokens, 7, 4) as embed\n"

Test(seq_carry, stacked_lstms_carried_equal_the_whole_sequence) {
  check_halves(HEAD "hs, h_n, c_n = lstm(e, hidden_size=5, num_layers=2, batch_first=true) as lstm\n"
                    "logits = dense(hs, 7) as head\noutput logits\n", 4);
}

Test(seq_carry, a_gru_from_given_states_carried_equals_the_whole_sequence) {
  /* the window graph drops what computed the initial states (the input h0) */
  check_halves("model c\ninput tokens: i64[N, 8]\ninput h0: f32[N, 3]\ne = embedding(tokens, 7, 4) as embed\n"
               "hs, h_n = gru(e, h0, batch_first=true) as gru\nlogits = dense(hs, 7) as head\noutput logits\n", 1);
}

/* --- training against PyTorch --------------------------------------------------------- */

#define CARRY(f) FIXTURE("seq_carry/" f)

/* The fixture's model, declared over windows of 10: --bptt 5 trains it on 5. */
static const char LM_MODEL[] =
    "model lm\n"
    "input tokens: i64[N, 10]\n"
    "e = embedding(tokens, 21, 4) as embed\n"
    "hs, h_n, c_n = lstm(e, hidden_size=6, batch_first=true) as lstm\n"
    "logits = dense(hs, 21) as head\n"
    "output logits\n"
    "train {\n"
    "  label next: i64[N, 10]\n"
    "  target = next\n"
    "  loss = cross_entropy(transpose(logits, perm=[0, 2, 1]), next)\n"
    "  optimizer = sgd(lr=0.5)\n"
    "  batch = 3\n"
    "  epochs = 1\n"
    "  val_split = 0.3\n"
    "}\n";

typedef struct Losses {
  int n;
  double v[16];
} Losses;

static int on_batch(void *ctx, const Trainer *t, const BatchStats *bs) {
  (void)t;
  Losses *l = ctx;
  if (l->n < 16) l->v[l->n++] = bs->loss;
  return 0;
}

static void read_st(const char *path, RtTensorSet *s) {
  RtError err;
  cr_assert_eq(rt_safetensors_read(path, s, &err), RT_OK, "%s", err.msg);
}

static void train_like_torch(Backend be) {
  Log log;
  log_open(&log);
  Model m;
  load(&m, LM_MODEL, &log.d, &log);
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &log.d), 0, "%s", log_text(&log));
  strcpy(cfg.data_kind, "text");
  snprintf(cfg.data_args[0], sizeof cfg.data_args[0], "%s", CARRY("corpus.txt"));
  cfg.bptt = 5, cfg.carry_state = 1, cfg.backend = be;
  RtTensorSet init, want;
  read_st(CARRY("init.safetensors"), &init);
  Trainer t;
  cr_assert_eq(trainer_prepare(&t, &m, &cfg, &log.d), 0, "%s", log_text(&log));
  cr_assert_eq(trainer_load_data(&t), 0, "%s", log_text(&log));
  cr_expect_eq(t.vocab.n, 21);
  cr_expect_eq(t.train.n, 14);
  cr_expect_eq(t.val.n, 6);
  cr_assert_eq(trainer_build(&t, &init), 0, "%s", log_text(&log));
  cr_expect_eq(t.ncarry, 2);
  Losses got = {0};
  t.on_batch = on_batch, t.batch_ctx = &got;
  EpochStats es;
  cr_assert_eq(trainer_epoch(&t, &es, 0, NULL), 0, "%s", log_text(&log));
  RtTensor wl;
  RtError err;
  cr_assert_eq(rt_npy_read(CARRY("loss.npy"), &wl, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(got.n, rt_tensor_numel(&wl), "%d steps, torch took %lld", got.n, (long long)rt_tensor_numel(&wl));
  for (int i = 0; i < got.n; i++) {
    double w = ((float *)wl.data)[i];
    cr_expect(fabs(got.v[i] - w) <= 1e-4 * (1 + fabs(w)), "step %d: loss %.7g, torch %.7g", i + 1, got.v[i], w);
  }
  cr_assert_eq(trainer_sync(&t), 0, "%s", log_text(&log));
  read_st(CARRY("final.safetensors"), &want);
  for (int i = 0; i < want.count; i++) {
    const RtTensor *w = &want.items[i].t, *g = rt_set_find(&t.tensors, want.items[i].name);
    cr_assert_not_null(g, "no %s", want.items[i].name);
    cr_assert_eq(rt_tensor_numel(g), rt_tensor_numel(w));
    for (int64_t k = 0; k < rt_tensor_numel(w); k++) {
      float a = ((float *)g->data)[k], b = ((float *)w->data)[k];
      cr_expect(fabsf(a - b) <= 1e-4f * (1 + fabsf(b)), "%s[%lld]: %g, torch %g", want.items[i].name, (long long)k, a,
                b);
    }
  }
  double vl, acc;
  RtTensor wv;
  cr_assert_eq(trainer_evaluate(&t, &t.val, &vl, &acc), 0, "%s", log_text(&log));
  cr_assert_eq(rt_npy_read(CARRY("val_loss.npy"), &wv, &err), RT_OK, "%s", err.msg);
  cr_expect(fabs(vl - ((float *)wv.data)[0]) <= 1e-4 * (1 + fabs(vl)), "validation loss %.7g, torch %.7g", vl,
            ((float *)wv.data)[0]);
  rt_tensor_free(&wv);
  rt_tensor_free(&wl);
  rt_set_free(&want);
  rt_set_free(&init);
  trainer_free(&t);
  cr_expect_eq(m.g.nodes[ir_find_input(&m.g, "tokens")].shape.d[1], 10, "the model's own graph is back");
  fe_model_free(&m);
  log_close(&log);
}

Test(seq_carry, training_with_carried_detached_state_matches_torch, .timeout = 120) { train_like_torch(BACKEND_INTERP); }
Test(seq_carry, jit_training_with_carried_detached_state_matches_torch, .timeout = 120) { train_like_torch(BACKEND_JIT); }

/* --- refused ------------------------------------------------------------------------------ */

static void expect_window_refused(const char *text, int64_t window, const char *want) {
  Log log;
  log_open(&log);
  Model m;
  load(&m, text, &log.d, &log);
  Graph w;
  cr_expect_eq(pass_window_graph(&m.g, &w, window, 1, NULL), -1);
  cr_expect(strstr(log_text(&log), want), "expected '%s' in:\n%s", want, log_text(&log));
  ir_graph_free(&w);
  fe_model_free(&m);
  log_close(&log);
}

Test(seq_carry, models_that_cannot_carry_are_refused) {
  expect_window_refused(HEAD "hs, h_n = gru(e, hidden_size=5, batch_first=true, bidirectional=true) as g\noutput hs\n", 0,
                        "c.dl:4:11: error: training on windows runs forward, but this scan runs in reverse");
  expect_window_refused(HEAD "y = dense(e, 7)\noutput y\n", 4, "c: error: has no scan (recurrent layer): no state to "
                        "carry from window to window");
  expect_window_refused(HEAD "hs, h_n, c_n = lstm(e, hidden_size=5, batch_first=true) as l\n"
                             "flat = reshape(hs, [N, 40])\noutput flat\n", 4,
                        "c.dl:5:8: note: in the model trained on windows of 4 of its 8 steps");
}

/* dlc train's exit status and what it printed (args after "dlc train", run in dir). */
static int dlc_train(const char *dir, const char *args, char **out) {
  char cmd[4096], log[600];
  snprintf(log, sizeof log, "%s/log.txt", dir);
  snprintf(cmd, sizeof cmd, "cd %s && %s train %s > %s 2>&1", dir, DLC_EXE, args, log);
  int st = system(cmd);
  *out = tu_read_file(log, NULL);
  cr_assert_not_null(*out);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* dlc train: carried state needs text data, and cannot be distributed. */
Test(seq_carry, the_command_line_refuses_what_cannot_carry, .timeout = 60) {
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/lm.dl", dir);
  FILE *f = fopen(path, "w");
  cr_assert(f);
  fputs(LM_MODEL, f);
  fclose(f);
  char *out = NULL;
  int rc = dlc_train(dir, "lm.dl --carry-state --data npy:tokens=x.npy,next=y.npy", &out);
  cr_expect_eq(rc, 1, "exit %d:\n%s", rc, out);
  cr_expect(strstr(out, "--carry-state: error: lays the windows of a text out contiguous per batch row: it needs text "
                        "data"), "%s", out);
  free(out);
  rc = dlc_train(dir, "lm.dl --bptt 0 --data text:x.txt", &out);
  cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
  cr_expect(strstr(out, "--bptt"), "%s", out);
  free(out);
}
