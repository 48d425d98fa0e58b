/*
 * import.c — an ONNX model as a dlc graph and .dl text.
 *
 * The ModelProto is decoded by the protobuf-c code generated from
 * onnx.proto; nothing here reads the wire format.  Then, in order:
 * the default-domain opset (1 to 18) is found; every initializer is
 * decoded into a known value (ImConst: f32, or i64 for shapes and axes),
 * its size checked against its dims, its bytes read from the raw data, the
 * typed fields or an external file beside the model (bounds-checked, never
 * outside the model's directory); graph inputs that are not initializers
 * become dlc inputs, dim_param dimensions dlc symbols.  The nodes are
 * ordered topologically (Kahn's algorithm over value names), which finds
 * undefined names, values defined twice and cycles before anything is
 * built; each node is then converted (import_ops.c) through ir_op, so
 * dlc's own shape rules infer every shape and refuse what does not fit.
 * A known value becomes part of the graph only when an op reads it as a
 * tensor (a scalar as a const, anything else as a param whose value goes
 * to the weights); one read as a shape or an axis list stays a number.
 * Errors name the node by index, name and op, at a line of a synthetic
 * source that lists the nodes, and nothing is produced after one.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/importer.h"

#define S(s) ((s) ? (s) : "")

/* --- maps ----------------------------------------------------------------------------- */

static uint64_t map_hash(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int im_map_get(const ImMap *m, const char *key) {
  if (!m->cap) return -1;
  for (uint64_t h = map_hash(key);; h++) {
    const char *k = m->keys[h & (m->cap - 1)];
    if (!k) return -1;
    if (!strcmp(k, key)) return m->vals[h & (m->cap - 1)];
  }
}

static void map_insert(ImMap *m, const char *key, int val) {
  for (uint64_t h = map_hash(key);; h++) {
    int s = (int)(h & (m->cap - 1));
    if (m->keys[s] && strcmp(m->keys[s], key)) continue;
    if (!m->keys[s]) m->n++;
    m->keys[s] = key, m->vals[s] = val;
    return;
  }
}

void im_map_put(Arena *a, ImMap *m, const char *key, int val) {
  if (2 * (m->n + 1) > m->cap) {
    ImMap old = *m;
    m->cap = old.cap ? 2 * old.cap : 64, m->n = 0;
    m->keys = arena_alloc(a, m->cap * sizeof *m->keys);
    m->vals = arena_alloc(a, m->cap * sizeof *m->vals);
    for (int i = 0; i < old.cap; i++)
      if (old.keys[i]) map_insert(m, old.keys[i], old.vals[i]);
  }
  map_insert(m, key, val);
}

/* --- names and messages ------------------------------------------------------------ */

static const char *const dl_keywords[] = {"model", "input", "param", "output", "block", "return", "train",
                                          "label", "freeze", "as", "lr_group", "true", "false", NULL};

/* name with every byte outside [A-Za-z0-9_] as '_', a leading digit or an
 * empty name prefixed with 'v', a keyword suffixed with '_'. */
static char *sanitise(Arena *a, const char *name) {
  size_t n = strlen(name);
  char *s = arena_alloc(a, n + 3), *p = s;
  if (!n || (name[0] >= '0' && name[0] <= '9')) *p++ = 'v';
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    *p++ = ok ? c : '_';
  }
  for (int k = 0; dl_keywords[k]; k++)
    if (!strcmp(s, dl_keywords[k])) *p++ = '_';
  return s;
}

const char *im_dl_name(Importer *im, const char *onnx_name) {
  const char *base = sanitise(im->a, onnx_name), *s = base;
  for (int k = 2; im_map_get(&im->dlnames, s) >= 0; k++) s = arena_printf(im->a, "%s_%d", base, k);
  im_map_put(im->a, &im->dlnames, s, 1);
  return s;
}

int im_error(Importer *im, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_error(im->d, im->loc, "node %d '%s' (%s): %s", im->ni, S(im->np->name), S(im->np->op_type), msg);
  return -1;
}

/* A message about the model as a whole (inputs, initializers, outputs). */
#define model_error im_model_error
int im_model_error(Importer *im, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_plain(im->d, im->path, "%s", msg);
  return -1;
}

/* --- values ---------------------------------------------------------------------------- */

static ImValue *value_of(Importer *im, const char *name) {
  int v = name && *name ? im_map_get(&im->byname, name) : -1;
  return v < 0 ? NULL : &im->vals[v];
}

/* A new value; -1 (no error reported) when the name is taken. */
static int value_new(Importer *im, const char *name) {
  if (im_map_get(&im->byname, name) >= 0) return -1;
  ImValue *v = &im->vals[im->nvals];
  *v = (ImValue){name, -1, NULL};
  im_map_put(im->a, &im->byname, name, im->nvals++);
  return 0;
}

