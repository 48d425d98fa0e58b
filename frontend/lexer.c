/*
 * lexer.c — .dl source text to tokens.
 *
 * The whole file is tokenised up front into an array (chibicc style); the
 * parser looks at most two tokens ahead.  Newlines are whitespace, but each
 * token remembers whether it starts a line (bol), which is what the parser's
 * error recovery uses to find the next statement.  Lexical errors never stop
 * the lexer: an unexpected character is dropped, a malformed number becomes
 * a `bad` number token, an unterminated string ends at the end of its line.
 * Each error is attached to the token it belongs to (or the next one) and
 * is reported by the parser when it reaches that token, so the messages of a
 * file come out in source order with the parser's own.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe.h"

static const char *keywords[] = {
    "model", "input", "param", "output", "block", "return", "train",
    "label", "freeze", "as",    "lr_group", "true", "false",
};

int lex_is_keyword(const char *s, int len) {
  for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
    if ((int)strlen(keywords[i]) == len && strncmp(keywords[i], s, (size_t)len) == 0) return 1;
  return 0;
}

int lex_is(const Token *t, const char *s) {
  return (t->kind == TK_PUNCT || t->kind == TK_KEYWORD) && (int)strlen(s) == t->len &&
         strncmp(t->p, s, (size_t)t->len) == 0;
}

const char *lex_describe(const Token *t) {
  static char buf[96];
  switch (t->kind) {
  case TK_EOF: return "end of file";
  case TK_STR: snprintf(buf, sizeof buf, "a string"); return buf;
  case TK_IDENT:
  case TK_KEYWORD:
  case TK_INT:
  case TK_FLOAT:
  case TK_PUNCT: break;
  }
  snprintf(buf, sizeof buf, "'%.*s'", t->len > 40 ? 40 : t->len, t->p);
  return buf;
}

/* --- UTF-8 ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static int utf8_len(const unsigned char *s, size_t n) {
  int len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
          : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
  if (len == 0 || (size_t)len > n) return 0;
  for (int i = 1; i < len; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  uint32_t c = len == 1 ? s[0] : len == 2 ? s[0] & 0x1fu : len == 3 ? s[0] & 0x0fu : s[0] & 0x07u;
  for (int i = 1; i < len; i++) c = c << 6 | (s[i] & 0x3fu);
  static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;  /* overlong, surrogate */
  return len;
}

long lex_check_utf8(const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    int len = utf8_len((const unsigned char *)s + i, n - i);
    if (!len) return (long)i;
    i += (size_t)len;
  }
  return -1;
}

/* --- the scanner ------------------------------------------------------------ */

typedef struct Lexer {
  const Source *src;
  Arena *a;
  const char *p, *line_start;
  int line;
  int bol;
  LexErr *pending;      /* errors waiting for the next token */
  Token *v;
  int n, cap;
} Lexer;

static SrcLoc lex_loc(Lexer *L, const char *at) {
  return (SrcLoc){L->src, L->line, (int)(at - L->line_start) + 1};
}

static void lex_error(Lexer *L, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void lex_error(Lexer *L, const char *at, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  LexErr *e = arena_alloc(L->a, sizeof *e);
  e->loc = lex_loc(L, at);
  e->msg = arena_strdup(L->a, msg);
  LexErr **tail = &L->pending;
  while (*tail) tail = &(*tail)->next;
  *tail = e;
}

static Token *lex_push(Lexer *L, TokenKind k, const char *start, int len) {
  if (L->n == L->cap) {
    int cap = L->cap ? L->cap * 2 : 256;
    Token *v = arena_alloc(L->a, (size_t)cap * sizeof *v);
    if (L->n) memcpy(v, L->v, (size_t)L->n * sizeof *v);
    L->v = v, L->cap = cap;
  }
  Token *t = &L->v[L->n++];
  memset(t, 0, sizeof *t);
  t->kind = k;
  t->p = start;
  t->len = len;
  t->line = L->line;
  t->col = (int)(start - L->line_start) + 1;
  t->bol = L->bol;
  t->errs = L->pending;
  L->pending = NULL;
  L->bol = 0;
  return t;
}

/* Skips blanks, newlines and # comments. */
static void lex_skip_space(Lexer *L) {
  for (;;) {
    if (*L->p == '\n') {
      L->p++, L->line++, L->line_start = L->p, L->bol = 1;
    } else if (*L->p == ' ' || *L->p == '\t' || *L->p == '\r' || *L->p == '\f' || *L->p == '\v') {
      L->p++;
    } else if (*L->p == '#') {
      while (*L->p && *L->p != '\n') L->p++;
    } else {
      return;
    }
  }
}

/* number = digits ("." digits?)? exp? | "." digits exp?
 * exp = ("e" | "E") ("+" | "-")? digits
 * The lexer takes the longest run of letters, digits, '_' and '.' (and a
 * sign after an exponent) and then checks it, so "12abc" or "1.2.3" is one
 * bad number rather than several confusing tokens. */
static int lex_valid_number(const char *s, int len, int *is_float) {
  int i = 0, digits = 0;
  *is_float = 0;
  while (i < len && isdigit((unsigned char)s[i])) i++, digits++;
  if (i < len && s[i] == '.') {
    *is_float = 1;
    for (i++; i < len && isdigit((unsigned char)s[i]); i++) digits++;
  }
  if (!digits) return 0;
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    *is_float = 1;
    i++;
    if (i < len && (s[i] == '+' || s[i] == '-')) i++;
    int ed = 0;
    while (i < len && isdigit((unsigned char)s[i])) i++, ed++;
    if (!ed) return 0;
  }
  return i == len;
}

