/*
 * build.c — from statements to the Graph.
 *
 * Evaluating an expression yields a Value: a tensor (a graph node), a
 * number, a string or a list of dimensions.  Numbers fold at compile time
 * and become rank-0 constants (ir_const) only where a tensor is needed, so
 * `x * 2` broadcasts and `dense(h, units * 2)` inside a block still gets an
 * integer.  Every error is reported where it is found and yields V_ERR;
 * anything computed from V_ERR is V_ERR again, silently, so one mistake
 * gives one message.
 *
 * Names live in scopes: the top level has one, and every block call gets a
 * fresh one holding its arguments (blocks see nothing else).  Parameters
 * are named by prefixes: the variable a layer or block call is assigned to
 * (or its `as NAME`), nested under the prefix of the enclosing block call
 * ("block1.fc.weight").  Every prefix is claimed once, so two calls can
 * never create parameters with the same name.
 *
 * A call resolves its name as a block, then a layer (layers.c), then a
 * primitive op of ops.def; a layer and an op may share a name (conv2d),
 * and then a second argument that is a tensor selects the op.  An op's
 * arguments are its tensor operands (positionally) followed by its
 * attributes, positionally or by keyword in the order of ir_attr_specs;
 * ir_op then runs the shape rule and reports shape errors itself.
 */
#include <stdlib.h>
#include <string.h>

#include "frontend/fe.h"

/* --- small helpers ----------------------------------------------------------- */

SrcLoc fe_loc(Parser *P, const Token *t) { return (SrcLoc){&P->m->src, t->line, t->col}; }

const char *fe_tokstr(Parser *P, const Token *t) {
  return arena_strndup(&P->g->arena, t->p, (size_t)t->len);
}

const char *fe_join(Parser *P, const char *prefix, const char *name) {
  if (!prefix) return NULL;
  if (!*prefix) return arena_strdup(&P->g->arena, name);
  return arena_printf(&P->g->arena, "%s.%s", prefix, name);
}

static Value val_err(void) { return (Value){V_ERR}; }

static Value val_tensor(int id) {
  Value v = {V_TENSOR};
  v.id = id;
  return v;
}

static Value val_num(double x, int is_int) {
  Value v = {V_NUM};
  v.num = x;
  v.is_int = is_int;
  v.ival = is_int ? (int64_t)x : 0;
  return v;
}

static Value val_int(int64_t i) {
  Value v = val_num((double)i, 1);
  v.ival = i;
  return v;
}

const char *fe_value_str(Parser *P, Value v, char *buf, size_t len) {
  char ty[128];
  switch (v.kind) {
  case V_TENSOR:
    snprintf(buf, len, "a tensor of type %s",
             ir_type_str(P->g, P->g->nodes[v.id].dtype, &P->g->nodes[v.id].shape, ty, sizeof ty));
    break;
  case V_NUM: snprintf(buf, len, v.is_int ? "%.0f" : "%g", v.num); break;
  case V_STR: snprintf(buf, len, "the string \"%.60s\"", v.str); break;
  case V_LIST: snprintf(buf, len, "a list"); break;
  case V_TUPLE: snprintf(buf, len, "%d values", v.nlist); break;
  case V_ERR: snprintf(buf, len, "an error"); break;
  }
  return buf;
}

/* --- scopes ------------------------------------------------------------------ */

static Var *scope_find(Scope *s, const char *name) {
  int i = fe_map_get(&s->index, name);
  return i < 0 ? NULL : &s->v[i];
}

Var *fe_lookup(Parser *P, const char *name) { return scope_find(P->frame->scope, name); }

static Var *scope_add(Parser *P, Scope *s, const char *name) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 4;   /* a block call's scope is small, and there can be many */
    Var *v = arena_alloc(P->tmp, (size_t)cap * sizeof *v);
    if (s->n) memcpy(v, s->v, (size_t)s->n * sizeof *v);
    s->v = v, s->cap = cap;
  }
  Var *v = &s->v[s->n];
  memset(v, 0, sizeof *v);
  v->name = arena_strdup(P->tmp, name);
  fe_map_put(&s->index, P->tmp, v->name, s->n++);
  return v;
}

/* 0 if name may be (re)defined here, else -1 after an error. */
static int check_rebind(Parser *P, Token *name) {
  char buf[128];
  snprintf(buf, sizeof buf, "%.*s", name->len, name->p);
  Var *v = fe_lookup(P, buf);
  if (!v || !v->what) return 0;
  diag_error(P->d, fe_loc(P, name), "'%s' is already defined as %s %s; inputs, labels and "
             "parameters cannot be redefined", buf, v->what[0] == 'i' ? "an" : "a", v->what);
  diag_note(P->d, fe_loc(P, v->tok), "'%s' is defined here", buf);
  return -1;
}

void fe_bind(Parser *P, Token *name, Value v, const char *what) {
  if (check_rebind(P, name)) return;
  const char *s = fe_tokstr(P, name);
  if (v.kind == V_TENSOR && !P->g->nodes[v.id].name && P->frame->prefix)
    P->g->nodes[v.id].name = fe_join(P, P->frame->prefix, s);
  Var *var = fe_lookup(P, s);
  if (!var) var = scope_add(P, P->frame->scope, s);
  var->v = v;
  var->tok = name;
  var->what = what;
}

void fe_poison(Parser *P, Token *name) {
  if (name->kind != TK_IDENT) return;
  const char *s = fe_tokstr(P, name);
  Var *v = fe_lookup(P, s);
  if (v && v->what) return;
  if (!v) v = scope_add(P, P->frame->scope, s);
  v->v = val_err();
  v->tok = name;
  if (P->in_train) fe_train_mark(P, name);
}

/* --- prefixes ------------------------------------------------------------------ */

int fe_claim_prefix(Parser *P, const char *full, Token *at) {
  int i = fe_map_get(&P->use_index, full);
  if (i >= 0) {
    diag_error(P->d, fe_loc(P, at), "the name '%s' is already used; each layer or block call "
               "and each parameter needs its own name", full);
    diag_note(P->d, fe_loc(P, P->uses[i].tok), "'%s' is first used here", full);
    return -1;
  }
  if (P->nuses == P->usecap) {
    P->usecap = P->usecap ? P->usecap * 2 : 32;
    Use *u = arena_alloc(P->tmp, (size_t)P->usecap * sizeof *u);
    if (P->nuses) memcpy(u, P->uses, (size_t)P->nuses * sizeof *u);
    P->uses = u;
  }
  fe_map_put(&P->use_index, P->tmp, full, P->nuses);
  P->uses[P->nuses++] = (Use){full, at};
  return 0;
}

/* The enclosing block call's prefix, or NULL after reporting (once per
 * call) that parameters are created at `at` in a block called without a
 * name. */
static const char *frame_prefix(Parser *P, Token *at) {
  Frame *f = P->frame;
  if (f->prefix) return f->prefix;
  while (f->up && !f->up->prefix) f = f->up;
  if (!f->reported) {
    f->reported = 1;
    diag_error(P->d, fe_loc(P, at), "this creates parameters, but the call of block '%s' has no name "
               "to prefix them with: assign the call directly (b = %s(...)) or add 'as NAME' to its "
               "statement", f->block->name, f->block->name);
  }
  return NULL;
}

