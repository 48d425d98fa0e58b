/*
 * dlc.c — the dlc command: subcommands, flags, and the pipeline.
 *
 *   dlc MODEL.dl [-o OUT.c] [--emit=c|ir|dot|llvm|obj]   compile
 *   dlc check MODEL.dl                          summary of a model
 *   dlc run MODEL.dl --input x=x.npy ...        run it once
 *
 * Every subcommand parses its flags, loads the model through the frontend,
 * runs the pass pipeline and hands the result to a backend.  Only this
 * file decides exit statuses: 0 on success, 1 on any error in the input
 * (model, data, flags), 2 on a usage error.  Files are written atomically.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "driver/driver.h"
#include "driver/plot.h"
#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "onnx/onnx.h"
#include "passes/passes.h"

#define DLC_VERSION "0.1.0"

static const char *usage_main =
    "usage: dlc MODEL.dl [-o OUT] [--emit=c|ir|dot|llvm|obj] [options]   compile a model\n"
    "       dlc check MODEL.dl                                    summarise a model\n"
    "       dlc run MODEL.dl --input NAME=FILE.npy ...            run a model once\n"
    "       dlc train MODEL.dl [options]                          train a model\n"
    "       dlc repl [MODEL.dl]                                   interactive session\n"
    "       dlc eval MODEL.dl --params W.safetensors              test accuracy of the emitted C\n"
    "       dlc sample MODEL.dl --params W.safetensors --prime TEXT  text from a character-level model\n"
    "       dlc export MODEL.dl [-o OUT.onnx] [--params W]        the inference graph as ONNX\n"
    "       dlc import MODEL.onnx [-o OUT.dl]                     an ONNX model as .dl + safetensors\n"
    "       dlc plot METRICS.csv -o OUT.svg|OUT.png               loss and accuracy curves\n"
    "       dlc grid IMAGES.npy -o OUT.png [--cols N]             a grid of images as PNG\n"
    "       (MODEL.onnx works wherever MODEL.dl does, with its initializers as weights)\n"
    "       dlc COMMAND --help                                    help on a command\n"
    "\n"
    "compile options:\n"
    "  -o OUT.c               write OUT.c and OUT.h (default: MODEL.c, MODEL.h\n"
    "                         for C; standard output for ir and dot)\n"
    "  --emit=c|ir|dot        C source (default), the graph IR, or Graphviz DOT\n"
    "  --emit=llvm            the LLVM module, optimised for this machine\n"
    "  --emit=obj             an object file for this machine, and its header\n"
    "                         (OUT.h beside OUT.o; default MODEL.o, MODEL.h)\n"
    "  --train                also emit the training step (train_step) as C\n"
    "  --step                 a recurrent model's step function: the model on one step,\n"
    "                         its scans' states as inputs and outputs (docs/generated-c.md)\n"
    "  --embed-params FILE    embed the weights of FILE.safetensors as constants\n"
    "  --max SYM=N            largest value of a symbolic dimension (default:\n"
    "                         the training batch, else 64)\n"
    "  --dump-after=STEP|all  print the IR after a pipeline step to stderr\n"
    "  --verify               check the IR after every step (graphs and kernels)\n"
    "  --no-tile              no register tiles (linear layers, matmuls in row order)\n"
    "  --no-fuse              no kernel fusion (every op its own loop nest)\n"
    "  -O0                    no fusion and no register tiles\n"
    "  --list-steps           print every pipeline and its steps\n"
    "  --version              print the version\n";

static const char *usage_check =
    "usage: dlc check MODEL.dl [--max SYM=N] [--no-fuse] [--no-tile] [-O0]\n"
    "Prints each computed value of the inference graph with its shape and the\n"
    "number of parameters it uses, the total parameters, the bytes of the\n"
    "static arena the emitted inference code needs and its float operations\n"
    "per example; with a training section, the same of the training step at\n"
    "its batch.  --no-fuse, --no-tile and -O0 count the code those flags\n"
    "make (dlc, dlc train): unfused kernels need more arena.\n";

static const char *usage_run =
    "usage: dlc run MODEL.dl [--backend=interp|c|jit] --input NAME=FILE.npy ...\n"
    "                        [--output NAME=FILE.npy ...] [--params FILE.safetensors]\n"
    "                        [--seed S] [--dim SYM=K] [--grads FILE] [--input-grads FILE]\n"
    "                        [--mode train|eval] [--threads N] [--no-fuse] [--no-tile] [-O0]\n"
    "Runs the model once.  Inputs and outputs are NumPy .npy files (f32, i32,\n"
    "i64; C order); an input may also be an IDX file (MNIST's, gzip'd or not:\n"
    "u8 images for an f32 input become [0, 1], shaped as the input's samples).\n"
    "Parameters come from --params, or are initialised from the seed (default\n"
    "0).  With --output only the outputs named are computed, and only the\n"
    "inputs they need are read; without, every output is summarised on stdout.\n"
    "  --dim SYM=K            bind dimension symbol SYM (the batch N): a longer\n"
    "                         input file gives its first K rows\n"
    "  --seed S               also draws the inputs declared = randn or = rand\n"
    "                         that are not given (a generator's noise)\n"
    "  --backend=interp       the reference interpreter (default)\n"
    "  --backend=c            emitted C, compiled with $CC (default cc) and\n"
    "                         called through libffi\n"
    "  --backend=jit          the LLVM module, compiled in memory (ORC LLJIT)\n"
    "  --threads N            threads for the parallel loops of c and jit\n"
    "                         (default 1; the outputs are the same bits)\n"
    "  --no-fuse              c and jit: no kernel fusion\n"
    "  --no-tile              c and jit: no register tiles\n"
    "  -O0                    c and jit: neither\n"
    "  --grads FILE           the gradient of the training loss with respect to\n"
    "                         every trainable parameter, as safetensors (give\n"
    "                         the labels as inputs too, e.g. --input y=y.npy)\n"
    "  --input-grads FILE     the gradient with respect to each f32 input\n"
    "  --mode train|eval      how batch norm and dropout behave: train uses the\n"
    "                         batch's statistics and drops with masks drawn from\n"
    "                         the seed (as the first step of dlc train); eval\n"
    "                         uses the running statistics and keeps every unit.\n"
    "                         Default: train with --grads/--input-grads (the\n"
    "                         gradients of the training loss), eval otherwise.\n"
    "                         --output is refused with --grads/--input-grads.\n";

int dlc_usage(const char *text, int status) {
  fputs(text, status ? stderr : stdout);
  return status;
}

/* --- flags ---------------------------------------------------------------------- */

