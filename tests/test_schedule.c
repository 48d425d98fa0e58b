/*
 * test_schedule.c — the schedule's primitives on small hand-built
 * kernels, and its rules on lowered models.
 *
 * Each primitive rewrites the plain nest of a dense layer (y = x W^T + b,
 * 4 rows, K = 32, 4 outputs, one dot product per output as the lowering
 * writes it): the dump shows the rewrite, the verifier accepts it, and
 * the C backend and the JIT compute what the unscheduled kernel computes
 * (exactly when no sum is reordered, to rounding when one is).  Forms a
 * primitive does not handle are refused and leave the kernel as it was.
 * The rules are checked on lowered models: which kernels they rewrite and
 * into what, and that every backend agrees after them (the backend
 * agreement suites run every model through the schedule as well).
 * Register tiles are checked against the row form they replace and the
 * interpreter on the C backend (vectors and scalars) and the JIT, to
 * rounding (they add with fma), for shapes whose rows, columns and K leave remainders.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/schedule.h"
#include "tests/handkit.h"
#include "tests/testutil.h"

enum { R = 4, K = 32, J = 4 };

typedef struct Kit {
  Graph g;
  Program p;
  Diags d;
  char *msgs;
  size_t len;
  FILE *f;
  Func *fn;
  Kernel *k;
  int x, w, b, y;
  /* the loops and the accumulator of the plain nest */
  Stmt *rows, *cols, *dot;
} Kit;

static int arg_buffer(Kit *t, BufKind kind, const char *name, int64_t n) {
  Shape s = {1, {n}};
  int b = kir_buffer(&t->p, kind, DT_F32, name, &s, -1);
  t->p.bufs[b].arg = t->fn->nargs;
  t->fn->args[t->fn->nargs++] = b;
  return b;
}

/* for i0 < R { for i1 < J { local v0 = 0.0
 *   for i2 < K reduce { v0 = v0 + x[i0 * K + i2] * w[i1 * K + i2] }
 *   y[i0 * J + i1] = v0 + b[i1] } } */
static void kit_init(Kit *t) {
  t->msgs = NULL;
  t->f = open_memstream(&t->msgs, &t->len);
  diag_init(&t->d, t->f);
  ir_graph_init(&t->g, "kit", &t->d);
  kir_program_init(&t->p, &t->g);
  Program *p = &t->p;
  t->fn = kir_func(p, "forward", &t->g);
  t->fn->args = arena_alloc(&p->arena, 4 * sizeof(int));
  t->x = arg_buffer(t, BUF_INPUT, "x", R * K);
  t->w = arg_buffer(t, BUF_INPUT, "w", J * K);
  t->b = arg_buffer(t, BUF_INPUT, "b", J);
  t->y = arg_buffer(t, BUF_OUTPUT, "y", R * J);
  Expr *r = kx_var(p, 0), *j = kx_var(p, 1), *k = kx_var(p, 2);
  Expr *xv = kx_load(p, t->x, kx_iadd(p, kx_imul(p, r, kx_i(p, K)), k));
  Expr *wv = kx_load(p, t->w, kx_iadd(p, kx_imul(p, j, kx_i(p, K)), k));
  t->dot = ks_loop(p, 2, kx_i(p, K), ks_assign(p, 0, kx_bin(p, BIN_ADD, kx_local(p, 0, DT_F32), kx_bin(p, BIN_MUL, xv, wv))));
  t->dot->loop = LOOP_REDUCE;
  Stmt *body = ks_local(p, 0, DT_F32, kx_f(p, 0));
  ks_append(&body, t->dot);
  ks_append(&body, ks_store(p, t->y, kx_iadd(p, kx_imul(p, r, kx_i(p, J)), j),
                            kx_bin(p, BIN_ADD, kx_local(p, 0, DT_F32), kx_load(p, t->b, j))));
  t->cols = ks_loop(p, 1, kx_i(p, J), body);
  t->rows = ks_loop(p, 0, kx_i(p, R), t->cols);
  t->k = kir_kernel(p, t->fn, "dense", (SrcLoc){0});
  t->k->body = t->rows;
  t->k->nvars = 3;
  t->k->nlocals = 1;
}

static void kit_free(Kit *t) {
  fclose(t->f);
  free(t->msgs);
  kir_program_free(&t->p);
  ir_graph_free(&t->g);
}

static void expect_verifies(Kit *t) {
  int bad = kir_verify(&t->p, &t->d);
  fflush(t->f);
  char *text = hk_dump(&t->p);
  cr_expect_eq(bad, 0, "%s\n%s", t->msgs ? t->msgs : "", text);
  free(text);
}

/* Runs the program with fixed inputs through build; y gets the output. */
static void run(const Program *p, CModule *(*build)(const Program *, RtError *), float *y) {
  float x[R * K], w[J * K], b[J];
  for (int i = 0; i < R * K; i++) x[i] = (float)sin(0.37 * i) * 1.5f;
  for (int i = 0; i < J * K; i++) w[i] = (float)cos(0.11 * i + 0.5);
  for (int i = 0; i < J; i++) b[i] = 0.25f * (float)(i + 1);
  RtError err;
  CModule *m = build(p, &err);
  cr_assert_not_null(m, "%s", err.msg);
  void *args[4] = {x, w, b, y};
  cr_assert_eq(cg_c_call(m, "forward", NULL, args, &err), RT_OK, "%s", err.msg);
  cg_c_free(m);
}