/* Takes the statement's name for call e if e is the statement's value. */
static const char *take_name(Parser *P, Expr *e) {
  if (e != P->naming || P->named) return NULL;
  P->named = 1;
  char buf[128];
  snprintf(buf, sizeof buf, "%.*s", P->naming_tok->len, P->naming_tok->p);
  return buf[0] ? fe_join(P, P->frame->prefix, buf) : NULL;
}

const char *fe_call_prefix(Parser *P, Expr *e, const char *kind) {
  if (e != P->naming || P->named) {
    diag_error(P->d, fe_loc(P, e->tok), "%s '%s' creates parameters, so its call needs a name: "
               "assign it directly (fc = %s(...)) or add 'as NAME' to the statement", kind, e->name,
               e->name);
    return NULL;
  }
  if (!frame_prefix(P, e->tok)) {
    P->named = 1;
    return NULL;
  }
  const char *full = take_name(P, e);
  return full && fe_claim_prefix(P, full, P->naming_tok) == 0 ? full : NULL;
}

int fe_check_size(Parser *P, DType dt, const Shape *s, Token *at) {
  char msg[512];
  if (ir_size_check(P->g, dt, s, IR_SYMS_AS_ONE, msg, sizeof msg) == 0) return 0;
  diag_error(P->d, fe_loc(P, at), "%s", msg);
  return -1;
}

int fe_new_param(Parser *P, const char *fullname, const Shape *s, ParamInit init, Token *at) {
  if (fe_check_size(P, DT_F32, s, at)) return -1;
  int old = fe_map_get(&P->params, fullname);
  if (old >= 0) {
    const Graph *g = old < P->g->nnodes && P->g->nodes[old].op == OP_PARAM && !strcmp(P->g->nodes[old].name, fullname)
                         ? (const Graph *)P->g : P->model_g;   /* a scan body's params are mapped to the model's once built */
    diag_error(P->d, fe_loc(P, at), "a parameter named '%s' already exists", fullname);
    if (g) diag_note(P->d, g->nodes[old].loc, "'%s' is created here", fullname);
    return -1;
  }
  int id = ir_param(P->g, fullname, DT_F32, s, init, fe_loc(P, at));
  fe_map_put(&P->params, P->tmp, P->g->nodes[id].name, id);
  return id;
}

/* --- argument binding -------------------------------------------------------- */

static const char *sig_names(const SigParam *sig, int n, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < n && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "", sig[i].name);
  if (!n) snprintf(buf, len, "none");
  return buf;
}

static int bind_keyword(Parser *P, const char *callee, const char *noun, const SigParam *sig,
                        int nsig, const Arg *a, Expr **slots) {
  char key[64], names[256];
  snprintf(key, sizeof key, "%.*s", a->key->len, a->key->p);
  for (int k = 0; k < nsig; k++) {
    if (strcmp(sig[k].name, key) != 0) continue;
    if (slots[k]) {
      diag_error(P->d, fe_loc(P, a->key), "%s '%s' of %s is given twice", noun, key, callee);
      diag_note(P->d, fe_loc(P, slots[k]->tok), "'%s' is first given here", key);
      return -1;
    }
    slots[k] = a->val;
    return 0;
  }
  Suggest sg;
  fe_suggest_init(&sg, key, P->d);
  for (int k = 0; k < nsig; k++) fe_suggest_add(&sg, sig[k].name);
  if (sg.best)
    diag_error(P->d, fe_loc(P, a->key), "%s has no %s '%s'%s", callee, noun, key, fe_suggest_text(&sg));
  else
    diag_error(P->d, fe_loc(P, a->key), "%s has no %s '%s'; it takes: %s", callee, noun, key,
               sig_names(sig, nsig, names, sizeof names));
  return -1;
}

int fe_bind_args(Parser *P, const char *callee, const char *noun, Token *at, const SigParam *sig,
                 int nsig, const Arg *args, int nargs, Expr **slots) {
  char names[256];
  int bad = 0;
  for (int k = 0; k < nsig; k++) slots[k] = NULL;
  for (int i = 0; i < nargs; i++) {
    if (args[i].key) {
      bad |= bind_keyword(P, callee, noun, sig, nsig, &args[i], slots);
    } else if (i >= nsig) {
      diag_error(P->d, fe_loc(P, args[i].val->tok), "too many arguments to %s: it takes %d (%s)",
                 callee, nsig, sig_names(sig, nsig, names, sizeof names));
      return -1;
    } else {
      slots[i] = args[i].val;
    }
  }
  for (int k = 0; k < nsig && !bad; k++)
    if (!slots[k] && !sig[k].deflt) {
      diag_error(P->d, fe_loc(P, at), "%s needs the %s '%s'", callee, noun, sig[k].name);
      bad = 1;
    }
  return bad ? -1 : 0;
}

Value fe_default(const SigParam *sp) {
  const char *d = sp->deflt;
  switch (sp->kind) {
  case SK_INT:
  case SK_BOOL:
    if (strcmp(d, "max") == 0) return val_int(ATTR_MAX);
    if (strcmp(d, "true") == 0 || strcmp(d, "false") == 0) return val_int(d[0] == 't');
    return val_int(strtoll(d, NULL, 10));
  case SK_FLOAT: return val_num(strtod(d, NULL), 0);
  case SK_ENUM:
  case SK_STR: {
    Value v = {V_STR};
    v.str = d;
    return v;
  }
  case SK_LIST: {
    Value v = {V_LIST};
    v.nlist = -1;   /* "all" */
    return v;
  }
  case SK_TENSOR:
  case SK_ANY: break;
  }
  return val_err();
}

static int check_number(Parser *P, const SigParam *sp, const char *callee, Value v, Token *at) {
  static const char *need[] = {"", "positive", "zero or more", "in [0, 1)"};
  int ok = sp->check == CHK_NONE || (sp->check == CHK_POS && v.num > 0) ||
           (sp->check == CHK_NONNEG && v.num >= 0) || (sp->check == CHK_UNIT && v.num >= 0 && v.num < 1);
  if (ok) return 0;
  diag_error(P->d, fe_loc(P, at), "'%s' of %s must be %s, not %g", sp->name, callee, need[sp->check], v.num);
  return -1;
}

int fe_eval_args(Parser *P, const char *callee, const SigParam *sig, int nsig, Expr **slots,
                 Value *vals) {
  int bad = 0;
  for (int k = 0; k < nsig; k++) {
    if (!slots[k]) {
      vals[k] = fe_default(&sig[k]);
      continue;
    }
    char what[128];
    snprintf(what, sizeof what, "'%s' of %s", sig[k].name, callee);
    vals[k] = fe_eval_as(P, slots[k], sig[k].kind, what, sig[k].choices);
    if (vals[k].kind == V_ERR) bad = 1;
    else if (vals[k].kind == V_NUM && check_number(P, &sig[k], callee, vals[k], slots[k]->tok)) bad = 1;
  }
  return bad ? -1 : 0;
}

/* --- evaluation by kind --------------------------------------------------------- */

int fe_tensor(Parser *P, Expr *e, Value v) {
  char buf[160];
  switch (v.kind) {
  case V_TENSOR: return v.id;
  case V_NUM: return ir_const(P->g, v.num, fe_loc(P, e->tok));
  case V_ERR: return -1;
  case V_STR:
  case V_LIST: break;
  case V_TUPLE:
    diag_error(P->d, fe_loc(P, e->tok), "expected one tensor here, not %d values; assign them to as many names "
               "(a, b = ...)", v.nlist);
    return -1;
  }
  diag_error(P->d, fe_loc(P, e->tok), "expected a tensor here, not %s", fe_value_str(P, v, buf, sizeof buf));
  return -1;
}

