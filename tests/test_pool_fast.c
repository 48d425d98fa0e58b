/*
 * test_pool_fast.c — max_pool2d and its gradient as lowered for speed
 * (passes/lower_conv.c): the forward with its taps written out (up to 16
 * taps, windows inside the input), and the gradient of windows that tile
 * the input writing each window whole, 0 + dy at its maximum and 0
 * elsewhere (no zeroed result first; other windows scatter into one), in
 * one store statement, so that the fusion puts relu's gradient right
 * after it.
 *
 * Each case is one op on a hand-built graph, run on the kernel-IR
 * evaluator, the C backend (vector and scalar forms) and the JIT, and
 * compared with the interpreter bit for bit (a maximum and 0 + dy are
 * exact; where windows overlap the gradient adds up to K values of dy in
 * another order, there within the summation bound (K + 2) * 2^-24 * K *
 * max |dy|); the JIT on 2 threads as on one.  The inputs are full of ties
 * (a few levels, +0 and -0 among them, so the first maximum's bits
 * show), and hold NaNs (one in a window, two in one window: the gradient
 * goes to the last; a window all NaN), a window all -inf and a window of
 * -inf and NaN.  Geometries: LeNet-5's two pools, 3x3, 4x4 and 2x3 tiles,
 * a row-only and a column-only window, a rest, stride below and above
 * the kernel, padding, dilation and ceil_mode.  And LeNet-5's training
 * step: both pool gradients with relu's gradient fused after the store.
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

#define MAXNODES 8

typedef struct PoolCase {
  Graph g;
  Diags d;
  RtTensor vals[MAXNODES];   /* by node: the inputs, then the interpreter's values */
  int dy, x, out, grad;
  int64_t n, overlap;        /* batch at run time; most windows holding one element */
} PoolCase;

typedef struct Geom {
  int64_t kh, kw, sh, sw, pt, pb, pl, pr, dil, ceil;
} Geom;

static Attrs geom_attrs(OpKind op, const Geom *q) {
  Attrs a = ir_attrs_default(op);
  a.window.kernel = (IntList){2, {q->kh, q->kw}};
  a.window.stride = (IntList){2, {q->sh, q->sw}};
  a.window.padding = (IntList){4, {q->pt, q->pb, q->pl, q->pr}};
  a.window.dilation = (IntList){2, {q->dil, q->dil}};
  a.window.ceil_mode = (int)q->ceil;
  return a;
}

/* x: ties from five levels with both zeros; NaNs, -inf and a window of
 * -inf and NaN at fixed places of the first planes (the first window of
 * each, when the planes are that big). */
static void fill_x(RtTensor *t, int64_t h, int64_t w) {
  static const float levels[6] = {-1.5f, -0.0f, 0.0f, 0.5f, 2.0f, 2.0f};
  float *v = t->data;
  int64_t numel = rt_tensor_numel(t), plane = h * w;
  for (int64_t i = 0; i < numel; i++) v[i] = levels[(i * 7 + i / 5) % 6];
  if (numel > 1) v[1] = NAN;                                                  /* one NaN */
  if (numel > plane + w + 1) v[plane] = NAN, v[plane + w + 1] = NAN;          /* two: the last wins */
  if (numel > 2 * plane + w + 1)
    v[2 * plane] = v[2 * plane + 1] = v[2 * plane + w] = v[2 * plane + w + 1] = NAN;
  if (numel > 3 * plane + w + 1)
    v[3 * plane] = v[3 * plane + 1] = v[3 * plane + w] = v[3 * plane + w + 1] = -INFINITY;
  if (numel > 4 * plane + w + 1) v[4 * plane] = v[4 * plane + w + 1] = -INFINITY, v[4 * plane + 1] = NAN;
  if (numel > 6 * plane) v[5 * plane + w - 1] = v[5 * plane + 2 * w - 2] = 7.0f; /* ties at the top */
}

static void fill_dy(RtTensor *t) {
  float *v = t->data;
  for (int64_t i = 0; i < rt_tensor_numel(t); i++) v[i] = (float)sin(0.7 * (double)i + 0.3) * 0.5f;
  if (rt_tensor_numel(t) > 3) v[3] = -0.0f; /* 0 + -0 is +0 */
}

