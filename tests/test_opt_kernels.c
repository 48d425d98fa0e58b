/*
 * test_opt_kernels.c — the optimizer steps with their element-invariant
 * scalars out of the loop, sums over a contiguous run in lanes, and
 * max_pool2d's forward with its taps written out (its gradient keeps the
 * loop: both checked)
 * (passes/lower.c, passes/lower_conv.c).
 *
 * Each case is one op on a hand-built graph, run on the kernel-IR
 * evaluator, the C backend (vector and scalar forms) and the JIT, and
 * compared with the interpreter:
 *   - sums and means whose reduced run has a tail (35 = 32 + 3, 100 =
 *     96 + 4), one without (32), one too short for lanes (9) and one whose
 *     last dimension is kept, within the float32 summation bound
 *     (K + 2) * 2^-24 * sum |x| (the interpreter on the absolute values
 *     gives sum |x|): lane sums change the order, not the terms; the JIT
 *     on 1, 2 and 3 threads bit-identical;
 *   - max_pool2d and its gradient exactly (a maximum and a copy of dy are
 *     exact), but where windows overlap, whose gradient adds up to K
 *     values of dy per element in another order than the interpreter's:
 *     there within (K + 2) * 2^-24 * K * max |dy|; on
 *     windows that tile the input, that leave a rest, that overlap, and a
 *     padded one (the loop form), with NaNs in the input: one NaN in a
 *     window, two in one window (the gradient goes to the last), a window
 *     all NaN, and -inf;
 *   - the training step's dump: no pow, and no division by a bias
 *     correction, inside the element loop of adam, adamw, rmsprop,
 *     adagrad and sgd; the bias corrections before it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "ir/keval.h"
#include "passes/schedule.h"
#include "tests/handkit.h"
#include "tests/kernel_run.h"
#include "tests/testutil.h"

#define MAXN 8

typedef struct OpCase {
  Graph g;
  Diags d;
  RtTensor vals[MAXN], absv[MAXN];  /* by node: the inputs, then the interpreter's values */
  int in[2], nin, out;
  int64_t n, K;                     /* batch at run time; terms per output (sums) */
  double mag;                       /* > 0: a bound on sum |terms| of every output */
} OpCase;

static void fill(RtTensor *t, double phase) {
  float *v = t->data;
  for (int64_t i = 0; i < rt_tensor_numel(t); i++) v[i] = (float)sin(0.7 * (double)i + phase) * 0.5f;
}

static void oc_interp(OpCase *t) {
  RtError err;
  int64_t syms[IR_MAX_SYMS] = {t->n};
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&t->g, t->vals, syms, &io, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(ir_interp(&t->g, t->absv, syms, &io, &err), RT_OK, "%s", err.msg);
}

/* Inputs of shapes ins[0..nin) (dimension 0 the symbol N, at most maxn,
 * n at run time) and one op on them; their values filled; the
 * interpreter run. */
static void oc_init(OpCase *t, int64_t maxn, int64_t n, const Shape *ins, int nin, int op, const Attrs *a) {
  memset(t, 0, sizeof *t);
  diag_init(&t->d, stderr);
  ir_graph_init(&t->g, "t", &t->d);
  SrcLoc loc = {0};
  int sym = ir_symbol(&t->g, "N", loc);
  t->g.syms[sym].max = maxn;
  t->n = n, t->nin = nin;
  static const char *const names[2] = {"a", "b"};
  for (int i = 0; i < nin; i++) {
    Shape s = ins[i];
    s.d[0] = DIM_SYM(sym);
    t->in[i] = ir_input(&t->g, names[i], DT_F32, &s, loc);
  }
  t->out = ir_op(&t->g, op, t->in, nin, a, loc);
  cr_assert_geq(t->out, 0);
  cr_assert_lt(t->out, MAXN);
  ir_output(&t->g, "y", t->out);
  RtError err;
  for (int i = 0; i < nin; i++) {
    const Node *nd = &t->g.nodes[t->in[i]];
    int64_t shape[IR_MAX_RANK];
    for (int r = 0; r < nd->shape.rank; r++) shape[r] = DIM_IS_SYM(nd->shape.d[r]) ? n : nd->shape.d[r];
    for (int v = 0; v < 2; v++) {
      RtTensor *x = v ? &t->absv[t->in[i]] : &t->vals[t->in[i]];
      cr_assert_eq(rt_tensor_alloc(x, DT_F32, nd->shape.rank, shape, &err), RT_OK);
      fill(x, 0.3 + i);
      if (v)
        for (int64_t e = 0; e < rt_tensor_numel(x); e++) ((float *)x->data)[e] = fabsf(((float *)x->data)[e]);
    }
  }
  oc_interp(t);
}

