/*
 * keval.c — the kernel-IR evaluator: the third executor of a Program, and
 * the executable statement of what the kernel IR means.
 *
 * A call runs the kernels of one Func in order, each kernel's statements
 * in order, with the meaning kernel.h defines and both emitters print:
 *
 *   buffers   an input or output is the caller's argument, holding the
 *             elements of its shape at the call's symbol values; a param
 *             or state buffer is the tensor of its name in the tensor set
 *             (written in place: the optimizer updates it); a temporary
 *             lives in its dtype's arena at its planned offset, or on its
 *             own before memplan has run; a derived buffer (a parameter in
 *             another layout) is filled by p->prepare, which runs at the
 *             start of every call of a function that reads one (the
 *             generated code runs it only when the parameters changed,
 *             and each call here starts from the tensors given).  Every
 *             load and store is checked against its buffer's size
 *             (temporaries: size at the symbols' largest values); a store
 *             into an input, or into a derived buffer outside prepare, is
 *             refused.
 *   for iK < E step S { B }   iK runs 0, S, 2S, ... while iK < E; E is
 *             evaluated again after each iteration (as C does) unless it
 *             reads no local and no buffer, when it cannot change.  A
 *             loop's kind, axis and width promise or ask for something
 *             (parallel, vector, unroll) but never change its meaning:
 *             every loop runs serially, in order.  S < 1 is an error.
 *   local vK: T = X    vK holds X (of type T) until its block ends; vK = X
 *             sets it (X of vK's type).
 *   local vK: T[n] = X  a local array (a register tile) of n elements,
 *             each set to X; vK[I] reads and vK[I] = X writes element I
 *             (checked against n); an array used without an index, or a
 *             scalar with one, is an error.
 *   if C { A } else { B }  C is a bool; one branch runs; each is a block.
 *   bK[I] = X          X (of bK's dtype) is stored at element I.
 *
 * Expressions mean what kernel.h defines; keval is that definition run
 * directly.  Every expression has one exact type and operands never
 * convert implicitly, so keval checks the typing rules once, when it
 * compiles a kernel, and refuses a program that breaks them:
 *
 *   constants   f32 (the value rounded to binary32) or f64; i32, i64, u8
 *               or bool within their ranges;
 *   iK, symbols i64 (a symbol's value is the call's);
 *   vK, vK[I]   the declared type; bK[I] the buffer's dtype; a guarded
 *               load G ? bK[I] : X reads memory only when G holds;
 *   f32 arithmetic is float arithmetic and f64 double, with no
 *               contraction; exp log sqrt tanh abs log1p expm1 erf erfc
 *               and pow are libm's functions of that precision (expf,
 *               exp); % of floats is not an operator;
 *   integers    i32 and i64 two's-complement; an operation that overflows
 *               its type, or divides by zero, is undefined and keval
 *               reports it; / truncates, % has the dividend's sign;
 *   max, min    on floats a NaN operand gives NaN (a > b || a != a ? a :
 *               b); on integers the larger, the smaller;
 *   comparisons bool, false when either operand is NaN except !=;
 *   && ||, select  eager: every operand is evaluated, so an error in
 *               either arm (a load out of range) is reported even when
 *               the other is chosen;
 *   T(X)        float to float rounds; float to integer truncates (a NaN
 *               or a value outside T is undefined: an error); integer to
 *               float rounds; integer to integer sign-extends (u8 and
 *               bool are unsigned) or keeps the low bits;
 *   rand(K, X)  ir_random_uniform(K, (uint64)X), an f32.
 *
 * Lanes: an n-lane expression is n values side by side, evaluated one
 * lane at a time (E->lane): lane-wise operators, selects and casts take
 * lane k of their operands; an n-lane load reads bK[I + k]; bcast(X, n)
 * is scalar X in every lane; reduce_add(X) evaluates X's lanes, then sums
 * them pairwise (s_k += s_(k+h) for k < h, h halving), the order
 * kernel.h fixes; lane k of zip_lo(A, B) / zip_hi(A, B) of n lanes is
 * lane k / 2 (+ n / 2 for zip_hi) of A for even k, of B for odd k; an n-lane store or local evaluates every lane before it
 * writes any.  Constants, loop variables, symbols, indices, extents,
 * guards, rand counters and conditions are scalar, local arrays too.
 *
 * Evaluation is a tree walk over a compiled copy of each kernel: before
 * running, every Expr becomes a KX node of one class (int64 for i32, i64,
 * u8 and bool; float for f32; double for f64), its types are checked, and
 * every id is checked once (buffers, symbols, locals in scope, loop
 * variables in their loops) and buffers are resolved to pointer and size.
 * Three evaluators (ev_i, ev_f, ev_d), one per class, switch over the
 * node's op, so nothing is allocated and nothing is looked up while the
 * loops run.  An error anywhere longjmps out of the call with its message.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir/keval.h"

typedef enum KCls { KC_I, KC_F, KC_D } KCls; /* int64, float, double */

typedef enum KOp {
  K_CONST, K_VAR, K_SYM, K_LOCAL, K_LOAD, K_NEG, K_UNARY, K_ADD, K_SUB, K_MUL, K_DIV, K_MOD,
  K_MAX, K_MIN, K_FMAX, K_FMIN, K_POW, K_CMP, K_AND, K_OR, K_SELECT, K_CONV, K_RAND, K_ELEM, K_GLOAD,
  K_VLOAD, K_VLOCAL, K_BCAST, K_REDUCE, K_ZIP,
} KOp;

typedef union KVal {
  int64_t i;
  float f;
  double d;
} KVal;

typedef struct KX KX;
struct KX {
  KOp op;
  KCls cls;
  int lanes;      /* 1, or n: lane E->lane of n is the one evaluated */
  int sub;        /* K_UNARY: UnOp; K_CMP: BinOp; K_CONV: target DType; integer ops: their type */
  int id;         /* var, sym, local, buffer */
  KVal k;         /* K_CONST; K_RAND: the key */
  KVal *arr;      /* K_ELEM, K_VLOCAL: the local's elements (an array's, or a vector's lanes) */
  int64_t n;      /* K_ELEM: their count */
  KX *a, *b, *c;  /* K_ELEM: a is the element index; K_GLOAD: a ? load of b : c */
};

typedef enum KSKind { KS_LOOP, KS_STORE, KS_SET, KS_FILL, KS_SET_ELEM, KS_SET_LANES, KS_IF } KSKind;

typedef struct KS KS;
struct KS {
  KSKind kind;
  int id;          /* loop var, buffer, local */
  int invariant;   /* KS_LOOP: the extent cannot change while the loop runs */
  int64_t step;    /* KS_LOOP */
  KVal *arr;       /* KS_FILL, KS_SET_ELEM, KS_SET_LANES: the local's elements */
  int64_t n;       /* ... and their count; KS_STORE: the value's lanes */
  KX *extent, *index, *value;
  KS *body, *orelse, *next;
};

typedef struct KBuf {
  char *data;
  int64_t size;       /* elements */
  DType dt;
  const char *why;    /* not bound: why (NULL when bound) */
} KBuf;

