/*
 * kdump.c — the kernel IR as text (--dump-after of a kernel step).
 *
 * The dump is a stable, line-oriented listing meant to be read and diffed:
 * first the buffer table (id, kind, name, type, elements, and the arena
 * offset once memory planning has sized that dtype's arena), then each
 * function with its argument buffers and kernels in order.  A kernel is
 * its statements, one a line, indented by loop depth:
 *
 *   kernel 2: linear fc1  # mlp.dl:7
 *     for i0 < N {
 *       local v0: f32 = 0.0
 *       v0 = v0 + b0[i0 * 784 + i1] * b1[i1]
 *       b5[i0] = v0
 *     }
 *
 * Loop variables are i<id>, locals v<id>, buffers b<id>, symbols by name;
 * float constants always carry a '.' or an exponent, integers never do; a
 * constant of another type than f32 (floats) or i64 (integers) carries its
 * type as a suffix (0.5f64, 3i32, 7u8), and bool constants are true and
 * false.  A guarded load is b<id>[INDEX if GUARD else OTHER].  Lanes: a
 * load or store of n lanes is b<id><n>[INDEX], an n-lane local is declared
 * with type f32x<n>, bcast(X, n) broadcasts and reduce_add(X) sums lanes.
 * Expressions are infix with the fewest parentheses their precedence
 * needs; min, max, pow, select, casts (f32(x)) and rand(key, counter) are
 * written as calls.  Nothing depends on addresses or absolute paths, so a
 * dump can be compared with a golden file.
 */
#include <math.h>
#include <string.h>

#include "ir/kernel.h"

static const char *buf_kind_name(BufKind k) {
  switch (k) {
  case BUF_INPUT: return "input";
  case BUF_OUTPUT: return "output";
  case BUF_PARAM: return "param";
  case BUF_STATE: return "state";
  case BUF_TEMP: return "temp";
  case BUF_DERIVED: return "derived";
  }
  return "?";
}

const char *kir_binop_name(BinOp op) {
  switch (op) {
  case BIN_ADD: return "+";
  case BIN_SUB: return "-";
  case BIN_MUL: return "*";
  case BIN_DIV: return "/";
  case BIN_MOD: return "%";
  case BIN_LT: return "<";
  case BIN_LE: return "<=";
  case BIN_GT: return ">";
  case BIN_GE: return ">=";
  case BIN_EQ: return "==";
  case BIN_NE: return "!=";
  case BIN_AND: return "&&";
  case BIN_OR: return "||";
  case BIN_MAX: return "max";
  case BIN_MIN: return "min";
  case BIN_POW: return "pow";
  }
  return "?";
}

/* Binding strength of a binary operator written infix (higher binds
 * tighter; 10: written as a call), as C reads it: both printers use it. */
int kir_binop_prec(BinOp op) {
  switch (op) {
  case BIN_OR: return 2;
  case BIN_AND: return 3;
  case BIN_EQ: case BIN_NE: return 4;
  case BIN_LT: case BIN_LE: case BIN_GT: case BIN_GE: return 5;
  case BIN_ADD: case BIN_SUB: return 6;
  case BIN_MUL: case BIN_DIV: case BIN_MOD: return 7;
  case BIN_MAX: case BIN_MIN: case BIN_POW: return 10;
  }
  return 10;
}

/* Binding strength of e's outermost operator (select is written as a call). */
static int prec(const Expr *e) {
  return e->kind == EX_BINARY ? kir_binop_prec((BinOp)e->op) : 10;
}

typedef struct KDump {
  const Program *p;
  FILE *f;
} KDump;

static void expr(KDump *D, const Expr *e);

static void sub(KDump *D, const Expr *e, int min_prec) {
  int paren = prec(e) < min_prec;
  if (paren) fputc('(', D->f);
  expr(D, e);
  if (paren) fputc(')', D->f);
}

static void float_const(FILE *f, double v, DType t) {
  if (isnan(v)) fputs("nan", f);
  else if (isinf(v)) fputs(v < 0 ? "-inf" : "inf", f);
  else {
    char buf[64];
    snprintf(buf, sizeof buf, t == DT_F32 ? "%.9g" : "%.17g", v);
    fprintf(f, "%s%s", buf, strpbrk(buf, ".en") ? "" : ".0");
  }
  if (t != DT_F32) fputs(rt_dtype_name(t), f);
}

