/*
 * plot.c — `dlc plot METRICS.csv -o curves.svg|png`: loss and accuracy
 * curves of a training run.
 *
 * The table is read from the CSV `dlc train --metrics` writes (or built
 * by the REPL from its history) and sorted into series: each column whose
 * name holds "loss" is a curve of the loss panel, each holding "acc" one
 * of the accuracy panel; without either, every numeric column that is
 * not an x column goes to a single panel.  With an "epoch" column the x
 * axis is the epoch: rows with batch 0 sum up an epoch and are drawn at
 * x = epoch with markers, the other rows are batches b of epoch e drawn
 * at e - 1 + b / B (B the largest batch number) as a thin, lighter line
 * underneath.  A column with no epoch rows draws its batches as the main
 * line.  Without "epoch", x is "step" or else the row number.  NaN and
 * infinite values are left out of a curve (validation columns are NaN in
 * batch rows).
 *
 * Each panel gets "nice" ticks (1, 2 or 5 times a power of ten; whole
 * epochs on the x axis), light grid lines, a frame, a title, axis labels
 * and a legend in whichever right-hand corner covers fewer points.  The
 * drawing goes through canvas.h once, so the SVG and the PNG show the
 * same picture; the PNG is encoded by runtime/png.c.
 */
#include "driver/plot.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "driver/canvas.h"

/* --- the table ------------------------------------------------------------------ */

static char *trimmed_copy(const char *s, size_t n) {
  while (n && (*s == ' ' || *s == '\t')) s++, n--;
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
  char *c = rt_malloc(n + 1);
  if (c) memcpy(c, s, n), c[n] = 0;
  return c;
}

RtStatus plot_table_init(PlotTable *t, const char *header, RtError *err) {
  memset(t, 0, sizeof *t);
  for (const char *p = header; *p; p++)
    if ((*p < ' ' || *p > '~') && *p != '\t' && *p != '\r' && *p != '\n')
      return rt_fail(err, RT_ERR_FORMAT, "the first line is not a CSV header (it holds a byte 0x%02x)",
                     (unsigned char)*p);
  for (const char *p = header;; p++) {
    size_t n = strcspn(p, ",");
    if (t->ncols == PLOT_MAX_COLS)
      return plot_table_free(t), rt_fail(err, RT_ERR_FORMAT, "more than %d columns", PLOT_MAX_COLS);
    if (!(t->names[t->ncols++] = trimmed_copy(p, n)))
      return plot_table_free(t), rt_fail(err, RT_ERR_NOMEM, "out of memory");
    p += n;
    if (!*p) break;
  }
  if (t->ncols == 1 && !t->names[0][0])
    return plot_table_free(t), rt_fail(err, RT_ERR_FORMAT, "an empty header line: expected column names");
  return RT_OK;
}

RtStatus plot_table_add(PlotTable *t, const double *row, RtError *err) {
  if (t->nrows == t->cap) {
    int64_t ncap = t->cap ? t->cap * 2 : 64;
    double *v = ncap < INT64_MAX / 8 / t->ncols ? rt_realloc(t->vals, sizeof *v * (size_t)(ncap * t->ncols)) : NULL;
    if (!v) return rt_fail(err, RT_ERR_NOMEM, "out of memory after %lld rows", (long long)t->nrows);
    t->vals = v, t->cap = ncap;
  }
  memcpy(t->vals + t->nrows * t->ncols, row, sizeof *row * (size_t)t->ncols);
  t->nrows++;
  return RT_OK;
}

void plot_table_free(PlotTable *t) {
  for (int i = 0; i < t->ncols; i++) free(t->names[i]);
  free(t->vals);
  memset(t, 0, sizeof *t);
}

/* One data line into row; returns the number of fields. */
static int split_row(char *line, double *row, int ncols) {
  int k = 0;
  for (char *p = line;; p++) {
    size_t n = strcspn(p, ",");
    char save = p[n], *end;
    p[n] = 0;
    if (k < ncols) {
      double v = strtod(p, &end);
      int converted = end != p;
      while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
      row[k] = !converted || *end ? NAN : v;
    }
    k++;
    p[n] = save;
    p += n;
    if (!*p) return k;
  }
}

