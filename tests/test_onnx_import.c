/*
 * test_onnx_import.c — ONNX models read back as dlc models (onnx_import,
 * dlc import, dlc MODEL.onnx).
 *
 * Round trips: every sample is exported with a seed, and `dlc run` of the
 * .onnx file, and of the .dl and safetensors `dlc import` writes, agree
 * with `dlc run` of the sample on the same input within 1e-5 relative to
 * the output's largest magnitude.  The opset differences (attributes that
 * became inputs: Clip, Slice, Pad, ReduceSum axes; Softmax's axis),
 * initializers listed among the graph inputs, Constant nodes, dim_param
 * symbols and the sanitised names are checked on the .dl text of small
 * models built in memory (tests/onnx_build.h).  Hostile models — truncated
 * bytes, wrong types, huge dims, cycles, undefined and duplicate names,
 * tensor data that does not match its dims, external data that escapes the
 * model's directory or is missing or short — are each refused with a
 * message that names what is wrong, and unsupported ops and attributes
 * with one that names the node by index, name and op.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "onnx/nodetest.h"
#include "onnx/onnx.h"
#include "tests/onnx_build.h"
#include "tests/testutil.h"

/* --- in-process imports -------------------------------------------------------------------- */

typedef struct Imported {
  int rc;
  char *text;       /* the .dl text (malloc'd), or NULL */
  char log[4096];   /* the diagnostics */
  RtTensorSet weights;
} Imported;

/* Imports the built model (path: its name, for messages and external
 * data); a model that imports must parse back as .dl. */
static Imported import_built(OnnxBuild *b, const char *path) {
  size_t len;
  uint8_t *bytes = ob_pack(b, &len);
  Imported r = {0};
  FILE *f = fmemopen(r.log, sizeof r.log - 1, "w");
  Diags d;
  diag_init(&d, f);
  OnnxImport im;
  r.rc = onnx_import(bytes, len, path, &im, &d);
  fclose(f);
  if (r.rc == 0) {
    r.text = strdup(im.text);
    r.weights = im.weights;
    Model m;
    Diags d2;
    diag_init(&d2, stderr);
    cr_assert_eq(fe_load_string(&m, "imported.dl", im.text, &d2), 0, "the imported text does not parse:\n%s", im.text);
    fe_model_free(&m);
    im.weights.count = 0, im.weights.items = NULL, im.weights.cap = 0;
    onnx_import_free(&im);
  } else {
    cr_assert_eq(d.nerrors > 0, 1, "a failed import reports an error");
    rt_set_init(&r.weights);
  }
  return r;
}

static void imported_free(Imported *r) {
  free(r->text);
  rt_set_free(&r->weights);
}

/* The model must import, and its text hold every line of want ('\n'-separated). */
static void expect_text(OnnxBuild *b, const char *want) {
  Imported r = import_built(b, "m.onnx");
  cr_assert_eq(r.rc, 0, "import failed:\n%s", r.log);
  char line[512];
  for (const char *p = want; *p;) {
    size_t n = strcspn(p, "\n");
    snprintf(line, sizeof line, "%.*s", (int)n, p);
    cr_expect(strstr(r.text, line) != NULL, "wanted '%s' in:\n%s", line, r.text);
    p += n + (p[n] == '\n');
  }
  imported_free(&r);
}

/* The model must be refused with a message holding want. */
static void expect_error_at(OnnxBuild *b, const char *path, const char *want) {
  Imported r = import_built(b, path);
  cr_assert_eq(r.rc, -1, "imported, wanted an error '%s':\n%s", want, r.text ? r.text : "");
  cr_expect(strstr(r.log, want) != NULL, "wanted '%s' in:\n%s", want, r.log);
  imported_free(&r);
}

static void expect_error(OnnxBuild *b, const char *want) { expect_error_at(b, "m.onnx", want); }

/* x: f32[N, 4] -> Relu -> y, the base of several cases. */
static void relu_model(OnnxBuild *b, Arena *a, int64_t opset) {
  ob_init(b, a, opset);
  ob_input(b, "x", "N,4");
  ob_node(b, "Relu", "x", "y");
  ob_output(b, "y");
}

/* --- opsets, constants, names ------------------------------------------------------------- */

Test(onnx_import, clip_bounds_are_attributes_before_opset_11_and_inputs_after) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 7);
  ob_input(&b, "x", "N,4");
  Onnx__NodeProto *n = ob_node(&b, "Clip", "x", "y");
  ob_attr_f(&b, n, "min", 0), ob_attr_f(&b, n, "max", 6);
  ob_output(&b, "y");
  expect_text(&b, "y = clamp(x, min=0, max=6)");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  int64_t none = 0;
  float lo = 0, hi = 6;
  ob_init_f32(&b, "lo", 0, &none, &lo), ob_init_f32(&b, "hi", 0, &none, &hi);
  ob_node(&b, "Clip", "x,lo,hi", "y");
  ob_output(&b, "y");
  expect_text(&b, "y = clamp(x, min=0, max=6)");
  n->n_attribute = 0;
  arena_free(&a);
}

Test(onnx_import, slice_starts_and_ends_are_attributes_before_opset_10_and_inputs_after) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 9);
  ob_input(&b, "x", "N,4");
  int64_t s = 1, e = 3, ax = 1;
  Onnx__NodeProto *n = ob_node(&b, "Slice", "x", "y");
  ob_attr_ints(&b, n, "starts", 1, &s), ob_attr_ints(&b, n, "ends", 1, &e), ob_attr_ints(&b, n, "axes", 1, &ax);
  ob_output(&b, "y");
  expect_text(&b, "y = slice(x, axis=1, start=1, end=3)");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  ob_init_i64(&b, "s", 1, &s), ob_init_i64(&b, "e", 1, &e), ob_init_i64(&b, "ax", 1, &ax);
  ob_node(&b, "Slice", "x,s,e,ax", "y");
  ob_output(&b, "y");
  expect_text(&b, "y = slice(x, axis=1, start=1, end=3)");
  arena_free(&a);
}

