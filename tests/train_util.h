/*
 * train_util.h — what the training tests share (test_train.c and
 * test_train_cli.c): reading and writing tensors and files, the tiny
 * model and its batch, comparing tensor sets, scratch directories, and
 * running the dlc executable with its output captured.
 */
#ifndef DLC_TESTS_TRAIN_UTIL_H
#define DLC_TESTS_TRAIN_UTIL_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver/trainer.h"
#include "runtime/rt.h"
#include "tests/memlog.h"
#include "tests/testutil.h"

#define TRAIN(name) FIXTURE("train/" name)

/* --- helpers: diagnostics, files, models ------------------------------------- */

static inline RtTensor read_npy(const char *path) {
  RtTensor t;
  RtError err;
  cr_assert_eq(rt_npy_read(path, &t, &err), RT_OK, "%s", err.msg);
  return t;
}

static inline void read_st(const char *path, RtTensorSet *s) {
  RtError err;
  rt_set_init(s);
  cr_assert_eq(rt_safetensors_read(path, s, &err), RT_OK, "%s", err.msg);
}

static inline void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot write %s", path);
  cr_assert_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

static inline void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

/* text with the first `from` replaced by `to` (malloc'd). */
static inline char *replace_once(const char *text, const char *from, const char *to) {
  const char *at = strstr(text, from);
  cr_assert(at, "no '%s' in the model", from);
  size_t n = strlen(text) - strlen(from) + strlen(to) + 1;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  return out;
}

/* tiny.dl with extra lines added at the end of its training section
 * (malloc'd). */
static inline char *tiny_variant(const char *extra) {
  size_t len;
  char *src = tu_read_file(TRAIN("tiny.dl"), &len);
  cr_assert(src);
  char *close = strrchr(src, '}');
  cr_assert(close);
  size_t head = (size_t)(close - src), n = len + strlen(extra) + 2;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s\n%s", (int)head, src, extra, close);
  free(src);
  return out;
}

static inline void load_tiny(Model *m, const char *extra, Log *l) {
  if (!extra) {
    cr_assert_eq(fe_load_file(m, TRAIN("tiny.dl"), &l->d), 0, "%s", log_text(l));
    return;
  }
  char *text = tiny_variant(extra);
  cr_assert_eq(fe_load_string(m, "tiny.dl", text, &l->d), 0, "%s\n%s", text, log_text(l));
  free(text);
}

/* The fixture batch: tiny.x f32 [4, 6], tiny.y i64 [4]. */
typedef struct Batch {
  RtTensor x, y;
} Batch;

static inline Batch tiny_batch(void) {
  Batch b = {read_npy(TRAIN("tiny.x.npy")), read_npy(TRAIN("tiny.y.npy"))};
  cr_assert_eq(b.x.dtype, DT_F32);
  cr_assert_eq(b.y.dtype, DT_I64);
  return b;
}

static inline void batch_free(Batch *b) {
  rt_tensor_free(&b->x);
  rt_tensor_free(&b->y);
}

static inline int same_shape(const RtTensor *a, const RtTensor *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return 0;
  for (int k = 0; k < a->rank; k++)
    if (a->shape[k] != b->shape[k]) return 0;
  return 1;
}

/* Every tensor of want is in got with the same shape and values within
 * rtol (absolute floor 1e-6), and got has nothing else. */
static inline void expect_sets_near(RtTensorSet *got, RtTensorSet *want, double rtol, const char *what) {
  cr_expect_eq(got->count, want->count, "%s: the trainer has %d tensors, torch %d", what, got->count, want->count);
  for (int i = 0; i < got->count; i++)
    cr_expect(rt_set_find(want, got->items[i].name), "%s: '%s' is not in torch's state", what, got->items[i].name);
  for (int i = 0; i < want->count; i++) {
    const char *name = want->items[i].name;
    const RtTensor *w = &want->items[i].t, *g = rt_set_find(got, name);
    if (!g) {
      cr_expect(0, "%s: no tensor '%s'", what, name);
      continue;
    }
    if (!same_shape(g, w)) {
      cr_expect(0, "%s: '%s' has another shape or dtype than torch's", what, name);
      continue;
    }
    const float *a = g->data, *b = w->data;
    int64_t n = rt_tensor_numel(w), worst = -1;
    double worst_err = 0;
    for (int64_t k = 0; k < n; k++) {
      double e = tu_relerr(a[k], b[k], 1e-6);
      if (!(e <= worst_err) || worst < 0) worst_err = e, worst = k;
    }
    cr_expect(n == 0 || worst_err <= rtol, "%s: %s[%lld] = %.9g, torch %.9g (relative error %.3g)", what, name,
              (long long)worst, a[worst], b[worst], worst_err);
  }
}

