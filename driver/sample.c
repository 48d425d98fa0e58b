/*
 * sample.c — `dlc sample`: text from a character-level language model.
 *
 * The model reads character ids through one i64 input [N, T] and gives
 * logits over the vocabulary for every position (its first output,
 * [N*T, C] or [N, T, C]).  The vocabulary (C symbols) is the one dlc
 * train saved with the weights (metadata dlc.vocab, text.c); --data
 * text:FILE given as well must have that same vocabulary.  Weights saved
 * without one (by older versions, or from another data form) take it
 * from the corpus, rebuilt as text.c builds it: --data text:FILE, else
 * the model's `data = text(...)`.
 *
 * A recurrent model (one with scans) runs one character at a time: its
 * step graph (passes/step.c: the model on one step, its scans' states as
 * inputs and outputs) is compiled once (JIT, N = 1), the states start at
 * zero as in training, and each character is one step whose returned
 * states are the next step's, so the context is the whole text, not a
 * window, and a character costs one step instead of T.  Other models, or
 * --window, rerun the window: each new character is one forward pass over
 * the last T characters of the text so far (fewer at the start: they sit
 * at the window's first positions, and since the model reads left to
 * right the positions after them do not change the logits read).  Within
 * the first T characters both give the same logits.  The next character
 * is drawn from softmax(logits / temperature)
 * with the generator seeded by --seed; temperature 0 takes the most likely.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "driver/driver.h"
#include "driver/numbers.h"

static const char *usage_sample =
    "usage: dlc sample MODEL.dl --params W.safetensors [--prime TEXT] [--length N]\n"
    "                  [--temperature T] [--seed S] [--data text:FILE] [--window]\n"
    "Generates text from a character-level language model (samples/char_lstm.dl).\n"
    "  --params FILE          trained weights (required)\n"
    "  --prime TEXT           the text to continue (default: a newline)\n"
    "  --length N             characters to generate (default 200)\n"
    "  --temperature T        softmax temperature, 0 for the most likely (default 0.8)\n"
    "  --seed S               the generator's seed (default 0)\n"
    "  --data text:FILE       the training corpus: checked against the vocabulary saved\n"
    "                         with the weights, or its source when they have none\n"
    "                         (default: the model's data = text(...))\n"
    "  --window               rerun the last T characters for each one, even when the\n"
    "                         model is recurrent (default: carry its states)\n";

typedef struct SampleOpts {
  const char *model, *params, *prime, *data;
  int64_t length, seed;
  double temperature;
  int window;               /* --window: rerun the last T characters even for a recurrent model */
} SampleOpts;

/* dlc sample's flags; in_repl: only the generation flags (the REPL's
 * generate: the model and the weights are the session's). */
static int parse_flags(int argc, char **argv, SampleOpts *o, int in_repl, Diags *d) {
  const char *where = in_repl ? "generate" : "dlc sample";
  *o = (SampleOpts){NULL, NULL, "\n", NULL, 200, 0, 0.8, 0};
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    if (!strcmp(argv[i], "--window")) {
      o->window = 1;
      continue;
    }
    if ((v = dlc_flag(argc, argv, &i, "--params", &miss))) o->params = v;
    else if ((v = dlc_flag(argc, argv, &i, "--prime", &miss))) o->prime = v;
    else if ((v = dlc_flag(argc, argv, &i, "--data", &miss))) o->data = v;
    else if ((v = dlc_flag(argc, argv, &i, "--length", &miss))) {
      if (dlc_parse_int("--length", v, 0, 1 << 24, &o->length, d)) return -1;
    } else if ((v = dlc_flag(argc, argv, &i, "--seed", &miss))) {
      if (dlc_parse_int("--seed", v, 0, INT64_MAX, &o->seed, d)) return -1;
    } else if ((v = dlc_flag(argc, argv, &i, "--temperature", &miss))) {
      char *end;
      o->temperature = strtod(v, &end);
      if (!*v || *end || !(o->temperature >= 0 && o->temperature <= 100))
        return diag_plain(d, "--temperature", "expected a number in [0, 100], got '%s'", v), -1;
    } else if (miss) return diag_plain(d, argv[i], "needs a value"), -1;
    else if (argv[i][0] == '-' || in_repl)
      return diag_plain(d, argv[i], "unknown option (see %s)", in_repl ? "help" : "dlc sample --help"), -1;
    else if (o->model) return diag_plain(d, argv[i], "only one model file"), -1;
    else o->model = argv[i];
  }
  if (in_repl && (o->params || o->window))
    return diag_plain(d, "generate", "uses the session's weights and carries a recurrent model's states: no --params "
                      "or --window"), -1;
  if (!in_repl && !o->model) return diag_plain(d, where, "no model file given (see dlc sample --help)"), -1;
  if (!in_repl && !o->params) return diag_plain(d, where, "no weights given: --params W.safetensors"), -1;
  if (!o->prime[0]) return diag_plain(d, "--prime", "the text to continue is empty"), -1;
  if (o->data && strncmp(o->data, "text:", 5))
    return diag_plain(d, "--data", "expected text:FILE, got '%s'", o->data), -1;
  return 0;
}

