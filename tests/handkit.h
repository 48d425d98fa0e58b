/*
 * handkit.h — a hand-built kernel program for the kernel-IR tests.
 *
 * HandKit is a program "kit" whose forward takes x and y, f32[8] each,
 * with its diagnostics kept in memory (msgs, after fflush(f)); the tests
 * add kernels they build by hand.  hk_pairs is one such kernel that uses
 * if/else, a local array and a stepped loop together; hk_dump gives a
 * program's kernel dump as text (free it).
 */
#ifndef DLC_TESTS_HANDKIT_H
#define DLC_TESTS_HANDKIT_H

#include <stdio.h>
#include <stdlib.h>

#include "ir/kernel.h"

typedef struct HandKit {
  Graph g;
  Program p;
  Diags d;
  char *msgs;
  size_t len;
  FILE *f;
  Func *fn;
  int in, out;   /* f32[8] each */
} HandKit;

static inline void hk_init(HandKit *k) {
  k->msgs = NULL;
  k->f = open_memstream(&k->msgs, &k->len);
  diag_init(&k->d, k->f);
  ir_graph_init(&k->g, "kit", &k->d);
  kir_program_init(&k->p, &k->g);
  Shape s = {1, {8}};
  k->in = kir_buffer(&k->p, BUF_INPUT, DT_F32, "x", &s, -1);
  k->out = kir_buffer(&k->p, BUF_OUTPUT, DT_F32, "y", &s, -1);
  k->fn = kir_func(&k->p, "forward", &k->g);
  k->fn->args = arena_alloc(&k->p.arena, 2 * sizeof(int));
  k->fn->args[0] = k->in, k->fn->args[1] = k->out;
  k->fn->nargs = 2;
  k->p.bufs[k->in].arg = 0, k->p.bufs[k->out].arg = 1;
}

static inline Kernel *hk_kernel(HandKit *k, Stmt *body, int nvars, int nlocals) {
  Kernel *kn = kir_kernel(&k->p, k->fn, "kit", (SrcLoc){0});
  kn->body = body;
  kn->nvars = nvars;
  kn->nlocals = nlocals;
  return kn;
}

static inline void hk_free(HandKit *k) {
  fclose(k->f);
  free(k->msgs);
  kir_program_free(&k->p);
  ir_graph_free(&k->g);
}

static inline char *hk_dump(const Program *p) {
  char *text = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&text, &n);
  kir_dump(p, f);
  fclose(f);
  return text;
}

/* for i0 < 8 step 2:
 *   local v0: f32[2] = 0
 *   for i1 < 2: v0[i1] = x[i0 + i1] * 3
 *   if x[i0] > 0 { y[i0] = v0[0] + v0[1] } else { y[i0] = v0[0] - v0[1] }
 *   y[i0 + 1] = v0[1]
 * (two loop variables, one local) */
static inline Stmt *hk_pairs(HandKit *k) {
  Program *p = &k->p;
  Expr *i0 = kx_var(p, 0), *i1 = kx_var(p, 1);
  Stmt *fill = ks_loop(p, 1, kx_i(p, 2),
                       ks_assign_elem(p, 0, i1, kx_bin(p, BIN_MUL, kx_load(p, k->in, kx_iadd(p, i0, i1)), kx_f(p, 3))));
  Expr *a = kx_elem(p, 0, DT_F32, kx_i(p, 0)), *b = kx_elem(p, 0, DT_F32, kx_i(p, 1));
  Stmt *body = ks_local_array(p, 0, DT_F32, 2, kx_f(p, 0));
  ks_append(&body, fill);
  ks_append(&body, ks_if(p, kx_bin(p, BIN_GT, kx_load(p, k->in, i0), kx_f(p, 0)),
                         ks_store(p, k->out, i0, kx_bin(p, BIN_ADD, a, b)),
                         ks_store(p, k->out, i0, kx_bin(p, BIN_SUB, a, b))));
  ks_append(&body, ks_store(p, k->out, kx_iadd(p, i0, kx_i(p, 1)), b));
  Stmt *loop = ks_loop(p, 0, kx_i(p, 8), body);
  loop->step = 2;
  return loop;
}

#endif
