/*
 * test_backend_c.c — the C backend against the reference interpreter.
 *
 * Every case of op_cases.h is lowered, memory-planned, emitted as C,
 * compiled with -Wall -Wextra -pedantic -Werror (so warnings in generated
 * code fail the test), loaded, and called through libffi on the fixture
 * inputs; its output must match the interpreter's to 1e-5 relative to the
 * output's largest magnitude (tu_normerr: the interpreter sums in double,
 * the kernels in float, so elements that come out of cancellation are
 * judged against the scale of the result).  A second test compiles every case's C with
 * clang-19 as well, when it is installed.  Symbolic cases are compiled for
 * OPCASE_N_MAX and called with the smaller batch of the fixture, so the
 * batch argument is exercised too.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/backend_case.h"

#define WERROR "-Wall -Wextra -pedantic -Werror"
#define FAST_CFLAGS "-O1 " WERROR /* compile speed over code speed in tests */

static CModule *build_c(const Program *p, RtError *err) { return cg_c_build(p, FAST_CFLAGS, err); }

Test(backend_c, every_op_agrees_with_interpreter, .timeout = 600) { every_case_agrees(build_c); }

Test(backend_c, out_of_range_index_gives_nan, .timeout = 120) { out_of_range_index_gives_nan(build_c); }


/* Emits the case's C into dir and compiles it with cc; returns the exit status. */
static int compile_with(const char *cc, Case *k, const char *dir) {
  Program p;
  kir_program_init(&p, &k->g);
  pass_lower(&p, kir_func(&p, "forward", &k->g));
  pass_schedule(&p);
  pass_memplan(&p);
  char cpath[600], hpath[600], cmd[2048];
  snprintf(cpath, sizeof cpath, "%s/m.c", dir);
  snprintf(hpath, sizeof hpath, "%s/m.h", dir);
  FILE *c = fopen(cpath, "w"), *h = fopen(hpath, "w");
  cr_assert(c && h);
  EmitOpts o = {"m.h", NULL};
  cr_assert_eq(cg_emit_c(&p, c, h, &o, &k->d), 0);
  fclose(c);
  fclose(h);
  kir_program_free(&p);
  snprintf(cmd, sizeof cmd, "%s -std=c99 " WERROR " -O2 -c -o %s/m.o %s", cc, dir, cpath);
  int st = system(cmd);
  unlink(cpath);
  unlink(hpath);
  snprintf(cpath, sizeof cpath, "%s/m.o", dir);
  unlink(cpath);
  return st;
}

Test(backend_c, emitted_c_is_warning_free_under_clang19, .timeout = 600) {
  if (access("/usr/bin/clang-19", X_OK) != 0) cr_skip_test("clang-19 is not installed");
  const char *dir = tu_scratch_dir();
  for (int ci = 0; ci < OPCASE_COUNT; ci++) {
    Case k;
    load_case(&k, &op_cases[ci]);
    cr_expect_eq(compile_with("/usr/bin/clang-19", &k, dir), 0, "%s: clang-19 rejects the emitted C", op_cases[ci].name);
    free_case(&k);
  }
  rmdir(dir);
}

Test(backend_c, batch_above_the_compiled_maximum_is_refused) {
  const OpCase *c = NULL;
  for (int ci = 0; ci < OPCASE_COUNT && !c; ci++)
    if (op_cases[ci].op == OP_RELU && op_cases[ci].batch) c = &op_cases[ci];
  cr_assert_not_null(c);
  Case k;
  load_case(&k, c);
  k.g.syms[0].max = k.sym[0] - 1 > 0 ? k.sym[0] - 1 : 1;
  Program p;
  RtError err;
  kir_program_init(&p, &k.g);
  pass_lower(&p, kir_func(&p, "forward", &k.g));
  pass_schedule(&p);
  pass_memplan(&p);
  CModule *m = cg_c_build(&p, FAST_CFLAGS, &err);
  cr_assert_not_null(m, "%s", err.msg);
  RtTensor got;
  const RtTensor *want = &k.vals[k.g.outputs[0].id];
  rt_tensor_alloc(&got, want->dtype, want->rank, want->shape, &err);
  void *args[2] = {k.vals[p.bufs[p.funcs[0].args[0]].node].data, got.data};
  int64_t big = k.g.syms[0].max + 1;
  cr_expect_neq(cg_c_call(m, "forward", &big, args, &err), RT_OK);
  cr_expect(strstr(err.msg, "returned -1") != NULL, "%s", err.msg);
  rt_tensor_free(&got);
  cg_c_free(m);
  kir_program_free(&p);
  free_case(&k);
}

