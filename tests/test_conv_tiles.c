/*
 * test_conv_tiles.c — convolutions in register tiles (schedule.c,
 * rule_conv_tiles): conv2d, conv1d and the gather of conv_transpose2d
 * with unit strides, as matrix products of output channels by output
 * positions with B (the padded input) read where it is, against the
 * interpreter on the kernel-IR evaluator, the JIT and the C backend
 * (vector and scalar forms), at odd channel counts (1, 3, 5, 7, 17),
 * spatial sizes that are not multiples of 16, padding (both dimensions
 * or the width only), dilation and a symbolic batch; the JIT on pools of 2 and 3
 * threads bit for bit as on one; the tiles in the dump, and --no-tile's
 * nests without them.
 *
 * Tolerance.  Each output of the tiles sums its bias and then the same
 * terms in the same order as the nest the lowering writes (c, kh, kw for
 * the forward pass; o, kh, kw for the transpose), but each step is an fma
 * rounded once (kernel.h) where the lowered nest rounds the product and
 * the sum, and the interpreter sums in double.  Any float32 sum of K
 * products in any order, fused or not, is within (K + 2) * 2^-24 times
 * |b| + sum |x w| of the exact value (recursive summation's bound, one
 * more rounding for the products and one for the interpreter's result):
 * each element is checked against that bound, whose magnitude the test
 * gets by running the interpreter on the absolute values of the inputs
 * and parameters.  K counts every term of the sum, the zero ones the
 * transpose's gather adds at the borders too.  A missing, doubled or
 * misplaced term is far outside it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "driver/driver.h"
#include "frontend/frontend.h"
#include "ir/keval.h"
#include "passes/schedule.h"
#include "tests/bound_case.h"
#include "tests/handkit.h"
#include "tests/kernel_run.h"
#include "tests/testutil.h"

/* src (one convolution, K terms per output) in tiles when tiles is set
 * (checked in the dump) or without, on keval, C (vectors, scalars) and
 * the JIT, each element within the summation bound of the
 * interpreter's; the JIT on pools of 2 and 3 threads gives the same bits
 * as without a pool. */
static void expect_conv(const char *src, int64_t maxn, int64_t n, int64_t K, int tiles) {
  BoundCase t;
  bc_init(&t, src, maxn, n, K);
  Program p;
  bc_program(&t, &p, tiles);
  char *text = hk_dump(&p);
  if (tiles)
    cr_expect(strstr(text, "= fma(") && !strstr(text, "temp panels"), "no register tiles reading B in place for\n%s\n%s",
              src, text);
  else
    cr_expect(!strstr(text, "fma("), "tiles under --no-tile for\n%s\n%s", src, text);
  free(text);
  bc_expect_backends(&t, &p, src);
  kir_program_free(&p);
  bc_free(&t);
}

#define MODEL(x, layer) "model t\ninput x: f32[N, " x "]\noutput y = " layer "\n"

Test(conv_tiles, forward_of_odd_shapes_matches_the_interpreter, .timeout = 900) {
  /* LeNet-5's c1: 6 channels in one tile of 6 rows, 892 positions (13 panels of 64, one of 48, 12 left over) */
  expect_conv(MODEL("1, 28, 28", "conv2d(x, 6, 5, padding=2)"), 4, 3, 25, 1);
  /* 5 channels in one tile of 5, 3 input channels, 13 x 11 */
  expect_conv(MODEL("3, 13, 11", "conv2d(x, 5, 3, padding=1)"), 4, 2, 27, 1);
  /* 17 channels: tiles of 6, the last clamped; a dilated 2 x 3 window (shifted copies), no bias */
  expect_conv(MODEL("7, 9, 10", "conv2d(x, 17, [2, 3], dilation=2, bias=false)"), 3, 3, 42, 1);
  /* one channel in and out, padding of the width only */
  expect_conv(MODEL("1, 5, 40", "conv2d(x, 1, [1, 3], padding=[0, 1])"), 2, 1, 3, 1);
  /* conv1d: 7 channels, dilation 2, 42 positions */
  expect_conv(MODEL("3, 50", "conv1d(x, 7, 5, dilation=2)"), 3, 3, 15, 1);
  /* LeNet-5's c2: 16 channels in 2 tiles of 8 rows, 100 positions over the kw-shifted copies of the input (2
   * panels of 48, 4 left in one vector) */
  expect_conv(MODEL("6, 14, 14", "conv2d(x, 16, 5)"), 3, 2, 150, 1);
  /* 24 channels: 3 tiles of 8, 3 x 3 with padding (shifted copies of the padded input) */
  expect_conv(MODEL("2, 8, 9", "conv2d(x, 24, 3, padding=1)"), 2, 2, 18, 1);
  /* ReLU fused into the narrowing of the wide rows, which runs in the batch loop after each item's tiles */
  expect_conv("model t\ninput x: f32[N, 3, 13, 11]\nc = conv2d(x, 5, 3, padding=1)\noutput y = relu(c)\n", 4, 3, 27, 1);
  /* one output channel: the narrowing's loop over planes is the batch loop's */
  expect_conv("model t\ninput x: f32[N, 2, 9, 20]\nc = conv2d(x, 1, 3, padding=1)\noutput y = relu(c)\n", 3, 3, 18, 1);
}

