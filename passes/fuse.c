/*
 * fuse.c — the fusion step: kernels that pass a buffer element for
 * element from one to the next become one kernel, and the buffer goes
 * when nothing else reads it (memplan then gives it no space).
 *
 * It runs on the kernels as lowered, before the schedule, and has two
 * rules, both keyed on one buffer T that exactly one kernel P stores into
 * with exactly one store statement, T[X] = e:
 *
 *   inline   — (off for now but for transposes into products: see
 *              inline_on below.)  P is a perfect loop nest whose body is that store and
 *              nothing else (an elementwise op, a transpose, a copy);
 *              every load T[I] in every later kernel that reads T becomes
 *              e with P's loop variables bound by matching X against I,
 *              and P goes.  A reader gets the value computed where it
 *              needs it: relu's mask into the gradient products that read
 *              it, a transpose into the product that reads the transposed
 *              matrix, an add into the relu after it.
 *   epilogue — the kernel C that reads T next is one loop nest over T's
 *              elements whose innermost body stores only at the element
 *              it reads T at (an elementwise op, the optimizer update of
 *              one parameter, a dropout mask): C's body runs right after
 *              the store in P, reading the value from a local, with C's
 *              loop variables bound by matching C's index against X; C
 *              goes, and so does the store into T (C must be T's only
 *              reader: a kept T would make C's stores live across all of
 *              P, its temporaries too, and only grow the arena).
 *              Bias and activation after a product's store, relu after an
 *              add, a parameter's update after its gradient's sum.
 *
 * Legality, checked for every rewrite: P stores T once per element (one
 * store, outside any if, under loops whose variables all appear in X, not
 * reading T); the reader reads T only at the matched element; bounds
 * match (the loops bound to each other have the same extent, and a flat
 * consumer runs over exactly T's elements); no kernel between P and the
 * reader writes what the moved computation reads, and the moved stores
 * touch nothing P or the kernels between read or write.  Inlining
 * recomputes e once per load, so it happens only where each load reads
 * its element once (every loop around it indexes it), unless e is a bare
 * load.
 *
 * The schedule's rules recognise nests by their form, so a kernel with a
 * schedule rule is rewritten only when the schedule still does to it what
 * it did before: both versions are scheduled on copies (with the
 * options the schedule step will use) and the loop structure they end in
 * (kinds, steps, widths, and the lanes of loads and fmas) must agree; a
 * product's tiles then apply an activation in lanes at their stores.  The
 * order of every floating-point operation per element is unchanged, so
 * results are identical to the unfused program's.
 */
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"
#include "passes/schedule.h"

/* --- what kernels load and store ------------------------------------------------- */

/* The pass keeps, for the program, how many kernels load and store each
 * buffer, and for the function being fused the distinct buffers each
 * kernel loads and stores and, per buffer, the kernels that do: all built
 * once, then updated kernel by kernel as rewrites happen, so that a
 * candidate costs what its own kernels hold, never a scan of every buffer
 * or kernel (programs have tens of thousands of both). */

typedef struct IntVec {
  int *v;
  int n, cap;
} IntVec;

static void iv_push(IntVec *a, int x) {
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 4;
    a->v = rt_xrealloc(a->v, sizeof(int) * (size_t)a->cap);
    IR_ASSERT(a->v);
  }
  a->v[a->n++] = x;
}

static void iv_drop(IntVec *a, int x) {
  for (int i = 0; i < a->n; i++)
    if (a->v[i] == x) {
      a->v[i] = a->v[--a->n];
      return;
    }
}

/* The distinct buffers one kernel loads and stores. */
typedef struct KUse {
  IntVec ld, st;
} KUse;

typedef struct Fuse {
  Program *p;
  Func *f;
  int nbufs;
  int *loads, *stores;   /* per buffer: kernels of the program that load / store it */
  int *seen_ld, *seen_st, stamp;   /* per buffer: scratch marks */
  /* the function being fused, per kernel (a kernel fused into another
   * is marked dead and the function compacted at the end) */
  KUse *ku;
  char *dead;
  int *group;            /* how many kernels of the lowering it holds */
  IntVec *rd, *wr;       /* per buffer: the function's kernels loading / storing it (dead ones
                            are dropped lazily: skip them) */
  int inlined, epilogues;
  int tiles;             /* the schedule's register tiles (SchedOpts) */
} Fuse;

typedef struct Collect {
  Fuse *F;
  KUse *u;
} Collect;

static int collect_expr(void *ctx, const Expr *e) {
  Collect *c = ctx;
  if (e->kind == EX_LOAD && c->F->seen_ld[e->id] != c->F->stamp) c->F->seen_ld[e->id] = c->F->stamp, iv_push(&c->u->ld, e->id);
  return 0;
}

static int collect_stmt(void *ctx, const Stmt *st) {
  Collect *c = ctx;
  if (st->kind == ST_STORE && c->F->seen_st[st->id] != c->F->stamp) c->F->seen_st[st->id] = c->F->stamp, iv_push(&c->u->st, st->id);
  return 0;
}

static void kuse_block(Fuse *F, KUse *u, const Stmt *b) {
  memset(u, 0, sizeof *u);
  F->stamp++;
  Collect c = {F, u};
  KirVisitor v = {&c, collect_stmt, collect_expr};
  kir_walk_block(&v, b);
}

static void kuse_expr(Fuse *F, KUse *u, const Expr *e) {
  memset(u, 0, sizeof *u);
  F->stamp++;
  Collect c = {F, u};
  KirVisitor v = {&c, NULL, collect_expr};
  kir_walk_expr(&v, e);
}

