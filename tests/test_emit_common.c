/*
 * test_emit_common.c — what the C and the LLVM emitter share is written
 * once (codegen/emit_common.c, codegen/st_loader_impl.c, ir/random.h).
 *
 * - The emitted C carries st_loader_impl.c's text as it is on disk, once,
 *   and the committed LLVM IR of the reader is what
 *   scripts/gen_st_loader_ll.sh makes of the same file (when clang-19 is
 *   installed).
 * - A model's load reports the same message for the same bad file in both
 *   backends (missing file, missing tensor, wrong shape, truncated file).
 * - The parameter table (names, shapes, sizes, which rows are state) is
 *   the same in both backends, for a training program with Adam state.
 * - Embedded weights are checked once for both emitters, by shape and not
 *   only by size: a transposed weight, a missing weight and state of the
 *   wrong size are refused by both with the same words.
 */
#include <criterion/criterion.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/cg.h"
#include "codegen/st_loader.h"
#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/testutil.h"

#define FAST_CFLAGS "-O1 -Wall -Wextra -pedantic -Werror"

typedef struct Mlp {
  Diags d;
  Model m;
  Program p;
  RtTensorSet w;
} Mlp;

static void mlp_setup(Mlp *s) {
  RtError err;
  diag_init(&s->d, stderr);
  cr_assert_eq(fe_load_file(&s->m, DLC_SOURCE_DIR "/samples/mlp.dl", &s->d), 0);
  for (int i = 0; i < s->m.g.nsyms; i++) s->m.g.syms[i].max = 16;
  cr_assert_eq(pass_pipeline_infer(&s->m.g, &s->p, NULL, &s->d), 0);
  rt_set_init(&s->w);
  cr_assert_eq(ir_params_init(&s->m.g, 7, &s->w, &err), RT_OK, "%s", err.msg);
}

static void mlp_free(Mlp *s) {
  rt_set_free(&s->w);
  kir_program_free(&s->p);
  fe_model_free(&s->m);
}

/* The emitted C of p (malloc'd), or NULL with the problems in *diags. */
static char *emit_c(const Program *p, const RtTensorSet *embed, char **diags) {
  char *c = NULL, *msgs = NULL;
  size_t len = 0, mlen = 0;
  FILE *f = open_memstream(&c, &len), *m = open_memstream(&msgs, &mlen);
  Diags d;
  diag_init(&d, m);
  EmitOpts o = {"model.h", embed};
  int rc = cg_emit_c(p, f, NULL, &o, &d);
  fclose(f);
  fclose(m);
  if (diags) *diags = msgs;
  else free(msgs);
  if (rc) free(c);
  return rc ? NULL : c;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *t = strstr(hay, needle); t; t = strstr(t + 1, needle)) n++;
  return n;
}

Test(emit_common, emitted_c_carries_the_one_reader) {
  Mlp s;
  mlp_setup(&s);
  char *disk = tu_read_file(DLC_SOURCE_DIR "/codegen/st_loader_impl.c", NULL);
  cr_assert_not_null(disk);
  cr_expect_str_eq(cg_text_st_loader_impl_c, disk, "the embedded text is the file the build saw");
  char *impl = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&impl, &len);
  cg_print_source(f, cg_text_st_loader_impl_c);
  fclose(f);
  char *c = emit_c(&s.p, NULL, NULL);
  cr_assert_not_null(c);
  cr_expect(strstr(c, impl) != NULL, "st_loader_impl.c is printed as it is");
  cr_expect_eq(count(c, "st_string(StIn *r, char *buf, int n) {"), 1, "one JSON reader");
  cr_expect_eq(count(c, "int dlc_st_load_impl("), 2, "declared once and defined once");
  cr_expect(strstr(c, "#define DLC_ST_FN static") != NULL, "the reader's functions are static in emitted C");
  free(c);
  free(impl);
  free(disk);
  mlp_free(&s);
}

Test(emit_common, committed_ir_is_made_from_the_same_reader, .timeout = 120) {
  if (access("/usr/bin/clang-19", X_OK) != 0) cr_skip_test("clang-19 is not installed");
  char out[600], cmd[1400];
  snprintf(out, sizeof out, "%s/st_loader.ll.inc", tu_scratch_dir());
  snprintf(cmd, sizeof cmd, "'%s/scripts/gen_st_loader_ll.sh' '%s' >/dev/null", DLC_SOURCE_DIR, out);
  int st = system(cmd);
  cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", cmd);
  char *made = tu_read_file(out, NULL), *committed = tu_read_file(DLC_SOURCE_DIR "/codegen/st_loader.ll.inc", NULL);
  cr_assert(made && committed);
  cr_expect_str_eq(made, committed, "codegen/st_loader.ll.inc is stale: run scripts/gen_st_loader_ll.sh");
  free(made);
  free(committed);
  unlink(out);
  *strrchr(out, '/') = 0;
  rmdir(out);
}

/* --- the same reader at run time ---------------------------------------------------- */

