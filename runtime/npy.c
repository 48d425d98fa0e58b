/*
 * npy.c — NumPy .npy files.
 *
 * Layout: the magic "\x93NUMPY", a major and minor version byte, the header
 * length (u16 little-endian for version 1.0, u32 for 2.0 and 3.0), the
 * header — a Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a newline — and then the raw C-order data.
 *
 * The reader trusts nothing: it checks the header length against the file
 * size before reading it, parses the dict with a small strict parser (keys
 * and descr are quoted strings, fortran_order a bool, shape a tuple of
 * non-negative integers with an optional Python 2 'L' suffix; exactly the
 * three keys, as NumPy itself demands), computes dtype x shape with
 * overflow-safe arithmetic, and compares it with the bytes that actually
 * follow before allocating anything, so a lying header is an error and
 * never a huge allocation or a short read.  Fortran order, big-endian data,
 * object arrays and structured dtypes are refused with a message that says
 * how to convert the array.
 *
 * The writer always produces version 1.0 (any rank <= RT_MAX_RANK fits in
 * its 64 KiB header) padded so the data starts on a 64-byte boundary, as
 * NumPy does, and goes through rt_write_file_atomic.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/rt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6

/* --- header dict parser ------------------------------------------------- */

typedef struct NpyParser {
  const char *start, *p, *end;
  const char *path;
  RtError *err;
} NpyParser;

typedef struct NpyHeader {
  char descr[16];
  int fortran;
  int rank;
  int64_t shape[RT_MAX_RANK];
  int seen_descr, seen_fortran, seen_shape;
} NpyHeader;

static RtStatus bad_header(NpyParser *ps, const char *what) {
  return rt_fail(ps->err, RT_ERR_FORMAT, "%s: bad .npy header at byte %d of the dict: %s",
                 ps->path, (int)(ps->p - ps->start), what);
}

static void skip_space(NpyParser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n'))
    ps->p++;
}

static int accept(NpyParser *ps, char c) {
  skip_space(ps);
  if (ps->p < ps->end && *ps->p == c) {
    ps->p++;
    return 1;
  }
  return 0;
}

static int accept_word(NpyParser *ps, const char *w) {
  size_t n = strlen(w);
  skip_space(ps);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0) return 0;
  ps->p += n;
  return 1;
}

/* string := ('\'' chars '\'') | ('"' chars '"'), no escapes */
static RtStatus parse_string(NpyParser *ps, char *buf, size_t cap) {
  skip_space(ps);
  if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"'))
    return bad_header(ps, "expected a quoted string");
  char q = *ps->p++;
  size_t n = 0;
  while (ps->p < ps->end && *ps->p != q) {
    if (*ps->p == '\\') return bad_header(ps, "escapes are not supported here");
    if (n + 1 >= cap) return bad_header(ps, "string too long");
    buf[n++] = *ps->p++;
  }
  if (ps->p >= ps->end) return bad_header(ps, "unterminated string");
  ps->p++;
  buf[n] = 0;
  return RT_OK;
}

/* int := digits 'L'? */
static RtStatus parse_dim(NpyParser *ps, int64_t *out) {
  skip_space(ps);
  if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
    return bad_header(ps, "expected a non-negative integer dimension");
  int64_t v = 0;
  while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *ps->p - '0', &v))
      return bad_header(ps, "dimension too large");
    ps->p++;
  }
  if (ps->p < ps->end && *ps->p == 'L') ps->p++;
  *out = v;
  return RT_OK;
}

/* tuple := '(' (int (',' int)* ','?)? ')' */
static RtStatus parse_shape(NpyParser *ps, NpyHeader *h) {
  if (!accept(ps, '(')) return bad_header(ps, "shape must be a tuple");
  h->rank = 0;
  while (!accept(ps, ')')) {
    if (h->rank == RT_MAX_RANK)
      return rt_fail(ps->err, RT_ERR_SHAPE, "%s: rank above %d is not supported",
                     ps->path, RT_MAX_RANK);
    RtStatus st = parse_dim(ps, &h->shape[h->rank++]);
    if (st != RT_OK) return st;
    if (!accept(ps, ',')) {
      if (accept(ps, ')')) break;
      return bad_header(ps, "expected ',' or ')' in shape");
    }
  }
  return RT_OK;
}

