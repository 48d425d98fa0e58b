/*
 * jit.c — the JIT backend: a Program's LLVM module compiled in memory by
 * ORC LLJIT and called through the same CModule interface as the C
 * backend.
 *
 * Each CModule owns one LLJIT, so freeing the module frees its code, and
 * two models can be JIT'd side by side.  The module is built once, in a
 * context of its own, and split into CG_JIT_PARTS parts
 * (cg_llvm_partition: every function and variable external, each
 * function in one part, the largest first to the lightest part); its
 * bitcode is then compiled part by part on one thread per online CPU
 * (DLC_JIT_THREADS or cg_jit_set_threads to say otherwise): each thread
 * takes the next part, reads the bitcode lazily into a context of its
 * own, reads that part's functions and declares the others
 * (cg_llvm_keep_part), optimises it for the
 * host (CG_LLVM_PIPELINE; cold kernels' loops are not vectorised or
 * unrolled, as with --emit=obj) and compiles it to an object file with
 * its own target machine, position-independent so that the parts may lie
 * anywhere in memory.  What a part holds depends on the module alone, so
 * the machine code, and every result, is the same for any number of
 * threads; the kernels were separate noinline functions already, so the
 * split changes little of what LLVM sees.  The workers allocate nothing
 * through dlc's allocator (not thread-safe) and report through an RtError
 * each.  The objects are added to the LLJIT in part order, and the first
 * lookup of every entry point links them (cg_jit_build forces it, so a
 * failure surfaces here rather than at the first call).  Library
 * functions (libm, stdio) and the thread pool's resolve from the process.
 *
 * With DLC_PERF_MAP=1 in the environment, the JIT also writes
 * /tmp/perf-PID.map: the address, size and name of every function it
 * compiled (sizes from the objects' symbol tables, addresses from the
 * lookup), so that `perf report` names the JIT's kernels as it names the
 * C backend's.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llvm-c/BitReader.h>
#include <llvm-c/BitWriter.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Object.h>
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

/* --- the perf map ------------------------------------------------------------------- */

/* The functions of the objects, for /tmp/perf-PID.map (DLC_PERF_MAP=1). */
typedef struct PerfSyms {
  int n, cap;
  char **name;
  uint64_t *size;
} PerfSyms;

static int perf_map_wanted(void) {
  const char *env = getenv("DLC_PERF_MAP");
  return env && *env && strcmp(env, "0") != 0;
}

/* Adds the sized, defined symbols of object obj to s (what fails to be
 * read or stored is left out: the map is a profiling aid). */
static void perf_collect(PerfSyms *s, LLVMMemoryBufferRef obj) {
  LLVMContextRef cx = cg_llvm_context();
  char *msg = NULL;
  LLVMBinaryRef bin = LLVMCreateBinary(obj, cx, &msg);
  LLVMDisposeMessage(msg);
  if (bin) {
    LLVMSymbolIteratorRef it = LLVMObjectFileCopySymbolIterator(bin);
    for (; it && !LLVMObjectFileIsSymbolIteratorAtEnd(bin, it); LLVMMoveToNextSymbol(it)) {
      const char *name = LLVMGetSymbolName(it);
      uint64_t size = LLVMGetSymbolSize(it);
      if (!name || !*name || !size) continue;
      if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        char **nn = realloc(s->name, sizeof *nn * (size_t)cap);
        if (nn) s->name = nn;
        uint64_t *ns = realloc(s->size, sizeof *ns * (size_t)cap);
        if (ns) s->size = ns;
        if (!nn || !ns) break;
        s->cap = cap;
      }
      char *copy = strdup(name);
      if (!copy) break;
      s->name[s->n] = copy;
      s->size[s->n++] = size;
    }
    if (it) LLVMDisposeSymbolIterator(it);
    LLVMDisposeBinary(bin);
  }
  LLVMContextDispose(cx);
}

