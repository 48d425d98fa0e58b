/*
 * st_loader_impl.c — the parameter accessors and the safetensors reader of
 * every compiled model, written once in C over a table (st_loader.h).
 *
 * Both backends use this one file.  The C emitter prints its text (which
 * the build embeds into dlc, scripts/embed_text.sh) into every emitted C
 * file, its functions static; scripts/gen_st_loader_ll.sh compiles it
 * with clang-19 to LLVM IR (codegen/st_loader.ll.inc, committed), which
 * emit_llvm.c links into every model module with internal linkage.  Small
 * per-model wrappers pass the table (CgParamInfo, the layout of the
 * emitted header's P_param_info) and static scratch storage.  The JSON
 * header is streamed with fgetc, so nothing is allocated; every tensor the
 * model needs is checked (F32, exact shape, offsets matching the size and
 * inside the file) before any data is copied; tensors the model does not
 * have are ignored; optimizer state absent from the file is left as it is.
 * Data is read as little-endian floats, which is what safetensors stores
 * and what every host dlc targets is.  C99, no malloc.
 */
#include <stdio.h>
#include <string.h>

#include "codegen/st_loader.h"

/* A JSON reader over the safetensors header, one character at a time. */
typedef struct StIn {
  FILE *f;
  long left;
  int c;
} StIn;

static void st_next(StIn *r) {
  if (r->left > 0) {
    r->left--;
    r->c = fgetc(r->f);
  } else {
    r->c = -1;
  }
}

static void st_ws(StIn *r) {
  while (r->c == ' ' || r->c == '\n' || r->c == '\r' || r->c == '\t') st_next(r);
}

static int st_expect(StIn *r, int ch) {
  st_ws(r);
  if (r->c != ch) return -1;
  st_next(r);
  return 0;
}

/* Reads a string into buf; returns 1 if it did not fit, -1 on bad JSON. */
static int st_string(StIn *r, char *buf, int n) {
  int len = 0;
  if (st_expect(r, '"')) return -1;
  while (r->c != '"') {
    int ch = r->c;
    if (ch < 0) return -1;
    if (ch == '\\') {
      st_next(r);
      ch = r->c == 'n' ? '\n' : r->c == 't' ? '\t' : r->c;
      if (r->c == 'u') {
        for (int k = 0; k < 4; k++) st_next(r);
        ch = '?';
      }
      if (r->c < 0) return -1;
    }
    if (len < n - 1) buf[len] = (char)ch;
    len++;
    st_next(r);
  }
  st_next(r);
  buf[len < n ? len : n - 1] = 0;
  return len < n ? 0 : 1;
}

static int st_int(StIn *r, long long *v) {
  st_ws(r);
  if (r->c < '0' || r->c > '9') return -1;
  *v = 0;
  while (r->c >= '0' && r->c <= '9') {
    if (*v > 100000000000000LL) return -1;
    *v = *v * 10 + (r->c - '0');
    st_next(r);
  }
  return 0;
}

/* Skips any JSON value. */
static int st_skip(StIn *r, int depth) {
  char tmp[8];
  st_ws(r);
  if (depth > 32) return -1;
  if (r->c == '"') return st_string(r, tmp, sizeof tmp) < 0 ? -1 : 0;
  if (r->c == '{' || r->c == '[') {
    int close = r->c == '{' ? '}' : ']';
    st_next(r);
    st_ws(r);
    if (r->c == close) {
      st_next(r);
      return 0;
    }
    for (;;) {
      if (close == '}' && (st_string(r, tmp, sizeof tmp) < 0 || st_expect(r, ':'))) return -1;
      if (st_skip(r, depth + 1)) return -1;
      st_ws(r);
      if (r->c == ',') {
        st_next(r);
        continue;
      }
      return st_expect(r, close);
    }
  }
  if (r->c < 0 || r->c == ',' || r->c == '}' || r->c == ']') return -1;
  while (r->c >= 0 && r->c != ',' && r->c != '}' && r->c != ']' && r->c != ' ' && r->c != '\n') st_next(r);
  return 0;
}

/* Reads the numbers of a "shape" or "data_offsets" array into e. */
static int st_numbers(StIn *r, CgStEntry *e, int is_shape) {
  long long v;
  int n = 0;
  if (st_expect(r, '[')) return -1;
  st_ws(r);
  while (r->c != ']') {
    if (st_int(r, &v) || n >= CG_ST_MAX_RANK) return -1;
    if (is_shape) e->shape[n] = v;
    else if (n == 0) e->begin = v;
    else e->end = v;
    n++;
    st_ws(r);
    if (r->c == ',') st_next(r);
    else if (r->c != ']') return -1;
  }
  st_next(r);
  if (is_shape) e->rank = n;
  else if (n != 2) return -1;
  return 0;
}

