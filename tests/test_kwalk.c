/*
 * test_kwalk.c — the kernel IR's shared traversal and its newer
 * constructs.
 *
 * Walker: a walk visits every statement and expression once, in order,
 * and stops when a callback says so; a clone prints exactly as its
 * original and shares no node with it; a substitution replaces a loop
 * variable everywhere and leaves the original untouched.
 *
 * Constructs (if/else, local arrays, loops with a step): one hand-built
 * kernel uses all three; the verifier accepts it, rejects an array
 * indexed past its end and an if on a non-condition, and the C backend
 * and the JIT both compute what the test computes directly.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/handkit.h"
#include "tests/testutil.h"

static int count_expr(void *ctx, const Expr *e) {
  (void)e;
  ++*(int *)ctx;
  return 0;
}

static int count_stmt(void *ctx, const Stmt *s) {
  (void)s;
  ++*(int *)ctx;
  return 0;
}

static int stop_at_if(void *ctx, const Stmt *s) {
  ++*(int *)ctx;
  return s->kind == ST_IF ? 7 : 0;
}

Test(kwalk, walk_visits_every_node_and_stops_when_asked) {
  HandKit k;
  hk_init(&k);
  Stmt *s = hk_pairs(&k);
  int nexpr = 0, nstmt = 0;
  KirVisitor ve = {&nexpr, NULL, count_expr}, vs = {&nstmt, count_stmt, NULL};
  kir_walk_block(&ve, s);
  kir_walk_block(&vs, s);
  /* statements: loop, local, loop, assign, if, store, store, store */
  cr_expect_eq(nstmt, 8);
  /* extents 1 + 1, the array's value 1, the assign 7, the condition 4,
   * the two branches 6 each, the last store 5 */
  cr_expect_eq(nexpr, 31);
  int seen = 0;
  KirVisitor stop = {&seen, stop_at_if, NULL};
  cr_expect_eq(kir_walk_block(&stop, s), 7);
  cr_expect_eq(seen, 5, "stopped at the if, the fifth statement (saw %d)", seen);
  hk_free(&k);
}

Test(kwalk, clone_prints_the_same_and_shares_nothing) {
  HandKit k;
  hk_init(&k);
  Stmt *s = hk_pairs(&k);
  hk_kernel(&k, s, 2, 1);
  char *before = hk_dump(&k.p);
  Stmt *c = kir_clone_block(&k.p, s);
  cr_assert_neq(c, s);
  cr_expect_neq(c->body, s->body);
  cr_expect_neq(c->extent, s->extent);
  k.fn->kernels[0].body = c;
  char *after = hk_dump(&k.p);
  cr_expect_str_eq(after, before);
  free(before);
  free(after);
  hk_free(&k);
}

Test(kwalk, substitution_replaces_the_variable_and_keeps_the_original) {
  HandKit k;
  hk_init(&k);
  Program *p = &k.p;
  Stmt *s = hk_pairs(&k);
  Stmt *inner = s->body;   /* the loop body, over i0 */
  hk_kernel(&k, inner, 2, 1);
  Stmt *body = kir_subst_block(p, inner, 0, kx_i(p, 4));
  k.fn->kernels[0].body = body;
  char *text = hk_dump(p);
  cr_expect(strstr(text, "i0") == NULL, "i0 left after substitution:\n%s", text);
  cr_expect(strstr(text, "b0[4]") != NULL, "x[4] expected:\n%s", text);
  k.fn->kernels[0].body = inner;
  char *orig = hk_dump(p);
  cr_expect(strstr(orig, "b0[i0]") != NULL, "original changed:\n%s", orig);
  free(text);
  free(orig);
  hk_free(&k);
}

Test(kwalk, verifier_accepts_if_arrays_and_steps) {
  HandKit k;
  hk_init(&k);
  hk_kernel(&k, hk_pairs(&k), 2, 1);
  int bad = kir_verify(&k.p, &k.d);
  fflush(k.f);
  cr_expect_eq(bad, 0, "%s", k.msgs ? k.msgs : "");
  hk_free(&k);
}

