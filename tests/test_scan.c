/*
 * test_scan.c — the scan construct: a tanh RNN written with scan against
 * the same RNN written out step by step (interpreter), the interpreter
 * against the C backend and the JIT on scans with several states, a
 * reversed scan and states that swap, the emitted C of a scan not growing
 * with the number of steps, and the kernel and graph checkers on the
 * lowered scan.  Gradients (a reverse scan): against the unrolled RNN's,
 * against finite differences, the backends against the interpreter, and
 * against torch.nn.RNN (fixtures of tests/fixtures/gen_scan_fixtures.py).
 * The lstm and gru layers against torch.nn.LSTM and torch.nn.GRU, and on
 * every backend.
 */
#include <criterion/criterion.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/testutil.h"

#define FAST_CFLAGS "-O1 -Wall -Wextra -pedantic -Werror"
#define BATCH 3

/* The tanh RNN of nn.RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh). */
static char *scan_rnn(int steps) {
  static char buf[1024];
  snprintf(buf, sizeof buf,
           "model rnn\ninput x: f32[N, %d, 3]\ninput h0: f32[N, 4]\n"
           "block cell(x_t, h) {\n  ih = dense(x_t, 4)\n  hh = dense(h, 4)\n  h_new = tanh(ih + hh)\n"
           "  return h_new, h_new\n}\n"
           "hs, hT = scan(cell, x, h0, axis=1) as rnn\noutput hs\noutput hT\n", steps);
  return buf;
}

/* The same RNN with every step written out. */
static char *unrolled_rnn(int steps) {
  size_t cap = 4096 + (size_t)steps * 256, at = 0;
  char *s = malloc(cap);
  at += (size_t)snprintf(s + at, cap - at,
                         "model unrolled\ninput x: f32[N, %d, 3]\ninput h0: f32[N, 4]\n"
                         "param w_ih: f32[4, 3]\nparam b_ih: f32[4]\nparam w_hh: f32[4, 4]\nparam b_hh: f32[4]\n",
                         steps);
  for (int t = 0; t < steps; t++)
    at += (size_t)snprintf(s + at, cap - at,
                           "h%d = tanh(linear(reshape(slice(x, axis=1, start=%d, end=%d), [N, 3]), w_ih, b_ih) + "
                           "linear(h%d, w_hh, b_hh))\ns%d = reshape(h%d, [N, 1, 4])\n",
                           t + 1, t, t + 1, t, t + 1, t + 1);
  at += (size_t)snprintf(s + at, cap - at, "hs = concat(");
  for (int t = 1; t <= steps; t++) at += (size_t)snprintf(s + at, cap - at, "%ss%d", t > 1 ? ", " : "", t);
  snprintf(s + at, cap - at, ", axis=1)\noutput hs\noutput hT = h%d\n", steps);
  return s;
}

typedef struct Run {
  Model m;
  Diags d;
  RtTensor *vals;
  int nvals;                /* entries of vals: the nodes when loaded */
  RtTensorSet params;
  int64_t sym[IR_MAX_SYMS];
} Run;

static void load(Run *r, const char *text) {
  diag_init(&r->d, stderr);
  cr_assert_eq(fe_load_string(&r->m, "scan.dl", text, &r->d), 0, "the model does not load");
  cr_assert_eq(ir_verify(&r->m.g, &r->d), 0);
  for (int s = 0; s < r->m.g.nsyms; s++) r->m.g.syms[s].max = 8;
  for (int s = 0; s < IR_MAX_SYMS; s++) r->sym[s] = BATCH;
  r->nvals = 0;
  r->vals = NULL;
  rt_set_init(&r->params);
}

/* Inputs drawn from seed; params from the set (initialised first). */
static void free_vals(Run *r) {
  for (int i = 0; i < r->nvals; i++)
    if (r->m.g.nodes[i].op != OP_PARAM) rt_tensor_free(&r->vals[i]);
  free(r->vals);
}

static void run_interp(Run *r, uint64_t seed) {
  Graph *g = &r->m.g;
  RtError err;
  free_vals(r);
  r->nvals = g->nnodes;
  r->vals = calloc((size_t)r->nvals + 1, sizeof *r->vals);
  cr_assert_eq(ir_params_init(g, 7, &r->params, &err), RT_OK, "%s", err.msg);
  RtRng rng;
  rt_rng_seed(&rng, seed);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_PARAM) r->vals[i] = *rt_set_find(&r->params, n->name);
    if (n->op != OP_INPUT) continue;
    int64_t shape[IR_MAX_RANK];
    for (int k = 0; k < n->shape.rank; k++) shape[k] = ir_dim_value(g, n->shape.d[k], r->sym);
    cr_assert_eq(rt_tensor_alloc(&r->vals[i], n->dtype, n->shape.rank, shape, &err), RT_OK);
    for (int64_t k = 0; k < rt_tensor_numel(&r->vals[i]); k++)
      ((float *)r->vals[i].data)[k] = (float)(2 * rt_rng_uniform(&rng) - 1);
  }
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(g, r->vals, r->sym, &io, &err), RT_OK, "%s", err.msg);
}

