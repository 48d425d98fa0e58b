/*
 * schedule.c — the schedule step: rules that rewrite the loop nests the
 * lowering wrote into the ones that run fast, built from a few
 * primitives on the kernel IR (schedule.h).
 *
 * The lowering writes each op as its plain nest (a linear layer is one
 * dot product per output, in k order) with reduction loops marked
 * LOOP_REDUCE, and records in each kernel the node and op it computes.
 * A rule is keyed by op: it looks at the node's shapes, finds its loops by
 * their kinds and nesting, and applies primitives: split, reorder,
 * unroll, promote an accumulator to a tile of partial sums, unroll and
 * jam, fission, hoist, accumulate in place, vectorise, mark parallel.  Primitives
 * check only the form of the nest they rewrite; whether the rewrite keeps
 * the meaning is the rule's to know, and each rule says in one comment
 * when it applies and why it is sound.  The rules keep the summation order
 * of every output element as the hand-written lowerings they replace did,
 * so results do not change.  Rewrites replace statements and expressions
 * with fresh nodes (expressions may be shared between statements) and
 * allocate variables and locals from the kernel's counters.
 */
#include <stdlib.h>
#include <string.h>

#include "ir/conv.h"
#include "passes/schedule.h"

/* --- analyses --------------------------------------------------------------------- */

typedef struct Find {
  ExprKind kind;
  int id;
} Find;

static int find_expr(void *ctx, const Expr *e) {
  const Find *f = ctx;
  return e->kind == f->kind && e->id == f->id;
}

static int expr_uses(const Expr *e, ExprKind kind, int id) {
  Find f = {kind, id};
  KirVisitor v = {&f, NULL, find_expr};
  return kir_walk_expr(&v, e);
}

static int block_uses(const Stmt *b, ExprKind kind, int id) {
  Find f = {kind, id};
  KirVisitor v = {&f, NULL, find_expr};
  return kir_walk_block(&v, b);
}

static int stmt_uses(const Stmt *s, ExprKind kind, int id) {
  Stmt one = *s;
  one.next = NULL;
  return block_uses(&one, kind, id);
}

typedef struct FindStmt {
  StmtKind kind;
  int id;
} FindStmt;

static int find_stmt(void *ctx, const Stmt *s) {
  const FindStmt *f = ctx;
  return s->kind == f->kind && s->id == f->id;
}

/* Whether block has a statement of kind (assign, store) naming id. */
static int block_has(const Stmt *b, StmtKind kind, int id) {
  FindStmt f = {kind, id};
  KirVisitor v = {&f, find_stmt, NULL};
  return kir_walk_block(&v, b);
}

static int is_const(const Expr *e) { return e && e->kind == EX_ICONST; }
static int is_zero_f(const Expr *e) { return e && e->kind == EX_FCONST && e->f == 0; }

/* --- substitution with folding, renaming -------------------------------------------- */

typedef struct Sub {
  int var;
  const Expr *by;
} Sub;

/* var := by, then integer + and * of constants folded (i + 0 = i). */
static Expr *sub_fold(void *ctx, Program *p, Expr *e) {
  const Sub *s = ctx;
  if (e->kind == EX_VAR && e->id == s->var) return kir_clone_expr(p, s->by);
  if (e->kind == EX_BINARY && e->type == DT_I64 && e->op == BIN_ADD) return kx_iadd(p, e->a, e->b);
  if (e->kind == EX_BINARY && e->type == DT_I64 && e->op == BIN_MUL) return kx_imul(p, e->a, e->b);
  return e;
}

static Stmt *subst(Program *p, const Stmt *block, int var, const Expr *by) {
  Sub s = {var, by};
  return kir_rewrite_block(p, block, sub_fold, &s);
}

static Stmt *subst_one(Program *p, const Stmt *s, int var, const Expr *by) {
  Stmt one = *s;
  one.next = NULL;
  return subst(p, &one, var, by);
}

/* Old id -> new id (-1: kept) for locals and loop variables. */
typedef struct Renames {
  int *local, *var;
  int nlocal, nvar;
} Renames;

static Renames renames_new(Program *p, const Kernel *k) {
  Renames r = {arena_alloc(&p->arena, sizeof(int) * (size_t)(k->nlocals + 1)),
               arena_alloc(&p->arena, sizeof(int) * (size_t)(k->nvars + 1)), k->nlocals, k->nvars};
  memset(r.local, -1, sizeof(int) * (size_t)(k->nlocals + 1));
  memset(r.var, -1, sizeof(int) * (size_t)(k->nvars + 1));
  return r;
}

static void rename_expr(Expr *e, const Renames *r) {
  if (!e) return;
  if (e->kind == EX_LOCAL && e->id < r->nlocal && r->local[e->id] >= 0) e->id = r->local[e->id];
  if (e->kind == EX_VAR && r->var && e->id < r->nvar && r->var[e->id] >= 0) e->id = r->var[e->id];
  rename_expr(e->a, r);
  rename_expr(e->b, r);
  rename_expr(e->c, r);
}

/* Applies r to a block the caller owns (a fresh copy). */
static void rename_block(Stmt *b, const Renames *r) {
  for (Stmt *s = b; s; s = s->next) {
    if ((s->kind == ST_LOCAL || s->kind == ST_ASSIGN) && s->id < r->nlocal && r->local[s->id] >= 0) s->id = r->local[s->id];
    if (s->kind == ST_LOOP && r->var && s->id < r->nvar && r->var[s->id] >= 0) s->id = r->var[s->id];
    rename_expr(s->extent, r);
    rename_expr(s->index, r);
    rename_expr(s->value, r);
    rename_block(s->body, r);
    rename_block(s->orelse, r);
  }
}

/* Fresh ids in r for every local and loop variable b declares. */
static void collect_decls(Kernel *k, const Stmt *b, Renames *r) {
  for (const Stmt *s = b; s; s = s->next) {
    if (s->kind == ST_LOCAL && s->id < r->nlocal) r->local[s->id] = k->nlocals++;
    if (s->kind == ST_LOOP && s->id < r->nvar) r->var[s->id] = k->nvars++;
    collect_decls(k, s->body, r);
    collect_decls(k, s->orelse, r);
  }
}

/* Gives the locals and loops declared in the copy b new ids. */
static void freshen(Program *p, Kernel *k, Stmt *b) {
  Renames r = renames_new(p, k);
  collect_decls(k, b, &r);
  rename_block(b, &r);
}

static Stmt **block_tail(Stmt **slot) {
  while (*slot) slot = &(*slot)->next;
  return slot;
}

/* --- primitives ------------------------------------------------------------------- */

int sched_split(Program *p, Kernel *k, Stmt *l, int64_t w) {
  if (!l || l->kind != ST_LOOP || l->step != 1 || w < 1 || !is_const(l->extent) || l->extent->i % w) return -1;
  int vi = k->nvars++;
  Expr *by = kx_iadd(p, kx_var(p, l->id), kx_var(p, vi));
  Stmt *in = ks_loop(p, vi, kx_i(p, w), subst(p, l->body, l->id, by));
  in->loop = l->loop;
  in->axis = l->axis;
  l->body = in;
  l->step = w;
  return vi;
}

int sched_reorder(Stmt *o) {
  Stmt *in = o ? o->body : NULL;
  if (!o || o->kind != ST_LOOP || !in || in->kind != ST_LOOP || in->next || expr_uses(in->extent, EX_VAR, o->id))
    return -1;
  Stmt t = *o;
  o->id = in->id, o->extent = in->extent, o->loop = in->loop, o->axis = in->axis, o->step = in->step, o->width = in->width;
  in->id = t.id, in->extent = t.extent, in->loop = t.loop, in->axis = t.axis, in->step = t.step, in->width = t.width;
  return 0;
}

int sched_unroll(Program *p, Kernel *k, Stmt **slot) {
  Stmt *l = *slot;
  if (!l || l->kind != ST_LOOP || !is_const(l->extent)) return -1;
  Stmt *head = NULL, **tail = &head;
  for (int64_t i = 0; i < l->extent->i; i += l->step) {
    Stmt *c = subst(p, l->body, l->id, kx_i(p, i));
    if (i > 0) freshen(p, k, c);
    *tail = c;
    tail = block_tail(tail);
  }
  *tail = l->next;
  *slot = head;
  return 0;
}