/* max_pool2d (grad 0) or max_pool2d_grad of c planes of h x w. */
static void pc_init(PoolCase *t, int grad, int64_t c, int64_t h, int64_t w, const Geom *q) {
  memset(t, 0, sizeof *t);
  diag_init(&t->d, stderr);
  ir_graph_init(&t->g, "pool", &t->d);
  SrcLoc loc = {0};
  int sym = ir_symbol(&t->g, "N", loc);
  t->g.syms[sym].max = 4;
  t->n = 3, t->grad = grad;
  Shape sx = {4, {DIM_SYM(sym), c, h, w}};
  t->x = ir_input(&t->g, "x", DT_F32, &sx, loc);
  Attrs fa = geom_attrs(OP_MAX_POOL2D, q);
  int y = ir_op(&t->g, OP_MAX_POOL2D, &t->x, 1, &fa, loc);
  cr_assert_geq(y, 0);
  t->out = y, t->dy = -1;
  if (grad) {
    Shape sdy = t->g.nodes[y].shape;
    t->dy = ir_input(&t->g, "dy", DT_F32, &sdy, loc);
    Attrs ga = geom_attrs(OP_MAX_POOL2D_GRAD, q);
    t->out = ir_op(&t->g, OP_MAX_POOL2D_GRAD, (int[]){t->dy, t->x}, 2, &ga, loc);
    cr_assert_geq(t->out, 0);
  }
  cr_assert_lt(t->out, MAXNODES);
  ir_output(&t->g, "y", t->out);
  t->overlap = ((q->dil * (q->kh - 1) + q->sh) / q->sh) * ((q->dil * (q->kw - 1) + q->sw) / q->sw);
  RtError err;
  int ins[2] = {t->x, t->dy};
  for (int i = 0; i < 1 + grad; i++) {
    const Node *nd = &t->g.nodes[ins[i]];
    int64_t shape[4];
    for (int r = 0; r < 4; r++) shape[r] = DIM_IS_SYM(nd->shape.d[r]) ? t->n : nd->shape.d[r];
    cr_assert_eq(rt_tensor_alloc(&t->vals[ins[i]], DT_F32, 4, shape, &err), RT_OK);
    if (i == 0) fill_x(&t->vals[ins[i]], h, w);
    else fill_dy(&t->vals[ins[i]]);
  }
  int64_t syms[IR_MAX_SYMS] = {t->n};
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&t->g, t->vals, syms, &io, &err), RT_OK, "%s", err.msg);
}

static void pc_free(PoolCase *t) {
  for (int i = 0; i < t->g.nnodes && i < MAXNODES; i++) rt_tensor_free(&t->vals[i]);
  ir_graph_free(&t->g);
}

static void pc_program(PoolCase *t, Program *p) { kr_graph_program(p, &t->g, &t->d); }

static void pc_run(PoolCase *t, const Program *p, const char *cflags, int threads, float *y) {
  kr_graph_run(p, t->vals, t->n, cflags, threads, y);
}

/* Bit for bit (NaN: any NaN), or within the summation bound where a
 * gradient's windows overlap. */
static void pc_expect(const PoolCase *t, const float *got, const char *how, const char *name) {
  const float *want = t->vals[t->out].data;
  int64_t count = rt_tensor_numel(&t->vals[t->out]), k = t->grad ? t->overlap : 1;
  double bound = (double)(k + 2) * ldexp(1.0, -24) * 0.5 * (double)k;
  int bad = 0;
  for (int64_t i = 0; i < count && bad < 3; i++) {
    int ok = k == 1 ? memcmp(&got[i], &want[i], sizeof(float)) == 0 || (isnan(got[i]) && isnan(want[i]))
                    : fabs((double)got[i] - want[i]) <= bound || (isnan(got[i]) && isnan(want[i]));
    if (!ok) {
      bad++;
      cr_expect(0, "%s %s: y[%lld] = %.9g, interpreter %.9g", name, how, (long long)i, got[i], want[i]);
    }
  }
}

/* The case on every backend; the forward's taps written out in the dump
 * when taps; 2 threads as 1. */
