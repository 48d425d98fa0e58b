/*
 * sched_gw.c — conv2d's weight gradient in register tiles (a rule of the
 * schedule step, schedule.c).
 *
 * The lowering (lower_conv_grad_weight) writes, with unit strides, one
 * nest per tap t = (c, kh, kw) and output channel o that adds
 * dy[n, o, j] * xp[n, c, j + off(t)] over n and the wide row j < cols
 * into a row buffer, then sums the row: three loads and a store per
 * product.  The product is dw[o, t] = sum over (n, j) of dy(o) . xp(t):
 * a short output (O x T) and a long, contiguous reduction.  The tiles
 * vectorise along the reduction: MR output channels by NT taps keep
 * MR * NT accumulators of GW_LANES lanes in registers across all of n and
 * j; each step loads MR vectors of dy and NT (unaligned) vectors of xp for
 * MR * NT fmas.  Then each accumulator's lanes are summed pairwise
 * (EX_REDUCE), and the tail positions j >= cols - cols % GW_LANES are
 * added in vectors of 8, 4, 2 and 1 lanes (the set bits of the tail,
 * in that order), each over all of n into accumulators of its own whose
 * lanes are then added to the sum; the sum is stored.
 *
 *   for b < blocks parallel {            (o block b / ntb, tap block b % ntb)
 *     local a[m][u]: f32x16 = 0
 *     for n < N reduce { for j < cols16 step 16 reduce {
 *       local d[m] = dy<16>[(n O + o_m) plane + j]
 *       local x[u] = xp<16>[n C hp wp + off(t_u) + j]
 *       a[m][u] = fma(d[m], x[u], a[m][u]) } }
 *     local s[m][u] = reduce_add(a[m][u])
 *     for each w in 8, 4, 2, 1 that the tail has, at j0 (the next position):
 *       local e[m][u]: f32xw = 0
 *       for n < N reduce { e[m][u] = fma(dy<w>[..j0], xp<w>[..j0], e[m][u]) }
 *       s[m][u] = s[m][u] + reduce_add(e[m][u])
 *     dw[o_m T + t_u] = s[m][u] }
 *
 * When MR does not divide O (or NT the taps), the last block's channels
 * (taps) are clamped to the last one, which it then computes more than
 * once, identically.  Every output is summed within one iteration of the
 * block loop in a fixed order, so the result does not depend on the
 * number of threads; it does differ from the row buffer's order (lanes
 * take positions j = k mod 16, and each step is an fma), within the
 * bound of any float32 summation order (tests/test_conv_gw.c).
 *
 * Three forms, by shape: output channels a multiple of 16 take the
 * channel lanes (gw_channels: no wide-row columns, no tail); otherwise
 * the tiles above, block-outer as drawn while one block's reads over the
 * batch (at its maximum) fit GW_STREAM bytes (L2), else batch-outer
 * (gw_batch_outer: every block of a chunk takes each batch item's dy and
 * xp from L1, accumulators kept in a scratch buffer, the same sums).
 * LeNet-5 at batch 64: c2 (16 x 150) in channel lanes, c1 (6 x 25, dy
 * 64 x 6 x 28 x 28 floats, past L2) batch-outer.  The batch-outer tiles
 * take the shifted form when the wide rows' columns past the rows' ends
 * cost more than copying the input's kw shifts (outer_shifted): dy is
 * then read where it is, its oh x ow positions and none past them.  Those two forms sum
 * the batch in GW_SHARDS shards, added in order (shard_loop), so that the
 * threads split the batch rather than the blocks.
 *
 * The tile shape: the (MR, NT) with MR * NT <= 24 (the accumulators, plus
 * MR vectors of dy and one of xp, in AVX-512's 32 registers) that needs
 * the fewest instructions over all blocks, blocks * (MR NT + MR + NT):
 * 3 x 5 for LeNet-5's first convolution (6 x 25).  The rule takes one group and unit strides; other shapes keep
 * the row-buffer nest.
 */
#include "ir/conv.h"
#include "passes/sched_util.h"
#include "passes/schedule.h"

#define GW_LANES 16
#define GW_ACC 24
/* The bytes one block may stream over the batch (from L2) before the batch
 * loop goes outside the blocks (gw_batch_outer). */
#ifndef GW_STREAM
#define GW_STREAM (512 * 1024)
#endif

/* What the rule needs from the lowered nest: the product's two factors
 * (dy, then the padded input), the row buffer and the result. */
typedef struct GwFind {
  int dy, x, rows, dw;
} GwFind;

static int plain_load(const Expr *e) { return e->kind == EX_LOAD && !e->b && e->lanes == 1; }

static int gw_find_stmt(void *ctx, const Stmt *s) {
  GwFind *f = ctx;
  if (s->kind != ST_STORE) return 0;
  const Expr *v = s->value;
  if (v->kind == EX_LOCAL && !v->a) f->dw = s->id;
  if (v->kind == EX_BINARY && v->op == BIN_ADD && plain_load(v->a) && v->a->id == s->id && v->b->kind == EX_BINARY &&
      v->b->op == BIN_MUL && plain_load(v->b->a) && plain_load(v->b->b))
    f->rows = s->id, f->dy = v->b->a->id, f->x = v->b->b->id;
  return 0;
}

/* The tile shape (above) for O channels and T taps. */
static void gw_shape(int64_t O, int64_t T, int *mr, int *nt) {
  int64_t best = -1;
  for (int m = 1; m <= 8; m++)
    for (int u = 1; u <= 8 && m * u <= GW_ACC; u++) {
      int64_t blocks = ((O + m - 1) / m) * ((T + u - 1) / u), cost = blocks * (m * u + m + u);
      if (best < 0 || cost < best) best = cost, *mr = m, *nt = u;
    }
}

/* base + m, clamped to last when the blocks overrun it. */
static Expr *clamped(Program *p, Expr *base, int m, int64_t last, int clamp) {
  Expr *e = kx_iadd(p, base, kx_i(p, m));
  return clamp ? kx_bin(p, BIN_MIN, e, kx_i(p, last)) : e;
}

typedef struct Gw {
  Program *p;
  Kernel *k;
  const ConvGeom *g;
  GwFind f;
  int mr, nt;
  int64_t nob, ntb;             /* blocks of output channels, of taps */
  Dim nmax;                     /* the batch's maximum */
  int rows, chunk;              /* gw_batch_outer's per-chunk rows of dy (or -1) and its chunk variable */
  int xjob;                     /* the shifted form's job variable (f.x is then its slots of kw-shifted rows), or -1 */
  int xsrc;                     /* the shifted form: the padded input the slots are copied from */
  int64_t hp, wp, plane, T;
  Expr *o[8], *t[8], *off[8];   /* per row of the tile: channel; per column: tap and its offset in xp's planes */
} Gw;

