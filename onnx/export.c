/*
 * export.c — an inference graph as an ONNX model.
 *
 * The export walks the graph once, in its (topological) node order, after
 * checking that every op has a conversion (ir/onnx.def), so a graph with
 * one op ONNX cannot express produces nothing but the errors at the source
 * lines of every such op.  Each value gets one name: inputs and parameters
 * their own (parameters as in safetensors, "fc1.weight"), outputs theirs,
 * computed values their .dl variable or "as" name, others "op_ID"; a name
 * that is taken gets a suffix, so names are unique, as ONNX requires.
 * Graph inputs are the INPUT nodes with their symbolic dimensions as
 * dim_param (the symbol's name); parameters are initializers with raw
 * little-endian data, borrowed from the caller's tensors until packing.
 * An output whose value has another name (or is an input or parameter, or
 * is output twice) is written by an Identity node.  Every message lives in
 * one arena; the packed bytes are the only result.
 */
#include <string.h>

#include "onnx/builder.h"

/* --- names ---------------------------------------------------------------------- */

int ox_claim(OxBuilder *b, const char *name) {
  for (int i = 0; i < b->nnames; i++)
    if (!strcmp(b->names[i], name)) return -1;
  if (b->nnames == b->capnames) {
    int cap = b->capnames ? 2 * b->capnames : 64;
    const char **nn = arena_alloc(b->a, cap * sizeof *nn);
    if (b->nnames) memcpy(nn, b->names, b->nnames * sizeof *nn);
    b->names = nn, b->capnames = cap;
  }
  b->names[b->nnames++] = name;
  return 0;
}

const char *ox_fresh(OxBuilder *b, const char *base) {
  if (!ox_claim(b, base)) return base;
  for (int k = 1;; k++) {
    const char *s = arena_printf(b->a, "%s_%d", base, k);
    if (!ox_claim(b, s)) return s;
  }
}

/* --- nodes and attributes --------------------------------------------------------- */

static char **str_array(OxBuilder *b, int n, const char *const *s) {
  char **v = arena_alloc(b->a, (n ? n : 1) * sizeof *v);
  for (int i = 0; i < n; i++) v[i] = (char *)s[i];
  return v;
}

static void push_node(OxBuilder *b, Onnx__NodeProto *np) {
  if (b->nnodes == b->capnodes) {
    int cap = b->capnodes ? 2 * b->capnodes : 64;
    Onnx__NodeProto **nn = arena_alloc(b->a, cap * sizeof *nn);
    if (b->nnodes) memcpy(nn, b->nodes, b->nnodes * sizeof *nn);
    b->nodes = nn, b->capnodes = cap;
  }
  b->nodes[b->nnodes++] = np;
}

const char *ox_node(OxBuilder *b, const char *type, const char *out, int nin, const char *const *in) {
  Onnx__NodeProto *np = arena_alloc(b->a, sizeof *np);
  onnx__node_proto__init(np);
  if (!out) out = ox_fresh(b, arena_printf(b->a, "%s/%s", b->cur_out, type));
  np->n_input = nin;
  np->input = str_array(b, nin, in);
  np->n_output = 1;
  np->output = str_array(b, 1, &out);
  np->name = (char *)out;
  np->op_type = (char *)type;
  np->doc_string = (char *)b->doc;
  push_node(b, np);
  return out;
}

Onnx__NodeProto *ox_node_n(OxBuilder *b, const char *type, int nin, const char *const *in, int nout,
                           const char *const *out) {
  Onnx__NodeProto *np = arena_alloc(b->a, sizeof *np);
  onnx__node_proto__init(np);
  np->n_input = nin;
  np->input = str_array(b, nin, in);
  np->n_output = nout;
  np->output = str_array(b, nout, out);
  np->name = (char *)out[0];
  np->op_type = (char *)type;
  np->doc_string = (char *)b->doc;
  push_node(b, np);
  return np;
}

const char *ox_node1(OxBuilder *b, const char *type, const char *out, const char *x) {
  return ox_node(b, type, out, 1, &x);
}