static RtStatus parse_bool(NpyParser *ps, int *out) {
  if (accept_word(ps, "True")) *out = 1;
  else if (accept_word(ps, "False")) *out = 0;
  else return bad_header(ps, "fortran_order must be True or False");
  return RT_OK;
}

static RtStatus parse_descr(NpyParser *ps, NpyHeader *h) {
  skip_space(ps);
  if (ps->p < ps->end && *ps->p == '[')
    return rt_fail(ps->err, RT_ERR_DTYPE,
                   "%s: structured dtypes are not supported (expected a plain "
                   "numeric array)", ps->path);
  return parse_string(ps, h->descr, sizeof h->descr);
}

static RtStatus parse_entry(NpyParser *ps, NpyHeader *h) {
  char key[32];
  RtStatus st = parse_string(ps, key, sizeof key);
  if (st != RT_OK) return st;
  if (!accept(ps, ':')) return bad_header(ps, "expected ':' after a key");
  int *seen = strcmp(key, "descr") == 0           ? &h->seen_descr
              : strcmp(key, "fortran_order") == 0 ? &h->seen_fortran
              : strcmp(key, "shape") == 0         ? &h->seen_shape
                                                  : NULL;
  if (!seen)
    return rt_fail(ps->err, RT_ERR_FORMAT, "%s: bad .npy header: unexpected key '%s'",
                   ps->path, key);
  if (*seen)
    return rt_fail(ps->err, RT_ERR_FORMAT, "%s: bad .npy header: key '%s' repeated",
                   ps->path, key);
  *seen = 1;
  if (seen == &h->seen_descr) return parse_descr(ps, h);
  if (seen == &h->seen_fortran) return parse_bool(ps, &h->fortran);
  return parse_shape(ps, h);
}

/* dict := '{' (entry (',' entry)* ','?)? '}' ; entry := string ':' value */
static RtStatus parse_dict(NpyParser *ps, NpyHeader *h) {
  memset(h, 0, sizeof *h);
  if (!accept(ps, '{')) return bad_header(ps, "expected '{'");
  while (!accept(ps, '}')) {
    RtStatus st = parse_entry(ps, h);
    if (st != RT_OK) return st;
    if (!accept(ps, ',')) {
      if (accept(ps, '}')) break;
      return bad_header(ps, "expected ',' or '}'");
    }
  }
  skip_space(ps);
  if (ps->p != ps->end) return bad_header(ps, "unexpected text after the dict");
  if (!h->seen_descr || !h->seen_fortran || !h->seen_shape)
    return rt_fail(ps->err, RT_ERR_FORMAT,
                   "%s: bad .npy header: needs 'descr', 'fortran_order' and 'shape'",
                   ps->path);
  return RT_OK;
}

/* --- descr to dtype ----------------------------------------------------- */

static RtStatus descr_dtype(const char *path, const char *d, DType *dt, RtError *err) {
  static const struct { const char *code; DType dt; } codes[] = {
    {"f4", DT_F32}, {"f8", DT_F64}, {"i4", DT_I32}, {"i8", DT_I64},
    {"u1", DT_U8},  {"b1", DT_U8},
  };
  char order = d[0];
  if (strchr(d, 'O'))
    return rt_fail(err, RT_ERR_DTYPE, "%s: object arrays are not supported", path);
  if (order == '>' && d[1] && strcmp(d + 1, "u1") != 0 && strcmp(d + 1, "b1") != 0)
    return rt_fail(err, RT_ERR_DTYPE,
                   "%s: big-endian data ('%s') is not supported; save "
                   "a.astype(a.dtype.newbyteorder('<')) instead", path, d);
  if (order == '<' || order == '>' || order == '|' || order == '=')
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
      if (strcmp(d + 1, codes[i].code) == 0 &&
          (rt_dtype_size(codes[i].dt) == 1 || order != '|')) {
        *dt = codes[i].dt;
        return RT_OK;
      }
  return rt_fail(err, RT_ERR_DTYPE,
                 "%s: dtype '%s' is not supported (expected <f4, <f8, <i4, <i8, "
                 "|u1 or |b1)", path, d);
}

/* --- reading ------------------------------------------------------------ */

