/*
 * train.c — the training section: `train { ... }`.
 *
 * Its statements are built as they are parsed.  Settings are assignments
 * to fixed names (loss, optimizer, schedule, data, batch, epochs, seed,
 * val_split, augment, target); each is given at most once.  What the loss
 * is compared against is never inferred: a label typed like the data
 * input is refused unless `target` says whether it is the input itself
 * (an autoencoder) or the data set's labels.  The optimizer, schedule and data
 * set are calls checked against the signature tables below and stored as
 * CallSpecs in a normal form: every argument keyed by its name, in
 * signature order, with the defaults filled in, so consumers never repeat
 * these defaults.  An assignment to any other name is an ordinary binding
 * (to compute a loss in steps), unless the name is one edit away from a
 * setting, which is almost surely a typo.
 *
 * Named sections (`train NAME { loss; optimizer; schedule; params }`) are
 * steps of their own: each gets a TrainSection (a schedule of its own is
 * optional), and the unnamed section (optional then) keeps the run's
 * settings.  While a named section is read,
 * P->settings holds its own slots and P->run_settings the unnamed one's.
 * Its `params` and the unnamed `order` are kept as ASTs and resolved in
 * fe_train_finish, once every parameter exists and `freeze` has applied:
 * patterns against parameter names (or their dotted prefixes), each
 * parameter in at most one section and every trainable one in some, and
 * each section's loss reachable from its parameters other than through
 * stop_gradient.
 */
#include <fnmatch.h>
#include <string.h>

#include "frontend/fe.h"

typedef struct CallDef {
  const char *name;
  SigParam sig[6];
} CallDef;

#define F(n, d, c) {n, SK_FLOAT, d, NULL, c}
#define I(n, d, c) {n, SK_INT, d, NULL, c}
#define B(n, d) {n, SK_BOOL, d, NULL, CHK_NONE}
#define S(n) {n, SK_STR, NULL, NULL, CHK_NONE}

static const CallDef optimizers[] = {
    {"sgd", {F("lr", NULL, CHK_POS), F("momentum", "0", CHK_NONNEG), F("dampening", "0", CHK_NONNEG),
             B("nesterov", "false"), F("weight_decay", "0", CHK_NONNEG)}},
    {"adam", {F("lr", NULL, CHK_POS), F("beta1", "0.9", CHK_UNIT), F("beta2", "0.999", CHK_UNIT),
              F("eps", "1e-8", CHK_POS), F("weight_decay", "0", CHK_NONNEG)}},
    {"adamw", {F("lr", NULL, CHK_POS), F("beta1", "0.9", CHK_UNIT), F("beta2", "0.999", CHK_UNIT),
               F("eps", "1e-8", CHK_POS), F("weight_decay", "0.01", CHK_NONNEG)}},
    {"rmsprop", {F("lr", NULL, CHK_POS), F("alpha", "0.99", CHK_UNIT), F("eps", "1e-8", CHK_POS),
                 F("momentum", "0", CHK_NONNEG), F("weight_decay", "0", CHK_NONNEG)}},
    {"adagrad", {F("lr", NULL, CHK_POS), F("eps", "1e-10", CHK_POS), F("weight_decay", "0", CHK_NONNEG),
                 F("lr_decay", "0", CHK_NONNEG)}},
};

static const CallDef schedules[] = {
    {"constant", {{0}}},
    {"step", {I("step_size", NULL, CHK_POS), F("gamma", "0.1", CHK_POS)}},
    {"exponential", {F("gamma", NULL, CHK_POS)}},
    {"cosine", {I("t_max", NULL, CHK_POS), F("eta_min", "0", CHK_NONNEG)}},
    {"cyclic", {F("base_lr", NULL, CHK_POS), F("max_lr", NULL, CHK_POS), I("step_size_up", NULL, CHK_POS)}},
};

