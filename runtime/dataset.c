/*
 * dataset.c — labelled data sets in memory for training: the loaders
 * (Fashion-MNIST, IDX pairs, CSV, .npy pairs), the train/validation split,
 * the order of samples in each epoch, and the gathering of a batch.
 *
 * Every loader reads through the format readers of data.c and npy.c and
 * then normalises: x becomes f32 [n, sample...] (u8 is taken as pixels and
 * scaled by 1/255, anything else converted as it is), y becomes i64 class
 * labels (checked integral and >= 0) or, only from .npy, f32 regression
 * targets.  Both tensors are contiguous and C-ordered, so sample i of x is
 * the features-long run at i * features, and a reshape of the samples only
 * rewrites the shape array.  A loader either fills its output completely
 * or leaves it zeroed; outputs are never half-built.  A data set of named
 * columns (rt_data_npy_columns) is not normalised at all: each .npy file
 * is one column, kept in its dtype and shape, and the caller (the trainer)
 * checks each against the model input it feeds.  The split and the
 * batches treat the columns of a sample as one row, so every column sees
 * the same permutation.
 *
 * Randomness comes only from named PRNG streams (rng.c): the split from
 * (seed, "split") and the order of epoch k from (seed, "epoch/k").  An
 * epoch's order therefore depends on nothing but (seed, k), so a run
 * resumed at epoch k replays the same batches, and changing the split does
 * not change the shuffles.  The split keeps each part in the samples'
 * original order and copies the data (peak memory twice the set), which
 * keeps the parts independent tensors that free like any other.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest label a CSV may hold: f32 is exact for integers up to 2^24. */
#define CSV_MAX_LABEL 16777216.0

/* --- the data set ---------------------------------------------------------- */

void rt_dataset_free(RtDataset *d) {
  if (!d) return;
  rt_tensor_free(&d->x);
  rt_tensor_free(&d->y);
  for (int c = 0; c < d->ncols; c++) rt_tensor_free(&d->cols[c]);
  d->n = 0;
  d->ncols = 0;
}

static int64_t per_sample(const RtTensor *t) {
  int64_t e = 1;
  for (int i = 1; i < t->rank; i++) e *= t->shape[i];
  return e;
}

static size_t sample_bytes(const RtTensor *t) {
  return (size_t)per_sample(t) * rt_dtype_size(t->dtype);
}

int64_t rt_dataset_features(const RtDataset *d) { return per_sample(&d->x); }

int64_t rt_dataset_max_label(const RtDataset *d) {
  if (d->y.dtype != DT_I64 || d->n == 0) return -1;
  const int64_t *y = d->y.data;
  int64_t max = y[0];
  for (int64_t i = 1; i < d->n; i++)
    if (y[i] > max) max = y[i];
  return max;
}

RtStatus rt_dataset_check_labels(const RtDataset *d, int64_t classes,
                                 const char *what, RtError *err) {
  if (d->y.dtype != DT_I64)
    return rt_fail(err, RT_ERR_DTYPE, "%s: labels are %s, expected i64 class "
                   "labels", what, rt_dtype_name(d->y.dtype));
  const int64_t *y = d->y.data;
  for (int64_t i = 0; i < d->n; i++)
    if (y[i] < 0 || y[i] >= classes)
      return rt_fail(err, RT_ERR_FORMAT, "%s: label %lld of sample %lld is out "
                     "of range for %lld classes (0..%lld); the largest label is "
                     "%lld", what, (long long)y[i], (long long)i,
                     (long long)classes, (long long)classes - 1,
                     (long long)rt_dataset_max_label(d));
  return RT_OK;
}

RtStatus rt_dataset_reshape(RtDataset *d, int rank, const int64_t *sample_shape,
                            RtError *err) {
  char want[200], have[200];
  size_t numel = 0;
  if (rank < 0 || rank + 1 > RT_MAX_RANK ||
      !rt_shape_nbytes(DT_U8, rank, sample_shape, &numel))
    return rt_fail(err, RT_ERR_SHAPE, "cannot reshape samples to rank %d: "
                   "expected a rank 0..%d with dimensions >= 0", rank,
                   RT_MAX_RANK - 1);
  rt_shape_str(want, sizeof want, d->x.dtype, rank, sample_shape);
  rt_shape_str(have, sizeof have, d->x.dtype, d->x.rank - 1, d->x.shape + 1);
  if ((int64_t)numel != rt_dataset_features(d))
    return rt_fail(err, RT_ERR_SHAPE, "cannot reshape samples %s to %s: %lld "
                   "elements per sample, expected %lld", have, want,
                   (long long)rt_dataset_features(d), (long long)numel);
  d->x.rank = rank + 1;
  for (int i = 0; i < rank; i++) d->x.shape[i + 1] = sample_shape[i];
  return RT_OK;
}

