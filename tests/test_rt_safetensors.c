/*
 * test_rt_safetensors.c — tensor sets, the safetensors reader and writer
 * and the atomic file writer: round trips with metadata, files written by
 * gen_io_fixtures.py following the format's definition, and every broken
 * variant refused with the right status and a message naming the file.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

#define IO(name) FIXTURE("io/" name)

static int count_tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
  if (d) closedir(d);
  return n;
}

static RtTensorSet read_ok(const char *path) {
  RtTensorSet s;
  RtError err = {{0}};
  RtStatus st = rt_safetensors_read(path, &s, &err);
  cr_assert_eq(st, RT_OK, "%s: %s", path, err.msg);
  return s;
}

static void add_tensor(RtTensorSet *s, const char *name, DType dt, int rank,
                       const int64_t *shape) {
  RtTensor t;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&t, dt, rank, shape, &err), RT_OK);
  unsigned char *p = t.data;
  for (size_t i = 0; i < rt_tensor_nbytes(&t); i++) p[i] = (unsigned char)(i * 7 + rank);
  cr_assert_eq(rt_set_add(s, name, &t, &err), RT_OK, "%s", err.msg);
  cr_expect_null(t.data, "rt_set_add takes the data");
}

/* --- sets ------------------------------------------------------------------- */

Test(rt_set, add_find_and_metadata) {
  RtTensorSet s;
  RtError err;
  rt_set_init(&s);
  int64_t shape[1] = {3};
  add_tensor(&s, "a", DT_F32, 1, shape);
  add_tensor(&s, "b", DT_U8, 1, shape);
  cr_expect_not_null(rt_set_find(&s, "b"));
  cr_expect_null(rt_set_find(&s, "c"));
  RtTensor t;
  rt_tensor_alloc(&t, DT_F32, 1, shape, &err);
  cr_expect_eq(rt_set_add(&s, "a", &t, &err), RT_ERR_FORMAT);
  cr_expect_not_null(t.data, "a refused tensor stays with the caller");
  rt_tensor_free(&t);
  cr_expect_eq(rt_set_meta(&s, "k", "v1", &err), RT_OK);
  cr_expect_eq(rt_set_meta(&s, "k", "v2", &err), RT_OK);
  cr_expect_eq(s.nmeta, 1);
  cr_expect_str_eq(rt_set_get_meta(&s, "k"), "v2");
  cr_expect_null(rt_set_get_meta(&s, "nope"));
  rt_set_free(&s);
  cr_expect_eq(s.count, 0);
}

/* --- round trip --------------------------------------------------------------- */

Test(rt_safetensors, round_trip_with_metadata) {
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/m.safetensors", dir);
  RtTensorSet s, back;
  RtError err = {{0}};
  rt_set_init(&s);
  int64_t s23[2] = {2, 3}, s5[1] = {5}, s0[2] = {0, 4}, s8[RT_MAX_RANK] = {1, 2, 1, 2, 1, 2, 1, 3};
  add_tensor(&s, "z.last", DT_F32, 2, s23);
  add_tensor(&s, "f64", DT_F64, 1, s5);
  add_tensor(&s, "i32 \"quoted\"\\", DT_I32, 2, s23);
  add_tensor(&s, "i64\ttab", DT_I64, 0, s5);
  add_tensor(&s, "empty", DT_F32, 2, s0);
  add_tensor(&s, "u8.\xc3\xa9", DT_U8, RT_MAX_RANK, s8);
  rt_set_meta(&s, "format", "pt", &err);
  rt_set_meta(&s, "multi\nline", "a \"b\" \\c\x01", &err);
  cr_assert_eq(rt_safetensors_write(path, &s, &err), RT_OK, "%s", err.msg);
  back = read_ok(path);
  cr_assert_eq(back.count, s.count);
  for (int i = 0; i < s.count; i++) {
    const RtTensor *a = &s.items[i].t, *b = &back.items[i].t;
    cr_expect_str_eq(back.items[i].name, s.items[i].name, "insertion order kept");
    cr_expect_eq(a->dtype, b->dtype);
    cr_expect_eq(a->rank, b->rank);
    cr_expect_eq(memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->rank), 0);
    cr_expect_eq(memcmp(a->data, b->data, rt_tensor_nbytes(a)), 0);
  }
  cr_expect_eq(back.nmeta, 2);
  cr_expect_str_eq(rt_set_get_meta(&back, "multi\nline"), "a \"b\" \\c\x01");
  size_t len = 0;
  char *raw = tu_read_file(path, &len);
  uint64_t hlen = 0;
  memcpy(&hlen, raw, 8);
  cr_expect_eq(hlen % 8, 0, "header padded to a multiple of 8");
  const char *head = "{\"__metadata__\":{\"format\":\"pt\",";
  cr_expect_eq(strncmp(raw + 8, head, strlen(head)), 0, "%.40s", raw + 8);
  free(raw);
  cr_expect_eq(count_tmp_files(dir), 0);
  rt_set_free(&s);
  rt_set_free(&back);
}

