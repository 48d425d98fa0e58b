/*
 * test_compile_time.c — the structure that keeps the JIT compile cheap,
 * checked in the optimised LLVM module of an MLP's training step (the
 * module the JIT compiles): the loops of a kernel that runs a handful of
 * statements a call (the loss, over a batch of 8 and 2 classes) carry
 * the metadata that keeps the loop vectoriser and the unroller off them,
 * and stay scalar, while the first layer's matrix product (8 x 784 x
 * 128) has no such loop and computes on vectors.  Time itself is not
 * checked here: bench/compile_times.sh and DLC_TIME_PHASES measure it.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "codegen/cg_llvm.h"
#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "tests/memlog.h"

static const char *const model =
    "model mlp\ninput x: f32[N, 784]\n"
    "z = dense(x, 128) as fc1\nh = relu(z)\n"
    "logits = dense(h, 2) as head\noutput logits\n"
    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n"
    "  optimizer = sgd(lr=0.1)\n  batch = 8\n}\n";

/* The body of function name in the module text ir (malloc'd). */
static char *function_body(const char *ir, const char *name) {
  char head[256];
  snprintf(head, sizeof head, "@%s(", name);
  const char *d = ir;
  while ((d = strstr(d, head))) { /* its definition, not a call */
    const char *line = d;
    while (line > ir && line[-1] != '\n') line--;
    if (!strncmp(line, "define ", 7)) break;
    d++;
  }
  cr_assert(d, "no function %s in the module", name);
  const char *open = strchr(d, '{'), *close = strstr(d, "\n}\n");
  cr_assert(open && close, "no body for %s", name);
  return strndup(open, (size_t)(close - open));
}

/* "!N" when the module text ir defines !N = !{WHAT}, else NULL. */
static char *node_id(const char *ir, const char *what, char *id, size_t n) {
  char def[96];
  snprintf(def, sizeof def, " = !{%s}\n", what);
  const char *u = strstr(ir, def);
  if (!u) return NULL;
  const char *line = u;
  while (line > ir && line[-1] != '\n') line--;
  snprintf(id, n, "%.*s", (int)(u - line), line);
  return id;
}

/* Whether the line at d lists node id (followed by , or }). */
static int lists(const char *d, const char *id) {
  const char *eol = strchr(d + 1, '\n');
  char ref[40];
  for (const char *end = ",}"; *end; end++) {
    snprintf(ref, sizeof ref, "%s%c", id, *end);
    const char *r = strstr(d, ref);
    if (r && r < eol) return 1;
  }
  return 0;
}

/* How many of body's loops are cold: their loop ID lists the nodes that
 * set the vectoriser's width and interleaving to 1 and disable unrolling
 * (cold_loop in emit_llvm.c). */
static int cold_loops(const char *ir, const char *body) {
  char w[32], ic[32], u[32];
  if (!node_id(ir, "!\"llvm.loop.vectorize.width\", i32 1", w, sizeof w) ||
      !node_id(ir, "!\"llvm.loop.interleave.count\", i32 1", ic, sizeof ic) ||
      !node_id(ir, "!\"llvm.loop.unroll.disable\"", u, sizeof u))
    return 0;
  int n = 0;
  for (const char *p = body; (p = strstr(p, "!llvm.loop !")); p++) {
    char def[40];
    snprintf(def, sizeof def, "\n!%d = distinct !{", atoi(p + strlen("!llvm.loop !")));
    const char *d = strstr(ir, def);
    cr_assert(d, "no loop ID %s", def + 1);
    n += lists(d, w) && lists(d, ic) && lists(d, u);
  }
  return n;
}

Test(compile_time, small_kernels_stay_scalar_and_matrix_products_vector_code, .timeout = 120) {
  Log log;
  log_open(&log);
  Model m;
  cr_assert_eq(fe_load_string(&m, "mlp.dl", model, &log.d), 0, "%s", log_text(&log));
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &log.d), 0, "%s", log_text(&log));
  cfg.backend = BACKEND_INTERP; /* the program is made here, and compiled below */
  Trainer t;
  cr_assert_eq(trainer_init(&t, &m, &cfg, NULL, &log.d), 0, "%s", log_text(&log));
  cr_assert_eq(trainer_program(&t), 0, "%s", log_text(&log));
  const Func *step = NULL;
  for (int f = 0; f < t.prog.nfuncs; f++)
    if (!strcmp(t.prog.funcs[f].name, "train_step")) step = &t.prog.funcs[f];
  cr_assert(step, "no train_step");
  /* the first kernel computes fc1's product; the loss is cold */
  int hot = 0, cold = -1;
  for (int k = 0; k < step->nkernels; k++)
    if (cold < 0 && strstr(step->kernels[k].what, "cross_entropy")) cold = k;
  cr_assert(strstr(step->kernels[hot].what, "linear"), "the first kernel is %s", step->kernels[hot].what);
  cr_assert(cold >= 0, "no cross_entropy kernel");
  char *ir = NULL;
  size_t len = 0;
  RtError err;
  EmitOpts eo = {0};
  cr_assert_eq(cg_emit_llvm(&t.prog, &eo, CG_LLVM_IR, &ir, &len, &err), RT_OK, "%s", err.msg);
  char name[128];
  snprintf(name, sizeof name, "mlp_train_step_k%d", cold);
  char *body = function_body(ir, name);
  cr_expect(cold_loops(ir, body) > 0, "%s (%s) has no cold loop:\n%s", name, step->kernels[cold].what, body);
  cr_expect(!strstr(body, "x float>"), "%s (%s) is vectorised:\n%s", name, step->kernels[cold].what, body);
  free(body);
  /* fc1's product runs in its own function, or in a chunk function of its parallel loop */
  snprintf(name, sizeof name, "mlp_train_step_k%d", hot);
  body = function_body(ir, name);
  cr_expect_eq(cold_loops(ir, body), 0, "%s (%s) has cold loops", name, step->kernels[hot].what);
  int vector = strstr(body, "x float>") != NULL;
  free(body);
  snprintf(name, sizeof name, "@mlp_train_step_k%d_p", hot);
  for (const char *d = ir; (d = strstr(d, "\ndefine ")); d++) {
    const char *c = strstr(d, name), *eol = strchr(d + 1, '\n');
    if (!c || c > eol) continue;
    char cname[128];
    snprintf(cname, sizeof cname, "%.*s", (int)strcspn(c + 1, "("), c + 1);
    body = function_body(ir, cname);
    cr_expect_eq(cold_loops(ir, body), 0, "%s has cold loops", cname);
    vector |= strstr(body, "x float>") != NULL;
    free(body);
  }
  cr_expect(vector, "fc1's product computes on no vector");
  free(ir);
  trainer_free(&t);
  fe_model_free(&m);
  log_close(&log);
}
