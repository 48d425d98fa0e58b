/*
 * run.c — `dlc run`: one forward pass on tensors from .npy files.
 *
 * Inputs are read and checked against the model's declared types first
 * (binding symbolic dimensions such as the batch), parameters are loaded
 * or initialised from the seed, then the chosen backend runs the
 * inference graph: the reference interpreter, the emitted C compiled
 * into a shared object, or the LLVM JIT (both called through libffi).  For
 * a compiled backend each symbol's compile-time maximum is the value bound
 * by the inputs.
 *
 * With --grads or --input-grads the graph run is the gradient graph of the
 * training section's loss (the grads pipeline of passes/pipeline.c), and the
 * gradients are written as safetensors named like the parameters/inputs.
 *
 * --output NAME=FILE computes only the outputs named (a dead-code pass
 * drops what only the others need, inputs included).  An input file is
 * .npy, or IDX (the MNIST family, gzip'd or not): u8 images feeding an f32
 * input are scaled to [0, 1] as the data sets are, and reshaped to the
 * input's sample shape.  --dim SYM=K binds a dimension symbol: a file
 * whose first dimension is SYM and longer gives its first K rows, and an
 * input declared `= randn` or `= rand` that is not given is drawn from
 * --seed, so a generator or a decoder runs on fresh noise.
 *
 * --mode says how batch norm and dropout behave, and is never guessed
 * from what else is asked: train (batch statistics; dropout masks drawn
 * from --seed at step 1, as the first step of `dlc train`) or eval
 * (running statistics; dropout the identity).  Gradients default to
 * train, the mode whose loss training minimises; plain runs to eval.
 */
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "driver/driver.h"
#include "driver/numbers.h"
#include "passes/passes.h"

#define MAX_BINDINGS 32

typedef struct Binding {
  const char *name, *file;
} Binding;

typedef struct RunOpts {
  const char *model, *backend, *params, *grads, *input_grads, *mode;
  const char *threads;
  uint64_t seed;
  Binding in[MAX_BINDINGS], out[MAX_BINDINGS], dim[MAX_BINDINGS];
  int nin, nout, ndim;
  int nthreads;
  int no_fuse, no_tile;       /* --no-fuse, --no-tile, -O0 (both) */
} RunOpts;

static int parse_binding(const char *flag, const char *v, Binding *b, int *n, Diags *d) {
  const char *eq = strchr(v, '=');
  if (!eq || eq == v || !eq[1])
    return diag_plain(d, flag, "expected %s, got '%s'", strcmp(flag, "--dim") ? "NAME=FILE.npy" : "SYM=K", v), -1;
  if (*n == MAX_BINDINGS) return diag_plain(d, flag, "given more than %d times", MAX_BINDINGS), -1;
  b[*n].name = rt_xstrndup(v, (size_t)(eq - v));
  b[*n].file = eq + 1;
  (*n)++;
  return 0;
}

