/*
 * test_backend_llvm.c — the LLVM backend against the interpreter and the
 * C backend.
 *
 * Every case of op_cases.h is lowered, memory-planned, JIT-compiled and
 * called on the fixture inputs; its output must match the interpreter's to
 * a norm-wise error of 1e-5 (tu_normerr), as for the C backend, and so
 * are the other comparisons: the register tiles of dense layers add with
 * fma where the target has it (the JIT) and the C backend's code, built
 * -std=c99, does not, so an output that comes out of cancellation (a logit
 * near 0) differs in more than its own last bits.  The JIT
 * and the C backend must agree on the MLP sample's forward pass and on
 * three Adam training steps of the tiny fixture model (parameters and
 * optimizer state to 1e-5).  An object file from `dlc --emit=obj` must
 * link with its header into a plain C program (no LLVM) that loads
 * safetensors weights and reproduces the interpreter, next to a second
 * model's object (the support code is internal to each).  P_load must
 * name a missing tensor, and a module that does not verify must come back
 * as an error, not an abort.  Each kernel must be a function of its own,
 * never inlined, taking its buffers as parameters whose accesses carry
 * alias scopes, and kernels that differ only in their buffers must share
 * one function (and still agree with the interpreter).
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <llvm-c/Core.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/cg_llvm.h"
#include "driver/trainer.h"
#include "passes/passes.h"
#include "passes/schedule.h"
#include "tests/backend_case.h"
#include "tests/handkit.h"

#define RTOL 1e-5

/* --- every op ---------------------------------------------------------------------- */

/* The worst norm-wise error of got against want over n floats (NaN =
 * NaN; tu_normerr, with want's largest magnitude found once). */
static double worst_error(const float *got, const float *want, int64_t n, int64_t *at) {
  double worst = 0, m = 1e-6;
  *at = 0;
  for (int64_t i = 0; i < n; i++)
    if (isfinite(want[i]) && fabs(want[i]) > m) m = fabs(want[i]);
  for (int64_t i = 0; i < n; i++) {
    double e = got[i] == want[i] || (isnan(got[i]) && isnan(want[i])) ? 0
               : !isfinite(got[i]) || !isfinite(want[i])           ? INFINITY
                                                                    : fabs((double)got[i] - want[i]) / m;
    if (!(e <= worst)) worst = e, *at = i;
  }
  return worst;
}

Test(backend_llvm, every_op_agrees_with_interpreter, .timeout = 600) { every_case_agrees(cg_jit_build); }

Test(backend_llvm, out_of_range_index_gives_nan, .timeout = 120) { out_of_range_index_gives_nan(cg_jit_build); }

Test(backend_llvm, batch_above_the_compiled_maximum_is_refused) {
  const OpCase *c = NULL;
  for (int ci = 0; ci < OPCASE_COUNT && !c; ci++)
    if (op_cases[ci].op == OP_RELU && op_cases[ci].batch) c = &op_cases[ci];
  cr_assert_not_null(c);
  Case k;
  load_case(&k, c);
  Program p;
  RtError err;
  kir_program_init(&p, &k.g);
  pass_lower(&p, kir_func(&p, "forward", &k.g));
  pass_schedule(&p);
  pass_memplan(&p);
  CModule *m = cg_jit_build(&p, &err);
  cr_assert_not_null(m, "%s", err.msg);
  const RtTensor *want = &k.vals[k.g.outputs[0].id];
  RtTensor got;
  rt_tensor_alloc(&got, want->dtype, want->rank, want->shape, &err);
  void *args[2] = {k.vals[p.bufs[p.funcs[0].args[0]].node].data, got.data};
  int64_t big = k.g.syms[0].max + 1, negative = -1; /* 0, an empty batch, is valid: test_empty_batch.c */
  cr_expect_neq(cg_c_call(m, "forward", &big, args, &err), RT_OK);
  cr_expect(strstr(err.msg, "returned -1") != NULL, "%s", err.msg);
  cr_expect_neq(cg_c_call(m, "forward", &negative, args, &err), RT_OK);
  rt_tensor_free(&got);
  cg_c_free(m);
  kir_program_free(&p);
  free_case(&k);
}

