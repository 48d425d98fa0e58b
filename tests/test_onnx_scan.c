/*
 * test_onnx_scan.c — scans through ONNX: export as Scan, import back.
 *
 * tests/fixtures/onnx/scan_small.dl holds a user block scanned forward
 * and backward (two states, two per-step outputs) and an LSTM.  It is
 * exported by the real executable, run from the .onnx file, imported to
 * .dl and run on the interpreter, the emitted C and the JIT: every output
 * equals the original model's (interpreter) within 1e-5 norm-wise.  The
 * imported text keeps each scan a scan over a block (the body is not
 * unrolled).  Scan forms dlc's scan cannot express, and hostile bodies,
 * are refused with an error naming the node and the attribute.
 */
#include <criterion/criterion.h>
#include <sys/wait.h>
#include <unistd.h>

#include "onnx/onnx.h"
#include "tests/onnx_build.h"
#include "tests/testutil.h"

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

static void dlc_ok(const char *dir, const char *args) {
  char *log;
  int rc = run_dlc(dir, args, &log);
  cr_assert_eq(rc, 0, "dlc %s:\n%s", args, log);
  free(log);
}

/* The largest error of dir/got against dir/want, norm-wise. */
static double max_normerr(const char *dir, const char *got, const char *want) {
  char a[700], b[700];
  snprintf(a, sizeof a, "%s/%s", dir, got);
  snprintf(b, sizeof b, "%s/%s", dir, want);
  RtTensor g, w;
  RtError err;
  cr_assert_eq(rt_npy_read(a, &g, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_npy_read(b, &w, &err), RT_OK, "%s", err.msg);
  int64_t n = rt_tensor_numel(&w);
  cr_assert_eq(g.rank, w.rank, "%s", got);
  for (int k = 0; k < w.rank; k++) cr_assert_eq(g.shape[k], w.shape[k], "%s", got);
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = tu_normerr(g.data, w.data, n, i);
    worst = e > worst ? e : worst;
  }
  rt_tensor_free(&g), rt_tensor_free(&w);
  return worst;
}

static void write_input(const char *dir, const char *name, int rank, const int64_t *shape, int salt) {
  RtTensor t;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, rank, shape, &err), RT_OK);
  float *v = t.data;
  for (int64_t i = 0; i < rt_tensor_numel(&t); i++) v[i] = (float)(((i * 7919 + salt * 104729) % 2000) / 1000.0 - 1.0);
  char path[700];
  snprintf(path, sizeof path, "%s/%s.npy", dir, name);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK);
  rt_tensor_free(&t);
}

static const char *const outputs[] = {"ys", "qs", "g_T", "d_T", "hs", "c_n"};
#define NOUT (sizeof outputs / sizeof *outputs)

/* " --output ys=PREFIX.ys.npy ..." */
static void output_flags(char *buf, size_t len, const char *prefix) {
  size_t n = 0;
  for (size_t k = 0; k < NOUT; k++) n += (size_t)snprintf(buf + n, len - n, " --output %s=%s.%s.npy", outputs[k], prefix, outputs[k]);
}

static int count(const char *text, const char *s) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, s)); p++) n++;
  return n;
}

Test(onnx_scan, scans_round_trip_through_onnx_on_every_backend, .timeout = 300) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  int64_t xs[3] = {2, 5, 3}, hs[2] = {2, 4};
  write_input(dir, "x", 3, xs, 1);
  write_input(dir, "h0", 2, hs, 2);
  char args[4096], outs[1024];
  const char *ins = "--input x=x.npy --input h0=h0.npy";
  output_flags(outs, sizeof outs, "want");
  snprintf(args, sizeof args, "run %s/tests/fixtures/onnx/scan_small.dl --seed 5 %s%s", DLC_SOURCE_DIR, ins, outs);
  dlc_ok(dir, args);
  snprintf(args, sizeof args, "export %s/tests/fixtures/onnx/scan_small.dl --seed 5 -o s.onnx", DLC_SOURCE_DIR);
  dlc_ok(dir, args);
  output_flags(outs, sizeof outs, "onnx");
  snprintf(args, sizeof args, "run s.onnx %s%s", ins, outs);
  dlc_ok(dir, args);
  dlc_ok(dir, "import s.onnx -o s_i.dl");
  char path[700];
  snprintf(path, sizeof path, "%s/s_i.dl", dir);
  char *text = tu_read_file(path, NULL);
  cr_assert_not_null(text);
  cr_expect_eq(count(text, " = scan("), 3, "three scans:\n%s", text);
  cr_expect_eq(count(text, "\nblock "), 3, "three blocks:\n%s", text);
  cr_expect_eq(count(text, "reverse=true"), 1, "one backward scan:\n%s", text);
  free(text);
  const char *backends[] = {"interp", "c", "jit"};
  for (size_t be = 0; be < 3; be++) {
    output_flags(outs, sizeof outs, backends[be]);
    snprintf(args, sizeof args, "run s_i.dl --params s_i.safetensors --backend=%s %s%s", backends[be], ins, outs);
    dlc_ok(dir, args);
  }
  for (size_t k = 0; k < NOUT; k++) {
    char want[128], got[128];
    snprintf(want, sizeof want, "want.%s.npy", outputs[k]);
    snprintf(got, sizeof got, "onnx.%s.npy", outputs[k]);
    cr_expect_leq(max_normerr(dir, got, want), 1e-5, "%s from the .onnx", outputs[k]);
    for (size_t be = 0; be < 3; be++) {
      snprintf(got, sizeof got, "%s.%s.npy", backends[be], outputs[k]);
      cr_expect_leq(max_normerr(dir, got, want), 1e-5, "%s of the imported .dl on %s", outputs[k], backends[be]);
    }
  }
}

