/*
 * test_klanes.c — vector lanes in the kernel IR.
 *
 * One hand-built kernel does what a vectorised loop does: a loop of step 8
 * over 8-lane loads, lane-wise arithmetic with broadcast scalars, a select
 * on an 8-lane condition, casts, a libm call (tanh, called lane by lane in
 * LLVM), 8-lane stores, an 8-lane local accumulator carried across the
 * loop, and its pairwise sum after it.  The C backend (lanes unrolled into
 * scalars) and the JIT (LLVM vectors) must both give the values the test
 * computes, the sum exactly in kernel.h's pairwise order: the data are
 * chosen so that a left-to-right sum gives another float.  The verifier
 * checks lane counts (mismatched lanes, a scalar not broadcast, a vector
 * index, a constant of 8 lanes, an 8-lane store past the end of its
 * buffer, a local read with other lanes), and the builders refuse lanes
 * that differ.  The printed C has one scalar per lane and the LLVM module
 * <8 x float> operations; a kernel whose lanes are all loads, locals,
 * broadcasts and + - * / is also printed in GNU C vectors, which give the
 * scalars' bits.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "ir/keval.h"
#include "passes/passes.h"
#include "tests/handkit.h"
#include "tests/testutil.h"

enum { N = 32, W = 8 };

typedef struct Lanes {
  Graph g;
  Program p;
  Diags d;
  char *msgs;
  size_t len;
  FILE *f;
  int x, b, y, s;   /* inputs f32[32], f32[1]; outputs f32[32], f32[1] */
} Lanes;

static void lanes_init(Lanes *t) {
  t->msgs = NULL;
  t->f = open_memstream(&t->msgs, &t->len);
  diag_init(&t->d, t->f);
  ir_graph_init(&t->g, "lanes", &t->d);
  kir_program_init(&t->p, &t->g);
  Shape sn = {1, {N}}, s1 = {1, {1}};
  t->x = kir_buffer(&t->p, BUF_INPUT, DT_F32, "x", &sn, -1);
  t->b = kir_buffer(&t->p, BUF_INPUT, DT_F32, "b", &s1, -1);
  t->y = kir_buffer(&t->p, BUF_OUTPUT, DT_F32, "y", &sn, -1);
  t->s = kir_buffer(&t->p, BUF_OUTPUT, DT_F32, "s", &s1, -1);
  Func *fn = kir_func(&t->p, "forward", &t->g);
  int order[4] = {t->x, t->b, t->y, t->s};
  fn->args = arena_alloc(&t->p.arena, sizeof order);
  for (int a = 0; a < 4; a++) fn->args[a] = order[a], t->p.bufs[order[a]].arg = a;
  fn->nargs = 4;
}

static void lanes_free(Lanes *t) {
  fclose(t->f);
  free(t->msgs);
  kir_program_free(&t->p);
  ir_graph_free(&t->g);
}

/* The C cg_emit_c prints for t's program (to free). */
static char *emit_c_text(Lanes *t) {
  char *c = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&c, &n);
  EmitOpts o = {"lanes.h", NULL};
  cr_assert_eq(cg_emit_c(&t->p, f, NULL, &o, &t->d), 0);
  fclose(f);
  return c;
}

static Kernel *lanes_kernel(Lanes *t, Stmt *body, int nvars, int nlocals) {
  Kernel *k = kir_kernel(&t->p, &t->p.funcs[0], "lanes", (SrcLoc){0});
  k->body = body, k->nvars = nvars, k->nlocals = nlocals;
  return k;
}

/* local v0: f32x8 = bcast(0.0, 8)
 * for i0 < 32 step 8 vector width 8 {
 *   local v1: f32x8 = x<8>[i0] * bcast(2.0, 8) + bcast(b[0], 8)
 *   y<8>[i0] = select(v1 > bcast(0.0, 8), tanh(v1), f32(f64(v1) * bcast(0.5f64, 8)))
 *   v0 = v0 + x<8>[i0]
 * }
 * s[0] = reduce_add(v0) */
