/*
 * flops.c — the floating-point operations one call of an entry point
 * performs, counted on its kernels (dlc check).
 *
 * Every float + - * / of every statement counts once per lane, times the
 * trips of the loops around it; a sum of n lanes (reduce_add) counts
 * n - 1 additions.  Comparisons, max and min, casts, index arithmetic and
 * library functions (exp, log, ...) do not count: a matmul of M x K by
 * K x N is 2 M N K, as FLOP counts are usually given.  A loop runs
 * ceil(extent / step) times, its extent evaluated with the symbols at the
 * given values; both branches of an if are counted at their larger, so the
 * count is an upper bound there (no sample's kernels have one on a hot
 * path).  A loop whose variable an inner loop's extent reads (a
 * convolution's blocks of batch items, `for i < min(8, N - b * 8)`) is
 * counted iteration by iteration, up to FLOPS_MAX_TRIPS of them.  An
 * extent that reads a local, or a loop variable beyond that, cannot be
 * evaluated here: *exact is cleared and the loop counts once.
 */
#include "driver/driver.h"
#include "ir/kernel.h"

#include <stdlib.h>

#define FLOPS_MAX_TRIPS 4096

typedef struct FlopCount {
  const int64_t *syms;
  int64_t *vars;      /* the value of each loop variable counted iteration by iteration, -1: none */
  int exact;
} FlopCount;

static int64_t flops_expr(const Expr *e) {
  if (!e) return 0;
  int64_t n = flops_expr(e->a) + flops_expr(e->b) + flops_expr(e->c);
  if (e->kind == EX_BINARY && kir_is_float(e->type) && e->op <= BIN_DIV) n += e->lanes;
  if (e->kind == EX_REDUCE) n += e->a->lanes - 1;
  if (e->kind == EX_FMA) n += 2 * e->lanes; /* a multiply and an add */
  return n;
}

/* The value *v of integer expression e (an extent or a part of one, which
 * may be negative: `max(0, y + -9)`); 0 when it depends on more than
 * constants, symbols and the variables counted iteration by iteration. */
static int flops_value(FlopCount *fc, const Expr *e, int64_t *v) {
  if (e->kind == EX_ICONST) return *v = e->i, 1;
  if (e->kind == EX_SYM) return *v = fc->syms[e->id], 1;
  if (e->kind == EX_VAR) return fc->vars && fc->vars[e->id] >= 0 ? (*v = fc->vars[e->id], 1) : 0;
  int64_t a, b;
  if (e->kind != EX_BINARY || !flops_value(fc, e->a, &a) || !flops_value(fc, e->b, &b)) return 0;
  switch (e->op) {
  case BIN_ADD: *v = a + b; return 1;
  case BIN_SUB: *v = a - b; return 1;
  case BIN_MUL: *v = a * b; return 1;
  case BIN_DIV: return b ? (*v = a / b, 1) : 0;
  case BIN_MIN: *v = a < b ? a : b; return 1;
  case BIN_MAX: *v = a > b ? a : b; return 1;
  default: return 0;
  }
}

/* A loop's extent (no trip below 0), or -1 when it cannot be evaluated. */
static int64_t flops_extent(FlopCount *fc, const Expr *e) {
  int64_t v;
  return flops_value(fc, e, &v) ? (v < 0 ? 0 : v) : -1;
}

static int var_in(const Expr *e, int var) {
  return e && ((e->kind == EX_VAR && e->id == var) || var_in(e->a, var) || var_in(e->b, var) || var_in(e->c, var));
}

/* Whether the extent of a loop in b reads loop variable var. */
static int extent_reads(const Stmt *b, int var) {
  for (; b; b = b->next)
    if ((b->kind == ST_LOOP && var_in(b->extent, var)) || extent_reads(b->body, var) || extent_reads(b->orelse, var))
      return 1;
  return 0;
}

static int64_t flops_block(FlopCount *fc, const Stmt *s) {
  int64_t n = 0;
  for (; s; s = s->next) {
    switch (s->kind) {
    case ST_LOOP: {
      int64_t extent = flops_extent(fc, s->extent), trips = extent < 0 ? 1 : (extent + s->step - 1) / s->step;
      if (extent < 0) fc->exact = 0;
      if (extent >= 0 && trips <= FLOPS_MAX_TRIPS && fc->vars && extent_reads(s->body, s->id)) {
        for (int64_t t = 0; t < trips; t++) {
          fc->vars[s->id] = t * s->step;
          n += flops_block(fc, s->body);
        }
        fc->vars[s->id] = -1;
        break;
      }
      n += trips * flops_block(fc, s->body);
      break;
    }
    case ST_IF: {
      int64_t a = flops_block(fc, s->body), b = flops_block(fc, s->orelse);
      n += flops_expr(s->value) + (a > b ? a : b);
      break;
    }
    case ST_STORE:
    case ST_LOCAL:
    case ST_ASSIGN: n += flops_expr(s->value); break;
    }
  }
  return n;
}

int64_t dlc_flops(const Func *f, const int64_t *syms, int *exact) {
  FlopCount fc = {syms, NULL, 1};
  int64_t n = 0;
  for (int k = 0; k < f->nkernels; k++) {
    const Kernel *kn = &f->kernels[k];
    fc.vars = malloc(sizeof *fc.vars * (size_t)(kn->nvars + 1));
    if (fc.vars)
      for (int v = 0; v <= kn->nvars; v++) fc.vars[v] = -1;
    n += flops_block(&fc, kn->body);
    free(fc.vars);
  }
  *exact = fc.exact;
  return n;
}
