/*
 * kwalk.c — the one traversal of the kernel IR: walks for analyses,
 * copies and bottom-up rewrites for transformations (see kernel.h).
 *
 * Every other module that needs to look at every statement or expression
 * (the emitters' "which buffers, helpers, locals does this use", the
 * memory planner's live ranges, the schedule's rules) goes through these
 * functions, so a new construct is taught to the traversal here once.
 * The child slots of a node are listed in one place each (expr_kids,
 * stmt_exprs): walks, copies and rewrites all read those lists.  Copies
 * and rewrites allocate in the program's arena and never modify the
 * original, so a rule can build a candidate and drop it.
 */
#include "ir/kernel.h"

/* The operand slots of an expression, in evaluation order. */
static int expr_kids(Expr *e, Expr **out[3]) {
  int n = 0;
  if (e->a) out[n++] = &e->a;
  if (e->b) out[n++] = &e->b;
  if (e->c) out[n++] = &e->c;
  return n;
}

/* The expression slots of a statement, in evaluation order. */
static int stmt_exprs(Stmt *s, Expr **out[3]) {
  int n = 0;
  if (s->extent) out[n++] = &s->extent;
  if (s->index) out[n++] = &s->index;
  if (s->value) out[n++] = &s->value;
  return n;
}

int kir_walk_expr(const KirVisitor *v, const Expr *e) {
  if (!e) return 0;
  int r = v->expr ? v->expr(v->ctx, e) : 0;
  Expr **slot[3];
  int n = expr_kids((Expr *)e, slot);
  for (int i = 0; i < n && !r; i++) r = kir_walk_expr(v, *slot[i]);
  return r;
}

static int walk_stmt(const KirVisitor *v, const Stmt *s) {
  int r = v->stmt ? v->stmt(v->ctx, s) : 0;
  Expr **slots[3];
  int n = stmt_exprs((Stmt *)s, slots);
  for (int i = 0; i < n && !r; i++) r = kir_walk_expr(v, *slots[i]);
  if (!r) r = kir_walk_block(v, s->body);
  if (!r) r = kir_walk_block(v, s->orelse);
  return r;
}

int kir_walk_block(const KirVisitor *v, const Stmt *block) {
  int r = 0;
  for (const Stmt *s = block; s && !r; s = s->next) r = walk_stmt(v, s);
  return r;
}

static int walk_func(const KirVisitor *v, const Func *f) {
  int r = 0;
  for (int k = 0; k < f->nkernels && !r; k++) r = kir_walk_block(v, f->kernels[k].body);
  return r;
}

int kir_walk_program(const KirVisitor *v, const Program *p) {
  int r = 0;
  for (int f = 0; f < p->nfuncs && !r; f++) r = walk_func(v, &p->funcs[f]);
  return r || !p->prepare ? r : walk_func(v, p->prepare);
}

typedef struct BufUse {
  char *loaded, *stored;
} BufUse;

static int buf_stmt(void *ctx, const Stmt *s) {
  BufUse *u = ctx;
  if (s->kind == ST_STORE && u->stored) u->stored[s->id] = 1;
  return 0;
}

static int buf_expr(void *ctx, const Expr *e) {
  BufUse *u = ctx;
  if (e->kind == EX_LOAD && u->loaded) u->loaded[e->id] = 1;
  return 0;
}

void kir_block_buffers(const Stmt *block, char *loaded, char *stored) {
  BufUse u = {loaded, stored};
  KirVisitor v = {&u, buf_stmt, buf_expr};
  kir_walk_block(&v, block);
}

/* --- rewriting ------------------------------------------------------------ */

Expr *kir_rewrite_expr(Program *p, const Expr *e, KirExprFn fn, void *ctx) {
  if (!e) return NULL;
  Expr *c = arena_alloc(&p->arena, sizeof *c);
  *c = *e;
  Expr **slot[3];
  int n = expr_kids(c, slot);
  for (int i = 0; i < n; i++) *slot[i] = kir_rewrite_expr(p, *slot[i], fn, ctx);
  return fn ? fn(ctx, p, c) : c;
}

static Stmt *rewrite_stmt(Program *p, const Stmt *s, KirExprFn fn, void *ctx) {
  Stmt *c = arena_alloc(&p->arena, sizeof *c);
  *c = *s;
  c->next = NULL;
  Expr **slots[3];
  int n = stmt_exprs(c, slots);
  for (int i = 0; i < n; i++) *slots[i] = kir_rewrite_expr(p, *slots[i], fn, ctx);
  c->body = kir_rewrite_block(p, s->body, fn, ctx);
  c->orelse = kir_rewrite_block(p, s->orelse, fn, ctx);
  return c;
}

Stmt *kir_rewrite_block(Program *p, const Stmt *block, KirExprFn fn, void *ctx) {
  Stmt *head = NULL, **tail = &head;
  for (const Stmt *s = block; s; s = s->next) {
    *tail = rewrite_stmt(p, s, fn, ctx);
    tail = &(*tail)->next;
  }
  return head;
}

Expr *kir_clone_expr(Program *p, const Expr *e) { return kir_rewrite_expr(p, e, NULL, NULL); }
Stmt *kir_clone_block(Program *p, const Stmt *block) { return kir_rewrite_block(p, block, NULL, NULL); }
Stmt *kir_clone_stmt(Program *p, const Stmt *s) { return rewrite_stmt(p, s, NULL, NULL); }

typedef struct Subst {
  int var;
  Expr *by;
} Subst;

static Expr *subst_var(void *ctx, Program *p, Expr *e) {
  (void)p;
  const Subst *s = ctx;
  return e->kind == EX_VAR && e->id == s->var ? s->by : e;
}

int kir_uses_var(const Expr *e, int var) {
  return e && ((e->kind == EX_VAR && e->id == var) || kir_uses_var(e->a, var) || kir_uses_var(e->b, var) ||
               kir_uses_var(e->c, var));
}

Expr *kir_subst_expr(Program *p, const Expr *e, int var, Expr *by) {
  Subst s = {var, by};
  return kir_rewrite_expr(p, e, subst_var, &s);
}

Stmt *kir_subst_block(Program *p, const Stmt *block, int var, Expr *by) {
  Subst s = {var, by};
  return kir_rewrite_block(p, block, subst_var, &s);
}
