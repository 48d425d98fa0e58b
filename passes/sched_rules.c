/*
 * sched_rules.c — the schedule step's rules (schedule.c has the
 * primitives they are built from): linear layers and matrix products in
 * rows and register tiles, convolutions on the same tiles, pooling
 * columns, and the parallel marks; then the step itself, every rule of
 * every kernel.
 */
#include <stdlib.h>

#include "ir/conv.h"
#include "passes/sched_util.h"

/* --- rules -------------------------------------------------------------------------- */

/* The declaration of the first accumulator a reduction loop follows. */
static Stmt **find_accumulator(Stmt **slot) {
  for (; *slot; slot = &(*slot)->next) {
    Stmt *s = *slot;
    if (s->kind == ST_LOCAL && s->next && s->next->kind == ST_LOOP && s->next->loop == LOOP_REDUCE) return slot;
    Stmt **r = find_accumulator(&s->body);
    if (r) return r;
  }
  return NULL;
}

/* The slots of the loops around the first reduction loop, outermost
 * first, the reduction loop last; returns how many (0: none). */
static int reduce_path(Stmt **slot, Stmt ***path, int depth, int max) {
  for (; *slot && depth < max; slot = &(*slot)->next) {
    Stmt *s = *slot;
    if (s->kind != ST_LOOP) continue;
    path[depth] = slot;
    if (s->loop == LOOP_REDUCE) return depth + 1;
    int d = reduce_path(&s->body, path, depth + 1, max);
    if (d) return d;
  }
  return 0;
}

#define DOT_LANES 16

/* Dot-product lanes — a linear layer of fewer than 8 rows whose K is a
 * multiple of 16: each dot product keeps 16 partial sums (lane u sums the
 * terms k = u mod 16) and adds them pairwise at the end, straight-line
 * independent sums that the compilers' SLP vectoriser turns into one
 * vector multiply-add per 16 terms, where one running sum is a chain of
 * dependent additions.  Split k by 16, promote the accumulator to a tile,
 * unroll the lanes, and keep the tile's elements as scalars. */
static void rule_dot_lanes(Program *p, Kernel *k) {
  Stmt **decl = find_accumulator(&k->body);
  Stmt *red = decl ? (*decl)->next : NULL;
  if (!red || !sched_is_const(red->extent) || red->extent->i % DOT_LANES) return;
  Kernel before = *k;
  Stmt *orig = kir_clone_block(p, k->body);
  if (sched_split(p, k, red, DOT_LANES) < 0 || sched_promote(p, k, decl, red) < 0 || sched_unroll(p, k, &red->body) < 0 ||
      sched_scalarize(p, k, decl) < 0) {
    *k = before;
    k->body = orig;
  }
}

/* The buffer the dot product reads its weight from (the second factor
 * of its update), or -1 when that factor is not a load. */
static int linear_weight(const Stmt *red) {
  const Stmt *u = red->body;
  if (!u || u->kind != ST_ASSIGN || u->value->kind != EX_BINARY || u->value->b->kind != EX_BINARY) return -1;
  const Expr *w = u->value->b->b;
  return w->kind == EX_LOAD ? w->id : -1;
}

typedef struct Transpose {
  int from, to;
  int64_t rows, cols;   /* of from */
} Transpose;

/* from[a * cols + b] -> to[b * rows + a] */
static Expr *transposed_load(void *ctx, Program *p, Expr *e) {
  const Transpose *t = ctx;
  const Expr *i = e->a;
  if (e->kind != EX_LOAD || e->id != t->from || i->kind != EX_BINARY || i->op != BIN_ADD || i->a->kind != EX_BINARY ||
      i->a->op != BIN_MUL || !sched_is_const(i->a->b) || i->a->b->i != t->cols)
    return e;
  return kx_load(p, t->to, kx_iadd(p, kx_imul(p, i->b, kx_i(p, t->rows)), i->a->a));
}

/* wt[k, j] = w[j, k]: the parameter's derived copy, made once per change
 * of the parameters (kir_derived), when w is a parameter; otherwise (a
 * computed weight) a temporary written by a nest put in front of the
 * kernel, on every call. */
static int transpose_weight(Program *p, Kernel *k, int w, int64_t J, int64_t K) {
  int wt = p->bufs[w].size == J * K ? kir_derived(p, w, DL_TRANSPOSED) : -1;
  if (wt >= 0 && p->bufs[wt].shape.d[0] == K && p->bufs[wt].shape.d[1] == J) return wt;
  Shape ts = {2, {K, J}};
  wt = kir_buffer(p, BUF_TEMP, DT_F32, "weight_t", &ts, k->node);
  int ta = k->nvars++, tb = k->nvars++;
  Expr *dst = kx_iadd(p, kx_imul(p, kx_var(p, tb), kx_i(p, J)), kx_var(p, ta));
  Expr *src = kx_iadd(p, kx_imul(p, kx_var(p, ta), kx_i(p, K)), kx_var(p, tb));
  Stmt *copy = ks_loop(p, ta, kx_i(p, J), ks_loop(p, tb, kx_i(p, K), ks_store(p, wt, dst, kx_load(p, w, src))));
  copy->next = k->body;
  k->body = copy;
  return wt;
}

/* Whether some kernel of p stores into buffer b (a train step's update of
 * a parameter). */
static int buffer_stored(const Program *p, int b) {
  for (int i = 0; i < p->nfuncs; i++)
    for (int j = 0; j < p->funcs[i].nkernels; j++)
      if (sched_block_has(p->funcs[i].kernels[j].body, ST_STORE, b)) return 1;
  return 0;
}

/* Row order — a linear layer of 8 rows or more: i-k-j against a
 * transposed copy of W (WT[k, j], see transpose_weight), so the innermost
 * loop runs along a row of the output and of WT, both contiguous and
 * independent, and vectorises without reassociating any sum.  Each output
 * keeps its sum in place, starting at its bias, then k in order (the rows
 * are independent, so moving j inside k reorders no sum).  With transpose
 * 0 (for the register tiles) the nest reads W as it is. */
static Stmt **rule_rows(Program *p, Kernel *k, int64_t J, int64_t K, int transpose) {
  Stmt *rl = k->body, *jl = rl ? rl->body : NULL;
  if (!jl || jl->kind != ST_LOOP || jl->next || !jl->body || !jl->body->next) return NULL;
  int w = linear_weight(jl->body->next);
  if (w < 0 || sched_accumulate_in_place(p, &jl->body) < 0 || sched_fission(p, k, jl) < 0) return NULL;
  Stmt *kl = jl->next;
  if (sched_reorder(kl) < 0) return NULL;
  sched_hoist(p, k, &kl->body);
  if (K > 1 && transpose) { /* [J, 1] is its own transpose */
    Transpose t = {w, transpose_weight(p, k, w, J, K), J, K};
    kl->body = kir_rewrite_block(p, kl->body, transposed_load, &t);
  }
  Stmt **slot = &k->body;
  while (*slot && *slot != rl) slot = &(*slot)->next;
  return slot;
}

/* --- register tiles ----------------------------------------------------------------- */

/* The cost model of register tiles (a small one, by design):
 *
 *   - TILE_WIDTH f32 lanes per vector register (512 bits: AVX-512; LLVM
 *     and GCC split a wider vector over a narrower machine's registers)
 *     and TILE_REGS of them (AVX-512 has 32).
 *   - The micro-kernel keeps MR rows by NV vectors of accumulators, the NV
 *     vectors of the packed B row it reads at each k, and one broadcast of
 *     A: MR * NV + NV + 1 <= TILE_REGS.  Each step along k does MR * NV
 *     FMAs for NV + MR loads, and MR * NV independent sums cover the FMA's
 *     latency on both pipes.  MR is 6 (NV then at most 4: 6 x 64 floats,
 *     24 accumulators) from 32 rows on, 4 from 8 (fewer rows recomputed in
 *     the last tile of a small batch; NV at most 6), and the rows
 *     themselves below 8 (one tile for all; one row, batch-1 inference:
 *     NV 8, eight independent sums, where the dot product of each output
 *     alone was one chain of dependent vector fmas, 1.9x slower on the
 *     MLP).  NV is the most that
 *     fit, or a smaller one down to half of it that divides the columns'
 *     vectors (4 for 512, 256 or 128 columns).
 *   - B is packed per call into panels of NR = NV * TILE_WIDTH columns,
 *     K-major and contiguous (panel p holds its K rows of NR floats), in
 *     arena scratch: the micro-kernel reads one contiguous stream whatever
 *     B's layout (a linear layer's weight in PyTorch layout [J, K] is read
 *     directly; no transposed copy is kept; panel_pack_lanes moves it
 *     in 16 x 16 blocks through registers).  A B whose rows are already
 *     contiguous along the columns (a matmul's: the backward products'
 *     W and X) is read where it is instead, one row of NR floats per k
 *     at B's row stride: the pack's K * J moves per call cost more than
 *     the hardware prefetcher's strided stream (MLP training step, batch
 *     64: 5-10% faster).
 *   - K blocking: the KC x NR block of a panel that the row tiles share is
 *     kept within half of TILE_L2 bytes, the smallest L2 of the x86 cores
 *     with AVX-512 (1 MiB): KC is the largest divisor of K with KC * NR * 4
 *     <= TILE_L2 / 2 (2048 for NR = 64), and K is not blocked when it fits
 *     (the usual case), is symbolic, or has no divisor of at least 16
 *     below that.  The micro-kernel then streams B from L2: NR * 4 bytes
 *     per MR * NV FMAs (256 B per 24, about 21 B a cycle at two FMAs a
 *     cycle), well within L2's bandwidth.  Blocking for L1 instead (KC =
 *     128, 32 KiB) measured slower on 512^3 (66% of peak against 72% on an
 *     Intel Xeon with AVX-512): each block reloads and stores every
 *     accumulator of every tile, and the tiles restart their pipelines.
 *   - Prefetch: the micro-kernel's reduction over a packed panel asks
 *     the emitters to prefetch the panel's lines TILE_AHEAD steps of K
 *     ahead (kernel.h), when it has at least 8 * TILE_AHEAD of them:
 *     the L2 stream then arrives before the loads.  The MLP's fc1 at
 *     batch 256 (K = 784) measured 4% faster with gcc, 3% through LLVM;
 *     distances of 2 to 12 steps did about the same, 32 less.
 *   - Rows (MC) are not blocked: every row tile of a panel runs against
 *     the L1-resident KC x NR block, and A streams at one float per NV
 *     FMAs, which even L3 sustains; NC is one panel.
 *   - Threads: when K is not blocked and all of B fits half of L2, the
 *     row tiles are the parallel loop, each tile over every panel
 *     (tile_rows): a layer of one panel runs on every
 *     thread, and a thread's rows of A, the rows the layer before made on
 *     that thread, stay in its caches.  Otherwise the panels are, and a
 *     last panel of the columns left takes its rows on every thread.
 */
