/*
 * test_plot.c — pictures: training curves (`dlc plot`, driver/plot.c),
 * the PNG encoder and image grids (runtime/png.c, `dlc grid`).
 *
 * SVGs are checked by structure: every curve is one <path> labelled with
 * its series, and its number of points is the number of finite values of
 * its column in the rows of its kind (epoch rows or batch rows).  PNGs
 * are decoded here independently of the encoder: signature, every
 * chunk's CRC, the IHDR size and type, then the IDAT stream inflated by
 * zlib must be exactly height * (1 + width * channels) bytes with a valid
 * filter byte on every row, and the pixels must show what was drawn.
 * Bad input (a missing file, no numbers, an unknown extension, a ragged
 * row, images of the wrong shape) fails with a message and no file.
 */
#include <criterion/criterion.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "driver/plot.h"
#include "tests/testutil.h"

/* --- a PNG reader for the checks ----------------------------------------------- */

typedef struct Png {
  uint32_t w, h;
  int depth, type, channels;
  uint8_t *raw; /* the inflated scanlines, filter bytes included */
  size_t rawlen;
} Png;

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static Png png_decode(const char *path) {
  size_t len;
  uint8_t *b = (uint8_t *)tu_read_file(path, &len);
  cr_assert_not_null(b, "%s not written", path);
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  cr_assert(len > 8 && !memcmp(b, sig, 8), "%s: no PNG signature", path);
  Png p = {0};
  uint8_t *z = NULL;
  size_t zlen = 0, at = 8;
  int ended = 0;
  while (at + 12 <= len && !ended) {
    uint32_t n = be32(b + at);
    cr_assert(at + 12 + n <= len, "chunk past the end");
    const uint8_t *type = b + at + 4, *data = b + at + 8;
    cr_assert_eq(be32(data + n), (uint32_t)crc32(0L, type, n + 4), "bad CRC of %.4s", type);
    if (!memcmp(type, "IHDR", 4)) {
      cr_assert_eq(n, 13u);
      p.w = be32(data), p.h = be32(data + 4), p.depth = data[8], p.type = data[9];
      cr_assert_eq(data[12], 0, "interlaced");
    } else if (!memcmp(type, "IDAT", 4)) {
      z = realloc(z, zlen + n);
      memcpy(z + zlen, data, n);
      zlen += n;
    } else if (!memcmp(type, "IEND", 4)) ended = 1;
    at += 12 + n;
  }
  cr_assert(ended && at == len, "no IEND at the end");
  cr_assert_eq(p.depth, 8);
  cr_assert(p.type == 0 || p.type == 2, "colour type %d", p.type);
  p.channels = p.type == 0 ? 1 : 3;
  size_t want = (size_t)p.h * (1 + (size_t)p.w * p.channels);
  uLongf out = want + 16;
  p.raw = malloc(out);
  cr_assert_eq(uncompress(p.raw, &out, z, zlen), Z_OK, "IDAT does not inflate");
  cr_assert_eq(out, want, "inflated %lu bytes, want %zu (%u x %u x %d)", out, want, p.w, p.h, p.channels);
  p.rawlen = out;
  for (uint32_t y = 0; y < p.h; y++) cr_assert_eq(p.raw[y * (1 + p.w * p.channels)], 0, "row %u: filter", y);
  free(z);
  free(b);
  return p;
}

/* Channel k of pixel (x, y) (the encoder uses filter 0: raw bytes). */
static uint8_t px(const Png *p, uint32_t x, uint32_t y, int k) {
  return p->raw[y * (1 + p->w * p->channels) + 1 + x * p->channels + k];
}

static int64_t count_rgb(const Png *p, uint32_t rgb) {
  int64_t n = 0;
  for (uint32_t y = 0; y < p->h; y++)
    for (uint32_t x = 0; x < p->w; x++)
      n += px(p, x, y, 0) == (rgb >> 16 & 0xff) && px(p, x, y, 1) == (rgb >> 8 & 0xff) && px(p, x, y, 2) == (rgb & 0xff);
  return n;
}

/* --- helpers ------------------------------------------------------------------------ */

