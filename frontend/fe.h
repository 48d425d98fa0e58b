/*
 * fe.h — the frontend's internal header, one section per file:
 *
 *   lexer.c    text -> tokens (errors are attached to tokens and reported
 *              when the parser reaches them, so messages come in source order)
 *   parser.c   tokens -> statements (a small AST), with error recovery
 *   build.c    statements -> Graph: scopes, names, calls of ops and blocks
 *   layers.c   the table of layers (dense, ...) that create parameters
 *   train.c    the training section and its checked calls
 *   frontend.c loading a file, suggestions, the public entry points
 *
 * The parser and the builder run interleaved, one top-level statement at a
 * time: a statement is parsed into an AST and built at once, so the errors
 * of a file come out in the order of its lines.  Block bodies are kept as
 * ASTs and built again at each call (they are macros with hygiene).
 */
#ifndef DLC_FE_H
#define DLC_FE_H

#include <setjmp.h>

#include "frontend/frontend.h"

#define FE_MAX_DEPTH 200        /* nesting of expressions */
#define FE_MAX_EXPANSION 64     /* nesting of block calls */
/* What one model may build: block calls in all (blocks are expanded at
 * each call, so a few lines can ask for 2^30 expansions) and graph nodes.
 * Real models use a few thousand of either. */
#define FE_MAX_BLOCK_CALLS 100000
#define FE_MAX_NODES 100000

typedef struct Parser Parser;

/* --- lexer.c ---------------------------------------------------------------- */
typedef enum TokenKind {
  TK_IDENT,
  TK_KEYWORD,
  TK_INT,
  TK_FLOAT,
  TK_STR,
  TK_PUNCT,
  TK_EOF,
} TokenKind;

/* A lexical error, reported when the parser reaches the token it hangs on. */
typedef struct LexErr LexErr;
struct LexErr {
  SrcLoc loc;
  const char *msg;
  LexErr *next;
};

typedef struct Token {
  TokenKind kind;
  const char *p;        /* its text in the source */
  int len;
  int line, col;        /* 1-based; col counts bytes */
  int bol;              /* first token on its line */
  int bad;              /* a malformed literal (already reported) */
  int64_t ival;         /* TK_INT */
  double fval;          /* TK_INT, TK_FLOAT */
  const char *str;      /* TK_STR: the decoded contents */
  LexErr *errs;         /* errors to report on reaching this token */
} Token;

typedef struct TokenList {
  Token *v;
  int n;
} TokenList;

/* Splits src into tokens ending with TK_EOF; allocates from a. */
TokenList lex_tokenize(const Source *src, Arena *a);
int lex_is(const Token *t, const char *s);
int lex_is_keyword(const char *s, int len);
/* "'relu'", "end of file", "string \"x\"": for messages; static buffer. */
const char *lex_describe(const Token *t);
/* The byte offset of the first invalid UTF-8 sequence, or -1. */
long lex_check_utf8(const char *s, size_t n);

/* --- parser.c: the AST -------------------------------------------------------- */
typedef enum ExprKind { EX_NUM, EX_STR, EX_NAME, EX_CALL, EX_BINARY, EX_NEG, EX_LIST, EX_TUPLE } ExprKind;

typedef struct Expr Expr;

typedef struct Arg {
  Token *key;           /* keyword, or NULL for a positional argument */
  Expr *val;
} Arg;

struct Expr {
  ExprKind kind;
  Token *tok;           /* where the expression is reported */
  const char *name;     /* EX_NAME, EX_CALL: the name; EX_STR: the string */
  OpKind op;            /* EX_BINARY */
  Expr *lhs, *rhs;      /* EX_BINARY; EX_NEG uses lhs */
  Arg *args;            /* EX_CALL, EX_LIST, EX_TUPLE (a return's values) */
  int nargs;
};

typedef enum StmtKind {
  ST_MODEL,
  ST_INPUT,
  ST_LABEL,
  ST_PARAM,
  ST_ASSIGN,
  ST_OUTPUT,
  ST_FREEZE,
  ST_LR_GROUP,
  ST_RETURN,
  ST_BLOCK,
  ST_TRAIN,
} StmtKind;

typedef struct Stmt Stmt;

