/*
 * ir.c — building graphs: the op table, attributes, symbols and nodes.
 *
 * The op table comes from ops.def.  Attributes are parsed from each op's
 * spec string ("axis start=0 end=max step=1") into AttrSpecs on demand; the
 * spec names map onto fields of the op's family in the Attrs union through
 * attr_fields, so the language, the defaults and the C struct agree by
 * construction, and a field is only ever written under its own family.  ir_op is the only
 * way to add a computed node and it runs the shape rule (infer.c) first, so
 * a node that exists is well-formed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "ir/random.h"

const OpInfo ir_ops[OP_COUNT] = {
#define OP(id, name, mn, mx, flags, fam, attrs) {name, mn, mx, flags, AK_##fam, attrs},
#include "ir/ops.def"
#undef OP
};

/* Second names of ops, as PyTorch spells them. */
static const struct {
  const char *alias, *name;
} op_aliases[] = {
    {"detach", "stop_gradient"},
};

int ir_op_lookup(const char *name) {
  for (int i = 0; i < OP_COUNT; i++)
    if (strcmp(ir_ops[i].name, name) == 0) return i;
  for (size_t i = 0; i < sizeof op_aliases / sizeof op_aliases[0]; i++)
    if (strcmp(op_aliases[i].alias, name) == 0) return ir_op_lookup(op_aliases[i].name);
  return -1;
}

/* --- attributes --------------------------------------------------------- */

AttrFamily ir_op_family(OpKind op) { return (AttrFamily)ir_ops[op].family; }

static const char *const family_names[] = {
    "none", "scalar", "axis", "dims", "loss", "expand", "window", "upsample", "pad", "hyper", "random", "ew_grad", "scan",
};
_Static_assert(sizeof family_names / sizeof family_names[0] == AK_SCAN + 1, "a name for every attribute family");

const char *ir_attr_family_name(int family) {
  return family >= 0 && family <= AK_SCAN ? family_names[family] : "invalid";
}

/* One value per field of a family's struct; AF_FAMILY gives its family. */
typedef enum AttrField {
  AF_F, AF_F2, AF_EW_MODE,                                           /* scalar */
  AF_AXIS, AF_START, AF_END, AF_STEP, AF_PIECES,                     /* axis */
  AF_LIST, AF_KEEPDIM,                                               /* dims */
  AF_REDUCTION, AF_MARGIN, AF_IGNORE,                                /* loss */
  AF_MEAN,                                                           /* expand */
  AF_STRIDE, AF_PADDING, AF_DILATION, AF_KERNEL, AF_OUT_PAD, AF_GROUPS, AF_MODE, AF_CEIL, AF_COUNT_PAD, /* window */
  AF_SCALE, AF_UP_MODE,                                              /* upsample */
  AF_PADS, AF_PAD_MODE, AF_VALUE,                                    /* pad */
  AF_HP, AF_ALPHA, AF_UNBIASED,                                      /* hyper */
  AF_P, AF_SEED, AF_SALT, AF_RSHAPE,                                 /* random */
  AF_EW_OF, AF_EW_ARG,                                               /* ew_grad */
} AttrField;

/* An attribute name means the same field for every op, except where ops
 * lists the ops an entry is for: such entries come before the name's
 * general one (pad's and upsample's mode, rmsprop's alpha, dropout_train's
 * p and pad's value live in their own families). */
