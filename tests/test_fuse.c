/*
 * test_fuse.c — the fusion step (passes/fuse.c).
 *
 * Fusion keeps every floating-point operation of every element and its
 * order, so a fused program computes what the unfused one does bit for
 * bit on keval and on the JIT (the C compiler may contract a product and
 * a sum into one FMA once they are in one kernel, so on the C backend the
 * two agree within the backends' tolerance): every sample's inference
 * program and training step on keval and the JIT, mlp's and lenet5's on
 * C too; every op case wherever fusion changes its program (an op case
 * is one op, so that is where it has a copy to an output).  A small
 * model (dense, relu, softmax) loses a kernel and a buffer, in inference
 * and in training; --no-fuse gives the pipeline without the step and -O0
 * the program of --no-fuse --no-tile; the golden dump after the step.
 * (tests/test_steps.c also checks every sample after the fuse step against
 * the interpreter, as it does after every kernel step.)
 */
#include <criterion/criterion.h>
#include <glob.h>
#include <math.h>

#include "codegen/codegen.h"
#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "ir/keval.h"
#include "tests/backend_case.h"

#define GOLDEN(rel) (DLC_SOURCE_DIR "/tests/golden/kernel/" rel)
#define BATCH 2

/* --- programs with and without the step ---------------------------------------------------- */

typedef struct Build {
  Diags d;
  Model m;
  Graph a, b;
  Graph *graphs[2];
  OptimSpec opt;
  Program p;
} Build;

static const char small_train[] =
    "model small\n"
    "input x: f32[N, 4]\n"
    "fc = dense(x, 3)\n"
    "h = relu(fc)\n"
    "output p = softmax(h, axis=1)\n"
    "train {\n"
    "  label y: i64[N]\n"
    "  loss = cross_entropy(fc, y)\n"
    "  optimizer = sgd(lr=0.1, momentum=0.9)\n"
    "  batch = 8\n"
    "}\n";

static int collectives; /* build: each gradient through dist_mean (data-parallel training) */

static void build(Build *b, const char *path, const char *text, PipelineKind kind, int64_t max, int no_fuse) {
  memset(b, 0, sizeof *b);
  diag_init(&b->d, stderr);
  int rc = text ? fe_load_string(&b->m, path, text, &b->d) : fe_load_file(&b->m, path, &b->d);
  cr_assert_eq(rc, 0, "%s does not load", path);
  for (int s = 0; s < b->m.g.nsyms; s++) b->m.g.syms[s].max = max;
  ir_graph_init(&b->a, b->m.g.name, &b->d);
  ir_graph_init(&b->b, b->m.g.name, &b->d);
  b->graphs[0] = kind == PIPE_INFER ? &b->m.g : &b->a;
  b->graphs[1] = &b->b;
  int loss = -1;
  if (kind == PIPE_TRAIN) {
    TrainConfig cfg;
    cr_assert_eq(trainer_config(&b->m, &cfg, &b->d), 0);
    b->opt = cfg.opt;
    b->opt.seed = 3;
    loss = b->m.train.nsections ? b->m.train.sections[0].loss : b->m.train.loss;
  }
  PassOpts o = {.verify = 1, .seed = 3, .optim = &b->opt, .no_fuse = no_fuse, .grad_collectives = collectives};
  PassCtx c;
  pass_ctx_init(&c, kind, &b->m.g, loss, b->graphs, &b->p, &o, &b->d);
  cr_assert_eq(pass_run(&c), 0, "%s does not compile", path);
  pass_ctx_free(&c);
}

static void build_free(Build *b) {
  kir_program_free(&b->p);
  ir_graph_free(&b->a);
  ir_graph_free(&b->b);
  fe_model_free(&b->m);
}

static int nkernels(const Program *p) {
  int n = 0;
  for (int i = 0; i < p->nfuncs; i++) n += p->funcs[i].nkernels;
  return n;
}

static int count_loads(void *ctx, const Expr *e) {
  if (e->kind == EX_LOAD) ((int *)ctx)[e->id] = 1;
  return 0;
}

static int count_stores(void *ctx, const Stmt *s) {
  if (s->kind == ST_STORE) ((int *)ctx)[s->id] = 1;
  return 0;
}

/* Temporaries some kernel touches. */
static int ntemps_used(const Program *p) {
  int *used = calloc((size_t)p->nbufs + 1, sizeof(int)), n = 0;
  KirVisitor v = {used, count_stores, count_loads};
  kir_walk_program(&v, p);
  for (int b = 0; b < p->nbufs; b++) n += used[b] && p->bufs[b].kind == BUF_TEMP;
  free(used);
  return n;
}

static char *dump(const Program *p) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  kir_dump(p, f);
  fclose(f);
  return out;
}

/* --- a small model: fewer kernels and buffers ------------------------------------------------ */

