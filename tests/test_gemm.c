/*
 * test_gemm.c — matrix products in register tiles (schedule.c, "register
 * tiles"): dense layers and matmuls of odd shapes against the
 * interpreter on the JIT and the C backend (vector and scalar forms), the
 * tiled nest in the dump, and the backward products of a dense layer on
 * the same path.
 *
 * Tolerance.  The tiles add each output's terms in k order, as the row
 * form does, but each step is an fma, rounded once where the target has
 * FMA (kernel.h), and the interpreter sums in double.  Any float32 sum of
 * K products in any order, fused or not, is within (K + 2) * 2^-24 times
 * |b| + sum_k |x_k w_k| of the exact value (the classical bound of
 * recursive summation, one more rounding for the products and one for
 * the interpreter's own result): each element is checked against that
 * bound, which the test gets by running the interpreter on the absolute
 * values of the inputs.  A missing, doubled or misplaced term is far
 * outside it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/schedule.h"
#include "tests/bound_case.h"
#include "tests/handkit.h"
#include "tests/testutil.h"

/* The tiles of src (checked to be there, and when `also` is given, that
 * text in the dump of a forward pass of one kernel) on C (vectors, scalars) and the JIT, each element within the
 * summation bound of the interpreter's. */
static void expect_tiles(const char *src, int64_t maxn, int64_t n, int64_t K, const char *also) {
  BoundCase t;
  bc_init(&t, src, maxn, n, K);
  Program p;
  bc_program(&t, &p, 1);
  char *text = hk_dump(&p);
  cr_expect(strstr(text, "= fma(") != NULL, "no register tiles for\n%s\n%s", src, text);
  cr_expect(!also || strstr(text, also) != NULL, "no '%s' for\n%s\n%s", also, src, text);
  cr_expect(!also || p.funcs[0].nkernels == 1, "%d kernels for\n%s\n%s", p.funcs[0].nkernels, src, text);
  free(text);
  int64_t count = rt_tensor_numel(&t.vals[t.m.g.outputs[0].id]);
  float *got = malloc(sizeof(float) * (size_t)count);
  static const char *const flags[3] = {"-O1 -Wall -Wextra -pedantic -Werror", "-O1 -DDLC_VECTORS=0 -Wall -Wextra -Werror", NULL};
  for (int b = 0; b < 3; b++) {
    for (int64_t i = 0; i < count; i++) got[i] = NAN;
    bc_run(&t, &p, flags[b], (RtPool *[]){NULL}, 1, &got);
    bc_expect_close(&t, got, flags[b] ? flags[b] : "JIT", src);
  }
  free(got);
  kir_program_free(&p);
  bc_free(&t);
}

static void expect_gemm(const char *src, int64_t maxn, int64_t n, int64_t K) { expect_tiles(src, maxn, n, K, NULL); }

static void expect_dense(int64_t maxn, int64_t n, int64_t K, int64_t J, int bias) {
  char src[256];
  snprintf(src, sizeof src, "model t\ninput x: f32[N, %lld]\noutput y = dense(x, %lld%s)\n", (long long)K, (long long)J,
           bias ? "" : ", bias=false");
  expect_gemm(src, maxn, n, K);
}

/* rows x K times K x J, both inputs */
static void expect_matmul(int64_t maxn, int64_t n, int64_t K, int64_t J) {
  char src[256];
  snprintf(src, sizeof src, "model t\ninput a: f32[N, %lld]\ninput b: f32[%lld, %lld]\noutput y = a @ b\n", (long long)K,
           (long long)K, (long long)J);
  expect_gemm(src, maxn, n, K);
}

