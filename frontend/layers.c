/*
 * layers.c — layers (calls that create parameters) and parameter
 * initialisers, each one table entry.
 *
 * A layer is a signature (sig[0] is its input tensor) and a build function
 * that receives the evaluated arguments and the call's prefix, creates the
 * parameters PREFIX.weight, PREFIX.bias, ... and builds primitive ops over
 * them.  Parameter layouts follow PyTorch (nn.Linear's weight is
 * [out, in]), so trained weights load into the equivalent torch module by
 * name.  Adding a layer is one function and one table row.
 *
 * Every layer takes init= (its weight's initialiser) and bias_init= (its
 * bias's) as keywords, with the initialisers of `param` statements plus
 * he_normal, he_uniform and a bare number; they are taken out of the
 * call's arguments before its signature binds the rest, and absent they
 * are PyTorch's defaults (LayerInits).
 *
 * A layer may share its name with the primitive op it builds (conv2d):
 * build.c calls the op instead when the call's second argument is a
 * tensor (conv2d(x, w, b, stride=2)), and the layer when it is a size.
 */
#include <math.h>
#include <string.h>

#include "frontend/fe.h"

/* The initialiser given (kind INIT_COUNT: not given) or the default. */
static ParamInit init_or(ParamInit given, RtInitKind deflt) {
  return given.kind == INIT_COUNT ? (ParamInit){deflt, 0, 0} : given;
}

/* --- dense ------------------------------------------------------------------ */

static const SigParam dense_sig[] = {
    {"x", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"units", SK_INT, NULL, NULL, CHK_POS},
    {"bias", SK_BOOL, "true", NULL, CHK_NONE},
};

/* The last dimension of x when it is a constant, else -1 after an error. */
static int64_t features_of(Parser *P, const char *layer, Token *at, int x) {
  const Node *n = &P->g->nodes[x];
  char ty[128];
  ir_type_str(P->g, n->dtype, &n->shape, ty, sizeof ty);
  if (n->shape.rank == 0 || DIM_IS_SYM(n->shape.d[n->shape.rank - 1])) {
    diag_error(P->d, fe_loc(P, at), "%s needs an input whose last dimension is a constant "
               "(its features), not %s", layer, ty);
    return -1;
  }
  return n->shape.d[n->shape.rank - 1];
}

static int build_dense(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li) {
  int x = v[0].id;
  int64_t in = features_of(P, "dense", at, x), units = v[1].ival;
  if (in < 0) return -1;
  Shape ws = {2, {units, in}}, bs = {1, {units}};
  int ops[3] = {x, fe_new_param(P, fe_join(P, prefix, "weight"), &ws, init_or(li->weight, INIT_TORCH_DEFAULT), at), -1};
  if (ops[1] < 0) return -1;
  if (v[2].ival) {
    ops[2] = fe_new_param(P, fe_join(P, prefix, "bias"), &bs, init_or(li->bias, INIT_TORCH_DEFAULT), at);
    if (ops[2] < 0) return -1;
  }
  return ir_op(P->g, OP_LINEAR, ops, v[2].ival ? 3 : 2, NULL, fe_loc(P, at));
}

/* --- convolutions ------------------------------------------------------------------
 * conv2d, conv1d and conv_transpose2d create PREFIX.weight in PyTorch's
 * layout ([out, in / groups, kh, kw], transposed: [in, out / groups, kh,
 * kw]) and PREFIX.bias [out], and pass the geometry on to the op of the same
 * name, whose shape rule checks it. */

static const SigParam conv2d_sig[] = {
    {"x", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"out_channels", SK_INT, NULL, NULL, CHK_POS},
    {"kernel", SK_LIST, NULL, NULL, CHK_NONE},
    {"stride", SK_LIST, "1", NULL, CHK_NONE},
    {"padding", SK_LIST, "0", NULL, CHK_NONE},
    {"padding_mode", SK_ENUM, "zeros", "zeros|reflect|replicate", CHK_NONE},
    {"dilation", SK_LIST, "1", NULL, CHK_NONE},
    {"groups", SK_INT, "1", NULL, CHK_POS},
    {"bias", SK_BOOL, "true", NULL, CHK_NONE},
};

