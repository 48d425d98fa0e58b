/*
 * test_steps.c — the kernel program after every kernel step, run by the
 * kernel-IR evaluator (ir/keval.c) against the reference interpreter.
 *
 * Every sample goes through the pipelines (inference, inference with
 * embedded weights, one training step of its own optimizer, gradients in
 * train mode) one step at a time, with N = 2 below its largest value
 * (8; 3 too for inference, which lowers dense layers another way).  After the graph steps the
 * interpreter runs each entry point's graph on fixed inputs; after every
 * kernel step that the pipeline lists (whatever they are), keval runs each
 * function of the program on the same inputs and every output, and every
 * parameter and optimizer state tensor (updated in place by a train step),
 * must agree with the interpreter's.  Floats agree norm-wise to 1e-5
 * (tu_normerr: the interpreter sums in double, kernels in float), integers
 * exactly.  Temporaries and outputs start as NaN, so a value read before
 * it is written shows.
 *
 * The op-case table (op_cases.h) runs through keval after lower, schedule
 * and memplan, as the compiled backends run it, and hand-broken programs are
 * reported with a message, not crashed on.
 */
#include <criterion/criterion.h>
#include <glob.h>

#include "driver/trainer.h"
#include "ir/keval.h"
#include "passes/schedule.h"
#include "tests/backend_case.h"
#include "tests/handkit.h"

/* Norm-wise agreement of floats, as the backend agreement tests. */
#define TOL 1e-5
#define BATCH 2

static const char *const samples[] = {"mlp",    "logreg",    "blocks", "finetune",      "lenet5",
                                      "resnet", "inception", "unet",   "transfer_base", "transfer_head",
                                      "l2_explicit", "triplet", "gan", "char_lstm", "word2vec", "text_classify", "seq2seq_attention",
                                      "vae", "text_cnn"};
#define NSAMPLES (sizeof samples / sizeof *samples)

/* --- comparing ------------------------------------------------------------------------------ */

/* Element i's norm-wise error, as tu_normerr, with the largest finite
 * magnitude of want (m, floor 1e-6) computed once: tu_normerr computes it
 * for every element, quadratic in the size of a sample's tensors. */
static double normerr(const float *got, const float *want, double m, int64_t i) {
  if (got[i] == want[i] || (isnan(got[i]) && isnan(want[i]))) return 0;
  if (!isfinite(got[i]) || !isfinite(want[i])) return INFINITY;
  return fabs((double)got[i] - want[i]) / m;
}

/* got against want, both of dtype dt and n elements; returns 1 when they agree. */
static int agree(const char *what, DType dt, const void *got, const void *want, int64_t n, double tol) {
  if (dt != DT_F32) {
    int same = memcmp(got, want, (size_t)n * rt_dtype_size(dt)) == 0;
    cr_expect(same, "%s: integers differ from the interpreter's", what);
    return same;
  }
  const float *a = got, *b = want;
  double worst = 0, m = 1e-6;
  for (int64_t k = 0; k < n; k++)
    if (isfinite(b[k]) && fabs(b[k]) > m) m = fabs(b[k]);
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = normerr(a, b, m, i);
    if (!(e <= worst)) worst = e, at = i;
  }
  cr_expect(worst <= tol, "%s: element %lld is %g, the interpreter says %g (norm-wise error %g)", what, (long long)at,
            n ? (double)a[at] : 0.0, n ? (double)b[at] : 0.0, worst);
  return worst <= tol;
}

static void copy_set(RtTensorSet *dst, const RtTensorSet *src) {
  RtError err;
  rt_set_init(dst);
  for (int i = 0; i < src->count; i++)
    cr_assert_eq(rt_set_add_copy(dst, src->items[i].name, &src->items[i].t, &err), RT_OK, "%s", err.msg);
}

/* --- a sample run step by step ----------------------------------------------------------------- */

/* max: the symbols' largest value, which picks among lowerings (a dense
 * layer over 8 rows or more reads its weight's derived transpose). */
typedef struct Variant {
  PipelineKind kind;
  int train_mode;
  int64_t max;
  const char *label;
} Variant;

static const Variant variants[] = {
    {PIPE_INFER, 0, 8, "infer"},
    {PIPE_INFER, 0, 3, "infer, N <= 3"},
    {PIPE_INFER_EMBED, 0, 8, "infer-embed"},
    {PIPE_TRAIN, 1, 8, "train"},
    {PIPE_GRADS, 1, 8, "grads (train mode)"},
};

/* What the interpreter computed for one entry point. */
typedef struct Ref {
  const Graph *g;
  RtTensor *outs;         /* one per graph output */
  RtTensorSet tensors;    /* params and state after the call */
} Ref;

