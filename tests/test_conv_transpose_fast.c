/*
 * test_conv_transpose_fast.c — conv_transpose2d with unit strides and one
 * group, in its two forms (lower_conv.c; sched_ct.c):
 *   - rows of taps (transpose_rows): row sums over the convolution's
 *     output rows for each result channel and kernel row, in register
 *     tiles, added into the result at whole-row offsets;
 *   - taps (transpose_taps), where its products on the rows' zero columns
 *     would cost more than gathering: one row of products per tap (c, kh,
 *     kw) over the convolution's output positions, in register tiles, then
 *     each element of the result gathers its taps (in lanes, several
 *     channels at once).
 * Checked against the interpreter on the kernel-IR evaluator, the C
 * backend (vector and scalar forms) and the JIT (on pools of 2 and 3
 * threads bit for bit as on one), at LeNet-5's shape, planes narrower than
 * a vector, windows of one row or one column, dilation, padding (cropped
 * afterwards) and rows that no tile shape divides; the grouped form, which
 * keeps the gather, beside them; and the lowered nests without tiles.  The
 * kernel's operations (the kernel walk's count, dlc check's) stay within
 * a bound of the transpose's real products, 2 N C O oh ow kh kw: the
 * gather over every position of the uncropped result computed about twice
 * as many at LeNet-5's shape, the rows of taps 1.44 times.
 *
 * Tolerance: each element sums its init, then per kernel row kh the sum
 * over (o, kw) of its terms (rows) or per tap (kh, kw) the sum over o
 * (taps), each an fma or an add: a float32 sum of at most K terms in some
 * order, within the bound of bound_case.h.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/bound_case.h"
#include "tests/handkit.h"

/* src (one conv_transpose2d, K terms per output) scheduled with tiles
 * (tiles 1: the dump has them; 2: it has none, as for groups) or without
 * (0) on keval, C (vectors, scalars) and the JIT, each element within the
 * summation bound of the interpreter's; the JIT on 2 and 3 threads gives
 * the bits it gives on one.  Returns the kernel's FLOP per example. */
static void expect_transpose(const char *src, int64_t maxn, int64_t n, int64_t K, int tiles) {
  BoundCase t;
  bc_init(&t, src, maxn, n, K);
  Program p;
  bc_program(&t, &p, tiles != 0);
  char *text = hk_dump(&p);
  if (tiles == 1)
    cr_expect(strstr(text, "= fma(") && !strstr(text, "temp panels"), "no register tiles reading B in place for\n%s\n%s", src, text);
  else
    cr_expect(!strstr(text, "fma("), "tiles under --no-tile for\n%s\n%s", src, text);
  free(text);
  bc_expect_backends(&t, &p, src);
  kir_program_free(&p);
  bc_free(&t);
}

/* The forward's FLOP per example by dlc check (the kernel walk's count of
 * the scheduled kernels as they run). */