Test(onnx_import, pad_pads_are_an_attribute_before_opset_11_and_an_input_after) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  int64_t pads[4] = {0, 1, 0, 2};
  ob_init(&b, &a, 7);
  ob_input(&b, "x", "N,4");
  Onnx__NodeProto *n = ob_node(&b, "Pad", "x", "y");
  ob_attr_ints(&b, n, "pads", 4, pads), ob_attr_f(&b, n, "value", 0.5f);
  ob_output(&b, "y");
  expect_text(&b, "y = pad(x, pads=[1, 2], value=0.5)\ninput x: f32[N, 4]");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  int64_t none = 0;
  float half = 0.5f;
  ob_init_i64(&b, "p", 4, pads), ob_init_f32(&b, "v", 0, &none, &half);
  n = ob_node(&b, "Pad", "x,p,v", "y");
  ob_attr_s(&b, n, "mode", "edge");
  ob_output(&b, "y");
  expect_text(&b, "y = pad(x, pads=[1, 2], mode=replicate, value=0.5)");
  arena_free(&a);
}

Test(onnx_import, reduce_sum_axes_are_an_attribute_before_opset_13_and_an_input_after) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  int64_t ax = 1;
  ob_init(&b, &a, 11);
  ob_input(&b, "x", "N,4");
  Onnx__NodeProto *n = ob_node(&b, "ReduceSum", "x", "y");
  ob_attr_ints(&b, n, "axes", 1, &ax), ob_attr_i(&b, n, "keepdims", 0);
  ob_output(&b, "y");
  expect_text(&b, "y = sum(x, axes=[1])");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  ob_init_i64(&b, "ax", 1, &ax);
  ob_node(&b, "ReduceSum", "x,ax", "y"); /* keepdims defaults to 1 */
  ob_output(&b, "y");
  expect_text(&b, "y = sum(x, axes=[1], keepdim=1)");
  arena_free(&a);
}

Test(onnx_import, softmax_before_opset_13_only_over_the_last_axis) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 11);
  ob_input(&b, "x", "N,4");
  ob_node(&b, "Softmax", "x", "y"); /* axis 1 of 2: the last */
  ob_output(&b, "y");
  expect_text(&b, "y = softmax(x, axis=1)");
  ob_init(&b, &a, 11);
  ob_input(&b, "x", "N,3,4");
  ob_node(&b, "Softmax", "x", "y"); /* axis 1 of 3: flattens [3, 4] */
  ob_output(&b, "y");
  expect_error(&b, "node 0 'Softmax_0' (Softmax): before opset 13 Softmax flattens the axes from 1 on");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,3,4");
  ob_node(&b, "Softmax", "x", "y"); /* axis -1 */
  ob_output(&b, "y");
  expect_text(&b, "y = softmax(x, axis=2)");
  arena_free(&a);
}

Test(onnx_import, reshape_shape_input_with_an_inferred_batch) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  int64_t shape[3] = {-1, 2, 2};
  ob_init_i64(&b, "shape", 3, shape);
  ob_node(&b, "Reshape", "x,shape", "y");
  ob_output(&b, "y");
  expect_text(&b, "y = reshape(x, shape=[N, 2, 2])");
  arena_free(&a);
}

Test(onnx_import, the_shape_gather_unsqueeze_concat_idiom_folds) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "batch,2,3");
  int64_t zero = 0, minus1 = -1;
  ob_init_i64(&b, "zero", 1, &zero), ob_init_i64(&b, "m1", 1, &minus1);
  b.inits[0]->n_dims = 0; /* a scalar index */
  ob_node(&b, "Shape", "x", "s");
  ob_node(&b, "Gather", "s,zero", "n");
  ob_node(&b, "Unsqueeze", "n,zero", "n1");
  ob_node(&b, "Concat", "n1,m1", "target");
  ob_attr_i(&b, b.nodes[3], "axis", 0);
  ob_node(&b, "Reshape", "x,target", "y");
  ob_output(&b, "y");
  expect_text(&b, "input x: f32[batch, 2, 3]\ny = reshape(x, shape=[batch, 6])");
  arena_free(&a);
}

Test(onnx_import, initializers_listed_among_the_inputs_are_params) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 9);
  ob_input(&b, "x", "N,3");
  ob_input(&b, "w", "2,3");
  int64_t d[2] = {2, 3};
  float w[6] = {1, 2, 3, 4, 5, 6};
  ob_init_f32(&b, "w", 2, d, w);
  Onnx__NodeProto *n = ob_node(&b, "Gemm", "x,w", "y");
  ob_attr_i(&b, n, "transB", 1);
  ob_output(&b, "y");
  Imported r = import_built(&b, "m.onnx");
  cr_assert_eq(r.rc, 0, "%s", r.log);
  cr_expect(strstr(r.text, "param w: f32[2, 3]") && !strstr(r.text, "input w"), "%s", r.text);
  cr_expect(strstr(r.text, "y = linear(x, w)"), "%s", r.text);
  RtTensor *t = rt_set_find(&r.weights, "w");
  cr_assert_not_null(t);
  cr_expect(t->rank == 2 && !memcmp(t->data, w, sizeof w));
  imported_free(&r);
  arena_free(&a);
}

Test(onnx_import, gemm_beyond_linear_is_matmul_mul_and_add) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,3");
  int64_t d[2] = {3, 2}, dc = 2;
  float w[6] = {1, 2, 3, 4, 5, 6}, c[2] = {1, -1};
  ob_init_f32(&b, "w", 2, d, w), ob_init_f32(&b, "c", 1, &dc, c);
  Onnx__NodeProto *n = ob_node(&b, "Gemm", "x,w,c", "y");
  ob_attr_f(&b, n, "alpha", 2), ob_attr_f(&b, n, "beta", 0.5f);
  ob_output(&b, "y");
  expect_text(&b, "y_matmul = matmul(x, w)\ny_mul = mul(y_matmul, 2)\ny_mul_2 = mul(c, 0.5)\ny = add(y_mul, y_mul_2)");
  arena_free(&a);
}

