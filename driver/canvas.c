/*
 * canvas.c — lines, discs, rectangles and text, drawn as SVG elements or
 * into an RGB raster.
 *
 * The raster antialiases by coverage: a pixel's coverage by a line of
 * width w is clamp(w/2 + 1/2 - d, 0, 1), where d is the distance from
 * the pixel's centre to the segment, and the colour is blended over
 * what is there with that coverage (a disc of radius r likewise with
 * r + 1/2 - d).  Pixels where two segments of a polyline meet are blended
 * twice, which darkens a joint's fringe slightly and nothing else.
 * Text uses the 5x7 pixel font below (printable ASCII, a descender row
 * for g, j, p, q, y and _), each pixel a square of `size` x `size`; a
 * character advances 6 * size.  The SVG backend writes the same elements
 * with a monospace font of about the same size, so the layout computed
 * with canvas_text_width fits both.
 */
#include "driver/canvas.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

/* Glyphs of ' ' .. '~': 8 rows of 5 pixels, top row first; '#' is ink.
 * Row 7 is below the baseline. */
static const char font[95][41] = {
    "....." "....." "....." "....." "....." "....." "....." ".....", /*   */
    "..#.." "..#.." "..#.." "..#.." "..#.." "....." "..#.." ".....", /* ! */
    ".#.#." ".#.#." ".#.#." "....." "....." "....." "....." ".....", /* " */
    ".#.#." ".#.#." "#####" ".#.#." "#####" ".#.#." ".#.#." ".....", /* # */
    "..#.." ".####" "#.#.." ".###." "..#.#" "####." "..#.." ".....", /* $ */
    "##..." "##..#" "...#." "..#.." ".#..." "#..##" "...##" ".....", /* % */
    ".##.." "#..#." "#.#.." ".#..." "#.#.#" "#..#." ".##.#" ".....", /* & */
    "..#.." "..#.." ".#..." "....." "....." "....." "....." ".....", /* ' */
    "...#." "..#.." ".#..." ".#..." ".#..." "..#.." "...#." ".....", /* ( */
    ".#..." "..#.." "...#." "...#." "...#." "..#.." ".#..." ".....", /* ) */
    "....." "..#.." "#.#.#" ".###." "#.#.#" "..#.." "....." ".....", /* * */
    "....." "..#.." "..#.." "#####" "..#.." "..#.." "....." ".....", /* + */
    "....." "....." "....." "....." "....." ".##.." "..#.." ".#...", /* , */
    "....." "....." "....." "#####" "....." "....." "....." ".....", /* - */
    "....." "....." "....." "....." "....." ".##.." ".##.." ".....", /* . */
    "....." "....#" "...#." "..#.." ".#..." "#...." "....." ".....", /* / */
    ".###." "#...#" "#..##" "#.#.#" "##..#" "#...#" ".###." ".....", /* 0 */
    "..#.." ".##.." "..#.." "..#.." "..#.." "..#.." ".###." ".....", /* 1 */
    ".###." "#...#" "....#" "...#." "..#.." ".#..." "#####" ".....", /* 2 */
    "#####" "...#." "..#.." "...#." "....#" "#...#" ".###." ".....", /* 3 */
    "...#." "..##." ".#.#." "#..#." "#####" "...#." "...#." ".....", /* 4 */
    "#####" "#...." "####." "....#" "....#" "#...#" ".###." ".....", /* 5 */
    "..##." ".#..." "#...." "####." "#...#" "#...#" ".###." ".....", /* 6 */
    "#####" "....#" "...#." "..#.." ".#..." ".#..." ".#..." ".....", /* 7 */
    ".###." "#...#" "#...#" ".###." "#...#" "#...#" ".###." ".....", /* 8 */
    ".###." "#...#" "#...#" ".####" "....#" "...#." ".##.." ".....", /* 9 */
    "....." ".##.." ".##.." "....." ".##.." ".##.." "....." ".....", /* : */
    "....." ".##.." ".##.." "....." ".##.." "..#.." ".#..." ".....", /* ; */
    "...#." "..#.." ".#..." "#...." ".#..." "..#.." "...#." ".....", /* < */
    "....." "....." "#####" "....." "#####" "....." "....." ".....", /* = */
    ".#..." "..#.." "...#." "....#" "...#." "..#.." ".#..." ".....", /* > */
    ".###." "#...#" "....#" "...#." "..#.." "....." "..#.." ".....", /* ? */
    ".###." "#...#" "....#" ".##.#" "#.#.#" "#.#.#" ".###." ".....", /* @ */
    ".###." "#...#" "#...#" "#####" "#...#" "#...#" "#...#" ".....", /* A */
    "####." "#...#" "#...#" "####." "#...#" "#...#" "####." ".....", /* B */
    ".###." "#...#" "#...." "#...." "#...." "#...#" ".###." ".....", /* C */
    "###.." "#..#." "#...#" "#...#" "#...#" "#..#." "###.." ".....", /* D */
    "#####" "#...." "#...." "####." "#...." "#...." "#####" ".....", /* E */
    "#####" "#...." "#...." "####." "#...." "#...." "#...." ".....", /* F */
    ".###." "#...#" "#...." "#.###" "#...#" "#...#" ".####" ".....", /* G */
    "#...#" "#...#" "#...#" "#####" "#...#" "#...#" "#...#" ".....", /* H */
    ".###." "..#.." "..#.." "..#.." "..#.." "..#.." ".###." ".....", /* I */
    "..###" "...#." "...#." "...#." "...#." "#..#." ".##.." ".....", /* J */
    "#...#" "#..#." "#.#.." "##..." "#.#.." "#..#." "#...#" ".....", /* K */
    "#...." "#...." "#...." "#...." "#...." "#...." "#####" ".....", /* L */
    "#...#" "##.##" "#.#.#" "#.#.#" "#...#" "#...#" "#...#" ".....", /* M */
    "#...#" "#...#" "##..#" "#.#.#" "#..##" "#...#" "#...#" ".....", /* N */
    ".###." "#...#" "#...#" "#...#" "#...#" "#...#" ".###." ".....", /* O */
    "####." "#...#" "#...#" "####." "#...." "#...." "#...." ".....", /* P */
    ".###." "#...#" "#...#" "#...#" "#.#.#" "#..#." ".##.#" ".....", /* Q */
    "####." "#...#" "#...#" "####." "#.#.." "#..#." "#...#" ".....", /* R */
    ".####" "#...." "#...." ".###." "....#" "....#" "####." ".....", /* S */
    "#####" "..#.." "..#.." "..#.." "..#.." "..#.." "..#.." ".....", /* T */
    "#...#" "#...#" "#...#" "#...#" "#...#" "#...#" ".###." ".....", /* U */
    "#...#" "#...#" "#...#" "#...#" "#...#" ".#.#." "..#.." ".....", /* V */
    "#...#" "#...#" "#...#" "#.#.#" "#.#.#" "#.#.#" ".#.#." ".....", /* W */
    "#...#" "#...#" ".#.#." "..#.." ".#.#." "#...#" "#...#" ".....", /* X */
    "#...#" "#...#" ".#.#." "..#.." "..#.." "..#.." "..#.." ".....", /* Y */
    "#####" "....#" "...#." "..#.." ".#..." "#...." "#####" ".....", /* Z */
    ".###." ".#..." ".#..." ".#..." ".#..." ".#..." ".###." ".....", /* [ */
    "....." "#...." ".#..." "..#.." "...#." "....#" "....." ".....", /* \ */
    ".###." "...#." "...#." "...#." "...#." "...#." ".###." ".....", /* ] */
    "..#.." ".#.#." "#...#" "....." "....." "....." "....." ".....", /* ^ */
    "....." "....." "....." "....." "....." "....." "....." "#####", /* _ */
    ".#..." "..#.." "...#." "....." "....." "....." "....." ".....", /* ` */
    "....." "....." ".###." "....#" ".####" "#...#" ".####" ".....", /* a */
    "#...." "#...." "#.##." "##..#" "#...#" "#...#" "####." ".....", /* b */
    "....." "....." ".###." "#...." "#...." "#...#" ".###." ".....", /* c */
    "....#" "....#" ".##.#" "#..##" "#...#" "#...#" ".####" ".....", /* d */
    "....." "....." ".###." "#...#" "#####" "#...." ".###." ".....", /* e */
    "..##." ".#..#" ".#..." "###.." ".#..." ".#..." ".#..." ".....", /* f */
    "....." "....." ".####" "#...#" "#...#" ".####" "....#" ".###.", /* g */
    "#...." "#...." "#.##." "##..#" "#...#" "#...#" "#...#" ".....", /* h */
    "..#.." "....." ".##.." "..#.." "..#.." "..#.." ".###." ".....", /* i */
    "...#." "....." "..##." "...#." "...#." "...#." "#..#." ".##..", /* j */
    "#...." "#...." "#..#." "#.#.." "##..." "#.#.." "#..#." ".....", /* k */
    ".##.." "..#.." "..#.." "..#.." "..#.." "..#.." ".###." ".....", /* l */
    "....." "....." "##.#." "#.#.#" "#.#.#" "#.#.#" "#.#.#" ".....", /* m */
    "....." "....." "#.##." "##..#" "#...#" "#...#" "#...#" ".....", /* n */
    "....." "....." ".###." "#...#" "#...#" "#...#" ".###." ".....", /* o */
    "....." "....." "####." "#...#" "#...#" "####." "#...." "#....", /* p */
    "....." "....." ".####" "#...#" "#...#" ".####" "....#" "....#", /* q */
    "....." "....." "#.##." "##..#" "#...." "#...." "#...." ".....", /* r */
    "....." "....." ".####" "#...." ".###." "....#" "####." ".....", /* s */
    ".#..." ".#..." "###.." ".#..." ".#..." ".#..#" "..##." ".....", /* t */
    "....." "....." "#...#" "#...#" "#...#" "#..##" ".##.#" ".....", /* u */
    "....." "....." "#...#" "#...#" "#...#" ".#.#." "..#.." ".....", /* v */
    "....." "....." "#...#" "#...#" "#.#.#" "#.#.#" ".#.#." ".....", /* w */
    "....." "....." "#...#" ".#.#." "..#.." ".#.#." "#...#" ".....", /* x */
    "....." "....." "#...#" "#...#" "#...#" ".####" "....#" ".###.", /* y */
    "....." "....." "#####" "...#." "..#.." ".#..." "#####" ".....", /* z */
    "...#." "..#.." "..#.." ".#..." "..#.." "..#.." "...#." ".....", /* { */
    "..#.." "..#.." "..#.." "..#.." "..#.." "..#.." "..#.." ".....", /* | */
    ".#..." "..#.." "..#.." "...#." "..#.." "..#.." ".#..." ".....", /* } */
    "....." "....." ".#..." "#.#.#" "...#." "....." "....." ".....", /* ~ */
};