typedef struct Run {
  const char *sample;
  const Variant *v;
  Diags d;
  Model m;
  Graph a, b;
  Graph *graphs[2];
  RtTensorSet params;     /* params and state before any call */
  RtTensorSet inputs;     /* by input name */
  OptimSpec opt;
  PassOpts o;
  Program p;
  PassCtx c;
  Ref ref[PASS_MAX_GRAPHS];
  char labels[4][64];     /* the training labels' names (the infer pipelines rewrite the model) */
  int nlabels;
} Run;

static int is_label(const Run *r, const char *name) {
  for (int k = 0; k < r->nlabels; k++)
    if (!strcmp(r->labels[k], name)) return 1;
  return 0;
}

/* Input node n at batch BATCH: lr and step are scalars of the train step,
 * integer labels alternate 0 and 1 (every sample has two classes or
 * more), float labels lie in [0, 1), data in [-1, 1). */
static void make_input(Run *r, const Node *n, int which) {
  if (rt_set_find(&r->inputs, n->name)) return;
  RtTensor t;
  RtError err;
  int64_t shape[IR_MAX_RANK];
  for (int k = 0; k < n->shape.rank; k++) shape[k] = DIM_IS_SYM(n->shape.d[k]) ? BATCH : n->shape.d[k];
  cr_assert_eq(rt_tensor_alloc(&t, n->dtype, n->shape.rank, shape, &err), RT_OK, "%s", err.msg);
  int64_t count = rt_tensor_numel(&t);
  int label = is_label(r, n->name);
  for (int64_t i = 0; i < count; i++) {
    float u = ir_random_uniform(0x5eed + (uint64_t)which, (uint64_t)i);
    if (n->dtype == DT_I64) ((int64_t *)t.data)[i] = i % 2;
    else if (n->dtype == DT_I32) ((int32_t *)t.data)[i] = (int32_t)(i % 2);
    else if (n->dtype == DT_F32)
      ((float *)t.data)[i] = !strcmp(n->name, "lr") ? 0.01f : !strcmp(n->name, "step") ? 3.0f : label ? u : 2 * u - 1;
    else cr_assert_fail("%s: input %s has a dtype the test does not fill", r->sample, n->name);
  }
  cr_assert_eq(rt_set_add(&r->inputs, n->name, &t, &err), RT_OK, "%s", err.msg);
}

/* Tensors the graphs need that ir_params_init does not make: optimizer
 * state (small positive values, valid for every optimizer's state), and
 * running statistics away from their initial zeros and ones. */
static void make_tensors(Run *r, const Graph *g) {
  RtError err;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_STATE || rt_set_find(&r->params, n->name)) continue;
    RtTensor t;
    int64_t shape[IR_MAX_RANK];
    for (int k = 0; k < n->shape.rank; k++) shape[k] = n->shape.d[k];
    cr_assert_eq(rt_tensor_alloc(&t, DT_F32, n->shape.rank, shape, &err), RT_OK, "%s", err.msg);
    for (int64_t e = 0; e < rt_tensor_numel(&t); e++) ((float *)t.data)[e] = 0.01f * ir_random_uniform(i, (uint64_t)e);
    cr_assert_eq(rt_set_add(&r->params, n->name, &t, &err), RT_OK, "%s", err.msg);
  }
}

static void perturb_running_stats(RtTensorSet *s) {
  for (int i = 0; i < s->count; i++) {
    const char *nm = s->items[i].name;
    int var = strstr(nm, "running_var") != NULL, mean = strstr(nm, "running_mean") != NULL;
    if (!var && !mean) continue;
    float *v = s->items[i].t.data;
    for (int64_t e = 0; e < rt_tensor_numel(&s->items[i].t); e++)
      v[e] = var ? 0.5f + ir_random_uniform(77 + (uint64_t)i, (uint64_t)e) : ir_random_uniform(99, (uint64_t)e) - 0.5f;
  }
}

static void run_open(Run *r, const char *sample, const Variant *v) {
  memset(r, 0, sizeof *r);
  r->sample = sample, r->v = v;
  diag_init(&r->d, stderr);
  char path[512];
  snprintf(path, sizeof path, "%s/samples/%s.dl", DLC_SOURCE_DIR, sample);
  cr_assert_eq(fe_load_file(&r->m, path, &r->d), 0, "%s does not load", path);
  for (int s = 0; s < r->m.g.nsyms; s++) r->m.g.syms[s].max = v->max;
  for (int k = 0; k < r->m.train.nlabels && k < 4; k++, r->nlabels++)
    snprintf(r->labels[k], sizeof r->labels[k], "%s", r->m.g.nodes[r->m.train.labels[k]].name);
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&r->m, &cfg, &r->d), 0);
  r->opt = cfg.opt;
  r->opt.seed = 3;
  PassOpts o = {.verify = 1, .train_mode = v->train_mode, .seed = 3, .optim = &r->opt, .wrt_params = 1};
  r->o = o;
  ir_graph_init(&r->a, r->m.g.name, &r->d);
  ir_graph_init(&r->b, r->m.g.name, &r->d);
  r->graphs[0] = v->kind == PIPE_INFER || v->kind == PIPE_INFER_EMBED ? &r->m.g : &r->a;
  r->graphs[1] = &r->b;
  rt_set_init(&r->params);
  rt_set_init(&r->inputs);
  RtError err;
  cr_assert_eq(ir_params_init(&r->m.g, 5, &r->params, &err), RT_OK, "%s", err.msg);
  perturb_running_stats(&r->params);
  int loss = r->m.train.nsections ? r->m.train.sections[0].loss : r->m.train.loss; /* gan: the first section's */
  pass_ctx_init(&r->c, v->kind, &r->m.g, loss, r->graphs, &r->p, &r->o, &r->d);
  r->c.params = &r->params;
}