/* dy[(n O + o_m) plane + j0 + j], xp[n C hp wp + off_u + j0 + j], in lanes lanes
 * (j < 0: no loop variable, at j0). */
static Expr *gw_dy(const Gw *G, int n, int m, int64_t j0, int j, int lanes) {
  Program *p = G->p;
  int rows = G->rows >= 0;   /* one batch item's rows per chunk (gw_batch_outer) */
  Expr *plane = kx_iadd(p, kx_imul(p, kx_var(p, rows ? G->chunk : n), kx_i(p, G->g->o)), kir_clone_expr(p, G->o[m]));
  Expr *at = kx_iadd(p, kx_imul(p, plane, kx_i(p, G->plane)), j < 0 ? kx_i(p, j0) : kx_iadd(p, kx_i(p, j0), kx_var(p, j)));
  int buf = rows ? G->rows : G->f.dy;
  return lanes > 1 ? kx_load_lanes(p, buf, at, lanes) : kx_load(p, buf, at);
}

static Expr *gw_x(const Gw *G, int n, int u, int64_t j0, int j, int lanes) {
  Program *p = G->p;
  Expr *item = G->xjob >= 0 ? kx_imul(p, kx_var(p, G->xjob), kx_i(p, G->g->c * G->g->kw * G->hp * G->g->ow))
                            : kx_imul(p, kx_var(p, n), kx_i(p, G->g->c * G->hp * G->wp));
  Expr *at = kx_iadd(p, item,
                     kx_iadd(p, kir_clone_expr(p, G->off[u]), j < 0 ? kx_i(p, j0) : kx_iadd(p, kx_i(p, j0), kx_var(p, j))));
  return lanes > 1 ? kx_load_lanes(p, G->f.x, at, lanes) : kx_load(p, G->f.x, at);
}

static Stmt *reduce_loop(Program *p, int var, Expr *extent, int64_t step, Stmt *body) {
  Stmt *l = ks_loop(p, var, extent, body);
  l->loop = LOOP_REDUCE;
  l->step = step;
  return l;
}

/* The batch in GW_SHARDS shards, shard s the items [s N / S, (s + 1) N / S):
 * each shard's sums are its own, added in shard order at the end.  The
 * threads take the (shard, block) pairs in order, so a thread's items are
 * the ones the kernels before it made on that thread (the pools, the
 * transposes and the gathers share out the batch the same way) and it
 * reads them from its own caches, not the other core's; the order of
 * every sum depends on the shapes alone, never on the threads. */
#define GW_SHARDS 2

static Expr *shard_lo(Program *p, const Gw *G, Expr *s) {
  return kx_bin(p, BIN_DIV, kx_imul(p, s, kx_dim(p, G->g->n)), kx_i(p, GW_SHARDS));
}

/* for n < hi - lo (reduce) over shard s's items; *item: lo + n, bounded
 * by N - 1 and lo for the range checker (it is never past either). */
static Stmt *shard_loop(Gw *G, int n, Expr *s, Stmt *body, Expr **item) {
  Program *p = G->p;
  Expr *lo = shard_lo(p, G, s), *hi = shard_lo(p, G, kx_iadd(p, kir_clone_expr(p, s), kx_i(p, 1)));
  *item = kx_bin(p, BIN_MAX, kx_bin(p, BIN_MIN, kx_iadd(p, lo, kx_var(p, n)), kx_iadd(p, kx_dim(p, G->g->n), kx_i(p, -1))),
                 kir_clone_expr(p, lo));
  return reduce_loop(p, n, kx_bin(p, BIN_SUB, hi, kir_clone_expr(p, lo)), 1, body);
}

/* The tail positions j0 .. j0 + w (w lanes, one step per n): MR x NT
 * accumulators of w lanes over n, then each sum s += their lanes' sum. */
static Stmt *gw_tail(Gw *G, const int *sum, int64_t j0, int w) {
  Program *p = G->p;
  Kernel *k = G->k;
  int acc[GW_ACC], d[8], n = k->nvars++;
  Stmt *decls = NULL, *body = NULL, *adds = NULL;
  for (int m = 0; m < G->mr; m++) {
    d[m] = k->nlocals++;
    ks_append(&body, ks_local(p, d[m], DT_F32, gw_dy(G, n, m, j0, -1, w)));
  }
  for (int u = 0; u < G->nt; u++) {
    int xu = k->nlocals++;
    ks_append(&body, ks_local(p, xu, DT_F32, gw_x(G, n, u, j0, -1, w)));
    for (int m = 0; m < G->mr; m++) {
      int a = acc[m * G->nt + u] = k->nlocals++, s = sum[m * G->nt + u];
      ks_append(&decls, ks_local(p, a, DT_F32, w > 1 ? kx_broadcast(p, kx_f(p, 0), w) : kx_f(p, 0)));
      Expr *av = w > 1 ? kx_vlocal(p, a, DT_F32, w) : kx_local(p, a, DT_F32);
      Expr *dv = w > 1 ? kx_vlocal(p, d[m], DT_F32, w) : kx_local(p, d[m], DT_F32);
      Expr *xv = w > 1 ? kx_vlocal(p, xu, DT_F32, w) : kx_local(p, xu, DT_F32);
      ks_append(&body, ks_assign(p, a, kx_fma(p, dv, xv, av)));
      Expr *part = w > 1 ? kx_reduce(p, BIN_ADD, kx_vlocal(p, a, DT_F32, w)) : kx_local(p, a, DT_F32);
      ks_append(&adds, ks_assign(p, s, kx_bin(p, BIN_ADD, kx_local(p, s, DT_F32), part)));
    }
  }
  ks_append(&decls, reduce_loop(p, n, kx_dim(p, G->g->n), 1, body));
  ks_append(&decls, adds);
  return decls;
}