/* Writes /tmp/perf-PID.map for the symbols of s that jit resolves, and frees s. */
static void perf_write(PerfSyms *s, LLVMOrcLLJITRef jit) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/perf-%ld.map", (long)getpid());
  FILE *f = s->n && jit ? fopen(path, "a") : NULL;
  for (int i = 0; i < s->n; i++) {
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef e = f ? LLVMOrcLLJITLookup(jit, &addr, s->name[i]) : NULL;
    if (e) LLVMConsumeError(e);
    else if (f && addr) fprintf(f, "%llx %llx %s\n", (unsigned long long)addr, (unsigned long long)s->size[i], s->name[i]);
    free(s->name[i]);
  }
  if (f) fclose(f);
  free(s->name);
  free(s->size);
  *s = (PerfSyms){0};
}

/* --- the parallel compile ------------------------------------------------------------ */

static int jit_threads; /* 0: one per online CPU (cg_jit_set_threads) */

void cg_jit_set_threads(int n) { jit_threads = n < 0 ? 0 : n; }

/* How many threads compile the parts: DLC_JIT_THREADS, else what
 * cg_jit_set_threads said, else one per online CPU; at most CG_JIT_PARTS. */
static int compile_threads(void) {
  const char *env = getenv("DLC_JIT_THREADS");
  long n = env && *env ? strtol(env, NULL, 10) : jit_threads;
  if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > CG_JIT_PARTS ? CG_JIT_PARTS : (int)n;
}

typedef struct Parts {
  const char *bc; /* the whole module's bitcode, read by every part */
  size_t bclen;
  const int *part_of;
  pthread_mutex_t lock;
  int next;                                /* the next part to compile */
  LLVMMemoryBufferRef obj[CG_JIT_PARTS];   /* each part's object file */
  RtStatus st[CG_JIT_PARTS];
  RtError err[CG_JIT_PARTS];
} Parts;

typedef struct Worker {
  Parts *parts;
  LLVMTargetMachineRef tm; /* one per thread: emission uses it */
} Worker;

/* Part i of the module, in a context of its own: parsed from the bitcode,
 * reduced to the part, optimised and compiled to an object file. */
static void compile_part(Parts *ps, int i, LLVMTargetMachineRef tm) {
  double t0 = ir_phase_start();
  LLVMContextRef cx = cg_llvm_context();
  /* read lazily: the module owns bc from here (and frees it if the read fails) */
  LLVMMemoryBufferRef bc = LLVMCreateMemoryBufferWithMemoryRange(ps->bc, ps->bclen, "module", 0);
  LLVMModuleRef m = NULL;
  if (LLVMGetBitcodeModuleInContext2(cx, bc, &m)) {
    ps->st[i] = rt_fail(&ps->err[i], RT_ERR_FORMAT, "internal error: the JIT's bitcode does not parse");
  } else {
    cg_llvm_keep_part(m, ps->part_of, i);
    ir_phase_end("llvm-part", t0);
    ps->st[i] = cg_llvm_optimize(m, tm, &ps->err[i]);
  }
  if (!ps->st[i]) {
    t0 = ir_phase_start();
    char *msg = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &msg, &ps->obj[i]))
      ps->st[i] = rt_fail(&ps->err[i], RT_ERR_FORMAT, "internal error: cannot compile the module: %.400s", msg ? msg : "");
    LLVMDisposeMessage(msg);
    ir_phase_end("llvm-codegen", t0);
  }
  if (m) LLVMDisposeModule(m);
  LLVMContextDispose(cx);
}

/* Compiles the parts not yet taken until none is left. */
static void *work(void *arg) {
  Worker *w = arg;
  Parts *ps = w->parts;
  double t0 = ir_phase_start();
  for (;;) {
    pthread_mutex_lock(&ps->lock);
    int i = ps->next++;
    pthread_mutex_unlock(&ps->lock);
    if (i >= CG_JIT_PARTS) break;
    compile_part(ps, i, w->tm);
  }
  ir_phase_end("llvm-thread", t0); /* the sum of this thread's parts, not a phase of its own */
  return NULL;
}

/* Compiles the parts of bitcode bc (partitioned by part_of) on up to
 * compile_threads() threads, this one included, and adds their objects to
 * jit in part order.  Which code a part holds depends on the module only,
 * so the machine code is the same whatever the thread count. */
