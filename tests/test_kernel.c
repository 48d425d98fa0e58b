/*
 * test_kernel.c — the kernel-IR dumper and verifier.
 *
 * Golden: tests/golden/kernel/small.dl is compiled through the inference
 * pipeline and its kernel dump after each kernel step (lower, memplan) is
 * compared with small.STEP.txt; with DLC_REGEN_GOLDEN=1 the files are
 * rewritten instead (review the diff before committing it).
 *
 * Verifier: a correct hand-built kernel passes, and each kind of breakage
 * (a loop variable outside its loop, a local before its declaration, an
 * implicit conversion, a bool stored as a number, a non-bool condition,
 * arithmetic on bool or u8, a cast to bool, a bad guard, a constant that
 * does not fit its type, a bad buffer id, a constant index past the
 * buffer, an unguarded load out of range, a store to an input, a reused
 * loop variable) is rejected with its own message.  The builders refuse
 * the same mistakes as they build (the broken trees below are built right
 * and then damaged by hand).  Every sample's inference, training and
 * gradient programs pass.
 */
#include <criterion/criterion.h>
#include <signal.h>

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
Test(kernel, golden_dump_after_schedule) { check_golden("schedule"); }
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
  /* a local accumulator inside a second loop, a select, a bool local, an
   * f64 local with casts, and a guarded load past the end */
  Expr *i1 = kx_var(p, 1);
  Stmt *acc = ks_local(p, 0, DT_F32, kx_f(p, 0));
  ks_append(&acc, ks_assign(p, 0, kx_select(p, kx_bin(p, BIN_GT, kx_load(p, h.in, i1), kx_f(p, 0)),
                                            kx_local(p, 0, DT_F32), kx_f(p, 1))));
  Expr *more = kx_bin(p, BIN_LT, kx_iadd(p, i1, kx_i(p, 1)), kx_i(p, 8));
  ks_append(&acc, ks_local(p, 1, DT_BOOL, kx_bin(p, BIN_OR, more, kx_bin(p, BIN_EQ, kx_local(p, 0, DT_F32), kx_f(p, 1)))));
  ks_append(&acc, ks_local(p, 2, DT_F64, kx_cast(p, DT_F64, kx_local(p, 0, DT_F32))));
  Expr *next = kx_load_guarded(p, h.in, kx_iadd(p, i1, kx_i(p, 1)), kx_bin(p, BIN_AND, kx_local(p, 1, DT_BOOL), more), NULL);
  Expr *sum = kx_bin(p, BIN_ADD, kx_local(p, 2, DT_F64), kx_cast(p, DT_F64, next));
  ks_append(&acc, ks_store(p, h.out, i1, kx_cast(p, DT_F32, sum)));
  ks_append(&acc, ks_store(p, h.tmp, i1, kx_bin(p, BIN_MUL, kx_cast(p, DT_I64, kx_local(p, 1, DT_BOOL)), kx_i(p, 3))));
  ks_append(&s, ks_loop(p, 1, kx_i(p, 8), acc));
  cr_expect_eq(hand_verify(&h, s, 2, 3), 0, "%s", h.msgs);
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

/* A store of value into y[0] (the value need not suit y: see the tests). */
static Stmt *store0(Hand *h, int buf, Expr *value) {
  Stmt *s = ks_store(&h->p, h->out, kx_i(&h->p, 0), kx_f(&h->p, 0));
  s->id = buf;
  s->value = value;
  return s;
}

/* a op b built from operands of one type, then given b. */
static Expr *damaged(Program *p, BinOp op, Expr *a, Expr *b) {
  Expr *e = kx_bin(p, op, a, a);
  e->b = b;
  return e;
}

Test(kernel_verify, implicit_conversion_in_arithmetic) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *x = kx_load(p, h.in, kx_i(p, 0));
  Stmt *s = store0(&h, h.out, damaged(p, BIN_ADD, x, kx_i(p, 1)));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "operands of + are f32 and i64 (convert one with a cast)");
  hand_free(&h);
}

Test(kernel_verify, implicit_conversion_f32_to_f64) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = ks_local(p, 0, DT_F64, kx_fconst(p, DT_F64, 0));
  ks_append(&s, ks_assign(p, 0, damaged(p, BIN_MUL, kx_local(p, 0, DT_F64), kx_f(p, 2))));
  expect_rejected(&h, hand_verify(&h, s, 0, 1), "operands of * are f64 and f32");
  hand_free(&h);
}

Test(kernel_verify, float_index) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = store0(&h, h.out, kx_f(p, 1));
  s->index = kx_f(p, 0);
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "index of b1 (y) is f32, not i64");
  hand_free(&h);
}