static void expect_pool(const char *name, int64_t c, int64_t h, int64_t w, Geom q, int taps) {
  for (int grad = 0; grad <= 1; grad++) {
    PoolCase t;
    pc_init(&t, grad, c, h, w, &q);
    Program p;
    pc_program(&t, &p);
    char *text = hk_dump(&p);
    /* windows tiling the input 2 columns wide, 4 or more of them: the columns in lanes (sched_pool.c) */
    int lanes = q.sh == q.kh && q.sw == 2 && q.kw == 2 && q.dil == 1 && !q.pt && !q.pb && !q.pl && !q.pr &&
                h % q.kh == 0 && w % 2 == 0 && w / 2 >= 4 && q.kh * 2 <= 16;
    cr_expect_eq(strstr(text, "unzip_even(") != NULL, lanes, "%s: columns %sin lanes\n%s", name, lanes ? "not " : "", text);
    if (lanes) {
    } else if (grad) { /* windows that tile the input write every element: no zeroed result first */
      int tiled = q.sh == q.kh && q.sw == q.kw && q.dil == 1 && !q.pt && !q.pb && !q.pl && !q.pr && h % q.kh == 0 &&
                  w % q.kw == 0;
      int zeroed = strstr(text, "] = 0.0\n") != NULL;
      cr_expect_eq(zeroed, !tiled, "%s: the gradient %s a zeroed result\n%s", name, zeroed ? "starts from" : "lacks", text);
    } else { /* the loop over the taps selects what it takes; the written-out taps are max()es */
      int selects = strstr(text, "select(") != NULL;
      cr_expect_eq(!selects, taps, "%s: taps written out %s\n%s", name, selects ? "no" : "yes", text);
    }
    free(text);
    int64_t count = rt_tensor_numel(&t.vals[t.out]);
    float *got = malloc(sizeof(float) * (size_t)count), *ref = malloc(sizeof(float) * (size_t)count);
    static const char *const flags[4] = {"keval", "-O2 -march=native -Wall -Wextra -pedantic -Werror",
                                         "-O1 -DDLC_VECTORS=0 -Wall -Wextra -Werror", NULL};
    for (int b = 0; b < 4; b++) {
      for (int64_t i = 0; i < count; i++) got[i] = 12345.0f;
      pc_run(&t, &p, flags[b], 0, got);
      pc_expect(&t, got, flags[b] ? flags[b] : "JIT", name);
    }
    memcpy(ref, got, sizeof(float) * (size_t)count);
    for (int64_t i = 0; i < count; i++) got[i] = 12345.0f;
    pc_run(&t, &p, NULL, 2, got);
    cr_expect_eq(memcmp(got, ref, sizeof(float) * (size_t)count), 0, "%s (grad %d): 2 threads differ from one", name,
                 grad);
    free(got);
    free(ref);
    kir_program_free(&p);
    pc_free(&t);
  }
}

#define TILE(k) ((Geom){k, k, k, k, 0, 0, 0, 0, 1, 0})

Test(pool_fast, tiled_windows_match_the_interpreter, .timeout = 600) {
  expect_pool("lenet p1", 6, 28, 28, TILE(2), 1);
  expect_pool("lenet p2", 16, 10, 10, TILE(2), 1);
  expect_pool("3x3 tiles", 6, 9, 12, TILE(3), 1);
  expect_pool("2x3 tiles", 6, 8, 9, ((Geom){2, 3, 2, 3, 0, 0, 0, 0, 1, 0}), 1);
  expect_pool("1x2 row", 6, 3, 8, ((Geom){1, 2, 1, 2, 0, 0, 0, 0, 1, 0}), 1);
  expect_pool("2x1 column", 6, 8, 3, ((Geom){2, 1, 2, 1, 0, 0, 0, 0, 1, 0}), 1);
  expect_pool("4x4 tiles", 6, 8, 8, TILE(4), 1);          /* 16 taps: the most written out */
  expect_pool("5x5 tiles", 6, 10, 10, TILE(5), 0);        /* 25 taps: the loop forms */
  /* in lanes: 16 and a last vector of 16, one vector of 8, 4 and a last of 4, 3 windows (scalar), 3 x 2 */
  expect_pool("2x2, 20 columns", 3, 4, 40, TILE(2), 1);
  expect_pool("2x2, 8 columns", 3, 4, 16, TILE(2), 1);
  expect_pool("2x2, 5 columns", 3, 6, 10, TILE(2), 1);
  expect_pool("2x2, 3 columns", 3, 4, 6, TILE(2), 1);
  expect_pool("3x2 tiles", 4, 9, 12, ((Geom){3, 2, 3, 2, 0, 0, 0, 0, 1, 0}), 1);
}

