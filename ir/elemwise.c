/*
 * elemwise.c — the rows of elemwise.def as kernel-expression builders.
 *
 * Each row's formulas are expanded three times below: into a forward
 * builder, a builder of the vjp for operand A and one for operand B.  The
 * macros they are written with build kernel.h expressions on the caller's
 * Program, so the same tree is printed by both emitters (after lowering)
 * and evaluated by the reference interpreter: an op cannot mean one thing
 * in one place and another elsewhere.  Builders share subtrees (A appears
 * in several places), which is safe because expressions are never
 * rewritten in place.  Dispatch is a table indexed by OpKind, filled from
 * the same rows, so a row is all an elementwise op needs.
 */
#include <math.h>
#include <string.h>

#include "ir/elemwise.h"

typedef struct EwArgs {
  Program *p;
  const AttrScalar *at;     /* the forward op's attributes */
  Expr *a, *b, *y, *d;
} EwArgs;

#define A (E->a)
#define B (E->b)
#define Y (E->y)
#define D (E->d)
#define AT (E->at)
#define NONE NULL
#define EXPONENT (B ? B : K(AT->f))
#define K(v) kx_f(E->p, (v))
#define U(op, x) kx_un(E->p, op, x)
#define BI(op, x, y) kx_bin(E->p, op, x, y)
#define ADD(x, y) BI(BIN_ADD, x, y)
#define SUB(x, y) BI(BIN_SUB, x, y)
#define MUL(x, y) BI(BIN_MUL, x, y)
#define DIV(x, y) BI(BIN_DIV, x, y)
#define MAX(x, y) BI(BIN_MAX, x, y)
#define MIN(x, y) BI(BIN_MIN, x, y)
#define POW(x, y) BI(BIN_POW, x, y)
#define LT(x, y) BI(BIN_LT, x, y)
#define LE(x, y) BI(BIN_LE, x, y)
#define GT(x, y) BI(BIN_GT, x, y)
#define GE(x, y) BI(BIN_GE, x, y)
#define EQ(x, y) BI(BIN_EQ, x, y)
#define NE(x, y) BI(BIN_NE, x, y)
#define AND(x, y) BI(BIN_AND, x, y)
#define SEL(c, x, y) kx_select(E->p, c, x, y)
#define NEG(x) U(UN_NEG, x)
#define EXP(x) U(UN_EXP, x)
#define EXPM1(x) U(UN_EXPM1, x)
#define LOG(x) U(UN_LOG, x)
#define LOG1P(x) U(UN_LOG1P, x)
#define SQRT(x) U(UN_SQRT, x)
#define TANH(x) U(UN_TANH, x)
#define ABS(x) U(UN_ABS, x)
#define ERF(x) U(UN_ERF, x)
#define ERFC(x) U(UN_ERFC, x)
#define COS(x) U(UN_COS, x)
#define SIN(x) U(UN_SIN, x)
#define TAN(x) U(UN_TAN, x)
#define ASIN(x) U(UN_ASIN, x)
#define ACOS(x) U(UN_ACOS, x)
#define ATAN(x) U(UN_ATAN, x)
#define FLOOR(x) U(UN_FLOOR, x)
#define CEIL(x) U(UN_CEIL, x)
#define RINT(x) U(UN_RINT, x)

#define EW(id, name, mn, mx, attrs, fwd, na, da, nb, db)                   \
  static Expr *fwd_##id(const EwArgs *E) { return (void)E, fwd; }         \
  static Expr *vjp_a_##id(const EwArgs *E) { return (void)E, da; }        \
  static Expr *vjp_b_##id(const EwArgs *E) { return (void)E, db; }
#include "ir/elemwise.def"
#undef EW

typedef struct EwRow {
  int present;
  unsigned needs[2];
  Expr *(*fwd)(const EwArgs *);
  Expr *(*vjp[2])(const EwArgs *);
} EwRow;