int im_nin(const Importer *im) {
  int n = (int)im->np->n_input;
  while (n > 0 && !*S(im->np->input[n - 1])) n--;
  return n;
}

const char *im_in_name(const Importer *im, int k) {
  return k < (int)im->np->n_input && *S(im->np->input[k]) ? im->np->input[k] : NULL;
}

ImConst *im_known_i64(Importer *im, int n) {
  ImConst *c = arena_alloc(im->a, sizeof *c);
  c->dt = DT_I64, c->rank = 1, c->dims[0] = n, c->numel = n;
  c->i = arena_alloc(im->a, (n ? n : 1) * sizeof *c->i);
  return c;
}

/* The param holding known value c (named after the ONNX value). */
static int materialise_param(Importer *im, ImValue *v) {
  const ImConst *c = v->k;
  if (c->dt != DT_F32)
    return im_error(im, "'%s' is an integer tensor used as a tensor operand: dlc's parameters are f32", v->name);
  Shape s = {c->rank, {0}};
  for (int k = 0; k < c->rank; k++) {
    if (c->dims[k] == 0) return im_error(im, "'%s' has an empty dimension, which dlc tensors cannot have", v->name);
    s.d[k] = c->dims[k];
  }
  const char *name = im_dl_name(im, v->name);
  int id = ir_param(im->g, name, DT_F32, &s, (ParamInit){INIT_ZEROS, 0, 0}, im->loc);
  if (id < 0) return -1;
  im->g->nodes[id].frozen = c->frozen;
  RtTensor t;
  RtError err;
  if (rt_tensor_alloc(&t, DT_F32, c->rank, c->dims, &err)) return im_error(im, "'%s': %s", v->name, err.msg);
  memcpy(t.data, c->f, (size_t)c->numel * sizeof(float));
  /* a Scan body's param is named in the .dl after the scan statement */
  rt_set_add(im->weights, im->param_prefix ? arena_printf(im->a, "%s.%s", im->param_prefix, name) : name, &t, &err);
  return id;
}

int im_frozen_param(Importer *im, const char *what, int rank, const int64_t *dims, const float *data) {
  ImConst c = {DT_F32, rank, {0}, 1, (float *)data, NULL, NULL, 1};
  for (int k = 0; k < rank; k++) c.dims[k] = dims[k], c.numel *= dims[k];
  ImValue v = {arena_printf(im->a, "%s_%s", S(im->np->output[0]), what), -1, &c};
  return materialise_param(im, &v);
}

int im_tensor(Importer *im, int k) {
  const char *name = im_in_name(im, k);
  if (!name) return im_error(im, "input %d is missing", k);
  ImValue *v = value_of(im, name);
  IR_ASSERT(v); /* every name was checked before conversion */
  if (v->id >= 0) return v->id;
  const ImConst *c = v->k;
  if (!c) return im_error(im, "input '%s' is an output dlc does not compute (only the first output of its node is)", name);
  if (c->dt == DT_F32 && c->rank == 0 && isfinite(c->f[0])) v->id = ir_const(im->g, c->f[0], im->loc);
  else v->id = materialise_param(im, v);
  return v->id;
}

const ImConst *im_known_opt(Importer *im, int k) {
  ImValue *v = value_of(im, im_in_name(im, k));
  return v ? v->k : NULL;
}

const ImConst *im_known(Importer *im, int k, const char *what) {
  const char *name = im_in_name(im, k);
  if (!name) return im_error(im, "input %d (%s) is missing", k, what), NULL;
  const ImConst *c = im_known_opt(im, k);
  if (!c) im_error(im, "input %d (%s) '%s' is computed at run time; dlc needs it constant", k, what, name);
  return c;
}

int im_set_out(Importer *im, int k, int id) {
  if (id < 0) return -1;
  ImValue *v = value_of(im, im->np->output[k]);
  if (!v) return 0; /* an absent output ('') nothing reads */
  v->id = id;
  return 0;
}

int im_set_out_known(Importer *im, int k, ImConst *c) {
  ImValue *v = value_of(im, im->np->output[k]);
  if (!v) return 0;
  v->k = c;
  return 0;
}

/* Every float attribute of at that is not the op's default must be finite:
 * .dl has no literal for NaN or an infinity. */
static int attrs_writable(Importer *im, OpKind op, const Attrs *at) {
  Attrs def = ir_attrs_default(op);
  AttrSpec specs[8];
  int ns = ir_attr_specs(op, specs, 8);
  for (int k = 0; k < ns; k++) {
    char v[256], dv[256];
    if (specs[k].kind != ATTR_FLOAT) continue;
    ir_attr_format(im->g, at, op, specs[k].name, v, sizeof v);
    ir_attr_format(im->g, &def, op, specs[k].name, dv, sizeof dv);
    if (strcmp(v, dv) && (strstr(v, "nan") || strstr(v, "inf")))
      return im_error(im, "dlc's %s attribute '%s' would be %s, which is not supported", ir_ops[op].name, specs[k].name, v);
  }
  return 0;
}

