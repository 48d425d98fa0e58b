/*
 * trainer.c — compiling a model for training and running its steps.
 *
 * A Trainer holds two graphs built from the model: the train step
 * (forward, loss, backward, optimizer update; passes/train.c) and the
 * evaluation step (forward and loss).  With a compiled backend (C or the
 * JIT; the same CModule interface) both are lowered into one Program, so they share parameter and state storage inside the
 * compiled module, and the module is the truth while training runs;
 * trainer_sync copies it back into t->tensors for checkpoints.  With the
 * interpreter, t->tensors is the truth and is updated in place.
 *
 * Both backends are called the same way: inputs by name (the data input,
 * the label, "lr" and "step"), outputs into caller buffers in the graph's
 * output order ("loss" first, then the model's outputs).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "driver/numbers.h"
#include "driver/trainer.h"

/* --- configuration ------------------------------------------------------------- */

static double call_num(const CallSpec *c, const char *key, double deflt) {
  for (int i = 0; i < c->nargs; i++)
    if (c->keys[i] && !strcmp(c->keys[i], key) && !c->strs[i]) return c->nums[i];
  return deflt;
}

/* The pos-th string argument (the frontend stores them in signature order). */
static const char *call_str(const CallSpec *c, int pos) {
  for (int i = 0, k = 0; i < c->nargs; i++)
    if (c->strs[i] && k++ == pos) return c->strs[i];
  return NULL;
}

/* torch.optim's defaults for kind, with learning rate lr. */
void trainer_optim_defaults(OptimSpec *o, OptKind kind, double lr) {
  memset(o, 0, sizeof *o);
  o->kind = kind;
  o->lr = lr;
  o->hp[HP_LR_SCALE] = 1;
  o->hp[HP_BETA1] = 0.9;
  o->hp[HP_BETA2] = 0.999;
  o->hp[HP_EPS] = kind == OPT_ADAGRAD ? 1e-10 : 1e-8;
  o->alpha = 0.99;
  if (kind == OPT_ADAMW) o->hp[HP_WEIGHT_DECAY] = 0.01;
}

/* One hyperparameter of kind's, by name, with its range: torch.optim's
 * checks (lr, eps, momenta and decays >= 0; betas in [0, 1)). */
typedef struct HpRule {
  OptKind kind;               /* OPT_COUNT: every optimizer */
  const char *name;
  double lo, hi;
  int hi_open;
} HpRule;

static const HpRule hp_rules[] = {
    {OPT_COUNT, "weight_decay", 0, INFINITY, 0}, {OPT_SGD, "momentum", 0, INFINITY, 0},
    {OPT_SGD, "dampening", -INFINITY, INFINITY, 0}, {OPT_ADAM, "beta1", 0, 1, 1},
    {OPT_ADAM, "beta2", 0, 1, 1},           {OPT_ADAM, "eps", 0, INFINITY, 0},
    {OPT_ADAMW, "beta1", 0, 1, 1},          {OPT_ADAMW, "beta2", 0, 1, 1},
    {OPT_ADAMW, "eps", 0, INFINITY, 0},     {OPT_RMSPROP, "momentum", 0, INFINITY, 0},
    {OPT_RMSPROP, "eps", 0, INFINITY, 0},   {OPT_ADAGRAD, "eps", 0, INFINITY, 0},
    {OPT_ADAGRAD, "lr_decay", 0, INFINITY, 0},
};

static int hp_bad(double v, const HpRule *r) {
  return !isfinite(v) || v < r->lo || v > r->hi || (r->hi_open && v == r->hi);
}

int trainer_check_optim(const OptimSpec *o, Diags *d) {
  const char *name = pass_optim_names[o->kind];
  if (!isfinite(o->lr) || o->lr < 0) return diag_plain(d, name, "lr must be a finite number >= 0, not %g", o->lr), -1;
  for (int i = 0; i < o->ngroups; i++)
    if (!isfinite(o->group_lr[i]) || o->group_lr[i] < 0)
      return diag_plain(d, name, "lr_group %s: lr must be a finite number >= 0, not %g", o->group_prefix[i], o->group_lr[i]), -1;
  for (size_t k = 0; k < sizeof hp_rules / sizeof hp_rules[0]; k++) {
    const HpRule *r = &hp_rules[k];
    double v = o->hp[ir_attr_hp_index(r->name)];
    if ((r->kind == OPT_COUNT || r->kind == o->kind) && hp_bad(v, r))
      return diag_plain(d, name, "%s must be %s, not %g", r->name,
                        r->hi_open ? "in [0, 1)" : r->lo == 0 ? "a finite number >= 0" : "finite", v), -1;
  }
  if (o->kind == OPT_RMSPROP && (!isfinite(o->alpha) || o->alpha < 0))
    return diag_plain(d, name, "alpha must be a finite number >= 0, not %g", o->alpha), -1;
  if (o->kind == OPT_SGD && o->hp[HP_NESTEROV] != 0 && (o->hp[HP_MOMENTUM] <= 0 || o->hp[HP_DAMPENING] != 0))
    return diag_plain(d, name, "nesterov momentum needs momentum > 0 and dampening = 0 (as torch.optim.SGD), not "
                      "momentum %g, dampening %g", o->hp[HP_MOMENTUM], o->hp[HP_DAMPENING]), -1;
  return 0;
}

