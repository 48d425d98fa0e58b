/*
 * test_seq_errors.c — a token id out of range at run time: `dlc run` on
 * ids one of which is past the embedding's rows reports the id, its
 * position and the .dl line of the embedding, and exits non-zero, on the
 * JIT, the C backend and the interpreter alike, before any of them runs
 * (an out-of-range index in compiled code would otherwise read NaN).  The other bad inputs of
 * sequence models have their tests elsewhere: state shapes of the layers
 * (test_scan.c, recurrent_layer_argument_errors), a scan body's new state
 * of another shape and a body that does not return its states (golden
 * diagnostics tests/fixtures/diag/scan_state_shape.dl, scan_no_state.dl),
 * ids out of range in training data (test_text.c).
 */
#include <criterion/criterion.h>
#include <sys/wait.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

static void write_file(const char *dir, const char *name, const char *text) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

static int run_in(const char *dir, const char *args, char **out) {
  char line[4096], log[700];
  snprintf(log, sizeof log, "%s/log.txt", dir);
  snprintf(line, sizeof line, "cd %s && %s %s > %s 2>&1", dir, DLC_EXE, args, log);
  int st = system(line);
  *out = tu_read_file(log, NULL);
  cr_assert_not_null(*out);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(seq_errors, a_token_id_out_of_range_at_run_time_is_reported, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_file(dir, "lm.dl",
             "model lm\ninput tokens: i64[N, 6]\n"
             "e = embedding(tokens, 9, 4) as embed\n"
             "hs, h_n = gru(e, hidden_size=5, batch_first=true) as gru\n"
             "logits = dense(hs, 9) as head\noutput logits\n");
  int64_t shape[2] = {2, 6};
  RtTensor ids;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&ids, DT_I64, 2, shape, &err), RT_OK);
  for (int i = 0; i < 12; i++) ((int64_t *)ids.data)[i] = i % 9;
  ((int64_t *)ids.data)[1 * 6 + 4] = 9; /* row 1, step 4: one past the 9 rows */
  char path[700];
  snprintf(path, sizeof path, "%s/ids.npy", dir);
  cr_assert_eq(rt_npy_write(path, &ids, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&ids);
  static const char *const backends[] = {"jit", "c", "interp"};
  for (int b = 0; b < 3; b++) {
    char args[300], *out;
    snprintf(args, sizeof args, "run lm.dl --backend=%s --input tokens=ids.npy --output logits=o.npy", backends[b]);
    int st = run_in(dir, args, &out);
    cr_expect_eq(st, 1, "%s: exit %d:\n%s", backends[b], st, out);
    cr_expect(strstr(out, "lm.dl:3:5: error: input 'tokens' holds 9 at sample 1, position [4], but the axis this "
                          "index_select indexes has 9 entries (0 to 8)"),
              "%s:\n%s", backends[b], out);
    free(out);
  }
}
