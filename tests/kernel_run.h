/*
 * kernel_run.h — a scheduled program's forward run on one backend, and a
 * kernel's section of a dump, for the kernel tests that check each backend
 * against the interpreter (test_conv_gw, test_conv_tiles, test_opt_kernels).
 */
#ifndef DLC_TESTS_KERNEL_RUN_H
#define DLC_TESTS_KERNEL_RUN_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "ir/keval.h"

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