int im_op(Importer *im, OpKind op, const int *in, int nin, const Attrs *at, int k) {
  for (int i = 0; i < nin; i++)
    if (in[i] < 0) return -1;
  if (at && attrs_writable(im, op, at)) return -1;
  Attrs def = ir_attrs_default(op);
  int id = ir_op(im->g, op, in, nin, at ? at : &def, im->loc);
  if (id < 0) return -1;
  /* output k's name; an intermediate value (k < 0) is named after output 0 and its op */
  const char *out0 = S(im->np->output[0]), *out = k >= 0 && k < (int)im->np->n_output ? S(im->np->output[k]) : "";
  if (k < 0) out = arena_printf(im->a, "%s_%s", out0, ir_ops[op].name);
  im->g->nodes[id].name = im_dl_name(im, *out ? out : ir_ops[op].name);
  if (at && ir_op_family(op) == AK_WINDOW) { /* written as given: the canonical lists are longer */
    if (id >= im->cap_given) {
      int cap = 2 * id + 64;
      const Attrs **ng = arena_alloc(im->a, (size_t)cap * sizeof *ng);
      if (im->cap_given) memcpy(ng, im->given, (size_t)im->cap_given * sizeof *ng);
      im->given = ng, im->cap_given = cap;
    }
    Attrs *copy = arena_alloc(im->a, sizeof *copy);
    *copy = *at;
    im->given[id] = copy;
  }
  return id;
}

/* --- attributes ------------------------------------------------------------------------ */

const Onnx__AttributeProto *im_attr(const Importer *im, const char *name) {
  for (size_t i = 0; i < im->np->n_attribute; i++)
    if (!strcmp(S(im->np->attribute[i]->name), name)) return im->np->attribute[i];
  return NULL;
}

static int attr_typed(Importer *im, const char *name, int type, const char *tname, const Onnx__AttributeProto **out) {
  const Onnx__AttributeProto *a = im_attr(im, name);
  *out = a;
  if (a && a->type != (Onnx__AttributeProto__AttributeType)type)
    return im_error(im, "attribute '%s' must be %s", name, tname);
  return 0;
}

int im_attr_int(Importer *im, const char *name, int64_t def, int64_t *out) {
  const Onnx__AttributeProto *a;
  if (attr_typed(im, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, "an integer", &a)) return -1;
  *out = a ? a->i : def;
  return 0;
}

int im_attr_float(Importer *im, const char *name, double def, double *out) {
  const Onnx__AttributeProto *a;
  if (attr_typed(im, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, "a float", &a)) return -1;
  *out = a ? a->f : def;
  return 0;
}

int im_attr_str(Importer *im, const char *name, const char *def, const char **out) {
  const Onnx__AttributeProto *a;
  if (attr_typed(im, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING, "a string", &a)) return -1;
  *out = !a ? def : a->s.len ? arena_strndup(im->a, (const char *)a->s.data, a->s.len) : "";
  return 0;
}

int im_attr_ints(Importer *im, const char *name, int64_t *v, int max, int *n) {
  const Onnx__AttributeProto *a;
  if (attr_typed(im, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, "a list of integers", &a)) return -1;
  *n = a ? (int)a->n_ints : -1;
  if (a && a->n_ints > (size_t)max) return im_error(im, "attribute '%s' has %zu entries, at most %d", name, a->n_ints, max);
  for (int i = 0; i < *n; i++) v[i] = a->ints[i];
  return 0;
}

/* --- tensors ---------------------------------------------------------------------------- */

static const char *dtype_name(int t) {
  static const char *const names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64",
                                      "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64",
                                      "COMPLEX128", "BFLOAT16"};
  return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "unknown";
}

/* Whether location is a relative path that stays inside the model's
 * directory: no leading '/', no ".." component. */
static int location_ok(const char *loc) {
  if (!*loc || loc[0] == '/') return 0;
  for (const char *p = loc; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.') return 0;
    p += n + (p[n] == '/');
  }
  return 1;
}

/* Reads nbytes at offset of the external file of tensor t into *out (an
 * rt_x block, allocated once the file is known to hold them). */
