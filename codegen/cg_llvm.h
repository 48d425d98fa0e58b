/*
 * cg_llvm.h — internal to codegen/: the LLVM backend's pieces, shared by
 * emit_llvm.c (module building), llvm_target.c (the host target,
 * optimisation, object and text output, the parts of a module),
 * jit.c (ORC LLJIT) and the tests.
 */
#ifndef DLC_CG_LLVM_H
#define DLC_CG_LLVM_H

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/TargetMachine.h>

#include "codegen/cg.h"

/* The optimisation pipeline: the passes of LLVM's O2 that the kernels
 * need, in O2's order, and no others.  The kernel IR arrives tiled,
 * vectorised where the schedule said so, its kernels separate noinline
 * functions with counted i64 loops, so what is left to do is: promote
 * the locals (sroa), fold and share the index arithmetic (early-cse,
 * instcombine, gvn), hoist what is invariant out of the loops (licm on
 * rotated loops), unroll the small constant loops fully (a simd loop's
 * 2 x 2 window becomes straight code, so the loop around it vectorises),
 * vectorise the simd loops (loop-vectorize) and pack the stores of
 * unrolled copies (slp-vectorizer: a conv2d_grad_weight's 28-column
 * copy ran 19% slower without).  Left out, each measured not to matter
 * to the samples' steps: the inliner and the module passes (nothing to
 * inline; globaldce stays, for the unused loader code of --emit=obj),
 * indvars, loop-idiom, loop-deletion, unswitching, jump threading,
 * correlated-value propagation, reassociate, dse, loop-load-elim, and
 * the partial and runtime unrolling after vectorisation.  O2 spent
 * most of its time there: SCEV for indvars and the unroller, and the
 * unrolled copies for the later passes and instruction selection.  The
 * LeNet-5 training step's optimisation and code generation take 3.9 G
 * instructions against O2's 7.0 G (valgrind, one thread, the whole
 * module), and its kernels run as fast (perf, per kernel: LeNet-5, the
 * MLP).  O3 was worse still than O2 (1.7 s against 0.9 s for the same
 * step on an Intel Xeon): its unrolling threshold fully unrolls the
 * vectorised copies. */
#define CG_LLVM_PIPELINE                                                                                        \
  "function("                                                                                                   \
  "sroa<modify-cfg>,early-cse<>,simplifycfg,instcombine<no-verify-fixpoint>,"                                   \
  "loop-mssa(licm<no-allowspeculation>,loop-rotate<header-duplication;no-prepare-for-lto>,licm<allowspeculation>)," \
  "simplifycfg,loop(loop-unroll-full),sroa<modify-cfg>,gvn<>,instcombine<no-verify-fixpoint>,"                 \
  "loop-mssa(licm<allowspeculation>),simplifycfg,"                                                              \
  "loop(loop-rotate<header-duplication;no-prepare-for-lto>),loop-vectorize,instcombine<no-verify-fixpoint>,"    \
  "slp-vectorizer,loop-mssa(licm<allowspeculation>),simplifycfg),"                                              \
  "globaldce"
/* A kernel that runs at most this many statements a call (the symbols at
 * their max) is cold: its loops are not vectorised or unrolled
 * (emit_llvm.c, cold_kernel); so are the innermost loops that call a
 * math function (calls_math). */
#define CG_COLD_WORK 4096.0

/* The JIT compiles a module in this many parts, on up to as many threads
 * (jit.c, cg_llvm_partition).  More parts than threads even out what
 * each thread does (a part's cost follows its instruction count only
 * roughly); a part costs little of its own, since each reads only its
 * functions (cg_llvm_keep_part).  LeNet-5's training step, 2 threads:
 * critical path 0.55-0.57 of the CPU time in 16 parts, 0.58-0.60 in 8. */
#define CG_JIT_PARTS 16
/* The JIT's compile threads from now on: n, or 0 for one per online CPU
 * (the environment's DLC_JIT_THREADS, when set, wins). */
void cg_jit_set_threads(int n);

/* Initialises LLVM's native target, asm printer and parser (once). */
void cg_llvm_init(void);
/* A target machine for the host CPU and its features (LLVMCodeGenLevelAggressive). */
LLVMTargetMachineRef cg_llvm_host_machine(LLVMRelocMode reloc, RtError *err);
/* Builds p as a module in cx, with the safetensors support linked in and
 * verified; not yet optimised.  NULL and "internal error: ..." in err on
 * failure (the module is freed). */
LLVMModuleRef cg_llvm_build(const Program *p, LLVMContextRef cx, const EmitOpts *o, RtError *err);
/* A context whose optimiser keeps its remarks and warnings to itself (a
 * simd loop it could not vectorise is no news to a user); errors are
 * printed. */
LLVMContextRef cg_llvm_context(void);
/* LLVMVerifyModule without aborting: RT_OK, or the verifier's first lines. */
RtStatus cg_llvm_verify(LLVMModuleRef m, RtError *err);
/* Sets tm's triple and data layout on m and runs CG_LLVM_PIPELINE for it. */
RtStatus cg_llvm_optimize(LLVMModuleRef m, LLVMTargetMachineRef tm, RtError *err);
/* Formats an LLVMErrorRef (consuming it) as "internal error: what: msg". */
RtStatus cg_llvm_fail(RtError *err, LLVMErrorRef e, const char *what);

/* A module split for a parallel compile (jit.c): every function and
 * variable of m (built, not yet optimised) becomes external, except the
 * local constants whose address does not matter, which each part may
 * copy; each defined function is assigned to one of nparts parts, the
 * largest (in instructions) first to the part with the fewest so far.
 * part_of[i] is the part of the i-th defined function in m's order
 * (room for every function); returns how many were assigned, -1 when out
 * of memory.  The assignment depends on m alone. */
int cg_llvm_partition(LLVMModuleRef m, int nparts, int *part_of);
/* Reduces a copy of a partitioned module to part `part`: the other parts'
 * functions become declarations, outside part 0 (which defines them) the
 * variables too, and what the part no longer uses is removed.  m may be
 * read lazily (LLVMGetBitcodeModuleInContext2): the part's functions are
 * read then, the others' never (the JIT reads a part in a sixth of the
 * time it takes to parse the whole module). */
void cg_llvm_keep_part(LLVMModuleRef m, const int *part_of, int part);

#endif