static void kuse_free(KUse *u) {
  rt_xfree(u->ld.v);
  rt_xfree(u->st.v);
  memset(u, 0, sizeof *u);
}

static void count_uses(Fuse *F, const KUse *u, int sign) {
  for (int i = 0; i < u->ld.n; i++) F->loads[u->ld.v[i]] += sign;
  for (int i = 0; i < u->st.n; i++) F->stores[u->st.v[i]] += sign;
}

static void count_kernel(Fuse *F, const Kernel *k) {
  KUse u;
  kuse_block(F, &u, k->body);
  count_uses(F, &u, 1);
  kuse_free(&u);
}

/* Kernel i's entries in the per-buffer lists. */
static void list_kernel(Fuse *F, int i) {
  const KUse *u = &F->ku[i];
  for (int j = 0; j < u->ld.n; j++) iv_push(&F->rd[u->ld.v[j]], i);
  for (int j = 0; j < u->st.n; j++) iv_push(&F->wr[u->st.v[j]], i);
}

/* Drops kernel i from the lists of buffers in `old` that `now` lacks, and
 * adds it to those of buffers `now` has and `old` lacked. */
static void relist(Fuse *F, int i, const IntVec *old, const IntVec *now, IntVec *lists) {
  int stamp = ++F->stamp;
  for (int j = 0; j < now->n; j++) F->seen_ld[now->v[j]] = stamp;
  for (int j = 0; j < old->n; j++)
    if (F->seen_ld[old->v[j]] != stamp) iv_drop(&lists[old->v[j]], i);
  stamp = ++F->stamp;
  for (int j = 0; j < old->n; j++) F->seen_ld[old->v[j]] = stamp;
  for (int j = 0; j < now->n; j++)
    if (F->seen_ld[now->v[j]] != stamp) iv_push(&lists[now->v[j]], i);
}

/* Kernel i was rewritten: its uses taken again. */
static void refresh_kernel(Fuse *F, int i) {
  KUse now;
  kuse_block(F, &now, F->f->kernels[i].body);
  count_uses(F, &F->ku[i], -1);
  count_uses(F, &now, 1);
  relist(F, i, &F->ku[i].ld, &now.ld, F->rd);
  relist(F, i, &F->ku[i].st, &now.st, F->wr);
  kuse_free(&F->ku[i]);
  F->ku[i] = now;
}

/* Kernel i goes (its entries in the lists stay, marked dead). */
static void remove_kernel(Fuse *F, int i) {
  count_uses(F, &F->ku[i], -1);
  F->dead[i] = 1;
}

/* The live kernels of the function in a list, at most max of them into
 * out (in list order); their number. */
static int live(const Fuse *F, const IntVec *ids, int *out, int max) {
  int n = 0;
  for (int i = 0; i < ids->n; i++)
    if (!F->dead[ids->v[i]]) {
      if (n < max) out[n] = ids->v[i];
      n++;
    }
  return n;
}

static int in_range(const Fuse *F, const IntVec *ids, int from, int to) {
  for (int i = 0; i < ids->n; i++)
    if (ids->v[i] > from && ids->v[i] < to && !F->dead[ids->v[i]]) return 1;
  return 0;
}

/* Whether a live kernel of f in (from, to) stores a buffer of reads (but
 * skip), or loads or stores one of writes (when given). */
static int between_conflicts(Fuse *F, int from, int to, const IntVec *reads, int skip, const IntVec *writes) {
  for (int i = 0; i < reads->n; i++)
    if (reads->v[i] != skip && in_range(F, &F->wr[reads->v[i]], from, to)) return 1;
  for (int i = 0; writes && i < writes->n; i++)
    if (in_range(F, &F->rd[writes->v[i]], from, to) || in_range(F, &F->wr[writes->v[i]], from, to)) return 1;
  return 0;
}

static int by_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* --- matching and substituting indices --------------------------------------------- */

static int same_expr(const Expr *a, const Expr *b) {
  if (!a || !b) return a == b;
  return a->kind == b->kind && a->type == b->type && a->lanes == b->lanes && a->op == b->op && a->id == b->id &&
         (a->kind != EX_FCONST || a->f == b->f) && (a->kind != EX_ICONST || a->i == b->i) && same_expr(a->a, b->a) &&
         same_expr(a->b, b->b) && same_expr(a->c, b->c);
}

/* Variables of one kernel bound to expressions of another. */
typedef struct Bind {
  int n;              /* variables of the pattern's kernel */
  const char *pat;    /* pat[v]: v is a pattern variable */
  const Expr **to;    /* what it is bound to, or NULL */
} Bind;

/* Matches pattern pat (over the pattern variables) against e, binding. */
static int unify(Bind *B, const Expr *pat, const Expr *e) {
  if (!pat || !e) return pat == e;
  if (pat->kind == EX_VAR && pat->id < B->n && B->pat[pat->id]) {
    if (e->type != pat->type || e->lanes != 1) return 0;
    if (B->to[pat->id]) return same_expr(B->to[pat->id], e);
    B->to[pat->id] = e;
    return 1;
  }
  if (pat->kind != e->kind || pat->type != e->type || pat->lanes != e->lanes || pat->op != e->op || pat->id != e->id ||
      (pat->kind == EX_FCONST && pat->f != e->f) || (pat->kind == EX_ICONST && pat->i != e->i))
    return 0;
  return unify(B, pat->a, e->a) && unify(B, pat->b, e->b) && unify(B, pat->c, e->c);
}

typedef struct Subst {
  const Bind *B;
  int buf;            /* loads of buf at index at ... */
  const Expr *at;
  int local;          /* ... become this local (or -1) */
  DType type;
  const int *locals;  /* local renames (or NULL), nlocals of them */
  int nlocals;
} Subst;

