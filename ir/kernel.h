/*
 * kernel.h — the loop-level IR both emitters print.
 *
 * Lowering (passes/lower.c) turns each graph node into one or more Kernels:
 * loop nests over scalar statements that read and write Buffers.  Buffers
 * are the graph's storage after memory planning: function arguments (model
 * inputs and outputs), persistent parameters, and temporaries that live at
 * an offset in one static arena per element type.
 *
 * The level is deliberately small: counted loops from 0, scalar locals,
 * stores, and expressions (constants, loop variables, run-time symbols,
 * loads, unary/binary operators, select).  Everything an emitter needs is
 * explicit here, so the C emitter and the LLVM emitter make no decisions
 * of their own, and the optimisation passes (fusion, tiling,
 * vectorisation hints) rewrite this level rather than either emitter.
 * Trees are arena-allocated and referenced by pointer; buffers, loop
 * variables and locals by small integer ids.
 */
#ifndef DLC_KERNEL_H
#define DLC_KERNEL_H

#include "ir/ir.h"

typedef enum ExprKind {
  EX_FCONST,  /* f */
  EX_ICONST,  /* i */
  EX_VAR,     /* loop variable id */
  EX_SYM,     /* run-time value of symbol id (int64) */
  EX_LOCAL,   /* scalar local id */
  EX_LOAD,    /* buf[a] */
  EX_UNARY,   /* op a */
  EX_BINARY,  /* a op b */
  EX_SELECT,  /* a ? b : c (a is a comparison) */
  EX_CAST,    /* (type) a */
  EX_RAND,    /* f32 uniform in [0, 1) of counter a (i64) under key i: ir_random_uniform */
} ExprKind;

typedef enum UnOp {
  UN_NEG, UN_EXP, UN_LOG, UN_SQRT, UN_TANH, UN_ABS, UN_LOG1P, UN_EXPM1, UN_ERF, UN_ERFC,
} UnOp;

/* BIN_MAX and BIN_MIN on floats propagate NaN (a NaN operand gives NaN,
 * as torch.maximum), unlike C's fmaxf: emitters print them so. */
typedef enum BinOp {
  BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_MAX, BIN_MIN, BIN_POW, BIN_MOD,
  BIN_LT, BIN_LE, BIN_GT, BIN_GE, BIN_EQ, BIN_NE, BIN_AND,
} BinOp;

typedef struct Expr Expr;
struct Expr {
  ExprKind kind;
  DType type;         /* DT_F32 for float values, DT_I64 for indices/ints */
  int lanes;          /* 1: a scalar; n > 1: n values computed side by side */
  int op;             /* UnOp or BinOp */
  int id;             /* var, sym, local or buffer id */
  double f;
  int64_t i;
  Expr *a, *b, *c;    /* EX_LOCAL of a local array: a is the element index */
};

typedef enum StmtKind {
  ST_LOOP,    /* for (var = 0; var < extent; var += step) body */
  ST_STORE,   /* buf[index] = value */
  ST_LOCAL,   /* declare local id of type, = value (count > 0: an array, every element = value) */
  ST_ASSIGN,  /* local id = value; local id[index] = value for an array */
  ST_IF,      /* if (value) body else orelse */
} StmtKind;

/* What a loop promises and asks for.  The meaning of a program is always
 * that of running every loop serially in order; a kind adds a promise the
 * schedule checked (parallel, vector: iterations are independent) or a
 * request an emitter may honour (unroll width times).  reduce marks the
 * axis a reduction runs along (its iterations are not independent).  A
 * vector loop's body computes width lanes per iteration (step == width). */
typedef enum LoopKind { LOOP_SERIAL, LOOP_PARALLEL, LOOP_VECTOR, LOOP_UNROLL, LOOP_REDUCE } LoopKind;

typedef struct Stmt Stmt;
struct Stmt {
  StmtKind kind;
  Stmt *next;         /* next statement in the same block */
  int id;             /* loop var, local, or buffer */
  DType type;         /* ST_LOCAL */
  Expr *extent;       /* ST_LOOP */
  Stmt *body;         /* ST_LOOP; ST_IF: the statements run when value holds */
  Stmt *orelse;       /* ST_IF: the statements run when it does not, or NULL */
  Expr *index, *value;
  /* ST_LOOP: its kind; a stable axis id (lowering numbers the axes of a
   * kernel's iteration space, and a loop split from axis a keeps a); the
   * step of the loop variable (1 unless split); width as LoopKind says. */
  LoopKind loop;
  int axis;
  int64_t step;
  int width;
  int64_t count;      /* ST_LOCAL: 0 for a scalar, n for an array of n elements */
};

typedef enum BufKind {
  BUF_INPUT,    /* argument, read only */
  BUF_OUTPUT,   /* argument, written */
  BUF_PARAM,    /* persistent: trainable parameter */
  BUF_STATE,    /* persistent: optimizer state, running statistics */
  BUF_TEMP,     /* arena */
} BufKind;

typedef struct Buffer {
  BufKind kind;
  DType dtype;
  const char *name;   /* C identifier-safe is the emitter's job */
  Shape shape;        /* may hold symbols; size at their max */
  int64_t size;       /* elements at max symbol values */
  int64_t offset;     /* BUF_TEMP: element offset in its dtype's arena */
  int node;           /* graph node it holds (first), or -1 */
  int arg;            /* BUF_INPUT/OUTPUT: argument position; PARAM: index */
} Buffer;