/* The only uses of local a in block are updates a = a + e (e free of a). */
static int only_sum_updates(const Stmt *b, int a) {
  for (const Stmt *s = b; s; s = s->next) {
    if (s->kind == ST_ASSIGN && s->id == a && !s->index && s->value->kind == EX_BINARY && s->value->op == BIN_ADD &&
        s->value->a->kind == EX_LOCAL && s->value->a->id == a && !s->value->a->a && !expr_uses(s->value->b, EX_LOCAL, a))
      continue;
    if (s->kind == ST_LOCAL && s->id == a) return 0;
    if ((s->kind == ST_ASSIGN && s->id == a) || expr_uses(s->extent, EX_LOCAL, a) || expr_uses(s->index, EX_LOCAL, a) ||
        expr_uses(s->value, EX_LOCAL, a))
      return 0;
    if (!only_sum_updates(s->body, a) || !only_sum_updates(s->orelse, a)) return 0;
  }
  return 1;
}

/* a = a + e  ->  t[u] = t[u] + e, in place (the block is the caller's). */
static void to_tile(Program *p, Stmt *b, int a, int t, DType type, int u) {
  for (Stmt *s = b; s; s = s->next) {
    if (s->kind == ST_ASSIGN && s->id == a) {
      s->id = t;
      s->index = kx_var(p, u);
      s->value = kx_bin(p, BIN_ADD, kx_elem(p, t, type, kx_var(p, u)), s->value->b);
    }
    to_tile(p, s->body, a, t, type, u);
    to_tile(p, s->orelse, a, t, type, u);
  }
}

static int in_block_after(const Stmt *first, const Stmt *s) {
  for (const Stmt *x = first; x; x = x->next)
    if (x == s) return 1;
  return 0;
}

int sched_promote(Program *p, Kernel *k, Stmt **decl, Stmt *outer) {
  Stmt *d = *decl, *in = outer && outer->kind == ST_LOOP ? outer->body : NULL;
  if (!d || d->kind != ST_LOCAL || d->count || !is_zero_f(d->value) || !in_block_after(d->next, outer)) return -1;
  if (!in || in->kind != ST_LOOP || in->next || in->step != 1 || !is_const(in->extent)) return -1;
  int64_t w = in->extent->i;
  if (w < 1 || w > 64 || (w & (w - 1)) || !only_sum_updates(outer->body, d->id)) return -1;
  for (const Stmt *s = d->next; s != outer; s = s->next)
    if (stmt_uses(s, EX_LOCAL, d->id)) return -1;
  int a = d->id, t = k->nlocals++;
  Stmt *tile = ks_local_array(p, t, d->type, w, d->value);
  tile->next = d->next;
  *decl = tile;
  to_tile(p, in->body, a, t, d->type, in->id);
  Expr *part[64];
  for (int64_t u = 0; u < w; u++) part[u] = kx_elem(p, t, d->type, kx_i(p, u));
  for (int64_t h = w / 2; h >= 1; h /= 2)
    for (int64_t u = 0; u < h; u++) part[u] = kx_bin(p, BIN_ADD, part[u], part[u + h]);
  Stmt *sum = ks_local(p, a, d->type, part[0]);
  sum->next = outer->next;
  outer->next = sum;
  return 0;
}

/* Whether every use of array t in b has a constant index. */
static int const_indices(const Stmt *b, int t);

typedef struct ConstIdx {
  int t, bad;
} ConstIdx;

static int const_idx_expr(void *ctx, const Expr *e) {
  ConstIdx *c = ctx;
  if (e->kind == EX_LOCAL && e->id == c->t && !is_const(e->a)) c->bad = 1;
  return c->bad;
}

static int const_idx_stmt(void *ctx, const Stmt *s) {
  ConstIdx *c = ctx;
  if (s->kind == ST_ASSIGN && s->id == c->t && !is_const(s->index)) c->bad = 1;
  return c->bad;
}

static int const_indices(const Stmt *b, int t) {
  ConstIdx c = {t, 0};
  KirVisitor v = {&c, const_idx_stmt, const_idx_expr};
  kir_walk_block(&v, b);
  return !c.bad;
}

typedef struct Scalars {
  int t, *ids;
} Scalars;

static Expr *scalar_elem(void *ctx, Program *p, Expr *e) {
  const Scalars *s = ctx;
  return e->kind == EX_LOCAL && e->id == s->t ? kx_local(p, s->ids[e->a->i], e->type) : e;
}

static void scalar_assigns(Stmt *b, const Scalars *sc) {
  for (Stmt *s = b; s; s = s->next) {
    if (s->kind == ST_ASSIGN && s->id == sc->t) s->id = sc->ids[s->index->i], s->index = NULL;
    scalar_assigns(s->body, sc);
    scalar_assigns(s->orelse, sc);
  }
}

int sched_scalarize(Program *p, Kernel *k, Stmt **decl) {
  Stmt *d = *decl;
  if (!d || d->kind != ST_LOCAL || d->count < 1 || d->count > 64 || !const_indices(d->next, d->id)) return -1;
  Scalars sc = {d->id, arena_alloc(&p->arena, sizeof(int) * (size_t)d->count)};
  Stmt *head = NULL, **tail = &head;
  for (int64_t u = 0; u < d->count; u++) {
    sc.ids[u] = k->nlocals++;
    *tail = ks_local(p, sc.ids[u], d->type, kir_clone_expr(p, d->value));
    tail = &(*tail)->next;
  }
  *tail = kir_rewrite_block(p, d->next, scalar_elem, &sc);
  scalar_assigns(*tail, &sc);
  *decl = head;
  return 0;
}

/* --- unroll and jam ----------------------------------------------------------------- */

typedef struct Jam {
  Program *p;
  Kernel *k;
  int var;
  int64_t f;
  Renames *copy;         /* per copy: the locals it renames */
  const Stmt *region;
} Jam;

static Stmt *jam_block(Jam *J, const Stmt *b);

/* A local the copies share: its value is the same in each (no use of the
 * variable or of a renamed local) and it is never assigned. */
static int jam_shared(const Jam *J, const Stmt *s) {
  if (s->kind != ST_LOCAL || s->count || expr_uses(s->value, EX_VAR, J->var) || block_has(J->region, ST_ASSIGN, s->id))
    return 0;
  for (int l = 0; l < J->copy[1].nlocal; l++)
    if (J->copy[1].local[l] >= 0 && expr_uses(s->value, EX_LOCAL, l)) return 0;
  return 1;
}

/* The copies of statement s, one per value of the variable. */
static Stmt *jam_copies(Jam *J, const Stmt *s) {
  Stmt *head = NULL, **tail = &head;
  if (s->kind == ST_LOCAL)
    for (int64_t b = 1; b < J->f; b++) J->copy[b].local[s->id] = J->k->nlocals++;
  for (int64_t b = 0; b < J->f; b++) {
    Stmt *c = subst_one(J->p, s, J->var, kx_i(J->p, b));
    if (b > 0) {
      rename_block(c, &J->copy[b]);
      freshen(J->p, J->k, c->body);
      freshen(J->p, J->k, c->orelse);
    }
    *tail = c;
    tail = block_tail(tail);
  }
  return head;
}

static Stmt *jam_block(Jam *J, const Stmt *b) {
  Stmt *head = NULL, **tail = &head;
  for (const Stmt *s = b; s; s = s->next) {
    if (s->kind == ST_LOOP && !expr_uses(s->extent, EX_VAR, J->var)) {
      Stmt *c = kir_clone_stmt(J->p, s);
      c->body = jam_block(J, s->body);
      *tail = c;
    } else if (jam_shared(J, s)) {
      *tail = kir_clone_stmt(J->p, s);
    } else {
      *tail = jam_copies(J, s);
    }
    tail = block_tail(tail);
  }
  return head;
}

int sched_unroll_jam(Program *p, Kernel *k, Stmt **slot, int64_t f) {
  Stmt *l = *slot;
  if (f < 2 || f > 64) return -1;
  int vi = sched_split(p, k, l, f);
  if (vi < 0) return -1;
  Renames copy[64];
  for (int64_t b = 0; b < f; b++) {
    copy[b] = renames_new(p, k);
    copy[b].var = NULL;
  }
  Jam J = {p, k, vi, f, copy, l->body->body};
  l->body = jam_block(&J, l->body->body);
  if (l->extent->i == f) {
    Stmt *body = subst(p, l->body, l->id, kx_i(p, 0));
    *block_tail(&body) = l->next;
    *slot = body;
  }
  return 0;
}