/* --- Scan forms dlc does not import ------------------------------------------------------- */

typedef struct Imported {
  int rc;
  char *log;
} Imported;

static Imported import_bytes(OnnxBuild *b) {
  size_t len;
  uint8_t *bytes = ob_pack(b, &len);
  char *buf = NULL;
  size_t blen = 0;
  FILE *f = open_memstream(&buf, &blen);
  Diags d;
  diag_init(&d, f);
  OnnxImport im;
  int rc = onnx_import(bytes, len, "m.onnx", &im, &d);
  fclose(f);
  if (!rc) onnx_import_free(&im);
  else cr_expect_gt(d.nerrors, 0, "a refusal says why");
  return (Imported){rc, buf};
}

static void expect_error(OnnxBuild *b, const char *want) {
  Imported r = import_bytes(b);
  cr_expect_eq(r.rc, -1, "imported; wanted '%s'", want);
  cr_expect(r.log && strstr(r.log, want), "wanted '%s' in:\n%s", want, r.log ? r.log : "");
  free(r.log);
}

/* The body of a running sum: state s f32[N, 4], step x_t f32[N, 4];
 * s_new = s + x_t * w (w outside the body, name w), output y = s_new. */
static Onnx__GraphProto *sum_body(OnnxBuild *b, const char *w) {
  OnnxBuild body;
  ob_init(&body, b->a, 17);
  ob_input(&body, "s", "N,4");
  ob_input(&body, "x_t", "N,4");
  ob_node(&body, "Mul", arena_printf(b->a, "x_t,%s", w), "xw");
  ob_node(&body, "Add", "s,xw", "s_new");
  ob_node(&body, "Identity", "s_new", "y");
  ob_output(&body, "s_new");
  ob_output(&body, "y");
  Onnx__GraphProto *g = arena_alloc(b->a, sizeof *g);
  *g = body.g;
  g->node = arena_alloc(b->a, OB_MAX * sizeof *g->node);
  g->input = arena_alloc(b->a, OB_MAX * sizeof *g->input);
  g->output = arena_alloc(b->a, OB_MAX * sizeof *g->output);
  memcpy(g->node, body.nodes, sizeof body.nodes);
  memcpy(g->input, body.ins, sizeof body.ins);
  memcpy(g->output, body.outs, sizeof body.outs);
  return g;
}

/* x f32[N, 6, 4], s0 f32[N, 4] -> Scan over axis 1 -> s_T, ys; the node
 * is returned for its attributes to be changed. */
static Onnx__NodeProto *sum_model(OnnxBuild *b, Arena *a, const char *w) {
  ob_init(b, a, 17);
  ob_input(b, "x", "N,6,4");
  ob_input(b, "s0", "N,4");
  int64_t d = 4;
  float v[4] = {1, 2, 3, 4};
  ob_init_f32(b, "w", 1, &d, v);
  Onnx__NodeProto *n = ob_node(b, "Scan", "s0,x", "s_T,ys");
  Onnx__AttributeProto *at = ob_attr(b, n, "body", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
  at->g = sum_body(b, w);
  ob_attr_i(b, n, "num_scan_inputs", 1);
  ob_output(b, "s_T");
  ob_output(b, "ys");
  return n;
}

static void set_axes(OnnxBuild *b, Onnx__NodeProto *n, int64_t in, int64_t out) {
  ob_attr_ints(b, n, "scan_input_axes", 1, &in);
  ob_attr_ints(b, n, "scan_output_axes", 1, &out);
}

Test(onnx_scan, a_scan_imports_as_a_block_and_a_scan) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  Onnx__NodeProto *n = sum_model(&b, &a, "w");
  set_axes(&b, n, 1, -2);
  int64_t one = 1;
  ob_attr_ints(&b, n, "scan_input_directions", 1, &one);
  ob_attr_ints(&b, n, "scan_output_directions", 1, &one);
  size_t len;
  uint8_t *bytes = ob_pack(&b, &len);
  Diags d;
  diag_init(&d, stderr);
  OnnxImport im;
  cr_assert_eq(onnx_import(bytes, len, "m.onnx", &im, &d), 0);
  cr_expect(strstr(im.text, "block Scan_0_step(x_t, s) {"), "%s", im.text);
  cr_expect(strstr(im.text, "  param w: f32[4]"), "%s", im.text);
  cr_expect(strstr(im.text, "ys, s_T = scan(Scan_0_step, x, s0, axis=1, reverse=true) as Scan_0"), "%s", im.text);
  cr_expect_not_null(rt_set_find(&im.weights, "Scan_0.w"), "the body's weight is named as the block's param");
  onnx_import_free(&im);
  arena_free(&a);
}