static int read_external(Importer *im, const Onnx__TensorProto *t, const char *what, void **out, size_t nbytes) {
  const char *loc = NULL;
  int64_t off = 0, len = -1;
  for (size_t i = 0; i < t->n_external_data; i++) {
    const char *k = S(t->external_data[i]->key), *v = S(t->external_data[i]->value);
    char *end;
    errno = 0;
    if (!strcmp(k, "location")) loc = v;
    else if (!strcmp(k, "offset") || !strcmp(k, "length")) {
      long long x = strtoll(v, &end, 10);
      if (!*v || *end || x < 0 || errno) return model_error(im, "%s: external data %s '%s' is not a size", what, k, v);
      *(k[0] == 'o' ? &off : &len) = x;
    }
  }
  if (!loc) return model_error(im, "%s: external data has no location", what);
  if (!im->dir) return model_error(im, "%s: external data '%s' needs the model's file name", what, loc);
  if (!location_ok(loc))
    return model_error(im, "%s: external data location '%s' is not a path inside the model's directory", what, loc);
  if (len >= 0 && (uint64_t)len != nbytes)
    return model_error(im, "%s: external data length %lld does not match its dims (%zu bytes)", what, (long long)len, nbytes);
  const char *path = arena_printf(im->a, "%s/%s", im->dir, loc);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return model_error(im, "%s: cannot open external data '%s': %s", what, path, strerror(errno));
  int rc = fstat(fd, &st) || !S_ISREG(st.st_mode) ? -1 : 0;
  if (rc) model_error(im, "%s: external data '%s' is not a regular file", what, path);
  int64_t end;
  if (!rc && (ir_ckd_add(&end, off, (int64_t)nbytes) || end > st.st_size))
    rc = model_error(im, "%s: external data '%s' holds %lld bytes; the tensor needs %zu at offset %lld", what, path,
                     (long long)st.st_size, nbytes, (long long)off);
  char *buf = rc ? NULL : rt_xmalloc(nbytes ? nbytes : 1);
  *out = buf;
  for (size_t got = 0; !rc && got < nbytes;) {
    ssize_t r = pread(fd, buf + got, nbytes - got, off + (off_t)got);
    if (r <= 0) rc = model_error(im, "%s: cannot read external data '%s'", what, path);
    else got += (size_t)r;
  }
  close(fd);
  return rc;
}

/* The element values of t (numel of them) into c, from whichever field
 * holds them. */
static int tensor_values(Importer *im, const Onnx__TensorProto *t, const char *what, ImConst *c) {
  int ty = t->data_type;
  size_t es = ty == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? 4 : 8;
  size_t nbytes = (size_t)c->numel * es, n = (size_t)c->numel;
  void *raw = NULL;
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
    if (read_external(im, t, what, &raw, nbytes)) return rt_xfree(raw), -1;
  } else if (t->has_raw_data) {
    if (t->raw_data.len != nbytes)
      return model_error(im, "%s: raw data of %zu bytes; its dims need %zu", what, t->raw_data.len, nbytes);
    raw = t->raw_data.data;
  }
  size_t have = raw ? n : ty == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? t->n_float_data
                      : ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT64  ? t->n_int64_data
                                                                    : t->n_int32_data;
  if (have != n) return model_error(im, "%s: holds %zu values; its dims need %lld", what, have, (long long)c->numel);
  for (size_t k = 0; k < n; k++) {
    if (c->dt == DT_F32) c->f[k] = raw ? ((const float *)raw)[k] : t->float_data[k];
    else if (ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) c->i[k] = raw ? ((const int64_t *)raw)[k] : t->int64_data[k];
    else c->i[k] = raw ? ((const int32_t *)raw)[k] : t->int32_data[k];
  }
  if (raw && raw != t->raw_data.data) rt_xfree(raw);
  return 0;
}

/* A TensorProto as a known value (what names it in messages). */
static ImConst *tensor_known(Importer *im, const Onnx__TensorProto *t, const char *what) {
  int ty = t->data_type;
  if (ty != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && ty != ONNX__TENSOR_PROTO__DATA_TYPE__INT64 &&
      ty != ONNX__TENSOR_PROTO__DATA_TYPE__INT32)
    return model_error(im, "%s: data type %s is not supported (FLOAT, INT64, INT32)", what, dtype_name(ty)), NULL;
  if (t->segment) return model_error(im, "%s: segmented tensors are not supported", what), NULL;
  if (t->n_dims > IR_MAX_RANK)
    return model_error(im, "%s: rank %zu is over dlc's largest, %d", what, t->n_dims, IR_MAX_RANK), NULL;
  ImConst *c = arena_alloc(im->a, sizeof *c);
  c->dt = ty == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? DT_F32 : DT_I64;
  c->rank = (int)t->n_dims, c->numel = 1;
  for (int k = 0; k < c->rank; k++) {
    c->dims[k] = t->dims[k];
    c->numel = ir_size_mul(c->numel, t->dims[k]);
  }
  if (c->numel < 0 || c->numel > IR_MAX_TENSOR_BYTES / 8)
    return model_error(im, "%s: its dims make a tensor over " IR_MAX_TENSOR_BYTES_STR, what), NULL;
  if (!(t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)) {
    /* the values must be in the message before anything is allocated for them */
    size_t es = ty == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? 4 : 8;
    size_t n = (size_t)c->numel;
    size_t have = ty == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? t->n_float_data
                  : ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? t->n_int64_data
                                                               : t->n_int32_data;
    if (t->has_raw_data && t->raw_data.len != n * es)
      return model_error(im, "%s: raw data of %zu bytes; its dims need %zu", what, t->raw_data.len, n * es), NULL;
    if (!t->has_raw_data && have != n)
      return model_error(im, "%s: holds %zu values; its dims need %zu", what, have, n), NULL;
  }
  if (c->dt == DT_F32) c->f = arena_alloc(im->a, (size_t)(c->numel ? c->numel : 1) * sizeof *c->f);
  else c->i = arena_alloc(im->a, (size_t)(c->numel ? c->numel : 1) * sizeof *c->i);
  return tensor_values(im, t, what, c) ? NULL : c;
}