static Value want_error(Parser *P, Expr *e, const char *what, const char *kind, Value v) {
  char buf[160];
  diag_error(P->d, fe_loc(P, e->tok), "%s must be %s, not %s", what, kind, fe_value_str(P, v, buf, sizeof buf));
  return val_err();
}

/* An ATTR_ENUM value: a bare name, a string, or a variable holding one. */
static Value eval_enum(Parser *P, Expr *e, const char *what, const char *choices) {
  const char *word = NULL;
  if (e->kind == EX_NAME) {
    Var *v = fe_lookup(P, e->name);
    word = v && v->v.kind == V_STR ? v->v.str : e->name;
  } else if (e->kind == EX_STR) {
    word = e->tok->bad ? NULL : e->name;
    if (!word) return val_err();
  } else {
    Value v = fe_eval(P, e);
    if (v.kind == V_ERR) return v;
    if (v.kind != V_STR) return want_error(P, e, what, "a name", v);
    word = v.str;
  }
  Suggest sg;
  fe_suggest_init(&sg, word, P->d);
  for (const char *c = choices; *c;) {
    size_t n = strcspn(c, "|");
    char opt[64];
    snprintf(opt, sizeof opt, "%.*s", (int)n, c);
    if (strcmp(opt, word) == 0) return (Value){V_STR, .str = word};
    fe_suggest_add(&sg, arena_strdup(P->tmp, opt));
    c += n + (c[n] == '|');
  }
  char list[128];
  snprintf(list, sizeof list, "%s", choices);
  for (char *c = list; *c; c++)
    if (*c == '|') *c = '/';
  diag_error(P->d, fe_loc(P, e->tok), "%s must be one of %s, not '%s'%s", what, list, word,
             fe_suggest_text(&sg));
  return val_err();
}

Value fe_eval_as(Parser *P, Expr *e, SigKind k, const char *what, const char *choices) {
  if (k == SK_ENUM) return eval_enum(P, e, what, choices);
  Value v = fe_eval(P, e);
  if (v.kind == V_ERR) return v;
  switch (k) {
  case SK_TENSOR: {
    int id = fe_tensor(P, e, v);
    return id < 0 ? val_err() : val_tensor(id);
  }
  case SK_INT:
    return v.kind == V_NUM && v.is_int ? v : want_error(P, e, what, "an integer", v);
  case SK_FLOAT:
    return v.kind == V_NUM ? v : want_error(P, e, what, "a number", v);
  case SK_BOOL:
    return v.kind == V_NUM && v.is_int && (v.ival == 0 || v.ival == 1) ? v
                                                                       : want_error(P, e, what, "true or false", v);
  case SK_LIST:
    if (v.kind == V_NUM && v.is_int) {
      Value l = {V_LIST};
      l.nlist = 1;
      l.list[0] = v.ival;
      return l;
    }
    return v.kind == V_LIST ? v : want_error(P, e, what, "a list such as [N, 784]", v);
  case SK_STR:
    return v.kind == V_STR ? v : want_error(P, e, what, "a string", v);
  case SK_ENUM:
  case SK_ANY: break;
  }
  return v;
}

/* --- expressions ----------------------------------------------------------------- */

static Value eval_number(Parser *P, Expr *e) {
  Token *t = e->tok;
  if (t->bad) return val_err();
  if (t->kind == TK_KEYWORD) return val_int(lex_is(t, "true"));
  if (t->kind == TK_INT) return val_int(t->ival);
  return val_num(t->fval, 0);
}

static int is_function(const char *name) {
  int op = ir_op_lookup(name);
  return (op >= 0 && !(ir_ops[op].flags & (OPF_SOURCE | OPF_INTERNAL))) || fe_layer_lookup(name);
}

static const BlockDef *find_block(Parser *P, const char *name) {
  int i = fe_map_get(&P->block_index, name);
  return i < 0 ? NULL : &P->blocks[i];
}

const BlockDef *fe_find_block(Parser *P, const char *name) { return find_block(P, name); }

static Value unknown_name(Parser *P, Expr *e) {
  SrcLoc loc = fe_loc(P, e->tok);
  if (is_function(e->name) || find_block(P, e->name)) {
    diag_error(P->d, loc, "'%s' is a function, not a value; call it: %s(...)", e->name, e->name);
  } else if (ir_symbol_find(P->g, e->name) >= 0) {
    diag_error(P->d, loc, "'%s' is a dimension symbol, not a value", e->name);
  } else if (P->frame->up && scope_find(&P->top, e->name)) {
    diag_error(P->d, loc, "unknown name '%s' in block '%s'; a block sees only its parameters and its "
               "own names, so pass '%s' as an argument", e->name, P->frame->block->name, e->name);
  } else {
    Suggest sg;
    fe_suggest_init(&sg, e->name, P->d);
    for (int i = P->frame->scope->n - 1; i >= 0 && !sg.off; i--) fe_suggest_add(&sg, P->frame->scope->v[i].name);
    diag_error(P->d, loc, "unknown name '%s'%s", e->name, fe_suggest_text(&sg));
  }
  return val_err();
}

/* Suggests the names of sg's kind under prefix (".": no prefix) among the
 * claimed layer and block prefixes (params 0) or the parameters. */
static void suggest_under(Parser *P, Suggest *sg, const char *prefix, int params) {
  size_t n = strlen(prefix);
  int count = params ? P->g->nnodes : P->nuses;
  for (int i = 0; i < count && !sg->off; i++) {
    const char *name = params ? (P->g->nodes[i].op == OP_PARAM ? P->g->nodes[i].name : NULL) : P->uses[i].name;
    if (name && !n) fe_suggest_add(sg, name);
    else if (name && strncmp(name, prefix, n) == 0 && name[n] == '.') fe_suggest_add(sg, name + n + 1);
  }
}

/* OWNER.PARAM that is no parameter: an unknown layer or block, or an
 * unknown parameter of a known one. */
static Value unknown_param(Parser *P, Expr *e, const char *full) {
  const char *dot = strrchr(e->name, '.');
  const char *owner = arena_strndup(&P->g->arena, e->name, (size_t)(dot - e->name));
  const char *owner_full = arena_strndup(&P->g->arena, full, strlen(full) - strlen(dot));
  const char *prefix = P->frame->prefix;
  Suggest sg;
  if (fe_map_get(&P->use_index, owner_full) < 0) {
    fe_suggest_init(&sg, owner, P->d);
    suggest_under(P, &sg, *prefix ? prefix : "", 0);
    diag_error(P->d, fe_loc(P, e->tok), "unknown layer '%s' in '%s'%s", owner, e->name, fe_suggest_text(&sg));
  } else {
    fe_suggest_init(&sg, dot + 1, P->d);
    suggest_under(P, &sg, owner_full, 1);
    diag_error(P->d, fe_loc(P, e->tok), "'%s' has no parameter '%s'%s", owner, dot + 1, fe_suggest_text(&sg));
  }
  return val_err();
}

/* LAYER.PARAM: the parameter a layer or block call of this scope made,
 * itself (the same node, so every use shares its storage and gradient). */
static Value eval_param_ref(Parser *P, Expr *e) {
  const char *full = fe_join(P, P->frame->prefix, e->name);
  if (!full) {
    diag_error(P->d, fe_loc(P, e->tok), "'%s' names a parameter, but this block call has no name (write "
               "NAME = %s(...))", e->name, P->frame->block->name);
    return val_err();
  }
  int id = fe_map_get(&P->params, full);
  return id >= 0 ? val_tensor(id) : unknown_param(P, e, full);
}

