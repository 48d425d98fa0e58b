/*
 * emit_common.c — program-level decisions shared by the C and the LLVM
 * emitter (see emit_common.h).
 *
 * Buffer use is one walk (kir_walk_block) over a function's kernels that
 * marks every buffer loaded and every buffer stored; the questions about
 * derived data are answered from those marks, so both emitters guard the
 * same entry points with the same "parameters changed" flag.
 */
#include "codegen/emit_common.h"

typedef struct Use {
  char *loaded, *stored;
} Use;

static int use_stmt(void *ctx, const Stmt *s) {
  Use *u = ctx;
  if (s->kind == ST_STORE && u->stored) u->stored[s->id] = 1;
  return 0;
}

static int use_expr(void *ctx, const Expr *e) {
  Use *u = ctx;
  if (e->kind == EX_LOAD && u->loaded) u->loaded[e->id] = 1;
  return 0;
}

void cg_buffer_use(const Program *p, const Func *fn, char *loaded, char *stored) {
  (void)p;
  Use u = {loaded, stored};
  KirVisitor v = {&u, use_stmt, use_expr};
  for (int k = 0; k < fn->nkernels; k++) kir_walk_block(&v, fn->kernels[k].body);
}

/* Whether fn loads (or, with stores set, stores into) a buffer b for which
 * pick(p, b) holds. */
static int uses(const Program *p, const Func *fn, int stores, int (*pick)(const Program *, int)) {
  char *mark = rt_xcalloc((size_t)p->nbufs + 1, 1);
  cg_buffer_use(p, fn, stores ? NULL : mark, stores ? mark : NULL);
  int hit = 0;
  for (int b = 0; b < p->nbufs && !hit; b++) hit = mark[b] && pick(p, b);
  rt_xfree(mark);
  return hit;
}

static int is_derived(const Program *p, int b) { return p->bufs[b].kind == BUF_DERIVED; }

static int is_derived_source(const Program *p, int b) {
  for (int d = 0; d < p->nbufs; d++)
    if (p->bufs[d].kind == BUF_DERIVED && p->bufs[d].src == b) return 1;
  return 0;
}

int cg_reads_derived(const Program *p, const Func *fn) { return uses(p, fn, 0, is_derived); }

int cg_dirties_derived(const Program *p, const Func *fn) { return uses(p, fn, 1, is_derived_source); }