/* "momentum=0.9, nesterov=1": the hyperparameters of o that differ from
 * its kind's defaults. */
static const char *non_defaults(const OptimSpec *o, char *buf, size_t len) {
  static const char *const keys[] = {"momentum", "dampening", "nesterov", "weight_decay", "beta1", "beta2", "eps", "lr_decay"};
  OptimSpec def;
  trainer_optim_defaults(&def, o->kind, o->lr);
  size_t n = 0;
  buf[0] = 0;
  for (size_t i = 0; i < sizeof keys / sizeof keys[0] && n < len; i++) {
    int h = ir_attr_hp_index(keys[i]);
    if (o->hp[h] != def.hp[h]) n += (size_t)snprintf(buf + n, len - n, "%s%s=%g", n ? ", " : "", keys[i], o->hp[h]);
  }
  if (o->kind == OPT_RMSPROP && o->alpha != def.alpha && n < len)
    snprintf(buf + n, len - n, "%salpha=%g", n ? ", " : "", o->alpha);
  return buf;
}

void trainer_set_optimizer(TrainConfig *cfg, OptKind kind, const char *why) {
  if (cfg->opt.kind == kind) return;
  OptimSpec keep = cfg->opt;
  char dropped[256];
  non_defaults(&keep, dropped, sizeof dropped);
  trainer_optim_defaults(&cfg->opt, kind, keep.lr);
  cfg->opt.ngroups = keep.ngroups;
  memcpy(cfg->opt.group_prefix, keep.group_prefix, sizeof keep.group_prefix);
  memcpy(cfg->opt.group_lr, keep.group_lr, sizeof keep.group_lr);
  if (dropped[0])
    fprintf(stderr, "note: %s replaces %s(%s): %s takes torch's defaults, the learning rate %g stays\n", why,
            pass_optim_names[keep.kind], dropped, pass_optim_names[kind], keep.lr);
}

static void read_optimizer(const CallSpec *c, OptimSpec *o) {
  OptKind kind = OPT_SGD;
  for (int k = 0; k < OPT_COUNT; k++)
    if (c->name && !strcmp(c->name, pass_optim_names[k])) kind = (OptKind)k;
  trainer_optim_defaults(o, kind, call_num(c, "lr", 0.01));
  static const char *const keys[] = {"momentum", "dampening", "nesterov", "weight_decay", "beta1", "beta2", "eps", "lr_decay"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    int h = ir_attr_hp_index(keys[i]);
    o->hp[h] = call_num(c, keys[i], o->hp[h]);
  }
  o->alpha = call_num(c, "alpha", o->alpha);
}

static void read_schedule(const CallSpec *c, double lr, RtSchedule *s) {
  static const char *const names[SCHED_COUNT] = {"constant", "step", "exponential", "cosine", "cyclic"};
  memset(s, 0, sizeof *s);
  s->kind = SCHED_CONSTANT;
  for (int k = 0; k < SCHED_COUNT; k++)
    if (c->name && !strcmp(c->name, names[k])) s->kind = (RtScheduleKind)k;
  s->base_lr = lr;
  s->step_size = (int64_t)call_num(c, "step_size", 1);
  s->gamma = call_num(c, "gamma", 0.1);
  s->t_max = call_num(c, "t_max", 1);
  s->eta_min = call_num(c, "eta_min", 0);
  s->min_lr = call_num(c, "base_lr", lr);
  s->max_lr = call_num(c, "max_lr", lr);
  s->step_size_up = call_num(c, "step_size_up", 2000);
}

int trainer_cfg_str(char *dst, size_t size, const char *src, const char *what, Diags *d) {
  if (!src) src = "";
  if (strlen(src) >= size) return diag_plain(d, what, "longer than %zu bytes: '%.40s...'", size - 1, src), -1;
  memcpy(dst, src, strlen(src) + 1);
  return 0;
}

int trainer_config(const Model *m, TrainConfig *cfg, Diags *d) {
  const TrainSpec *ts = &m->train;
  if (!ts->present || ts->loss < 0) {
    diag_plain(d, m->src.path, "the model has no training section with a loss (train { loss = ... })");
    return -1;
  }
  memset(cfg, 0, sizeof *cfg);
  read_optimizer(&ts->optimizer, &cfg->opt);
  cfg->opt.ngroups = ts->ngroups;
  for (int i = 0; i < ts->ngroups; i++) {
    if (trainer_cfg_str(cfg->opt.group_prefix[i], sizeof cfg->opt.group_prefix[i], ts->group_prefix[i],
                        "parameter group", d))
      return -1;
    cfg->opt.group_lr[i] = ts->group_lr[i];
  }
  read_schedule(&ts->schedule, cfg->opt.lr, &cfg->sched);
  cfg->batch = ts->batch;
  cfg->epochs = ts->epochs;
  cfg->seed = (uint64_t)ts->seed;
  cfg->val_split = ts->val_split;
  cfg->backend = BACKEND_JIT;
  if (trainer_cfg_str(cfg->data_kind, sizeof cfg->data_kind, ts->data.name, "data", d) ||
      trainer_cfg_str(cfg->data_args[0], sizeof cfg->data_args[0], call_str(&ts->data, 0), "data path", d) ||
      trainer_cfg_str(cfg->data_args[1], sizeof cfg->data_args[1], call_str(&ts->data, 1), "data path", d))
    return -1;
  cfg->label_column = (int)call_num(&ts->data, "label_column", -1);
  cfg->augment_flip = call_num(&ts->augment, "flip", 0) != 0;
  cfg->augment_crop = (int64_t)call_num(&ts->augment, "crop", 0);
  cfg->augment_noise = call_num(&ts->augment, "noise", 0);
  for (int i = 0; i < ts->data.nargs; i++)
    if (ts->data.keys[i] && !strcmp(ts->data.keys[i], "classes") && ts->data.strs[i] &&
        trainer_cfg_str(cfg->classes, sizeof cfg->classes, ts->data.strs[i], "classes", d))
      return -1;
  return 0;
}