#define SC {"classes", SK_STR, "", NULL, CHK_NONE} /* a subset of the classes: "0-4", "5,7" */
static const CallDef datasets[] = {
    {"fashion_mnist", {S("dir"), SC}},
    {"idx", {S("images"), S("labels"), SC}},
    {"csv", {S("path"), I("label_column", "-1", CHK_NONE), SC}},
    {"npy", {S("x"), {"y", SK_STR, "", NULL, CHK_NONE}, SC}}, /* npy(X, Y), or npy("NAME=PATH,...") */
    {"text", {S("path")}},  /* character windows of the data input's length */
};

/* Data augmentation, applied per mini-batch in training only. */
static const CallDef augmentations[] = {
    {"augment", {B("flip", "false"), I("crop", "0", CHK_NONNEG), F("noise", "0", CHK_NONNEG)}},
};

#define COUNT(a) (int)(sizeof a / sizeof a[0])

enum { SET_LOSS, SET_OPTIMIZER, SET_SCHEDULE, SET_DATA, SET_BATCH, SET_EPOCHS, SET_SEED, SET_VAL_SPLIT, SET_AUGMENT,
       SET_TARGET, SET_PARAMS, SET_ORDER };
static const char *settings[] = {"loss", "optimizer", "schedule", "data", "batch", "epochs", "seed", "val_split", "augment",
                                 "target", "params", "order"};
/* What a named section sets; the rest belongs to the run (the unnamed section). */
#define SECTION_SETTING(k) ((k) == SET_LOSS || (k) == SET_OPTIMIZER || (k) == SET_SCHEDULE || (k) == SET_PARAMS)

_Static_assert(COUNT(settings) == sizeof ((Parser *)0)->settings / sizeof(Token *), "one slot per setting");

static int nsig(const CallDef *c) {
  int n = 0;
  while (n < 6 && c->sig[n].name) n++;
  return n;
}

static int setting_index(const char *name) {
  for (int i = 0; i < COUNT(settings); i++)
    if (strcmp(settings[i], name) == 0) return i;
  return -1;
}

/* --- calls ----------------------------------------------------------------------- */

static const char *names_of(const CallDef *defs, int n, char *buf, size_t len) {
  size_t at = 0;
  for (int i = 0; i < n && at < len; i++) at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "", defs[i].name);
  return buf;
}

static const CallDef *find_call(Parser *P, Expr *e, const char *what, const CallDef *defs, int n) {
  char list[160];
  if (e->kind != EX_CALL && e->kind != EX_NAME) {
    diag_error(P->d, fe_loc(P, e->tok), "%s must be a call such as %s(...); the choices are %s", what,
               defs[0].name, names_of(defs, n, list, sizeof list));
    return NULL;
  }
  Suggest sg;
  fe_suggest_init(&sg, e->name, P->d);
  for (int i = 0; i < n; i++) {
    if (strcmp(defs[i].name, e->name) == 0) return &defs[i];
    fe_suggest_add(&sg, defs[i].name);
  }
  diag_error(P->d, fe_loc(P, e->tok), "unknown %s '%s'%s (the choices are %s)", what, e->name,
             fe_suggest_text(&sg), names_of(defs, n, list, sizeof list));
  return NULL;
}

static void fill_spec(Parser *P, CallSpec *cs, const CallDef *def, const Value *v, Token *at) {
  memset(cs, 0, sizeof *cs);
  cs->name = def->name;
  cs->loc = fe_loc(P, at);
  cs->nargs = nsig(def);
  for (int k = 0; k < cs->nargs; k++) {
    cs->keys[k] = def->sig[k].name;
    if (v[k].kind == V_STR) cs->strs[k] = arena_strdup(&P->g->arena, v[k].str);
    else cs->nums[k] = v[k].num;
  }
}

static void set_call(Parser *P, CallSpec *cs, Expr *e, const char *what, const CallDef *defs, int n) {
  const CallDef *def = find_call(P, e, what, defs, n);
  if (!def) return;
  Expr *slots[6];
  Value v[6];
  int ns = nsig(def);
  Arg *args = e->kind == EX_CALL ? e->args : NULL;
  int nargs = e->kind == EX_CALL ? e->nargs : 0;
  if (fe_bind_args(P, def->name, "argument", e->tok, def->sig, ns, args, nargs, slots) ||
      fe_eval_args(P, def->name, def->sig, ns, slots, v))
    return;
  fill_spec(P, cs, def, v, e->tok);
}