Test(conv_tiles, transpose_of_odd_shapes_matches_the_interpreter, .timeout = 900) {
  /* LeNet-5's data gradient of c2: 6 channels, K = 16 x 25 */
  expect_conv(MODEL("16, 10, 10", "conv_transpose2d(x, 6, 5)"), 3, 2, 400, 1);
  /* padding cropped off afterwards, 3 channels */
  expect_conv(MODEL("5, 7, 9", "conv_transpose2d(x, 3, 3, padding=1)"), 3, 3, 45, 1);
  /* 17 input channels to 7, a dilated 3 x 5 window (more than 9 taps: kh kept as a loop without tiles), no bias */
  expect_conv(MODEL("17, 6, 5", "conv_transpose2d(x, 7, [3, 5], dilation=2, bias=false)"), 3, 3, 255, 1);
  /* one output channel, 25 positions */
  expect_conv(MODEL("3, 4, 4", "conv_transpose2d(x, 1, 2)"), 2, 2, 12, 1);
}

/* The float operations one call of p's forward performs with N = n
 * (driver/flops.c: each fma lane counts 2). */
static int64_t forward_flops(const Program *p, int64_t n) {
  int64_t syms[IR_MAX_SYMS] = {n};
  int exact = 0;
  int64_t f = dlc_flops(&p->funcs[0], syms, &exact);
  cr_expect(exact, "flops not exact");
  return f;
}

/* A forward pass whose wp - ow extra columns per row would cost many
 * times the fmas a copy of its input costs reads kw-shifted copies of
 * the input instead (lower_conv.c, forward_walk): rows ow wide, so the
 * tiles compute the oh * ow outputs and no column past them.  LeNet-5's
 * c2 (16 x 10 x 10 from 6 x 14 x 14): 100 positions per channel in 2
 * panels of 48 and one of 4 lanes (a rest of one power of two takes its
 * narrow vector, which costs no more than a whole one ending at the
 * last would), 100 lanes per output row of the tile where the wide rows
 * took 144 (136 positions).  Its FLOPs, 2 per fma lane, are the true
 * 2 * O * oh * ow * K (the wide rows' 44% over is far outside); the same
 * for a padded 3 x 3 of 24 channels (72 positions: 48, then 16 + 8;
 * the wide rows took 96, 33% over).  A rest of 12 = 8 + 4 would take
 * two narrow vectors, so it is one whole vector ending at the last
 * (6 x 10 positions: 48, then 16 ending at 60).  Each against the
 * interpreter on every backend, tiled and not, with a ReLU after it, and
 * a grouped one (no tiles: the lowered nest reads the copies too). */
