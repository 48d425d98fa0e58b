/*
 * random.h — the counter-based uniform draw of dropout (ir_random_uniform),
 * defined once: ir.c compiles this text, the C emitter prints it into
 * every emitted file that draws random numbers, and the LLVM emitter
 * builds the same instructions from its constants.  A draw is splitmix64
 * of key + counter * the golden ratio, its top 24 bits scaled to [0, 1):
 * any element of any step can be drawn on its own, in any order.
 */
#define DLC_RNG_GOLDEN 0x9E3779B97F4A7C15u
#define DLC_RNG_MUL1 0xBF58476D1CE4E5B9u
#define DLC_RNG_MUL2 0x94D049BB133111EBu
#define DLC_RNG_SHIFT1 30
#define DLC_RNG_SHIFT2 27
#define DLC_RNG_SHIFT3 31
#define DLC_RNG_DROP 40                      /* 64 - the 24 bits kept */
#define DLC_RNG_SCALE (1.0f / 16777216.0f)   /* 2^-24 */

static inline uint64_t dlc_mix64(uint64_t z) {
  z = (z ^ (z >> DLC_RNG_SHIFT1)) * DLC_RNG_MUL1;
  z = (z ^ (z >> DLC_RNG_SHIFT2)) * DLC_RNG_MUL2;
  return z ^ (z >> DLC_RNG_SHIFT3);
}

static inline float dlc_uniform(uint64_t key, uint64_t ctr) {
  return (float)(dlc_mix64(key + ctr * DLC_RNG_GOLDEN) >> DLC_RNG_DROP) * DLC_RNG_SCALE;
}
