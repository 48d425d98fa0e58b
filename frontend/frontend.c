/*
 * frontend.c — the entry points: load a .dl file or string into a Model.
 *
 * Loading checks the bytes first (no NUL bytes, valid UTF-8, at most
 * FE_MAX_FILE_BYTES; a file is checked chunk by chunk as it is read, so
 * an endless or binary stream is refused at once), then lexes
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
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

void fe_suggest_init(Suggest *s, const char *name, const Diags *d) {
  s->name = name;
  s->best = NULL;
  s->dist = 1 << 20;
  s->off = !d || !d->out || d->nerrors >= (d->max_errors > 0 ? d->max_errors : 20);
}

void fe_suggest_add(Suggest *s, const char *cand) {
  if (s->off || strcmp(cand, s->name) == 0) return;
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

/* --- name tables ------------------------------------------------------------------ */

static uint64_t map_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* The slot of key, or the empty slot where it would go. */
static int map_slot(const FeMap *m, const char *key) {
  int mask = m->cap - 1, i = (int)(map_hash(key) & (uint64_t)mask);
  while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & mask;
  return i;
}

int fe_map_get(const FeMap *m, const char *key) {
  if (!m->cap) return -1;
  int i = map_slot(m, key);
  return m->keys[i] ? m->vals[i] : -1;
}

/* Doubles m (kept at most half full). */
static void map_grow(FeMap *m, Arena *a) {
  FeMap old = *m;
  m->cap = old.cap ? old.cap * 2 : 8;
  m->keys = arena_alloc(a, (size_t)m->cap * sizeof *m->keys);
  m->vals = arena_alloc(a, (size_t)m->cap * sizeof *m->vals);
  for (int i = 0; i < old.cap; i++)
    if (old.keys[i]) {
      int j = map_slot(m, old.keys[i]);
      m->keys[j] = old.keys[i], m->vals[j] = old.vals[i];
    }
}

void fe_map_put(FeMap *m, Arena *a, const char *key, int val) {
  if (2 * (m->n + 1) > m->cap) map_grow(m, a);
  int i = map_slot(m, key);
  if (!m->keys[i]) m->keys[i] = key, m->n++;
  m->vals[i] = val;
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
  if (len > FE_MAX_FILE_BYTES) {
    diag_plain(d, m->src.path, "the model text is larger than %d MiB, the limit of a .dl file", FE_MAX_FILE_BYTES >> 20);
    return d->nerrors - before;
  }
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

/* Appends up to want bytes of fd to *buf (capacity *cap); returns the
 * count read, 0 at the end, -1 with errno set. */
static ssize_t read_chunk(int fd, char **buf, size_t *cap, size_t len, size_t want) {
  if (len + want + 1 > *cap) {
    size_t ncap = *cap ? *cap * 2 : 65536;
    while (ncap < len + want + 1) ncap *= 2;
    *buf = rt_xrealloc(*buf, ncap);
    *cap = ncap;
  }
  ssize_t got;
  do got = read(fd, *buf + len, want);
  while (got < 0 && errno == EINTR);
  return got;
}

/* Reads fd to its end, refusing (after a message) more than
 * FE_MAX_FILE_BYTES and any NUL byte as soon as it arrives, so an endless
 * or binary stream (/dev/urandom, /dev/zero) stops at once. */
static char *read_text(int fd, const char *path, size_t *len, Diags *d) {
  char *buf = NULL;
  size_t cap = 0;
  ssize_t got;
  *len = 0;
  while ((got = read_chunk(fd, &buf, &cap, *len, 65536)) > 0) {
    const char *nul = memchr(buf + *len, 0, (size_t)got);
    if (nul) {
      diag_plain(d, path, "NUL byte at offset %zu; a .dl file must be text", (size_t)(nul - buf));
      break;
    }
    *len += (size_t)got;
    if (*len > FE_MAX_FILE_BYTES) {
      diag_plain(d, path, "the file is larger than %d MiB, the limit of a .dl file", FE_MAX_FILE_BYTES >> 20);
      break;
    }
  }
  if (got < 0) diag_plain(d, path, "cannot read the file: %s", strerror(errno));
  if (got != 0) {
    rt_xfree(buf);
    return NULL;
  }
  if (!buf) buf = rt_xmalloc(1);
  buf[*len] = 0;
  return buf;
}

char *fe_read_source(const char *path, size_t *len, Diags *d) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    diag_plain(d, path, "cannot read the file: %s", strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  char *text = NULL;
  RtOomScope oom; /* the descriptor is not an owned block */
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) {
    close(fd);
    rt_oom();
  }
  if (S_ISDIR(st.st_mode))
    diag_plain(d, path, "cannot read the file: %s", strerror(EISDIR));
  else if (S_ISREG(st.st_mode) && st.st_size > FE_MAX_FILE_BYTES)
    diag_plain(d, path, "the file is larger than %d MiB, the limit of a .dl file", FE_MAX_FILE_BYTES >> 20);
  else
    text = read_text(fd, path, len, d);
  rt_oom_leave(&oom);
  close(fd);
  return text;
}

int fe_load_file(Model *m, const char *path, Diags *d) {
  int before = d->nerrors;
  double t0 = ir_phase_start();
  size_t len;
  char *text = fe_read_source(path, &len, d);
  if (!text) {
    model_init(m, path, d);
    return d->nerrors > before ? d->nerrors - before : 1;
  }
  int n = fe_load_buffer(m, path, text, len, d);
  rt_xfree(text);
  ir_phase_end("frontend", t0);
  return n;
}

void fe_model_free(Model *m) {
  if (m->weights) rt_set_free(m->weights), rt_xfree(m->weights);
  ir_graph_free(&m->g);
  memset(m, 0, sizeof *m);
}