static int parse_run(int argc, char **argv, RunOpts *o, Diags *d) {
  memset(o, 0, sizeof *o);
  o->backend = "interp";
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    if (dlc_opt_flag(argv[i], &o->no_fuse, &o->no_tile)) continue;
    if ((v = dlc_flag(argc, argv, &i, "--backend", &miss))) o->backend = v;
    else if ((v = dlc_flag(argc, argv, &i, "--input", &miss))) {
      if (parse_binding("--input", v, o->in, &o->nin, d)) return -1;
    } else if ((v = dlc_flag(argc, argv, &i, "--output", &miss))) {
      if (parse_binding("--output", v, o->out, &o->nout, d)) return -1;
    } else if ((v = dlc_flag(argc, argv, &i, "--dim", &miss))) {
      if (parse_binding("--dim", v, o->dim, &o->ndim, d)) return -1;
    } else if ((v = dlc_flag(argc, argv, &i, "--params", &miss))) o->params = v;
    else if ((v = dlc_flag(argc, argv, &i, "--grads", &miss))) o->grads = v;
    else if ((v = dlc_flag(argc, argv, &i, "--input-grads", &miss))) o->input_grads = v;
    else if ((v = dlc_flag(argc, argv, &i, "--mode", &miss))) o->mode = v;
    else if ((v = dlc_flag(argc, argv, &i, "--threads", &miss))) o->threads = v;
    else if ((v = dlc_flag(argc, argv, &i, "--seed", &miss))) {
      int64_t seed;
      if (dlc_parse_int("--seed", v, 0, INT64_MAX, &seed, d)) return -1;
      o->seed = (uint64_t)seed;
    } else if (miss) return diag_plain(d, argv[i], "needs a value"), -1;
    else if (argv[i][0] == '-') return diag_plain(d, argv[i], "unknown option (see dlc run --help)"), -1;
    else if (o->model) return diag_plain(d, argv[i], "only one model file"), -1;
    else o->model = argv[i];
  }
  if (!o->model) return diag_plain(d, "dlc run", "no model file given (see dlc run --help)"), -1;
  if (strcmp(o->backend, "interp") && strcmp(o->backend, "c") && strcmp(o->backend, "jit"))
    return diag_plain(d, "--backend", "expected interp, c or jit, got '%s'", o->backend), -1;
  o->nthreads = 1;
  if (o->threads && dlc_parse_threads(o->threads, !strcmp(o->backend, "interp"), &o->nthreads, d)) return -1;
  if (o->mode && strcmp(o->mode, "train") && strcmp(o->mode, "eval"))
    return diag_plain(d, "--mode", "expected train or eval, got '%s'", o->mode), -1;
  if (o->nout && (o->grads || o->input_grads))
    return diag_plain(d, "--output", "cannot be combined with --grads or --input-grads (the gradient run "
                                     "computes the loss and gradients only; run without them for outputs)"), -1;
  if (!o->mode) o->mode = o->grads || o->input_grads ? "train" : "eval";
  return 0;
}

/* "x, y" — the names of g's inputs, for messages. */
static const char *input_names(const Graph *g, char *buf, size_t len) {
  size_t n = 0;
  buf[0] = 0;
  for (int i = 0; i < g->nnodes && n < len; i++)
    if (g->nodes[i].op == OP_INPUT) n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "", g->nodes[i].name);
  return buf;
}

/* Symbol values from --dim SYM=K into dims (0: not given). */
static int parse_dims(const Graph *g, const RunOpts *o, int64_t *dims, Diags *d) {
  for (int s = 0; s < IR_MAX_SYMS; s++) dims[s] = 0;
  for (int k = 0; k < o->ndim; k++) {
    int s = 0;
    while (s < g->nsyms && strcmp(g->syms[s].name, o->dim[k].name)) s++;
    if (s == g->nsyms)
      return diag_plain(d, "--dim", "the model has no dimension symbol '%s'", o->dim[k].name), -1;
    if (dlc_parse_int("--dim", o->dim[k].file, 1, INT32_MAX, &dims[s], d)) return -1;
  }
  return 0;
}

static int is_npy(const char *path) {
  size_t n = strlen(path);
  return n >= 4 && !strcmp(path + n - 4, ".npy");
}

/* An IDX file for input n: u8 data for an f32 input scaled to [0, 1] (as
 * the data sets are), then [rows, ...] reshaped to [rows, n's sample
 * shape] when the sample sizes agree (28x28 images for a [N, 784] input). */
static int read_idx_input(const Graph *g, const Node *n, const char *path, RtTensor *out, Diags *d) {
  RtError err;
  RtTensor raw;
  if (rt_idx_read(path, &raw, &err)) return diag_plain(d, path, "%s", err.msg), -1;
  RtStatus st = RT_OK;
  if (raw.dtype == DT_U8 && n->dtype == DT_F32) st = rt_to_f32_scaled(&raw, 1.0 / 255, 0, out, &err);
  else *out = raw, raw.data = NULL;
  rt_tensor_free(&raw);
  if (st) return diag_plain(d, path, "%s", err.msg), -1;
  int64_t sample = 1, want = 1;
  for (int k = 1; k < out->rank; k++) sample *= out->shape[k];
  for (int k = 1; k < n->shape.rank; k++) want *= DIM_IS_SYM(n->shape.d[k]) ? -1 : n->shape.d[k];
  if (out->rank < 1 || n->shape.rank < 1 || want != sample || !DIM_IS_SYM(n->shape.d[0])) return 0;
  out->rank = n->shape.rank; /* ir_bind_symbols checks the types */
  for (int k = 1; k < n->shape.rank; k++) out->shape[k] = n->shape.d[k];
  (void)g;
  return 0;
}