/* --- numbers ---------------------------------------------------------------------- */

static void set_int(Parser *P, Stmt *s, const char *name, int64_t min, int64_t *out) {
  char what[32];
  snprintf(what, sizeof what, "'%s'", name);
  Value v = fe_eval_as(P, s->value, SK_INT, what, NULL);
  if (v.kind == V_ERR) return;
  if (v.ival < min) {
    diag_error(P->d, fe_loc(P, s->value->tok), "'%s' must be at least %lld, not %lld", name,
               (long long)min, (long long)v.ival);
    return;
  }
  *out = v.ival;
}

static void set_val_split(Parser *P, Stmt *s) {
  Value v = fe_eval_as(P, s->value, SK_FLOAT, "'val_split'", NULL);
  if (v.kind == V_ERR) return;
  if (!(v.num >= 0 && v.num < 1)) {
    diag_error(P->d, fe_loc(P, s->value->tok), "'val_split' is the fraction of the data kept for "
               "validation and must be in [0, 1), not %g", v.num);
    return;
  }
  P->m->train.val_split = v.num;
}

static void set_loss(Parser *P, Stmt *s) {
  Value v = fe_eval(P, s->value);
  int id = v.kind == V_ERR ? -1 : fe_tensor(P, s->value, v);
  if (id < 0) return;
  const Node *n = &P->g->nodes[id];
  if (n->dtype != DT_F32 || n->shape.rank != 0) {
    char ty[128];
    diag_error(P->d, fe_loc(P, s->value->tok), "the loss must be a scalar f32[], not %s%s",
               ir_type_str(P->g, n->dtype, &n->shape, ty, sizeof ty),
               n->shape.rank ? "; reduce it with mean(...) or sum(...), or use reduction=mean" : "");
    return;
  }
  if (P->section) P->section->loss = id;
  else P->m->train.loss = id;
  fe_bind(P, s->name, v, NULL);
}

/* target = NAME, NAME an input: the data input or a label. */
static void set_target(Parser *P, Stmt *s) {
  Value v = fe_eval(P, s->value);
  int id = v.kind == V_ERR ? -1 : fe_tensor(P, s->value, v);
  if (id < 0) return;
  if (P->g->nodes[id].op != OP_INPUT) {
    diag_error(P->d, fe_loc(P, s->value->tok), "'target' names an input or a label (what the loss compares "
               "against), not a computed value; e.g. 'target = x' to reconstruct the input x");
    return;
  }
  P->m->train.target = id;
}

static int is_label(const TrainSpec *t, int id) {
  for (int k = 0; k < t->nlabels; k++)
    if (t->labels[k] == id) return 1;
  return 0;
}

static int same_type(const Node *a, const Node *b) {
  return a->dtype == b->dtype && ir_shape_eq(&a->shape, &b->shape);
}

/* `target = x` (x not a label) feeds labels[0] with x: one label of x's type. */
static void check_input_target(Parser *P, Stmt *s) {
  const TrainSpec *t = &P->m->train;
  const Node *x = &P->g->nodes[t->target];
  char tx[128], ty[128];
  if (!t->nlabels) {
    diag_error(P->d, fe_loc(P, s->tok), "'target = %s' gives the label the input's values, but the train "
               "section declares no label; add e.g. 'label clean: %s'", x->name,
               ir_type_str(P->g, x->dtype, &x->shape, tx, sizeof tx));
    return;
  }
  const Node *y = &P->g->nodes[t->labels[0]];
  if (!same_type(x, y))
    diag_error(P->d, y->loc, "label '%s' is %s but its target '%s' is %s; they must have the same type", y->name,
               ir_type_str(P->g, y->dtype, &y->shape, ty, sizeof ty), x->name,
               ir_type_str(P->g, x->dtype, &x->shape, tx, sizeof tx));
}