static const struct {
  const char *name;
  AttrField field;
  AttrKind kind;
  const char *choices;
  int hp;                   /* AF_HP: index into AttrHyper.hp */
  const char *ops;          /* space-separated op names, or NULL: any op */
} attr_fields[] = {
    {"slope", AF_F, ATTR_FLOAT},
    {"alpha", AF_ALPHA, ATTR_FLOAT, NULL, 0, "rmsprop_step"},
    {"alpha", AF_F, ATTR_FLOAT},
    {"exponent", AF_F, ATTR_FLOAT},
    {"value", AF_VALUE, ATTR_FLOAT, NULL, 0, "pad pad_grad"},
    {"value", AF_F, ATTR_FLOAT},
    {"axis", AF_AXIS, ATTR_INT},     {"start", AF_START, ATTR_INT},
    {"end", AF_END, ATTR_INT},       {"step", AF_STEP, ATTR_INT},
    {"pieces", AF_PIECES, ATTR_INT}, {"keepdim", AF_KEEPDIM, ATTR_BOOL},
    {"shape", AF_RSHAPE, ATTR_LIST, NULL, 0, "rand randn"},
    {"shape", AF_LIST, ATTR_LIST},   {"perm", AF_LIST, ATTR_LIST},
    {"axes", AF_LIST, ATTR_LIST},    {"margin", AF_MARGIN, ATTR_FLOAT},
    {"reduction", AF_REDUCTION, ATTR_ENUM, "mean|sum|none"},
    {"ignore_index", AF_IGNORE, ATTR_INT},
    {"mean", AF_MEAN, ATTR_BOOL},
    {"lr_scale", AF_HP, ATTR_FLOAT, NULL, HP_LR_SCALE},
    {"momentum", AF_HP, ATTR_FLOAT, NULL, HP_MOMENTUM},
    {"dampening", AF_HP, ATTR_FLOAT, NULL, HP_DAMPENING},
    {"nesterov", AF_HP, ATTR_FLOAT, NULL, HP_NESTEROV},
    {"weight_decay", AF_HP, ATTR_FLOAT, NULL, HP_WEIGHT_DECAY},
    {"beta1", AF_HP, ATTR_FLOAT, NULL, HP_BETA1},
    {"beta2", AF_HP, ATTR_FLOAT, NULL, HP_BETA2},
    {"eps", AF_F, ATTR_FLOAT, NULL, 0, "layer_norm"},
    {"ndim", AF_EW_MODE, ATTR_INT, NULL, 0, "layer_norm"},
    {"diagonal", AF_EW_MODE, ATTR_INT, NULL, 0, "tril"},
    {"eps", AF_HP, ATTR_FLOAT, NULL, HP_EPS},
    {"lr_decay", AF_HP, ATTR_FLOAT, NULL, HP_LR_DECAY},
    {"decoupled", AF_HP, ATTR_FLOAT, NULL, HP_DECOUPLED},
    {"p", AF_P, ATTR_FLOAT, NULL, 0, "dropout_train"},
    {"p", AF_F, ATTR_FLOAT},              {"unbiased", AF_UNBIASED, ATTR_BOOL},
    {"seed", AF_SEED, ATTR_INT},          {"salt", AF_SALT, ATTR_INT},
    {"stride", AF_STRIDE, ATTR_LIST},     {"padding", AF_PADDING, ATTR_LIST},
    {"pads", AF_PADS, ATTR_LIST},         {"dilation", AF_DILATION, ATTR_LIST},
    {"kernel", AF_KERNEL, ATTR_LIST},     {"output_padding", AF_OUT_PAD, ATTR_LIST},
    {"scale_factor", AF_SCALE, ATTR_LIST}, {"groups", AF_GROUPS, ATTR_INT},
    {"ceil_mode", AF_CEIL, ATTR_BOOL},    {"count_include_pad", AF_COUNT_PAD, ATTR_BOOL},
    {"padding_mode", AF_MODE, ATTR_ENUM, "zeros|reflect|replicate"},
    {"mode", AF_UP_MODE, ATTR_ENUM, "nearest|bilinear", 0, "upsample upsample_grad"},
    {"mode", AF_PAD_MODE, ATTR_ENUM, "constant|reflect|replicate"},
    {"of", AF_EW_OF, ATTR_INT},           {"arg", AF_EW_ARG, ATTR_INT},
    {"beta", AF_F, ATTR_FLOAT},           {"threshold", AF_F2, ATTR_FLOAT},
    {"min", AF_F, ATTR_FLOAT},            {"max", AF_F2, ATTR_FLOAT},
    {"approximate", AF_EW_MODE, ATTR_ENUM, "none|tanh"},
};

/* The family whose struct holds field f. */
static AttrFamily field_family(AttrField f) {
  switch (f) {
  case AF_F: case AF_F2: case AF_EW_MODE: return AK_SCALAR;
  case AF_AXIS: case AF_START: case AF_END: case AF_STEP: case AF_PIECES: return AK_AXIS;
  case AF_LIST: case AF_KEEPDIM: return AK_DIMS;
  case AF_REDUCTION: case AF_MARGIN: case AF_IGNORE: return AK_LOSS;
  case AF_MEAN: return AK_EXPAND;
  case AF_STRIDE: case AF_PADDING: case AF_DILATION: case AF_KERNEL: case AF_OUT_PAD: case AF_GROUPS: case AF_MODE:
  case AF_CEIL: case AF_COUNT_PAD: return AK_WINDOW;
  case AF_SCALE: case AF_UP_MODE: return AK_UPSAMPLE;
  case AF_PADS: case AF_PAD_MODE: case AF_VALUE: return AK_PAD;
  case AF_HP: case AF_ALPHA: case AF_UNBIASED: return AK_HYPER;
  case AF_P: case AF_SEED: case AF_SALT: case AF_RSHAPE: return AK_RANDOM;
  case AF_EW_OF: case AF_EW_ARG: return AK_EW_GRAD;
  }
  return AK_NONE;
}

