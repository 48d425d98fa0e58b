/*
 * test_seq_generate.c — the REPL's generate command: after training a
 * character LSTM in `dlc repl`, `generate` with dlc sample's flags prints
 * the very text `dlc sample` prints from the weights the session saves
 * (same prime, length, temperature and seed), and bad arguments are
 * refused with a message while the session goes on.
 */
#include <criterion/criterion.h>
#include <sys/wait.h>

#include "tests/testutil.h"

static void write_file(const char *dir, const char *name, const char *text) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

/* Runs cmd in dir (stdout and stderr into a string); the exit status. */
static int run_in(const char *dir, const char *cmd, char **out) {
  char line[4096], log[700];
  snprintf(log, sizeof log, "%s/log.txt", dir);
  snprintf(line, sizeof line, "cd %s && %s > %s 2>&1", dir, cmd, log);
  int st = system(line);
  *out = tu_read_file(log, NULL);
  cr_assert_not_null(*out);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char LM[] =
    "model lm\ninput tokens: i64[N, 12]\n"
    "e = embedding(tokens, 11, 8) as embed\n"
    "hs, h_n, c_n = lstm(e, hidden_size=16, batch_first=true) as lstm\n"
    "logits = dense(hs, 11) as head\noutput logits\n"
    "train {\n  label next: i64[N, 12]\n  target = next\n"
    "  loss = cross_entropy(transpose(logits, perm=[0, 2, 1]), next)\n"
    "  optimizer = adam(lr=0.01)\n  batch = 8\n  seed = 3\n  data = text(\"corpus.txt\")\n}\n";

Test(seq_generate, the_repl_generates_what_dlc_sample_does, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char corpus[1300] = "";
  for (int i = 0; i < 60; i++) strcat(corpus, i % 3 ? "a red hat, " : "the old car "); /* 11 symbols */
  write_file(dir, "corpus.txt", corpus);
  write_file(dir, "lm.dl", LM);
  write_file(dir, "session.txt",
             "train 2\n"
             "generate --prime \"the \" --length 60 --temperature 1 --seed 7\n"
             "generate --prime \"the\n"
             "generate --params w.safetensors\n"
             "generate --prime \"Q\"\n"
             "save w.safetensors\nquit\n");
  char cmd[1200], *repl, *sample;
  snprintf(cmd, sizeof cmd, "%s repl lm.dl < session.txt", DLC_EXE);
  int st = run_in(dir, cmd, &repl);
  cr_assert(st >= 0 && st < 128, "exit %d:\n%s", st, repl); /* nonzero after the refused commands, no crash */
  snprintf(cmd, sizeof cmd, "%s sample lm.dl --params w.safetensors --prime 'the ' --length 60 --temperature 1 --seed 7",
           DLC_EXE);
  cr_assert_eq(run_in(dir, cmd, &sample), 0, "%s", sample);
  cr_assert(strlen(sample) == 4 + 60 + 1, "dlc sample printed:\n%s", sample);
  cr_expect(strstr(repl, sample), "the session did not print dlc sample's text\n%s\nin:\n%s", sample, repl);
  cr_expect(strstr(repl, "generate: an unclosed quote"), "%s", repl);
  cr_expect(strstr(repl, "generate: error: uses the session's weights"), "%s", repl);
  cr_expect(strstr(repl, "--prime: error: character 1 ('Q', byte 81) is not in the corpus's vocabulary"), "%s", repl);
  free(repl);
  free(sample);
}
