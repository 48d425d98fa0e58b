/*
 * test_interp_ops.c — the reference interpreter against PyTorch.
 *
 * Every case of op_cases.h is built into a one-op graph, verified, bound
 * and interpreted, and its output compared with the fixture PyTorch wrote
 * (gen_op_fixtures.py): shapes exactly, values to a relative error of 1e-5
 * with an absolute floor of 1e-6.  The other tests check the errors a
 * caller can provoke: inputs of the wrong type or shape, symbols that
 * disagree or exceed their maximum, and class labels out of range.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <math.h>

#include "ir/ir.h"
#include "tests/op_cases.h"
#include "tests/testutil.h"

/* One case's graph and tensors. */
typedef struct Run {
  Diags diags;
  Graph g;
  int out;
  RtTensor *vals;
  int64_t symvals[IR_MAX_SYMS];
} Run;

static void read_fixture(const char *name, const char *part, RtTensor *t) {
  char path[512];
  RtError err;
  snprintf(path, sizeof path, "%s/%s.%s.npy", FIXTURE("ops"), name, part);
  cr_assert_eq(rt_npy_read(path, t, &err), RT_OK, "%s", err.msg);
}

/* Reads c's inputs, builds and verifies its graph, and moves the inputs
 * into r->vals. */
static void run_build(Run *r, const OpCase *c) {
  RtTensor ins[OPCASE_MAX_IN];
  for (int i = 0; i < c->nin; i++) {
    char part[16];
    snprintf(part, sizeof part, "in%d", i);
    read_fixture(c->name, part, &ins[i]);
  }
  diag_init(&r->diags, stderr);
  ir_graph_init(&r->g, c->name, &r->diags);
  r->out = opcase_build(c, &r->g, ins);
  cr_assert_geq(r->out, 0, "%s: the case does not build", c->name);
  cr_assert_eq(ir_verify(&r->g, &r->diags), 0, "%s: ir_verify fails", c->name);
  r->vals = calloc((size_t)r->g.nnodes, sizeof *r->vals);
  for (int i = 0; i < c->nin; i++) r->vals[opcase_input_id(&r->g, i)] = ins[i];
}

static RtStatus run_interp(Run *r, RtError *err) {
  RtStatus st = ir_bind_symbols(&r->g, r->vals, r->symvals, err);
  if (st) return st;
  InterpOpts o = {0, 1};
  return ir_interp(&r->g, r->vals, r->symvals, &o, err);
}

static void run_free(Run *r) {
  for (int i = 0; i < r->g.nnodes; i++) rt_tensor_free(&r->vals[i]);
  free(r->vals);
  ir_graph_free(&r->g);
}

/* "[1, 2, 0]": the coordinates of flat index i in t. */
static const char *coords(const RtTensor *t, int64_t i, char *buf, size_t len) {
  int64_t c[RT_MAX_RANK];
  for (int k = t->rank - 1; k >= 0; k--) c[k] = i % t->shape[k], i /= t->shape[k];
  size_t n = (size_t)snprintf(buf, len, "[");
  for (int k = 0; k < t->rank && n < len; k++)
    n += (size_t)snprintf(buf + n, len - n, "%s%lld", k ? ", " : "", (long long)c[k]);
  if (n < len) snprintf(buf + n, len - n, "]");
  return buf;
}

/* got against want: same type and shape, every element within tolerance;
 * a failure names the worst element. */
static void expect_close(const char *name, const RtTensor *got, const RtTensor *want) {
  char b1[128], b2[128];
  rt_shape_str(b1, sizeof b1, got->dtype, got->rank, got->shape);
  rt_shape_str(b2, sizeof b2, want->dtype, want->rank, want->shape);
  cr_assert_str_eq(b1, b2, "%s: result is %s, PyTorch gives %s", name, b1, b2);
  const float *g = got->data, *w = want->data;
  int64_t n = rt_tensor_numel(want), worst = -1;
  double worst_err = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = tu_relerr(g[i], w[i], 1e-6);
    if (isnan(e) || e > worst_err) worst_err = isnan(e) ? INFINITY : e, worst = i;
  }
  cr_assert(worst_err <= 1e-5, "%s: element %s is %.9g, PyTorch gives %.9g (relative error %.3g)", name,
            coords(want, worst, b1, sizeof b1), g[worst], w[worst], worst_err);
}

