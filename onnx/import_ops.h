/*
 * import_ops.h — what the per-op conversions of the ONNX importer share:
 * the row of the conversion table (import_ops.c), the building blocks of
 * decompositions, and the conversions kept in import_compose.c (ops dlc
 * has no single op for, built from several).
 */
#ifndef DLC_ONNX_IMPORT_OPS_H
#define DLC_ONNX_IMPORT_OPS_H

#include "onnx/importer.h"

typedef struct ImOp ImOp;
typedef int ImConvertFn(Importer *im, const ImOp *row);
struct ImOp {
  const char *type;       /* the ONNX op type */
  ImConvertFn *fn;
  OpKind op;              /* the dlc op, for conversions shared by several rows */
  int max_in;             /* inputs read */
  const char *attrs;      /* attributes read, space-separated */
};

static inline const Shape *shape_of(Importer *im, int id) { return &im->g->nodes[id].shape; }

/* op over a (and b) as an intermediate value (k < 0) or output k. */
static inline int un(Importer *im, OpKind op, int a, int k) { return im_op(im, op, &a, 1, NULL, k); }
static inline int bin(Importer *im, OpKind op, int a, int b, int k) {
  int in[2] = {a, b};
  return im_op(im, op, in, 2, NULL, k);
}
static inline int konst(Importer *im, double v) { return ir_const(im->g, v, im->loc); }

/* axis in [-rank, rank) as a non-negative index, or -1 after an error. */
int64_t im_norm_axis(Importer *im, int64_t axis, int rank, const char *what);
/* A known i64 vector as plain integers (no symbolic element): the count. */
int im_known_ints(Importer *im, const ImConst *c, const char *what, int64_t *v, int max);
int im_set_list(Importer *im, Attrs *a, OpKind op, const char *name, const int64_t *v, int n);
/* op (sum, mean, max) over axes (all when na < 0) of x. */
int im_reduce_over(Importer *im, OpKind op, int x, const int64_t *ax, int na, int keep, int k);
/* A reshape of tensor x to dims d (symbols, DIM_INFER allowed). */
int im_reshape_to(Importer *im, int x, const Dim *d, int n, int k);
/* The axes, keepdims and noop_with_empty_axes of a Reduce op. */
int im_reduce_attrs(Importer *im, int64_t *ax, int *na, int64_t *keep, int64_t *noop);
/* Elements [start, end) of x along axis, as output k (intermediate when k < 0). */
int im_slice(Importer *im, int x, int axis, int64_t start, int64_t end, int k);

/* import_compose.c */
int im_cv_reduce_prod(Importer *im, const ImOp *row);
int im_cv_hardmax(Importer *im, const ImOp *row);
int im_cv_mvn(Importer *im, const ImOp *row);
/* MaxPool, AveragePool: whether dlc's 2-D pool takes the node whole; if
 * not, im_cv_pool_nd converts it (1 to 3 spatial axes, any padding). */
int im_pool_is_2d(Importer *im, int x);
int im_cv_pool_nd(Importer *im, const ImOp *row);
int im_cv_conv_transpose(Importer *im, const ImOp *row);
int im_cv_grid_sample(Importer *im, const ImOp *row);
/* import_rnn.c: RNN, GRU, LSTM unrolled */
int im_cv_recurrent(Importer *im, const ImOp *row);

#endif
