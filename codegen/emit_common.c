/*
 * emit_common.c — program-level decisions shared by the C and the LLVM
 * emitter (see emit_common.h).
 *
 * Everything here reads the Program and answers with data: names as
 * strings, the arena sizes, the parameter table as a list of buffers, the
 * embed check as problems reported, and the kernels' needs from one walk
 * of every kernel (kir_walk_block, kir_walk_program).  Nothing here prints
 * C or builds LLVM values; that is the emitters' whole job.
 */
#include <ctype.h>
#include <string.h>

#include "codegen/emit_common.h"

/* --- names --------------------------------------------------------------------- */

const char *cg_c_prefix(Arena *a, const char *model_name) {
  size_t n = strlen(model_name);
  char *s = arena_alloc(a, n + 2);
  size_t j = 0;
  if (!isalpha((unsigned char)model_name[0]) && model_name[0] != '_') s[j++] = 'm';
  for (size_t i = 0; i < n; i++) s[j++] = isalnum((unsigned char)model_name[i]) ? model_name[i] : '_';
  s[j] = 0;
  return s;
}

const char *cg_buffer_name(Arena *a, const Program *p, int b) {
  const Buffer *buf = &p->bufs[b];
  const char *id = cg_c_prefix(a, buf->name);
  switch (buf->kind) {
  case BUF_INPUT: return arena_printf(a, "in_%s", id);
  case BUF_OUTPUT: return arena_printf(a, "out_%s", id);
  case BUF_PARAM: return arena_printf(a, "P_%s", id);
  case BUF_STATE: return arena_printf(a, "S_%s", id);
  case BUF_TEMP: return arena_printf(a, "t%d", b);
  case BUF_DERIVED: return arena_printf(a, "D_%s", id);
  }
  return "?";
}

const char *cg_symbol_name(Arena *a, const Program *p, int sym) { return cg_c_prefix(a, p->g->syms[sym].name); }

/* --- storage ------------------------------------------------------------------- */


void cg_param_table(const Program *p, Arena *a, CgTable *t) {
  memset(t, 0, sizeof *t);
  t->buf = arena_alloc(a, sizeof *t->buf * (size_t)(p->nbufs + 1));
  t->keylen = 8;
  for (int pass = 0; pass < 2; pass++)
    for (int b = 0; b < p->nbufs; b++) {
      if (p->bufs[b].kind != (pass ? BUF_STATE : BUF_PARAM)) continue;
      t->buf[t->n++] = b;
      if ((int)strlen(p->bufs[b].name) + 2 > t->keylen) t->keylen = (int)strlen(p->bufs[b].name) + 2;
    }
  for (int i = 0; i < t->n; i++) t->nparams += p->bufs[t->buf[i]].kind == BUF_PARAM;
}

const RtTensor *cg_embedded(const Program *p, const RtTensorSet *embed, int b) {
  BufKind k = p->bufs[b].kind;
  if (!embed || (k != BUF_PARAM && k != BUF_STATE)) return NULL;
  return rt_set_find((RtTensorSet *)embed, p->bufs[b].name);
}

static int fits(const Buffer *b, const RtTensor *t) {
  if (t->dtype != b->dtype || t->rank != b->shape.rank) return 0;
  for (int i = 0; i < t->rank; i++)
    if (t->shape[i] != b->shape.d[i]) return 0;
  return 1;
}

