/*
 * emit_c.c — prints a Program as dependency-free C99 (kernels with
 * vector lanes also in GNU C vectors, chosen by the preprocessor).
 *
 * The output is one .c file and one header.  The .c file holds, in order:
 * the parameter storage (static arrays, or initialised constants with
 * --embed-params) and the storage of derived buffers, one static arena
 * per element type sized by memory planning, the parameter table, the
 * flag that says the derived buffers are stale, a safetensors loader that
 * reads a file with stdio and no malloc, the static P_prepare that fills
 * the derived buffers, and one function per Func.  Each kernel is a block
 * headed by a comment naming the .dl line it comes from.
 *
 * Printing is mechanical: expressions are printed with C precedence so
 * only needed parentheses appear, float literals carry an 'f' suffix and
 * enough digits to round-trip, and names are derived from the model
 * (inputs in_x, outputs out_logits, temporaries tN, params P_fc1_weight),
 * so the same Program always prints the same text.  What the LLVM emitter
 * must agree on (names, arenas, the parameter table, the embed check, the
 * helpers needed, the derived-data guards) is decided in emit_common.c;
 * the reader and the random-number helper are printed from the sources
 * dlc itself compiles (st_loader_impl.c, ir/random.h).
 */
#include <ctype.h>
#include <math.h>
#include <string.h>

#include "codegen/cg.h"
#include "codegen/emit_common.h"

typedef struct Emit {
  const Program *p;
  FILE *f;
  const char *pre;      /* C prefix: "mlp" */
  const char *PRE;      /* upper case: "MLP" */
  const EmitOpts *o;
  Arena *a;
  int lane;             /* the lane of n-lane expressions being printed */
  int vec;              /* printing the GNU C vector form of a kernel */
  unsigned vec_lanes;   /* bit n: some kernel has f32 vectors of n lanes */
  const char *read;     /* per local of the kernel being printed: some expression reads it */
  int nread;
  int ahead_var;        /* with ahead > 0, loop variable ahead_var prints as (i + ahead) */
  int64_t ahead;
} Emit;

static const char *upper(Arena *a, const char *s) {
  char *u = arena_strdup(a, s);
  for (char *c = u; *c; c++) *c = (char)toupper((unsigned char)*c);
  return u;
}

static const char *ctype(DType t) {
  switch (t) {
  case DT_F32: return "float";
  case DT_F64: return "double";
  case DT_I32: return "int32_t";
  case DT_I64: return "int64_t";
  case DT_U8: return "uint8_t";
  case DT_BOOL: return "int"; /* 0 or 1, as C's comparisons give */
  case DT_COUNT: break;
  }
  return "void";
}

/* The C name of buffer b (emit_common.c decides). */
static const char *bufname(Emit *E, int b) { return cg_buffer_name(E->a, E->p, b); }

/* --- expressions ----------------------------------------------------------------
 *
 * Every construct of kernel.h prints as C that computes exactly its value.
 * The kernel IR has no implicit conversions, so C's never change a value:
 * both operands of an operator have one type, f32 arithmetic is float
 * arithmetic (float operands, 'f' literals, expf and friends), and each
 * conversion is a cast.  Two C rules are worked around: integer constants
 * of a subtree with no i64 variable in it would be computed as int, so
 * such a subtree starts with (int64_t); and u8 constants are cast.  select
 * and && print as C's lazy ?: and &&, which give the IR's eager values
 * because every IR expression is pure; a guarded load prints as
 * (guard ? buf[index] : otherwise), which reads memory only under its guard.
 * Lanes print unrolled, as scalars: lane k of an expression is printed
 * with E->lane = k (an n-lane load is buf[index + k], lane k of an n-lane
 * local is the scalar vL_k, a broadcast is its scalar), and a statement of
 * n lanes is n statements, one per lane (through temporaries when a lane
 * could read what an earlier lane wrote); a reduction prints its pairwise
 * tree of lanes.  A kernel whose lanes are all f32 loads, locals,
 * broadcasts and + - * / is printed a second time in GNU C vectors
 * (`#if DLC_VECTORS`, on by default under GCC and Clang, see vec_kernel),
 * where an n-lane value is one dlc_f32xN: the same IEEE operations lane
 * by lane, so both forms give the same bits; C compilers turn the scalar
 * form of several vector accumulators into worse code than one. */

static int prec(const Expr *e) {
  if (e->kind == EX_BROADCAST) return prec(e->a);
  if (e->kind == EX_SELECT || (e->kind == EX_LOAD && e->b)) return 1;
  return e->kind == EX_BINARY ? kir_binop_prec((BinOp)e->op) : 10;
}

static void expr(Emit *E, const Expr *e);

static void sub(Emit *E, const Expr *e, int min_prec) {
  if (prec(e) < min_prec) {
    fputc('(', E->f);
    expr(E, e);
    fputc(')', E->f);
  } else {
    expr(E, e);
  }
}

static void float_lit(Emit *E, double v, DType t) {
  if (isnan(v)) { fputs(t == DT_F32 ? "NAN" : "(double)NAN", E->f); return; }
  if (isinf(v)) { fputs(v < 0 ? "(-INFINITY)" : "INFINITY", E->f); return; }
  char buf[64]; /* an f32 is rounded once, here: 9 digits then name that float exactly */
  snprintf(buf, sizeof buf, t == DT_F32 ? "%.9g" : "%.17g", t == DT_F32 ? (double)(float)v : v);
  if (!strpbrk(buf, ".e")) strcat(buf, ".0");
  const char *suffix = t == DT_F32 ? "f" : "";
  fprintf(E->f, v < 0 ? "(%s%s)" : "%s%s", buf, suffix);
}

static void int_lit(Emit *E, int64_t v, DType t) {
  if (t == DT_U8) fprintf(E->f, "(uint8_t)%lld", (long long)v);
  else if (v == INT64_MIN) fputs("INT64_MIN", E->f);
  else fprintf(E->f, "%lld", (long long)v);
}

/* Whether C gives e the type int64_t by itself: it is i64 and not built
 * from integer constants alone (whose C type is int). */
static int c_wide(const Expr *e) {
  if (e->type != DT_I64) return 0;
  switch (e->kind) {
  case EX_ICONST: return e->i < INT32_MIN || e->i > INT32_MAX;
  case EX_UNARY: return c_wide(e->a);
  case EX_BINARY: return c_wide(e->a) || c_wide(e->b);
  case EX_SELECT: return c_wide(e->b) || c_wide(e->c);
  case EX_BROADCAST: case EX_REDUCE: return c_wide(e->a);
  case EX_ZIP: return c_wide(e->a) || c_wide(e->b);
  case EX_FCONST: case EX_VAR: case EX_SYM: case EX_LOCAL: case EX_LOAD: case EX_CAST: case EX_RAND: case EX_FMA: return 1;
  }
  return 1;
}

