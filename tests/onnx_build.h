/*
 * onnx_build.h — small ONNX models built in memory with the protobuf-c
 * messages, for the importer's tests and seeds: a graph of named inputs,
 * initializers, nodes with attributes, and outputs, packed to bytes.
 * Everything lives in one arena, freed with it.
 */
#ifndef DLC_TESTS_ONNX_BUILD_H
#define DLC_TESTS_ONNX_BUILD_H

#include <string.h>

#include "ir/ir.h"
#include "onnx.pb-c.h"

#define OB_MAX 32

typedef struct OnnxBuild {
  Arena *a;
  Onnx__ModelProto m;
  Onnx__GraphProto g;
  Onnx__OperatorSetIdProto opset;
  Onnx__OperatorSetIdProto *opsets[1];
  Onnx__NodeProto *nodes[OB_MAX];
  Onnx__ValueInfoProto *ins[OB_MAX], *outs[OB_MAX];
  Onnx__TensorProto *inits[OB_MAX];
} OnnxBuild;

static inline void ob_init(OnnxBuild *b, Arena *a, int64_t opset) {
  memset(b, 0, sizeof *b);
  b->a = a;
  onnx__model_proto__init(&b->m);
  onnx__graph_proto__init(&b->g);
  onnx__operator_set_id_proto__init(&b->opset);
  b->opset.domain = (char *)"", b->opset.has_version = 1, b->opset.version = opset;
  b->opsets[0] = &b->opset;
  b->m.n_opset_import = 1, b->m.opset_import = b->opsets;
  b->m.has_ir_version = 1, b->m.ir_version = 8;
  b->m.graph = &b->g;
  b->g.name = (char *)"g";
  b->g.node = b->nodes, b->g.input = b->ins, b->g.output = b->outs, b->g.initializer = b->inits;
}

/* "a,b,c" split into a string array of the arena; *n gets the count. */
static inline char **ob_split(OnnxBuild *b, const char *list, size_t *n) {
  char **v = arena_alloc(b->a, 16 * sizeof *v);
  *n = 0;
  for (const char *p = list; p && *p && *n < 16;) {
    size_t k = strcspn(p, ",");
    v[(*n)++] = arena_strndup(b->a, p, k);
    p += k + (p[k] == ',');
  }
  return v;
}

/* A tensor-typed value: dims "N,4" (a name is a dim_param), elem type ty. */
static inline Onnx__ValueInfoProto *ob_value(OnnxBuild *b, const char *name, int ty, const char *dims) {
  size_t n;
  char **d = ob_split(b, dims, &n);
  Onnx__TensorShapeProto *sp = arena_alloc(b->a, sizeof *sp);
  onnx__tensor_shape_proto__init(sp);
  sp->n_dim = n, sp->dim = arena_alloc(b->a, (n + 1) * sizeof *sp->dim);
  for (size_t k = 0; k < n; k++) {
    Onnx__TensorShapeProto__Dimension *dm = arena_alloc(b->a, sizeof *dm);
    onnx__tensor_shape_proto__dimension__init(dm);
    if (d[k][0] >= '0' && d[k][0] <= '9') {
      dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      dm->dim_value = strtoll(d[k], NULL, 10);
    } else {
      dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      dm->dim_param = d[k];
    }
    sp->dim[k] = dm;
  }
  Onnx__TypeProto__Tensor *tt = arena_alloc(b->a, sizeof *tt);
  onnx__type_proto__tensor__init(tt);
  tt->has_elem_type = 1, tt->elem_type = ty, tt->shape = sp;
  Onnx__TypeProto *tp = arena_alloc(b->a, sizeof *tp);
  onnx__type_proto__init(tp);
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, tp->tensor_type = tt;
  Onnx__ValueInfoProto *vi = arena_alloc(b->a, sizeof *vi);
  onnx__value_info_proto__init(vi);
  vi->name = arena_strdup(b->a, name), vi->type = tp;
  return vi;
}

static inline void ob_input(OnnxBuild *b, const char *name, const char *dims) {
  b->ins[b->g.n_input++] = ob_value(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, dims);
}

static inline void ob_output(OnnxBuild *b, const char *name) {
  b->outs[b->g.n_output++] = ob_value(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, "");
}

