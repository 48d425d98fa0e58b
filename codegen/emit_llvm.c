/*
 * emit_llvm.c — lowers a Program to an LLVM module (LLVM 19 C API);
 * llvm_target.c optimises it for the host and prints it as text or an
 * object file, or splits it into the parts the JIT compiles.
 *
 * The module has the C emitter's interface: the same external functions
 * (P_<func> taking the int64 symbols then one pointer per argument,
 * returning -1 when a symbol is outside [1, max]; P_param, P_set_param,
 * P_load, P_error), buffers in the same places (params and state as
 * internal float arrays, zero or constant initialised; derived buffers
 * and their stale flag, and the internal P_prepare that fills them; one
 * 64-byte aligned arena per element type).  Expressions mean what kernel.h defines, and
 * map one to one onto LLVM: each kernel-IR type is one LLVM type (bool is
 * i1), each operator one instruction or intrinsic of that type, each cast
 * one conversion instruction.  Every expression is pure and eager, so
 * none needs a branch: select is `select`, && is `and`, and a guarded load
 * reads from index (guard ? index : 0), always in range, and selects.
 * An expression of n lanes is an <n x T> vector: loads and stores of n
 * lanes are vector loads and stores through the element pointer (aligned
 * as the element), a broadcast is a splat, libm calls go lane by lane,
 * and a reduction halves the vector with shuffles, in kernel.h's pairwise
 * order, so the C emitter's unrolled lanes sum in the same order.
 * Loops are counted loops with an i64 phi (those of a cold kernel, one
 * that runs a few thousand statements at most, marked not to be
 * vectorised or unrolled: cold_kernel); locals are allocas in the
 * entry block, left to the optimiser's mem2reg.  Each kernel is an
 * internal function, never inlined, of the symbols and one pointer per
 * buffer it touches, which the entry point calls in order with the
 * buffers' addresses: the optimiser treats each kernel on its own, and
 * kernels that differ only in their buffers (the evaluation step repeats
 * the training step's forward kernels, repeated blocks of a model repeat
 * theirs) share one function (shared_kernel), so LLVM optimises and
 * compiles each distinct kernel once.  Within a kernel the accesses
 * through its pointers carry alias scopes, because the memory plan gives
 * the model's buffers disjoint storage (scope_slots).  A parallel loop at
 * the top of a kernel is a function of its own that runs a chunk of its
 * iterations, which the kernel hands to a thread pool when the module was
 * given one (parallel_loop).  Nothing else is assumed: an argument may
 * overlap another or the params (the C has no restrict), no fast-math, no
 * contraction (the C backend builds -std=c99, which does not contract
 * either).
 *
 * For the JIT the built module is split into parts that compile on
 * separate threads (cg_llvm_partition, cg_llvm_keep_part, used by jit.c):
 * the kernels being functions of their own, a part is a set of whole
 * functions, every function and variable made external so that the parts
 * link, the variables defined in part 0 only.
 *
 * The safetensors reader and the accessors are not built here: they are
 * st_loader_impl.c (the file the C emitter prints as C), compiled ahead
 * of time to IR (st_loader.ll.inc), linked into each module with internal
 * linkage (two models can share a process or a link), and called by small
 * wrappers that pass the model's table.  Names, arenas, the table's rows,
 * the embed check and the derived-data guards are emit_common.c's
 * decisions, the same as the C emitter's.  Failures of LLVM itself come
 * back as "internal error: ...".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/IRReader.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>

#include "codegen/cg_llvm.h"
#include "codegen/emit_common.h"
#include "codegen/st_loader.h"
#include "ir/random.h"

_Static_assert(CG_PARAM_MAX_RANK == IR_MAX_RANK, "the param table's shape[] is IR_MAX_RANK long");

static const char st_loader_ll[] =
#include "codegen/st_loader.ll.inc"
    ;


typedef struct KernelFn KernelFn; /* a kernel function built, for identical kernels to share */
typedef struct Slots Slots;       /* the buffers a kernel touches, its function's pointers */

typedef struct Lower {
  const Program *p;
  const EmitOpts *o;
  Arena a;
  const char *pre;
  LLVMContextRef cx;
  LLVMModuleRef m;
  LLVMBuilderRef b;           /* code */
  LLVMBuilderRef ab;          /* allocas: the end of the entry block */
  LLVMTypeRef i8, i32, i64, f32, f64, ptr;
  LLVMValueRef *storage;      /* per buffer: a param's or state's global */
  LLVMValueRef arena[DT_COUNT];
  LLVMValueRef table, err_msg;
  LLVMValueRef stale, prepare;  /* derived data: the flag, the function (or NULL) */
  CgTable t;                    /* the parameter table's rows */
  /* the function being built */
  LLVMValueRef fn;
  LLVMValueRef *bufptr;       /* per buffer: its address in this function */
  LLVMValueRef syms[IR_MAX_SYMS];
  /* the kernel being built */
  LLVMValueRef *vars, *locals;
  LLVMValueRef *scope, *noalias; /* per buffer: its alias scope and the disjoint slots' (or NULL) */
  KernelFn *kfns;               /* the kernel functions built so far */
  int64_t *lcount;
  DType *ltype;
  int *llanes;
  /* parallel loops (parallel_loop): the kernel function's parameters
   * saved for its chunk functions, the pool hooks (made on first use) */
  const Func *kfn;
  const Slots *kslots;          /* the kernel function's slots (NULL in P_prepare) */
  LLVMValueRef kctx;
  int nchunks;
  LLVMValueRef pool_run, pool, par_for;
  int cold;                     /* the kernel being built is cold: its loops get cold_loop */
  LLVMValueRef coll, coll_ctx;  /* the collective hook's globals (collective_hook), or NULL */
} Lower;

/* --- types and casts ------------------------------------------------------------ */

static LLVMTypeRef lty(const Lower *L, DType t) {
  switch (t) {
  case DT_F32: return L->f32;
  case DT_F64: return L->f64;
  case DT_I32: return L->i32;
  case DT_I64: return L->i64;
  case DT_U8: return L->i8;
  case DT_BOOL: return LLVMInt1TypeInContext(L->cx);
  case DT_COUNT: break;
  }
  return L->i32;
}

/* The LLVM type of n lanes of t. */
static LLVMTypeRef vty(const Lower *L, DType t, int lanes) {
  return lanes > 1 ? LLVMVectorType(lty(L, t), (unsigned)lanes) : lty(L, t);
}

static int is_float(DType t) { return t == DT_F32 || t == DT_F64; }
static int int_bits(DType t) { return t == DT_BOOL ? 1 : t == DT_U8 ? 8 : t == DT_I32 ? 32 : 64; }
static int is_unsigned(DType t) { return t == DT_U8 || t == DT_BOOL; }

/* kernel.h's cast of v from type from to type to. */
static LLVMValueRef cast(Lower *L, LLVMValueRef v, DType from, DType to) {
  LLVMTypeRef T = lty(L, to), V = LLVMTypeOf(v);
  if (from == to) return v;
  if (LLVMGetTypeKind(V) == LLVMVectorTypeKind) T = LLVMVectorType(T, LLVMGetVectorSize(V));
  if (is_float(from) && is_float(to))
    return to == DT_F64 ? LLVMBuildFPExt(L->b, v, T, "") : LLVMBuildFPTrunc(L->b, v, T, "");
  if (is_float(from)) return is_unsigned(to) ? LLVMBuildFPToUI(L->b, v, T, "") : LLVMBuildFPToSI(L->b, v, T, "");
  if (is_float(to)) return is_unsigned(from) ? LLVMBuildUIToFP(L->b, v, T, "") : LLVMBuildSIToFP(L->b, v, T, "");
  if (int_bits(to) > int_bits(from)) return is_unsigned(from) ? LLVMBuildZExt(L->b, v, T, "") : LLVMBuildSExt(L->b, v, T, "");
  return LLVMBuildTrunc(L->b, v, T, "");
}

/* --- expressions --------------------------------------------------------------- */

static LLVMValueRef expr(Lower *L, const Expr *e);

/* The address of local id, or of element index of a local array. */
static LLVMValueRef local_addr(Lower *L, int id, const Expr *index) {
  IR_ASSERT(L->locals[id]); /* used before it was declared */
  if (!index) return L->locals[id];
  LLVMValueRef i = expr(L, index);
  return LLVMBuildGEP2(L->b, lty(L, L->ltype[id]), L->locals[id], &i, 1, "");
}

static LLVMValueRef intrinsic(Lower *L, const char *name, LLVMTypeRef t, LLVMValueRef *args, unsigned n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef f = LLVMGetIntrinsicDeclaration(L->m, id, &t, 1);
  return LLVMBuildCall2(L->b, LLVMIntrinsicGetType(L->cx, id, &t, 1), f, args, n, "");
}

/* A call to libm's name (float or double, by t), lane by lane for a vector t. */
static LLVMValueRef libm(Lower *L, const char *name, LLVMTypeRef t, LLVMValueRef x) {
  int vector = LLVMGetTypeKind(t) == LLVMVectorTypeKind;
  LLVMTypeRef s = vector ? LLVMGetElementType(t) : t;
  LLVMTypeRef fty = LLVMFunctionType(s, &s, 1, 0);
  LLVMValueRef f = LLVMGetNamedFunction(L->m, name);
  if (!f) f = LLVMAddFunction(L->m, name, fty);
  if (!vector) return LLVMBuildCall2(L->b, fty, f, &x, 1, "");
  LLVMValueRef r = LLVMGetPoison(t);
  for (unsigned k = 0; k < LLVMGetVectorSize(t); k++) {
    LLVMValueRef at = LLVMConstInt(L->i32, k, 0), lane = LLVMBuildExtractElement(L->b, x, at, "");
    r = LLVMBuildInsertElement(L->b, r, LLVMBuildCall2(L->b, fty, f, &lane, 1, ""), at, "");
  }
  return r;
}

static LLVMBasicBlockRef block(Lower *L, const char *name) { return LLVMAppendBasicBlockInContext(L->cx, L->fn, name); }

static LLVMValueRef compare(Lower *L, BinOp op, DType t, LLVMValueRef a, LLVMValueRef b) {
  static const LLVMIntPredicate sp[] = {LLVMIntSLT, LLVMIntSLE, LLVMIntSGT, LLVMIntSGE, LLVMIntEQ, LLVMIntNE};
  static const LLVMIntPredicate up[] = {LLVMIntULT, LLVMIntULE, LLVMIntUGT, LLVMIntUGE, LLVMIntEQ, LLVMIntNE};
  static const LLVMRealPredicate fp[] = {LLVMRealOLT, LLVMRealOLE, LLVMRealOGT, LLVMRealOGE, LLVMRealOEQ, LLVMRealUNE};
  int k = op - BIN_LT;
  if (is_float(t)) return LLVMBuildFCmp(L->b, fp[k], a, b, "");
  return LLVMBuildICmp(L->b, is_unsigned(t) ? up[k] : sp[k], a, b, "");
}