const char *ox_node2(OxBuilder *b, const char *type, const char *out, const char *x, const char *y) {
  const char *in[2] = {x, y};
  return ox_node(b, type, out, 2, in);
}

static Onnx__AttributeProto *new_attr(OxBuilder *b, const char *name, Onnx__AttributeProto__AttributeType type) {
  Onnx__NodeProto *np = b->nodes[b->nnodes - 1];
  Onnx__AttributeProto *at = arena_alloc(b->a, sizeof *at);
  onnx__attribute_proto__init(at);
  at->name = (char *)name;
  at->has_type = 1;
  at->type = type;
  Onnx__AttributeProto **v = arena_alloc(b->a, (np->n_attribute + 1) * sizeof *v);
  if (np->n_attribute) memcpy(v, np->attribute, np->n_attribute * sizeof *v);
  v[np->n_attribute++] = at;
  np->attribute = v;
  return at;
}

void ox_attr_int(OxBuilder *b, const char *name, int64_t v) {
  Onnx__AttributeProto *at = new_attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  at->has_i = 1, at->i = v;
}

void ox_attr_float(OxBuilder *b, const char *name, float v) {
  Onnx__AttributeProto *at = new_attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  at->has_f = 1, at->f = v;
}

void ox_attr_str(OxBuilder *b, const char *name, const char *v) {
  Onnx__AttributeProto *at = new_attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  at->has_s = 1, at->s.data = (uint8_t *)v, at->s.len = strlen(v);
}

