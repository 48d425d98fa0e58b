/*
 * rt.h — the dlc runtime: tensors in memory, the file formats tensors travel
 * in (.npy, safetensors), data sets (IDX, CSV, .npy), and the seeded PRNG
 * with the parameter initialisers.
 *
 * The runtime is the bottom layer: it depends on libc, libm and zlib only,
 * and every other part of dlc (and trainers emitted as C) may link it.
 *
 * Conventions: a function that can fail returns an RtStatus; on failure it
 * writes a one-line message into the caller's RtError (naming the file and
 * what was expected) and leaves its outputs empty.  Functions that hand back
 * memory say so; everything they allocate is freed by the matching _free.
 * Writers of files are atomic: they write a temporary file beside the
 * target, fsync it, rename it over the target and fsync the directory, so
 * a crash never leaves a half-written file under the target name.
 */
#ifndef DLC_RT_H
#define DLC_RT_H

#include <stddef.h>
#include <stdint.h>

#define RT_MAX_RANK 8

/* Element types.  The IR uses the same enum. */
typedef enum DType {
  DT_F32,
  DT_F64,
  DT_I32,
  DT_I64,
  DT_U8,
  DT_COUNT
} DType;

const char *rt_dtype_name(DType dt);   /* "f32", "i64", ... */
size_t rt_dtype_size(DType dt);

typedef enum RtStatus {
  RT_OK = 0,
  RT_ERR_IO,        /* cannot open, read or write */
  RT_ERR_FORMAT,    /* the bytes are not what the format says */
  RT_ERR_TRUNCATED, /* the file ends early */
  RT_ERR_DTYPE,     /* an element type dlc does not handle, or not the one expected */
  RT_ERR_SHAPE,     /* a shape that is not the one expected */
  RT_ERR_MISSING,   /* a named tensor is not there */
  RT_ERR_NOMEM
} RtStatus;

typedef struct RtError {
  char msg[512];
} RtError;

