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

/* --- expressions --------------------------------------------------------------
 *
 * The meaning of an expression is defined here, not by C: both emitters,
 * the verifier (kverify.c) and any evaluator implement exactly this.
 *
 * Types.  Every expression has one exact type (Expr.type): f32, f64, i32,
 * i64, u8 or bool.  There are no implicit conversions anywhere: operands
 * of an arithmetic operator have the result's type, a comparison takes
 * two operands of one type and gives bool, && and || take and give bool,
 * select's condition is bool and both arms have the result's type, a
 * store's value has its buffer's type, a local's value its declared type,
 * indices and extents are i64.  Every conversion is an EX_CAST.
 *   - f32 and f64 are IEEE binary32 and binary64, round to nearest, no
 *     contraction of a * b + c into an fma, no fast-math.
 *   - i32 and i64 are two's-complement; arithmetic that overflows is
 *     undefined (the lowering never builds it), and so is an integer
 *     division or remainder by zero.  / truncates towards zero and % has
 *     the sign of the dividend (C99).
 *   - u8 is a storage type: it can be loaded, stored, cast and compared
 *     for equality, nothing else.
 *   - bool is 0 or 1 and is never stored in a buffer (DT_BOOL is past
 *     DT_COUNT); locals may be bool.  It is the type of comparisons and of
 *     every condition (select, guard, if).  No arithmetic takes it; a
 *     cast turns it into 0 or 1 of a number type.
 *
 * Evaluation.  Every expression is pure and eager: all operands are
 * evaluated (select and && included), and the only expression that can
 * touch memory out of range is a load, which must be in range unless it
 * is guarded.  So an emitter may evaluate operands in any order, at most
 * or at least once, and branch-free.  A guarded load (EX_LOAD with b) is
 * the one conditional read: it reads buf[a] only when the guard b holds
 * and otherwise gives c without touching memory (padding, clamped
 * windows); its index may be out of range when the guard is false.
 *
 * Casts (EX_CAST to a number type; never to bool, compare instead):
 *   - float -> float rounds to nearest; float -> integer truncates towards
 *     zero and is undefined for NaN or a value outside the target's range;
 *   - integer -> float rounds to nearest; u8 and bool are unsigned (bool
 *     gives 0 or 1);
 *   - integer -> integer sign-extends (zero-extends from u8 and bool) or
 *     keeps the low bits.
 *
 * Operators (T is the operands' type):
 *   BIN_ADD SUB MUL DIV : T x T -> T, T a number type but u8
 *   BIN_MOD             : T x T -> T, i32 or i64 (remainder of /)
 *   BIN_POW             : T x T -> T, f32 or f64 (C's powf/pow)
 *   BIN_MAX BIN_MIN     : T x T -> T, a number type but u8; on floats a
 *                         NaN operand gives NaN (torch.maximum), so
 *                         max(a, b) = a > b || a != a ? a : b, and min
 *                         alike with <; on integers the larger/smaller
 *   BIN_LT LE GT GE     : T x T -> bool, T a number type but u8; ordered
 *                         (false when either is NaN)
 *   BIN_EQ              : T x T -> bool, any type (false if either is NaN)
 *   BIN_NE              : T x T -> bool, any type (true if either is NaN)
 *   BIN_AND BIN_OR      : bool x bool -> bool, both operands evaluated
 *   UN_NEG              : T -> T, a number type but u8
 *   UN_ABS UN_EXP UN_LOG UN_SQRT UN_TANH UN_LOG1P UN_EXPM1 UN_ERF UN_ERFC UN_COS
 *   UN_SIN UN_TAN UN_ASIN UN_ACOS UN_ATAN UN_FLOOR UN_CEIL UN_RINT (rint: to the
 *   nearest integer, ties to even, in the default rounding mode)
 *                       : T -> T, f32 or f64, as C99's libm functions of
 *                         that precision (fabsf, expf, ... for f32)
 *   EX_SELECT           : select(bool, T, T) -> T, any T, eager
 *   EX_RAND             : rand(key, i64 counter) -> f32, ir_random_uniform
 *   EX_FMA              : fma(T a, T b, T c) -> T, f32 or f64: a * b + c,
 *                         either fused (rounded once, C's fmaf) or as a
 *                         multiply then an add; which one is the target's
 *                         choice (fused where it has FMA instructions), the
 *                         same for every evaluation in one compiled program.
 *                         The one exception to "no contraction": only a rule
 *                         that accepts a result in the last bits builds it
 *                         (the register tiles of matrix products)
 *
 * Constants carry their type: EX_FCONST is f32 (f rounded to binary32) or
 * f64; EX_ICONST is i32, i64, u8 (i within its range) or bool (0 or 1).
 *
 * Lanes.  An expression with Expr.lanes = n > 1 is n values of its type
 * computed side by side (a vector); n is a power of two, at most
 * KIR_MAX_LANES.  Lanes never mix except through EX_REDUCE:
 *   - lane-wise: EX_UNARY, EX_BINARY, EX_SELECT (its condition too) and
 *     EX_CAST have their operands' lanes, and lane k of the result is the
 *     scalar rule applied to lane k of each operand;
 *   - EX_LOAD of n lanes reads the n consecutive elements buf[a],
 *     buf[a + 1], ..., buf[a + n - 1]; its index a is a scalar, and all n
 *     must be in range (a guarded load is always scalar);
 *   - EX_BROADCAST gives n lanes that each equal the scalar a;
 *   - EX_REDUCE (op BIN_ADD) of n lanes is the scalar sum of a's lanes in
 *     pairwise order: with s_k = lane k, while more than one value is
 *     left, s_k = s_k + s_(k+h) for k < h, h half the count; so 8 lanes
 *     sum as ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7));
 *   - EX_ZIP of two n-lane operands of one type interleaves half of each:
 *     lane 2m of zip_lo(a, b) is lane m of a and lane 2m + 1 is lane m
 *     of b, for m < n / 2; zip_hi takes lanes n / 2 + m instead (op 1).
 *     log2(n) rounds of zips of rows i and i + n / 2 into rows 2i and
 *     2i + 1 transpose n rows of n lanes (a panel's pack, schedule.c);
 *     the same kind with op 2 or 3 undoes it (unzip): lane m of
 *     unzip_even(a, b) (op 2) is lane 2m of the 2n lanes a then b, and of
 *     unzip_odd (op 3) lane 2m + 1, so the elements 2j and 2j + 1 of a
 *     stride-2 walk come from two loads of n consecutive elements;
 *   - ST_STORE of an n-lane value evaluates every lane, then writes them
 *     to buf[index], ..., buf[index + n - 1];
 *   - ST_LOCAL declares a local with its value's lanes, and reads
 *     (kx_vlocal) and assignments of it have those lanes; local arrays
 *     are scalar;
 *   - constants, loop variables, symbols, indices, extents, guards, rand
 *     counters and if conditions are scalar: a constant used in an n-lane
 *     expression is broadcast.
 * A vectorising schedule rewrites `for i < N step n (vector, width n)` so
 * that loads and stores indexed by i (contiguous in i) take n lanes,
 * scalars it combines with them are broadcast, and a sum carried across
 * iterations is kept in an n-lane local and reduced after the loop:
 *
 *   local v0: f32x8 = bcast(0.0, 8)
 *   for i0 < 64 step 8 vector width 8 {
 *     v0 = v0 + b0<8>[i0] * b1<8>[i0]
 *   }
 *   b2[0] = reduce_add(v0)
 *
 * (kx_load_lanes, kx_broadcast, kx_vlocal, kx_reduce; the C emitter prints
 * each lane as its own scalar statement, the LLVM emitter <8 x float>.)
 * Lanes are never masked: the extent must be a multiple of n (or the rest
 * run by a scalar loop after), and kir_verify reports an n-lane access
 * whose bounded range passes the buffer's end.  A loop variable used as a
 * value, not only in indices, has no lane form: leave such a loop scalar.
 * A sum kept in lanes adds in another order than the scalar loop (lane k
 * takes elements k, k + n, ...), so float results change in the last bits:
 * the schedule decides where that is allowed.
 */
