/*
 * sched_util.h — what the schedule's rules (sched_rules.c) share with its
 * primitives (schedule.c): the analyses and rewrites both use.  Internal
 * to the schedule step.
 */
#ifndef DLC_SCHED_UTIL_H
#define DLC_SCHED_UTIL_H

#include "passes/schedule.h"

/* Whether e is an integer constant. */
static inline int sched_is_const(const Expr *e) { return e && e->kind == EX_ICONST; }

/* Whether expression e, block b or statement s alone (not the statements
 * after it) has an expression of kind naming id (a variable, local or
 * loaded buffer). */
int sched_expr_uses(const Expr *e, ExprKind kind, int id);
int sched_block_uses(const Stmt *b, ExprKind kind, int id);
int sched_stmt_uses(const Stmt *s, ExprKind kind, int id);
/* Whether block b has a statement of kind (assign, store) naming id. */
int sched_block_has(const Stmt *b, StmtKind kind, int id);
/* A copy of block (of e) with var := by, integer + and * of constants folded. */
Stmt *sched_subst(Program *p, const Stmt *block, int var, const Expr *by);
Expr *sched_subst_expr(Program *p, const Expr *e, int var, const Expr *by);
/* Whether index e is var plus terms free of var. */
int sched_unit_stride(const Expr *e, int var);
/* The w-lane form of scalar e in a loop over var, or NULL (sched_vectorize's
 * rules: loads at unit stride, what is free of var broadcast). */
Expr *sched_vec_expr(Program *p, int var, int w, const Expr *e);
/* Scalar e of a loop over columns var in w lanes at columns col .. col +
 * w - 1 (sched_rules.c: epi_lanes): local in is w-lane local acc, loads
 * at unit stride take w lanes, what varies with neither is broadcast,
 * + - * /, comparisons and selects are lane-wise; NULL for anything else. */
Expr *sched_row_lanes(Program *p, int var, Expr *col, int in, int acc, int w, const Expr *e);
/* Lanes for a loop of E columns in vectors that may overlap: 16, 8 or 4,
 * the most E holds (0 below 4). */
static inline int sched_overlap_lanes(int64_t E) { return E >= 16 ? 16 : E >= 8 ? 8 : E >= 4 ? 4 : 0; }
/* A loop of E columns as w-lane vectors, body(ctx, j0) the vector at
 * columns j0 .. j0 + w - 1: at j0 = 0, w, 2w, ... (a loop when more than
 * one) and, when w does not divide E, once more at E - w, ending at the
 * last column, which does some columns again (the caller's to know that
 * this stores the same values).  NULL when body gives NULL. */
typedef Stmt *(*SchedVectorBody)(void *ctx, Expr *j0);
Stmt *sched_overlapped_vectors(Program *p, Kernel *k, int64_t E, int w, SchedVectorBody body, void *ctx);
/* Whether a and b are the same expression, node for node. */
int sched_same_expr(const Expr *a, const Expr *b);
/* Transposes the w x w block held in the w-lane f32 locals row[0 .. w-1]
 * (row r, lane c) in log2(w) rounds of zips (kernel.h, EX_ZIP) appended
 * to *body: rows i and i + w/2 into 2i and 2i + 1; row[] then names the
 * locals of the transpose (row c, lane r). */
void sched_zip_transpose(Program *p, Kernel *k, int *row, int w, Stmt **body);

#endif
