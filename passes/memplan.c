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
 *
 * Finding the placed buffers that are live at the same time as the one
 * being placed is the costly step.  The used ranges are sorted by their
 * first kernel once; a max segment tree over that order holds each placed
 * range's last kernel (-1 while unplaced), so the placed ranges that
 * intersect [first, last] — a prefix of the order whose last >= first —
 * are enumerated in O((k + 1) log n) for k of them.  Sorted by offset,
 * the k neighbours give the lowest gap in one scan.  A plan costs
 * O(n log n) plus the overlapping pairs, instead of O(n^2) per buffer.
 * Offsets and arena sizes use the checked size arithmetic of ir.h; the
 * graph's size limits keep them exact.
 */
#include <stdlib.h>

#include "passes/passes.h"

typedef struct Range {
  int buf;
  int first, last;
} Range;

typedef struct Plan {
  Program *p;
  Range *r;           /* by decreasing size */
  int nr;
  int *order;         /* used ranges (indices into r) by first kernel */
  int nused;
  int *pos;           /* r index -> position in order */
  int *tree;          /* max of last over placed ranges, per segment */
  int *hits;          /* scratch: the neighbours of the range being placed */
  int nhits;
} Plan;

static void touch(Range *r, int *index, int buf, int k) {
  if (buf < 0 || index[buf] < 0) return;
  Range *x = &r[index[buf]];
  if (x->first < 0) x->first = k;
  x->last = k;
}

/* What one kernel's walk (kir_walk_block) records: kernel k touches every
 * buffer it loads or stores. */
typedef struct Touch {
  Range *r;
  int *index;
  int k;
} Touch;

static int touch_expr(void *ctx, const Expr *e) {
  const Touch *t = ctx;
  if (e->kind == EX_LOAD) touch(t->r, t->index, e->id, t->k);
  return 0;
}

static int touch_stmt(void *ctx, const Stmt *s) {
  const Touch *t = ctx;
  if (s->kind == ST_STORE) touch(t->r, t->index, s->id, t->k);
  return 0;
}

static void walk_kernel(const Stmt *body, Range *r, int *index, int k) {
  Touch t = {r, index, k};
  KirVisitor v = {&t, touch_stmt, touch_expr};
  kir_walk_block(&v, body);
}

static int by_size_desc(const void *a, const void *b, void *ctx) {
  const Program *p = ctx;
  int64_t sa = p->bufs[((const Range *)a)->buf].size, sb = p->bufs[((const Range *)b)->buf].size;
  return sa < sb ? 1 : sa > sb ? -1 : ((const Range *)a)->buf - ((const Range *)b)->buf;
}

static int by_first(const void *a, const void *b, void *ctx) {
  const Range *r = ctx, *x = &r[*(const int *)a], *y = &r[*(const int *)b];
  return x->first != y->first ? (x->first > y->first) - (x->first < y->first) : *(const int *)a - *(const int *)b;
}

static int by_offset(const void *a, const void *b, void *ctx) {
  const Plan *pl = ctx;
  int64_t x = pl->p->bufs[pl->r[*(const int *)a].buf].offset, y = pl->p->bufs[pl->r[*(const int *)b].buf].offset;
  return (x > y) - (x < y);
}

/* Elements a buffer of size n takes in the arena. */
static int64_t rounded(int64_t n) {
  int64_t r = ir_size_add(n, 15);
  IR_ASSERT(r >= 0);
  return r & ~(int64_t)15;
}

/* --- the segment tree over ranges ordered by first kernel ---------------------- */

static void tree_set(Plan *pl, int node, int lo, int hi, int at, int last) {
  if (lo == hi) {
    pl->tree[node] = last;
    return;
  }
  int mid = lo + (hi - lo) / 2;
  if (at <= mid) tree_set(pl, 2 * node, lo, mid, at, last);
  else tree_set(pl, 2 * node + 1, mid + 1, hi, at, last);
  int a = pl->tree[2 * node], b = pl->tree[2 * node + 1];
  pl->tree[node] = a > b ? a : b;
}

/* Collects into hits the placed ranges at positions [lo, hi] ∩ [0, upto]
 * whose last kernel is at least first. */