Test(rt_safetensors, write_refuses_reserved_name) {
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/r.safetensors", dir);
  RtTensorSet s;
  RtError err;
  rt_set_init(&s);
  int64_t shape[1] = {1};
  add_tensor(&s, "__metadata__", DT_F32, 1, shape);
  cr_expect_eq(rt_safetensors_write(path, &s, &err), RT_ERR_FORMAT);
  cr_expect(access(path, F_OK) != 0, "nothing written");
  rt_set_free(&s);
}

/* --- files written by the fixture script -------------------------------------- */

Test(rt_safetensors, reads_script_written_file) {
  RtTensorSet s = read_ok(IO("model.safetensors"));
  const char *names[] = {"fc.weight", "fc.bias", "scalar", "d3", "i5", "u7", "empty",
                         "caf\xc3\xa9 \"q\""};
  cr_assert_eq(s.count, 8);
  for (int i = 0; i < 8; i++) cr_expect_str_eq(s.items[i].name, names[i], "data order");
  RtTensor *w = rt_set_find(&s, "fc.weight");
  cr_expect_eq(w->dtype, DT_F32);
  cr_expect_eq(w->shape[0], 2);
  cr_expect_eq(w->shape[1], 3);
  for (int i = 0; i < 6; i++) cr_expect_eq(((float *)w->data)[i], i * 0.5f - 1.0f);
  RtTensor *b = rt_set_find(&s, "fc.bias");
  for (int i = 0; i < 4; i++) cr_expect_eq(((int64_t *)b->data)[i], i * 3 - 7);
  RtTensor *sc = rt_set_find(&s, "scalar");
  cr_expect_eq(sc->rank, 0);
  cr_expect_eq(((double *)sc->data)[0], -1.0);
  RtTensor *i5 = rt_set_find(&s, "i5");
  cr_expect_eq(((int32_t *)i5->data)[4], 5);
  RtTensor *u7 = rt_set_find(&s, "u7");
  cr_expect_eq(((uint8_t *)u7->data)[6], 222);
  cr_expect_eq(rt_set_find(&s, "empty")->shape[1], 4);
  cr_expect_eq(((uint8_t *)s.items[7].t.data)[0], 42);
  cr_expect_str_eq(rt_set_get_meta(&s, "format"), "pt");
  cr_expect_str_eq(rt_set_get_meta(&s, "note"), "line1\nline2 \xc3\xa9");
  rt_set_free(&s);
}

Test(rt_safetensors, reads_unpadded_empty_and_escaped) {
  RtTensorSet s = read_ok(IO("nometa.safetensors"));
  cr_expect_eq(s.count, 1);
  cr_expect_eq(s.nmeta, 0);
  rt_set_free(&s);
  s = read_ok(IO("empty.safetensors"));
  cr_expect_eq(s.count, 0);
  rt_set_free(&s);
  s = read_ok(IO("good_escapes.safetensors"));
  cr_assert_eq(s.count, 1);
  cr_expect_str_eq(s.items[0].name, "\xc3\xa9\xf0\x9f\x98\x80\t\"\\/");
  rt_set_free(&s);
}

/* --- broken files --------------------------------------------------------------- */

typedef struct BadCase {
  const char *file;
  RtStatus want;
  const char *needle;
} BadCase;