typedef struct Ev {
  const Program *p;
  const Func *f;
  int ki;             /* the kernel being compiled or run */
  jmp_buf jb;
  RtError *err;
  Arena a;            /* compiled kernels */
  KBuf *bufs;
  void *arena[DT_COUNT];
  void **own;         /* temporaries allocated on their own (before memplan) */
  int64_t syms[IR_MAX_SYMS];
  int64_t *vars;
  KVal *locals;
  int lane;           /* the lane of n-lane expressions being evaluated */
  /* compiling one kernel */
  int nvars, nlocals;
  char *var_in;       /* [nvars] inside its loop */
  int *local_ty;      /* [nlocals] declared type, or -1 */
  KVal **local_arr;   /* [nlocals] a local array's elements or a vector's lanes (its declaration's), or NULL */
  int64_t *local_n;   /* [nlocals] a local array's count, 0 for a scalar or vector */
  int *local_lanes;   /* [nlocals] a local's lanes */
} Ev;

/* --- errors ---------------------------------------------------------------------- */

static _Noreturn void fail(Ev *E, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void fail(Ev *E, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (E->ki >= 0) {
    const Kernel *k = &E->f->kernels[E->ki];
    rt_fail(E->err, RT_ERR_FORMAT, "%s kernel %d (%s): %s", E->f->name, E->ki, k->what ? k->what : "", msg);
  } else {
    rt_fail(E->err, RT_ERR_FORMAT, "%s: %s", E->f->name, msg);
  }
  longjmp(E->jb, 1);
}

static const char *bname(Ev *E, int b) { return E->p->bufs[b].name ? E->p->bufs[b].name : "?"; }

static _Noreturn void out_of_range(Ev *E, int b, int64_t i, const char *what) {
  const KBuf *kb = &E->bufs[b];
  if (kb->why) fail(E, "%s b%d (%s): %s", what, b, bname(E, b), kb->why);
  fail(E, "%s b%d[%lld] (%s) is outside its %lld elements", what, b, (long long)i, bname(E, b), (long long)kb->size);
}

/* --- integer arithmetic, checked ------------------------------------------------- */

/* v as integer type t, where it must fit (i32 arithmetic is done in int64). */
static int64_t fit(Ev *E, int64_t v, int t, const char *op) {
  if (t == DT_I32 && (v < INT32_MIN || v > INT32_MAX)) fail(E, "i32 overflow in %s (%lld)", op, (long long)v);
  return v;
}

static int64_t iadd(Ev *E, int64_t a, int64_t b, int t) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail(E, "integer overflow in %lld + %lld", (long long)a, (long long)b);
  return fit(E, r, t, "+");
}
static int64_t isub(Ev *E, int64_t a, int64_t b, int t) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) fail(E, "integer overflow in %lld - %lld", (long long)a, (long long)b);
  return fit(E, r, t, "-");
}
static int64_t imul(Ev *E, int64_t a, int64_t b, int t) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail(E, "integer overflow in %lld * %lld", (long long)a, (long long)b);
  return fit(E, r, t, "*");
}
static int64_t idiv(Ev *E, int64_t a, int64_t b, int t, int mod) {
  if (b == 0 || (a == INT64_MIN && b == -1))
    fail(E, "integer %s %lld %s %lld", b ? "overflow in" : "division by zero in", (long long)a, mod ? "%" : "/",
         (long long)b);
  return fit(E, mod ? a % b : a / b, t, mod ? "%" : "/");
}

/* An integer as type t: sign-extended from i32, the low bits kept. */
static int64_t narrow(int64_t v, DType t) {
  switch (t) {
  case DT_I32: return (int32_t)(uint32_t)(uint64_t)v;
  case DT_U8: return (uint8_t)v;
  case DT_I64: case DT_F32: case DT_F64: case DT_BOOL: case DT_COUNT: break;
  }
  return v;
}

/* A float truncated to integer type t; undefined when it does not fit. */
static int64_t to_int(Ev *E, double v, DType t) {
  double lo = t == DT_U8 ? 0 : t == DT_I32 ? -2147483648.0 : -9223372036854775808.0;
  double hi = t == DT_U8 ? 256.0 : t == DT_I32 ? 2147483648.0 : 9223372036854775808.0;
  double x = trunc(v);
  if (!(x >= lo && x < hi)) fail(E, "conversion of %g to %s: out of range", v, rt_dtype_name(t));
  return (int64_t)x;
}

/* --- evaluation ---------------------------------------------------------------- */

static int64_t ev_i(Ev *E, const KX *x);
static float ev_f(Ev *E, const KX *x);
static double ev_d(Ev *E, const KX *x);

static int compare(int op, double a, double b) {
  switch ((BinOp)op) {
  case BIN_LT: return a < b;
  case BIN_LE: return a <= b;
  case BIN_GT: return a > b;
  case BIN_GE: return a >= b;
  case BIN_EQ: return a == b;
  case BIN_NE: return a != b;
  case BIN_ADD: case BIN_SUB: case BIN_MUL: case BIN_DIV: case BIN_MAX: case BIN_MIN: case BIN_POW: case BIN_MOD:
  case BIN_AND: case BIN_OR: break;
  }
  return 0;
}

static int icompare(int op, int64_t a, int64_t b) {
  switch ((BinOp)op) {
  case BIN_LT: return a < b;
  case BIN_LE: return a <= b;
  case BIN_GT: return a > b;
  case BIN_GE: return a >= b;
  case BIN_EQ: return a == b;
  case BIN_NE: return a != b;
  case BIN_ADD: case BIN_SUB: case BIN_MUL: case BIN_DIV: case BIN_MAX: case BIN_MIN: case BIN_POW: case BIN_MOD:
  case BIN_AND: case BIN_OR: break;
  }
  return 0;
}

/* A comparison of two operands of one class. */
static int64_t cmp(Ev *E, const KX *x) {
  switch (x->a->cls) {
  case KC_I: return icompare(x->sub, ev_i(E, x->a), ev_i(E, x->b));
  case KC_F: return compare(x->sub, ev_f(E, x->a), ev_f(E, x->b));
  case KC_D: return compare(x->sub, ev_d(E, x->a), ev_d(E, x->b));
  }
  return 0;
}

/* An element index into local array id of n elements, checked. */
static int64_t elem(Ev *E, int id, int64_t n, const KX *index) {
  int64_t i = ev_i(E, index);
  if ((uint64_t)i >= (uint64_t)n) fail(E, "local array v%d[%lld] is outside its %lld elements", id, (long long)i, (long long)n);
  return i;
}

/* The element a load or store addresses, checked. */
static int64_t at(Ev *E, int b, const KX *index, const char *what) {
  int64_t i = ev_i(E, index);
  if ((uint64_t)i >= (uint64_t)E->bufs[b].size) out_of_range(E, b, i, what);
  return i;
}

