/*
 * images.c — the commands that write pictures:
 *
 *   dlc plot METRICS.csv -o curves.svg|png     training curves (plot.c)
 *   dlc grid IMAGES.npy -o grid.png [--cols N] [--range LO,HI|auto]
 *                                   [--scale K] [--pad P]
 *
 * Each parses its flags, reads its input and hands it to the drawing
 * code (driver/plot.c, runtime/png.c), which writes the file atomically.
 * Exit status 0 on success, 1 on bad input (a missing or malformed file,
 * nothing to plot, an unknown image format), 2 on a usage error.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "driver/driver.h"
#include "driver/numbers.h"
#include "driver/plot.h"

static const char *usage_plot =
    "usage: dlc plot METRICS.csv -o OUT.svg|OUT.png\n"
    "Draws the loss and accuracy curves of a training run from the CSV that\n"
    "dlc train --metrics writes: training and validation per epoch, with the\n"
    "per-batch values as a thinner, lighter line.  Columns named *loss* go to\n"
    "the loss panel, *acc* to the accuracy panel; a CSV without either plots\n"
    "its other numeric columns against epoch, step or the row number.\n"
    "  -o OUT                 the image: .svg (vector) or .png (1040 x 400 pixels\n"
    "                         with two panels)\n";

static const char *usage_grid =
    "usage: dlc grid IMAGES.npy -o OUT.png [--cols N] [--range LO,HI|auto]\n"
    "                           [--scale K] [--pad P]\n"
    "Writes a grid of grey images (f32[N, 1, H, W] or f32[N, H, W], as generated\n"
    "samples are saved) as one PNG, image 0 at the top left, row by row.\n"
    "f32[N, K] with K a square (a perceptron's 784 pixels) are square images.\n"
    "  -o OUT.png             the file to write (default: IMAGES.png)\n"
    "  --cols N               images per row (default 8, or N when fewer)\n"
    "  --range LO,HI          the values shown as black and white (default 0,1;\n"
    "                         -1,1 for a tanh output); values outside are clamped\n"
    "  --range auto           the smallest and largest value of all the images\n"
    "  --scale K              magnify each pixel K times (1..64, default 1)\n"
    "  --pad P                grey pixels between and around images (0..64, default 2)\n";

int dlc_cmd_plot(int argc, char **argv) {
  Diags d;
  diag_init(&d, stderr);
  const char *in = NULL, *out = NULL;
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return dlc_usage(usage_plot, 0);
    if ((v = dlc_flag(argc, argv, &i, "-o", &miss))) out = v;
    else if (miss || argv[i][0] == '-') return diag_plain(&d, argv[i], "unknown option or missing value"), 2;
    else if (in) return diag_plain(&d, argv[i], "only one metrics file"), 2;
    else in = argv[i];
  }
  if (!in || !out) return diag_plain(&d, "dlc plot", "%s", !in ? "no metrics file given" : "no output: -o OUT.svg|OUT.png"), 2;
  PlotTable t;
  RtError err;
  if (plot_read_csv(in, &t, &err)) return diag_plain(&d, "dlc plot", "%s", err.msg), 1;
  RtStatus st = plot_write(&t, out, &err);
  int of_input = st == RT_ERR_FORMAT && !strstr(err.msg, out); /* nothing to plot: the CSV's fault */
  if (st) diag_plain(&d, "dlc plot", "%s%s%s", of_input ? in : "", of_input ? ": " : "", err.msg);
  else printf("wrote %s (%lld rows)\n", out, (long long)t.nrows);
  plot_table_free(&t);
  return st ? 1 : 0;
}