#define TILE_WIDTH 16
#define TILE_REGS 32
#define TILE_MAX 8
#define TILE_L2 (1024 * 1024)
#define TILE_AHEAD 8

typedef struct TileShape {
  int mr, nv;
  int64_t kc;   /* 0: K not blocked */
} TileShape;

static int tile_vectors(int mr, int64_t J) {
  int fit = 0;
  while (fit < TILE_MAX && mr * (fit + 1) + (fit + 1) + 1 <= TILE_REGS && (fit + 1) * TILE_WIDTH <= J) fit++;
  for (int nv = fit; nv > fit / 2; nv--) /* one that divides the columns' vectors, if one nearly as wide does */
    if ((J / TILE_WIDTH) % nv == 0) return nv;
  return fit;
}

static int64_t tile_kc(const Expr *K, int64_t nr) {
  int64_t most = TILE_L2 / 2 / (nr * 4);
  if (!sched_is_const(K) || K->i <= most) return 0;
  for (int64_t kc = most; kc >= 16; kc--)
    if (K->i % kc == 0) return kc;
  return 0;
}

/* The row form rule_rows leaves, by its parts:
 *   for r < R { for i1 < J { Y[f(r, i1)] = B(i1) }              (init)
 *     for kk < K reduce { local x = X[g(r, kk)]                  (xv)
 *       for i3 < J { Y[..] = Y[..] + x * WT[h(kk, i3)] } } }     (upd, wt) */
/* What fuse.c's epilogue rules leave after a product, per output
 * element (row, var): the body reads the product's value from local
 * `in` and is locals, assignments to them, and stores at the element (a
 * linear layer's relu: `y[X] = select(in < 0, 0, in)`; a gradient
 * product's relu mask).  The register tiles run it in lanes on their
 * accumulators instead of storing them (epi_apply).  Two forms carry it:
 * a linear layer's nest ends in `local in = acc + b; body` (peel_epilogue
 * takes it off, leaving the row form its store `y[X] = acc + b`), and a
 * product in the row form gets a loop after its reduction, `for var < J
 * { local in = Y[X]; body }` (row_form takes it off). */
typedef struct Epi {
  Stmt *body;
  int in, row, var;
} Epi;

typedef struct RowForm {
  Stmt *rows, *init, *upd;
  Expr *xv, *wt, *K;
  int r, i1, kk, i3, x, axis;
  int64_t J;
  const Epi *epi;
  Epi tail;            /* the loop after the reduction, taken off (tail.body: none) */
} RowForm;

/* The loop after the reduction of a row form, fuse.c's row epilogue:
 * for e < J { local in = Y[X(i1 := e)]; body }, body not reading Y. */
static int row_tail(Program *p, RowForm *f, Stmt *el) {
  Stmt *in = el->kind == ST_LOOP ? el->body : NULL;
  if (!in || el->step != 1 || el->loop == LOOP_REDUCE || !sched_same_expr(el->extent, f->rows->body->extent) ||
      in->kind != ST_LOCAL || in->count || in->type != DT_F32 || !in->next || in->value->kind != EX_LOAD ||
      in->value->id != f->init->id || in->value->b)
    return -1;
  Expr *at = sched_subst_expr(p, f->init->index, f->i1, kx_var(p, el->id));
  if (!sched_same_expr(in->value->a, at) || sched_block_uses(in->next, EX_LOAD, f->init->id)) return -1;
  f->tail = (Epi){in->next, in->id, f->r, el->id};
  return 0;
}

/* The parts of the row form, checked: the update adds to the element the
 * init wrote (index with i1 := i3), reads x and WT from other buffers,
 * and WT and K do not depend on the row (rows are then independent and
 * may be computed side by side). */
static int row_form(Program *p, Stmt *rl, RowForm *f) {
  Stmt *jl = rl && rl->kind == ST_LOOP && rl->step == 1 ? rl->body : NULL, *kl = jl ? jl->next : NULL;
  Stmt *el = kl ? kl->next : NULL;
  if (!kl || jl->kind != ST_LOOP || kl->kind != ST_LOOP || (el && el->next) || !sched_is_const(jl->extent) || kl->step != 1 ||
      sched_expr_uses(kl->extent, EX_VAR, rl->id))
    return -1;
  Stmt *init = jl->body, *xs = kl->body, *il = xs ? xs->next : NULL, *u = il ? il->body : NULL;
  if (!init || init->kind != ST_STORE || init->next || xs->kind != ST_LOCAL || xs->count || xs->type != DT_F32) return -1;
  if (!il || il->kind != ST_LOOP || il->next || !sched_is_const(il->extent) || il->extent->i != jl->extent->i) return -1;
  if (!u || u->kind != ST_STORE || u->next || u->id != init->id || init->value->type != DT_F32) return -1;
  Expr *v = u->value, *at = sched_subst_expr(p, init->index, jl->id, kx_var(p, il->id));
  if (v->kind != EX_BINARY || v->op != BIN_ADD || v->b->kind != EX_BINARY || v->b->op != BIN_MUL ||
      v->b->a->kind != EX_LOCAL || v->b->a->id != xs->id || v->b->b->kind != EX_LOAD || v->b->b->b)
    return -1;
  if (v->a->kind != EX_LOAD || v->a->id != u->id || v->a->b || !sched_same_expr(v->a->a, at) || !sched_same_expr(u->index, at))
    return -1;
  Expr *wt = v->b->b;
  if (wt->id == u->id || sched_expr_uses(wt, EX_VAR, rl->id) || sched_stmt_uses(xs, EX_LOAD, u->id) ||
      sched_expr_uses(init->value, EX_LOAD, u->id))
    return -1;
  *f = (RowForm){rl, init, u, xs->value, wt, kl->extent, rl->id, jl->id, kl->id, il->id, xs->id, il->axis,
                 jl->extent->i};
  return el ? row_tail(p, f, el) : 0;
}

/* Row ri + m of a tile, or max(min(ri + m, last), ri) when the rows may
 * end inside the tile (the last tile then computes row `last` more than
 * once).  ri <= last, so the max changes nothing; it gives the verifier a
 * lower bound when the batch may be empty. */
static Expr *tile_row(Program *p, int ri, Expr *m, Expr *last) {
  Expr *r = kx_iadd(p, kx_var(p, ri), m);
  return last && !(sched_is_const(m) && m->i == 0) ? kx_bin(p, BIN_MAX, kx_bin(p, BIN_MIN, r, kir_clone_expr(p, last)), kx_var(p, ri)) : r;
}

/* What one panel of the tiles works on: columns col0 .. col0 + nr of the
 * output, nv vectors of TILE_WIDTH columns and tail (< TILE_WIDTH) more,
 * packed at base (= (col0 - skip) * K) in buffer pk, stride floats per
 * step of kk (nr, or the whole last panel of a derived layout, of which
 * this panel's columns start at skip). */
typedef struct Panel {
  const RowForm *f;
  int pk, nv, tail;
  int derived;          /* pk is the weight's DL_PANELS layout, made once: no pack per call */
  int64_t nr, stride, skip;  /* columns of the panel, floats per kk in pk, its first column's place there */
  Expr *col0, *base, *last;
} Panel;

#define PANEL_VECS (TILE_MAX + 4)

/* The vectors of a panel: nv of TILE_WIDTH lanes, then the tail's
 * columns in vectors of the powers of two it is made of, widest first
 * (lanes are a power of two and never masked, kernel.h: 10 columns are
 * 8 + 2).  Returns their count; vector v holds columns off[v] ..
 * off[v] + lanes[v] - 1 of the panel. */
static int panel_vectors(const Panel *P, int64_t off[], int lanes[]) {
  int n = 0;
  int64_t c = 0;
  for (int v = 0; v < P->nv; v++) off[n] = c, lanes[n++] = TILE_WIDTH, c += TILE_WIDTH;
  for (int w = TILE_WIDTH / 2; w >= 1; w /= 2)
    if (P->tail & w) off[n] = c, lanes[n++] = w, c += w;
  return n;
}

/* The init value (the bias) of row row, columns col .. col + w - 1, in w
 * lanes (register_tiles checked that it has a lane form). */
static Expr *panel_bias(Program *p, const RowForm *f, Expr *col, Expr *row, int w) {
  return sched_subst_expr(p, sched_subst_expr(p, sched_vec_expr(p, f->i1, w, f->init->value), f->i1, col), f->r, row);
}

/* An epilogue in w lanes (the tiles' epilogue at row `row`, columns col
 * .. col + w - 1, the scalar form's variables var and rowvar; or a row
 * of a jammed epilogue at columns col .., rowvar -1), its input local in
 * the accumulator local acc (in -1: none): what depends on neither a
 * column nor the input is computed once and broadcast, loads at unit
 * stride along the columns take w lanes, and + - * /, comparisons and
 * selects are lane-wise (every backend has them in vector form).  vl[id]
 * is local id's vector local + 1 (0: it is not one of the epilogue's). */
typedef struct EpiLanes {
  Program *p;
  int var, rowvar, in;
  Expr *row, *col;
  int w, acc, *vl, n;
} EpiLanes;

static int epi_varies(const EpiLanes *V, const Expr *e) {
  if (!e) return 0;
  if ((e->kind == EX_VAR && e->id == V->var) ||
      (e->kind == EX_LOCAL && ((V->in >= 0 && e->id == V->in) || (e->id < V->n && V->vl[e->id]))))
    return 1;
  return epi_varies(V, e->a) || epi_varies(V, e->b) || epi_varies(V, e->c);
}

static Expr *epi_at(const EpiLanes *V, const Expr *e) {
  Expr *x = sched_subst_expr(V->p, e, V->var, V->col);
  return V->rowvar >= 0 ? sched_subst_expr(V->p, x, V->rowvar, V->row) : x;
}

