/*
 * test_hostile.c — inputs too large or too strange for a fuzzer to reach.
 *
 * Every input is generated here, in a scratch directory, and given to the
 * real dlc executable (and the REPL) under a time limit: a 20,000-term
 * operator chain, blocks whose calls double 30 levels deep, a block
 * expanded into more nodes than a model may have, endless and binary
 * model files, 100,000 erroneous lines, 20,000 valid statements, a 1 MB
 * identifier, shapes whose sizes overflow int64.  Each case wants either
 * success or a clean refusal — exit status 1 and a message naming the
 * limit or the problem — and never a signal, and it must come within a
 * bound far below what the unguarded algorithms took (minutes, or never),
 * yet generous for a loaded machine.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "tests/testutil.h"

typedef struct Run {
  int status;       /* exit status; 124 when the time limit killed it */
  double seconds;
  char *out;        /* stdout and stderr */
} Run;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs `dlc ARGS` in dir (stdin from `in` when not NULL) under a limit of
 * limit seconds. */
static Run run_in(const char *dir, const char *args, const char *in, int limit) {
  char cmd[4096], log[600];
  snprintf(log, sizeof log, "%s/log.txt", dir);
  snprintf(cmd, sizeof cmd, "cd %s && timeout -s KILL %d %s %s < %s > %s 2>&1", dir, limit, DLC_EXE, args,
           in ? in : "/dev/null", log);
  double t0 = now();
  int st = system(cmd);
  Run r = {WIFEXITED(st) ? WEXITSTATUS(st) : -1, now() - t0, tu_read_file(log, NULL)};
  cr_assert_not_null(r.out);
  cr_assert(r.status != 137 && r.status != 124, "dlc %.200s: not done within %d s", args, limit);
  cr_assert(r.status < 128 && r.status >= 0, "dlc %.200s died (status %d):\n%.2000s", args, r.status, r.out);
  return r;
}

static Run run(const char *dir, const char *args, int limit) { return run_in(dir, args, NULL, limit); }

static void expect_refusal(Run r, const char *what, const char *needle) {
  cr_expect_eq(r.status, 1, "%s: exit %d, wanted 1:\n%.2000s", what, r.status, r.out);
  cr_expect(strstr(r.out, needle) != NULL, "%s: no '%s' in:\n%.2000s", what, needle, r.out);
  free(r.out);
}

static void expect_success(Run r, const char *what) {
  cr_expect_eq(r.status, 0, "%s: exit %d:\n%.2000s", what, r.status, r.out);
  free(r.out);
}

/* Writes text to dir/name; returns the path (static buffer). */
static const char *put(const char *dir, const char *name, const char *text) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
  fclose(f);
  return path;
}

/* A growing string for generated models. */
typedef struct Text {
  char *s;
  size_t n, cap;
} Text;