/* Matches argv[*i] against --name=VALUE or --name VALUE (or -o VALUE);
 * returns the value, advancing *i, or NULL.  Sets *missing when the flag
 * is there without a value. */
int dlc_opt_flag(const char *arg, int *no_fuse, int *no_tile) {
  int fuse = !strcmp(arg, "--no-fuse"), tile = !strcmp(arg, "--no-tile"), o0 = !strcmp(arg, "-O0");
  *no_fuse |= fuse || o0;
  *no_tile |= tile || o0;
  return fuse || tile || o0;
}

const char *dlc_flag(int argc, char **argv, int *i, const char *name, int *missing) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != 0) return NULL;
  if (*i + 1 >= argc) {
    *missing = 1;
    return NULL;
  }
  return argv[++*i];
}

int dlc_parse_max(Graph *g, const char *spec, Diags *d) {
  const char *eq = strchr(spec, '=');
  char *end;
  errno = 0;
  long long v = eq ? strtoll(eq + 1, &end, 10) : 0;
  if (!eq || eq == spec || *end || v < 1 || errno == ERANGE || v > IR_MAX_TENSOR_BYTES) {
    diag_plain(d, "--max", "expected SYM=N with 1 <= N <= %lld, got '%s'", (long long)IR_MAX_TENSOR_BYTES, spec);
    return -1;
  }
  char name[64];
  snprintf(name, sizeof name, "%.*s", (int)(eq - spec), spec);
  int s = ir_symbol_find(g, name);
  if (s < 0) {
    diag_plain(d, "--max", "the model has no symbolic dimension '%s'", name);
    return -1;
  }
  g->syms[s].max = v;
  return 0;
}

void dlc_default_max(Model *m) {
  for (int s = 0; s < m->g.nsyms; s++)
    if (m->g.syms[s].max == 0) m->g.syms[s].max = m->train.present && m->train.batch > 0 ? m->train.batch : 64;
}

/* --- writing files ------------------------------------------------------------------ */

typedef struct MemOut {
  char *buf;
  size_t len;
  FILE *f;
} MemOut;

