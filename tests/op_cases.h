/*
 * op_cases.h — one table of small test cases per op, shared by every test
 * that checks an implementation of the ops: the reference interpreter
 * against PyTorch (test_interp_ops.c) and each compiled backend against the
 * interpreter.
 *
 * Case NAME reads its operands from tests/fixtures/ops/NAME.in0.npy,
 * NAME.in1.npy, ... and its PyTorch result from NAME.out.npy; all of them
 * are written by tests/fixtures/gen_op_fixtures.py, which lists the same
 * cases in the same order.  Shapes and dtypes come from the .npy files;
 * the table adds what a file cannot say:
 *
 *   op      the OpKind under test (one op per case, one output "out");
 *   nin     how many operands come from fixtures (named in0, in1, ...);
 *   batch   bit i set: dimension 0 of in<i> is the symbol "N" (max
 *           OPCASE_N_MAX) instead of its constant, to exercise binding;
 *   attrs   the attributes in .dl keyword syntax, space separated:
 *           "axis=1 start=-5 step=2", "axes=0,2 keepdim=1", "padding=1,0,2,1",
 *           "reduction=sum", "shape=N,-1,2" (in a reshape shape, -1 is the
 *           inferred dimension and N the symbol), "end=max";
 *   cpos    with OPC_CONST(pos, value): a scalar constant operand (a
 *           rank-0 ir_const) inserted at operand position pos, so
 *           add(x, 2.5) is { .nin = 1, OPC_CONST(1, 2.5) }.
 *
 * Use: read ins[0..nin) with rt_npy_read, ir_graph_init a Graph, call
 * opcase_build, then fill vals[opcase_input_id(g, i)] = ins[i].
 * Everything here is static so each test file gets its own copy.
 */
#ifndef DLC_OP_CASES_H
#define DLC_OP_CASES_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

#define OPCASE_MAX_IN 6
#define OPCASE_N_MAX 64

typedef struct OpCase {
  const char *name;
  OpKind op;
  int nin;
  unsigned batch;
  const char *attrs;
  int cpos;            /* operand position of the scalar constant + 1; 0: none */
  double cvalue;
} OpCase;

#define OPC_CONST(pos, value) .cpos = (pos) + 1, .cvalue = (value)
#define B0 1u
#define B01 3u
#define B012 7u

