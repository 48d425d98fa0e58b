/*
 * fuzz_frontend.c — the .dl frontend on arbitrary bytes: lexer, parser,
 * graph builder (shape rules, blocks, the training section).  Any input
 * must end in a model or in diagnostics, never in a crash, a leak or
 * undefined behaviour.
 */
#include "frontend/frontend.h"
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Diags d;
  diag_init(&d, fuzz_devnull());
  Model m;
  fe_load_buffer(&m, "fuzz.dl", (const char *)data, size, &d);
  fe_model_free(&m);
  return 0;
}