static void mem_open(MemOut *m) {
  m->buf = NULL;
  m->len = 0;
  m->f = open_memstream(&m->buf, &m->len);
}

/* Closes the n streams and writes their bytes to paths[i], and the
 * nextra encoded files, as one atomic set: all of them or, on any error,
 * none (rt_write_files_atomic). */
static int mem_commit_set(MemOut *m, const char *const *paths, int n, const RtEncoded *extra, int nextra,
                          Diags *d) {
  RtFileOut outs[4];
  const void *chunks[2];
  IR_ASSERT(n <= 2 && nextra <= 2);
  for (int i = 0; i < n; i++) {
    fclose(m[i].f);
    chunks[i] = m[i].buf;
    outs[i] = (RtFileOut){paths[i], &chunks[i], &m[i].len, 1};
  }
  for (int i = 0; i < nextra; i++) outs[n + i] = extra[i].out;
  RtError err;
  RtStatus st = rt_write_files_atomic(outs, n + nextra, &err);
  for (int i = 0; i < n; i++) free(m[i].buf);
  if (st) diag_plain(d, "dlc", "%s", err.msg);
  return st ? -1 : 0;
}

static int mem_commit(MemOut *m, const char *path, Diags *d) { return mem_commit_set(m, &path, 1, NULL, 0, d); }

/* "dir/model.dl" -> "model" (arena). */
static const char *stem(Arena *a, const char *path, const char *ext_out) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strcspn(base, ".");
  return arena_printf(a, "%.*s%s", (int)n, base, ext_out);
}

/* The inference C of m; with embedded weights, batch norms are first
 * folded into the layers before them (the infer-embed pipeline), which
 * needs the weights' values. */
static int emit_c_folded(Model *m, const char *cpath, const char *embed_path, const PassOpts *po, Diags *d) {
  RtTensorSet embed;
  RtError err;
  rt_set_init(&embed);
  if (embed_path && rt_safetensors_read(embed_path, &embed, &err)) {
    diag_plain(d, embed_path, "%s", err.msg);
    return -1;
  }
  RtOomScope oom; /* the weights are not owned blocks */
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) {
    rt_set_free(&embed);
    rt_oom();
  }
  int own = !embed_path && m->weights; /* an ONNX model's initializers */
  if (own && dlc_copy_weights(m, &embed, d)) {
    rt_oom_leave(&oom);
    rt_set_free(&embed);
    return -1;
  }
  int embedded = own || embed_path;
  Graph *g = &m->g;
  Program p;
  PassCtx c;
  pass_ctx_init(&c, embedded ? PIPE_INFER_EMBED : PIPE_INFER, g, -1, &g, &p, po, d);
  c.params = &embed;
  int rc = pass_run(&c);
  if (rc == 0) {
    rc = dlc_write_c(&p, cpath, embedded ? &embed : NULL, NULL, 0, d);
    kir_program_free(&p);
  }
  pass_ctx_free(&c);
  rt_oom_leave(&oom);
  rt_set_free(&embed);
  return rc;
}

/* --- compile ---------------------------------------------------------------------------- */

typedef struct CompileOpts {
  const char *model, *out, *emit, *embed, *dump_after;
  const char *max[IR_MAX_SYMS];
  int nmax, verify, train, no_tile, no_fuse, step;
} CompileOpts;

