/*
 * test_seq_ops.c — the ops and layers of sequence models against torch.nn.
 *
 * The ops themselves (cross_entropy and nll_loss over [N, C, d...] with
 * ignore_index, layer_norm, ...) are cases of op_cases.h: values against
 * PyTorch, gradients against finite differences and against PyTorch, and
 * every backend against the interpreter.  This file checks what those
 * cases cannot: the layers, with torch.nn's parameter names, on whole
 * models read from tests/fixtures/seq/ (written by
 * tests/fixtures/gen_seq_fixtures.py, which holds the same models in
 * PyTorch).  Each model has an output y and the loss sum(y * w) of a fixed
 * input w; the forward graph and the gradient graph (pass_build_grads, with
 * respect to every input and parameter) run on the interpreter, the C
 * backend and the JIT, and every output and gradient must be PyTorch's to
 * 1e-5 of its largest magnitude (tu_normerr).  Then the corners: a loss
 * whose every target is ignored, the attribute tables.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "frontend/frontend.h"
#include "tests/graph_run.h"

#define TOL 1e-5

static void read_fx(const char *cse, const char *name, RtTensor *t) {
  char path[512];
  RtError err;
  snprintf(path, sizeof path, "%s/%s.%s.npy", FIXTURE("seq"), cse, name);
  cr_assert_eq(rt_npy_read(path, t, &err), RT_OK, "%s", err.msg);
}

/* Every input and parameter of g from the case's fixtures. */
static RtTensor *fx_sources(const Graph *g, const char *cse) {
  RtTensor *vals = calloc((size_t)g->nnodes + 1, sizeof *vals);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *nd = &g->nodes[i];
    if (nd->op == OP_INPUT || nd->op == OP_PARAM) read_fx(cse, nd->name, &vals[i]);
  }
  return vals;
}

