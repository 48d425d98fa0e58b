/*
 * test_conv_gw.c — conv2d's weight gradient in register tiles
 * (passes/sched_gw.c): conv2d_grad_weight nodes of odd shapes (channels
 * 1, 3, 7, 17; kernels 1x1, 3x3, 5x5; padding; dilation; a symbolic
 * batch below its maximum) against the interpreter on the kernel-IR
 * evaluator, the JIT and the C backend (vector and scalar forms), the
 * form the schedule chose in the dump (register tiles, batch-outer tiles
 * when a block's reads over the batch maximum pass L2, channel lanes for
 * multiples of 16 channels), stride 2 (which keeps the row-buffer nest)
 * and --no-tile the same, and threads 1, 2 and 3 bit-identical.
 *
 * Tolerance.  Each dw element is a sum of M = N * OH * OW products (the
 * tiles also add exact zeros, the wide rows' extra columns).  The tiles
 * add them in another order than the interpreter (16 lane sums, each in
 * (n, j) order, summed pairwise, then the tail positions; channel lanes:
 * one chain in (n, y, x) order) and each step
 * is an fma, rounded once or twice (kernel.h).  Any float32 summation of M
 * products in any order, fused or not, is within (M + 1) * 2^-24 times
 * sum |dy * x| of the exact value (recursive summation's classical bound,
 * one more rounding for the products); the interpreter sums in double and
 * rounds once (2^-24 of the same), so each element is checked against
 * (M + 2) * 2^-24 * sum |dy * x|, the magnitude got by running the
 * interpreter on the inputs' absolute values.  A missing, doubled or
 * misplaced term (a wrong tap offset, a lost tail) is far outside it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "ir/conv.h"
#include "ir/keval.h"
#include "passes/schedule.h"
#include "tests/handkit.h"
#include "tests/kernel_run.h"

typedef struct GwCase {
  Graph g;
  Diags d;
  RtTensor vals[8], absv[8];   /* by node: dy, x, w, then the interpreter's dw */
  int dy, x, w, dw;
  int64_t n, terms;            /* the batch at run time; products per dw element */
} GwCase;

static void fill(RtTensor *t, double phase) {
  float *v = t->data;
  for (int64_t i = 0; i < rt_tensor_numel(t); i++) v[i] = (float)sin(0.7 * (double)i + phase) * 0.5f;
}

/* dw = conv2d_grad_weight(dy, x) of o channels from c, k x k taps, on
 * h x h planes, with padding pad, stride s and dilation dil; N at most
 * maxn, n at run time; and the interpreter's dw on the inputs and on their
 * absolute values. */