Test(fuse, small_model_loses_a_kernel_and_a_buffer) {
  struct {
    PipelineKind kind;
    int64_t max;
  } cases[] = {{PIPE_INFER, 1}, {PIPE_TRAIN, 8}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    Build on, off;
    build(&on, "small.dl", small_train, cases[i].kind, cases[i].max, 0);
    build(&off, "small.dl", small_train, cases[i].kind, cases[i].max, 1);
    int kon = nkernels(&on.p), koff = nkernels(&off.p), ton = ntemps_used(&on.p), toff = ntemps_used(&off.p);
    cr_expect_lt(kon, koff, "case %zu: %d kernels fused, %d unfused", i, kon, koff);
    cr_expect_lt(ton, toff, "case %zu: %d temporaries fused, %d unfused", i, ton, toff);
    cr_expect_leq(on.p.arena_size[DT_F32], off.p.arena_size[DT_F32], "case %zu", i);
    if (cases[i].kind == PIPE_INFER) { /* dense, relu, softmax: relu is the dense layer's epilogue */
      cr_expect_eq(kon, 2, "case %zu: %d kernels", i, kon);
      cr_expect_eq(ton, 1, "case %zu: %d temporaries", i, ton);
      cr_expect_lt(on.p.arena_size[DT_F32], off.p.arena_size[DT_F32], "case %zu", i);
    }
    build_free(&on);
    build_free(&off);
  }
}

/* With one row the dense layer's nest is the dot-product form, which the
 * schedule's lanes rule still takes with relu at its store; with 8 rows
 * the register tiles take it, applying relu to their accumulators in
 * lanes where they store them.  Either way relu is the epilogue and its
 * input is never stored. */
Test(fuse, relu_is_the_dense_layers_epilogue_in_lanes_and_in_tiles) {
  Build one, eight;
  build(&one, "small.dl", small_train, PIPE_INFER, 1, 0);
  build(&eight, "small.dl", small_train, PIPE_INFER, 8, 0);
  cr_expect_eq(one.p.funcs[0].kernels[0].op, OP_LINEAR);
  cr_expect_eq(nkernels(&eight.p), 2);
  char *d1 = dump(&one.p), *d8 = dump(&eight.p);
  cr_expect(strstr(d1, "local v1: f32 = v0 + b2[i1]") != NULL, "%s", d1);
  cr_expect(strstr(d8, "for i5 < N step 4 parallel axis 0 {\n") != NULL, "the tiles:\n%s", d8);
  cr_expect(strstr(d8, "b4<2>[i5 * 3] = select(v6 < bcast(0.0, 2), bcast(0.0, 2), v6)\n") != NULL, "%s", d8);
  cr_expect(strstr(d8, "b3[") == NULL, "relu's input is stored:\n%s", d8);
  free(d1);
  free(d8);
  build_free(&one);
  build_free(&eight);
}

/* Kernels of the program whose name starts with `what` (then a space or
 * its end). */
static int kernels_named(const Program *p, const char *what) {
  int n = 0;
  size_t len = strlen(what);
  for (int i = 0; i < p->nfuncs; i++)
    for (int k = 0; k < p->funcs[i].nkernels; k++) {
      const char *w = p->funcs[i].kernels[k].what;
      n += !strncmp(w, what, len) && (!w[len] || w[len] == ' ');
    }
  return n;
}

/* In the MLP's training step relu's gradient masks go into the tiles of
 * the products dX = dY W that make what they mask (the row epilogue),
 * and so do the relus into their dense layers; the products dW = dY^T X
 * read dY where it is (the transposes inlined); a weight's SGD update,
 * which reads the momentum it stores, stays after the product that makes
 * its gradient (the tiles compute some of its rows twice). */
Test(fuse, relu_masks_go_into_the_gradient_products_and_updates_stay_apart, .timeout = 300) {
  Build b;
  build(&b, DLC_SOURCE_DIR "/samples/mlp.dl", NULL, PIPE_TRAIN, 64, 0);
  cr_expect_eq(kernels_named(&b.p, "ew_grad"), 0);
  cr_expect_eq(kernels_named(&b.p, "relu"), 0);
  cr_expect_eq(kernels_named(&b.p, "transpose"), 0);
  cr_expect_eq(kernels_named(&b.p, "sgd_step"), 3);
  char *text = dump(&b.p);
  cr_expect(strstr(text, "<16>[i6 * 128 + i5 * 64] <= bcast(0.0, 16), bcast(0.0, 16), v7)\n") != NULL,
            "relu's mask of the logits' dX in its tiles:\n%s", text);
  free(text);
  build_free(&b);
}

