/*
 * progress.c — the live progress line of a training epoch, and rt_now.
 *
 * On a terminal the line is redrawn in place: "\r", the new text, then
 * spaces over whatever the previous (longer) line left, so no terminal
 * escape is needed to erase.  Colour, when allowed, is only SGR codes
 * around the label and the bar; they are kept out of the width count.
 * Redraws are throttled to one per 0.1 s of the progress clock (the final
 * batch is always drawn), which keeps a fast epoch from spending its time
 * in the terminal.  The line is built to stay narrower than the terminal
 * (TIOCGWINSZ on the stream, else $COLUMNS, else 80), because a line that
 * wraps cannot be redrawn with \r: the bar takes what the figures leave, up
 * to 30 cells, and disappears below 8; on a very narrow terminal the label
 * and then the end of the figures are cut.
 *
 * Not on a terminal (a log file, a pipe, CI) nothing at all is printed:
 * per-batch lines would bury the per-epoch summaries the caller prints.
 *
 * Time comes from a replaceable clock, rt_now (CLOCK_MONOTONIC) by default,
 * so tests drive the throttle, rate and ETA with a fake one.  The rate is
 * batches_done * batch_size / elapsed, which counts a partial last batch
 * as full: the error is at most one batch over the epoch.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/rt.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#define PROGRESS_INTERVAL 0.1   /* seconds between redraws */
#define BAR_MAX 30
#define BAR_MIN 8
#define BAR_SLACK 6      /* cells left at the first draw for figures to grow */

#define SGR_BOLD "\033[1m"
#define SGR_GREEN "\033[32m"
#define SGR_RESET "\033[0m"

double rt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double default_clock(void *ctx) {
  (void)ctx;
  return rt_now();
}

/* NO_COLOR (https://no-color.org: set and not empty) or TERM=dumb, or no
 * TERM at all, turn colour off. */
static int colour_allowed(void) {
  const char *no = getenv("NO_COLOR"), *term = getenv("TERM");
  if (no && *no) return 0;
  return term && *term && strcmp(term, "dumb") != 0;
}

static int terminal_columns(FILE *out) {
  struct winsize ws;
  int fd = fileno(out);
  if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  const char *env = getenv("COLUMNS");
  int n = env ? atoi(env) : 0;
  return n > 0 ? n : 80;
}

