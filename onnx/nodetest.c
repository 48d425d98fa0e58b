/*
 * nodetest.c — one ONNX backend node test through dlc.
 *
 * The model is imported exactly as `dlc run MODEL.onnx` imports it
 * (onnx_import_file, then the frontend parses the .dl text); a refusal
 * there is UNSUP, with the importer's message.  Then, for each
 * test_data_set_N directory: the model is loaded afresh, its inference
 * pipeline runs (the graph steps, and for a compiled backend the kernel
 * steps with every symbol at the size the inputs bind), the inputs
 * input_K.pb are given to the graph's inputs in order (as ONNX's runner
 * does: graph inputs that are not initializers, in file order), the
 * initializers are the params, and each output is compared with
 * output_K.pb: the same dims, NaN where the reference has NaN, an
 * infinity equal, every other element within ONNX's tolerance
 * (NODETEST_ATOL + NODETEST_RTOL |want|).  A reference of type BOOL is
 * 0/1, which dlc's comparisons produce as f32.  Anything that goes wrong
 * after the import is a FAIL with its message, never a pass.  The
 * TensorProto files are decoded here (every numeric type, raw or typed
 * fields) into doubles, independent of the importer's decoder.
 */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "onnx.pb-c.h"
#include "onnx/nodetest.h"
#include "onnx/onnx.h"
#include "passes/passes.h"

#define MAX_IO 64

/* A decoded TensorProto: its ONNX element type, dims and values. */
typedef struct NtTensor {
  int elem;
  int rank;
  int64_t dims[RT_MAX_RANK];
  int64_t numel;
  double *v;
} NtTensor;

const char *nodetest_backend_name(NodeTestBackend b) {
  static const char *const names[] = {"interp", "c", "jit"};
  return b < NT_NBACKENDS ? names[b] : "?";
}

static void set_why(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, n, fmt, ap);
  va_end(ap);
  why[strcspn(why, "\n")] = 0;
}

/* --- files --------------------------------------------------------------------------- */

static uint8_t *read_bytes(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += r;
    if (n == cap) {
      uint8_t *nb = realloc(buf, cap *= 2);
      if (!nb) free(buf);
      buf = nb;
    }
  }
  fclose(f);
  *len = n;
  return buf;
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* --- TensorProto ------------------------------------------------------------------------ */

/* Bytes per element in raw_data, 0 for a type not read. */
static size_t elem_size(int elem) {
  switch (elem) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return 1;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: return 2;
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return 4;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return 8;
  default: return 0;
  }
}

/* Element i of little-endian raw data of type elem. */
static double raw_value(const uint8_t *p, int elem) {
  union { uint8_t b[8]; float f; double d; int8_t i8; int16_t i16; uint16_t u16; int32_t i32; uint32_t u32;
          int64_t i64; uint64_t u64; } u;
  memcpy(u.b, p, elem_size(elem));
  switch (elem) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return u.f;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return u.d;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return u.i8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: return u.i16;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return u.u16;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return u.i32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return u.u32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return (double)u.i64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return (double)u.u64;
  default: return u.b[0]; /* UINT8, BOOL */
  }
}

/* Element i from the typed field its type uses; NAN when absent. */
static double typed_value(const Onnx__TensorProto *t, int64_t i) {
  size_t k = (size_t)i;
  switch (t->data_type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return k < t->n_float_data ? t->float_data[k] : NAN;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return k < t->n_double_data ? t->double_data[k] : NAN;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return k < t->n_int64_data ? (double)t->int64_data[k] : NAN;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return k < t->n_uint64_data ? (double)t->uint64_data[k] : NAN;
  default: return k < t->n_int32_data ? t->int32_data[k] : NAN;
  }
}

static int tensor_decode(const Onnx__TensorProto *t, NtTensor *out, char *why, size_t nwhy) {
  out->elem = t->data_type, out->rank = (int)t->n_dims, out->numel = 1;
  if (!elem_size(t->data_type)) return set_why(why, nwhy, "data type %d is not read", t->data_type), -1;
  if (t->n_dims > RT_MAX_RANK) return set_why(why, nwhy, "rank %zu", t->n_dims), -1;
  for (int k = 0; k < out->rank; k++) {
    if (t->dims[k] < 0 || t->dims[k] > (1 << 28)) return set_why(why, nwhy, "dimension %lld", (long long)t->dims[k]), -1;
    out->dims[k] = t->dims[k], out->numel *= t->dims[k];
  }
  if (out->numel > (1 << 28)) return set_why(why, nwhy, "%lld elements", (long long)out->numel), -1;
  size_t es = elem_size(t->data_type);
  if (t->has_raw_data && t->raw_data.len != (size_t)out->numel * es)
    return set_why(why, nwhy, "raw data of %zu bytes for %lld elements", t->raw_data.len, (long long)out->numel), -1;
  out->v = malloc((size_t)(out->numel ? out->numel : 1) * sizeof *out->v);
  for (int64_t i = 0; i < out->numel; i++)
    out->v[i] = t->has_raw_data ? raw_value(t->raw_data.data + (size_t)i * es, t->data_type) : typed_value(t, i);
  return 0;
}

