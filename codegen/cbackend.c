/*
 * cbackend.c — running emitted C: compile to a shared object, dlopen it,
 * call its entry points through libffi.
 *
 * The C file is written into a fresh private directory (mkdtemp), built by
 * the system compiler ($CC, else cc) with the compiler's messages captured
 * to a file so a failure can be reported (ISO C99, for the machine it runs
 * on, and -ffp-contract=fast: under -std=c99 gcc would not turn the
 * register tiles' vector a * b + c into FMA instructions, as it does in
 * its default GNU mode and as the JIT's llvm.fmuladd does; and
 * -fno-math-errno: otherwise gcc calls sqrtf element by element, for its
 * errno, and no optimizer step or normalisation loop is vectorised; the
 * emitted code never reads errno), and loaded with RTLD_LOCAL so
 * several models can be loaded side by side.  Entry points take the
 * symbol values (int64) and then one pointer per argument; their number is
 * known only at run time, which is what libffi is for.
 *
 * The calling side (set/get params, call) is shared with the JIT: it
 * needs only a CModule's lookup function (dlsym here, LLJIT's lookup in
 * jit.c), and caches each entry point's address.
 */
#include <dlfcn.h>
#include <errno.h>
#include <ffi.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/cg.h"
#include "codegen/st_loader.h"

static void remove_dir(const char *dir) {
  const char *names[] = {"model.c", "model.h", "model.so", "cc.log"};
  char path[512];
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

static RtStatus write_sources(CModule *m, const Program *p, const RtTensorSet *embed, RtError *err) {
  char cpath[512], hpath[512];
  snprintf(cpath, sizeof cpath, "%s/model.c", m->dir);
  snprintf(hpath, sizeof hpath, "%s/model.h", m->dir);
  FILE *c = fopen(cpath, "w"), *h = fopen(hpath, "w");
  if (!c || !h) {
    if (c) fclose(c);
    if (h) fclose(h);
    return rt_fail(err, RT_ERR_IO, "%s: cannot write the generated C: %s", m->dir, strerror(errno));
  }
  Diags d;
  diag_init(&d, stderr);
  EmitOpts o = {"model.h", embed};
  int rc = cg_emit_c(p, c, h, &o, &d);
  int bad = fclose(c) | fclose(h);
  if (rc || bad) return rt_fail(err, RT_ERR_IO, "%s: cannot write the generated C", m->dir);
  return RT_OK;
}

/* The first lines of the compiler's log, for an error message. */
static void log_head(const char *path, char *out, size_t n) {
  FILE *f = fopen(path, "r");
  out[0] = 0;
  if (!f) return;
  size_t got = fread(out, 1, n - 1, f);
  out[got] = 0;
  fclose(f);
}

static RtStatus compile(CModule *m, const char *cflags, RtError *err) {
  const char *cc = getenv("CC");
  char cmd[2048], log[512];
  snprintf(log, sizeof log, "%s/cc.log", m->dir);
  snprintf(cmd, sizeof cmd, "%s -std=c99 -O3 -march=native -ffp-contract=fast -fno-math-errno -fPIC -shared %s -o '%s/model.so' '%s/model.c' -lm >'%s' 2>&1",
           cc && *cc ? cc : "cc", cflags ? cflags : "", m->dir, m->dir, log);
  int st = system(cmd);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    char head[400];
    log_head(log, head, sizeof head);
    return rt_fail(err, RT_ERR_IO, "the C compiler failed on the generated code (%s/model.c): %s", m->dir, head);
  }
  return RT_OK;
}