#define KIR_MAX_LANES 64
typedef enum ExprKind {
  EX_FCONST,  /* f, of type f32 or f64 */
  EX_ICONST,  /* i, of type i32, i64, u8 or bool */
  EX_VAR,     /* loop variable id (i64) */
  EX_SYM,     /* run-time value of symbol id (i64) */
  EX_LOCAL,   /* local id; of a local array, element a (i64) */
  EX_LOAD,    /* buf id at index a (i64); guarded when b: b ? buf[a] : c */
  EX_UNARY,   /* op a */
  EX_BINARY,  /* a op b */
  EX_SELECT,  /* a ? b : c, a bool, eager */
  EX_CAST,    /* (type) a */
  EX_RAND,    /* f32 uniform in [0, 1) of counter a (i64) under key i: ir_random_uniform */
  EX_BROADCAST, /* a (a scalar) in each of lanes lanes */
  EX_REDUCE,  /* op (BIN_ADD) over the lanes of a, pairwise: a scalar */
  EX_FMA,     /* a * b + c, f32 or f64, lane-wise; rounded once or twice (below) */
  EX_ZIP,     /* lanes of a and b interleaved: op 0 their low halves, 1 their high halves; 2, 3 unzipped */
} ExprKind;

typedef enum UnOp {
  UN_NEG, UN_EXP, UN_LOG, UN_SQRT, UN_TANH, UN_ABS, UN_LOG1P, UN_EXPM1, UN_ERF, UN_ERFC, UN_COS,
  UN_SIN, UN_TAN, UN_ASIN, UN_ACOS, UN_ATAN, UN_FLOOR, UN_CEIL, UN_RINT,
} UnOp;

