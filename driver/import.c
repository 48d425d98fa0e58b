/*
 * import.c — ONNX models as dlc models.
 *
 *   dlc import MODEL.onnx [-o OUT.dl]     OUT.dl and OUT.safetensors
 *   dlc MODEL.onnx ...                    as MODEL.dl would be
 *
 * Both go through onnx_import (onnx/import.c): the model becomes .dl text
 * and the initializers the values of its params.  dlc_load_model loads an
 * ONNX file by parsing that text with the frontend, so an imported model
 * is compiled, checked and run exactly as the .dl file `dlc import` writes;
 * the weights ride along in Model.weights and are the default wherever a
 * .dl model would be initialised from a seed.  `dlc import` parses the
 * text back before writing anything, and writes the two files as one set
 * (both or neither).  Training and evaluation need a training section,
 * which an ONNX model does not have: `dlc train MODEL.onnx` says how to
 * add one (import, add train { }, train with --init the initializers).
 */
#include <setjmp.h>
#include <string.h>

#include "driver/driver.h"
#include "onnx/onnx.h"

static const char *usage_import =
    "usage: dlc import MODEL.onnx [-o OUT.dl]\n"
    "Writes an ONNX model as dlc source, one line per node with the ONNX value\n"
    "names (made into identifiers), and its initializers as OUT.safetensors\n"
    "beside it (for --params, --init or --embed-params).  Opsets 1 to 18.\n"
    "  -o OUT.dl              the file to write (default MODEL.dl)\n";

int dlc_load_onnx(Model *m, const char *path, Diags *d) {
  OnnxImport im;
  if (onnx_import_file(path, &im, d)) {
    memset(m, 0, sizeof *m);
    return -1;
  }
  RtOomScope oom; /* the weights are not owned blocks */
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) {
    onnx_import_free(&im);
    rt_oom();
  }
  int rc = fe_load_string(m, path, im.text, d) ? -1 : 0;
  m->weights = rt_xmalloc(sizeof *m->weights);
  *m->weights = im.weights;
  rt_set_init(&im.weights);
  rt_oom_leave(&oom);
  onnx_import_free(&im);
  return rc;
}

int dlc_load_trainable(Model *m, const char *path, const char *verb, Diags *d) {
  if (!onnx_is_model_path(path)) return fe_load_file(m, path, d) ? -1 : 0;
  if (dlc_load_onnx(m, path, d)) return -1;
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  int n = (int)strcspn(base, ".");
  diag_plain(d, path,
             "an ONNX model has no training section (labels, loss, optimizer, data); to %s it: "
             "dlc import %s -o %.*s.dl, add a train { } section to %.*s.dl, then dlc %s %.*s.dl %s %.*s.safetensors",
             verb, path, n, base, n, base, strcmp(verb, "evaluate") ? "train" : "eval", n, base,
             strcmp(verb, "evaluate") ? "--init" : "--params", n, base);
  fe_model_free(m);
  return -1;
}

int dlc_copy_weights(const Model *m, RtTensorSet *set, Diags *d) {
  RtError err;
  for (int i = 0; m->weights && i < m->weights->count; i++) {
    const RtNamedTensor *t = &m->weights->items[i];
    if (!rt_set_find(set, t->name) && rt_set_add_copy(set, t->name, &t->t, &err))
      return diag_plain(d, m->src.path, "%s", err.msg), -1;
  }
  return 0;
}

/* "dir/model.onnx" -> "model.dl"; "out.dl" -> "out.safetensors". */
static const char *swap_ext(Arena *a, const char *path, const char *ext, int keep_dir) {
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  const char *dot = strrchr(base, '.');
  size_t n = (size_t)((dot && dot != base ? dot : base + strlen(base)) - (keep_dir ? path : base));
  return arena_printf(a, "%.*s%s", (int)n, keep_dir ? path : base, ext);
}

static int parse_import(int argc, char **argv, const char **model, const char **out, Diags *d) {
  *model = *out = NULL;
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    if ((v = dlc_flag(argc, argv, &i, "-o", &miss))) *out = v;
    else if (miss) return diag_plain(d, argv[i], "needs a value"), -1;
    else if (argv[i][0] == '-') return diag_plain(d, argv[i], "unknown option (see dlc import --help)"), -1;
    else if (*model) return diag_plain(d, argv[i], "only one model file can be imported at a time"), -1;
    else *model = argv[i];
  }
  if (!*model) return diag_plain(d, "dlc import", "no model file given (see dlc import --help)"), -1;
  return 0;
}

/* Writes text to dl and weights to st, both or neither. */
static int write_pair(const char *dl, const char *text, const char *st, const RtTensorSet *weights, Diags *d) {
  RtEncoded e;
  RtError err;
  if (rt_safetensors_encode(st, weights, &e, &err)) return diag_plain(d, st, "%s", err.msg), -1;
  const void *chunk = text;
  size_t len = strlen(text);
  RtFileOut outs[2] = {{dl, &chunk, &len, 1}, e.out};
  int rc = rt_write_files_atomic(outs, 2, &err) ? -1 : 0;
  if (rc) diag_plain(d, "dlc import", "%s", err.msg);
  rt_encoded_free(&e);
  return rc;
}

int dlc_cmd_import(int argc, char **argv) {
  Diags d;
  diag_init(&d, stderr);
  const char *model, *out;
  int rc = parse_import(argc, argv, &model, &out, &d);
  if (rc) return rc > 0 ? dlc_usage(usage_import, 0) : 2;
  OnnxImport im;
  if (onnx_import_file(model, &im, &d)) return 1;
  Arena a;
  arena_init(&a);
  RtOomScope oom; /* the weights are not owned blocks */
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) {
    onnx_import_free(&im);
    rt_oom();
  }
  const char *dl = out ? out : swap_ext(&a, model, ".dl", 0);
  Model m;
  int status = fe_load_string(&m, dl, im.text, &d) ? 1 : 0; /* the text parses back */
  fe_model_free(&m);
  if (!status) status = write_pair(dl, im.text, swap_ext(&a, dl, ".safetensors", 1), &im.weights, &d) ? 1 : 0;
  rt_oom_leave(&oom);
  onnx_import_free(&im);
  arena_free(&a);
  return status;
}