/* The index of word in a '|'-separated list of choices, or -1. */
static int choice_index(const char *choices, const char *word, size_t n) {
  for (int i = 0; choices && *choices; i++) {
    size_t len = strcspn(choices, "|");
    if (len == n && strncmp(choices, word, n) == 0) return i;
    choices += len + (choices[len] == '|');
  }
  return -1;
}

/* Whether word is one of the space-separated names in list. */
static int in_list(const char *list, const char *word) {
  size_t n = strlen(word);
  for (const char *p = list; *p; p += strspn(p, " ")) {
    size_t len = strcspn(p, " ");
    if (len == n && strncmp(p, word, n) == 0) return 1;
    p += len;
  }
  return 0;
}

/* The attr_fields entry of name for op (op < 0: the first of any op). */
static int field_index(int op, const char *name, size_t n) {
  for (size_t i = 0; i < sizeof attr_fields / sizeof attr_fields[0]; i++)
    if (strlen(attr_fields[i].name) == n && strncmp(attr_fields[i].name, name, n) == 0 &&
        (op < 0 || !attr_fields[i].ops || in_list(attr_fields[i].ops, ir_ops[op].name)))
      return (int)i;
  return -1;
}

/* The IntList that field f of a is, or NULL. */
static IntList *int_list(Attrs *a, AttrField f) {
  switch (f) {
  case AF_STRIDE: return &a->window.stride;
  case AF_PADDING: return &a->window.padding;
  case AF_DILATION: return &a->window.dilation;
  case AF_KERNEL: return &a->window.kernel;
  case AF_OUT_PAD: return &a->window.output_padding;
  case AF_SCALE: return &a->upsample.scale;
  case AF_PADS: return &a->pad.pads;
  case AF_RSHAPE: return &a->random.shape;
  case AF_F: case AF_F2: case AF_EW_MODE: case AF_AXIS: case AF_START: case AF_END: case AF_STEP: case AF_PIECES:
  case AF_LIST: case AF_KEEPDIM: case AF_REDUCTION: case AF_MARGIN: case AF_IGNORE: case AF_MEAN: case AF_GROUPS: case AF_MODE:
  case AF_CEIL: case AF_COUNT_PAD: case AF_UP_MODE: case AF_PAD_MODE: case AF_VALUE: case AF_HP: case AF_ALPHA:
  case AF_UNBIASED: case AF_P: case AF_SEED: case AF_SALT: case AF_EW_OF: case AF_EW_ARG:
    break;
  }
  return NULL;
}

int ir_attr_specs(OpKind op, AttrSpec *out, int max) {
  const char *p = ir_ops[op].attrs;
  int n = 0;
  while (*p) {
    while (*p == ' ') p++;
    if (!*p) break;
    size_t len = strcspn(p, " =");
    int fi = field_index(op, p, len);
    IR_ASSERT(fi >= 0 && n < max && field_family(attr_fields[fi].field) == ir_op_family(op));
    out[n].name = attr_fields[fi].name;
    out[n].kind = attr_fields[fi].kind;
    out[n].required = p[len] != '=';
    out[n].deflt = NULL;
    out[n].choices = attr_fields[fi].choices;
    p += len;
    if (*p == '=') {
      out[n].deflt = ++p;
      p += strcspn(p, " ");
    }
    n++;
  }
  return n;
}

