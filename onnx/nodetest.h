/*
 * nodetest.h — ONNX's backend node tests run through dlc (onnx/nodetest.c).
 *
 * A node test is a directory holding model.onnx (usually one node) and
 * test_data_set_N/ directories of input_K.pb and output_K.pb
 * TensorProtos.  A test runs the model through dlc's import, then on one
 * backend (the reference interpreter, the emitted C compiled, or the LLVM
 * JIT), on every data set, and compares each output with ONNX's
 * tolerance.  The conformance command (onnx/node_tests_main.c,
 * scripts/onnx_node_tests.sh) and the suite's subset use it.
 */
#ifndef DLC_ONNX_NODETEST_H
#define DLC_ONNX_NODETEST_H

#include <stddef.h>

/* ONNX's tolerance for node tests: |got - want| <= ATOL + RTOL |want|. */
#define NODETEST_RTOL 1e-3
#define NODETEST_ATOL 1e-7

typedef enum NodeTestBackend { NT_INTERP, NT_C, NT_JIT, NT_NBACKENDS } NodeTestBackend;

typedef enum NodeTestStatus {
  NT_PASS,
  NT_FAIL,      /* a wrong answer, or an error after the import succeeded */
  NT_UNSUP,     /* dlc's import refuses the model (op, attribute or dtype) */
} NodeTestStatus;

/* What a test is: the op it tests and whether it is a float test. */
typedef struct NodeTestInfo {
  char op[64];     /* the op type ("Softmax"; "Softmax (expanded)" for a
                      function's expansion; else its last node's op) */
  int is_float;    /* every input and output of data set 0 is FLOAT */
} NodeTestInfo;

/* Fills info for the test in dir; returns 0, or -1 with why. */
int nodetest_describe(const char *dir, NodeTestInfo *info, char *why, size_t nwhy);

/* Runs the test in dir on backend b; why gets the reason of a FAIL or an
 * UNSUP (one line). */
NodeTestStatus nodetest_run(const char *dir, NodeTestBackend b, char *why, size_t nwhy);

const char *nodetest_backend_name(NodeTestBackend b);

#endif
