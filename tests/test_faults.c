/*
 * test_faults.c — dlc under faults: killed while saving, outputs that
 * cannot be written, and truncated data.  Every case runs the dlc command
 * itself in a child process (fork + exec) so the faults are real.
 *
 *  - faults/kill_during_save: `dlc train --save` of a model whose
 *    checkpoint (3 MB with Adam state) takes longer to write than an epoch
 *    to compute is killed with SIGKILL at seeded random times.  The
 *    checkpoint left behind must be byte for byte either the old one or
 *    the one of some finished epoch (references: one complete run per
 *    epoch count), never torn; the next complete save removes every
 *    temporary the kills left behind.
 *  - faults/stale_temporaries: a save removes "TARGET.tmp.XXXXXX" beside
 *    its target and nothing else.
 *  - faults/output_is_directory: `dlc M.dl -o DIR` fails before writing
 *    anything (no DIR.h).
 *  - faults/run_outputs_are_one_set, faults/train_c_and_weights_are_one_set:
 *    every file of `dlc run` (outputs, gradients) and of `dlc M.dl --train`
 *    (C, header, initial weights) is written, or none is; a path named
 *    twice is refused.
 *  - faults/read_only_dir, faults/full_disk: compiling and `train --save`
 *    into a directory the process may not write (when run as root, the
 *    child drops to uid 65534 so the permissions hold) and with writes
 *    failing with EFBIG (RLIMIT_FSIZE in the child: a full disk without
 *    mounting one): exit 1 with a message naming the file, old outputs
 *    untouched, no temporary left.
 *  - faults/truncated_*: .npy, gzip'd IDX and CSV data cut at seeded
 *    random lengths: exit 1 naming the file (CSV may also end at a row
 *    boundary and be valid), never a crash.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

/* --- running dlc in a child ------------------------------------------------------ */

typedef struct Limits {
  long fsize;      /* RLIMIT_FSIZE in bytes, 0 = none */
  int unprivileged; /* when root, run as uid/gid 65534 */
} Limits;

/* Starts dlc with the space-separated args in dir, output to dir/log.txt. */
static pid_t spawn(const char *dir, const char *args, const Limits *lim) {
  static char buf[4096];
  char *argv[64];
  int argc = 0;
  snprintf(buf, sizeof buf, "%s", args);
  argv[argc++] = (char *)DLC_EXE;
  for (char *t = strtok(buf, " "); t && argc < 63; t = strtok(NULL, " ")) argv[argc++] = t;
  argv[argc] = NULL;
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid) return pid;
  int fd = chdir(dir) == 0 ? open("log.txt", O_WRONLY | O_CREAT | O_TRUNC, 0666) : -1;
  if (fd < 0) _exit(126);
  dup2(fd, 1), dup2(fd, 2);
  if (lim && lim->fsize) {
    struct rlimit rl = {(rlim_t)lim->fsize, (rlim_t)lim->fsize};
    signal(SIGXFSZ, SIG_IGN); /* writes past the limit fail with EFBIG instead */
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(126);
  }
  if (lim && lim->unprivileged && getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(126);
  execv(DLC_EXE, argv);
  _exit(127);
}