static const char *binary_op(BinOp op) {
  switch (op) {
  case BIN_ADD: return " + ";
  case BIN_SUB: return " - ";
  case BIN_MUL: return " * ";
  case BIN_DIV: return " / ";
  case BIN_MOD: return " % ";
  case BIN_LT: return " < ";
  case BIN_LE: return " <= ";
  case BIN_GT: return " > ";
  case BIN_GE: return " >= ";
  case BIN_EQ: return " == ";
  case BIN_NE: return " != ";
  case BIN_AND: return " && ";
  case BIN_OR: return " || ";
  case BIN_MAX: return "dlc_max";
  case BIN_MIN: return "dlc_min";
  case BIN_POW: return "pow";
  }
  return "?";
}

/* max or min other than f32's helper: (a > b ? a : b) for integers, and
 * for f64 with NaN propagating, (a > b || a != a ? a : b). */
static void minmax_inline(Emit *E, const Expr *e) {
  const char *cmp = e->op == BIN_MAX ? " > " : " < ";
  fputc('(', E->f);
  sub(E, e->a, 6);
  fputs(cmp, E->f);
  sub(E, e->b, 6);
  if (e->type == DT_F64) {
    fputs(" || ", E->f);
    sub(E, e->a, 6);
    fputs(" != ", E->f);
    sub(E, e->a, 6);
  }
  fputs(" ? ", E->f);
  sub(E, e->a, 2);
  fputs(" : ", E->f);
  sub(E, e->b, 2);
  fputc(')', E->f);
}

static void call2(Emit *E, const char *fn, const Expr *a, const Expr *b) {
  fprintf(E->f, "%s(", fn);
  expr(E, a);
  fputs(", ", E->f);
  expr(E, b);
  fputc(')', E->f);
}

static void binary(Emit *E, const Expr *e) {
  BinOp op = (BinOp)e->op;
  if (op == BIN_POW) return call2(E, e->type == DT_F32 ? "powf" : "pow", e->a, e->b);
  if ((op == BIN_MAX || op == BIN_MIN) && e->type == DT_F32) return call2(E, op == BIN_MAX ? "dlc_maxf" : "dlc_minf", e->a, e->b);
  if (op == BIN_MAX || op == BIN_MIN) return minmax_inline(E, e);
  int pr = prec(e);
  if (e->type == DT_I64 && !c_wide(e)) fputs("(int64_t)", E->f); /* constants alone: int in C */
  sub(E, e->a, e->type == DT_I64 && !c_wide(e) ? 10 : pr);
  fputs(binary_op(op), E->f);
  sub(E, e->b, pr + 1);
}

static void index_of(Emit *E, const Expr *index) {
  fputc('[', E->f);
  expr(E, index);
  fputc(']', E->f);
}

/* buf[index], or lane k of an n-lane load: buf[index + k]. */
static void element(Emit *E, int buf, const Expr *index, int lanes) {
  fprintf(E->f, "%s[", bufname(E, buf));
  if (lanes > 1 && E->lane > 0) {
    sub(E, index, 6);
    fprintf(E->f, " + %d", E->lane);
  } else {
    expr(E, index);
  }
  fputc(']', E->f);
}

static void load(Emit *E, const Expr *e) {
  if (!e->b) {
    element(E, e->id, e->a, e->lanes);
    return;
  }
  sub(E, e->b, 2);
  fprintf(E->f, " ? %s", bufname(E, e->id));
  index_of(E, e->a);
  fputs(" : ", E->f);
  sub(E, e->c, 1);
}

static void unary(Emit *E, const Expr *e) {
  if (e->op == UN_NEG) {
    fputc('-', E->f);
    if (e->type == DT_I64 && !c_wide(e)) fputs("(int64_t)", E->f);
    sub(E, e->a, 10);
    return;
  }
  /* libm's name; the float versions carry an 'f'. */
  fprintf(E->f, "%s%s(", kir_unop_spelling((UnOp)e->op, KIR_SPELL_LIBM), e->type == DT_F32 ? "f" : "");
  expr(E, e->a);
  fputc(')', E->f);
}

/* The pairwise sum (kernel.h) of the lanes of a: value(u, w) is
 * value(u, 2w) + value(u + w, 2w), value(u, n) lane u, the sum value(0, 1). */
static void pairwise(Emit *E, const Expr *a, int u, int w) {
  if (w == a->lanes) {
    E->lane = u;
    sub(E, a, 7);
    return;
  }
  fputc('(', E->f);
  pairwise(E, a, u, 2 * w);
  fputs(" + ", E->f);
  pairwise(E, a, u + w, 2 * w);
  fputc(')', E->f);
}

/* The GNU C vector form of n-lane f32 expression e (vec_printable). */
/* The helper's name of a zip of op (kernel.h): dlc_zip<name>_f32x<n>. */
static const char *zip_name(int op) {
  static const char *const names[] = {"lo", "hi", "even", "odd"};
  return names[op];
}

static void vexpr(Emit *E, const Expr *e) {
  switch (e->kind) {
  case EX_LOAD:
    fprintf(E->f, "dlc_load_f32x%d(&%s[", e->lanes, bufname(E, e->id));
    expr(E, e->a);
    fputs("])", E->f);
    break;
  case EX_LOCAL: fprintf(E->f, "v%d", e->id); break;
  case EX_BROADCAST:
    fprintf(E->f, "dlc_bcast_f32x%d(", e->lanes);
    expr(E, e->a);
    fputc(')', E->f);
    break;
  case EX_BINARY:
    fputc('(', E->f);
    vexpr(E, e->a);
    fputs(binary_op((BinOp)e->op), E->f);
    vexpr(E, e->b);
    fputc(')', E->f);
    break;
  case EX_SELECT:
    fprintf(E->f, "dlc_select_f32x%d(", e->lanes);
    vexpr(E, e->a);
    fputs(", ", E->f);
    vexpr(E, e->b);
    fputs(", ", E->f);
    vexpr(E, e->c);
    fputc(')', E->f);
    break;
  case EX_ZIP:
    fprintf(E->f, "dlc_zip%s_f32x%d(", zip_name(e->op), e->lanes);
    vexpr(E, e->a);
    fputs(", ", E->f);
    vexpr(E, e->b);
    fputc(')', E->f);
    break;
  case EX_FMA: /* one expression, which GCC (gnu modes) and Clang contract into an FMA where the target has one */
    fputc('(', E->f);
    vexpr(E, e->a);
    fputs(" * ", E->f);
    vexpr(E, e->b);
    fputs(" + ", E->f);
    vexpr(E, e->c);
    fputc(')', E->f);
    break;
  case EX_FCONST: case EX_ICONST: case EX_VAR: case EX_SYM: case EX_UNARY: case EX_CAST:
  case EX_RAND: case EX_REDUCE:
    IR_ASSERT(!"an expression with no vector form");
    break;
  }
}