/* --- building ------------------------------------------------------------------------ */

static int find_output(const Graph *g, int id) {
  for (int i = 0; i < g->noutputs; i++)
    if (g->outputs[i].id == id) return i;
  return -1;
}

/* The data input: the first input that is not a label. */
static int data_input(const Model *m) {
  for (int i = 0; i < m->g.nnodes; i++) {
    if (m->g.nodes[i].op != OP_INPUT) continue;
    int label = 0;
    for (int k = 0; k < m->train.nlabels; k++) label |= m->train.labels[k] == i;
    if (!label) return i;
  }
  return -1;
}

static int add_state_tensors(Trainer *t, RtError *err) {
  for (int i = 0; i < t->tg.nnodes; i++) {
    const Node *n = &t->tg.nodes[i];
    if (n->op != OP_STATE || rt_set_find(&t->tensors, n->name)) continue;
    RtTensor z;
    int64_t shape[IR_MAX_RANK];
    for (int k = 0; k < n->shape.rank; k++) shape[k] = n->shape.d[k];
    if (rt_tensor_alloc(&z, DT_F32, n->shape.rank, shape, err) || rt_set_add(&t->tensors, n->name, &z, err)) return -1;
  }
  return 0;
}

/* Bytes of the compiled step's static storage (the arena, parameters,
 * state and their derived copies), saturating; the x86-64 code model of both compiled backends
 * addresses at most 2 GiB of it. */
static int64_t static_bytes(const Program *p) {
  double bytes = 0;
  for (int k = 0; k < DT_COUNT; k++) bytes += (double)p->arena_size[k] * (double)rt_dtype_size((DType)k);
  for (int i = 0; i < p->nbufs; i++)
    if (p->bufs[i].kind == BUF_PARAM || p->bufs[i].kind == BUF_STATE || p->bufs[i].kind == BUF_DERIVED)
      bytes += (double)p->bufs[i].size * (double)rt_dtype_size(p->bufs[i].dtype);
  return bytes < 0x1p62 ? (int64_t)bytes : INT64_MAX;
}

/* One stage of the train pipeline: the graphs t->tg and t->eg, or the
 * program t->prog lowered from them. */
static int run_stage(Trainer *t, int stage) {
  PassOpts po = t->cfg.pass ? *t->cfg.pass : (PassOpts){0};
  po.stages = stage;
  po.verify |= stage == PASS_STAGE_GRAPH; /* the train graphs are always checked */
  po.optim = &t->opt;
  PassCtx c;
  pass_ctx_init(&c, PIPE_TRAIN, &t->m->g, t->loss, (Graph *[]){&t->tg, &t->eg}, &t->prog, &po, t->d);
  int rc = pass_run(&c);
  pass_ctx_free(&c);
  return rc;
}

int trainer_program(Trainer *t) { return run_stage(t, PASS_STAGE_KERNEL); }

static int build_backend(Trainer *t) {
  RtError err;
  if (t->cfg.backend == BACKEND_INTERP) return 0;
  if (trainer_program(t)) return -1;
  int64_t bytes = static_bytes(&t->prog);
  if (bytes >= TRAINER_STATIC_LIMIT) {
    diag_plain(t->d, "dlc train", "at batch %lld the compiled step needs %.1f MiB of static storage; the %s backend "
               "can address at most %lld MiB: use a smaller batch (or --backend=interp)", (long long)t->cfg.batch,
               (double)bytes / (1 << 20), t->cfg.backend == BACKEND_JIT ? "jit" : "c",
               (long long)(TRAINER_STATIC_LIMIT >> 20));
    return -1;
  }
  t->mod = t->cfg.backend == BACKEND_JIT ? cg_jit_build(&t->prog, &err) : cg_c_build(&t->prog, NULL, &err);
  if (!t->mod || cg_c_set_params(t->mod, &t->tensors, &err)) {
    diag_plain(t->d, "dlc train", "%s", err.msg);
    return -1;
  }
  return 0;
}

