/*
 * data.c — data set readers: IDX (the MNIST family) and CSV of numbers.
 *
 * IDX: a 4-byte magic 0x00 0x00 TYPE RANK, RANK big-endian u32 dimensions,
 * then the elements in C order, big-endian.  TYPE is 0x08 u8, 0x09 i8,
 * 0x0B i16, 0x0C i32, 0x0D f32 or 0x0E f64; u8 stays DT_U8, the signed
 * integers widen to DT_I32, the floats keep their width.  Files are read
 * through zlib's gzread, which passes plain files through unchanged, so
 * "x.idx" and "x.idx.gz" both work.  A gzip'd file's length is unknown in
 * advance, so the buffer grows as data arrives (starting at most 64 MiB)
 * instead of trusting the header's size: a header that lies gives
 * RT_ERR_TRUNCATED with the sizes, never a huge allocation or garbage.
 * Bytes after the last element are refused too.  Reads are in large
 * chunks with a large zlib buffer, so 47 MB of Fashion-MNIST images take
 * a fraction of a second.
 *
 * CSV: the whole file is read, then split into lines (LF or CRLF; blank
 * lines are skipped) and comma-separated fields.  Every field of a data row
 * must be a number that strtod consumes entirely (surrounding spaces
 * allowed), which also decides the header: the first row is a header
 * exactly when one of its fields is not a number.  Every row, the header
 * included, must have the same number of fields; errors name file:line.
 * strtod follows the C locale's decimal point, which is '.' unless the
 * program calls setlocale.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/rt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* --- IDX ------------------------------------------------------------------ */

#define IDX_FIRST_ALLOC ((size_t)64 << 20)
#define IDX_CHUNK ((unsigned)1 << 30)

typedef struct IdxType {
  unsigned code;
  size_t size;   /* bytes per element in the file */
  DType dtype;
} IdxType;

static const IdxType idx_types[] = {
  {0x08, 1, DT_U8}, {0x09, 1, DT_I32}, {0x0B, 2, DT_I32},
  {0x0C, 4, DT_I32}, {0x0D, 4, DT_F32}, {0x0E, 8, DT_F64},
};

typedef struct IdxReader {
  gzFile gz;
  const char *path;
  RtError *err;
  RtStatus failed;   /* set with the message when gz_read returns -1 */
  int cut;           /* the gzip stream ended early (zlib's Z_BUF_ERROR) */
} IdxReader;

/* Reads up to n bytes; returns the count, or -1 on a zlib error (with the
 * message in err and the status in rd->failed).  A gzip stream that just
 * stops is truncation, reported by the caller from the short count. */
static int64_t gz_read(IdxReader *rd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    size_t want = n - got < IDX_CHUNK ? n - got : IDX_CHUNK;
    int r = gzread(rd->gz, (char *)buf + got, (unsigned)want);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    int errnum;
    const char *msg = gzerror(rd->gz, &errnum);
    size_t plen = strlen(rd->path);
    /* zlib prefixes its message with the path; ours names it already. */
    if (strncmp(msg, rd->path, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0)
      msg += plen + 2;
    if (errnum == Z_OK || errnum == Z_BUF_ERROR) {
      rd->cut |= errnum == Z_BUF_ERROR;
      break;
    }
    rd->failed = rt_fail(rd->err, errnum == Z_ERRNO ? RT_ERR_IO : RT_ERR_FORMAT,
                         "%s: cannot decompress: %s", rd->path, msg);
    return -1;
  }
  return (int64_t)got;
}

static RtStatus idx_header(IdxReader *rd, const IdxType **type, int *rank,
                           int64_t *shape) {
  unsigned char m[4];
  int64_t got = gz_read(rd, m, 4);
  if (got < 0) return rd->failed;
  if (got < 4)
    return rt_fail(rd->err, RT_ERR_TRUNCATED, "%s: truncated: %lld bytes, less "
                   "than the 4-byte IDX magic", rd->path, (long long)got);
  *type = NULL;
  for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
    if (idx_types[i].code == m[2]) *type = &idx_types[i];
  if (m[0] || m[1] || !*type || m[3] < 1 || m[3] > RT_MAX_RANK)
    return rt_fail(rd->err, RT_ERR_FORMAT, "%s: not an IDX file (magic %02x %02x "
                   "%02x %02x; expected 00 00, a type 08/09/0b/0c/0d/0e and a rank "
                   "1..%d)", rd->path, m[0], m[1], m[2], m[3], RT_MAX_RANK);
  *rank = m[3];
  unsigned char d[4 * RT_MAX_RANK];
  got = gz_read(rd, d, (size_t)*rank * 4);
  if (got < 0) return rd->failed;
  if (got < *rank * 4)
    return rt_fail(rd->err, RT_ERR_TRUNCATED, "%s: truncated inside the IDX "
                   "dimensions (rank %d)", rd->path, *rank);
  for (int i = 0; i < *rank; i++)
    shape[i] = (int64_t)((uint32_t)d[4 * i] << 24 | (uint32_t)d[4 * i + 1] << 16 |
                         (uint32_t)d[4 * i + 2] << 8 | d[4 * i + 3]);
  return RT_OK;
}

