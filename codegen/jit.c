/*
 * jit.c — the JIT backend: a Program's LLVM module compiled in memory by
 * ORC LLJIT and called through the same CModule interface as the C
 * backend.
 *
 * Each CModule owns one LLJIT, so freeing the module frees its code, and
 * two models can be JIT'd side by side (the support functions linked into
 * each module are internal; only P_* names are exported).  The module is
 * built inside the thread-safe context's own LLVMContext, verified,
 * optimised for the host CPU (CG_LLVM_PIPELINE, cold kernels not at all;
 * the same settings as --emit=obj), then handed to LLJIT, whose own
 * target machine is built from the host too.  LLJIT takes ownership of the module only when
 * adding succeeds; machine code is generated at the first lookup, which
 * cg_jit_build forces for every entry point so that a failure surfaces
 * here as an error rather than at the first call.  Library functions
 * (libm, stdio) resolve from the process.
 */
#include <stdlib.h>
#include <string.h>

#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>

#include "codegen/cg_llvm.h"

static void *jit_lookup(CModule *m, const char *symbol) {
  LLVMOrcExecutorAddress addr = 0;
  LLVMErrorRef e = LLVMOrcLLJITLookup(m->impl, &addr, symbol);
  if (e) {
    LLVMConsumeError(e);
    return NULL;
  }
  return (void *)(uintptr_t)addr;
}

static void jit_release(CModule *m) {
  if (m->impl) LLVMOrcDisposeLLJIT(m->impl);
}

/* An LLJIT compiling for the host CPU, resolving library calls from the process. */
static LLVMOrcLLJITRef make_jit(RtError *err) {
  LLVMTargetMachineRef tm = cg_llvm_host_machine(LLVMRelocDefault, err);
  if (!tm) return NULL;
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(tm));
  LLVMOrcLLJITRef jit = NULL;
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&jit, builder);
  if (e) return cg_llvm_fail(err, e, "cannot create the JIT"), NULL;
  LLVMOrcDefinitionGeneratorRef gen = NULL;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(jit), NULL, NULL);
  if (e) {
    LLVMOrcDisposeLLJIT(jit);
    return cg_llvm_fail(err, e, "cannot resolve symbols of the process"), NULL;
  }
  LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(jit), gen);
  return jit;
}

/* Builds and optimises p's module in tsc's context and adds it to jit. */
static RtStatus add_program(LLVMOrcLLJITRef jit, const Program *p, RtError *err) {
  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  RtOomScope oom;
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) { /* out of memory building the module (disposed there) */
    LLVMOrcDisposeThreadSafeContext(tsc);
    rt_oom();
  }
  LLVMModuleRef mod = cg_llvm_build(p, LLVMOrcThreadSafeContextGetContext(tsc), NULL, err);
  rt_oom_leave(&oom);
  LLVMTargetMachineRef tm = mod ? cg_llvm_host_machine(LLVMRelocDefault, err) : NULL;
  RtStatus st = tm ? cg_llvm_optimize(mod, tm, err) : RT_ERR_FORMAT;
  if (tm) LLVMDisposeTargetMachine(tm);
  if (st) {
    if (mod) LLVMDisposeModule(mod);
    LLVMOrcDisposeThreadSafeContext(tsc);
    return st;
  }
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
  LLVMOrcDisposeThreadSafeContext(tsc); /* the module keeps the context alive */
  LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), tsm);
  if (e) {
    LLVMOrcDisposeThreadSafeModule(tsm);
    return cg_llvm_fail(err, e, "the JIT does not accept the module");
  }
  return RT_OK;
}

/* Looks every entry point up, which is when LLJIT generates code. */
static RtStatus materialize(CModule *m, RtError *err) {
  double t0 = ir_phase_start();
  for (int i = 0; i < m->nfuncs; i++) {
    char name[256];
    snprintf(name, sizeof name, "%s_%s", m->prefix, m->funcs[i].name);
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef e = LLVMOrcLLJITLookup(m->impl, &addr, name);
    if (e) return cg_llvm_fail(err, e, "JIT compilation failed");
    m->funcs[i].addr = (void *)(uintptr_t)addr;
  }
  ir_phase_end("llvm-codegen", t0);
  return RT_OK;
}

CModule *cg_jit_build(const Program *p, RtError *err) {
  CModule *m = cg_module_new(p, err);
  if (!m) return NULL;
  m->lookup = jit_lookup;
  m->release = jit_release;
  m->impl = make_jit(err);
  if (!m->impl || add_program(m->impl, p, err) || materialize(m, err)) {
    cg_c_free(m);
    return NULL;
  }
  return m;
}