/* Reads one tensor's {"dtype", "shape", "data_offsets"} object into e. */
static int st_tensor(StIn *r, CgStEntry *e) {
  char key[16], val[16];
  if (st_expect(r, '{')) return -1;
  e->found = 1;
  for (;;) {
    if (st_string(r, key, sizeof key) < 0 || st_expect(r, ':')) return -1;
    if (strcmp(key, "dtype") == 0) {
      if (st_string(r, val, sizeof val) < 0) return -1;
      e->dtype_ok = strcmp(val, "F32") == 0;
    } else if (strcmp(key, "shape") == 0 || strcmp(key, "data_offsets") == 0) {
      if (st_numbers(r, e, key[0] == 's')) return -1;
    } else if (st_skip(r, 1)) {
      return -1;
    }
    st_ws(r);
    if (r->c == ',') {
      st_next(r);
      continue;
    }
    return st_expect(r, '}');
  }
}

static int st_fail(FILE *f, const char *path, const char *what, const char *name, char *err, int errlen) {
  snprintf(err, (size_t)errlen, "%s: %s%s%s%s", path, what, name ? " '" : "", name ? name : "", name ? "'" : "");
  if (f) fclose(f);
  return -1;
}

static int st_check(const CgStEntry *e, const CgParamInfo *p, long long data_size) {
  if (!e->dtype_ok || e->rank != p->rank) return -1;
  for (int k = 0; k < p->rank; k++)
    if (e->shape[k] != p->shape[k]) return -1;
  return e->end - e->begin == p->numel * 4 && e->begin >= 0 && e->end <= data_size ? 0 : -1;
}

/* Reads the header's entries for the table's tensors; 0 or -1 (f closed). */
static int st_header(StIn *r, const char *path, const CgParamInfo *table, int n, CgStEntry *entries, char *key,
                     int keylen, char *err, int errlen) {
  if (st_expect(r, '{')) return st_fail(r->f, path, "header is not a JSON object", NULL, err, errlen);
  st_ws(r);
  while (r->c != '}') {
    int fit = st_string(r, key, keylen), idx = -1;
    if (fit < 0 || st_expect(r, ':')) return st_fail(r->f, path, "malformed header", NULL, err, errlen);
    for (int i = 0; i < n && fit == 0; i++)
      if (strcmp(key, table[i].name) == 0) idx = i;
    if (idx >= 0 ? st_tensor(r, &entries[idx]) : st_skip(r, 0))
      return st_fail(r->f, path, "malformed header", NULL, err, errlen);
    st_ws(r);
    if (r->c == ',') {
      st_next(r);
      st_ws(r);
    } else if (r->c != '}') {
      return st_fail(r->f, path, "malformed header", NULL, err, errlen);
    }
  }
  return 0;
}

DLC_ST_FN const CgParamInfo *dlc_st_param_impl(const CgParamInfo *table, int n, int i) {
  return i >= 0 && i < n ? &table[i] : 0;
}

DLC_ST_FN int dlc_st_set_param_impl(const CgParamInfo *table, int n, int i, const float *values, int embedded, char *err,
                          int errlen) {
  if (embedded) {
    snprintf(err, (size_t)errlen, "parameters are embedded constants");
    return -1;
  }
  if (i < 0 || i >= n) return -1;
  memcpy((float *)table[i].data, values, sizeof(float) * (size_t)table[i].numel);
  return 0;
}

DLC_ST_FN int dlc_st_load_impl(const char *path, const CgParamInfo *table, int n, CgStEntry *entries, char *key, int keylen,
                     int embedded, char *err, int errlen) {
  unsigned char hb[8];
  unsigned long long hlen = 0;
  long fsize;
  StIn r;
  if (embedded) return st_fail(NULL, path, "parameters are embedded constants", NULL, err, errlen);
  FILE *f = fopen(path, "rb");
  if (!f) return st_fail(NULL, path, "cannot open the file", NULL, err, errlen);
  if (fread(hb, 1, 8, f) != 8) return st_fail(f, path, "truncated: no safetensors header", NULL, err, errlen);
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | hb[i];
  if (fseek(f, 0, SEEK_END) || (fsize = ftell(f)) < 8 || hlen > (unsigned long long)fsize - 8)
    return st_fail(f, path, "truncated: header longer than the file", NULL, err, errlen);
  fseek(f, 8, SEEK_SET);
  memset(entries, 0, sizeof *entries * (size_t)n);
  r.f = f;
  r.left = (long)hlen;
  st_next(&r);
  if (st_header(&r, path, table, n, entries, key, keylen, err, errlen)) return -1;
  for (int i = 0; i < n; i++) {
    if (!entries[i].found && table[i].is_state) continue; /* state absent: keep it */
    if (!entries[i].found) return st_fail(f, path, "no tensor", table[i].name, err, errlen);
    if (st_check(&entries[i], &table[i], (long long)(fsize - 8 - (long)hlen)))
      return st_fail(f, path, "wrong dtype, shape or size (want F32 of the model's shape) for", table[i].name, err,
                     errlen);
  }
  for (int i = 0; i < n; i++) {
    if (!entries[i].found) continue;
    if (fseek(f, (long)(8 + hlen + (unsigned long long)entries[i].begin), SEEK_SET) ||
        fread((float *)table[i].data, sizeof(float), (size_t)table[i].numel, f) != (size_t)table[i].numel)
      return st_fail(f, path, "cannot read the data of", table[i].name, err, errlen);
  }
  fclose(f);
  return 0;
}