static CModule *build_c(const Program *p, RtError *err) { return cg_c_build(p, FAST_CFLAGS, err); }

/* Writes set to dir/name and returns the path (static). */
static const char *write_set(const char *dir, const char *name, const RtTensorSet *set) {
  static char path[700];
  RtError err;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert_eq(rt_safetensors_write(path, set, &err), RT_OK, "%s", err.msg);
  return path;
}

/* A copy of s's weights with tensor name replaced by a [rows, cols] one,
 * or dropped when rows is 0. */
static void altered(const RtTensorSet *w, const char *name, int64_t rows, int64_t cols, RtTensorSet *out) {
  RtError err;
  rt_set_init(out);
  for (int i = 0; i < w->count; i++) {
    RtTensor t = w->items[i].t;
    int same = strcmp(w->items[i].name, name) != 0;
    if (!same && !rows) continue;
    int64_t shape[2] = {rows, cols};
    cr_assert_eq(rt_tensor_alloc(&t, DT_F32, same ? w->items[i].t.rank : 2, same ? w->items[i].t.shape : shape, &err),
                 RT_OK);
    if (same) memcpy(t.data, w->items[i].t.data, rt_tensor_nbytes(&t));
    cr_assert_eq(rt_set_add(out, w->items[i].name, &t, &err), RT_OK, "%s", err.msg);
  }
}

/* Runs load on each bad file with module m; the messages into msgs[]. */
static void load_messages(CModule *m, const char *const *paths, int n, char msgs[][300], int *rcs) {
  int (*load)(const char *) = (int (*)(const char *))m->lookup(m, "mlp_load");
  const char *(*error)(void) = (const char *(*)(void))m->lookup(m, "mlp_error");
  cr_assert(load && error);
  for (int i = 0; i < n; i++) {
    rcs[i] = load(paths[i]);
    snprintf(msgs[i], 300, "%s", rcs[i] ? error() : "");
  }
}

Test(emit_common, both_backends_load_with_the_same_words, .timeout = 300) {
  Mlp s;
  mlp_setup(&s);
  RtError err;
  char dir[512];
  snprintf(dir, sizeof dir, "%s", tu_scratch_dir());
  RtTensorSet missing, transposed;
  altered(&s.w, "fc2.bias", 0, 0, &missing);
  altered(&s.w, "fc1.weight", 784, 256, &transposed);
  char paths[5][700];
  snprintf(paths[0], sizeof paths[0], "%s/nonexistent.safetensors", dir);
  snprintf(paths[1], sizeof paths[1], "%s", write_set(dir, "missing.safetensors", &missing));
  snprintf(paths[2], sizeof paths[2], "%s", write_set(dir, "transposed.safetensors", &transposed));
  snprintf(paths[3], sizeof paths[3], "%s", write_set(dir, "good.safetensors", &s.w));
  snprintf(paths[4], sizeof paths[4], "%s/truncated.safetensors", dir);
  char cmd[1600];
  snprintf(cmd, sizeof cmd, "head -c 100 '%s' > '%s'", paths[3], paths[4]);
  cr_assert_eq(system(cmd), 0);
  const char *p[5] = {paths[0], paths[1], paths[2], paths[3], paths[4]};
  char mc[5][300], mj[5][300];
  int rc_c[5], rc_j[5];
  CModule *c = build_c(&s.p, &err);
  cr_assert_not_null(c, "%s", err.msg);
  load_messages(c, p, 5, mc, rc_c);
  CModule *j = cg_jit_build(&s.p, &err);
  cr_assert_not_null(j, "%s", err.msg);
  load_messages(j, p, 5, mj, rc_j);
  const char *want[5] = {"cannot open the file", "no tensor 'fc2.bias'",
                         "wrong dtype, shape or size (want F32 of the model's shape) for 'fc1.weight'", "",
                         "truncated: header longer than the file"};
  for (int i = 0; i < 5; i++) {
    cr_expect_eq(rc_c[i], i == 3 ? 0 : -1, "C, file %d: %s", i, mc[i]);
    cr_expect_eq(rc_j[i], rc_c[i], "file %d", i);
    cr_expect_str_eq(mc[i], mj[i], "file %d: the two backends' messages", i);
    cr_expect(strstr(mc[i], want[i]) != NULL, "file %d: %s", i, mc[i]);
  }
  cg_c_free(c);
  cg_c_free(j);
  for (int i = 1; i < 5; i++) unlink(paths[i]);
  rmdir(dir);
  rt_set_free(&missing);
  rt_set_free(&transposed);
  mlp_free(&s);
}

/* --- the parameter table ---------------------------------------------------------------- */

typedef struct TrainProg {
  Diags d;
  Model m;
  Graph tg;
  Program p;
} TrainProg;

