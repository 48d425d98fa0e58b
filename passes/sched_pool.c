/*
 * sched_pool.c — max pools whose windows tile the input two columns wide,
 * in lanes (a rule of the schedule step, schedule.c).
 *
 * A max pool or its gradient as lowered (lower_conv.c) when the windows
 * tile the input (stride = kernel, no padding, no rest), kernel kh x 2:
 * for each plane and row of windows, a loop over the ow columns of
 * windows (j) whose iteration reads the window's taps, the elements
 * (row + a) * w + 2j + b, and
 *   forward:  stores the first maximum (a NaN wins) at the window's output;
 *   gradient: keeps the first maximum's tap, reads dy at the window, and
 *             stores dy there and 0 at the other taps, through any
 *             epilogue fused after the store.
 * The rule writes the column loop in W lanes (16, 8 or 4, the most that
 * ow holds): the taps of W windows are two loads of W consecutive
 * elements per row of the window, unzipped into the even (b = 0) and odd
 * (b = 1) columns (kernel.h, EX_ZIP); the gradient's two columns are
 * zipped back into two stores.  The columns past the whole vectors are
 * one more vector ending at the last window, which recomputes some
 * windows and stores the same values there again: nothing the loop
 * stores is read by it.
 *
 * Each lane computes what its iteration did, in the same order: the
 * first tap is the maximum, then for each later tap t in scan order
 *   tap = v > m ? t : tap;  tap = v != v ? t : tap;
 *   m   = v > m ? v : m;    m   = v != v ? v : m;
 * which is the lowered select (take = v > m || v != v) in selects on one
 * comparison each, the form the C emitter prints as vectors.  The
 * gradient's tap is its number in the window (an f32); the lowered form
 * names it by its place in the rows, which only it needs (lower_conv.c).
 * Both compilers then see straight vector code: neither vectorised the
 * scalar loop well (LLVM 4 lanes with shuffles, gcc only some forms).
 */
#include <stdlib.h>

#include "ir/conv.h"
#include "passes/sched_util.h"
#include "passes/schedule.h"

/* A statement of a body with the loop variables around it (outermost first). */
typedef struct Found {
  const Stmt *s;
  int vars[4], nvars;
} Found;

/* The first statement of kind `kind` in block b (into buffer buf for a
 * store, -1 any), through loops of constant extent; 0 if none. */
static int find(const Stmt *b, StmtKind kind, int buf, Found *f, int depth) {
  for (const Stmt *s = b; s; s = s->next) {
    if (s->kind == kind && (kind != ST_STORE || buf < 0 || s->id == buf)) {
      f->s = s, f->nvars = depth;
      return 1;
    }
    if (s->kind == ST_LOOP && depth < 4 && sched_is_const(s->extent)) {
      f->vars[depth] = s->id;
      if (find(s->body, kind, buf, f, depth + 1)) return 1;
    }
  }
  return 0;
}

typedef struct Lanes {
  Program *p;
  int col, w;          /* the column loop's variable, the lanes */
  Expr *j0;            /* the first window of the vector */
  const int *tvars;    /* the tap loops' variables around the store (a, b), ntvars of them */
  int ntvars;
  int64_t a, b;        /* the tap the expression is for */
  const Expr *at;      /* the store's index (scalar, in the tap variables) */
  int local;           /* the local that stands for `val` (-1 none) */
  Expr *val;
} Lanes;

/* Index e at the tap (a, b = 0) of window j0 (lane 0 of the even columns). */
static Expr *tap_index(const Lanes *L, const Expr *e) {
  Expr *x = sched_subst_expr(L->p, e, L->col, L->j0);
  if (L->ntvars == 2) x = sched_subst_expr(L->p, x, L->tvars[0], kx_i(L->p, L->a));
  if (L->ntvars >= 1) x = sched_subst_expr(L->p, x, L->tvars[L->ntvars - 1], kx_i(L->p, 0));
  return x;
}

/* The tap's column b of w windows from even index i0: two loads unzipped. */
static Expr *unzipped(const Lanes *L, int buf, Expr *i0) {
  Expr *lo = kx_load_lanes(L->p, buf, i0, L->w);
  Expr *hi = kx_load_lanes(L->p, buf, kx_iadd(L->p, kir_clone_expr(L->p, i0), kx_i(L->p, L->w)), L->w);
  return kx_zip(L->p, lo, hi, 2 + (int)L->b);
}