static const SigParam conv_transpose2d_sig[] = {
    {"x", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"out_channels", SK_INT, NULL, NULL, CHK_POS},
    {"kernel", SK_LIST, NULL, NULL, CHK_NONE},
    {"stride", SK_LIST, "1", NULL, CHK_NONE},
    {"padding", SK_LIST, "0", NULL, CHK_NONE},
    {"output_padding", SK_LIST, "0", NULL, CHK_NONE},
    {"groups", SK_INT, "1", NULL, CHK_POS},
    {"dilation", SK_LIST, "1", NULL, CHK_NONE},
    {"bias", SK_BOOL, "true", NULL, CHK_NONE},
};

/* The channels of x, which must be [N, C, ...] of rank rank with a
 * constant C; -1 after an error. */
static int64_t channels_of(Parser *P, const char *layer, Token *at, int x, int rank, const char *layout) {
  const Node *n = &P->g->nodes[x];
  char ty[128];
  ir_type_str(P->g, n->dtype, &n->shape, ty, sizeof ty);
  if (n->shape.rank != rank || DIM_IS_SYM(n->shape.d[1])) {
    diag_error(P->d, fe_loc(P, at), "%s needs an input %s with a constant number of channels C, not %s", layer,
               layout, ty);
    return -1;
  }
  return n->shape.d[1];
}

/* The kernel extents (nsp of them, one integer standing for all). */
static int kernel_of(Parser *P, const char *layer, Token *at, Value v, int nsp, int64_t *k) {
  int ok = v.nlist == 1 || v.nlist == nsp;
  for (int i = 0; i < v.nlist && ok; i++) ok = !v.sym[i] && v.list[i] > 0;
  if (!ok) {
    diag_error(P->d, fe_loc(P, at), "'kernel' of %s must be %s", layer,
               nsp == 1 ? "one positive integer" : "a positive integer or two ([kh, kw])");
    return -1;
  }
  for (int i = 0; i < nsp; i++) k[i] = v.list[v.nlist == 1 ? 0 : i];
  return 0;
}

/* Sets list attribute name of op from layer argument v (absent: the op's default). */
static int set_list(Parser *P, const char *layer, Token *at, Attrs *a, OpKind op, const char *name, Value v) {
  Dim d[IR_MAX_LIST];
  for (int i = 0; i < v.nlist; i++) {
    if (v.sym[i]) {
      diag_error(P->d, fe_loc(P, at), "'%s' of %s takes integers, not the dimension symbol '%s'", name, layer,
                 P->g->syms[v.list[i]].name);
      return -1;
    }
    d[i] = v.list[i];
  }
  return v.nlist < 0 ? 0 : ir_attr_set_list(a, op, name, d, v.nlist);
}

/* PREFIX.weight of shape ws and, with bias, PREFIX.bias [out]; then op. */
static int conv_params_and_op(Parser *P, const char *prefix, Token *at, OpKind op, int x, const Shape *ws,
                              int64_t out, int bias, const Attrs *a, const LayerInits *li) {
  Shape bs = {1, {out}};
  int ops[3] = {x, fe_new_param(P, fe_join(P, prefix, "weight"), ws, init_or(li->weight, INIT_TORCH_DEFAULT), at), -1};
  if (ops[1] < 0) return -1;
  if (bias && (ops[2] = fe_new_param(P, fe_join(P, prefix, "bias"), &bs, init_or(li->bias, INIT_TORCH_DEFAULT), at)) < 0)
    return -1;
  return ir_op(P->g, op, ops, bias ? 3 : 2, a, fe_loc(P, at));
}

/* conv2d(x, out_channels, kernel, stride, padding, padding_mode, dilation,
 * groups, bias), and conv1d with the same arguments. */
static int build_conv(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li, OpKind op) {
  const char *name = ir_ops[op].name;
  int one_d = op == OP_CONV1D, nsp = one_d ? 1 : 2;
  int64_t c = channels_of(P, name, at, v[0].id, nsp + 2, one_d ? "[N, C, L]" : "[N, C, H, W]"), k[2];
  if (c < 0 || kernel_of(P, name, at, v[2], nsp, k)) return -1;
  int64_t out = v[1].ival, groups = v[7].ival;
  if (c % groups) {
    diag_error(P->d, fe_loc(P, at), "%s: the %lld input channels do not divide into %lld groups", name, (long long)c,
               (long long)groups);
    return -1;
  }
  Attrs a = ir_attrs_default(op);
  if (set_list(P, name, at, &a, op, "stride", v[3]) || set_list(P, name, at, &a, op, "padding", v[4]) ||
      set_list(P, name, at, &a, op, "dilation", v[6]))
    return -1;
  ir_attr_set_enum(&a, op, "padding_mode", v[5].str);
  a.window.groups = groups;
  Shape ws = {nsp + 2, {out, c / groups, k[0], k[1]}};
  return conv_params_and_op(P, prefix, at, op, v[0].id, &ws, out, (int)v[8].ival, &a, li);
}