/* Parameters are case indices: Criterion copies them into each test's
 * process, where pointers into the table might not survive. */
ParameterizedTestParameters(interp_ops, matches_pytorch) {
  static int idx[OPCASE_COUNT];
  for (int i = 0; i < OPCASE_COUNT; i++) idx[i] = i;
  return cr_make_param_array(int, idx, OPCASE_COUNT);
}

ParameterizedTest(int *ci, interp_ops, matches_pytorch) {
  const OpCase *c = &op_cases[*ci];
  Run r;
  RtError err;
  RtTensor want;
  run_build(&r, c);
  RtStatus st = run_interp(&r, &err);
  cr_assert_eq(st, RT_OK, "%s: %s", c->name, err.msg);
  read_fixture(c->name, "out", &want);
  expect_close(c->name, &r.vals[r.out], &want);
  rt_tensor_free(&want);
  run_free(&r);
}

/* With the batch symbol bound to 0 every case still runs: empty loops,
 * no reads out of bounds (run this file under the sanitizers). */
ParameterizedTestParameters(interp_ops, empty_batch) {
  static int idx[OPCASE_COUNT];
  int n = 0;
  for (int i = 0; i < OPCASE_COUNT; i++)
    if (op_cases[i].batch) idx[n++] = i;
  return cr_make_param_array(int, idx, (size_t)n);
}

ParameterizedTest(int *ci, interp_ops, empty_batch) {
  const OpCase *c = &op_cases[*ci];
  Run r;
  RtError err;
  run_build(&r, c);
  for (int i = 0; i < c->nin; i++) {
    if (!(c->batch >> i & 1)) continue;
    RtTensor *t = &r.vals[opcase_input_id(&r.g, i)];
    int64_t shape[RT_MAX_RANK];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = 0;
    DType dt = t->dtype;
    rt_tensor_free(t);
    cr_assert_eq(rt_tensor_alloc(t, dt, r.g.nodes[opcase_input_id(&r.g, i)].shape.rank, shape, &err), RT_OK);
  }
  cr_assert_eq(run_interp(&r, &err), RT_OK, "%s: %s", c->name, err.msg);
  cr_assert_eq(r.symvals[0], 0);
  run_free(&r);
}

/* --- the table itself ----------------------------------------------------- */

/* Every op a model can be written with; the ops passes make (gradients,
 * optimizer steps, state) are checked by finite differences and by the
 * PyTorch training fixtures instead (test_autodiff.c, test_train.c), and
 * the random ops, which no fixture can hold, by their distributions and
 * across backends (test_random.c). */
Test(interp_ops, every_op_has_a_case) {
  int seen[OP_COUNT] = {0};
  for (int i = 0; i < OPCASE_COUNT; i++) {
    seen[op_cases[i].op] = 1;
    if (op_cases[i].cpos) seen[OP_CONST] = 1;
  }
  for (int op = 0; op < OP_COUNT; op++)
    if (op != OP_INPUT && op != OP_PARAM && !(ir_ops[op].flags & (OPF_INTERNAL | OPF_RANDOM))) cr_expect(seen[op], "op %s has no case in op_cases.h", ir_ops[op].name);
}

static int case_index(const char *name) {
  for (int i = 0; i < OPCASE_COUNT; i++)
    if (strcmp(op_cases[i].name, name) == 0) return i;
  return -1;
}

Test(interp_ops, table_matches_fixtures) {
  DIR *dir = opendir(FIXTURE("ops"));
  cr_assert_not_null(dir, "cannot list %s", FIXTURE("ops"));
  int nfiles = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    size_t len = strlen(e->d_name);
    if (len < 8 || strcmp(e->d_name + len - 8, ".out.npy") != 0) continue;
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(len - 8), e->d_name);
    cr_expect_geq(case_index(name), 0, "fixture %s has no entry in op_cases.h", e->d_name);
    nfiles++;
  }
  closedir(dir);
  cr_expect_eq(nfiles, OPCASE_COUNT, "%d fixtures for %d cases", nfiles, OPCASE_COUNT);
  cr_expect_geq(OPCASE_COUNT, 45);
}

