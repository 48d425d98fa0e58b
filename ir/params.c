/*
 * params.c — parameter values: initialised from the seed, or checked
 * against the model after loading from a file.
 *
 * Each parameter draws from its own PRNG stream, derived from the seed and
 * the parameter's name (rt_rng_seed_stream), so the same seed gives the
 * same weights on every backend and machine, and adding a layer to a
 * model leaves the other layers' initial weights unchanged.  Fan-in and
 * fan-out follow torch.nn.init; a bias with the torch default init takes
 * the fan-in of the weight beside it ("fc1.bias" of "fc1.weight"), as
 * nn.Linear and nn.Conv2d do.
 */
#include <string.h>

#include "ir/ir.h"

static void fans(const Shape *s, int64_t *fan_in, int64_t *fan_out) {
  int64_t rf = 1;
  for (int i = 2; i < s->rank; i++) rf *= s->d[i];
  *fan_in = s->rank >= 2 ? s->d[1] * rf : s->rank == 1 ? s->d[0] : 1;
  *fan_out = s->rank >= 2 ? s->d[0] * rf : s->rank == 1 ? s->d[0] : 1;
}

/* For "x.bias", the fan-in of "x.weight" if that exists. */
static int64_t sibling_fan_in(const Graph *g, const Node *n, int64_t deflt) {
  size_t len = strlen(n->name);
  if (len < 5 || strcmp(n->name + len - 5, ".bias") != 0) return deflt;
  char w[512];
  snprintf(w, sizeof w, "%.*s.weight", (int)(len - 5), n->name);
  int id = ir_find_param(g, w);
  if (id < 0) return deflt;
  int64_t fi, fo;
  fans(&g->nodes[id].shape, &fi, &fo);
  return fi;
}

/* Row `row` of t's axis 0 set to zero (none when row is -1). */
static void zero_row(RtTensor *t, int64_t row) {
  if (row < 0 || t->rank == 0 || row >= t->shape[0]) return;
  int64_t width = rt_tensor_numel(t) / t->shape[0];
  memset((float *)t->data + row * width, 0, sizeof(float) * (size_t)width);
}

RtStatus ir_params_init(const Graph *g, uint64_t seed, RtTensorSet *set, RtError *err) {
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_PARAM || rt_set_find(set, n->name)) continue;
    RtTensor t;
    int64_t shape[IR_MAX_RANK];
    for (int k = 0; k < n->shape.rank; k++) shape[k] = n->shape.d[k];
    RtStatus st = rt_tensor_alloc(&t, DT_F32, n->shape.rank, shape, err);
    if (st) return st;
    int64_t fi, fo;
    fans(&n->shape, &fi, &fo);
    if (n->init.kind == INIT_TORCH_DEFAULT && n->shape.rank == 1) fi = sibling_fan_in(g, n, fi);
    RtRng r;
    rt_rng_seed_stream(&r, seed, n->name);
    rt_init_fill(t.data, rt_tensor_numel(&t), n->init.kind, n->init.a, n->init.b, fi, fo, &r);
    zero_row(&t, n->init.zero_row - 1);
    st = rt_set_add(set, n->name, &t, err);
    if (st) {
      rt_tensor_free(&t);
      return st;
    }
  }
  return RT_OK;
}

RtStatus ir_params_check(const Graph *g, RtTensorSet *set, const char *path, RtError *err) {
  char want[128], got[128];
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_PARAM) continue;
    const RtTensor *t = rt_set_find(set, n->name);
    if (!t) return rt_fail(err, RT_ERR_MISSING, "%s: no tensor '%s' (the model needs %s)", path, n->name,
                           ir_type_str(g, n->dtype, &n->shape, want, sizeof want));
    int same = t->dtype == n->dtype && t->rank == n->shape.rank;
    for (int k = 0; same && k < t->rank; k++) same = t->shape[k] == n->shape.d[k];
    if (!same)
      return rt_fail(err, RT_ERR_SHAPE, "%s: tensor '%s' is %s but the model needs %s", path, n->name,
                     rt_shape_str(got, sizeof got, t->dtype, t->rank, t->shape),
                     ir_type_str(g, n->dtype, &n->shape, want, sizeof want));
  }
  return RT_OK;
}