/* Input id of g from path; a first dimension SYM longer than --dim SYM=K
 * gives its first K rows. */
static int read_input(const Graph *g, int id, const char *path, const int64_t *dims, RtTensor *out, Diags *d) {
  const Node *n = &g->nodes[id];
  RtError err;
  if (!is_npy(path)) {
    if (read_idx_input(g, n, path, out, d)) return -1;
  } else if (rt_npy_read(path, out, &err)) {
    return diag_plain(d, path, "%s", err.msg), -1;
  }
  if (n->shape.rank && out->rank && DIM_IS_SYM(n->shape.d[0])) {
    int64_t k = dims[DIM_SYM_ID(n->shape.d[0])];
    if (k && out->shape[0] > k) out->shape[0] = k;
  }
  return 0;
}

/* The value of symbol s: --dim, else the dimension of a given input. */
static int64_t sym_value(const Graph *g, const RtTensor *vals, const int64_t *dims, int s) {
  if (dims[s]) return dims[s];
  for (int i = 0; i < g->nnodes; i++)
    for (int k = 0; g->nodes[i].op == OP_INPUT && vals[i].data && k < g->nodes[i].shape.rank; k++)
      if (g->nodes[i].shape.d[k] == DIM_SYM(s) && k < vals[i].rank) return vals[i].shape[k];
  return 0;
}

/* Input id (declared `= randn` or `= rand`), drawn from its own stream of
 * seed: every symbol of its shape must be bound by --dim or another input. */
static int draw_noise(const Graph *g, int id, const RtTensor *vals, const int64_t *dims, uint64_t seed,
                      RtTensor *out, Diags *d) {
  const Node *n = &g->nodes[id];
  int64_t shape[IR_MAX_RANK];
  for (int k = 0; k < n->shape.rank; k++) {
    Dim dm = n->shape.d[k];
    shape[k] = DIM_IS_SYM(dm) ? sym_value(g, vals, dims, DIM_SYM_ID(dm)) : dm;
    if (!shape[k])
      return diag_plain(d, "dlc run", "input '%s' is drawn from the seed, but no input binds its dimension %s: "
                        "give --dim %s=K (or --input %s=FILE.npy)", n->name, g->syms[DIM_SYM_ID(dm)].name,
                        g->syms[DIM_SYM_ID(dm)].name, n->name), -1;
  }
  RtError err;
  if (rt_tensor_alloc(out, DT_F32, n->shape.rank, shape, &err)) return diag_plain(d, "dlc run", "%s", err.msg), -1;
  RtRng r;
  rt_rng_seed_stream(&r, seed, n->name);
  float *v = out->data;
  for (int64_t i = 0, count = rt_tensor_numel(out); i < count; i++)
    v[i] = (float)(n->noise == NOISE_RANDN ? rt_rng_normal(&r) : rt_rng_uniform(&r));
  return 0;
}

/* Every --input names an input of the model (before the pipeline, which
 * drops the inputs that the outputs asked for do not need). */
static int check_input_names(const Graph *model, const RunOpts *o, Diags *d) {
  char names[512];
  for (int k = 0; k < o->nin; k++)
    if (ir_find_input(model, o->in[k].name) < 0)
      return diag_plain(d, "--input", "the model has no input '%s' (its inputs: %s)", o->in[k].name,
                        input_names(model, names, sizeof names)), -1;
  return 0;
}

/* The inputs of g, the graph run (an input it does not need is passed
 * over with a note). */