CModule *cg_module_new(const Program *p, RtError *err) {
  CModule *m = rt_xcalloc(1, sizeof *m);
  if (!m) return rt_fail(err, RT_ERR_NOMEM, "out of memory"), NULL;
  Arena a;
  arena_init(&a);
  m->prefix = rt_xstrdup(cg_c_prefix(&a, p->name));
  arena_free(&a);
  m->nsyms = p->g->nsyms;
  m->funcs = rt_xcalloc((size_t)p->nfuncs + 1, sizeof *m->funcs);
  if (!m->prefix || !m->funcs) {
    cg_c_free(m);
    return rt_fail(err, RT_ERR_NOMEM, "out of memory"), NULL;
  }
  for (int i = 0; i < p->nfuncs; i++) {
    m->funcs[i].name = rt_xstrdup(p->funcs[i].name);
    m->funcs[i].nargs = p->funcs[i].nargs;
    m->nfuncs = i + 1;
  }
  return m;
}

void cg_c_free(CModule *m) {
  if (!m) return;
  if (m->release) m->release(m);
  for (int i = 0; i < m->nfuncs; i++) rt_xfree(m->funcs[i].name);
  rt_xfree(m->funcs);
  rt_xfree(m->prefix);
  rt_xfree(m);
}

static void *so_lookup(CModule *m, const char *symbol) { return dlsym(m->impl, symbol); }

static void so_release(CModule *m) {
  if (m->impl) dlclose(m->impl);
  if (m->dir[0] && !getenv("DLC_KEEP_TEMP")) remove_dir(m->dir);
}

CModule *cg_c_build(const Program *p, const char *cflags, RtError *err) {
  return cg_c_build_embedded(p, cflags, NULL, err);
}

/* A module built with -DDLC_THREADS (it has P_set_threads) brought in the
 * compiler's OpenMP runtime, whose idle threads outlive every call: were
 * the module unloaded, the runtime would go with it and those threads
 * would run unmapped code.  Such a module stays loaded (RTLD_NODELETE)
 * until the process ends; its files are removed as usual. */
static void keep_openmp(CModule *m, const char *so) {
  char name[256];
  snprintf(name, sizeof name, "%s_set_threads", m->prefix);
  if (dlsym(m->impl, name)) dlopen(so, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD | RTLD_NODELETE);
}

CModule *cg_c_build_embedded(const Program *p, const char *cflags, const RtTensorSet *embed, RtError *err) {
  CModule *m = cg_module_new(p, err);
  if (!m) return NULL;
  m->lookup = so_lookup;
  m->release = so_release;
  const char *tmp = getenv("TMPDIR");
  snprintf(m->dir, sizeof m->dir, "%s/dlc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(m->dir)) {
    rt_fail(err, RT_ERR_IO, "cannot make a temporary directory in %s: %s", tmp ? tmp : "/tmp", strerror(errno));
    m->dir[0] = 0;
    cg_c_free(m);
    return NULL;
  }
  char so[512];
  snprintf(so, sizeof so, "%s/model.so", m->dir);
  if (write_sources(m, p, embed, err) || compile(m, cflags, err)) {
    cg_c_free(m);
    return NULL;
  }
  m->impl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  if (!m->impl) {
    rt_fail(err, RT_ERR_IO, "cannot load %s: %s", so, dlerror());
    cg_c_free(m);
    return NULL;
  }
  keep_openmp(m, so);
  return m;
}

static void *sym(CModule *m, const char *what) {
  char name[256];
  snprintf(name, sizeof name, "%s_%s", m->prefix, what);
  return m->lookup(m, name);
}

int cg_c_set_pool(CModule *m, RtPool *pool) {
  typedef void (*PoolRun)(RtPool *, RtParallelFn, int64_t, void *);
  void (*set_pool)(PoolRun, RtPool *) = (void (*)(PoolRun, RtPool *))sym(m, "set_pool");
  void (*set_threads)(int) = (void (*)(int))sym(m, "set_threads");
  if (set_pool) set_pool(pool ? rt_pool_run : NULL, pool);
  if (set_threads) set_threads(rt_pool_threads(pool));
  return set_threads && pool;
}

int cg_c_set_collective(CModule *m, IrCollective fn, void *ctx) {
  void (*set)(IrCollective, void *) = (void (*)(IrCollective, void *))sym(m, "set_collective");
  if (set) set(fn, ctx);
  return set != NULL;
}

