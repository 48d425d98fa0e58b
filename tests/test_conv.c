/*
 * test_conv.c — convolution, pooling, upsample and pad: their gradients
 * against PyTorch's, and the layers and calls that build them.
 *
 * 1. Gradients.  Every case of op_cases.h that has gradient fixtures
 *    (gen_op_fixtures.py writes CASE.grad<i>.npy, torch.autograd's
 *    gradient of sum(out * CASE.wout.npy) with respect to operand i, in
 *    float64) becomes the loss sum(out * wout); pass_build_grads
 *    differentiates it with respect to every input, and the interpreter
 *    and the C backend (all cases as functions of one program) must give
 *    PyTorch's gradients to 1e-5 of each gradient's largest magnitude
 *    (tu_normerr: the backend sums in float, and elements that come out of
 *    cancellation are judged against the scale of the result).  Max
 *    pooling's fixtures use distinct values, so the arg-max is unambiguous.
 * 2. The frontend.  conv2d, conv1d and conv_transpose2d layers create
 *    weights in PyTorch's layout; a call whose second argument is a tensor
 *    is the primitive op instead.
 * 3. A small CNN end to end: its training gradients from the C backend
 *    agree with the interpreter's.
 */
#include <criterion/criterion.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/op_cases.h"
#include "tests/testutil.h"

#define GRAD_TOL 1e-5
#define FAST_CFLAGS "-O1 -Wall -Wextra -pedantic -Werror"

static int read_npy(const char *name, const char *part, RtTensor *t, int must) {
  char path[512];
  RtError err;
  snprintf(path, sizeof path, "%s/%s.%s.npy", FIXTURE("ops"), name, part);
  if (!must && access(path, R_OK) != 0) return -1;
  cr_assert_eq(rt_npy_read(path, t, &err), RT_OK, "%s", err.msg);
  return 0;
}

/* --- gradient cases --------------------------------------------------------------- */

typedef struct ConvCase {
  const OpCase *c;
  Diags d;
  Graph fwd, grad;
  int nin;                      /* the case's operands, then w */
  RtTensor in[OPCASE_MAX_IN + 1];
  int64_t sym[IR_MAX_SYMS];
  RtTensor *vals;               /* the interpreter's values of grad */
} ConvCase;

/* Builds loss = sum(op(in0, ..) * w) and its gradient graph, and runs the
 * gradient graph in the interpreter; 0, or -1 when c has no gradient
 * fixtures. */
static int cc_build(ConvCase *cc, const OpCase *c) {
  RtError err;
  SrcLoc loc = {0};
  memset(cc, 0, sizeof *cc);
  cc->c = c;
  if (read_npy(c->name, "wout", &cc->in[c->nin], 0)) return -1;
  for (int i = 0; i < c->nin; i++) {
    char part[16];
    snprintf(part, sizeof part, "in%d", i);
    read_npy(c->name, part, &cc->in[i], 1);
  }
  cc->nin = c->nin + 1;
  diag_init(&cc->d, stderr);
  ir_graph_init(&cc->fwd, c->name, &cc->d);
  int op = opcase_build(c, &cc->fwd, cc->in);
  cr_assert_geq(op, 0, "%s does not build", c->name);
  int w = ir_input(&cc->fwd, "w", DT_F32, &cc->fwd.nodes[op].shape, loc);
  int prod = ir_op(&cc->fwd, OP_MUL, (int[]){op, w}, 2, NULL, loc);
  Attrs all = ir_attrs_default(OP_SUM);
  int loss = ir_op(&cc->fwd, OP_SUM, &prod, 1, &all, loc);
  cr_assert_geq(loss, 0);
  ir_output(&cc->fwd, "loss", loss);
  ir_graph_init(&cc->grad, c->name, &cc->d);
  cr_assert_eq(pass_build_grads(&cc->fwd, loss, 0, 1, &(DecomposeOpts){0, 0}, &cc->grad), 0, "%s: pass_build_grads fails", c->name);
  cr_assert_eq(ir_verify(&cc->grad, &cc->d), 0, "%s: the gradient graph does not verify", c->name);
  cc->vals = calloc((size_t)cc->grad.nnodes, sizeof *cc->vals);
  for (int i = 0; i < cc->nin; i++) {
    char name[16];
    snprintf(name, sizeof name, "in%d", i);
    int id = ir_find_input(&cc->grad, i < c->nin ? name : "w");
    cr_assert_geq(id, 0);
    cc->vals[id] = cc->in[i];
  }
  cr_assert_eq(ir_bind_symbols(&cc->grad, cc->vals, cc->sym, &err), RT_OK, "%s: %s", c->name, err.msg);
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&cc->grad, cc->vals, cc->sym, &io, &err), RT_OK, "%s: %s", c->name, err.msg);
  return 0;
}