static int build_conv2d(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li) {
  return build_conv(P, prefix, at, v, li, OP_CONV2D);
}

static int build_conv1d(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li) {
  return build_conv(P, prefix, at, v, li, OP_CONV1D);
}

static int build_conv_transpose2d(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li) {
  const char *name = "conv_transpose2d";
  int64_t c = channels_of(P, name, at, v[0].id, 4, "[N, C, H, W]"), k[2];
  if (c < 0 || kernel_of(P, name, at, v[2], 2, k)) return -1;
  int64_t out = v[1].ival, groups = v[6].ival;
  if (out % groups) {
    diag_error(P->d, fe_loc(P, at), "%s: out_channels %lld do not divide into %lld groups", name, (long long)out,
               (long long)groups);
    return -1;
  }
  Attrs a = ir_attrs_default(OP_CONV_TRANSPOSE2D);
  if (set_list(P, name, at, &a, OP_CONV_TRANSPOSE2D, "stride", v[3]) ||
      set_list(P, name, at, &a, OP_CONV_TRANSPOSE2D, "padding", v[4]) ||
      set_list(P, name, at, &a, OP_CONV_TRANSPOSE2D, "output_padding", v[5]) ||
      set_list(P, name, at, &a, OP_CONV_TRANSPOSE2D, "dilation", v[7]))
    return -1;
  a.window.groups = groups;
  Shape ws = {4, {c, out / groups, k[0], k[1]}};
  return conv_params_and_op(P, prefix, at, OP_CONV_TRANSPOSE2D, v[0].id, &ws, out, (int)v[8].ival, &a, li);
}

/* --- batch norm -------------------------------------------------------------------
 * batchnorm(x) over the channels (dimension 1) of [N, C] or [N, C, ...]
 * creates PREFIX.weight (ones), PREFIX.bias (zeros) and the running
 * statistics PREFIX.running_mean (zeros) and PREFIX.running_var (ones) as
 * non-trainable buffers, torch.nn.BatchNorm's names. */
static const SigParam batchnorm_sig[] = {
    {"x", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"momentum", SK_FLOAT, "0.1", NULL, CHK_NONNEG},
    {"eps", SK_FLOAT, "1e-5", NULL, CHK_POS},
};

static int build_batchnorm(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li) {
  const Node *x = &P->g->nodes[v[0].id];
  if (x->shape.rank < 2 || DIM_IS_SYM(x->shape.d[1])) {
    char ty[128];
    diag_error(P->d, fe_loc(P, at), "batchnorm needs an input [batch, channels, ...] with a constant channel count, not %s",
               ir_type_str(P->g, x->dtype, &x->shape, ty, sizeof ty));
    return -1;
  }
  Shape cs = {1, {x->shape.d[1]}};
  static const char *const names[4] = {"weight", "bias", "running_mean", "running_var"};
  static const RtInitKind inits[4] = {INIT_ONES, INIT_ZEROS, INIT_ZEROS, INIT_ONES};
  int ops[5] = {v[0].id};
  for (int i = 0; i < 4; i++) {
    ParamInit init = i == 0 ? init_or(li->weight, inits[0]) : i == 1 ? init_or(li->bias, inits[1]) : (ParamInit){inits[i], 0, 0};
    ops[i + 1] = fe_new_param(P, fe_join(P, prefix, names[i]), &cs, init, at);
    if (ops[i + 1] < 0) return -1;
    if (i >= 2) P->g->nodes[ops[i + 1]].frozen = P->g->nodes[ops[i + 1]].buffer = 1;
  }
  Attrs a = ir_attrs_default(OP_BATCHNORM);
  a.hyper.hp[HP_MOMENTUM] = v[1].num;
  a.hyper.hp[HP_EPS] = v[2].num;
  return ir_op(P->g, OP_BATCHNORM, ops, 5, &a, fe_loc(P, at));
}

/* --- embedding --------------------------------------------------------------------
 * embedding(ids, num, dim, padding_idx=) is nn.Embedding: PREFIX.weight
 * [num, dim], N(0, 1), read by index_select along axis 0, so its gradient
 * is gather_grad's scatter-add (repeated ids add up).  Row padding_idx
 * starts at zero and gets no gradient: the table is read through
 * concat(rows before, stop_gradient(row), rows after), which copies it
 * exactly. */