static void ref_free(Ref *f) {
  for (int o = 0; f->outs && o < f->g->noutputs; o++) rt_tensor_free(&f->outs[o]);
  free(f->outs);
  rt_set_free(&f->tensors);
}

static void run_close(Run *r) {
  for (int i = 0; i < r->c.ngraphs; i++) ref_free(&r->ref[i]);
  if (r->c.lowered) kir_program_free(&r->p);
  pass_ctx_free(&r->c);
  rt_set_free(&r->params);
  rt_set_free(&r->inputs);
  ir_graph_free(&r->a);
  ir_graph_free(&r->b);
  fe_model_free(&r->m);
}

/* The interpreter on graph g: outputs and the tensors after the call. */
static void reference(Run *r, const Graph *g, Ref *f) {
  RtError err;
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = BATCH;
  f->g = g;
  copy_set(&f->tensors, &r->params);
  RtTensor *vals = calloc((size_t)g->nnodes + 1, sizeof *vals);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_INPUT) make_input(r, n, i), vals[i] = *rt_set_find(&r->inputs, n->name);
    if (n->op == OP_PARAM || n->op == OP_STATE) {
      RtTensor *t = rt_set_find(&f->tensors, n->name);
      cr_assert_not_null(t, "%s: no tensor %s", r->sample, n->name);
      vals[i] = *t;
    }
  }
  InterpOpts io = {r->c.train_mode, 3};
  cr_assert_eq(ir_interp(g, vals, sym, &io, &err), RT_OK, "%s %s: %s", r->sample, r->v->label, err.msg);
  f->outs = calloc((size_t)g->noutputs + 1, sizeof *f->outs);
  for (int o = 0; o < g->noutputs; o++) {
    const RtTensor *v = &vals[g->outputs[o].id];
    cr_assert_eq(rt_tensor_alloc(&f->outs[o], v->dtype, v->rank, v->shape, &err), RT_OK);
    memcpy(f->outs[o].data, v->data, rt_tensor_nbytes(v));
  }
  for (int i = 0; i < g->nnodes; i++) {
    OpKind op = g->nodes[i].op;
    if (op != OP_INPUT && op != OP_PARAM && op != OP_STATE) rt_tensor_free(&vals[i]);
  }
  free(vals);
}

/* Function f of the program under keval against reference f->g's. */
static void check_func(Run *r, const Func *fn, const Ref *f, const char *step) {
  char what[256];
  RtError err;
  RtTensorSet tensors;
  copy_set(&tensors, &r->params);
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = BATCH;
  void **args = calloc((size_t)fn->nargs + 1, sizeof *args);
  int *out_of = calloc((size_t)fn->nargs + 1, sizeof *out_of);
  for (int i = 0; i < fn->nargs; i++) {
    const Buffer *b = &r->p.bufs[fn->args[i]];
    out_of[i] = -1;
    if (b->kind == BUF_INPUT) {
      RtTensor *t = rt_set_find(&r->inputs, b->name);
      cr_assert_not_null(t, "%s: no input %s", r->sample, b->name);
      args[i] = t->data;
      continue;
    }
    out_of[i] = ir_find_output(f->g, b->name);
    cr_assert_geq(out_of[i], 0, "%s: output %s is not the graph's", r->sample, b->name);
    size_t bytes = rt_tensor_nbytes(&f->outs[out_of[i]]);
    args[i] = malloc(bytes + 1);
    memset(args[i], 0xff, bytes); /* NaN: an element never written shows */
  }
  KevalArgs ka = {sym, args, &tensors};
  RtStatus st = kir_eval(&r->p, fn, &ka, &err);
  cr_expect_eq(st, RT_OK, "%s, %s, after %s: %s", r->sample, r->v->label, step, err.msg);
  for (int i = 0; i < fn->nargs && st == RT_OK; i++) {
    if (out_of[i] < 0) continue;
    const RtTensor *want = &f->outs[out_of[i]];
    snprintf(what, sizeof what, "%s, %s, after %s: %s output %s", r->sample, r->v->label, step, fn->name,
             r->p.bufs[fn->args[i]].name);
    agree(what, want->dtype, args[i], want->data, rt_tensor_numel(want), TOL);
  }
  for (int i = 0; i < f->tensors.count && st == RT_OK; i++) {
    const RtNamedTensor *w = &f->tensors.items[i];
    RtTensor *got = rt_set_find(&tensors, w->name);
    snprintf(what, sizeof what, "%s, %s, after %s: %s tensor %s", r->sample, r->v->label, step, fn->name, w->name);
    agree(what, w->t.dtype, got->data, w->t.data, rt_tensor_numel(&w->t), TOL);
  }
  for (int i = 0; i < fn->nargs; i++)
    if (out_of[i] >= 0) free(args[i]);
  free(args);
  free(out_of);
  rt_set_free(&tensors);
}