static void cc_free(ConvCase *cc) {
  for (int i = 0; i < cc->grad.nnodes; i++)
    if (cc->grad.nodes[i].op != OP_INPUT) rt_tensor_free(&cc->vals[i]);
  free(cc->vals);
  for (int i = 0; i < cc->nin; i++) rt_tensor_free(&cc->in[i]);
  ir_graph_free(&cc->grad);
  ir_graph_free(&cc->fwd);
}

/* Gradient output o of cc (values got) against CASE.grad<i>.npy, for
 * every operand i of the case. */
static void expect_torch_grads(ConvCase *cc, const char *what, const RtTensor *const *got) {
  for (int i = 0; i < cc->c->nin; i++) {
    char part[16], name[16], b1[64], b2[64];
    snprintf(part, sizeof part, "grad%d", i);
    snprintf(name, sizeof name, "in%d", i);
    RtTensor want;
    if (cc->in[i].dtype != DT_F32) continue; /* class indices have no gradient */
    read_npy(cc->c->name, part, &want, 1);
    int o = ir_find_output(&cc->grad, name);
    cr_assert_geq(o, 0, "%s: no gradient for %s", cc->c->name, name);
    const RtTensor *g = got[o];
    rt_shape_str(b1, sizeof b1, g->dtype, g->rank, g->shape);
    rt_shape_str(b2, sizeof b2, want.dtype, want.rank, want.shape);
    cr_assert_str_eq(b1, b2, "%s, %s: the gradient of %s is %s, PyTorch's %s", what, cc->c->name, name, b1, b2);
    int64_t n = rt_tensor_numel(&want), at = 0;
    double worst = 0;
    for (int64_t k = 0; k < n; k++) {
      double e = tu_normerr(g->data, want.data, n, k);
      if (!(e <= worst)) worst = e, at = k;
    }
    cr_expect(worst <= GRAD_TOL, "%s, %s: d loss / d %s[%lld] is %.7g, PyTorch says %.7g (norm-wise error %.3g)", what,
              cc->c->name, name, (long long)at, (double)((const float *)g->data)[at],
              (double)((const float *)want.data)[at], worst);
    rt_tensor_free(&want);
  }
}

/* The cases with gradient fixtures, built; returns their count. */
static int build_all(ConvCase *cases) {
  int n = 0;
  for (int ci = 0; ci < OPCASE_COUNT; ci++)
    if (cc_build(&cases[n], &op_cases[ci]) == 0) n++;
  return n;
}

Test(conv, interpreter_gradients_match_pytorch, .timeout = 120) {
  ConvCase *cases = calloc(OPCASE_COUNT, sizeof *cases);
  int n = build_all(cases);
  cr_expect_geq(n, 35, "only %d cases have gradient fixtures", n);
  for (int i = 0; i < n; i++) {
    const RtTensor *got[16];
    for (int o = 0; o < cases[i].grad.noutputs; o++) got[o] = &cases[i].vals[cases[i].grad.outputs[o].id];
    expect_torch_grads(&cases[i], "interpreter", got);
    cc_free(&cases[i]);
  }
  free(cases);
}