static void expr(Emit *E, const Expr *e) {
  int lane = E->lane;
  if (E->vec && e->kind == EX_REDUCE) { /* the same pairwise sum, in a helper */
    fprintf(E->f, "dlc_sum_f32x%d((dlc_f32x%d[1]){", e->a->lanes, e->a->lanes);
    vexpr(E, e->a);
    fputs("})", E->f);
    return;
  }
  switch (e->kind) {
  case EX_FCONST: float_lit(E, e->f, e->type); break;
  case EX_ICONST: int_lit(E, e->i, e->type); break;
  case EX_VAR:
    if (E->ahead && e->id == E->ahead_var) fprintf(E->f, "(i%d + %lld)", e->id, (long long)E->ahead);
    else fprintf(E->f, "i%d", e->id);
    break;
  case EX_SYM: fputs(cg_c_prefix(E->a, E->p->g->syms[e->id].name), E->f); break;
  case EX_LOCAL:
    fprintf(E->f, "v%d", e->id);
    if (e->lanes > 1) fprintf(E->f, "_%d", lane);
    if (e->a) index_of(E, e->a);
    break;
  case EX_LOAD: load(E, e); break;
  case EX_BROADCAST: expr(E, e->a); break;
  case EX_REDUCE:
    pairwise(E, e->a, 0, 1);
    E->lane = lane;
    break;
  case EX_ZIP: { /* lane k of a zip is a lane of one operand (kernel.h) */
    int s = kir_zip_lane(e->op, e->lanes, lane);
    E->lane = s % e->lanes;
    fputc('(', E->f);
    expr(E, s < e->lanes ? e->a : e->b);
    fputc(')', E->f);
    E->lane = lane;
    break;
  }
  case EX_UNARY: unary(E, e); break;
  case EX_BINARY: binary(E, e); break;
  case EX_SELECT:
    sub(E, e->a, 2);
    fputs(" ? ", E->f);
    sub(E, e->b, 2);
    fputs(" : ", E->f);
    sub(E, e->c, 1);
    break;
  case EX_CAST:
    fprintf(E->f, "(%s)", ctype(e->type));
    sub(E, e->a, 10);
    break;
  case EX_RAND:
    fprintf(E->f, "dlc_uniform(%lluu, (uint64_t)(", (unsigned long long)e->i);
    expr(E, e->a);
    fputs("))", E->f);
    break;
  case EX_FMA:
    fputs(e->type == DT_F32 ? "DLC_FMAF(" : "DLC_FMA(", E->f);
    expr(E, e->a);
    fputs(", ", E->f);
    expr(E, e->b);
    fputs(", ", E->f);
    expr(E, e->c);
    fputc(')', E->f);
    break;
  }
}

/* --- statements ----------------------------------------------------------------- */

static void indent(Emit *E, int depth) {
  for (int i = 0; i < depth; i++) fputs("  ", E->f);
}

/* A register tile: float v3[16]; then every element set to the value,
 * in a loop the C compiler unrolls (the array stays in registers when
 * every index into it is a constant after unrolling). */
static void local_array(Emit *E, const Stmt *s, int depth) {
  fprintf(E->f, "%s v%d[%lld];\n", ctype(s->type), s->id, (long long)s->count);
  indent(E, depth);
  fprintf(E->f, "for (int v%d_i = 0; v%d_i < %lld; v%d_i++) v%d[v%d_i] = ", s->id, s->id, (long long)s->count, s->id,
          s->id, s->id);
  expr(E, s->value);
  fputs(";\n", E->f);
}

/* Whether writing lane k before computing lane k + 1 could change it: the
 * value reads the stored buffer, or mixes lanes (a reduction). */
static int lane_hazard(void *ctx, const Expr *e) {
  return e->kind == EX_REDUCE || e->kind == EX_ZIP || (e->kind == EX_LOAD && e->id == *(const int *)ctx);
}

/* Lane k of the target of store, local or assignment s. */
static void lane_target(Emit *E, const Stmt *s, int k) {
  E->lane = k;
  if (s->kind == ST_STORE) element(E, s->id, s->index, s->value->lanes);
  else if (s->kind == ST_LOCAL) fprintf(E->f, "%s v%d_%d", ctype(s->type), s->id, k);
  else fprintf(E->f, "v%d_%d", s->id, k);
}

/* An n-lane store, local or assignment as n scalar statements, one per
 * lane; lane values go through temporaries first when a lane could read
 * what an earlier lane wrote (kernel.h: every lane is computed, then
 * written).  The first line is already indented. */
static void lanes_stmt(Emit *E, const Stmt *s, int depth) {
  int n = s->value->lanes, buf = s->kind == ST_STORE ? s->id : -1;
  KirVisitor v = {&buf, NULL, lane_hazard};
  int temps = s->kind != ST_LOCAL && kir_walk_expr(&v, s->value);
  if (temps) {
    fputs("{\n", E->f);
    for (int k = 0; k < n; k++) {
      indent(E, depth + 1);
      fprintf(E->f, "%s lane%d = ", ctype(s->value->type), k);
      E->lane = k;
      expr(E, s->value);
      fputs(";\n", E->f);
    }
  }
  for (int k = 0; k < n; k++) {
    if (temps || k) indent(E, depth + temps);
    lane_target(E, s, k);
    fputs(" = ", E->f);
    E->lane = k;
    if (temps) fprintf(E->f, "lane%d", k);
    else expr(E, s->value);
    fputs(";\n", E->f);
  }
  if (temps) {
    indent(E, depth);
    fputs("}\n", E->f);
  }
  E->lane = 0;
}

/* An n-lane store, local or assignment in vector form: the value is
 * computed whole before it is written. */
static void vec_stmt(Emit *E, const Stmt *s) {
  int n = s->value->lanes;
  if (s->kind == ST_STORE) {
    fprintf(E->f, "dlc_store_f32x%d(&%s[", n, bufname(E, s->id));
    expr(E, s->index);
    fputs("], ", E->f);
  } else {
    fprintf(E->f, s->kind == ST_LOCAL ? "dlc_f32x%d v%d = " : "v%d = ", s->kind == ST_LOCAL ? n : s->id, s->id);
  }
  vexpr(E, s->value);
  fputs(s->kind == ST_STORE ? ");\n" : ";\n", E->f);
}

/* The prefetches of loop s (kernel.h, cg_prefetched): DLC_PREFETCH of the
 * element the load reads s->prefetch iterations on. */
static void prefetch_ahead(Emit *E, const Stmt *s, int depth) {
  for (const Stmt *b = s->body; b; b = b->next) {
    const Expr *ld = cg_prefetched(s, b);
    if (!ld) continue;
    indent(E, depth);
    fprintf(E->f, "DLC_PREFETCH(%s, ", bufname(E, ld->id));
    E->ahead_var = s->id, E->ahead = s->prefetch * s->step;
    expr(E, ld->a);
    E->ahead = 0;
    fputs(");\n", E->f);
  }
}

