/*
 * test_onnx.c — dlc export: models as ONNX files.
 *
 * Every sample, and tests/fixtures/onnx/all_ops.dl (every op that has an
 * ONNX form, scalar constants, and a reshape over two symbols), is
 * exported by the real executable and its file read back
 * with protobuf-c: the opset and IR version, the graph inputs and outputs
 * with their types and the symbolic batch as a named dynamic axis, the
 * initializers (names, shapes and bytes equal to the model's parameters as
 * initialised from the training section's seed), and nodes that are all
 * standard ONNX ops with a doc_string naming their .dl line.  Batch norm
 * is a BatchNormalization node, or folded away with --fold-bn.  Every op a
 * model can hold has an ONNX form; one that has none (a training op) is an
 * error at its source line, and nothing is produced.
 * When /usr/bin/python3 has the onnx package, onnx.checker (full_check)
 * accepts every exported sample.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "onnx.pb-c.h"
#include "onnx/onnx.h"
#include "passes/passes.h"
#include "tests/testutil.h"

/* Runs dlc with args in dir; returns the exit status, output in *log. */
static int run_dlc(const char *dir, const char *args, char **log) {
  char cmd[4096], path[600];
  snprintf(path, sizeof path, "%s/log.txt", dir);
  snprintf(cmd, sizeof cmd, "cd %s && %s %s > %s 2>&1", dir, DLC_EXE, args, path);
  int st = system(cmd);
  *log = tu_read_file(path, NULL);
  cr_assert_not_null(*log);
  cr_assert(WIFEXITED(st), "dlc %s died:\n%s", args, *log);
  return WEXITSTATUS(st);
}

static Onnx__ModelProto *read_model(const char *path) {
  size_t len;
  char *bytes = tu_read_file(path, &len);
  cr_assert_not_null(bytes, "%s was not written", path);
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, (const uint8_t *)bytes);
  free(bytes);
  cr_assert_not_null(m, "%s does not parse as an ONNX ModelProto", path);
  return m;
}

/* The models exported by the tests: every sample, and the model that
 * holds every op with an ONNX form (paths relative to the source tree). */
static int list_models(char names[][96], int max) {
  DIR *dir = opendir(DLC_SOURCE_DIR "/samples");
  cr_assert_not_null(dir);
  int n = 0;
  for (struct dirent *e; (e = readdir(dir)) && n < max - 1;) {
    size_t l = strlen(e->d_name);
    if (l > 3 && !strcmp(e->d_name + l - 3, ".dl") && l < 64)
      snprintf(names[n++], 96, "samples/%.63s", e->d_name);
  }
  closedir(dir);
  snprintf(names[n++], 96, "tests/fixtures/onnx/all_ops.dl");
  return n;
}

/* The model's inference graph (graph steps of infer) and its parameters
 * initialised as dlc export initialises them. */
static void load_inference(Model *m, const char *path, RtTensorSet *params, Diags *d) {
  cr_assert_eq(fe_load_file(m, path, d), 0, "%s does not load", path);
  for (int s = 0; s < m->g.nsyms; s++)
    if (!m->g.syms[s].max) m->g.syms[s].max = 64;
  PassOpts po = {.stages = PASS_STAGE_GRAPH};
  Graph *g = &m->g;
  PassCtx c;
  pass_ctx_init(&c, PIPE_INFER, g, -1, &g, NULL, &po, d);
  cr_assert_eq(pass_run(&c), 0);
  pass_ctx_free(&c);
  RtError err;
  cr_assert_eq(ir_params_init(&m->g, m->train.present ? (uint64_t)m->train.seed : 0, params, &err), RT_OK, "%s", err.msg);
}

static void expect_type(const Graph *g, const Onnx__ValueInfoProto *vi, const Node *n, const char *what) {
  cr_assert_not_null(vi->type);
  cr_assert_eq(vi->type->value_case, ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE);
  const Onnx__TypeProto__Tensor *tt = vi->type->tensor_type;
  cr_expect_eq(tt->elem_type, n->dtype == DT_F32 ? 1 : n->dtype == DT_I64 ? 7 : n->dtype == DT_I32 ? 6 : -1, "%s", what);
  cr_assert_eq((int)tt->shape->n_dim, n->shape.rank, "%s: rank", what);
  for (int k = 0; k < n->shape.rank; k++) {
    const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[k];
    if (DIM_IS_SYM(n->shape.d[k])) {
      cr_expect_eq(dm->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM, "%s dim %d", what, k);
      if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM)
        cr_expect_str_eq(dm->dim_param, g->syms[DIM_SYM_ID(n->shape.d[k])].name, "%s dim %d", what, k);
    } else {
      cr_expect_eq(dm->value_case, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE, "%s dim %d", what, k);
      cr_expect_eq(dm->dim_value, n->shape.d[k], "%s dim %d", what, k);
    }
  }
}

