/*
 * test_pipeline.c — the pipelines and their runner.
 *
 * Every sample goes through every pipeline (inference, inference with
 * embedded weights, training, gradients in train and eval mode, and the
 * forward pass in train mode) with --verify on and --dump-after=all: the
 * run succeeds, every step that applies appears in the dump by name, and
 * no check fails.
 *
 * The runner itself: a step that breaks the kernels is caught by --verify
 * right after it, and passes unnoticed without it; stop_after ends a run
 * at the step it names.
 */
#include <criterion/criterion.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/testutil.h"

static const char *const samples[] = {"mlp",    "logreg",    "blocks", "finetune",      "lenet5",
                                      "resnet", "inception", "unet",   "transfer_base", "transfer_head",
                                      "l2_explicit", "triplet"};
#define NSAMPLES (sizeof samples / sizeof *samples)

/* name: a sample, or a path relative to the source tree. */
static void load_sample(Model *m, const char *name, Diags *d) {
  char path[512];
  snprintf(path, sizeof path, strchr(name, '/') ? "%s/%s" : "%s/samples/%s.dl", DLC_SOURCE_DIR, name);
  cr_assert_eq(fe_load_file(m, path, d), 0, "%s does not load", path);
  for (int s = 0; s < m->g.nsyms; s++) m->g.syms[s].max = 2;
}

/* --- every sample, every pipeline, verified and dumped ------------------------------------ */

typedef struct Variant {
  PipelineKind kind;
  int train_mode;
  const char *label;
} Variant;

static const Variant variants[] = {
    {PIPE_INFER, 0, "infer"},         {PIPE_INFER, 1, "infer (train mode)"}, {PIPE_INFER_EMBED, 0, "infer-embed"},
    {PIPE_TRAIN, 1, "train"},         {PIPE_GRADS, 1, "grads (train mode)"}, {PIPE_GRADS, 0, "grads (eval mode)"},
};

/* Runs variant v on sample name; returns the dump (malloc'd). */
static char *run_variant(const char *name, const Variant *v) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  Diags d;
  diag_init(&d, stderr);
  Model m;
  load_sample(&m, name, &d);
  OptimSpec opt = {0};
  opt.kind = OPT_SGD, opt.lr = 0.1;
  PassOpts o = {"all", f, 1};
  o.train_mode = v->train_mode, o.seed = 3, o.optim = &opt, o.wrt_params = 1, o.wrt_inputs = 1;
  Graph a, b, *graphs[2] = {&a, &b};
  ir_graph_init(&a, m.g.name, &d);
  ir_graph_init(&b, m.g.name, &d);
  if (v->kind == PIPE_INFER || v->kind == PIPE_INFER_EMBED) graphs[0] = &m.g;
  RtTensorSet params;
  RtError err;
  rt_set_init(&params);
  cr_assert_eq(ir_params_init(&m.g, 5, &params, &err), RT_OK, "%s", err.msg);
  Program p;
  PassCtx c;
  pass_ctx_init(&c, v->kind, &m.g, m.train.loss, graphs, &p, &o, &d);
  c.params = &params;
  int rc = pass_run(&c);
  cr_expect_eq(rc, 0, "%s: pipeline %s fails", name, v->label);
  cr_expect_eq(d.nerrors, 0, "%s: pipeline %s reports problems", name, v->label);
  if (rc == 0) kir_program_free(&p);
  pass_ctx_free(&c);
  rt_set_free(&params);
  ir_graph_free(&a);
  ir_graph_free(&b);
  fe_model_free(&m);
  fclose(f);
  return out;
}

static void expect_every_step(const char *name, const Variant *v, const char *dump) {
  const Pipeline *pl = &pass_pipelines[v->kind];
  for (int i = 0; i < pl->nsteps; i++) {
    const PassStep *s = &pl->steps[i];
    char want[128];
    if (s->train_mode_only && !v->train_mode) snprintf(want, sizeof want, "; %s skipped (train mode only)\n", s->name);
    else snprintf(want, sizeof want, "; after %s%s", s->name, s->kernel ? "\nprogram " : " (");
    cr_expect(strstr(dump, want) != NULL, "%s, %s: no '%s' in the dump", name, v->label, want);
  }
}

Test(pipeline, every_sample_through_every_pipeline_verified, .timeout = 600) {
  for (size_t i = 0; i < NSAMPLES; i++)
    for (size_t k = 0; k < sizeof variants / sizeof *variants; k++) {
      char *dump = run_variant(samples[i], &variants[k]);
      expect_every_step(samples[i], &variants[k], dump);
      free(dump);
    }
}

/* --- the runner ------------------------------------------------------------------------------- */

/* A kernel step that breaks the program: the first store of the first
 * kernel writes a buffer that does not exist. */
static Stmt *first_store(Stmt *s) {
  for (; s; s = s->next) {
    Stmt *t = s->kind == ST_STORE ? s : s->kind == ST_LOOP ? first_store(s->body) : NULL;
    if (t) return t;
  }
  return NULL;
}

static int break_kernels(PassCtx *c) {
  Stmt *s = first_store(c->prog->funcs[0].kernels[0].body);
  cr_assert_not_null(s);
  s->id = c->prog->nbufs + 3;
  return 0;
}

static int run_broken(int verify, char **msgs) {
  size_t len;
  FILE *f = open_memstream(msgs, &len);
  Diags d;
  diag_init(&d, f);
  Model m;
  load_sample(&m, "mlp", &d);
  const PassStep steps[] = {{"dce", pass_dce_step, 0, 0, ""}, {"lower", pass_lower_step, 1, 0, ""},
                            {"break", break_kernels, 1, 0, ""}};
  Pipeline pl = {"broken", "", {"forward"}, steps, 3};
  PassOpts o = {.verify = verify};
  Program p;
  Graph *g = &m.g;
  PassCtx c;
  pass_ctx_init(&c, PIPE_INFER, &m.g, -1, &g, &p, &o, &d);
  int rc = pass_run_steps(&c, &pl);
  if (rc == 0) kir_program_free(&p);
  pass_ctx_free(&c);
  fe_model_free(&m);
  fclose(f);
  return rc;
}

Test(pipeline, verify_catches_a_broken_kernel_step_right_after_it) {
  char *msgs = NULL;
  cr_expect_eq(run_broken(1, &msgs), -1);
  cr_expect(strstr(msgs, "verify: forward kernel 0 (linear fc1): buffer b") && strstr(msgs, "does not exist"), "%s", msgs);
  free(msgs);
  msgs = NULL;
  cr_expect_eq(run_broken(0, &msgs), 0, "without --verify nothing checks: %s", msgs);
  free(msgs);
}

Test(pipeline, stop_after_ends_the_run_at_its_step) {
  Diags d;
  diag_init(&d, stderr);
  Model m;
  load_sample(&m, "mlp", &d);
  PassOpts o = {.stop_after = "lower"};
  Program p;
  Graph *g = &m.g;
  PassCtx c;
  pass_ctx_init(&c, PIPE_INFER, &m.g, -1, &g, &p, &o, &d);
  cr_assert_eq(pass_run(&c), 0);
  cr_expect(c.lowered && p.nfuncs == 1 && p.arena_size[DT_F32] == 0, "lowered but not planned");
  kir_program_free(&p);
  pass_ctx_free(&c);
  fe_model_free(&m);
}