Test(gemm, dense_layers_of_odd_shapes_match_the_interpreter, .timeout = 600) {
  expect_dense(8, 8, 1, 16, 1);      /* one term, one vector of columns */
  expect_dense(17, 17, 7, 17, 1);    /* a narrow panel and one column left over */
  expect_dense(64, 63, 65, 65, 0);   /* 63 of 64 rows: the last tile of 6 clamped */
  expect_dense(65, 65, 17, 100, 1);  /* 64 columns in a panel, then 32 + 4 in one */
  expect_dense(40, 7, 63, 130, 1);   /* 7 rows at run time, 130 = 2 x 64 + 2 */
  expect_dense(8, 1, 33, 64, 1);     /* one row: the tile computes it four times */
}

/* Fewer than 8 rows: tiles of that many rows (one tile for all of them,
 * its last rows clamped when the batch is smaller at run time) */
Test(gemm, dense_layers_of_few_rows_match_the_interpreter, .timeout = 600) {
  expect_dense(1, 1, 100, 256, 1);   /* one row: panels of 8 vectors (128 columns) */
  expect_dense(1, 1, 33, 130, 0);    /* 128, then 2 in one vector of 2 */
  expect_dense(5, 3, 40, 64, 1);     /* 5 rows at most, 3 at run time */
  expect_dense(7, 7, 17, 100, 1);    /* 7 rows: 2 vectors a panel */
  expect_dense(3, 2, 9, 16, 1);
  expect_matmul(2, 2, 31, 48);
}

/* Fewer columns than a vector, and the columns past the whole vectors,
 * in vectors of the powers of two they are made of */
Test(gemm, narrow_columns_in_vectors_of_powers_of_two_match_the_interpreter, .timeout = 600) {
  expect_dense(256, 256, 128, 10, 1); /* the MLP's last layer: 8 + 2 */
  expect_dense(64, 61, 9, 1, 1);      /* one column: one lane */
  expect_dense(16, 9, 40, 15, 0);     /* 8 + 4 + 2 + 1, rows in tiles of 4 */
  expect_dense(40, 37, 19, 127, 1);   /* 64, then 48 + 15: two panels (one would need 50 registers) */
  expect_dense(33, 33, 5, 63, 1);     /* 3 vectors a panel (48), then 8 + 4 + 2 + 1 */
  expect_matmul(40, 39, 21, 10);      /* packed per call (b is an input) */
  expect_matmul(40, 33, 12, 127);
}

Test(gemm, matmuls_of_odd_shapes_match_the_interpreter, .timeout = 600) {
  expect_matmul(8, 8, 1, 16);
  expect_matmul(17, 17, 7, 17);
  expect_matmul(65, 65, 63, 65);
  expect_matmul(64, 1, 17, 100);
}

/* An activation after a dense layer is its epilogue (fuse.c): the tiles
 * apply it to their accumulators in lanes as they store them, and the
 * layer's own output is never stored (one kernel).  relu and leaky_relu
 * move no element farther from the exact value than its input was, so
 * the bound holds. */
static void expect_activated(const char *act, int64_t maxn, int64_t n, int64_t K, int64_t J) {
  char src[256];
  snprintf(src, sizeof src, "model t\ninput x: f32[N, %lld]\nfc = dense(x, %lld)\noutput y = %s(fc)\n", (long long)K,
           (long long)J, act);
  expect_tiles(src, maxn, n, K, "= select(");
}

Test(gemm, activations_after_dense_layers_are_applied_where_the_tiles_store, .timeout = 600) {
  expect_activated("relu", 64, 63, 65, 65);        /* the last row tile clamped, a column left over */
  expect_activated("relu", 40, 7, 63, 130);        /* 130 = 2 x 64 + 2 */
  expect_activated("relu", 256, 256, 128, 10);     /* 8 + 2 */
  expect_activated("relu", 8, 8, 4, 3);            /* 2 + 1: a lane of one */
  expect_activated("relu", 1, 1, 100, 256);        /* one row: panels of 8 vectors */
  expect_activated("leaky_relu", 33, 33, 5, 63);   /* 48, then 8 + 4 + 2 + 1 */
}