static Stmt *vector_body(Lanes *t) {
  Program *p = &t->p;
  Expr *i = kx_var(p, 0), *xv = kx_load_lanes(p, t->x, i, W);
  Stmt *loop = ks_local(p, 1, DT_F32, kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, xv, kx_broadcast(p, kx_f(p, 2), W)),
                                                  kx_broadcast(p, kx_load(p, t->b, kx_i(p, 0)), W)));
  Expr *v1 = kx_vlocal(p, 1, DT_F32, W);
  Expr *half = kx_cast(p, DT_F32, kx_bin(p, BIN_MUL, kx_cast(p, DT_F64, v1), kx_broadcast(p, kx_fconst(p, DT_F64, 0.5), W)));
  Expr *pos = kx_bin(p, BIN_GT, v1, kx_broadcast(p, kx_f(p, 0), W));
  ks_append(&loop, ks_store(p, t->y, i, kx_select(p, pos, kx_un(p, UN_TANH, v1), half)));
  ks_append(&loop, ks_assign(p, 0, kx_bin(p, BIN_ADD, kx_vlocal(p, 0, DT_F32, W), xv)));
  Stmt *l = ks_loop(p, 0, kx_i(p, N), loop);
  l->step = W, l->width = W, l->loop = LOOP_VECTOR;
  Stmt *s = ks_local(p, 0, DT_F32, kx_broadcast(p, kx_f(p, 0), W));
  ks_append(&s, l);
  ks_append(&s, ks_store(p, t->s, kx_i(p, 0), kx_reduce(p, BIN_ADD, kx_vlocal(p, 0, DT_F32, W))));
  return s;
}

/* Lane k sums x[k], x[k + 8], ...; then (kernel.h) pairwise. */
static float pairwise_sum(const float *x) {
  float part[W];
  for (int k = 0; k < W; k++) {
    part[k] = 0;
    for (int i = k; i < N; i += W) part[k] += x[i];
  }
  for (int h = W / 2; h >= 1; h /= 2)
    for (int k = 0; k < h; k++) part[k] += part[k + h];
  return part[0];
}

static void inputs(float *x, float *b) {
  for (int i = 0; i < N; i++) x[i] = (float)((i * 37) % 11 - 5) * 0.25f;
  x[3] = 1e8f, x[7] = -1e8f, x[12] = 3; /* cancellation: the order shows */
  b[0] = -0.5f;
}

Test(klanes, data_sum_differently_in_another_order) {
  float x[N], b[1];
  inputs(x, b);
  float part[W], seq = 0;
  for (int k = 0; k < W; k++) {
    part[k] = 0;
    for (int i = k; i < N; i += W) part[k] += x[i];
  }
  for (int k = 0; k < W; k++) seq += part[k];
  cr_expect_neq(seq, pairwise_sum(x), "the test data do not tell the orders apart");
}

static void run_lanes(CModule *(*build)(const Program *, RtError *), const char *what) {
  Lanes t;
  lanes_init(&t);
  lanes_kernel(&t, vector_body(&t), 1, 2);
  cr_assert_eq(kir_verify(&t.p, &t.d), 0, "%s: %s", what, t.msgs);
  RtError err;
  CModule *m = build(&t.p, &err);
  cr_assert_not_null(m, "%s: %s", what, err.msg);
  float x[N], b[1], y[N], s[1] = {0};
  inputs(x, b);
  void *args[4] = {x, b, y, s};
  cr_assert_eq(cg_c_call(m, "forward", NULL, args, &err), RT_OK, "%s: %s", what, err.msg);
  for (int i = 0; i < N; i++) {
    float v = x[i] * 2.0f + b[0];
    float want = v > 0 ? tanhf(v) : (float)((double)v * 0.5);
    cr_expect(y[i] == want, "%s y[%d] = %.9g, want %.9g", what, i, y[i], want);
  }
  cr_expect(s[0] == pairwise_sum(x), "%s: sum %.9g, want %.9g (pairwise)", what, s[0], pairwise_sum(x));
  cg_c_free(m);
  lanes_free(&t);
}

static CModule *build_c(const Program *p, RtError *err) {
  return cg_c_build(p, "-O1 -Wall -Wextra -pedantic -Werror", err);
}

Test(klanes, c_backend_runs_lanes_as_scalars) { run_lanes(build_c, "C"); }
Test(klanes, jit_runs_lanes_as_vectors) { run_lanes(cg_jit_build, "JIT"); }

