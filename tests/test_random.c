/*
 * test_random.c — gradient control and the random ops.
 *
 * A model is loaded from source, decomposed in training mode (so random
 * ops read the "step" input), differentiated with respect to every
 * trainable parameter, and run on the interpreter, the C backend and the
 * JIT with the same deterministic inputs and parameters.
 *
 * stop_gradient (detach): the identity forward; a parameter reached only
 * through it gets no gradient, one reached also another way gets only
 * that way's; every backend agrees.
 */
#include <criterion/criterion.h>

#include "frontend/frontend.h"
#include "tests/graph_run.h"
#include "tests/testutil.h"

#define MAX_WRT 16

typedef struct TGraph {
  Model m;
  Diags d;
  Graph g;
  int nwrt, wrt[MAX_WRT], grads[MAX_WRT];
} TGraph;

/* The training graph of src (decomposed with seed), with an output
 * "d.NAME" for each trainable parameter that gets a gradient. */
static void train_graph(TGraph *t, const char *src, uint64_t seed) {
  diag_init(&t->d, stderr);
  cr_assert_eq(fe_load_string(&t->m, "t.dl", src, &t->d), 0, "the model does not load");
  for (int i = 0; i < t->m.g.nsyms; i++) t->m.g.syms[i].max = 64;
  ir_graph_init(&t->g, "t", &t->d);
  int *map = malloc(sizeof(int) * (size_t)t->m.g.nnodes);
  DecomposeOpts o = {1, seed};
  cr_assert_eq(pass_decompose(&t->m.g, &t->g, map, &o), 0);
  t->nwrt = 0;
  for (int i = 0; i < t->g.nnodes; i++)
    if (t->g.nodes[i].op == OP_PARAM && !t->g.nodes[i].frozen) t->wrt[t->nwrt++] = i;
  cr_assert_eq(pass_autodiff(&t->g, map[t->m.train.loss], t->wrt, t->nwrt, t->grads), 0);
  ir_output(&t->g, "loss", map[t->m.train.loss]);
  for (int k = 0; k < t->nwrt; k++)
    if (t->grads[k] >= 0)
      ir_output(&t->g, arena_printf(&t->g.arena, "d.%s", t->g.nodes[t->wrt[k]].name), t->grads[k]);
  cr_assert_eq(ir_verify(&t->g, &t->d), 0);
  free(map);
}

static void train_graph_free(TGraph *t) {
  ir_graph_free(&t->g);
  fe_model_free(&t->m);
}

/* Deterministic values in [-1, 1) for source i (an LCG seeded by its id). */
static void fill_source(RtTensor *v, int i) {
  uint64_t s = 0x9E3779B97F4A7C15u * (uint64_t)(i + 1);
  for (int64_t k = 0; k < rt_tensor_numel(v); k++) {
    s = s * 6364136223846793005u + 1442695040888963407u;
    ((float *)v->data)[k] = (float)((double)(s >> 40) / 8388608.0 - 1.0);
  }
}

/* Values for every source of g with N = n: inputs and parameters from
 * fill_source, the step input = step. */
static RtTensor *graph_sources(const Graph *g, int64_t n, float step) {
  RtTensor *vals = calloc((size_t)g->nnodes, sizeof *vals);
  int64_t sym[IR_MAX_SYMS] = {n};
  RtError err;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *nd = &g->nodes[i];
    if (nd->op != OP_INPUT && nd->op != OP_PARAM) continue;
    int64_t shape[IR_MAX_RANK];
    for (int k = 0; k < nd->shape.rank; k++) shape[k] = ir_dim_value(g, nd->shape.d[k], sym);
    cr_assert_eq(rt_tensor_alloc(&vals[i], nd->dtype, nd->shape.rank, shape, &err), RT_OK, "%s", err.msg);
    if (nd->op == OP_INPUT && strcmp(nd->name, "step") == 0)
      ((float *)vals[i].data)[0] = step;
    else
      fill_source(&vals[i], i);
  }
  return vals;
}

