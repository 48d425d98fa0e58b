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
 *
 * Data-parallel training (t->dist, `dlc train --distributed` under
 * mpirun) splits the train step in two entry points of the same program:
 * grad_step (forward, loss, backward; the gradients are outputs written
 * into one flat buffer, gbuf) and update_step (the optimizer, reading
 * them).  Between them the gradients, each process's scaled by its share
 * of the global batch, are summed over the processes, so every process
 * applies the update of the global batch's mean loss.  One process pays
 * nothing for this: its train step stays one fused call.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "driver/numbers.h"
#include "driver/trainer_data.h"

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

/* --- data settings ----------------------------------------------------------- */

/* NAME=PATH: NAME an identifier. */
static int parse_binding(const char *item, TrainConfig *c, const char *what, Diags *d) {
  const char *eq = strchr(item, '=');
  size_t len = eq ? (size_t)(eq - item) : 0;
  int ok = len > 0 && !(item[0] >= '0' && item[0] <= '9');
  for (size_t k = 0; k < len && ok; k++)
    ok = (item[k] >= 'a' && item[k] <= 'z') || (item[k] >= 'A' && item[k] <= 'Z') || (item[k] >= '0' && item[k] <= '9') ||
         item[k] == '_';
  if (!ok || !eq[1])
    return diag_plain(d, what, "expected NAME=PATH (NAME an input or label of the model), got '%s'", item), -1;
  if (c->nbinds == RT_DATA_MAX_COLS) return diag_plain(d, what, "more than %d files", RT_DATA_MAX_COLS), -1;
  if (len >= sizeof c->bind_name[0]) return diag_plain(d, what, "name longer than 63 bytes: '%.*s'", (int)len, item), -1;
  for (int i = 0; i < c->nbinds; i++)
    if (strlen(c->bind_name[i]) == len && !strncmp(c->bind_name[i], item, len))
      return diag_plain(d, what, "'%.*s' is bound twice (to %s and %s)", (int)len, item, c->bind_path[i], eq + 1), -1;
  memcpy(c->bind_name[c->nbinds], item, len);
  c->bind_name[c->nbinds][len] = 0;
  return trainer_cfg_str(c->bind_path[c->nbinds++], sizeof c->bind_path[0], eq + 1, what, d);
}

int trainer_parse_bindings(const char *spec, TrainConfig *cfg, const char *what, Diags *d) {
  TrainConfig *c = rt_xmalloc(sizeof *c);
  *c = *cfg;
  c->nbinds = 0;
  char *s = rt_xstrdup(spec), *save = NULL;
  int rc = 0;
  for (char *item = strtok_r(s, ",", &save); item && !rc; item = strtok_r(NULL, ",", &save))
    rc = parse_binding(item, c, what, d);
  if (!rc && !c->nbinds) rc = (diag_plain(d, what, "no NAME=PATH bindings in '%s'", spec), -1);
  if (!rc) {
    c->data_args[0][0] = c->data_args[1][0] = 0;
    *cfg = *c;
  }
  rt_xfree(s);
  rt_xfree(c);
  return rc;
}

/* data = npy("x=a.npy,y=b.npy"): the named form in the model file. */
static int trainer_data_bindings(TrainConfig *cfg, const char *model, Diags *d) {
  cfg->nbinds = 0;
  if (strcmp(cfg->data_kind, "npy")) return 0;
  if (!strchr(cfg->data_args[0], '=') && !cfg->data_args[1][0])
    return diag_plain(d, model, "data = npy(...) needs two files X, Y or one string of NAME=PATH bindings, e.g. "
                      "npy(\"x=x.npy,y=y.npy\")"), -1;
  if (!strchr(cfg->data_args[0], '=')) return 0;
  if (cfg->data_args[1][0])
    return diag_plain(d, model, "data = npy(...) takes two files X, Y or one string of NAME=PATH bindings, not "
                      "both"), -1;
  char spec[sizeof cfg->data_args[0]];
  memcpy(spec, cfg->data_args[0], sizeof spec);
  return trainer_parse_bindings(spec, cfg, model, d);
}

/* A relative path in the model file names a file next to it, as
 * #include "..." does in C. */
static int relative_to(char *path, size_t size, const char *model, Diags *d) {
  const char *slash = strrchr(model, '/');
  if (!path[0] || path[0] == '/' || !slash) return 0;
  size_t dir = (size_t)(slash - model) + 1, len = strlen(path);
  if (dir + len >= size) return diag_plain(d, model, "data path longer than %zu bytes: '%.40s...'", size - 1, path), -1;
  memmove(path + dir, path, len + 1);
  memcpy(path, model, dir);
  return 0;
}

static int file_relative_paths(TrainConfig *cfg, const char *model, Diags *d) {
  int rc = relative_to(cfg->data_args[0], sizeof cfg->data_args[0], model, d) ||
           relative_to(cfg->data_args[1], sizeof cfg->data_args[1], model, d);
  for (int i = 0; i < cfg->nbinds && !rc; i++) rc = relative_to(cfg->bind_path[i], sizeof cfg->bind_path[i], model, d);
  return rc ? -1 : 0;
}

/* Each named section's optimizer (with the run's lr groups) and its
 * place in a round; the first section's optimizer is cfg->opt. */
static int config_sections(const TrainSpec *ts, TrainConfig *cfg, Diags *d) {
  cfg->nsections = ts->nsections;
  for (int s = 0; s < ts->nsections; s++) {
    OptimSpec *o = &cfg->sec_opt[s];
    read_optimizer(&ts->sections[s].optimizer, o);
    o->ngroups = cfg->opt.ngroups;
    memcpy(o->group_prefix, cfg->opt.group_prefix, sizeof o->group_prefix);
    memcpy(o->group_lr, cfg->opt.group_lr, sizeof o->group_lr);
    cfg->sec_repeat[s] = ts->sections[s].repeat;
    cfg->sec_has_sched[s] = ts->sections[s].schedule.name != NULL;
    if (cfg->sec_has_sched[s]) read_schedule(&ts->sections[s].schedule, o->lr, &cfg->sec_sched[s]);
    if (trainer_cfg_str(cfg->sec_name[s], sizeof cfg->sec_name[s], ts->sections[s].name, "train section", d))
      return -1;
  }
  if (ts->nsections) cfg->opt = cfg->sec_opt[0];
  return 0;
}

int trainer_config(const Model *m, TrainConfig *cfg, Diags *d) {
  const TrainSpec *ts = &m->train;
  if (!ts->present || (ts->nsections ? ts->sections[0].loss : ts->loss) < 0) {
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
  if (config_sections(ts, cfg, d)) return -1;
  read_schedule(&ts->schedule, cfg->opt.lr, &cfg->sched);
  cfg->batch = ts->batch;
  cfg->epochs = ts->epochs;
  cfg->seed = (uint64_t)ts->seed;
  cfg->val_split = ts->val_split;
  cfg->backend = BACKEND_JIT;
  cfg->threads = 1;
  if (trainer_cfg_str(cfg->data_kind, sizeof cfg->data_kind, ts->data.name, "data", d) ||
      trainer_cfg_str(cfg->data_args[0], sizeof cfg->data_args[0], call_str(&ts->data, 0), "data path", d) ||
      trainer_cfg_str(cfg->data_args[1], sizeof cfg->data_args[1], call_str(&ts->data, 1), "data path", d) ||
      trainer_data_bindings(cfg, m->src.path, d) || file_relative_paths(cfg, m->src.path, d))
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
    if (m->g.nodes[i].op != OP_INPUT || m->g.nodes[i].noise) continue;
    int label = 0;
    for (int k = 0; k < m->train.nlabels; k++) label |= m->train.labels[k] == i;
    if (!label) return i;
  }
  return -1;
}

