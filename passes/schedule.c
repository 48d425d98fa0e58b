/*
 * schedule.c — the schedule step's primitives on the kernel IR
 * (schedule.h), and the analyses its rules share (sched_util.h).  The
 * step rewrites the loop nests the lowering wrote into the ones that run
 * fast: the rules are in sched_rules.c (with sched_gw.c and sched_ct.c for
 * the convolutions' gradients), the parallel marks in sched_indep.c.
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
#include "passes/sched_util.h"

/* --- analyses --------------------------------------------------------------------- */

typedef struct Find {
  ExprKind kind;
  int id;
} Find;

static int find_expr(void *ctx, const Expr *e) {
  const Find *f = ctx;
  return e->kind == f->kind && e->id == f->id;
}

int sched_expr_uses(const Expr *e, ExprKind kind, int id) {
  Find f = {kind, id};
  KirVisitor v = {&f, NULL, find_expr};
  return kir_walk_expr(&v, e);
}

int sched_block_uses(const Stmt *b, ExprKind kind, int id) {
  Find f = {kind, id};
  KirVisitor v = {&f, NULL, find_expr};
  return kir_walk_block(&v, b);
}

int sched_stmt_uses(const Stmt *s, ExprKind kind, int id) {
  Stmt one = *s;
  one.next = NULL;
  return sched_block_uses(&one, kind, id);
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
int sched_block_has(const Stmt *b, StmtKind kind, int id) {
  FindStmt f = {kind, id};
  KirVisitor v = {&f, find_stmt, NULL};
  return kir_walk_block(&v, b);
}

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

Stmt *sched_subst(Program *p, const Stmt *block, int var, const Expr *by) {
  Sub s = {var, by};
  return kir_rewrite_block(p, block, sub_fold, &s);
}

Expr *sched_subst_expr(Program *p, const Expr *e, int var, const Expr *by) {
  Sub s = {var, by};
  return kir_rewrite_expr(p, e, sub_fold, &s);
}

static Stmt *subst_one(Program *p, const Stmt *s, int var, const Expr *by) {
  Stmt one = *s;
  one.next = NULL;
  return sched_subst(p, &one, var, by);
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
  if (!l || l->kind != ST_LOOP || l->step != 1 || w < 1 || !sched_is_const(l->extent) || l->extent->i % w) return -1;
  int vi = k->nvars++;
  Expr *by = kx_iadd(p, kx_var(p, l->id), kx_var(p, vi));
  Stmt *in = ks_loop(p, vi, kx_i(p, w), sched_subst(p, l->body, l->id, by));
  in->loop = l->loop;
  in->axis = l->axis;
  l->body = in;
  l->step = w;
  return vi;
}

int sched_reorder(Stmt *o) {
  Stmt *in = o ? o->body : NULL;
  if (!o || o->kind != ST_LOOP || !in || in->kind != ST_LOOP || in->next || sched_expr_uses(in->extent, EX_VAR, o->id))
    return -1;
  Stmt t = *o;
  o->id = in->id, o->extent = in->extent, o->loop = in->loop, o->axis = in->axis, o->step = in->step, o->width = in->width;
  in->id = t.id, in->extent = t.extent, in->loop = t.loop, in->axis = t.axis, in->step = t.step, in->width = t.width;
  return 0;
}

int sched_unroll(Program *p, Kernel *k, Stmt **slot) {
  Stmt *l = *slot;
  if (!l || l->kind != ST_LOOP || !sched_is_const(l->extent)) return -1;
  Stmt *head = NULL, **tail = &head;
  for (int64_t i = 0; i < l->extent->i; i += l->step) {
    Stmt *c = sched_subst(p, l->body, l->id, kx_i(p, i));
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
        s->value->a->kind == EX_LOCAL && s->value->a->id == a && !s->value->a->a && !sched_expr_uses(s->value->b, EX_LOCAL, a))
      continue;
    if (s->kind == ST_LOCAL && s->id == a) return 0;
    if ((s->kind == ST_ASSIGN && s->id == a) || sched_expr_uses(s->extent, EX_LOCAL, a) || sched_expr_uses(s->index, EX_LOCAL, a) ||
        sched_expr_uses(s->value, EX_LOCAL, a))
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
  if (!in || in->kind != ST_LOOP || in->next || in->step != 1 || !sched_is_const(in->extent)) return -1;
  int64_t w = in->extent->i;
  if (w < 1 || w > 64 || (w & (w - 1)) || !only_sum_updates(outer->body, d->id)) return -1;
  for (const Stmt *s = d->next; s != outer; s = s->next)
    if (sched_stmt_uses(s, EX_LOCAL, d->id)) return -1;
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
  if (e->kind == EX_LOCAL && e->id == c->t && !sched_is_const(e->a)) c->bad = 1;
  return c->bad;
}

static int const_idx_stmt(void *ctx, const Stmt *s) {
  ConstIdx *c = ctx;
  if (s->kind == ST_ASSIGN && s->id == c->t && !sched_is_const(s->index)) c->bad = 1;
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
  if (s->kind != ST_LOCAL || s->count || sched_expr_uses(s->value, EX_VAR, J->var) || sched_block_has(J->region, ST_ASSIGN, s->id))
    return 0;
  for (int l = 0; l < J->copy[1].nlocal; l++)
    if (J->copy[1].local[l] >= 0 && sched_expr_uses(s->value, EX_LOCAL, l)) return 0;
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
    if (s->kind == ST_LOOP && !sched_expr_uses(s->extent, EX_VAR, J->var)) {
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
    Stmt *body = sched_subst(p, l->body, l->id, kx_i(p, 0));
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
  if (v->kind == EX_BINARY && v->op == BIN_ADD && v->a->kind == EX_LOCAL && v->a->id == a && !sched_expr_uses(v->b, EX_LOCAL, a))
    rest = v->b;
  else if (!(v->kind == EX_LOCAL && v->id == a && !v->a))
    return -1;
  if (sched_block_uses(st->next, EX_LOCAL, a) || sched_expr_uses(st->index, EX_LOCAL, a)) return -1;
  /* the updates become stores into buf[index]: a = a + e -> buf[i] = buf[i] + e */
  Stmt *init = ks_store(p, st->id, st->index, rest ? rest : d->value);
  Stmt *body = kir_clone_block(p, loop->body);
  for (Stmt **s = &body; *s; s = &(*s)->next)
    if ((*s)->kind == ST_ASSIGN && (*s)->id == a) {
      Stmt *u = ks_store(p, st->id, st->index, kx_bin(p, BIN_ADD, kx_load(p, st->id, st->index), (*s)->value->b));
      u->next = (*s)->next;
      *s = u;
    }
  if (sched_block_uses(body, EX_LOCAL, a)) return -1; /* an update nested deeper: not this form */
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
  Stmt *rest = sched_subst(p, l->body->next, l->id, kx_var(p, v));
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
  if (e->kind != EX_LOAD || sched_block_has(h->loop->body, ST_STORE, e->id)) return e;
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
int sched_unit_stride(const Expr *e, int v) {
  if (e->kind == EX_VAR) return e->id == v;
  if (e->kind != EX_BINARY || e->op != BIN_ADD || e->lanes != 1) return 0;
  int a = sched_expr_uses(e->a, EX_VAR, v), b = sched_expr_uses(e->b, EX_VAR, v);
  return a != b && sched_unit_stride(a ? e->a : e->b, v);
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
  if (!sched_expr_uses(e, EX_VAR, V->var)) return kx_broadcast(V->p, (Expr *)e, V->w);
  Expr *a = NULL, *b = NULL;
  switch (e->kind) {
  case EX_LOAD:
    return !e->b && sched_unit_stride(e->a, V->var) ? kx_load_lanes(V->p, e->id, e->a, V->w) : NULL;
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

Stmt *sched_overlapped_vectors(Program *p, Kernel *k, int64_t E, int w, SchedVectorBody body, void *ctx) {
  int jv = k->nvars++;
  int64_t nv = E / w;
  Stmt *whole = body(ctx, nv > 1 ? kx_imul(p, kx_var(p, jv), kx_i(p, w)) : kx_i(p, 0));
  Stmt *last = whole && E % w ? body(ctx, kx_i(p, E - w)) : NULL;
  if (!whole || (E % w && !last)) return NULL;
  if (nv > 1) whole = ks_loop(p, jv, kx_i(p, nv), whole);
  ks_append(&whole, last);
  return whole;
}

int sched_same_expr(const Expr *a, const Expr *b) {
  if (!a || !b) return a == b;
  return a->kind == b->kind && a->type == b->type && a->lanes == b->lanes && a->op == b->op && a->id == b->id &&
         (a->kind != EX_FCONST || a->f == b->f) && (a->kind != EX_ICONST || a->i == b->i) &&
         sched_same_expr(a->a, b->a) && sched_same_expr(a->b, b->b) && sched_same_expr(a->c, b->c);
}

void sched_zip_transpose(Program *p, Kernel *k, int *row, int w, Stmt **body) {
  int next[KIR_MAX_LANES];
  for (int half = w / 2; half >= 1; half /= 2) {
    for (int i = 0; i < w / 2; i++)
      for (int hi = 0; hi < 2; hi++) {
        next[2 * i + hi] = k->nlocals++;
        Expr *z = kx_zip(p, kx_vlocal(p, row[i], DT_F32, w), kx_vlocal(p, row[i + w / 2], DT_F32, w), hi);
        ks_append(body, ks_local(p, next[2 * i + hi], DT_F32, z));
      }
    for (int i = 0; i < w; i++) row[i] = next[i];
  }
}

Expr *sched_vec_expr(Program *p, int var, int w, const Expr *e) {
  Vec V = {p, var, w};
  return vec_expr(&V, e);
}

int sched_vectorize(Program *p, Stmt *l, int w) {
  if (!l || l->kind != ST_LOOP || l->step != 1 || l->loop == LOOP_REDUCE || !kir_lanes_ok(w) || w < 2 ||
      !sched_is_const(l->extent) || l->extent->i % w)
    return -1;
  Vec V = {p, l->id, w};
  Stmt *head = NULL, **tail = &head;
  for (const Stmt *s = l->body; s; s = s->next) {
    Expr *v = s->kind == ST_STORE && sched_unit_stride(s->index, l->id) ? vec_expr(&V, s->value) : NULL;
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
    if (s->kind == ST_LOOP && sched_is_const(s->extent) && s->extent->i == 1) {
      Stmt *body = sched_subst(p, s->body, s->id, kx_i(p, 0));
      *block_tail(&body) = s->next;
      *slot = body;
      continue;
    }
    sched_drop_unit_loops(p, &s->body);
    sched_drop_unit_loops(p, &s->orelse);
    slot = &s->next;
  }
}
