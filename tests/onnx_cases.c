/*
 * onnx_cases.c — the cases of the ONNX Runtime check (scripts/onnx_check.sh),
 * outside the test suite because ONNX Runtime comes from npm.
 *
 *   onnx_cases ops OUTDIR          every case of op_cases.h
 *   onnx_cases inputs MODEL.dl DIR fixed inputs of a model, and dlc run's flags
 *
 * ops: each case is built from its fixtures as the suite builds it, run by
 * the reference interpreter (what dlc run runs by default), and exported
 * with onnx_export; OUTDIR gets NAME.onnx and NAME.ref.npy, and a line of
 * OUTDIR/ops.txt says where the case's inputs and results are:
 *   NAME <TAB> MODEL.onnx <TAB> in0=PATH,... <TAB> out=PATH
 * or, for a case that has no ONNX form, NAME <TAB> - <TAB> the reason.
 *
 * inputs: every input of the model's inference graph as DIR/NAME.npy, its symbols 3, values
 * from a fixed linear congruential sequence in [-1, 1) (integers 0..2);
 * prints the flags of dlc run that read them and write every output as
 * DIR/ref.OUTPUT.npy, and the manifest fields the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "onnx/onnx.h"
#include "passes/passes.h"
#include "tests/op_cases.h"

#define SYM_VALUE 3

static int write_bytes(const char *path, const uint8_t *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, len, f) != len) return fprintf(stderr, "%s: cannot write\n", path), -1;
  return fclose(f);
}

/* Case c: its reference result and its export; a line of the manifest. */
static int op_case(const OpCase *c, const char *dir, FILE *manifest) {
  RtTensor ins[OPCASE_MAX_IN];
  RtError err;
  char path[1024], ins_field[4096] = "";
  for (int i = 0; i < c->nin; i++) {
    snprintf(path, sizeof path, "%s/%s.in%d.npy", DLC_SOURCE_DIR "/tests/fixtures/ops", c->name, i);
    if (rt_npy_read(path, &ins[i], &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    size_t l = strlen(ins_field);
    snprintf(ins_field + l, sizeof ins_field - l, "%sin%d=%s", i ? "," : "", i, path);
  }
  Diags d;
  char *msg = NULL;
  size_t msglen = 0;
  FILE *mf = open_memstream(&msg, &msglen);
  diag_init(&d, mf);
  Graph g;
  ir_graph_init(&g, c->name, &d);
  if (opcase_build(c, &g, ins) < 0) return fprintf(stderr, "%s does not build\n", c->name), -1;
  RtTensor *vals = calloc((size_t)g.nnodes, sizeof *vals);
  int64_t sym[IR_MAX_SYMS];
  for (int i = 0; i < c->nin; i++) vals[opcase_input_id(&g, i)] = ins[i];
  InterpOpts io = {0};
  int rc = ir_bind_symbols(&g, vals, sym, &err) || ir_interp(&g, vals, sym, &io, &err) ? -1 : 0;
  if (rc) fprintf(stderr, "%s: %s\n", c->name, err.msg);
  RtTensorSet none;
  rt_set_init(&none);
  uint8_t *data = NULL;
  size_t len = 0;
  if (!rc && onnx_export(&g, &none, &data, &len, &d) == 0) {
    snprintf(path, sizeof path, "%s/%s.onnx", dir, c->name);
    rc = write_bytes(path, data, len);
    fprintf(manifest, "%s\t%s\t%s\t", c->name, path, ins_field);
    snprintf(path, sizeof path, "%s/%s.ref.npy", dir, c->name);
    if (!rc && rt_npy_write(path, &vals[g.outputs[0].id], &err)) rc = -1, fprintf(stderr, "%s\n", err.msg);
    fprintf(manifest, "out=%s\n", path);
  } else if (!rc) {
    fflush(mf);
    const char *why = strstr(msg, "error: ");
    fprintf(manifest, "%s\t-\t%.*s\n", c->name, (int)strcspn(why ? why + 7 : msg, "\n"), why ? why + 7 : msg);
  }
  rt_xfree(data);
  for (int i = 0; i < g.nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
  ir_graph_free(&g);
  fclose(mf);
  free(msg);
  return rc;
}

static int cmd_ops(const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/ops.txt", dir);
  FILE *manifest = fopen(path, "w");
  if (!manifest) return fprintf(stderr, "%s: cannot write\n", path), 1;
  int bad = 0;
  for (int ci = 0; ci < OPCASE_COUNT; ci++) bad += op_case(&op_cases[ci], dir, manifest) != 0;
  fclose(manifest);
  return bad ? 1 : 0;
}

/* The fixed input of node n, as DIR/NAME.npy. */
static int write_input(const Graph *g, const Node *n, const char *dir, uint64_t *state) {
  RtTensor t;
  RtError err;
  int64_t shape[IR_MAX_RANK];
  for (int k = 0; k < n->shape.rank; k++) shape[k] = DIM_IS_SYM(n->shape.d[k]) ? SYM_VALUE : n->shape.d[k];
  if (rt_tensor_alloc(&t, n->dtype, n->shape.rank, shape, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
  for (int64_t i = 0; i < rt_tensor_numel(&t); i++) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    double u = (double)(*state >> 11) / 9007199254740992.0;
    if (n->dtype == DT_F32) ((float *)t.data)[i] = (float)(2 * u - 1);
    else if (n->dtype == DT_I64) ((int64_t *)t.data)[i] = (int64_t)(3 * u);
    else if (n->dtype == DT_I32) ((int32_t *)t.data)[i] = (int32_t)(3 * u);
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.npy", dir, n->name);
  int rc = rt_npy_write(path, &t, &err) ? (fprintf(stderr, "%s\n", err.msg), -1) : 0;
  rt_tensor_free(&t);
  return rc;
}

/* The graph steps of the infer pipeline: the inputs ONNX has. */
static int inference_graph(Graph *g, Diags *d) {
  for (int s = 0; s < g->nsyms; s++)
    if (!g->syms[s].max) g->syms[s].max = 64;
  PassOpts po = {.stages = PASS_STAGE_GRAPH};
  PassCtx c;
  pass_ctx_init(&c, PIPE_INFER, g, -1, &g, NULL, &po, d);
  int rc = pass_run(&c);
  pass_ctx_free(&c);
  return rc;
}

static int cmd_inputs(const char *model, const char *dir) {
  Model m;
  Diags d;
  diag_init(&d, stderr);
  if (fe_load_file(&m, model, &d) || inference_graph(&m.g, &d)) return 1;
  uint64_t state = 42;
  int rc = 0;
  for (int i = 0; i < m.g.nnodes && !rc; i++)
    if (m.g.nodes[i].op == OP_INPUT) {
      rc = write_input(&m.g, &m.g.nodes[i], dir, &state);
      printf("--input %s=%s/%s.npy ", m.g.nodes[i].name, dir, m.g.nodes[i].name);
    }
  for (int o = 0; o < m.g.noutputs; o++) printf("--output %s=%s/ref.%s.npy ", m.g.outputs[o].name, dir, m.g.outputs[o].name);
  printf("\n");
  fe_model_free(&m);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "ops")) return cmd_ops(argv[2]);
  if (argc == 4 && !strcmp(argv[1], "inputs")) return cmd_inputs(argv[2], argv[3]);
  fputs("usage: onnx_cases ops OUTDIR | onnx_cases inputs MODEL.dl DIR\n", stderr);
  return 2;
}
