/*
 * fuzz.h — what the libFuzzer targets share: the readers of dlc take a
 * path, so each input is put into one anonymous in-memory file (memfd)
 * and handed over as /proc/self/fd/N; messages go to /dev/null so the
 * diagnostics code still runs without flooding the fuzzer's output.
 *
 * Each target is one file fuzz_NAME.c defining LLVMFuzzerTestOneInput;
 * scripts/fuzz.sh builds them (clang-19 -fsanitize=fuzzer,address,undefined)
 * and runs them over fuzz/corpus/NAME with fuzz/dict/NAME.dict.
 */
#ifndef DLC_FUZZ_H
#define DLC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* A FILE that swallows everything, opened once. */
static inline FILE *fuzz_devnull(void) {
  static FILE *f;
  if (!f) f = fopen("/dev/null", "w");
  if (!f) abort();
  return f;
}

/* The path of a file holding exactly data[0..size); the same memfd is
 * reused for every input. */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("dlc-fuzz", 0);
    if (fd < 0) abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0) abort();
  for (size_t off = 0; off < size;) {
    ssize_t w = pwrite(fd, data + off, size - off, (off_t)off);
    if (w <= 0) abort();
    off += (size_t)w;
  }
  return path;
}

#endif