static int any_local(void *ctx, const Expr *e) {
  (void)ctx;
  return e->kind == EX_LOCAL;
}

static int uses_tap(const Lanes *L, const Expr *e) {
  for (int i = 0; i < L->ntvars; i++)
    if (kir_uses_var(e, L->tvars[i])) return 1;
  return 0;
}

/* The w-lane form of scalar e for the tap (a, b) of windows j0 .. j0 + w - 1,
 * or NULL: the local L->local is L->val; a load at the store's index is
 * the tap's column of that buffer; a load at unit stride along the
 * columns takes w lanes; what depends on neither the columns nor the
 * taps is broadcast; f32 and bool arithmetic is lane-wise. */
static Expr *lanes(const Lanes *L, const Expr *e) {
  Program *p = L->p;
  if (e->lanes != 1) return NULL;
  if (e->kind == EX_LOCAL && e->id == L->local && !e->a) return kir_clone_expr(p, L->val);
  int col = kir_uses_var(e, L->col), tap = uses_tap(L, e);
  KirVisitor locals = {NULL, NULL, any_local};
  if (!col && !tap && !kir_walk_expr(&locals, e)) return kx_broadcast(p, kir_clone_expr(p, e), L->w);
  if (e->type != DT_F32 && e->type != DT_BOOL) return NULL;
  Expr *a, *b, *c;
  switch (e->kind) {
  case EX_LOAD:
    if (e->b) return NULL;
    if (L->at && sched_same_expr(e->a, L->at)) return unzipped(L, e->id, tap_index(L, e->a));
    if (!tap && sched_unit_stride(e->a, L->col))
      return kx_load_lanes(p, e->id, sched_subst_expr(p, e->a, L->col, L->j0), L->w);
    return NULL;
  case EX_LOCAL: return NULL; /* another local: its lanes are not known here */
  case EX_UNARY: return (a = lanes(L, e->a)) ? kx_un(p, (UnOp)e->op, a) : NULL;
  case EX_BINARY:
    if (e->a->type != DT_F32) return NULL;
    a = lanes(L, e->a), b = a ? lanes(L, e->b) : NULL;
    return b ? kx_bin(p, (BinOp)e->op, a, b) : NULL;
  case EX_SELECT:
    a = lanes(L, e->a), b = a ? lanes(L, e->b) : NULL, c = b ? lanes(L, e->c) : NULL;
    return c ? kx_select(p, a, b, c) : NULL;
  case EX_FCONST: case EX_ICONST: case EX_VAR: case EX_SYM: case EX_CAST: case EX_RAND: case EX_BROADCAST:
  case EX_REDUCE: case EX_FMA: case EX_ZIP:
    return NULL;
  }
  return NULL;
}

static int new_local(Kernel *k) { return k->nlocals++; }

static Expr *vl(Program *p, int local, int w) { return kx_vlocal(p, local, DT_F32, w); }

static Expr *num(Program *p, int64_t t, int w) { return kx_broadcast(p, kx_f(p, (double)t), w); }

/* The selects of a later tap, local v (number t), into the maximum m
 * and, when tap >= 0, the tap's number: appended to *out. */
static void take(Program *p, Stmt **out, int m, int tap, int v, int64_t t, int w) {
  if (tap >= 0) {
    ks_append(out, ks_assign(p, tap, kx_select(p, kx_bin(p, BIN_GT, vl(p, v, w), vl(p, m, w)), num(p, t, w), vl(p, tap, w))));
    ks_append(out, ks_assign(p, tap, kx_select(p, kx_bin(p, BIN_NE, vl(p, v, w), vl(p, v, w)), num(p, t, w), vl(p, tap, w))));
  }
  ks_append(out, ks_assign(p, m, kx_select(p, kx_bin(p, BIN_GT, vl(p, v, w), vl(p, m, w)), vl(p, v, w), vl(p, m, w))));
  ks_append(out, ks_assign(p, m, kx_select(p, kx_bin(p, BIN_NE, vl(p, v, w), vl(p, v, w)), vl(p, v, w), vl(p, m, w))));
}

/* What the rule reads off the lowered column body. */
typedef struct PoolBody {
  int grad, x;              /* the input read (x's buffer) */
  int64_t kh;
  const Expr *tap_at;       /* the index of tap (a, b) in the tap variables */
  int tap_vars[2], ntap;    /* the tap loops' variables (kh > 1: a, then b) */
  const Stmt *store;        /* the store into the result */
  int store_vars[2], nstore;
  int pick;                 /* gradient: the local the store's value reads (dy or 0); -1: the value is that */
  const Expr *dy;           /* gradient: dy at the window */
  int m;                    /* forward: the maximum's local */
  const Expr *taps[16];     /* forward: the written-out taps' indices */
} PoolBody;

