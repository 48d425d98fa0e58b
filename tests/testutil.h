/*
 * testutil.h — small helpers shared by the test suites: paths of fixtures,
 * a scratch directory per test, and float comparison with a tolerance.
 */
#ifndef DLC_TESTUTIL_H
#define DLC_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

#define FIXTURE(rel) (DLC_SOURCE_DIR "/tests/fixtures/" rel)
#define DLC_EXE (DLC_BUILD_DIR "/dlc")

/* Makes a fresh scratch directory under $TMPDIR (or /tmp); returns a static
 * buffer, valid until the next call. */
static inline const char *tu_scratch_dir(void) {
  static char buf[512];
  const char *base = getenv("TMPDIR");
  snprintf(buf, sizeof buf, "%s/dlc-test-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(buf)) return NULL;
  return buf;
}

/* Writes text to dir/name; 0, or -1 when it cannot. */
static inline int tu_write_file(const char *dir, const char *name, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  int bad = fputs(text, f) < 0;
  return fclose(f) || bad ? -1 : 0;
}

/* Writes src to model.dl in a scratch directory and runs
 * `dlc model.dl ARGS --verify -o /dev/null`, ARGS holding a --dump-after;
 * returns what it printed (stdout and stderr, malloc'd) and its exit
 * status in *status, or NULL when it could not run. */
static inline char *tu_dump_after(const char *src, const char *args, int *status) {
  const char *dir = tu_scratch_dir();
  if (!dir) return NULL;
  char path[600], cmd[1600];
  snprintf(path, sizeof path, "%s/model.dl", dir);
  FILE *f = fopen(path, "w");
  if (!f) return NULL;
  fputs(src, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s %s %s --verify -o /dev/null 2>&1", DLC_EXE, path, args);
  FILE *pipe = popen(cmd, "r");
  char *text = NULL;
  size_t n = 0;
  FILE *out = pipe ? open_memstream(&text, &n) : NULL;
  if (out) {
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, pipe)) > 0) fwrite(buf, 1, got, out);
    fclose(out);
  }
  *status = pipe ? pclose(pipe) : -1;
  remove(path);
  rmdir(dir);
  return text;
}

/* Relative error with an absolute floor: |a-b| / max(|b|, floor).  NaN
 * against NaN and an infinity against the same infinity are exact (0);
 * any other pair with a NaN or an infinity is an infinite error. */
static inline double tu_relerr(double a, double b, double floor_) {
  if (a == b || (isnan(a) && isnan(b))) return 0;
  if (!isfinite(a) || !isfinite(b)) return INFINITY;
  double d = fabs(a - b), m = fabs(b);
  return d / (m > floor_ ? m : floor_);
}

/* Element i's error relative to the largest magnitude of want (norm-wise,
 * with the 1e-6 floor of tu_relerr): the measure for kernels that sum in
 * float, where an element that comes out of cancellation has an
 * element-wise relative error no float32 computation can keep small, yet
 * its absolute error is as small as the terms' rounding allows.  The
 * magnitude is over finite elements; NaN and infinities must match
 * exactly, as in tu_relerr. */
static inline double tu_normerr(const float *got, const float *want, int64_t n, int64_t i) {
  double m = 1e-6;
  for (int64_t k = 0; k < n; k++)
    if (isfinite(want[k])) m = fabs(want[k]) > m ? fabs(want[k]) : m;
  if (got[i] == want[i] || (isnan(got[i]) && isnan(want[i]))) return 0;
  if (!isfinite(got[i]) || !isfinite(want[i])) return INFINITY;
  return fabs((double)got[i] - want[i]) / m;
}

/* Reads a whole file into a malloc'd NUL-terminated string (NULL on error). */
static inline char *tu_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(s); return NULL; }
  s[n] = 0;
  fclose(f);
  if (len) *len = (size_t)n;
  return s;
}

#endif