/* --- every sample --------------------------------------------------------------------- */

/* The forward pass of each model in samples/ on random inputs: the C
 * backend against the interpreter, with weights from the seed. */
static void check_sample(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/samples/%s", DLC_SOURCE_DIR, name);
  Model m;
  Diags d;
  diag_init(&d, stderr);
  cr_assert_eq(fe_load_file(&m, path, &d), 0, "%s does not load", name);
  for (int s = 0; s < m.g.nsyms; s++) m.g.syms[s].max = 3;
  pass_dce(&m.g);
  Graph *g = &m.g;
  RtTensor *vals = calloc((size_t)g->nnodes, sizeof *vals);
  RtTensorSet params;
  RtError err;
  rt_set_init(&params);
  cr_assert_eq(ir_params_init(g, 7, &params, &err), RT_OK, "%s", err.msg);
  RtRng r;
  rt_rng_seed(&r, 11);
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = 3;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_PARAM) vals[i] = *rt_set_find(&params, n->name);
    if (n->op != OP_INPUT) continue;
    int64_t shape[IR_MAX_RANK];
    for (int k = 0; k < n->shape.rank; k++) shape[k] = ir_dim_value(g, n->shape.d[k], sym);
    cr_assert_eq(rt_tensor_alloc(&vals[i], n->dtype, n->shape.rank, shape, &err), RT_OK);
    for (int64_t k = 0; k < rt_tensor_numel(&vals[i]) && n->dtype == DT_F32; k++)
      ((float *)vals[i].data)[k] = (float)rt_rng_uniform(&r);
  }
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(g, vals, sym, &io, &err), RT_OK, "%s: %s", name, err.msg);
  Program p;
  kir_program_init(&p, g);
  pass_lower(&p, kir_func(&p, "forward", g));
  pass_schedule(&p);
  pass_memplan(&p);
  CModule *mod = cg_c_build(&p, FAST_CFLAGS, &err);
  cr_assert_not_null(mod, "%s: %s", name, err.msg);
  cr_assert_eq(cg_c_set_params(mod, &params, &err), RT_OK, "%s", err.msg);
  const Func *f = &p.funcs[0];
  void *args[32];
  RtTensor outs[16];
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &p.bufs[f->args[i]];
    if (b->kind == BUF_INPUT) {
      args[i] = vals[b->node].data;
      continue;
    }
    const RtTensor *want = &vals[g->outputs[ir_find_output(g, b->name)].id];
    int o = ir_find_output(g, b->name);
    cr_assert_eq(rt_tensor_alloc(&outs[o], want->dtype, want->rank, want->shape, &err), RT_OK);
    args[i] = outs[o].data;
  }
  cr_assert_eq(cg_c_call(mod, "forward", sym, args, &err), RT_OK, "%s", err.msg);
  for (int o = 0; o < g->noutputs; o++) {
    const RtTensor *want = &vals[g->outputs[o].id];
    double worst = 0;
    for (int64_t k = 0; k < rt_tensor_numel(want); k++)
      worst = fmax(worst, tu_normerr(outs[o].data, want->data, rt_tensor_numel(want), k));
    cr_expect(worst <= 1e-5, "%s: output %s differs by %g", name, g->outputs[o].name, worst);
    rt_tensor_free(&outs[o]);
  }
  cg_c_free(mod);
  kir_program_free(&p);
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op != OP_PARAM) rt_tensor_free(&vals[i]);
  free(vals);
  rt_set_free(&params);
  fe_model_free(&m);
}

Test(backend_c, every_sample_agrees_with_interpreter, .timeout = 300) {
  DIR *dir = opendir(DLC_SOURCE_DIR "/samples");
  cr_assert_not_null(dir);
  int n = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    size_t len = strlen(e->d_name);
    if (len < 4 || strcmp(e->d_name + len - 3, ".dl")) continue;
    check_sample(e->d_name);
    n++;
  }
  closedir(dir);
  cr_expect_geq(n, 4, "only %d samples found", n);
}