static int parse_compile(int argc, char **argv, CompileOpts *o, Diags *d) {
  memset(o, 0, sizeof *o);
  o->emit = "c";
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    if (!strcmp(argv[i], "--verify")) o->verify = 1;
    else if (!strcmp(argv[i], "--train")) o->train = 1;
    else if (dlc_opt_flag(argv[i], &o->no_fuse, &o->no_tile)) continue;
    else if (!strcmp(argv[i], "--step")) o->step = 1;
    else if ((v = dlc_flag(argc, argv, &i, "-o", &miss))) o->out = v;
    else if ((v = dlc_flag(argc, argv, &i, "--emit", &miss))) o->emit = v;
    else if ((v = dlc_flag(argc, argv, &i, "--embed-params", &miss))) o->embed = v;
    else if ((v = dlc_flag(argc, argv, &i, "--dump-after", &miss))) o->dump_after = v;
    else if ((v = dlc_flag(argc, argv, &i, "--max", &miss))) {
      if (o->nmax == IR_MAX_SYMS) return diag_plain(d, "--max", "given too many times"), -1;
      o->max[o->nmax++] = v;
    } else if (miss) return diag_plain(d, argv[i], "needs a value"), -1;
    else if (argv[i][0] == '-') return diag_plain(d, argv[i], "unknown option (see dlc --help)"), -1;
    else if (o->model) return diag_plain(d, argv[i], "only one model file can be compiled at a time"), -1;
    else o->model = argv[i];
  }
  if (!o->model) return diag_plain(d, "dlc", "no model file given (see dlc --help)"), -1;
  if (o->dump_after && pass_check_step_name(o->dump_after, d)) return -1;
  if (strcmp(o->emit, "c") && strcmp(o->emit, "ir") && strcmp(o->emit, "dot") && strcmp(o->emit, "llvm") &&
      strcmp(o->emit, "obj"))
    return diag_plain(d, "--emit", "expected c, ir, dot, llvm or obj, got '%s'", o->emit), -1;
  if (o->train && strcmp(o->emit, "c"))
    return diag_plain(d, "--train", "the training step is emitted as C only; --emit=%s does not go with it", o->emit), -1;
  return 0;
}

/* Loads a model and applies --max flags; returns 0 or -1 (errors reported). */
int dlc_load_model(Model *m, const char *path, const char *const *max, int nmax, Diags *d) {
  if ((onnx_is_model_path(path) ? dlc_load_onnx(m, path, d) : fe_load_file(m, path, d)) != 0) return -1;
  for (int i = 0; i < nmax; i++)
    if (dlc_parse_max(&m->g, max[i], d)) return -1;
  dlc_default_max(m);
  return ir_check_sizes(&m->g, d) ? -1 : 0;   /* with the symbols at their largest values */
}

int dlc_write_c(const Program *p, const char *cpath, const RtTensorSet *embed, const RtEncoded *extra, int nextra,
                Diags *d) {
  return dlc_write_c_sections(p, cpath, embed, NULL, extra, nextra, d);
}

int dlc_write_c_sections(const Program *p, const char *cpath, const RtTensorSet *embed, const CgSections *sections,
                         const RtEncoded *extra, int nextra, Diags *d) {
  Arena a;
  arena_init(&a);
  size_t n = strlen(cpath);
  const char *hpath = n > 2 && !strcmp(cpath + n - 2, ".c") ? arena_printf(&a, "%.*s.h", (int)(n - 2), cpath)
                                                             : arena_printf(&a, "%s.h", cpath);
  const char *hbase = strrchr(hpath, '/') ? strrchr(hpath, '/') + 1 : hpath;
  EmitOpts eo = {hbase, embed, sections};
  MemOut out[2]; /* the C file and its header, written together or not at all */
  mem_open(&out[0]);
  mem_open(&out[1]);
  RtOomScope oom; /* the streams are not owned blocks */
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) {
    fclose(out[0].f), fclose(out[1].f), free(out[0].buf), free(out[1].buf);
    rt_oom();
  }
  int rc = cg_emit_c(p, out[0].f, out[1].f, &eo, d);
  rt_oom_leave(&oom);
  const char *paths[2] = {cpath, hpath};
  if (rc) {
    fclose(out[0].f), fclose(out[1].f), free(out[0].buf), free(out[1].buf);
  } else {
    rc = mem_commit_set(out, paths, 2, extra, nextra, d);
  }
  arena_free(&a);
  return rc;
}

/* --emit=llvm: the module text to path (stdout when NULL).  --emit=obj: the
 * object file to path and the C emitter's header beside it. */