static Expr *subst_fn(void *ctx, Program *p, Expr *e) {
  const Subst *s = ctx;
  if (e->kind == EX_VAR && e->id < s->B->n && s->B->pat[e->id] && s->B->to[e->id]) return kir_clone_expr(p, s->B->to[e->id]);
  if (e->kind == EX_LOCAL && s->locals && e->id < s->nlocals) {
    Expr *c = kir_clone_expr(p, e);
    c->id = s->locals[e->id];
    return c;
  }
  return e;
}

/* Replaces loads of s->buf at s->at by the local (before substituting:
 * the index is matched as the consumer wrote it). */
static Expr *forward_fn(void *ctx, Program *p, Expr *e) {
  const Subst *s = ctx;
  if (e->kind == EX_LOAD && e->id == s->buf && !e->b && same_expr(e->a, s->at)) return kx_local(p, s->local, s->type);
  return e;
}

static void rename_stmts(Stmt *b, const int *locals, int n) {
  for (Stmt *s = b; s; s = s->next) {
    if ((s->kind == ST_LOCAL || s->kind == ST_ASSIGN) && s->id < n) s->id = locals[s->id];
    rename_stmts(s->body, locals, n);
    rename_stmts(s->orelse, locals, n);
  }
}

/* --- the schedule's view ------------------------------------------------------------- */

typedef struct Sig {
  int64_t *v;
  int n, cap;
} Sig;

static void sig_push(Sig *s, int64_t x) {
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->v = rt_xrealloc(s->v, sizeof(int64_t) * (size_t)s->cap);
    IR_ASSERT(s->v);
  }
  s->v[s->n++] = x;
}

typedef struct SigWalk {
  Sig *s;
  int reduce;         /* inside a reduction loop */
} SigWalk;

/* The vector fmas, and the vector loads of reductions: a product's
 * tiles.  What an epilogue adds in lanes where they store (a relu's
 * compare and select, the mask it loads) leaves the tiles as they were. */
static int sig_expr(void *ctx, const Expr *e) {
  const SigWalk *w = ctx;
  if (e->lanes > 1 && (e->kind == EX_FMA || (e->kind == EX_LOAD && w->reduce))) sig_push(w->s, -e->lanes);
  return 0;
}

static void sig_block(SigWalk *w, const Stmt *b) {
  KirVisitor v = {w, NULL, sig_expr};
  for (const Stmt *st = b; st; st = st->next) {
    if (st->kind == ST_LOOP) sig_push(w->s, 1000 + st->loop), sig_push(w->s, st->step), sig_push(w->s, st->width);
    if (st->extent) kir_walk_expr(&v, st->extent);
    if (st->index) kir_walk_expr(&v, st->index);
    if (st->value) kir_walk_expr(&v, st->value);
    int was = w->reduce;
    w->reduce |= st->kind == ST_LOOP && st->loop == LOOP_REDUCE;
    sig_block(w, st->body);
    w->reduce = was;
    sig_block(w, st->orelse);
  }
}

/* The loop structure the schedule turns k into (on a copy; whatever the
 * schedule adds to the program meanwhile is taken back). */
static Sig scheduled_form(Program *p, Func *f, const Kernel *k, int tiles) {
  int nbufs = p->nbufs;
  Func *prep = p->prepare;
  int nprep = prep ? prep->nkernels : 0;
  Kernel c = *k;
  c.body = kir_clone_block(p, k->body);
  SchedOpts o = {tiles};
  sched_kernel_opts(p, f, &c, &o);
  Sig s = {0};
  SigWalk w = {&s, 0};
  sig_block(&w, c.body);
  p->nbufs = nbufs;
  if (prep) prep->nkernels = nprep;
  else if (p->prepare) {
    rt_xfree(p->prepare->kernels);
    p->prepare = NULL;
  }
  return s;
}

/* Whether the schedule does to fused what it does to orig (a kernel the
 * schedule has no rule for is left as it is either way). */
static int schedule_agrees(const Fuse *F, Func *f, const Kernel *orig, const Kernel *fused) {
  if (orig->node < 0) return 1;
  Sig a = scheduled_form(F->p, f, orig, F->tiles), b = scheduled_form(F->p, f, fused, F->tiles);
  int ok = a.n == b.n && (a.n == 0 || !memcmp(a.v, b.v, sizeof(int64_t) * (size_t)a.n));
  rt_xfree(a.v);
  rt_xfree(b.v);
  return ok;
}

/* --- the producer's store ------------------------------------------------------------ */

typedef struct Store {
  Stmt **slot;        /* where the store is */
  Stmt *loops[32];    /* the loops around it, outermost first */
  int depth;
  int count;          /* stores into the buffer */
  int guarded;        /* one of them under an if */
} Store;

static void find_store(Stmt **slot, int buf, Store *s, Stmt **loops, int depth, int in_if) {
  for (; *slot; slot = &(*slot)->next) {
    Stmt *st = *slot;
    if (st->kind == ST_STORE && st->id == buf) {
      s->count++;
      s->guarded |= in_if;
      if (depth <= 32) s->slot = slot, s->depth = depth, memcpy(s->loops, loops, sizeof(Stmt *) * (size_t)depth);
    }
    if (st->kind == ST_LOOP && depth < 32) loops[depth] = st;
    if (st->body) find_store(&st->body, buf, s, loops, depth + (st->kind == ST_LOOP), in_if || st->kind == ST_IF);
    if (st->orelse) find_store(&st->orelse, buf, s, loops, depth, 1);
  }
}