struct Stmt {
  StmtKind kind;
  Token *tok;           /* the keyword, or the assigned name */
  Token *name;          /* the declared or assigned name */
  const char *qual;     /* freeze, lr_group: the dotted prefix */
  Token *dtype;         /* input, label, param */
  Token **dims;
  int ndims;
  Expr *value;          /* right-hand side, init, return value */
  Token *as;            /* "as NAME" */
  Token **params;       /* block */
  Token **targets;      /* assign: the names after the first (a, b = ...) */
  int ntargets;
  int nparams;
  Stmt *body;           /* block, train: a list through next */
  int broken;           /* block: its body had syntax errors */
  Stmt *next;
};

typedef enum StmtCtx { CTX_TOP, CTX_BLOCK, CTX_TRAIN } StmtCtx;

/* Parses and builds the whole file. */
void parse_program(Parser *P);

/* --- build.c: values and the builder ------------------------------------------ */
typedef enum ValKind { V_ERR, V_TENSOR, V_NUM, V_STR, V_LIST, V_TUPLE } ValKind;

typedef struct Value {
  ValKind kind;
  int id;               /* V_TENSOR */
  double num;           /* V_NUM */
  int64_t ival;         /* V_NUM when is_int */
  int is_int;
  const char *str;      /* V_STR */
  int nlist;            /* V_LIST: integers, or symbols where sym[i]; V_TUPLE: node ids */
  int64_t list[IR_MAX_LIST];
  unsigned char sym[IR_MAX_LIST];
} Value;

typedef struct Var {
  const char *name;
  Value v;
  Token *tok;           /* where it was bound */
  const char *what;     /* "input", "param", "label": cannot be rebound */
} Var;

/* --- frontend.c: name tables ---------------------------------------------------
 * Names map to small integers through a hash table (open addressing,
 * linear probing, FNV-1a), so looking up a name costs the same in a model
 * of ten statements or of a hundred thousand.  Keys are not copied: they
 * must outlive the table.  Tables grow in the arena given. */
typedef struct FeMap {
  const char **keys;
  int *vals;
  int n, cap;           /* cap: 0 or a power of two */
} FeMap;

int fe_map_get(const FeMap *m, const char *key);   /* -1 when absent */
void fe_map_put(FeMap *m, Arena *a, const char *key, int val);

typedef struct Scope {
  Var *v;
  int n, cap;
  FeMap index;          /* name -> its entry of v */
} Scope;

typedef struct BlockDef {
  const char *name;
  Stmt *def;            /* ST_BLOCK */
} BlockDef;

/* One level of block expansion: its names nest under prefix. */
typedef struct Frame Frame;
struct Frame {
  const char *prefix;   /* "" at top level, "block1", "block1.inner";
                           NULL in a block call that was not given a name */
  int reported;         /* the missing name was reported */
  Scope *scope;
  const BlockDef *block;
  Token *call;
  Frame *up;
  int depth;
};

typedef struct Use {      /* a prefix claimed by a layer or block call */
  const char *name;
  Token *tok;
} Use;

typedef struct Pending {  /* freeze and lr_group, checked at the end */
  Stmt *s;
} Pending;

/* Parameter lists of layers, blocks, inits and training calls. */
typedef enum SigKind { SK_TENSOR, SK_INT, SK_FLOAT, SK_BOOL, SK_LIST, SK_ENUM, SK_STR, SK_ANY } SigKind;

typedef enum SigCheck { CHK_NONE, CHK_POS, CHK_NONNEG, CHK_UNIT } SigCheck;

typedef struct SigParam {
  const char *name;
  SigKind kind;
  const char *deflt;    /* NULL: required */
  const char *choices;  /* SK_ENUM: "mean|sum|none" */
  SigCheck check;       /* numbers: > 0, >= 0, in [0, 1) */
} SigParam;

