/*
 * fuzz_csv.c — the CSV readers on arbitrary bytes: the plain table
 * reader, then the data-set loader with the label in the last and in the
 * first column (labels must come back as integers >= 0).
 */
#include "fuzz/fuzz.h"
#include "runtime/rt.h"

static void load(const char *path, int column) {
  RtDataset ds;
  RtError err;
  if (rt_data_csv(path, column, &ds, &err) != RT_OK) return;
  if (ds.x.shape[0] != ds.n || ds.y.shape[0] != ds.n) abort();
  for (int64_t i = 0; i < ds.n; i++)
    if (((const int64_t *)ds.y.data)[i] < 0) abort();
  rt_dataset_free(&ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size);
  RtTensor t;
  RtError err;
  if (rt_csv_read(path, &t, &err) == RT_OK) rt_tensor_free(&t);
  load(path, -1);
  load(path, 0);
  return 0;
}
