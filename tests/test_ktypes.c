/*
 * test_ktypes.c — the typed kernel IR means the same in both emitters.
 *
 * One hand-built kernel uses what the type system added: a guarded load
 * whose index runs past the end of its buffer where the guard is false, a
 * bool local made of || and comparisons and cast to f32, f64 arithmetic
 * with an f64 constant that f32 cannot hold (0.1), f64 max with a NaN
 * operand, casts from f32 to i64 (truncation of negatives), from u8 (200
 * stays 200), i32 arithmetic, and an i64 product of two constants whose
 * value does not fit in 32 bits.  The C backend and the JIT must both give
 * exactly the values the test computes from kernel.h's definitions.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/handkit.h"
#include "tests/testutil.h"

enum { N = 8 };

typedef struct Typed {
  Graph g;
  Program p;
  Diags d;
  int x, u, y, z, w;   /* inputs f32[8], u8[8]; outputs f32[8], i64[8], f64[8] */
} Typed;

static void typed_init(Typed *t) {
  diag_init(&t->d, stderr);
  ir_graph_init(&t->g, "typed", &t->d);
  kir_program_init(&t->p, &t->g);
  Shape s = {1, {N}};
  t->x = kir_buffer(&t->p, BUF_INPUT, DT_F32, "x", &s, -1);
  t->u = kir_buffer(&t->p, BUF_INPUT, DT_U8, "u", &s, -1);
  t->y = kir_buffer(&t->p, BUF_OUTPUT, DT_F32, "y", &s, -1);
  t->z = kir_buffer(&t->p, BUF_OUTPUT, DT_I64, "z", &s, -1);
  t->w = kir_buffer(&t->p, BUF_OUTPUT, DT_F64, "w", &s, -1);
  Func *fn = kir_func(&t->p, "forward", &t->g);
  int order[5] = {t->x, t->u, t->y, t->z, t->w};
  fn->args = arena_alloc(&t->p.arena, sizeof order);
  for (int a = 0; a < 5; a++) fn->args[a] = order[a], t->p.bufs[order[a]].arg = a;
  fn->nargs = 5;
}

/* for i0 < 8:
 *   local v0: bool = x[i0] > 0.0 || i0 == 7
 *   y[i0] = x[i0 + 4 if i0 + 4 < 8 else -1.0] + f32(v0)
 *   z[i0] = i64(x[i0] * 100.5) + i64(u[i0]) + i64(i32(i0) * 3i32) + 60000 * 50000
 *   w[i0] = max(f64(x[i0]) * 0.1f64, 0.0f64) */
static void typed_kernel(Typed *t) {
  Program *p = &t->p;
  Expr *i = kx_var(p, 0), *xi = kx_load(p, t->x, i);
  Stmt *body = ks_local(p, 0, DT_BOOL, kx_bin(p, BIN_OR, kx_bin(p, BIN_GT, xi, kx_f(p, 0)), kx_bin(p, BIN_EQ, i, kx_i(p, 7))));
  Expr *ahead = kx_iadd(p, i, kx_i(p, 4));
  Expr *g = kx_load_guarded(p, t->x, ahead, kx_bin(p, BIN_LT, ahead, kx_i(p, N)), kx_f(p, -1));
  ks_append(&body, ks_store(p, t->y, i, kx_bin(p, BIN_ADD, g, kx_cast(p, DT_F32, kx_local(p, 0, DT_BOOL)))));
  Expr *trunc = kx_cast(p, DT_I64, kx_bin(p, BIN_MUL, xi, kx_f(p, 100.5)));
  Expr *small = kx_cast(p, DT_I64, kx_bin(p, BIN_MUL, kx_cast(p, DT_I32, i), kx_iconst(p, DT_I32, 3)));
  Expr *big = kx_bin(p, BIN_MUL, kx_i(p, 60000), kx_i(p, 50000)); /* not folded: C must not compute it in int */
  Expr *z = kx_bin(p, BIN_ADD, kx_bin(p, BIN_ADD, kx_bin(p, BIN_ADD, trunc, kx_cast(p, DT_I64, kx_load(p, t->u, i))), small), big);
  ks_append(&body, ks_store(p, t->z, i, z));
  Expr *wv = kx_bin(p, BIN_MUL, kx_cast(p, DT_F64, xi), kx_fconst(p, DT_F64, 0.1));
  ks_append(&body, ks_store(p, t->w, i, kx_bin(p, BIN_MAX, wv, kx_fconst(p, DT_F64, 0))));
  Kernel *k = kir_kernel(p, &p->funcs[0], "typed", (SrcLoc){0});
  k->body = ks_loop(p, 0, kx_i(p, N), body);
  k->nvars = 1;
  k->nlocals = 1;
}