static void stmts(Emit *E, const Stmt *s, int depth) {
  for (; s; s = s->next) {
    indent(E, depth);
    if (E->vec && s->kind != ST_LOOP && s->kind != ST_IF && s->value->lanes > 1) {
      vec_stmt(E, s);
      continue;
    }
    switch (s->kind) {
    case ST_LOOP:
      if (s->loop == LOOP_SIMD) { /* gcc's -O3 vectorises it; clang needs the word (kernel.h) */
        fputs("\n#if defined(__clang__)\n#pragma clang loop vectorize(assume_safety)\n#endif\n", E->f);
        indent(E, depth);
      }
      fprintf(E->f, "for (int64_t i%d = 0; i%d < ", s->id, s->id);
      expr(E, s->extent);
      if (s->step == 1) fprintf(E->f, "; i%d++) {\n", s->id);
      else fprintf(E->f, "; i%d += %lld) {\n", s->id, (long long)s->step);
      prefetch_ahead(E, s, depth + 1);
      stmts(E, s->body, depth + 1);
      indent(E, depth);
      fputs("}\n", E->f);
      break;
    case ST_IF:
      fputs("if (", E->f);
      expr(E, s->value);
      fputs(") {\n", E->f);
      stmts(E, s->body, depth + 1);
      if (s->orelse) {
        indent(E, depth);
        fputs("} else {\n", E->f);
        stmts(E, s->orelse, depth + 1);
      }
      indent(E, depth);
      fputs("}\n", E->f);
      break;
    case ST_STORE:
      if (s->value->lanes > 1) {
        lanes_stmt(E, s, depth);
        break;
      }
      fprintf(E->f, "%s[", bufname(E, s->id));
      expr(E, s->index);
      fputs("] = ", E->f);
      expr(E, s->value);
      fputs(";\n", E->f);
      break;
    case ST_LOCAL:
      if (s->count > 0) {
        local_array(E, s, depth);
        break;
      }
      if (s->value->lanes > 1) {
        lanes_stmt(E, s, depth);
        break;
      }
      fprintf(E->f, "%s v%d = ", ctype(s->type), s->id);
      expr(E, s->value);
      /* a local nothing reads (an optimizer's step count, which plain SGD
       * does not use), which -Wall would point out */
      fprintf(E->f, E->read && s->id < E->nread && !E->read[s->id] ? "; (void)v%d;\n" : ";\n", s->id);
      break;
    case ST_ASSIGN:
      if (s->value->lanes > 1) {
        lanes_stmt(E, s, depth);
        break;
      }
      fprintf(E->f, "v%d", s->id);
      if (s->index) {
        fputc('[', E->f);
        expr(E, s->index);
        fputc(']', E->f);
      }
      fputs(" = ", E->f);
      expr(E, s->value);
      fputs(";\n", E->f);
      break;
    }
  }
}

/* The .dl source line of loc, trimmed, for the comment above a kernel. */
static void source_comment(Emit *E, const Kernel *k) {
  fprintf(E->f, "  /* %s", k->what);
  if (k->loc.src) {
    const char *t = k->loc.src->text;
    for (int l = 1; l < k->loc.line && t; l++) {
      t = strchr(t, '\n');
      if (t) t++;
    }
    if (t) {
      while (*t == ' ' || *t == '\t') t++;
      int n = (int)strcspn(t, "\n");
      while (n > 0 && (t[n - 1] == ' ' || t[n - 1] == '\r')) n--;
      char line[160];
      snprintf(line, sizeof line, "%.*s", n > 150 ? 150 : n, t);
      for (char *c = line; *c; c++)
        if (c[0] == '*' && c[1] == '/') c[1] = ' '; /* never close the comment early */
      fprintf(E->f, " — %s:%d: %s", k->loc.src->path, k->loc.line, line);
    }
  }
  fputs(" */\n", E->f);
}

/* --- declarations -------------------------------------------------------------- */

static void signature(Emit *E, const Func *fn, FILE *f) {
  const Graph *g = E->p->g;
  fprintf(f, "int %s_%s(", E->pre, fn->name);
  int first = 1;
  for (int s = 0; s < g->nsyms; s++, first = 0)
    fprintf(f, "%sint64_t %s", first ? "" : ", ", cg_symbol_name(E->a, E->p, s));
  for (int i = 0; i < fn->nargs; i++, first = 0) {
    const Buffer *b = &E->p->bufs[fn->args[i]];
    fprintf(f, "%s%s%s *%s", first ? "" : ", ", b->kind == BUF_INPUT ? "const " : "", ctype(b->dtype),
            bufname(E, fn->args[i]));
  }
  if (first) fputs("void", f);
  fputc(')', f);
}

static int vec_printable(const Expr *e);

/* A comparison of f32 lanes that have a vector form: GNU C gives a mask
 * of int lanes (all ones where it holds; false where either is NaN, but
 * for !=, as in the scalar form). */
static int vec_mask(const Expr *e) {
  return e->kind == EX_BINARY && kir_is_compare((BinOp)e->op) && e->a->type == DT_F32 && e->a->lanes > 1 &&
         vec_printable(e->a) && vec_printable(e->b);
}

/* Whether n-lane expression e has a vector form: f32 unguarded loads,
 * locals (not arrays), broadcasts, + - * / of those, and selects between
 * them on their comparisons. */
static int vec_printable(const Expr *e) {
  if (e->lanes == 1) return 1;
  if (e->type == DT_BOOL) return vec_mask(e);
  if (e->type != DT_F32) return 0;
  switch (e->kind) {
  case EX_LOAD: return !e->b;
  case EX_LOCAL: return !e->a;
  case EX_BROADCAST: return 1;
  case EX_BINARY:
    return e->op <= BIN_DIV && vec_printable(e->a) && vec_printable(e->b);
  case EX_FMA: return vec_printable(e->a) && vec_printable(e->b) && vec_printable(e->c);
  case EX_ZIP: return vec_printable(e->a) && vec_printable(e->b);
  case EX_SELECT: /* on a comparison of f32 lanes: a mask, then bits (vec_helpers) */
    return vec_mask(e->a) && vec_printable(e->b) && vec_printable(e->c);
  case EX_FCONST: case EX_ICONST: case EX_VAR: case EX_SYM: case EX_UNARY: case EX_CAST:
  case EX_RAND: case EX_REDUCE:
    return 0;
  }
  return 0;
}

typedef struct VecScan {
  int lanes, ok;
  unsigned used, sums;  /* bit b: vectors of 2^b lanes, sums of their lanes (and bit 16 + b: zips) */
} VecScan;

static unsigned lanes_bit(int n) {
  for (int b = 1; b < 32; b++)
    if (n == 1 << b) return 1u << b;
  return 0;
}