/* max(a, b) = a > b || a != a ? a : b on floats (NaN propagates), a > b ? a : b
 * on integers; min alike with <. */
static LLVMValueRef minmax(Lower *L, BinOp op, DType t, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef wins = compare(L, op == BIN_MAX ? BIN_GT : BIN_LT, t, a, b);
  if (is_float(t)) wins = LLVMBuildOr(L->b, wins, LLVMBuildFCmp(L->b, LLVMRealUNO, a, a, ""), "");
  return LLVMBuildSelect(L->b, wins, a, b, "");
}

static LLVMValueRef arith(Lower *L, BinOp op, DType t, LLVMValueRef x, LLVMValueRef y) {
  int f = is_float(t);
  switch (op) {
  case BIN_ADD: return f ? LLVMBuildFAdd(L->b, x, y, "") : LLVMBuildNSWAdd(L->b, x, y, "");
  case BIN_SUB: return f ? LLVMBuildFSub(L->b, x, y, "") : LLVMBuildNSWSub(L->b, x, y, "");
  case BIN_MUL: return f ? LLVMBuildFMul(L->b, x, y, "") : LLVMBuildNSWMul(L->b, x, y, "");
  case BIN_DIV: return f ? LLVMBuildFDiv(L->b, x, y, "") : LLVMBuildSDiv(L->b, x, y, "");
  case BIN_MOD: return f ? LLVMBuildFRem(L->b, x, y, "") : LLVMBuildSRem(L->b, x, y, "");
  case BIN_AND: return LLVMBuildAnd(L->b, x, y, "");
  case BIN_OR: return LLVMBuildOr(L->b, x, y, "");
  case BIN_MAX: case BIN_MIN: return minmax(L, op, t, x, y);
  case BIN_POW: {
    LLVMValueRef args[2] = {x, y};
    return intrinsic(L, "llvm.pow", LLVMTypeOf(x), args, 2);
  }
  case BIN_LT: case BIN_LE: case BIN_GT: case BIN_GE: case BIN_EQ: case BIN_NE: return compare(L, op, t, x, y);
  }
  ir_internal_error(__FILE__, __LINE__, "unknown binary operator");
  return NULL;
}

static LLVMValueRef binary(Lower *L, const Expr *e) {
  LLVMValueRef a = expr(L, e->a), b = expr(L, e->b);
  return arith(L, (BinOp)e->op, e->a->type, a, b);
}

static LLVMValueRef unary(Lower *L, const Expr *e) {
  LLVMValueRef x = expr(L, e->a);
  LLVMTypeRef T = LLVMTypeOf(x);
  int f = e->type == DT_F32;
  switch ((UnOp)e->op) {
  case UN_NEG:
    return is_float(e->type) ? LLVMBuildFNeg(L->b, x, "") : LLVMBuildNSWSub(L->b, LLVMConstNull(T), x, "");
  case UN_EXP: return intrinsic(L, "llvm.exp", T, &x, 1);
  case UN_LOG: return intrinsic(L, "llvm.log", T, &x, 1);
  case UN_SQRT: return intrinsic(L, "llvm.sqrt", T, &x, 1);
  case UN_ABS: return intrinsic(L, "llvm.fabs", T, &x, 1);
  case UN_TANH: return libm(L, f ? "tanhf" : "tanh", T, x);
  case UN_LOG1P: return libm(L, f ? "log1pf" : "log1p", T, x);
  case UN_EXPM1: return libm(L, f ? "expm1f" : "expm1", T, x);
  case UN_ERF: return libm(L, f ? "erff" : "erf", T, x);
  case UN_ERFC: return libm(L, f ? "erfcf" : "erfc", T, x);
  case UN_COS: return libm(L, f ? "cosf" : "cos", T, x);
  case UN_SIN: return libm(L, f ? "sinf" : "sin", T, x);
  case UN_TAN: return libm(L, f ? "tanf" : "tan", T, x);
  case UN_ASIN: return libm(L, f ? "asinf" : "asin", T, x);
  case UN_ACOS: return libm(L, f ? "acosf" : "acos", T, x);
  case UN_ATAN: return libm(L, f ? "atanf" : "atan", T, x);
  case UN_FLOOR: return intrinsic(L, "llvm.floor", T, &x, 1);
  case UN_CEIL: return intrinsic(L, "llvm.ceil", T, &x, 1);
  case UN_RINT: return intrinsic(L, "llvm.rint", T, &x, 1);
  }
  ir_internal_error(__FILE__, __LINE__, "unknown unary operator");
  return NULL;
}

static LLVMValueRef address(Lower *L, int buf, LLVMValueRef index) {
  return LLVMBuildInBoundsGEP2(L->b, lty(L, L->p->bufs[buf].dtype), L->bufptr[buf], &index, 1, "");
}

/* A load or store of buf: its alias scopes (scope_temporaries). */
static LLVMValueRef scoped(Lower *L, int buf, LLVMValueRef access) {
  if (!L->scope || !L->scope[buf]) return access;
  LLVMSetMetadata(access, LLVMGetMDKindIDInContext(L->cx, "alias.scope", 11), L->scope[buf]);
  LLVMSetMetadata(access, LLVMGetMDKindIDInContext(L->cx, "noalias", 7), L->noalias[buf]);
  return access;
}

/* buf[index], or guard ? buf[index] : otherwise as a load from index
 * (guard ? index : 0), which is in range whatever the guard, and a select:
 * no branch, so the loop around it still vectorises. */
static LLVMValueRef load(Lower *L, const Expr *e) {
  LLVMTypeRef T = lty(L, e->type);
  LLVMValueRef i = expr(L, e->a);
  if (e->lanes > 1) { /* n consecutive elements, aligned as one */
    LLVMValueRef v = scoped(L, e->id, LLVMBuildLoad2(L->b, vty(L, e->type, e->lanes), address(L, e->id, i), ""));
    LLVMSetAlignment(v, (unsigned)rt_dtype_size(e->type));
    return v;
  }
  if (!e->b) return scoped(L, e->id, LLVMBuildLoad2(L->b, T, address(L, e->id, i), ""));
  LLVMValueRef g = expr(L, e->b), other = expr(L, e->c);
  LLVMValueRef safe = LLVMBuildSelect(L->b, g, i, LLVMConstNull(LLVMTypeOf(i)), "");
  return LLVMBuildSelect(L->b, g, scoped(L, e->id, LLVMBuildLoad2(L->b, T, address(L, e->id, safe), "")), other, "");
}

/* ir_random_uniform: the steps of dlc_uniform and dlc_mix64 in
 * ir/random.h, from its constants (the C emitter prints that text). */
static LLVMValueRef random_uniform(Lower *L, const Expr *e) {
  LLVMValueRef ctr = expr(L, e->a);
  LLVMValueRef z = LLVMBuildAdd(L->b, LLVMConstInt(L->i64, (unsigned long long)e->i, 0),
                                LLVMBuildMul(L->b, ctr, LLVMConstInt(L->i64, DLC_RNG_GOLDEN, 0), ""), "");
  static const unsigned long long mul[2] = {DLC_RNG_MUL1, DLC_RNG_MUL2};
  static const int shift[3] = {DLC_RNG_SHIFT1, DLC_RNG_SHIFT2, DLC_RNG_SHIFT3};
  for (int k = 0; k < 3; k++) {
    z = LLVMBuildXor(L->b, z, LLVMBuildLShr(L->b, z, LLVMConstInt(L->i64, (unsigned)shift[k], 0), ""), "");
    if (k < 2) z = LLVMBuildMul(L->b, z, LLVMConstInt(L->i64, mul[k], 0), "");
  }
  LLVMValueRef top = LLVMBuildLShr(L->b, z, LLVMConstInt(L->i64, DLC_RNG_DROP, 0), "");
  LLVMValueRef f = LLVMBuildUIToFP(L->b, top, L->f32, "");
  return LLVMBuildFMul(L->b, f, LLVMConstReal(L->f32, DLC_RNG_SCALE), "");
}

/* Scalar a in each of n lanes. */
static LLVMValueRef splat(Lower *L, LLVMValueRef a, int n) {
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(a), (unsigned)n);
  LLVMValueRef v = LLVMBuildInsertElement(L->b, LLVMGetPoison(vt), a, LLVMConstInt(L->i32, 0, 0), "");
  return LLVMBuildShuffleVector(L->b, v, LLVMGetPoison(vt), LLVMConstNull(LLVMVectorType(L->i32, (unsigned)n)), "");
}

/* Lanes [from, from + n) of v. */
static LLVMValueRef lanes(Lower *L, LLVMValueRef v, unsigned from, unsigned n) {
  LLVMValueRef idx[KIR_MAX_LANES];
  for (unsigned k = 0; k < n; k++) idx[k] = LLVMConstInt(L->i32, from + k, 0);
  return LLVMBuildShuffleVector(L->b, v, LLVMGetPoison(LLVMTypeOf(v)), LLVMConstVector(idx, n), "");
}

/* kernel.h's pairwise sum: the low half plus the high half until one lane
 * is left (lane k + lane k + h for k < h). */
static LLVMValueRef reduce(Lower *L, const Expr *e) {
  LLVMValueRef v = expr(L, e->a);
  for (unsigned w = (unsigned)e->a->lanes / 2; w >= 1; w /= 2) {
    LLVMValueRef lo = w > 1 ? lanes(L, v, 0, w) : LLVMBuildExtractElement(L->b, v, LLVMConstInt(L->i32, 0, 0), "");
    LLVMValueRef hi = w > 1 ? lanes(L, v, w, w) : LLVMBuildExtractElement(L->b, v, LLVMConstInt(L->i32, 1, 0), "");
    v = arith(L, (BinOp)e->op, e->type, lo, hi);
  }
  return v;
}

static LLVMValueRef constant(Lower *L, const Expr *e) {
  if (e->kind == EX_FCONST) return LLVMConstReal(lty(L, e->type), e->type == DT_F32 ? (double)(float)e->f : e->f);
  return LLVMConstInt(lty(L, e->type), (unsigned long long)e->i, !is_unsigned(e->type));
}