static int read_inputs(const Graph *g, const RunOpts *o, RtTensor *vals, Diags *d) {
  int64_t dims[IR_MAX_SYMS];
  if (parse_dims(g, o, dims, d)) return -1;
  for (int k = 0; k < o->nin; k++) {
    int id = ir_find_input(g, o->in[k].name);
    if (id < 0) {
      fprintf(stderr, "note: input '%s' is not needed for the outputs asked for; %s is not read\n", o->in[k].name,
              o->in[k].file);
      continue;
    }
    rt_tensor_free(&vals[id]);
    if (read_input(g, id, o->in[k].file, dims, &vals[id], d)) return -1;
  }
  int step = ir_find_input(g, "step"); /* made by train-mode dropout, unless the model has one */
  if (step >= 0 && !vals[step].data) {
    RtError err;
    if (rt_tensor_alloc(&vals[step], DT_F32, 0, NULL, &err)) return diag_plain(d, "dlc run", "%s", err.msg), -1;
    *(float *)vals[step].data = 1;
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_INPUT || vals[i].data) continue;
    if (n->noise == NOISE_NONE)
      return diag_plain(d, "dlc run", "no value for input '%s' (give --input %s=FILE.npy)", n->name, n->name), -1;
    if (draw_noise(g, i, vals, dims, o->seed, &vals[i], d)) return -1;
  }
  return 0;
}

/* --output names: only those outputs are computed (the others are taken
 * out of the model before the pipeline, whose dead-code pass then drops
 * what only they needed). */
static int keep_asked_outputs(Graph *g, const RunOpts *o, Diags *d) {
  if (!o->nout) return 0;
  for (int k = 0; k < o->nout; k++)
    if (ir_find_output(g, o->out[k].name) < 0) return diag_plain(d, "--output", "the model has no output '%s'", o->out[k].name), -1;
  int n = 0;
  for (int i = 0; i < g->noutputs; i++) {
    int asked = 0;
    for (int k = 0; k < o->nout; k++) asked |= !strcmp(o->out[k].name, g->outputs[i].name);
    if (asked) g->outputs[n++] = g->outputs[i];
  }
  g->noutputs = n;
  return 0;
}

static int load_params(const Graph *g, const RunOpts *o, RtTensorSet *set, Diags *d) {
  RtError err;
  if (o->params) {
    if (rt_safetensors_read(o->params, set, &err)) return diag_plain(d, o->params, "%s", err.msg), -1;
    if (ir_params_check(g, set, o->params, &err)) return diag_plain(d, o->params, "%s", err.msg), -1;
    return 0;
  }
  if (ir_params_init(g, o->seed, set, &err)) return diag_plain(d, "dlc run", "%s", err.msg), -1;
  return 0;
}

static int run_interp(const Graph *g, RtTensor *vals, const int64_t *symvals, Diags *d) {
  RtError err;
  InterpOpts io = {0, 0};
  if (ir_interp(g, vals, symvals, &io, &err)) return diag_plain(d, "dlc run", "%s", err.msg), -1;
  return 0;
}

/* backend: "c" or "jit", its parallel loops on nthreads threads. */
static int run_compiled(PassCtx *pc, RtTensor *vals, const int64_t *symvals, const RtTensorSet *params,
                        const char *backend, int nthreads, Diags *d) {
  Graph *g = pc->g;
  for (int s = 0; s < g->nsyms; s++) g->syms[s].max = symvals[s];
  PassOpts po = *pc->o;
  po.stages = PASS_STAGE_KERNEL; /* the graph stage ran before the inputs were read */
  pc->o = &po;
  if (pass_run(pc)) return -1;
  Program *p = pc->prog;
  RtError err;
  int rc = -1;
  const char *flag = strcmp(backend, "jit") ? "--backend=c" : "--backend=jit";
  CModule *m = strcmp(backend, "jit") ? cg_c_build(p, nthreads > 1 ? CG_C_THREADS_FLAGS : NULL, &err) : cg_jit_build(p, &err);
  RtPool *pool = NULL;
  if (!m || (nthreads > 1 && rt_pool_new(nthreads, &pool, &err))) {
    diag_plain(d, m ? "--threads" : flag, "%s", err.msg);
    cg_c_free(m);
    kir_program_free(p);
    return -1;
  }
  cg_c_set_pool(m, pool);
  const Func *f = &p->funcs[0];
  void **args = rt_xcalloc((size_t)f->nargs + 1, sizeof *args);
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &p->bufs[f->args[i]];
    int id = b->kind == BUF_OUTPUT ? g->outputs[ir_find_output(g, b->name)].id : b->node;
    RtTensor *t = &vals[id];
    if (b->kind == BUF_OUTPUT && !t->data) {
      int64_t shape[IR_MAX_RANK];
      for (int k = 0; k < b->shape.rank; k++) shape[k] = ir_dim_value(g, b->shape.d[k], symvals);
      rt_tensor_alloc(t, b->dtype, b->shape.rank, shape, &err);
    }
    args[i] = t->data;
  }
  if (cg_c_set_params(m, params, &err) || cg_c_call(m, f->name, symvals, args, &err))
    diag_plain(d, flag, "%s", err.msg);
  else
    rc = 0;
  rt_xfree(args);
  cg_c_free(m);
  rt_pool_free(pool);
  kir_program_free(p);
  return rc;
}

