/*
 * ir.h — dlc's dataflow-graph IR, its diagnostics and its arena.
 *
 * A Graph is an array of Nodes in topological order (every operand id is
 * smaller than the node's own id), so the array order is also a valid
 * schedule.  Nodes refer to each other by integer ids.  Building a node runs
 * its op's shape rule (ir_op): a graph in memory is always well-formed, and
 * ir_verify re-checks that after every pass.
 *
 * Shapes are static, except that a dimension may be a symbol (the batch N)
 * bound at run time: a Dim >= 0 is an extent, a Dim < 0 is symbol -d-1 of
 * the graph's symbol table, whose largest value is fixed at compile time.
 */
#ifndef DLC_IR_H
#define DLC_IR_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/rt.h"

#define IR_MAX_RANK 6
#define IR_MAX_SYMS 8

/* --- internal errors ------------------------------------------------------ */
_Noreturn void ir_internal_error(const char *file, int line, const char *msg);
#define IR_ASSERT(c) ((c) ? (void)0 : ir_internal_error(__FILE__, __LINE__, #c))

/* --- phase timing (phase.c) ------------------------------------------------ */
/* With a stream set, ir_phase_end(name, ir_phase_start()) prints the
 * thread CPU seconds between the two calls as "time: NAME S"; without
 * one (the default) both do nothing. */
void ir_phase_enable(FILE *to);
double ir_phase_start(void);
void ir_phase_end(const char *name, double start);
/* The same in wall-clock seconds, printed as "wall: NAME S" (for work
 * spread over threads, such as the JIT's parallel compile). */
double ir_wall_start(void);
void ir_wall_end(const char *name, double start);

/* --- arena ------------------------------------------------------------------ */
typedef struct ArenaBlock ArenaBlock;
typedef struct Arena {
  ArenaBlock *head;
  char *cur, *end;
} Arena;

void arena_init(Arena *a);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n);          /* zeroed, 16-aligned */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Moves src's blocks into dst, to be freed with it; src is left empty. */
void arena_adopt(Arena *dst, Arena *src);

/* --- diagnostics ------------------------------------------------------------ */
typedef struct Source {
  const char *path;
  const char *text;   /* NUL-terminated */
} Source;

typedef struct SrcLoc {
  const Source *src;  /* NULL: no location (made by a pass) */
  int line, col;      /* 1-based */
} SrcLoc;

typedef struct Diags {
  FILE *out;
  int nerrors;
  int max_errors;     /* stop reporting after this many (0: 20) */
} Diags;