Test(kernel_verify, bool_stored_as_a_number) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = store0(&h, h.tmp, kx_bin(p, BIN_LT, kx_i(p, 1), kx_i(p, 2)));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "store of a bool value to b2 (t), which holds i64");
  hand_free(&h);
}

Test(kernel_verify, comparison_not_typed_bool) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *lt = kx_bin(p, BIN_LT, kx_i(p, 1), kx_i(p, 2));
  lt->type = DT_I64;
  Stmt *s = store0(&h, h.tmp, lt);
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "< of i64 operands typed i64, not bool");
  hand_free(&h);
}

Test(kernel_verify, select_condition_not_bool) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *sel = kx_select(p, kx_bool(p, 1), kx_f(p, 1), kx_f(p, 2));
  sel->a = kx_i(p, 1);
  expect_rejected(&h, hand_verify(&h, store0(&h, h.out, sel), 0, 0), "select condition is i64, not bool");
  hand_free(&h);
}

Test(kernel_verify, select_arms_of_two_types) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *sel = kx_select(p, kx_bool(p, 1), kx_f(p, 1), kx_f(p, 2));
  sel->c = kx_fconst(p, DT_F64, 2);
  expect_rejected(&h, hand_verify(&h, store0(&h, h.out, sel), 0, 0), "select of f32 and f64 typed f32");
  hand_free(&h);
}

Test(kernel_verify, if_condition_not_bool) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = ks_if(p, kx_bool(p, 1), store0(&h, h.out, kx_f(p, 1)), NULL);
  s->value = kx_load(p, h.in, kx_i(p, 0));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "if condition is f32, not bool");
  hand_free(&h);
}

Test(kernel_verify, arithmetic_on_bool) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *lt = kx_bin(p, BIN_LT, kx_i(p, 1), kx_i(p, 2));
  Expr *sum = kx_bin(p, BIN_AND, lt, lt);
  sum->op = BIN_ADD;
  Stmt *s = store0(&h, h.tmp, kx_cast(p, DT_I64, sum));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "+ of bool operands");
  hand_free(&h);
}

Test(kernel_verify, logic_on_numbers) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *both = kx_bin(p, BIN_AND, kx_bool(p, 1), kx_bool(p, 0));
  both->a = both->b = kx_i(p, 1);
  Stmt *s = store0(&h, h.out, kx_select(p, kx_bool(p, 1), kx_f(p, 1), kx_f(p, 0)));
  s->value->a = both;
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "&& of i64 operands");
  hand_free(&h);
}

Test(kernel_verify, arithmetic_on_u8) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *three = kx_iconst(p, DT_U8, 3);
  Expr *sum = kx_bin(p, BIN_EQ, three, three);
  sum->op = BIN_ADD, sum->type = DT_U8;
  Stmt *s = store0(&h, h.tmp, kx_cast(p, DT_I64, sum));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "+ of u8 operands");
  hand_free(&h);
}

Test(kernel_verify, transcendental_of_an_integer) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *e = kx_un(p, UN_EXP, kx_f(p, 1));
  e->a = kx_i(p, 1), e->type = DT_I64;
  expect_rejected(&h, hand_verify(&h, store0(&h, h.tmp, e), 0, 0), "exp of a i64 operand (needs f32 or f64)");
  hand_free(&h);
}

Test(kernel_verify, cast_to_bool) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *c = kx_cast(p, DT_I64, kx_f(p, 1));
  c->type = DT_BOOL;
  Stmt *s = store0(&h, h.out, kx_select(p, kx_bool(p, 1), kx_f(p, 1), kx_f(p, 0)));
  s->value->a = c;
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "cast to bool (compare with a number instead)");
  hand_free(&h);
}

Test(kernel_verify, constant_outside_its_type) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *k = kx_iconst(p, DT_U8, 255);
  k->i = 300;
  expect_rejected(&h, hand_verify(&h, store0(&h, h.tmp, kx_cast(p, DT_I64, k)), 0, 0), "integer constant 300 typed u8");
  hand_free(&h);
}

Test(kernel_verify, guard_not_bool_and_otherwise_of_another_type) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Expr *g = kx_load_guarded(p, h.in, kx_i(p, 0), kx_bool(p, 1), NULL);
  g->b = kx_f(p, 1);
  Expr *o = kx_load_guarded(p, h.in, kx_i(p, 0), kx_bool(p, 1), NULL);
  o->c = kx_i(p, 0);
  Stmt *s = store0(&h, h.out, g);
  ks_append(&s, store0(&h, h.out, o));
  int bad = hand_verify(&h, s, 0, 0);
  expect_rejected(&h, bad, "guard of a load is f32, not bool");
  expect_rejected(&h, bad, "guarded load of b0 (x) gives i64 otherwise, not f32");
  hand_free(&h);
}

