/*
 * test_rt_rng.c — the PRNG against reference outputs computed independently
 * in Python (tests/fixtures/io/rng_expected.txt, from gen_io_fixtures.py),
 * its statistics, and the parameter initialisers' bounds and spreads.
 * Every test seeds explicitly, so every run draws the same numbers.
 */
#include <criterion/criterion.h>
#include <inttypes.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

#define NSAMPLES 100000

/* Returns the fixture line that starts with prefix (static buffer). */
static const char *ref_line(const char *prefix) {
  static char line[1024];
  FILE *f = fopen(FIXTURE("io/rng_expected.txt"), "r");
  cr_assert_not_null(f, "missing rng_expected.txt; run gen_io_fixtures.py");
  size_t n = strlen(prefix);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, prefix, n) == 0 && line[n] == ' ') {
      fclose(f);
      return line + n + 1;
    }
  fclose(f);
  cr_assert_fail("no line '%s' in rng_expected.txt", prefix);
  return NULL;
}

static void expect_next(RtRng *r, const char *prefix, int k) {
  const char *p = ref_line(prefix);
  for (int i = 0; i < k; i++) {
    char *end;
    uint64_t want = strtoull(p, &end, 10);
    cr_assert_neq(end, p, "%s: too few values", prefix);
    uint64_t got = rt_rng_next(r);
    cr_expect_eq(got, want, "%s #%d: %" PRIu64 " != %" PRIu64, prefix, i, got, want);
    p = end;
  }
}

Test(rt_rng, matches_reference_next) {
  RtRng r;
  rt_rng_seed(&r, 0);
  expect_next(&r, "next 0", 8);
  rt_rng_seed(&r, 42);
  expect_next(&r, "next 42", 8);
  rt_rng_seed(&r, UINT64_MAX);
  expect_next(&r, "next 18446744073709551615", 8);
  rt_rng_seed_stream(&r, 42, "fc1.weight");
  expect_next(&r, "stream 42 fc1.weight", 4);
}

Test(rt_rng, matches_reference_uniform_and_normal) {
  RtRng r;
  rt_rng_seed(&r, 7);
  const char *p = ref_line("uniform 7");
  for (int i = 0; i < 6; i++) {
    char *end;
    double want = strtod(p, &end);
    cr_expect_eq(rt_rng_uniform(&r), want, "uniform #%d", i);
    p = end;
  }
  rt_rng_seed(&r, 7);
  p = ref_line("normal 7");
  for (int i = 0; i < 6; i++) {
    char *end;
    double want = strtod(p, &end);
    double got = rt_rng_normal(&r);
    cr_expect_lt(tu_relerr(got, want, 1e-12), 1e-12, "normal #%d: %.17g vs %.17g", i, got, want);
    p = end;
  }
}

Test(rt_rng, matches_reference_below_and_shuffle) {
  RtRng r;
  rt_rng_seed(&r, 123);
  const char *p = ref_line("below 123 10");
  for (int i = 0; i < 12; i++) {
    char *end;
    uint64_t want = strtoull(p, &end, 10);
    cr_expect_eq(rt_rng_below(&r, 10), want, "below #%d", i);
    p = end;
  }
  rt_rng_seed(&r, 99);
  int64_t idx[10];
  for (int i = 0; i < 10; i++) idx[i] = i;
  rt_rng_shuffle(&r, idx, 10);
  p = ref_line("shuffle 99 10");
  for (int i = 0; i < 10; i++) {
    char *end;
    cr_expect_eq(idx[i], strtoll(p, &end, 10), "shuffle position %d", i);
    p = end;
  }
}

Test(rt_rng, uniform_statistics) {
  RtRng r;
  rt_rng_seed(&r, 2024);
  double sum = 0, sq = 0, lo = 1, hi = 0;
  for (int i = 0; i < NSAMPLES; i++) {
    double u = rt_rng_uniform(&r);
    cr_assert(u >= 0 && u < 1);
    sum += u;
    sq += u * u;
    lo = u < lo ? u : lo;
    hi = u > hi ? u : hi;
  }
  double mean = sum / NSAMPLES, var = sq / NSAMPLES - mean * mean;
  cr_expect_lt(fabs(mean - 0.5), 0.005, "mean %g", mean);
  cr_expect_lt(fabs(var - 1.0 / 12), 0.002, "variance %g", var);
  cr_expect(lo < 1e-3 && hi > 1 - 1e-3, "range [%g, %g]", lo, hi);
}

Test(rt_rng, normal_statistics) {
  RtRng r;
  rt_rng_seed(&r, 31337);
  double sum = 0, sq = 0;
  for (int i = 0; i < NSAMPLES; i++) {
    double z = rt_rng_normal(&r);
    cr_assert(isfinite(z));
    sum += z;
    sq += z * z;
  }
  double mean = sum / NSAMPLES, sd = sqrt(sq / NSAMPLES - mean * mean);
  cr_expect_lt(fabs(mean), 0.02, "mean %g", mean);
  cr_expect_lt(fabs(sd - 1), 0.015, "std %g", sd);
}

Test(rt_rng, below_range_and_balance) {
  RtRng r;
  rt_rng_seed(&r, 5);
  cr_expect_eq(rt_rng_below(&r, 0), 0);
  cr_expect_eq(rt_rng_below(&r, 1), 0);
  int counts[3] = {0};
  for (int i = 0; i < 30000; i++) {
    uint64_t v = rt_rng_below(&r, 3);
    cr_assert_lt(v, 3);
    counts[v]++;
  }
  for (int c = 0; c < 3; c++) cr_expect(abs(counts[c] - 10000) < 400, "count %d", counts[c]);
  uint64_t big = (UINT64_C(1) << 63) + 1;
  for (int i = 0; i < 100; i++) cr_assert_lt(rt_rng_below(&r, big), big);
}