static int blank(const char *s) {
  return s[strspn(s, " \t\r\n")] == 0;
}

RtStatus plot_read_csv(const char *path, PlotTable *t, RtError *err) {
  memset(t, 0, sizeof *t);
  FILE *f = fopen(path, "rb");
  if (!f) return rt_fail(err, RT_ERR_IO, "%s: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  RtStatus st = RT_OK;
  if (getline(&line, &cap, f) < 0) st = rt_fail(err, RT_ERR_FORMAT, "%s: empty file: expected a header line", path);
  else if (plot_table_init(t, line, err)) st = rt_fail(err, RT_ERR_FORMAT, "%s:1: %.400s", path, err->msg);
  double row[PLOT_MAX_COLS];
  for (int64_t ln = 2; !st && getline(&line, &cap, f) >= 0; ln++) {
    if (blank(line)) continue;
    int k = split_row(line, row, t->ncols);
    if (k != t->ncols)
      st = rt_fail(err, RT_ERR_FORMAT, "%s:%lld: %d fields, expected %d as in the header", path, (long long)ln, k,
                   t->ncols);
    else if (plot_table_add(t, row, err)) st = RT_ERR_NOMEM;
  }
  if (!st && ferror(f)) st = rt_fail(err, RT_ERR_IO, "%s: read error", path);
  free(line);
  fclose(f);
  if (st) plot_table_free(t);
  return st;
}

/* --- series ---------------------------------------------------------------------- */

#define MAX_SERIES 16

typedef struct Series {
  char name[80];
  double *x, *y; /* malloc'd */
  int n;
  uint32_t rgb;
  int faint;     /* batches under an epoch curve */
  int markers;
} Series;

typedef struct Panel {
  const char *title, *ylabel;
  Series s[MAX_SERIES];
  int ns, ncols; /* series, and columns (one colour each) */
} Panel;

typedef struct XSpec {
  int epoch, batch, step; /* column indices, -1 when absent */
  double batches;         /* largest batch number */
} XSpec;

static int find_col(const PlotTable *t, const char *name) {
  for (int i = 0; i < t->ncols; i++)
    if (!strcmp(t->names[i], name)) return i;
  return -1;
}

static double cell(const PlotTable *t, int64_t r, int c) { return t->vals[r * t->ncols + c]; }

static XSpec x_spec(const PlotTable *t) {
  XSpec x = {find_col(t, "epoch"), find_col(t, "batch"), find_col(t, "step"), 1};
  if (x.epoch < 0) x.batch = -1;
  for (int64_t r = 0; x.batch >= 0 && r < t->nrows; r++)
    if (cell(t, r, x.batch) > x.batches) x.batches = cell(t, r, x.batch);
  return x;
}

static int is_x_col(const XSpec *x, int c) { return c == x->epoch || c == x->batch || c == x->step; }

/* 1 for an epoch row, 0 for a batch row (every row is an epoch row
 * without a batch column). */
static int epoch_row(const PlotTable *t, const XSpec *x, int64_t r) { return x->batch < 0 || cell(t, r, x->batch) == 0; }

static double x_of(const PlotTable *t, const XSpec *x, int64_t r) {
  if (x->epoch < 0) return x->step >= 0 ? cell(t, r, x->step) : (double)(r + 1);
  double e = cell(t, r, x->epoch);
  return epoch_row(t, x, r) ? e : e - 1 + cell(t, r, x->batch) / x->batches;
}

static const uint32_t palette[] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf};

static uint32_t lighter(uint32_t rgb) {
  uint32_t out = 0;
  for (int k = 0; k < 3; k++) {
    uint32_t v = (rgb >> (8 * k)) & 0xff;
    out |= (v + (255 - v) * 3 / 5) << (8 * k);
  }
  return out;
}

