/*
 * test_random.c — gradient control and the random ops.
 *
 * A model is loaded from source, decomposed in training mode (so random
 * ops read the "step" input), differentiated with respect to every
 * trainable parameter, and run on the interpreter, the C backend and the
 * JIT with the same deterministic inputs and parameters.
 *
 * stop_gradient (detach): the identity forward; a parameter reached only
 * through it gets no gradient, one reached also another way gets only
 * that way's; every backend agrees.
 */
#include <criterion/criterion.h>

#include "frontend/frontend.h"
#include "tests/graph_run.h"
#include "tests/testutil.h"

#define MAX_WRT 16

typedef struct TGraph {
  Model m;
  Diags d;
  Graph g;
  int nwrt, wrt[MAX_WRT], grads[MAX_WRT];
} TGraph;

/* The training graph of src (decomposed with seed), with an output
 * "d.NAME" for each trainable parameter that gets a gradient. */
static void train_graph(TGraph *t, const char *src, uint64_t seed) {
  diag_init(&t->d, stderr);
  cr_assert_eq(fe_load_string(&t->m, "t.dl", src, &t->d), 0, "the model does not load");
  for (int i = 0; i < t->m.g.nsyms; i++) t->m.g.syms[i].max = 64;
  ir_graph_init(&t->g, "t", &t->d);
  int *map = malloc(sizeof(int) * (size_t)t->m.g.nnodes);
  DecomposeOpts o = {1, seed};
  cr_assert_eq(pass_decompose(&t->m.g, &t->g, map, &o), 0);
  t->nwrt = 0;
  for (int i = 0; i < t->g.nnodes; i++)
    if (t->g.nodes[i].op == OP_PARAM && !t->g.nodes[i].frozen) t->wrt[t->nwrt++] = i;
  cr_assert_eq(pass_autodiff(&t->g, map[t->m.train.loss], t->wrt, t->nwrt, t->grads), 0);
  ir_output(&t->g, "loss", map[t->m.train.loss]);
  for (int k = 0; k < t->nwrt; k++)
    if (t->grads[k] >= 0)
      ir_output(&t->g, arena_printf(&t->g.arena, "d.%s", t->g.nodes[t->wrt[k]].name), t->grads[k]);
  cr_assert_eq(ir_verify(&t->g, &t->d), 0);
  free(map);
}

static void train_graph_free(TGraph *t) {
  ir_graph_free(&t->g);
  fe_model_free(&t->m);
}

/* Deterministic values in [-1, 1) for source i (an LCG seeded by its id). */
static void fill_source(RtTensor *v, int i) {
  uint64_t s = 0x9E3779B97F4A7C15u * (uint64_t)(i + 1);
  for (int64_t k = 0; k < rt_tensor_numel(v); k++) {
    s = s * 6364136223846793005u + 1442695040888963407u;
    ((float *)v->data)[k] = (float)((double)(s >> 40) / 8388608.0 - 1.0);
  }
}

/* Values for every source of g with N = n: inputs and parameters from
 * fill_source, the step input = step. */
static RtTensor *graph_sources(const Graph *g, int64_t n, float step) {
  RtTensor *vals = calloc((size_t)g->nnodes, sizeof *vals);
  int64_t sym[IR_MAX_SYMS] = {n};
  RtError err;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *nd = &g->nodes[i];
    if (nd->op != OP_INPUT && nd->op != OP_PARAM) continue;
    int64_t shape[IR_MAX_RANK];
    for (int k = 0; k < nd->shape.rank; k++) shape[k] = ir_dim_value(g, nd->shape.d[k], sym);
    cr_assert_eq(rt_tensor_alloc(&vals[i], nd->dtype, nd->shape.rank, shape, &err), RT_OK, "%s", err.msg);
    if (nd->op == OP_INPUT && strcmp(nd->name, "step") == 0)
      ((float *)vals[i].data)[0] = step;
    else
      fill_source(&vals[i], i);
  }
  return vals;
}

/* Frees the computed values of a run, so the graph can run again on the
 * same sources (the interpreter zeroes them without freeing). */
static void clear_computed(const Graph *g, RtTensor *vals) {
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op != OP_INPUT && g->nodes[i].op != OP_PARAM && g->nodes[i].op != OP_STATE) rt_tensor_free(&vals[i]);
}