static int loads_buf(const Expr *e, int buf) {
  if (!e) return 0;
  if (e->kind == EX_LOAD && e->id == buf) return 1;
  return loads_buf(e->a, buf) || loads_buf(e->b, buf) || loads_buf(e->c, buf);
}

typedef struct Find {
  int buf;
} Find;

static int find_load(void *ctx, const Expr *e) { return e->kind == EX_LOAD && e->id == ((const Find *)ctx)->buf; }

/* The single store of k into buf, writing each element once: s filled,
 * 0; else -1. */
static int single_store(Kernel *k, int buf, Store *s) {
  Stmt *loops[32];
  memset(s, 0, sizeof *s);
  find_store(&k->body, buf, s, loops, 0, 0);
  if (s->count != 1 || s->guarded || s->depth > 32) return -1;
  Stmt *st = *s->slot;
  if (st->value->lanes != 1) return -1;
  for (int i = 0; i < s->depth; i++)
    if (s->loops[i]->loop == LOOP_REDUCE || s->loops[i]->step != 1 || !kir_uses_var(st->index, s->loops[i]->id)) return -1;
  Find fd = {buf};
  KirVisitor v = {&fd, NULL, find_load};
  return kir_walk_block(&v, k->body) ? -1 : 0;
}

/* --- the pass ----------------------------------------------------------------------- */

/* Kernels that others find by their op stay as they are: a dist_mean or
 * dist_sum kernel is a copy that the code generators follow with a
 * collective on the buffer it stores (cg_collective), and the trainer
 * lays the gradients out in the order of those kernels. */
static int kept_whole(const Kernel *k) {
  return k->node >= 0 && (k->op == OP_DIST_MEAN || k->op == OP_DIST_SUM);
}

/* -- inline -- */

typedef struct Inline {
  Fuse *F;
  int buf;
  const Expr *X, *e;
  Bind B;
  const Stmt **loops;   /* of the producer, by variable */
  const Expr **ext;     /* the reader's loop extents, by variable */
  int nrvars;
  int flat, bare, ok;
} Inline;

static void reader_extents(const Stmt *b, const Expr **ext, int n) {
  for (const Stmt *s = b; s; s = s->next) {
    if (s->kind == ST_LOOP && s->id < n) ext[s->id] = s->step == 1 ? s->extent : NULL;
    reader_extents(s->body, ext, n);
    reader_extents(s->orelse, ext, n);
  }
}

/* Matches a load's index against X; each producer variable must be bound
 * to a reader variable over the same extent (or, for a flat producer,
 * to the whole index). */
static int bind_load(Inline *I, const Expr *idx) {
  memset(I->B.to, 0, sizeof(Expr *) * (size_t)I->B.n);
  if (!unify(&I->B, I->X, idx)) return 0;
  for (int v = 0; v < I->B.n; v++) {
    if (!I->B.pat[v]) continue;
    const Expr *t = I->B.to[v];
    if (!t) return 0;
    if (I->flat) continue;
    if (t->kind != EX_VAR || t->id >= I->nrvars || !I->ext[t->id] || !same_expr(I->ext[t->id], I->loops[v]->extent)) return 0;
  }
  return 1;
}

/* Every load of buf in b: not guarded, matched, and read once per
 * element unless e is a bare load. */
static int check_loads(Inline *I, const Expr *e, const int *around, int naround) {
  if (!e) return 1;
  if (e->kind == EX_LOAD && e->id == I->buf) {
    if (e->b || !bind_load(I, e->a)) return 0;
    for (int i = 0; i < naround && !I->bare; i++)
      if (!kir_uses_var(e->a, around[i])) return 0;
  }
  return check_loads(I, e->a, around, naround) && check_loads(I, e->b, around, naround) &&
         check_loads(I, e->c, around, naround);
}

static int check_block(Inline *I, const Stmt *b, int *around, int naround) {
  for (const Stmt *s = b; s; s = s->next) {
    if (!check_loads(I, s->index, around, naround) || !check_loads(I, s->value, around, naround) ||
        !check_loads(I, s->extent, around, naround))
      return 0;
    if (s->kind == ST_LOOP) {
      if (naround == 64) return 0;
      around[naround] = s->id;
      if (!check_block(I, s->body, around, naround + 1)) return 0;
    } else if (!check_block(I, s->body, around, naround) || !check_block(I, s->orelse, around, naround))
      return 0;
  }
  return 1;
}

static Expr *inline_fn(void *ctx, Program *p, Expr *e) {
  Inline *I = ctx;
  if (e->kind != EX_LOAD || e->id != I->buf) return e;
  int ok = bind_load(I, e->a);
  IR_ASSERT(ok);
  Subst s = {&I->B, -1, NULL, -1, DT_F32, NULL, 0};
  return kir_rewrite_expr(p, I->e, subst_fn, &s);
}

/* The producer's perfect nest: the loops, outermost first, and the store. */
static Stmt *perfect_nest(Kernel *k, const Stmt **byvar, int *depth) {
  Stmt *s = k->body;
  *depth = 0;
  while (s && !s->next && s->kind == ST_LOOP && s->step == 1 && s->loop != LOOP_REDUCE) {
    if (s->id >= k->nvars) return NULL;
    byvar[s->id] = s;
    ++*depth;
    s = s->body;
  }
  return s && !s->next && s->kind == ST_STORE && s->value->lanes == 1 && *depth > 0 ? s : NULL;
}

static int has_local(const Expr *e) {
  if (!e) return 0;
  return e->kind == EX_LOCAL || has_local(e->a) || has_local(e->b) || has_local(e->c);
}

