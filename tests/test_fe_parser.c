/*
 * test_fe_parser.c — the parser and builder: the samples build into the
 * expected graphs, names nest through blocks, every op of ops.def can be
 * called from source, attributes and constants reach the IR, and the
 * training section fills TrainSpec.
 */
#include <criterion/criterion.h>

#include "frontend/frontend.h"
#include "tests/testutil.h"

static Model model;
static Diags diags;
static char *msgs;
static size_t msglen;
static FILE *msgf;

static void setup(void) {
  msgf = open_memstream(&msgs, &msglen);
  diag_init(&diags, msgf);
}

static void teardown(void) {
  fe_model_free(&model);
  fclose(msgf);
  free(msgs);
}

TestSuite(fe_parser, .init = setup, .fini = teardown);

/* Loads text, which must build without errors and verify. */
static Graph *build(const char *text) {
  fe_model_free(&model);
  int n = fe_load_string(&model, "test.dl", text, &diags);
  fflush(msgf);
  cr_assert_eq(n, 0, "unexpected errors:\n%s", msgs);
  cr_assert_eq(ir_verify(&model.g, &diags), 0);
  return &model.g;
}

static int load_errors(const char *text) {
  fe_model_free(&model);
  int n = fe_load_string(&model, "test.dl", text, &diags);
  fflush(msgf);
  return n;
}

static const Node *param(Graph *g, const char *name) {
  int id = ir_find_param(g, name);
  cr_assert_geq(id, 0, "no parameter %s", name);
  return &g->nodes[id];
}

static void expect_shape(const Node *n, int rank, const Dim *d) {
  cr_assert_eq(n->shape.rank, rank);
  for (int i = 0; i < rank; i++) cr_expect_eq(n->shape.d[i], d[i], "dimension %d", i);
}

static const Node *output(Graph *g, const char *name) {
  int o = ir_find_output(g, name);
  cr_assert_geq(o, 0, "no output %s", name);
  return &g->nodes[g->outputs[o].id];
}

