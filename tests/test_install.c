/*
 * test_install.c — `meson install` gives a user what they need to build
 * on emitted training code without the source tree.
 *
 * The build directory is installed into a scratch DESTDIR (--no-rebuild:
 * the suite runs from that build).  The installed dlc emits the training
 * step of a small model; a program of its own (the training step plus the
 * runtime's PRNG for its data) is compiled with nothing but
 * `pkg-config --cflags --libs dlc-runtime`, pointed into the DESTDIR with
 * PKG_CONFIG_PATH and PKG_CONFIG_SYSROOT_DIR, and run: two SGD steps on
 * one batch must lower its loss.  The manual page must be there with a
 * section for each subcommand.  A build with sanitizers links the program
 * with the same sanitizers, as its runtime library needs them.
 *
 * A model with named train sections: the emitted C drives the sections'
 * order itself (two_train_next), and a standalone trainer of two epochs,
 * built the same way, takes the same steps with the same losses as
 * `dlc train --backend=c` (which compiles the same C).
 */
#include <criterion/criterion.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

static const char *const tiny_dl =
    "model tiny\n"
    "input x: f32[N, 3]\n"
    "logits = dense(x, 2)\n"
    "output logits\n"
    "train {\n"
    "  label y: i64[N]\n"
    "  loss = cross_entropy(logits, y)\n"
    "  optimizer = sgd(lr=0.5)\n"
    "  batch = 4\n"
    "}\n";

/* Two steps on one batch whose class is the sign of the first feature. */
static const char *const main_c =
    "#include <stdio.h>\n"
    "#include \"runtime/rt.h\"\n"
    "#include \"t_train.h\"\n"
    "int main(void) {\n"
    "  float x[12], lr = 0.5f, step = 0, loss[2], logits[8];\n"
    "  int64_t y[4];\n"
    "  RtRng r;\n"
    "  rt_rng_seed(&r, 7);\n"
    "  for (int i = 0; i < 12; i++) x[i] = (float)rt_rng_normal(&r);\n"
    "  for (int i = 0; i < 4; i++) y[i] = x[3 * i] > 0;\n"
    "  if (tiny_load(\"t_train.init.safetensors\")) return fprintf(stderr, \"%s\\n\", tiny_error()), 1;\n"
    "  for (int k = 0; k < 2; k++) {\n"
    "    step += 1;\n"
    "    if (tiny_train_step(4, x, y, &lr, &step, &loss[k], logits)) return 1;\n"
    "  }\n"
    "  printf(\"loss %g %g\\n\", loss[0], loss[1]);\n"
    "  return loss[1] < loss[0] ? 0 : 3;\n"
    "}\n";

static void write_file(const char *dir, const char *name, const char *text) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