/* The train step of named section s (the only one when there are none). */
static Graph *train_graph(Trainer *t, int s) { return s ? &t->sec_g[s - 1] : &t->tg; }

static int nsteps_graphs(const Trainer *t) { return t->cfg.nsections ? t->cfg.nsections : 1; }

static int add_state_tensors(Trainer *t, RtError *err) {
  for (int s = 0; s <= nsteps_graphs(t); s++) { /* and the update step's, when split */
    const Graph *g = s < nsteps_graphs(t) ? train_graph(t, s) : &t->ug;
    for (int i = 0; i < g->nnodes; i++) {
      const Node *n = &g->nodes[i];
      if (n->op != OP_STATE || rt_set_find(&t->tensors, n->name)) continue;
      RtTensor z;
      int64_t shape[IR_MAX_RANK];
      for (int k = 0; k < n->shape.rank; k++) shape[k] = n->shape.d[k];
      if (rt_tensor_alloc(&z, DT_F32, n->shape.rank, shape, err) || rt_set_add(&t->tensors, n->name, &z, err))
        return -1;
    }
  }
  return 0;
}

int trainer_section_of(const Trainer *t, int64_t k, int64_t *nth) {
  int n = t->cfg.nsections;
  if (!n) return *nth = k, 0;
  int64_t round = 0;
  for (int s = 0; s < n; s++) round += t->cfg.sec_repeat[s];
  int64_t q = k / round, p = k % round;
  int s = 0;
  while (p >= t->cfg.sec_repeat[s]) p -= t->cfg.sec_repeat[s++];
  *nth = q * t->cfg.sec_repeat[s] + p;
  return s;
}

/* The eval step's output holding named section s's loss (s > 0; the
 * first section's is "loss"). */
static const char *eval_loss_name(const Trainer *t, int s, char *buf, size_t len) {
  snprintf(buf, len, "loss_%s", t->cfg.sec_name[s]);
  return buf;
}

/* The graph stage of a model with named sections: each section's train
 * step over its own parameters, then (with the first) the eval step, which
 * outputs every section's loss. */
static int build_sections(Trainer *t, const PassOpts *po) {
  const TrainSpec *ts = &t->m->train;
  int rc = 0;
  for (int s = 0; s < t->cfg.nsections && !rc; s++) {
    const TrainSection *sec = &ts->sections[s];
    const char **names = rt_xmalloc(sizeof(char *) * ((size_t)sec->nparams + 1));
    for (int k = 0; k < sec->nparams; k++) names[k] = t->m->g.nodes[sec->params[k]].name;
    char what[96];
    snprintf(what, sizeof what, "train section '%s'", sec->name);
    PassOpts so = *po;
    so.optim = &t->sec_opt[s], so.train_params = names, so.ntrain_params = sec->nparams, so.section = what;
    int losses[FE_MAX_SECTIONS];
    char loss_names[FE_MAX_SECTIONS][80];
    const char *loss_name_ptrs[FE_MAX_SECTIONS];
    for (int k = 1; k < t->cfg.nsections && s == 0; k++) { /* the eval step reports every section's loss */
      losses[k - 1] = ts->sections[k].loss;
      loss_name_ptrs[k - 1] = eval_loss_name(t, k, loss_names[k - 1], sizeof loss_names[k - 1]);
    }
    if (s == 0) so.eval_losses = losses, so.eval_loss_names = loss_name_ptrs, so.neval_losses = t->cfg.nsections - 1;
    Graph scratch;
    ir_graph_init(&scratch, t->m->g.name, t->d);
    PassCtx c;
    pass_ctx_init(&c, PIPE_TRAIN, &t->m->g, sec->loss, (Graph *[]){train_graph(t, s), s ? &scratch : &t->eg}, &t->prog,
                  &so, t->d);
    rc = pass_run(&c);
    pass_ctx_free(&c);
    ir_graph_free(&scratch);
    rt_xfree(names);
  }
  return rc;
}

/* The kernel stage with named sections: every train step and the eval
 * step in one program. */
