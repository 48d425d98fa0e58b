/*
 * passes.h — graph-to-graph passes and the lowering to kernels.
 *
 * The compile pipeline (pass_pipeline_infer) is one list of named steps;
 * each step can be dumped with --dump-after=NAME and is followed by
 * ir_verify when checking is on.
 */
#ifndef DLC_PASSES_H
#define DLC_PASSES_H

#include "ir/ir.h"
#include "ir/kernel.h"

/* Removes nodes no output depends on; renumbers ids (order is kept).
 * Inputs and params that are not needed go too. */
void pass_dce(Graph *g);

/* Lowers every node of g into kernels of f: f's arguments are g's inputs
 * (in graph order) then its outputs (in output order).  Buffers for params
 * are created once per Program and shared by every function. */
void pass_lower(Program *p, Func *f);

/* Assigns arena offsets to BUF_TEMP buffers from their live ranges over
 * the kernels of every function (functions never run at the same time, so
 * their temporaries share the arena). */
void pass_memplan(Program *p);

/* A named step of the pipeline. */
typedef struct PassOpts {
  const char *dump_after;   /* step name, "all", or NULL */
  FILE *dump_to;
  int verify;               /* run ir_verify after each graph step */
} PassOpts;

/* dce -> lower(forward) -> memplan.  Returns 0, or the number of
 * verification problems (reported to d). */
int pass_pipeline_infer(Graph *g, Program *p, const PassOpts *o, Diags *d);

#endif