static const SigParam embedding_sig[] = {
    {"ids", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"num", SK_INT, NULL, NULL, CHK_POS},
    {"dim", SK_INT, NULL, NULL, CHK_POS},
    {"padding_idx", SK_INT, "max", NULL, CHK_NONE},
};

static int rows(Parser *P, int w, int64_t start, int64_t end, SrcLoc loc) {
  Attrs a = ir_attrs_default(OP_SLICE);
  a.axis.axis = 0, a.axis.start = start, a.axis.end = end;
  return ir_op(P->g, OP_SLICE, &w, 1, &a, loc);
}

/* w with row pad cut off from the gradient. */
static int detach_row(Parser *P, int w, int64_t pad, int64_t num, SrcLoc loc) {
  int parts[3], n = 0;
  if (pad > 0) parts[n++] = rows(P, w, 0, pad, loc);
  int row = rows(P, w, pad, pad + 1, loc);
  parts[n++] = row < 0 ? -1 : ir_op(P->g, OP_STOP_GRADIENT, &row, 1, NULL, loc);
  if (pad + 1 < num) parts[n++] = rows(P, w, pad + 1, num, loc);
  for (int k = 0; k < n; k++)
    if (parts[k] < 0) return -1;
  Attrs a = ir_attrs_default(OP_CONCAT);
  a.axis.axis = 0;
  return ir_op(P->g, OP_CONCAT, parts, n, &a, loc);
}

static int build_embedding(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li) {
  int64_t num = v[1].ival, pad = v[3].ival;
  SrcLoc loc = fe_loc(P, at);
  if (li->bias.kind != INIT_COUNT) {
    diag_error(P->d, loc, "embedding has no bias; bias_init does not apply");
    return -1;
  }
  if (pad != ATTR_MAX && (pad < -num || pad >= num)) {
    diag_error(P->d, loc, "padding_idx %lld of embedding is out of range for %lld rows", (long long)pad,
               (long long)num);
    return -1;
  }
  pad = pad == ATTR_MAX ? -1 : pad < 0 ? pad + num : pad;
  Shape ws = {2, {num, v[2].ival}};
  ParamInit init = li->weight.kind == INIT_COUNT ? (ParamInit){INIT_NORMAL, 0, 1, 0} : li->weight;
  init.zero_row = pad + 1;
  int w = fe_new_param(P, fe_join(P, prefix, "weight"), &ws, init, at);
  if (w >= 0 && pad >= 0) w = detach_row(P, w, pad, num, loc);
  if (w < 0) return -1;
  int in[2] = {w, v[0].id};
  Attrs a = ir_attrs_default(OP_INDEX_SELECT);
  a.axis.axis = 0;
  return ir_op(P->g, OP_INDEX_SELECT, in, 2, &a, loc);
}

/* --- layer norm ---------------------------------------------------------------------
 * layer_norm(x, normalized_shape) over the last axes of x, which must be
 * normalized_shape (one integer or a list), torch.nn.LayerNorm's
 * PREFIX.weight (ones) and PREFIX.bias (zeros) of that shape unless
 * elementwise_affine=false. */
static const SigParam layer_norm_sig[] = {
    {"x", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"normalized_shape", SK_LIST, NULL, NULL, CHK_NONE},
    {"eps", SK_FLOAT, "1e-5", NULL, CHK_NONNEG},
    {"elementwise_affine", SK_BOOL, "true", NULL, CHK_NONE},
};

static int build_layer_norm(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li) {
  const Node *x = &P->g->nodes[v[0].id];
  int nd = v[1].nlist, ok = nd >= 1 && nd <= x->shape.rank;
  Shape ns = {nd > 0 ? nd : 0, {0}};
  for (int k = 0; ok && k < nd; k++) {
    ns.d[k] = v[1].list[k];
    ok = !v[1].sym[k] && x->shape.d[x->shape.rank - nd + k] == ns.d[k];
  }
  if (!ok) {
    char ty[128];
    diag_error(P->d, fe_loc(P, at), "layer_norm: normalized_shape must be the last constant dimensions of x, %s",
               ir_type_str(P->g, x->dtype, &x->shape, ty, sizeof ty));
    return -1;
  }
  int ops[3] = {v[0].id}, nin = 1;
  if (v[3].ival) {
    ops[nin++] = fe_new_param(P, fe_join(P, prefix, "weight"), &ns, init_or(li->weight, INIT_ONES), at);
    ops[nin++] = fe_new_param(P, fe_join(P, prefix, "bias"), &ns, init_or(li->bias, INIT_ZEROS), at);
    if (ops[1] < 0 || ops[2] < 0) return -1;
  }
  Attrs a = ir_attrs_default(OP_LAYER_NORM);
  a.scalar.mode = nd, a.scalar.f = v[2].num;
  return ir_op(P->g, OP_LAYER_NORM, ops, nin, &a, fe_loc(P, at));
}

