/*
 * fuzz_idx.c — the IDX reader (plain or gzip'd, through zlib) on
 * arbitrary bytes, and the image-to-f32 conversion of what it reads.
 */
#include "fuzz/fuzz.h"
#include "runtime/rt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  RtTensor t, f;
  RtError err;
  if (rt_idx_read(fuzz_file(data, size), &t, &err) != RT_OK) return 0;
  if (rt_to_f32_scaled(&t, 1.0 / 255, 0, &f, &err) == RT_OK) rt_tensor_free(&f);
  rt_tensor_free(&t);
  return 0;
}