static const RtTensor *output(Run *r, const char *name) { return &r->vals[r->m.g.outputs[ir_find_output(&r->m.g, name)].id]; }

static void done(Run *r) {
  free_vals(r);
  rt_set_free(&r->params);
  fe_model_free(&r->m);
}

static double worst_err(const RtTensor *got, const RtTensor *want) {
  cr_assert_eq(rt_tensor_numel(got), rt_tensor_numel(want));
  double w = 0;
  for (int64_t k = 0; k < rt_tensor_numel(want); k++)
    w = fmax(w, tu_normerr(got->data, want->data, rt_tensor_numel(want), k));
  return w;
}

/* Lowered, scheduled and planned, as the pipelines do; both checkers pass. */
static void lower(Program *p, Graph *g) {
  Diags d;
  diag_init(&d, stderr);
  pass_dce(g);
  cr_assert_eq(ir_verify(g, &d), 0);
  kir_program_init(p, g);
  pass_lower(p, kir_func(p, "forward", g));
  pass_schedule(p);
  pass_memplan(p);
  cr_assert_eq(kir_verify(p, &d), 0, "the lowered scan does not verify");
}

/* Runs the forward function of m on r's inputs and params; compares
 * every output with the interpreter's. */
static void check_backend(Run *r, CModule *(*build)(const Program *, RtError *), const char *what) {
  Graph *g = &r->m.g;
  Program p;
  lower(&p, g);
  RtError err;
  CModule *mod = build(&p, &err);
  cr_assert_not_null(mod, "%s: %s", what, err.msg);
  cr_assert_eq(cg_c_set_params(mod, &r->params, &err), RT_OK, "%s", err.msg);
  const Func *f = &p.funcs[0];
  void *args[64];
  RtTensor outs[32];
  cr_assert(f->nargs <= 64 && g->noutputs <= 32);
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &p.bufs[f->args[i]];
    if (b->kind == BUF_INPUT) {
      args[i] = r->vals[b->node].data;
      continue;
    }
    int o = ir_find_output(g, b->name);
    const RtTensor *want = &r->vals[g->outputs[o].id];
    cr_assert_eq(rt_tensor_alloc(&outs[o], want->dtype, want->rank, want->shape, &err), RT_OK);
    args[i] = outs[o].data;
  }
  cr_assert_eq(cg_c_call(mod, "forward", r->sym, args, &err), RT_OK, "%s", err.msg);
  for (int o = 0; o < g->noutputs; o++) {
    double w = worst_err(&outs[o], &r->vals[g->outputs[o].id]);
    cr_expect(w <= 1e-5, "%s: output %s differs by %g", what, g->outputs[o].name, w);
    rt_tensor_free(&outs[o]);
  }
  cg_c_free(mod);
  kir_program_free(&p);
}

static CModule *build_c(const Program *p, RtError *err) { return cg_c_build(p, FAST_CFLAGS, err); }

/* Every backend on one model: C and JIT against the interpreter. */
static void check_backends(const char *text) {
  Run r;
  load(&r, text);
  run_interp(&r, 5);
  check_backend(&r, build_c, "C");
  check_backend(&r, cg_jit_build, "JIT");
  done(&r);
}

Test(scan, rnn_matches_the_unrolled_rnn) {
  static const char *names[][2] = {
      {"rnn.ih.weight", "w_ih"}, {"rnn.ih.bias", "b_ih"}, {"rnn.hh.weight", "w_hh"}, {"rnn.hh.bias", "b_hh"}};
  Run s, u;
  load(&s, scan_rnn(6));
  run_interp(&s, 3);
  char *text = unrolled_rnn(6);
  load(&u, text);
  free(text);
  RtError err;
  for (int k = 0; k < 4; k++) {
    const RtTensor *w = rt_set_find(&s.params, names[k][0]);
    cr_assert_not_null(w, "no parameter %s", names[k][0]);
    cr_assert_eq(rt_set_add_copy(&u.params, names[k][1], w, &err), RT_OK, "%s", err.msg);
  }
  run_interp(&u, 3);
  for (int o = 0; o < 2; o++) {
    const char *name = o ? "hT" : "hs";
    double w = worst_err(output(&s, name), output(&u, name));
    cr_expect(w <= 1e-6, "%s differs from the unrolled RNN's by %g", name, w);
  }
  done(&s);
  done(&u);
}

Test(scan, rnn_backends_agree, .timeout = 120) { check_backends(scan_rnn(7)); }