static int vec_scan_expr(void *ctx, const Expr *e) {
  VecScan *v = ctx;
  if (e->kind == EX_REDUCE) v->sums |= lanes_bit(e->a->lanes);
  if (e->kind == EX_ZIP) v->sums |= lanes_bit(e->lanes) << 16;
  if (e->lanes == 1) return 0;
  v->lanes = 1;
  v->used |= lanes_bit(e->lanes);
  if (!vec_printable(e)) v->ok = 0;
  return 0;
}

static int vec_scan_stmt(void *ctx, const Stmt *s) {
  VecScan *v = ctx;
  if (s->kind == ST_LOCAL && s->count > 0 && s->value->lanes > 1) v->ok = 0;
  if ((s->kind == ST_LOCAL || s->kind == ST_ASSIGN || s->kind == ST_STORE) && s->value->lanes > 1 &&
      s->value->type != DT_F32)
    v->ok = 0;   /* a mask is printed only as a select's condition */
  return 0;
}

/* Whether kernel k gets a vector form: it has lanes, and all of them have
 * one; *used and *sums gather the lane counts of its vectors and of the
 * vectors it sums (bit log2 n) or zips (bit 16 + log2 n). */
static int vec_kernel(const Kernel *k, unsigned *used, unsigned *sums) {
  VecScan v = {0, 1, 0, 0};
  KirVisitor w = {&v, vec_scan_stmt, vec_scan_expr};
  kir_walk_block(&w, k->body);
  if (!v.lanes || !v.ok) return 0;
  *used |= v.used;
  *sums |= v.sums;
  return 1;
}

/* Kernel k's statements; with par, each parallel loop (cg_parallel_loop)
 * under `#pragma omp parallel for` when DLC_THREADS is defined: OpenMP's
 * static schedule hands each thread one contiguous chunk of iterations,
 * and the locals the body declares are each thread's own.  A loop whose
 * iterations may be too few to pay for a team (cg_parallel_min_iters)
 * says so in the pragma's if clause. */
static int mark_read(void *ctx, const Expr *e) {
  Emit *E = ctx;
  if (e->kind == EX_LOCAL && e->id >= 0 && e->id < E->nread) ((char *)E->read)[e->id] = 1;
  return 0;
}

static void kernel_stmts(Emit *E, const Kernel *k, int par) {
  char *read = rt_xcalloc((size_t)k->nlocals + 1, 1);
  E->read = read, E->nread = k->nlocals;
  KirVisitor v = {E, NULL, mark_read};
  kir_walk_block(&v, k->body);
  for (const Stmt *s = k->body; s; s = s->next) {
    int64_t min;
    if (par && cg_parallel_loop(E->a, k, s) && (min = cg_parallel_min_iters(E->p, s)) > 0) {
      fputs("#ifdef DLC_THREADS\n#pragma omp parallel for schedule(static)", E->f);
      if (min > 1) {
        fputs(" if(", E->f);
        expr(E, s->extent);
        fprintf(E->f, " >= %lld)", (long long)((min - 1) * s->step + 1));
      }
      fputs("\n#endif\n", E->f);
    }
    Stmt one = *s;
    one.next = NULL;
    stmts(E, &one, 2);
  }
  E->read = NULL, E->nread = 0;
  rt_xfree(read);
}

static int is_simd(void *ctx, const Stmt *s) {
  (void)ctx;
  return s->kind == ST_LOOP && s->loop == LOOP_SIMD;
}

/* A simd loop's vectorize pragma (stmts) is a request clang cannot honour
 * where its vectoriser does not run (-O1) or gives up: that is no warning
 * to the user.  Clang reports it at the function, before the pragma, so
 * the note goes at the top of the file. */
static void simd_note(Emit *E) {
  KirVisitor v = {NULL, is_simd, NULL};
  const Program *p = E->p;
  int any = 0;
  for (int i = 0; i <= p->nfuncs && !any; i++) {
    const Func *fn = i < p->nfuncs ? &p->funcs[i] : p->prepare;
    for (int k = 0; fn && k < fn->nkernels && !any; k++) any = kir_walk_block(&v, fn->kernels[k].body);
  }
  if (any) fputs("#if defined(__clang__)\n#pragma clang diagnostic ignored \"-Wpass-failed\"\n#endif\n\n", E->f);
}

static void kernels(Emit *E, const Func *fn, int par) {
  for (int k = 0; k < fn->nkernels; k++) {
    unsigned used = 0, sums = 0;
    int vec = vec_kernel(&fn->kernels[k], &used, &sums);
    fputc('\n', E->f);
    source_comment(E, &fn->kernels[k]);
    fputs("  {\n", E->f);
    if (vec) { /* the vector form first, the scalar one for compilers without vectors */
      fputs("#if DLC_VECTORS\n", E->f);
      E->vec = 1;
      kernel_stmts(E, &fn->kernels[k], par);
      E->vec = 0;
      fputs("#else\n", E->f);
    }
    kernel_stmts(E, &fn->kernels[k], par);
    if (vec) fputs("#endif\n", E->f);
    CgCollective cc;
    if (cg_collective(E->p, fn, &fn->kernels[k], &cc))
      fprintf(E->f, "  if (collective) collective(collective_ctx, %d, %s, %lld);\n", cc.kind, bufname(E, cc.buf),
              (long long)cc.n);
    fputs("  }\n", E->f);
  }
}

/* The pairwise sum of the n lanes of v (kernel.h), as pairwise() prints it. */
static void vec_sum(Emit *E, int n, int u, int w) {
  if (w == n) {
    fprintf(E->f, "(*v)[%d]", u);
    return;
  }
  fputc('(', E->f);
  vec_sum(E, n, u, 2 * w);
  fputs(" + ", E->f);
  vec_sum(E, n, u + w, 2 * w);
  fputc(')', E->f);
}

/* zip_lo, zip_hi, unzip_even and unzip_odd of n lanes (kernel.h): Clang's
 * __builtin_shufflevector takes the lanes as constants, GCC's
 * __builtin_shuffle as a vector. */
static void zip_helpers(Emit *E, int n) {
  for (int op = 0; op < 4; op++) {
    const char *h = zip_name(op);
    fprintf(E->f, "#if defined(__clang__)\n#define dlc_zip%s_f32x%d(a, b) __builtin_shufflevector(a, b", h, n);
    for (int k = 0; k < n; k++) fprintf(E->f, ", %d", kir_zip_lane(op, n, k));
    fprintf(E->f, ")\n#else\n#define dlc_zip%s_f32x%d(a, b) __builtin_shuffle(a, b, (dlc_i32x%d){", h, n, n);
    for (int k = 0; k < n; k++) fprintf(E->f, "%s%d", k ? ", " : "", kir_zip_lane(op, n, k));
    fputs("})\n#endif\n", E->f);
  }
}

/* The vector types and their loads, stores and broadcasts, for the lane
 * counts the kernels use; DLC_VECTORS 0 keeps the scalar form.  Loads and
 * stores go through an unaligned type that may alias float; a broadcast
 * is s - 0 in every lane (exactly s, -0 included); no helper takes or
 * returns a vector by value, whose ABI depends on the target's flags. */
