/*
 * named_data.c — the trainer's data bound by name (`--data
 * npy:NAME=PATH,...`): each model input or label fed from its own file,
 * checked against the input's type and shape before the split; and the
 * check that the fixed forms (fashion_mnist, idx, csv, npy X,Y) fit the
 * model's data input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/trainer_data.h"

static int is_label_node(const Trainer *t, int node) {
  for (int k = 0; k < t->m->train.nlabels; k++)
    if (t->m->train.labels[k] == node) return 1;
  return 0;
}

static const char *node_kind(const Trainer *t, int node) { return is_label_node(t, node) ? "label" : "input"; }

static int model_input(const Model *m, const char *name) {
  for (int i = 0; i < m->g.nnodes; i++)
    if (m->g.nodes[i].op == OP_INPUT && !strcmp(m->g.nodes[i].name, name)) return i;
  return -1;
}

/* "x, pos, label y": the model's inputs, for messages. */
static const char *input_list(const Trainer *t, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < t->m->g.nnodes && at < len; i++)
    if (t->m->g.nodes[i].op == OP_INPUT)
      at += (size_t)snprintf(buf + at, len - at, "%s%s%s", at ? ", " : "", is_label_node(t, i) ? "label " : "",
                             t->m->g.nodes[i].name);
  return buf;
}

/* Each NAME=PATH feeds the input or label NAME from column k; an
 * autoencoder's label takes its target's clean batch instead of a file. */
int trainer_named_feeds(Trainer *t) {
  const TrainConfig *c = &t->cfg;
  char list[256];
  t->nfeeds = 0, t->target_feed = -1;
  for (int k = 0; k < c->nbinds; k++) {
    int node = model_input(t->m, c->bind_name[k]);
    if (node < 0)
      return diag_plain(t->d, c->bind_path[k], "'%s' is not an input or label of model '%s', so this file feeds "
                        "nothing (its inputs: %s)", c->bind_name[k], t->m->g.name, input_list(t, list, sizeof list)), -1;
    if (t->autoencode && node == t->y_input)
      return diag_plain(t->d, c->bind_path[k], "label '%s' gets the clean input '%s' (target = %s), not a file",
                        c->bind_name[k], t->m->g.nodes[t->m->train.target].name,
                        t->m->g.nodes[t->m->train.target].name), -1;
    if (t->m->g.nodes[node].noise)
      return diag_plain(t->d, c->bind_path[k], "input '%s' is fed with noise (= %s) while training, not from a file",
                        c->bind_name[k], t->m->g.nodes[node].noise == NOISE_RAND ? "rand" : "randn"), -1;
    trainer_add_feed(t, node, k);
    if (t->autoencode && node == t->m->train.target) t->target_feed = t->nfeeds - 1;
  }
  if (t->autoencode && t->target_feed < 0)
    return diag_plain(t->d, "data", "input '%s' has no file, so the target of label '%s' has no values: bind it with "
                      "%s=PATH", t->m->g.nodes[t->m->train.target].name, t->m->g.nodes[t->y_input].name,
                      t->m->g.nodes[t->m->train.target].name), -1;
  if (t->autoencode) trainer_add_feed(t, t->y_input, FEED_TARGET);
  return 0;
}

/* Every input of the model is fed by something. */
static int check_fed(Trainer *t) {
  for (int i = 0; i < t->m->g.nnodes; i++) {
    int fed = t->m->g.nodes[i].op != OP_INPUT || t->m->g.nodes[i].noise;
    for (int f = 0; f < t->nfeeds && !fed; f++) fed = t->feeds[f].node == i;
    for (int k = 0; k < t->ncarry && !fed; k++) fed = !strcmp(t->carry_name[k], t->m->g.nodes[i].name);
    if (fed) continue;
    const char *name = t->m->g.nodes[i].name;
    if (t->cfg.nbinds)
      return diag_plain(t->d, "data", "%s '%s' has no file: add %s=PATH to the npy bindings", node_kind(t, i), name,
                        name), -1;
    return diag_plain(t->d, "data", "%s '%s' gets no data: the %s form feeds only input '%s'%s%s; bind every input to "
                      "a file by name with npy:NAME=PATH,...", node_kind(t, i), name, t->cfg.data_kind,
                      t->x_input >= 0 ? t->m->g.nodes[t->x_input].name : "", t->y_input >= 0 ? " and label " : "",
                      t->y_input >= 0 ? t->m->g.nodes[t->y_input].name : ""), -1;
  }
  return 0;
}

