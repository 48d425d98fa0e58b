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
 */
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
};

/* Data augmentation, applied per mini-batch in training only. */
static const CallDef augmentations[] = {
    {"augment", {B("flip", "false"), I("crop", "0", CHK_NONNEG), F("noise", "0", CHK_NONNEG)}},
};

#define COUNT(a) (int)(sizeof a / sizeof a[0])

enum { SET_LOSS, SET_OPTIMIZER, SET_SCHEDULE, SET_DATA, SET_BATCH, SET_EPOCHS, SET_SEED, SET_VAL_SPLIT, SET_AUGMENT,
       SET_TARGET };
static const char *settings[] = {"loss", "optimizer", "schedule", "data", "batch", "epochs", "seed", "val_split", "augment",
                                 "target"};

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
  P->m->train.loss = id;
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
  const CallSpec *o = &P->m->train.optimizer;
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
  case SET_OPTIMIZER: set_call(P, &t->optimizer, s->value, "optimizer", optimizers, COUNT(optimizers)); break;
  case SET_SCHEDULE: set_call(P, &t->schedule, s->value, "schedule", schedules, COUNT(schedules)); break;
  case SET_DATA: set_call(P, &t->data, s->value, "data set", datasets, COUNT(datasets)); break;
  case SET_BATCH: set_int(P, s, "batch", 1, &t->batch); break;
  case SET_EPOCHS: set_int(P, s, "epochs", 1, &t->epochs); break;
  case SET_SEED: set_int(P, s, "seed", 0, &t->seed); break;
  case SET_VAL_SPLIT: set_val_split(P, s); break;
  case SET_AUGMENT: set_call(P, &t->augment, s->value, "augmentation", augmentations, COUNT(augmentations)); break;
  case SET_TARGET: set_target(P, s); break;
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
  if (!already_set(P, s->name, k)) run_setting(P, s, k);
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

int fe_train_begin(Parser *P, Stmt *s) {
  if (P->train) {
    diag_error(P->d, fe_loc(P, s->tok), "a model has one train section");
    diag_note(P->d, fe_loc(P, P->train->tok), "the first one is here");
    return -1;
  }
  P->train = s;
  P->m->train.present = 1;
  P->m->train.loc = fe_loc(P, s->tok);
  P->in_train = 1;
  return 0;
}

void fe_train_end(Parser *P, Stmt *s) {
  P->in_train = 0;
  if (!P->settings[SET_LOSS])
    diag_error(P->d, fe_loc(P, s->tok), "the train section has no loss; add e.g. 'loss = cross_entropy(logits, y)'");
  if (!P->settings[SET_OPTIMIZER])
    diag_error(P->d, fe_loc(P, s->tok), "the train section has no optimizer; add e.g. 'optimizer = sgd(lr=0.01)'");
  const TrainSpec *t = &P->m->train;
  check_optimizer(P);
  if (t->target < 0) check_no_target(P);
  else if (!is_label(t, t->target)) check_input_target(P, s);
}
