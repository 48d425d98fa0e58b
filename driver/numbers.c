/*
 * numbers.c — strict numbers for flags, REPL commands and checkpoint
 * metadata.
 *
 * strtoll and strtod accept a prefix ("12abc"), leading spaces, an empty
 * string (as 0), and saturate or overflow to infinity with only errno to
 * tell; every caller used to re-check some of that.  Here a number is the
 * whole string, within int64 (integers) or finite (reals), and within the
 * caller's range, or it is refused with a message that names the flag,
 * the range and the text given.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "driver/numbers.h"

static int starts_well(const char *s) { return *s && !isspace((unsigned char)*s); }

int dlc_parse_int(const char *what, const char *s, int64_t lo, int64_t hi, int64_t *out, Diags *d) {
  char *end = NULL;
  errno = 0;
  long long v = starts_well(s) ? strtoll(s, &end, 10) : 0;
  if (!starts_well(s) || *end || errno == ERANGE || v < lo || v > hi) {
    diag_plain(d, what, "expected an integer in [%lld, %lld], got '%s'", (long long)lo, (long long)hi, s);
    return -1;
  }
  *out = v;
  return 0;
}

int dlc_parse_real(const char *what, const char *s, double lo, double hi, double *out, Diags *d) {
  char *end = NULL;
  double v = starts_well(s) ? strtod(s, &end) : NAN;
  if (!starts_well(s) || *end || !isfinite(v) || !(v >= lo && v <= hi)) {
    diag_plain(d, what, "expected a finite number in [%g, %g], got '%s'", lo, hi, s);
    return -1;
  }
  *out = v;
  return 0;
}

int dlc_parse_threads(const char *s, int interp, int *out, Diags *d) {
  int64_t n;
  if (dlc_parse_int("--threads", s, 1, RT_POOL_MAX_THREADS, &n, d)) return -1;
  if (interp && n > 1)
    return diag_plain(d, "--threads", "the reference interpreter runs on one thread; use --backend=jit or c"), -1;
  *out = (int)n;
  return 0;
}
