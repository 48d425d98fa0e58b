/*
 * bound_case.h — a one-output model run on every backend and compared,
 * element by element, with the interpreter within the float32 summation
 * bound (K + 2) * 2^-24 * sum |terms|: the interpreter also runs on the
 * absolute values of the inputs, which gives sum |terms| per output.
 * Used by the register-tile tests (test_gemm, test_conv_tiles).
 */
#ifndef DLC_TESTS_BOUND_CASE_H
#define DLC_TESTS_BOUND_CASE_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/keval.h"
#include "passes/schedule.h"
#include "tests/testutil.h"

typedef struct BoundCase {
  Model m;
  Diags d;
  RtTensor *vals, *absv;   /* per node: inputs and params, then the interpreter's values */
  int64_t n, K;            /* batch (rows) at run time, terms per output */
} BoundCase;

static inline void bc_fill(RtTensor *t, double phase) {
  float *v = t->data;
  for (int64_t i = 0; i < rt_tensor_numel(t); i++) v[i] = (float)sin(0.7 * (double)i + phase) * 0.5f;
}

/* The model src with N at most maxn, its inputs for a batch of n and its
 * params filled, and the interpreter's values on them and on their
 * absolute values. */
static inline void bc_init(BoundCase *t, const char *src, int64_t maxn, int64_t n, int64_t K) {
  diag_init(&t->d, stderr);
  cr_assert_eq(fe_load_string(&t->m, "t.dl", src, &t->d), 0, "%s", src);
  Graph *g = &t->m.g;
  g->syms[0].max = maxn;
  t->n = n, t->K = K;
  t->vals = calloc((size_t)g->nnodes, sizeof *t->vals);
  t->absv = calloc((size_t)g->nnodes, sizeof *t->absv);
  RtError err;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *nd = &g->nodes[i];
    if (nd->op != OP_INPUT && nd->op != OP_PARAM) continue;
    int64_t shape[IR_MAX_RANK];
    for (int a = 0; a < nd->shape.rank; a++) shape[a] = DIM_IS_SYM(nd->shape.d[a]) ? n : nd->shape.d[a];
    for (int v = 0; v < 2; v++) {
      RtTensor *x = v ? &t->absv[i] : &t->vals[i];
      cr_assert_eq(rt_tensor_alloc(x, DT_F32, nd->shape.rank, shape, &err), RT_OK);
      bc_fill(x, 0.3 + i);
      if (v)
        for (int64_t e = 0; e < rt_tensor_numel(x); e++) ((float *)x->data)[e] = fabsf(((float *)x->data)[e]);
    }
  }
  int64_t sym[IR_MAX_SYMS] = {n};
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(g, t->vals, sym, &io, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(ir_interp(g, t->absv, sym, &io, &err), RT_OK, "%s", err.msg);
}

static inline void bc_free(BoundCase *t) {
  for (int i = 0; i < t->m.g.nnodes; i++) rt_tensor_free(&t->vals[i]), rt_tensor_free(&t->absv[i]);
  free(t->vals);
  free(t->absv);
  fe_model_free(&t->m);
}

/* The forward program, lowered, fused, scheduled (tiles on or off) and
 * planned, as the pipeline does. */
static inline void bc_program(BoundCase *t, Program *p, int tiles) {
  kir_program_init(p, &t->m.g);
  pass_lower(p, kir_func(p, "forward", &t->m.g));
  pass_fuse_tiles(p, tiles);
  SchedOpts o = {tiles};
  sched_program(p, &o);
  pass_memplan(p);
  cr_assert_eq(kir_verify(p, &t->d), 0);
}

static inline void bc_params(BoundCase *t, RtTensorSet *params) {
  RtError err;
  const Graph *g = &t->m.g;
  rt_set_init(params);
  for (int i = 0; i < g->nnodes; i++) {
    if (g->nodes[i].op != OP_PARAM) continue;
    RtTensor c = t->vals[i]; /* the set takes a copy */
    c.data = malloc(rt_tensor_nbytes(&c));
    memcpy(c.data, t->vals[i].data, rt_tensor_nbytes(&c));
    cr_assert_eq(rt_set_add(params, g->nodes[i].name, &c, &err), RT_OK);
  }
}

static inline void bc_args(BoundCase *t, const Program *p, float *y, void **args) {
  const Func *fn = &p->funcs[0];
  cr_assert(fn->nargs <= 8);
  for (int i = 0; i < fn->nargs; i++) {
    const Buffer *b = &p->bufs[fn->args[i]];
    args[i] = b->kind == BUF_INPUT ? t->vals[b->node].data : y;
  }
}

