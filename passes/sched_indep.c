/*
 * sched_indep.c — the schedule step's last rule (schedule.c): a loop at
 * the top of a kernel whose iterations the kernel as scheduled shows
 * independent is marked parallel.
 */
#include <stdlib.h>
#include <string.h>

#include "passes/schedule.h"

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

void sched_mark_independent(Program *p, Kernel *k) {
  for (Stmt *s = k->body; s; s = s->next)
    if (s->kind == ST_LOOP && s->loop == LOOP_SERIAL && s->step >= 1 &&
        (independent_loop(p, k, s, NULL) || independent_with_copies(p, k, s) || independent_with_captures(p, k, s)))
      sched_mark(s, LOOP_PARALLEL);
}