/* The nest of one block (its indices in G->o and G->off). */
static Stmt *gw_block(Gw *G, int64_t cols) {
  Program *p = G->p;
  Kernel *k = G->k;
  const int W = GW_LANES;
  int64_t vcols = cols / W * W;
  int acc[GW_ACC], sum[GW_ACC], d[8];
  Stmt *decls = NULL, *body = NULL, *sums = NULL, *stores = NULL;
  int n1 = k->nvars++, j1 = k->nvars++;
  for (int m = 0; m < G->mr; m++) {
    d[m] = k->nlocals++;
    ks_append(&body, ks_local(p, d[m], DT_F32, gw_dy(G, n1, m, 0, j1, W)));
  }
  for (int u = 0; u < G->nt; u++) {
    int xu = k->nlocals++;
    ks_append(&body, ks_local(p, xu, DT_F32, gw_x(G, n1, u, 0, j1, W)));
    for (int m = 0; m < G->mr; m++) {
      int a = acc[m * G->nt + u] = k->nlocals++, s = sum[m * G->nt + u] = k->nlocals++;
      ks_append(&decls, ks_local(p, a, DT_F32, kx_broadcast(p, kx_f(p, 0), W)));
      Expr *av = kx_vlocal(p, a, DT_F32, W);
      ks_append(&body, ks_assign(p, a, kx_fma(p, kx_vlocal(p, d[m], DT_F32, W), kx_vlocal(p, xu, DT_F32, W), av)));
      ks_append(&sums, ks_local(p, s, DT_F32, kx_reduce(p, BIN_ADD, kx_vlocal(p, a, DT_F32, W))));
      Expr *wi = kx_iadd(p, kx_imul(p, kir_clone_expr(p, G->o[m]), kx_i(p, G->T)), kir_clone_expr(p, G->t[u]));
      ks_append(&stores, ks_store(p, G->f.dw, wi, kx_local(p, s, DT_F32)));
    }
  }
  ks_append(&decls, reduce_loop(p, n1, kx_dim(p, G->g->n), 1, reduce_loop(p, j1, kx_i(p, vcols), W, body)));
  ks_append(&decls, sums);
  /* the tail in steps of 8, 4, 2 and 1 lanes, each over all of n */
  for (int w = W / 2, j0 = (int)vcols; w >= 1; w /= 2)
    if ((cols - vcols) & w) {
      ks_append(&decls, gw_tail(G, sum, j0, w));
      j0 += w;
    }
  ks_append(&decls, stores);
  return decls;
}

/* The block b's output channels, taps and tap offsets into G (b an
 * expression of the block index). */
static void gw_at(Gw *G, Expr *b) {
  Program *p = G->p;
  const ConvGeom *cg = G->g;
  int64_t taps = cg->kh * cg->kw;
  Expr *ob = G->nob == 1 ? kx_i(p, 0) : G->ntb == 1 ? b : kx_bin(p, BIN_DIV, kir_clone_expr(p, b), kx_i(p, G->ntb));
  Expr *tb = G->ntb == 1 ? kx_i(p, 0) : G->nob == 1 ? b : kx_bin(p, BIN_MOD, kir_clone_expr(p, b), kx_i(p, G->ntb));
  for (int m = 0; m < G->mr; m++) G->o[m] = clamped(p, kx_imul(p, ob, kx_i(p, G->mr)), m, cg->o - 1, cg->o % G->mr != 0);
  for (int u = 0; u < G->nt; u++) {
    Expr *t = G->t[u] = clamped(p, kx_imul(p, kir_clone_expr(p, tb), kx_i(p, G->nt)), u, G->T - 1, G->T % G->nt != 0);
    Expr *c = kx_bin(p, BIN_DIV, kir_clone_expr(p, t), kx_i(p, taps));
    Expr *kh = kx_bin(p, BIN_MOD, kx_bin(p, BIN_DIV, kir_clone_expr(p, t), kx_i(p, cg->kw)), kx_i(p, cg->kh));
    Expr *kw = kx_bin(p, BIN_MOD, kir_clone_expr(p, t), kx_i(p, cg->kw));
    if (G->xjob >= 0) /* the kw-shifted rows: [c, kw, hp, ow] */
      G->off[u] = kx_imul(p, kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, c, kx_i(p, cg->kw)), kw), kx_i(p, G->hp)),
                                     kx_imul(p, kh, kx_i(p, cg->dh))),
                          kx_i(p, cg->ow));
    else
      G->off[u] = kx_iadd(p, kx_imul(p, c, kx_i(p, G->hp * G->wp)),
                          kx_iadd(p, kx_imul(p, kh, kx_i(p, cg->dh * G->wp)), kx_imul(p, kw, kx_i(p, cg->dw))));
  }
}

/* The batch-outer form: the tiles' accumulators (main and tail) of every
 * block live in a scratch buffer, gw_sums, L = GW_LANES + cols % GW_LANES
 * floats per (m, u) of each block's slot; the batch loop runs outside the
 * blocks, so each item's dy and xp are read from L1 by every block instead
 * of being streamed from memory once per block:
 *
 *   for j < shards * chunks parallel {          (shard j / chunks, chunk ch = j % chunks)
 *     gw_sums[job j] = 0
 *     for n in the shard's items reduce { for i < cb { b = min(ch cb + i, blocks - 1)
 *       local a[m][u] = gw_sums<16>[slot, m, u]
 *       for j < cols16 step 16 reduce { ...the tiles' fmas... }
 *       gw_sums<16>[slot, m, u] = a[m][u]
 *       each tail width w: local e = gw_sums<w>[..]; e = fma(dy<w>, xp<w>, e); store } } }
 *   for ch < chunks parallel { for i < cb {
 *     each shard q: s_q = reduce_add(gw_sums<16>[q's slot]) (+ reduce_add(tail<w>)...)
 *     dw[o_m T + t_u] = s_0 + s_1 ... } }
 *
 * Within a shard each accumulator sees the same fmas in the same order as
 * in the block-outer form (stored and reloaded between batch items,
 * exactly).  A chunk is the blocks whose slots fit GW_SCRATCH bytes; a
 * slot past the last block (the last chunk) recomputes the last block
 * into a slot of its own.  Each chunk copies only the channels of dy its
 * blocks read. */
#define GW_SCRATCH (32 * 1024)
static Expr *idiv_c(Program *p, Expr *a, int64_t d) { return d == 1 ? a : kx_bin(p, BIN_DIV, a, kx_i(p, d)); }

/* The batch-outer form's shape: per, the floats of one block's slot;
 * cb blocks a chunk; jobs = GW_SHARDS chunks, job j shard j / chunks. */
typedef struct Outer {
  int64_t cols, vcols, L, per, cb, chunks, blocks;
  int sums;
} Outer;

/* Iteration i of chunk (or job) c: c cb + i; as a block, the last one
 * for the slots past it. */
static Expr *outer_in(Program *p, const Outer *O, Expr *c, int i) {
  return kx_iadd(p, kx_imul(p, c, kx_i(p, O->cb)), kx_var(p, i));
}

static Expr *outer_block(Program *p, const Outer *O, Expr *c, int i) {
  Expr *b = outer_in(p, O, c, i);
  return O->chunks * O->cb > O->blocks ? kx_bin(p, BIN_MIN, b, kx_i(p, O->blocks - 1)) : b;
}