static double check_flops(const char *src) {
  const char *dir = tu_scratch_dir();
  char path[600], out[600], cmd[2000];
  snprintf(path, sizeof path, "%s/t.dl", dir);
  snprintf(out, sizeof out, "%s/out.txt", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(src, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s check %s >%s 2>&1", DLC_EXE, path, out);
  cr_assert_eq(system(cmd), 0, "%s", cmd);
  char *text = tu_read_file(out, NULL);
  cr_assert_not_null(text);
  const char *at = strstr(text, "forward: ");
  cr_assert_not_null(at, "%s", text);
  char *end;
  double v = strtod(at + strlen("forward: "), &end);
  if (*end == ' ' && end[1] == 'k') v *= 1e3;
  else if (*end == ' ' && end[1] == 'M') v *= 1e6;
  free(text);
  unlink(out);
  unlink(path);
  rmdir(dir);
  return v;
}

#define MODEL(x, layer) "model t\ninput x: f32[N, " x "]\noutput y = " layer "\n"

Test(conv_transpose_fast, rows_of_taps_match_the_interpreter, .timeout = 900) {
  /* a plane of 1 x 2 (4 positions of rows 4 wide, the row sums 16 wide) */
  expect_transpose(MODEL("3, 1, 2", "conv_transpose2d(x, 4, 3)"), 3, 2, 27, 1);
  /* a window of one column (no zeros in front of the rows) and one of one row */
  expect_transpose(MODEL("4, 6, 7", "conv_transpose2d(x, 5, [3, 1])"), 3, 3, 12, 1);
  expect_transpose(MODEL("4, 6, 7", "conv_transpose2d(x, 5, [1, 4], bias=false)"), 3, 3, 16, 1);
  /* padding cropped afterwards, the bias added there (both sides, then the width only) */
  expect_transpose(MODEL("5, 7, 9", "conv_transpose2d(x, 3, 3, padding=1)"), 3, 3, 45, 1);
  expect_transpose(MODEL("2, 8, 5", "conv_transpose2d(x, 3, [2, 3], padding=[0, 2])"), 2, 2, 12, 1);
  /* dilation 2 on a 3 x 5 window: 21 rows of taps (tiles of 6, the last clamped), no bias */
  expect_transpose(MODEL("17, 6, 5", "conv_transpose2d(x, 7, [3, 5], dilation=2, bias=false)"), 3, 3, 255, 1);
  /* 7 x 1 rows in one tile of 7, a symbolic batch of 1 */
  expect_transpose(MODEL("3, 9, 4", "conv_transpose2d(x, 7, [1, 2])"), 4, 1, 6, 1);
}

/* The taps form: its dump has the taps and their mask; windows of 3 x 5
 * (rows 13 wide: vectors of 8 at 0 and 5, 7 channels at once), of 1 x 3
 * (rows 4 wide: one vector of 4), of 2 x 4 with the width's padding
 * cropped (the bias added there) and without bias, and a 3 x 3 of 32 to
 * 16 channels with padding 1 (8 channels at once); LeNet-5's shape is in
 * the FLOP test below. */
static void expect_taps(const char *src, int64_t maxn, int64_t n, int64_t K) {
  int status;
  char *text = tu_dump_after(src, "--dump-after=schedule", &status);
  cr_assert_not_null(text);
  cr_expect(status == 0 && strstr(text, "temp taps :") && strstr(text, "temp tap_mask :") && !strstr(text, "temp tap_rows"),
            "not the taps form:\n%s", text);
  free(text);
  expect_transpose(src, maxn, n, K, 1);
}

/* A layer whose taps would pass TAPS_MAX floats an item (64 channels of
 * 7 x 7 taps over 30 x 30 positions: 2.8 M, 11 MB) keeps the rows of taps,
 * though the taps would save fmas: no im2col-sized buffer. */
Test(conv_transpose_fast, large_layers_keep_the_rows) {
  int status;
  char *text = tu_dump_after(MODEL("64, 30, 30", "conv_transpose2d(x, 64, 7)"), "--dump-after=schedule --max N=2", &status);
  cr_assert_not_null(text);
  cr_expect(status == 0 && strstr(text, "temp tap_rows :") && !strstr(text, "temp taps :"), "%s", text);
  free(text);
}

Test(conv_transpose_fast, taps_match_the_interpreter, .timeout = 900) {
  expect_taps(MODEL("16, 6, 9", "conv_transpose2d(x, 7, [3, 5])"), 3, 3, 240);
  expect_taps(MODEL("20, 8, 2", "conv_transpose2d(x, 5, [1, 3])"), 3, 2, 60);
  expect_taps(MODEL("24, 4, 6", "conv_transpose2d(x, 9, [2, 4], padding=[0, 1])"), 3, 3, 192);
  expect_taps(MODEL("24, 4, 6", "conv_transpose2d(x, 9, [2, 4], bias=false)"), 2, 1, 192);
  expect_taps(MODEL("32, 8, 8", "conv_transpose2d(x, 16, 3, padding=1)"), 2, 2, 288);
}

/* Grouped transposes keep the gather; --no-tile the lowered rows of taps or taps. */
Test(conv_transpose_fast, groups_and_no_tile_match_the_interpreter, .timeout = 900) {
  expect_transpose(MODEL("4, 5, 5", "conv_transpose2d(x, 6, 3, groups=2)"), 3, 2, 18, 2);
  expect_transpose(MODEL("16, 10, 10", "conv_transpose2d(x, 6, 5)"), 3, 2, 400, 0);
  expect_transpose(MODEL("24, 4, 6", "conv_transpose2d(x, 9, [2, 4], padding=[0, 1])"), 3, 3, 192, 0);
  expect_transpose(MODEL("6, 7, 9", "conv_transpose2d(x, 3, [2, 3], padding=1)"), 3, 2, 36, 0);
  expect_transpose(MODEL("5, 7, 9", "conv_transpose2d(x, 3, [2, 3], padding=1, dilation=[1, 2])"), 3, 2, 30, 0);
}

/* The work is (close to) the real products: the taps compute exactly the
 * products and gather them with one add each, the row sums compute wf of
 * every ow columns (and whole vectors of positions); neither computes
 * every position of the uncropped result. */
Test(conv_transpose_fast, flops_stay_near_the_real_products, .timeout = 900) {
  /* LeNet-5's data gradient of c2: real 2 x 6 x 16 x 10 x 10 x 25 = 480 kFLOP; as taps 480 k and 24 k adds
   * of the gather (6 channels x 50 (row, kh) pairs x 5 kw x 16 lanes): 1.05x (rows 14 wide for 10: 1.44x,
   * the gather over 14 x 14 positions: 2.08x) */
  const char *lenet = MODEL("16, 10, 10", "conv_transpose2d(x, 6, 5)"), *small = MODEL("6, 12, 12", "conv_transpose2d(x, 4, 3)");
  expect_transpose(lenet, 3, 2, 400, 1);
  double real = 2.0 * 6 * 16 * 10 * 10 * 25, flops = check_flops(lenet);
  cr_expect(flops >= real && flops <= 1.1 * real, "%g FLOP per example for %g real", flops, real);
  /* 3 x 3 on 12 x 12: rows 14 wide for 12 and 176 positions for 168 (1.25x with the adds of the rows) where the
   * gather did 208 (whole vectors) for 144 (1.44x) */
  real = 2.0 * 4 * 6 * 12 * 12 * 9;
  expect_transpose(small, 2, 2, 54, 1);
  flops = check_flops(small);
  cr_expect(flops >= real && flops <= 1.3 * real, "%g FLOP per example for %g real", flops, real);
}
