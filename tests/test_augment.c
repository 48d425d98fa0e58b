/*
 * test_augment.c — data augmentation and class selection in the runtime.
 *
 * Each augmented sample must be exactly the original, mirrored or not,
 * shifted by some (dy, dx) within the crop range with zeros coming in;
 * both branches of the flip must occur; the same generator state gives
 * the same batch.  Noise has the asked-for standard deviation.  Class
 * selection keeps exactly the samples of the listed classes, in order,
 * renumbered from 0, and refuses malformed lists.
 */
#include <criterion/criterion.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

#define H 5
#define W 6

/* img shifted by (dy, dx), mirrored first if flip. */
static void transform(const float *img, float *out, int flip, int dy, int dx) {
  for (int i = 0; i < H; i++)
    for (int j = 0; j < W; j++) {
      int si = i - dy, sj = j - dx;
      float v = 0;
      if (si >= 0 && si < H && sj >= 0 && sj < W) v = img[si * W + (flip ? W - 1 - sj : sj)];
      out[i * W + j] = v;
    }
}

Test(augment, samples_are_flips_and_shifts_of_the_original) {
  enum { N = 200, CROP = 2 };
  static float x[N * H * W], orig[H * W], t[H * W];
  for (int k = 0; k < H * W; k++) orig[k] = (float)(k + 1);
  for (int s = 0; s < N; s++) memcpy(x + s * H * W, orig, sizeof orig);
  RtRng r;
  RtError err;
  rt_rng_seed(&r, 3);
  int64_t shape[3] = {1, H, W};
  cr_assert_eq(rt_augment_batch(x, N, 3, shape, 1, CROP, &r, &err), RT_OK);
  int flips = 0, shifted = 0;
  for (int s = 0; s < N; s++) {
    int found = 0;
    for (int f = 0; f < 2 && !found; f++)
      for (int dy = -CROP; dy <= CROP && !found; dy++)
        for (int dx = -CROP; dx <= CROP && !found; dx++) {
          transform(orig, t, f, dy, dx);
          if (!memcmp(t, x + s * H * W, sizeof t)) found = 1, flips += f, shifted += dy || dx;
        }
    cr_assert(found, "sample %d is not a flip and shift of the original", s);
  }
  cr_expect(flips > N / 4 && flips < 3 * N / 4, "%d of %d flipped", flips, N);
  cr_expect(shifted > N / 2, "%d of %d shifted", shifted, N);
  /* the same generator state gives the same batch */
  static float y[N * H * W];
  for (int s = 0; s < N; s++) memcpy(y + s * H * W, orig, sizeof orig);
  rt_rng_seed(&r, 3);
  cr_assert_eq(rt_augment_batch(y, N, 3, shape, 1, CROP, &r, &err), RT_OK);
  cr_expect(!memcmp(x, y, sizeof x));
}

Test(augment, vectors_are_refused) {
  float x[4];
  RtRng r;
  RtError err;
  int64_t shape[1] = {4};
  rt_rng_seed(&r, 1);
  cr_expect_neq(rt_augment_batch(x, 1, 1, shape, 1, 0, &r, &err), RT_OK);
  cr_expect(strstr(err.msg, "image") != NULL, "%s", err.msg);
}

Test(augment, noise_has_the_given_std) {
  enum { N = 100000 };
  static float x[N];
  RtRng r;
  rt_rng_seed(&r, 8);
  rt_add_noise(x, N, 0.3, &r);
  double s = 0, sq = 0;
  for (int i = 0; i < N; i++) s += x[i], sq += (double)x[i] * x[i];
  double mean = s / N, sd = sqrt(sq / N - mean * mean);
  cr_expect(fabs(mean) < 0.005 && fabs(sd - 0.3) < 0.005, "mean %g, std %g", mean, sd);
}

static void make_set(RtDataset *d, int64_t n) {
  RtError err;
  int64_t xs[2] = {n, 2}, ys[1] = {n};
  memset(d, 0, sizeof *d);
  rt_tensor_alloc(&d->x, DT_F32, 2, xs, &err);
  rt_tensor_alloc(&d->y, DT_I64, 1, ys, &err);
  d->n = n;
  for (int64_t i = 0; i < n; i++) {
    ((int64_t *)d->y.data)[i] = i % 10;
    ((float *)d->x.data)[2 * i] = (float)i;
    ((float *)d->x.data)[2 * i + 1] = (float)-i;
  }
}

Test(augment, class_selection_keeps_and_renumbers) {
  RtDataset d;
  RtError err;
  make_set(&d, 100);
  cr_assert_eq(rt_dataset_select_classes(&d, "5-7,9", &err), RT_OK, "%s", err.msg);
  cr_assert_eq(d.n, 40);
  for (int64_t i = 0; i < d.n; i++) {
    float orig = ((float *)d.x.data)[2 * i];
    int64_t label = (int64_t)orig % 10, want = label == 9 ? 3 : label - 5;
    cr_expect(label >= 5 && label != 8, "sample %g of class %lld kept", (double)orig, (long long)label);
    cr_expect_eq(((int64_t *)d.y.data)[i], want);
    cr_expect_eq(((float *)d.x.data)[2 * i + 1], -orig);
    if (i) cr_expect_gt(orig, ((float *)d.x.data)[2 * i - 2], "order kept");
  }
  rt_dataset_free(&d);
  make_set(&d, 20);
  cr_expect_neq(rt_dataset_select_classes(&d, "3-1", &err), RT_OK);
  cr_expect_neq(rt_dataset_select_classes(&d, "0-12", &err), RT_OK);
  cr_expect(strstr(err.msg, "0..9") != NULL, "%s", err.msg);
  cr_expect_neq(rt_dataset_select_classes(&d, "a", &err), RT_OK);
  cr_expect_eq(rt_dataset_select_classes(&d, "", &err), RT_OK);
  cr_expect_eq(d.n, 20);
  rt_dataset_free(&d);
}