static void free_vals(const Graph *g, RtTensor *vals) {
  for (int i = 0; i < g->nnodes; i++) rt_tensor_free(&vals[i]);
  free(vals);
}

static const RtTensor *out_val(const Graph *g, const RtTensor *vals, const char *name) {
  int o = ir_find_output(g, name);
  cr_assert_geq(o, 0, "no output %s", name);
  return &vals[g->outputs[o].id];
}

/* Runs t's graph on backend with N = n at step; returns the values. */
static RtTensor *run_train(TGraph *t, int64_t n, float step, int backend) {
  RtTensor *vals = graph_sources(&t->g, n, step);
  run_graph(&t->g, vals, n, backend);
  return vals;
}

/* Output name of b agrees with a's to tol, norm-wise. */
static void expect_agree(const Graph *g, const RtTensor *a, const RtTensor *b, const char *name, double tol) {
  const RtTensor *x = out_val(g, a, name), *y = out_val(g, b, name);
  int64_t n = rt_tensor_numel(x);
  cr_assert_eq(n, rt_tensor_numel(y));
  double worst = 0;
  for (int64_t i = 0; i < n; i++) worst = fmax(worst, tu_normerr(y->data, x->data, n, i));
  cr_expect(worst <= tol, "%s: norm-wise error %g", name, worst);
}

/* --- stop_gradient ------------------------------------------------------------------ */

/* The model with fc2 wrapped in wrap ("stop_gradient" or "" for none). */
static const char *sg_model(const char *wrap) {
  static char src[512];
  snprintf(src, sizeof src,
           "input x: f32[N, 4]\n"
           "fc1 = dense(x, 3)\n"
           "fc2 = dense(x, 3)\n"
           "fc3 = dense(x, 3)\n"
           "y = fc1 + %s(fc2) + detach(fc3) * fc3\n"
           "output y\n"
           "train {\n  label t: f32[N, 3]\n  loss = mse_loss(y, t)\n  optimizer = sgd(lr=0.1)\n}\n",
           wrap);
  return src;
}

static int grad_of(const TGraph *t, const char *param) {
  for (int k = 0; k < t->nwrt; k++)
    if (strcmp(t->g.nodes[t->wrt[k]].name, param) == 0) return t->grads[k];
  cr_assert_fail("no parameter %s", param);
  return -1;
}

Test(stop_gradient, blocks_the_gradient_of_its_operand) {
  TGraph t;
  train_graph(&t, sg_model("stop_gradient"), 0);
  cr_expect_geq(grad_of(&t, "fc1.weight"), 0);
  cr_expect_eq(grad_of(&t, "fc2.weight"), -1, "a parameter reached only through stop_gradient has a gradient");
  cr_expect_eq(grad_of(&t, "fc2.bias"), -1);
  cr_expect_geq(grad_of(&t, "fc3.weight"), 0);
  train_graph_free(&t);
}

/* Without stop_gradient the same model differentiates into fc2: the check
 * above is about the op, not about the harness. */
Test(stop_gradient, control_without_it_fc2_gets_a_gradient) {
  TGraph t;
  train_graph(&t, sg_model(""), 0);
  cr_expect_geq(grad_of(&t, "fc2.weight"), 0);
  train_graph_free(&t);
}

/* d(detach(z) * z)/dz is detach(z) = z: fc3's gradient is that of a loss
 * with z * const, checked against the interpreter on C and JIT; the
 * forward value is the identity's. */
Test(stop_gradient, backends_agree, .timeout = 120) {
  TGraph t;
  train_graph(&t, sg_model("stop_gradient"), 0);
  RtTensor *ref = run_train(&t, 5, 1, 0);
  for (int b = 1; b <= 2; b++) {
    RtTensor *got = run_train(&t, 5, 1, b);
    expect_agree(&t.g, ref, got, "y", 1e-5);
    expect_agree(&t.g, ref, got, "loss", 1e-5);
    expect_agree(&t.g, ref, got, "d.fc1.weight", 1e-5);
    expect_agree(&t.g, ref, got, "d.fc3.weight", 1e-5);
    free_vals(&t.g, got);
  }
  free_vals(&t.g, ref);
  train_graph_free(&t);
}