/* The builders refuse what the verifier rejects, where it is built. */
Test(kernel_build, implicit_conversion_stops_the_builder, .signal = SIGABRT) {
  Hand h;
  hand_init(&h);
  kx_bin(&h.p, BIN_ADD, kx_load(&h.p, h.in, kx_i(&h.p, 0)), kx_i(&h.p, 1));
}

Test(kernel_build, non_bool_condition_stops_the_builder, .signal = SIGABRT) {
  Hand h;
  hand_init(&h);
  kx_select(&h.p, kx_i(&h.p, 1), kx_f(&h.p, 1), kx_f(&h.p, 2));
}

Test(kernel_build, bool_arithmetic_stops_the_builder, .signal = SIGABRT) {
  Hand h;
  hand_init(&h);
  kx_bin(&h.p, BIN_MUL, kx_bool(&h.p, 1), kx_bool(&h.p, 0));
}

Test(kernel_build, store_of_another_type_stops_the_builder, .signal = SIGABRT) {
  Hand h;
  hand_init(&h);
  ks_store(&h.p, h.out, kx_i(&h.p, 0), kx_fconst(&h.p, DT_F64, 1));
}

Test(kernel_build, typed_constants_and_casts) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  cr_expect_eq(kx_bin(p, BIN_LT, kx_f(p, 1), kx_f(p, 2))->type, DT_BOOL);
  cr_expect_eq(kx_iconst(p, DT_I32, 7)->type, DT_I32);
  cr_expect_eq(kx_fconst(p, DT_F64, 0.1)->type, DT_F64);
  Expr *x = kx_f(p, 1);
  cr_expect_eq(kx_cast(p, DT_F32, x), x, "a cast to the type a value has is the value");
  cr_expect_eq(kx_cast(p, DT_F64, x)->kind, EX_CAST);
  Expr *g = kx_load_guarded(p, h.in, kx_i(p, -1), kx_bool(p, 0), NULL);
  cr_expect(g->c && g->c->kind == EX_FCONST && g->c->type == DT_F32 && g->c->f == 0, "otherwise defaults to 0 of the buffer's type");
  hand_free(&h);
}

Test(kernel_verify, buffer_that_does_not_exist) {
  Hand h;
  hand_init(&h);
  Program *p = &h.p;
  Stmt *s = store0(&h, 7, kx_f(p, 1));
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
  Stmt *s = ks_store(p, h.out, kx_i(p, 0), kx_load(p, h.in, kx_i(p, -1)));
  /* a select does not guard a load (it is eager)... */
  Expr *never = kx_bin(p, BIN_GT, kx_i(p, 0), kx_i(p, 1));
  ks_append(&s, ks_store(p, h.out, kx_i(p, 1), kx_select(p, never, kx_load(p, h.in, kx_i(p, 8)), kx_f(p, 0))));
  /* ...a guarded load reads only under its guard (padding), so is not a problem */
  ks_append(&s, ks_store(p, h.out, kx_i(p, 2), kx_load_guarded(p, h.in, kx_i(p, -1), never, kx_f(p, 0))));
  int bad = hand_verify(&h, s, 0, 0);
  expect_rejected(&h, bad, "load of b0 (x) at indices [-1, -1], outside its 8 elements");
  expect_rejected(&h, bad, "load of b0 (x) at indices [8, 8], outside its 8 elements");
  cr_expect_eq(bad, 2, "%s", h.msgs);
  hand_free(&h);
}

Test(kernel_verify, store_to_an_input) {
  Hand h;
  hand_init(&h);
  Stmt *s = store0(&h, h.in, kx_f(&h.p, 1));
  expect_rejected(&h, hand_verify(&h, s, 0, 0), "store to input buffer b0 (x)");
  hand_free(&h);
}

Test(kernel_verify, store_of_the_wrong_type) {
  Hand h;
  hand_init(&h);
  Stmt *s = store0(&h, h.tmp, kx_f(&h.p, 1));
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
    pass_schedule(&p);
    pass_memplan(&p);
    cr_expect_eq(kir_verify(&p, &d), 0, "%s: the planned training program does not verify", samples[i]);
    kir_program_free(&p);
    ir_graph_free(&tg);
    ir_graph_free(&eg);
    ir_graph_free(&gg);
    fe_model_free(&m);
  }
}