/* --- the MLP forward: JIT, C backend, interpreter ---------------------------------- */

typedef struct Mlp {
  Diags d;
  Model m;
  Program p;
  RtTensorSet params;
  RtTensor *vals;           /* interpreter values; params borrowed */
  int64_t sym[IR_MAX_SYMS];
} Mlp;

#define MLP_N 3

/* samples/mlp.dl, its parameters from seed 7, a batch of MLP_N inputs,
 * and the interpreter's outputs. */
static void mlp_setup(Mlp *s) {
  RtError err;
  diag_init(&s->d, stderr);
  cr_assert_eq(fe_load_file(&s->m, DLC_SOURCE_DIR "/samples/mlp.dl", &s->d), 0);
  for (int i = 0; i < s->m.g.nsyms; i++) s->m.g.syms[i].max = 16;
  cr_assert_eq(pass_pipeline_infer(&s->m.g, &s->p, NULL, &s->d), 0);
  rt_set_init(&s->params);
  cr_assert_eq(ir_params_init(&s->m.g, 7, &s->params, &err), RT_OK, "%s", err.msg);
  const Graph *g = &s->m.g;
  s->vals = calloc((size_t)g->nnodes + 1, sizeof *s->vals);
  int x = ir_find_input(g, "x");
  int64_t shape[2] = {MLP_N, 784};
  cr_assert_eq(rt_tensor_alloc(&s->vals[x], DT_F32, 2, shape, &err), RT_OK);
  float *xv = s->vals[x].data;
  for (int i = 0; i < MLP_N * 784; i++) xv[i] = (float)((i * 37 % 101) / 101.0);
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_PARAM) s->vals[i] = *rt_set_find(&s->params, g->nodes[i].name);
  cr_assert_eq(ir_bind_symbols(g, s->vals, s->sym, &err), RT_OK, "%s", err.msg);
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(g, s->vals, s->sym, &io, &err), RT_OK, "%s", err.msg);
}

static void mlp_free(Mlp *s) {
  for (int i = 0; i < s->m.g.nnodes; i++)
    if (s->m.g.nodes[i].op != OP_PARAM) rt_tensor_free(&s->vals[i]);
  free(s->vals);
  rt_set_free(&s->params);
  kir_program_free(&s->p);
  fe_model_free(&s->m);
}

/* Runs forward on module m into outs[0..noutputs), each malloc'd. */
static void mlp_run(Mlp *s, CModule *m, float **outs) {
  RtError err;
  const Graph *g = &s->m.g;
  const Func *f = &s->p.funcs[0];
  void *args[8];
  cr_assert_eq(cg_c_set_params(m, &s->params, &err), RT_OK, "%s", err.msg);
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &s->p.bufs[f->args[i]];
    if (b->kind == BUF_INPUT) {
      args[i] = s->vals[b->node].data;
      continue;
    }
    int o = ir_find_output(g, b->name);
    outs[o] = calloc((size_t)rt_tensor_numel(&s->vals[g->outputs[o].id]), sizeof(float));
    args[i] = outs[o];
  }
  cr_assert_eq(cg_c_call(m, "forward", s->sym, args, &err), RT_OK, "%s", err.msg);
}