/* --- binding errors ---------------------------------------------------------- */

/* x: f32[N, 3] and y: f32[N, 2] into concat (N at most 8). */
static void build_pair(Run *r) {
  diag_init(&r->diags, stderr);
  ir_graph_init(&r->g, "pair", &r->diags);
  int n = ir_symbol(&r->g, "N", (SrcLoc){0});
  r->g.syms[n].max = 8;
  Shape sx = {2, {DIM_SYM(n), 3}}, sy = {2, {DIM_SYM(n), 2}};
  int ins[2] = {ir_input(&r->g, "x", DT_F32, &sx, (SrcLoc){0}), ir_input(&r->g, "y", DT_F32, &sy, (SrcLoc){0})};
  Attrs a = ir_attrs_default(OP_CONCAT);
  a.axis.axis = 1;
  r->out = ir_op(&r->g, OP_CONCAT, ins, 2, &a, (SrcLoc){0});
  cr_assert_geq(r->out, 0);
  r->vals = calloc((size_t)r->g.nnodes, sizeof *r->vals);
}

static void alloc_input(Run *r, const char *name, DType dt, int64_t d0, int64_t d1) {
  int64_t shape[2] = {d0, d1};
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&r->vals[ir_find_input(&r->g, name)], dt, 2, shape, &err), RT_OK);
}

/* Binds r's inputs, expecting status st and a message containing msg. */
static void expect_bind_error(Run *r, RtStatus st, const char *msg) {
  RtError err = {{0}};
  cr_assert_eq(ir_bind_symbols(&r->g, r->vals, r->symvals, &err), st, "message: %s", err.msg);
  cr_assert(strstr(err.msg, msg), "message '%s' does not contain '%s'", err.msg, msg);
}