static int parse_sample(int argc, char **argv, SampleOpts *o, Diags *d) { return parse_flags(argc, argv, o, 0, d); }

/* The generation state: the compiled model, its buffers, the vocabulary. */
typedef struct Sampler {
  Model m;
  Diags *d;
  Graph step;               /* the step graph (carry mode) */
  int carry, step_ready;    /* carry the states (else rerun the window); step initialised */
  Program prog;
  PassCtx pc;
  Graph *g;                 /* what is compiled: &step, or the model's graph */
  CModule *mod;
  int ctx_ready, lowered;   /* pc initialised; prog built by pass_run */
  RtVocab vocab;
  int input;                /* the ids input node */
  int64_t steps, classes;
  int64_t *ids;             /* [1, steps], or [1, 1] when carrying */
  float *logits;
  int nstates;              /* carry: state k is read from state_in[k], returned in state_out[k] */
  float *state_in[64], *state_out[64];
  size_t state_bytes[64];
  void *args[64];
} Sampler;

/* The corpus path: --data text:FILE, else the model's data = text(...)
 * (relative to the model's directory). */
static const char *corpus_path(const SampleOpts *o, const Model *m, char *buf, size_t len) {
  if (o->data) return o->data + 5;
  const CallSpec *c = &m->train.data;
  if (!c->name || strcmp(c->name, "text") || !c->nargs || !c->strs[0]) return NULL;
  const char *slash = strrchr(o->model, '/');
  if (c->strs[0][0] == '/' || !slash) return c->strs[0];
  snprintf(buf, len, "%.*s%s", (int)(slash - o->model + 1), o->model, c->strs[0]);
  return buf;
}

/* The i64 [N, T] input and the logits (first output) with C classes. */
static int find_io(Sampler *s, const char *model) {
  const Graph *g = &s->m.g;
  s->input = -1;
  for (int i = 0; i < g->nnodes; i++)
    if (g->nodes[i].op == OP_INPUT && s->input < 0) s->input = i;
  const Node *x = s->input >= 0 ? &g->nodes[s->input] : NULL;
  if (!x || x->dtype != DT_I64 || x->shape.rank != 2 || DIM_IS_SYM(x->shape.d[1]) || !DIM_IS_SYM(x->shape.d[0]))
    return diag_plain(s->d, model, "dlc sample needs a model whose first input holds character ids, i64[N, T]"), -1;
  const Node *y = g->noutputs ? &g->nodes[g->outputs[0].id] : NULL;
  if (!y || y->dtype != DT_F32 || y->shape.rank < 2 || DIM_IS_SYM(y->shape.d[y->shape.rank - 1]))
    return diag_plain(s->d, model, "dlc sample needs logits over the vocabulary as the first output"), -1;
  s->steps = x->shape.d[1];
  s->classes = y->shape.d[y->shape.rank - 1];
  return 0;
}

/* The graph to compile: the step graph of a model with scans (unless
 * --window), else the model's. */
