/*
 * tensor.c — tensors in memory, named tensor sets and errors.
 *
 * Invariants: a tensor's shape always has 0 <= rank <= RT_MAX_RANK and
 * non-negative dimensions whose byte size fits in size_t (rt_shape_nbytes
 * checks the product with overflow-safe multiplication before anything is
 * allocated), and a live tensor's data is never NULL, even with zero
 * elements, so "data == NULL" means "empty / freed".  A tensor set owns the
 * names, the data and the metadata strings it holds.  (Atomic file writes
 * live in files.c.)
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "runtime/rt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the dlc runtime reads and writes little-endian files by memcpy: port the byte swaps"
#endif

/* --- errors and dtypes ------------------------------------------------- */

RtStatus rt_fail(RtError *err, RtStatus st, const char *fmt, ...) {
  if (!err) return st;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  /* Messages quote names and bytes from files; keep them one line. */
  for (char *c = err->msg; *c; c++)
    if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
  return st;
}

const char *rt_dtype_name(DType dt) {
  switch (dt) {
  case DT_F32: return "f32";
  case DT_F64: return "f64";
  case DT_I32: return "i32";
  case DT_I64: return "i64";
  case DT_U8: return "u8";
  case DT_BOOL: return "bool";
  case DT_COUNT: break;
  }
  return "?";
}

size_t rt_dtype_size(DType dt) {
  switch (dt) {
  case DT_F32: return 4;
  case DT_F64: return 8;
  case DT_I32: return 4;
  case DT_I64: return 8;
  case DT_U8: return 1;
  case DT_COUNT: case DT_BOOL: break; /* not a storage type */
  }
  return 0;
}

/* --- tensors ------------------------------------------------------------ */

int rt_shape_nbytes(DType dt, int rank, const int64_t *shape, size_t *nbytes) {
  size_t total = rt_dtype_size(dt);
  if (total == 0 || rank < 0 || rank > RT_MAX_RANK) return 0;
  for (int i = 0; i < rank; i++) {
    if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX) return 0;
    if (__builtin_mul_overflow(total, (size_t)shape[i], &total)) return 0;
  }
  if (total > (size_t)INT64_MAX) return 0;
  *nbytes = total;
  return 1;
}

