/*
 * safetensors.c — the safetensors format, read and written.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON,
 * then the data buffer.  The JSON is one object mapping each tensor name to
 * {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, with
 * offsets relative to the start of the data buffer, plus an optional
 * "__metadata__" object of string to string.
 *
 * Reading parses the header with a small strict recursive-descent JSON
 * reader into a flat node array (the subset a header needs: objects,
 * arrays, strings with every JSON escape, integers; true/false/null,
 * fractions and exponents are refused), then applies the same checks as
 * the reference Rust implementation: tensors sorted by offset must tile the
 * data buffer exactly — the first begins at 0, each begins where the
 * previous ends, the last ends at the end of the file — and each holds
 * exactly dtype size x prod(shape) bytes, all computed with overflow-safe
 * arithmetic.  Only then is anything allocated, and the data is read in one
 * sequential pass.  The set comes back in data-offset order, which for
 * files written here is the order the tensors were added.
 *
 * Writing lays tensors out contiguously in insertion order, puts
 * "__metadata__" first when there is any, pads the header with spaces to a
 * multiple of 8 bytes (as the Rust writer does, so the data is aligned) and
 * goes through rt_write_file_atomic.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/rt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The reference implementation's limit; a bigger header is surely corrupt. */
#define ST_MAX_HEADER 100000000u
#define JSON_MAX_DEPTH 64

static const struct { const char *name; DType dt; } st_dtypes[] = {
  {"F32", DT_F32}, {"F64", DT_F64}, {"I32", DT_I32}, {"I64", DT_I64}, {"U8", DT_U8},
};

/* Returns 1 if s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
static int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + (size_t)len > n) return 0;
    uint32_t cp = len == 1 ? c : c & (0x7Fu >> len);
    for (int k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += (size_t)len;
  }
  return 1;
}

/* --- JSON reader ---------------------------------------------------------- */

typedef enum JKind { J_OBJECT, J_ARRAY, J_STRING, J_INT } JKind;

/* Children of an object or array are linked through first/next; an object
 * member's node carries its key. */
typedef struct JNode {
  JKind kind;
  int first, next;
  const char *key;
  const char *str;   /* decoded, NUL-terminated */
  int64_t ival;
} JNode;

typedef struct Json {
  const char *start, *p, *end;
  JNode *nodes;
  int n, cap;
  char *strbuf;      /* decoded strings; never longer than the raw header */
  size_t strused;
  int depth;
  const char *path;
  RtError *err;
} Json;

static RtStatus json_fail(Json *js, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static RtStatus json_fail(Json *js, const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return rt_fail(js->err, RT_ERR_FORMAT, "%s: bad safetensors header JSON at byte "
                 "%d: %s", js->path, (int)(js->p - js->start), what);
}

static void json_space(Json *js) {
  while (js->p < js->end &&
         (*js->p == ' ' || *js->p == '\t' || *js->p == '\n' || *js->p == '\r'))
    js->p++;
}

static int json_new(Json *js, JKind kind) {
  if (js->n == js->cap) {
    int ncap = js->cap ? js->cap * 2 : 64;
    JNode *p = rt_realloc(js->nodes, (size_t)ncap * sizeof *p);
    if (!p) return -1;
    js->nodes = p;
    js->cap = ncap;
  }
  JNode *nd = &js->nodes[js->n];
  memset(nd, 0, sizeof *nd);
  nd->kind = kind;
  nd->first = nd->next = -1;
  return js->n++;
}

static int hex4(const char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    v = v << 4 | (uint32_t)d;
  }
  *out = v;
  return 1;
}

static void put_utf8(char **o, uint32_t cp) {
  unsigned char *u = (unsigned char *)*o;
  int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  static const unsigned char lead[5] = {0, 0, 0xC0, 0xE0, 0xF0};
  for (int i = n - 1; i > 0; i--, cp >>= 6) u[i] = (unsigned char)(0x80 | (cp & 0x3F));
  u[0] = (unsigned char)(n == 1 ? cp : (lead[n] | cp));
  *o += n;
}