/* The element lane E->lane of an n-lane load reads: index + lane. */
static int64_t at_lane(Ev *E, int b, const KX *index) {
  int64_t i = iadd(E, ev_i(E, index), E->lane, DT_I64);
  if ((uint64_t)i >= (uint64_t)E->bufs[b].size) out_of_range(E, b, i, "load of");
  return i;
}

static int64_t load_i(Ev *E, const KX *x) {
  const KBuf *b = &E->bufs[x->id];
  int64_t i = x->op == K_VLOAD ? at_lane(E, x->id, x->a) : at(E, x->id, x->a, "load of");
  switch (b->dt) {
  case DT_I32: return ((const int32_t *)b->data)[i];
  case DT_U8: return ((const uint8_t *)b->data)[i];
  case DT_I64: case DT_F32: case DT_F64: case DT_BOOL: case DT_COUNT: break;
  }
  return ((const int64_t *)b->data)[i];
}

static int64_t conv_i(Ev *E, const KX *x) {
  DType t = (DType)x->sub;
  switch (x->a->cls) {
  case KC_I: return narrow(ev_i(E, x->a), t);
  case KC_F: return to_int(E, ev_f(E, x->a), t);
  case KC_D: return to_int(E, ev_d(E, x->a), t);
  }
  return 0;
}

static KVal value(Ev *E, const KX *x);

/* The lanes of n-lane x, each evaluated in its lane, into v. */
static void lanes(Ev *E, const KX *x, KVal *v) {
  int saved = E->lane;
  for (int k = 0; k < x->lanes; k++) E->lane = k, v[k] = value(E, x);
  E->lane = saved;
}

/* Reduction x: the pairwise sum of its operand's lanes (kernel.h),
 * s_k += s_(k+h) for k < h, h halving down to 1. */
static KVal reduce(Ev *E, const KX *x) {
  KVal v[KIR_MAX_LANES];
  lanes(E, x->a, v);
  for (int h = x->a->lanes / 2; h > 0; h /= 2)
    for (int k = 0; k < h; k++) switch (x->cls) {
      case KC_I: v[k].i = iadd(E, v[k].i, v[k + h].i, x->sub); break;
      case KC_F: v[k].f = v[k].f + v[k + h].f; break;
      case KC_D: v[k].d = v[k].d + v[k + h].d; break;
      }
  return v[0];
}

/* Lane E->lane of zip x: the lane of a then b that kir_zip_lane names. */
static KVal zip(Ev *E, const KX *x) {
  int saved = E->lane, s = kir_zip_lane(x->sub, x->lanes, saved);
  E->lane = s % x->lanes;
  KVal v = value(E, s < x->lanes ? x->a : x->b);
  E->lane = saved;
  return v;
}

static int64_t ev_i(Ev *E, const KX *x) {
  switch (x->op) {
  case K_ZIP: return zip(E, x).i;
  case K_VLOAD: return load_i(E, x);
  case K_VLOCAL: return x->arr[E->lane].i;
  case K_BCAST: return ev_i(E, x->a);
  case K_REDUCE: return reduce(E, x).i;
  case K_CONST: return x->k.i;
  case K_VAR: return E->vars[x->id];
  case K_SYM: return E->syms[x->id];
  case K_LOCAL: return E->locals[x->id].i;
  case K_ELEM: return x->arr[elem(E, x->id, x->n, x->a)].i;
  case K_LOAD: return load_i(E, x);
  case K_GLOAD: return ev_i(E, x->a) ? load_i(E, x->b) : ev_i(E, x->c);
  case K_NEG: return isub(E, 0, ev_i(E, x->a), x->sub);
  case K_ADD: return iadd(E, ev_i(E, x->a), ev_i(E, x->b), x->sub);
  case K_SUB: return isub(E, ev_i(E, x->a), ev_i(E, x->b), x->sub);
  case K_MUL: return imul(E, ev_i(E, x->a), ev_i(E, x->b), x->sub);
  case K_DIV: return idiv(E, ev_i(E, x->a), ev_i(E, x->b), x->sub, 0);
  case K_MOD: return idiv(E, ev_i(E, x->a), ev_i(E, x->b), x->sub, 1);
  case K_MAX: case K_MIN: {
    int64_t a = ev_i(E, x->a), b = ev_i(E, x->b);
    return (x->op == K_MAX ? a > b : a < b) ? a : b;
  }
  case K_CMP: return cmp(E, x);
  case K_AND: case K_OR: {
    int64_t a = ev_i(E, x->a), b = ev_i(E, x->b);
    return x->op == K_AND ? a && b : a || b;
  }
  case K_SELECT: {
    int64_t c = ev_i(E, x->a), a = ev_i(E, x->b), b = ev_i(E, x->c);
    return c ? a : b;
  }
  case K_CONV: return conv_i(E, x);
  case K_UNARY: case K_FMAX: case K_FMIN: case K_POW: case K_RAND: break;
  }
  fail(E, "internal error: integer evaluation of op %d", (int)x->op);
}

static float unary_f(int op, float a) {
  switch ((UnOp)op) {
  case UN_NEG: return -a;
  case UN_EXP: return expf(a);
  case UN_LOG: return logf(a);
  case UN_SQRT: return sqrtf(a);
  case UN_TANH: return tanhf(a);
  case UN_ABS: return fabsf(a);
  case UN_LOG1P: return log1pf(a);
  case UN_EXPM1: return expm1f(a);
  case UN_ERF: return erff(a);
  case UN_ERFC: return erfcf(a);
  case UN_COS: return cosf(a);
  case UN_SIN: return sinf(a);
  case UN_TAN: return tanf(a);
  case UN_ASIN: return asinf(a);
  case UN_ACOS: return acosf(a);
  case UN_ATAN: return atanf(a);
  case UN_FLOOR: return floorf(a);
  case UN_CEIL: return ceilf(a);
  case UN_RINT: return rintf(a);
  }
  return NAN;
}

static double unary_d(int op, double a) {
  switch ((UnOp)op) {
  case UN_NEG: return -a;
  case UN_EXP: return exp(a);
  case UN_LOG: return log(a);
  case UN_SQRT: return sqrt(a);
  case UN_TANH: return tanh(a);
  case UN_ABS: return fabs(a);
  case UN_LOG1P: return log1p(a);
  case UN_EXPM1: return expm1(a);
  case UN_ERF: return erf(a);
  case UN_ERFC: return erfc(a);
  case UN_COS: return cos(a);
  case UN_SIN: return sin(a);
  case UN_TAN: return tan(a);
  case UN_ASIN: return asin(a);
  case UN_ACOS: return acos(a);
  case UN_ATAN: return atan(a);
  case UN_FLOOR: return floor(a);
  case UN_CEIL: return ceil(a);
  case UN_RINT: return rint(a);
  }
  return NAN;
}

/* Integer to float: u8 and bool are unsigned, and so their int64 value. */
static float conv_f(Ev *E, const KX *x) {
  switch (x->a->cls) {
  case KC_I: return (float)ev_i(E, x->a);
  case KC_F: return ev_f(E, x->a);
  case KC_D: return (float)ev_d(E, x->a);
  }
  return 0;
}