/* Without `target`, a label typed like a (non-label) input is ambiguous:
 * it could be the input to reconstruct or a label file of that shape. */
static void check_no_target(Parser *P) {
  const TrainSpec *t = &P->m->train;
  char ty[128];
  for (int k = 0; k < t->nlabels; k++)
    for (int i = 0; i < P->g->nnodes; i++) {
      const Node *x = &P->g->nodes[i], *y = &P->g->nodes[t->labels[k]];
      if (x->op != OP_INPUT || is_label(t, i) || !same_type(x, y)) continue;
      diag_error(P->d, y->loc, "label '%s' has the type of the input '%s' (%s); say what the loss compares "
                 "against: 'target = %s' to reconstruct the input (an autoencoder), or 'target = %s' "
                 "for the data set's labels", y->name, x->name,
                 ir_type_str(P->g, y->dtype, &y->shape, ty, sizeof ty), x->name, y->name);
      return;
    }
}

static double spec_num(const CallSpec *c, const char *key) {
  for (int i = 0; i < c->nargs; i++)
    if (c->keys[i] && !strcmp(c->keys[i], key)) return c->nums[i];
  return 0;
}

/* Combinations torch.optim refuses that no single argument's range shows. */
static void check_optimizer(Parser *P) {
  const CallSpec *o = P->section ? &P->section->optimizer : &P->m->train.optimizer;
  if (!o->name || strcmp(o->name, "sgd") || spec_num(o, "nesterov") == 0) return;
  double m = spec_num(o, "momentum"), damp = spec_num(o, "dampening");
  if (m <= 0 || damp != 0)
    diag_error(P->d, o->loc, "nesterov momentum needs momentum > 0 and dampening = 0 (as torch.optim.SGD), "
               "not momentum %g, dampening %g", m, damp);
}

/* --- statements ----------------------------------------------------------------- */

static int already_set(Parser *P, Token *name, int k) {
  Token *old = P->settings[k];
  P->settings[k] = name;
  if (!old) return 0;
  diag_error(P->d, fe_loc(P, name), "'%s' is already set in this train section", settings[k]);
  diag_note(P->d, fe_loc(P, old), "it is first set here");
  return 1;
}

/* A setting in the wrong kind of section: the run's in a named one,
 * params or order in the unnamed one. */
static int misplaced(Parser *P, Token *name, int k) {
  if (P->section && !SECTION_SETTING(k)) {
    diag_error(P->d, fe_loc(P, name), "'%s' is a setting of the whole run, not of section '%s': give it in the "
               "unnamed 'train { }' section", settings[k], P->section->name);
    return 1;
  }
  if (!P->section && k == SET_PARAMS) {
    diag_error(P->d, fe_loc(P, name), "'params' chooses the parameters of a named section ('train NAME { ... }'); "
               "the unnamed section's loss trains every parameter");
    return 1;
  }
  return 0;
}

static void lr_group(Parser *P, Stmt *s) {
  TrainSpec *t = &P->m->train;
  Value v = fe_eval_as(P, s->value, SK_FLOAT, "a group's learning rate", NULL);
  if (v.kind == V_ERR) return;
  for (int i = 0; i < t->ngroups; i++)
    if (strcmp(t->group_prefix[i], s->qual) == 0) {
      diag_error(P->d, fe_loc(P, s->name), "lr_group '%s' is given twice", s->qual);
      diag_note(P->d, t->group_loc[i], "first given here");
      return;
    }
  if (!(v.num > 0)) {
    diag_error(P->d, fe_loc(P, s->value->tok), "a learning rate must be positive, not %g", v.num);
  } else if (t->ngroups == 16) {
    diag_error(P->d, fe_loc(P, s->name), "too many lr_group statements (at most 16)");
  } else {
    t->group_prefix[t->ngroups] = arena_strdup(&P->g->arena, s->qual);
    t->group_lr[t->ngroups] = v.num;
    t->group_loc[t->ngroups++] = fe_loc(P, s->name);
  }
}