static const OpCase op_cases[] = {
    /* matmul: 2-D, batched with broadcast, and 1-D operands */
    {"matmul_2d", OP_MATMUL, 2, B0},
    {"matmul_batched_bcast", OP_MATMUL, 2, B0},
    {"matmul_1d_2d", OP_MATMUL, 2},
    {"matmul_2d_1d", OP_MATMUL, 2, B0},
    {"matmul_1d_1d", OP_MATMUL, 2},
    {"matmul_3d_1d", OP_MATMUL, 2},
    {"linear_bias", OP_LINEAR, 3, B0},
    {"linear_nobias", OP_LINEAR, 2, B0},
    /* binary elementwise with broadcasting and scalar constants */
    {"add_same", OP_ADD, 2, B01},
    {"add_bcast_row", OP_ADD, 2, B0},
    {"add_scalar", OP_ADD, 1, B0, NULL, OPC_CONST(1, 2.5)},
    {"sub_bcast_outer", OP_SUB, 2, B0},
    {"sub_scalar_left", OP_SUB, 1, 0, NULL, OPC_CONST(0, 1.0)},
    {"mul_bcast_mid", OP_MUL, 2, B0},
    {"mul_rank0", OP_MUL, 2, B0},
    {"div_bcast", OP_DIV, 2, B0},
    {"div_scalar", OP_DIV, 1, 0, NULL, OPC_CONST(1, 4.0)},
    /* unary elementwise */
    {"neg", OP_NEG, 1, B0},
    {"abs", OP_ABS, 1, B0},
    {"relu", OP_RELU, 1, B0},
    {"leaky_relu_default", OP_LEAKY_RELU, 1},
    {"leaky_relu_slope", OP_LEAKY_RELU, 1, B0, "slope=0.2"},
    {"sigmoid", OP_SIGMOID, 1},
    {"tanh", OP_TANH, 1, B0},
    {"elu_default", OP_ELU, 1},
    {"elu_alpha", OP_ELU, 1, B0, "alpha=0.5"},
    {"exp", OP_EXP, 1},
    {"log", OP_LOG, 1, B0},
    {"sqrt", OP_SQRT, 1},
    {"pow_2", OP_POW, 1, 0, "exponent=2"},
    {"pow_half", OP_POW, 1, B0, "exponent=0.5"},
    {"pow_neg1", OP_POW, 1, 0, "exponent=-1"},
    {"pow_3", OP_POW, 1, B0, "exponent=3"},
    /* softmax and log_softmax along each axis of a rank-3 tensor */
    {"softmax_axis0", OP_SOFTMAX, 1, B0, "axis=0"},
    {"softmax_axis1", OP_SOFTMAX, 1, 0, "axis=1"},
    {"softmax_last", OP_SOFTMAX, 1, B0, "axis=-1"},
    {"log_softmax_axis0", OP_LOG_SOFTMAX, 1, 0, "axis=0"},
    {"log_softmax_axis1", OP_LOG_SOFTMAX, 1, B0, "axis=1"},
    {"log_softmax_last", OP_LOG_SOFTMAX, 1, 0},
    /* layout */
    {"reshape_infer", OP_RESHAPE, 1, 0, "shape=4,-1"},
    {"reshape_batch", OP_RESHAPE, 1, B0, "shape=N,-1,2"},
    {"flatten_default", OP_FLATTEN, 1, B0},
    {"flatten_start0", OP_FLATTEN, 1, 0, "start=0"},
    {"flatten_middle", OP_FLATTEN, 1, B0, "start=1 end=2"},
    {"transpose_2d", OP_TRANSPOSE, 1, B0},
    {"transpose_4d", OP_TRANSPOSE, 1, B0, "perm=0,2,3,1"},
    {"concat2_axis1", OP_CONCAT, 2, B01, "axis=1"},
    {"concat3_axis1", OP_CONCAT, 3, B012, "axis=1"},
    {"concat_axis_last", OP_CONCAT, 2, 0, "axis=-1"},
    {"slice_step", OP_SLICE, 1, B0, "axis=1 start=1 end=9 step=3"},
    {"slice_neg_start", OP_SLICE, 1, B0, "axis=1 start=-5"},
    {"slice_neg_end_axis0", OP_SLICE, 1, 0, "axis=0 start=0 end=-1 step=2"},
    /* reductions (axes are given unsorted once, to check canonicalisation) */
    {"sum_all", OP_SUM, 1, B0},
    {"sum_axis1", OP_SUM, 1, 0, "axes=1"},
    {"sum_axes02_keepdim", OP_SUM, 1, B0, "axes=0,2 keepdim=1"},
    {"mean_all", OP_MEAN, 1},
    {"mean_last_keepdim", OP_MEAN, 1, B0, "axes=-1 keepdim=1"},
    {"mean_axes02", OP_MEAN, 1, 0, "axes=2,0"},
    {"max_all", OP_MAX, 1, B0},
    {"max_axis1", OP_MAX, 1, B0, "axes=1"},
    {"max_axes12_keepdim", OP_MAX, 1, 0, "axes=1,2 keepdim=1"},
    {"maxout_axis1", OP_MAXOUT, 1, B0, "pieces=3 axis=1"},
    {"maxout_last", OP_MAXOUT, 1, B0, "pieces=2 axis=-1"},
    /* losses */
    {"cross_entropy_mean", OP_CROSS_ENTROPY, 2, B01},
    {"cross_entropy_sum", OP_CROSS_ENTROPY, 2, 0, "reduction=sum"},
    {"cross_entropy_none", OP_CROSS_ENTROPY, 2, B01, "reduction=none"},
    {"cross_entropy_i32", OP_CROSS_ENTROPY, 2, 0, "reduction=mean"},
    {"bce_mean", OP_BCE_LOGITS, 2, B01},
    {"bce_sum", OP_BCE_LOGITS, 2, 0, "reduction=sum"},
    {"bce_none", OP_BCE_LOGITS, 2, B01, "reduction=none"},
    {"mse_mean", OP_MSE_LOSS, 2, B01},
    {"mse_sum", OP_MSE_LOSS, 2, 0, "reduction=sum"},
    {"mse_none", OP_MSE_LOSS, 2, B01, "reduction=none"},
    {"l1_mean", OP_L1_LOSS, 2, B01},
    {"l1_sum", OP_L1_LOSS, 2, 0, "reduction=sum"},
    {"l1_none", OP_L1_LOSS, 2, B01, "reduction=none"},
    {"triplet_mean", OP_TRIPLET_LOSS, 3, B012},
    {"triplet_sum", OP_TRIPLET_LOSS, 3, 0, "margin=0.5 reduction=sum"},
    {"triplet_none", OP_TRIPLET_LOSS, 3, B012, "margin=2 reduction=none"},
    /* convolution (the batch is the symbol N), pooling, upsample, pad;
     * test_conv.c also checks their gradients against PyTorch's */
    {"conv2d_plain", OP_CONV2D, 3, B0},
    {"conv2d_stride2", OP_CONV2D, 3, B0, "stride=2"},
    {"conv2d_pad1", OP_CONV2D, 3, B0, "padding=1"},
    {"conv2d_pad_asym", OP_CONV2D, 3, B0, "padding=1,0,2,1"},
    {"conv2d_reflect", OP_CONV2D, 3, B0, "padding=1 padding_mode=reflect"},
    {"conv2d_replicate", OP_CONV2D, 3, 0, "padding=2,1 padding_mode=replicate"},
    {"conv2d_dilation2", OP_CONV2D, 3, B0, "padding=1 dilation=2"},
    {"conv2d_groups2", OP_CONV2D, 3, B0, "groups=2"},
    {"conv2d_depthwise", OP_CONV2D, 3, B0, "padding=1 groups=3"},
    {"conv2d_1x1", OP_CONV2D, 3, B0},
    {"conv2d_nobias", OP_CONV2D, 2, B0, "stride=2,1 padding=1,0"},
    {"conv1d_pad1", OP_CONV1D, 3, B0, "padding=1"},
    {"conv1d_stride_dil", OP_CONV1D, 2, B0, "stride=2 padding=2,1 dilation=2"},
    {"conv1d_reflect", OP_CONV1D, 3, 0, "padding=2 padding_mode=reflect groups=2"},
    {"conv_transpose2d_s2", OP_CONV_TRANSPOSE2D, 3, B0, "stride=2 padding=1 output_padding=1"},
    {"conv_transpose2d_groups", OP_CONV_TRANSPOSE2D, 3, B0, "stride=2 groups=2"},
    {"conv_transpose2d_dil", OP_CONV_TRANSPOSE2D, 2, B0, "dilation=2"},
    {"upsample_nearest2", OP_UPSAMPLE, 1, B0, "scale_factor=2"},
    {"upsample_nearest_23", OP_UPSAMPLE, 1, 0, "scale_factor=2,3"},
    {"upsample_bilinear2", OP_UPSAMPLE, 1, B0, "scale_factor=2 mode=bilinear"},
    {"upsample_bilinear3", OP_UPSAMPLE, 1, 0, "scale_factor=3 mode=bilinear"},
    {"max_pool2d_2x2", OP_MAX_POOL2D, 1, B0, "kernel=2"},
    {"max_pool2d_3s2p1", OP_MAX_POOL2D, 1, B0, "kernel=3 stride=2 padding=1"},
    {"max_pool2d_ceil", OP_MAX_POOL2D, 1, 0, "kernel=2 stride=2 ceil_mode=1"},
    {"max_pool2d_dilation", OP_MAX_POOL2D, 1, B0, "kernel=3 stride=1 padding=1 dilation=2"},
    {"avg_pool2d_2x2", OP_AVG_POOL2D, 1, B0, "kernel=2"},
    {"avg_pool2d_pad_incl", OP_AVG_POOL2D, 1, B0, "kernel=3 stride=2 padding=1"},
    {"avg_pool2d_pad_excl", OP_AVG_POOL2D, 1, 0, "kernel=3 stride=2 padding=1 count_include_pad=0"},
    {"avg_pool2d_ceil", OP_AVG_POOL2D, 1, B0, "kernel=3 stride=2 padding=1 ceil_mode=1"},
    {"global_avg_pool", OP_GLOBAL_AVG_POOL, 1, B0},
    {"pad_constant", OP_PAD, 1, 0, "pads=1,2 value=0.5"},
    {"pad_constant_2d", OP_PAD, 1, B0, "pads=1,0,2,1"},
    {"pad_reflect", OP_PAD, 1, B0, "pads=2,1,1,3 mode=reflect"},
    {"pad_replicate", OP_PAD, 1, B0, "pads=3,2 mode=replicate"},
    {"pad_replicate_2d", OP_PAD, 1, 0, "pads=1,2,2,0 mode=replicate"},
    /* inference forms of batch norm (running statistics) and dropout */
    {"batchnorm_eval_2d", OP_BATCHNORM, 5, B0},
    {"batchnorm_eval_1d", OP_BATCHNORM, 5, B0},
    {"dropout_eval", OP_DROPOUT, 1, B0, "p=0.5"},
    /* gradient control: the identity forward */
    {"stop_gradient", OP_STOP_GRADIENT, 1, B0},
    /* elementwise ops of ir/elemwise.def */
    {"gelu", OP_GELU, 1, B0},
    {"gelu_tanh", OP_GELU, 1, 0, "approximate=tanh"},
    {"silu", OP_SILU, 1, B0},
    {"selu", OP_SELU, 1},
    {"softplus_default", OP_SOFTPLUS, 1, B0},
    {"softplus_beta", OP_SOFTPLUS, 1, 0, "beta=2 threshold=3"},
    {"hardswish", OP_HARDSWISH, 1, B0},
    {"hardsigmoid", OP_HARDSIGMOID, 1},
    {"mish", OP_MISH, 1, B0},
    {"log_sigmoid", OP_LOG_SIGMOID, 1},
    {"erf", OP_ERF, 1, B0},
    {"clamp_both", OP_CLAMP, 1, B0, "min=-0.5 max=0.8"},
    {"clamp_min", OP_CLAMP, 1, 0, "min=0.2"},
    {"clamp_max", OP_CLAMP, 1, 0, "max=-0.1"},
    {"maximum_bcast", OP_MAXIMUM, 2, B0},
    {"maximum_scalar", OP_MAXIMUM, 1, B0, NULL, OPC_CONST(1, 0.3)},
    {"minimum_same", OP_MINIMUM, 2, B01},
    {"pow_tensor", OP_POW, 2, B01},
    {"pow_tensor_bcast", OP_POW, 2, B0},
    /* NaN, +inf, -inf and 0 in the operands (opcase_nonfinite) */
    {"relu_nan", OP_RELU, 1, B0},
    {"leaky_relu_nan", OP_LEAKY_RELU, 1},
    {"elu_nan", OP_ELU, 1},
    {"selu_nan", OP_SELU, 1},
    {"sigmoid_nan", OP_SIGMOID, 1},
    {"tanh_nan", OP_TANH, 1},
    {"gelu_nan", OP_GELU, 1},
    {"gelu_tanh_nan", OP_GELU, 1, 0, "approximate=tanh"},
    {"silu_nan", OP_SILU, 1},
    {"softplus_nan", OP_SOFTPLUS, 1},
    {"hardswish_nan", OP_HARDSWISH, 1},
    {"hardsigmoid_nan", OP_HARDSIGMOID, 1},
    {"mish_nan", OP_MISH, 1},
    {"log_sigmoid_nan", OP_LOG_SIGMOID, 1},
    {"erf_nan", OP_ERF, 1},
    {"abs_nan", OP_ABS, 1},
    {"neg_nan", OP_NEG, 1},
    {"exp_nan", OP_EXP, 1},
    {"log_nan", OP_LOG, 1},
    {"sqrt_nan", OP_SQRT, 1},
    {"pow_2_nan", OP_POW, 1, 0, "exponent=2"},
    {"clamp_nan", OP_CLAMP, 1, B0, "min=-0.5 max=0.8"},
    {"maximum_nan", OP_MAXIMUM, 2},
    {"minimum_nan", OP_MINIMUM, 2},
    {"add_nan", OP_ADD, 2},
    {"mul_nan", OP_MUL, 2},
    {"max_all_nan", OP_MAX, 1},
    {"max_axis1_nan", OP_MAX, 1, B0, "axes=1"},
    {"maxout_nan", OP_MAXOUT, 1, 0, "pieces=2 axis=-1"},
    {"sum_nan", OP_SUM, 1, 0, "axes=1"},
    {"softmax_nan", OP_SOFTMAX, 1, B0},
    {"log_softmax_nan", OP_LOG_SOFTMAX, 1},
    {"max_pool2d_nan", OP_MAX_POOL2D, 1, 0, "kernel=2"},
    {"avg_pool2d_nan", OP_AVG_POOL2D, 1, 0, "kernel=2"},
    {"cross_entropy_nan", OP_CROSS_ENTROPY, 2, 0, "reduction=none"},
    {"bce_nan", OP_BCE_LOGITS, 2, 0, "reduction=none"},
    {"mse_nan", OP_MSE_LOSS, 2, 0, "reduction=none"},
    {"l1_nan", OP_L1_LOSS, 2, 0, "reduction=none"},
    /* comparisons (f32 0/1) and where */
    {"eq_bcast", OP_EQ, 2, B0},
    {"ne_same", OP_NE, 2, B01},
    {"lt_bcast", OP_LT, 2},
    {"le_same", OP_LE, 2, B01},
    {"gt_scalar", OP_GT, 1, B0, NULL, OPC_CONST(1, 0.0)},
    {"ge_bcast", OP_GE, 2, B0},
    {"eq_nan", OP_EQ, 2},
    {"ne_nan", OP_NE, 2},
    {"lt_nan", OP_LT, 2},
    {"ge_nan", OP_GE, 2},
    {"where_same", OP_WHERE, 3, B012},
    {"where_bcast", OP_WHERE, 3, B01},
    {"where_bcast_cond", OP_WHERE, 3, B0},
    {"where_nan", OP_WHERE, 3, B012},
    /* gather and index_select with i64 and i32 indices */
    {"gather_axis1", OP_GATHER, 2, B01, "axis=1"},
    {"gather_axis0_i32", OP_GATHER, 2, 0, "axis=0"},
    {"gather_last_smaller", OP_GATHER, 2, B01, "axis=-1"},
    {"index_select_axis0", OP_INDEX_SELECT, 2, 0, "axis=0"},
    {"index_select_axis1", OP_INDEX_SELECT, 2, B0, "axis=1"},
    {"index_select_2d_index", OP_INDEX_SELECT, 2, 2u, "axis=0"},
    {"index_select_2d_index_axis1", OP_INDEX_SELECT, 2, B0, "axis=1"},
    /* sequence losses: [N, C, d...] logits, ignore_index */
    {"cross_entropy_3d_mean", OP_CROSS_ENTROPY, 2, B01},
    {"cross_entropy_4d_none", OP_CROSS_ENTROPY, 2, B01, "reduction=none"},
    {"cross_entropy_ignore_mean", OP_CROSS_ENTROPY, 2, B01},
    {"cross_entropy_ignore_3d_sum", OP_CROSS_ENTROPY, 2, 0, "reduction=sum ignore_index=2"},
    {"cross_entropy_ignore_3d_none", OP_CROSS_ENTROPY, 2, B01, "reduction=none"},
    {"cross_entropy_ignore_3d_mean", OP_CROSS_ENTROPY, 2, 0, "ignore_index=0"},
    {"nll_loss_mean", OP_NLL_LOSS, 2, B01},
    {"nll_loss_sum_i32", OP_NLL_LOSS, 2, 0, "reduction=sum"},
    {"nll_loss_3d_none", OP_NLL_LOSS, 2, B01, "reduction=none"},
    {"nll_loss_3d_ignore_mean", OP_NLL_LOSS, 2, 0, "ignore_index=1"},
    /* layer_norm over the last ndim axes */
    {"layer_norm_last", OP_LAYER_NORM, 3, B0},
    {"layer_norm_2d", OP_LAYER_NORM, 3, B0, "ndim=2"},
    {"layer_norm_plain", OP_LAYER_NORM, 1, B0, "eps=0.001"},
    {"layer_norm_weight_only", OP_LAYER_NORM, 2, 0},
    /* tril (a causal mask) and softmax over rows with -inf (masked) entries */
    {"tril_lower", OP_TRIL, 1, B0},
    {"tril_fill_below", OP_TRIL, 1, 0, "diagonal=-1 value=-2.5"},
    {"tril_fill_above", OP_TRIL, 1, B0, "diagonal=2 value=7"},
    {"tril_causal_inf", OP_TRIL, 1, B0, "value=-inf"},
    {"softmax_masked_inf", OP_SOFTMAX, 1, B0},
    {"softmax_masked_axis0_inf", OP_SOFTMAX, 1, 0, "axis=0"},
    {"softmax_fully_masked_row_inf", OP_SOFTMAX, 1, B0},
    /* trigonometric and rounding functions */
    {"sin", OP_SIN, 1, B0},
    {"cos", OP_COS, 1},
    {"tan", OP_TAN, 1, B0},
    {"asin", OP_ASIN, 1},
    {"acos", OP_ACOS, 1, B0},
    {"atan", OP_ATAN, 1},
    {"floor", OP_FLOOR, 1, B0},
    {"ceil", OP_CEIL, 1},
    {"round", OP_ROUND, 1, B0},
    {"sin_nan", OP_SIN, 1},
    {"tan_nan", OP_TAN, 1},
    {"asin_nan", OP_ASIN, 1},
    {"atan_nan", OP_ATAN, 1},
    {"floor_nan", OP_FLOOR, 1},
    {"round_nan", OP_ROUND, 1},
};
#define OPCASE_COUNT ((int)(sizeof op_cases / sizeof op_cases[0]))

