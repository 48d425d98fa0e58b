/*
 * lower.c — from graph nodes to loop kernels.
 *
 * Each node gets a buffer: inputs and outputs are function arguments,
 * params are persistent, views (reshape, flatten) share their operand's
 * buffer, constants have none (they are inlined as literals), and every
 * other node gets a temporary that memory planning places in the arena.
 * Then each computing node becomes one kernel: a loop nest written with
 * the builders of kernel.h.  Index arithmetic is row-major with extents
 * that may be run-time symbols; an operand that broadcasts indexes a
 * size-1 dimension with 0.
 *
 * Loop orders are chosen for unit stride in the innermost loop (matmul is
 * i-k-j) so the C compiler and LLVM can vectorise them.  Linear is the
 * plain dot-product nest in the interpreter's order; reduction loops are
 * marked LOOP_REDUCE and each kernel records its node and op, so that the
 * schedule step (schedule.c) finds the kernels its rules apply to and
 * rewrites their loops; tiling belongs there, not here.  Convolutions, pooling, upsample and pad are lowered
 * in lower_conv.c, which shares this file's helpers through lower.h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/elemwise.h"
#include "passes/lower.h"

static int new_var(Lower *L) { return L->k->nvars++; }
static int new_local(Lower *L) { return L->k->nlocals++; }

/* Row-major linear index of idx[0..rank) in shape s (Horner's rule). */
static Expr *lin_index(Lower *L, const Shape *s, Expr **idx) {
  Program *p = L->p;
  Expr *e = kx_i(p, 0);
  for (int i = 0; i < s->rank; i++) e = kx_iadd(p, kx_imul(p, e, kx_dim(p, s->d[i])), idx[i]);
  return e;
}

/* Index of an operand of shape s that broadcasts to an output of rank r
 * whose loop variables are vars[0..r). */
static Expr *bcast_index(Lower *L, const Shape *s, int r, const int *vars) {
  Expr *idx[IR_MAX_RANK];
  for (int j = 0; j < s->rank; j++)
    idx[j] = s->d[j] == 1 ? kx_i(L->p, 0) : kx_var(L->p, vars[r - s->rank + j]);
  return lin_index(L, s, idx);
}

/* Number of elements of s as an expression. */
static Expr *numel_expr(Lower *L, const Shape *s, int from, int to) {
  Expr *e = kx_i(L->p, 1);
  for (int i = from; i < to; i++) e = kx_imul(L->p, e, kx_dim(L->p, s->d[i]));
  return e;
}

/* Wraps body in loops over dims[0..n) with fresh variables stored in vars. */
static Stmt *nest(Lower *L, const Dim *dims, int n, int *vars, Stmt *(*inner)(Lower *, const int *, void *),
                  void *ctx) {
  for (int i = 0; i < n; i++) vars[i] = new_var(L);
  Stmt *s = inner(L, vars, ctx);
  for (int i = n - 1; i >= 0; i--) s = ks_loop(L->p, vars[i], kx_dim(L->p, dims[i]), s);
  return s;
}

static const Node *node(Lower *L, int id) { return &L->g->nodes[id]; }

/* The value of operand id at index, or the literal of a constant. */
static Expr *value(Lower *L, int id, Expr *index) {
  const Node *n = node(L, id);
  while (ir_ops[n->op].flags & OPF_VIEW) n = node(L, n->in[0]); /* a view of a constant is the constant */
  if (n->op == OP_CONST) return kx_f(L->p, n->attr.scalar.f);
  return kx_load(L->p, L->buf[id], index);
}

/* --- elementwise ----------------------------------------------------------- */

/* The row's formula (elemwise.def), or where's, over the operand values ops[]. */
static Expr *scalar_op(Lower *L, const Node *n, Expr *const *ops) {
  if (n->op == OP_EW_GRAD) return ir_ew_grad(L->p, &n->attr, ops, n->nin);
  if (n->op == OP_WHERE) return ir_where_item(L->p, ops[0], ops[1], ops[2]);
  return ir_ew_forward(L->p, n->op, &n->attr, ops[0], n->nin > 1 ? ops[1] : NULL);
}

typedef struct EwCtx {
  int id;
} EwCtx;

static Stmt *ew_inner(Lower *L, const int *vars, void *ctx) {
  const Node *n = node(L, ((EwCtx *)ctx)->id);
  int r = n->shape.rank;
  Expr *ops[4];
  for (int k = 0; k < n->nin; k++) {
    const Node *o = node(L, n->in[k]);
    ops[k] = value(L, n->in[k], o->op == OP_CONST ? NULL : bcast_index(L, &o->shape, r, vars));
  }
  Expr *out_idx[IR_MAX_RANK];
  for (int i = 0; i < r; i++) out_idx[i] = kx_var(L->p, vars[i]);
  return ks_store(L->p, L->buf[((EwCtx *)ctx)->id], lin_index(L, &n->shape, out_idx), scalar_op(L, n, ops));
}

/* Same-shape operands (or constants) make one flat loop; broadcasting
 * operands make a nest over the output's dimensions. */
static Stmt *lower_elementwise(Lower *L, int id) {
  const Node *n = node(L, id);
  int flat = 1;
  for (int k = 0; k < n->nin; k++) {
    const Node *o = node(L, n->in[k]);
    if (o->op != OP_CONST && !ir_shape_eq(&o->shape, &n->shape)) flat = 0;
  }
  EwCtx c = {id};
  int vars[IR_MAX_RANK];
  if (!flat) return nest(L, n->shape.d, n->shape.rank, vars, ew_inner, &c);
  int v = new_var(L);
  Expr *ops[4];
  for (int k = 0; k < n->nin; k++) ops[k] = value(L, n->in[k], kx_var(L->p, v));
  Stmt *body = ks_store(L->p, L->buf[id], kx_var(L->p, v), scalar_op(L, n, ops));
  return ks_loop(L->p, v, numel_expr(L, &n->shape, 0, n->shape.rank), body);
}

/* A flat copy of src's elements into dst. */
static Stmt *copy_loop(Lower *L, int dst, int src_node, const Shape *s) {
  int v = new_var(L);
  Stmt *body = ks_store(L->p, dst, kx_var(L->p, v), value(L, src_node, kx_var(L->p, v)));
  return ks_loop(L->p, v, numel_expr(L, s, 0, s->rank), body);
}

/* --- matmul and linear ------------------------------------------------------ */

/* Batched A[.., M, K] @ B[.., K, N] in i-k-j order: the innermost loop runs
 * along rows of B and of the output, both contiguous. */
static Stmt *lower_matmul(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id);
  const Node *a = node(L, n->in[0]), *b = node(L, n->in[1]);
  Shape sa = a->shape, sb = b->shape;
  if (sa.rank == 1) sa = (Shape){2, {1, sa.d[0]}};
  if (sb.rank == 1) sb = (Shape){2, {sb.d[0], 1}};
  Dim M = sa.d[sa.rank - 2], K = sa.d[sa.rank - 1], N = sb.d[sb.rank - 1];
  Shape so = {0, {0}};
  int nb = (sa.rank > sb.rank ? sa.rank : sb.rank) - 2;
  for (int i = 0; i < nb; i++) {
    int ia = sa.rank - 2 - nb + i, ib = sb.rank - 2 - nb + i;
    Dim da = ia >= 0 ? sa.d[ia] : 1, db = ib >= 0 ? sb.d[ib] : 1;
    so.d[so.rank++] = da == 1 ? db : da;
  }
  int bv[IR_MAX_RANK];
  for (int i = 0; i < nb; i++) bv[i] = new_var(L);
  int vm = new_var(L), vn = new_var(L), vk = new_var(L), vn2 = new_var(L);
  /* batch offsets as element offsets into A, B, out */
  Shape ba = sa, bb = sb;
  ba.rank -= 2, bb.rank -= 2;
  Expr *offa = kx_imul(p, bcast_index(L, &ba, nb, bv), kx_imul(p, kx_dim(p, M), kx_dim(p, K)));
  Expr *offb = kx_imul(p, bcast_index(L, &bb, nb, bv), kx_imul(p, kx_dim(p, K), kx_dim(p, N)));
  Expr *bidx[IR_MAX_RANK];
  for (int i = 0; i < nb; i++) bidx[i] = kx_var(p, bv[i]);
  Expr *offo = kx_imul(p, lin_index(L, &so, bidx), kx_imul(p, kx_dim(p, M), kx_dim(p, N)));
  Expr *orow = kx_iadd(p, offo, kx_imul(p, kx_var(p, vm), kx_dim(p, N)));
  int out = L->buf[id];
  Stmt *zero = ks_loop(p, vn, kx_dim(p, N), ks_store(p, out, kx_iadd(p, orow, kx_var(p, vn)), kx_f(p, 0)));
  int t = new_local(L);
  Expr *aval = value(L, n->in[0], kx_iadd(p, offa, kx_iadd(p, kx_imul(p, kx_var(p, vm), kx_dim(p, K)), kx_var(p, vk))));
  Expr *oidx = kx_iadd(p, orow, kx_var(p, vn2));
  Expr *bval = value(L, n->in[1], kx_iadd(p, offb, kx_iadd(p, kx_imul(p, kx_var(p, vk), kx_dim(p, N)), kx_var(p, vn2))));
  Stmt *upd = ks_store(p, out, oidx, kx_bin(p, BIN_ADD, kx_load(p, out, oidx), kx_bin(p, BIN_MUL, kx_local(p, t, DT_F32), bval)));
  Stmt *kbody = ks_local(p, t, DT_F32, aval);
  ks_append(&kbody, ks_loop(p, vn2, kx_dim(p, N), upd));
  Stmt *mbody = zero, *kloop = ks_loop(p, vk, kx_dim(p, K), kbody);
  kloop->loop = LOOP_REDUCE;
  ks_append(&mbody, kloop);
  Stmt *s = ks_loop(p, vm, kx_dim(p, M), mbody);
  for (int i = nb - 1; i >= 0; i--) s = ks_loop(p, bv[i], kx_dim(p, so.d[i]), s);
  return s;
}

/* y[r, j] = (sum_k x[r, k] * W[j, k]) + b[j]: one dot product per output,
 * summed in k order as the interpreter does, with k the reduction axis.
 * How it runs fast (partial sums in lanes, or row order against a
 * transposed weight) is the schedule's choice (schedule.c), made on this
 * nest. */