/* Each batch item n1's dy into job vj's wide rows, only the channels of
 * chunk vch's blocks; *zero: the rows' extra columns zeroed once. */
static Stmt *outer_rows(Gw *G, const Outer *O, int src, int vj, Expr *vch, int n1, Stmt **zero) {
  Program *p = G->p;
  Kernel *k = G->k;
  const ConvGeom *cg = G->g;
  int64_t cb = O->cb, chunks = O->chunks, blocks = O->blocks;
  Shape rs = {1, {GW_SHARDS * chunks * cg->o * G->plane}};
  G->rows = kir_buffer(p, BUF_TEMP, DT_F32, "dy_rows", &rs, k->node), G->chunk = vj;
  int ro = k->nvars++, ry = k->nvars++, rx = k->nvars++, rz = k->nvars++;
  /* only the chunk's own channels: those of its first block's channel
   * block on, as many as the widest chunk spans, clamped to the last */
  int64_t span = 1, over = 0;
  for (int64_t c0 = 0; c0 < chunks; c0++) {
    int64_t last = (c0 + 1) * cb < blocks ? (c0 + 1) * cb : blocks;
    if ((last - 1) / G->ntb - c0 * cb / G->ntb + 1 > span) span = (last - 1) / G->ntb - c0 * cb / G->ntb + 1;
  }
  int64_t nch = span * G->mr < cg->o ? span * G->mr : cg->o;
  for (int64_t c0 = 0; c0 < chunks; c0++) over |= c0 * cb / G->ntb * G->mr + nch > cg->o;
  Expr *o0 = kx_imul(p, idiv_c(p, kx_imul(p, kir_clone_expr(p, vch), kx_i(p, cb)), G->ntb), kx_i(p, G->mr));
  Expr *ch = nch == cg->o ? kx_var(p, ro) : kx_iadd(p, o0, kx_var(p, ro));
  if (nch < cg->o && over) ch = kx_bin(p, BIN_MIN, ch, kx_i(p, cg->o - 1));
  Expr *row = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, vj), kx_i(p, cg->o)), ch), kx_i(p, G->plane)),
                      kx_imul(p, kx_var(p, ry), kx_i(p, G->wp)));
  Expr *from = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, n1), kx_i(p, cg->o)), kir_clone_expr(p, ch)),
                                  kx_i(p, cg->oh * cg->ow)),
                       kx_iadd(p, kx_imul(p, kx_var(p, ry), kx_i(p, cg->ow)), kx_var(p, rx)));
  Stmt *copy = ks_loop(p, ro, kx_i(p, nch), ks_loop(p, ry, kx_i(p, cg->oh), ks_loop(p, rx, kx_i(p, cg->ow),
                 ks_store(p, G->rows, kx_iadd(p, row, kx_var(p, rx)), kx_load(p, src, from)))));
  Expr *z = kx_iadd(p, kx_imul(p, kx_var(p, vj), kx_i(p, cg->o * G->plane)), kx_var(p, rz));
  *zero = ks_loop(p, rz, kx_i(p, cg->o * G->plane), ks_store(p, G->rows, z, kx_f(p, 0)));
  return copy;
}

/* The shifted form of the batch-outer tiles: dy is read where it is (its
 * rows ow wide, cols = oh ow, no position past a row's end) and each
 * batch item n1's padded input goes into job vj's slot of kw-shifted rows,
 *   xs[vj, c, kw, h, j] = xp[n1, c, h, j + kw dw]   (j < ow)
 * so that tap (c, kh, kw) at position q = y ow + x reads xs[vj, c, kw,
 * q + kh dh ow] (as the forward's shifted copies, lower_conv.c).  The
 * copy's rows are whole vectors, then the powers of two left (28: 16, 8
 * and 4).  The wide rows took (oh - 1) wp + ow positions per product and
 * a copy of dy (LeNet-5's c1: 892 for 784, dy 6 x 28 x 28 from the step's
 * memory); these copy kw shifts of a small input from L1. */
static Stmt *outer_shifted(Gw *G, int vj, int n1) {
  Program *p = G->p;
  Kernel *k = G->k;
  const ConvGeom *cg = G->g;
  int vc = k->nvars++, vk = k->nvars++, vh = k->nvars++;
  /* dst: row ((vj C + c) kw + k) hp + h of the slots, ow wide; src: row (n1 C + c) hp + h of xp, wp wide, at k dw */
  Expr *plane = kx_iadd(p, kx_imul(p, kx_var(p, vj), kx_i(p, cg->c)), kx_var(p, vc));
  Expr *shift = kx_iadd(p, kx_imul(p, plane, kx_i(p, cg->kw)), kx_var(p, vk));
  Expr *dst = kx_imul(p, kx_iadd(p, kx_imul(p, shift, kx_i(p, G->hp)), kx_var(p, vh)), kx_i(p, cg->ow));
  Expr *xplane = kx_iadd(p, kx_imul(p, kx_var(p, n1), kx_i(p, cg->c)), kx_var(p, vc));
  Expr *src = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, xplane, kx_i(p, G->hp)), kx_var(p, vh)), kx_i(p, G->wp)),
                      kx_imul(p, kx_var(p, vk), kx_i(p, cg->dw)));
  Stmt *row = NULL;
  int64_t off = 0;
  for (int w = GW_LANES; w >= 1; w /= 2)
    for (; cg->ow - off >= w && (w == GW_LANES || ((cg->ow - off) & w)); off += w) {
      Expr *from = kx_iadd(p, kir_clone_expr(p, src), kx_i(p, off)), *to = kx_iadd(p, kir_clone_expr(p, dst), kx_i(p, off));
      ks_append(&row, ks_store(p, G->f.x, to, w > 1 ? kx_load_lanes(p, G->xsrc, from, w) : kx_load(p, G->xsrc, from)));
    }
  return ks_loop(p, vc, kx_i(p, cg->c), ks_loop(p, vk, kx_i(p, cg->kw), ks_loop(p, vh, kx_i(p, G->hp), row)));
}

/* Each block of job vj's chunk at item n1: its accumulators loaded from
 * its slot, the fmas along the rows, stored back, then the tail widths. */