/* --- attention -----------------------------------------------------------------------
 * scaled_dot_product_attention(q, k, v, mask, causal, scale) is
 * softmax(q k^T * scale + mask) v over queries [..., T, D] and keys and
 * values [..., S, D] (any leading axes, e.g. [B, H]), built from matmul,
 * mul, add, tril and softmax: scale 1/sqrt(D) unless given, mask an
 * additive f32 tensor that broadcasts to [..., T, S], causal -inf above
 * the diagonal (query i sees keys j <= i, PyTorch's is_causal).
 * multihead_attention is torch.nn.MultiheadAttention over it, with its
 * parameter names: PREFIX.in_proj_weight [3E, E] (xavier_uniform),
 * PREFIX.in_proj_bias [3E] (zeros), PREFIX.out_proj.weight [E, E] and
 * PREFIX.out_proj.bias [E] (zeros). */
static const SigParam sdpa_sig[] = {
    {"q", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"k", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"v", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"mask", SK_TENSOR, "none", NULL, CHK_NONE},
    {"causal", SK_BOOL, "false", NULL, CHK_NONE},
    {"scale", SK_FLOAT, "0", NULL, CHK_NONNEG},
};

static const SigParam mha_sig[] = {
    {"query", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"key", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"value", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"num_heads", SK_INT, NULL, NULL, CHK_POS},
    {"mask", SK_TENSOR, "none", NULL, CHK_NONE},
    {"causal", SK_BOOL, "false", NULL, CHK_NONE},
    {"bias", SK_BOOL, "true", NULL, CHK_NONE},
    {"batch_first", SK_BOOL, "true", NULL, CHK_NONE},
};

static int op_attr(Parser *P, Token *at, OpKind op, const int *in, int n, const Attrs *a) {
  for (int i = 0; i < n; i++)
    if (in[i] < 0) return -1;
  return ir_op(P->g, op, in, n, a, fe_loc(P, at));
}

/* x with axes i and j swapped (negative: from the end). */
static int swap_axes(Parser *P, Token *at, int x, int i, int j) {
  if (x < 0) return -1;
  int r = P->g->nodes[x].shape.rank;
  Dim perm[IR_MAX_RANK];
  for (int k = 0; k < r; k++) perm[k] = k;
  perm[(i + r) % r] = (j + r) % r, perm[(j + r) % r] = (i + r) % r;
  Attrs a = ir_attrs_default(OP_TRANSPOSE);
  ir_attr_set_list(&a, OP_TRANSPOSE, "perm", perm, r);
  return op_attr(P, at, OP_TRANSPOSE, &x, 1, &a);
}

static int reshape_to(Parser *P, Token *at, int x, const Dim *d, int r) {
  Attrs a = ir_attrs_default(OP_RESHAPE);
  ir_attr_set_list(&a, OP_RESHAPE, "shape", d, r);
  return op_attr(P, at, OP_RESHAPE, &x, 1, &a);
}

static int attention(Parser *P, Token *at, int q, int k, int v, int mask, int causal, double scale) {
  const Node *qn = &P->g->nodes[q];
  Dim d = qn->shape.rank ? qn->shape.d[qn->shape.rank - 1] : 0;
  if (scale == 0 && (qn->shape.rank < 2 || DIM_IS_SYM(d))) {
    char ty[128];
    diag_error(P->d, fe_loc(P, at), "attention needs queries [..., T, D] with a constant D (or scale=), not %s",
               ir_type_str(P->g, qn->dtype, &qn->shape, ty, sizeof ty));
    return -1;
  }
  int kt = swap_axes(P, at, k, -1, -2);
  int s = op_attr(P, at, OP_MATMUL, (int[]){q, kt}, 2, NULL);
  s = op_attr(P, at, OP_MUL, (int[]){s, ir_const(P->g, scale ? scale : 1 / sqrt((double)d), fe_loc(P, at))}, 2, NULL);
  if (mask >= 0) s = op_attr(P, at, OP_ADD, (int[]){s, mask}, 2, NULL);
  if (causal) {
    Attrs a = ir_attrs_default(OP_TRIL);
    a.scalar.f = -INFINITY;
    s = op_attr(P, at, OP_TRIL, &s, 1, &a);
  }
  Attrs sm = ir_attrs_default(OP_SOFTMAX);
  s = op_attr(P, at, OP_SOFTMAX, &s, 1, &sm);
  return op_attr(P, at, OP_MATMUL, (int[]){s, v}, 2, NULL);
}