/* Reads exactly n bytes into a buffer grown as data arrives; *out is
 * malloc'd on success. */
static RtStatus idx_body(IdxReader *rd, size_t n, const char *what, void **out) {
  size_t cap = n < IDX_FIRST_ALLOC ? n : IDX_FIRST_ALLOC, have = 0;
  char *buf = rt_malloc(cap ? cap : 1);
  while (buf) {
    int64_t got = gz_read(rd, buf + have, cap - have);
    if (got < 0) {
      free(buf);
      return rd->failed;
    }
    have += (size_t)got;
    if (have < cap || cap == n) break;
    size_t ncap = cap > n / 2 ? n : cap * 2;
    char *p = rt_realloc(buf, ncap);
    if (!p) break;
    buf = p;
    cap = ncap;
  }
  if (!buf || (have == cap && cap < n)) {
    free(buf);
    return rt_fail(rd->err, RT_ERR_NOMEM, "%s: out of memory reading %s", rd->path, what);
  }
  if (have < n) {
    free(buf);
    return rt_fail(rd->err, RT_ERR_TRUNCATED, "%s: truncated: header says %s (%zu "
                   "bytes of data) but only %zu bytes follow", rd->path, what, n, have);
  }
  *out = buf;
  return RT_OK;
}

static RtStatus idx_trailing(IdxReader *rd, const char *what) {
  char extra;
  int64_t got = gz_read(rd, &extra, 1);
  if (got < 0) return rd->failed;
  if (got > 0)
    return rt_fail(rd->err, RT_ERR_FORMAT, "%s: header says %s but more data "
                   "follows", rd->path, what);
  if (rd->cut)
    return rt_fail(rd->err, RT_ERR_TRUNCATED, "%s: truncated: the data is "
                   "complete but the gzip stream ends before its checksum",
                   rd->path);
  return RT_OK;
}