RtStatus cg_c_set_params(CModule *m, const RtTensorSet *set, RtError *err) {
  const CgParamInfo *(*param)(int) = (const CgParamInfo *(*)(int))sym(m, "param");
  int (*set_param)(int, const float *) = (int (*)(int, const float *))sym(m, "set_param");
  if (!param || !set_param) return rt_fail(err, RT_ERR_FORMAT, "the compiled model has no parameter table");
  for (int i = 0; param(i); i++) {
    const CgParamInfo *pi = param(i);
    RtTensor *t = rt_set_find((RtTensorSet *)set, pi->name);
    if (!t && pi->is_state) continue;
    if (!t) return rt_fail(err, RT_ERR_MISSING, "no value for parameter '%s'", pi->name);
    if (t->dtype != DT_F32 || rt_tensor_numel(t) != pi->numel)
      return rt_fail(err, RT_ERR_SHAPE, "parameter '%s' has the wrong type or size", pi->name);
    if (set_param(i, t->data)) return rt_fail(err, RT_ERR_FORMAT, "cannot set parameter '%s'", pi->name);
  }
  return RT_OK;
}

RtStatus cg_c_get_params(CModule *m, RtTensorSet *set, RtError *err) {
  const CgParamInfo *(*param)(int) = (const CgParamInfo *(*)(int))sym(m, "param");
  if (!param) return rt_fail(err, RT_ERR_FORMAT, "the compiled model has no parameter table");
  for (int i = 0; param(i); i++) {
    const CgParamInfo *pi = param(i);
    RtTensor *t = rt_set_find(set, pi->name);
    if (!t) {
      RtTensor fresh;
      RtStatus st = rt_tensor_alloc(&fresh, DT_F32, pi->rank, pi->shape, err);
      if (!st) st = rt_set_add(set, pi->name, &fresh, err);
      if (st) return st;
      t = rt_set_find(set, pi->name);
    }
    if (rt_tensor_numel(t) != pi->numel) return rt_fail(err, RT_ERR_SHAPE, "tensor '%s' changed size", pi->name);
    memcpy(t->data, pi->data, sizeof(float) * (size_t)pi->numel);
  }
  return RT_OK;
}

RtStatus cg_c_call(CModule *m, const char *fname, const int64_t *symvals, void **args, RtError *err) {
  CFunc *cf = NULL;
  for (int i = 0; i < m->nfuncs; i++)
    if (strcmp(m->funcs[i].name, fname) == 0) cf = &m->funcs[i];
  if (cf && !cf->addr) cf->addr = sym(m, fname);
  void *fn = cf ? cf->addr : NULL;
  if (!fn) return rt_fail(err, RT_ERR_MISSING, "the compiled model has no function '%s'", fname);
  int n = m->nsyms + cf->nargs;
  ffi_type **types = rt_xcalloc((size_t)n + 1, sizeof *types);
  void **values = rt_xcalloc((size_t)n + 1, sizeof *values);
  if (!types || !values) {
    rt_xfree(types);
    rt_xfree(values);
    return rt_fail(err, RT_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < m->nsyms; i++) types[i] = &ffi_type_sint64, values[i] = (void *)&symvals[i];
  for (int i = 0; i < cf->nargs; i++) types[m->nsyms + i] = &ffi_type_pointer, values[m->nsyms + i] = &args[i];
  ffi_cif cif;
  RtStatus st = RT_OK;
  ffi_arg rc = 0;
  if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, (unsigned)n, &ffi_type_sint, types) != FFI_OK)
    st = rt_fail(err, RT_ERR_FORMAT, "libffi cannot describe %s_%s", m->prefix, fname);
  else
    ffi_call(&cif, FFI_FN(fn), &rc, values);
  if (st == RT_OK && (int)rc != 0)
    st = rt_fail(err, RT_ERR_SHAPE, "%s_%s returned %d: a size is outside what the code was compiled for", m->prefix,
                 fname, (int)rc);
  rt_xfree(types);
  rt_xfree(values);
  return st;
}
