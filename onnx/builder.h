/*
 * builder.h — the ONNX graph under construction, shared by the exporter
 * (export.c) and the per-op conversions (convert.c).
 *
 * Every protobuf-c message is allocated in the builder's arena, so a
 * finished model is packed once and freed with the arena.  A conversion
 * appends nodes with ox_node and sets the attributes of the last one with
 * ox_attr_*; names of intermediate values are made unique by ox_fresh from
 * the name of the dlc value being converted.
 */
#ifndef DLC_ONNX_BUILDER_H
#define DLC_ONNX_BUILDER_H

#include "onnx.pb-c.h"
#include "onnx/onnx.h"

typedef struct OxBuilder {
  Arena *a;
  const Graph *g;
  const Node *cur;            /* the dlc node being converted */
  const char *cur_out;        /* the name its value gets */
  const char *doc;            /* "file.dl:line" of cur, or NULL */
  Onnx__NodeProto **nodes;
  int nnodes, capnodes;
  const char **names;         /* every value name used, for uniqueness */
  int nnames, capnames;
  const char *symdim[IR_MAX_SYMS]; /* a 1-element i64 tensor holding each symbol's value, once made */
  const char *const *vnames;  /* the ONNX name of every node of g */
  const Graph *top;           /* the model's graph (g is a scan body while one is written) */
  const char *const *top_names; /* the ONNX names of top's nodes */
} OxBuilder;

/* A conversion: writes node n (operand value names in[], result name out). */
typedef void OxConvertFn(OxBuilder *b, const Node *n, const char *const *in, const char *out);

/* Whether name is taken; records it (returns 0) when it is not. */
int ox_claim(OxBuilder *b, const char *name);
/* A new unique value name from base (base, base_1, base_2, ...). */
const char *ox_fresh(OxBuilder *b, const char *base);
/* Appends a node of type with nin inputs ("" for an absent optional one)
 * and one output, out or a fresh name when out is NULL; returns its name. */
const char *ox_node(OxBuilder *b, const char *type, const char *out, int nin, const char *const *in);
/* The same with nout outputs (out[0] names the node). */
Onnx__NodeProto *ox_node_n(OxBuilder *b, const char *type, int nin, const char *const *in, int nout,
                           const char *const *out);
const char *ox_node1(OxBuilder *b, const char *type, const char *out, const char *x);
const char *ox_node2(OxBuilder *b, const char *type, const char *out, const char *x, const char *y);
/* Attributes of the last node. */
void ox_attr_int(OxBuilder *b, const char *name, int64_t v);
void ox_attr_float(OxBuilder *b, const char *name, float v);
void ox_attr_str(OxBuilder *b, const char *name, const char *v);
void ox_attr_ints(OxBuilder *b, const char *name, const int64_t *v, int n);
/* A Constant node: an f32 scalar, an f32 vector, an i64 vector. */
const char *ox_const_f32(OxBuilder *b, float v);
const char *ox_const_f32s(OxBuilder *b, const float *v, int n);
const char *ox_const_i64s(OxBuilder *b, const int64_t *v, int n);
/* A 1-D i64 tensor holding shape s, for Reshape: a constant (with -1 for
 * its one symbolic dimension), or a Concat of the symbols' run-time values
 * (taken with Shape from a graph input) when there are several. */
const char *ox_shape(OxBuilder *b, const Shape *s);

/* Tensor element types of dtypes (TensorProto.DataType). */
int ox_dtype(DType dt);
/* A TensorProto of a dtype tensor of rank dims d, holding nbytes of data (borrowed). */
Onnx__TensorProto *ox_tensor(OxBuilder *b, const char *name, DType dt, int rank, const int64_t *d, const void *data,
                             size_t nbytes);

/* scan as an ONNX Scan node whose body is a subgraph (export.c); scan_out
 * writes nothing (the Scan node names its outputs after them). */
void ox_cv_scan(OxBuilder *b, const Node *n, const char *const *in, const char *out);
void ox_cv_scan_out(OxBuilder *b, const Node *n, const char *const *in, const char *out);

/* The conversion of each op (convert.c), NULL for none. */
OxConvertFn *ox_convert_fn(OpKind op);

#endif
