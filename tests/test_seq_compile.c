/*
 * test_seq_compile.c — a recurrent model's compiled size does not depend on
 * its sequence length: the training step of a character LSTM over T = 32
 * and over T = 128 steps lowers to the same number of functions, kernels
 * and buffers, and its LLVM module (optimised, as the JIT compiles it)
 * defines the same number of functions.  A scan unrolled over its steps
 * would give four times as many at T = 128.  (Time is not checked here:
 * bench/compile_times.sh and DLC_TIME_PHASES measure it.)
 */
#include <criterion/criterion.h>

#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "tests/memlog.h"

typedef struct Size {
  int funcs, kernels, bufs, defines;
} Size;

static Size compiled_size(int steps) {
  char text[1600];
  snprintf(text, sizeof text,
           "model lm\ninput tokens: i64[N, %d]\n"
           "e = embedding(tokens, 93, 32) as embed\n"
           "hs, h_n, c_n = lstm(e, hidden_size=128, batch_first=true) as lstm\n"
           "logits = dense(hs, 93) as head\noutput logits\n"
           "train {\n  label next: i64[N, %d]\n  target = next\n"
           "  loss = cross_entropy(transpose(logits, perm=[0, 2, 1]), next)\n"
           "  optimizer = adam(lr=2e-3)\n  batch = 32\n}\n",
           steps, steps);
  Log log;
  log_open(&log);
  Model m;
  cr_assert_eq(fe_load_string(&m, "lm.dl", text, &log.d), 0, "%s", log_text(&log));
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&m, &cfg, &log.d), 0, "%s", log_text(&log));
  cfg.backend = BACKEND_INTERP; /* the program is made here, and compiled below */
  Trainer t;
  cr_assert_eq(trainer_init(&t, &m, &cfg, NULL, &log.d), 0, "%s", log_text(&log));
  cr_assert_eq(trainer_program(&t), 0, "%s", log_text(&log));
  Size s = {t.prog.nfuncs, 0, t.prog.nbufs, 0};
  for (int f = 0; f < t.prog.nfuncs; f++) s.kernels += t.prog.funcs[f].nkernels;
  char *ir = NULL;
  size_t len = 0;
  RtError err;
  EmitOpts eo = {0};
  cr_assert_eq(cg_emit_llvm(&t.prog, &eo, CG_LLVM_IR, &ir, &len, &err), RT_OK, "%s", err.msg);
  for (const char *p = ir; (p = strstr(p, "\ndefine ")); p++) s.defines++;
  free(ir);
  trainer_free(&t);
  fe_model_free(&m);
  log_close(&log);
  return s;
}

Test(seq_compile, an_lstm_train_step_does_not_grow_with_the_sequence, .timeout = 240) {
  Size a = compiled_size(32), b = compiled_size(128);
  cr_log_info("T = 32: %d entry points, %d kernels, %d buffers, %d LLVM functions; T = 128: %d, %d, %d, %d", a.funcs,
              a.kernels, a.bufs, a.defines, b.funcs, b.kernels, b.bufs, b.defines);
  cr_expect(a.kernels > 0 && a.defines > 0, "nothing compiled: %d kernels, %d functions", a.kernels, a.defines);
  cr_expect_eq(a.funcs, b.funcs, "entry points: %d at T = 32, %d at T = 128", a.funcs, b.funcs);
  cr_expect_eq(a.kernels, b.kernels, "kernels: %d at T = 32, %d at T = 128", a.kernels, b.kernels);
  cr_expect_eq(a.bufs, b.bufs, "buffers: %d at T = 32, %d at T = 128", a.bufs, b.bufs);
  cr_expect_eq(a.defines, b.defines, "LLVM functions: %d at T = 32, %d at T = 128", a.defines, b.defines);
}
