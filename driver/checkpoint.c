/*
 * checkpoint.c — the trainer's checkpoints: the compiled module's
 * parameters and state copied back (trainer_sync), the data-parallel
 * processes' buffers made one (trainer_dist_sync), and a checkpoint
 * written with the training's position (trainer_save) or read back to
 * resume it (trainer_resume).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver/numbers.h"
#include "driver/trainer.h"

int trainer_sync(Trainer *t) {
  RtError err;
  if (t->mod && cg_c_get_params(t->mod, &t->tensors, &err)) return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  return 0;
}

/* FNV-1a of n bytes, continuing from h. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3u;
  return h;
}

/* Each buffer parameter (running statistics) of the model summed over the
 * processes and divided by their number; a hash of every other one into *h. */
static int dist_buffers_mean(Trainer *t, uint64_t *h, int *nbuf) {
  RtError err;
  *h = 0xcbf29ce484222325u, *nbuf = 0;
  for (int i = 0; i < t->m->g.nnodes; i++) {
    const Node *n = &t->m->g.nodes[i];
    RtTensor *x = n->op == OP_PARAM ? rt_set_find(&t->tensors, n->name) : NULL;
    if (!x || x->dtype != DT_F32) continue;
    int64_t count = (int64_t)(rt_tensor_nbytes(x) / sizeof(float));
    if (!n->buffer) {
      *h = fnv1a(*h, x->data, rt_tensor_nbytes(x));
      continue;
    }
    if (rt_dist_sum_f32(t->dist, x->data, count, &err)) return diag_plain(t->d, "--distributed", "%s", err.msg), -1;
    for (int64_t k = 0; k < count; k++) ((float *)x->data)[k] /= (float)t->dist->size;
    (*nbuf)++;
  }
  return 0;
}

int trainer_dist_sync(Trainer *t) {
  if (!t->dist) return 0;
  uint64_t h, lo, hi;
  int nbuf;
  RtError err;
  if (trainer_sync(t) || dist_buffers_mean(t, &h, &nbuf)) return -1;
  if (rt_dist_minmax_u64(t->dist, h, &lo, &hi, &err)) return diag_plain(t->d, "--distributed", "%s", err.msg), -1;
  if (lo != hi)
    return diag_plain(t->d, "--distributed", "after step %lld the parameters of process %d differ from another "
                      "process's: the processes no longer train one model", (long long)t->step, t->dist->rank), -1;
  if (nbuf && t->mod && cg_c_set_params(t->mod, &t->tensors, &err)) return diag_plain(t->d, "dlc train", "%s", err.msg), -1;
  return 0;
}

/* dlc.optimizer: "adam", or each named section's, "disc=adam,gen=sgd". */
static const char *optim_meta(const Trainer *t, char *buf, size_t len) {
  if (!t->cfg.nsections) return pass_optim_names[t->cfg.opt.kind];
  size_t at = 0;
  buf[0] = 0;
  for (int s = 0; s < t->cfg.nsections && at < len; s++)
    at += (size_t)snprintf(buf + at, len - at, "%s%s=%s", s ? "," : "", t->cfg.sec_name[s],
                           pass_optim_names[t->cfg.sec_opt[s].kind]);
  return buf;
}

int trainer_save(Trainer *t, const char *path) {
  RtError err;
  if (trainer_sync(t)) return -1;
  char buf[64];
  snprintf(buf, sizeof buf, "%lld", (long long)t->epoch);
  rt_set_meta(&t->tensors, "dlc.epoch", buf, &err);
  snprintf(buf, sizeof buf, "%lld", (long long)t->step);
  rt_set_meta(&t->tensors, "dlc.step", buf, &err);
  snprintf(buf, sizeof buf, "%llu", (unsigned long long)t->cfg.seed);
  rt_set_meta(&t->tensors, "dlc.seed", buf, &err);
  rt_set_meta(&t->tensors, "dlc.model", t->m->g.name, &err);
  char opts[FE_MAX_SECTIONS * 80];
  rt_set_meta(&t->tensors, "dlc.optimizer", optim_meta(t, opts, sizeof opts), &err);
  snprintf(buf, sizeof buf, "%lld", (long long)t->epoch_batches);
  rt_set_meta(&t->tensors, "dlc.epoch_batches", buf, &err);
  snprintf(buf, sizeof buf, "%lld", (long long)t->cfg.batch);
  rt_set_meta(&t->tensors, "dlc.batch", buf, &err);
  char vocab[RT_VOCAB_TEXT_MAX];
  rt_vocab_encode(&t->vocab, vocab);
  if (t->vocab.n) rt_set_meta(&t->tensors, "dlc.vocab", vocab, &err);
  if (rt_safetensors_write(path, &t->tensors, &err)) return diag_plain(t->d, path, "%s", err.msg), -1;
  return 0;
}

/* Metadata key of checkpoint s, which must be there. */
static const char *meta_need(Trainer *t, const RtTensorSet *s, const char *path, const char *key) {
  const char *v = rt_set_get_meta(s, key);
  if (!v) diag_plain(t->d, path, "no '%s' in the metadata: not a checkpoint of dlc train (to start from its weights, "
                     "use --init)", key);
  return v;
}

static int meta_int(Trainer *t, const RtTensorSet *s, const char *path, const char *key, int64_t hi, int64_t *out) {
  const char *v = meta_need(t, s, path, key);
  char what[1100];
  snprintf(what, sizeof what, "%s: metadata %s", path, key);
  return v && dlc_parse_int(what, v, 0, hi, out, t->d) == 0 ? 0 : -1;
}