Test(onnx_import, constant_nodes_are_scalars_inline_or_frozen_params) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,2");
  int64_t d = 2, none = 0;
  float v[2] = {0.25f, -3}, two = 2;
  Onnx__NodeProto *c = ob_node(&b, "Constant", "", "bias");
  Onnx__AttributeProto *at = ob_attr(&b, c, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
  at->t = ob_tensor(&b, "", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, &d, v, sizeof v);
  Onnx__NodeProto *s = ob_node(&b, "Constant", "", "two");
  at = ob_attr(&b, s, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
  at->t = ob_tensor(&b, "", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 0, &none, &two, sizeof two);
  ob_node(&b, "Add", "x,bias", "h");
  ob_node(&b, "Mul", "h,two", "y");
  ob_output(&b, "y");
  expect_text(&b, "param bias: f32[2]\nfreeze bias\nh = add(x, bias)\ny = mul(h, 2)");
  arena_free(&a);
}

Test(onnx_import, names_become_unique_identifiers_deterministically) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 13);
  ob_input(&b, "input:0", "batch size,4");
  ob_node(&b, "Relu", "input:0", "a.b");
  ob_node(&b, "Relu", "a.b", "a_b");
  ob_node(&b, "Relu", "a_b", "0out");
  ob_node(&b, "Relu", "0out", "model");
  ob_output(&b, "model");
  expect_text(&b, "input input_0: f32[batch_size, 4]\na_b = relu(input_0)\na_b_2 = relu(a_b)\nv0out = relu(a_b_2)\n"
                  "model_ = relu(v0out)\noutput model_");
  arena_free(&a);
}

Test(onnx_import, control_characters_in_names_stay_inside_comments) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  relu_model(&b, &a, 13);
  b.nodes[0]->name = (char *)"evil\ny = relu(x)\noutput y";
  b.m.producer_name = (char *)"tool\ninput z: f32[1] \xcf";
  expect_text(&b, "y = relu(x)    # node 0 'evil?y = relu(x)?output y'");
  b.nodes[0]->name = (char *)"caf\xc3\xa9 \xff";
  expect_text(&b, "y = relu(x)    # node 0 'caf?? ?'");
  arena_free(&a);
}

/* --- hostile models ------------------------------------------------------------------------- */

Test(onnx_import, every_truncation_is_refused_or_parses) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,3");
  int64_t d[2] = {2, 3};
  float w[6] = {1, 2, 3, 4, 5, 6};
  ob_init_f32(&b, "w", 2, d, w);
  Onnx__NodeProto *n = ob_node(&b, "Gemm", "x,w", "y");
  ob_attr_i(&b, n, "transB", 1);
  ob_output(&b, "y");
  size_t len;
  uint8_t *full = ob_pack(&b, &len);
  int refused = 0;
  for (size_t k = 0; k < len; k++) {
    char log[2048];
    FILE *f = fmemopen(log, sizeof log, "w");
    Diags dg;
    diag_init(&dg, f);
    OnnxImport im;
    int rc = onnx_import(full, k, "t.onnx", &im, &dg);
    fclose(f);
    if (rc == 0) onnx_import_free(&im);
    else {
      refused++;
      cr_expect(dg.nerrors > 0);
    }
  }
  cr_expect(refused > (int)len * 9 / 10, "%d of %zu truncations refused", refused, len);
  arena_free(&a);
}

Test(onnx_import, wrong_types_are_refused) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  relu_model(&b, &a, 13);
  b.ins[0]->type->tensor_type->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
  expect_error(&b, "input 'x': data type DOUBLE is not supported");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  ob_attr_f(&b, ob_node(&b, "Softmax", "x", "y"), "axis", 1.0f);
  ob_output(&b, "y");
  expect_error(&b, "node 0 'Softmax_0' (Softmax): attribute 'axis' must be an integer");
  relu_model(&b, &a, 13);
  int64_t d = 1;
  uint8_t one = 1;
  b.inits[b.g.n_initializer++] = ob_tensor(&b, "flag", ONNX__TENSOR_PROTO__DATA_TYPE__BOOL, 1, &d, &one, 1);
  expect_error(&b, "initializer 'flag': data type BOOL is not supported");
  relu_model(&b, &a, 13);
  b.ins[0]->type->value_case = ONNX__TYPE_PROTO__VALUE__NOT_SET;
  expect_error(&b, "input 'x' is not a tensor");
  arena_free(&a);
}

Test(onnx_import, huge_dims_are_refused) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  relu_model(&b, &a, 13);
  int64_t d[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
  b.inits[b.g.n_initializer++] = ob_tensor(&b, "w", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, d, NULL, 0);
  expect_error(&b, "initializer 'w': its dims make a tensor over 1 TiB");
  relu_model(&b, &a, 13);
  int64_t neg = -4;
  b.inits[b.g.n_initializer++] = ob_tensor(&b, "w", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, &neg, NULL, 0);
  expect_error(&b, "initializer 'w': its dims make a tensor over 1 TiB");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "4611686018427387904,4");
  ob_node(&b, "Relu", "x", "y");
  ob_output(&b, "y");
  expect_error(&b, "input 'x': dimension 0 has no size");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "1048576,1048576,1048576");
  ob_node(&b, "Relu", "x", "y");
  ob_output(&b, "y");
  expect_error(&b, "1 TiB");
  arena_free(&a);
}

Test(onnx_import, cycles_are_refused) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  ob_node(&b, "Add", "x,b", "a");
  ob_node(&b, "Relu", "a", "b");
  ob_output(&b, "b");
  expect_error(&b, "the graph has a cycle");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  ob_node(&b, "Add", "x,y", "y"); /* its own input */
  ob_output(&b, "y");
  expect_error(&b, "node 0 'Add_0' (Add): its inputs depend on its own output");
  arena_free(&a);
}

Test(onnx_import, undefined_names_are_refused) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  ob_node(&b, "Add", "x,missing_weight", "y");
  ob_output(&b, "y");
  expect_error(&b, "node 0 'Add_0' (Add): input 'missing_weight' is not defined by any node, input or initializer");
  relu_model(&b, &a, 13);
  ob_output(&b, "z");
  expect_error(&b, "output 'z' is not defined");
  arena_free(&a);
}

Test(onnx_import, duplicate_definitions_are_refused) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  relu_model(&b, &a, 13);
  ob_node(&b, "Neg", "x", "y");
  expect_error(&b, "node 1 'Neg_1' (Neg): output 'y' is already defined by another node");
  relu_model(&b, &a, 13);
  ob_node(&b, "Neg", "y", "x");
  expect_error(&b, "output 'x' is already defined (an input or initializer)");
  relu_model(&b, &a, 13);
  ob_output(&b, "y");
  expect_error(&b, "output 'y' is listed twice");
  relu_model(&b, &a, 13);
  ob_input(&b, "x", "N,4");
  expect_error(&b, "input 'x' is defined twice");
  arena_free(&a);
}