static void vec_helpers(Emit *E) {
  unsigned used = 0, sums = 0;
  const Program *p = E->p;
  for (int i = 0; i <= p->nfuncs; i++) {
    const Func *fn = i < p->nfuncs ? &p->funcs[i] : p->prepare;
    for (int k = 0; fn && k < fn->nkernels; k++) vec_kernel(&fn->kernels[k], &used, &sums);
  }
  if (!used) return;
  int widest = 0;
  for (int b = 1; b < 32; b++)
    if (used & 1u << b) widest = 1 << b;
  fputs("/* lanes as GNU C vectors unless DLC_VECTORS is 0 (then scalars) */\n"
        "#if !defined(DLC_VECTORS) && (defined(__GNUC__) || defined(__clang__))\n#define DLC_VECTORS 1\n#endif\n", E->f);
  /* Clang splits vectors wider than its preferred width (256 bits on
   * many AVX-512 targets), so a register tile of 16 lanes would take
   * twice the registers and spill, unless the function asks for them */
  fprintf(E->f, "#if DLC_VECTORS && defined(__clang__)\n#define DLC_VECTOR_FN __attribute__((min_vector_width(%d)))\n"
          "#else\n#define DLC_VECTOR_FN\n#endif\n#if DLC_VECTORS\n", 32 * widest);
  for (int b = 1; b < 32; b++) {
    if (!(used & 1u << b)) continue;
    int n = 1 << b;
    fprintf(E->f, "typedef float dlc_f32x%d __attribute__((vector_size(%d)));\n", n, 4 * n);
    fprintf(E->f, "typedef float dlc_f32x%d_u __attribute__((vector_size(%d), aligned(4), may_alias));\n", n, 4 * n);
    fprintf(E->f, "#define dlc_load_f32x%d(p) (*(const dlc_f32x%d_u *)(p))\n", n, n);
    fprintf(E->f, "#define dlc_store_f32x%d(p, v) (*(dlc_f32x%d_u *)(p) = (v))\n", n, n);
    fprintf(E->f, "#define dlc_bcast_f32x%d(s) ((s) - (dlc_f32x%d){0})\n", n, n);
    fprintf(E->f, "typedef int dlc_i32x%d __attribute__((vector_size(%d)));\n", n, 4 * n);
    fprintf(E->f,
            "#define dlc_select_f32x%d(m, a, b) ((dlc_f32x%d)(((dlc_i32x%d)(a) & (m)) | ((dlc_i32x%d)(b) & ~(m))))\n",
            n, n, n, n);
    if (b < 16 && sums & 1u << (16 + b)) zip_helpers(E, n);
    if (!(sums & 1u << b)) continue;
    fprintf(E->f, "static inline float dlc_sum_f32x%d(const dlc_f32x%d *v) { return ", n, n);
    vec_sum(E, n, 0, 1);
    fputs("; }\n", E->f);
  }
  fputs("#endif\n\n", E->f);
}

static void function(Emit *E, const Func *fn) {
  const Program *p = E->p;
  const Graph *g = p->g;
  char tb[128];
  unsigned lanes = 0, sums = 0;
  int vec = 0;
  for (int k = 0; k < fn->nkernels; k++) vec |= vec_kernel(&fn->kernels[k], &lanes, &sums);
  if (vec) fputs("DLC_VECTOR_FN ", E->f);
  signature(E, fn, E->f);
  fputs(" {\n", E->f);
  char *used = rt_xcalloc((size_t)p->nbufs + 1, 1);
  cg_buffer_use(p, fn, used, used);
  for (int b = 0; b < p->nbufs; b++) {
    const Buffer *buf = &p->bufs[b];
    if (buf->kind != BUF_TEMP || !used[b]) continue;
    fprintf(E->f, "  %s *const t%d = A_%s + %lld; /* %s %s */\n", ctype(buf->dtype), b, rt_dtype_name(buf->dtype),
            (long long)buf->offset, buf->name, ir_type_str(g, buf->dtype, &buf->shape, tb, sizeof tb));
  }
  rt_xfree(used);
  for (int s = 0; s < g->nsyms; s++) {
    const char *nm = cg_symbol_name(E->a, p, s);
    fprintf(E->f, "  if (%s < 0 || %s > %s_MAX_%s) return -1;\n", nm, nm, E->PRE, upper(E->a, nm));
  }
  if (cg_reads_derived(p, fn)) fprintf(E->f, "  if (derived_stale) %s_prepare();\n", E->pre);
  kernels(E, fn, 1);
  if (cg_dirties_derived(p, fn)) fputs("  derived_stale = 1; /* the parameters changed */\n", E->f);
  fputs("  return 0;\n}\n\n", E->f);
}

/* The kernels that fill the derived buffers, and the flag that says they
 * are stale: set at start, by _set_param and _load, and by every entry
 * point that updates a parameter they come from (kernel.h, kir_derived). */
static void stale_flag(Emit *E) {
  if (E->p->prepare)
    fputs("/* 1 when the parameters changed since the derived buffers were made */\n"
          "static int derived_stale = 1;\n\n", E->f);
}

static void prepare_function(Emit *E) {
  const Func *fn = E->p->prepare;
  if (!fn) return;
  fprintf(E->f, "static void %s_prepare(void) {\n", E->pre);
  kernels(E, fn, 1);
  fputs("  derived_stale = 0;\n}\n\n", E->f);
}

static int has_prefetch(void *ctx, const Stmt *s) {
  (void)ctx;
  return s->kind == ST_LOOP && s->prefetch;
}

/* DLC_PREFETCH for the loops that prefetch (kernel.h), float maximum and
 * minimum as kernel.h defines them (NaN propagates, as in torch.maximum;
 * C's fmaxf would drop it), and ir_random_uniform as ir/random.h defines
 * it: each printed when some kernel uses it. */