static Stmt *lower_linear(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *x = node(L, n->in[0]), *w = node(L, n->in[1]);
  Dim K = w->shape.d[1], J = w->shape.d[0];
  int vr = new_var(L), vj = new_var(L), vk = new_var(L), acc = new_local(L);
  Expr *xv = value(L, n->in[0], kx_iadd(p, kx_imul(p, kx_var(p, vr), kx_dim(p, K)), kx_var(p, vk)));
  Expr *wv = value(L, n->in[1], kx_iadd(p, kx_imul(p, kx_var(p, vj), kx_dim(p, K)), kx_var(p, vk)));
  Stmt *dot = ks_loop(p, vk, kx_dim(p, K),
                      ks_assign(p, acc, kx_bin(p, BIN_ADD, kx_local(p, acc, DT_F32), kx_bin(p, BIN_MUL, xv, wv))));
  dot->loop = LOOP_REDUCE;
  Expr *res = kx_local(p, acc, DT_F32);
  if (n->nin > 2) res = kx_bin(p, BIN_ADD, res, value(L, n->in[2], kx_var(p, vj)));
  Stmt *jbody = ks_local(p, acc, DT_F32, kx_f(p, 0));
  ks_append(&jbody, dot);
  ks_append(&jbody, ks_store(p, L->buf[id], kx_iadd(p, kx_imul(p, kx_var(p, vr), kx_dim(p, J)), kx_var(p, vj)), res));
  Stmt *rbody = ks_loop(p, vj, kx_dim(p, J), jbody);
  return ks_loop(p, vr, numel_expr(L, &x->shape, 0, x->shape.rank - 1), rbody);
}

/* tril: x where column <= row + diagonal of the last two axes, value
 * elsewhere, over (matrices, rows, columns) loops. */
static Stmt *lower_tril(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id);
  const Shape *s = &n->shape;
  int r = s->rank, vm = new_var(L), vi = new_var(L), vj = new_var(L);
  Expr *rows = kx_dim(p, s->d[r - 2]), *cols = kx_dim(p, s->d[r - 1]);
  Expr *at = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, vm), rows), kx_var(p, vi)), kx_dim(p, s->d[r - 1])),
                     kx_var(p, vj));
  Expr *keep = kx_bin(p, BIN_LE, kx_var(p, vj), kx_iadd(p, kx_var(p, vi), kx_i(p, n->attr.scalar.mode)));
  Stmt *st = ks_store(p, L->buf[id], at, kx_select(p, keep, value(L, n->in[0], at), kx_f(p, n->attr.scalar.f)));
  st = ks_loop(p, vj, cols, st);
  st = ks_loop(p, vi, kx_dim(p, s->d[r - 2]), st);
  return ks_loop(p, vm, numel_expr(L, s, 0, r - 2), st);
}

/* --- along one axis: softmax, log_softmax ------------------------------------ */

/* Splits shape s around axis into outer x A x inner and gives the element
 * index (o * A + a) * inner + i. */
static Expr *axis_index(Lower *L, const Shape *s, int axis, int vo, Expr *a, int vi) {
  Program *p = L->p;
  Expr *e = kx_iadd(p, kx_imul(p, kx_var(p, vo), kx_dim(p, s->d[axis])), a);
  return kx_iadd(p, kx_imul(p, e, numel_expr(L, s, axis + 1, s->rank)), kx_var(p, vi));
}

/* Max, then the sum of exponentials accumulated in double (so that
 * log_softmax keeps full float precision near zero), then the result. */
static Stmt *lower_softmax(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id);
  const Shape *s = &n->shape;
  int axis = (int)n->attr.axis.axis, in = n->in[0], out = L->buf[id];
  int vo = new_var(L), vi = new_var(L), va = new_var(L), vb = new_var(L), vc = new_var(L);
  int m = new_local(L), sum = new_local(L);
  Expr *A = kx_dim(p, s->d[axis]);
#define AT(v) axis_index(L, s, axis, vo, kx_var(p, v), vi)
  Stmt *body = ks_local(p, m, DT_F32, kx_f(p, -INFINITY));
  ks_append(&body, ks_loop(p, va, A, ks_assign(p, m, kx_bin(p, BIN_MAX, kx_local(p, m, DT_F32), value(L, in, AT(va))))));
  ks_append(&body, ks_local(p, sum, DT_F64, kx_cast(p, DT_F64, kx_f(p, 0))));
  Expr *ex = kx_cast(p, DT_F64, kx_un(p, UN_EXP, kx_bin(p, BIN_SUB, value(L, in, AT(vb)), kx_local(p, m, DT_F32))));
  ks_append(&body, ks_loop(p, vb, A, ks_assign(p, sum, kx_bin(p, BIN_ADD, kx_local(p, sum, DT_F64), ex))));
  Expr *shifted = kx_bin(p, BIN_SUB, value(L, in, AT(vc)), kx_local(p, m, DT_F32));
  Expr *res = n->op == OP_SOFTMAX
                  ? kx_bin(p, BIN_DIV, kx_un(p, UN_EXP, shifted), kx_cast(p, DT_F32, kx_local(p, sum, DT_F64)))
                  : kx_cast(p, DT_F32, kx_bin(p, BIN_SUB, kx_cast(p, DT_F64, shifted),
                                              kx_un(p, UN_LOG, kx_local(p, sum, DT_F64))));
  ks_append(&body, ks_loop(p, vc, A, ks_store(p, out, AT(vc), res)));
#undef AT
  body = ks_loop(p, vi, numel_expr(L, s, axis + 1, s->rank), body);
  return ks_loop(p, vo, numel_expr(L, s, 0, axis), body);
}

/* --- layout ------------------------------------------------------------------ */

static Stmt *lower_transpose(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *x = node(L, n->in[0]);
  int r = n->shape.rank, vars[IR_MAX_RANK];
  for (int i = 0; i < r; i++) vars[i] = new_var(L);
  Expr *oi[IR_MAX_RANK], *ii[IR_MAX_RANK];
  for (int i = 0; i < r; i++) {
    oi[i] = kx_var(p, vars[i]);
    ii[n->attr.dims.list[i]] = kx_var(p, vars[i]);
  }
  Stmt *s = ks_store(p, L->buf[id], lin_index(L, &n->shape, oi), value(L, n->in[0], lin_index(L, &x->shape, ii)));
  for (int i = r - 1; i >= 0; i--) s = ks_loop(p, vars[i], kx_dim(p, n->shape.d[i]), s);
  return s;
}

static Stmt *lower_concat(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id);
  int axis = (int)n->attr.axis.axis;
  Stmt *all = NULL;
  int64_t off = 0;
  for (int k = 0; k < n->nin; k++) {
    const Node *x = node(L, n->in[k]);
    int vo = new_var(L), va = new_var(L), vi = new_var(L);
    Expr *src = axis_index(L, &x->shape, axis, vo, kx_var(p, va), vi);
    Expr *dst = axis_index(L, &n->shape, axis, vo, kx_iadd(p, kx_var(p, va), kx_i(p, off)), vi);
    Stmt *s = ks_store(p, L->buf[id], dst, value(L, n->in[k], src));
    s = ks_loop(p, vi, numel_expr(L, &x->shape, axis + 1, x->shape.rank), s);
    s = ks_loop(p, va, kx_dim(p, x->shape.d[axis]), s);
    ks_append(&all, ks_loop(p, vo, numel_expr(L, &x->shape, 0, axis), s));
    off += x->shape.d[axis];
  }
  return all;
}

static Stmt *lower_slice(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *x = node(L, n->in[0]);
  int axis = (int)n->attr.axis.axis;
  int vo = new_var(L), va = new_var(L), vi = new_var(L);
  Expr *src_a = kx_iadd(p, kx_i(p, n->attr.axis.start), kx_imul(p, kx_var(p, va), kx_i(p, n->attr.axis.step)));
  Expr *src = axis_index(L, &x->shape, axis, vo, src_a, vi);
  Stmt *s = ks_store(p, L->buf[id], axis_index(L, &n->shape, axis, vo, kx_var(p, va), vi), value(L, n->in[0], src));
  s = ks_loop(p, vi, numel_expr(L, &n->shape, axis + 1, n->shape.rank), s);
  s = ks_loop(p, va, kx_dim(p, n->shape.d[axis]), s);
  return ks_loop(p, vo, numel_expr(L, &n->shape, 0, axis), s);
}

/* --- reductions ---------------------------------------------------------------- */

/* Loops over the kept dimensions outside, the reduced ones inside an
 * accumulator; the output index ignores reduced dimensions (keepdim only
 * adds size-1 dimensions, which do not change the layout). */
#define REDUCE_LANES 16

/* A sum (or mean) that keeps some dimension and whose reduced dimensions
 * end in a contiguous run of at least 2 REDUCE_LANES static elements (a
 * convolution's bias gradient sums dy over n and the plane h, w) keeps REDUCE_LANES partial sums side by
 * side: lane k takes the run's positions j = k mod REDUCE_LANES of every
 * outer reduced index (n), in order; then the lanes are summed pairwise
 * (EX_REDUCE) and the run's tail positions added one by one, outer index
 * by outer index.  The order is fixed by the shapes alone (one output's
 * sum runs within one iteration of the kept loops, whatever the thread
 * count); it differs from the serial loop's within the bound of any
 * float32 summation order.  NULL when the rule does not apply. */