/* The vector body for windows j0 .. j0 + w - 1, or NULL. */
static Stmt *vector_body(Program *p, Kernel *k, const PoolBody *B, int col, Expr *j0, int w) {
  Lanes L = {p, col, w, j0, B->tap_vars, B->ntap, 0, 0, NULL, -1, NULL};
  Stmt *out = NULL;
  int m = new_local(k), tap = B->grad ? new_local(k) : -1;
  for (int64_t a = 0; a < B->kh; a++)
    for (int64_t b = 0; b < 2; b++) {
      L.a = a, L.b = b;
      Expr *i0 = B->grad ? tap_index(&L, B->tap_at) : sched_subst_expr(p, B->taps[a * 2], col, j0);
      Expr *v = unzipped(&L, B->x, i0);
      if (a == 0 && b == 0) {
        ks_append(&out, ks_local(p, m, DT_F32, v));
        if (tap >= 0) ks_append(&out, ks_local(p, tap, DT_F32, num(p, 0, w)));
        continue;
      }
      int vt = new_local(k);
      ks_append(&out, ks_local(p, vt, DT_F32, v));
      take(p, &out, m, tap, vt, a * 2 + b, w);
    }
  if (!B->grad) { /* the store at the window, its value with the maximum in lanes */
    L.local = B->m, L.val = vl(p, m, w), L.tvars = NULL, L.ntvars = 0;
    Expr *v = lanes(&L, B->store->value);
    if (!v || !sched_unit_stride(B->store->index, col)) return NULL;
    ks_append(&out, ks_store(p, B->store->id, sched_subst_expr(p, B->store->index, col, j0), v));
    return out;
  }
  L.tvars = B->store_vars, L.ntvars = B->nstore, L.local = -1;
  Expr *dy = lanes(&L, B->dy);
  if (!dy) return NULL;
  int d = new_local(k);
  ks_append(&out, ks_local(p, d, DT_F32, dy));
  L.at = B->store->index;
  for (int64_t a = 0; a < B->kh; a++) {
    Expr *col2[2];
    for (int64_t b = 0; b < 2; b++) {
      L.a = a, L.b = b;
      L.local = B->pick;
      L.val = kx_select(p, kx_bin(p, BIN_EQ, vl(p, tap, w), num(p, a * 2 + b, w)), vl(p, d, w), num(p, 0, w));
      Expr *v = B->pick < 0 ? L.val : lanes(&L, B->store->value);
      if (!v) return NULL;
      int cl = new_local(k);
      ks_append(&out, ks_local(p, cl, DT_F32, v));
      col2[b] = vl(p, cl, w);
    }
    L.b = 0;
    Expr *s0 = tap_index(&L, B->store->index);
    ks_append(&out, ks_store(p, B->store->id, s0, kx_zip(p, col2[0], col2[1], 0)));
    ks_append(&out, ks_store(p, B->store->id, kx_iadd(p, kir_clone_expr(p, s0), kx_i(p, w)),
                             kx_zip(p, kir_clone_expr(p, col2[0]), kir_clone_expr(p, col2[1]), 1)));
  }
  return out;
}

/* Reads the lowered column body of a pool (B), or -1 when it is not the
 * form the rule knows. */
