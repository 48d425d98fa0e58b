/*
 * png.c — PNG files of 8-bit grayscale or RGB pixels, and grids of images.
 *
 * The encoder writes the smallest valid PNG (RFC 2083): the signature, an
 * IHDR chunk (8-bit depth, colour type 0 or 2, no interlace), one IDAT
 * chunk and IEND.  Every scanline is stored with filter type 0 (none) and
 * the whole image is compressed by zlib's compress2, which produces the
 * zlib stream PNG asks for; chunk CRCs are zlib's crc32 over type and
 * data.  Sides are limited to RT_PNG_MAX_SIDE so that the raw size
 * (height * (1 + width * channels)) always fits in a size_t and a uLong.
 *
 * A grid lays N single-channel images of H x W out in rows of `cols`
 * tiles, each magnified by an integer `scale`, separated and framed by
 * `pad` pixels of grey 128, and maps each value v to
 * round(255 * (v - lo) / (hi - lo)) clamped to 0..255; NaN maps to 0.
 * With autorange, lo and hi are the smallest and largest finite values of
 * the whole tensor (one mapping for every tile, so tiles compare).
 */
#include "runtime/rt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Writes one chunk (length, type, data, CRC) at p; returns its size. */
static size_t put_chunk(uint8_t *p, const char *type, const uint8_t *data, size_t n) {
  put_be32(p, (uint32_t)n);
  memcpy(p + 4, type, 4);
  if (n) memcpy(p + 8, data, n);
  uLong crc = crc32(0L, p + 4, (uInt)(n + 4));
  put_be32(p + 8 + n, (uint32_t)crc);
  return n + 12;
}

/* The scanlines with their filter bytes (type 0), malloc'd. */
static uint8_t *raw_scanlines(const uint8_t *pixels, int64_t w, int64_t h, int channels, size_t *len) {
  size_t row = (size_t)(w * channels);
  *len = (size_t)h * (row + 1);
  uint8_t *raw = rt_malloc(*len);
  if (!raw) return NULL;
  for (int64_t y = 0; y < h; y++) {
    raw[(size_t)y * (row + 1)] = 0;
    memcpy(raw + (size_t)y * (row + 1) + 1, pixels + (size_t)y * row, row);
  }
  return raw;
}

RtStatus rt_png_encode(const uint8_t *pixels, int64_t width, int64_t height, int channels, uint8_t **out,
                       size_t *len, RtError *err) {
  *out = NULL, *len = 0;
  if (width < 1 || height < 1 || width > RT_PNG_MAX_SIDE || height > RT_PNG_MAX_SIDE)
    return rt_fail(err, RT_ERR_SHAPE, "a PNG image of %lld x %lld pixels: each side must be 1..%d",
                   (long long)width, (long long)height, RT_PNG_MAX_SIDE);
  if (channels != 1 && channels != 3)
    return rt_fail(err, RT_ERR_SHAPE, "a PNG image of %d channels: expected 1 (grey) or 3 (RGB)", channels);
  size_t rawlen;
  uint8_t *raw = raw_scanlines(pixels, width, height, channels, &rawlen);
  uLong zcap = compressBound((uLong)rawlen);
  uint8_t *png = raw ? rt_malloc(8 + 25 + 12 + (size_t)zcap + 12) : NULL;
  if (!png) return free(raw), rt_fail(err, RT_ERR_NOMEM, "out of memory encoding a PNG image");
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t ihdr[13] = {0, 0, 0, 0, 0, 0, 0, 0, 8, channels == 1 ? 0 : 2, 0, 0, 0};
  put_be32(ihdr, (uint32_t)width), put_be32(ihdr + 4, (uint32_t)height);
  memcpy(png, sig, 8);
  size_t at = 8 + put_chunk(png + 8, "IHDR", ihdr, 13);
  uLongf zlen = zcap;
  int zst = compress2(png + at + 8, &zlen, raw, (uLong)rawlen, Z_DEFAULT_COMPRESSION);
  free(raw);
  if (zst != Z_OK) return free(png), rt_fail(err, RT_ERR_NOMEM, "zlib could not compress a PNG image (%d)", zst);
  /* the data went straight into place: the IDAT chunk is framed around it */
  put_be32(png + at, (uint32_t)zlen);
  memcpy(png + at + 4, "IDAT", 4);
  put_be32(png + at + 8 + zlen, (uint32_t)crc32(0L, png + at + 4, (uInt)(zlen + 4)));
  at += 12 + zlen;
  at += put_chunk(png + at, "IEND", NULL, 0);
  *out = png, *len = at;
  return RT_OK;
}

RtStatus rt_png_write(const char *path, const uint8_t *pixels, int64_t width, int64_t height, int channels,
                      RtError *err) {
  uint8_t *png;
  size_t len;
  RtStatus st = rt_png_encode(pixels, width, height, channels, &png, &len, err);
  if (st) return st;
  const void *chunks[1] = {png};
  st = rt_write_file_atomic(path, chunks, &len, 1, err);
  free(png);
  return st;
}

/* --- grids of images ---------------------------------------------------------- */