static void free_vals(const Graph *g, RtTensor *vals) {
  for (int i = 0; i < g->nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
}

/* Every output of g (after a run on backend b) against fixture
 * PREFIX<name> of the case. */
static void expect_outputs(const Graph *g, RtTensor *vals, const char *cse, const char *prefix, int b) {
  static const char *const backends[] = {"interpreter", "C", "JIT"};
  for (int o = 0; o < g->noutputs; o++) {
    const char *name = g->outputs[o].name;
    char fx[256];
    snprintf(fx, sizeof fx, "%s%s", strcmp(name, "loss") ? prefix : "", name);
    RtTensor want;
    read_fx(cse, fx, &want);
    const RtTensor *got = &vals[g->outputs[o].id];
    cr_assert_eq(rt_tensor_numel(got), rt_tensor_numel(&want), "%s: %s has the wrong size", cse, name);
    int64_t n = rt_tensor_numel(&want), at = 0;
    double worst = 0, abs_err = 0;
    for (int64_t k = 0; k < n; k++) {
      double e = tu_normerr(got->data, want.data, n, k);
      abs_err = fmax(abs_err, fabs((double)((const float *)got->data)[k] - ((const float *)want.data)[k]));
      if (!(e <= worst)) worst = e, at = k;
    }
    cr_log_info("%s, %s: %s max abs error %.3g, norm-wise %.3g", cse, backends[b], fx, abs_err, worst);
    cr_expect(worst <= TOL, "%s, %s: %s[%lld] is %.7g, PyTorch says %.7g (norm-wise error %.3g)", cse, backends[b], fx,
              (long long)at, (double)((const float *)got->data)[at], (double)((const float *)want.data)[at], worst);
    rt_tensor_free(&want);
  }
}

/* Model text (outputs y and loss; its one symbol N is n) against the
 * case's fixtures: forward and gradients, on every backend. */
static void check_model(const char *cse, int64_t n, const char *text) {
  Model m;
  Diags d;
  diag_init(&d, stderr);
  cr_assert_eq(fe_load_string(&m, "seq.dl", text, &d), 0, "%s: the model does not load", cse);
  for (int s = 0; s < m.g.nsyms; s++) m.g.syms[s].max = 8;
  Graph grad;
  ir_graph_init(&grad, cse, &d);
  int loss = m.g.outputs[ir_find_output(&m.g, "loss")].id;
  cr_assert_eq(pass_build_grads(&m.g, loss, 1, 1, &(DecomposeOpts){0, 0}, &grad), 0, "%s: no gradient graph", cse);
  for (int b = 0; b < 3; b++) {
    RtTensor *vals = fx_sources(&m.g, cse);
    run_graph(&m.g, vals, n, b);
    expect_outputs(&m.g, vals, cse, "", b);
    free_vals(&m.g, vals);
    vals = fx_sources(&grad, cse);
    run_graph(&grad, vals, n, b);
    expect_outputs(&grad, vals, cse, "grad.", b);
    free_vals(&grad, vals);
  }
  ir_graph_free(&grad);
  fe_model_free(&m);
}

/* --- layers against torch.nn ----------------------------------------------------- */

Test(seq_ops, layer_norm_matches_torch_nn_layernorm, .timeout = 120) {
  check_model("layer_norm", 3, "model ln\ninput x: f32[N, 2, 4, 5]\ninput w: f32[N, 2, 4, 5]\n"
                            "y = layer_norm(x, [4, 5]) as ln\noutput y\noutput loss = sum(y * w)\n");
}

Test(seq_ops, sdpa_with_a_mask_matches_the_formula, .timeout = 120) {
  check_model("sdpa_mask", 2,
              "model a\ninput q: f32[N, 2, 5, 4]\ninput k: f32[N, 2, 6, 4]\ninput v: f32[N, 2, 6, 4]\n"
              "input mask: f32[5, 6]\ninput w: f32[N, 2, 5, 4]\ny = scaled_dot_product_attention(q, k, v, mask)\n"
              "output y\noutput loss = sum(y * w)\n");
}

Test(seq_ops, sdpa_causal_matches_the_formula, .timeout = 120) {
  check_model("sdpa_causal", 2,
              "model a\ninput q: f32[N, 2, 5, 4]\ninput k: f32[N, 2, 5, 4]\ninput v: f32[N, 2, 5, 4]\n"
              "input w: f32[N, 2, 5, 4]\ny = scaled_dot_product_attention(q, k, v, causal=true, scale=0.3)\n"
              "output y\noutput loss = sum(y * w)\n");
}

Test(seq_ops, multihead_attention_matches_torch_with_a_mask, .timeout = 120) {
  check_model("mha_mask", 2,
              "model a\ninput x: f32[N, 5, 8]\ninput kv: f32[N, 6, 8]\ninput mask: f32[5, 6]\n"
              "input w: f32[N, 5, 8]\ny = multihead_attention(x, kv, kv, 2, mask=mask) as attn\n"
              "output y\noutput loss = sum(y * w)\n");
}

Test(seq_ops, multihead_attention_causal_matches_torch, .timeout = 120) {
  check_model("mha_causal", 3,
              "model a\ninput x: f32[N, 4, 8]\ninput w: f32[N, 4, 8]\n"
              "y = multihead_attention(x, x, x, 4, causal=true) as attn\noutput y\noutput loss = sum(y * w)\n");
}

Test(seq_ops, multihead_attention_sequence_first_matches_torch, .timeout = 120) {
  check_model("mha_seq_first", 3,
              "model a\ninput x: f32[4, N, 8]\ninput w: f32[4, N, 8]\n"
              "y = multihead_attention(x, x, x, 2, batch_first=false) as attn\noutput y\noutput loss = sum(y * w)\n");
}

/* The negative-sampling loss of word2vec written in the language: two
 * embedding tables, the negatives read from the output table. */
#define SGNS_MODEL                                                                                           \
  "model sgns\ninput center: i64[N]\ninput context: i64[N]\ninput negatives: i64[N, 3]\ninput w: f32[N]\n" \
  "v = embedding(center, 12, 5) as in_embed\nu = embedding(context, 12, 5) as out_embed\n"                  \
  "un = index_select(out_embed.weight, negatives, axis=0)\n"                                              \
  "y = log_sigmoid(sum(v * u, axes=1)) + sum(log_sigmoid(-sum(un * reshape(v, [N, 1, 5]), axes=2)), axes=1)\n" \
  "output y\noutput loss = sum(y * w)\n"

Test(seq_ops, negative_sampling_loss_matches_torch, .timeout = 120) { check_model("sgns", 6, SGNS_MODEL); }

/* --- corners ---------------------------------------------------------------------- */

/* A mean over targets that are all ignored is 0/0 = NaN, as PyTorch's,
 * and its gradient is zero, on every backend. */
Test(seq_ops, every_target_ignored, .timeout = 60) {
  for (int op = 0; op < 2; op++) {
    char text[512];
    snprintf(text, sizeof text,
             "model ig\ninput x: f32[N, 3, 4]\ninput y: i64[N, 4]\noutput loss = %s(x, y, ignore_index=2)\n",
             op ? "nll_loss" : "cross_entropy");
    Model m;
    Diags d;
    diag_init(&d, stderr);
    cr_assert_eq(fe_load_string(&m, "ig.dl", text, &d), 0);
    m.g.syms[0].max = 8;
    Graph grad;
    ir_graph_init(&grad, "ig", &d);
    cr_assert_eq(pass_build_grads(&m.g, m.g.outputs[0].id, 1, 1, &(DecomposeOpts){0, 0}, &grad), 0);
    for (int b = 0; b < 3; b++) {
      RtTensor *vals = calloc((size_t)grad.nnodes, sizeof *vals);
      RtError err;
      int x = ir_find_input(&grad, "x"), y = ir_find_input(&grad, "y");
      cr_assert_eq(rt_tensor_alloc(&vals[x], DT_F32, 3, (int64_t[]){2, 3, 4}, &err), RT_OK);
      cr_assert_eq(rt_tensor_alloc(&vals[y], DT_I64, 2, (int64_t[]){2, 4}, &err), RT_OK);
      for (int k = 0; k < 24; k++) ((float *)vals[x].data)[k] = (float)k / 7.0f;
      for (int k = 0; k < 8; k++) ((int64_t *)vals[y].data)[k] = 2;
      run_graph(&grad, vals, 2, b);
      const float *l = vals[grad.outputs[ir_find_output(&grad, "loss")].id].data;
      const float *g = vals[grad.outputs[ir_find_output(&grad, "x")].id].data;
      cr_expect(isnan(l[0]), "%s on backend %d: the loss is %g, not NaN", text, b, l[0]);
      for (int k = 0; k < 24; k++) cr_expect_eq(g[k], 0.0f, "backend %d: d loss / d x[%d] is %g", b, k, g[k]);
      free_vals(&grad, vals);
    }
    ir_graph_free(&grad);
    fe_model_free(&m);
  }
}

/* layer_norm's eps is a scalar-family attribute; the optimizers' eps
 * (a hyperparameter) must still be found by name past it. */
Test(seq_ops, optimizer_eps_is_the_hyperparameter) {
  cr_expect_eq(ir_attr_hp_index("eps"), HP_EPS);
  Attrs a = ir_attrs_default(OP_LAYER_NORM);
  cr_expect_eq(a.scalar.f, 1e-5);
  cr_expect_eq(a.scalar.mode, 1);
  cr_expect_eq(ir_attrs_default(OP_ADAM_STEP).hyper.hp[HP_EPS], 1e-8);
}