/* unicode-escape := 'u' hex4 | 'u' high-surrogate '\u' low-surrogate */
static RtStatus json_unicode(Json *js, char **o) {
  uint32_t cp, lo;
  if (js->end - js->p < 5 || !hex4(js->p + 1, &cp))
    return json_fail(js, "bad \\u escape");
  js->p += 5;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (js->end - js->p < 6 || js->p[0] != '\\' || js->p[1] != 'u' ||
        !hex4(js->p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
      return json_fail(js, "unpaired surrogate in \\u escape");
    js->p += 6;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
    return json_fail(js, "unpaired surrogate in \\u escape");
  }
  if (cp == 0) return json_fail(js, "\\u0000 is not allowed in a name");
  put_utf8(o, cp);
  return RT_OK;
}

static RtStatus json_escape(Json *js, char **o) {
  if (js->p >= js->end) return json_fail(js, "unterminated string");
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char *hit = strchr(from, *js->p);
  if (*js->p == 'u') return json_unicode(js, o);
  if (!hit || !*js->p) return json_fail(js, "bad escape '\\%c'", *js->p);
  *(*o)++ = to[hit - from];
  js->p++;
  return RT_OK;
}

/* string := '"' (unescaped-char | '\' escape)* '"' */
static RtStatus json_string(Json *js, const char **out) {
  char *o = js->strbuf + js->strused, *begin = o;
  js->p++;
  const char *raw = js->p;
  while (js->p < js->end && *js->p != '"') {
    unsigned char c = (unsigned char)*js->p;
    if (c < 0x20) return json_fail(js, "control character in a string");
    if (c != '\\') {
      *o++ = *js->p++;
      continue;
    }
    js->p++;
    RtStatus st = json_escape(js, &o);
    if (st != RT_OK) return st;
  }
  if (js->p >= js->end) return json_fail(js, "unterminated string");
  if (!utf8_valid((const unsigned char *)raw, (size_t)(js->p - raw)))
    return json_fail(js, "string is not valid UTF-8");
  js->p++;
  *o++ = 0;
  js->strused += (size_t)(o - begin);
  *out = begin;
  return RT_OK;
}

/* integer := '-'? ('0' | [1-9][0-9]*), with no fraction or exponent */
static RtStatus json_int(Json *js, int64_t *out) {
  int neg = *js->p == '-';
  if (neg) js->p++;
  if (js->p >= js->end || *js->p < '0' || *js->p > '9')
    return json_fail(js, "expected a value");
  if (*js->p == '0' && js->p + 1 < js->end && js->p[1] >= '0' && js->p[1] <= '9')
    return json_fail(js, "leading zero in a number");
  int64_t v = 0;
  while (js->p < js->end && *js->p >= '0' && *js->p <= '9') {
    int d = *js->p++ - '0';
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, neg ? -d : d, &v))
      return json_fail(js, "integer out of range");
  }
  if (js->p < js->end && (*js->p == '.' || *js->p == 'e' || *js->p == 'E'))
    return json_fail(js, "only integers are expected in a safetensors header");
  *out = v;
  return RT_OK;
}

static RtStatus json_value(Json *js, int *out);

/* members := (string ':' value (',' string ':' value)*)?  — after '{' */
static RtStatus json_members(Json *js, int obj) {
  int last = -1;
  json_space(js);
  if (js->p < js->end && *js->p == '}') {
    js->p++;
    return RT_OK;
  }
  for (;;) {
    json_space(js);
    const char *key;
    if (js->p >= js->end || *js->p != '"') return json_fail(js, "expected a key string");
    RtStatus st = json_string(js, &key);
    json_space(js);
    if (st == RT_OK && (js->p >= js->end || *js->p++ != ':'))
      st = json_fail(js, "expected ':' after a key");
    int child;
    if (st == RT_OK) st = json_value(js, &child);
    if (st != RT_OK) return st;
    js->nodes[child].key = key;
    if (last < 0) js->nodes[obj].first = child;
    else js->nodes[last].next = child;
    last = child;
    json_space(js);
    if (js->p < js->end && *js->p == ',') { js->p++; continue; }
    if (js->p < js->end && *js->p == '}') { js->p++; return RT_OK; }
    return json_fail(js, "expected ',' or '}'");
  }
}