#undef B0
#undef B01
#undef B012

/* One list entry of "shape=N,-1,2", "perm=0,2,3,1" or "axes=-1". */
static inline Dim opcase_list_item(const Graph *g, const char *key, const char *item) {
  if (strcmp(item, "-1") == 0 && strcmp(key, "shape") == 0) return DIM_INFER;
  int s = ir_symbol_find(g, item);
  return s >= 0 ? DIM_SYM(s) : (Dim)strtoll(item, NULL, 10);
}

static inline int opcase_set_list(const Graph *g, Attrs *a, OpKind op, const char *key, char *val) {
  Dim v[IR_MAX_RANK];
  int n = 0;
  for (char *save, *tok = strtok_r(val, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (n == IR_MAX_RANK) return -1;
    v[n++] = opcase_list_item(g, key, tok);
  }
  return ir_attr_set_list(a, op, key, v, n);
}

/* Sets one "key=value" attribute by the kind op's spec gives it. */
static inline int opcase_set_attr(const Graph *g, Attrs *a, OpKind op, const char *key, char *val) {
  AttrSpec specs[8];
  int n = ir_attr_specs(op, specs, 8);
  for (int k = 0; k < n; k++) {
    if (strcmp(specs[k].name, key) != 0) continue;
    switch (specs[k].kind) {
    case ATTR_FLOAT: return ir_attr_set_float(a, op, key, strtod(val, NULL));
    case ATTR_INT:
    case ATTR_BOOL:
      return ir_attr_set_int(a, op, key, strcmp(val, "max") == 0 ? ATTR_MAX : strtoll(val, NULL, 10));
    case ATTR_ENUM: return ir_attr_set_enum(a, op, key, val);
    case ATTR_LIST: return opcase_set_list(g, a, op, key, val);
    }
  }
  return -1;
}

/* The case's attributes over op's defaults; 0, or -1 for a bad string. */
static inline int opcase_attrs(const OpCase *c, const Graph *g, Attrs *a) {
  *a = ir_attrs_default(c->op);
  const char *p = c->attrs ? c->attrs : "";
  for (;;) {
    char key[32], val[64];
    int used = 0;
    while (*p == ' ') p++;
    if (!*p) return 0;
    if (sscanf(p, "%31[a-z_]=%63s%n", key, val, &used) != 2) return -1;
    if (opcase_set_attr(g, a, c->op, key, val) != 0) {
      fprintf(stderr, "op case %s: bad attribute '%s=%s'\n", c->name, key, val);
      return -1;
    }
    p += used;
  }
}

/* Whether some f32 operand of a case holds NaN or an infinity (the _nan
 * cases): finite differences cannot judge their gradients. */
static inline int opcase_nonfinite(const RtTensor *ins, int nin) {
  for (int i = 0; i < nin; i++) {
    if (ins[i].dtype != DT_F32) continue;
    const float *v = ins[i].data;
    for (int64_t k = 0; k < rt_tensor_numel(&ins[i]); k++)
      if (!isfinite(v[k])) return 1;
  }
  return 0;
}

/* The node id of fixture operand in<i> of a built case graph. */
static inline int opcase_input_id(const Graph *g, int i) {
  char name[16];
  snprintf(name, sizeof name, "in%d", i);
  return ir_find_input(g, name);
}

/* Builds case c into g (initialised by the caller, with diagnostics):
 * inputs in0.. typed like ins[0..c->nin), the scalar constant if any, the
 * op and the output "out".  Returns the op's node id, or -1 after the
 * shape rule or the attribute string failed. */
static inline int opcase_build(const OpCase *c, Graph *g, const RtTensor *ins) {
  SrcLoc loc = {0};
  int sym = c->batch ? ir_symbol(g, "N", loc) : -1, ops[OPCASE_MAX_IN + 1], nops = 0;
  if (sym >= 0) g->syms[sym].max = OPCASE_N_MAX;
  for (int i = 0; i <= c->nin; i++) {
    if (c->cpos && c->cpos - 1 == nops) ops[nops++] = ir_const(g, c->cvalue, loc);
    if (i == c->nin) break;
    if (ins[i].rank > IR_MAX_RANK) return -1;
    Shape s = {ins[i].rank, {0}};
    for (int k = 0; k < s.rank; k++) s.d[k] = ins[i].shape[k];
    if (c->batch >> i & 1) s.d[0] = DIM_SYM(sym);
    char name[16];
    snprintf(name, sizeof name, "in%d", i);
    ops[nops++] = ir_input(g, name, ins[i].dtype, &s, loc);
  }
  Attrs a;
  if (opcase_attrs(c, g, &a) != 0) return -1;
  int id = ir_op(g, c->op, ops, nops, &a, loc);
  if (id >= 0) ir_output(g, "out", id);
  return id;
}

#endif