static Expr *epi_lanes(const EpiLanes *V, const Expr *e) {
  Program *p = V->p;
  if (!e || e->lanes != 1) return NULL;
  if (!epi_varies(V, e)) return e->type == DT_F32 ? kx_broadcast(p, epi_at(V, e), V->w) : NULL;
  Expr *a, *b, *c;
  switch (e->kind) {
  case EX_LOCAL:
    if (e->a) return NULL;
    return V->in >= 0 && e->id == V->in ? kx_vlocal(p, V->acc, DT_F32, V->w) : kx_vlocal(p, V->vl[e->id] - 1, e->type, V->w);
  case EX_FCONST: case EX_ICONST: case EX_VAR: case EX_SYM: case EX_BROADCAST: case EX_REDUCE: case EX_FMA:
  case EX_RAND: case EX_UNARY: case EX_CAST: case EX_ZIP:
    return NULL;
  case EX_LOAD:
    return !e->b && e->type == DT_F32 && sched_unit_stride(e->a, V->var) ? kx_load_lanes(p, e->id, epi_at(V, e->a), V->w) : NULL;
  case EX_BINARY:
    if (e->a->type != DT_F32 || !(e->op <= BIN_DIV || kir_is_compare((BinOp)e->op))) return NULL;
    a = epi_lanes(V, e->a), b = a ? epi_lanes(V, e->b) : NULL;
    return b ? kx_bin(p, (BinOp)e->op, a, b) : NULL;
  case EX_SELECT:
    if (e->a->kind != EX_BINARY || !kir_is_compare((BinOp)e->a->op) || e->type != DT_F32) return NULL;
    a = epi_lanes(V, e->a), b = a ? epi_lanes(V, e->b) : NULL, c = b ? epi_lanes(V, e->c) : NULL;
    return c ? kx_select(p, a, b, c) : NULL;
  }
  return NULL;
}

Expr *sched_row_lanes(Program *p, int var, Expr *col, int in, int acc, int w, const Expr *e) {
  EpiLanes V = {p, var, -1, in, NULL, col, w, acc, NULL, 0};
  return epi_lanes(&V, e);
}

/* Whether running the epilogue twice at an element stores what once
 * does (the tiles compute some elements twice: the rows of a clamped
 * last tile, the columns two panels overlap): it reads nothing it
 * stores. */
static int epi_repeatable(const Epi *e) {
  for (const Stmt *s = e->body; s; s = s->next)
    if (s->kind == ST_STORE && sched_block_uses(e->body, EX_LOAD, s->id)) return 0;
  return 1;
}

/* The epilogue in lanes on accumulator acc, appended to *out; 0, or -1
 * when some statement has no lane form. */
static int epi_apply(Program *p, Kernel *k, const RowForm *f, Expr *row, Expr *col, int w, int acc, Stmt **out) {
  int *vl = rt_xcalloc((size_t)k->nlocals + 1, sizeof(int)), n = k->nlocals;
  IR_ASSERT(vl);
  EpiLanes V = {p, f->epi->var, f->epi->row, f->epi->in, row, col, w, acc, vl, n};
  const Stmt *s = f->epi->body;
  for (; s; s = s->next) {
    int store = s->kind == ST_STORE;
    if (store ? s->value->type != DT_F32 || !sched_unit_stride(s->index, f->epi->var)
              : s->id >= n || (s->kind != ST_LOCAL && !vl[s->id]))
      break;
    Expr *v = epi_lanes(&V, s->value);
    if (!v) break;
    if (store) {
      ks_append(out, ks_store(p, s->id, epi_at(&V, s->index), v));
    } else if (s->kind == ST_LOCAL) {
      vl[s->id] = k->nlocals + 1;
      ks_append(out, ks_local(p, k->nlocals++, s->value->type, v));
    } else {
      ks_append(out, ks_assign(p, vl[s->id] - 1, v));
    }
  }
  rt_xfree(vl);
  return s ? -1 : 0;
}

#define PACK_KB 16   /* floats of one cache line */

/* pk[base + kk * nr + c] = WT(kk, col0 + c) (panel_pack_lanes when it
 * can, else a float at a time), in blocks of PACK_KB steps
 * of kk: for each block, for each column c, the block's kk.  A block
 * reads PACK_KB rows of WT (one cache line of each of the nr rows of a
 * linear layer's weight in its [J, K] layout) and writes PACK_KB rows of
 * the panel, 4 KiB each way for nr = 64, so both stay in L1 whichever
 * order the C compiler puts the two inner loops in (gcc's loop
 * interchange turned the plain kk-c nest into one whose stores stride a
 * whole panel row, each into a line long gone from L1: a third of a
 * training step under gcc).  When K is not a multiple of PACK_KB, kk is
 * clamped to K - 1 in the last block, which writes that row again. */
/* The pack of a panel whose WT(kk, col) is a load contiguous along kk
 * (a linear layer's weight in its [J, K] layout), nr columns and K steps
 * both multiples of TILE_WIDTH = w, as w x w blocks moved through
 * registers: w loads of w steps of kk (one per column), log2(w) rounds
 * of zips that transpose them (kernel.h, EX_ZIP), and w stores of w
 * columns (one per kk).  The scalar pack moves one float per load and
 * store, and its stores stride a panel row (the MLP's fc1 weight, 800
 * KB: about a tenth of a training step at batch 64).  NULL when the
 * panel is not of that form. */
static Stmt *panel_pack_lanes(Program *p, Kernel *k, const Panel *P) {
  const RowForm *f = P->f;
  const int w = TILE_WIDTH;
  const Expr *wt = f->wt;
  if (P->nr % w || !sched_is_const(f->K) || f->K->i % w || wt->kind != EX_LOAD || wt->b || wt->lanes != 1 ||
      wt->type != DT_F32 || !sched_unit_stride(wt->a, f->kk))
    return NULL;
  int kb = k->nvars++, cb = k->nvars++;
  Expr *k0 = kx_imul(p, kx_var(p, kb), kx_i(p, w)), *c0 = kx_iadd(p, P->col0, kx_imul(p, kx_var(p, cb), kx_i(p, w)));
  Stmt *body = NULL;
  int row[TILE_WIDTH];
  for (int c = 0; c < w; c++) { /* row c: column c0 + c at kk = k0 .. k0 + w - 1 */
    Expr *at = sched_subst_expr(p, sched_subst_expr(p, wt->a, f->i3, kx_iadd(p, c0, kx_i(p, c))), f->kk, k0);
    row[c] = k->nlocals++;
    ks_append(&body, ks_local(p, row[c], DT_F32, kx_load_lanes(p, wt->id, at, w)));
  }
  sched_zip_transpose(p, k, row, w, &body);
  for (int r = 0; r < w; r++) { /* row r: kk = k0 + r, columns c0 .. c0 + w - 1 */
    Expr *kk = kx_iadd(p, k0, kx_i(p, r));
    Expr *at = kx_iadd(p, P->base, kx_iadd(p, kx_imul(p, kk, kx_i(p, P->nr)), kx_imul(p, kx_var(p, cb), kx_i(p, w))));
    ks_append(&body, ks_store(p, P->pk, at, kx_vlocal(p, row[r], DT_F32, w)));
  }
  return ks_loop(p, kb, kx_i(p, f->K->i / w), ks_loop(p, cb, kx_i(p, P->nr / w), body));
}

static Stmt *panel_pack(Program *p, Kernel *k, const Panel *P) {
  Stmt *lanes = panel_pack_lanes(p, k, P);
  if (lanes) return lanes;
  const RowForm *f = P->f;
  int c = k->nvars++, kb = k->nvars++, k2 = k->nvars++;
  Expr *col = kx_iadd(p, P->col0, kx_var(p, c));
  Expr *kv = kx_iadd(p, kx_imul(p, kx_var(p, kb), kx_i(p, PACK_KB)), kx_var(p, k2));
  Expr *nb;
  if (sched_is_const(f->K) && f->K->i % PACK_KB == 0) {
    nb = kx_i(p, f->K->i / PACK_KB);
  } else {
    Expr *kb0 = kx_imul(p, kx_var(p, kb), kx_i(p, PACK_KB));
    kv = kx_bin(p, BIN_MAX, kx_bin(p, BIN_MIN, kv, kx_iadd(p, kir_clone_expr(p, f->K), kx_i(p, -1))), kb0);
    nb = kx_bin(p, BIN_DIV, kx_iadd(p, kir_clone_expr(p, f->K), kx_i(p, PACK_KB - 1)), kx_i(p, PACK_KB));
  }
  Expr *val = sched_subst_expr(p, sched_subst_expr(p, f->wt, f->i3, col), f->kk, kv);
  Expr *at = kx_iadd(p, P->base, kx_iadd(p, kx_imul(p, kir_clone_expr(p, kv), kx_i(p, P->nr)), kx_var(p, c)));
  Stmt *inner = ks_loop(p, c, kx_i(p, P->nr), ks_loop(p, k2, kx_i(p, PACK_KB), ks_store(p, P->pk, at, val)));
  return ks_loop(p, kb, nb, inner);
}

/* Every row of the panel's columns starts at its init value (the bias). */
static Stmt *panel_init(Program *p, Kernel *k, const Panel *P) {
  const RowForm *f = P->f;
  int r = k->nvars++;
  Stmt *body = NULL;
  int64_t off[PANEL_VECS];
  int lanes[PANEL_VECS], nv = panel_vectors(P, off, lanes);
  for (int v = 0; v < nv; v++) {
    Expr *col = kx_iadd(p, P->col0, kx_i(p, off[v]));
    Expr *at = sched_subst_expr(p, sched_subst_expr(p, f->init->index, f->i1, col), f->r, kx_var(p, r));
    ks_append(&body, ks_store(p, f->init->id, at, panel_bias(p, f, col, kx_var(p, r), lanes[v])));
  }
  return ks_loop(p, r, kir_clone_expr(p, f->rows->extent), body);
}

static int64_t max_rows(const Program *p, const Expr *R);

/* The micro-kernel over every row tile of a panel, for kk = kb + k2 with
 * k2 < kc (kb < 0: kk = k2 over all of K): accumulators loaded from the
 * output (which panel_init set to the bias), or the bias itself when K is
 * not blocked; the nv vectors of packed B read once per kk, MR broadcasts of
 * A, MR * nv fmas, stores. */