static LLVMValueRef expr(Lower *L, const Expr *e) {
  switch (e->kind) {
  case EX_FCONST: case EX_ICONST: return constant(L, e);
  case EX_VAR: return L->vars[e->id];
  case EX_SYM: return L->syms[e->id];
  case EX_LOCAL: return LLVMBuildLoad2(L->b, vty(L, L->ltype[e->id], e->lanes), local_addr(L, e->id, e->a), "");
  case EX_LOAD: return load(L, e);
  case EX_UNARY: return unary(L, e);
  case EX_BINARY: return binary(L, e);
  case EX_SELECT: {
    LLVMValueRef c = expr(L, e->a), a = expr(L, e->b), b = expr(L, e->c);
    return LLVMBuildSelect(L->b, c, a, b, "");
  }
  case EX_CAST: return cast(L, expr(L, e->a), e->a->type, e->type);
  case EX_RAND: return random_uniform(L, e);
  case EX_BROADCAST: return splat(L, expr(L, e->a), e->lanes);
  case EX_REDUCE: return e->a->lanes > 1 ? reduce(L, e) : expr(L, e->a);
  case EX_ZIP: { /* kernel.h: the lanes of a then b (b's are n and up) that kir_zip_lane names */
    LLVMValueRef idx[KIR_MAX_LANES];
    unsigned n = (unsigned)e->lanes;
    for (unsigned k = 0; k < n; k++) idx[k] = LLVMConstInt(L->i32, (unsigned long long)kir_zip_lane(e->op, (int)n, (int)k), 0);
    return LLVMBuildShuffleVector(L->b, expr(L, e->a), expr(L, e->b), LLVMConstVector(idx, n), "");
  }
  case EX_FMA: { /* fused where the target has FMA: the backend's choice, as kernel.h allows */
    LLVMValueRef args[3] = {expr(L, e->a), expr(L, e->b), expr(L, e->c)};
    return intrinsic(L, "llvm.fmuladd", LLVMTypeOf(args[0]), args, 3);
  }
  }
  ir_internal_error(__FILE__, __LINE__, "unknown expression kind");
  return NULL;
}

/* --- statements ---------------------------------------------------------------- */

static void stmts(Lower *L, const Stmt *s);

/* The loop metadata of a cold kernel's loops (cold_kernel): not
 * vectorised, interleaved or unrolled.  A loop ID refers to itself: a
 * temporary node stands for it until it is made. */
static LLVMValueRef cold_loop(Lower *L) {
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(L->cx, NULL, 0);
  LLVMMetadataRef one = LLVMValueAsMetadata(LLVMConstInt(L->i32, 1, 0));
  LLVMMetadataRef no = LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(L->cx), 0, 0));
  LLVMMetadataRef w[2] = {LLVMMDStringInContext2(L->cx, "llvm.loop.vectorize.width", 25), one};
  LLVMMetadataRef ic[2] = {LLVMMDStringInContext2(L->cx, "llvm.loop.interleave.count", 26), one};
  LLVMMetadataRef en[2] = {LLVMMDStringInContext2(L->cx, "llvm.loop.vectorize.enable", 26), no};
  LLVMMetadataRef un[1] = {LLVMMDStringInContext2(L->cx, "llvm.loop.unroll.disable", 24)};
  LLVMMetadataRef ops[5] = {tmp, LLVMMDNodeInContext2(L->cx, w, 2), LLVMMDNodeInContext2(L->cx, ic, 2),
                            LLVMMDNodeInContext2(L->cx, en, 2), LLVMMDNodeInContext2(L->cx, un, 1)};
  LLVMMetadataRef id = LLVMMDNodeInContext2(L->cx, ops, 5);
  LLVMMetadataReplaceAllUsesWith(tmp, id);
  return LLVMMetadataAsValue(L->cx, id);
}

/* The loop metadata of a simd loop (kernel.h): vectorise it where LLVM
 * can, whatever its cost model says, and do not unroll it first.  Fully
 * unrolled (the pipeline's loop-unroll-full runs before loop-vectorize),
 * a short one became straight-line code that the SLP vectoriser turned
 * into gathers: LeNet-5's second max_pool2d, 5 columns, took 4x the time
 * it takes vectorised as a loop. */
static LLVMValueRef simd_loop(Lower *L) {
  LLVMMetadataRef tmp = LLVMTemporaryMDNode(L->cx, NULL, 0);
  LLVMMetadataRef yes = LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(L->cx), 1, 0));
  LLVMMetadataRef en[2] = {LLVMMDStringInContext2(L->cx, "llvm.loop.vectorize.enable", 26), yes};
  LLVMMetadataRef un[1] = {LLVMMDStringInContext2(L->cx, "llvm.loop.unroll.disable", 24)};
  LLVMMetadataRef ops[3] = {tmp, LLVMMDNodeInContext2(L->cx, en, 2), LLVMMDNodeInContext2(L->cx, un, 1)};
  LLVMMetadataRef id = LLVMMDNodeInContext2(L->cx, ops, 3);
  LLVMMetadataReplaceAllUsesWith(tmp, id);
  return LLVMMetadataAsValue(L->cx, id);
}

/* The prefetches of loop s (kernel.h, cg_prefetched), i its variable:
 * the address with the variable s->prefetch iterations on, a plain GEP
 * (it may point past the buffer, where a prefetch does not fault), read,
 * keep in every cache level. */
static void prefetch_ahead(Lower *L, const Stmt *s, LLVMValueRef i) {
  LLVMValueRef ahead = LLVMBuildAdd(L->b, i, LLVMConstInt(L->i64, (unsigned long long)(s->prefetch * s->step), 0), "");
  for (const Stmt *b = s->body; b; b = b->next) {
    const Expr *ld = cg_prefetched(s, b);
    if (!ld) continue;
    L->vars[s->id] = ahead;
    LLVMValueRef at = expr(L, ld->a);
    L->vars[s->id] = i;
    LLVMValueRef ptr = LLVMBuildGEP2(L->b, lty(L, L->p->bufs[ld->id].dtype), L->bufptr[ld->id], &at, 1, "");
    LLVMValueRef args[4] = {ptr, LLVMConstInt(L->i32, 0, 0), LLVMConstInt(L->i32, 3, 0), LLVMConstInt(L->i32, 1, 0)};
    intrinsic(L, "llvm.prefetch", L->ptr, args, 4);
  }
}

/* An innermost loop that calls a math function on scalars (exp, log,
 * tanh, pow...: cg_math_call) gets cold_loop's metadata too.  With no vector math
 * library, LLVM computes a vector of them by one call per lane: the
 * vectorised loop, its interleaving and remainder are several times the
 * code of the scalar loop for the same calls.  Softmax and the losses
 * are such loops; LeNet-5's training step compiled 8% faster without
 * them vectorised (critical path 0.45-0.47 s against 0.49-0.51), and
 * ran as fast (LeNet-5, the MLP, the character LSTM). */
static int math_call(void *ctx, const Expr *e) {
  (void)ctx;
  return e->lanes == 1 && cg_math_call(e);
}

static int is_loop(void *ctx, const Stmt *s) {
  (void)ctx;
  return s->kind == ST_LOOP;
}

static int calls_math(const Stmt *s) {
  KirVisitor loops = {NULL, is_loop, NULL}, calls = {NULL, NULL, math_call};
  return !kir_walk_block(&loops, s->body) && kir_walk_block(&calls, s->body);
}

/* for (var = start; var < end; var += step), end the extent unless given:
 * the extent is evaluated each time round, as in C; it is loop-invariant,
 * so LICM hoists it. */
static void loop_from(Lower *L, const Stmt *s, LLVMValueRef start, LLVMValueRef end) {
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(L->b);
  LLVMBasicBlockRef head = block(L, "loop"), body = block(L, "body"), done = block(L, "done");
  LLVMBuildBr(L->b, head);
  LLVMPositionBuilderAtEnd(L->b, head);
  char name[16];
  snprintf(name, sizeof name, "i%d", s->id);
  LLVMValueRef i = LLVMBuildPhi(L->b, L->i64, name);
  LLVMAddIncoming(i, &start, &pre, 1);
  LLVMValueRef n = end ? end : expr(L, s->extent);
  LLVMBuildCondBr(L->b, LLVMBuildICmp(L->b, LLVMIntSLT, i, n, ""), body, done);
  LLVMPositionBuilderAtEnd(L->b, body);
  L->vars[s->id] = i;
  if (s->prefetch) prefetch_ahead(L, s, i);
  stmts(L, s->body);
  LLVMValueRef next = LLVMBuildNSWAdd(L->b, i, LLVMConstInt(L->i64, (unsigned long long)s->step, 0), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(L->b);
  LLVMValueRef br = LLVMBuildBr(L->b, head);
  if (L->cold || (s->loop != LOOP_SIMD && calls_math(s))) LLVMSetMetadata(br, LLVMGetMDKindIDInContext(L->cx, "llvm.loop", 9), cold_loop(L));
  else if (s->loop == LOOP_SIMD) LLVMSetMetadata(br, LLVMGetMDKindIDInContext(L->cx, "llvm.loop", 9), simd_loop(L));
  LLVMAddIncoming(i, &next, &latch, 1);
  LLVMPositionBuilderAtEnd(L->b, done);
}

static void loop(Lower *L, const Stmt *s) { loop_from(L, s, LLVMConstInt(L->i64, 0, 0), NULL); }

/* Locals are allocas in the entry block (mem2reg and SROA promote them,
 * arrays with constant indices included); a local array is [count x t]. */
static void declare_local(Lower *L, int id, DType t, int64_t count, int lanes) {
  if (L->locals[id] && L->ltype[id] == t && L->lcount[id] == count && L->llanes[id] == lanes) return;
  char name[16];
  snprintf(name, sizeof name, "v%d", id);
  LLVMTypeRef ty = count > 0 ? LLVMArrayType2(lty(L, t), (uint64_t)count) : vty(L, t, lanes);
  L->locals[id] = LLVMBuildAlloca(L->ab, ty, name);
  L->ltype[id] = t;
  L->lcount[id] = count;
  L->llanes[id] = lanes;
}

/* Every element of a local array set to one value, by a loop. */
static void fill_local(Lower *L, const Stmt *s, LLVMValueRef v) {
  for (int64_t j = 0; j < s->count; j++) {
    LLVMValueRef i = LLVMConstInt(L->i64, (unsigned long long)j, 0);
    LLVMBuildStore(L->b, v, LLVMBuildGEP2(L->b, lty(L, s->type), L->locals[s->id], &i, 1, ""));
  }
}

/* if (cond) body else orelse, with a join block after both. */
static void if_stmt(Lower *L, const Stmt *s) {
  LLVMBasicBlockRef then = block(L, "then"), els = block(L, "else"), done = block(L, "endif");
  LLVMBuildCondBr(L->b, expr(L, s->value), then, els);
  LLVMPositionBuilderAtEnd(L->b, then);
  stmts(L, s->body);
  LLVMBuildBr(L->b, done);
  LLVMPositionBuilderAtEnd(L->b, els);
  stmts(L, s->orelse);
  LLVMBuildBr(L->b, done);
  LLVMPositionBuilderAtEnd(L->b, done);
}

static void stmts(Lower *L, const Stmt *s) {
  for (; s; s = s->next) {
    switch (s->kind) {
    case ST_LOOP: loop(L, s); break;
    case ST_STORE: {
      LLVMValueRef v = expr(L, s->value);
      LLVMValueRef st = scoped(L, s->id, LLVMBuildStore(L->b, v, address(L, s->id, expr(L, s->index))));
      if (s->value->lanes > 1) LLVMSetAlignment(st, (unsigned)rt_dtype_size(s->value->type));
      break;
    }
    case ST_LOCAL: {
      LLVMValueRef v = expr(L, s->value);
      declare_local(L, s->id, s->type, s->count, s->value->lanes);
      if (s->count > 0) fill_local(L, s, v);
      else LLVMBuildStore(L->b, v, L->locals[s->id]);
      break;
    }
    case ST_ASSIGN: {
      LLVMValueRef v = expr(L, s->value);
      LLVMBuildStore(L->b, v, local_addr(L, s->id, s->index));
      break;
    }
    case ST_IF: if_stmt(L, s); break;
    }
  }
}

/* --- functions ----------------------------------------------------------------- */

/* The C name of buffer b (emit_common.c decides, for both emitters). */
static const char *bufname(Lower *L, int b) { return cg_buffer_name(&L->a, L->p, b); }

static void add_attr(Lower *L, LLVMValueRef f, const char *name) {
  unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
  LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(L->cx, kind, 0));
}