static int lower_sections(Trainer *t, const PassOpts *po) {
  Graph *graphs[PASS_MAX_GRAPHS];
  const char *funcs[PASS_MAX_GRAPHS];
  int n = t->cfg.nsections;
  for (int s = 0; s < n; s++) graphs[s] = train_graph(t, s), funcs[s] = t->sec_func[s];
  graphs[n] = &t->eg, funcs[n] = "eval_step";
  return pass_lower_train_sections(&t->m->g, graphs, funcs, n + 1, &t->prog, po, t->d);
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

/* Whether the gradients' sums overlap the backward pass: with a dist,
 * compiled code (whose gradient outputs are written in place in gbuf,
 * where the hook starts their sums) and no --no-overlap. */
static int overlaps(const Trainer *t) {
  return t->dist && t->cfg.backend != BACKEND_INTERP && !t->cfg.no_overlap && !t->cfg.nsections;
}

/* One stage of the train pipeline: the graphs t->tg and t->eg (and with
 * t->dist the update step t->ug), or the program t->prog lowered from them. */
static int run_stage(Trainer *t, int stage) {
  PassOpts po = t->cfg.pass ? *t->cfg.pass : (PassOpts){0};
  po.stages = stage;
  po.verify |= stage == PASS_STAGE_GRAPH; /* the train graphs are always checked */
  po.optim = &t->opt;
  po.split_update = t->dist != NULL;
  po.sync_bn = t->dist != NULL && t->cfg.sync_bn;
  po.grad_collectives = t->cfg.grad_collectives || overlaps(t);
  if (t->cfg.nsections) return stage == PASS_STAGE_GRAPH ? build_sections(t, &po) : lower_sections(t, &po);
  PassCtx c;
  pass_ctx_init(&c, PIPE_TRAIN, &t->m->g, t->loss, (Graph *[]){&t->tg, &t->eg}, &t->prog, &po, t->d);
  if (t->dist) {
    c.ngraphs = 3, c.graphs[2] = &t->ug;
    c.funcs[0] = "grad_step", c.funcs[1] = "eval_step", c.funcs[2] = "update_step";
  }
  int rc = pass_run(&c);
  pass_ctx_free(&c);
  return rc;
}

int trainer_program(Trainer *t) { return run_stage(t, PASS_STAGE_KERNEL); }

/* The compiled step's parallel loops on a pool of cfg.threads threads,
 * made once (a rebuilt step reuses it).  Emitted C runs its loops on
 * OpenMP's threads instead: the batch's rows are then copied on the
 * calling thread, since the pool's workers, spinning for the next job,
 * would take the cores from OpenMP's team (C, MLP at batch 256 on two
 * cores: 1.27x one thread with the copies on the pool, 1.65x without). */
static RtStatus use_threads(Trainer *t, RtError *err) {
  if (t->cfg.threads > 1 && rt_pool_threads(t->pool) != t->cfg.threads) {
    rt_pool_free(t->pool);
    t->pool = NULL;
    if (rt_pool_new(t->cfg.threads, &t->pool, err)) return RT_ERR_NOMEM;
  }
  t->own_threads = cg_c_set_pool(t->mod, t->cfg.threads > 1 ? t->pool : NULL);
  return RT_OK;
}

/* Floats of a bucket: the dist's size (a world made without
 * rt_dist_init, a test's world of one, has none: the default). */
static int64_t bucket_floats(const Trainer *t) {
  return (t->dist->bucket_bytes > 0 ? t->dist->bucket_bytes : RT_DIST_BUCKET_BYTES) / (int64_t)sizeof(float);
}

/* Bucket b of gbuf: its first float and its length. */
static int64_t bucket_len(const Trainer *t, int64_t b, int64_t *lo) {
  int64_t per = bucket_floats(t);
  *lo = b * per;
  return t->gsize - *lo < per ? t->gsize - *lo : per;
}

static void start_bucket(Trainer *t, int64_t b) {
  int64_t lo, len = bucket_len(t, b, &lo);
  RtError err;
  t->bucket_left[b] = -1; /* started */
  if (!t->coll_failed && rt_dist_start_sum_f32(t->dist, t->gbuf + lo, len, &err))
    t->coll_failed = 1, diag_plain(t->d, "--distributed", "%s", err.msg);
}

/* n floats of gbuf from off are final (and weighed): every bucket they
 * complete starts its sum, while the backward pass goes on. */
static void grad_ready(Trainer *t, int64_t off, int64_t n) {
  int64_t per = bucket_floats(t);
  for (int64_t b = off / per; b * per < off + n; b++) {
    int64_t lo = off > b * per ? off : b * per, hi = off + n < (b + 1) * per ? off + n : (b + 1) * per;
    if ((t->bucket_left[b] -= hi - lo) == 0) start_bucket(t, b);
  }
  rt_dist_progress(t->dist);
}

/* The collectives (IrCollective), called by the grad step between its
 * kernels: dist_mean weighs this process's value by its share of the
 * global batch (a process without rows adds nothing, not its NaN mean of
 * no rows) and sums over the processes, in the same order on every
 * process since all run the same step; dist_sum sums.  A gradient (in
 * gbuf, with the overlap) only counts towards its buckets, whose sums
 * start when they are complete; batch norm's statistics (--sync-bn) are
 * summed at once, since the step goes on with them.  A failure is
 * reported once and the step's result discarded (dist_sum below). */
void trainer_collective(void *ctx, int kind, float *data, int64_t n) {
  Trainer *t = ctx;
  float w = kind == IR_COLLECTIVE_MEAN ? t->coll_w : 1;
  for (int64_t i = 0; i < n && w != 1; i++) data[i] = w != 0 ? data[i] * w : 0;
  if (t->bucket_left && data >= t->gbuf && data < t->gbuf + t->gsize) {
    grad_ready(t, data - t->gbuf, n);
    return;
  }
  RtError err;
  if (!t->coll_failed && rt_dist_sum_f32(t->dist, data, n, &err))
    t->coll_failed = 1, diag_plain(t->d, "--sync-bn", "%s", err.msg);
}

/* With overlaps(t): gbuf holds the gradients in the order grad_step
 * finishes them (its dist_mean kernels, which lowering put right after
 * each gradient's last kernel), so the buckets fill one after another
 * and the first goes out while later gradients are being computed. */
static void overlap_layout(Trainer *t) {
  const Func *f = NULL;
  for (int i = 0; i < t->prog.nfuncs; i++)
    if (!strcmp(t->prog.funcs[i].name, "grad_step")) f = &t->prog.funcs[i];
  IR_ASSERT(f);
  const Graph *g = &t->tg;
  int64_t at = 0;
  for (int k = 0; k < f->nkernels; k++)
    for (int o = t->grad_out; o < g->noutputs && f->kernels[k].op == OP_DIST_MEAN; o++)
      if (g->outputs[o].id == f->kernels[k].node) {
        t->goff[o - t->grad_out] = at;
        at += ir_numel_max(g, &g->nodes[g->outputs[o].id].shape);
      }
  IR_ASSERT(at == t->gsize); /* every gradient output is a dist_mean (passes/train.c) */
  int64_t per = bucket_floats(t);
  t->nbuckets = (t->gsize + per - 1) / per;
  rt_xfree(t->bucket_left);
  t->bucket_left = rt_xcalloc((size_t)t->nbuckets + 1, sizeof *t->bucket_left);
}

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
  t->mod = t->cfg.backend == BACKEND_JIT ? cg_jit_build(&t->prog, &err)
                                            : cg_c_build(&t->prog, t->cfg.threads > 1 ? CG_C_THREADS_FLAGS : NULL, &err);
  if (!t->mod || cg_c_set_params(t->mod, &t->tensors, &err) || use_threads(t, &err)) {
    diag_plain(t->d, "dlc train", "%s", err.msg);
    return -1;
  }
  if (overlaps(t)) overlap_layout(t);
  if (t->dist && (t->cfg.sync_bn || overlaps(t))) cg_c_set_collective(t->mod, trainer_collective, t);
  return 0;
}

static int copy_init(Trainer *t, const RtTensorSet *init, RtError *err) {
  for (int i = 0; i < init->count; i++) {
    if (rt_set_add_copy(&t->tensors, init->items[i].name, &init->items[i].t, err)) return -1;
  }
  return 0;
}

void trainer_add_feed(Trainer *t, int node, int source) {
  IR_ASSERT(t->nfeeds < TRAINER_MAX_FEEDS);
  t->feeds[t->nfeeds++] = (TrainFeed){node, source};
}

/* The fixed forms (fashion_mnist, idx, csv, npy X,Y) feed the data input
 * with x and the first label with y, or an autoencoder's with x's clean batch. */
static void fixed_feeds(Trainer *t) {
  if (t->x_input >= 0) trainer_add_feed(t, t->x_input, FEED_X);
  if (t->y_input >= 0) trainer_add_feed(t, t->y_input, t->autoencode ? FEED_TARGET : FEED_Y);
  if (t->autoencode) t->target_feed = 0;
}


/* --- truncated BPTT and carried state ----------------------------------------------- */

static int remap_node(const int *map, int *id) {
  if (*id < 0) return 0;
  *id = map[*id];
  return *id < 0 ? -1 : 0;
}

/* The training section's nodes in the window graph. */
static int remap_train(TrainSpec *ts, const int *map) {
  int bad = remap_node(map, &ts->loss) || remap_node(map, &ts->target);
  for (int k = 0; k < ts->nlabels; k++) bad |= remap_node(map, &ts->labels[k]);
  return bad;
}

/* The carried states: the window graph's inputs named like one of its outputs. */
static int find_carry(Trainer *t) {
  const Graph *g = &t->m->g;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_INPUT || strncmp(n->name, "state", 5) || ir_find_output(g, n->name) < 0) continue;
    if (t->ncarry == TRAINER_MAX_CARRY) return diag_plain(t->d, "--carry-state", "more than %d states", TRAINER_MAX_CARRY), -1;
    int64_t row = 1;
    for (int k = 1; k < n->shape.rank; k++) row *= n->shape.d[k];
    if (n->shape.rank < 1 || !DIM_IS_SYM(n->shape.d[0]) || row < 1)
      return diag_plain(t->d, "--carry-state", "state '%s' is not one row per sample ([N, ...])", n->name), -1;
    t->carry_name[t->ncarry] = n->name, t->carry_row[t->ncarry++] = row;
  }
  return 0;
}

