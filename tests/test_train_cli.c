/*
 * test_train_cli.c — the `dlc train` command end to end, and data bound
 * by name (helpers in tests/train_util.h).
 *
 *  - dlc_train: runs on npy, csv and Fashion-MNIST-layout data (exit 0,
 *    metrics CSV with a header and a row per epoch, a summary line per
 *    epoch, a test line only when there is a test set), bad flags (exit 2,
 *    the message names the flag) and bad data files (exit 1, named).
 *
 *  - dlc_data: data bound to the model's inputs by name, the fixed and the
 *    by-name forms, paths next to the model, --steps, schedule and noise
 *    flags, targets by name.
 *
 * The data sets of the runs are written by the tests themselves
 * (rt_npy_write, from integer formulas), so there are no extra fixtures.
 */
#include "tests/train_util.h"

/* --- dlc train end to end ---------------------------------------------------------------- */

static int count_lines(const char *text) {
  int n = 0;
  for (const char *s = text; *s; s++) n += *s == '\n';
  return n;
}

Test(dlc_train, npy_with_validation_and_metrics, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char data[1300], metrics[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(metrics, sizeof metrics, "%s/m.csv", dir);
  Proc p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=c", "--epochs", "3", "--val-split", "0.25",
                   "--metrics", metrics, NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training tiny: 16 samples (6 validation, 0 test), batch 4, sgd, lr 0.1, c backend\n"),
            "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 3, "%s", p.out);
  for (int e = 1; e <= 3; e++) {
    char want[32];
    snprintf(want, sizeof want, "epoch %d/3: loss ", e);
    cr_expect(strstr(p.out, want), "no line '%s' in:\n%s", want, p.out);
  }
  cr_expect(strstr(p.out, ", val loss ") && strstr(p.out, ", val acc "), "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "test:"), 0, "no test set, no test line:\n%s", p.out);
  cr_expect_eq(count_lines(p.out), 4, "%s", p.out);
  cr_expect_str_eq(p.err, "", "stderr is not a terminal: no progress line");

  char *csv = tu_read_file(metrics, NULL);
  cr_assert(csv);
  cr_expect_eq(count_lines(csv), 16, "a header, 4 batch rows and an epoch row for each of 3 epochs:\n%s", csv);
  cr_expect_eq(strncmp(csv, "epoch,batch,step,train_loss,train_acc,val_loss,val_acc,lr,seconds\n", 66), 0, "%s", csv);
  int rows = 0, epochs = 0;
  double batch_sum = 0;
  for (const char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
    rows++;
    double v[9];
    int got = sscanf(line + 1, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                     &v[7], &v[8]);
    cr_expect_eq(got, 9, "row %d: %.40s", rows, line + 1);
    int epoch = (rows - 1) / 5 + 1, batch = (rows - 1) % 5 + 1;
    cr_expect(v[0] == epoch && v[1] == (batch == 5 ? 0 : batch), "row %d is epoch %d batch %d: %.60s", rows, epoch,
              batch == 5 ? 0 : batch, line + 1);
    cr_expect_eq(v[2], (epoch - 1) * 4 + (batch == 5 ? 4 : batch), "row %d: step %g", rows, v[2]);
    cr_expect(isfinite(v[3]) && v[3] > 0 && v[4] >= 0 && v[4] <= 1 && v[7] == 0.1, "row %d: %.80s", rows, line + 1);
    if (batch < 5) {
      cr_expect(isnan(v[5]) && isnan(v[6]), "a batch row has no validation figures: %.80s", line + 1);
      batch_sum += v[3] * 4;
      continue;
    }
    epochs++;
    cr_expect(isfinite(v[5]), "row %d: %.80s", rows, line + 1);
    cr_expect(fabs(v[3] - batch_sum / 16) < 1e-6, "the epoch's loss %g is the mean of its batches' %g", v[3],
              batch_sum / 16);
    batch_sum = 0;
  }
  cr_expect_eq(epochs, 3);
  free(csv);
  proc_free(&p);
  remove_dir(dir);
}

Test(dlc_train, csv_data_interp, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600], data[700];
  snprintf(model, sizeof model, "%s/csv5.dl", dir);
  /* last.csv: 6 rows of 3 features and a label in 0..4 */
  write_text(model, "model csv5\ninput x: f32[N, 3]\nlogits = dense(x, 5)\noutput logits\n"
                    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = adam(lr=0.01)\n"
                    "  batch = 4\n  epochs = 2\n}\n");
  snprintf(data, sizeof data, "csv:%s", FIXTURE("data/last.csv"));
  Proc p = run_dlc(dir, "train", model, "--data", data, "--backend=interp", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training csv5: 6 samples (0 validation, 0 test), batch 4, adam, lr 0.01, interp backend"),
            "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 2, "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "test:"), 0, "%s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

/* fashion_tiny is laid out like Debian's Fashion-MNIST: 4 training and 3
 * test images, so there is a final test line. */
Test(dlc_train, fashion_layout_has_a_test_line, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600];
  snprintf(model, sizeof model, "%s/fm.dl", dir);
  write_text(model, "model fm\ninput x: f32[N, 784]\nlogits = dense(x, 10)\noutput logits\n"
                    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.05)\n"
                    "  batch = 3\n  epochs = 2\n}\n");
  Proc p = run_dlc(dir, "train", model, "--data", FIXTURE("data/fashion_tiny"), "--backend=interp", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "4 samples (0 validation, 3 test)"), "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 2, "%s", p.out);
  cr_expect_eq(count_lines_starting(p.out, "test: loss "), 1, "%s", p.out);
  cr_expect(strstr(p.out, "% (3 samples)\n"), "%s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

typedef struct BadRun {
  const char *args[6]; /* after `train MODEL --backend=interp` */
  int status;
  const char *needle;  /* in stderr */
} BadRun;

static void expect_bad_run(const char *dir, const char *model, const BadRun *r) {
  const char *a[6] = {0};
  char shown[256] = "";
  for (int k = 0; k < 6 && r->args[k]; k++) {
    a[k] = r->args[k];
    strncat(shown, " ", sizeof shown - strlen(shown) - 1);
    strncat(shown, a[k], sizeof shown - strlen(shown) - 1);
  }
  Proc p = run_dlc(dir, "train", model, "--backend=interp", a[0], a[1], a[2], a[3], a[4], a[5], NULL);
  cr_expect_eq(p.status, r->status, "dlc train%s: exit %d, want %d\n%s", shown, p.status, r->status, p.err);
  cr_expect(strstr(p.err, r->needle) != NULL, "dlc train%s: stderr lacks '%s':\n%s", shown, r->needle, p.err);
  cr_expect(strstr(p.err, "error") != NULL, "dlc train%s: %s", shown, p.err);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 0, "dlc train%s trained:\n%s", shown, p.out);
  proc_free(&p);
}

Test(dlc_train, bad_flags, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char data[1300], missing[1300], init[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(missing, sizeof missing, "npy:%s/missing.npy,%s/y.npy", dir, dir);
  snprintf(init, sizeof init, "%s/no-such-init.safetensors", dir);
  const BadRun runs[] = {
      {{"--data", data, "--epochs", "-1"}, 2, "--epochs"},
      {{"--data", data, "--epochs", "two"}, 2, "--epochs"},
      {{"--data", data, "--batch", "0"}, 2, "--batch"},
      {{"--data", data, "--lr", "0"}, 2, "--lr"},
      {{"--data", data, "--lr", "fast"}, 2, "--lr"},
      {{"--data", data, "--seed", "-3"}, 2, "--seed"},
      {{"--data", data, "--val-split", "1.5"}, 2, "--val-split"},
      {{"--data", data, "--optimizer", "foo"}, 2, "--optimizer"},
      {{"--data", data, "--backend=gpu"}, 2, "--backend"},
      {{"--data", data, "--frobnicate"}, 2, "--frobnicate"},
      {{"--data", data, "--epochs"}, 2, "--epochs"},
      {{"--data", "npy:only-one.npy"}, 2, "--data"},
      {{"--data", "parquet:x.parquet"}, 2, "--data"},
      {{"--data", missing}, 1, "missing.npy"},
      {{"--data", data, "--init", init}, 1, "no-such-init.safetensors"},
      {{"--data", data, "--resume", init}, 1, "no-such-init.safetensors"},
      {{"--data", data, "extra.dl"}, 2, "extra.dl"},
  };
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) expect_bad_run(dir, TRAIN("tiny.dl"), &runs[i]);

  Proc p = run_dlc(dir, "train", NULL);
  cr_expect_eq(p.status, 2, "no model: exit %d", p.status);
  cr_expect(strstr(p.err, "no model file"), "%s", p.err);
  proc_free(&p);
  p = run_dlc(dir, "train", "/nonexistent/model.dl", "--data", data, NULL);
  cr_expect_eq(p.status, 1, "a missing model: exit %d", p.status);
  cr_expect(strstr(p.err, "/nonexistent/model.dl"), "%s", p.err);
  proc_free(&p);
  p = run_dlc(dir, "train", "--help", NULL);
  cr_expect_eq(p.status, 0, "--help: exit %d", p.status);
  cr_expect(strstr(p.out, "usage: dlc train"), "%s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

/* What the loss compares against is said, never guessed from shapes: a
 * label typed like the input is refused without `target`; `target = t`
 * trains against the label file (targets all 5, so the first epoch's loss
 * is large), `target = x` against the input (an autoencoder, small loss). */
Test(dlc_train, a_label_typed_like_the_input_needs_a_target, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  RtTensor x, y;
  RtError err;
  int64_t shape[2] = {20, 4};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, shape, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_F32, 2, shape, &err), RT_OK);
  for (int i = 0; i < 80; i++) ((float *)x.data)[i] = (float)(i % 9) / 9, ((float *)y.data)[i] = 5;
  char path[600], model[600], data[1300];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK);
  snprintf(path, sizeof path, "%s/y.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK);
  rt_tensor_free(&x), rt_tensor_free(&y);
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(model, sizeof model, "%s/ae.dl", dir);
  const char *targets[3] = {"", "  target = t\n", "  target = x\n"};
  for (int k = 0; k < 3; k++) {
    char text[512];
    snprintf(text, sizeof text,
             "model ae\ninput x: f32[N, 4]\nout = dense(x, 4)\noutput out\ntrain {\n  label t: f32[N, 4]\n%s"
             "  loss = mse_loss(out, t)\n  optimizer = sgd(lr=1e-6)\n  batch = 5\n  epochs = 1\n}\n",
             targets[k]);
    write_text(model, text);
    Proc p = run_dlc(dir, "train", model, "--data", data, "--backend=interp", NULL);
    if (k == 0) {
      cr_expect_eq(p.status, 1, "no target: exit %d\n%s%s", p.status, p.out, p.err);
      cr_expect(strstr(p.err, "'target = x'") && strstr(p.err, "'target = t'"), "%s", p.err);
      cr_expect_eq(count_lines_starting(p.out, "epoch "), 0, "%s", p.out);
    } else {
      cr_expect_eq(p.status, 0, "%s: exit %d\n%s%s", targets[k], p.status, p.out, p.err);
      const char *at = strstr(p.out, "epoch 1/1: loss ");
      double loss = at ? strtod(at + strlen("epoch 1/1: loss "), NULL) : NAN;
      if (k == 1) cr_expect(loss > 10, "target = t: loss %g, wanted the labels' (5) error:\n%s", loss, p.out);
      else cr_expect(loss < 3, "target = x: loss %g, wanted the input's error:\n%s", loss, p.out);
    }
    proc_free(&p);
  }
  remove_dir(dir);
}

/* Runs dlc train on model with args (up to 6) and expects status and a
 * message in stderr, and the checkpoint ck untouched ("old"). */
static void expect_run_keeps(const char *dir, const char *model, const char *const *args, int status,
                             const char *needle, const char *ck) {
  Proc p = run_dlc(dir, "train", model, "--save", ck, args[0], args[1], args[2], args[3], args[4], args[5], NULL);
  cr_expect_eq(p.status, status, "%s %s: exit %d\n%s%s", model, args[1], p.status, p.out, p.err);
  cr_expect(strstr(p.err, needle) != NULL, "stderr lacks '%s':\n%s", needle, p.err);
  char *kept = tu_read_file(ck, NULL);
  cr_expect(kept && !strcmp(kept, "old"), "the checkpoint was overwritten");
  free(kept);
  proc_free(&p);
}

/* A run with nothing to train on, or whose loss stops being finite, is an
 * error (exit 1) and leaves an existing checkpoint as it was. */
Test(dlc_train, empty_or_diverging_runs_fail_and_keep_the_checkpoint, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_blobs(dir, 0, 6, "x0.npy", "y0.npy");
  char ck[600], data[1300], path[600];
  snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
  write_text(ck, "old");
  snprintf(data, sizeof data, "npy:%s/x0.npy,%s/y0.npy", dir, dir);
  const char *empty[6] = {"--data", data, "--backend=interp"};
  expect_run_keeps(dir, TRAIN("tiny.dl"), empty, 1, "the training set is empty", ck);
  /* regression targets of 1e20: the squared error overflows float */
  RtTensor x, t;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, (int64_t[]){10, 4}, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, 2, (int64_t[]){10, 2}, &err), RT_OK);
  for (int i = 0; i < 40; i++) ((float *)x.data)[i] = 1;
  for (int i = 0; i < 20; i++) ((float *)t.data)[i] = 1e20f;
  snprintf(path, sizeof path, "%s/xr.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK);
  snprintf(path, sizeof path, "%s/tr.npy", dir);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK);
  rt_tensor_free(&x), rt_tensor_free(&t);
  snprintf(data, sizeof data, "npy:%s/xr.npy,%s/tr.npy", dir, dir);
  const char *backends[3] = {"--backend=interp", "--backend=c", "--backend=jit"};
  for (int b = 0; b < 3; b++) {
    const char *diverge[6] = {"--data", data, backends[b], "--epochs", "2"};
    expect_run_keeps(dir, TRAIN("reg.dl"), diverge, 1, "training diverged", ck);
  }
  remove_dir(dir);
}