static void int_const(FILE *f, int64_t v, DType t) {
  if (t == DT_BOOL) fputs(v ? "true" : "false", f);
  else fprintf(f, "%lld%s", (long long)v, t == DT_I64 ? "" : rt_dtype_name(t));
}

static void call2(KDump *D, const char *name, const Expr *a, const Expr *b) {
  fprintf(D->f, "%s(", name);
  expr(D, a);
  fputs(", ", D->f);
  expr(D, b);
  fputc(')', D->f);
}

/* name(a, b, c): an expression of three operands */
static void call3(KDump *D, const char *name, const Expr *e) {
  fprintf(D->f, "%s(", name);
  expr(D, e->a);
  fputs(", ", D->f);
  expr(D, e->b);
  fputs(", ", D->f);
  expr(D, e->c);
  fputc(')', D->f);
}

static void binary(KDump *D, const Expr *e) {
  int pr = prec(e);
  if (pr == 10) {
    call2(D, kir_binop_name((BinOp)e->op), e->a, e->b);
    return;
  }
  sub(D, e->a, pr);
  fprintf(D->f, " %s ", kir_binop_name((BinOp)e->op));
  sub(D, e->b, pr + 1);
}

static void unary(KDump *D, const Expr *e) {
  if (e->op == UN_NEG) {
    fputc('-', D->f);
    sub(D, e->a, 10);
    return;
  }
  fprintf(D->f, "%s(", kir_unop_name((UnOp)e->op));
  expr(D, e->a);
  fputc(')', D->f);
}

static const char *sym_name(const Program *p, int id) {
  return p->g && id >= 0 && id < p->g->nsyms ? p->g->syms[id].name : "?sym";
}

static void expr(KDump *D, const Expr *e) {
  switch (e->kind) {
  case EX_FCONST: float_const(D->f, e->f, e->type); break;
  case EX_ICONST: int_const(D->f, e->i, e->type); break;
  case EX_VAR: fprintf(D->f, "i%d", e->id); break;
  case EX_SYM: fputs(sym_name(D->p, e->id), D->f); break;
  case EX_LOCAL:
    fprintf(D->f, "v%d", e->id);
    if (e->a) {
      fputc('[', D->f);
      expr(D, e->a);
      fputc(']', D->f);
    }
    break;
  case EX_LOAD:
    fprintf(D->f, "b%d", e->id);
    if (e->lanes > 1) fprintf(D->f, "<%d>", e->lanes);
    fputc('[', D->f);
    expr(D, e->a);
    if (e->b) {
      fputs(" if ", D->f);
      expr(D, e->b);
      fputs(" else ", D->f);
      expr(D, e->c);
    }
    fputc(']', D->f);
    break;
  case EX_UNARY: unary(D, e); break;
  case EX_BINARY: binary(D, e); break;
  case EX_SELECT: call3(D, "select", e); break;
  case EX_CAST:
    fprintf(D->f, "%s(", rt_dtype_name(e->type));
    expr(D, e->a);
    fputc(')', D->f);
    break;
  case EX_RAND:
    fprintf(D->f, "rand(%llu, ", (unsigned long long)e->i);
    expr(D, e->a);
    fputc(')', D->f);
    break;
  case EX_BROADCAST:
    fputs("bcast(", D->f);
    expr(D, e->a);
    fprintf(D->f, ", %d)", e->lanes);
    break;
  case EX_REDUCE:
    fputs("reduce_add(", D->f);
    expr(D, e->a);
    fputc(')', D->f);
    break;
  case EX_FMA: call3(D, "fma", e); break;
  case EX_ZIP:
    fputs(e->op == 3 ? "unzip_odd(" : e->op == 2 ? "unzip_even(" : e->op ? "zip_hi(" : "zip_lo(", D->f);
    expr(D, e->a);
    fputs(", ", D->f);
    expr(D, e->b);
    fputc(')', D->f);
    break;
  }
}

static void indent(FILE *f, int depth) {
  for (int i = 0; i < depth; i++) fputs("  ", f);
}

/* What a loop carries beyond "for i < n": nothing for a plain serial
 * loop, so dumps of unscheduled kernels read as before. */
static void loop_tags(FILE *f, const Stmt *s) {
  static const char *const kinds[] = {"serial", "parallel", "vector", "unroll", "reduce", "simd"};
  if (s->step != 1) fprintf(f, " step %lld", (long long)s->step);
  if (s->loop != LOOP_SERIAL) fprintf(f, " %s", kinds[s->loop]);
  if (s->width != 1) fprintf(f, " width %d", s->width);
  if (s->prefetch) fprintf(f, " prefetch %d", s->prefetch);
  if (s->axis != s->id) fprintf(f, " axis %d", s->axis);
}