#define GLYPH_ADVANCE 6
#define GLYPH_ASCENT 7

/* --- raster ------------------------------------------------------------------- */

static void blend(Canvas *c, int x, int y, uint32_t rgb, double a) {
  if (x < 0 || y < 0 || x >= c->w || y >= c->h || a <= 0) return;
  if (a > 1) a = 1;
  uint8_t *p = c->px + ((size_t)y * (size_t)c->w + (size_t)x) * 3;
  for (int k = 0; k < 3; k++) {
    double src = (rgb >> (16 - 8 * k)) & 0xff;
    p[k] = (uint8_t)lround(p[k] + (src - p[k]) * a);
  }
}

static double seg_dist(double px, double py, double x0, double y0, double x1, double y1) {
  double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
  double t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  return hypot(px - (x0 + t * dx), py - (y0 + t * dy));
}

/* Pixels x in [lo, hi) that a shape spanning [a - r, b + r] can touch. */
static void span(double a, double b, double r, int limit, int *lo, int *hi) {
  double mn = fmin(a, b) - r - 1, mx = fmax(a, b) + r + 1;
  *lo = mn < 0 ? 0 : mn > limit ? limit : (int)mn;
  *hi = mx < 0 ? 0 : mx > limit ? limit : (int)mx;
}

static void raster_segment(Canvas *c, double x0, double y0, double x1, double y1, uint32_t rgb, double w) {
  int xa, xb, ya, yb;
  span(x0, x1, w / 2, c->w, &xa, &xb);
  span(y0, y1, w / 2, c->h, &ya, &yb);
  for (int y = ya; y < yb; y++)
    for (int x = xa; x < xb; x++) blend(c, x, y, rgb, w / 2 + 0.5 - seg_dist(x + 0.5, y + 0.5, x0, y0, x1, y1));
}