Test(conv_tiles, shifted_rows_compute_only_the_outputs, .timeout = 900) {
  struct {
    const char *src;
    int64_t o, oh, ow, K, lanes; /* lanes computed per output channel */
  } cases[] = {{MODEL("6, 14, 14", "conv2d(x, 16, 5)"), 16, 10, 10, 150, 100},
               {MODEL("2, 8, 9", "conv2d(x, 24, 3, padding=1)"), 24, 8, 9, 18, 72},
               {MODEL("6, 10, 14", "conv2d(x, 16, 5)"), 16, 6, 10, 150, 64}};
  for (int i = 0; i < 3; i++) {
    BoundCase t;
    bc_init(&t, cases[i].src, 20, 19, cases[i].K);
    Program p;
    bc_program(&t, &p, 1);
    char *text = hk_dump(&p);
    /* the tiles read one slot per block of 8 items (3 for up to 20) */
    cr_expect(strstr(text, "temp shifted : f32[3, ") && strstr(text, "= fma("), "no tiles over shifted rows:\n%s", text);
    int64_t exact = 2 * 19 * cases[i].o * cases[i].lanes * cases[i].K, got = forward_flops(&p, 19);
    cr_expect(got == exact, "%s: %lld FLOPs, expected %lld (%lld lanes a channel)\n%s", cases[i].src, (long long)got,
              (long long)exact, (long long)cases[i].lanes, text);
    free(text);
    kir_program_free(&p);
    bc_free(&t);
  }
  expect_conv(MODEL("6, 14, 14", "conv2d(x, 16, 5)"), 3, 2, 150, 0);
  expect_conv("model t\ninput x: f32[N, 6, 14, 14]\nc = conv2d(x, 16, 5)\noutput y = relu(c)\n", 3, 3, 150, 1);
  expect_conv(MODEL("3, 12, 11", "conv2d(x, 16, [3, 5], padding=1, padding_mode=reflect)"), 3, 2, 45, 1);
  const char *grouped = MODEL("4, 10, 10", "conv2d(x, 16, 5, groups=2)");
  expect_conv(grouped, 3, 2, 50, 0);
  int status;
  char *text = tu_dump_after(grouped, "--dump-after=schedule --max N=3", &status);
  cr_assert_not_null(text);
  cr_expect(status == 0 && strstr(text, "temp shifted : f32[N, 4, 5, 10, 6]"), "%s", text);
  free(text);
}

/* The tiles' batch loop runs over blocks of 8 items (schedule.c,
 * item_blocks), each with its own slot of the padded input, the shifted
 * copies and the wide rows: 19 items in blocks of 8, 8 and 3, on 1, 2 and
 * 3 threads of the JIT, every item computed once (FLOPs exact), the
 * results as the interpreter's. */
Test(conv_tiles, blocks_of_items_with_their_own_slots, .timeout = 900) {
  expect_conv(MODEL("1, 28, 28", "conv2d(x, 6, 5, padding=2)"), 20, 19, 25, 1);
  expect_conv("model t\ninput x: f32[N, 6, 14, 14]\nc = conv2d(x, 16, 5)\noutput y = relu(c)\n", 24, 17, 150, 1);
  BoundCase t;
  bc_init(&t, MODEL("1, 28, 28", "conv2d(x, 6, 5, padding=2)"), 20, 19, 25);
  Program p;
  bc_program(&t, &p, 1);
  char *text = hk_dump(&p);
  cr_expect(strstr(text, "temp padded : f32[3, 1, 32, 32]") && strstr(text, "temp wide : f32[3, 6, 896]") &&
                strstr(text, "< (N + 7) / 8 parallel") && strstr(text, "< min(8, N - "),
            "%s", text);
  int64_t exact = 2 * 19 * 6 * 28 * 28 * 25, got = forward_flops(&p, 19);
  cr_expect(got >= exact && got * 100 <= exact * 115, "%lld FLOPs for %lld\n%s", (long long)got, (long long)exact, text);
  free(text);
  kir_program_free(&p);
  bc_free(&t);
}

/* --no-tile: the lowered nests (channel blocks, the gather of any window)
 * as they were, matching the interpreter too. */
Test(conv_tiles, no_tile_keeps_the_lowered_nests, .timeout = 900) {
  expect_conv(MODEL("3, 13, 11", "conv2d(x, 5, 3, padding=1)"), 4, 2, 27, 0);
  expect_conv(MODEL("16, 10, 10", "conv_transpose2d(x, 6, 5)"), 3, 2, 400, 0);
  expect_conv(MODEL("17, 6, 5", "conv_transpose2d(x, 7, [3, 5], dilation=2, bias=false)"), 3, 3, 255, 0);
}