/* fn's symbols then one pointer per argument, returning ret. */
static LLVMTypeRef func_type(Lower *L, const Func *fn, LLVMTypeRef ret) {
  int n = L->p->g->nsyms + fn->nargs;
  LLVMTypeRef *params = arena_alloc(&L->a, sizeof *params * (size_t)(n + 1));
  for (int i = 0; i < n; i++) params[i] = i < L->p->g->nsyms ? L->i64 : L->ptr;
  return LLVMFunctionType(ret, params, (unsigned)n, 0);
}

/* Makes f the function being built: its parameters name the symbols and
 * fn's argument buffers. */
static void bind_params(Lower *L, const Func *fn, LLVMValueRef f) {
  const Graph *g = L->p->g;
  L->fn = f;
  for (int s = 0; s < g->nsyms; s++) {
    const char *nm = cg_symbol_name(&L->a, L->p, s);
    LLVMSetValueName2(LLVMGetParam(f, (unsigned)s), nm, strlen(nm));
    L->syms[s] = LLVMGetParam(f, (unsigned)s);
  }
  for (int i = 0; i < fn->nargs; i++) {
    const char *nm = bufname(L, fn->args[i]);
    LLVMValueRef a = LLVMGetParam(f, (unsigned)(g->nsyms + i));
    LLVMSetValueName2(a, nm, strlen(nm));
    L->bufptr[fn->args[i]] = a;
  }
}

static LLVMValueRef declare_func(Lower *L, const Func *fn) {
  LLVMValueRef f = LLVMAddFunction(L->m, arena_printf(&L->a, "%s_%s", L->pre, fn->name), func_type(L, fn, L->i32));
  add_attr(L, f, "nounwind");
  bind_params(L, fn, f);
  return f;
}

/* if (sym < 0 || sym > MAX) return -1; for every symbol (0: an empty batch). */
static void symbol_checks(Lower *L) {
  const Graph *g = L->p->g;
  LLVMBasicBlockRef bad = NULL;
  for (int s = 0; s < g->nsyms; s++) {
    if (!bad) bad = block(L, "bad_size");
    LLVMValueRef lo = LLVMBuildICmp(L->b, LLVMIntSLT, L->syms[s], LLVMConstInt(L->i64, 0, 0), "");
    LLVMValueRef hi = LLVMBuildICmp(L->b, LLVMIntSGT, L->syms[s], LLVMConstInt(L->i64, (unsigned long long)g->syms[s].max, 1), "");
    LLVMBasicBlockRef ok = block(L, "size_ok");
    LLVMBuildCondBr(L->b, LLVMBuildOr(L->b, lo, hi, ""), bad, ok);
    LLVMPositionBuilderAtEnd(L->b, ok);
  }
  if (!bad) return;
  LLVMBasicBlockRef here = LLVMGetInsertBlock(L->b);
  LLVMPositionBuilderAtEnd(L->b, bad);
  LLVMBuildRet(L->b, LLVMConstInt(L->i32, (unsigned long long)-1, 1));
  LLVMPositionBuilderAtEnd(L->b, here);
}

/* Fresh loop variables and locals for kernel k in the function being built. */
static void kernel_scope(Lower *L, const Kernel *k) {
  L->vars = arena_alloc(&L->a, sizeof *L->vars * (size_t)(k->nvars + 1));
  L->locals = arena_alloc(&L->a, sizeof *L->locals * (size_t)(k->nlocals + 1));
  L->ltype = arena_alloc(&L->a, sizeof *L->ltype * (size_t)(k->nlocals + 1));
  L->lcount = arena_alloc(&L->a, sizeof *L->lcount * (size_t)(k->nlocals + 1));
  L->llanes = arena_alloc(&L->a, sizeof *L->llanes * (size_t)(k->nlocals + 1));
}

static void parallel_loop(Lower *L, const Kernel *k, const Stmt *s);

/* The kernel's statements; in a kernel function or P_prepare (L->kfn
 * set), its parallel loops go to the pool (parallel_loop), but for those
 * that never have the iterations to pay for a job. */
static void kernel(Lower *L, const Kernel *k) {
  LLVMBasicBlockRef start = block(L, k->what);
  LLVMBuildBr(L->b, start);
  LLVMPositionBuilderAtEnd(L->b, start);
  kernel_scope(L, k);
  for (const Stmt *s = k->body; s; s = s->next) {
    if (L->kfn && cg_parallel_loop(&L->a, k, s) && cg_parallel_min_iters(L->p, s) > 0) {
      parallel_loop(L, k, s);
      continue;
    }
    Stmt one = *s;
    one.next = NULL;
    stmts(L, &one);
  }
}

/* Every buffer's address: arguments are set by declare_func. */
static void buffer_addresses(Lower *L) {
  const Program *p = L->p;
  L->bufptr = arena_alloc(&L->a, sizeof *L->bufptr * (size_t)(p->nbufs + 1));
  for (int b = 0; b < p->nbufs; b++) {
    const Buffer *buf = &p->bufs[b];
    if (buf->kind == BUF_PARAM || buf->kind == BUF_STATE || buf->kind == BUF_DERIVED) L->bufptr[b] = L->storage[b];
    if (buf->kind != BUF_TEMP || !L->arena[buf->dtype]) continue; /* no arena: no kernel touches it */
    LLVMValueRef off = LLVMConstInt(L->i64, (unsigned long long)buf->offset, 0);
    L->bufptr[b] = LLVMConstInBoundsGEP2(lty(L, buf->dtype), L->arena[buf->dtype], &off, 1);
  }
}

/* Opens the entry block (allocas) and the first code block of L->fn. */
static void open_body(Lower *L, LLVMBasicBlockRef *entry, LLVMBasicBlockRef *body) {
  *entry = block(L, "entry"), *body = block(L, "start");
  LLVMPositionBuilderAtEnd(L->ab, *entry);
  LLVMPositionBuilderAtEnd(L->b, *body);
}

/* if (derived_stale) P_prepare(); */
static void prepare_if_stale(Lower *L) {
  LLVMBasicBlockRef run = block(L, "prepare"), done = block(L, "prepared");
  LLVMValueRef flag = LLVMBuildLoad2(L->b, L->i32, L->stale, "stale");
  LLVMBuildCondBr(L->b, LLVMBuildICmp(L->b, LLVMIntNE, flag, LLVMConstInt(L->i32, 0, 0), ""), run, done);
  LLVMPositionBuilderAtEnd(L->b, run);
  LLVMBuildCall2(L->b, LLVMGlobalGetValueType(L->prepare), L->prepare, NULL, 0, "");
  LLVMBuildBr(L->b, done);
  LLVMPositionBuilderAtEnd(L->b, done);
}

static void set_stale(Lower *L, int value) {
  LLVMBuildStore(L->b, LLVMConstInt(L->i32, (unsigned long long)value, 0), L->stale);
}

/* assume(0 <= sym <= max) for every symbol: what the entry's checks
 * established, restated inside a kernel's own function. */
static void symbol_ranges(Lower *L) {
  const Graph *g = L->p->g;
  LLVMTypeRef i1 = LLVMInt1TypeInContext(L->cx);
  LLVMTypeRef aty = LLVMFunctionType(LLVMVoidTypeInContext(L->cx), &i1, 1, 0);
  LLVMValueRef assume = LLVMGetNamedFunction(L->m, "llvm.assume");
  if (!assume) assume = LLVMAddFunction(L->m, "llvm.assume", aty);
  for (int s = 0; s < g->nsyms; s++) {
    LLVMValueRef lo = LLVMBuildICmp(L->b, LLVMIntSGE, L->syms[s], LLVMConstInt(L->i64, 0, 0), "");
    LLVMValueRef hi = LLVMBuildICmp(L->b, LLVMIntSLE, L->syms[s], LLVMConstInt(L->i64, (unsigned long long)g->syms[s].max, 1), "");
    LLVMValueRef ok = LLVMBuildAnd(L->b, lo, hi, "");
    LLVMBuildCall2(L->b, aty, assume, &ok, 1, "");
  }
}

/* --- kernel functions, shared by identical kernels -------------------------------- */

/* The buffers a kernel touches, in the order a walk first meets them: the
 * kernel function's pointer parameters (its slots). */
struct Slots {
  int n;
  int *buf;      /* slot -> buffer */
  int *slot_of;  /* buffer -> slot, or -1 */
};

static void slot_add(Slots *s, int b) {
  if (s->slot_of[b] < 0) s->slot_of[b] = s->n, s->buf[s->n++] = b;
}