/* elements := (value (',' value)*)?  — after '[' */
static RtStatus json_elements(Json *js, int arr) {
  int last = -1;
  json_space(js);
  if (js->p < js->end && *js->p == ']') {
    js->p++;
    return RT_OK;
  }
  for (;;) {
    int child;
    RtStatus st = json_value(js, &child);
    if (st != RT_OK) return st;
    if (last < 0) js->nodes[arr].first = child;
    else js->nodes[last].next = child;
    last = child;
    json_space(js);
    if (js->p < js->end && *js->p == ',') { js->p++; continue; }
    if (js->p < js->end && *js->p == ']') { js->p++; return RT_OK; }
    return json_fail(js, "expected ',' or ']'");
  }
}

static RtStatus json_nomem(Json *js) {
  return rt_fail(js->err, RT_ERR_NOMEM, "%s: out of memory parsing the header",
                 js->path);
}

/* value := object | array | string | integer */
static RtStatus json_value(Json *js, int *out) {
  json_space(js);
  if (js->p >= js->end) return json_fail(js, "unexpected end of header");
  char c = *js->p;
  JKind kind = c == '{' ? J_OBJECT : c == '[' ? J_ARRAY : c == '"' ? J_STRING : J_INT;
  if (kind == J_INT && c != '-' && (c < '0' || c > '9'))
    return json_fail(js, "unexpected '%c' (only objects, arrays, strings and "
                     "integers are expected)", c);
  int id = json_new(js, kind);
  if (id < 0) return json_nomem(js);
  *out = id;
  if (kind == J_STRING) return json_string(js, &js->nodes[id].str);
  if (kind == J_INT) return json_int(js, &js->nodes[id].ival);
  if (++js->depth > JSON_MAX_DEPTH) return json_fail(js, "nested too deeply");
  js->p++;
  RtStatus st = kind == J_OBJECT ? json_members(js, id) : json_elements(js, id);
  js->depth--;
  return st;
}

static RtStatus json_parse(Json *js, const char *text, size_t len) {
  js->start = js->p = text;
  js->end = text + len;
  js->strbuf = rt_malloc(len + 1);
  if (!js->strbuf) return json_nomem(js);
  int root;
  RtStatus st = json_value(js, &root);
  json_space(js);
  if (st == RT_OK && js->p != js->end) st = json_fail(js, "text after the header object");
  if (st == RT_OK && js->nodes[root].kind != J_OBJECT)
    st = json_fail(js, "the header must be a JSON object");
  return st;
}

static void json_free(Json *js) {
  free(js->nodes);
  free(js->strbuf);
}

/* --- header to tensor entries ------------------------------------------- */

typedef struct StEntry {
  const char *name;
  DType dtype;
  int rank;
  int64_t shape[RT_MAX_RANK];
  uint64_t begin, end;
} StEntry;

typedef struct StReader {
  const char *path;
  RtError *err;
  Json js;
  StEntry *entries;
  int count;
  uint64_t data_len;
} StReader;

static RtStatus entry_fail(StReader *rd, const char *name, const char *what) {
  return rt_fail(rd->err, RT_ERR_FORMAT, "%s: tensor '%s': %s", rd->path, name, what);
}

static RtStatus entry_dtype(StReader *rd, StEntry *e, const JNode *v) {
  if (v->kind != J_STRING) return entry_fail(rd, e->name, "\"dtype\" must be a string");
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (strcmp(v->str, st_dtypes[i].name) == 0) {
      e->dtype = st_dtypes[i].dt;
      return RT_OK;
    }
  return rt_fail(rd->err, RT_ERR_DTYPE, "%s: tensor '%s' has dtype %s, which dlc "
                 "does not handle (expected F32, F64, I32, I64 or U8)", rd->path,
                 e->name, v->str);
}

/* Reads an array of non-negative integers into out[0..max); returns count. */
static int int_array(StReader *rd, const JNode *v, int64_t *out, int max) {
  if (v->kind != J_ARRAY) return -1;
  int n = 0;
  for (int c = v->first; c >= 0; c = rd->js.nodes[c].next) {
    const JNode *x = &rd->js.nodes[c];
    if (x->kind != J_INT || x->ival < 0 || n == max) return -1;
    out[n++] = x->ival;
  }
  return n;
}