/* A tensor of type ty and rank n dims d with raw little-endian data. */
static inline Onnx__TensorProto *ob_tensor(OnnxBuild *b, const char *name, int ty, int n, const int64_t *d,
                                           const void *data, size_t nbytes) {
  Onnx__TensorProto *t = arena_alloc(b->a, sizeof *t);
  onnx__tensor_proto__init(t);
  t->name = arena_strdup(b->a, name);
  t->has_data_type = 1, t->data_type = ty;
  t->n_dims = (size_t)n, t->dims = arena_alloc(b->a, (size_t)(n + 1) * sizeof *t->dims);
  memcpy(t->dims, d, (size_t)n * sizeof *d);
  if (data) {
    t->has_raw_data = 1, t->raw_data.len = nbytes, t->raw_data.data = arena_alloc(b->a, nbytes + 1);
    memcpy(t->raw_data.data, data, nbytes);
  }
  return t;
}

static inline Onnx__TensorProto *ob_init_f32(OnnxBuild *b, const char *name, int n, const int64_t *d, const float *v) {
  int64_t k = 1;
  for (int i = 0; i < n; i++) k *= d[i];
  return b->inits[b->g.n_initializer++] = ob_tensor(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, n, d, v, (size_t)k * 4);
}

static inline Onnx__TensorProto *ob_init_i64(OnnxBuild *b, const char *name, int n, const int64_t *v) {
  int64_t d = n;
  return b->inits[b->g.n_initializer++] = ob_tensor(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, &d, v, (size_t)n * 8);
}

static inline Onnx__NodeProto *ob_node(OnnxBuild *b, const char *op, const char *ins, const char *outs) {
  Onnx__NodeProto *np = arena_alloc(b->a, sizeof *np);
  onnx__node_proto__init(np);
  np->op_type = arena_strdup(b->a, op);
  np->name = arena_printf(b->a, "%s_%zu", op, b->g.n_node);
  np->input = ob_split(b, ins, &np->n_input);
  np->output = ob_split(b, outs, &np->n_output);
  np->attribute = arena_alloc(b->a, 8 * sizeof *np->attribute);
  return b->nodes[b->g.n_node++] = np;
}

static inline Onnx__AttributeProto *ob_attr(OnnxBuild *b, Onnx__NodeProto *np, const char *name, int type) {
  Onnx__AttributeProto *at = arena_alloc(b->a, sizeof *at);
  onnx__attribute_proto__init(at);
  at->name = arena_strdup(b->a, name);
  at->has_type = 1, at->type = type;
  return np->attribute[np->n_attribute++] = at;
}

static inline void ob_attr_i(OnnxBuild *b, Onnx__NodeProto *np, const char *name, int64_t v) {
  Onnx__AttributeProto *at = ob_attr(b, np, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
  at->has_i = 1, at->i = v;
}

static inline void ob_attr_f(OnnxBuild *b, Onnx__NodeProto *np, const char *name, float v) {
  Onnx__AttributeProto *at = ob_attr(b, np, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
  at->has_f = 1, at->f = v;
}

static inline void ob_attr_s(OnnxBuild *b, Onnx__NodeProto *np, const char *name, const char *v) {
  Onnx__AttributeProto *at = ob_attr(b, np, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
  at->has_s = 1, at->s.data = (uint8_t *)arena_strdup(b->a, v), at->s.len = strlen(v);
}

static inline void ob_attr_ints(OnnxBuild *b, Onnx__NodeProto *np, const char *name, int n, const int64_t *v) {
  Onnx__AttributeProto *at = ob_attr(b, np, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
  at->n_ints = (size_t)n, at->ints = arena_alloc(b->a, (size_t)(n + 1) * sizeof *at->ints);
  memcpy(at->ints, v, (size_t)n * sizeof *v);
}

/* The packed model (arena); *len its bytes. */
static inline uint8_t *ob_pack(OnnxBuild *b, size_t *len) {
  *len = onnx__model_proto__get_packed_size(&b->m);
  uint8_t *buf = arena_alloc(b->a, *len + 1);
  onnx__model_proto__pack(&b->m, buf);
  return buf;
}

#endif
