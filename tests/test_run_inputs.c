/*
 * test_run_inputs.c — what `dlc run` computes and where its inputs come
 * from: only the outputs named by --output (an input only the others need
 * is not asked for), --dim SYM=K (the first K rows of a longer file), inputs
 * declared `= randn` / `= rand` drawn from --seed when not given, and IDX
 * files (u8 images scaled to [0, 1], reshaped to the input's sample shape).
 * Each case runs the real executable on a small model in a scratch
 * directory and reads back the .npy it wrote.  samples/vae.dl is checked
 * the way its README commands use it.
 */
#include <criterion/criterion.h>
#include <sys/wait.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

static const char model[] =
    "model gen\n"
    "input x: f32[N, 4]\n"
    "input z: f32[N, 3] = randn\n"
    "input u: f32[N, 2] = rand\n"
    "output a = x * 2\n"
    "output b = z * 2\n"
    "output c = u + 0\n";

/* Runs dlc ARGS in dir; the exit status, and the output in *log. */
static int dlc(const char *dir, const char *args, char **log) {
  char cmd[2048], path[600];
  snprintf(path, sizeof path, "%s/log.txt", dir);
  snprintf(cmd, sizeof cmd, "cd %s && %s %s > log.txt 2>&1", dir, DLC_EXE, args);
  int st = system(cmd);
  *log = tu_read_file(path, NULL);
  cr_assert_not_null(*log);
  cr_assert(WIFEXITED(st), "dlc %s died:\n%s", args, *log);
  return WEXITSTATUS(st);
}

static const char *setup(void) {
  const char *dir = tu_scratch_dir();
  char path[600];
  snprintf(path, sizeof path, "%s/gen.dl", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(model, f);
  fclose(f);
  return dir;
}

static RtTensor read_npy(const char *dir, const char *name) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  RtTensor t;
  RtError err;
  cr_assert_eq(rt_npy_read(path, &t, &err), RT_OK, "%s: %s", name, err.msg);
  return t;
}

static void write_x(const char *dir, int64_t rows) {
  RtTensor t;
  RtError err;
  int64_t shape[2] = {rows, 4};
  char path[600];
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, 2, shape, &err), RT_OK);
  for (int64_t i = 0; i < rows * 4; i++) ((float *)t.data)[i] = (float)i;
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK);
  rt_tensor_free(&t);
}

Test(run_inputs, noise_inputs_are_drawn_from_the_seed) {
  const char *dir = setup();
  char *log;
  cr_assert_eq(dlc(dir, "run gen.dl --dim N=4000 --output b=b.npy --output c=c.npy", &log), 0, "%s", log);
  free(log);
  RtTensor b = read_npy(dir, "b.npy"), c = read_npy(dir, "c.npy");
  cr_assert(b.rank == 2 && b.shape[0] == 4000 && b.shape[1] == 3);
  cr_assert(c.rank == 2 && c.shape[0] == 4000 && c.shape[1] == 2);
  double s = 0, ss = 0, lo = 1, hi = 0, cs = 0;
  int64_t n = rt_tensor_numel(&b), m = rt_tensor_numel(&c);
  for (int64_t i = 0; i < n; i++) s += ((float *)b.data)[i], ss += (double)((float *)b.data)[i] * ((float *)b.data)[i];
  for (int64_t i = 0; i < m; i++) {
    double v = ((float *)c.data)[i];
    lo = v < lo ? v : lo, hi = v > hi ? v : hi, cs += v;
  }
  /* 2 z, z standard normal: mean 0 (sd of the mean 0.018), sd 2 */
  cr_expect(fabs(s / n) < 0.1, "mean of 2z %g", s / n);
  cr_expect(fabs(sqrt(ss / n - (s / n) * (s / n)) - 2) < 0.1, "sd of 2z %g", sqrt(ss / n));
  cr_expect(lo >= 0 && hi < 1 && fabs(cs / m - 0.5) < 0.03, "u: [%g, %g], mean %g", lo, hi, cs / m);
  /* the same seed draws the same numbers, another seed others */
  cr_assert_eq(dlc(dir, "run gen.dl --dim N=4000 --output b=b2.npy", &log), 0, "%s", log);
  free(log);
  cr_assert_eq(dlc(dir, "run gen.dl --dim N=4000 --output b=b3.npy --seed 7", &log), 0, "%s", log);
  free(log);
  RtTensor b2 = read_npy(dir, "b2.npy"), b3 = read_npy(dir, "b3.npy");
  cr_expect(memcmp(b.data, b2.data, rt_tensor_nbytes(&b)) == 0, "seed 0 drew other numbers the second time");
  cr_expect(memcmp(b.data, b3.data, rt_tensor_nbytes(&b)) != 0, "seed 7 drew the numbers of seed 0");
  rt_tensor_free(&b), rt_tensor_free(&b2), rt_tensor_free(&b3), rt_tensor_free(&c);
}