Test(onnx_import, tensor_data_that_does_not_match_its_dims_is_refused) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  int64_t d = 4;
  float v[4] = {1, 2, 3, 4};
  relu_model(&b, &a, 13);
  b.inits[b.g.n_initializer++] = ob_tensor(&b, "w", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, &d, v, 8);
  expect_error(&b, "initializer 'w': raw data of 8 bytes; its dims need 16");
  relu_model(&b, &a, 13);
  Onnx__TensorProto *t = ob_tensor(&b, "w", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, &d, NULL, 0);
  t->n_float_data = 3, t->float_data = v;
  b.inits[b.g.n_initializer++] = t;
  expect_error(&b, "initializer 'w': holds 3 values; its dims need 4");
  relu_model(&b, &a, 13);
  int64_t big[2] = {3, (int64_t)1 << 33}; /* 96 GiB that the file does not hold: refused before any allocation */
  b.inits[b.g.n_initializer++] = ob_tensor(&b, "w", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, big, v, 16);
  expect_error(&b, "initializer 'w': raw data of 16 bytes; its dims need 103079215104");
  arena_free(&a);
}

/* A model whose weight w of 4 floats is external data at location (offset off). */
static void external_model(OnnxBuild *b, Arena *a, const char *location, const char *offset) {
  ob_init(b, a, 13);
  ob_input(b, "x", "N,4");
  int64_t d = 4;
  Onnx__TensorProto *t = ob_tensor(b, "w", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1, &d, NULL, 0);
  t->has_data_location = 1, t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  t->external_data = arena_alloc(a, 2 * sizeof *t->external_data);
  const char *keys[2] = {"location", "offset"}, *vals[2] = {location, offset};
  for (int k = 0; k < (offset ? 2 : 1); k++) {
    Onnx__StringStringEntryProto *e = arena_alloc(a, sizeof *e);
    onnx__string_string_entry_proto__init(e);
    e->key = (char *)keys[k], e->value = (char *)vals[k];
    t->external_data[t->n_external_data++] = e;
  }
  b->inits[b->g.n_initializer++] = t;
  ob_node(b, "Add", "x,w", "y");
  ob_output(b, "y");
}

Test(onnx_import, external_data_is_read_beside_the_model_and_bounds_checked) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  char path[600], model[600];
  float v[5] = {9, 1.5f, -2, 3, 4};
  snprintf(path, sizeof path, "%s/w.bin", dir);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fwrite(v, sizeof v, 1, f);
  fclose(f);
  snprintf(model, sizeof model, "%s/m.onnx", dir);
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  external_model(&b, &a, "w.bin", "4");
  Imported r = import_built(&b, model);
  cr_assert_eq(r.rc, 0, "%s", r.log);
  RtTensor *t = rt_set_find(&r.weights, "w");
  cr_assert_not_null(t);
  cr_expect(!memcmp(t->data, v + 1, 4 * sizeof(float)), "the values at offset 4");
  imported_free(&r);
  external_model(&b, &a, "w.bin", "8"); /* 8 + 16 > 20 bytes */
  expect_error_at(&b, model, "initializer 'w': external data");
  external_model(&b, &a, "../w.bin", NULL);
  expect_error_at(&b, model, "external data location '../w.bin' is not a path inside the model's directory");
  external_model(&b, &a, "/etc/passwd", NULL);
  expect_error_at(&b, model, "external data location '/etc/passwd' is not a path inside");
  external_model(&b, &a, "sub/../../w.bin", NULL);
  expect_error_at(&b, model, "is not a path inside");
  external_model(&b, &a, "nothere.bin", NULL);
  expect_error_at(&b, model, "cannot open external data");
  external_model(&b, &a, "w.bin", "-1");
  expect_error_at(&b, model, "external data offset '-1' is not a size");
  external_model(&b, &a, "w.bin", NULL);
  expect_error_at(&b, NULL, "external data 'w.bin' needs the model's file name");
  arena_free(&a);
}

Test(onnx_import, unsupported_ops_attributes_and_opsets_name_the_node) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  relu_model(&b, &a, 13);
  ob_node(&b, "Det", "y", "z");
  b.outs[0]->name = (char *)"z";
  expect_error(&b, "node 1 'Det_1' (Det): op 'Det' is not supported");
  relu_model(&b, &a, 13);
  ob_attr_i(&b, b.nodes[0], "foo", 1);
  expect_error(&b, "node 0 'Relu_0' (Relu): attribute 'foo' is not supported");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,1,5,5");
  int64_t d[4] = {1, 1, 3, 3};
  float w[9] = {0};
  ob_init_f32(&b, "w", 4, d, w);
  ob_attr_s(&b, ob_node(&b, "ConvTranspose", "x,w", "y"), "auto_pad", "SAME_MIDDLE");
  ob_output(&b, "y");
  expect_error(&b, "node 0 'ConvTranspose_0' (ConvTranspose): attribute 'auto_pad' = 'SAME_MIDDLE' is not supported");
  ob_init(&b, &a, 7);
  ob_input(&b, "x", "N,4");
  ob_attr_f(&b, ob_node(&b, "Clip", "x", "y"), "min", NAN);
  ob_output(&b, "y");
  expect_error(&b, "node 0 'Clip_0' (Clip): dlc's clamp attribute 'min' would be nan, which is not supported");
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "N,1,2,2");
  float sc[4] = {1, 1, 2, 2};
  int64_t four = 4;
  ob_init_f32(&b, "sc", 1, &four, sc);
  Onnx__NodeProto *rs = ob_node(&b, "Resize", "x,,sc", "y");
  ob_attr_s(&b, rs, "mode", "");
  rs->attribute[0]->s.data = NULL; /* an empty string as protobuf-c decodes it */
  ob_output(&b, "y");
  expect_error(&b, "node 0 'Resize_0' (Resize): mode '' with coordinate_transformation_mode 'half_pixel'");
  relu_model(&b, &a, 13);
  b.nodes[0]->domain = (char *)"com.microsoft";
  expect_error(&b, "ops of domain 'com.microsoft' are not supported");
  relu_model(&b, &a, 0);
  expect_error(&b, "opset 0 of the default domain is not supported (1 to 18)");
  relu_model(&b, &a, 19);
  expect_error(&b, "opset 19");
  arena_free(&a);
}