/* Sets a scalar field of a (its family's struct must be the live one). */
static void set_field(Attrs *a, int fi, int64_t i, double d) {
  IR_ASSERT(a->kind == field_family(attr_fields[fi].field));
  switch (attr_fields[fi].field) {
  case AF_F: a->scalar.f = d; break;
  case AF_F2: a->scalar.f2 = d; break;
  case AF_EW_MODE: a->scalar.mode = (int)i; break;
  case AF_AXIS: a->axis.axis = i; break;
  case AF_START: a->axis.start = i; break;
  case AF_END: a->axis.end = i; break;
  case AF_STEP: a->axis.step = i; break;
  case AF_PIECES: a->axis.pieces = i; break;
  case AF_KEEPDIM: a->dims.keepdim = i != 0; break;
  case AF_REDUCTION: a->loss.reduction = (int)i; break;
  case AF_MARGIN: a->loss.margin = d; break;
  case AF_IGNORE: a->loss.ignore_index = i; break;
  case AF_MEAN: a->expand.mean = i != 0; break;
  case AF_GROUPS: a->window.groups = i; break;
  case AF_MODE: a->window.mode = (int)i; break;
  case AF_CEIL: a->window.ceil_mode = i != 0; break;
  case AF_COUNT_PAD: a->window.count_include_pad = i != 0; break;
  case AF_UP_MODE: a->upsample.mode = (int)i; break;
  case AF_PAD_MODE: a->pad.mode = (int)i; break;
  case AF_VALUE: a->pad.value = d; break;
  case AF_HP: a->hyper.hp[attr_fields[fi].hp] = d; break;
  case AF_ALPHA: a->hyper.alpha = d; break;
  case AF_UNBIASED: a->hyper.unbiased = i != 0; break;
  case AF_P: a->random.p = d; break;
  case AF_SEED: a->random.seed = i; break;
  case AF_SALT: a->random.salt = i; break;
  case AF_EW_OF: a->ew_grad.of = (int)i; break;
  case AF_EW_ARG: a->ew_grad.arg = (int)i; break;
  case AF_LIST: case AF_STRIDE: case AF_PADDING: case AF_DILATION: case AF_KERNEL: case AF_OUT_PAD:
  case AF_SCALE: case AF_PADS: case AF_RSHAPE:
    break;
  }
}

/* Zero, with the family's live struct and the defaults no spec gives. */
static Attrs family_default(AttrFamily k) {
  Attrs a;
  memset(&a, 0, sizeof a);
  a.kind = k;
  if (k == AK_DIMS) a.dims.nlist = -1;
  if (k == AK_AXIS) a.axis.step = 1, a.axis.end = ATTR_MAX;
  return a;
}

Attrs ir_attrs_default(OpKind op) {
  Attrs a = family_default(ir_op_family(op));
  AttrSpec specs[8];
  int n = ir_attr_specs(op, specs, 8);
  for (int k = 0; k < n; k++) {
    if (!specs[k].deflt) continue;
    int fi = field_index(op, specs[k].name, strlen(specs[k].name));
    IntList *l = int_list(&a, attr_fields[fi].field);
    if (l) { /* "stride=1" is the one-entry list [1]; "stride=kernel" is absent */
      l->n = specs[k].deflt[0] >= '0' && specs[k].deflt[0] <= '9';
      l->v[0] = strtoll(specs[k].deflt, NULL, 10);
    }
    if (specs[k].kind == ATTR_LIST) continue;
    int64_t iv = strncmp(specs[k].deflt, "max", 3) == 0 ? ATTR_MAX : strtoll(specs[k].deflt, NULL, 10);
    if (specs[k].kind == ATTR_ENUM) iv = choice_index(specs[k].choices, specs[k].deflt, strcspn(specs[k].deflt, " "));
    set_field(&a, fi, iv, strtod(specs[k].deflt, NULL));
  }
  return a;
}

/* The attr_fields entry for name if op accepts it, else -1. */
static int op_field(OpKind op, const char *name) {
  AttrSpec specs[8];
  int n = ir_attr_specs(op, specs, 8);
  for (int k = 0; k < n; k++)
    if (strcmp(specs[k].name, name) == 0) return field_index(op, name, strlen(name));
  return -1;
}

int ir_attr_set_int(Attrs *a, OpKind op, const char *name, int64_t v) {
  int fi = op_field(op, name);
  if (fi < 0 || attr_fields[fi].kind == ATTR_LIST || attr_fields[fi].kind == ATTR_ENUM) return -1;
  set_field(a, fi, v, (double)v);
  return 0;
}

int ir_attr_set_float(Attrs *a, OpKind op, const char *name, double v) {
  int fi = op_field(op, name);
  if (fi < 0 || attr_fields[fi].kind != ATTR_FLOAT) return -1;
  set_field(a, fi, 0, v);
  return 0;
}

/* The hyperparameter entry of name, past entries of the same name that
 * other ops' families hold (layer_norm's eps). */
int ir_attr_hp_index(const char *name) {
  for (size_t i = 0; i < sizeof attr_fields / sizeof attr_fields[0]; i++)
    if (attr_fields[i].field == AF_HP && strcmp(attr_fields[i].name, name) == 0) return attr_fields[i].hp;
  return -1;
}