/* --- accumulate in place, fission, hoist, marks ----------------------------------- */

int sched_accumulate_in_place(Program *p, Stmt **decl) {
  Stmt *d = *decl, *loop = d ? d->next : NULL, *st = loop ? loop->next : NULL;
  if (!d || d->kind != ST_LOCAL || d->count || !is_zero_f(d->value) || !loop || loop->kind != ST_LOOP) return -1;
  if (!st || st->kind != ST_STORE || !only_sum_updates(loop->body, d->id)) return -1;
  Expr *v = st->value, *rest = NULL;
  int a = d->id;
  if (v->kind == EX_BINARY && v->op == BIN_ADD && v->a->kind == EX_LOCAL && v->a->id == a && !expr_uses(v->b, EX_LOCAL, a))
    rest = v->b;
  else if (!(v->kind == EX_LOCAL && v->id == a && !v->a))
    return -1;
  if (block_uses(st->next, EX_LOCAL, a) || expr_uses(st->index, EX_LOCAL, a)) return -1;
  /* the updates become stores into buf[index]: a = a + e -> buf[i] = buf[i] + e */
  Stmt *init = ks_store(p, st->id, st->index, rest ? rest : d->value);
  Stmt *body = kir_clone_block(p, loop->body);
  for (Stmt **s = &body; *s; s = &(*s)->next)
    if ((*s)->kind == ST_ASSIGN && (*s)->id == a) {
      Stmt *u = ks_store(p, st->id, st->index, kx_bin(p, BIN_ADD, kx_load(p, st->id, st->index), (*s)->value->b));
      u->next = (*s)->next;
      *s = u;
    }
  if (block_uses(body, EX_LOCAL, a)) return -1; /* an update nested deeper: not this form */
  Stmt *nl = kir_clone_stmt(p, loop);
  nl->body = body;
  init->next = nl;
  nl->next = st->next;
  *decl = init;
  return 0;
}

int sched_fission(Program *p, Kernel *k, Stmt *l) {
  if (!l || l->kind != ST_LOOP || !l->body || !l->body->next) return -1;
  int v = k->nvars++;
  Stmt *rest = subst(p, l->body->next, l->id, kx_var(p, v));
  Stmt *second = ks_loop(p, v, l->extent, rest);
  second->loop = l->loop, second->axis = l->axis, second->step = l->step, second->width = l->width;
  l->body->next = NULL;
  second->next = l->next;
  l->next = second;
  return 0;
}

typedef struct Hoist {
  Kernel *k;
  const Stmt *loop;
  int *bound;            /* vars bound in the loop */
  Stmt *decls, **tail;
} Hoist;

typedef struct Bad {
  const int *bound;
  int nvars;
} Bad;

static int bad_index(void *ctx, const Expr *e) {
  const Bad *b = ctx;
  return e->kind == EX_LOCAL || e->kind == EX_LOAD || (e->kind == EX_VAR && e->id < b->nvars && b->bound[e->id]);
}

static Expr *hoist_load(void *ctx, Program *p, Expr *e) {
  Hoist *h = ctx;
  if (e->kind != EX_LOAD || block_has(h->loop->body, ST_STORE, e->id)) return e;
  Bad b = {h->bound, h->k->nvars};
  KirVisitor v = {&b, NULL, bad_index};
  if (kir_walk_expr(&v, e->a)) return e;
  int t = h->k->nlocals++;
  *h->tail = ks_local(p, t, e->type, e);
  h->tail = &(*h->tail)->next;
  return kx_local(p, t, e->type);
}

static void mark_bound(const Stmt *b, int *bound) {
  for (const Stmt *s = b; s; s = s->next) {
    if (s->kind == ST_LOOP) bound[s->id] = 1;
    mark_bound(s->body, bound);
    mark_bound(s->orelse, bound);
  }
}

static int is_select(void *ctx, const Expr *e) {
  (void)ctx;
  return e->kind == EX_SELECT;
}

/* Loads under a select may be guarded by it: a loop with one is left alone. */
int sched_hoist(Program *p, Kernel *k, Stmt **slot) {
  Stmt *l = *slot;
  KirVisitor sel = {NULL, NULL, is_select};
  if (!l || l->kind != ST_LOOP || kir_walk_block(&sel, l->body)) return -1;
  int nv = k->nvars;
  Hoist h = {k, l, arena_alloc(&p->arena, sizeof(int) * (size_t)(nv + 1)), NULL, NULL};
  h.tail = &h.decls;
  memset(h.bound, 0, sizeof(int) * (size_t)(nv + 1));
  h.bound[l->id] = 1;
  mark_bound(l->body, h.bound);
  l->body = kir_rewrite_block(p, l->body, hoist_load, &h);
  if (!h.decls) return -1;
  *h.tail = l;
  *slot = h.decls;
  return 0;
}

/* Whether index e is v plus terms free of v: consecutive iterations of v
 * then touch consecutive elements. */
static int unit_stride(const Expr *e, int v) {
  if (e->kind == EX_VAR) return e->id == v;
  if (e->kind != EX_BINARY || e->op != BIN_ADD || e->lanes != 1) return 0;
  int a = expr_uses(e->a, EX_VAR, v), b = expr_uses(e->b, EX_VAR, v);
  return a != b && unit_stride(a ? e->a : e->b, v);
}

typedef struct Vec {
  Program *p;
  int var, w;
} Vec;

/* The w-lane form of scalar e in the loop over V->var, or NULL: what does
 * not depend on the variable is broadcast, loads at unit stride take w
 * lanes, arithmetic and casts are lane-wise; anything else (the variable
 * as a value, comparisons, selects, guarded loads, rand) is refused. */
static Expr *vec_expr(const Vec *V, const Expr *e) {
  if (e->lanes != 1) return NULL;
  if (!expr_uses(e, EX_VAR, V->var)) return kx_broadcast(V->p, (Expr *)e, V->w);
  Expr *a = NULL, *b = NULL;
  switch (e->kind) {
  case EX_LOAD:
    return !e->b && unit_stride(e->a, V->var) ? kx_load_lanes(V->p, e->id, e->a, V->w) : NULL;
  case EX_UNARY:
    return (a = vec_expr(V, e->a)) ? kx_un(V->p, (UnOp)e->op, a) : NULL;
  case EX_CAST:
    return (a = vec_expr(V, e->a)) ? kx_cast(V->p, e->type, a) : NULL;
  case EX_BINARY:
    if (e->type == DT_BOOL || e->a->type == DT_BOOL) return NULL;
    a = vec_expr(V, e->a), b = a ? vec_expr(V, e->b) : NULL;
    return b ? kx_bin(V->p, (BinOp)e->op, a, b) : NULL;
  case EX_FCONST: case EX_ICONST: case EX_VAR: case EX_SYM: case EX_LOCAL: case EX_SELECT: case EX_RAND:
  case EX_BROADCAST: case EX_REDUCE: case EX_FMA: case EX_ZIP:
    return NULL;
  }
  return NULL;
}

int sched_vectorize(Program *p, Stmt *l, int w) {
  if (!l || l->kind != ST_LOOP || l->step != 1 || l->loop == LOOP_REDUCE || !kir_lanes_ok(w) || w < 2 ||
      !is_const(l->extent) || l->extent->i % w)
    return -1;
  Vec V = {p, l->id, w};
  Stmt *head = NULL, **tail = &head;
  for (const Stmt *s = l->body; s; s = s->next) {
    Expr *v = s->kind == ST_STORE && unit_stride(s->index, l->id) ? vec_expr(&V, s->value) : NULL;
    if (!v) return -1;
    *tail = ks_store(p, s->id, s->index, v);
    tail = &(*tail)->next;
  }
  l->body = head;
  l->step = w;
  l->width = w;
  l->loop = LOOP_VECTOR;
  return 0;
}

int sched_mark(Stmt *l, LoopKind kind) {
  if (!l || l->kind != ST_LOOP || (kind != LOOP_PARALLEL && kind != LOOP_VECTOR && kind != LOOP_SIMD)) return -1;
  l->loop = kind;
  if (kind == LOOP_VECTOR) l->width = (int)l->step;
  return 0;
}