void ox_attr_ints(OxBuilder *b, const char *name, const int64_t *v, int n) {
  Onnx__AttributeProto *at = new_attr(b, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  at->n_ints = n;
  at->ints = arena_alloc(b->a, (n ? n : 1) * sizeof *at->ints);
  if (n) memcpy(at->ints, v, n * sizeof *v);
}

/* --- tensors and constants ------------------------------------------------------------- */

int ox_dtype(DType dt) {
  switch (dt) {
  case DT_F32: return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  case DT_F64: return ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
  case DT_I32: return ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
  case DT_I64: return ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
  case DT_U8: return ONNX__TENSOR_PROTO__DATA_TYPE__UINT8;
  case DT_COUNT: case DT_BOOL: break; /* bool is a kernel-IR type, never a tensor's */
  }
  IR_ASSERT(!"no such dtype");
}

Onnx__TensorProto *ox_tensor(OxBuilder *b, const char *name, DType dt, int rank, const int64_t *d, const void *data,
                             size_t nbytes) {
  Onnx__TensorProto *t = arena_alloc(b->a, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = (char *)name;
  t->n_dims = rank;
  t->dims = arena_alloc(b->a, (rank ? rank : 1) * sizeof *t->dims);
  if (rank) memcpy(t->dims, d, rank * sizeof *d);
  t->has_data_type = 1;
  t->data_type = ox_dtype(dt);
  t->has_raw_data = 1;
  t->raw_data.data = (uint8_t *)data;
  t->raw_data.len = nbytes;
  return t;
}

static const char *const_node(OxBuilder *b, DType dt, int rank, const int64_t *d, const void *v, size_t nbytes) {
  void *copy = arena_alloc(b->a, nbytes ? nbytes : 1);
  memcpy(copy, v, nbytes);
  const char *out = ox_node(b, "Constant", NULL, 0, NULL);
  Onnx__AttributeProto *at = new_attr(b, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
  at->t = ox_tensor(b, NULL, dt, rank, d, copy, nbytes);
  return out;
}

const char *ox_const_f32(OxBuilder *b, float v) { return const_node(b, DT_F32, 0, NULL, &v, sizeof v); }

const char *ox_const_f32s(OxBuilder *b, const float *v, int n) {
  int64_t d = n;
  return const_node(b, DT_F32, 1, &d, v, n * sizeof *v);
}

const char *ox_const_i64s(OxBuilder *b, const int64_t *v, int n) {
  int64_t d = n;
  return const_node(b, DT_I64, 1, &d, v, n * sizeof *v);
}

/* --- shapes ----------------------------------------------------------------------------- */

/* The name of a graph input of g (names: its nodes' ONNX names) with
 * symbol s at dimension *k, or NULL. */
static const char *sym_input(const Graph *g, const char *const *names, int s, int *k) {
  for (int i = 0; i < g->nnodes; i++)
    for (*k = 0; g->nodes[i].op == OP_INPUT && *k < g->nodes[i].shape.rank; ++*k)
      if (g->nodes[i].shape.d[*k] == DIM_SYM(s)) return names[i];
  return NULL;
}

/* The run-time value of symbol s as a 1-element i64 tensor: a Shape slice
 * of the first input that has it (made once), an input of the scan body
 * being written, else of the model (the body sees the model's values). */
static const char *sym_value(OxBuilder *b, int s) {
  if (b->symdim[s]) return b->symdim[s];
  int k;
  const char *src = sym_input(b->g, b->vnames, s, &k);
  if (!src && b->g != b->top) src = sym_input(b->top, b->top_names, s, &k);
  IR_ASSERT(src && "a symbol no input has");
  const char *v = ox_node1(b, "Shape", ox_fresh(b, arena_printf(b->a, "%s.value", b->g->syms[s].name)), src);
  ox_attr_int(b, "start", k);
  ox_attr_int(b, "end", k + 1);
  return b->symdim[s] = v;
}

const char *ox_shape(OxBuilder *b, const Shape *s) {
  int64_t v[IR_MAX_RANK];
  int nsym = 0;
  for (int k = 0; k < s->rank; k++) nsym += DIM_IS_SYM(s->d[k]), v[k] = DIM_IS_SYM(s->d[k]) ? -1 : s->d[k];
  if (nsym <= 1) return ox_const_i64s(b, v, s->rank);
  const char *parts[IR_MAX_RANK];
  for (int k = 0; k < s->rank; k++)
    parts[k] = DIM_IS_SYM(s->d[k]) ? sym_value(b, DIM_SYM_ID(s->d[k])) : ox_const_i64s(b, &v[k], 1);
  const char *out = ox_node(b, "Concat", NULL, s->rank, parts);
  ox_attr_int(b, "axis", 0);
  return out;
}

/* --- the model -------------------------------------------------------------------------- */

static Onnx__ValueInfoProto *value_info(OxBuilder *b, const char *name, DType dt, const Shape *s) {
  Onnx__TensorShapeProto *sp = arena_alloc(b->a, sizeof *sp);
  onnx__tensor_shape_proto__init(sp);
  sp->n_dim = s->rank;
  sp->dim = arena_alloc(b->a, (s->rank ? s->rank : 1) * sizeof *sp->dim);
  for (int k = 0; k < s->rank; k++) {
    Onnx__TensorShapeProto__Dimension *dm = arena_alloc(b->a, sizeof *dm);
    onnx__tensor_shape_proto__dimension__init(dm);
    if (DIM_IS_SYM(s->d[k])) {
      dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      dm->dim_param = (char *)b->g->syms[DIM_SYM_ID(s->d[k])].name;
    } else {
      dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      dm->dim_value = s->d[k];
    }
    sp->dim[k] = dm;
  }
  Onnx__TypeProto__Tensor *tt = arena_alloc(b->a, sizeof *tt);
  onnx__type_proto__tensor__init(tt);
  tt->has_elem_type = 1, tt->elem_type = ox_dtype(dt), tt->shape = sp;
  Onnx__TypeProto *tp = arena_alloc(b->a, sizeof *tp);
  onnx__type_proto__init(tp);
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp->tensor_type = tt;
  Onnx__ValueInfoProto *vi = arena_alloc(b->a, sizeof *vi);
  onnx__value_info_proto__init(vi);
  vi->name = (char *)name, vi->type = tp;
  return vi;
}

/* Reports every node whose op has no conversion; returns how many. */
static int check_mapped(const Graph *g, Diags *d) {
  int bad = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_SCAN) bad += check_mapped(n->attr.scan.body, d);
    if (ox_convert_fn(n->op)) continue;
    diag_error(d, n->loc, "op '%s' has no ONNX form (%s)", ir_ops[n->op].name, onnx_op_info(n->op)->note);
    bad++;
  }
  return bad;
}

/* Whether node id of g is read by some node or output (parameters that
 * are not are left out of the model). */
static int used(const Graph *g, int id) {
  for (int i = id + 1; i < g->nnodes; i++)
    for (int k = 0; k < g->nodes[i].nin; k++)
      if (g->nodes[i].in[k] == id) return 1;
  for (int o = 0; o < g->noutputs; o++)
    if (g->outputs[o].id == id) return 1;
  return 0;
}

/* Names every node: inputs and parameters theirs, a computed value the
 * output it is (first claimed), its .dl name, or "op_ID". */
static void name_values(OxBuilder *b, const char **names) {
  const Graph *g = b->g;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_INPUT || g->nodes[i].op == OP_PARAM) names[i] = ox_fresh(b, g->nodes[i].name);
  for (int o = 0; o < g->noutputs; o++) {
    int id = g->outputs[o].id;
    if (!names[id] && !ox_claim(b, g->outputs[o].name)) names[id] = g->outputs[o].name;
  }
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (names[i]) continue;
    names[i] = ox_fresh(b, n->name ? n->name : arena_printf(b->a, "%s_%d", ir_ops[n->op].name, i));
  }
}