Test(backend_llvm, jit_and_c_agree_on_the_mlp_forward, .timeout = 300) {
  Mlp s;
  mlp_setup(&s);
  RtError err;
  CModule *jit = cg_jit_build(&s.p, &err);
  cr_assert_not_null(jit, "%s", err.msg);
  CModule *c = cg_c_build(&s.p, NULL, &err);
  cr_assert_not_null(c, "%s", err.msg);
  float *oj[4] = {0}, *oc[4] = {0};
  mlp_run(&s, jit, oj);
  mlp_run(&s, c, oc);
  const Graph *g = &s.m.g;
  for (int o = 0; o < g->noutputs; o++) {
    const RtTensor *want = &s.vals[g->outputs[o].id];
    int64_t at, n = rt_tensor_numel(want);
    double e = worst_error(oj[o], oc[o], n, &at);
    cr_expect(e <= RTOL, "%s[%lld]: jit %.9g, c %.9g", g->outputs[o].name, (long long)at, oj[o][at], oc[o][at]);
    e = worst_error(oj[o], want->data, n, &at);
    cr_expect(e <= RTOL, "%s[%lld]: jit %.9g, interpreter %.9g", g->outputs[o].name, (long long)at, oj[o][at],
              ((float *)want->data)[at]);
    free(oj[o]);
    free(oc[o]);
  }
  cg_c_free(jit);
  cg_c_free(c);
  mlp_free(&s);
}

/* --- a training step ----------------------------------------------------------------- */

typedef struct TrainRun {
  Diags d;
  Model m;
  Graph tg;
  Program p;
  RtTensor x, y;
} TrainRun;