/* The pipeline with the step switched off is the pipeline without it. */
Test(fuse, no_fuse_is_the_program_without_the_step) {
  PipelineKind kinds[] = {PIPE_INFER, PIPE_TRAIN};
  for (int k = 0; k < 2; k++) {
    Build off;
    build(&off, "small.dl", small_train, kinds[k], 8, 1);
    Build raw;
    memset(&raw, 0, sizeof raw);
    diag_init(&raw.d, stderr);
    cr_assert_eq(fe_load_string(&raw.m, "small.dl", small_train, &raw.d), 0);
    for (int s = 0; s < raw.m.g.nsyms; s++) raw.m.g.syms[s].max = 8;
    ir_graph_init(&raw.a, "small", &raw.d);
    ir_graph_init(&raw.b, "small", &raw.d);
    raw.graphs[0] = kinds[k] == PIPE_INFER ? &raw.m.g : &raw.a;
    raw.graphs[1] = &raw.b;
    TrainConfig cfg;
    cr_assert_eq(trainer_config(&raw.m, &cfg, &raw.d), 0);
    raw.opt = cfg.opt;
    raw.opt.seed = 3;
    Pipeline pl = pass_pipelines[kinds[k]];
    PassStep steps[16];
    int n = 0;
    for (int i = 0; i < pl.nsteps; i++)
      if (strcmp(pl.steps[i].name, "fuse")) steps[n++] = pl.steps[i];
    cr_assert_eq(n, pl.nsteps - 1, "the %s pipeline has a fuse step", pl.name);
    pl.steps = steps, pl.nsteps = n;
    PassOpts o = {.verify = 1, .seed = 3, .optim = &raw.opt};
    PassCtx c;
    pass_ctx_init(&c, kinds[k], &raw.m.g, kinds[k] == PIPE_TRAIN ? raw.m.train.loss : -1, raw.graphs, &raw.p, &o, &raw.d);
    cr_assert_eq(pass_run_steps(&c, &pl), 0);
    pass_ctx_free(&c);
    char *a = dump(&off.p), *b = dump(&raw.p);
    cr_expect_str_eq(a, b);
    free(a);
    free(b);
    build_free(&off);
    build_free(&raw);
  }
}

static char *run_dlc(const char *args) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s %s/tests/golden/kernel/small.dl %s -o %s/fuse_small.c --dump-after=memplan 2>&1", DLC_EXE,
           DLC_SOURCE_DIR, args, tu_scratch_dir());
  FILE *f = popen(cmd, "r");
  cr_assert_not_null(f);
  char *out = NULL;
  size_t len = 0, cap = 0;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    if (len + n + 1 > cap) cap = 2 * (len + n + 1), out = realloc(out, cap);
    memcpy(out + len, buf, n);
    len += n;
  }
  cr_assert_eq(pclose(f), 0, "%s", cmd);
  out[len] = 0;
  return out;
}

Test(fuse, O0_is_no_fuse_and_no_tile) {
  char *o0 = run_dlc("--max N=1 -O0"), *off = run_dlc("--max N=1 --no-fuse --no-tile"), *on = run_dlc("--max N=1");
  cr_expect_str_eq(o0, off);
  cr_expect_str_neq(o0, on);
  cr_expect(strstr(on, "kernel 2") == NULL && strstr(o0, "kernel 2: softmax") != NULL, "%s\n%s", on, o0);
  free(o0);
  free(off);
  free(on);
}

Test(fuse, golden_dump_after_fuse) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  Diags d;
  diag_init(&d, stderr);
  Model m;
  cr_assert_eq(fe_load_file(&m, GOLDEN("small.dl"), &d), 0);
  for (int s = 0; s < m.g.nsyms; s++) m.g.syms[s].max = 8;
  PassOpts o = {"fuse", f, 1};
  Program p;
  cr_assert_eq(pass_pipeline_infer(&m.g, &p, &o, &d), 0);
  kir_program_free(&p);
  fe_model_free(&m);
  fclose(f);
  const char *path = GOLDEN("small.fuse.txt");
  if (getenv("DLC_REGEN_GOLDEN")) {
    FILE *g = fopen(path, "w");
    cr_assert_not_null(g);
    fputs(out, g);
    fclose(g);
  }
  char *want = tu_read_file(path, NULL);
  cr_assert_not_null(want, "no golden file %s (DLC_REGEN_GOLDEN=1 writes it)", path);
  cr_expect_str_eq(out, want);
  free(out);
  free(want);
}

/* The largest norm-wise error of a against b (tu_normerr's measure, the
 * magnitude taken once: tu_normerr takes it per element). */