/* dW = dY^T X: the rows are a transposed input's, K the symbolic batch */
Test(gemm, transposed_products_over_the_batch_match_the_interpreter, .timeout = 600) {
  expect_gemm("model t\ninput a: f32[N, 40]\ninput b: f32[N, 65]\noutput y = transpose(a, perm=[1, 0]) @ b\n", 64, 63, 63);
  expect_gemm("model t\ninput a: f32[N, 17]\ninput b: f32[N, 16]\noutput y = transpose(a, perm=[1, 0]) @ b\n", 16, 1, 1);
}

/* The tiled nest in the dump: panels of 64 columns packed per call from
 * the weight's own [J, K] layout (a parameter a train step updates), 6
 * rows by 4 vectors of fma, parallel over the panels. */
static char *dump_model(const char *src, const char *args) {
  char full[400];
  int status;
  snprintf(full, sizeof full, "%s --dump-after=schedule", args);
  char *text = tu_dump_after(src, full, &status);
  cr_assert_not_null(text);
  cr_expect_eq(status, 0, "%s", text);
  return text;
}

static const char *mlp_src = "model m\ninput x: f32[N, 784]\nfc1 = dense(x, 256)\nh = relu(fc1)\noutput y = dense(h, 128)\n"
                             "train {\n  label t: i64[N]\n  loss = cross_entropy(y, t)\n  optimizer = sgd(lr=0.1)\n"
                             "  batch = 64\n}\n";

Test(gemm, training_products_share_the_tiles_and_need_no_transposed_weights, .timeout = 300) {
  char *text = dump_model(mlp_src, "--train");
  /* forward: fc of 256 outputs in 4 panels, packed from the weight as it is */
  cr_expect(strstr(text, "for i4 < 4 parallel axis 1 {\n") != NULL, "%s", text);
  /* in blocks of 16 steps of k by 16 columns: a vector of each of 16 of
   * W's rows, transposed in registers by zips, a vector of each of 16
   * rows of the panel (49 blocks of k by 4 of the panel's columns) */
  cr_expect(strstr(text, "for i5 < 49 {\n        for i6 < 4 {\n") != NULL, "%s", text);
  cr_expect(strstr(text, "local v18: f32x16 = b1<16>[(i4 * 64 + i6 * 16 + 15) * 784 + i5 * 16]\n") != NULL,
            "the pack reads W[j, k .. k + 15]:\n%s", text);
  cr_expect(strstr(text, "local v19: f32x16 = zip_lo(v3, v11)\n") != NULL, "%s", text);
  cr_expect(strstr(text, "<16>[i4 * 64 * 784 + ((i5 * 16 + 15) * 64 + i6 * 16)] = v82\n") != NULL, "%s", text);
  /* a row the batch may end before is clamped once per tile, not per k */
  cr_expect(strstr(text, "local v92: i64 = max(min(i7 + 1, N + -1), i7)\n") != NULL, "%s", text);
  cr_expect(strstr(text, "bcast(b0[v92 * 784 + i8], 16)\n") != NULL, "%s", text);
  cr_expect(strstr(text, "min(i7 + 1, N + -1), i7) * 784") == NULL, "%s", text);
  cr_expect(strstr(text, "v121 = fma(v117, v86, v121)\n") != NULL, "6 x 4 vectors of fma:\n%s", text);
  /* no transposed copy of a weight is made before each step */
  cr_expect(strstr(text, "derived") == NULL, "%s", text);
  /* the backward products (dX = dY W, dW = dY^T X) in tiles too, reading
   * their B where it is (W, X: unit stride along the columns), so only
   * the forward products pack (train and eval steps: 4 panels) */
  int products = 0, packed = 0;
  const char *last = NULL;
  for (const char *s = text; (s = strstr(s, "= fma(")); s++) {
    const char *head = NULL;
    for (const char *t = text; (t = strstr(t, "\n  kernel ")) && t < s; t++) head = t;
    if (head != last) products++, last = head;
  }
  cr_expect_eq(products, 7, "fc1, fc2, dX of fc2, dW of fc1 and fc2, fc1 and fc2 of eval in tiles:\n%s", text);
  for (const char *s = text; (s = strstr(s, "temp panels")); s++) packed++;
  cr_expect_eq(packed, 4, "%s", text);
  /* dX of y = dY W reads W [128, 256] in place, a row of it per step of k
   * (relu's mask of it, fc1's gradient, applied where its tiles store) */
  cr_expect(strstr(text, "local v2: f32x16 = b5<16>[i7 * 256 + i5 * 64]\n") != NULL, "%s", text);
  cr_expect(strstr(text, "= select(b4<16>[") != NULL, "relu's mask in the tiles of dX:\n%s", text);
  free(text);
}