ImConst *im_tensor_known(Importer *im, const Onnx__TensorProto *t, const char *what) { return tensor_known(im, t, what); }

/* --- inputs, initializers, outputs ------------------------------------------------------ */

static int add_initializers(Importer *im) {
  for (size_t i = 0; i < im->gp->n_initializer; i++) {
    const Onnx__TensorProto *t = im->gp->initializer[i];
    const char *name = S(t->name);
    const char *what = arena_printf(im->a, "initializer '%s'", name);
    if (!*name) return model_error(im, "initializer %zu has no name", i);
    if (value_new(im, name)) return model_error(im, "%s is defined twice", what);
    ImConst *c = tensor_known(im, t, what);
    if (!c) return -1;
    im->vals[im->nvals - 1].k = c;
  }
  return 0;
}

/* The shape of graph input vi as a dlc Shape (dim_param: a symbol). */
static int input_shape(Importer *im, const Onnx__ValueInfoProto *vi, const Onnx__TypeProto__Tensor *tt, Shape *s) {
  const char *name = S(vi->name);
  if (!tt->shape) return model_error(im, "input '%s' has no shape", name);
  if (tt->shape->n_dim > IR_MAX_RANK)
    return model_error(im, "input '%s' has rank %zu, over dlc's largest, %d", name, tt->shape->n_dim, IR_MAX_RANK);
  s->rank = (int)tt->shape->n_dim;
  for (int k = 0; k < s->rank; k++) {
    const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[k];
    if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && *S(dm->dim_param)) {
      const char *sym = sanitise(im->a, dm->dim_param);
      int id = ir_symbol_find(im->g, sym);
      if (id < 0 && im_map_get(&im->dlnames, sym) >= 0) sym = im_dl_name(im, sym);
      if (id < 0) im_map_put(im->a, &im->dlnames, sym, 1), id = ir_symbol(im->g, sym, (SrcLoc){0});
      if (id < 0) return model_error(im, "input '%s': more than %d symbolic dimensions", name, IR_MAX_SYMS);
      im->g->syms[id].max = 1;
      s->d[k] = DIM_SYM(id);
    } else if (dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && dm->dim_value >= 1 &&
               dm->dim_value <= IR_MAX_TENSOR_BYTES) {
      s->d[k] = dm->dim_value;
    } else {
      return model_error(im, "input '%s': dimension %d has no size (a positive dim_value or a dim_param)", name, k);
    }
  }
  return 0;
}

static int add_input(Importer *im, const Onnx__ValueInfoProto *vi) {
  const char *name = S(vi->name);
  const Onnx__TypeProto *tp = vi->type;
  if (!*name) return model_error(im, "a graph input has no name");
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return model_error(im, "input '%s' is not a tensor", name);
  int ty = tp->tensor_type->elem_type;
  DType dt = ty == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || ty == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL ? DT_F32 /* 0/1 */
             : ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? DT_I64
             : ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? DT_I32
                                                          : DT_COUNT;
  if (dt == DT_COUNT) return model_error(im, "input '%s': data type %s is not supported (FLOAT, BOOL as 0/1 floats, INT64, INT32)", name, dtype_name(ty));
  Shape s;
  if (input_shape(im, vi, tp->tensor_type, &s)) return -1;
  if (value_new(im, name)) return model_error(im, "input '%s' is defined twice", name);
  int id = ir_input(im->g, im_dl_name(im, name), dt, &s, (SrcLoc){0});
  if (id < 0) return -1;
  im->vals[im->nvals - 1].id = id;
  return 0;
}