/* Every numeric flag is one whole, finite number in range; a batch larger
 * than the data set is clamped to it with a note; a step too large for
 * the compiled backends is refused naming the limit. */
Test(dlc_train, numbers_are_strict_and_the_batch_fits_the_data, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char data[1300];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  const BadRun runs[] = {
      {{"--data", data, "--batch", "99999999999999999999"}, 2, "--batch"},
      {{"--data", data, "--batch", "2147483648"}, 2, "--batch"},
      {{"--data", data, "--batch", " 4"}, 2, "--batch"},
      {{"--data", data, "--epochs", "1e3"}, 2, "--epochs"},
      {{"--data", data, "--epochs", ""}, 2, "--epochs"},
      {{"--data", data, "--lr", "inf"}, 2, "--lr"},
      {{"--data", data, "--lr", "nan"}, 2, "--lr"},
      {{"--data", data, "--lr", "1e400"}, 2, "--lr"},
      {{"--data", data, "--lr", "0.1x"}, 2, "--lr"},
      {{"--data", data, "--val-split", "nan"}, 2, "--val-split"},
      {{"--data", data, "--seed", "18446744073709551616"}, 2, "--seed"},
      {{"--data", data, "--augment", "crop=99999999999999999999"}, 2, "--augment crop"},
  };
  for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) expect_bad_run(dir, TRAIN("tiny.dl"), &runs[i]);
  Proc p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--batch", "1000000", "--epochs", "1", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.err, "note: batch 1000000 is larger than the 22 training samples; using 22"), "%s", p.err);
  cr_expect(strstr(p.out, "batch 22,") && strstr(p.out, "epoch 1/1: loss "), "%s", p.out);
  proc_free(&p);
  /* an outer product of 8192 features per sample: 2.7 GB of arena at batch 10 */
  char model[600];
  snprintf(model, sizeof model, "%s/big.dl", dir);
  write_text(model, "model big\ninput x: f32[N, 6]\nw = dense(x, 8192)\na = reshape(w, [N, 8192, 1])\n"
                    "b = reshape(w, [N, 1, 8192])\ns = mean(a * b, axes=[2])\nlogits = dense(s, 3)\noutput logits\n"
                    "train {\n  label y: i64[N]\n  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.1)\n"
                    "  batch = 10\n}\n");
  for (int b = 0; b < 2; b++) {
    p = run_dlc(dir, "train", model, "--data", data, b ? "--backend=c" : "--backend=jit", NULL);
    cr_expect_eq(p.status, 1, "%s%s", p.out, p.err);
    cr_expect(strstr(p.err, "at batch 10 the compiled step needs") && strstr(p.err, "can address at most 1984 MiB"),
              "%s", p.err);
    proc_free(&p);
  }
  remove_dir(dir);
}