static RtStatus entry_field(StReader *rd, StEntry *e, const JNode *f, int *seen) {
  int bit = strcmp(f->key, "dtype") == 0 ? 1 : strcmp(f->key, "shape") == 0 ? 2
            : strcmp(f->key, "data_offsets") == 0 ? 4 : 0;
  if (!bit || (*seen & bit)) {
    char what[300];
    snprintf(what, sizeof what, "%s key \"%s\"", bit ? "repeated" : "unexpected", f->key);
    return entry_fail(rd, e->name, what);
  }
  *seen |= bit;
  if (bit == 1) return entry_dtype(rd, e, f);
  if (bit == 2) {
    e->rank = int_array(rd, f, e->shape, RT_MAX_RANK);
    if (e->rank < 0)
      return entry_fail(rd, e->name, "\"shape\" must be an array of at most 8 "
                        "non-negative integers");
    return RT_OK;
  }
  int64_t off[2];
  if (int_array(rd, f, off, 2) != 2 || off[0] > off[1])
    return entry_fail(rd, e->name, "\"data_offsets\" must be [begin, end] with "
                      "0 <= begin <= end");
  e->begin = (uint64_t)off[0];
  e->end = (uint64_t)off[1];
  return RT_OK;
}

static RtStatus entry_size(StReader *rd, const StEntry *e) {
  char sh[200];
  size_t need;
  rt_shape_str(sh, sizeof sh, e->dtype, e->rank, e->shape);
  if (e->end > rd->data_len)
    return rt_fail(rd->err, RT_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, "
                   "%llu] go past the end of the data (%llu bytes)", rd->path,
                   e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                   (unsigned long long)rd->data_len);
  if (!rt_shape_nbytes(e->dtype, e->rank, e->shape, &need))
    return rt_fail(rd->err, RT_ERR_FORMAT, "%s: tensor '%s': shape %s is too large",
                   rd->path, e->name, sh);
  if (need != e->end - e->begin)
    return rt_fail(rd->err, RT_ERR_FORMAT, "%s: tensor '%s': %s needs %zu bytes "
                   "but data_offsets [%llu, %llu] hold %llu", rd->path, e->name, sh,
                   need, (unsigned long long)e->begin, (unsigned long long)e->end,
                   (unsigned long long)(e->end - e->begin));
  return RT_OK;
}

static RtStatus parse_entry(StReader *rd, const JNode *obj, StEntry *e) {
  memset(e, 0, sizeof *e);
  e->name = obj->key;
  if (obj->kind != J_OBJECT) return entry_fail(rd, e->name, "expected an object");
  int seen = 0;
  for (int c = obj->first; c >= 0; c = rd->js.nodes[c].next) {
    RtStatus st = entry_field(rd, e, &rd->js.nodes[c], &seen);
    if (st != RT_OK) return st;
  }
  if (seen != 7)
    return entry_fail(rd, e->name, "needs \"dtype\", \"shape\" and \"data_offsets\"");
  return entry_size(rd, e);
}

static RtStatus parse_metadata(StReader *rd, const JNode *obj, RtTensorSet *out) {
  if (obj->kind != J_OBJECT)
    return rt_fail(rd->err, RT_ERR_FORMAT, "%s: \"__metadata__\" must be an object",
                   rd->path);
  for (int c = obj->first; c >= 0; c = rd->js.nodes[c].next) {
    const JNode *v = &rd->js.nodes[c];
    if (v->kind != J_STRING)
      return rt_fail(rd->err, RT_ERR_FORMAT, "%s: metadata \"%s\" must be a string",
                     rd->path, v->key);
    if (rt_set_get_meta(out, v->key))
      return rt_fail(rd->err, RT_ERR_FORMAT, "%s: metadata \"%s\" repeated",
                     rd->path, v->key);
    RtStatus st = rt_set_meta(out, v->key, v->str, rd->err);
    if (st != RT_OK) return st;
  }
  return RT_OK;
}