void sched_drop_unit_loops(Program *p, Stmt **slot) {
  while (*slot) {
    Stmt *s = *slot;
    if (s->kind == ST_LOOP && is_const(s->extent) && s->extent->i == 1) {
      Stmt *body = subst(p, s->body, s->id, kx_i(p, 0));
      *block_tail(&body) = s->next;
      *slot = body;
      continue;
    }
    sched_drop_unit_loops(p, &s->body);
    sched_drop_unit_loops(p, &s->orelse);
    slot = &s->next;
  }
}

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
  if (!red || !is_const(red->extent) || red->extent->i % DOT_LANES) return;
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
      i->a->op != BIN_MUL || !is_const(i->a->b) || i->a->b->i != t->cols)
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
      if (block_has(p->funcs[i].kernels[j].body, ST_STORE, b)) return 1;
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
  if (!is_const(K) || K->i <= most) return 0;
  for (int64_t kc = most; kc >= 16; kc--)
    if (K->i % kc == 0) return kc;
  return 0;
}

/* The row form rule_rows leaves, by its parts:
 *   for r < R { for i1 < J { Y[f(r, i1)] = B(i1) }              (init)
 *     for kk < K reduce { local x = X[g(r, kk)]                  (xv)
 *       for i3 < J { Y[..] = Y[..] + x * WT[h(kk, i3)] } } }     (upd, wt) */
static Expr *subst_expr(Program *p, const Expr *e, int var, const Expr *by) {
  Sub s = {var, by};
  return kir_rewrite_expr(p, e, sub_fold, &s);
}

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

static int same_expr(const Expr *a, const Expr *b) {
  if (!a || !b) return a == b;
  return a->kind == b->kind && a->type == b->type && a->lanes == b->lanes && a->op == b->op && a->id == b->id &&
         (a->kind != EX_FCONST || a->f == b->f) && (a->kind != EX_ICONST || a->i == b->i) && same_expr(a->a, b->a) &&
         same_expr(a->b, b->b) && same_expr(a->c, b->c);
}

/* The loop after the reduction of a row form, fuse.c's row epilogue:
 * for e < J { local in = Y[X(i1 := e)]; body }, body not reading Y. */
static int row_tail(Program *p, RowForm *f, Stmt *el) {
  Stmt *in = el->kind == ST_LOOP ? el->body : NULL;
  if (!in || el->step != 1 || el->loop == LOOP_REDUCE || !same_expr(el->extent, f->rows->body->extent) ||
      in->kind != ST_LOCAL || in->count || in->type != DT_F32 || !in->next || in->value->kind != EX_LOAD ||
      in->value->id != f->init->id || in->value->b)
    return -1;
  Expr *at = subst_expr(p, f->init->index, f->i1, kx_var(p, el->id));
  if (!same_expr(in->value->a, at) || block_uses(in->next, EX_LOAD, f->init->id)) return -1;
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
  if (!kl || jl->kind != ST_LOOP || kl->kind != ST_LOOP || (el && el->next) || !is_const(jl->extent) || kl->step != 1 ||
      expr_uses(kl->extent, EX_VAR, rl->id))
    return -1;
  Stmt *init = jl->body, *xs = kl->body, *il = xs ? xs->next : NULL, *u = il ? il->body : NULL;
  if (!init || init->kind != ST_STORE || init->next || xs->kind != ST_LOCAL || xs->count || xs->type != DT_F32) return -1;
  if (!il || il->kind != ST_LOOP || il->next || !is_const(il->extent) || il->extent->i != jl->extent->i) return -1;
  if (!u || u->kind != ST_STORE || u->next || u->id != init->id || init->value->type != DT_F32) return -1;
  Expr *v = u->value, *at = subst_expr(p, init->index, jl->id, kx_var(p, il->id));
  if (v->kind != EX_BINARY || v->op != BIN_ADD || v->b->kind != EX_BINARY || v->b->op != BIN_MUL ||
      v->b->a->kind != EX_LOCAL || v->b->a->id != xs->id || v->b->b->kind != EX_LOAD || v->b->b->b)
    return -1;
  if (v->a->kind != EX_LOAD || v->a->id != u->id || v->a->b || !same_expr(v->a->a, at) || !same_expr(u->index, at))
    return -1;
  Expr *wt = v->b->b;
  if (wt->id == u->id || expr_uses(wt, EX_VAR, rl->id) || stmt_uses(xs, EX_LOAD, u->id) ||
      expr_uses(init->value, EX_LOAD, u->id))
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
  return last && !(is_const(m) && m->i == 0) ? kx_bin(p, BIN_MAX, kx_bin(p, BIN_MIN, r, kir_clone_expr(p, last)), kx_var(p, ri)) : r;
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
  Vec vi = {p, f->i1, w};
  return subst_expr(p, subst_expr(p, vec_expr(&vi, f->init->value), f->i1, col), f->r, row);
}

/* The epilogue in w lanes at row `row`, columns col .. col + w - 1 (the
 * scalar form's r and i1), its input the accumulator local acc: what
 * depends on neither a column nor the input is computed once and
 * broadcast, loads at unit stride along the columns take w lanes, and
 * + - * /, comparisons and selects are lane-wise (every backend has them
 * in vector form).  vl[id] is local id's vector local + 1 (0: it is not
 * one of the epilogue's). */
typedef struct EpiLanes {
  Program *p;
  const RowForm *f;
  Expr *row, *col;
  int w, acc, *vl, n;
} EpiLanes;

static int epi_varies(const EpiLanes *V, const Expr *e) {
  if (!e) return 0;
  if ((e->kind == EX_VAR && e->id == V->f->epi->var) ||
      (e->kind == EX_LOCAL && (e->id == V->f->epi->in || (e->id < V->n && V->vl[e->id]))))
    return 1;
  return epi_varies(V, e->a) || epi_varies(V, e->b) || epi_varies(V, e->c);
}

static Expr *epi_at(const EpiLanes *V, const Expr *e) {
  return subst_expr(V->p, subst_expr(V->p, e, V->f->epi->var, V->col), V->f->epi->row, V->row);
}