static void write_text(const char *dir, const char *name, const char *text) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

/* A metrics CSV as dlc train writes it: 3 epochs of 4 batches, each
 * epoch followed by its row (batch 0); epoch 2 has no validation. */
static void write_metrics(const char *dir) {
  char text[8192] = "epoch,batch,step,train_loss,train_acc,val_loss,val_acc,lr,seconds\n";
  size_t at = strlen(text);
  for (int e = 1, step = 0; e <= 3; e++) {
    for (int b = 1; b <= 4; b++, step++)
      at += (size_t)snprintf(text + at, sizeof text - at, "%d,%d,%d,%g,%g,nan,nan,0.1,0.01\n", e, b, step + 1,
                             2.0 / (step + 1), 0.2 + 0.05 * step);
    at += (size_t)snprintf(text + at, sizeof text - at, "%d,0,%d,%g,%g,%s,%s,0.1,0.05\n", e, step, 2.0 / step,
                           0.2 + 0.05 * step, e == 2 ? "nan" : "0.9", e == 2 ? "nan" : "0.7");
  }
  write_text(dir, "m.csv", text);
}

static char *path_in(const char *dir, const char *name) {
  static char buf[4][600];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

/* Points of the SVG path labelled name ("M" then one "L" per point);
 * -1 when there is none. */
static int svg_points(const char *svg, const char *name) {
  char key[128];
  snprintf(key, sizeof key, "data-series=\"%s\" d=\"", name);
  const char *p = strstr(svg, key);
  if (!p) return -1;
  p += strlen(key);
  int n = 0;
  for (; *p && *p != '"'; p++) n += *p == 'M' || *p == 'L';
  return n;
}

static int count_str(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)); p++) n++;
  return n;
}

static int run(const char *dir, const char *args, char **out) {
  char cmd[2000];
  snprintf(cmd, sizeof cmd, "cd %s && %s %s > log.txt 2>&1", dir, DLC_EXE, args);
  int st = system(cmd);
  *out = tu_read_file(path_in(dir, "log.txt"), NULL);
  cr_assert_not_null(*out);
  cr_assert(WIFEXITED(st), "dlc %s died", args);
  return WEXITSTATUS(st);
}

static void expect_fail(const char *dir, const char *args, int status, const char *needle, const char *nofile) {
  char *out;
  int st = run(dir, args, &out);
  cr_expect_eq(st, status, "dlc %s: exit %d, wanted %d:\n%s", args, st, status, out);
  cr_expect(strstr(out, needle) != NULL, "dlc %s: no '%s' in:\n%s", args, needle, out);
  struct stat sb;
  if (nofile) cr_expect_neq(stat(path_in(dir, nofile), &sb), 0, "dlc %s left %s behind", args, nofile);
  free(out);
}

/* --- curves ------------------------------------------------------------------------ */

