/*
 * schedule.h — the primitives the schedule step's rules are built from
 * (schedule.c).  Each rewrites one loop nest of kernel k in place and
 * returns 0, or -1 (leaving the kernel as it was) when the nest does not
 * have the form it needs.  None checks that its rewrite keeps the
 * program's meaning beyond that form: the rule that calls it knows why it
 * does (each rule says so).  Loops are named by the slot that holds them
 * (the `next` or `body` pointer, or the kernel's body), so a primitive can
 * replace a loop by several statements.
 */
#ifndef DLC_SCHEDULE_H
#define DLC_SCHEDULE_H

#include "passes/passes.h"

/* for v < E { B }  ->  for v < E step w { for u < w { B[v := v + u] } }
 * (E a constant multiple of w); the inner loop keeps the kind and axis.
 * Returns the inner loop's variable, or -1. */
int sched_split(Program *p, Kernel *k, Stmt *loop, int64_t w);
/* Swaps a loop with the one loop that is its whole body. */
int sched_reorder(Stmt *outer);
/* Replaces the loop (constant extent) by its body once per iteration, the
 * variable substituted; locals and loops declared in the copies are
 * renamed. */
int sched_unroll(Program *p, Kernel *k, Stmt **slot);
/* *decl is `local a = 0.0`, outer a loop after it in the same block whose
 * body is one loop of constant power-of-two extent w in which a is only
 * updated as a = a + e.  The accumulator becomes a tile of w partial sums
 * (element u gathers the iterations of the inner loop's u), and after
 * outer `local a = ` their pairwise sum ((t0 + t[w/2]) + ...). */
int sched_promote(Program *p, Kernel *k, Stmt **decl, Stmt *outer);
/* A local array (*decl) indexed only by constants becomes one scalar
 * local per element. */
int sched_scalarize(Program *p, Kernel *k, Stmt **decl);
/* Splits the loop by f and jams the f copies of its body: loops whose
 * extent does not depend on the variable are kept once with their bodies
 * jammed, every other statement is repeated for each copy (locals
 * renamed per copy), except a local whose value is the same in every copy
 * and is never assigned: it is computed once and shared.  A loop left
 * with one iteration is dropped. */
int sched_unroll_jam(Program *p, Kernel *k, Stmt **slot, int64_t f);
/* `local a = 0.0; for .. { a = a + e }; buf[i] = a [+ b]` (decl at *decl)
 * -> `buf[i] = b (or 0.0); for .. { buf[i] = buf[i] + e }`: the sum is
 * kept in the output, starting from b. */
int sched_accumulate_in_place(Program *p, Stmt **decl);
/* for v { S; R }  ->  for v { S } for v' { R } (v' a fresh variable). */
int sched_fission(Program *p, Kernel *k, Stmt *loop);
/* Loads in the loop's body whose index uses no variable bound in the loop
 * and no local, from a buffer the loop does not store to, are read once
 * into locals declared before the loop. */
int sched_hoist(Program *p, Kernel *k, Stmt **slot);
/* for v < E { stores } -> for v < E step w vector width w { the same
 * stores in w lanes } (E a constant multiple of w, w a lane count): every
 * statement of the body is a store at an index v + (terms free of v),
 * and its value is lane-wise arithmetic of loads at such indices and of
 * values free of v (broadcast).  Lane k of iteration v is the scalar
 * loop's iteration v + k, computed the same way, so results are
 * bit-identical; that the iterations are independent is the rule's to
 * know.  No rule vectorises yet: the emitted C is vectorised by the C
 * compiler, and the LLVM pipeline's loop vectoriser does the same. */
int sched_vectorize(Program *p, Stmt *loop, int w);
/* Marks a loop parallel or vector (a promise its iterations are
 * independent).  A parallel loop at the top of a kernel runs on several
 * threads in the JIT and in C built with -DDLC_THREADS (cg_parallel_loop). */
int sched_mark(Stmt *loop, LoopKind kind);
/* Replaces every loop of extent 1 in the block by its body, var := 0. */
void sched_drop_unit_loops(Program *p, Stmt **slot);

/* conv2d's weight gradient in register tiles of output channels by taps,
 * vectorised along its reduction (sched_gw.c): replaces the row-buffer
 * nest of kernel k (node of graph g) as lowered; 0, or -1 (kernel left
 * as it was) when the shape is not one it takes. */
int sched_gw_tiles(Program *p, const Graph *g, Kernel *k);

/* The register tiles of a row form at *slot with MR rows a tile and B
 * read where it is (the convolutions' form); 0, or -1 (left as it was). */
int sched_conv_row_tiles(Program *p, Kernel *k, Stmt **slot, int mr);
/* The batch loop nl (a top-level loop of k over the n items) in blocks of
 * items, each block with its own slot of the batch-major temporaries only
 * k's node uses (sched_rules.c: item_blocks). */
void sched_item_blocks(Program *p, Kernel *k, Stmt *nl, Dim n);
/* A max pool or its gradient whose windows tile the input kh x 2, its
 * column loop cols in lanes (sched_pool.c); -1 when the form is not one
 * the rule knows (the loop is then left as it was). */
int sched_pool_lanes(Program *p, const Graph *g, Kernel *k, Stmt *cols);
/* conv_transpose2d's rows of taps (sched_ct.c): the tiles of the row form
 * lower_conv.c writes with unit strides and one group (tiles 0: none);
 * 0 when the kernel is in that form (no other rule applies), else -1. */
int sched_ct_tiles(Program *p, const Graph *g, Kernel *k, int tiles);

/* Marks parallel each serial loop at the top of kernel k whose iterations
 * touch disjoint elements of every buffer they store into and carry no
 * local across iterations (sched_indep.c). */
void sched_mark_independent(Program *p, Kernel *k);

/* What the schedule may do: tiles 0 leaves linear layers in the row form
 * (no register tiles). */
typedef struct SchedOpts {
  int tiles;
} SchedOpts;

/* The schedule of one kernel: every rule that applies (with o: those o
 * allows). */
void sched_kernel(Program *p, Func *f, Kernel *k);
void sched_kernel_opts(Program *p, Func *f, Kernel *k, const SchedOpts *o);
/* The schedule of every kernel of p with options o (pass_schedule: every
 * rule). */
void sched_program(Program *p, const SchedOpts *o);

#endif
