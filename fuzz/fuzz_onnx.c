/*
 * fuzz_onnx.c — the ONNX importer on arbitrary bytes.  A model that
 * imports must come out as .dl text that the frontend parses back (the
 * text is what dlc compiles); every other model is refused with at least
 * one message.  External data is refused without a model path, so the
 * target reads no file but its input.
 */
#include <stdlib.h>

#include "frontend/frontend.h"
#include "fuzz/fuzz.h"
#include "onnx/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Diags d;
  diag_init(&d, fuzz_devnull());
  OnnxImport im;
  if (onnx_import(data, size, NULL, &im, &d) == 0) {
    Model m;
    Diags d2;
    diag_init(&d2, fuzz_devnull());
    if (fe_load_string(&m, "imported.dl", im.text, &d2)) abort(); /* the text always parses */
    fe_model_free(&m);
    onnx_import_free(&im);
  } else if (!d.nerrors) {
    abort(); /* a refusal always says why */
  }
  return 0;
}