Test(onnx_scan, unsupported_scan_forms_name_the_node_and_attribute) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  Onnx__NodeProto *n = sum_model(&b, &a, "w");
  set_axes(&b, n, 1, 0);
  expect_error(&b, "node 0 'Scan_0' (Scan): attribute 'scan_output_axes' stacks output 0 along axis 0, not the scan axis 1");
  n = sum_model(&b, &a, "w");
  set_axes(&b, n, 1, 1);
  int64_t one = 1;
  ob_attr_ints(&b, n, "scan_input_directions", 1, &one);
  expect_error(&b, "node 0 'Scan_0' (Scan): attribute 'scan_output_directions' differs from 'scan_input_directions'");
  n = sum_model(&b, &a, "w");
  n->attribute[1]->i = 3;
  expect_error(&b, "attribute 'num_scan_inputs' is 3; the node has 2 inputs");
  n = sum_model(&b, &a, "w");
  n->input[0] = "x";
  n->attribute[1]->i = 2;
  expect_error(&b, "attribute 'num_scan_inputs' is 2: dlc's scan runs over one sequence");
  n = sum_model(&b, &a, "w");
  n->attribute[0]->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
  expect_error(&b, "attribute 'body' must be a graph");
  n = sum_model(&b, &a, "w");
  n->attribute[0]->g->n_input = 1;
  expect_error(&b, "the body has 1 inputs; a Scan with 1 states and one scan input needs 2");
  n = sum_model(&b, &a, "w");
  n->attribute[0]->g->n_output = 1;
  expect_error(&b, "the body has 1 outputs; the node has 2");
  n = sum_model(&b, &a, "w");
  ob_attr_i(&b, n, "extra", 1);
  expect_error(&b, "attribute 'extra' is not supported");
  n = sum_model(&b, &a, "w");
  b.opset.version = 8;
  expect_error(&b, "Scan of opset 8 (with sequence_lens) is not supported");
  arena_free(&a);
}

Test(onnx_scan, hostile_bodies_are_refused) {
  Arena a;
  arena_init(&a);
  OnnxBuild b;
  /* the body reads a value the outer graph computes at run time */
  Onnx__NodeProto *n = sum_model(&b, &a, "s0");
  set_axes(&b, n, 1, 1);
  expect_error(&b, "input 's0' is a value of the enclosing graph computed at run time");
  /* a name defined nowhere */
  n = sum_model(&b, &a, "nowhere");
  set_axes(&b, n, 1, 1);
  expect_error(&b, "input 'nowhere' is not defined by any node, input or initializer");
  /* a body output the body does not define */
  n = sum_model(&b, &a, "w");
  set_axes(&b, n, 1, 1);
  n->attribute[0]->g->output[1]->name = "missing";
  expect_error(&b, "body output 'missing' is not defined in the body");
  /* a new state of another shape than the state */
  n = sum_model(&b, &a, "w");
  set_axes(&b, n, 1, 1);
  n->attribute[0]->g->node[1]->op_type = "ReduceSum";
  n->attribute[0]->g->node[1]->n_input = 1;
  expect_error(&b, "a state keeps its shape from step to step");
  /* a cycle in the body */
  n = sum_model(&b, &a, "w");
  set_axes(&b, n, 1, 1);
  n->attribute[0]->g->node[0]->input[0] = "s_new";
  expect_error(&b, "the graph has a cycle");
  /* a Scan in the body */
  n = sum_model(&b, &a, "w");
  set_axes(&b, n, 1, 1);
  Onnx__GraphProto *body = n->attribute[0]->g;
  body->node[1]->op_type = "Scan";
  body->node[1]->attribute = arena_alloc(&a, 2 * sizeof *body->node[1]->attribute);
  Onnx__AttributeProto *inner = arena_alloc(&a, sizeof *inner);
  *inner = *n->attribute[0];
  inner->g = sum_body(&b, "w");
  body->node[1]->attribute[0] = inner;
  body->node[1]->n_attribute = 1;
  expect_error(&b, "a Scan inside a Scan body is not supported");
  /* the scan input axis out of range, a state that is not float */
  n = sum_model(&b, &a, "w");
  set_axes(&b, n, 3, 3);
  expect_error(&b, "attribute 'scan_input_axes' is out of range for a sequence of rank 3");
  n = sum_model(&b, &a, "w");
  set_axes(&b, n, 1, 1);
  b.ins[1] = ob_value(&b, "s0", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, "N,4");
  expect_error(&b, "state 's0' is not float");
  arena_free(&a);
}