static void summarise(const Graph *g, const char *name, const RtTensor *t) {
  char tb[128];
  printf("%s: %s", name, rt_shape_str(tb, sizeof tb, t->dtype, t->rank, t->shape));
  int64_t n = rt_tensor_numel(t);
  if (t->dtype == DT_F32) {
    const float *v = t->data;
    printf(" =");
    for (int64_t i = 0; i < n && i < 8; i++) printf(" %.6g", (double)v[i]);
    if (n > 8) printf(" ...");
  }
  printf("\n");
  (void)g;
}

/* The files a run writes (outputs as .npy, gradients as safetensors):
 * encoded first and written as one set at the end, so a run that cannot
 * write one of them writes none (rt_write_files_atomic). */
typedef struct RunFiles {
  RtEncoded enc[MAX_BINDINGS + 2];
  RtTensorSet sets[2];   /* the gradient sets the encodings borrow from */
  int n, nsets;
} RunFiles;

/* Gradients of the outputs named like params (or inputs), to go to path. */
static int add_grads(RunFiles *f, const Graph *g, const Graph *model, OpKind kind, RtTensor *vals,
                     const char *path, Diags *d) {
  RtTensorSet *set = &f->sets[f->nsets++];
  RtError err;
  rt_set_init(set);
  for (int i = 0; i < g->noutputs; i++) {
    int src = kind == OP_PARAM ? ir_find_param(model, g->outputs[i].name) : ir_find_input(model, g->outputs[i].name);
    if (src >= 0 && rt_set_add_copy(set, g->outputs[i].name, &vals[g->outputs[i].id], &err))
      return diag_plain(d, path, "%s", err.msg), -1;
  }
  if (rt_safetensors_encode(path, set, &f->enc[f->n], &err)) return diag_plain(d, path, "%s", err.msg), -1;
  f->n++;
  return 0;
}

static int add_outputs(RunFiles *f, const Graph *g, const RunOpts *o, RtTensor *vals, Diags *d) {
  for (int k = 0; k < o->nout; k++)
    if (ir_find_output(g, o->out[k].name) < 0) {
      diag_plain(d, "--output", "the model has no output '%s'", o->out[k].name);
      return -1;
    }
  for (int i = 0; i < g->noutputs; i++) {
    const RtTensor *t = &vals[g->outputs[i].id];
    for (int k = 0; k < o->nout; k++) {
      if (strcmp(o->out[k].name, g->outputs[i].name)) continue;
      RtError err;
      if (rt_npy_encode(o->out[k].file, t, &f->enc[f->n], &err)) return diag_plain(d, o->out[k].file, "%s", err.msg), -1;
      f->n++;
    }
    if (!o->nout) summarise(g, g->outputs[i].name, t);
  }
  return 0;
}

static int write_run_files(RunFiles *f, Diags *d) {
  RtError err;
  if (f->n && rt_write_encoded(f->enc, f->n, &err)) return diag_plain(d, "dlc run", "%s", err.msg), -1;
  return 0;
}

static void free_run_files(RunFiles *f) {
  for (int i = 0; i < f->n; i++) rt_encoded_free(&f->enc[i]);
  for (int i = 0; i < f->nsets; i++) rt_set_free(&f->sets[i]);
}

/* The graph a run computes: the gradient graph, the forward pass in
 * training mode (in grads, *g pointing there), or the model itself. */
static void free_bindings(RunOpts *o) {
  for (int k = 0; k < o->nin; k++) rt_xfree((char *)o->in[k].name);
  for (int k = 0; k < o->nout; k++) rt_xfree((char *)o->out[k].name);
  for (int k = 0; k < o->ndim; k++) rt_xfree((char *)o->dim[k].name);
}