static void helpers(Emit *E) {
  CgHelpers h = cg_helpers(E->p);
  KirVisitor pv = {NULL, has_prefetch, NULL};
  if (kir_walk_program(&pv, E->p)) /* a hint: the address is integer arithmetic, never a pointer past a buffer */
    fputs("/* bring the line of b[i] into the caches (a hint: GNU C and clang only) */\n"
          "#if defined(__GNUC__) || defined(__clang__)\n"
          "#define DLC_PREFETCH(b, i) __builtin_prefetch((const void *)((uintptr_t)(b) + (uintptr_t)(i) * sizeof *(b)), 0, 3)\n"
          "#else\n#define DLC_PREFETCH(b, i) ((void)0)\n#endif\n\n", E->f);
  if (h.fmax)
    fputs("/* maximum that propagates NaN */\n"
          "static float dlc_maxf(float a, float b) { return a > b || isnan(a) ? a : b; }\n\n", E->f);
  if (h.fmin)
    fputs("/* minimum that propagates NaN */\n"
          "static float dlc_minf(float a, float b) { return a < b || isnan(a) ? a : b; }\n\n", E->f);
  if (h.fma) /* libm's fmaf is a slow call where the target has no FMA instruction */
    fputs("/* fma of the kernel IR: fused where the target has an FMA instruction */\n"
          "#ifdef FP_FAST_FMAF\n#define DLC_FMAF(a, b, c) fmaf(a, b, c)\n#else\n"
          "#define DLC_FMAF(a, b, c) ((a) * (b) + (c))\n#endif\n"
          "#ifdef FP_FAST_FMA\n#define DLC_FMA(a, b, c) fma(a, b, c)\n#else\n"
          "#define DLC_FMA(a, b, c) ((a) * (b) + (c))\n#endif\n\n", E->f);
  if (h.rand) {
    fputs("/* counter-based uniform random numbers in [0, 1): dlc's ir/random.h */\n", E->f);
    cg_print_source(E->f, cg_text_random_h);
    fputc('\n', E->f);
  }
}

/* Derived buffers and arenas start on a cache line (GNU C): the register
 * tiles read their panels in vectors of 64 bytes, each of which would
 * otherwise straddle two lines whenever the linker places the array at
 * an odd multiple of 32. */
static void align_macro(Emit *E) {
  fputs("#if defined(__GNUC__) || defined(__clang__)\n#define DLC_ALIGN __attribute__((aligned(64)))\n#else\n"
        "#define DLC_ALIGN\n#endif\n\n", E->f);
}

static void param_storage(Emit *E) {
  const Program *p = E->p;
  char tb[128];
  for (int b = 0; b < p->nbufs; b++) {
    const Buffer *buf = &p->bufs[b];
    if (buf->kind == BUF_DERIVED)
      fprintf(E->f, "/* %s %s, made from %s by %s_prepare */\nstatic DLC_ALIGN %s %s[%lld];\n", buf->name,
              ir_type_str(p->g, buf->dtype, &buf->shape, tb, sizeof tb), p->bufs[buf->src].name, E->pre,
              ctype(buf->dtype), bufname(E, b), (long long)buf->size);
    if (buf->kind != BUF_PARAM && buf->kind != BUF_STATE) continue;
    const RtTensor *t = cg_embedded(p, E->o->embed, b);
    fprintf(E->f, "/* %s %s */\n", buf->name, ir_type_str(p->g, buf->dtype, &buf->shape, tb, sizeof tb));
    if (!t) {
      fprintf(E->f, "static %s %s[%lld];\n", ctype(buf->dtype), bufname(E, b), (long long)buf->size);
      continue;
    }
    fprintf(E->f, "static const %s %s[%lld] = {", ctype(buf->dtype), bufname(E, b), (long long)buf->size);
    const float *v = t->data;
    for (int64_t i = 0; i < buf->size; i++) {
      fputs(i % 8 ? " " : "\n  ", E->f);
      char num[32];
      snprintf(num, sizeof num, "%.9g", (double)v[i]);
      if (!isfinite(v[i]))
        fputs(isnan(v[i]) ? "NAN" : v[i] < 0 ? "-INFINITY" : "INFINITY", E->f);
      else
        fprintf(E->f, "%s%sf", num, strpbrk(num, ".en") ? "" : ".0");
      if (i + 1 < buf->size) fputc(',', E->f);
    }
    fputs("\n};\n", E->f);
  }
}

/* One static arena per element type the temporaries use (emit_common.c
 * decides which and how large). */
static void arenas(Emit *E) {
  for (int t = 0; t < DT_COUNT; t++) {
    int64_t n = cg_arena_elems(E->p, (DType)t);
    if (!n) continue;
    fprintf(E->f, "/* arena for %s temporaries: %lld bytes */\nstatic DLC_ALIGN %s A_%s[%lld];\n", rt_dtype_name((DType)t),
            (long long)(E->p->arena_size[t] * (int64_t)rt_dtype_size((DType)t)), ctype((DType)t),
            rt_dtype_name((DType)t), (long long)n);
  }
}

/* The rows of the parameter table (emit_common.c: params, then state). */
static void param_table(Emit *E, const CgTable *t) {
  const Program *p = E->p;
  fprintf(E->f, "\nstatic const %s_param_info params[%d] = {\n", E->pre, t->n ? t->n : 1);
  for (int r = 0; r < t->n; r++) {
    const Buffer *buf = &p->bufs[t->buf[r]];
    fprintf(E->f, "  {\"%s\", %d, {", buf->name, buf->shape.rank);
    for (int i = 0; i < buf->shape.rank; i++) fprintf(E->f, "%s%lld", i ? ", " : "", (long long)buf->shape.d[i]);
    fprintf(E->f, "%s}, %lld, %s, %d},\n", buf->shape.rank ? "" : "0", (long long)buf->size, bufname(E, t->buf[r]),
            buf->kind == BUF_STATE);
  }
  if (!t->n) fputs("  {0, 0, {0}, 0, 0, 0},\n", E->f);
  fputs("};\n\n", E->f);
}