static double worst_err(const void *a, const void *b, size_t bytes) {
  const float *x = a, *y = b;
  int64_t n = (int64_t)(bytes / sizeof(float));
  double m = 1e-6, worst = 0;
  for (int64_t k = 0; k < n; k++)
    if (isfinite(y[k]) && fabs(y[k]) > m) m = fabs(y[k]);
  for (int64_t i = 0; i < n; i++) {
    double e = x[i] == y[i] || (isnan(x[i]) && isnan(y[i])) ? 0
               : !isfinite(x[i]) || !isfinite(y[i])        ? INFINITY
                                                           : fabs((double)x[i] - y[i]) / m;
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

/* --- op cases: keval, JIT and C ------------------------------------------------------------------ */

/* The forward of case k lowered, fused or not, scheduled and planned. */
static void case_program(Case *k, const OpCase *c, Program *p, int fuse) {
  kir_program_init(p, &k->g);
  pass_lower(p, kir_func(p, "forward", &k->g));
  if (fuse) pass_fuse(p);
  pass_schedule(p);
  pass_memplan(p);
}

/* Both programs, fused and not, check. */
static void case_verify(Case *k, const OpCase *c, const Program *on, const Program *off) {
  cr_expect_eq(kir_verify(off, &k->d), 0, "%s: the unfused program does not check", c->name);
  cr_expect_eq(kir_verify(on, &k->d), 0, "%s: the fused program does not check", c->name);
}

static void case_args(Case *k, const Program *p, void **args, void *out) {
  const Func *f = &p->funcs[0];
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &p->bufs[f->args[i]];
    args[i] = b->kind == BUF_OUTPUT ? out : k->vals[b->node].data;
  }
}

static void case_keval(Case *k, const Program *p, void *out) {
  void *args[OPCASE_MAX_IN + 2];
  case_args(k, p, args, out);
  RtTensorSet none;
  rt_set_init(&none);
  KevalArgs a = {k->sym, args, &none};
  RtError err;
  cr_assert_eq(kir_eval(p, &p->funcs[0], &a, &err), RT_OK, "%s", err.msg);
  rt_set_free(&none);
}

static void case_compiled(Case *k, const Program *p, BuildFn fn, void *out) {
  RtError err;
  CModule *m = fn(p, &err);
  cr_assert_not_null(m, "%s", err.msg);
  void *args[OPCASE_MAX_IN + 2];
  case_args(k, p, args, out);
  cr_assert_eq(cg_c_call(m, "forward", k->sym, args, &err), RT_OK, "%s", err.msg);
  cg_c_free(m);
}

static CModule *c_build(const Program *p, RtError *err) { return cg_c_build(p, NULL, err); }

Test(fuse, every_op_case_fused_computes_what_unfused_does, .timeout = 900) {
  int fused = 0;
  for (int ci = 0; ci < OPCASE_COUNT; ci++) {
    const OpCase *c = &op_cases[ci];
    Case k;
    load_case(&k, c);
    Program on, off;
    case_program(&k, c, &on, 1);
    case_program(&k, c, &off, 0);
    case_verify(&k, c, &on, &off);
    char *don = dump(&on), *doff = dump(&off);
    int differ = strcmp(don, doff) != 0;
    free(don);
    free(doff);
    if (!differ) { /* one op: nothing to fuse, the same program */
      kir_program_free(&on);
      kir_program_free(&off);
      free_case(&k);
      continue;
    }
    fused++;
    const RtTensor *want = &k.vals[k.g.outputs[0].id];
    size_t bytes = rt_tensor_nbytes(want);
    char *a = malloc(bytes + 1), *b = malloc(bytes + 1);
    case_keval(&k, &on, a);
    case_keval(&k, &off, b);
    cr_expect(!memcmp(a, b, bytes), "%s: keval, fused and unfused differ", c->name);
    case_compiled(&k, &on, cg_jit_build, a);
    case_compiled(&k, &off, cg_jit_build, b);
    cr_expect(!memcmp(a, b, bytes), "%s: JIT, fused and unfused differ", c->name);
    case_compiled(&k, &on, c_build, a);
    double worst = want->dtype == DT_F32 ? worst_err(a, want->data, bytes) : 0;
    cr_expect(worst <= 1e-5, "%s: C, fused, against the interpreter: norm-wise error %g", c->name, worst);
    free(a);
    free(b);
    kir_program_free(&on);
    kir_program_free(&off);
    free_case(&k);
  }
  cr_log_info("%d op cases have something to fuse", fused);
}

/* --- samples: inference and a training step on keval ------------------------------------------- */

static void make_inputs(const Program *p, const Func *f, void **args, const int64_t *sym) {
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &p->bufs[f->args[i]];
    int64_t n = 1;
    for (int d = 0; d < b->shape.rank; d++) n *= DIM_IS_SYM(b->shape.d[d]) ? sym[DIM_SYM_ID(b->shape.d[d])] : b->shape.d[d];
    size_t bytes = (size_t)n * rt_dtype_size(b->dtype);
    args[i] = malloc(bytes + 8);
    memset(args[i], 0xff, bytes);
    if (b->kind != BUF_INPUT) continue;
    for (int64_t e = 0; e < n; e++) {
      float u = ir_random_uniform(0x5eed + (uint64_t)i, (uint64_t)e);
      if (b->dtype == DT_I64) ((int64_t *)args[i])[e] = e % 2;
      else if (b->dtype == DT_I32) ((int32_t *)args[i])[e] = (int32_t)(e % 2);
      else if (b->dtype == DT_F32)
        ((float *)args[i])[e] = !strcmp(b->name, "lr") ? 0.01f : !strcmp(b->name, "step") ? 3.0f : 2 * u - 1;
    }
  }
}

static void init_tensors(const Build *b, RtTensorSet *s) {
  RtError err;
  rt_set_init(s);
  cr_assert_eq(ir_params_init(&b->m.g, 5, s, &err), RT_OK, "%s", err.msg);
  for (int k = 0; k < 2; k++) {
    const Graph *g = b->graphs[k];
    for (int i = 0; g && i < g->nnodes; i++) {
      const Node *n = &g->nodes[i];
      if (n->op != OP_STATE || rt_set_find(s, n->name)) continue;
      RtTensor t;
      int64_t shape[IR_MAX_RANK];
      for (int d = 0; d < n->shape.rank; d++) shape[d] = n->shape.d[d];
      cr_assert_eq(rt_tensor_alloc(&t, DT_F32, n->shape.rank, shape, &err), RT_OK);
      for (int64_t e = 0; e < rt_tensor_numel(&t); e++) ((float *)t.data)[e] = 0.01f * ir_random_uniform(i, (uint64_t)e);
      cr_assert_eq(rt_set_add(s, n->name, &t, &err), RT_OK);
    }
  }
}