static Value eval_name(Parser *P, Expr *e) {
  Var *v = fe_lookup(P, e->name);
  if (v) return v->v;
  return strchr(e->name, '.') ? eval_param_ref(P, e) : unknown_name(P, e);
}

/* Integer arithmetic on constants, checked: an overflow is an error, never
 * a wrapped size. */
static Value fold_int(Parser *P, Expr *e, int64_t a, int64_t b) {
  int64_t r;
  int over = e->op == OP_ADD ? ir_ckd_add(&r, a, b) : e->op == OP_SUB ? ir_ckd_sub(&r, a, b) : ir_ckd_mul(&r, a, b);
  if (!over) return val_int(r);
  diag_error(P->d, fe_loc(P, e->tok), "integer overflow: %lld %c %lld does not fit in 64 bits", (long long)a,
             e->op == OP_ADD ? '+' : e->op == OP_SUB ? '-' : '*', (long long)b);
  return val_err();
}

static Value fold(Parser *P, Expr *e, Value a, Value b) {
  int ints = a.is_int && b.is_int;
  if (ints && (e->op == OP_ADD || e->op == OP_SUB || e->op == OP_MUL)) return fold_int(P, e, a.ival, b.ival);
  if (e->op == OP_ADD) return val_num(a.num + b.num, 0);
  if (e->op == OP_SUB) return val_num(a.num - b.num, 0);
  if (e->op == OP_MUL) return val_num(a.num * b.num, 0);
  if (e->op == OP_DIV) {
    if (b.num != 0) return val_num(a.num / b.num, 0);
    diag_error(P->d, fe_loc(P, e->tok), "division by zero");
    return val_err();
  }
  diag_error(P->d, fe_loc(P, e->tok), "'@' multiplies tensors, but both operands are numbers");
  return val_err();
}

/* e applied to a, the value of its left operand. */
static Value apply_binary(Parser *P, Expr *e, Value a) {
  Value b = fe_eval(P, e->rhs);
  if (a.kind == V_ERR || b.kind == V_ERR) return val_err();
  if (a.kind == V_NUM && b.kind == V_NUM) return fold(P, e, a, b);
  int in[2] = {fe_tensor(P, e->lhs, a), fe_tensor(P, e->rhs, b)};
  if (in[0] < 0 || in[1] < 0) return val_err();
  int id = ir_op(P->g, e->op, in, 2, NULL, fe_loc(P, e->tok));
  return id < 0 ? val_err() : val_tensor(id);
}

/* A chain such as x + x + ... + x parses into a left spine of any length
 * (the parser counts only nesting), so it is evaluated with a loop, never
 * with one level of recursion per operator: the spine is walked down to
 * its first operand, then applied upward.  Only the right operands recurse,
 * and their depth is the nesting the parser limits. */
static Value eval_binary(Parser *P, Expr *e) {
  int n = 0;
  for (Expr *x = e; x->kind == EX_BINARY; x = x->lhs) n++;
  Expr **spine = arena_alloc(P->tmp, (size_t)n * sizeof *spine);
  Expr *x = e;
  for (int i = n - 1; i >= 0; i--, x = x->lhs) spine[i] = x;
  Value v = fe_eval(P, x);
  for (int i = 0; i < n && !fe_halt(P, spine[i]->tok); i++) v = apply_binary(P, spine[i], v);
  return P->halted ? val_err() : v;
}

static Value eval_neg(Parser *P, Expr *e) {
  Value a = fe_eval(P, e->lhs);
  if (a.kind == V_ERR) return a;
  if (a.kind == V_NUM && a.is_int && a.ival == INT64_MIN) {
    diag_error(P->d, fe_loc(P, e->tok), "integer overflow: -(%lld) does not fit in 64 bits", (long long)a.ival);
    return val_err();
  }
  if (a.kind == V_NUM) return a.is_int ? val_int(-a.ival) : val_num(-a.num, 0);
  int in = fe_tensor(P, e->lhs, a);
  if (in < 0) return val_err();
  int id = ir_op(P->g, OP_NEG, &in, 1, NULL, fe_loc(P, e->tok));
  return id < 0 ? val_err() : val_tensor(id);
}

/* A list entry: an integer, or a name of a number or a dimension symbol. */
static int eval_list_item(Parser *P, Expr *e, Value *l) {
  int i = l->nlist;
  if (e->kind == EX_NAME && !fe_lookup(P, e->name)) {
    int s = ir_symbol_find(P->g, e->name);
    if (s >= 0) {
      l->list[i] = s, l->sym[i] = 1, l->nlist++;
      return 0;
    }
    Suggest sg;
    fe_suggest_init(&sg, e->name, P->d);
    for (int k = 0; k < P->g->nsyms; k++) fe_suggest_add(&sg, P->g->syms[k].name);
    diag_error(P->d, fe_loc(P, e->tok), "unknown dimension '%s'%s", e->name, fe_suggest_text(&sg));
    return -1;
  }
  Value v = fe_eval_as(P, e, SK_INT, "a list entry", NULL);
  if (v.kind == V_ERR) return -1;
  l->list[i] = v.ival, l->sym[i] = 0, l->nlist++;
  return 0;
}

static Value eval_list(Parser *P, Expr *e) {
  Value l = {V_LIST};
  if (e->nargs > IR_MAX_LIST) {
    diag_error(P->d, fe_loc(P, e->args[IR_MAX_LIST].val->tok), "a list has at most %d entries", IR_MAX_LIST);
    return val_err();
  }
  int bad = 0;
  for (int i = 0; i < e->nargs; i++) bad |= eval_list_item(P, e->args[i].val, &l);
  return bad ? val_err() : l;
}

static Value eval_string(Parser *P, Expr *e) {
  if (e->tok->bad) return val_err();
  Value v = {V_STR};
  v.str = arena_strdup(&P->g->arena, e->name);
  return v;
}

static Value eval_call(Parser *P, Expr *e);

Value fe_tuple(int n, const int *ids) {
  Value v = {V_TUPLE};
  v.nlist = n;
  for (int i = 0; i < n; i++) v.list[i] = ids[i];
  return v;
}

/* A block's `return a, b`: every value a tensor. */
static Value eval_tuple(Parser *P, Expr *e) {
  int ids[IR_MAX_LIST], bad = 0;
  if (e->nargs > IR_MAX_LIST) {
    diag_error(P->d, fe_loc(P, e->tok), "a block returns at most %d values", IR_MAX_LIST);
    return val_err();
  }
  for (int i = 0; i < e->nargs; i++) {
    ids[i] = fe_tensor(P, e->args[i].val, fe_eval(P, e->args[i].val));
    bad |= ids[i] < 0;
  }
  return bad ? val_err() : fe_tuple(e->nargs, ids);
}

Value fe_eval(Parser *P, Expr *e) {
  switch (e->kind) {
  case EX_NUM: return eval_number(P, e);
  case EX_STR: return eval_string(P, e);
  case EX_NAME: return eval_name(P, e);
  case EX_BINARY: return eval_binary(P, e);
  case EX_NEG: return eval_neg(P, e);
  case EX_LIST: return eval_list(P, e);
  case EX_TUPLE: return eval_tuple(P, e);
  case EX_CALL: return eval_call(P, e);
  }
  return val_err();
}