static void raster_text(Canvas *c, double x, double y, const char *s, int size, int vertical, uint32_t rgb) {
  for (int i = 0; s[i]; i++) {
    int ch = s[i] >= ' ' && s[i] <= '~' ? s[i] - ' ' : '?' - ' ';
    for (int r = 0; r < 8; r++)
      for (int k = 0; k < 5; k++) {
        if (font[ch][r * 5 + k] != '#') continue;
        double gx = (i * GLYPH_ADVANCE + k) * size, gy = (r - GLYPH_ASCENT) * size; /* from the baseline */
        int px = (int)lround(vertical ? x + gy : x + gx), py = (int)lround(vertical ? y - gx - size : y + gy);
        for (int u = 0; u < size; u++)
          for (int v = 0; v < size; v++) blend(c, px + u, py + v, rgb, 1);
      }
  }
}

/* --- SVG ------------------------------------------------------------------------ */

static void svg_color(FILE *f, const char *attr, uint32_t rgb) { fprintf(f, " %s=\"#%06x\"", attr, rgb & 0xffffff); }

static void svg_escaped(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '<') fputs("&lt;", f);
    else if (*s == '>') fputs("&gt;", f);
    else if (*s == '&') fputs("&amp;", f);
    else if (*s == '"') fputs("&quot;", f);
    else if (*s >= ' ' && *s <= '~') fputc(*s, f);
    else fputc('?', f);
  }
}