/* tests/fixtures/train/tiny.dl's train_step with Adam (parameters and state). */
static void train_setup(TrainProg *t) {
  diag_init(&t->d, stderr);
  cr_assert_eq(fe_load_file(&t->m, FIXTURE("train/tiny.dl"), &t->d), 0);
  OptimSpec o;
  trainer_optim_defaults(&o, OPT_ADAM, 0.01);
  ir_graph_init(&t->tg, t->m.g.name, &t->d);
  cr_assert_eq(pass_build_train(&t->m.g, t->m.train.loss, &o, &t->tg), 0);
  kir_program_init(&t->p, &t->m.g);
  pass_lower(&t->p, kir_func(&t->p, "train_step", &t->tg));
  pass_schedule(&t->p);
  pass_memplan(&t->p);
}

static void train_free(TrainProg *t) {
  kir_program_free(&t->p);
  ir_graph_free(&t->tg);
  fe_model_free(&t->m);
}

Test(emit_common, both_backends_have_the_same_parameter_table, .timeout = 300) {
  TrainProg t;
  train_setup(&t);
  RtError err;
  CModule *c = build_c(&t.p, &err), *j = cg_jit_build(&t.p, &err);
  cr_assert(c && j, "%s", err.msg);
  typedef const CgParamInfo *(*ParamFn)(int);
  ParamFn pc = (ParamFn)c->lookup(c, "tiny_param"), pj = (ParamFn)j->lookup(j, "tiny_param");
  cr_assert(pc && pj);
  int n = 0, states = 0;
  for (; pc(n); n++) {
    const CgParamInfo *a = pc(n), *b = pj(n);
    cr_assert_not_null(b, "row %d", n);
    cr_expect_str_eq(a->name, b->name);
    cr_expect_eq(a->rank, b->rank, "%s", a->name);
    cr_expect_eq(memcmp(a->shape, b->shape, sizeof a->shape), 0, "%s", a->name);
    cr_expect_eq(a->numel, b->numel, "%s", a->name);
    cr_expect_eq(a->is_state, b->is_state, "%s", a->name);
    cr_expect(!states || a->is_state, "state rows come after every parameter (%s)", a->name);
    states += a->is_state;
  }
  cr_expect_null(pj(n), "the JIT's table has %d rows too", n);
  cr_expect_eq(n, 12, "4 parameters, 8 Adam moments");
  cr_expect_eq(states, 8);
  cg_c_free(c);
  cg_c_free(j);
  train_free(&t);
}

/* --- embedded weights ------------------------------------------------------------------- */

/* Both emitters refuse embed, with want among the C emitter's messages and
 * in the LLVM emitter's error. */
static void both_refuse(const Program *p, const RtTensorSet *embed, const char *want) {
  char *msgs = NULL;
  cr_expect_null(emit_c(p, embed, &msgs), "the C emitter accepts it");
  cr_expect(strstr(msgs, want) != NULL, "C emitter: %s", msgs);
  free(msgs);
  EmitOpts o = {"model.h", embed};
  char *data = NULL;
  size_t len = 0;
  RtError err;
  cr_expect_neq(cg_emit_llvm(p, &o, CG_LLVM_IR, &data, &len, &err), RT_OK, "the LLVM emitter accepts it");
  cr_expect(strstr(err.msg, want) != NULL, "LLVM emitter: %s", err.msg);
  free(data);
}

Test(emit_common, embedded_weights_must_have_the_exact_shape, .timeout = 120) {
  Mlp s;
  mlp_setup(&s);
  RtTensorSet bad;
  altered(&s.w, "fc1.weight", 784, 256, &bad);
  both_refuse(&s.p, &bad, "tensor 'fc1.weight' is f32[784, 256], not f32[256, 784]");
  rt_set_free(&bad);
  altered(&s.w, "fc2.bias", 0, 0, &bad);
  both_refuse(&s.p, &bad, "the file has no tensor 'fc2.bias' (f32[128])");
  rt_set_free(&bad);
  char *c = emit_c(&s.p, &s.w, NULL);
  cr_expect_not_null(c, "the right weights embed");
  free(c);
  mlp_free(&s);
}

Test(emit_common, embedded_state_must_fit_too, .timeout = 120) {
  TrainProg t;
  train_setup(&t);
  RtError err;
  RtTensorSet w;
  rt_set_init(&w);
  cr_assert_eq(ir_params_init(&t.m.g, 3, &w, &err), RT_OK, "%s", err.msg);
  const char *state = NULL;
  for (int b = 0; b < t.p.nbufs && !state; b++)
    if (t.p.bufs[b].kind == BUF_STATE && t.p.bufs[b].shape.rank == 2) state = t.p.bufs[b].name;
  cr_assert_not_null(state);
  RtTensor small;
  int64_t shape[2] = {1, 2};
  cr_assert_eq(rt_tensor_alloc(&small, DT_F32, 2, shape, &err), RT_OK);
  cr_assert_eq(rt_set_add(&w, state, &small, &err), RT_OK, "%s", err.msg);
  char want[200];
  snprintf(want, sizeof want, "tensor '%s' is f32[1, 2], not", state);
  both_refuse(&t.p, &w, want);
  rt_set_free(&w);
  train_free(&t);
}