static int try_inline(Fuse *F, int pi, int transposes) {
  Program *p = F->p;
  Func *f = F->f;
  Kernel *P = &f->kernels[pi];
  if (transposes && P->op != OP_TRANSPOSE) return 0;
  const Stmt **byvar = rt_xcalloc((size_t)P->nvars + 1, sizeof(Stmt *));
  IR_ASSERT(byvar);
  int depth, done = 0;
  Stmt *st = perfect_nest(P, byvar, &depth);
  int T = st ? st->id : -1;
  if (!st || kept_whole(P) || p->bufs[T].kind != BUF_TEMP || F->stores[T] != 1 || loads_buf(st->value, T) ||
      has_local(st->value) || loads_buf(st->index, T))
    goto out;
  /* the readers: every kernel loading T, all in f after P, in order */
  int readers[64];
  int nr = live(F, &F->rd[T], readers, 64);
  if (nr == 0 || nr > 64 || nr != F->loads[T]) goto out;
  qsort(readers, (size_t)nr, sizeof(int), by_int);
  if (readers[0] <= pi) goto out;
  KUse reads;
  kuse_expr(F, &reads, st->value);
  int bad = between_conflicts(F, pi, readers[nr - 1] + 1, &reads.ld, -1, NULL);
  kuse_free(&reads);
  if (bad) goto out;
  char *pat = rt_xcalloc((size_t)P->nvars + 1, 1);
  const Expr **to = rt_xcalloc((size_t)P->nvars + 1, sizeof(Expr *));
  IR_ASSERT(pat && to);
  for (int v = 0; v < P->nvars; v++) pat[v] = byvar[v] != NULL;
  Inline I = {F, T, st->index, st->value, {P->nvars, pat, to}, byvar, NULL, 0, depth == 1, st->value->kind == EX_LOAD && !st->value->b, 1};
  if (I.flat && !(st->index->kind == EX_VAR && byvar[st->index->id] == P->body)) I.ok = 0;
  Kernel *fused = rt_xcalloc((size_t)nr + 1, sizeof(Kernel));
  IR_ASSERT(fused);
  for (int r = 0; r < nr && I.ok; r++) {
    Kernel *C = &f->kernels[readers[r]];
    if (kept_whole(C) || (transposes && C->op != OP_MATMUL)) {
      I.ok = 0;
      break;
    }
    I.nrvars = C->nvars;
    I.ext = rt_xcalloc((size_t)C->nvars + 1, sizeof(Expr *));
    IR_ASSERT(I.ext);
    reader_extents(C->body, I.ext, C->nvars);
    int around[64];
    I.ok = check_block(&I, C->body, around, 0);
    if (I.ok) {
      fused[r] = *C;
      fused[r].body = kir_rewrite_block(p, C->body, inline_fn, &I);
      I.ok = schedule_agrees(F, f, C, &fused[r]);
    }
    rt_xfree(I.ext);
    I.ext = NULL;
  }
  if (I.ok) {
    for (int r = 0; r < nr; r++) {
      f->kernels[readers[r]] = fused[r];
      refresh_kernel(F, readers[r]);
    }
    remove_kernel(F, pi);
    F->inlined++;
    done = 1;
  }
  rt_xfree(fused);
  rt_xfree(pat);
  rt_xfree(to);
out:
  rt_xfree(byvar);
  return done;
}

/* -- epilogue -- */

/* Loads of T in e only at `at`, unguarded. */
static int reads_only_at(const Expr *e, int T, const Expr *at) {
  if (!e) return 1;
  if (e->kind == EX_LOAD && e->id == T) return !e->b && same_expr(e->a, at);
  return reads_only_at(e->a, T, at) && reads_only_at(e->b, T, at) && reads_only_at(e->c, T, at);
}

/* The consumer's form: locals, then a perfect nest whose innermost body
 * is locals, assignments and stores at one index; loops[] outermost
 * first; 0 or -1. */
typedef struct Consumer {
  Stmt *prelude;        /* the locals before the nest (up to the nest) */
  Stmt *loops[IR_MAX_RANK + 1];
  int depth;
  Stmt *body;
  const Expr *at;       /* the index every store uses */
} Consumer;

static int consumer_form(Kernel *C, int T, Consumer *c) {
  memset(c, 0, sizeof *c);
  Stmt *s = C->body;
  c->prelude = s;
  while (s && s->kind == ST_LOCAL && !s->count) {
    if (loads_buf(s->value, T)) return -1;
    s = s->next;
  }
  if (!s || s->kind != ST_LOOP || s->next) return -1;
  while (s && s->kind == ST_LOOP && !s->next && s->step == 1 && s->loop != LOOP_REDUCE && c->depth <= IR_MAX_RANK) {
    c->loops[c->depth++] = s;
    s = s->body;
  }
  if (!s || c->depth == 0 || c->depth > IR_MAX_RANK) return -1;
  c->body = s;
  int *declared = rt_xcalloc((size_t)C->nlocals + 1, sizeof(int)), ok = 1;
  IR_ASSERT(declared);
  for (; s && ok; s = s->next) {
    if (s->kind == ST_STORE) {
      if (s->value->lanes != 1 || (c->at && !same_expr(c->at, s->index)) || loads_buf(s->index, T)) ok = 0;
      c->at = s->index;
    } else if (s->kind == ST_LOCAL && !s->count && s->id < C->nlocals)
      declared[s->id] = 1;
    else if (s->kind != ST_ASSIGN || s->index || s->id >= C->nlocals || !declared[s->id])
      ok = 0; /* an assignment to a local from outside the element: a value carried from one to the next */
  }
  rt_xfree(declared);
  if (!ok || !c->at) return -1;
  /* what C stores it reads only at the element it stores */
  for (s = c->body; s; s = s->next)
    if (s->kind == ST_STORE)
      for (const Stmt *r = c->body; r; r = r->next)
        if (!reads_only_at(r->value, s->id, c->at)) return -1;
  return 0;
}

