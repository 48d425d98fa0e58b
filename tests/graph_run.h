/*
 * graph_run.h — running a whole graph once on one backend, for suites that
 * compare the interpreter with the compiled code (batch norm, dropout,
 * the random ops): the graph is lowered as one function "f", its
 * parameters are copied into the module and read back after the call (so
 * in-place updates show), and its outputs are allocated in vals.
 */
#ifndef DLC_GRAPH_RUN_H
#define DLC_GRAPH_RUN_H

#include <criterion/criterion.h>

#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/testutil.h"

/* Runs g with the interpreter (backend 0), the C backend (1) or the JIT
 * (2); vals must hold every source; computed outputs are left in vals. */
static inline void run_graph(Graph *g, RtTensor *vals, int64_t n, int backend) {
  RtError err;
  int64_t sym[IR_MAX_SYMS] = {n};
  if (!backend) {
    InterpOpts io = {1, 0};
    cr_assert_eq(ir_interp(g, vals, sym, &io, &err), RT_OK, "%s", err.msg);
    return;
  }
  Program p;
  kir_program_init(&p, g);
  pass_lower(&p, kir_func(&p, "f", g));
  pass_schedule(&p);
  pass_memplan(&p);
  CModule *mod = backend == 2 ? cg_jit_build(&p, &err) : cg_c_build(&p, "-O1 -Wall -Wextra -pedantic -Werror", &err);
  cr_assert_not_null(mod, "%s", err.msg);
  RtTensorSet params;
  rt_set_init(&params);
  for (int i = 0; i < g->nnodes; i++) /* the module's storage gets the params; copies, so vals stay ours */
    if (g->nodes[i].op == OP_PARAM) {
      RtTensor c = vals[i];
      c.data = malloc(rt_tensor_nbytes(&c));
      memcpy(c.data, vals[i].data, rt_tensor_nbytes(&c));
      rt_set_add(&params, g->nodes[i].name, &c, &err);
    }
  cr_assert_eq(cg_c_set_params(mod, &params, &err), RT_OK, "%s", err.msg);
  const Func *f = &p.funcs[0];
  void *args[16];
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &p.bufs[f->args[i]];
    int id = b->kind == BUF_INPUT ? b->node : g->outputs[ir_find_output(g, b->name)].id;
    if (b->kind == BUF_OUTPUT) {
      int64_t shape[IR_MAX_RANK];
      for (int k = 0; k < b->shape.rank; k++) shape[k] = ir_dim_value(g, b->shape.d[k], sym);
      rt_tensor_free(&vals[id]);
      cr_assert_eq(rt_tensor_alloc(&vals[id], b->dtype, b->shape.rank, shape, &err), RT_OK);
    }
    args[i] = vals[id].data;
  }
  cr_assert_eq(cg_c_call(mod, "f", sym, args, &err), RT_OK, "%s", err.msg);
  /* the running statistics were updated inside the module */
  cr_assert_eq(cg_c_get_params(mod, &params, &err), RT_OK, "%s", err.msg);
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_PARAM) memcpy(vals[i].data, rt_set_find(&params, g->nodes[i].name)->data, rt_tensor_nbytes(&vals[i]));
  rt_set_free(&params);
  cg_c_free(mod);
  kir_program_free(&p);
}

#endif
