/*
 * layers.c — layers (calls that create parameters) and parameter
 * initialisers, each one table entry.
 *
 * A layer is a signature (sig[0] is its input tensor) and a build function
 * that receives the evaluated arguments and the call's prefix, creates the
 * parameters PREFIX.weight, PREFIX.bias, ... and builds primitive ops over
 * them.  Parameter layouts follow PyTorch (nn.Linear's weight is
 * [out, in]), so trained weights load into the equivalent torch module by
 * name.  Adding conv2d or batchnorm is one function and one table row.
 */
#include <string.h>

#include "frontend/fe.h"

/* --- dense ------------------------------------------------------------------ */

static const SigParam dense_sig[] = {
    {"x", SK_TENSOR, NULL, NULL, CHK_NONE},
    {"units", SK_INT, NULL, NULL, CHK_POS},
    {"bias", SK_BOOL, "true", NULL, CHK_NONE},
};

/* The last dimension of x when it is a constant, else -1 after an error. */
static int64_t features_of(Parser *P, const char *layer, Token *at, int x) {
  const Node *n = &P->g->nodes[x];
  char ty[128];
  ir_type_str(P->g, n->dtype, &n->shape, ty, sizeof ty);
  if (n->shape.rank == 0 || DIM_IS_SYM(n->shape.d[n->shape.rank - 1])) {
    diag_error(P->d, fe_loc(P, at), "%s needs an input whose last dimension is a constant "
               "(its features), not %s", layer, ty);
    return -1;
  }
  return n->shape.d[n->shape.rank - 1];
}

static int build_dense(Parser *P, const char *prefix, Token *at, const Value *v) {
  int x = v[0].id;
  int64_t in = features_of(P, "dense", at, x), units = v[1].ival;
  if (in < 0) return -1;
  ParamInit init = {INIT_TORCH_DEFAULT, 0, 0};
  Shape ws = {2, {units, in}}, bs = {1, {units}};
  int ops[3] = {x, fe_new_param(P, fe_join(P, prefix, "weight"), &ws, init, at), -1};
  if (ops[1] < 0) return -1;
  if (v[2].ival) {
    ops[2] = fe_new_param(P, fe_join(P, prefix, "bias"), &bs, init, at);
    if (ops[2] < 0) return -1;
  }
  return ir_op(P->g, OP_LINEAR, ops, v[2].ival ? 3 : 2, NULL, fe_loc(P, at));
}

/* --- the table ------------------------------------------------------------------ */

#define SIG(s) s, (int)(sizeof s / sizeof s[0])

static const LayerDef layers[] = {
    {"dense", SIG(dense_sig), build_dense},
};

int fe_layer_count(void) { return (int)(sizeof layers / sizeof layers[0]); }
const LayerDef *fe_layer_at(int i) { return &layers[i]; }

const LayerDef *fe_layer_lookup(const char *name) {
  for (int i = 0; i < fe_layer_count(); i++)
    if (strcmp(layers[i].name, name) == 0) return &layers[i];
  return NULL;
}

Value fe_call_layer(Parser *P, const LayerDef *l, Expr *e) {
  Expr *slots[FE_MAX_ARGS];
  Value vals[FE_MAX_ARGS];
  if (fe_bind_args(P, l->name, "argument", e->tok, l->sig, l->nsig, e->args, e->nargs, slots) ||
      fe_eval_args(P, l->name, l->sig, l->nsig, slots, vals))
    return (Value){V_ERR};
  const char *prefix = fe_call_prefix(P, e, "layer");
  if (!prefix) return (Value){V_ERR};
  int id = l->build(P, prefix, e->tok, vals);
  return id < 0 ? (Value){V_ERR} : (Value){V_TENSOR, id};
}

/* --- initialisers ------------------------------------------------------------------ */

static const SigParam init_constant[] = {{"value", SK_FLOAT, NULL, NULL, CHK_NONE}};
static const SigParam init_uniform[] = {{"a", SK_FLOAT, "0", NULL, CHK_NONE},
                                        {"b", SK_FLOAT, "1", NULL, CHK_NONE}};