static Stmt *outer_item(Gw *G, const Outer *O, int vj, Expr *vch, int vi, int j1, int n1) {
  Program *p = G->p;
  Kernel *k = G->k;
  const int W = GW_LANES;
  int64_t cols = O->cols, vcols = O->vcols, L = O->L, per = O->per;
  int sums = O->sums;
  gw_at(G, outer_block(p, O, vch, vi));
  Stmt *decls = NULL, *body = NULL, *saves = NULL;
  int d[8], acc[GW_ACC];
  Expr *base[GW_ACC];
  for (int m = 0; m < G->mr; m++) {
    d[m] = k->nlocals++;
    ks_append(&body, ks_local(p, d[m], DT_F32, gw_dy(G, n1, m, 0, j1, W)));
  }
  for (int u = 0; u < G->nt; u++) {
    int xu = k->nlocals++;
    ks_append(&body, ks_local(p, xu, DT_F32, gw_x(G, n1, u, 0, j1, W)));
    for (int m = 0; m < G->mr; m++) {
      int mu = m * G->nt + u, a = acc[mu] = k->nlocals++;
      base[mu] = kx_iadd(p, kx_imul(p, outer_in(p, O, kx_var(p, vj), vi), kx_i(p, per)), kx_i(p, mu * L));
      ks_append(&decls, ks_local(p, a, DT_F32, kx_load_lanes(p, sums, kir_clone_expr(p, base[mu]), W)));
      Expr *av = kx_vlocal(p, a, DT_F32, W);
      ks_append(&body, ks_assign(p, a, kx_fma(p, kx_vlocal(p, d[m], DT_F32, W), kx_vlocal(p, xu, DT_F32, W), av)));
      ks_append(&saves, ks_store(p, sums, kir_clone_expr(p, base[mu]), kx_vlocal(p, a, DT_F32, W)));
    }
  }
  ks_append(&decls, reduce_loop(p, j1, kx_i(p, vcols), W, body));
  ks_append(&decls, saves);
  /* the tail positions in vectors of 8, 4, 2 and 1 lanes, at offsets W + tail-so-far of each slot */
  for (int w = W / 2, j0 = (int)vcols; w >= 1; w /= 2)
    if ((cols - vcols) & w) {
      Stmt *tb = NULL, *ts = NULL;
      int td[8];
      for (int m = 0; m < G->mr; m++) {
        td[m] = k->nlocals++;
        ks_append(&tb, ks_local(p, td[m], DT_F32, gw_dy(G, n1, m, j0, -1, w)));
      }
      for (int u = 0; u < G->nt; u++) {
        int xu = k->nlocals++;
        ks_append(&tb, ks_local(p, xu, DT_F32, gw_x(G, n1, u, j0, -1, w)));
        for (int m = 0; m < G->mr; m++) {
          int mu = m * G->nt + u, e = k->nlocals++;
          Expr *at = kx_iadd(p, kir_clone_expr(p, base[mu]), kx_i(p, W + j0 - vcols));
          Expr *ld = w > 1 ? kx_load_lanes(p, sums, at, w) : kx_load(p, sums, at);
          ks_append(&tb, ks_local(p, e, DT_F32, ld));
          Expr *ev = w > 1 ? kx_vlocal(p, e, DT_F32, w) : kx_local(p, e, DT_F32);
          Expr *dv = w > 1 ? kx_vlocal(p, td[m], DT_F32, w) : kx_local(p, td[m], DT_F32);
          Expr *xv = w > 1 ? kx_vlocal(p, xu, DT_F32, w) : kx_local(p, xu, DT_F32);
          ks_append(&ts, ks_store(p, sums, kir_clone_expr(p, at), kx_fma(p, dv, xv, ev)));
        }
      }
      ks_append(&tb, ts);
      ks_append(&decls, tb);
      j0 += w;
    }
  return ks_loop(p, vi, kx_i(p, O->cb), decls);
}

/* The sums, each shard's in the block-outer form's order, the shards
 * added in order, into dw: chunk vc's blocks, iteration vi2. */
static Stmt *outer_store(Gw *G, const Outer *O, int vc, int vi2) {
  Program *p = G->p;
  Kernel *k = G->k;
  const int W = GW_LANES;
  int64_t cols = O->cols, vcols = O->vcols, L = O->L, per = O->per, chunks = O->chunks;
  int sums = O->sums;
  gw_at(G, outer_block(p, O, kx_var(p, vc), vi2));
  Stmt *fin = NULL;
  for (int m = 0; m < G->mr; m++)
    for (int u = 0; u < G->nt; u++) {
      int mu = m * G->nt + u, s = k->nlocals++;
      for (int64_t q = 0; q < GW_SHARDS; q++) {
        Expr *job = kx_iadd(p, kx_i(p, q * chunks), kx_var(p, vc));
        Expr *b0 = kx_iadd(p, kx_imul(p, outer_in(p, O, job, vi2), kx_i(p, per)), kx_i(p, mu * L));
        int t = k->nlocals++;
        ks_append(&fin, ks_local(p, t, DT_F32, kx_reduce(p, BIN_ADD, kx_load_lanes(p, sums, b0, W))));
        for (int w = W / 2, j0 = (int)vcols; w >= 1; w /= 2)
          if ((cols - vcols) & w) {
            Expr *at = kx_iadd(p, kir_clone_expr(p, b0), kx_i(p, W + j0 - vcols));
            Expr *part = w > 1 ? kx_reduce(p, BIN_ADD, kx_load_lanes(p, sums, at, w)) : kx_load(p, sums, at);
            ks_append(&fin, ks_assign(p, t, kx_bin(p, BIN_ADD, kx_local(p, t, DT_F32), part)));
            j0 += w;
          }
        if (q == 0) ks_append(&fin, ks_local(p, s, DT_F32, kx_local(p, t, DT_F32)));
        else ks_append(&fin, ks_assign(p, s, kx_bin(p, BIN_ADD, kx_local(p, s, DT_F32), kx_local(p, t, DT_F32))));
      }
      Expr *wi = kx_iadd(p, kx_imul(p, kir_clone_expr(p, G->o[m]), kx_i(p, G->T)), kir_clone_expr(p, G->t[u]));
      ks_append(&fin, ks_store(p, G->f.dw, wi, kx_local(p, s, DT_F32)));
    }
  Stmt *f = ks_loop(p, vc, kx_i(p, chunks), ks_loop(p, vi2, kx_i(p, O->cb), fin));
  f->loop = LOOP_PARALLEL;
  return f;
}

