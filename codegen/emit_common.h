/*
 * emit_common.h — internal to codegen/: what the C and the LLVM emitter
 * share.  Every decision about the program level of generated code (which
 * buffers a function touches, which run parameter-derived data) is made
 * here once; each emitter only prints or builds what these functions say.
 */
#ifndef DLC_EMIT_COMMON_H
#define DLC_EMIT_COMMON_H

#include "codegen/codegen.h"

/* Which buffers fn loads from and stores into: loaded[b], stored[b] set
 * to 1 (arrays of p->nbufs, zeroed by the caller; either may be NULL). */
void cg_buffer_use(const Program *p, const Func *fn, char *loaded, char *stored);
/* Whether fn reads a BUF_DERIVED buffer: its code runs prepare first when
 * the parameters changed since the last prepare. */
int cg_reads_derived(const Program *p, const Func *fn);
/* Whether fn stores into the source of a BUF_DERIVED buffer (an optimizer
 * update): its code marks the derived data stale at its end. */
int cg_dirties_derived(const Program *p, const Func *fn);

#endif
