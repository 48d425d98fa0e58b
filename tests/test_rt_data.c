/*
 * test_rt_data.c — data set readers: IDX files (plain and gzip'd, every
 * element type, truncated and corrupt variants from gen_io_fixtures.py, and
 * the real Fashion-MNIST test set when it is installed) and CSV files.
 */
#include <criterion/criterion.h>
#include <sys/stat.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

#define IO(name) FIXTURE("io/" name)
#define FASHION "/usr/share/datasets/fashion-mnist"

static RtTensor idx_ok(const char *path) {
  RtTensor t;
  RtError err = {{0}};
  RtStatus st = rt_idx_read(path, &t, &err);
  cr_assert_eq(st, RT_OK, "%s: %s", path, err.msg);
  return t;
}

static void idx_fail(const char *path, RtStatus want, const char *needle) {
  RtTensor t;
  RtError err = {{0}};
  RtStatus st = rt_idx_read(path, &t, &err);
  cr_expect_eq(st, want, "%s: status %d, want %d (%s)", path, st, want, err.msg);
  cr_expect(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
  cr_expect(strstr(err.msg, needle) != NULL, "message lacks '%s': %s", needle, err.msg);
  cr_expect_null(t.data);
}

/* --- IDX -------------------------------------------------------------------- */

static void check_images(const char *path) {
  RtTensor t = idx_ok(path);
  cr_expect_eq(t.dtype, DT_U8);
  cr_assert_eq(t.rank, 3);
  cr_expect_eq(t.shape[0], 3);
  cr_expect_eq(t.shape[1], 4);
  cr_expect_eq(t.shape[2], 5);
  for (int i = 0; i < 60; i++) cr_expect_eq(((uint8_t *)t.data)[i], (i * 37) % 256);
  rt_tensor_free(&t);
}

static void check_labels(const char *path) {
  RtTensor t = idx_ok(path);
  cr_expect_eq(t.dtype, DT_U8);
  cr_assert_eq(t.rank, 1);
  cr_expect_eq(t.shape[0], 3);
  uint8_t want[3] = {3, 1, 4};
  cr_expect_eq(memcmp(t.data, want, 3), 0);
  rt_tensor_free(&t);
}

Test(rt_idx, reads_plain_and_gzip_u8) {
  check_images(IO("images_3x4x5.idx"));
  check_images(IO("images_3x4x5.idx.gz"));
  check_labels(IO("labels_3.idx"));
  check_labels(IO("labels_3.idx.gz"));
}

Test(rt_idx, converts_other_element_types) {
  RtTensor t = idx_ok(IO("i16_2x3.idx"));
  cr_expect_eq(t.dtype, DT_I32);
  cr_expect_eq(t.rank, 2);
  for (int i = 0; i < 6; i++) cr_expect_eq(((int32_t *)t.data)[i], i * 3 - 7);
  rt_tensor_free(&t);
  t = idx_ok(IO("i8_4.idx"));
  cr_expect_eq(t.dtype, DT_I32);
  for (int i = 0; i < 4; i++) cr_expect_eq(((int32_t *)t.data)[i], i * 3 - 7);
  rt_tensor_free(&t);
  t = idx_ok(IO("i32_3.idx"));
  for (int i = 0; i < 3; i++) cr_expect_eq(((int32_t *)t.data)[i], (i * 3 - 7) * 100000);
  rt_tensor_free(&t);
  t = idx_ok(IO("f32_2x2.idx"));
  cr_expect_eq(t.dtype, DT_F32);
  for (int i = 0; i < 4; i++) cr_expect_eq(((float *)t.data)[i], i * 0.5f - 1.0f);
  rt_tensor_free(&t);
  t = idx_ok(IO("f64_3.idx"));
  cr_expect_eq(t.dtype, DT_F64);
  for (int i = 0; i < 3; i++) cr_expect_eq(((double *)t.data)[i], i * 0.5 - 1.0);
  rt_tensor_free(&t);
}

Test(rt_idx, truncated_files_are_refused) {
  const char *msg = "truncated: header says u8[3, 4, 5] (60 bytes of data) but only 53 bytes follow";
  idx_fail(IO("trunc_images.idx"), RT_ERR_TRUNCATED, msg);
  idx_fail(IO("trunc_images.idx.gz"), RT_ERR_TRUNCATED, msg);
  idx_fail(IO("trunc_gzip_stream.idx.gz"), RT_ERR_TRUNCATED, "truncated");
  idx_fail(IO("trunc_dims.idx"), RT_ERR_TRUNCATED, "dimensions");
  idx_fail(IO("big_dims.idx"), RT_ERR_TRUNCATED, "u8[60000, 28, 28] (47040000 bytes");
}

Test(rt_idx, corrupt_files_are_refused) {
  idx_fail(IO("huge_dims.idx"), RT_ERR_SHAPE, "too large");
  idx_fail(IO("bad_magic.idx"), RT_ERR_FORMAT, "not an IDX file");
  idx_fail(IO("bad_type.idx"), RT_ERR_FORMAT, "not an IDX file");
  idx_fail(IO("extra.idx"), RT_ERR_FORMAT, "more data");
  idx_fail(IO("no_such_file.idx"), RT_ERR_IO, "cannot open");
  idx_fail(IO("empty.csv"), RT_ERR_TRUNCATED, "magic");
}

Test(rt_idx, every_truncation_of_a_gzip_file_is_refused) {
  size_t len = 0;
  char *good = tu_read_file(IO("images_3x4x5.idx.gz"), &len);
  cr_assert_not_null(good);
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/cut.idx.gz", dir);
  for (size_t n = 0; n < len; n++) {
    FILE *f = fopen(path, "wb");
    fwrite(good, 1, n, f);
    fclose(f);
    RtTensor t;
    RtError err;
    cr_expect_neq(rt_idx_read(path, &t, &err), RT_OK, "prefix %zu accepted", n);
    cr_expect_null(t.data);
  }
  free(good);
}

static int have_fashion(void) {
  struct stat sb;
  return stat(FASHION "/t10k-images-idx3-ubyte.gz", &sb) == 0;
}

Test(rt_idx, reads_fashion_mnist_test_set) {
  if (!have_fashion()) cr_skip_test("no Fashion-MNIST in " FASHION);
  RtTensor x = idx_ok(FASHION "/t10k-images-idx3-ubyte.gz");
  RtTensor y = idx_ok(FASHION "/t10k-labels-idx1-ubyte.gz");
  cr_expect_eq(x.dtype, DT_U8);
  cr_assert_eq(x.rank, 3);
  cr_expect_eq(x.shape[0], 10000);
  cr_expect_eq(x.shape[1], 28);
  cr_expect_eq(x.shape[2], 28);
  cr_assert_eq(y.rank, 1);
  cr_expect_eq(y.shape[0], 10000);
  int counts[10] = {0};
  for (int i = 0; i < 10000; i++) {
    uint8_t l = ((uint8_t *)y.data)[i];
    cr_assert_lt(l, 10);
    counts[l]++;
  }
  for (int c = 0; c < 10; c++) cr_expect_eq(counts[c], 1000, "class %d", c);
  RtTensor f;
  RtError err;
  cr_assert_eq(rt_to_f32_scaled(&x, 1.0 / 255, 0, &f, &err), RT_OK);
  double sum = 0;
  for (int64_t i = 0; i < rt_tensor_numel(&f); i++) sum += ((float *)f.data)[i];
  double mean = sum / (double)rt_tensor_numel(&f);
  cr_expect(mean > 0.2 && mean < 0.4, "mean pixel %g", mean);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
  rt_tensor_free(&f);
}

/* --- CSV ------------------------------------------------------------------- */

static RtTensor csv_ok(const char *path) {
  RtTensor t;
  RtError err = {{0}};
  RtStatus st = rt_csv_read(path, &t, &err);
  cr_assert_eq(st, RT_OK, "%s: %s", path, err.msg);
  cr_assert_eq(t.dtype, DT_F32);
  cr_assert_eq(t.rank, 2);
  return t;
}

static void csv_fail(const char *path, RtStatus want, const char *needle) {
  RtTensor t;
  RtError err = {{0}};
  RtStatus st = rt_csv_read(path, &t, &err);
  cr_expect_eq(st, want, "%s: status %d (%s)", path, st, err.msg);
  cr_expect(strstr(err.msg, needle) != NULL, "message lacks '%s': %s", needle, err.msg);
  cr_expect_null(t.data);
}

Test(rt_csv, with_header) {
  RtTensor t = csv_ok(IO("header.csv"));
  cr_expect_eq(t.shape[0], 3);
  cr_expect_eq(t.shape[1], 3);
  float want[9] = {1, 2.5f, 0, -3, 400, 1, 5, 6, -0.25f};
  for (int i = 0; i < 9; i++) cr_expect_eq(((float *)t.data)[i], want[i], "element %d", i);
  rt_tensor_free(&t);
}

Test(rt_csv, without_header) {
  RtTensor t = csv_ok(IO("noheader.csv"));
  cr_expect_eq(t.shape[0], 3);
  cr_expect_eq(t.shape[1], 2);
  float want[6] = {1.5f, 2, 3, 4, 5, 6};
  for (int i = 0; i < 6; i++) cr_expect_eq(((float *)t.data)[i], want[i]);
  rt_tensor_free(&t);
  t = csv_ok(IO("header_only.csv"));
  cr_expect_eq(t.shape[0], 0);
  cr_expect_eq(t.shape[1], 3);
  rt_tensor_free(&t);
}

Test(rt_csv, bad_files_are_refused) {
  char want[700];
  snprintf(want, sizeof want, "%s:3: expected 3 fields, found 2", IO("ragged.csv"));
  csv_fail(IO("ragged.csv"), RT_ERR_FORMAT, want);
  snprintf(want, sizeof want, "%s:2: field 2 is not a number: 'x'", IO("notnum.csv"));
  csv_fail(IO("notnum.csv"), RT_ERR_FORMAT, want);
  csv_fail(IO("empty.csv"), RT_ERR_FORMAT, "no rows");
  csv_fail(IO("no_such_file.csv"), RT_ERR_IO, "cannot open");
}