static Stmt *lower_reduce_lanes(Lower *L, int id, const int *red) {
  Program *p = L->p;
  const Node *n = node(L, id), *x = node(L, n->in[0]);
  const Node *src = x;
  while (ir_ops[src->op].flags & OPF_VIEW) src = node(L, src->in[0]);
  int r = x->shape.rank, t = r;
  if (n->op == OP_MAX || src->op == OP_CONST || L->p->bufs[L->buf[n->in[0]]].dtype != DT_F32) return NULL;
  int64_t run = 1;
  while (t > 0 && red[t - 1] && !DIM_IS_SYM(x->shape.d[t - 1])) run *= x->shape.d[--t];
  int nkept = 0;
  for (int i = 0; i < t; i++) nkept += !red[i];
  if (t == r || run < 2 * REDUCE_LANES || nkept == 0) return NULL; /* a sum of everything (a loss) stays serial */
  const int W = REDUCE_LANES;
  int64_t vrun = run / W * W;
  int vars[IR_MAX_RANK], tvars[IR_MAX_RANK], acc = new_local(L), sum = new_local(L), vj = new_var(L), tj = new_var(L);
  Expr *ii[IR_MAX_RANK], *ti[IR_MAX_RANK], *oi[IR_MAX_RANK];
  Shape kept = {0, {0}};
  for (int i = 0; i < t; i++) {
    vars[i] = new_var(L), tvars[i] = red[i] ? new_var(L) : vars[i];
    ii[i] = kx_var(p, vars[i]), ti[i] = kx_var(p, tvars[i]);
    if (!red[i]) oi[kept.rank] = kx_var(p, vars[i]), kept.d[kept.rank++] = x->shape.d[i];
  }
  for (int i = t; i < r; i++) ii[i] = kx_i(p, 0), ti[i] = kx_i(p, 0);
  int xb = L->buf[n->in[0]];
  Expr *vx = kx_load_lanes(p, xb, kx_iadd(p, lin_index(L, &x->shape, ii), kx_var(p, vj)), W);
  Stmt *vbody = ks_assign(p, acc, kx_bin(p, BIN_ADD, kx_vlocal(p, acc, DT_F32, W), vx));
  Stmt *vl = ks_loop(p, vj, kx_i(p, vrun), vbody);
  vl->loop = LOOP_REDUCE, vl->step = W;
  Expr *tx = kx_load(p, xb, kx_iadd(p, lin_index(L, &x->shape, ti), kx_iadd(p, kx_i(p, vrun), kx_var(p, tj))));
  Stmt *tl = run > vrun ? ks_loop(p, tj, kx_i(p, run - vrun), ks_assign(p, sum, kx_bin(p, BIN_ADD, kx_local(p, sum, DT_F32), tx))) : NULL;
  Expr *count = kx_i(p, run);
  for (int i = t - 1; i >= 0; i--)
    if (red[i]) {
      vl = ks_loop(p, vars[i], kx_dim(p, x->shape.d[i]), vl);
      if (tl) tl = ks_loop(p, tvars[i], kx_dim(p, x->shape.d[i]), tl);
      count = kx_imul(p, count, kx_dim(p, x->shape.d[i]));
    }
  Expr *a = kx_local(p, sum, DT_F32);
  Expr *res = n->op == OP_MEAN ? kx_bin(p, BIN_DIV, a, kx_cast(p, DT_F32, count)) : a;
  Stmt *s = ks_local(p, acc, DT_F32, kx_broadcast(p, kx_f(p, 0), W));
  ks_append(&s, vl);
  ks_append(&s, ks_local(p, sum, DT_F32, kx_reduce(p, BIN_ADD, kx_vlocal(p, acc, DT_F32, W))));
  ks_append(&s, tl);
  ks_append(&s, ks_store(p, L->buf[id], lin_index(L, &kept, oi), res));
  for (int i = t - 1; i >= 0; i--)
    if (!red[i]) s = ks_loop(p, vars[i], kx_dim(p, x->shape.d[i]), s);
  return s;
}

static Stmt *lower_reduce(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *x = node(L, n->in[0]);
  int r = x->shape.rank, vars[IR_MAX_RANK], red[IR_MAX_RANK] = {0};
  for (int i = 0; i < n->attr.dims.nlist; i++) red[n->attr.dims.list[i]] = 1;
  Stmt *vs = lower_reduce_lanes(L, id, red);
  if (vs) return vs;
  for (int i = 0; i < r; i++) vars[i] = new_var(L);
  int acc = new_local(L);
  Expr *ii[IR_MAX_RANK], *oi[IR_MAX_RANK];
  Shape kept = {0, {0}};
  for (int i = 0; i < r; i++) {
    ii[i] = kx_var(p, vars[i]);
    if (!red[i]) oi[kept.rank] = kx_var(p, vars[i]), kept.d[kept.rank++] = x->shape.d[i];
  }
  Expr *xv = value(L, n->in[0], lin_index(L, &x->shape, ii));
  Expr *a = kx_local(p, acc, DT_F32);
  Stmt *inner = ks_assign(p, acc, kx_bin(p, n->op == OP_MAX ? BIN_MAX : BIN_ADD, a, xv));
  Expr *count = kx_i(p, 1);
  for (int i = r - 1; i >= 0; i--)
    if (red[i]) {
      inner = ks_loop(p, vars[i], kx_dim(p, x->shape.d[i]), inner);
      count = kx_imul(p, count, kx_dim(p, x->shape.d[i]));
    }
  Expr *res = n->op == OP_MEAN ? kx_bin(p, BIN_DIV, a, kx_cast(p, DT_F32, count)) : a;
  Stmt *s = ks_local(p, acc, DT_F32, kx_f(p, n->op == OP_MAX ? -INFINITY : 0));
  ks_append(&s, inner);
  ks_append(&s, ks_store(p, L->buf[id], lin_index(L, &kept, oi), res));
  for (int i = r - 1; i >= 0; i--)
    if (!red[i]) s = ks_loop(p, vars[i], kx_dim(p, x->shape.d[i]), s);
  return s;
}

static Stmt *lower_maxout(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *x = node(L, n->in[0]);
  int axis = (int)n->attr.axis.axis;
  int vo = new_var(L), va = new_var(L), vi = new_var(L), vk = new_var(L), m = new_local(L);
  Expr *src_a = kx_iadd(p, kx_imul(p, kx_var(p, va), kx_i(p, n->attr.axis.pieces)), kx_var(p, vk));
  Expr *xv = value(L, n->in[0], axis_index(L, &x->shape, axis, vo, src_a, vi));
  Stmt *s = ks_local(p, m, DT_F32, kx_f(p, -INFINITY));
  ks_append(&s, ks_loop(p, vk, kx_i(p, n->attr.axis.pieces), ks_assign(p, m, kx_bin(p, BIN_MAX, kx_local(p, m, DT_F32), xv))));
  ks_append(&s, ks_store(p, L->buf[id], axis_index(L, &n->shape, axis, vo, kx_var(p, va), vi), kx_local(p, m, DT_F32)));
  s = ks_loop(p, va, kx_dim(p, n->shape.d[axis]), s);
  s = ks_loop(p, vi, numel_expr(L, &n->shape, axis + 1, n->shape.rank), s);
  return ks_loop(p, vo, numel_expr(L, &n->shape, 0, axis), s);
}

/* --- losses -------------------------------------------------------------------- */

/* Stores per-item loss values (reduction none) or accumulates them into
 * out[0] as a sum or mean over count items. */
static Stmt *reduce_items(Lower *L, int id, int v, Expr *count, Stmt *prelude, Expr *item) {
  Program *p = L->p;
  const Node *n = node(L, id);
  int out = L->buf[id];
  if (n->attr.loss.reduction == RED_NONE) {
    ks_append(&prelude, ks_store(p, out, kx_var(p, v), item));
    return ks_loop(p, v, count, prelude);
  }
  int tot = new_local(L);
  ks_append(&prelude, ks_assign(p, tot, kx_bin(p, BIN_ADD, kx_local(p, tot, DT_F32), item)));
  Stmt *s = ks_local(p, tot, DT_F32, kx_f(p, 0));
  ks_append(&s, ks_loop(p, v, count, prelude));
  Expr *res = kx_local(p, tot, DT_F32);
  if (n->attr.loss.reduction == RED_MEAN) res = kx_bin(p, BIN_DIV, res, kx_cast(p, DT_F32, count));
  ks_append(&s, ks_store(p, out, kx_i(p, 0), res));
  return s;
}

/* cross_entropy and nll_loss, and their gradients, over x [N, C, d...]:
 * target (n, i) (i over the inner extent prod d) reads class c of x at
 * (n * C + c) * inner + i.  The target's class is a local; a target equal
 * to ignore_index adds 0 and is not counted, and a class outside [0, C)
 * reads class 0 and makes the loss NaN rather than reading out of bounds
 * (the interpreter refuses it). */
typedef struct ClassCtx {
  Lower *L;
  const Node *n, *x;
  int vn, vi, lab, m, s;  /* target loops, its class, the max and sum of exponentials */
  int ce;                 /* cross_entropy: logits; else log-probabilities */
} ClassCtx;

static ClassCtx class_ctx(Lower *L, int id, int xop) {
  const Node *n = node(L, id);
  int ce = n->op == OP_CROSS_ENTROPY || n->op == OP_CE_GRAD;
  return (ClassCtx){L, n, node(L, n->in[xop]), new_var(L), new_var(L), new_local(L), new_local(L), new_local(L), ce};
}

static Expr *class_inner(ClassCtx *c) { return numel_expr(c->L, &c->x->shape, 2, c->x->shape.rank); }

/* The flat index of target (vn, vi). */
static Expr *class_target(ClassCtx *c) {
  Program *p = c->L->p;
  return kx_iadd(p, kx_imul(p, kx_var(p, c->vn), class_inner(c)), kx_var(p, c->vi));
}

/* The element of x at class cls of the current target. */
static Expr *class_x(ClassCtx *c, int xop, Expr *cls) {
  Program *p = c->L->p;
  Expr *row = kx_iadd(p, kx_imul(p, kx_var(p, c->vn), kx_dim(p, c->x->shape.d[1])), cls);
  return value(c->L, c->n->in[xop], kx_iadd(p, kx_imul(p, row, class_inner(c)), kx_var(p, c->vi)));
}

static Expr *class_ignored(ClassCtx *c) {
  return kx_bin(c->L->p, BIN_EQ, kx_local(c->L->p, c->lab, DT_I64), kx_i(c->L->p, c->n->attr.loss.ignore_index));
}

/* The target's class into lab, and for cross_entropy the max m and the
 * sum s (in double) of exp(x - m) over its classes. */
static Stmt *class_prelude(ClassCtx *c, int xop, int yop) {
  Program *p = c->L->p;
  Expr *y = kx_cast(p, DT_I64, kx_load(p, c->L->buf[c->n->in[yop]], class_target(c)));
  Stmt *b = ks_local(p, c->lab, DT_I64, y);
  if (!c->ce) return b;
  int vc = new_var(c->L), vd = new_var(c->L);
  Expr *C = kx_dim(p, c->x->shape.d[1]);
  ks_append(&b, ks_local(p, c->m, DT_F32, kx_f(p, -INFINITY)));
  ks_append(&b, ks_loop(p, vc, C, ks_assign(p, c->m, kx_bin(p, BIN_MAX, kx_local(p, c->m, DT_F32), class_x(c, xop, kx_var(p, vc))))));
  ks_append(&b, ks_local(p, c->s, DT_F64, kx_cast(p, DT_F64, kx_f(p, 0))));
  Expr *e = kx_cast(p, DT_F64, kx_un(p, UN_EXP, kx_bin(p, BIN_SUB, class_x(c, xop, kx_var(p, vd)), kx_local(p, c->m, DT_F32))));
  ks_append(&b, ks_loop(p, vd, C, ks_assign(p, c->s, kx_bin(p, BIN_ADD, kx_local(p, c->s, DT_F64), e))));
  return b;
}

/* body inside the loops over the targets. */
static Stmt *class_loops(ClassCtx *c, Stmt *body) {
  Program *p = c->L->p;
  Stmt *s = ks_loop(p, c->vi, class_inner(c), body);
  return ks_loop(p, c->vn, kx_dim(p, c->x->shape.d[0]), s);
}

