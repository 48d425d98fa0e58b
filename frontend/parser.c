/*
 * parser.c — recursive descent over the token array, one statement at a
 * time.
 *
 * Each statement is parsed into a small AST (Stmt, Expr) and handed to the
 * builder at once (fe_exec_stmt); block bodies are kept for expansion at
 * their calls.  A syntax error is reported and unwinds with longjmp (as in
 * Lua) to the statement loop, which resynchronises: it skips tokens up to
 * the next statement start — a statement keyword or `NAME =` at the start
 * of a line, or the '}' that closes the body being parsed — so the errors
 * of later statements are still found.  A statement that failed after
 * naming what it defines poisons that name, so later uses stay quiet
 * instead of cascading into "unknown name" errors.
 *
 * Expressions nest at most FE_MAX_DEPTH levels: deeper input is an error,
 * never a stack overflow.
 */
#include <string.h>

#include "frontend/fe.h"

static Stmt *parse_stmt(Parser *P, StmtCtx ctx);
static Expr *parse_expr(Parser *P);

/* --- tokens ------------------------------------------------------------------- */

static void flush_lex_errors(Parser *P, Token *t) {
  for (LexErr *e = t->errs; e; e = e->next) {
    diag_error(P->d, e->loc, "%s", e->msg);
    P->lex_errors++;
    P->lex_error_tok = t;
  }
  t->errs = NULL;
}

static void next(Parser *P) {
  if (P->tok->kind != TK_EOF) P->pos++;
  P->tok = &P->toks.v[P->pos];
  flush_lex_errors(P, P->tok);
}

static Token *peek(Parser *P, int k) {
  int i = P->pos + k;
  return &P->toks.v[i < P->toks.n ? i : P->toks.n - 1];
}

static int accept(Parser *P, const char *s) {
  if (!lex_is(P->tok, s)) return 0;
  next(P);
  return 1;
}

/* Where a missing token is reported: just after the previous token when
 * the current one is on a later line (the usual missing ')' at the end of
 * a line), else at the current token. */
static SrcLoc missing_loc(Parser *P) {
  Token *t = P->tok;
  if (P->pos > 0) {
    Token *prev = &P->toks.v[P->pos - 1];
    if (prev->line != t->line) return (SrcLoc){&P->m->src, prev->line, prev->col + prev->len};
  }
  return fe_loc(P, t);
}