static void tree_find(Plan *pl, int node, int lo, int hi, int upto, int first) {
  if (lo > upto || pl->tree[node] < first) return;
  if (lo == hi) {
    pl->hits[pl->nhits++] = pl->order[lo];
    return;
  }
  int mid = lo + (hi - lo) / 2;
  tree_find(pl, 2 * node, lo, mid, upto, first);
  tree_find(pl, 2 * node + 1, mid + 1, hi, upto, first);
}

/* The last position in order whose range starts at or before kernel k. */
static int starts_upto(const Plan *pl, int k) {
  int lo = 0, hi = pl->nused;   /* answer + 1 in [lo, hi] */
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (pl->r[pl->order[mid]].first <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/* --- placement --------------------------------------------------------------------- */

/* The lowest offset for range i: every placed neighbour of its dtype, by
 * offset; the first gap that holds it.  Each neighbour before the gap ends
 * at or below the offset found, and every point skipped overlaps one. */
static int64_t first_fit(Plan *pl, int i) {
  const Range *x = &pl->r[i];
  const Buffer *b = &pl->p->bufs[x->buf];
  pl->nhits = 0;
  tree_find(pl, 1, 0, pl->nused - 1, starts_upto(pl, x->last), x->first);
  int n = 0;
  for (int h = 0; h < pl->nhits; h++)
    if (pl->p->bufs[pl->r[pl->hits[h]].buf].dtype == b->dtype) pl->hits[n++] = pl->hits[h];
  qsort_r(pl->hits, (size_t)n, sizeof *pl->hits, by_offset, pl);
  int64_t off = 0, need = rounded(b->size);
  for (int h = 0; h < n; h++) {
    const Buffer *q = &pl->p->bufs[pl->r[pl->hits[h]].buf];
    if (q->offset >= ir_size_add(off, need)) break;
    int64_t end = ir_size_add(q->offset, rounded(q->size));
    IR_ASSERT(end >= 0);
    if (end > off) off = end;
  }
  return off;
}

static void plan_func(Plan *pl, const Func *f, int *index) {
  Program *p = pl->p;
  for (int k = 0; k < f->nkernels; k++) walk_kernel(f->kernels[k].body, pl->r, index, k);
  qsort_r(pl->r, (size_t)pl->nr, sizeof *pl->r, by_size_desc, p);
  pl->nused = 0;
  for (int i = 0; i < pl->nr; i++)
    if (pl->r[i].first >= 0) pl->order[pl->nused++] = i; /* others are not used by this function */
  qsort_r(pl->order, (size_t)pl->nused, sizeof *pl->order, by_first, pl->r);
  for (int k = 0; k < pl->nused; k++) pl->pos[pl->order[k]] = k;
  for (int k = 0; k < 4 * pl->nused; k++) pl->tree[k] = -1;
  for (int i = 0; i < pl->nr; i++) {
    if (pl->r[i].first < 0) continue;
    Buffer *b = &p->bufs[pl->r[i].buf];
    b->offset = first_fit(pl, i);
    int64_t end = ir_size_add(b->offset, rounded(b->size));
    IR_ASSERT(end >= 0);
    if (end > p->arena_size[b->dtype]) p->arena_size[b->dtype] = end;
    tree_set(pl, 1, 0, pl->nused - 1, pl->pos[i], pl->r[i].last);
  }
}

void pass_memplan(Program *p) {
  size_t n = (size_t)p->nbufs + 1;
  int *index = rt_xmalloc(sizeof(int) * n);
  Plan pl = {p, rt_xmalloc(sizeof(Range) * n), 0, rt_xmalloc(sizeof(int) * n), 0, rt_xmalloc(sizeof(int) * n),
             rt_xmalloc(sizeof(int) * 4 * n), rt_xmalloc(sizeof(int) * n), 0};
  for (int t = 0; t < DT_COUNT; t++) p->arena_size[t] = 0;
  for (int fi = 0; fi < p->nfuncs; fi++) {
    pl.nr = 0;
    for (int b = 0; b < p->nbufs; b++) {
      index[b] = -1;
      if (p->bufs[b].kind == BUF_TEMP) index[b] = pl.nr, pl.r[pl.nr++] = (Range){b, -1, -1};
    }
    plan_func(&pl, &p->funcs[fi], index);
  }
  rt_xfree(index);
  rt_xfree(pl.r), rt_xfree(pl.order), rt_xfree(pl.pos), rt_xfree(pl.tree), rt_xfree(pl.hits);
}