static int sampler_graph(Sampler *s, const SampleOpts *o) {
  s->g = &s->m.g;
  for (int i = 0; i < s->m.g.nnodes && !o->window; i++) s->carry |= s->m.g.nodes[i].op == OP_SCAN;
  if (!s->carry) return 0;
  s->step_ready = 1;
  if (pass_step_graph(&s->m.g, &s->step))
    return diag_plain(s->d, "dlc sample", "the model has no step function; --window reruns the last %lld characters "
                      "instead", (long long)s->steps), -1;
  s->g = &s->step;
  return 0;
}

/* The forward pass (N = 1) compiled with the weights params. */
static int sampler_compile(Sampler *s, const SampleOpts *o, RtTensorSet *params) {
  RtError err;
  if (sampler_graph(s, o)) return -1;
  for (int k = 0; k < s->g->nsyms; k++) s->g->syms[k].max = 1;
  PassOpts po = {.stages = 0};
  pass_ctx_init(&s->pc, PIPE_INFER, s->g, -1, &s->g, &s->prog, &po, s->d);
  s->ctx_ready = 1;
  if (pass_run(&s->pc)) return -1;
  s->lowered = 1;
  int rc = ir_params_check(s->g, params, o->params, &err);
  if (!rc && !(s->mod = cg_jit_build(&s->prog, &err))) rc = 1;
  if (!rc) rc = cg_c_set_params(s->mod, params, &err) != RT_OK;
  if (rc) return diag_plain(s->d, o->params, "%s", err.msg), -1;
  return 0;
}

/* The vocabulary of the corpus, named by --data or by the model's
 * data = text(...); the only source for a checkpoint without dlc.vocab. */
static int corpus_vocab(Sampler *s, const SampleOpts *o, RtVocab *v) {
  char buf[4096];
  RtError err;
  const char *corpus = corpus_path(o, &s->m, buf, sizeof buf);
  if (!corpus)
    return diag_plain(s->d, o->params, "holds no vocabulary (dlc.vocab, saved by dlc train for text data): give the "
                      "training corpus with --data text:FILE"), -1;
  unsigned char *text;
  size_t len;
  if (rt_text_read(corpus, &text, &len, v, &err)) return diag_plain(s->d, "dlc sample", "%s", err.msg), -1;
  rt_xfree(text);
  if (v->n != s->classes)
    return diag_plain(s->d, corpus, "has %d distinct characters, but the model's logits have %lld classes", v->n,
                      (long long)s->classes), -1;
  return 0;
}

/* The first id where two vocabularies differ, or -1. */
static int vocab_differs(const RtVocab *a, const RtVocab *b) {
  for (int k = 0; k < a->n || k < b->n; k++)
    if (k >= a->n || k >= b->n || a->sym[k] != b->sym[k]) return k;
  return -1;
}

/* The checkpoint's dlc.vocab when it has one (checked against --data
 * when that is given too), else the corpus's. */
static int sampler_vocab(Sampler *s, const SampleOpts *o, const RtTensorSet *params) {
  const char *saved = rt_set_get_meta(params, "dlc.vocab");
  RtError err;
  char what[4200];
  if (!saved) return corpus_vocab(s, o, &s->vocab);
  snprintf(what, sizeof what, "%s: dlc.vocab", o->params);
  if (rt_vocab_decode(saved, &s->vocab, what, &err)) return diag_plain(s->d, "dlc sample", "%s", err.msg), -1;
  if (s->vocab.n != s->classes)
    return diag_plain(s->d, o->params, "its vocabulary (dlc.vocab) has %d symbols, but the model's logits have %lld "
                      "classes", s->vocab.n, (long long)s->classes), -1;
  RtVocab given;
  if (!o->data) return 0;
  if (corpus_vocab(s, o, &given)) return -1;
  int k = vocab_differs(&s->vocab, &given);
  if (k >= 0)
    return diag_plain(s->d, o->data + 5, "is not the corpus the weights were trained on: its symbol %d is byte %d, but "
                      "%s's vocabulary has byte %d there", k, given.sym[k], o->params, s->vocab.sym[k]), -1;
  return 0;
}

