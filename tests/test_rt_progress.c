/*
 * test_rt_progress.c — the live progress line, driven by a fake clock and
 * written to a memory stream: what a terminal gets (\r redraws, figures,
 * ETA, the throttle, colour rules, width, the final erase) and that a
 * non-terminal gets nothing.  No assertion depends on the real clock.
 */
#include <criterion/criterion.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

typedef struct FakeClock {
  double t;
} FakeClock;

static double fake_now(void *ctx) { return ((FakeClock *)ctx)->t; }

typedef struct Capture {
  FILE *f;
  char *buf;
  size_t len;
} Capture;

static void capture_open(Capture *c) {
  c->buf = NULL;
  c->len = 0;
  c->f = open_memstream(&c->buf, &c->len);
  cr_assert_not_null(c->f);
}

/* The text written so far (flushed). */
static const char *captured(Capture *c) {
  fflush(c->f);
  return c->buf ? c->buf : "";
}

static void capture_close(Capture *c) {
  fclose(c->f);
  free(c->buf);
}

static void start(RtProgress *p, Capture *c, FakeClock *clk, int tty) {
  capture_open(c);
  clk->t = 100;
  rt_progress_begin(p, c->f, "train", 10, 32, tty);
  rt_progress_set_clock(p, fake_now, clk);
}

Test(rt_progress, terminal_line_has_the_figures) {
  setenv("NO_COLOR", "1", 1);
  RtProgress p;
  Capture c;
  FakeClock clk;
  start(&p, &c, &clk, 1);
  clk.t = 101;
  rt_progress_update(&p, 1, 0.5, 0.25);
  const char *out = captured(&c);
  cr_expect_eq(out[0], '\r');
  cr_expect(strstr(out, "train [") != NULL, "%s", out);
  cr_expect(strstr(out, "1/10  32 img/s  loss 0.5000  acc 25.0%  ETA 00:09") != NULL,
            "%s", out);
  cr_expect(strchr(out, '\033') == NULL, "colour despite NO_COLOR: %s", out);
  rt_progress_end(&p);
  capture_close(&c);
}

Test(rt_progress, redraws_at_most_ten_times_a_second) {
  setenv("NO_COLOR", "1", 1);
  RtProgress p;
  Capture c;
  FakeClock clk;
  start(&p, &c, &clk, 1);
  clk.t = 101;
  rt_progress_update(&p, 1, 1, 0.5);
  size_t after_first = strlen(captured(&c));
  clk.t = 101.05;
  rt_progress_update(&p, 2, 1, 0.5);
  cr_expect_eq(strlen(captured(&c)), after_first, "redrawn within 0.1 s");
  clk.t = 101.2;
  rt_progress_update(&p, 3, 1, 0.5);
  cr_expect(strstr(captured(&c), "3/10") != NULL);
  clk.t = 101.21;
  rt_progress_update(&p, 10, 1, 0.5);   /* the last batch is always drawn */
  const char *out = captured(&c);
  cr_expect(strstr(out, "10/10") != NULL, "%s", out);
  const char *bar = strrchr(out, '['), *bar_end = strrchr(out, ']');
  cr_assert(bar && bar_end && bar < bar_end, "no bar: %s", out);
  cr_expect_eq(strspn(bar + 1, "="), (size_t)(bar_end - bar - 1), "not a full bar: %s", bar);
  cr_expect_eq(strchr(out, ']') - strchr(out, '['), bar_end - bar,
               "the bar width of the first draw is kept: %s", out);
  cr_expect(strstr(out, "ETA 00:00") != NULL, "%s", out);
  capture_close(&c);
}

Test(rt_progress, end_erases_the_line) {
  setenv("NO_COLOR", "1", 1);
  RtProgress p;
  Capture c;
  FakeClock clk;
  start(&p, &c, &clk, 1);
  clk.t = 102;
  rt_progress_update(&p, 5, 0.25, NAN);
  size_t drawn = strlen(captured(&c));
  cr_expect(strstr(captured(&c), "acc") == NULL, "NaN accuracy is hidden");
  rt_progress_end(&p);
  const char *out = captured(&c);
  size_t width = drawn - 1;                 /* the line without its \r */
  cr_assert_eq(strlen(out), drawn + width + 2);
  cr_expect_eq(out[drawn], '\r');
  for (size_t i = 0; i < width; i++) cr_expect_eq(out[drawn + 1 + i], ' ');
  cr_expect_eq(out[drawn + width + 1], '\r');
  capture_close(&c);
}

Test(rt_progress, not_a_terminal_prints_nothing) {
  RtProgress p;
  Capture c;
  FakeClock clk;
  start(&p, &c, &clk, 0);
  for (int i = 1; i <= 10; i++) {
    clk.t += 1;
    rt_progress_update(&p, i, 0.5, 0.5);
  }
  rt_progress_end(&p);
  cr_expect_eq(strlen(captured(&c)), 0, "%s", captured(&c));
  capture_close(&c);
}

Test(rt_progress, colour_rules) {
  RtProgress p;
  Capture c;
  FakeClock clk;
  unsetenv("NO_COLOR");
  setenv("TERM", "xterm-256color", 1);
  start(&p, &c, &clk, 1);
  clk.t = 101;
  rt_progress_update(&p, 1, 0.5, 0.5);
  cr_expect(strstr(captured(&c), "\033[") != NULL, "no colour on a terminal");
  capture_close(&c);
  setenv("TERM", "dumb", 1);
  start(&p, &c, &clk, 1);
  clk.t = 101;
  rt_progress_update(&p, 1, 0.5, 0.5);
  cr_expect(strchr(captured(&c), '\033') == NULL, "colour with TERM=dumb");
  capture_close(&c);
  setenv("TERM", "xterm", 1);
  setenv("NO_COLOR", "", 1);   /* empty does not count */
  start(&p, &c, &clk, 1);
  clk.t = 101;
  rt_progress_update(&p, 1, 0.5, 0.5);
  cr_expect(strchr(captured(&c), '\033') != NULL, "empty NO_COLOR turned colour off");
  capture_close(&c);
}

/* Each redraw (the text between two \r) fits in COLUMNS - 1. */
Test(rt_progress, lines_fit_the_terminal) {
  setenv("NO_COLOR", "1", 1);
  setenv("COLUMNS", "60", 1);
  RtProgress p;
  Capture c;
  FakeClock clk;
  capture_open(&c);
  clk.t = 0;
  rt_progress_begin(&p, c.f, "a long label for the epoch", 100000, 256, 1);
  rt_progress_set_clock(&p, fake_now, &clk);
  for (int i = 1; i <= 5; i++) {
    clk.t += 3725.0 / 5;
    rt_progress_update(&p, i * 3, 123.456, 0.5);
  }
  const char *out = captured(&c);
  for (const char *s = out; *s; ) {
    const char *e = strchr(s + 1, '\r');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    cr_expect_leq(n - 1, 59, "a line of %zu characters: %.*s", n - 1, (int)n, s);
    s += n;
  }
  capture_close(&c);
}

Test(rt_progress, eta_in_hours) {
  setenv("NO_COLOR", "1", 1);
  RtProgress p;
  Capture c;
  FakeClock clk;
  start(&p, &c, &clk, 1);
  clk.t += 3725;
  rt_progress_update(&p, 5, 0.5, 0.5);
  cr_expect(strstr(captured(&c), "ETA 1:02:05") != NULL, "%s", captured(&c));
  capture_close(&c);
}

Test(rt_progress, monotonic_clock) {
  double a = rt_now(), b = rt_now();
  cr_expect_geq(b, a);
}