/* Exit status, or 128 + signal. */
static int wait_for(pid_t pid) {
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *log_of(const char *dir) {
  char path[600];
  snprintf(path, sizeof path, "%s/log.txt", dir);
  char *s = tu_read_file(path, NULL);
  return s ? s : strdup("(no log)");
}

/* Runs dlc to the end; expects exit status want and needle in its output. */
static void expect_run(const char *dir, const char *args, const Limits *lim, int want, const char *needle) {
  int st = wait_for(spawn(dir, args, lim));
  char *log = log_of(dir);
  cr_expect_eq(st, want, "dlc %s: exit %d, wanted %d:\n%s", args, st, want, log);
  cr_expect(!needle || strstr(log, needle), "dlc %s: no '%s' in:\n%s", args, needle, log);
  free(log);
}

/* --- files ---------------------------------------------------------------------------- */

static char *path_in(const char *dir, const char *name) {
  static char bufs[4][600];
  static int k;
  char *p = bufs[k++ % 4];
  int n = snprintf(p, 600, "%s/%s", dir, name);
  cr_assert(n > 0 && n < 600, "path %s/%s too long", dir, name);
  return p;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

static char *read_bytes(const char *path, size_t *len) {
  char *s = tu_read_file(path, len);
  cr_assert_not_null(s, "cannot read %s", path);
  return s;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* Entries of dir whose name contains ".tmp.". */
static int count_temporaries(const char *dir) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
  closedir(d);
  return n;
}

/* x f32 [n, features] and y i64 [n] as .npy, from integer formulas. */
static void write_data(const char *dir, int64_t n, int64_t features) {
  RtTensor x, y;
  RtError err;
  int64_t xs[2] = {n, features}, ys[1] = {n};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, xs, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, ys, &err), RT_OK);
  for (int64_t i = 0; i < n * features; i++) ((float *)x.data)[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
  for (int64_t i = 0; i < n; i++) ((int64_t *)y.data)[i] = i % 4;
  cr_assert_eq(rt_npy_write(path_in(dir, "x.npy"), &x, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_npy_write(path_in(dir, "y.npy"), &y, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
}

/* A dense 256 -> 1024 -> 4 classifier with Adam: a 3 MB checkpoint, and
 * an epoch of 4 samples that takes far less time than saving it. */
static const char big_model[] =
    "model big\n"
    "input x: f32[N, 256]\n"
    "fc = dense(x, 1024)\n"
    "out = dense(relu(fc), 4)\n"
    "output out\n"
    "train {\n"
    "  label y: i64[N]\n"
    "  loss = cross_entropy(out, y)\n"
    "  optimizer = adam(lr=0.001)\n"
    "  batch = 4\n"
    "}\n";

static const char *setup_big(void) {
  const char *tmp = tu_scratch_dir();
  cr_assert_not_null(tmp);
  static char dir[512];
  snprintf(dir, sizeof dir, "%s", tmp);
  chmod(dir, 0755);
  write_text(path_in(dir, "big.dl"), big_model);
  write_data(dir, 4, 256);
  return dir;
}

#define TRAIN "train big.dl --backend=interp --quiet"
#define TRAIN_ARGS TRAIN " --data npy:x.npy,y.npy"

/* --- kill -9 during train --save ----------------------------------------------------- */

#define EPOCHS 5
#define KILLS 12

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

Test(faults, kill_during_save, .timeout = 300) {
  const char *dir = setup_big();
  char args[1024];
  /* references: the old checkpoint (another seed) and the one after each epoch */
  char *ref[EPOCHS + 1];
  size_t ref_len[EPOCHS + 1];
  double full = 0;
  for (int e = 0; e <= EPOCHS; e++) {
    snprintf(args, sizeof args, TRAIN_ARGS " --epochs %d --seed %d --save ck.safetensors", e ? e : 1, e ? 1 : 99);
    double t0 = now();
    expect_run(dir, args, NULL, 0, NULL);
    full = now() - t0;
    ref[e] = read_bytes(path_in(dir, "ck.safetensors"), &ref_len[e]);
  }
  RtRng r;
  rt_rng_seed(&r, 2024);
  int interrupted = 0, per_state[EPOCHS + 1] = {0};
  snprintf(args, sizeof args, TRAIN_ARGS " --epochs %d --seed 1 --save ck.safetensors", EPOCHS);
  for (int k = 0; k < KILLS; k++) {
    FILE *f = fopen(path_in(dir, "ck.safetensors"), "wb");
    cr_assert(f && fwrite(ref[0], 1, ref_len[0], f) == ref_len[0]);
    fclose(f);
    pid_t pid = spawn(dir, args, NULL);
    usleep((useconds_t)(rt_rng_uniform(&r) * full * 1e6));
    kill(pid, SIGKILL);
    wait_for(pid);
    interrupted += count_temporaries(dir) > 0;
    size_t len;
    char *got = read_bytes(path_in(dir, "ck.safetensors"), &len);
    int state = -1;
    for (int e = 0; e <= EPOCHS && state < 0; e++)
      if (len == ref_len[e] && !memcmp(got, ref[e], len)) state = e;
    cr_expect_geq(state, 0, "kill %d: the checkpoint (%zu bytes) is neither the old one nor that of a finished epoch", k,
                  len);
    if (state >= 0) per_state[state]++;
    free(got);
  }
  cr_log_info("kill_during_save: %d of %d kills left a temporary; old %d, epochs 1-%d: %d %d %d %d %d", interrupted,
              KILLS, per_state[0], EPOCHS, per_state[1], per_state[2], per_state[3], per_state[4], per_state[5]);
  snprintf(args, sizeof args, TRAIN_ARGS " --epochs 1 --seed 1 --save ck.safetensors");
  expect_run(dir, args, NULL, 0, NULL);
  cr_expect_eq(count_temporaries(dir), 0, "a complete save left temporaries of interrupted ones behind");
  for (int e = 0; e <= EPOCHS; e++) free(ref[e]);
}

Test(faults, stale_temporaries) {
  const char *dir = setup_big();
  const char *stale[] = {"ck.safetensors.tmp.AbC123", "ck.safetensors.tmp.zzzzzz"};
  const char *kept[] = {"ck.safetensors.tmp.keep", "other.safetensors.tmp.AbC123", "ck.safetensors.tmp.AbC1234"};
  for (int i = 0; i < 2; i++) write_text(path_in(dir, stale[i]), "partial");
  for (int i = 0; i < 3; i++) write_text(path_in(dir, kept[i]), "not ours");
  expect_run(dir, TRAIN_ARGS " --epochs 1 --save ck.safetensors", NULL, 0, NULL);
  for (int i = 0; i < 2; i++) cr_expect(!exists(path_in(dir, stale[i])), "%s is still there", stale[i]);
  for (int i = 0; i < 3; i++) cr_expect(exists(path_in(dir, kept[i])), "%s was removed", kept[i]);
}

/* --- outputs that cannot be written ---------------------------------------------------- */

Test(faults, output_is_directory) {
  const char *dir = setup_big();
  mkdir(path_in(dir, "out"), 0755);
  expect_run(dir, "big.dl -o out", NULL, 1, "is a directory");
  cr_expect(!exists(path_in(dir, "out.h")), "out.h was written before out failed");
  expect_run(dir, "big.dl --emit=obj -o out", NULL, 1, "is a directory");
  cr_expect(!exists(path_in(dir, "out.h")), "out.h was written before out failed");
  cr_expect_eq(count_temporaries(dir), 0);
}

static const char two_outputs[] =
    "model two\n"
    "input x: f32[N, 3]\n"
    "h = dense(x, 2)\n"
    "output h\n"
    "output s = sigmoid(h)\n";

Test(faults, run_outputs_are_one_set, .timeout = 120) {
  const char *dir = setup_big();
  write_text(path_in(dir, "two.dl"), two_outputs);
  float ones[6] = {1, 1, 1, 1, 1, 1};
  RtTensor x = {.dtype = DT_F32, .rank = 2, .shape = {2, 3}, .data = ones};
  RtError err;
  cr_assert_eq(rt_npy_write(path_in(dir, "x.npy"), &x, &err), RT_OK, "%s", err.msg);
  expect_run(dir, "run two.dl --input x=x.npy --output h=h.npy --output s=nodir/s.npy", NULL, 1, "nodir");
  cr_expect(!exists(path_in(dir, "h.npy")), "h.npy was written though s.npy could not be");
  expect_run(dir, "run two.dl --input x=x.npy --output h=a.npy --output s=a.npy", NULL, 1, "named twice");
  cr_expect(!exists(path_in(dir, "a.npy")), "a.npy was written though it was named twice");
  expect_run(dir, "run two.dl --input x=x.npy --output h=h.npy --output s=s.npy", NULL, 0, NULL);
  cr_expect(exists(path_in(dir, "h.npy")) && exists(path_in(dir, "s.npy")));
  cr_expect_eq(count_temporaries(dir), 0);
}

Test(faults, train_c_and_weights_are_one_set, .timeout = 120) {
  const char *dir = setup_big();
  cr_assert_eq(mkdir(path_in(dir, "big.init.safetensors"), 0755), 0);
  expect_run(dir, "big.dl --train -o big.c", NULL, 1, "is a directory");
  cr_expect(!exists(path_in(dir, "big.c")) && !exists(path_in(dir, "big.h")),
            "the C was written though its initial weights could not be");
  cr_assert_eq(rmdir(path_in(dir, "big.init.safetensors")), 0);
  expect_run(dir, "big.dl --train -o big.c", NULL, 0, NULL);
  cr_expect(exists(path_in(dir, "big.c")) && exists(path_in(dir, "big.h")) &&
            exists(path_in(dir, "big.init.safetensors")));
  cr_expect_eq(count_temporaries(dir), 0);
}

Test(faults, read_only_dir, .timeout = 120) {
  const char *dir = setup_big();
  char out[600];
  snprintf(out, sizeof out, "%s/out", dir);
  cr_assert_eq(mkdir(out, 0755), 0);
  const char *names[] = {"big.c", "big.h", "ck.safetensors"};
  for (int i = 0; i < 3; i++) write_text(path_in(out, names[i]), "old contents\n");
  cr_assert_eq(chmod(out, 0555), 0);
  Limits lim = {0, 1};
  expect_run(dir, "big.dl -o out/big.c", &lim, 1, "cannot write in directory");
  expect_run(dir, TRAIN_ARGS " --epochs 1 --save out/ck.safetensors", &lim, 1, "out/ck.safetensors");
  for (int i = 0; i < 3; i++) {
    char *s = read_bytes(path_in(out, names[i]), NULL);
    cr_expect_str_eq(s, "old contents\n", "%s changed", names[i]);
    free(s);
  }
  cr_expect_eq(count_temporaries(out), 0, "temporaries left in out/");
  chmod(out, 0755);
}

Test(faults, full_disk, .timeout = 120) {
  const char *dir = setup_big();
  char out[600];
  snprintf(out, sizeof out, "%s/out", dir);
  cr_assert_eq(mkdir(out, 0755), 0);
  /* the C of big.dl is about 9 kB and its checkpoint 3 MB: both exceed the limit */
  Limits lim = {4096, 0};
  const char *names[] = {"big.c", "big.h", "ck.safetensors"};
  for (int i = 0; i < 3; i++) write_text(path_in(out, names[i]), "old contents\n");
  expect_run(dir, "big.dl -o out/big.c", &lim, 1, "File too large");
  expect_run(dir, TRAIN_ARGS " --epochs 1 --save out/ck.safetensors", &lim, 1, "File too large");
  for (int i = 0; i < 3; i++) {
    char *s = read_bytes(path_in(out, names[i]), NULL);
    cr_expect_str_eq(s, "old contents\n", "%s changed", names[i]);
    free(s);
  }
  cr_expect_eq(count_temporaries(out), 0, "temporaries left in out/");
}

/* --- truncated data ---------------------------------------------------------------------- */

static void write_prefix(const char *path, const char *bytes, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert(f && fwrite(bytes, 1, len, f) == len);
  fclose(f);
}

/* Cut lengths: the first three inside the first 128 bytes (headers), the
 * rest anywhere before the end. */
static size_t cut_at(RtRng *r, int k, size_t len) {
  size_t span = k < 3 && len > 128 ? 128 : len;
  return (size_t)rt_rng_below(r, span);
}

#define CUTS 8

Test(faults, truncated_npy, .timeout = 120) {
  const char *dir = setup_big();
  size_t len;
  char *x = read_bytes(path_in(dir, "x.npy"), &len);
  RtRng r;
  rt_rng_seed(&r, 7);
  for (int k = 0; k < CUTS; k++) {
    write_prefix(path_in(dir, "cut.npy"), x, cut_at(&r, k, len));
    expect_run(dir, TRAIN " --epochs 1 --data npy:cut.npy,y.npy", NULL, 1, "cut.npy");
    expect_run(dir, "run big.dl --input x=cut.npy", NULL, 1, "cut.npy");
  }
  free(x);
}

/* IDX images u8 [4, 256] and labels u8 [4], gzip'd. */
static void write_idx_gz(const char *path, const int *dims, int rank) {
  gzFile f = gzopen(path, "wb");
  cr_assert_not_null(f);
  unsigned char head[4] = {0, 0, 0x08, (unsigned char)rank};
  gzwrite(f, head, 4);
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    unsigned char d[4] = {0, 0, (unsigned char)(dims[i] >> 8), (unsigned char)dims[i]};
    gzwrite(f, d, 4);
    n *= dims[i];
  }
  for (int64_t i = 0; i < n; i++) gzputc(f, rank == 1 ? (int)(i % 4) : (int)((i * 37) % 256));
  cr_assert_eq(gzclose(f), Z_OK);
}

Test(faults, truncated_idx, .timeout = 120) {
  const char *dir = setup_big();
  int idims[2] = {4, 256}, ldims[1] = {4};
  write_idx_gz(path_in(dir, "images.gz"), idims, 2);
  write_idx_gz(path_in(dir, "labels.gz"), ldims, 1);
  expect_run(dir, TRAIN " --epochs 1 --data idx:images.gz,labels.gz", NULL, 0, NULL);
  size_t len;
  char *img = read_bytes(path_in(dir, "images.gz"), &len);
  RtRng r;
  rt_rng_seed(&r, 8);
  for (int k = 0; k < CUTS; k++) {
    write_prefix(path_in(dir, "cut.gz"), img, cut_at(&r, k, len));
    expect_run(dir, TRAIN " --epochs 1 --data idx:cut.gz,labels.gz", NULL, 1, "cut.gz");
  }
  free(img);
}

Test(faults, truncated_csv, .timeout = 120) {
  const char *dir = setup_big();
  char *text = malloc(1 << 16);
  size_t len = 0;
  for (int c = 0; c < 256; c++) len += (size_t)sprintf(text + len, "f%d,", c);
  len += (size_t)sprintf(text + len, "label\n");
  for (int i = 0; i < 4; i++) {
    for (int c = 0; c < 256; c++) len += (size_t)sprintf(text + len, "%g,", (double)((i * 256 + c) % 13) / 13);
    len += (size_t)sprintf(text + len, "%d\n", i % 4);
  }
  RtRng r;
  rt_rng_seed(&r, 9);
  for (int k = 0; k < CUTS; k++) {
    write_prefix(path_in(dir, "cut.csv"), text, cut_at(&r, k, len));
    int st = wait_for(spawn(dir, TRAIN " --epochs 1 --data csv:cut.csv", NULL));
    char *log = log_of(dir);
    /* a cut at a row boundary is a valid, shorter file */
    cr_expect(st == 0 || st == 1, "cut %d: exit %d:\n%s", k, st, log);
    cr_expect(st == 0 || strstr(log, "cut.csv"), "cut %d: the message does not name the file:\n%s", k, log);
    free(log);
  }
  free(text);
}