/* cnt = the number of targets not ignored (an i64 local), for a mean. */
static Stmt *class_count(const ClassCtx *c, int yop, int cnt) {
  Program *p = c->L->p;
  ClassCtx k = *c;
  k.vn = new_var(c->L), k.vi = new_var(c->L);
  Expr *y = kx_cast(p, DT_I64, kx_load(p, c->L->buf[c->n->in[yop]], class_target(&k)));
  Expr *one = kx_select(p, kx_bin(p, BIN_NE, y, kx_i(p, c->n->attr.loss.ignore_index)), kx_i(p, 1), kx_i(p, 0));
  Stmt *s = ks_local(p, cnt, DT_I64, kx_i(p, 0));
  ks_append(&s, class_loops(&k, ks_assign(p, cnt, kx_iadd(p, kx_local(p, cnt, DT_I64), one))));
  return s;
}

/* loss = logsumexp(x[target]) - x[target, y] (cross_entropy) or
 * -x[target, y] (nll_loss), per target or summed; mean divides by the
 * targets counted.  A sum is of the targets' terms stored first into a
 * temporary ("items"): the loop over the targets then has independent
 * iterations (it runs in parallel), and the sum after it adds the same
 * terms in the same order as one loop would. */
static Stmt *lower_class_loss(Lower *L, int id) {
  Program *p = L->p;
  ClassCtx c = class_ctx(L, id, 0);
  int red = c.n->attr.loss.reduction, tot = new_local(L), cnt = new_local(L), out = L->buf[id];
  Stmt *b = class_prelude(&c, 0, 1);
  Expr *lab = kx_local(p, c.lab, DT_I64);
  Expr *ok = kx_bin(p, BIN_AND, kx_bin(p, BIN_GE, lab, kx_i(p, 0)), kx_bin(p, BIN_LT, lab, kx_dim(p, c.x->shape.d[1])));
  Expr *picked = class_x(&c, 0, kx_select(p, ok, lab, kx_i(p, 0))), *item = kx_un(p, UN_NEG, picked);
  if (c.ce) {
    Expr *lse = kx_cast(p, DT_F32, kx_bin(p, BIN_ADD, kx_cast(p, DT_F64, kx_local(p, c.m, DT_F32)),
                                           kx_un(p, UN_LOG, kx_local(p, c.s, DT_F64))));
    item = kx_bin(p, BIN_SUB, lse, picked);
  }
  item = kx_select(p, class_ignored(&c), kx_f(p, 0), kx_select(p, ok, item, kx_f(p, NAN)));
  if (red == RED_NONE) {
    ks_append(&b, ks_store(p, out, class_target(&c), item));
    return class_loops(&c, b);
  }
  int items = kir_buffer(p, BUF_TEMP, DT_F32, "items", &node(L, c.n->in[1])->shape, id);
  ks_append(&b, ks_store(p, items, class_target(&c), item));
  Stmt *s = class_loops(&c, b);
  ClassCtx k = c;
  k.vn = new_var(L), k.vi = new_var(L);
  ks_append(&s, ks_local(p, tot, DT_F32, kx_f(p, 0)));
  ks_append(&s, class_loops(&k, ks_assign(p, tot, kx_bin(p, BIN_ADD, kx_local(p, tot, DT_F32), kx_load(p, items, class_target(&k))))));
  Expr *res = kx_local(p, tot, DT_F32);
  if (red == RED_MEAN) {
    ks_append(&s, class_count(&c, 1, cnt));
    res = kx_bin(p, BIN_DIV, res, kx_cast(p, DT_F32, kx_local(p, cnt, DT_I64)));
  }
  ks_append(&s, ks_store(p, out, kx_i(p, 0), res));
  return s;
}

static Stmt *lower_pointwise_loss(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *x = node(L, n->in[0]);
  int v = new_var(L);
  Expr *a = value(L, n->in[0], kx_var(p, v)), *b = value(L, n->in[1], kx_var(p, v)), *item;
  if (n->op == OP_MSE_LOSS) {
    Expr *d = kx_bin(p, BIN_SUB, a, b);
    item = kx_bin(p, BIN_MUL, d, d);
  } else if (n->op == OP_L1_LOSS) {
    item = kx_un(p, UN_ABS, kx_bin(p, BIN_SUB, a, b));
  } else {
    item = ir_bce_logits_item(p, a, b);
  }
  return reduce_items(L, id, v, numel_expr(L, &x->shape, 0, x->shape.rank), NULL, item);
}

/* d(a, b) = ||a - b + eps||_2 as torch.pairwise_distance; loss =
 * max(d(a, p) - d(a, n) + margin, 0). */
static Stmt *lower_triplet(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *x = node(L, n->in[0]);
  Dim D = x->shape.d[1];
  int vn = new_var(L), vd = new_var(L), dp = new_local(L), dn = new_local(L);
  Expr *idx = kx_iadd(p, kx_imul(p, kx_var(p, vn), kx_dim(p, D)), kx_var(p, vd));
  Expr *a = value(L, n->in[0], idx);
  Expr *tp = kx_bin(p, BIN_ADD, kx_bin(p, BIN_SUB, a, value(L, n->in[1], idx)), kx_f(p, 1e-6));
  Expr *tn = kx_bin(p, BIN_ADD, kx_bin(p, BIN_SUB, a, value(L, n->in[2], idx)), kx_f(p, 1e-6));
  Stmt *upd = ks_assign(p, dp, kx_bin(p, BIN_ADD, kx_local(p, dp, DT_F32), kx_bin(p, BIN_MUL, tp, tp)));
  ks_append(&upd, ks_assign(p, dn, kx_bin(p, BIN_ADD, kx_local(p, dn, DT_F32), kx_bin(p, BIN_MUL, tn, tn))));
  Stmt *b = ks_local(p, dp, DT_F32, kx_f(p, 0));
  ks_append(&b, ks_local(p, dn, DT_F32, kx_f(p, 0)));
  ks_append(&b, ks_loop(p, vd, kx_dim(p, D), upd));
  Expr *diff = kx_bin(p, BIN_SUB, kx_un(p, UN_SQRT, kx_local(p, dp, DT_F32)), kx_un(p, UN_SQRT, kx_local(p, dn, DT_F32)));
  Expr *item = kx_bin(p, BIN_MAX, kx_bin(p, BIN_ADD, diff, kx_f(p, n->attr.loss.margin)), kx_f(p, 0));
  return reduce_items(L, id, vn, kx_dim(p, x->shape.d[0]), b, item);
}

/* --- gradients ------------------------------------------------------------------- */

/* out = dy broadcast to the shape of operand 2 (times numel(dy)/numel(out)
 * for the gradient of a mean). */
static Stmt *lower_expand_as(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *dy = node(L, n->in[0]);
  int r = n->shape.rank, vars[IR_MAX_RANK];
  for (int i = 0; i < r; i++) vars[i] = new_var(L);
  Expr *oi[IR_MAX_RANK];
  for (int i = 0; i < r; i++) oi[i] = kx_var(p, vars[i]);
  Expr *v = value(L, n->in[0], dy->op == OP_CONST ? NULL : bcast_index(L, &dy->shape, r, vars));
  if (n->attr.expand.mean)
    v = kx_bin(p, BIN_DIV, kx_bin(p, BIN_MUL, v, kx_cast(p, DT_F32, numel_expr(L, &dy->shape, 0, dy->shape.rank))),
               kx_cast(p, DT_F32, numel_expr(L, &n->shape, 0, r)));
  Stmt *s = ks_store(p, L->buf[id], lin_index(L, &n->shape, oi), v);
  for (int i = r - 1; i >= 0; i--) s = ks_loop(p, vars[i], kx_dim(p, n->shape.d[i]), s);
  return s;
}

/* softmax: y * (dy - sum(dy * y)); log_softmax: dy - exp(y) * sum(dy). */
static Stmt *lower_softmax_grad(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id);
  const Shape *s = &n->shape;
  int axis = (int)n->attr.axis.axis, dy = n->in[0], y = n->in[1], lg = n->op == OP_LOG_SOFTMAX_GRAD;
  int vo = new_var(L), vi = new_var(L), va = new_var(L), vb = new_var(L), sum = new_local(L);
#define AT(v) axis_index(L, s, axis, vo, kx_var(p, v), vi)
  Expr *term = lg ? value(L, dy, AT(va)) : kx_bin(p, BIN_MUL, value(L, dy, AT(va)), value(L, y, AT(va)));
  Stmt *body = ks_local(p, sum, DT_F64, kx_cast(p, DT_F64, kx_f(p, 0)));
  ks_append(&body, ks_loop(p, va, kx_dim(p, s->d[axis]),
                           ks_assign(p, sum, kx_bin(p, BIN_ADD, kx_local(p, sum, DT_F64), kx_cast(p, DT_F64, term)))));
  Expr *sf = kx_cast(p, DT_F32, kx_local(p, sum, DT_F64));
  Expr *res = lg ? kx_bin(p, BIN_SUB, value(L, dy, AT(vb)), kx_bin(p, BIN_MUL, kx_un(p, UN_EXP, value(L, y, AT(vb))), sf))
                 : kx_bin(p, BIN_MUL, value(L, y, AT(vb)), kx_bin(p, BIN_SUB, value(L, dy, AT(vb)), sf));
  ks_append(&body, ks_loop(p, vb, kx_dim(p, s->d[axis]), ks_store(p, L->buf[id], AT(vb), res)));
#undef AT
  body = ks_loop(p, vi, numel_expr(L, s, axis + 1, s->rank), body);
  return ks_loop(p, vo, numel_expr(L, s, 0, axis), body);
}

/* A zero fill of the whole output. */
static Stmt *zero_fill(Lower *L, int id) {
  const Node *n = node(L, id);
  int v = new_var(L);
  return ks_loop(L->p, v, numel_expr(L, &n->shape, 0, n->shape.rank), ks_store(L->p, L->buf[id], kx_var(L->p, v), kx_f(L->p, 0)));
}

/* --- indexing ------------------------------------------------------------------- */

typedef struct IndexCtx {
  int id;           /* the gather, index_select or gather_grad node */
  int x, idx;       /* its x and index operands */
  int select;       /* index_select's form */
  int dy;           /* gather_grad: the dy operand, else -1 */
} IndexCtx;

/* For the element at loop variables vars (over the result, or over dy for
 * the gradient): the flat offset into x it reads, and through *ok whether
 * its index is within x's axis (else the offset uses index 0); a negative
 * index from -extent counts from the end, as the interpreter's. */
static Expr *index_offset(Lower *L, const IndexCtx *c, const int *vars, Expr **ok) {
  Program *p = L->p;
  const Node *x = node(L, c->x), *idx = node(L, c->idx);
  int axis = (int)node(L, c->id)->attr.axis.axis, ri = c->select ? idx->shape.rank : 0;
  Expr *ic[IR_MAX_RANK], *xc[IR_MAX_RANK];
  for (int j = 0; j < idx->shape.rank; j++) ic[j] = kx_var(p, vars[c->select ? axis + j : j]);
  Expr *k = kx_cast(p, DT_I64, kx_load(p, L->buf[c->idx], lin_index(L, &idx->shape, ic)));
  k = kx_select(p, kx_bin(p, BIN_LT, k, kx_i(p, 0)), kx_iadd(p, k, kx_dim(p, x->shape.d[axis])), k);
  *ok = kx_bin(p, BIN_AND, kx_bin(p, BIN_GE, k, kx_i(p, 0)), kx_bin(p, BIN_LT, k, kx_dim(p, x->shape.d[axis])));
  for (int d = 0; d < x->shape.rank; d++) xc[d] = kx_var(p, vars[d < axis || !c->select ? d : d + ri - 1]);
  xc[axis] = kx_select(p, *ok, k, kx_i(p, 0));
  return lin_index(L, &x->shape, xc);
}