Test(klanes, dump_shows_lanes) {
  Lanes t;
  lanes_init(&t);
  lanes_kernel(&t, vector_body(&t), 1, 2);
  char *text = hk_dump(&t.p);
  cr_expect(strstr(text, "local v0: f32x8 = bcast(0.0, 8)\n"), "%s", text);
  cr_expect(strstr(text, "for i0 < 32 step 8 vector width 8 {\n"), "%s", text);
  cr_expect(strstr(text, "local v1: f32x8 = b0<8>[i0] * bcast(2.0, 8) + bcast(b1[0], 8)\n"), "%s", text);
  cr_expect(strstr(text, "b2<8>[i0] = select(v1 > bcast(0.0, 8), tanh(v1), f32(f64(v1) * bcast(0.5f64, 8)))\n"), "%s", text);
  cr_expect(strstr(text, "b3[0] = reduce_add(v0)\n"), "%s", text);
  free(text);
  lanes_free(&t);
}

static void expect_lanes_rejected(Lanes *t, Stmt *body, int nvars, int nlocals, const char *needle) {
  lanes_kernel(t, body, nvars, nlocals);
  int bad = kir_verify(&t->p, &t->d);
  fflush(t->f);
  cr_expect_gt(bad, 0, "not rejected (wanted '%s')", needle);
  cr_expect(t->msgs && strstr(t->msgs, needle), "no '%s' in:\n%s", needle, t->msgs ? t->msgs : "");
}

Test(klanes, verifier_rejects_mismatched_lanes) {
  Lanes t;
  lanes_init(&t);
  Program *p = &t.p;
  Expr *sum = kx_bin(p, BIN_ADD, kx_load_lanes(p, t.x, kx_i(p, 0), W), kx_load_lanes(p, t.x, kx_i(p, 8), W));
  sum->b = kx_load_lanes(p, t.x, kx_i(p, 8), 4); /* the builder refuses it */
  expect_lanes_rejected(&t, ks_store(p, t.y, kx_i(p, 0), sum), 0, 0, "operand of 4 lanes in an expression of 8 lanes");
  lanes_free(&t);
}

Test(klanes, verifier_rejects_a_scalar_in_lanes_unbroadcast) {
  Lanes t;
  lanes_init(&t);
  Program *p = &t.p;
  Expr *sum = kx_bin(p, BIN_ADD, kx_load_lanes(p, t.x, kx_i(p, 0), W), kx_broadcast(p, kx_f(p, 1), W));
  sum->b = kx_f(p, 1);
  expect_lanes_rejected(&t, ks_store(p, t.y, kx_i(p, 0), sum), 0, 0, "operand of 1 lanes in an expression of 8 lanes (broadcast it)");
  lanes_free(&t);
}

Test(klanes, verifier_rejects_a_constant_of_lanes) {
  Lanes t;
  lanes_init(&t);
  Program *p = &t.p;
  Expr *k = kx_f(p, 1);
  k->lanes = W;
  expect_lanes_rejected(&t, ks_store(p, t.y, kx_i(p, 0), k), 0, 0, "a constant, variable, symbol or rand of 8 lanes");
  lanes_free(&t);
}

Test(klanes, verifier_rejects_a_vector_index) {
  Lanes t;
  lanes_init(&t);
  Program *p = &t.p;
  Expr *ld = kx_load(p, t.x, kx_i(p, 0));
  ld->a = kx_broadcast(p, kx_i(p, 0), W);
  expect_lanes_rejected(&t, ks_store(p, t.y, kx_i(p, 0), ld), 0, 0, "operand of 8 lanes in an expression of 1 lanes");
  lanes_free(&t);
}

Test(klanes, verifier_rejects_lanes_past_the_end) {
  Lanes t;
  lanes_init(&t);
  Program *p = &t.p;
  /* y<8>[i0] for i0 < 32 step 4: the last store covers 28..35 */
  Stmt *l = ks_loop(p, 0, kx_i(p, N), ks_store(p, t.y, kx_var(p, 0), kx_load_lanes(p, t.x, kx_i(p, 0), W)));
  l->step = 4;
  expect_lanes_rejected(&t, l, 1, 0, "store to b2 (y) at indices [0, 35], outside its 32 elements");
  lanes_free(&t);
}