typedef struct NpyFile {
  FILE *f;
  const char *path;
  uint64_t size;      /* bytes in the file */
  uint64_t data_at;   /* offset of the first data byte */
} NpyFile;

static RtStatus read_prefix(NpyFile *nf, uint64_t *hlen, RtError *err) {
  unsigned char b[12];
  size_t got = fread(b, 1, sizeof b, nf->f);
  size_t cmp = got < NPY_MAGIC_LEN ? got : NPY_MAGIC_LEN;
  if (memcmp(b, NPY_MAGIC, cmp) != 0)
    return rt_fail(err, RT_ERR_FORMAT, "%s: not a .npy file (bad magic; expected "
                   "\\x93NUMPY)", nf->path);
  if (got < 10)
    return rt_fail(err, RT_ERR_TRUNCATED, "%s: truncated: only %zu bytes, less "
                   "than a .npy prefix", nf->path, got);
  int major = b[6], minor = b[7];
  if (major == 1) {
    *hlen = (uint64_t)b[8] | (uint64_t)b[9] << 8;
    nf->data_at = 10;
  } else if (major == 2 || major == 3) {
    if (got < 12)
      return rt_fail(err, RT_ERR_TRUNCATED, "%s: truncated: only %zu bytes, less "
                     "than a .npy %d.%d prefix", nf->path, got, major, minor);
    *hlen = (uint64_t)b[8] | (uint64_t)b[9] << 8 | (uint64_t)b[10] << 16 |
            (uint64_t)b[11] << 24;
    nf->data_at = 12;
  } else {
    return rt_fail(err, RT_ERR_FORMAT, "%s: unsupported .npy version %d.%d "
                   "(expected 1.0, 2.0 or 3.0)", nf->path, major, minor);
  }
  if (*hlen > nf->size - nf->data_at)
    return rt_fail(err, RT_ERR_TRUNCATED, "%s: truncated: header length is %llu "
                   "bytes but only %llu bytes follow", nf->path,
                   (unsigned long long)*hlen,
                   (unsigned long long)(nf->size - nf->data_at));
  return RT_OK;
}

static RtStatus read_header(NpyFile *nf, NpyHeader *h, RtError *err) {
  uint64_t hlen = 0;
  RtStatus st = read_prefix(nf, &hlen, err);
  if (st != RT_OK) return st;
  char *text = rt_malloc(hlen + 1);
  if (!text) return rt_fail(err, RT_ERR_NOMEM, "%s: out of memory", nf->path);
  if (fseek(nf->f, (long)nf->data_at, SEEK_SET) != 0 ||
      fread(text, 1, hlen, nf->f) != hlen) {
    free(text);
    return rt_fail(err, RT_ERR_IO, "%s: cannot read the header", nf->path);
  }
  NpyParser ps = {text, text, text + hlen, nf->path, err};
  st = parse_dict(&ps, h);
  free(text);
  nf->data_at += hlen;
  return st;
}

static RtStatus check_layout(NpyFile *nf, const NpyHeader *h, DType dt,
                             size_t *nbytes, RtError *err) {
  char sh[160];
  rt_shape_str(sh, sizeof sh, dt, h->rank, h->shape);
  if (h->fortran)
    return rt_fail(err, RT_ERR_FORMAT, "%s: Fortran-order arrays are not "
                   "supported; save np.ascontiguousarray(a) instead", nf->path);
  if (!rt_shape_nbytes(dt, h->rank, h->shape, nbytes))
    return rt_fail(err, RT_ERR_SHAPE, "%s: shape %s is too large", nf->path, sh);
  uint64_t left = nf->size - nf->data_at;
  if (left < *nbytes)
    return rt_fail(err, RT_ERR_TRUNCATED, "%s: truncated: header says %s (%zu "
                   "bytes of data) but only %llu bytes follow", nf->path, sh,
                   *nbytes, (unsigned long long)left);
  if (left > *nbytes)
    return rt_fail(err, RT_ERR_FORMAT, "%s: header says %s (%zu bytes of data) "
                   "but %llu bytes follow", nf->path, sh, *nbytes,
                   (unsigned long long)left);
  return RT_OK;
}