static void run_setting(Parser *P, Stmt *s, int k) {
  TrainSpec *t = &P->m->train;
  switch (k) {
  case SET_LOSS: set_loss(P, s); break;
  case SET_OPTIMIZER:
    set_call(P, P->section ? &P->section->optimizer : &t->optimizer, s->value, "optimizer", optimizers,
             COUNT(optimizers));
    break;
  case SET_SCHEDULE:
    set_call(P, P->section ? &P->section->schedule : &t->schedule, s->value, "schedule", schedules, COUNT(schedules));
    break;
  case SET_DATA: set_call(P, &t->data, s->value, "data set", datasets, COUNT(datasets)); break;
  case SET_BATCH: set_int(P, s, "batch", 1, &t->batch); break;
  case SET_EPOCHS: set_int(P, s, "epochs", 1, &t->epochs); break;
  case SET_SEED: set_int(P, s, "seed", 0, &t->seed); break;
  case SET_VAL_SPLIT: set_val_split(P, s); break;
  case SET_AUGMENT: set_call(P, &t->augment, s->value, "augmentation", augmentations, COUNT(augmentations)); break;
  case SET_TARGET: set_target(P, s); break;
  case SET_PARAMS: P->sec_params[P->section - t->sections] = s->value; break;
  case SET_ORDER: P->order = s->value; break;
  }
}

int fe_train_setting(Parser *P, Stmt *s) {
  if (s->kind == ST_LR_GROUP) {
    lr_group(P, s);
    return 1;
  }
  const char *name = fe_tokstr(P, s->name);
  int k = setting_index(name);
  if (k < 0) {
    Suggest sg;
    fe_suggest_init(&sg, name, P->d);
    for (int i = 0; i < COUNT(settings); i++) fe_suggest_add(&sg, settings[i]);
    if (!sg.best || sg.dist > 1) return 0;
    diag_error(P->d, fe_loc(P, s->name), "unknown training setting '%s'%s", name, fe_suggest_text(&sg));
    return 1;
  }
  if (!misplaced(P, s->name, k) && !already_set(P, s->name, k)) run_setting(P, s, k);
  return 1;
}

void fe_train_mark(Parser *P, const Token *name) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.*s", name->len > 30 ? 30 : name->len, name->p);
  int k = setting_index(buf);
  if (k >= 0 && !P->settings[k]) P->settings[k] = (Token *)name;
}

void fe_train_label(Parser *P, Stmt *s) {
  TrainSpec *t = &P->m->train;
  if (t->nlabels == 4) {
    diag_error(P->d, fe_loc(P, s->tok), "too many labels (at most 4)");
    return;
  }
  int id = fe_declare_input(P, s, "label");
  if (id >= 0) t->labels[t->nlabels++] = id;
}

/* `train NAME {`: a new named section, its name not taken. */
static int begin_named(Parser *P, Stmt *s) {
  TrainSpec *t = &P->m->train;
  const char *name = fe_tokstr(P, s->name);
  for (int i = 0; i < t->nsections; i++)
    if (!strcmp(t->sections[i].name, name)) {
      diag_error(P->d, fe_loc(P, s->name), "a train section named '%s' already exists", name);
      diag_note(P->d, t->sections[i].loc, "the first one is here");
      return -1;
    }
  if (t->nsections == FE_MAX_SECTIONS) {
    diag_error(P->d, fe_loc(P, s->name), "too many train sections (at most %d)", FE_MAX_SECTIONS);
    return -1;
  }
  TrainSection *sec = &t->sections[t->nsections++];
  memset(sec, 0, sizeof *sec);
  sec->name = arena_strdup(&P->g->arena, name);
  sec->loc = fe_loc(P, s->name);
  sec->loss = -1;
  sec->repeat = 1;
  P->section = sec;
  memcpy(P->run_settings, P->settings, sizeof P->settings);
  memset(P->settings, 0, sizeof P->settings);
  return 0;
}

