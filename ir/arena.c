/*
 * arena.c — bump allocation for graphs and passes.
 *
 * An Arena is a list of blocks; allocation moves a pointer through the
 * current block and starts a new block (at least 64 KiB, or the request)
 * when it runs out.  Everything is freed at once by arena_free.  Memory is
 * zeroed and 16-byte aligned.  Blocks are owned blocks of the runtime's
 * allocator (rt_xcalloc): allocation never returns NULL, and out of memory
 * unwinds to the innermost RtOomScope, which frees every block allocated
 * since it was entered (runtime/alloc.c).  So the node and kernel builders
 * that allocate from arenas need no error paths.
 */
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

struct ArenaBlock {
  ArenaBlock *next;
  size_t size;
  _Alignas(16) char data[];
};

void arena_init(Arena *a) { memset(a, 0, sizeof *a); }

void arena_free(Arena *a) {
  ArenaBlock *b = a->head;
  while (b) {
    ArenaBlock *next = b->next;
    rt_xfree(b);
    b = next;
  }
  memset(a, 0, sizeof *a);
}

void *arena_alloc(Arena *a, size_t n) {
  if (n > SIZE_MAX / 2) rt_oom();
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  if ((size_t)(a->end - a->cur) < n || !a->cur) {
    size_t size = n > 65536 ? n : 65536;
    ArenaBlock *b = rt_xcalloc(1, sizeof *b + size);
    b->size = size;
    b->next = a->head;
    a->head = b;
    a->cur = b->data;
    a->end = b->data + size;
  }
  void *p = a->cur;
  a->cur += n;
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = arena_alloc(a, (size_t)n + 1);
  vsnprintf(p, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return p;
}

_Noreturn void ir_internal_error(const char *file, int line, const char *msg) {
  fprintf(stderr, "dlc: internal error at %s:%d: %s\n", file, line, msg);
  abort();
}

void arena_adopt(Arena *dst, Arena *src) {
  if (!src->head) return;
  ArenaBlock *last = src->head;
  while (last->next) last = last->next;
  if (dst->head) { /* behind dst's current block, which stays current */
    last->next = dst->head->next;
    dst->head->next = src->head;
  } else {
    *dst = *src;
  }
  memset(src, 0, sizeof *src);
}