Test(conv, c_backend_gradients_match_pytorch, .timeout = 300) {
  ConvCase *cases = calloc(OPCASE_COUNT, sizeof *cases);
  int n = build_all(cases);
  /* one program, one function per case; every batch symbol is symbol 0, "N" */
  Diags d;
  diag_init(&d, stderr);
  Graph header;
  ir_graph_init(&header, "conv_grads", &d);
  header.syms[ir_symbol(&header, "N", (SrcLoc){0})].max = OPCASE_N_MAX;
  Program p;
  kir_program_init(&p, &header);
  for (int i = 0; i < n; i++)
    pass_lower(&p, kir_func(&p, arena_printf(&p.arena, "g_%s", cases[i].c->name), &cases[i].grad));
  pass_schedule(&p);
  pass_memplan(&p);
  RtError err;
  CModule *m = cg_c_build(&p, FAST_CFLAGS, &err);
  cr_assert_not_null(m, "%s", err.msg);
  for (int i = 0; i < n; i++) {
    ConvCase *cc = &cases[i];
    const Func *f = &p.funcs[i];
    RtTensor out[16];
    const RtTensor *got[16];
    void *args[32];
    int o = 0;
    for (int a = 0; a < f->nargs; a++) {
      const Buffer *b = &p.bufs[f->args[a]];
      if (b->kind == BUF_INPUT) {
        args[a] = cc->vals[b->node].data;
        continue;
      }
      const RtTensor *want = &cc->vals[cc->grad.outputs[o].id];
      cr_assert_eq(rt_tensor_alloc(&out[o], want->dtype, want->rank, want->shape, &err), RT_OK);
      got[o] = &out[o];
      args[a] = out[o++].data;
    }
    int64_t sym = cc->grad.nsyms ? cc->sym[0] : 1;
    cr_assert_eq(cg_c_call(m, f->name, &sym, args, &err), RT_OK, "%s: %s", cc->c->name, err.msg);
    expect_torch_grads(cc, "C backend", got);
    for (int k = 0; k < o; k++) rt_tensor_free(&out[k]);
    cc_free(cc);
  }
  cg_c_free(m);
  kir_program_free(&p);
  ir_graph_free(&header);
  free(cases);
}

/* --- the frontend ---------------------------------------------------------------------- */

static Model model;
static Diags diags;
static char *msgs;
static size_t msglen;
static FILE *msgf;

static void setup(void) {
  msgf = open_memstream(&msgs, &msglen);
  diag_init(&diags, msgf);
  memset(&model, 0, sizeof model);
}

static void teardown(void) {
  fe_model_free(&model);
  fclose(msgf);
  free(msgs);
}

/* Loads text, which must have no errors. */
static Graph *load(const char *text) {
  int n = fe_load_string(&model, "conv.dl", text, &diags);
  fflush(msgf);
  cr_assert_eq(n, 0, "%s", msgs);
  cr_assert_eq(ir_verify(&model.g, &diags), 0);
  return &model.g;
}

static const Node *param(Graph *g, const char *name) {
  int id = ir_find_param(g, name);
  cr_assert_geq(id, 0, "no parameter %s", name);
  return &g->nodes[id];
}

static const Node *out(Graph *g, const char *name) {
  int o = ir_find_output(g, name);
  cr_assert_geq(o, 0, "no output %s", name);
  return &g->nodes[g->outputs[o].id];
}

static void expect_shape(const Node *n, int rank, const Dim *d) {
  cr_expect_eq(n->shape.rank, rank);
  for (int i = 0; i < rank && i < n->shape.rank; i++)
    cr_expect_eq(n->shape.d[i], d[i], "dimension %d is %lld, not %lld", i, (long long)n->shape.d[i], (long long)d[i]);
}