static void free_vals(const Graph *g, RtTensor *vals) {
  for (int i = 0; i < g->nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
}

static const RtTensor *out_val(const Graph *g, const RtTensor *vals, const char *name) {
  int o = ir_find_output(g, name);
  cr_assert_geq(o, 0, "no output %s", name);
  return &vals[g->outputs[o].id];
}

/* Runs t's graph on backend with N = n at step; returns the values. */
static RtTensor *run_train(TGraph *t, int64_t n, float step, int backend) {
  RtTensor *vals = graph_sources(&t->g, n, step);
  run_graph(&t->g, vals, n, backend);
  return vals;
}

/* Output name of b agrees with a's to tol, norm-wise. */
static void expect_agree(const Graph *g, const RtTensor *a, const RtTensor *b, const char *name, double tol) {
  const RtTensor *x = out_val(g, a, name), *y = out_val(g, b, name);
  int64_t n = rt_tensor_numel(x);
  cr_assert_eq(n, rt_tensor_numel(y));
  double worst = 0;
  for (int64_t i = 0; i < n; i++) worst = fmax(worst, tu_normerr(y->data, x->data, n, i));
  cr_expect(worst <= tol, "%s: norm-wise error %g", name, worst);
}

/* --- stop_gradient ------------------------------------------------------------------ */

/* The model with fc2 wrapped in wrap ("stop_gradient" or "" for none). */
static const char *sg_model(const char *wrap) {
  static char src[512];
  snprintf(src, sizeof src,
           "input x: f32[N, 4]\n"
           "fc1 = dense(x, 3)\n"
           "fc2 = dense(x, 3)\n"
           "fc3 = dense(x, 3)\n"
           "y = fc1 + %s(fc2) + detach(fc3) * fc3\n"
           "output y\n"
           "train {\n  label t: f32[N, 3]\n  loss = mse_loss(y, t)\n  optimizer = sgd(lr=0.1)\n}\n",
           wrap);
  return src;
}

static int grad_of(const TGraph *t, const char *param) {
  for (int k = 0; k < t->nwrt; k++)
    if (strcmp(t->g.nodes[t->wrt[k]].name, param) == 0) return t->grads[k];
  cr_assert_fail("no parameter %s", param);
  return -1;
}

Test(stop_gradient, blocks_the_gradient_of_its_operand) {
  TGraph t;
  train_graph(&t, sg_model("stop_gradient"), 0);
  cr_expect_geq(grad_of(&t, "fc1.weight"), 0);
  cr_expect_eq(grad_of(&t, "fc2.weight"), -1, "a parameter reached only through stop_gradient has a gradient");
  cr_expect_eq(grad_of(&t, "fc2.bias"), -1);
  cr_expect_geq(grad_of(&t, "fc3.weight"), 0);
  train_graph_free(&t);
}

/* Without stop_gradient the same model differentiates into fc2: the check
 * above is about the op, not about the harness. */
Test(stop_gradient, control_without_it_fc2_gets_a_gradient) {
  TGraph t;
  train_graph(&t, sg_model(""), 0);
  cr_expect_geq(grad_of(&t, "fc2.weight"), 0);
  train_graph_free(&t);
}

/* d(detach(z) * z)/dz is detach(z) = z: fc3's gradient is that of a loss
 * with z * const, checked against the interpreter on C and JIT; the
 * forward value is the identity's. */
Test(stop_gradient, backends_agree, .timeout = 120) {
  TGraph t;
  train_graph(&t, sg_model("stop_gradient"), 0);
  RtTensor *ref = run_train(&t, 5, 1, 0);
  for (int b = 1; b <= 2; b++) {
    RtTensor *got = run_train(&t, 5, 1, b);
    expect_agree(&t.g, ref, got, "y", 1e-5);
    expect_agree(&t.g, ref, got, "loss", 1e-5);
    expect_agree(&t.g, ref, got, "d.fc1.weight", 1e-5);
    expect_agree(&t.g, ref, got, "d.fc3.weight", 1e-5);
    free_vals(&t.g, got);
  }
  free_vals(&t.g, ref);
  train_graph_free(&t);
}