static const SigParam init_normal[] = {{"mean", SK_FLOAT, "0", NULL, CHK_NONE},
                                       {"std", SK_FLOAT, "1", NULL, CHK_NONNEG}};

static const struct {
  const char *name;
  RtInitKind kind;
  const SigParam *sig;
  int nsig;
} inits[] = {
    {"zeros", INIT_ZEROS, NULL, 0},
    {"ones", INIT_ONES, NULL, 0},
    {"constant", INIT_CONSTANT, SIG(init_constant)},
    {"uniform", INIT_UNIFORM, SIG(init_uniform)},
    {"normal", INIT_NORMAL, SIG(init_normal)},
    {"kaiming_uniform", INIT_KAIMING_UNIFORM, NULL, 0},
    {"kaiming_normal", INIT_KAIMING_NORMAL, NULL, 0},
    {"xavier_uniform", INIT_XAVIER_UNIFORM, NULL, 0},
    {"xavier_normal", INIT_XAVIER_NORMAL, NULL, 0},
    {"default", INIT_TORCH_DEFAULT, NULL, 0},
};

static int unknown_init(Parser *P, Expr *e) {
  Suggest sg;
  fe_suggest_init(&sg, e->name ? e->name : "");
  for (size_t i = 0; i < sizeof inits / sizeof inits[0]; i++) fe_suggest_add(&sg, inits[i].name);
  if (e->kind != EX_NAME && e->kind != EX_CALL)
    diag_error(P->d, fe_loc(P, e->tok), "expected an initialiser such as zeros or normal(std=0.01)");
  else
    diag_error(P->d, fe_loc(P, e->tok), "unknown initialiser '%s'%s", e->name,
               sg.best ? fe_suggest_text(&sg) : "; the initialisers are zeros, ones, constant, uniform, "
               "normal, kaiming_uniform, kaiming_normal, xavier_uniform, xavier_normal, default");
  return -1;
}

/* Fills *init from `= INIT` of s (or the default for its rank); sets
 * init->kind to INIT_COUNT after an error. */
void fe_init_of(Parser *P, Stmt *s, int rank, ParamInit *init) {
  *init = (ParamInit){rank <= 1 ? INIT_ZEROS : INIT_TORCH_DEFAULT, 0, 0};
  Expr *e = s->value;
  if (!e) return;
  init->kind = INIT_COUNT;
  size_t i = 0, n = sizeof inits / sizeof inits[0];
  while (i < n && (e->kind == EX_NAME || e->kind == EX_CALL) && strcmp(inits[i].name, e->name) != 0) i++;
  if (i == n || (e->kind != EX_NAME && e->kind != EX_CALL)) {
    unknown_init(P, e);
    return;
  }
  Expr *slots[2];
  Value v[2];
  if (e->kind == EX_CALL &&
      (fe_bind_args(P, inits[i].name, "argument", e->tok, inits[i].sig, inits[i].nsig, e->args, e->nargs, slots) ||
       fe_eval_args(P, inits[i].name, inits[i].sig, inits[i].nsig, slots, v)))
    return;
  if (e->kind == EX_NAME && inits[i].nsig && !inits[i].sig[0].deflt) {
    diag_error(P->d, fe_loc(P, e->tok), "%s needs the argument '%s': %s(%s)", e->name,
               inits[i].sig[0].name, e->name, inits[i].sig[0].name);
    return;
  }
  if (e->kind == EX_NAME)
    for (int k = 0; k < inits[i].nsig; k++) v[k] = fe_default(&inits[i].sig[k]);
  if (inits[i].kind == INIT_UNIFORM && v[0].num > v[1].num) {
    diag_error(P->d, fe_loc(P, e->tok), "uniform(a, b) needs a <= b, not a = %g and b = %g", v[0].num, v[1].num);
    return;
  }
  *init = (ParamInit){inits[i].kind, inits[i].nsig > 0 ? v[0].num : 0, inits[i].nsig > 1 ? v[1].num : 0};
}