/* A layer of one panel (120 columns: a panel of 64 and one of the 56
 * left; LeNet-5's fc1) still runs on every thread: the threads share out
 * the row tiles, each over both panels, and the packs by blocks of k.  No
 * product of the step is a parallel loop of one iteration. */
Test(gemm, one_panel_layers_share_out_their_rows, .timeout = 300) {
  char *text = dump_model("model l\ninput x: f32[N, 400]\nfc = dense(x, 120)\noutput y = dense(relu(fc), 10)\n"
                          "train {\n  label t: i64[N]\n  loss = cross_entropy(y, t)\n  optimizer = sgd(lr=0.1)\n"
                          "  batch = 256\n}\n",
                          "--train");
  cr_expect(strstr(text, "  kernel 0: linear fc  # model.dl:3\n    for i5 < 25 parallel {\n") != NULL, "%s", text);
  cr_expect(strstr(text, "    for i8 < N step 6 parallel axis 0 {\n      local v88: f32x16 = b2<16>[0]\n") != NULL, "%s", text);
  cr_expect(strstr(text, " < 1 parallel") == NULL, "a loop of one iteration on the threads:\n%s", text);
  free(text);
}

/* Whether some statement of text stores into an element of buffer
 * `name` (a line that starts with "name["). */
static int stores_into(const char *text, const char *name) {
  size_t n = strlen(name);
  for (const char *l = text; l; l = strchr(l, '\n')) {
    while (*l == '\n' || *l == ' ') l++;
    if (!strncmp(l, name, n)) return 1;
  }
  return 0;
}

/* An inference program never changes its weights: their panels are a
 * derived layout, made by prepare once per change of the parameters, and
 * the tiles read them; no call packs (or transposes) a weight.  Two
 * layers, the second of 85 = 64 + 21 columns: a whole panel, then one of
 * the 21 columns left (the layout's last panel holds them all) in a
 * vector of 16, one of 4 and one of 1. */
Test(gemm, inference_reads_panels_made_once_and_packs_nothing_per_call) {
  char *text = dump_model("model d\ninput x: f32[N, 32]\nh = dense(x, 64)\noutput y = dense(h, 85)\n", "--max N=64");
  cr_expect(strstr(text, "b7 derived h.weight.panels64 : f32[64, 32]") != NULL, "%s", text);
  cr_expect(strstr(text, "b8 derived y.weight.panels64 : f32[85, 64]") != NULL, "%s", text);
  cr_expect(strstr(text, "temp panels") == NULL && strstr(text, ".T :") == NULL, "a copy per call:\n%s", text);
  char *fwd = strstr(text, "func forward"), *prep = strstr(text, "func prepare");
  cr_assert(fwd && prep && prep > fwd, "%s", text);
  prep[-1] = 0; /* fwd: the forward pass only */
  /* the forward pass stores into no panel; the tiles read them by vectors */
  cr_expect(!stores_into(fwd, "b7[") && !stores_into(fwd, "b8["), "a pack in the forward pass:\n%s", text);
  cr_expect(strstr(fwd, "local v5: f32x16 = b7<16>[i6 * 64 + 48]\n") != NULL, "%s", text);
  cr_expect(strstr(fwd, "local v41: f32x16 = b8<16>[4096 + i9 * 21]\n") != NULL, "%s", text);
  cr_expect(strstr(fwd, "local v42: f32x4 = b8<4>[4096 + (i9 * 21 + 16)]\n") != NULL, "%s", text);
  cr_expect(strstr(fwd, "local v43: f32 = b8[4096 + (i9 * 21 + 20)]\n") != NULL, "%s", text);
  /* prepare makes them: whole panels, then the last one of 21 columns */
  cr_expect(strstr(prep, "b7[i0 * 64 * 32 + (i1 * 64 + i2)] = b1[(i0 * 64 + i2) * 32 + i1]\n") != NULL, "%s", text);
  cr_expect(strstr(prep, "b8[4096 + (i4 * 21 + i5)] = b4[(64 + i5) * 64 + i4]\n") != NULL, "%s", text);
  free(text);
}