/* Reads path (a TensorProto) into *out; -1 with why. */
static int tensor_read(const char *path, NtTensor *out, char *why, size_t nwhy) {
  size_t len;
  uint8_t *buf = read_bytes(path, &len);
  memset(out, 0, sizeof *out);
  if (!buf) return set_why(why, nwhy, "cannot read %s", path), -1;
  Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, len, buf);
  free(buf);
  if (!t) return set_why(why, nwhy, "%s is not a TensorProto", path), -1;
  int rc = tensor_decode(t, out, why, nwhy);
  onnx__tensor_proto__free_unpacked(t, NULL);
  return rc;
}

/* The elem types of dir/PREFIX_K.pb, K = 0, 1, ...; their count. */
static int io_elems(const char *dir, const char *prefix, int *elems) {
  int n = 0;
  for (; n < MAX_IO; n++) {
    char path[4096], why[256];
    snprintf(path, sizeof path, "%.4000s/%s_%d.pb", dir, prefix, n);
    if (!file_exists(path)) break;
    NtTensor t;
    elems[n] = tensor_read(path, &t, why, sizeof why) ? -1 : t.elem;
    free(t.v);
  }
  return n;
}

/* --- describing a test ----------------------------------------------------------------- */

static int model_op(const char *dir, char *op, size_t n, char *why, size_t nwhy) {
  char path[4096];
  size_t len;
  snprintf(path, sizeof path, "%.4000s/model.onnx", dir);
  uint8_t *buf = read_bytes(path, &len);
  Onnx__ModelProto *mp = buf ? onnx__model_proto__unpack(NULL, len, buf) : NULL;
  free(buf);
  if (!mp || !mp->graph || !mp->graph->n_node) {
    if (mp) onnx__model_proto__free_unpacked(mp, NULL);
    return set_why(why, nwhy, "%s: no model with nodes", path), -1;
  }
  const Onnx__GraphProto *g = mp->graph;
  snprintf(op, n, "%s", g->node[g->n_node - 1]->op_type ? g->node[g->n_node - 1]->op_type : "?");
  onnx__model_proto__free_unpacked(mp, NULL);
  return 0;
}

int nodetest_describe(const char *dir, NodeTestInfo *info, char *why, size_t nwhy) {
  memset(info, 0, sizeof *info);
  size_t n = strlen(dir), suf = strlen("_expanded");
  char base[4096];
  int expanded = n > suf && !strcmp(dir + n - suf, "_expanded");
  snprintf(base, sizeof base, "%.*s", (int)(expanded ? n - suf : n), dir);
  char op[48];
  if (model_op(expanded && file_exists(base) ? base : dir, op, sizeof op, why, nwhy)) return -1;
  snprintf(info->op, sizeof info->op, "%s%s", op, expanded && file_exists(base) ? " (expanded)" : "");
  char set0[4200];
  int elems[MAX_IO];
  snprintf(set0, sizeof set0, "%.4000s/test_data_set_0", dir);
  int nin = io_elems(set0, "input", elems);
  info->is_float = 1;
  for (int k = 0; k < nin; k++) info->is_float &= elems[k] == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  int nout = io_elems(set0, "output", elems);
  for (int k = 0; k < nout; k++) info->is_float &= elems[k] == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  info->is_float &= nout > 0;
  return 0;
}

/* --- running ---------------------------------------------------------------------------- */

/* The first error line of a diagnostics buffer, without the location. */
static void first_error(const char *buf, char *why, size_t nwhy) {
  const char *e = buf ? strstr(buf, "error: ") : NULL;
  set_why(why, nwhy, "%s", e ? e + strlen("error: ") : buf && *buf ? buf : "(no message)");
}

/* An input tensor for graph input node n from a reference tensor. */
static int input_tensor(const Node *n, const NtTensor *t, RtTensor *out, char *why, size_t nwhy) {
  int ok = (n->dtype == DT_F32 && (t->elem == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || t->elem == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL)) ||
           (n->dtype == DT_I64 && t->elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) ||
           (n->dtype == DT_I32 && t->elem == ONNX__TENSOR_PROTO__DATA_TYPE__INT32);
  if (!ok) return set_why(why, nwhy, "input '%s' is %s, its data of ONNX type %d", n->name, rt_dtype_name(n->dtype), t->elem), -1;
  RtError err;
  if (rt_tensor_alloc(out, n->dtype, t->rank, t->dims, &err)) return set_why(why, nwhy, "%s", err.msg), -1;
  for (int64_t i = 0; i < t->numel; i++) {
    if (n->dtype == DT_F32) ((float *)out->data)[i] = (float)t->v[i];
    else if (n->dtype == DT_I64) ((int64_t *)out->data)[i] = (int64_t)t->v[i];
    else ((int32_t *)out->data)[i] = (int32_t)t->v[i];
  }
  return 0;
}

