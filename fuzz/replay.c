/*
 * replay.c — runs fuzz inputs without libFuzzer: every file named on the
 * command line (or found directly in a directory named there) is given to
 * the target's LLVMFuzzerTestOneInput once, in the order given.  The
 * plain build links each target with it (build/fuzz/replay_TARGET), so
 * the targets always compile with the rest of dlc, and an input the
 * fuzzer saved can be replayed under gdb or valgrind.  Prints the number
 * of inputs run; exits 1 when a file cannot be read.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return fprintf(stderr, "%s: cannot open\n", path), -1;
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0, n;
  do {
    if (len == cap) {
      cap = cap ? 2 * cap : 4096;
      uint8_t *nb = realloc(buf, cap);
      if (!nb) return free(buf), fclose(f), fprintf(stderr, "%s: out of memory\n", path), -1;
      buf = nb;
    }
    n = fread(buf + len, 1, cap - len, f);
    len += n;
  } while (n > 0);
  fclose(f);
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

static int run_dir(const char *dir, int *count) {
  DIR *d = opendir(dir);
  if (!d) return fprintf(stderr, "%s: cannot open\n", dir), -1;
  int rc = 0;
  for (struct dirent *e; (e = readdir(d)) && !rc;) {
    if (e->d_name[0] == '.') continue;
    size_t len = strlen(dir) + strlen(e->d_name) + 2;
    char *p = malloc(len);
    if (!p) break;
    snprintf(p, len, "%s/%s", dir, e->d_name);
    rc = run_file(p);
    *count += !rc;
    free(p);
  }
  closedir(d);
  return rc;
}

int main(int argc, char **argv) {
  int count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat sb;
    int is_dir = stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode);
    if (is_dir ? run_dir(argv[i], &count) : run_file(argv[i])) return 1;
    count += !is_dir;
  }
  printf("%d inputs run\n", count);
  return 0;
}