/* Why column col does not fit node n's shape, or NULL. */
static const char *shape_misfit(const Node *n, const RtTensor *col, char *buf, size_t len) {
  if (col->rank != n->shape.rank)
    return snprintf(buf, len, "rank %d, expected %d", col->rank, n->shape.rank), buf;
  if (!DIM_IS_SYM(n->shape.d[0]))
    return snprintf(buf, len, "its first dimension is %lld, not the batch symbol", (long long)n->shape.d[0]), buf;
  for (int k = 1; k < col->rank; k++) {
    if (DIM_IS_SYM(n->shape.d[k]))
      return snprintf(buf, len, "dimension %d is a symbol; only the first (batch) dimension varies", k), buf;
    if (col->shape[k] != n->shape.d[k])
      return snprintf(buf, len, "dimension %d is %lld, expected %lld", k, (long long)col->shape[k],
                      (long long)n->shape.d[k]), buf;
  }
  return NULL;
}

static int is_int_type(DType dt) { return dt == DT_I32 || dt == DT_I64 || dt == DT_U8 || dt == DT_BOOL; }

/* Why a file of dtype have cannot feed an input of dtype want, or NULL. */
static const char *dtype_misfit(DType want, DType have) {
  if (want == have || (is_int_type(want) && is_int_type(have) && want != DT_BOOL && want != DT_U8)) return NULL;
  if (is_int_type(want) && is_int_type(have)) return "only a file of that same type feeds it";
  if (is_int_type(want)) return "a float file does not feed an integer input (store it as integers, e.g. numpy's "
                                ".astype(np.int64))";
  if (have == DT_F64) return "f64 values are not narrowed to f32 implicitly (save them with .astype(np.float32))";
  return "an integer file does not feed a float input implicitly (convert it, e.g. .astype(np.float32))";
}

static int64_t int_at(const RtTensor *t, int64_t i) {
  switch (t->dtype) {
  case DT_I32: return ((const int32_t *)t->data)[i];
  case DT_I64: return ((const int64_t *)t->data)[i];
  case DT_U8: case DT_BOOL: return ((const uint8_t *)t->data)[i];
  case DT_F32: case DT_F64: case DT_COUNT: break;
  }
  return 0;
}

/* An integer column into the input's integer type (i32 or i64): exact,
 * or an error naming the first value that does not fit. */
int trainer_widen_ints(Trainer *t, const Node *n, const char *path, RtTensor *col) {
  RtTensor out;
  RtError err;
  if (rt_tensor_alloc(&out, n->dtype, col->rank, col->shape, &err)) return diag_plain(t->d, path, "%s", err.msg), -1;
  int64_t numel = (int64_t)(rt_tensor_nbytes(&out) / rt_dtype_size(n->dtype));
  for (int64_t i = 0; i < numel; i++) {
    int64_t v = int_at(col, i);
    if (n->dtype == DT_I32 && (v < INT32_MIN || v > INT32_MAX)) {
      rt_tensor_free(&out);
      return diag_plain(t->d, path, "value %lld (element %lld) does not fit i32 %s '%s'", (long long)v, (long long)i,
                        node_kind(t, (int)(n - t->m->g.nodes)), n->name), -1;
    }
    if (n->dtype == DT_I32) ((int32_t *)out.data)[i] = (int32_t)v;
    else ((int64_t *)out.data)[i] = v;
  }
  rt_tensor_free(col);
  *col = out;
  return 0;
}