static int add_inputs(Importer *im) {
  for (size_t i = 0; i < im->gp->n_input; i++) {
    const ImValue *v = value_of(im, im->gp->input[i]->name);
    if (v && v->k) continue; /* an initializer listed among the inputs (IR version 3) */
    if (add_input(im, im->gp->input[i])) return -1;
  }
  return 0;
}

static int add_outputs(Importer *im) {
  ImMap seen = {0};
  if (!im->gp->n_output) return model_error(im, "the graph has no output");
  for (size_t i = 0; i < im->gp->n_output; i++) {
    const char *name = S(im->gp->output[i]->name);
    ImValue *v = value_of(im, name);
    if (!v) return model_error(im, "output '%s' is not defined by any node, input or initializer", name);
    if (im_map_get(&seen, name) >= 0) return model_error(im, "output '%s' is listed twice", name);
    im_map_put(im->a, &seen, name, 1);
    if (v->id < 0 && v->k) return model_error(im, "output '%s' is a constant; dlc outputs are computed values", name);
    if (v->id < 0) return model_error(im, "output '%s' is an output dlc does not compute (only the first output of its node is)", name);
    const Node *n = &im->g->nodes[v->id];
    const char *dl = n->name && n->op != OP_INPUT && n->op != OP_PARAM && !strcmp(n->name, sanitise(im->a, name))
                         ? n->name
                         : im_dl_name(im, name);
    if (ir_output(im->g, dl, v->id) < 0) return -1;
  }
  return 0;
}

/* --- the nodes, in topological order ------------------------------------------------------ */

/* Registers every node output as a value, checking names and counts. */
static int declare_outputs(Importer *im, int *producer) {
  for (size_t i = 0; i < im->gp->n_node; i++) {
    const Onnx__NodeProto *np = im->gp->node[i];
    im->np = np, im->ni = (int)i, im->loc = (SrcLoc){&im->src, (int)i + 1, 1};
    if (np->n_input > ONNX_MAX_NODE_IO || np->n_output > ONNX_MAX_NODE_IO)
      return im_error(im, "more than %d inputs or outputs", ONNX_MAX_NODE_IO);
    for (size_t k = 0; k < np->n_output; k++) {
      const char *o = S(np->output[k]);
      if (!*o) continue;
      const ImValue *v = value_of(im, o);
      if (v) return im_error(im, "output '%s' is already defined%s", o, v->id >= 0 || v->k ? " (an input or initializer)" : " by another node");
      value_new(im, o);
      producer[im->nvals - 1] = (int)i;
    }
  }
  return 0;
}

/* Kahn's algorithm: order[] gets the nodes, each after the producers of
 * its inputs (and in file order where that is free). */
static int topo_order(Importer *im, const int *producer, int *order) {
  int n = (int)im->gp->n_node, head = 0, tail = 0;
  int *pending = arena_alloc(im->a, (n ? n : 1) * sizeof *pending);
  int *nuse = arena_alloc(im->a, (n + 1) * sizeof *nuse), **users = arena_alloc(im->a, (n ? n : 1) * sizeof *users);
  for (int i = 0; i < n; i++) {
    const Onnx__NodeProto *np = im->gp->node[i];
    im->np = np, im->ni = i, im->loc = (SrcLoc){&im->src, i + 1, 1};
    for (size_t k = 0; k < np->n_input; k++) {
      const char *name = S(np->input[k]);
      if (!*name) continue;
      int v = im_map_get(&im->byname, name);
      if (v < 0) return im_error(im, "input '%s' is not defined by any node, input or initializer", name);
      if (producer[v] >= 0) pending[i]++, nuse[producer[v]]++;
    }
  }
  for (int i = 0; i < n; i++) users[i] = arena_alloc(im->a, (nuse[i] ? nuse[i] : 1) * sizeof **users), nuse[i] = 0;
  for (int i = 0; i < n; i++)
    for (size_t k = 0; k < im->gp->node[i]->n_input; k++) {
      int v = im_map_get(&im->byname, S(im->gp->node[i]->input[k]));
      if (v >= 0 && producer[v] >= 0) users[producer[v]][nuse[producer[v]]++] = i;
    }
  for (int i = 0; i < n; i++)
    if (!pending[i]) order[tail++] = i;
  while (head < tail) {
    int i = order[head++];
    for (int u = 0; u < nuse[i]; u++)
      if (--pending[users[i][u]] == 0) order[tail++] = users[i][u];
  }
  for (int i = 0; tail < n && i < n; i++)
    if (pending[i]) {
      im->np = im->gp->node[i], im->ni = i, im->loc = (SrcLoc){&im->src, i + 1, 1};
      return im_error(im, "its inputs depend on its own output: the graph has a cycle");
    }
  return 0;
}

/* s with every byte outside printable ASCII as '?', so that a name can
 * neither break the line of a message or of a comment in the .dl text nor
 * make that text invalid UTF-8. */