/* Two states, a per-step output that is not a state, a reversed scan
 * along axis 0, states returned swapped, and a state-only scan. */
Test(scan, general_scans_backends_agree, .timeout = 240) {
  check_backends("model m\ninput x: f32[5, N, 3]\ninput h0: f32[N, 4]\ninput c0: f32[N, 4]\n"
                 "block cell(x_t, h, c) {\n  g = dense(x_t, 4)\n  r = dense(h, 4)\n  c_new = sigmoid(g) * c + tanh(r)\n"
                 "  h_new = tanh(c_new) * 0.5\n  y = dense(h_new, 2)\n  return y, h_new, c_new\n}\n"
                 "ys, hT, cT = scan(cell, x, h0, c0, reverse=true) as lstm\n"
                 "output ys\noutput hT\noutput cT\n");
  check_backends("model m\ninput x: f32[N, 4, 2]\ninput a0: f32[N, 2]\ninput b0: f32[N, 2]\n"
                 "block swap(x_t, a, b) {\n  return a + x_t, b, a\n}\n"
                 "ys, aT, bT = scan(swap, x, a0, b0, axis=1)\noutput ys\noutput aT\noutput bT\n");
  check_backends("model m\ninput x: f32[N, 3, 2]\ninput s0: f32[N, 2]\n"
                 "block acc(x_t, s) {\n  return s * 0.5 + x_t\n}\n"
                 "sT = scan(acc, x, s0, axis=-2)\noutput sT\n");
}

/* The emitted C of a scan does not grow with the number of steps: only
 * the loop's extent changes.  The unrolled RNN's does. */
static size_t emitted_size(const char *text) {
  Run r;
  load(&r, text);
  Program p;
  lower(&p, &r.m.g);
  char *c = NULL, *h = NULL;
  size_t clen = 0, hlen = 0;
  FILE *cf = open_memstream(&c, &clen), *hf = open_memstream(&h, &hlen);
  EmitOpts o = {"m.h", NULL};
  cr_assert_eq(cg_emit_c(&p, cf, hf, &o, &r.d), 0);
  fclose(cf);
  fclose(hf);
  free(c);
  free(h);
  kir_program_free(&p);
  done(&r);
  return clen;
}

Test(scan, emitted_c_does_not_grow_with_steps) {
  size_t s32 = emitted_size(scan_rnn(32)), s128 = emitted_size(scan_rnn(128));
  cr_expect(s128 <= s32 + 16, "the scan's C grows from %zu bytes (T = 32) to %zu (T = 128)", s32, s128);
  char *u8 = unrolled_rnn(8), *u32 = unrolled_rnn(32);
  size_t a = emitted_size(u8), b = emitted_size(u32);
  free(u8);
  free(u32);
  cr_expect(b > 2 * a, "the unrolled RNN's C should grow with the steps (%zu, %zu bytes)", a, b);
}

/* The graph dump shows the body once, under the scan. */
Test(scan, dump_shows_the_body_once) {
  Run r;
  load(&r, scan_rnn(64));
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  ir_dump(&r.m.g, f);
  fclose(f);
  cr_expect_not_null(strstr(out, "scan %0, %1, %2, %3, %4, %5 seqs=1 states=1 axis=1 : f32[]"), "%s", out);
  cr_expect_not_null(strstr(out, "  body {\n      %0 = input \"x_t\" : f32[N, 3]"), "%s", out);
  cr_expect_not_null(strstr(out, "scan_out %6 index=0 : f32[N, 64, 4]"), "%s", out);
  const char *tanh1 = strstr(out, "= tanh");
  cr_expect(tanh1 && !strstr(tanh1 + 1, "= tanh"), "one tanh in the dump:\n%s", out);
  free(out);
  done(&r);
}


/* --- gradients ---------------------------------------------------------------------------- */

/* Adds loss = sum(hs * hs) + sum(hT) (or sum(out * out) over every output)
 * as output "loss", and the gradient of each f32 input and param as an
 * output named "d.NAME".  Returns the loss node. */
