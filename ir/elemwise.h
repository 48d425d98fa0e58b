/*
 * elemwise.h — the elementwise ops of elemwise.def as kernel expressions.
 *
 * Every consumer of an elementwise op goes through these builders: shape
 * inference asks for the row's checks, lowering builds the expression over
 * loads, the reference interpreter builds it over locals and evaluates it
 * per element, and autodiff asks which operands each gradient reads.  The
 * gradient of every row is one graph op, ew_grad (dy, then the operands
 * and result its vjp needs), whose attributes (family ew_grad) hold the
 * forward node's scalar attributes, the row (of) and the operand
 * differentiated (arg).
 */
#ifndef DLC_ELEMWISE_H
#define DLC_ELEMWISE_H

#include "ir/kernel.h"

/* What a row's vjp reads besides dy. */
enum { EWN_A = 1, EWN_B = 2, EWN_Y = 4 };

/* Whether op is a row of elemwise.def. */
int ir_ew_is(OpKind op);
/* A message when attributes a do not suit op called with nin operands, or NULL. */
const char *ir_ew_check(OpKind op, int nin, const Attrs *a);
/* The forward value of op at operands x (and b, NULL for one operand). */
Expr *ir_ew_forward(Program *p, OpKind op, const Attrs *a, Expr *x, Expr *b);
/* What the gradient of operand arg of op (called with nin operands) reads:
 * EWN_* bits, only those that exist. */
unsigned ir_ew_needs(OpKind op, int arg, int nin);
/* Whether that gradient is dy itself (no ew_grad node needed). */
int ir_ew_vjp_is_dy(OpKind op, int arg, const Attrs *a);
/* Whether op has no gradient for that operand (a comparison: EWC rows). */
int ir_ew_vjp_is_none(OpKind op, int arg, const Attrs *a);
/* The attributes of the ew_grad node for operand arg of forward node fwd. */
Attrs ir_ew_grad_attrs(OpKind op, int arg, int nin, const Attrs *fwd);
/* The value of an ew_grad node with attributes a over its operands
 * in[0..nin) (dy first). */
Expr *ir_ew_grad(Program *p, const Attrs *a, Expr *const *in, int nin);
/* The element of where(c, a, b): a where c != 0 (NaN included), else b. */
Expr *ir_where_item(Program *p, Expr *c, Expr *a, Expr *b);
/* The per-element loss of bce_with_logits at logit x and target y:
 * (1 - y) x + max(-x, 0) + log1p(exp(-|x|)), PyTorch's formula (so an
 * infinite logit gives PyTorch's infinity or NaN), the one every
 * implementation uses. */
Expr *ir_bce_logits_item(Program *p, Expr *x, Expr *y);

#endif