/* Runs the pipeline one step at a time, checking the program after every
 * kernel step; returns the number of kernel steps checked. */
static int run_steps(Run *r) {
  const Pipeline *pl = &pass_pipelines[r->v->kind];
  int checked = 0, have_ref = 0;
  for (int i = 0; i < pl->nsteps; i++) {
    const PassStep *s = &pl->steps[i];
    Pipeline one = *pl;
    one.steps = s, one.nsteps = 1;
    if (s->kernel && !have_ref) {
      for (int k = 0; k < r->c.ngraphs; k++) make_tensors(r, r->c.graphs[k]);
      for (int k = 0; k < r->c.ngraphs; k++) reference(r, r->c.graphs[k], &r->ref[k]);
      have_ref = 1;
    }
    cr_assert_eq(pass_run_steps(&r->c, &one), 0, "%s: step %s of %s fails", r->sample, s->name, r->v->label);
    if (!s->kernel) continue;
    cr_assert_eq(r->p.nfuncs, r->c.ngraphs);
    for (int k = 0; k < r->p.nfuncs; k++) check_func(r, &r->p.funcs[k], &r->ref[k], s->name);
    checked++;
  }
  return checked;
}

static void check_sample(const char *sample) {
  for (size_t k = 0; k < sizeof variants / sizeof *variants; k++) {
    Run r;
    run_open(&r, sample, &variants[k]);
    int kernel_steps = 0;
    for (int i = 0; i < pass_pipelines[variants[k].kind].nsteps; i++)
      kernel_steps += pass_pipelines[variants[k].kind].steps[i].kernel;
    cr_expect_eq(run_steps(&r), kernel_steps, "%s, %s: every kernel step is checked", sample, variants[k].label);
    run_close(&r);
  }
}

Test(steps, mlp, .timeout = 300) { check_sample("mlp"); }
Test(steps, logreg, .timeout = 300) { check_sample("logreg"); }
Test(steps, blocks, .timeout = 300) { check_sample("blocks"); }
Test(steps, finetune, .timeout = 300) { check_sample("finetune"); }
Test(steps, lenet5, .timeout = 300) { check_sample("lenet5"); }
Test(steps, resnet, .timeout = 600) { check_sample("resnet"); }
Test(steps, inception, .timeout = 600) { check_sample("inception"); }
Test(steps, unet, .timeout = 600) { check_sample("unet"); }
Test(steps, transfer_base, .timeout = 300) { check_sample("transfer_base"); }
Test(steps, transfer_head, .timeout = 300) { check_sample("transfer_head"); }
Test(steps, l2_explicit, .timeout = 300) { check_sample("l2_explicit"); }
Test(steps, triplet, .timeout = 300) { check_sample("triplet"); }
Test(steps, gan, .timeout = 300) { check_sample("gan"); }
Test(steps, char_lstm, .timeout = 600) { check_sample("char_lstm"); }
Test(steps, word2vec, .timeout = 300) { check_sample("word2vec"); }
Test(steps, text_classify, .timeout = 600) { check_sample("text_classify"); }
Test(steps, seq2seq_attention, .timeout = 600) { check_sample("seq2seq_attention"); }
Test(steps, vae, .timeout = 300) { check_sample("vae"); }
Test(steps, text_cnn, .timeout = 300) { check_sample("text_cnn"); }

/* The table above names every .dl file in samples/. */
Test(steps, every_sample_is_in_the_table) {
  glob_t gl;
  cr_assert_eq(glob(DLC_SOURCE_DIR "/samples/*.dl", 0, NULL, &gl), 0);
  for (size_t i = 0; i < gl.gl_pathc; i++) {
    const char *base = strrchr(gl.gl_pathv[i], '/') + 1;
    int found = 0;
    for (size_t k = 0; k < NSAMPLES; k++) found |= strlen(samples[k]) + 3 == strlen(base) && !strncmp(samples[k], base, strlen(samples[k]));
    cr_expect(found, "samples/%s is not checked step by step", base);
  }
  cr_expect_eq(gl.gl_pathc, NSAMPLES);
  globfree(&gl);
}

