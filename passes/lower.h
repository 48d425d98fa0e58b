/*
 * lower.h — the lowering's state and helpers, shared by lower.c and the
 * files that lower one family of ops each (lower_conv.c).
 */
#ifndef DLC_LOWER_H
#define DLC_LOWER_H

#include "passes/passes.h"

typedef struct Lower {
  Program *p;
  Func *f;
  const Graph *g;
  int *buf;      /* node id -> buffer id, -1 for constants */
  Kernel *k;     /* the kernel being built */
} Lower;

/* A fresh loop variable or scalar local of the current kernel. */
int lower_var(Lower *L);
int lower_local(Lower *L);
const Node *lower_node_of(Lower *L, int id);
/* The value of node id at index, or the literal of a constant. */
Expr *lower_value(Lower *L, int id, Expr *index);
/* The product of dimensions [from, to) of s. */
Expr *lower_numel(Lower *L, const Shape *s, int from, int to);
/* A loop storing 0 into every element of node id's buffer. */
Stmt *lower_zero_fill(Lower *L, int id);

/* Row-major index of idx[0..s->rank) in shape s. */
Expr *lower_index(Lower *L, const Shape *s, Expr **idx);
/* The statements computing node id of L->g, or NULL (sources, views). */
Stmt *lower_node_stmt(Lower *L, int id);
/* lower_scan.c: a scan as one kernel looping over its steps. */
Stmt *lower_scan(Lower *L, int id);

/* lower_conv.c: convolutions, pooling, upsample, pad and their gradients. */
Stmt *lower_conv(Lower *L, int id);

#endif