/* Inputs and outputs: names, order, types, dynamic axes. */
static void expect_io(const Graph *g, const Onnx__GraphProto *gp, const char *sample) {
  size_t ni = 0;
  for (int i = 0; i < g->nnodes; i++) {
    if (g->nodes[i].op != OP_INPUT) continue;
    cr_assert_lt(ni, gp->n_input, "%s: too few inputs", sample);
    cr_expect_str_eq(gp->input[ni]->name, g->nodes[i].name, "%s", sample);
    expect_type(g, gp->input[ni++], &g->nodes[i], sample);
  }
  cr_expect_eq(ni, gp->n_input, "%s: %zu inputs, wanted %zu", sample, gp->n_input, ni);
  cr_assert_eq((int)gp->n_output, g->noutputs, "%s", sample);
  for (int o = 0; o < g->noutputs; o++) {
    cr_expect_str_eq(gp->output[o]->name, g->outputs[o].name, "%s", sample);
    expect_type(g, gp->output[o], &g->nodes[g->outputs[o].id], sample);
  }
}

/* Initializers: exactly the graph's parameters, with their bytes. */
static void expect_initializers(const Graph *g, const Onnx__GraphProto *gp, RtTensorSet *params, const char *sample) {
  size_t np = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_PARAM) continue;
    cr_assert_lt(np, gp->n_initializer, "%s: too few initializers", sample);
    const Onnx__TensorProto *t = gp->initializer[np++];
    cr_expect_str_eq(t->name, n->name, "%s", sample);
    cr_assert_eq((int)t->n_dims, n->shape.rank, "%s: %s", sample, n->name);
    for (int k = 0; k < n->shape.rank; k++) cr_expect_eq(t->dims[k], n->shape.d[k], "%s: %s", sample, n->name);
    RtTensor *want = rt_set_find(params, n->name);
    cr_assert_not_null(want);
    cr_assert_eq(t->raw_data.len, rt_tensor_nbytes(want), "%s: %s", sample, n->name);
    cr_expect(!memcmp(t->raw_data.data, want->data, t->raw_data.len), "%s: %s has other values", sample, n->name);
  }
  cr_expect_eq(np, gp->n_initializer, "%s: %zu initializers, wanted %zu", sample, gp->n_initializer, np);
}