/* --- random ops: distributions -------------------------------------------------------- */

/* Inference graph of src (N up to n) run on backend with x = fill_source;
 * returns the values. */
static RtTensor *run_model(Model *m, Diags *d, const char *src, int64_t n, int backend) {
  diag_init(d, stderr);
  cr_assert_eq(fe_load_string(m, "r.dl", src, d), 0, "the model does not load");
  m->g.syms[0].max = n;
  RtTensor *vals = graph_sources(&m->g, n, 0);
  run_graph(&m->g, vals, n, backend);
  return vals;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* The Kolmogorov-Smirnov statistic of v (sorted in place) against cdf. */
static double ks_stat(float *v, int64_t n, double (*cdf)(double)) {
  qsort(v, (size_t)n, sizeof *v, cmp_float);
  double d = 0;
  for (int64_t i = 0; i < n; i++) {
    double f = cdf(v[i]);
    d = fmax(d, fmax((double)(i + 1) / n - f, f - (double)i / n));
  }
  return d;
}

static double normal_cdf(double x) { return 0.5 * erfc(-x / sqrt(2)); }
static double uniform_cdf(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

static void moments(const float *v, int64_t n, double *mean, double *var) {
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; i++) s += v[i];
  *mean = s / n;
  for (int64_t i = 0; i < n; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
  *var = s2 / (n - 1);
}

/* n = 200000 draws, fixed seed.  Mean within 5 standard errors (5/sqrt(n)
 * of the std), variance within 5 of its standard errors (sqrt(2/n) of
 * sigma^2 for a normal, sqrt(1/(180 n)) / (1/12) relative for a uniform),
 * and the KS statistic below the 1% critical value 1.628 / sqrt(n). */
Test(random, randn_and_rand_have_their_distributions, .timeout = 60) {
  const int64_t n = 200000;
  Model m;
  Diags d;
  RtTensor *vals = run_model(&m, &d, "input x: f32[N, 1]\na = randn([N, 2])\nb = rand([N, 2])\noutput a\noutput b\n", n / 2, 0);
  float *a = (float *)out_val(&m.g, vals, "a")->data, *b = (float *)out_val(&m.g, vals, "b")->data;
  double mean, var, crit = 1.628 / sqrt((double)n);
  moments(a, n, &mean, &var);
  cr_expect(fabs(mean) < 5 / sqrt((double)n), "randn mean %g", mean);
  cr_expect(fabs(var - 1) < 5 * sqrt(2.0 / n), "randn variance %g", var);
  double ka = ks_stat(a, n, normal_cdf);
  cr_expect(ka < crit, "randn KS statistic %g, critical %g", ka, crit);
  moments(b, n, &mean, &var);
  cr_expect(fabs(mean - 0.5) < 5 * sqrt(1 / 12.0 / n), "rand mean %g", mean);
  cr_expect(fabs(var - 1 / 12.0) < 5 * sqrt(1 / 180.0 / n), "rand variance %g", var);
  cr_expect(b[0] >= 0 && b[n - 1] < 1, "rand outside [0, 1)");
  double kb = ks_stat(b, n, uniform_cdf);
  cr_expect(kb < crit, "rand KS statistic %g, critical %g", kb, crit);
  free_vals(&m.g, vals);
  fe_model_free(&m);
}

/* The KS check can fail: the same draws against a normal of std 1.02 (a
 * 2% error in the Box-Muller radius) are far above the critical value. */
static double normal_cdf_wide(double x) { return normal_cdf(x / 1.02); }

Test(random, ks_statistic_detects_a_two_percent_scale_error, .timeout = 60) {
  const int64_t n = 200000;
  Model m;
  Diags d;
  RtTensor *vals = run_model(&m, &d, "input x: f32[N, 1]\na = randn([N, 2])\noutput a\n", n / 2, 0);
  double k = ks_stat((float *)out_val(&m.g, vals, "a")->data, n, normal_cdf_wide);
  cr_expect(k > 1.628 / sqrt((double)n), "KS statistic %g", k);
  free_vals(&m.g, vals);
  fe_model_free(&m);
}

/* bernoulli(p) is 1 with probability p, elementwise: p = 0.2 in the first
 * column, 0.7 in the second, each frequency within 5 standard errors. */
Test(random, bernoulli_frequency_follows_p, .timeout = 60) {
  const int64_t n = 100000;
  Model m;
  Diags d;
  RtTensor *vals = run_model(&m, &d, "input x: f32[N, 2]\np = x * 0 + concat(rand([1, 1]) * 0 + 0.2, rand([1, 1]) * 0 + 0.7, axis=1)\n"
                                    "y = bernoulli(p)\noutput y\n", n, 0);
  const float *y = out_val(&m.g, vals, "y")->data;
  double ones[2] = {0, 0};
  for (int64_t i = 0; i < n; i++)
    for (int k = 0; k < 2; k++) {
      cr_assert(y[2 * i + k] == 0 || y[2 * i + k] == 1, "bernoulli gave %g", (double)y[2 * i + k]);
      ones[k] += y[2 * i + k];
    }
  cr_expect(fabs(ones[0] / n - 0.2) < 5 * sqrt(0.2 * 0.8 / n), "frequency %g for p = 0.2", ones[0] / n);
  cr_expect(fabs(ones[1] / n - 0.7) < 5 * sqrt(0.7 * 0.3 / n), "frequency %g for p = 0.7", ones[1] / n);
  free_vals(&m.g, vals);
  fe_model_free(&m);
}

/* --- random ops in training: backends, steps, gradients ------------------------------- */

static const char rnd_model[] =
    "input x: f32[N, 4]\n"
    "fc = dense(x, 4)\n"
    "a = randn([N, 4])\n"
    "b = rand_like(fc)\n"
    "c = bernoulli(sigmoid(fc))\n"
    "e = randn_like(fc)\n"
    "y = fc * a + b * e + c\n"
    "output a\noutput b\noutput c\noutput e\noutput y\n"
    "train {\n  label t: f32[N, 4]\n  target = t\n  loss = mse_loss(y, t)\n  optimizer = sgd(lr=0.1)\n}\n";

static void expect_identical(const Graph *g, const RtTensor *a, const RtTensor *b, const char *name) {
  const RtTensor *x = out_val(g, a, name), *y = out_val(g, b, name);
  cr_assert_eq(rt_tensor_numel(x), rt_tensor_numel(y));
  cr_expect(memcmp(x->data, y->data, rt_tensor_nbytes(x)) == 0, "%s differs between backends", name);
}

/* The draws of one step are bit-identical on the interpreter, the C
 * backend and the JIT (the same integer hash, then the same libm calls in
 * the same order); what is computed from them agrees to float tolerance. */
Test(random, interp_c_and_jit_draw_the_same_numbers, .timeout = 120) {
  TGraph t;
  train_graph(&t, rnd_model, 7);
  RtTensor *ref = run_train(&t, 33, 3, 0);
  for (int b = 1; b <= 2; b++) {
    RtTensor *got = run_train(&t, 33, 3, b);
    expect_identical(&t.g, ref, got, "a");
    expect_identical(&t.g, ref, got, "b");
    expect_identical(&t.g, ref, got, "c");
    expect_identical(&t.g, ref, got, "e");
    expect_agree(&t.g, ref, got, "y", 1e-5);
    expect_agree(&t.g, ref, got, "d.fc.weight", 1e-5);
    free_vals(&t.g, got);
  }
  free_vals(&t.g, ref);
  train_graph_free(&t);
}

/* Fraction of elements of output name equal in two runs. */
static double same_fraction(const Graph *g, const RtTensor *a, const RtTensor *b, const char *name) {
  const RtTensor *x = out_val(g, a, name), *y = out_val(g, b, name);
  int64_t n = rt_tensor_numel(x), same = 0;
  for (int64_t i = 0; i < n; i++) same += ((float *)x->data)[i] == ((float *)y->data)[i];
  return (double)same / n;
}

/* Consecutive steps draw fresh numbers, and two draws of one step (two
 * calls, or two ops) differ from each other; the run's seed changes them. */
Test(random, each_step_and_each_op_draws_afresh) {
  TGraph t, u;
  train_graph(&t, rnd_model, 7);
  train_graph(&u, rnd_model, 8);
  RtTensor *s1 = run_train(&t, 64, 1, 0), *s2 = run_train(&t, 64, 2, 0), *s1b = run_train(&t, 64, 1, 0);
  RtTensor *o1 = run_train(&u, 64, 1, 0);
  cr_expect_eq(same_fraction(&t.g, s1, s1b, "a"), 1, "the same step draws differently");
  cr_expect_lt(same_fraction(&t.g, s1, s2, "a"), 0.01, "randn repeats across steps");
  cr_expect_lt(same_fraction(&t.g, s1, s2, "b"), 0.01, "rand_like repeats across steps");
  cr_expect_lt(same_fraction(&t.g, s1, s2, "e"), 0.01, "randn_like repeats across steps");
  cr_expect_lt(same_fraction(&t.g, s1, o1, "a"), 0.01, "the seed does not change the draws");
  const float *a = out_val(&t.g, s1, "a")->data, *e = out_val(&t.g, s1, "e")->data;
  int64_t same = 0;
  for (int i = 0; i < 64 * 4; i++) same += a[i] == e[i];
  cr_expect_lt(same, 3, "randn and randn_like of one step draw the same numbers");
  free_vals(&t.g, s1), free_vals(&t.g, s2), free_vals(&t.g, s1b), free_vals(&u.g, o1);
  train_graph_free(&t);
  train_graph_free(&u);
}

/* The reparameterisation trick: z = mu + exp(0.5 logvar) * randn_like(mu)
 * differentiates into mu and logvar (rows 0-2 and 3-5 of enc), the noise
 * recomputed, not differentiated.  Every element of enc.weight and
 * enc.bias against central differences of the loss at the same step
 * (the house tolerance of test_autodiff.c: 2e-3 * max(1, |fd|)). */
Test(random, reparameterisation_gradient_matches_finite_differences, .timeout = 60) {
  static const char vae[] =
      "input x: f32[N, 4]\n"
      "enc = dense(x, 6)\n"
      "mu = slice(enc, axis=1, start=0, end=3)\n"
      "logvar = slice(enc, axis=1, start=3, end=6)\n"
      "z = mu + exp(0.5 * logvar) * randn_like(mu)\n"
      "dec = dense(z, 4)\n"
      "output dec\n"
      "train {\n  loss = mse_loss(dec, x) + 0.5 * mean(exp(logvar) + mu * mu - logvar)\n"
      "  optimizer = sgd(lr=0.1)\n}\n";
  TGraph t;
  train_graph(&t, vae, 11);
  RtTensor *vals = graph_sources(&t.g, 5, 4);
  run_graph(&t.g, vals, 5, 0);
  static const char *const names[2] = {"enc.weight", "enc.bias"};
  for (int k = 0; k < 2; k++) {
    float *p = vals[ir_find_param(&t.g, names[k])].data;
    char gname[64];
    snprintf(gname, sizeof gname, "d.%s", names[k]);
    RtTensor *g = (RtTensor *)out_val(&t.g, vals, gname);
    float *gv = malloc(rt_tensor_nbytes(g));
    memcpy(gv, g->data, rt_tensor_nbytes(g));
    double worst = 0, nonzero = 0;
    for (int64_t e = 0; e < rt_tensor_numel(g); e++) {
      float p0 = p[e];
      double h = 1e-2 * fmax(1, fabs(p0)), l[2];
      for (int s = 0; s < 2; s++) {
        p[e] = (float)(p0 + (s ? -h : h));
        clear_computed(&t.g, vals);
        run_graph(&t.g, vals, 5, 0);
        l[s] = ((float *)out_val(&t.g, vals, "loss")->data)[0];
      }
      p[e] = p0;
      double fd = (l[0] - l[1]) / (2 * h);
      worst = fmax(worst, fabs(gv[e] - fd) / fmax(1, fabs(fd)));
      nonzero += fabs(gv[e]) > 1e-3;
    }
    cr_expect(worst <= 2e-3, "d loss / d %s: worst error %g against finite differences", names[k], worst);
    cr_expect(nonzero >= rt_tensor_numel(g) / 2, "d loss / d %s is mostly zero", names[k]);
    free(gv);
  }
  free_vals(&t.g, vals);
  train_graph_free(&t);
}