struct Parser {
  Model *m;
  Graph *g;
  Diags *d;
  Arena *tmp;           /* tokens and AST, freed after loading */
  TokenList toks;
  int pos;
  Token *tok;           /* current token */
  int depth;            /* expression nesting */
  int brace_depth;      /* inside { } of a block or train section */
  jmp_buf *on_error;    /* where a syntax error unwinds to */
  Token *assigning;     /* the name being defined by the statement */
  int skip_braces;      /* a block or train header failed: skip its body */
  int nstmts;
  int lex_errors;       /* lexical errors reported so far */
  int stmt_lex_errors;  /* ... when the current statement began */
  Token *lex_error_tok; /* the last token that carried lexical errors */
  /* builder */
  Scope top;
  Frame *frame;
  BlockDef *blocks;
  int nblocks, blockcap;
  FeMap block_index;    /* name -> blocks[] */
  Use *uses;
  int nuses, usecap;
  FeMap use_index;      /* name -> uses[] */
  FeMap params, inputs, outputs;  /* name -> node id (outputs: output index) */
  Pending *pend;
  int npend, pendcap;
  Token **outtok;       /* where each output was declared */
  int outcap;
  Expr *naming;         /* the call the statement's name belongs to */
  Token *naming_tok;    /* that name */
  int named;            /* the name was taken */
  Stmt *pending_block;  /* the block being parsed, defined broken on a syntax error */
  Stmt *model_stmt;
  int start_errors;     /* d->nerrors when loading began */
  Stmt *train;          /* the first train section, once seen */
  Stmt *unnamed;        /* the unnamed train section, once seen */
  int unnamed_closed;   /* ... and read to its '}' */
  int in_train;
  Token *settings[12];  /* where each training setting was given in the section being read
                           (train.c: settings[]) */
  Token *run_settings[12]; /* ... in the unnamed section (kept while a named one is read) */
  TrainSection *section;   /* the named section being read, or NULL */
  Expr *sec_params[FE_MAX_SECTIONS]; /* each named section's `params =` */
  Expr *order;          /* `order = alternate(NAME=K, ...)` of the unnamed section */
  long ncalls;          /* block calls expanded so far */
  int halted;           /* a limit of the model's size was hit: stop building */
  Graph *model_g;       /* the model's graph while a scan body is built in g */
};

void fe_exec_stmt(Parser *P, Stmt *s);
/* Whether building must stop: reports (once) that the model exceeds
 * FE_MAX_NODES nodes or FE_MAX_BLOCK_CALLS block calls, at token at. */
int fe_halt(Parser *P, Token *at);
void fe_define_block(Parser *P, Stmt *s);
/* The variable that a statement whose syntax failed would have defined:
 * bound to an error value so later uses stay quiet. */
void fe_poison(Parser *P, Token *name);
void fe_finish(Parser *P);
Value fe_eval(Parser *P, Expr *e);
Var *fe_lookup(Parser *P, const char *name);
void fe_bind(Parser *P, Token *name, Value v, const char *what);
int fe_tensor(Parser *P, Expr *e, Value v);   /* node id, or -1 */
SrcLoc fe_loc(Parser *P, const Token *t);
const char *fe_tokstr(Parser *P, const Token *t);  /* a copy of its text */
const char *fe_join(Parser *P, const char *prefix, const char *name);
/* Matches args to sig: slots[i] gets the argument for sig[i] or NULL.
 * Returns 0, or -1 after reporting what is wrong. */
int fe_bind_args(Parser *P, const char *callee, const char *noun, Token *at, const SigParam *sig,
                 int nsig, const Arg *args, int nargs, Expr **slots);
/* Evaluates the bound arguments by kind (defaults for absent ones) and
 * applies each SigCheck; returns 0, or -1 when one is an error value. */
int fe_eval_args(Parser *P, const char *callee, const SigParam *sig, int nsig, Expr **slots,
                 Value *vals);
/* Declares an input (also used for labels); returns the node or -1. */
int fe_declare_input(Parser *P, Stmt *s, const char *what);
/* "a tensor of type f32[N]", "6.5", "a string": for messages. */
const char *fe_value_str(Parser *P, Value v, char *buf, size_t len);
/* Evaluates e as a value of kind k ("units of dense"); V_ERR after an error. */
Value fe_eval_as(Parser *P, Expr *e, SigKind k, const char *what, const char *choices);
/* The value of sig's default text. */
Value fe_default(const SigParam *sp);
/* 0 if a dt tensor of shape s fits IR_MAX_TENSOR_BYTES per unit of its
 * symbols, else -1 after reporting at at. */
