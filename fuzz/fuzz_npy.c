/*
 * fuzz_npy.c — the NumPy .npy reader on arbitrary bytes.  A file that
 * reads must hold a tensor whose byte size matches its shape; every
 * other file is refused with a message.
 */
#include <string.h>

#include "fuzz/fuzz.h"
#include "runtime/rt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  RtTensor t;
  RtError err;
  if (rt_npy_read(fuzz_file(data, size), &t, &err) == RT_OK) {
    size_t n = rt_tensor_nbytes(&t);
    if (n > size) abort(); /* every byte of data comes from the file */
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += ((const uint8_t *)t.data)[i];
    rt_tensor_free(&t);
  } else if (!memchr(err.msg, 0, sizeof err.msg) || !err.msg[0]) {
    abort(); /* a failure always says why */
  }
  return 0;
}
