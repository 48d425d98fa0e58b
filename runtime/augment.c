/*
 * augment.c — data augmentation of a mini-batch, in place.
 *
 * Applied after the batch is chosen, in training only, as the notes
 * prescribe.  Each sample is an image [C, H, W] (or [H, W]); with
 * probability 1/2 it is mirrored left-right, and with crop = k it is
 * shifted by a random (dy, dx) in [-k, k]^2 with zeros coming in at the
 * edges — the same as padding by k and taking a random H x W crop.  The
 * random decisions come from the caller's generator, which the trainer
 * seeds from (seed, epoch), so a run is reproducible and a resumed run
 * sees the same augmentations.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

static void flip(float *img, int64_t planes, int64_t h, int64_t w) {
  for (int64_t p = 0; p < planes * h; p++) {
    float *row = img + p * w;
    for (int64_t j = 0; j < w / 2; j++) {
      float t = row[j];
      row[j] = row[w - 1 - j];
      row[w - 1 - j] = t;
    }
  }
}

/* out(i, j) = in(i - dy, j - dx), zero outside. */
static void shift(float *img, float *tmp, int64_t planes, int64_t h, int64_t w, int64_t dy, int64_t dx) {
  memcpy(tmp, img, sizeof(float) * (size_t)(planes * h * w));
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < h; i++)
      for (int64_t j = 0; j < w; j++) {
        int64_t si = i - dy, sj = j - dx;
        img[(p * h + i) * w + j] = si >= 0 && si < h && sj >= 0 && sj < w ? tmp[(p * h + si) * w + sj] : 0.0f;
      }
}

RtStatus rt_augment_batch(float *x, int64_t n, int rank, const int64_t *sample_shape, int do_flip, int64_t crop,
                          RtRng *r, RtError *err) {
  if (rank < 2) return rt_fail(err, RT_ERR_SHAPE, "augmentation needs image samples [C, H, W] or [H, W], not rank %d", rank);
  int64_t h = sample_shape[rank - 2], w = sample_shape[rank - 1], planes = 1;
  for (int k = 0; k < rank - 2; k++) planes *= sample_shape[k];
  int64_t size = planes * h * w;
  float *tmp = crop ? rt_malloc(sizeof(float) * (size_t)size) : NULL;
  if (crop && !tmp) return rt_fail(err, RT_ERR_NOMEM, "out of memory");
  for (int64_t s = 0; s < n; s++) {
    float *img = x + s * size;
    if (do_flip && rt_rng_below(r, 2)) flip(img, planes, h, w);
    if (crop) {
      int64_t dy = (int64_t)rt_rng_below(r, (uint64_t)(2 * crop + 1)) - crop;
      int64_t dx = (int64_t)rt_rng_below(r, (uint64_t)(2 * crop + 1)) - crop;
      if (dy || dx) shift(img, tmp, planes, h, w, dy, dx);
    }
  }
  free(tmp);
  return RT_OK;
}

void rt_add_noise(float *x, int64_t n, double std, RtRng *r) {
  for (int64_t i = 0; i < n; i++) x[i] += (float)(std * rt_rng_normal(r));
}

/* Parses "0-4" or "5,7,9" (or a mix) into a membership table of classes. */
static int parse_classes(const char *spec, int64_t *map, int64_t max, RtError *err) {
  for (int64_t c = 0; c < max; c++) map[c] = -1;
  const char *p = spec;
  while (*p) {
    char *end;
    long a = strtol(p, &end, 10), b = a;
    if (end == p) return rt_fail(err, RT_ERR_FORMAT, "classes: expected numbers like 0-4 or 5,6,7, got '%s'", spec), -1;
    p = end;
    if (*p == '-') {
      b = strtol(p + 1, &end, 10);
      if (end == p + 1) return rt_fail(err, RT_ERR_FORMAT, "classes: expected numbers like 0-4 or 5,6,7, got '%s'", spec), -1;
      p = end;
    }
    if (a < 0 || b < a || b >= max) return rt_fail(err, RT_ERR_FORMAT, "classes: %ld-%ld is outside the labels 0..%lld", a, b, (long long)max - 1), -1;
    for (long c = a; c <= b; c++) map[c] = 0;
    if (*p == ',') p++;
  }
  int64_t k = 0;
  for (int64_t c = 0; c < max; c++)
    if (map[c] == 0) map[c] = k++;
  return 0;
}

RtStatus rt_dataset_select_classes(RtDataset *d, const char *spec, RtError *err) {
  if (!spec || !*spec || d->n == 0) return RT_OK;
  if (d->y.dtype != DT_I64) return rt_fail(err, RT_ERR_DTYPE, "classes: the data set has no class labels");
  int64_t max = rt_dataset_max_label(d) + 1, feat = rt_dataset_features(d), *map = rt_malloc(sizeof(int64_t) * (size_t)(max + 1));
  if (!map) return rt_fail(err, RT_ERR_NOMEM, "out of memory");
  if (parse_classes(spec, map, max, err)) {
    free(map);
    return RT_ERR_FORMAT;
  }
  int64_t *y = d->y.data, kept = 0;
  float *x = d->x.data;
  for (int64_t i = 0; i < d->n; i++) {
    if (map[y[i]] < 0) continue;
    memmove(x + kept * feat, x + i * feat, sizeof(float) * (size_t)feat);
    y[kept++] = map[y[i]];
  }
  free(map);
  d->n = d->x.shape[0] = d->y.shape[0] = kept;
  return RT_OK;
}
