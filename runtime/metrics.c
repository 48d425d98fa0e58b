/*
 * metrics.c — top-k accuracy and the per-epoch metrics log.
 *
 * Top-k ranks a row's classes as a stable descending sort does
 * (torch.sort(descending=True, stable=True)): a higher score comes first,
 * equal scores keep class order (the lower index first), and NaN sorts
 * above every number, as in torch.  A label is among the top k when fewer
 * than k classes come before it; counting those needs no sort and no
 * scratch memory, and it stops at the k-th.  With k = 1 the rule is
 * exactly torch.argmax(scores) == label (argmax returns the first maximum),
 * the accuracy training reports.  torch.topk is not used as the reference
 * because its order among tied scores is unspecified.
 *
 * The metrics log keeps every row in memory and rewrites the whole CSV
 * through rt_write_file_atomic after each epoch.  The file is small (one
 * row per epoch), and a rewrite means a reader (or a run interrupted
 * mid-write) only ever sees a complete file with a header and whole rows,
 * never a torn last line as appending would risk.
 */
#include "runtime/rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- top-k ------------------------------------------------------------------ */

/* 1 when class a (score sa) comes before class b (score sb). */
static int comes_before(float sa, int64_t a, float sb, int64_t b) {
  if (isnan(sa) || isnan(sb)) return isnan(sa) && (!isnan(sb) || a < b);
  return sa > sb || (sa == sb && a < b);
}

static int label_in_topk(const float *s, int64_t label, int64_t classes, int k) {
  if (label < 0 || label >= classes || k <= 0) return 0;
  int ahead = 0;
  for (int64_t c = 0; c < classes; c++)
    if (c != label && comes_before(s[c], c, s[label], label) && ++ahead >= k)
      return 0;
  return 1;
}

int64_t rt_topk_correct(const float *scores, const int64_t *labels, int64_t n,
                        int64_t classes, int k) {
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i++)
    correct += label_in_topk(scores + i * classes, labels[i], classes, k);
  return correct;
}

/* --- the metrics log ---------------------------------------------------------- */

/* Bytes that one value takes at most: "%.10g" of a double is at most 17
 * characters ("-1.234567891e-308"), plus its separator. */
#define METRIC_MAX_CHARS 24

RtStatus rt_metrics_init(RtMetricsLog *log, const char *header, RtError *err) {
  memset(log, 0, sizeof *log);
  size_t len = strlen(header);
  if (len == 0 || strpbrk(header, "\r\n"))
    return rt_fail(err, RT_ERR_FORMAT, "metrics header '%s': expected one "
                   "non-empty line of comma-separated names", header);
  log->header = rt_malloc(len + 1);
  if (!log->header) return rt_fail(err, RT_ERR_NOMEM, "out of memory");
  memcpy(log->header, header, len + 1);
  log->cols = 1;
  for (const char *c = header; *c; c++) log->cols += *c == ',';
  return RT_OK;
}

void rt_metrics_free(RtMetricsLog *log) {
  if (!log) return;
  free(log->header);
  free(log->vals);
  memset(log, 0, sizeof *log);
}

RtStatus rt_metrics_add(RtMetricsLog *log, const double *row, int ncols,
                        RtError *err) {
  if (ncols != log->cols)
    return rt_fail(err, RT_ERR_SHAPE, "metrics row of %d values, expected %d "
                   "for the header '%s'", ncols, log->cols, log->header);
  if (log->rows == log->cap) {
    int64_t ncap = log->cap ? log->cap * 2 : 16;
    double *p = rt_realloc(log->vals, sizeof *p * (size_t)(ncap * log->cols));
    if (!p) return rt_fail(err, RT_ERR_NOMEM, "out of memory adding a metrics row");
    log->vals = p;
    log->cap = ncap;
  }
  memcpy(log->vals + log->rows * log->cols, row, sizeof *row * (size_t)ncols);
  log->rows++;
  return RT_OK;
}

static size_t put_value(char *buf, size_t cap, int first, double v) {
  const char *sep = first ? "" : ",";
  int n = isnan(v) ? snprintf(buf, cap, "%snan", sep)
                   : snprintf(buf, cap, "%s%.10g", sep, v);
  return n < 0 ? 0 : (size_t)n;
}

/* The whole CSV as one malloc'd string; NULL when out of memory. */
static char *metrics_text(const RtMetricsLog *log, size_t *len) {
  size_t hlen = strlen(log->header);
  size_t cap = hlen + 2 + (size_t)log->rows * ((size_t)log->cols * METRIC_MAX_CHARS + 1);
  char *buf = rt_malloc(cap);
  if (!buf) return NULL;
  memcpy(buf, log->header, hlen);
  size_t at = hlen;
  buf[at++] = '\n';
  for (int64_t r = 0; r < log->rows; r++) {
    for (int c = 0; c < log->cols; c++)
      at += put_value(buf + at, cap - at, c == 0, log->vals[r * log->cols + c]);
    buf[at++] = '\n';
  }
  *len = at;
  return buf;
}

RtStatus rt_metrics_write(const RtMetricsLog *log, const char *path, RtError *err) {
  size_t len = 0;
  char *text = metrics_text(log, &len);
  if (!text) return rt_fail(err, RT_ERR_NOMEM, "%s: out of memory", path);
  const void *chunks[1] = {text};
  RtStatus st = rt_write_file_atomic(path, chunks, &len, 1, err);
  free(text);
  return st;
}