static void set_doc(OxBuilder *b, const Node *n) {
  const char *path = n->loc.src ? n->loc.src->path : NULL;
  b->doc = path ? arena_printf(b->a, "%s:%d", path, n->loc.line) : NULL;
}

static void convert_nodes(OxBuilder *b) {
  const Graph *g = b->g;
  const char *in[64];
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_INPUT || n->op == OP_PARAM) continue;
    const char **ins = n->nin <= 64 ? in : arena_alloc(b->a, n->nin * sizeof *ins);
    for (int k = 0; k < n->nin; k++) ins[k] = b->vnames[n->in[k]];
    b->cur = n, b->cur_out = b->vnames[i];
    set_doc(b, n);
    ox_convert_fn(n->op)(b, n, ins, b->vnames[i]);
  }
}

/* --- scans -------------------------------------------------------------------------------- */

/* An output of the body: value name, through an Identity named after base
 * when name is a body input, an outer value (a parameter) or already an
 * output; seen[] holds the outputs so far. */
static const char *body_output(OxBuilder *b, const char *name, int is_source, const char *base, const char **seen,
                               int nseen) {
  int dup = is_source;
  for (int k = 0; k < nseen; k++) dup |= !strcmp(seen[k], name);
  return dup ? ox_node1(b, "Identity", ox_fresh(b, base), name) : name;
}

/* The body of scan n as a GraphProto: its inputs the states then the
 * sequences' steps (ONNX's order), its outputs the new states, the
 * per-step values, then (when stacked_states) the states each step read;
 * the body's parameters read the scan's constant operands (outer_in) as
 * outer-scope values, so they stay the model's initializers. */