static CModule *build_c(const Program *p, RtError *err) { return cg_c_build(p, "-O1 -Wall -Wextra -Werror", err); }

/* The unscheduled kit's result. */
static void reference(float *y) {
  Kit t;
  kit_init(&t);
  run(&t.p, cg_jit_build, y);
  kit_free(&t);
}

/* The scheduled kernel computes the reference on both backends: exactly,
 * or within tol when a sum was reassociated. */
static void expect_same_results(Kit *t, double tol) {
  expect_verifies(t);
  float want[R * J], c[R * J], jit[R * J];
  reference(want);
  run(&t->p, build_c, c);
  run(&t->p, cg_jit_build, jit);
  for (int i = 0; i < R * J; i++) {
    if (tol == 0) {
      cr_expect(c[i] == want[i] && jit[i] == want[i], "y[%d]: C %.9g, JIT %.9g, want %.9g", i, c[i], jit[i], want[i]);
    } else {
      cr_expect_float_eq(c[i], want[i], tol, "C y[%d] = %.9g, want %.9g", i, c[i], want[i]);
      cr_expect_float_eq(jit[i], want[i], tol, "JIT y[%d] = %.9g, want %.9g", i, jit[i], want[i]);
    }
  }
}

static void expect_in(const Program *p, const char *what) {
  char *text = hk_dump(p);
  cr_expect(strstr(text, what) != NULL, "no '%s' in\n%s", what, text);
  free(text);
}

static void expect_not_in(const Program *p, const char *what) {
  char *text = hk_dump(p);
  cr_expect(strstr(text, what) == NULL, "'%s' left in\n%s", what, text);
  free(text);
}

/* --- primitives --------------------------------------------------------------------- */

Test(schedule, split_makes_a_stepped_loop_around_an_inner_one) {
  Kit t;
  kit_init(&t);
  cr_assert_eq(sched_split(&t.p, t.k, t.dot, 8), 3);
  expect_in(&t.p, "for i2 < 32 step 8 reduce {\n");
  expect_in(&t.p, "for i3 < 8 reduce axis 2 {\n");
  expect_in(&t.p, "b0[i0 * 32 + (i2 + i3)]");
  expect_same_results(&t, 0);
  kit_free(&t);
}

Test(schedule, split_refuses_an_extent_it_does_not_divide) {
  Kit t;
  kit_init(&t);
  char *before = hk_dump(&t.p);
  cr_expect_eq(sched_split(&t.p, t.k, t.dot, 5), -1);
  char *after = hk_dump(&t.p);
  cr_expect_str_eq(after, before);
  free(before);
  free(after);
  kit_free(&t);
}

Test(schedule, unroll_repeats_the_body_with_the_variable_substituted) {
  Kit t;
  kit_init(&t);
  cr_assert_eq(sched_split(&t.p, t.k, t.dot, 4), 3);
  cr_assert_eq(sched_unroll(&t.p, t.k, &t.dot->body), 0);
  expect_not_in(&t.p, "i3");
  expect_in(&t.p, "v0 = v0 + b0[i0 * 32 + i2] * b1[i1 * 32 + i2]\n");
  expect_in(&t.p, "v0 = v0 + b0[i0 * 32 + (i2 + 3)] * b1[i1 * 32 + (i2 + 3)]\n");
  expect_same_results(&t, 0);
  kit_free(&t);
}

Test(schedule, unroll_renames_the_locals_of_each_copy) {
  Kit t;
  kit_init(&t);
  /* unroll the loop over outputs: each copy declares its own accumulator */
  cr_assert_eq(sched_unroll(&t.p, t.k, &t.rows->body), 0);
  expect_in(&t.p, "local v0: f32 = 0.0\n");
  expect_in(&t.p, "local v1: f32 = 0.0\n");
  expect_in(&t.p, "b3[i0 * 4 + 3] = v3 + b2[3]\n");
  expect_same_results(&t, 0);
  kit_free(&t);
}

Test(schedule, promote_keeps_partial_sums_and_adds_them_pairwise) {
  Kit t;
  kit_init(&t);
  cr_assert_eq(sched_split(&t.p, t.k, t.dot, 4), 3);
  cr_assert_eq(sched_promote(&t.p, t.k, &t.cols->body, t.dot), 0);
  expect_in(&t.p, "local v1: f32[4] = 0.0\n");
  expect_in(&t.p, "v1[i3] = v1[i3] + b0[i0 * 32 + (i2 + i3)]");
  expect_in(&t.p, "local v0: f32 = v1[0] + v1[2] + (v1[1] + v1[3])\n");
  expect_same_results(&t, 1e-5);
  kit_free(&t);
}

Test(schedule, promote_refuses_an_accumulator_not_starting_at_zero) {
  Kit t;
  kit_init(&t);
  cr_assert_eq(sched_split(&t.p, t.k, t.dot, 4), 3);
  t.cols->body->value = kx_f(&t.p, 1);
  cr_expect_eq(sched_promote(&t.p, t.k, &t.cols->body, t.dot), -1);
  cr_expect_eq(t.cols->body->count, 0);
  kit_free(&t);
}

