/*
 * sched_ct.c — conv_transpose2d's rows of taps in register tiles (a rule
 * of the schedule step, schedule.c).
 *
 * With unit strides and one group the lowering (lower_conv.c:
 * transpose_rows) writes, per batch item n, a matrix product in the row
 * form of the register tiles
 *   for r < C*KH { for q < Q { rows[n, r, q] = 0 }
 *     for kk < O*KW reduce { x = w[r*KW + tap_weights[kk]]
 *       for q < Q { rows[n, r, q] += x * xp[n*O*len + tap_offsets[kk] + q] } } }
 * between the result's init and the adds of the rows into it.  B (the
 * row-padded input) is read where it is, a contiguous run per term, so
 * the rule is the tiles with B in place: MR rows by NV vectors of
 * positions, the positions past the whole panels in one panel ending at
 * the last (schedule.c: sched_conv_row_tiles).  MR divides the rows where
 * it can, as for the forward convolution's tiles (C*KH = 30 for LeNet-5's
 * second convolution: 5 tiles of 6 rows).  Each row still sums its terms
 * in kk order, now with fma.  Without tiles (--no-tile) the nest stays as
 * lowered.  Either way the kernel is not given to the convolutions' rule
 * (rule_conv), whose gather this form replaces.
 */
#include "ir/conv.h"
#include "passes/schedule.h"

/* The slot of the row loop in the body of a top-level loop of b: a loop
 * whose body is a loop and then a reduction loop. */
static Stmt **rows_slot(Stmt *b, Stmt **outer) {
  for (Stmt *s = b; s; s = s->next) {
    *outer = s;
    if (s->kind != ST_LOOP) continue;
    for (Stmt **slot = &s->body; *slot; slot = &(*slot)->next) {
      Stmt *r = *slot, *i = r->kind == ST_LOOP ? r->body : NULL;
      if (i && i->kind == ST_LOOP && i->next && i->next->kind == ST_LOOP && i->next->loop == LOOP_REDUCE && !i->next->next)
        return slot;
    }
  }
  return NULL;
}

typedef struct Shift {
  int var, by;
  int64_t off;
} Shift;

static Expr *shifted(void *ctx, Program *p, Expr *e) {
  const Shift *s = ctx;
  return e->kind == EX_VAR && e->id == s->var ? kx_iadd(p, kx_var(p, s->by), kx_i(p, s->off)) : e;
}

/* The widest lane count up to 16 that divides e. */
static int lanes_of(int64_t e) {
  int w = 16;
  while (w > 1 && e % w) w /= 2;
  return w;
}

/* Each innermost loop of the block (the copy into the row-padded input,
 * the result's init, the adds of the row sums) in vectors: whole
 * vectors of the widest lanes up to 16 it fills, then the columns left in
 * one loop of the widest lanes that divide them (10 columns: 8 and 2;
 * 140: 128 and 12 in vectors of 4).  Every iteration writes an element of its own and reads
 * it or other buffers only, so lanes compute what the scalar loop did. */
static void vector_loops(Program *p, Kernel *k, Stmt *b) {
  for (Stmt *l = b; l; l = l->next) {
    if (l->kind != ST_LOOP) continue;
    if (l->body && l->body->kind == ST_LOOP) {
      vector_loops(p, k, l->body);
      continue;
    }
    if (l->step != 1 || l->loop == LOOP_REDUCE || !l->extent || l->extent->kind != EX_ICONST) continue;
    int64_t e = l->extent->i, w = 16;
    while (w > e) w /= 2;
    int64_t main = e / w * w;
    if (w > 1 && main < e) {
      Shift sh = {l->id, k->nvars++, main};
      Stmt *rest = ks_loop(p, sh.by, kx_i(p, e - main), kir_rewrite_block(p, l->body, shifted, &sh));
      rest->next = l->next;
      l->next = rest;
      l->extent = kx_i(p, main);
      (void)sched_vectorize(p, l, (int)w);
      l = rest;
    }
    if (lanes_of(l->extent->i) > 1) (void)sched_vectorize(p, l, lanes_of(l->extent->i));
  }
}

int sched_ct_tiles(Program *p, const Graph *g, Kernel *k, int tiles) {
  const Node *n = &g->nodes[k->node];
  ConvGeom cg;
  ir_conv_geom(g, n, &cg);
  if (n->op != OP_CONV_TRANSPOSE2D || cg.groups != 1 || cg.sh != 1 || cg.sw != 1) return -1;
  Stmt *nl, **slot = rows_slot(k->body, &nl);
  if (!slot) return -1;
  int64_t R = cg.c * cg.kh;
  int mr = R <= 7 ? (int)R : R % 8 == 0 ? 8 : R % 6 == 0 ? 6 : R % 4 == 0 ? 4 : 6;
  if (tiles) {
    /* the loops around the rows, then the rows in tiles (the vectors first: the tiles are no loop of one store) */
    Stmt *rows = *slot, *after = rows->next, **s = &nl->body;
    *slot = after;
    vector_loops(p, k, nl->body);
    while (*s != after) s = &(*s)->next; /* rows go back before what followed them */
    rows->next = after;
    *s = rows;
    (void)sched_conv_row_tiles(p, k, s, mr);
  }
  sched_drop_unit_loops(p, &k->body);
  return 0;
}