/* --bptt / --carry-state: the model's graph becomes its window graph. */
static int window_model(Trainer *t) {
  Model *m = t->m;
  const TrainConfig *c = &t->cfg;
  const char *flag = c->carry_state ? "--carry-state" : "--bptt";
  if (m->train.nsections)
    return diag_plain(t->d, flag, "the model has named train sections; it takes a model with one"), -1;
  if (c->carry_state && strcmp(c->data_kind, "text"))
    return diag_plain(t->d, "--carry-state", "lays the windows of a text out contiguous per batch row: it needs text "
                      "data (data = text(FILE) or --data text:FILE)"), -1;
  int *map = rt_xmalloc(sizeof(int) * ((size_t)m->g.nnodes + 1));
  Graph w;
  TrainSpec ts = m->train;
  int rc = pass_window_graph(&m->g, &w, c->bptt, c->carry_state, map);
  if (!rc && remap_train(&ts, map))
    diag_plain(t->d, flag, "the training section reads what only computes a scan's initial state"), rc = -1;
  rt_xfree(map);
  if (rc) {
    ir_graph_free(&w);
    return -1;
  }
  t->orig_g = m->g, t->orig_train = m->train, t->windowed = 1;
  m->g = w, m->train = ts;
  return c->carry_state ? find_carry(t) : 0;
}

/* The model's own graph and training section back (trainer_free). */
static void unwindow(Trainer *t) {
  if (!t->windowed) return;
  ir_graph_free(&t->m->g);
  t->m->g = t->orig_g, t->m->train = t->orig_train, t->windowed = 0;
  for (int k = 0; k < t->ncarry; k++) rt_xfree(t->carry[0][k]), rt_xfree(t->carry[1][k]);
  t->ncarry = 0;
}

/* The carried states of training (which 0) or evaluation (1) at zero, for
 * batches of rows samples. */
static void carry_reset(Trainer *t, int which, int64_t rows) {
  for (int k = 0; k < t->ncarry; k++) {
    size_t bytes = sizeof(float) * (size_t)(t->carry_row[k] * rows) + 1;
    rt_xfree(t->carry[which][k]);
    t->carry[which][k] = rt_xcalloc(bytes, 1);
  }
}

/* The batchify layout (torch's word_language_model): batch k of an epoch
 * is row r = window r·nb + k for r < rows, so each row reads on where the
 * batch before it stopped; nb = n / rows batches, the last n mod rows
 * windows left out.  Returns nb. */
static int64_t contiguous_order(int64_t n, int64_t rows, int64_t *order) {
  int64_t nb = n / rows;
  for (int64_t k = 0; k < nb; k++)
    for (int64_t r = 0; r < rows; r++) order[k * rows + r] = r * nb + k;
  return nb;
}

int trainer_prepare(Trainer *t, Model *m, const TrainConfig *cfg, Diags *d) {
  memset(t, 0, sizeof *t);
  t->m = m, t->cfg = *cfg, t->d = d;
  if ((cfg->bptt || cfg->carry_state) && window_model(t)) return -1;
  t->loss = m->train.nsections ? m->train.sections[0].loss : m->train.loss;
  t->x_input = data_input(m);
  t->y_input = m->train.nlabels ? m->train.labels[0] : -1;
  rt_set_init(&t->tensors);
  ir_graph_init(&t->tg, m->g.name, d);
  ir_graph_init(&t->eg, m->g.name, d);
  ir_graph_init(&t->ug, m->g.name, d);
  for (int s = 0; s < FE_MAX_SECTIONS - 1; s++) ir_graph_init(&t->sec_g[s], m->g.name, d);
  for (int s = 0; s < cfg->nsections; s++) snprintf(t->sec_func[s], sizeof t->sec_func[s], "train_step_%s", cfg->sec_name[s]);
  /* the frontend checked `target`: a label (data set labels) or an input of labels[0]'s type */
  int target = m->train.target;
  t->autoencode = target >= 0;
  for (int k = 0; k < m->train.nlabels; k++) t->autoencode &= m->train.labels[k] != target;
  t->target_feed = -1;
  if (!cfg->nbinds && t->autoencode && target != t->x_input) {
    diag_plain(d, m->src.path, "'target = %s' names an input the data set does not feed (it feeds '%s')",
               m->g.nodes[target].name, t->x_input >= 0 ? m->g.nodes[t->x_input].name : "none");
    return -1;
  }
  if (cfg->nbinds ? trainer_named_feeds(t) : (fixed_feeds(t), 0)) return -1;
  if (cfg->augment_noise > 0 && t->target_feed < 0)
    return diag_plain(d, "augment", "noise=%g makes a denoising autoencoder: it needs 'target = INPUT' in the training "
                      "section (the loss compares with the clean input), which %s has not", cfg->augment_noise,
                      m->g.name), -1;
  t->acc_output = -1;
  if (m->g.nodes[t->loss].op == OP_CROSS_ENTROPY && m->g.nodes[m->g.nodes[t->loss].in[0]].shape.rank == 2) {
    int logits = m->g.nodes[t->loss].in[0];
    t->acc_output = find_output(&m->g, logits);
    if (t->acc_output < 0) t->acc_output = ir_output(&m->g, "logits", logits);
  }
  return 0;
}

int64_t trainer_rows(const Trainer *t) {
  return t->dist ? (t->cfg.batch + t->dist->size - 1) / t->dist->size : t->cfg.batch;
}

/* The flat gradient buffer of the split train step: tg's outputs from
 * the first "NAME.grad" on, each at its offset, then a tail of 3 floats. */
static void dist_buffers(Trainer *t) {
  const Graph *g = &t->tg;
  t->grad_out = g->noutputs;
  for (int o = g->noutputs - 1; o >= 0; o--) {
    size_t len = strlen(g->outputs[o].name);
    if (len > 5 && !strcmp(g->outputs[o].name + len - 5, ".grad")) t->grad_out = o;
  }
  t->goff = rt_xcalloc((size_t)(g->noutputs - t->grad_out) + 1, sizeof *t->goff);
  t->gsize = 0;
  for (int o = t->grad_out; o < g->noutputs; o++) {
    t->goff[o - t->grad_out] = t->gsize;
    t->gsize += ir_numel_max(g, &g->nodes[g->outputs[o].id].shape);
  }
  t->gbuf = rt_xcalloc((size_t)t->gsize + 3, sizeof(float));
}

/* Data-parallel training weighs each process's gradients by its share
 * of the batch, which is right for a loss that is a mean over the rows
 * (and terms that do not depend on them), not for one summed over them. */
static int check_dist_loss(Trainer *t) {
  for (int i = 0; t->dist && i < t->m->g.nnodes; i++) {
    const Node *n = &t->m->g.nodes[i];
    if (ir_op_family(n->op) == AK_LOSS && n->attr.loss.reduction == RED_SUM)
      return diag_plain(t->d, "--distributed", "%s '%s' sums over the batch (reduction=sum); data-parallel training "
                        "weighs each process's gradients by its share of the batch, which is right for means: use "
                        "reduction=mean", ir_ops[n->op].name, n->name ? n->name : "loss"), -1;
  }
  return 0;
}

