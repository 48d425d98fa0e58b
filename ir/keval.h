/*
 * keval.h — the kernel-IR evaluator: runs one function of a Program on the
 * host, without compiling it (keval.c says what each construct means).
 */
#ifndef DLC_KEVAL_H
#define DLC_KEVAL_H

#include "ir/kernel.h"

/* What one call of a function is given. */
typedef struct KevalArgs {
  const int64_t *syms;    /* each symbol of p->g, 0 <= value <= its max */
  void *const *args;      /* one pointer per argument of the function, in f->args order,
                             each holding the buffer's elements at these symbol values */
  RtTensorSet *tensors;   /* params and state by buffer name, updated in place; may be NULL */
} KevalArgs;

/* Runs function f of p on a.  Temporaries live in per-dtype arenas at
 * their planned offsets (or each on its own before memory planning),
 * filled with all-ones bytes (NaN for floats) at the start of every call.
 * A program that is not well formed (an unknown id, a local read before
 * its declaration, a store into an input) or that goes wrong at run time
 * (an index outside its buffer, integer overflow or division by zero, a
 * float converted to an integer it does not fit) is RT_ERR_FORMAT with a
 * message naming the function, the kernel and the place; nothing is
 * written outside the buffers. */
RtStatus kir_eval(const Program *p, const Func *f, const KevalArgs *a, RtError *err);

#endif