static _Noreturn void parse_fail_at(Parser *P, SrcLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Reports a syntax error and unwinds to the statement loop.  After a
 * lexical error in the same statement, or at the token in hand, the syntax
 * error is most likely its consequence ("x $ 2" reads as "x 2"), so it is
 * not reported. */
static _Noreturn void parse_fail_at(Parser *P, SrcLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (P->lex_errors == P->stmt_lex_errors && P->tok != P->lex_error_tok)
    diag_verror(P->d, loc, "error", fmt, ap);
  va_end(ap);
  longjmp(*P->on_error, 1);
}

static _Noreturn void parse_expected(Parser *P, const char *what) {
  parse_fail_at(P, missing_loc(P), "expected %s, found %s", what, lex_describe(P->tok));
}

static void expect(Parser *P, const char *s) {
  if (accept(P, s)) return;
  char what[16];
  snprintf(what, sizeof what, "'%s'", s);
  parse_expected(P, what);
}

/* Lua style: "expected ')' to close '(' at line 3". */
static void expect_close(Parser *P, const char *close, const Token *open) {
  if (accept(P, close)) return;
  SrcLoc loc = missing_loc(P);
  char found[128], opened[32] = "";
  snprintf(found, sizeof found, "%s", lex_describe(P->tok));
  if (P->tok->line != loc.line && P->tok->kind != TK_EOF)
    snprintf(found + strlen(found), sizeof found - strlen(found), " on line %d", P->tok->line);
  if (open->line != loc.line) snprintf(opened, sizeof opened, " at line %d", open->line);
  parse_fail_at(P, loc, "expected '%s' to close '%.*s'%s, found %s", close, open->len, open->p,
                opened, found);
}

static Token *expect_ident(Parser *P, const char *what) {
  Token *t = P->tok;
  if (t->kind != TK_IDENT) {
    if (t->kind == TK_KEYWORD)
      parse_fail_at(P, fe_loc(P, t), "expected %s, found the keyword %s", what, lex_describe(t));
    parse_expected(P, what);
  }
  next(P);
  return t;
}

/* --- expressions -------------------------------------------------------------- */

static Expr *new_expr(Parser *P, ExprKind k, Token *tok) {
  Expr *e = arena_alloc(P->tmp, sizeof *e);
  e->kind = k;
  e->tok = tok;
  return e;
}

static void enter(Parser *P) {
  if (++P->depth > FE_MAX_DEPTH)
    parse_fail_at(P, fe_loc(P, P->tok), "expression nested too deeply (more than %d levels)",
                  FE_MAX_DEPTH);
}

/* args = arg ("," arg)* ","?   arg = (IDENT "=")? expr
 * Returns the argument count; *out is arena-allocated. */
static int parse_args(Parser *P, const char *close, const Token *open, Arg **out, int keywords) {
  int n = 0, cap = 4;
  Arg *v = arena_alloc(P->tmp, (size_t)cap * sizeof *v);
  Token *first_kw = NULL;
  while (!lex_is(P->tok, close)) {
    if (n == cap) {
      Arg *w = arena_alloc(P->tmp, (size_t)cap * 2 * sizeof *w);
      memcpy(w, v, (size_t)n * sizeof *v);
      v = w, cap *= 2;
    }
    Token *key = NULL;
    if (keywords && P->tok->kind == TK_IDENT && lex_is(peek(P, 1), "=")) {
      key = first_kw = P->tok;
      next(P), next(P);
    } else if (first_kw) {
      parse_fail_at(P, fe_loc(P, P->tok), "positional argument follows keyword argument '%.*s'",
                    first_kw->len, first_kw->p);
    }
    v[n].key = key;
    v[n++].val = parse_expr(P);
    if (!accept(P, ",")) break;
  }
  expect_close(P, close, open);
  *out = v;
  return n;
}

/* call = IDENT "(" args? ")" */
static Expr *parse_call(Parser *P, Token *name) {
  Expr *e = new_expr(P, EX_CALL, name);
  e->name = fe_tokstr(P, name);
  Token *open = P->tok;
  next(P);
  e->nargs = parse_args(P, ")", open, &e->args, 1);
  return e;
}

static Expr *parse_number(Parser *P) {
  Expr *e = new_expr(P, EX_NUM, P->tok);
  next(P);
  return e;
}

/* name = IDENT ("." IDENT)*: a variable, or a parameter of a layer or
 * block call (fc1.weight, block1.fc.bias); the pieces joined with '.'. */
static Expr *parse_name(Parser *P, Token *t) {
  Expr *e = new_expr(P, EX_NAME, t);
  e->name = fe_tokstr(P, t);
  while (lex_is(P->tok, ".")) {
    next(P);
    Token *m = expect_ident(P, "a parameter name after '.'");
    e->name = arena_printf(&P->g->arena, "%s.%.*s", e->name, m->len, m->p);
  }
  return e;
}

/* primary = NUMBER | STRING | "true" | "false" | name | call
 *         | "(" expr ")" | "[" (expr ("," expr)* ","?)? "]" */
static Expr *parse_primary(Parser *P) {
  Token *t = P->tok;
  if (t->kind == TK_INT || t->kind == TK_FLOAT || lex_is(t, "true") || lex_is(t, "false"))
    return parse_number(P);
  if (t->kind == TK_STR) {
    Expr *e = new_expr(P, EX_STR, t);
    e->name = t->str;
    next(P);
    return e;
  }
  if (t->kind == TK_IDENT) {
    next(P);
    if (lex_is(P->tok, "(")) return parse_call(P, t);
    return parse_name(P, t);
  }
  if (lex_is(t, "(")) {
    next(P);
    Expr *e = parse_expr(P);
    expect_close(P, ")", t);
    return e;
  }
  if (lex_is(t, "[")) {
    next(P);
    Expr *e = new_expr(P, EX_LIST, t);
    e->nargs = parse_args(P, "]", t, &e->args, 0);
    return e;
  }
  parse_expected(P, "an expression");
}

/* unary = "-" unary | primary
 * Every nesting (parentheses, brackets, calls, minus signs) passes here, so
 * this is where the depth is counted. */
static Expr *parse_unary(Parser *P) {
  enter(P);
  Expr *e;
  if (lex_is(P->tok, "-")) {
    e = new_expr(P, EX_NEG, P->tok);
    next(P);
    e->lhs = parse_unary(P);
  } else {
    e = parse_primary(P);
  }
  P->depth--;
  return e;
}

static Expr *binary(Parser *P, OpKind op, Token *t, Expr *lhs, Expr *rhs) {
  Expr *e = new_expr(P, EX_BINARY, t);
  e->op = op;
  e->lhs = lhs;
  e->rhs = rhs;
  return e;
}

/* term = unary (("*" | "/" | "@") unary)* */
static Expr *parse_term(Parser *P) {
  Expr *e = parse_unary(P);
  for (;;) {
    Token *t = P->tok;
    OpKind op = lex_is(t, "*") ? OP_MUL : lex_is(t, "/") ? OP_DIV : lex_is(t, "@") ? OP_MATMUL : OP_COUNT;
    if (op == OP_COUNT) return e;
    next(P);
    e = binary(P, op, t, e, parse_unary(P));
  }
}

/* expr = term (("+" | "-") term)* */
static Expr *parse_expr(Parser *P) {
  Expr *e = parse_term(P);
  for (;;) {
    Token *t = P->tok;
    OpKind op = lex_is(t, "+") ? OP_ADD : lex_is(t, "-") ? OP_SUB : OP_COUNT;
    if (op == OP_COUNT) break;
    next(P);
    e = binary(P, op, t, e, parse_term(P));
  }
  return e;
}

/* --- statements ------------------------------------------------------------------ */

static Stmt *new_stmt(Parser *P, StmtKind k, Token *tok) {
  Stmt *s = arena_alloc(P->tmp, sizeof *s);
  s->kind = k;
  s->tok = tok;
  return s;
}

static int is_stmt_keyword(const Token *t) {
  static const char *kw[] = {"model", "input", "param", "output", "block",
                             "return", "train", "label", "freeze", "lr_group"};
  for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
    if (lex_is(t, kw[i])) return 1;
  return 0;
}

/* type = IDENT "[" (dim ("," dim)*)? "]"   dim = INT | IDENT */
static void parse_type(Parser *P, Stmt *s) {
  s->dtype = expect_ident(P, "a type such as f32");
  Token *open = P->tok;
  expect(P, "[");
  s->dims = arena_alloc(P->tmp, sizeof(Token *) * (IR_MAX_RANK + 1));
  while (!lex_is(P->tok, "]")) {
    Token *t = P->tok;
    if (t->kind != TK_INT && t->kind != TK_IDENT) parse_expected(P, "a dimension (a number or a name)");
    if (s->ndims == IR_MAX_RANK)
      parse_fail_at(P, fe_loc(P, t), "too many dimensions (at most %d)", IR_MAX_RANK);
    s->dims[s->ndims++] = t;
    next(P);
    if (!accept(P, ",")) break;
  }
  expect_close(P, "]", open);
}

/* decl = IDENT ":" type */
static Stmt *parse_decl(Parser *P, StmtKind k) {
  Stmt *s = new_stmt(P, k, P->tok);
  next(P);
  s->name = P->assigning = expect_ident(P, "a name");
  expect(P, ":");
  parse_type(P, s);
  return s;
}

/* qualname = IDENT ("." IDENT)*; sets s->name to its first token. */
static const char *parse_qualname(Parser *P, Stmt *s) {
  Token *first = s->name = expect_ident(P, "a name");
  Token *last = first;
  while (lex_is(P->tok, ".")) {
    next(P);
    last = expect_ident(P, "a name after '.'");
  }
  return arena_strndup(P->tmp, first->p, (size_t)(last->p + last->len - first->p));
}

/* as = ("as" IDENT)? */
static Token *parse_as(Parser *P) {
  if (!accept(P, "as")) return NULL;
  return expect_ident(P, "a name after 'as'");
}

/* output_stmt = "output" IDENT ("=" expr ("as" IDENT)?)? */
static Stmt *parse_output(Parser *P) {
  Stmt *s = new_stmt(P, ST_OUTPUT, P->tok);
  next(P);
  s->name = expect_ident(P, "the name of an output");
  if (accept(P, "=")) {
    P->assigning = s->name;
    s->value = parse_expr(P);
    s->as = parse_as(P);
  }
  return s;
}

/* A statement body "{" stmt* "}"; in CTX_TRAIN each statement is built as
 * soon as it is parsed, in CTX_BLOCK the list is returned. */
static Stmt *parse_body(Parser *P, StmtCtx ctx, Token *open, int *broken);

/* block_stmt = "block" IDENT "(" (IDENT ("," IDENT)*)? ")" "{" stmt* "}" */
static Stmt *parse_block(Parser *P) {
  Stmt *s = new_stmt(P, ST_BLOCK, P->tok);
  P->skip_braces = 1;
  next(P);
  s->name = expect_ident(P, "the name of the block");
  s->broken = 1;          /* until its body has been parsed */
  P->pending_block = s;
  Token *open = P->tok;
  expect(P, "(");
  s->params = arena_alloc(P->tmp, sizeof(Token *) * FE_MAX_ARGS);
  while (!lex_is(P->tok, ")")) {
    Token *t = expect_ident(P, "a parameter name");
    if (s->nparams == FE_MAX_ARGS)
      parse_fail_at(P, fe_loc(P, t), "too many block parameters (at most %d)", FE_MAX_ARGS);
    s->params[s->nparams++] = t;
    if (!accept(P, ",")) break;
  }
  expect_close(P, ")", open);
  Token *brace = P->tok;
  expect(P, "{");
  P->skip_braces = 0;
  s->broken = 0;
  s->body = parse_body(P, CTX_BLOCK, brace, &s->broken);
  P->pending_block = NULL;
  return s;
}

/* train_stmt = "train" IDENT? "{" stmt* "}" */
static Stmt *parse_train(Parser *P) {
  Stmt *s = new_stmt(P, ST_TRAIN, P->tok);
  P->skip_braces = 1;
  next(P);
  if (!lex_is(P->tok, "{")) s->name = expect_ident(P, "a section name or '{' after 'train'");
  if (fe_train_begin(P, s)) longjmp(*P->on_error, 1);   /* a second one: skip it */
  Token *brace = P->tok;
  expect(P, "{");
  P->skip_braces = 0;
  int broken = 0;
  parse_body(P, CTX_TRAIN, brace, &broken);
  fe_train_end(P, s);
  return s;
}

/* assign_stmt = IDENT { "," IDENT } "=" expr ("as" IDENT)? */
static Stmt *parse_assign(Parser *P) {
  Stmt *s = new_stmt(P, ST_ASSIGN, P->tok);
  s->name = P->assigning = P->tok;
  next(P);
  Token *more[IR_MAX_LIST];
  while (accept(P, ",")) {
    Token *t = expect_ident(P, "a name to assign");
    if (s->ntargets == IR_MAX_LIST - 1) parse_fail_at(P, fe_loc(P, t), "at most %d names are assigned at once", IR_MAX_LIST);
    more[s->ntargets++] = t;
  }
  s->targets = arena_alloc(P->tmp, sizeof(Token *) * (size_t)(s->ntargets + 1));
  memcpy(s->targets, more, sizeof(Token *) * (size_t)s->ntargets);
  expect(P, "=");
  s->value = parse_expr(P);
  s->as = parse_as(P);
  return s;
}

/* expr { "," expr }: one value, or an EX_TUPLE of several. */
static Expr *parse_return_values(Parser *P) {
  Token *at = P->tok;
  Expr *first = parse_expr(P);
  if (!lex_is(P->tok, ",")) return first;
  Expr *e = new_expr(P, EX_TUPLE, at);
  Arg items[IR_MAX_LIST + 1];
  items[e->nargs++] = (Arg){NULL, first};
  while (accept(P, ",")) {
    Expr *v = parse_expr(P);
    if (e->nargs <= IR_MAX_LIST) items[e->nargs++] = (Arg){NULL, v};
  }
  e->args = arena_alloc(P->tmp, sizeof(Arg) * (size_t)e->nargs);
  memcpy(e->args, items, sizeof(Arg) * (size_t)e->nargs);
  return e;
}

/* An identifier that does not start an assignment: say what is wrong. */
static _Noreturn void parse_bad_start(Parser *P) {
  Token *t = P->tok, *n = peek(P, 1);
  if (lex_is(n, "("))
    parse_fail_at(P, fe_loc(P, t), "the result of '%.*s(...)' is not used; assign it to a name: "
                  "h = %.*s(...)", t->len, t->p, t->len, t->p);
  if (n->kind == TK_IDENT) {
    static const char *kw[] = {"model", "input", "param", "output", "block",
                               "train", "label", "freeze", "lr_group"};
    Suggest sg;
    fe_suggest_init(&sg, fe_tokstr(P, t), P->d);
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++) fe_suggest_add(&sg, kw[i]);
    if (sg.best)
      parse_fail_at(P, fe_loc(P, t), "unknown statement '%.*s'%s", t->len, t->p, fe_suggest_text(&sg));
  }
  next(P);
  parse_expected(P, "'='");
}