static Stmt *panel_tiles(Program *p, Kernel *k, const Panel *P, int mr, int kb, int64_t kc) {
  const RowForm *f = P->f;
  int ri = k->nvars++, k2 = k->nvars++, bv[PANEL_VECS], lanes[PANEL_VECS];
  int64_t off[PANEL_VECS];
  int nv = panel_vectors(P, off, lanes);
  Expr *kk = kb >= 0 ? kx_iadd(p, kx_var(p, kb), kx_var(p, k2)) : kx_var(p, k2);
  Stmt *decls = NULL, *body = NULL, *stores = NULL;
  for (int v = 0; v < nv; v++) {
    bv[v] = k->nlocals++;
    Expr *b;
    if (P->pk < 0) { /* B read where it is */
      Expr *col = kx_iadd(p, P->col0, kx_i(p, off[v]));
      Expr *src = sched_subst_expr(p, sched_subst_expr(p, f->wt, f->i3, col), f->kk, kk);
      b = kx_load_lanes(p, src->id, src->a, lanes[v]);
    } else {
      Expr *at = kx_iadd(p, P->base, kx_iadd(p, kx_imul(p, kir_clone_expr(p, kk), kx_i(p, P->stride)), kx_i(p, P->skip + off[v])));
      b = kx_load_lanes(p, P->pk, at, lanes[v]);
    }
    ks_append(&body, ks_local(p, bv[v], DT_F32, b));
  }
  for (int m = 0; m < mr; m++) {
    Expr *row = tile_row(p, ri, kx_i(p, m), P->last);
    if (row->kind != EX_VAR && row->op == BIN_MAX) { /* clamped: once per tile, before the k loop */
      int rm = k->nlocals++;
      ks_append(&decls, ks_local(p, rm, DT_I64, row));
      row = kx_local(p, rm, DT_I64);
    }
    int xm[TILE_WIDTH + 1] = {0}; /* x[row, kk] broadcast to each width the vectors have */
    Expr *x = sched_subst_expr(p, sched_subst_expr(p, f->xv, f->r, row), f->kk, kk);
    for (int v = 0; v < nv; v++) {
      int w = lanes[v];
      if (!xm[w]) {
        xm[w] = k->nlocals++;
        ks_append(&body, ks_local(p, xm[w], DT_F32, kx_broadcast(p, kir_clone_expr(p, x), w)));
      }
      int a = k->nlocals++;
      Expr *col = kx_iadd(p, P->col0, kx_i(p, off[v]));
      Expr *at = sched_subst_expr(p, sched_subst_expr(p, f->init->index, f->i1, col), f->r, row);
      Expr *start = kb >= 0 ? kx_load_lanes(p, f->init->id, at, w) : panel_bias(p, f, col, row, w);
      ks_append(&decls, ks_local(p, a, DT_F32, start));
      Expr *sum = kx_fma(p, kx_vlocal(p, xm[w], DT_F32, w), kx_vlocal(p, bv[v], DT_F32, w), kx_vlocal(p, a, DT_F32, w));
      ks_append(&body, ks_assign(p, a, sum));
      if (!f->epi) ks_append(&stores, ks_store(p, f->init->id, at, kx_vlocal(p, a, DT_F32, w)));
      else if (epi_apply(p, k, f, row, col, w, a, &stores) < 0) IR_ASSERT(!"an epilogue register_tiles took has no lanes");
    }
  }
  Stmt *kl = ks_loop(p, k2, kb >= 0 ? kx_i(p, kc) : kir_clone_expr(p, f->K), body);
  kl->loop = LOOP_REDUCE;
  if (P->pk >= 0 && (kb >= 0 ? kc : max_rows(p, f->K)) >= 8 * TILE_AHEAD) kl->prefetch = TILE_AHEAD;
  ks_append(&decls, kl);
  ks_append(&decls, stores);
  Stmt *tl = ks_loop(p, ri, kir_clone_expr(p, f->rows->extent), decls);
  tl->step = mr;
  return tl;
}

/* Panel jb of the panels over columns from c0: its columns and where they are packed. */
static void panel_at(Program *p, Panel *P, int64_t c0, int jb) {
  P->nr = P->nv * TILE_WIDTH + P->tail;
  if (!P->derived) P->stride = P->nr, P->skip = 0;
  P->col0 = kx_iadd(p, kx_i(p, c0), kx_imul(p, kx_var(p, jb), kx_i(p, P->nr)));
  P->base = kx_imul(p, P->skip ? kx_iadd(p, P->col0, kx_i(p, -P->skip)) : P->col0, kir_clone_expr(p, P->f->K));
}

/* The panels of nv vectors over columns c0 .. c0 + npan * nr: for each,
 * pack, init, then its K blocks (or all of K) over every row tile. */
static Stmt *tile_panels(Program *p, Kernel *k, Panel *P, const TileShape *ts, int64_t c0, int64_t npan) {
  const RowForm *f = P->f;
  int jb = k->nvars++;
  panel_at(p, P, c0, jb);
  int64_t kc = tile_kc(f->K, P->nr);
  Stmt *body = P->pk >= 0 && !P->derived ? panel_pack(p, k, P) : NULL;
  if (kc) {
    int kb = k->nvars++;
    ks_append(&body, panel_init(p, k, P));
    Stmt *bl = ks_loop(p, kb, kir_clone_expr(p, f->K), panel_tiles(p, k, P, ts->mr, kb, kc));
    bl->step = kc;
    bl->loop = LOOP_REDUCE;
    ks_append(&body, bl);
  } else {
    ks_append(&body, panel_tiles(p, k, P, ts->mr, -1, 0));
  }
  Stmt *pl = ks_loop(p, jb, kx_i(p, npan), body);
  pl->axis = f->axis;
  return pl;
}

/* Rows-major tiles: the groups of panels (c0[g], npan[g] panels of
 * G[g]'s shape), K not blocked.  Each group's pack is a loop of its own
 * (over its blocks of PACK_KB steps of kk, the panels inside), then one
 * loop over the row tiles runs every panel of every group on its rows:
 *
 *   for kb < K / PACK_KB { for jb < npan { pack panel jb's block kb } }
 *   for ri < R step MR { for jb < npan { tile (ri, panel jb) } ; tile (ri, last panel) }
 *
 * Both loops are the kernel's parallel loops: the threads share out the
 * rows, so a layer with a single panel (LeNet-5's 120 and 84 columns)
 * runs on all of them, a thread's rows of x stay in its L1 across the
 * panels, and the rows a thread makes are the rows it reads in the next
 * layer.  Every output is the same one tile's sum as before. */
static Stmt *tile_rows(Program *p, Kernel *k, Panel *G, const int64_t *c0, const int64_t *npan, int ng, const TileShape *ts) {
  Stmt *packs = NULL, *outer = NULL, *tiles = NULL;
  for (int g = 0; g < ng; g++) {
    Panel *P = &G[g];
    int jb = k->nvars++;
    panel_at(p, P, c0[g], jb);
    if (P->pk >= 0 && !P->derived) {
      Stmt *pl = panel_pack(p, k, P);
      int jp = k->nvars++;
      Stmt *inner = sched_subst(p, pl->body, jb, npan[g] > 1 ? kx_var(p, jp) : kx_i(p, 0));
      pl->body = npan[g] > 1 ? ks_loop(p, jp, kx_i(p, npan[g]), inner) : inner;
      ks_append(&packs, pl);
    }
    Stmt *tl = panel_tiles(p, k, P, ts->mr, -1, 0), *body = tl->body;
    if (npan[g] > 1) {
      body = ks_loop(p, jb, kx_i(p, npan[g]), body);
      body->axis = P->f->axis;
    } else {
      body = sched_subst(p, body, jb, kx_i(p, 0));
    }
    if (!outer) outer = tl;
    else body = sched_subst(p, body, tl->id, kx_var(p, outer->id));
    ks_append(&tiles, body);
  }
  outer->body = tiles;
  outer->axis = G[0].f->rows->axis;
  ks_append(&packs, outer);
  return packs;
}

/* The most rows R can take (its constant, or its symbol's maximum). */
static int64_t max_rows(const Program *p, const Expr *R) {
  if (sched_is_const(R)) return R->i;
  if (R->kind == EX_SYM && p->g && R->id < p->g->nsyms) return p->g->syms[R->id].max;
  return -1;
}

/* Whether the tiles' B is a parameter no entry point updates (an
 * inference program's weight) read in its own [J, K] layout, WT(kk, j) =
 * W[j * K + kk]: then its panels are a derived layout (kir_derived_panels),
 * made once per change of the parameters, and no call packs it. */
static int fixed_weight(Program *p, const RowForm *f) {
  int w = f->wt->id;
  const Buffer *b = &p->bufs[w];
  if ((b->kind != BUF_PARAM && b->kind != BUF_STATE) || buffer_stored(p, w) || b->shape.rank != 2 ||
      b->shape.d[0] != f->J || !sched_is_const(f->K) || b->shape.d[1] != f->K->i || f->wt->b)
    return 0;
  Expr *at = kx_iadd(p, kx_imul(p, kx_var(p, f->i3), kx_i(p, f->K->i)), kx_var(p, f->kk));
  return sched_same_expr(f->wt->a, at);
}

/* Register tiles — the row form of a matrix product (a linear layer's
 * rule_rows, a matmul as lowered) computed in tiles of MR rows by NV
 * vectors of columns held in registers across a block of K, against B
 * packed into contiguous K-major panels (the cost model above).  The
 * nest: for each panel (parallel: panels write disjoint columns) pack
 * its columns of B, set its outputs to their init value (bias or 0), and
 * for each K block run the micro-kernel over every row tile, which loads
 * its accumulators from the output, adds x[row, kk] * B[kk, cols] for kk
 * in order with fma, and stores them.  Columns past the whole panels get
 * one narrower panel: whole vectors, then the rest (fewer than a vector,
 * or all of a layer of fewer columns: the MLP's 10 logits) in vectors of
 * the powers of two it is made of (10 = 8 + 2), the accumulators of a
 * row still in registers across K (the row form kept them in memory,
 * loaded and stored at every k); in two panels when one would need more
 * registers than there are.  When the
 * rows may end inside a tile (a batch N not known to be a multiple of
 * MR), the tile's rows are clamped to the last, which the last tile then
 * computes twice, identically.  Each output still starts at its bias and
 * adds its terms in k order, but each term is now an fma (kernel.h): the
 * results may differ from the row form's in the last bits, and are the
 * same whatever the number of threads. */
static int register_tiles(Program *p, Kernel *k, Stmt **slot, int mr, int in_place, int top, const Epi *epi);

/* B read where it is when its rows run along the columns, else packed */
static int rule_register_tiles(Program *p, Kernel *k, Stmt **slot, const Epi *epi) {
  return register_tiles(p, k, slot, 0, 1, 1, epi) == 0 ? 0 : register_tiles(p, k, slot, 0, 0, 1, epi);
}

/* The same, with MR rows per tile (0: the cost model's choice) and, with
 * in_place, B read where it is (unit stride along the columns) instead of
 * packed, and the columns past the whole panels in one panel of whole
 * vectors that ends at the last column (J >= 16), overlapping the panel
 * before instead of the row form: the convolutions' rule
 * (rule_conv_tiles).  With an epilogue (epi), the tiles apply it where
 * they store, so K must not be blocked (each block stores partial sums)
 * and the epilogue must have a lane form. */