int fe_train_begin(Parser *P, Stmt *s) {
  if (!s->name && P->unnamed) {
    diag_error(P->d, fe_loc(P, s->tok), "a model has one unnamed train section (name the others: 'train NAME { ... }')");
    diag_note(P->d, fe_loc(P, P->unnamed->tok), "the first one is here");
    return -1;
  }
  if (s->name && begin_named(P, s)) return -1;
  if (!s->name) P->unnamed = s;
  if (!P->train) P->train = s;
  P->m->train.present = 1;
  if (!s->name || !P->unnamed) P->m->train.loc = fe_loc(P, s->tok);
  P->in_train = 1;
  return 0;
}

static void end_named(Parser *P, Stmt *s) {
  TrainSection *sec = P->section;
  if (!P->settings[SET_LOSS])
    diag_error(P->d, fe_loc(P, s->name), "train section '%s' has no loss; add e.g. 'loss = bce_with_logits(d_fake, "
               "ones)'", sec->name);
  if (!P->settings[SET_OPTIMIZER])
    diag_error(P->d, fe_loc(P, s->name), "train section '%s' has no optimizer; add e.g. 'optimizer = adam(lr=2e-4)'",
               sec->name);
  if (!P->settings[SET_PARAMS])
    diag_error(P->d, fe_loc(P, s->name), "train section '%s' has no params; say which parameters its step updates, "
               "e.g. 'params = \"d_*\"' or 'params = [fc1, fc2]'", sec->name);
  check_optimizer(P);
  memcpy(P->settings, P->run_settings, sizeof P->settings);
  P->section = NULL;
}

void fe_train_abort(Parser *P) {
  if (P->section) memcpy(P->settings, P->run_settings, sizeof P->settings);
  P->section = NULL;
  P->in_train = 0;
}

void fe_train_end(Parser *P, Stmt *s) {
  P->in_train = 0;
  if (s->name) {
    end_named(P, s);
    return;
  }
  const TrainSpec *t = &P->m->train;
  P->unnamed_closed = 1;
  check_optimizer(P);
  if (t->target < 0) check_no_target(P);
  else if (!is_label(t, t->target)) check_input_target(P, s);
}

/* --- named sections: parameters and order ------------------------------------------ */

/* Pattern pat (a glob, `*` `?` `[...]`) matches parameter name or one of
 * its dotted prefixes: "d_*" and "disc" both match "disc.weight". */
static int param_matches(const char *pat, const char *name) {
  if (!fnmatch(pat, name, 0)) return 1;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", name);
  for (char *dot = strrchr(buf, '.'); dot; dot = strrchr(buf, '.')) {
    *dot = 0;
    if (!fnmatch(pat, buf, 0)) return 1;
  }
  return 0;
}

/* The section that already trains node id, or -1. */
static int owner_of(const TrainSpec *t, int upto, int id) {
  for (int s = 0; s < upto; s++)
    for (int k = 0; k < t->sections[s].nparams; k++)
      if (t->sections[s].params[k] == id) return s;
  return -1;
}

/* The parameters pattern e (at tok) selects, into sec; 0 when it
 * matches none (after reporting it). */
static int add_matches(Parser *P, int si, const char *pat, Token *tok, unsigned char *mark) {
  const Graph *g = P->g;
  int hits = 0;
  Suggest sg;
  fe_suggest_init(&sg, pat, P->d);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_PARAM || n->buffer) continue;
    fe_suggest_add(&sg, n->name);
    const char *dot = strrchr(n->name, '.');
    if (dot) fe_suggest_add(&sg, arena_strndup(P->tmp, n->name, (size_t)(dot - n->name))); /* its layer */
    if (!param_matches(pat, n->name)) continue;
    hits++;
    int other = owner_of(&P->m->train, si, i);
    if (other >= 0 && !n->frozen) {
      diag_error(P->d, fe_loc(P, tok), "parameter '%s' is already trained by section '%s'; each parameter belongs "
                 "to one section", n->name, P->m->train.sections[other].name);
      return 1;
    }
    if (!n->frozen) mark[i] = 1;
  }
  if (!hits)
    diag_error(P->d, fe_loc(P, tok), "no parameter matches '%s'%s (a pattern matches a parameter's name or its layer, "
               "e.g. \"d_*\" or fc1)", pat, fe_suggest_text(&sg));
  return hits;
}

