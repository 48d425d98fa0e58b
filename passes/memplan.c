/*
 * memplan.c — static memory planning.
 *
 * For each function, every temporary buffer's live range is the span of
 * kernels from its first to its last reference.  Buffers are placed in
 * decreasing order of size at the lowest offset of their dtype's arena
 * that does not overlap any already placed buffer whose live range
 * intersects theirs (greedy by size, first fit by offset: the heuristic of
 * TFLite Micro's and TVM's planners).  Offsets are rounded to 16 elements
 * (64 bytes for f32) so kernels start on cache-line boundaries.
 * Functions never run at the same time, so each is planned from offset 0
 * and the arena is as large as the largest function needs.
 */
#include <stdlib.h>

#include "passes/passes.h"

typedef struct Range {
  int buf;
  int first, last;
} Range;

static void touch(Range *r, int *index, int buf, int k) {
  if (buf < 0 || index[buf] < 0) return;
  Range *x = &r[index[buf]];
  if (x->first < 0) x->first = k;
  x->last = k;
}

static void walk_expr(const Expr *e, Range *r, int *index, int k) {
  if (!e) return;
  if (e->kind == EX_LOAD) touch(r, index, e->id, k);
  walk_expr(e->a, r, index, k);
  walk_expr(e->b, r, index, k);
  walk_expr(e->c, r, index, k);
}

static void walk_stmt(const Stmt *s, Range *r, int *index, int k) {
  for (; s; s = s->next) {
    if (s->kind == ST_STORE) touch(r, index, s->id, k);
    walk_expr(s->extent, r, index, k);
    walk_expr(s->index, r, index, k);
    walk_expr(s->value, r, index, k);
    walk_stmt(s->body, r, index, k);
  }
}

static int by_size_desc(const void *a, const void *b, void *ctx) {
  const Program *p = ctx;
  int64_t sa = p->bufs[((const Range *)a)->buf].size, sb = p->bufs[((const Range *)b)->buf].size;
  return sa < sb ? 1 : sa > sb ? -1 : ((const Range *)a)->buf - ((const Range *)b)->buf;
}

static int64_t round_up(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* The lowest offset for r among the placed ranges that overlap it in time. */
static int64_t first_fit(Program *p, const Range *r, const Range *placed, int nplaced) {
  int64_t off = 0;
  for (int moved = 1; moved;) {
    moved = 0;
    for (int i = 0; i < nplaced; i++) {
      const Range *q = &placed[i];
      const Buffer *bq = &p->bufs[q->buf], *br = &p->bufs[r->buf];
      if (bq->dtype != br->dtype || q->last < r->first || r->last < q->first) continue;
      if (off < bq->offset + round_up(bq->size) && bq->offset < off + round_up(br->size)) {
        off = bq->offset + round_up(bq->size);
        moved = 1;
      }
    }
  }
  return off;
}

static void plan_func(Program *p, const Func *f, int *index, Range *r, int nr) {
  for (int i = 0; i < nr; i++) r[i].first = r[i].last = -1;
  for (int k = 0; k < f->nkernels; k++) walk_stmt(f->kernels[k].body, r, index, k);
  qsort_r(r, (size_t)nr, sizeof *r, by_size_desc, p);
  for (int i = 0; i < nr; i++) index[r[i].buf] = i;
  int nplaced = 0;
  for (int i = 0; i < nr; i++) {
    if (r[i].first < 0) continue; /* not used by this function */
    Buffer *b = &p->bufs[r[i].buf];
    b->offset = first_fit(p, &r[i], r, nplaced);
    if (b->offset + round_up(b->size) > p->arena_size[b->dtype])
      p->arena_size[b->dtype] = b->offset + round_up(b->size);
    /* keep placed ranges at the front, in placement order */
    Range t = r[nplaced];
    r[nplaced] = r[i];
    r[i] = t;
    index[r[i].buf] = i;
    index[r[nplaced].buf] = nplaced;
    nplaced++;
  }
}

void pass_memplan(Program *p) {
  int *index = rt_xmalloc(sizeof(int) * ((size_t)p->nbufs + 1));
  Range *r = rt_xmalloc(sizeof(Range) * ((size_t)p->nbufs + 1));
  IR_ASSERT(index && r);
  for (int t = 0; t < DT_COUNT; t++) p->arena_size[t] = 0;
  for (int fi = 0; fi < p->nfuncs; fi++) {
    int nr = 0;
    for (int b = 0; b < p->nbufs; b++) {
      index[b] = -1;
      if (p->bufs[b].kind == BUF_TEMP) index[b] = nr, r[nr++] = (Range){b, -1, -1};
    }
    plan_func(p, &p->funcs[fi], index, r, nr);
  }
  rt_xfree(index);
  rt_xfree(r);
}
