/*
 * kverify.c — the kernel IR checker run after every kernel step.
 *
 * It walks each kernel once, keeping the set of loop variables and locals
 * in scope, and checks what both emitters silently assume:
 *
 *   - scopes: a loop variable is used only inside its loop and is not
 *     reused by a loop nested in it; a local is declared before it is read
 *     or assigned, at most once per scope, and goes out of scope at the
 *     end of the block that declared it;
 *   - ids: loop variables and locals are below the kernel's counts, buffer
 *     ids name buffers of the program, symbols name the graph's symbols,
 *     function arguments are input or output buffers, inputs are never
 *     stored to;
 *   - types (kernel.h's table): every expression has the type its
 *     operator gives to operands of one type, with no implicit
 *     conversion: arithmetic on f32, f64, i32, i64 only, comparisons give
 *     bool, && and || take bool, select, if and guards test a bool, casts
 *     go to a number type, constants have a type their value fits;
 *     indices and extents are i64, loads and stores carry their buffer's
 *     dtype, locals are read and assigned with their declared type;
 *   - lanes: counts are powers of two up to KIR_MAX_LANES; lane-wise
 *     operators take operands of their own lanes; constants, variables,
 *     symbols, indices, extents, guards and conditions of if are scalar;
 *     a broadcast takes a scalar and a reduction gives one; a local is
 *     read and assigned with the lanes it was declared with;
 *   - ranges: an index whose interval is known (constants, loop variables
 *     over known extents, symbols at their maximum, + - * / % min max
 *     select of those) lies within its buffer, with every lane of an n-lane
 *     access (index .. index + n - 1).  A guarded load is not
 *     checked (its guard keeps it in range: padding, clamped windows);
 *     every other load must be in range.
 *
 * Each problem is one diagnostic naming the function, the kernel and the
 * offending variable, local or buffer; the return value is their count.
 */
#include <stdlib.h>
#include <string.h>

#include "ir/kernel.h"

typedef struct KCheck {
  const Program *p;
  const Func *f;
  const Kernel *k;
  int ki;
  Diags *d;
  int bad;
  char *var_in;          /* [nvars] in scope */
  int64_t *var_hi;       /* [nvars] largest value, or -1 if unknown */
  char *local_in;        /* [nlocals] declared in an enclosing block */
  DType *local_ty;       /* [nlocals] */
  int64_t *local_n;      /* [nlocals] element count of a local array, 0 for a scalar */
  int *local_lanes;      /* [nlocals] lanes of the local's values */
} KCheck;

