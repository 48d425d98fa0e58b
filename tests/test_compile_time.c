/*
 * test_compile_time.c — the structure that keeps the JIT compile cheap,
 * checked in the optimised LLVM module of an MLP's training step (the
 * module the JIT compiles): the loops of a kernel that runs a handful of
 * statements a call (the loss, over a batch of 8 and 2 classes) carry
 * the metadata that keeps the loop vectoriser and the unroller off them,
 * and stay scalar, while the first layer's matrix product (8 x 784 x
 * 128) has no such loop and computes on vectors.  Time itself is not
 * checked here: bench/compile_times.sh and DLC_TIME_PHASES measure it.
 */
#include <criterion/criterion.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <string.h>
#include <unistd.h>

#include "codegen/cg_llvm.h"
#include "codegen/emit_common.h"
#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "tests/memlog.h"

static const char *const model =
    "model mlp\ninput x: f32[N, 784]\n"
    "z = dense(x, 128) as fc1\nh = relu(z)\n"
    "logits = dense(h, 2) as head\noutput logits\n"
    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n"
    "  optimizer = sgd(lr=0.1)\n  batch = 8\n}\n";

/* The body of function name in the module text ir (malloc'd). */
static char *function_body(const char *ir, const char *name) {
  char head[256];
  snprintf(head, sizeof head, "@%s(", name);
  const char *d = ir;
  while ((d = strstr(d, head))) { /* its definition, not a call */
    const char *line = d;
    while (line > ir && line[-1] != '\n') line--;
    if (!strncmp(line, "define ", 7)) break;
    d++;
  }
  cr_assert(d, "no function %s in the module", name);
  const char *open = strchr(d, '{'), *close = strstr(d, "\n}\n");
  cr_assert(open && close, "no body for %s", name);
  return strndup(open, (size_t)(close - open));
}

/* "!N" when the module text ir defines !N = !{WHAT}, else NULL. */
static char *node_id(const char *ir, const char *what, char *id, size_t n) {
  char def[96];
  snprintf(def, sizeof def, " = !{%s}\n", what);
  const char *u = strstr(ir, def);
  if (!u) return NULL;
  const char *line = u;
  while (line > ir && line[-1] != '\n') line--;
  snprintf(id, n, "%.*s", (int)(u - line), line);
  return id;
}

/* Whether the line at d lists node id (followed by , or }). */
static int lists(const char *d, const char *id) {
  const char *eol = strchr(d + 1, '\n');
  char ref[40];
  for (const char *end = ",}"; *end; end++) {
    snprintf(ref, sizeof ref, "%s%c", id, *end);
    const char *r = strstr(d, ref);
    if (r && r < eol) return 1;
  }
  return 0;
}

/* How many of body's loops are cold: their loop ID lists the nodes that
 * set the vectoriser's width and interleaving to 1 and disable unrolling
 * (cold_loop in emit_llvm.c). */
static int cold_loops(const char *ir, const char *body) {
  char w[32], ic[32], u[32];
  if (!node_id(ir, "!\"llvm.loop.vectorize.width\", i32 1", w, sizeof w) ||
      !node_id(ir, "!\"llvm.loop.interleave.count\", i32 1", ic, sizeof ic) ||
      !node_id(ir, "!\"llvm.loop.unroll.disable\"", u, sizeof u))
    return 0;
  int n = 0;
  for (const char *p = body; (p = strstr(p, "!llvm.loop !")); p++) {
    char def[40];
    snprintf(def, sizeof def, "\n!%d = distinct !{", atoi(p + strlen("!llvm.loop !")));
    const char *d = strstr(ir, def);
    cr_assert(d, "no loop ID %s", def + 1);
    n += lists(d, w) && lists(d, ic) && lists(d, u);
  }
  return n;
}

/* model's training program (in t, from m), for the interpreter: compiled by the caller. */
static void train_program(Model *m, Trainer *t, const char *text, Log *log) {
  cr_assert_eq(fe_load_string(m, "net.dl", text, &log->d), 0, "%s", log_text(log));
  TrainConfig cfg;
  cr_assert_eq(trainer_config(m, &cfg, &log->d), 0, "%s", log_text(log));
  cfg.backend = BACKEND_INTERP;
  cr_assert_eq(trainer_init(t, m, &cfg, NULL, &log->d), 0, "%s", log_text(log));
  cr_assert_eq(trainer_program(t), 0, "%s", log_text(log));
}

