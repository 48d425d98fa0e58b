/*
 * onnx.h — dlc's graphs as ONNX models (onnx/).
 *
 * onnx_export writes an inference graph as an ONNX ModelProto (protobuf,
 * through protobuf-c and the onnx.proto the system ships; the C code is
 * generated at build time): inputs with their symbolic dimensions as named
 * dynamic axes, parameters as initializers, every op through its row of
 * ir/onnx.def, values named as in the .dl source, and each node's
 * doc_string its "file.dl:line".
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

#endif
