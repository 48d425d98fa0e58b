/*
 * test_repl.c — the REPL, driven the two ways people drive it.
 *
 * Scripted: `dlc repl < session.txt` on a small generated data set, with
 * plain output; the transcript must show the model loaded, an epoch
 * trained, a hyperparameter changed, a statement added and inspected, a
 * checkpoint saved and C emitted, and the exit status reports failed
 * commands.  Under a pseudo-terminal: the progress line is redrawn with
 * '\r' while an epoch runs, and Ctrl-C stops training after the current
 * batch while the session goes on to answer the next command.
 */
#include <criterion/criterion.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

/* A 3-class problem of n samples with 8 features: the class is the
 * largest of the first three features. */
static void write_data(const char *dir, int64_t n) {
  RtTensor x, y;
  RtError err;
  int64_t xs[2] = {n, 8}, ys[1] = {n};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, xs, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, ys, &err), RT_OK);
  RtRng r;
  rt_rng_seed(&r, 5);
  for (int64_t i = 0; i < n; i++) {
    float *row = (float *)x.data + i * 8;
    for (int k = 0; k < 8; k++) row[k] = (float)rt_rng_uniform(&r);
    ((int64_t *)y.data)[i] = row[0] > row[1] ? (row[0] > row[2] ? 0 : 2) : (row[1] > row[2] ? 1 : 2);
  }
  char path[600];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK);
  snprintf(path, sizeof path, "%s/y.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
}

static void write_model(const char *dir, int64_t batch) {
  char path[600];
  snprintf(path, sizeof path, "%s/m.dl", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fprintf(f,
          "model small\ninput x: f32[N, 8]\nfc1 = dense(x, 16)\nh = relu(fc1)\nlogits = dense(h, 3)\noutput logits\n"
          "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.5)\n"
          "  batch = %lld\n  epochs = 2\n  val_split = 0.25\n  data = npy(\"%s/x.npy\", \"%s/y.npy\")\n}\n",
          (long long)batch, dir, dir);
  fclose(f);
}

/* Runs `dlc repl` with stdin from a file; returns the exit status and the
 * output in *out (malloc'd). */
static int run_script(const char *dir, const char *script, char **out) {
  char in[600], log[600], cmd[2000];
  snprintf(in, sizeof in, "%s/session.txt", dir);
  snprintf(log, sizeof log, "%s/out.txt", dir);
  FILE *f = fopen(in, "w");
  cr_assert_not_null(f);
  fputs(script, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "cd %s && %s repl < %s > %s 2>&1", dir, DLC_EXE, in, log);
  int st = system(cmd);
  *out = tu_read_file(log, NULL);
  cr_assert_not_null(*out);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(repl, scripted_session, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_data(dir, 400);
  write_model(dir, 20);
  char *out;
  int st = run_script(dir,
                      "load m.dl\n"
                      "summary\n"
                      "train 2\n"
                      "set lr 0.05\n"
                      "train 1\n"
                      "eval val\n"
                      "h2 = tanh(fc1)\n"
                      "stats h2\n"
                      "stats fc1.weight\n"
                      "plot\n"
                      "save ck.safetensors\n"
                      "emit small.c\n"
                      "quit\n",
                      &out);
  cr_expect_eq(st, 0, "exit status %d; output:\n%s", st, out);
  cr_expect(strstr(out, "m.dl: model 'small'") != NULL, "%s", out);
  cr_expect(strstr(out, "epoch 1: loss") && strstr(out, "epoch 2: loss") && strstr(out, "epoch 3: loss"), "%s", out);
  cr_expect(strstr(out, "lr = 0.05") != NULL, "%s", out);
  cr_expect(strstr(out, "validation: loss") != NULL, "%s", out);
  cr_expect(strstr(out, "h2: f32[N, 16]") != NULL, "%s", out);
  cr_expect(strstr(out, "mean") != NULL, "%s", out);
  cr_expect(strstr(out, "training loss (3 epochs") != NULL, "%s", out);
  cr_expect(strstr(out, "saved ck.safetensors (epoch 3") != NULL, "%s", out);
  cr_expect(strstr(out, "wrote small.c") != NULL, "%s", out);
  /* the saved weights and the emitted C exist and the C compiles */
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "cd %s && test -s ck.safetensors && cc -std=c99 -Wall -Wextra -pedantic -Werror -c small.c -o small.o", dir);
  cr_expect_eq(system(cmd), 0);
  free(out);
}

/* plot FILE writes the curves of the epochs trained so far, as dlc plot
 * does: one point per epoch in each curve; an unknown format is refused. */
Test(repl, plot_writes_svg_and_png, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_data(dir, 400);
  write_model(dir, 20);
  char *out;
  int st = run_script(dir, "load m.dl\nplot c.svg\ntrain 3\nplot c.svg\nplot c.png\nplot c.bmp\n", &out);
  cr_expect_eq(st, 1, "the failed commands make the exit status: %d\n%s", st, out);
  cr_expect(strstr(out, "nothing to plot: train first") != NULL, "%s", out);
  cr_expect(strstr(out, "wrote c.svg (3 epochs)") && strstr(out, "wrote c.png (3 epochs)"), "%s", out);
  cr_expect(strstr(out, "c.bmp: unknown image format") != NULL, "%s", out);
  char path[600];
  snprintf(path, sizeof path, "%s/c.svg", dir);
  char *svg = tu_read_file(path, NULL);
  cr_assert_not_null(svg);
  static const char *const curves[] = {"train_loss", "val_loss", "train_acc", "val_acc"};
  for (int i = 0; i < 4; i++) {
    char key[64];
    snprintf(key, sizeof key, "data-series=\"%s\" d=\"", curves[i]);
    const char *p = strstr(svg, key);
    cr_assert_not_null(p, "no curve %s", curves[i]);
    int n = 0;
    for (p += strlen(key); *p != '"'; p++) n += *p == 'M' || *p == 'L';
    cr_expect_eq(n, 3, "%s: %d points", curves[i], n);
  }
  free(svg);
  snprintf(path, sizeof path, "%s/c.png", dir);
  size_t len;
  char *png = tu_read_file(path, &len);
  cr_assert(png && len > 8 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8));
  free(png);
  free(out);
}