/* One item of `params =`: a name (fc1, block1.fc) or a string pattern. */
static void params_item(Parser *P, int si, const Expr *e, unsigned char *mark) {
  if (e->kind == EX_NAME || e->kind == EX_STR) {
    add_matches(P, si, e->name, e->tok, mark);
    return;
  }
  diag_error(P->d, fe_loc(P, e->tok), "'params' is a parameter or layer name, a pattern such as \"d_*\", or a list "
             "of them");
}

static void resolve_params(Parser *P, int si, const Expr *e) {
  TrainSection *sec = &P->m->train.sections[si];
  unsigned char *mark = arena_alloc(P->tmp, (size_t)P->g->nnodes + 1);
  memset(mark, 0, (size_t)P->g->nnodes + 1);
  int before = P->d->nerrors;
  if (e->kind == EX_LIST)
    for (int k = 0; k < e->nargs; k++) params_item(P, si, e->args[k].val, mark);
  else
    params_item(P, si, e, mark);
  sec->params = arena_alloc(&P->g->arena, sizeof(int) * ((size_t)P->g->nnodes + 1));
  for (int i = 0; i < P->g->nnodes; i++)
    if (mark[i]) sec->params[sec->nparams++] = i;
  if (!sec->nparams && P->d->nerrors == before)
    diag_error(P->d, fe_loc(P, e->tok), "section '%s' has no trainable parameters: what its params match is frozen",
               sec->name);
}

/* Marks what node id depends on through differentiable edges (not
 * through stop_gradient), iteratively over ids in decreasing order. */
static int loss_reaches(const Graph *g, int loss, const int *ids, int nids, Arena *tmp) {
  unsigned char *need = arena_alloc(tmp, (size_t)g->nnodes + 1);
  memset(need, 0, (size_t)g->nnodes + 1);
  need[loss] = 1;
  for (int i = loss; i >= 0; i--) {
    const Node *n = &g->nodes[i];
    if (!need[i] || n->op == OP_STOP_GRADIENT) continue;
    for (int k = 0; k < n->nin; k++) need[n->in[k]] = 1;
  }
  for (int k = 0; k < nids; k++)
    if (need[ids[k]]) return 1;
  return 0;
}

static void check_section_loss(Parser *P, const TrainSection *sec) {
  if (sec->loss < 0 || !sec->nparams || loss_reaches(P->g, sec->loss, sec->params, sec->nparams, P->tmp)) return;
  diag_error(P->d, sec->loc, "the loss of section '%s' does not depend on its parameters (%s%s), so its step would "
             "change nothing", sec->name, P->g->nodes[sec->params[0]].name, sec->nparams > 1 ? ", ..." : "");
}

/* Every trainable parameter is some section's. */
static void check_covered(Parser *P) {
  const TrainSpec *t = &P->m->train;
  for (int i = 0; i < P->g->nnodes; i++) {
    const Node *n = &P->g->nodes[i];
    if (n->op != OP_PARAM || n->frozen || n->buffer || owner_of(t, t->nsections, i) >= 0) continue;
    diag_error(P->d, n->loc, "parameter '%s' is in no train section's params: add it to one, or freeze it", n->name);
    return;
  }
}

static int section_index(const TrainSpec *t, const char *name) {
  for (int i = 0; i < t->nsections; i++)
    if (!strcmp(t->sections[i].name, name)) return i;
  return -1;
}

/* order = alternate(NAME=K, ...): every section once, K >= 1 steps in a
 * row; the sections are put in that order. */
