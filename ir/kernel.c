/*
 * kernel.c — building the loop-level IR (see kernel.h).
 *
 * The index helpers fold constants as they build (x * 1 = x, x + 0 = 0 + x
 * = x, constant * constant), so the lowered code and its printed C stay
 * close to what a person would write, without a separate simplifier.
 * Every expression builder checks kernel.h's typing rules as it builds
 * (an operator's operand types, bool conditions, a store's value against
 * its buffer) and stops with an internal error naming the line on a
 * mismatch: a lowering that would mean something else than it says fails
 * where it builds the expression, not later as wrong numbers.
 *
 * Derived buffers (kir_derived) are found by their (source, layout) pair,
 * so each is made once however many kernels read it; the kernel that fills
 * one goes into p->prepare, a Func kept apart from the entry points and
 * allocated with the program (its address never moves while passes hold
 * pointers into p->funcs).
 */
#include <stdlib.h>
#include <string.h>

#include "ir/kernel.h"

#define GROW(arr, n, cap)                                                   \
  do {                                                                     \
    if ((n) == (cap)) {                                                    \
      (cap) = (cap) ? (cap) * 2 : 16;                                      \
      (arr) = rt_xrealloc((arr), (size_t)(cap) * sizeof *(arr));               \
    }                                                                      \
  } while (0)

void kir_program_init(Program *p, const Graph *g) {
  memset(p, 0, sizeof *p);
  arena_init(&p->arena);
  p->g = g;
  p->name = g->name;
}

void kir_program_free(Program *p) {
  for (int i = 0; i < p->nfuncs; i++) rt_xfree(p->funcs[i].kernels);
  if (p->prepare) rt_xfree(p->prepare->kernels);
  rt_xfree(p->funcs);
  rt_xfree(p->bufs);
  arena_free(&p->arena);
  memset(p, 0, sizeof *p);
}

int kir_buffer(Program *p, BufKind kind, DType dt, const char *name, const Shape *s, int node) {
  IR_ASSERT(dt >= 0 && dt < DT_COUNT); /* a storage type: never bool */
  GROW(p->bufs, p->nbufs, p->bcap);
  Buffer *b = &p->bufs[p->nbufs];
  memset(b, 0, sizeof *b);
  b->kind = kind;
  b->dtype = dt;
  b->name = arena_strdup(&p->arena, name);
  b->shape = *s;
  b->size = ir_numel_max(p->g, s);
  b->node = node;
  b->arg = -1;
  b->src = -1;
  return p->nbufs++;
}

Func *kir_func(Program *p, const char *name, const Graph *g) {
  GROW(p->funcs, p->nfuncs, p->fcap);
  Func *f = &p->funcs[p->nfuncs++];
  memset(f, 0, sizeof *f);
  f->name = arena_strdup(&p->arena, name);
  f->g = g;
  return f;
}

Kernel *kir_kernel(Program *p, Func *f, const char *what, SrcLoc loc) {
  GROW(f->kernels, f->nkernels, f->kcap);
  Kernel *k = &f->kernels[f->nkernels++];
  memset(k, 0, sizeof *k);
  k->what = arena_strdup(&p->arena, what);
  k->loc = loc;
  k->node = k->op = -1;
  return k;
}

static Func *prepare_func(Program *p) {
  if (!p->prepare) {
    p->prepare = arena_alloc(&p->arena, sizeof *p->prepare);
    memset(p->prepare, 0, sizeof *p->prepare);
    p->prepare->name = "prepare";
    p->prepare->g = p->g;
  }
  return p->prepare;
}