static int add_grads(Run *r) {
  Graph *g = &r->m.g;
  int nout = g->noutputs, loss = -1, wrt[32], grads[32], nw = 0;
  SrcLoc at = g->nodes[g->outputs[0].id].loc;
  for (int o = 0; o < nout; o++) {
    int y = g->outputs[o].id, in[2] = {y, y};
    int sq = strcmp(g->outputs[o].name, "hT") ? ir_op(g, OP_MUL, in, 2, NULL, at) : y;
    int t = ir_op(g, OP_SUM, &sq, 1, NULL, at);
    int pair[2] = {loss, t};
    loss = loss < 0 ? t : ir_op(g, OP_ADD, pair, 2, NULL, at);
    cr_assert_geq(loss, 0);
  }
  ir_output(g, "loss", loss);
  for (int i = 0; i < g->nnodes; i++)
    if ((g->nodes[i].op == OP_PARAM || g->nodes[i].op == OP_INPUT) && g->nodes[i].dtype == DT_F32) wrt[nw++] = i;
  cr_assert_eq(pass_autodiff(g, loss, wrt, nw, grads), 0, "the gradient does not build");
  for (int k = 0; k < nw; k++) {
    cr_assert_geq(grads[k], 0, "no gradient for %s", g->nodes[wrt[k]].name);
    char name[128];
    snprintf(name, sizeof name, "d.%s", g->nodes[wrt[k]].name);
    ir_output(g, name, grads[k]);
  }
  Diags d;
  diag_init(&d, stderr);
  cr_assert_eq(ir_verify(g, &d), 0);
  return loss;
}

static const char *const rnn_names[][2] = {
    {"rnn.ih.weight", "w_ih"}, {"rnn.ih.bias", "b_ih"}, {"rnn.hh.weight", "w_hh"}, {"rnn.hh.bias", "b_hh"}};

Test(scan, gradient_matches_the_unrolled_rnn) {
  Run s, u;
  load(&s, scan_rnn(6));
  add_grads(&s);
  run_interp(&s, 3);
  char *text = unrolled_rnn(6);
  load(&u, text);
  free(text);
  add_grads(&u);
  RtError err;
  for (int k = 0; k < 4; k++)
    cr_assert_eq(rt_set_add_copy(&u.params, rnn_names[k][1], rt_set_find(&s.params, rnn_names[k][0]), &err), RT_OK);
  run_interp(&u, 3);
  static const char *pairs[][2] = {{"loss", "loss"},           {"d.x", "d.x"},       {"d.h0", "d.h0"},
                                   {"d.rnn.ih.weight", "d.w_ih"}, {"d.rnn.ih.bias", "d.b_ih"},
                                   {"d.rnn.hh.weight", "d.w_hh"}, {"d.rnn.hh.bias", "d.b_hh"}};
  for (size_t k = 0; k < sizeof pairs / sizeof *pairs; k++) {
    double w = worst_err(output(&s, pairs[k][0]), output(&u, pairs[k][1]));
    cr_expect(w <= 1e-5, "%s differs from the unrolled RNN's %s by %g", pairs[k][0], pairs[k][1], w);
  }
  done(&s);
  done(&u);
}

/* The loss of r's graph (output "loss") by the interpreter. */
static double loss_of(Run *r) {
  InterpOpts io = {0, 0};
  RtError err;
  Graph *g = &r->m.g;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op != OP_PARAM && g->nodes[i].op != OP_INPUT) rt_tensor_free(&r->vals[i]);
  cr_assert_eq(ir_interp(g, r->vals, r->sym, &io, &err), RT_OK, "%s", err.msg);
  return ((const float *)output(r, "loss")->data)[0];
}

/* Central differences of the loss along every element of every input
 * and param against its gradient output. */
static void check_fd(Run *r) {
  Graph *g = &r->m.g;
  RtTensor *grads = calloc((size_t)g->noutputs, sizeof *grads);
  for (int o = 0; o < g->noutputs; o++) {
    const RtTensor *t = &r->vals[g->outputs[o].id];
    RtError err;
    cr_assert_eq(rt_tensor_alloc(&grads[o], t->dtype, t->rank, t->shape, &err), RT_OK);
    memcpy(grads[o].data, t->data, sizeof(float) * (size_t)rt_tensor_numel(t));
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if ((n->op != OP_PARAM && n->op != OP_INPUT) || n->dtype != DT_F32) continue;
    char name[128];
    snprintf(name, sizeof name, "d.%s", n->name);
    const float *gv = grads[ir_find_output(g, name)].data;
    float *xv = r->vals[i].data;
    double worst = 0;
    int64_t at = -1;
    for (int64_t e = 0; e < rt_tensor_numel(&r->vals[i]); e++) {
      float x0 = xv[e], xp = x0 + 1e-2f, xm = x0 - 1e-2f;
      xv[e] = xp;
      double lp = loss_of(r);
      xv[e] = xm;
      double lm = loss_of(r);
      xv[e] = x0;
      double fd = (lp - lm) / ((double)xp - xm), err = fabs(gv[e] - fd) / fmax(1, fabs(fd));
      if (err > worst) worst = err, at = e;
    }
    cr_expect(worst <= 2e-3, "d loss / d %s[%lld] is %g, finite differences say otherwise (error %g)", n->name,
              (long long)at, at >= 0 ? gv[at] : 0, worst);
  }
  for (int o = 0; o < g->noutputs; o++) rt_tensor_free(&grads[o]);
  free(grads);
}