Test(conv, layers_create_weights_in_pytorch_layout, .init = setup, .fini = teardown) {
  Graph *g = load("input x: f32[N, 3, 32, 32]\ninput t: f32[N, 4, 50]\n"
                  "a = conv2d(x, 8, 3, padding=1)\n"
                  "b = conv2d(a, 8, [3, 1], stride=2, groups=8, bias=false, padding_mode=reflect, padding=[1, 0])\n"
                  "c = conv_transpose2d(b, 6, 4, stride=2, padding=1, groups=2)\n"
                  "e = conv1d(t, 5, 7, dilation=2)\n"
                  "output a\noutput b\noutput c\noutput e\n");
  expect_shape(param(g, "a.weight"), 4, (Dim[]){8, 3, 3, 3});
  expect_shape(param(g, "a.bias"), 1, (Dim[]){8});
  expect_shape(out(g, "a"), 4, (Dim[]){DIM_SYM(0), 8, 32, 32});
  expect_shape(param(g, "b.weight"), 4, (Dim[]){8, 1, 3, 1});
  cr_expect_lt(ir_find_param(g, "b.bias"), 0);
  expect_shape(out(g, "b"), 4, (Dim[]){DIM_SYM(0), 8, 16, 16});
  cr_expect_eq(out(g, "b")->attr.window.mode, PAD_REFLECT);
  cr_expect_eq(out(g, "b")->attr.window.groups, 8);
  expect_shape(param(g, "c.weight"), 4, (Dim[]){8, 3, 4, 4});
  expect_shape(out(g, "c"), 4, (Dim[]){DIM_SYM(0), 6, 32, 32});
  expect_shape(param(g, "e.weight"), 3, (Dim[]){5, 4, 7});
  expect_shape(out(g, "e"), 3, (Dim[]){DIM_SYM(0), 5, 38});
  cr_expect_eq(param(g, "a.weight")->init.kind, INIT_TORCH_DEFAULT);
}

Test(conv, a_tensor_second_argument_calls_the_op, .init = setup, .fini = teardown) {
  Graph *g = load("input x: f32[N, 2, 9, 9]\nparam k: f32[4, 2, 3, 3]\nparam kb: f32[4]\n"
                  "y = conv2d(x, k, kb, stride=2)\nz = conv2d(x, k, 1, 1)\noutput y\noutput z\n");
  const Node *y = out(g, "y"), *z = out(g, "z");
  cr_expect_eq(y->op, OP_CONV2D);
  cr_expect_eq(y->nin, 3);
  expect_shape(y, 4, (Dim[]){DIM_SYM(0), 4, 4, 4});
  cr_expect_eq(z->nin, 2, "positional attributes after the operands");
  expect_shape(z, 4, (Dim[]){DIM_SYM(0), 4, 9, 9});
  cr_expect_eq(g->nnodes, 5, "no parameters created: x, k, kb and two convolutions");
}

Test(conv, pools_pad_and_upsample_are_callable, .init = setup, .fini = teardown) {
  Graph *g = load("input x: f32[N, 3, 7, 7]\n"
                  "output a = max_pool2d(x, 3, stride=2, padding=1, ceil_mode=true)\n"
                  "output b = avg_pool2d(x, [2, 3], count_include_pad=false)\n"
                  "output c = global_avg_pool(x)\n"
                  "output d = upsample(x, [2, 1], mode=bilinear)\n"
                  "output e = pad(x, [1, 2, 0, 3], mode=replicate)\n");
  expect_shape(out(g, "a"), 4, (Dim[]){DIM_SYM(0), 3, 4, 4});
  expect_shape(out(g, "b"), 4, (Dim[]){DIM_SYM(0), 3, 3, 2});
  expect_shape(out(g, "c"), 4, (Dim[]){DIM_SYM(0), 3, 1, 1});
  expect_shape(out(g, "d"), 4, (Dim[]){DIM_SYM(0), 3, 14, 7});
  expect_shape(out(g, "e"), 4, (Dim[]){DIM_SYM(0), 3, 10, 10});
}

/* --- a small CNN end to end ---------------------------------------------------------- */

static const char *const small_cnn =
    "input x: f32[N, 1, 12, 12]\n"
    "c1 = conv2d(x, 4, 3, padding=1)\n"
    "p1 = max_pool2d(relu(c1), 2)\n"
    "c2 = conv2d(p1, 6, 3, padding=1, padding_mode=reflect, groups=2)\n"
    "p2 = avg_pool2d(relu(c2), 3, stride=2, padding=1)\n"
    "u = upsample(p2, 2, mode=bilinear)\n"
    "t = conv_transpose2d(u, 3, 3, stride=2, padding=1, output_padding=1)\n"
    "g = global_avg_pool(pad(t, [1, 1, 1, 1], mode=reflect))\n"
    "logits = dense(flatten(g), 5)\n"
    "output logits\n"
    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.1)\n}\n";