static int write_llvm(const Program *p, const char *path, const char *embed_path, const Model *m, int obj, Diags *d) {
  Arena a;
  arena_init(&a);
  size_t n = path ? strlen(path) : 0;
  const char *hpath = n > 2 && !strcmp(path + n - 2, ".o") ? arena_printf(&a, "%.*s.h", (int)(n - 2), path)
                                                           : arena_printf(&a, "%s.h", path ? path : "");
  RtTensorSet embed;
  RtError err;
  rt_set_init(&embed);
  int rc = embed_path && rt_safetensors_read(embed_path, &embed, &err) ? -1 : 0;
  if (rc) diag_plain(d, embed_path, "%s", err.msg);
  if (!rc && !embed_path && m->weights) { /* an ONNX model's initializers */
    rc = dlc_copy_weights(m, &embed, d);
    embed_path = m->src.path;
  }
  EmitOpts eo = {strrchr(hpath, '/') ? strrchr(hpath, '/') + 1 : hpath, embed_path ? &embed : NULL};
  MemOut c, h;
  mem_open(&c);
  mem_open(&h);
  RtOomScope oom; /* the weights and streams are not owned blocks */
  volatile int c_open = 1;
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) {
    if (c_open) fclose(c.f), free(c.buf);
    fclose(h.f), free(h.buf);
    rt_set_free(&embed);
    rt_oom();
  }
  if (!rc) rc = cg_emit_c(p, c.f, h.f, &eo, d); /* the header, and the checks of --embed-params */
  fclose(c.f), free(c.buf), c_open = 0;
  char *data = NULL;
  size_t len = 0;
  if (!rc && cg_emit_llvm(p, &eo, obj ? CG_LLVM_OBJ : CG_LLVM_IR, &data, &len, &err))
    rc = -1, diag_plain(d, "dlc", "%s", err.msg);
  rt_oom_leave(&oom);
  fclose(h.f);
  const void *chunks[2] = {data, h.buf}; /* the object and its header, written as one set */
  RtFileOut outs[2] = {{path, &chunks[0], &len, 1}, {hpath, &chunks[1], &h.len, 1}};
  if (!rc && path && rt_write_files_atomic(outs, obj ? 2 : 1, &err)) rc = -1, diag_plain(d, "dlc", "%s", err.msg);
  if (!rc && !path) fwrite(data, 1, len, stdout);
  free(h.buf);
  free(data);
  rt_set_free(&embed);
  arena_free(&a);
  return rc;
}

/* --step: the model's graph is replaced by its step graph (passes/step.c)
 * and kept in *model_g, since the step graph's source locations point
 * into it (put it back before fe_model_free). */
static int use_step_graph(Model *m, Graph *model_g) {
  Graph step;
  if (pass_step_graph(&m->g, &step)) {
    ir_graph_free(&step);
    return -1;
  }
  *model_g = m->g;
  m->g = step;
  return 0;
}

static void free_compiled_model(Model *m, Graph *model_g, int step) {
  if (step) {
    ir_graph_free(&m->g);
    m->g = *model_g;
  }
  fe_model_free(m);
}

static int cmd_compile(int argc, char **argv) {
  Diags d;
  diag_init(&d, stderr);
  CompileOpts o;
  int rc = parse_compile(argc, argv, &o, &d);
  if (rc) return rc > 0 ? dlc_usage(usage_main, 0) : 2;
  Model m;
  if (dlc_load_model(&m, o.model, o.max, o.nmax, &d)) return 1;
  Graph model_g; /* --step: the model's own graph, kept while its step graph is compiled */
  if (o.step && (o.train || use_step_graph(&m, &model_g))) {
    if (o.train) diag_plain(&d, "--step", "emits the inference step function; it does not go with --train");
    fe_model_free(&m);
    return 1;
  }
  Arena a;
  arena_init(&a);
  int status = 0;
  PassOpts po = {o.dump_after, stderr, o.verify};
  po.no_tiles = o.no_tile;
  po.no_fuse = o.no_fuse;
  if (o.train) {
    status = dlc_emit_train(&m, o.out ? o.out : stem(&a, o.model, "_train.c"), &po, &d);
  } else if (!strcmp(o.emit, "ir") || !strcmp(o.emit, "dot")) {
    po.stages = PASS_STAGE_GRAPH;
    Graph *g = &m.g;
    PassCtx c;
    pass_ctx_init(&c, PIPE_INFER, g, -1, &g, NULL, &po, &d);
    if (pass_run(&c)) {
      pass_ctx_free(&c);
      arena_free(&a);
      free_compiled_model(&m, &model_g, o.step);
      return 1;
    }
    pass_ctx_free(&c);
    MemOut out;
    mem_open(&out);
    (!strcmp(o.emit, "ir") ? ir_dump : ir_dump_dot)(&m.g, out.f); /* allocates nothing */
    if (o.out)
      status = mem_commit(&out, o.out, &d) ? 1 : 0;
    else {
      fclose(out.f);
      fwrite(out.buf, 1, out.len, stdout);
      free(out.buf);
    }
  } else {
    Program p;
    int obj = !strcmp(o.emit, "obj");
    if (!obj && strcmp(o.emit, "llvm")) {
      status = emit_c_folded(&m, o.out ? o.out : stem(&a, o.model, ".c"), o.embed, &po, &d) ? 1 : 0;
    } else if (pass_pipeline_infer(&m.g, &p, &po, &d)) {
      status = 1;
    } else {
      status = write_llvm(&p, o.out ? o.out : obj ? stem(&a, o.model, ".o") : NULL, o.embed, &m, obj, &d) ? 1 : 0;
      kir_program_free(&p);
    }
  }
  arena_free(&a);
  free_compiled_model(&m, &model_g, o.step);
  return status;
}