/* Weights, vocabulary and the compiled forward pass (N = 1). */
static int sampler_open(Sampler *s, const SampleOpts *o) {
  RtError err;
  RtTensorSet params;
  rt_set_init(&params);
  if (rt_safetensors_read(o->params, &params, &err)) {
    rt_set_free(&params);
    return diag_plain(s->d, o->params, "%s", err.msg), -1;
  }
  int rc = sampler_vocab(s, o, &params);
  if (!rc) rc = sampler_compile(s, o, &params);
  rt_set_free(&params);
  return rc;
}

/* Pairs state input buffer b (named as the step graph's state output)
 * with that output, once both are allocated. */
static void pair_states(Sampler *s) {
  const Func *f = &s->prog.funcs[0];
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *in = &s->prog.bufs[f->args[i]];
    if (in->kind != BUF_INPUT || strncmp(in->name, "state", 5)) continue;
    for (int j = 0; j < f->nargs; j++) {
      const Buffer *out = &s->prog.bufs[f->args[j]];
      if (out->kind != BUF_OUTPUT || strcmp(out->name, in->name)) continue;
      s->state_in[s->nstates] = s->args[i], s->state_out[s->nstates] = s->args[j];
      s->state_bytes[s->nstates++] = sizeof(float) * (size_t)out->size;
    }
  }
}

/* Buffers for the forward function's arguments (zero: the states start at zero). */
static int sampler_buffers(Sampler *s) {
  const Func *f = &s->prog.funcs[0];
  if (f->nargs > 64) return diag_plain(s->d, "dlc sample", "the model has more than 64 inputs and outputs"), -1;
  const char *ids = s->m.g.nodes[s->input].name;
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &s->prog.bufs[f->args[i]];
    int64_t n = 1;
    for (int k = 0; k < b->shape.rank; k++) n *= DIM_IS_SYM(b->shape.d[k]) ? 1 : b->shape.d[k];
    s->args[i] = rt_xcalloc((size_t)n + 1, rt_dtype_size(b->dtype));
    if (b->kind == BUF_INPUT && !strcmp(b->name, ids)) s->ids = s->args[i];
    else if (b->kind == BUF_OUTPUT && !strcmp(b->name, s->g->outputs[0].name)) s->logits = s->args[i];
  }
  if (s->carry) pair_states(s);
  return s->ids && s->logits ? 0 : (diag_plain(s->d, "dlc sample", "the compiled model lost its input or logits"), -1);
}

/* Runs the model so s->logits' row *row holds the scores of the character
 * after ctx[0..n): carrying, one step on ctx[n - 1] (every n in turn);
 * else a pass over the last T characters. */
static int advance(Sampler *s, const int64_t *ctx, int64_t n, int64_t *row, RtError *err) {
  int64_t w = n < s->steps ? n : s->steps;
  if (s->carry) s->ids[0] = ctx[n - 1], w = 1;
  else {
    memset(s->ids, 0, sizeof(int64_t) * (size_t)s->steps);
    memcpy(s->ids, ctx + n - w, sizeof(int64_t) * (size_t)w);
  }
  int64_t sym[IR_MAX_SYMS];
  for (int k = 0; k < IR_MAX_SYMS; k++) sym[k] = 1;
  if (cg_c_call(s->mod, s->prog.funcs[0].name, sym, s->args, err)) return -1;
  for (int k = 0; k < s->nstates; k++) memcpy(s->state_in[k], s->state_out[k], s->state_bytes[k]);
  *row = w - 1;
  return 0;
}

/* The next character's id after ctx[0..n) (advance called for it). */
static int next_id(Sampler *s, const int64_t *ctx, int64_t n, double temperature, RtRng *r, RtError *err) {
  int64_t at;
  if (advance(s, ctx, n, &at, err)) return -1;
  const float *row = s->logits + at * s->classes;
  int best = 0;
  for (int c = 1; c < s->classes; c++)
    if (row[c] > row[best]) best = c;
  if (temperature == 0) return best;
  double total = 0, p[256];
  for (int c = 0; c < s->classes; c++) total += p[c] = exp((row[c] - row[best]) / temperature);
  double u = rt_rng_uniform(r) * total;
  for (int c = 0; c < s->classes; c++)
    if ((u -= p[c]) < 0) return c;
  return best;
}