Test(repl, failed_commands_set_the_exit_status) {
  const char *dir = tu_scratch_dir();
  char *out;
  int st = run_script(dir, "load nowhere.dl\nfrobnicate\ntrain\n", &out);
  cr_expect_eq(st, 1, "exit %d\n%s", st, out);
  cr_expect(strstr(out, "nowhere.dl") != NULL, "%s", out);
  cr_expect(strstr(out, "unknown command 'frobnicate'") != NULL, "%s", out);
  cr_expect(strstr(out, "no model") != NULL, "%s", out);
  free(out);
}

Test(repl, a_bad_statement_is_reported_and_the_model_kept) {
  const char *dir = tu_scratch_dir();
  write_data(dir, 40);
  write_model(dir, 10);
  char *out;
  run_script(dir, "load m.dl\nz = relu(nothing_here)\ng = relu(h)\nsummary\n", &out);
  cr_expect(strstr(out, "unknown name 'nothing_here'") != NULL, "%s", out);
  cr_expect(strstr(out, "g: f32[N, 16]") != NULL, "%s", out);
  free(out);
}

/* The training settings outlive the model text they were read from: a
 * statement typed after `load` re-reads the text, and the data path, the
 * classes and the parameter groups must still be there for the first
 * command that loads data.  MALLOC_PERTURB_ fills freed memory, so a
 * setting read from the old model's memory shows up as a garbled path
 * even without AddressSanitizer. */
Test(repl, settings_survive_a_statement_before_the_data_loads, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_data(dir, 60);
  write_model(dir, 10);
  const char *scripts[] = {"load m.dl\ng = relu(h)\nstats g\n", "load m.dl\ng = relu(h)\ntrain 1\n",
                           "load m.dl\ng = relu(h)\nset batch 5\ng2 = relu(g)\ndata\neval val\n"};
  setenv("MALLOC_PERTURB_", "165", 1);
  for (int i = 0; i < 3; i++) {
    char *out;
    int st = run_script(dir, scripts[i], &out);
    cr_expect_eq(st, 0, "script %d: exit %d\n%s", i, st, out);
    cr_expect(strstr(out, "loading npy data") != NULL, "script %d:\n%s", i, out);
    cr_expect(strstr(out, i == 0 ? "g: f32[N, 16]" : i == 1 ? "epoch 1: loss" : "validation: loss") != NULL,
              "script %d:\n%s", i, out);
    free(out);
  }
  unsetenv("MALLOC_PERTURB_");
}

