/*
 * onnx.h — dlc's graphs as ONNX models (onnx/).
 *
 * onnx_export writes an inference graph as an ONNX ModelProto (protobuf,
 * through protobuf-c and the onnx.proto the system ships; the C code is
 * generated at build time): inputs with their symbolic dimensions as named
 * dynamic axes, parameters as initializers, every op through its row of
 * ir/onnx.def, values named as in the .dl source, and each node's
 * doc_string its "file.dl:line".
 *
 * onnx_import reads an ONNX model back (import.c, import_ops.c,
 * dlwrite.c): every node is mapped onto dlc's ops (the rows of ir/onnx.def
 * read backwards; decompositions import as the ops they are made of) and
 * built with dlc's shape rules, and the graph is written as .dl text, one
 * line per node, with the initializers as the values of its params.
 */
#ifndef DLC_ONNX_H
#define DLC_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"

/* The opset every exported model imports (the default domain). */
#define ONNX_OPSET 17
/* The IR version of that opset (ONNX 1.12). */
#define ONNX_IR_VERSION 8

/* One row of ir/onnx.def. */
typedef struct OnnxOpInfo {
  const char *onnx;   /* the ONNX ops it becomes, or NULL: none */
  const char *note;
} OnnxOpInfo;

/* The row of op. */
const OnnxOpInfo *onnx_op_info(OpKind op);

/* Serialises g (an inference graph) with the parameter values of params
 * (every PARAM of g, with its dtype and shape: ir_params_check) into a
 * buffer *data of *len bytes (free it with rt_xfree).  Every op of g must
 * have an ONNX form: each one that has none is reported at its source line
 * and nothing is produced.  Returns 0, or -1 after diagnostics. */
int onnx_export(const Graph *g, RtTensorSet *params, uint8_t **data, size_t *len, Diags *d);

/* An ONNX model as a dlc model. */
typedef struct OnnxImport {
  char *text;           /* the model as .dl source (an rt_x block) */
  RtTensorSet weights;  /* the f32 value of every param of text, by its .dl name */
} OnnxImport;

/* The largest ONNX file read (protobuf's own limit). */
#define ONNX_MAX_FILE_BYTES ((size_t)2 << 30)
/* The most nodes, and the most inputs or outputs of one node, imported. */
#define ONNX_MAX_NODES 1000000
#define ONNX_MAX_NODE_IO 4096

/* Reads len bytes of an ONNX ModelProto; path names it in messages and is
 * where external data is found (relative to its directory; NULL: external
 * data is refused).  Returns 0, or -1 after diagnostics, out left empty. */
int onnx_import(const uint8_t *data, size_t len, const char *path, OnnxImport *out, Diags *d);
int onnx_import_file(const char *path, OnnxImport *out, Diags *d);
void onnx_import_free(OnnxImport *out);
/* Whether path names an ONNX model: ends in ".onnx". */
int onnx_is_model_path(const char *path);

#endif