/* "f32[3, 4]" for tensor t. */
static const char *tensor_type(char *out, size_t n, const RtTensor *t) {
  int len = snprintf(out, n, "%s[", rt_dtype_name(t->dtype));
  for (int i = 0; i < t->rank && len > 0 && (size_t)len < n; i++)
    len += snprintf(out + len, n - (size_t)len, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (len > 0 && (size_t)len < n) snprintf(out + len, n - (size_t)len, "]");
  return out;
}

int cg_check_embed(const Program *p, const RtTensorSet *embed, Diags *d, RtError *err) {
  int bad = 0;
  for (int b = 0; b < p->nbufs && embed; b++) {
    const Buffer *buf = &p->bufs[b];
    const RtTensor *t = cg_embedded(p, embed, b);
    char want[128], got[128], msg[400];
    ir_type_str(p->g, buf->dtype, &buf->shape, want, sizeof want);
    if (!t && buf->kind == BUF_PARAM)
      snprintf(msg, sizeof msg, "the file has no tensor '%s' (%s)", buf->name, want);
    else if (t && !fits(buf, t))
      snprintf(msg, sizeof msg, "tensor '%s' is %s, not %s", buf->name, tensor_type(got, sizeof got, t), want);
    else
      continue;
    if (d) diag_plain(d, "--embed-params", "%s", msg);
    if (err && !bad) rt_fail(err, t ? RT_ERR_SHAPE : RT_ERR_MISSING, "--embed-params: %s", msg);
    bad++;
  }
  return bad;
}

/* --- what the kernels need ----------------------------------------------------- */

static int helpers_expr(void *ctx, const Expr *e) {
  CgHelpers *h = ctx;
  if (e->kind == EX_RAND) h->rand = 1;
  if (e->kind == EX_FMA) h->fma = 1;
  if (e->kind == EX_BINARY && e->type == DT_F32 && e->op == BIN_MAX) h->fmax = 1;
  if (e->kind == EX_BINARY && e->type == DT_F32 && e->op == BIN_MIN) h->fmin = 1;
  return 0;
}

CgHelpers cg_helpers(const Program *p) {
  CgHelpers h = {0, 0, 0, 0};
  KirVisitor v = {&h, NULL, helpers_expr};
  kir_walk_program(&v, p);
  return h;
}

void cg_buffer_use(const Program *p, const Func *fn, char *loaded, char *stored) {
  (void)p;
  for (int k = 0; k < fn->nkernels; k++) kir_block_buffers(fn->kernels[k].body, loaded, stored);
}

/* The arena of element type t: none when no kernel touches a temporary of
 * that type (one a rule or fusion left unused is not declared, so the
 * emitted C has no unused static), else the planned size (1 element when
 * every such temporary is empty). */
int64_t cg_arena_elems(const Program *p, DType t) {
  char *mark = rt_xcalloc((size_t)p->nbufs + 1, 1);
  for (int f = 0; f < p->nfuncs; f++) cg_buffer_use(p, &p->funcs[f], mark, mark);
  if (p->prepare) cg_buffer_use(p, p->prepare, mark, mark);
  int used = 0;
  for (int b = 0; b < p->nbufs && !used; b++) used = mark[b] && p->bufs[b].kind == BUF_TEMP && p->bufs[b].dtype == t;
  rt_xfree(mark);
  if (!used) return 0;
  return p->arena_size[t] > 0 ? p->arena_size[t] : 1;
}

/* Whether fn loads (or, with stores set, stores into) a buffer b for which
 * pick(p, b) holds. */
static int uses(const Program *p, const Func *fn, int stores, int (*pick)(const Program *, int)) {
  char *mark = rt_xcalloc((size_t)p->nbufs + 1, 1);
  cg_buffer_use(p, fn, stores ? NULL : mark, stores ? mark : NULL);
  int hit = 0;
  for (int b = 0; b < p->nbufs && !hit; b++) hit = mark[b] && pick(p, b);
  rt_xfree(mark);
  return hit;
}

static int is_derived(const Program *p, int b) { return p->bufs[b].kind == BUF_DERIVED; }

static int is_derived_source(const Program *p, int b) {
  for (int d = 0; d < p->nbufs; d++)
    if (p->bufs[d].kind == BUF_DERIVED && p->bufs[d].src == b) return 1;
  return 0;
}

int cg_reads_derived(const Program *p, const Func *fn) { return uses(p, fn, 0, is_derived); }

int cg_dirties_derived(const Program *p, const Func *fn) { return uses(p, fn, 1, is_derived_source); }

/* --- embedded texts -------------------------------------------------------------- */

void cg_print_source(FILE *f, const char *text) {
  const char *t = text;
  while (*t == '\n') t++;
  if (strncmp(t, "/*", 2) == 0 && strstr(t, "*/")) t = strstr(t, "*/") + 2;
  while (*t == '\n') t++;
  while (*t) {
    size_t n = strcspn(t, "\n");
    if (strncmp(t, "#include \"", 10) != 0) fwrite(t, 1, n, f), fputc('\n', f);
    t += n + (t[n] == '\n');
  }
}

/* --- parallel loops ---------------------------------------------------------------- */

typedef struct OwnLocals {
  char *declared;
  const char *outer;  /* scalars declared at the top of the kernel before the loop */
  char *read;         /* those the loop reads */
  int foreign;
} OwnLocals;

static int own_locals_stmt(void *ctx, const Stmt *s) {
  OwnLocals *o = ctx;
  if (s->kind == ST_LOCAL) o->declared[s->id] = 1;
  if (s->kind == ST_ASSIGN && !o->declared[s->id]) o->foreign = 1;
  return o->foreign;
}

static int own_locals_expr(void *ctx, const Expr *e) {
  OwnLocals *o = ctx;
  if (e->kind == EX_LOCAL && !o->declared[e->id]) {
    if (o->outer[e->id]) o->read[e->id] = 1;
    else o->foreign = 1;
  }
  return o->foreign;
}

/* A walk visits a statement before what is inside it and a block in
 * order, so a local is marked declared before any use of it in scope.
 * read[id] marks the outer scalars s reads (the captures). */
static int parallel_walk(Arena *a, const Kernel *k, const Stmt *s, char **read) {
  if (s->kind != ST_LOOP || s->loop != LOOP_PARALLEL || s->step < 1) return 0;
  size_t n = (size_t)k->nlocals + 1;
  char *outer = arena_alloc(a, n); /* zeroed */
  for (const Stmt *d = k->body; d && d != s; d = d->next)
    if (d->kind == ST_LOCAL && !d->count && d->value->lanes == 1) outer[d->id] = 1;
  OwnLocals o = {arena_alloc(a, n), outer, arena_alloc(a, n), 0};
  KirVisitor v = {&o, own_locals_stmt, own_locals_expr};
  kir_walk_block(&v, s->body);
  if (read) *read = o.read;
  return !o.foreign;
}

int cg_parallel_loop(Arena *a, const Kernel *k, const Stmt *s) { return parallel_walk(a, k, s, NULL); }

int cg_parallel_captures(Arena *a, const Kernel *k, const Stmt *s, int *ids) {
  char *read;
  if (!parallel_walk(a, k, s, &read)) return 0;
  int n = 0;
  for (int i = 0; i < k->nlocals; i++)
    if (read[i]) ids[n++] = i;
  return n;
}

double cg_parallel_min_work = CG_PARALLEL_MIN_WORK;

/* The largest value of integer expression e (the symbols at their max),
 * or -1 when it is not one of constants and symbols. */
static int64_t work_extent(const Program *p, const Expr *e) {
  if (e->kind == EX_ICONST) return e->i;
  if (e->kind == EX_SYM) return p->g->syms[e->id].max;
  if (e->kind != EX_BINARY) return -1;
  int64_t a = work_extent(p, e->a), b = work_extent(p, e->b);
  if (a < 0 || b < 0) return -1;
  if (e->op == BIN_ADD) return a + b;
  if (e->op == BIN_MUL) return a * b;
  if (e->op == BIN_DIV) return b > 0 ? (a + b - 1) / b : -1;
  if (e->op == BIN_MIN) return a < b ? a : b;
  if (e->op == BIN_MAX) return a > b ? a : b;
  if (e->op == BIN_SUB) return a; /* an upper bound */
  return -1;
}

/* A math function's call (exp, log, pow...) counts as this many
 * statements: a loss's loop over its rows, an exp and a log per class,
 * is worth a job well before its statements alone say so. */
#define CG_CALL_WORK 8

int cg_math_call(const Expr *e) {
  return (e->kind == EX_UNARY && e->op != UN_NEG && e->op != UN_ABS && e->op != UN_SQRT && e->op != UN_FLOOR &&
          e->op != UN_CEIL && e->op != UN_RINT) ||
         (e->kind == EX_BINARY && e->op == BIN_POW);
}

/* sqrt is an instruction, but counts as a call's work here */
static int count_call(void *ctx, const Expr *e) {
  if (cg_math_call(e) || (e->kind == EX_UNARY && e->op == UN_SQRT)) ++*(int *)ctx;
  return 0;
}

/* Statements a block runs (the symbols at their max), a call counting
 * CG_CALL_WORK; 1e300 when a loop's extent is not known. */
double cg_block_work(const Program *p, const Stmt *s) {
  double w = 0;
  for (; s; s = s->next) {
    if (s->kind == ST_LOOP) {
      int64_t n = work_extent(p, s->extent);
      if (n < 0) return 1e300;
      w += (double)((n + s->step - 1) / s->step) * cg_block_work(p, s->body);
    } else if (s->kind == ST_IF) {
      w += 1 + cg_block_work(p, s->body) + cg_block_work(p, s->orelse);
    } else {
      int calls = 0;
      Stmt one = *s;
      one.next = NULL;
      KirVisitor v = {&calls, NULL, count_call};
      kir_walk_block(&v, &one);
      w += 1 + CG_CALL_WORK * calls;
    }
  }
  return w;
}

int64_t cg_parallel_min_iters(const Program *p, const Stmt *s) {
  double w = cg_block_work(p, s->body), n = w > 0 ? cg_parallel_min_work / w : 1;
  int64_t min = n <= 1 ? 1 : n < 1e15 ? (int64_t)n + (n > (double)(int64_t)n) : (int64_t)1e15;
  int64_t most = work_extent(p, s->extent); /* -1: not known */
  if (most >= 0 && (most + s->step - 1) / s->step < min) return 0;
  return s->extent->kind == EX_ICONST ? 1 : min; /* a constant extent has them all the time */
}

const Expr *cg_prefetched(const Stmt *loop, const Stmt *s) {
  if (!loop->prefetch || (s->kind != ST_LOCAL && s->kind != ST_ASSIGN) || s->count || s->index) return NULL;
  const Expr *v = s->value;
  return v->kind == EX_LOAD && v->lanes == 16 && v->type == DT_F32 && !v->b && kir_uses_var(v->a, loop->id) ? v : NULL;
}

/* --- collectives --------------------------------------------------------------- */

static int first_store(void *ctx, const Stmt *s) {
  if (s->kind != ST_STORE) return 0;
  *(int *)ctx = s->id;
  return 1;
}

int cg_collective(const Program *p, const Func *fn, const Kernel *k, CgCollective *c) {
  if (k->node < 0 || (k->op != OP_DIST_MEAN && k->op != OP_DIST_SUM)) return 0;
  int buf = -1;
  KirVisitor v = {&buf, first_store, NULL};
  kir_walk_block(&v, k->body);
  IR_ASSERT(buf >= 0); /* the copy (lower.c); infer.c keeps its shape free of symbols */
  *c = (CgCollective){buf, k->op == OP_DIST_MEAN ? IR_COLLECTIVE_MEAN : IR_COLLECTIVE_SUM, p->bufs[buf].size};
  (void)fn;
  return 1;
}

int cg_has_collectives(const Program *p) {
  CgCollective c;
  for (int i = 0; i < p->nfuncs; i++)
    for (int k = 0; k < p->funcs[i].nkernels; k++)
      if (cg_collective(p, &p->funcs[i], &p->funcs[i].kernels[k], &c)) return 1;
  return 0;
}
