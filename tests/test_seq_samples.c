/*
 * test_seq_samples.c — the sequence samples train, in a few seconds each.
 *
 * Each test runs `dlc train` on a sample file as it is committed, with its
 * data replaced (--data) by a small set written here, and reads the
 * per-batch and per-epoch losses of --metrics.  What is asserted is what
 * the model must do from its first step: a value fixed by its
 * initialisation (word2vec's output table starts at zeros, so its first
 * loss is exactly (1 + negatives) · ln 2) and a loss that falls over the
 * epochs on data with a structure to learn.  Full training and its figures
 * are for the samples' own .sh scripts and the README.
 */
#include <criterion/criterion.h>
#include <sys/wait.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

/* Writes dir/name.npy, an i64 tensor of the given shape. */
static void write_i64(const char *dir, const char *name, int rank, const int64_t *shape, const int64_t *v) {
  char path[700];
  RtTensor t;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&t, DT_I64, rank, shape, &err), RT_OK, "%s", err.msg);
  memcpy(t.data, v, (size_t)rt_tensor_numel(&t) * sizeof *v);
  snprintf(path, sizeof path, "%s/%s.npy", dir, name);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&t);
}

/* Runs `dlc train SAMPLE FLAGS --metrics m.csv` in dir; returns the
 * metrics file's text. */
static char *train(const char *dir, const char *sample, const char *flags) {
  char cmd[2000], path[700];
  snprintf(cmd, sizeof cmd, "cd %s && %s train %s/samples/%s.dl %s --metrics m.csv > log.txt 2>&1", dir, DLC_EXE,
           DLC_SOURCE_DIR, sample, flags);
  int st = system(cmd);
  snprintf(path, sizeof path, "%s/log.txt", dir);
  char *log = tu_read_file(path, NULL);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "dlc train %s:\n%s", sample, log);
  free(log);
  snprintf(path, sizeof path, "%s/m.csv", dir);
  char *csv = tu_read_file(path, NULL);
  cr_assert_not_null(csv);
  return csv;
}

/* From the metrics CSV: the train loss (column 4) of the row with the
 * given epoch and batch (batch 0: the epoch's mean). */