static double element(const RtTensor *t, int64_t i) {
  switch (t->dtype) {
  case DT_F32: return ((const float *)t->data)[i];
  case DT_F64: return ((const double *)t->data)[i];
  case DT_I32: return ((const int32_t *)t->data)[i];
  case DT_I64: return (double)((const int64_t *)t->data)[i];
  case DT_U8: return ((const uint8_t *)t->data)[i];
  case DT_COUNT: case DT_BOOL: break;
  }
  return NAN;
}

/* Whether got agrees with want: dims, then every element. */
static int compare(const char *name, const RtTensor *got, const NtTensor *want, char *why, size_t nwhy) {
  int same = got->rank == want->rank;
  for (int k = 0; same && k < got->rank; k++) same = got->shape[k] == want->dims[k];
  if (!same) {
    char gs[96], ws[96] = "[";
    rt_shape_str(gs, sizeof gs, got->dtype, got->rank, got->shape);
    for (int k = 0; k < want->rank; k++) snprintf(ws + strlen(ws), sizeof ws - strlen(ws), "%s%lld", k ? ", " : "", (long long)want->dims[k]);
    return set_why(why, nwhy, "output '%s' is %s, the reference [%s]", name, gs, ws + 1), -1;
  }
  for (int64_t i = 0; i < want->numel; i++) {
    double g = element(got, i), w = want->v[i];
    int ok = isnan(w) ? isnan(g) : isinf(w) ? g == w : fabs(g - w) <= NODETEST_ATOL + NODETEST_RTOL * fabs(w);
    if (!ok) return set_why(why, nwhy, "output '%s' element %lld is %.9g, the reference %.9g", name, (long long)i, g, w), -1;
  }
  return 0;
}

/* One data set's state: the model, its graph's values and the params. */
typedef struct NtRun {
  Model m;
  Graph *g;
  Program prog;
  PassCtx pc;
  PassOpts po;
  RtTensor *vals;
  int64_t sym[IR_MAX_SYMS];
  char *why;
  size_t nwhy;
} NtRun;

static int give_inputs(NtRun *r, const char *set) {
  int k = 0;
  for (int i = 0; i < r->g->nnodes; i++) {
    const Node *n = &r->g->nodes[i];
    if (n->op != OP_INPUT) continue;
    char path[4300];
    NtTensor t;
    snprintf(path, sizeof path, "%.4000s/input_%d.pb", set, k++);
    if (tensor_read(path, &t, r->why, r->nwhy)) return -1;
    int rc = input_tensor(n, &t, &r->vals[i], r->why, r->nwhy);
    free(t.v);
    if (rc) return -1;
  }
  RtError err;
  if (ir_bind_symbols(r->g, r->vals, r->sym, &err)) return set_why(r->why, r->nwhy, "%s", err.msg), -1;
  return 0;
}

static int give_params(NtRun *r, RtTensorSet *weights) {
  for (int i = 0; i < r->g->nnodes; i++) {
    const Node *n = &r->g->nodes[i];
    if (n->op != OP_PARAM) continue;
    RtTensor *t = rt_set_find(weights, n->name);
    if (!t) return set_why(r->why, r->nwhy, "param '%s' has no value", n->name), -1;
    r->vals[i] = *t; /* borrowed */
  }
  return 0;
}

