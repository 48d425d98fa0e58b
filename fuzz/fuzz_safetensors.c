/*
 * fuzz_safetensors.c — the safetensors reader on arbitrary bytes.  A file
 * that reads is written back and read again: the second reading must
 * give the same names, types, shapes, bytes and metadata.
 */
#include <string.h>

#include "fuzz/fuzz.h"
#include "runtime/rt.h"

static int same_set(const RtTensorSet *a, const RtTensorSet *b) {
  if (a->count != b->count || a->nmeta != b->nmeta) return 0;
  for (int i = 0; i < a->count; i++) {
    const RtTensor *x = &a->items[i].t, *y = &b->items[i].t;
    if (strcmp(a->items[i].name, b->items[i].name) || x->dtype != y->dtype || x->rank != y->rank) return 0;
    if (memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->rank)) return 0;
    if (memcmp(x->data, y->data, rt_tensor_nbytes(x))) return 0;
  }
  for (int i = 0; i < a->nmeta; i++) {
    const char *v = rt_set_get_meta(b, a->meta_keys[i]);
    if (!v || strcmp(v, a->meta_vals[i])) return 0;
  }
  return 1;
}

static void round_trip(const RtTensorSet *s) {
  static char path[64];
  if (!path[0]) snprintf(path, sizeof path, "/tmp/dlc-fuzz-st-%d.safetensors", (int)getpid());
  RtError err;
  RtTensorSet back;
  rt_set_init(&back);
  if (rt_safetensors_write(path, s, &err) || rt_safetensors_read(path, &back, &err) || !same_set(s, &back)) abort();
  rt_set_free(&back);
  unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  RtTensorSet s;
  RtError err;
  rt_set_init(&s);
  if (rt_safetensors_read(fuzz_file(data, size), &s, &err) == RT_OK) round_trip(&s);
  rt_set_free(&s);
  return 0;
}