/* --- normalising what the readers return ---------------------------------- */

typedef RtStatus (*RtReader)(const char *path, RtTensor *out, RtError *err);

/* raw (any dtype, [n, ...]) to f32; takes raw's data when it is f32. */
static RtStatus to_features(RtTensor *raw, const char *path, RtTensor *x,
                            RtError *err) {
  if (raw->rank < 1)
    return rt_fail(err, RT_ERR_SHAPE, "%s: a scalar, expected samples [n, ...]",
                   path);
  if (raw->dtype == DT_F32) {
    *x = *raw;
    memset(raw, 0, sizeof *raw);
    return RT_OK;
  }
  return rt_to_f32_scaled(raw, raw->dtype == DT_U8 ? 1.0 / 255 : 1.0, 0, x, err);
}

static RtStatus int_labels(const RtTensor *raw, const char *path, RtTensor *y,
                           RtError *err) {
  RtStatus st = rt_tensor_alloc(y, DT_I64, 1, raw->shape, err);
  if (st != RT_OK) return st;
  int64_t *dst = y->data;
  for (int64_t i = 0; i < raw->shape[0]; i++) {
    switch (raw->dtype) {
    case DT_U8: dst[i] = ((const uint8_t *)raw->data)[i]; break;
    case DT_I32: dst[i] = ((const int32_t *)raw->data)[i]; break;
    case DT_I64: dst[i] = ((const int64_t *)raw->data)[i]; break;
    case DT_F32: case DT_F64: case DT_COUNT: case DT_BOOL: break;
    }
    if (dst[i] < 0) {
      long long bad = dst[i];
      rt_tensor_free(y);
      return rt_fail(err, RT_ERR_FORMAT, "%s: label %lld of sample %lld is "
                     "negative; expected class labels 0, 1, ...", path, bad,
                     (long long)i);
    }
  }
  return RT_OK;
}

static RtStatus float_targets(RtTensor *raw, const char *path, int allow,
                              RtTensor *y, RtError *err) {
  if (!allow)
    return rt_fail(err, RT_ERR_DTYPE, "%s: labels are %s, expected an integer "
                   "type", path, rt_dtype_name(raw->dtype));
  if (raw->rank > 2)
    return rt_fail(err, RT_ERR_SHAPE, "%s: targets of rank %d, expected [n] or "
                   "[n, k]", path, raw->rank);
  return to_features(raw, path, y, err);
}

/* raw to i64 labels [n], or with allow_float an f32 y for regression. */
static RtStatus to_labels(RtTensor *raw, const char *path, int allow_float,
                          RtTensor *y, RtError *err) {
  switch (raw->dtype) {
  case DT_U8: case DT_I32: case DT_I64:
    if (raw->rank != 1)
      return rt_fail(err, RT_ERR_SHAPE, "%s: labels of rank %d, expected one "
                     "label per sample [n]", path, raw->rank);
    return int_labels(raw, path, y, err);
  case DT_F32: case DT_F64:
    return float_targets(raw, path, allow_float, y, err);
  case DT_COUNT: case DT_BOOL: break;
  }
  return rt_fail(err, RT_ERR_DTYPE, "%s: unknown element type", path);
}

static RtStatus read_features(RtReader rd, const char *path, RtTensor *x,
                              RtError *err) {
  RtTensor raw;
  RtStatus st = rd(path, &raw, err);
  if (st != RT_OK) return st;
  st = to_features(&raw, path, x, err);
  rt_tensor_free(&raw);
  return st;
}

static RtStatus read_labels(RtReader rd, const char *path, int allow_float,
                            RtTensor *y, RtError *err) {
  RtTensor raw;
  RtStatus st = rd(path, &raw, err);
  if (st != RT_OK) return st;
  st = to_labels(&raw, path, allow_float, y, err);
  rt_tensor_free(&raw);
  return st;
}

static RtStatus load_pair(RtReader rd, const char *xpath, const char *ypath,
                          int allow_float, RtDataset *out, RtError *err) {
  memset(out, 0, sizeof *out);
  RtTensor x = {0}, y = {0};
  RtStatus st = read_features(rd, xpath, &x, err);
  if (st == RT_OK) st = read_labels(rd, ypath, allow_float, &y, err);
  if (st == RT_OK && x.shape[0] != y.shape[0])
    st = rt_fail(err, RT_ERR_SHAPE, "%s has %lld samples but %s has %lld "
                 "labels; expected the same number", xpath, (long long)x.shape[0],
                 ypath, (long long)y.shape[0]);
  if (st != RT_OK) {
    rt_tensor_free(&x);
    rt_tensor_free(&y);
    return st;
  }
  out->x = x;
  out->y = y;
  out->n = x.shape[0];
  return RT_OK;
}