Test(klanes, verifier_rejects_a_local_read_with_other_lanes) {
  Lanes t;
  lanes_init(&t);
  Program *p = &t.p;
  Stmt *s = ks_local(p, 0, DT_F32, kx_load_lanes(p, t.x, kx_i(p, 0), W));
  ks_append(&s, ks_store(p, t.y, kx_i(p, 0), kx_vlocal(p, 0, DT_F32, 4)));
  expect_lanes_rejected(&t, s, 0, 1, "local v0 of 8 lanes read as 4 lanes");
  lanes_free(&t);
}

/* The C has one scalar per lane and the pairwise tree; the LLVM module
 * computes on <8 x float>. */
Test(klanes, c_unrolls_lanes_and_llvm_keeps_vectors) {
  Lanes t;
  lanes_init(&t);
  lanes_kernel(&t, vector_body(&t), 1, 2);
  char *c = emit_c_text(&t);
  cr_expect(strstr(c, "float v0_7 = 0.0f;\n"), "%s", c);
  cr_expect(strstr(c, "out_y[i0 + 7] = v1_7 > 0.0f ? tanhf(v1_7) : (float)((double)v1_7 * 0.5);\n"), "%s", c);
  cr_expect(strstr(c, "out_s[0] = (((v0_0 + v0_4) + (v0_2 + v0_6)) + ((v0_1 + v0_5) + (v0_3 + v0_7)));\n"), "%s", c);
  char *ir = NULL;
  size_t len = 0;
  RtError err;
  EmitOpts o = {"lanes.h", NULL};
  cr_assert_eq(cg_emit_llvm(&t.p, &o, CG_LLVM_IR, &ir, &len, &err), RT_OK, "%s", err.msg);
  cr_expect(strstr(ir, "<8 x float>"), "no <8 x float> in:\n%s", ir);
  if (getenv("DLC_SHOW")) fprintf(stderr, "%s\n%s\n", c, ir);
  free(c);
  free(ir);
  lanes_free(&t);
}

Test(klanes, builder_refuses_lanes_that_differ, .signal = SIGABRT) {
  Lanes t;
  lanes_init(&t);
  Program *p = &t.p;
  kx_bin(p, BIN_ADD, kx_load_lanes(p, t.x, kx_i(p, 0), W), kx_f(p, 1));
}

/* A kernel whose lanes all have a GNU C vector form (loads, locals,
 * broadcasts, + - * /, a sum of lanes):
 * local v0: f32x8 = bcast(0.0, 8)
 * for i0 < 32 step 8 vector width 8 {
 *   local v1: f32x8 = x<8>[i0] * bcast(2.0, 8) + bcast(b[0], 8)
 *   y<8>[i0] = v1 * v1 - x<8>[i0] / bcast(3.0, 8)
 *   v0 = v0 + x<8>[i0]
 * }
 * s[0] = reduce_add(v0) */
static Stmt *arith_body(Lanes *t) {
  Program *p = &t->p;
  Expr *i = kx_var(p, 0), *xv = kx_load_lanes(p, t->x, i, W);
  Stmt *loop = ks_local(p, 1, DT_F32, kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, xv, kx_broadcast(p, kx_f(p, 2), W)),
                                                  kx_broadcast(p, kx_load(p, t->b, kx_i(p, 0)), W)));
  Expr *v1 = kx_vlocal(p, 1, DT_F32, W);
  Expr *y = kx_bin(p, BIN_SUB, kx_bin(p, BIN_MUL, v1, v1), kx_bin(p, BIN_DIV, xv, kx_broadcast(p, kx_f(p, 3), W)));
  ks_append(&loop, ks_store(p, t->y, i, y));
  ks_append(&loop, ks_assign(p, 0, kx_bin(p, BIN_ADD, kx_vlocal(p, 0, DT_F32, W), xv)));
  Stmt *l = ks_loop(p, 0, kx_i(p, N), loop);
  l->step = W, l->width = W, l->loop = LOOP_VECTOR;
  Stmt *s = ks_local(p, 0, DT_F32, kx_broadcast(p, kx_f(p, 0), W));
  ks_append(&s, l);
  ks_append(&s, ks_store(p, t->s, kx_i(p, 0), kx_reduce(p, BIN_ADD, kx_vlocal(p, 0, DT_F32, W))));
  return s;
}

static CModule *build_c_scalars(const Program *p, RtError *err) {
  return cg_c_build(p, "-O1 -DDLC_VECTORS=0 -Wall -Wextra -pedantic -Werror", err);
}