static int slot_expr(void *ctx, const Expr *e) {
  if (e->kind == EX_LOAD) slot_add(ctx, e->id);
  return 0;
}

static int slot_stmt(void *ctx, const Stmt *s) {
  if (s->kind == ST_STORE) slot_add(ctx, s->id);
  return 0;
}

static void kernel_slots(Lower *L, const Kernel *k, Slots *s) {
  int nb = L->p->nbufs;
  s->n = 0;
  s->buf = arena_alloc(&L->a, sizeof *s->buf * (size_t)(nb + 1));
  s->slot_of = arena_alloc(&L->a, sizeof *s->slot_of * (size_t)(nb + 1));
  for (int b = 0; b < nb; b++) s->slot_of[b] = -1;
  KirVisitor v = {s, slot_stmt, slot_expr};
  kir_walk_block(&v, k->body);
}

/* What a slot's buffer is, as far as the function's code is concerned:
 * an argument of the entry point, a temporary (arena storage, which never
 * escapes), or other storage of the model (params, state, derived). */
typedef enum SlotClass { SLOT_ARG, SLOT_TEMP, SLOT_STORAGE } SlotClass;

static SlotClass slot_class(const Lower *L, int b) {
  BufKind k = L->p->bufs[b].kind;
  return k == BUF_INPUT || k == BUF_OUTPUT ? SLOT_ARG : k == BUF_TEMP ? SLOT_TEMP : SLOT_STORAGE;
}

/* Two accesses may touch the same memory only through one buffer, or
 * through an argument (the caller's memory) and the model's own storage,
 * whose addresses P_param hands out; arguments may overlap each other. */
static int slots_disjoint(const Lower *L, int a, int b) {
  SlotClass ca = slot_class(L, a), cb = slot_class(L, b);
  if (a == b) return 0;
  if (ca == SLOT_ARG && cb == SLOT_ARG) return 0;
  return !((ca == SLOT_ARG && cb == SLOT_STORAGE) || (ca == SLOT_STORAGE && cb == SLOT_ARG));
}

/* FNV-1a over the words of a tree, buffers as slots. */
static uint64_t mix(uint64_t h, uint64_t w) { return (h ^ w) * 0x100000001b3ull; }

static uint64_t hash_expr(uint64_t h, const Expr *e, const int *slot_of) {
  if (!e) return mix(h, 0x51);
  uint64_t f;
  memcpy(&f, &e->f, sizeof f);
  h = mix(mix(mix(mix(h, (uint64_t)e->kind), (uint64_t)e->type), (uint64_t)e->lanes), (uint64_t)e->op);
  h = mix(mix(mix(h, (uint64_t)(e->kind == EX_LOAD ? slot_of[e->id] : e->id)), (uint64_t)e->i), f);
  return hash_expr(hash_expr(hash_expr(h, e->a, slot_of), e->b, slot_of), e->c, slot_of);
}

static uint64_t hash_block(uint64_t h, const Stmt *s, const int *slot_of) {
  for (; s; s = s->next) {
    h = mix(mix(mix(h, (uint64_t)s->kind), (uint64_t)(s->kind == ST_STORE ? slot_of[s->id] : s->id)), (uint64_t)s->type);
    h = mix(mix(mix(mix(mix(h, (uint64_t)s->loop), (uint64_t)s->axis), (uint64_t)s->step), (uint64_t)s->width), (uint64_t)s->count);
    h = hash_expr(hash_expr(hash_expr(h, s->extent, slot_of), s->index, slot_of), s->value, slot_of);
    h = hash_block(hash_block(h, s->body, slot_of), s->orelse, slot_of);
  }
  return mix(h, 0x5e);
}

static int same_expr(const Expr *a, const int *sa, const Expr *b, const int *sb) {
  if (!a || !b) return a == b;
  if (a->kind != b->kind || a->type != b->type || a->lanes != b->lanes || a->op != b->op || a->i != b->i ||
      memcmp(&a->f, &b->f, sizeof a->f))
    return 0;
  if (a->kind == EX_LOAD ? sa[a->id] != sb[b->id] : a->id != b->id) return 0;
  return same_expr(a->a, sa, b->a, sb) && same_expr(a->b, sa, b->b, sb) && same_expr(a->c, sa, b->c, sb);
}

static int same_block(const Stmt *a, const int *sa, const Stmt *b, const int *sb) {
  for (; a && b; a = a->next, b = b->next) {
    if (a->kind != b->kind || a->type != b->type || a->loop != b->loop || a->axis != b->axis || a->step != b->step ||
        a->width != b->width || a->count != b->count)
      return 0;
    if (a->kind == ST_STORE ? sa[a->id] != sb[b->id] : a->id != b->id) return 0;
    if (!same_expr(a->extent, sa, b->extent, sb) || !same_expr(a->index, sa, b->index, sb) ||
        !same_expr(a->value, sa, b->value, sb) || !same_block(a->body, sa, b->body, sb) ||
        !same_block(a->orelse, sa, b->orelse, sb))
      return 0;
  }
  return !a && !b;
}

/* Whether kernel a (slots sa) and kernel b (slots sb) compile to the same
 * function: the same code over buffers of the same types and classes in
 * the same slots, whose pairs are disjoint alike. */
static int same_kernel(const Lower *L, const Kernel *a, const Slots *sa, const Kernel *b, const Slots *sb) {
  if (sa->n != sb->n) return 0;
  for (int i = 0; i < sa->n; i++) {
    const Buffer *x = &L->p->bufs[sa->buf[i]], *y = &L->p->bufs[sb->buf[i]];
    if (x->dtype != y->dtype || slot_class(L, sa->buf[i]) != slot_class(L, sb->buf[i])) return 0;
  }
  return same_block(a->body, sa->slot_of, b->body, sb->slot_of);
}

struct KernelFn {
  uint64_t hash;
  const Kernel *k;
  Slots slots;
  LLVMValueRef f;
  KernelFn *next;
};

/* The metadata list of n nodes, as a value. */
static LLVMValueRef md_list(Lower *L, LLVMMetadataRef *nodes, size_t n) {
  return LLVMMetadataAsValue(L->cx, LLVMMDNodeInContext2(L->cx, nodes, n));
}

/* Each slot gets an alias scope in the function's own domain, and every
 * access through it is declared not to alias the slots slots_disjoint
 * separates: distinct params, state, derived buffers and temporaries
 * occupy disjoint storage (the memory plan gives temporaries live in the
 * same kernel disjoint arena ranges, and a view is its operand's buffer),
 * and no argument can point into the arena, which never escapes.  What
 * LLVM cannot prove of pointer parameters, so it would test at run time,
 * and a loop whose test fails runs scalar.  Sound only within one kernel
 * (two temporaries of different kernels may share storage), which is why
 * kernel functions are never inlined. */
static void scope_slots(Lower *L, const Slots *s, const char *name) {
  const Program *p = L->p;
  L->scope = L->noalias = NULL;
  if (s->n < 2) return;
  LLVMMetadataRef dname = LLVMMDStringInContext2(L->cx, name, strlen(name));
  LLVMMetadataRef domain = LLVMMDNodeInContext2(L->cx, &dname, 1);
  LLVMMetadataRef *sc = arena_alloc(&L->a, sizeof *sc * (size_t)s->n), *others = arena_alloc(&L->a, sizeof *others * (size_t)s->n);
  for (int i = 0; i < s->n; i++) {
    const char *sn = arena_printf(&L->a, "%s.%d", name, i);
    LLVMMetadataRef ops[2] = {LLVMMDStringInContext2(L->cx, sn, strlen(sn)), domain};
    sc[i] = LLVMMDNodeInContext2(L->cx, ops, 2);
  }
  L->scope = arena_alloc(&L->a, sizeof *L->scope * (size_t)(p->nbufs + 1));
  L->noalias = arena_alloc(&L->a, sizeof *L->noalias * (size_t)(p->nbufs + 1));
  for (int i = 0; i < s->n; i++) {
    int m = 0;
    for (int j = 0; j < s->n; j++)
      if (slots_disjoint(L, s->buf[i], s->buf[j])) others[m++] = sc[j];
    if (!m) continue;
    L->scope[s->buf[i]] = md_list(L, &sc[i], 1);
    L->noalias[s->buf[i]] = md_list(L, others, (size_t)m);
  }
}

/* --- parallel loops ----------------------------------------------------------------
 *
 * A parallel loop of a kernel (cg_parallel_loop) becomes a chunk function
 * void P_f_kK_pJ(i64 lo, i64 hi, ptr ctx) that runs iterations [lo, hi)
 * of it (the variable from lo * step while below both hi * step and the
 * extent), and the kernel calls P_parallel_for(chunk, iterations, ctx,
 * min), ctx being the kernel function's own parameters (the symbols, then
 * the argument pointers) in an array of 8-byte slots, min the iterations
 * that pay for a job (cg_parallel_min_iters).  P_parallel_for runs the
 * whole range on the calling thread while it has fewer than min
 * iterations or until P_set_pool(run, pool) gives the module a runner
 * (rt_pool_run and its pool): then run(pool, chunk, iterations, ctx)
 * splits the range among the pool's threads.  Each
 * iteration runs whole on one thread, as the serial loop would run it,
 * so the results are the same bits with or without a pool. */

static LLVMValueRef global(Lower *L, const char *name, LLVMTypeRef t, LLVMValueRef init, int constant, unsigned align);

/* Two pointer globals P_A and P_B and the exported void P_SET(a, b)
 * that stores them (the thread pool's and the collectives' hooks).  The
 * builder is left at the end of P_SET's entry block. */
static void pointer_pair(Lower *L, const char *a, const char *b, const char *set_name, LLVMValueRef *ga, LLVMValueRef *gb) {
  *ga = global(L, arena_printf(&L->a, "%s_%s", L->pre, a), L->ptr, NULL, 0, 8);
  *gb = global(L, arena_printf(&L->a, "%s_%s", L->pre, b), L->ptr, NULL, 0, 8);
  LLVMTypeRef sp[2] = {L->ptr, L->ptr};
  LLVMValueRef set = LLVMAddFunction(L->m, arena_printf(&L->a, "%s_%s", L->pre, set_name),
                                     LLVMFunctionType(LLVMVoidTypeInContext(L->cx), sp, 2, 0));
  add_attr(L, set, "nounwind");
  LLVMPositionBuilderAtEnd(L->b, LLVMAppendBasicBlockInContext(L->cx, set, "entry"));
  LLVMBuildStore(L->b, LLVMGetParam(set, 0), *ga);
  LLVMBuildStore(L->b, LLVMGetParam(set, 1), *gb);
  LLVMBuildRetVoid(L->b);
}

