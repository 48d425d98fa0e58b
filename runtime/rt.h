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

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#define RT_MAX_RANK 8

/* --- memory (alloc.c) ------------------------------------------------------
 * Every heap allocation of dlc goes through these, so a test can make the
 * n-th one fail.  rt_malloc & co. return NULL on failure (free their
 * blocks with free).  rt_x* never return NULL: a failure unwinds to the
 * innermost RtOomScope, freeing every rt_x block allocated since its entry;
 * release rt_x blocks with rt_xfree only.  Usage:
 *
 *   RtOomScope oom;
 *   rt_oom_enter(&oom);
 *   if (setjmp(oom.jb)) { ...release what is not an rt_x block...; report; }
 *   ...work...
 *   rt_oom_leave(&oom);
 *
 * A handler that cannot report itself passes the failure on with rt_oom().
 * Without a scope, a failure prints "dlc: out of memory" and aborts. */
typedef struct RtOomScope {
  jmp_buf jb;
  uint64_t mark;
  struct RtOomScope *outer;
} RtOomScope;

void *rt_malloc(size_t n);
void *rt_calloc(size_t count, size_t size);
void *rt_realloc(void *p, size_t n);
char *rt_strdup(const char *s);
void *rt_xmalloc(size_t n);
void *rt_xcalloc(size_t count, size_t size);
void *rt_xrealloc(void *p, size_t n);
char *rt_xstrdup(const char *s);
char *rt_xstrndup(const char *s, size_t n);
void rt_xfree(void *p);
void rt_oom_enter(RtOomScope *s);
void rt_oom_leave(RtOomScope *s);
_Noreturn void rt_oom(void);
/* Failure injection: the n-th allocation from now fails (0: none), and with
 * repeat every one after it too; the count of attempts restarts at 0. */
void rt_alloc_fail_at(uint64_t n, int repeat);
uint64_t rt_alloc_count(void);     /* attempts since the last rt_alloc_fail_at */
uint64_t rt_alloc_failures(void);  /* injected failures since then */
/* DLC_FAIL_ALLOC=n or n+ (repeat); -1 when it is set but malformed. */
int rt_alloc_fail_from_env(void);

/* Element types.  The IR uses the same enum.  DT_COUNT counts the types
 * a tensor or a buffer can hold (arrays indexed by storage type are
 * DT_COUNT long); DT_BOOL, after it, is the type of kernel-IR conditions
 * (ir/kernel.h) and is never stored. */