static Onnx__GraphProto *scan_body(OxBuilder *b, const Node *n, const char *const *outer_in, const char *out,
                                   int stacked_states) {
  const AttrScan *a = &n->attr.scan;
  const Graph *body = a->body;
  OxBuilder save = *b;
  const char **names = arena_alloc(b->a, (body->nnodes + 1) * sizeof *names);
  int bin[64], nbin = 0, np = 0;
  for (int i = 0; i < body->nnodes; i++) {
    const Node *bn = &body->nodes[i];
    if (bn->op == OP_PARAM) names[i] = outer_in[a->nseq + a->nstate + np++];
    else if (bn->op == OP_INPUT) names[i] = ox_fresh(b, arena_printf(b->a, "%s/%s", out, bn->name)), bin[nbin++] = i;
    else names[i] = ox_fresh(b, arena_printf(b->a, "%s/%s", out, bn->name ? bn->name : arena_printf(b->a, "%s_%d", ir_ops[bn->op].name, i)));
  }
  IR_ASSERT(nbin == a->nseq + a->nstate);
  b->g = body, b->vnames = names, b->nodes = NULL, b->nnodes = b->capnodes = 0;
  convert_nodes(b);
  Onnx__GraphProto *gp = arena_alloc(b->a, sizeof *gp);
  onnx__graph_proto__init(gp);
  gp->name = (char *)ox_fresh(b, arena_printf(b->a, "%s/body", out));
  gp->n_input = nbin;
  gp->input = arena_alloc(b->a, nbin * sizeof *gp->input);
  for (int k = 0; k < nbin; k++) { /* states first */
    int i = bin[k < a->nstate ? a->nseq + k : k - a->nstate];
    gp->input[k] = value_info(b, names[i], body->nodes[i].dtype, &body->nodes[i].shape);
  }
  int ny = ir_scan_ny(a), nout = body->noutputs + (stacked_states ? a->nstate : 0);
  const char **outs = arena_alloc(b->a, (nout + 1) * sizeof *outs);
  gp->n_output = nout;
  gp->output = arena_alloc(b->a, (nout + 1) * sizeof *gp->output);
  for (int k = 0; k < nout; k++) {
    int id = k < a->nstate ? body->outputs[ny + k].id : k < body->noutputs ? body->outputs[k - a->nstate].id
                                                                             : bin[a->nseq + k - body->noutputs];
    const Node *bn = &body->nodes[id];
    b->cur_out = out;
    set_doc(b, n);
    const char *base = arena_printf(b->a, "%s/%s", out, k < a->nstate ? "state" : k < body->noutputs ? "y" : "state_in");
    outs[k] = body_output(b, names[id], bn->op == OP_INPUT || bn->op == OP_PARAM, base, outs, k);
    gp->output[k] = value_info(b, outs[k], bn->dtype, &bn->shape);
  }
  gp->n_node = b->nnodes, gp->node = b->nodes;
  OxBuilder inner = *b;
  *b = save; /* the outer graph again; symbol values made in the body are not seen outside it */
  b->names = inner.names, b->nnames = inner.nnames, b->capnames = inner.capnames;
  return gp;
}

void ox_cv_scan(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  const Graph *g = b->g;
  const AttrScan *a = &n->attr.scan;
  int id = (int)(n - g->nodes), ny = ir_scan_ny(a), nres = ir_scan_nresults(a);
  const char **res = arena_alloc(b->a, (nres + 1) * sizeof *res);
  int stacked_states = 0;
  for (int j = 0; j < nres; j++) res[j] = NULL;
  for (int i = id + 1; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_SCAN_OUT && g->nodes[i].in[0] == id) res[g->nodes[i].attr.scan.index] = b->vnames[i];
  for (int k = 0; k < a->nstate; k++) stacked_states |= res[ny + a->nstate + k] != NULL;
  Onnx__GraphProto *body = scan_body(b, n, in, out, stacked_states);
  /* inputs: the initial states, then the sequences */
  int nin = a->nstate + a->nseq, nout = (int)body->n_output;
  const char **ins = arena_alloc(b->a, (nin + 1) * sizeof *ins), **outs = arena_alloc(b->a, (nout + 1) * sizeof *outs);
  for (int k = 0; k < nin; k++) ins[k] = in[k < a->nstate ? a->nseq + k : k - a->nstate];
  /* outputs: the final states, the stacked per-step values, the stacked states */
  for (int k = 0; k < nout; k++) {
    int j = k < a->nstate ? ny + k : k < a->nstate + ny ? k - a->nstate : k;
    outs[k] = res[j] ? res[j] : ox_fresh(b, arena_printf(b->a, "%s/%s%d", out, j < ny ? "y" : j < ny + a->nstate ? "state" : "states", k));
  }
  set_doc(b, n);
  ox_node_n(b, "Scan", nin, ins, nout, outs)->name = (char *)out;
  Onnx__AttributeProto *at = new_attr(b, "body", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH);
  at->g = body;
  int64_t v[64];
  for (int k = 0; k < 64; k++) v[k] = a->axis;
  ox_attr_int(b, "num_scan_inputs", a->nseq);
  ox_attr_ints(b, "scan_input_axes", v, a->nseq);
  ox_attr_ints(b, "scan_output_axes", v, nout - a->nstate);
  if (a->reverse) {
    for (int k = 0; k < 64; k++) v[k] = 1;
    ox_attr_ints(b, "scan_input_directions", v, a->nseq);
    ox_attr_ints(b, "scan_output_directions", v, nout - a->nstate);
  }
}

