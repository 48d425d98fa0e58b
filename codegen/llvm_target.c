/*
 * llvm_target.c — the host target, the optimisation pipeline
 * (CG_LLVM_PIPELINE), the module as text or an object file
 * (cg_emit_llvm), and the parts of a module the JIT compiles in parallel.
 * emit_llvm.c builds the module.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen/cg_llvm.h"
#include "codegen/emit_common.h"

/* --- the host target, optimisation, output ---------------------------------------- */

void cg_llvm_init(void) {
  static int done;
  if (done) return;
  LLVMInitializeNativeTarget();
  LLVMInitializeNativeAsmPrinter();
  LLVMInitializeNativeAsmParser();
  /* x86's cmov converter turns the selects of a loop it judges
   * predictable into branches.  max_pool2d's gradient keeps the first
   * maximum's index with a select per tap, and on ReLU's output (ties of
   * zeros, in no order a predictor learns) those branches mispredict:
   * LeNet-5's JIT training went from about 23.4k to 30k samples/s with
   * the converter off, the MLP's unchanged.  The option exists only when
   * the x86 target does (an unknown option would end the process). */
  char *triple = LLVMGetDefaultTargetTriple();
  if (!strncmp(triple, "x86_64", 6) || (triple[0] == 'i' && !strncmp(triple + 2, "86", 2))) {
    static const char *const argv[] = {"dlc", "-x86-cmov-converter=false"};
    LLVMParseCommandLineOptions(2, argv, NULL);
  }
  LLVMDisposeMessage(triple);
  done = 1;
}

LLVMTargetMachineRef cg_llvm_host_machine(LLVMRelocMode reloc, RtError *err) {
  cg_llvm_init();
  char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
  LLVMTargetRef target;
  LLVMTargetMachineRef tm = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
    rt_fail(err, RT_ERR_FORMAT, "internal error: no LLVM target for %s: %s", triple, msg ? msg : "");
  } else {
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    tm = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelAggressive, reloc, LLVMCodeModelDefault);
    if (!tm) rt_fail(err, RT_ERR_FORMAT, "internal error: cannot make a target machine for %s (%s)", triple, cpu);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
  }
  LLVMDisposeMessage(msg);
  LLVMDisposeMessage(triple);
  return tm;
}

RtStatus cg_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, RtError *err) {
  char *triple = LLVMGetTargetMachineTriple(tm);
  LLVMSetTarget(m, triple);
  LLVMDisposeMessage(triple);
  LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
  char *layout = LLVMCopyStringRepOfTargetData(td);
  LLVMSetDataLayout(m, layout);
  LLVMDisposeMessage(layout);
  LLVMDisposeTargetData(td);
  double t0 = ir_phase_start();
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(m, CG_LLVM_PIPELINE, tm, opts);
  LLVMDisposePassBuilderOptions(opts);
  if (e) return cg_llvm_fail(err, e, "the LLVM optimiser failed");
  ir_phase_end("llvm-optimise", t0);
  return cg_llvm_verify(m, err);
}

/* The object file for m, emitted from a clone (emission changes the module). */
static RtStatus object_file(LLVMModuleRef m, LLVMTargetMachineRef tm, char **data, size_t *len, RtError *err) {
  double t0 = ir_phase_start();
  LLVMModuleRef clone = LLVMCloneModule(m);
  LLVMMemoryBufferRef mb = NULL;
  char *msg = NULL;
  RtStatus st = RT_OK;
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, clone, LLVMObjectFile, &msg, &mb)) {
    st = rt_fail(err, RT_ERR_FORMAT, "internal error: cannot emit an object file: %.400s", msg ? msg : "");
  } else {
    *len = LLVMGetBufferSize(mb);
    *data = rt_malloc(*len + 1);
    if (!*data) st = rt_fail(err, RT_ERR_NOMEM, "out of memory");
    else memcpy(*data, LLVMGetBufferStart(mb), *len);
    LLVMDisposeMemoryBuffer(mb);
  }
  LLVMDisposeMessage(msg);
  LLVMDisposeModule(clone);
  ir_phase_end("llvm-codegen", t0);
  return st;
}