Test(schedule, scalarize_turns_a_constant_indexed_tile_into_locals) {
  Kit t;
  kit_init(&t);
  cr_assert_eq(sched_split(&t.p, t.k, t.dot, 4), 3);
  cr_assert_eq(sched_promote(&t.p, t.k, &t.cols->body, t.dot), 0);
  /* before unrolling the lanes the tile is indexed by i3: refused */
  cr_expect_eq(sched_scalarize(&t.p, t.k, &t.cols->body), -1);
  cr_assert_eq(sched_unroll(&t.p, t.k, &t.dot->body), 0);
  cr_assert_eq(sched_scalarize(&t.p, t.k, &t.cols->body), 0);
  expect_not_in(&t.p, "f32[4] = ");
  expect_in(&t.p, "local v0: f32 = v2 + v4 + (v3 + v5)\n");
  expect_same_results(&t, 1e-5);
  kit_free(&t);
}

Test(schedule, reorder_swaps_two_loops) {
  Kit t;
  kit_init(&t);
  cr_assert_eq(sched_reorder(t.rows), 0);
  expect_in(&t.p, "for i1 < 4 {\n      for i0 < 4 {\n");
  expect_same_results(&t, 0);
  /* the j loop's body is three statements: not a perfect nest */
  cr_expect_eq(sched_reorder(t.rows->body), -1);
  kit_free(&t);
}

Test(schedule, unroll_and_jam_shares_what_the_copies_have_in_common) {
  Kit t;
  kit_init(&t);
  /* hoist x[r, k] into a local first: the copies over j share it */
  Stmt *xv = ks_local(&t.p, 1, DT_F32, t.dot->body->value->b->a);
  t.k->nlocals = 2;
  t.dot->body->value->b->a = kx_local(&t.p, 1, DT_F32);
  xv->next = t.dot->body;
  t.dot->body = xv;
  cr_assert_eq(sched_unroll_jam(&t.p, t.k, &t.rows->body, 2), 0);
  expect_in(&t.p, "for i1 < 4 step 2 {\n");
  expect_in(&t.p, "local v0: f32 = 0.0\n        local v2: f32 = 0.0\n        for i2 < 32 reduce {\n"
                  "          local v1: f32 = b0[i0 * 32 + i2]\n"
                  "          v0 = v0 + v1 * b1[i1 * 32 + i2]\n"
                  "          v2 = v2 + v1 * b1[(i1 + 1) * 32 + i2]\n");
  expect_same_results(&t, 0);
  kit_free(&t);
}

Test(schedule, unroll_and_jam_drops_a_loop_left_with_one_iteration) {
  Kit t;
  kit_init(&t);
  cr_assert_eq(sched_unroll_jam(&t.p, t.k, &t.rows->body, 4), 0);
  expect_not_in(&t.p, "i1");
  expect_in(&t.p, "b3[i0 * 4 + 3] = v3 + b2[3]\n");
  expect_same_results(&t, 0);
  kit_free(&t);
}

Test(schedule, row_order_from_accumulate_fission_reorder_hoist) {
  Kit t;
  kit_init(&t);
  cr_assert_eq(sched_accumulate_in_place(&t.p, &t.cols->body), 0);
  expect_in(&t.p, "b3[i0 * 4 + i1] = b2[i1]\n        for i2 < 32 reduce {\n"
                  "          b3[i0 * 4 + i1] = b3[i0 * 4 + i1] + b0[i0 * 32 + i2] * b1[i1 * 32 + i2]\n");
  cr_assert_eq(sched_fission(&t.p, t.k, t.cols), 0);
  Stmt *second = t.cols->next;
  cr_assert_eq(sched_reorder(second), 0);
  cr_assert_eq(sched_hoist(&t.p, t.k, &second->body), 0);
  expect_in(&t.p, "for i2 < 32 reduce {\n        local v1: f32 = b0[i0 * 32 + i2]\n        for i3 < 4 axis 1 {\n"
                  "          b3[i0 * 4 + i3] = b3[i0 * 4 + i3] + v1 * b1[i3 * 32 + i2]\n");
  /* the sums now start at the bias: equal to rounding */
  expect_same_results(&t, 1e-5);
  kit_free(&t);
}

Test(schedule, hoist_leaves_loads_that_vary_or_are_stored) {
  Kit t;
  kit_init(&t);
  /* every load in the dot loop uses k */
  cr_expect_eq(sched_hoist(&t.p, t.k, &t.cols->body->next), -1);
  kit_free(&t);
}

Test(schedule, marks_and_unit_loops) {
  Kit t;
  kit_init(&t);
  cr_assert_eq(sched_mark(t.rows, LOOP_PARALLEL), 0);
  cr_assert_eq(sched_mark(t.cols, LOOP_VECTOR), 0);
  cr_expect_eq(sched_mark(t.cols, LOOP_UNROLL), -1);
  expect_in(&t.p, "for i0 < 4 parallel {\n      for i1 < 4 vector {\n");
  expect_same_results(&t, 0);
  t.rows->extent = kx_i(&t.p, 1);
  sched_drop_unit_loops(&t.p, &t.k->body);
  expect_not_in(&t.p, "i0");
  expect_in(&t.p, "b3[i1] = v0 + b2[i1]\n");
  kit_free(&t);
}