static void add(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(Text *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int need = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (t->n + (size_t)need + 1 > t->cap) {
    t->cap = (t->n + (size_t)need + 1) * 2;
    t->s = realloc(t->s, t->cap);
    cr_assert_not_null(t->s);
  }
  va_start(ap, fmt);
  vsnprintf(t->s + t->n, (size_t)need + 1, fmt, ap);
  va_end(ap);
  t->n += (size_t)need;
}

/* --- long chains ----------------------------------------------------------------- */

static char *chain_model(int terms) {
  Text t = {0};
  add(&t, "input x: f32[N, 4]\ny = x");
  for (int i = 1; i < terms; i++) add(&t, i % 3 ? " + x" : " - x * 2");
  add(&t, "\noutput y\n");
  return t.s;
}

Test(hostile, a_chain_of_20000_operators_compiles, .timeout = 300) {
  const char *dir = tu_scratch_dir();
  char *m = chain_model(20000);
  put(dir, "chain.dl", m);
  expect_success(run(dir, "check chain.dl", 120), "check");
  expect_success(run(dir, "chain.dl -o chain.c", 120), "compile to C");
  put(dir, "base.dl", "input x: f32[N, 4]\noutput x\n");
  Text s = {0};
  add(&s, "load chain.dl\nload base.dl\nz = x");
  for (int i = 1; i < 20000; i++) add(&s, " + x");
  add(&s, "\nquit\n");
  put(dir, "session.txt", s.s);
  Run r = run_in(dir, "repl", "session.txt", 120);
  cr_expect(strstr(r.out, "chain.dl: model 'chain'") != NULL, "%.2000s", r.out);
  cr_expect(strstr(r.out, "z: f32[N, 4]") != NULL, "%.2000s", r.out);
  expect_success(r, "the chain typed into the REPL");
  free(m), free(s.s);
}

/* --- block expansion -------------------------------------------------------------- */

Test(hostile, blocks_calling_blocks_twice_30_deep_stop_at_the_call_limit, .timeout = 300) {
  const char *dir = tu_scratch_dir();
  Text t = {0};
  add(&t, "input x: f32[N, 4]\nblock b0(h) {\n  return relu(h)\n}\n");
  for (int i = 1; i <= 30; i++) add(&t, "block b%d(h) {\n  a = b%d(h)\n  return b%d(a)\n}\n", i, i - 1, i - 1);
  add(&t, "y = b30(x)\noutput y\n");
  put(dir, "deep.dl", t.s);
  Run r = run(dir, "check deep.dl", 120);
  cr_expect_lt(r.seconds, 60, "took %.1f s", r.seconds);
  expect_refusal(r, "2^30 block expansions", "more than 100000 block calls");
  free(t.s);
}

Test(hostile, a_wide_block_stops_at_the_node_limit, .timeout = 300) {
  const char *dir = tu_scratch_dir();
  Text t = {0};
  add(&t, "input x: f32[N, 4]\nblock wide(h) {\n");
  for (int i = 0; i < 1000; i++) add(&t, "  h = relu(h)\n");
  add(&t, "  return h\n}\ny0 = x\n");
  for (int i = 1; i <= 400; i++) add(&t, "y%d = wide(y%d)\n", i, i - 1);
  add(&t, "output y400\n");
  put(dir, "wide.dl", t.s);
  expect_refusal(run(dir, "check wide.dl", 120), "400,000 nodes", "more than 100000 graph nodes");
  free(t.s);
}

/* --- endless, huge and binary model files -------------------------------------------- */

Test(hostile, endless_and_binary_model_files_are_refused_at_once, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  expect_refusal(run(dir, "check /dev/urandom", 30), "/dev/urandom", "NUL byte");
  expect_refusal(run(dir, "check /dev/zero", 30), "/dev/zero", "NUL byte at offset 0");
  /* endless text through a pipe: stops at the size limit */
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cd %s && yes 'x = 1' | timeout -s KILL 60 %s check /dev/stdin > log.txt 2>&1", dir, DLC_EXE);
  int st = system(cmd);
  char log[600];
  snprintf(log, sizeof log, "%s/log.txt", dir);
  char *out = tu_read_file(log, NULL);
  cr_assert_not_null(out);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1, "endless pipe: status %d:\n%s", st, out);
  cr_expect(strstr(out, "larger than 16 MiB") != NULL, "%s", out);
  free(out);
  /* a regular file over the limit, refused before it is read */
  char path[600];
  snprintf(path, sizeof path, "%s/big.dl", dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  cr_assert(fd >= 0 && ftruncate(fd, (off_t)FE_MAX_FILE_BYTES + 1) == 0);
  close(fd);
  expect_refusal(run(dir, "check big.dl", 30), "17 MiB file", "larger than 16 MiB");
  /* text with a NUL byte in the middle */
  snprintf(path, sizeof path, "%s/nul.dl", dir);
  FILE *f = fopen(path, "wb");
  fwrite("input x: f32[N, 4]\n\0y = x\n", 1, 26, f);
  fclose(f);
  expect_refusal(run(dir, "check nul.dl", 30), "a NUL byte", "NUL byte at offset 19");
  /* and the REPL's load */
  put(dir, "session.txt", "load /dev/urandom\nload /dev/zero\n");
  Run r = run_in(dir, "repl", "session.txt", 60);
  cr_expect(strstr(r.out, "/dev/zero: error: NUL byte") != NULL, "%s", r.out);
  free(r.out);
}

/* --- many statements, many errors ----------------------------------------------------- */

Test(hostile, many_errors_and_many_statements_take_linear_time, .timeout = 300) {
  const char *dir = tu_scratch_dir();
  Text e = {0}, v = {0};
  add(&e, "input x: f32[N, 4]\n");
  for (int i = 0; i < 100000; i++) add(&e, "y%d = x + undefined_name%d\n", i, i);
  put(dir, "errors.dl", e.s);
  Run r = run(dir, "check errors.dl", 120);
  cr_expect_lt(r.seconds, 15, "100,000 erroneous lines took %.1f s", r.seconds);
  cr_expect(strstr(r.out, "unknown name 'undefined_name0'") != NULL, "%.2000s", r.out);
  expect_refusal(r, "100,000 errors", "error");
  add(&v, "input x: f32[N, 4]\ny0 = relu(x)\n");
  for (int i = 1; i < 20000; i++) add(&v, "y%d = y%d * 0.5 + x\n", i, i - 1);
  add(&v, "output y19999\n");
  put(dir, "valid.dl", v.s);
  r = run(dir, "check valid.dl", 120);
  cr_expect_lt(r.seconds, 6, "20,000 statements took %.1f s", r.seconds);
  expect_success(r, "20,000 statements");
  free(e.s), free(v.s);
}

/* --- identifiers, lists ------------------------------------------------------------------ */

Test(hostile, a_one_megabyte_identifier_compiles, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  size_t len = 1 << 20;
  char *name = malloc(len + 1);
  memset(name, 'a', len);
  name[len] = 0;
  Text t = {0};
  add(&t, "input x: f32[N, 4]\n%s = relu(x)\noutput %s\ny = %sb + 1\n", name, name, name);
  put(dir, "ident.dl", t.s);
  Run r = run(dir, "check ident.dl", 60);
  cr_expect(strstr(r.out, "unknown name 'aaaa") != NULL, "%.300s", r.out);
  expect_refusal(r, "a misspelt 1 MB name", "error");
  t.n = 0;
  add(&t, "input x: f32[N, 4]\n%s = relu(x)\noutput %s\n", name, name);
  put(dir, "ident.dl", t.s);
  expect_success(run(dir, "check ident.dl", 60), "a 1 MB name");
  expect_success(run(dir, "ident.dl -o ident.c", 60), "a 1 MB name compiled");
  free(name), free(t.s);
}

Test(hostile, pad_takes_two_entries_for_each_of_six_dimensions) {
  Diags d;
  Model m;
  char *msg = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&msg, &len);
  diag_init(&d, out);
  cr_assert_eq(fe_load_string(&m, "pad.dl",
                              "input x: f32[2, 2, 3, 4, 1, 2]\n"
                              "y = pad(x, [1, 2, 0, 1, 2, 0, 1, 1, 0, 3, 1, 1])\n"
                              "output y\n", &d), 0);
  const Node *y = &m.g.nodes[m.g.outputs[0].id];
  Shape want = {6, {4, 5, 5, 6, 2, 5}};
  cr_expect(ir_shape_eq(&y->shape, &want), "pad's result has the wrong shape");
  fe_model_free(&m);
  cr_expect_eq(fe_load_string(&m, "pad.dl",
                              "input x: f32[2, 2]\ny = reshape(x, [1, 1, 1, 1, 2, 1, 2])\noutput y\n", &d), 1,
               "a seven-entry shape is refused");
  fe_model_free(&m);
  fclose(out);
  cr_expect(strstr(msg, "'shape' of reshape takes at most 6 entries, not 7") != NULL, "%s", msg);
  free(msg);
}