/* --- calls of primitive ops ---------------------------------------------------------- */

static SigKind sig_kind(AttrKind k) {
  switch (k) {
  case ATTR_FLOAT: return SK_FLOAT;
  case ATTR_INT: return SK_INT;
  case ATTR_BOOL: return SK_BOOL;
  case ATTR_LIST: return SK_LIST;
  case ATTR_ENUM: return SK_ENUM;
  }
  return SK_ANY;
}

/* "softmax(x, axis=-1)": how an op is called, for messages. */
static const char *op_usage(OpKind op, char *buf, size_t len) {
  const OpInfo *oi = &ir_ops[op];
  size_t at = (size_t)snprintf(buf, len, "%s(", oi->name);
  for (int i = 0; i < oi->min_in && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, oi->min_in == 1 ? "%sx" : "%sx%d", i ? ", " : "", i + 1);
  if (oi->max_in < 0 && at < len) at += (size_t)snprintf(buf + at, len - at, ", ...");
  for (int i = oi->min_in; i < oi->max_in && !(oi->flags & OPF_RANDOM) && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "[, x%d]", i + 1);
  AttrSpec sp[8];
  int n = ir_attr_specs(op, sp, 8);
  for (int k = 0; k < n && at < len; k++) {
    at += (size_t)snprintf(buf + at, len - at, ", %s", sp[k].name);
    if (sp[k].deflt && at < len) at += (size_t)snprintf(buf + at, len - at, "=%.*s", (int)strcspn(sp[k].deflt, " "), sp[k].deflt);
  }
  if (at < len) snprintf(buf + at, len - at, ")");
  return buf;
}

/* Is argument e (past the required operands) another tensor operand?  A
 * dotted name (fc1.bias) names a layer's parameter, always a tensor: it is
 * counted as an operand whether or not the layer exists, so a misspelt one
 * gets eval_param_ref's message, not "too many arguments". */
static int is_operand_expr(Parser *P, Expr *e) {
  switch (e->kind) {
  case EX_CALL: case EX_BINARY: return 1;
  case EX_NEG: return is_operand_expr(P, e->lhs);
  case EX_NAME: {
    Var *v = fe_lookup(P, e->name);
    return v ? v->v.kind == V_TENSOR : strchr(e->name, '.') != NULL;
  }
  case EX_NUM: case EX_STR: case EX_LIST: case EX_TUPLE: return 0;
  }
  return 0;
}

/* How many of e's arguments are tensor operands. */
static int count_operands(Parser *P, OpKind op, Expr *e, int *npos) {
  const OpInfo *oi = &ir_ops[op];
  int n = 0;
  while (n < e->nargs && !e->args[n].key) n++;
  *npos = n;
  int nops = n < oi->min_in ? n : oi->min_in;
  int max = oi->flags & OPF_RANDOM ? oi->min_in : oi->max_in; /* the step operand is the compiler's */
  while (nops < n && (max < 0 || nops < max) && is_operand_expr(P, e->args[nops].val)) nops++;
  return nops;
}

/* Converts a list value for attribute name of op into dims. */
static int list_dims(Parser *P, OpKind op, Expr *e, Value v, Dim *out) {
  int shape = op == OP_RAND || op == OP_RANDN; /* a result shape: symbols, positive extents */
  for (int i = 0; i < v.nlist; i++) {
    if (shape && !v.sym[i] && v.list[i] <= 0) {
      diag_error(P->d, fe_loc(P, e->tok), "%s: dimension %lld of the shape must be positive", ir_ops[op].name,
                 (long long)v.list[i]);
      return -1;
    }
    if (v.sym[i] && op != OP_RESHAPE && !shape) {
      diag_error(P->d, fe_loc(P, e->tok), "%s takes axes as integers, not the dimension symbol '%s'",
                 ir_ops[op].name, P->g->syms[v.list[i]].name);
      return -1;
    }
    out[i] = v.sym[i] ? DIM_SYM(v.list[i]) : v.list[i];
    if (op == OP_RESHAPE && !v.sym[i] && v.list[i] == -1) out[i] = DIM_INFER;
    else if (op == OP_RESHAPE && !v.sym[i] && v.list[i] <= 0) {
      diag_error(P->d, fe_loc(P, e->tok), "reshape: dimension %lld of the target shape must be "
                 "positive, or -1 to infer it", (long long)v.list[i]);
      return -1;
    }
  }
  return 0;
}

static int set_attr(Parser *P, OpKind op, Attrs *a, const SigParam *sp, Expr *e, Value v) {
  Dim dims[IR_MAX_LIST];
  int max = ir_attr_list_max(op, sp->name);
  switch (sp->kind) {
  case SK_FLOAT: return ir_attr_set_float(a, op, sp->name, v.num);
  case SK_INT: case SK_BOOL: return ir_attr_set_int(a, op, sp->name, v.ival);
  case SK_ENUM: return ir_attr_set_enum(a, op, sp->name, v.str);
  case SK_LIST:
    if (v.nlist < 0) return 0;
    if (v.nlist > max) {
      diag_error(P->d, fe_loc(P, e->tok), "'%s' of %s takes at most %d entries, not %d", sp->name, ir_ops[op].name,
                 max, v.nlist);
      return -1;
    }
    if (list_dims(P, op, e, v, dims)) return -1;
    return ir_attr_set_list(a, op, sp->name, dims, v.nlist);
  case SK_TENSOR: case SK_STR: case SK_ANY: break;
  }
  return -1;
}

static int op_arity_ok(Parser *P, OpKind op, Expr *e, int npos, int nops, int nattrs) {
  char use[160];
  if (nops < ir_ops[op].min_in) {
    diag_error(P->d, fe_loc(P, e->tok), "too few tensor operands for %s: %d given, it is called as %s",
               ir_ops[op].name, nops, op_usage(op, use, sizeof use));
    return 0;
  }
  if (npos - nops > nattrs) {
    diag_error(P->d, fe_loc(P, e->args[nops + nattrs].val->tok), "too many arguments to %s: it is "
               "called as %s", ir_ops[op].name, op_usage(op, use, sizeof use));
    return 0;
  }
  return 1;
}

static Value call_op(Parser *P, OpKind op, Expr *e) {
  AttrSpec specs[8];
  SigParam sig[8];
  int ns = ir_attr_specs(op, specs, 8), npos, nops = count_operands(P, op, e, &npos);
  for (int k = 0; k < ns; k++)
    sig[k] = (SigParam){specs[k].name, sig_kind(specs[k].kind), specs[k].deflt, specs[k].choices, CHK_NONE};
  Expr *slots[8];
  if (!op_arity_ok(P, op, e, npos, nops, ns) ||
      fe_bind_args(P, ir_ops[op].name, "attribute", e->tok, sig, ns, e->args + nops, e->nargs - nops, slots))
    return val_err();
  if (nops > 64) {
    diag_error(P->d, fe_loc(P, e->tok), "%s takes at most 64 operands", ir_ops[op].name);
    return val_err();
  }
  int in[64], bad = 0;
  for (int i = 0; i < nops; i++) {
    Value v = fe_eval_as(P, e->args[i].val, SK_TENSOR, "an operand", NULL);
    in[i] = v.kind == V_TENSOR ? v.id : -1;
    bad |= in[i] < 0;
  }
  Value vals[8];
  bad |= fe_eval_args(P, ir_ops[op].name, sig, ns, slots, vals) != 0;
  Attrs a = ir_attrs_default(op);
  for (int k = 0; k < ns && !bad; k++)
    if (slots[k] && set_attr(P, op, &a, &sig[k], slots[k], vals[k])) bad = 1;
  if (bad) return val_err();
  int id = ir_op(P->g, op, in, nops, &a, fe_loc(P, e->tok));
  return id < 0 ? val_err() : val_tensor(id);
}