/* The finite points of column c in rows of one kind (epoch rows or not). */
static int collect(const PlotTable *t, const XSpec *x, int c, int epochs, Series *s) {
  s->x = rt_malloc(sizeof(double) * (size_t)(t->nrows ? t->nrows : 1));
  s->y = rt_malloc(sizeof(double) * (size_t)(t->nrows ? t->nrows : 1));
  if (!s->x || !s->y) return -1;
  s->n = 0;
  for (int64_t r = 0; r < t->nrows; r++) {
    double xv = x_of(t, x, r), yv = cell(t, r, c);
    if (epoch_row(t, x, r) != epochs || !isfinite(xv) || !isfinite(yv)) continue;
    s->x[s->n] = xv, s->y[s->n] = yv, s->n++;
  }
  return 0;
}

static void series_free(Series *s) {
  free(s->x), free(s->y);
  s->x = s->y = NULL;
}

/* Adds column c's curves to p: the batch line (faint under epoch points,
 * or the main line without them) and the epoch line. */
static int add_column(Panel *p, const PlotTable *t, const XSpec *x, int c) {
  Series batch = {0}, epoch = {0};
  if (collect(t, x, c, 0, &batch) || collect(t, x, c, 1, &epoch)) return series_free(&batch), series_free(&epoch), -1;
  uint32_t rgb = palette[p->ncols++ % (int)(sizeof palette / sizeof palette[0])];
  Series *keep[2] = {&batch, &epoch};
  for (int k = 0; k < 2; k++) {
    Series *s = keep[k];
    if (!s->n || p->ns == MAX_SERIES) {
      series_free(s);
      continue;
    }
    s->faint = k == 0 && epoch.n > 0;
    s->markers = k == 1 && s->n <= 60; /* dots on a few epochs, not on thousands of rows */
    s->rgb = s->faint ? lighter(rgb) : rgb;
    snprintf(s->name, sizeof s->name, "%s%s", t->names[c], s->faint ? " (batches)" : "");
    p->s[p->ns++] = *s;
  }
  return 0;
}

/* Fills the panels; returns how many have curves, -1 when out of memory. */
static int make_panels(const PlotTable *t, Panel *loss, Panel *acc) {
  XSpec x = x_spec(t);
  int any = 0;
  *loss = (Panel){.title = "loss", .ylabel = "loss"};
  *acc = (Panel){.title = "accuracy", .ylabel = "accuracy"};
  for (int c = 0; c < t->ncols; c++) {
    if (is_x_col(&x, c)) continue;
    int to_loss = strstr(t->names[c], "loss") != NULL, to_acc = !to_loss && strstr(t->names[c], "acc") != NULL;
    any |= to_loss || to_acc;
    if (to_loss && add_column(loss, t, &x, c)) return -1;
    if (to_acc && add_column(acc, t, &x, c)) return -1;
  }
  if (!any) { /* a table of other numbers: every column in one panel */
    loss->title = "values", loss->ylabel = "value";
    for (int c = 0; c < t->ncols; c++)
      if (!is_x_col(&x, c) && add_column(loss, t, &x, c)) return -1;
  }
  return (loss->ns > 0) + (acc->ns > 0);
}

static void panel_free(Panel *p) {
  for (int i = 0; i < p->ns; i++) series_free(&p->s[i]);
  p->ns = 0;
}

/* --- axes ------------------------------------------------------------------------ */

typedef struct Axis {
  double lo, hi, step;
} Axis;

/* Widens [lo, hi] to multiples of a step of 1, 2 or 5 times a power of
 * ten giving about five intervals (at least 1 when whole). */
static Axis nice_axis(double lo, double hi, int whole) {
  if (!(hi > lo)) lo -= lo == 0 ? 1 : fabs(lo) * 0.1, hi += hi == 0 ? 1 : fabs(hi) * 0.1;
  double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), norm = raw / mag;
  double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  if (whole && step < 1) step = 1;
  return (Axis){floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step};
}

static void tick_label(char *buf, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-6) v = 0;
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (fabs(v) >= 1e6 || dec > 6) snprintf(buf, n, "%.3g", v);
  else snprintf(buf, n, "%.*f", dec, v);
}

static void panel_ranges(const Panel *p, int whole_x, Axis *ax, Axis *ay) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (int i = 0; i < p->ns; i++)
    for (int k = 0; k < p->s[i].n; k++) {
      x0 = fmin(x0, p->s[i].x[k]), x1 = fmax(x1, p->s[i].x[k]);
      y0 = fmin(y0, p->s[i].y[k]), y1 = fmax(y1, p->s[i].y[k]);
    }
  *ax = nice_axis(x0, x1, whole_x);
  *ay = nice_axis(y0, y1, 0);
}