static double metric_loss(const char *csv, int epoch, int batch) {
  for (const char *line = strchr(csv, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
    int e, b;
    long long step;
    double loss;
    if (sscanf(line + 1, "%d,%d,%lld,%lf", &e, &b, &step, &loss) == 4 && e == epoch && b == batch) return loss;
  }
  cr_assert_fail("no metrics row for epoch %d, batch %d in:\n%s", epoch, batch, csv);
  return NAN;
}

/* samples/word2vec.dl on 1024 pairs over 60 words: the context of word c
 * is (7c + 1) mod 60, the five negatives any of the other 1940 words.  The
 * first batch's loss is 6 ln 2 (every score 0: the output table is zeros);
 * after four epochs the loss is well below it. */
Test(seq_samples, word2vec_learns_pairs, .timeout = 120) {
  enum { PAIRS = 1024, NEG = 5 };
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  static int64_t center[PAIRS], context[PAIRS], negatives[PAIRS * NEG];
  uint64_t r = 12345;
  for (int i = 0; i < PAIRS; i++) {
    center[i] = i % 60, context[i] = (7 * center[i] + 1) % 60;
    for (int k = 0; k < NEG; k++) r = r * 6364136223846793005ull + 1442695040888963407ull, negatives[i * NEG + k] = 60 + (int64_t)((r >> 33) % 1940);
  }
  write_i64(dir, "center", 1, (int64_t[]){PAIRS}, center);
  write_i64(dir, "context", 1, (int64_t[]){PAIRS}, context);
  write_i64(dir, "negatives", 2, (int64_t[]){PAIRS, NEG}, negatives);
  char *csv = train(dir, "word2vec", "--data npy:center=center.npy,context=context.npy,negatives=negatives.npy "
                                     "--epochs 4 --batch 64 --lr 0.02 --val-split 0");
  double first = metric_loss(csv, 1, 1), last = metric_loss(csv, 4, 0);
  cr_expect(fabs(first - 6 * log(2.0)) < 1e-5, "first batch loss %.7f, want 6 ln 2 = %.7f", first, 6 * log(2.0));
  cr_expect(last < 0.5 * first, "epoch 4's loss %g is not below half the first batch's %g", last, first);
  free(csv);
}

/* Writes dir/name.npy, an f32 tensor of the given shape. */
static void write_f32(const char *dir, const char *name, int rank, const int64_t *shape, const float *v) {
  char path[700];
  RtTensor t;
  RtError err;
  cr_assert_eq(rt_tensor_alloc(&t, DT_F32, rank, shape, &err), RT_OK, "%s", err.msg);
  memcpy(t.data, v, (size_t)rt_tensor_numel(&t) * sizeof *v);
  snprintf(path, sizeof path, "%s/%s.npy", dir, name);
  cr_assert_eq(rt_npy_write(path, &t, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&t);
}

/* samples/text_classify.dl on 64 quotes of 3 to 12 words, padded to 64:
 * a quote of class c uses only words 2 + 10c .. 11 + 10c, so its class is
 * in every word.  The loss starts near ln 4 (four classes, weights
 * small) and after three epochs is below a quarter of that. */
Test(seq_samples, text_classify_learns_classes, .timeout = 180) {
  enum { QUOTES = 64, T = 64 };
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  static int64_t tokens[QUOTES * T], y[QUOTES];
  static float mask[QUOTES * T];
  uint64_t r = 777;
  for (int i = 0; i < QUOTES; i++) {
    y[i] = i % 4;
    for (int t = 0; t < 3 + i % 10; t++) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      tokens[i * T + t] = 2 + 10 * y[i] + (int64_t)((r >> 33) % 10), mask[i * T + t] = 1;
    }
  }
  write_i64(dir, "tokens", 2, (int64_t[]){QUOTES, T}, tokens);
  write_f32(dir, "mask", 2, (int64_t[]){QUOTES, T}, mask);
  write_i64(dir, "y", 1, (int64_t[]){QUOTES}, y);
  char *csv = train(dir, "text_classify", "--data npy:tokens=tokens.npy,mask=mask.npy,y=y.npy "
                                          "--epochs 3 --batch 16 --lr 0.01 --val-split 0");
  double first = metric_loss(csv, 1, 1), last = metric_loss(csv, 3, 0);
  cr_expect(fabs(first - log(4.0)) < 0.3, "first batch loss %g, want about ln 4 = %g", first, log(4.0));
  cr_expect(last < 0.25 * log(4.0), "epoch 3's loss %g is not below a quarter of ln 4", last);
  free(csv);
}

/* samples/text_cnn.dl on the same quotes (no mask: the maximum over time
 * takes the padding in): the first batch knows nothing (loss at least
 * three quarters of ln 4; the pooled ReLU features are positive and not
 * small, so it is above ln 4 rather than near it), and after three epochs
 * the loss is below a quarter of ln 4. */
Test(seq_samples, text_cnn_learns_classes, .timeout = 180) {
  enum { QUOTES = 64, T = 64 };
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  static int64_t tokens[QUOTES * T], y[QUOTES];
  uint64_t r = 777;
  for (int i = 0; i < QUOTES; i++) {
    y[i] = i % 4;
    for (int t = 0; t < 3 + i % 10; t++) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      tokens[i * T + t] = 2 + 10 * y[i] + (int64_t)((r >> 33) % 10);
    }
  }
  write_i64(dir, "tokens", 2, (int64_t[]){QUOTES, T}, tokens);
  write_i64(dir, "y", 1, (int64_t[]){QUOTES}, y);
  char *csv = train(dir, "text_cnn", "--data npy:tokens=tokens.npy,y=y.npy --epochs 3 --batch 16 --lr 0.01 --val-split 0");
  double first = metric_loss(csv, 1, 1), last = metric_loss(csv, 3, 0);
  cr_expect(first > 0.75 * log(4.0), "first batch loss %g, want at least 3/4 of ln 4 = %g", first, 0.75 * log(4.0));
  cr_expect(last < 0.25 * log(4.0), "epoch 3's loss %g is not below a quarter of ln 4", last);
  free(csv);
}