Test(conv, small_cnn_gradients_agree_between_backends, .init = setup, .fini = teardown, .timeout = 120) {
  Graph *m = load(small_cnn);
  m->syms[0].max = 3;
  Graph g;
  ir_graph_init(&g, "cnn", &diags);
  cr_assert_eq(pass_build_grads(m, model.train.loss, 1, 1, &(DecomposeOpts){1, 0}, &g), 0);
  cr_assert_eq(ir_verify(&g, &diags), 0);
  RtError err;
  RtTensorSet params;
  rt_set_init(&params);
  cr_assert_eq(ir_params_init(&g, 5, &params, &err), RT_OK, "%s", err.msg);
  RtTensor *vals = calloc((size_t)g.nnodes, sizeof *vals);
  int64_t sym[IR_MAX_SYMS] = {3};
  RtRng r;
  rt_rng_seed(&r, 3);
  for (int i = 0; i < g.nnodes; i++) {
    const Node *n = &g.nodes[i];
    if (n->op == OP_PARAM) vals[i] = *rt_set_find(&params, n->name);
    if (n->op != OP_INPUT) continue;
    int64_t shape[IR_MAX_RANK];
    for (int k = 0; k < n->shape.rank; k++) shape[k] = ir_dim_value(&g, n->shape.d[k], sym);
    cr_assert_eq(rt_tensor_alloc(&vals[i], n->dtype, n->shape.rank, shape, &err), RT_OK);
    for (int64_t k = 0; k < rt_tensor_numel(&vals[i]); k++) {
      if (n->dtype == DT_F32) ((float *)vals[i].data)[k] = (float)(2 * rt_rng_uniform(&r) - 1);
      else ((int64_t *)vals[i].data)[k] = k % 5;
    }
  }
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&g, vals, sym, &io, &err), RT_OK, "%s", err.msg);
  Program p;
  kir_program_init(&p, &g);
  pass_lower(&p, kir_func(&p, "grads", &g));
  pass_schedule(&p);
  pass_memplan(&p);
  CModule *mod = cg_c_build(&p, FAST_CFLAGS, &err);
  cr_assert_not_null(mod, "%s", err.msg);
  cr_assert_eq(cg_c_set_params(mod, &params, &err), RT_OK, "%s", err.msg);
  const Func *f = &p.funcs[0];
  void *args[64];
  RtTensor outs[32];
  int o = 0;
  cr_assert_lt(f->nargs, 64);
  for (int a = 0; a < f->nargs; a++) {
    const Buffer *b = &p.bufs[f->args[a]];
    if (b->kind == BUF_INPUT) {
      args[a] = vals[b->node].data;
      continue;
    }
    const RtTensor *want = &vals[g.outputs[o].id];
    cr_assert_eq(rt_tensor_alloc(&outs[o], want->dtype, want->rank, want->shape, &err), RT_OK);
    args[a] = outs[o++].data;
  }
  cr_assert_eq(cg_c_call(mod, "grads", sym, args, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(o, 10, "loss and the gradients of 4 weights, 4 biases and x");
  for (int k = 0; k < o; k++) {
    const RtTensor *want = &vals[g.outputs[k].id];
    int64_t n = rt_tensor_numel(want);
    double worst = 0;
    for (int64_t e = 0; e < n; e++) worst = fmax(worst, tu_normerr(outs[k].data, want->data, n, e));
    cr_expect(worst <= 1e-4, "output %s differs by %g (norm-wise)", g.outputs[k].name, worst);
    rt_tensor_free(&outs[k]);
  }
  cg_c_free(mod);
  kir_program_free(&p);
  for (int i = 0; i < g.nnodes; i++)
    if (g.nodes[i].op != OP_PARAM) rt_tensor_free(&vals[i]);
  free(vals);
  rt_set_free(&params);
  ir_graph_free(&g);
}