/* tests/fixtures/train/tiny.dl with Adam (optimizer state), train_step lowered. */
static void train_setup(TrainRun *r) {
  RtError err;
  diag_init(&r->d, stderr);
  cr_assert_eq(fe_load_file(&r->m, FIXTURE("train/tiny.dl"), &r->d), 0);
  for (int i = 0; i < r->m.g.nsyms; i++) r->m.g.syms[i].max = 4;
  OptimSpec o;
  trainer_optim_defaults(&o, OPT_ADAM, 0.01);
  ir_graph_init(&r->tg, r->m.g.name, &r->d);
  cr_assert_eq(pass_build_train(&r->m.g, r->m.train.loss, &o, &r->tg), 0);
  kir_program_init(&r->p, &r->m.g);
  pass_lower(&r->p, kir_func(&r->p, "train_step", &r->tg));
  pass_schedule(&r->p);
  pass_memplan(&r->p);
  cr_assert_eq(rt_npy_read(FIXTURE("train/tiny.x.npy"), &r->x, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_npy_read(FIXTURE("train/tiny.y.npy"), &r->y, &err), RT_OK, "%s", err.msg);
}

/* Three steps on module m from the fixture's initial weights; the
 * parameters and state after them into out. */
static void train_steps(TrainRun *r, CModule *m, RtTensorSet *out) {
  RtError err;
  RtTensorSet init;
  rt_set_init(&init);
  cr_assert_eq(rt_safetensors_read(FIXTURE("train/tiny.init.safetensors"), &init, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(cg_c_set_params(m, &init, &err), RT_OK, "%s", err.msg);
  const Func *f = &r->p.funcs[0];
  float lr = 0.01f, step = 0;
  static float scratch[16][256];
  void *args[16];
  cr_assert(f->nargs <= 16);
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &r->p.bufs[f->args[i]];
    args[i] = !strcmp(b->name, "x") ? r->x.data : !strcmp(b->name, "y") ? r->y.data : !strcmp(b->name, "lr") ? (void *)&lr
              : !strcmp(b->name, "step") ? (void *)&step : NULL;
    if (b->kind == BUF_OUTPUT) {
      cr_assert(b->size <= 256);
      args[i] = scratch[i];
    }
    cr_assert_not_null(args[i], "no value for %s", b->name);
  }
  int64_t sym[IR_MAX_SYMS] = {4, 4, 4, 4, 4, 4, 4, 4};
  for (int s = 1; s <= 3; s++) {
    step = (float)s;
    cr_assert_eq(cg_c_call(m, "train_step", sym, args, &err), RT_OK, "%s", err.msg);
  }
  rt_set_init(out);
  cr_assert_eq(cg_c_get_params(m, out, &err), RT_OK, "%s", err.msg);
  rt_set_free(&init);
}

Test(backend_llvm, jit_and_c_agree_on_three_adam_steps, .timeout = 300) {
  TrainRun r;
  train_setup(&r);
  RtError err;
  CModule *jit = cg_jit_build(&r.p, &err);
  cr_assert_not_null(jit, "%s", err.msg);
  CModule *c = cg_c_build(&r.p, NULL, &err);
  cr_assert_not_null(c, "%s", err.msg);
  RtTensorSet pj, pc;
  train_steps(&r, jit, &pj);
  train_steps(&r, c, &pc);
  cr_assert_eq(pj.count, pc.count);
  cr_assert_gt(pj.count, 4, "parameters and Adam state");
  for (int i = 0; i < pj.count; i++) {
    RtTensor *a = &pj.items[i].t, *b = rt_set_find(&pc, pj.items[i].name);
    cr_assert_not_null(b, "%s", pj.items[i].name);
    int64_t at;
    double e = worst_error(a->data, b->data, rt_tensor_numel(a), &at);
    cr_expect(e <= RTOL, "%s[%lld]: jit %.9g, c %.9g", pj.items[i].name, (long long)at, ((float *)a->data)[at],
              ((float *)b->data)[at]);
  }
  rt_set_free(&pj);
  rt_set_free(&pc);
  cg_c_free(jit);
  cg_c_free(c);
  kir_program_free(&r.p);
  ir_graph_free(&r.tg);
  rt_tensor_free(&r.x);
  rt_tensor_free(&r.y);
  fe_model_free(&r.m);
}

/* --- the support functions ------------------------------------------------------------ */

Test(backend_llvm, load_names_a_missing_tensor, .timeout = 300) {
  Mlp s;
  mlp_setup(&s);
  RtError err;
  CModule *jit = cg_jit_build(&s.p, &err);
  cr_assert_not_null(jit, "%s", err.msg);
  int (*load)(const char *) = (int (*)(const char *))jit->lookup(jit, "mlp_load");
  const char *(*error)(void) = (const char *(*)(void))jit->lookup(jit, "mlp_error");
  cr_assert(load && error);
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/partial.safetensors", dir);
  RtTensorSet partial;
  rt_set_init(&partial);
  for (int i = 0; i < s.params.count; i++) {
    if (!strcmp(s.params.items[i].name, "fc2.bias")) continue;
    RtTensor t = s.params.items[i].t;
    t.data = malloc(rt_tensor_nbytes(&t));
    memcpy(t.data, s.params.items[i].t.data, rt_tensor_nbytes(&t));
    rt_set_add(&partial, s.params.items[i].name, &t, &err);
  }
  cr_assert_eq(rt_safetensors_write(path, &partial, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(load(path), -1);
  cr_expect(strstr(error(), "no tensor 'fc2.bias'") != NULL, "%s", error());
  cr_expect_eq(load("/nonexistent/w.safetensors"), -1);
  cr_expect(strstr(error(), "cannot open the file") != NULL, "%s", error());
  snprintf(path, sizeof path, "%s/full.safetensors", dir);
  cr_assert_eq(rt_safetensors_write(path, &s.params, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(load(path), 0, "%s", error());
  unlink(path);
  snprintf(path, sizeof path, "%s/partial.safetensors", dir);
  unlink(path);
  rmdir(dir);
  rt_set_free(&partial);
  cg_c_free(jit);
  mlp_free(&s);
}

/* Each kernel is its own never-inlined function, taking a pointer per
 * buffer it touches, and the accesses through them carry alias scopes
 * that tell the model's disjoint storage apart (MLP forward: "relu h1"
 * reads fc1's temporary and writes its own; "linear fc1" reads the input,
 * the weight and the bias and writes a temporary). */
static LLVMValueRef kernel_fn(LLVMModuleRef m, const Program *p, const char *what) {
  const Func *f = &p->funcs[0];
  for (int k = 0; k < f->nkernels; k++) {
    if (strcmp(f->kernels[k].what, what)) continue;
    char name[64];
    snprintf(name, sizeof name, "mlp_forward_k%d", k);
    return LLVMGetNamedFunction(m, name);
  }
  return NULL;
}

/* How many loads (which 0) or stores (1) of fn and of its parallel
 * loops' chunk functions (fn's name + "_pJ") carry !alias.scope and
 * !noalias. */
static int scoped_accesses(LLVMContextRef cx, LLVMValueRef fn, int which) {
  unsigned scope = LLVMGetMDKindIDInContext(cx, "alias.scope", 11), noalias = LLVMGetMDKindIDInContext(cx, "noalias", 7);
  const char *name = LLVMGetValueName(fn);
  size_t len = strlen(name);
  int n = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(LLVMGetGlobalParent(fn)); f; f = LLVMGetNextFunction(f)) {
    const char *fname = LLVMGetValueName(f);
    if (f != fn && (strncmp(fname, name, len) || strncmp(fname + len, "_p", 2))) continue;
    for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
      for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i))
        if ((which ? LLVMIsAStoreInst(i) : LLVMIsALoadInst(i)) && LLVMGetMetadata(i, scope) && LLVMGetMetadata(i, noalias)) n++;
  }
  return n;
}

Test(backend_llvm, kernels_are_functions_with_scoped_buffers, .timeout = 300) {
  Mlp s;
  mlp_setup(&s);
  RtError err;
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef m = cg_llvm_build(&s.p, cx, NULL, &err);
  cr_assert(m, "%s", err.msg);
  LLVMValueRef sm = kernel_fn(m, &s.p, "softmax probs"), fc1 = kernel_fn(m, &s.p, "linear fc1"),
               fc2 = kernel_fn(m, &s.p, "linear fc2");
  cr_assert(sm && fc1 && fc2, "no function for the kernel 'softmax probs', 'linear fc1' or 'linear fc2'");
  unsigned noinline = LLVMGetEnumAttributeKindForName("noinline", 8);
  cr_expect(LLVMGetEnumAttributeAtIndex(sm, LLVMAttributeFunctionIndex, noinline), "a kernel function may be inlined");
  int nsyms = s.m.g.nsyms;
  cr_expect_eq(LLVMCountParams(sm), (unsigned)nsyms + 2, "softmax probs: the symbols, then its two buffers");
  cr_expect_eq(LLVMCountParams(fc1), (unsigned)nsyms + 4,
               "linear fc1 (relu h1 its epilogue): the symbols, then its four buffers (x, the weight's panels, bias, h1)");
  /* fc2 reads and writes temporaries (h1, h2), a derived layout and a parameter: all disjoint */
  cr_expect_gt(scoped_accesses(cx, fc2, 0), 0, "linear fc2: its loads are not scoped");
  cr_expect_gt(scoped_accesses(cx, fc2, 1), 0, "linear fc2: its stores are not scoped");
  cr_expect_gt(scoped_accesses(cx, fc1, 0), 0, "linear fc1: its loads are not scoped");
  LLVMDisposeModule(m);
  LLVMContextDispose(cx);
  mlp_free(&s);
}

/* Kernels that differ only in the buffers they touch share one function:
 * in five dense layers of one width (the first four with their ReLUs
 * as epilogues), the three in the middle are one function, called with
 * each layer's own buffers; the JIT of the whole still agrees with the interpreter. */
static const char twin_dl[] = "model twin\n"
                              "input x: f32[N, 16]\n"
                              "l1 = dense(x, 16)\n"
                              "a = relu(l1)\n"
                              "l2 = dense(a, 16)\n"
                              "b = relu(l2)\n"
                              "l3 = dense(b, 16)\n"
                              "c = relu(l3)\n"
                              "l4 = dense(c, 16)\n"
                              "d = relu(l4)\n"
                              "y = dense(d, 4)\n"
                              "output y\n";

/* The function the entry point calls for kernel k (calls are in kernel order). */
static LLVMValueRef callee_of_kernel(LLVMValueRef entry, int k) {
  int n = 0;
  for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(entry); b; b = LLVMGetNextBasicBlock(b))
    for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i)) {
      if (!LLVMIsACallInst(i)) continue;
      LLVMValueRef f = LLVMGetCalledValue(i);
      size_t len;
      const char *name = LLVMGetValueName2(f, &len);
      if (strstr(name, "_forward_k") && n++ == k) return f;
    }
  return NULL;
}