/* --- sizes that overflow or pass the limit --------------------------------------------- */

/* `dlc check` on model text; wants exit 1 and needle in the output. */
static void refused_model(const char *dir, const char *text, const char *args, const char *needle) {
  put(dir, "m.dl", text);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "check m.dl %s", args);
  expect_refusal(run(dir, cmd, 30), text, needle);
}

Test(hostile, shapes_whose_size_overflows_are_refused_at_their_line, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  refused_model(dir, "input x: f32[4294967296, 4294967296, 4294967296]\ny = relu(x)\noutput y\n", "",
                "m.dl:1:10: error: the size of f32[4294967296, 4294967296, 4294967296] overflows 64 bits");
  refused_model(dir, "input x: f32[9223372036854775807, 2]\ny = relu(x)\noutput y\n", "", "overflows 64 bits");
  refused_model(dir, "input x: f32[N, 1099511627776]\noutput x\n", "",
                "takes 4398046511104 bytes, more than the limit of 1 TiB");
  refused_model(dir, "input x: f32[N, 4]\nparam w: f32[4611686018427387904, 4] = zeros\ny = x @ transpose(w)\noutput y\n",
                "", "m.dl:2:7: error: the size of f32[4611686018427387904, 4] overflows");
  refused_model(dir, "input x: f32[N, 784]\nh = dense(x, 4611686018427387904)\noutput h\n", "", "overflows 64 bits");
  refused_model(dir, "input x: f32[N, 1, 1073741824, 1]\ny = upsample(x, scale_factor=[1099511627776, 1])\noutput y\n",
                "", "upsample: the upsampled extent overflows 64 bits");
  refused_model(dir, "input x: f32[N, 1, 1024, 1024]\ny = upsample(x, scale_factor=[1048576, 1])\noutput y\n", "",
                "upsample: f32[N, 1, 1073741824, 1024] takes 4398046511104 bytes, more than the limit of 1 TiB");
  refused_model(dir, "input x: f32[N, 4]\ny = pad(x, [9223372036854775807, 1])\noutput y\n", "",
                "pad: the padded extent of dimension 1 overflows 64 bits");
  refused_model(dir, "input x: f32[N, 4]\ny = reshape(x, [N, 4294967296, 4294967296, 4294967296])\noutput y\n", "",
                "reshape: the size of the target shape overflows 64 bits");
  refused_model(dir, "input x: f32[N, 4]\nk = 9223372036854775807\ny = dense(x, k + 1) as fc\noutput y\n", "",
                "integer overflow: 9223372036854775807 + 1 does not fit in 64 bits");
  refused_model(dir, "input x: f32[N, 1, 8, 8]\ny = max_pool2d(x, kernel=2, stride=4611686018427387904)\noutput y\n",
                "", "stride must be at most 1099511627776");
}

Test(hostile, max_is_bounded_and_sizes_are_checked_at_it, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  /* h is read by two kernels, so it stays a temporary (fusion would run
   * a single reader at relu's store and need no arena): the arena's size
   * is checked at the maximum */
  const char *m = "input x: f32[N, 784]\nh = relu(x)\ny = h * 2\nz = h + 1\noutput y\noutput z\n";
  refused_model(dir, m, "--max N=99999999999999999999", "expected SYM=N with 1 <= N <= 1099511627776");
  refused_model(dir, m, "--max N=1099511627777", "expected SYM=N with 1 <= N <= 1099511627776");
  refused_model(dir, m, "--max N=1099511627776", "m.dl:1:7: error: x: f32[N, 784] at N = 1099511627776 takes");
  refused_model(dir, m, "--max N=1000000000", "x: f32[N, 784] at N = 1000000000 takes 3136000000000 bytes, more than the limit");
  put(dir, "m.dl", m);
  Run r = run(dir, "check m.dl --max N=65536", 30);
  cr_expect(strstr(r.out, "inference arena: 205520896 bytes at N = 65536") != NULL, "%s", r.out);
  expect_success(r, "N = 65536");
}