/* for i0 < R { for i1 < J { y[i0 * J + i1] = (b[i1] * 2.0 + x[i0 * K]) * w[8 + i1] } } */
static Stmt *bias_nest(Kit *t) {
  Program *p = &t->p;
  Expr *r = kx_var(p, 0), *j = kx_var(p, 1);
  Expr *v = kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, kx_load(p, t->b, j), kx_f(p, 2)),
                   kx_load(p, t->x, kx_imul(p, r, kx_i(p, K))));
  v = kx_bin(p, BIN_MUL, v, kx_load(p, t->w, kx_iadd(p, kx_i(p, 8), j)));
  Stmt *in = ks_loop(p, 1, kx_i(p, J), ks_store(p, t->y, kx_iadd(p, kx_imul(p, r, kx_i(p, J)), j), v));
  return ks_loop(p, 0, kx_i(p, R), in);
}

Test(schedule, vectorize_gives_lanes_with_the_scalar_results) {
  Kit t;
  kit_init(&t);
  t.k->body = bias_nest(&t);
  float want[R * J], c[R * J], jit[R * J];
  run(&t.p, cg_jit_build, want);
  cr_assert_eq(sched_vectorize(&t.p, t.k->body->body, 4), 0);
  expect_in(&t.p, "for i1 < 4 step 4 vector width 4 {\n");
  expect_in(&t.p, " b3<4>[i0 * 4 + i1] = (b2<4>[i1] * bcast(2.0, 4) + bcast(b0[i0 * 32], 4)) * b1<4>[8 + i1]\n");
  expect_verifies(&t);
  run(&t.p, build_c, c);
  run(&t.p, cg_jit_build, jit);
  for (int i = 0; i < R * J; i++)
    cr_expect(c[i] == want[i] && jit[i] == want[i], "y[%d]: C %.9g, JIT %.9g, want %.9g", i, c[i], jit[i], want[i]);
  kit_free(&t);
}

Test(schedule, vectorize_refuses_what_lanes_cannot_say) {
  Kit t;
  kit_init(&t);
  /* a reduction loop; a body that is not only stores */
  cr_expect_eq(sched_vectorize(&t.p, t.dot, 4), -1);
  cr_expect_eq(sched_vectorize(&t.p, t.cols, 4), -1);
  /* a width that does not divide the extent, or is no lane count */
  t.k->body = bias_nest(&t);
  cr_expect_eq(sched_vectorize(&t.p, t.k->body->body, 8), -1);
  cr_expect_eq(sched_vectorize(&t.p, t.k->body->body, 3), -1);
  /* the outer loop: its index is i0 * 4 + i1, not unit stride in i0 */
  cr_expect_eq(sched_vectorize(&t.p, t.k->body, 4), -1);
  /* after the row order, w is read at stride 32 along the inner loop */
  Kit u;
  kit_init(&u);
  cr_assert_eq(sched_accumulate_in_place(&u.p, &u.cols->body), 0);
  cr_assert_eq(sched_fission(&u.p, u.k, u.cols), 0);
  Stmt *second = u.cols->next;
  cr_assert_eq(sched_reorder(second), 0);
  cr_expect_eq(sched_vectorize(&u.p, second->body, 4), -1);
  /* while the bias loop fission split off is vectorisable */
  cr_expect_eq(sched_vectorize(&u.p, u.cols, 4), 0);
  expect_same_results(&u, 1e-5);
  kit_free(&u);
  kit_free(&t);
}

/* --- rules on lowered models -------------------------------------------------------- */

static char *dump_model(const char *src, const char *step, const char *max) {
  char args[300];
  int status;
  snprintf(args, sizeof args, "--max %s --dump-after=%s", max, step);
  char *text = tu_dump_after(src, args, &status);
  cr_assert_not_null(text);
  cr_expect_eq(status, 0, "%s", text);
  return text;
}

static const char *dense_model = "model d\ninput x: f32[N, 32]\noutput y = dense(x, 4)\n";

Test(schedule, lanes_rule_for_few_rows) {
  char *text = dump_model(dense_model, "schedule", "N=1");
  cr_expect(strstr(text, "for i2 < 32 step 16 reduce {\n") != NULL, "%s", text);
  cr_expect(strstr(text, "local v0: f32 = v2 + v10 + (v6 + v14)") != NULL, "%s", text);
  cr_expect(strstr(text, "for i0 < N parallel {\n") != NULL, "%s", text);
  free(text);
}

Test(schedule, lanes_rule_needs_k_a_multiple_of_16) {
  char *text = dump_model("model d\ninput x: f32[N, 24]\noutput y = dense(x, 4)\n", "schedule", "N=1");
  cr_expect(strstr(text, "for i2 < 24 reduce {\n") != NULL, "%s", text);
  cr_expect(strstr(text, "step") == NULL, "%s", text);
  free(text);
}

Test(schedule, row_rule_from_8_rows) {
  char *text = dump_model(dense_model, "schedule", "N=8 --no-tile"); /* the tiles take any columns */
  cr_expect(strstr(text, "derived y.weight.T : f32[32, 4]") != NULL, "%s", text);
  cr_expect(strstr(text, "b3[i0 * 4 + i3] = b3[i0 * 4 + i3] + v1 * b4[i2 * 4 + i3]") != NULL, "%s", text);
  free(text);
}

/* A computed weight has no derived layout: the kernel copies it. */
Test(schedule, row_rule_copies_a_computed_weight) {
  char *text = dump_model("model d\ninput x: f32[N, 32]\ninput w: f32[4, 32]\noutput y = linear(x, w)\n", "schedule",
                          "N=8 --no-tile");
  cr_expect(strstr(text, "temp weight_t : f32[32, 4]") != NULL, "%s", text);
  cr_expect(strstr(text, "func prepare") == NULL, "%s", text);
  free(text);
}