/* --- drawing ----------------------------------------------------------------------- */

typedef struct Frame {
  double x, y, w, h; /* the plot area, pixels */
  Axis ax, ay;
} Frame;

static double fx(const Frame *f, double v) { return f->x + (v - f->ax.lo) / (f->ax.hi - f->ax.lo) * f->w; }
static double fy(const Frame *f, double v) { return f->y + f->h - (v - f->ay.lo) / (f->ay.hi - f->ay.lo) * f->h; }

#define INK 0x222222
#define GRID 0xe4e4e4

static void draw_axes(Canvas *c, const Frame *f, const char *xlabel, const char *ylabel) {
  char buf[32];
  for (double v = f->ax.lo; v <= f->ax.hi + f->ax.step * 1e-6; v += f->ax.step) {
    double px = fx(f, v);
    canvas_line(c, px, f->y, px, f->y + f->h, GRID, 1);
    canvas_line(c, px, f->y + f->h, px, f->y + f->h + 5, INK, 1);
    tick_label(buf, sizeof buf, v, f->ax.step);
    canvas_text(c, px, f->y + f->h + 17, buf, CANVAS_CENTER, 1, 0, INK);
  }
  for (double v = f->ay.lo; v <= f->ay.hi + f->ay.step * 1e-6; v += f->ay.step) {
    double py = fy(f, v);
    canvas_line(c, f->x, py, f->x + f->w, py, GRID, 1);
    canvas_line(c, f->x - 5, py, f->x, py, INK, 1);
    tick_label(buf, sizeof buf, v, f->ay.step);
    canvas_text(c, f->x - 8, py + 3.5, buf, CANVAS_RIGHT, 1, 0, INK);
  }
  double xs[5] = {f->x, f->x + f->w, f->x + f->w, f->x, f->x}, ys[5] = {f->y, f->y, f->y + f->h, f->y + f->h, f->y};
  canvas_polyline(c, xs, ys, 5, INK, 1, NULL);
  canvas_text(c, f->x + f->w / 2, f->y + f->h + 38, xlabel, CANVAS_CENTER, 1, 0, INK);
  canvas_text(c, f->x - 52, f->y + f->h / 2, ylabel, CANVAS_CENTER, 1, 1, INK);
}

static void draw_series(Canvas *c, const Frame *f, const Series *s) {
  double *px = rt_malloc(sizeof(double) * (size_t)s->n), *py = rt_malloc(sizeof(double) * (size_t)s->n);
  if (px && py) {
    for (int k = 0; k < s->n; k++) px[k] = fx(f, s->x[k]), py[k] = fy(f, s->y[k]);
    canvas_polyline(c, px, py, s->n, s->rgb, s->faint ? 1 : 2, s->name);
    for (int k = 0; k < s->n && s->markers; k++) canvas_disc(c, px[k], py[k], 3, s->rgb);
  } else {
    c->failed = 1;
  }
  free(px), free(py);
}

/* Points of the panel inside a box: where a legend would hide data. */
static int covered(const Panel *p, const Frame *f, double x0, double y0, double w, double h) {
  int n = 0;
  for (int i = 0; i < p->ns; i++)
    for (int k = 0; k < p->s[i].n; k++) {
      double px = fx(f, p->s[i].x[k]), py = fy(f, p->s[i].y[k]);
      n += px >= x0 && px <= x0 + w && py >= y0 && py <= y0 + h;
    }
  return n;
}