/* out = x at the place read, NaN for an index out of range (the
 * interpreter reports it; compiled code does not read out of bounds). */
static Stmt *gather_inner(Lower *L, const int *vars, void *ctx) {
  const IndexCtx *c = ctx;
  const Node *n = node(L, c->id);
  Expr *ok, *off = index_offset(L, c, vars, &ok), *oc[IR_MAX_RANK];
  for (int i = 0; i < n->shape.rank; i++) oc[i] = kx_var(L->p, vars[i]);
  Expr *v = kx_load_guarded(L->p, L->buf[c->x], off, ok, kx_f(L->p, NAN));
  return ks_store(L->p, L->buf[c->id], lin_index(L, &n->shape, oc), v);
}

/* dx[place read] += dy, skipped for an index out of range. */
static Stmt *gather_grad_inner(Lower *L, const int *vars, void *ctx) {
  const IndexCtx *c = ctx;
  Program *p = L->p;
  const Node *dy = node(L, c->dy);
  Expr *ok, *off = index_offset(L, c, vars, &ok), *dc[IR_MAX_RANK];
  for (int i = 0; i < dy->shape.rank; i++) dc[i] = kx_var(p, vars[i]);
  Expr *sum = kx_bin(p, BIN_ADD, kx_load(p, L->buf[c->id], off), value(L, c->dy, lin_index(L, &dy->shape, dc)));
  return ks_if(p, ok, ks_store(p, L->buf[c->id], off, sum), NULL);
}

static Stmt *lower_gather(Lower *L, int id) {
  const Node *n = node(L, id);
  IndexCtx c = {id, n->in[0], n->in[1], n->op == OP_INDEX_SELECT, -1};
  int vars[IR_MAX_RANK] = {0}; /* a rank-0 result reads none (gcc cannot tell) */
  return nest(L, n->shape.d, n->shape.rank, vars, gather_inner, &c);
}

static Stmt *lower_gather_grad(Lower *L, int id) {
  const Node *n = node(L, id), *dy = node(L, n->in[0]);
  IndexCtx c = {id, n->in[1], n->in[2], dy->shape.rank != node(L, n->in[2])->shape.rank, n->in[0]};
  int vars[IR_MAX_RANK] = {0};
  Stmt *s = zero_fill(L, id);
  ks_append(&s, nest(L, dy->shape.d, dy->shape.rank, vars, gather_grad_inner, &c));
  return s;
}

static Stmt *lower_slice_grad(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *dy = node(L, n->in[0]);
  int axis = (int)n->attr.axis.axis;
  int vo = new_var(L), va = new_var(L), vi = new_var(L);
  Expr *dst_a = kx_iadd(p, kx_i(p, n->attr.axis.start), kx_imul(p, kx_var(p, va), kx_i(p, n->attr.axis.step)));
  Stmt *s = ks_store(p, L->buf[id], axis_index(L, &n->shape, axis, vo, dst_a, vi),
                     value(L, n->in[0], axis_index(L, &dy->shape, axis, vo, kx_var(p, va), vi)));
  s = ks_loop(p, vi, numel_expr(L, &dy->shape, axis + 1, dy->shape.rank), s);
  s = ks_loop(p, va, kx_dim(p, dy->shape.d[axis]), s);
  Stmt *all = zero_fill(L, id);
  ks_append(&all, ks_loop(p, vo, numel_expr(L, &dy->shape, 0, axis), s));
  return all;
}

/* x == max ? dy / ties : 0, with the max and dy indexed by the kept
 * dimensions and ties the number of elements equal to the max (torch.amax
 * shares the gradient among them).  A first nest counts the ties into a
 * temporary, a second writes the gradient. */
static Stmt *lower_max_grad(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *x = node(L, n->in[1]);
  int r = x->shape.rank, vars[IR_MAX_RANK], red[IR_MAX_RANK] = {0};
  for (int i = 0; i < n->attr.dims.nlist; i++) red[n->attr.dims.list[i]] = 1;
  Expr *xi[IR_MAX_RANK], *ki[IR_MAX_RANK];
  Shape kept = {0, {0}};
  for (int i = 0; i < r; i++) {
    vars[i] = new_var(L);
    xi[i] = kx_var(p, vars[i]);
    if (!red[i]) ki[kept.rank] = xi[i], kept.d[kept.rank++] = x->shape.d[i];
  }
  Expr *k = lin_index(L, &kept, ki), *xidx = lin_index(L, &x->shape, xi);
  int ties = kir_buffer(p, BUF_TEMP, DT_F32, "ties", &kept, id);
  Expr *is_max = kx_bin(p, BIN_EQ, value(L, n->in[1], xidx), value(L, n->in[2], k));
  int vz = new_var(L);
  Stmt *all = ks_loop(p, vz, numel_expr(L, &kept, 0, kept.rank), ks_store(p, ties, kx_var(p, vz), kx_f(p, 0)));
  Stmt *count = ks_store(p, ties, k, kx_bin(p, BIN_ADD, kx_load(p, ties, k), kx_select(p, is_max, kx_f(p, 1), kx_f(p, 0))));
  for (int i = r - 1; i >= 0; i--) count = ks_loop(p, vars[i], kx_dim(p, x->shape.d[i]), count);
  ks_append(&all, count);
  Expr *v = kx_select(p, is_max, kx_bin(p, BIN_DIV, value(L, n->in[0], k), kx_load(p, ties, k)), kx_f(p, 0));
  Stmt *s = ks_store(p, L->buf[id], xidx, v);
  for (int i = r - 1; i >= 0; i--) s = ks_loop(p, vars[i], kx_dim(p, x->shape.d[i]), s);
  ks_append(&all, s);
  return all;
}

/* The first maximum of each group gets dy; the rest stay zero. */
static Stmt *lower_maxout_grad(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *dy = node(L, n->in[0]);
  int axis = (int)n->attr.axis.axis;
  int vo = new_var(L), va = new_var(L), vi = new_var(L), vk = new_var(L), m = new_local(L), best = new_local(L);
#define XAT(e) axis_index(L, &n->shape, axis, vo, kx_iadd(p, kx_imul(p, kx_var(p, va), kx_i(p, n->attr.axis.pieces)), (e)), vi)
  Expr *xv = value(L, n->in[1], XAT(kx_var(p, vk)));
  Expr *better = kx_bin(p, BIN_GT, xv, kx_local(p, m, DT_F32));
  Stmt *upd = ks_assign(p, best, kx_select(p, better, kx_var(p, vk), kx_local(p, best, DT_I64)));
  ks_append(&upd, ks_assign(p, m, kx_select(p, better, value(L, n->in[1], XAT(kx_var(p, vk))), kx_local(p, m, DT_F32))));
  Stmt *s = ks_local(p, m, DT_F32, value(L, n->in[1], XAT(kx_i(p, 0))));
  ks_append(&s, ks_local(p, best, DT_I64, kx_i(p, 0)));
  ks_append(&s, ks_loop(p, vk, kx_i(p, n->attr.axis.pieces), upd));
  ks_append(&s, ks_store(p, L->buf[id], XAT(kx_local(p, best, DT_I64)),
                         value(L, n->in[0], axis_index(L, &dy->shape, axis, vo, kx_var(p, va), vi))));
#undef XAT
  s = ks_loop(p, va, kx_dim(p, dy->shape.d[axis]), s);
  s = ks_loop(p, vi, numel_expr(L, &dy->shape, axis + 1, dy->shape.rank), s);
  Stmt *all = zero_fill(L, id);
  ks_append(&all, ks_loop(p, vo, numel_expr(L, &dy->shape, 0, axis), s));
  return all;
}

/* cross_entropy: (softmax(x) - onehot(y)) * g; nll_loss: -onehot(y) * g;
 * g is dl (per target, or the one value divided by the count for a mean),
 * 0 for an ignored target. */
static Stmt *lower_class_grad(Lower *L, int id) {
  Program *p = L->p;
  ClassCtx c = class_ctx(L, id, 1);
  int red = c.n->attr.loss.reduction, ve = new_var(L), g = new_local(L), cnt = new_local(L);
  Stmt *b = class_prelude(&c, 1, 2), *s = red == RED_MEAN ? class_count(&c, 2, cnt) : NULL;
  Expr *dl = value(L, c.n->in[0], red == RED_NONE ? class_target(&c) : kx_i(p, 0));
  if (red == RED_MEAN) dl = kx_bin(p, BIN_DIV, dl, kx_cast(p, DT_F32, kx_local(p, cnt, DT_I64)));
  ks_append(&b, ks_local(p, g, DT_F32, dl));
  Expr *sm = kx_f(p, 0);
  if (c.ce)
    sm = kx_bin(p, BIN_DIV, kx_un(p, UN_EXP, kx_bin(p, BIN_SUB, class_x(&c, 1, kx_var(p, ve)), kx_local(p, c.m, DT_F32))),
                kx_cast(p, DT_F32, kx_local(p, c.s, DT_F64)));
  Expr *hot = kx_select(p, kx_bin(p, BIN_EQ, kx_var(p, ve), kx_local(p, c.lab, DT_I64)), kx_f(p, 1), kx_f(p, 0));
  Expr *res = kx_select(p, class_ignored(&c), kx_f(p, 0), kx_bin(p, BIN_MUL, kx_bin(p, BIN_SUB, sm, hot), kx_local(p, g, DT_F32)));
  Expr *at = kx_iadd(p, kx_imul(p, kx_iadd(p, kx_imul(p, kx_var(p, c.vn), kx_dim(p, c.x->shape.d[1])), kx_var(p, ve)),
                                class_inner(&c)), kx_var(p, c.vi));
  ks_append(&b, ks_loop(p, ve, kx_dim(p, c.x->shape.d[1]), ks_store(p, L->buf[id], at, res)));
  ks_append(&s, class_loops(&c, b));
  return s;
}

/* --- optimizer steps -------------------------------------------------------------- */

typedef struct StepCtx {
  Lower *L;
  const Node *n;
  int v;          /* the element loop variable */
} StepCtx;