static int generate(Sampler *s, const SampleOpts *o) {
  size_t np = strlen(o->prime);
  int64_t *ctx = rt_xmalloc(sizeof(int64_t) * (np + (size_t)o->length + 1));
  for (size_t i = 0; i < np; i++) {
    unsigned char c = (unsigned char)o->prime[i];
    if (s->vocab.id[c] < 0) {
      rt_xfree(ctx);
      return diag_plain(s->d, "--prime", "character %zu ('%c', byte %d) is not in the corpus's vocabulary", i + 1,
                        c >= 32 && c < 127 ? c : '?', c), -1;
    }
    ctx[i] = s->vocab.id[c];
  }
  RtRng r;
  rt_rng_seed_stream(&r, (uint64_t)o->seed, "sample");
  RtError err;
  fwrite(o->prime, 1, np, stdout);
  int64_t at;
  for (size_t i = 1; s->carry && i < np; i++) /* the prime's states */
    if (advance(s, ctx, (int64_t)i, &at, &err)) {
      rt_xfree(ctx);
      return diag_plain(s->d, "dlc sample", "%s", err.msg), -1;
    }
  for (int64_t k = 0; k < o->length; k++) {
    int id = next_id(s, ctx, (int64_t)np + k, o->temperature, &r, &err);
    if (id < 0) {
      rt_xfree(ctx);
      return diag_plain(s->d, "dlc sample", "%s", err.msg), -1;
    }
    ctx[np + (size_t)k] = id;
    putchar(s->vocab.sym[id]);
  }
  putchar('\n');
  rt_xfree(ctx);
  return 0;
}

static void sampler_close(Sampler *s) {
  if (s->mod) cg_c_free(s->mod);
  for (int k = 0; k < 64; k++) rt_xfree(s->args[k]);
  if (s->lowered) kir_program_free(&s->prog);
  if (s->ctx_ready) pass_ctx_free(&s->pc);
  if (s->step_ready) ir_graph_free(&s->step);
  fe_model_free(&s->m);
}

/* The REPL's generate: the session's model text and weights, the
 * vocabulary of its text data (vocab->n > 0) or else of its corpus. */
int dlc_generate(const char *path, const char *text, RtTensorSet *params, const RtVocab *vocab, int argc, char **argv,
                 Diags *d) {
  SampleOpts o;
  if (parse_flags(argc, argv, &o, 1, d)) return -1;
  o.model = path, o.params = "the session's weights";
  Sampler s;
  memset(&s, 0, sizeof s);
  s.d = d;
  if (fe_load_string(&s.m, path, text, d)) return -1;
  int rc = find_io(&s, path);
  if (!rc && vocab->n) {
    s.vocab = *vocab;
    if (s.vocab.n != s.classes) {
      diag_plain(d, "generate", "the text data has %d symbols, but the model's logits have %lld classes", s.vocab.n,
                 (long long)s.classes);
      rc = -1;
    }
  } else if (!rc) {
    rc = corpus_vocab(&s, &o, &s.vocab);
  }
  rc = rc || sampler_compile(&s, &o, params) || sampler_buffers(&s) || generate(&s, &o) ? -1 : 0;
  fflush(stdout);
  sampler_close(&s);
  return rc;
}

int dlc_cmd_sample(int argc, char **argv) {
  Diags d;
  diag_init(&d, stderr);
  SampleOpts o;
  int rc = parse_sample(argc, argv, &o, &d);
  if (rc) return rc > 0 ? dlc_usage(usage_sample, 0) : 2;
  Sampler s;
  memset(&s, 0, sizeof s);
  s.d = &d;
  if (dlc_load_model(&s.m, o.model, NULL, 0, &d)) return 1;
  int status = find_io(&s, o.model) || sampler_open(&s, &o) || sampler_buffers(&s) || generate(&s, &o) ? 1 : 0;
  sampler_close(&s);
  return status;
}