static void oc_free(OpCase *t) {
  for (int i = 0; i < t->g.nnodes && i < MAXN; i++) rt_tensor_free(&t->vals[i]), rt_tensor_free(&t->absv[i]);
  ir_graph_free(&t->g);
}

static void oc_program(OpCase *t, Program *p) { kr_graph_program(p, &t->g, &t->d); }

/* y through the evaluator (cflags "keval"), the C backend with cflags or
 * the JIT (cflags NULL) on threads threads (0: no pool). */
static void oc_run(OpCase *t, const Program *p, const char *cflags, int threads, float *y) {
  kr_graph_run(p, t->vals, t->n, cflags, threads, y);
}

/* exact: equal, or both NaN; else within the summation bound of K terms. */
static void oc_expect(const OpCase *t, const float *got, int exact, const char *how, const char *name) {
  const float *want = t->vals[t->out].data, *mag = t->absv[t->out].data;
  int64_t count = rt_tensor_numel(&t->vals[t->out]);
  double gamma = (double)(t->K + 2) * ldexp(1.0, -24);
  int bad = 0;
  for (int64_t i = 0; i < count && bad < 3; i++) {
    int ok = exact ? (got[i] == want[i] || (isnan(got[i]) && isnan(want[i])))
                   : fabs((double)got[i] - want[i]) <= gamma * (t->mag > 0 ? t->mag : mag[i]);
    if (!ok) {
      bad++;
      cr_expect(0, "%s %s N=%lld: y[%lld] = %.9g, interpreter %.9g", name, how, (long long)t->n, (long long)i, got[i],
                want[i]);
    }
  }
}

/* The case on every backend; the dump holds `want` (NULL: nothing asked)
 * and not `unwanted`; the JIT on 2 and 3 threads as on one. */
static void oc_check(OpCase *t, int exact, const char *want, const char *unwanted, const char *name) {
  Program p;
  oc_program(t, &p);
  char *text = hk_dump(&p);
  if (want) cr_expect(strstr(text, want), "%s: no '%s' in\n%s", name, want, text);
  if (unwanted) cr_expect(!strstr(text, unwanted), "%s: '%s' in\n%s", name, unwanted, text);
  free(text);
  int64_t count = rt_tensor_numel(&t->vals[t->out]);
  float *got = malloc(sizeof(float) * (size_t)count), *ref = malloc(sizeof(float) * (size_t)count);
  static const char *const flags[4] = {"keval", "-O1 -Wall -Wextra -pedantic -Werror",
                                       "-O1 -DDLC_VECTORS=0 -Wall -Wextra -Werror", NULL};
  for (int b = 0; b < 4; b++) {
    for (int64_t i = 0; i < count; i++) got[i] = 12345.0f;
    oc_run(t, &p, flags[b], 0, got);
    oc_expect(t, got, exact, flags[b] ? flags[b] : "JIT", name);
  }
  memcpy(ref, got, sizeof(float) * (size_t)count);
  for (int th = 2; th <= 3; th++) {
    for (int64_t i = 0; i < count; i++) got[i] = 12345.0f;
    oc_run(t, &p, NULL, th, got);
    cr_expect_eq(memcmp(got, ref, sizeof(float) * (size_t)count), 0, "%s: %d threads differ from one", name, th);
  }
  free(got);
  free(ref);
  kir_program_free(&p);
}

/* --- sums ------------------------------------------------------------------------ */

