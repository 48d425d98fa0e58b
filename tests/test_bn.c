/*
 * test_bn.c — batch norm and dropout in their two modes.
 *
 * Batch norm against PyTorch (gen_bn_fixtures.py): train mode — the
 * output with batch statistics, the gradients of sum(y * w) with respect
 * to x, weight and bias, and the running statistics after the step — and
 * eval mode with given running statistics; each through the interpreter
 * and the C backend, to 1e-4 relative to the tensor's scale.  The training
 * form is what passes/decompose.c writes (primitives plus running_update
 * effects), so this also checks that decomposition against torch.
 *
 * Dropout: inverted (kept values scaled by 1/(1-p)), about a fraction p
 * dropped, the same mask in forward and backward, a new mask each step,
 * identical masks from the interpreter and the C backend, and the
 * identity in inference mode.
 */
#include <criterion/criterion.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/graph_run.h"
#include "tests/testutil.h"

static RtTensor fixture(const char *c, const char *name) {
  char path[512];
  RtTensor t;
  RtError err;
  snprintf(path, sizeof path, "%s/%s.%s.npy", FIXTURE("bn"), c, name);
  cr_assert_eq(rt_npy_read(path, &t, &err), RT_OK, "%s", err.msg);
  return t;
}

static void expect_close(const char *what, const RtTensor *got, const RtTensor *want, double tol) {
  cr_assert_eq(rt_tensor_numel(got), rt_tensor_numel(want), "%s: sizes differ", what);
  int64_t n = rt_tensor_numel(want);
  double worst = 0;
  for (int64_t i = 0; i < n; i++) worst = fmax(worst, tu_normerr(got->data, want->data, n, i));
  cr_expect(worst <= tol, "%s: norm-wise error %g", what, worst);
}

/* A model "y = batchnorm(x)" with loss sum(y * w), built from source. */
static void load_model(Model *m, const RtTensor *x, Diags *d) {
  char src[512], shape[64];
  if (x->rank == 4)
    snprintf(shape, sizeof shape, "N, %lld, %lld, %lld", (long long)x->shape[1], (long long)x->shape[2], (long long)x->shape[3]);
  else
    snprintf(shape, sizeof shape, "N, %lld", (long long)x->shape[1]);
  snprintf(src, sizeof src,
           "input x: f32[%s]\ninput w: f32[%s]\nbn = batchnorm(x)\noutput bn\n"
           "train {\n  loss = sum(bn * w)\n  optimizer = sgd(lr=0.1)\n}\n",
           shape, shape);
  diag_init(d, stderr);
  cr_assert_eq(fe_load_string(m, "bn.dl", src, d), 0);
  m->g.syms[0].max = x->shape[0];
}

/* Train-mode forward and gradients, and the running statistics after it. */
static void check_train(const char *c, int backend) {
  Model m;
  Diags d;
  RtTensor x = fixture(c, "x"), w = fixture(c, "w");
  load_model(&m, &x, &d);
  Graph g;
  ir_graph_init(&g, "bn", &d);
  int *map = malloc(sizeof(int) * (size_t)m.g.nnodes);
  DecomposeOpts o = {1, 0};
  cr_assert_eq(pass_decompose(&m.g, &g, map, &o), 0);
  int wrt[3] = {ir_find_input(&g, "x"), ir_find_param(&g, "bn.weight"), ir_find_param(&g, "bn.bias")}, grads[3];
  cr_assert_eq(pass_autodiff(&g, map[m.train.loss], wrt, 3, grads), 0);
  ir_output(&g, "dx", grads[0]);
  ir_output(&g, "dweight", grads[1]);
  ir_output(&g, "dbias", grads[2]);
  cr_assert_eq(ir_verify(&g, &d), 0);
  RtTensor *vals = calloc((size_t)g.nnodes, sizeof *vals);
  vals[ir_find_input(&g, "x")] = x;
  vals[ir_find_input(&g, "w")] = w;
  vals[ir_find_param(&g, "bn.weight")] = fixture(c, "weight");
  vals[ir_find_param(&g, "bn.bias")] = fixture(c, "bias");
  RtTensor rm, rv;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&rm, DT_F32, 1, x.shape + 1, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&rv, DT_F32, 1, x.shape + 1, &err), RT_OK);
  for (int64_t i = 0; i < x.shape[1]; i++) ((float *)rv.data)[i] = 1;
  vals[ir_find_param(&g, "bn.running_mean")] = rm;
  vals[ir_find_param(&g, "bn.running_var")] = rv;
  run_graph(&g, vals, x.shape[0], backend);
  static const char *const outs[4] = {"bn", "dx", "dweight", "dbias"}, *const want_names[4] = {"y", "dx", "dweight", "dbias"};
  for (int k = 0; k < 4; k++) {
    RtTensor want = fixture(c, want_names[k]);
    expect_close(outs[k], &vals[g.outputs[ir_find_output(&g, outs[k])].id], &want, 1e-4);
    rt_tensor_free(&want);
  }
  RtTensor wm = fixture(c, "running_mean"), wv = fixture(c, "running_var");
  expect_close("running_mean", &vals[ir_find_param(&g, "bn.running_mean")], &wm, 1e-5);
  expect_close("running_var", &vals[ir_find_param(&g, "bn.running_var")], &wv, 1e-5);
  rt_tensor_free(&wm), rt_tensor_free(&wv);
  for (int i = 0; i < g.nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
  free(map);
  ir_graph_free(&g);
  fe_model_free(&m);
}