static int defined_kernel_functions(LLVMModuleRef m) {
  int n = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f))
    if (!LLVMIsDeclaration(f) && strstr(LLVMGetValueName(f), "_forward_k") && !strstr(LLVMGetValueName(f), "_p")) n++;
  return n;
}

Test(backend_llvm, identical_kernels_share_one_function, .timeout = 300) {
  Diags d;
  Model m;
  Program p;
  RtError err;
  diag_init(&d, stderr);
  cr_assert_eq(fe_load_string(&m, "twin.dl", twin_dl, &d), 0);
  for (int i = 0; i < m.g.nsyms; i++) m.g.syms[i].max = 8;
  cr_assert_eq(pass_pipeline_infer(&m.g, &p, NULL, &d), 0);
  const Func *f = &p.funcs[0];
  cr_assert_eq(f->nkernels, 5, "a kernel per layer, its relu the epilogue");
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef mod = cg_llvm_build(&p, cx, NULL, &err);
  cr_assert(mod, "%s", err.msg);
  LLVMValueRef entry = LLVMGetNamedFunction(mod, "twin_forward");
  cr_assert_not_null(entry);
  for (int k = 2; k <= 3; k++)
    cr_expect_eq(callee_of_kernel(entry, k), callee_of_kernel(entry, 1), "kernel %d (%s) has a function of its own", k,
                 f->kernels[k].what);
  cr_expect_neq(callee_of_kernel(entry, 0), callee_of_kernel(entry, 1), "l1 reads the input, l2 a temporary");
  cr_expect_eq(defined_kernel_functions(mod), 3);
  LLVMDisposeModule(mod);
  LLVMContextDispose(cx);

  RtTensorSet params;
  rt_set_init(&params);
  cr_assert_eq(ir_params_init(&m.g, 3, &params, &err), RT_OK, "%s", err.msg);
  RtTensor *vals = calloc((size_t)m.g.nnodes, sizeof *vals);
  int x = ir_find_input(&m.g, "x");
  int64_t shape[2] = {5, 16}, sym[IR_MAX_SYMS];
  cr_assert_eq(rt_tensor_alloc(&vals[x], DT_F32, 2, shape, &err), RT_OK);
  for (int i = 0; i < 5 * 16; i++) ((float *)vals[x].data)[i] = (float)((i * 29 % 31) / 31.0 - 0.4);
  for (int i = 0; i < m.g.nnodes; i++)
    if (m.g.nodes[i].op == OP_PARAM) vals[i] = *rt_set_find(&params, m.g.nodes[i].name);
  cr_assert_eq(ir_bind_symbols(&m.g, vals, sym, &err), RT_OK, "%s", err.msg);
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&m.g, vals, sym, &io, &err), RT_OK, "%s", err.msg);
  CModule *jit = cg_jit_build(&p, &err);
  cr_assert_not_null(jit, "%s", err.msg);
  cr_assert_eq(cg_c_set_params(jit, &params, &err), RT_OK, "%s", err.msg);
  float got[5 * 4];
  void *args[2] = {vals[x].data, got};
  cr_assert_eq(f->nargs, 2);
  cr_assert_eq(cg_c_call(jit, "forward", sym, args, &err), RT_OK, "%s", err.msg);
  const float *want = vals[m.g.outputs[0].id].data;
  int64_t at;
  double e = worst_error(got, want, 5 * 4, &at);
  cr_expect(e <= RTOL, "y[%lld]: jit %.9g, interpreter %.9g", (long long)at, got[at], want[at]);
  cg_c_free(jit);
  for (int i = 0; i < m.g.nnodes; i++)
    if (m.g.nodes[i].op != OP_PARAM) rt_tensor_free(&vals[i]);
  free(vals);
  rt_set_free(&params);
  kir_program_free(&p);
  fe_model_free(&m);
}

