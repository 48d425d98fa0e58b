/*
 * test_fe_diag.c — the frontend's diagnostics and its robustness.
 *
 * Golden tests: every tests/fixtures/diag/NAME.dl is loaded and the exact
 * text of all its messages is compared with NAME.expected.  With
 * DLC_REGEN_GOLDEN=1 in the environment the .expected files are rewritten
 * instead (review the diff before committing it).
 *
 * Robustness: every prefix of the samples (cut at each byte) and a few
 * thousand seeded random mutations must load without crashing, and every
 * load that fails must have reported at least one error; loads that
 * succeed must pass ir_verify.
 */
#include <criterion/criterion.h>
#include <dirent.h>

#include "frontend/frontend.h"
#include "tests/testutil.h"

#define DIAG_DIR FIXTURE("diag")

/* Loads len bytes as path; returns the messages (malloc'd) and the count. */
static char *load_messages(const char *path, const char *text, size_t len, int *nerr, int verify) {
  char *out = NULL;
  size_t outlen = 0;
  FILE *f = open_memstream(&out, &outlen);
  Diags d;
  diag_init(&d, f);
  d.max_errors = 100;
  Model m;
  *nerr = fe_load_buffer(&m, path, text, len, &d);
  if (verify && *nerr == 0) cr_expect_eq(ir_verify(&m.g, &d), 0, "%s built an invalid graph", path);
  fe_model_free(&m);
  fclose(f);
  return out;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Reads a whole file, NUL bytes included. */
static char *read_bytes(const char *path, size_t *len) {
  char *s = tu_read_file(path, len);
  cr_assert_not_null(s, "cannot read %s", path);
  return s;
}

static void check_golden(const char *name, int regen) {
  char path[1024], expected_path[1024], shown[512];
  snprintf(path, sizeof path, "%s/%s", DIAG_DIR, name);
  snprintf(expected_path, sizeof expected_path, "%.*s.expected", (int)(strlen(path) - 3), path);
  snprintf(shown, sizeof shown, "tests/fixtures/diag/%s", name);
  size_t len;
  char *text = read_bytes(path, &len);
  int nerr;
  char *got = load_messages(shown, text, len, &nerr, 1);
  cr_expect_gt(nerr, 0, "%s: a broken model must report errors", name);
  if (regen) {
    FILE *f = fopen(expected_path, "w");
    cr_assert_not_null(f);
    fputs(got, f);
    fclose(f);
  } else {
    char *want = tu_read_file(expected_path, NULL);
    cr_expect_not_null(want, "missing %s (run with DLC_REGEN_GOLDEN=1)", expected_path);
    if (want) cr_expect_str_eq(got, want, "%s: messages differ\n--- got:\n%s--- expected:\n%s", name, got, want);
    free(want);
  }
  free(got);
  free(text);
}

Test(fe_diag, golden) {
  const char *regen_env = getenv("DLC_REGEN_GOLDEN");
  int regen = regen_env && strcmp(regen_env, "1") == 0;
  DIR *dir = opendir(DIAG_DIR);
  cr_assert_not_null(dir);
  char *names[256];
  int n = 0;
  for (struct dirent *e; (e = readdir(dir)) && n < 256;)
    if (ends_with(e->d_name, ".dl")) names[n++] = strdup(e->d_name);
  closedir(dir);
  cr_expect_geq(n, 15, "at least 15 broken models");
  for (int i = 0; i < n; i++) {
    check_golden(names[i], regen);
    free(names[i]);
  }
}

Test(fe_diag, nul_byte) {
  int nerr;
  char *got = load_messages("bin.dl", "input x: f32[2]\n\0output x\n", 26, &nerr, 0);
  cr_expect_eq(nerr, 1);
  cr_expect_str_eq(got, "bin.dl:2:1: error: NUL byte in the file; a .dl file must be text\n");
  free(got);
}

Test(fe_diag, error_limit) {
  char text[4096] = "input x: f32[2]\n";
  for (int i = 0; i < 40; i++) strcat(text, "h = relu(q)\n");
  strcat(text, "output x\n");
  int nerr;
  char *got = load_messages("many.dl", text, strlen(text), &nerr, 0);
  cr_expect_eq(nerr, 40, "every error is counted");
  free(got);
  char *out = NULL;
  size_t outlen = 0;
  FILE *f = open_memstream(&out, &outlen);
  Diags d;
  diag_init(&d, f);
  Model m;
  cr_expect_eq(fe_load_string(&m, "many.dl", text, &d), 40);
  fe_model_free(&m);
  fclose(f);
  int printed = 0;
  for (char *p = out; (p = strstr(p, ": error: ")); p++) printed++;
  cr_expect_eq(printed, 20, "only the first max_errors are printed");
  free(out);
}

/* --- robustness ------------------------------------------------------------------ */

static void load_must_not_crash(const char *what, const char *text, size_t len) {
  int nerr;
  char *got = load_messages("fuzz.dl", text, len, &nerr, 1);
  if (nerr > 0) cr_expect(strstr(got, "error: ") != NULL, "%s failed without a message", what);
  cr_expect_geq(nerr, 0);
  free(got);
}

static void prefixes_of(const char *sample) {
  size_t len;
  char path[1024];
  snprintf(path, sizeof path, "%s/samples/%s", DLC_SOURCE_DIR, sample);
  char *text = read_bytes(path, &len);
  for (size_t cut = 0; cut <= len; cut++) {
    char what[64];
    snprintf(what, sizeof what, "%s cut at %zu", sample, cut);
    load_must_not_crash(what, text, cut);
  }
  free(text);
}

Test(fe_diag, every_prefix_of_mlp, .timeout = 120) { prefixes_of("mlp.dl"); }
Test(fe_diag, every_prefix_of_blocks, .timeout = 120) { prefixes_of("blocks.dl"); }

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t next_rand(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void mutate(char *buf, size_t len) {
  static const char interesting[] = "(){}[],:=+-*/@.\"#\n 0123456789axNfc_";
  int edits = 1 + (int)(next_rand() % 4);
  for (int k = 0; k < edits; k++) {
    size_t at = next_rand() % len;
    switch (next_rand() % 4) {
    case 0: buf[at] = (char)(next_rand() & 0xff); break;
    case 1: buf[at] = interesting[next_rand() % (sizeof interesting - 1)]; break;
    case 2: memmove(buf + at, buf + at + 1, len - at - 1), buf[len - 1] = ' '; break;
    default: buf[at] = buf[next_rand() % len]; break;
    }
  }
}

static void mutations_of(const char *sample, int count) {
  size_t len;
  char path[1024];
  snprintf(path, sizeof path, "%s/samples/%s", DLC_SOURCE_DIR, sample);
  char *text = read_bytes(path, &len), *buf = malloc(len + 1);
  for (int i = 0; i < count; i++) {
    memcpy(buf, text, len + 1);
    mutate(buf, len);
    char what[64];
    snprintf(what, sizeof what, "%s mutation %d", sample, i);
    load_must_not_crash(what, buf, len);
  }
  free(buf);
  free(text);
}

Test(fe_diag, random_mutations, .timeout = 300) {
  mutations_of("mlp.dl", 2000);
  mutations_of("blocks.dl", 2000);
}

Test(fe_diag, pathological_inputs) {
  static char big[1 << 16];
  const char *cases[] = {
      "", "\n\n\n", "}", "{", "(", "train", "train {", "block", "block f(", "block f(x) {",
      "block f(x) { return", "x =", "x = [", "x = [1, 2", "input", "input x", "input x:",
      "input x: f32", "input x: f32[", "output", "freeze", "lr_group a =", "\"", "1e999999",
      "input x: f32[N]\ny = x @ x @ x\noutput y", "model", "model model",
      "input x: f32[1,2,3,4,5,6,7]", "x = ------------------------------------1",
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) load_must_not_crash(cases[i], cases[i], strlen(cases[i]));
  memset(big, '-', sizeof big - 1);
  memcpy(big, "x = ", 4);
  load_must_not_crash("65535 minus signs", big, strlen(big));
  memset(big, '[', sizeof big - 1);
  memcpy(big, "x = ", 4);
  load_must_not_crash("65535 brackets", big, strlen(big));
  size_t at = 0;
  for (int i = 0; i < 300; i++)
    at += (size_t)snprintf(big + at, sizeof big - at, "block b%d(x) { return b%d(x) }\n", i, i + 1);
  at += (size_t)snprintf(big + at, sizeof big - at, "block b300(x) { return x }\ninput x: f32[2]\ny = b0(x)\noutput y\n");
  load_must_not_crash("300 nested block calls", big, at);
}