/* --- the dlc executable: round trips of every sample ----------------------------------------- */

static int run_dlc(const char *dir, const char *args, char **log) {
  char cmd[4096], path[600];
  snprintf(path, sizeof path, "%s/log.txt", dir);
  snprintf(cmd, sizeof cmd, "cd %s && %s %s > %s 2>&1", dir, DLC_EXE, args, path);
  int st = system(cmd);
  *log = tu_read_file(path, NULL);
  cr_assert_not_null(*log);
  cr_assert(WIFEXITED(st), "dlc %s died:\n%s", args, *log);
  return WEXITSTATUS(st);
}

/* The largest error of got against want relative to want's largest magnitude. */
static double max_normerr(const char *got_path, const char *want_path) {
  RtTensor got, want;
  RtError err;
  cr_assert_eq(rt_npy_read(got_path, &got, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_npy_read(want_path, &want, &err), RT_OK, "%s", err.msg);
  int64_t n = rt_tensor_numel(&want);
  cr_assert_eq(rt_tensor_numel(&got), n);
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = tu_normerr(got.data, want.data, n, i);
    worst = e > worst ? e : worst;
  }
  rt_tensor_free(&got), rt_tensor_free(&want);
  return worst;
}

/* An input for sample (its one f32 input, batch 2, values in [-1, 1)) in
 * dir/x.npy; *out gets its first output's name. */
static void sample_input(const char *sample, const char *dir, char *out, size_t outlen) {
  char path[600];
  snprintf(path, sizeof path, "%s/samples/%s.dl", DLC_SOURCE_DIR, sample);
  Model m;
  Diags d;
  diag_init(&d, stderr);
  cr_assert_eq(fe_load_file(&m, path, &d), 0);
  int x = ir_find_input(&m.g, "x");
  cr_assert_geq(x, 0, "%s has an input x", sample);
  RtTensor t;
  RtError err;
  int64_t shape[IR_MAX_RANK];
  for (int k = 0; k < m.g.nodes[x].shape.rank; k++) shape[k] = DIM_IS_SYM(m.g.nodes[x].shape.d[k]) ? 2 : m.g.nodes[x].shape.d[k];
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, m.g.nodes[x].shape.rank, shape, &err), RT_OK);
  float *v = t.data;
  for (int64_t i = 0; i < rt_tensor_numel(&t); i++) v[i] = (float)((i * 7919 % 2000) / 1000.0 - 1.0);
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK);
  rt_tensor_free(&t);
  snprintf(out, outlen, "%s", m.g.outputs[0].name);
  fe_model_free(&m);
}

Test(onnx_import, every_sample_round_trips_through_onnx, .timeout = 300) {
  const char *samples[] = {"mlp", "logreg", "blocks", "finetune", "lenet5", "resnet", "inception", "unet", "transfer_base",
                           "transfer_head"};
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  char *log, args[2048], out[64], a[700], b[700];
  for (size_t s = 0; s < sizeof samples / sizeof *samples; s++) {
    const char *n = samples[s];
    sample_input(n, dir, out, sizeof out);
    snprintf(args, sizeof args, "export %s/samples/%s.dl --seed 3 -o %s.onnx", DLC_SOURCE_DIR, n, n);
    cr_assert_eq(run_dlc(dir, args, &log), 0, "%s", log);
  free(log);
    snprintf(args, sizeof args, "run %s/samples/%s.dl --seed 3 --input x=x.npy --output %s=want.npy", DLC_SOURCE_DIR, n, out);
    cr_assert_eq(run_dlc(dir, args, &log), 0, "%s", log);
  free(log);
    snprintf(args, sizeof args, "run %s.onnx --input x=x.npy --output %s=onnx.npy", n, out);
    cr_assert_eq(run_dlc(dir, args, &log), 0, "%s: %s", n, log);
  free(log);
    snprintf(args, sizeof args, "import %s.onnx -o %s_i.dl", n, n);
    cr_assert_eq(run_dlc(dir, args, &log), 0, "%s: %s", n, log);
  free(log);
    snprintf(args, sizeof args, "run %s_i.dl --params %s_i.safetensors --input x=x.npy --output %s=dl.npy", n, n, out);
    cr_assert_eq(run_dlc(dir, args, &log), 0, "%s: %s", n, log);
  free(log);
    snprintf(a, sizeof a, "%s/want.npy", dir);
    snprintf(b, sizeof b, "%s/onnx.npy", dir);
    cr_expect_leq(max_normerr(b, a), 1e-5, "%s: dlc run of the .onnx", n);
    snprintf(b, sizeof b, "%s/dl.npy", dir);
    cr_expect_leq(max_normerr(b, a), 1e-5, "%s: dlc run of the imported .dl", n);
  }
}

Test(onnx_import, onnx_models_compile_check_and_reexport) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  char *log, args[1024];
  snprintf(args, sizeof args, "export %s/samples/lenet5.dl --seed 1 -o l.onnx", DLC_SOURCE_DIR);
  cr_assert_eq(run_dlc(dir, args, &log), 0, "%s", log);
  free(log);
  cr_assert_eq(run_dlc(dir, "l.onnx -o l.c", &log), 0, "%s", log);
  free(log);
  char path[700];
  snprintf(path, sizeof path, "%s/l.c", dir);
  char *c = tu_read_file(path, NULL);
  cr_assert_not_null(c);
  cr_expect(strstr(c, "c1_weight") != NULL, "the initializers are embedded");
  free(c);
  cr_assert_eq(run_dlc(dir, "check l.onnx", &log), 0, "%s", log);
  cr_expect(strstr(log, "total parameters: 61706") != NULL, "%s", log);
  free(log);
  cr_assert_eq(run_dlc(dir, "l.onnx --emit=obj -o l.o", &log), 0, "%s", log);
  free(log);
  cr_assert_eq(run_dlc(dir, "export l.onnx -o l2.onnx", &log), 0, "%s", log);
  free(log);
  cr_assert_eq(run_dlc(dir, "import l2.onnx -o l2.dl", &log), 0, "%s", log);
  free(log);
  snprintf(path, sizeof path, "%s/l2.safetensors", dir);
  cr_expect_eq(access(path, F_OK), 0, "dlc import writes the weights beside the .dl");
  FILE *f = fopen(strcat(strcpy(path, dir), "/bad.onnx"), "wb");
  cr_assert_not_null(f);
  fputs("\x0a\xff\xff\xff", f);
  fclose(f);
  cr_expect_eq(run_dlc(dir, "bad.onnx", &log), 1);
  cr_expect(strstr(log, "bad.onnx: error: not an ONNX model") != NULL, "%s", log);
  free(log);
  cr_expect_eq(run_dlc(dir, "import bad.onnx", &log), 1);
  free(log);
  cr_expect_eq(run_dlc(dir, "import", &log), 2);
  free(log);
}