/* got and want hold the same names with bit-identical data. */
static inline void expect_sets_equal(RtTensorSet *got, RtTensorSet *want, const char *what) {
  cr_expect_eq(got->count, want->count, "%s: %d tensors, want %d", what, got->count, want->count);
  for (int i = 0; i < want->count; i++) {
    const RtTensor *w = &want->items[i].t, *g = rt_set_find(got, want->items[i].name);
    cr_expect(g && same_shape(g, w) && memcmp(g->data, w->data, rt_tensor_nbytes(w)) == 0,
              "%s: '%s' differs", what, want->items[i].name);
  }
}

static inline void copy_set(RtTensorSet *dst, const RtTensorSet *src) {
  RtError err;
  rt_set_init(dst);
  for (int i = 0; i < src->count; i++) {
    RtTensor c = src->items[i].t;
    c.data = malloc(rt_tensor_nbytes(&c) + 1);
    memcpy(c.data, src->items[i].t.data, rt_tensor_nbytes(&c));
    cr_assert_eq(rt_set_add(dst, src->items[i].name, &c, &err), RT_OK, "%s", err.msg);
  }
}

/* Removes a scratch directory of plain files (left behind when a test
 * fails, for a look at what it wrote). */
static inline void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  char path[1024];
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

static inline const char *backend_name(Backend b) { return b == BACKEND_C ? "c" : b == BACKEND_JIT ? "jit" : "interp"; }

/* --- helpers: running the dlc executable ------------------------------------------ */

typedef struct Proc {
  int status;         /* exit code, or -signal */
  char *out, *err;    /* what it printed */
} Proc;

/* Runs `dlc ARGS...` (NULL-terminated) with stdout and stderr captured in
 * files under dir. */
static inline Proc run_dlc(const char *dir, ...) {
  const char *argv[48] = {DLC_EXE};
  int argc = 1;
  va_list ap;
  va_start(ap, dir);
  for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
    cr_assert(argc < 47);
    argv[argc++] = a;
  }
  va_end(ap);
  char out[600], err[600];
  snprintf(out, sizeof out, "%s/stdout.txt", dir);
  snprintf(err, sizeof err, "%s/stderr.txt", dir);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(126);
    execv(DLC_EXE, (char *const *)argv);
    _exit(127);
  }
  int ws;
  cr_assert_eq(waitpid(pid, &ws, 0), pid);
  Proc p = {WIFEXITED(ws) ? WEXITSTATUS(ws) : -WTERMSIG(ws), tu_read_file(out, NULL), tu_read_file(err, NULL)};
  cr_assert(p.out && p.err);
  return p;
}

static inline void proc_free(Proc *p) {
  free(p->out);
  free(p->err);
}

static inline int count_lines_starting(const char *text, const char *prefix) {
  int n = 0;
  for (const char *s = text; s && *s; s = strchr(s, '\n') ? strchr(s, '\n') + 1 : NULL)
    n += strncmp(s, prefix, strlen(prefix)) == 0;
  return n;
}

/* A data set for tiny.dl (6 features, classes 0..2) that a batch of 4 does
 * not divide, so the last batch is partial and the shuffle matters.  The
 * class shifts one feature, so the model has something to learn. */
static inline void write_blobs(const char *dir, int64_t n, int64_t feats, const char *xname, const char *yname) {
  RtTensor x, y;
  RtError err;
  int64_t xs[2] = {n, feats};
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, xs, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, &n, &err), RT_OK);
  for (int64_t s = 0; s < n; s++) {
    int64_t c = s * 7 % 3;
    ((int64_t *)y.data)[s] = c;
    for (int64_t f = 0; f < feats; f++)
      ((float *)x.data)[s * feats + f] = (float)((s * 37 + f * 11) % 17) / 8.0f - 1.0f + (f == c ? 2.0f : 0.0f);
  }
  char px[600], py[600];
  snprintf(px, sizeof px, "%s/%s", dir, xname);
  snprintf(py, sizeof py, "%s/%s", dir, yname);
  cr_assert_eq(rt_npy_write(px, &x, &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_npy_write(py, &y, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
}

#endif