Test(kwalk, verifier_rejects_an_array_index_past_its_end) {
  HandKit k;
  hk_init(&k);
  Program *p = &k.p;
  Stmt *s = ks_local_array(p, 0, DT_F32, 2, kx_f(p, 0));
  ks_append(&s, ks_store(p, k.out, kx_i(p, 0), kx_elem(p, 0, DT_F32, kx_i(p, 2))));
  hk_kernel(&k, s, 0, 1);
  cr_expect_gt(kir_verify(&k.p, &k.d), 0);
  fflush(k.f);
  cr_expect(k.msgs && strstr(k.msgs, "local array v0 at indices [2, 2], outside its 2 elements"), "%s", k.msgs);
  hk_free(&k);
}

Test(kwalk, verifier_rejects_an_if_on_a_value) {
  HandKit k;
  hk_init(&k);
  Program *p = &k.p;
  Stmt *s = ks_if(p, kx_bool(p, 1), ks_store(p, k.out, kx_i(p, 0), kx_f(p, 1)), NULL);
  s->value = kx_load(p, k.in, kx_i(p, 0)); /* ks_if itself refuses it */
  hk_kernel(&k, s, 0, 0);
  cr_expect_gt(kir_verify(&k.p, &k.d), 0);
  fflush(k.f);
  cr_expect(k.msgs && strstr(k.msgs, "if condition is f32, not bool"), "%s", k.msgs);
  hk_free(&k);
}

static void run_pairs(CModule *(*build)(const Program *, RtError *), const char *what) {
  HandKit k;
  hk_init(&k);
  hk_kernel(&k, hk_pairs(&k), 2, 1);
  RtError err;
  CModule *m = build(&k.p, &err);
  cr_assert_not_null(m, "%s: %s", what, err.msg);
  float x[8] = {1, -2, -3, 4, 0.5f, 6, -7, -8}, y[8] = {0}, want[8];
  for (int i = 0; i < 8; i += 2) {
    float a = x[i] * 3, b = x[i + 1] * 3;
    want[i] = x[i] > 0 ? a + b : a - b;
    want[i + 1] = b;
  }
  void *args[2] = {x, y};
  cr_assert_eq(cg_c_call(m, "forward", NULL, args, &err), RT_OK, "%s: %s", what, err.msg);
  for (int i = 0; i < 8; i++) cr_expect_float_eq(y[i], want[i], 1e-6, "%s y[%d] = %g, want %g", what, i, y[i], want[i]);
  cg_c_free(m);
  hk_free(&k);
}

static CModule *build_c(const Program *p, RtError *err) {
  return cg_c_build(p, "-O1 -Wall -Wextra -pedantic -Werror", err);
}

Test(kwalk, c_backend_runs_if_arrays_and_steps) { run_pairs(build_c, "C"); }
Test(kwalk, jit_runs_if_arrays_and_steps) { run_pairs(cg_jit_build, "JIT"); }

/* kernel 0: t1[i] = x[i]; kernel 1: t2[i] = x[i] * 2, then y[i] = t2[i]
 * if x[i] > 0, else t1[i].  t1 is read only in an else branch, and is
 * still live while kernel 1 writes t2: the planner must not give them the
 * same storage. */
Test(kwalk, memplan_sees_a_buffer_read_only_in_an_else_branch) {
  HandKit k;
  hk_init(&k);
  Program *p = &k.p;
  Shape s = {1, {8}};
  int t1 = kir_buffer(p, BUF_TEMP, DT_F32, "t1", &s, -1), t2 = kir_buffer(p, BUF_TEMP, DT_F32, "t2", &s, -1);
  Expr *i = kx_var(p, 0);
  hk_kernel(&k, ks_loop(p, 0, kx_i(p, 8), ks_store(p, t1, i, kx_load(p, k.in, i))), 1, 0);
  Stmt *body = ks_store(p, t2, i, kx_bin(p, BIN_MUL, kx_load(p, k.in, i), kx_f(p, 2)));
  ks_append(&body, ks_if(p, kx_bin(p, BIN_GT, kx_load(p, k.in, i), kx_f(p, 0)), ks_store(p, k.out, i, kx_load(p, t2, i)),
                         ks_store(p, k.out, i, kx_load(p, t1, i))));
  hk_kernel(&k, ks_loop(p, 0, kx_i(p, 8), body), 1, 0);
  pass_memplan(p);
  int64_t a = p->bufs[t1].offset, b = p->bufs[t2].offset;
  cr_expect(a + 8 <= b || b + 8 <= a, "t1 at %lld and t2 at %lld overlap", (long long)a, (long long)b);
  hk_free(&k);
}