static float ev_f(Ev *E, const KX *x) {
  switch (x->op) {
  case K_ZIP: return zip(E, x).f;
  case K_VLOAD: return ((const float *)E->bufs[x->id].data)[at_lane(E, x->id, x->a)];
  case K_VLOCAL: return x->arr[E->lane].f;
  case K_BCAST: return ev_f(E, x->a);
  case K_REDUCE: return reduce(E, x).f;
  case K_CONST: return x->k.f;
  case K_LOCAL: return E->locals[x->id].f;
  case K_ELEM: return x->arr[elem(E, x->id, x->n, x->a)].f;
  case K_LOAD: return ((const float *)E->bufs[x->id].data)[at(E, x->id, x->a, "load of")];
  case K_GLOAD: return ev_i(E, x->a) ? ev_f(E, x->b) : ev_f(E, x->c);
  case K_NEG: return -ev_f(E, x->a);
  case K_UNARY: return unary_f(x->sub, ev_f(E, x->a));
  case K_ADD: return ev_f(E, x->a) + ev_f(E, x->b);
  case K_SUB: return ev_f(E, x->a) - ev_f(E, x->b);
  case K_MUL: return ev_f(E, x->a) * ev_f(E, x->b);
  case K_DIV: return ev_f(E, x->a) / ev_f(E, x->b);
  case K_FMAX: case K_FMIN: {
    float a = ev_f(E, x->a), b = ev_f(E, x->b);
    return (x->op == K_FMAX ? a > b : a < b) || a != a ? a : b;
  }
  case K_POW: return powf(ev_f(E, x->a), ev_f(E, x->b));
  case K_SELECT: {
    int64_t c = ev_i(E, x->a);
    float a = ev_f(E, x->b), b = ev_f(E, x->c);
    return c ? a : b;
  }
  case K_CONV: return conv_f(E, x);
  case K_RAND: return ir_random_uniform((uint64_t)x->k.i, (uint64_t)ev_i(E, x->a));
  case K_VAR: case K_SYM: case K_CMP: case K_AND: case K_OR: case K_MOD: case K_MAX: case K_MIN: break;
  }
  fail(E, "internal error: f32 evaluation of op %d", (int)x->op);
}

static double conv_d(Ev *E, const KX *x) {
  switch (x->a->cls) {
  case KC_I: return (double)ev_i(E, x->a);
  case KC_F: return ev_f(E, x->a);
  case KC_D: return ev_d(E, x->a);
  }
  return 0;
}

static double ev_d(Ev *E, const KX *x) {
  switch (x->op) {
  case K_ZIP: return zip(E, x).d;
  case K_VLOAD: return ((const double *)E->bufs[x->id].data)[at_lane(E, x->id, x->a)];
  case K_VLOCAL: return x->arr[E->lane].d;
  case K_BCAST: return ev_d(E, x->a);
  case K_REDUCE: return reduce(E, x).d;
  case K_CONST: return x->k.d;
  case K_LOCAL: return E->locals[x->id].d;
  case K_ELEM: return x->arr[elem(E, x->id, x->n, x->a)].d;
  case K_LOAD: return ((const double *)E->bufs[x->id].data)[at(E, x->id, x->a, "load of")];
  case K_GLOAD: return ev_i(E, x->a) ? ev_d(E, x->b) : ev_d(E, x->c);
  case K_NEG: return -ev_d(E, x->a);
  case K_UNARY: return unary_d(x->sub, ev_d(E, x->a));
  case K_ADD: return ev_d(E, x->a) + ev_d(E, x->b);
  case K_SUB: return ev_d(E, x->a) - ev_d(E, x->b);
  case K_MUL: return ev_d(E, x->a) * ev_d(E, x->b);
  case K_DIV: return ev_d(E, x->a) / ev_d(E, x->b);
  case K_FMAX: case K_FMIN: {
    double a = ev_d(E, x->a), b = ev_d(E, x->b);
    return (x->op == K_FMAX ? a > b : a < b) || a != a ? a : b;
  }
  case K_POW: return pow(ev_d(E, x->a), ev_d(E, x->b));
  case K_SELECT: {
    int64_t c = ev_i(E, x->a);
    double a = ev_d(E, x->b), b = ev_d(E, x->c);
    return c ? a : b;
  }
  case K_CONV: return conv_d(E, x);
  case K_VAR: case K_SYM: case K_CMP: case K_AND: case K_OR: case K_MOD: case K_MAX: case K_MIN: case K_RAND: break;
  }
  fail(E, "internal error: f64 evaluation of op %d", (int)x->op);
}

static void put(const KBuf *b, int64_t i, KVal v) {
  switch (b->dt) {
  case DT_F32: ((float *)b->data)[i] = v.f; break;
  case DT_F64: ((double *)b->data)[i] = v.d; break;
  case DT_I64: ((int64_t *)b->data)[i] = v.i; break;
  case DT_I32: ((int32_t *)b->data)[i] = (int32_t)v.i; break;
  case DT_U8: ((uint8_t *)b->data)[i] = (uint8_t)v.i; break;
  case DT_BOOL: case DT_COUNT: break;
  }
}

/* bK[I] = X; an n-lane X is evaluated in every lane, then written to
 * bK[I .. I + n - 1], all of which must be in range. */
static void store(Ev *E, const KS *s) {
  const KBuf *b = &E->bufs[s->id];
  int64_t i = at(E, s->id, s->index, "store to");
  if (s->n == 1) {
    put(b, i, value(E, s->value));
    return;
  }
  KVal v[KIR_MAX_LANES];
  lanes(E, s->value, v);
  if (i > b->size - s->n) out_of_range(E, s->id, i + s->n - 1, "store to");
  for (int k = 0; k < s->n; k++) put(b, i + k, v[k]);
}

static KVal value(Ev *E, const KX *x) {
  KVal v;
  switch (x->cls) {
  case KC_I: v.i = ev_i(E, x); break;
  case KC_F: v.f = ev_f(E, x); break;
  case KC_D: v.d = ev_d(E, x); break;
  }
  return v;
}

static void fill(Ev *E, const KS *s) {
  KVal v = value(E, s->value);
  for (int64_t i = 0; i < s->n; i++) s->arr[i] = v;
}

static void loop(Ev *E, const KS *s);

static void run(Ev *E, const KS *s) {
  for (; s; s = s->next) {
    switch (s->kind) {
    case KS_LOOP: loop(E, s); break;
    case KS_STORE: store(E, s); break;
    case KS_SET: E->locals[s->id] = value(E, s->value); break;
    case KS_FILL: fill(E, s); break;
    case KS_SET_ELEM: {
      int64_t i = elem(E, s->id, s->n, s->index);
      s->arr[i] = value(E, s->value);
      break;
    }
    case KS_SET_LANES: {
      KVal v[KIR_MAX_LANES];
      lanes(E, s->value, v);
      memcpy(s->arr, v, sizeof(KVal) * (size_t)s->value->lanes);
      break;
    }
    case KS_IF: run(E, ev_i(E, s->value) ? s->body : s->orelse); break;
    }
  }
}