static RtStatus compile_parts(LLVMOrcLLJITRef jit, const char *bc, size_t bclen, const int *part_of, PerfSyms *syms,
                              RtError *err) {
  Parts ps = {.bc = bc, .bclen = bclen, .part_of = part_of};
  Worker w[CG_JIT_PARTS];
  pthread_t th[CG_JIT_PARTS];
  int nthreads = compile_threads(), started = 0;
  RtStatus st = RT_OK;
  for (int t = 0; t < nthreads && !st; t++) {
    w[t] = (Worker){&ps, cg_llvm_host_machine(LLVMRelocPIC, err)};
    if (!w[t].tm) st = RT_ERR_FORMAT, nthreads = t;
  }
  if (!st) {
    pthread_mutex_init(&ps.lock, NULL);
    for (started = 1; started < nthreads; started++)
      if (pthread_create(&th[started], NULL, work, &w[started])) break; /* fewer threads then */
    work(&w[0]);
    for (int t = 1; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&ps.lock);
  }
  for (int t = 0; t < nthreads; t++) LLVMDisposeTargetMachine(w[t].tm);
  for (int i = 0; i < CG_JIT_PARTS && !st; i++)
    if (ps.st[i]) *err = ps.err[i], st = ps.st[i];
  for (int i = 0; i < CG_JIT_PARTS; i++) {
    if (!ps.obj[i]) continue;
    if (st) {
      LLVMDisposeMemoryBuffer(ps.obj[i]);
      continue;
    }
    if (syms) perf_collect(syms, ps.obj[i]);
    LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(jit, LLVMOrcLLJITGetMainJITDylib(jit), ps.obj[i]);
    if (e) st = cg_llvm_fail(err, e, "the JIT does not accept the module");
  }
  return st;
}

/* Builds p's module, splits it into CG_JIT_PARTS parts and compiles them
 * in parallel (compile_parts). */
static RtStatus add_program(LLVMOrcLLJITRef jit, const Program *p, PerfSyms *syms, RtError *err) {
  double wall = ir_wall_start();
  LLVMContextRef cx = cg_llvm_context();
  RtOomScope oom;
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) { /* out of memory building the module (disposed there) */
    LLVMContextDispose(cx);
    rt_oom();
  }
  LLVMModuleRef mod = cg_llvm_build(p, cx, NULL, err);
  rt_oom_leave(&oom);
  if (!mod) {
    LLVMContextDispose(cx);
    return RT_ERR_FORMAT;
  }
  double t0 = ir_phase_start();
  int nfuncs = 0;
  for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) nfuncs++;
  int *part_of = rt_malloc(sizeof *part_of * (size_t)(nfuncs + 1));
  RtStatus st = part_of && cg_llvm_partition(mod, CG_JIT_PARTS, part_of) >= 0 ? RT_OK : rt_fail(err, RT_ERR_NOMEM, "out of memory");
  LLVMMemoryBufferRef bc = st ? NULL : LLVMWriteBitcodeToMemoryBuffer(mod);
  LLVMDisposeModule(mod);
  LLVMContextDispose(cx);
  ir_phase_end("llvm-split", t0);
  if (bc) st = compile_parts(jit, LLVMGetBufferStart(bc), LLVMGetBufferSize(bc), part_of, syms, err);
  if (bc) LLVMDisposeMemoryBuffer(bc);
  free(part_of);
  ir_wall_end("llvm", wall);
  return st;
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
  ir_phase_end("llvm-link", t0);
  return RT_OK;
}

CModule *cg_jit_build(const Program *p, RtError *err) {
  CModule *m = cg_module_new(p, err);
  if (!m) return NULL;
  m->lookup = jit_lookup;
  m->release = jit_release;
  m->impl = make_jit(err);
  PerfSyms syms = {0}, *want = perf_map_wanted() ? &syms : NULL;
  if (!m->impl || add_program(m->impl, p, want, err) || materialize(m, err)) {
    perf_write(&syms, NULL);
    cg_c_free(m);
    return NULL;
  }
  if (want) perf_write(want, m->impl);
  return m;
}