/* N, H, W of a [N, 1, H, W] or [N, H, W] f32 tensor, or an error. */
static RtStatus grid_dims(const RtTensor *t, int64_t *n, int64_t *h, int64_t *w, RtError *err) {
  char sb[128];
  int ok = t->dtype == DT_F32 && (t->rank == 3 || (t->rank == 4 && t->shape[1] == 1));
  if (!ok)
    return rt_fail(err, RT_ERR_SHAPE, "images of %s: expected f32[N, 1, H, W] or f32[N, H, W] (grey)",
                   rt_shape_str(sb, sizeof sb, t->dtype, t->rank, t->shape));
  *n = t->shape[0], *h = t->shape[t->rank - 2], *w = t->shape[t->rank - 1];
  if (*n < 1 || *h < 1 || *w < 1)
    return rt_fail(err, RT_ERR_SHAPE, "images of %s: no pixels to show",
                   rt_shape_str(sb, sizeof sb, t->dtype, t->rank, t->shape));
  return RT_OK;
}

static void value_range(const float *v, int64_t count, float *lo, float *hi) {
  float a = INFINITY, b = -INFINITY;
  for (int64_t i = 0; i < count; i++)
    if (isfinite(v[i])) a = fminf(a, v[i]), b = fmaxf(b, v[i]);
  if (a > b) a = 0, b = 1; /* nothing finite */
  if (a == b) b = a + 1;   /* a constant image shows as black */
  *lo = a, *hi = b;
}

static uint8_t grey_level(float v, float lo, float hi) {
  if (isnan(v)) return 0;
  double g = 255.0 * ((double)v - lo) / ((double)hi - lo);
  return (uint8_t)(g <= 0 ? 0 : g >= 255 ? 255 : lround(g));
}

/* Copies image k, magnified, into its tile of the grid. */
static void grid_tile(uint8_t *px, int64_t gw, const float *img, int64_t h, int64_t w, int64_t x0, int64_t y0,
                      const RtGridOpts *o, float lo, float hi) {
  for (int64_t y = 0; y < h * o->scale; y++)
    for (int64_t x = 0; x < w * o->scale; x++)
      px[(y0 + y) * gw + x0 + x] = grey_level(img[(y / o->scale) * w + x / o->scale], lo, hi);
}

RtStatus rt_image_grid(const RtTensor *images, const RtGridOpts *o, uint8_t **pixels, int64_t *width,
                       int64_t *height, RtError *err) {
  int64_t n = 0, h = 0, w = 0;
  *pixels = NULL, *width = *height = 0;
  RtStatus st = grid_dims(images, &n, &h, &w, err);
  if (st) return st;
  if (o->cols < 1 || o->scale < 1 || o->scale > 64 || o->pad < 0 || o->pad > 64)
    return rt_fail(err, RT_ERR_SHAPE, "grid of %lld columns, scale %d, padding %d: expected columns >= 1, "
                   "scale 1..64, padding 0..64", (long long)o->cols, o->scale, o->pad);
  if (!o->autorange && !(o->lo < o->hi))
    return rt_fail(err, RT_ERR_SHAPE, "grid value range %g..%g: the low end must be below the high end",
                   (double)o->lo, (double)o->hi);
  int64_t cols = o->cols < n ? o->cols : n, rows = (n + cols - 1) / cols;
  int64_t th = h * o->scale, tw = w * o->scale;
  if (th > RT_PNG_MAX_SIDE || tw > RT_PNG_MAX_SIDE || rows > RT_PNG_MAX_SIDE || cols > RT_PNG_MAX_SIDE ||
      rows * (th + o->pad) + o->pad > RT_PNG_MAX_SIDE || cols * (tw + o->pad) + o->pad > RT_PNG_MAX_SIDE)
    return rt_fail(err, RT_ERR_SHAPE, "a grid of %lld x %lld tiles of %lld x %lld pixels is larger than %d pixels "
                   "a side: use fewer images or a smaller scale", (long long)rows, (long long)cols,
                   (long long)th, (long long)tw, RT_PNG_MAX_SIDE);
  int64_t gw = cols * (tw + o->pad) + o->pad, gh = rows * (th + o->pad) + o->pad;
  uint8_t *px = rt_malloc((size_t)(gw * gh));
  if (!px) return rt_fail(err, RT_ERR_NOMEM, "out of memory for a grid of %lld x %lld pixels", (long long)gw,
                          (long long)gh);
  memset(px, 128, (size_t)(gw * gh));
  float lo = o->lo, hi = o->hi;
  if (o->autorange) value_range(images->data, n * h * w, &lo, &hi);
  for (int64_t k = 0; k < n; k++)
    grid_tile(px, gw, (const float *)images->data + k * h * w, h, w, o->pad + (k % cols) * (tw + o->pad),
              o->pad + (k / cols) * (th + o->pad), o, lo, hi);
  *pixels = px, *width = gw, *height = gh;
  return RT_OK;
}

RtStatus rt_image_grid_png(const char *path, const RtTensor *images, const RtGridOpts *o, RtError *err) {
  uint8_t *px;
  int64_t w, h;
  RtStatus st = rt_image_grid(images, o, &px, &w, &h, err);
  if (st) return st;
  st = rt_png_write(path, px, w, h, 1, err);
  free(px);
  return st;
}