static void draw_legend(Canvas *c, const Frame *f, const Panel *p) {
  double w = 0, lh = 14, h = lh * p->ns + 8;
  for (int i = 0; i < p->ns; i++) w = fmax(w, canvas_text_width(p->s[i].name, 1));
  w += 40;
  double x0 = f->x + f->w - w - 8, top = f->y + 8, bottom = f->y + f->h - h - 8;
  double y0 = covered(p, f, x0, bottom, w, h) < covered(p, f, x0, top, w, h) ? bottom : top;
  canvas_rect(c, x0, y0, w, h, 0xaaaaaa);
  canvas_rect(c, x0 + 1, y0 + 1, w - 2, h - 2, 0xffffff);
  for (int i = 0; i < p->ns; i++) {
    double ly = y0 + 4 + lh * i + lh / 2;
    canvas_line(c, x0 + 6, ly, x0 + 26, ly, p->s[i].rgb, p->s[i].faint ? 1 : 2);
    canvas_text(c, x0 + 32, ly + 3.5, p->s[i].name, CANVAS_LEFT, 1, 0, INK);
  }
}

#define PANEL_W 520
#define PANEL_H 400

static void draw_panel(Canvas *c, const Panel *p, double left, const char *xlabel, int whole_x) {
  Frame f = {left + 80, 44, PANEL_W - 80 - 20, PANEL_H - 44 - 56};
  panel_ranges(p, whole_x, &f.ax, &f.ay);
  canvas_text(c, f.x + f.w / 2, 28, p->title, CANVAS_CENTER, 2, 0, INK);
  draw_axes(c, &f, xlabel, p->ylabel);
  for (int pass = 0; pass < 2; pass++) /* faint batch lines under the epoch curves */
    for (int i = 0; i < p->ns; i++)
      if (p->s[i].faint == !pass) draw_series(c, &f, &p->s[i]);
  draw_legend(c, &f, p);
}

/* --- output ------------------------------------------------------------------------ */

static const char *extension(const char *path) {
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  return dot && (!slash || dot > slash) ? dot + 1 : "";
}

/* The panels with curves side by side. */
static void draw_all(Canvas *c, const Panel *panels, const PlotTable *t) {
  XSpec x = x_spec(t);
  const char *xlabel = x.epoch >= 0 ? "epoch" : x.step >= 0 ? "step" : "row";
  int k = 0;
  for (int i = 0; i < 2; i++)
    if (panels[i].ns) draw_panel(c, &panels[i], PANEL_W * k++, xlabel, 1);
}

static RtStatus write_svg(const char *path, Panel *panels, int np, const PlotTable *t, RtError *err) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return rt_fail(err, RT_ERR_NOMEM, "out of memory");
  Canvas c;
  canvas_svg(&c, PANEL_W * np, PANEL_H, f);
  draw_all(&c, panels, t);
  canvas_end(&c);
  RtStatus st = fclose(f) || c.failed ? rt_fail(err, RT_ERR_NOMEM, "out of memory") : RT_OK;
  const void *chunks[1] = {buf};
  if (!st) st = rt_write_file_atomic(path, chunks, &len, 1, err);
  free(buf);
  return st;
}

static RtStatus write_png(const char *path, Panel *panels, int np, const PlotTable *t, RtError *err) {
  Canvas c;
  if (canvas_raster(&c, PANEL_W * np, PANEL_H)) return rt_fail(err, RT_ERR_NOMEM, "out of memory");
  draw_all(&c, panels, t);
  RtStatus st = c.failed ? rt_fail(err, RT_ERR_NOMEM, "out of memory") : rt_png_write(path, c.px, c.w, c.h, 3, err);
  canvas_end(&c);
  return st;
}

RtStatus plot_write(const PlotTable *t, const char *path, RtError *err) {
  const char *ext = extension(path);
  int svg = !strcasecmp(ext, "svg");
  if (!svg && strcasecmp(ext, "png"))
    return rt_fail(err, RT_ERR_FORMAT, "%s: unknown image format '.%s': expected a .svg or .png file name", path, ext);
  Panel panels[2];
  int np = make_panels(t, &panels[0], &panels[1]);
  RtStatus st = RT_OK;
  if (np < 0) st = rt_fail(err, RT_ERR_NOMEM, "out of memory");
  else if (np == 0)
    st = rt_fail(err, RT_ERR_FORMAT, "nothing to plot: no column holds a number (a loss, an accuracy or another "
                 "value besides epoch, batch and step)");
  else st = svg ? write_svg(path, panels, np, t, err) : write_png(path, panels, np, t, err);
  panel_free(&panels[0]), panel_free(&panels[1]);
  return st;
}