static const char *const lstm_like =
    "model m\ninput x: f32[4, N, 3]\ninput h0: f32[N, 4]\ninput c0: f32[N, 4]\n"
    "block cell(x_t, h, c) {\n  g = dense(x_t, 4)\n  r = dense(h, 4)\n  c_new = sigmoid(g) * c + tanh(r)\n"
    "  h_new = tanh(c_new) * 0.5\n  y = dense(h_new, 2)\n  return y, h_new, c_new\n}\n"
    "ys, hT, cT = scan(cell, x, h0, c0, reverse=true) as lstm\n"
    "output ys\noutput hT\noutput cT\n";

Test(scan, gradient_matches_finite_differences, .timeout = 120) {
  const char *models[] = {scan_rnn(5), lstm_like};
  char *copy = strdup(models[0]);
  models[0] = copy;
  for (int m = 0; m < 2; m++) {
    Run r;
    load(&r, models[m]);
    add_grads(&r);
    run_interp(&r, 9);
    check_fd(&r);
    done(&r);
  }
  free(copy);
}

Test(scan, gradient_backends_agree, .timeout = 240) {
  const char *models[] = {scan_rnn(7), lstm_like};
  char *copy = strdup(models[0]);
  models[0] = copy;
  for (int m = 0; m < 2; m++) {
    Run r;
    load(&r, models[m]);
    add_grads(&r);
    run_interp(&r, 5);
    check_backend(&r, build_c, "C");
    check_backend(&r, cg_jit_build, "JIT");
    done(&r);
  }
  free(copy);
}

/* The reverse scan's body is lowered once too: the training code's size
 * does not grow with the steps either. */
Test(scan, gradient_code_does_not_grow_with_steps) {
  size_t size[2];
  for (int k = 0; k < 2; k++) {
    Run r;
    load(&r, scan_rnn(k ? 128 : 32));
    add_grads(&r);
    Program p;
    lower(&p, &r.m.g);
    char *c = NULL;
    size_t clen = 0;
    FILE *cf = open_memstream(&c, &clen), *hf = fopen("/dev/null", "w");
    EmitOpts o = {"m.h", NULL};
    cr_assert_eq(cg_emit_c(&p, cf, hf, &o, &r.d), 0);
    fclose(cf);
    fclose(hf);
    free(c);
    size[k] = clen;
    kir_program_free(&p);
    done(&r);
  }
  /* what may grow: the digits of the sizes, extents and arena offsets the
   * C prints (a temporary of T * 4 floats moves the offsets after it) */
  cr_expect(size[1] <= size[0] + 64, "the gradient's C grows from %zu bytes (T = 32) to %zu (T = 128)", size[0], size[1]);
}

/* torch.nn.RNN (tanh, batch_first): outputs and gradients of
 * loss = sum(hs * hs) + sum(h_T), from tests/fixtures/gen_scan_fixtures.py. */
static void read_fixture(const char *name, RtTensor *t) {
  char path[512];
  RtError err;
  snprintf(path, sizeof path, "%s/tests/fixtures/scan/%s.npy", DLC_SOURCE_DIR, name);
  cr_assert_eq(rt_npy_read(path, t, &err), RT_OK, "%s", err.msg);
}

Test(scan, rnn_matches_torch_nn_rnn) {
  static const char *torch_names[] = {"weight_ih_l0", "bias_ih_l0", "weight_hh_l0", "bias_hh_l0"};
  Run r;
  load(&r, "model rnn\ninput x: f32[N, 6, 3]\ninput h0: f32[N, 4]\n"
           "block cell(x_t, h) {\n  ih = dense(x_t, 4)\n  hh = dense(h, 4)\n  h_new = tanh(ih + hh)\n"
           "  return h_new, h_new\n}\n"
           "hs, hT = scan(cell, x, h0, axis=1) as rnn\noutput hs\noutput hT\n");
  add_grads(&r);
  RtError err;
  for (int k = 0; k < 4; k++) {
    RtTensor t;
    read_fixture(torch_names[k], &t);
    cr_assert_eq(rt_set_add(&r.params, rnn_names[k][0], &t, &err), RT_OK, "%s", err.msg);
  }
  run_interp(&r, 1);
  Graph *g = &r.m.g;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_INPUT) {
      RtTensor t;
      read_fixture(g->nodes[i].name, &t);
      cr_assert_eq(rt_tensor_numel(&t), rt_tensor_numel(&r.vals[i]));
      memcpy(r.vals[i].data, t.data, sizeof(float) * (size_t)rt_tensor_numel(&t));
      rt_tensor_free(&t);
    }
  loss_of(&r);
  static const char *checks[][2] = {{"hs", "hs"}, {"hT", "hT"}, {"loss", "loss"}, {"d.x", "grad_x"}, {"d.h0", "grad_h0"},
                                    {"d.rnn.ih.weight", "grad_weight_ih_l0"}, {"d.rnn.ih.bias", "grad_bias_ih_l0"},
                                    {"d.rnn.hh.weight", "grad_weight_hh_l0"}, {"d.rnn.hh.bias", "grad_bias_hh_l0"}};
  for (size_t k = 0; k < sizeof checks / sizeof *checks; k++) {
    RtTensor want;
    read_fixture(checks[k][1], &want);
    double w = worst_err(output(&r, checks[k][0]), &want);
    cr_expect(w <= 1e-5, "%s differs from torch's %s by %g", checks[k][0], checks[k][1], w);
    rt_tensor_free(&want);
  }
  done(&r);
}

