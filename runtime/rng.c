/*
 * rng.c — dlc's one pseudo-random generator and the parameter initialisers.
 *
 * The algorithm, precisely enough to reproduce it in another language (all
 * arithmetic on unsigned 64-bit integers, wrapping mod 2^64; rotl(x, k) is
 * (x << k) | (x >> (64 - k))):
 *
 *   splitmix64(x): x += 0x9E3779B97F4A7C15; z = x;
 *                  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *                  z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 *                  return z ^ (z >> 31)   (x is kept for the next call)
 *   rt_rng_seed(seed): x = seed; s[0..3] = four successive splitmix64(x).
 *   rt_rng_seed_stream(seed, name): rt_rng_seed(seed ^ fnv1a64(name)), where
 *     fnv1a64 starts at h = 0xCBF29CE484222325 and for each byte c of the
 *     name (no terminator) does h = (h ^ c) * 0x100000001B3.
 *   rt_rng_next (xoshiro256**): result = rotl(s[1] * 5, 7) * 9;
 *     t = s[1] << 17; s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2];
 *     s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45); return result.
 *   rt_rng_uniform: (next >> 11) * 2^-53, a double in [0, 1).
 *   rt_rng_normal (Box-Muller, one draw per call): u1 = uniform, then
 *     u2 = uniform; return sqrt(-2 ln(1 - u1)) * cos(2 pi u2).  1 - u1 is in
 *     (0, 1], so the log is finite; the sine half is discarded so the
 *     state stays four words.  (log and cos come from libm, so the last
 *     bit of a normal may differ between libms; the integers never do.)
 *   rt_rng_below(n), n > 0: threshold = (2^64 - n) mod n (computed as
 *     (0 - n) % n); draw x = next until x >= threshold; return x mod n.
 *     The accepted range holds a multiple of n values, so it is unbiased.
 *     n == 0 returns 0 without drawing.
 *   rt_rng_shuffle (Fisher-Yates from the end): for i = n-1 down to 1:
 *     j = below(i + 1); swap idx[i] and idx[j].
 *
 * Initialisers follow torch.nn.init; U(lo, hi) is lo + (hi - lo) * uniform
 * and N(m, s) is m + s * normal, one draw per element in order, rounded to
 * float:
 *   kaiming_uniform (a = 0, fan_in, leaky_relu gain sqrt(2)):
 *     bound = gain * sqrt(3 / fan_in) = sqrt(6 / fan_in), U(-bound, bound)
 *   kaiming_normal: N(0, sqrt(2) / sqrt(fan_in))
 *   xavier_uniform (gain 1): bound = sqrt(6 / (fan_in + fan_out))
 *   xavier_normal: N(0, sqrt(2 / (fan_in + fan_out)))
 *   torch default (nn.Linear / nn.Conv weight: kaiming_uniform with
 *     a = sqrt(5), gain sqrt(2 / (1 + 5)); and their bias):
 *     bound = sqrt(1/3) * sqrt(3 / fan_in) = 1 / sqrt(fan_in)
 * A fan below 1 is taken as 1, so a degenerate shape never divides by zero.
 */
#include "runtime/rt.h"

#include <math.h>

#define RT_PI 3.14159265358979323846

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t fnv1a64(const char *s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    h = (h ^ *p) * 0x100000001B3ull;
  return h;
}

void rt_rng_seed(RtRng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

void rt_rng_seed_stream(RtRng *r, uint64_t seed, const char *name) {
  rt_rng_seed(r, seed ^ fnv1a64(name));
}

uint64_t rt_rng_next(RtRng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double rt_rng_uniform(RtRng *r) {
  return (double)(rt_rng_next(r) >> 11) * 0x1.0p-53;
}

double rt_rng_normal(RtRng *r) {
  double u1 = rt_rng_uniform(r);
  double u2 = rt_rng_uniform(r);
  return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * RT_PI * u2);
}

uint64_t rt_rng_below(RtRng *r, uint64_t n) {
  if (n == 0) return 0;
  uint64_t threshold = (0 - n) % n;
  uint64_t x;
  do x = rt_rng_next(r);
  while (x < threshold);
  return x % n;
}

void rt_rng_shuffle(RtRng *r, int64_t *idx, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)rt_rng_below(r, (uint64_t)i + 1);
    int64_t tmp = idx[i];
    idx[i] = idx[j];
    idx[j] = tmp;
  }
}

/* --- initialisers ----------------------------------------------------------- */

const char *rt_init_name(RtInitKind k) {
  switch (k) {
  case INIT_ZEROS: return "zeros";
  case INIT_ONES: return "ones";
  case INIT_CONSTANT: return "constant";
  case INIT_UNIFORM: return "uniform";
  case INIT_NORMAL: return "normal";
  case INIT_KAIMING_UNIFORM: return "kaiming_uniform";
  case INIT_KAIMING_NORMAL: return "kaiming_normal";
  case INIT_XAVIER_UNIFORM: return "xavier_uniform";
  case INIT_XAVIER_NORMAL: return "xavier_normal";
  case INIT_TORCH_DEFAULT: return "torch_default";
  case INIT_COUNT: break;
  }
  return "?";
}

static void fill_const(float *p, int64_t n, double v) {
  for (int64_t i = 0; i < n; i++) p[i] = (float)v;
}

static void fill_uniform(float *p, int64_t n, double lo, double hi, RtRng *r) {
  for (int64_t i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * rt_rng_uniform(r));
}

static void fill_normal(float *p, int64_t n, double mean, double std, RtRng *r) {
  for (int64_t i = 0; i < n; i++) p[i] = (float)(mean + std * rt_rng_normal(r));
}

void rt_init_fill(float *p, int64_t n, RtInitKind k, double a, double b,
                  int64_t fan_in, int64_t fan_out, RtRng *r) {
  double fi = fan_in < 1 ? 1.0 : (double)fan_in;
  double fo = fan_out < 1 ? 1.0 : (double)fan_out;
  double bound;
  switch (k) {
  case INIT_ZEROS: fill_const(p, n, 0.0); break;
  case INIT_ONES: fill_const(p, n, 1.0); break;
  case INIT_CONSTANT: fill_const(p, n, a); break;
  case INIT_UNIFORM: fill_uniform(p, n, a, b, r); break;
  case INIT_NORMAL: fill_normal(p, n, a, b, r); break;
  case INIT_KAIMING_UNIFORM:
    bound = sqrt(6.0 / fi);
    fill_uniform(p, n, -bound, bound, r);
    break;
  case INIT_KAIMING_NORMAL: fill_normal(p, n, 0.0, sqrt(2.0 / fi), r); break;
  case INIT_XAVIER_UNIFORM:
    bound = sqrt(6.0 / (fi + fo));
    fill_uniform(p, n, -bound, bound, r);
    break;
  case INIT_XAVIER_NORMAL: fill_normal(p, n, 0.0, sqrt(2.0 / (fi + fo)), r); break;
  case INIT_TORCH_DEFAULT:
    bound = 1.0 / sqrt(fi);
    fill_uniform(p, n, -bound, bound, r);
    break;
  case INIT_COUNT: break;
  }
}