static void problem(KCheck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(KCheck *c, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (c->k)
    diag_error(c->d, c->k->loc, "verify: %s kernel %d (%s): %s", c->f->name, c->ki, c->k->what ? c->k->what : "", msg);
  else
    diag_error(c->d, (SrcLoc){0}, "verify: %s: %s", c->f->name, msg);
  c->bad++;
}

/* --- index ranges --------------------------------------------------------------- */

typedef struct Range {
  int64_t lo, hi;
} Range;

static int range_of(KCheck *c, const Expr *e, Range *r);

static int range_mul(Range a, Range b, Range *r) {
  int64_t v[4];
  if (__builtin_mul_overflow(a.lo, b.lo, &v[0]) || __builtin_mul_overflow(a.lo, b.hi, &v[1]) ||
      __builtin_mul_overflow(a.hi, b.lo, &v[2]) || __builtin_mul_overflow(a.hi, b.hi, &v[3]))
    return 0;
  r->lo = r->hi = v[0];
  for (int i = 1; i < 4; i++) r->lo = v[i] < r->lo ? v[i] : r->lo, r->hi = v[i] > r->hi ? v[i] : r->hi;
  return 1;
}

static int range_binary(BinOp op, Range a, Range b, Range *r) {
  switch (op) {
  case BIN_ADD: *r = (Range){a.lo + b.lo, a.hi + b.hi}; return 1;
  case BIN_SUB: *r = (Range){a.lo - b.hi, a.hi - b.lo}; return 1;
  case BIN_MUL: return range_mul(a, b, r);
  case BIN_DIV: /* truncation is monotone for a positive constant divisor */
    if (b.lo != b.hi || b.lo <= 0) return 0;
    *r = (Range){a.lo / b.lo, a.hi / b.lo};
    return 1;
  case BIN_MOD:
    if (b.lo != b.hi || b.lo <= 0) return 0;
    *r = (Range){a.lo >= 0 ? 0 : -(b.lo - 1), a.hi < b.lo - 1 && a.lo >= 0 ? a.hi : b.lo - 1};
    return 1;
  case BIN_MAX: *r = (Range){a.lo > b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi}; return 1;
  case BIN_MIN: *r = (Range){a.lo < b.lo ? a.lo : b.lo, a.hi < b.hi ? a.hi : b.hi}; return 1;
  case BIN_POW: case BIN_LT: case BIN_LE: case BIN_GT: case BIN_GE: case BIN_EQ: case BIN_NE:
  case BIN_AND: case BIN_OR: return 0;
  }
  return 0;
}

/* The interval of integer expression e, if it can be bounded. */
static int range_of(KCheck *c, const Expr *e, Range *r) {
  Range a, b;
  switch (e->kind) {
  case EX_ICONST: *r = (Range){e->i, e->i}; return 1;
  case EX_VAR:
    if (e->id < 0 || e->id >= c->k->nvars || c->var_hi[e->id] < 0) return 0;
    *r = (Range){0, c->var_hi[e->id]};
    return 1;
  case EX_SYM:
    if (!c->p->g || e->id < 0 || e->id >= c->p->g->nsyms || c->p->g->syms[e->id].max <= 0) return 0;
    *r = (Range){0, c->p->g->syms[e->id].max};
    return 1;
  case EX_BINARY:
    return e->type == DT_I64 && range_of(c, e->a, &a) && range_of(c, e->b, &b) && range_binary((BinOp)e->op, a, b, r);
  case EX_SELECT:
    if (!range_of(c, e->b, &a) || !range_of(c, e->c, &b)) return 0;
    *r = (Range){a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi};
    return 1;
  case EX_FCONST: case EX_LOCAL: case EX_LOAD: case EX_UNARY: case EX_CAST: case EX_RAND: case EX_BROADCAST:
  case EX_REDUCE: case EX_FMA: case EX_ZIP: return 0;
  }
  return 0;
}

/* An access of lanes consecutive elements from index. */
static void check_index(KCheck *c, int buf, const Expr *index, int lanes, const char *what) {
  Range r;
  const Buffer *b = &c->p->bufs[buf];
  if (b->size <= 0 || !range_of(c, index, &r)) return;
  r.hi += lanes - 1;
  if (r.lo < 0 || r.hi >= b->size)
    problem(c, "%s b%d (%s) at indices [%lld, %lld], outside its %lld elements", what, buf, b->name,
            (long long)r.lo, (long long)r.hi, (long long)b->size);
}

/* --- expressions ---------------------------------------------------------------- */

static const char *tn(DType t) { return rt_dtype_name(t); }

static int buffer_ok(KCheck *c, int buf) {
  if (buf >= 0 && buf < c->p->nbufs) return 1;
  problem(c, "buffer b%d does not exist (the program has %d)", buf, c->p->nbufs);
  return 0;
}

static void check_expr(KCheck *c, const Expr *e);

/* A condition (select, guard, if) must be bool. */
static void check_cond(KCheck *c, const Expr *e, const char *what) {
  check_expr(c, e);
  if (e && e->type != DT_BOOL) problem(c, "%s is %s, not bool", what, tn(e->type));
}

static void check_var(KCheck *c, const Expr *e) {
  if (e->id < 0 || e->id >= c->k->nvars) problem(c, "loop variable i%d does not exist (the kernel has %d)", e->id, c->k->nvars);
  else if (!c->var_in[e->id]) problem(c, "loop variable i%d used outside its loop", e->id);
  if (e->type != DT_I64) problem(c, "loop variable i%d typed %s, not i64", e->id, tn(e->type));
}

/* An element index into local array id (or its absence for a scalar). */
static void check_element(KCheck *c, int id, const Expr *index) {
  int64_t n = c->local_n[id];
  if (!index) {
    if (n > 0) problem(c, "local array v%d used without an index", id);
    return;
  }
  check_expr(c, index);
  Range r;
  if (n == 0) problem(c, "scalar local v%d indexed", id);
  else if (index->type != DT_I64) problem(c, "index of local array v%d is %s, not i64", id, tn(index->type));
  else if (range_of(c, index, &r) && (r.lo < 0 || r.hi >= n))
    problem(c, "local array v%d at indices [%lld, %lld], outside its %lld elements", id, (long long)r.lo, (long long)r.hi,
            (long long)n);
}

static void check_local_read(KCheck *c, const Expr *e) {
  if (e->id < 0 || e->id >= c->k->nlocals) problem(c, "local v%d does not exist (the kernel has %d)", e->id, c->k->nlocals);
  else if (!c->local_in[e->id]) problem(c, "local v%d used before its declaration", e->id);
  else if (c->local_ty[e->id] != e->type)
    problem(c, "local v%d read as %s but declared %s", e->id, tn(e->type), tn(c->local_ty[e->id]));
  else if (c->local_lanes[e->id] != e->lanes)
    problem(c, "local v%d of %d lanes read as %d lanes", e->id, c->local_lanes[e->id], e->lanes);
  else check_element(c, e->id, e->a);
}

static void check_load(KCheck *c, const Expr *e) {
  check_expr(c, e->a);
  if (e->b) check_cond(c, e->b, "guard of a load");
  if (e->b) check_expr(c, e->c);
  if (!buffer_ok(c, e->id)) return;
  const Buffer *b = &c->p->bufs[e->id];
  if (e->type != b->dtype) problem(c, "load of b%d (%s) typed %s, the buffer holds %s", e->id, b->name, tn(e->type), tn(b->dtype));
  if (e->a && e->a->type != DT_I64) problem(c, "index of b%d (%s) is %s, not i64", e->id, b->name, tn(e->a->type));
  if (e->b && e->c && e->c->type != e->type)
    problem(c, "guarded load of b%d (%s) gives %s otherwise, not %s", e->id, b->name, tn(e->c->type), tn(e->type));
  if (!e->b && e->c) problem(c, "load of b%d (%s) with a value for a guard it does not have", e->id, b->name);
  if (e->b && e->lanes != 1) problem(c, "guarded load of b%d (%s) has %d lanes (a guarded load is scalar)", e->id, b->name, e->lanes);
  if (!e->b && e->a) check_index(c, e->id, e->a, e->lanes, "load of");
}

static void check_unary(KCheck *c, const Expr *e) {
  const char *name = kir_unop_name((UnOp)e->op);
  check_expr(c, e->a);
  if (e->a->type != e->type) problem(c, "%s of a %s operand typed %s", name, tn(e->a->type), tn(e->type));
  else if (e->op == UN_NEG ? kir_binop_type(BIN_SUB, e->type) == DT_COUNT : !kir_is_float(e->type))
    problem(c, "%s of a %s operand (needs %s)", name, tn(e->type), e->op == UN_NEG ? "a number type but u8" : "f32 or f64");
}

static void check_binary(KCheck *c, const Expr *e) {
  BinOp op = (BinOp)e->op;
  const char *name = kir_binop_name(op);
  check_expr(c, e->a);
  check_expr(c, e->b);
  if (e->a->type != e->b->type) {
    problem(c, "operands of %s are %s and %s (convert one with a cast)", name, tn(e->a->type), tn(e->b->type));
    return;
  }
  DType want = kir_binop_type(op, e->a->type);
  if (want == DT_COUNT) problem(c, "%s of %s operands", name, tn(e->a->type));
  else if (e->type != want) problem(c, "%s of %s operands typed %s, not %s", name, tn(e->a->type), tn(e->type), tn(want));
}

static void check_select(KCheck *c, const Expr *e) {
  check_cond(c, e->a, "select condition");
  check_expr(c, e->b);
  check_expr(c, e->c);
  if (e->b && e->c && (e->b->type != e->c->type || e->type != e->b->type))
    problem(c, "select of %s and %s typed %s", tn(e->b->type), tn(e->c->type), tn(e->type));
}

static void check_const(KCheck *c, const Expr *e) {
  if (e->kind == EX_FCONST) {
    if (!kir_is_float(e->type)) problem(c, "float constant typed %s", tn(e->type));
    return;
  }
  int fits = e->type == DT_I64 || (e->type == DT_I32 && e->i >= INT32_MIN && e->i <= INT32_MAX) ||
             (e->type == DT_U8 && e->i >= 0 && e->i <= 255) || (e->type == DT_BOOL && (e->i == 0 || e->i == 1));
  if (!fits) problem(c, "integer constant %lld typed %s", (long long)e->i, tn(e->type));
}

static void check_cast(KCheck *c, const Expr *e) {
  check_expr(c, e->a);
  if (!kir_is_float(e->type) && !kir_is_int(e->type)) problem(c, "cast to %s (compare with a number instead)", tn(e->type));
}

/* The operand of e that must have lanes lanes. */
static void same_lanes(KCheck *c, const Expr *e, const Expr *operand, int lanes) {
  if (operand && operand->lanes != lanes)
    problem(c, "operand of %d lanes in an expression of %d lanes%s", operand->lanes, lanes,
            lanes > 1 && operand->lanes == 1 ? " (broadcast it)" : "");
  (void)e;
}

/* Lane rules (kernel.h): what has to be scalar, and which operands share
 * the result's lanes. */
static void check_lanes(KCheck *c, const Expr *e) {
  if (!kir_lanes_ok(e->lanes)) {
    problem(c, "an expression of %d lanes (a power of two up to %d)", e->lanes, KIR_MAX_LANES);
    return;
  }
  switch (e->kind) {
  case EX_FCONST: case EX_ICONST: case EX_VAR: case EX_SYM: case EX_RAND:
    if (e->lanes != 1) problem(c, "a constant, variable, symbol or rand of %d lanes (broadcast a scalar)", e->lanes);
    same_lanes(c, e, e->a, 1);
    break;
  case EX_LOAD: case EX_LOCAL: same_lanes(c, e, e->a, 1); break; /* the index */
  case EX_UNARY: case EX_CAST: same_lanes(c, e, e->a, e->lanes); break;
  case EX_BINARY: same_lanes(c, e, e->a, e->lanes), same_lanes(c, e, e->b, e->lanes); break;
  case EX_SELECT: case EX_FMA:
    same_lanes(c, e, e->a, e->lanes), same_lanes(c, e, e->b, e->lanes), same_lanes(c, e, e->c, e->lanes);
    break;
  case EX_BROADCAST:
    if (e->a && e->a->lanes != 1) problem(c, "broadcast of %d lanes (needs a scalar)", e->a->lanes);
    if (e->a && e->a->type != e->type) problem(c, "broadcast of a %s typed %s", tn(e->a->type), tn(e->type));
    break;
  case EX_REDUCE:
    if (e->lanes != 1) problem(c, "reduction to %d lanes (gives a scalar)", e->lanes);
    if (e->op != BIN_ADD) problem(c, "reduction by %s (only + is defined)", kir_binop_name((BinOp)e->op));
    if (e->a && (e->a->type != e->type || kir_binop_type(BIN_ADD, e->type) != e->type))
      problem(c, "sum of %s lanes typed %s", tn(e->a->type), tn(e->type));
    break;
  case EX_ZIP:
    if (e->lanes < 2) problem(c, "a zip of %d lane", e->lanes);
    if (e->op < 0 || e->op > 3) problem(c, "a zip of op %d (0 low, 1 high, 2 even, 3 odd)", e->op);
    same_lanes(c, e, e->a, e->lanes), same_lanes(c, e, e->b, e->lanes);
    break;
  }
}

static void check_expr(KCheck *c, const Expr *e) {
  if (!e) {
    problem(c, "missing expression");
    return;
  }
  check_lanes(c, e);
  switch (e->kind) {
  case EX_FCONST: case EX_ICONST: check_const(c, e); break;
  case EX_VAR: check_var(c, e); break;
  case EX_SYM:
    if (!c->p->g || e->id < 0 || e->id >= c->p->g->nsyms) problem(c, "symbol %d does not exist", e->id);
    if (e->type != DT_I64) problem(c, "symbol %d typed %s, not i64", e->id, tn(e->type));
    break;
  case EX_LOCAL: check_local_read(c, e); break;
  case EX_LOAD: check_load(c, e); break;
  case EX_UNARY: check_unary(c, e); break;
  case EX_BINARY: check_binary(c, e); break;
  case EX_SELECT: check_select(c, e); break;
  case EX_CAST: check_cast(c, e); break;
  case EX_RAND:
    check_expr(c, e->a);
    if (e->a->type != DT_I64 || e->type != DT_F32) problem(c, "rand of a %s counter typed %s (needs i64 -> f32)", tn(e->a->type), tn(e->type));
    break;
  case EX_BROADCAST: case EX_REDUCE: check_expr(c, e->a); break;
  case EX_FMA:
    check_expr(c, e->a), check_expr(c, e->b), check_expr(c, e->c);
    if (!kir_is_float(e->type) || e->a->type != e->type || e->b->type != e->type || e->c->type != e->type)
      problem(c, "fma of %s, %s, %s typed %s (needs one float type)", tn(e->a->type), tn(e->b->type), tn(e->c->type),
              tn(e->type));
    break;
  case EX_ZIP:
    check_expr(c, e->a), check_expr(c, e->b);
    if (e->a->type != e->type || e->b->type != e->type)
      problem(c, "zip of %s and %s typed %s (needs one type)", tn(e->a->type), tn(e->b->type), tn(e->type));
    break;
  }
}

/* --- statements ------------------------------------------------------------------- */

static void check_block(KCheck *c, const Stmt *s);

static void check_loop(KCheck *c, const Stmt *s) {
  check_expr(c, s->extent);
  if (s->extent && s->extent->lanes != 1) problem(c, "extent of loop i%d has %d lanes", s->id, s->extent->lanes);
  if (s->extent && s->extent->type != DT_I64) problem(c, "extent of loop i%d is %s, not i64", s->id, rt_dtype_name(s->extent->type));
  if (s->id < 0 || s->id >= c->k->nvars) {
    problem(c, "loop variable i%d does not exist (the kernel has %d)", s->id, c->k->nvars);
    return;
  }
  if (s->step < 1 || s->width < 1 || (unsigned)s->loop > LOOP_SIMD || s->prefetch < 0)
    problem(c, "loop i%d has step %lld, width %d, kind %d, prefetch %d", s->id, (long long)s->step, s->width, (int)s->loop,
            s->prefetch);
  if (s->loop == LOOP_VECTOR && s->step != s->width)
    problem(c, "vector loop i%d steps by %lld over %d lanes", s->id, (long long)s->step, s->width);
  if (c->var_in[s->id]) {
    problem(c, "loop variable i%d reused by a loop inside its own loop", s->id);
    return;
  }
  Range r;
  c->var_in[s->id] = 1;
  /* the last value is the largest multiple of step below the extent */
  int64_t step = s->step > 0 ? s->step : 1;
  c->var_hi[s->id] = s->extent && range_of(c, s->extent, &r) && r.hi >= 1 ? (r.hi - 1) / step * step : -1;
  check_block(c, s->body);
  c->var_in[s->id] = 0;
  c->var_hi[s->id] = -1;
}

static int local_ok(KCheck *c, int id) {
  if (id >= 0 && id < c->k->nlocals) return 1;
  problem(c, "local v%d does not exist (the kernel has %d)", id, c->k->nlocals);
  return 0;
}

static void check_local_decl(KCheck *c, const Stmt *s) {
  check_expr(c, s->value);
  if (!local_ok(c, s->id)) return;
  if (c->local_in[s->id]) problem(c, "local v%d declared twice in one scope", s->id);
  if (s->value && s->value->type != s->type)
    problem(c, "local v%d declared %s but initialised with %s", s->id, rt_dtype_name(s->type), rt_dtype_name(s->value->type));
  if (s->count < 0) problem(c, "local array v%d of %lld elements", s->id, (long long)s->count);
  c->local_in[s->id] = 1;
  c->local_ty[s->id] = s->type;
  c->local_n[s->id] = s->count;
  c->local_lanes[s->id] = s->value ? s->value->lanes : 1;
  if (s->count > 0 && c->local_lanes[s->id] != 1) problem(c, "local array v%d of %d lanes (arrays are scalar)", s->id, c->local_lanes[s->id]);
}

static void check_assign(KCheck *c, const Stmt *s) {
  check_expr(c, s->value);
  if (!local_ok(c, s->id)) return;
  if (!c->local_in[s->id]) problem(c, "local v%d assigned before its declaration", s->id);
  else if (s->value && s->value->type != c->local_ty[s->id])
    problem(c, "local v%d (%s) assigned a %s", s->id, rt_dtype_name(c->local_ty[s->id]), rt_dtype_name(s->value->type));
  else if (s->value && s->value->lanes != c->local_lanes[s->id])
    problem(c, "local v%d of %d lanes assigned %d lanes", s->id, c->local_lanes[s->id], s->value->lanes);
  else check_element(c, s->id, s->index);
}

static void check_if(KCheck *c, const Stmt *s) {
  check_cond(c, s->value, "if condition");
  if (s->value && s->value->lanes != 1) problem(c, "if condition of %d lanes", s->value->lanes);
  check_block(c, s->body);
  check_block(c, s->orelse);
}

static void check_store(KCheck *c, const Stmt *s) {
  check_expr(c, s->index);
  check_expr(c, s->value);
  if (!buffer_ok(c, s->id)) return;
  const Buffer *b = &c->p->bufs[s->id];
  if (b->kind == BUF_INPUT) problem(c, "store to input buffer b%d (%s)", s->id, b->name);
  if (b->kind == BUF_DERIVED && c->f != c->p->prepare)
    problem(c, "store to derived buffer b%d (%s) outside prepare", s->id, b->name);
  if (s->value && s->value->type != b->dtype)
    problem(c, "store of a %s value to b%d (%s), which holds %s", rt_dtype_name(s->value->type), s->id, b->name, rt_dtype_name(b->dtype));
  if (s->index && s->index->lanes != 1) problem(c, "index of b%d (%s) has %d lanes", s->id, b->name, s->index->lanes);
  if (s->index && s->index->type != DT_I64) problem(c, "index of b%d (%s) is %s, not i64", s->id, b->name, rt_dtype_name(s->index->type));
  else if (s->index && s->value) check_index(c, s->id, s->index, s->value->lanes, "store to");
}

/* Statements of one block; locals declared here leave scope at its end. */
static void check_block(KCheck *c, const Stmt *s) {
  char *saved = rt_xmalloc((size_t)c->k->nlocals + 1);
  IR_ASSERT(saved);
  memcpy(saved, c->local_in, (size_t)c->k->nlocals);
  for (; s; s = s->next) {
    switch (s->kind) {
    case ST_LOOP: check_loop(c, s); break;
    case ST_STORE: check_store(c, s); break;
    case ST_LOCAL: check_local_decl(c, s); break;
    case ST_ASSIGN: check_assign(c, s); break;
    case ST_IF: check_if(c, s); break;
    default: problem(c, "statement of unknown kind %d", (int)s->kind); break;
    }
  }
  memcpy(c->local_in, saved, (size_t)c->k->nlocals);
  rt_xfree(saved);
}

static void check_kernel(KCheck *c) {
  size_t nv = (size_t)(c->k->nvars > 0 ? c->k->nvars : 0) + 1, nl = (size_t)(c->k->nlocals > 0 ? c->k->nlocals : 0) + 1;
  c->var_in = rt_xcalloc(nv, 1);
  c->var_hi = rt_xmalloc(nv * sizeof *c->var_hi);
  c->local_in = rt_xcalloc(nl, 1);
  c->local_ty = rt_xcalloc(nl, sizeof *c->local_ty);
  c->local_n = rt_xcalloc(nl, sizeof *c->local_n);
  c->local_lanes = rt_xcalloc(nl, sizeof *c->local_lanes);
  IR_ASSERT(c->var_in && c->var_hi && c->local_in && c->local_ty && c->local_n && c->local_lanes);
  for (size_t i = 0; i < nv; i++) c->var_hi[i] = -1;
  check_block(c, c->k->body);
  rt_xfree(c->var_in);
  rt_xfree(c->var_hi);
  rt_xfree(c->local_in);
  rt_xfree(c->local_ty);
  rt_xfree(c->local_n);
  rt_xfree(c->local_lanes);
}

/* Buffers hold storage types only (bool is never stored). */
static void check_buffers(KCheck *c) {
  for (int b = 0; b < c->p->nbufs; b++)
    if ((unsigned)c->p->bufs[b].dtype >= DT_COUNT)
      problem(c, "buffer b%d (%s) holds %s, which is not a storage type", b, c->p->bufs[b].name, tn(c->p->bufs[b].dtype));
}

static void check_args(KCheck *c) {
  for (int a = 0; a < c->f->nargs; a++) {
    int b = c->f->args[a];
    if (!buffer_ok(c, b)) continue;
    if (c->p->bufs[b].kind != BUF_INPUT && c->p->bufs[b].kind != BUF_OUTPUT)
      problem(c, "argument %d is b%d (%s), which is neither an input nor an output", a, b, c->p->bufs[b].name);
  }
}

/* Checks f's arguments and kernels (and, with buffers set, the program's
 * buffer table). */
static int check_func(const Program *p, const Func *f, Diags *d, int buffers) {
  KCheck c = {.p = p, .f = f, .ki = -1, .d = d};
  if (buffers) check_buffers(&c);
  check_args(&c);
  for (int k = 0; k < c.f->nkernels; k++) {
    c.k = &c.f->kernels[k];
    c.ki = k;
    check_kernel(&c);
  }
  return c.bad;
}

int kir_verify(const Program *p, Diags *d) {
  int bad = 0;
  for (int fi = 0; fi < p->nfuncs; fi++) bad += check_func(p, &p->funcs[fi], d, fi == 0);
  if (p->prepare) bad += check_func(p, p->prepare, d, 0);
  return bad;
}