static Expr *st_load(StepCtx *c, int operand) { return kx_load(c->L->p, c->L->buf[c->n->in[operand]], kx_var(c->L->p, c->v)); }
static Stmt *st_store(StepCtx *c, int operand, Expr *e) {
  return ks_store(c->L->p, c->L->buf[c->n->in[operand]], kx_var(c->L->p, c->v), e);
}
static Expr *hp(StepCtx *c, int i) { return kx_f(c->L->p, c->n->attr.hyper.hp[i]); }

/* d = grad + weight_decay * param (skipped when the decay is zero). */
static Expr *decayed_grad(StepCtx *c) {
  Program *p = c->L->p;
  if (c->n->attr.hyper.hp[HP_WEIGHT_DECAY] == 0 || c->n->attr.hyper.hp[HP_DECOUPLED] != 0) return st_load(c, 1);
  return kx_bin(p, BIN_ADD, st_load(c, 1), kx_bin(p, BIN_MUL, hp(c, HP_WEIGHT_DECAY), st_load(c, 0)));
}

/* --- element-invariant scalars out of a loop ---------------------------------------
 *
 * hoist_invariants rewrites a loop body so that every maximal float
 * subexpression whose value does not depend on the element (built only of
 * constants and of the locals the caller names invariant, declared before
 * the loop) is computed once into a new local before the loop, and the body
 * reads that local.  The expression is moved as it is (the same operations
 * in the same order), so the values are bit for bit those of the body
 * before; only the count changes: an optimizer's bias corrections, step
 * size and sqrt of the second correction once per step instead of once per
 * element, and no call of powf left in the element loop, which then
 * vectorises.  Loads (and their indices) are never moved. */
#define HOIST_MAX 32
typedef struct Hoist {
  Lower *L;
  Stmt *pre;             /* the new locals, in order */
  int inv[HOIST_MAX], ninv;
} Hoist;

static int hoist_invariant(const Hoist *h, const Expr *e) {
  if (!e || e->kind == EX_FCONST || e->kind == EX_ICONST) return 1;
  if (e->kind == EX_LOCAL) {
    if (e->a || e->lanes != 1) return 0;
    for (int i = 0; i < h->ninv; i++)
      if (h->inv[i] == e->id) return 1;
    return 0;
  }
  if (e->kind != EX_UNARY && e->kind != EX_BINARY && e->kind != EX_SELECT && e->kind != EX_CAST && e->kind != EX_FMA) return 0;
  return e->lanes == 1 && hoist_invariant(h, e->a) && hoist_invariant(h, e->b) && hoist_invariant(h, e->c);
}

static Expr *hoist_expr(Hoist *h, Expr *e) {
  if (!e || e->kind == EX_LOAD || e->kind == EX_RAND) return e;
  if (e->kind == EX_FCONST || e->kind == EX_ICONST || e->kind == EX_LOCAL || e->kind == EX_VAR || e->kind == EX_SYM) return e;
  if ((e->type == DT_F32 || e->type == DT_F64) && h->ninv < HOIST_MAX && hoist_invariant(h, e)) {
    Program *p = h->L->p;
    int l = new_local(h->L);
    ks_append(&h->pre, ks_local(p, l, e->type, e));
    h->inv[h->ninv++] = l;
    return kx_local(p, l, e->type);
  }
  e->a = hoist_expr(h, e->a);
  e->b = hoist_expr(h, e->b);
  e->c = hoist_expr(h, e->c);
  return e;
}

static void hoist_block(Hoist *h, Stmt *s) {
  for (; s; s = s->next) {
    if (s->kind == ST_LOOP || s->kind == ST_IF) {
      hoist_block(h, s->body);
      hoist_block(h, s->orelse);
    } else if (s->value) {
      s->value = hoist_expr(h, s->value);
    }
  }
}

/* Shared loop: body(c, lr, step) builds the per-element update; lr and step
 * are read once into locals before the loop, and what the body computes
 * from them alone (hoist_invariants above) once after them. */
static Stmt *step_loop(Lower *L, int id, Stmt *(*body)(StepCtx *, Expr *, Expr *)) {
  Program *p = L->p;
  const Node *n = node(L, id);
  StepCtx c = {L, n, new_var(L)};
  int lr = new_local(L), t = new_local(L);
  Stmt *s = ks_local(p, lr, DT_F32, kx_bin(p, BIN_MUL, kx_load(p, L->buf[n->in[2]], kx_i(p, 0)), hp(&c, HP_LR_SCALE)));
  ks_append(&s, ks_local(p, t, DT_F32, kx_load(p, L->buf[n->in[3]], kx_i(p, 0))));
  Stmt *b = body(&c, kx_local(p, lr, DT_F32), kx_local(p, t, DT_F32));
  Hoist h = {L, NULL, {lr, t}, 2};
  hoist_block(&h, b);
  ks_append(&s, h.pre);
  ks_append(&s, ks_loop(p, c.v, numel_expr(L, &node(L, n->in[0])->shape, 0, node(L, n->in[0])->shape.rank), b));
  return s;
}

static Stmt *sgd_body(StepCtx *c, Expr *lr, Expr *t) {
  Program *p = c->L->p;
  int d = new_local(c->L);
  Stmt *s = ks_local(p, d, DT_F32, decayed_grad(c));
  Expr *dv = kx_local(p, d, DT_F32);
  if (c->n->nin > 4) { /* momentum buffer: d on the first step, then momentum * buf + (1 - dampening) * d */
    Expr *upd = kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, hp(c, HP_MOMENTUM), st_load(c, 4)),
                       kx_bin(p, BIN_MUL, kx_f(p, 1 - c->n->attr.hyper.hp[HP_DAMPENING]), dv));
    ks_append(&s, st_store(c, 4, kx_select(p, kx_bin(p, BIN_LE, t, kx_f(p, 1)), dv, upd)));
    Expr *nd = c->n->attr.hyper.hp[HP_NESTEROV] != 0 ? kx_bin(p, BIN_ADD, dv, kx_bin(p, BIN_MUL, hp(c, HP_MOMENTUM), st_load(c, 4)))
                                               : st_load(c, 4);
    ks_append(&s, ks_assign(p, d, nd));
  }
  ks_append(&s, st_store(c, 0, kx_bin(p, BIN_SUB, st_load(c, 0), kx_bin(p, BIN_MUL, lr, dv))));
  return s;
}

static Stmt *adam_body(StepCtx *c, Expr *lr, Expr *t) {
  Program *p = c->L->p;
  const double *h = c->n->attr.hyper.hp;
  int d = new_local(c->L), w = new_local(c->L);
  Stmt *s = ks_local(p, d, DT_F32, decayed_grad(c));
  Expr *dv = kx_local(p, d, DT_F32);
  Expr *wv = st_load(c, 0);
  if (h[HP_DECOUPLED] != 0 && h[HP_WEIGHT_DECAY] != 0)
    wv = kx_bin(p, BIN_MUL, wv, kx_bin(p, BIN_SUB, kx_f(p, 1), kx_bin(p, BIN_MUL, lr, hp(c, HP_WEIGHT_DECAY))));
  ks_append(&s, ks_local(p, w, DT_F32, wv));
  ks_append(&s, st_store(c, 4, kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, hp(c, HP_BETA1), st_load(c, 4)),
                                      kx_bin(p, BIN_MUL, kx_f(p, 1 - h[HP_BETA1]), dv))));
  ks_append(&s, st_store(c, 5, kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, hp(c, HP_BETA2), st_load(c, 5)),
                                      kx_bin(p, BIN_MUL, kx_f(p, 1 - h[HP_BETA2]), kx_bin(p, BIN_MUL, dv, dv)))));
  Expr *bc1 = kx_bin(p, BIN_SUB, kx_f(p, 1), kx_bin(p, BIN_POW, hp(c, HP_BETA1), t));
  Expr *bc2 = kx_bin(p, BIN_SUB, kx_f(p, 1), kx_bin(p, BIN_POW, hp(c, HP_BETA2), t));
  Expr *denom = kx_bin(p, BIN_ADD, kx_bin(p, BIN_DIV, kx_un(p, UN_SQRT, st_load(c, 5)), kx_un(p, UN_SQRT, bc2)), hp(c, HP_EPS));
  Expr *upd = kx_bin(p, BIN_DIV, kx_bin(p, BIN_MUL, kx_bin(p, BIN_DIV, lr, bc1), st_load(c, 4)), denom);
  ks_append(&s, st_store(c, 0, kx_bin(p, BIN_SUB, kx_local(p, w, DT_F32), upd)));
  return s;
}

static Stmt *rmsprop_body(StepCtx *c, Expr *lr, Expr *t) {
  Program *p = c->L->p;
  int d = new_local(c->L), u = new_local(c->L);
  double alpha = c->n->attr.hyper.alpha;
  Stmt *s = ks_local(p, d, DT_F32, decayed_grad(c));
  Expr *dv = kx_local(p, d, DT_F32);
  ks_append(&s, st_store(c, 4, kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, kx_f(p, alpha), st_load(c, 4)),
                                      kx_bin(p, BIN_MUL, kx_f(p, 1 - alpha), kx_bin(p, BIN_MUL, dv, dv)))));
  ks_append(&s, ks_local(p, u, DT_F32, kx_bin(p, BIN_DIV, dv, kx_bin(p, BIN_ADD, kx_un(p, UN_SQRT, st_load(c, 4)), hp(c, HP_EPS)))));
  if (c->n->nin > 5) {
    ks_append(&s, st_store(c, 5, kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, hp(c, HP_MOMENTUM), st_load(c, 5)), kx_local(p, u, DT_F32))));
    ks_append(&s, ks_assign(p, u, st_load(c, 5)));
  }
  ks_append(&s, st_store(c, 0, kx_bin(p, BIN_SUB, st_load(c, 0), kx_bin(p, BIN_MUL, lr, kx_local(p, u, DT_F32)))));
  return s;
}

static Stmt *adagrad_body(StepCtx *c, Expr *lr, Expr *t) {
  Program *p = c->L->p;
  int d = new_local(c->L);
  Stmt *s = ks_local(p, d, DT_F32, decayed_grad(c));
  Expr *dv = kx_local(p, d, DT_F32);
  Expr *clr = kx_bin(p, BIN_DIV, lr, kx_bin(p, BIN_ADD, kx_f(p, 1), kx_bin(p, BIN_MUL, kx_bin(p, BIN_SUB, t, kx_f(p, 1)), hp(c, HP_LR_DECAY))));
  ks_append(&s, st_store(c, 4, kx_bin(p, BIN_ADD, st_load(c, 4), kx_bin(p, BIN_MUL, dv, dv))));
  Expr *upd = kx_bin(p, BIN_DIV, kx_bin(p, BIN_MUL, clr, dv), kx_bin(p, BIN_ADD, kx_un(p, UN_SQRT, st_load(c, 4)), hp(c, HP_EPS)));
  ks_append(&s, st_store(c, 0, kx_bin(p, BIN_SUB, st_load(c, 0), upd)));
  return s;
}