/* for (i = 0; i < n; i += step); the loop ends before i would overflow. */
static void loop(Ev *E, const KS *s) {
  int64_t n = ev_i(E, s->extent);
  for (int64_t i = 0; i < n;) {
    E->vars[s->id] = i;
    run(E, s->body);
    i = iadd(E, i, s->step, DT_I64);
    if (!s->invariant) n = ev_i(E, s->extent);
  }
}

/* --- compiling a kernel: ids, scopes and types checked once ------------------------- */

static KCls cls_of(DType t) { return t == DT_F32 ? KC_F : t == DT_F64 ? KC_D : KC_I; }
static int known_type(DType t) { return (t >= 0 && t < DT_COUNT) || t == DT_BOOL; }

static KX *node(Ev *E, KOp op, DType t) {
  KX *x = arena_alloc(&E->a, sizeof *x);
  x->op = op, x->cls = cls_of(t), x->sub = t, x->lanes = 1;
  return x;
}

static const char *tname(DType t) { return known_type(t) ? rt_dtype_name(t) : "an unknown type"; }

/* Operand e of some construct must have type t. */
static void want_type(Ev *E, const Expr *e, DType t, const char *what) {
  if (!e) fail(E, "%s is missing", what);
  if (e->type != t) fail(E, "%s is %s, not %s", what, tname(e->type), tname(t));
}

static KX *cexpr(Ev *E, const Expr *e);

/* Operand e of some construct must have n lanes. */
static void want_lanes(Ev *E, const Expr *e, int n, const char *what) {
  if (e && e->lanes != n) fail(E, "%s has %d lanes, not %d", what, e->lanes, n);
}

/* A lane-wise node: x gets e's lanes, which each operand must have. */
static KX *lanewise(Ev *E, KX *x, const Expr *e) {
  want_lanes(E, e->a, e->lanes, "an operand");
  want_lanes(E, e->b, e->lanes, "an operand");
  want_lanes(E, e->c, e->lanes, "an operand");
  x->lanes = e->lanes;
  return x;
}

static KX *unary(Ev *E, const Expr *e) {
  if (e->op < 0 || e->op > UN_RINT) fail(E, "unknown unary operator %d", e->op);
  int neg = e->op == UN_NEG;
  if (neg ? !(kir_is_float(e->type) || e->type == DT_I32 || e->type == DT_I64) : !kir_is_float(e->type))
    fail(E, "%s of %s", kir_unop_name((UnOp)e->op), tname(e->type));
  want_type(E, e->a, e->type, "the operand of a unary operator");
  KX *x = node(E, neg ? K_NEG : K_UNARY, e->type);
  if (!neg) x->sub = e->op;
  x->a = cexpr(E, e->a);
  return lanewise(E, x, e);
}

static KOp binop_kind(BinOp op, DType t) {
  switch (op) {
  case BIN_ADD: return K_ADD;
  case BIN_SUB: return K_SUB;
  case BIN_MUL: return K_MUL;
  case BIN_DIV: return K_DIV;
  case BIN_MOD: return K_MOD;
  case BIN_POW: return K_POW;
  case BIN_MAX: return kir_is_float(t) ? K_FMAX : K_MAX;
  case BIN_MIN: return kir_is_float(t) ? K_FMIN : K_MIN;
  case BIN_AND: return K_AND;
  case BIN_OR: return K_OR;
  case BIN_LT: case BIN_LE: case BIN_GT: case BIN_GE: case BIN_EQ: case BIN_NE: break;
  }
  return K_CMP;
}

static KX *binary(Ev *E, const Expr *e) {
  if (e->op < 0 || e->op > BIN_OR) fail(E, "unknown binary operator %d", e->op);
  BinOp op = (BinOp)e->op;
  if (!e->a || !e->b) fail(E, "%s without two operands", kir_binop_name(op));
  DType t = e->a->type;
  if (e->b->type != t || kir_binop_type(op, t) != e->type)
    fail(E, "%s of %s and %s typed %s", kir_binop_name(op), tname(t), tname(e->b->type), tname(e->type));
  KX *x = node(E, binop_kind(op, t), e->type);
  if (x->op == K_CMP) x->sub = op;
  x->a = cexpr(E, e->a), x->b = cexpr(E, e->b);
  return lanewise(E, x, e);
}

/* fma(a, b, c) as a multiply then an add (one of the two roundings the
 * kernel IR allows). */
static KX *fma_expr(Ev *E, const Expr *e) {
  if (!e->a || !e->b || !e->c || !kir_is_float(e->type)) fail(E, "an fma of %s without three operands", tname(e->type));
  want_type(E, e->a, e->type, "an fma's operand");
  want_type(E, e->b, e->type, "an fma's operand");
  want_type(E, e->c, e->type, "an fma's operand");
  KX *m = node(E, binop_kind(BIN_MUL, e->type), e->type), *x = node(E, binop_kind(BIN_ADD, e->type), e->type);
  m->a = cexpr(E, e->a), m->b = cexpr(E, e->b), m->lanes = e->lanes;
  x->a = m, x->b = cexpr(E, e->c);
  return lanewise(E, x, e);
}

static void check_buf(Ev *E, int b) {
  if (b < 0 || b >= E->p->nbufs) fail(E, "buffer b%d does not exist", b);
}

static KX *var(Ev *E, const Expr *e) {
  if (e->id < 0 || e->id >= E->nvars || !E->var_in[e->id]) fail(E, "loop variable i%d used outside its loop", e->id);
  want_type(E, e, DT_I64, "a loop variable");
  KX *x = node(E, K_VAR, DT_I64);
  x->id = e->id;
  return x;
}

static KX *sym(Ev *E, const Expr *e) {
  if (e->id < 0 || e->id >= E->p->g->nsyms) fail(E, "symbol %d does not exist", e->id);
  want_type(E, e, DT_I64, "a symbol");
  KX *x = node(E, K_SYM, DT_I64);
  x->id = e->id;
  return x;
}

/* Local array id's element index, or scalar id when index is NULL. */
static KX *element(Ev *E, int id, const Expr *index, const char *what) {
  if (!index != !E->local_n[id])
    fail(E, index ? "scalar local v%d %s with an index" : "local array v%d %s without an index", id, what);
  if (index) want_type(E, index, DT_I64, "a local array's index");
  return index ? cexpr(E, index) : NULL;
}

static KX *local(Ev *E, const Expr *e) {
  if (e->id < 0 || e->id >= E->nlocals || E->local_ty[e->id] < 0) fail(E, "local v%d read outside its scope", e->id);
  want_type(E, e, (DType)E->local_ty[e->id], "a local's read");
  if (e->lanes != E->local_lanes[e->id]) fail(E, "local v%d of %d lanes read as %d", e->id, E->local_lanes[e->id], e->lanes);
  KX *a = element(E, e->id, e->a, "read");
  KX *x = node(E, a ? K_ELEM : e->lanes > 1 ? K_VLOCAL : K_LOCAL, e->type);
  x->id = e->id, x->a = a, x->lanes = e->lanes;
  x->arr = E->local_arr[e->id], x->n = E->local_n[e->id];
  return x;
}