/* A max pool's gradient: the loop over the columns of windows is a simd
 * request (kernel.h), which the C asks of clang by a pragma that gcc
 * does not see; the emitted training step still compiles warning-free. */
static const char *pool_model = "model p\ninput x: f32[N, 2, 8, 8]\nc = conv2d(x, 3, 3, padding=1)\n"
                                "p = max_pool2d(relu(c), 2)\nf = flatten(p)\noutput y = dense(f, 4)\n"
                                "train {\n  label t: i64[N]\n  loss = cross_entropy(y, t)\n  optimizer = sgd(lr=0.1)\n"
                                "  batch = 8\n}\n";

/* The training C of model (--max max) has a line pattern matches, and
 * compiles warning-free with gcc, in its vector and scalar forms, and
 * with clang-19; returns the scratch directory it is in (model.dl, p.c). */
static const char *training_c_compiles(const char *model, const char *max, const char *pattern) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  cr_assert_eq(tu_write_file(dir, "model.dl", model), 0);
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "cd '%s' && %s model.dl --train --max %s -o p.c && grep -q '%s' p.c"
           " && gcc -std=c99 -O2 -Wall -Wextra -pedantic -Werror -c p.c -o p.o"
           " && gcc -std=c99 -O2 -Wall -Wextra -pedantic -Werror -DDLC_VECTORS=0 -c p.c -o p.o"
           " && { ! test -x /usr/bin/clang-19 || /usr/bin/clang-19 -std=c99 -O2 -Wall -Wextra -pedantic -Werror -c p.c -o p.o; }",
           dir, DLC_EXE, max, pattern);
  cr_expect_eq(system(cmd), 0, "%s", cmd);
  return dir;
}

/* The columns of windows of a max pool (windows that tile the input) and
 * of its gradient are simd requests: LLVM left both scalar, LeNet-5's p1
 * forward at half the speed of gcc's vectorised loop.  With tiles on,
 * windows 2 columns wide are in lanes instead (sched_pool.c, below). */
Test(schedule, pool_gradient_columns_are_a_simd_request, .timeout = 300) {
  char *text = dump_model(pool_model, "schedule", "N=8 --no-tile --train");
  const char *k = strstr(text, ": max_pool2d_grad");
  cr_assert_not_null(k, "%s", text);
  cr_expect(strstr(k, "for i2 < 4 simd {\n") != NULL, "%s", text);
  k = strstr(text, ": max_pool2d p  #");
  cr_assert_not_null(k, "%s", text);
  const char *simd = strstr(k, "for i2 < 4 simd {\n"), *next = strstr(k, "\n  kernel ");
  cr_expect(simd != NULL && (next == NULL || simd < next), "the forward pool's columns:\n%s", text);
  free(text);
  training_c_compiles(pool_model, "N=8 --no-tile", "pragma clang loop vectorize(assume_safety)");
}

/* With tiles on, the same columns (windows 2 x 2, 4 of them per row) are
 * vectors of 4: the taps unzipped from two loads per row of the window,
 * the gradient's two columns zipped back; no simd loop is left, and the
 * C has the vector form, warning-free in both its forms. */
Test(schedule, pool_columns_two_wide_are_in_lanes, .timeout = 300) {
  char *text = dump_model(pool_model, "schedule", "N=8 --train");
  const char *grad = strstr(text, ": max_pool2d_grad"), *fwd = strstr(text, ": max_pool2d p  #");
  cr_assert(grad && fwd, "%s", text);
  cr_expect(strstr(grad, "unzip_odd(b") && strstr(grad, "= zip_hi("), "the gradient:\n%s", text);
  const char *next = strstr(fwd, "\n  kernel "), *u = strstr(fwd, "unzip_even(b");
  cr_expect(u && (!next || u < next), "the forward pool:\n%s", text);
  cr_expect(!strstr(text, " simd {\n"), "%s", text);
  free(text);
  training_c_compiles(pool_model, "N=8", "dlc_zipeven_f32x4(");
}

/* The register tiles' reduction over a packed panel asks for the panel's
 * lines 8 steps of K ahead (a panel of fewer than 64 steps: not); the C
 * prefetches them, warning-free in both its forms, and so does the LLVM
 * module; the training step's panels, packed each call, too. */
static const char *prefetch_model = "model d\ninput x: f32[N, 128]\nh = dense(x, 64)\noutput y = relu(h)\n"
                                    "train {\n  label t: i64[N]\n  loss = cross_entropy(h, t)\n  optimizer = sgd(lr=0.1)\n"
                                    "  batch = 8\n}\n";