/* The same, and its train_step. */
static const Func *step_program(Trainer *t, Model *m, Log *log, const char *text) {
  train_program(m, t, text, log);
  for (int f = 0; f < t->prog.nfuncs; f++)
    if (!strcmp(t->prog.funcs[f].name, "train_step")) return &t->prog.funcs[f];
  cr_assert_fail("no train_step");
  return NULL;
}

/* p as LLVM's optimised module text (malloc'd). */
static char *module_text(const Program *p) {
  char *ir = NULL;
  size_t len = 0;
  RtError err;
  EmitOpts eo = {0};
  cr_assert_eq(cg_emit_llvm(p, &eo, CG_LLVM_IR, &ir, &len, &err), RT_OK, "%s", err.msg);
  return ir;
}

/* The next function defined in a module's text after *at whose name is
 * prefix ("@P_F_kN": a kernel) or starts with prefix and "_" (its
 * parallel chunks): its name, without the "@", in fname; 0 when none is
 * left. */
static int next_kernel_function(const char **at, const char *prefix, char *fname, size_t n) {
  size_t np = strlen(prefix);
  for (const char *d = *at; (d = strstr(d, "\ndefine ")); d++) {
    const char *c = strstr(d, prefix), *eol = strchr(d + 1, '\n');
    if (!c || (eol && c > eol) || (c[np] != '(' && c[np] != '_')) continue;
    snprintf(fname, n, "%.*s", (int)strcspn(c + 1, "("), c + 1);
    *at = d + 1;
    return 1;
  }
  return 0;
}

Test(compile_time, small_kernels_stay_scalar_and_matrix_products_vector_code, .timeout = 120) {
  Log log;
  log_open(&log);
  Model m;
  Trainer t;
  const Func *step = step_program(&t, &m, &log, model);
  /* the first kernel computes fc1's product; the loss is cold */
  int hot = 0, cold = -1;
  for (int k = 0; k < step->nkernels; k++)
    if (cold < 0 && strstr(step->kernels[k].what, "cross_entropy")) cold = k;
  cr_assert(strstr(step->kernels[hot].what, "linear"), "the first kernel is %s", step->kernels[hot].what);
  cr_assert(cold >= 0, "no cross_entropy kernel");
  char *ir = module_text(&t.prog);
  char name[128];
  snprintf(name, sizeof name, "mlp_train_step_k%d", cold);
  char *body = function_body(ir, name);
  cr_expect(cold_loops(ir, body) > 0, "%s (%s) has no cold loop:\n%s", name, step->kernels[cold].what, body);
  cr_expect(!strstr(body, "x float>"), "%s (%s) is vectorised:\n%s", name, step->kernels[cold].what, body);
  free(body);
  /* fc1's product runs in its own function, or in a chunk function of its parallel loop */
  snprintf(name, sizeof name, "@mlp_train_step_k%d", hot);
  int functions = 0, vector = 0;
  char cname[128];
  for (const char *at = ir; next_kernel_function(&at, name, cname, sizeof cname);) {
    body = function_body(ir, cname);
    cr_expect_eq(cold_loops(ir, body), 0, "%s (%s) has cold loops", cname, step->kernels[hot].what);
    vector |= strstr(body, "x float>") != NULL;
    functions++;
    free(body);
  }
  cr_expect_gt(functions, 0, "no function of fc1's product in the module");
  cr_expect(vector, "fc1's product computes on no vector");
  free(ir);
  trainer_free(&t);
  fe_model_free(&m);
  log_close(&log);
}

/* A loss over 1000 classes at batch 64 is no cold kernel, but its loops
 * call exp and log: LLVM, with no vector math library, would compute a
 * vector of those by a call per lane, so they stay scalar loops (with
 * cold_loop's metadata) and no function of the kernel computes on a
 * vector; the matrix product before it still does. */
