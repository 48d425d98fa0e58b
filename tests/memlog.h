/*
 * memlog.h — diagnostics written into memory, so a test can read what a
 * user would see: log_open gives a Diags over an open_memstream,
 * log_text the text so far, log_close frees it.
 */
#ifndef DLC_TESTS_MEMLOG_H
#define DLC_TESTS_MEMLOG_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

typedef struct Log {
  FILE *f;
  char *buf;
  size_t len;
  Diags d;
} Log;

static inline void log_open(Log *l) {
  memset(l, 0, sizeof *l);
  l->f = open_memstream(&l->buf, &l->len);
  cr_assert(l->f);
  diag_init(&l->d, l->f);
}

static inline const char *log_text(Log *l) {
  fflush(l->f);
  return l->buf ? l->buf : "";
}

static inline void log_close(Log *l) {
  fclose(l->f);
  free(l->buf);
}

#endif