/* --- calls of blocks ------------------------------------------------------------------ */

static int check_recursion(Parser *P, const BlockDef *b, Expr *e) {
  int depth = P->frame->depth;
  const Frame *f = P->frame;
  while (f && f->block != b) f = f->up;
  if (!f && depth < FE_MAX_EXPANSION) return 0;
  char via[256] = "";
  for (const Frame *g = P->frame; f && g != f; g = g->up)
    snprintf(via + strlen(via), sizeof via - strlen(via), "%s'%s'", via[0] ? ", " : " through ", g->block->name);
  if (f)
    diag_error(P->d, fe_loc(P, e->tok), "block '%s' calls itself%s; blocks are expanded where they "
               "are called, so they cannot be recursive", b->name, via);
  else
    diag_error(P->d, fe_loc(P, e->tok), "block calls nested more than %d deep", FE_MAX_EXPANSION);
  return -1;   /* call_block adds "in block ... called here" notes outward */
}

static Value run_block(Parser *P, const BlockDef *b, Frame *fr, const Value *args) {
  Scope sc = {0};
  fr->scope = &sc;
  Frame *saved = P->frame;
  Expr *naming = P->naming;
  Token *naming_tok = P->naming_tok;
  int named = P->named;
  P->frame = fr;
  for (int i = 0; i < b->def->nparams; i++) fe_bind(P, b->def->params[i], args[i], NULL);
  Value ret = val_err();
  for (Stmt *s = b->def->body; s && !P->halted; s = s->next) {
    if (s->kind != ST_RETURN) {
      fe_exec_stmt(P, s);
      continue;
    }
    P->naming = NULL;   /* a layer call in a return has no name */
    ret = fe_eval(P, s->value);
  }
  P->frame = saved;
  P->naming = naming, P->naming_tok = naming_tok, P->named = named;
  return ret;
}

int fe_halt(Parser *P, Token *at) {
  if (P->halted) return 1;
  const char *what = P->g->nnodes > FE_MAX_NODES ? "graph nodes" : P->ncalls > FE_MAX_BLOCK_CALLS ? "block calls" : NULL;
  if (!what) return 0;
  P->halted = 1;
  diag_error(P->d, fe_loc(P, at), "the model is too large: more than %d %s (the limit of one model); "
             "blocks are expanded at every call, so calls of calls multiply",
             what[0] == 'g' ? FE_MAX_NODES : FE_MAX_BLOCK_CALLS, what);
  return 1;
}

static Value call_block(Parser *P, const BlockDef *b, Expr *e) {
  if (b->def->broken) return val_err();
  P->ncalls++;
  if (fe_halt(P, e->tok) || check_recursion(P, b, e)) return val_err();
  SigParam sig[FE_MAX_ARGS];
  Expr *slots[FE_MAX_ARGS];
  Value args[FE_MAX_ARGS];
  int n = b->def->nparams;
  for (int i = 0; i < n; i++) sig[i] = (SigParam){fe_tokstr(P, b->def->params[i]), SK_ANY, NULL, NULL, CHK_NONE};
  char callee[96];
  snprintf(callee, sizeof callee, "block '%s'", b->name);
  if (fe_bind_args(P, callee, "parameter", e->tok, sig, n, e->args, e->nargs, slots) ||
      fe_eval_args(P, callee, sig, n, slots, args))
    return val_err();
  return fe_expand_block(P, b, e, args);
}

Value fe_expand_block(Parser *P, const BlockDef *b, Expr *e, const Value *args) {
  Frame fr = {0};
  fr.block = b;
  fr.call = e->tok;
  fr.up = P->frame;
  fr.depth = P->frame->depth + 1;
  fr.prefix = P->frame->prefix ? take_name(P, e) : NULL;
  if (fr.prefix && fe_claim_prefix(P, fr.prefix, P->naming_tok)) return val_err();
  int before = P->d->nerrors;
  Value v = run_block(P, b, &fr, args);
  if (P->d->nerrors > before) diag_note(P->d, fe_loc(P, e->tok), "in block '%s' called here", b->name);
  return v;
}

static Value unknown_function(Parser *P, Expr *e) {
  int op = ir_op_lookup(e->name);
  if (op >= 0 && !(ir_ops[op].flags & OPF_INTERNAL)) {
    diag_error(P->d, fe_loc(P, e->tok), "'%s' cannot be called; %s", e->name,
               op == OP_CONST ? "write the number itself"
                              : "declare it with a statement such as 'input x: f32[N, 4]'");
    return val_err();
  }
  Suggest sg;
  fe_suggest_init(&sg, e->name, P->d);
  for (int i = 0; i < OP_COUNT; i++)
    if (!(ir_ops[i].flags & (OPF_SOURCE | OPF_INTERNAL))) fe_suggest_add(&sg, ir_ops[i].name);
  for (int i = 0; i < fe_layer_count(); i++) fe_suggest_add(&sg, fe_layer_at(i)->name);
  for (int i = 0; i < P->nblocks && !sg.off; i++) fe_suggest_add(&sg, P->blocks[i].name);
  diag_error(P->d, fe_loc(P, e->tok), "unknown function '%s'%s", e->name, fe_suggest_text(&sg));
  return val_err();
}

/* A layer named like an op (conv2d) takes sizes after its input; a call
 * whose second argument is a tensor is the op: conv2d(x, w, b, stride=2). */
static int calls_the_op(Parser *P, Expr *e) {
  int op = ir_op_lookup(e->name);
  return op >= 0 && !(ir_ops[op].flags & (OPF_SOURCE | OPF_INTERNAL)) && e->nargs >= 2 && !e->args[1].key &&
         is_operand_expr(P, e->args[1].val);
}

static Value eval_call(Parser *P, Expr *e) {
  if (strcmp(e->name, "scan") == 0) return fe_call_scan(P, e); /* scan.c */
  const BlockDef *b = find_block(P, e->name);
  if (b) return call_block(P, b, e);
  if (fe_recurrent_layer(e->name) >= 0) return fe_call_recurrent(P, fe_recurrent_layer(e->name), e); /* rnn.c */
  const LayerDef *l = fe_layer_lookup(e->name);
  if (l && !calls_the_op(P, e)) return fe_call_layer(P, l, e);
  int op = ir_op_lookup(e->name);
  if (op >= 0 && !(ir_ops[op].flags & (OPF_SOURCE | OPF_INTERNAL))) return call_op(P, op, e);
  return unknown_function(P, e);
}

/* --- block definitions ---------------------------------------------------------------- */

static int check_block_body(Parser *P, Stmt *s) {
  Stmt *ret = NULL;
  for (Stmt *t = s->body; t; t = t->next) {
    if (ret) {
      diag_error(P->d, fe_loc(P, t->tok), "statement after 'return' in block '%.*s'", s->name->len, s->name->p);
      return -1;
    }
    if (t->kind == ST_RETURN) ret = t;
  }
  if (!ret && !s->broken) {
    diag_error(P->d, fe_loc(P, s->name), "block '%.*s' has no 'return'; a block returns one value",
               s->name->len, s->name->p);
    return -1;
  }
  for (int i = 0; i < s->nparams; i++)
    for (int j = 0; j < i; j++)
      if (s->params[i]->len == s->params[j]->len && !strncmp(s->params[i]->p, s->params[j]->p, (size_t)s->params[i]->len)) {
        diag_error(P->d, fe_loc(P, s->params[i]), "parameter '%.*s' appears twice", s->params[i]->len, s->params[i]->p);
        return -1;
      }
  return 0;
}