static int sh(const char *dir, const char *cmd) {
  char full[4096];
  snprintf(full, sizeof full, "cd %s && (%s) >> log.txt 2>&1", dir, cmd);
  int st = system(full);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *log_of(const char *dir) {
  char path[700];
  snprintf(path, sizeof path, "%s/log.txt", dir);
  char *s = tu_read_file(path, NULL);
  return s ? s : strdup("(no log)");
}

Test(install, emitted_training_code_builds_with_pkg_config, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  char cmd[3000], dest[600];
  snprintf(dest, sizeof dest, "%s/dest", dir);
  snprintf(cmd, sizeof cmd, "meson install -C %s --no-rebuild --destdir %s", DLC_BUILD_DIR, dest);
  cr_assert_eq(sh(dir, cmd), 0, "meson install:\n%s", log_of(dir));
  struct stat sb;
  const char *files[] = {DLC_BINDIR "/dlc", DLC_INCLUDEDIR "/dlc/runtime/rt.h", DLC_LIBDIR "/libdlc_runtime.a",
                         DLC_LIBDIR "/pkgconfig/dlc-runtime.pc", DLC_MANDIR "/man1/dlc.1"};
  for (int i = 0; i < 5; i++) {
    char path[1200];
    snprintf(path, sizeof path, "%s%s", dest, files[i]);
    cr_expect_eq(stat(path, &sb), 0, "not installed: %s", path);
  }
  write_file(dir, "t.dl", tiny_dl);
  write_file(dir, "main.c", main_c);
  snprintf(cmd, sizeof cmd, "%s%s/dlc t.dl --train -o t_train.c", dest, DLC_BINDIR);
  cr_assert_eq(sh(dir, cmd), 0, "the installed dlc:\n%s", log_of(dir));
  snprintf(cmd, sizeof cmd,
           "export PKG_CONFIG_SYSROOT_DIR=%s PKG_CONFIG_PATH=%s%s/pkgconfig && "
           "cc -std=c11 %s main.c t_train.c $(pkg-config --cflags --libs dlc-runtime) -o main && ./main",
           dest, dest, DLC_LIBDIR, DLC_SANITIZE[0] ? "-fsanitize=" DLC_SANITIZE : "");
  cr_expect_eq(sh(dir, cmd), 0, "build and run against the installed runtime:\n%s", log_of(dir));
  char path[1200];
  snprintf(path, sizeof path, "%s%s/man1/dlc.1", dest, DLC_MANDIR);
  char *man = tu_read_file(path, NULL);
  cr_assert_not_null(man);
  cr_expect(strncmp(man, ".TH DLC 1", 9) == 0, "%.80s", man);
  const char *sections[] = {"check", "run", "train", "repl", "eval", "export", "import", "plot", "grid"};
  for (int i = 0; i < 9; i++) {
    char ss[64];
    snprintf(ss, sizeof ss, ".SS \"dlc %s\"", sections[i]);
    cr_expect(strstr(man, ss) != NULL, "no section %s in the manual page", ss);
  }
  cr_expect(strstr(man, "usage: dlc train MODEL.dl") != NULL, "the help text of dlc train");
  free(man);
}

static const char *const two_dl =
    "model two\n"
    "input x: f32[N, 3]\n"
    "input z: f32[N, 2] = randn\n"
    "a1 = dense(x, 4)\n"
    "b1 = dense(z, 4)\n"
    "h = tanh(a1) + tanh(b1)\n"
    "head = dense(h, 1)\n"
    "output head\n"
    "train {\n  label y: f32[N, 1]\n  data = npy(\"x=x.npy,y=y.npy\")\n  batch = 4\n  seed = 7\n"
    "  order = alternate(alpha=2, beta=1)\n}\n"
    "train alpha {\n  loss = mse_loss(head, y)\n  optimizer = sgd(lr=0.05, momentum=0.9)\n  params = [\"a*\", head]\n}\n"
    "train beta {\n  loss = mean(head * head)\n  optimizer = adam(lr=0.01)\n  params = b1\n}\n";

/* Two epochs over x.npy, y.npy in dlc train's order, one line per step. */
static const char *const two_main_c =
    "#include <stdio.h>\n"
    "#include \"runtime/rt.h\"\n"
    "#include \"two_train.h\"\n"
    "int main(void) {\n"
    "  RtTensor x, y;\n"
    "  RtError err;\n"
    "  if (rt_npy_read(\"x.npy\", &x, &err) || rt_npy_read(\"y.npy\", &y, &err)) return fprintf(stderr, \"%s\\n\", err.msg), 1;\n"
    "  if (two_load(\"two_train.init.safetensors\")) return fprintf(stderr, \"%s\\n\", two_error()), 1;\n"
    "  float bx[TWO_MAX_N * 3], by[TWO_MAX_N], loss, head[TWO_MAX_N], lr[TWO_NUM_SECTIONS];\n"
    "  for (int s = 0; s < TWO_NUM_SECTIONS; s++) lr[s] = (float)two_section_lr(s);\n"
    "  int64_t n = x.shape[0], order[64], step = 0;\n"
    "  for (int e = 0; e < 2; e++) {\n"
    "    rt_epoch_order(n, 7, e, 1, order);\n"
    "    for (int64_t at = 0; at < n; at += TWO_MAX_N) {\n"
    "      int64_t b = n - at < TWO_MAX_N ? n - at : TWO_MAX_N;\n"
    "      int s;\n"
    "      rt_rows_gather(&x, order + at, b, bx);\n"
    "      rt_rows_gather(&y, order + at, b, by);\n"
    "      if (two_train_next(&step, lr, &s, b, bx, by, &loss, head)) return 1;\n"
    "      printf(\"%lld %s %.9g\\n\", (long long)step, two_section_name(s), loss);\n"
    "    }\n"
    "  }\n"
    "  rt_tensor_free(&x);\n"
    "  rt_tensor_free(&y);\n"
    "  return 0;\n"
    "}\n";

/* 22 samples of 3 features and a target. */
static void write_two_data(const char *dir) {
  RtTensor x, y;
  RtError err;
  int64_t xs[2] = {22, 3}, ys[2] = {22, 1};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, xs, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_F32, 2, ys, &err), RT_OK);
  for (int i = 0; i < 22; i++) {
    for (int f = 0; f < 3; f++) ((float *)x.data)[i * 3 + f] = (float)((i * 7 + f * 5) % 11) / 5.0f - 1.0f;
    ((float *)y.data)[i] = (float)(i % 5) / 2.0f - 1.0f;
  }
  char px[700], py[700];
  snprintf(px, sizeof px, "%s/x.npy", dir);
  snprintf(py, sizeof py, "%s/y.npy", dir);
  cr_assert_eq(rt_npy_write(px, &x, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_npy_write(py, &y, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
}

Test(install, emitted_sections_drive_their_order, .timeout = 180) {
  const char *dir = tu_scratch_dir();
  char cmd[3000], dest[600];
  snprintf(dest, sizeof dest, "%s/dest", dir);
  snprintf(cmd, sizeof cmd, "meson install -C %s --no-rebuild --destdir %s", DLC_BUILD_DIR, dest);
  cr_assert_eq(sh(dir, cmd), 0, "meson install:\n%s", log_of(dir));
  write_file(dir, "two.dl", two_dl);
  write_file(dir, "main.c", two_main_c);
  write_two_data(dir);
  snprintf(cmd, sizeof cmd, "%s%s/dlc two.dl --train -o two_train.c", dest, DLC_BINDIR);
  cr_assert_eq(sh(dir, cmd), 0, "the installed dlc:\n%s", log_of(dir));
  snprintf(cmd, sizeof cmd,
           "export PKG_CONFIG_SYSROOT_DIR=%s PKG_CONFIG_PATH=%s%s/pkgconfig && "
           "cc -std=c11 -Wall -Wextra -Werror %s main.c two_train.c $(pkg-config --cflags --libs dlc-runtime) -o main && "
           "./main > steps.txt",
           dest, dest, DLC_LIBDIR, DLC_SANITIZE[0] ? "-fsanitize=" DLC_SANITIZE : "");
  cr_assert_eq(sh(dir, cmd), 0, "build and run against the installed runtime:\n%s", log_of(dir));
  snprintf(cmd, sizeof cmd, "%s%s/dlc train two.dl --backend=c --epochs 2 --metrics m.csv", dest, DLC_BINDIR);
  cr_assert_eq(sh(dir, cmd), 0, "dlc train:\n%s", log_of(dir));
  char path[700];
  snprintf(path, sizeof path, "%s/steps.txt", dir);
  char *steps = tu_read_file(path, NULL);
  snprintf(path, sizeof path, "%s/m.csv", dir);
  char *csv = tu_read_file(path, NULL);
  cr_assert(steps && csv);
  int n = 0;
  const char *line = steps;
  for (const char *row = strchr(csv, '\n'); row && row[1]; row = strchr(row + 1, '\n')) {
    double v[9];
    cr_assert_geq(sscanf(row + 1, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                         &v[6], &v[7], &v[8]), 4);
    if (v[1] == 0) continue; /* an epoch's row */
    long long k;
    char name[32];
    double loss;
    cr_assert_eq(sscanf(line, "%lld %31s %lf", &k, name, &loss), 3, "%s", steps);
    cr_expect_eq(k, (long long)v[2], "step %lld against dlc train's step %g", k, v[2]);
    cr_expect_str_eq(name, (k - 1) % 3 == 2 ? "beta" : "alpha", "step %lld", k);
    cr_expect(fabs(loss - v[3]) <= 1e-5 * fmax(1, fabs(v[3])), "step %lld: loss %.9g, dlc train %.9g", k, loss, v[3]);
    line = strchr(line, '\n') + 1;
    n++;
  }
  cr_expect_eq(n, 12, "2 epochs of 6 batches:\n%s", steps);
  free(steps);
  free(csv);
}