static int cmp_offset(const void *a, const void *b) {
  const StEntry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static RtStatus check_unique_names(StReader *rd) {
  const char **names = rt_malloc((size_t)(rd->count > 0 ? rd->count : 1) * sizeof *names);
  if (!names) return rt_fail(rd->err, RT_ERR_NOMEM, "%s: out of memory", rd->path);
  for (int i = 0; i < rd->count; i++) names[i] = rd->entries[i].name;
  qsort(names, (size_t)rd->count, sizeof *names, cmp_name);
  RtStatus st = RT_OK;
  for (int i = 1; i < rd->count && st == RT_OK; i++)
    if (strcmp(names[i - 1], names[i]) == 0)
      st = rt_fail(rd->err, RT_ERR_FORMAT, "%s: tensor '%s' appears twice",
                   rd->path, names[i]);
  free(names);
  return st;
}

/* Sorted by offset, the tensors must tile [0, data_len) exactly. */
static RtStatus check_tiling(StReader *rd) {
  qsort(rd->entries, (size_t)rd->count, sizeof *rd->entries, cmp_offset);
  uint64_t at = 0;
  for (int i = 0; i < rd->count; i++) {
    const StEntry *e = &rd->entries[i];
    if (e->begin < at)
      return rt_fail(rd->err, RT_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap "
                     "(data_offsets [%llu, %llu] and [%llu, %llu])", rd->path,
                     rd->entries[i - 1].name, e->name,
                     (unsigned long long)rd->entries[i - 1].begin,
                     (unsigned long long)at, (unsigned long long)e->begin,
                     (unsigned long long)e->end);
    if (e->begin > at)
      return rt_fail(rd->err, RT_ERR_FORMAT, "%s: tensor '%s' starts at %llu, "
                     "leaving a gap after byte %llu of the data", rd->path, e->name,
                     (unsigned long long)e->begin, (unsigned long long)at);
    at = e->end;
  }
  if (at != rd->data_len)
    return rt_fail(rd->err, RT_ERR_FORMAT, "%s: tensors cover %llu bytes but the "
                   "data is %llu bytes", rd->path, (unsigned long long)at,
                   (unsigned long long)rd->data_len);
  return check_unique_names(rd);
}

static RtStatus collect_entries(StReader *rd, RtTensorSet *out) {
  const JNode *root = &rd->js.nodes[0];
  int n = 0;
  for (int c = root->first; c >= 0; c = rd->js.nodes[c].next) n++;
  rd->entries = rt_malloc((size_t)(n ? n : 1) * sizeof *rd->entries);
  if (!rd->entries) return rt_fail(rd->err, RT_ERR_NOMEM, "%s: out of memory", rd->path);
  for (int c = root->first; c >= 0; c = rd->js.nodes[c].next) {
    const JNode *v = &rd->js.nodes[c];
    int is_meta = strcmp(v->key, "__metadata__") == 0;
    RtStatus st = is_meta ? parse_metadata(rd, v, out)
                          : parse_entry(rd, v, &rd->entries[rd->count++]);
    if (st != RT_OK) return st;
  }
  return check_tiling(rd);
}

/* --- reading the file ---------------------------------------------------- */

static RtStatus read_header(StReader *rd, FILE *f, uint64_t fsize, RtTensorSet *out) {
  unsigned char lenb[8];
  if (fsize < 8 || fread(lenb, 1, 8, f) != 8)
    return rt_fail(rd->err, RT_ERR_TRUNCATED, "%s: truncated: %llu bytes, less than "
                   "the 8-byte header length", rd->path, (unsigned long long)fsize);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | lenb[i];
  if (hlen > fsize - 8)
    return rt_fail(rd->err, RT_ERR_TRUNCATED, "%s: truncated: header length is %llu "
                   "bytes but only %llu bytes follow", rd->path,
                   (unsigned long long)hlen, (unsigned long long)(fsize - 8));
  if (hlen > ST_MAX_HEADER)
    return rt_fail(rd->err, RT_ERR_FORMAT, "%s: header length %llu is above the "
                   "format's limit of %u", rd->path, (unsigned long long)hlen,
                   ST_MAX_HEADER);
  rd->data_len = fsize - 8 - hlen;
  char *text = rt_malloc(hlen + 1);
  if (!text) return rt_fail(rd->err, RT_ERR_NOMEM, "%s: out of memory", rd->path);
  RtStatus st = RT_OK;
  if (fread(text, 1, hlen, f) != hlen)
    st = rt_fail(rd->err, RT_ERR_IO, "%s: cannot read the header", rd->path);
  rd->js.path = rd->path;
  rd->js.err = rd->err;
  if (st == RT_OK) st = json_parse(&rd->js, text, hlen);
  if (st == RT_OK) st = collect_entries(rd, out);
  free(text);
  return st;
}

static RtStatus read_tensors(StReader *rd, FILE *f, RtTensorSet *out) {
  for (int i = 0; i < rd->count; i++) {
    const StEntry *e = &rd->entries[i];
    RtTensor t;
    RtStatus st = rt_tensor_alloc(&t, e->dtype, e->rank, e->shape, rd->err);
    if (st != RT_OK) return st;
    size_t n = (size_t)(e->end - e->begin);
    if (fread(t.data, 1, n, f) != n) {
      rt_tensor_free(&t);
      return rt_fail(rd->err, RT_ERR_IO, "%s: cannot read tensor '%s'", rd->path,
                     e->name);
    }
    st = rt_set_add(out, e->name, &t, rd->err);
    if (st != RT_OK) {
      rt_tensor_free(&t);
      return st;
    }
  }
  return RT_OK;
}

RtStatus rt_safetensors_read(const char *path, RtTensorSet *out, RtError *err) {
  rt_set_init(out);
  FILE *f = fopen(path, "rb");
  if (!f) return rt_fail(err, RT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  StReader rd;
  memset(&rd, 0, sizeof rd);
  rd.path = path;
  rd.err = err;
  struct stat sb;
  RtStatus st = RT_OK;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
    st = rt_fail(err, RT_ERR_IO, "%s: not a regular file", path);
  if (st == RT_OK) st = read_header(&rd, f, (uint64_t)sb.st_size, out);
  if (st == RT_OK) st = read_tensors(&rd, f, out);
  json_free(&rd.js);
  free(rd.entries);
  fclose(f);
  if (st != RT_OK) rt_set_free(out);
  return st;
}

/* --- writing ------------------------------------------------------------- */

typedef struct StrBuf {
  char *s;
  size_t len, cap;
  int oom;
} StrBuf;

static void sb_add(StrBuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + n + 1) ncap *= 2;
    char *p = rt_realloc(b->s, ncap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->s = p;
    b->cap = ncap;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}

static void sb_puts(StrBuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_int(StrBuf *b, unsigned long long v) {
  char tmp[24];
  sb_add(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", v));
}

/* Writes s as a JSON string: quote, backslash and control characters are
 * escaped; other bytes (UTF-8, checked by the caller) go through as is. */
static void sb_json_string(StrBuf *b, const char *s) {
  sb_add(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      sb_add(b, esc, 2);
    } else if (c < 0x20) {
      sb_add(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
    } else {
      sb_add(b, s, 1);
    }
  }
  sb_add(b, "\"", 1);
}

static const char *st_dtype_name(DType dt) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (st_dtypes[i].dt == dt) return st_dtypes[i].name;
  return NULL;
}

static int name_ok(const char *s) {
  return utf8_valid((const unsigned char *)s, strlen(s));
}

static void header_metadata(StrBuf *b, const RtTensorSet *s) {
  sb_puts(b, "\"__metadata__\":{");
  for (int i = 0; i < s->nmeta; i++) {
    if (i) sb_puts(b, ",");
    sb_json_string(b, s->meta_keys[i]);
    sb_puts(b, ":");
    sb_json_string(b, s->meta_vals[i]);
  }
  sb_puts(b, "}");
}

static void header_tensor(StrBuf *b, const char *name, const RtTensor *t,
                          uint64_t begin, uint64_t end) {
  sb_json_string(b, name);
  sb_puts(b, ":{\"dtype\":\"");
  sb_puts(b, st_dtype_name(t->dtype));
  sb_puts(b, "\",\"shape\":[");
  for (int d = 0; d < t->rank; d++) {
    if (d) sb_puts(b, ",");
    sb_int(b, (unsigned long long)t->shape[d]);
  }
  sb_puts(b, "],\"data_offsets\":[");
  sb_int(b, begin);
  sb_puts(b, ",");
  sb_int(b, end);
  sb_puts(b, "]}");
}

static RtStatus check_writable(const char *path, const RtTensorSet *s, size_t *sizes,
                               RtError *err) {
  for (int i = 0; i < s->nmeta; i++)
    if (!name_ok(s->meta_keys[i]) || !name_ok(s->meta_vals[i]))
      return rt_fail(err, RT_ERR_FORMAT, "%s: metadata \"%s\" is not valid UTF-8",
                     path, s->meta_keys[i]);
  for (int i = 0; i < s->count; i++) {
    const RtNamedTensor *nt = &s->items[i];
    if (!name_ok(nt->name) || strcmp(nt->name, "__metadata__") == 0)
      return rt_fail(err, RT_ERR_FORMAT, "%s: cannot write a tensor named '%s'",
                     path, nt->name);
    if (!st_dtype_name(nt->t.dtype) || !nt->t.data ||
        !rt_shape_nbytes(nt->t.dtype, nt->t.rank, nt->t.shape, &sizes[i]))
      return rt_fail(err, RT_ERR_SHAPE, "%s: tensor '%s' is not a valid tensor",
                     path, nt->name);
  }
  return RT_OK;
}

/* Builds the header (length prefix included) into b. */
static RtStatus build_header(const char *path, const RtTensorSet *s,
                             const size_t *sizes, StrBuf *b, RtError *err) {
  sb_add(b, "\0\0\0\0\0\0\0\0{", 9);
  if (s->nmeta > 0) header_metadata(b, s);
  uint64_t at = 0;
  for (int i = 0; i < s->count; i++) {
    if (i || s->nmeta > 0) sb_puts(b, ",");
    uint64_t end;
    if (__builtin_add_overflow(at, (uint64_t)sizes[i], &end))
      return rt_fail(err, RT_ERR_SHAPE, "%s: tensors too large", path);
    header_tensor(b, s->items[i].name, &s->items[i].t, at, end);
    at = end;
  }
  sb_puts(b, "}");
  while (!b->oom && b->len % 8 != 0) sb_puts(b, " ");
  if (b->oom) return rt_fail(err, RT_ERR_NOMEM, "%s: out of memory", path);
  uint64_t hlen = b->len - 8;
  for (int i = 0; i < 8; i++) b->s[i] = (char)(hlen >> (8 * i) & 0xff);
  return RT_OK;
}

RtStatus rt_safetensors_encode(const char *path, const RtTensorSet *s, RtEncoded *e, RtError *err) {
  int n = s->count;
  memset(e, 0, sizeof *e);
  size_t *sizes = rt_malloc((size_t)(n + 1) * sizeof *sizes);
  const void **chunks = rt_malloc((size_t)(n + 1) * sizeof *chunks);
  size_t *lens = rt_malloc((size_t)(n + 1) * sizeof *lens);
  StrBuf b = {0};
  RtStatus st = RT_OK;
  if (!sizes || !chunks || !lens) st = rt_fail(err, RT_ERR_NOMEM, "%s: out of memory", path);
  if (st == RT_OK) st = check_writable(path, s, sizes, err);
  if (st == RT_OK) st = build_header(path, s, sizes, &b, err);
  if (st == RT_OK) {
    chunks[0] = b.s;
    lens[0] = b.len;
    for (int i = 0; i < n; i++) {
      chunks[i + 1] = s->items[i].t.data;
      lens[i + 1] = sizes[i];
    }
    e->out = (RtFileOut){path, chunks, lens, n + 1};
  }
  e->owned[0] = b.s;
  e->owned[1] = (void *)chunks;
  e->owned[2] = lens;
  free(sizes);
  if (st != RT_OK) rt_encoded_free(e);
  return st;
}

RtStatus rt_safetensors_write(const char *path, const RtTensorSet *s, RtError *err) {
  RtEncoded e;
  RtStatus st = rt_safetensors_encode(path, s, &e, err);
  if (st == RT_OK) st = rt_write_encoded(&e, 1, err);
  rt_encoded_free(&e);
  return st;
}