typedef enum DType {
  DT_F32,
  DT_F64,
  DT_I32,
  DT_I64,
  DT_U8,
  DT_COUNT,
  DT_BOOL = DT_COUNT + 1
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
/* The same with a copy of t's data (t is left as it is). */
RtStatus rt_set_add_copy(RtTensorSet *s, const char *name, const RtTensor *t, RtError *err);
RtTensor *rt_set_find(RtTensorSet *s, const char *name);
RtStatus rt_set_meta(RtTensorSet *s, const char *key, const char *val, RtError *err);
const char *rt_set_get_meta(const RtTensorSet *s, const char *key);

RtStatus rt_safetensors_read(const char *path, RtTensorSet *out, RtError *err);
/* Tensors are written in the order they were added; atomic (see above). */
RtStatus rt_safetensors_write(const char *path, const RtTensorSet *s, RtError *err);

/* --- atomic file writes (files.c) ----------------------------------------
 * One output file: its path and its bytes, in chunks. */
typedef struct RtFileOut {
  const char *path;
  const void *const *chunks;
  const size_t *lens;
  int nchunks;
} RtFileOut;

/* Writes the n files of outs as a set: every destination is checked first
 * (not a directory, in a writable directory), each file goes to a
 * temporary beside it (fsync'd), and only when all are complete are they
 * renamed over their targets; on any failure before that every temporary
 * is removed and every target keeps its old contents.  A path named twice
 * in one set is refused.  Leftover
 * temporaries of interrupted earlier writes of a target are removed. */
RtStatus rt_write_files_atomic(const RtFileOut *outs, int n, RtError *err);
/* One file: tmp file beside path, fsync, rename, fsync dir. */
/* A file's bytes prepared for rt_write_files_atomic, so that several files
 * of different formats can be written as one set: out's chunk lists and
 * header are owned (rt_encoded_free), tensor data is borrowed and must
 * outlive the write. */
typedef struct RtEncoded {
  RtFileOut out;
  void *owned[3];
} RtEncoded;
RtStatus rt_npy_encode(const char *path, const RtTensor *t, RtEncoded *e, RtError *err);
RtStatus rt_safetensors_encode(const char *path, const RtTensorSet *s, RtEncoded *e, RtError *err);
/* Writes the n encoded files as one set (rt_write_files_atomic). */
RtStatus rt_write_encoded(const RtEncoded *e, int n, RtError *err);
void rt_encoded_free(RtEncoded *e);
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

/* --- training data, metrics and progress ----------------------------------
 * What `dlc train` and emitted trainers need around the model: data sets in
 * memory, a reproducible sample order, accuracy, a per-epoch CSV log and a
 * live progress line.  (dataset.c, metrics.c, progress.c) */
#include <stdio.h>   /* FILE, for the progress line */

/* A labelled data set held in memory.  x is f32 [n, sample...] and
 * contiguous, so a reshape only changes the shape array.  y is i64 [n]
 * class labels (every loader checks them: integral and >= 0), or, from
 * rt_data_npy with a float y, f32 [n] or [n, k] regression targets.  An
 * empty set (n = 0) still holds allocated tensors with shape[0] = 0. */
/* A data set of named columns (rt_data_npy_columns) holds its arrays in
 * cols[0..ncols), each [n, ...] in its file's dtype, and leaves x and y
 * empty; the caller keeps the names (the order of its paths). */
#define RT_DATA_MAX_COLS 8
typedef struct RtDataset {
  RtTensor x;
  RtTensor y;
  int64_t n;
  int ncols;
  RtTensor cols[RT_DATA_MAX_COLS];
} RtDataset;

void rt_dataset_free(RtDataset *d);
/* Elements of x per sample (the product of x.shape[1..]). */
int64_t rt_dataset_features(const RtDataset *d);
/* The largest label of an i64 y, or -1 when y is not i64 or n = 0; a
 * trainer takes max + 1 as the smallest class count that fits. */
int64_t rt_dataset_max_label(const RtDataset *d);
/* Fails (RT_ERR_FORMAT, naming `what`, the first bad sample and the largest
 * label) unless y is i64 and every label is below classes. */
RtStatus rt_dataset_check_labels(const RtDataset *d, int64_t classes,
                                 const char *what, RtError *err);
/* Gives each sample the shape sample_shape[0..rank), which must hold the
 * same number of elements; x's data does not move. */
RtStatus rt_dataset_reshape(RtDataset *d, int rank, const int64_t *sample_shape,
                            RtError *err);

/* Loaders.  Each leaves its outputs empty (zeroed) on failure, and checks
 * that x and y have the same number of samples.  Wherever x arrives as u8
 * it is taken as pixels and scaled by 1/255 to [0, 1]; other dtypes are
 * converted to f32 as they are. */

/* DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, as Debian's
 * dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist:
 * x f32 [n, 28, 28] in [0, 1], y i64 in 0..9 (60000 + 10000 samples). */
RtStatus rt_data_fashion_mnist(const char *dir, RtDataset *train,
                               RtDataset *test, RtError *err);
/* An IDX pair (gzip'd or plain): images [n, ...], labels [n] of an integer
 * type (u8, i8, i16, i32). */
RtStatus rt_data_idx(const char *images, const char *labels, RtDataset *out,
                     RtError *err);
/* A CSV of numbers (see rt_csv_read; a header row is optional): the label
 * column (0-based; -1 = the last) becomes y i64, the others x f32
 * [n, cols - 1].  A label that is not an integer >= 0 is an error naming
 * file:line. */
RtStatus rt_data_csv(const char *path, int label_column, RtDataset *out,
                     RtError *err);
/* Two .npy files: x [n, ...] of any dtype; y [n] of an integer dtype
 * (becomes i64, must be >= 0), or f32/f64 [n] or [n, k] (kept f32, for
 * regression). */
RtStatus rt_data_npy(const char *xpath, const char *ypath, RtDataset *out,
                     RtError *err);
/* count (1..RT_DATA_MAX_COLS) .npy files as columns cols[0..count), each
 * kept in its own dtype and shape [n, ...]; every file must hold the same
 * number of rows n (an error names the first file and the one that
 * differs). */
RtStatus rt_data_npy_columns(const char *const *paths, int count,
                             RtDataset *out, RtError *err);

/* A character-level corpus (text.c): the vocabulary is the file's
 * distinct bytes in increasing order (sym[k] is byte k's symbol, id[b]
 * byte b's id or -1). */
#define RT_TEXT_MAX_BYTES ((size_t)1 << 30)
typedef struct RtVocab {
  int n;
  unsigned char sym[256];
  int id[256];
} RtVocab;

void rt_vocab_build(const unsigned char *s, size_t n, RtVocab *v);
/* The vocabulary as text, two hex digits per symbol in id order, into
 * out[2 * v->n + 1] (the checkpoint's dlc.vocab). */
#define RT_VOCAB_TEXT_MAX (2 * 256 + 1)
void rt_vocab_encode(const RtVocab *v, char *out);
/* Reads rt_vocab_encode's text; RT_ERR_FORMAT, with what in the message,
 * when it is empty, not pairs of hex digits, or repeats a byte. */
RtStatus rt_vocab_decode(const char *s, RtVocab *v, const char *what, RtError *err);
/* The file (rt_x memory in *data, *len bytes, at least one) and its vocabulary. */
RtStatus rt_text_read(const char *path, unsigned char **data, size_t *len, RtVocab *v, RtError *err);
/* Non-overlapping windows for next-character prediction: x i64 [n, seq]
 * (ids of characters i*seq .. i*seq+seq-1), y i64 [n, seq] (the next
 * character of each), n = (len - 1) / seq >= 1. */
RtStatus rt_data_text(const char *path, int64_t seq, RtDataset *out, RtVocab *v, RtError *err);

/* Splits `all` (consumed: left empty, also on failure) into train and val.
 * val gets round(n * val_fraction) samples chosen by a permutation from
 * rt_rng_seed_stream(seed, "split"), train the rest; each part keeps the
 * samples' original relative order.  val_fraction must be in [0, 1];
 * 0 gives an empty val (n = 0). */
RtStatus rt_dataset_split(RtDataset *all, double val_fraction, uint64_t seed,
                          RtDataset *train, RtDataset *val, RtError *err);

/* The order of samples in epoch `epoch` (0-based) into idx[0..n): 0..n-1,
 * then, if shuffle, a Fisher-Yates shuffle (rt_rng_shuffle) from
 * rt_rng_seed_stream(seed, "epoch/<epoch>").  It depends only on
 * (seed, epoch), so a run resumed at epoch k sees the same batches. */
void rt_epoch_order(int64_t n, uint64_t seed, int64_t epoch, int shuffle,
                    int64_t *idx);
/* Copies samples idx[0..count) of d into x_out (count * features floats)
 * and, unless y_out is NULL, y_out (count samples of y's dtype).  The last
 * batch of an epoch may be partial: pass the smaller count. */
void rt_batch_gather(const RtDataset *d, const int64_t *idx, int64_t count,
                     void *x_out, void *y_out);
/* Copies rows idx[0..count) of t ([n, ...], any dtype) into out. */
void rt_rows_gather(const RtTensor *t, const int64_t *idx, int64_t count,
                    void *out);

/* Rows of scores[n, classes] whose label is among the k top scores.  The
 * ranking is torch.sort(descending=True, stable=True): a higher score
 * comes first, equal scores keep class order (the lower index first), NaN
 * is above every number.  With k = 1 a row is correct exactly when
 * torch.argmax(scores) == label.  (torch.topk agrees except where ties
 * straddle the k-th place: it leaves the order among ties unspecified.)
 * A label outside [0, classes), or k < 1, never counts. */
int64_t rt_topk_correct(const float *scores, const int64_t *labels, int64_t n,
                        int64_t classes, int k);

/* One row of doubles per epoch under a header fixed by the caller, e.g.
 * "epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds".  Values are
 * written with %.10g (NaN as "nan", for instance a val_loss without val). */
typedef struct RtMetricsLog {
  char *header;     /* malloc'd copy, no newline */
  int cols;         /* fields in the header */
  int64_t rows, cap;
  double *vals;     /* rows * cols, row-major */
} RtMetricsLog;

RtStatus rt_metrics_init(RtMetricsLog *log, const char *header, RtError *err);
/* Appends a row of exactly log->cols values (ncols is checked). */
RtStatus rt_metrics_add(RtMetricsLog *log, const double *row, int ncols,
                        RtError *err);
/* Rewrites the whole CSV atomically (rt_write_file_atomic): after a crash
 * the file holds every row of the last completed write. */
RtStatus rt_metrics_write(const RtMetricsLog *log, const char *path, RtError *err);
void rt_metrics_free(RtMetricsLog *log);

/* Seconds on a monotonic clock (CLOCK_MONOTONIC), from an arbitrary origin. */
double rt_now(void);

/* A live progress line for one pass over the batches of an epoch.  On a
 * terminal, update redraws one line with \r (at most ten times a second,
 * and always for the last batch): label, bar, batch i/n, images/s, running
 * loss and accuracy, ETA.  Colour unless NO_COLOR is set (non-empty) or
 * TERM=dumb.  Not on a terminal, nothing is printed at all, so logs stay
 * clean: the caller prints its own per-epoch summary either way. */
typedef struct RtProgress {
  FILE *out;
  char label[24];
  int64_t total, batch_size, done;
  int tty, color;
  double start, last_draw;
  int drawn;        /* a line is on screen */
  int width;        /* visible characters of that line */
  int columns;      /* of the terminal; the line stays narrower */
  int bar;          /* cells of the bar, fixed at the first draw; 0 = none */
  double (*now)(void *ctx);
  void *now_ctx;
} RtProgress;

/* tty: the caller passes isatty(fileno(out)).  Starts the timer. */
void rt_progress_begin(RtProgress *p, FILE *out, const char *label,
                       int64_t total_batches, int64_t batch_size, int tty);
/* Replaces the clock (default rt_now) and restarts the timer: for tests. */
void rt_progress_set_clock(RtProgress *p, double (*now)(void *ctx), void *ctx);
/* batches_done of total; running_acc is a fraction in [0, 1] (NaN hides it). */
void rt_progress_update(RtProgress *p, int64_t batches_done, double running_loss,
                        double running_acc);
/* On a terminal, erases the line, leaving the cursor at its start. */
void rt_progress_end(RtProgress *p);

/* --- learning-rate schedules (schedule.c) ---------------------------------
 * torch.optim.lr_scheduler's formulas in closed form: StepLR,
 * ExponentialLR, CosineAnnealingLR (by epoch from 0) and CyclicLR
 * (triangular, by iteration from 0, between min_lr and max_lr). */
typedef enum RtScheduleKind {
  SCHED_CONSTANT,
  SCHED_STEP,         /* base_lr * gamma^(epoch / step_size) */
  SCHED_EXPONENTIAL,  /* base_lr * gamma^epoch */
  SCHED_COSINE,       /* eta_min + (base_lr - eta_min)(1 + cos(pi epoch / t_max)) / 2 */
  SCHED_CYCLIC,       /* triangle between min_lr and max_lr, step_size_up iterations up */
  SCHED_COUNT
} RtScheduleKind;

typedef struct RtSchedule {
  RtScheduleKind kind;
  double base_lr;
  int64_t step_size;
  double gamma, t_max, eta_min, min_lr, max_lr, step_size_up;
} RtSchedule;

double rt_schedule_lr(const RtSchedule *s, int64_t epoch, int64_t iteration);

/* --- data augmentation (augment.c) -----------------------------------------
 * In place on n samples of sample_shape (the last two dimensions are H, W):
 * a left-right mirror with probability 1/2 (do_flip), and a random shift by
 * up to crop pixels each way with zeros coming in (pad-and-crop). */
RtStatus rt_augment_batch(float *x, int64_t n, int rank, const int64_t *sample_shape, int do_flip, int64_t crop,
                          RtRng *r, RtError *err);
/* x[i] += std * N(0, 1): the corruption of a denoising autoencoder. */
void rt_add_noise(float *x, int64_t n, double std, RtRng *r);
/* Keeps the samples whose label is in spec ("0-4", "5,7,9") and renumbers
 * the labels 0, 1, ... in increasing order: a task on a subset of the
 * classes (transfer learning). */
RtStatus rt_dataset_select_classes(RtDataset *d, const char *spec, RtError *err);

/* --- PNG and image grids (png.c) --------------------------------------------
 * 8-bit grey (channels 1) or RGB (channels 3) pixels, row-major, top row
 * first, as a PNG file: filter 0, one zlib-compressed IDAT chunk.  Each
 * side is 1..RT_PNG_MAX_SIDE.  rt_png_encode hands back a malloc'd buffer
 * (free it with free). */
#define RT_PNG_MAX_SIDE 16384
RtStatus rt_png_encode(const uint8_t *pixels, int64_t width, int64_t height, int channels, uint8_t **out,
                       size_t *len, RtError *err);
RtStatus rt_png_write(const char *path, const uint8_t *pixels, int64_t width, int64_t height, int channels,
                      RtError *err);
/* A grid of grey images (f32[N, 1, H, W] or [N, H, W]): rows of `cols`
 * tiles (fewer when N < cols), each magnified `scale` times, `pad` pixels
 * of grey 128 between and around them.  A value v becomes
 * round(255 * (v - lo) / (hi - lo)) clamped to 0..255 (NaN: 0); with
 * autorange, lo and hi are the smallest and largest finite values of the
 * whole tensor instead.  rt_image_grid hands back malloc'd grey pixels. */
typedef struct RtGridOpts {
  int64_t cols;
  int scale, pad, autorange;
  float lo, hi;
} RtGridOpts;
RtStatus rt_image_grid(const RtTensor *images, const RtGridOpts *o, uint8_t **pixels, int64_t *width,
                       int64_t *height, RtError *err);
RtStatus rt_image_grid_png(const char *path, const RtTensor *images, const RtGridOpts *o, RtError *err);

/* --- a thread pool for the parallel loops of compiled code (pool.c) --------------
 * A pool of n threads (the caller and n - 1 sleeping workers) made once
 * and reused.  rt_pool_run calls fn(lo, hi, ctx) on contiguous chunks
 * that cover [0, count), one chunk per thread, the caller running the
 * last, and returns when all are done; a NULL pool, one thread, or a
 * call while another thread's job runs call fn(0, count, ctx) directly.
 * DLC_POOL_TRACE=FILE writes a line per job to FILE when the pool is
 * freed (pool.c; bench/pool_trace.py reads it). */
#define RT_POOL_MAX_THREADS 256
typedef void (*RtParallelFn)(int64_t lo, int64_t hi, void *ctx);
typedef struct RtPool RtPool;
RtStatus rt_pool_new(int nthreads, RtPool **out, RtError *err);
void rt_pool_free(RtPool *p);
int rt_pool_threads(const RtPool *p);
void rt_pool_run(RtPool *p, RtParallelFn fn, int64_t count, void *ctx);
/* Rows idx[0..count) of src (rows of row bytes) into dst, one after
 * another, the rows shared among the pool's threads (a NULL pool: the
 * calling thread): the same bytes whatever the thread count. */
void rt_pool_gather_rows(RtPool *p, const void *src, size_t row, const int64_t *idx, int64_t count, void *dst);

#endif