/* Strided or grouped convolutions, and planes narrower than a vector,
 * keep the lowered nests (no tiles) and their results. */
Test(conv_tiles, strides_groups_and_small_planes_keep_the_nests, .timeout = 900) {
  const char *srcs[] = {MODEL("4, 9, 9", "conv2d(x, 6, 3, stride=2)"), MODEL("4, 9, 9", "conv2d(x, 6, 3, groups=2)"),
                        MODEL("3, 3, 3", "conv2d(x, 5, 2)"), MODEL("4, 5, 5", "conv_transpose2d(x, 3, 3, stride=2)")};
  int64_t K[] = {36, 18, 12, 12};
  for (int i = 0; i < 4; i++) expect_conv(srcs[i], 3, 2, K[i], 0);
  for (int i = 0; i < 4; i++) {
    int status;
    char *text = tu_dump_after(srcs[i], "--dump-after=schedule --max N=3", &status);
    cr_assert_not_null(text);
    cr_expect_eq(status, 0, "%s", text);
    cr_expect(!strstr(text, "fma("), "%s", text);
    free(text);
  }
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (; s && (s = strstr(s, what)); s++) n++;
  return n;
}

/* LeNet-5's training step: c1 and c2 forward and c2's data gradient in
 * tiles, parallel over the batch, B read in place (no packed panels);
 * the data gradient by taps. */
Test(conv_tiles, lenet5_train_step_in_the_dump, .timeout = 300) {
  int status;
  FILE *f = fopen(DLC_SOURCE_DIR "/samples/lenet5.dl", "r");
  cr_assert_not_null(f);
  static char src[8192];
  size_t n = fread(src, 1, sizeof src - 1, f);
  src[n] = 0;
  fclose(f);
  char *text = tu_dump_after(src, "--train --dump-after=schedule", &status);
  cr_assert_not_null(text);
  cr_expect_eq(status, 0, "%s", text);
  char *c1 = kr_kernel_text(text, ": conv2d c1  #"), *c2 = kr_kernel_text(text, ": conv2d c2  #"),
       *dx = kr_kernel_text(text, ": conv_transpose2d  #");
  cr_assert(c1 && c2 && dx, "%s", text);
  cr_expect(strstr(c1, "< 25 reduce {") && count(c1, "= fma(") >= 24 && strstr(c1, "< 6 step 6 {"), "c1: 6 x 4 tiles, K 25:\n%s", c1);
  cr_expect(strstr(c2, "< 150 reduce {") && count(c2, "= fma(") >= 16 && strstr(c2, "< 16 step 8 {"), "c2: tiles of 8 rows, K 150:\n%s", c2);
  cr_expect(strstr(dx, "< 16 reduce {") && count(dx, "= fma(") >= 18 && strstr(dx, "< 150 step 6 {"),
            "dx: taps, 6 x 3 tiles, K 16:\n%s", dx);
  /* the gather: 6 channels by 2 vectors of 8 at once, in blocks of 8 items */
  cr_expect(count(dx, "select(b") >= 12 && strstr(dx, "< min(8, N - "), "dx: the gather in lanes, item blocks:\n%s", dx);
  cr_expect(strstr(c1, " parallel {") && strstr(dx, " parallel {"), "%s%s", c1, dx);
  cr_expect(!strstr(c1, "panels") && !strstr(c2, "panels") && !strstr(dx, "panels"), "%s%s%s", c1, c2, dx);
  /* the narrowing (with the ReLU) of each item's planes in the batch loop, not a loop over all planes after it */
  cr_expect(!strstr(c1, "< N * 6 parallel") && strstr(c1, "< 6 {") && strstr(c1, "select(") && !strstr(c2, "< N * 16 parallel") &&
                strstr(c2, "< 16 {"),
            "%s%s", c1, c2);
  free(c1), free(c2), free(dx);
  free(text);
  text = tu_dump_after(src, "--train --no-tile --dump-after=schedule", &status);
  cr_assert_not_null(text);
  cr_expect(!strstr(text, "fma("), "%s", text);
  free(text);
}