/* --- named columns --------------------------------------------------------- */

static RtStatus read_column(const char *path, RtTensor *t, RtError *err) {
  RtStatus st = rt_npy_read(path, t, err);
  if (st == RT_OK && t->rank < 1) {
    rt_tensor_free(t);
    st = rt_fail(err, RT_ERR_SHAPE, "%s: a scalar, expected rows [n, ...]", path);
  }
  return st;
}

RtStatus rt_data_npy_columns(const char *const *paths, int count,
                             RtDataset *out, RtError *err) {
  memset(out, 0, sizeof *out);
  if (count < 1 || count > RT_DATA_MAX_COLS)
    return rt_fail(err, RT_ERR_FORMAT, "%d files: expected 1 to %d", count,
                   RT_DATA_MAX_COLS);
  RtStatus st = RT_OK;
  for (int c = 0; c < count && st == RT_OK; c++) {
    st = read_column(paths[c], &out->cols[c], err);
    if (st == RT_OK) out->ncols = c + 1;
    if (st == RT_OK && out->cols[c].shape[0] != out->cols[0].shape[0])
      st = rt_fail(err, RT_ERR_SHAPE, "%s has %lld rows but %s has %lld; "
                   "every file needs one row per sample", paths[c],
                   (long long)out->cols[c].shape[0], paths[0],
                   (long long)out->cols[0].shape[0]);
  }
  if (st != RT_OK) rt_dataset_free(out);
  else out->n = out->cols[0].shape[0];
  return st;
}

/* --- loaders ---------------------------------------------------------------- */

RtStatus rt_data_idx(const char *images, const char *labels, RtDataset *out,
                     RtError *err) {
  return load_pair(rt_idx_read, images, labels, 0, out, err);
}

RtStatus rt_data_npy(const char *xpath, const char *ypath, RtDataset *out,
                     RtError *err) {
  return load_pair(rt_npy_read, xpath, ypath, 1, out, err);
}

static RtStatus fashion_part(const char *dir, const char *part, RtDataset *out,
                             RtError *err) {
  char xp[4096], yp[4096];
  int nx = snprintf(xp, sizeof xp, "%s/%s-images-idx3-ubyte.gz", dir, part);
  int ny = snprintf(yp, sizeof yp, "%s/%s-labels-idx1-ubyte.gz", dir, part);
  memset(out, 0, sizeof *out);
  if (nx < 0 || ny < 0 || (size_t)nx >= sizeof xp || (size_t)ny >= sizeof yp)
    return rt_fail(err, RT_ERR_IO, "%s: directory name too long", dir);
  RtStatus st = rt_data_idx(xp, yp, out, err);
  if (st == RT_OK && (out->x.rank != 3 || out->x.shape[1] != 28 ||
                      out->x.shape[2] != 28)) {
    char have[200];
    rt_shape_str(have, sizeof have, DT_U8, out->x.rank, out->x.shape);
    st = rt_fail(err, RT_ERR_SHAPE, "%s: images are %s, expected u8[n, 28, 28]",
                 xp, have);
  }
  if (st == RT_OK) st = rt_dataset_check_labels(out, 10, yp, err);
  if (st != RT_OK) rt_dataset_free(out);
  return st;
}

RtStatus rt_data_fashion_mnist(const char *dir, RtDataset *train,
                               RtDataset *test, RtError *err) {
  memset(test, 0, sizeof *test);
  RtStatus st = fashion_part(dir, "train", train, err);
  if (st == RT_OK) st = fashion_part(dir, "t10k", test, err);
  if (st != RT_OK) rt_dataset_free(train);
  return st;
}

/* --- CSV -------------------------------------------------------------------- */

/* 1 when line (as getline returns it) is blank the way rt_csv_read sees it:
 * nothing but its LF or CRLF. */
static int csv_blank(const char *line, ssize_t len) {
  if (len > 0 && line[len - 1] == '\n') len--;
  if (len > 0 && line[len - 1] == '\r') len--;
  return len == 0;
}

/* The file line (1-based) of data row `row`, found by reading the file
 * again the way rt_csv_read does: blank lines are skipped, and the first
 * non-blank line is a header exactly when there are more non-blank lines
 * than data rows.  Only called to name the line in an error; 0 if the
 * file cannot be read again. */
