/*
 * c_support.c — the fixed part of every emitted C file: the parameter
 * accessors, the error string and a safetensors reader.
 *
 * The reader streams the JSON header one character at a time with fgetc,
 * so it needs no buffer beyond the longest parameter name and no malloc:
 * it checks every parameter the model needs (dtype F32, the exact shape, data
 * offsets that match the size and lie inside the file) before it copies
 * any data, ignores tensors the model does not have (optimizer state in a
 * checkpoint read by inference code, say), loads optimizer state when the
 * file has it (a training checkpoint) and leaves it alone when not, and reports the first problem through NAME_error().
 * Data is read as little-endian floats, which is what safetensors stores
 * and what every host dlc targets is.
 *
 * The text below is C99 printed with '@' replaced by the model's prefix and
 * '$' by the prefix in upper case (for macros).
 */
#include <ctype.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cg.h"

static const char *const accessors =
    "static char err_msg[256];\n"
    "const char *@_error(void) { return err_msg; }\n\n"
    "const @_param_info *@_param(int i) {\n"
    "  return i >= 0 && i < $_NUM_TENSORS ? &params[i] : 0;\n"
    "}\n\n";

/* With --embed-params the weights are constants: nothing can set or load them. */
static const char *const embedded_accessors =
    "int @_set_param(int i, const float *values) {\n"
    "  (void)i;\n  (void)values;\n"
    "  snprintf(err_msg, sizeof err_msg, \"parameters are embedded constants\");\n"
    "  return -1;\n}\n\n"
    "int @_load(const char *path) {\n"
    "  snprintf(err_msg, sizeof err_msg, \"%s: parameters are embedded constants\", path);\n"
    "  return -1;\n}\n\n";

