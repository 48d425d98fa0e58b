/*
 * test_text.c — character-level text data and `dlc sample`: the
 * vocabulary (distinct bytes in order) and the windows of next-character
 * prediction from a small file, the errors for missing, empty and too
 * short files; then end to end, a tiny LSTM language model trained with
 * dlc train on a repeated phrase (data = text("corpus.txt"), a path
 * relative to the model) that dlc sample then continues greedily, and
 * the command's errors.
 */
#include <criterion/criterion.h>
#include <sys/wait.h>

#include "runtime/rt.h"
#include "tests/testutil.h"

static void write_file(const char *dir, const char *name, const char *text) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

Test(text, vocabulary_and_windows) {
  const char *dir = tu_scratch_dir();
  write_file(dir, "t.txt", "abcab cba\n");  /* 10 bytes: windows of 3 -> (10 - 1) / 3 = 3 */
  char path[600];
  snprintf(path, sizeof path, "%s/t.txt", dir);
  RtDataset ds;
  RtVocab v;
  RtError err;
  cr_assert_eq(rt_data_text(path, 3, &ds, &v, &err), RT_OK, "%s", err.msg);
  cr_expect_eq(v.n, 5);
  cr_expect(memcmp(v.sym, "\n abc", 5) == 0);
  cr_expect(v.id['a'] == 2 && v.id['\n'] == 0 && v.id['z'] == -1);
  cr_assert(ds.n == 3 && ds.x.dtype == DT_I64 && ds.y.dtype == DT_I64 && ds.x.shape[1] == 3 && ds.y.shape[1] == 3);
  const char *text = "abcab cba\n";
  for (int i = 0; i < 3; i++)
    for (int t = 0; t < 3; t++) {
      cr_expect_eq(((int64_t *)ds.x.data)[i * 3 + t], v.id[(unsigned char)text[i * 3 + t]]);
      cr_expect_eq(((int64_t *)ds.y.data)[i * 3 + t], v.id[(unsigned char)text[i * 3 + t + 1]]);
    }
  rt_dataset_free(&ds);
}

Test(text, bad_files_are_named) {
  const char *dir = tu_scratch_dir();
  char path[600];
  RtDataset ds;
  RtVocab v;
  RtError err;
  snprintf(path, sizeof path, "%s/none.txt", dir);
  cr_expect_eq(rt_data_text(path, 4, &ds, &v, &err), RT_ERR_IO);
  cr_expect(strstr(err.msg, "none.txt: cannot open"), "%s", err.msg);
  write_file(dir, "empty.txt", "");
  snprintf(path, sizeof path, "%s/empty.txt", dir);
  cr_expect_eq(rt_data_text(path, 4, &ds, &v, &err), RT_ERR_FORMAT);
  cr_expect(strstr(err.msg, "empty.txt: the text file is empty"), "%s", err.msg);
  write_file(dir, "short.txt", "abcd");
  snprintf(path, sizeof path, "%s/short.txt", dir);
  cr_expect_eq(rt_data_text(path, 4, &ds, &v, &err), RT_ERR_FORMAT);
  cr_expect(strstr(err.msg, "4 bytes do not make one window of 4 characters"), "%s", err.msg);
  cr_expect_eq(ds.n, 0);
}

/* --- dlc train and dlc sample ----------------------------------------------------- */