/* An ONNX model has no training section: dlc train and dlc eval of one
 * say how to add it, and doing what they say fine-tunes the model from
 * its initializers; dlc repl loads one with its weights. */
Test(onnx_import, train_eval_and_repl_of_an_onnx_model, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  char *log, args[1024], path[700];
  snprintf(args, sizeof args, "export %s/samples/logreg.dl --seed 1 -o lr.onnx", DLC_SOURCE_DIR);
  cr_assert_eq(run_dlc(dir, args, &log), 0, "%s", log);
  free(log);
  cr_expect_eq(run_dlc(dir, "train lr.onnx", &log), 1, "%s", log);
  cr_expect(strstr(log, "lr.onnx: error: an ONNX model has no training section") != NULL &&
                strstr(log, "to fine-tune it: dlc import lr.onnx -o lr.dl, add a train { } section to lr.dl, then dlc train "
                            "lr.dl --init lr.safetensors") != NULL, "%s", log);
  free(log);
  cr_expect_eq(run_dlc(dir, "eval lr.onnx --params w.safetensors", &log), 1, "%s", log);
  cr_expect(strstr(log, "to evaluate it: dlc import lr.onnx -o lr.dl") != NULL, "%s", log);
  free(log);
  /* as the message says: import, a train section over .npy data, --init */
  cr_assert_eq(run_dlc(dir, "import lr.onnx -o lr.dl", &log), 0, "%s", log);
  free(log);
  RtTensor x, y;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, (int64_t[]){16, 784}, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, (int64_t[]){16}, &err), RT_OK);
  for (int64_t i = 0; i < 16 * 784; i++) ((float *)x.data)[i] = (float)(i % 13) / 13;
  for (int64_t i = 0; i < 16; i++) ((int64_t *)y.data)[i] = i % 10;
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK);
  snprintf(path, sizeof path, "%s/y.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK);
  rt_tensor_free(&x), rt_tensor_free(&y);
  Model m;
  Diags d;
  diag_init(&d, stderr);
  snprintf(path, sizeof path, "%s/lr.dl", dir);
  cr_assert_eq(fe_load_file(&m, path, &d), 0);
  const char *out = m.g.outputs[0].name;
  FILE *f = fopen(path, "a");
  cr_assert_not_null(f);
  fprintf(f, "train {\n  label y: i64[N]\n  loss = cross_entropy(%s, y)\n  optimizer = sgd(lr=0.1)\n  batch = 8\n"
             "  epochs = 1\n  data = npy(\"x=x.npy,y=y.npy\")\n}\n", out);
  fclose(f);
  fe_model_free(&m);
  cr_expect_eq(run_dlc(dir, "train lr.dl --init lr.safetensors --steps 2 --backend=interp", &log), 0, "%s", log);
  cr_expect(strstr(log, "lr.safetensors: 2 parameters loaded, 0 initialised from the seed") != NULL, "%s", log);
  free(log);
  snprintf(path, sizeof path, "%s/session.txt", dir);
  f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs("load lr.onnx\ntrain 1\n", f);
  fclose(f);
  cr_expect_eq(run_dlc(dir, "repl < session.txt", &log), 1, "%s", log);
  cr_expect(strstr(log, "lr.onnx: model 'lr', 7850 parameters with the ONNX model's weights (no training section)") != NULL,
            "%s", log);
  cr_expect(strstr(log, "the model has no training section with a loss") != NULL, "%s", log);
  free(log);
}

/* --- PyTorch-exported models (tests/fixtures/gen_onnx_torch_fixtures.py) ----------------------- */

static void torch_fixture(const char *name, int nouts) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  const char *backends[] = {"interp", "c", "jit"};
  char *log, args[2048], got[700], want[700];
  for (int b = 0; b < 3; b++) {
    snprintf(args, sizeof args,
             "run " DLC_SOURCE_DIR "/tests/fixtures/onnx/torch_%s.onnx --backend=%s --input x=" DLC_SOURCE_DIR
             "/tests/fixtures/onnx/torch_%s.x.npy"
             " --output logits=logits.npy%s",
             name, backends[b], name, nouts > 1 ? " --output probs=probs.npy" : "");
    cr_assert_eq(run_dlc(dir, args, &log), 0, "%s on %s: %s", name, backends[b], log);
    free(log);
    const char *outs[2] = {"logits", "probs"};
    for (int o = 0; o < nouts; o++) {
      snprintf(got, sizeof got, "%s/%s.npy", dir, outs[o]);
      snprintf(want, sizeof want, DLC_SOURCE_DIR "/tests/fixtures/onnx/torch_%s.%s.npy", name, outs[o]);
      double e = max_normerr(got, want);
      cr_expect_leq(e, 1e-5, "%s %s on %s: error %g against PyTorch", name, outs[o], backends[b], e);
    }
  }
}

Test(onnx_import, pytorch_mlp_agrees_on_every_backend, .timeout = 120) { torch_fixture("mlp", 2); }
Test(onnx_import, pytorch_lenet5_agrees_on_every_backend, .timeout = 120) { torch_fixture("lenet5", 2); }
Test(onnx_import, pytorch_resnet_agrees_on_every_backend, .timeout = 120) { torch_fixture("resnet", 1); }
Test(onnx_import, pytorch_char_lstm_agrees_on_every_backend, .timeout = 120) { torch_fixture("char_lstm", 1); }

/* The ops dlc composes or maps anew, as .dl text: comparisons and Where
 * on 0/1 floats (a BOOL input is f32), Clip with run-time bounds, the
 * variadic Mean, Gather of a tensor, a reduction, LayerNormalization with
 * its Mean output, and Flatten's negative axis counted from the end
 * (numbers: the onnx_node suite). */