/* --- the op cases ------------------------------------------------------------------------------- */

/* Case k's program under keval after each of lower, schedule and memplan. */
static void op_case_steps(Case *k, const OpCase *c) {
  Program p;
  RtError err;
  kir_program_init(&p, &k->g);
  pass_lower(&p, kir_func(&p, "forward", &k->g));
  const RtTensor *want = &k->vals[k->g.outputs[0].id];
  static const char *const steps[] = {"lower", "schedule", "memplan"};
  for (int step = 0; step < 3; step++) {
    if (step == 1) pass_schedule(&p);
    if (step == 2) pass_memplan(&p);
    const Func *f = &p.funcs[0];
    RtTensor got;
    cr_assert_eq(rt_tensor_alloc(&got, want->dtype, want->rank, want->shape, &err), RT_OK);
    memset(got.data, 0xff, rt_tensor_nbytes(&got));
    void *args[OPCASE_MAX_IN + 1];
    for (int i = 0; i < f->nargs; i++) {
      const Buffer *b = &p.bufs[f->args[i]];
      args[i] = b->kind == BUF_OUTPUT ? got.data : k->vals[b->node].data;
    }
    KevalArgs ka = {k->sym, args, NULL};
    cr_expect_eq(kir_eval(&p, f, &ka, &err), RT_OK, "%s: %s", c->name, err.msg);
    char what[128];
    snprintf(what, sizeof what, "%s after %s", c->name, steps[step]);
    agree(what, want->dtype, got.data, want->data, rt_tensor_numel(want), TOL);
    rt_tensor_free(&got);
  }
  kir_program_free(&p);
}

Test(steps, every_op_case_agrees_with_the_interpreter) {
  for (int ci = 0; ci < OPCASE_COUNT; ci++) {
    Case k;
    load_case(&k, &op_cases[ci]);
    op_case_steps(&k, &op_cases[ci]);
    free_case(&k);
  }
}

/* --- broken programs ------------------------------------------------------------------------------ */

static Stmt *first_stmt(Stmt *s, StmtKind kind) {
  for (; s; s = s->next) {
    if (s->kind == kind) return s;
    Stmt *t = s->kind == ST_LOOP ? first_stmt(s->body, kind) : NULL;
    if (t) return t;
  }
  return NULL;
}

static Expr *first_expr(Expr *e, ExprKind kind) {
  if (!e) return NULL;
  if (e->kind == kind) return e;
  Expr *x = first_expr(e->a, kind);
  if (!x) x = first_expr(e->b, kind);
  return x ? x : first_expr(e->c, kind);
}

typedef void (*BreakFn)(Program *p, Kernel *k);

static void store_far(Program *p, Kernel *k) { first_stmt(k->body, ST_STORE)->index = kx_i(p, 1000000); }
static void load_below(Program *p, Kernel *k) {
  Stmt *s = first_stmt(k->body, ST_LOCAL);
  first_expr(s->value, EX_LOAD)->a = kx_i(p, -1);
}
static void loop_too_long(Program *p, Kernel *k) { first_stmt(k->body, ST_LOOP)->extent = kx_i(p, 1000); }
static void no_such_buffer(Program *p, Kernel *k) { first_stmt(k->body, ST_STORE)->id = p->nbufs + 3; }
static void into_input(Program *p, Kernel *k) { first_stmt(k->body, ST_STORE)->id = 0; }
static void divide_by_zero(Program *p, Kernel *k) {
  Stmt *s = first_stmt(k->body, ST_STORE);
  s->index = kx_bin(p, BIN_DIV, s->index, kx_i(p, 0));
}
static void local_unknown(Program *p, Kernel *k) {
  Stmt *s = first_stmt(k->body, ST_STORE);
  s->value = kx_local(p, 0, DT_F32);
}
static void index_overflow(Program *p, Kernel *k) {
  Stmt *s = first_stmt(k->body, ST_STORE);
  s->index = kx_bin(p, BIN_MUL, kx_i(p, INT64_MAX / 2), kx_i(p, 3));
}

static void into_derived(Program *p, Kernel *k) { first_stmt(k->body, ST_STORE)->id = 6; }

typedef struct Broken {
  const char *name;
  BreakFn brk;
  int kernel;
  const char *says;
} Broken;

static const Broken broken[] = {
    {"store far out of range", store_far, 0, "forward kernel 0 (linear fc): store to b3[1000000] (fc) is outside its 24 elements"},
    {"load below zero", load_below, 0, "load of b0[-1] (x) is outside its 8 elements"},
    {"loop past the buffer", loop_too_long, 1, "store to b4[24] (h) is outside its 24 elements"},
    {"unknown buffer", no_such_buffer, 0, "buffer b10 does not exist"},
    {"store into an input", into_input, 0, "store into input b0 (x)"},
    {"division by zero", divide_by_zero, 1, "integer division by zero"},
    {"local out of scope", local_unknown, 1, "local v0 read outside its scope"},
    {"index overflow", index_overflow, 1, "integer overflow in"},
    {"store into a derived buffer", into_derived, 1, "store into derived b6 (fc.weight.T) outside prepare"},
};