static void quiet_diagnostics(LLVMDiagnosticInfoRef di, void *ctx) {
  (void)ctx;
  if (LLVMGetDiagInfoSeverity(di) != LLVMDSError) return;
  char *msg = LLVMGetDiagInfoDescription(di);
  fprintf(stderr, "dlc: LLVM: %s\n", msg);
  LLVMDisposeMessage(msg);
}

LLVMContextRef cg_llvm_context(void) {
  LLVMContextRef cx = LLVMContextCreate();
  LLVMContextSetDiagnosticHandler(cx, quiet_diagnostics, NULL);
  return cx;
}

RtStatus cg_emit_llvm(const Program *p, const EmitOpts *o, CgLlvmOutput what, char **data, size_t *len, RtError *err) {
  *data = NULL, *len = 0;
  LLVMTargetMachineRef tm = cg_llvm_host_machine(LLVMRelocPIC, err);
  if (!tm) return RT_ERR_FORMAT;
  LLVMContextRef cx = cg_llvm_context();
  RtOomScope oom;
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) { /* out of memory building the module (disposed there) */
    LLVMContextDispose(cx), LLVMDisposeTargetMachine(tm);
    rt_oom();
  }
  LLVMModuleRef m = cg_llvm_build(p, cx, o, err);
  rt_oom_leave(&oom);
  RtStatus st = m ? cg_llvm_optimize(m, tm, err) : RT_ERR_FORMAT;
  if (!st && what == CG_LLVM_OBJ) {
    st = object_file(m, tm, data, len, err);
  } else if (!st) {
    char *text = LLVMPrintModuleToString(m);
    *len = strlen(text);
    *data = rt_strdup(text);
    LLVMDisposeMessage(text);
    if (!*data) st = rt_fail(err, RT_ERR_NOMEM, "out of memory");
  }
  if (m) LLVMDisposeModule(m);
  LLVMContextDispose(cx);
  LLVMDisposeTargetMachine(tm);
  return st;
}

/* --- parts of a module, compiled in parallel ---------------------------------------- */

/* The size of f: its instruction count. */
static int64_t function_size(LLVMValueRef f) {
  int64_t n = 0;
  for (LLVMBasicBlockRef b = LLVMGetFirstBasicBlock(f); b; b = LLVMGetNextBasicBlock(b))
    for (LLVMValueRef i = LLVMGetFirstInstruction(b); i; i = LLVMGetNextInstruction(i)) n++;
  return n;
}

/* A constant every part may hold a copy of: local, immutable, its address
 * not significant. */
static int copyable(LLVMValueRef g) {
  LLVMLinkage l = LLVMGetLinkage(g);
  return (l == LLVMInternalLinkage || l == LLVMPrivateLinkage) && LLVMIsGlobalConstant(g) &&
         LLVMGetUnnamedAddress(g) != LLVMNoUnnamedAddr;
}

typedef struct PartFn {
  int64_t size;
  int index;
} PartFn;

static int by_size(const void *a, const void *b) {
  const PartFn *x = a, *y = b;
  return x->size != y->size ? (x->size < y->size ? 1 : -1) : x->index - y->index;
}

int cg_llvm_partition(LLVMModuleRef m, int nparts, int *part_of) {
  int n = 0, g = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) n += !LLVMIsDeclaration(f);
  PartFn *fs = rt_malloc(sizeof *fs * (size_t)(n + 1));
  int64_t *load = rt_malloc(sizeof *load * (size_t)nparts);
  if (!fs || !load) {
    free(fs), free(load);
    return -1;
  }
  n = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
    if (LLVMIsDeclaration(f)) continue;
    LLVMSetLinkage(f, LLVMExternalLinkage);
    LLVMSetVisibility(f, LLVMDefaultVisibility);
    fs[n] = (PartFn){function_size(f), n};
    n++;
  }
  for (LLVMValueRef v = LLVMGetFirstGlobal(m); v; v = LLVMGetNextGlobal(v), g++) {
    if (LLVMIsDeclaration(v) || copyable(v)) continue;
    size_t len = 0;
    LLVMGetValueName2(v, &len);
    if (!len) { /* an external symbol needs a name */
      char name[48];
      snprintf(name, sizeof name, "%s.g%d", LLVMGetModuleIdentifier(m, &len), g);
      LLVMSetValueName2(v, name, strlen(name));
    }
    LLVMSetLinkage(v, LLVMExternalLinkage);
    LLVMSetVisibility(v, LLVMDefaultVisibility);
  }
  /* the largest function first, to the part with the least so far (the first of equals) */
  qsort(fs, (size_t)n, sizeof *fs, by_size);
  for (int p = 0; p < nparts; p++) load[p] = 0;
  for (int i = 0; i < n; i++) {
    int best = 0;
    for (int p = 1; p < nparts; p++)
      if (load[p] < load[best]) best = p;
    part_of[fs[i].index] = best;
    load[best] += fs[i].size + 1;
  }
  free(fs), free(load);
  return n;
}