Test(bn, train_mode_matches_pytorch_interp) { check_train("bn2d", 0), check_train("bn1d", 0); }
Test(bn, train_mode_matches_pytorch_c, .timeout = 60) { check_train("bn2d", 1), check_train("bn1d", 1); }
Test(bn, train_mode_matches_pytorch_jit, .timeout = 60) { check_train("bn2d", 2), check_train("bn1d", 2); }

/* Eval mode: the batchnorm op itself, with the running statistics. */
static void check_eval(const char *c, int backend) {
  Model m;
  Diags d;
  RtTensor x = fixture(c, "x");
  load_model(&m, &x, &d);
  pass_dce(&m.g);
  Graph *g = &m.g;
  RtTensor *vals = calloc((size_t)g->nnodes, sizeof *vals);
  vals[ir_find_input(g, "x")] = x;
  vals[ir_find_param(g, "bn.weight")] = fixture(c, "weight");
  vals[ir_find_param(g, "bn.bias")] = fixture(c, "bias");
  vals[ir_find_param(g, "bn.running_mean")] = fixture(c, "eval_rm");
  vals[ir_find_param(g, "bn.running_var")] = fixture(c, "eval_rv");
  run_graph(g, vals, x.shape[0], backend);
  RtTensor want = fixture(c, "eval_y");
  expect_close("eval y", &vals[g->outputs[0].id], &want, 1e-5);
  rt_tensor_free(&want);
  for (int i = 0; i < g->nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
  fe_model_free(&m);
}

Test(bn, eval_mode_matches_pytorch, .timeout = 60) {
  check_eval("bn2d", 0), check_eval("bn1d", 0);
  check_eval("bn2d", 1), check_eval("bn1d", 1);
}

/* --- dropout ------------------------------------------------------------------------ */

/* dropout_train of x = 1 (so y is the scaled mask) for a given step. */
static void dropout_mask(int64_t n, float step, int backend, RtTensor *y_out, RtTensor *dx_out) {
  Diags d;
  diag_init(&d, stderr);
  Graph g;
  ir_graph_init(&g, "drop", &d);
  Shape s = {1, {n}}, s0 = {0, {0}};
  int x = ir_input(&g, "x", DT_F32, &s, (SrcLoc){0}), st = ir_input(&g, "step", DT_F32, &s0, (SrcLoc){0});
  Attrs a = ir_attrs_default(OP_DROPOUT_TRAIN);
  a.random.p = 0.3, a.random.seed = 42, a.random.salt = 5;
  int y = ir_op(&g, OP_DROPOUT_TRAIN, (int[]){x, st}, 2, &a, (SrcLoc){0});
  ir_output(&g, "y", y);
  int loss = ir_op(&g, OP_SUM, &y, 1, NULL, (SrcLoc){0}), grad;
  cr_assert_eq(pass_autodiff(&g, loss, &x, 1, &grad), 0);
  ir_output(&g, "dx", grad);
  RtTensor *vals = calloc((size_t)g.nnodes, sizeof *vals);
  RtError err;
  int64_t shape[1] = {n};
  rt_tensor_alloc(&vals[x], DT_F32, 1, shape, &err);
  for (int64_t i = 0; i < n; i++) ((float *)vals[x].data)[i] = 1;
  rt_tensor_alloc(&vals[st], DT_F32, 0, shape, &err);
  ((float *)vals[st].data)[0] = step;
  run_graph(&g, vals, n, backend);
  *y_out = vals[g.outputs[0].id], *dx_out = vals[g.outputs[1].id];
  vals[g.outputs[0].id].data = vals[g.outputs[1].id].data = NULL;
  for (int i = 0; i < g.nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
  ir_graph_free(&g);
}

Test(dropout, inverted_masks_repeat_in_backward_and_change_each_step, .timeout = 60) {
  const int64_t n = 100000;
  RtTensor y1, d1, y2, d2, yc, dc, yj, dj;
  dropout_mask(n, 1, 0, &y1, &d1);
  dropout_mask(n, 2, 0, &y2, &d2);
  dropout_mask(n, 1, 1, &yc, &dc);
  dropout_mask(n, 1, 2, &yj, &dj);
  int64_t kept = 0, same = 0;
  for (int64_t i = 0; i < n; i++) {
    float v = ((float *)y1.data)[i];
    cr_assert(v == 0 || fabsf(v - 1 / 0.7f) < 1e-6f, "element %lld is %g", (long long)i, (double)v);
    cr_assert_eq(v, ((float *)d1.data)[i], "the gradient's mask differs at %lld", (long long)i);
    cr_assert_eq(v, ((float *)yc.data)[i], "the C backend's mask differs at %lld", (long long)i);
    cr_assert_eq(v, ((float *)yj.data)[i], "the JIT's mask differs at %lld", (long long)i);
    kept += v != 0;
    same += (v != 0) == (((float *)y2.data)[i] != 0);
  }
  /* kept ~ Binomial(n, 0.7): 5 standard deviations is about 0.0072 */
  cr_expect(fabs((double)kept / n - 0.7) < 0.0075, "kept fraction %g", (double)kept / n);
  /* two independent masks agree on p^2 + (1-p)^2 = 0.58 of the elements */
  cr_expect(fabs((double)same / n - 0.58) < 0.01, "masks of two steps agree on %g", (double)same / n);
  rt_tensor_free(&y1), rt_tensor_free(&d1), rt_tensor_free(&y2), rt_tensor_free(&d2);
  rt_tensor_free(&yc), rt_tensor_free(&dc), rt_tensor_free(&yj), rt_tensor_free(&dj);
}

Test(dropout, inference_mode_is_the_identity) {
  Diags d;
  Model m;
  diag_init(&d, stderr);
  cr_assert_eq(fe_load_string(&m, "d.dl", "input x: f32[N, 5]\ny = dropout(x, p=0.9)\noutput y\n", &d), 0);
  m.g.syms[0].max = 2;
  RtTensor *vals = calloc((size_t)m.g.nnodes, sizeof *vals);
  RtError err;
  int64_t shape[2] = {2, 5}, sym[IR_MAX_SYMS] = {2};
  rt_tensor_alloc(&vals[0], DT_F32, 2, shape, &err);
  for (int i = 0; i < 10; i++) ((float *)vals[0].data)[i] = (float)i;
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&m.g, vals, sym, &io, &err), RT_OK, "%s", err.msg);
  for (int i = 0; i < 10; i++) cr_expect_eq(((float *)vals[m.g.outputs[0].id].data)[i], (float)i);
  for (int i = 0; i < m.g.nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
  fe_model_free(&m);
}

/* --- folding ------------------------------------------------------------------------ */

/* Inference outputs of the model in src before and after folding its batch
 * norms into the layers before them, with random weights and statistics. */
static void check_fold(const char *src, int want_folded) {
  Diags d;
  Model m;
  diag_init(&d, stderr);
  cr_assert_eq(fe_load_string(&m, "fold.dl", src, &d), 0);
  m.g.syms[0].max = 3;
  pass_dce(&m.g);
  RtTensorSet params;
  RtError err;
  rt_set_init(&params);
  cr_assert_eq(ir_params_init(&m.g, 3, &params, &err), RT_OK);
  RtRng r;
  rt_rng_seed(&r, 9);
  for (int i = 0; i < params.count; i++) /* statistics and affine terms far from 0 and 1 */
    for (int64_t k = 0; k < rt_tensor_numel(&params.items[i].t); k++) {
      float *v = (float *)params.items[i].t.data + k;
      if (strstr(params.items[i].name, "running_var")) *v = (float)(0.5 + rt_rng_uniform(&r));
      else if (strstr(params.items[i].name, "bn")) *v = (float)(rt_rng_uniform(&r) * 2 - 0.5);
    }
  int64_t sym[IR_MAX_SYMS] = {3};
  RtTensor out[2];
  for (int pass = 0; pass < 2; pass++) {
    Graph folded, *g = &m.g;
    if (pass) {
      ir_graph_init(&folded, "folded", &d);
      cr_assert_eq(pass_fold_batchnorm(&m.g, &folded, &params), want_folded);
      cr_assert_eq(ir_verify(&folded, &d), 0);
      int before = 0, after = 0;
      for (int i = 0; i < m.g.nnodes; i++) before += m.g.nodes[i].op == OP_BATCHNORM;
      for (int i = 0; i < folded.nnodes; i++) after += folded.nodes[i].op == OP_BATCHNORM;
      cr_expect_eq(after, before - want_folded, "%d batch norms left of %d", after, before);
      g = &folded;
    }
    RtTensor *vals = calloc((size_t)g->nnodes + 1, sizeof *vals);
    for (int i = 0; i < g->nnodes; i++) {
      const Node *n = &g->nodes[i];
      if (n->op == OP_PARAM) vals[i] = *rt_set_find(&params, n->name);
      if (n->op != OP_INPUT) continue;
      int64_t shape[IR_MAX_RANK];
      for (int k = 0; k < n->shape.rank; k++) shape[k] = ir_dim_value(g, n->shape.d[k], sym);
      rt_tensor_alloc(&vals[i], DT_F32, n->shape.rank, shape, &err);
      RtRng xr;
      rt_rng_seed(&xr, 4);
      for (int64_t k = 0; k < rt_tensor_numel(&vals[i]); k++) ((float *)vals[i].data)[k] = (float)rt_rng_normal(&xr);
    }
    InterpOpts io = {0, 0};
    cr_assert_eq(ir_interp(g, vals, sym, &io, &err), RT_OK, "%s", err.msg);
    out[pass] = vals[g->outputs[0].id];
    vals[g->outputs[0].id].data = NULL;
    for (int i = 0; i < g->nnodes; i++)
      if (g->nodes[i].op != OP_PARAM) rt_tensor_free(&vals[i]);
    free(vals);
    if (pass) ir_graph_free(&folded);
  }
  expect_close("folded output", &out[1], &out[0], 1e-5);
  rt_tensor_free(&out[0]), rt_tensor_free(&out[1]);
  rt_set_free(&params);
  fe_model_free(&m);
}

Test(bn, folding_into_dense_and_conv_preserves_outputs) {
  check_fold("input x: f32[N, 6]\nfc = dense(x, 5)\nbn = batchnorm(fc)\ny = relu(bn)\noutput y\n", 1);
  check_fold("input x: f32[N, 6]\nfc = dense(x, 5, bias=false)\nbn = batchnorm(fc)\noutput bn\n", 1);
  check_fold("input x: f32[N, 2, 7, 7]\nc1 = conv2d(x, 4, 3, padding=1)\nbn = batchnorm(c1)\n"
             "r = relu(bn)\nc2 = conv2d(r, 3, 3, bias=false)\nbn2 = batchnorm(c2)\noutput bn2\n", 2);
  /* a layer output used twice cannot be folded */
  check_fold("input x: f32[N, 6]\nfc = dense(x, 5)\nbn = batchnorm(fc)\ny = bn + fc\noutput y\n", 0);
}
