/*
 * frontend.c — the entry points: load a .dl file or string into a Model.
 *
 * Loading checks the bytes first (no NUL bytes, valid UTF-8), then lexes
 * the whole text and runs the parser, which builds the graph statement by
 * statement (parser.c, build.c).  The model owns copies of the path and the
 * text, since every SrcLoc in the graph points at them.  Tokens and the
 * AST live in a scratch arena freed before returning.
 *
 * Suggestions ("did you mean 'fc2'?") use the Levenshtein distance: a
 * candidate is offered when it is at most a third of the name's length away
 * (at least 1, at most 3 edits), so short names only match close typos; of
 * equally close candidates the first offered wins (callers offer the most
 * recently defined names first).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/fe.h"

/* --- suggestions ---------------------------------------------------------------- */

/* Optimal string alignment distance: insertions, deletions, substitutions
 * and swaps of adjacent characters ("rleu" is one edit from "relu"). */
int fe_edit_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 64 || m > 64) return 1 << 20;
  int d[65][65];
  for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  return d[n][m];
}

void fe_suggest_init(Suggest *s, const char *name) {
  s->name = name;
  s->best = NULL;
  s->dist = 1 << 20;
}

void fe_suggest_add(Suggest *s, const char *cand) {
  if (strcmp(cand, s->name) == 0) return;
  int len = (int)strlen(s->name);
  int limit = len / 3 < 1 ? 1 : len / 3 > 3 ? 3 : len / 3;
  int d = fe_edit_distance(s->name, cand);
  if (d <= limit && d < s->dist) s->best = cand, s->dist = d;
}

const char *fe_suggest_text(const Suggest *s) {
  static char buf[160];
  if (!s->best) return "";
  snprintf(buf, sizeof buf, "; did you mean '%s'?", s->best);
  return buf;
}

/* --- loading --------------------------------------------------------------------- */

/* "samples/mlp.dl" -> "mlp" */
static const char *file_stem(Arena *a, const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strcspn(base, ".");
  return n ? arena_strndup(a, base, n) : "model";
}

static void model_init(Model *m, const char *path, Diags *d) {
  memset(m, 0, sizeof *m);
  Arena tmp;
  arena_init(&tmp);
  ir_graph_init(&m->g, file_stem(&tmp, path ? path : "model"), d);
  arena_free(&tmp);
  m->src.path = arena_strdup(&m->g.arena, path ? path : "<input>");
  m->src.text = "";
  m->train.loss = -1;
  m->train.target = -1;
  m->train.batch = 64;
  m->train.epochs = 10;
}

/* Line and column of byte offset off in text. */
static void line_col(const char *text, size_t off, int *line, int *col) {
  *line = 1, *col = 1;
  for (size_t i = 0; i < off; i++) {
    if (text[i] == '\n') (*line)++, *col = 1;
    else (*col)++;
  }
}

/* Refuses bytes that are not UTF-8 text; returns 0 if the text is fine. */
static int check_bytes(Model *m, const char *text, size_t len, Diags *d) {
  const char *nul = memchr(text, 0, len);
  long bad = lex_check_utf8(text, nul ? (size_t)(nul - text) : len);
  int line, col;
  char where[512];
  if (bad >= 0) {
    line_col(text, (size_t)bad, &line, &col);
    snprintf(where, sizeof where, "%s:%d:%d", m->src.path, line, col);
    diag_plain(d, where, "invalid UTF-8 byte 0x%02x; a .dl file must be UTF-8 text",
               (unsigned char)text[bad]);
    return -1;
  }
  if (nul) {
    line_col(text, (size_t)(nul - text), &line, &col);
    snprintf(where, sizeof where, "%s:%d:%d", m->src.path, line, col);
    diag_plain(d, where, "NUL byte in the file; a .dl file must be text");
    return -1;
  }
  return 0;
}

int fe_load_buffer(Model *m, const char *path, const char *text, size_t len, Diags *d) {
  int before = d->nerrors;
  model_init(m, path, d);
  if (check_bytes(m, text, len, d)) return d->nerrors - before;
  m->src.text = arena_strndup(&m->g.arena, text, len);
  Arena tmp;
  arena_init(&tmp);
  Parser P;
  memset(&P, 0, sizeof P);
  P.m = m, P.g = &m->g, P.d = d, P.tmp = &tmp;
  P.start_errors = before;
  Frame top = {""};
  top.scope = &P.top;
  P.frame = &top;
  P.toks = lex_tokenize(&m->src, &tmp);
  parse_program(&P);
  arena_free(&tmp);
  return d->nerrors - before;
}

int fe_load_string(Model *m, const char *path, const char *text, Diags *d) {
  return fe_load_buffer(m, path, text, strlen(text), d);
}

int fe_load_file(Model *m, const char *path, Diags *d) {
  int before = d->nerrors;
  model_init(m, path, d);
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int err = f ? 0 : errno;
  RtOomScope oom; /* the stream is not an owned block */
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) {
    if (f) fclose(f);
    rt_oom();
  }
  while (f && !err) {
    if (len == cap) {
      cap = cap ? cap * 2 : 65536;
      buf = rt_xrealloc(buf, cap);
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) err = ferror(f) ? (errno ? errno : EIO) : -1;
  }
  rt_oom_leave(&oom);
  if (f) fclose(f);
  if (err > 0) {
    diag_plain(d, path, "cannot read the file: %s", strerror(err));
    rt_xfree(buf);
    return d->nerrors - before;
  }
  fe_model_free(m);
  int n = fe_load_buffer(m, path, buf ? buf : "", len, d);
  rt_xfree(buf);
  return n;
}

void fe_model_free(Model *m) {
  ir_graph_free(&m->g);
  memset(m, 0, sizeof *m);
}