static int build_sdpa(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li) {
  (void)prefix, (void)li;
  return attention(P, at, v[0].id, v[1].id, v[2].id, v[3].kind == V_TENSOR ? v[3].id : -1, (int)v[4].ival, v[5].num);
}

/* Rows [from, from + e) of w (and of b: a rank-1 slice). */
static int rows_of(Parser *P, Token *at, int w, int64_t from, int64_t e) {
  if (w < 0) return -1;
  Attrs a = ir_attrs_default(OP_SLICE);
  a.axis.axis = 0, a.axis.start = from, a.axis.end = from + e;
  return op_attr(P, at, OP_SLICE, &w, 1, &a);
}

/* linear(x, rows i of W, rows i of b) as heads [B, H, L, E / H]. */
static int heads_of(Parser *P, Token *at, int x, int w, int b, int i, int64_t e, int64_t h) {
  int in[3] = {x, rows_of(P, at, w, i * e, e), b >= 0 ? rows_of(P, at, b, i * e, e) : -1};
  int y = op_attr(P, at, OP_LINEAR, in, b >= 0 ? 3 : 2, NULL);
  if (y < 0) return -1;
  const Shape *s = &P->g->nodes[x].shape;
  Dim d[4] = {s->d[0], s->d[1], h, e / h};
  return swap_axes(P, at, reshape_to(P, at, y, d, 4), 1, 2);
}

static int build_mha(Parser *P, const char *prefix, Token *at, const Value *v, const LayerInits *li) {
  int x[3], bias = (int)v[6].ival, seq_first = !v[7].ival;
  for (int i = 0; i < 3; i++) x[i] = seq_first ? swap_axes(P, at, v[i].id, 0, 1) : v[i].id;
  const Node *q = &P->g->nodes[v[0].id];
  int64_t e = features_of(P, "multihead_attention", at, v[0].id), h = v[3].ival;
  if (e < 0 || x[0] < 0 || x[1] < 0 || x[2] < 0) return -1;
  if (q->shape.rank != 3 || e % h) {
    char ty[128];
    diag_error(P->d, fe_loc(P, at), "multihead_attention needs a query [batch, length, embed_dim] whose embed_dim "
               "divides into %lld heads, not %s", (long long)h, ir_type_str(P->g, q->dtype, &q->shape, ty, sizeof ty));
    return -1;
  }
  Shape ws = {2, {3 * e, e}}, bs = {1, {3 * e}}, os = {2, {e, e}}, obs = {1, {e}};
  int w = fe_new_param(P, fe_join(P, prefix, "in_proj_weight"), &ws, init_or(li->weight, INIT_XAVIER_UNIFORM), at);
  int b = bias ? fe_new_param(P, fe_join(P, prefix, "in_proj_bias"), &bs, init_or(li->bias, INIT_ZEROS), at) : -1;
  int ow = fe_new_param(P, fe_join(P, prefix, "out_proj.weight"), &os, (ParamInit){INIT_TORCH_DEFAULT, 0, 0}, at);
  int ob = bias ? fe_new_param(P, fe_join(P, prefix, "out_proj.bias"), &obs, (ParamInit){INIT_ZEROS, 0, 0}, at) : -1;
  if (w < 0 || ow < 0 || (bias && (b < 0 || ob < 0))) return -1;
  int hd[3];
  for (int i = 0; i < 3; i++) hd[i] = heads_of(P, at, x[i], w, b, i, e, h);
  if (hd[0] < 0 || hd[1] < 0 || hd[2] < 0) return -1;
  int o = attention(P, at, hd[0], hd[1], hd[2], v[4].kind == V_TENSOR ? v[4].id : -1, (int)v[5].ival, 0);
  const Shape *s = &P->g->nodes[x[0]].shape;
  Dim d[3] = {s->d[0], s->d[1], e};
  o = reshape_to(P, at, swap_axes(P, at, o, 1, 2), d, 3);
  o = op_attr(P, at, OP_LINEAR, (int[]){o, ow, ob}, bias ? 3 : 2, NULL);
  return seq_first ? swap_axes(P, at, o, 0, 1) : o;
}

/* --- the table ------------------------------------------------------------------ */