typedef struct Kernel {
  const char *what;   /* "linear fc1" — printed as a comment */
  SrcLoc loc;         /* the .dl line it comes from */
  Stmt *body;
  int nvars, nlocals;
} Kernel;

/* One entry point of the generated code (forward, train_step, ...). */
typedef struct Func {
  const char *name;
  const Graph *g;     /* the graph it computes; symbols are the program's */
  int nargs;          /* inputs then outputs, by buffer id */
  int *args;
  Kernel *kernels;
  int nkernels, kcap;
} Func;

typedef struct Program {
  Arena arena;
  const Graph *g;     /* the model: its name and symbol table */
  const char *name;   /* C prefix, from the model name */
  Buffer *bufs;
  int nbufs, bcap;
  Func *funcs;
  int nfuncs, fcap;
  int64_t arena_size[DT_COUNT];   /* elements, after memory planning */
} Program;

void kir_program_init(Program *p, const Graph *g);
void kir_program_free(Program *p);
int kir_buffer(Program *p, BufKind kind, DType dt, const char *name, const Shape *s, int node);
Func *kir_func(Program *p, const char *name, const Graph *g);
Kernel *kir_kernel(Program *p, Func *f, const char *what, SrcLoc loc);

/* Expression and statement builders (arena-allocated). */
Expr *kx_f(Program *p, double v);
Expr *kx_i(Program *p, int64_t v);
Expr *kx_var(Program *p, int var);
Expr *kx_sym(Program *p, int sym);
Expr *kx_local(Program *p, int local, DType t);
Expr *kx_load(Program *p, int buf, Expr *index);
Expr *kx_un(Program *p, UnOp op, Expr *a);
Expr *kx_bin(Program *p, BinOp op, Expr *a, Expr *b);
Expr *kx_select(Program *p, Expr *cond, Expr *a, Expr *b);
Expr *kx_cast(Program *p, DType t, Expr *a);
Expr *kx_rand(Program *p, uint64_t key, Expr *counter);
/* Integer arithmetic for indices, folding constants (0 + x = x, 1 * x = x). */
Expr *kx_iadd(Program *p, Expr *a, Expr *b);
Expr *kx_imul(Program *p, Expr *a, Expr *b);
/* The extent of dimension d as an expression (a symbol or a constant). */
Expr *kx_dim(Program *p, Dim d);

Stmt *ks_loop(Program *p, int var, Expr *extent, Stmt *body);
Stmt *ks_store(Program *p, int buf, Expr *index, Expr *value);
Stmt *ks_local(Program *p, int local, DType t, Expr *value);
Stmt *ks_assign(Program *p, int local, Expr *value);
/* Appends s (and its successors) to the block starting at *head. */
void ks_append(Stmt **head, Stmt *s);
Stmt *ks_if(Program *p, Expr *cond, Stmt *then, Stmt *orelse);
/* A local array of n elements (a register tile), each set to value; its
 * elements are read with kx_elem and written with ks_assign_elem. */
Stmt *ks_local_array(Program *p, int local, DType t, int64_t n, Expr *value);
Expr *kx_elem(Program *p, int local, DType t, Expr *index);
Stmt *ks_assign_elem(Program *p, int local, Expr *index, Expr *value);

/* --- walking and rewriting kernels (kwalk.c) --------------------------------
 * One traversal for every analysis and rewrite of the kernel IR.  A walk
 * visits a block's statements in order, each before the statements and
 * expressions inside it, and each expression before its operands; a
 * callback returning nonzero stops the walk, and the walk returns that
 * value.  Either callback may be NULL. */
typedef struct KirVisitor {
  void *ctx;
  int (*stmt)(void *ctx, const Stmt *s);
  int (*expr)(void *ctx, const Expr *e);
} KirVisitor;
int kir_walk_block(const KirVisitor *v, const Stmt *block);
int kir_walk_expr(const KirVisitor *v, const Expr *e);
/* Walks every kernel of every function of p. */
int kir_walk_program(const KirVisitor *v, const Program *p);

/* Deep copies into p's arena. */
Expr *kir_clone_expr(Program *p, const Expr *e);
Stmt *kir_clone_block(Program *p, const Stmt *block);
Stmt *kir_clone_stmt(Program *p, const Stmt *s);   /* s alone, next = NULL */

/* A rewrite maps every expression bottom-up: fn sees a node whose operands
 * are already rewritten and returns it or a replacement (never NULL).
 * The rewritten tree is a copy; the original is left as it was. */
typedef Expr *(*KirExprFn)(void *ctx, Program *p, Expr *e);
Expr *kir_rewrite_expr(Program *p, const Expr *e, KirExprFn fn, void *ctx);
Stmt *kir_rewrite_block(Program *p, const Stmt *block, KirExprFn fn, void *ctx);
/* Copies with every use of loop variable var replaced by by; by is shared,
 * not copied. */
Expr *kir_subst_expr(Program *p, const Expr *e, int var, Expr *by);
Stmt *kir_subst_block(Program *p, const Stmt *block, int var, Expr *by);

/* The program as stable text: buffers (with arena offsets once planned),
 * then each function's kernels (kdump.c). */
void kir_dump(const Program *p, FILE *f);
const char *kir_unop_name(UnOp op);
const char *kir_binop_name(BinOp op);
int kir_binop_prec(BinOp op);
/* Checks scopes, ids, types and known index ranges of every kernel;
 * returns the number of problems, each reported to d (kverify.c). */
int kir_verify(const Program *p, Diags *d);

#endif