Test(compile_time, loops_calling_math_functions_stay_scalar, .timeout = 120) {
  Log log;
  log_open(&log);
  Model m;
  const char *wide = "model wide\ninput x: f32[N, 64]\nlogits = dense(x, 1000) as head\noutput logits\n"
                     "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.1)\n"
                     "  batch = 64\n}\n";
  Trainer t;
  const Func *step = step_program(&t, &m, &log, wide);
  int loss = -1;
  for (int k = 0; k < step->nkernels && loss < 0; k++)
    if (strstr(step->kernels[k].what, "cross_entropy")) loss = k;
  cr_assert(loss >= 0, "no cross_entropy kernel");
  cr_assert(cg_block_work(&t.prog, step->kernels[loss].body) > CG_COLD_WORK, "the loss is a cold kernel");
  char *ir = module_text(&t.prog);
  char name[128];
  int cold = 0, vector = 0, functions = 0;
  snprintf(name, sizeof name, "@wide_train_step_k%d", loss);
  for (const char *d = ir; (d = strstr(d, "\ndefine ")); d++) { /* the kernel's function and its chunk functions */
    const char *c = strstr(d, name), *eol = strchr(d + 1, '\n');
    if (!c || c > eol || (c[strlen(name)] != '(' && c[strlen(name)] != '_')) continue;
    char fname[128];
    snprintf(fname, sizeof fname, "%.*s", (int)strcspn(c + 1, "("), c + 1);
    char *body = function_body(ir, fname);
    cold += cold_loops(ir, body);
    vector |= strstr(body, "x float>") != NULL;
    functions++;
    free(body);
  }
  cr_expect(functions > 0, "no function of kernel %d", loss);
  cr_expect(cold > 0, "the loss's loops have no cold_loop metadata");
  cr_expect(!vector, "the loss computes on vectors");
  cr_expect(strstr(ir, "@llvm.exp.f32") != NULL || strstr(ir, "@expf") != NULL, "no scalar exp in the module");
  cr_expect(strstr(ir, "@llvm.exp.v") == NULL, "a vector exp in the module");
  free(ir);
  trainer_free(&t);
  fe_model_free(&m);
  log_close(&log);
}

static const char *const convnet =
    "model convnet\ninput x: f32[N, 1, 12, 12]\n"
    "c1 = conv2d(x, 4, 3, padding=1)\np1 = max_pool2d(relu(c1), 2)\n"
    "c2 = conv2d(p1, 8, 3)\nf = flatten(relu(c2))\n"
    "h = dense(f, 16) as fc1\nlogits = dense(relu(h), 3) as head\noutput logits\n"
    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n"
    "  optimizer = adam(lr=0.01)\n  batch = 8\n}\n";

/* Whether v is a definition that a part may copy (cg_llvm_partition keeps it local). */
static int local_value(LLVMValueRef v) {
  LLVMLinkage l = LLVMGetLinkage(v);
  return l == LLVMInternalLinkage || l == LLVMPrivateLinkage;
}

Test(compile_time, parts_define_each_function_once, .timeout = 120) {
  Log log;
  log_open(&log);
  Model m;
  Trainer t;
  train_program(&m, &t, convnet, &log);
  RtError err;
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef mod = cg_llvm_build(&t.prog, cx, NULL, &err);
  cr_assert(mod, "%s", err.msg);
  int nfuncs = 0, ndefs = 0, nvars = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) nfuncs++, ndefs += !LLVMIsDeclaration(f);
  int *part_of = calloc((size_t)nfuncs, sizeof *part_of), *again = calloc((size_t)nfuncs, sizeof *again);
  cr_assert_eq(cg_llvm_partition(mod, CG_JIT_PARTS, part_of), ndefs);
  cr_assert_gt(ndefs, CG_JIT_PARTS, "%d functions", ndefs);
  for (LLVMValueRef v = LLVMGetFirstGlobal(mod); v; v = LLVMGetNextGlobal(v))
    nvars += !LLVMIsDeclaration(v) && !local_value(v);
  cr_assert_gt(nvars, 0);
  LLVMMemoryBufferRef bc = LLVMWriteBitcodeToMemoryBuffer(mod);
  char **names = calloc((size_t)ndefs, sizeof *names);
  int k = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
    if (!LLVMIsDeclaration(f)) names[k++] = strdup(LLVMGetValueName(f));
  /* the same split for the same module */
  LLVMModuleRef mod2 = cg_llvm_build(&t.prog, cx, NULL, &err);
  cr_assert(mod2, "%s", err.msg);
  cr_assert_eq(cg_llvm_partition(mod2, CG_JIT_PARTS, again), ndefs);
  cr_expect_eq(memcmp(part_of, again, sizeof *part_of * (size_t)ndefs), 0, "a second split differs");
  LLVMDisposeModule(mod2);
  LLVMDisposeModule(mod);
  int *defined = calloc((size_t)ndefs, sizeof *defined);
  for (int part = 0; part < CG_JIT_PARTS; part++) {
    LLVMContextRef pcx = LLVMContextCreate();
    LLVMModuleRef pm = NULL;
    /* read lazily, as the JIT does (the module owns the range's buffer) */
    LLVMMemoryBufferRef range = LLVMCreateMemoryBufferWithMemoryRange(LLVMGetBufferStart(bc), LLVMGetBufferSize(bc), "bc", 0);
    cr_assert_eq(LLVMGetBitcodeModuleInContext2(pcx, range, &pm), 0);
    cg_llvm_keep_part(pm, part_of, part);
    cr_expect_eq(cg_llvm_verify(pm, &err), RT_OK, "part %d: %s", part, err.msg);
    int fns = 0, vars = 0;
    for (LLVMValueRef f = LLVMGetFirstFunction(pm); f; f = LLVMGetNextFunction(f)) {
      if (LLVMIsDeclaration(f)) continue;
      fns++;
      const char *name = LLVMGetValueName(f);
      cr_expect(LLVMGetFirstBasicBlock(f) != NULL, "part %d defines %s but has not read its body", part, name);
      int i = 0;
      while (i < ndefs && strcmp(names[i], name)) i++;
      cr_assert_lt(i, ndefs, "part %d defines %s, not in the module", part, name);
      cr_expect_eq(part_of[i], part, "%s defined in part %d, assigned to %d", name, part, part_of[i]);
      defined[i]++;
    }
    for (LLVMValueRef v = LLVMGetFirstGlobal(pm); v; v = LLVMGetNextGlobal(v))
      vars += !LLVMIsDeclaration(v) && !local_value(v);
    cr_expect_gt(fns, 0, "part %d is empty", part);
    cr_expect_eq(vars, part ? 0 : nvars, "part %d defines %d variables of %d", part, vars, nvars);
    LLVMDisposeModule(pm);
    LLVMContextDispose(pcx);
  }
  for (int i = 0; i < ndefs; i++) {
    cr_expect_eq(defined[i], 1, "%s defined in %d parts", names[i], defined[i]);
    free(names[i]);
  }
  free(names), free(defined), free(part_of), free(again);
  LLVMDisposeMemoryBuffer(bc);
  LLVMContextDispose(cx);
  trainer_free(&t);
  fe_model_free(&m);
  log_close(&log);
}