static int register_tiles(Program *p, Kernel *k, Stmt **slot, int mr, int in_place, int top, const Epi *epi) {
  RowForm f;
  if (row_form(p, *slot, &f) < 0 || (epi && f.tail.body)) return -1;
  f.epi = epi ? epi : f.tail.body ? &f.tail : NULL;
  epi = f.epi;
  if (in_place && (f.wt->kind != EX_LOAD || !sched_unit_stride(f.wt->a, f.i3))) return -1;
  int64_t rows = max_rows(p, f.rows->extent);
  Dim Kd = sched_is_const(f.K) ? f.K->i : f.K->kind == EX_SYM ? DIM_SYM(f.K->id) : 0;
  TileShape ts = {mr ? mr : rows >= 32 ? 6 : rows >= 8 ? 4 : (int)rows, 0, 0};
  ts.nv = tile_vectors(ts.mr, f.J);
  const int W = TILE_WIDTH;
  Panel P = {&f, -1, ts.nv, 0, 0, 0, 0, 0, NULL, NULL, NULL};
  if ((!ts.nv && (in_place || rows < 8)) || rows < 1 || !Kd || !sched_vec_expr(p, f.i1, W, f.init->value) ||
      !sched_unit_stride(f.init->index, f.i1) || f.wt->lanes != 1)
    return -1;
  int64_t nr = ts.nv * W, n1 = nr ? f.J / nr * nr : 0, nv2 = (f.J - n1) / W, n2 = nv2 * W, tail = f.J - n1 - n2;
  if (epi && !epi_repeatable(epi)) return -1;
  if (epi) { /* the widths a panel may take (below), none K-blocked; a trial of the lanes */
    int64_t widths[] = {n1 ? nr : 0, f.J - n1, (f.J - n1 + W - 1) / W * W, n2, tail};
    for (size_t i = 0; i < sizeof widths / sizeof *widths; i++)
      if (widths[i] > 0 && tile_kc(f.K, widths[i])) return -1;
    int nl = k->nlocals;
    Stmt *trial = NULL;
    int rc = epi_apply(p, k, &f, kx_var(p, f.r), kx_var(p, f.i1), W, k->nlocals++, &trial);
    k->nlocals = nl;
    if (rc < 0) return -1;
  }
  P.pk = !in_place && fixed_weight(p, &f) ? kir_derived_panels(p, f.wt->id, nr ? nr : f.J) : -1;
  P.derived = P.pk >= 0;
  P.stride = nr;
  if (!P.derived && !in_place) {
    Shape ps = {2, {f.J, Kd}};
    P.pk = kir_buffer(p, BUF_TEMP, DT_F32, "panels", &ps, k->node);
  }
  Expr *R = f.rows->extent;
  P.last = sched_is_const(R) && R->i % ts.mr == 0 ? NULL : kx_iadd(p, kir_clone_expr(p, R), kx_i(p, -1));
  /* the groups of panels: the whole ones, then the columns left */
  Panel G[3];
  int64_t c0[3], npan[3];
  int ng = 0;
  if (n1) G[ng] = P, c0[ng] = 0, npan[ng++] = n1 / nr;
  if (in_place && n1 < f.J && (tail & (tail - 1))) {
    /* the columns left: one panel of whole vectors ending at J, overlapping
     * the one before; the columns both compute get the same sums, stored twice */
    Panel P2 = P;
    P2.nv = (int)((f.J - n1 + W - 1) / W);
    G[ng] = P2, c0[ng] = f.J - P2.nv * W, npan[ng++] = 1;
    nv2 = n2 = tail = 0, n1 = f.J;
  }
  if (nv2 || tail) {
    /* the columns left in one panel: whole vectors, then the tail in
     * narrower ones; in two panels when one would take more registers
     * than there are (the derived layout's last panel holds every column
     * left, the second panel's start at n2 in it) */
    Panel P2 = P;
    P2.nv = (int)nv2, P2.tail = (int)tail;
    P2.stride = P.derived ? f.J - n1 : 0;
    int64_t off[PANEL_VECS];
    int lanes[PANEL_VECS], nvec = panel_vectors(&P2, off, lanes);
    if (nv2 && tail && ts.mr * nvec + nvec + 1 > TILE_REGS) {
      Panel P3 = P2;
      P2.tail = 0, P3.nv = 0, P3.skip = P.derived ? n2 : 0;
      G[ng] = P2, c0[ng] = n1, npan[ng++] = 1;
      G[ng] = P3, c0[ng] = n1 + n2, npan[ng++] = 1;
    } else {
      G[ng] = P2, c0[ng] = n1, npan[ng++] = 1;
    }
  }
  /* rows-major (tile_rows) for a kernel's own product, K not blocked,
   * whose B fits half of L2 (every row tile reads all of it), from 4 row
   * tiles (batch-1 inference keeps its panels on the threads).  A larger
   * B measured slower on two threads (the MLP's fc1, 800 KB packed: the
   * step 4% slower), though faster on one.  In
   * panel-major order, a group of one panel (the columns left) still
   * takes its rows on every thread. */
  int rows_major = top, tiled[3] = {0};
  int64_t kmax = sched_is_const(f.K) ? f.K->i : p->g && f.K->id < p->g->nsyms ? p->g->syms[f.K->id].max : -1;
  if (kmax < 0 || f.J * kmax * 4 > TILE_L2 / 2 || rows < 4 * ts.mr) rows_major = 0;
  for (int g = 0; g < ng; g++) {
    tiled[g] = top && kmax >= 0 && !tile_kc(f.K, G[g].nv * W + G[g].tail);
    rows_major &= tiled[g];
  }
  Stmt *body = NULL;
  if (rows_major && ng) {
    body = tile_rows(p, k, G, c0, npan, ng, &ts);
  } else {
    for (int g = 0; g < ng; g++)
      ks_append(&body, tiled[g] && npan[g] == 1 ? tile_rows(p, k, &G[g], &c0[g], &npan[g], 1, &ts)
                                                : tile_panels(p, k, &G[g], &ts, c0[g], npan[g]));
  }
  ks_append(&body, f.rows->next);
  *slot = body;
  return 0;
}

/* The epilogue of a linear layer's nest (Epi, above), taken off: the
 * statements after the reduction, `local in = VALUE; S; Y[X] = E` with S
 * scalar locals and assignments to them, become `Y[X] = VALUE`, the row
 * form's last store.  1 when there was one, 0 when the nest ends in its
 * store already, -1 when its tail is some other form. */
static int peel_epilogue(Program *p, Kernel *k, Epi *e) {
  Stmt *rl = k->body, *jl = rl && rl->kind == ST_LOOP ? rl->body : NULL;
  Stmt *acc = jl && jl->kind == ST_LOOP ? jl->body : NULL, *red = acc ? acc->next : NULL;
  Stmt *head = red ? red->next : NULL;
  if (!head || head->kind == ST_STORE) return 0;
  if (head->kind != ST_LOCAL || head->count || head->value->lanes != 1 || head->value->type != DT_F32 ||
      acc->kind != ST_LOCAL)
    return -1;
  char *mine = rt_xcalloc((size_t)k->nlocals + 1, 1);
  IR_ASSERT(mine);
  Stmt *s = head->next;
  int ok = 1;
  for (; s && s->next && ok; s = s->next) {
    if (s->kind == ST_LOCAL && !s->count && s->id < k->nlocals) mine[s->id] = 1;
    else if (s->kind != ST_ASSIGN || s->index || s->id >= k->nlocals || !mine[s->id]) ok = 0;
    if (ok && (s->value->lanes != 1 || sched_expr_uses(s->value, EX_LOCAL, acc->id))) ok = 0;
  }
  rt_xfree(mine);
  if (!ok || !s || s->kind != ST_STORE || s->value->type != DT_F32 || sched_expr_uses(s->value, EX_LOCAL, acc->id) ||
      sched_expr_uses(s->index, EX_LOCAL, head->id) || sched_stmt_uses(head, EX_LOAD, s->id))
    return -1;
  for (const Stmt *q = head->next; q; q = q->next)
    if (sched_expr_uses(q->value, EX_LOAD, s->id)) return -1;
  Stmt *chain = NULL;
  for (const Stmt *q = head->next; q; q = q->next) ks_append(&chain, kir_clone_stmt(p, q));
  *e = (Epi){chain, head->id, rl->id, jl->id};
  red->next = ks_store(p, s->id, s->index, head->value);
  return 1;
}

/* Linear: in register tiles (any number of columns, any number of rows;
 * fewer than 8 rows and fewer than 16 columns are left to the
 * dot-product lanes), else the row order against a transposed copy from
 * 8 rows, and dot-product lanes below.
 * The tiles read the weight in its own [J, K] layout: a parameter no
 * entry point updates (an inference program) from its panels, a derived
 * layout made once (fixed_weight); one a train step updates every step
 * packed per call, so no copy of it is made before every step. */
static void rule_linear(Program *p, const Graph *g, Kernel *k, const SchedOpts *o) {
  const Node *n = &g->nodes[k->node], *x = &g->nodes[n->in[0]], *w = &g->nodes[n->in[1]];
  int64_t rows = ir_numel_max(g, &x->shape) / x->shape.d[x->shape.rank - 1];
  if (DIM_IS_SYM(w->shape.d[0]) || DIM_IS_SYM(w->shape.d[1])) {
    rule_dot_lanes(p, k);
    return;
  }
  if (o->tiles) {
    Kernel before = *k;
    Stmt *orig = kir_clone_block(p, k->body);
    Epi epi;
    int has_epi = peel_epilogue(p, k, &epi);
    Stmt **slot = has_epi < 0 ? NULL : rule_rows(p, k, w->shape.d[0], w->shape.d[1], 0);
    if (slot && rule_register_tiles(p, k, slot, has_epi ? &epi : NULL) == 0) return;
    *k = before;
    k->body = orig;
  }
  if (rows < 8)
    rule_dot_lanes(p, k);
  else
    rule_rows(p, k, w->shape.d[0], w->shape.d[1], 1);
}

/* Output-channel blocks — a convolution (conv2d, conv1d, and the gather
 * of conv_transpose2d) computes ob = 4, 2 or 1 channels together, the
 * largest dividing its channels per group: the channel loop is unrolled
 * by ob and jammed into the nest below it, so each input load serves ob
 * channels and their partial sums stay in registers across a window.
 * Channels are independent and each output still sums in the same order.
 * Loops of one iteration, which the lowering keeps for the rules, go. */
static void rule_channel_blocks(Program *p, Kernel *k, int back, int64_t per_group) {
  Stmt **path[16];
  int d = reduce_path(&k->body, path, 0, 16);
  int64_t ob = per_group % 4 == 0 ? 4 : per_group % 2 == 0 ? 2 : 1;
  if (d > back && ob > 1) {
    Stmt *l = *path[d - 1 - back];
    if (sched_is_const(l->extent) && l->extent->i == per_group) sched_unroll_jam(p, k, path[d - 1 - back], ob);
  }
  sched_drop_unit_loops(p, &k->body);
}

/* The first scalar local in b (pre-order) whose value is a plain load. */
static const Expr *first_local_load(const Stmt *b) {
  for (; b; b = b->next) {
    if (b->kind == ST_LOCAL && !b->count && b->value->kind == EX_LOAD && !b->value->b) return b->value;
    const Expr *e = b->kind == ST_LOOP ? first_local_load(b->body) : NULL;
    if (e) return e;
  }
  return NULL;
}