int ir_attr_set_enum(Attrs *a, OpKind op, const char *name, const char *value) {
  int fi = op_field(op, name);
  if (fi < 0 || attr_fields[fi].kind != ATTR_ENUM) return -1;
  int v = choice_index(attr_fields[fi].choices, value, strlen(value));
  if (v < 0) return -1;
  set_field(a, fi, v, v);
  return 0;
}

int ir_attr_set_list(Attrs *a, OpKind op, const char *name, const Dim *v, int n) {
  int fi = op_field(op, name);
  if (fi < 0 || attr_fields[fi].kind != ATTR_LIST || n < 0) return -1;
  IR_ASSERT(a->kind == field_family(attr_fields[fi].field));
  IntList *l = int_list(a, attr_fields[fi].field);
  if (n > (l ? IR_MAX_LIST : IR_MAX_RANK)) return -1;
  if (l) {
    l->n = n;
    memcpy(l->v, v, (size_t)n * sizeof *v);
    return 0;
  }
  a->dims.nlist = n;
  memcpy(a->dims.list, v, (size_t)n * sizeof *v);
  return 0;
}

int ir_attr_list_max(OpKind op, const char *name) {
  int fi = op_field(op, name);
  if (fi < 0 || attr_fields[fi].kind != ATTR_LIST) return 0;
  Attrs a;
  return int_list(&a, attr_fields[fi].field) ? IR_MAX_LIST : IR_MAX_RANK;
}

/* The n-th '|'-separated word of choices into buf. */
static const char *choice_name(const char *choices, int n, char *buf, size_t len) {
  for (int i = 0; i < n && *choices; i++) choices += strcspn(choices, "|") + (choices[strcspn(choices, "|")] == '|');
  snprintf(buf, len, "%.*s", (int)strcspn(choices, "|"), choices);
  return buf;
}

static const char *format_dims(const Graph *g, const Dim *v, int n, char *buf, size_t len) {
  size_t at = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < n && at < len; i++) {
    const char *sep = i ? ", " : "";
    if (DIM_IS_SYM(v[i]) && v[i] != DIM_INFER && g)
      at += (size_t)snprintf(buf + at, len - at, "%s%s", sep, g->syms[DIM_SYM_ID(v[i])].name);
    else
      at += (size_t)snprintf(buf + at, len - at, "%s%lld", sep, (long long)v[i]);
  }
  if (at < len) snprintf(buf + at, len - at, "]");
  return buf;
}

/* Field fi of a: a float field's value, or 0 with an integer field's value
 * (an enum's index) in *iv. */
static double field_number(const Attrs *a, int fi, int64_t *iv) {
  switch (attr_fields[fi].field) {
  case AF_F: return a->scalar.f;
  case AF_F2: return a->scalar.f2;
  case AF_MARGIN: return a->loss.margin;
  case AF_VALUE: return a->pad.value;
  case AF_HP: return a->hyper.hp[attr_fields[fi].hp];
  case AF_ALPHA: return a->hyper.alpha;
  case AF_P: return a->random.p;
  case AF_AXIS: *iv = a->axis.axis; break;
  case AF_START: *iv = a->axis.start; break;
  case AF_END: *iv = a->axis.end; break;
  case AF_STEP: *iv = a->axis.step; break;
  case AF_PIECES: *iv = a->axis.pieces; break;
  case AF_KEEPDIM: *iv = a->dims.keepdim; break;
  case AF_MEAN: *iv = a->expand.mean; break;
  case AF_GROUPS: *iv = a->window.groups; break;
  case AF_CEIL: *iv = a->window.ceil_mode; break;
  case AF_COUNT_PAD: *iv = a->window.count_include_pad; break;
  case AF_UNBIASED: *iv = a->hyper.unbiased; break;
  case AF_SEED: *iv = a->random.seed; break;
  case AF_SALT: *iv = a->random.salt; break;
  case AF_EW_ARG: *iv = a->ew_grad.arg; break;
  case AF_EW_MODE: *iv = a->scalar.mode; break;
  case AF_REDUCTION: *iv = a->loss.reduction; break;
  case AF_IGNORE: *iv = a->loss.ignore_index; break;
  case AF_MODE: *iv = a->window.mode; break;
  case AF_UP_MODE: *iv = a->upsample.mode; break;
  case AF_PAD_MODE: *iv = a->pad.mode; break;
  case AF_EW_OF: *iv = a->ew_grad.of; break;
  case AF_LIST: case AF_STRIDE: case AF_PADDING: case AF_DILATION: case AF_KERNEL: case AF_OUT_PAD: case AF_SCALE:
  case AF_PADS: case AF_RSHAPE:
    IR_ASSERT(!"a list attribute has no number");
  }
  return 0;
}