static Stmt *parse_simple(Parser *P, StmtKind k) {
  Stmt *s = new_stmt(P, k, P->tok);
  next(P);
  return s;
}

/* stmt = model_stmt | input_stmt | label_stmt | param_stmt | output_stmt
 *      | freeze_stmt | lr_group_stmt | return_stmt | block_stmt
 *      | train_stmt | assign_stmt
 * model_stmt = "model" IDENT          input_stmt = "input" decl ("=" expr)?
 * label_stmt = "label" decl           param_stmt = "param" decl ("=" expr)?
 * freeze_stmt = "freeze" qualname     lr_group_stmt = "lr_group" qualname "=" expr
 * return_stmt = "return" expr { "," expr } */
static Stmt *parse_stmt_syntax(Parser *P) {
  Token *t = P->tok;
  Stmt *s;
  if (lex_is(t, "model")) {
    s = parse_simple(P, ST_MODEL);
    s->name = expect_ident(P, "the model's name");
  } else if (lex_is(t, "input")) {
    s = parse_decl(P, ST_INPUT);
    if (accept(P, "=")) s->value = parse_expr(P);
  } else if (lex_is(t, "label")) {
    s = parse_decl(P, ST_LABEL);
    if (accept(P, "=")) s->value = parse_expr(P);
  } else if (lex_is(t, "param")) {
    s = parse_decl(P, ST_PARAM);
    if (accept(P, "=")) s->value = parse_expr(P);
  } else if (lex_is(t, "output")) {
    s = parse_output(P);
  } else if (lex_is(t, "freeze")) {
    s = parse_simple(P, ST_FREEZE);
    s->qual = parse_qualname(P, s);
  } else if (lex_is(t, "lr_group")) {
    s = parse_simple(P, ST_LR_GROUP);
    s->qual = parse_qualname(P, s);
    expect(P, "=");
    s->value = parse_expr(P);
  } else if (lex_is(t, "return")) {
    s = parse_simple(P, ST_RETURN);
    s->value = parse_return_values(P);
  } else if (lex_is(t, "block")) {
    s = parse_block(P);
  } else if (lex_is(t, "train")) {
    s = parse_train(P);
  } else if (t->kind == TK_IDENT && (lex_is(peek(P, 1), "=") || lex_is(peek(P, 1), ","))) {
    s = parse_assign(P);
  } else if (t->kind == TK_IDENT) {
    parse_bad_start(P);
  } else if (lex_is(t, "}")) {
    parse_fail_at(P, fe_loc(P, t), "unexpected '}' with no '{' open");
  } else {
    parse_expected(P, "a statement");
  }
  return s;
}