static void expect_sum(const char *name, int op, Shape x, const int64_t *axes, int naxes, int lanes) {
  Attrs a = ir_attrs_default(op);
  a.dims.nlist = naxes;
  a.dims.keepdim = 0;
  for (int i = 0; i < naxes; i++) a.dims.list[i] = axes[i];
  OpCase t;
  oc_init(&t, 5, 3, &x, 1, op, &a);
  t.K = 1;
  for (int i = 0; i < naxes; i++) t.K *= axes[i] == 0 ? t.n : x.d[axes[i]];
  oc_check(&t, 0, lanes ? "reduce_add(" : NULL, lanes ? NULL : "reduce_add(", name);
  oc_free(&t);
}

Test(opt_kernels, sums_in_lanes_match_the_interpreter, .timeout = 600) {
  /* a bias gradient of a convolution: n, h, w summed, the channels kept */
  expect_sum("5 x 7 plane", OP_SUM, (Shape){4, {1, 3, 5, 7}}, (int64_t[]){0, 2, 3}, 3, 1);       /* 32 + 3 */
  expect_sum("10 x 10 plane", OP_SUM, (Shape){4, {1, 2, 10, 10}}, (int64_t[]){0, 2, 3}, 3, 1);   /* 96 + 4 */
  expect_sum("4 x 8 plane", OP_SUM, (Shape){4, {1, 2, 4, 8}}, (int64_t[]){0, 2, 3}, 3, 1);       /* no tail */
  expect_sum("mean 5 x 7", OP_MEAN, (Shape){4, {1, 3, 5, 7}}, (int64_t[]){0, 2, 3}, 3, 1);
  expect_sum("last dims only", OP_SUM, (Shape){3, {1, 4, 37}}, (int64_t[]){2}, 1, 1);            /* n and c kept */
  expect_sum("all", OP_SUM, (Shape){2, {1, 33}}, (int64_t[]){0, 1}, 2, 0);                      /* nothing kept: serial */
  expect_sum("3 x 3 plane", OP_SUM, (Shape){4, {1, 3, 3, 3}}, (int64_t[]){0, 2, 3}, 3, 0);       /* too short */
  expect_sum("last kept", OP_SUM, (Shape){2, {1, 40}}, (int64_t[]){0}, 1, 0);                   /* a dense bias */
}

/* --- max_pool2d ------------------------------------------------------------------ */

/* NaNs and -inf at fixed places of x: in the first window of plane 0 one
 * NaN, in plane 1's first window two, plane 2's first window all NaN. */
static void poison(RtTensor *x, int64_t h, int64_t w) {
  float *v = x->data;
  int64_t numel = rt_tensor_numel(x), plane = h * w;
  if (numel > 1) v[1] = NAN;
  if (numel > plane + w + 1) v[plane] = NAN, v[plane + w + 1] = NAN;
  if (numel > 2 * plane + w + 1) v[2 * plane] = v[2 * plane + 1] = v[2 * plane + w] = v[2 * plane + w + 1] = NAN;
  if (numel > 3 * plane + 2) v[3 * plane + 2] = -INFINITY;
  if (numel > 17) v[numel - 5] = NAN;
}

static Attrs pool_attrs(int op, int64_t k, int64_t s, int64_t pad) {
  Attrs a = ir_attrs_default(op);
  a.window.kernel = (IntList){2, {k, k}};
  a.window.stride = (IntList){2, {s, s}};
  a.window.padding = (IntList){4, {pad, pad, pad, pad}};
  a.window.dilation = (IntList){2, {1, 1}};
  return a;
}