static char *one_line(char *s) {
  for (char *p = s; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
  return s;
}

/* The synthetic source: line i + 1 describes node i. */
static void node_lines(Importer *im) {
  size_t cap = 256, len = 0;
  char *buf = arena_alloc(im->a, cap);
  for (size_t i = 0; i < im->gp->n_node; i++) {
    const Onnx__NodeProto *np = im->gp->node[i];
    char *line = one_line(arena_printf(im->a, "node %zu '%.200s': %.100s(%.200s%s) -> %.200s", i, S(np->name),
                                       S(np->op_type), np->n_input ? S(np->input[0]) : "", np->n_input > 1 ? ", ..." : "",
                                       np->n_output ? S(np->output[0]) : ""));
    line = arena_printf(im->a, "%s\n", line);
    size_t n = strlen(line);
    if (len + n + 1 > cap) {
      while (len + n + 1 > cap) cap *= 2;
      char *nb = arena_alloc(im->a, cap);
      memcpy(nb, buf, len);
      buf = nb;
    }
    memcpy(buf + len, line, n + 1);
    len += n;
  }
  im->src.text = buf;
}

/* The values of the enclosing graphs that a Scan body reads (names no
 * node, input or initializer of the body defines): each must be known
 * (an initializer or a Constant), and becomes a value of the body, made a
 * param of the body when read as a tensor. */
static int bind_outer(Importer *im) {
  for (size_t i = 0; i < im->gp->n_node; i++) {
    const Onnx__NodeProto *np = im->gp->node[i];
    im->np = np, im->ni = (int)i, im->loc = (SrcLoc){&im->src, (int)i + 1, 1};
    for (size_t k = 0; k < np->n_input; k++) {
      const char *name = S(np->input[k]);
      if (!*name || value_of(im, name)) continue;
      const ImValue *ov = NULL;
      for (Importer *o = im->outer; o && !ov; o = o->outer) ov = value_of(o, name);
      if (!ov) continue; /* undefined: topo_order says so */
      if (!ov->k)
        return im_error(im, "input '%s' is a value of the enclosing graph computed at run time; a Scan body dlc "
                            "imports reads only constants (initializers) from outside it", name);
      value_new(im, name);
      im->vals[im->nvals - 1].k = ov->k;
    }
  }
  return 0;
}

static int convert_nodes(Importer *im) {
  int n = (int)im->gp->n_node;
  if (n > ONNX_MAX_NODES) return model_error(im, "%d nodes, more than dlc imports (%d)", n, ONNX_MAX_NODES);
  int cap = n + (int)im->gp->n_initializer + (int)im->gp->n_input + 1;
  for (int i = 0; i < n; i++) cap += (int)im->gp->node[i]->n_output > 0 ? (int)im->gp->node[i]->n_output : 0;
  for (int i = 0; im->outer && i < n; i++) cap += (int)im->gp->node[i]->n_input; /* values bound from outside */
  int *producer = arena_alloc(im->a, (size_t)cap * sizeof *producer), *order = arena_alloc(im->a, (n + 1) * sizeof *order);
  memset(producer, 0xff, (size_t)cap * sizeof *producer);
  if (declare_outputs(im, producer) || (im->outer && bind_outer(im)) || topo_order(im, producer, order)) return -1;
  for (int j = 0; j < n; j++) {
    int i = order[j];
    im->np = im->gp->node[i], im->ni = i, im->loc = (SrcLoc){&im->src, i + 1, 1};
    if (im_convert_node(im)) return -1;
  }
  return 0;
}

/* --- Scan bodies ---------------------------------------------------------------------------- */

int im_subgraph(Importer *sub, const char *const *in_names, const int *ids, int nin) {
  size_t nv = sub->gp->n_initializer + (size_t)nin;
  for (size_t i = 0; i < sub->gp->n_node; i++) nv += sub->gp->node[i]->n_output + sub->gp->node[i]->n_input;
  if (sub->gp->n_node > ONNX_MAX_NODES || nv > (size_t)ONNX_MAX_NODES * 4)
    return model_error(sub, "the body is too large (%zu nodes)", sub->gp->n_node);
  sub->vals = arena_alloc(sub->a, (nv + 1) * sizeof *sub->vals);
  node_lines(sub);
  if (add_initializers(sub)) return -1;
  for (int k = 0; k < nin; k++) {
    if (value_new(sub, in_names[k])) return model_error(sub, "body input '%s' is defined twice", in_names[k]);
    sub->vals[sub->nvals - 1].id = ids[k];
  }
  return convert_nodes(sub);
}

/* --- the model ---------------------------------------------------------------------------- */

static int find_opset(Importer *im, const Onnx__ModelProto *mp) {
  im->opset = -1;
  for (size_t i = 0; i < mp->n_opset_import; i++) {
    const char *dom = S(mp->opset_import[i]->domain);
    if (!*dom || !strcmp(dom, "ai.onnx")) im->opset = mp->opset_import[i]->version;
  }
  if (im->opset < 0) return model_error(im, "the model imports no opset of the default ONNX domain");
  if (im->opset < 1 || im->opset > 18) /* what an older opset's op means differently is refused by its conversion */
    return model_error(im, "opset %lld of the default domain is not supported (1 to 18)", (long long)im->opset);
  return 0;
}

/* "dir/name.onnx" -> "dir" ("." without a slash). */
static const char *dir_of(Arena *a, const char *path) {
  const char *s = strrchr(path, '/');
  return s ? arena_strndup(a, path, s == path ? 1 : (size_t)(s - path)) : ".";
}

static int import_model(Importer *im, const Onnx__ModelProto *mp, OnnxImport *out) {
  if (find_opset(im, mp)) return -1;
  im->gp = mp->graph;
  if (!im->gp) return model_error(im, "the model has no graph");
  size_t nv = im->gp->n_initializer + im->gp->n_input;
  for (size_t i = 0; i < im->gp->n_node; i++) nv += im->gp->node[i]->n_output;
  if (nv > (size_t)ONNX_MAX_NODES * 4) return model_error(im, "too many values (%zu)", nv);
  im->vals = arena_alloc(im->a, (nv + 1) * sizeof *im->vals);
  node_lines(im);
  if (add_initializers(im) || add_inputs(im) || convert_nodes(im) || add_outputs(im)) return -1;
  if (ir_check_sizes(im->g, im->d)) return -1;
  char *header = arena_printf(im->a, "# %s: imported from ONNX (opset %lld%s%.100s%s%.100s)", im->path,
                                    (long long)im->opset, *S(mp->producer_name) ? ", " : "", S(mp->producer_name),
                                    *S(mp->producer_version) ? " " : "", S(mp->producer_version));
  one_line(header);
  const Attrs **given = arena_alloc(im->a, (size_t)(im->g->nnodes + 1) * sizeof *given);
  if (im->cap_given) memcpy(given, im->given, (size_t)(im->cap_given < im->g->nnodes ? im->cap_given : im->g->nnodes) * sizeof *given);
  out->text = im_write_dl(im->g, given, header);
  return 0;
}

int onnx_is_model_path(const char *path) {
  size_t n = strlen(path);
  return n > 5 && !strcmp(path + n - 5, ".onnx");
}

void onnx_import_free(OnnxImport *out) {
  rt_xfree(out->text);
  rt_set_free(&out->weights);
  out->text = NULL;
}

int onnx_import(const uint8_t *data, size_t len, const char *path, OnnxImport *out, Diags *d) {
  out->text = NULL;
  rt_set_init(&out->weights);
  const char *where = path ? path : "<onnx>";
  Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, data);
  if (!mp) return diag_plain(d, where, "not an ONNX model: the protobuf does not decode as a ModelProto"), -1;
  Arena a;
  arena_init(&a);
  Graph g;
  ir_graph_init(&g, "onnx", d);
  Importer im = {&a, &g, d, where, path ? dir_of(&a, path) : NULL};
  im.src.path = where;
  const char *base = strrchr(where, '/') ? strrchr(where, '/') + 1 : where;
  g.name = sanitise(&a, arena_strndup(&a, base, strcspn(base, ".")));
  im.weights = &out->weights;
  RtOomScope oom; /* the decoded message is not an rt_x block */
  rt_oom_enter(&oom);
  if (setjmp(oom.jb)) {
    onnx__model_proto__free_unpacked(mp, NULL);
    rt_oom();
  }
  int before = d->nerrors;
  int rc = import_model(&im, mp, out) || d->nerrors > before ? -1 : 0;
  rt_oom_leave(&oom);
  onnx__model_proto__free_unpacked(mp, NULL);
  ir_graph_free(&g);
  arena_free(&a);
  if (rc) onnx_import_free(out);
  return rc;
}

int onnx_import_file(const char *path, OnnxImport *out, Diags *d) {
  out->text = NULL;
  rt_set_init(&out->weights);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return diag_plain(d, path, "cannot open: %s", strerror(errno)), -1;
  if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > ONNX_MAX_FILE_BYTES) {
    close(fd);
    return diag_plain(d, path, "not a regular file of at most 2 GiB"), -1;
  }
  size_t n = (size_t)st.st_size, got = 0;
  uint8_t *buf = rt_xmalloc(n ? n : 1);
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  int rc = got == n ? onnx_import(buf, n, path, out, d) : (diag_plain(d, path, "cannot read the whole file"), -1);
  rt_xfree(buf);
  return rc;
}