/* --- the interface ----------------------------------------------------------- */

int canvas_raster(Canvas *c, int w, int h) {
  memset(c, 0, sizeof *c);
  c->w = w, c->h = h;
  c->px = rt_malloc((size_t)w * (size_t)h * 3);
  if (!c->px) return -1;
  memset(c->px, 255, (size_t)w * (size_t)h * 3);
  return 0;
}

void canvas_svg(Canvas *c, int w, int h, FILE *f) {
  memset(c, 0, sizeof *c);
  c->w = w, c->h = h, c->svg = f;
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n"
             "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", w, h, w, h, w, h);
}

void canvas_end(Canvas *c) {
  if (c->svg) fputs("</svg>\n", c->svg);
  free(c->px);
  c->px = NULL;
}

void canvas_polyline(Canvas *c, const double *xs, const double *ys, int n, uint32_t rgb, double width,
                     const char *name) {
  if (n < 1) return;
  if (c->px) {
    for (int i = 1; i < n; i++) raster_segment(c, xs[i - 1], ys[i - 1], xs[i], ys[i], rgb, width);
    if (n == 1) raster_segment(c, xs[0], ys[0], xs[0], ys[0], rgb, width);
    return;
  }
  fputs("<path", c->svg);
  if (name) fputs(" data-series=\"", c->svg), svg_escaped(c->svg, name), fputc('"', c->svg);
  fputs(" d=\"", c->svg);
  for (int i = 0; i < n; i++) fprintf(c->svg, "%s%.2f %.2f", i ? " L" : "M", xs[i], ys[i]);
  fputc('"', c->svg);
  svg_color(c->svg, "stroke", rgb);
  fprintf(c->svg, " stroke-width=\"%.2f\" fill=\"none\" stroke-linejoin=\"round\" stroke-linecap=\"round\"/>\n",
          width);
}

void canvas_line(Canvas *c, double x0, double y0, double x1, double y1, uint32_t rgb, double width) {
  double xs[2] = {x0, x1}, ys[2] = {y0, y1};
  canvas_polyline(c, xs, ys, 2, rgb, width, NULL);
}

void canvas_disc(Canvas *c, double x, double y, double r, uint32_t rgb) {
  if (c->svg) {
    fprintf(c->svg, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\"", x, y, r);
    svg_color(c->svg, "fill", rgb);
    fputs("/>\n", c->svg);
    return;
  }
  int xa, xb, ya, yb;
  span(x, x, r, c->w, &xa, &xb);
  span(y, y, r, c->h, &ya, &yb);
  for (int py = ya; py < yb; py++)
    for (int px = xa; px < xb; px++) blend(c, px, py, rgb, r + 0.5 - hypot(px + 0.5 - x, py + 0.5 - y));
}

void canvas_rect(Canvas *c, double x, double y, double w, double h, uint32_t rgb) {
  if (c->svg) {
    fprintf(c->svg, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"", x, y, w, h);
    svg_color(c->svg, "fill", rgb);
    fputs("/>\n", c->svg);
    return;
  }
  for (int py = (int)lround(y); py < (int)lround(y + h); py++)
    for (int px = (int)lround(x); px < (int)lround(x + w); px++) blend(c, px, py, rgb, 1);
}

double canvas_text_width(const char *s, int size) {
  size_t n = strlen(s);
  return n ? (double)(n * GLYPH_ADVANCE - 1) * size : 0;
}

void canvas_text(Canvas *c, double x, double y, const char *s, int anchor, int size, int vertical, uint32_t rgb) {
  double shift = anchor == CANVAS_CENTER ? canvas_text_width(s, size) / 2
                 : anchor == CANVAS_RIGHT ? canvas_text_width(s, size) : 0;
  if (c->px) {
    raster_text(c, vertical ? x : x - shift, vertical ? y + shift : y, s, size, vertical, rgb);
    return;
  }
  static const char *anchors[] = {"start", "middle", "end"};
  fprintf(c->svg, "<text x=\"%.2f\" y=\"%.2f\" font-family=\"DejaVu Sans Mono, monospace\" font-size=\"%d\""
          " text-anchor=\"%s\"", x, y, 10 * size, anchors[anchor]);
  if (vertical) fprintf(c->svg, " transform=\"rotate(-90 %.2f %.2f)\"", x, y);
  svg_color(c->svg, "fill", rgb);
  fputc('>', c->svg);
  svg_escaped(c->svg, s);
  fputs("</text>\n", c->svg);
}
