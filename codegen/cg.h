/* cg.h — internal to codegen/. */
#ifndef DLC_CG_H
#define DLC_CG_H

#include "codegen/emit_common.h"

/* Prints the safetensors reader and the accessors of an emitted C file,
 * over the parameter table t (c_support.c). */
void cg_c_support(FILE *f, const Program *p, const char *pre, const CgTable *t, int embedded);

/* --- compiled modules (cbackend.c) --------------------------------------------------
 * A CModule is what the C backend and the JIT share: the model's prefix
 * and functions, and a backend's way to find a symbol's address and to
 * let go of the code.  cg_c_set_params, _get_params and _call use
 * only these, so they work the same on both backends. */
typedef struct CFunc {
  char *name;
  int nargs;
  void *addr;         /* looked up on first call */
} CFunc;

struct CModule {
  void *(*lookup)(CModule *m, const char *symbol);   /* NULL when absent */
  void (*release)(CModule *m);                       /* frees impl (and dir) */
  void *impl;         /* the dlopen handle, or the LLJIT */
  char dir[256];      /* C backend: its temporary directory */
  char *prefix;
  int nsyms;
  int nfuncs;
  CFunc *funcs;
};

/* A module with p's prefix and functions and no backend yet; NULL and a
 * message when out of memory. */
CModule *cg_module_new(const Program *p, RtError *err);

#endif