/* dst[c, r] = src[r, c] for a [R, C] source. */
static int derive_transposed(Program *p, int src) {
  Shape s = p->bufs[src].shape;
  if (s.rank != 2 || DIM_IS_SYM(s.d[0]) || DIM_IS_SYM(s.d[1])) return -1;
  Shape t = {2, {s.d[1], s.d[0]}};
  const char *name = p->bufs[src].name;
  int b = kir_buffer(p, BUF_DERIVED, p->bufs[src].dtype, arena_printf(&p->arena, "%s.T", name), &t, -1);
  p->bufs[b].src = src;
  p->bufs[b].layout = DL_TRANSPOSED;
  Kernel *k = kir_kernel(p, prepare_func(p), arena_printf(&p->arena, "transpose %s", name), (SrcLoc){0});
  int r = k->nvars++, c = k->nvars++;
  Expr *from = kx_iadd(p, kx_imul(p, kx_var(p, r), kx_i(p, s.d[1])), kx_var(p, c));
  Expr *to = kx_iadd(p, kx_imul(p, kx_var(p, c), kx_i(p, s.d[0])), kx_var(p, r));
  k->body = ks_loop(p, r, kx_i(p, s.d[0]), ks_loop(p, c, kx_i(p, s.d[1]), ks_store(p, b, to, kx_load(p, src, from))));
  return b;
}

/* Rows r0 .. r0 + w - 1 of the [R, C] source as one panel at r0 * C:
 * dst[r0 * C + c * w + r] = src[(r0 + r) * C + c], for panels q < np of
 * w rows each (r0 = q * w) or, with np = 0, the one panel at r0. */
static Stmt *panel_nest(Program *p, Kernel *k, int dst, int src, int64_t C, int64_t r0, int64_t w, int64_t np) {
  int q = k->nvars++, c = k->nvars++, r = k->nvars++;
  Expr *row0 = np ? kx_imul(p, kx_var(p, q), kx_i(p, w)) : kx_i(p, r0);
  Expr *from = kx_iadd(p, kx_imul(p, kx_iadd(p, row0, kx_var(p, r)), kx_i(p, C)), kx_var(p, c));
  Expr *to = kx_iadd(p, kx_imul(p, kir_clone_expr(p, row0), kx_i(p, C)),
                     kx_iadd(p, kx_imul(p, kx_var(p, c), kx_i(p, w)), kx_var(p, r)));
  Stmt *s = ks_loop(p, c, kx_i(p, C), ks_loop(p, r, kx_i(p, w), ks_store(p, dst, to, kx_load(p, src, from))));
  return ks_loop(p, q, kx_i(p, np ? np : 1), s);
}

int kir_derived_panels(Program *p, int src, int64_t nr) {
  if (src < 0 || src >= p->nbufs || (p->bufs[src].kind != BUF_PARAM && p->bufs[src].kind != BUF_STATE) || nr < 1)
    return -1;
  Shape s = p->bufs[src].shape;
  if (s.rank != 2 || DIM_IS_SYM(s.d[0]) || DIM_IS_SYM(s.d[1])) return -1;
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b].kind == BUF_DERIVED && p->bufs[b].src == src && p->bufs[b].layout == DL_PANELS &&
        p->bufs[b].panel == nr)
      return b;
  const char *name = p->bufs[src].name;
  int64_t R = s.d[0], C = s.d[1], whole = R / nr;
  int b = kir_buffer(p, BUF_DERIVED, p->bufs[src].dtype, arena_printf(&p->arena, "%s.panels%lld", name, (long long)nr),
                     &s, -1);
  p->bufs[b].src = src;
  p->bufs[b].layout = DL_PANELS;
  p->bufs[b].panel = nr;
  Kernel *k = kir_kernel(p, prepare_func(p), arena_printf(&p->arena, "panels of %s", name), (SrcLoc){0});
  Stmt *body = whole ? panel_nest(p, k, b, src, C, 0, nr, whole) : NULL;
  if (R > whole * nr) ks_append(&body, panel_nest(p, k, b, src, C, whole * nr, R - whole * nr, 0));
  k->body = body;
  return b;
}

int kir_derived(Program *p, int src, DerivedLayout layout) {
  if (src < 0 || src >= p->nbufs || (p->bufs[src].kind != BUF_PARAM && p->bufs[src].kind != BUF_STATE)) return -1;
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b].kind == BUF_DERIVED && p->bufs[b].src == src && p->bufs[b].layout == layout) return b;
  switch (layout) {
  case DL_TRANSPOSED: return derive_transposed(p, src);
  case DL_PANELS: return -1; /* kir_derived_panels: needs the panel's rows */
  }
  return -1;
}