/* Every node: a standard op (default domain) and its .dl line. */
static void expect_nodes(const Onnx__GraphProto *gp, const char *sample) {
  static const char *const known[] = {
      "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Relu", "Softmax", "Conv", "ConvTranspose", "MaxPool",
      "AveragePool", "GlobalAveragePool", "Reshape", "Concat", "Constant", "Identity", "BatchNormalization",
      "Sigmoid", "Transpose", "Shape", "Abs", "Clip", "Elu", "Erf", "Exp", "Greater", "HardSigmoid", "HardSwish",
      "LeakyRelu", "Log", "LogSoftmax", "Max", "Min", "Neg", "Pad", "Pow", "ReduceMax", "ReduceMean", "ReduceSum",
      "Resize", "Selu", "Slice", "Softplus", "Sqrt", "Tanh", "Where", "SoftmaxCrossEntropyLoss", "Cast", "Equal",
      "Not", "Less", "LessOrEqual", "GreaterOrEqual", "GatherElements", "Gather", "NegativeLogLikelihoodLoss",
      "LayerNormalization", "Expand", "Trilu", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Floor", "Ceil", "Round", "Scan", "IsNaN"};
  char loc[4096];
  snprintf(loc, sizeof loc, "%s:", sample);
  for (size_t i = 0; i < gp->n_node; i++) {
    const Onnx__NodeProto *n = gp->node[i];
    int ok = 0;
    for (size_t k = 0; k < sizeof known / sizeof *known; k++) ok |= !strcmp(n->op_type, known[k]);
    cr_expect(ok, "%s: node %s has op %s", sample, n->name, n->op_type);
    cr_expect(!n->domain || !*n->domain, "%s: node %s in domain %s", sample, n->name, n->domain);
    cr_expect(n->doc_string && strstr(n->doc_string, loc), "%s: node %s has doc_string %s", sample, n->name,
              n->doc_string ? n->doc_string : "(none)");
    for (size_t k = 0; k < n->n_attribute; k++) /* a Scan's body */
      if (n->attribute[k]->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH) expect_nodes(n->attribute[k]->g, sample);
  }
}

Test(onnx, every_sample_exports_and_reads_back, .timeout = 120) {
  char names[32][96];
  int ns = list_models(names, 32);
  cr_assert_gt(ns, 9);
  const char *dir = tu_scratch_dir();
  for (int s = 0; s < ns; s++) {
    char args[4096], path[4096], *log;
    snprintf(args, sizeof args, "export %s/%s -o m.onnx", DLC_SOURCE_DIR, names[s]);
    cr_assert_eq(run_dlc(dir, args, &log), 0, "dlc %s:\n%s", args, log);
    free(log);
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    Onnx__ModelProto *mp = read_model(path);
    cr_expect_eq(mp->ir_version, ONNX_IR_VERSION);
    cr_assert_eq(mp->n_opset_import, 1);
    cr_expect_eq(mp->opset_import[0]->version, ONNX_OPSET);
    cr_expect(!mp->opset_import[0]->domain || !*mp->opset_import[0]->domain);
    Model m;
    Diags d;
    diag_init(&d, stderr);
    RtTensorSet params;
    rt_set_init(&params);
    snprintf(path, sizeof path, "%s/%s", DLC_SOURCE_DIR, names[s]);
    load_inference(&m, path, &params, &d);
    expect_io(&m.g, mp->graph, names[s]);
    expect_initializers(&m.g, mp->graph, &params, names[s]);
    expect_nodes(mp->graph, strrchr(names[s], '/') + 1);
    rt_set_free(&params);
    fe_model_free(&m);
    onnx__model_proto__free_unpacked(mp, NULL);
  }
}

static int count_op(const Onnx__GraphProto *gp, const char *type) {
  int k = 0;
  for (size_t i = 0; i < gp->n_node; i++) k += !strcmp(gp->node[i]->op_type, type);
  return k;
}

static int has_initializer(const Onnx__GraphProto *gp, const char *suffix) {
  for (size_t i = 0; i < gp->n_initializer; i++) {
    size_t l = strlen(gp->initializer[i]->name), k = strlen(suffix);
    if (l >= k && !strcmp(gp->initializer[i]->name + l - k, suffix)) return 1;
  }
  return 0;
}

Test(onnx, batch_norm_is_a_node_or_folded) {
  const char *dir = tu_scratch_dir();
  char path[600], *log;
  cr_assert_eq(run_dlc(dir, "export " DLC_SOURCE_DIR "/samples/resnet.dl -o bn.onnx", &log), 0, "%s", log);
  free(log);
  cr_assert_eq(run_dlc(dir, "export " DLC_SOURCE_DIR "/samples/resnet.dl --fold-bn -o folded.onnx", &log), 0, "%s", log);
  free(log);
  snprintf(path, sizeof path, "%s/bn.onnx", dir);
  Onnx__ModelProto *bn = read_model(path);
  snprintf(path, sizeof path, "%s/folded.onnx", dir);
  Onnx__ModelProto *folded = read_model(path);
  cr_expect_gt(count_op(bn->graph, "BatchNormalization"), 0);
  cr_expect(has_initializer(bn->graph, ".running_var"));
  cr_expect_eq(count_op(folded->graph, "BatchNormalization"), 0);
  cr_expect(!has_initializer(folded->graph, ".running_var"));
  cr_expect_eq(count_op(folded->graph, "Conv"), count_op(bn->graph, "Conv"));
  onnx__model_proto__free_unpacked(bn, NULL);
  onnx__model_proto__free_unpacked(folded, NULL);
}

/* The default weights are those dlc MODEL.dl --train writes (the training
 * section's seed); --params puts a file's values in, --seed others. */
static Onnx__ModelProto *export_read(const char *dir, const char *flags, const char *file) {
  char args[1024], path[600], *log;
  snprintf(args, sizeof args, "export " DLC_SOURCE_DIR "/samples/mlp.dl %s -o %s", flags, file);
  cr_assert_eq(run_dlc(dir, args, &log), 0, "dlc %s:\n%s", args, log);
  free(log);
  snprintf(path, sizeof path, "%s/%s", dir, file);
  return read_model(path);
}

static int same_initializers(const Onnx__GraphProto *a, const Onnx__GraphProto *b) {
  if (a->n_initializer != b->n_initializer) return 0;
  for (size_t i = 0; i < a->n_initializer; i++) {
    const ProtobufCBinaryData *x = &a->initializer[i]->raw_data, *y = &b->initializer[i]->raw_data;
    if (strcmp(a->initializer[i]->name, b->initializer[i]->name) || x->len != y->len || memcmp(x->data, y->data, x->len))
      return 0;
  }
  return 1;
}

Test(onnx, weights_from_the_seed_or_a_params_file) {
  const char *dir = tu_scratch_dir();
  char *log;
  cr_assert_eq(run_dlc(dir, DLC_SOURCE_DIR "/samples/mlp.dl --train -o t.c", &log), 0, "%s", log);
  free(log);
  Onnx__ModelProto *deflt = export_read(dir, "", "a.onnx"), *file = export_read(dir, "--params t.init.safetensors", "b.onnx"),
                   *seed42 = export_read(dir, "--seed 42", "c.onnx"), *seed7 = export_read(dir, "--seed 7", "d.onnx");
  cr_expect(same_initializers(deflt->graph, file->graph), "the default weights are --train's initial ones");
  cr_expect(same_initializers(deflt->graph, seed42->graph), "the default seed is the training section's (42)");
  cr_expect(!same_initializers(deflt->graph, seed7->graph), "--seed 7 gives other weights");
  onnx__model_proto__free_unpacked(deflt, NULL);
  onnx__model_proto__free_unpacked(file, NULL);
  onnx__model_proto__free_unpacked(seed42, NULL);
  onnx__model_proto__free_unpacked(seed7, NULL);
  cr_expect_eq(run_dlc(dir, "export " DLC_SOURCE_DIR "/samples/lenet5.dl --params t.init.safetensors -o e.onnx", &log), 1);
  cr_expect(strstr(log, "t.init.safetensors"), "%s", log);
  free(log);
}

/* An op with no ONNX form (only training graphs have them) is an error at
 * its source line, and nothing is produced. */
Test(onnx, an_op_without_onnx_form_is_an_error_at_its_line) {
  Model m;
  Diags d;
  char *buf = NULL;
  size_t blen = 0;
  FILE *out = open_memstream(&buf, &blen);
  diag_init(&d, out);
  cr_assert_eq(fe_load_string(&m, "g.dl", "model g\ninput x: f32[2, 3]\ny = softmax(x, axis=1)\noutput y\n", &d), 0);
  int y = m.g.outputs[0].id, in[2] = {y, y};
  Attrs a = ir_attrs_default(OP_SOFTMAX_GRAD);
  int gid = ir_op(&m.g, OP_SOFTMAX_GRAD, in, 2, &a, m.g.nodes[y].loc);
  cr_assert_geq(gid, 0);
  ir_output(&m.g, "dx", gid);
  RtTensorSet params;
  rt_set_init(&params);
  uint8_t *data;
  size_t len;
  cr_expect_eq(onnx_export(&m.g, &params, &data, &len, &d), -1);
  cr_expect_null(data);
  fclose(out);
  cr_expect(strstr(buf, "g.dl:3:") && strstr(buf, "'softmax_grad' has no ONNX form"), "%s", buf);
  free(buf);
  fe_model_free(&m);
}

/* Every op a model can hold has an ONNX form but the random ops (whose
 * counter-based numbers ONNX cannot reproduce); the others (made by the
 * training passes) say why they have none. */
Test(onnx, every_op_a_model_can_hold_has_an_onnx_form) {
  for (int op = 0; op < OP_COUNT; op++) {
    const OnnxOpInfo *r = onnx_op_info((OpKind)op);
    if (op == OP_SCAN || op == OP_SCAN_OUT) cr_expect(r->onnx, "scan is an ONNX Scan");
    else if (ir_ops[op].flags & (OPF_INTERNAL | OPF_RANDOM)) cr_expect(!r->onnx && r->note && *r->note, "internal op %s", ir_ops[op].name);
    else cr_expect(r->onnx, "op %s can be written in .dl but has no ONNX form", ir_ops[op].name);
  }
}

/* onnx.checker with full_check (type and shape inference) on every sample,
 * with batch norm and folded. */
Test(onnx, checker_accepts_every_sample, .timeout = 180) {
  if (access("/usr/bin/python3", X_OK) != 0) cr_skip_test("/usr/bin/python3 is not installed");
  if (system("/usr/bin/python3 -c 'import onnx' > /dev/null 2>&1") != 0)
    cr_skip_test("python3-onnx is not installed (scripts/setup.sh installs it)");
  char names[32][96];
  int ns = list_models(names, 32);
  const char *dir = tu_scratch_dir();
  for (int s = 0; s < ns; s++)
    for (int fold = 0; fold < 2; fold++) {
      char args[4096], *log;
      const char *base = strrchr(names[s], '/') + 1;
      snprintf(args, sizeof args, "export %s/%s %s -o %.*s%s.onnx", DLC_SOURCE_DIR, names[s], fold ? "--fold-bn" : "",
               (int)(strlen(base) - 3), base, fold ? "_folded" : "");
      cr_assert_eq(run_dlc(dir, args, &log), 0, "%s", log);
      free(log);
    }
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "cd %s && /usr/bin/python3 -c 'import glob, onnx\n"
           "for f in sorted(glob.glob(\"*.onnx\")):\n"
           "    onnx.checker.check_model(onnx.load(f), full_check=True)\n"
           "    print(f, \"ok\")' > check.txt 2>&1",
           dir);
  int st = system(cmd);
  snprintf(cmd, sizeof cmd, "%s/check.txt", dir);
  char *log = tu_read_file(cmd, NULL);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "onnx.checker:\n%s", log ? log : "");
  int ok = 0;
  for (char *p = log; p && (p = strstr(p, " ok\n")); p++) ok++;
  cr_expect_eq(ok, 2 * ns, "%d of %d models checked:\n%s", ok, 2 * ns, log ? log : "");
  free(log);
}