/* The element count of buffer b as the lowering writes a flat loop's
 * extent. */
static Expr *numel_expr(Program *p, const Buffer *b) {
  Expr *e = kx_i(p, 1);
  for (int i = 0; i < b->shape.rank; i++) e = kx_imul(p, e, kx_dim(p, b->shape.d[i]));
  return e;
}

static int epilogue_legal(Fuse *F, int pi, int ci, int T, const Consumer *c) {
  Program *p = F->p;
  for (const Stmt *s = c->body; s; s = s->next)
    if (!reads_only_at(s->value, T, c->at)) return 0;
  if (c->depth == 1 && !same_expr(c->loops[0]->extent, numel_expr(p, &p->bufs[T]))) return 0;
  const KUse *pu = &F->ku[pi], *cu = &F->ku[ci];
  int stamp = ++F->stamp;
  for (int i = 0; i < pu->ld.n; i++) F->seen_ld[pu->ld.v[i]] = stamp;
  for (int i = 0; i < pu->st.n; i++) F->seen_st[pu->st.v[i]] = stamp;
  for (int i = 0; i < cu->ld.n; i++)
    if (cu->ld.v[i] != T && F->seen_st[cu->ld.v[i]] == stamp) return 0;   /* C would read what P is still writing */
  for (int i = 0; i < cu->st.n; i++)
    if (cu->st.v[i] != T && (F->seen_ld[cu->st.v[i]] == stamp || F->seen_st[cu->st.v[i]] == stamp))
      return 0;   /* P would see C's writes */
  return !between_conflicts(F, pi, ci, &cu->ld, T, &cu->st);
}

/* C's body moved into k: T's element (at c->at) read from a new local
 * (*v) of type t, C's variables bound by B and its locals renamed after
 * k's; *pre gets C's prelude, likewise rewritten, for the top of k. */
static Stmt *moved_body(Fuse *F, Kernel *k, const Kernel *C, const Consumer *c, Bind *B, int T, DType t, int *v,
                        Stmt **pre) {
  Program *p = F->p;
  int *ren = rt_xcalloc((size_t)C->nlocals + 1, sizeof(int));
  IR_ASSERT(ren);
  for (int i = 0; i < C->nlocals; i++) ren[i] = k->nlocals + i;
  *v = k->nlocals + C->nlocals;
  k->nlocals = *v + 1;
  Subst fw = {B, T, c->at, *v, t, NULL, 0};
  Subst sb = {B, -1, NULL, -1, t, ren, C->nlocals};
  Stmt *body = kir_rewrite_block(p, kir_rewrite_block(p, c->body, forward_fn, &fw), subst_fn, &sb);
  rename_stmts(body, ren, C->nlocals);
  *pre = NULL;
  for (const Stmt *q = c->prelude; q && q != c->loops[0]; q = q->next) ks_append(pre, kir_clone_stmt(p, q));
  *pre = kir_rewrite_block(p, *pre, subst_fn, &sb);
  rename_stmts(*pre, ren, C->nlocals);
  rt_xfree(ren);
  return body;
}

static void prepend(Kernel *k, Stmt *pre) {
  if (!pre) return;
  ks_append(&pre, k->body);
  k->body = pre;
}

/* Rewrites P's store of T into: local v = value; C's body with
 * T's element read from v, C's variables bound and its locals renamed;
 * C's prelude goes to the top of P.  Returns the rewritten kernel. */
static Kernel epilogue_kernel(Fuse *F, const Kernel *P, const Kernel *C, const Consumer *c, const Store *ps, Bind *B) {
  Program *p = F->p;
  Kernel k = *P;
  k.body = kir_clone_block(p, P->body);
  Store s;
  int rc = single_store(&k, (*ps->slot)->id, &s);
  IR_ASSERT(rc == 0);
  Stmt *st = *s.slot, *pre;
  int v;
  Stmt *body = moved_body(F, &k, C, c, B, st->id, st->value->type, &v, &pre);
  Stmt *chain = ks_local(p, v, st->value->type, st->value);
  ks_append(&chain, body);
  ks_append(&chain, st->next);
  *s.slot = chain;
  prepend(&k, pre);
  return k;
}

/* Keeps the fused kernel k in place of P (pi) and drops C (ci), when the
 * schedule does to k what it did to P; 1 if so. */
static int keep_fusion(Fuse *F, int pi, int ci, Kernel *k) {
  Kernel *P = &F->f->kernels[pi];
  if (!schedule_agrees(F, F->f, P, k)) return 0;
  *P = *k;
  refresh_kernel(F, pi);
  F->group[pi] += F->group[ci];
  remove_kernel(F, ci);
  F->epilogues++;
  return 1;
}

/* Binds C's loop variables by matching its index against X: each to a
 * loop around P's store over the same extent, distinct (or, for a flat C,
 * to X itself). */
static int bind_consumer(const Consumer *c, const Store *ps, Bind *B) {
  if (!unify(B, c->at, (*ps->slot)->index)) return 0;
  for (int i = 0; i < c->depth; i++) {
    const Expr *t = B->to[c->loops[i]->id];
    if (!t) return 0;
    if (c->depth == 1) continue;
    int found = 0;
    for (int j = 0; j < ps->depth; j++)
      if (t->kind == EX_VAR && t->id == ps->loops[j]->id && same_expr(ps->loops[j]->extent, c->loops[i]->extent)) found = 1;
    for (int j = 0; j < i; j++)
      if (same_expr(B->to[c->loops[j]->id], t)) found = 0;
    if (!found) return 0;
  }
  return 1;
}