/* small.dl lowered (and planned) at N = 2 of at most 8, with one kernel broken. */
static RtStatus run_broken(const Broken *b, int plan, RtError *err) {
  Diags d;
  diag_init(&d, stderr);
  Model m;
  cr_assert_eq(fe_load_file(&m, DLC_SOURCE_DIR "/tests/golden/kernel/small.dl", &d), 0);
  m.g.syms[0].max = 8;
  Program p;
  kir_program_init(&p, &m.g);
  pass_lower(&p, kir_func(&p, "forward", &m.g));
  sched_program(&p, &(SchedOpts){0}); /* the row form the breaks below expect (no register tiles) */
  if (plan) pass_memplan(&p);
  Func *f = &p.funcs[0];
  b->brk(&p, &f->kernels[b->kernel]);
  RtTensorSet params;
  rt_set_init(&params);
  cr_assert_eq(ir_params_init(&m.g, 1, &params, err), RT_OK);
  float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[6];
  void *args[2] = {x, out};
  int64_t sym[IR_MAX_SYMS] = {2};
  KevalArgs ka = {sym, args, &params};
  RtStatus st = kir_eval(&p, f, &ka, err);
  rt_set_free(&params);
  kir_program_free(&p);
  fe_model_free(&m);
  return st;
}

static void nothing(Program *p, Kernel *k) {}

Test(steps, broken_programs_are_reported_not_run) {
  RtError err;
  Broken fine = {"unbroken", nothing, 0, ""};
  cr_assert_eq(run_broken(&fine, 1, &err), RT_OK, "%s", err.msg);
  for (size_t i = 0; i < sizeof broken / sizeof *broken; i++)
    for (int plan = 0; plan < 2; plan++) {
      RtStatus st = run_broken(&broken[i], plan, &err);
      cr_expect_eq(st, RT_ERR_FORMAT, "%s: not reported", broken[i].name);
      cr_expect(st == RT_OK || strstr(err.msg, broken[i].says), "%s: the message is '%s'", broken[i].name, err.msg);
    }
}

Test(steps, symbols_beyond_their_maximum_are_refused) {
  Diags d;
  diag_init(&d, stderr);
  Model m;
  RtError err;
  cr_assert_eq(fe_load_file(&m, DLC_SOURCE_DIR "/tests/golden/kernel/small.dl", &d), 0);
  m.g.syms[0].max = 8;
  Program p;
  kir_program_init(&p, &m.g);
  pass_lower(&p, kir_func(&p, "forward", &m.g));
  float x[40] = {0}, out[30];
  void *args[2] = {x, out};
  int64_t sym[IR_MAX_SYMS] = {10};
  KevalArgs ka = {sym, args, NULL};
  cr_expect_eq(kir_eval(&p, &p.funcs[0], &ka, &err), RT_ERR_FORMAT);
  cr_expect(strstr(err.msg, "symbol N = 10 is outside [0, 8]"), "%s", err.msg);
  sym[0] = 2;
  cr_expect_eq(kir_eval(&p, &p.funcs[0], &ka, &err), RT_ERR_FORMAT, "no parameters given");
  cr_expect(strstr(err.msg, "(fc.weight): no tensor of its name"), "%s", err.msg);
  kir_program_free(&p);
  fe_model_free(&m);
}

/* --- the newer constructs, by hand ---------------------------------------------------------------- */

/* The hand kit (handkit.h) with one kernel, build's, as forward. */
static void kit_init(HandKit *k, Stmt *(*build)(HandKit *), int nvars, int nlocals) {
  hk_init(k);
  hk_kernel(k, build(k), nvars, nlocals);
}

static RtStatus kit_run(HandKit *k, const float *x, float *y, RtError *err) {
  void *args[2] = {(void *)x, y};
  int64_t sym[IR_MAX_SYMS] = {0};
  KevalArgs a = {sym, args, NULL};
  return kir_eval(&k->p, k->fn, &a, err);
}


Test(steps, if_local_arrays_and_stepped_loops) {
  HandKit k;
  kit_init(&k, hk_pairs, 2, 1);
  const float x[8] = {1, 2, -3, 4, 0.5f, -6, -7, 8};
  float y[8], want[8];
  for (int i = 0; i < 8; i += 2) {
    float a = x[i] * 3, b = x[i + 1] * 3;
    want[i] = x[i] > 0 ? a + b : a - b;
    want[i + 1] = b;
  }
  RtError err;
  cr_assert_eq(kit_run(&k, x, y, &err), RT_OK, "%s", err.msg);
  for (int i = 0; i < 8; i++) cr_expect_eq(y[i], want[i], "y[%d] = %g, not %g", i, y[i], want[i]);
  hk_free(&k);
}