static void lex_number(Lexer *L) {
  const char *s = L->p, *q = s;
  while (isalnum((unsigned char)*q) || *q == '_' || *q == '.' ||
         ((*q == '+' || *q == '-') && q > s && (q[-1] == 'e' || q[-1] == 'E')))
    q++;
  int len = (int)(q - s), is_float, bad = 0;
  char buf[128];
  snprintf(buf, sizeof buf, "%.*s", len, s);
  double f = 0;
  long long i = 0;
  if (!lex_valid_number(s, len, &is_float)) {
    lex_error(L, s, "invalid number '%.*s'", len > 40 ? 40 : len, s);
    bad = 1;
  } else {
    errno = 0;
    if (is_float)
      f = strtod(buf, NULL);
    else
      f = (double)(i = strtoll(buf, NULL, 10));
    if (errno == ERANGE || len >= (int)sizeof buf) {
      lex_error(L, s, "number '%.*s' is out of range", len > 40 ? 40 : len, s);
      bad = 1;
    }
  }
  Token *t = lex_push(L, is_float ? TK_FLOAT : TK_INT, s, len);
  t->bad = bad;
  t->ival = i;
  t->fval = f;
  L->p = q;
}

/* string = '"' (char | '\' ("\"" | "\\" | "n" | "t"))* '"', on one line. */
static void lex_string(Lexer *L) {
  const char *s = L->p;
  char *out = arena_alloc(L->a, strcspn(s, "\n") + 1);
  int n = 0, closed = 0;
  const char *q = s + 1;
  for (; *q && *q != '\n'; q++) {
    if (*q == '"') {
      closed = 1, q++;
      break;
    }
    if (*q != '\\') {
      out[n++] = *q;
      continue;
    }
    q++;
    switch (*q) {
    case '"': out[n++] = '"'; break;
    case '\\': out[n++] = '\\'; break;
    case 'n': out[n++] = '\n'; break;
    case 't': out[n++] = '\t'; break;
    default:
      if (!*q || *q == '\n') { q--; break; }
      lex_error(L, q - 1, "unknown escape sequence '\\%c' in string", *q);
    }
  }
  if (!closed) lex_error(L, s, "unterminated string (a string ends with '\"' on the same line)");
  Token *t = lex_push(L, TK_STR, s, (int)(q - s));
  t->str = out;
  t->bad = !closed;
  L->p = q;
}

static void lex_unexpected(Lexer *L) {
  const unsigned char *u = (const unsigned char *)L->p;
  int len = utf8_len(u, strlen(L->p));
  if (len > 1)
    lex_error(L, L->p, "unexpected character '%.*s'", len, L->p);
  else if (u[0] == ';')
    lex_error(L, L->p, "unexpected character ';' (statements need no separator)");
  else if (isprint(u[0]))
    lex_error(L, L->p, "unexpected character '%c'", u[0]);
  else
    lex_error(L, L->p, "unexpected byte 0x%02x", u[0]);
  L->p += len > 1 ? len : 1;
}

static void lex_ident(Lexer *L) {
  const char *s = L->p;
  while (isalnum((unsigned char)*L->p) || *L->p == '_') L->p++;
  int len = (int)(L->p - s);
  lex_push(L, lex_is_keyword(s, len) ? TK_KEYWORD : TK_IDENT, s, len);
}

TokenList lex_tokenize(const Source *src, Arena *a) {
  Lexer L = {src, a, src->text, src->text, 1, 1, NULL, NULL, 0, 0};
  for (;;) {
    lex_skip_space(&L);
    char c = *L.p;
    if (!c) break;
    if (L.n >= FE_MAX_TOKENS) {
      lex_error(&L, L.p, "the file has more than %d tokens, the limit of a .dl file", FE_MAX_TOKENS);
      break;
    }
    if (isdigit((unsigned char)c) || (c == '.' && isdigit((unsigned char)L.p[1])))
      lex_number(&L);
    else if (isalpha((unsigned char)c) || c == '_')
      lex_ident(&L);
    else if (c == '"')
      lex_string(&L);
    else if (strchr("()[]{},:=+-*/@.", c))
      lex_push(&L, TK_PUNCT, L.p++, 1);
    else
      lex_unexpected(&L);
  }
  lex_push(&L, TK_EOF, L.p, 0);
  return (TokenList){L.v, L.n};
}