static void header(Emit *E, FILE *h, int nparams, int ntensors) {
  const Program *p = E->p;
  const Graph *g = p->g;
  fprintf(h, "/* %s.h — generated by dlc from model '%s'. */\n", E->pre, g->name);
  fprintf(h, "#ifndef %s_H\n#define %s_H\n\n#include <stdint.h>\n\n", E->PRE, E->PRE);
  for (int s = 0; s < g->nsyms; s++)
    fprintf(h, "/* largest %s the code accepts (fixed at compile time) */\n#define %s_MAX_%s %lld\n", g->syms[s].name,
            E->PRE, upper(E->a, cg_symbol_name(E->a, p, s)), (long long)g->syms[s].max);
  fprintf(h, "/* parameters, and parameters plus optimizer state (training code) */\n");
  fprintf(h, "#define %s_NUM_PARAMS %d\n#define %s_NUM_TENSORS %d\n\n", E->PRE, nparams, E->PRE, ntensors);
  fprintf(h, "typedef struct %s_param_info {\n  const char *name;    /* as in safetensors files */\n"
             "  int rank;\n  int64_t shape[%d];\n  int64_t numel;\n  const float *data;\n"
             "  int is_state;        /* optimizer state, after the parameters */\n} %s_param_info;\n\n",
          E->pre, IR_MAX_RANK, E->pre);
  fprintf(h, "/* Tensor i (0 <= i < %s_NUM_TENSORS), or NULL. */\nconst %s_param_info *%s_param(int i);\n", E->PRE,
          E->pre, E->pre);
  fprintf(h, "/* Copies numel floats into tensor i; -1 if i is out of range or the\n"
             "   parameters are embedded constants. */\nint %s_set_param(int i, const float *values);\n", E->pre);
  fprintf(h, "/* Loads every parameter from a safetensors file (F32, names and shapes\n"
             "   as above; other tensors in the file are ignored).  0 on success;\n"
             "   otherwise -1 and %s_error() says why.  No malloc. */\nint %s_load(const char *path);\n",
          E->pre, E->pre);
  fprintf(h, "const char *%s_error(void);\n", E->pre);
  fprintf(h, "#ifdef DLC_THREADS\n/* Threads for the parallel loops (n > 0; else OpenMP's default). */\n"
             "void %s_set_threads(int n);\n#endif\n\n", E->pre);
  if (cg_has_collectives(p))
    fprintf(h, "/* The collectives of --sync-bn: fn(ctx, kind, data, n) replaces the n floats\n"
               "   of data with their share-weighted mean (kind 0) or sum (kind 1) over\n"
               "   the processes; unset, each keeps its own (one process). */\n"
               "void %s_set_collective(void (*fn)(void *ctx, int kind, float *data, int64_t n), void *ctx);\n"
               "#ifdef DLC_MPI\n/* Built with -DDLC_MPI (mpicc), after MPI_Init: the collectives sum over\n"
               "   MPI_COMM_WORLD from now on, this process's gradients weighted by rows /\n"
               "   global_rows, its share of the global batch (call before each step whose\n"
               "   share changes).  -1 for a share outside [0, 1]. */\n"
               "int %s_mpi_share(int64_t rows, int64_t global_rows);\n"
               "/* MPI_SUCCESS, or the error code of the first collective that failed (the\n"
               "   steps after it are not summed: stop). */\nint %s_mpi_status(void);\n#endif\n\n",
            E->pre, E->pre, E->pre);
  for (int i = 0; i < p->nfuncs; i++) {
    fprintf(h, "/* Returns 0, or -1 if a size argument is out of range (below 0 or above\n   its _MAX); a size of 0 is an empty batch.\n   Symbols first, then inputs, then outputs. */\n");
    signature(E, &p->funcs[i], h);
    fputs(";\n", h);
  }
}

/* The hook of the collectives (emit_common.h): the caller's function,
 * set by P_set_collective; without one, they keep their copies. */
static void collective_hook(Emit *E) {
  if (!cg_has_collectives(E->p)) return;
  fprintf(E->f, "/* the collectives of data-parallel training (dist_mean, dist_sum): none in one process */\n"
                "static void (*collective)(void *ctx, int kind, float *data, int64_t n);\n"
                "static void *collective_ctx;\n"
                "void %s_set_collective(void (*fn)(void *ctx, int kind, float *data, int64_t n), void *ctx) {\n"
                "  collective = fn;\n  collective_ctx = ctx;\n}\n\n", E->pre);
  fprintf(E->f, "#ifdef DLC_MPI\n"
                "/* -DDLC_MPI: the collectives over MPI_COMM_WORLD, this process's value weighted by\n"
                "   its share of the global batch (dist_mean) and summed with MPI_Allreduce */\n"
                "static double mpi_share = 1;\nstatic int mpi_rc = MPI_SUCCESS;\n"
                "static void mpi_collective(void *ctx, int kind, float *data, int64_t n) {\n"
                "  (void)ctx;\n"
                "  if (kind == 0)\n    for (int64_t i = 0; i < n; i++) data[i] = mpi_share != 0 ? (float)(data[i] * mpi_share) : 0.0f;\n"
                "  int rc = mpi_rc == MPI_SUCCESS ? MPI_Allreduce(MPI_IN_PLACE, data, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD)\n"
                "                                 : mpi_rc;\n"
                "  if (rc != MPI_SUCCESS) mpi_rc = rc;\n"
                "}\n"
                "int %s_mpi_share(int64_t rows, int64_t global_rows) {\n"
                "  if (rows < 0 || global_rows < rows) return -1;\n"
                "  if (collective != mpi_collective) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);\n"
                "  mpi_share = global_rows ? (double)rows / (double)global_rows : 0;\n"
                "  collective = mpi_collective;\n  return 0;\n}\n"
                "int %s_mpi_status(void) { return mpi_rc; }\n"
                "#endif\n\n", E->pre, E->pre);
}

/* -DDLC_MPI needs <mpi.h> (mpicc); without it the emitted C says so. */
static void mpi_include(Emit *E) {
  if (!cg_has_collectives(E->p)) return;
  fputs("#ifdef DLC_MPI\n#if defined(__has_include)\n#if !__has_include(<mpi.h>)\n"
        "#error \"DLC_MPI sums the gradients over MPI, but there is no <mpi.h>: compile with mpicc (Open MPI: "
        "apt-get install libopenmpi-dev)\"\n#endif\n#endif\n#include <mpi.h>\n#endif\n\n", E->f);
}

/* -DDLC_THREADS runs the parallel loops on OpenMP threads (the compiler's
 * OpenMP flag is needed, and checked); P_set_threads picks how many, else
 * OpenMP's default (OMP_NUM_THREADS, or every core).  Its prototype is
 * written out, not taken from <omp.h>, which not every compiler ships. */
static void threads_support(Emit *E) {
  fprintf(E->f, "#ifdef DLC_THREADS\n#ifndef _OPENMP\n"
                "#error \"DLC_THREADS runs the parallel loops with OpenMP: compile with -fopenmp\"\n#endif\n"
                "extern void omp_set_num_threads(int);\n"
                "void %s_set_threads(int n) {\n  if (n > 0) omp_set_num_threads(n);\n}\n#endif\n\n", E->pre);
}

int cg_emit_c(const Program *p, FILE *c, FILE *h, const EmitOpts *o, Diags *d) {
  if (cg_check_embed(p, o->embed, d, NULL)) return -1;
  Arena a;
  arena_init(&a);
  Emit E = {p, c, NULL, NULL, o, &a};
  E.pre = cg_c_prefix(&a, p->name);
  E.PRE = upper(&a, E.pre);
  CgTable t;
  cg_param_table(p, &a, &t);
  fprintf(c, "/* %s.c — generated by dlc from model '%s'.  C99, libm only, no malloc. */\n", E.pre, p->g->name);
  fprintf(c, "#include \"%s\"\n\n#include <math.h>\n#include <stdio.h>\n#include <string.h>\n\n", o->header_name);
  simd_note(&E);
  mpi_include(&E);
  align_macro(&E);
  param_storage(&E);
  arenas(&E);
  param_table(&E, &t);
  stale_flag(&E);
  cg_c_support(c, p, E.pre, &t, o->embed != NULL);
  helpers(&E);
  vec_helpers(&E);
  threads_support(&E);
  collective_hook(&E);
  prepare_function(&E);
  for (int i = 0; i < p->nfuncs; i++) function(&E, &p->funcs[i]);
  if (h) header(&E, h, t.nparams, t.n);
  int rc = o->sections ? cg_emit_c_sections(p, E.pre, o->sections, c, h, d) : 0;
  if (h) fprintf(h, "\n#endif\n");
  arena_free(&a);
  return rc;
}