Test(schedule, packed_panels_are_prefetched_ahead_of_the_reduction, .timeout = 300) {
  char *text = dump_model(prefetch_model, "schedule", "N=32");
  cr_expect(strstr(text, "for i6 < 128 reduce prefetch 8 {\n") != NULL, "%s", text);
  free(text);
  text = dump_model(prefetch_model, "schedule", "N=32 --train");
  cr_expect(strstr(text, " reduce prefetch 8 {\n") != NULL, "the training step's own packed panels:\n%s", text);
  free(text);
  text = dump_model("model d\ninput x: f32[N, 32]\noutput y = dense(x, 64)\n", "schedule", "N=32");
  cr_expect(strstr(text, " reduce {\n") != NULL && strstr(text, "prefetch") == NULL, "K = 32:\n%s", text);
  free(text);
  const char *dir = training_c_compiles(prefetch_model, "N=32", "DLC_PREFETCH(t[0-9]*, ");
  char cmd[1000];
  snprintf(cmd, sizeof cmd, "cd '%s' && %s model.dl --max N=32 --emit=llvm -o p.ll && grep -q 'call void @llvm.prefetch' p.ll"
           " && %s model.dl --max N=32 -o q.c && grep -q 'DLC_PREFETCH(D_h_weight_panels64, ' q.c",
           dir, DLC_EXE, DLC_EXE);
  cr_expect_eq(system(cmd), 0, "%s", cmd);
}

/* A training step packs its weights' panels every call: in blocks of 16
 * steps of k by 16 columns, transposed in registers by zips, when K and
 * the panel's columns are multiples of 16 (the prefetch model's 128 x
 * 64); the C compiles warning-free in its vector form (gcc's shuffle
 * builtin and clang's) and its scalar form (the JIT: test_klanes.c).
 * K = 100 is packed a float at a time, as before. */
Test(schedule, training_panels_are_transposed_in_registers, .timeout = 300) {
  char *text = dump_model(prefetch_model, "schedule", "N=32 --train");
  cr_expect(strstr(text, " = zip_lo(v2, v10)\n") != NULL && strstr(text, " = zip_hi(v9, v17)\n") != NULL, "%s", text);
  free(text);
  text = dump_model("model d\ninput x: f32[N, 100]\nh = dense(x, 64)\noutput y = relu(h)\n"
                    "train {\n  label t: i64[N]\n  loss = cross_entropy(h, t)\n  optimizer = sgd(lr=0.1)\n  batch = 8\n}\n",
                    "schedule", "N=32 --train");
  cr_expect(strstr(text, "zip_") == NULL, "K = 100:\n%s", text);
  free(text);
  training_c_compiles(prefetch_model, "N=32", "dlc_ziphi_f32x16(v");
}

/* Overlapping windows: the gradient adds into elements other windows
 * share, so no loop over them is simd. */
Test(schedule, overlapping_pool_windows_are_no_simd_request, .timeout = 300) {
  char *text = dump_model("model p\ninput x: f32[N, 2, 8, 8]\nc = conv2d(x, 3, 3, padding=1)\n"
                          "p = max_pool2d(relu(c), 3, stride=2)\nf = flatten(p)\noutput y = dense(f, 4)\n"
                          "train {\n  label t: i64[N]\n  loss = cross_entropy(y, t)\n  optimizer = sgd(lr=0.1)\n"
                          "  batch = 8\n}\n",
                          "schedule", "N=8 --train");
  cr_assert_not_null(strstr(text, ": max_pool2d_grad"), "%s", text);
  cr_expect(strstr(text, " simd") == NULL, "%s", text);
  free(text);
}

Test(schedule, channel_block_rule) {
  /* 6 output channels: blocks of 2; the conv_transpose2d of 16 in 2 groups: of 4 (--no-tile: the
   * register tiles take the conv2d otherwise, test_conv_tiles.c; one group's transpose is rows of
   * taps, test_conv_transpose_fast.c) */
  char *text = dump_model("model c\ninput x: f32[N, 1, 8, 8]\nh = conv2d(x, 6, kernel=3)\n"
                          "output y = conv_transpose2d(h, 16, kernel=3, groups=2)\n", "schedule", "N=2 --no-tile");
  cr_expect(strstr(text, "step 2 {") != NULL, "conv2d blocked by 2:\n%s", text);
  cr_expect(strstr(text, "step 4 {") != NULL, "conv_transpose2d blocked by 4:\n%s", text);
  free(text);
}

/* --- register tiles ------------------------------------------------------------------ */

/* y = dense(x, J) (with a bias or not) for x of up to maxn rows of K. */
typedef struct Dense {
  Model m;
  Diags d;
  RtTensor x, w, b;
  int64_t maxn, K, J;
} Dense;

static RtTensor filled(int rank, const int64_t *shape, double phase) {
  RtTensor t;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, rank, shape, &err), RT_OK);
  float *v = t.data;
  for (int64_t i = 0; i < rt_tensor_numel(&t); i++) v[i] = (float)sin(0.7 * (double)i + phase) * 0.5f;
  return t;
}

static void dense_init(Dense *t, int64_t maxn, int64_t nk, int64_t nj, int bias) {
  char src[256];
  snprintf(src, sizeof src, "model t\ninput x: f32[N, %lld]\noutput y = dense(x, %lld%s)\n", (long long)nk, (long long)nj,
           bias ? "" : ", bias=false");
  diag_init(&t->d, stderr);
  cr_assert_eq(fe_load_string(&t->m, "t.dl", src, &t->d), 0);
  t->m.g.syms[0].max = maxn;
  t->maxn = maxn, t->K = nk, t->J = nj;
  int64_t xs[2] = {maxn, nk}, ws[2] = {nj, nk};
  t->x = filled(2, xs, 0.3);
  t->w = filled(2, ws, 1.1);
  t->b = filled(1, &nj, 2.0);
}