/* The weights after three steps of convnet on the JIT compiled by `threads` threads, in out. */
static int64_t train_jit(int threads, float *out, int64_t cap) {
  Log log;
  log_open(&log);
  Model m;
  cr_assert_eq(fe_load_string(&m, "convnet.dl", convnet, &log.d), 0, "%s", log_text(&log));
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &log.d), 0, "%s", log_text(&log));
  cfg.backend = BACKEND_JIT;
  cg_jit_set_threads(threads);
  Trainer t;
  cr_assert_eq(trainer_init(&t, &m, &cfg, NULL, &log.d), 0, "%s", log_text(&log));
  cg_jit_set_threads(0);
  float x[8 * 144];
  int64_t y[8], at = 0;
  for (int i = 0; i < 8 * 144; i++) x[i] = (float)((i * 37 % 101) - 50) / 50.0f;
  for (int i = 0; i < 8; i++) y[i] = i % 3;
  for (int s = 0; s < 3; s++) {
    double loss;
    cr_assert_eq(trainer_step(&t, 8, x, y, 0.01, &loss, NULL), 0);
    out[at++] = (float)loss;
  }
  cr_assert_eq(trainer_sync(&t), 0);
  static const char *const names[] = {"c1.weight", "c2.weight", "fc1.weight", "head.weight", "head.bias"};
  for (int k = 0; k < 5; k++) {
    const RtTensor *p = rt_set_find(&t.tensors, names[k]);
    cr_assert(p, "no %s", names[k]);
    cr_assert_leq(at + rt_tensor_numel(p), cap);
    memcpy(out + at, p->data, rt_tensor_nbytes(p));
    at += rt_tensor_numel(p);
  }
  trainer_free(&t);
  fe_model_free(&m);
  log_close(&log);
  return at;
}

Test(compile_time, one_thread_and_two_compile_the_same_step, .timeout = 120) {
  enum { CAP = 8192 };
  float *a = calloc(CAP, sizeof *a), *b = calloc(CAP, sizeof *b);
  int64_t na = train_jit(1, a, CAP), nb = train_jit(2, b, CAP);
  cr_assert_eq(na, nb);
  cr_expect_eq(memcmp(a, b, sizeof *a * (size_t)na), 0, "the weights differ between one compile thread and two");
  cr_expect(a[2] != a[0], "the loss did not move: %g %g", a[0], a[2]);
  free(a), free(b);
}

/* How many lines of the perf map at path name a function ending in suffix
 * (exactly, or followed by _kN for "_k"), each checked for a nonzero
 * address and size; -1 when there is no map. */