static void gw_init(GwCase *t, int64_t maxn, int64_t n, int64_t c, int64_t o, int64_t h, int64_t k, int64_t pad, int64_t s,
                    int64_t dil) {
  memset(t, 0, sizeof *t);
  diag_init(&t->d, stderr);
  ir_graph_init(&t->g, "gw", &t->d);
  SrcLoc loc = {0};
  int sym = ir_symbol(&t->g, "N", loc);
  t->g.syms[sym].max = maxn;
  int64_t oh = (h + 2 * pad - dil * (k - 1) - 1) / s + 1;
  Shape sdy = {4, {DIM_SYM(sym), o, oh, oh}}, sx = {4, {DIM_SYM(sym), c, h, h}}, sw = {4, {o, c, k, k}};
  t->dy = ir_input(&t->g, "dy", DT_F32, &sdy, loc);
  t->x = ir_input(&t->g, "x", DT_F32, &sx, loc);
  t->w = ir_input(&t->g, "w", DT_F32, &sw, loc);
  Attrs a = ir_attrs_default(OP_CONV2D_GRAD_WEIGHT);
  a.window.stride = (IntList){2, {s, s}};
  a.window.padding = (IntList){4, {pad, pad, pad, pad}};
  a.window.dilation = (IntList){2, {dil, dil}};
  a.window.groups = 1;
  t->dw = ir_op(&t->g, OP_CONV2D_GRAD_WEIGHT, (int[]){t->dy, t->x, t->w}, 3, &a, loc);
  cr_assert_geq(t->dw, 0);
  cr_assert_lt(t->dw, 8);
  ir_output(&t->g, "dw", t->dw);
  t->n = n, t->terms = n * oh * oh;
  RtError err;
  int ins[3] = {t->dy, t->x, t->w};
  for (int i = 0; i < 3; i++) {
    const Node *nd = &t->g.nodes[ins[i]];
    int64_t shape[4];
    for (int r = 0; r < 4; r++) shape[r] = DIM_IS_SYM(nd->shape.d[r]) ? n : nd->shape.d[r];
    for (int v = 0; v < 2; v++) {
      RtTensor *x = v ? &t->absv[ins[i]] : &t->vals[ins[i]];
      cr_assert_eq(rt_tensor_alloc(x, DT_F32, 4, shape, &err), RT_OK);
      fill(x, 0.3 + i);
      if (v)
        for (int64_t e = 0; e < rt_tensor_numel(x); e++) ((float *)x->data)[e] = fabsf(((float *)x->data)[e]);
    }
  }
  int64_t syms[IR_MAX_SYMS] = {n};
  InterpOpts io = {0, 0};
  cr_assert_eq(ir_interp(&t->g, t->vals, syms, &io, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(ir_interp(&t->g, t->absv, syms, &io, &err), RT_OK, "%s", err.msg);
}

static void gw_free(GwCase *t) {
  for (int i = 0; i < t->g.nnodes && i < 8; i++) rt_tensor_free(&t->vals[i]), rt_tensor_free(&t->absv[i]);
  ir_graph_free(&t->g);
}

static void gw_program(GwCase *t, Program *p, int tiles) {
  kir_program_init(p, &t->g);
  pass_lower(p, kir_func(p, "forward", &t->g));
  SchedOpts o = {tiles};
  sched_program(p, &o);
  pass_memplan(p);
  cr_assert_eq(kir_verify(p, &t->d), 0);
}

static void gw_args(GwCase *t, const Program *p, float *y, void **args) {
  const Func *fn = &p->funcs[0];
  cr_assert(fn->nargs <= 8);
  for (int i = 0; i < fn->nargs; i++) {
    const Buffer *b = &p->bufs[fn->args[i]];
    args[i] = b->kind == BUF_INPUT ? t->vals[b->node].data : y;
  }
}

/* dw through the C backend with cflags, the JIT (cflags NULL) on a pool
 * of threads threads (0: none), or the evaluator (cflags "keval"). */
static void gw_run(GwCase *t, const Program *p, const char *cflags, int threads, float *y) {
  void *args[8];
  int64_t syms[IR_MAX_SYMS] = {t->n};
  gw_args(t, p, y, args);
  kr_forward(p, cflags, threads, syms, args);
}

static int64_t count_of(const GwCase *t) { return rt_tensor_numel(&t->vals[t->dw]); }

static void expect_close(const GwCase *t, const float *got, const char *what, const char *name) {
  const float *want = t->vals[t->dw].data, *mag = t->absv[t->dw].data;
  double gamma = (double)(t->terms + 2) * ldexp(1.0, -24);
  int bad = 0;
  for (int64_t i = 0; i < count_of(t) && bad < 3; i++) {
    double err = fabs((double)got[i] - want[i]), bound = gamma * mag[i];
    if (!(err <= bound)) {
      bad++;
      cr_expect(0, "%s %s: dw[%lld] = %.9g, interpreter %.9g (error %.3g, bound %.3g)", name, what, (long long)i, got[i],
                want[i], err, bound);
    }
  }
}

/* The forms of the schedule (sched_gw.c), as the dump shows them. */
enum { ROWS, TILES, BATCH_OUTER, CHANNELS };
static const char *const form_names[] = {"the row-buffer nest", "register tiles", "batch-outer tiles", "channel lanes"};

static int form_of(const char *text) {
  if (!strstr(text, "= fma(")) return ROWS;
  if (strstr(text, " dy_t ")) return CHANNELS;
  if (strstr(text, " gw_sums ") && strstr(text, "reduce_add(")) return BATCH_OUTER;
  return strstr(text, "reduce_add(") ? TILES : -1;
}

/* The case on every backend, in the given form (checked in the dump) and
 * with --no-tile (the row nest); threads bit-identical. */
static void expect_gw(const char *name, int64_t maxn, int64_t n, int64_t c, int64_t o, int64_t h, int64_t k, int64_t pad,
                      int64_t s, int64_t dil, int form) {
  GwCase t;
  gw_init(&t, maxn, n, c, o, h, k, pad, s, dil);
  int64_t count = count_of(&t);
  float *got = malloc(sizeof(float) * (size_t)count), *ref = malloc(sizeof(float) * (size_t)count);
  for (int tiles = 1; tiles >= 0; tiles--) {
    Program p;
    gw_program(&t, &p, tiles);
    char *text = hk_dump(&p);
    int got_form = form_of(text), want = tiles ? form : ROWS;
    cr_expect_eq(got_form, want, "%s: %s in the dump, not %s (tiles %d)\n%s", name,
                 got_form >= 0 ? form_names[got_form] : "an unknown form", form_names[want], tiles, text);
    free(text);
    /* w is an argument the op never reads: a warning of this hand-built one-op graph, not of the code
     * under test (a 1x1 kernel without padding touches no temporary once the tiles leave the row buffer
     * unused, and the C then declares no arena) */
    static const char *const flags[4] = {"keval", "-O1 -Wall -Wextra -pedantic -Werror -Wno-unused-parameter",
                                         "-O1 -DDLC_VECTORS=0 -Wall -Wextra -Werror -Wno-unused-parameter",
                                         NULL};
    for (int b = 0; b < 4; b++) {
      for (int64_t i = 0; i < count; i++) got[i] = NAN;
      gw_run(&t, &p, flags[b], 0, got);
      expect_close(&t, got, flags[b] ? flags[b] : "JIT", name);
    }
    memcpy(ref, got, sizeof(float) * (size_t)count);
    for (int th = 2; th <= 3; th++) {
      for (int64_t i = 0; i < count; i++) got[i] = NAN;
      gw_run(&t, &p, NULL, th, got);
      cr_expect_eq(memcmp(got, ref, sizeof(float) * (size_t)count), 0, "%s: %d threads differ from one", name, th);
    }
    kir_program_free(&p);
  }
  free(got);
  free(ref);
  gw_free(&t);
}

Test(conv_gw, lenet_shapes_match_the_interpreter, .timeout = 600) {
  expect_gw("lenet c1", 4, 3, 1, 6, 28, 5, 2, 1, 1, TILES);  /* 6 x 25 in 3 x 5 tiles */
  expect_gw("lenet c1 batch 64", 64, 3, 1, 6, 28, 5, 2, 1, 1, BATCH_OUTER);  /* one chunk, dy's rows per item */
  expect_gw("lenet c2", 3, 3, 6, 16, 14, 5, 0, 1, 1, CHANNELS);  /* 16 x 150: 6 blocks of 25 taps */
  expect_gw("lenet c2 batch 64", 64, 5, 6, 16, 14, 5, 0, 1, 1, CHANNELS);
  /* dy's transpose in blocks of 16 x 16: 2 blocks of channels by 4 of positions, no last block */
  expect_gw("32 channels, 64 positions", 3, 2, 3, 32, 8, 1, 0, 1, 1, CHANNELS);
}

Test(conv_gw, odd_shapes_match_the_interpreter, .timeout = 600) {
  expect_gw("1x1", 2, 2, 3, 7, 5, 1, 0, 1, 1, TILES);          /* one tap per channel, no padding copy */
  expect_gw("3x3 pad", 5, 2, 7, 17, 6, 3, 1, 1, 1, TILES);     /* 17 channels: a clamped channel block */
  expect_gw("5x5 c17", 2, 1, 17, 3, 9, 5, 2, 1, 1, TILES);     /* 425 taps, one batch item */
  expect_gw("1 channel", 3, 3, 1, 1, 7, 3, 0, 1, 1, TILES);    /* 25 columns: one vector and a tail of 9 */
  expect_gw("dilation 2", 2, 2, 3, 4, 9, 3, 2, 1, 2, TILES);
}

/* the positions past the last whole vector in steps of 8, 4, 2 and 1 lanes */
Test(conv_gw, tails_in_narrower_vectors_match_the_interpreter, .timeout = 600) {
  expect_gw("tail 8+4+1", 3, 3, 2, 5, 6, 2, 0, 1, 1, TILES);   /* 29 columns: 16 and a tail of 13 */
  expect_gw("tail 8+4+2", 2, 2, 3, 6, 6, 3, 1, 1, 1, TILES);   /* 46 columns: 32 and a tail of 14 */
}

/* stride 2 and a row too short for a vector keep the row-buffer nest */
Test(conv_gw, other_shapes_keep_the_row_nest, .timeout = 600) {
  expect_gw("stride 2", 3, 2, 3, 5, 9, 3, 1, 2, 1, ROWS);
  expect_gw("short rows", 2, 2, 2, 3, 3, 3, 0, 1, 1, ROWS);   /* one output per plane: 1 column */
}

/* A block's stream over the batch (its maximum) past GW_STREAM: the batch
 * loop outside the blocks, accumulators in gw_sums, in chunks of blocks
 * (the last one's extra slots recompute the last block).  The first three
 * take the shifted form (dy in place, the input's kw shifts per item; no
 * tail then), the 1x1 reads dy in place at its own width. */
Test(conv_gw, batch_outer_tiles_match_the_interpreter, .timeout = 600) {
  expect_gw("3 chunks, tail 6", 64, 3, 8, 12, 20, 3, 1, 1, 1, BATCH_OUTER);    /* 36 blocks of 4 x 6 in chunks of 15 */
  expect_gw("2 chunks, tail 14", 64, 2, 4, 10, 24, 3, 1, 1, 1, BATCH_OUTER);   /* 18 blocks of 5 x 4 in chunks of 13 */
  expect_gw("dilation 2, 3 chunks", 64, 2, 3, 9, 30, 5, 2, 1, 2, BATCH_OUTER);
  expect_gw("1x1, no copy, no tail", 64, 2, 40, 7, 16, 1, 0, 1, 1, BATCH_OUTER); /* dy read in place */
}

/* LeNet-5's c1 at batch 64: its 10 blocks fit the scratch in one chunk;
 * the batch goes in two shards, [0, N/2) and [N/2, N), each a job of its
 * own with its own sums (added in order after), so two threads each take
 * half of the items, whatever the blocks.  Its wide rows would spend 108
 * lanes of 892 past the rows' ends: it reads dy in place and the input's
 * kw-shifted rows (sched_gw.c: outer_shifted). */
Test(conv_gw, batch_outer_shards_take_halves_of_the_batch) {
  GwCase t;
  gw_init(&t, 64, 3, 1, 6, 28, 5, 2, 1, 1);
  Program p;
  gw_program(&t, &p, 1);
  char *text = hk_dump(&p);
  cr_expect(strstr(text, " < 2 parallel {") && strstr(text, " + 1) * N / 2 - i") && !strstr(text, " < N reduce {"),
            "no loop of 2 jobs, each over half of the batch, in the dump:\n%s", text);
  /* the shifted form: dy read in place, 784 positions (49 vectors, no tail), the input's 5 kw shifts per item */
  cr_expect(strstr(text, " x_shifted ") && !strstr(text, " dy_rows ") && strstr(text, " < 784 step 16 reduce {") &&
                !strstr(text, "gw_sums<8>"),
            "not the shifted form:\n%s", text);
  free(text);
  kir_program_free(&p);
  gw_free(&t);
}

/* output channels a multiple of 16: channels in lanes, dy transposed */
Test(conv_gw, channel_lanes_match_the_interpreter, .timeout = 600) {
  expect_gw("32 channels, dilation 2", 64, 3, 5, 32, 9, 3, 1, 1, 2, CHANNELS);  /* 2 x 2 blocks of 23 taps, the last clamped */
  expect_gw("1x1, dy in place", 64, 2, 2, 16, 8, 1, 0, 1, 1, CHANNELS);
  expect_gw("48 channels, pad 2", 5, 4, 3, 48, 7, 5, 2, 1, 1, CHANNELS);        /* 3 blocks of channels by 3 of 25 taps */
}