static int copy_init(Trainer *t, const RtTensorSet *init, RtError *err) {
  for (int i = 0; i < init->count; i++) {
    if (rt_set_add_copy(&t->tensors, init->items[i].name, &init->items[i].t, err)) return -1;
  }
  return 0;
}

int trainer_prepare(Trainer *t, Model *m, const TrainConfig *cfg, Diags *d) {
  memset(t, 0, sizeof *t);
  t->m = m, t->cfg = *cfg, t->d = d;
  t->loss = m->train.loss;
  t->x_input = data_input(m);
  t->y_input = m->train.nlabels ? m->train.labels[0] : -1;
  rt_set_init(&t->tensors);
  ir_graph_init(&t->tg, m->g.name, d);
  ir_graph_init(&t->eg, m->g.name, d);
  /* the frontend checked `target`: a label (data set labels) or an input of labels[0]'s type */
  int target = m->train.target;
  t->autoencode = target >= 0;
  for (int k = 0; k < m->train.nlabels; k++) t->autoencode &= m->train.labels[k] != target;
  if (t->autoencode && target != t->x_input) {
    diag_plain(d, m->src.path, "'target = %s' names an input the data set does not feed (it feeds '%s')",
               m->g.nodes[target].name, t->x_input >= 0 ? m->g.nodes[t->x_input].name : "none");
    return -1;
  }
  t->acc_output = -1;
  if (m->g.nodes[t->loss].op == OP_CROSS_ENTROPY) {
    int logits = m->g.nodes[t->loss].in[0];
    t->acc_output = find_output(&m->g, logits);
    if (t->acc_output < 0) t->acc_output = ir_output(&m->g, "logits", logits);
  }
  return 0;
}

int trainer_build(Trainer *t, const RtTensorSet *init) {
  Model *m = t->m;
  const TrainConfig *cfg = &t->cfg;
  Diags *d = t->d;
  if (trainer_check_optim(&cfg->opt, d)) return -1;
  for (int s = 0; s < m->g.nsyms; s++) m->g.syms[s].max = cfg->batch;
  t->opt = cfg->opt;
  t->opt.seed = cfg->seed;
  if (run_stage(t, PASS_STAGE_GRAPH)) return -1;
  RtError err;
  if ((init ? copy_init(t, init, &err) : 0) || ir_params_init(&m->g, cfg->seed, &t->tensors, &err) ||
      add_state_tensors(t, &err)) {
    diag_plain(d, "dlc train", "%s", err.msg);
    return -1;
  }
  return build_backend(t);
}

int trainer_init(Trainer *t, Model *m, const TrainConfig *cfg, const RtTensorSet *init, Diags *d) {
  return trainer_prepare(t, m, cfg, d) || trainer_build(t, init) ? -1 : 0;
}

int trainer_fit_batch(Trainer *t) {
  if (t->train.n == 0) {
    const char *where = t->cfg.data_args[0][0] ? t->cfg.data_args[0] : "dlc train";
    diag_plain(t->d, where, "the training set is empty (%lld samples loaded, %lld held out for validation): "
               "nothing to train on", (long long)(t->train.n + t->val.n), (long long)t->val.n);
    return -1;
  }
  if (t->cfg.batch <= t->train.n) return 0;
  fprintf(stderr, "note: batch %lld is larger than the %lld training samples; using %lld\n", (long long)t->cfg.batch,
          (long long)t->train.n, (long long)t->train.n);
  t->cfg.batch = t->train.n;
  return 1;
}

void trainer_free(Trainer *t) {
  cg_c_free(t->mod);
  if (t->prog.nfuncs) kir_program_free(&t->prog);
  ir_graph_free(&t->tg);
  ir_graph_free(&t->eg);
  rt_set_free(&t->tensors);
  rt_dataset_free(&t->train);
  rt_dataset_free(&t->val);
  rt_dataset_free(&t->test);
}

/* --- data ---------------------------------------------------------------------------- */

static int shape_data(Trainer *t, RtDataset *ds, const char *what) {
  RtError err;
  if (ds->n == 0) return 0;
  const Node *x = &t->m->g.nodes[t->x_input];
  int64_t shape[IR_MAX_RANK];
  for (int k = 1; k < x->shape.rank; k++) shape[k - 1] = x->shape.d[k];
  if (rt_dataset_reshape(ds, x->shape.rank - 1, shape, &err)) {
    diag_plain(t->d, what, "the samples do not fit input '%s': %s", x->name, err.msg);
    return -1;
  }
  const Node *y = t->y_input >= 0 && !t->autoencode ? &t->m->g.nodes[t->y_input] : NULL;
  if (y && (y->dtype == DT_I64 || y->dtype == DT_I32) && ds->y.dtype != DT_I64) {
    diag_plain(t->d, what, "label '%s' is %s but the data set has %s targets", y->name, rt_dtype_name(y->dtype),
               rt_dtype_name(ds->y.dtype));
    return -1;
  }
  if (y && y->dtype == DT_F32 && ds->y.dtype != DT_F32) {
    diag_plain(t->d, what, "label '%s' is f32 (regression) but the data set has %s labels", y->name,
               rt_dtype_name(ds->y.dtype));
    return -1;
  }
  if (t->acc_output >= 0) {
    const Node *logits = &t->m->g.nodes[t->m->g.outputs[t->acc_output].id];
    int64_t classes = logits->shape.d[1];
    if (rt_dataset_check_labels(ds, classes, what, &err)) return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  }
  return 0;
}

