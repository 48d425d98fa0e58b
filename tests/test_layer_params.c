/*
 * test_layer_params.c — layer parameters named in expressions.
 *
 * `fc1.weight` in an expression is the parameter node the layer made, not
 * a copy: the L2 penalty written in the loss, (wd / 2) * the sum of every
 * parameter squared, must train exactly as torch.optim.SGD's weight_decay
 * = wd does (gradient + wd * p), step after step, on the interpreter, the
 * C backend and the JIT.  Weight tying (a layer's weight used by a second op) adds
 * no parameter.  A misspelt layer or parameter is an error with a
 * suggestion.
 *
 * init= and bias_init= of the layers: the statistics of the initialised
 * tensors against the formulas of torch.nn.init (fixed seed), constants
 * exactly, and without them the values of PyTorch's default, bit for bit.
 */
#include <criterion/criterion.h>

#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "tests/testutil.h"

static const char *l2_model(const char *loss_extra, const char *optim) {
  static char src[1024];
  snprintf(src, sizeof src,
           "input x: f32[N, 6]\n"
           "fc1 = dense(x, 5)\n"
           "fc2 = dense(relu(fc1), 3)\n"
           "output fc2\n"
           "train {\n"
           "  label y: i64[N]\n"
           "  loss = cross_entropy(fc2, y)%s\n"
           "  optimizer = %s\n"
           "  batch = 8\n"
           "}\n",
           loss_extra, optim);
  return src;
}

static const char l2_penalty[] =
    " + 0.005 * (sum(fc1.weight * fc1.weight) + sum(fc1.bias * fc1.bias)"
    " + sum(fc2.weight * fc2.weight) + sum(fc2.bias * fc2.bias))";

/* Deterministic values in [-1, 1). */
static void fill(float *v, int64_t n, uint64_t s) {
  for (int64_t k = 0; k < n; k++) {
    s = s * 6364136223846793005u + 1442695040888963407u;
    v[k] = (float)((double)(s >> 40) / 8388608.0 - 1.0);
  }
}

/* The parameters after each of 6 SGD steps of src on one batch, all
 * concatenated into out (every parameter starts from the same values). */
static int64_t trajectory(const char *src, Backend be, float *out, int64_t cap) {
  Diags d;
  diag_init(&d, stderr);
  Model m;
  cr_assert_eq(fe_load_string(&m, "l2.dl", src, &d), 0, "the model does not load");
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &d), 0);
  cfg.backend = be;
  RtTensorSet init;
  rt_set_init(&init);
  RtError err;
  uint64_t seed = 1;
  for (int i = 0; i < m.g.nnodes; i++) {
    const Node *n = &m.g.nodes[i];
    if (n->op != OP_PARAM) continue;
    RtTensor t;
    cr_assert_eq(rt_tensor_alloc(&t, DT_F32, n->shape.rank, n->shape.d, &err), RT_OK);
    fill(t.data, rt_tensor_numel(&t), seed++);
    cr_assert_eq(rt_set_add(&init, n->name, &t, &err), RT_OK);
  }
  Trainer t;
  cr_assert_eq(trainer_init(&t, &m, &cfg, &init, &d), 0);
  float x[8 * 6];
  int64_t y[8], at = 0;
  fill(x, 8 * 6, 99);
  for (int i = 0; i < 8; i++) y[i] = i % 3;
  static const char *const names[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
  for (int s = 0; s < 6; s++) {
    double loss;
    cr_assert_eq(trainer_step(&t, 8, x, y, 0.5, &loss, NULL), 0);
    cr_assert_eq(trainer_sync(&t), 0);
    for (int k = 0; k < 4; k++) {
      const RtTensor *p = rt_set_find(&t.tensors, names[k]);
      cr_assert(p && at + rt_tensor_numel(p) <= cap);
      memcpy(out + at, p->data, rt_tensor_nbytes(p));
      at += rt_tensor_numel(p);
    }
  }
  trainer_free(&t);
  rt_set_free(&init);
  fe_model_free(&m);
  return at;
}

