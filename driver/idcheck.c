/*
 * idcheck.c — integer data checked against the tables it indexes, before
 * training starts.
 *
 * An integer input (token ids, the labels a gather reads) that reaches
 * the index operand of a gather or index_select (embedding is one) only
 * through views (reshape, flatten: the values are unchanged) indexes that
 * op's axis, so each of its values must be in [0, size of the axis).  The
 * compiled step does not check (an index out of range reads NaN, which
 * shows up epochs later as a diverged loss), so every value of the data
 * set is checked here, once, before it is split, and the first one out of
 * range is an error at the .dl line of the op it would index, naming the
 * value, its sample and its position in the sample (and for text data the
 * corpus's size).  An input indexing several ops is held to the smallest.
 * `dlc run` checks its inputs the same way (dlc_check_input_ids) before
 * any backend runs.
 */
#include <string.h>

#include "driver/driver.h"
#include "driver/trainer.h"

typedef struct IdUse {
  int node;                 /* the gather or index_select, -1 if none */
  int64_t limit;            /* its indexed axis's size */
} IdUse;

/* The node whose value id is, through views. */
static int view_origin(const Graph *g, int id) {
  while (ir_ops[g->nodes[id].op].flags & OPF_VIEW) id = g->nodes[id].in[0];
  return id;
}

/* The tightest index use of input node input in g. */
static IdUse index_use(const Graph *g, int input) {
  IdUse u = {-1, 0};
  for (int j = 0; j < g->nnodes; j++) {
    const Node *n = &g->nodes[j];
    if ((n->op != OP_GATHER && n->op != OP_INDEX_SELECT) || view_origin(g, n->in[1]) != input) continue;
    const Shape *x = &g->nodes[n->in[0]].shape;
    int64_t axis = n->attr.axis.axis < 0 ? n->attr.axis.axis + x->rank : n->attr.axis.axis;
    if (axis < 0 || axis >= x->rank || DIM_IS_SYM(x->d[axis])) continue;
    if (u.node < 0 || x->d[axis] < u.limit) u = (IdUse){j, x->d[axis]};
  }
  return u;
}

static const RtTensor *feed_data(const RtDataset *ds, const TrainFeed *f) {
  if (f->source == FEED_X) return &ds->x;
  if (f->source == FEED_Y) return &ds->y;
  return f->source >= 0 && f->source < ds->ncols ? &ds->cols[f->source] : NULL;
}

/* "[3, 7]": the position of flat element e within a sample of t. */
static const char *position(const RtTensor *t, int64_t e, char *buf, size_t len) {
  int64_t idx[RT_MAX_RANK];
  for (int k = t->rank - 1; k >= 1; k--) idx[k] = e % t->shape[k], e /= t->shape[k];
  size_t at = (size_t)snprintf(buf, len, "[");
  for (int k = 1; k < t->rank && at < len; k++)
    at += (size_t)snprintf(buf + at, len - at, "%s%lld", k > 1 ? ", " : "", (long long)idx[k]);
  if (at < len) snprintf(buf + at, len - at, "]");
  return buf;
}

static int is_label(const Trainer *t, int node) {
  for (int k = 0; k < t->m->train.nlabels; k++)
    if (t->m->train.labels[k] == node) return 1;
  return 0;
}

/* Value v, flat element e of col (feeding node, a kind: "input" or
 * "label"), is out of u's range; more ends the message. */
static int report(const Graph *g, Diags *d, int node, const char *kind, const IdUse *u, const RtTensor *col, int64_t e,
                  int64_t v, const char *more) {
  int64_t per = 1;
  for (int k = 1; k < col->rank; k++) per *= col->shape[k];
  char pos[96];
  position(col, e % per, pos, sizeof pos);
  const Node *op = &g->nodes[u->node];
  diag_error(d, op->loc, "%s '%s' holds %lld at sample %lld, position %s, but the axis this %s indexes has %lld entries "
             "(0 to %lld)%s",
             kind, g->nodes[node].name, (long long)v, (long long)(e / per), pos, ir_ops[op->op].name, (long long)u->limit,
             (long long)u->limit - 1, more);
  return -1;
}

/* The first value of col out of the range of the op input node indexes:
 * its flat element in *at, or -1 when all are in range (or none is an index). */
static int64_t first_out_of_range(const Graph *g, int node, const RtTensor *col, IdUse *u, int64_t *v) {
  *u = index_use(g, node);
  if (u->node < 0 || (col->dtype != DT_I64 && col->dtype != DT_I32)) return -1;
  size_t n = rt_tensor_nbytes(col) / rt_dtype_size(col->dtype);
  for (size_t e = 0; e < n; e++) {
    *v = col->dtype == DT_I64 ? ((const int64_t *)col->data)[e] : ((const int32_t *)col->data)[e];
    if (*v < 0 || *v >= u->limit) return (int64_t)e;
  }
  return -1;
}

static int check_column(Trainer *t, int node, const RtTensor *col) {
  IdUse u;
  int64_t v, e = first_out_of_range(&t->m->g, node, col, &u, &v);
  if (e < 0) return 0;
  char more[1200] = "";
  if (!strcmp(t->cfg.data_kind, "text") && !t->cfg.nbinds && t->vocab.n)
    snprintf(more, sizeof more, " (the text %s has %d distinct characters)", t->cfg.data_args[0], t->vocab.n);
  return report(&t->m->g, t->d, node, is_label(t, node) ? "label" : "input", &u, col, e, v, more);
}

int dlc_check_input_ids(const Graph *g, const RtTensor *vals, Diags *d) {
  for (int i = 0; i < g->nnodes; i++) {
    if (g->nodes[i].op != OP_INPUT || !vals[i].data || vals[i].rank < 1) continue;
    IdUse u;
    int64_t v, e = first_out_of_range(g, i, &vals[i], &u, &v);
    if (e >= 0) return report(g, d, i, "input", &u, &vals[i], e, v, "");
  }
  return 0;
}

int trainer_check_ids(Trainer *t, const RtDataset *ds) {
  for (int f = 0; f < t->nfeeds; f++) {
    const RtTensor *col = feed_data(ds, &t->feeds[f]);
    if (col && col->data && col->rank >= 1 && check_column(t, t->feeds[f].node, col)) return -1;
  }
  return 0;
}