/* --- check ---------------------------------------------------------------------------- */

static int64_t params_of(const Graph *g, const Node *n) {
  int64_t k = 0;
  for (int i = 0; i < n->nin; i++)
    if (g->nodes[n->in[i]].op == OP_PARAM && !g->nodes[n->in[i]].buffer) k += ir_numel_max(g, &g->nodes[n->in[i]].shape);
  return k;
}

static int64_t arena_bytes(const Program *p) {
  int64_t n = 0;
  for (int t = 0; t < DT_COUNT; t++) n += p->arena_size[t] * (int64_t)rt_dtype_size((DType)t);
  return n;
}

/* "what: F FLOP per example": one call of f at batch (the first symbol's
 * value, or 1 without symbols) divided by the batch. */
static void print_flops(const char *what, const Func *f, const int64_t *syms, int64_t batch) {
  int exact;
  double per = (double)dlc_flops(f, syms, &exact) / (double)(batch > 0 ? batch : 1);
  static const char *const unit[] = {"", "k", "M", "G", "T"};
  int u = 0;
  for (; u < 4 && per >= 1000; u++) per /= 1000;
  printf("%s: %s%.4g %sFLOP per example\n", what, exact ? "" : "at least ", per, unit[u]);
}

/* The training step's arena and FLOPs at the training section's batch
 * (symbols at their largest, the batch as dlc train binds it); nothing
 * without a training section.  Returns 0, or -1 after an error. */
static int print_training(Model *m, const PassOpts *po, Diags *d) {
  TrainConfig cfg;
  if (!m->train.present || m->train.loss < 0 || m->train.nsections) return 0;
  if (trainer_config(m, &cfg, d)) return -1;
  cfg.backend = BACKEND_INTERP; /* the program is made, not compiled */
  cfg.pass = po;
  Trainer t;
  int rc = trainer_init(&t, m, &cfg, NULL, d) || trainer_program(&t) ? -1 : 0;
  if (!rc) {
    const Graph *g = t.prog.g;
    int64_t syms[IR_MAX_SYMS];
    for (int s = 0; s < g->nsyms; s++) syms[s] = g->syms[s].max;
    printf("training arena: %lld bytes at batch %lld\n", (long long)arena_bytes(&t.prog), (long long)t.cfg.batch);
    print_flops("training step", &t.prog.funcs[0], syms, t.cfg.batch);
  }
  trainer_free(&t);
  return rc;
}

static void print_summary(const Graph *g, const Program *p) {
  char tb[128];
  printf("%-28s %-14s %-22s %12s\n", "value", "op", "type", "parameters");
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_PARAM || n->op == OP_CONST) continue;
    printf("%-28s %-14s %-22s %12lld\n", n->name ? n->name : "-", ir_ops[n->op].name,
           ir_type_str(g, n->dtype, &n->shape, tb, sizeof tb), (long long)params_of(g, n));
  }
  int64_t total = 0, frozen = 0, arena = 0, buffers = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_PARAM) {
      int64_t k = ir_numel_max(g, &g->nodes[i].shape);
      if (g->nodes[i].buffer) {
        buffers += k;
        continue;
      }
      total += k;
      if (g->nodes[i].frozen) frozen += k;
    }
  arena = arena_bytes(p);
  printf("\ntotal parameters: %lld (%lld trainable, %lld frozen), %lld bytes\n", (long long)total,
         (long long)(total - frozen), (long long)frozen, (long long)total * 4);
  if (buffers) printf("buffers (running statistics): %lld\n", (long long)buffers);
  printf("inference arena: %lld bytes", (long long)arena);
  for (int s = 0; s < g->nsyms; s++) printf("%s%s = %lld", s ? ", " : " at ", g->syms[s].name, (long long)g->syms[s].max);
  printf("\n");
  int64_t syms[IR_MAX_SYMS], batch = g->nsyms ? g->syms[0].max : 1;
  for (int s = 0; s < g->nsyms; s++) syms[s] = g->syms[s].max;
  print_flops("forward", &p->funcs[0], syms, batch);
}