/* Where each statement may appear; reports a misplaced one. */
static int stmt_allowed(Parser *P, const Stmt *s, StmtCtx ctx) {
  static const char *where[] = {
      [ST_MODEL] = "'model' is only allowed at top level",
      [ST_INPUT] = "'input' is only allowed at top level (inside train, declare labels with 'label')",
      [ST_LABEL] = "'label' declares a training label and belongs inside train { }",
      [ST_PARAM] = "'param' is only allowed at top level or in a block",
      [ST_OUTPUT] = "'output' is only allowed at top level",
      [ST_FREEZE] = "'freeze' is only allowed at top level or in train { }",
      [ST_LR_GROUP] = "'lr_group' belongs inside train { }",
      [ST_RETURN] = "'return' is only allowed in a block",
      [ST_BLOCK] = "blocks are defined at top level, not nested",
      [ST_TRAIN] = "'train' is only allowed at top level",
  };
  int ok = 1;
  switch (s->kind) {
  case ST_MODEL: case ST_INPUT: case ST_OUTPUT: case ST_BLOCK: case ST_TRAIN:
    ok = ctx == CTX_TOP; break;
  case ST_LABEL: case ST_LR_GROUP: ok = ctx == CTX_TRAIN; break;
  case ST_PARAM: ok = ctx != CTX_TRAIN; break;
  case ST_FREEZE: ok = ctx != CTX_BLOCK; break;
  case ST_RETURN: ok = ctx == CTX_BLOCK; break;
  case ST_ASSIGN: ok = 1; break;
  }
  if (!ok) diag_error(P->d, fe_loc(P, s->tok), "%s", where[s->kind]);
  return ok;
}