Test(pool_fast, other_windows_match_the_interpreter, .timeout = 600) {
  expect_pool("2x2 rest", 6, 7, 9, TILE(2), 1);            /* a row and a column left over */
  expect_pool("3x3 stride 2", 6, 11, 9, ((Geom){3, 3, 2, 2, 0, 0, 0, 0, 1, 0}), 1); /* overlapping */
  expect_pool("2x2 stride 3", 6, 8, 8, ((Geom){2, 2, 3, 3, 0, 0, 0, 0, 1, 0}), 1);  /* gaps */
  expect_pool("3x3 padded", 6, 7, 7, ((Geom){3, 3, 2, 2, 1, 1, 1, 1, 1, 0}), 0);
  expect_pool("2x2 padded", 6, 6, 6, ((Geom){2, 2, 2, 2, 1, 1, 1, 1, 1, 0}), 0);  /* stride = kernel, padded */
  expect_pool("dilation 2", 6, 9, 9, ((Geom){2, 2, 2, 2, 0, 0, 0, 0, 2, 0}), 1);
  expect_pool("ceil_mode", 6, 7, 7, ((Geom){2, 2, 2, 2, 0, 0, 0, 0, 1, 1}), 0); /* the last window half out */
}

/* LeNet-5's training step: both pool gradients with relu's gradient (its
 * select on the relu output) after their store: a form of the gradient
 * with more than one store statement would lose it to a pass of its own. */
Test(pool_fast, lenet5_pool_gradients_keep_relus_gradient_fused, .timeout = 300) {
  FILE *f = fopen(DLC_SOURCE_DIR "/samples/lenet5.dl", "r");
  cr_assert_not_null(f);
  static char src[8192];
  size_t len = fread(src, 1, sizeof src - 1, f);
  fclose(f);
  src[len] = 0;
  int status;
  char *text = tu_dump_after(src, "--train --dump-after=fuse", &status);
  cr_assert_not_null(text);
  cr_expect_eq(status, 0, "%s", text);
  int kernels = 0;
  for (const char *at = text; (at = strstr(at, ": max_pool2d_grad")); at++) {
    char *k = kr_kernel_text(at, ": max_pool2d_grad");
    cr_expect(strstr(k, "<= 0.0"), "relu's gradient not after the store:\n%s", k);
    free(k);
    kernels++;
  }
  cr_expect_eq(kernels, 2, "%d max_pool2d_grad kernels in\n%s", kernels, text);
  free(text);
}

/* The tiled gradient keeps the taken tap as an f32, its place a * w + j in
 * the window's band of rows, while kh * w is below 2^24, where every such
 * place is exact; at 2^24 and above it keeps the tap's i64 index. */
Test(pool_fast, tiled_gradient_keeps_an_exact_tap, .timeout = 120) {
  static const char *const model =
      "model wide\ninput x: f32[N, 1, %d, %d]\nc = conv2d(x, 1, 1)\np = max_pool2d(c, [%d, 2])\n"
      "output logits = dense(flatten(p), 2)\n"
      "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.1)\n  batch = 2\n}\n";
  static const struct {
    int h, w;
    const char *best;
  } cases[] = {{2, 28, "local v1: f32 = -1.0"}, {1024, 16382, "local v1: f32 = -1.0"},
               {1024, 16384, "local v1: i64 = -1"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char src[512];
    snprintf(src, sizeof src, model, cases[i].h, cases[i].w, cases[i].h);
    int status;
    char *text = tu_dump_after(src, "--train --dump-after=lower", &status);
    cr_assert_not_null(text);
    cr_expect_eq(status, 0, "%s", text);
    char *k = kr_kernel_text(text, ": max_pool2d_grad");
    cr_expect(k && strstr(k, cases[i].best), "%d x %d: no '%s' in\n%s", cases[i].h, cases[i].w, cases[i].best, k ? k : text);
    free(k);
    free(text);
  }
}