/* torch.optim's checks, for every way a configuration is made (the model
 * file, flags, the REPL, the API). */
Test(train_optim, hyperparameters_are_checked_as_torch_does) {
  struct {
    OptKind kind;
    const char *key;
    double v;
    int ok;
  } cases[] = {
      {OPT_SGD, "momentum", 0.9, 1},      {OPT_SGD, "momentum", -0.1, 0},   {OPT_SGD, "weight_decay", -1, 0},
      {OPT_SGD, "nesterov", 1, 0},        {OPT_ADAM, "beta1", 1, 0},        {OPT_ADAM, "beta2", -0.5, 0},
      {OPT_ADAM, "beta2", 0.999, 1},      {OPT_ADAMW, "eps", -1e-8, 0},     {OPT_ADAMW, "eps", NAN, 0},
      {OPT_RMSPROP, "momentum", INFINITY, 0}, {OPT_ADAGRAD, "lr_decay", -1, 0}, {OPT_ADAGRAD, "eps", 0, 1},
  };
  Diags d;
  diag_init(&d, stderr);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    OptimSpec o;
    trainer_optim_defaults(&o, cases[i].kind, 0.1);
    o.hp[ir_attr_hp_index(cases[i].key)] = cases[i].v;
    cr_expect_eq(trainer_check_optim(&o, &d) == 0, cases[i].ok, "%s %s=%g", pass_optim_names[cases[i].kind],
                 cases[i].key, cases[i].v);
  }
  OptimSpec o;
  trainer_optim_defaults(&o, OPT_SGD, 0.1);
  o.hp[HP_NESTEROV] = 1, o.hp[HP_MOMENTUM] = 0.9;
  cr_expect_eq(trainer_check_optim(&o, &d), 0, "nesterov with momentum");
  o.hp[HP_DAMPENING] = 0.1;
  cr_expect_eq(trainer_check_optim(&o, &d), -1, "nesterov with dampening");
  trainer_optim_defaults(&o, OPT_ADAM, NAN);
  cr_expect_eq(trainer_check_optim(&o, &d), -1, "lr NaN");
  trainer_optim_defaults(&o, OPT_RMSPROP, 0.1);
  o.alpha = -0.5;
  cr_expect_eq(trainer_check_optim(&o, &d), -1, "alpha < 0");
}

/* --optimizer NAME: another optimizer starts from torch's defaults with the
 * file's learning rate, and a note names what is dropped; the file's own
 * optimizer keeps its hyperparameters; --init with --resume is refused. */