static void stmts(KDump *D, const Stmt *s, int depth) {
  for (; s; s = s->next) {
    indent(D->f, depth);
    switch (s->kind) {
    case ST_LOOP:
      fprintf(D->f, "for i%d < ", s->id);
      expr(D, s->extent);
      loop_tags(D->f, s);
      fputs(" {\n", D->f);
      stmts(D, s->body, depth + 1);
      indent(D->f, depth);
      fputs("}", D->f);
      break;
    case ST_IF:
      fputs("if ", D->f);
      expr(D, s->value);
      fputs(" {\n", D->f);
      stmts(D, s->body, depth + 1);
      if (s->orelse) {
        indent(D->f, depth);
        fputs("} else {\n", D->f);
        stmts(D, s->orelse, depth + 1);
      }
      indent(D->f, depth);
      fputs("}", D->f);
      break;
    case ST_STORE:
      fprintf(D->f, "b%d", s->id);
      if (s->value && s->value->lanes > 1) fprintf(D->f, "<%d>", s->value->lanes);
      fputc('[', D->f);
      expr(D, s->index);
      fputs("] = ", D->f);
      expr(D, s->value);
      break;
    case ST_LOCAL:
      fprintf(D->f, "local v%d: %s", s->id, rt_dtype_name(s->type));
      if (s->value && s->value->lanes > 1) fprintf(D->f, "x%d", s->value->lanes);
      if (s->count > 0) fprintf(D->f, "[%lld]", (long long)s->count);
      fputs(" = ", D->f);
      expr(D, s->value);
      break;
    case ST_ASSIGN:
      fprintf(D->f, "v%d", s->id);
      if (s->index) {
        fputc('[', D->f);
        expr(D, s->index);
        fputc(']', D->f);
      }
      fputs(" = ", D->f);
      expr(D, s->value);
      break;
    }
    fputc('\n', D->f);
  }
}

static void buffers(const Program *p, FILE *f) {
  char tb[160];
  fputs("buffers {\n", f);
  for (int b = 0; b < p->nbufs; b++) {
    const Buffer *buf = &p->bufs[b];
    fprintf(f, "  b%d %s %s : %s, %lld elements", b, buf_kind_name(buf->kind), buf->name,
            ir_type_str(p->g, buf->dtype, &buf->shape, tb, sizeof tb), (long long)buf->size);
    if (buf->kind == BUF_TEMP && p->arena_size[buf->dtype] > 0) fprintf(f, " @ %lld", (long long)buf->offset);
    fputc('\n', f);
  }
  fputs("}\n", f);
  for (int t = 0; t < DT_COUNT; t++)
    if (p->arena_size[t] > 0) fprintf(f, "arena %s: %lld elements\n", rt_dtype_name((DType)t), (long long)p->arena_size[t]);
}

static void kernel_header(FILE *f, int i, const Kernel *k) {
  fprintf(f, "  kernel %d: %s", i, k->what ? k->what : "");
  if (k->loc.src && k->loc.src->path) {
    const char *base = strrchr(k->loc.src->path, '/');
    fprintf(f, "  # %s:%d", base ? base + 1 : k->loc.src->path, k->loc.line);
  }
  fputc('\n', f);
}

static void function(KDump *D, const Func *fn) {
  fprintf(D->f, "func %s(", fn->name);
  for (int a = 0; a < fn->nargs; a++) fprintf(D->f, "%sb%d", a ? ", " : "", fn->args[a]);
  fputs(") {\n", D->f);
  for (int k = 0; k < fn->nkernels; k++) {
    kernel_header(D->f, k, &fn->kernels[k]);
    stmts(D, fn->kernels[k].body, 2);
  }
  fputs("}\n", D->f);
}

void kir_dump(const Program *p, FILE *f) {
  KDump D = {p, f};
  fprintf(f, "program %s", p->name ? p->name : "?");
  for (int s = 0; p->g && s < p->g->nsyms; s++)
    fprintf(f, "%s%s<=%lld", s ? ", " : " (", p->g->syms[s].name, (long long)p->g->syms[s].max);
  fputs(p->g && p->g->nsyms ? ")\n" : "\n", f);
  buffers(p, f);
  for (int i = 0; i < p->nfuncs; i++) function(&D, &p->funcs[i]);
  if (p->prepare) function(&D, p->prepare);
}