#define SIG(s) s, (int)(sizeof s / sizeof s[0])

static const LayerDef layers[] = {
    {"dense", SIG(dense_sig), build_dense},
    {"conv2d", SIG(conv2d_sig), build_conv2d},
    {"conv1d", SIG(conv2d_sig), build_conv1d},
    {"conv_transpose2d", SIG(conv_transpose2d_sig), build_conv_transpose2d},
    {"batchnorm", SIG(batchnorm_sig), build_batchnorm},
    {"embedding", SIG(embedding_sig), build_embedding},
    {"layer_norm", SIG(layer_norm_sig), build_layer_norm},
    {"multihead_attention", SIG(mha_sig), build_mha},
    {"scaled_dot_product_attention", SIG(sdpa_sig), build_sdpa, 1},
};

int fe_layer_count(void) { return (int)(sizeof layers / sizeof layers[0]); }
const LayerDef *fe_layer_at(int i) { return &layers[i]; }

const LayerDef *fe_layer_lookup(const char *name) {
  for (int i = 0; i < fe_layer_count(); i++)
    if (strcmp(layers[i].name, name) == 0) return &layers[i];
  return NULL;
}

static int key_is(const Token *k, const char *s) {
  return k && (size_t)k->len == strlen(s) && strncmp(k->p, s, (size_t)k->len) == 0;
}

/* Moves init= and bias_init= out of e's arguments into *li (rest gets the
 * others); -1 after an error in one of them. */
static int take_inits(Parser *P, Expr *e, Arg *rest, int *nrest, LayerInits *li) {
  li->weight.kind = li->bias.kind = INIT_COUNT;
  int bad = 0;
  *nrest = 0;
  for (int i = 0; i < e->nargs; i++) {
    Token *k = e->args[i].key;
    ParamInit *dst = key_is(k, "init") ? &li->weight : key_is(k, "bias_init") ? &li->bias : NULL;
    if (!dst) {
      rest[(*nrest)++] = e->args[i];
      continue;
    }
    if (dst->kind != INIT_COUNT) {
      diag_error(P->d, fe_loc(P, k), "'%.*s' is given twice", k->len, k->p);
      bad = 1;
      continue;
    }
    fe_init_expr(P, e->args[i].val, dst);
    bad |= dst->kind == INIT_COUNT;
  }
  return bad ? -1 : 0;
}

Value fe_call_layer(Parser *P, const LayerDef *l, Expr *e) {
  Expr *slots[FE_MAX_ARGS];
  Value vals[FE_MAX_ARGS];
  Arg *rest = arena_alloc(P->tmp, sizeof(Arg) * (size_t)(e->nargs + 1));
  int nrest;
  LayerInits li;
  if (take_inits(P, e, rest, &nrest, &li) ||
      fe_bind_args(P, l->name, "argument", e->tok, l->sig, l->nsig, rest, nrest, slots) ||
      fe_eval_args(P, l->name, l->sig, l->nsig, slots, vals))
    return (Value){V_ERR};
  for (int k = 0; k < l->nsig; k++)
    if (li.bias.kind != INIT_COUNT && strcmp(l->sig[k].name, "bias") == 0 && !vals[k].ival) {
      diag_error(P->d, fe_loc(P, e->tok), "bias_init is given, but %s is called with bias=false",
                 l->name);
      return (Value){V_ERR};
    }
  if (l->anonymous && (li.weight.kind != INIT_COUNT || li.bias.kind != INIT_COUNT)) {
    diag_error(P->d, fe_loc(P, e->tok), "%s creates no parameters: init= and bias_init= do not apply", l->name);
    return (Value){V_ERR};
  }
  const char *prefix = l->anonymous ? "" : fe_call_prefix(P, e, "layer");
  if (!prefix) return (Value){V_ERR};
  int id = l->build(P, prefix, e->tok, vals, &li);
  return id < 0 ? (Value){V_ERR} : (Value){V_TENSOR, id};
}

/* --- initialisers ------------------------------------------------------------------ */

static const SigParam init_constant[] = {{"value", SK_FLOAT, NULL, NULL, CHK_NONE}};
static const SigParam init_uniform[] = {{"a", SK_FLOAT, "0", NULL, CHK_NONE},
                                        {"b", SK_FLOAT, "1", NULL, CHK_NONE}};
static const SigParam init_normal[] = {{"mean", SK_FLOAT, "0", NULL, CHK_NONE},
                                       {"std", SK_FLOAT, "1", NULL, CHK_NONNEG}};