static int map_entries(const char *path, const char *suffix) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  unsigned long long addr, size;
  char name[256];
  int n = 0;
  while (fscanf(f, "%llx %llx %255s", &addr, &size, name) == 3) {
    cr_expect(addr && size, "%s at %llx, %llu bytes", name, addr, size);
    const char *s = strstr(name, suffix);
    if (s && (!s[strlen(suffix)] || !strcmp(suffix, "_train_step_k"))) n++;
  }
  fclose(f);
  return n;
}

Test(compile_time, perf_map_names_the_kernels_when_asked, .timeout = 120) {
  enum { CAP = 8192 };
  char path[64];
  snprintf(path, sizeof path, "/tmp/perf-%ld.map", (long)getpid());
  remove(path);
  float *a = calloc(CAP, sizeof *a);
  train_jit(1, a, CAP);
  cr_expect_eq(map_entries(path, "_train_step"), -1, "a perf map without DLC_PERF_MAP");
  setenv("DLC_PERF_MAP", "1", 1);
  train_jit(1, a, CAP);
  unsetenv("DLC_PERF_MAP");
  cr_expect_eq(map_entries(path, "convnet_train_step"), 1, "the entry point is not in the map once");
  int kernels = map_entries(path, "_train_step_k");
  cr_expect_geq(kernels, 8, "only %d kernels of the training step in the map", kernels);
  remove(path);
  free(a);
}

/* How many instructions of the assembly text asm_text start with
 * mnemonic in the functions whose label starts with prefix (the kernel
 * and its parallel chunks). */
static int count_in(const char *asm_text, const char *prefix, const char *mnemonic) {
  int n = 0, in = 0;
  size_t np = strlen(prefix);
  for (const char *l = asm_text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    if (*l != ' ' && *l != '\t' && *l != '.' && strchr(l, ':') && strchr(l, ':') < strchr(l, '\n'))
      in = !strncmp(l, prefix, np) && (l[np] == ':' || l[np] == '_');
    const char *w = l + strspn(l, " \t");
    if (in && !strncmp(w, mnemonic, strlen(mnemonic))) n++;
  }
  return n;
}

/* The x86 cmov converter is off (cg_llvm_init): the selects of
 * max_pool2d's gradient, which keep the first maximum's index for each
 * tap after the first of its 2x2 windows, stay conditional moves (on
 * this machine: 4 cmovs and 5 conditional jumps; with the converter, 1
 * and 8), unless LLVM vectorised the kernel, when they are blends or
 * packed compares and masked moves. */
Test(compile_time, max_pool_gradient_selects_stay_branch_free, .timeout = 120) {
  char *triple = LLVMGetDefaultTargetTriple();
  int x86 = !strncmp(triple, "x86_64", 6);
  LLVMDisposeMessage(triple);
  if (!x86) cr_skip_test("the cmov converter is x86's");
  Log log;
  log_open(&log);
  Model m;
  Trainer t;
  train_program(&m, &t, convnet, &log);
  const Func *f = NULL;
  for (int i = 0; i < t.prog.nfuncs; i++)
    if (!strcmp(t.prog.funcs[i].name, "train_step")) f = &t.prog.funcs[i];
  cr_assert(f);
  int k = 0;
  while (k < f->nkernels && f->kernels[k].op != OP_MAX_POOL2D_GRAD) k++;
  cr_assert_lt(k, f->nkernels, "no max_pool2d_grad kernel");
  RtError err;
  LLVMContextRef cx = LLVMContextCreate();
  LLVMModuleRef mod = cg_llvm_build(&t.prog, cx, NULL, &err);
  cr_assert(mod, "%s", err.msg);
  LLVMTargetMachineRef tm = cg_llvm_host_machine(LLVMRelocPIC, &err);
  cr_assert(tm, "%s", err.msg);
  cr_assert_eq(cg_llvm_optimize(mod, tm, &err), RT_OK, "%s", err.msg);
  char *msg = NULL;
  LLVMMemoryBufferRef buf = NULL;
  cr_assert_eq(LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &msg, &buf), 0, "%s", msg);
  char *text = strndup(LLVMGetBufferStart(buf), LLVMGetBufferSize(buf)), prefix[64];
  snprintf(prefix, sizeof prefix, "convnet_train_step_k%d", k);
  cr_assert(strstr(text, prefix), "no %s in the assembly", prefix);
  int cmovs = count_in(text, prefix, "cmov"), blends = count_in(text, prefix, "vpblendm") + count_in(text, prefix, "vblendv");
  /* vectorised over f32 lanes, a select is a packed compare into a mask and a masked move */
  blends += count_in(text, prefix, "vblendmps") + count_in(text, prefix, "vcmpltps") + count_in(text, prefix, "vcmpnleps");
  cr_expect(cmovs >= 3 || blends > 0, "%s has %d conditional moves for 3 index selects: they became branches", prefix, cmovs);
  free(text);
  LLVMDisposeMemoryBuffer(buf);
  LLVMDisposeTargetMachine(tm);
  LLVMDisposeModule(mod);
  LLVMContextDispose(cx);
  trainer_free(&t);
  fe_model_free(&m);
  log_close(&log);
}