static int cmd_check(int argc, char **argv) {
  Diags d;
  diag_init(&d, stderr);
  const char *model = NULL, *max[IR_MAX_SYMS];
  int nmax = 0;
  PassOpts po = {0};
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return dlc_usage(usage_check, 0);
    if (dlc_opt_flag(argv[i], &po.no_fuse, &po.no_tiles)) continue;
    if ((v = dlc_flag(argc, argv, &i, "--max", &miss)) && nmax < IR_MAX_SYMS) max[nmax++] = v;
    else if (miss || argv[i][0] == '-') return diag_plain(&d, argv[i], "unknown option or missing value"), 2;
    else if (model) return diag_plain(&d, argv[i], "only one model file"), 2;
    else model = argv[i];
  }
  if (!model) return diag_plain(&d, "dlc check", "no model file given"), 2;
  Model m;
  if (dlc_load_model(&m, model, max, nmax, &d)) return 1;
  Program p;
  int status = 0;
  char *sections = dlc_describe_sections(&m); /* before the pipeline prunes the graph */
  if (pass_pipeline_infer(&m.g, &p, &po, &d)) status = 1;
  else {
    print_summary(&m.g, &p);
    kir_program_free(&p);
    Model mt; /* afresh: the inference pipeline pruned m's graph to the forward pass */
    if (dlc_load_model(&mt, model, max, nmax, &d)) status = 1;
    else {
      if (print_training(&mt, &po, &d)) status = 1;
      fe_model_free(&mt);
    }
    if (sections) fputs(sections, stdout);
  }
  rt_xfree(sections);
  fe_model_free(&m);
  return status;
}

static int dispatch(int argc, char **argv) {
  if (argc < 2) return dlc_usage(usage_main, 2);
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) return dlc_usage(usage_main, 0);
  if (!strcmp(cmd, "--version")) return printf("dlc " DLC_VERSION "\n"), 0;
  if (!strcmp(cmd, "--list-steps")) return pass_list_steps(stdout), 0;
  if (!strcmp(cmd, "check")) return cmd_check(argc - 1, argv + 1);
  if (!strcmp(cmd, "run")) return dlc_cmd_run(argc - 1, argv + 1, usage_run);
  if (!strcmp(cmd, "train")) return dlc_cmd_train(argc - 1, argv + 1);
  if (!strcmp(cmd, "repl")) return dlc_cmd_repl(argc - 1, argv + 1);
  if (!strcmp(cmd, "eval")) return dlc_cmd_eval(argc - 1, argv + 1);
  if (!strcmp(cmd, "sample")) return dlc_cmd_sample(argc - 1, argv + 1);
  if (!strcmp(cmd, "export")) return dlc_cmd_export(argc - 1, argv + 1);
  if (!strcmp(cmd, "import")) return dlc_cmd_import(argc - 1, argv + 1);
  if (!strcmp(cmd, "plot")) return dlc_cmd_plot(argc - 1, argv + 1);
  if (!strcmp(cmd, "grid")) return dlc_cmd_grid(argc - 1, argv + 1);
  return cmd_compile(argc, argv);
}

/* Out of memory anywhere unwinds to here (runtime/alloc.c): the owned
 * blocks are freed on the way, the nested scopes release the rest. */
int main(int argc, char **argv) {
  if (rt_alloc_fail_from_env()) return fputs("dlc: error: DLC_FAIL_ALLOC must be N or N+\n", stderr), 2;
  if (getenv("DLC_TIME_PHASES")) ir_phase_enable(stderr); /* CPU time per phase (bench/compile_times.sh) */
  RtOomScope oom;
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) return fputs("dlc: error: out of memory\n", stderr), 1;
  int status = dispatch(argc, argv);
  rt_oom_leave(&oom);
  if (getenv("DLC_FAIL_ALLOC") && !rt_alloc_failures()) /* the end of a sweep */
    fprintf(stderr, "dlc: DLC_FAIL_ALLOC: no allocation failed (%llu made)\n", (unsigned long long)rt_alloc_count());
  return status;
}
