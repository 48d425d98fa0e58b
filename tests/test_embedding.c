/*
 * test_embedding.c — the embedding layer against torch.nn.Embedding
 * (tests/fixtures/gen_embedding_fixtures.py): the output, the loss
 * sum(e * e * c) and the weight's gradient with repeated ids (they add
 * up) and with padding_idx (its row reads as stored and gets no
 * gradient); the gradient against finite differences; the C backend and
 * the JIT against the interpreter, forward and backward; the padding
 * row's initial zeros and the N(0, 1) of the rest; an id out of range
 * reported with its place in the model; the layer's argument errors.
 */
#include <criterion/criterion.h>

#include "frontend/frontend.h"
#include "tests/graph_run.h"

#define MODEL(pad)                                                                       \
  "model emb\ninput ids: i64[N, 5]\ninput c: f32[N, 5, 3]\n"                              \
  "e = embedding(ids, 7, 3" pad ") as emb\noutput e\noutput loss = sum(e * e * c)\n"

typedef struct Case {
  Model m;
  Diags d;
  RtTensor *vals;
  int grad;                 /* node of d loss / d emb.weight */
} Case;

static void fixture(const char *name, RtTensor *t) {
  char path[512];
  RtError err;
  snprintf(path, sizeof path, "%s/tests/fixtures/embedding/%s.npy", DLC_SOURCE_DIR, name);
  cr_assert_eq(rt_npy_read(path, t, &err), RT_OK, "%s", err.msg);
}

/* Loads text, adds the weight's gradient as output "d.emb.weight" and
 * fills the sources from the fixtures of case name. */
static void setup(Case *c, const char *text, const char *name) {
  diag_init(&c->d, stderr);
  cr_assert_eq(fe_load_string(&c->m, "emb.dl", text, &c->d), 0);
  Graph *g = &c->m.g;
  int loss = g->outputs[ir_find_output(g, "loss")].id, w = ir_find_param(g, "emb.weight");
  cr_assert_eq(pass_autodiff(g, loss, &w, 1, &c->grad), 0);
  ir_output(g, "d.emb.weight", c->grad);
  cr_assert_eq(ir_verify(g, &c->d), 0);
  for (int k = 0; k < g->nsyms; k++) g->syms[k].max = 8;
  c->vals = calloc((size_t)g->nnodes, sizeof *c->vals);
  static const char *const src[][2] = {{"ids", "ids"}, {"c", "c"}, {"emb.weight", "weight"}};
  for (int k = 0; k < 3; k++) {
    char fx[64];
    snprintf(fx, sizeof fx, "%s_%s", name, src[k][1]);
    int id = k < 2 ? -1 : ir_find_param(g, src[k][0]);
    for (int i = 0; id < 0 && i < g->nnodes; i++)
      if (g->nodes[i].op == OP_INPUT && strcmp(g->nodes[i].name, src[k][0]) == 0) id = i;
    fixture(fx, &c->vals[id]);
  }
}

static void teardown(Case *c) {
  for (int i = 0; i < c->m.g.nnodes; i++) rt_tensor_free(&c->vals[i]);
  free(c->vals);
  fe_model_free(&c->m);
}

/* Runs the interpreter again (computed values freed first: it zeroes
 * them without freeing). */
static void rerun(Case *c) {
  for (int i = 0; i < c->m.g.nnodes; i++)
    if (c->m.g.nodes[i].op != OP_PARAM && c->m.g.nodes[i].op != OP_INPUT) rt_tensor_free(&c->vals[i]);
  run_graph(&c->m.g, c->vals, 2, 0);
}

static const RtTensor *out(Case *c, const char *name) {
  return &c->vals[c->m.g.outputs[ir_find_output(&c->m.g, name)].id];
}

static double worst(const RtTensor *got, const RtTensor *want) {
  cr_assert_eq(rt_tensor_numel(got), rt_tensor_numel(want));
  double w = 0;
  for (int64_t k = 0; k < rt_tensor_numel(want); k++)
    w = fmax(w, tu_normerr(got->data, want->data, rt_tensor_numel(want), k));
  return w;
}

static void check_torch(const char *text, const char *name) {
  Case c;
  setup(&c, text, name);
  run_graph(&c.m.g, c.vals, 2, 0);
  static const char *const pairs[][2] = {{"e", "out"}, {"loss", "loss"}, {"d.emb.weight", "grad_weight"}};
  for (int k = 0; k < 3; k++) {
    char fx[64];
    RtTensor want;
    snprintf(fx, sizeof fx, "%s_%s", name, pairs[k][1]);
    fixture(fx, &want);
    double w = worst(out(&c, pairs[k][0]), &want);
    cr_expect(w <= 1e-6, "%s: %s differs from torch's by %g", name, pairs[k][0], w);
    rt_tensor_free(&want);
  }
  teardown(&c);
}

Test(embedding, matches_torch_with_repeated_ids) { check_torch(MODEL(""), "plain"); }

Test(embedding, matches_torch_with_padding_idx) {
  check_torch(MODEL(", padding_idx=2"), "pad");
  check_torch(MODEL(", padding_idx=-5"), "pad");
}

/* The padding row's gradient is exactly zero, every other row's matches
 * central differences of the loss. */
