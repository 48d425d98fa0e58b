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
#include "passes/sched_util.h"
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
    int stores = 1;
    for (const Stmt *s = l->body; s; s = s->next) stores &= s->kind == ST_STORE;
    if (!stores || l->step != 1 || l->loop == LOOP_REDUCE || !l->extent || l->extent->kind != EX_ICONST || l->extent->i < 1)
      continue;
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

/* The gather of the taps form (lower_conv.c: transpose_taps) in lanes.
 * The lowering's nest, over the result's channels c, rows y and columns j:
 *   for c { for y { for j {
 *     local acc = init; for kh reduce { for kw reduce { acc = acc + select(mask[kw wf + j] > 0, taps[.. + j - kw], 0) } }
 *     full[.. + j] = acc } } }
 * becomes, for U channels at once and each vector of w lanes of the row at
 * j0 (sched_overlapped_vectors' columns: 0, w, 2w, ... and the last ending
 * at the row's last column, which stores some elements again, the same
 * values, as the nest reads nothing it stores):
 *   for cb < C / U { for y {
 *     local acc[u][v] = init(c = cb U + u) in lanes
 *     for kh reduce { for kw reduce { acc[u][v] = acc[u][v] + select(..) in lanes, each u, v } }
 *     full<w>[.. j0] = acc[u][v], each u, v } }
 * Loads at unit stride in j take w lanes, what does not vary with j is
 * broadcast, the add and the select are lane-wise (sched_row_lanes, the
 * epilogues' lane form).  Each lane sums its element's taps in the
 * scalar loop's order; the U x nv sums (at most GATHER_ACC) are
 * independent chains of adds in flight together (one chain at a time
 * waited on each add's latency: a fifth of LeNet-5's transpose). */
#define GATHER_ACC 16

/* The lowering's gather nest at *slot in lanes (above); 0, or -1 when it is
 * not that nest (left as it is). */
static int gather_nest(Program *p, Kernel *k, Stmt **slot) {
  Stmt *cl = *slot, *yl = cl->body, *jl = yl && yl->kind == ST_LOOP && !yl->next ? yl->body : NULL;
  Stmt *a = jl && jl->kind == ST_LOOP && !jl->next ? jl->body : NULL, *hl = a ? a->next : NULL, *st = hl ? hl->next : NULL;
  Stmt *kl = hl && hl->kind == ST_LOOP ? hl->body : NULL, *as = kl && kl->kind == ST_LOOP && !kl->next ? kl->body : NULL;
  if (!as || as->next || as->kind != ST_ASSIGN || a->kind != ST_LOCAL || a->count || a->type != DT_F32 || as->id != a->id ||
      !st || st->next || st->kind != ST_STORE || hl->loop != LOOP_REDUCE || kl->loop != LOOP_REDUCE ||
      !sched_is_const(cl->extent) || !sched_is_const(yl->extent) || !sched_is_const(jl->extent) || jl->step != 1 ||
      !sched_overlap_lanes(jl->extent->i) || !sched_unit_stride(st->index, jl->id) ||
      sched_expr_uses(hl->extent, EX_VAR, jl->id) || sched_expr_uses(hl->extent, EX_VAR, cl->id) ||
      sched_expr_uses(kl->extent, EX_VAR, jl->id) || sched_expr_uses(kl->extent, EX_VAR, cl->id))
    return -1;
  int64_t C = cl->extent->i, E = jl->extent->i, j0[GATHER_ACC + 1];
  int w = sched_overlap_lanes(E), nv = 0;
  if (E / w + 1 > GATHER_ACC) return -1;
  for (int64_t j = 0; j + w <= E; j += w) j0[nv++] = j;
  if (E % w) j0[nv++] = E - w;
  int64_t U = 1;
  for (int64_t u = 1; u <= C && u * nv <= GATHER_ACC; u++)
    if (C % u == 0) U = u;
  int cb = k->nvars++, acc[GATHER_ACC];
  Stmt *inits = NULL, *adds = NULL, *stores = NULL;
  for (int64_t u = 0; u < U; u++) {
    Expr *c = kx_iadd(p, kx_imul(p, kx_var(p, cb), kx_i(p, U)), kx_i(p, u));
    for (int v = 0; v < nv; v++) {
      int i = (int)u * nv + v;
      acc[i] = k->nlocals++;
      Expr *col = kx_i(p, j0[v]);
      Expr *init = sched_row_lanes(p, jl->id, col, a->id, acc[i], w, sched_subst_expr(p, a->value, cl->id, c));
      Expr *add = sched_row_lanes(p, jl->id, col, a->id, acc[i], w, sched_subst_expr(p, as->value, cl->id, c));
      Expr *to = sched_subst_expr(p, sched_subst_expr(p, st->index, cl->id, c), jl->id, col);
      if (!init || !add) return -1;
      ks_append(&inits, ks_local(p, acc[i], DT_F32, init));
      ks_append(&adds, ks_assign(p, acc[i], add));
      ks_append(&stores, ks_store(p, st->id, to, kx_vlocal(p, acc[i], DT_F32, w)));
    }
  }
  Stmt *kw = ks_loop(p, kl->id, kir_clone_expr(p, kl->extent), adds), *kh = ks_loop(p, hl->id, kir_clone_expr(p, hl->extent), kw);
  kw->loop = kh->loop = LOOP_REDUCE;
  ks_append(&inits, kh);
  ks_append(&inits, stores);
  Stmt *nest = ks_loop(p, cb, kx_i(p, C / U), ks_loop(p, yl->id, kir_clone_expr(p, yl->extent), inits));
  nest->next = cl->next;
  *slot = nest;
  return 0;
}

/* The gather nests among the statements of block *slot in lanes. */
static void gather_rows(Program *p, Kernel *k, Stmt **slot) {
  for (; *slot; slot = &(*slot)->next)
    if ((*slot)->kind == ST_LOOP) (void)gather_nest(p, k, slot);
}

int sched_ct_tiles(Program *p, const Graph *g, Kernel *k, int tiles) {
  const Node *n = &g->nodes[k->node];
  ConvGeom cg;
  ir_conv_geom(g, n, &cg);
  if (n->op != OP_CONV_TRANSPOSE2D || cg.groups != 1 || cg.sh != 1 || cg.sw != 1) return -1;
  Stmt *nl, **slot = rows_slot(k->body, &nl);
  if (!slot) return -1;
  /* the rows: C*KH of taps (rows form) or C*KH*KW (taps form) */
  int64_t R = sched_is_const((*slot)->extent) ? (*slot)->extent->i : cg.c * cg.kh;
  int mr = R <= 7 ? (int)R : R % 8 == 0 ? 8 : R % 6 == 0 ? 6 : R % 4 == 0 ? 4 : 6;
  if (tiles) {
    /* the loops around the rows, then the rows in tiles (the vectors first: the tiles are no loop of one store) */
    Stmt *rows = *slot, *after = rows->next, **s = &nl->body;
    *slot = after;
    vector_loops(p, k, nl->body);
    while (*s != after) s = &(*s)->next; /* rows go back before what followed them */
    rows->next = after;
    *s = rows;
    gather_rows(p, k, &rows->next);
    (void)sched_conv_row_tiles(p, k, s, mr);
    sched_item_blocks(p, k, nl, cg.n);
  }
  sched_drop_unit_loops(p, &k->body);
  return 0;
}