int trainer_load_data(Trainer *t) {
  const TrainConfig *c = &t->cfg;
  RtDataset all;
  RtError err;
  memset(&all, 0, sizeof all);
  const char *kind = c->data_kind, *arg1 = c->data_args[1][0] ? c->data_args[1] : NULL;
  RtStatus st;
  if (!strcmp(kind, "fashion_mnist"))
    st = rt_data_fashion_mnist(c->data_args[0], &all, &t->test, &err);
  else if (!strcmp(kind, "idx"))
    st = rt_data_idx(c->data_args[0], arg1, &all, &err);
  else if (!strcmp(kind, "csv"))
    st = rt_data_csv(c->data_args[0], c->label_column, &all, &err);
  else if (!strcmp(kind, "npy"))
    st = rt_data_npy(c->data_args[0], arg1, &all, &err);
  else {
    diag_plain(t->d, "dlc train", "no data set: give one in the training section (data = fashion_mnist(DIR)) or with --data");
    return -1;
  }
  if (st) return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  if (rt_dataset_select_classes(&all, c->classes, &err) || rt_dataset_select_classes(&t->test, c->classes, &err))
    return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  if (rt_dataset_split(&all, c->val_split, c->seed, &t->train, &t->val, &err))
    return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  return shape_data(t, &t->train, "training data") || shape_data(t, &t->val, "validation data") ||
                 shape_data(t, &t->test, "test data")
             ? -1
             : 0;
}

/* --- calling a step ------------------------------------------------------------------- */

typedef struct Call {
  int64_t n;
  const float *x;
  const void *y;
  float lr, step;
  void **outs;        /* one buffer per graph output */
  int64_t top5;       /* evaluation: rows whose label is among the 5 best */
} Call;

/* The caller's pointer for input node name of the graph. */
static const void *input_ptr(const Trainer *t, const char *name, const Call *c) {
  if (!strcmp(name, "lr")) return &c->lr;
  if (!strcmp(name, "step")) return &c->step;
  if (!strcmp(name, t->m->g.nodes[t->x_input].name)) return c->x;
  if (t->y_input >= 0 && !strcmp(name, t->m->g.nodes[t->y_input].name)) return c->y;
  return NULL;
}

static int call_c(Trainer *t, const char *fname, const Graph *g, const Call *c, RtError *err) {
  const Func *f = NULL;
  for (int i = 0; i < t->prog.nfuncs; i++)
    if (!strcmp(t->prog.funcs[i].name, fname)) f = &t->prog.funcs[i];
  void *args[64];
  IR_ASSERT(f && f->nargs <= 64);
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &t->prog.bufs[f->args[i]];
    args[i] = b->kind == BUF_INPUT ? (void *)input_ptr(t, b->name, c) : c->outs[ir_find_output(g, b->name)];
    if (!args[i]) return rt_fail(err, RT_ERR_MISSING, "no value for '%s'", b->name), -1;
  }
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = c->n;
  return cg_c_call(t->mod, fname, sym, args, err) ? -1 : 0;
}

/* A tensor that borrows data: shape from node n with every symbol = n. */
static RtTensor borrow(const Graph *g, const Node *n, int64_t batch, const void *data) {
  RtTensor r;
  memset(&r, 0, sizeof r);
  r.dtype = n->dtype;
  r.rank = n->shape.rank;
  for (int k = 0; k < r.rank; k++) r.shape[k] = DIM_IS_SYM(n->shape.d[k]) ? batch : n->shape.d[k];
  r.data = (void *)data;
  (void)g;
  return r;
}

static int call_interp(Trainer *t, const Graph *g, const Call *c, RtError *err) {
  RtTensor *vals = rt_xcalloc((size_t)g->nnodes + 1, sizeof *vals);
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = c->n;
  int rc = 0;
  for (int i = 0; i < g->nnodes && !rc; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_INPUT) {
      const void *p = input_ptr(t, n->name, c);
      if (!p) rc = rt_fail(err, RT_ERR_MISSING, "no value for '%s'", n->name);
      vals[i] = borrow(g, n, c->n, p);
    } else if (n->op == OP_PARAM || n->op == OP_STATE) {
      vals[i] = *rt_set_find(&t->tensors, n->name);
    }
  }
  InterpOpts io = {1, t->cfg.seed};
  if (!rc) rc = ir_interp(g, vals, sym, &io, err) ? -1 : 0;
  for (int o = 0; o < g->noutputs && !rc; o++) {
    const RtTensor *v = &vals[g->outputs[o].id];
    memcpy(c->outs[o], v->data, rt_tensor_nbytes(v));
  }
  for (int i = 0; i < g->nnodes; i++) {
    OpKind op = g->nodes[i].op;
    if (op != OP_INPUT && op != OP_PARAM && op != OP_STATE) rt_tensor_free(&vals[i]);
  }
  rt_xfree(vals);
  return rc;
}