/* --- the recurrent layers --------------------------------------------------------------- */

/* torch.nn.LSTM and torch.nn.GRU (batch_first) against the lstm and gru
 * layers: outputs and gradients of sum(hs * hs) + sum(h_n) (+ sum(c_n)). */
static void check_layer_fixture(const char *layer, const char *text, const char *const *outs, int nouts) {
  static const char *names[] = {"weight_ih_l0", "bias_ih_l0", "weight_hh_l0", "bias_hh_l0"};
  Run r;
  load(&r, text);
  add_grads(&r);
  RtError err;
  char fx[128], pn[128];
  for (int k = 0; k < 4; k++) {
    RtTensor t;
    snprintf(fx, sizeof fx, "%s_%s", layer, names[k]);
    snprintf(pn, sizeof pn, "%s.%s", layer, names[k]);
    read_fixture(fx, &t);
    cr_assert_eq(rt_set_add(&r.params, pn, &t, &err), RT_OK, "%s", err.msg);
  }
  run_interp(&r, 1);
  Graph *g = &r.m.g;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_INPUT) {
      RtTensor t;
      snprintf(fx, sizeof fx, "%s_%s", layer, g->nodes[i].name);
      read_fixture(fx, &t);
      cr_assert_eq(rt_tensor_numel(&t), rt_tensor_numel(&r.vals[i]));
      memcpy(r.vals[i].data, t.data, sizeof(float) * (size_t)rt_tensor_numel(&t));
      rt_tensor_free(&t);
    }
  loss_of(&r);
  for (int k = 0; k < nouts; k++) {
    RtTensor want;
    const char *o = outs[k];
    if (!strncmp(o, "d.", 2) && strchr(o + 2, '.')) snprintf(fx, sizeof fx, "%s_grad_%s", layer, strchr(o + 2, '.') + 1);
    else if (!strncmp(o, "d.", 2)) snprintf(fx, sizeof fx, "%s_grad_%s", layer, o + 2);
    else snprintf(fx, sizeof fx, "%s_%s", layer, o);
    read_fixture(fx, &want);
    double w = worst_err(output(&r, o), &want);
    cr_expect(w <= 1e-5, "%s: %s differs from torch's %s by %g", layer, o, fx, w);
    rt_tensor_free(&want);
  }
  done(&r);
}

static const char *const lstm_model =
    "model m\ninput x: f32[N, 6, 3]\ninput h0: f32[N, 4]\ninput c0: f32[N, 4]\n"
    "hs, hT, cT = lstm(x, h0, c0, batch_first=true) as lstm\noutput hs\noutput hT\noutput cT\n";
static const char *const gru_model =
    "model m\ninput x: f32[N, 6, 3]\ninput h0: f32[N, 4]\n"
    "hs, hT = gru(x, h0, batch_first=true) as gru\noutput hs\noutput hT\n";

Test(scan, lstm_layer_matches_torch_nn_lstm) {
  static const char *const outs[] = {"hs", "hT", "cT", "loss", "d.x", "d.h0", "d.c0", "d.lstm.weight_ih_l0",
                                     "d.lstm.bias_ih_l0", "d.lstm.weight_hh_l0", "d.lstm.bias_hh_l0"};
  check_layer_fixture("lstm", lstm_model, outs, 11);
}

Test(scan, gru_layer_matches_torch_nn_gru) {
  static const char *const outs[] = {"hs", "hT", "loss", "d.x", "d.h0", "d.gru.weight_ih_l0",
                                     "d.gru.bias_ih_l0", "d.gru.weight_hh_l0", "d.gru.bias_hh_l0"};
  check_layer_fixture("gru", gru_model, outs, 9);
}

/* Inside a scan each body node still gets its op's schedule rule: with
 * 8 rows or more (the batch's largest value, set on the model after the
 * body was built) an LSTM's gate products run in row order against a
 * transposed copy of the weight, a derived buffer made once per change
 * of the weights, in the forward scan and in the gradient's.  (The
 * backend tests run these nests: load compiles for 8 rows, runs 3.) */