/* --- for the lowerings of op families in their own files (lower.h) ------------- */

int lower_var(Lower *L) { return new_var(L); }
int lower_local(Lower *L) { return new_local(L); }
const Node *lower_node_of(Lower *L, int id) { return node(L, id); }
Expr *lower_value(Lower *L, int id, Expr *index) { return value(L, id, index); }
Expr *lower_numel(Lower *L, const Shape *s, int from, int to) { return numel_expr(L, s, from, to); }
Stmt *lower_zero_fill(Lower *L, int id) { return zero_fill(L, id); }
Expr *lower_index(Lower *L, const Shape *s, Expr **idx) { return lin_index(L, s, idx); }

/* --- normalisation and dropout ---------------------------------------------------- */

/* Per row of the last ndim axes: the mean, then the biased variance
 * (both summed in double, as the interpreter), then one multiply-add per
 * element with the inverse deviation. */
static Stmt *lower_layer_norm(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id);
  const Shape *s = &n->shape;
  int k = s->rank - n->attr.scalar.mode, vr = new_var(L), va = new_var(L), vb = new_var(L), vc = new_var(L);
  int mean = new_local(L), var = new_local(L), inv = new_local(L);
  Expr *len = numel_expr(L, s, k, s->rank);
#define AT(v) kx_iadd(p, kx_imul(p, kx_var(p, vr), numel_expr(L, s, k, s->rank)), kx_var(p, v))
#define X64(v) kx_cast(p, DT_F64, value(L, n->in[0], AT(v)))
  Stmt *b = ks_local(p, mean, DT_F64, kx_cast(p, DT_F64, kx_f(p, 0)));
  ks_append(&b, ks_loop(p, va, len, ks_assign(p, mean, kx_bin(p, BIN_ADD, kx_local(p, mean, DT_F64), X64(va)))));
  Expr *cnt = kx_cast(p, DT_F64, numel_expr(L, s, k, s->rank));
  ks_append(&b, ks_assign(p, mean, kx_bin(p, BIN_DIV, kx_local(p, mean, DT_F64), cnt)));
  Expr *d = kx_bin(p, BIN_SUB, X64(vb), kx_local(p, mean, DT_F64));
  ks_append(&b, ks_local(p, var, DT_F64, kx_cast(p, DT_F64, kx_f(p, 0))));
  ks_append(&b, ks_loop(p, vb, numel_expr(L, s, k, s->rank),
                        ks_assign(p, var, kx_bin(p, BIN_ADD, kx_local(p, var, DT_F64), kx_bin(p, BIN_MUL, d, d)))));
  Expr *v = kx_bin(p, BIN_ADD, kx_bin(p, BIN_DIV, kx_local(p, var, DT_F64), kx_cast(p, DT_F64, numel_expr(L, s, k, s->rank))),
                   kx_fconst(p, DT_F64, n->attr.scalar.f));
  ks_append(&b, ks_local(p, inv, DT_F32, kx_cast(p, DT_F32, kx_bin(p, BIN_DIV, kx_fconst(p, DT_F64, 1), kx_un(p, UN_SQRT, v)))));
  Expr *y = kx_bin(p, BIN_MUL, kx_bin(p, BIN_SUB, value(L, n->in[0], AT(vc)), kx_cast(p, DT_F32, kx_local(p, mean, DT_F64))),
                   kx_local(p, inv, DT_F32));
  if (n->nin > 1) y = kx_bin(p, BIN_MUL, y, value(L, n->in[1], kx_var(p, vc)));
  if (n->nin > 2) y = kx_bin(p, BIN_ADD, y, value(L, n->in[2], kx_var(p, vc)));
  ks_append(&b, ks_loop(p, vc, numel_expr(L, s, k, s->rank), ks_store(p, L->buf[id], AT(vc), y)));
#undef AT
#undef X64
  return ks_loop(p, vr, numel_expr(L, s, 0, k), b);
}

/* Per channel: scale = w / sqrt(var + eps), shift = b - mean * scale, then
 * one multiply-add per element. */
static Stmt *lower_batchnorm(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id);
  const Shape *s = &n->shape;
  int vo = new_var(L), vc = new_var(L), vi = new_var(L), sc = new_local(L), sh = new_local(L);
  Expr *c = kx_var(p, vc);
  Expr *scale = kx_bin(p, BIN_DIV, value(L, n->in[1], c),
                       kx_un(p, UN_SQRT, kx_bin(p, BIN_ADD, value(L, n->in[4], c), kx_f(p, n->attr.hyper.hp[HP_EPS]))));
  Stmt *body = ks_local(p, sc, DT_F32, scale);
  ks_append(&body, ks_local(p, sh, DT_F32, kx_bin(p, BIN_SUB, value(L, n->in[2], c),
                                                    kx_bin(p, BIN_MUL, value(L, n->in[3], c), kx_local(p, sc, DT_F32)))));
  Expr *idx = axis_index(L, s, 1, vo, kx_var(p, vc), vi);
  Expr *y = kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, value(L, n->in[0], idx), kx_local(p, sc, DT_F32)), kx_local(p, sh, DT_F32));
  ks_append(&body, ks_loop(p, vi, numel_expr(L, s, 2, s->rank), ks_store(p, L->buf[id], idx, y)));
  return ks_loop(p, vo, kx_dim(p, s->d[0]), ks_loop(p, vc, kx_dim(p, s->d[1]), body));
}

/* y = u >= p ? x / (1 - p) : 0 with u drawn for counter (step << 32) + i. */
static Stmt *lower_dropout_train(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id);
  int v = new_var(L), base = new_local(L);
  uint64_t key = ir_random_key((uint64_t)n->attr.random.seed, (uint64_t)n->attr.random.salt);
  Stmt *s = ks_local(p, base, DT_I64, kx_imul(p, kx_cast(p, DT_I64, kx_load(p, L->buf[n->in[1]], kx_i(p, 0))), kx_i(p, (int64_t)1 << 32)));
  Expr *u = kx_rand(p, key, kx_bin(p, BIN_ADD, kx_local(p, base, DT_I64), kx_var(p, v)));
  Expr *kept = kx_bin(p, BIN_MUL, value(L, n->in[0], kx_var(p, v)), kx_f(p, 1.0 / (1.0 - n->attr.random.p)));
  Stmt *st = ks_store(p, L->buf[id], kx_var(p, v), kx_select(p, kx_bin(p, BIN_GE, u, kx_f(p, n->attr.random.p)), kept, kx_f(p, 0)));
  ks_append(&s, ks_loop(p, v, numel_expr(L, &n->shape, 0, n->shape.rank), st));
  return s;
}

/* The random ops, as the interpreter's op_random: the counter base
 * (step << 32) in a local (0 without a step operand), then one draw per
 * element; a normal is ir_random_normal's Box-Muller in the same order. */
static Stmt *lower_random(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id);
  int v = new_var(L), base = new_local(L), nop = ir_ops[n->op].min_in;
  uint64_t key = ir_random_key((uint64_t)n->attr.random.seed, (uint64_t)n->attr.random.salt);
  Expr *b = kx_i(p, 0);
  if (n->nin > nop)
    b = kx_imul(p, kx_cast(p, DT_I64, kx_load(p, L->buf[n->in[nop]], kx_i(p, 0))), kx_i(p, (int64_t)1 << IR_RANDOM_STEP_SHIFT));
  Stmt *s = ks_local(p, base, DT_I64, b);
  Expr *y;
  if (n->op == OP_RANDN || n->op == OP_RANDN_LIKE) {
    Expr *u1 = kx_rand(p, key, kx_bin(p, BIN_ADD, kx_local(p, base, DT_I64), kx_imul(p, kx_var(p, v), kx_i(p, 2))));
    Expr *c1 = kx_bin(p, BIN_ADD, kx_imul(p, kx_var(p, v), kx_i(p, 2)), kx_i(p, 1));
    Expr *u2 = kx_rand(p, key, kx_bin(p, BIN_ADD, kx_local(p, base, DT_I64), c1));
    Expr *r = kx_un(p, UN_SQRT, kx_bin(p, BIN_MUL, kx_f(p, -2.0), kx_un(p, UN_LOG, kx_bin(p, BIN_SUB, kx_f(p, 1.0), u1))));
    y = kx_bin(p, BIN_MUL, r, kx_un(p, UN_COS, kx_bin(p, BIN_MUL, kx_f(p, IR_TWO_PI), u2)));
  } else if (n->op == OP_BERNOULLI) {
    Expr *u = kx_rand(p, key, kx_bin(p, BIN_ADD, kx_local(p, base, DT_I64), kx_var(p, v)));
    y = kx_select(p, kx_bin(p, BIN_LT, u, value(L, n->in[0], kx_var(p, v))), kx_f(p, 1), kx_f(p, 0));
  } else {
    y = kx_rand(p, key, kx_bin(p, BIN_ADD, kx_local(p, base, DT_I64), kx_var(p, v)));
  }
  ks_append(&s, ks_loop(p, v, numel_expr(L, &n->shape, 0, n->shape.rank), ks_store(p, L->buf[id], kx_var(p, v), y)));
  return s;
}

static Stmt *lower_running_update(Lower *L, int id) {
  Program *p = L->p;
  const Node *n = node(L, id), *run = node(L, n->in[0]), *like = node(L, n->in[2]);
  int v = new_var(L);
  double m = n->attr.hyper.hp[HP_MOMENTUM];
  Expr *stat = value(L, n->in[1], kx_var(p, v));
  if (n->attr.hyper.unbiased) { /* unbiased: times per / (per - 1), per = samples per channel */
    Expr *per = kx_cast(p, DT_F32, kx_bin(p, BIN_DIV, numel_expr(L, &like->shape, 0, like->shape.rank),
                                          numel_expr(L, &run->shape, 0, run->shape.rank)));
    stat = kx_bin(p, BIN_MUL, stat, kx_bin(p, BIN_DIV, per, kx_bin(p, BIN_MAX, kx_bin(p, BIN_SUB, per, kx_f(p, 1)), kx_f(p, 1))));
  }
  Expr *upd = kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, kx_f(p, 1 - m), value(L, n->in[0], kx_var(p, v))), kx_bin(p, BIN_MUL, kx_f(p, m), stat));
  return ks_loop(p, v, numel_expr(L, &run->shape, 0, run->shape.rank), ks_store(p, L->buf[n->in[0]], kx_var(p, v), upd));
}

/* --- driver ----------------------------------------------------------------------- */