int trainer_build(Trainer *t, const RtTensorSet *init) {
  Model *m = t->m;
  const TrainConfig *cfg = &t->cfg;
  Diags *d = t->d;
  if (trainer_check_optim(&cfg->opt, d)) return -1;
  if (t->dist && cfg->nsections)
    return diag_plain(d, "--distributed", "the model has %d named train sections; data-parallel training takes a "
                      "model with one train section", cfg->nsections), -1;
  if (check_dist_loss(t)) return -1;
  if (t->dist && t->windowed)
    return diag_plain(d, cfg->carry_state ? "--carry-state" : "--bptt", "is not supported with --distributed"), -1;
  for (int s = 0; s < cfg->nsections; s++) {
    if (trainer_check_optim(&cfg->sec_opt[s], d)) return -1;
    t->sec_opt[s] = cfg->sec_opt[s];
    /* each section's random draws (dropout, noise inputs) are its own stream */
    t->sec_opt[s].seed = cfg->seed ^ ((uint64_t)s * 0x9E3779B97F4A7C15u);
  }
  for (int s = 0; s < m->g.nsyms; s++) m->g.syms[s].max = trainer_rows(t);
  t->opt = cfg->opt;
  t->opt.seed = cfg->seed;
  /* each process draws its own dropout masks; process 0 draws one process's */
  if (t->dist) t->opt.seed ^= (uint64_t)t->dist->rank * 0x9E3779B97F4A7C15u;
  if (run_stage(t, PASS_STAGE_GRAPH)) return -1;
  if (t->dist) dist_buffers(t);
  carry_reset(t, 0, trainer_rows(t));
  carry_reset(t, 1, trainer_rows(t));
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
  rt_pool_free(t->pool);
  if (t->prog.nfuncs) kir_program_free(&t->prog);
  ir_graph_free(&t->tg);
  ir_graph_free(&t->eg);
  ir_graph_free(&t->ug);
  rt_xfree(t->gbuf);
  rt_xfree(t->goff);
  rt_xfree(t->bucket_left);
  for (int s = 0; s < FE_MAX_SECTIONS - 1; s++) ir_graph_free(&t->sec_g[s]);
  rt_set_free(&t->tensors);
  rt_dataset_free(&t->train);
  rt_dataset_free(&t->val);
  rt_dataset_free(&t->test);
  unwindow(t); /* last: the steps' graphs and program point into the window graph */
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
  return y && y->dtype == DT_I32 ? trainer_widen_ints(t, y, what, &ds->y) : 0; /* the loaders give i64 labels */
}

/* text: windows of the data input's T characters (i64 [N, T]). */
static RtStatus load_text(Trainer *t, RtDataset *all, RtError *err) {
  const Node *x = t->x_input >= 0 ? &t->m->g.nodes[t->x_input] : NULL;
  if (!x || x->dtype != DT_I64 || x->shape.rank != 2 || DIM_IS_SYM(x->shape.d[1]))
    return rt_fail(err, RT_ERR_SHAPE, "text data feeds character ids to an input i64[N, T] with a constant T%s%s%s",
                   x ? ", not '" : "", x ? x->name : "", x ? "'" : "");
  return rt_data_text(t->cfg.data_args[0], x->shape.d[1], all, &t->vocab, err);
}

static size_t row_bytes(const RtTensor *t);

/* Rows [lo, hi) of x and y (text windows) into out. */
static RtStatus take_rows(const RtDataset *all, int64_t lo, int64_t hi, RtDataset *out, RtError *err) {
  const RtTensor *src[2] = {&all->x, &all->y};
  RtTensor *dst[2] = {&out->x, &out->y};
  for (int k = 0; k < 2; k++) {
    int64_t shape[IR_MAX_RANK];
    memcpy(shape, src[k]->shape, sizeof(int64_t) * (size_t)src[k]->rank);
    shape[0] = hi - lo;
    RtStatus st = rt_tensor_alloc(dst[k], src[k]->dtype, src[k]->rank, shape, err);
    if (st) return st;
    size_t row = row_bytes(src[k]);
    memcpy(dst[k]->data, (const char *)src[k]->data + row * (size_t)lo, row * (size_t)(hi - lo));
  }
  out->n = hi - lo;
  return RT_OK;
}

/* --carry-state: the validation windows are the text's last ones, so both
 * parts stay contiguous (all is consumed). */
static RtStatus split_tail(RtDataset *all, double frac, RtDataset *train, RtDataset *val, RtError *err) {
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  int64_t nval = llround((double)all->n * frac);
  RtStatus st = take_rows(all, 0, all->n - nval, train, err);
  if (!st) st = take_rows(all, all->n - nval, all->n, val, err);
  rt_dataset_free(all);
  return st;
}

int trainer_load_data(Trainer *t) {
  const TrainConfig *c = &t->cfg;
  RtDataset all;
  RtError err;
  memset(&all, 0, sizeof all);
  if (c->nbinds) return trainer_load_named(t);
  if (c->data_kind[0] && trainer_check_fixed_form(t)) return -1;
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
  else if (!strcmp(kind, "text"))
    st = load_text(t, &all, &err);
  else {
    diag_plain(t->d, "dlc train", "no data set: give one in the training section (data = fashion_mnist(DIR)) or with --data");
    return -1;
  }
  if (st) return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  if (trainer_check_ids(t, &all)) return rt_dataset_free(&all), -1;
  if (rt_dataset_select_classes(&all, c->classes, &err) || rt_dataset_select_classes(&t->test, c->classes, &err))
    return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  if (t->ncarry ? split_tail(&all, c->val_split, &t->train, &t->val, &err)
                : rt_dataset_split(&all, c->val_split, c->seed, &t->train, &t->val, &err))
    return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  return shape_data(t, &t->train, "training data") || shape_data(t, &t->val, "validation data") ||
                 shape_data(t, &t->test, "test data")
             ? -1
             : 0;
}

/* --- calling a step ------------------------------------------------------------------- */

typedef struct Call {
  int64_t n;
  int64_t global_n;   /* --distributed: the rows of the global batch, of which n are this process's */
  const void *in[TRAINER_MAX_FEEDS]; /* the batch of each feed */
  float lr, step;
  int section;        /* the named section whose train step runs */
  void **outs;        /* one buffer per graph output */
  int64_t top5;       /* evaluation: rows whose label is among the 5 best */
  double sec_loss[FE_MAX_SECTIONS]; /* evaluation: each named section's loss */
  float **carry;      /* --carry-state: the states it starts from, and gets the final ones */
} Call;

/* The caller's pointer for input node name of the graph. */
static const void *input_ptr(const Trainer *t, const char *name, const Call *c) {
  if (!strcmp(name, "lr")) return &c->lr;
  if (!strcmp(name, "step")) return &c->step;
  for (int o = t->grad_out; t->dist && o < t->tg.noutputs; o++) /* the update step's gradients */
    if (!strcmp(name, t->tg.outputs[o].name)) return t->gbuf + t->goff[o - t->grad_out];
  for (int f = 0; f < t->nfeeds; f++)
    if (!strcmp(name, t->m->g.nodes[t->feeds[f].node].name)) return c->in[f];
  for (int k = 0; k < t->ncarry && c->carry; k++)
    if (!strcmp(name, t->carry_name[k])) return c->carry[k];
  return NULL;
}

/* The final states of a call become the next call's initial states. */
static void carry_on(const Trainer *t, const Graph *g, const Call *c) {
  for (int k = 0; k < t->ncarry && c->carry; k++) {
    int o = ir_find_output(g, t->carry_name[k]);
    IR_ASSERT(o >= 0);
    memcpy(c->carry[k], c->outs[o], sizeof(float) * (size_t)(t->carry_row[k] * c->n));
  }
}

/* Top-1 accuracy needs logits and i64 class labels. */
static int has_accuracy(const Trainer *t) {
  return t->acc_output >= 0 && t->y_input >= 0 && t->m->g.nodes[t->y_input].dtype == DT_I64;
}

/* The class labels of the batch (the first label's feed), or NULL. */
static const int64_t *call_labels(const Trainer *t, const Call *c) {
  if (!has_accuracy(t)) return NULL;
  for (int f = 0; f < t->nfeeds; f++)
    if (t->feeds[f].node == t->y_input) return c->in[f];
  return NULL;
}