const char *ir_attr_format(const Graph *g, const Attrs *a, OpKind op, const char *name, char *buf,
                           size_t len) {
  int fi = op_field(op, name);
  if (fi < 0) return NULL;
  IR_ASSERT(a->kind == field_family(attr_fields[fi].field));
  Attrs copy = *a;
  const IntList *l = int_list(&copy, attr_fields[fi].field);
  if (attr_fields[fi].field == AF_LIST)
    return a->dims.nlist < 0 ? (snprintf(buf, len, "all"), buf) : format_dims(g, a->dims.list, a->dims.nlist, buf, len);
  if (l) return format_dims(g, l->v, l->n, buf, len);
  int64_t iv = 0;
  double d = field_number(a, fi, &iv);
  if (attr_fields[fi].kind == ATTR_FLOAT) snprintf(buf, len, "%.9g", d);
  else if (attr_fields[fi].field == AF_EW_OF) snprintf(buf, len, "%s", iv >= 0 && iv < OP_COUNT ? ir_ops[iv].name : "?");
  else if (attr_fields[fi].kind == ATTR_ENUM) choice_name(attr_fields[fi].choices, (int)iv, buf, len);
  else snprintf(buf, len, "%lld", (long long)iv);
  return buf;
}

/* --- graphs --------------------------------------------------------------- */

void ir_graph_init(Graph *g, const char *name, Diags *d) {
  memset(g, 0, sizeof *g);
  arena_init(&g->arena);
  g->diags = d;
  g->name = arena_strdup(&g->arena, name ? name : "model");
}

void ir_graph_free(Graph *g) {
  rt_xfree(g->nodes);
  rt_xfree(g->outputs);
  arena_free(&g->arena);
  memset(g, 0, sizeof *g);
}

int ir_symbol_find(const Graph *g, const char *name) {
  for (int i = 0; i < g->nsyms; i++)
    if (strcmp(g->syms[i].name, name) == 0) return i;
  return -1;
}

int ir_symbol(Graph *g, const char *name, SrcLoc loc) {
  int i = ir_symbol_find(g, name);
  if (i >= 0) return i;
  if (g->nsyms == IR_MAX_SYMS) return -1;
  g->syms[g->nsyms].name = arena_strdup(&g->arena, name);
  g->syms[g->nsyms].max = 0;
  g->syms[g->nsyms].loc = loc;
  return g->nsyms++;
}

static int new_node(Graph *g, OpKind op, DType dt, const Shape *s, SrcLoc loc) {
  if (g->nnodes == g->cap) {
    g->cap = g->cap ? g->cap * 2 : 64;
    g->nodes = rt_xrealloc(g->nodes, (size_t)g->cap * sizeof *g->nodes);
  }
  Node *n = &g->nodes[g->nnodes];
  memset(n, 0, sizeof *n);
  n->op = op;
  n->dtype = dt;
  n->shape = *s;
  n->loc = loc;
  n->attr = ir_attrs_default(op);
  return g->nnodes++;
}

int ir_input(Graph *g, const char *name, DType dt, const Shape *s, SrcLoc loc) {
  int id = new_node(g, OP_INPUT, dt, s, loc);
  g->nodes[id].name = arena_strdup(&g->arena, name);
  return id;
}

int ir_param(Graph *g, const char *name, DType dt, const Shape *s, ParamInit init,
             SrcLoc loc) {
  int id = new_node(g, OP_PARAM, dt, s, loc);
  g->nodes[id].name = arena_strdup(&g->arena, name);
  g->nodes[id].init = init;
  return id;
}

int ir_const(Graph *g, double value, SrcLoc loc) {
  Shape s = {0, {0}};
  int id = new_node(g, OP_CONST, DT_F32, &s, loc);
  g->nodes[id].attr.scalar.f = value;
  return id;
}

int ir_state(Graph *g, const char *name, const Shape *s, SrcLoc loc) {
  int id = new_node(g, OP_STATE, DT_F32, s, loc);
  g->nodes[id].name = arena_strdup(&g->arena, name);
  return id;
}

void ir_clone_header(Graph *dst, const Graph *src) {
  dst->name = arena_strdup(&dst->arena, src->name);
  for (int s = 0; s < src->nsyms; s++) {
    int k = ir_symbol(dst, src->syms[s].name, src->syms[s].loc);
    dst->syms[k].max = src->syms[s].max;
  }
}

