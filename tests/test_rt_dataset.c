/*
 * test_rt_dataset.c — training data and metrics: the loaders (Fashion-MNIST
 * when it is installed, and tiny IDX/CSV/.npy sets with one-defect variants
 * from tests/fixtures/data/gen.py), reshape, split, the epoch order, batch
 * gathering, top-k accuracy and the atomic metrics CSV.
 */
#include <criterion/criterion.h>
#include <sys/stat.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

#define DATA(name) FIXTURE("data/" name)
#define FASHION "/usr/share/datasets/fashion-mnist"

/* The fixture formulas of gen.py. */
static float pixel(int64_t i) { return (float)((i * 37) % 256) / 255.0f; }
static float feat(int64_t i) { return (float)(i * 0.5 - 1); }
static int64_t label5(int64_t s) { return s * 3 % 5; }

static void expect_near(float got, float want, const char *what, int64_t i) {
  cr_expect(fabsf(got - want) <= 1e-6f, "%s[%lld] = %.9g, want %.9g", what,
            (long long)i, got, want);
}

static void expect_fail(RtStatus st, RtStatus want, const RtError *err,
                        const RtDataset *d, const char *needle) {
  cr_expect_eq(st, want, "status %d, want %d (%s)", st, want, err->msg);
  cr_expect(strstr(err->msg, needle) != NULL, "message lacks '%s': %s", needle,
            err->msg);
  cr_expect_null(d->x.data);
  cr_expect_null(d->y.data);
  cr_expect_eq(d->n, 0);
}

static RtDataset make_set(int64_t n, int64_t features) {
  RtDataset d = {0};
  RtError err;
  int64_t xs[2] = {n, features};
  cr_assert_eq(rt_tensor_alloc(&d.x, DT_F32, 2, xs, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&d.y, DT_I64, 1, &n, &err), RT_OK);
  for (int64_t i = 0; i < n * features; i++) ((float *)d.x.data)[i] = (float)i;
  for (int64_t i = 0; i < n; i++) ((int64_t *)d.y.data)[i] = i;
  d.n = n;
  return d;
}

/* --- Fashion-MNIST ---------------------------------------------------------- */

static int have_fashion(void) {
  struct stat sb;
  return stat(FASHION "/train-images-idx3-ubyte.gz", &sb) == 0;
}

static void check_fashion(const RtDataset *d, int64_t n, int64_t per_class) {
  cr_assert_eq(d->n, n);
  cr_assert_eq(d->x.dtype, DT_F32);
  cr_assert_eq(d->x.rank, 3);
  cr_expect_eq(d->x.shape[1], 28);
  cr_expect_eq(d->x.shape[2], 28);
  cr_assert_eq(d->y.dtype, DT_I64);
  const float *x = d->x.data;
  float lo = 1, hi = 0;
  for (int64_t i = 0; i < n * 784; i++) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  cr_expect(lo == 0.0f && hi == 1.0f, "pixel range [%g, %g]", lo, hi);
  int64_t counts[10] = {0};
  for (int64_t i = 0; i < n; i++) counts[((int64_t *)d->y.data)[i]]++;
  for (int c = 0; c < 10; c++)
    cr_expect_eq(counts[c], per_class, "class %d: %lld", c, (long long)counts[c]);
  cr_expect_eq(rt_dataset_max_label(d), 9);
}

