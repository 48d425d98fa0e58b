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
 * The tile shape: the (MR, NT) with MR * NT <= 24 (the accumulators, plus
 * MR vectors of dy and one of xp, in AVX-512's 32 registers) that needs
 * the fewest instructions over all blocks, blocks * (MR NT + MR + NT):
 * 6 x 4 for LeNet-5's first convolution (6 x 25), 4 x 6 for its second
 * (16 x 150).  The rule takes one group and unit strides; other shapes keep
 * the row-buffer nest.
 */
#include "ir/conv.h"
#include "passes/schedule.h"

#define GW_LANES 16
#define GW_ACC 24

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
  int64_t hp, wp, plane, T;
  Expr *o[8], *t[8], *off[8];   /* per row of the tile: channel; per column: tap and its offset in xp's planes */
} Gw;

/* dy[(n O + o_m) plane + j0 + j], xp[n C hp wp + off_u + j0 + j], in lanes lanes
 * (j < 0: no loop variable, at j0). */
static Expr *gw_dy(const Gw *G, int n, int m, int64_t j0, int j, int lanes) {
  Program *p = G->p;
  Expr *at = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, n), kx_i(p, G->g->o)), kir_clone_expr(p, G->o[m])), kx_i(p, G->plane)),
                     j < 0 ? kx_i(p, j0) : kx_iadd(p, kx_i(p, j0), kx_var(p, j)));
  return lanes > 1 ? kx_load_lanes(p, G->f.dy, at, lanes) : kx_load(p, G->f.dy, at);
}

static Expr *gw_x(const Gw *G, int n, int u, int64_t j0, int j, int lanes) {
  Program *p = G->p;
  Expr *at = kx_iadd(p, kx_imul(p, kx_var(p, n), kx_i(p, G->g->c * G->hp * G->wp)),
                     kx_iadd(p, kir_clone_expr(p, G->off[u]), j < 0 ? kx_i(p, j0) : kx_iadd(p, kx_i(p, j0), kx_var(p, j))));
  return lanes > 1 ? kx_load_lanes(p, G->f.x, at, lanes) : kx_load(p, G->f.x, at);
}

static Stmt *reduce_loop(Program *p, int var, Expr *extent, int64_t step, Stmt *body) {
  Stmt *l = ks_loop(p, var, extent, body);
  l->loop = LOOP_REDUCE;
  l->step = step;
  return l;
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
  Gw G = {p, k, &cg, f, 1, 1, cg.h + cg.pt + cg.pb, cg.w + cg.pl + cg.pr, 0, cg.c * cg.kh * cg.kw, {0}, {0}, {0}};
  int64_t cols = (cg.oh - 1) * G.wp + cg.ow, taps = cg.kh * cg.kw;
  G.plane = cg.oh * G.wp;
  Dim nmax = DIM_IS_SYM(cg.n) ? g->syms[DIM_SYM_ID(cg.n)].max : cg.n;
  /* the factors as the lowering laid them out: dy in rows wp wide, xp padded */
  if (p->bufs[f.dw].size != cg.o * G.T || p->bufs[f.dy].size < nmax * cg.o * G.plane ||
      p->bufs[f.x].size < nmax * cg.c * G.hp * G.wp || cols < GW_LANES)
    return -1;
  gw_shape(cg.o, G.T, &G.mr, &G.nt);
  int64_t nob = (cg.o + G.mr - 1) / G.mr, ntb = (G.T + G.nt - 1) / G.nt;
  int vb = k->nvars++;
  Expr *ob = nob == 1 ? kx_i(p, 0) : ntb == 1 ? kx_var(p, vb) : kx_bin(p, BIN_DIV, kx_var(p, vb), kx_i(p, ntb));
  Expr *tb = ntb == 1 ? kx_i(p, 0) : nob == 1 ? kx_var(p, vb) : kx_bin(p, BIN_MOD, kx_var(p, vb), kx_i(p, ntb));
  for (int m = 0; m < G.mr; m++) G.o[m] = clamped(p, kx_imul(p, ob, kx_i(p, G.mr)), m, cg.o - 1, cg.o % G.mr != 0);
  for (int u = 0; u < G.nt; u++) {
    Expr *t = G.t[u] = clamped(p, kx_imul(p, tb, kx_i(p, G.nt)), u, G.T - 1, G.T % G.nt != 0);
    Expr *c = kx_bin(p, BIN_DIV, t, kx_i(p, taps)), *kh = kx_bin(p, BIN_MOD, kx_bin(p, BIN_DIV, t, kx_i(p, cg.kw)), kx_i(p, cg.kh));
    Expr *kw = kx_bin(p, BIN_MOD, t, kx_i(p, cg.kw));
    G.off[u] = kx_iadd(p, kx_imul(p, c, kx_i(p, G.hp * G.wp)),
                       kx_iadd(p, kx_imul(p, kh, kx_i(p, cg.dh * G.wp)), kx_imul(p, kw, kx_i(p, cg.dw))));
  }
  Stmt *l = ks_loop(p, vb, kx_i(p, nob * ntb), gw_block(&G, cols));
  l->loop = LOOP_PARALLEL;
  *slot = l;
  return 0;
}