int ir_clone_node(Graph *dst, const Graph *src, int id, const int *map) {
  const Node *n = &src->nodes[id];
  int out;
  switch ((int)n->op) { /* sources; every computed op goes through ir_op */
  case OP_INPUT:
    out = ir_input(dst, n->name, n->dtype, &n->shape, n->loc);
    dst->nodes[out].noise = n->noise;
    return out;
  case OP_STATE: return ir_state(dst, n->name, &n->shape, n->loc);
  case OP_CONST: return ir_const(dst, n->attr.scalar.f, n->loc);
  case OP_PARAM:
    out = ir_param(dst, n->name, n->dtype, &n->shape, n->init, n->loc);
    dst->nodes[out].frozen = n->frozen;
    dst->nodes[out].buffer = n->buffer;
    return out;
  default: break;
  }
  int in[64];
  IR_ASSERT(n->nin <= 64);
  for (int k = 0; k < n->nin; k++) in[k] = map[n->in[k]];
  Attrs at = n->attr;
  if (n->op == OP_SCAN) at.scan.body = ir_scan_body_clone(dst, at.scan.body); /* never shared */
  out = ir_op(dst, n->op, in, n->nin, &at, n->loc);
  if (out >= 0 && n->name) dst->nodes[out].name = arena_strdup(&dst->arena, n->name);
  return out;
}

/* Points the user at the operands of a failed op: "x has type f32[N, 784]". */
static void note_operands(Graph *g, const int *in, int nin) {
  for (int i = 0; i < nin; i++) {
    const Node *o = &g->nodes[in[i]];
    if (!o->loc.src || o->op == OP_CONST) continue;
    char buf[128];
    ir_type_str(g, o->dtype, &o->shape, buf, sizeof buf);
    if (o->name)
      diag_note(g->diags, o->loc, "'%s' has type %s", o->name, buf);
    else
      diag_note(g->diags, o->loc, "operand %d has type %s", i + 1, buf);
  }
}

int ir_op(Graph *g, OpKind op, const int *in, int nin, const Attrs *a, SrcLoc loc) {
  const OpInfo *info = &ir_ops[op];
  IR_ASSERT(!(info->flags & OPF_SOURCE));
  Attrs attrs = a ? *a : ir_attrs_default(op);
  IR_ASSERT(attrs.kind == ir_op_family(op));
  char msg[512];
  DType dt;
  Shape s;
  if (ir_infer(g, op, in, nin, &attrs, &dt, &s, msg, sizeof msg) != 0) {
    diag_error(g->diags, loc, "%s: %s", info->name, msg);
    note_operands(g, in, nin);
    return -1;
  }
  int id = new_node(g, op, dt, &s, loc);
  Node *n = &g->nodes[id];
  n->attr = attrs;
  if ((info->flags & OPF_RANDOM) && attrs.random.salt == 0) n->attr.random.salt = IR_RANDOM_SALT_BASE + id;
  n->nin = nin;
  n->in = arena_alloc(&g->arena, (size_t)(nin ? nin : 1) * sizeof(int));
  memcpy(n->in, in, (size_t)nin * sizeof(int));
  return id;
}

int ir_output(Graph *g, const char *name, int id) {
  if (g->noutputs == g->outcap) {
    g->outcap = g->outcap ? g->outcap * 2 : 8;
    g->outputs = rt_xrealloc(g->outputs, (size_t)g->outcap * sizeof *g->outputs);
  }
  g->outputs[g->noutputs].name = arena_strdup(&g->arena, name);
  g->outputs[g->noutputs].id = id;
  return g->noutputs++;
}

static int find_named(const Graph *g, OpKind op, const char *name) {
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == op && strcmp(g->nodes[i].name, name) == 0) return i;
  return -1;
}

int ir_find_input(const Graph *g, const char *name) { return find_named(g, OP_INPUT, name); }
int ir_find_param(const Graph *g, const char *name) { return find_named(g, OP_PARAM, name); }

int ir_find_output(const Graph *g, const char *name) {
  for (int i = 0; i < g->noutputs; i++)
    if (strcmp(g->outputs[i].name, name) == 0) return i;
  return -1;
}

/* --- shape helpers -------------------------------------------------------- */

int64_t ir_dim_value(const Graph *g, Dim d, const int64_t *symvals) {
  if (!DIM_IS_SYM(d)) return d;
  return symvals ? symvals[DIM_SYM_ID(d)] : g->syms[DIM_SYM_ID(d)].max;
}