static void dense_free(Dense *t) {
  rt_tensor_free(&t->x);
  rt_tensor_free(&t->w);
  rt_tensor_free(&t->b);
  fe_model_free(&t->m);
}

/* The dump of the model's forward after the schedule (o). */
static char *dense_dump(Dense *t, const SchedOpts *o) {
  Program p;
  kir_program_init(&p, &t->m.g);
  pass_lower(&p, kir_func(&p, "forward", &t->m.g));
  sched_program(&p, o);
  cr_expect_eq(kir_verify(&p, &t->d), 0);
  char *text = hk_dump(&p);
  kir_program_free(&p);
  return text;
}

/* y for the first n rows, through the schedule o and the backend: the
 * C backend with cflags, or the JIT when cflags is NULL. */
static void dense_run(Dense *t, const SchedOpts *o, const char *cflags, int64_t n, float *y) {
  Program p;
  RtError err;
  kir_program_init(&p, &t->m.g);
  pass_lower(&p, kir_func(&p, "forward", &t->m.g));
  sched_program(&p, o);
  pass_memplan(&p);
  CModule *mod = cflags ? cg_c_build(&p, cflags, &err) : cg_jit_build(&p, &err);
  cr_assert_not_null(mod, "%s", err.msg);
  RtTensorSet params;
  rt_set_init(&params);
  RtTensor w = t->w, b = t->b; /* the set takes copies */
  w.data = malloc(rt_tensor_nbytes(&w)), b.data = malloc(rt_tensor_nbytes(&b));
  memcpy(w.data, t->w.data, rt_tensor_nbytes(&w));
  memcpy(b.data, t->b.data, rt_tensor_nbytes(&b));
  cr_assert_eq(rt_set_add(&params, "y.weight", &w, &err), RT_OK);
  if (ir_find_param(&t->m.g, "y.bias") >= 0) cr_assert_eq(rt_set_add(&params, "y.bias", &b, &err), RT_OK);
  else free(b.data);
  cr_assert_eq(cg_c_set_params(mod, &params, &err), RT_OK, "%s", err.msg);
  int64_t sym[IR_MAX_SYMS] = {n};
  void *args[2] = {t->x.data, y};
  cr_assert_eq(cg_c_call(mod, "forward", sym, args, &err), RT_OK, "%s", err.msg);
  rt_set_free(&params);
  cg_c_free(mod);
  kir_program_free(&p);
}

/* The interpreter's y for the first n rows. */
static void dense_reference(Dense *t, int64_t n, float *y) {
  Graph *g = &t->m.g;
  RtTensor *vals = calloc((size_t)g->nnodes, sizeof *vals);
  RtError err;
  int64_t xs[2] = {n, t->K}, sym[IR_MAX_SYMS] = {n};
  cr_assert_eq(rt_tensor_alloc(&vals[ir_find_input(g, "x")], DT_F32, 2, xs, &err), RT_OK);
  memcpy(vals[ir_find_input(g, "x")].data, t->x.data, sizeof(float) * (size_t)(n * t->K));
  vals[ir_find_param(g, "y.weight")] = t->w;
  int bi = ir_find_param(g, "y.bias");
  if (bi >= 0) vals[bi] = t->b;
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(g, vals, sym, &io, &err), RT_OK, "%s", err.msg);
  memcpy(y, vals[g->outputs[0].id].data, sizeof(float) * (size_t)(n * t->J));
  vals[ir_find_param(g, "y.weight")] = (RtTensor){0};
  if (bi >= 0) vals[bi] = (RtTensor){0};
  for (int i = 0; i < g->nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
}

/* Tiles against the interpreter, which sums in double (norm-wise 1e-5,
 * as the backend suites), on the C backend in vectors and in scalars and
 * on the JIT; and against the row form to the same measure (each output
 * adds its terms in the row form's order, but with fma: not bit for bit).
 * test_gemm.c checks each element against the summation bound. */
static void expect_tiles_agree(int64_t maxn, int64_t n, int64_t nk, int64_t nj, int bias) {
  Dense t;
  dense_init(&t, maxn, nk, nj, bias);
  size_t sz = sizeof(float) * (size_t)(n * nj);
  float *want = malloc(sz), *rows = malloc(sz), *got = malloc(sz);
  SchedOpts tiles = {1}, plain = {0};
  dense_reference(&t, n, want);
  dense_run(&t, &plain, "-O1", n, rows);
  static const char *const flags[3] = {"-O1 -Wall -Wextra -pedantic -Werror", "-O1 -DDLC_VECTORS=0 -Wall -Wextra -Werror", NULL};
  for (int b = 0; b < 3; b++) {
    memset(got, 0, sz);
    dense_run(&t, &tiles, flags[b], n, got);
    const char *what = flags[b] ? flags[b] : "JIT";
    double worst = 0, from_rows = 0;
    for (int64_t i = 0; i < n * nj; i++) {
      worst = fmax(worst, tu_normerr(got, want, n * nj, i));
      from_rows = fmax(from_rows, tu_normerr(got, rows, n * nj, i));
    }
    cr_expect(worst <= 1e-5, "%s, N=%lld K=%lld J=%lld: norm-wise error %g against the interpreter", what, (long long)n,
              (long long)nk, (long long)nj, worst);
    cr_expect(from_rows <= 1e-5, "%s, N=%lld K=%lld J=%lld: norm-wise error %g against the row form", what, (long long)n,
              (long long)nk, (long long)nj, from_rows);
  }
  free(want), free(rows), free(got);
  dense_free(&t);
}