/* The most kernels of the lowering one fused kernel holds: a long
 * elementwise chain becomes kernels of this many steps (each rewrite
 * copies the producer, so an unbounded chain would cost quadratic time,
 * and one huge loop body helps neither the C compiler nor LLVM). */
enum { FUSE_MAX_GROUP = 16 };

static int try_epilogue_on(Fuse *F, int pi, int T) {
  Func *f = F->f;
  /* Only where T goes (C is its only reader): kept, it would be stored
   * anyway, and C's stores would become live across all of P (its
   * temporaries too), which can only grow the arena. */
  int ci = -1;
  if (F->loads[T] != 1 || live(F, &F->rd[T], &ci, 1) != 1) return 0;
  if (ci <= pi || F->group[pi] + F->group[ci] > FUSE_MAX_GROUP || kept_whole(&f->kernels[ci])) return 0;
  Kernel *P = &f->kernels[pi];
  Store ps;
  if (single_store(P, T, &ps)) return 0;
  Kernel *C = &f->kernels[ci];
  Consumer c;
  if (consumer_form(C, T, &c) || !epilogue_legal(F, pi, ci, T, &c)) return 0;
  char *pat = rt_xcalloc((size_t)C->nvars + 1, 1);
  const Expr **to = rt_xcalloc((size_t)C->nvars + 1, sizeof(Expr *));
  IR_ASSERT(pat && to);
  for (int i = 0; i < c.depth; i++) pat[c.loops[i]->id] = 1;
  Bind B = {C->nvars, pat, to};
  int done = 0;
  if (bind_consumer(&c, &ps, &B)) {
    Kernel k = epilogue_kernel(F, P, C, &c, &ps, &B);
    done = keep_fusion(F, pi, ci, &k);
  }
  rt_xfree(pat);
  rt_xfree(to);
  return done;
}

static int try_epilogue(Fuse *F, int pi) {
  Program *p = F->p;
  if (kept_whole(&F->f->kernels[pi])) return 0;
  const IntVec *st = &F->ku[pi].st;
  int n = 0, *cand = rt_xcalloc((size_t)st->n + 1, sizeof(int));
  IR_ASSERT(cand);
  for (int i = 0; i < st->n; i++)
    if (p->bufs[st->v[i]].kind == BUF_TEMP && F->stores[st->v[i]] == 1) cand[n++] = st->v[i];
  qsort(cand, (size_t)n, sizeof(int), by_int);   /* in buffer order, whatever order the body stores in */
  int done = 0;
  for (int i = 0; i < n && !done; i++) done = try_epilogue_on(F, pi, cand[i]);
  rt_xfree(cand);
  return done;
}

/* -- row epilogue -- */

/* A product that accumulates into its output T (a matmul as lowered:
 * the backward products dX = dY W, dW = dY^T X) stores T twice, so the
 * epilogue rule cannot take it.  Its form is
 *
 *   for r < R { for j < J { T[X] = init }  for kk < K reduce { ... T[X'] = T[X'] + ... } }
 *
 * and a row of T is done after the reduction: C (the epilogue rule's
 * consumer, T's only other reader) runs there, in a loop over the row,
 *
 *   for e < J { local v = T[X(j := e)]; C's body, T's element read from v }
 *
 * (a gradient's relu mask).  T is still stored, and the schedule's register
 * tiles (row_form) apply that loop's body to their accumulators instead of
 * storing them; the rewrite is kept only when they do (schedule_agrees). */
typedef struct VarTo {
  int from, to;
} VarTo;

static Expr *var_to_fn(void *ctx, Program *p, Expr *e) {
  const VarTo *v = ctx;
  return e->kind == EX_VAR && e->id == v->from ? kx_var(p, v->to) : e;
}

static Stmt *row_product(const Kernel *P, int T) {
  Stmt *rl = P->body, *jl = rl && rl->kind == ST_LOOP && !rl->next ? rl->body : NULL;
  Stmt *kl = jl && jl->kind == ST_LOOP ? jl->next : NULL;
  if (!kl || kl->kind != ST_LOOP || kl->loop != LOOP_REDUCE || kl->next || !jl->body || jl->body->next ||
      jl->body->kind != ST_STORE || jl->body->id != T || jl->step != 1)
    return NULL;
  return rl;
}