static void run_typed(CModule *(*build)(const Program *, RtError *), const char *what) {
  Typed t;
  typed_init(&t);
  typed_kernel(&t);
  cr_assert_eq(kir_verify(&t.p, &t.d), 0, "%s: the kernel does not verify", what);
  RtError err;
  CModule *m = build(&t.p, &err);
  cr_assert_not_null(m, "%s: %s", what, err.msg);
  float x[N] = {1.25f, -2.5f, -3.75f, 4, 0.5f, NAN, -7, 0};
  uint8_t u[N] = {200, 0, 255, 1, 2, 3, 4, 5};
  float y[N] = {0};
  int64_t z[N] = {0};
  double w[N] = {0};
  void *args[5] = {x, u, y, z, w};
  cr_assert_eq(cg_c_call(m, "forward", NULL, args, &err), RT_OK, "%s: %s", what, err.msg);
  for (int i = 0; i < N; i++) {
    float yw = (i + 4 < N ? x[i + 4] : -1.0f) + (x[i] > 0 || i == 7 ? 1.0f : 0.0f);
    cr_expect(y[i] == yw || (isnan(y[i]) && isnan(yw)), "%s y[%d] = %.9g, want %.9g", what, i, y[i], yw);
    if (!isnan(x[i])) {
      int64_t zw = (int64_t)(x[i] * 100.5f) + u[i] + i * 3 + 3000000000LL;
      cr_expect_eq(z[i], zw, "%s z[%d] = %lld, want %lld", what, i, (long long)z[i], (long long)zw);
    }
    double prod = (double)x[i] * 0.1, ww = prod > 0 || prod != prod ? prod : 0.0;
    cr_expect(w[i] == ww || (isnan(w[i]) && isnan(ww)), "%s w[%d] = %.17g, want %.17g", what, i, w[i], ww);
  }
  cg_c_free(m);
  kir_program_free(&t.p);
  ir_graph_free(&t.g);
}

static CModule *build_c(const Program *p, RtError *err) {
  return cg_c_build(p, "-O1 -Wall -Wextra -pedantic -Werror", err);
}

Test(ktypes, c_backend_computes_what_kernel_h_defines) { run_typed(build_c, "C"); }
Test(ktypes, jit_computes_what_kernel_h_defines) { run_typed(cg_jit_build, "JIT"); }

Test(ktypes, dump_shows_types_and_guards) {
  Typed t;
  typed_init(&t);
  typed_kernel(&t);
  char *text = hk_dump(&t.p);
  cr_expect(strstr(text, "local v0: bool = b0[i0] > 0.0 || i0 == 7\n"), "%s", text);
  cr_expect(strstr(text, "b2[i0] = b0[i0 + 4 if i0 + 4 < 8 else -1.0] + f32(v0)\n"), "%s", text);
  cr_expect(strstr(text, "i64(i32(i0) * 3i32) + 60000 * 50000\n"), "%s", text);
  cr_expect(strstr(text, "b4[i0] = max(f64(b0[i0]) * 0.10000000000000001f64, 0.0f64)\n"), "%s", text);
  free(text);
  kir_program_free(&t.p);
  ir_graph_free(&t.g);
}

/* An f32 constant is its value rounded once to binary32 (kernel.h).  Just
 * below the midpoint of 1 and the next float, 1 + 2^-24 - 2^-40 rounds to
 * 1; printed with 9 digits first (1.00000006) it would round up instead. */
static void run_constant(CModule *(*build)(const Program *, RtError *), const char *what) {
  Typed t;
  typed_init(&t);
  Program *p = &t.p;
  double k = 1 + ldexp(1, -24) - ldexp(1, -40);
  Kernel *kn = kir_kernel(p, &p->funcs[0], "constant", (SrcLoc){0});
  kn->body = ks_store(p, t.y, kx_i(p, 0), kx_f(p, k));
  RtError err;
  CModule *m = build(p, &err);
  cr_assert_not_null(m, "%s: %s", what, err.msg);
  float x[N] = {0}, y[N] = {0};
  uint8_t u[N] = {0};
  int64_t z[N];
  double w[N];
  void *args[5] = {x, u, y, z, w};
  cr_assert_eq(cg_c_call(m, "forward", NULL, args, &err), RT_OK, "%s: %s", what, err.msg);
  cr_expect(y[0] == (float)k && y[0] == 1.0f, "%s: %.9g, want %.9g", what, y[0], (float)k);
  cg_c_free(m);
  kir_program_free(&t.p);
  ir_graph_free(&t.g);
}

static CModule *build_c_unused_args(const Program *p, RtError *err) { return cg_c_build(p, "-O1", err); }

Test(ktypes, c_rounds_f32_constants_once) { run_constant(build_c_unused_args, "C"); }
Test(ktypes, jit_rounds_f32_constants_once) { run_constant(cg_jit_build, "JIT"); }
