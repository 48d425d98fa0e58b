/*
 * test_kernel.c — the kernel-IR dumper and verifier.
 *
 * Golden: tests/golden/kernel/small.dl is compiled through the inference
 * pipeline and its kernel dump after each kernel step (lower, memplan) is
 * compared with small.STEP.txt; with DLC_REGEN_GOLDEN=1 the files are
 * rewritten instead (review the diff before committing it).
 *
 * Verifier: a correct hand-built kernel passes, and each kind of breakage
 * (a loop variable outside its loop, a local before its declaration, mixed
 * operand types, a comparison used as a value, a bad buffer id, a constant
 * index past the buffer, a store to an input, a reused loop variable, a
 * select whose condition is not a comparison) is rejected with its own
 * message.  Every sample's inference, training and gradient programs pass.
 */
#include <criterion/criterion.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/testutil.h"

#define GOLDEN(rel) (DLC_SOURCE_DIR "/tests/golden/kernel/" rel)

/* --- golden dumps ----------------------------------------------------------------- */

static char *dump_after(const char *model, const char *step) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  Diags d;
  diag_init(&d, stderr);
  Model m;
  cr_assert_eq(fe_load_file(&m, model, &d), 0);
  for (int s = 0; s < m.g.nsyms; s++) m.g.syms[s].max = 8;
  PassOpts o = {step, f, 1};
  Program p;
  cr_assert_eq(pass_pipeline_infer(&m.g, &p, &o, &d), 0, "%s does not compile cleanly", model);
  kir_program_free(&p);
  fe_model_free(&m);
  fclose(f);
  return out;
}

static void check_golden(const char *step) {
  char want_path[512];
  snprintf(want_path, sizeof want_path, "%s/small.%s.txt", GOLDEN(""), step);
  char *got = dump_after(GOLDEN("small.dl"), step);
  if (getenv("DLC_REGEN_GOLDEN")) {
    FILE *f = fopen(want_path, "w");
    cr_assert_not_null(f);
    fputs(got, f);
    fclose(f);
  }
  char *want = tu_read_file(want_path, NULL);
  cr_assert_not_null(want, "no golden file %s (DLC_REGEN_GOLDEN=1 writes it)", want_path);
  cr_expect_str_eq(got, want, "kernel dump after %s differs from %s", step, want_path);
  free(got);
  free(want);
}

Test(kernel, golden_dump_after_lower) { check_golden("lower"); }
Test(kernel, golden_dump_after_memplan) { check_golden("memplan"); }

Test(kernel, dump_shows_offsets_only_after_memplan) {
  char *lower = dump_after(GOLDEN("small.dl"), "lower"), *plan = dump_after(GOLDEN("small.dl"), "memplan");
  cr_expect(strstr(lower, "; after lower\nprogram small (N<=8)\nbuffers {\n") != NULL, "%s", lower);
  cr_expect(strstr(lower, " @ ") == NULL && strstr(lower, "arena f32") == NULL, "%s", lower);
  cr_expect(strstr(plan, " @ 0\n") != NULL && strstr(plan, "arena f32: ") != NULL, "%s", plan);
  free(lower);
  free(plan);
}

/* --- hand-broken kernels ------------------------------------------------------------ */

typedef struct Hand {
  Graph g;
  Program p;
  Diags d;
  char *msgs;
  size_t len;
  FILE *f;
  Func *fn;
  int in, out, tmp;   /* f32[8] input, f32[8] output, i64[8] temp */
} Hand;

static void hand_init(Hand *h) {
  h->msgs = NULL;
  h->f = open_memstream(&h->msgs, &h->len);
  diag_init(&h->d, h->f);
  ir_graph_init(&h->g, "hand", &h->d);
  kir_program_init(&h->p, &h->g);
  Shape s = {1, {8}};
  h->in = kir_buffer(&h->p, BUF_INPUT, DT_F32, "x", &s, -1);
  h->out = kir_buffer(&h->p, BUF_OUTPUT, DT_F32, "y", &s, -1);
  h->tmp = kir_buffer(&h->p, BUF_TEMP, DT_I64, "t", &s, -1);
  h->fn = kir_func(&h->p, "forward", &h->g);
}

/* One kernel with body, nvars loop variables and nlocals locals; returns
 * the number of problems and leaves the messages in h->msgs. */
static int hand_verify(Hand *h, Stmt *body, int nvars, int nlocals) {
  Kernel *k = kir_kernel(&h->p, h->fn, "hand", (SrcLoc){0});
  k->body = body;
  k->nvars = nvars;
  k->nlocals = nlocals;
  int bad = kir_verify(&h->p, &h->d);
  fflush(h->f);
  return bad;
}