static Expr *epi_lanes(const EpiLanes *V, const Expr *e) {
  Program *p = V->p;
  if (!e || e->lanes != 1) return NULL;
  if (!epi_varies(V, e)) return e->type == DT_F32 ? kx_broadcast(p, epi_at(V, e), V->w) : NULL;
  Expr *a, *b, *c;
  switch (e->kind) {
  case EX_LOCAL:
    if (e->a) return NULL;
    return e->id == V->f->epi->in ? kx_vlocal(p, V->acc, DT_F32, V->w) : kx_vlocal(p, V->vl[e->id] - 1, e->type, V->w);
  case EX_FCONST: case EX_ICONST: case EX_VAR: case EX_SYM: case EX_BROADCAST: case EX_REDUCE: case EX_FMA:
  case EX_RAND: case EX_UNARY: case EX_CAST: case EX_ZIP:
    return NULL;
  case EX_LOAD:
    return !e->b && e->type == DT_F32 && unit_stride(e->a, V->f->epi->var) ? kx_load_lanes(p, e->id, epi_at(V, e->a), V->w)
                                                                             : NULL;
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

/* Whether running the epilogue twice at an element stores what once
 * does (the tiles compute some elements twice: the rows of a clamped
 * last tile, the columns two panels overlap): it reads nothing it
 * stores. */
static int epi_repeatable(const Epi *e) {
  for (const Stmt *s = e->body; s; s = s->next)
    if (s->kind == ST_STORE && block_uses(e->body, EX_LOAD, s->id)) return 0;
  return 1;
}

/* The epilogue in lanes on accumulator acc, appended to *out; 0, or -1
 * when some statement has no lane form. */
static int epi_apply(Program *p, Kernel *k, const RowForm *f, Expr *row, Expr *col, int w, int acc, Stmt **out) {
  int *vl = rt_xcalloc((size_t)k->nlocals + 1, sizeof(int)), n = k->nlocals;
  IR_ASSERT(vl);
  EpiLanes V = {p, f, row, col, w, acc, vl, n};
  const Stmt *s = f->epi->body;
  for (; s; s = s->next) {
    int store = s->kind == ST_STORE;
    if (store ? s->value->type != DT_F32 || !unit_stride(s->index, f->epi->var)
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
  if (P->nr % w || !is_const(f->K) || f->K->i % w || wt->kind != EX_LOAD || wt->b || wt->lanes != 1 ||
      wt->type != DT_F32 || !unit_stride(wt->a, f->kk))
    return NULL;
  int kb = k->nvars++, cb = k->nvars++;
  Expr *k0 = kx_imul(p, kx_var(p, kb), kx_i(p, w)), *c0 = kx_iadd(p, P->col0, kx_imul(p, kx_var(p, cb), kx_i(p, w)));
  Stmt *body = NULL;
  int row[TILE_WIDTH];
  for (int c = 0; c < w; c++) { /* row c: column c0 + c at kk = k0 .. k0 + w - 1 */
    Expr *at = subst_expr(p, subst_expr(p, wt->a, f->i3, kx_iadd(p, c0, kx_i(p, c))), f->kk, k0);
    row[c] = k->nlocals++;
    ks_append(&body, ks_local(p, row[c], DT_F32, kx_load_lanes(p, wt->id, at, w)));
  }
  for (int half = w / 2; half >= 1; half /= 2) { /* one round: rows i and i + w/2 into 2i and 2i + 1 */
    int next[TILE_WIDTH];
    for (int i = 0; i < w / 2; i++)
      for (int hi = 0; hi < 2; hi++) {
        next[2 * i + hi] = k->nlocals++;
        Expr *z = kx_zip(p, kx_vlocal(p, row[i], DT_F32, w), kx_vlocal(p, row[i + w / 2], DT_F32, w), hi);
        ks_append(&body, ks_local(p, next[2 * i + hi], DT_F32, z));
      }
    memcpy(row, next, sizeof row);
  }
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
  if (is_const(f->K) && f->K->i % PACK_KB == 0) {
    nb = kx_i(p, f->K->i / PACK_KB);
  } else {
    Expr *kb0 = kx_imul(p, kx_var(p, kb), kx_i(p, PACK_KB));
    kv = kx_bin(p, BIN_MAX, kx_bin(p, BIN_MIN, kv, kx_iadd(p, kir_clone_expr(p, f->K), kx_i(p, -1))), kb0);
    nb = kx_bin(p, BIN_DIV, kx_iadd(p, kir_clone_expr(p, f->K), kx_i(p, PACK_KB - 1)), kx_i(p, PACK_KB));
  }
  Expr *val = subst_expr(p, subst_expr(p, f->wt, f->i3, col), f->kk, kv);
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
    Expr *at = subst_expr(p, subst_expr(p, f->init->index, f->i1, col), f->r, kx_var(p, r));
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
      Expr *src = subst_expr(p, subst_expr(p, f->wt, f->i3, col), f->kk, kk);
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
    Expr *x = subst_expr(p, subst_expr(p, f->xv, f->r, row), f->kk, kk);
    for (int v = 0; v < nv; v++) {
      int w = lanes[v];
      if (!xm[w]) {
        xm[w] = k->nlocals++;
        ks_append(&body, ks_local(p, xm[w], DT_F32, kx_broadcast(p, kir_clone_expr(p, x), w)));
      }
      int a = k->nlocals++;
      Expr *col = kx_iadd(p, P->col0, kx_i(p, off[v]));
      Expr *at = subst_expr(p, subst_expr(p, f->init->index, f->i1, col), f->r, row);
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
      Stmt *inner = subst(p, pl->body, jb, npan[g] > 1 ? kx_var(p, jp) : kx_i(p, 0));
      pl->body = npan[g] > 1 ? ks_loop(p, jp, kx_i(p, npan[g]), inner) : inner;
      ks_append(&packs, pl);
    }
    Stmt *tl = panel_tiles(p, k, P, ts->mr, -1, 0), *body = tl->body;
    if (npan[g] > 1) {
      body = ks_loop(p, jb, kx_i(p, npan[g]), body);
      body->axis = P->f->axis;
    } else {
      body = subst(p, body, jb, kx_i(p, 0));
    }
    if (!outer) outer = tl;
    else body = subst(p, body, tl->id, kx_var(p, outer->id));
    ks_append(&tiles, body);
  }
  outer->body = tiles;
  outer->axis = G[0].f->rows->axis;
  ks_append(&packs, outer);
  return packs;
}

/* The most rows R can take (its constant, or its symbol's maximum). */
static int64_t max_rows(const Program *p, const Expr *R) {
  if (is_const(R)) return R->i;
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
      b->shape.d[0] != f->J || !is_const(f->K) || b->shape.d[1] != f->K->i || f->wt->b)
    return 0;
  Expr *at = kx_iadd(p, kx_imul(p, kx_var(p, f->i3), kx_i(p, f->K->i)), kx_var(p, f->kk));
  return same_expr(f->wt->a, at);
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
  if (in_place && (f.wt->kind != EX_LOAD || !unit_stride(f.wt->a, f.i3))) return -1;
  int64_t rows = max_rows(p, f.rows->extent);
  Dim Kd = is_const(f.K) ? f.K->i : f.K->kind == EX_SYM ? DIM_SYM(f.K->id) : 0;
  TileShape ts = {mr ? mr : rows >= 32 ? 6 : rows >= 8 ? 4 : (int)rows, 0, 0};
  ts.nv = tile_vectors(ts.mr, f.J);
  const int W = TILE_WIDTH;
  Vec vi = {p, f.i1, W};
  Panel P = {&f, -1, ts.nv, 0, 0, 0, 0, 0, NULL, NULL, NULL};
  if ((!ts.nv && (in_place || rows < 8)) || rows < 1 || !Kd || !vec_expr(&vi, f.init->value) ||
      !unit_stride(f.init->index, f.i1) || f.wt->lanes != 1)
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
  P.last = is_const(R) && R->i % ts.mr == 0 ? NULL : kx_iadd(p, kir_clone_expr(p, R), kx_i(p, -1));
  /* the groups of panels: the whole ones, then the columns left */
  Panel G[3];
  int64_t c0[3], npan[3];
  int ng = 0;
  if (n1) G[ng] = P, c0[ng] = 0, npan[ng++] = n1 / nr;
  if (in_place && n1 < f.J) {
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
  int64_t kmax = is_const(f.K) ? f.K->i : p->g && f.K->id < p->g->nsyms ? p->g->syms[f.K->id].max : -1;
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
    if (ok && (s->value->lanes != 1 || expr_uses(s->value, EX_LOCAL, acc->id))) ok = 0;
  }
  rt_xfree(mine);
  if (!ok || !s || s->kind != ST_STORE || s->value->type != DT_F32 || expr_uses(s->value, EX_LOCAL, acc->id) ||
      expr_uses(s->index, EX_LOCAL, head->id) || stmt_uses(head, EX_LOAD, s->id))
    return -1;
  for (const Stmt *q = head->next; q; q = q->next)
    if (expr_uses(q->value, EX_LOAD, s->id)) return -1;
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
    if (is_const(l->extent) && l->extent->i == per_group) sched_unroll_jam(p, k, path[d - 1 - back], ob);
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
  if (!e || e->kind != ST_LOOP || !same_expr(e->extent, want) || !block_uses(e->body, EX_LOAD, out) ||
      block_has(e->body, ST_STORE, out) || block_has(e->body, ST_STORE, in) || block_has(e->body, ST_STORE, w))
    return;
  Stmt *moved;
  if (x == 1) {
    moved = subst(p, e->body, e->id, item);
  } else {
    int q = k->nvars++;
    moved = ks_loop(p, q, kx_i(p, x), subst(p, e->body, e->id, kx_iadd(p, kx_imul(p, item, kx_i(p, x)), kx_var(p, q))));
  }
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
  if (!l || l->kind != ST_LOOP || l->next || l->step != 1 || !is_const(l->extent) || !st || st->kind != ST_STORE ||
      st->next || st->value->kind != EX_LOAD || st->value->b || st->value->lanes != 1 || !unit_stride(st->index, l->id) ||
      !unit_stride(st->value->a, l->id))
    return;
  Stmt *row = NULL;
  int64_t off = 0, E = l->extent->i;
  for (int w = TILE_WIDTH; w >= 1; w /= 2)
    for (; E - off >= w && (w == TILE_WIDTH || ((E - off) & w)); off += w) {
      Expr *j = kx_i(p, off), *src = subst_expr(p, st->value->a, l->id, j);
      Expr *v = w == 1 ? kx_load(p, st->value->id, src) : kx_load_lanes(p, st->value->id, src, w);
      ks_append(&row, ks_store(p, st->id, subst_expr(p, st->index, l->id, j), v));
    }
  *slot = row;
}

/* x when extent e is the batch n times the constant x (as the lowering
 * writes it: N, N * C, N * 32 * 32), else 0. */
static int64_t per_item(Program *p, const Expr *e, Dim n) {
  if (!DIM_IS_SYM(n) && is_const(e)) return n > 0 && e->i % n == 0 ? e->i / n : 0;
  if (same_expr(e, kx_dim(p, n))) return 1;
  if (e->kind != EX_BINARY || e->op != BIN_MUL) return 0;
  int64_t a = is_const(e->b) ? per_item(p, e->a, n) : 0, b = is_const(e->a) ? per_item(p, e->b, n) : 0;
  return a ? a * e->b->i : b ? b * e->a->i : 0;
}

/* Whether nest e only stores into temporaries of batch-major layout
 * [n, ...] other than out and w (the copies that pad the input of a
 * convolution or shift it, lower_conv.c), and reads none of out. */
static int item_copy(const Program *p, const Stmt *e, int out, int w, Dim n) {
  int stored = 0;
  for (int b = 0; b < p->nbufs; b++) {
    if (!block_has(e->body, ST_STORE, b)) continue;
    const Buffer *bf = &p->bufs[b];
    if (b == out || b == w || bf->kind != BUF_TEMP || bf->shape.rank < 2 || bf->shape.d[0] != n) return 0;
    stored = 1;
  }
  return stored && !block_uses(e->body, EX_LOAD, out);
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
    Stmt *moved = ks_loop(p, q, kx_i(p, x), subst(p, e->body, e->id, kx_iadd(p, kx_imul(p, item, kx_i(p, x)), kx_var(p, q))));
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
  if (e->kind == EX_LOAD && e->id == s->buf) e->id = s->slots, e->a = subst_expr(p, e->a, s->var, kx_var(p, s->to));
  return e;
}

static void slot_stores(Program *p, Stmt *b, const Slot *s) {
  for (; b; b = b->next) {
    if (b->kind == ST_STORE && b->id == s->buf) b->id = s->slots, b->index = subst_expr(p, b->index, s->var, kx_var(p, s->to));
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
  if (!*slot || !same_expr(nl->extent, kx_dim(p, n))) return;
  int bv = k->nvars++, iv = k->nvars++, item = k->nlocals++;
  Stmt *body = nl->body;
  int64_t nmax = DIM_IS_SYM(n) ? p->g->syms[DIM_SYM_ID(n)].max : n; /* a batch of fixed size n */
  int64_t nb = (nmax + ITEM_BLOCK - 1) / ITEM_BLOCK;
  /* the temporaries body uses that no kernel of p but those of node
   * k->node does (the lowering made them for this kernel) */
  int nbufs = p->nbufs;
  char *mine = rt_xcalloc((size_t)nbufs + 1, 1), *others = rt_xcalloc((size_t)nbufs + 1, 1);
  kir_block_buffers(body, mine, mine);
  for (int f = 0; f < p->nfuncs; f++)
    for (int i = 0; i < p->funcs[f].nkernels; i++)
      if (p->funcs[f].kernels[i].node != k->node) kir_block_buffers(p->funcs[f].kernels[i].body, others, others);
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
  body = subst(p, body, nl->id, kx_local(p, item, DT_I64));
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
    bias = subst_expr(p, il->body->value, (*path[2])->id, kx_var(p, rv));
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
    bias = subst_expr(p, l3->body->value, l2->id, kx_var(p, rv));
    if (!tile_vectors(mr, cols)) return -1;
    k->body = first->next; /* nl is further on: its slot is not this one */
    /* the weight's offset of term kk = (o, t) for channel 0, o * C*T + t, and the
     * padded gradient's, o * len + front - kh*dh*wf - kw*dw */
    Expr *woff = kx_iadd(p, kx_imul(p, kir_clone_expr(p, ch), kx_i(p, cg.c * T)), imod(p, kx_var(p, tv), T));
    Expr *off = kx_bin(p, BIN_SUB, kx_iadd(p, kx_imul(p, ch, kx_i(p, len)), kx_i(p, front)),
                       kx_iadd(p, kx_imul(p, kh, kx_i(p, cg.dh * wf)), kx_imul(p, kw, kx_i(p, cg.dw))));
    int wtab = kk_table(p, k, tv, woff, K, "tap_weights"), v2 = k->nvars++;
    int tab = kk_table(p, k, v2, subst_expr(p, off, tv, kx_var(p, v2)), K, "tap_offsets");
    a = kx_load(p, wload->id, kx_iadd(p, kx_imul(p, kx_var(p, rv), kx_i(p, T)), kx_load(p, wtab, kx_var(p, kk))));
    Expr *src = kx_iadd(p, kx_imul(p, kx_var(p, nl->id), kx_i(p, chans * len)), kx_load(p, tab, kx_var(p, kk)));
    b = kx_load(p, in, kx_iadd(p, src, kx_var(p, i3)));
  }
  Expr *yi = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, nl->id), kx_i(p, rows)), kx_var(p, rv)), kx_i(p, plane)),
                     kx_var(p, i1));
  Stmt *init = ks_loop(p, i1, kx_i(p, cols), ks_store(p, out, yi, bias));
  Expr *ui = subst_expr(p, yi, i1, kx_var(p, i3));
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