static const char *const loader_text =
    "int @_set_param(int i, const float *values) {\n"
    "  if (i < 0 || i >= $_NUM_TENSORS) return -1;\n"
    "@STALE"
    "  memcpy((float *)params[i].data, values, sizeof(float) * (size_t)params[i].numel);\n"
    "  return 0;\n}\n\n"
    "/* A JSON reader over the safetensors header, one character at a time. */\n"
    "typedef struct st_in { FILE *f; long left; int c; } st_in;\n\n"
    "static void st_next(st_in *r) {\n"
    "  if (r->left > 0) { r->left--; r->c = fgetc(r->f); } else { r->c = -1; }\n}\n\n"
    "static void st_ws(st_in *r) {\n"
    "  while (r->c == ' ' || r->c == '\\n' || r->c == '\\r' || r->c == '\\t') st_next(r);\n}\n\n"
    "static int st_expect(st_in *r, int ch) {\n"
    "  st_ws(r);\n  if (r->c != ch) return -1;\n  st_next(r);\n  return 0;\n}\n\n"
    "/* Reads a string into buf; returns 1 if it did not fit, -1 on bad JSON. */\n"
    "static int st_string(st_in *r, char *buf, int n) {\n"
    "  int len = 0;\n"
    "  if (st_expect(r, '\"')) return -1;\n"
    "  while (r->c != '\"') {\n"
    "    int ch = r->c;\n"
    "    if (ch < 0) return -1;\n"
    "    if (ch == '\\\\') {\n"
    "      st_next(r);\n"
    "      ch = r->c == 'n' ? '\\n' : r->c == 't' ? '\\t' : r->c;\n"
    "      if (r->c == 'u') { int k; for (k = 0; k < 4; k++) st_next(r); ch = '?'; }\n"
    "      if (r->c < 0) return -1;\n"
    "    }\n"
    "    if (len < n - 1) buf[len] = (char)ch;\n"
    "    len++;\n"
    "    st_next(r);\n"
    "  }\n"
    "  st_next(r);\n"
    "  buf[len < n ? len : n - 1] = 0;\n"
    "  return len < n ? 0 : 1;\n}\n\n"
    "static int st_int(st_in *r, long long *v) {\n"
    "  st_ws(r);\n"
    "  if (r->c < '0' || r->c > '9') return -1;\n"
    "  *v = 0;\n"
    "  while (r->c >= '0' && r->c <= '9') {\n"
    "    if (*v > 100000000000000LL) return -1;\n"
    "    *v = *v * 10 + (r->c - '0');\n"
    "    st_next(r);\n"
    "  }\n"
    "  return 0;\n}\n\n"
    "/* Skips any JSON value. */\n"
    "static int st_skip(st_in *r, int depth) {\n"
    "  char tmp[8];\n"
    "  st_ws(r);\n"
    "  if (depth > 32) return -1;\n"
    "  if (r->c == '\"') return st_string(r, tmp, sizeof tmp) < 0 ? -1 : 0;\n"
    "  if (r->c == '{' || r->c == '[') {\n"
    "    int close = r->c == '{' ? '}' : ']';\n"
    "    st_next(r);\n"
    "    st_ws(r);\n"
    "    if (r->c == close) { st_next(r); return 0; }\n"
    "    for (;;) {\n"
    "      if (close == '}' && (st_string(r, tmp, sizeof tmp) < 0 || st_expect(r, ':'))) return -1;\n"
    "      if (st_skip(r, depth + 1)) return -1;\n"
    "      st_ws(r);\n"
    "      if (r->c == ',') { st_next(r); continue; }\n"
    "      return st_expect(r, close);\n"
    "    }\n"
    "  }\n"
    "  if (r->c < 0 || r->c == ',' || r->c == '}' || r->c == ']') return -1;\n"
    "  while (r->c >= 0 && r->c != ',' && r->c != '}' && r->c != ']' && r->c != ' ' && r->c != '\\n') st_next(r);\n"
    "  return 0;\n}\n\n"
    "typedef struct st_entry { int found, dtype_ok, rank; long long shape[8], begin, end; } st_entry;\n\n"
    "/* Reads one tensor's {\"dtype\", \"shape\", \"data_offsets\"} object into e. */\n"
    "static int st_tensor(st_in *r, st_entry *e) {\n"
    "  char key[16], val[16];\n"
    "  long long v;\n"
    "  if (st_expect(r, '{')) return -1;\n"
    "  e->found = 1;\n"
    "  for (;;) {\n"
    "    if (st_string(r, key, sizeof key) < 0 || st_expect(r, ':')) return -1;\n"
    "    if (strcmp(key, \"dtype\") == 0) {\n"
    "      if (st_string(r, val, sizeof val) < 0) return -1;\n"
    "      e->dtype_ok = strcmp(val, \"F32\") == 0;\n"
    "    } else if (strcmp(key, \"shape\") == 0 || strcmp(key, \"data_offsets\") == 0) {\n"
    "      int is_shape = key[0] == 's', n = 0;\n"
    "      if (st_expect(r, '[')) return -1;\n"
    "      st_ws(r);\n"
    "      while (r->c != ']') {\n"
    "        if (st_int(r, &v) || n >= 8) return -1;\n"
    "        if (is_shape) e->shape[n] = v; else if (n == 0) e->begin = v; else e->end = v;\n"
    "        n++;\n"
    "        st_ws(r);\n"
    "        if (r->c == ',') st_next(r); else if (r->c != ']') return -1;\n"
    "      }\n"
    "      st_next(r);\n"
    "      if (is_shape) e->rank = n; else if (n != 2) return -1;\n"
    "    } else if (st_skip(r, 1)) {\n"
    "      return -1;\n"
    "    }\n"
    "    st_ws(r);\n"
    "    if (r->c == ',') { st_next(r); continue; }\n"
    "    return st_expect(r, '}');\n"
    "  }\n}\n\n"
    "static int st_fail(FILE *f, const char *path, const char *what, const char *name) {\n"
    "  snprintf(err_msg, sizeof err_msg, \"%s: %s%s%s%s\", path, what, name ? \" '\" : \"\", name ? name : \"\", name ? \"'\" : \"\");\n"
    "  if (f) fclose(f);\n"
    "  return -1;\n}\n\n"
    "static int st_check(const st_entry *e, const @_param_info *p, long long data_size) {\n"
    "  int k;\n"
    "  if (!e->dtype_ok || e->rank != p->rank) return -1;\n"
    "  for (k = 0; k < p->rank; k++) if (e->shape[k] != p->shape[k]) return -1;\n"
    "  return e->end - e->begin == p->numel * 4 && e->begin >= 0 && e->end <= data_size ? 0 : -1;\n}\n\n"
    "int @_load(const char *path) {\n"
    "  static st_entry entries[$_NUM_TENSORS + 1];\n"
    "  unsigned char hb[8];\n"
    "  unsigned long long hlen = 0;\n"
    "  long fsize;\n"
    "  int i;\n"
    "  st_in r;\n"
    "  FILE *f = fopen(path, \"rb\");\n"
    "  if (!f) return st_fail(NULL, path, \"cannot open the file\", NULL);\n"
    "  if (fread(hb, 1, 8, f) != 8) return st_fail(f, path, \"truncated: no safetensors header\", NULL);\n"
    "  for (i = 7; i >= 0; i--) hlen = hlen << 8 | hb[i];\n"
    "  if (fseek(f, 0, SEEK_END) || (fsize = ftell(f)) < 8 || hlen > (unsigned long long)fsize - 8)\n"
    "    return st_fail(f, path, \"truncated: header longer than the file\", NULL);\n"
    "  fseek(f, 8, SEEK_SET);\n"
    "  memset(entries, 0, sizeof entries);\n"
    "@STALE"
    "  r.f = f;\n  r.left = (long)hlen;\n  st_next(&r);\n"
    "  if (st_expect(&r, '{')) return st_fail(f, path, \"header is not a JSON object\", NULL);\n"
    "  st_ws(&r);\n"
    "  while (r.c != '}') {\n"
    "    char key[@MAXNAME];\n"
    "    int fit = st_string(&r, key, sizeof key), idx = -1;\n"
    "    if (fit < 0 || st_expect(&r, ':')) return st_fail(f, path, \"malformed header\", NULL);\n"
    "    for (i = 0; i < $_NUM_TENSORS && fit == 0; i++) if (strcmp(key, params[i].name) == 0) idx = i;\n"
    "    if (idx >= 0 ? st_tensor(&r, &entries[idx]) : st_skip(&r, 0)) return st_fail(f, path, \"malformed header\", NULL);\n"
    "    st_ws(&r);\n"
    "    if (r.c == ',') { st_next(&r); st_ws(&r); } else if (r.c != '}') return st_fail(f, path, \"malformed header\", NULL);\n"
    "  }\n"
    "  for (i = 0; i < $_NUM_TENSORS; i++) {\n"
    "    if (!entries[i].found && params[i].is_state) continue; /* state absent: keep it */\n"
    "    if (!entries[i].found) return st_fail(f, path, \"no tensor\", params[i].name);\n"
    "    if (st_check(&entries[i], &params[i], (long long)(fsize - 8 - (long)hlen)))\n"
    "      return st_fail(f, path, \"wrong dtype, shape or size (want F32 of the model's shape) for\", params[i].name);\n"
    "  }\n"
    "  for (i = 0; i < $_NUM_TENSORS; i++) {\n"
    "    if (!entries[i].found) continue;\n"
    "    if (fseek(f, (long)(8 + hlen + (unsigned long long)entries[i].begin), SEEK_SET) ||\n"
    "        fread((float *)params[i].data, sizeof(float), (size_t)params[i].numel, f) != (size_t)params[i].numel)\n"
    "      return st_fail(f, path, \"cannot read the data of\", params[i].name);\n"
    "  }\n"
    "  fclose(f);\n"
    "  return 0;\n}\n\n";