/* Output buffers for graph g at batch n. */
static void **alloc_outputs(const Graph *g, int64_t n) {
  void **outs = rt_xcalloc((size_t)g->noutputs + 1, sizeof *outs);
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = n;
  for (int o = 0; o < g->noutputs; o++) {
    const Node *nd = &g->nodes[g->outputs[o].id];
    outs[o] = rt_xcalloc((size_t)ir_numel(g, &nd->shape, sym) + 1, rt_dtype_size(nd->dtype));
  }
  return outs;
}

static void free_outputs(const Graph *g, void **outs) {
  for (int o = 0; o < g->noutputs; o++) rt_xfree(outs[o]);
  rt_xfree(outs);
}

static int run(Trainer *t, int train, Call *c, double *loss, int64_t *correct) {
  const Graph *g = train ? &t->tg : &t->eg;
  RtError err;
  c->outs = alloc_outputs(g, c->n);
  int rc = t->cfg.backend != BACKEND_INTERP ? call_c(t, train ? "train_step" : "eval_step", g, c, &err)
                                       : call_interp(t, g, c, &err);
  if (rc) diag_plain(t->d, "dlc train", "%s", err.msg);
  else {
    *loss = ((float *)c->outs[0])[0];
    if (correct && t->acc_output >= 0) {
      const Node *l = &g->nodes[g->outputs[1 + t->acc_output].id];
      *correct = rt_topk_correct(c->outs[1 + t->acc_output], c->y, c->n, l->shape.d[1], 1);
      if (!train) c->top5 = rt_topk_correct(c->outs[1 + t->acc_output], c->y, c->n, l->shape.d[1], 5);
    }
  }
  free_outputs(g, c->outs);
  return rc;
}

int trainer_predict(Trainer *t, int64_t n, const float *x, const void *y, float *logits) {
  if (t->acc_output < 0) return diag_plain(t->d, "predict", "the model's loss is not a classification loss"), -1;
  const Graph *g = &t->eg;
  Call c = {n, x, y, 0, 0, NULL, 0};
  RtError err;
  c.outs = alloc_outputs(g, n);
  int rc = t->cfg.backend != BACKEND_INTERP ? call_c(t, "eval_step", g, &c, &err) : call_interp(t, g, &c, &err);
  if (rc) {
    diag_plain(t->d, "predict", "%s", err.msg);
  } else {
    const Node *l = &g->nodes[g->outputs[1 + t->acc_output].id];
    memcpy(logits, c.outs[1 + t->acc_output], sizeof(float) * (size_t)(n * l->shape.d[1]));
  }
  free_outputs(g, c.outs);
  return rc;
}

int trainer_step(Trainer *t, int64_t n, const float *x, const void *y, double lr, double *loss, int64_t *correct) {
  Call c = {n, x, y, (float)lr, (float)(t->step + 1), NULL, 0};
  if (correct) *correct = 0;
  if (run(t, 1, &c, loss, correct)) return -1;
  t->step++;
  return 0;
}

/* Bytes of one sample's target: its label, or for an autoencoder its input. */
static size_t target_size(const Trainer *t, const RtDataset *ds) {
  if (t->autoencode) return sizeof(float) * (size_t)rt_dataset_features(ds);
  return rt_dtype_size(ds->y.dtype) * (size_t)(ds->y.rank > 1 ? ds->y.shape[1] : 1);
}

/* For an autoencoder, the target is the clean batch and the input gets
 * the configured noise; returns the MSE of the noisy input against it. */
static double make_targets(Trainer *t, float *x, void *y, int64_t n, int64_t feat, RtRng *noise) {
  if (!t->autoencode) return 0;
  memcpy(y, x, sizeof(float) * (size_t)(n * feat));
  if (t->cfg.augment_noise <= 0) return 0;
  rt_add_noise(x, n * feat, t->cfg.augment_noise, noise);
  double se = 0;
  for (int64_t i = 0; i < n * feat; i++) se += ((double)x[i] - ((float *)y)[i]) * ((double)x[i] - ((float *)y)[i]);
  return se / (double)(n * feat);
}

int trainer_evaluate(Trainer *t, const RtDataset *ds, double *loss, double *acc) {
  int64_t b = t->cfg.batch, feat = rt_dataset_features(ds), total_correct = 0, total_top5 = 0;
  size_t ysize = target_size(t, ds);
  RtRng noise; /* the same noise at every evaluation, so the figures compare */
  rt_rng_seed_stream(&noise, t->cfg.seed, "eval-noise");
  double base = 0;
  float *x = rt_xmalloc(sizeof(float) * (size_t)(b * feat + 1));
  char *y = rt_xmalloc(ysize * (size_t)b + 1);
  int64_t *idx = rt_xmalloc(sizeof(int64_t) * (size_t)(b + 1));
  double sum = 0;
  int rc = 0;
  for (int64_t start = 0; start < ds->n && !rc; start += b) {
    int64_t n = ds->n - start < b ? ds->n - start : b, correct = 0;
    for (int64_t i = 0; i < n; i++) idx[i] = start + i;
    rt_batch_gather(ds, idx, n, x, t->autoencode ? NULL : y);
    base += make_targets(t, x, y, n, feat, &noise) * (double)n;
    Call c = {n, x, y, 0, 0, NULL, 0};
    double l = 0;
    rc = run(t, 0, &c, &l, &correct);
    sum += l * (double)n;
    total_correct += correct;
    total_top5 += c.top5;
  }
  *loss = ds->n ? sum / (double)ds->n : NAN;
  t->baseline = ds->n ? base / (double)ds->n : NAN;
  *acc = ds->n && t->acc_output >= 0 ? (double)total_correct / (double)ds->n : NAN;
  t->top5 = ds->n && t->acc_output >= 0 ? (double)total_top5 / (double)ds->n : NAN;
  rt_xfree(x);
  rt_xfree(y);
  rt_xfree(idx);
  return rc;
}