/* The innermost loop over the output positions of a convolution's nest
 * below b: the first loop whose body starts with a = out[..] and then
 * v = in[..] (plain loads of two buffers; a window's weights are loads
 * of one); *out and *in are their buffers. */
static const Stmt *position_loop(const Stmt *b, int *out, int *in) {
  for (; b; b = b->next) {
    if (b->kind != ST_LOOP) continue;
    const Stmt *a = b->body, *v = a ? a->next : NULL;
    if (a && v && a->kind == ST_LOCAL && v->kind == ST_LOCAL && !a->count && !v->count && a->value->kind == EX_LOAD &&
        v->value->kind == EX_LOAD && !a->value->b && !v->value->b && a->value->id != v->value->id) {
      *out = a->value->id, *in = v->value->id;
      return b;
    }
    const Stmt *r = position_loop(b->body, out, in);
    if (r) return r;
  }
  return NULL;
}

static Expr *idiv(Program *p, Expr *a, int64_t d) { return d == 1 ? a : kx_bin(p, BIN_DIV, a, kx_i(p, d)); }
static Expr *imod(Program *p, Expr *a, int64_t d) { return d == 1 ? kx_i(p, 0) : kx_bin(p, BIN_MOD, a, kx_i(p, d)); }

/* A table t[kk] = value (an index in terms of variable kk < K), filled by
 * a loop put in front of the kernel on every call (K stores): the tiles
 * then read t[kk] once per step of K instead of dividing kk. */
static int kk_table(Program *p, Kernel *k, int kk, Expr *value, int64_t K, const char *name) {
  Shape ts = {1, {K}};
  int t = kir_buffer(p, BUF_TEMP, DT_I64, name, &ts, k->node);
  Stmt *fill = ks_loop(p, kk, kx_i(p, K), ks_store(p, t, kx_var(p, kk), value));
  fill->next = k->body;
  k->body = fill;
  return t;
}

/* A row of an epilogue in lanes — the innermost loop j < E (constant, 4
 * or more) of a nest that narrows a convolution's output, whose body
 * declares locals and stores at unit stride along j, reading only other
 * buffers: w lanes (16, 8 or 4, the most E holds) at j0 = 0, w, 2w, ...
 * and, when w does not divide E, one more vector ending at the last
 * column, which stores some elements again with the same values.  Loads
 * at unit stride take w lanes, what varies with neither j nor a local of
 * the row is broadcast, + - * /, comparisons and selects are lane-wise
 * (the forms every backend has in vectors, epi_lanes).
 * LLVM took LeNet-5's 28-column rows of c1's relu in 4 lanes and a
 * scalar rest: a seventh of that kernel.  Row l's body in w lanes at j0,
 * or NULL: */
typedef struct Row {
  Program *p;
  Kernel *k;
  const Stmt *l;
  int w;
} Row;

static Stmt *row_vector(void *ctx, Expr *j0) {
  const Row *row = ctx;
  Program *p = row->p;
  Kernel *k = row->k;
  const Stmt *l = row->l;
  int w = row->w, n = k->nlocals, *vl = calloc((size_t)n + 1, sizeof *vl);
  if (!vl) return NULL;
  EpiLanes R = {p, l->id, -1, -1, NULL, j0, w, -1, vl, n};
  Stmt *out = NULL;
  for (const Stmt *s = l->body; s; s = s->next) {
    Expr *v = epi_lanes(&R, s->value);
    if (!v || (s->kind == ST_LOCAL && (s->count > 0 || s->id >= n)) ||
        (s->kind == ST_STORE && !sched_unit_stride(s->index, l->id))) {
      out = NULL;
      break;
    }
    if (s->kind == ST_LOCAL) {
      int id = k->nlocals++;
      ks_append(&out, ks_local(p, id, DT_F32, v));
      vl[s->id] = id + 1;
    } else {
      ks_append(&out, ks_store(p, s->id, sched_subst_expr(p, s->index, l->id, j0), v));
    }
  }
  free(vl);
  return out;
}

static void vector_rows(Program *p, Kernel *k, Stmt **slot) {
  while (*slot) {
    Stmt *l = *slot;
    int nested = 0, ok = l->kind == ST_LOOP;
    for (const Stmt *s = ok ? l->body : NULL; s; s = s->next) nested |= s->kind == ST_LOOP;
    if (ok && nested) vector_rows(p, k, &l->body);
    if (!ok || nested || l->step != 1 || l->loop == LOOP_REDUCE || !sched_is_const(l->extent) ||
        !sched_overlap_lanes(l->extent->i)) {
      slot = &l->next;
      continue;
    }
    for (const Stmt *s = l->body; s && ok; s = s->next)
      ok = (s->kind == ST_LOCAL && s->value->type == DT_F32) ||
           (s->kind == ST_STORE && s->value->type == DT_F32 && !sched_block_uses(l->body, EX_LOAD, s->id));
    Row R = {p, k, l, sched_overlap_lanes(l->extent->i)};
    Stmt *row = ok ? sched_overlapped_vectors(p, k, l->extent->i, R.w, row_vector, &R) : NULL;
    if (!row) {
      slot = &l->next;
      continue;
    }
    Stmt *t = row;
    while (t->next) t = t->next;
    t->next = l->next;
    *slot = row;
    slot = &t->next;
  }
}

/* The nest after the tiles' batch loop nl that reads their output out a
 * plane at a time (a forward's narrowing of the wide rows into y, with
 * the epilogue fused into it; the transpose's crop and bias): a loop over
 * the planes, x per batch item (x = 1: over the items).  Item n's planes
 * n x .. n x + x - 1 move into nl after the tiles of item n, which have
 * just written them, so they are read back from cache and not from memory
 * once the whole batch is done.  Only out's planes of item n are read and
 * only the nest's own outputs written (no buffer the tiles read), so the
 * items stay independent (nl stays parallel) and every element gets the
 * same value. */
static void jam_epilogue(Program *p, Kernel *k, Stmt *nl, int out, int in, int w, Dim n, int64_t x) {
  Stmt *e = nl->next;
  Expr *want = kx_imul(p, kx_dim(p, n), kx_i(p, x)), *item = kx_var(p, nl->id);
  if (!e || e->kind != ST_LOOP || !sched_same_expr(e->extent, want) || !sched_block_uses(e->body, EX_LOAD, out) ||
      sched_block_has(e->body, ST_STORE, out) || sched_block_has(e->body, ST_STORE, in) || sched_block_has(e->body, ST_STORE, w))
    return;
  Stmt *moved;
  if (x == 1) {
    moved = sched_subst(p, e->body, e->id, item);
  } else {
    int q = k->nvars++;
    moved = ks_loop(p, q, kx_i(p, x), sched_subst(p, e->body, e->id, kx_iadd(p, kx_imul(p, item, kx_i(p, x)), kx_var(p, q))));
  }
  vector_rows(p, k, &moved);
  ks_append(&nl->body, moved);
  nl->next = e->next;
}

/* The innermost loop of nest *slot, when it copies a row, for j < E:
 * dst[f + j] = src[g + j] (E constant), becomes the row's vectors: whole
 * TILE_WIDTH ones, then the rest in the powers of two it is made of
 * (10 = 8 + 2), as panel_vectors takes a tile's columns.  The C compiler
 * left alone vectorised the shifted copies' 10-float rows across rows,
 * with permutes, at a sixth of c2's time. */
static void vector_row_copy(Program *p, Stmt **slot) {
  while (*slot && (*slot)->kind == ST_LOOP && !(*slot)->next && (*slot)->body && (*slot)->body->kind == ST_LOOP)
    slot = &(*slot)->body;
  Stmt *l = *slot, *st = l ? l->body : NULL;
  if (!l || l->kind != ST_LOOP || l->next || l->step != 1 || !sched_is_const(l->extent) || !st || st->kind != ST_STORE ||
      st->next || st->value->kind != EX_LOAD || st->value->b || st->value->lanes != 1 || !sched_unit_stride(st->index, l->id) ||
      !sched_unit_stride(st->value->a, l->id))
    return;
  Stmt *row = NULL;
  int64_t off = 0, E = l->extent->i;
  for (int w = TILE_WIDTH; w >= 1; w /= 2)
    for (; E - off >= w && (w == TILE_WIDTH || ((E - off) & w)); off += w) {
      Expr *j = kx_i(p, off), *src = sched_subst_expr(p, st->value->a, l->id, j);
      Expr *v = w == 1 ? kx_load(p, st->value->id, src) : kx_load_lanes(p, st->value->id, src, w);
      ks_append(&row, ks_store(p, st->id, sched_subst_expr(p, st->index, l->id, j), v));
    }
  *slot = row;
}

/* x when extent e is the batch n times the constant x (as the lowering
 * writes it: N, N * C, N * 32 * 32), else 0. */
static int64_t per_item(Program *p, const Expr *e, Dim n) {
  if (!DIM_IS_SYM(n) && sched_is_const(e)) return n > 0 && e->i % n == 0 ? e->i / n : 0;
  if (sched_same_expr(e, kx_dim(p, n))) return 1;
  if (e->kind != EX_BINARY || e->op != BIN_MUL) return 0;
  int64_t a = sched_is_const(e->b) ? per_item(p, e->a, n) : 0, b = sched_is_const(e->a) ? per_item(p, e->b, n) : 0;
  return a ? a * e->b->i : b ? b * e->a->i : 0;
}

/* Whether nest e only stores into temporaries of batch-major layout
 * [n, ...] other than out and w (the copies that pad the input of a
 * convolution or shift it, lower_conv.c), and reads none of out. */
static int item_copy(const Program *p, const Stmt *e, int out, int w, Dim n) {
  int stored = 0;
  for (int b = 0; b < p->nbufs; b++) {
    if (!sched_block_has(e->body, ST_STORE, b)) continue;
    const Buffer *bf = &p->bufs[b];
    if (b == out || b == w || bf->kind != BUF_TEMP || bf->shape.rank < 2 || bf->shape.d[0] != n) return 0;
    stored = 1;
  }
  return stored && !sched_block_uses(e->body, EX_LOAD, out);
}

/* The nests just before the tiles' batch loop nl that make the input
 * the tiles read (the zeroed and padded copy of a convolution's input,
 * its kw-shifted copies; lower_conv.c), each a loop over the batch
 * items, x iterations per item: as in jam_epilogue, item n's part of
 * each moves into nl, in their order, before the tiles of item n, which
 * then read it from cache instead of from a batch-sized buffer written
 * long before.  Each writes only item n's part of batch-major
 * temporaries and reads what the nests before it wrote of item n (or
 * another kernel's buffers), so the items stay independent.  A copy of
 * short rows becomes its vectors (vector_row_copy). */
