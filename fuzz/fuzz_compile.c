/*
 * fuzz_compile.c — the whole compile pipeline to C on arbitrary bytes:
 * frontend, then (for a model without errors) the inference pipeline
 * (dce, lowering, memory planning, with the verifier after every step),
 * the IR dump and the C emitter, as `dlc MODEL.dl -o OUT.c` runs them.
 * Symbolic dimensions get their default largest value as in dlc.
 */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "fuzz/fuzz.h"
#include "passes/passes.h"

static void compile(Model *m, Diags *d) {
  for (int s = 0; s < m->g.nsyms; s++)
    if (m->g.syms[s].max == 0) m->g.syms[s].max = m->train.present && m->train.batch > 0 ? m->train.batch : 64;
  ir_dump(&m->g, fuzz_devnull());
  PassOpts po = {NULL, NULL, 1};
  Program p;
  if (pass_pipeline_infer(&m->g, &p, &po, d) != 0) return;
  EmitOpts eo = {"fuzz.h", NULL};
  cg_emit_c(&p, fuzz_devnull(), fuzz_devnull(), &eo, d);
  kir_program_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Diags d;
  diag_init(&d, fuzz_devnull());
  Model m;
  if (fe_load_buffer(&m, "fuzz.dl", (const char *)data, size, &d) == 0) compile(&m, &d);
  fe_model_free(&m);
  return 0;
}