static void hand_free(Hand *h) {
  fclose(h->f);
  free(h->msgs);
  kir_program_free(&h->p);
  ir_graph_free(&h->g);
}

/* y[i] = x[i] * 2 over i < 8 */
static Stmt *good_loop(Hand *h, int var) {
  Program *p = &h->p;
  Expr *i = kx_var(p, var);
  return ks_loop(p, var, kx_i(p, 8), ks_store(p, h->out, i, kx_bin(p, BIN_MUL, kx_load(p, h->in, i), kx_f(p, 2))));
}

static void expect_rejected(Hand *h, int bad, const char *needle) {
  cr_expect_gt(bad, 0, "not rejected (wanted '%s')", needle);
  cr_expect(h->msgs && strstr(h->msgs, needle), "no '%s' in:\n%s", needle, h->msgs ? h->msgs : "");
  cr_expect(h->msgs && strstr(h->msgs, "verify: forward kernel 0 (hand): "), "messages name the kernel:\n%s", h->msgs);
}

Test(kernel_verify, a_correct_kernel_passes) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = good_loop(&h, 0);
  /* a local accumulator inside a second loop, and a guarded select */
  Stmt *acc = ks_local(p, 0, DT_F32, kx_f(p, 0));
  ks_append(&acc, ks_assign(p, 0, kx_select(p, kx_bin(p, BIN_GT, kx_load(p, h.in, kx_var(p, 1)), kx_f(p, 0)),
                                            kx_local(p, 0, DT_F32), kx_f(p, 1))));
  ks_append(&acc, ks_store(p, h.out, kx_var(p, 1), kx_local(p, 0, DT_F32)));
  ks_append(&s, ks_loop(p, 1, kx_i(p, 8), acc));
  cr_expect_eq(hand_verify(&h, s, 2, 1), 0, "%s", h.msgs);
  hand_free(&h);
}

Test(kernel_verify, loop_variable_outside_its_loop) {
  Hand h;
  hand_init(&h);
  Stmt *s = good_loop(&h, 0);
  ks_append(&s, ks_store(&h.p, h.out, kx_var(&h.p, 0), kx_f(&h.p, 0)));
  expect_rejected(&h, hand_verify(&h, s, 1, 0), "loop variable i0 used outside its loop");
  hand_free(&h);
}

Test(kernel_verify, loop_variable_reused_inside_its_loop) {
  Hand h;
  hand_init(&h);
  Stmt *s = ks_loop(&h.p, 0, kx_i(&h.p, 2), good_loop(&h, 0));
  expect_rejected(&h, hand_verify(&h, s, 1, 0), "loop variable i0 reused by a loop inside its own loop");
  hand_free(&h);
}

Test(kernel_verify, local_before_its_declaration) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = ks_store(p, h.out, kx_i(p, 0), kx_local(p, 0, DT_F32));
  ks_append(&s, ks_local(p, 0, DT_F32, kx_f(p, 1)));
  expect_rejected(&h, hand_verify(&h, s, 0, 1), "local v0 used before its declaration");
  hand_free(&h);
}

Test(kernel_verify, local_out_of_scope_after_its_loop) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = ks_loop(p, 0, kx_i(p, 8), ks_local(p, 0, DT_F32, kx_f(p, 1)));
  ks_append(&s, ks_assign(p, 0, kx_f(p, 2)));
  expect_rejected(&h, hand_verify(&h, s, 1, 1), "local v0 assigned before its declaration");
  hand_free(&h);
}

Test(kernel_verify, mixed_operand_types) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = ks_store(p, h.out, kx_i(p, 0), kx_bin(p, BIN_ADD, kx_load(p, h.in, kx_i(p, 0)), kx_i(p, 1)));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "operands of + are f32 and i64");
  hand_free(&h);
}

Test(kernel_verify, float_index) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = ks_store(p, h.out, kx_f(p, 0), kx_f(p, 1));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "index of b1 (y) is f32, not i64");
  hand_free(&h);
}

Test(kernel_verify, comparison_used_as_a_value) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = ks_store(p, h.tmp, kx_i(p, 0), kx_bin(p, BIN_LT, kx_i(p, 1), kx_i(p, 2)));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "comparison < used as a value");
  hand_free(&h);
}

Test(kernel_verify, select_condition_not_a_comparison) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = ks_store(p, h.out, kx_i(p, 0), kx_select(p, kx_i(p, 1), kx_f(p, 1), kx_f(p, 2)));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "select condition is not a comparison");
  hand_free(&h);
}

Test(kernel_verify, buffer_that_does_not_exist) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = ks_store(p, 7, kx_i(p, 0), kx_f(p, 1));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "buffer b7 does not exist (the program has 3)");
  hand_free(&h);
}