Test(onnx_import, new_mappings_as_dl_text) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 13);
  ob_input(&b, "x", "2,3");
  ob_input(&b, "lo", "2,3");
  b.ins[b.g.n_input++] = ob_value(&b, "c", ONNX__TENSOR_PROTO__DATA_TYPE__BOOL, "2,3");
  b.ins[b.g.n_input++] = ob_value(&b, "i", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, "4");
  ob_node(&b, "Less", "x,lo", "lt");
  ob_node(&b, "Where", "c,x,lt", "w");
  ob_node(&b, "Clip", "w,lo", "cl");
  ob_node(&b, "Mean", "cl,x,lo", "m");
  ob_node(&b, "Gather", "m,i", "g");
  ob_attr_i(&b, b.nodes[b.g.n_node - 1], "axis", 1);
  ob_node(&b, "ReduceL2", "g", "r");
  ob_node(&b, "LayerNormalization", "x,lo", "ln,mean");
  int64_t three = 3;
  float gamma[3] = {1, 2, 3};
  ob_init_f32(&b, "gamma", 1, &three, gamma);
  ob_node(&b, "LayerNormalization", "x,gamma", "ln2"); /* Scale of the normalised shape, no Mean: dlc's op */
  ob_output(&b, "ln2");
  ob_input(&b, "x3", "2,3,4");
  ob_attr_i(&b, ob_node(&b, "Flatten", "x3", "f"), "axis", -1);
  ob_output(&b, "r"), ob_output(&b, "ln"), ob_output(&b, "mean"), ob_output(&b, "f");
  expect_text(&b, "input c: f32[2, 3]\nlt = lt(x, lo)\nw = where(c, x, lt)\ncl = maximum(w, lo)\n"
                  "m = div(m_add_2, 3)\ng = index_select(m, i, axis=1)\nr = sqrt(r_sum)\n"
                  "mean = mean(x, axes=[1], keepdim=1)\nln2 = layer_norm(x, gamma)\nf = reshape(x3, shape=[6, 4])");
  arena_free(&a);
}

/* --- ONNX's backend node tests (libonnx-testdata; onnx/nodetest.c) ---------------------------- */

#define NODE_DATA "/usr/share/libonnx-testdata/data/node"

/* Each named node test passes on the interpreter, the C backend and the JIT. */
static void node_tests_pass(const char *const *names) {
  if (access(NODE_DATA, R_OK) != 0) cr_skip_test("libonnx-testdata is not installed (scripts/setup.sh installs it)");
  for (const char *const *t = names; *t; t++)
    for (int b = 0; b < NT_NBACKENDS; b++) {
      char dir[512], why[400];
      snprintf(dir, sizeof dir, NODE_DATA "/%s", *t);
      NodeTestStatus st = nodetest_run(dir, (NodeTestBackend)b, why, sizeof why);
      cr_expect_eq(st, NT_PASS, "%s on %s: %s: %s", *t, nodetest_backend_name((NodeTestBackend)b),
                   st == NT_UNSUP ? "unsupported" : "FAIL", why);
    }
}

Test(onnx_node, comparisons_give_0_1_where_onnx_gives_bools, .timeout = 300) {
  static const char *const t[] = {"test_less", "test_less_equal_bcast", "test_greater", "test_greater_equal",
                                  "test_greater_bcast", "test_not_2d", "test_and2d", "test_or2d", "test_xor2d", NULL};
  node_tests_pass(t);
}

Test(onnx_node, where_and_gather_index_with_tensors, .timeout = 300) {
  static const char *const t[] = {"test_where_example", "test_gather_0", "test_gather_2d_indices",
                                  "test_gather_elements_1", "test_gather_negative_indices",
                                  "test_gather_elements_negative_indices", NULL};
  node_tests_pass(t);
}

Test(onnx_node, clip_bounds_computed_at_run_time_and_variadic_mean, .timeout = 300) {
  static const char *const t[] = {"test_clip_example", "test_clip_default_min", "test_mean_example", "test_max_example",
                                  "test_sum_example", NULL};
  node_tests_pass(t);
}

Test(onnx_node, activations_composed_of_dlc_ops, .timeout = 300) {
  static const char *const t[] = {"test_selu_example", "test_hardsigmoid", "test_thresholdedrelu", "test_celu",
                                  "test_shrink_soft", "test_prelu_broadcast", "test_softsign", "test_sign",
                                  "test_reciprocal", "test_elu", "test_softplus", NULL};
  node_tests_pass(t);
}

Test(onnx_node, reductions_composed_of_dlc_ops, .timeout = 300) {
  static const char *const t[] = {"test_reduce_min_keepdims_random", "test_reduce_l1_do_not_keepdims_random",
                                  "test_reduce_l2_negative_axes_keep_dims_random", "test_reduce_log_sum_asc_axes",
                                  "test_reduce_log_sum_desc_axes",
                                  "test_reduce_sum_square_keepdims_random", "test_globalmaxpool", NULL};
  node_tests_pass(t);
}

Test(onnx_node, normalisations_composed_of_dlc_ops, .timeout = 300) {
  static const char *const t[] = {"test_layer_normalization_3d_axis1_epsilon", "test_layer_normalization_4d_axis_negative_1",
                                  "test_layer_normalization_default_axis_expanded", "test_instancenorm_example", NULL};
  node_tests_pass(t);
}

Test(onnx_node, shapes_split_flatten_depth_to_space, .timeout = 300) {
  static const char *const t[] = {"test_flatten_negative_axis1", "test_split_equal_parts_2d", "test_split_equal_parts_1d",
                                  "test_depthtospace_crd_mode_example", "test_depthtospace_example",
                                  "test_spacetodepth_example", NULL};
  node_tests_pass(t);
}

Test(onnx_node, ops_dlc_already_had_pass, .timeout = 300) {
  static const char *const t[] = {"test_conv_with_strides_padding", "test_gemm_default_single_elem_vector_bias",
                                  "test_softmax_axis_1", "test_maxpool_2d_strides", "test_averagepool_2d_strides", "test_batchnorm_example", NULL};
  node_tests_pass(t);
}