static Stmt *gw_batch_outer(Gw *G, int64_t cols, int64_t blocks, int src) {
  Program *p = G->p;
  Kernel *k = G->k;
  const int W = GW_LANES;
  Outer O = {cols, cols / W * W, W + cols % W, (int64_t)G->mr * G->nt * (W + cols % W), 0, 0, blocks, -1};
  O.cb = GW_SCRATCH / (O.per * 4);
  if (O.cb < 1) O.cb = 1;
  if (O.cb > blocks) O.cb = blocks;
  O.chunks = (blocks + O.cb - 1) / O.cb;
  int64_t jobs = GW_SHARDS * O.chunks;
  Shape ss = {1, {jobs * O.cb * O.per}};
  O.sums = kir_buffer(p, BUF_TEMP, DT_F32, "gw_sums", &ss, k->node);
  /* job vj: shard vj / chunks of the batch, chunk vj % chunks of the blocks; its slots and rows are its own */
  int vj = k->nvars++, vz = k->nvars++, n1 = k->nvars++, vi = k->nvars++, j1 = k->nvars++, vc = k->nvars++, vi2 = k->nvars++;
  Expr *sh = idiv_c(p, kx_var(p, vj), O.chunks);
  Expr *vch = O.chunks == 1 ? kx_i(p, 0) : kx_bin(p, BIN_MOD, kx_var(p, vj), kx_i(p, O.chunks));
  Stmt *chunk = NULL, *copy = NULL;
  if (G->xjob >= 0) {
    Shape xs = {1, {jobs * G->g->c * G->g->kw * G->hp * G->g->ow}};
    G->xjob = vj, G->xsrc = G->f.x, G->f.x = kir_buffer(p, BUF_TEMP, DT_F32, "x_shifted", &xs, k->node);
    copy = outer_shifted(G, vj, n1);
  } else if (src >= 0) {
    copy = outer_rows(G, &O, src, vj, vch, n1, &chunk);
  }
  ks_append(&chunk, ks_loop(p, vz, kx_i(p, O.cb * O.per),
                            ks_store(p, O.sums, kx_iadd(p, kx_imul(p, kx_var(p, vj), kx_i(p, O.cb * O.per)), kx_var(p, vz)),
                                     kx_f(p, 0))));
  ks_append(&copy, outer_item(G, &O, vj, vch, vi, j1, n1));
  Expr *item;
  Stmt *items = shard_loop(G, n1, sh, NULL, &item);
  items->body = kir_subst_block(p, copy, n1, item);
  ks_append(&chunk, items);
  Stmt *l = ks_loop(p, vj, kx_i(p, jobs), chunk);
  l->loop = LOOP_PARALLEL;
  ks_append(&l, outer_store(G, &O, vc, vi2));
  return l;
}

/* The form with output channels in lanes (O a multiple of GW_LANES): dy
 * transposed to channels last, dy_t[n, y ow + x, o], and per block of 16
 * channels (ob) by NT taps NT accumulators, one per tap, over every
 * position of every batch item; each step loads one vector of dy_t and
 * broadcasts one element of xp per tap, so no product is on a wide row's
 * extra column and there is no tail:
 *
 *   for n, y, x parallel: dy_t[(n P + y ow + x) O + o] = dy[..]   (P = oh ow)
 *   for b < shards (O / 16) ntb parallel {       (shard q = b / ((O / 16) ntb))
 *     local a[u]: f32x16 = 0
 *     for n in shard q's items reduce { for y < oh reduce { for x < ow reduce {
 *       local d = dy_t<16>[(n P + y ow + x) O + ob 16]
 *       a[u] = fma(d, broadcast(xp[n C hp wp + off(t_u) + y wp + x]), a[u]) } } }
 *     gw_sums<16>[(q T + t_u) O + ob 16] = a[u] }
 *   for o < O parallel { for t < T { dw[o T + t] = gw_sums[t O + o] + gw_sums[(T + t) O + o] ... } }
 *
 * Each dw element is one fma chain over (n, y, x) in order per shard, the
 * shards added in order: its order depends on the shapes alone.  NT is the fewest taps that cover T in
 * blocks of at most GW_CH_TAPS (accumulators plus dy's vector in the 32
 * registers): LeNet-5's second convolution (16 x 150) has 6 blocks of
 * 25 taps, one input channel each.  dy_t replaces the lowering's copy of
 * dy into wide rows (src, dense [N, O, oh, ow]; -1 when dy was not
 * copied and f.dy is read at its pitch wp). */
#define GW_CH_TAPS 28

/* The transpose of dense dy [n, O, P] into dy_t [n, P, O] in blocks of W
 * channels by W positions moved through registers: W loads of W
 * positions (one per channel), log2(W) rounds of zips (kernel.h, EX_ZIP),
 * W stores of W channels (one per position).  Positions past the whole
 * blocks are one more block ending at the last position, which stores
 * some elements of dy_t again (the same values: it only reads dy).  The
 * scalar transpose moved one float per load and store, its loads a
 * plane apart (LeNet-5's second convolution: 0.8 us of a 33 us step). */
static Stmt *transpose_lanes(Program *p, Kernel *k, int dyt, int dy, Dim n, int64_t O, int64_t P) {
  enum { W = GW_LANES };
  int tn = k->nvars++, tb = k->nvars++, ob = k->nvars++;
  Stmt *blocks = NULL;
  for (int last = 0; last <= (P % W != 0); last++) {
    Expr *p0 = last ? kx_i(p, P - W) : kx_imul(p, kx_var(p, tb), kx_i(p, W));
    Expr *o0 = kx_imul(p, kx_var(p, ob), kx_i(p, W));
    Stmt *body = NULL;
    int row[W];
    for (int r = 0; r < W; r++) { /* channel o0 + r, positions p0 .. p0 + W - 1 */
      Expr *at = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, tn), kx_i(p, O)), kx_iadd(p, kir_clone_expr(p, o0), kx_i(p, r))),
                                    kx_i(p, P)),
                         kir_clone_expr(p, p0));
      row[r] = k->nlocals++;
      ks_append(&body, ks_local(p, row[r], DT_F32, kx_load_lanes(p, dy, at, W)));
    }
    sched_zip_transpose(p, k, row, W, &body);
    for (int r = 0; r < W; r++) { /* position p0 + r, channels o0 .. o0 + W - 1 */
      Expr *at = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, tn), kx_i(p, P)), kx_iadd(p, kir_clone_expr(p, p0), kx_i(p, r))),
                                    kx_i(p, O)),
                         kir_clone_expr(p, o0));
      ks_append(&body, ks_store(p, dyt, at, kx_vlocal(p, row[r], DT_F32, W)));
    }
    Stmt *l = ks_loop(p, ob, kx_i(p, O / W), body);
    ks_append(&blocks, last ? l : ks_loop(p, tb, kx_i(p, P / W), l));
    if (last) ob = k->nvars++;
  }
  Stmt *tr = ks_loop(p, tn, kx_dim(p, n), blocks);
  tr->loop = LOOP_PARALLEL;
  return tr;
}