Test(scan, body_products_are_scheduled_as_layers) {
  Run r;
  load(&r, lstm_model);
  add_grads(&r);
  Program p;
  lower(&p, &r.m.g);
  int derived = 0;
  for (int b = 0; b < p.nbufs; b++)
    derived += p.bufs[b].kind == BUF_DERIVED && !strcmp(p.bufs[p.bufs[b].src].name, "lstm.weight_hh_l0");
  cr_expect_geq(derived, 1, "no transposed copy of lstm.weight_hh_l0: the gate products are not in row order");
  kir_program_free(&p);
  done(&r);
}

/* The layers on every backend, the time-major default, and relu. */
Test(scan, recurrent_layers_backends_agree, .timeout = 240) {
  check_backends(lstm_model);
  check_backends(gru_model);
  check_backends("model m\ninput x: f32[5, N, 3]\ninput h0: f32[N, 4]\n"
                 "hs, hT = rnn(x, h0, nonlinearity=relu) as rnn\noutput hs\noutput hT\n");
}

/* --- deep and bidirectional layers ------------------------------------------------------ */

/* torch.nn.RNN, LSTM and GRU with num_layers=2, bidirectional=True
 * (deep_* fixtures): outputs, h_n and c_n [4, N, 4], and the gradients of
 * the loss for x, h0, c0 and all 16 parameters. */
static void check_deep_fixture(const char *layer, int nstate) {
  char text[512], fx[128];
  snprintf(text, sizeof text,
           "model m\ninput x: f32[N, 5, 3]\ninput h0: f32[4, N, 4]\n%s"
           "hs, hT%s = %s(x, h0%s, batch_first=true, num_layers=2, bidirectional=true) as %s\n"
           "output hs\noutput hT\n%s",
           nstate == 2 ? "input c0: f32[4, N, 4]\n" : "", nstate == 2 ? ", cT" : "", layer, nstate == 2 ? ", c0" : "",
           layer, nstate == 2 ? "output cT\n" : "");
  Run r;
  load(&r, text);
  add_grads(&r);
  Graph *g = &r.m.g;
  RtError err;
  int nparams = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_PARAM) {
      RtTensor t;
      snprintf(fx, sizeof fx, "deep_%s_%s", layer, strchr(g->nodes[i].name, '.') + 1);
      read_fixture(fx, &t);
      cr_assert_eq(rt_set_add(&r.params, g->nodes[i].name, &t, &err), RT_OK, "%s", err.msg);
      nparams++;
    }
  cr_expect_eq(nparams, 16);
  run_interp(&r, 1);
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_INPUT) {
      RtTensor t;
      snprintf(fx, sizeof fx, "deep_%s_%s", layer, g->nodes[i].name);
      read_fixture(fx, &t);
      cr_assert_eq(rt_tensor_numel(&t), rt_tensor_numel(&r.vals[i]));
      memcpy(r.vals[i].data, t.data, sizeof(float) * (size_t)rt_tensor_numel(&t));
      rt_tensor_free(&t);
    }
  loss_of(&r);
  int checked = 0;
  for (int o = 0; o < g->noutputs; o++) {
    const char *name = g->outputs[o].name, *dot = strchr(name + 2, '.');
    if (!strncmp(name, "d.", 2)) snprintf(fx, sizeof fx, "deep_%s_grad_%s", layer, dot ? dot + 1 : name + 2);
    else snprintf(fx, sizeof fx, "deep_%s_%s", layer, name);
    RtTensor want;
    read_fixture(fx, &want);
    double w = worst_err(&r.vals[g->outputs[o].id], &want);
    cr_expect(w <= 1e-5, "%s: %s differs from torch's %s by %g", layer, name, fx, w);
    rt_tensor_free(&want);
    checked++;
  }
  cr_expect_eq(checked, 3 + 2 * nstate + 16);
  done(&r);
}

Test(scan, deep_bidirectional_rnn_matches_torch) { check_deep_fixture("rnn", 1); }
Test(scan, deep_bidirectional_lstm_matches_torch) { check_deep_fixture("lstm", 2); }
Test(scan, deep_bidirectional_gru_matches_torch) { check_deep_fixture("gru", 1); }

