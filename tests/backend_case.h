/*
 * backend_case.h — running one case of op_cases.h on a compiled backend,
 * shared by the C-backend and LLVM-backend suites.
 *
 * load_case reads the case's fixture inputs, builds its graph and runs the
 * interpreter (the reference result stays in vals); run_case lowers the
 * graph, builds it with the given backend and calls its forward; agree
 * checks the compiled result against the interpreter's to 1e-5 norm-wise
 * (tu_normerr: the interpreter sums in double, the kernels in float).
 */
#ifndef DLC_BACKEND_CASE_H
#define DLC_BACKEND_CASE_H

#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/op_cases.h"
#include "tests/testutil.h"

typedef struct Case {
  Diags d;
  Graph g;
  RtTensor *vals;
  int64_t sym[IR_MAX_SYMS];
} Case;

/* A backend: builds a module from a lowered, planned program. */
typedef CModule *(*BuildFn)(const Program *p, RtError *err);

static inline void load_case(Case *k, const OpCase *c) {
  RtTensor ins[OPCASE_MAX_IN];
  RtError err;
  for (int i = 0; i < c->nin; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.in%d.npy", FIXTURE("ops"), c->name, i);
    cr_assert_eq(rt_npy_read(path, &ins[i], &err), RT_OK, "%s", err.msg);
  }
  diag_init(&k->d, stderr);
  ir_graph_init(&k->g, c->name, &k->d);
  cr_assert_geq(opcase_build(c, &k->g, ins), 0, "%s does not build", c->name);
  k->vals = calloc((size_t)k->g.nnodes, sizeof *k->vals);
  for (int i = 0; i < c->nin; i++) k->vals[opcase_input_id(&k->g, i)] = ins[i];
  cr_assert_eq(ir_bind_symbols(&k->g, k->vals, k->sym, &err), RT_OK, "%s: %s", c->name, err.msg);
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&k->g, k->vals, k->sym, &io, &err), RT_OK, "%s: %s", c->name, err.msg);
}

static inline void free_case(Case *k) {
  for (int i = 0; i < k->g.nnodes; i++) rt_tensor_free(&k->vals[i]);
  free(k->vals);
  ir_graph_free(&k->g);
}

/* The compiled forward of case k, built with build, into got. */
static inline void run_case(Case *k, const OpCase *c, BuildFn build, RtTensor *got) {
  Program p;
  RtError err;
  kir_program_init(&p, &k->g);
  pass_lower(&p, kir_func(&p, "forward", &k->g));
  pass_schedule(&p);
  pass_memplan(&p);
  CModule *m = build(&p, &err);
  cr_assert_not_null(m, "%s: %s", c->name, err.msg);
  const RtTensor *want = &k->vals[k->g.outputs[0].id];
  cr_assert_eq(rt_tensor_alloc(got, want->dtype, want->rank, want->shape, &err), RT_OK);
  const Func *f = &p.funcs[0];
  void *args[OPCASE_MAX_IN + 1];
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &p.bufs[f->args[i]];
    args[i] = b->kind == BUF_OUTPUT ? got->data : k->vals[b->node].data;
  }
  cr_assert_eq(cg_c_call(m, "forward", k->sym, args, &err), RT_OK, "%s: %s", c->name, err.msg);
  cg_c_free(m);
  kir_program_free(&p);
}

/* gather and index_select with indices outside x's axis (-4 and 3 for an
 * axis of 3; the interpreter refuses them): compiled code reads nothing
 * out of bounds and gives NaN there, x's element everywhere else; -1
 * counts from the end. */
static inline void out_of_range_index_gives_nan(BuildFn build) {
  static const int64_t index[4] = {2, -4, 3, -1};
  for (int op = OP_GATHER; op <= OP_INDEX_SELECT; op++) {
    Case k = {0};
    RtError err;
    diag_init(&k.d, stderr);
    ir_graph_init(&k.g, "oob", &k.d);
    Shape sx = {2, {2, 3}}, si = op == OP_GATHER ? (Shape){2, {2, 2}} : (Shape){1, {4}};
    int in[2] = {ir_input(&k.g, "x", DT_F32, &sx, (SrcLoc){0}), ir_input(&k.g, "i", DT_I64, &si, (SrcLoc){0})};
    Attrs a = ir_attrs_default((OpKind)op);
    a.axis.axis = 1;
    int id = ir_op(&k.g, (OpKind)op, in, 2, &a, (SrcLoc){0});
    cr_assert_geq(id, 0);
    ir_output(&k.g, "out", id);
    k.vals = calloc((size_t)k.g.nnodes, sizeof *k.vals);
    cr_assert_eq(rt_tensor_alloc(&k.vals[in[0]], DT_F32, 2, (int64_t[]){2, 3}, &err), RT_OK);
    cr_assert_eq(rt_tensor_alloc(&k.vals[in[1]], DT_I64, si.rank, si.d, &err), RT_OK);
    for (int e = 0; e < 6; e++) ((float *)k.vals[in[0]].data)[e] = (float)(e + 1);
    memcpy(k.vals[in[1]].data, index, sizeof index);
    cr_assert_eq(rt_tensor_alloc(&k.vals[id], DT_F32, k.g.nodes[id].shape.rank, k.g.nodes[id].shape.d, &err), RT_OK);
    RtTensor got;
    run_case(&k, &(OpCase){.name = ir_ops[op].name}, build, &got);
    const float *v = got.data;
    for (int64_t e = 0; e < rt_tensor_numel(&got); e++) {
      int64_t row = op == OP_GATHER ? e / 2 : e / 4, j = index[op == OP_GATHER ? e : e % 4];
      j = j == -1 ? 2 : j;
      if (j < 0 || j > 2) cr_expect(isnan(v[e]), "%s: element %lld is %g, not NaN", ir_ops[op].name, (long long)e, v[e]);
      else cr_expect_eq(v[e], (float)(row * 3 + j + 1), "%s: element %lld is %g", ir_ops[op].name, (long long)e, v[e]);
    }
    rt_tensor_free(&got);
    free_case(&k);
  }
}

/* Every case of op_cases.h through build, against the interpreter. */
static inline void every_case_agrees(BuildFn build) {
  for (int ci = 0; ci < OPCASE_COUNT; ci++) {
    const OpCase *c = &op_cases[ci];
    Case k;
    load_case(&k, c);
    RtTensor got;
    run_case(&k, c, build, &got);
    const RtTensor *want = &k.vals[k.g.outputs[0].id];
    int64_t at = 0, n = rt_tensor_numel(want);
    const float *a = got.data, *b = want->data;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
      double e = tu_normerr(a, b, n, i);
      if (!(e <= worst)) worst = e, at = i;
    }
    cr_expect(worst <= 1e-5, "%s: element %lld is %g, the interpreter says %g (norm-wise error %g)", c->name,
              (long long)at, (double)a[at], (double)b[at], worst);
    rt_tensor_free(&got);
    free_case(&k);
  }
}

#endif