Test(rt_rng, shuffle_is_a_permutation) {
  enum { N = 1000 };
  static int64_t idx[N];
  static int seen[N];
  RtRng r;
  rt_rng_seed(&r, 11);
  for (int i = 0; i < N; i++) idx[i] = i;
  rt_rng_shuffle(&r, idx, N);
  int moved = 0;
  for (int i = 0; i < N; i++) {
    cr_assert(idx[i] >= 0 && idx[i] < N);
    seen[idx[i]]++;
    moved += idx[i] != i;
  }
  for (int i = 0; i < N; i++) cr_expect_eq(seen[i], 1, "value %d", i);
  cr_expect_gt(moved, N * 9 / 10);
  rt_rng_shuffle(&r, idx, 0);
  rt_rng_shuffle(&r, idx, 1);
}

Test(rt_rng, same_seed_same_sequence_and_streams_differ) {
  RtRng a, b, c, d;
  rt_rng_seed(&a, 99);
  rt_rng_seed(&b, 99);
  for (int i = 0; i < 1000; i++) cr_assert_eq(rt_rng_next(&a), rt_rng_next(&b));
  rt_rng_seed_stream(&a, 99, "layer1.weight");
  rt_rng_seed_stream(&b, 99, "layer1.weight");
  rt_rng_seed_stream(&c, 99, "layer2.weight");
  rt_rng_seed(&d, 99);
  int diff_c = 0, diff_d = 0;
  for (int i = 0; i < 100; i++) {
    uint64_t x = rt_rng_next(&a);
    cr_assert_eq(x, rt_rng_next(&b));
    diff_c += x != rt_rng_next(&c);
    diff_d += x != rt_rng_next(&d);
  }
  cr_expect_eq(diff_c, 100);
  cr_expect_eq(diff_d, 100);
}

/* --- initialisers --------------------------------------------------------- */

static float buf[NSAMPLES];

static void fill(RtInitKind k, double a, double b, int64_t fan_in, int64_t fan_out) {
  RtRng r;
  rt_rng_seed_stream(&r, 1, rt_init_name(k));
  rt_init_fill(buf, NSAMPLES, k, a, b, fan_in, fan_out, &r);
}

static void expect_uniform_bound(RtInitKind k, int64_t fan_in, int64_t fan_out, double bound) {
  fill(k, 0, 0, fan_in, fan_out);
  float lo = buf[0], hi = buf[0];
  for (int i = 0; i < NSAMPLES; i++) {
    cr_assert(fabsf(buf[i]) <= (float)bound, "%s: %g outside +-%g", rt_init_name(k),
              buf[i], bound);
    lo = buf[i] < lo ? buf[i] : lo;
    hi = buf[i] > hi ? buf[i] : hi;
  }
  cr_expect(lo < -0.99 * bound && hi > 0.99 * bound, "%s: range [%g, %g] vs %g",
            rt_init_name(k), lo, hi, bound);
}

static void expect_normal(RtInitKind k, double a, double b, int64_t fan_in,
                          int64_t fan_out, double mean, double sd) {
  fill(k, a, b, fan_in, fan_out);
  double sum = 0, sq = 0;
  for (int i = 0; i < NSAMPLES; i++) sum += buf[i], sq += (double)buf[i] * buf[i];
  double m = sum / NSAMPLES, s = sqrt(sq / NSAMPLES - m * m);
  cr_expect_lt(fabs(m - mean), 0.02 * sd, "%s: mean %g, want %g", rt_init_name(k), m, mean);
  cr_expect_lt(fabs(s - sd) / sd, 0.05, "%s: std %g, want %g", rt_init_name(k), s, sd);
}

Test(rt_init, uniform_kinds_respect_bounds) {
  expect_uniform_bound(INIT_KAIMING_UNIFORM, 100, 30, sqrt(6.0 / 100));
  expect_uniform_bound(INIT_XAVIER_UNIFORM, 100, 50, sqrt(6.0 / 150));
  expect_uniform_bound(INIT_TORCH_DEFAULT, 784, 10, 1 / sqrt(784.0));
  fill(INIT_UNIFORM, -2, 3, 1, 1);
  for (int i = 0; i < NSAMPLES; i++) cr_assert(buf[i] >= -2 && buf[i] <= 3);
}

Test(rt_init, normal_kinds_have_the_right_spread) {
  expect_normal(INIT_KAIMING_NORMAL, 0, 0, 100, 30, 0, sqrt(2.0 / 100));
  expect_normal(INIT_XAVIER_NORMAL, 0, 0, 100, 50, 0, sqrt(2.0 / 150));
  expect_normal(INIT_NORMAL, 1.5, 0.25, 1, 1, 1.5, 0.25);
}

Test(rt_init, constants_names_and_determinism) {
  fill(INIT_ZEROS, 0, 0, 1, 1);
  cr_expect_eq(buf[0], 0.0f);
  fill(INIT_ONES, 0, 0, 1, 1);
  cr_expect_eq(buf[NSAMPLES - 1], 1.0f);
  fill(INIT_CONSTANT, 0.125, 0, 1, 1);
  cr_expect_eq(buf[17], 0.125f);
  for (int k = 0; k < INIT_COUNT; k++) cr_expect_str_neq(rt_init_name((RtInitKind)k), "?");
  float first[8];
  fill(INIT_KAIMING_UNIFORM, 0, 0, 0, 0);
  memcpy(first, buf, sizeof first);
  fill(INIT_KAIMING_UNIFORM, 0, 0, 0, 0);
  cr_expect_eq(memcmp(first, buf, sizeof first), 0);
  cr_expect(fabsf(first[0]) <= (float)sqrt(6.0), "a fan of 0 is taken as 1");
}