static Stmt *gw_channels(Gw *G, int src) {
  Program *p = G->p;
  Kernel *k = G->k;
  const ConvGeom *cg = G->g;
  const int W = GW_LANES;
  int64_t O = cg->o, P = cg->oh * cg->ow, T = G->T, taps = cg->kh * cg->kw;
  Dim nmax = G->nmax;
  int64_t ntb = (T + GW_CH_TAPS - 1) / GW_CH_TAPS, nt = (T + ntb - 1) / ntb, nob = O / W;
  Shape ts = {1, {nmax * P * O}}, ss = {1, {GW_SHARDS * T * O}};
  int dyt = kir_buffer(p, BUF_TEMP, DT_F32, "dy_t", &ts, k->node), sums = kir_buffer(p, BUF_TEMP, DT_F32, "gw_sums", &ss, k->node);
  /* the transpose, one batch item and position per iteration */
  int tn = k->nvars++, tp = k->nvars++, to = k->nvars++;
  int sb = src >= 0 ? src : G->f.dy;
  int64_t pitch = src >= 0 ? cg->ow : G->wp, splane = src >= 0 ? P : G->plane;
  Expr *yy = kx_bin(p, BIN_DIV, kx_var(p, tp), kx_i(p, cg->ow)), *xx = kx_bin(p, BIN_MOD, kx_var(p, tp), kx_i(p, cg->ow));
  Expr *from = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, tn), kx_i(p, O)), kx_var(p, to)), kx_i(p, splane)),
                       kx_iadd(p, kx_imul(p, yy, kx_i(p, pitch)), xx));
  Expr *into = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, tn), kx_i(p, P)), kx_var(p, tp)), kx_i(p, O)), kx_var(p, to));
  Stmt *tr;
  if ((src >= 0 || (pitch == cg->ow && splane == P)) && P >= W && O % W == 0) {
    tr = transpose_lanes(p, k, dyt, sb, cg->n, O, P);
  } else {
    tr = ks_loop(p, tn, kx_dim(p, cg->n), ks_loop(p, tp, kx_i(p, P), ks_loop(p, to, kx_i(p, O), ks_store(p, dyt, into, kx_load(p, sb, from)))));
    tr->loop = LOOP_PARALLEL;
  }
  /* the tiles */
  int vb = k->nvars++, n1 = k->nvars++, y1 = k->nvars++, x1 = k->nvars++, d = k->nlocals++;
  Expr *sh = kx_bin(p, BIN_DIV, kx_var(p, vb), kx_i(p, nob * ntb)), *blk = kx_bin(p, BIN_MOD, kx_var(p, vb), kx_i(p, nob * ntb));
  Expr *ob = ntb == 1 ? blk : kx_bin(p, BIN_DIV, blk, kx_i(p, ntb));
  Expr *tb = ntb == 1 ? kx_i(p, 0) : kx_bin(p, BIN_MOD, kir_clone_expr(p, blk), kx_i(p, ntb));
  Expr *o16 = kx_imul(p, ob, kx_i(p, W));
  Expr *pos = kx_iadd(p, kx_imul(p, kx_var(p, y1), kx_i(p, cg->ow)), kx_var(p, x1));
  Stmt *decls = NULL, *stores = NULL;
  Stmt *body = ks_local(p, d, DT_F32, kx_load_lanes(p, dyt, kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, n1), kx_i(p, P)), pos), kx_i(p, O)),
                                                                   kir_clone_expr(p, o16)), W));
  /* blocks of whole channels: every tap's offset is the block's channel plus a constant (one address
   * register for all NT broadcasts) */
  int whole = T % nt == 0 && nt % taps == 0;
  for (int u = 0; u < nt; u++) {
    Expr *t = clamped(p, kx_imul(p, kir_clone_expr(p, tb), kx_i(p, nt)), u, T - 1, T % nt != 0), *off;
    if (whole) {
      int64_t c = u / taps, kh = u % taps / cg->kw, kw = u % cg->kw;
      off = kx_i(p, c * G->hp * G->wp + kh * cg->dh * G->wp + kw * cg->dw);
    } else {
      Expr *c = kx_bin(p, BIN_DIV, kir_clone_expr(p, t), kx_i(p, taps));
      Expr *kh = kx_bin(p, BIN_MOD, kx_bin(p, BIN_DIV, kir_clone_expr(p, t), kx_i(p, cg->kw)), kx_i(p, cg->kh));
      Expr *kw = kx_bin(p, BIN_MOD, kir_clone_expr(p, t), kx_i(p, cg->kw));
      off = kx_iadd(p, kx_imul(p, c, kx_i(p, G->hp * G->wp)),
                    kx_iadd(p, kx_imul(p, kh, kx_i(p, cg->dh * G->wp)), kx_imul(p, kw, kx_i(p, cg->dw))));
    }
    Expr *at = kx_iadd(p, kx_imul(p, kx_var(p, y1), kx_i(p, G->wp)), kx_var(p, x1)), *xi;
    if (whole) /* (n C hp wp + tb (NT / taps) hp wp + y wp + x) + the tap's constant */
      xi = kx_iadd(p, kx_iadd(p, kx_iadd(p, kx_imul(p, kx_var(p, n1), kx_i(p, cg->c * G->hp * G->wp)),
                                         kx_imul(p, kir_clone_expr(p, tb), kx_i(p, nt / taps * G->hp * G->wp))), at), off);
    else
      xi = kx_iadd(p, kx_imul(p, kx_var(p, n1), kx_i(p, cg->c * G->hp * G->wp)), kx_iadd(p, off, at));
    int a = k->nlocals++;
    ks_append(&decls, ks_local(p, a, DT_F32, kx_broadcast(p, kx_f(p, 0), W)));
    ks_append(&body, ks_assign(p, a, kx_fma(p, kx_vlocal(p, d, DT_F32, W), kx_broadcast(p, kx_load(p, G->f.x, xi), W),
                                            kx_vlocal(p, a, DT_F32, W))));
    Expr *at_s = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kir_clone_expr(p, sh), kx_i(p, T)), t), kx_i(p, O)), kir_clone_expr(p, o16));
    ks_append(&stores, ks_store(p, sums, at_s, kx_vlocal(p, a, DT_F32, W)));
  }
  Stmt *nest = reduce_loop(p, x1, kx_i(p, cg->ow), 1, body);
  nest = reduce_loop(p, y1, kx_i(p, cg->oh), 1, nest);
  Expr *item;
  Stmt *items = shard_loop(G, n1, sh, NULL, &item);
  items->body = kir_subst_block(p, nest, n1, item);
  ks_append(&decls, items);
  ks_append(&decls, stores);
  Stmt *tiles = ks_loop(p, vb, kx_i(p, GW_SHARDS * nob * ntb), decls);
  tiles->loop = LOOP_PARALLEL;
  /* dw in its [O, T] layout, the shards' sums added in order */
  int fo = k->nvars++, ft = k->nvars++;
  Expr *sum = NULL;
  for (int64_t q = 0; q < GW_SHARDS; q++) {
    Expr *part = kx_load(p, sums, kx_iadd(p, kx_i(p, q * T * O), kx_iadd(p, kx_imul(p, kx_var(p, ft), kx_i(p, O)), kx_var(p, fo))));
    sum = sum ? kx_bin(p, BIN_ADD, sum, part) : part;
  }
  Stmt *fin = ks_loop(p, fo, kx_i(p, O), ks_loop(p, ft, kx_i(p, T), ks_store(p, G->f.dw, kx_iadd(p, kx_imul(p, kx_var(p, fo), kx_i(p, T)), kx_var(p, ft)), sum)));
  fin->loop = LOOP_PARALLEL;
  ks_append(&tr, tiles);
  ks_append(&tr, fin);
  return tr;
}