static long csv_line_of_row(const char *path, int64_t row, int64_t rows) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int64_t nonblank = 0;
  while ((len = getline(&line, &cap, f)) >= 0) nonblank += !csv_blank(line, len);
  int64_t want = row + (nonblank > rows), seen = 0;
  long lineno = 0, found = 0;
  rewind(f);
  while (!found && (len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    if (!csv_blank(line, len) && seen++ == want) found = lineno;
  }
  free(line);
  fclose(f);
  return found;
}

static RtStatus csv_bad_label(const char *path, int64_t row, int64_t rows,
                              int column, double v, RtError *err) {
  long line = csv_line_of_row(path, row, rows);
  char where[64] = "";
  if (line > 0) snprintf(where, sizeof where, "%ld:", line);
  return rt_fail(err, RT_ERR_FORMAT, "%s:%s label (column %d) is %.9g, expected "
                 "an integer class label 0..%.0f", path, where, column, v,
                 CSV_MAX_LABEL);
}

static RtStatus csv_split(const RtTensor *t, const char *path, int64_t label,
                          RtDataset *out, RtError *err) {
  int64_t rows = t->shape[0], cols = t->shape[1];
  int64_t xshape[2] = {rows, cols - 1};
  RtStatus st = rt_tensor_alloc(&out->x, DT_F32, 2, xshape, err);
  if (st == RT_OK) st = rt_tensor_alloc(&out->y, DT_I64, 1, &rows, err);
  if (st != RT_OK) return st;
  const float *src = t->data;
  float *x = out->x.data;
  int64_t *y = out->y.data;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t c = 0; c < cols; c++) {
      double v = src[r * cols + c];
      if (c != label) {
        *x++ = (float)v;
      } else if (v >= 0 && v <= CSV_MAX_LABEL && v == floor(v)) {
        y[r] = (int64_t)v;
      } else {
        return csv_bad_label(path, r, rows, (int)label, v, err);
      }
    }
  }
  out->n = rows;
  return RT_OK;
}

RtStatus rt_data_csv(const char *path, int label_column, RtDataset *out,
                     RtError *err) {
  memset(out, 0, sizeof *out);
  RtTensor t;
  RtStatus st = rt_csv_read(path, &t, err);
  if (st != RT_OK) return st;
  int64_t cols = t.shape[1];
  int64_t label = label_column == -1 ? cols - 1 : label_column;
  if (cols < 2)
    st = rt_fail(err, RT_ERR_SHAPE, "%s: %lld column, expected at least one "
                 "feature column and a label column", path, (long long)cols);
  else if (label_column < -1 || label >= cols)
    st = rt_fail(err, RT_ERR_SHAPE, "%s: label column %d is out of range: the "
                 "file has columns 0..%lld (-1 = the last)", path, label_column,
                 (long long)cols - 1);
  else
    st = csv_split(&t, path, label, out, err);
  rt_tensor_free(&t);
  if (st != RT_OK) rt_dataset_free(out);
  return st;
}

/* --- split, epoch order, batches ------------------------------------------- */

void rt_epoch_order(int64_t n, uint64_t seed, int64_t epoch, int shuffle,
                    int64_t *idx) {
  for (int64_t i = 0; i < n; i++) idx[i] = i;
  if (!shuffle || n < 2) return;
  char name[40];
  snprintf(name, sizeof name, "epoch/%lld", (long long)epoch);
  RtRng r;
  rt_rng_seed_stream(&r, seed, name);
  rt_rng_shuffle(&r, idx, n);
}

void rt_rows_gather(const RtTensor *t, const int64_t *idx, int64_t count,
                    void *out) {
  size_t sb = sample_bytes(t);
  const char *src = t->data;
  char *dst = out;
  for (int64_t i = 0; i < count; i++)
    memcpy(dst + (size_t)i * sb, src + (size_t)idx[i] * sb, sb);
}

void rt_batch_gather(const RtDataset *d, const int64_t *idx, int64_t count,
                     void *x_out, void *y_out) {
  rt_rows_gather(&d->x, idx, count, x_out);
  if (y_out) rt_rows_gather(&d->y, idx, count, y_out);
}

static RtStatus alloc_rows(const RtTensor *like, int64_t n, RtTensor *out,
                           RtError *err) {
  int64_t shape[RT_MAX_RANK];
  memcpy(shape, like->shape, sizeof shape);
  shape[0] = n;
  return rt_tensor_alloc(out, like->dtype, like->rank, shape, err);
}