/* The run a checkpoint continues: whole non-negative epoch and step (at
 * least one step per epoch; steps reach the step as an f32, exact to
 * 2^24), the same model, optimizer and seed as this run. */
static int check_meta(Trainer *t, const RtTensorSet *s, const char *path, int64_t *epoch, int64_t *step) {
  int64_t seed;
  if (meta_int(t, s, path, "dlc.epoch", DLC_MAX_EPOCHS, epoch) || meta_int(t, s, path, "dlc.step", 1 << 24, step) ||
      meta_int(t, s, path, "dlc.seed", INT64_MAX, &seed))
    return -1;
  if (*step < *epoch)
    return diag_plain(t->d, path, "damaged metadata: %lld steps for %lld epochs", (long long)*step, (long long)*epoch), -1;
  const char *model = meta_need(t, s, path, "dlc.model"), *opt = meta_need(t, s, path, "dlc.optimizer");
  char opts[FE_MAX_SECTIONS * 80];
  const char *want_opt = optim_meta(t, opts, sizeof opts);
  if (!model || !opt) return -1;
  if (strcmp(model, t->m->g.name))
    return diag_plain(t->d, path, "the checkpoint is of model '%s', not '%s'", model, t->m->g.name), -1;
  if (strcmp(opt, want_opt))
    return diag_plain(t->d, path, "the checkpoint holds %s's optimizer state but this run uses %s: resume with "
                      "--optimizer %s, or start from its weights with --init", opt, want_opt, opt), -1;
  if ((uint64_t)seed != t->cfg.seed)
    return diag_plain(t->d, path, "the checkpoint was trained with seed %lld, this run has seed %llu (the data order "
                      "depends on it): resume with --seed %lld", (long long)seed, (unsigned long long)t->cfg.seed,
                      (long long)seed), -1;
  return 0;
}

/* A checkpoint written inside an epoch (--steps) says how many of its
 * batches were done (dlc.epoch_batches) at which batch size (dlc.batch):
 * it continues only with that batch size, where its next batch is the
 * same. */
static int check_mid_epoch(Trainer *t, const RtTensorSet *s, const char *path, int64_t epoch, int64_t *batches) {
  int64_t batch;
  *batches = 0;
  if (!rt_set_get_meta(s, "dlc.epoch_batches")) return 0; /* older checkpoints end with an epoch */
  if (meta_int(t, s, path, "dlc.epoch_batches", 1 << 24, batches)) return -1;
  if (!*batches) return 0;
  if (meta_int(t, s, path, "dlc.batch", DLC_MAX_BATCH, &batch)) return -1;
  if (batch != t->cfg.batch)
    return diag_plain(t->d, path, "the checkpoint stopped after batch %lld of epoch %lld at batch size %lld; this run "
                      "has batch size %lld: resume with --batch %lld", (long long)*batches, (long long)epoch + 1,
                      (long long)batch, (long long)t->cfg.batch, (long long)batch), -1;
  return 0;
}

/* Same dtype and shape. */
static int same_type(const RtTensor *a, const RtTensor *b) {
  if (a->dtype != b->dtype || a->rank != b->rank) return 0;
  for (int k = 0; k < a->rank; k++)
    if (a->shape[k] != b->shape[k]) return 0;
  return 1;
}

int trainer_resume(Trainer *t, const char *path) {
  RtTensorSet s;
  RtError err;
  rt_set_init(&s);
  if (rt_safetensors_read(path, &s, &err) || ir_params_check(&t->m->g, &s, path, &err)) {
    diag_plain(t->d, path, "%s", err.msg);
    rt_set_free(&s);
    return -1;
  }
  /* Everything is checked before anything is copied, so a checkpoint that
   * does not fit leaves the trainer as it was. */
  int64_t epoch, step, batches = 0;
  if (check_meta(t, &s, path, &epoch, &step) || check_mid_epoch(t, &s, path, epoch, &batches)) {
    rt_set_free(&s);
    return -1;
  }
  for (int i = 0; i < t->tensors.count; i++) {
    const RtTensor *dst = &t->tensors.items[i].t, *src = rt_set_find(&s, t->tensors.items[i].name);
    if (!src) {
      diag_plain(t->d, path, "no tensor '%s' (optimizer state of %s): resuming needs it; to start from the weights "
                 "alone, use --init", t->tensors.items[i].name, pass_optim_names[t->cfg.opt.kind]);
      rt_set_free(&s);
      return -1;
    }
    if (!same_type(src, dst)) {
      char got[128], want[128];
      diag_plain(t->d, path, "tensor '%s' is %s but the model needs %s", t->tensors.items[i].name,
                 rt_shape_str(got, sizeof got, src->dtype, src->rank, src->shape),
                 rt_shape_str(want, sizeof want, dst->dtype, dst->rank, dst->shape));
      rt_set_free(&s);
      return -1;
    }
  }
  for (int i = 0; i < t->tensors.count; i++) {
    RtTensor *dst = &t->tensors.items[i].t, *src = rt_set_find(&s, t->tensors.items[i].name);
    memcpy(dst->data, src->data, rt_tensor_nbytes(dst));
  }
  t->epoch = epoch;
  t->step = step;
  t->epoch_batches = batches;
  rt_set_free(&s);
  if (t->mod && cg_c_set_params(t->mod, &t->tensors, &err)) return diag_plain(t->d, path, "%s", err.msg), -1;
  return 0;
}