static Stmt *lower_node(Lower *L, int id) {
  const Node *n = node(L, id);
  switch (n->op) {
  case OP_INPUT:
  case OP_PARAM:
  case OP_STATE:
  case OP_CONST:
  case OP_RESHAPE:
  case OP_FLATTEN:
    return NULL;
  case OP_MATMUL: return lower_matmul(L, id);
  case OP_LINEAR: return lower_linear(L, id);
#define EW(id, ...) case OP_##id:
#include "ir/elemwise.def"
#undef EW
  case OP_EW_GRAD:
  case OP_WHERE:
    return lower_elementwise(L, id);
  case OP_SOFTMAX:
  case OP_LOG_SOFTMAX:
    return lower_softmax(L, id);
  case OP_TRANSPOSE: return lower_transpose(L, id);
  case OP_CONCAT: return lower_concat(L, id);
  case OP_SLICE: return lower_slice(L, id);
  case OP_GATHER:
  case OP_INDEX_SELECT:
    return lower_gather(L, id);
  case OP_SUM:
  case OP_MEAN:
  case OP_MAX:
    return lower_reduce(L, id);
  case OP_MAXOUT: return lower_maxout(L, id);
  case OP_CONV2D:
  case OP_CONV1D:
  case OP_CONV_TRANSPOSE2D:
  case OP_MAX_POOL2D:
  case OP_AVG_POOL2D:
  case OP_GLOBAL_AVG_POOL:
  case OP_UPSAMPLE:
  case OP_PAD:
  case OP_CONV2D_GRAD_WEIGHT:
  case OP_MAX_POOL2D_GRAD:
  case OP_AVG_POOL2D_GRAD:
  case OP_UPSAMPLE_GRAD:
  case OP_PAD_GRAD:
    return lower_conv(L, id); /* lower_conv.c */
  case OP_CROSS_ENTROPY:
  case OP_NLL_LOSS:
    return lower_class_loss(L, id);
  case OP_BCE_LOGITS:
  case OP_MSE_LOSS:
  case OP_L1_LOSS:
    return lower_pointwise_loss(L, id);
  case OP_TRIPLET_LOSS: return lower_triplet(L, id);
  case OP_EXPAND_AS: return lower_expand_as(L, id);
  case OP_SOFTMAX_GRAD:
  case OP_LOG_SOFTMAX_GRAD:
    return lower_softmax_grad(L, id);
  case OP_SLICE_GRAD: return lower_slice_grad(L, id);
  case OP_MAX_GRAD: return lower_max_grad(L, id);
  case OP_MAXOUT_GRAD: return lower_maxout_grad(L, id);
  case OP_GATHER_GRAD: return lower_gather_grad(L, id);
  case OP_CE_GRAD:
  case OP_NLL_GRAD:
    return lower_class_grad(L, id);
  case OP_SGD_STEP: return step_loop(L, id, sgd_body);
  case OP_ADAM_STEP: return step_loop(L, id, adam_body);
  case OP_RMSPROP_STEP: return step_loop(L, id, rmsprop_body);
  case OP_ADAGRAD_STEP: return step_loop(L, id, adagrad_body);
  case OP_BATCHNORM: return lower_batchnorm(L, id);
  case OP_LAYER_NORM: return lower_layer_norm(L, id);
  case OP_TRIL: return lower_tril(L, id);
  case OP_DROPOUT: return NULL; /* a view: inference passes values through */
  case OP_DROPOUT_TRAIN: return lower_dropout_train(L, id);
  case OP_RUNNING_UPDATE: return lower_running_update(L, id);
  case OP_STOP_GRADIENT: return NULL; /* a view of its operand */
  case OP_DIST_MEAN: /* a copy, then the emitted code's collective call on it (cg_collective) */
  case OP_DIST_SUM:
    return copy_loop(L, L->buf[id], node(L, id)->in[0], &node(L, id)->shape);
  case OP_SCAN: return lower_scan(L, id); /* lower_scan.c */
  case OP_SCAN_OUT: return NULL;          /* written by its scan's kernel */
  case OP_RAND:
  case OP_RANDN:
  case OP_RAND_LIKE:
  case OP_RANDN_LIKE:
  case OP_BERNOULLI:
    return lower_random(L, id);
  case OP_COUNT: break;
  }
  IR_ASSERT(!"unknown op");
  return NULL;
}

Stmt *lower_node_stmt(Lower *L, int id) { return lower_node(L, id); }

/* The buffer of a param node, shared by every function of the program. */
static int param_buffer(Program *p, const Node *n, int id) {
  BufKind kind = n->op == OP_PARAM ? BUF_PARAM : BUF_STATE;
  for (int b = 0; b < p->nbufs; b++)
    if (p->bufs[b].kind == kind && strcmp(p->bufs[b].name, n->name) == 0) return b;
  int b = kir_buffer(p, kind, n->dtype, n->name, &n->shape, id);
  int np = 0;
  for (int i = 0; i < p->nbufs; i++) np += p->bufs[i].kind == kind;
  p->bufs[b].arg = np - 1;
  return b;
}

/* Output index of node id if it is an output not yet given a buffer. */
static int output_of(const Graph *g, int id, const int *taken) {
  for (int i = 0; i < g->noutputs; i++)
    if (g->outputs[i].id == id && !taken[i]) return i;
  return -1;
}

static void assign_buffers(Lower *L, int *taken) {
  Program *p = L->p;
  const Graph *g = L->g;
  for (int id = 0; id < g->nnodes; id++) {
    const Node *n = &g->nodes[id];
    int o = output_of(g, id, taken);
    if (n->op == OP_INPUT)
      L->buf[id] = kir_buffer(p, BUF_INPUT, n->dtype, n->name, &n->shape, id);
    else if (n->op == OP_PARAM || n->op == OP_STATE)
      L->buf[id] = param_buffer(p, n, id);
    else if ((ir_ops[n->op].flags & OPF_EFFECT) || n->op == OP_SCAN) /* a scan holds no value itself */
      L->buf[id] = -1;
    else if (n->op == OP_CONST)
      L->buf[id] = -1;
    else if (ir_ops[n->op].flags & OPF_VIEW)
      L->buf[id] = L->buf[n->in[0]];
    else if (o >= 0) {
      L->buf[id] = kir_buffer(p, BUF_OUTPUT, n->dtype, g->outputs[o].name, &n->shape, id);
      taken[o] = 1;
    } else
      L->buf[id] = kir_buffer(p, BUF_TEMP, n->dtype, n->name ? n->name : ir_ops[n->op].name, &n->shape, id);
  }
}

static const char *describe(Lower *L, int id) {
  const Node *n = node(L, id);
  return n->name ? arena_printf(&L->p->arena, "%s %s", ir_ops[n->op].name, n->name) : ir_ops[n->op].name;
}

/* Collectives as early as the kernel order allows: each dist_mean or
 * dist_sum kernel (a copy of one buffer) moves to just after the last
 * kernel before it that stores into a buffer it loads, so a gradient
 * summed over the processes goes out as soon as it is final, while the
 * backward pass goes on (trainer.c overlaps the sums with it).  Nothing
 * between reads or writes the copy's own buffer, so the results do not
 * change; memory planning comes after. */
typedef struct Touch {
  char *bufs;
  int hit;
} Touch;

static int touch_load(void *ctx, const Expr *e) {
  Touch *t = ctx;
  if (e->kind == EX_LOAD) t->bufs[e->id] = 1;
  return 0;
}

static int touch_store(void *ctx, const Stmt *s) {
  Touch *t = ctx;
  if (s->kind == ST_STORE && t->bufs[s->id]) t->hit = 1;
  return t->hit;
}

static void collectives_early(Program *p, Func *f) {
  char *loads = rt_xcalloc((size_t)p->nbufs + 1, 1);
  for (int i = 0; i < f->nkernels; i++) {
    if (f->kernels[i].op != OP_DIST_MEAN && f->kernels[i].op != OP_DIST_SUM) continue;
    memset(loads, 0, (size_t)p->nbufs + 1);
    Touch t = {loads, 0};
    kir_walk_block(&(KirVisitor){&t, NULL, touch_load}, f->kernels[i].body);
    int j = i - 1;
    for (; j >= 0; j--) {
      t.hit = 0;
      kir_walk_block(&(KirVisitor){&t, touch_store, NULL}, f->kernels[j].body);
      if (t.hit) break;
    }
    Kernel k = f->kernels[i];
    memmove(&f->kernels[j + 2], &f->kernels[j + 1], sizeof k * (size_t)(i - j - 1));
    f->kernels[j + 1] = k;
  }
  rt_xfree(loads);
}

void pass_lower(Program *p, Func *f) {
  const Graph *g = f->g;
  Lower L = {p, f, g, rt_xcalloc((size_t)g->nnodes + 1, sizeof(int)), NULL};
  int *taken = rt_xcalloc((size_t)g->noutputs + 1, sizeof(int));
  IR_ASSERT(L.buf && taken);
  int first = p->nbufs;
  assign_buffers(&L, taken);
  /* arguments: inputs in graph order, then outputs in output order */
  f->args = arena_alloc(&p->arena, sizeof(int) * (size_t)(p->nbufs - first + g->noutputs + 1));
  for (int b = first; b < p->nbufs; b++)
    if (p->bufs[b].kind == BUF_INPUT) p->bufs[b].arg = f->nargs, f->args[f->nargs++] = b;
  for (int o = 0; o < g->noutputs; o++) {
    int id = g->outputs[o].id;
    if (!taken[o]) { /* an output that is a view, a source or a repeat: copy */
      const Node *n = node(&L, id);
      int b = kir_buffer(p, BUF_OUTPUT, n->dtype, g->outputs[o].name, &n->shape, id);
      Kernel *k = kir_kernel(p, f, arena_printf(&p->arena, "copy to output %s", g->outputs[o].name), n->loc);
      L.k = k;
      k->body = copy_loop(&L, b, id, &n->shape);
      taken[o] = 2 + b;
    }
  }
  /* copies were appended first; move them after the computing kernels */
  int ncopies = f->nkernels;
  Kernel *copies = rt_xmalloc(sizeof(Kernel) * (size_t)(ncopies + 1));
  if (ncopies) memcpy(copies, f->kernels, sizeof(Kernel) * (size_t)ncopies);
  f->nkernels = 0;
  for (int id = 0; id < g->nnodes; id++) {
    Kernel *k = kir_kernel(p, f, describe(&L, id), g->nodes[id].loc);
    L.k = k;
    k->node = id, k->op = (int)g->nodes[id].op;
    k->body = lower_node(&L, id);
    if (!k->body) f->nkernels--;
  }
  for (int i = 0; i < ncopies; i++) *kir_kernel(p, f, "", copies[i].loc) = copies[i];
  collectives_early(p, f);
  for (int o = 0; o < g->noutputs; o++) {
    int b = taken[o] >= 2 ? taken[o] - 2 : L.buf[g->outputs[o].id];
    p->bufs[b].arg = f->nargs;
    f->args[f->nargs++] = b;
  }
  rt_xfree(copies);
  rt_xfree(taken);
  rt_xfree(L.buf);
}