/* The largest difference between two trajectories relative to the
 * largest magnitude. */
static double traj_err(const float *a, const float *b, int64_t n) {
  double m = 1e-6, d = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(b[i])), d = fmax(d, fabs((double)a[i] - b[i]));
  return d / m;
}

static void check_l2(Backend be) {
  enum { CAP = 6 * 80 };
  float a[CAP], b[CAP], c[CAP];
  int64_t n = trajectory(l2_model(l2_penalty, "sgd(lr=0.5)"), be, a, CAP);
  cr_assert_eq(trajectory(l2_model("", "sgd(lr=0.5, weight_decay=0.01)"), be, b, CAP), n);
  cr_expect(traj_err(a, b, n) < 1e-5, "explicit L2 and weight_decay part: %g", traj_err(a, b, n));
  /* without either the trajectory is another one: the check can fail */
  cr_assert_eq(trajectory(l2_model("", "sgd(lr=0.5)"), be, c, CAP), n);
  cr_expect(traj_err(c, b, n) > 1e-3, "weight decay changes nothing: %g", traj_err(c, b, n));
}

Test(layer_params, explicit_l2_trains_as_weight_decay_interp) { check_l2(BACKEND_INTERP); }
Test(layer_params, explicit_l2_trains_as_weight_decay_c, .timeout = 120) { check_l2(BACKEND_C); }
Test(layer_params, explicit_l2_trains_as_weight_decay_jit, .timeout = 120) { check_l2(BACKEND_JIT); }

/* Diagnostics of src, written to a string. */
static char *diagnose(const char *src, int *rc) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  Diags d;
  diag_init(&d, f);
  Model m;
  *rc = fe_load_string(&m, "p.dl", src, &d);
  fe_model_free(&m);
  fclose(f);
  return buf;
}

Test(layer_params, the_name_is_the_parameter_node) {
  Diags d;
  diag_init(&d, stderr);
  Model m;
  cr_assert_eq(fe_load_string(&m, "p.dl",
                              "input x: f32[N, 6]\nenc = dense(x, 3, bias=false)\n"
                              "dec = matmul(enc, enc.weight)\nw = enc.weight\noutput dec\noutput w\n",
                              &d),
               0);
  int w = ir_find_param(&m.g, "enc.weight"), params = 0;
  cr_expect_eq(m.g.outputs[ir_find_output(&m.g, "w")].id, w, "enc.weight is not the parameter itself");
  for (int i = 0; i < m.g.nnodes; i++) params += m.g.nodes[i].op == OP_PARAM;
  cr_expect_eq(params, 1, "weight tying made %d parameters", params);
  fe_model_free(&m);
}

Test(layer_params, inside_a_block_names_nest_under_its_prefix) {
  Diags d;
  diag_init(&d, stderr);
  Model m;
  cr_assert_eq(fe_load_string(&m, "p.dl",
                              "block mlp(h) {\n  fc = dense(h, 4)\n  return fc + sum(fc.weight)\n}\n"
                              "input x: f32[N, 6]\nb1 = mlp(x)\nr = b1 + sum(b1.fc.bias)\noutput r\n",
                              &d),
               0);
  cr_expect_geq(ir_find_param(&m.g, "b1.fc.weight"), 0);
  fe_model_free(&m);
}

Test(layer_params, unknown_layer_or_parameter_is_an_error_with_a_suggestion) {
  int rc;
  char *msg = diagnose("input x: f32[N, 6]\nfc1 = dense(x, 3)\ny = fc1 + sum(fc9.weight)\noutput y\n", &rc);
  cr_expect_neq(rc, 0);
  cr_expect(strstr(msg, "p.dl:3:15: error: unknown layer 'fc9' in 'fc9.weight'; did you mean 'fc1'?"), "%s", msg);
  free(msg);
  msg = diagnose("input x: f32[N, 6]\nfc1 = dense(x, 3)\ny = fc1 + sum(fc1.wieght)\noutput y\n", &rc);
  cr_expect_neq(rc, 0);
  cr_expect(strstr(msg, "p.dl:3:15: error: 'fc1' has no parameter 'wieght'; did you mean 'weight'?"), "%s", msg);
  free(msg);
  msg = diagnose("input x: f32[N, 6]\nfc1 = dense(x, 3)\ny = fc1 + sum(fc1.)\noutput y\n", &rc);
  cr_expect_neq(rc, 0);
  cr_expect(strstr(msg, "a parameter name after '.'"), "%s", msg);
  free(msg);
}