/* --- independent iterations ---------------------------------------------------------
 *
 * Any other top-level loop is marked parallel when the kernel as
 * scheduled shows its iterations independent: every buffer its body
 * stores into is read and written, in iteration v, only at indices
 * c * v + r with one constant c > 0 for that buffer and every r (each
 * lane counted) within a span narrower than c * step, so two iterations
 * touch disjoint elements of it; and the body reads and writes no local
 * declared outside it (a sum carried across iterations).  Buffers it
 * only reads are free (temporaries used by one kernel never share
 * storage: memplan.c).  Index ranges are intervals over the inner loops'
 * extents and the symbols' maxima (a sound bound for every smaller
 * value); an index the intervals cannot bound (a loaded value, a local)
 * keeps the loop serial.  This covers elementwise kernels, pooling and
 * its gradient (per plane), softmax and the losses' per-row work, the
 * optimizer steps and the per-output reductions (sum over the batch for
 * each bias element). */

typedef struct Access {
  int buf, stored, bad;
  int64_t coef, lo, hi;
} Access;

typedef struct Indep {
  const Program *p;
  int var;
  int64_t *sym;       /* each symbol's value, or NULL: any value up to its max */
  int symbolic;       /* an index multiplied the variable by a symbol */
  int64_t *vmax;      /* [nvars] inner loop variable's largest value, -1: unknown */
  char *declared;     /* [nlocals] */
  const char *outer;  /* [nlocals] scalars declared before the loop it may read, or NULL */
  Access *acc;        /* the buffers the body touches (a loop touches few) */
  int nacc, cap;
  int ok;
} Indep;

static int ix_int(DType t) { return t == DT_I64 || t == DT_I32 || t == DT_U8; }

static int ix_mul(int64_t a, int64_t b, int64_t *r) { return !__builtin_mul_overflow(a, b, r); }