void ox_cv_scan_out(OxBuilder *b, const Node *n, const char *const *in, const char *out) {
  (void)b, (void)n, (void)in, (void)out; /* the Scan node is named after it */
}

/* The graph's outputs, each through an Identity when its value is named
 * otherwise. */
static void add_outputs(OxBuilder *b, Onnx__GraphProto *gp, const char **names) {
  const Graph *g = b->g;
  gp->n_output = g->noutputs;
  gp->output = arena_alloc(b->a, (g->noutputs ? g->noutputs : 1) * sizeof *gp->output);
  for (int o = 0; o < g->noutputs; o++) {
    const Node *n = &g->nodes[g->outputs[o].id];
    const char *name = g->outputs[o].name;
    int direct = !strcmp(names[g->outputs[o].id], name);
    for (int p = 0; p < o; p++) direct &= strcmp(g->outputs[p].name, name) != 0;
    if (!direct || n->op == OP_INPUT || n->op == OP_PARAM) {
      b->cur_out = name;
      set_doc(b, n);
      name = ox_node1(b, "Identity", ox_fresh(b, name), names[g->outputs[o].id]);
    }
    gp->output[o] = value_info(b, name, n->dtype, &n->shape);
  }
}

static void add_inputs(OxBuilder *b, Onnx__GraphProto *gp, const char **names, RtTensorSet *params) {
  const Graph *g = b->g;
  gp->input = arena_alloc(b->a, (g->nnodes + 1) * sizeof *gp->input);
  gp->initializer = arena_alloc(b->a, (g->nnodes + 1) * sizeof *gp->initializer);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op == OP_INPUT) gp->input[gp->n_input++] = value_info(b, names[i], n->dtype, &n->shape);
    if (n->op != OP_PARAM || !used(g, i)) continue;
    RtTensor *t = rt_set_find(params, n->name);
    IR_ASSERT(t && t->dtype == n->dtype && t->rank == n->shape.rank);
    gp->initializer[gp->n_initializer++] = ox_tensor(b, names[i], t->dtype, t->rank, t->shape, t->data, rt_tensor_nbytes(t));
  }
}

static Onnx__ModelProto *model_proto(OxBuilder *b, Onnx__GraphProto *gp) {
  Onnx__OperatorSetIdProto *os = arena_alloc(b->a, sizeof *os);
  onnx__operator_set_id_proto__init(os);
  os->domain = "";
  os->has_version = 1, os->version = ONNX_OPSET;
  Onnx__ModelProto *mp = arena_alloc(b->a, sizeof *mp);
  onnx__model_proto__init(mp);
  mp->has_ir_version = 1, mp->ir_version = ONNX_IR_VERSION;
  mp->n_opset_import = 1;
  mp->opset_import = arena_alloc(b->a, sizeof *mp->opset_import);
  mp->opset_import[0] = os;
  mp->producer_name = "dlc";
  mp->producer_version = "0.1.0";
  mp->graph = gp;
  return mp;
}

int onnx_export(const Graph *g, RtTensorSet *params, uint8_t **data, size_t *len, Diags *d) {
  *data = NULL, *len = 0;
  if (check_mapped(g, d)) return -1;
  Arena a;
  arena_init(&a);
  OxBuilder b = {.a = &a, .g = g};
  const char **names = arena_alloc(&a, (g->nnodes + 1) * sizeof *names);
  Onnx__GraphProto *gp = arena_alloc(&a, sizeof *gp);
  onnx__graph_proto__init(gp);
  gp->name = (char *)g->name;
  name_values(&b, names);
  b.vnames = names, b.top = g, b.top_names = names;
  add_inputs(&b, gp, names, params);
  convert_nodes(&b);
  add_outputs(&b, gp, names);
  gp->n_node = b.nnodes;
  gp->node = b.nodes;
  Onnx__ModelProto *mp = model_proto(&b, gp);
  *len = onnx__model_proto__get_packed_size(mp);
  *data = rt_xmalloc(*len ? *len : 1);
  onnx__model_proto__pack(mp, *data);
  arena_free(&a);
  return 0;
}