/* One row (batch-1 inference): tiles of one row by 8 vectors, the most
 * registers allow, whose 8 independent sums cover the fma's latency;
 * panels of 128 columns made once. */
Test(gemm, one_row_runs_tiles_of_one_row) {
  char *text = dump_model("model d\ninput x: f32[N, 32]\noutput y = dense(x, 256)\n", "--max N=1");
  cr_expect(strstr(text, "derived y.weight.panels128 : f32[256, 32]") != NULL, "%s", text);
  cr_expect(strstr(text, "for i4 < 2 parallel axis 1 {\n      for i5 < N {\n") != NULL, "%s", text);
  cr_expect(strstr(text, "v18 = fma(v10, v9, v18)\n") != NULL, "%s", text);
  cr_expect(strstr(text, "max(") == NULL, "no row clamped:\n%s", text);
  free(text);
}

/* --no-tile keeps the row order */
Test(gemm, no_tile_keeps_the_row_order) {
  char *text = dump_model("model d\ninput x: f32[N, 32]\noutput y = dense(x, 64)\n", "--max N=64 --no-tile");
  cr_expect(strstr(text, "panels") == NULL && strstr(text, "fma") == NULL, "%s", text);
  cr_expect(strstr(text, "v1 * b4[i2 * 64 + i3]\n") != NULL, "%s", text);
  free(text);
}

/* The emitted C puts the derived panels and the arena on a cache line
 * (DLC_ALIGN, 64 bytes in GNU C), so no 64-byte vector load of a whole
 * panel straddles two lines. */
Test(gemm, emitted_panels_and_arena_start_on_a_cache_line) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  char dl[600], c[600], h[600], cmd[2000];
  snprintf(dl, sizeof dl, "%s/mm.dl", dir);
  snprintf(c, sizeof c, "%s/mm.c", dir);
  snprintf(h, sizeof h, "%s/mm.h", dir);
  FILE *f = fopen(dl, "w");
  cr_assert_not_null(f);
  fputs("model mm\ninput x: f32[N, 64]\nfc = dense(x, 64)\nh = relu(fc)\noutput y = dense(h, 64, bias=false)\n", f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s %s --max N=64 -o %s", DLC_EXE, dl, c);
  cr_assert_eq(system(cmd), 0, "%s", cmd);
  size_t len;
  char *text = tu_read_file(c, &len);
  cr_assert_not_null(text);
  cr_expect(strstr(text, "#define DLC_ALIGN __attribute__((aligned(64)))\n") != NULL, "%s", text);
  cr_expect(strstr(text, "static DLC_ALIGN float D_y_weight_panels64[4096];\n") != NULL, "%s", text);
  cr_expect(strstr(text, "static DLC_ALIGN float A_f32[") != NULL, "%s", text);
  free(text);
  remove(dl), remove(c), remove(h);
  rmdir(dir);
}