int dlc_cmd_run(int argc, char **argv, const char *usage) {
  Diags d;
  diag_init(&d, stderr);
  RunOpts o;
  int rc = parse_run(argc, argv, &o, &d);
  if (rc) {
    free_bindings(&o);
    return rc > 0 ? dlc_usage(usage, 0) : 2;
  }
  Model m;
  if (dlc_load_model(&m, o.model, NULL, 0, &d)) {
    free_bindings(&o);
    return 1;
  }
  /* one run: the inputs decide the symbols, and the C backend is compiled for them */
  for (int s = 0; s < m.g.nsyms; s++) m.g.syms[s].max = 0;
  Graph grads;
  int want_grads = o.grads || o.input_grads;
  if (check_input_names(&m.g, &o, &d) || (!want_grads && keep_asked_outputs(&m.g, &o, &d))) {
    fe_model_free(&m);
    free_bindings(&o);
    return 1;
  }
  ir_graph_init(&grads, m.g.name, &d);
  if (want_grads && (!m.train.present || m.train.loss < 0)) {
    diag_plain(&d, o.model, "--grads needs a training section with a loss");
    ir_graph_free(&grads);
    fe_model_free(&m);
    free_bindings(&o);
    return 1;
  }
  /* the graph stage now; the kernel stage (compiled backends) once the inputs fix the sizes */
  PassOpts po = {.stages = PASS_STAGE_GRAPH, .train_mode = !strcmp(o.mode, "train"), .seed = o.seed,
                 .wrt_params = o.grads != NULL, .wrt_inputs = o.input_grads != NULL, .no_fuse = o.no_fuse,
                 .no_tiles = o.no_tile};
  Graph *g = want_grads ? &grads : &m.g;
  Program prog;
  PassCtx pc;
  pass_ctx_init(&pc, want_grads ? PIPE_GRADS : PIPE_INFER, &m.g, m.train.present ? m.train.loss : -1, &g, &prog, &po, &d);
  if (pass_run(&pc)) {
    pass_ctx_free(&pc);
    ir_graph_free(&grads);
    fe_model_free(&m);
    free_bindings(&o);
    return 1;
  }
  RtTensor *vals = rt_xcalloc((size_t)g->nnodes + 1, sizeof *vals);
  RtTensorSet params;
  rt_set_init(&params);
  int64_t symvals[IR_MAX_SYMS] = {0};
  RtError err;
  int status = 1;
  if (read_inputs(g, &o, vals, &d) || (!o.params && dlc_copy_weights(&m, &params, &d)) ||
      load_params(g, &o, &params, &d)) /* an ONNX model's own weights come first */
    goto done;
  if (ir_bind_symbols(g, vals, symvals, &err)) {
    diag_plain(&d, o.model, "%s", err.msg);
    goto done;
  }
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_PARAM) {
      RtTensor *t = rt_set_find(&params, g->nodes[i].name);
      vals[i] = *t; /* borrowed: cleared before freeing below */
    }
  if (dlc_check_input_ids(g, vals, &d)) goto done; /* compiled code would read NaN */
  rc = strcmp(o.backend, "interp") ? run_compiled(&pc, vals, symvals, &params, o.backend, o.nthreads, &d)
                                   : run_interp(g, vals, symvals, &d);
  RunFiles files = {.n = 0};
  if (rc == 0 && want_grads) {
    printf("loss: %.9g\n", (double)((float *)vals[g->outputs[0].id].data)[0]);
    if ((!o.grads || add_grads(&files, g, &m.g, OP_PARAM, vals, o.grads, &d) == 0) &&
        (!o.input_grads || add_grads(&files, g, &m.g, OP_INPUT, vals, o.input_grads, &d) == 0) &&
        write_run_files(&files, &d) == 0)
      status = 0;
  } else if (rc == 0 && add_outputs(&files, g, &o, vals, &d) == 0 && write_run_files(&files, &d) == 0) {
    status = 0;
  }
  free_run_files(&files);
done:
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op != OP_PARAM) rt_tensor_free(&vals[i]);
  rt_xfree(vals);
  rt_set_free(&params);
  free_bindings(&o);
  pass_ctx_free(&pc);
  ir_graph_free(&grads);
  fe_model_free(&m);
  return status;
}