void diag_init(Diags *d, FILE *out);
/* "path:line:col: error: msg", the source line and a caret. */
void diag_error(Diags *d, SrcLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_note(Diags *d, SrcLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_verror(Diags *d, SrcLoc loc, const char *kind, const char *fmt, va_list ap);
/* A message about a file or flag, without a source line: "path: error: msg". */
void diag_plain(Diags *d, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- ops -------------------------------------------------------------------- */
enum {
  OPF_SOURCE = 1 << 0,
  OPF_ELEMWISE = 1 << 1,
  OPF_DIFF = 1 << 2,
  OPF_VIEW = 1 << 3,
  OPF_FLOAT = 1 << 4,
  OPF_INTERNAL = 1 << 5,
  OPF_EFFECT = 1 << 6,
  OPF_RANDOM = 1 << 7,
};

typedef enum OpKind {
#define OP(id, name, mn, mx, flags, fam, attrs) OP_##id,
#include "ir/ops.def"
#undef OP
  OP_COUNT
} OpKind;

typedef struct OpInfo {
  const char *name;
  int min_in, max_in;
  unsigned flags;
  int family;               /* AttrFamily of its attributes */
  const char *attrs;
} OpInfo;

extern const OpInfo ir_ops[OP_COUNT];
/* The op named name, or -1. */
int ir_op_lookup(const char *name);

/* --- shapes ----------------------------------------------------------------- */
typedef int64_t Dim;
#define DIM_SYM(i) ((Dim) - (i)-1)
#define DIM_IS_SYM(d) ((d) < 0)
#define DIM_SYM_ID(d) ((int)(-(d)-1))
/* In a reshape target: the one dimension to infer (written -1 in .dl). */
#define DIM_INFER INT64_MIN

typedef struct Shape {
  int rank;
  Dim d[IR_MAX_RANK];
} Shape;

/* --- checked size arithmetic -----------------------------------------------
 * Every element count, byte count, extent and offset is computed through
 * these.  ir_ckd_* set *r and return 0, or return 1 when the exact result
 * does not fit in int64 (as C23's ckd_add).  Sizes are never negative, so
 * ir_size_* return -1 for a negative operand or an overflow: -1 flows
 * through a chain of steps and is checked once at its end.
 *
 * IR_MAX_TENSOR_BYTES bounds every tensor (with its symbols at their
 * largest values) and every arena: 1 TiB, far above any model that fits a
 * machine, and low enough that sums of a whole graph's sizes stay exact. */
#define IR_MAX_TENSOR_BYTES ((int64_t)1 << 40)
#define IR_MAX_TENSOR_BYTES_STR "1 TiB"

static inline int ir_ckd_add(int64_t *r, int64_t a, int64_t b) { return __builtin_add_overflow(a, b, r); }
static inline int ir_ckd_sub(int64_t *r, int64_t a, int64_t b) { return __builtin_sub_overflow(a, b, r); }
static inline int ir_ckd_mul(int64_t *r, int64_t a, int64_t b) { return __builtin_mul_overflow(a, b, r); }
static inline int64_t ir_size_add(int64_t a, int64_t b) {
  int64_t r;
  return a < 0 || b < 0 || ir_ckd_add(&r, a, b) ? -1 : r;
}
static inline int64_t ir_size_mul(int64_t a, int64_t b) {
  int64_t r;
  return a < 0 || b < 0 || ir_ckd_mul(&r, a, b) ? -1 : r;
}

typedef struct Graph Graph;

/* --- attributes ------------------------------------------------------------ */
/* Optimizer hyperparameters, by index into AttrHyper.hp (torch.optim's names). */
enum {
  HP_LR_SCALE,      /* this parameter group's lr / the base lr */
  HP_MOMENTUM,
  HP_DAMPENING,
  HP_NESTEROV,
  HP_WEIGHT_DECAY,
  HP_BETA1,
  HP_BETA2,
  HP_EPS,
  HP_LR_DECAY,
  HP_DECOUPLED,     /* AdamW: weight decay applied to the parameter */
  HP_COUNT
};

#define ATTR_MAX INT64_MAX

/* A list attribute of the convolution and pooling ops and of pad: the n
 * integers as given (n = 0: absent, the op's default), canonical after the
 * shape rule (ir/conv.h says which form each op keeps).  pad takes two
 * entries per dimension, so a list holds up to IR_MAX_LIST. */
#define IR_MAX_LIST (2 * IR_MAX_RANK)
typedef struct IntList {
  int n;
  int64_t v[IR_MAX_LIST];
} IntList;

/* How padded positions read: conv2d's padding_mode (zeros is constant 0)
 * and pad's mode share these values. */
typedef enum PadMode { PAD_CONSTANT, PAD_REFLECT, PAD_REPLICATE } PadMode;
typedef enum UpsampleMode { UP_NEAREST, UP_BILINEAR } UpsampleMode;

/* A node's attributes are a tagged union: kind says which family's struct
 * is live, and every op names its family in ops.def (ir_op_family), so a
 * read is spelled with the family (n->attr.window.stride) and ir_verify
 * checks the tag.  The families, by what their ops read:
 *   none     sources, matmul, linear, global_avg_pool
 *   scalar   const (value), the elementwise ops (slope, alpha, exponent,
 *            beta/threshold, min/max in f and f2; gelu's approximate in
 *            mode), dropout (p), layer_norm (eps in f, ndim in mode),
 *            tril (value in f, diagonal in mode)
 *   axis     softmax, concat, slice, flatten, maxout and their gradients:
 *            axis, start/end/step (flatten: start and end axes), pieces
 *   dims     reshape (shape), transpose (perm), sum/mean/max and max_grad
 *            (axes, keepdim): nlist entries of list, -1 when not given
 *   loss     the losses and cross_entropy_grad: reduction, margin
 *   expand   expand_as: mean
 *   window   convolutions and pooling (and their gradients)
 *   upsample scale_factor, mode (UpsampleMode)
 *   pad      pad, pad_grad: pads, mode (PadMode), value
 *   hyper    optimizer steps, batchnorm, running_update: hp[] by HP_*,
 *            rmsprop's alpha, running_update's unbiased
 *   random   dropout_train: p, seed, salt; the random ops (OPF_RANDOM):
 *            seed, salt, shape
 *   ew_grad  the elementwise gradient: the forward op (of), the operand
 *            (arg), the op's operand count (nin) and its scalar attributes
 *   scan     scan and scan_out: the body graph, counts, axis, direction,
 *            the projected output (ir/scan.c) */
typedef enum AttrFamily {
  AK_NONE, AK_SCALAR, AK_AXIS, AK_DIMS, AK_LOSS, AK_EXPAND, AK_WINDOW, AK_UPSAMPLE, AK_PAD, AK_HYPER,
  AK_RANDOM, AK_EW_GRAD, AK_SCAN,
} AttrFamily;

typedef struct AttrScalar {
  double f;                 /* slope, alpha, exponent, value, beta, min, p */
  double f2;                /* a second number: threshold, max */
  int mode;                 /* gelu: approximate (0 none, 1 tanh); layer_norm: ndim;
                             * tril: diagonal */
} AttrScalar;

typedef struct AttrAxis {
  int64_t axis;             /* softmax, log_softmax, concat, slice, maxout */
  int64_t start, end, step; /* slice; flatten uses start and end (axes) */
  int64_t pieces;           /* maxout */
} AttrAxis;

typedef struct AttrDims {
  int nlist;                /* shape, perm, axes; -1 when not given */
  int keepdim;              /* sum, mean, max */
  Dim list[IR_MAX_RANK];
} AttrDims;

typedef struct AttrLoss {
  int reduction;            /* RED_MEAN, RED_SUM, RED_NONE */
  double margin;            /* triplet_margin_loss */
  int64_t ignore_index;     /* cross_entropy, nll_loss: the target that counts for nothing */
} AttrLoss;

typedef struct AttrExpand {
  int mean;                 /* divide by the number of elements summed */
} AttrExpand;

typedef struct AttrWindow {
  IntList stride, padding, dilation, kernel, output_padding;
  int64_t groups;
  int mode;                 /* padding_mode (PadMode) */
  int ceil_mode, count_include_pad;
} AttrWindow;

typedef struct AttrUpsample {
  IntList scale;
  int mode;                 /* UpsampleMode */
} AttrUpsample;

typedef struct AttrPad {
  IntList pads;             /* two per dimension, from the last: lo, hi */
  int mode;                 /* PadMode */
  double value;             /* mode constant */
} AttrPad;

typedef struct AttrHyper {
  double hp[HP_COUNT];      /* optimizer hyperparameters; batchnorm's and
                             * running_update's momentum, batchnorm's eps */
  double alpha;             /* rmsprop_step */
  int unbiased;             /* running_update */
} AttrHyper;

typedef struct AttrRandom {
  double p;
  int64_t seed, salt;       /* the run's seed, the node's salt */
  IntList shape;            /* rand, randn: the result's shape (Dims) */
} AttrRandom;

/* The salt ir_op gives a random op built with salt 0: its id plus this,
 * so each draw of a graph is its own stream, apart from dropout's (whose
 * salts are node ids). */
#define IR_RANDOM_SALT_BASE ((int64_t)1 << 40)

typedef struct AttrEwGrad {
  AttrScalar fwd;           /* the forward node's attributes */
  int of, arg, nin;         /* the elementwise op, the operand, the op's operand count */
} AttrEwGrad;

/* A scan's body is a graph whose INPUT nodes are, in order, the nseq
 * per-step slices of the sequences and the nstate states, whose PARAM
 * nodes are, in order, the scan's constant operands (after the sequences
 * and the initial states), and whose outputs are the per-step values
 * (ny of them) then the nstate new states.  The body lives in the arena
 * of the graph holding the scan (ir_scan_body_adopt). */
typedef struct AttrScan {
  const Graph *body;
  int nseq, nstate;
  int64_t axis;             /* the sequences' step axis, also the stacking axis */
  int reverse;              /* steps run from the last to the first */
  int index;                /* scan_out: which result (ir_scan_result) */
} AttrScan;

typedef struct Attrs {
  AttrFamily kind;
  union {
    AttrScalar scalar;
    AttrAxis axis;
    AttrDims dims;
    AttrLoss loss;
    AttrExpand expand;
    AttrWindow window;
    AttrUpsample upsample;
    AttrPad pad;
    AttrHyper hyper;
    AttrRandom random;
    AttrEwGrad ew_grad;
    AttrScan scan;
  };
} Attrs;

/* The largest family (window: five IntLists) bounds every node's size. */
#define IR_ATTRS_MAX_BYTES 560
_Static_assert(sizeof(Attrs) <= IR_ATTRS_MAX_BYTES, "a node's attributes stay within IR_ATTRS_MAX_BYTES");

/* The attribute family of op's nodes (ops.def). */
AttrFamily ir_op_family(OpKind op);
/* "window", or "invalid" for a value that is no family. */
const char *ir_attr_family_name(int family);

typedef enum Reduction { RED_MEAN, RED_SUM, RED_NONE } Reduction;

/* ATTR_ENUM values are written as names in .dl ("reduction=sum"); choices
 * lists them separated by '|', in the order of their enum. */
typedef enum AttrKind { ATTR_FLOAT, ATTR_INT, ATTR_BOOL, ATTR_LIST, ATTR_ENUM } AttrKind;

typedef struct AttrSpec {
  const char *name;
  AttrKind kind;
  int required;
  const char *deflt;        /* text of the default, NULL when required */
  const char *choices;      /* ATTR_ENUM: "mean|sum|none" */
} AttrSpec;

/* The attributes op accepts, in positional order; returns their count. */
int ir_attr_specs(OpKind op, AttrSpec *out, int max);
/* Attrs with every default of op filled in. */
Attrs ir_attrs_default(OpKind op);
/* Sets attribute name of a; returns 0, or -1 when op has no such attribute
 * or the value has the wrong kind. */
int ir_attr_set_int(Attrs *a, OpKind op, const char *name, int64_t v);
int ir_attr_set_float(Attrs *a, OpKind op, const char *name, double v);
/* The index into AttrHyper.hp of hyperparameter name, or -1. */
int ir_attr_hp_index(const char *name);
/* Sets an ATTR_ENUM attribute by the name of its value. */
int ir_attr_set_enum(Attrs *a, OpKind op, const char *name, const char *value);
/* A list holds at most IR_MAX_RANK entries (shape, perm, axes), or
 * IR_MAX_LIST for an IntList attribute (ir_attr_list_max says which). */
int ir_attr_set_list(Attrs *a, OpKind op, const char *name, const Dim *v, int n);
int ir_attr_list_max(OpKind op, const char *name);
/* Attribute name of a as .dl writes it ("2", "[1, 2]", "sum", "all"),
 * symbols named from g; returns buf, or NULL when op has no such attribute. */
const char *ir_attr_format(const Graph *g, const Attrs *a, OpKind op, const char *name, char *buf,
                           size_t len);

/* --- the graph ------------------------------------------------------------- */
typedef struct ParamInit {
  RtInitKind kind;
  double a, b;
  int64_t zero_row;   /* 1 + a row (along axis 0) zeroed after filling
                         (embedding's padding_idx); 0: none */
} ParamInit;

typedef struct Node {
  OpKind op;
  DType dtype;
  Shape shape;
  int nin;
  int *in;            /* operand ids, arena-allocated */
  Attrs attr;
  SrcLoc loc;
  const char *name;   /* inputs, params: their name; others: the .dl variable or NULL */
  ParamInit init;     /* params */
  int frozen;         /* params: no gradient */
  int buffer;         /* params: a non-trainable buffer (batch norm's running statistics) */
  int noise;          /* inputs: NOISE_RAND or NOISE_RANDN when training feeds them with noise */
} Node;

/* `input z: f32[N, 64] = randn`: training draws the input (a random op in
 * the train and eval steps); inference takes it as given. */
enum { NOISE_NONE, NOISE_RAND, NOISE_RANDN };

typedef struct Symbol {
  const char *name;
  int64_t max;        /* largest value the compiled code accepts */
  SrcLoc loc;
} Symbol;

typedef struct Output {
  const char *name;
  int id;
} Output;

typedef struct Graph {
  Arena arena;
  Diags *diags;
  const char *name;
  Node *nodes;
  int nnodes, cap;
  Output *outputs;
  int noutputs, outcap;
  Symbol syms[IR_MAX_SYMS];
  int nsyms;
} Graph;

void ir_graph_init(Graph *g, const char *name, Diags *d);
void ir_graph_free(Graph *g);

/* The symbol named name (declared on first use, max 0 until set), or -1
 * when the table is full. */
int ir_symbol(Graph *g, const char *name, SrcLoc loc);
int ir_symbol_find(const Graph *g, const char *name);

int ir_input(Graph *g, const char *name, DType dt, const Shape *s, SrcLoc loc);
int ir_param(Graph *g, const char *name, DType dt, const Shape *s, ParamInit init,
             SrcLoc loc);
int ir_const(Graph *g, double value, SrcLoc loc);
/* Optimizer state or running statistics: persistent, zero at the start. */
int ir_state(Graph *g, const char *name, const Shape *s, SrcLoc loc);
/* Copies node id of src into dst with operands renamed through map
 * (src id -> dst id); a computed node goes through ir_op again. */
int ir_clone_node(Graph *dst, const Graph *src, int id, const int *map);
/* dst gets src's name and symbol table (dst initialised, empty). */
void ir_clone_header(Graph *dst, const Graph *src);
/* Builds op over operands in[0..nin): checks arity, dtypes and the shape
 * rule.  Returns the new id, or -1 after reporting an error to g->diags. */
int ir_op(Graph *g, OpKind op, const int *in, int nin, const Attrs *a, SrcLoc loc);
int ir_output(Graph *g, const char *name, int id);

int ir_find_input(const Graph *g, const char *name);
int ir_find_param(const Graph *g, const char *name);
int ir_find_output(const Graph *g, const char *name);

/* Shape helpers.  Element and byte counts are -1 when they overflow int64;
 * a graph that passed ir_check_sizes has none over IR_MAX_TENSOR_BYTES. */
int64_t ir_numel_max(const Graph *g, const Shape *s);       /* symbols at max */
int64_t ir_dim_value(const Graph *g, Dim d, const int64_t *symvals);
int64_t ir_numel(const Graph *g, const Shape *s, const int64_t *symvals);
/* Bytes of a dt tensor of shape s, symbols at symvals (NULL: at their max;
 * IR_SYMS_AS_ONE: each symbol counts 1, the size per unit of them). */
#define IR_SYMS_AS_ONE ((const int64_t *)ir_syms_as_one)
extern const int64_t ir_syms_as_one[IR_MAX_SYMS];
int64_t ir_nbytes(const Graph *g, DType dt, const Shape *s, const int64_t *symvals);
/* Writes into msg why a dt tensor of shape s cannot exist (its size
 * overflows or passes IR_MAX_TENSOR_BYTES, symbols at symvals) and returns
 * -1, or returns 0. */
int ir_size_check(const Graph *g, DType dt, const Shape *s, const int64_t *symvals, char *msg, size_t len);
/* Checks every node with the symbols at their max; reports each tensor
 * over the limit at its source line and returns how many there are. */
int ir_check_sizes(const Graph *g, Diags *d);
int ir_shape_eq(const Shape *a, const Shape *b);
/* "f32[N, 784]" */
const char *ir_type_str(const Graph *g, DType dt, const Shape *s, char *buf, size_t len);
/* Number of parameters (elements) of all params. */
int64_t ir_param_count(const Graph *g);

/* Shape inference on its own (used by ir_op and ir_verify): fills *out and
 * returns 0, or writes a message into msg and returns -1. */
int ir_infer(const Graph *g, OpKind op, const int *in, int nin, const Attrs *a,
             DType *dt, Shape *out, char *msg, size_t msglen);

/* The uniform random number in [0, 1) of counter ctr under key: a
 * splitmix64 hash, so any element of any step can be drawn on its own, in
 * the interpreter and in emitted code alike.  ir_random_key mixes a seed
 * and a salt (one per random node). */
uint64_t ir_random_key(uint64_t seed, uint64_t salt);
float ir_random_uniform(uint64_t key, uint64_t ctr);
/* A standard normal by Box-Muller from the uniforms u1, u2 of counters
 * ctr and ctr + 1, in float as the lowered kernels compute it:
 * sqrt(-2 log(1 - u1)) * cos(2 pi u2). */
float ir_random_normal(uint64_t key, uint64_t ctr);
/* The counter of element i of a draw at step s: (s << 32) + i; a normal
 * takes the pair at 2i (so a draw holds at most 2^31 elements). */
#define IR_RANDOM_STEP_SHIFT 32
#define IR_TWO_PI 6.28318530717958647692

/* --- recurrence (scan.c) ----------------------------------------------------
 * A scan node's results, numbered for scan_out's index: the ny stacked
 * per-step outputs (each a step's value with the steps inserted at axis),
 * the nstate final states, then the nstate stacked states each step read
 * (what the reverse scan of the gradient reads).  The scan node itself
 * holds no data (f32[] by convention); only scan_out nodes are read. */
typedef enum ScanResultKind { SCAN_STACKED, SCAN_FINAL, SCAN_STATES } ScanResultKind;
int ir_scan_nresults(const AttrScan *a);
int ir_scan_ny(const AttrScan *a);
ScanResultKind ir_scan_result_kind(const AttrScan *a, int index, int *which);
/* The number of steps: the sequences' extent along the axis. */
Dim ir_scan_steps(const Graph *g, const Node *scan);
/* The type of result index of scan (a node of g). */
void ir_scan_result_type(const Graph *g, const Node *scan, int index, Shape *s);
/* The PARAM nodes of body in order (ids into ids[]); returns their count. */
int ir_scan_params(const Graph *body, int *ids, int max);
/* Moves body (an initialised graph, built apart) into owner's arena: it
 * lives and is freed with owner.  Returns the moved graph. */
const Graph *ir_scan_body_adopt(Graph *owner, Graph *body);
/* A deep copy of body living in owner's arena. */
const Graph *ir_scan_body_clone(Graph *owner, const Graph *body);
/* Shape rules (infer.c calls them). */
int ir_scan_infer(const Graph *g, const int *in, int nin, AttrScan *a, Shape *out, char *msg, size_t len);
int ir_scan_out_infer(const Graph *g, const int *in, int nin, const AttrScan *a, DType *dt, Shape *out, char *msg,
                      size_t len);

/* --- parameter values (params.c) ------------------------------------------
 * ir_params_init adds to set every param of g that set does not have yet,
 * initialised from seed; ir_params_check checks that set holds every param
 * with the model's dtype and shape (path names the file in messages). */
RtStatus ir_params_init(const Graph *g, uint64_t seed, RtTensorSet *set, RtError *err);
RtStatus ir_params_check(const Graph *g, RtTensorSet *set, const char *path, RtError *err);

/* --- checking and printing -------------------------------------------------- */
/* Returns the number of problems found (each reported to d). */
int ir_verify(const Graph *g, Diags *d);
void ir_dump(const Graph *g, FILE *f);
void ir_dump_dot(const Graph *g, FILE *f);

/* --- the reference interpreter (interp.c) -----------------------------------
 * The plainest correct implementation of every op: the oracle every backend
 * is tested against.  vals has g->nnodes entries; the caller fills the
 * entries of INPUT and PARAM nodes (their dtype and shape must match the
 * node's type under symvals), the interpreter allocates and fills every
 * other entry.  The caller frees all entries with rt_tensor_free. */
/* The runtime call of the collectives dist_mean (kind IR_COLLECTIVE_MEAN)
 * and dist_sum (IR_COLLECTIVE_SUM): replaces the n floats of data, this
 * process's value, with the value over every process.  The interpreter
 * and the compiled code call it after computing the node's operand; with
 * none set, both ops are the identity (one process). */
typedef void (*IrCollective)(void *ctx, int kind, float *data, int64_t n);
#define IR_COLLECTIVE_MEAN 0
#define IR_COLLECTIVE_SUM 1

typedef struct InterpOpts {
  int training;        /* dropout and batch statistics (later ops) */
  uint64_t seed;
  IrCollective collective;  /* dist_mean, dist_sum; NULL: the identity */
  void *collective_ctx;
} InterpOpts;

/* Binds each symbol from the shapes of the INPUT tensors in vals, checking
 * that every use agrees; also checks every input's dtype and shape. */
RtStatus ir_bind_symbols(const Graph *g, const RtTensor *vals, int64_t *symvals, RtError *err);
RtStatus ir_interp(const Graph *g, RtTensor *vals, const int64_t *symvals, const InterpOpts *o,
                   RtError *err);
/* Runs scan node id (scan.c): fills vals[] of every scan_out node of g
 * that projects it; vals[id] itself is left as allocated. */
RtStatus ir_interp_scan(const Graph *g, int id, RtTensor *vals, const int64_t *symvals, const InterpOpts *o,
                        RtError *err);

#endif
