/*
 * text.c — a character-level corpus for language models: the vocabulary
 * and the training windows of a text file.
 *
 * The vocabulary is the file's distinct bytes in increasing order, so id
 * k is the k-th smallest byte present: the same file always gives the
 * same ids, and a model trained on it can be sampled from by rebuilding
 * the vocabulary from the file (or from the string rt_text_vocab_str
 * writes).  Bytes, not code points: a UTF-8 character of several bytes is
 * several steps, as in Karpathy's char-rnn run on bytes.
 *
 * Windows do not overlap: window i covers ids [i*T, i*T + T] (T + 1 ids),
 * its input the first T, its target the last T (each position's next
 * character), so every character but the first is predicted once per
 * epoch.  x and y are i64 [n, T] with n = (len - 1) / T; a file too short
 * for one window, or with no bytes, is an error naming the file.
 */
#include <stdio.h>
#include <string.h>

#include "runtime/rt.h"

void rt_vocab_build(const unsigned char *s, size_t n, RtVocab *v) {
  int seen[256] = {0};
  for (size_t i = 0; i < n; i++) seen[s[i]] = 1;
  v->n = 0;
  for (int b = 0; b < 256; b++) {
    v->id[b] = seen[b] ? v->n : -1;
    if (seen[b]) v->sym[v->n++] = (unsigned char)b;
  }
}

void rt_vocab_encode(const RtVocab *v, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (int k = 0; k < v->n; k++) out[2 * k] = hex[v->sym[k] >> 4], out[2 * k + 1] = hex[v->sym[k] & 15];
  out[2 * v->n] = 0;
}

static int hex_digit(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

RtStatus rt_vocab_decode(const char *s, RtVocab *v, const char *what, RtError *err) {
  size_t len = strlen(s);
  if (len == 0 || len % 2 || len > 2 * 256)
    return rt_fail(err, RT_ERR_FORMAT, "%s: the vocabulary is %zu hex digits, not two for each of 1 to 256 symbols",
                   what, len);
  for (int b = 0; b < 256; b++) v->id[b] = -1;
  v->n = (int)(len / 2);
  for (int k = 0; k < v->n; k++) {
    int hi = hex_digit(s[2 * k]), lo = hex_digit(s[2 * k + 1]);
    if (hi < 0 || lo < 0)
      return rt_fail(err, RT_ERR_FORMAT, "%s: symbol %d of the vocabulary is '%.2s', not two hex digits", what, k, s + 2 * k);
    int b = hi * 16 + lo;
    if (v->id[b] >= 0)
      return rt_fail(err, RT_ERR_FORMAT, "%s: byte %d is both symbol %d and symbol %d of the vocabulary", what, b,
                     v->id[b], k);
    v->id[b] = k, v->sym[k] = (unsigned char)b;
  }
  return RT_OK;
}

/* The whole file into *data (rt_x memory), at most max bytes. */
static RtStatus read_all(const char *path, size_t max, unsigned char **data, size_t *len, RtError *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return rt_fail(err, RT_ERR_IO, "%s: cannot open the text file", path);
  size_t cap = 1 << 16, n = 0, got;
  unsigned char *s = rt_xmalloc(cap);
  while ((got = fread(s + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n > max) break;
    if (n == cap) s = rt_xrealloc(s, cap *= 2);
  }
  int bad = ferror(f);
  fclose(f);
  if (bad || n > max) {
    rt_xfree(s);
    return bad ? rt_fail(err, RT_ERR_IO, "%s: read error", path)
               : rt_fail(err, RT_ERR_FORMAT, "%s: more than %zu bytes of text", path, max);
  }
  *data = s, *len = n;
  return RT_OK;
}

RtStatus rt_text_read(const char *path, unsigned char **data, size_t *len, RtVocab *v, RtError *err) {
  RtStatus st = read_all(path, RT_TEXT_MAX_BYTES, data, len, err);
  if (st) return st;
  if (*len == 0) {
    rt_xfree(*data);
    return rt_fail(err, RT_ERR_FORMAT, "%s: the text file is empty", path);
  }
  rt_vocab_build(*data, *len, v);
  return RT_OK;
}

/* Rows of T ids from s + i*T (x) and s + i*T + 1 (y). */
static void fill_windows(const unsigned char *s, int64_t n, int64_t seq, const RtVocab *v, RtDataset *out) {
  int64_t *x = out->x.data, *y = out->y.data;
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < seq; t++) {
      x[i * seq + t] = v->id[s[i * seq + t]];
      y[i * seq + t] = v->id[s[i * seq + t + 1]];
    }
}

RtStatus rt_data_text(const char *path, int64_t seq, RtDataset *out, RtVocab *v, RtError *err) {
  memset(out, 0, sizeof *out);
  unsigned char *s;
  size_t len;
  if (seq < 1) return rt_fail(err, RT_ERR_SHAPE, "%s: windows of %lld characters", path, (long long)seq);
  RtStatus st = rt_text_read(path, &s, &len, v, err);
  if (st) return st;
  int64_t n = ((int64_t)len - 1) / seq, shape[2] = {n, seq};
  if (n < 1) {
    rt_xfree(s);
    return rt_fail(err, RT_ERR_FORMAT, "%s: %zu bytes do not make one window of %lld characters and its next one",
                   path, len, (long long)seq);
  }
  if ((st = rt_tensor_alloc(&out->x, DT_I64, 2, shape, err)) || (st = rt_tensor_alloc(&out->y, DT_I64, 2, shape, err))) {
    rt_xfree(s);
    rt_dataset_free(out);
    return st;
  }
  fill_windows(s, n, seq, v, out);
  out->n = n;
  rt_xfree(s);
  return RT_OK;
}