/* max_pool2d (grad 0) or its gradient (grad 1) over c planes of h x w. */
static void expect_pool(const char *name, int grad, int64_t c, int64_t h, int64_t w, int64_t k, int64_t s, int64_t pad,
                        int taps) {
  int64_t oh = (h + 2 * pad - k) / s + 1, ow = (w + 2 * pad - k) / s + 1;
  Shape x = {4, {1, c, h, w}}, dy = {4, {1, c, oh, ow}};
  int op = grad ? OP_MAX_POOL2D_GRAD : OP_MAX_POOL2D;
  Attrs a = pool_attrs(op, k, s, pad);
  OpCase t;
  Shape ins[2] = {dy, x};
  oc_init(&t, 4, 3, grad ? ins : &x, grad ? 2 : 1, op, &a);
  int xi = t.in[grad ? 1 : 0];
  poison(&t.vals[xi], h, w);
  poison(&t.absv[xi], h, w);
  oc_interp(&t);
  /* overlapping windows add up to K values of dy (|dy| <= 0.5) into an element of the gradient, in
   * the kernel in window order, in the interpreter in its own: within the summation bound */
  int64_t per = (k + s - 1) / s, exact = !grad || per == 1;
  t.K = per * per, t.mag = 0.5 * (double)t.K;
  /* the taps written out: no loop of k (the window's rows) under the column loop (the forward) */
  char loopk[32];
  snprintf(loopk, sizeof loopk, " < %lld {", (long long)k);
  taps = taps && !grad; /* the gradient keeps the loop over the taps */
  oc_check(&t, (int)exact, taps ? NULL : loopk, taps ? loopk : NULL, name);
  oc_free(&t);
}

Test(opt_kernels, max_pool_matches_the_interpreter_with_nans, .timeout = 600) {
  for (int grad = 0; grad <= 1; grad++) {
    expect_pool("2x2 tiled", grad, 4, 8, 6, 2, 2, 0, 1);     /* LeNet-5's pools: windows tile the plane */
    expect_pool("2x2 rest", grad, 4, 7, 9, 2, 2, 0, 1);      /* a row and a column left over */
    expect_pool("3x3 stride 2", grad, 4, 11, 9, 3, 2, 0, 1);  /* overlapping windows: the gradient adds */
    expect_pool("3x3 stride 1", grad, 3, 6, 7, 3, 1, 0, 1);
    expect_pool("5x5 stride 5", grad, 3, 11, 10, 5, 5, 0, 0); /* 25 taps: the loop form */
    expect_pool("3x3 padded", grad, 4, 7, 7, 3, 2, 1, 0);    /* padding: the guarded loop form */
  }
}

/* --- optimizer steps ------------------------------------------------------------- */

/* In every optimizer-step kernel of the step's dump after lower: no pow
 * after the first loop, and (adam, adagrad) a pow before it. */
static void expect_hoisted(const char *optimizer, const char *kname, int pows) {
  char src[512];
  snprintf(src, sizeof src,
           "model t\ninput x: f32[N, 5]\nlogits = dense(x, 3)\noutput logits\n"
           "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = %s\n}\n",
           optimizer);
  int status;
  char *text = tu_dump_after(src, "--train --dump-after=lower", &status);
  cr_assert_not_null(text);
  cr_expect_eq(status, 0, "%s\n%s", src, text);
  int kernels = 0;
  for (const char *at = text; (at = strstr(at, kname)); at++) {
    char *k = kr_kernel_text(at, kname);
    const char *loop = strstr(k, "for ");
    cr_assert_not_null(loop, "%s", k);
    cr_expect(!strstr(loop, "pow("), "%s: pow inside the element loop:\n%s", optimizer, k);
    if (pows) cr_expect(strstr(k, "pow(") && strstr(k, "pow(") < loop, "%s: no pow before the loop:\n%s", optimizer, k);
    free(k);
    kernels++;
  }
  cr_expect_geq(kernels, 2, "%s: %d %s kernels in\n%s", optimizer, kernels, kname, text);
  free(text);
}

Test(opt_kernels, optimizer_invariants_are_computed_before_the_loop, .timeout = 300) {
  expect_hoisted("adam(lr=0.01)", ": adam_step", 1);
  expect_hoisted("adamw(lr=0.01, weight_decay=0.1)", ": adam_step", 1);
  expect_hoisted("rmsprop(lr=0.01, momentum=0.9)", ": rmsprop_step", 0);
  expect_hoisted("adagrad(lr=0.01, lr_decay=0.1)", ": adagrad_step", 0);
  expect_hoisted("sgd(lr=0.01, momentum=0.9, nesterov=true)", ": sgd_step", 0);
}