int64_t rt_tensor_numel(const RtTensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

size_t rt_tensor_nbytes(const RtTensor *t) {
  return (size_t)rt_tensor_numel(t) * rt_dtype_size(t->dtype);
}

const char *rt_shape_str(char *buf, size_t len, DType dt, int rank,
                         const int64_t *shape) {
  if (len == 0) return buf;
  size_t at = (size_t)snprintf(buf, len, "%s[", rt_dtype_name(dt));
  for (int i = 0; i < rank && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? ", " : "",
                           (long long)shape[i]);
  if (at < len) snprintf(buf + at, len - at, "]");
  return buf;
}

RtStatus rt_tensor_alloc(RtTensor *t, DType dt, int rank, const int64_t *shape,
                         RtError *err) {
  memset(t, 0, sizeof *t);
  size_t nbytes;
  if (!rt_shape_nbytes(dt, rank, shape, &nbytes))
    return rt_fail(err, RT_ERR_SHAPE,
                   "cannot allocate a %s tensor of rank %d: negative "
                   "dimension, rank above %d, or too large", rt_dtype_name(dt),
                   rank, RT_MAX_RANK);
  /* One byte for empty tensors keeps "data != NULL" meaning "allocated". */
  void *data = rt_calloc(1, nbytes ? nbytes : 1);
  if (!data)
    return rt_fail(err, RT_ERR_NOMEM, "out of memory allocating %zu bytes",
                   nbytes);
  t->dtype = dt;
  t->rank = rank;
  for (int i = 0; i < rank; i++) t->shape[i] = shape[i];
  t->data = data;
  return RT_OK;
}

void rt_tensor_free(RtTensor *t) {
  if (!t) return;
  free(t->data);
  memset(t, 0, sizeof *t);
}

static double load_as_double(const void *data, DType dt, int64_t i) {
  switch (dt) {
  case DT_F32: return ((const float *)data)[i];
  case DT_F64: return ((const double *)data)[i];
  case DT_I32: return ((const int32_t *)data)[i];
  case DT_I64: return (double)((const int64_t *)data)[i];
  case DT_U8: return ((const uint8_t *)data)[i];
  case DT_COUNT: case DT_BOOL: break;
  }
  return 0;
}

RtStatus rt_to_f32_scaled(const RtTensor *in, double scale, double shift,
                          RtTensor *out, RtError *err) {
  RtStatus st = rt_tensor_alloc(out, DT_F32, in->rank, in->shape, err);
  if (st != RT_OK) return st;
  float *dst = out->data;
  int64_t n = rt_tensor_numel(in);
  for (int64_t i = 0; i < n; i++)
    dst[i] = (float)(load_as_double(in->data, in->dtype, i) * scale + shift);
  return RT_OK;
}

/* --- tensor sets -------------------------------------------------------- */

void rt_set_init(RtTensorSet *s) { memset(s, 0, sizeof *s); }

void rt_set_free(RtTensorSet *s) {
  if (!s) return;
  for (int i = 0; i < s->count; i++) {
    free(s->items[i].name);
    rt_tensor_free(&s->items[i].t);
  }
  for (int i = 0; i < s->nmeta; i++) {
    free(s->meta_keys[i]);
    free(s->meta_vals[i]);
  }
  free(s->items);
  free(s->meta_keys);
  free(s->meta_vals);
  rt_set_init(s);
}

/* Grows an array of elem-sized items so that one more fits. */
static int grow(void **arr, int *cap, int count, size_t elem) {
  if (count < *cap) return 1;
  int ncap = *cap ? *cap * 2 : 8;
  void *p = rt_realloc(*arr, (size_t)ncap * elem);
  if (!p) return 0;
  *arr = p;
  *cap = ncap;
  return 1;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = rt_malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

RtTensor *rt_set_find(RtTensorSet *s, const char *name) {
  for (int i = 0; i < s->count; i++)
    if (strcmp(s->items[i].name, name) == 0) return &s->items[i].t;
  return NULL;
}

RtStatus rt_set_add(RtTensorSet *s, const char *name, RtTensor *t, RtError *err) {
  if (rt_set_find(s, name))
    return rt_fail(err, RT_ERR_FORMAT, "tensor '%s' is already in the set", name);
  void *items = s->items;
  int cap = s->cap;
  if (!grow(&items, &cap, s->count, sizeof *s->items))
    return rt_fail(err, RT_ERR_NOMEM, "out of memory adding tensor '%s'", name);
  s->items = items;
  s->cap = cap;
  char *copy = dup_str(name);
  if (!copy) return rt_fail(err, RT_ERR_NOMEM, "out of memory adding tensor '%s'", name);
  s->items[s->count].name = copy;
  s->items[s->count].t = *t;
  s->count++;
  memset(t, 0, sizeof *t);
  return RT_OK;
}

RtStatus rt_set_add_copy(RtTensorSet *s, const char *name, const RtTensor *t, RtError *err) {
  RtTensor c = *t;
  c.data = rt_malloc(rt_tensor_nbytes(t) + 1);
  if (!c.data) return rt_fail(err, RT_ERR_NOMEM, "out of memory copying tensor '%s'", name);
  memcpy(c.data, t->data, rt_tensor_nbytes(t));
  RtStatus st = rt_set_add(s, name, &c, err);
  if (st) free(c.data);
  return st;
}

const char *rt_set_get_meta(const RtTensorSet *s, const char *key) {
  for (int i = 0; i < s->nmeta; i++)
    if (strcmp(s->meta_keys[i], key) == 0) return s->meta_vals[i];
  return NULL;
}

static RtStatus replace_meta(RtTensorSet *s, int i, const char *val, RtError *err) {
  char *v = dup_str(val);
  if (!v) return rt_fail(err, RT_ERR_NOMEM, "out of memory setting metadata");
  free(s->meta_vals[i]);
  s->meta_vals[i] = v;
  return RT_OK;
}

RtStatus rt_set_meta(RtTensorSet *s, const char *key, const char *val, RtError *err) {
  for (int i = 0; i < s->nmeta; i++)
    if (strcmp(s->meta_keys[i], key) == 0) return replace_meta(s, i, val, err);
  void *keys = s->meta_keys, *vals = s->meta_vals;
  int kcap = s->metacap, vcap = s->metacap;
  int ok = grow(&keys, &kcap, s->nmeta, sizeof(char *));
  s->meta_keys = keys;
  ok = ok && grow(&vals, &vcap, s->nmeta, sizeof(char *));
  s->meta_vals = vals;
  if (!ok) return rt_fail(err, RT_ERR_NOMEM, "out of memory setting metadata");
  s->metacap = kcap;
  char *k = dup_str(key), *v = dup_str(val);
  if (!k || !v) {
    free(k);
    free(v);
    return rt_fail(err, RT_ERR_NOMEM, "out of memory setting metadata");
  }
  s->meta_keys[s->nmeta] = k;
  s->meta_vals[s->nmeta] = v;
  s->nmeta++;
  return RT_OK;
}
