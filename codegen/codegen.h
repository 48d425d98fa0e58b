/*
 * codegen.h — backends: the C emitter; the LLVM emitter (module text or a
 * host object file); and two ways to run a compiled Program in-process,
 * behind one CModule interface: the C backend (emitted C compiled into a
 * shared object) and the JIT (the LLVM module compiled by ORC LLJIT).
 * Either is called through libffi.
 *
 * All of them consume a lowered, memory-planned Program (ir/kernel.h) and make no
 * decisions of their own: what to compute, in which loop order, and where
 * each buffer lives were all decided by the passes.
 */
#ifndef DLC_CODEGEN_H
#define DLC_CODEGEN_H

#include "ir/kernel.h"

/* Named train sections of a training program, in the order of a round:
 * each one's entry point, its steps in a row per round and its optimizer's
 * learning rate (cg_emit_c adds the functions that drive the order). */
typedef struct CgSections {
  int n;
  const char *const *names, *const *funcs;
  const int *repeat;
  const double *lr;
} CgSections;

typedef struct EmitOpts {
  const char *header_name;        /* what model.c #includes, e.g. "model.h" */
  const RtTensorSet *embed;       /* params to embed as constants, or NULL */
  const CgSections *sections;     /* training code with named sections, or NULL */
} EmitOpts;

/* The C identifier prefix for a model name ("my-net" -> "my_net"). */
const char *cg_c_prefix(Arena *a, const char *model_name);

/* Writes the C file and its header.  Returns 0, or -1 after an error
 * message (an embedded tensor missing or of the wrong shape) to d. */
int cg_emit_c(const Program *p, FILE *c_out, FILE *h_out, const EmitOpts *o, Diags *d);
/* The functions that drive named sections' train steps in their order
 * (emit_c_sections.c): definitions into c, declarations into h.  -1 after
 * a message when the steps' signatures differ. */
int cg_emit_c_sections(const Program *p, const char *prefix, const CgSections *s, FILE *c, FILE *h, Diags *d);

/* --- the LLVM emitter ---------------------------------------------------------- */
typedef enum CgLlvmOutput { CG_LLVM_IR, CG_LLVM_OBJ } CgLlvmOutput;

/* Lowers p to an LLVM module with the same functions as the emitted C,
 * optimises it for the host CPU (CG_LLVM_PIPELINE) and returns its text or an object
 * file in *data (malloc'd, *len bytes).  o->header_name is unused.  Errors
 * (embedded tensors that do not fit, "internal error: ..." from LLVM) go
 * to err. */
RtStatus cg_emit_llvm(const Program *p, const EmitOpts *o, CgLlvmOutput what, char **data, size_t *len, RtError *err);

/* --- running compiled code ------------------------------------------------------ */
typedef struct CModule CModule;

/* Emits p as C into a private temporary directory, compiles it with the
 * system compiler ($CC or cc) into a shared object and loads it. */
CModule *cg_c_build(const Program *p, const char *cflags, RtError *err);
/* The same with the weights of embed as constants in the C (--embed-params). */
CModule *cg_c_build_embedded(const Program *p, const char *cflags, const RtTensorSet *embed, RtError *err);
/* Lowers p to LLVM, optimises it for the host and compiles it in memory
 * with ORC LLJIT.  LLVM failures come back as "internal error: ...". */
CModule *cg_jit_build(const Program *p, RtError *err);
/* The rest works on a module of either backend (the names are historical). */
void cg_c_free(CModule *m);
/* Copies the values of the params in set into the module's storage; every
 * param of the program must be present with its shape; optimizer state is
 * copied when present and left as it is otherwise. */
RtStatus cg_c_set_params(CModule *m, const RtTensorSet *set, RtError *err);
/* Copies every parameter and state tensor of the module into set (adding
 * the ones set does not have). */
RtStatus cg_c_get_params(CModule *m, RtTensorSet *set, RtError *err);
/* Runs the module's parallel loops on pool's threads from now on (NULL:
 * on the calling thread, the default).  A JIT module with parallel loops
 * hands them to the pool; emitted C built with CG_C_THREADS_FLAGS runs
 * them on as many OpenMP threads; other modules run serially.  Returns 1
 * when the module runs its loops on threads of its own (OpenMP), which
 * the pool's threads then compete with for the cores, else 0. */
#define CG_C_THREADS_FLAGS "-DDLC_THREADS -fopenmp"
int cg_c_set_pool(CModule *m, RtPool *pool);
/* Has the module's collectives (dist_mean, dist_sum: --sync-bn) call fn
 * with ctx from now on (NULL: the identity, the default).  Returns 1, or
 * 0 when the module has no collectives. */
int cg_c_set_collective(CModule *m, IrCollective fn, void *ctx);
/* Calls function fname with symbol values, then argument pointers in the
 * order of the function's args.  Returns the function's status. */
RtStatus cg_c_call(CModule *m, const char *fname, const int64_t *symvals, void **args, RtError *err);

#endif