/* Block and train statements are checked for their place before their
 * bodies are parsed (a nested train would otherwise run its body). */
static Stmt *parse_stmt(Parser *P, StmtCtx ctx) {
  Token *t = P->tok;
  if (ctx != CTX_TOP && (lex_is(t, "block") || lex_is(t, "train"))) {
    Stmt probe = {lex_is(t, "block") ? ST_BLOCK : ST_TRAIN, t};
    stmt_allowed(P, &probe, ctx);
    P->skip_braces = 1;   /* skip the nested body, quietly */
    longjmp(*P->on_error, 1);
  }
  Stmt *s = parse_stmt_syntax(P);
  return stmt_allowed(P, s, ctx) ? s : NULL;
}

/* --- recovery -------------------------------------------------------------------- */

/* A statement keyword, `NAME =` or `NAME NAME` (a misspelt keyword: two
 * names in a row never continue an expression) at the start of a line. */
static int at_stmt_start(Parser *P) {
  Token *t = P->tok;
  if (t->kind == TK_EOF || (lex_is(t, "}") && P->brace_depth > 0)) return 1;
  if (!t->bol) return 0;
  Token *n = peek(P, 1);
  return is_stmt_keyword(t) || (t->kind == TK_IDENT && (lex_is(n, "=") || n->kind == TK_IDENT));
}