/* Output arguments of f (bytes, or 0 for an input). */
static size_t arg_bytes(const Program *p, const Func *f, int i) {
  const Buffer *b = &p->bufs[f->args[i]];
  if (b->kind != BUF_OUTPUT) return 0;
  int64_t n = 1;
  for (int d = 0; d < b->shape.rank; d++) n *= DIM_IS_SYM(b->shape.d[d]) ? BATCH : b->shape.d[d];
  return (size_t)n * rt_dtype_size(b->dtype);
}

/* One run of function fi of b: on keval (m NULL) or module m; outputs in
 * args, tensors after in *t. */
static void run_func(const char *sample, Build *b, int fi, CModule *m, void **args, RtTensorSet *t) {
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = BATCH;
  const Func *f = &b->p.funcs[fi];
  make_inputs(&b->p, f, args, sym);
  init_tensors(b, t);
  RtError err;
  if (!m) {
    KevalArgs ka = {sym, args, t};
    cr_assert_eq(kir_eval(&b->p, f, &ka, &err), RT_OK, "%s %s: %s", sample, f->name, err.msg);
    return;
  }
  cr_assert_eq(cg_c_set_params(m, t, &err), RT_OK, "%s: %s", sample, err.msg);
  cr_assert_eq(cg_c_call(m, f->name, sym, args, &err), RT_OK, "%s %s: %s", sample, f->name, err.msg);
  cr_assert_eq(cg_c_get_params(m, t, &err), RT_OK, "%s: %s", sample, err.msg);
}

/* Function fi of both programs on the same inputs and tensors: the same
 * outputs and tensors after, bit for bit (tol 0), or within tol
 * norm-wise (the C backend). */
static void same_func(const char *sample, const char *backend, Build *on, Build *off, int fi, CModule *mon,
                      CModule *moff, double tol) {
  const Func *fa = &on->p.funcs[fi], *fb = &off->p.funcs[fi];
  cr_assert_eq(fa->nargs, fb->nargs);
  void **aa = calloc((size_t)fa->nargs + 1, sizeof(void *)), **ab = calloc((size_t)fa->nargs + 1, sizeof(void *));
  RtTensorSet ta, tb;
  run_func(sample, on, fi, mon, aa, &ta);
  run_func(sample, off, fi, moff, ab, &tb);
  for (int i = 0; i < fa->nargs; i++) {
    size_t bytes = arg_bytes(&on->p, fa, i);
    if (!bytes) continue;
    const char *name = on->p.bufs[fa->args[i]].name;
    if (tol == 0) cr_expect(!memcmp(aa[i], ab[i], bytes), "%s %s %s: output %s differs", sample, backend, fa->name, name);
    else if (on->p.bufs[fa->args[i]].dtype == DT_F32)
      cr_expect_leq(worst_err(aa[i], ab[i], bytes), tol, "%s %s %s: output %s", sample, backend, fa->name, name);
  }
  for (int i = 0; i < ta.count; i++) {
    RtTensor *x = &ta.items[i].t, *y = rt_set_find(&tb, ta.items[i].name);
    cr_assert_not_null(y);
    if (tol == 0)
      cr_expect(!memcmp(x->data, y->data, rt_tensor_nbytes(x)), "%s %s %s: tensor %s differs", sample, backend, fa->name,
                ta.items[i].name);
    else if (x->dtype == DT_F32)
      cr_expect_leq(worst_err(x->data, y->data, rt_tensor_nbytes(x)), tol, "%s %s %s: tensor %s", sample, backend,
                    fa->name, ta.items[i].name);
  }
  for (int i = 0; i < fa->nargs; i++) free(aa[i]), free(ab[i]);
  free(aa);
  free(ab);
  rt_set_free(&ta);
  rt_set_free(&tb);
}

/* Every function of both programs on keval and the JIT bit for bit, and
 * with c, on the C backend within the backends' tolerance. */
static void same_results(const char *sample, Build *on, Build *off, int c) {
  cr_assert_eq(on->p.nfuncs, off->p.nfuncs);
  RtError err;
  CModule *jon = cg_jit_build(&on->p, &err);
  cr_assert_not_null(jon, "%s: %s", sample, err.msg);
  CModule *joff = cg_jit_build(&off->p, &err);
  cr_assert_not_null(joff, "%s: %s", sample, err.msg);
  CModule *con = c ? cg_c_build(&on->p, NULL, &err) : NULL;
  CModule *coff = c ? cg_c_build(&off->p, NULL, &err) : NULL;
  cr_assert(!c || (con && coff), "%s: %s", sample, err.msg);
  for (int fi = 0; fi < on->p.nfuncs; fi++) {
    same_func(sample, "keval", on, off, fi, NULL, NULL, 0);
    same_func(sample, "JIT", on, off, fi, jon, joff, 0);
    if (c) same_func(sample, "C", on, off, fi, con, coff, 1e-5);
  }
  cg_c_free(jon);
  cg_c_free(joff);
  if (c) cg_c_free(con), cg_c_free(coff);
}