/* Numbers typed at the prompt are whole, finite and in range; a batch
 * larger than the data is clamped to it; an empty data set is refused. */
Test(repl, numbers_are_strict_and_the_batch_fits_the_data, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_data(dir, 40);
  write_model(dir, 10);
  char script[2048], *out;
  RtTensor x, y;
  RtError err;
  char path[600];
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, (int64_t[]){0, 8}, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, (int64_t[]){0}, &err), RT_OK);
  snprintf(path, sizeof path, "%s/x0.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK);
  snprintf(path, sizeof path, "%s/y0.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK);
  rt_tensor_free(&x), rt_tensor_free(&y);
  snprintf(script, sizeof script,
           "load m.dl\nset lr inf\nset lr nan\nset lr 1e999\nset lr 0.1x\nset batch 99999999999999999999\n"
           "set batch -1\ntrain 0\ntrain 99999999999999999999\nset batch 2147483647\ntrain 1\npredict 1.5\n"
           "data npy:%s/x0.npy,%s/y0.npy\nquit\n", dir, dir);
  int st = run_script(dir, script, &out);
  cr_expect_eq(st, 1, "exit %d\n%s", st, out);
  const char *wants[] = {"set lr: error: expected a finite number in [1e-12, 1e+06], got 'inf'", "got 'nan'", "got '1e999'",
                         "got '0.1x'", "set batch: error: expected an integer in [1, 2147483647], got '99999999999999999999'",
                         "got '-1'", "train: error: expected an integer in [1, 1000000000], got '0'",
                         "note: batch 2147483647 is larger than the 30 training samples; using 30", "epoch 1: loss",
                         "predict: error: expected an integer", "the training set is empty"};
  for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++) cr_expect(strstr(out, wants[i]), "no '%s' in:\n%s", wants[i], out);
  cr_expect(!strstr(out, "lr = inf") && !strstr(out, "epoch 2:"), "%s", out);
  free(out);
}

/* --- under a pseudo-terminal ------------------------------------------------------- */

/* Reads from fd until needle appears or the deadline passes; the text read
 * so far is appended to buf. */
static int read_until(int fd, char *buf, size_t cap, const char *needle, double seconds) {
  double end = rt_now() + seconds;
  size_t len = strlen(buf);
  while (rt_now() < end) {
    if (strstr(buf, needle)) return 1;
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    struct timeval tv = {0, 100000};
    if (select(fd + 1, &fds, NULL, NULL, &tv) <= 0) continue;
    ssize_t n = read(fd, buf + len, cap - len - 1);
    if (n <= 0) break;
    len += (size_t)n;
    buf[len] = 0;
  }
  return strstr(buf, needle) != NULL;
}

Test(repl, progress_line_and_ctrl_c_under_a_terminal, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  write_data(dir, 60000);
  write_model(dir, 1); /* 45000 steps an epoch: Ctrl-C lands mid-epoch */
  int fd;
  pid_t pid = forkpty(&fd, NULL, NULL, NULL);
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    if (chdir(dir) != 0) _exit(127);
    setenv("TERM", "xterm", 1);
    execl(DLC_EXE, "dlc", "repl", "m.dl", (char *)NULL);
    _exit(127);
  }
  static char buf[1 << 20];
  buf[0] = 0;
  cr_assert(read_until(fd, buf, sizeof buf, "dlc> ", 60), "no prompt:\n%s", buf);
  cr_assert_eq(write(fd, "train 1\n", 8), 8);
  cr_assert(read_until(fd, buf, sizeof buf, "ETA", 60), "no progress line:\n%s", buf);
  cr_assert(read_until(fd, buf, sizeof buf, "\r", 5), "the line is not redrawn:\n%s", buf);
  cr_assert_eq(write(fd, "\x03", 1), 1); /* Ctrl-C */
  cr_assert(read_until(fd, buf, sizeof buf, "stopped after the current batch", 30), "Ctrl-C did not stop training:\n%s", buf);
  size_t mark = strlen(buf);
  cr_assert_eq(write(fd, "eval val\n", 9), 9);
  cr_assert(read_until(fd, buf, sizeof buf, "validation: loss", 60), "the session did not go on:\n%s", buf + mark);
  cr_assert_eq(write(fd, "quit\n", 5), 5);
  int st;
  waitpid(pid, &st, 0);
  close(fd);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
}