/* What the LLVM functions of the first kernel of op in net's training step
 * (module prefix) hold: how many there are, how many compute on vectors of 4 lanes or
 * more, how many contain text. */
typedef struct KernelFns {
  int k, functions, vector, with_text;
} KernelFns;

static KernelFns kernel_functions(const char *net, const char *prefix, OpKind op, const char *text) {
  Log log;
  log_open(&log);
  Model m;
  Trainer t;
  const Func *step = step_program(&t, &m, &log, net);
  KernelFns r = {0, 0, 0, 0};
  while (r.k < step->nkernels && step->kernels[r.k].op != op) r.k++;
  cr_assert_lt(r.k, step->nkernels, "no kernel of op %d", (int)op);
  char *ir = module_text(&t.prog), name[128], fname[128];
  snprintf(name, sizeof name, "@%s_train_step_k%d", prefix, r.k);
  for (const char *at = ir; next_kernel_function(&at, name, fname, sizeof fname);) {
    char *body = function_body(ir, fname);
    r.functions++;
    r.vector += strstr(body, "<4 x float>") || strstr(body, "<8 x float>") || strstr(body, "<16 x float>");
    r.with_text += strstr(body, text) != NULL;
    free(body);
  }
  cr_expect_gt(r.functions, 0, "no function of kernel %d in the module", r.k);
  free(ir);
  trainer_free(&t);
  fe_model_free(&m);
  log_close(&log);
  return r;
}

/* The pipeline (CG_LLVM_PIPELINE) unrolls small constant loops fully
 * before it vectorises: a max pool gradient's loop over its windows is a
 * simd loop around the 2 x 2 taps of each window, which the loop
 * vectoriser takes only once the taps are straight code.  At batch 64
 * the kernel is hot, and some function of it computes on vectors. */
Test(compile_time, pool_gradient_windows_vectorise_after_the_taps_unroll, .timeout = 120) {
  static const char *const net =
      "model pooled\ninput x: f32[N, 1, 28, 28]\n"
      "c1 = conv2d(x, 6, 5, padding=2)\np1 = max_pool2d(relu(c1), 2)\n"
      "logits = dense(flatten(p1), 10) as head\noutput logits\n"
      "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n"
      "  optimizer = sgd(lr=0.01)\n  batch = 64\n}\n";
  KernelFns r = kernel_functions(net, "pooled", OP_MAX_POOL2D_GRAD, "<4 x float>");
  cr_expect_gt(r.vector, 0, "no function of the max_pool2d_grad kernel (k%d) computes on vectors of 4 lanes or more", r.k);
}

/* A simd loop is not unrolled before the loop vectoriser sees it
 * (simd_loop in emit_llvm.c): the 5 output columns of LeNet-5's second
 * pool, unrolled, were turned by the SLP vectoriser into gathers of every
 * second element, 4x the time of the vectorised loop.  The kernel's
 * functions compute on vectors and gather nothing. */
Test(compile_time, short_pool_rows_vectorise_without_gathers, .timeout = 120) {
  static const char *const net =
      "model pooled\ninput x: f32[N, 6, 10, 10]\n"
      "c = conv2d(x, 16, 1)\np = max_pool2d(relu(c), 2)\n"
      "logits = dense(flatten(p), 10) as head\noutput logits\n"
      "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n"
      "  optimizer = sgd(lr=0.01)\n  batch = 64\n}\n";
  KernelFns r = kernel_functions(net, "pooled", OP_MAX_POOL2D, "masked.gather");
  cr_expect_gt(r.vector, 0, "no function of the max_pool2d kernel (k%d) computes on vectors of 4 lanes or more", r.k);
  cr_expect_eq(r.with_text, 0, "%d functions of the max_pool2d kernel (k%d) gather", r.with_text, r.k);
}
