/*
 * test_derived.c — parameter-derived data (kernel.h, kir_derived).
 *
 * A dense layer with enough rows reads its weight transposed.  The copy is
 * a derived buffer made by the program's prepare function whenever the
 * parameters changed, never by an entry point on every call:
 *
 * - no kernel of the forward pass of samples/mlp.dl (compiled for
 *   batches up to 16: the rows form of every dense layer) stores a plain
 *   copy of a parameter; prepare holds one transpose per dense layer;
 * - the C backend and the JIT agree with the interpreter when the weights
 *   change between calls (set_param, then load) and with the weights
 *   compiled in (C here; the LLVM object with --embed-params is checked
 *   by backend_llvm/object_file_links_into_a_c_program);
 * - three Adam steps of a training step in the rows form (the update
 *   changes the weights at the end of every step) end with the
 *   parameters of the same steps in the dot-product form, which has no
 *   derived data.
 */
#include <criterion/criterion.h>
#include <unistd.h>

#include "codegen/cg.h"
#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "passes/schedule.h"
#include "tests/testutil.h"

#define FAST_CFLAGS "-O1 -Wall -Wextra -pedantic -Werror"
#define TOL 1e-5
#define BATCH 9

typedef struct Mlp {
  Diags d;
  Model m;
  Program p;
  RtTensorSet w[2];         /* two sets of weights: seeds 7 and 8 */
  RtTensor x;
  int64_t sym[IR_MAX_SYMS];
} Mlp;

static void mlp_setup(Mlp *s) {
  RtError err;
  diag_init(&s->d, stderr);
  cr_assert_eq(fe_load_file(&s->m, DLC_SOURCE_DIR "/samples/mlp.dl", &s->d), 0);
  for (int i = 0; i < s->m.g.nsyms; i++) s->m.g.syms[i].max = 16;
  cr_assert_eq(pass_pipeline_infer(&s->m.g, &s->p, NULL, &s->d), 0);
  for (int k = 0; k < 2; k++) {
    rt_set_init(&s->w[k]);
    cr_assert_eq(ir_params_init(&s->m.g, 7 + (uint64_t)k, &s->w[k], &err), RT_OK, "%s", err.msg);
  }
  int64_t shape[2] = {BATCH, 784};
  cr_assert_eq(rt_tensor_alloc(&s->x, DT_F32, 2, shape, &err), RT_OK);
  float *xv = s->x.data;
  for (int i = 0; i < BATCH * 784; i++) xv[i] = (float)((i * 37 % 101) / 101.0);
  s->sym[0] = BATCH;
}

static void mlp_free(Mlp *s) {
  for (int k = 0; k < 2; k++) rt_set_free(&s->w[k]);
  rt_tensor_free(&s->x);
  kir_program_free(&s->p);
  fe_model_free(&s->m);
}

/* The interpreter's output o (logits or probs) under weights w, malloc'd. */
static float *interp_output(Mlp *s, const RtTensorSet *w, const char *o) {
  RtError err;
  const Graph *g = &s->m.g;
  RtTensor *vals = calloc((size_t)g->nnodes + 1, sizeof *vals);
  vals[ir_find_input(g, "x")] = s->x;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_PARAM) vals[i] = *rt_set_find((RtTensorSet *)w, g->nodes[i].name);
  cr_assert_eq(ir_bind_symbols(g, vals, s->sym, &err), RT_OK, "%s", err.msg);
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(g, vals, s->sym, &io, &err), RT_OK, "%s", err.msg);
  const RtTensor *t = &vals[g->outputs[ir_find_output(g, o)].id];
  float *out = malloc(rt_tensor_nbytes(t));
  memcpy(out, t->data, rt_tensor_nbytes(t));
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op != OP_PARAM && g->nodes[i].op != OP_INPUT) rt_tensor_free(&vals[i]);
  free(vals);
  return out;
}

/* Calls forward of m and checks both outputs against the interpreter's
 * under weights w. */