Test(backend_llvm, a_module_that_does_not_verify_is_an_error) {
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef m = LLVMModuleCreateWithNameInContext("broken", cx);
  LLVMTypeRef i32 = LLVMInt32TypeInContext(cx);
  LLVMValueRef f = LLVMAddFunction(m, "f", LLVMFunctionType(i32, NULL, 0, 0));
  LLVMBuilderRef b = LLVMCreateBuilderInContext(cx);
  LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(cx, f, "entry"));
  LLVMBuildAdd(b, LLVMConstInt(i32, 1, 0), LLVMConstInt(i32, 2, 0), "x"); /* no terminator */
  RtError err;
  cr_expect_neq(cg_llvm_verify(m, &err), RT_OK);
  cr_expect(strstr(err.msg, "internal error:") == err.msg, "%s", err.msg);
  LLVMDisposeBuilder(b);
  LLVMDisposeModule(m);
  LLVMContextDispose(cx);
}

/* --- an object file in a C program ------------------------------------------------------ */

static const char *const program_text =
    "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include \"mlp.h\"\n#include \"tiny.h\"\n"
    "int main(int argc, char **argv) {\n"
    "  static float x[MLP_MAX_N * 784], logits[MLP_MAX_N * 10], probs[MLP_MAX_N * 10];\n"
    "  int n = atoi(argv[2]);\n"
    "  FILE *f;\n"
    "  if (argc != 5) return 2;\n"
    "  if (strcmp(argv[1], \"-\") && mlp_load(argv[1])) { printf(\"%s\\n\", mlp_error()); return 1; }\n"
    "  if (!strcmp(argv[1], \"-\") && (mlp_load(\"w\") != -1 || !strstr(mlp_error(), \"embedded\"))) return 7;\n"
    "  if (mlp_forward(MLP_MAX_N + 1, x, logits, probs) != -1) return 3;\n"
    "  if (!mlp_param(0) || mlp_param(MLP_NUM_TENSORS) || (TINY_NUM_TENSORS && !tiny_param(0))) return 4;\n"
    "  f = fopen(argv[3], \"rb\");\n"
    "  if (!f || fread(x, sizeof(float), (size_t)n * 784, f) != (size_t)n * 784) return 5;\n"
    "  fclose(f);\n"
    "  if (mlp_forward(n, x, logits, probs)) return 6;\n"
    "  f = fopen(argv[4], \"wb\");\n"
    "  fwrite(logits, sizeof(float), (size_t)n * 10, f);\n"
    "  fwrite(probs, sizeof(float), (size_t)n * 10, f);\n"
    "  fclose(f);\n"
    "  return 0;\n"
    "}\n";