/* '@STALE' becomes the line that marks derived buffers stale, when the
 * program has any (kernel.h, kir_derived). */
static void print_with_prefix(FILE *f, const char *text, const char *pre, int maxname, int derived) {
  for (const char *t = text; *t; t++) {
    if (strncmp(t, "@STALE", 6) == 0)
      fputs(derived ? "  derived_stale = 1;\n" : "", f), t += 5;
    else if (*t == '$')
      for (const char *c = pre; *c; c++) fputc(toupper((unsigned char)*c), f);
    else if (*t != '@')
      fputc(*t, f);
    else if (strncmp(t, "@MAXNAME", 8) == 0)
      fprintf(f, "%d", maxname), t += 7;
    else
      fputs(pre, f);
  }
}

void cg_c_support(FILE *f, const Program *p, const char *pre, int embedded) {
  int maxname = 8;
  for (int b = 0; b < p->nbufs; b++)
    if ((p->bufs[b].kind == BUF_PARAM || p->bufs[b].kind == BUF_STATE) && (int)strlen(p->bufs[b].name) + 2 > maxname)
      maxname = (int)strlen(p->bufs[b].name) + 2;
  print_with_prefix(f, accessors, pre, maxname, p->prepare != NULL);
  print_with_prefix(f, embedded ? embedded_accessors : loader_text, pre, maxname, p->prepare != NULL);
}