/* A call with the fixed forms' batch: x for the data input, y for the label. */
static Call fixed_call(const Trainer *t, int64_t n, const float *x, const void *y) {
  Call c = {.n = n, .carry = (float **)t->carry[0]};
  for (int f = 0; f < t->nfeeds; f++)
    c.in[f] = t->feeds[f].source == FEED_X ? (const void *)x : t->feeds[f].source < 0 ? y : NULL;
  return c;
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
  if (t->dist && t->cfg.sync_bn) io.collective = trainer_collective, io.collective_ctx = t;
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

/* Output buffers for the first nown outputs of graph g at batch n (the
 * caller points the others at its own storage). */
static void **alloc_outputs(const Graph *g, int64_t n, int nown) {
  void **outs = rt_xcalloc((size_t)g->noutputs + 1, sizeof *outs);
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = n;
  for (int o = 0; o < nown; o++) {
    const Node *nd = &g->nodes[g->outputs[o].id];
    outs[o] = rt_xcalloc((size_t)ir_numel(g, &nd->shape, sym) + 1, rt_dtype_size(nd->dtype));
  }
  return outs;
}

static void free_outputs(void **outs, int nown) {
  for (int o = 0; o < nown; o++) rt_xfree(outs[o]);
  rt_xfree(outs);
}

static int run(Trainer *t, int train, Call *c, double *loss, int64_t *correct) {
  const Graph *g = train ? train_graph(t, c->section) : &t->eg;
  const char *fname = !train ? "eval_step" : t->cfg.nsections ? t->sec_func[c->section] : t->dist ? "grad_step" : "train_step";
  RtError err;
  int nown = train && t->dist ? t->grad_out : g->noutputs; /* the gradients go into gbuf */
  c->outs = alloc_outputs(g, c->n, nown);
  for (int o = nown; o < g->noutputs; o++) c->outs[o] = t->gbuf + t->goff[o - nown];
  int rc = t->cfg.backend != BACKEND_INTERP ? call_c(t, fname, g, c, &err) : call_interp(t, g, c, &err);
  const int64_t *labels = call_labels(t, c);
  if (rc) diag_plain(t->d, "dlc train", "%s", err.msg);
  else {
    carry_on(t, g, c);
    *loss = ((float *)c->outs[0])[0];
    for (int s = 0; s < t->cfg.nsections && !train; s++) {
      char name[80];
      int o = s ? ir_find_output(g, eval_loss_name(t, s, name, sizeof name)) : 0;
      c->sec_loss[s] = o >= 0 ? ((float *)c->outs[o])[0] : NAN;
    }
    if (correct && t->acc_output >= 0 && labels) {
      const Node *l = &g->nodes[g->outputs[1 + t->acc_output].id];
      *correct = rt_topk_correct(c->outs[1 + t->acc_output], labels, c->n, l->shape.d[1], 1);
      if (!train) c->top5 = rt_topk_correct(c->outs[1 + t->acc_output], labels, c->n, l->shape.d[1], 5);
    }
  }
  free_outputs(c->outs, nown);
  return rc;
}

int trainer_predict(Trainer *t, int64_t n, const float *x, const void *y, float *logits) {
  if (t->acc_output < 0) return diag_plain(t->d, "predict", "the model's loss is not a classification loss"), -1;
  const Graph *g = &t->eg;
  Call c = fixed_call(t, n, x, y);
  RtError err;
  c.outs = alloc_outputs(g, n, g->noutputs);
  int rc = t->cfg.backend != BACKEND_INTERP ? call_c(t, "eval_step", g, &c, &err) : call_interp(t, g, &c, &err);
  if (rc) {
    diag_plain(t->d, "predict", "%s", err.msg);
  } else {
    const Node *l = &g->nodes[g->outputs[1 + t->acc_output].id];
    memcpy(logits, c.outs[1 + t->acc_output], sizeof(float) * (size_t)(n * l->shape.d[1]));
  }
  free_outputs(c.outs, g->noutputs);
  return rc;
}

/* The learning rate of named section s when the run's schedule gives lr
 * for the first section's: the schedule scales every section's own rate. */
static double section_lr(const Trainer *t, int s, double lr) {
  return t->cfg.nsections && t->opt.lr > 0 ? lr * (t->sec_opt[s].lr / t->opt.lr) : lr;
}

/* The rate of step k, section s's nth, when the run's rate is lr. */
static double step_lr(const Trainer *t, int s, int64_t nth, double lr) {
  if (t->cfg.nsections && t->cfg.sec_has_sched[s]) return rt_schedule_lr(&t->cfg.sec_sched[s], t->epoch, nth);
  return section_lr(t, s, lr);
}

double trainer_step_lr(const Trainer *t, int64_t k) {
  int64_t nth;
  int s = trainer_section_of(t, k, &nth);
  return step_lr(t, s, nth, rt_schedule_lr(&t->cfg.sched, t->epoch, k));
}

/* The gradients of c (this process's rows) summed over the processes,
 * with the tail: each process scales its gradients and its loss, means
 * over its n rows, by n / global_n, so the sums are those of the global
 * batch's mean loss; the correct counts and stop requests are added. */
static int dist_sum(Trainer *t, Call *c, double *loss, int64_t *correct) {
  double l = 0;
  int64_t right = 0;
  float w = c->global_n ? (float)((double)c->n / (double)c->global_n) : 0, *tail = t->gbuf + t->gsize;
  /* a process without rows still takes part in the step's collectives */
  int in_step = t->cfg.sync_bn || t->bucket_left;
  t->coll_w = c->n ? w : 0;
  for (int64_t b = 0; b < t->nbuckets; b++) t->bucket_left[b] = bucket_len(t, b, &(int64_t){0});
  if ((c->n || in_step) && run(t, 1, c, &l, &right)) return -1;
  for (int64_t b = 0; b < t->nbuckets && !t->coll_failed; b++) IR_ASSERT(t->bucket_left[b] < 0);
  if (t->coll_failed) return -1;
  for (int64_t i = 0; i < t->gsize && w != 1 && !t->bucket_left; i++) t->gbuf[i] = c->n ? t->gbuf[i] * w : 0;
  tail[0] = c->n ? (float)(l * w) : 0, tail[1] = (float)right, tail[2] = (float)t->stop_local;
  RtError err;
  /* the overlap's buckets were started by the hook: the tail, then wait for them all */
  if (t->bucket_left ? rt_dist_sum_f32(t->dist, tail, 3, &err) || rt_dist_wait(t->dist, &err)
                     : rt_dist_sum_f32(t->dist, t->gbuf, t->gsize + 3, &err))
    return diag_plain(t->d, "--distributed", "%s", err.msg), -1;
  *loss = tail[0];
  if (correct) *correct = (int64_t)tail[1];
  t->stop_any = tail[2] > 0;
  return 0;
}

/* A data-parallel step: the summed gradients, then the update (the same on
 * every process). */
static int dist_step(Trainer *t, Call *c, double *loss, int64_t *correct) {
  RtError err;
  if (dist_sum(t, c, loss, correct)) return -1;
  int rc = t->cfg.backend != BACKEND_INTERP ? call_c(t, "update_step", &t->ug, c, &err) : call_interp(t, &t->ug, c, &err);
  c->outs = NULL;
  if (rc) diag_plain(t->d, "dlc train", "%s", err.msg);
  return rc;
}

/* The next optimizer step: of the section whose turn it is, which counts
 * its own steps (Adam's t). */
static int step_call(Trainer *t, Call *c, double lr, double *loss, int64_t *correct) {
  int64_t nth;
  c->section = trainer_section_of(t, t->step, &nth);
  c->lr = (float)step_lr(t, c->section, nth, lr), c->step = (float)(nth + 1);
  if (correct) *correct = 0;
  if (t->dist ? dist_step(t, c, loss, correct) : run(t, 1, c, loss, correct)) return -1;
  t->step++;
  return 0;
}

int trainer_step(Trainer *t, int64_t n, const float *x, const void *y, double lr, double *loss, int64_t *correct) {
  Call c = fixed_call(t, n, x, y);
  return step_call(t, &c, lr, loss, correct);
}

/* --- batches ------------------------------------------------------------------------ */

/* One buffer per feed, rows of the feed's source; an autoencoder's
 * target rows are its input's. */
typedef struct Batch {
  void *buf[TRAINER_MAX_FEEDS];   /* on a cache line, in raw */
  void *raw[TRAINER_MAX_FEEDS];
  size_t row[TRAINER_MAX_FEEDS];
} Batch;

static const RtTensor *feed_tensor(const RtDataset *ds, const TrainFeed *f) {
  if (f->source == FEED_X) return &ds->x;
  if (f->source == FEED_Y) return &ds->y;
  return f->source >= 0 ? &ds->cols[f->source] : NULL;
}

static size_t row_bytes(const RtTensor *t) {
  size_t e = rt_dtype_size(t->dtype);
  for (int k = 1; k < t->rank; k++) e *= (size_t)t->shape[k];
  return e;
}

static void batch_alloc(const Trainer *t, const RtDataset *ds, int64_t rows, Batch *b) {
  memset(b, 0, sizeof *b);
  for (int f = 0; f < t->nfeeds; f++) {
    const RtTensor *src = feed_tensor(ds, &t->feeds[f]);
    if (!src) src = feed_tensor(ds, &t->feeds[t->target_feed]);
    b->row[f] = row_bytes(src);
    /* 64-byte aligned: the step reads a batch's rows as vectors (the MLP's
     * weight gradient, dW = dY^T X, reads X in place), and a buffer off a
     * cache line split every such load in two: that step ran 25% slower
     * whenever malloc's block happened to start off one */
    b->raw[f] = rt_xmalloc(b->row[f] * (size_t)rows + 64);
    b->buf[f] = (void *)(((uintptr_t)b->raw[f] + 63) & ~(uintptr_t)63);
  }
}

static void batch_free(const Trainer *t, Batch *b) {
  for (int f = 0; f < t->nfeeds; f++) rt_xfree(b->raw[f]);
}

/* Rows idx[0..n) of every source into the batch, and the call that reads
 * it; the rows are copied on the step's pool (with --threads). */
static Call batch_fill(const Trainer *t, const RtDataset *ds, const int64_t *idx, int64_t n, Batch *b) {
  Call c = {.n = n, .carry = (float **)t->carry[0]};
  RtPool *pool = t->cfg.threads > 1 && !t->own_threads ? t->pool : NULL;
  for (int f = 0; f < t->nfeeds; f++) {
    const RtTensor *src = feed_tensor(ds, &t->feeds[f]);
    if (src) rt_pool_gather_rows(pool, src->data, b->row[f], idx, n, b->buf[f]);
    c.in[f] = b->buf[f];
  }
  return c;
}

/* flip/crop on every f32 image feed ([C, H, W] or [H, W] samples), each
 * from the same state of the generator: the same samples are mirrored
 * and shifted alike in all of them (an image and its mask). */
static int batch_augment(Trainer *t, const RtDataset *ds, Batch *b, int64_t n, RtRng *aug) {
  if (!t->cfg.augment_flip && t->cfg.augment_crop <= 0) return 0;
  RtRng start = *aug;
  RtError err;
  int done = 0;
  for (int f = 0; f < t->nfeeds; f++) {
    const RtTensor *src = feed_tensor(ds, &t->feeds[f]);
    if (!src || src->dtype != DT_F32 || src->rank < 3) continue;
    RtRng r = start;
    if (rt_augment_batch(b->buf[f], n, src->rank - 1, src->shape + 1, t->cfg.augment_flip, t->cfg.augment_crop, &r,
                         &err))
      return diag_plain(t->d, "augment", "%s", err.msg), -1;
    *aug = r, done = 1;
  }
  if (!done)
    return diag_plain(t->d, "augment", "flip and crop need image samples [C, H, W] or [H, W], and no f32 input of the "
                      "data set has them"), -1;
  return 0;
}

/* For an autoencoder, the target is the clean batch and the input gets
 * the configured noise; returns the MSE of the noisy input against it. */
static double make_targets(Trainer *t, Batch *b, int64_t n, RtRng *noise) {
  if (t->target_feed < 0) return 0;
  int ft = t->nfeeds - 1, fx = t->target_feed; /* the target feed is added last */
  IR_ASSERT(t->feeds[ft].source == FEED_TARGET);
  memcpy(b->buf[ft], b->buf[fx], b->row[fx] * (size_t)n);
  if (t->cfg.augment_noise <= 0) return 0;
  int64_t count = (int64_t)(b->row[fx] / sizeof(float)) * n;
  float *x = b->buf[fx];
  const float *y = b->buf[ft];
  rt_add_noise(x, count, t->cfg.augment_noise, noise);
  double se = 0;
  for (int64_t i = 0; i < count; i++) se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
  return se / (double)count;
}

/* [lo, hi): this process's share of n rows (all of them without t->dist). */
static void share(const Trainer *t, int64_t n, int64_t *lo, int64_t *hi) {
  int r = t->dist ? t->dist->rank : 0, p = t->dist ? t->dist->size : 1;
  *lo = n * r / p, *hi = n * (r + 1) / p;
}

/* With t->dist, the evaluation's sums over every process's share. */
static int dist_totals(Trainer *t, double *sum, double *base, int64_t *correct, int64_t *top5) {
  double v[4] = {*sum, *base, (double)*correct, (double)*top5};
  RtError err;
  if (t->dist && rt_dist_sum_f64(t->dist, v, 4, &err)) return diag_plain(t->d, "--distributed", "%s", err.msg), -1;
  *sum = v[0], *base = v[1], *correct = (int64_t)v[2], *top5 = (int64_t)v[3];
  return 0;
}

int trainer_evaluate(Trainer *t, const RtDataset *ds, double *loss, double *acc) {
  int64_t b = trainer_rows(t), total_correct = 0, total_top5 = 0, lo, hi;
  RtRng noise; /* the same noise at every evaluation, so the figures compare */
  rt_rng_seed_stream(&noise, t->cfg.seed, "eval-noise");
  double base = 0, sum = 0, sec_sum[FE_MAX_SECTIONS] = {0};
  Batch bt;
  batch_alloc(t, ds, b, &bt);
  int64_t *idx = rt_xmalloc(sizeof(int64_t) * (size_t)(b + 1));
  int rc = 0;
  share(t, ds->n, &lo, &hi);
  int64_t *order = NULL, rows = ds->n < b ? ds->n : b, used = ds->n;
  if (t->ncarry && rows) { /* contiguous rows, the states carried from batch to batch */
    order = rt_xmalloc(sizeof(int64_t) * (size_t)(ds->n + 1));
    used = contiguous_order(ds->n, rows, order) * rows, hi = used;
    carry_reset(t, 1, rows);
  }
  for (int64_t start = lo; start < hi && !rc; start += b) {
    int64_t n = hi - start < b ? hi - start : b, correct = 0;
    for (int64_t i = 0; i < n; i++) idx[i] = order ? order[start + i] : start + i;
    Call c = batch_fill(t, ds, idx, n, &bt);
    c.carry = t->carry[1];
    base += make_targets(t, &bt, n, &noise) * (double)n;
    double l = 0;
    rc = run(t, 0, &c, &l, &correct);
    sum += l * (double)n;
    for (int s = 0; s < t->cfg.nsections; s++) sec_sum[s] += c.sec_loss[s] * (double)n;
    total_correct += correct;
    total_top5 += c.top5;
  }
  if (!rc) rc = dist_totals(t, &sum, &base, &total_correct, &total_top5);
  rt_xfree(order);
  int acc_ok = ds->n && has_accuracy(t);
  *loss = ds->n ? sum / (double)used : NAN;
  t->baseline = ds->n ? base / (double)ds->n : NAN;
  *acc = acc_ok ? (double)total_correct / (double)ds->n : NAN;
  t->top5 = acc_ok ? (double)total_top5 / (double)ds->n : NAN;
  for (int s = 0; s < FE_MAX_SECTIONS; s++) t->section_loss[s] = s < t->cfg.nsections && ds->n ? sec_sum[s] / (double)ds->n : NAN;
  batch_free(t, &bt);
  rt_xfree(idx);
  return rc;
}

/* --- epochs ---------------------------------------------------------------------- */

int trainer_check_loss(Trainer *t, const EpochStats *es) {
  if (isfinite(es->loss) && (isnan(es->val_loss) || isfinite(es->val_loss)) ) return 0;
  diag_plain(t->d, "dlc train", "the %s loss of epoch %lld is %g: training diverged (try a smaller learning rate); "
             "nothing of this epoch is saved", isfinite(es->loss) ? "validation" : "training", (long long)t->epoch,
             isfinite(es->loss) ? es->val_loss : es->loss);
  return -1;
}

/* Batch i of the epoch into bt: its rows, augmentation and targets. */
static int epoch_batch(Trainer *t, const int64_t *order, int64_t i, Batch *bt, RtRng *aug, Call *c) {
  const RtDataset *ds = &t->train;
  int64_t b = t->cfg.batch, cnt = ds->n - i * b < b ? ds->n - i * b : b;
  *c = batch_fill(t, ds, order + i * b, cnt, bt);
  if (batch_augment(t, ds, bt, cnt, aug)) return -1;
  make_targets(t, bt, cnt, aug);
  return 0;
}

/* This process's rows of the global batch c (--distributed): every
 * process fills the whole batch, as one process would (the same rows, the
 * same augmentation draws), and steps on rows [r·n/P, (r+1)·n/P). */
static Call shard(const Trainer *t, const Call *c, const Batch *b) {
  Call s = *c;
  int64_t lo, hi;
  share(t, c->n, &lo, &hi);
  s.n = hi - lo, s.global_n = c->n;
  for (int f = 0; f < t->nfeeds; f++) s.in[f] = (const char *)c->in[f] + (size_t)lo * b->row[f];
  return s;
}

static int report_batch(Trainer *t, int64_t i, int64_t nb, double loss, double acc, double lr, int section,
                        double start) {
  if (!t->on_batch) return 0;
  int64_t nth;
  trainer_section_of(t, t->step - 1, &nth);
  BatchStats bs = {i + 1, nb, loss, acc, step_lr(t, section, nth, lr), rt_now() - start, t->cfg.nsections ? section : -1};
  return t->on_batch(t->batch_ctx, t, &bs) ? -1 : 0;
}

int trainer_epoch(Trainer *t, EpochStats *es, int tty, volatile sig_atomic_t *stop) {
  const RtDataset *ds = &t->train;
  if (ds->n == 0) return diag_plain(t->d, "dlc train", "the training set is empty: nothing to train on"), -1;
  int64_t b = t->cfg.batch, n = ds->n, nb = (n + b - 1) / b, first = t->epoch_batches;
  if (first >= nb)
    return diag_plain(t->d, "dlc train", "the run stopped after batch %lld of epoch %lld, but an epoch now has %lld "
                      "batches (another batch size or data set?)", (long long)first, (long long)t->epoch + 1,
                      (long long)nb), -1;
  int64_t *order = rt_xmalloc(sizeof(int64_t) * (size_t)(n + 1));
  Batch bt;
  batch_alloc(t, ds, b, &bt);
  if (t->ncarry) { /* whole batches of contiguous rows, the states zero at the epoch's start */
    nb = contiguous_order(n, b, order), n = nb * b;
    carry_reset(t, 0, b);
  } else {
    rt_epoch_order(n, t->cfg.seed, t->epoch, 1, order);
  }
  RtRng aug;
  char stream[48];
  snprintf(stream, sizeof stream, "augment/%lld", (long long)t->epoch);
  rt_rng_seed_stream(&aug, t->cfg.seed, stream);
  RtProgress pr;
  char label[24];
  snprintf(label, sizeof label, "epoch %d", (int)(t->epoch + 1) % 100000);
  rt_progress_begin(&pr, stderr, label, nb, b, tty);
  double start = rt_now(), sum = 0, sec_sum[FE_MAX_SECTIONS] = {0};
  int64_t seen = 0, correct = 0, sec_seen[FE_MAX_SECTIONS] = {0};
  int rc = 0;
  es->lr = rt_schedule_lr(&t->cfg.sched, t->epoch, t->step);
  for (int64_t i = 0; i < nb && !rc; i++) {
    Call c;
    int64_t right = 0;
    if (epoch_batch(t, order, i, &bt, &aug, &c)) rc = -1;
    if (rc || i < first) continue; /* done before the run stopped: only its random draws are repeated */
    double loss, lr = rt_schedule_lr(&t->cfg.sched, t->epoch, t->step);
    Call mine = t->dist ? shard(t, &c, &bt) : c;
    t->stop_local = stop && *stop;
    if (step_call(t, &mine, lr, &loss, &right)) rc = -1;
    c.section = mine.section;
    sum += loss * (double)c.n, seen += c.n, correct += right;
    sec_sum[c.section] += loss * (double)c.n, sec_seen[c.section] += c.n;
    rt_progress_update(&pr, i + 1, sum / (double)seen, has_accuracy(t) ? (double)correct / (double)seen : NAN);
    if (!rc) rc = report_batch(t, i, nb, loss, has_accuracy(t) ? (double)right / (double)c.n : NAN, lr, c.section, start);
    if (!rc && (t->dist ? t->stop_any : stop && *stop)) rc = 1; /* processes stop at the same batch */
    if (!rc && t->cfg.max_steps && t->step >= t->cfg.max_steps && i + 1 < nb) t->epoch_batches = i + 1, rc = 2;
  }
  if (rc == 0) t->epoch_batches = 0;
  if ((rc == 0 || rc == 2) && trainer_dist_sync(t)) rc = -1;
  rt_progress_end(&pr);
  es->loss = seen ? sum / (double)seen : NAN;
  for (int s = 0; s < FE_MAX_SECTIONS; s++) es->section_loss[s] = sec_seen[s] ? sec_sum[s] / (double)sec_seen[s] : NAN;
  es->acc = seen && has_accuracy(t) ? (double)correct / (double)seen : NAN;
  es->seconds = rt_now() - start;
  rt_xfree(order);
  batch_free(t, &bt);
  return rc;
}
