/*
 * train.c — `dlc train` and `dlc MODEL.dl --train`.
 */
#include "driver/driver.h"

int dlc_cmd_train(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "dlc train: error: training is not available in this build\n");
  return 1;
}

int dlc_emit_train(Model *m, const char *path, Diags *d) {
  (void)m;
  diag_plain(d, path, "training code is not available in this build");
  return 1;
}