/* Without initial states the layers start from zeros, as torch does. */
static void check_zero_states(const char *layer, int nstate) {
  char text[512], fx[128];
  snprintf(text, sizeof text,
           "model m\ninput x: f32[N, 5, 3]\nhs, hT%s = %s(x, hidden_size=4, batch_first=true, num_layers=2, "
           "bidirectional=true) as %s\noutput hs\noutput hT\n%s",
           nstate == 2 ? ", cT" : "", layer, layer, nstate == 2 ? "output cT\n" : "");
  Run r;
  load(&r, text);
  Graph *g = &r.m.g;
  RtError err;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_PARAM) {
      RtTensor t;
      snprintf(fx, sizeof fx, "deep_%s_%s", layer, strchr(g->nodes[i].name, '.') + 1);
      read_fixture(fx, &t);
      cr_assert_eq(rt_set_add(&r.params, g->nodes[i].name, &t, &err), RT_OK, "%s", err.msg);
    }
  run_interp(&r, 1);
  RtTensor x;
  snprintf(fx, sizeof fx, "deep_%s_x", layer);
  read_fixture(fx, &x);
  memcpy(r.vals[0].data, x.data, rt_tensor_nbytes(&x));
  rt_tensor_free(&x);
  {
    InterpOpts io = {0, 0};
    for (int i = 0; i < g->nnodes; i++)
      if (g->nodes[i].op != OP_PARAM && g->nodes[i].op != OP_INPUT) rt_tensor_free(&r.vals[i]);
    cr_assert_eq(ir_interp(g, r.vals, r.sym, &io, &err), RT_OK, "%s", err.msg);
  }
  for (int o = 0; o < g->noutputs; o++) {
    RtTensor want;
    snprintf(fx, sizeof fx, "deep_%s_zero_%s", layer, g->outputs[o].name);
    read_fixture(fx, &want);
    double w = worst_err(&r.vals[g->outputs[o].id], &want);
    cr_expect(w <= 1e-5, "%s without initial states: %s differs from torch's by %g", layer, g->outputs[o].name, w);
    rt_tensor_free(&want);
  }
  check_backend(&r, build_c, "C");
  check_backend(&r, cg_jit_build, "JIT");
  done(&r);
}

Test(scan, layers_without_initial_states_start_at_zero, .timeout = 240) {
  check_zero_states("lstm", 2);
  check_zero_states("gru", 1);
}

/* Deep bidirectional layers with their gradients on every backend. */
Test(scan, deep_bidirectional_backends_agree, .timeout = 240) {
  Run r;
  load(&r, "model m\ninput x: f32[4, N, 3]\ninput h0: f32[4, N, 5]\ninput c0: f32[4, N, 5]\n"
           "hs, hT, cT = lstm(x, h0, c0, num_layers=2, bidirectional=true) as lstm\n"
           "output hs\noutput hT\noutput cT\n");
  add_grads(&r);
  run_interp(&r, 5);
  check_backend(&r, build_c, "C");
  check_backend(&r, cg_jit_build, "JIT");
  done(&r);
  check_backends("model m\ninput x: f32[4, N, 3]\nhs, hT = gru(x, hidden_size=5, num_layers=3) as gru\n"
                 "output hs\noutput hT\n");
}

/* Finite differences through two bidirectional layers. */
Test(scan, deep_bidirectional_gradient_matches_finite_differences, .timeout = 120) {
  Run r;
  load(&r, "model m\ninput x: f32[3, N, 2]\ninput h0: f32[4, N, 2]\n"
           "hs, hT = gru(x, h0, num_layers=2, bidirectional=true) as gru\noutput hs\noutput hT\n");
  add_grads(&r);
  run_interp(&r, 9);
  check_fd(&r);
  done(&r);
}

static void expect_load_error(const char *text, const char *want) {
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

Test(scan, recurrent_layer_argument_errors) {
  expect_load_error("model m\ninput x: f32[5, N, 3]\nhs, hT = gru(x)\noutput hs\n",
                    "gru needs its hidden size: the initial state h0, or hidden_size=");
  expect_load_error("model m\ninput x: f32[5, N, 3]\ninput h0: f32[N, 4]\nhs, hT = gru(x, h0, num_layers=2)\noutput hs\n",
                    "gru takes its states as [num_layers * directions = 2, batch, hidden], not f32[N, 4]");
  expect_load_error("model m\ninput x: f32[5, N, 3]\ninput h0: f32[2, N, 4]\nhs, hT = gru(x, h0, hidden_size=5, "
                    "bidirectional=true)\noutput hs\n", "with x's batch and one fixed hidden size (hidden_size)");
  expect_load_error("model m\ninput x: f32[5, N, 3]\ninput c0: f32[N, 4]\nhs, hT, cT = lstm(x, c0=c0, hidden_size=4)\noutput hs\n",
                    "lstm is given c0 but not h0");
  expect_load_error("model m\ninput x: f32[5, N, 3]\ninput h0: f32[N, 4]\nhs, hT, cT = lstm(x, h0)\noutput hs\n",
                    "lstm takes c0 of h0's shape f32[N, 4]");
  expect_load_error("model m\ninput x: f32[5, N, 3]\nhs, hT = rnn(x, hidden_size=4, num_layers=9, bidirectional=true)\noutput hs\n",
                    "rnn runs at most 12 layers and directions in all, not 18");
}