/* samples/seq2seq_attention.dl on 64 pairs of 6 to 10 words with ids 1 to
 * 11: the output character at step t is 1 + word t's id (12 past the
 * sentence's end), so the decoder must find word t by attention.  The loss starts near ln 13 (13 characters) and
 * falls below half of that in four epochs; dlc run on the trained
 * weights gives attention rows that sum to 1 with no weight on padding. */
Test(seq_samples, seq2seq_attention_learns_and_masks_padding, .timeout = 180) {
  enum { PAIRS = 64, S = 12, T = 10 };
  const char *dir = tu_scratch_dir();
  cr_assert_not_null(dir);
  static int64_t src[PAIRS * S], dec_in[PAIRS * T], tgt[PAIRS * T];
  static float pad[PAIRS * S];
  uint64_t r = 99;
  for (int i = 0; i < PAIRS; i++) {
    int len = 6 + i % 5;
    for (int s = 0; s < S; s++) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      src[i * S + s] = s < len ? 1 + (int64_t)((r >> 33) % 11) : 0, pad[i * S + s] = s >= len;
    }
    for (int t = 0; t < T; t++) {
      tgt[i * T + t] = t < len ? 1 + src[i * S + t] : 12;
      dec_in[i * T + t] = t ? tgt[i * T + t - 1] : 1;
    }
  }
  write_i64(dir, "src", 2, (int64_t[]){PAIRS, S}, src);
  write_f32(dir, "src_pad", 2, (int64_t[]){PAIRS, S}, pad);
  write_i64(dir, "dec_in", 2, (int64_t[]){PAIRS, T}, dec_in);
  write_i64(dir, "tgt", 2, (int64_t[]){PAIRS, T}, tgt);
  char *csv = train(dir, "seq2seq_attention", "--data npy:src=src.npy,src_pad=src_pad.npy,dec_in=dec_in.npy,tgt=tgt.npy "
                                              "--epochs 4 --batch 16 --lr 0.01 --val-split 0 --save s2s.safetensors");
  double first = metric_loss(csv, 1, 1), last = metric_loss(csv, 4, 0);
  cr_expect(fabs(first - log(13.0)) < 0.3, "first batch loss %g, want about ln 13 = %g", first, log(13.0));
  cr_expect(last < 0.5 * first, "epoch 4's loss %g is not below half the first batch's %g", last, first);
  free(csv);
  char cmd[2000], path[700];
  snprintf(cmd, sizeof cmd, "cd %s && %s run %s/samples/seq2seq_attention.dl --backend=jit --params s2s.safetensors "
           "--input src=src.npy --input src_pad=src_pad.npy --input dec_in=dec_in.npy --output attn=attn.npy > run.txt 2>&1",
           dir, DLC_EXE, DLC_SOURCE_DIR);
  cr_assert_eq(system(cmd), 0, "dlc run failed: see %s/run.txt", dir);
  snprintf(path, sizeof path, "%s/attn.npy", dir);
  RtTensor a;
  RtError err;
  cr_assert_eq(rt_npy_read(path, &a, &err), RT_OK, "%s", err.msg);
  cr_assert(a.rank == 3 && a.shape[0] == PAIRS && a.shape[1] == T && a.shape[2] == S, "attn is not [%d, %d, %d]", PAIRS, T, S);
  const float *w = a.data;
  double worst_sum = 0, worst_pad = 0;
  for (int i = 0; i < PAIRS * T; i++) {
    double sum = 0;
    for (int s = 0; s < S; s++) {
      sum += w[i * S + s];
      if (pad[(i / T) * S + s]) worst_pad = fmax(worst_pad, w[i * S + s]);
    }
    worst_sum = fmax(worst_sum, fabs(sum - 1));
  }
  cr_expect(worst_sum < 1e-5, "an attention row sums to 1 +- %g", worst_sum);
  cr_expect(worst_pad == 0, "a padded word gets attention weight %g", worst_pad);
  rt_tensor_free(&a);
}