static uint64_t load_be(const unsigned char *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* Converts n big-endian file elements in raw to the tensor's dtype. */
static void idx_convert(const IdxType *ty, const unsigned char *raw, int64_t n,
                        void *dst) {
  for (int64_t i = 0; i < n; i++) {
    uint64_t v = load_be(raw + (size_t)i * ty->size, ty->size);
    switch (ty->code) {
    case 0x09: ((int32_t *)dst)[i] = (int8_t)v; break;
    case 0x0B: ((int32_t *)dst)[i] = (int16_t)v; break;
    case 0x0C: ((int32_t *)dst)[i] = (int32_t)(uint32_t)v; break;
    case 0x0D: { uint32_t u = (uint32_t)v; memcpy((float *)dst + i, &u, 4); break; }
    default: memcpy((double *)dst + i, &v, 8); break;
    }
  }
}

static RtStatus idx_read(IdxReader *rd, RtTensor *out) {
  const IdxType *ty = NULL;
  int rank = 0;
  int64_t shape[RT_MAX_RANK];
  RtStatus st = idx_header(rd, &ty, &rank, shape);
  if (st != RT_OK) return st;
  char what[200];
  rt_shape_str(what, sizeof what, ty->dtype, rank, shape);
  if (ty->code != 0x08)
    snprintf(what + strlen(what), sizeof what - strlen(what), " (from type 0x%02x)",
             ty->code);
  /* The output is at least as wide as the file's elements, so checking it
   * also bounds the raw size. */
  size_t out_bytes, n;
  if (!rt_shape_nbytes(ty->dtype, rank, shape, &out_bytes))
    return rt_fail(rd->err, RT_ERR_SHAPE, "%s: shape %s is too large", rd->path, what);
  n = out_bytes / rt_dtype_size(ty->dtype) * ty->size;
  void *raw = NULL;
  if ((st = idx_body(rd, n, what, &raw)) != RT_OK) return st;
  if ((st = idx_trailing(rd, what)) == RT_OK && ty->code == 0x08) {
    out->dtype = DT_U8;
    out->rank = rank;
    memcpy(out->shape, shape, sizeof(int64_t) * (size_t)rank);
    out->data = raw;
    return RT_OK;
  }
  if (st == RT_OK) st = rt_tensor_alloc(out, ty->dtype, rank, shape, rd->err);
  if (st == RT_OK) idx_convert(ty, raw, rt_tensor_numel(out), out->data);
  free(raw);
  return st;
}

RtStatus rt_idx_read(const char *path, RtTensor *out, RtError *err) {
  memset(out, 0, sizeof *out);
  errno = 0;
  IdxReader rd = {gzopen(path, "rb"), path, err, RT_OK, 0};
  if (!rd.gz)
    return rt_fail(err, RT_ERR_IO, "%s: cannot open: %s", path,
                   errno ? strerror(errno) : "out of memory");
  gzbuffer(rd.gz, 1u << 18);
  RtStatus st = idx_read(&rd, out);
  gzclose(rd.gz);
  return st;
}

/* --- CSV ------------------------------------------------------------------- */

typedef struct CsvReader {
  const char *path;
  RtError *err;
  int line;
  int cols;         /* fields per row, fixed by the first row */
  float *vals;
  size_t nvals, cap;
} CsvReader;

/* Parses one field [s, e) as a number; returns 1 on success. */
static int csv_number(const char *s, const char *e, double *out) {
  while (s < e && (*s == ' ' || *s == '\t')) s++;
  while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
  if (s == e || (size_t)(e - s) >= 64) return 0;
  char tmp[64];
  memcpy(tmp, s, (size_t)(e - s));
  tmp[e - s] = 0;
  char *end;
  *out = strtod(tmp, &end);
  return *end == 0;
}

static int csv_count_fields(const char *s, const char *e) {
  int n = 1;
  for (; s < e; s++) n += *s == ',';
  return n;
}

static RtStatus csv_push(CsvReader *cr, double v) {
  if (cr->nvals == cr->cap) {
    size_t ncap = cr->cap ? cr->cap * 2 : 1024;
    float *p = rt_realloc(cr->vals, ncap * sizeof *p);
    if (!p) return rt_fail(cr->err, RT_ERR_NOMEM, "%s: out of memory", cr->path);
    cr->vals = p;
    cr->cap = ncap;
  }
  cr->vals[cr->nvals++] = (float)v;
  return RT_OK;
}

/* Returns 1 when every field of the row is a number. */
static int csv_all_numbers(const char *s, const char *e) {
  while (1) {
    const char *comma = memchr(s, ',', (size_t)(e - s));
    const char *fe = comma ? comma : e;
    double v;
    if (!csv_number(s, fe, &v)) return 0;
    if (!comma) return 1;
    s = comma + 1;
  }
}

static RtStatus csv_row(CsvReader *cr, const char *s, const char *e) {
  int n = csv_count_fields(s, e);
  if (cr->cols == 0) {
    cr->cols = n;
    if (!csv_all_numbers(s, e)) return RT_OK;   /* the header row */
  } else if (n != cr->cols) {
    return rt_fail(cr->err, RT_ERR_FORMAT, "%s:%d: expected %d fields, found %d",
                   cr->path, cr->line, cr->cols, n);
  }
  for (int field = 1;; field++) {
    const char *comma = memchr(s, ',', (size_t)(e - s));
    const char *fe = comma ? comma : e;
    double v;
    if (!csv_number(s, fe, &v))
      return rt_fail(cr->err, RT_ERR_FORMAT, "%s:%d: field %d is not a number: "
                     "'%.*s'", cr->path, cr->line, field, (int)(fe - s < 40 ? fe - s : 40), s);
    RtStatus st = csv_push(cr, v);
    if (st != RT_OK || !comma) return st;
    s = comma + 1;
  }
}

static RtStatus csv_parse(CsvReader *cr, const char *text, size_t len) {
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    cr->line++;
    if (le > p && le[-1] == '\r') le--;
    if (le > p) {
      RtStatus st = csv_row(cr, p, le);
      if (st != RT_OK) return st;
    }
    p = nl ? nl + 1 : end;
  }
  if (cr->cols == 0)
    return rt_fail(cr->err, RT_ERR_FORMAT, "%s: no rows", cr->path);
  return RT_OK;
}

static char *slurp(const char *path, size_t *len, RtError *err, RtStatus *st) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    *st = rt_fail(err, RT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *buf = rt_malloc(cap);
  while (buf) {
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap) break;
    char *p = cap < SIZE_MAX / 2 ? rt_realloc(buf, cap * 2) : NULL;
    if (!p) { free(buf); buf = NULL; break; }
    buf = p;
    cap *= 2;
  }
  int bad = ferror(f);
  fclose(f);
  if (!buf || bad) {
    free(buf);
    *st = bad ? rt_fail(err, RT_ERR_IO, "%s: cannot read", path)
              : rt_fail(err, RT_ERR_NOMEM, "%s: out of memory", path);
    return NULL;
  }
  *len = n;
  return buf;
}

RtStatus rt_csv_read(const char *path, RtTensor *out, RtError *err) {
  memset(out, 0, sizeof *out);
  RtStatus st = RT_OK;
  size_t len;
  char *text = slurp(path, &len, err, &st);
  if (!text) return st;
  CsvReader cr = {path, err, 0, 0, NULL, 0, 0};
  st = csv_parse(&cr, text, len);
  free(text);
  if (st == RT_OK) {
    int64_t shape[2] = {(int64_t)(cr.nvals / (size_t)cr.cols), cr.cols};
    st = rt_tensor_alloc(out, DT_F32, 2, shape, err);
    if (st == RT_OK && cr.nvals) memcpy(out->data, cr.vals, cr.nvals * sizeof(float));
  }
  free(cr.vals);
  return st;
}