/* The C prints such a kernel twice: in dlc_f32x8 vectors (GCC and Clang)
 * and in scalars (DLC_VECTORS 0, other compilers); both, and the JIT,
 * give the values computed here, the sum in pairwise order. */
Test(klanes, c_prints_vectors_and_scalars_that_agree) {
  CModule *(*builds[3])(const Program *, RtError *) = {build_c, build_c_scalars, cg_jit_build};
  static const char *const names[3] = {"C vectors", "C scalars", "JIT"};
  for (int b = 0; b < 3; b++) {
    Lanes t;
    lanes_init(&t);
    lanes_kernel(&t, arith_body(&t), 1, 2);
    cr_assert_eq(kir_verify(&t.p, &t.d), 0, "%s", t.msgs);
    if (b == 0) {
      char *c = emit_c_text(&t);
      cr_expect(strstr(c, "typedef float dlc_f32x8 __attribute__((vector_size(32)));\n"), "%s", c);
      cr_expect(strstr(c, "#if DLC_VECTORS\n    dlc_f32x8 v0 = dlc_bcast_f32x8(0.0f);\n"), "%s", c);
      cr_expect(strstr(c, "dlc_store_f32x8(&out_y[i0], ((v1 * v1) - (dlc_load_f32x8(&in_x[i0]) / dlc_bcast_f32x8(3.0f))));\n"),
                "%s", c);
      cr_expect(strstr(c, "out_s[0] = dlc_sum_f32x8((dlc_f32x8[1]){v0});\n#else\n"), "%s", c);
      cr_expect(strstr(c, "float v0_7 = 0.0f;\n"), "the scalar form follows:\n%s", c);
      free(c);
    }
    RtError err;
    CModule *m = builds[b](&t.p, &err);
    cr_assert_not_null(m, "%s: %s", names[b], err.msg);
    float x[N], bias[1], y[N], s[1] = {0};
    inputs(x, bias);
    void *args[4] = {x, bias, y, s};
    cr_assert_eq(cg_c_call(m, "forward", NULL, args, &err), RT_OK, "%s", err.msg);
    for (int i = 0; i < N; i++) {
      float v = x[i] * 2.0f + bias[0], want = v * v - x[i] / 3.0f;
      cr_expect(y[i] == want, "%s y[%d] = %.9g, want %.9g", names[b], i, y[i], want);
    }
    cr_expect(s[0] == pairwise_sum(x), "%s: sum %.9g, want %.9g (pairwise)", names[b], s[0], pairwise_sum(x));
    cg_c_free(m);
    lanes_free(&t);
  }
}

/* Zips (kernel.h): rows r0..r3 of x[0..15], 4 lanes each, transposed by
 * two rounds of zips of rows i and i + 2 into rows 2i and 2i + 1, into
 * y[0..15]; and y<8>[16] = zip_lo(x<8>[16], x<8>[24]), y<8>[24] =
 * zip_hi(x<8>[16], x<8>[24]); s[0] = b[0]. */
static Stmt *zip_body(Lanes *t) {
  Program *p = &t->p;
  Stmt *s = NULL;
  int row[4], next[4], id = 0;
  for (int r = 0; r < 4; r++) {
    row[r] = id++;
    ks_append(&s, ks_local(p, row[r], DT_F32, kx_load_lanes(p, t->x, kx_i(p, 4 * r), 4)));
  }
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 2; i++)
      for (int hi = 0; hi < 2; hi++) {
        next[2 * i + hi] = id++;
        Expr *z = kx_zip(p, kx_vlocal(p, row[i], DT_F32, 4), kx_vlocal(p, row[i + 2], DT_F32, 4), hi);
        ks_append(&s, ks_local(p, next[2 * i + hi], DT_F32, z));
      }
    memcpy(row, next, sizeof row);
  }
  for (int r = 0; r < 4; r++) ks_append(&s, ks_store(p, t->y, kx_i(p, 4 * r), kx_vlocal(p, row[r], DT_F32, 4)));
  Expr *a = kx_load_lanes(p, t->x, kx_i(p, 16), W), *b = kx_load_lanes(p, t->x, kx_i(p, 24), W);
  ks_append(&s, ks_store(p, t->y, kx_i(p, 16), kx_zip(p, a, b, 0)));
  ks_append(&s, ks_store(p, t->y, kx_i(p, 24), kx_zip(p, a, b, 1)));
  ks_append(&s, ks_store(p, t->s, kx_i(p, 0), kx_load(p, t->b, kx_i(p, 0))));
  return s;
}