static void jam_prologue(Program *p, Kernel *k, Stmt *nl, int out, int w, Dim n) {
  for (;;) {
    Stmt **slot = &k->body;
    while (*slot && (*slot)->next != nl) slot = &(*slot)->next;
    Stmt *e = *slot;
    int64_t x = e && e->kind == ST_LOOP && e->step == 1 ? per_item(p, e->extent, n) : 0;
    if (!x || !item_copy(p, e, out, w, n)) return;
    Expr *item = kx_var(p, nl->id);
    int q = k->nvars++;
    Stmt *moved = ks_loop(p, q, kx_i(p, x), sched_subst(p, e->body, e->id, kx_iadd(p, kx_imul(p, item, kx_i(p, x)), kx_var(p, q))));
    vector_row_copy(p, &moved);
    moved->next = nl->body;
    nl->body = moved;
    *slot = nl;
  }
}

/* Item blocks — the batch loop of a convolution's tiles, after the jams,
 * runs over blocks of ITEM_BLOCK items (parallel), each block's items in
 * order, and the batch-major temporaries only this kernel uses (the
 * padded or shifted input, the wide rows) are replaced by buffers of one
 * slot per block instead of one per item: an item's copies and tiles then write lines its
 * block's last item left in cache, not a fresh part of a batch-sized
 * buffer (which cost LeNet-5's c2 as much time as the copy itself).
 * Items still write disjoint parts of the outputs and every element gets
 * the same value; the blocks are independent (each has its own slots). */
#define ITEM_BLOCK 8

typedef struct Slot {
  int buf, slots, var, to;
} Slot;

/* Loads of s->buf read s->slots instead, with var := to (the item's block) */
static Expr *slot_load(void *ctx, Program *p, Expr *e) {
  const Slot *s = ctx;
  if (e->kind == EX_LOAD && e->id == s->buf) e->id = s->slots, e->a = sched_subst_expr(p, e->a, s->var, kx_var(p, s->to));
  return e;
}

static void slot_stores(Program *p, Stmt *b, const Slot *s) {
  for (; b; b = b->next) {
    if (b->kind == ST_STORE && b->id == s->buf) b->id = s->slots, b->index = sched_subst_expr(p, b->index, s->var, kx_var(p, s->to));
    slot_stores(p, b->body, s);
    slot_stores(p, b->orelse, s);
  }
}

/* Whether temporary b is batch-major with n items. */
static int item_temp(const Program *p, int b, Dim n) {
  const Buffer *bf = &p->bufs[b];
  return bf->kind == BUF_TEMP && bf->shape.rank >= 2 && bf->shape.d[0] == n && DIM_IS_SYM(n);
}

static void item_blocks(Program *p, Kernel *k, Stmt *nl, Dim n) {
  Stmt **slot = &k->body;
  while (*slot && *slot != nl) slot = &(*slot)->next;
  if (!*slot || !sched_same_expr(nl->extent, kx_dim(p, n))) return;
  int bv = k->nvars++, iv = k->nvars++, item = k->nlocals++;
  Stmt *body = nl->body;
  int64_t nmax = DIM_IS_SYM(n) ? p->g->syms[DIM_SYM_ID(n)].max : n; /* a batch of fixed size n */
  int64_t nb = (nmax + ITEM_BLOCK - 1) / ITEM_BLOCK;
  /* the temporaries body uses that no kernel of p but those of node
   * k->node does (the lowering made them for this kernel), nor k outside nl */
  int nbufs = p->nbufs;
  char *mine = rt_xcalloc((size_t)nbufs + 1, 1), *others = rt_xcalloc((size_t)nbufs + 1, 1);
  kir_block_buffers(body, mine, mine);
  for (int f = 0; f < p->nfuncs; f++)
    for (int i = 0; i < p->funcs[f].nkernels; i++)
      if (p->funcs[f].kernels[i].node != k->node) kir_block_buffers(p->funcs[f].kernels[i].body, others, others);
  for (const Stmt *s = k->body; s; s = s->next) /* nor k's own nests around nl (a crop after it) */
    if (s != nl) {
      Stmt one = *s;
      one.next = NULL;
      kir_block_buffers(&one, others, others);
    }
  for (int b = 0; b < nbufs; b++) {
    if (!mine[b] || others[b] || !item_temp(p, b, n)) continue;
    Shape ss = p->bufs[b].shape;
    ss.d[0] = nb;
    Slot s = {b, kir_buffer(p, BUF_TEMP, p->bufs[b].dtype, p->bufs[b].name, &ss, k->node), nl->id, bv};
    body = kir_rewrite_block(p, body, slot_load, &s);
    slot_stores(p, body, &s);
  }
  rt_xfree(mine);
  rt_xfree(others);
  Expr *first = kx_imul(p, kx_var(p, bv), kx_i(p, ITEM_BLOCK));
  body = sched_subst(p, body, nl->id, kx_local(p, item, DT_I64));
  Stmt *decl = ks_local(p, item, DT_I64, kx_iadd(p, kir_clone_expr(p, first), kx_var(p, iv)));
  decl->next = body;
  Expr *left = kx_bin(p, BIN_SUB, kx_dim(p, n), first);
  Stmt *inner = ks_loop(p, iv, kx_bin(p, BIN_MIN, kx_i(p, ITEM_BLOCK), left), decl);
  Expr *blocks = kx_bin(p, BIN_DIV, kx_iadd(p, kx_dim(p, n), kx_i(p, ITEM_BLOCK - 1)), kx_i(p, ITEM_BLOCK));
  Stmt *outer = ks_loop(p, bv, blocks, inner);
  outer->loop = nl->loop, outer->axis = nl->axis;
  outer->next = nl->next;
  *slot = outer;
}

/* Register tiles for convolutions — conv2d and conv1d with unit strides,
 * and the gather of conv_transpose2d (unit strides), one group.  Both
 * walk their output planes as one long row (lower_conv.c: row_walk, the
 * gather's uncropped planes), so for each batch item n the nest is a
 * matrix product in the row form that rule_register_tiles takes:
 *   forward:   y[n, o, f] = b[o] + sum over kk = (c, kh, kw) of
 *              w[o, kk] * xp[n, c, f + kh*dh*wp + kw*dw]
 *   transpose: full[n, c, f] = init[c] + sum over kk = (o, kh, kw) of
 *              w[o, c, kh, kw] * dyp[n, o, f + front - kh*dh*wf - kw*dw]
 * rows the output channels (A, the weight, broadcast), columns the
 * positions f, K the flattened (channel, kh, kw) with div/mod: each term
 * of B is a contiguous run of the (padded) input at a constant offset per
 * kk, so B is read where it is, not packed (a few channels: packing
 * would cost as much as the fmas).  MR divides the channels where it can
 * (all of them up to 7, else 8, 6 or 4), so no row is computed twice; 8
 * rows take 2 vectors of columns where 4 took 4 (LeNet-5's c2: 16
 * channels by 136 positions in 2 tiles of 8 x 32 per panel, and the last
 * 8 positions in one vector of 8 accumulators instead of 4, which hid too
 * little of the fma's latency: 8% less time for LeNet-5 at batch 256).  The
 * batch loop stays outside (parallel: items write disjoint planes).  Each
 * output still sums its init (the bias) and then the same terms in the
 * same order as the lowered nest (c, kh, kw; o, kh, kw), now with fma,
 * so results may differ from --no-tile's in the last bits and are the
 * same for any number of threads.  The rule builds the row form from
 * the node's geometry and the buffers the lowered nest reads; it leaves
 * the nest as it was when the shape does not fit (columns fewer than a
 * vector, a constant weight). */