/* out = the samples idx[0..count) of all, column by column. */
static RtStatus subset_columns(const RtDataset *all, const int64_t *idx,
                               int64_t count, RtDataset *out, RtError *err) {
  for (int c = 0; c < all->ncols; c++) {
    RtStatus st = alloc_rows(&all->cols[c], count, &out->cols[c], err);
    if (st != RT_OK) return st;
    out->ncols = c + 1;
    rt_rows_gather(&all->cols[c], idx, count, out->cols[c].data);
  }
  out->n = count;
  return RT_OK;
}

/* out = the samples idx[0..count) of all. */
static RtStatus subset(const RtDataset *all, const int64_t *idx, int64_t count,
                       RtDataset *out, RtError *err) {
  if (all->ncols) return subset_columns(all, idx, count, out, err);
  RtStatus st = alloc_rows(&all->x, count, &out->x, err);
  if (st == RT_OK) st = alloc_rows(&all->y, count, &out->y, err);
  if (st != RT_OK) return st;
  rt_batch_gather(all, idx, count, out->x.data, out->y.data);
  out->n = count;
  return RT_OK;
}

/* Marks the val samples with a seeded shuffle, then lists each part's
 * indices in ascending order: val first in idx, train after it. */
static void split_indices(int64_t n, int64_t nval, uint64_t seed, int64_t *idx,
                          char *in_val) {
  RtRng r;
  for (int64_t i = 0; i < n; i++) idx[i] = i;
  rt_rng_seed_stream(&r, seed, "split");
  rt_rng_shuffle(&r, idx, n);
  for (int64_t i = 0; i < n; i++) in_val[i] = 0;
  for (int64_t i = 0; i < nval; i++) in_val[idx[i]] = 1;
  int64_t v = 0, t = nval;
  for (int64_t i = 0; i < n; i++) idx[in_val[i] ? v++ : t++] = i;
}

/* Keeps rows idx[0..count) of t (ascending, so idx[i] >= i) in place as
 * its first count rows, and gives the rest of the memory back. */
static void keep_rows(RtTensor *t, const int64_t *idx, int64_t count) {
  size_t sb = sample_bytes(t);
  char *d = t->data;
  for (int64_t i = 0; i < count; i++)
    if (idx[i] != i) memmove(d + (size_t)i * sb, d + (size_t)idx[i] * sb, sb);
  int64_t had = t->shape[0];
  t->shape[0] = count;
  void *shrunk = count && sb && count < had ? realloc(t->data, (size_t)count * sb) : NULL;
  if (shrunk) t->data = shrunk;
}

/* train = the samples idx[0..count) of all, moved within all's own
 * memory (all is left empty): a copy would take as much memory again,
 * and its first touch of each page was a third of the time before the
 * first step of a Fashion-MNIST run. */
static void take_rows(RtDataset *all, const int64_t *idx, int64_t count, RtDataset *train) {
  if (all->ncols)
    for (int c = 0; c < all->ncols; c++) keep_rows(&all->cols[c], idx, count);
  else
    keep_rows(&all->x, idx, count), keep_rows(&all->y, idx, count);
  all->n = count;
  *train = *all;
  memset(all, 0, sizeof *all);
}

static RtStatus split(RtDataset *all, double frac, uint64_t seed,
                      RtDataset *train, RtDataset *val, RtError *err) {
  if (!(frac >= 0 && frac <= 1))
    return rt_fail(err, RT_ERR_FORMAT, "validation fraction %g is out of "
                   "range: expected 0 <= fraction <= 1", frac);
  int64_t n = all->n, nval = llround((double)n * frac);
  int64_t *idx = rt_malloc(sizeof *idx * (size_t)(n ? n : 1));
  char *in_val = rt_malloc((size_t)(n ? n : 1));
  RtStatus st = RT_OK;
  if (!idx || !in_val)
    st = rt_fail(err, RT_ERR_NOMEM, "out of memory splitting %lld samples",
                 (long long)n);
  if (st == RT_OK) {
    split_indices(n, nval, seed, idx, in_val);
    st = subset(all, idx, nval, val, err);
  }
  if (st == RT_OK) take_rows(all, idx + nval, n - nval, train);
  free(idx);
  free(in_val);
  return st;
}

RtStatus rt_dataset_split(RtDataset *all, double val_fraction, uint64_t seed,
                          RtDataset *train, RtDataset *val, RtError *err) {
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  RtStatus st = split(all, val_fraction, seed, train, val, err);
  if (st != RT_OK) {
    rt_dataset_free(train);
    rt_dataset_free(val);
  }
  rt_dataset_free(all);
  return st;
}