/* After a failed block or train header: skip to its '{' and over the
 * balanced body, unless a new statement comes first. */
static void skip_braced(Parser *P) {
  while (!lex_is(P->tok, "{") && P->tok->kind != TK_EOF) {
    next(P);
    if (at_stmt_start(P)) return;
  }
  int depth = 0;
  do {
    if (lex_is(P->tok, "{")) depth++;
    if (lex_is(P->tok, "}")) depth--;
    next(P);
  } while (depth > 0 && P->tok->kind != TK_EOF);
}

static void recover(Parser *P, Token *start) {
  if (P->skip_braces) {
    skip_braced(P);
    return;
  }
  if (P->tok == start) next(P);
  while (!at_stmt_start(P)) next(P);
}

/* Parses one statement; on a syntax error recovers and returns NULL. */
static Stmt *parse_guarded(Parser *P, StmtCtx ctx, int *broken) {
  jmp_buf jb, *saved = P->on_error;
  Token *start = P->tok;
  int depth = P->depth, braces = P->brace_depth;
  Stmt *s = NULL;
  P->on_error = &jb;
  P->stmt_lex_errors = P->lex_errors;
  P->assigning = NULL;
  P->skip_braces = 0;
  if (setjmp(jb) == 0) {
    s = parse_stmt(P, ctx);
  } else {
    P->depth = depth;
    P->brace_depth = braces;
    recover(P, start);
    if (ctx == CTX_BLOCK) *broken = 1;
    if (ctx != CTX_BLOCK && P->assigning) fe_poison(P, P->assigning);
    if (ctx == CTX_TOP) fe_train_abort(P);
    if (ctx == CTX_TOP && P->pending_block) {   /* its calls stay quiet */
      P->pending_block->broken = 1;
      fe_define_block(P, P->pending_block);
      P->pending_block = NULL;
    }
  }
  P->on_error = saved;
  return s;
}

static Stmt *parse_body(Parser *P, StmtCtx ctx, Token *open, int *broken) {
  Stmt head = {0}, *tail = &head;
  P->brace_depth++;
  while (!lex_is(P->tok, "}") && P->tok->kind != TK_EOF && !P->halted) {
    Stmt *s = parse_guarded(P, ctx, broken);
    if (!s) continue;
    if (ctx == CTX_TRAIN) fe_exec_stmt(P, s);
    tail = tail->next = s;
  }
  P->brace_depth--;
  if (!P->halted) expect_close(P, "}", open);
  return head.next;
}

/* program = stmt* EOF */
void parse_program(Parser *P) {
  P->pos = 0;
  P->tok = &P->toks.v[0];
  flush_lex_errors(P, P->tok);
  int broken = 0;
  while (P->tok->kind != TK_EOF && !P->halted) {
    Stmt *s = parse_guarded(P, CTX_TOP, &broken);
    P->nstmts++;
    if (!s) continue;
    if (s->kind == ST_BLOCK)
      fe_define_block(P, s);
    else if (s->kind != ST_TRAIN)
      fe_exec_stmt(P, s);
  }
  fe_finish(P);
}