Test(rt_dataset, fashion_mnist_real_files) {
  if (!have_fashion()) cr_skip_test("no Fashion-MNIST in " FASHION);
  RtDataset train, test;
  RtError err;
  cr_assert_eq(rt_data_fashion_mnist(FASHION, &train, &test, &err), RT_OK, "%s",
               err.msg);
  check_fashion(&train, 60000, 6000);
  check_fashion(&test, 10000, 1000);
  int64_t flat = 784;
  cr_assert_eq(rt_dataset_reshape(&train, 1, &flat, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(train.x.rank, 2);
  cr_expect_eq(train.x.shape[1], 784);
  rt_dataset_free(&train);
  rt_dataset_free(&test);
}

Test(rt_dataset, fashion_mnist_tiny_layout) {
  RtDataset train, test;
  RtError err;
  cr_assert_eq(rt_data_fashion_mnist(DATA("fashion_tiny"), &train, &test, &err),
               RT_OK, "%s", err.msg);
  cr_expect_eq(train.n, 4);
  cr_expect_eq(test.n, 3);
  for (int64_t i = 0; i < 4 * 784; i++) expect_near(((float *)train.x.data)[i], pixel(i), "x", i);
  for (int64_t s = 0; s < 3; s++) cr_expect_eq(((int64_t *)test.y.data)[s], s * 3 % 10);
  rt_dataset_free(&train);
  rt_dataset_free(&test);
}

Test(rt_dataset, fashion_mnist_label_out_of_range) {
  RtDataset train, test;
  RtError err;
  RtStatus st = rt_data_fashion_mnist(DATA("fashion_badlabel"), &train, &test, &err);
  expect_fail(st, RT_ERR_FORMAT, &err, &train, "train-labels-idx1-ubyte.gz: label "
              "10 of sample 2 is out of range for 10 classes (0..9); the largest "
              "label is 10");
  cr_expect_null(test.x.data);
  st = rt_data_fashion_mnist(DATA("no_such_dir"), &train, &test, &err);
  expect_fail(st, RT_ERR_IO, &err, &train, "no_such_dir/train-images-idx3-ubyte.gz");
}

/* --- IDX, CSV, .npy ------------------------------------------------------- */

Test(rt_dataset, idx_pair) {
  RtDataset d;
  RtError err;
  cr_assert_eq(rt_data_idx(DATA("images_5x2x3.idx.gz"), DATA("labels_5.idx"), &d,
                           &err), RT_OK, "%s", err.msg);
  cr_assert_eq(d.n, 5);
  cr_expect_eq(d.x.rank, 3);
  cr_expect_eq(rt_dataset_features(&d), 6);
  for (int64_t i = 0; i < 30; i++) expect_near(((float *)d.x.data)[i], pixel(i), "x", i);
  for (int64_t s = 0; s < 5; s++) cr_expect_eq(((int64_t *)d.y.data)[s], label5(s));
  cr_expect_eq(rt_dataset_max_label(&d), 4);
  cr_expect_eq(rt_dataset_check_labels(&d, 5, "idx", &err), RT_OK);
  cr_expect_eq(rt_dataset_check_labels(&d, 4, "idx", &err), RT_ERR_FORMAT);
  cr_expect(strstr(err.msg, "label 4 of sample 3") != NULL, "%s", err.msg);
  rt_dataset_free(&d);
}

Test(rt_dataset, idx_float_images_are_kept_as_they_are) {
  RtDataset d;
  RtError err;
  cr_assert_eq(rt_data_idx(DATA("f32_5x4.idx"), DATA("labels_5.idx"), &d, &err),
               RT_OK, "%s", err.msg);
  for (int64_t i = 0; i < 20; i++) cr_expect_eq(((float *)d.x.data)[i], feat(i));
  rt_dataset_free(&d);
}

Test(rt_dataset, idx_bad_pairs) {
  RtDataset d;
  RtError err;
  RtStatus st = rt_data_idx(DATA("images_5x2x3.idx.gz"), DATA("labels_4.idx"), &d, &err);
  expect_fail(st, RT_ERR_SHAPE, &err, &d, "images_5x2x3.idx.gz has 5 samples but");
  cr_expect(strstr(err.msg, "labels_4.idx has 4 labels") != NULL, "%s", err.msg);
  st = rt_data_idx(DATA("images_5x2x3.idx.gz"), DATA("labels_neg.idx"), &d, &err);
  expect_fail(st, RT_ERR_FORMAT, &err, &d, "labels_neg.idx: label -2 of sample 3 is negative");
  st = rt_data_idx(DATA("images_5x2x3.idx.gz"), DATA("f32_5x4.idx"), &d, &err);
  expect_fail(st, RT_ERR_DTYPE, &err, &d, "f32_5x4.idx: labels are f32, expected an integer");
}

static void check_csv(const char *path, int column) {
  RtDataset d;
  RtError err;
  cr_assert_eq(rt_data_csv(path, column, &d, &err), RT_OK, "%s: %s", path, err.msg);
  cr_assert_eq(d.n, 6);
  cr_assert_eq(d.x.rank, 2);
  cr_expect_eq(d.x.shape[1], 3);
  for (int64_t i = 0; i < 18; i++) cr_expect_eq(((float *)d.x.data)[i], feat(i));
  for (int64_t s = 0; s < 6; s++) cr_expect_eq(((int64_t *)d.y.data)[s], label5(s));
  rt_dataset_free(&d);
}

Test(rt_dataset, csv_label_last_or_first) {
  check_csv(DATA("last.csv"), -1);
  check_csv(DATA("last.csv"), 3);
  check_csv(DATA("first.csv"), 0);
}

Test(rt_dataset, csv_bad_labels_name_the_line) {
  RtDataset d;
  RtError err;
  RtStatus st = rt_data_csv(DATA("frac_label.csv"), -1, &d, &err);
  expect_fail(st, RT_ERR_FORMAT, &err, &d, "frac_label.csv:7: label (column 3) is 2.5");
  st = rt_data_csv(DATA("neg_label.csv"), -1, &d, &err);
  expect_fail(st, RT_ERR_FORMAT, &err, &d, "neg_label.csv:2: label (column 3) is -1");
  st = rt_data_csv(DATA("last.csv"), 4, &d, &err);
  expect_fail(st, RT_ERR_SHAPE, &err, &d, "label column 4 is out of range");
  st = rt_data_csv(DATA("last.csv"), -2, &d, &err);
  expect_fail(st, RT_ERR_SHAPE, &err, &d, "label column -2 is out of range");
  st = rt_data_csv(DATA("one_column.csv"), -1, &d, &err);
  expect_fail(st, RT_ERR_SHAPE, &err, &d, "one_column.csv: 1 column");
  st = rt_data_csv(DATA("missing.csv"), -1, &d, &err);
  expect_fail(st, RT_ERR_IO, &err, &d, "missing.csv: cannot open");
}

Test(rt_dataset, npy_classification_and_regression) {
  RtDataset d;
  RtError err;
  cr_assert_eq(rt_data_npy(DATA("x_6x3.npy"), DATA("y_6_i32.npy"), &d, &err), RT_OK,
               "%s", err.msg);
  cr_expect_eq(d.n, 6);
  cr_expect_eq(d.y.dtype, DT_I64);
  for (int64_t i = 0; i < 18; i++) cr_expect_eq(((float *)d.x.data)[i], feat(i));
  for (int64_t s = 0; s < 6; s++) cr_expect_eq(((int64_t *)d.y.data)[s], label5(s));
  rt_dataset_free(&d);
  cr_assert_eq(rt_data_npy(DATA("x_u8_6x2.npy"), DATA("y_6_f64.npy"), &d, &err), RT_OK,
               "%s", err.msg);
  cr_expect_eq(d.y.dtype, DT_F32);
  for (int64_t i = 0; i < 12; i++) expect_near(((float *)d.x.data)[i], pixel(i), "x", i);
  for (int64_t s = 0; s < 6; s++) cr_expect_eq(((float *)d.y.data)[s], feat(s) * 10);
  cr_expect_eq(rt_dataset_max_label(&d), -1);
  rt_dataset_free(&d);
  cr_assert_eq(rt_data_npy(DATA("x_6x3.npy"), DATA("y_6x2_f32.npy"), &d, &err), RT_OK,
               "%s", err.msg);
  cr_expect_eq(d.y.rank, 2);
  int64_t batch[2] = {5, 0};
  float xb[6], yb[4];
  rt_batch_gather(&d, batch, 2, xb, yb);
  cr_expect_eq(xb[0], feat(15));
  cr_expect_eq(yb[1], feat(11));
  cr_expect_eq(yb[3], feat(1));
  rt_dataset_free(&d);
}

Test(rt_dataset, npy_bad_pairs) {
  RtDataset d;
  RtError err;
  RtStatus st = rt_data_npy(DATA("x_6x3.npy"), DATA("y_5_i64.npy"), &d, &err);
  expect_fail(st, RT_ERR_SHAPE, &err, &d, "x_6x3.npy has 6 samples but");
  st = rt_data_npy(DATA("x_6x3.npy"), DATA("y_neg.npy"), &d, &err);
  expect_fail(st, RT_ERR_FORMAT, &err, &d, "y_neg.npy: label -7 of sample 5 is negative");
  st = rt_data_npy(DATA("x_6x3.npy"), DATA("x_u8_6x2.npy"), &d, &err);
  expect_fail(st, RT_ERR_SHAPE, &err, &d, "x_u8_6x2.npy: labels of rank 2");
}

/* Named columns keep their dtypes and shapes, and the split moves a
 * sample's row of every column together: row r of each part still has
 * tokens[r] = 10 * ids[r] and the same sample number in feats. */
Test(rt_dataset, npy_columns_split_rows_together) {
  const char *dir = tu_scratch_dir();
  int64_t n = 23, fshape[3] = {n, 2, 2}, tshape[2] = {n, 3};
  RtTensor feats, tokens, ids;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&feats, DT_F32, 3, fshape, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&tokens, DT_I64, 2, tshape, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&ids, DT_I32, 1, &n, &err), RT_OK);
  for (int64_t i = 0; i < n; i++) {
    for (int k = 0; k < 4; k++) ((float *)feats.data)[i * 4 + k] = (float)i + 0.25f * (float)k;
    for (int k = 0; k < 3; k++) ((int64_t *)tokens.data)[i * 3 + k] = 10 * i + k;
    ((int32_t *)ids.data)[i] = (int32_t)i;
  }
  char paths[3][600];
  const RtTensor *ts[3] = {&feats, &tokens, &ids};
  const char *names[3] = {"f.npy", "t.npy", "i.npy"};
  for (int c = 0; c < 3; c++) {
    snprintf(paths[c], sizeof paths[c], "%s/%s", dir, names[c]);
    cr_assert_eq(rt_npy_write(paths[c], ts[c], &err), RT_OK, "%s", err.msg);
  }
  const char *ps[3] = {paths[0], paths[1], paths[2]};
  RtDataset all, train, val;
  cr_assert_eq(rt_data_npy_columns(ps, 3, &all, &err), RT_OK, "%s", err.msg);
  cr_expect(all.n == n && all.ncols == 3 && all.cols[0].dtype == DT_F32 && all.cols[1].dtype == DT_I64 &&
            all.cols[2].dtype == DT_I32 && all.cols[0].rank == 3 && all.cols[1].shape[1] == 3);
  cr_assert_eq(rt_dataset_split(&all, 0.3, 5, &train, &val, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(train.n + val.n, n);
  cr_expect_eq(val.n, 7);
  const RtDataset *parts[2] = {&train, &val};
  for (int p = 0; p < 2; p++)
    for (int64_t r = 0; r < parts[p]->n; r++) {
      int32_t id = ((int32_t *)parts[p]->cols[2].data)[r];
      cr_expect_eq(((int64_t *)parts[p]->cols[1].data)[r * 3 + 2], 10 * id + 2, "part %d row %lld", p, (long long)r);
      cr_expect_eq(((float *)parts[p]->cols[0].data)[r * 4 + 3], (float)id + 0.75f, "part %d row %lld", p, (long long)r);
    }
  /* a batch gathers the same rows of each column */
  int64_t idx[2] = {4, 1};
  int64_t tok[6];
  rt_rows_gather(&train.cols[1], idx, 2, tok);
  cr_expect_eq(tok[0], ((int64_t *)train.cols[1].data)[12]);
  cr_expect_eq(tok[5], ((int64_t *)train.cols[1].data)[5]);
  rt_dataset_free(&train);
  rt_dataset_free(&val);

  /* different row counts name both files; nothing is left allocated */
  int64_t m = 5;
  RtTensor short_ids;
  cr_assert_eq(rt_tensor_alloc(&short_ids, DT_I32, 1, &m, &err), RT_OK);
  memset(short_ids.data, 0, sizeof(int32_t) * 5);
  char shortp[600];
  snprintf(shortp, sizeof shortp, "%s/short.npy", dir);
  cr_assert_eq(rt_npy_write(shortp, &short_ids, &err), RT_OK);
  const char *bad[2] = {paths[0], shortp};
  cr_expect_eq(rt_data_npy_columns(bad, 2, &all, &err), RT_ERR_SHAPE);
  cr_expect(strstr(err.msg, "short.npy has 5 rows but") && strstr(err.msg, "f.npy has 23"), "%s", err.msg);
  cr_expect(all.ncols == 0 && all.cols[0].data == NULL && all.n == 0);
  cr_expect_eq(rt_data_npy_columns(bad, 0, &all, &err), RT_ERR_FORMAT);
  rt_tensor_free(&feats);
  rt_tensor_free(&tokens);
  rt_tensor_free(&ids);
  rt_tensor_free(&short_ids);
}

Test(rt_dataset, reshape_checks_the_sample_size) {
  RtDataset d = make_set(4, 12);
  RtError err;
  int64_t ok[3] = {3, 2, 2}, bad[2] = {5, 2}, neg[2] = {-3, -4};
  cr_assert_eq(rt_dataset_reshape(&d, 3, ok, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(d.x.rank, 4);
  cr_expect_eq(d.x.shape[0], 4);
  cr_expect_eq(d.x.shape[3], 2);
  cr_expect_eq(rt_dataset_reshape(&d, 2, bad, &err), RT_ERR_SHAPE);
  cr_expect(strstr(err.msg, "f32[3, 2, 2] to f32[5, 2]: 12 elements per sample, "
                   "expected 10") != NULL, "%s", err.msg);
  cr_expect_eq(rt_dataset_reshape(&d, 2, neg, &err), RT_ERR_SHAPE);
  cr_expect_eq(rt_dataset_reshape(&d, RT_MAX_RANK, ok, &err), RT_ERR_SHAPE);
  cr_expect_eq(d.x.rank, 4);
  rt_dataset_free(&d);
}

/* --- split, epoch order, gather -------------------------------------------- */

static void split_ok(int64_t n, double frac, uint64_t seed, RtDataset *train,
                     RtDataset *val) {
  RtDataset all = make_set(n, 2);
  RtError err;
  cr_assert_eq(rt_dataset_split(&all, frac, seed, train, val, &err), RT_OK, "%s",
               err.msg);
  cr_expect_null(all.x.data);
}

Test(rt_dataset, split_sizes_and_disjointness) {
  RtDataset train, val;
  split_ok(101, 0.2, 7, &train, &val);
  cr_assert_eq(val.n, 20);
  cr_assert_eq(train.n, 81);
  char seen[101] = {0};
  const RtDataset *parts[2] = {&train, &val};
  for (int p = 0; p < 2; p++) {
    const int64_t *y = parts[p]->y.data;
    const float *x = parts[p]->x.data;
    for (int64_t i = 0; i < parts[p]->n; i++) {
      cr_expect_eq(seen[y[i]], 0, "sample %lld twice", (long long)y[i]);
      seen[y[i]] = 1;
      cr_expect_eq(x[2 * i + 1], (float)(2 * y[i] + 1), "x follows y");
      if (i > 0) cr_expect_gt(y[i], y[i - 1], "original order kept");
    }
  }
  rt_dataset_free(&train);
  rt_dataset_free(&val);
  split_ok(10, 0.25, 7, &train, &val);   /* 2.5 rounds half away from zero */
  cr_expect_eq(val.n, 3);
  rt_dataset_free(&train);
  rt_dataset_free(&val);
}

Test(rt_dataset, split_zero_and_one) {
  RtDataset train, val;
  split_ok(10, 0, 1, &train, &val);
  cr_expect_eq(val.n, 0);
  cr_expect_eq(val.x.shape[0], 0);
  cr_expect_eq(val.x.shape[1], 2);
  cr_expect_eq(train.n, 10);
  for (int64_t i = 0; i < 10; i++) cr_expect_eq(((int64_t *)train.y.data)[i], i);
  rt_dataset_free(&train);
  rt_dataset_free(&val);
  split_ok(10, 1, 1, &train, &val);
  cr_expect_eq(train.n, 0);
  cr_expect_eq(val.n, 10);
  rt_dataset_free(&train);
  rt_dataset_free(&val);
}

/* The training part is the samples moved within the whole set's memory,
 * not a copy of them (Fashion-MNIST: 188 MB more, a third of the time
 * before a run's first step): with no validation part it is the very
 * buffer; with one, its rows are the ones the copy would hold. */
Test(rt_dataset, split_keeps_the_training_rows_in_place) {
  RtDataset all = make_set(1000, 3), train, val;
  const void *x = all.x.data, *y = all.y.data;
  RtError err;
  cr_assert_eq(rt_dataset_split(&all, 0, 9, &train, &val, &err), RT_OK, "%s", err.msg);
  cr_expect(train.x.data == x && train.y.data == y, "the training rows were copied");
  cr_expect(all.x.data == NULL && all.y.data == NULL && all.n == 0);
  rt_dataset_free(&train);
  rt_dataset_free(&val);
  all = make_set(1000, 3);
  cr_assert_eq(rt_dataset_split(&all, 0.37, 9, &train, &val, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(train.n, 630);
  cr_expect_eq(train.x.shape[0], 630);
  for (int64_t i = 0; i < train.n; i++) {
    int64_t id = ((const int64_t *)train.y.data)[i];
    cr_expect(i == 0 || id > ((const int64_t *)train.y.data)[i - 1]);
    for (int k = 0; k < 3; k++)
      cr_expect_eq(((const float *)train.x.data)[i * 3 + k], (float)(3 * id + k), "row %lld", (long long)i);
  }
  rt_dataset_free(&train);
  rt_dataset_free(&val);
}

Test(rt_dataset, split_is_deterministic_by_seed) {
  RtDataset t1, v1, t2, v2, t3, v3;
  split_ok(200, 0.3, 42, &t1, &v1);
  split_ok(200, 0.3, 42, &t2, &v2);
  split_ok(200, 0.3, 43, &t3, &v3);
  cr_expect_eq(memcmp(v1.y.data, v2.y.data, 60 * sizeof(int64_t)), 0);
  cr_expect_neq(memcmp(v1.y.data, v3.y.data, 60 * sizeof(int64_t)), 0);
  RtDataset *all[6] = {&t1, &v1, &t2, &v2, &t3, &v3};
  for (int i = 0; i < 6; i++) rt_dataset_free(all[i]);
}

Test(rt_dataset, split_refuses_a_bad_fraction) {
  RtDataset all = make_set(5, 1), train, val;
  RtError err;
  RtStatus st = rt_dataset_split(&all, 1.5, 0, &train, &val, &err);
  expect_fail(st, RT_ERR_FORMAT, &err, &train, "validation fraction 1.5");
  cr_expect_null(val.x.data);
  cr_expect_null(all.x.data);
}

static int is_permutation(const int64_t *idx, int64_t n) {
  char *seen = calloc((size_t)n, 1);
  int ok = 1;
  for (int64_t i = 0; i < n; i++) {
    if (idx[i] < 0 || idx[i] >= n || seen[idx[i]]) ok = 0;
    else seen[idx[i]] = 1;
  }
  free(seen);
  return ok;
}

Test(rt_dataset, epoch_order) {
  enum { N = 1000 };
  static int64_t a[N], b[N], c[N], d[N];
  rt_epoch_order(N, 5, 3, 1, a);
  rt_epoch_order(N, 5, 3, 1, b);
  rt_epoch_order(N, 5, 4, 1, c);
  cr_expect(is_permutation(a, N));
  cr_expect(is_permutation(c, N));
  cr_expect_eq(memcmp(a, b, sizeof a), 0, "same (seed, epoch), same order");
  cr_expect_neq(memcmp(a, c, sizeof a), 0, "epochs differ");
  /* The documented recipe: identity, then rt_rng_shuffle on stream "epoch/3". */
  RtRng r;
  for (int64_t i = 0; i < N; i++) d[i] = i;
  rt_rng_seed_stream(&r, 5, "epoch/3");
  rt_rng_shuffle(&r, d, N);
  cr_expect_eq(memcmp(a, d, sizeof a), 0);
  rt_epoch_order(N, 5, 3, 0, a);
  for (int64_t i = 0; i < N; i++) cr_expect_eq(a[i], i);
}

Test(rt_dataset, gather_full_and_partial_batches) {
  RtDataset d = make_set(10, 3);
  int64_t idx[10];
  rt_epoch_order(10, 9, 0, 1, idx);
  float x[4 * 3];
  int64_t y[4];
  for (int64_t start = 0; start < 10; start += 4) {
    int64_t count = 10 - start < 4 ? 10 - start : 4;
    memset(x, 0xff, sizeof x);
    rt_batch_gather(&d, idx + start, count, x, y);
    for (int64_t i = 0; i < count; i++) {
      cr_expect_eq(y[i], idx[start + i]);
      for (int f = 0; f < 3; f++) cr_expect_eq(x[i * 3 + f], (float)(idx[start + i] * 3 + f));
    }
    if (count < 4) cr_expect(isnan(x[count * 3]), "wrote past a partial batch");
  }
  rt_batch_gather(&d, idx, 2, x, NULL);
  cr_expect_eq(x[0], (float)(idx[0] * 3));
  rt_dataset_free(&d);
}

/* --- top-k ------------------------------------------------------------------ */

Test(rt_metrics, topk_on_hand_made_scores) {
  const float s[4 * 4] = {
    0.1f, 0.7f, 0.2f, 0.0f,    /* ranking 1 2 0 3 */
    0.5f, 0.5f, 0.1f, 0.5f,    /* ties: 0 1 3 2 */
    3.0f, 1.0f, 2.0f, 4.0f,    /* 3 0 2 1 */
    0.0f, NAN, 1.0f, 2.0f,     /* NaN first: 1 3 2 0 */
  };
  const int64_t lab[4] = {2, 1, 0, 1};
  cr_expect_eq(rt_topk_correct(s, lab, 4, 4, 1), 1);   /* row 3 */
  cr_expect_eq(rt_topk_correct(s, lab, 4, 4, 2), 4);
  cr_expect_eq(rt_topk_correct(s, lab, 4, 4, 4), 4);
  const int64_t lab3[4] = {3, 3, 1, 0};
  cr_expect_eq(rt_topk_correct(s, lab3, 4, 4, 1), 0);
  cr_expect_eq(rt_topk_correct(s, lab3, 4, 4, 3), 1);  /* row 1 only */
  cr_expect_eq(rt_topk_correct(s, lab3, 4, 4, 4), 4);
  const int64_t out_of_range[1] = {4};
  cr_expect_eq(rt_topk_correct(s, out_of_range, 1, 4, 4), 0);
  cr_expect_eq(rt_topk_correct(s, lab, 4, 4, 0), 0);
}

/* --- metrics CSV ---------------------------------------------------------- */

#define HEADER "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds"

Test(rt_metrics, csv_after_two_rows) {
  RtMetricsLog log;
  RtError err;
  cr_assert_eq(rt_metrics_init(&log, HEADER, &err), RT_OK);
  cr_expect_eq(log.cols, 7);
  double r1[7] = {1, 0.5, 0.8125, 0.25, 0.875, 0.001, 12.5};
  double r2[7] = {2, 0.125, 0.9, NAN, NAN, 0.0005, 25};
  char path[600];
  snprintf(path, sizeof path, "%s/metrics.csv", tu_scratch_dir());
  cr_assert_eq(rt_metrics_add(&log, r1, 7, &err), RT_OK);
  cr_assert_eq(rt_metrics_write(&log, path, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_metrics_add(&log, r2, 7, &err), RT_OK);
  cr_assert_eq(rt_metrics_write(&log, path, &err), RT_OK, "%s", err.msg);
  char *text = tu_read_file(path, NULL);
  cr_assert_not_null(text);
  cr_expect_str_eq(text, HEADER "\n1,0.5,0.8125,0.25,0.875,0.001,12.5\n"
                   "2,0.125,0.9,nan,nan,0.0005,25\n");
  free(text);
  cr_expect_eq(rt_metrics_add(&log, r1, 6, &err), RT_ERR_SHAPE);
  cr_expect(strstr(err.msg, "6 values, expected 7") != NULL, "%s", err.msg);
  cr_expect_eq(log.rows, 2);
  rt_metrics_free(&log);
}

Test(rt_metrics, failed_write_leaves_the_old_file) {
  RtMetricsLog log;
  RtError err;
  double row[2] = {1, 2};
  const char *dir = tu_scratch_dir();
  char path[600], bad[600];
  snprintf(path, sizeof path, "%s/m.csv", dir);
  snprintf(bad, sizeof bad, "%s/no/such/dir/m.csv", dir);
  cr_assert_eq(rt_metrics_init(&log, "a,b", &err), RT_OK);
  cr_assert_eq(rt_metrics_add(&log, row, 2, &err), RT_OK);
  cr_assert_eq(rt_metrics_write(&log, path, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_metrics_add(&log, row, 2, &err), RT_OK);
  cr_expect_eq(rt_metrics_write(&log, bad, &err), RT_ERR_IO);
  cr_expect(strstr(err.msg, bad) != NULL, "%s", err.msg);
  char *text = tu_read_file(path, NULL);
  cr_expect_str_eq(text, "a,b\n1,2\n");
  free(text);
  rt_metrics_free(&log);
  cr_expect_eq(rt_metrics_init(&log, "a\nb", &err), RT_ERR_FORMAT);
  cr_expect_null(log.header);
}