static int pool_body(const Stmt *body, int grad, int out, int64_t kh, PoolBody *B) {
  B->grad = grad, B->kh = kh;
  if (!grad) { /* local m = x[t0]; m = max(x[t], m) ...; store */
    const Stmt *s = body;
    if (!s || s->kind != ST_LOCAL || s->value->kind != EX_LOAD || s->value->b) return -1;
    B->m = s->id, B->x = s->value->id;
    int n = 0;
    for (; s && s->kind != ST_STORE; s = s->next, n++) {
      const Expr *v = s->kind == ST_LOCAL ? s->value : s->kind == ST_ASSIGN && s->id == B->m && s->value->kind == EX_BINARY &&
                                                               s->value->op == BIN_MAX && s->value->b->kind == EX_LOCAL &&
                                                               s->value->b->id == B->m
                                                           ? s->value->a
                                                           : NULL;
      if (!v || n >= 16 || v->kind != EX_LOAD || v->b || v->id != B->x) return -1;
      B->taps[n] = v->a;
    }
    if (!s || s->id != out || s->next || n != kh * 2) return -1;
    B->store = s;
    return 0;
  }
  /* local m; local tap; the taps' nest (a local of a load of x); local dy; the stores' nest */
  Found f;
  if (!find(body, ST_STORE, out, &f, 0) || f.nvars != (kh > 1 ? 2 : 1)) return -1;
  B->store = f.s, B->nstore = f.nvars;
  for (int i = 0; i < f.nvars; i++) B->store_vars[i] = f.vars[i];
  Found t;
  const Stmt *tl = NULL, *dl = NULL, *nest = NULL;
  for (const Stmt *s = body; s; s = s->next) {
    if (s->kind == ST_LOOP && !nest) nest = s;
    else if (s->kind == ST_LOCAL && nest && !dl) dl = s;
  }
  if (!nest || !dl || dl->value->type != DT_F32) return -1;
  if (!find(nest, ST_LOCAL, -1, &t, 0) || t.nvars != f.nvars) return -1;
  tl = t.s;
  if (tl->value->kind != EX_LOAD || tl->value->b) return -1;
  B->x = tl->value->id, B->tap_at = tl->value->a, B->ntap = t.nvars;
  for (int i = 0; i < t.nvars; i++) B->tap_vars[i] = t.vars[i];
  B->dy = dl->value;
  /* the store's value reads the pick: the local just before it, select(tap == place, dy, 0) */
  const Stmt *prev = NULL;
  for (const Stmt *s = nest->next; s && !prev; s = s->next)
    if (s->kind == ST_LOOP) {
      const Stmt *in = s;
      while (in && in->kind == ST_LOOP) in = in->body;
      for (; in && in->next; in = in->next)
        if (in->next == B->store) prev = in;
    }
  /* or, with no epilogue, the store's value is that select */
  const Expr *v = B->store->value;
  if (v->kind == EX_SELECT && v->b->kind == EX_LOCAL && v->b->id == dl->id && (!prev || prev->kind != ST_LOCAL)) {
    B->pick = -1;
    return 0;
  }
  if (!prev || prev->kind != ST_LOCAL || prev->value->kind != EX_SELECT || prev->value->b->kind != EX_LOCAL ||
      prev->value->b->id != dl->id)
    return -1;
  B->pick = prev->id;
  return 0;
}

typedef struct Pool {
  Program *p;
  Kernel *k;
  const PoolBody *B;
  int col, w;
} Pool;

static Stmt *pool_vector(void *ctx, Expr *j0) {
  const Pool *P = ctx;
  return vector_body(P->p, P->k, P->B, P->col, j0, P->w);
}

int sched_pool_lanes(Program *p, const Graph *g, Kernel *k, Stmt *cols) {
  const Node *n = &g->nodes[k->node];
  ConvGeom c;
  ir_conv_geom(g, n, &c);
  if (!(c.sh == c.kh && c.sw == 2 && c.kw == 2 && c.dh == 1 && c.dw == 1 && c.pt == 0 && c.pl == 0 &&
        c.oh * c.kh == c.h && c.ow * c.kw == c.w && c.kh * c.kw <= 16))
    return -1;
  int w = sched_overlap_lanes(c.ow);
  if (!w || !cols || cols->kind != ST_LOOP || cols->step != 1 || !sched_is_const(cols->extent) || cols->extent->i != c.ow)
    return -1;
  PoolBody B = {0};
  Found f;
  if (!find(cols->body, ST_STORE, -1, &f, 0)) return -1;
  int out = f.s->id;
  if (pool_body(cols->body, n->op == OP_MAX_POOL2D_GRAD, out, c.kh, &B) < 0 || B.x == out ||
      p->bufs[B.x].dtype != DT_F32 || p->bufs[out].dtype != DT_F32)
    return -1;
  /* nothing stored is read: the last vector may store some windows again */
  char *loaded = calloc((size_t)p->nbufs, 1);
  if (!loaded) return -1;
  kir_block_buffers(cols->body, loaded, NULL);
  int reread = loaded[out];
  free(loaded);
  if (reread) return -1;
  Pool P = {p, k, &B, cols->id, w};
  Stmt *vectors = sched_overlapped_vectors(p, k, c.ow, w, pool_vector, &P);
  if (!vectors) return -1;
  Stmt *t = vectors;
  while (t->next) t = t->next;
  t->next = cols->next;
  *cols = *vectors;
  return 0;
}