static int check_block_name(Parser *P, Stmt *s, const char *name) {
  const BlockDef *old = find_block(P, name);
  if (old) {
    diag_error(P->d, fe_loc(P, s->name), "block '%s' is already defined", name);
    diag_note(P->d, fe_loc(P, old->def->name), "the first definition is here");
    return -1;
  }
  if (is_function(name) || ir_op_lookup(name) >= 0) {
    diag_error(P->d, fe_loc(P, s->name), "a block cannot be named '%s': that is the name of %s",
               name, fe_layer_lookup(name) ? "a layer" : "an op");
    return -1;
  }
  return 0;
}

void fe_define_block(Parser *P, Stmt *s) {
  const char *name = fe_tokstr(P, s->name);
  if (check_block_name(P, s, name)) return;
  if (check_block_body(P, s)) s->broken = 1;
  if (P->nblocks == P->blockcap) {
    P->blockcap = P->blockcap ? P->blockcap * 2 : 8;
    BlockDef *v = arena_alloc(P->tmp, (size_t)P->blockcap * sizeof *v);
    if (P->nblocks) memcpy(v, P->blocks, (size_t)P->nblocks * sizeof *v);
    P->blocks = v;
  }
  fe_map_put(&P->block_index, P->tmp, name, P->nblocks);
  P->blocks[P->nblocks++] = (BlockDef){name, s};
}

/* --- declarations ------------------------------------------------------------------ */

static int parse_dtype(Parser *P, Token *t, int param, DType *dt) {
  static const char *names[] = {"f32", "i32", "i64"};
  static const DType types[] = {DT_F32, DT_I32, DT_I64};
  char buf[32];
  snprintf(buf, sizeof buf, "%.*s", t->len > 20 ? 20 : t->len, t->p);
  for (int i = 0; i < (param ? 1 : 3); i++)
    if (strcmp(buf, names[i]) == 0) return *dt = types[i], 0;
  if (param && (strcmp(buf, "i32") == 0 || strcmp(buf, "i64") == 0)) {
    diag_error(P->d, fe_loc(P, t), "parameters must be f32, not %s", buf);
    return -1;
  }
  if (strcmp(buf, "f64") == 0 || strcmp(buf, "u8") == 0) {
    diag_error(P->d, fe_loc(P, t), "type %s is not supported here; use f32, i32 or i64", buf);
    return -1;
  }
  Suggest sg;
  fe_suggest_init(&sg, buf, P->d);
  for (int i = 0; i < 3; i++) fe_suggest_add(&sg, names[i]);
  diag_error(P->d, fe_loc(P, t), "unknown type '%s'%s", buf,
             sg.best ? fe_suggest_text(&sg) : "; the types are f32, i32 and i64");
  return -1;
}

/* A dimension: an integer, a name holding one, or a symbol (inputs only). */
static int parse_dim(Parser *P, Token *t, int param, Dim *d) {
  if (t->kind == TK_INT) {
    if (t->bad) return -1;
    if (t->ival > 0) return *d = t->ival, 0;
    diag_error(P->d, fe_loc(P, t), "a dimension must be positive, not %lld", (long long)t->ival);
    return -1;
  }
  char name[64];
  snprintf(name, sizeof name, "%.*s", t->len > 60 ? 60 : t->len, t->p);
  Var *v = fe_lookup(P, name);
  if (v && v->v.kind == V_ERR) return -1;
  if (v && v->v.kind == V_NUM && v->v.is_int && v->v.ival > 0) return *d = v->v.ival, 0;
  if (v) {
    char buf[160];
    diag_error(P->d, fe_loc(P, t), "dimension '%s' must be a positive integer, not %s", name,
               fe_value_str(P, v->v, buf, sizeof buf));
    return -1;
  }
  if (param) {
    diag_error(P->d, fe_loc(P, t), "a parameter's shape must be constant; '%s' is %s", name,
               ir_symbol_find(P->g, name) >= 0 ? "a dimension symbol" : "not a known number");
    return -1;
  }
  int s = ir_symbol(P->g, name, fe_loc(P, t));
  if (s < 0) {
    diag_error(P->d, fe_loc(P, t), "too many dimension symbols (at most %d)", IR_MAX_SYMS);
    return -1;
  }
  return *d = DIM_SYM(s), 0;
}

static int parse_shape(Parser *P, Stmt *s, int param, Shape *sh) {
  sh->rank = s->ndims;
  int bad = 0;
  for (int i = 0; i < s->ndims; i++) bad |= parse_dim(P, s->dims[i], param, &sh->d[i]);
  return bad ? -1 : 0;
}

/* `= randn` or `= rand` after an input's type: NOISE_*, or -1 after an
 * error.  Only an f32 input is fed with noise, and never a label. */
static int input_noise(Parser *P, Stmt *s, const char *what, DType dt) {
  if (!s->value) return NOISE_NONE;
  const Expr *e = s->value;
  int kind = e->kind == EX_NAME && !strcmp(e->name, "randn") ? NOISE_RANDN
             : e->kind == EX_NAME && !strcmp(e->name, "rand") ? NOISE_RAND : -1;
  if (strcmp(what, "input") != 0) {
    diag_error(P->d, fe_loc(P, e->tok), "a %s takes its values from the data set; only an input is fed with noise "
               "('input z: f32[N, 64] = randn')", what);
    return -1;
  }
  if (kind < 0) {
    diag_error(P->d, fe_loc(P, e->tok), "an input's '=' says what training feeds it: 'randn' (standard normal) or "
               "'rand' (uniform in [0, 1)), not %s", e->kind == EX_NAME ? e->name : "an expression");
    return -1;
  }
  if (dt != DT_F32) {
    diag_error(P->d, fe_loc(P, s->dtype), "an input fed with noise is f32, not %s", rt_dtype_name(dt));
    return -1;
  }
  return kind;
}

int fe_declare_input(Parser *P, Stmt *s, const char *what) {
  DType dt;
  Shape sh;
  if (check_rebind(P, s->name)) return -1;
  int bad = parse_dtype(P, s->dtype, 0, &dt);
  bad |= parse_shape(P, s, 0, &sh);
  if (!bad) bad = fe_check_size(P, dt, &sh, s->dtype);
  int noise = bad ? NOISE_NONE : input_noise(P, s, what, dt);
  bad |= noise < 0;
  if (bad) {
    fe_poison(P, s->name);
    return -1;
  }
  const char *name = fe_tokstr(P, s->name);
  if (fe_map_get(&P->inputs, name) >= 0) {
    diag_error(P->d, fe_loc(P, s->name), "an input named '%s' already exists", name);
    return -1;
  }
  int id = ir_input(P->g, name, dt, &sh, fe_loc(P, s->name));
  P->g->nodes[id].noise = noise;
  fe_map_put(&P->inputs, P->tmp, name, id);
  fe_bind(P, s->name, val_tensor(id), what);
  return id;
}

