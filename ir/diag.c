/*
 * diag.c — compiler-style diagnostics.
 *
 * Every message about a .dl file has the form
 *
 *   path:line:col: error: message
 *      12 |   h = dense(x, 256)
 *         |       ^
 *
 * followed by "note:" lines for related places.  Messages go to the Diags'
 * stream (stderr in dlc, a memory stream in the golden tests).  Errors are
 * counted so a caller can go on after one and stop at the end of a phase;
 * after max_errors the rest are counted but not printed.
 */
#include <string.h>

#include "ir/ir.h"

void diag_init(Diags *d, FILE *out) {
  memset(d, 0, sizeof *d);
  d->out = out;
  d->max_errors = 20;
}

/* The start of line `line` (1-based) of text, or NULL. */
static const char *line_start(const char *text, int line) {
  const char *p = text;
  for (int i = 1; i < line && p; i++) {
    p = strchr(p, '\n');
    if (p) p++;
  }
  return p;
}

static void print_source_line(FILE *f, SrcLoc loc) {
  const char *p = line_start(loc.src->text, loc.line);
  if (!p) return;
  size_t n = strcspn(p, "\n");
  fprintf(f, "%5d | %.*s\n      | ", loc.line, (int)n, p);
  for (int i = 1; i < loc.col && (size_t)(i - 1) < n; i++)
    fputc(p[i - 1] == '\t' ? '\t' : ' ', f);
  fputs("^\n", f);
}

static int quiet(Diags *d, const char *kind) {
  if (strcmp(kind, "error") == 0) d->nerrors++;
  int max = d->max_errors > 0 ? d->max_errors : 20;
  return d->nerrors > max || !d->out;
}

void diag_verror(Diags *d, SrcLoc loc, const char *kind, const char *fmt, va_list ap) {
  if (quiet(d, kind)) return;
  if (loc.src)
    fprintf(d->out, "%s:%d:%d: %s: ", loc.src->path, loc.line, loc.col, kind);
  else
    fprintf(d->out, "dlc: %s: ", kind);
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  if (loc.src && loc.src->text) print_source_line(d->out, loc);
}

void diag_error(Diags *d, SrcLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, "error", fmt, ap);
  va_end(ap);
}

void diag_note(Diags *d, SrcLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, "note", fmt, ap);
  va_end(ap);
}

void diag_plain(Diags *d, const char *where, const char *fmt, ...) {
  if (quiet(d, "error")) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(d->out, "%s: error: ", where);
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  va_end(ap);
}