Test(run_inputs, only_the_outputs_asked_for_need_inputs) {
  const char *dir = setup();
  char *log;
  /* b needs z alone: x is not asked for, and given it is passed over with a note */
  write_x(dir, 6);
  cr_assert_eq(dlc(dir, "run gen.dl --dim N=2 --output b=b.npy --input x=x.npy", &log), 0, "%s", log);
  cr_expect(strstr(log, "note: input 'x' is not needed for the outputs asked for"), "%s", log);
  free(log);
  /* a needs x, and --dim N=3 takes its first 3 rows; z binds N through x */
  cr_assert_eq(dlc(dir, "run gen.dl --dim N=3 --output a=a.npy --input x=x.npy", &log), 0, "%s", log);
  free(log);
  RtTensor a = read_npy(dir, "a.npy");
  cr_assert(a.rank == 2 && a.shape[0] == 3 && a.shape[1] == 4, "a has %lld rows", (long long)a.shape[0]);
  for (int i = 0; i < 12; i++) cr_expect_eq(((float *)a.data)[i], 2.0f * (float)i);
  rt_tensor_free(&a);
  /* without --dim every row of x, and the noise takes N from x */
  cr_assert_eq(dlc(dir, "run gen.dl --input x=x.npy", &log), 0, "%s", log);
  cr_expect(strstr(log, "b: f32[6, 3]") && strstr(log, "a: f32[6, 4]"), "%s", log);
  free(log);
}

Test(run_inputs, missing_sizes_and_names_are_errors) {
  const char *dir = setup();
  char *log;
  cr_expect_eq(dlc(dir, "run gen.dl --output b=b.npy", &log), 1);
  cr_expect(strstr(log, "input 'z' is drawn from the seed, but no input binds its dimension N: give --dim N=K"), "%s",
            log);
  free(log);
  cr_expect_eq(dlc(dir, "run gen.dl --output a=a.npy --dim N=2", &log), 1);
  cr_expect(strstr(log, "no value for input 'x'"), "%s", log);
  free(log);
  cr_expect_eq(dlc(dir, "run gen.dl --output q=q.npy --dim N=2", &log), 1);
  cr_expect(strstr(log, "--output: error: the model has no output 'q'") || strstr(log, "the model has no output 'q'"),
            "%s", log);
  free(log);
  cr_expect_eq(dlc(dir, "run gen.dl --output b=b.npy --dim M=2", &log), 1);
  cr_expect(strstr(log, "the model has no dimension symbol 'M'"), "%s", log);
  free(log);
  cr_expect_eq(dlc(dir, "run gen.dl --output b=b.npy --dim N=0", &log), 1);
  cr_expect(strstr(log, "--dim"), "%s", log);
  free(log);
  cr_expect_eq(dlc(dir, "run gen.dl --output b=b.npy --dim N", &log), 2);
  cr_expect(strstr(log, "expected SYM=K"), "%s", log);
  free(log);
}