Test(plot, svg_has_one_path_per_curve_with_its_points) {
  const char *dir = tu_scratch_dir();
  write_metrics(dir);
  PlotTable t;
  RtError err;
  cr_assert_eq(plot_read_csv(path_in(dir, "m.csv"), &t, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(t.ncols, 9);
  cr_assert_eq(t.nrows, 15);
  cr_assert_eq(plot_write(&t, path_in(dir, "c.svg"), &err), RT_OK, "%s", err.msg);
  plot_table_free(&t);
  char *svg = tu_read_file(path_in(dir, "c.svg"), NULL);
  cr_assert_not_null(svg);
  cr_expect(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1040\" height=\"400\"") != NULL);
  cr_expect(strstr(svg, "</svg>\n") != NULL);
  cr_expect_eq(svg_points(svg, "train_loss"), 3, "one point per epoch row");
  cr_expect_eq(svg_points(svg, "train_loss (batches)"), 12, "one point per batch row");
  cr_expect_eq(svg_points(svg, "train_acc"), 3);
  cr_expect_eq(svg_points(svg, "train_acc (batches)"), 12);
  cr_expect_eq(svg_points(svg, "val_loss"), 2, "the NaN of epoch 2 is left out");
  cr_expect_eq(svg_points(svg, "val_acc"), 2);
  cr_expect_eq(svg_points(svg, "val_loss (batches)"), -1, "batch rows have no validation");
  cr_expect_eq(svg_points(svg, "lr"), -1, "only loss and accuracy columns are curves");
  cr_expect_eq(count_str(svg, "data-series="), 6);
  cr_expect_eq(count_str(svg, "<circle"), 3 + 3 + 2 + 2, "a marker on each epoch point");
  cr_expect(strstr(svg, ">loss</text>") && strstr(svg, ">accuracy</text>") && strstr(svg, ">epoch</text>"));
  cr_expect(strstr(svg, ">train_loss</text>") && strstr(svg, ">val_acc</text>"), "legend");
  free(svg);
}

/* The loss starts at 2 (step 1) and the axis must reach it; the epochs
 * 0..3 are ticks. */
Test(plot, svg_axes_cover_the_data) {
  const char *dir = tu_scratch_dir();
  write_metrics(dir);
  PlotTable t;
  RtError err;
  cr_assert_eq(plot_read_csv(path_in(dir, "m.csv"), &t, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(plot_write(&t, path_in(dir, "c.svg"), &err), RT_OK, "%s", err.msg);
  plot_table_free(&t);
  char *svg = tu_read_file(path_in(dir, "c.svg"), NULL);
  for (int e = 0; e <= 3; e++) {
    char tick[32];
    snprintf(tick, sizeof tick, "\">%d</text>", e);
    cr_expect(strstr(svg, tick) != NULL, "no x tick %d", e);
  }
  cr_expect(strstr(svg, "\">2.0</text>") != NULL, "no y tick at 2.0");
  free(svg);
}

Test(plot, png_decodes_to_the_drawn_picture) {
  const char *dir = tu_scratch_dir();
  write_metrics(dir);
  PlotTable t;
  RtError err;
  cr_assert_eq(plot_read_csv(path_in(dir, "m.csv"), &t, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(plot_write(&t, path_in(dir, "c.png"), &err), RT_OK, "%s", err.msg);
  plot_table_free(&t);
  Png p = png_decode(path_in(dir, "c.png"));
  cr_expect_eq(p.w, 1040u);
  cr_expect_eq(p.h, 400u);
  cr_expect_eq(p.type, 2, "RGB");
  cr_expect_eq(px(&p, 0, 0, 0), 255, "white background");
  cr_expect_gt(count_rgb(&p, 0x1f77b4), 50, "the training curves' blue");
  cr_expect_gt(count_rgb(&p, 0xff7f0e), 50, "the validation curves' orange");
  cr_expect_gt(count_rgb(&p, 0x222222), 1000, "axes and text");
  free(p.raw);
}

/* Without accuracy columns the picture has one panel; a CSV with no
 * epoch column plots against the row number. */
Test(plot, one_panel_and_other_columns) {
  const char *dir = tu_scratch_dir();
  write_text(dir, "l.csv", "epoch,loss\n1,0.5\n2,0.25\n3,nan\n4,0.1\n");
  write_text(dir, "g.csv", "time, temperature ,pressure\n0,20,1.0\n1,21,1.1\n2,23,\n");
  PlotTable t;
  RtError err;
  cr_assert_eq(plot_read_csv(path_in(dir, "l.csv"), &t, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(plot_write(&t, path_in(dir, "l.png"), &err), RT_OK, "%s", err.msg);
  cr_assert_eq(plot_write(&t, path_in(dir, "l.svg"), &err), RT_OK, "%s", err.msg);
  plot_table_free(&t);
  Png p = png_decode(path_in(dir, "l.png"));
  cr_expect_eq(p.w, 520u, "one panel");
  free(p.raw);
  char *svg = tu_read_file(path_in(dir, "l.svg"), NULL);
  cr_expect_eq(svg_points(svg, "loss"), 3);
  free(svg);
  cr_assert_eq(plot_read_csv(path_in(dir, "g.csv"), &t, &err), RT_OK, "%s", err.msg);
  cr_expect_str_eq(t.names[1], "temperature", "names are trimmed");
  cr_assert_eq(plot_write(&t, path_in(dir, "g.svg"), &err), RT_OK, "%s", err.msg);
  plot_table_free(&t);
  svg = tu_read_file(path_in(dir, "g.svg"), NULL);
  cr_expect_eq(svg_points(svg, "time"), 3);
  cr_expect_eq(svg_points(svg, "temperature"), 3);
  cr_expect_eq(svg_points(svg, "pressure"), 2);
  cr_expect(strstr(svg, ">row</text>") != NULL);
  free(svg);
}

Test(plot, cli_writes_both_formats) {
  const char *dir = tu_scratch_dir();
  write_metrics(dir);
  char *out;
  cr_expect_eq(run(dir, "plot m.csv -o c.svg", &out), 0, "%s", out);
  cr_expect(strstr(out, "wrote c.svg (15 rows)") != NULL, "%s", out);
  free(out);
  cr_expect_eq(run(dir, "plot m.csv -o c.PNG", &out), 0, "%s", out);
  free(out);
  Png p = png_decode(path_in(dir, "c.PNG"));
  cr_expect_eq(p.w, 1040u);
  free(p.raw);
}

Test(plot, cli_bad_input) {
  const char *dir = tu_scratch_dir();
  write_metrics(dir);
  write_text(dir, "words.csv", "name,colour\nshirt,red\ncoat,blue\n");
  write_text(dir, "ragged.csv", "epoch,loss\n1,0.5\n2,0.4,9\n");
  write_text(dir, "empty.csv", "");
  write_text(dir, "bin.csv", "\x01\x02\xff,\x80\n");
  write_text(dir, "only_x.csv", "epoch,batch,step\n1,0,10\n");
  expect_fail(dir, "plot nowhere.csv -o c.svg", 1, "nowhere.csv: No such file", "c.svg");
  expect_fail(dir, "plot words.csv -o c.svg", 1, "words.csv: nothing to plot", "c.svg");
  expect_fail(dir, "plot only_x.csv -o c.png", 1, "nothing to plot", "c.png");
  expect_fail(dir, "plot m.csv -o c.gif", 1, "c.gif: unknown image format '.gif'", "c.gif");
  expect_fail(dir, "plot m.csv -o curves", 1, "expected a .svg or .png", "curves");
  expect_fail(dir, "plot ragged.csv -o c.svg", 1, "ragged.csv:3: 3 fields, expected 2", "c.svg");
  expect_fail(dir, "plot empty.csv -o c.svg", 1, "empty.csv: empty file", "c.svg");
  expect_fail(dir, "plot bin.csv -o c.svg", 1, "not a CSV header", "c.svg");
  expect_fail(dir, "plot m.csv", 2, "no output", NULL);
  expect_fail(dir, "plot -o c.svg", 2, "no metrics file", NULL);
  expect_fail(dir, "plot m.csv -o nodir/c.svg", 1, "nodir", NULL);
}

/* --- PNG and grids --------------------------------------------------------------------- */

Test(png, encodes_grey_and_rgb_exactly) {
  const char *dir = tu_scratch_dir();
  uint8_t grey[3 * 5], rgb[2 * 4 * 3];
  for (int i = 0; i < 15; i++) grey[i] = (uint8_t)(i * 17);
  for (int i = 0; i < 24; i++) rgb[i] = (uint8_t)(255 - i * 10);
  RtError err;
  cr_assert_eq(rt_png_write(path_in(dir, "g.png"), grey, 5, 3, 1, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_png_write(path_in(dir, "c.png"), rgb, 4, 2, 3, &err), RT_OK, "%s", err.msg);
  Png g = png_decode(path_in(dir, "g.png")), c = png_decode(path_in(dir, "c.png"));
  cr_expect(g.w == 5 && g.h == 3 && g.type == 0);
  cr_expect(c.w == 4 && c.h == 2 && c.type == 2);
  for (int i = 0; i < 15; i++) cr_expect_eq(px(&g, i % 5, i / 5, 0), grey[i]);
  for (int i = 0; i < 24; i++) cr_expect_eq(px(&c, (i / 3) % 4, i / 12, i % 3), rgb[i]);
  free(g.raw), free(c.raw);
  cr_expect_eq(rt_png_write(path_in(dir, "x.png"), grey, 0, 3, 1, &err), RT_ERR_SHAPE);
  cr_expect_eq(rt_png_write(path_in(dir, "x.png"), grey, 5, 3, 2, &err), RT_ERR_SHAPE);
  cr_expect_eq(rt_png_write(path_in(dir, "x.png"), grey, RT_PNG_MAX_SIDE + 1, 1, 1, &err), RT_ERR_SHAPE);
}

static RtTensor images(int rank, int64_t n, int64_t h, int64_t w) {
  RtTensor t;
  RtError err;
  int64_t s4[4] = {n, 1, h, w}, s3[3] = {n, h, w};
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, rank, rank == 4 ? s4 : s3, &err), RT_OK);
  for (int64_t i = 0; i < n * h * w; i++) ((float *)t.data)[i] = (float)i / (float)(n * h * w - 1);
  return t;
}

/* 5 images of 3 x 4 in 2 columns: 3 rows of tiles, 2 pixels of grey 128
 * around each, the sixth place empty; values 0..1 map to 0..255. */
Test(png, grid_layout_and_values) {
  RtTensor t = images(4, 5, 3, 4);
  RtGridOpts o = {.cols = 2, .scale = 1, .pad = 2, .lo = 0, .hi = 1};
  uint8_t *g;
  int64_t w, h;
  RtError err;
  cr_assert_eq(rt_image_grid(&t, &o, &g, &w, &h, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(w, 2 * (4 + 2) + 2);
  cr_assert_eq(h, 3 * (3 + 2) + 2);
  const float *v = t.data;
  for (int k = 0; k < 5; k++)
    for (int y = 0; y < 3; y++)
      for (int x = 0; x < 4; x++) {
        int64_t gx = 2 + (k % 2) * 6 + x, gy = 2 + (k / 2) * 5 + y;
        cr_expect_eq(g[gy * w + gx], (uint8_t)lround(255.0 * v[k * 12 + y * 4 + x]), "image %d (%d, %d)", k, x, y);
      }
  cr_expect_eq(g[0], 128, "padding");
  cr_expect_eq(g[(2 + 2 * 5) * w + 2 + 6], 128, "the empty sixth place");
  free(g);
  /* magnified 2x, range -1..1 (0 is mid grey, 1 white), autorange */
  o = (RtGridOpts){.cols = 8, .scale = 2, .pad = 0, .lo = -1, .hi = 1};
  cr_assert_eq(rt_image_grid(&t, &o, &g, &w, &h, &err), RT_OK, "%s", err.msg);
  cr_expect(w == 5 * 8 && h == 6, "fewer images than columns: one row of 5");
  cr_expect_eq(g[0], 128, "value 0 in -1..1");
  cr_expect_eq(g[1], 128, "magnified");
  cr_expect_eq(g[w * 6 - 1], 255, "value 1 in -1..1");
  free(g);
  ((float *)t.data)[0] = -5, ((float *)t.data)[1] = NAN;
  o = (RtGridOpts){.cols = 5, .scale = 1, .pad = 0, .lo = 0, .hi = 1};
  cr_assert_eq(rt_image_grid(&t, &o, &g, &w, &h, &err), RT_OK, "%s", err.msg);
  cr_expect(g[0] == 0 && g[1] == 0, "clamped below, NaN black");
  free(g);
  o.autorange = 1;
  cr_assert_eq(rt_image_grid(&t, &o, &g, &w, &h, &err), RT_OK, "%s", err.msg);
  cr_expect(g[0] == 0 && g[2 * w + 4 * 4 + 3] == 255, "auto: -5 black, the last pixel (1) white");
  free(g);
  rt_tensor_free(&t);
}

Test(png, grid_refuses_bad_shapes) {
  RtTensor t;
  RtError err;
  uint8_t *g;
  int64_t w, h, rgb[4] = {2, 3, 4, 4};
  RtGridOpts o = {.cols = 2, .scale = 1, .pad = 2, .lo = 0, .hi = 1};
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, 4, rgb, &err), RT_OK);
  cr_expect_eq(rt_image_grid(&t, &o, &g, &w, &h, &err), RT_ERR_SHAPE);
  cr_expect(strstr(err.msg, "f32[2, 3, 4, 4]") && strstr(err.msg, "expected f32[N, 1, H, W]"), "%s", err.msg);
  cr_expect_null(g);
  rt_tensor_free(&t);
  t = images(3, 100, 28, 28);
  o.scale = 64;
  cr_expect_eq(rt_image_grid(&t, &o, &g, &w, &h, &err), RT_ERR_SHAPE, "a grid wider than a PNG may be");
  cr_expect(strstr(err.msg, "larger than") != NULL, "%s", err.msg);
  rt_tensor_free(&t);
}

Test(png, grid_cli) {
  const char *dir = tu_scratch_dir();
  RtTensor t = images(3, 10, 28, 28);
  RtError err;
  cr_assert_eq(rt_npy_write(path_in(dir, "x.npy"), &t, &err), RT_OK);
  rt_tensor_free(&t);
  int64_t s[2] = {4, 4};
  cr_assert_eq(rt_tensor_alloc(&t, DT_I64, 2, s, &err), RT_OK);
  cr_assert_eq(rt_npy_write(path_in(dir, "i.npy"), &t, &err), RT_OK);
  rt_tensor_free(&t);
  char *out;
  cr_expect_eq(run(dir, "grid x.npy -o g.png --cols 4 --scale 2", &out), 0, "%s", out);
  cr_expect(strstr(out, "wrote g.png (10 images)") != NULL, "%s", out);
  free(out);
  Png p = png_decode(path_in(dir, "g.png"));
  cr_expect(p.w == 4 * (56 + 2) + 2 && p.h == 3 * (56 + 2) + 2 && p.type == 0, "%u x %u", p.w, p.h);
  free(p.raw);
  cr_expect_eq(run(dir, "grid x.npy --range auto", &out), 0, "%s", out);
  cr_expect(strstr(out, "wrote x.png") != NULL, "the default name: %s", out);
  free(out);
  expect_fail(dir, "grid i.npy -o bad.png", 1, "i.npy: images of i64[4, 4]", "bad.png");
  expect_fail(dir, "grid nowhere.npy -o bad.png", 1, "nowhere.npy", "bad.png");
  expect_fail(dir, "grid x.npy -o bad.png --range 1,0", 2, "the low end must be below", "bad.png");
  expect_fail(dir, "grid x.npy -o bad.png --range one", 2, "--range", "bad.png");
  expect_fail(dir, "grid x.npy -o bad.png --cols 0", 2, "--cols", "bad.png");
  expect_fail(dir, "grid x.npy -o bad.png --scale 65", 2, "--scale", "bad.png");
  expect_fail(dir, "grid -o bad.png", 2, "no file of images", "bad.png");
}

/* f32[N, 784], a perceptron's output, is N square 28 x 28 images; a
 * length that is not a square is refused. */
Test(png, grid_of_flattened_square_images) {
  const char *dir = tu_scratch_dir();
  RtTensor t = images(3, 10, 28, 28);
  RtError err;
  t.rank = 2, t.shape[1] = 784;
  cr_assert_eq(rt_npy_write(path_in(dir, "flat.npy"), &t, &err), RT_OK);
  t.shape[1] = 780, t.shape[0] = 10 * 784 / 780;
  cr_assert_eq(rt_npy_write(path_in(dir, "odd.npy"), &t, &err), RT_OK);
  rt_tensor_free(&t);
  char *out;
  cr_expect_eq(run(dir, "grid flat.npy -o g.png --cols 4", &out), 0, "%s", out);
  free(out);
  Png p = png_decode(path_in(dir, "g.png"));
  cr_expect(p.w == 4 * (28 + 2) + 2 && p.h == 3 * (28 + 2) + 2, "%u x %u", p.w, p.h);
  free(p.raw);
  expect_fail(dir, "grid odd.npy -o bad.png", 1, "odd.npy: images of f32[10, 780]", "bad.png");
}