static void expect_forward(Mlp *s, CModule *m, const RtTensorSet *w, const char *when) {
  RtError err;
  const Graph *g = &s->m.g;
  const Func *f = &s->p.funcs[0];
  float *outs[2] = {calloc(BATCH * 10, sizeof(float)), calloc(BATCH * 10, sizeof(float))};
  void *args[3];
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &s->p.bufs[f->args[i]];
    args[i] = b->kind == BUF_INPUT ? s->x.data : outs[ir_find_output(g, b->name)];
  }
  cr_assert_eq(f->nargs, 3);
  cr_assert_eq(cg_c_call(m, "forward", s->sym, args, &err), RT_OK, "%s", err.msg);
  for (int o = 0; o < 2; o++) {
    float *want = interp_output(s, w, g->outputs[o].name);
    for (int64_t i = 0; i < BATCH * 10; i++) {
      double e = tu_normerr(outs[o], want, BATCH * 10, i);
      cr_assert(e <= TOL, "%s: %s[%lld] is %.9g compiled, %.9g interpreted", when, g->outputs[o].name, (long long)i,
                outs[o][i], want[i]);
    }
    free(want);
    free(outs[o]);
  }
}

/* Whether s (or a statement after it) stores a plain load of a param or
 * state buffer into a buffer of the same size: what a per-call copy of a
 * weight in another layout looks like (a bias that starts each row of a
 * dense layer's output is loaded into a larger buffer). */
static int copies_a_param(const Program *p, const Stmt *s) {
  for (; s; s = s->next) {
    if (s->kind == ST_STORE && s->value->kind == EX_LOAD) {
      const Buffer *from = &p->bufs[s->value->id];
      if ((from->kind == BUF_PARAM || from->kind == BUF_STATE) && p->bufs[s->id].size == from->size) return 1;
    }
    if (s->kind == ST_LOOP && copies_a_param(p, s->body)) return 1;
  }
  return 0;
}

Test(derived, forward_pass_copies_no_weight) {
  Mlp s;
  mlp_setup(&s);
  const Func *f = &s.p.funcs[0];
  for (int k = 0; k < f->nkernels; k++)
    cr_expect(!copies_a_param(&s.p, f->kernels[k].body), "kernel %d (%s) of forward copies a parameter", k,
              f->kernels[k].what);
  cr_assert_not_null(s.p.prepare, "the rows form reads its weights from derived buffers");
  cr_expect_eq(s.p.prepare->nkernels, 3, "one transpose per dense layer");
  int derived = 0;
  for (int b = 0; b < s.p.nbufs; b++) derived += s.p.bufs[b].kind == BUF_DERIVED;
  cr_expect_eq(derived, 3);
  cr_expect_eq(kir_verify(&s.p, &s.d), 0);
  mlp_free(&s);
}

/* A second request for the same parameter and layout is the same buffer. */
Test(derived, one_buffer_per_parameter_and_layout) {
  Mlp s;
  mlp_setup(&s);
  int w = -1;
  for (int b = 0; b < s.p.nbufs && w < 0; b++)
    if (s.p.bufs[b].kind == BUF_PARAM && !strcmp(s.p.bufs[b].name, "fc1.weight")) w = b;
  cr_assert_geq(w, 0);
  /* fc1's tiles read its panels of 64 rows: asking again makes nothing */
  int nbufs = s.p.nbufs, nk = s.p.prepare->nkernels;
  int pn = kir_derived_panels(&s.p, w, 64);
  cr_assert_geq(pn, 0);
  cr_expect_eq(s.p.bufs[pn].src, w);
  cr_expect_eq(s.p.bufs[pn].layout, DL_PANELS);
  cr_expect_eq(s.p.nbufs, nbufs, "no new buffer for the panels");
  cr_expect_eq(s.p.prepare->nkernels, nk, "no new kernel for the panels");
  /* another layout of it is another buffer, made once */
  int d = kir_derived(&s.p, w, DL_TRANSPOSED);
  cr_assert_geq(d, 0);
  cr_expect_neq(d, pn);
  cr_expect_eq(s.p.bufs[d].src, w);
  cr_expect_eq(s.p.nbufs, nbufs + 1);
  cr_expect_eq(s.p.prepare->nkernels, nk + 1);
  cr_expect_eq(kir_derived(&s.p, w, DL_TRANSPOSED), d);
  cr_expect_eq(kir_derived_panels(&s.p, w, 64), pn);
  cr_expect_eq(s.p.nbufs, nbufs + 1, "no new buffer");
  cr_expect_eq(s.p.prepare->nkernels, nk + 1, "no new kernel");
  int input = s.p.funcs[0].args[0];
  cr_expect_eq(kir_derived(&s.p, input, DL_TRANSPOSED), -1, "only params and state have derived layouts");
  mlp_free(&s);
}