static int shell(const char *fmt, const char *a, const char *b, const char *c) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, fmt, a, b, c);
  int st = system(cmd);
  return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs dir/prog with weights (or "-": embedded) and checks its outputs
 * against the interpreter's. */
static void run_program(Mlp *s, const char *dir, const char *weights) {
  char run[2600], path[700];
  snprintf(run, sizeof run, "cd '%s' && ./prog '%s' %d x.bin y.bin", dir, weights, MLP_N);
  int st = system(run);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s exited with %d", run, WEXITSTATUS(st));
  snprintf(path, sizeof path, "%s/y.bin", dir);
  size_t len = 0;
  float *y = (float *)tu_read_file(path, &len);
  cr_assert(y && len == sizeof(float) * MLP_N * 20);
  const Graph *g = &s->m.g;
  for (int o = 0; o < 2; o++) {
    const RtTensor *want = &s->vals[g->outputs[ir_find_output(g, o ? "probs" : "logits")].id];
    int64_t at;
    double e = worst_error(y + o * MLP_N * 10, want->data, MLP_N * 10, &at);
    cr_expect(e <= RTOL, "%s, output %d [%lld]: object %.9g, interpreter %.9g", weights, o, (long long)at,
              y[o * MLP_N * 10 + at], ((float *)want->data)[at]);
  }
  free(y);
}