/* bK[I], or the guarded G ? bK[I] : X. */
static KX *load(Ev *E, const Expr *e) {
  check_buf(E, e->id);
  want_type(E, e, E->p->bufs[e->id].dtype, "a load");
  want_type(E, e->a, DT_I64, "an index");
  want_lanes(E, e->a, 1, "an index");
  KX *x = node(E, e->lanes > 1 ? K_VLOAD : K_LOAD, e->type);
  x->id = e->id, x->a = cexpr(E, e->a), x->lanes = e->lanes;
  if (!e->b) return x;
  if (e->lanes > 1) fail(E, "a guarded load of %d lanes", e->lanes);
  want_lanes(E, e->b, 1, "a load's guard"), want_lanes(E, e->c, 1, "a guarded load's otherwise value");
  want_type(E, e->b, DT_BOOL, "a load's guard");
  if (!e->c) fail(E, "a guarded load of b%d without its otherwise value", e->id);
  want_type(E, e->c, e->type, "a guarded load's otherwise value");
  KX *g = node(E, K_GLOAD, e->type);
  g->a = cexpr(E, e->b), g->b = x, g->c = cexpr(E, e->c);
  return g;
}

static KX *constant(Ev *E, const Expr *e) {
  KX *x = node(E, K_CONST, e->type);
  switch (e->type) {
  case DT_F32: x->k.f = (float)e->f; break;
  case DT_F64: x->k.d = e->f; break;
  case DT_I64: case DT_I32: case DT_U8: case DT_BOOL:
    if (e->kind != EX_ICONST || narrow(e->i, e->type) != e->i || (e->type == DT_BOOL && (e->i & ~1)))
      fail(E, "constant %lld is not %s", (long long)e->i, tname(e->type));
    x->k.i = e->i;
    break;
  case DT_COUNT: default: fail(E, "a constant of %s", tname(e->type));
  }
  if (kir_is_float(e->type) != (e->kind == EX_FCONST)) fail(E, "a constant of the wrong kind for %s", tname(e->type));
  return x;
}

static KX *cast(Ev *E, const Expr *e) {
  if (!known_type(e->type) || e->type == DT_BOOL) fail(E, "cast to %s", tname(e->type));
  if (!e->a) fail(E, "a cast of nothing");
  if (!known_type(e->a->type)) fail(E, "cast of %s", tname(e->a->type));
  KX *x = node(E, K_CONV, e->type);
  x->a = cexpr(E, e->a);
  return lanewise(E, x, e);
}

/* bcast(X, n): scalar X in each of n lanes; reduce_add(X): the scalar
 * pairwise sum of X's lanes. */
static KX *lanes_of(Ev *E, const Expr *e) {
  int bcast = e->kind == EX_BROADCAST;
  if (!e->a) fail(E, "%s of nothing", bcast ? "a broadcast" : "a reduction");
  want_type(E, e->a, e->type, bcast ? "a broadcast's operand" : "a reduction's operand");
  if (bcast) want_lanes(E, e->a, 1, "a broadcast's operand");
  else if (e->op != BIN_ADD || kir_binop_type(BIN_ADD, e->type) != e->type || e->lanes != 1)
    fail(E, "a reduction by %d of %s to %d lanes", e->op, tname(e->type), e->lanes);
  KX *x = node(E, bcast ? K_BCAST : K_REDUCE, e->type);
  x->a = cexpr(E, e->a), x->lanes = e->lanes;
  return x;
}

static KX *cexpr(Ev *E, const Expr *e) {
  KX *x;
  if (!e) fail(E, "an expression is missing");
  if (!kir_lanes_ok(e->lanes)) fail(E, "an expression of %d lanes", e->lanes);
  int scalar = e->kind == EX_FCONST || e->kind == EX_ICONST || e->kind == EX_VAR || e->kind == EX_SYM || e->kind == EX_RAND;
  if (scalar && e->lanes != 1) fail(E, "a constant, loop variable, symbol or rand of %d lanes", e->lanes);
  switch (e->kind) {
  case EX_FCONST: case EX_ICONST: return constant(E, e);
  case EX_VAR: return var(E, e);
  case EX_SYM: return sym(E, e);
  case EX_BROADCAST: case EX_REDUCE: return lanes_of(E, e);
  case EX_LOCAL: return local(E, e);
  case EX_LOAD: return load(E, e);
  case EX_UNARY: return unary(E, e);
  case EX_BINARY: return binary(E, e);
  case EX_SELECT:
    want_type(E, e->a, DT_BOOL, "a select's condition");
    want_type(E, e->b, e->type, "a select's first arm");
    want_type(E, e->c, e->type, "a select's second arm");
    x = node(E, K_SELECT, e->type);
    x->a = cexpr(E, e->a), x->b = cexpr(E, e->b), x->c = cexpr(E, e->c);
    return lanewise(E, x, e);
  case EX_CAST: return cast(E, e);
  case EX_FMA: return fma_expr(E, e);
  case EX_ZIP:
    if (!e->a || !e->b || e->lanes < 2 || e->op < 0 || e->op > 3) fail(E, "a zip of %d lanes, op %d", e->lanes, e->op);
    want_type(E, e->a, e->type, "a zip's operand");
    want_type(E, e->b, e->type, "a zip's operand");
    x = node(E, K_ZIP, e->type);
    x->sub = e->op, x->a = cexpr(E, e->a), x->b = cexpr(E, e->b);
    return lanewise(E, x, e);
  case EX_RAND:
    want_type(E, e, DT_F32, "rand");
    want_type(E, e->a, DT_I64, "rand's counter");
    want_lanes(E, e->a, 1, "rand's counter");
    x = node(E, K_RAND, DT_F32);
    x->k.i = e->i, x->a = cexpr(E, e->a);
    return x;
  }
  fail(E, "unknown expression kind %d", (int)e->kind);
}

/* Whether e reads anything a loop body can change (a local or a buffer). */
static int reads_state(void *ctx, const Expr *e) { return e->kind == EX_LOCAL || e->kind == EX_LOAD; }
static int varies(const Expr *e) {
  KirVisitor v = {NULL, NULL, reads_state};
  return kir_walk_expr(&v, e);
}

static KS *cblock(Ev *E, const Stmt *s);

static KS *cloop(Ev *E, const Stmt *s, KS *k) {
  if (s->id < 0 || s->id >= E->nvars) fail(E, "loop variable i%d does not exist", s->id);
  if (E->var_in[s->id]) fail(E, "loop variable i%d reused inside its own loop", s->id);
  if (s->step < 1) fail(E, "loop i%d steps by %lld", s->id, (long long)s->step);
  want_type(E, s->extent, DT_I64, "a loop's extent");
  want_lanes(E, s->extent, 1, "a loop's extent");
  k->extent = cexpr(E, s->extent);
  k->invariant = !varies(s->extent);
  k->step = s->step;
  E->var_in[s->id] = 1;
  k->body = cblock(E, s->body);
  E->var_in[s->id] = 0;
  return k;
}