static void weights_change_between_calls(CModule *(*build)(const Program *, RtError *)) {
  Mlp s;
  mlp_setup(&s);
  RtError err;
  CModule *m = build(&s.p, &err);
  cr_assert_not_null(m, "%s", err.msg);
  cr_assert_eq(cg_c_set_params(m, &s.w[0], &err), RT_OK, "%s", err.msg);
  expect_forward(&s, m, &s.w[0], "first weights");
  expect_forward(&s, m, &s.w[0], "first weights, again");
  cr_assert_eq(cg_c_set_params(m, &s.w[1], &err), RT_OK, "%s", err.msg);
  expect_forward(&s, m, &s.w[1], "after set_param");
  char dir[512], path[700];
  snprintf(dir, sizeof dir, "%s", tu_scratch_dir());
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  cr_assert_eq(rt_safetensors_write(path, &s.w[0], &err), RT_OK, "%s", err.msg);
  int (*load)(const char *) = (int (*)(const char *))m->lookup(m, "mlp_load");
  cr_assert_not_null(load);
  cr_assert_eq(load(path), 0);
  expect_forward(&s, m, &s.w[0], "after load");
  unlink(path);
  rmdir(dir);
  cg_c_free(m);
  mlp_free(&s);
}

static CModule *build_c(const Program *p, RtError *err) { return cg_c_build(p, FAST_CFLAGS, err); }

Test(derived, c_follows_weight_changes, .timeout = 300) { weights_change_between_calls(build_c); }
Test(derived, jit_follows_weight_changes, .timeout = 300) { weights_change_between_calls(cg_jit_build); }

Test(derived, c_with_embedded_weights, .timeout = 300) {
  Mlp s;
  mlp_setup(&s);
  RtError err;
  CModule *m = cg_c_build_embedded(&s.p, FAST_CFLAGS, &s.w[1], &err);
  cr_assert_not_null(m, "%s", err.msg);
  expect_forward(&s, m, &s.w[1], "embedded, first call");
  expect_forward(&s, m, &s.w[1], "embedded, second call");
  cr_expect_neq(cg_c_set_params(m, &s.w[0], &err), RT_OK, "embedded weights cannot be set");
  expect_forward(&s, m, &s.w[1], "embedded, after a refused set_param");
  cg_c_free(m);
  mlp_free(&s);
}

/* --- training: the update marks the derived copies stale ------------------------- */

typedef struct Step {
  Model m;
  Graph tg;
  Program p;
} Step;

/* tests/fixtures/train/tiny.dl's train_step with Adam for batches up to
 * max: 8 gives the rows form (derived weights), 4 the dot-product form. */
static void step_setup(Step *s, Diags *d, int64_t max) {
  cr_assert_eq(fe_load_file(&s->m, FIXTURE("train/tiny.dl"), d), 0);
  for (int i = 0; i < s->m.g.nsyms; i++) s->m.g.syms[i].max = max;
  OptimSpec o;
  trainer_optim_defaults(&o, OPT_ADAM, 0.01);
  ir_graph_init(&s->tg, s->m.g.name, d);
  cr_assert_eq(pass_build_train(&s->m.g, s->m.train.loss, &o, &s->tg), 0);
  kir_program_init(&s->p, &s->m.g);
  pass_lower(&s->p, kir_func(&s->p, "train_step", &s->tg));
  /* without register tiles, which take these layers and pack their
   * weights per call: the rows form reads the transposed copy */
  sched_program(&s->p, &(SchedOpts){0});
  pass_memplan(&s->p);
}

