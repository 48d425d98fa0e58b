/* cg.h — internal to codegen/. */
#ifndef DLC_CG_H
#define DLC_CG_H

#include "codegen/codegen.h"

/* Prints the accessors and the safetensors loader of an emitted C file. */
void cg_c_support(FILE *f, const Program *p, const char *pre, int embedded);

#endif