/* The kernel stage and the call of the compiled function. */
static int run_compiled(NtRun *r, RtTensorSet *weights, NodeTestBackend b) {
  for (int s = 0; s < r->g->nsyms; s++) r->g->syms[s].max = r->sym[s] > 0 ? r->sym[s] : 1;
  r->po.stages = PASS_STAGE_KERNEL;
  if (pass_run(&r->pc)) return -1;
  RtError err;
  CModule *mod = b == NT_JIT ? cg_jit_build(&r->prog, &err) : cg_c_build(&r->prog, NULL, &err);
  int rc = -1;
  if (!mod) {
    set_why(r->why, r->nwhy, "%s", err.msg);
    kir_program_free(&r->prog);
    return -1;
  }
  const Func *f = &r->prog.funcs[0];
  void *args[2 * MAX_IO + 8];
  for (int i = 0; i < f->nargs && i < (int)(sizeof args / sizeof *args); i++) {
    const Buffer *bf = &r->prog.bufs[f->args[i]];
    int id = bf->kind == BUF_OUTPUT ? r->g->outputs[ir_find_output(r->g, bf->name)].id : bf->node;
    if (bf->kind == BUF_OUTPUT && !r->vals[id].data) {
      int64_t shape[IR_MAX_RANK];
      for (int k = 0; k < bf->shape.rank; k++) shape[k] = ir_dim_value(r->g, bf->shape.d[k], r->sym);
      rt_tensor_alloc(&r->vals[id], bf->dtype, bf->shape.rank, shape, &err);
    }
    args[i] = r->vals[id].data;
  }
  if (f->nargs > (int)(sizeof args / sizeof *args)) set_why(r->why, r->nwhy, "%d arguments", f->nargs);
  else if (cg_c_set_params(mod, weights, &err) || cg_c_call(mod, f->name, r->sym, args, &err)) set_why(r->why, r->nwhy, "%s", err.msg);
  else rc = 0;
  cg_c_free(mod);
  kir_program_free(&r->prog);
  return rc;
}

static int check_outputs(NtRun *r, const char *set) {
  for (int k = 0; k < r->g->noutputs; k++) {
    char path[4300];
    NtTensor t;
    snprintf(path, sizeof path, "%.4000s/output_%d.pb", set, k);
    if (tensor_read(path, &t, r->why, r->nwhy)) return -1;
    int rc = compare(r->g->outputs[k].name, &r->vals[r->g->outputs[k].id], &t, r->why, r->nwhy);
    free(t.v);
    if (rc) return -1;
  }
  return 0;
}

/* Runs one data set; 0 when every output agrees. */
static int run_set(const OnnxImport *im, const char *model, const char *set, NodeTestBackend b, Diags *d,
                   char *why, size_t nwhy) {
  NtRun r = {.why = why, .nwhy = nwhy};
  if (fe_load_string(&r.m, model, im->text, d)) return -1;
  for (int s = 0; s < r.m.g.nsyms; s++) r.m.g.syms[s].max = 0;
  r.g = &r.m.g;
  r.po = (PassOpts){.stages = PASS_STAGE_GRAPH};
  pass_ctx_init(&r.pc, PIPE_INFER, &r.m.g, -1, &r.g, &r.prog, &r.po, d);
  int rc = pass_run(&r.pc);
  r.vals = rc ? NULL : calloc((size_t)r.g->nnodes + 1, sizeof *r.vals);
  RtTensorSet *w = (RtTensorSet *)&im->weights;
  rc = rc || give_inputs(&r, set) || give_params(&r, w);
  if (!rc && b == NT_INTERP) {
    RtError err;
    InterpOpts io = {0, 0};
    if (ir_interp(r.g, r.vals, r.sym, &io, &err)) rc = -1, set_why(why, nwhy, "%s", err.msg);
  } else if (!rc) {
    rc = run_compiled(&r, w, b);
  }
  rc = rc || check_outputs(&r, set);
  for (int i = 0; r.vals && i < r.g->nnodes; i++)
    if (r.g->nodes[i].op != OP_PARAM) rt_tensor_free(&r.vals[i]);
  free(r.vals);
  pass_ctx_free(&r.pc);
  fe_model_free(&r.m);
  return rc ? -1 : 0;
}

/* The data set directories of dir, in order; their count. */
static int data_sets(const char *dir, char sets[][4200], int max) {
  int n = 0;
  for (; n < max; n++) {
    snprintf(sets[n], 4200, "%.4000s/test_data_set_%d", dir, n);
    if (!file_exists(sets[n])) break;
  }
  return n;
}

NodeTestStatus nodetest_run(const char *dir, NodeTestBackend b, char *why, size_t nwhy) {
  char model[4200], *buf = NULL, sets[8][4200];
  size_t len = 0;
  snprintf(model, sizeof model, "%.4000s/model.onnx", dir);
  FILE *mem = open_memstream(&buf, &len);
  Diags d;
  diag_init(&d, mem);
  OnnxImport im;
  why[0] = 0;
  NodeTestStatus st = NT_PASS;
  if (onnx_import_file(model, &im, &d)) {
    fflush(mem);
    first_error(buf, why, nwhy);
    fclose(mem);
    free(buf);
    return NT_UNSUP;
  }
  int nsets = data_sets(dir, sets, 8);
  if (!nsets) st = NT_FAIL, set_why(why, nwhy, "no test_data_set_0");
  for (int s = 0; s < nsets && st == NT_PASS; s++) {
    if (!run_set(&im, model, sets[s], b, &d, why, nwhy)) continue;
    st = NT_FAIL;
    fflush(mem);
    if (!why[0]) first_error(buf, why, nwhy);
  }
  onnx_import_free(&im);
  fclose(mem);
  free(buf);
  return st;
}