Test(backend_llvm, object_file_links_into_a_c_program, .timeout = 300) {
  Mlp s;
  mlp_setup(&s);
  RtError err;
  char dir[512], path[700];
  snprintf(dir, sizeof dir, "%s", tu_scratch_dir());
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  cr_assert_eq(rt_safetensors_write(path, &s.params, &err), RT_OK, "%s", err.msg);
  snprintf(path, sizeof path, "%s/x.bin", dir);
  FILE *f = fopen(path, "wb");
  fwrite(s.vals[ir_find_input(&s.m.g, "x")].data, sizeof(float), MLP_N * 784, f);
  fclose(f);
  snprintf(path, sizeof path, "%s/prog.c", dir);
  f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(program_text, f);
  fclose(f);
  cr_assert_eq(shell("'%s' '%s' --emit=obj --max N=16 -o '%s/mlp.o'", DLC_EXE, DLC_SOURCE_DIR "/samples/mlp.dl", dir), 0);
  cr_assert_eq(shell("'%s' '%s' --emit=obj -o '%s/tiny.o'", DLC_EXE, FIXTURE("train/tiny.dl"), dir), 0);
  cr_assert_eq(shell("cd '%s' && cc -std=c99 -Wall -Werror -o prog prog.c mlp.o tiny.o -lm%s%s", dir, "", ""), 0,
               "two models' objects link into one program, without LLVM");
  run_program(&s, dir, "w.safetensors");
  /* the same with the weights compiled in */
  cr_assert_eq(shell("cd '%s' && '%s' '%s' --emit=obj --max N=16 --embed-params w.safetensors -o mlp.o", dir, DLC_EXE,
                     DLC_SOURCE_DIR "/samples/mlp.dl"), 0);
  cr_assert_eq(shell("cd '%s' && cc -std=c99 -Wall -Werror -o prog prog.c mlp.o tiny.o -lm%s%s", dir, "", ""), 0);
  run_program(&s, dir, "-");
  shell("rm -rf '%s'%s%s", dir, "", "");
  mlp_free(&s);
}

/* A simd loop LLVM cannot vectorise (a recurrence, not a reduction; 10000
 * steps, so not a cold kernel): the JIT still runs it, and the
 * optimiser's remark and warning about it stay in its context
 * (cg_llvm_context) instead of reaching the user's stderr. */
Test(backend_llvm, an_unvectorisable_simd_loop_is_no_news_on_stderr, .init = cr_redirect_stderr) {
  HandKit k;
  hk_init(&k);
  Program *p = &k.p;
  Expr *v = kx_local(p, 0, DT_F32);
  Stmt *body = ks_local(p, 0, DT_F32, kx_f(p, 0));
  Expr *xi = kx_load(p, k.in, kx_bin(p, BIN_MOD, kx_var(p, 0), kx_i(p, 8)));
  Stmt *l = ks_loop(p, 0, kx_i(p, 10000), ks_assign(p, 0, kx_bin(p, BIN_ADD, kx_bin(p, BIN_MUL, v, xi), kx_f(p, 1))));
  cr_assert_eq(sched_mark(l, LOOP_SIMD), 0);
  ks_append(&body, l);
  ks_append(&body, ks_store(p, k.out, kx_i(p, 0), kx_local(p, 0, DT_F32)));
  hk_kernel(&k, body, 1, 1);
  cr_assert_eq(kir_verify(p, &k.d), 0);
  RtError err;
  CModule *m = cg_jit_build(p, &err);
  cr_assert_not_null(m, "%s", err.msg);
  float x[8] = {0.5f, 0.25f, 1, -1, 0.25f, 0.5f, 1, -0.5f}, y[8] = {0}, want = 0; /* products exact */
  for (int i = 0; i < 10000; i++) want = want * x[i % 8] + 1;
  void *args[2] = {x, y};
  cr_assert_eq(cg_c_call(m, "forward", NULL, args, &err), RT_OK, "%s", err.msg);
  cr_expect(y[0] == want, "%.9g, want %.9g", y[0], want);
  cg_c_free(m);
  hk_free(&k);
  fflush(stderr);
  cr_expect_stderr_eq_str("");
}