static RtStatus read_npy(NpyFile *nf, RtTensor *out, RtError *err) {
  NpyHeader h;
  RtStatus st = read_header(nf, &h, err);
  DType dt = DT_F32;
  if (st == RT_OK) st = descr_dtype(nf->path, h.descr, &dt, err);
  size_t nbytes = 0;
  if (st == RT_OK) st = check_layout(nf, &h, dt, &nbytes, err);
  if (st == RT_OK) st = rt_tensor_alloc(out, dt, h.rank, h.shape, err);
  if (st != RT_OK) return st;
  if (fread(out->data, 1, nbytes, nf->f) != nbytes) {
    rt_tensor_free(out);
    return rt_fail(err, RT_ERR_IO, "%s: read failed", nf->path);
  }
  return RT_OK;
}

RtStatus rt_npy_read(const char *path, RtTensor *out, RtError *err) {
  memset(out, 0, sizeof *out);
  NpyFile nf = {fopen(path, "rb"), path, 0, 0};
  if (!nf.f)
    return rt_fail(err, RT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat sb;
  RtStatus st = RT_OK;
  if (fstat(fileno(nf.f), &sb) != 0 || !S_ISREG(sb.st_mode))
    st = rt_fail(err, RT_ERR_IO, "%s: not a regular file", path);
  nf.size = (uint64_t)sb.st_size;
  if (st == RT_OK) st = read_npy(&nf, out, err);
  fclose(nf.f);
  return st;
}

/* --- writing ------------------------------------------------------------ */

static const char *npy_descr(DType dt) {
  switch (dt) {
  case DT_F32: return "<f4";
  case DT_F64: return "<f8";
  case DT_I32: return "<i4";
  case DT_I64: return "<i8";
  case DT_U8: return "|u1";
  case DT_COUNT: case DT_BOOL: break;
  }
  return NULL;
}

/* Builds prefix + header padded so that the data starts at a multiple of
 * 64 bytes; returns its length. */
static size_t build_header(char *buf, size_t cap, const RtTensor *t) {
  int n = snprintf(buf + 10, cap - 10, "{'descr': '%s', 'fortran_order': False, "
                   "'shape': (", npy_descr(t->dtype));
  for (int i = 0; i < t->rank; i++)
    n += snprintf(buf + 10 + n, cap - 10 - (size_t)n, "%s%lld", i ? ", " : "",
                  (long long)t->shape[i]);
  n += snprintf(buf + 10 + n, cap - 10 - (size_t)n, "%s), }",
                t->rank == 1 ? "," : "");
  size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64;
  memset(buf + 10 + n, ' ', total - 10 - (size_t)n - 1);
  buf[total - 1] = '\n';
  size_t hlen = total - 10;
  memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
  buf[6] = 1;
  buf[7] = 0;
  buf[8] = (char)(hlen & 0xff);
  buf[9] = (char)(hlen >> 8);
  return total;
}

/* The header, chunk list and lengths of one encoded .npy file. */
typedef struct NpyEncoded {
  char header[512];
  const void *chunks[2];
  size_t lens[2];
} NpyEncoded;

RtStatus rt_npy_encode(const char *path, const RtTensor *t, RtEncoded *e, RtError *err) {
  size_t nbytes;
  memset(e, 0, sizeof *e);
  if (!npy_descr(t->dtype) || !t->data ||
      !rt_shape_nbytes(t->dtype, t->rank, t->shape, &nbytes))
    return rt_fail(err, RT_ERR_SHAPE, "%s: cannot write an invalid tensor "
                   "(dtype %d, rank %d)", path, (int)t->dtype, t->rank);
  NpyEncoded *n = rt_malloc(sizeof *n);
  if (!n) return rt_fail(err, RT_ERR_NOMEM, "%s: out of memory", path);
  n->lens[0] = build_header(n->header, sizeof n->header, t);
  n->lens[1] = nbytes;
  n->chunks[0] = n->header;
  n->chunks[1] = t->data;
  e->owned[0] = n;
  e->out = (RtFileOut){path, n->chunks, n->lens, 2};
  return RT_OK;
}

RtStatus rt_npy_write(const char *path, const RtTensor *t, RtError *err) {
  RtEncoded e;
  RtStatus st = rt_npy_encode(path, t, &e, err);
  if (st == RT_OK) st = rt_write_encoded(&e, 1, err);
  rt_encoded_free(&e);
  return st;
}