static int try_row_epilogue_on(Fuse *F, int pi, int T) {
  Program *p = F->p;
  Func *f = F->f;
  int rd[2];
  if (F->loads[T] != 2 || F->stores[T] != 1 || live(F, &F->rd[T], rd, 2) != 2) return 0;
  int ci = rd[0] == pi ? rd[1] : rd[1] == pi ? rd[0] : -1;
  if (ci <= pi || F->group[pi] + F->group[ci] > FUSE_MAX_GROUP || kept_whole(&f->kernels[ci])) return 0;
  Kernel *P = &f->kernels[pi], *C = &f->kernels[ci];
  if (!row_product(P, T)) return 0;
  Consumer c;
  if (consumer_form(C, T, &c) || !epilogue_legal(F, pi, ci, T, &c)) return 0;
  Kernel k = *P;
  k.body = kir_clone_block(p, P->body);
  Stmt *rl = k.body, *jl = rl->body;
  int e = k.nvars++;
  Stmt *el = ks_loop(p, e, kir_clone_expr(p, jl->extent), NULL);
  VarTo vt = {jl->id, e};
  Stmt *pos = ks_store(p, T, kir_rewrite_expr(p, jl->body->index, var_to_fn, &vt), kx_f(p, 0));
  el->body = pos;
  Store ps = {&el->body, {rl, el}, 2, 1, 0};
  char *pat = rt_xcalloc((size_t)C->nvars + 1, 1);
  const Expr **to = rt_xcalloc((size_t)C->nvars + 1, sizeof(Expr *));
  IR_ASSERT(pat && to);
  for (int i = 0; i < c.depth; i++) pat[c.loops[i]->id] = 1;
  Bind B = {C->nvars, pat, to};
  int done = 0;
  if (bind_consumer(&c, &ps, &B)) {
    Stmt *pre;
    int v;
    Stmt *body = moved_body(F, &k, C, &c, &B, T, DT_F32, &v, &pre);
    Stmt *chain = ks_local(p, v, DT_F32, kx_load(p, T, pos->index));
    ks_append(&chain, body);
    el->body = chain;
    jl->next->next = el;
    prepend(&k, pre);
    done = keep_fusion(F, pi, ci, &k);
  }
  rt_xfree(pat);
  rt_xfree(to);
  return done;
}

static int try_row_epilogue(Fuse *F, int pi) {
  Program *p = F->p;
  const Kernel *P = &F->f->kernels[pi];
  if (kept_whole(P) || !P->body || P->body->kind != ST_LOOP || !P->body->body || P->body->body->kind != ST_LOOP ||
      !P->body->body->body || P->body->body->body->kind != ST_STORE)
    return 0;
  int T = P->body->body->body->id;
  return p->bufs[T].kind == BUF_TEMP && try_row_epilogue_on(F, pi, T);
}

/* The inline rule is off but for transposes into the matrix products
 * that read them (the backward products dW = dY^T X read dY where it is:
 * the tiles broadcast A's elements, and MR rows of dY^T are MR
 * neighbouring elements of a row of dY): with it on everywhere, the C
 * backend's gradients of a model with batch norm
 * (tests/fixtures/grads_mode/bnnet.dl, dlc run --grads --backend=c) come
 * out wrong while keval and the JIT compute the same program right. */
static const int inline_on = 0;

static void fuse_func(Fuse *F, Func *f) {
  F->f = f;
  int n = f->nkernels;
  F->ku = rt_xcalloc((size_t)n + 1, sizeof(KUse));
  F->dead = rt_xcalloc((size_t)n + 1, 1);
  F->group = rt_xcalloc((size_t)n + 1, sizeof(int));
  F->rd = rt_xcalloc((size_t)F->nbufs + 1, sizeof(IntVec));
  F->wr = rt_xcalloc((size_t)F->nbufs + 1, sizeof(IntVec));
  IR_ASSERT(F->ku && F->dead && F->group && F->rd && F->wr);
  for (int i = 0; i < n; i++) {
    F->group[i] = 1;
    kuse_block(F, &F->ku[i], f->kernels[i].body);
    list_kernel(F, i);
  }
  for (int i = 0; i < n;) {
    if (F->dead[i]) {
      i++;
      continue;
    }
    if (try_inline(F, i, !inline_on)) {
      while (i > 0 && F->dead[--i]) {}   /* the kernel before may now fuse with what replaced this one */
      continue;
    }
    if (try_epilogue(F, i) || try_row_epilogue(F, i)) continue;   /* the fused kernel may take the next one too */
    i++;
  }
  int m = 0;
  for (int i = 0; i < n; i++)
    if (!F->dead[i]) f->kernels[m++] = f->kernels[i];
  f->nkernels = m;
  for (int i = 0; i < n; i++) kuse_free(&F->ku[i]);
  for (int b = 0; b < F->nbufs; b++) rt_xfree(F->rd[b].v), rt_xfree(F->wr[b].v);
  rt_xfree(F->ku), rt_xfree(F->dead), rt_xfree(F->group), rt_xfree(F->rd), rt_xfree(F->wr);
}

int pass_fuse(Program *p) { return pass_fuse_tiles(p, 1); }

int pass_fuse_tiles(Program *p, int tiles) {
  Fuse F = {0};
  F.p = p;
  F.tiles = tiles;
  F.nbufs = p->nbufs;
  size_t n = (size_t)p->nbufs + 1;
  F.loads = rt_xcalloc(n, sizeof(int));
  F.stores = rt_xcalloc(n, sizeof(int));
  F.seen_ld = rt_xcalloc(n, sizeof(int));
  F.seen_st = rt_xcalloc(n, sizeof(int));
  IR_ASSERT(F.loads && F.stores && F.seen_ld && F.seen_st);
  for (int i = 0; i < p->nfuncs; i++)
    for (int j = 0; j < p->funcs[i].nkernels; j++) count_kernel(&F, &p->funcs[i].kernels[j]);
  for (int j = 0; p->prepare && j < p->prepare->nkernels; j++) count_kernel(&F, &p->prepare->kernels[j]);
  for (int i = 0; i < p->nfuncs; i++) fuse_func(&F, &p->funcs[i]);
  rt_xfree(F.loads), rt_xfree(F.stores), rt_xfree(F.seen_ld), rt_xfree(F.seen_st);
  return F.inlined + F.epilogues;
}

/* Step "fuse" (off with --no-fuse or -O0). */
int pass_fuse_step(PassCtx *c) {
  if (c->o->no_fuse) return 0;
  pass_fuse_tiles(c->prog, !c->o->no_tiles);
  return 0;
}