static const BadCase bad_cases[] = {
  {"bad_short.safetensors", RT_ERR_TRUNCATED, "8-byte header length"},
  {"bad_hlen.safetensors", RT_ERR_TRUNCATED, "header length"},
  {"bad_hlen_huge.safetensors", RT_ERR_TRUNCATED, "header length"},
  {"bad_trunc_data.safetensors", RT_ERR_FORMAT, "go past the end"},
  {"bad_json_comma.safetensors", RT_ERR_FORMAT, "expected a key"},
  {"bad_json_unterminated.safetensors", RT_ERR_FORMAT, "expected ',' or '}'"},
  {"bad_json_string.safetensors", RT_ERR_FORMAT, "expected ':'"},
  {"bad_json_float.safetensors", RT_ERR_FORMAT, "only integers"},
  {"bad_json_escape.safetensors", RT_ERR_FORMAT, "bad escape"},
  {"bad_json_true.safetensors", RT_ERR_FORMAT, "unexpected 't'"},
  {"bad_json_deep.safetensors", RT_ERR_FORMAT, "nested too deeply"},
  {"bad_json_trailing.safetensors", RT_ERR_FORMAT, "text after"},
  {"bad_not_object.safetensors", RT_ERR_FORMAT, "must be a JSON object"},
  {"bad_offsets_oob.safetensors", RT_ERR_FORMAT, "go past the end of the data (56 bytes)"},
  {"bad_offsets_reversed.safetensors", RT_ERR_FORMAT, "begin <= end"},
  {"bad_overlap.safetensors", RT_ERR_FORMAT, "overlap"},
  {"bad_gap.safetensors", RT_ERR_FORMAT, "gap"},
  {"bad_size.safetensors", RT_ERR_FORMAT, "f32[2, 2] needs 16 bytes"},
  {"bad_shape_overflow.safetensors", RT_ERR_FORMAT, "too large"},
  {"bad_neg_shape.safetensors", RT_ERR_FORMAT, "non-negative"},
  {"bad_dtype.safetensors", RT_ERR_DTYPE, "F16"},
  {"bad_missing_field.safetensors", RT_ERR_FORMAT, "needs \"dtype\""},
  {"bad_duplicate.safetensors", RT_ERR_FORMAT, "appears twice"},
  {"bad_meta_value.safetensors", RT_ERR_FORMAT, "must be a string"},
  {"bad_utf8.safetensors", RT_ERR_FORMAT, "UTF-8"},
  {"bad_surrogate.safetensors", RT_ERR_FORMAT, "surrogate"},
  {"no_such_file.safetensors", RT_ERR_IO, "cannot open"},
  {"f4_2x3.npy", RT_ERR_TRUNCATED, "header length"},
};

Test(rt_safetensors, every_broken_file_is_refused) {
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    char path[600];
    snprintf(path, sizeof path, "%s", FIXTURE("io/"));
    strncat(path, bad_cases[i].file, sizeof path - strlen(path) - 1);
    RtTensorSet s;
    RtError err = {{0}};
    RtStatus st = rt_safetensors_read(path, &s, &err);
    cr_expect_eq(st, bad_cases[i].want, "%s: status %d (%s)", path, st, err.msg);
    cr_expect(strstr(err.msg, path) != NULL, "no file name: %s", err.msg);
    cr_expect(strstr(err.msg, bad_cases[i].needle) != NULL, "%s: lacks '%s': %s",
              bad_cases[i].file, bad_cases[i].needle, err.msg);
    cr_expect_eq(s.count, 0);
    cr_expect_eq(s.nmeta, 0);
  }
}

/* Every prefix and every single-byte corruption of a good file must be
 * handled without a crash (the sanitizer build makes this a real check). */
Test(rt_safetensors, truncations_and_byte_flips_never_crash) {
  size_t len = 0;
  char *good = tu_read_file(IO("model.safetensors"), &len);
  cr_assert_not_null(good);
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/cut.safetensors", dir);
  for (size_t n = 0; n < len; n++) {
    FILE *f = fopen(path, "wb");
    fwrite(good, 1, n, f);
    fclose(f);
    RtTensorSet s;
    RtError err;
    cr_expect_neq(rt_safetensors_read(path, &s, &err), RT_OK, "prefix %zu accepted", n);
  }
  for (size_t i = 0; i < len; i++) {
    char saved = good[i];
    good[i] = (char)(good[i] ^ 0x5a);
    FILE *f = fopen(path, "wb");
    fwrite(good, 1, len, f);
    fclose(f);
    good[i] = saved;
    RtTensorSet s;
    RtError err;
    if (rt_safetensors_read(path, &s, &err) == RT_OK) rt_set_free(&s);
  }
  free(good);
}

/* --- atomic writes ------------------------------------------------------------- */