/* "LO,HI" or "auto" into o. */
static int parse_range(const char *s, RtGridOpts *o, Diags *d) {
  if (!strcmp(s, "auto")) return o->autorange = 1, 0;
  const char *comma = strchr(s, ',');
  double lo, hi;
  char first[64];
  if (!comma || comma - s >= (long)sizeof first)
    return diag_plain(d, "--range", "expected LO,HI or auto, got '%s'", s), -1;
  snprintf(first, sizeof first, "%.*s", (int)(comma - s), s);
  if (dlc_parse_real("--range", first, -1e30, 1e30, &lo, d) || dlc_parse_real("--range", comma + 1, -1e30, 1e30, &hi, d))
    return -1;
  if (!(lo < hi)) return diag_plain(d, "--range", "the low end must be below the high end, got '%s'", s), -1;
  o->lo = (float)lo, o->hi = (float)hi, o->autorange = 0;
  return 0;
}

/* The flags of dlc grid; 1 for --help, -1 after a message. */
static int parse_grid(int argc, char **argv, const char **in, const char **out, RtGridOpts *o, Diags *d) {
  *o = (RtGridOpts){.cols = 8, .scale = 1, .pad = 2, .lo = 0, .hi = 1};
  int64_t v64;
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    if ((v = dlc_flag(argc, argv, &i, "-o", &miss))) *out = v;
    else if ((v = dlc_flag(argc, argv, &i, "--cols", &miss))) {
      if (dlc_parse_int("--cols", v, 1, RT_PNG_MAX_SIDE, &o->cols, d)) return -1;
    } else if ((v = dlc_flag(argc, argv, &i, "--scale", &miss))) {
      if (dlc_parse_int("--scale", v, 1, 64, &v64, d)) return -1;
      o->scale = (int)v64;
    } else if ((v = dlc_flag(argc, argv, &i, "--pad", &miss))) {
      if (dlc_parse_int("--pad", v, 0, 64, &v64, d)) return -1;
      o->pad = (int)v64;
    } else if ((v = dlc_flag(argc, argv, &i, "--range", &miss))) {
      if (parse_range(v, o, d)) return -1;
    } else if (miss || argv[i][0] == '-') return diag_plain(d, argv[i], "unknown option or missing value"), -1;
    else if (*in) return diag_plain(d, argv[i], "only one file of images"), -1;
    else *in = argv[i];
  }
  if (!*in) return diag_plain(d, "dlc grid", "no file of images given"), -1;
  return 0;
}

/* [N, K] with K = S * S (flattened square images) viewed as [N, S, S]. */
static void unflatten_square(RtTensor *t) {
  if (t->dtype != DT_F32 || t->rank != 2 || t->shape[1] < 4) return;
  int64_t s = (int64_t)sqrt((double)t->shape[1]);
  while (s * s > t->shape[1]) s--;
  while ((s + 1) * (s + 1) <= t->shape[1]) s++;
  if (s * s != t->shape[1]) return;
  t->rank = 3, t->shape[1] = s, t->shape[2] = s;
}

/* "dir/x.npy" -> "dir/x.png" (malloc'd). */
static char *png_beside(const char *path) {
  const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
  size_t n = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
  char *s = rt_xmalloc(n + 5);
  memcpy(s, path, n);
  memcpy(s + n, ".png", 5);
  return s;
}

int dlc_cmd_grid(int argc, char **argv) {
  Diags d;
  diag_init(&d, stderr);
  const char *in = NULL, *out = NULL;
  RtGridOpts o;
  int rc = parse_grid(argc, argv, &in, &out, &o, &d);
  if (rc) return rc > 0 ? dlc_usage(usage_grid, 0) : 2;
  char *def = out ? NULL : png_beside(in);
  RtTensor t;
  RtError err;
  RtStatus st = rt_npy_read(in, &t, &err);
  if (st) diag_plain(&d, "dlc grid", "%s", err.msg);
  else {
    unflatten_square(&t);
    st = rt_image_grid_png(out ? out : def, &t, &o, &err);
    if (st == RT_ERR_SHAPE) diag_plain(&d, "dlc grid", "%s: %s", in, err.msg); /* the images' fault */
    else if (st) diag_plain(&d, "dlc grid", "%s", err.msg);
    else printf("wrote %s (%lld images)\n", out ? out : def, (long long)t.shape[0]);
    rt_tensor_free(&t);
  }
  rt_xfree(def);
  return st ? 1 : 0;
}