/* The pool's two globals, the exported P_set_pool and the internal
 * P_parallel_for, made once per module. */
static void pool_hooks(Lower *L) {
  if (L->par_for) return;
  LLVMBasicBlockRef here = LLVMGetInsertBlock(L->b);
  pointer_pair(L, "pool_run", "pool", "set_pool", &L->pool_run, &L->pool);
  LLVMTypeRef fp[4] = {L->ptr, L->i64, L->ptr, L->i64}, rp[4] = {L->ptr, L->ptr, L->i64, L->ptr}, cp[3] = {L->i64, L->i64, L->ptr};
  LLVMTypeRef void_t = LLVMVoidTypeInContext(L->cx);
  L->par_for = LLVMAddFunction(L->m, arena_printf(&L->a, "%s_parallel_for", L->pre), LLVMFunctionType(void_t, fp, 4, 0));
  LLVMSetLinkage(L->par_for, LLVMInternalLinkage);
  add_attr(L, L->par_for, "nounwind");
  LLVMValueRef f = L->par_for, chunk = LLVMGetParam(f, 0), n = LLVMGetParam(f, 1), ctx = LLVMGetParam(f, 2);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(L->cx, f, "entry");
  LLVMBasicBlockRef serial = LLVMAppendBasicBlockInContext(L->cx, f, "serial");
  LLVMBasicBlockRef pooled = LLVMAppendBasicBlockInContext(L->cx, f, "pool");
  LLVMPositionBuilderAtEnd(L->b, entry);
  LLVMValueRef run = LLVMBuildLoad2(L->b, L->ptr, L->pool_run, "run");
  LLVMValueRef small = LLVMBuildICmp(L->b, LLVMIntSLT, n, LLVMGetParam(f, 3), "");
  LLVMBuildCondBr(L->b, LLVMBuildOr(L->b, LLVMBuildIsNull(L->b, run, ""), small, ""), serial, pooled);
  LLVMPositionBuilderAtEnd(L->b, serial);
  LLVMValueRef a3[3] = {LLVMConstInt(L->i64, 0, 0), n, ctx};
  LLVMBuildCall2(L->b, LLVMFunctionType(void_t, cp, 3, 0), chunk, a3, 3, "");
  LLVMBuildRetVoid(L->b);
  LLVMPositionBuilderAtEnd(L->b, pooled);
  LLVMValueRef a4[4] = {LLVMBuildLoad2(L->b, L->ptr, L->pool, "pool"), chunk, n, ctx};
  LLVMBuildCall2(L->b, LLVMFunctionType(void_t, rp, 4, 0), run, a4, 4, "");
  LLVMBuildRetVoid(L->b);
  LLVMPositionBuilderAtEnd(L->b, here);
}

/* Slot i of a ctx array of 8-byte slots. */
static LLVMValueRef ctx_slot(Lower *L, LLVMBuilderRef b, LLVMValueRef ctx, int i) {
  LLVMValueRef idx = LLVMConstInt(L->i64, (unsigned long long)i, 0);
  return LLVMBuildInBoundsGEP2(b, L->i64, ctx, &idx, 1, "");
}

/* The kernel function's parameters in a ctx array (once per function). */
static LLVMValueRef kernel_ctx(Lower *L) {
  if (L->kctx) return L->kctx;
  unsigned n = LLVMCountParams(L->fn);
  L->kctx = LLVMBuildAlloca(L->ab, LLVMArrayType2(L->i64, n), "ctx");
  for (unsigned i = 0; i < n; i++) LLVMBuildStore(L->ab, LLVMGetParam(L->fn, i), ctx_slot(L, L->ab, L->kctx, (int)i));
  return L->kctx;
}

/* What building a chunk function changes in L, saved and restored. */
typedef struct LowerSaved {
  LLVMValueRef fn, kctx, *vars, *locals, syms[IR_MAX_SYMS], *args;
  LLVMBasicBlockRef b, ab;
  int64_t *lcount;
  DType *ltype;
  int *llanes;
} LowerSaved;

static void lower_save(Lower *L, LowerSaved *sv) {
  *sv = (LowerSaved){L->fn, L->kctx, L->vars, L->locals, {0}, NULL, LLVMGetInsertBlock(L->b), LLVMGetInsertBlock(L->ab),
                     L->lcount, L->ltype, L->llanes};
  memcpy(sv->syms, L->syms, sizeof sv->syms);
  int n = L->kslots ? L->kslots->n : 0;
  sv->args = arena_alloc(&L->a, sizeof *sv->args * (size_t)(n + 1));
  for (int i = 0; i < n; i++) sv->args[i] = L->bufptr[L->kslots->buf[i]];
}

static void lower_restore(Lower *L, const LowerSaved *sv) {
  L->fn = sv->fn, L->kctx = sv->kctx, L->vars = sv->vars, L->locals = sv->locals;
  L->lcount = sv->lcount, L->ltype = sv->ltype, L->llanes = sv->llanes;
  memcpy(L->syms, sv->syms, sizeof sv->syms);
  for (int i = 0; L->kslots && i < L->kslots->n; i++) L->bufptr[L->kslots->buf[i]] = sv->args[i];
  LLVMPositionBuilderAtEnd(L->b, sv->b);
  LLVMPositionBuilderAtEnd(L->ab, sv->ab);
}

/* The chunk function of loop s of kernel k (above); the ncap locals of
 * ids[] (with the types of cap_type[]) come from ctx slots base, base + 1... */
static LLVMValueRef chunk_function(Lower *L, const Kernel *k, const Stmt *s, const int *ids, const DType *cap_type,
                                   int ncap, int base) {
  int nsyms = L->p->g->nsyms;
  LowerSaved sv;
  lower_save(L, &sv);
  LLVMTypeRef cp[3] = {L->i64, L->i64, L->ptr};
  const char *name = arena_printf(&L->a, "%s_p%d", LLVMGetValueName(sv.fn), L->nchunks++);
  LLVMValueRef f = LLVMAddFunction(L->m, name, LLVMFunctionType(LLVMVoidTypeInContext(L->cx), cp, 3, 0));
  LLVMSetLinkage(f, LLVMInternalLinkage);
  add_attr(L, f, "nounwind");
  add_attr(L, f, "noinline");
  L->fn = f, L->kctx = NULL;
  LLVMBasicBlockRef entry, body;
  open_body(L, &entry, &body);
  LLVMValueRef ctx = LLVMGetParam(f, 2);
  if (L->kslots) { /* a kernel function: the symbols, then the slots (P_prepare has none) */
    for (int i = 0; i < nsyms; i++) L->syms[i] = LLVMBuildLoad2(L->b, L->i64, ctx_slot(L, L->b, ctx, i), "");
    for (int i = 0; i < L->kslots->n; i++)
      L->bufptr[L->kslots->buf[i]] = LLVMBuildLoad2(L->b, L->ptr, ctx_slot(L, L->b, ctx, nsyms + i), "");
    symbol_ranges(L);
  }
  kernel_scope(L, k);
  for (int j = 0; j < ncap; j++) {
    declare_local(L, ids[j], cap_type[j], 0, 1);
    LLVMValueRef v = LLVMBuildLoad2(L->b, vty(L, cap_type[j], 1), ctx_slot(L, L->b, ctx, base + j), "");
    LLVMBuildStore(L->b, v, L->locals[ids[j]]);
  }
  LLVMValueRef step = LLVMConstInt(L->i64, (unsigned long long)s->step, 0);
  LLVMValueRef lo = LLVMBuildNSWMul(L->b, LLVMGetParam(f, 0), step, "");
  LLVMValueRef hi = LLVMBuildNSWMul(L->b, LLVMGetParam(f, 1), step, ""), ext = expr(L, s->extent);
  LLVMValueRef end = LLVMBuildSelect(L->b, LLVMBuildICmp(L->b, LLVMIntSLT, hi, ext, ""), hi, ext, "end");
  loop_from(L, s, lo, end);
  LLVMBuildRetVoid(L->b);
  LLVMBuildBr(L->ab, body);
  lower_restore(L, &sv);
  return f;
}

/* The kernel function's parameters and then the values of the ncap
 * locals ids[] in a ctx array of the loop's own (the parameters stored
 * once, at the function's entry; the values where the loop starts). */
static LLVMValueRef capture_ctx(Lower *L, const int *ids, int ncap) {
  unsigned n = LLVMCountParams(L->fn);
  LLVMValueRef ctx = LLVMBuildAlloca(L->ab, LLVMArrayType2(L->i64, n + (unsigned)ncap), "cctx");
  for (unsigned i = 0; i < n; i++) LLVMBuildStore(L->ab, LLVMGetParam(L->fn, i), ctx_slot(L, L->ab, ctx, (int)i));
  for (int j = 0; j < ncap; j++) {
    LLVMValueRef v = LLVMBuildLoad2(L->b, vty(L, L->ltype[ids[j]], 1), L->locals[ids[j]], "");
    LLVMBuildStore(L->b, v, ctx_slot(L, L->b, ctx, (int)n + j));
  }
  return ctx;
}

/* P_parallel_for(chunk, ceil(extent / step), ctx, min); a loop that reads
 * locals of the kernel (cg_parallel_captures) passes their values in its
 * ctx after the parameters. */
static void parallel_loop(Lower *L, const Kernel *k, const Stmt *s) {
  pool_hooks(L);
  int *ids = arena_alloc(&L->a, sizeof *ids * (size_t)(k->nlocals + 1));
  int ncap = cg_parallel_captures(&L->a, k, s, ids);
  DType *cap_type = arena_alloc(&L->a, sizeof *cap_type * (size_t)(ncap + 1));
  for (int j = 0; j < ncap; j++) cap_type[j] = L->ltype[ids[j]];
  int base = (int)LLVMCountParams(L->fn);
  LLVMValueRef chunk = chunk_function(L, k, s, ids, cap_type, ncap, base);
  LLVMValueRef ctx = ncap ? capture_ctx(L, ids, ncap) : kernel_ctx(L);
  LLVMValueRef step = LLVMConstInt(L->i64, (unsigned long long)s->step, 0);
  LLVMValueRef n = LLVMBuildSDiv(L->b, LLVMBuildNSWAdd(L->b, expr(L, s->extent), LLVMConstInt(L->i64, (unsigned long long)(s->step - 1), 0), ""), step, "");
  LLVMValueRef args[4] = {chunk, n, ctx, LLVMConstInt(L->i64, (unsigned long long)cg_parallel_min_iters(L->p, s), 0)};
  LLVMBuildCall2(L->b, LLVMGlobalGetValueType(L->par_for), L->par_for, args, 4, "");
}