/* --- checkpoints --------------------------------------------------------------------- */

int trainer_sync(Trainer *t) {
  RtError err;
  if (t->mod && cg_c_get_params(t->mod, &t->tensors, &err)) return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  return 0;
}

int trainer_save(Trainer *t, const char *path) {
  RtError err;
  if (trainer_sync(t)) return -1;
  char buf[64];
  snprintf(buf, sizeof buf, "%lld", (long long)t->epoch);
  rt_set_meta(&t->tensors, "dlc.epoch", buf, &err);
  snprintf(buf, sizeof buf, "%lld", (long long)t->step);
  rt_set_meta(&t->tensors, "dlc.step", buf, &err);
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)t->cfg.seed);
  rt_set_meta(&t->tensors, "dlc.seed", buf, &err);
  rt_set_meta(&t->tensors, "dlc.model", t->m->g.name, &err);
  rt_set_meta(&t->tensors, "dlc.optimizer", pass_optim_names[t->cfg.opt.kind], &err);
  if (rt_safetensors_write(path, &t->tensors, &err)) return diag_plain(t->d, path, "%s", err.msg), -1;
  return 0;
}

/* Metadata key of checkpoint s, which must be there. */
static const char *meta_need(Trainer *t, const RtTensorSet *s, const char *path, const char *key) {
  const char *v = rt_set_get_meta(s, key);
  if (!v) diag_plain(t->d, path, "no '%s' in the metadata: not a checkpoint of dlc train (to start from its weights, "
                     "use --init)", key);
  return v;
}

static int meta_int(Trainer *t, const RtTensorSet *s, const char *path, const char *key, int64_t hi, int64_t *out) {
  const char *v = meta_need(t, s, path, key);
  char what[1100];
  snprintf(what, sizeof what, "%s: metadata %s", path, key);
  return v && dlc_parse_int(what, v, 0, hi, out, t->d) == 0 ? 0 : -1;
}

/* The run a checkpoint continues: whole non-negative epoch and step (at
 * least one step per epoch; steps reach the step as an f32, exact to
 * 2^24), the same model, optimizer and seed as this run. */
static int check_meta(Trainer *t, const RtTensorSet *s, const char *path, int64_t *epoch, int64_t *step) {
  int64_t seed;
  if (meta_int(t, s, path, "dlc.epoch", DLC_MAX_EPOCHS, epoch) || meta_int(t, s, path, "dlc.step", 1 << 24, step) ||
      meta_int(t, s, path, "dlc.seed", INT64_MAX, &seed))
    return -1;
  if (*step < *epoch)
    return diag_plain(t->d, path, "damaged metadata: %lld steps for %lld epochs", (long long)*step, (long long)*epoch), -1;
  const char *model = meta_need(t, s, path, "dlc.model"), *opt = meta_need(t, s, path, "dlc.optimizer");
  const char *want_opt = pass_optim_names[t->cfg.opt.kind];
  if (!model || !opt) return -1;
  if (strcmp(model, t->m->g.name))
    return diag_plain(t->d, path, "the checkpoint is of model '%s', not '%s'", model, t->m->g.name), -1;
  if (strcmp(opt, want_opt))
    return diag_plain(t->d, path, "the checkpoint holds %s's optimizer state but this run uses %s: resume with "
                      "--optimizer %s, or start from its weights with --init", opt, want_opt, opt), -1;
  if ((uint64_t)seed != t->cfg.seed)
    return diag_plain(t->d, path, "the checkpoint was trained with seed %lld, this run has seed %llu (the data order "
                      "depends on it): resume with --seed %lld", (long long)seed, (unsigned long long)t->cfg.seed,
                      (long long)seed), -1;
  return 0;
}

/* Same dtype and shape. */
static int same_type(const RtTensor *a, const RtTensor *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return 0;
  for (int k = 0; k < a->rank; k++)
    if (a->shape[k] != b->shape[k]) return 0;
  return 1;
}

