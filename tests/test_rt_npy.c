/*
 * test_rt_npy.c — tensors in memory and the .npy reader and writer: round
 * trips for every dtype, files written by NumPy (tests/fixtures/io, made by
 * gen_io_fixtures.py), and every refused or broken file giving the right
 * status and a message that names the file.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/stat.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

#define IO(name) FIXTURE("io/" name)

static float af(int64_t i) { return (float)i * 0.5f - 1.0f; }

static int count_tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
  if (d) closedir(d);
  return n;
}

static RtTensor read_ok(const char *path) {
  RtTensor t;
  RtError err = {{0}};
  RtStatus st = rt_npy_read(path, &t, &err);
  cr_assert_eq(st, RT_OK, "%s: %s", path, err.msg);
  return t;
}

static void expect_fail(const char *path, RtStatus want, const char *needle) {
  RtTensor t;
  RtError err = {{0}};
  RtStatus st = rt_npy_read(path, &t, &err);
  cr_expect_eq(st, want, "%s: status %d, want %d (%s)", path, st, want, err.msg);
  cr_expect(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
  cr_expect(strstr(err.msg, needle) != NULL, "message lacks '%s': %s", needle, err.msg);
  cr_expect_null(t.data, "outputs must be left empty on failure");
}

/* --- tensors ------------------------------------------------------------- */

Test(rt_tensor, alloc_and_shape_str) {
  RtTensor t;
  RtError err;
  int64_t shape[2] = {3, 4};
  cr_assert_eq(rt_tensor_alloc(&t, DT_F64, 2, shape, &err), RT_OK);
  cr_expect_eq(rt_tensor_numel(&t), 12);
  cr_expect_eq(rt_tensor_nbytes(&t), 96);
  char buf[64];
  cr_expect_str_eq(rt_shape_str(buf, sizeof buf, t.dtype, t.rank, t.shape), "f64[3, 4]");
  cr_expect_str_eq(rt_shape_str(buf, sizeof buf, DT_U8, 0, shape), "u8[]");
  rt_tensor_free(&t);
  cr_expect_null(t.data);
}

Test(rt_tensor, alloc_refuses_bad_shapes) {
  RtTensor t;
  RtError err;
  int64_t neg[1] = {-1}, huge[3] = {INT64_MAX / 2, 4, 4};
  cr_expect_eq(rt_tensor_alloc(&t, DT_F32, 1, neg, &err), RT_ERR_SHAPE);
  cr_expect_eq(rt_tensor_alloc(&t, DT_F32, 3, huge, &err), RT_ERR_SHAPE);
  cr_expect_eq(rt_tensor_alloc(&t, DT_F32, RT_MAX_RANK + 1, huge, &err), RT_ERR_SHAPE);
  cr_expect_null(t.data);
  int64_t empty[2] = {0, 5};
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, 2, empty, &err), RT_OK);
  cr_expect_not_null(t.data, "an empty tensor still has data");
  rt_tensor_free(&t);
}

Test(rt_tensor, to_f32_scaled) {
  RtTensor t, f;
  RtError err;
  int64_t shape[1] = {3};
  rt_tensor_alloc(&t, DT_U8, 1, shape, &err);
  uint8_t *u = t.data;
  u[0] = 0, u[1] = 51, u[2] = 255;
  cr_assert_eq(rt_to_f32_scaled(&t, 1.0 / 255, -0.5, &f, &err), RT_OK);
  float *p = f.data;
  cr_expect_float_eq(p[0], -0.5f, 1e-7);
  cr_expect_float_eq(p[1], -0.3f, 1e-6);
  cr_expect_float_eq(p[2], 0.5f, 1e-7);
  cr_expect_eq(f.dtype, DT_F32);
  rt_tensor_free(&t);
  rt_tensor_free(&f);
}

/* --- round trips ----------------------------------------------------------- */

static void fill_pattern(RtTensor *t) {
  int64_t n = rt_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) switch (t->dtype) {
    case DT_F32: ((float *)t->data)[i] = af(i); break;
    case DT_F64: ((double *)t->data)[i] = (double)i / 3.0 - 2.0; break;
    case DT_I32: ((int32_t *)t->data)[i] = (int32_t)(i * 1000003 - 7); break;
    case DT_I64: ((int64_t *)t->data)[i] = i * 3000000000LL - 5; break;
    case DT_U8: ((uint8_t *)t->data)[i] = (uint8_t)(i * 37); break;
    case DT_COUNT: case DT_BOOL: break;
    }
}

