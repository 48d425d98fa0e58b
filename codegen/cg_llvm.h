/*
 * cg_llvm.h — internal to codegen/: the LLVM backend's pieces, shared by
 * emit_llvm.c (module building, optimisation, object and text output),
 * jit.c (ORC LLJIT) and the tests.
 */
#ifndef DLC_CG_LLVM_H
#define DLC_CG_LLVM_H

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/TargetMachine.h>

#include "codegen/cg.h"

/* Initialises LLVM's native target, asm printer and parser (once). */
void cg_llvm_init(void);
/* A target machine for the host CPU and its features, optimising at O3. */
LLVMTargetMachineRef cg_llvm_host_machine(LLVMRelocMode reloc, RtError *err);
/* Builds p as a module in cx, with the safetensors support linked in and
 * verified; not yet optimised.  NULL and "internal error: ..." in err on
 * failure (the module is freed). */
LLVMModuleRef cg_llvm_build(const Program *p, LLVMContextRef cx, const EmitOpts *o, RtError *err);
/* LLVMVerifyModule without aborting: RT_OK, or the verifier's first lines. */
RtStatus cg_llvm_verify(LLVMModuleRef m, RtError *err);
/* Sets tm's triple and data layout on m and runs default<O3> for it. */
RtStatus cg_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, RtError *err);
/* Formats an LLVMErrorRef (consuming it) as "internal error: what: msg". */
RtStatus cg_llvm_fail(RtError *err, LLVMErrorRef e, const char *what);

#endif