/* pairs with its local array one element short: v0[1] is outside it. */
static Stmt *short_array(HandKit *k) {
  Stmt *s = hk_pairs(k);
  s->body->count = 1;
  return s;
}

/* pairs with a loop that does not advance. */
static Stmt *step_zero(HandKit *k) {
  Stmt *s = hk_pairs(k);
  s->step = 0;
  return s;
}

/* pairs with a vector load as the condition's left operand (a scalar). */
static Stmt *lanes(HandKit *k) {
  Stmt *s = hk_pairs(k);
  Stmt *cond = s->body->next->next;
  cond->value->a->lanes = 8;
  return s;
}

/* pairs reading the local array v0 as a scalar. */
static Stmt *array_as_scalar(HandKit *k) {
  Stmt *s = hk_pairs(k);
  s->body->next->next->next->value = kx_local(&k->p, 0, DT_F32);
  return s;
}

Test(steps, broken_constructs_are_reported) {
  static const struct {
    Stmt *(*build)(HandKit *);
    const char *says;
  } cases[] = {
      {short_array, "local array v0[1] is outside its 1 elements"},
      {step_zero, "loop i0 steps by 0"},
      {lanes, "an operand has 8 lanes, not 1"},
      {array_as_scalar, "local array v0 read without an index"},
  };
  const float x[8] = {0};
  float y[8];
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    HandKit k;
    kit_init(&k, cases[i].build, 2, 1);
    RtError err;
    cr_expect_eq(kit_run(&k, x, y, &err), RT_ERR_FORMAT, "%s: not reported", cases[i].says);
    cr_expect(strstr(err.msg, cases[i].says), "'%s' expected, got '%s'", cases[i].says, err.msg);
    hk_free(&k);
  }
}

/* for i0 < 8: y[i0] = select(i0 < 0, x[i0 + 100], x[i0]): select is
 * eager, so the arm it does not choose is evaluated too, out of range. */
static Stmt *eager_select(HandKit *k) {
  Program *p = &k->p;
  Expr *i0 = kx_var(p, 0);
  Expr *far = kx_load(p, k->in, kx_iadd(p, i0, kx_i(p, 100)));
  Expr *v = kx_select(p, kx_bin(p, BIN_LT, i0, kx_i(p, 0)), far, kx_load(p, k->in, i0));
  return ks_loop(p, 0, kx_i(p, 8), ks_store(p, k->out, i0, v));
}

/* for i0 < 8: y[i0] = f64(x[i0]), a store of another type than y's. */
static Stmt *mistyped(HandKit *k) {
  Program *p = &k->p;
  Expr *i0 = kx_var(p, 0);
  Stmt *s = ks_store(p, k->out, i0, kx_load(p, k->in, i0));
  s->value = kx_cast(p, DT_F64, s->value);
  return ks_loop(p, 0, kx_i(p, 8), s);
}

/* for i0 < 8: y[i0] = f32(i32(2147483647) + i32(i0)), overflowing i32 at i0 = 1. */
static Stmt *i32_overflow(HandKit *k) {
  Program *p = &k->p;
  Expr *i0 = kx_var(p, 0);
  Expr *sum = kx_bin(p, BIN_ADD, kx_iconst(p, DT_I32, INT32_MAX), kx_cast(p, DT_I32, i0));
  return ks_loop(p, 0, kx_i(p, 8), ks_store(p, k->out, i0, kx_cast(p, DT_F32, sum)));
}

Test(steps, typed_semantics_are_enforced) {
  static const struct {
    Stmt *(*build)(HandKit *);
    const char *says;
  } cases[] = {
      {eager_select, "load of b0[100] (x) is outside its 8 elements"},
      {mistyped, "a stored value is f64, not f32"},
      {i32_overflow, "i32 overflow in + (2147483648)"},
  };
  const float x[8] = {0};
  float y[8];
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    HandKit k;
    kit_init(&k, cases[i].build, 2, 1);
    RtError err;
    cr_expect_eq(kit_run(&k, x, y, &err), RT_ERR_FORMAT, "%s: not reported", cases[i].says);
    cr_expect(strstr(err.msg, cases[i].says), "'%s' expected, got '%s'", cases[i].says, err.msg);
    hk_free(&k);
  }
}

/* for i0 < 8: y[i0] = i0 % 2 == 0 ? x[i0 * 1000] : -1 as a guarded load:
 * the index is far out of range exactly where the guard is false. */