/* The C backend compiles slowly: the two benchmark samples. */
static int with_c(const char *sample) {
  return !strcmp(sample, "mlp") || !strcmp(sample, "lenet5");
}

static void check_sample(const char *sample) {
  char path[512];
  snprintf(path, sizeof path, "%s/samples/%s.dl", DLC_SOURCE_DIR, sample);
  PipelineKind kinds[] = {PIPE_INFER, PIPE_TRAIN};
  for (int k = 0; k < 2; k++) {
    Build on, off;
    build(&on, path, NULL, kinds[k], 8, 0);
    build(&off, path, NULL, kinds[k], 8, 1);
    cr_expect_leq(nkernels(&on.p), nkernels(&off.p), "%s", sample);
    same_results(sample, &on, &off, with_c(sample));
    build_free(&on);
    build_free(&off);
  }
}

Test(fuse, sample_mlp, .timeout = 600) { check_sample("mlp"); }
Test(fuse, sample_logreg, .timeout = 600) { check_sample("logreg"); }
Test(fuse, sample_blocks, .timeout = 600) { check_sample("blocks"); }
Test(fuse, sample_finetune, .timeout = 600) { check_sample("finetune"); }
Test(fuse, sample_lenet5, .timeout = 600) { check_sample("lenet5"); }
Test(fuse, sample_resnet, .timeout = 1200) { check_sample("resnet"); }
Test(fuse, sample_inception, .timeout = 1200) { check_sample("inception"); }
Test(fuse, sample_unet, .timeout = 1200) { check_sample("unet"); }
Test(fuse, sample_transfer_base, .timeout = 600) { check_sample("transfer_base"); }
Test(fuse, sample_transfer_head, .timeout = 600) { check_sample("transfer_head"); }
Test(fuse, sample_l2_explicit, .timeout = 600) { check_sample("l2_explicit"); }
Test(fuse, sample_triplet, .timeout = 600) { check_sample("triplet"); }
Test(fuse, sample_gan, .timeout = 600) { check_sample("gan"); }
Test(fuse, sample_char_lstm, .timeout = 1200) { check_sample("char_lstm"); }
Test(fuse, sample_word2vec, .timeout = 600) { check_sample("word2vec"); }
Test(fuse, sample_text_classify, .timeout = 1200) { check_sample("text_classify"); }
Test(fuse, sample_seq2seq_attention, .timeout = 1200) { check_sample("seq2seq_attention"); }
Test(fuse, sample_vae, .timeout = 600) { check_sample("vae"); }
Test(fuse, sample_text_cnn, .timeout = 600) { check_sample("text_cnn"); }

/* Every sample of samples/ is in the list above. */
Test(fuse, every_sample_is_checked) {
  static const char *const checked[] = {"mlp",           "logreg",        "blocks",      "finetune",  "lenet5",
                                        "resnet",        "inception",     "unet",        "transfer_base",
                                        "transfer_head", "l2_explicit",   "triplet",     "gan",       "char_lstm",
                                        "word2vec",      "text_classify", "seq2seq_attention", "vae", "text_cnn"};
  glob_t gl;
  cr_assert_eq(glob(DLC_SOURCE_DIR "/samples/*.dl", 0, NULL, &gl), 0);
  for (size_t i = 0; i < gl.gl_pathc; i++) {
    const char *base = strrchr(gl.gl_pathv[i], '/') + 1;
    int found = 0;
    for (size_t k = 0; k < sizeof checked / sizeof *checked; k++)
      found |= strlen(checked[k]) + 3 == strlen(base) && !strncmp(base, checked[k], strlen(checked[k]));
    cr_expect(found, "%s is not checked with and without fusion", base);
  }
  globfree(&gl);
}

/* --- what fusion leaves behind --------------------------------------------------------------------- */

/* relu's result h goes (y = h * 2 runs at relu's store): no kernel touches
 * it and memplan gives it no place; g, read twice, stays and is all the
 * arena holds, smaller than h.  keval binds only the temporaries a kernel
 * touches, so the program runs and computes what the unfused one does
 * (binding h at its old offset, it failed: h does not fit the arena). */
Test(fuse, a_temporary_fusion_drops_needs_no_place_in_the_arena) {
  static const char text[] = "input x: f32[N, 64]\ninput v: f32[N, 2]\nh = relu(x)\ny = h * 2\ng = v + 1\n"
                             "a = g * 2\nb = g * 3\noutput y\noutput a\noutput b\n";
  Build on, off;
  build(&on, "drop.dl", text, PIPE_INFER, 8, 0);
  build(&off, "drop.dl", text, PIPE_INFER, 8, 1);
  cr_expect_eq(ntemps_used(&on.p), 1);
  cr_expect_eq(ntemps_used(&off.p), 2);
  cr_expect_gt(on.p.arena_size[DT_F32], 0);
  int64_t biggest = 0;
  for (int b = 0; b < on.p.nbufs; b++)
    if (on.p.bufs[b].kind == BUF_TEMP && on.p.bufs[b].size > biggest) biggest = on.p.bufs[b].size;
  cr_expect_gt(biggest, on.p.arena_size[DT_F32], "the dropped temporary is still among the buffers");
  same_func("drop", "keval", &on, &off, 0, NULL, NULL, 0);
  build_free(&on);
  build_free(&off);
}

