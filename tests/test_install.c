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
 */
#include <criterion/criterion.h>
#include <sys/stat.h>
#include <sys/wait.h>

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