Test(interp_bind, consistent_inputs_bind_and_run) {
  Run r;
  RtError err;
  build_pair(&r);
  alloc_input(&r, "x", DT_F32, 5, 3);
  alloc_input(&r, "y", DT_F32, 5, 2);
  cr_assert_eq(run_interp(&r, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(r.symvals[0], 5);
  cr_assert_eq(r.vals[r.out].shape[0], 5);
  cr_assert_eq(r.vals[r.out].shape[1], 5);
  run_free(&r);
}

Test(interp_bind, wrong_dtype) {
  Run r;
  build_pair(&r);
  alloc_input(&r, "x", DT_I64, 5, 3);
  alloc_input(&r, "y", DT_F32, 5, 2);
  expect_bind_error(&r, RT_ERR_DTYPE, "input 'x' is i64[5, 3] but the model declares f32[N, 3]");
  run_free(&r);
}

Test(interp_bind, wrong_rank) {
  Run r;
  int64_t shape[3] = {5, 3, 1};
  RtError err;
  build_pair(&r);
  cr_assert_eq(rt_tensor_alloc(&r.vals[ir_find_input(&r.g, "x")], DT_F32, 3, shape, &err), RT_OK);
  alloc_input(&r, "y", DT_F32, 5, 2);
  expect_bind_error(&r, RT_ERR_SHAPE, "input 'x' has rank 3");
  run_free(&r);
}

Test(interp_bind, wrong_constant_dim) {
  Run r;
  build_pair(&r);
  alloc_input(&r, "x", DT_F32, 5, 3);
  alloc_input(&r, "y", DT_F32, 5, 4);
  expect_bind_error(&r, RT_ERR_SHAPE, "input 'y': dimension 1 is 4 but the model declares 2");
  run_free(&r);
}

Test(interp_bind, inconsistent_symbol) {
  Run r;
  build_pair(&r);
  alloc_input(&r, "x", DT_F32, 6, 3);
  alloc_input(&r, "y", DT_F32, 4, 2);
  expect_bind_error(&r, RT_ERR_SHAPE, "input 'y': dimension 0 is 4 but N = 6 from input 'x'");
  run_free(&r);
}

Test(interp_bind, symbol_above_max) {
  Run r;
  build_pair(&r);
  alloc_input(&r, "x", DT_F32, 9, 3);
  alloc_input(&r, "y", DT_F32, 9, 2);
  expect_bind_error(&r, RT_ERR_SHAPE, "input 'x': dimension 0 is 9 but N is at most 8");
  run_free(&r);
}

Test(interp_bind, unbound_symbol) {
  Run r;
  diag_init(&r.diags, stderr);
  ir_graph_init(&r.g, "unbound", &r.diags);
  int n = ir_symbol(&r.g, "B", (SrcLoc){0});
  Shape s = {1, {DIM_SYM(n)}};
  ir_param(&r.g, "w", DT_F32, &s, (ParamInit){INIT_ZEROS, 0, 0}, (SrcLoc){0});
  r.vals = calloc(1, sizeof *r.vals);
  expect_bind_error(&r, RT_ERR_SHAPE, "symbol B is not bound");
  run_free(&r);
}

Test(interp_bind, param_checked_by_interp) {
  Run r;
  RtError err = {{0}};
  int64_t shape[2] = {2, 4};
  diag_init(&r.diags, stderr);
  ir_graph_init(&r.g, "param", &r.diags);
  Shape s = {2, {2, 3}};
  int w = ir_param(&r.g, "w", DT_F32, &s, (ParamInit){INIT_ZEROS, 0, 0}, (SrcLoc){0});
  int k = ir_const(&r.g, 1.0, (SrcLoc){0});
  int ins[2] = {w, k};
  cr_assert_geq(ir_op(&r.g, OP_ADD, ins, 2, NULL, (SrcLoc){0}), 0);
  r.vals = calloc((size_t)r.g.nnodes, sizeof *r.vals);
  cr_assert_eq(rt_tensor_alloc(&r.vals[w], DT_F32, 2, shape, &err), RT_OK);
  cr_assert_eq(run_interp(&r, &err), RT_ERR_SHAPE);
  cr_assert(strstr(err.msg, "parameter 'w': dimension 1 is 4 but must be 3"), "%s", err.msg);
  run_free(&r);
}

/* --- run-time errors and special values -------------------------------------- */

Test(interp_ops, cross_entropy_label_out_of_range) {
  static const int64_t bad[][2] = {{3, 12}, {0, -1}, {4, -101}}; /* -100 is ignore_index */
  for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
    Run r;
    RtError err = {{0}};
    diag_init(&r.diags, stderr);
    ir_graph_init(&r.g, "ce", &r.diags);
    Shape sx = {2, {5, 10}}, sy = {1, {5}};
    int ins[2] = {ir_input(&r.g, "x", DT_F32, &sx, (SrcLoc){0}), ir_input(&r.g, "y", DT_I64, &sy, (SrcLoc){0})};
    cr_assert_geq(ir_op(&r.g, OP_CROSS_ENTROPY, ins, 2, NULL, (SrcLoc){0}), 0);
    r.vals = calloc((size_t)r.g.nnodes, sizeof *r.vals);
    int64_t shx[2] = {5, 10}, shy[1] = {5};
    cr_assert_eq(rt_tensor_alloc(&r.vals[ins[0]], DT_F32, 2, shx, &err), RT_OK);
    cr_assert_eq(rt_tensor_alloc(&r.vals[ins[1]], DT_I64, 1, shy, &err), RT_OK);
    ((int64_t *)r.vals[ins[1]].data)[bad[t][0]] = bad[t][1];
    cr_assert_eq(run_interp(&r, &err), RT_ERR_SHAPE);
    char want[128];
    snprintf(want, sizeof want, "label %lld at index %lld is out of range for 10 classes", (long long)bad[t][1],
             (long long)bad[t][0]);
    cr_assert(strstr(err.msg, want), "message '%s' does not contain '%s'", err.msg, want);
    run_free(&r);
  }
}

/* An index outside x's axis (from -extent to extent - 1) is refused before
 * anything is read, naming the op, the index, its position in the index
 * tensor and the axis. */
Test(interp_ops, index_out_of_range) {
  static const int64_t bad[][2] = {{3, 4}, {0, -5}, {5, 100}};
  for (int op = OP_GATHER; op <= OP_INDEX_SELECT; op++)
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
      Run r;
      RtError err = {{0}};
      diag_init(&r.diags, stderr);
      ir_graph_init(&r.g, "ix", &r.diags);
      Shape sx = {2, {3, 4}}, si = op == OP_GATHER ? (Shape){2, {3, 2}} : (Shape){1, {6}};
      int ins[2] = {ir_input(&r.g, "x", DT_F32, &sx, (SrcLoc){0}), ir_input(&r.g, "i", DT_I32, &si, (SrcLoc){0})};
      Attrs a = ir_attrs_default((OpKind)op);
      a.axis.axis = 1;
      cr_assert_geq(ir_op(&r.g, (OpKind)op, ins, 2, &a, (SrcLoc){0}), 0);
      r.vals = calloc((size_t)r.g.nnodes, sizeof *r.vals);
      cr_assert_eq(rt_tensor_alloc(&r.vals[ins[0]], DT_F32, 2, (int64_t[]){3, 4}, &err), RT_OK);
      cr_assert_eq(rt_tensor_alloc(&r.vals[ins[1]], DT_I32, si.rank, si.d, &err), RT_OK);
      ((int32_t *)r.vals[ins[1]].data)[bad[t][0]] = (int32_t)bad[t][1];
      cr_assert_eq(run_interp(&r, &err), RT_ERR_SHAPE);
      char want[160];
      snprintf(want, sizeof want, "%s: index %lld at position %lld of the index is out of range for axis 1 of extent 4",
               ir_ops[op].name, (long long)bad[t][1], (long long)bad[t][0]);
      cr_assert(strstr(err.msg, want), "message '%s' does not contain '%s'", err.msg, want);
      run_free(&r);
    }
}