Test(onnx_node, hyperbolic_functions_lrn_and_batchnorm_training, .timeout = 300) {
  static const char *const t[] = {"test_sinh", "test_cosh", "test_asinh", "test_acosh", "test_atanh", "test_lrn",
                                  "test_batchnorm_epsilon_training_mode", NULL};
  node_tests_pass(t);
}

Test(onnx_node, trigonometric_and_rounding_functions, .timeout = 300) {
  static const char *const t[] = {"test_sin", "test_cos", "test_tan", "test_asin", "test_acos", "test_atan",
                                  "test_floor", "test_ceil", "test_round", NULL};
  node_tests_pass(t);
}

Test(onnx_node, product_hardmax_and_mvn_composed_of_dlc_ops, .timeout = 300) {
  static const char *const t[] = {"test_reduce_prod_do_not_keepdims_random", "test_reduce_prod_default_axes_keepdims_example",
                                  "test_hardmax_one_hot", "test_hardmax_axis_0", "test_hardmax_negative_axis", "test_mvn",
                                  NULL};
  node_tests_pass(t);
}

Test(onnx_node, pooling_over_1_and_3_axes_and_pads_over_half_the_kernel, .timeout = 300) {
  static const char *const t[] = {"test_maxpool_1d_default", "test_averagepool_3d_default", "test_maxpool_2d_pads",
                                  "test_averagepool_2d_pads", "test_averagepool_2d_pads_count_include_pad", NULL};
  node_tests_pass(t);
}

Test(onnx_node, conv_transpose_rnn_and_grid_sample_composed_of_dlc_ops, .timeout = 300) {
  static const char *const t[] = {"test_convtranspose_1d", "test_convtranspose_output_shape", "test_convtranspose_autopad_same",
                                  "test_simple_rnn_batchwise", "test_gru_seq_length", "test_lstm_with_initial_bias",
                                  "test_gridsample_bicubic", "test_gridsample_reflection_padding", "test_gridsample_nearest",
                                  NULL};
  node_tests_pass(t);
}

Test(onnx_node, auto_pad_same_as_explicit_pads, .timeout = 300) {
  static const char *const t[] = {"test_maxpool_2d_same_lower", "test_averagepool_2d_same_upper",
                                  "test_conv_with_autopad_same", NULL};
  node_tests_pass(t);
}

/* An op dlc lacks is UNSUP with the importer's message, never a pass;
 * an output that differs from the reference is a FAIL naming the element. */
Test(onnx_node, unsupported_is_reported_and_a_wrong_answer_fails) {
  if (access(NODE_DATA, R_OK) != 0) cr_skip_test("libonnx-testdata is not installed (scripts/setup.sh installs it)");
  char why[400];
  cr_expect_eq(nodetest_run(NODE_DATA "/test_det_2d", NT_INTERP, why, sizeof why), NT_UNSUP);
  cr_expect(strstr(why, "op 'Det' is not supported by dlc's ONNX import") != NULL, "%s", why);
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  char cmd[4096];
  /* relu's model and input, with the input as the expected output: relu(x) != x where x < 0 */
  snprintf(cmd, sizeof cmd, "mkdir -p %s/relu/test_data_set_0 && cp " NODE_DATA "/test_relu/model.onnx %s/relu/ && cp " NODE_DATA
           "/test_relu/test_data_set_0/input_0.pb %s/relu/test_data_set_0/ && cp " NODE_DATA
           "/test_relu/test_data_set_0/input_0.pb %s/relu/test_data_set_0/output_0.pb", dir, dir, dir, dir);
  cr_assert_eq(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "%s/relu", dir);
  for (int b = 0; b < NT_NBACKENDS; b++) {
    cr_expect_eq(nodetest_run(cmd, (NodeTestBackend)b, why, sizeof why), NT_FAIL, "%s", nodetest_backend_name(b));
    cr_expect(strstr(why, "output 'y' element") != NULL && strstr(why, "the reference") != NULL, "%s", why);
  }
}

/* Expand of a constant folds at import (numpy broadcasting, the value used
 * as a tensor like any other constant); Trilu's lower triangle is dlc's
 * tril; the forms dlc has no exact answer for are refused by name. */
Test(onnx_import, expand_of_a_constant_folds_and_trilu_lower_is_tril) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  ob_init(&b, &a, 14);
  ob_input(&b, "x", "2,3");
  int64_t one = 1, shape[2] = {2, 3};
  float v[1] = {0.5f};
  ob_init_f32(&b, "v", 1, &one, v);
  ob_init_i64(&b, "s", 2, shape);
  ob_node(&b, "Expand", "v,s", "e");
  ob_node(&b, "Add", "x,e", "y");
  int64_t k1[1] = {-1};
  ob_init_i64(&b, "k", 1, k1);
  ob_attr_i(&b, ob_node(&b, "Trilu", "x,k", "t"), "upper", 0);
  ob_output(&b, "y"), ob_output(&b, "t");
  expect_text(&b, "param e: f32[2, 3]\ny = add(x, e)\ntril(x, diagonal=-1)");
  ob_init(&b, &a, 14);
  ob_input(&b, "x", "2,3");
  ob_init_f32(&b, "v", 1, &one, v);
  int64_t bad[2] = {2, 4}, three = 3;
  float v3[3] = {1, 2, 3};
  ob_init_i64(&b, "s", 2, bad);
  ob_init_f32(&b, "v3", 1, &three, v3);
  ob_node(&b, "Expand", "v3,s", "e");
  ob_node(&b, "Add", "x,e", "y");
  ob_output(&b, "y");
  expect_error(&b, "node 0 'Expand_0' (Expand): shape entry 1 (4) does not broadcast with the input's 3");
  ob_init(&b, &a, 14);
  ob_input(&b, "x", "2,3");
  ob_init_i64(&b, "s", 2, shape);
  ob_node(&b, "Expand", "x,s", "y");
  ob_output(&b, "y");
  expect_error(&b, "input 0 (input) 'x' is computed at run time");
  ob_init(&b, &a, 14);
  ob_input(&b, "x", "2,3");
  ob_node(&b, "Trilu", "x", "y");
  ob_output(&b, "y");
  expect_error(&b, "attribute 'upper' = 1: only the lower triangle (upper = 0) is supported");
  arena_free(&a);
}