/* Inputs bound by name train in the REPL too; the commands that show one
 * input (predict, stats of a computed value) say they need x, y data
 * instead of reading a data set they do not understand. */
Test(repl, named_files_train_and_predict_says_why_not, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_data(dir, 40);
  write_model(dir, 8);
  char *out;
  int st = run_script(dir, "load m.dl\ndata npy:x=x.npy,y=y.npy\ntrain 1\neval val\npredict 0\nstats fc1\nquit\n", &out);
  cr_expect_eq(st, 1, "predict and stats fail: exit %d\n%s", st, out);
  cr_expect(strstr(out, "epoch 1: loss") && strstr(out, "validation: loss"), "%s", out);
  cr_expect(strstr(out, "predict shows one input and its label: it needs data x, y, not named files"), "%s", out);
  cr_expect(strstr(out, "stats of a computed value needs data x, y, not named files"), "%s", out);
  free(out);
}

/* A model with named train sections trains in the REPL as dlc train
 * trains it: `step` takes the order's next optimizer steps (`step NAME`
 * up to that section's next one), `train` finishes the epoch, and the
 * checkpoint is byte-identical to dlc train's after the same epoch.
 * Validation and eval give every section's loss; set lr is refused. */
Test(repl, named_sections_step_and_train_as_dlc_train, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  write_data(dir, 64);
  char path[600];
  snprintf(path, sizeof path, "%s/duo.dl", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fprintf(f,
          "model duo\ninput x: f32[N, 8]\ninput z: f32[N, 2] = randn\na1 = dense(x, 16)\nb1 = dense(z, 16)\n"
          "logits = dense(relu(a1) + tanh(b1), 3) as head\noutput logits\n"
          "train {\n  label y: i64[N]\n  data = npy(\"x.npy\", \"y.npy\")\n  batch = 8\n  val_split = 0.25\n"
          "  seed = 3\n  order = alternate(alpha=2, beta=1)\n}\n"
          "train alpha {\n  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.5)\n  params = [\"a*\", head]\n}\n"
          "train beta {\n  loss = mean(logits * logits)\n  optimizer = adam(lr=0.01)\n  params = b1\n}\n");
  fclose(f);
  char *out;
  int st = run_script(dir,
                      "load duo.dl\n"
                      "step 2\n"
                      "step beta\n"
                      "step beta\n"
                      "train 1\n"
                      "eval val\n"
                      "save repl.safetensors\n"
                      "set lr 0.1\n"
                      "step gamma\n"
                      "quit\n",
                      &out);
  cr_expect_eq(st, 1, "two commands fail: exit status %d; output:\n%s", st, out);
  static const char *const want[] = {"step 1: alpha loss ", "step 2: alpha loss ", "step 3: beta loss ",
                                     "step 4: alpha loss ", "step 5: alpha loss ", "step 6: beta loss ",
                                     "epoch 1 done\n", "epoch 2: alpha loss ", ", val alpha loss ", ", val beta loss ",
                                     "validation: alpha loss ", ", beta loss ", "saved repl.safetensors (epoch 2, step 12)",
                                     "set lr: the model has 2 train sections, each with its own optimizer",
                                     "step: 'gamma' is not a number of steps or a train section (alpha, beta)"};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) cr_expect(strstr(out, want[k]), "no '%s' in:\n%s", want[k], out);
  free(out);
  char cmd[1500];
  snprintf(cmd, sizeof cmd, "cd %s && %s train duo.dl --epochs 2 --save train.safetensors > train.txt 2>&1 && "
           "cmp repl.safetensors train.safetensors", dir, DLC_EXE);
  cr_expect_eq(system(cmd), 0, "the REPL's checkpoint differs from dlc train's after 2 epochs");
}