static Expr *ex(Program *p, ExprKind kind, DType t) {
  Expr *e = arena_alloc(&p->arena, sizeof *e);
  e->kind = kind;
  e->type = t;
  e->lanes = 1;
  return e;
}

int kir_is_float(DType t) { return t == DT_F32 || t == DT_F64; }
int kir_is_int(DType t) { return t == DT_I32 || t == DT_I64 || t == DT_U8; }
int kir_is_compare(BinOp op) { return op >= BIN_LT && op <= BIN_NE; }
int kir_is_logic(BinOp op) { return op == BIN_AND || op == BIN_OR; }

/* A type that arithmetic takes: f32, f64, i32, i64. */
static int is_arith(DType t) { return kir_is_float(t) || t == DT_I32 || t == DT_I64; }

Expr *kx_fconst(Program *p, DType t, double v) {
  IR_ASSERT(kir_is_float(t));
  Expr *e = ex(p, EX_FCONST, t);
  e->f = v;
  return e;
}

Expr *kx_f(Program *p, double v) { return kx_fconst(p, DT_F32, v); }

Expr *kx_iconst(Program *p, DType t, int64_t v) {
  IR_ASSERT(t == DT_I64 || (t == DT_I32 && v >= INT32_MIN && v <= INT32_MAX) || (t == DT_U8 && v >= 0 && v <= 255) ||
            (t == DT_BOOL && (v == 0 || v == 1)));
  Expr *e = ex(p, EX_ICONST, t);
  e->i = v;
  return e;
}

Expr *kx_i(Program *p, int64_t v) { return kx_iconst(p, DT_I64, v); }
Expr *kx_bool(Program *p, int v) { return kx_iconst(p, DT_BOOL, v != 0); }

Expr *kx_var(Program *p, int var) {
  Expr *e = ex(p, EX_VAR, DT_I64);
  e->id = var;
  return e;
}

Expr *kx_sym(Program *p, int sym) {
  Expr *e = ex(p, EX_SYM, DT_I64);
  e->id = sym;
  return e;
}

Expr *kx_local(Program *p, int local, DType t) {
  Expr *e = ex(p, EX_LOCAL, t);
  e->id = local;
  return e;
}

Expr *kx_load(Program *p, int buf, Expr *index) {
  IR_ASSERT(buf >= 0 && buf < p->nbufs && index->type == DT_I64 && index->lanes == 1);
  Expr *e = ex(p, EX_LOAD, p->bufs[buf].dtype);
  e->id = buf;
  e->a = index;
  return e;
}

Expr *kx_load_guarded(Program *p, int buf, Expr *index, Expr *guard, Expr *otherwise) {
  Expr *e = kx_load(p, buf, index);
  if (!otherwise) otherwise = kir_is_float(e->type) ? kx_fconst(p, e->type, 0) : kx_iconst(p, e->type, 0);
  IR_ASSERT(guard->type == DT_BOOL && guard->lanes == 1 && otherwise->type == e->type && otherwise->lanes == 1);
  e->b = guard;
  e->c = otherwise;
  return e;
}

Expr *kx_un(Program *p, UnOp op, Expr *a) {
  IR_ASSERT(op == UN_NEG ? is_arith(a->type) : kir_is_float(a->type));
  Expr *e = ex(p, EX_UNARY, a->type);
  e->lanes = a->lanes;
  e->op = op;
  e->a = a;
  return e;
}

DType kir_binop_type(BinOp op, DType t) {
  switch (op) {
  case BIN_ADD: case BIN_SUB: case BIN_MUL: case BIN_DIV: case BIN_MAX: case BIN_MIN:
    return is_arith(t) ? t : DT_COUNT;
  case BIN_MOD: return t == DT_I32 || t == DT_I64 ? t : DT_COUNT;
  case BIN_POW: return kir_is_float(t) ? t : DT_COUNT;
  case BIN_LT: case BIN_LE: case BIN_GT: case BIN_GE: return is_arith(t) ? DT_BOOL : DT_COUNT;
  case BIN_EQ: case BIN_NE: return DT_BOOL;
  case BIN_AND: case BIN_OR: return t == DT_BOOL ? DT_BOOL : DT_COUNT;
  }
  return DT_COUNT;
}