static const EwRow rows[OP_COUNT] = {
#define EW(id, name, mn, mx, attrs, fwd, na, da, nb, db) \
  [OP_##id] = {1, {na, nb}, fwd_##id, {vjp_a_##id, vjp_b_##id}},
#include "ir/elemwise.def"
#undef EW
};

int ir_ew_is(OpKind op) { return op >= 0 && op < OP_COUNT && rows[op].present; }

const char *ir_ew_check(OpKind op, int nin, const Attrs *a) {
  IR_ASSERT(a->kind == AK_SCALAR);
  if (op == OP_POW && nin == 1 && isnan(a->scalar.f)) return "needs an exponent: a number or a tensor";
  if (op == OP_POW && nin == 2 && !isnan(a->scalar.f)) return "takes the exponent as a number or a tensor, not both";
  return NULL;
}

Expr *ir_ew_forward(Program *p, OpKind op, const Attrs *a, Expr *x, Expr *b) {
  IR_ASSERT(ir_ew_is(op) && a->kind == AK_SCALAR);
  EwArgs e = {p, &a->scalar, x, b, NULL, NULL};
  return rows[op].fwd(&e);
}

unsigned ir_ew_needs(OpKind op, int arg, int nin) {
  IR_ASSERT(ir_ew_is(op) && arg >= 0 && arg < nin);
  unsigned m = rows[op].needs[arg];
  return nin < 2 ? m & ~(unsigned)EWN_B : m;
}

/* What the vjp of operand arg is, built over placeholder operands: 1 when
 * it is dy itself, -1 when it is NONE (a comparison), else 0. */
static int vjp_form(OpKind op, int arg, const Attrs *a) {
  IR_ASSERT(a->kind == AK_SCALAR);
  Graph g = {.name = "ew"};
  Program p;
  kir_program_init(&p, &g);
  Expr *x = kx_f(&p, 1), *b = kx_f(&p, 1), *dy = kx_local(&p, 0, DT_F32);
  EwArgs e = {&p, &a->scalar, x, b, x, dy};
  Expr *v = rows[op].vjp[arg](&e);
  kir_program_free(&p);
  return v == dy ? 1 : v ? 0 : -1;
}

int ir_ew_vjp_is_dy(OpKind op, int arg, const Attrs *a) { return vjp_form(op, arg, a) == 1; }

int ir_ew_vjp_is_none(OpKind op, int arg, const Attrs *a) { return vjp_form(op, arg, a) == -1; }

Attrs ir_ew_grad_attrs(OpKind op, int arg, int nin, const Attrs *fwd) {
  IR_ASSERT(fwd->kind == AK_SCALAR);
  Attrs a = ir_attrs_default(OP_EW_GRAD);
  a.ew_grad.fwd = fwd->scalar;
  a.ew_grad.of = (int)op, a.ew_grad.arg = arg, a.ew_grad.nin = nin;
  return a;
}

Expr *ir_ew_grad(Program *p, const Attrs *a, Expr *const *in, int nin) {
  IR_ASSERT(a->kind == AK_EW_GRAD);
  const AttrEwGrad *g = &a->ew_grad;
  OpKind op = (OpKind)g->of;
  unsigned m = ir_ew_needs(op, g->arg, g->nin);
  EwArgs e = {p, &g->fwd, NULL, NULL, NULL, in[0]};
  int k = 1;
  if (m & EWN_A) e.a = in[k++];
  if (m & EWN_B) e.b = in[k++];
  if (m & EWN_Y) e.y = in[k++];
  IR_ASSERT(k == nin);
  return rows[op].vjp[g->arg](&e);
}

Expr *ir_where_item(Program *p, Expr *c, Expr *a, Expr *b) {
  return kx_select(p, kx_bin(p, BIN_NE, c, kx_f(p, 0)), a, b);
}

Expr *ir_bce_logits_item(Program *p, Expr *x, Expr *y) {
  EwArgs args = {p, NULL, x, y, NULL, NULL}, *E = &args;
  return ADD(ADD(MUL(SUB(K(1), B), A), MAX(NEG(A), K(0))), LOG1P(EXP(NEG(ABS(A)))));
}