int64_t ir_numel(const Graph *g, const Shape *s, const int64_t *symvals) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) n = ir_size_mul(n, ir_dim_value(g, s->d[i], symvals));
  return n;
}

int64_t ir_numel_max(const Graph *g, const Shape *s) { return ir_numel(g, s, NULL); }

_Static_assert(IR_MAX_SYMS == 8, "ir_syms_as_one holds a 1 for each symbol");
const int64_t ir_syms_as_one[IR_MAX_SYMS] = {1, 1, 1, 1, 1, 1, 1, 1};

int64_t ir_nbytes(const Graph *g, DType dt, const Shape *s, const int64_t *symvals) {
  return ir_size_mul(ir_numel(g, s, symvals), (int64_t)rt_dtype_size(dt));
}

int ir_size_check(const Graph *g, DType dt, const Shape *s, const int64_t *symvals, char *msg, size_t len) {
  int64_t n = ir_nbytes(g, dt, s, symvals);
  if (n >= 0 && n <= IR_MAX_TENSOR_BYTES) return 0;
  char ty[160], at[160] = "";
  ir_type_str(g, dt, s, ty, sizeof ty);
  for (int i = 0, k = 0; symvals != IR_SYMS_AS_ONE && i < g->nsyms && k < (int)sizeof at; i++)
    k += snprintf(at + k, sizeof at - (size_t)k, "%s%s = %lld", i ? ", " : " at ", g->syms[i].name,
                  (long long)(symvals ? symvals[i] : g->syms[i].max));
  if (n < 0)
    snprintf(msg, len, "the size of %s%s overflows 64 bits; a tensor holds at most %s", ty, at,
             IR_MAX_TENSOR_BYTES_STR);
  else
    snprintf(msg, len, "%s%s takes %lld bytes, more than the limit of %s for one tensor", ty, at, (long long)n,
             IR_MAX_TENSOR_BYTES_STR);
  return -1;
}

/* Reports only the tensors whose operands fit: the origin of each problem,
 * not everything computed from it. */
int ir_check_sizes(const Graph *g, Diags *d) {
  int bad = 0;
  char msg[512], *over = rt_xcalloc((size_t)g->nnodes + 1, 1);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (ir_size_check(g, n->dtype, &n->shape, NULL, msg, sizeof msg) == 0) continue;
    over[i] = 1, bad++;
    int inherited = 0;
    for (int k = 0; k < n->nin; k++) inherited |= over[n->in[k]];
    if (!inherited) diag_error(d, n->loc, "%s%s%s", n->name ? n->name : "", n->name ? ": " : "", msg);
  }
  rt_xfree(over);
  return bad;
}

int ir_shape_eq(const Shape *a, const Shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

const char *ir_type_str(const Graph *g, DType dt, const Shape *s, char *buf, size_t len) {
  size_t n = (size_t)snprintf(buf, len, "%s[", rt_dtype_name(dt));
  for (int i = 0; i < s->rank && n < len; i++) {
    const char *sep = i ? ", " : "";
    if (DIM_IS_SYM(s->d[i]))
      n += (size_t)snprintf(buf + n, len - n, "%s%s", sep, g->syms[DIM_SYM_ID(s->d[i])].name);
    else
      n += (size_t)snprintf(buf + n, len - n, "%s%lld", sep, (long long)s->d[i]);
  }
  if (n < len) snprintf(buf + n, len - n, "]");
  return buf;
}

int64_t ir_param_count(const Graph *g) {
  int64_t total = 0;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_PARAM) total = ir_size_add(total, ir_numel_max(g, &g->nodes[i].shape));
  return total;
}

/* --- counter-based random numbers ------------------------------------------ */

/* ir/random.h is the definition: the emitted C prints the same text. */
uint64_t ir_random_key(uint64_t seed, uint64_t salt) { return dlc_mix64(seed * DLC_RNG_GOLDEN + salt); }

float ir_random_uniform(uint64_t key, uint64_t ctr) { return dlc_uniform(key, ctr); }

/* passes/lower.c (lower_random) builds the same operations in the same order. */
float ir_random_normal(uint64_t key, uint64_t ctr) {
  float u1 = dlc_uniform(key, ctr), u2 = dlc_uniform(key, ctr + 1);
  return sqrtf(-2.0f * logf(1.0f - u1)) * cosf((float)IR_TWO_PI * u2);
}