Expr *kx_bin(Program *p, BinOp op, Expr *a, Expr *b) {
  DType t = kir_binop_type(op, a->type);
  IR_ASSERT(a->type == b->type && t != DT_COUNT && a->lanes == b->lanes);
  Expr *e = ex(p, EX_BINARY, t);
  e->lanes = a->lanes;
  e->op = op;
  e->a = a;
  e->b = b;
  return e;
}

Expr *kx_select(Program *p, Expr *cond, Expr *a, Expr *b) {
  IR_ASSERT(cond->type == DT_BOOL && a->type == b->type && cond->lanes == a->lanes && a->lanes == b->lanes);
  Expr *e = ex(p, EX_SELECT, a->type);
  e->lanes = a->lanes;
  e->a = cond;
  e->b = a;
  e->c = b;
  return e;
}

Expr *kx_cast(Program *p, DType t, Expr *a) {
  IR_ASSERT(t != DT_BOOL && (kir_is_float(t) || kir_is_int(t)));
  if (a->type == t) return a;
  Expr *e = ex(p, EX_CAST, t);
  e->lanes = a->lanes;
  e->a = a;
  return e;
}

Expr *kx_rand(Program *p, uint64_t key, Expr *counter) {
  IR_ASSERT(counter->type == DT_I64 && counter->lanes == 1);
  Expr *e = ex(p, EX_RAND, DT_F32);
  e->i = (int64_t)key;
  e->a = counter;
  return e;
}

const char *kir_unop_spelling(UnOp op, KirSpelling how) {
  switch (op) {
  case UN_NEG: return "-";
  case UN_EXP: return "exp";
  case UN_LOG: return "log";
  case UN_SQRT: return "sqrt";
  case UN_TANH: return "tanh";
  case UN_ABS: return how == KIR_SPELL_LIBM ? "fabs" : "abs";
  case UN_LOG1P: return "log1p";
  case UN_EXPM1: return "expm1";
  case UN_ERF: return "erf";
  case UN_ERFC: return "erfc";
  case UN_COS: return "cos";
  case UN_SIN: return "sin";
  case UN_TAN: return "tan";
  case UN_ASIN: return "asin";
  case UN_ACOS: return "acos";
  case UN_ATAN: return "atan";
  case UN_FLOOR: return "floor";
  case UN_CEIL: return "ceil";
  case UN_RINT: return "rint";
  }
  return "?";
}

const char *kir_unop_name(UnOp op) { return kir_unop_spelling(op, KIR_SPELL_DUMP); }

Expr *kx_fma(Program *p, Expr *a, Expr *b, Expr *c) {
  IR_ASSERT(kir_is_float(a->type) && a->type == b->type && b->type == c->type && a->lanes == b->lanes &&
            b->lanes == c->lanes);
  Expr *e = ex(p, EX_FMA, a->type);
  e->lanes = a->lanes;
  e->a = a;
  e->b = b;
  e->c = c;
  return e;
}

int kir_lanes_ok(int n) { return n >= 1 && n <= KIR_MAX_LANES && (n & (n - 1)) == 0; }

Expr *kx_load_lanes(Program *p, int buf, Expr *index, int n) {
  IR_ASSERT(kir_lanes_ok(n));
  Expr *e = kx_load(p, buf, index);
  e->lanes = n;
  return e;
}

Expr *kx_broadcast(Program *p, Expr *a, int n) {
  IR_ASSERT(kir_lanes_ok(n) && a->lanes == 1);
  if (n == 1) return a;
  Expr *e = ex(p, EX_BROADCAST, a->type);
  e->lanes = n;
  e->a = a;
  return e;
}

Expr *kx_reduce(Program *p, BinOp op, Expr *a) {
  IR_ASSERT(op == BIN_ADD && kir_binop_type(op, a->type) == a->type);
  if (a->lanes == 1) return a;
  Expr *e = ex(p, EX_REDUCE, a->type);
  e->op = op;
  e->a = a;
  return e;
}

Expr *kx_zip(Program *p, Expr *a, Expr *b, int op) {
  IR_ASSERT(a->type == b->type && a->lanes == b->lanes && a->lanes > 1 && op >= 0 && op <= 3);
  Expr *e = ex(p, EX_ZIP, a->type);
  e->lanes = a->lanes;
  e->op = op;
  e->a = a;
  e->b = b;
  return e;
}