/* The largest local array keval makes (a register tile is far smaller). */
#define KEVAL_MAX_LOCAL_ARRAY ((int64_t)1 << 24)

/* local vK: T = X, or local vK: T[n] = X (every element); each array
 * declaration has its own elements.  The local is not in scope in its
 * own initialiser. */
static KS *cdeclare(Ev *E, const Stmt *s, KS *k) {
  if (s->id < 0 || s->id >= E->nlocals) fail(E, "local v%d does not exist", s->id);
  if (!known_type(s->type)) fail(E, "local v%d of unknown type", s->id);
  if (s->count < 0 || s->count > KEVAL_MAX_LOCAL_ARRAY)
    fail(E, "local array v%d of %lld elements", s->id, (long long)s->count);
  want_type(E, s->value, s->type, "a local's value");
  int n = s->value->lanes;
  if (s->count && n != 1) fail(E, "local array v%d of %d lanes", s->id, n);
  KX *v = cexpr(E, s->value);
  E->local_ty[s->id] = s->type;
  E->local_n[s->id] = s->count;
  E->local_lanes[s->id] = n;
  E->local_arr[s->id] = s->count || n > 1 ? arena_alloc(&E->a, sizeof(KVal) * (size_t)(s->count + n)) : NULL;
  k->kind = s->count ? KS_FILL : n > 1 ? KS_SET_LANES : KS_SET;
  k->arr = E->local_arr[s->id], k->n = s->count;
  k->value = v;
  return k;
}

static KS *cstmt(Ev *E, const Stmt *s) {
  KS *k = arena_alloc(&E->a, sizeof *k);
  k->id = s->id;
  switch (s->kind) {
  case ST_LOOP: k->kind = KS_LOOP; return cloop(E, s, k);
  case ST_STORE:
    check_buf(E, s->id);
    if (E->p->bufs[s->id].kind == BUF_INPUT) fail(E, "store into input b%d (%s)", s->id, bname(E, s->id));
    if (E->p->bufs[s->id].kind == BUF_DERIVED && E->f != E->p->prepare)
      fail(E, "store into derived b%d (%s) outside prepare", s->id, bname(E, s->id));
    k->kind = KS_STORE;
    want_type(E, s->index, DT_I64, "an index");
    want_lanes(E, s->index, 1, "an index");
    want_type(E, s->value, E->p->bufs[s->id].dtype, "a stored value");
    k->index = cexpr(E, s->index);
    k->value = cexpr(E, s->value);
    k->n = s->value->lanes;
    return k;
  case ST_LOCAL: return cdeclare(E, s, k);
  case ST_ASSIGN:
    if (s->id < 0 || s->id >= E->nlocals || E->local_ty[s->id] < 0) fail(E, "local v%d assigned outside its scope", s->id);
    k->index = element(E, s->id, s->index, "assigned");
    k->kind = k->index ? KS_SET_ELEM : E->local_lanes[s->id] > 1 ? KS_SET_LANES : KS_SET;
    k->arr = E->local_arr[s->id], k->n = E->local_n[s->id];
    want_type(E, s->value, (DType)E->local_ty[s->id], "an assigned value");
    want_lanes(E, s->value, E->local_lanes[s->id], "an assigned value");
    k->value = cexpr(E, s->value);
    return k;
  case ST_IF:
    k->kind = KS_IF;
    want_type(E, s->value, DT_BOOL, "an if's condition");
    want_lanes(E, s->value, 1, "an if's condition");
    k->value = cexpr(E, s->value);
    k->body = cblock(E, s->body);
    k->orelse = cblock(E, s->orelse);
    return k;
  }
  fail(E, "unknown statement kind %d", (int)s->kind);
}

/* A block: locals declared in it go out of scope at its end. */
static KS *cblock(Ev *E, const Stmt *s) {
  size_t n = (size_t)E->nlocals;
  int *ty = arena_alloc(&E->a, sizeof(int) * (n + 1));
  KVal **arr = arena_alloc(&E->a, sizeof(KVal *) * (n + 1));
  int64_t *cnt = arena_alloc(&E->a, sizeof(int64_t) * (n + 1));
  int *ln = arena_alloc(&E->a, sizeof(int) * (n + 1));
  memcpy(ty, E->local_ty, sizeof(int) * n), memcpy(arr, E->local_arr, sizeof(KVal *) * n);
  memcpy(cnt, E->local_n, sizeof(int64_t) * n), memcpy(ln, E->local_lanes, sizeof(int) * n);
  KS *head = NULL, **tail = &head;
  for (; s; s = s->next) {
    *tail = cstmt(E, s);
    tail = &(*tail)->next;
  }
  memcpy(E->local_ty, ty, sizeof(int) * n), memcpy(E->local_arr, arr, sizeof(KVal *) * n);
  memcpy(E->local_n, cnt, sizeof(int64_t) * n), memcpy(E->local_lanes, ln, sizeof(int) * n);
  return head;
}

/* Compiles kernel ki; sizes the loop-variable and local storage for it. */
static KS *ckernel(Ev *E, int ki) {
  const Kernel *k = &E->f->kernels[ki];
  E->ki = ki;
  if (k->nvars < 0 || k->nlocals < 0) fail(E, "negative variable counts");
  E->nvars = k->nvars, E->nlocals = k->nlocals;
  E->var_in = arena_alloc(&E->a, (size_t)k->nvars + 1);
  E->local_ty = arena_alloc(&E->a, sizeof(int) * ((size_t)k->nlocals + 1));
  for (int i = 0; i < k->nlocals; i++) E->local_ty[i] = -1;
  E->local_arr = arena_alloc(&E->a, sizeof(KVal *) * ((size_t)k->nlocals + 1));
  E->local_n = arena_alloc(&E->a, sizeof(int64_t) * ((size_t)k->nlocals + 1));
  E->local_lanes = arena_alloc(&E->a, sizeof(int) * ((size_t)k->nlocals + 1));
  E->vars = arena_alloc(&E->a, sizeof(int64_t) * ((size_t)k->nvars + 1));
  E->locals = arena_alloc(&E->a, sizeof(KVal) * ((size_t)k->nlocals + 1));
  return cblock(E, k->body);
}

/* --- binding buffers ------------------------------------------------------------ */

static int arg_of(const Func *f, int b) {
  for (int i = 0; i < f->nargs; i++)
    if (f->args[i] == b) return i;
  return -1;
}

static void bind_arg(Ev *E, int b, const KevalArgs *a) {
  const Buffer *buf = &E->p->bufs[b];
  KBuf *kb = &E->bufs[b];
  int i = arg_of(E->f, b);
  if (i < 0) {
    kb->why = "not an argument of this function";
    return;
  }
  kb->data = a->args ? a->args[i] : NULL;
  kb->size = ir_numel(E->p->g, &buf->shape, E->syms);
  if (!kb->data && kb->size > 0) kb->why = "no argument given";
}