static void round_trip(const char *dir, DType dt, int rank, const int64_t *shape) {
  RtTensor t, back;
  RtError err = {{0}};
  char path[600];
  snprintf(path, sizeof path, "%s/t_%s_%d.npy", dir, rt_dtype_name(dt), rank);
  cr_assert_eq(rt_tensor_alloc(&t, dt, rank, shape, &err), RT_OK);
  fill_pattern(&t);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK, "%s", err.msg);
  back = read_ok(path);
  cr_expect_eq(back.dtype, dt);
  cr_expect_eq(back.rank, rank);
  for (int i = 0; i < rank; i++) cr_expect_eq(back.shape[i], shape[i]);
  cr_expect_eq(memcmp(back.data, t.data, rt_tensor_nbytes(&t)), 0, "%s", path);
  size_t len = 0;
  char *raw = tu_read_file(path, &len);
  cr_expect_eq((len - rt_tensor_nbytes(&t)) % 64, 0, "data must start 64-byte aligned");
  free(raw);
  rt_tensor_free(&t);
  rt_tensor_free(&back);
}

Test(rt_npy, round_trip_every_dtype_and_rank) {
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  int64_t shapes[4][3] = {{0}, {7}, {2, 3}, {2, 0, 3}};
  int ranks[4] = {0, 1, 2, 3};
  for (int dt = 0; dt < DT_COUNT; dt++)
    for (int k = 0; k < 4; k++) round_trip(dir, (DType)dt, ranks[k], shapes[k]);
  int64_t big[RT_MAX_RANK] = {2, 1, 2, 1, 2, 1, 2, 3};
  round_trip(dir, DT_F32, RT_MAX_RANK, big);
  cr_expect_eq(count_tmp_files(dir), 0, "temporary files left behind");
}

Test(rt_npy, overwrite_replaces_contents) {
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  RtTensor a, b;
  RtError err;
  int64_t s1[1] = {100}, s2[2] = {2, 2};
  rt_tensor_alloc(&a, DT_F64, 1, s1, &err);
  rt_tensor_alloc(&b, DT_U8, 2, s2, &err);
  cr_assert_eq(rt_npy_write(path, &a, &err), RT_OK);
  cr_assert_eq(rt_npy_write(path, &b, &err), RT_OK);
  RtTensor back = read_ok(path);
  cr_expect_eq(back.dtype, DT_U8);
  cr_expect_eq(back.rank, 2);
  rt_tensor_free(&a);
  rt_tensor_free(&b);
  rt_tensor_free(&back);
}

Test(rt_npy, failed_write_leaves_old_file_and_no_temp) {
  const char *dir = tu_scratch_dir();
  char path[600], target_dir[600], missing[600];
  snprintf(path, sizeof path, "%s/keep.npy", dir);
  snprintf(target_dir, sizeof target_dir, "%s/adir", dir);
  snprintf(missing, sizeof missing, "%s/no/such/dir/x.npy", dir);
  RtTensor t;
  RtError err = {{0}};
  int64_t s[1] = {4};
  rt_tensor_alloc(&t, DT_F32, 1, s, &err);
  fill_pattern(&t);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK);
  size_t len0 = 0;
  char *before = tu_read_file(path, &len0);
  /* A directory as the target: the temp file is written, the rename fails. */
  cr_assert_eq(mkdir(target_dir, 0755), 0);
  cr_expect_eq(rt_npy_write(target_dir, &t, &err), RT_ERR_IO);
  cr_expect(strstr(err.msg, target_dir) != NULL, "%s", err.msg);
  cr_expect_eq(rt_npy_write(missing, &t, &err), RT_ERR_IO);
  cr_expect(strstr(err.msg, missing) != NULL, "%s", err.msg);
  RtTensor bad = t;
  bad.dtype = DT_COUNT;
  cr_expect_neq(rt_npy_write(path, &bad, &err), RT_OK);
  size_t len1 = 0;
  char *after = tu_read_file(path, &len1);
  cr_expect(len0 == len1 && memcmp(before, after, len0) == 0, "old file changed");
  cr_expect_eq(count_tmp_files(dir), 0, "temporary files left behind");
  free(before);
  free(after);
  rt_tensor_free(&t);
}

/* --- files written by NumPy ------------------------------------------------ */

Test(rt_npy, reads_numpy_f4_and_v2_header) {
  RtTensor t = read_ok(IO("f4_2x3.npy"));
  cr_expect_eq(t.dtype, DT_F32);
  cr_expect_eq(t.rank, 2);
  cr_expect_eq(t.shape[0], 2);
  cr_expect_eq(t.shape[1], 3);
  for (int i = 0; i < 6; i++) cr_expect_eq(((float *)t.data)[i], af(i));
  rt_tensor_free(&t);
  t = read_ok(IO("f4_v2_3x2.npy"));
  cr_expect_eq(t.rank, 2);
  cr_expect_eq(t.shape[0], 3);
  for (int i = 0; i < 6; i++) cr_expect_eq(((float *)t.data)[i], af(i));
  rt_tensor_free(&t);
}