Test(fe_parser, mlp_sample) {
  fe_model_free(&model);
  cr_assert_eq(fe_load_file(&model, DLC_SOURCE_DIR "/samples/mlp.dl", &diags), 0);
  Graph *g = &model.g;
  cr_assert_eq(ir_verify(g, &diags), 0);
  cr_expect_str_eq(g->name, "mlp");
  OpKind want[] = {OP_INPUT, OP_PARAM, OP_PARAM, OP_LINEAR, OP_RELU, OP_PARAM, OP_PARAM, OP_LINEAR,
                   OP_RELU, OP_PARAM, OP_PARAM, OP_LINEAR, OP_SOFTMAX, OP_INPUT, OP_CROSS_ENTROPY};
  cr_assert_eq(g->nnodes, 15);
  for (int i = 0; i < g->nnodes; i++) cr_expect_eq(g->nodes[i].op, want[i], "node %d", i);
  expect_shape(param(g, "fc1.weight"), 2, (Dim[]){256, 784});
  expect_shape(param(g, "fc1.bias"), 1, (Dim[]){256});
  expect_shape(param(g, "fc2.weight"), 2, (Dim[]){128, 256});
  expect_shape(param(g, "logits.weight"), 2, (Dim[]){10, 128});
  expect_shape(param(g, "logits.bias"), 1, (Dim[]){10});
  cr_expect_eq(param(g, "fc1.weight")->init.kind, INIT_TORCH_DEFAULT);
  cr_expect_eq(param(g, "fc1.bias")->init.kind, INIT_TORCH_DEFAULT);
  cr_expect_eq(ir_param_count(g), 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
  cr_assert_eq(g->noutputs, 2);
  cr_expect_eq(output(g, "logits")->op, OP_LINEAR);
  cr_expect_eq(output(g, "probs")->attr.axis.axis, 1);
  expect_shape(output(g, "probs"), 2, (Dim[]){DIM_SYM(0), 10});
  cr_expect_eq(g->nsyms, 1);
  cr_expect_str_eq(g->syms[0].name, "N");
  cr_expect_str_eq(g->nodes[3].name, "fc1");
  cr_expect_eq(g->nodes[3].loc.line, 6);
  cr_expect_eq(g->nodes[3].loc.col, 7);
}

Test(fe_parser, mlp_train_section) {
  fe_model_free(&model);
  cr_assert_eq(fe_load_file(&model, DLC_SOURCE_DIR "/samples/mlp.dl", &diags), 0);
  TrainSpec *t = &model.train;
  cr_expect(t->present);
  cr_assert_geq(t->loss, 0);
  cr_expect_eq(model.g.nodes[t->loss].op, OP_CROSS_ENTROPY);
  cr_expect_eq(model.g.nodes[t->loss].shape.rank, 0);
  cr_assert_eq(t->nlabels, 1);
  cr_expect_str_eq(model.g.nodes[t->labels[0]].name, "y");
  cr_expect_eq(model.g.nodes[t->labels[0]].dtype, DT_I64);
  cr_expect_eq(t->batch, 64);
  cr_expect_eq(t->epochs, 10);
  cr_expect_eq(t->seed, 42);
  cr_expect_float_eq(t->val_split, 0.1, 1e-12);
  cr_expect_str_eq(t->optimizer.name, "sgd");
  cr_assert_eq(t->optimizer.nargs, 5);
  cr_expect_str_eq(t->optimizer.keys[0], "lr");
  cr_expect_float_eq(t->optimizer.nums[0], 0.1, 1e-12);
  cr_expect_str_eq(t->optimizer.keys[1], "momentum");
  cr_expect_float_eq(t->optimizer.nums[1], 0.9, 1e-12);
  cr_expect_str_eq(t->optimizer.keys[3], "nesterov");
  cr_expect_eq(t->optimizer.nums[3], 0);
  cr_expect_str_eq(t->schedule.name, "cosine");
  cr_expect_str_eq(t->schedule.keys[0], "t_max");
  cr_expect_eq(t->schedule.nums[0], 10);
  cr_expect_str_eq(t->data.name, "fashion_mnist");
  cr_expect_str_eq(t->data.keys[0], "dir");
  cr_expect_str_eq(t->data.strs[0], "/usr/share/datasets/fashion-mnist");
  cr_expect_eq(t->optimizer.loc.line, 17);
}

Test(fe_parser, blocks_sample) {
  fe_model_free(&model);
  cr_assert_eq(fe_load_file(&model, DLC_SOURCE_DIR "/samples/blocks.dl", &diags), 0);
  Graph *g = &model.g;
  cr_assert_eq(ir_verify(g, &diags), 0);
  expect_shape(param(g, "layer1.fc.weight"), 2, (Dim[]){256, 784});
  expect_shape(param(g, "layer2.fc.weight"), 2, (Dim[]){128, 256});
  expect_shape(param(g, "layer1.scale"), 1, (Dim[]){256});
  expect_shape(param(g, "layer2.scale"), 1, (Dim[]){128});
  cr_expect_eq(param(g, "layer1.scale")->init.kind, INIT_ONES);
  expect_shape(param(g, "head.weight"), 2, (Dim[]){10, 128});
  cr_expect_eq(ir_find_param(g, "fc.weight"), -1);
  cr_expect_eq(model.train.ngroups, 1);
  cr_expect_str_eq(model.train.group_prefix[0], "head");
  cr_expect_float_eq(model.train.group_lr[0], 1e-2, 1e-12);
  cr_expect_str_eq(model.train.optimizer.name, "adamw");
  cr_expect_float_eq(model.train.optimizer.nums[4], 0.01, 1e-12);
}

Test(fe_parser, nested_blocks_nest_names) {
  Graph *g = build("input x: f32[N, 8]\n"
                   "block inner(x, n) { fc = dense(x, n)  return relu(fc) }\n"
                   "block outer(x, n) { a = inner(x, n)  b = inner(a, n * 2)  return b }\n"
                   "o1 = outer(x, 4)\n"
                   "o2 = outer(o1, 3) as second\n"
                   "output o2\n");
  expect_shape(param(g, "o1.a.fc.weight"), 2, (Dim[]){4, 8});
  expect_shape(param(g, "o1.b.fc.weight"), 2, (Dim[]){8, 4});
  expect_shape(param(g, "second.a.fc.weight"), 2, (Dim[]){3, 8});
  expect_shape(param(g, "second.b.fc.weight"), 2, (Dim[]){6, 3});
  expect_shape(output(g, "o2"), 2, (Dim[]){DIM_SYM(0), 6});
}

Test(fe_parser, block_without_params_needs_no_name) {
  Graph *g = build("input x: f32[N, 8]\n"
                   "block act(x, s) { return relu(x) * s }\n"
                   "h = relu(act(x, 0.5))\noutput h\n");
  cr_expect_eq(ir_param_count(g), 0);
}

Test(fe_parser, as_names_the_layer) {
  Graph *g = build("input x: f32[N, 8]\nh = dense(x, 4) as proj\noutput h\n"
                   "output k = dense(h, 2, bias=false)\n");
  param(g, "proj.weight");
  param(g, "proj.bias");
  param(g, "k.weight");
  cr_expect_eq(ir_find_param(g, "k.bias"), -1);
  cr_expect_eq(output(g, "k")->nin, 2);
  cr_expect_eq(ir_find_param(g, "h.weight"), -1);
}

Test(fe_parser, explicit_params_and_inits) {
  Graph *g = build("input x: f32[N, 4]\n"
                   "param w: f32[3, 4]\n"
                   "param b: f32[3]\n"
                   "param c: f32[3] = constant(2.5)\n"
                   "param u: f32[3] = uniform(-0.5, b=0.5)\n"
                   "param n: f32[3, 4] = normal(std=0.01)\n"
                   "param k: f32[3, 4] = kaiming_normal\n"
                   "param d: f32[3, 4] = default()\n"
                   "y = linear(x, w, b) + c * u\n"
                   "output y\n");
  cr_expect_eq(param(g, "w")->init.kind, INIT_TORCH_DEFAULT);
  cr_expect_eq(param(g, "b")->init.kind, INIT_ZEROS);
  cr_expect_eq(param(g, "c")->init.kind, INIT_CONSTANT);
  cr_expect_float_eq(param(g, "c")->init.a, 2.5, 1e-12);
  cr_expect_eq(param(g, "u")->init.kind, INIT_UNIFORM);
  cr_expect_float_eq(param(g, "u")->init.a, -0.5, 1e-12);
  cr_expect_float_eq(param(g, "u")->init.b, 0.5, 1e-12);
  cr_expect_eq(param(g, "n")->init.kind, INIT_NORMAL);
  cr_expect_float_eq(param(g, "n")->init.a, 0, 1e-12);
  cr_expect_float_eq(param(g, "n")->init.b, 0.01, 1e-12);
  cr_expect_eq(param(g, "k")->init.kind, INIT_KAIMING_NORMAL);
  cr_expect_eq(param(g, "d")->init.kind, INIT_TORCH_DEFAULT);
  expect_shape(output(g, "y"), 2, (Dim[]){DIM_SYM(0), 3});
}

Test(fe_parser, constants_broadcast) {
  Graph *g = build("input x: f32[N, 4]\ny = x * 2 + 1\nz = 1 - x / 4\noutput y\noutput z\n");
  const Node *y = output(g, "y");
  cr_expect_eq(y->op, OP_ADD);
  expect_shape(y, 2, (Dim[]){DIM_SYM(0), 4});
  const Node *c = &g->nodes[y->in[1]];
  cr_expect_eq(c->op, OP_CONST);
  cr_expect_eq(c->shape.rank, 0);
  cr_expect_float_eq(c->attr.scalar.f, 1.0, 1e-12);
  const Node *z = output(g, "z");
  cr_expect_eq(z->op, OP_SUB);
  cr_expect_eq(g->nodes[z->in[0]].op, OP_CONST);
  cr_expect_eq(g->nodes[z->in[1]].op, OP_DIV);
}

Test(fe_parser, numbers_fold) {
  Graph *g = build("input x: f32[N, 4]\nunits = 3 * 2 - 1\nh = dense(x, units) as fc\n"
                   "y = x * (2 - 0.5)\noutput h\noutput y\n");
  expect_shape(param(g, "fc.weight"), 2, (Dim[]){5, 4});
  const Node *y = output(g, "y");
  cr_expect_float_eq(g->nodes[y->in[1]].attr.scalar.f, 1.5, 1e-12);
}

Test(fe_parser, precedence) {
  Graph *g = build("input a: f32[4, 4]\ninput b: f32[4, 4]\ninput c: f32[4, 4]\n"
                   "p = a + b * c\nq = -a @ b\nr = a - b - c\ns = a @ b * c\nt = (a + b) * c\n"
                   "output p\noutput q\noutput r\noutput s\noutput t\n");
  const Node *p = output(g, "p");
  cr_expect_eq(p->op, OP_ADD);
  cr_expect_eq(g->nodes[p->in[1]].op, OP_MUL);
  const Node *q = output(g, "q");
  cr_expect_eq(q->op, OP_MATMUL);
  cr_expect_eq(g->nodes[q->in[0]].op, OP_NEG);
  const Node *r = output(g, "r");
  cr_expect_eq(r->op, OP_SUB);
  cr_expect_eq(g->nodes[r->in[0]].op, OP_SUB, "left associative");
  const Node *s = output(g, "s");
  cr_expect_eq(s->op, OP_MUL, "@ and * share a level, left to right");
  cr_expect_eq(g->nodes[s->in[0]].op, OP_MATMUL);
  const Node *t = output(g, "t");
  cr_expect_eq(t->op, OP_MUL);
  cr_expect_eq(g->nodes[t->in[0]].op, OP_ADD);
}

Test(fe_parser, attributes) {
  Graph *g = build("input x: f32[N, 784]\ninput y: f32[N, 10]\n"
                   "a = reshape(x, [N, 1, 28, 28])\n"
                   "b = reshape(x, [N, 28, -1])\n"
                   "c = sum(x, axes=1, keepdim=true)\n"
                   "d = mse_loss(y, y, reduction=sum)\n"
                   "e = slice(x, axis=1, start=0, end=10)\n"
                   "f = concat(y, y, y, axis=1)\n"
                   "h = pow(y, 2)\n"
                   "i = leaky_relu(y, 0.2)\n"
                   "j = transpose(y, [1, 0])\n"
                   "output a\noutput b\noutput c\noutput d\noutput e\noutput f\noutput h\noutput i\noutput j\n");
  expect_shape(output(g, "a"), 4, (Dim[]){DIM_SYM(0), 1, 28, 28});
  expect_shape(output(g, "b"), 3, (Dim[]){DIM_SYM(0), 28, 28});
  expect_shape(output(g, "c"), 2, (Dim[]){DIM_SYM(0), 1});
  cr_expect_eq(output(g, "d")->attr.loss.reduction, RED_SUM);
  expect_shape(output(g, "e"), 2, (Dim[]){DIM_SYM(0), 10});
  expect_shape(output(g, "f"), 2, (Dim[]){DIM_SYM(0), 30});
  cr_expect_eq(output(g, "f")->nin, 3);
  cr_expect_float_eq(output(g, "h")->attr.scalar.f, 2.0, 1e-12);
  cr_expect_float_eq(output(g, "i")->attr.scalar.f, 0.2, 1e-12);
  expect_shape(output(g, "j"), 2, (Dim[]){10, DIM_SYM(0)});
}

/* Calls of the ops that need images (inputs img, seq and weights k, k1, kt). */
static const char *image_call(int op) {
  switch (op) {
  case OP_CONV2D: return "conv2d(img, k)";
  case OP_CONV1D: return "conv1d(seq, k1)";
  case OP_CONV_TRANSPOSE2D: return "conv_transpose2d(img, kt)";
  case OP_MAX_POOL2D: return "max_pool2d(img, 2)";
  case OP_AVG_POOL2D: return "avg_pool2d(img, 2)";
  case OP_GLOBAL_AVG_POOL: return "global_avg_pool(img)";
  case OP_UPSAMPLE: return "upsample(img, 2)";
  case OP_PAD: return "pad(img, [1, 1])";
  case OP_BATCHNORM: return "batchnorm(img, v4, v4, v4, v4)";
  }
  return NULL;
}

/* A small valid call of every op that can be written in .dl. */
Test(fe_parser, every_op_is_callable) {
  int tried = 0;
  for (int op = 0; op < OP_COUNT; op++) {
    const OpInfo *oi = &ir_ops[op];
    if (oi->flags & (OPF_SOURCE | OPF_INTERNAL)) continue;
    char call[256];
    if (image_call(op)) snprintf(call, sizeof call, "%s", image_call(op));
    else if (op == OP_MATMUL) snprintf(call, sizeof call, "matmul(a, at)");
    else if (op == OP_LINEAR) snprintf(call, sizeof call, "linear(a, w, bias)");
    else if (op == OP_CROSS_ENTROPY || op == OP_NLL_LOSS) snprintf(call, sizeof call, "%s(a, y)", oi->name);
    else if (op == OP_LAYER_NORM) snprintf(call, sizeof call, "layer_norm(at, v4)");
    else if (op == OP_POW) snprintf(call, sizeof call, "pow(a, 2.0)");
    else if (op == OP_RAND || op == OP_RANDN) snprintf(call, sizeof call, "%s([4, 6])", oi->name);
    else if (op == OP_GATHER) snprintf(call, sizeof call, "gather(a, ia, axis=1)");
    else if (op == OP_INDEX_SELECT) snprintf(call, sizeof call, "index_select(a, y, 0)");
    else {
      size_t at = (size_t)snprintf(call, sizeof call, "%s(a", oi->name);
      for (int i = 1; i < oi->min_in; i++) at += (size_t)snprintf(call + at, sizeof call - at, ", a");
      AttrSpec sp[8];
      int n = ir_attr_specs((OpKind)op, sp, 8);
      for (int k = 0; k < n; k++) {
        if (!sp[k].required) continue;
        const char *v = sp[k].kind == ATTR_LIST ? "[24]" : sp[k].kind == ATTR_FLOAT ? "2.0" : "1";
        if (!strcmp(sp[k].name, "pieces")) v = "2";
        at += (size_t)snprintf(call + at, sizeof call - at, ", %s=%s", sp[k].name, v);
      }
      snprintf(call + at, sizeof call - at, ")");
    }
    char text[640];
    snprintf(text, sizeof text, "input a: f32[4, 6]\ninput at: f32[6, 4]\ninput w: f32[3, 6]\n"
             "input bias: f32[3]\ninput y: i64[4]\ninput img: f32[2, 4, 6, 6]\ninput seq: f32[2, 4, 6]\n"
             "input k: f32[3, 4, 3, 3]\ninput k1: f32[3, 4, 3]\ninput kt: f32[4, 3, 3, 3]\ninput v4: f32[4]\n"
             "input ia: i64[4, 2]\n"
             "r = %s\noutput r\n", call);
    fe_model_free(&model);
    int n = fe_load_string(&model, "ops.dl", text, &diags);
    fflush(msgf);
    cr_expect_eq(n, 0, "%s: %s", call, msgs);
    if (n) continue;
    cr_expect_eq(output(&model.g, "r")->op, op, "%s", call);
    cr_expect_eq(ir_verify(&model.g, &diags), 0);
    tried++;
  }
  cr_expect_geq(tried, 30);
}

Test(fe_parser, symbols_are_shared) {
  Graph *g = build("input x: f32[N, 4]\ninput z: f32[B, N]\nh = dense(x, 2) as fc\noutput h\n"
                   "train {\n label y: i64[N]\n loss = cross_entropy(h, y)\n optimizer = sgd(0.5)\n}\n");
  cr_expect_eq(g->nsyms, 2);
  int y = model.train.labels[0];
  cr_expect_eq(g->nodes[y].shape.d[0], DIM_SYM(0));
  cr_expect_eq(g->nodes[ir_find_input(g, "z")].shape.d[1], DIM_SYM(0));
  cr_expect_eq(g->nodes[ir_find_input(g, "z")].shape.d[0], DIM_SYM(1));
  cr_expect_float_eq(model.train.optimizer.nums[0], 0.5, 1e-12);
  cr_expect_eq(model.train.batch, 64, "defaults stay");
  cr_expect_eq(model.train.seed, 0);
  cr_expect_eq(model.train.schedule.name, NULL);
}

Test(fe_parser, train_defaults_and_steps) {
  Graph *g = build("input x: f32[N, 4]\ninput t: f32[N, 2]\nh = dense(x, 2) as fc\noutput h\n"
                   "train {\n  a = mse_loss(h, t)\n  b = l1_loss(h, t)\n  loss = a + 0.5 * b\n"
                   "  optimizer = adam(lr=1e-3)\n  schedule = constant\n  data = npy(\"x.npy\", \"y.npy\")\n"
                   "  epochs = 3\n  freeze fc.bias\n}\n");
  cr_expect_eq(g->nodes[model.train.loss].op, OP_ADD);
  cr_expect_str_eq(model.train.schedule.name, "constant");
  cr_expect_eq(model.train.schedule.nargs, 0);
  cr_expect_str_eq(model.train.data.strs[1], "y.npy");
  cr_expect_float_eq(model.train.optimizer.nums[1], 0.9, 1e-12);
  cr_expect_eq(model.train.epochs, 3);
  cr_expect(param(g, "fc.bias")->frozen);
  cr_expect(!param(g, "fc.weight")->frozen);
}

Test(fe_parser, freeze_by_prefix) {
  Graph *g = build("input x: f32[N, 4]\n"
                   "block two(x) { a = dense(x, 4)  b = dense(a, 4)  return b }\n"
                   "enc = two(x)\nfc = dense(enc, 2)\nfc2 = dense(fc, 2)\nfreeze enc\nfreeze fc\noutput fc2\n");
  cr_expect(param(g, "enc.a.weight")->frozen);
  cr_expect(param(g, "enc.b.bias")->frozen);
  cr_expect(param(g, "fc.weight")->frozen);
  cr_expect(!param(g, "fc2.weight")->frozen, "a prefix matches whole name parts only");
}

Test(fe_parser, model_name) {
  Graph *g = build("input x: f32[2]\noutput x\n");
  cr_expect_str_eq(g->name, "test");
  g = build("model my_net\ninput x: f32[2]\noutput x\n");
  cr_expect_str_eq(g->name, "my_net");
}

Test(fe_parser, variables_may_be_redefined) {
  Graph *g = build("input x: f32[N, 4]\nh = relu(x)\nh = h * 2\noutput h\n");
  cr_expect_eq(output(g, "h")->op, OP_MUL);
}

Test(fe_parser, newlines_are_whitespace) {
  Graph *g = build("input x: f32[N,\n 4] h = softmax(\n  x,\n  axis = 1,\n) output h");
  cr_expect_eq(output(g, "h")->attr.axis.axis, 1);
}

Test(fe_parser, errors_are_counted) {
  cr_expect_eq(load_errors("input x: f32[N, 4]\nh = relu(y)\ng = relu(z)\noutput x\n"), 2);
  cr_expect(strstr(msgs, "unknown name 'y'") != NULL);
  cr_expect_eq(load_errors("input x: f32[N, 4]\nh = relu(y)\nk = h + 1\noutput k\n"), 1,
               "an error value does not cascade");
}

Test(fe_parser, unreadable_file) {
  fe_model_free(&model);
  cr_expect_eq(fe_load_file(&model, "/nonexistent/dir/m.dl", &diags), 1);
  fflush(msgf);
  cr_expect_str_eq(msgs, "/nonexistent/dir/m.dl: error: cannot read the file: No such file or directory\n");
  fe_model_free(&model);
  cr_expect_eq(fe_load_file(&model, "/", &diags), 1);
  fflush(msgf);
  cr_expect(strstr(msgs, "/: error: cannot read the file: Is a directory") != NULL, "%s", msgs);
}
