/*
 * test_fuzz_seeds.c — every fuzz target over its committed seed corpus,
 * through the replay driver (fuzz/replay.c) of this build: the seeds
 * still read, the targets still run against today's APIs, and in the
 * sanitizer build every seed runs under AddressSanitizer and UBSan.
 * Each target must run every seed and exit 0.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <sys/wait.h>

#include "tests/testutil.h"

static int count_files(const char *dir) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d, "%s", dir);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void replay(const char *target, const char *kind) {
  char corpus[600], cmd[1600];
  snprintf(corpus, sizeof corpus, "%s/fuzz/corpus/%s", DLC_SOURCE_DIR, kind);
  snprintf(cmd, sizeof cmd, "%s/fuzz/replay_%s %s 2>&1", DLC_BUILD_DIR, target, corpus);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  char out[8192] = "";
  size_t len = fread(out, 1, sizeof out - 1, p);
  out[len] = 0;
  int st = pclose(p);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "replay_%s: status %d:\n%s", target, st, out);
  char want[64];
  snprintf(want, sizeof want, "%d inputs run", count_files(corpus));
  cr_expect(strstr(out, want) != NULL, "replay_%s: wanted '%s':\n%s", target, want, out);
}

Test(fuzz_seeds, frontend) { replay("frontend", "dl"); }
Test(fuzz_seeds, compile) { replay("compile", "dl"); }
Test(fuzz_seeds, npy) { replay("npy", "npy"); }
Test(fuzz_seeds, safetensors) { replay("safetensors", "safetensors"); }
Test(fuzz_seeds, idx) { replay("idx", "idx"); }
Test(fuzz_seeds, csv) { replay("csv", "csv"); }
Test(fuzz_seeds, checkpoint) { replay("checkpoint", "checkpoint"); }
Test(fuzz_seeds, onnx) { replay("onnx", "onnx"); }
