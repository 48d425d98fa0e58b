/*
 * importer.h — the ONNX importer's state, shared by the model reader
 * (import.c), the per-op conversions (import_ops.c) and the .dl writer
 * (dlwrite.c).
 *
 * Every ONNX value name maps to one ImValue: a node of the dlc graph under
 * construction, a value known at import time (ImConst: an initializer, a
 * Constant, or a shape computation folded from them), or both once a
 * known value has been used as a tensor operand (it then becomes a const
 * or a param of the graph).  All of it lives in the importer's arena.
 */
#ifndef DLC_ONNX_IMPORTER_H
#define DLC_ONNX_IMPORTER_H

#include "onnx.pb-c.h"
#include "onnx/onnx.h"

/* A value known at import time, f32 or i64.  An i64 element may stand for
 * a symbolic dimension (sym[k] >= 0: the symbol's id), as Shape makes. */
typedef struct ImConst {
  DType dt;                  /* DT_F32 or DT_I64 */
  int rank;
  int64_t dims[IR_MAX_RANK];
  int64_t numel;
  float *f;
  int64_t *i;
  int *sym;                  /* NULL: no symbolic element */
  int frozen;                /* from a Constant node: a frozen param when used as a tensor */
} ImConst;

typedef struct ImValue {
  const char *name;          /* the ONNX name */
  int id;                    /* graph node, or -1 */
  ImConst *k;                /* known value, or NULL */
} ImValue;

/* A map of strings to ints (open addressing, in the arena). */
typedef struct ImMap {
  const char **keys;
  int *vals;
  int cap, n;
} ImMap;

typedef struct Importer {
  Arena *a;
  Graph *g;
  Diags *d;
  const char *path;          /* the model file, for messages */
  const char *dir;           /* its directory, for external data; NULL: none */
  int64_t opset;
  Onnx__GraphProto *gp;
  ImValue *vals;
  int nvals;
  ImMap byname;              /* ONNX name -> vals index */
  ImMap dlnames;             /* .dl names taken */
  Source src;                /* one line per ONNX node, for diagnostics */
  RtTensorSet *weights;
  const Attrs **given;       /* per graph node: the window attributes as set
                                (before the shape rule made them canonical), or NULL */
  int cap_given;
  struct Importer *outer;    /* the graph a Scan body is in, or NULL */
  const char *param_prefix;  /* a body's params: the weights' names are PREFIX.NAME */
  int depth;                 /* Scan bodies this graph is nested in */
  /* the node being converted */
  const Onnx__NodeProto *np;
  int ni;
  SrcLoc loc;
} Importer;

int im_map_get(const ImMap *m, const char *key);
void im_map_put(Arena *a, ImMap *m, const char *key, int val);

/* Reports an error about the current node (its index, name and op) and
 * returns -1. */
int im_error(Importer *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A fresh .dl identifier from an ONNX name (sanitised, unique). */
const char *im_dl_name(Importer *im, const char *onnx_name);

/* Inputs of the current node: the count (trailing absent ones dropped),
 * the name of input k or NULL when absent. */
int im_nin(const Importer *im);
const char *im_in_name(const Importer *im, int k);
/* Input k as a graph node (a known value becomes a const or a param);
 * -1 after an error. */
int im_tensor(Importer *im, int k);
/* Input k as a known value, or NULL after an error naming what (e.g.
 * "shape") when it is absent or computed at run time. */
const ImConst *im_known(Importer *im, int k, const char *what);
/* A frozen param holding data (f32, of dims), computed at import time
 * (interpolation weights, positions); named after the node's output 0
 * and what.  Returns its id or -1. */
int im_frozen_param(Importer *im, const char *what, int rank, const int64_t *dims, const float *data);
/* Input k's known value, or NULL when it is absent or not known (no error). */
const ImConst *im_known_opt(Importer *im, int k);

/* Attributes of the current node: each returns 0 (absent: *out = def) or
 * -1 after an error when the attribute has another type. */
const Onnx__AttributeProto *im_attr(const Importer *im, const char *name);
int im_attr_int(Importer *im, const char *name, int64_t def, int64_t *out);
int im_attr_float(Importer *im, const char *name, double def, double *out);
int im_attr_str(Importer *im, const char *name, const char *def, const char **out);
/* *n = -1 when absent; error when there are more than max. */
int im_attr_ints(Importer *im, const char *name, int64_t *v, int max, int *n);

/* Builds op over in[] at the current node (the shape rule runs); the node
 * is named after output k of the ONNX node.  Returns the id or -1. */
int im_op(Importer *im, OpKind op, const int *in, int nin, const Attrs *at, int k);
/* Binds output k of the current node to graph node id / to a known value. */
int im_set_out(Importer *im, int k, int id);
int im_set_out_known(Importer *im, int k, ImConst *c);
/* A TensorProto as a known value (what names it in messages), or NULL
 * after an error. */
ImConst *im_tensor_known(Importer *im, const Onnx__TensorProto *t, const char *what);
/* A known i64 vector of n elements (arena). */
ImConst *im_known_i64(Importer *im, int n);

/* Imports a Scan body: sub->gp into sub->g (both set, like a, d, path,
 * weights, outer, param_prefix and src.path), its graph inputs bound to
 * the nodes ids[] (the caller made them: the body's inputs in_names[]).
 * Values of the enclosing graphs that the body reads must be known
 * (initializers, Constants): they become the body's params.  Returns 0 or
 * -1 after an error. */
int im_subgraph(Importer *sub, const char *const *in_names, const int *ids, int nin);
/* Reports an error about the model as a whole; returns -1. */
int im_model_error(Importer *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Scan (import_scan.c). */
int im_cv_scan(Importer *im);

/* Converts the current node; returns 0 or -1 after an error. */
int im_convert_node(Importer *im);

/* The graph as .dl text (an rt_x block): header is a comment to put
 * first; given[id], when not NULL, are node id's attributes to write. */
char *im_write_dl(const Graph *g, const Attrs *const *given, const char *header);

#endif