Test(embedding, gradient_matches_finite_differences) {
  Case c;
  setup(&c, MODEL(", padding_idx=2"), "pad");
  Graph *g = &c.m.g;
  run_graph(g, c.vals, 2, 0);
  RtTensor grad = *out(&c, "d.emb.weight");
  float *gv = malloc(rt_tensor_nbytes(&grad));
  memcpy(gv, grad.data, rt_tensor_nbytes(&grad));
  float *w = c.vals[ir_find_param(g, "emb.weight")].data;
  for (int k = 0; k < 21; k++) {
    double l[2];
    float w0 = w[k];
    for (int s = 0; s < 2; s++) {
      w[k] = w0 + (s ? -1e-2f : 1e-2f);
      rerun(&c);
      l[s] = ((float *)out(&c, "loss")->data)[0];
    }
    w[k] = w0;
    double fd = (l[0] - l[1]) / 2e-2;
    if (k / 3 == 2) cr_expect_eq(gv[k], 0.0f, "the padding row's gradient [%d] is %g", k, gv[k]);
    else cr_expect(fabs(gv[k] - fd) <= 2e-3 * fmax(1, fabs(fd)), "d loss / d w[%d] = %g, differences %g", k, gv[k], fd);
  }
  free(gv);
  teardown(&c);
}

/* C and JIT compute the interpreter's output, loss and gradient. */
Test(embedding, backends_agree, .timeout = 120) {
  for (int b = 1; b <= 2; b++) {
    Case ref, c;
    setup(&ref, MODEL(", padding_idx=6"), "pad");
    run_graph(&ref.m.g, ref.vals, 2, 0);
    setup(&c, MODEL(", padding_idx=6"), "pad");
    run_graph(&c.m.g, c.vals, 2, b);
    static const char *const outs[] = {"e", "loss", "d.emb.weight"};
    for (int k = 0; k < 3; k++) {
      double w = worst(out(&c, outs[k]), out(&ref, outs[k]));
      cr_expect(w <= 1e-6, "%s: %s differs from the interpreter's by %g", b == 1 ? "C" : "JIT", outs[k], w);
    }
    teardown(&ref);
    teardown(&c);
  }
}

/* nn.Embedding's reset_parameters: N(0, 1), the padding row zero. */
Test(embedding, initialises_like_torch) {
  Model m;
  Diags d;
  diag_init(&d, stderr);
  cr_assert_eq(fe_load_string(&m, "emb.dl", "model e\ninput ids: i64[N]\ny = embedding(ids, 500, 40, padding_idx=3) as emb\noutput y\n", &d), 0);
  RtTensorSet set;
  RtError err;
  rt_set_init(&set);
  cr_assert_eq(ir_params_init(&m.g, 11, &set, &err), RT_OK);
  const RtTensor *w = rt_set_find(&set, "emb.weight");
  cr_assert(w && w->shape[0] == 500 && w->shape[1] == 40);
  const float *v = w->data;
  double s = 0, s2 = 0;
  for (int k = 0; k < 40; k++) cr_expect_eq(v[3 * 40 + k], 0.0f);
  for (int64_t k = 0; k < 500 * 40; k++) s += v[k], s2 += (double)v[k] * v[k];
  double mean = s / (499 * 40), sd = sqrt(s2 / (499 * 40) - mean * mean);
  cr_expect(fabs(mean) < 0.03 && fabs(sd - 1) < 0.03, "mean %g and std %g, not N(0, 1)", mean, sd);
  rt_set_free(&set);
  fe_model_free(&m);
}

/* An id outside the table stops the interpreter with the id, its
 * position and the layer's line. */
Test(embedding, id_out_of_range_names_its_place) {
  Case c;
  setup(&c, MODEL(""), "plain");
  cr_assert_eq(c.m.g.nodes[0].op, OP_INPUT);
  ((int64_t *)c.vals[0].data)[7] = 7;
  InterpOpts io = {0, 0};
  RtError err;
  int64_t sym[IR_MAX_SYMS] = {2};
  cr_assert_neq(ir_interp(&c.m.g, c.vals, sym, &io, &err), RT_OK);
  cr_expect(strstr(err.msg, "emb.dl:4:5: ") == err.msg && strstr(err.msg, "index 7 at position 7"), "%s", err.msg);
  teardown(&c);
}

static void expect_error(const char *text, const char *want) {
  char *msg = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&msg, &len);
  Diags d;
  diag_init(&d, f);
  Model m;
  int n = fe_load_string(&m, "bad.dl", text, &d);
  fe_model_free(&m);
  fclose(f);
  cr_expect(n > 0 && strstr(msg, want), "expected '%s', got:\n%s", want, msg);
  free(msg);
}

Test(embedding, argument_errors) {
  expect_error("model e\ninput ids: i64[N]\ny = embedding(ids, 5, 2, padding_idx=5)\noutput y\n",
               "bad.dl:3:5: error: padding_idx 5 of embedding is out of range for 5 rows");
  expect_error("model e\ninput ids: i64[N]\ny = embedding(ids, 5, 2, padding_idx=-6)\noutput y\n",
               "padding_idx -6 of embedding is out of range");
  expect_error("model e\ninput ids: i64[N]\ny = embedding(ids, 0, 2)\noutput y\n", "'num' of embedding");
  expect_error("model e\ninput ids: i64[N]\ny = embedding(ids, 5, 2, bias_init=zeros)\noutput y\n",
               "embedding has no bias");
  expect_error("model e\ninput x: f32[N]\ny = embedding(x, 5, 2)\noutput y\n", "index_select");
}