/* A cold kernel runs at most CG_COLD_WORK statements a call (a softmax
 * over a batch of logits, the update of a bias, a small transpose): its
 * loops are neither vectorised nor unrolled (cold_loop).  The loop
 * vectoriser turns a two-deep copy loop of 30 instructions into 500 (a
 * vector body interleaved four ways, a vector epilogue, the scalar
 * remainder, the outer loop unrolled around them), which the later
 * passes and instruction selection pay for; a loop of a few thousand
 * iterations at most gains a microsecond or so from it. */
static int cold_kernel(const Lower *L, const Kernel *k) { return cg_block_work(L->p, k->body) <= CG_COLD_WORK; }

/* void P_func_kK(syms..., one pointer per slot), internal, never inlined:
 * each kernel is optimised and register-allocated on its own, so what one
 * kernel becomes does not depend on its neighbours (in one function of a
 * whole training step, the optimiser's per-function budgets decided
 * that), and a profile names it (P_train_step_k12). */
static LLVMValueRef kernel_function(Lower *L, const Func *fn, int k, const Slots *s) {
  int nsyms = L->p->g->nsyms;
  LLVMTypeRef *params = arena_alloc(&L->a, sizeof *params * (size_t)(nsyms + s->n + 1));
  for (int i = 0; i < nsyms + s->n; i++) params[i] = i < nsyms ? L->i64 : L->ptr;
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(L->cx), params, (unsigned)(nsyms + s->n), 0);
  LLVMValueRef f = LLVMAddFunction(L->m, arena_printf(&L->a, "%s_%s_k%d", L->pre, fn->name, k), fty);
  LLVMSetLinkage(f, LLVMInternalLinkage);
  add_attr(L, f, "nounwind");
  add_attr(L, f, "noinline");
  L->cold = cold_kernel(L, &fn->kernels[k]);
  L->fn = f;
  for (int i = 0; i < nsyms; i++) L->syms[i] = LLVMGetParam(f, (unsigned)i);
  LLVMValueRef *entry_ptr = L->bufptr;
  L->bufptr = arena_alloc(&L->a, sizeof *L->bufptr * (size_t)(L->p->nbufs + 1));
  for (int i = 0; i < s->n; i++) {
    const char *nm = bufname(L, s->buf[i]);
    L->bufptr[s->buf[i]] = LLVMGetParam(f, (unsigned)(nsyms + i));
    LLVMSetValueName2(L->bufptr[s->buf[i]], nm, strlen(nm));
  }
  LLVMBasicBlockRef entry, body;
  open_body(L, &entry, &body);
  symbol_ranges(L);
  scope_slots(L, s, LLVMGetValueName(f));
  L->kfn = fn, L->kslots = s, L->kctx = NULL, L->nchunks = 0;
  kernel(L, &fn->kernels[k]);
  L->kfn = NULL, L->kslots = NULL, L->cold = 0;
  L->scope = L->noalias = NULL;
  LLVMBuildRetVoid(L->b);
  LLVMBuildBr(L->ab, body);
  L->bufptr = entry_ptr;
  return f;
}

/* The function of kernel k of fn: one built before for an identical
 * kernel (the evaluation step repeats the training step's forward
 * kernels, and repeated blocks of a model repeat theirs), else a new one. */
static LLVMValueRef shared_kernel(Lower *L, const Func *fn, int k, const Slots *s) {
  uint64_t h = hash_block(0xcbf29ce484222325ull, fn->kernels[k].body, s->slot_of);
  for (KernelFn *c = L->kfns; c; c = c->next)
    if (c->hash == h && same_kernel(L, c->k, &c->slots, &fn->kernels[k], s)) return c->f;
  KernelFn *c = arena_alloc(&L->a, sizeof *c);
  *c = (KernelFn){h, &fn->kernels[k], *s, kernel_function(L, fn, k, s), L->kfns};
  L->kfns = c;
  return c->f;
}

/* The collectives' hook (emit_common.h): the globals P_collective and
 * P_collective_ctx, and the exported P_set_collective that sets them. */
static void collective_hook(Lower *L) {
  if (!cg_has_collectives(L->p)) return;
  pointer_pair(L, "collective", "collective_ctx", "set_collective", &L->coll, &L->coll_ctx);
}

/* if (P_collective) P_collective(P_collective_ctx, kind, buffer, n); after
 * the copy kernel of a collective. */
static void collective_call(Lower *L, const CgCollective *c) {
  LLVMBasicBlockRef call = block(L, "collective"), done = block(L, "collected");
  LLVMValueRef fp = LLVMBuildLoad2(L->b, L->ptr, L->coll, "collective");
  LLVMBuildCondBr(L->b, LLVMBuildIsNull(L->b, fp, ""), done, call);
  LLVMPositionBuilderAtEnd(L->b, call);
  LLVMTypeRef at[4] = {L->ptr, L->i32, L->ptr, L->i64};
  LLVMValueRef args[4] = {LLVMBuildLoad2(L->b, L->ptr, L->coll_ctx, "ctx"),
                          LLVMConstInt(L->i32, (unsigned long long)c->kind, 0), L->bufptr[c->buf],
                          LLVMConstInt(L->i64, (unsigned long long)c->n, 0)};
  LLVMBuildCall2(L->b, LLVMFunctionType(LLVMVoidTypeInContext(L->cx), at, 4, 0), fp, args, 4, "");
  LLVMBuildBr(L->b, done);
  LLVMPositionBuilderAtEnd(L->b, done);
}

/* The entry point: the symbol checks, derived data made if stale, then
 * a call of each kernel's function with the symbols and the addresses of
 * the buffers it touches (the entry's own pointer parameters for its
 * arguments). */
static void function(Lower *L, const Func *fn) {
  const Program *p = L->p;
  int nsyms = p->g->nsyms;
  buffer_addresses(L);
  LLVMValueRef *kf = arena_alloc(&L->a, sizeof *kf * (size_t)(fn->nkernels + 1));
  Slots *ks = arena_alloc(&L->a, sizeof *ks * (size_t)(fn->nkernels + 1));
  for (int k = 0; k < fn->nkernels; k++) {
    kernel_slots(L, &fn->kernels[k], &ks[k]);
    kf[k] = shared_kernel(L, fn, k, &ks[k]);
  }
  declare_func(L, fn);
  LLVMBasicBlockRef entry, body;
  open_body(L, &entry, &body);
  symbol_checks(L);
  if (cg_reads_derived(p, fn)) prepare_if_stale(L);
  LLVMValueRef *args = arena_alloc(&L->a, sizeof *args * (size_t)(nsyms + p->nbufs + 1));
  for (int k = 0; k < fn->nkernels; k++) {
    for (int i = 0; i < nsyms; i++) args[i] = L->syms[i];
    for (int i = 0; i < ks[k].n; i++) args[nsyms + i] = L->bufptr[ks[k].buf[i]];
    LLVMBuildCall2(L->b, LLVMGlobalGetValueType(kf[k]), kf[k], args, (unsigned)(nsyms + ks[k].n), "");
    CgCollective cc;
    if (cg_collective(p, fn, &fn->kernels[k], &cc)) collective_call(L, &cc);
  }
  if (cg_dirties_derived(p, fn)) set_stale(L, 1);
  LLVMBuildRet(L->b, LLVMConstInt(L->i32, 0, 0));
  LLVMBuildBr(L->ab, body);
}

/* The internal void P_prepare(void): the kernels that fill the derived
 * buffers, then the flag cleared (kernel.h, kir_derived). */
static void prepare_function(Lower *L) {
  const Func *fn = L->p->prepare;
  if (!fn) return;
  buffer_addresses(L);
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(L->cx), NULL, 0, 0);
  L->fn = L->prepare = LLVMAddFunction(L->m, arena_printf(&L->a, "%s_prepare", L->pre), fty);
  LLVMSetLinkage(L->fn, LLVMInternalLinkage);
  add_attr(L, L->fn, "nounwind");
  LLVMBasicBlockRef entry, body;
  open_body(L, &entry, &body);
  L->kfn = fn, L->kctx = NULL, L->nchunks = 0;
  for (int k = 0; k < fn->nkernels; k++) kernel(L, &fn->kernels[k]);
  L->kfn = NULL;
  set_stale(L, 0);
  LLVMBuildRetVoid(L->b);
  LLVMBuildBr(L->ab, body);
}

/* --- storage and the parameter table -------------------------------------------- */

static LLVMValueRef global(Lower *L, const char *name, LLVMTypeRef t, LLVMValueRef init, int constant, unsigned align) {
  LLVMValueRef g = LLVMAddGlobal(L->m, t, name);
  LLVMSetInitializer(g, init ? init : LLVMConstNull(t));
  LLVMSetLinkage(g, LLVMInternalLinkage);
  LLVMSetGlobalConstant(g, constant);
  if (align) LLVMSetAlignment(g, align);
  return g;
}

/* Params and state: zeroed arrays, or the embedded values' bytes; derived
 * buffers, zeroed, and the flag that they are stale (set at start). */
static void storage(Lower *L) {
  const Program *p = L->p;
  if (p->prepare) L->stale = global(L, "derived_stale", L->i32, LLVMConstInt(L->i32, 1, 0), 0, 4);
  L->storage = arena_alloc(&L->a, sizeof *L->storage * (size_t)(p->nbufs + 1));
  for (int b = 0; b < p->nbufs; b++) {
    const Buffer *buf = &p->bufs[b];
    if (buf->kind == BUF_DERIVED)
      L->storage[b] = global(L, bufname(L, b), LLVMArrayType2(lty(L, buf->dtype), (uint64_t)buf->size), NULL, 0, 64);
    if (buf->kind != BUF_PARAM && buf->kind != BUF_STATE) continue;
    const RtTensor *t = cg_embedded(p, L->o ? L->o->embed : NULL, b);
    size_t bytes = (size_t)buf->size * rt_dtype_size(buf->dtype);
    if (t) {
      LLVMValueRef init = LLVMConstStringInContext2(L->cx, t->data, bytes, 1);
      L->storage[b] = global(L, bufname(L, b), LLVMTypeOf(init), init, 1, 64);
    } else {
      L->storage[b] = global(L, bufname(L, b), LLVMArrayType2(lty(L, buf->dtype), (uint64_t)buf->size), NULL, 0, 64);
    }
  }
}