/* Every op that takes optional tensor operands (ops.def: more inputs than
 * it needs), called with layer parameters (LAYER.PARAM) for all of them:
 * each is an operand of the op, none is taken for an attribute.  The table
 * must name every such op written in .dl sources, so one added later is
 * checked too (scan has its own syntax, random ops' extra operand is the
 * compiler's). */
static const struct {
  const char *op, *src;
  int nin;
} optional_operand_calls[] = {
    {"linear", "input x: f32[N, 6]\nd = dense(x, 3)\ny = linear(x, d.weight, d.bias)\noutput y\n", 3},
    {"conv2d", "input x: f32[N, 2, 8, 8]\nc = conv2d(x, 4, kernel=3)\n"
               "y = conv2d(x, c.weight, c.bias, padding=1)\noutput y\n", 3},
    {"conv1d", "input x: f32[N, 2, 8]\nc = conv1d(x, 4, kernel=3)\ny = conv1d(x, c.weight, c.bias, 1, 1)\noutput y\n", 3},
    {"conv_transpose2d", "input x: f32[N, 2, 4, 4]\nc = conv_transpose2d(x, 3, kernel=2, stride=2)\n"
                         "y = conv_transpose2d(x, c.weight, c.bias, stride=2)\noutput y\n", 3},
    {"layer_norm", "input x: f32[N, 6]\nln = layer_norm(x, [6])\ny = layer_norm(x, ln.weight, ln.bias)\noutput y\n", 3},
    {"pow", "input x: f32[N, 3]\nd = dense(x, 3)\ny = pow(x, d.bias)\noutput y\n", 2},
    {"concat", "input x: f32[N, 6]\na = dense(x, 3)\nb = dense(x, 2)\n"
               "y = concat(a.bias, b.bias, a.bias, 0)\noutput y\n", 3},
};

static int optional_operand_call(const char *op) {
  for (size_t i = 0; i < sizeof optional_operand_calls / sizeof optional_operand_calls[0]; i++)
    if (strcmp(optional_operand_calls[i].op, op) == 0) return (int)i;
  return -1;
}

Test(layer_params, optional_operands_take_layer_parameters) {
  for (int op = 0; op < OP_COUNT; op++) {
    const OpInfo *oi = &ir_ops[op];
    if (oi->max_in >= 0 && oi->max_in <= oi->min_in) continue;
    if (oi->flags & (OPF_INTERNAL | OPF_RANDOM) || op == OP_SCAN) continue;
    int k = optional_operand_call(oi->name);
    cr_assert_geq(k, 0, "%s takes optional tensor operands but is not checked here", oi->name);
    int rc;
    char *msg = diagnose(optional_operand_calls[k].src, &rc);
    cr_expect_eq(rc, 0, "%s: %s", oi->name, msg);
    free(msg);
    Diags d;
    diag_init(&d, stderr);
    Model m;
    if (fe_load_string(&m, "p.dl", optional_operand_calls[k].src, &d)) continue;
    const Node *y = &m.g.nodes[m.g.outputs[ir_find_output(&m.g, "y")].id];
    cr_expect_eq((int)y->op, op, "%s: y is %s", oi->name, ir_ops[y->op].name);
    int nin = optional_operand_calls[k].nin;
    cr_expect_eq(y->nin, nin, "%s: %d operands, not %d", oi->name, y->nin, nin);
    for (int i = 1; i < y->nin; i++)
      cr_expect_eq((int)m.g.nodes[y->in[i]].op, OP_PARAM, "%s: operand %d is not a parameter", oi->name, i);
    fe_model_free(&m);
  }
}

/* --- init= and bias_init= ------------------------------------------------------------ */