int trainer_resume(Trainer *t, const char *path) {
  RtTensorSet s;
  RtError err;
  rt_set_init(&s);
  if (rt_safetensors_read(path, &s, &err) || ir_params_check(&t->m->g, &s, path, &err)) {
    diag_plain(t->d, path, "%s", err.msg);
    rt_set_free(&s);
    return -1;
  }
  /* Everything is checked before anything is copied, so a checkpoint that
   * does not fit leaves the trainer as it was. */
  int64_t epoch, step;
  if (check_meta(t, &s, path, &epoch, &step)) {
    rt_set_free(&s);
    return -1;
  }
  for (int i = 0; i < t->tensors.count; i++) {
    const RtTensor *dst = &t->tensors.items[i].t, *src = rt_set_find(&s, t->tensors.items[i].name);
    if (!src) {
      diag_plain(t->d, path, "no tensor '%s' (optimizer state of %s): resuming needs it; to start from the weights "
                 "alone, use --init", t->tensors.items[i].name, pass_optim_names[t->cfg.opt.kind]);
      rt_set_free(&s);
      return -1;
    }
    if (!same_type(src, dst)) {
      char got[128], want[128];
      diag_plain(t->d, path, "tensor '%s' is %s but the model needs %s", t->tensors.items[i].name,
                 rt_shape_str(got, sizeof got, src->dtype, src->rank, src->shape),
                 rt_shape_str(want, sizeof want, dst->dtype, dst->rank, dst->shape));
      rt_set_free(&s);
      return -1;
    }
  }
  for (int i = 0; i < t->tensors.count; i++) {
    RtTensor *dst = &t->tensors.items[i].t, *src = rt_set_find(&s, t->tensors.items[i].name);
    memcpy(dst->data, src->data, rt_tensor_nbytes(dst));
  }
  t->epoch = epoch;
  t->step = step;
  rt_set_free(&s);
  if (t->mod && cg_c_set_params(t->mod, &t->tensors, &err)) return diag_plain(t->d, path, "%s", err.msg), -1;
  return 0;
}

/* --- epochs ---------------------------------------------------------------------- */

int trainer_check_loss(Trainer *t, const EpochStats *es) {
  if (isfinite(es->loss) && (isnan(es->val_loss) || isfinite(es->val_loss)) ) return 0;
  diag_plain(t->d, "dlc train", "the %s loss of epoch %lld is %g: training diverged (try a smaller learning rate); "
             "nothing of this epoch is saved", isfinite(es->loss) ? "validation" : "training", (long long)t->epoch,
             isfinite(es->loss) ? es->val_loss : es->loss);
  return -1;
}

int trainer_epoch(Trainer *t, EpochStats *es, int tty, volatile sig_atomic_t *stop) {
  const RtDataset *ds = &t->train;
  if (ds->n == 0) return diag_plain(t->d, "dlc train", "the training set is empty: nothing to train on"), -1;
  int64_t b = t->cfg.batch, n = ds->n, feat = rt_dataset_features(ds), nb = (n + b - 1) / b;
  size_t ysize = target_size(t, ds);
  int64_t *order = rt_xmalloc(sizeof(int64_t) * (size_t)(n + 1));
  float *x = rt_xmalloc(sizeof(float) * (size_t)(b * feat + 1));
  char *y = rt_xmalloc(ysize * (size_t)b + 1);
  rt_epoch_order(n, t->cfg.seed, t->epoch, 1, order);
  RtRng aug;
  char stream[48];
  snprintf(stream, sizeof stream, "augment/%lld", (long long)t->epoch);
  rt_rng_seed_stream(&aug, t->cfg.seed, stream);
  int augment = t->cfg.augment_flip || t->cfg.augment_crop > 0;
  RtProgress pr;
  char label[24];
  snprintf(label, sizeof label, "epoch %d", (int)(t->epoch + 1) % 100000);
  rt_progress_begin(&pr, stderr, label, nb, b, tty);
  double start = rt_now(), sum = 0;
  int64_t seen = 0, correct = 0, iteration = t->step;
  int rc = 0;
  es->lr = rt_schedule_lr(&t->cfg.sched, t->epoch, iteration);
  for (int64_t i = 0; i < nb && !rc; i++) {
    int64_t cnt = n - i * b < b ? n - i * b : b, c = 0;
    rt_batch_gather(ds, order + i * b, cnt, x, t->autoencode ? NULL : y);
    RtError err;
    if (augment && rt_augment_batch(x, cnt, ds->x.rank - 1, ds->x.shape + 1, t->cfg.augment_flip, t->cfg.augment_crop,
                                    &aug, &err)) {
      diag_plain(t->d, "augment", "%s", err.msg);
      rc = -1;
      break;
    }
    make_targets(t, x, y, cnt, feat, &aug);
    double loss, lr = rt_schedule_lr(&t->cfg.sched, t->epoch, iteration++);
    if (trainer_step(t, cnt, x, y, lr, &loss, &c)) rc = -1;
    sum += loss * (double)cnt, seen += cnt, correct += c;
    rt_progress_update(&pr, i + 1, sum / (double)seen, t->acc_output >= 0 ? (double)correct / (double)seen : NAN);
    if (stop && *stop) rc = 1;
  }
  rt_progress_end(&pr);
  es->loss = seen ? sum / (double)seen : NAN;
  es->acc = seen && t->acc_output >= 0 ? (double)correct / (double)seen : NAN;
  es->seconds = rt_now() - start;
  rt_xfree(order);
  rt_xfree(x);
  rt_xfree(y);
  return rc;
}