static int rule_conv_tiles(Program *p, const Graph *g, Kernel *k) {
  const Node *n = &g->nodes[k->node];
  ConvGeom cg;
  ir_conv_geom(g, n, &cg);
  int tr = n->op == OP_CONV_TRANSPOSE2D;
  if (cg.groups != 1 || cg.sh != 1 || cg.sw != 1) return -1;
  Stmt **path[16];
  int d = reduce_path(&k->body, path, 0, 16);
  if (d != (tr ? 4 : 5)) return -1;
  Stmt *nl = *path[0], *red = *path[d - 1];
  int out, in;
  const Stmt *pos = position_loop(red->body, &out, &in);
  const Expr *wload = first_local_load(red->body);
  if (!pos || !wload || wload->id == out || wload->id == in || in == out) return -1;
  int64_t T = cg.kh * cg.kw, rows, cols, plane, K, chans;
  Expr *bias;
  int rv = k->nvars++, i1 = k->nvars++, kk = k->nvars++, i3 = k->nvars++, xl = k->nlocals++, tv = k->nvars++;
  Expr *ch = idiv(p, kx_var(p, tv), T), *kh = imod(p, idiv(p, kx_var(p, tv), cg.kw), cg.kh), *kw = imod(p, kx_var(p, tv), cg.kw);
  Expr *a, *b;
  int64_t nrows = tr ? cg.c : cg.o;
  int mr = nrows <= 7 ? (int)nrows : nrows % 8 == 0 ? 8 : nrows % 6 == 0 ? 6 : nrows % 4 == 0 ? 4 : 6;
  if (!tr) {
    /* y init: the lowered init loop's store (the bias at o), the first statement of the row loop */
    Stmt *rl = *path[3], *il = rl->body;
    if (!il || il->kind != ST_LOOP || !il->body || il->body->kind != ST_STORE || il->body->id != out) return -1;
    int64_t hp = cg.h + cg.pt + cg.pb, wp = cg.w + cg.pl + cg.pr;
    int shifted = p->bufs[in].shape.rank == 5; /* the input's kw-shifted copies [n, c, kw, hp, ow] */
    rows = cg.o, chans = cg.c, cols = (cg.oh - 1) * wp + cg.ow, plane = cg.oh * wp, K = cg.c * T;
    if (shifted) cols = plane = cg.oh * cg.ow;
    bias = sched_subst_expr(p, il->body->value, (*path[2])->id, kx_var(p, rv));
    a = kx_load(p, wload->id, kx_iadd(p, kx_imul(p, kx_var(p, rv), kx_i(p, K)), kx_var(p, kk)));
    if (!tile_vectors(mr, cols)) return -1;
    /* the input's offset of term kk: c * hp*wp + kh*dh*wp + kw*dw, or from
     * the shifted copies (c * kw + kw) * hp*ow + kh*dh*ow */
    Expr *off = shifted ? kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, ch, kx_i(p, cg.kw)), kw), kx_i(p, hp * cg.ow)),
                                  kx_imul(p, kh, kx_i(p, cg.dh * cg.ow)))
                        : kx_iadd(p, kx_imul(p, ch, kx_i(p, hp * wp)), kx_iadd(p, kx_imul(p, kh, kx_i(p, cg.dh * wp)), kx_imul(p, kw, kx_i(p, cg.dw))));
    int tab = kk_table(p, k, tv, off, K, "tap_offsets");
    int64_t item = shifted ? chans * cg.kw * hp * cg.ow : chans * hp * wp;
    Expr *src = kx_iadd(p, kx_imul(p, kx_var(p, nl->id), kx_i(p, item)), kx_load(p, tab, kx_var(p, kk)));
    b = kx_load(p, in, kx_iadd(p, src, kx_var(p, i3)));
  } else {
    /* full init: the first nest (n, c, i) stores bias or 0 into every element; it moves into the row form */
    Stmt *first = k->body, *l2 = first && first->kind == ST_LOOP ? first->body : NULL, *l3 = l2 && l2->kind == ST_LOOP ? l2->body : NULL;
    if (first == nl || !l3 || l3->kind != ST_LOOP || !l3->body || l3->body->kind != ST_STORE || l3->body->id != out ||
        l2->next || l3->next || l3->body->next)
      return -1;
    int64_t hf = (cg.oh - 1) + cg.dh * (cg.kh - 1) + 1, wf = (cg.ow - 1) + cg.dw * (cg.kw - 1) + 1;
    if (hf < cg.pt + cg.h) hf = cg.pt + cg.h;
    if (wf < cg.pl + cg.w) wf = cg.pl + cg.w;
    int64_t front = (cg.kh - 1) * cg.dh * wf + (cg.kw - 1) * cg.dw, len = front + hf * wf;
    rows = cg.c, chans = cg.o, cols = hf * wf, plane = hf * wf, K = cg.o * T;
    bias = sched_subst_expr(p, l3->body->value, l2->id, kx_var(p, rv));
    if (!tile_vectors(mr, cols)) return -1;
    k->body = first->next; /* nl is further on: its slot is not this one */
    /* the weight's offset of term kk = (o, t) for channel 0, o * C*T + t, and the
     * padded gradient's, o * len + front - kh*dh*wf - kw*dw */
    Expr *woff = kx_iadd(p, kx_imul(p, kir_clone_expr(p, ch), kx_i(p, cg.c * T)), imod(p, kx_var(p, tv), T));
    Expr *off = kx_bin(p, BIN_SUB, kx_iadd(p, kx_imul(p, ch, kx_i(p, len)), kx_i(p, front)),
                       kx_iadd(p, kx_imul(p, kh, kx_i(p, cg.dh * wf)), kx_imul(p, kw, kx_i(p, cg.dw))));
    int wtab = kk_table(p, k, tv, woff, K, "tap_weights"), v2 = k->nvars++;
    int tab = kk_table(p, k, v2, sched_subst_expr(p, off, tv, kx_var(p, v2)), K, "tap_offsets");
    a = kx_load(p, wload->id, kx_iadd(p, kx_imul(p, kx_var(p, rv), kx_i(p, T)), kx_load(p, wtab, kx_var(p, kk))));
    Expr *src = kx_iadd(p, kx_imul(p, kx_var(p, nl->id), kx_i(p, chans * len)), kx_load(p, tab, kx_var(p, kk)));
    b = kx_load(p, in, kx_iadd(p, src, kx_var(p, i3)));
  }
  Expr *yi = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, nl->id), kx_i(p, rows)), kx_var(p, rv)), kx_i(p, plane)),
                     kx_var(p, i1));
  Stmt *init = ks_loop(p, i1, kx_i(p, cols), ks_store(p, out, yi, bias));
  Expr *ui = sched_subst_expr(p, yi, i1, kx_var(p, i3));
  Expr *upd = kx_bin(p, BIN_ADD, kx_load(p, out, ui), kx_bin(p, BIN_MUL, kx_local(p, xl, DT_F32), b));
  Stmt *il = ks_loop(p, i3, kx_i(p, cols), ks_store(p, out, kir_clone_expr(p, ui), upd));
  Stmt *xs = ks_local(p, xl, DT_F32, a);
  xs->next = il;
  Stmt *kl = ks_loop(p, kk, kx_i(p, K), xs);
  kl->loop = LOOP_REDUCE;
  init->next = kl;
  nl->body = ks_loop(p, rv, kx_i(p, rows), init);
  if (register_tiles(p, k, &nl->body, mr, 1, 0, NULL) < 0) return -1;
  jam_epilogue(p, k, nl, out, in, wload->id, cg.n, tr ? 1 : cg.o);
  if (!tr) {
    jam_prologue(p, k, nl, out, wload->id, cg.n);
    item_blocks(p, k, nl, cg.n);
  }
  sched_drop_unit_loops(p, &k->body);
  return 0;
}

static void rule_conv(Program *p, const Graph *g, Kernel *k, const SchedOpts *o) {
  const Node *n = &g->nodes[k->node];
  ConvGeom cg;
  ir_conv_geom(g, n, &cg);
  if (o->tiles) {
    Kernel before = *k;
    Stmt *orig = kir_clone_block(p, k->body);
    if (rule_conv_tiles(p, g, k) == 0) return;
    *k = before;
    k->body = orig;
  }
  if (n->op == OP_CONV_TRANSPOSE2D) /* the gather: c around o (reduce) */
    rule_channel_blocks(p, k, 1, cg.c / cg.groups);
  else /* o around row around c (reduce) */
    rule_channel_blocks(p, k, 2, cg.o / cg.groups);
}

/* Parallel marks — in the kernels of linear and convolution layers as
 * lowered, every nest at the top writes disjoint elements from one
 * iteration of its outer loop to the next (rows, transposed columns,
 * batch items, planes), so those loops are marked parallel and run on
 * threads (before the rules, which may drop a loop of one iteration and
 * bring an inner one to the top).  A matmul's outer loop runs over the
 * batch items or the rows (or register tiles of rows) of its output,
 * whose elements each start at zero in that iteration and sum in it: it
 * is marked after its rule, which builds the loop of tiles anew. */
static void mark_top_parallel(Kernel *k) {
  for (Stmt *s = k->body; s; s = s->next)
    if (s->kind == ST_LOOP && s->loop == LOOP_SERIAL) sched_mark(s, LOOP_PARALLEL);
}

/* Window columns — a max pool as lowered when its windows tile the input
 * (lower_conv.c), for each plane, row and column of windows, the
 * maximum of the window's elements stored at the window's output: the
 * column loop is simd (LLVM left it scalar, half as fast as gcc's loop:
 * 5% of LeNet-5's training step on the JIT).  And its gradient,
 * the window's argmax (first maximum, NaN taken), then its elements.  The
 * loop over the columns of windows is simd (kernel.h): each iteration
 * reads the input and dy and writes the gradient (a buffer of its own)
 * in its own window only, and an epilogue fused into it stores only at
 * the element it reads, so the iterations are independent; and both
 * compilers vectorise it (stride-2 loads interleaved) only when told to
 * (LLVM's cost model leaves it scalar, 1.6x slower: LeNet-5's p1
 * gradient was a fifth of the JIT's training step).  Vectorised, every
 * lane computes what its iteration did. */
static Stmt *rule_window_columns(const Graph *g, Kernel *k) {
  ConvGeom w;
  ir_conv_geom(g, &g->nodes[k->node], &w);
  if (!(w.sh == w.kh && w.sw == w.kw && w.dh == 1 && w.dw == 1 && w.pt == 0 && w.pl == 0 && w.oh * w.kh == w.h &&
        w.ow * w.kw == w.w))
    return NULL;
  Stmt *l = k->body;
  if (!l || l->kind != ST_LOOP || l->next) return NULL;
  while (l->body && l->body->kind == ST_LOOP && !l->body->next && l->body->body && l->body->body->kind == ST_LOOP &&
         !l->body->body->next)
    l = l->body;
  Stmt *cols = l->body;
  if (cols != k->body && cols && cols->kind == ST_LOOP && !cols->next && cols->loop == LOOP_SERIAL && cols->step == 1) {
    (void)sched_mark(cols, LOOP_SIMD);
    return cols;
  }
  return NULL;
}

static void sched_kernel_rules(Program *p, Func *f, Kernel *k, const SchedOpts *o) {
  switch (k->op) {
  case OP_MAX_POOL2D:
  case OP_MAX_POOL2D_GRAD: { /* simd columns, or with tiles on, columns in lanes where the windows are 2 wide */
    Stmt *cols = rule_window_columns(f->g, k);
    if (cols && o->tiles) (void)sched_pool_lanes(p, f->g, k, cols);
    break;
  }
  case OP_LINEAR:
    rule_linear(p, f->g, k, o);
    mark_top_parallel(k);
    break;
  case OP_MATMUL: /* lowered in the row form (2-D; batched ones have loops around it and are left) */
    if (o->tiles) (void)rule_register_tiles(p, k, &k->body, NULL);
    mark_top_parallel(k);
    break;
  case OP_CONV2D:
  case OP_CONV1D:
  case OP_CONV_TRANSPOSE2D:
    mark_top_parallel(k);
    if (sched_ct_tiles(p, f->g, k, o->tiles) == 0) break;
    rule_conv(p, f->g, k, o);
    break;
  case OP_CONV2D_GRAD_WEIGHT: /* planes copied, then groups or output channels, each with its own row of sums */
    mark_top_parallel(k);
    if (o->tiles) (void)sched_gw_tiles(p, f->g, k);
    break;
  default: break;
  }
}

/* The rules of k's op, then the parallel marks of what they leave. */
void sched_kernel_opts(Program *p, Func *f, Kernel *k, const SchedOpts *o) {
  if (k->node >= 0 && f->g) sched_kernel_rules(p, f, k, o);
  sched_mark_independent(p, k);
}

static const SchedOpts sched_defaults = {1};

void sched_kernel(Program *p, Func *f, Kernel *k) { sched_kernel_opts(p, f, k, &sched_defaults); }

void sched_program(Program *p, const SchedOpts *o) {
  for (int i = 0; i < p->nfuncs; i++)
    for (int j = 0; j < p->funcs[i].nkernels; j++) sched_kernel_opts(p, &p->funcs[i], &p->funcs[i].kernels[j], o);
  /* derived layouts (made by the rules above too): each iteration of a
   * transpose's outer loop writes a column of its own */
  for (int j = 0; p->prepare && j < p->prepare->nkernels; j++) mark_top_parallel(&p->prepare->kernels[j]);
}

void pass_schedule(Program *p) { sched_program(p, &sched_defaults); }

/* Step "schedule". */
int pass_schedule_step(PassCtx *c) {
  SchedOpts o = {!(c->o && c->o->no_tiles)};
  sched_program(c->prog, &o);
  return 0;
}

void sched_item_blocks(Program *p, Kernel *k, Stmt *nl, Dim n) { item_blocks(p, k, nl, n); }

/* The convolutions' register tiles (B in place) for a rule of another file. */
int sched_conv_row_tiles(Program *p, Kernel *k, Stmt **slot, int mr) { return register_tiles(p, k, slot, mr, 1, 0, NULL); }