/* The values parameter name of src is initialised with from seed 1. */
static RtTensor init_of(const char *src, const char *name) {
  Diags d;
  diag_init(&d, stderr);
  Model m;
  cr_assert_eq(fe_load_string(&m, "i.dl", src, &d), 0, "%s does not load", src);
  RtTensorSet set;
  rt_set_init(&set);
  RtError err;
  cr_assert_eq(ir_params_init(&m.g, 1, &set, &err), RT_OK, "%s", err.msg);
  RtTensor *t = rt_set_find(&set, name);
  cr_assert(t, "no parameter %s", name);
  RtTensor out = *t;
  out.data = malloc(rt_tensor_nbytes(t));
  memcpy(out.data, t->data, rt_tensor_nbytes(t));
  rt_set_free(&set);
  fe_model_free(&m);
  return out;
}

typedef struct Stats {
  double mean, std, absmax;
  int64_t n;
} Stats;

static Stats stats_of(const RtTensor *t) {
  Stats s = {0, 0, 0, rt_tensor_numel(t)};
  const float *v = t->data;
  for (int64_t i = 0; i < s.n; i++) s.mean += v[i], s.absmax = fmax(s.absmax, fabs(v[i]));
  s.mean /= s.n;
  for (int64_t i = 0; i < s.n; i++) s.std += (v[i] - s.mean) * (v[i] - s.mean);
  s.std = sqrt(s.std / (s.n - 1));
  return s;
}

/* dense(x, 300) on 400 features: weight [300, 400], fan_in 400, fan_out
 * 300, 120000 values.  The sample std is within 1% of the formula (its
 * standard error is about 0.2% for a normal, less for a uniform), the mean
 * within 5 standard errors of 0, uniform draws inside their bound and
 * reaching to within 1% of it. */
static void check_random_init(const char *init, double want_std, double bound) {
  char src[256];
  snprintf(src, sizeof src, "input x: f32[N, 400]\nfc = dense(x, 300, init=%s)\noutput fc\n", init);
  RtTensor w = init_of(src, "fc.weight");
  Stats s = stats_of(&w);
  cr_expect(fabs(s.std / want_std - 1) < 0.01, "%s: std %g, formula %g", init, s.std, want_std);
  cr_expect(fabs(s.mean) < 5 * want_std / sqrt((double)s.n), "%s: mean %g", init, s.mean);
  if (bound > 0) cr_expect(s.absmax <= bound && s.absmax > 0.99 * bound, "%s: |w| up to %g, bound %g", init, s.absmax, bound);
  rt_tensor_free(&w);
}

