/*
 * export.c — dlc export: a model's inference graph as an ONNX file.
 *
 *   dlc export MODEL.dl [--params W.safetensors | --seed S] [--fold-bn] [-o OUT.onnx]
 *
 * The graph is the one the C backend compiles: the graph steps of the
 * infer pipeline, or of infer-embed with --fold-bn (batch norms folded
 * into the layer before them, which rewrites those weights).  The weights
 * are --params, checked against the model, or the model's initialisation
 * from the seed (--seed, else the training section's, as `dlc MODEL.dl
 * --train` writes them).  The file is written atomically, and not at all
 * when an op has no ONNX form.
 */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "driver/driver.h"
#include "driver/numbers.h"
#include "onnx/onnx.h"

static const char *usage_export =
    "usage: dlc export MODEL.dl [-o OUT.onnx] [--params W.safetensors] [--seed S]\n"
    "                           [--fold-bn] [--max SYM=N]\n"
    "Writes the model's inference graph as an ONNX model (opset 17): inputs with\n"
    "their symbolic dimensions as named dynamic axes, weights as initializers,\n"
    "values named as in the model, each node's doc_string its file:line.\n"
    "  -o OUT.onnx            the file to write (default MODEL.onnx)\n"
    "  --params FILE          the weights (safetensors); default: the model's\n"
    "                         initialisation from the seed\n"
    "  --seed S               the seed of that initialisation (default: the\n"
    "                         training section's, else 0)\n"
    "  --fold-bn              fold batch norms into the dense or conv2d before\n"
    "                         them (as --embed-params); otherwise they are\n"
    "                         BatchNormalization nodes\n";

typedef struct ExportOpts {
  const char *model, *out, *params, *seed;
  const char *max[IR_MAX_SYMS];
  int nmax, fold_bn;
} ExportOpts;

/* 0, 1 for --help, or -1 after a diagnostic. */
static int parse_export(int argc, char **argv, ExportOpts *o, Diags *d) {
  memset(o, 0, sizeof *o);
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    if (!strcmp(argv[i], "--fold-bn")) o->fold_bn = 1;
    else if ((v = dlc_flag(argc, argv, &i, "-o", &miss))) o->out = v;
    else if ((v = dlc_flag(argc, argv, &i, "--params", &miss))) o->params = v;
    else if ((v = dlc_flag(argc, argv, &i, "--seed", &miss))) o->seed = v;
    else if ((v = dlc_flag(argc, argv, &i, "--max", &miss))) {
      if (o->nmax == IR_MAX_SYMS) return diag_plain(d, "--max", "given too many times"), -1;
      o->max[o->nmax++] = v;
    } else if (miss) return diag_plain(d, argv[i], "needs a value"), -1;
    else if (argv[i][0] == '-') return diag_plain(d, argv[i], "unknown option (see dlc export --help)"), -1;
    else if (o->model) return diag_plain(d, argv[i], "only one model file can be exported at a time"), -1;
    else o->model = argv[i];
  }
  if (!o->model) return diag_plain(d, "dlc export", "no model file given (see dlc export --help)"), -1;
  if (o->params && o->seed) return diag_plain(d, "--seed", "the weights come from --params"), -1;
  return 0;
}

/* The weights: --params (checked against g), or g's initialisation. */
static int export_params(const Model *m, const ExportOpts *o, RtTensorSet *set, Diags *d) {
  RtError err;
  if (o->params) {
    if (rt_safetensors_read(o->params, set, &err) || ir_params_check(&m->g, set, o->params, &err))
      return diag_plain(d, o->params, "%s", err.msg), -1;
    return 0;
  }
  if (dlc_copy_weights(m, set, d)) return -1; /* an ONNX model's initializers */
  int64_t seed = m->train.present ? m->train.seed : 0;
  if (o->seed && dlc_parse_int("--seed", o->seed, 0, INT64_MAX, &seed, d)) return -1;
  if (ir_params_init(&m->g, (uint64_t)seed, set, &err)) return diag_plain(d, "dlc export", "%s", err.msg), -1;
  return 0;
}

/* The inference graph of m (in place) and its ONNX bytes. */
static int export_bytes(Model *m, const ExportOpts *o, RtTensorSet *set, uint8_t **data, size_t *len, Diags *d) {
  PassOpts po = {.stages = PASS_STAGE_GRAPH};
  Graph *g = &m->g;
  PassCtx c;
  pass_ctx_init(&c, o->fold_bn ? PIPE_INFER_EMBED : PIPE_INFER, g, -1, &g, NULL, &po, d);
  c.params = set;
  int rc = pass_run(&c);
  pass_ctx_free(&c);
  return rc ? -1 : onnx_export(&m->g, set, data, len, d);
}

static const char *default_out(Arena *a, const char *model) {
  const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
  return arena_printf(a, "%.*s.onnx", (int)strcspn(base, "."), base);
}

int dlc_cmd_export(int argc, char **argv) {
  Diags d;
  diag_init(&d, stderr);
  ExportOpts o;
  int rc = parse_export(argc, argv, &o, &d);
  if (rc) return rc > 0 ? dlc_usage(usage_export, 0) : 2;
  Model m;
  if (dlc_load_model(&m, o.model, o.max, o.nmax, &d)) return 1;
  RtTensorSet set;
  rt_set_init(&set);
  RtOomScope oom; /* the weights are not owned blocks */
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) {
    rt_set_free(&set);
    rt_oom();
  }
  uint8_t *data = NULL;
  size_t len = 0;
  Arena a;
  arena_init(&a);
  int status = export_params(&m, &o, &set, &d) || export_bytes(&m, &o, &set, &data, &len, &d) ? 1 : 0;
  RtError err;
  const void *chunk = data;
  RtFileOut out = {o.out ? o.out : default_out(&a, o.model), &chunk, &len, 1};
  if (!status && rt_write_files_atomic(&out, 1, &err)) status = 1, diag_plain(&d, "dlc", "%s", err.msg);
  rt_xfree(data);
  arena_free(&a);
  rt_oom_leave(&oom);
  rt_set_free(&set);
  fe_model_free(&m);
  return status;
}
