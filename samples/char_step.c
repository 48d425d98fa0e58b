/*
 * char_step.c — text from samples/char_lstm.dl in plain C, one character
 * at a time through the step function dlc emits for it.
 *
 *   dlc train samples/char_lstm.dl --save char_lstm.safetensors
 *   dlc samples/char_lstm.dl --step -o char_lstm_step.c
 *   cc -O2 -I. samples/char_step.c char_lstm_step.c -lm -o char_step
 *   ./char_step char_lstm.safetensors "The " 200
 *
 * char_lstm_step_forward takes one character id and the LSTM's states
 * (h, c) and returns the logits of the next character and the new states
 * (docs/generated-c.md); the states start at zero, as in training, and
 * each step's are the next one's input, so the program keeps two copies
 * and swaps them.  The weights file is one dlc train saved: the
 * parameters are loaded by char_lstm_step_load, and the vocabulary is its
 * metadata dlc.vocab (two hex digits per symbol, in id order), found here
 * in the safetensors JSON header.  Each character is the most likely one,
 * so the text is what `dlc sample --temperature 0` prints for the same
 * prime and length.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "char_lstm_step.h"

enum { HIDDEN = 128, CLASSES = 93 }; /* lstm hidden_size and the vocabulary of samples/char_lstm.dl */

typedef struct Vocab {
  int n, id[256];
  unsigned char sym[256];
} Vocab;

static int hex(int c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

/* dlc.vocab of the safetensors file path; 0, or -1 with a message. */
static int read_vocab(const char *path, Vocab *v) {
  FILE *f = fopen(path, "rb");
  unsigned char len8[8];
  if (!f || fread(len8, 1, 8, f) != 8) return fprintf(stderr, "%s: cannot read\n", path), f ? fclose(f) : 0, -1;
  uint64_t len = 0;
  for (int k = 7; k >= 0; k--) len = len << 8 | len8[k];
  char *head = len < (1u << 26) ? malloc(len + 1) : NULL;
  int ok = head && fread(head, 1, len, f) == len;
  fclose(f);
  const char *s = ok ? (head[len] = 0, strstr(head, "\"dlc.vocab\":\"")) : NULL;
  for (int b = 0; b < 256; b++) v->id[b] = -1;
  for (v->n = 0, s = s ? s + 13 : NULL; s && hex(s[0]) >= 0 && hex(s[1]) >= 0 && v->n < 256; s += 2, v->n++) {
    int b = hex(s[0]) * 16 + hex(s[1]);
    v->sym[v->n] = (unsigned char)b, v->id[b] = v->n;
  }
  free(head);
  if (!s || *s != '"' || v->n != CLASSES)
    return fprintf(stderr, "%s: no vocabulary of %d symbols (dlc.vocab) in the metadata\n", path, CLASSES), -1;
  return 0;
}

typedef struct Lm {
  float h[2][HIDDEN], c[2][HIDDEN]; /* the states: [cur] in, [!cur] out */
  float logits[CLASSES];
  int cur;
} Lm;

/* One step on character id: the logits of the next, the states carried. */
static int step(Lm *m, int id) {
  int64_t tok = id;
  int rc = char_lstm_step_forward(1, &tok, m->h[m->cur], m->c[m->cur], m->logits, m->h[!m->cur], m->c[!m->cur]);
  m->cur = !m->cur;
  return rc;
}

static int argmax(const float *x, int n) {
  int best = 0;
  for (int k = 1; k < n; k++)
    if (x[k] > x[best]) best = k;
  return best;
}

int main(int argc, char **argv) {
  if (argc != 4) return fprintf(stderr, "usage: char_step W.safetensors PRIME LENGTH\n"), 2;
  Vocab v;
  static Lm m; /* zero states */
  long length = strtol(argv[3], NULL, 10);
  if (read_vocab(argv[1], &v)) return 1;
  if (char_lstm_step_load(argv[1])) return fprintf(stderr, "%s: %s\n", argv[1], char_lstm_step_error()), 1;
  for (const char *p = argv[2]; *p; p++) {
    int id = v.id[(unsigned char)*p];
    if (id < 0) return fprintf(stderr, "'%c' is not in the vocabulary\n", *p), 1;
    if (step(&m, id)) return 1;
  }
  fputs(argv[2], stdout);
  for (long k = 0; k < length; k++) {
    int id = argmax(m.logits, CLASSES);
    putchar(v.sym[id]);
    if (step(&m, id)) return 1;
  }
  putchar('\n');
  return 0;
}