Expr *kx_vlocal(Program *p, int local, DType t, int n) {
  IR_ASSERT(kir_lanes_ok(n));
  Expr *e = kx_local(p, local, t);
  e->lanes = n;
  return e;
}

Expr *kx_iadd(Program *p, Expr *a, Expr *b) {
  if (a->kind == EX_ICONST && b->kind == EX_ICONST && a->type == DT_I64 && b->type == DT_I64) return kx_i(p, a->i + b->i);
  if (a->kind == EX_ICONST && a->i == 0 && a->type == b->type) return b;
  if (b->kind == EX_ICONST && b->i == 0 && a->type == b->type) return a;
  return kx_bin(p, BIN_ADD, a, b);
}

Expr *kx_imul(Program *p, Expr *a, Expr *b) {
  if (a->kind == EX_ICONST && b->kind == EX_ICONST && a->type == DT_I64 && b->type == DT_I64) return kx_i(p, a->i * b->i);
  if (a->type == b->type && ((a->kind == EX_ICONST && a->i == 0) || (b->kind == EX_ICONST && b->i == 0))) return kx_iconst(p, a->type, 0);
  if (a->kind == EX_ICONST && a->i == 1 && a->type == b->type) return b;
  if (b->kind == EX_ICONST && b->i == 1 && a->type == b->type) return a;
  return kx_bin(p, BIN_MUL, a, b);
}

Expr *kx_dim(Program *p, Dim d) { return DIM_IS_SYM(d) ? kx_sym(p, DIM_SYM_ID(d)) : kx_i(p, d); }

static Stmt *st(Program *p, StmtKind kind) {
  Stmt *s = arena_alloc(&p->arena, sizeof *s);
  s->kind = kind;
  return s;
}

Stmt *ks_loop(Program *p, int var, Expr *extent, Stmt *body) {
  IR_ASSERT(extent->type == DT_I64 && extent->lanes == 1);
  Stmt *s = st(p, ST_LOOP);
  s->loop = LOOP_SERIAL;
  s->axis = var;
  s->step = 1;
  s->width = 1;
  s->id = var;
  s->extent = extent;
  s->body = body;
  return s;
}

Stmt *ks_store(Program *p, int buf, Expr *index, Expr *value) {
  IR_ASSERT(buf >= 0 && buf < p->nbufs && index->type == DT_I64 && index->lanes == 1 && value->type == p->bufs[buf].dtype);
  Stmt *s = st(p, ST_STORE);
  s->id = buf;
  s->index = index;
  s->value = value;
  return s;
}

Stmt *ks_local(Program *p, int local, DType t, Expr *value) {
  IR_ASSERT(value->type == t);
  Stmt *s = st(p, ST_LOCAL);
  s->id = local;
  s->type = t;
  s->value = value;
  return s;
}

Stmt *ks_assign(Program *p, int local, Expr *value) {
  Stmt *s = st(p, ST_ASSIGN);
  s->id = local;
  s->value = value;
  return s;
}

void ks_append(Stmt **head, Stmt *s) {
  while (*head) head = &(*head)->next;
  *head = s;
}

Stmt *ks_if(Program *p, Expr *cond, Stmt *then, Stmt *orelse) {
  IR_ASSERT(cond->type == DT_BOOL && cond->lanes == 1);
  Stmt *s = st(p, ST_IF);
  s->value = cond;
  s->body = then;
  s->orelse = orelse;
  return s;
}

Stmt *ks_local_array(Program *p, int local, DType t, int64_t n, Expr *value) {
  IR_ASSERT(value->lanes == 1);
  Stmt *s = ks_local(p, local, t, value);
  s->count = n;
  return s;
}

Expr *kx_elem(Program *p, int local, DType t, Expr *index) {
  Expr *e = kx_local(p, local, t);
  e->a = index;
  return e;
}

Stmt *ks_assign_elem(Program *p, int local, Expr *index, Expr *value) {
  Stmt *s = ks_assign(p, local, value);
  s->index = index;
  return s;
}