static void bind_tensor(Ev *E, int b, const KevalArgs *a) {
  const Buffer *buf = &E->p->bufs[b];
  KBuf *kb = &E->bufs[b];
  RtTensor *t = a->tensors ? rt_set_find(a->tensors, buf->name) : NULL;
  if (!t) kb->why = "no tensor of its name";
  else if (t->dtype != buf->dtype || rt_tensor_numel(t) != buf->size) kb->why = "its tensor has another dtype or size";
  else kb->data = t->data, kb->size = buf->size;
}

/* Whether temporaries of dtype t have offsets: memplan has sized the arena. */
static int planned(const Program *p, DType t) {
  if (p->arena_size[t] > 0) return 1;
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b].kind == BUF_TEMP && p->bufs[b].dtype == t && p->bufs[b].size > 0) return 0;
  return 1;
}

static void *poisoned(Ev *E, int64_t n, DType t) {
  size_t bytes = (size_t)(n > 0 ? n : 1) * rt_dtype_size(t);
  void *m = rt_xmalloc(bytes);
  memset(m, 0xff, bytes);
  return m;
}

static void bind_temp(Ev *E, int b) {
  const Buffer *buf = &E->p->bufs[b];
  KBuf *kb = &E->bufs[b];
  DType t = buf->dtype;
  kb->size = buf->size;
  if (!planned(E->p, t)) {
    kb->data = E->own[b] = poisoned(E, buf->size, t);
    return;
  }
  if (buf->offset < 0 || buf->size < 0 || buf->offset > E->p->arena_size[t] - buf->size)
    fail(E, "temporary b%d (%s) at offset %lld does not fit in the %s arena of %lld elements", b, bname(E, b),
         (long long)buf->offset, rt_dtype_name(t), (long long)E->p->arena_size[t]);
  if (!E->arena[t]) E->arena[t] = poisoned(E, E->p->arena_size[t], t);
  kb->data = (char *)E->arena[t] + buf->offset * (int64_t)rt_dtype_size(t);
}

typedef struct Touched {
  char *t;
  int n;
} Touched;

static int mark_load(void *ctx, const Expr *e) {
  Touched *t = ctx;
  if (e->kind == EX_LOAD && e->id >= 0 && e->id < t->n) t->t[e->id] = 1;
  return 0;
}

static int mark_store(void *ctx, const Stmt *s) {
  Touched *t = ctx;
  if (s->kind == ST_STORE && s->id >= 0 && s->id < t->n) t->t[s->id] = 1;
  return 0;
}

/* Which buffers some kernel of the program loads or stores: a temporary
 * none touches (fusion made it unnecessary) has no place in the arena
 * and is not bound. */
static char *touched(Ev *E) {
  Touched t = {arena_alloc(&E->a, (size_t)E->p->nbufs + 1), E->p->nbufs};
  KirVisitor v = {&t, mark_store, mark_load};
  kir_walk_program(&v, E->p);
  return t.t;
}

static void bind(Ev *E, const KevalArgs *a) {
  const Program *p = E->p;
  const char *used = touched(E);
  for (int s = 0; s < p->g->nsyms && s < IR_MAX_SYMS; s++) {
    E->syms[s] = a->syms ? a->syms[s] : 0;
    if (E->syms[s] < 0 || E->syms[s] > p->g->syms[s].max)
      fail(E, "symbol %s = %lld is outside [0, %lld]", p->g->syms[s].name, (long long)E->syms[s],
           (long long)p->g->syms[s].max);
  }
  for (int i = 0; i < E->f->nargs; i++) {
    int b = E->f->args[i];
    check_buf(E, b);
    if (p->bufs[b].kind != BUF_INPUT && p->bufs[b].kind != BUF_OUTPUT) fail(E, "argument b%d is not an input or output", b);
  }
  for (int b = 0; b < p->nbufs; b++) {
    const Buffer *buf = &p->bufs[b];
    if (buf->dtype < 0 || buf->dtype >= DT_COUNT) fail(E, "buffer b%d has an unknown dtype", b);
    E->bufs[b].dt = buf->dtype;
    switch (buf->kind) {
    case BUF_INPUT: case BUF_OUTPUT: bind_arg(E, b, a); break;
    case BUF_PARAM: case BUF_STATE: bind_tensor(E, b, a); break;
    case BUF_TEMP:
      if (used[b]) bind_temp(E, b);
      break;
    case BUF_DERIVED:
      E->bufs[b].size = buf->size;
      E->bufs[b].data = E->own[b] = poisoned(E, buf->size, buf->dtype);
      break;
    default: fail(E, "buffer b%d has an unknown kind", b);
    }
  }
}

static void release(Ev *E) {
  for (int t = 0; t < DT_COUNT; t++) rt_xfree(E->arena[t]);
  for (int b = 0; E->own && b < E->p->nbufs; b++) rt_xfree(E->own[b]);
  rt_xfree(E->own);
  rt_xfree(E->bufs);
  arena_free(&E->a);
}

static int is_derived_load(void *ctx, const Expr *e) {
  const Program *p = ctx;
  return e->kind == EX_LOAD && e->id >= 0 && e->id < p->nbufs && p->bufs[e->id].kind == BUF_DERIVED;
}

/* Whether f reads a derived buffer, so its call begins with prepare. */
static int reads_derived(const Program *p, const Func *f) {
  KirVisitor v = {(void *)p, NULL, is_derived_load};
  for (int k = 0; k < f->nkernels; k++)
    if (kir_walk_block(&v, f->kernels[k].body)) return 1;
  return 0;
}

/* Every kernel of f, compiled one at a time. */
static void run_func(Ev *E, const Func *f) {
  const Func *saved = E->f;
  E->f = f;
  for (int ki = 0; ki < f->nkernels; ki++) {
    arena_free(&E->a);
    run(E, ckernel(E, ki));
  }
  E->f = saved, E->ki = -1;
}

/* The evaluator lives on the heap: after a longjmp only memory is trusted
 * (setjmp keeps no locals that changed since it was called). */
RtStatus kir_eval(const Program *p, const Func *f, const KevalArgs *a, RtError *err) {
  if (p->g->nsyms > IR_MAX_SYMS) return rt_fail(err, RT_ERR_FORMAT, "%s: more than %d symbols", f->name, IR_MAX_SYMS);
  Ev *E = rt_xcalloc(1, sizeof *E);
  E->p = p, E->f = f, E->err = err, E->ki = -1;
  arena_init(&E->a);
  E->bufs = rt_xcalloc((size_t)p->nbufs + 1, sizeof *E->bufs);
  E->own = rt_xcalloc((size_t)p->nbufs + 1, sizeof *E->own);
  RtStatus st = RT_ERR_FORMAT;
  if (!setjmp(E->jb)) {
    bind(E, a);
    if (p->prepare && f != p->prepare && reads_derived(p, f)) run_func(E, p->prepare);
    run_func(E, f);
    st = RT_OK;
  }
  release(E);
  rt_xfree(E);
  return st;
}