static void step_free(Step *s) {
  kir_program_free(&s->p);
  ir_graph_free(&s->tg);
  fe_model_free(&s->m);
}

/* Three steps on a batch of 4 from the fixture's initial weights; the
 * parameters and state after them into out. */
static void three_steps(Step *s, CModule *(*build)(const Program *, RtError *), RtTensorSet *out) {
  RtError err;
  RtTensor x, y;
  RtTensorSet init;
  rt_set_init(&init);
  cr_assert_eq(rt_npy_read(FIXTURE("train/tiny.x.npy"), &x, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_npy_read(FIXTURE("train/tiny.y.npy"), &y, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_safetensors_read(FIXTURE("train/tiny.init.safetensors"), &init, &err), RT_OK, "%s", err.msg);
  CModule *m = build(&s->p, &err);
  cr_assert_not_null(m, "%s", err.msg);
  cr_assert_eq(cg_c_set_params(m, &init, &err), RT_OK, "%s", err.msg);
  const Func *f = &s->p.funcs[0];
  float lr = 0.01f, step = 0;
  static float scratch[16][256];
  void *args[16];
  cr_assert(f->nargs <= 16);
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &s->p.bufs[f->args[i]];
    args[i] = !strcmp(b->name, "x") ? x.data : !strcmp(b->name, "y") ? y.data : !strcmp(b->name, "lr") ? (void *)&lr
              : !strcmp(b->name, "step") ? (void *)&step : scratch[i];
    cr_assert(b->kind == BUF_INPUT || b->size <= 256);
  }
  int64_t sym[IR_MAX_SYMS] = {4, 4, 4, 4, 4, 4, 4, 4};
  for (int k = 1; k <= 3; k++) {
    step = (float)k;
    cr_assert_eq(cg_c_call(m, "train_step", sym, args, &err), RT_OK, "%s", err.msg);
  }
  rt_set_init(out);
  cr_assert_eq(cg_c_get_params(m, out, &err), RT_OK, "%s", err.msg);
  cg_c_free(m);
  rt_set_free(&init);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
}

static void train_rows_like_dot(CModule *(*build)(const Program *, RtError *)) {
  Diags d;
  diag_init(&d, stderr);
  Step rows, dot;
  step_setup(&rows, &d, 8);
  step_setup(&dot, &d, 4);
  cr_assert_not_null(rows.p.prepare, "batches up to 8: the rows form");
  cr_assert_null(dot.p.prepare, "batches up to 4: the dot-product form");
  RtTensorSet a, b;
  three_steps(&rows, build, &a);
  three_steps(&dot, build, &b);
  cr_assert_eq(a.count, b.count);
  for (int i = 0; i < a.count; i++) {
    const RtTensor *ta = &a.items[i].t, *tb = rt_set_find(&b, a.items[i].name);
    cr_assert_not_null(tb, "%s", a.items[i].name);
    int64_t n = rt_tensor_numel(ta);
    for (int64_t j = 0; j < n; j++)
      cr_assert(tu_normerr(ta->data, tb->data, n, j) <= TOL, "%s[%lld]: rows form %.9g, dot form %.9g",
                a.items[i].name, (long long)j, ((float *)ta->data)[j], ((float *)tb->data)[j]);
  }
  rt_set_free(&a);
  rt_set_free(&b);
  step_free(&rows);
  step_free(&dot);
}

Test(derived, c_training_refreshes_after_each_update, .timeout = 300) { train_rows_like_dot(build_c); }
Test(derived, jit_training_refreshes_after_each_update, .timeout = 300) { train_rows_like_dot(cg_jit_build); }