/* [lo, hi] holds every value of integer expression e (free of the loop's variable). */
static int ix_range(const Indep *d, const Expr *e, int64_t *lo, int64_t *hi) {
  int64_t al, ah, bl, bh;
  if (e->kind == EX_ICONST) return *lo = *hi = e->i, 1;
  if (e->kind == EX_VAR) {
    if (e->id == d->var || d->vmax[e->id] < 0) return 0;
    return *lo = 0, *hi = d->vmax[e->id], 1;
  }
  if (e->kind == EX_SYM) return *lo = d->sym ? d->sym[e->id] : 0, *hi = d->sym ? d->sym[e->id] : d->p->g->syms[e->id].max, 1;
  if (e->kind == EX_CAST) return ix_int(e->type) && ix_int(e->a->type) && ix_range(d, e->a, lo, hi);
  if (e->kind == EX_SELECT) {
    if (!ix_range(d, e->b, &al, &ah) || !ix_range(d, e->c, &bl, &bh)) return 0;
    return *lo = al < bl ? al : bl, *hi = ah > bh ? ah : bh, 1;
  }
  if (e->kind != EX_BINARY) return 0;
  if (!ix_range(d, e->a, &al, &ah) || !ix_range(d, e->b, &bl, &bh)) return 0;
  switch (e->op) {
  case BIN_ADD: return !__builtin_add_overflow(al, bl, lo) && !__builtin_add_overflow(ah, bh, hi);
  case BIN_SUB: return !__builtin_sub_overflow(al, bh, lo) && !__builtin_sub_overflow(ah, bl, hi);
  case BIN_MUL: {
    int64_t c[4];
    if (!ix_mul(al, bl, &c[0]) || !ix_mul(al, bh, &c[1]) || !ix_mul(ah, bl, &c[2]) || !ix_mul(ah, bh, &c[3])) return 0;
    *lo = *hi = c[0];
    for (int i = 1; i < 4; i++) *lo = c[i] < *lo ? c[i] : *lo, *hi = c[i] > *hi ? c[i] : *hi;
    return 1;
  }
  case BIN_DIV: if (bl != bh || bl <= 0 || al < 0) return 0; *lo = al / bl, *hi = ah / bl; return 1;
  case BIN_MOD: if (bl != bh || bl <= 0 || al < 0) return 0; *lo = 0, *hi = ah < bl - 1 ? ah : bl - 1; return 1;
  case BIN_MIN: *lo = al < bl ? al : bl, *hi = ah < bh ? ah : bh; return 1;
  case BIN_MAX: *lo = al > bl ? al : bl, *hi = ah > bh ? ah : bh; return 1;
  default: return 0;
  }
}

static int ix_uses(const Expr *e, int var) {
  if (!e) return 0;
  if (e->kind == EX_VAR && e->id == var) return 1;
  return ix_uses(e->a, var) || ix_uses(e->b, var) || ix_uses(e->c, var);
}

/* e = *coef * var + r with r in [lo, hi]. */
static int ix_affine(const Indep *d, const Expr *e, int64_t *coef, int64_t *lo, int64_t *hi) {
  if (!ix_uses(e, d->var)) return *coef = 0, ix_range(d, e, lo, hi);
  int64_t ac, al, ah, bc, bl, bh;
  if (e->kind == EX_VAR) return *coef = 1, *lo = *hi = 0, 1;
  if (e->kind == EX_CAST) return ix_int(e->type) && ix_int(e->a->type) && ix_affine(d, e->a, coef, lo, hi);
  if (e->kind != EX_BINARY || !ix_affine(d, e->a, &ac, &al, &ah) || !ix_affine(d, e->b, &bc, &bl, &bh)) return 0;
  switch (e->op) {
  case BIN_ADD:
    return !__builtin_add_overflow(ac, bc, coef) && !__builtin_add_overflow(al, bl, lo) && !__builtin_add_overflow(ah, bh, hi);
  case BIN_SUB:
    return !__builtin_sub_overflow(ac, bc, coef) && !__builtin_sub_overflow(al, bh, lo) && !__builtin_sub_overflow(ah, bl, hi);
  case BIN_MUL: { /* by a constant */
    if (ac && bc) return 0;
    int64_t k = ac ? bl : al, c = ac ? ac : bc, rl = ac ? al : bl, rh = ac ? ah : bh;
    if ((ac ? bl != bh : al != ah) || k < 0) return ((Indep *)d)->symbolic = 1, 0;
    return ix_mul(c, k, coef) && ix_mul(rl, k, lo) && ix_mul(rh, k, hi);
  }
  default: return 0;
  }
}

static void ix_access(Indep *d, int buf, const Expr *index, int lanes, int store) {
  int64_t c, lo, hi;
  int ok = ix_affine(d, index, &c, &lo, &hi) && !__builtin_add_overflow(hi, lanes - 1, &hi);
  int i = 0;
  while (i < d->nacc && d->acc[i].buf != buf) i++;
  if (i == d->nacc) {
    if (d->nacc == d->cap) {
      d->cap = d->cap ? 2 * d->cap : 8;
      Access *grown = realloc(d->acc, sizeof *grown * (size_t)d->cap);
      if (!grown) {
        d->ok = 0;
        return;
      }
      d->acc = grown;
    }
    d->acc[d->nacc++] = (Access){buf, store, !ok, c, lo, hi};
    return;
  }
  Access *a = &d->acc[i];
  a->stored |= store;
  if (!ok || a->coef != c) a->bad = 1;
  if (ok && lo < a->lo) a->lo = lo;
  if (ok && hi > a->hi) a->hi = hi;
}

static void ix_expr(Indep *d, const Expr *e) {
  if (!e || !d->ok) return;
  if (e->kind == EX_LOCAL && !d->declared[e->id] && !(d->outer && d->outer[e->id])) d->ok = 0;
  if (e->kind == EX_LOAD) ix_access(d, e->id, e->a, e->lanes, 0);
  ix_expr(d, e->a);
  ix_expr(d, e->b);
  ix_expr(d, e->c);
}

static void ix_block(Indep *d, const Stmt *s) {
  for (; s && d->ok; s = s->next) {
    ix_expr(d, s->index);
    ix_expr(d, s->value);
    switch (s->kind) {
    case ST_LOOP: {
      int64_t lo, hi;
      int known = s->step >= 1 && ix_range(d, s->extent, &lo, &hi);
      ix_expr(d, s->extent);
      d->vmax[s->id] = known && hi > 0 ? hi - 1 : -1;
      if (!known || hi > 0) ix_block(d, s->body); /* else it never runs */
      break;
    }
    case ST_STORE: ix_access(d, s->id, s->index, s->value->lanes, 1); break;
    case ST_LOCAL: d->declared[s->id] = 1; break;
    case ST_ASSIGN: d->ok &= d->declared[s->id]; break;
    case ST_IF: ix_block(d, s->body), ix_block(d, s->orelse); break;
    }
  }
}

/* Loop l independent with the symbols at sym (NULL: at any value); sets
 * *symbolic when an index scaled the variable by a symbol. */
static int independent_at(Program *p, const Kernel *k, const Stmt *l, const char *outer, int64_t *sym, int *symbolic) {
  Indep d = {p, l->id, sym, 0, malloc(sizeof *d.vmax * (size_t)(k->nvars + 1)), calloc((size_t)k->nlocals + 1, 1), outer,
             NULL, 0, 0, 1};
  if (!d.vmax || !d.declared) d.ok = 0;
  for (int i = 0; d.ok && i < k->nvars; i++) d.vmax[i] = -1;
  if (d.ok) ix_block(&d, l->body);
  if (symbolic) *symbolic = d.symbolic;
  for (int i = 0; d.ok && i < d.nacc; i++) {
    const Access *a = &d.acc[i];
    int64_t span, stride;
    if (a->stored && (a->bad || a->coef <= 0 || __builtin_sub_overflow(a->hi, a->lo, &span) ||
                      __builtin_mul_overflow(a->coef, l->step, &stride) || span >= stride))
      d.ok = 0;
  }
  free(d.vmax);
  free(d.declared);
  free(d.acc);
  return d.ok;
}

/* Loop l independent at every value of the symbols.  An index that scales
 * the variable by a symbol (a transpose's i0 * N + i1, i1 < N) has no
 * constant stride: then every value of the symbols up to their maxima is
 * checked on its own, when there are at most IX_SYM_VALUES of them (a
 * loop with no iterations at some value has no accesses there). */
#define IX_SYM_VALUES 4096
static int independent_loop(Program *p, const Kernel *k, const Stmt *l, const char *outer) {
  int symbolic = 0, n = p->g->nsyms;
  if (independent_at(p, k, l, outer, NULL, &symbolic)) return 1;
  int64_t values = 1, sym[IR_MAX_SYMS] = {0};
  for (int i = 0; i < n; i++)
    if (__builtin_mul_overflow(values, p->g->syms[i].max + 1, &values) || values > IX_SYM_VALUES) return 0;
  if (!symbolic || !n) return 0;
  for (int64_t v = 0; v < values; v++) {
    for (int64_t i = 0, r = v; i < n; r /= p->g->syms[i].max + 1, i++) sym[i] = r % (p->g->syms[i].max + 1);
    if (!independent_at(p, k, l, outer, sym, NULL)) return 0;
  }
  return 1;
}