typedef enum BinOp {
  BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_MAX, BIN_MIN, BIN_POW, BIN_MOD,
  BIN_LT, BIN_LE, BIN_GT, BIN_GE, BIN_EQ, BIN_NE, BIN_AND, BIN_OR,
} BinOp;

typedef struct Expr Expr;
struct Expr {
  ExprKind kind;
  DType type;         /* the exact type (above) */
  int lanes;          /* 1: a scalar; n > 1: n values computed side by side */
  int op;             /* UnOp or BinOp */
  int id;             /* var, sym, local or buffer id */
  double f;
  int64_t i;
  Expr *a, *b, *c;    /* operands, as ExprKind says */
};

typedef enum StmtKind {
  ST_LOOP,    /* for (var = 0; var < extent; var += step) body */
  ST_STORE,   /* buf[index] = value; an n-lane value fills buf[index .. index + n - 1] */
  ST_LOCAL,   /* declare local id of type (and value's lanes), = value (count > 0: an array, every element = value) */
  ST_ASSIGN,  /* local id = value; local id[index] = value for an array */
  ST_IF,      /* if (value) body else orelse; value is bool */
} StmtKind;

/* What a loop promises and asks for.  The meaning of a program is always
 * that of running every loop serially in order; a kind adds a promise the
 * schedule checked (parallel, vector: iterations are independent) or a
 * request an emitter may honour (unroll width times).  reduce marks the
 * axis a reduction runs along (its iterations are not independent).  A
 * vector loop's body computes width lanes per iteration (step == width).
 * simd is a promise (iterations independent, as parallel) and a request:
 * the C compiler or LLVM should vectorise the loop, whatever their cost
 * models say (LLVM leaves a max pool's gradient scalar, 1.6-1.8x slower;
 * the C asks clang with vectorize(assume_safety), which the promise makes
 * sound). */
typedef enum LoopKind { LOOP_SERIAL, LOOP_PARALLEL, LOOP_VECTOR, LOOP_UNROLL, LOOP_REDUCE, LOOP_SIMD } LoopKind;

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
  /* A hint, not a promise: the emitters prefetch, at the top of each
   * iteration, the line each 16-lane f32 load of the body's own
   * statements that moves with the loop reads `prefetch` iterations
   * later (0: none).  The register tiles ask it for the packed panel
   * their reduction streams from L2; results are the same either way. */
  int prefetch;
  int64_t count;      /* ST_LOCAL: 0 for a scalar, n for an array of n elements */
};

typedef enum BufKind {
  BUF_INPUT,    /* argument, read only */
  BUF_OUTPUT,   /* argument, written */
  BUF_PARAM,    /* persistent: trainable parameter */
  BUF_STATE,    /* persistent: optimizer state, running statistics */
  BUF_TEMP,     /* arena */
  BUF_DERIVED,  /* persistent: a param or state in another layout (kir_derived) */
} BufKind;

