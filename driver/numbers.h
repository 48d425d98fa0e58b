/*
 * numbers.h — the one strict number parser of the command line, the REPL
 * and checkpoint metadata.
 */
#ifndef DLC_NUMBERS_H
#define DLC_NUMBERS_H

#include <stdint.h>

#include "ir/ir.h"

/* The ranges of the settings that flags and REPL commands change.  The
 * batch is clamped to the training set later; its bound keeps every size
 * computed from it far from overflow. */
#define DLC_MAX_EPOCHS 1000000000LL
#define DLC_MAX_BATCH 2147483647LL
#define DLC_MAX_CROP 65536LL
#define DLC_MIN_LR 1e-12
#define DLC_MAX_LR 1e6

/* s is an integer in [lo, hi] written out whole (no sign-only, spaces,
 * trailing text, or value past int64).  Returns 0 and sets *out, or -1
 * after a message naming what, the range and s. */
int dlc_parse_int(const char *what, const char *s, int64_t lo, int64_t hi, int64_t *out, Diags *d);
/* --threads N: an integer in [1, RT_POOL_MAX_THREADS]; interp says the
 * backend is the reference interpreter, which runs on one thread only.
 * Returns 0 and sets *out, or -1 after a message. */
int dlc_parse_threads(const char *s, int interp, int *out, Diags *d);
/* s is a finite number in [lo, hi] written out whole; as above. */
int dlc_parse_real(const char *what, const char *s, double lo, double hi, double *out, Diags *d);

#endif