/* An IDX file of u8 images [3, 2, 2] feeds x: f32[N, 4] scaled to [0, 1]. */
Test(run_inputs, idx_images_feed_a_float_input) {
  const char *dir = setup();
  char path[600], *log;
  snprintf(path, sizeof path, "%s/img-idx3-ubyte", dir);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  static const unsigned char head[] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
  fwrite(head, 1, sizeof head, f);
  for (int i = 0; i < 12; i++) fputc(i * 20, f);
  fclose(f);
  cr_assert_eq(dlc(dir, "run gen.dl --input x=img-idx3-ubyte --output a=a.npy --dim N=2", &log), 0, "%s", log);
  free(log);
  RtTensor a = read_npy(dir, "a.npy");
  cr_assert(a.rank == 2 && a.shape[0] == 2 && a.shape[1] == 4);
  for (int i = 0; i < 8; i++) cr_expect_float_eq(((float *)a.data)[i], 2.0f * (float)(i * 20) / 255, 1e-6);
  rt_tensor_free(&a);
  /* [3, 2, 2] is not [N, 3]: the type check names both */
  snprintf(path, sizeof path, "%s/bad.dl", dir);
  f = fopen(path, "w");
  fputs("model bad\ninput x: f32[N, 3]\noutput y = x * 1\n", f);
  fclose(f);
  cr_expect_eq(dlc(dir, "run bad.dl --input x=img-idx3-ubyte", &log), 1);
  cr_expect(strstr(log, "x") && strstr(log, "error"), "%s", log);
  free(log);
}

/* samples/vae.dl as committed, on 64 random images: its first loss is
 * about 784 ln 2 (the decoder's logits start near 0, and KL near 0), the
 * loss falls over two epochs, `sample` decodes drawn noise into pixels in
 * (0, 1), and `pairs` puts each input beside its reconstruction. */
Test(run_inputs, vae_sample_trains_samples_and_reconstructs, .timeout = 240) {
  const char *dir = setup();
  RtTensor x;
  RtError err;
  int64_t shape[2] = {64, 784};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, shape, &err), RT_OK);
  RtRng r;
  rt_rng_seed(&r, 11);
  for (int64_t i = 0; i < 64 * 784; i++) ((float *)x.data)[i] = (float)rt_rng_uniform(&r) * (float)(i % 784 < 392);
  char path[600], args[1200], *log;
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK);
  snprintf(args, sizeof args, "train %s/samples/vae.dl --data npy:x=x.npy --epochs 2 --batch 16 --metrics m.csv "
           "--save vae.st", DLC_SOURCE_DIR);
  cr_assert_eq(dlc(dir, args, &log), 0, "%s", log);
  free(log);
  snprintf(path, sizeof path, "%s/m.csv", dir);
  char *csv = tu_read_file(path, NULL);
  cr_assert_not_null(csv);
  double first = NAN, e1 = NAN, e2 = NAN, v[4];
  for (const char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
    cr_assert_eq(sscanf(line + 1, "%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3]), 4);
    if (v[0] == 1 && v[1] == 1) first = v[3];
    if (v[1] == 0) *(v[0] == 1 ? &e1 : &e2) = v[3];
  }
  free(csv);
  const double ln2_784 = 784 * 0.69314718055994531;
  cr_expect(fabs(first - ln2_784) < 0.05 * ln2_784, "first loss %g, 784 ln 2 = %g", first, ln2_784);
  cr_expect(e2 < e1, "epoch losses %g then %g", e1, e2);
  snprintf(args, sizeof args, "run %s/samples/vae.dl --params vae.st --dim N=4 --output sample=s.npy", DLC_SOURCE_DIR);
  cr_assert_eq(dlc(dir, args, &log), 0, "%s", log);
  free(log);
  RtTensor s = read_npy(dir, "s.npy");
  cr_assert(s.rank == 2 && s.shape[0] == 4 && s.shape[1] == 784);
  for (int64_t i = 0; i < 4 * 784; i++) cr_assert(((float *)s.data)[i] > 0 && ((float *)s.data)[i] < 1);
  snprintf(args, sizeof args, "run %s/samples/vae.dl --params vae.st --dim N=3 --input x=x.npy --output pairs=p.npy",
           DLC_SOURCE_DIR);
  cr_assert_eq(dlc(dir, args, &log), 0, "%s", log);
  free(log);
  RtTensor p = read_npy(dir, "p.npy");
  cr_assert(p.rank == 4 && p.shape[0] == 3 && p.shape[1] == 1 && p.shape[2] == 28 && p.shape[3] == 56);
  for (int n = 0; n < 3; n++)
    for (int i = 0; i < 28; i++)
      for (int j = 0; j < 28; j++)
        cr_assert_eq(((float *)p.data)[(n * 28 + i) * 56 + j], ((float *)x.data)[n * 784 + i * 28 + j]);
  rt_tensor_free(&s), rt_tensor_free(&p), rt_tensor_free(&x);
}