/* The layouts kir_derived can make of a parameter. */
typedef enum DerivedLayout {
  DL_TRANSPOSED,  /* a rank-2 [R, C] tensor as [C, R] */
  DL_PANELS,      /* a rank-2 [R, C] tensor in K-major panels of rows (kir_derived_panels) */
} DerivedLayout;

typedef struct Buffer {
  BufKind kind;
  DType dtype;
  const char *name;   /* C identifier-safe is the emitter's job */
  Shape shape;        /* may hold symbols; size at their max */
  int64_t size;       /* elements at max symbol values */
  int64_t offset;     /* BUF_TEMP: element offset in its dtype's arena */
  int node;           /* graph node it holds (first), or -1 */
  int arg;            /* BUF_INPUT/OUTPUT: argument position; PARAM: index */
  int src;            /* BUF_DERIVED: the param or state buffer it is made from */
  DerivedLayout layout;   /* BUF_DERIVED: how */
  int64_t panel;          /* BUF_DERIVED, DL_PANELS: rows per panel */
} Buffer;

typedef struct Kernel {
  const char *what;   /* "linear fc1" — printed as a comment */
  SrcLoc loc;         /* the .dl line it comes from */
  Stmt *body;
  int nvars, nlocals;
  /* What it computes, for the schedule's rules: the node of its
   * function's graph and that node's op (an OpKind), or -1 for both
   * (copies to outputs, hand-built kernels). */
  int node, op;
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
  Func *prepare;      /* fills the BUF_DERIVED buffers; NULL when there are none */
  int64_t arena_size[DT_COUNT];   /* elements, after memory planning */
} Program;

void kir_program_init(Program *p, const Graph *g);
void kir_program_free(Program *p);
int kir_buffer(Program *p, BufKind kind, DType dt, const char *name, const Shape *s, int node);
Func *kir_func(Program *p, const char *name, const Graph *g);
Kernel *kir_kernel(Program *p, Func *f, const char *what, SrcLoc loc);

/* Parameter-derived data: a param (or state) buffer in another layout,
 * computed once whenever the parameters change, never on every call.
 *
 * kir_derived returns the BUF_DERIVED buffer holding buffer src in layout
 * `layout`, making it on the first request (with the kernel that fills it,
 * appended to p->prepare, made on first use) and returning the same buffer
 * to every later request for that pair; -1 when src is not a param or
 * state buffer or its shape does not suit the layout (DL_TRANSPOSED: rank
 * 2 without symbols), in which case the caller computes the layout itself.
 *
 * p->prepare is not one of p->funcs: it is no entry point of its own.
 * The generated code runs it at the top of every entry point that reads a
 * derived buffer when a "parameters changed" flag is set; the flag starts
 * set and is set again by P_set_param, P_load and every entry point that
 * stores into the source of a derived buffer (the optimizer update of
 * train_step), and cleared by prepare.  Derived buffers are never in the
 * parameter table or checkpoints.  Lowering and scheduling passes call
 * this; no kernel of p->funcs may store into a derived buffer. */
int kir_derived(Program *p, int src, DerivedLayout layout);

/* The DL_PANELS layout of a rank-2 [R, C] param or state src (a linear
 * layer's weight [J, K]), as the register tiles read it (schedule.c):
 * panel q holds rows q * nr .. q * nr + w - 1 of src (w = nr, or fewer
 * for the last panel when nr does not divide R), C-major: element
 * (r, c) of the panel at q * nr * C + c * w + (r - q * nr).  Made once
 * per change of the parameters like kir_derived's layouts, one buffer
 * per (src, nr); -1 when src is not a param or state of rank 2 without
 * symbols, or nr < 1. */
int kir_derived_panels(Program *p, int src, int64_t nr);

/* Expression builders (arena-allocated).  Each checks the typing rules
 * above and stops with an internal error on a mismatch (IR_ASSERT), so a
 * lowering bug shows where the expression is built; kir_verify checks the
 * same rules on whole kernels (for trees built or rewritten otherwise). */
Expr *kx_f(Program *p, double v);                 /* f32 */
Expr *kx_fconst(Program *p, DType t, double v);   /* f32 or f64 */
Expr *kx_i(Program *p, int64_t v);                /* i64 */
Expr *kx_iconst(Program *p, DType t, int64_t v);  /* i32, i64, u8 or bool */
Expr *kx_bool(Program *p, int v);
Expr *kx_var(Program *p, int var);
Expr *kx_sym(Program *p, int sym);
Expr *kx_local(Program *p, int local, DType t);
Expr *kx_load(Program *p, int buf, Expr *index);
/* guard ? buf[index] : otherwise, reading memory only when guard holds;
 * otherwise NULL means 0 of the buffer's type. */