Test(rt_atomic, writes_chunks_and_replaces) {
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/f.bin", dir);
  const void *chunks[3] = {"abc", "", "defg"};
  size_t lens[3] = {3, 0, 4};
  RtError err;
  cr_assert_eq(rt_write_file_atomic(path, chunks, lens, 3, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_write_file_atomic(path, chunks + 2, lens + 2, 1, &err), RT_OK);
  size_t len = 0;
  char *got = tu_read_file(path, &len);
  cr_expect_eq(len, 4);
  cr_expect_str_eq(got, "defg");
  free(got);
  struct stat sb;
  stat(path, &sb);
  cr_expect_eq(sb.st_mode & 0777, 0644, "new files are 0644, not mkstemp's 0600");
  cr_expect_eq(count_tmp_files(dir), 0);
}

Test(rt_atomic, failure_keeps_old_target_and_leaves_no_temp) {
  const char *dir = tu_scratch_dir();
  char target[600], missing[600];
  snprintf(target, sizeof target, "%s/sub", dir);
  snprintf(missing, sizeof missing, "%s/nope/f.bin", dir);
  cr_assert_eq(mkdir(target, 0755), 0);
  const void *chunks[1] = {"data"};
  size_t lens[1] = {4};
  RtError err = {{0}};
  cr_expect_eq(rt_write_file_atomic(missing, chunks, lens, 1, &err), RT_ERR_IO);
  cr_expect(strstr(err.msg, missing) != NULL, "%s", err.msg);
  /* A non-empty directory under the target name: refused before anything
   * is written (rt_write_files_atomic checks every destination first). */
  char inner[700];
  snprintf(inner, sizeof inner, "%s/keep", target);
  cr_assert_eq(rt_write_file_atomic(inner, chunks, lens, 1, &err), RT_OK);
  cr_expect_eq(rt_write_file_atomic(target, chunks, lens, 1, &err), RT_ERR_IO);
  cr_expect(strstr(err.msg, "is a directory") != NULL, "%s", err.msg);
  struct stat sb;
  cr_expect(stat(target, &sb) == 0 && S_ISDIR(sb.st_mode), "old target untouched");
  size_t len = 0;
  char *kept = tu_read_file(inner, &len);
  cr_expect(kept && len == 4 && memcmp(kept, "data", 4) == 0);
  free(kept);
  cr_expect_eq(count_tmp_files(dir), 0, "temporary file left behind");
  cr_expect_eq(count_tmp_files(target), 0);
}

/* Destinations that are not plain files: /dev/null stays the device (a
 * rename over it, as root, once turned it into a regular file), a FIFO
 * receives the bytes, and a symbolic link stays a link while the file it
 * names is replaced. */
Test(rt_atomic, devices_fifos_and_links_are_written_through) {
  const void *chunks[1] = {"data"};
  size_t lens[1] = {4};
  RtError err = {{0}};
  struct stat sb;
  cr_assert_eq(rt_write_file_atomic("/dev/null", chunks, lens, 1, &err), RT_OK, "%s", err.msg);
  cr_expect(stat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode), "/dev/null is still a device");
  const char *dir = tu_scratch_dir();
  char fifo[600], file[600], link[600];
  snprintf(fifo, sizeof fifo, "%s/pipe", dir);
  snprintf(file, sizeof file, "%s/real.bin", dir);
  snprintf(link, sizeof link, "%s/link.bin", dir);
  cr_assert_eq(mkfifo(fifo, 0600), 0);
  int rd = open(fifo, O_RDONLY | O_NONBLOCK);
  cr_assert(rd >= 0);
  cr_assert_eq(rt_write_file_atomic(fifo, chunks, lens, 1, &err), RT_OK, "%s", err.msg);
  char got[8] = {0};
  cr_expect_eq(read(rd, got, sizeof got), 4);
  cr_expect_str_eq(got, "data");
  close(rd);
  cr_expect(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode), "the FIFO is still a FIFO");
  cr_assert_eq(rt_write_file_atomic(file, chunks, lens, 1, &err), RT_OK);
  cr_assert_eq(symlink("real.bin", link), 0);
  const void *next[1] = {"other"};
  size_t nlen[1] = {5};
  cr_assert_eq(rt_write_file_atomic(link, next, nlen, 1, &err), RT_OK, "%s", err.msg);
  cr_expect(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode), "the link is still a link");
  size_t len = 0;
  char *kept = tu_read_file(file, &len);
  cr_expect(kept && len == 5 && memcmp(kept, "other", 5) == 0, "the linked file has the new contents");
  free(kept);
  cr_expect_eq(count_tmp_files(dir), 0, "temporary file left behind");
}