/* Column col (from path) against the node it feeds: shape (the batch
 * first, the declared dimensions after it) and dtype. */
static int check_column(Trainer *t, int node, const char *path, RtTensor *col) {
  const Node *n = &t->m->g.nodes[node];
  char want[128], have[128], why[128];
  const char *bad = shape_misfit(n, col, why, sizeof why);
  if (!bad) bad = dtype_misfit(n->dtype, col->dtype);
  if (bad)
    return diag_plain(t->d, path, "%s '%s' is %s but the file holds %s: %s", node_kind(t, node), n->name,
                      ir_type_str(&t->m->g, n->dtype, &n->shape, want, sizeof want),
                      rt_shape_str(have, sizeof have, col->dtype, col->rank, col->shape), bad), -1;
  return col->dtype == n->dtype ? 0 : trainer_widen_ints(t, n, path, col);
}

/* Class labels of a cross-entropy loss within the logits' classes. */
static int check_class_column(Trainer *t, const RtTensor *col, const char *path) {
  if (t->acc_output < 0 || col->dtype != DT_I64) return 0;
  const Node *logits = &t->m->g.nodes[t->m->g.outputs[t->acc_output].id];
  RtDataset view = {.y = *col, .n = col->shape[0]};
  RtError err;
  if (rt_dataset_check_labels(&view, logits->shape.d[1], path, &err)) return diag_plain(t->d, "data", "%s", err.msg), -1;
  return 0;
}

static int load_columns(Trainer *t, RtDataset *all) {
  const TrainConfig *c = &t->cfg;
  RtError err;
  if (c->classes[0])
    return diag_plain(t->d, "data", "classes=%s selects class labels of the fixed forms, not of named files", c->classes), -1;
  const char *paths[RT_DATA_MAX_COLS];
  for (int k = 0; k < c->nbinds; k++) paths[k] = c->bind_path[k];
  if (rt_data_npy_columns(paths, c->nbinds, all, &err)) return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  for (int f = 0; f < t->nfeeds; f++) {
    int k = t->feeds[f].source;
    if (k < 0) continue;
    if (check_column(t, t->feeds[f].node, paths[k], &all->cols[k]) ||
        (t->feeds[f].node == t->y_input && check_class_column(t, &all->cols[k], paths[k])))
      return -1;
  }
  if (t->target_feed >= 0 && c->augment_noise > 0 && t->m->g.nodes[t->m->train.target].dtype != DT_F32)
    return diag_plain(t->d, "augment", "noise needs an f32 target input, not '%s'", t->m->g.nodes[t->m->train.target].name), -1;
  return 0;
}

/* The npy:NAME=PATH,... form: every file checked against its input
 * before the split, so the split and the batches keep the inputs' types. */
int trainer_load_named(Trainer *t) {
  RtDataset all;
  RtError err;
  memset(&all, 0, sizeof all);
  if (check_fed(t) || load_columns(t, &all) || trainer_check_ids(t, &all)) {
    rt_dataset_free(&all);
    return -1;
  }
  if (rt_dataset_split(&all, t->cfg.val_split, t->cfg.seed, &t->train, &t->val, &err))
    return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  return 0;
}

/* The fixed forms convert x to f32 (text gives i64 ids): an input of
 * another type needs the named form. */
int trainer_check_fixed_form(Trainer *t) {
  if (t->x_input < 0 || t->m->g.nodes[t->x_input].dtype == DT_F32 || !strcmp(t->cfg.data_kind, "text"))
    return check_fed(t);
  const Node *x = &t->m->g.nodes[t->x_input];
  return diag_plain(t->d, "data", "input '%s' is %s, but the %s form gives f32 samples: bind it to a file of its type "
                    "by name, npy:%s=PATH,...", x->name, rt_dtype_name(x->dtype), t->cfg.data_kind, x->name), -1;
}