Expr *kx_load_guarded(Program *p, int buf, Expr *index, Expr *guard, Expr *otherwise);
Expr *kx_un(Program *p, UnOp op, Expr *a);
Expr *kx_bin(Program *p, BinOp op, Expr *a, Expr *b);
Expr *kx_select(Program *p, Expr *cond, Expr *a, Expr *b);
Expr *kx_cast(Program *p, DType t, Expr *a);      /* a itself when it has type t */
Expr *kx_rand(Program *p, uint64_t key, Expr *counter);
/* a * b + c, possibly fused (EX_FMA above); a, b, c of one float type and
 * lane count. */
Expr *kx_fma(Program *p, Expr *a, Expr *b, Expr *c);
/* Integer arithmetic for indices, folding constants (0 + x = x, 1 * x = x). */
Expr *kx_iadd(Program *p, Expr *a, Expr *b);
Expr *kx_imul(Program *p, Expr *a, Expr *b);
/* The extent of dimension d as an expression (a symbol or a constant). */
Expr *kx_dim(Program *p, Dim d);
/* Lanes (above): n consecutive elements from index; scalar a in n lanes;
 * the pairwise sum of a's lanes; a read of an n-lane local. */
Expr *kx_load_lanes(Program *p, int buf, Expr *index, int n);
Expr *kx_broadcast(Program *p, Expr *a, int n);
Expr *kx_reduce(Program *p, BinOp op, Expr *a);
Expr *kx_vlocal(Program *p, int local, DType t, int n);
/* zip_lo(a, b) (op 0), zip_hi (1), unzip_even (2) or unzip_odd (3), a and b of one type and n > 1 lanes. */
Expr *kx_zip(Program *p, Expr *a, Expr *b, int op);
/* The lane of a then b (0 .. 2n - 1) that lane k of a zip of n lanes with op takes (above). */
static inline int kir_zip_lane(int op, int n, int k) {
  return op >= 2 ? 2 * k + op - 2 : k / 2 + (op ? n / 2 : 0) + (k % 2 ? n : 0);
}
/* Whether n is a lane count: a power of two from 1 to KIR_MAX_LANES. */
int kir_lanes_ok(int n);
/* Whether an operator or type belongs to a class of the rules above. */
int kir_is_float(DType t);
int kir_is_int(DType t);        /* i32, i64, u8 */
int kir_is_compare(BinOp op);   /* LT .. NE */
int kir_is_logic(BinOp op);     /* AND, OR */
/* The result type of op on two operands of type t, or DT_COUNT when op
 * does not take t (the operator table above). */
DType kir_binop_type(BinOp op, DType t);

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
/* Walks every kernel of every function of p, p->prepare last. */
int kir_walk_program(const KirVisitor *v, const Program *p);
/* Marks loaded[b] for every buffer b that block loads and stored[b] for
 * every one it stores into (either may be NULL; both at least p->nbufs). */
void kir_block_buffers(const Stmt *block, char *loaded, char *stored);

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
/* Whether e reads loop variable var. */
int kir_uses_var(const Expr *e, int var);
Stmt *kir_subst_block(Program *p, const Stmt *block, int var, Expr *by);

/* The program as stable text: buffers (with arena offsets once planned),
 * then each function's kernels (kdump.c). */
void kir_dump(const Program *p, FILE *f);
/* The one table of unary-function names (kernel.c), in two spellings:
 * the dump's (abs) and C's libm (fabs; the caller adds 'f' for f32).
 * kir_unop_name is the dump's spelling, used by diagnostics too. */
typedef enum { KIR_SPELL_DUMP, KIR_SPELL_LIBM } KirSpelling;
const char *kir_unop_spelling(UnOp op, KirSpelling how);
const char *kir_unop_name(UnOp op);
const char *kir_binop_name(BinOp op);
int kir_binop_prec(BinOp op);
/* Checks scopes, ids, types and known index ranges of every kernel;
 * returns the number of problems, each reported to d (kverify.c). */
int kir_verify(const Program *p, Diags *d);

#endif
