/*
 * alloc.c — every heap allocation dlc makes, with out-of-memory injection.
 *
 * Two families, one counter:
 *
 *   rt_malloc / rt_calloc / rt_realloc / rt_strdup return NULL on failure,
 *   like libc, and their blocks are ordinary libc blocks (release them with
 *   free).  The runtime and the driver use them and turn NULL into
 *   RT_ERR_NOMEM or a diagnostic saying "out of memory".
 *
 *   rt_xmalloc / rt_xcalloc / rt_xrealloc / rt_xfree never return NULL: a
 *   failure calls rt_oom(), which unwinds to the innermost RtOomScope with
 *   longjmp (as Lua's luaD_throw does).  The compiler core (arenas, graph
 *   and kernel arrays, pass scratch) allocates only through them, so the
 *   hundreds of node and kernel builders need no error paths.  These
 *   blocks are "owned": each carries a header linking it into one list in
 *   allocation order, with a sequence number.  A scope records the
 *   sequence number at its entry; unwinding frees every owned block
 *   allocated after it and still live, so nothing the failed work built is
 *   leaked, whichever frames it was held in.  Resources that are not owned
 *   blocks (FILE streams, LLVM objects, runtime tensors) are released by a
 *   nested scope in the frame that holds them, which cleans up and calls
 *   rt_oom() again to continue the unwinding.  After unwinding, structures
 *   outside the scope that pointed into freed blocks are dead: a scope is
 *   set where its owner can discard everything (a command, a test).
 *
 * Injection: rt_alloc_fail_at(n, repeat) makes the n-th allocation from now
 * fail (and, with repeat, every one after it); main reads the same from
 * DLC_FAIL_ALLOC=n (or n+ to repeat).  It is compiled in always and costs
 * one counter increment and one predictable branch per allocation.
 * Allocations inside libc (stdio, getline), zlib and LLVM are not routed
 * here and are not injected.
 *
 * Not thread-safe: dlc allocates from one thread.
 */
#include "runtime/rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t alloc_count;  /* allocations attempted since the last reset */
static uint64_t fail_at;      /* 0: none fails; else the fail_at-th fails */
static int fail_repeat;       /* and, if set, every one after it */
static uint64_t fail_count;   /* injected failures so far */

static int alloc_fails(void) {
  uint64_t n = ++alloc_count;
  if (__builtin_expect(fail_at == 0, 1)) return 0;
  int fails = n == fail_at || (fail_repeat && n > fail_at);
  fail_count += (uint64_t)fails;
  return fails;
}

void rt_alloc_fail_at(uint64_t n, int repeat) {
  alloc_count = 0;
  fail_count = 0;
  fail_at = n;
  fail_repeat = repeat;
}

uint64_t rt_alloc_count(void) { return alloc_count; }
uint64_t rt_alloc_failures(void) { return fail_count; }

int rt_alloc_fail_from_env(void) {
  const char *s = getenv("DLC_FAIL_ALLOC");
  if (!s || !*s) return 0;
  char *end;
  unsigned long long n = strtoull(s, &end, 10);
  if (end == s || (*end && strcmp(end, "+"))) return -1;
  rt_alloc_fail_at(n, *end == '+');
  return 0;
}

/* --- plain blocks: NULL on failure --------------------------------------- */

void *rt_malloc(size_t n) { return alloc_fails() ? NULL : malloc(n ? n : 1); }

void *rt_calloc(size_t count, size_t size) {
  return alloc_fails() ? NULL : calloc(count ? count : 1, size ? size : 1);
}

void *rt_realloc(void *p, size_t n) { return alloc_fails() ? NULL : realloc(p, n ? n : 1); }

char *rt_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = rt_malloc(n);
  return p ? memcpy(p, s, n) : NULL;
}

/* --- owned blocks: never NULL, freed by unwinding ------------------------ */

typedef struct OwnedBlock {
  struct OwnedBlock *prev, *next;
  uint64_t seq;
  uint64_t pad; /* keeps the payload 16-byte aligned */
} OwnedBlock;

static OwnedBlock *owned_tail;   /* newest live owned block */
static uint64_t owned_seq;
static RtOomScope *scope_top;    /* innermost scope */

static void owned_link(OwnedBlock *b) {
  b->prev = owned_tail;
  b->next = NULL;
  if (owned_tail) owned_tail->next = b;
  owned_tail = b;
}

static void owned_unlink(OwnedBlock *b) {
  if (b->prev) b->prev->next = b->next;
  if (b->next) b->next->prev = b->prev;
  else owned_tail = b->prev;
}

static void *owned_new(size_t n, int zero) {
  if (n > SIZE_MAX - sizeof(OwnedBlock)) rt_oom();
  if (alloc_fails()) rt_oom();
  OwnedBlock *b = zero ? calloc(1, sizeof *b + n) : malloc(sizeof *b + n);
  if (!b) rt_oom();
  b->seq = ++owned_seq;
  owned_link(b);
  return b + 1;
}

void *rt_xmalloc(size_t n) { return owned_new(n, 0); }

void *rt_xcalloc(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) rt_oom();
  return owned_new(count * size, 1);
}

/* The block keeps its place in the list (and its sequence number), so a
 * block from before a scope that grows inside it survives an unwinding. */
void *rt_xrealloc(void *p, size_t n) {
  if (!p) return rt_xmalloc(n);
  if (n > SIZE_MAX - sizeof(OwnedBlock)) rt_oom();
  if (alloc_fails()) rt_oom();
  OwnedBlock *old = (OwnedBlock *)p - 1, *prev = old->prev, *next = old->next;
  OwnedBlock *b = realloc(old, sizeof *b + n);
  if (!b) rt_oom();
  if (prev) prev->next = b;
  if (next) next->prev = b;
  else owned_tail = b;
  return b + 1;
}

void rt_xfree(void *p) {
  if (!p) return;
  OwnedBlock *b = (OwnedBlock *)p - 1;
  owned_unlink(b);
  free(b);
}

char *rt_xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  return memcpy(rt_xmalloc(n), s, n);
}

char *rt_xstrndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *p = rt_xmalloc(len + 1);
  memcpy(p, s, len);
  p[len] = 0;
  return p;
}

/* --- scopes ------------------------------------------------------------- */

void rt_oom_enter(RtOomScope *s) {
  s->mark = owned_seq;
  s->outer = scope_top;
  scope_top = s;
}

void rt_oom_leave(RtOomScope *s) {
  if (scope_top == s) scope_top = s->outer;
}

/* Frees the owned blocks allocated since the scope's entry, pops it and
 * jumps to it.  The list is in allocation order, so they are its tail. */
_Noreturn void rt_oom(void) {
  RtOomScope *s = scope_top;
  if (!s) {
    fputs("dlc: out of memory\n", stderr);
    abort();
  }
  while (owned_tail && owned_tail->seq > s->mark) {
    OwnedBlock *b = owned_tail;
    owned_unlink(b);
    free(b);
  }
  scope_top = s->outer;
  longjmp(s->jb, 1);
}
