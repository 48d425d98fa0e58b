/*
 * dce.c — dead-node elimination.
 *
 * Marks every node reachable backwards from the outputs and the effects
 * (optimizer steps), then compacts the
 * node array in place, keeping the relative order (so the array stays a
 * valid schedule) and rewriting operand and output ids through the old-to-
 * new map.  Runs before lowering, so an inference build carries neither
 * the loss nor the labels of the training section.
 */
#include <stdlib.h>

#include "passes/passes.h"

void pass_dce(Graph *g) {
  char *live = rt_xcalloc((size_t)g->nnodes + 1, 1);
  int *map = rt_xmalloc(((size_t)g->nnodes + 1) * sizeof *map);
  IR_ASSERT(live && map);
  for (int i = 0; i < g->noutputs; i++) live[g->outputs[i].id] = 1;
  for (int i = 0; i < g->nnodes; i++)
    if (ir_ops[g->nodes[i].op].flags & OPF_EFFECT) live[i] = 1;
  for (int i = g->nnodes - 1; i >= 0; i--)
    if (live[i])
      for (int k = 0; k < g->nodes[i].nin; k++) live[g->nodes[i].in[k]] = 1;
  int n = 0;
  for (int i = 0; i < g->nnodes; i++) {
    map[i] = -1;
    if (!live[i]) continue;
    map[i] = n;
    g->nodes[n] = g->nodes[i];
    for (int k = 0; k < g->nodes[n].nin; k++) g->nodes[n].in[k] = map[g->nodes[n].in[k]];
    n++;
  }
  g->nnodes = n;
  for (int i = 0; i < g->noutputs; i++) g->outputs[i].id = map[g->outputs[i].id];
  rt_xfree(live);
  rt_xfree(map);
}

/* Step "dce". */
int pass_dce_step(PassCtx *c) {
  pass_dce(c->g);
  return 0;
}