/* A graph whose output is a constant: rank 0, f32, the attribute's value. */
Test(interp_ops, const_is_rank0_f32) {
  Run r;
  RtError err;
  diag_init(&r.diags, stderr);
  ir_graph_init(&r.g, "const", &r.diags);
  int k = ir_const(&r.g, -1.25, (SrcLoc){0});
  r.vals = calloc(1, sizeof *r.vals);
  cr_assert_eq(run_interp(&r, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(r.vals[k].rank, 0);
  cr_assert_eq(r.vals[k].dtype, DT_F32);
  cr_assert_eq(((float *)r.vals[k].data)[0], -1.25f);
  run_free(&r);
}

/* relu, max and softmax let a NaN through, as torch does. */
Test(interp_ops, nan_propagates) {
  static const OpKind ops[] = {OP_RELU, OP_MAX, OP_SOFTMAX};
  for (size_t t = 0; t < sizeof ops / sizeof ops[0]; t++) {
    Run r;
    RtError err;
    diag_init(&r.diags, stderr);
    ir_graph_init(&r.g, "nan", &r.diags);
    Shape s = {1, {3}};
    int x = ir_input(&r.g, "x", DT_F32, &s, (SrcLoc){0});
    int y = ir_op(&r.g, ops[t], &x, 1, NULL, (SrcLoc){0});
    cr_assert_geq(y, 0);
    r.vals = calloc((size_t)r.g.nnodes, sizeof *r.vals);
    int64_t shape[1] = {3};
    cr_assert_eq(rt_tensor_alloc(&r.vals[x], DT_F32, 1, shape, &err), RT_OK);
    float *v = r.vals[x].data;
    v[0] = 1, v[1] = NAN, v[2] = 3;
    cr_assert_eq(run_interp(&r, &err), RT_OK, "%s", err.msg);
    cr_assert(isnan(((float *)r.vals[y].data)[ops[t] == OP_RELU ? 1 : 0]), "%s lost the NaN", ir_ops[ops[t]].name);
    run_free(&r);
  }
}