/* Output 0 for t's inputs through the C backend built with cflags, or the
 * JIT (cflags NULL) on each of npools pools (NULL: none), into ys[i]. */
static inline void bc_run(BoundCase *t, const Program *p, const char *cflags, RtPool **pools, int npools, float **ys) {
  RtError err;
  CModule *mod = cflags ? cg_c_build(p, cflags, &err) : cg_jit_build(p, &err);
  cr_assert_not_null(mod, "%s", err.msg);
  RtTensorSet params;
  bc_params(t, &params);
  cr_assert_eq(cg_c_set_params(mod, &params, &err), RT_OK, "%s", err.msg);
  int64_t sym[IR_MAX_SYMS] = {t->n};
  for (int i = 0; i < npools; i++) {
    void *args[8];
    bc_args(t, p, ys[i], args);
    cg_c_set_pool(mod, pools[i]);
    cr_assert_eq(cg_c_call(mod, "forward", sym, args, &err), RT_OK, "%s", err.msg);
  }
  cg_c_set_pool(mod, NULL);
  rt_set_free(&params);
  cg_c_free(mod);
}

/* Output 0 through the kernel-IR evaluator, into y. */
static inline void bc_keval(BoundCase *t, const Program *p, float *y) {
  RtError err;
  RtTensorSet params;
  bc_params(t, &params);
  void *args[8];
  bc_args(t, p, y, args);
  int64_t sym[IR_MAX_SYMS] = {t->n};
  KevalArgs a = {sym, args, &params};
  cr_assert_eq(kir_eval(p, &p->funcs[0], &a, &err), RT_OK, "%s", err.msg);
  rt_set_free(&params);
}

/* Every element of got within the summation bound of the interpreter's. */
static inline void bc_expect_close(BoundCase *t, const float *got, const char *how, const char *src) {
  const Graph *g = &t->m.g;
  int out = g->outputs[0].id;
  const float *want = t->vals[out].data, *mag = t->absv[out].data;
  int64_t count = rt_tensor_numel(&t->vals[out]);
  double gamma = (double)(t->K + 2) * ldexp(1.0, -24);
  int bad = 0;
  for (int64_t i = 0; i < count && bad < 3; i++) {
    double err = fabs((double)got[i] - want[i]), bound = gamma * mag[i];
    if (!(err <= bound)) {
      bad++;
      cr_expect(0, "%s N=%lld: y[%lld] = %.9g, interpreter %.9g (error %.3g, bound %.3g)\n%s", how, (long long)t->n,
                (long long)i, got[i], want[i], err, bound, src);
    }
  }
}

/* Runs p (made by bc_program) on keval, C (vectors, then scalars) and the
 * JIT, expecting each within the summation bound of the interpreter's
 * (bc_expect_close), and the JIT on pools of 2 and 3 threads to give the
 * bits it gives without a pool. */
static inline void bc_expect_backends(BoundCase *t, const Program *p, const char *src) {
  int64_t count = rt_tensor_numel(&t->vals[t->m.g.outputs[0].id]);
  float *ys[3];
  for (int i = 0; i < 3; i++) {
    ys[i] = malloc(sizeof(float) * (size_t)count);
    for (int64_t e = 0; e < count; e++) ys[i][e] = NAN;
  }
  bc_keval(t, p, ys[0]);
  bc_expect_close(t, ys[0], "keval", src);
  static const char *const flags[2] = {"-O1 -Wall -Wextra -pedantic -Werror", "-O1 -DDLC_VECTORS=0 -Wall -Wextra -Werror"};
  for (int b = 0; b < 2; b++) {
    for (int64_t e = 0; e < count; e++) ys[0][e] = NAN;
    bc_run(t, p, flags[b], (RtPool *[]){NULL}, 1, ys);
    bc_expect_close(t, ys[0], flags[b], src);
  }
  RtError err;
  RtPool *pools[3] = {NULL, NULL, NULL};
  cr_assert_eq(rt_pool_new(2, &pools[1], &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_pool_new(3, &pools[2], &err), RT_OK, "%s", err.msg);
  bc_run(t, p, NULL, pools, 3, ys);
  bc_expect_close(t, ys[0], "JIT", src);
  for (int i = 1; i < 3; i++)
    cr_expect(!memcmp(ys[0], ys[i], sizeof(float) * (size_t)count), "JIT on %d threads differs from one\n%s", i + 1, src);
  rt_pool_free(pools[1]);
  rt_pool_free(pools[2]);
  for (int i = 0; i < 3; i++) free(ys[i]);
}

#endif