/* Invariant locals.  A loop that reads a scalar local declared before it
 * at the top of the kernel (an optimizer step's learning rate and step
 * count) cannot run as a job: the chunk has only the kernel's arguments.
 * When the local is never assigned again and its value reads no local and
 * only buffers the kernel never stores into (and other such locals, no
 * function call), its value is the same
 * wherever it is evaluated: the loop gets its own copy, declared at the
 * top of its body under a new id (the same expression, so the same bits;
 * the emitted code hoists it again), and the declaration goes when
 * nothing else reads it. */
static int inv_stores(void *ctx, const Stmt *s) { return s->kind == ST_STORE && s->id == *(const int *)ctx; }

/* Whether kernel k stores into buffer b. */
static int inv_stored(const Kernel *k, int b) {
  KirVisitor v = {&b, inv_stores, NULL};
  return kir_walk_block(&v, k->body) != 0;
}

static int inv_local_assigned(const Stmt *s, int id) {
  for (; s; s = s->next) {
    if (s->kind == ST_ASSIGN && s->id == id) return 1;
    if ((s->kind == ST_LOOP || s->kind == ST_IF) && (inv_local_assigned(s->body, id) || inv_local_assigned(s->orelse, id))) return 1;
  }
  return 0;
}

/* Whether e reads no random number, only buffers k never stores into and
 * only locals already copied (to[id] >= 0; to may be NULL). */
static int inv_pure(const Expr *e, const Kernel *k, const int *to) {
  if (!e) return 1;
  if ((e->kind == EX_LOCAL && (!to || to[e->id] < 0)) || e->kind == EX_RAND || (e->kind == EX_LOAD && inv_stored(k, e->id)) ||
      (e->kind == EX_UNARY && e->op != UN_NEG) || (e->kind == EX_BINARY && e->op == BIN_POW))
    return 0; /* a call per element where the C compiler cannot hoist it (an optimizer's bias corrections) */
  return inv_pure(e->a, k, to) && inv_pure(e->b, k, to) && inv_pure(e->c, k, to);
}

static void inv_rename_expr(Expr *e, const int *to) {
  if (!e) return;
  if (e->kind == EX_LOCAL && to[e->id] >= 0) e->id = to[e->id];
  inv_rename_expr(e->a, to);
  inv_rename_expr(e->b, to);
  inv_rename_expr(e->c, to);
}

static void inv_rename(Stmt *s, const int *to) {
  for (; s; s = s->next) {
    inv_rename_expr(s->extent, to);
    inv_rename_expr(s->index, to);
    inv_rename_expr(s->value, to);
    inv_rename(s->body, to);
    inv_rename(s->orelse, to);
  }
}

static int inv_uses(const Expr *e, int id) {
  if (!e) return 0;
  if (e->kind == EX_LOCAL && e->id == id) return 1;
  return inv_uses(e->a, id) || inv_uses(e->b, id) || inv_uses(e->c, id);
}

static int inv_block_uses(const Stmt *s, int id) {
  for (; s; s = s->next)
    if (inv_uses(s->extent, id) || inv_uses(s->index, id) || inv_uses(s->value, id) || inv_block_uses(s->body, id) ||
        inv_block_uses(s->orelse, id))
      return 1;
  return 0;
}

/* Loop l of k with copies of the invariant locals it reads, when that makes
 * it independent: returns 1 and rewrites l's body; else leaves l. */
static int independent_with_copies(Program *p, Kernel *k, Stmt *l) {
  int *to = NULL, nlocals = k->nlocals, copies = 0, ndecl = 0;
  Stmt *decls = NULL;
  /* the locals the loop needs: those it reads, and those their values read */
  char *needed = arena_alloc(&p->arena, (size_t)k->nlocals + 1);
  for (const Stmt *d = k->body; d != l; d = d->next) ndecl++;
  for (int back = ndecl - 1; back >= 0; back--) {
    const Stmt *d = k->body;
    for (int i = 0; i < back; i++) d = d->next;
    if (d->kind != ST_LOCAL) continue;
    needed[d->id] |= inv_block_uses(l->body, d->id);
    for (const Stmt *e = d->next; e != l; e = e->next)
      if (e->kind == ST_LOCAL && needed[e->id] && inv_uses(e->value, d->id)) needed[d->id] = 1;
  }
  for (const Stmt *d = k->body; d != l; d = d->next) {
    if (d->kind != ST_LOCAL || d->count || d->value->lanes != 1 || !needed[d->id] ||
        inv_local_assigned(k->body, d->id) || !inv_pure(d->value, k, to))
      continue;
    if (!to) {
      to = arena_alloc(&p->arena, sizeof *to * (size_t)(k->nlocals + 1));
      for (int i = 0; i < k->nlocals; i++) to[i] = -1;
    }
    Expr *value = kir_clone_expr(p, d->value);
    inv_rename_expr(value, to);
    to[d->id] = nlocals++;
    ks_append(&decls, ks_local(p, to[d->id], d->type, value));
    copies++;
  }
  if (!copies) return 0;
  Stmt *body = kir_clone_block(p, l->body);
  inv_rename(body, to);
  ks_append(&decls, body);
  Stmt trial = *l;
  trial.body = decls;
  int saved = k->nlocals;
  k->nlocals = nlocals;
  if (!independent_loop(p, k, &trial, NULL)) {
    k->nlocals = saved;
    return 0;
  }
  l->body = decls;
  for (int gone = 1; gone;) { /* a declaration nothing else reads goes (then what only it read) */
    gone = 0;
    for (Stmt **d = &k->body; *d != l;)
      if ((*d)->kind == ST_LOCAL && to[(*d)->id] >= 0 && !inv_block_uses(k->body, (*d)->id)) *d = (*d)->next, gone = 1;
      else d = &(*d)->next;
  }
  return 1;
}

/* Captured locals.  A loop may also read, without copies, any scalar
 * local declared at the top of the kernel before it that it does not
 * assign (a count summed by a loop before it, Adam's bias corrections,
 * which call pow): the emitters hand each chunk the value the local has
 * when the loop starts (cg_parallel_captures), the value every iteration
 * of the serial loop reads. */
static int independent_with_captures(Program *p, const Kernel *k, const Stmt *l) {
  char *outer = arena_alloc(&p->arena, (size_t)k->nlocals + 1);
  int any = 0;
  for (const Stmt *d = k->body; d != l; d = d->next)
    if (d->kind == ST_LOCAL && !d->count && d->value->lanes == 1) outer[d->id] = 1, any = 1;
  return any && independent_loop(p, k, l, outer);
}

static void mark_independent(Program *p, Kernel *k) {
  for (Stmt *s = k->body; s; s = s->next)
    if (s->kind == ST_LOOP && s->loop == LOOP_SERIAL && s->step >= 1 &&
        (independent_loop(p, k, s, NULL) || independent_with_copies(p, k, s) || independent_with_captures(p, k, s)))
      sched_mark(s, LOOP_PARALLEL);
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
static void rule_window_columns(const Graph *g, Kernel *k) {
  ConvGeom w;
  ir_conv_geom(g, &g->nodes[k->node], &w);
  if (!(w.sh == w.kh && w.sw == w.kw && w.dh == 1 && w.dw == 1 && w.pt == 0 && w.pl == 0 && w.oh * w.kh == w.h &&
        w.ow * w.kw == w.w))
    return;
  Stmt *l = k->body;
  if (!l || l->kind != ST_LOOP || l->next) return;
  while (l->body && l->body->kind == ST_LOOP && !l->body->next && l->body->body && l->body->body->kind == ST_LOOP &&
         !l->body->body->next)
    l = l->body;
  Stmt *cols = l->body;
  if (cols != k->body && cols && cols->kind == ST_LOOP && !cols->next && cols->loop == LOOP_SERIAL && cols->step == 1)
    (void)sched_mark(cols, LOOP_SIMD);
}

static void sched_kernel_rules(Program *p, Func *f, Kernel *k, const SchedOpts *o) {
  switch (k->op) {
  case OP_MAX_POOL2D:
  case OP_MAX_POOL2D_GRAD:
    rule_window_columns(f->g, k);
    break;
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
  mark_independent(p, k);
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

/* The convolutions' register tiles (B in place) for a rule of another file. */
int sched_conv_row_tiles(Program *p, Kernel *k, Stmt **slot, int mr) { return register_tiles(p, k, slot, mr, 1, 0, NULL); }