static Stmt *guarded(HandKit *k) {
  Program *p = &k->p;
  Expr *i0 = kx_var(p, 0);
  Expr *odd = kx_bin(p, BIN_EQ, kx_bin(p, BIN_MOD, i0, kx_i(p, 2)), kx_i(p, 1));
  Expr *g = kx_load_guarded(p, k->in, kx_imul(p, i0, kx_i(p, 1000)), kx_bin(p, BIN_EQ, i0, kx_i(p, 0)), kx_f(p, -1));
  Expr *v = kx_select(p, odd, kx_f(p, 5), g);
  return ks_loop(p, 0, kx_i(p, 8), ks_store(p, k->out, i0, v));
}

Test(steps, a_guarded_load_reads_only_when_its_guard_holds) {
  HandKit k;
  kit_init(&k, guarded, 1, 0);
  const float x[8] = {7, 1, 2, 3, 4, 5, 6, 8};
  float y[8];
  RtError err;
  cr_assert_eq(kit_run(&k, x, y, &err), RT_OK, "%s", err.msg);
  for (int i = 0; i < 8; i++) {
    float want = i % 2 ? 5.0f : i == 0 ? 7.0f : -1.0f;
    cr_expect_eq(y[i], want, "y[%d] = %g, not %g", i, y[i], want);
  }
  hk_free(&k);
}

/* --- vector lanes ----------------------------------------------------------------------------------- */

/* local v0: f32x4 = bcast(0, 4)
 * for i0 < 8 step 4 vector width 4 { v0 = v0 + x<4>[i0] * x<4>[i0] }
 * y<4>[0] = v0 * bcast(2, 4)
 * y[4] = reduce_add(v0) */
static Stmt *squares(HandKit *k) {
  Program *p = &k->p;
  Expr *i0 = kx_var(p, 0), *xv = kx_load_lanes(p, k->in, i0, 4);
  Stmt *acc = ks_assign(p, 0, kx_bin(p, BIN_ADD, kx_vlocal(p, 0, DT_F32, 4), kx_bin(p, BIN_MUL, xv, xv)));
  Stmt *loop = ks_loop(p, 0, kx_i(p, 8), acc);
  loop->step = loop->width = 4, loop->loop = LOOP_VECTOR;
  Stmt *s = ks_local(p, 0, DT_F32, kx_broadcast(p, kx_f(p, 0), 4));
  ks_append(&s, loop);
  ks_append(&s, ks_store(p, k->out, kx_i(p, 0), kx_bin(p, BIN_MUL, kx_vlocal(p, 0, DT_F32, 4), kx_broadcast(p, kx_f(p, 2), 4))));
  ks_append(&s, ks_store(p, k->out, kx_i(p, 4), kx_reduce(p, BIN_ADD, kx_vlocal(p, 0, DT_F32, 4))));
  return s;
}

Test(steps, vector_lanes_loads_stores_broadcast_and_pairwise_reduce) {
  HandKit k;
  kit_init(&k, squares, 1, 1);
  const float x[8] = {1, 2, 3, 4, 0.5f, 1e8f, -1e8f, 0.25f};
  float y[8] = {0}, v[4], want[8] = {0};
  for (int l = 0; l < 4; l++) v[l] = x[l] * x[l] + x[l + 4] * x[l + 4], want[l] = v[l] * 2;
  want[4] = (v[0] + v[2]) + (v[1] + v[3]); /* pairwise, not (((v0 + v1) + v2) + v3) */
  RtError err;
  cr_assert_eq(kit_run(&k, x, y, &err), RT_OK, "%s", err.msg);
  for (int i = 0; i < 8; i++) cr_expect_eq(y[i], want[i], "y[%d] = %.9g, not %.9g", i, y[i], want[i]);
  hk_free(&k);
}

/* squares with its 4-lane store at y[6]: y[6 .. 9] passes y's end. */
static Stmt *store_past_end(HandKit *k) {
  Stmt *s = squares(k);
  s->next->next->index = kx_i(&k->p, 6);
  return s;
}

/* squares reading v0 as 8 lanes in the reduction. */
static Stmt *wrong_lanes(HandKit *k) {
  Stmt *s = squares(k);
  s->next->next->next->value->a->lanes = 8;
  return s;
}

Test(steps, broken_lanes_are_reported) {
  static const struct {
    Stmt *(*build)(HandKit *);
    const char *says;
  } cases[] = {
      {store_past_end, "store to b1[9] (y) is outside its 8 elements"},
      {wrong_lanes, "local v0 of 4 lanes read as 8"},
  };
  const float x[8] = {0};
  float y[8];
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    HandKit k;
    kit_init(&k, cases[i].build, 1, 1);
    RtError err;
    cr_expect_eq(kit_run(&k, x, y, &err), RT_ERR_FORMAT, "%s: not reported", cases[i].says);
    cr_expect(strstr(err.msg, cases[i].says), "'%s' expected, got '%s'", cases[i].says, err.msg);
    hk_free(&k);
  }
}