/* A chain of elementwise statements fuses into kernels of at most 16 of
 * the lowering's (each rewrite copies the producer: unbounded, a long
 * chain would take quadratic time), with the same results. */
Test(fuse, a_long_chain_fuses_in_bounded_groups) {
  char text[8192];
  int n = snprintf(text, sizeof text, "input x: f32[N, 4]\ny0 = relu(x)\n");
  for (int i = 1; i < 100; i++) n += snprintf(text + n, sizeof text - (size_t)n, "y%d = y%d * 0.5 + x\n", i, i - 1);
  snprintf(text + n, sizeof text - (size_t)n, "output y99\n");
  Build on, off;
  build(&on, "chain.dl", text, PIPE_INFER, 8, 0);
  build(&off, "chain.dl", text, PIPE_INFER, 8, 1);
  int kon = nkernels(&on.p), koff = nkernels(&off.p);
  cr_expect_lt(kon, koff / 4, "%d kernels fused, %d unfused", kon, koff);
  cr_expect_geq(kon, (koff + 15) / 16, "%d kernels fused, %d unfused", kon, koff);
  same_func("chain", "keval", &on, &off, 0, NULL, NULL, 0);
  build_free(&on);
  build_free(&off);
}

/* The gradients' dist_mean kernels of data-parallel training stay as
 * they are, in their order: the code generators follow each with a
 * collective on the buffer it stores, and the trainer lays the gradients
 * out in that order. */
Test(fuse, collective_kernels_stay_whole) {
  collectives = 1;
  Build on, off;
  build(&on, DLC_SOURCE_DIR "/samples/mlp.dl", NULL, PIPE_TRAIN, 8, 0);
  build(&off, DLC_SOURCE_DIR "/samples/mlp.dl", NULL, PIPE_TRAIN, 8, 1);
  collectives = 0;
  const Func *a = &on.p.funcs[0], *b = &off.p.funcs[0];
  int na = 0, nb = 0;
  for (int k = 0; k < b->nkernels; k++)
    if (b->kernels[k].op == OP_DIST_MEAN) nb++;
  for (int k = 0, j = 0; k < a->nkernels; k++) {
    if (a->kernels[k].op != OP_DIST_MEAN) continue;
    na++;
    while (j < b->nkernels && b->kernels[j].op != OP_DIST_MEAN) j++;
    cr_assert_lt(j, b->nkernels);
    int sa[64] = {0}, sb[64] = {0};
    KirVisitor va = {sa, count_stores, NULL}, vb = {sb, count_stores, NULL};
    cr_assert_lt(on.p.nbufs, 64);
    kir_walk_block(&va, a->kernels[k].body);
    kir_walk_block(&vb, b->kernels[j].body);
    cr_expect_eq(a->kernels[k].node, b->kernels[j].node, "dist_mean kernel %d", na);
    cr_expect(!memcmp(sa, sb, sizeof sa), "dist_mean kernel %d stores other buffers fused", na);
    j++;
  }
  cr_expect_gt(nb, 0);
  cr_expect_eq(na, nb, "%d dist_mean kernels fused, %d unfused", na, nb);
  build_free(&on);
  build_free(&off);
}

/* --- --no-fuse and -O0 on dlc run, dlc train and the REPL --------------------------------------------- */

static int sh(const char *dir, const char *args, const char *log) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "cd %s && %s %s > %s 2>&1", dir, DLC_EXE, args, log);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *s = tu_read_file(path, NULL);
  cr_assert_not_null(s, "%s", path);
  return s;
}

/* dlc ARGS in dir succeeds (its output in the message when it does not). */
static void run_ok(const char *dir, const char *args) {
  if (sh(dir, args, "dlc.log") == 0) return;
  char *log = slurp(dir, "dlc.log");
  cr_expect_fail("dlc %s:\n%s", args, log);
  free(log);
  cr_assert_fail();
}

/* Two safetensors files hold the same tensors, bit for bit (tol 0), or
 * within tol (a's f32 tensors against b's). */