int fe_check_size(Parser *P, DType dt, const Shape *s, Token *at);
/* Creates parameter PREFIX.NAME (or NAME at top level); -1 after an error. */
int fe_new_param(Parser *P, const char *fullname, const Shape *s, ParamInit init, Token *at);
/* Reserves a prefix for a layer or block call; 0, or -1 if taken. */
int fe_claim_prefix(Parser *P, const char *full, Token *at);
/* The prefix for the layer or block call e, or NULL after an error. */
const char *fe_call_prefix(Parser *P, Expr *e, const char *kind);
/* The user block named name, or NULL. */
const BlockDef *fe_find_block(Parser *P, const char *name);
/* Expands block b for call e with its arguments' values (named after the
 * statement when e is its value); V_ERR after an error. */
Value fe_expand_block(Parser *P, const BlockDef *b, Expr *e, const Value *args);
Value fe_tuple(int n, const int *ids);

/* --- scan.c ------------------------------------------------------------------- */
/* scan(BLOCK, SEQ, STATE..., axis=0, reverse=false): the block run once
 * per step as the body of a scan node; its results as a tuple. */
Value fe_call_scan(Parser *P, Expr *e);
/* The scan of body (built apart: its inputs a step of in[0], then the
 * states in[1..nstate]; its params become the model's) and its results;
 * body is adopted by P->g. */
Value fe_make_scan(Parser *P, Expr *e, Graph *body, const int *in, int nstate, int64_t axis, int reverse);

/* --- rnn.c -------------------------------------------------------------------- */
/* The recurrent layer named name (rnn, lstm, gru): its index, or -1. */
int fe_recurrent_layer(const char *name);
/* out, h_n[, c_n] = rnn|lstm|gru(x, h0[, c0], ...): a scan over the cell. */
Value fe_call_recurrent(Parser *P, int kind, Expr *e);

/* --- layers.c ----------------------------------------------------------------- */
/* A layer call's init= and bias_init=; kind INIT_COUNT when not given. */
typedef struct LayerInits {
  ParamInit weight, bias;
} LayerInits;

typedef struct LayerDef LayerDef;
struct LayerDef {
  const char *name;
  const SigParam *sig;  /* sig[0] is the input tensor */
  int nsig;
  /* vals follow sig; returns the output node or -1 after an error */
  int (*build)(Parser *P, const char *prefix, Token *at, const Value *vals, const LayerInits *li);
  int anonymous;        /* creates no parameters: the call needs no name */
};

const LayerDef *fe_layer_lookup(const char *name);
int fe_layer_count(void);
const LayerDef *fe_layer_at(int i);
Value fe_call_layer(Parser *P, const LayerDef *l, Expr *e);

/* --- train.c ------------------------------------------------------------------ */
/* Runs a `NAME = expr` statement inside train { }; returns 0 when NAME is
 * not a training setting (then it is an ordinary binding). */
int fe_train_setting(Parser *P, Stmt *s);
/* s->name is the section's name, NULL for the unnamed section; -1: a
 * second unnamed section, or a name given twice. */
int fe_train_begin(Parser *P, Stmt *s);
void fe_train_end(Parser *P, Stmt *s);
/* A syntax error left the train section being read: leave it. */
void fe_train_abort(Parser *P);
/* After the whole file: the named sections' parameters (their patterns
 * against the model's parameters), their order, and the checks that
 * need the whole model. */
void fe_train_finish(Parser *P);
void fe_train_label(Parser *P, Stmt *s);
/* A training setting whose statement failed: counts as given. */
void fe_train_mark(Parser *P, const Token *name);
void fe_init_of(Parser *P, Stmt *s, int rank, ParamInit *init);
/* The initialiser written e (a name, a call or a number) into *init;
 * kind INIT_COUNT after an error. */
void fe_init_expr(Parser *P, Expr *e, ParamInit *init);

/* --- frontend.c --------------------------------------------------------------- */
int fe_edit_distance(const char *a, const char *b);
/* The candidate nearest to name if it is close enough to be a typo. */
typedef struct Suggest {
  const char *name;
  const char *best;
  int dist;
  int off;              /* the message will not be printed: offer nothing */
} Suggest;
/* Nothing is computed once d has stopped printing (after its max_errors). */
void fe_suggest_init(Suggest *s, const char *name, const Diags *d);
void fe_suggest_add(Suggest *s, const char *cand);
/* "; did you mean 'x'?" or "" (static buffer). */
const char *fe_suggest_text(const Suggest *s);

#endif
