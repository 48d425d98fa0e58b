/*
 * fuzz_checkpoint.c — resuming training from arbitrary bytes.  One trainer
 * of a small model (a dense layer, Adam, so there is optimizer state) is
 * built once on the reference interpreter; each input is offered to
 * trainer_resume as a checkpoint: tensors, optimizer state and the
 * metadata (epoch, step, seed, model, optimizer).  It must be taken or
 * refused with a message, never crash; after a refusal, or after taking
 * it, the trainer must still take one training step.
 */
#include <string.h>

#include "driver/trainer.h"
#include "fuzz/fuzz.h"

static const char model_text[] =
    "model ck\n"
    "input x: f32[N, 3]\n"
    "fc = dense(x, 2)\n"
    "output fc\n"
    "train {\n"
    "  label y: i64[N]\n"
    "  loss = cross_entropy(fc, y)\n"
    "  optimizer = adam(lr=0.01)\n"
    "  batch = 2\n"
    "}\n";

static Model model;
static Trainer trainer;
static Diags diags;

static void setup(void) {
  diag_init(&diags, fuzz_devnull());
  TrainConfig cfg;
  if (fe_load_string(&model, "ck.dl", model_text, &diags) || trainer_config(&model, &cfg, &diags)) abort();
  cfg.backend = BACKEND_INTERP;
  if (trainer_init(&trainer, &model, &cfg, NULL, &diags)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!trainer.m) setup();
  trainer_resume(&trainer, fuzz_file(data, size));
  static const float x[6] = {0.5f, -1, 2, 1, 0, -0.25f};
  static const int64_t y[2] = {1, 0};
  double loss;
  if (trainer_step(&trainer, 2, x, y, 0.01, &loss, NULL)) abort();
  return 0;
}
