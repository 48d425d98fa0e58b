/*
 * canvas.h — a drawing surface with two backends: SVG text and an RGB
 * raster (driver/canvas.c).  Coordinates are pixels, y down.  The plot
 * (driver/plot.c) draws once through this interface and gets the same
 * picture as SVG or, through runtime/png.c, as PNG.
 */
#ifndef DLC_CANVAS_H
#define DLC_CANVAS_H

#include <stdint.h>
#include <stdio.h>

typedef struct Canvas {
  int w, h;
  uint8_t *px; /* raster: w * h * 3 bytes (RGB), else NULL */
  FILE *svg;   /* SVG: the document is printed here, else NULL */
  int failed;  /* a drawing call ran out of memory */
} Canvas;

/* Text anchors. */
enum { CANVAS_LEFT, CANVAS_CENTER, CANVAS_RIGHT };

/* A raster filled with white; -1 when out of memory. */
int canvas_raster(Canvas *c, int w, int h);
/* Starts an SVG document on f with a white background. */
void canvas_svg(Canvas *c, int w, int h, FILE *f);
/* Ends the SVG document; frees the raster. */
void canvas_end(Canvas *c);

/* A polyline through n points; name, when not NULL, labels it in the
 * SVG (data-series="name"), so a reader can find each series. */
void canvas_polyline(Canvas *c, const double *xs, const double *ys, int n, uint32_t rgb, double width,
                     const char *name);
void canvas_line(Canvas *c, double x0, double y0, double x1, double y1, uint32_t rgb, double width);
void canvas_disc(Canvas *c, double x, double y, double r, uint32_t rgb);
void canvas_rect(Canvas *c, double x, double y, double w, double h, uint32_t rgb);
/* Text of printable ASCII at size 1 or 2 (a 5x7 pixel font magnified
 * that many times in the raster; about the same size in SVG).  y is the
 * baseline; vertical text reads bottom to top with x as its baseline. */
void canvas_text(Canvas *c, double x, double y, const char *s, int anchor, int size, int vertical, uint32_t rgb);
/* The width in pixels of s at size. */
double canvas_text_width(const char *s, int size);

#endif