/* One arena per element type the temporaries use (emit_common.c decides
 * which and how large, for both emitters). */
static void arenas(Lower *L) {
  for (int t = 0; t < DT_COUNT; t++) {
    int64_t n = cg_arena_elems(L->p, (DType)t);
    if (!n) continue;
    const char *name = arena_printf(&L->a, "A_%s", rt_dtype_name((DType)t));
    L->arena[t] = global(L, name, LLVMArrayType2(lty(L, (DType)t), (uint64_t)n), NULL, 0, 64);
  }
}

static LLVMTypeRef info_type(Lower *L) {
  LLVMTypeRef f[6] = {L->ptr, L->i32, LLVMArrayType2(L->i64, IR_MAX_RANK), L->i64, L->ptr, L->i32};
  return LLVMStructTypeInContext(L->cx, f, 6, 0);
}

static LLVMValueRef cstring(Lower *L, const char *s) {
  LLVMValueRef init = LLVMConstStringInContext2(L->cx, s, strlen(s), 0);
  LLVMValueRef g = global(L, ".name", LLVMTypeOf(init), init, 1, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
  return g;
}

static LLVMValueRef info_entry(Lower *L, int b) {
  const Buffer *buf = &L->p->bufs[b];
  LLVMValueRef dims[IR_MAX_RANK];
  for (int i = 0; i < IR_MAX_RANK; i++)
    dims[i] = LLVMConstInt(L->i64, i < buf->shape.rank ? (unsigned long long)buf->shape.d[i] : 0, 1);
  LLVMValueRef f[6] = {cstring(L, buf->name), LLVMConstInt(L->i32, (unsigned long long)buf->shape.rank, 0),
                       LLVMConstArray2(L->i64, dims, IR_MAX_RANK), LLVMConstInt(L->i64, (unsigned long long)buf->size, 1),
                       L->storage[b], LLVMConstInt(L->i32, buf->kind == BUF_STATE, 0)};
  return LLVMConstStructInContext(L->cx, f, 6, 0);
}

/* The rows of the parameter table (emit_common.c: params, then state). */
static void param_table(Lower *L) {
  LLVMTypeRef it = info_type(L);
  cg_param_table(L->p, &L->a, &L->t);
  int n = L->t.n;
  LLVMValueRef *rows = arena_alloc(&L->a, sizeof *rows * (size_t)(n + 1));
  for (int r = 0; r < n; r++) rows[r] = info_entry(L, L->t.buf[r]);
  if (!n) rows[0] = LLVMConstNull(it);
  LLVMValueRef init = LLVMConstArray2(it, rows, (uint64_t)(n ? n : 1));
  L->table = global(L, "params", LLVMTypeOf(init), init, 1, 8);
  L->err_msg = global(L, "err_msg", LLVMArrayType2(L->i8, CG_ST_ERRLEN), NULL, 0, 1);
}

/* --- the support functions ------------------------------------------------------- */

/* Parses the precompiled support IR and links it in; its functions become
 * internal so that two models can live in one process or one link. */
static RtStatus link_support(Lower *L, RtError *err) {
  LLVMMemoryBufferRef buf =
      LLVMCreateMemoryBufferWithMemoryRange(st_loader_ll, sizeof st_loader_ll - 1, "st_loader.ll", 1);
  LLVMModuleRef sm = NULL;
  char *msg = NULL;
  if (LLVMParseIRInContext(L->cx, buf, &sm, &msg)) {
    rt_fail(err, RT_ERR_FORMAT, "internal error: the safetensors support IR does not parse: %.400s", msg ? msg : "");
    LLVMDisposeMessage(msg);
    return RT_ERR_FORMAT;
  }
  if (LLVMLinkModules2(L->m, sm)) return rt_fail(err, RT_ERR_FORMAT, "internal error: cannot link the safetensors support");
  for (LLVMValueRef f = LLVMGetFirstFunction(L->m); f; f = LLVMGetNextFunction(f)) {
    if (LLVMIsDeclaration(f)) continue;
    LLVMSetLinkage(f, LLVMInternalLinkage);
    add_attr(L, f, "optnone"); /* optimised once already: not again per model */
    add_attr(L, f, "noinline");
  }
  return RT_OK;
}

/* An external function pre_name; the builder is left in its body. */
typedef struct Wrapper {
  const char *name;
  LLVMTypeRef ret;
  LLVMTypeRef params[2];
  int nparams;
} Wrapper;

static LLVMValueRef wrapper(Lower *L, const Wrapper *w) {
  LLVMTypeRef fty = LLVMFunctionType(w->ret, (LLVMTypeRef *)w->params, (unsigned)w->nparams, 0);
  LLVMValueRef f = LLVMAddFunction(L->m, arena_printf(&L->a, "%s_%s", L->pre, w->name), fty);
  add_attr(L, f, "nounwind");
  LLVMPositionBuilderAtEnd(L->b, LLVMAppendBasicBlockInContext(L->cx, f, "entry"));
  return f;
}

static LLVMValueRef call_impl(Lower *L, const char *impl, LLVMValueRef *args, unsigned n) {
  LLVMValueRef f = LLVMGetNamedFunction(L->m, impl);
  IR_ASSERT(f);
  return LLVMBuildCall2(L->b, LLVMGlobalGetValueType(f), f, args, n, "");
}

static void support_functions(Lower *L) {
  int keylen = L->t.keylen, embedded_ = L->o && L->o->embed;
  LLVMValueRef n = LLVMConstInt(L->i32, (unsigned long long)L->t.n, 0);
  LLVMValueRef emb = LLVMConstInt(L->i32, (unsigned long long)embedded_, 0);
  LLVMValueRef errlen = LLVMConstInt(L->i32, CG_ST_ERRLEN, 0), klen = LLVMConstInt(L->i32, (unsigned long long)keylen, 0);
  LLVMValueRef entries = global(L, "st_entries", LLVMArrayType2(L->i8, sizeof(CgStEntry) * (size_t)(L->t.n + 1)), NULL, 0, 8);
  LLVMValueRef key = global(L, "st_key", LLVMArrayType2(L->i8, (uint64_t)keylen), NULL, 0, 1);

  Wrapper wp = {"param", L->ptr, {L->i32}, 1};
  LLVMValueRef f = wrapper(L, &wp);
  LLVMValueRef a1[3] = {L->table, n, LLVMGetParam(f, 0)};
  LLVMBuildRet(L->b, call_impl(L, "dlc_st_param_impl", a1, 3));

  Wrapper ws = {"set_param", L->i32, {L->i32, L->ptr}, 2};
  f = wrapper(L, &ws);
  if (L->stale && !embedded_) set_stale(L, 1);
  LLVMValueRef a2[7] = {L->table, n, LLVMGetParam(f, 0), LLVMGetParam(f, 1), emb, L->err_msg, errlen};
  LLVMBuildRet(L->b, call_impl(L, "dlc_st_set_param_impl", a2, 7));

  Wrapper wl = {"load", L->i32, {L->ptr}, 1};
  f = wrapper(L, &wl);
  if (L->stale && !embedded_) set_stale(L, 1);
  LLVMValueRef a3[9] = {LLVMGetParam(f, 0), L->table, n, entries, key, klen, emb, L->err_msg, errlen};
  LLVMBuildRet(L->b, call_impl(L, "dlc_st_load_impl", a3, 9));

  Wrapper we = {"error", L->ptr, {NULL}, 0};
  wrapper(L, &we);
  LLVMBuildRet(L->b, L->err_msg);
}

/* --- the module -------------------------------------------------------------------- */

static void lower_init(Lower *L, const Program *p, LLVMContextRef cx, const EmitOpts *o) {
  memset(L, 0, sizeof *L);
  L->p = p, L->o = o, L->cx = cx;
  arena_init(&L->a);
  L->pre = cg_c_prefix(&L->a, p->name);
  L->m = LLVMModuleCreateWithNameInContext(L->pre, cx);
  L->b = LLVMCreateBuilderInContext(cx);
  L->ab = LLVMCreateBuilderInContext(cx);
  L->i8 = LLVMInt8TypeInContext(cx);
  L->i32 = LLVMInt32TypeInContext(cx), L->i64 = LLVMInt64TypeInContext(cx);
  L->f32 = LLVMFloatTypeInContext(cx), L->f64 = LLVMDoubleTypeInContext(cx);
  L->ptr = LLVMPointerTypeInContext(cx, 0);
}

static void lower_done(Lower *L) {
  LLVMDisposeBuilder(L->b);
  LLVMDisposeBuilder(L->ab);
  arena_free(&L->a);
}

LLVMModuleRef cg_llvm_build(const Program *p, LLVMContextRef cx, const EmitOpts *o, RtError *err) {
  double t0 = ir_phase_start();
  Lower L;
  lower_init(&L, p, cx, o);
  RtOomScope oom;
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) { /* out of memory: release what is not an owned block, pass it on */
    LLVMDisposeBuilder(L.b), LLVMDisposeBuilder(L.ab), LLVMDisposeModule(L.m);
    rt_oom();
  }
  if (cg_check_embed(p, o ? o->embed : NULL, NULL, err) || link_support(&L, err)) {
    rt_oom_leave(&oom);
    LLVMDisposeModule(L.m);
    lower_done(&L);
    return NULL;
  }
  storage(&L);
  arenas(&L);
  param_table(&L);
  support_functions(&L);
  collective_hook(&L);
  prepare_function(&L);
  for (int i = 0; i < p->nfuncs; i++) function(&L, &p->funcs[i]);
  rt_oom_leave(&oom);
  LLVMModuleRef m = L.m;
  lower_done(&L);
  if (cg_llvm_verify(m, err)) {
    LLVMDisposeModule(m);
    return NULL;
  }
  ir_phase_end("llvm-build", t0);
  return m;
}

RtStatus cg_llvm_verify(LLVMModuleRef m, RtError *err) {
  char *msg = NULL;
  if (!LLVMVerifyModule(m, LLVMReturnStatusAction, &msg)) {
    LLVMDisposeMessage(msg);
    return RT_OK;
  }
  rt_fail(err, RT_ERR_FORMAT, "internal error: the generated LLVM module does not verify: %.400s", msg ? msg : "");
  LLVMDisposeMessage(msg);
  return RT_ERR_FORMAT;
}

RtStatus cg_llvm_fail(RtError *err, LLVMErrorRef e, const char *what) {
  char *msg = LLVMGetErrorMessage(e);
  rt_fail(err, RT_ERR_FORMAT, "internal error: %s: %.400s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return RT_ERR_FORMAT;
}