static void exec_param(Parser *P, Stmt *s) {
  DType dt;
  Shape sh;
  ParamInit init;
  if (check_rebind(P, s->name)) return;
  int bad = parse_dtype(P, s->dtype, 1, &dt) | parse_shape(P, s, 1, &sh);
  if (!bad) fe_init_of(P, s, sh.rank, &init);
  const char *prefix = frame_prefix(P, s->name);
  const char *full = fe_join(P, prefix, fe_tokstr(P, s->name));
  int id = -1;
  if (!bad && init.kind != INIT_COUNT && full && fe_claim_prefix(P, full, s->name) == 0)
    id = fe_new_param(P, full, &sh, init, s->name);
  if (id < 0) {
    fe_poison(P, s->name);
    return;
  }
  fe_bind(P, s->name, val_tensor(id), "parameter");
}

/* --- statements --------------------------------------------------------------------- */

/* Evaluates s->value with the statement's name available to the call. */
static Value eval_named(Parser *P, Stmt *s) {
  P->naming = s->value;
  P->naming_tok = s->as ? s->as : s->name;
  P->named = 0;
  Value v = fe_eval(P, s->value);
  if (s->as && !P->named && v.kind != V_ERR)
    diag_error(P->d, fe_loc(P, s->as), "'as %.*s' names the parameters of a layer or block call, "
               "but this statement's value is not such a call", s->as->len, s->as->p);
  P->naming = NULL;
  return v;
}

/* a, b = f(...): one name per value of a tuple. */
static void exec_assign_many(Parser *P, Stmt *s) {
  for (int i = -1; i < s->ntargets; i++)
    if (check_rebind(P, i < 0 ? s->name : s->targets[i])) return;
  Value v = eval_named(P, s);
  if (v.kind != V_ERR && (v.kind != V_TUPLE || v.nlist != s->ntargets + 1)) {
    char buf[160];
    diag_error(P->d, fe_loc(P, s->name), "%d names are assigned %s", s->ntargets + 1, fe_value_str(P, v, buf, sizeof buf));
    v = val_err();
  }
  for (int i = -1; i < s->ntargets; i++)
    fe_bind(P, i < 0 ? s->name : s->targets[i], v.kind == V_ERR ? v : val_tensor((int)v.list[i + 1]), NULL);
}

static void exec_assign(Parser *P, Stmt *s) {
  if (s->ntargets) {
    exec_assign_many(P, s);
    return;
  }
  if (P->in_train && fe_train_setting(P, s)) return;
  if (check_rebind(P, s->name)) return;
  Value v = eval_named(P, s);
  if (v.kind == V_TUPLE) {
    diag_error(P->d, fe_loc(P, s->name), "this gives %d values; assign them to as many names (a, b = ...)", v.nlist);
    v = val_err();
  }
  fe_bind(P, s->name, v, NULL);
}

static void exec_output(Parser *P, Stmt *s) {
  const char *name = fe_tokstr(P, s->name);
  Value v;
  if (s->value) {
    if (check_rebind(P, s->name)) return;
    v = eval_named(P, s);
    fe_bind(P, s->name, v, NULL);
  } else {
    Expr e = {EX_NAME, s->name, name};
    v = fe_eval(P, &e);
  }
  if (v.kind == V_ERR) return;
  if (v.kind != V_TENSOR) {
    char buf[160];
    diag_error(P->d, fe_loc(P, s->name), "output '%s' must be a tensor, not %s", name,
               fe_value_str(P, v, buf, sizeof buf));
    return;
  }
  int old = fe_map_get(&P->outputs, name);
  if (old >= 0) {
    diag_error(P->d, fe_loc(P, s->name), "output '%s' is declared twice", name);
    diag_note(P->d, fe_loc(P, P->outtok[old]), "the first declaration is here");
    return;
  }
  if (P->g->noutputs == P->outcap) {
    P->outcap = P->outcap ? P->outcap * 2 : 8;
    Token **t = arena_alloc(P->tmp, (size_t)P->outcap * sizeof *t);
    if (P->g->noutputs) memcpy(t, P->outtok, (size_t)P->g->noutputs * sizeof *t);
    P->outtok = t;
  }
  P->outtok[P->g->noutputs] = s->name;
  fe_map_put(&P->outputs, P->tmp, name, ir_output(P->g, name, v.id));
}

static void exec_model(Parser *P, Stmt *s) {
  if (P->model_stmt) {
    diag_error(P->d, fe_loc(P, s->tok), "the model is already named");
    diag_note(P->d, fe_loc(P, P->model_stmt->tok), "by this statement");
    return;
  }
  P->model_stmt = s;
  P->g->name = fe_tokstr(P, s->name);
}

static void defer(Parser *P, Stmt *s) {
  if (P->npend == P->pendcap) {
    P->pendcap = P->pendcap ? P->pendcap * 2 : 8;
    Pending *v = arena_alloc(P->tmp, (size_t)P->pendcap * sizeof *v);
    if (P->npend) memcpy(v, P->pend, (size_t)P->npend * sizeof *v);
    P->pend = v;
  }
  P->pend[P->npend++] = (Pending){s};
}

void fe_exec_stmt(Parser *P, Stmt *s) {
  if (fe_halt(P, s->tok)) return;
  switch (s->kind) {
  case ST_MODEL: exec_model(P, s); break;
  case ST_INPUT: fe_declare_input(P, s, "input"); break;
  case ST_LABEL: fe_train_label(P, s); break;
  case ST_PARAM: exec_param(P, s); break;
  case ST_ASSIGN: exec_assign(P, s); break;
  case ST_OUTPUT: exec_output(P, s); break;
  case ST_FREEZE: defer(P, s); break;
  case ST_LR_GROUP: fe_train_setting(P, s); defer(P, s); break;
  case ST_RETURN: case ST_BLOCK: case ST_TRAIN: break;
  }
}

/* --- the end of the file ------------------------------------------------------------- */

static int prefix_matches(const char *name, const char *prefix) {
  size_t n = strlen(prefix);
  return strncmp(name, prefix, n) == 0 && (name[n] == 0 || name[n] == '.');
}

/* Applies freeze (or checks lr_group) s; reports a prefix matching nothing. */
static void apply_pending(Parser *P, Stmt *s) {
  int hits = 0;
  for (int i = 0; i < P->g->nnodes; i++) {
    Node *n = &P->g->nodes[i];
    if (n->op != OP_PARAM || !prefix_matches(n->name, s->qual)) continue;
    hits++;
    if (s->kind == ST_FREEZE) n->frozen = 1;
  }
  if (hits) return;
  Suggest sg;
  fe_suggest_init(&sg, s->qual, P->d);
  for (int i = P->nuses - 1; i >= 0 && !sg.off; i--) fe_suggest_add(&sg, P->uses[i].name);
  diag_error(P->d, fe_loc(P, s->name), "%s '%s' matches no parameter%s", s->kind == ST_FREEZE ? "freeze" : "lr_group",
             s->qual, fe_suggest_text(&sg));
}

void fe_finish(Parser *P) {
  int before = P->d->nerrors;
  for (int i = 0; i < P->npend; i++) apply_pending(P, P->pend[i].s);
  fe_train_finish(P);
  if (P->nstmts == 0)
    diag_plain(P->d, P->m->src.path, "no statements in the file; a model needs at least an input and an output");
  else if (P->d->nerrors == before && before == P->start_errors && P->g->noutputs == 0 && !P->train)
    diag_plain(P->d, P->m->src.path, "the model has no outputs; declare one with 'output NAME'");
}