void rt_progress_begin(RtProgress *p, FILE *out, const char *label,
                       int64_t total_batches, int64_t batch_size, int tty) {
  memset(p, 0, sizeof *p);
  p->out = out;
  snprintf(p->label, sizeof p->label, "%s", label ? label : "");
  for (char *c = p->label; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
  p->total = total_batches;
  p->batch_size = batch_size;
  p->tty = tty && out;
  p->color = p->tty && colour_allowed();
  p->columns = p->tty ? terminal_columns(out) : 80;
  p->now = default_clock;
  p->start = p->now(p->now_ctx);
}

void rt_progress_set_clock(RtProgress *p, double (*now)(void *ctx), void *ctx) {
  p->now = now ? now : default_clock;
  p->now_ctx = ctx;
  p->start = p->now(p->now_ctx);
}

/* --- building the line ------------------------------------------------------ */

typedef struct Line {
  char buf[512];
  size_t len;
  int visible;   /* characters that take a cell */
  int colour;
} Line;

static void line_text(Line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void line_text(Line *l, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(l->buf + l->len, sizeof l->buf - l->len, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof l->buf - l->len) n = (int)(sizeof l->buf - l->len - 1);
  l->len += (size_t)n;
  l->visible += n;
}

static void line_sgr(Line *l, const char *code) {
  if (!l->colour) return;
  size_t n = strlen(code);
  if (n >= sizeof l->buf - l->len) return;
  memcpy(l->buf + l->len, code, n + 1);
  l->len += n;
}

/* mm:ss, or h:mm:ss from an hour on; "--:--" when unknown. */
static void format_eta(char *buf, size_t len, double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) {
    snprintf(buf, len, "--:--");
    return;
  }
  long s = lround(seconds);
  if (s >= 3600)
    snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(buf, len, "%02ld:%02ld", s / 60, s % 60);
}

/* The figures after the bar: "12/469  5120 img/s  loss 0.4321  acc 84.2%  ETA 00:12". */
static void figures(const RtProgress *p, double elapsed, double loss, double acc,
                    char *buf, size_t len) {
  char rate[32] = "-", eta[32];
  double remaining = -1;
  if (elapsed > 0 && p->done > 0) {
    snprintf(rate, sizeof rate, "%.0f", (double)(p->done * p->batch_size) / elapsed);
    remaining = elapsed / (double)p->done * (double)(p->total - p->done);
  }
  format_eta(eta, sizeof eta, remaining);
  int at = snprintf(buf, len, "%lld/%lld  %s img/s  loss %.4f", (long long)p->done,
                    (long long)p->total, rate, loss);
  if (at > 0 && (size_t)at < len && !isnan(acc))
    at += snprintf(buf + at, len - (size_t)at, "  acc %.1f%%", acc * 100);
  if (at > 0 && (size_t)at < len) snprintf(buf + at, len - (size_t)at, "  ETA %s", eta);
}

static void draw_bar(Line *l, const RtProgress *p, int width) {
  int64_t done = p->done < p->total ? p->done : p->total;
  int filled = p->total > 0 ? (int)(done * width / p->total) : 0;
  line_text(l, "[");
  line_sgr(l, SGR_GREEN);
  for (int i = 0; i < filled; i++)
    line_text(l, "%c", i == filled - 1 && filled < width ? '>' : '=');
  line_sgr(l, SGR_RESET);
  for (int i = filled; i < width; i++) line_text(l, ".");
  line_text(l, "] ");
}

/* Lays out label, bar and figures in columns - 1 cells.  The bar's width
 * is chosen at the first draw, with some slack, and after that only
 * shrinks, so it does not jitter as the figures change length (the line
 * padding covers what a shorter line leaves); when the figures do not fit,
 * the label goes and then the figures are cut. */
static void build_line(Line *l, RtProgress *p, double elapsed, double loss,
                       double acc) {
  char figs[256];
  figures(p, elapsed, loss, acc, figs, sizeof figs);
  int avail = p->columns - 1, flen = (int)strlen(figs);
  if (flen > avail) figs[flen = avail > 0 ? avail : 0] = 0;
  int label_len = (int)strlen(p->label);
  if (label_len > avail - flen - 1) label_len = avail - flen - 1;
  int room = avail - flen - (label_len > 0 ? label_len + 1 : 0) - 3;
  if (!p->drawn) room -= BAR_SLACK;
  if (!p->drawn || room < p->bar) p->bar = room > BAR_MAX ? BAR_MAX : room;
  if (p->bar < BAR_MIN) p->bar = 0;
  l->colour = p->color;
  if (label_len > 0) {
    line_sgr(l, SGR_BOLD);
    line_text(l, "%.*s", label_len, p->label);
    line_sgr(l, SGR_RESET);
    line_text(l, " ");
  }
  if (p->bar > 0) draw_bar(l, p, p->bar);
  line_text(l, "%s", figs);
}

static void draw(RtProgress *p, double t, double loss, double acc) {
  Line l = {.len = 0};
  build_line(&l, p, t - p->start, loss, acc);
  int pad = p->drawn && p->width > l.visible ? p->width - l.visible : 0;
  fprintf(p->out, "\r%s%*s", l.buf, pad, "");
  fflush(p->out);
  p->drawn = 1;
  p->width = l.visible;
  p->last_draw = t;
}

void rt_progress_update(RtProgress *p, int64_t batches_done, double running_loss,
                        double running_acc) {
  if (!p->tty) return;
  p->done = batches_done;
  double t = p->now(p->now_ctx);
  int last = batches_done >= p->total;
  if (p->drawn && !last && t - p->last_draw < PROGRESS_INTERVAL) return;
  draw(p, t, running_loss, running_acc);
}

void rt_progress_end(RtProgress *p) {
  if (!p->tty || !p->drawn) return;
  fprintf(p->out, "\r%*s\r", p->width, "");
  fflush(p->out);
  p->drawn = 0;
  p->width = 0;
}