static void expect_zipped(const float *x, const float *y, const char *what) {
  for (int r = 0; r < 4; r++)
    for (int c = 0; c < 4; c++)
      cr_expect(y[4 * r + c] == x[4 * c + r], "%s: y[%d] = %g, want x[%d] = %g", what, 4 * r + c, y[4 * r + c], 4 * c + r,
                x[4 * c + r]);
  for (int m = 0; m < W / 2; m++) {
    cr_expect(y[16 + 2 * m] == x[16 + m] && y[17 + 2 * m] == x[24 + m], "%s: zip_lo lanes %d, %d", what, 2 * m, 2 * m + 1);
    cr_expect(y[24 + 2 * m] == x[16 + W / 2 + m] && y[25 + 2 * m] == x[24 + W / 2 + m], "%s: zip_hi lanes %d, %d", what,
              2 * m, 2 * m + 1);
  }
}

/* The evaluator, the C in vectors and in scalars (warning-free) and the
 * JIT all move each lane where kernel.h says; the dump names the zips
 * and the C prints them with the compiler's shuffle builtin. */
Test(klanes, zips_interleave_halves_and_transpose_in_every_backend) {
  CModule *(*builds[3])(const Program *, RtError *) = {build_c, build_c_scalars, cg_jit_build};
  static const char *const names[3] = {"C vectors", "C scalars", "JIT"};
  float x[N];
  for (int i = 0; i < N; i++) x[i] = (float)(i * 7 % 32) - 10.5f;
  for (int b = -1; b < 3; b++) {
    Lanes t;
    lanes_init(&t);
    lanes_kernel(&t, zip_body(&t), 0, 12);
    int bad = kir_verify(&t.p, &t.d);
    fflush(t.f);
    cr_assert_eq(bad, 0, "%s", t.msgs);
    float bias[1] = {0}, y[N], s[1] = {0};
    void *args[4] = {x, bias, y, s};
    RtError err;
    memset(y, 0, sizeof y);
    if (b < 0) {
      char *text = hk_dump(&t.p);
      cr_expect(strstr(text, "local v4: f32x4 = zip_lo(v0, v2)\n") && strstr(text, "local v5: f32x4 = zip_hi(v0, v2)\n"),
                "%s", text);
      free(text);
      char *c = emit_c_text(&t);
      cr_expect(strstr(c, "#define dlc_ziphi_f32x8(a, b) __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15)\n"), "%s", c);
      cr_expect(strstr(c, "#define dlc_ziplo_f32x4(a, b) __builtin_shuffle(a, b, (dlc_i32x4){0, 4, 1, 5})\n"), "%s", c);
      free(c);
      RtTensorSet none;
      rt_set_init(&none);
      KevalArgs a = {NULL, args, &none};
      cr_assert_eq(kir_eval(&t.p, &t.p.funcs[0], &a, &err), RT_OK, "%s", err.msg);
      rt_set_free(&none);
      expect_zipped(x, y, "keval");
    } else {
      CModule *m = builds[b](&t.p, &err);
      cr_assert_not_null(m, "%s: %s", names[b], err.msg);
      cr_assert_eq(cg_c_call(m, "forward", NULL, args, &err), RT_OK, "%s", err.msg);
      expect_zipped(x, y, names[b]);
      cg_c_free(m);
    }
    lanes_free(&t);
  }
}

Test(klanes, verifier_rejects_a_zip_of_other_lanes) {
  Lanes t;
  lanes_init(&t);
  Program *p = &t.p;
  Expr *z = kx_zip(p, kx_load_lanes(p, t.x, kx_i(p, 0), W), kx_load_lanes(p, t.x, kx_i(p, 8), W), 0);
  z->b = kx_load_lanes(p, t.x, kx_i(p, 8), 4); /* the builder refuses it */
  expect_lanes_rejected(&t, ks_store(p, t.y, kx_i(p, 0), z), 0, 0, "operand of 4 lanes in an expression of 8 lanes");
  lanes_free(&t);
}