static const Onnx__AttributeProto *attr_of(const Onnx__NodeProto *n, const char *name) {
  for (size_t k = 0; k < n->n_attribute; k++)
    if (!strcmp(n->attribute[k]->name, name)) return n->attribute[k];
  return NULL;
}

/* A scan is one Scan node whose body is the step, written once: the
 * bidirectional GRU of text_classify is two Scans over the time axis 1
 * (batch_first), the backward one with reversed directions; each body
 * takes the state then the step and returns the new state then the step's
 * output, and reads the GRU's weights as the model's initializers. */
Test(onnx, a_scan_is_one_scan_node_with_its_body) {
  const char *dir = tu_scratch_dir();
  char args[1024], path[700], *log;
  snprintf(args, sizeof args, "export %s/samples/text_classify.dl -o t.onnx", DLC_SOURCE_DIR);
  cr_assert_eq(run_dlc(dir, args, &log), 0, "%s", log);
  free(log);
  snprintf(path, sizeof path, "%s/t.onnx", dir);
  Onnx__ModelProto *mp = read_model(path);
  const Onnx__GraphProto *gp = mp->graph;
  cr_assert_eq(count_op(gp, "Scan"), 2);
  int reversed = 0;
  for (size_t i = 0; i < gp->n_node; i++) {
    const Onnx__NodeProto *n = gp->node[i];
    if (strcmp(n->op_type, "Scan")) continue;
    const Onnx__AttributeProto *body = attr_of(n, "body"), *nsi = attr_of(n, "num_scan_inputs");
    const Onnx__AttributeProto *ia = attr_of(n, "scan_input_axes"), *oa = attr_of(n, "scan_output_axes");
    const Onnx__AttributeProto *dir_in = attr_of(n, "scan_input_directions"), *dir_out = attr_of(n, "scan_output_directions");
    cr_assert(body && body->g && nsi && ia && oa);
    cr_expect_eq(nsi->i, 1);
    cr_expect_eq(n->n_input, 2, "the initial state, then the sequence");
    cr_expect_eq(n->n_output, 2, "the final state, then the stacked outputs");
    cr_assert_eq(ia->n_ints, 1);
    cr_expect_eq(ia->ints[0], 1);
    cr_assert_eq(oa->n_ints, 1);
    cr_expect_eq(oa->ints[0], 1);
    cr_expect((dir_in != NULL) == (dir_out != NULL));
    if (dir_in) {
      reversed++;
      cr_expect(dir_in->n_ints == 1 && dir_in->ints[0] == 1 && dir_out->n_ints == 1 && dir_out->ints[0] == 1);
    }
    const Onnx__GraphProto *bg = body->g;
    cr_expect_eq(bg->n_input, 2);
    cr_expect_eq(bg->n_output, 2);
    cr_expect_eq(bg->n_initializer, 0, "the weights are the model's initializers");
    cr_expect_eq(count_op(bg, "Scan"), 0);
    cr_expect_gt(count_op(bg, "Gemm") + count_op(bg, "MatMul"), 0);
    cr_expect_lt(bg->n_node, 200, "the body is one step, not unrolled over 64");
    int reads_weight = 0;
    for (size_t k = 0; k < bg->n_node; k++)
      for (size_t j = 0; j < bg->node[k]->n_input; j++) reads_weight |= !strncmp(bg->node[k]->input[j], "gru.", 4);
    cr_expect(reads_weight, "the body reads the GRU's initializers");
  }
  cr_expect_eq(reversed, 1, "one backward scan");
  onnx__model_proto__free_unpacked(mp, NULL);
}