static void same_sets(const char *dir, const char *a, const char *b, double tol) {
  char pa[1024], pb[1024];
  snprintf(pa, sizeof pa, "%s%s%s", a[0] == '/' ? "" : dir, a[0] == '/' ? "" : "/", a);
  snprintf(pb, sizeof pb, "%s/%s", dir, b);
  RtTensorSet x, y;
  RtError err;
  rt_set_init(&x);
  rt_set_init(&y);
  cr_assert_eq(rt_safetensors_read(pa, &x, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_safetensors_read(pb, &y, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(x.count, y.count);
  for (int i = 0; i < x.count; i++) {
    RtTensor *s = &x.items[i].t, *t = rt_set_find(&y, x.items[i].name);
    cr_assert(t && rt_tensor_nbytes(s) == rt_tensor_nbytes(t), "%s: %s", b, x.items[i].name);
    if (tol == 0) cr_expect(!memcmp(s->data, t->data, rt_tensor_nbytes(s)), "%s and %s: %s differs", a, b, x.items[i].name);
    else { /* as tests/test_cli.c compares with PyTorch: tol of the largest magnitude, and 1e-6 (a bias before
              batch norm has a gradient of rounding noise) */
      const float *u = s->data, *v = t->data;
      double top = 0, worst = 0;
      for (int64_t k = 0; k < rt_tensor_numel(s); k++) top = fabs(u[k]) > top ? fabs(u[k]) : top;
      for (int64_t k = 0; k < rt_tensor_numel(s); k++) worst = fabs(u[k] - v[k]) > worst ? fabs(u[k] - v[k]) : worst;
      cr_expect_leq(worst, tol * top + 1e-6, "%s and %s: %s", a, b, x.items[i].name);
    }
  }
  rt_set_free(&x);
  rt_set_free(&y);
}

/* dlc run: the gradients of the batch-norm fixture fused and with
 * --no-fuse are the same bits on the JIT; -O0 (no register tiles either)
 * and the fused ones agree with PyTorch's. */
Test(fuse, dlc_run_takes_no_fuse_and_O0, .timeout = 300) {
  const char *dir = tu_scratch_dir();
  char base[2048], args[2400];
  snprintf(base, sizeof base,
           "run %s/tests/fixtures/grads_mode/bnnet.dl --input x=%s/tests/fixtures/grads_mode/bnnet.x.npy "
           "--input y=%s/tests/fixtures/grads_mode/bnnet.y.npy --params %s/tests/fixtures/grads_mode/bnnet.init.safetensors "
           "--backend=jit",
           DLC_SOURCE_DIR, DLC_SOURCE_DIR, DLC_SOURCE_DIR, DLC_SOURCE_DIR);
  const char *flags[] = {"", "--no-fuse", "-O0"}, *files[] = {"g_on.st", "g_off.st", "g_o0.st"};
  for (int i = 0; i < 3; i++) {
    snprintf(args, sizeof args, "%s --grads %s %s", base, files[i], flags[i]);
    run_ok(dir, args);
  }
  same_sets(dir, "g_on.st", "g_off.st", 0);
  char want[1024];   /* -O0 sums in another order: against PyTorch, as tests/test_cli.c does */
  snprintf(want, sizeof want, "%s/tests/fixtures/grads_mode/bnnet.train.grads.safetensors", DLC_SOURCE_DIR);
  same_sets(dir, want, "g_o0.st", 1e-4);
  same_sets(dir, want, "g_on.st", 1e-4);
}

/* Kernels in a --dump-after output. */
static int dumped_kernels(const char *dir, const char *log) {
  char *s = slurp(dir, log);
  int n = 0;
  for (const char *at = s; (at = strstr(at, "\n  kernel ")); at++) n++;
  free(s);
  return n;
}

/* dlc train: the MLP's training program with --no-fuse has the kernels
 * of the pipeline without fusion (--dump-after=fuse), and three steps
 * fused and unfused end in the same weights bit for bit (JIT); -O0 trains
 * too. */
Test(fuse, dlc_train_takes_no_fuse_and_O0, .timeout = 600) {
  const char *dir = tu_scratch_dir();
  char args[2048];
  const char *flags[] = {"", "--no-fuse", "-O0"}, *files[] = {"w_on.st", "w_off.st", "w_o0.st"};
  int kernels[3];
  for (int i = 0; i < 3; i++) {
    snprintf(args, sizeof args, "train %s/samples/mlp.dl --steps 3 --save %s %s --dump-after=fuse", DLC_SOURCE_DIR,
             files[i], flags[i]);
    run_ok(dir, args);
    kernels[i] = dumped_kernels(dir, "dlc.log");
  }
  cr_expect_gt(kernels[0], 0);
  cr_expect_lt(kernels[0], kernels[1], "%d kernels fused, %d with --no-fuse", kernels[0], kernels[1]);
  cr_expect_eq(kernels[1], kernels[2], "%d kernels with --no-fuse, %d with -O0", kernels[1], kernels[2]);
  same_sets(dir, "w_on.st", "w_off.st", 0);
  same_sets(dir, "w_on.st", "w_o0.st", 1e-4);
  cr_expect_eq(sh(dir, "train samples/mlp.dl --dump-after=fusion", "dlc.log"), 2, "an unknown step is refused");
}

/* The REPL takes the flags too, and refuses what it does not know. */
Test(fuse, dlc_repl_takes_no_fuse_and_O0) {
  const char *dir = tu_scratch_dir();
  cr_expect_eq(sh(dir, "repl --no-fuse --help", "repl.log"), 0);
  char *log = slurp(dir, "repl.log");
  cr_expect(strstr(log, "--no-fuse") != NULL && strstr(log, "-O0") != NULL, "%s", log);
  free(log);
  run_ok(dir, "repl -O0 --no-tile < /dev/null");
  cr_expect_neq(sh(dir, "repl --no-fusion < /dev/null", "repl.log"), 0);
}