/* A declaration in f's place: the same name, type, attributes and
 * calling convention, every use of f moved to it, f deleted.  A function
 * of a lazily read module that goes this way is never read. */
static void declare_instead(LLVMValueRef f) {
  size_t len = 0;
  const char *nm = LLVMGetValueName2(f, &len);
  char *name = malloc(len + 1); /* not rt_malloc: the JIT's compile threads call this */
  if (!name) abort();
  memcpy(name, nm, len);
  name[len] = 0;
  LLVMValueRef d = LLVMAddFunction(LLVMGetGlobalParent(f), "", LLVMGlobalGetValueType(f));
  LLVMSetFunctionCallConv(d, LLVMGetFunctionCallConv(f));
  for (long idx = -1; idx <= (long)LLVMCountParams(f); idx++) {
    LLVMAttributeIndex at = idx < 0 ? LLVMAttributeFunctionIndex : (LLVMAttributeIndex)idx;
    LLVMAttributeRef attrs[64];
    unsigned n = LLVMGetAttributeCountAtIndex(f, at);
    IR_ASSERT(n <= 64); /* the emitter gives a function or parameter a few */
    LLVMGetAttributesAtIndex(f, at, attrs);
    for (unsigned a = 0; a < n; a++) LLVMAddAttributeAtIndex(d, at, attrs[a]);
  }
  LLVMReplaceAllUsesWith(f, d);
  LLVMDeleteFunction(f);
  LLVMSetValueName2(d, name, len);
  free(name);
}

void cg_llvm_keep_part(LLVMModuleRef m, const int *part_of, int part) {
  /* a function pass manager with no passes: running it reads a function's body */
  LLVMPassManagerRef reader = LLVMCreateFunctionPassManagerForModule(m);
  LLVMInitializeFunctionPassManager(reader);
  int i = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(m), next; f; f = next) {
    next = LLVMGetNextFunction(f); /* the declarations made go last */
    if (LLVMIsDeclaration(f)) continue;
    if (part_of[i++] == part) LLVMRunFunctionPassManager(reader, f);
    else declare_instead(f);
  }
  LLVMFinalizeFunctionPassManager(reader);
  LLVMDisposePassManager(reader);
  if (part) /* part 0 defines the variables; the others refer to them */
    for (LLVMValueRef v = LLVMGetFirstGlobal(m); v; v = LLVMGetNextGlobal(v))
      if (!LLVMIsDeclaration(v) && !copyable(v)) LLVMSetInitializer(v, NULL);
  /* what this part no longer uses goes: until nothing more does */
  for (int changed = 1; changed;) {
    changed = 0;
    for (LLVMValueRef v = LLVMGetFirstGlobal(m), next; v; v = next) {
      next = LLVMGetNextGlobal(v);
      if (!LLVMGetFirstUse(v) && (LLVMIsDeclaration(v) || copyable(v))) LLVMDeleteGlobal(v), changed = 1;
    }
    for (LLVMValueRef f = LLVMGetFirstFunction(m), next; f; f = next) {
      next = LLVMGetNextFunction(f);
      if (!LLVMGetFirstUse(f) && LLVMIsDeclaration(f)) LLVMDeleteFunction(f), changed = 1;
    }
  }
}