Test(schedule, register_tiles_cover_256_columns_in_6x4_tiles) {
  Dense t;
  dense_init(&t, 64, 784, 256, 1);
  SchedOpts on = {1}, off = {0};
  char *text = dense_dump(&t, &on), *rows = dense_dump(&t, &off);
  /* 4 panels of 64 columns (parallel), read from the weight's panels (an inference program:
   * a derived layout, made once), packed by no call */
  cr_expect(strstr(text, "for i4 < 4 parallel axis 1 {\n") != NULL, "%s", text);
  cr_expect(strstr(text, "b4 derived y.weight.panels64 : f32[256, 784]") != NULL, "%s", text);
  cr_expect(strstr(text, "temp panels") == NULL, "%s", text);
  /* rows in tiles of 6 (N is a multiple of 6 only at run time: clamped), columns in 4 vectors of 16 */
  cr_expect(strstr(text, "for i5 < N step 6 {\n") != NULL, "%s", text);
  cr_expect(strstr(text, "local v5: f32x16 = b4<16>[i4 * 64 * 784 + (i6 * 64 + 48)]\n") != NULL, "B read once per k:\n%s", text);
  cr_expect(strstr(text, "local v35: i64 = max(min(i5 + 5, N + -1), i5)\n") != NULL, "the row once per tile:\n%s", text);
  cr_expect(strstr(text, "local v36: f32x16 = bcast(b0[v35 * 784 + i6], 16)\n") != NULL, "%s", text);
  cr_expect(strstr(text, "v40 = fma(v36, v5, v40)\n") != NULL, "%s", text);
  cr_expect(strstr(text, "local v7: f32x16 = b2<16>[i4 * 64]\n") != NULL, "each tile starts at the bias:\n%s", text);
  cr_expect(strstr(text, "b3<16>[v35 * 256 + (i4 * 64 + 48)] = v40\n") != NULL, "%s", text);
  /* without tiles: the row form */
  cr_expect(strstr(rows, "f32x16") == NULL && strstr(rows, "for i0 < N parallel {\n") != NULL, "%s", rows);
  free(text);
  free(rows);
  dense_free(&t);
}

Test(schedule, register_tiles_leave_columns_to_narrower_vectors) {
  Dense t;
  dense_init(&t, 8, 20, 40, 1); /* 2.5 vectors of columns: one panel of 2, then 8 columns in one vector of 8 */
  SchedOpts on = {1};
  char *text = dense_dump(&t, &on);
  /* tiles of 4 rows (below 32 rows); with fewer than 4 tiles the panels would be the parallel loop,
   * but each group here is one panel, so each takes its rows on the threads */
  cr_expect(strstr(text, "for i5 < N step 4 parallel axis 0 {\n") != NULL, "tiles of 4 rows below 32 rows:\n%s", text);
  cr_expect(strstr(text, "local v3: f32x16 = b4<16>[i6 * 32 + 16]\n") != NULL, "%s", text);
  cr_expect(strstr(text, "for i8 < N step 4 parallel axis 0 {\n") != NULL, "the rest in tiles too:\n%s", text);
  cr_expect(strstr(text, "local v19: f32x8 = b4<8>[640 + i9 * 8]\n") != NULL, "%s", text);
  free(text);
  dense_free(&t);
  /* fewer columns than a vector: 10 = 8 + 2 */
  dense_init(&t, 8, 20, 10, 1);
  text = dense_dump(&t, &on);
  cr_expect(strstr(text, "f32x16") == NULL, "%s", text);
  cr_expect(strstr(text, "local v2: f32x8 = b4<8>[i6 * 10]\n") != NULL, "%s", text);
  cr_expect(strstr(text, "local v3: f32x2 = b4<2>[i6 * 10 + 8]\n") != NULL, "%s", text);
  free(text);
  dense_free(&t);
}

Test(schedule, register_tiles_agree_with_the_row_form_and_interpreter) {
  expect_tiles_agree(8, 8, 32, 64, 1);     /* whole tiles only */
  expect_tiles_agree(10, 10, 37, 40, 1);   /* K odd, J a tile pass and a rest, N not a multiple of 4 */
  expect_tiles_agree(12, 5, 19, 120, 0);   /* no bias, 5 of 12 rows at run time, a narrower second pass */
  expect_tiles_agree(16, 1, 24, 84, 1);    /* one row: the tile computes it four times */
  expect_tiles_agree(40, 37, 24, 64, 1);   /* tiles of 6 rows, the last clamped */
}

/* dlc --no-tile leaves the row order (the switch for comparing, and for
 * a C compiler that does the vector form badly). */
Test(schedule, no_tile_flag_keeps_the_row_order) {
  const char *src = "model d\ninput x: f32[N, 32]\noutput y = dense(x, 64)\n";
  char *tiled = dump_model(src, "schedule", "N=8"), *rows = dump_model(src, "schedule", "N=8 --no-tile");
  cr_expect(strstr(tiled, "for i5 < N step 4 parallel axis 0 {\n") != NULL && strstr(tiled, "fma(") != NULL, "%s", tiled);
  cr_expect(strstr(rows, "f32x16") == NULL && strstr(rows, "v1 * b4[i2 * 64 + i3]\n") != NULL, "%s", rows);
  free(tiled);
  free(rows);
}