static int dlc(const char *dir, const char *args, char **out) {
  char cmd[4096], log[600];
  snprintf(log, sizeof log, "%s/log.txt", dir);
  snprintf(cmd, sizeof cmd, "cd %s && %s %s > %s 2>&1", dir, DLC_EXE, args, log);
  int st = system(cmd);
  *out = tu_read_file(log, NULL);
  cr_assert_not_null(*out);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(const char *dir, const char *args, int status, const char *needle) {
  char *out;
  int st = dlc(dir, args, &out);
  cr_expect_eq(st, status, "dlc %s: exit %d, wanted %d:\n%s", args, st, status, out);
  cr_expect(strstr(out, needle), "dlc %s: no '%s' in:\n%s", args, needle, out);
  free(out);
}

/* 10 symbols: "\n", " ", ",", d, e, h, l, o, r, w; the phrase is 13
 * bytes long and the windows 12, so windows start at every offset. */
static const char *const tiny_lm =
    "model tiny_lm\ninput tokens: i64[N, 12]\n"
    "e = embedding(tokens, 10, 8) as embed\n"
    "hs, h_n, c_n = lstm(e, hidden_size=32, batch_first=true) as lstm\n"
    "logits = dense(hs, 10) as head\noutput logits\n"
    "train {\n  label next: i64[N, 12]\n  target = next\n"
    "  loss = -mean(gather(log_softmax(logits, axis=-1), reshape(next, [N, 12, 1]), axis=2))\n"
    "  optimizer = adam(lr=0.01)\n  batch = 8\n  epochs = 30\n  seed = 3\n  val_split = 0.1\n"
    "  data = text(\"corpus.txt\")\n}\n";

static const char *corpus(void) {
  static char buf[1400];
  buf[0] = 0;
  for (int i = 0; i < 100; i++) strcat(buf, "hello, world\n");
  return buf;
}

Test(text, a_trained_model_continues_its_corpus, .timeout = 300) {
  const char *dir = tu_scratch_dir();
  write_file(dir, "lm.dl", tiny_lm);
  write_file(dir, "corpus.txt", corpus());
  char *out;
  int st = dlc(dir, "train lm.dl --save lm.safetensors", &out);
  cr_assert_eq(st, 0, "dlc train:\n%s", out);
  cr_expect(strstr(out, "97 samples (11 validation"), "the 1300 bytes make 108 windows of 12:\n%s", out);
  free(out);
  st = dlc(dir, "sample lm.dl --params lm.safetensors --prime 'hello, w' --length 17 --temperature 0", &out);
  cr_assert_eq(st, 0, "dlc sample:\n%s", out);
  cr_expect(strcmp(out, "hello, world\nhello, world\n") == 0, "greedy continuation: '%s'", out);
  free(out);
  /* sampled at a temperature: the seed decides, and only the corpus's characters come out */
  char *a, *b;
  cr_assert_eq(dlc(dir, "sample lm.dl --params lm.safetensors --prime h --length 40 --seed 5", &a), 0);
  cr_assert_eq(dlc(dir, "sample lm.dl --params lm.safetensors --prime h --length 40 --seed 5", &b), 0);
  cr_expect(strcmp(a, b) == 0 && strlen(a) == 42 && strspn(a, "\n ,dehlorw") == 42, "'%s' / '%s'", a, b);
  free(a);
  free(b);
  expect(dir, "sample lm.dl --params lm.safetensors --prime 'hex'", 1,
         "--prime: error: character 3 ('x', byte 120) is not in the corpus's vocabulary");
  write_file(dir, "other.txt", "abc\n");
  expect(dir, "sample lm.dl --params lm.safetensors --data text:other.txt", 1,
         "other.txt: error: has 4 distinct characters, but the model's logits have 10 classes");
  /* the vocabulary came with the weights: the corpus is no longer needed */
  char from[700], to[700];
  snprintf(from, sizeof from, "%s/corpus.txt", dir);
  snprintf(to, sizeof to, "%s/corpus.moved", dir);
  cr_assert_eq(rename(from, to), 0);
  st = dlc(dir, "sample lm.dl --params lm.safetensors --prime 'hello, w' --length 17 --temperature 0", &out);
  cr_expect(st == 0 && strcmp(out, "hello, world\nhello, world\n") == 0, "without the corpus (exit %d): '%s'", st, out);
  free(out);
  expect(dir, "sample lm.dl --prime h", 2, "no weights given: --params W.safetensors");
  expect(dir, "sample lm.dl --params lm.safetensors --temperature -1", 2, "--temperature");
  expect(dir, "sample lm.dl --params missing.safetensors", 1, "missing.safetensors");
}

Test(text, vocabulary_as_text) {
  RtVocab v, back;
  RtError err;
  rt_vocab_build((const unsigned char *)"ba\n\xff", 4, &v);
  char text[RT_VOCAB_TEXT_MAX];
  rt_vocab_encode(&v, text);
  cr_expect_str_eq(text, "0a6162ff");
  cr_assert_eq(rt_vocab_decode(text, &back, "w", &err), RT_OK, "%s", err.msg);
  cr_expect(back.n == 4 && memcmp(back.sym, v.sym, 4) == 0 && back.id[0xff] == 3 && back.id['c'] == -1);
  static const char *const bad[][2] = {{"", "is 0 hex digits"}, {"0a6", "is 3 hex digits"},
                                       {"0a6x", "symbol 1 of the vocabulary is '6x'"},
                                       {"610a61", "byte 97 is both symbol 0 and symbol 2"}};
  for (int i = 0; i < 4; i++) {
    cr_expect_eq(rt_vocab_decode(bad[i][0], &back, "w", &err), RT_ERR_FORMAT, "'%s' accepted", bad[i][0]);
    cr_expect(strstr(err.msg, bad[i][1]) && !strncmp(err.msg, "w: ", 3), "'%s': %s", bad[i][0], err.msg);
  }
}

/* lm.safetensors rewritten as out with dlc.vocab set to vocab, or
 * without it (NULL): every tensor and other metadata kept. */
static void rewrite_vocab(const char *dir, const char *out, const char *vocab) {
  char path[700];
  RtTensorSet in, w;
  RtError err;
  snprintf(path, sizeof path, "%s/lm.safetensors", dir);
  rt_set_init(&in), rt_set_init(&w);
  cr_assert_eq(rt_safetensors_read(path, &in, &err), RT_OK, "%s", err.msg);
  for (int i = 0; i < in.count; i++) cr_assert_eq(rt_set_add_copy(&w, in.items[i].name, &in.items[i].t, &err), RT_OK);
  for (int i = 0; i < in.nmeta; i++)
    if (strcmp(in.meta_keys[i], "dlc.vocab")) cr_assert_eq(rt_set_meta(&w, in.meta_keys[i], in.meta_vals[i], &err), RT_OK);
  if (vocab) cr_assert_eq(rt_set_meta(&w, "dlc.vocab", vocab, &err), RT_OK);
  snprintf(path, sizeof path, "%s/%s", dir, out);
  cr_assert_eq(rt_safetensors_write(path, &w, &err), RT_OK, "%s", err.msg);
  rt_set_free(&in), rt_set_free(&w);
}

Test(text, the_vocabulary_saved_with_the_weights, .timeout = 120) {
  const char *dir = tu_scratch_dir();
  write_file(dir, "lm.dl", tiny_lm);
  write_file(dir, "corpus.txt", corpus());
  char *out;
  cr_assert_eq(dlc(dir, "train lm.dl --epochs 1 --save lm.safetensors", &out), 0, "%s", out);
  free(out);
  RtTensorSet w;
  RtError err;
  char path[700];
  snprintf(path, sizeof path, "%s/lm.safetensors", dir);
  rt_set_init(&w);
  cr_assert_eq(rt_safetensors_read(path, &w, &err), RT_OK, "%s", err.msg);
  const char *saved = rt_set_get_meta(&w, "dlc.vocab");
  cr_expect(saved && !strcmp(saved, "0a202c6465686c6f7277"), "dlc.vocab: %s", saved ? saved : "(none)");
  rt_set_free(&w);
  /* damaged or mismatched entries are named */
  rewrite_vocab(dir, "bad.safetensors", "0a202c6465686c6f72zz");
  expect(dir, "sample lm.dl --params bad.safetensors", 1,
         "bad.safetensors: dlc.vocab: symbol 9 of the vocabulary is 'zz', not two hex digits");
  rewrite_vocab(dir, "bad.safetensors", "0a202c6465686c6f7220");
  expect(dir, "sample lm.dl --params bad.safetensors", 1, "byte 32 is both symbol 1 and symbol 9 of the vocabulary");
  rewrite_vocab(dir, "bad.safetensors", "0a202c6465686c6f72");
  expect(dir, "sample lm.dl --params bad.safetensors", 1,
         "its vocabulary (dlc.vocab) has 9 symbols, but the model's logits have 10 classes");
  write_file(dir, "other.txt", "hello, worlD\n");
  expect(dir, "sample lm.dl --params lm.safetensors --data text:other.txt", 1,
         "other.txt: error: is not the corpus the weights were trained on: its symbol 3 is byte 68, but "
         "lm.safetensors's vocabulary has byte 100 there");
  /* weights without a vocabulary take the corpus's, and say when there is none */
  rewrite_vocab(dir, "old.safetensors", NULL);
  cr_assert_eq(dlc(dir, "sample lm.dl --params old.safetensors --length 5", &out), 0, "%s", out);
  free(out);
  write_file(dir, "nocorpus.dl", "model tiny_lm\ninput tokens: i64[N, 12]\ne = embedding(tokens, 10, 8) as embed\n"
                                  "hs, h_n, c_n = lstm(e, hidden_size=32, batch_first=true) as lstm\n"
                                  "logits = dense(hs, 10) as head\noutput logits\n");
  expect(dir, "sample nocorpus.dl --params old.safetensors", 1,
         "old.safetensors: error: holds no vocabulary (dlc.vocab, saved by dlc train for text data): give the "
         "training corpus with --data text:FILE");
  cr_assert_eq(dlc(dir, "sample nocorpus.dl --params old.safetensors --data text:corpus.txt --length 5", &out), 0, "%s", out);
  free(out);
}

Test(text, the_data_input_must_hold_ids) {
  const char *dir = tu_scratch_dir();
  write_file(dir, "corpus.txt", corpus());
  write_file(dir, "f.dl", "model f\ninput x: f32[N, 12]\ny = dense(x, 2)\noutput y\n"
                          "train {\n  label t: i64[N]\n  loss = cross_entropy(y, t)\n  optimizer = sgd(lr=0.1)\n"
                          "  data = text(\"corpus.txt\")\n}\n");
  expect(dir, "train f.dl --epochs 1", 1, "text data feeds character ids to an input i64[N, T] with a constant T, not 'x'");
  write_file(dir, "lm.dl", tiny_lm);
  expect(dir, "train lm.dl --epochs 1 --data text:nothere.txt", 1, "nothere.txt: cannot open the text file");
}

/* Ids out of the table they index are refused before training, at the
 * line of the op, with the value and its place: text windows against a
 * table smaller than the corpus, and ids bound by name from .npy. */
Test(text, ids_out_of_range_are_refused_before_training) {
  const char *dir = tu_scratch_dir();
  write_file(dir, "lm.dl", tiny_lm);
  char big[1000] = "";
  for (int i = 0; i < 50; i++) strcat(big, "hello, world xyz!\n"); /* 14 symbols; 'e' is id 5 */
  write_file(dir, "big.txt", big);
  expect(dir, "train lm.dl --data text:big.txt", 1,
         "lm.dl:3:5: error: input 'tokens' holds 10 at sample 0, position [7], but the axis this index_select indexes "
         "has 10 entries (0 to 9) (the text big.txt has 14 distinct characters)");
  write_file(dir, "e.dl", "model e\ninput ids: i64[N, 3]\ne = embedding(ids, 5, 2) as emb\ny = dense(flatten(e), 1)\n"
                          "output y\ntrain {\n  label t: f32[N, 1]\n  loss = mse_loss(y, t)\n  optimizer = sgd(lr=0.1)\n"
                          "  epochs = 1\n  data = npy(\"ids=ids.npy,t=t.npy\")\n}\n");
  int64_t ids[12] = {0, 1, 2, 3, 4, 0, 1, 5, 2, 0, 0, 0}, shape[2] = {4, 3}, tshape[2] = {4, 1};
  float t[4] = {0};
  RtTensor x = {.dtype = DT_I64, .rank = 2, .data = ids}, y = {.dtype = DT_F32, .rank = 2, .data = t};
  memcpy(x.shape, shape, sizeof shape), memcpy(y.shape, tshape, sizeof tshape);
  char path[700];
  RtError err;
  snprintf(path, sizeof path, "%s/ids.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK, "%s", err.msg);
  snprintf(path, sizeof path, "%s/t.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK, "%s", err.msg);
  expect(dir, "train e.dl", 1, "e.dl:3:5: error: input 'ids' holds 5 at sample 2, position [1], but the axis this "
                               "index_select indexes has 5 entries (0 to 4)");
  ids[7] = -1;
  snprintf(path, sizeof path, "%s/ids.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK, "%s", err.msg);
  expect(dir, "train e.dl", 1, "input 'ids' holds -1 at sample 2, position [1]");
  ids[7] = 4;
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK, "%s", err.msg);
  char *out;
  cr_expect_eq(dlc(dir, "train e.dl", &out), 0, "ids in range train:\n%s", out);
  free(out);
}

/* --- one character at a time ------------------------------------------------------ */

/* Within its window a recurrent model stepped with its states carried
 * gives what rerunning the window gives. */
Test(text, carried_states_continue_as_the_window_does, .timeout = 300) {
  const char *dir = tu_scratch_dir();
  write_file(dir, "lm.dl", tiny_lm);
  write_file(dir, "corpus.txt", corpus());
  char *out, *win;
  cr_assert_eq(dlc(dir, "train lm.dl --epochs 3 --save lm.safetensors", &out), 0, "%s", out);
  free(out);
  for (int seed = 1; seed <= 3; seed++) { /* 2 + 10 characters: within the window of 12 */
    char args[200];
    snprintf(args, sizeof args, "sample lm.dl --params lm.safetensors --prime 'he' --length 10 --seed %d", seed);
    cr_assert_eq(dlc(dir, args, &out), 0, "%s", out);
    strcat(args, " --window");
    cr_assert_eq(dlc(dir, args, &win), 0, "%s", win);
    cr_expect(strcmp(out, win) == 0 && strlen(out) == 13, "seed %d: carried '%s', window '%s'", seed, out, win);
    free(out);
    free(win);
  }
  write_file(dir, "bi.dl", "model bi\ninput tokens: i64[N, 12]\ne = embedding(tokens, 10, 8)\n"
                           "hs, h_n, c_n = lstm(e, hidden_size=4, batch_first=true, bidirectional=true) as lstm\n"
                           "logits = dense(hs, 10)\noutput logits\n");
  expect(dir, "sample bi.dl --params lm.safetensors --data text:corpus.txt", 1,
         "the model has no step function; --window reruns the last 12 characters instead");
}

/* samples/char_step.c, compiled with the step function dlc emits for
 * samples/char_lstm.dl, prints what dlc sample prints at temperature 0. */
Test(text, the_emitted_step_function_generates_as_dlc_sample, .timeout = 600) {
  const char *dir = tu_scratch_dir();
  static char text[93 * 40 + 1];
  uint32_t r = 12345;
  for (int i = 0; i < 93 * 40; i++) { /* 93 symbols (bytes 32..124), all present */
    r = r * 1103515245u + 12345u;
    text[i] = (char)(32 + (i < 93 ? i : (int)((r >> 16) % 93)));
  }
  write_file(dir, "corpus.txt", text);
  char *out, *c_out, cmd[2000];
  snprintf(cmd, sizeof cmd, "train %s/samples/char_lstm.dl --data text:corpus.txt --steps 3 --batch 4 --save w.safetensors",
           DLC_SOURCE_DIR);
  cr_assert_eq(dlc(dir, cmd, &out), 0, "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "sample %s/samples/char_lstm.dl --params w.safetensors --prime 'The ' --length 80 "
           "--temperature 0", DLC_SOURCE_DIR);
  cr_assert_eq(dlc(dir, cmd, &out), 0, "%s", out);
  snprintf(cmd, sizeof cmd, "%s/samples/char_lstm.dl --step -o char_lstm_step.c", DLC_SOURCE_DIR);
  cr_assert_eq(dlc(dir, cmd, &c_out), 0, "%s", c_out);
  free(c_out);
  snprintf(cmd, sizeof cmd, "cd %s && cc -O2 -std=c11 -Wall -Wextra -Werror -I. %s/samples/char_step.c char_lstm_step.c "
           "-lm -o char_step && ./char_step w.safetensors 'The ' 80 > c_out.txt", dir, DLC_SOURCE_DIR);
  cr_assert_eq(system(cmd), 0, "%s failed", cmd);
  char path[700];
  snprintf(path, sizeof path, "%s/c_out.txt", dir);
  c_out = tu_read_file(path, NULL);
  cr_assert_not_null(c_out);
  cr_expect(strlen(out) == 85 && strcmp(out, c_out) == 0, "dlc sample:\n'%s'\nchar_step:\n'%s'", out, c_out);
  free(out);
  free(c_out);
}

/* samples/char_lstm.dl trains with truncated BPTT and carried state as it
 * is written: no line of it spells the window length out. */
Test(text, the_char_lstm_sample_trains_with_bptt_and_carried_state, .timeout = 600) {
  const char *dir = tu_scratch_dir();
  static char text[93 * 20 + 1];
  for (int i = 0; i < 93 * 20; i++)
    text[i] = (char)(32 + (i * 7) % 93);
  write_file(dir, "corpus.txt", text);
  char *out, cmd[1000];
  snprintf(cmd, sizeof cmd,
           "train %s/samples/char_lstm.dl --data text:corpus.txt --steps 3 --batch 4 --bptt 16 --carry-state",
           DLC_SOURCE_DIR);
  cr_assert_eq(dlc(dir, cmd, &out), 0, "%s", out);
  cr_expect(strstr(out, "stopped after 3 steps") != NULL, "%s", out);
  free(out);
}