/* Formats msg into err (printf style) and returns st. */
RtStatus rt_fail(RtError *err, RtStatus st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A dense, C-order tensor that owns its data (malloc'd). */
typedef struct RtTensor {
  DType dtype;
  int rank;
  int64_t shape[RT_MAX_RANK];
  void *data;
} RtTensor;

/* Sets *nbytes to the byte size of a dtype x shape and returns 1, or
 * returns 0 when the rank is out of range, a dimension is negative or the
 * size overflows: readers call it before trusting a shape from a file. */
int rt_shape_nbytes(DType dt, int rank, const int64_t *shape, size_t *nbytes);
int64_t rt_tensor_numel(const RtTensor *t);
size_t rt_tensor_nbytes(const RtTensor *t);
/* Allocates zeroed data for the given dtype and shape. */
RtStatus rt_tensor_alloc(RtTensor *t, DType dt, int rank, const int64_t *shape,
                         RtError *err);
void rt_tensor_free(RtTensor *t);
/* Writes "f32[3, 4]" into buf. */
const char *rt_shape_str(char *buf, size_t len, DType dt, int rank,
                         const int64_t *shape);

/* --- NumPy .npy (format versions 1.0, 2.0, 3.0; little-endian; C order) --
 * Reads <f4, <f8, <i4, <i8, |u1 (and |b1 as u8).  Fortran order, big-endian
 * data, object arrays and structured dtypes are refused with a message. */
RtStatus rt_npy_read(const char *path, RtTensor *out, RtError *err);
RtStatus rt_npy_write(const char *path, const RtTensor *t, RtError *err);

/* --- safetensors ------------------------------------------------------
 * Layout: u64 little-endian header length, a JSON header mapping each name
 * to {"dtype","shape","data_offsets"} (plus an optional "__metadata__"
 * object of string to string), then the data.  Reads F32, F64, I32, I64,
 * U8.  Every offset, size and shape is checked against the file; a header
 * that is not valid JSON, overlapping or out-of-range data, or a size that
 * does not match dtype x shape is RT_ERR_FORMAT with a message. */
typedef struct RtNamedTensor {
  char *name;
  RtTensor t;
} RtNamedTensor;

typedef struct RtTensorSet {
  int count, cap;
  RtNamedTensor *items;
  int nmeta, metacap;
  char **meta_keys;   /* "__metadata__" entries, strings only */
  char **meta_vals;
} RtTensorSet;

void rt_set_init(RtTensorSet *s);
void rt_set_free(RtTensorSet *s);
/* Copies name and takes ownership of t->data (t is left empty); a name
 * already in the set is RT_ERR_FORMAT and leaves t untouched. */
RtStatus rt_set_add(RtTensorSet *s, const char *name, RtTensor *t, RtError *err);
RtTensor *rt_set_find(RtTensorSet *s, const char *name);
RtStatus rt_set_meta(RtTensorSet *s, const char *key, const char *val, RtError *err);
const char *rt_set_get_meta(const RtTensorSet *s, const char *key);

RtStatus rt_safetensors_read(const char *path, RtTensorSet *out, RtError *err);
/* Tensors are written in the order they were added; atomic (see above). */
RtStatus rt_safetensors_write(const char *path, const RtTensorSet *s, RtError *err);

/* Atomic whole-file write: tmp file beside path, fsync, rename, fsync dir. */
RtStatus rt_write_file_atomic(const char *path, const void *const *chunks,
                              const size_t *lens, int nchunks, RtError *err);

/* --- PRNG ---------------------------------------------------------------
 * dlc's one random generator, the same on every machine and backend:
 * xoshiro256** seeded through splitmix64.  rt_rng_seed_stream derives an
 * independent stream from (seed, name) with FNV-1a of the name, so adding a
 * parameter to a model does not change how the others are initialised. */
typedef struct RtRng {
  uint64_t s[4];
} RtRng;

void rt_rng_seed(RtRng *r, uint64_t seed);
void rt_rng_seed_stream(RtRng *r, uint64_t seed, const char *name);
uint64_t rt_rng_next(RtRng *r);
double rt_rng_uniform(RtRng *r);              /* [0, 1), 53 bits */
double rt_rng_normal(RtRng *r);               /* N(0, 1), Box-Muller */
uint64_t rt_rng_below(RtRng *r, uint64_t n);  /* unbiased, [0, n) */
void rt_rng_shuffle(RtRng *r, int64_t *idx, int64_t n);  /* Fisher-Yates */

/* Parameter initialisers (the torch.nn.init formulas).  fan_in and fan_out
 * as torch computes them: for a [out, in, k...] weight, fan_in = in*prod(k),
 * fan_out = out*prod(k). */
typedef enum RtInitKind {
  INIT_ZEROS,
  INIT_ONES,
  INIT_CONSTANT,        /* a */
  INIT_UNIFORM,         /* U(a, b) */
  INIT_NORMAL,          /* N(mean=a, std=b) */
  INIT_KAIMING_UNIFORM, /* gain sqrt(2): U(-sqrt(6/fan_in), +) */
  INIT_KAIMING_NORMAL,  /* N(0, sqrt(2/fan_in)) */
  INIT_XAVIER_UNIFORM,  /* U(-sqrt(6/(fan_in+fan_out)), +) */
  INIT_XAVIER_NORMAL,   /* N(0, sqrt(2/(fan_in+fan_out))) */
  INIT_TORCH_DEFAULT,   /* nn.Linear/Conv default: U(-1/sqrt(fan_in), +) */
  INIT_COUNT
} RtInitKind;

const char *rt_init_name(RtInitKind k);
void rt_init_fill(float *p, int64_t n, RtInitKind k, double a, double b,
                  int64_t fan_in, int64_t fan_out, RtRng *r);

/* --- data sets -----------------------------------------------------------
 * IDX (MNIST family), gzip'd or plain (zlib reads both): the magic gives the
 * element type and rank; every dimension is checked against the file size.
 * u8 images come back as DT_U8 tensors; rt_to_f32_scaled converts. */
RtStatus rt_idx_read(const char *path, RtTensor *out, RtError *err);
/* CSV of numbers, optional header row (detected: a non-numeric first row),
 * comma separated; every row must have the same number of fields.  Returns
 * an f32 [rows, cols] tensor. */
RtStatus rt_csv_read(const char *path, RtTensor *out, RtError *err);
/* u8 (or any numeric) to f32 with y = x * scale + shift. */
RtStatus rt_to_f32_scaled(const RtTensor *in, double scale, double shift,
                          RtTensor *out, RtError *err);

#endif
