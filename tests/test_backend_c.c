/*
 * test_backend_c.c — the C backend against the reference interpreter.
 *
 * Every case of op_cases.h is lowered, memory-planned, emitted as C,
 * compiled with -Wall -Wextra -pedantic -Werror (so warnings in generated
 * code fail the test), loaded, and called through libffi on the fixture
 * inputs; its output must match the interpreter's to a relative error of
 * 1e-5 (absolute floor 1e-6).  A second test compiles every case's C with
 * clang-19 as well, when it is installed.  Symbolic cases are compiled for
 * OPCASE_N_MAX and called with the smaller batch of the fixture, so the
 * batch argument is exercised too.
 */
#include <criterion/criterion.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/op_cases.h"
#include "tests/testutil.h"

#define WERROR "-Wall -Wextra -pedantic -Werror"
#define FAST_CFLAGS "-O1 " WERROR /* compile speed over code speed in tests */

typedef struct Case {
  Diags d;
  Graph g;
  RtTensor *vals;
  int64_t sym[IR_MAX_SYMS];
} Case;

static int load_case(Case *k, const OpCase *c) {
  RtTensor ins[OPCASE_MAX_IN];
  RtError err;
  for (int i = 0; i < c->nin; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.in%d.npy", FIXTURE("ops"), c->name, i);
    cr_assert_eq(rt_npy_read(path, &ins[i], &err), RT_OK, "%s", err.msg);
  }
  diag_init(&k->d, stderr);
  ir_graph_init(&k->g, c->name, &k->d);
  int out = opcase_build(c, &k->g, ins);
  cr_assert_geq(out, 0, "%s does not build", c->name);
  k->vals = calloc((size_t)k->g.nnodes, sizeof *k->vals);
  for (int i = 0; i < c->nin; i++) k->vals[opcase_input_id(&k->g, i)] = ins[i];
  cr_assert_eq(ir_bind_symbols(&k->g, k->vals, k->sym, &err), RT_OK, "%s: %s", c->name, err.msg);
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&k->g, k->vals, k->sym, &io, &err), RT_OK, "%s: %s", c->name, err.msg);
  return out;
}

static void free_case(Case *k) {
  for (int i = 0; i < k->g.nnodes; i++) rt_tensor_free(&k->vals[i]);
  free(k->vals);
  ir_graph_free(&k->g);
}

/* Runs the compiled forward on the case's inputs into got. */
static void run_compiled(Case *k, const OpCase *c, RtTensor *got) {
  Program p;
  RtError err;
  kir_program_init(&p, &k->g);
  pass_lower(&p, kir_func(&p, "forward", &k->g));
  pass_memplan(&p);
  CModule *m = cg_c_build(&p, FAST_CFLAGS, &err);
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

Test(backend_c, every_op_agrees_with_interpreter, .timeout = 600) {
  for (int ci = 0; ci < OPCASE_COUNT; ci++) {
    const OpCase *c = &op_cases[ci];
    Case k;
    load_case(&k, c);
    RtTensor got;
    run_compiled(&k, c, &got);
    const RtTensor *want = &k.vals[k.g.outputs[0].id];
    int64_t n = rt_tensor_numel(want);
    const float *a = got.data, *b = want->data;
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
      double e = isnan(b[i]) && isnan(a[i]) ? 0 : tu_relerr(a[i], b[i], 1e-6);
      if (!(e <= worst)) worst = e, at = i;
    }
    cr_expect(worst <= 1e-5, "%s: element %lld is %g, the interpreter says %g (rel. error %g)", c->name,
              (long long)at, (double)a[at], (double)b[at], worst);
    rt_tensor_free(&got);
    free_case(&k);
  }
}

/* Emits the case's C into dir and compiles it with cc; returns the exit status. */
static int compile_with(const char *cc, Case *k, const char *dir) {
  Program p;
  kir_program_init(&p, &k->g);
  pass_lower(&p, kir_func(&p, "forward", &k->g));
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