static void resolve_order(Parser *P, const Expr *e) {
  TrainSpec *t = &P->m->train;
  if (e->kind != EX_CALL || strcmp(e->name, "alternate") || e->nargs == 0) {
    diag_error(P->d, fe_loc(P, e->tok), "'order' is alternate(NAME=K, ...): each train section by name, with its "
               "steps in a row, e.g. alternate(discriminator=1, generator=1)");
    return;
  }
  TrainSection sorted[FE_MAX_SECTIONS];
  int n = 0, bad = 0;
  for (int k = 0; k < e->nargs; k++) {
    const Arg *a = &e->args[k];
    if (!a->key) {
      diag_error(P->d, fe_loc(P, a->val->tok), "each entry of alternate() is NAME=K, with NAME a train section");
      bad = 1;
      continue;
    }
    const char *name = fe_tokstr(P, a->key);
    int si = section_index(t, name);
    Value v = fe_eval_as(P, a->val, SK_INT, "a section's steps", NULL);
    if (si < 0) {
      Suggest sg;
      fe_suggest_init(&sg, name, P->d);
      for (int i = 0; i < t->nsections; i++) fe_suggest_add(&sg, t->sections[i].name);
      diag_error(P->d, fe_loc(P, a->key), "no train section named '%s'%s", name, fe_suggest_text(&sg));
      bad = 1;
    } else if (t->sections[si].repeat < 0) {
      diag_error(P->d, fe_loc(P, a->key), "section '%s' is named twice in the order", name);
      bad = 1;
    } else if (v.kind != V_ERR && (v.ival < 1 || v.ival > 1000)) {
      diag_error(P->d, fe_loc(P, a->val->tok), "a section takes 1 to 1000 steps in a row, not %lld", (long long)v.ival);
      bad = 1;
    } else if (v.kind != V_ERR) {
      sorted[n] = t->sections[si];
      sorted[n++].repeat = (int)v.ival;
      t->sections[si].repeat = -1;
    } else {
      bad = 1;
    }
  }
  for (int i = 0; i < t->nsections && !bad; i++)
    if (t->sections[i].repeat > 0) {
      diag_error(P->d, fe_loc(P, e->tok), "train section '%s' is not in the order, so it would never train",
                 t->sections[i].name);
      bad = 1;
    }
  if (!bad) memcpy(t->sections, sorted, sizeof(TrainSection) * (size_t)n);
}

/* Loss and optimizer belong to the named sections when there are some. */
static void check_unnamed(Parser *P) {
  const TrainSpec *t = &P->m->train;
  if (!t->nsections) {
    if (!P->unnamed_closed) return;
    if (!P->settings[SET_LOSS])
      diag_error(P->d, fe_loc(P, P->unnamed->tok), "the train section has no loss; add e.g. 'loss = "
                 "cross_entropy(logits, y)'");
    if (!P->settings[SET_OPTIMIZER])
      diag_error(P->d, fe_loc(P, P->unnamed->tok), "the train section has no optimizer; add e.g. 'optimizer = "
                 "sgd(lr=0.01)'");
    if (P->order)
      diag_error(P->d, fe_loc(P, P->order->tok), "'order' alternates named train sections, and the model has none");
    return;
  }
  for (int k = SET_LOSS; k <= SET_OPTIMIZER; k++)
    if (P->settings[k])
      diag_error(P->d, fe_loc(P, P->settings[k]), "with named train sections, each section has its own %s: move "
                 "this one into a 'train NAME { ... }' section", settings[k]);
}

void fe_train_finish(Parser *P) {
  TrainSpec *t = &P->m->train;
  if (!P->unnamed && !t->nsections) return;
  check_unnamed(P);
  if (!t->nsections) return;
  int before = P->d->nerrors;
  for (int i = 0; i < t->nsections; i++)
    if (P->sec_params[i]) resolve_params(P, i, P->sec_params[i]);
  if (P->d->nerrors != before) return;
  check_covered(P);
  for (int i = 0; i < t->nsections; i++) check_section_loss(P, &t->sections[i]);
  if (P->order) resolve_order(P, P->order);
}