Test(kernel_verify, constant_index_past_the_buffer) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  /* y[i + 1] over i < 8 writes element 8 of 8 */
  Stmt *s = ks_loop(p, 0, kx_i(p, 8), ks_store(p, h.out, kx_iadd(p, kx_var(p, 0), kx_i(p, 1)), kx_f(p, 0)));
  expect_rejected(&h, hand_verify(&h, s, 1, 0), "store to b1 (y) at indices [1, 8], outside its 8 elements");
  hand_free(&h);
}

Test(kernel_verify, load_past_the_buffer_unless_guarded) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *past = kx_load(p, h.in, kx_i(p, -1));
  Stmt *s = ks_store(p, h.out, kx_i(p, 0), past);
  /* the same load under a select is a guarded (padding) read, not a problem */
  ks_append(&s, ks_store(p, h.out, kx_i(p, 1), kx_select(p, kx_bin(p, BIN_GT, kx_i(p, 0), kx_i(p, 1)), past, kx_f(p, 0))));
  int bad = hand_verify(&h, s, 0, 0);
  expect_rejected(&h, bad, "load of b0 (x) at indices [-1, -1], outside its 8 elements");
  cr_expect_eq(bad, 1, "%s", h.msgs);
  hand_free(&h);
}

Test(kernel_verify, store_to_an_input) {
  Hand h;
  hand_init(&h);
  Stmt *s = ks_store(&h.p, h.in, kx_i(&h.p, 0), kx_f(&h.p, 1));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "store to input buffer b0 (x)");
  hand_free(&h);
}

Test(kernel_verify, store_of_the_wrong_type) {
  Hand h;
  hand_init(&h);
  Stmt *s = ks_store(&h.p, h.tmp, kx_i(&h.p, 0), kx_f(&h.p, 1));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "store of a f32 value to b2 (t), which holds i64");
  hand_free(&h);
}

/* --- the samples ---------------------------------------------------------------------- */

static const char *const samples[] = {"mlp", "logreg", "blocks", "finetune", "lenet5", "resnet", "inception", "unet", "transfer_base", "transfer_head"};

static void load_sample(Model *m, const char *name, Diags *d) {
  char path[512];
  snprintf(path, sizeof path, "%s/samples/%s.dl", DLC_SOURCE_DIR, name);
  cr_assert_eq(fe_load_file(m, path, d), 0, "%s does not load", path);
  for (int s = 0; s < m->g.nsyms; s++) m->g.syms[s].max = 4;
}

Test(kernel_verify, every_sample_inference_program, .timeout = 120) {
  for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
    Diags d;
    diag_init(&d, stderr);
    Model m;
    load_sample(&m, samples[i], &d);
    PassOpts o = {NULL, NULL, 1};
    Program p;
    cr_expect_eq(pass_pipeline_infer(&m.g, &p, &o, &d), 0, "%s: the inference program does not verify", samples[i]);
    if (!d.nerrors) kir_program_free(&p);
    fe_model_free(&m);
  }
}

Test(kernel_verify, every_sample_training_and_gradient_program, .timeout = 300) {
  for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
    Diags d;
    diag_init(&d, stderr);
    Model m;
    load_sample(&m, samples[i], &d);
    OptimSpec o = {0};
    o.kind = OPT_ADAM, o.lr = 1e-3, o.hp[HP_BETA1] = 0.9, o.hp[HP_BETA2] = 0.999, o.hp[HP_EPS] = 1e-8;
    Graph tg, eg, gg;
    ir_graph_init(&tg, m.g.name, &d);
    ir_graph_init(&eg, m.g.name, &d);
    ir_graph_init(&gg, m.g.name, &d);
    cr_assert_eq(pass_build_train(&m.g, m.train.loss, &o, &tg), 0);
    cr_assert_eq(pass_build_eval(&m.g, m.train.loss, &eg), 0);
    cr_assert_eq(pass_build_grads(&m.g, m.train.loss, 1, 1, &(DecomposeOpts){1, 0}, &gg), 0);
    Program p;
    kir_program_init(&p, &m.g);
    pass_lower(&p, kir_func(&p, "train_step", &tg));
    pass_lower(&p, kir_func(&p, "eval_step", &eg));
    pass_lower(&p, kir_func(&p, "grads", &gg));
    cr_expect_eq(kir_verify(&p, &d), 0, "%s: the lowered training program does not verify", samples[i]);
    pass_memplan(&p);
    cr_expect_eq(kir_verify(&p, &d), 0, "%s: the planned training program does not verify", samples[i]);
    kir_program_free(&p);
    ir_graph_free(&tg);
    ir_graph_free(&eg);
    ir_graph_free(&gg);
    fe_model_free(&m);
  }
}
