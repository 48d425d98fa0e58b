/*
 * pipeline.c — the compile pipeline as one list of named steps.
 *
 * Graph steps run in order; after each one the graph can be dumped
 * (--dump-after=STEP, or "all") and is re-verified when checking is on.
 * Then the graph is lowered to kernels and the kernels' memory planned.
 * Training builds (autodiff, optimizer) insert their steps in this list.
 */
#include <string.h>

#include "passes/passes.h"

typedef struct Step {
  const char *name;
  void (*run)(Graph *g);
} Step;

static const Step infer_steps[] = {
    {"dce", pass_dce},
};

static int after_step(Graph *g, const char *name, const PassOpts *o, Diags *d) {
  if (o && o->dump_after && (strcmp(o->dump_after, name) == 0 || strcmp(o->dump_after, "all") == 0)) {
    fprintf(o->dump_to, "; after %s\n", name);
    ir_dump(g, o->dump_to);
  }
  return o && o->verify ? ir_verify(g, d) : 0;
}

static int after_kernel_step(Program *p, const char *name, const PassOpts *o, Diags *d) {
  if (o && o->dump_after && (strcmp(o->dump_after, name) == 0 || strcmp(o->dump_after, "all") == 0)) {
    fprintf(o->dump_to, "; after %s\n", name);
    kir_dump(p, o->dump_to);
  }
  return o && o->verify ? kir_verify(p, d) : 0;
}

int pass_pipeline_infer(Graph *g, Program *p, const PassOpts *o, Diags *d) {
  int bad = after_step(g, "parse", o, d);
  for (size_t i = 0; i < sizeof infer_steps / sizeof infer_steps[0] && !bad; i++) {
    infer_steps[i].run(g);
    bad = after_step(g, infer_steps[i].name, o, d);
  }
  if (bad) return bad;
  kir_program_init(p, g);
  pass_lower(p, kir_func(p, "forward", g));
  bad = after_kernel_step(p, "lower", o, d);
  if (!bad) pass_memplan(p);
  if (!bad) bad = after_kernel_step(p, "memplan", o, d);
  if (bad) kir_program_free(p);
  return bad;
}
