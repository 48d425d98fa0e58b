/*
 * kernel_run.h — a scheduled program's forward run on one backend, and a
 * kernel's section of a dump, for the kernel tests that check each backend
 * against the interpreter (test_conv_gw, test_conv_tiles, test_opt_kernels,
 * test_pool_fast).
 */
#ifndef DLC_TESTS_KERNEL_RUN_H
#define DLC_TESTS_KERNEL_RUN_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "ir/keval.h"
#include "passes/passes.h"

/* p's forward on args: the evaluator (cflags "keval"), the C backend
 * built with cflags, or the JIT (cflags NULL), on a pool of threads
 * threads (0: none). */
static inline void kr_forward(const Program *p, const char *cflags, int threads, int64_t *syms, void **args) {
  RtError err;
  if (cflags && strcmp(cflags, "keval") == 0) {
    KevalArgs ka = {syms, args, NULL};
    cr_assert_eq(kir_eval(p, &p->funcs[0], &ka, &err), RT_OK, "%s", err.msg);
    return;
  }
  CModule *mod = cflags ? cg_c_build(p, cflags, &err) : cg_jit_build(p, &err);
  cr_assert_not_null(mod, "%s", err.msg);
  RtPool *pool = NULL;
  if (threads) {
    cr_assert_eq(rt_pool_new(threads, &pool, &err), RT_OK, "%s", err.msg);
    cg_c_set_pool(mod, pool);
  }
  cr_assert_eq(cg_c_call(mod, "forward", syms, args, &err), RT_OK, "%s", err.msg);
  cg_c_free(mod);
  if (pool) rt_pool_free(pool);
}

/* The forward program of graph g, lowered, scheduled and planned, and
 * checked by the kernel verifier (reporting to d). */
static inline void kr_graph_program(Program *p, const Graph *g, Diags *d) {
  kir_program_init(p, g);
  pass_lower(p, kir_func(p, "forward", g));
  pass_schedule(p);
  pass_memplan(p);
  cr_assert_eq(kir_verify(p, d), 0);
}

/* kr_forward of a program made by kr_graph_program, with N = n: each
 * input buffer reads its node's value in vals, the output is y. */
static inline void kr_graph_run(const Program *p, RtTensor *vals, int64_t n, const char *cflags, int threads, float *y) {
  void *args[8];
  int64_t syms[IR_MAX_SYMS] = {n};
  const Func *fn = &p->funcs[0];
  cr_assert(fn->nargs <= 8);
  for (int i = 0; i < fn->nargs; i++) {
    const Buffer *b = &p->bufs[fn->args[i]];
    args[i] = b->kind == BUF_INPUT ? vals[b->node].data : y;
  }
  kr_forward(p, cflags, threads, syms, args);
}

/* The section of a dump from the first line holding from to the next
 * kernel (free it), or NULL. */
static inline char *kr_kernel_text(const char *text, const char *from) {
  const char *s = strstr(text, from);
  if (!s) return NULL;
  const char *e = strstr(s + 1, "  kernel ");
  size_t n = e ? (size_t)(e - s) : strlen(s);
  char *c = malloc(n + 1);
  cr_assert_not_null(c);
  memcpy(c, s, n);
  c[n] = 0;
  return c;
}

#endif
