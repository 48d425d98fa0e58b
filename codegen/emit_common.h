/*
 * emit_common.h — internal to codegen/: the program-level decisions the C
 * and the LLVM emitter share.  What each buffer is called, which arenas
 * exist and how large, which rows the parameter table has, whether the
 * embedded weights fit the program, which helpers the kernels need, and
 * which entry points run or invalidate parameter-derived data: each is
 * decided here once, and each emitter only prints or builds what these
 * functions say, so the emitted C and the LLVM module cannot disagree.
 */
#ifndef DLC_EMIT_COMMON_H
#define DLC_EMIT_COMMON_H

#include "codegen/codegen.h"

/* --- names ---------------------------------------------------------------------
 * Inputs in_x, outputs out_y, params P_fc1_weight, state S_..., derived
 * D_fc1_weight_T, temporaries t<buffer id>; symbols by their C prefix. */
const char *cg_buffer_name(Arena *a, const Program *p, int b);
const char *cg_symbol_name(Arena *a, const Program *p, int sym);

/* --- storage ------------------------------------------------------------------- */
/* Elements of the static arena for dtype t, or 0 when the program has no
 * temporary of that type.  An arena planned empty (every symbol's largest
 * value 0) still has one element, so each temporary points into an object. */
int64_t cg_arena_elems(const Program *p, DType t);

/* The parameter table of the generated code (P_param, P_load): one row
 * per param, then one per state tensor, each in buffer order.  A row is
 * the buffer's name, rank, shape, element count and storage, and whether
 * it is state. */
typedef struct CgTable {
  int n, nparams;   /* rows; the first nparams are params */
  int *buf;         /* [n] the buffer of each row (in the caller's arena) */
  int keylen;       /* longest name + 2: the loader's key buffer */
} CgTable;
void cg_param_table(const Program *p, Arena *a, CgTable *t);

/* The embedded tensor for buffer b (a param or state), or NULL. */
const RtTensor *cg_embedded(const Program *p, const RtTensorSet *embed, int b);
/* Whether embed fits p: every param is there, and every param and state
 * tensor there is F32 of the buffer's exact shape.  Returns the number of
 * problems; each goes to d (when not NULL) as an error of "--embed-params",
 * the first to err (when not NULL). */
int cg_check_embed(const Program *p, const RtTensorSet *embed, Diags *d, RtError *err);

/* --- what the kernels need ----------------------------------------------------- */
typedef struct CgHelpers {
  int rand;           /* EX_RAND: ir_random_uniform (ir/random.h) */
  int fmax, fmin;     /* float max/min that propagate NaN (kernel.h) */
  int fma;            /* EX_FMA */
} CgHelpers;
/* Over every kernel of p, prepare's too. */
CgHelpers cg_helpers(const Program *p);

/* Which buffers fn loads from and stores into: loaded[b], stored[b] set
 * to 1 (arrays of p->nbufs, zeroed by the caller; either may be NULL). */
void cg_buffer_use(const Program *p, const Func *fn, char *loaded, char *stored);
/* Whether fn reads a BUF_DERIVED buffer: its code runs prepare first when
 * the parameters changed since the last prepare. */
int cg_reads_derived(const Program *p, const Func *fn);
/* Whether fn stores into the source of a BUF_DERIVED buffer (an optimizer
 * update): its code marks the derived data stale at its end. */
int cg_dirties_derived(const Program *p, const Func *fn);

/* Whether top-level statement s of a kernel runs in parallel in the code
 * both emitters print: a loop marked parallel (its iterations are
 * independent, the schedule's promise) whose body assigns only locals it
 * declares itself, and reads besides those only scalar locals declared at
 * the top of the kernel before it (its captures: the value they have when
 * the loop starts, which it cannot change), so each thread's chunk of
 * iterations needs the function's symbols and arguments and the captured
 * values, and the locals it declares are each thread's own.  a is scratch. */
int cg_parallel_loop(Arena *a, const Kernel *k, const Stmt *s);
/* The captures of parallel loop s (cg_parallel_loop) into ids[] (room
 * for k->nlocals), in increasing order; returns how many (0 when s does
 * not run in parallel). */
int cg_parallel_captures(Arena *a, const Kernel *k, const Stmt *s, int *ids);

/* The cost threshold of a parallel loop: a loop that runs fewer than
 * cg_parallel_min_iters(p, s) iterations in a call (ceil(extent / step))
 * runs on the calling thread, not as a job of the pool or an OpenMP team,
 * so that the job's hand-off (a few microseconds: its descriptor and the
 * loop's data moving between cores) is paid only by loops of at least
 * cg_parallel_min_work statements (each iteration's statements counted
 * with the symbols at their max, a vector statement as one, a math
 * function's call as CG_CALL_WORK); 0 when the loop never has that many
 * (the symbols at their max): it is left serial.
 * The default is CG_PARALLEL_MIN_WORK; 0 makes every parallel loop a job
 * (tests). */
#define CG_PARALLEL_MIN_WORK 8192.0
extern double cg_parallel_min_work;
int64_t cg_parallel_min_iters(const Program *p, const Stmt *s);

/* The load a loop with a prefetch distance (kernel.h) prefetches for
 * statement s of its body: s's value when that is an unguarded 16-lane
 * f32 load whose index moves with the loop, else NULL.  Both emitters
 * then prefetch the line at that index with the loop's variable
 * `prefetch` iterations further on. */
const Expr *cg_prefetched(const Stmt *loop, const Stmt *s);
/* Whether e calls a math function: every unary but negation, abs, sqrt
 * and the roundings (instructions), and pow. */
int cg_math_call(const Expr *e);
/* How many statements block s runs at most (the symbols at their max);
 * 1e300 when a loop's extent is not known: the parallel threshold's and
 * the JIT's cold kernels' measure of work. */
double cg_block_work(const Program *p, const Stmt *s);

/* --- collectives ---------------------------------------------------------------
 * The kernel of a dist_mean or dist_sum node copies its operand into its
 * buffer; after it, both emitters print a call of the module's collective
 * hook (IrCollective, set by P_set_collective(fn, ctx); none by default,
 * so one process keeps the copy) on that buffer.  Whether kernel k of fn
 * is one, and if so its buffer, kind (IR_COLLECTIVE_*) and element count. */
typedef struct CgCollective {
  int buf, kind;
  int64_t n;
} CgCollective;
int cg_collective(const Program *p, const Func *fn, const Kernel *k, CgCollective *c);
/* Whether any function of p has a collective (the hook is emitted then). */
int cg_has_collectives(const Program *p);

/* --- texts the build embeds (scripts/embed_text.sh) ----------------------------- */
extern const char cg_text_st_loader_h[];       /* codegen/st_loader.h */
extern const char cg_text_st_loader_impl_c[];  /* codegen/st_loader_impl.c */
extern const char cg_text_random_h[];          /* ir/random.h */
/* Prints a source text without its opening comment and without its
 * #include "..." lines (what the emitted file already has). */
void cg_print_source(FILE *f, const char *text);

#endif
