/*
 * driver.h — the subcommands of the dlc executable (driver/).
 */
#ifndef DLC_DRIVER_H
#define DLC_DRIVER_H

#include "frontend/frontend.h"
#include "passes/passes.h"

int dlc_usage(const char *text, int status);
const char *dlc_flag(int argc, char **argv, int *i, const char *name, int *missing);
/* --no-fuse, --no-tile or -O0 (both) sets its switch and returns 1; any
 * other argument returns 0. */
int dlc_opt_flag(const char *arg, int *no_fuse, int *no_tile);
int dlc_parse_max(Graph *g, const char *spec, Diags *d);
void dlc_default_max(Model *m);
int dlc_load_model(Model *m, const char *path, const char *const *max, int nmax, Diags *d);

/* Emits p as C into cpath and its header beside it (atomically). */
struct Program;
int dlc_write_c(const struct Program *p, const char *cpath, const RtTensorSet *embed, const RtEncoded *extra,
                int nextra, Diags *d);
/* ... with the functions that drive named train sections (NULL: none). */
struct CgSections;
int dlc_write_c_sections(const struct Program *p, const char *cpath, const RtTensorSet *embed,
                         const struct CgSections *sections, const RtEncoded *extra, int nextra, Diags *d);
int dlc_cmd_repl(int argc, char **argv);
int dlc_cmd_eval(int argc, char **argv);
/* dlc sample: text from a character-level language model (sample.c). */
int dlc_cmd_sample(int argc, char **argv);
/* Every integer input of g (vals, per node) that indexes a gather or
 * index_select (embedding) through views holds values within that op's
 * axis (idcheck.c): 0, or -1 with an error at the op's line naming the
 * first value out of range, its sample and position. */
int dlc_check_input_ids(const Graph *g, const RtTensor *vals, Diags *d);
/* The REPL's generate ARGS (dlc sample's --prime, --length, --temperature,
 * --seed, --data): text from the model that path and text describe with
 * weights params, the vocabulary vocab (n = 0: its corpus's), on stdout.
 * 0, or -1 after a message. */
int dlc_generate(const char *path, const char *text, RtTensorSet *params, const RtVocab *vocab, int argc, char **argv,
                 Diags *d);
/* dlc import: an ONNX model as .dl and safetensors (import.c). */
int dlc_cmd_import(int argc, char **argv);
/* Loads an ONNX model as the .dl text dlc import writes, its initializers
 * in m->weights. */
int dlc_load_onnx(Model *m, const char *path, Diags *d);
/* Loads a model for a command that needs its training section (verb:
 * "fine-tune", "evaluate"): a .dl file, or an ONNX model, which has none,
 * so that is an error saying how to give it one.  Returns 0 or -1. */
int dlc_load_trainable(Model *m, const char *path, const char *verb, Diags *d);
/* Adds to set a copy of each of m's own weights that set lacks. */
int dlc_copy_weights(const Model *m, RtTensorSet *set, Diags *d);
/* dlc export: the inference graph as ONNX (export.c). */
int dlc_cmd_export(int argc, char **argv);
/* --data DIR | fashion_mnist:DIR | idx:I,L | csv:F | npy:X,Y into cfg. */
struct TrainConfig;
int dlc_parse_data_spec(const char *spec, struct TrainConfig *cfg, Diags *d);

int dlc_cmd_run(int argc, char **argv, const char *usage);
int dlc_cmd_train(int argc, char **argv);
/* dlc check's lines on m's named train sections (each one's optimizer,
 * steps per round and trainable parameters), an rt_x block; NULL when
 * it has none. */
char *dlc_describe_sections(const Model *m);
/* The float + - * / one call of f performs with the symbols at syms (each
 * lane counts; flops.c says what else does not); *exact is 0 when some
 * loop's extent could not be evaluated (it then counts one trip). */
struct Func;
int64_t dlc_flops(const struct Func *f, const int64_t *syms, int *exact);
/* Writes the standalone training C for m to path (and its header). */
int dlc_emit_train(Model *m, const char *path, const PassOpts *po, Diags *d);

#endif