Test(rt_npy, reads_numpy_f8_1d_and_i4_0d) {
  RtTensor t = read_ok(IO("f8_5.npy"));
  cr_expect_eq(t.dtype, DT_F64);
  cr_expect_eq(t.rank, 1);
  cr_expect_eq(t.shape[0], 5);
  for (int i = 0; i < 5; i++) cr_expect_eq(((double *)t.data)[i], i * 0.5 - 1);
  rt_tensor_free(&t);
  t = read_ok(IO("i4_0d.npy"));
  cr_expect_eq(t.dtype, DT_I32);
  cr_expect_eq(t.rank, 0);
  cr_expect_eq(rt_tensor_numel(&t), 1);
  cr_expect_eq(((int32_t *)t.data)[0], -7);
  rt_tensor_free(&t);
}

Test(rt_npy, reads_numpy_i8_u1_b1_and_empty) {
  RtTensor t = read_ok(IO("i8_2x2x2.npy"));
  cr_expect_eq(t.dtype, DT_I64);
  cr_expect_eq(t.rank, 3);
  for (int i = 0; i < 8; i++) cr_expect_eq(((int64_t *)t.data)[i], i * 3 - 7);
  rt_tensor_free(&t);
  t = read_ok(IO("u1_4x3.npy"));
  cr_expect_eq(t.dtype, DT_U8);
  cr_expect_eq(t.shape[0], 4);
  for (int i = 0; i < 12; i++) cr_expect_eq(((uint8_t *)t.data)[i], (i * 37) % 256);
  rt_tensor_free(&t);
  t = read_ok(IO("b1_4.npy"));
  cr_expect_eq(t.dtype, DT_U8);
  uint8_t want[4] = {1, 0, 0, 1};
  cr_expect_eq(memcmp(t.data, want, 4), 0);
  rt_tensor_free(&t);
  t = read_ok(IO("f4_empty_0x3.npy"));
  cr_expect_eq(t.shape[0], 0);
  cr_expect_eq(t.shape[1], 3);
  rt_tensor_free(&t);
  t = read_ok(IO("py2_long.npy"));
  cr_expect_eq(t.shape[1], 3);
  rt_tensor_free(&t);
}

/* --- refused and broken files ---------------------------------------------- */

Test(rt_npy, refuses_fortran_order) {
  expect_fail(IO("fortran_2x3.npy"), RT_ERR_FORMAT, "Fortran");
}

Test(rt_npy, refuses_big_endian_and_other_dtypes) {
  expect_fail(IO("bigendian_4.npy"), RT_ERR_DTYPE, "big-endian");
  expect_fail(IO("f2_4.npy"), RT_ERR_DTYPE, "'<f2'");
  expect_fail(IO("structured.npy"), RT_ERR_DTYPE, "structured");
}

Test(rt_npy, truncated_data_names_sizes) {
  expect_fail(IO("trunc_data.npy"), RT_ERR_TRUNCATED,
              "truncated: header says f32[2, 3] (24 bytes of data) but only 20 bytes follow");
}

Test(rt_npy, truncated_and_corrupt_headers) {
  expect_fail(IO("trunc_header.npy"), RT_ERR_TRUNCATED, "truncated");
  expect_fail(IO("trunc_prefix.npy"), RT_ERR_TRUNCATED, "truncated");
  expect_fail(IO("bad_magic.npy"), RT_ERR_FORMAT, "magic");
  expect_fail(IO("bad_version.npy"), RT_ERR_FORMAT, "version 7.0");
  expect_fail(IO("extra_data.npy"), RT_ERR_FORMAT, "28 bytes follow");
  expect_fail(IO("bad_dict.npy"), RT_ERR_FORMAT, "tuple");
  expect_fail(IO("missing_key.npy"), RT_ERR_FORMAT, "fortran_order");
  expect_fail(IO("extra_key.npy"), RT_ERR_FORMAT, "'x'");
  expect_fail(IO("neg_dim.npy"), RT_ERR_FORMAT, "non-negative");
  expect_fail(IO("huge_dim.npy"), RT_ERR_SHAPE, "too large");
  expect_fail(IO("long_dim.npy"), RT_ERR_FORMAT, "too large");
  expect_fail(IO("no_such_file.npy"), RT_ERR_IO, "cannot open");
  expect_fail(IO("model.safetensors"), RT_ERR_FORMAT, "magic");
}

Test(rt_npy, every_truncation_of_a_good_file_is_refused) {
  size_t len = 0;
  char *good = tu_read_file(IO("f4_2x3.npy"), &len);
  cr_assert_not_null(good);
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/cut.npy", dir);
  for (size_t n = 0; n < len; n++) {
    FILE *f = fopen(path, "wb");
    fwrite(good, 1, n, f);
    fclose(f);
    RtTensor t;
    RtError err;
    RtStatus st = rt_npy_read(path, &t, &err);
    cr_expect(st == RT_ERR_TRUNCATED || st == RT_ERR_FORMAT, "cut at %zu: %d", n, st);
    cr_expect_null(t.data);
  }
  free(good);
}