Test(dlc_train, optimizer_override_is_explicit, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char data[1300], model[600], ck[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(model, sizeof model, "%s/mom.dl", dir);
  snprintf(ck, sizeof ck, "%s/ck.safetensors", dir);
  write_text(model, "model mom\ninput x: f32[N, 6]\nlogits = dense(x, 3)\noutput logits\ntrain {\n  label y: i64[N]\n"
                    "  loss = cross_entropy(logits, y)\n  optimizer = sgd(lr=0.1, momentum=0.9)\n  batch = 4\n}\n");
  Proc p = run_dlc(dir, "train", model, "--data", data, "--epochs", "1", "--optimizer", "adam", "--save", ck, NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.err, "note: --optimizer adam replaces sgd(momentum=0.9): adam takes torch's defaults, the learning "
                          "rate 0.1 stays"), "%s", p.err);
  cr_expect(strstr(p.out, "adam, lr 0.1,"), "%s", p.out);
  proc_free(&p);
  p = run_dlc(dir, "train", model, "--data", data, "--epochs", "1", "--optimizer", "sgd", "--save", ck, NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(!strstr(p.err, "note:"), "%s", p.err);
  RtTensorSet s;
  read_st(ck, &s);
  cr_expect_not_null(rt_set_find(&s, "logits.weight.momentum_buffer"), "the file's momentum was dropped");
  rt_set_free(&s);
  proc_free(&p);
  p = run_dlc(dir, "train", model, "--data", data, "--init", ck, "--resume", ck, NULL);
  cr_expect_eq(p.status, 2, "%s%s", p.out, p.err);
  cr_expect(strstr(p.err, "--init: error: cannot be combined with --resume"), "%s", p.err);
  proc_free(&p);
  remove_dir(dir);
}

/* Data files that exist but are wrong for the model or broken. */
Test(dlc_train, bad_data_files, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  write_blobs(dir, 5, 6, "x5.npy", "y5.npy");       /* only y5 is used */
  write_blobs(dir, 22, 5, "x22x5.npy", "y22.npy");  /* only x22x5 is used */
  RtTensor y;
  RtError err;
  int64_t n = 22;
  char path[600];
  /* labels 0..3 for a model with 3 classes */
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, &n, &err), RT_OK);
  for (int64_t s = 0; s < n; s++) ((int64_t *)y.data)[s] = s % 4;
  snprintf(path, sizeof path, "%s/y4.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK);
  rt_tensor_free(&y);
  /* float targets for a class label */
  cr_assert_eq(rt_tensor_alloc(&y, DT_F32, 1, &n, &err), RT_OK);
  snprintf(path, sizeof path, "%s/yf.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK);
  rt_tensor_free(&y);
  /* a truncated x and a file that is not .npy at all */
  size_t len;
  snprintf(path, sizeof path, "%s/x.npy", dir);
  char *bytes = tu_read_file(path, &len);
  cr_assert(bytes);
  snprintf(path, sizeof path, "%s/xcut.npy", dir);
  write_bytes(path, bytes, len - 7);
  snprintf(path, sizeof path, "%s/xhead.npy", dir);
  write_bytes(path, bytes, 30);
  free(bytes);
  snprintf(path, sizeof path, "%s/text.npy", dir);
  write_text(path, "this is not an npy file\n");
  snprintf(path, sizeof path, "%s/bad.csv", dir);
  write_text(path, "a,b,c,d,e,f,label\n1,2,3,4,5,6,0\n1,2,x,4,5,6,1\n");

  struct {
    const char *x, *y, *needle;
  } cases[] = {
      {"x.npy", "y5.npy", "y5.npy"},        /* 22 samples, 5 labels */
      {"x.npy", "y4.npy", "label"},         /* label 3 of 3 classes */
      {"x22x5.npy", "y.npy", "input 'x'"},  /* 5 features for 6 */
      {"x.npy", "yf.npy", "label 'y'"},     /* f32 targets for an i64 label */
      {"xcut.npy", "y.npy", "xcut.npy"},
      {"xhead.npy", "y.npy", "xhead.npy"},
      {"text.npy", "y.npy", "text.npy"},
      {"bad.csv", NULL, "bad.csv"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char data[1300];
    if (cases[i].y) snprintf(data, sizeof data, "npy:%s/%s,%s/%s", dir, cases[i].x, dir, cases[i].y);
    else snprintf(data, sizeof data, "csv:%s/%s", dir, cases[i].x);
    BadRun r = {{"--data", data}, 1, cases[i].needle};
    expect_bad_run(dir, TRAIN("tiny.dl"), &r);
  }
  remove_dir(dir);
}

/* --- data bound by name, --steps ------------------------------------------------------------- */

/* tiny.dl with its input x split in two halves a and b joined again by
 * concat: the same parameters (same names, same initial values), so on
 * the same samples in the same order it trains bit for bit like tiny. */
static const char split_model[] =
    "model tiny\n"
    "input a: f32[N, 3]\n"
    "input b: f32[N, 3]\n"
    "fc1 = dense(concat(a, b, axis=1), 5)\n"
    "h = tanh(fc1)\n"
    "fc2 = dense(h, 3)\n"
    "output fc2\n"
    "train {\n"
    "  label y: i64[N]\n"
    "  loss = cross_entropy(fc2, y)\n"
    "  optimizer = sgd(lr=0.1)\n"
    "  batch = 4\n"
    "  %s\n"
    "}\n";

static void write_model(const char *path, const char *fmt, const char *data_line) {
  char text[2048];
  snprintf(text, sizeof text, fmt, data_line);
  write_text(path, text);
}

/* cols [c0, c1) of x.npy in dir as NAME (f32), or as dtype dt. */
static void write_npy_slice(const char *dir, const char *name, DType dt, int64_t rows, int64_t c0, int64_t c1) {
  char path[600];
  RtError err;
  snprintf(path, sizeof path, "%s/x.npy", dir);
  RtTensor x = read_npy(path), out;
  int64_t shape[2] = {rows, c1 - c0};
  cr_assert_eq(rt_tensor_alloc(&out, dt, 2, shape, &err), RT_OK);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = c0; c < c1; c++) {
      float v = ((float *)x.data)[r * x.shape[1] + c];
      if (dt == DT_F32) ((float *)out.data)[r * (c1 - c0) + c - c0] = v;
      else if (dt == DT_F64) ((double *)out.data)[r * (c1 - c0) + c - c0] = v;
      else ((int64_t *)out.data)[r * (c1 - c0) + c - c0] = (int64_t)v;
    }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert_eq(rt_npy_write(path, &out, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&x);
  rt_tensor_free(&out);
}

/* y.npy of dir as NAME in dtype dt (i32, f32 or i64), with rank dims [n] or [n, 1]. */
static void write_labels_as(const char *dir, const char *name, DType dt, int rank) {
  char path[600];
  RtError err;
  snprintf(path, sizeof path, "%s/y.npy", dir);
  RtTensor y = read_npy(path), out;
  int64_t shape[2] = {y.shape[0], 1};
  cr_assert_eq(rt_tensor_alloc(&out, dt, rank, shape, &err), RT_OK);
  for (int64_t i = 0; i < y.shape[0]; i++) {
    int64_t v = ((int64_t *)y.data)[i];
    if (dt == DT_I32) ((int32_t *)out.data)[i] = (int32_t)v;
    else if (dt == DT_F32) ((float *)out.data)[i] = (float)v;
    else ((int64_t *)out.data)[i] = v;
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_assert_eq(rt_npy_write(path, &out, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&y);
  rt_tensor_free(&out);
}

static void expect_same_file(const char *a, const char *b, const char *what) {
  size_t la = 0, lb = 0;
  char *ba = tu_read_file(a, &la), *bb = tu_read_file(b, &lb);
  cr_assert(ba && bb, "%s: %s or %s missing", what, a, b);
  cr_expect(la == lb && memcmp(ba, bb, la) == 0, "%s: %s and %s differ", what, a, b);
  free(ba);
  free(bb);
}

typedef struct BindParam {
  Backend backend;
} BindParam;

ParameterizedTestParameters(dlc_data, named_files_train_like_the_fixed_form) {
  static BindParam params[] = {{BACKEND_INTERP}, {BACKEND_C}, {BACKEND_JIT}};
  return cr_make_param_array(BindParam, params, 3);
}

/* The same samples through npy:X,Y into tiny, and by name (listed in
 * another order, labels widened from i32, paths in the model file relative
 * to it) into the split model: with a validation split, the checkpoints
 * are byte-identical, so both forms shuffle, split and batch every array
 * alike and the labels stay integers on every backend. */
ParameterizedTest(BindParam *p, dlc_data, named_files_train_like_the_fixed_form, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char model[600], fixed[1300], ck1[600], ck2[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  write_npy_slice(dir, "a.npy", DT_F32, 22, 0, 3);
  write_npy_slice(dir, "b.npy", DT_F32, 22, 3, 6);
  write_labels_as(dir, "y32.npy", DT_I32, 1);
  snprintf(model, sizeof model, "%s/split.dl", dir);
  write_model(model, split_model, "data = npy(\"b=b.npy,y=y32.npy,a=a.npy\")");
  snprintf(fixed, sizeof fixed, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(ck1, sizeof ck1, "%s/fixed.safetensors", dir);
  snprintf(ck2, sizeof ck2, "%s/named.safetensors", dir);
  const char *be = backend_name(p->backend), *flag = p->backend == BACKEND_C ? "--backend=c"
                                                     : p->backend == BACKEND_JIT ? "--backend=jit" : "--backend=interp";
  Proc a = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", fixed, flag, "--epochs", "2", "--val-split", "0.25",
                   "--save", ck1, NULL);
  cr_assert_eq(a.status, 0, "%s: %s%s", be, a.out, a.err);
  Proc b = run_dlc(dir, "train", model, flag, "--epochs", "2", "--val-split", "0.25", "--save", ck2, NULL);
  cr_assert_eq(b.status, 0, "%s: %s%s", be, b.out, b.err);
  cr_expect(strstr(b.out, "16 samples (6 validation, 0 test)"), "%s", b.out);
  cr_expect(strstr(b.out, ", acc ") && strstr(b.out, ", val acc "), "class labels by name give accuracy: %s", b.out);
  expect_same_file(ck1, ck2, be);
  /* an integer input that is not a label (the class index as a plain i64
   * input) is fed as integers too: it trains exactly as tiny's label */
  char ck3[600], kmodel[600];
  snprintf(kmodel, sizeof kmodel, "%s/k.dl", dir);
  write_text(kmodel, "model tiny\ninput x: f32[N, 6]\ninput k: i64[N]\nfc1 = dense(x, 5)\nh = tanh(fc1)\n"
                     "fc2 = dense(h, 3)\noutput fc2\ntrain {\n  loss = cross_entropy(fc2, k)\n"
                     "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = npy(\"k=y32.npy,x=x.npy\")\n}\n");
  snprintf(ck3, sizeof ck3, "%s/k.safetensors", dir);
  Proc c = run_dlc(dir, "train", kmodel, flag, "--epochs", "2", "--val-split", "0.25", "--save", ck3, NULL);
  cr_assert_eq(c.status, 0, "%s: %s%s", be, c.out, c.err);
  expect_same_file(ck1, ck3, be);
  proc_free(&c);
  proc_free(&a);
  proc_free(&b);
  remove_dir(dir);
}

/* Every way a named spec can miss the model is refused before training,
 * naming the input and the file. */
Test(dlc_data, mismatched_bindings_are_named, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  write_blobs(dir, 21, 6, "x21.npy", "y21.npy");
  write_npy_slice(dir, "a.npy", DT_F32, 22, 0, 3);
  write_npy_slice(dir, "b.npy", DT_F32, 22, 3, 6);
  write_npy_slice(dir, "b4.npy", DT_F32, 22, 2, 6);
  write_npy_slice(dir, "bi.npy", DT_I64, 22, 3, 6);
  write_npy_slice(dir, "b64.npy", DT_F64, 22, 3, 6);
  write_labels_as(dir, "yf.npy", DT_F32, 1);
  write_labels_as(dir, "y2.npy", DT_I64, 2);
  snprintf(model, sizeof model, "%s/split.dl", dir);
  write_model(model, split_model, "");
  struct {
    const char *spec, *needle1, *needle2;
    int status;
  } cases[] = {
      {"a=a.npy,y=y.npy", "input 'b' has no file", "b=PATH", 1},
      {"a=a.npy,b=b.npy,y=y.npy,c=x.npy", "'c' is not an input or label of model 'tiny'", "x.npy", 1},
      {"a=a.npy,b=bi.npy,y=y.npy", "input 'b' is f32[N, 3] but the file holds i64[22, 3]", "bi.npy", 1},
      {"a=a.npy,b=b64.npy,y=y.npy", "f64 values are not narrowed", "b64.npy", 1},
      {"a=a.npy,b=b.npy,y=yf.npy", "label 'y' is i64[N] but the file holds f32[22]: a float file", "yf.npy", 1},
      {"a=a.npy,b=b4.npy,y=y.npy", "dimension 1 is 4, expected 3", "b4.npy", 1},
      {"a=a.npy,b=b.npy,y=y2.npy", "label 'y' is i64[N] but the file holds i64[22, 1]: rank 2, expected 1", "y2.npy", 1},
      {"a=a.npy,b=b.npy,y=y21.npy", "has 21 rows but", "y21.npy", 1},
      {"a=a.npy,a=b.npy,y=y.npy", "'a' is bound twice", "--data", 2},
      {"a=a.npy,b.npy,y=y.npy", "expected NAME=PATH", "b.npy", 2},
      {"a=a.npy,b=b.npy,y=x.npy", "label 'y' is i64[N] but the file holds f32[22, 6]", "x.npy", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char spec[1400] = "npy:", *at = spec + 4;
    char copy[256], *save = NULL;
    snprintf(copy, sizeof copy, "%s", cases[i].spec);
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
      char *eq = strchr(item, '=');
      at += eq ? snprintf(at, sizeof spec - (size_t)(at - spec), "%s%.*s=%s/%s", at == spec + 4 ? "" : ",",
                          (int)(eq - item), item, dir, eq + 1)
               : snprintf(at, sizeof spec - (size_t)(at - spec), ",%s/%s", dir, item);
    }
    BadRun r = {{"--data", spec}, cases[i].status, cases[i].needle1};
    expect_bad_run(dir, model, &r);
    BadRun r2 = {{"--data", spec}, cases[i].status, cases[i].needle2};
    expect_bad_run(dir, model, &r2);
  }
  remove_dir(dir);
}

/* The fixed forms feed one input and one label: a model with more inputs,
 * or an integer data input, is told to bind them by name. */
Test(dlc_data, fixed_form_refuses_what_it_cannot_feed, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600], data[1300], ints[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(model, sizeof model, "%s/split.dl", dir);
  write_model(model, split_model, "");
  BadRun r = {{"--data", data}, 1, "input 'b' gets no data: the npy form feeds only input 'a' and label y"};
  expect_bad_run(dir, model, &r);
  snprintf(ints, sizeof ints, "%s/ints.dl", dir);
  write_text(ints, "model ints\ninput k: i64[N]\ninput x: f32[N, 6]\nfc2 = dense(x, 3)\noutput fc2\n"
                   "train {\n  loss = cross_entropy(fc2, k)\n  optimizer = sgd(lr=0.1)\n  batch = 4\n}\n");
  BadRun r2 = {{"--data", data}, 1, "input 'k' is i64, but the npy form gives f32 samples"};
  expect_bad_run(dir, ints, &r2);
  remove_dir(dir);
}

/* Paths in the model file resolve against its directory, as #include
 * does; paths on the command line against the working directory. */
Test(dlc_data, model_paths_are_relative_to_the_model, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char sub[600], model[700], data[700];
  snprintf(sub, sizeof sub, "%s/models", dir);
  cr_assert_eq(mkdir(sub, 0755), 0);
  snprintf(data, sizeof data, "%s/models/data", dir);
  cr_assert_eq(mkdir(data, 0755), 0);
  write_blobs(data, 22, 6, "x.npy", "y.npy");
  write_blobs(dir, 10, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/tiny.dl", sub);
  char *text = tiny_variant("  data = npy(\"data/x.npy\", \"data/y.npy\")");
  write_text(model, text);
  free(text);
  cr_assert_eq(chdir(dir), 0);
  Proc p = run_dlc(dir, "train", "models/tiny.dl", "--backend=interp", "--epochs", "1", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training tiny: 22 samples"), "models/data/x.npy, next to the model: %s", p.out);
  proc_free(&p);
  p = run_dlc(dir, "train", "models/tiny.dl", "--backend=interp", "--epochs", "1", "--data", "npy:x.npy,y.npy", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training tiny: 10 samples"), "--data x.npy is ./x.npy: %s", p.out);
  proc_free(&p);
  text = tiny_variant("  data = npy(\"x.npy\", \"y.npy\")");
  write_text(model, text);
  free(text);
  p = run_dlc(dir, "train", "models/tiny.dl", "--backend=interp", "--epochs", "1", NULL);
  cr_expect_eq(p.status, 1, "./x.npy exists, models/x.npy does not: %s%s", p.out, p.err);
  cr_expect(strstr(p.err, "models/x.npy"), "%s", p.err);
  proc_free(&p);
  remove_dir(dir);
}

/* IDX bytes: magic (u8, rank), dimensions big-endian, then the values. */
static void write_idx(const char *path, int rank, const int *dims, const unsigned char *v, size_t n) {
  unsigned char head[4 + 4 * 4] = {0, 0, 8, (unsigned char)rank};
  for (int k = 0; k < rank; k++)
    for (int b = 0; b < 4; b++) head[4 + 4 * k + b] = (unsigned char)(dims[k] >> (24 - 8 * b));
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fwrite(head, 1, 4 + 4 * (size_t)rank, f);
  fwrite(v, 1, n, f);
  fclose(f);
}

/* n images of h x w bytes and their labels (0..2) as IDX files. */
static void write_idx_pair(const char *images, const char *labels, int n, int h, int w) {
  unsigned char *img = malloc((size_t)(n * h * w)), lab[64];
  cr_assert(img && n <= 64);
  for (int s = 0; s < n; s++) {
    lab[s] = (unsigned char)(s * 7 % 3);
    for (int f = 0; f < h * w; f++) img[s * h * w + f] = (unsigned char)((s * 37 + f * 11) % 200 + (f == lab[s] ? 55 : 0));
  }
  write_idx(images, 3, (int[]){n, h, w}, img, (size_t)(n * h * w));
  write_idx(labels, 1, (int[]){n}, lab, (size_t)n);
  free(img);
}

/* Every data form of the model file (npy by name, csv, idx, fashion_mnist,
 * text) reads its paths next to the model, run from another directory. */
Test(dlc_data, every_data_form_reads_paths_next_to_the_model, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char sub[600], data[700], path[800], fm[800];
  snprintf(sub, sizeof sub, "%s/models", dir);
  snprintf(data, sizeof data, "%s/models/data", dir);
  snprintf(fm, sizeof fm, "%s/models/data/fm", dir);
  cr_assert(mkdir(sub, 0755) == 0 && mkdir(data, 0755) == 0 && mkdir(fm, 0755) == 0);
  write_blobs(data, 22, 6, "x.npy", "y.npy");
  snprintf(path, sizeof path, "%s/d.csv", data);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  for (int s = 0; s < 20; s++) fprintf(f, "%d,%d,%d,%d,%d,%d,%d\n", s % 5, s % 3, s % 7, s % 2, s % 4, s % 6, s * 7 % 3);
  fclose(f);
  char img[900], lab[900];
  snprintf(img, sizeof img, "%s/img-idx3-ubyte", data), snprintf(lab, sizeof lab, "%s/lab-idx1-ubyte", data);
  write_idx_pair(img, lab, 18, 2, 3);
  static const char *const fm_files[2][2] = {{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"},
                                             {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}};
  for (int k = 0; k < 2; k++) { /* plain bytes under the .gz names: zlib reads both */
    snprintf(img, sizeof img, "%s/%s", fm, fm_files[k][0]), snprintf(lab, sizeof lab, "%s/%s", fm, fm_files[k][1]);
    write_idx_pair(img, lab, k ? 8 : 24, 28, 28);
  }
  snprintf(path, sizeof path, "%s/corpus.txt", data);
  f = fopen(path, "w");
  cr_assert_not_null(f);
  for (int i = 0; i < 30; i++) fputs("abc", f);
  fclose(f);
  static const struct {
    const char *form, *samples;
  } forms[] = {{"  data = npy(\"x=data/x.npy,y=data/y.npy\")", "training tiny: 22 samples"},
               {"  data = csv(\"data/d.csv\")", "training tiny: 20 samples"},
               {"  data = idx(\"data/img-idx3-ubyte\", \"data/lab-idx1-ubyte\")", "training tiny: 18 samples"}};
  cr_assert_eq(chdir(dir), 0);
  snprintf(path, sizeof path, "%s/tiny.dl", sub);
  for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
    char *text = tiny_variant(forms[k].form);
    write_text(path, text);
    free(text);
    Proc p = run_dlc(dir, "train", "models/tiny.dl", "--backend=interp", "--steps", "2", NULL);
    cr_expect_eq(p.status, 0, "%s: %s%s", forms[k].form, p.out, p.err);
    cr_expect(strstr(p.out, forms[k].samples), "%s: %s", forms[k].form, p.out);
    proc_free(&p);
  }
  snprintf(path, sizeof path, "%s/fm.dl", sub); /* Fashion-MNIST's 28 x 28 images */
  write_text(path, "model fm\ninput x: f32[N, 784]\nfc = dense(x, 10)\noutput fc\ntrain {\n  label y: i64[N]\n"
                   "  loss = cross_entropy(fc, y)\n  optimizer = sgd(lr=0.1)\n  batch = 4\n"
                   "  data = fashion_mnist(\"data/fm\")\n}\n");
  Proc q = run_dlc(dir, "train", "models/fm.dl", "--backend=interp", "--steps", "2", NULL);
  cr_expect_eq(q.status, 0, "fashion_mnist: %s%s", q.out, q.err);
  cr_expect(strstr(q.out, "training fm: 24 samples (0 validation, 8 test)"), "fashion_mnist: %s", q.out);
  proc_free(&q);
  snprintf(path, sizeof path, "%s/lm.dl", sub);
  write_text(path, "model lm\ninput tokens: i64[N, 4]\ne = embedding(tokens, 3, 4)\nlogits = dense(e, 3)\n"
                   "output logits\ntrain {\n  label next: i64[N, 4]\n  target = next\n"
                   "  loss = -mean(gather(log_softmax(logits, axis=-1), reshape(next, [N, 4, 1]), axis=2))\n"
                   "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = text(\"data/corpus.txt\")\n}\n");
  Proc p = run_dlc(dir, "train", "models/lm.dl", "--backend=interp", "--steps", "2", NULL);
  cr_expect_eq(p.status, 0, "text: %s%s", p.out, p.err);
  cr_expect(strstr(p.out, "training lm: 22 samples"), "text: 90 bytes, windows of 4 and the byte after: %s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

/* The lr column of the epoch rows (batch 0) of a metrics file, in order. */
static int epoch_lrs(const char *path, double *lr, int max) {
  char *csv = tu_read_file(path, NULL);
  cr_assert(csv, "no %s", path);
  int n = 0;
  for (const char *line = strchr(csv, '\n'); line && line[1] && n < max; line = strchr(line + 1, '\n')) {
    double v[9];
    if (sscanf(line + 1, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
               &v[8]) >= 8 && v[1] == 0)
      lr[n++] = v[7];
  }
  free(csv);
  return n;
}

/* The first epoch's training loss in a metrics file. */
static double first_epoch_loss(const char *path) {
  char *csv = tu_read_file(path, NULL);
  cr_assert(csv, "no %s", path);
  const char *row = strstr(csv, "\n1,0,");
  cr_assert(row, "%s", csv);
  double v[4];
  cr_assert_eq(sscanf(row + 1, "%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3]), 4);
  free(csv);
  return v[3];
}

/* --schedule on the command line replaces the file's schedule with the
 * same formulas; --augment noise=S adds Gaussian noise to the input of an
 * autoencoder (the loss changes; without it two runs agree exactly). */
Test(dlc_data, schedule_and_noise_flags, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char data[1300], m[600], model[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(m, sizeof m, "%s/m.csv", dir);
  Proc p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--epochs", "3", "--metrics", m,
                   "--schedule", "step:step_size=1,gamma=0.5", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  proc_free(&p);
  double lr[4];
  cr_assert_eq(epoch_lrs(m, lr, 4), 3);
  cr_expect(lr[0] == 0.1 && fabs(lr[1] - 0.05) < 1e-12 && fabs(lr[2] - 0.025) < 1e-12, "lr %g %g %g", lr[0], lr[1], lr[2]);
  p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--epochs", "2", "--metrics", m,
              "--schedule", "cosine:t_max=2", "--lr", "0.2", NULL);
  cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
  proc_free(&p);
  cr_assert_eq(epoch_lrs(m, lr, 4), 2);
  cr_expect(lr[0] == 0.2 && fabs(lr[1] - 0.1) < 1e-12, "cosine from --lr 0.2: %g %g", lr[0], lr[1]);
  static const struct {
    const char *spec, *msg;
  } bad[] = {{"cosine", "--schedule: error: cosine needs t_max=10"},
             {"warm", "expected constant, step, exponential, cosine or cyclic, got 'warm'"},
             {"step:step_size=0", "--schedule step_size"},
             {"step:size=3", "unknown setting 'size=3'"},
             {"cyclic:base_lr=0.01,max_lr=0.1", "cyclic needs base_lr=0.001,max_lr=0.1,step_size_up=2000"}};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--schedule", bad[k].spec, NULL);
    cr_expect_eq(p.status, 2, "%s: %s", bad[k].spec, p.err);
    cr_expect(strstr(p.err, bad[k].msg), "%s: %s", bad[k].spec, p.err);
    proc_free(&p);
  }
  snprintf(model, sizeof model, "%s/ae.dl", dir);
  write_text(model, "model ae\ninput x: f32[N, 6]\ne = dense(x, 3)\nh = tanh(e)\nout = dense(h, 6)\noutput out\n"
                    "train {\n  label t: f32[N, 6]\n  target = x\n  loss = mse_loss(out, t)\n"
                    "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = npy(\"x=x.npy\")\n}\n");
  double loss[3];
  const char *augment[3] = {"none", "none", "noise=0.5"};
  for (int k = 0; k < 3; k++) {
    p = run_dlc(dir, "train", model, "--backend=interp", "--epochs", "1", "--metrics", m, "--augment", augment[k], NULL);
    cr_assert_eq(p.status, 0, "%s%s", p.out, p.err);
    proc_free(&p);
    loss[k] = first_epoch_loss(m);
  }
  cr_expect(loss[0] == loss[1], "two runs without noise: %.9g, %.9g", loss[0], loss[1]);
  cr_expect(loss[2] > loss[0], "noise 0.5 on the input: loss %.9g, without %.9g", loss[2], loss[0]);
  p = run_dlc(dir, "train", model, "--augment", "noise=-1", NULL);
  cr_expect_eq(p.status, 2, "%s", p.err);
  cr_expect(strstr(p.err, "--augment noise"), "%s", p.err);
  proc_free(&p);
  /* noise on a classifier would do nothing: refused */
  p = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--augment", "noise=0.3", NULL);
  cr_expect_eq(p.status, 1, "%s", p.err);
  cr_expect(strstr(p.err, "noise=0.3 makes a denoising autoencoder: it needs 'target = INPUT'"), "%s", p.err);
  proc_free(&p);
  remove_dir(dir);
}

/* target = x with named files: the label gets the input's clean values and
 * takes no file of its own. */
Test(dlc_data, autoencoder_target_by_name, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600], data[1300];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/ae.dl", dir);
  write_text(model, "model ae\ninput x: f32[N, 6]\ne = dense(x, 3)\nh = tanh(e)\nout = dense(h, 6)\noutput out\n"
                    "train {\n  label t: f32[N, 6]\n  target = x\n  loss = mse_loss(out, t)\n"
                    "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = npy(\"x=x.npy\")\n}\n");
  Proc p = run_dlc(dir, "train", model, "--backend=c", "--epochs", "2", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 2, "%s", p.out);
  proc_free(&p);
  snprintf(data, sizeof data, "npy:x=%s/x.npy,t=%s/x.npy", dir, dir);
  BadRun r = {{"--data", data}, 1, "label 't' gets the clean input 'x' (target = x), not a file"};
  expect_bad_run(dir, model, &r);
  remove_dir(dir);
}

/* target = t naming the label itself, with named files: the label is fed
 * from its own file like any other, and the input's batch is left alone
 * (no autoencoder target is made; this once stopped on an internal check). */
Test(dlc_data, label_target_by_name, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/lt.dl", dir);
  write_text(model, "model lt\ninput x: f32[N, 6]\nout = dense(x, 6)\noutput out\n"
                    "train {\n  label t: f32[N, 6]\n  target = t\n  loss = mse_loss(out, t)\n"
                    "  optimizer = sgd(lr=0.1)\n  batch = 4\n  data = npy(\"x=x.npy,t=x.npy\")\n}\n");
  Proc p = run_dlc(dir, "train", model, "--backend=c", "--epochs", "2", NULL);
  cr_expect_eq(p.status, 0, "%s%s", p.out, p.err);
  cr_expect_eq(count_lines_starting(p.out, "epoch "), 2, "%s", p.out);
  proc_free(&p);
  remove_dir(dir);
}

/* --steps N stops after N optimizer steps in all, inside an epoch if need
 * be; its checkpoint resumes at the next batch and the run ends bit for
 * bit like one that never stopped.  Metrics have a row per batch. */
ParameterizedTestParameters(dlc_data, steps_stop_and_resume_like_one_run) {
  static BindParam params[] = {{BACKEND_INTERP}, {BACKEND_C}};
  return cr_make_param_array(BindParam, params, 2);
}

ParameterizedTest(BindParam *p, dlc_data, steps_stop_and_resume_like_one_run, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char model[600], data[1300], full[600], part[600], rest[600], mpart[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/model.dl", dir);
  char *text = tiny_variant("  schedule = cyclic(base_lr=0.001, max_lr=0.05, step_size_up=3)\n  seed = 3\n"
                            "  val_split = 0.2"),
       *adam = replace_once(text, "sgd(lr=0.1)", "adam(lr=0.01)");
  write_text(model, adam);
  free(text);
  free(adam);
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(full, sizeof full, "%s/full.safetensors", dir);
  snprintf(part, sizeof part, "%s/part.safetensors", dir);
  snprintf(rest, sizeof rest, "%s/rest.safetensors", dir);
  snprintf(mpart, sizeof mpart, "%s/part.csv", dir);
  const char *be = p->backend == BACKEND_C ? "--backend=c" : "--backend=interp";

  Proc a = run_dlc(dir, "train", model, "--data", data, be, "--epochs", "3", "--save", full, NULL);
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  /* 18 training samples in batches of 4: 5 steps an epoch; 7 steps end in batch 2 of epoch 2 */
  Proc b = run_dlc(dir, "train", model, "--data", data, be, "--steps", "7", "--save", part, "--metrics", mpart, NULL);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  cr_expect_eq(count_lines_starting(b.out, "epoch 1/2: "), 1, "%s", b.out);
  cr_expect_eq(count_lines_starting(b.out, "epoch 2/2"), 0, "%s", b.out);
  cr_expect(strstr(b.out, "stopped after 7 steps, batch 2 of epoch 2\n"), "%s", b.out);
  RtTensorSet sp;
  read_st(part, &sp);
  cr_expect_str_eq(rt_set_get_meta(&sp, "dlc.step"), "7");
  cr_expect_str_eq(rt_set_get_meta(&sp, "dlc.epoch"), "1");
  cr_expect_str_eq(rt_set_get_meta(&sp, "dlc.epoch_batches"), "2");
  rt_set_free(&sp);
  char *csv = tu_read_file(mpart, NULL);
  cr_assert(csv);
  cr_expect_eq(count_lines(csv), 1 + 7 + 1, "header, 7 batch rows, one epoch row:\n%s", csv);
  cr_expect(strstr(csv, "\n1,0,5,") && strstr(csv, "\n2,2,7,"), "%s", csv);
  free(csv);

  Proc c = run_dlc(dir, "train", model, "--data", data, be, "--epochs", "3", "--resume", part, "--save", rest, NULL);
  cr_assert_eq(c.status, 0, "%s%s", c.out, c.err);
  cr_expect(strstr(c.out, "epoch 2/3:") && strstr(c.out, "epoch 3/3:") && !strstr(c.out, "epoch 1/3"), "%s", c.out);
  expect_same_file(full, rest, be);

  /* the position inside an epoch holds only for the batch size it was taken at */
  BadRun r = {{"--data", data, "--resume", part, "--batch", "3"}, 1, "resume with --batch 4"};
  expect_bad_run(dir, model, &r);
  /* --steps on an epoch's end: whole epochs, no stop line */
  Proc d = run_dlc(dir, "train", model, "--data", data, be, "--steps", "10", NULL);
  cr_expect_eq(d.status, 0, "%s%s", d.out, d.err);
  cr_expect(strstr(d.out, "epoch 2/2:") && !strstr(d.out, "stopped"), "%s", d.out);
  BadRun r2 = {{"--data", data, "--steps", "0"}, 2, "--steps"};
  expect_bad_run(dir, model, &r2);
  Proc e = run_dlc(dir, "train", model, "--data", data, be, "--resume", part, "--steps", "5", NULL);
  cr_expect_eq(e.status, 0, "%s%s", e.out, e.err);
  cr_expect(strstr(e.err, "note: the run has taken 7 steps already; --steps 5 trains no more"), "%s", e.err);
  cr_expect_eq(count_lines_starting(e.out, "epoch "), 0, "%s", e.out);
  proc_free(&e);
  proc_free(&a);
  proc_free(&b);
  proc_free(&c);
  proc_free(&d);
  remove_dir(dir);
}

/* An i32 label fed by a fixed form gets i32 labels (the loaders read i64):
 * it trains exactly as the same model with an i64 label. */
Test(dlc_data, fixed_form_feeds_an_i32_label_as_i32, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char model[600], data[1300], ck64[600], ck32[600];
  write_blobs(dir, 22, 6, "x.npy", "y.npy");
  snprintf(model, sizeof model, "%s/tiny32.dl", dir);
  char *text = tiny_variant(""), *i32 = replace_once(text, "label y: i64[N]", "label y: i32[N]");
  write_text(model, i32);
  free(text);
  free(i32);
  snprintf(data, sizeof data, "npy:%s/x.npy,%s/y.npy", dir, dir);
  snprintf(ck64, sizeof ck64, "%s/i64.safetensors", dir);
  snprintf(ck32, sizeof ck32, "%s/i32.safetensors", dir);
  Proc a = run_dlc(dir, "train", TRAIN("tiny.dl"), "--data", data, "--backend=interp", "--epochs", "2", "--save", ck64,
                   NULL);
  cr_assert_eq(a.status, 0, "%s%s", a.out, a.err);
  Proc b = run_dlc(dir, "train", model, "--data", data, "--backend=c", "--epochs", "2", "--save", ck32, NULL);
  cr_assert_eq(b.status, 0, "%s%s", b.out, b.err);
  RtTensorSet s64, s32;
  read_st(ck64, &s64);
  read_st(ck32, &s32);
  const char *names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
  for (int i = 0; i < 4; i++) {
    const RtTensor *p = rt_set_find(&s64, names[i]), *q = rt_set_find(&s32, names[i]);
    cr_assert(p && q, "%s", names[i]);
    int64_t n = (int64_t)(rt_tensor_nbytes(p) / sizeof(float));
    for (int64_t k = 0; k < n; k++)
      cr_expect(fabsf(((float *)p->data)[k] - ((float *)q->data)[k]) <= 1e-5f, "%s[%lld]: i64 %g, i32 %g", names[i],
                (long long)k, ((float *)p->data)[k], ((float *)q->data)[k]);
  }
  rt_set_free(&s64);
  rt_set_free(&s32);
  proc_free(&a);
  proc_free(&b);
  remove_dir(dir);
}