Test(layer_init, weight_statistics_follow_the_formulas) {
  check_random_init("he_normal", sqrt(2.0 / 400), 0);
  check_random_init("he_uniform", sqrt(2.0 / 400), sqrt(6.0 / 400));
  check_random_init("kaiming_normal", sqrt(2.0 / 400), 0);
  check_random_init("xavier_normal", sqrt(2.0 / 700), 0);
  check_random_init("xavier_uniform", sqrt(2.0 / 700), sqrt(6.0 / 700));
  check_random_init("normal(std=0.05)", 0.05, 0);
  /* the default, PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
  check_random_init("default", 1 / sqrt(3.0 * 400), 1 / sqrt(400.0));
}

/* conv2d(x, 64, 5) on 32 channels: fan_in = 32 * 5 * 5 = 800. */
Test(layer_init, conv_weights_use_the_receptive_field) {
  RtTensor w = init_of("input x: f32[N, 32, 9, 9]\nc = conv2d(x, 64, 5, init=he_normal, bias_init=zeros)\noutput c\n",
                       "c.weight");
  Stats s = stats_of(&w);
  cr_expect(fabs(s.std / sqrt(2.0 / 800) - 1) < 0.02, "std %g, formula %g", s.std, sqrt(2.0 / 800));
  rt_tensor_free(&w);
}

static void expect_all(const RtTensor *t, float v, const char *what) {
  for (int64_t i = 0; i < rt_tensor_numel(t); i++)
    cr_assert_eq(((float *)t->data)[i], v, "%s[%lld] = %g, want %g", what, (long long)i, (double)((float *)t->data)[i],
                 (double)v);
}

Test(layer_init, constants_and_biases) {
  static const char *const src =
      "input x: f32[N, 8]\n"
      "a = dense(x, 4, init=zeros, bias_init=ones)\n"
      "b = dense(x, 4, init=0.5, bias_init=-0.25)\n"
      "c = dense(x, 4, init=constant(2), bias_init=he_uniform)\n"
      "bn = batchnorm(reshape(x, [N, 8, 1]), init=0.5, bias_init=1)\n"
      "output a\noutput b\noutput c\noutput bn\n";
  static const struct {
    const char *name;
    float v;
  } want[] = {{"a.weight", 0}, {"a.bias", 1}, {"b.weight", 0.5f}, {"b.bias", -0.25f},
              {"c.weight", 2}, {"bn.weight", 0.5f}, {"bn.bias", 1}, {"bn.running_var", 1}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    RtTensor t = init_of(src, want[i].name);
    expect_all(&t, want[i].v, want[i].name);
    rt_tensor_free(&t);
  }
  RtTensor cb = init_of(src, "c.bias"); /* a rank-1 tensor's fan-in is its length: bound sqrt(6/4) */
  Stats s = stats_of(&cb);
  cr_expect(s.absmax <= sqrt(6.0 / 4) && s.std > 0, "c.bias: |b| up to %g, std %g", s.absmax, s.std);
  rt_tensor_free(&cb);
}

/* Without init= every layer initialises as before: bit for bit the values
 * of init=default, bias_init=default (PyTorch's defaults). */
Test(layer_init, the_default_is_unchanged) {
  static const char *const names[4] = {"fc.weight", "fc.bias", "cv.weight", "cv.bias"};
  for (int k = 0; k < 4; k++) {
    RtTensor a = init_of("input x: f32[N, 3, 8, 8]\ncv = conv2d(x, 4, 3)\nfc = dense(flatten(cv), 10)\noutput fc\n",
                         names[k]);
    RtTensor b = init_of("input x: f32[N, 3, 8, 8]\ncv = conv2d(x, 4, 3, init=default, bias_init=default)\n"
                         "fc = dense(flatten(cv), 10, init=default, bias_init=default)\noutput fc\n",
                         names[k]);
    cr_expect(memcmp(a.data, b.data, rt_tensor_nbytes(&a)) == 0, "%s differs from init=default", names[k]);
    rt_tensor_free(&a), rt_tensor_free(&b);
  }
  RtTensor bias = init_of("input x: f32[N, 400]\nfc = dense(x, 300)\noutput fc\n", "fc.bias");
  Stats s = stats_of(&bias); /* the weight's fan-in: U(-1/20, 1/20) */
  cr_expect(s.absmax <= 0.05 && s.absmax > 0.045, "fc.bias: |b| up to %g", s.absmax);
  rt_tensor_free(&bias);
}

Test(layer_init, bad_initialisers_are_errors) {
  int rc;
  char *msg = diagnose("input x: f32[N, 6]\nfc = dense(x, 3, init=he_normall)\noutput fc\n", &rc);
  cr_expect_neq(rc, 0);
  cr_expect(strstr(msg, "p.dl:2:23: error: unknown initialiser 'he_normall'; did you mean 'he_normal'?"), "%s", msg);
  free(msg);
  msg = diagnose("input x: f32[N, 6]\nfc = dense(x, 3, bias=false, bias_init=zeros)\noutput fc\n", &rc);
  cr_expect_neq(rc, 0);
  cr_expect(strstr(msg, "bias_init is given, but dense is called with bias=false"), "%s", msg);
  free(msg);
  msg = diagnose("input x: f32[N, 6]\nfc = dense(x, 3, init=zeros, init=ones)\noutput fc\n", &rc);
  cr_expect_neq(rc, 0);
  cr_expect(strstr(msg, "'init' is given twice"), "%s", msg);
  free(msg);
}