/* The lowering's copy of dy into wide rows: a top-level statement (before
 * the nest) storing into buffer wide whose stored values are loads of one
 * other buffer; that buffer, or -1. */
typedef struct GwCopy {
  int wide, src, bad;
} GwCopy;

static int gw_copy_stmt(void *ctx, const Stmt *s) {
  GwCopy *c = ctx;
  if (s->kind != ST_STORE || s->id != c->wide) return 0;
  const Expr *v = s->value;
  if (v->kind == EX_LOAD && !v->b && v->lanes == 1 && v->id != c->wide && (c->src < 0 || c->src == v->id)) c->src = v->id;
  else if (v->kind != EX_FCONST) c->bad = 1;
  return 0;
}

/* Finds the lowering's copy of dy into wide rows (into buffer wide, from
 * a buffer of at least need elements) among the kernel's statements before
 * **slot (the nest), removes it and returns its source (*slot then the
 * nest's slot again); -1 and nothing removed when there is none. */
static int gw_take_copy(Program *p, Kernel *k, Stmt ***slot, int wide, int64_t need) {
  for (Stmt **q = &k->body; *q != **slot; q = &(*q)->next) {
    GwCopy c = {wide, -1, 0};
    KirVisitor cv = {&c, gw_copy_stmt, NULL};
    Stmt one = **q;
    one.next = NULL;
    kir_walk_block(&cv, &one);
    if (c.src >= 0 && !c.bad && p->bufs[c.src].size >= need) {
      *q = (*q)->next;
      for (*slot = &k->body; (**slot)->next;) *slot = &(**slot)->next;
      return c.src;
    }
  }
  return -1;
}

/* Whether the batch-outer tiles take the shifted form (outer_shifted):
 * the fma lanes the wide rows spend past the rows' ends, O T (wp - ow)
 * per row of dy, outweigh by SHIFTED_GAIN the floats the shifted copies
 * move, C kw hp ow per item (LeNet-5's c1: 6 x 25 x 4 x 27 = 16,200 for
 * 4,480). */
#define SHIFTED_GAIN 2
static int shifted_pays(const Gw *G) {
  const ConvGeom *cg = G->g;
  return cg->oh > 1 && G->wp > cg->ow && cg->ow >= 4 &&
         cg->o * G->T * (G->wp - cg->ow) * (cg->oh - 1) >= SHIFTED_GAIN * cg->c * cg->kw * G->hp * cg->ow;
}

int sched_gw_tiles(Program *p, const Graph *g, Kernel *k) {
  const Node *nd = &g->nodes[k->node];
  ConvGeom cg;
  ir_conv_geom(g, nd, &cg);
  Stmt **slot = &k->body;
  while (*slot && (*slot)->next) slot = &(*slot)->next;
  GwFind f = {-1, -1, -1, -1};
  KirVisitor v = {&f, gw_find_stmt, NULL};
  if (!*slot || (*slot)->kind != ST_LOOP) return -1;
  kir_walk_block(&v, (*slot)->body);
  if (cg.groups != 1 || cg.sh != 1 || cg.sw != 1 || f.dy < 0 || f.dw < 0 || f.dy == f.x || f.dw == f.dy || f.dw == f.x)
    return -1;
  Gw G = {p, k, &cg, f, 1, 1, 0, 0, 0, -1, -1, -1, -1, cg.h + cg.pt + cg.pb, cg.w + cg.pl + cg.pr, 0, cg.c * cg.kh * cg.kw,
          {0}, {0}, {0}};
  int64_t cols = (cg.oh - 1) * G.wp + cg.ow;
  G.plane = cg.oh * G.wp;
  Dim nmax = DIM_IS_SYM(cg.n) ? g->syms[DIM_SYM_ID(cg.n)].max : cg.n;
  /* the factors as the lowering laid them out: dy in rows wp wide, xp padded */
  if (p->bufs[f.dw].size != cg.o * G.T || p->bufs[f.dy].size < nmax * cg.o * G.plane ||
      p->bufs[f.x].size < nmax * cg.c * G.hp * G.wp || cols < GW_LANES)
    return -1;
  G.nmax = nmax;
  if (cg.o % GW_LANES == 0) {
    /* dy_t is made from dy itself: the copy into wide rows goes */
    int src = gw_take_copy(p, k, &slot, f.dy, nmax * cg.o * cg.oh * cg.ow);
    *slot = gw_channels(&G, src);
    return 0;
  }
  gw_shape(cg.o, G.T, &G.mr, &G.nt);
  G.nob = (cg.o + G.mr - 1) / G.mr, G.ntb = (G.T + G.nt - 1) / G.nt;
  int64_t blocks = G.nob * G.ntb;
  /* what one block reads over the batch: its channels' dy and (at most) its taps' channels of xp */
  int64_t xch = G.nt / (cg.kh * cg.kw) + 2 < cg.c ? G.nt / (cg.kh * cg.kw) + 2 : cg.c;
  int64_t stream = nmax * 4 * (G.mr * G.plane + xch * G.hp * G.wp);
  if (blocks > 1 && stream > GW_STREAM) {
    int src = gw_take_copy(p, k, &slot, f.dy, nmax * cg.o * cg.oh * cg.ow);
    if (src >= 0 && shifted_pays(&G)) { /* dy where it is, the input's kw shifts per item (outer_shifted) */
      G.f.dy = src, G.plane = cg.oh * cg.ow, G.xjob = 0;
      cols = G.plane;
      src = -1;
    }
    *slot = gw_batch_outer(&G, cols, blocks, src);
    return 0;
  }
  int vb = k->nvars++;
  gw_at(&G, kx_var(p, vb));
  Stmt *l = ks_loop(p, vb, kx_i(p, blocks), gw_block(&G, cols));
  l->loop = LOOP_PARALLEL;
  *slot = l;
  return 0;
}