static const struct {
  const char *name;
  RtInitKind kind;
  const SigParam *sig;
  int nsig;
} inits[] = {
    {"zeros", INIT_ZEROS, NULL, 0},
    {"ones", INIT_ONES, NULL, 0},
    {"constant", INIT_CONSTANT, SIG(init_constant)},
    {"uniform", INIT_UNIFORM, SIG(init_uniform)},
    {"normal", INIT_NORMAL, SIG(init_normal)},
    {"kaiming_uniform", INIT_KAIMING_UNIFORM, NULL, 0},
    {"kaiming_normal", INIT_KAIMING_NORMAL, NULL, 0},
    {"he_uniform", INIT_KAIMING_UNIFORM, NULL, 0},
    {"he_normal", INIT_KAIMING_NORMAL, NULL, 0},
    {"xavier_uniform", INIT_XAVIER_UNIFORM, NULL, 0},
    {"xavier_normal", INIT_XAVIER_NORMAL, NULL, 0},
    {"default", INIT_TORCH_DEFAULT, NULL, 0},
};

static int unknown_init(Parser *P, Expr *e) {
  Suggest sg;
  fe_suggest_init(&sg, e->name ? e->name : "", P->d);
  for (size_t i = 0; i < sizeof inits / sizeof inits[0]; i++) fe_suggest_add(&sg, inits[i].name);
  if (e->kind != EX_NAME && e->kind != EX_CALL)
    diag_error(P->d, fe_loc(P, e->tok), "expected an initialiser such as zeros or normal(std=0.01)");
  else
    diag_error(P->d, fe_loc(P, e->tok), "unknown initialiser '%s'%s", e->name,
               sg.best ? fe_suggest_text(&sg) : "; the initialisers are zeros, ones, constant, uniform, "
               "normal, kaiming_uniform (he_uniform), kaiming_normal (he_normal), xavier_uniform, xavier_normal, "
               "default, or a number");
  return -1;
}

/* Fills *init from `= INIT` of s (or the default for its rank); sets
 * init->kind to INIT_COUNT after an error. */
void fe_init_of(Parser *P, Stmt *s, int rank, ParamInit *init) {
  *init = (ParamInit){rank <= 1 ? INIT_ZEROS : INIT_TORCH_DEFAULT, 0, 0};
  if (s->value) fe_init_expr(P, s->value, init);
}

/* A number (or a negated one) as an initialiser: constant(value). */
static int is_number_expr(const Expr *e) { return e->kind == EX_NUM || (e->kind == EX_NEG && is_number_expr(e->lhs)); }

void fe_init_expr(Parser *P, Expr *e, ParamInit *init) {
  init->kind = INIT_COUNT;
  if (is_number_expr(e)) {
    Value v = fe_eval_as(P, e, SK_FLOAT, "an initialiser", NULL);
    if (v.kind != V_ERR) *init = (ParamInit){INIT_CONSTANT, v.num, 0};
    return;
  }
  size_t i = 0, n = sizeof inits / sizeof inits[0];
  while (i < n && (e->kind == EX_NAME || e->kind == EX_CALL) && strcmp(inits[i].name, e->name) != 0) i++;
  if (i == n || (e->kind != EX_NAME && e->kind != EX_CALL)) {
    unknown_init(P, e);
    return;
  }
  Expr *slots[2];
  Value v[2];
  if (e->kind == EX_CALL &&
      (fe_bind_args(P, inits[i].name, "argument", e->tok, inits[i].sig, inits[i].nsig, e->args, e->nargs, slots) ||
       fe_eval_args(P, inits[i].name, inits[i].sig, inits[i].nsig, slots, v)))
    return;
  if (e->kind == EX_NAME && inits[i].nsig && !inits[i].sig[0].deflt) {
    diag_error(P->d, fe_loc(P, e->tok), "%s needs the argument '%s': %s(%s)", e->name,
               inits[i].sig[0].name, e->name, inits[i].sig[0].name);
    return;
  }
  if (e->kind == EX_NAME)
    for (int k = 0; k < inits[i].nsig; k++) v[k] = fe_default(&inits[i].sig[k]);
  if (inits[i].kind == INIT_UNIFORM && v[0].num > v[1].num) {
    diag_error(P->d, fe_loc(P, e->tok), "uniform(a, b) needs a <= b, not a = %g and b = %g", v[0].num, v[1].num);
    return;
  }
  *init = (ParamInit){inits[i].kind, inits[i].nsig > 0 ? v[0].num : 0, inits[i].nsig > 1 ? v[1].num : 0};
}
