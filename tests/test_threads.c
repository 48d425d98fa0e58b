/*
 * test_threads.c — parallel loops on several threads give the same bits
 * as on one.
 *
 * The pool (runtime/pool.c) is checked on its own: every iteration runs
 * exactly once, in contiguous chunks, one per thread, each chunk on its own
 * thread; a second caller while a job runs does its range alone; bad sizes
 * are refused.  Then every sample's training step (train_step and
 * eval_step of the train pipeline) and inference (forward) are compiled
 * once by the JIT and run with no pool, a pool of 2 and a pool of 3
 * threads, at a batch that fills the symbols' maximum and at a smaller
 * one whose chunks and register tiles end unevenly; every output and
 * every parameter and optimizer-state tensor after the call must be
 * bit-identical to the run without a pool.  The emitted C does the same
 * built serial and built with CG_C_THREADS_FLAGS (OpenMP), and compiles
 * without a warning under gcc and clang with -Wall -Wextra -pedantic,
 * both ways.
 */
#include <criterion/criterion.h>
#include <glob.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "codegen/emit_common.h"
#include "driver/trainer.h"
#include "frontend/frontend.h"
#include "ir/random.h"
#include "passes/passes.h"
#include "passes/schedule.h"
#include "tests/handkit.h"
#include "tests/testutil.h"

/* --- the pool ---------------------------------------------------------------------------------- */

#define POOL_MAX_COUNT 100

typedef struct Marks {
  atomic_int hits[POOL_MAX_COUNT];
  int64_t lo[8], hi[8];
  pthread_t who[8];
  atomic_int nchunks;
} Marks;

static void mark_chunk(int64_t lo, int64_t hi, void *ctx) {
  Marks *m = ctx;
  int c = atomic_fetch_add(&m->nchunks, 1);
  m->lo[c] = lo, m->hi[c] = hi, m->who[c] = pthread_self();
  for (int64_t i = lo; i < hi; i++) atomic_fetch_add(&m->hits[i], 1);
}

Test(pool, every_iteration_runs_once_in_contiguous_chunks) {
  RtError err;
  for (int n = 1; n <= 5; n++) {
    RtPool *p;
    cr_assert_eq(rt_pool_new(n, &p, &err), RT_OK, "%s", err.msg);
    cr_expect_eq(rt_pool_threads(p), n);
    for (int64_t count = 0; count <= POOL_MAX_COUNT; count += count < 12 ? 1 : 11) {
      Marks *m = calloc(1, sizeof *m);
      rt_pool_run(p, mark_chunk, count, m);
      for (int64_t i = 0; i < count; i++) cr_expect_eq(m->hits[i], 1, "%d threads, %lld iterations: iteration %lld ran %d times", n, (long long)count, (long long)i, m->hits[i]);
      int want = count == 0 ? 0 : count == 1 ? 1 : (int)(count < n ? count : n);
      cr_expect_eq(m->nchunks, want, "%d threads, %lld iterations: %d chunks", n, (long long)count, m->nchunks);
      for (int c = 0; c < m->nchunks; c++) {
        int64_t size = m->hi[c] - m->lo[c];
        cr_expect(size >= count / n && size <= count / n + 1, "chunk [%lld, %lld) of %lld on %d threads is not even",
                  (long long)m->lo[c], (long long)m->hi[c], (long long)count, n);
      }
      free(m);
    }
    rt_pool_free(p);
  }
}

/* The calling thread claims from the last chunk down, the workers from
 * the first up: the last chunk of every job runs on the caller, so on two
 * threads a kernel's second half always runs where the one before made
 * its second half.  (Which thread runs the first chunk depends on whether
 * the worker came in time; every iteration still runs once.) */
Test(pool, the_caller_runs_the_last_chunk) {
  RtError err;
  for (int n = 2; n <= 4; n++) {
    RtPool *p;
    cr_assert_eq(rt_pool_new(n, &p, &err), RT_OK, "%s", err.msg);
    for (int job = 0; job < 200; job++) {
      Marks *m = calloc(1, sizeof *m);
      int64_t count = 10 + job % 7;
      rt_pool_run(p, mark_chunk, count, m);
      int last = -1;
      for (int c = 0; c < m->nchunks; c++)
        if (m->hi[c] == count) last = c;
      cr_assert(last >= 0);
      cr_expect(pthread_equal(m->who[last], pthread_self()), "%d threads, job %d: the last chunk ran on a worker", n, job);
      for (int64_t i = 0; i < count; i++) cr_expect_eq(m->hits[i], 1);
      free(m);
    }
    rt_pool_free(p);
  }
}

/* DLC_POOL_TRACE=FILE: a line per job when the pool is freed, the
 * function, the count, the job's start and end, then each chunk's start,
 * end and thread (the last chunk the caller's, 0); with
 * DLC_POOL_TRACE_SERIAL=1, one chunk, the whole job, on the caller. */
static int trace_jobs(const char *path, int serial, int64_t count) {
  setenv("DLC_POOL_TRACE", path, 1);
  if (serial) setenv("DLC_POOL_TRACE_SERIAL", "1", 1);
  RtPool *p;
  RtError err;
  cr_assert_eq(rt_pool_new(2, &p, &err), RT_OK, "%s", err.msg);
  for (int j = 0; j < 3; j++) {
    Marks *m = calloc(1, sizeof *m);
    rt_pool_run(p, mark_chunk, count, m);
    for (int64_t i = 0; i < count; i++) cr_expect_eq(m->hits[i], 1);
    free(m);
  }
  rt_pool_free(p);
  unsetenv("DLC_POOL_TRACE");
  unsetenv("DLC_POOL_TRACE_SERIAL");
  FILE *f = fopen(path, "r");
  cr_assert(f, "no trace at %s", path);
  char line[512];
  int lines = 0;
  while (fgets(line, sizeof line, f)) {
    long long c, t0, t1, s[2], e[2];
    int who[2], got = sscanf(line, "%*s %lld %lld %lld %lld %lld %d %lld %lld %d", &c, &t0, &t1, &s[0], &e[0], &who[0],
                             &s[1], &e[1], &who[1]);
    cr_expect_eq(got, serial ? 6 : 9, "%s", line);
    cr_expect_eq(c, count, "%s", line);
    cr_expect(t0 <= s[0] && s[0] <= e[0] && e[0] <= t1, "%s", line);
    cr_expect_eq(who[serial ? 0 : 1], 0, "the last chunk not on the caller: %s", line);
    lines++;
  }
  fclose(f);
  return lines;
}

Test(pool, the_trace_has_a_line_per_job) {
  char path[] = "/tmp/dlc_pool_traceXXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  close(fd);
  cr_expect_eq(trace_jobs(path, 0, 10), 3);
  cr_expect_eq(trace_jobs(path, 1, 10), 3);
  unlink(path);
}

Test(pool, bad_sizes_are_refused) {
  RtError err;
  RtPool *p = (RtPool *)&err;
  cr_expect_neq(rt_pool_new(0, &p, &err), RT_OK);
  cr_expect_null(p);
  cr_expect(strstr(err.msg, "1 to 256 threads"), "%s", err.msg);
  cr_expect_neq(rt_pool_new(-3, &p, &err), RT_OK);
  cr_expect_neq(rt_pool_new(RT_POOL_MAX_THREADS + 1, &p, &err), RT_OK);
  rt_pool_run(NULL, mark_chunk, 0, NULL); /* no pool, no iterations: nothing runs */
  rt_pool_free(NULL);
  cr_expect_eq(rt_pool_threads(NULL), 1);
}

/* Jobs one after another, with pauses on both sides of the workers' spin
 * (they sleep before some jobs, spin into others), and from two threads at
 * once on one pool (one of them runs its job alone): every iteration of
 * every job runs once, and nothing hangs (a lost wake-up would). */
typedef struct Stress {
  RtPool *p;
  int fails;
  unsigned seed;
} Stress;

static void *stress_jobs(void *arg) {
  Stress *s = arg;
  static const int pauses[] = {0, 0, 5, 40, 80, 300};
  for (int j = 0; j < 400; j++) {
    Marks *m = calloc(1, sizeof *m);
    int64_t count = 1 + (int64_t)(rand_r(&s->seed) % POOL_MAX_COUNT);
    rt_pool_run(s->p, mark_chunk, count, m);
    for (int64_t i = 0; i < count; i++) s->fails += m->hits[i] != 1;
    free(m);
    int us = pauses[rand_r(&s->seed) % 6];
    if (us) usleep((useconds_t)us);
  }
  return NULL;
}

Test(pool, jobs_in_a_row_and_from_two_threads_run_every_iteration_once, .timeout = 120) {
  RtError err;
  for (int n = 2; n <= 3; n++) {
    Stress a = {NULL, 0, 1}, b = {NULL, 0, 2};
    cr_assert_eq(rt_pool_new(n, &a.p, &err), RT_OK, "%s", err.msg);
    b.p = a.p;
    stress_jobs(&a);
    cr_expect_eq(a.fails, 0, "%d threads: %d iterations ran other than once", n, a.fails);
    a.fails = 0;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, stress_jobs, &b), 0);
    stress_jobs(&a);
    pthread_join(t, NULL);
    cr_expect_eq(a.fails + b.fails, 0, "%d threads, two callers: %d iterations ran other than once", n, a.fails + b.fails);
    rt_pool_free(a.p);
  }
}

/* A job whose chunk 0 calls the pool again (from whichever thread runs
 * it) while its other chunk runs: the inner call must run whole on that
 * thread. */
typedef struct Nested {
  RtPool *p;
  Marks inner;
  pthread_t outer;
} Nested;

static void nested_chunk(int64_t lo, int64_t hi, void *ctx) {
  Nested *n = ctx;
  if (lo == 0) n->outer = pthread_self(), rt_pool_run(n->p, mark_chunk, 10, &n->inner);
  (void)hi;
}

Test(pool, a_call_while_a_job_runs_runs_alone) {
  RtError err;
  Nested *n = calloc(1, sizeof *n);
  cr_assert_eq(rt_pool_new(2, &n->p, &err), RT_OK, "%s", err.msg);
  rt_pool_run(n->p, nested_chunk, 2, n);
  cr_expect_eq(n->inner.nchunks, 1);
  cr_expect_eq(n->inner.lo[0], 0);
  cr_expect_eq(n->inner.hi[0], 10);
  cr_expect(pthread_equal(n->inner.who[0], n->outer));
  rt_pool_free(n->p);
  free(n);
}

/* A batch's rows gathered on pools of 1, 2 and 3 threads are the rows
 * copied one by one: rows of an odd size, picked in a shuffled order with
 * repeats, for counts that split evenly and unevenly (and none). */
Test(pool, gathered_rows_are_the_same_bytes_on_any_pool) {
  enum { ROWS = 57, ROW = 13, MAXC = 100 };
  unsigned char src[ROWS * ROW], want[MAXC * ROW], got[MAXC * ROW + 1];
  int64_t idx[MAXC];
  for (int i = 0; i < ROWS * ROW; i++) src[i] = (unsigned char)(i * 31 + 7);
  for (int i = 0; i < MAXC; i++) idx[i] = (i * 37 + 11) % ROWS;
  static const int64_t counts[] = {0, 1, 2, 7, MAXC};
  RtError err;
  for (int n = 0; n <= 3; n++) {
    RtPool *p = NULL;
    if (n) cr_assert_eq(rt_pool_new(n, &p, &err), RT_OK, "%s", err.msg);
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
      int64_t count = counts[c];
      for (int64_t i = 0; i < count; i++) memcpy(want + i * ROW, src + idx[i] * ROW, ROW);
      memset(got, 0xee, sizeof got);
      rt_pool_gather_rows(p, src, ROW, idx, count, got);
      cr_expect_eq(memcmp(got, want, (size_t)count * ROW), 0, "%d threads, %lld rows", n, (long long)count);
      cr_expect_eq(got[count * ROW], 0xee, "%d threads, %lld rows: wrote past the last row", n, (long long)count);
    }
    rt_pool_free(p);
  }
}

/* --- every sample, compiled ------------------------------------------------------------------------ */

#define MAXN 9

static const char *const samples[] = {"mlp",    "logreg",    "blocks", "finetune",      "lenet5",
                                      "resnet", "inception", "unet",   "transfer_base", "transfer_head",
                                      "l2_explicit", "triplet", "gan", "char_lstm", "vae"};
#define NSAMPLES (sizeof samples / sizeof *samples)

typedef struct Build {
  Diags d;
  Model m;
  Graph a, b;
  Graph *graphs[2];
  OptimSpec opt;
  PassOpts o;
  PassCtx c;
  Program p;
  RtTensorSet params;   /* params and state, as every run starts */
} Build;

/* State tensors (optimizer state, running statistics) of g that params lacks. */
static void add_state(RtTensorSet *params, const Graph *g) {
  RtError err;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_STATE || rt_set_find(params, n->name)) continue;
    RtTensor t;
    int64_t shape[IR_MAX_RANK];
    for (int k = 0; k < n->shape.rank; k++) shape[k] = n->shape.d[k];
    cr_assert_eq(rt_tensor_alloc(&t, DT_F32, n->shape.rank, shape, &err), RT_OK, "%s", err.msg);
    for (int64_t e = 0; e < rt_tensor_numel(&t); e++) ((float *)t.data)[e] = 0.5f + 0.01f * ir_random_uniform(i, (uint64_t)e);
    cr_assert_eq(rt_set_add(params, n->name, &t, &err), RT_OK, "%s", err.msg);
  }
}

/* The program of sample's pipeline kind, and the tensors it starts from. */
static void build_open(Build *b, const char *sample, PipelineKind kind) {
  memset(b, 0, sizeof *b);
  diag_init(&b->d, stderr);
  char path[512];
  snprintf(path, sizeof path, "%s/samples/%s.dl", DLC_SOURCE_DIR, sample);
  cr_assert_eq(fe_load_file(&b->m, path, &b->d), 0, "%s does not load", path);
  for (int s = 0; s < b->m.g.nsyms; s++) b->m.g.syms[s].max = MAXN;
  TrainConfig cfg;
  cr_assert_eq(trainer_config(&b->m, &cfg, &b->d), 0);
  b->opt = cfg.opt;
  b->opt.seed = 3;
  PassOpts o = {.verify = 1, .train_mode = kind == PIPE_TRAIN, .seed = 3, .optim = &b->opt, .wrt_params = 1};
  b->o = o;
  ir_graph_init(&b->a, b->m.g.name, &b->d);
  ir_graph_init(&b->b, b->m.g.name, &b->d);
  b->graphs[0] = kind == PIPE_INFER ? &b->m.g : &b->a;
  b->graphs[1] = &b->b;
  rt_set_init(&b->params);
  RtError err;
  cr_assert_eq(ir_params_init(&b->m.g, 5, &b->params, &err), RT_OK, "%s", err.msg);
  int loss = b->m.train.nsections ? b->m.train.sections[0].loss : b->m.train.loss;
  pass_ctx_init(&b->c, kind, &b->m.g, loss, b->graphs, &b->p, &b->o, &b->d);
  b->c.params = &b->params;
  cr_assert_eq(pass_run(&b->c), 0, "%s: the pipeline fails", sample);
  for (int k = 0; k < b->c.ngraphs; k++) add_state(&b->params, b->c.graphs[k]);
}

static void build_close(Build *b) {
  if (b->c.lowered) kir_program_free(&b->p);
  pass_ctx_free(&b->c);
  rt_set_free(&b->params);
  ir_graph_free(&b->a);
  ir_graph_free(&b->b);
  fe_model_free(&b->m);
}

/* What one call of an entry point leaves: its outputs and the tensors. */
typedef struct Result {
  void **outs;
  size_t *bytes;
  int nouts;
  RtTensorSet tensors;
} Result;

/* Buffer b's elements at batch n: lr and step are scalars, integer inputs
 * alternate 0 and 1 (every sample has two classes or tokens or more),
 * floats lie in [-1, 1). */
static void *input_data(const Program *p, int b, int64_t n) {
  const Buffer *buf = &p->bufs[b];
  void *data = calloc((size_t)buf->size + 1, rt_dtype_size(buf->dtype));
  for (int64_t i = 0; i < buf->size; i++) {
    float u = 2 * ir_random_uniform(0x7ead + (uint64_t)b, (uint64_t)i) - 1;
    if (buf->dtype == DT_I64) ((int64_t *)data)[i] = i % 2;
    else if (buf->dtype == DT_I32) ((int32_t *)data)[i] = (int32_t)(i % 2);
    else if (buf->dtype == DT_F32) ((float *)data)[i] = !strcmp(buf->name, "lr") ? 0.01f : !strcmp(buf->name, "step") ? 3.0f : u;
    else cr_assert_fail("input %s has a dtype the test does not fill", buf->name);
  }
  (void)n;
  return data;
}

/* Calls fn of m at batch n from the starting tensors, on pool. */
static void call(CModule *m, const Build *b, const Func *fn, int64_t n, RtPool *pool, Result *r, const char *what) {
  RtError err;
  cg_c_set_pool(m, pool);
  cr_assert_eq(cg_c_set_params(m, &b->params, &err), RT_OK, "%s: %s", what, err.msg);
  int64_t sym[IR_MAX_SYMS];
  for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = n;
  void **args = calloc((size_t)fn->nargs + 1, sizeof *args);
  r->outs = calloc((size_t)fn->nargs + 1, sizeof *r->outs);
  r->bytes = calloc((size_t)fn->nargs + 1, sizeof *r->bytes);
  r->nouts = fn->nargs;
  for (int i = 0; i < fn->nargs; i++) {
    const Buffer *buf = &b->p.bufs[fn->args[i]];
    if (buf->kind == BUF_INPUT) {
      args[i] = input_data(&b->p, fn->args[i], n);
      continue;
    }
    r->bytes[i] = (size_t)buf->size * rt_dtype_size(buf->dtype);
    args[i] = r->outs[i] = malloc(r->bytes[i] + 1);
    memset(args[i], 0xff, r->bytes[i]);
  }
  cr_assert_eq(cg_c_call(m, fn->name, sym, args, &err), RT_OK, "%s: %s", what, err.msg);
  rt_set_init(&r->tensors);
  cr_assert_eq(cg_c_get_params(m, &r->tensors, &err), RT_OK, "%s: %s", what, err.msg);
  for (int i = 0; i < fn->nargs; i++)
    if (!r->outs[i]) free(args[i]);
  free(args);
  cg_c_set_pool(m, NULL);
}

static void result_free(Result *r) {
  for (int i = 0; i < r->nouts; i++) free(r->outs[i]);
  free(r->outs);
  free(r->bytes);
  rt_set_free(&r->tensors);
}

static void expect_same(const Build *b, const Func *fn, const Result *want, const Result *got, const char *what) {
  for (int i = 0; i < fn->nargs; i++)
    if (want->outs[i])
      cr_expect(!memcmp(want->outs[i], got->outs[i], want->bytes[i]), "%s: output %s differs", what, b->p.bufs[fn->args[i]].name);
  cr_assert_eq(want->tensors.count, got->tensors.count, "%s", what);
  for (int i = 0; i < want->tensors.count; i++) {
    const RtNamedTensor *w = &want->tensors.items[i];
    const RtTensor *g = rt_set_find((RtTensorSet *)&got->tensors, w->name);
    cr_assert_not_null(g, "%s: no tensor %s", what, w->name);
    cr_expect(!memcmp(w->t.data, g->data, rt_tensor_nbytes(&w->t)), "%s: tensor %s differs", what, w->name);
  }
}

/* Every entry point of serial (no pool) against threaded on pools of 2
 * and 3 (NULL: serial again, the module's threads set by its flags). */
static void compare_modules(const Build *b, CModule *serial, CModule *threaded, const char *label) {
  RtError err;
  RtPool *pools[2];
  cr_assert_eq(rt_pool_new(2, &pools[0], &err), RT_OK, "%s", err.msg);
  cr_assert_eq(rt_pool_new(3, &pools[1], &err), RT_OK, "%s", err.msg);
  static const int64_t batches[] = {MAXN, 5};
  for (int f = 0; f < b->p.nfuncs; f++)
    for (int k = 0; k < 2; k++) {
      const Func *fn = &b->p.funcs[f];
      char what[256];
      Result want;
      snprintf(what, sizeof what, "%s %s N=%lld", label, fn->name, (long long)batches[k]);
      call(serial, b, fn, batches[k], NULL, &want, what);
      for (int t = 0; t < 2; t++) {
        Result got;
        snprintf(what, sizeof what, "%s %s N=%lld, %d threads", label, fn->name, (long long)batches[k], t + 2);
        call(threaded, b, fn, batches[k], pools[t], &got, what);
        expect_same(b, fn, &want, &got, what);
        result_free(&got);
      }
      result_free(&want);
    }
  rt_pool_free(pools[0]);
  rt_pool_free(pools[1]);
}

/* Whether some kernel of an entry point has a loop both emitters run in parallel. */
static int has_parallel_loop(Program *p) {
  for (int f = 0; f < p->nfuncs; f++)
    for (int k = 0; k < p->funcs[f].nkernels; k++)
      for (const Stmt *s = p->funcs[f].kernels[k].body; s; s = s->next)
        if (cg_parallel_loop(&p->arena, &p->funcs[f].kernels[k], s)) return 1;
  return 0;
}

static void c_sample(const char *sample);

static void jit_sample(const char *sample) {
  static const PipelineKind kinds[] = {PIPE_TRAIN, PIPE_INFER};
  cg_parallel_min_work = 0; /* every parallel loop a job, however small the test's batch */
  for (int k = 0; k < 2; k++) {
    Build b;
    build_open(&b, sample, kinds[k]);
    RtError err;
    CModule *m = cg_jit_build(&b.p, &err);
    cr_assert_not_null(m, "%s: %s", sample, err.msg);
    char label[128];
    snprintf(label, sizeof label, "%s (jit, %s)", sample, k ? "infer" : "train");
    compare_modules(&b, m, m, label);
    cg_c_free(m);
    build_close(&b);
  }
}

static void c_sample(const char *sample) {
  cg_parallel_min_work = 0;
  Build b;
  build_open(&b, sample, PIPE_TRAIN);
  RtError err;
  CModule *serial = cg_c_build(&b.p, "-O1", &err); /* -O1: quicker to build, and the bits of both alike */
  cr_assert_not_null(serial, "%s: %s", sample, err.msg);
  CModule *threaded = cg_c_build(&b.p, CG_C_THREADS_FLAGS " -O1", &err);
  cr_assert_not_null(threaded, "%s: %s", sample, err.msg);
  char label[128];
  snprintf(label, sizeof label, "%s (c)", sample);
  compare_modules(&b, serial, threaded, label);
  cg_c_free(serial);
  cg_c_free(threaded);
  build_close(&b);
}

Test(threads, jit_mlp, .timeout = 300) { jit_sample("mlp"); }
Test(threads, jit_logreg, .timeout = 300) { jit_sample("logreg"); }
Test(threads, jit_blocks, .timeout = 300) { jit_sample("blocks"); }
Test(threads, jit_finetune, .timeout = 300) { jit_sample("finetune"); }
Test(threads, jit_lenet5, .timeout = 300) { jit_sample("lenet5"); }
Test(threads, jit_resnet, .timeout = 600) { jit_sample("resnet"); }
Test(threads, jit_inception, .timeout = 600) { jit_sample("inception"); }
Test(threads, jit_unet, .timeout = 600) { jit_sample("unet"); }
Test(threads, jit_transfer_base, .timeout = 300) { jit_sample("transfer_base"); }
Test(threads, jit_transfer_head, .timeout = 300) { jit_sample("transfer_head"); }
Test(threads, jit_l2_explicit, .timeout = 300) { jit_sample("l2_explicit"); }
Test(threads, jit_triplet, .timeout = 300) { jit_sample("triplet"); }
Test(threads, jit_gan, .timeout = 300) { jit_sample("gan"); }
Test(threads, jit_char_lstm, .timeout = 600) { jit_sample("char_lstm"); }
Test(threads, jit_vae, .timeout = 300) { jit_sample("vae"); }

/* Samples the table above does not name (added since) are checked here,
 * all in one test, on both backends. */
Test(threads, samples_not_in_the_table, .timeout = 1200) {
  glob_t gl;
  cr_assert_eq(glob(DLC_SOURCE_DIR "/samples/*.dl", 0, NULL, &gl), 0);
  for (size_t i = 0; i < gl.gl_pathc; i++) {
    const char *base = strrchr(gl.gl_pathv[i], '/') + 1;
    int found = 0;
    for (size_t k = 0; k < NSAMPLES; k++)
      found |= strlen(samples[k]) + 3 == strlen(base) && !strncmp(samples[k], base, strlen(samples[k]));
    if (found) continue;
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(strlen(base) - 3), base);
    jit_sample(name);
    c_sample(name);
  }
  globfree(&gl);
}

/* The layers that carry the work have parallel loops, in training too
 * (the backward matmuls), and the JIT module hands them to a pool. */
Test(threads, dense_and_conv_layers_have_parallel_loops, .timeout = 300) {
  static const char *const which[] = {"mlp", "lenet5"};
  for (int i = 0; i < 2; i++) {
    Build b;
    build_open(&b, which[i], PIPE_TRAIN);
    cr_expect(has_parallel_loop(&b.p), "%s: no parallel loop", which[i]);
    int matmul = 0;
    for (int k = 0; k < b.p.funcs[0].nkernels; k++) {
      const Kernel *kn = &b.p.funcs[0].kernels[k];
      if (kn->op == OP_MATMUL && kn->body->kind == ST_LOOP) matmul |= kn->body->loop == LOOP_PARALLEL;
    }
    cr_expect(matmul, "%s: the backward matmuls are not parallel", which[i]);
    build_close(&b);
  }
}

/* Beyond the matrix products and convolutions: the elementwise kernels,
 * pooling and its gradient, the per-output sums of the bias gradients,
 * softmax and the batch transposes (i0 * N + i1, checked
 * at every N) have a loop both emitters run in parallel (the schedule found
 * its iterations independent); jit_lenet5 and c_lenet5 check their bits. */
Test(threads, elementwise_pooling_and_sums_are_parallel, .timeout = 300) {
  /* (its relus and their gradients' masks are epilogues of the products
   * and pools, its transposes read in place by the products) */
  static const char *const ops[] = {"max_pool2d", "max_pool2d_grad", "sum", "softmax"};
  Build b;
  build_open(&b, "lenet5", PIPE_TRAIN);
  for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
    int kernels = 0, parallel = 0;
    for (int f = 0; f < b.p.nfuncs; f++)
      for (int k = 0; k < b.p.funcs[f].nkernels; k++) {
        const Kernel *kn = &b.p.funcs[f].kernels[k];
        if (strncmp(kn->what, ops[i], strlen(ops[i])) || (kn->what[strlen(ops[i])] && kn->what[strlen(ops[i])] != ' ')) continue;
        kernels++;
        for (const Stmt *s = kn->body; s; s = s->next) parallel += cg_parallel_loop(&b.p.arena, kn, s);
      }
    cr_expect(kernels > 0, "lenet5 has no %s kernel", ops[i]);
    cr_expect(parallel >= kernels, "lenet5: %d of the %d %s kernels' loops are parallel", parallel, kernels, ops[i]);
  }
  build_close(&b);
}

/* Adam's step (its bias corrections, which call pow, computed once before
 * the loop) and cross_entropy's gradient (the count of labels summed
 * before it) run their loop over the elements or rows in parallel, the
 * locals it reads captured (test_threads' jit and c samples check the bits). */
Test(threads, adam_and_the_loss_gradient_capture_their_locals, .timeout = 300) {
  static const char *const which[] = {"lenet5", "mlp"}, *const ops[] = {"adam_step", "cross_entropy_grad"};
  for (int i = 0; i < 2; i++) {
    Build b;
    build_open(&b, which[i], PIPE_TRAIN);
    int kernels = 0, captured = 0;
    for (int k = 0; k < b.p.funcs[0].nkernels; k++) {
      const Kernel *kn = &b.p.funcs[0].kernels[k];
      if (strcmp(kn->what, ops[i])) continue;
      kernels++;
      int *ids = arena_alloc(&b.p.arena, sizeof *ids * (size_t)(kn->nlocals + 1));
      for (const Stmt *s = kn->body; s; s = s->next) captured += cg_parallel_captures(&b.p.arena, kn, s, ids) > 0;
    }
    cr_expect(kernels > 0, "%s has no %s kernel", which[i], ops[i]);
    cr_expect_eq(captured, kernels, "%s: %d of the %d %s kernels capture locals in a parallel loop", which[i], captured,
                 kernels, ops[i]);
    build_close(&b);
  }
}

/* cross_entropy's loss stores each row's term and sums the terms after:
 * the loop over the rows is parallel (the sum is of the same terms in
 * the same order as one loop's; jit_mlp and c_mlp check the bits). */
Test(threads, the_loss_terms_are_computed_in_parallel, .timeout = 300) {
  static const char *const which[] = {"mlp", "lenet5"};
  for (int i = 0; i < 2; i++) {
    Build b;
    build_open(&b, which[i], PIPE_TRAIN);
    int losses = 0, parallel = 0;
    for (int f = 0; f < b.p.nfuncs; f++)
      for (int k = 0; k < b.p.funcs[f].nkernels; k++) {
        const Kernel *kn = &b.p.funcs[f].kernels[k];
        if (strcmp(kn->what, "cross_entropy loss")) continue;
        losses++;
        for (const Stmt *s = kn->body; s; s = s->next) parallel += cg_parallel_loop(&b.p.arena, kn, s);
      }
    cr_expect(losses > 0, "%s has no loss kernel", which[i]);
    cr_expect_eq(parallel, losses, "%s: %d parallel loops in %d loss kernels", which[i], parallel, losses);
    build_close(&b);
  }
}

/* The schedule's check of independent iterations, on kernels made by hand:
 * a stepped loop writing y[i0] and y[i0 + 1] from a local array of its own
 * is parallel; a loop reading what the next iteration writes, one adding
 * into a local declared outside it, one storing at a loaded index, one
 * whose iterations' element ranges overlap, are not.  A loop reading a
 * local set once before it from a buffer the kernel never stores into
 * gets its own copy of it (the one outside, left unread, goes) and is
 * parallel.  (The SGD steps' learning rate is such a local.)  One read
 * from a buffer the loop stores into, or one that calls pow (Adam's bias
 * corrections), stays outside and is captured: the loop is parallel and
 * its chunks get the value the local has when it starts. */
Test(threads, the_schedule_marks_only_independent_loops) {
  HandKit t;
  hk_init(&t);
  Program *p = &t.p;
  Expr *i0 = kx_var(p, 0);
  Kernel *pairs = hk_kernel(&t, hk_pairs(&t), 2, 1);
  /* y[i0] = y[i0 + 1] (i0 < 7) */
  Kernel *shift = hk_kernel(&t, ks_loop(p, 0, kx_i(p, 7), ks_store(p, t.out, i0, kx_load(p, t.out, kx_iadd(p, i0, kx_i(p, 1))))), 1, 0);
  /* local v0 = 0; for i0 < 8 { v0 = v0 + x[i0] }; y[0] = v0 */
  Stmt *sum = ks_local(p, 0, DT_F32, kx_f(p, 0));
  ks_append(&sum, ks_loop(p, 0, kx_i(p, 8), ks_assign(p, 0, kx_bin(p, BIN_ADD, kx_local(p, 0, DT_F32), kx_load(p, t.in, kx_var(p, 0))))));
  ks_append(&sum, ks_store(p, t.out, kx_i(p, 0), kx_local(p, 0, DT_F32)));
  Kernel *carried = hk_kernel(&t, sum, 1, 1);
  /* y[i64(x[i0])] = 1 */
  Expr *at = kx_cast(p, DT_I64, kx_load(p, t.in, kx_var(p, 0)));
  Kernel *scatter = hk_kernel(&t, ks_loop(p, 0, kx_i(p, 8), ks_store(p, t.out, at, kx_f(p, 1))), 1, 0);
  /* for i0 < 4 { for i1 < 3 { y[i0 * 2 + i1] = x[i1] } }: element 2 is iteration 0's and 1's */
  Stmt *in = ks_loop(p, 1, kx_i(p, 3), ks_store(p, t.out, kx_iadd(p, kx_imul(p, kx_var(p, 0), kx_i(p, 2)), kx_var(p, 1)), kx_load(p, t.in, kx_var(p, 1))));
  Kernel *overlap = hk_kernel(&t, ks_loop(p, 0, kx_i(p, 4), in), 2, 0);
  /* local v0 = x[0]; for i0 < 8 { y[i0] = x[i0] * v0 }: the loop gets its own copy of v0 */
  Stmt *inv = ks_local(p, 0, DT_F32, kx_load(p, t.in, kx_i(p, 0)));
  ks_append(&inv, ks_loop(p, 0, kx_i(p, 8), ks_store(p, t.out, kx_var(p, 0), kx_bin(p, BIN_MUL, kx_load(p, t.in, kx_var(p, 0)), kx_local(p, 0, DT_F32)))));
  Kernel *invariant = hk_kernel(&t, inv, 1, 1);
  /* the same with v0 = y[0], which the loop stores into: no copy, captured */
  Stmt *var = ks_local(p, 0, DT_F32, kx_load(p, t.out, kx_i(p, 0)));
  ks_append(&var, ks_loop(p, 0, kx_i(p, 8), ks_store(p, t.out, kx_var(p, 0), kx_bin(p, BIN_MUL, kx_load(p, t.in, kx_var(p, 0)), kx_local(p, 0, DT_F32)))));
  Kernel *varying = hk_kernel(&t, var, 1, 1);
  /* local v0 = pow(x[0], 2.0); the same loop: no copy (a call), captured */
  Stmt *pw = ks_local(p, 0, DT_F32, kx_bin(p, BIN_POW, kx_load(p, t.in, kx_i(p, 0)), kx_f(p, 2)));
  ks_append(&pw, ks_loop(p, 0, kx_i(p, 8), ks_store(p, t.out, kx_var(p, 0), kx_bin(p, BIN_MUL, kx_load(p, t.in, kx_var(p, 0)), kx_local(p, 0, DT_F32)))));
  Kernel *called = hk_kernel(&t, pw, 1, 1);
  Kernel *ks[] = {pairs, shift, carried, scatter, overlap, invariant, varying, called};
  for (int i = 0; i < 8; i++) sched_kernel(p, t.fn, ks[i]);
  cr_expect_eq(invariant->body->kind, ST_LOOP, "the declaration outside is left unread");
  cr_expect_eq(invariant->body->loop, LOOP_PARALLEL);
  cr_expect(cg_parallel_loop(&p->arena, invariant, invariant->body));
  cr_expect_eq(invariant->nlocals, 2);
  int ids[2];
  for (int i = 0; i < 2; i++) {
    Kernel *kc = i ? called : varying;
    cr_expect_eq(kc->body->kind, ST_LOCAL, "the local stays outside");
    cr_expect_eq(kc->body->next->loop, LOOP_PARALLEL);
    cr_expect(cg_parallel_loop(&p->arena, kc, kc->body->next));
    cr_expect_eq(cg_parallel_captures(&p->arena, kc, kc->body->next, ids), 1);
    cr_expect_eq(ids[0], 0);
    cr_expect_eq(kc->nlocals, 1);
  }
  cr_expect_eq(cg_parallel_captures(&p->arena, invariant, invariant->body, ids), 0);
  cr_expect_eq(pairs->body->loop, LOOP_PARALLEL);
  cr_expect(cg_parallel_loop(&p->arena, pairs, pairs->body));
  cr_expect_eq(shift->body->loop, LOOP_SERIAL);
  cr_expect_eq(carried->body->next->loop, LOOP_SERIAL);
  cr_expect_eq(scatter->body->loop, LOOP_SERIAL);
  cr_expect_eq(overlap->body->loop, LOOP_SERIAL);
  hk_free(&t);
}

/* A math function's call counts as CG_CALL_WORK (8) statements toward a
 * job: y[i] = exp(x[i]) over 8 elements is 72 statements' work, an add 8,
 * a negation (no call) 8; a cross_entropy's rows (an exp per class and a
 * log) then go to the threads where their statements alone kept them on
 * the calling one. */
Test(threads, math_calls_weigh_more_toward_a_job) {
  HandKit t;
  hk_init(&t);
  Program *p = &t.p;
  Expr *i0 = kx_var(p, 0);
  Kernel *e = hk_kernel(&t, ks_loop(p, 0, kx_i(p, 8), ks_store(p, t.out, i0, kx_un(p, UN_EXP, kx_load(p, t.in, i0)))), 1, 0);
  Kernel *w = hk_kernel(&t, ks_loop(p, 0, kx_i(p, 8), ks_store(p, t.out, i0, kx_bin(p, BIN_POW, kx_load(p, t.in, i0), kx_f(p, 3)))), 1, 0);
  Kernel *a = hk_kernel(&t, ks_loop(p, 0, kx_i(p, 8), ks_store(p, t.out, i0, kx_bin(p, BIN_ADD, kx_load(p, t.in, i0), kx_f(p, 1)))), 1, 0);
  Kernel *n = hk_kernel(&t, ks_loop(p, 0, kx_i(p, 8), ks_store(p, t.out, i0, kx_un(p, UN_NEG, kx_load(p, t.in, i0)))), 1, 0);
  cr_expect_eq(cg_block_work(p, e->body), 72);
  cr_expect_eq(cg_block_work(p, w->body), 72);
  cr_expect_eq(cg_block_work(p, a->body), 8);
  cr_expect_eq(cg_block_work(p, n->body), 8);
  hk_free(&t);
}

/* Loops too small to pay for a job run on the calling thread: the C of
 * the MLP's training step (at the test's batch of at most 9, a threshold
 * of 1024 statements) puts a cost condition on loops whose work depends
 * on the batch, and has fewer parallel loops than with no threshold (the
 * loops that never have the work are left serial). */
Test(threads, small_loops_stay_on_the_calling_thread, .timeout = 120) {
  Build b;
  build_open(&b, "mlp", PIPE_TRAIN);
  size_t pragmas[2] = {0, 0}, conditions = 0;
  for (int t = 0; t < 2; t++) {
    cg_parallel_min_work = t ? 0 : 1024;
    char *text = NULL, *htext = NULL;
    size_t n = 0, hn = 0;
    FILE *c = open_memstream(&text, &n), *h = open_memstream(&htext, &hn);
    EmitOpts o = {"mlp.h", NULL};
    cr_assert_eq(cg_emit_c(&b.p, c, h, &o, &b.d), 0);
    fclose(c);
    fclose(h);
    for (const char *q = text; (q = strstr(q, "#pragma omp parallel for")); q++) {
      pragmas[t]++;
      if (!t && !strncmp(q + strlen("#pragma omp parallel for schedule(static)"), " if(N", 5)) conditions++;
    }
    free(text);
    free(htext);
  }
  cr_expect(conditions > 0, "no loop has a cost condition");
  cr_expect(pragmas[0] < pragmas[1], "%zu parallel loops with the threshold, %zu without", pragmas[0], pragmas[1]);
  build_close(&b);
}

Test(threads, c_mlp, .timeout = 300) { c_sample("mlp"); }
Test(threads, c_logreg, .timeout = 300) { c_sample("logreg"); }
Test(threads, c_blocks, .timeout = 300) { c_sample("blocks"); }
Test(threads, c_finetune, .timeout = 300) { c_sample("finetune"); }
Test(threads, c_lenet5, .timeout = 300) { c_sample("lenet5"); }
Test(threads, c_resnet, .timeout = 600) { c_sample("resnet"); }
Test(threads, c_inception, .timeout = 600) { c_sample("inception"); }
Test(threads, c_unet, .timeout = 600) { c_sample("unet"); }
Test(threads, c_transfer_base, .timeout = 300) { c_sample("transfer_base"); }
Test(threads, c_transfer_head, .timeout = 300) { c_sample("transfer_head"); }
Test(threads, c_l2_explicit, .timeout = 300) { c_sample("l2_explicit"); }
Test(threads, c_triplet, .timeout = 300) { c_sample("triplet"); }
Test(threads, c_gan, .timeout = 300) { c_sample("gan"); }
Test(threads, c_char_lstm, .timeout = 600) { c_sample("char_lstm"); }
Test(threads, c_vae, .timeout = 300) { c_sample("vae"); }
/* clang and its OpenMP runtime (libomp) too ($CC picks the compiler). */
Test(threads, c_lenet5_clang, .timeout = 300) {
  setenv("CC", "clang-19", 1);
  c_sample("lenet5");
}

/* --- the emitted C's switch ------------------------------------------------------------------------- */

/* Compiles path with cc and flags; returns the exit status, the
 * compiler's messages in log. */
static int compile_c(const char *cc, const char *flags, const char *path, const char *dir, char *log, size_t n) {
  char cmd[2048], logpath[600];
  snprintf(logpath, sizeof logpath, "%s/cc.log", dir);
  snprintf(cmd, sizeof cmd, "%s -std=c99 -O1 -Wall -Wextra -pedantic %s -c %s -o %s/x.o 2>%s", cc, flags, path, dir, logpath);
  int rc = system(cmd);
  FILE *f = fopen(logpath, "r");
  size_t got = f ? fread(log, 1, n - 1, f) : 0;
  log[got] = 0;
  if (f) fclose(f);
  return rc;
}

/* The training step's C compiles without a single warning under gcc and
 * clang, serial and with -DDLC_THREADS -fopenmp; -DDLC_THREADS without
 * OpenMP stops the build with a message that says what to add (clang's
 * -fopenmp=libgomp only links gcc's runtime and leaves the pragmas off:
 * refused the same way). */
Test(threads, emitted_c_compiles_clean_both_ways, .timeout = 300) {
  Build b;
  build_open(&b, "lenet5", PIPE_TRAIN);
  char dir[] = "/tmp/dlc_thrXXXXXX", cpath[600], hpath[600], log[4096];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(cpath, sizeof cpath, "%s/lenet5.c", dir);
  snprintf(hpath, sizeof hpath, "%s/lenet5.h", dir);
  FILE *c = fopen(cpath, "w"), *h = fopen(hpath, "w");
  EmitOpts o = {"lenet5.h", NULL};
  cr_assert_eq(cg_emit_c(&b.p, c, h, &o, &b.d), 0);
  fclose(c);
  fclose(h);
  static const struct { const char *cc, *flags; } builds[] = {
      {"gcc", ""}, {"gcc", "-DDLC_THREADS -fopenmp"}, {"clang-19", ""}, {"clang-19", "-DDLC_THREADS -fopenmp"}};
  for (size_t i = 0; i < sizeof builds / sizeof *builds; i++) {
    cr_expect_eq(compile_c(builds[i].cc, builds[i].flags, cpath, dir, log, sizeof log), 0, "%s %s fails: %s",
                 builds[i].cc, builds[i].flags, log);
    cr_expect_eq(log[0], 0, "%s %s warns: %s", builds[i].cc, builds[i].flags, log);
  }
  cr_expect_neq(compile_c("gcc", "-DDLC_THREADS", cpath, dir, log, sizeof log), 0);
  cr_expect(strstr(log, "compile with -fopenmp"), "%s", log);
  cr_expect_neq(compile_c("clang-19", "-DDLC_THREADS -fopenmp=libgomp", cpath, dir, log, sizeof log), 0);
  cr_expect(strstr(log, "compile with -fopenmp"), "%s", log);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_expect_eq(system(cmd), 0);
  build_close(&b);
}

/* --- --threads on the command line ------------------------------------------------------------------ */

/* Runs `dlc ARGS` (a shell word list) with stdin from /dev/null; returns
 * the exit status and stderr in err. */
static int dlc_shell(const char *args, char *err, size_t n) {
  const char *dir = tu_scratch_dir();
  char cmd[2048], path[600];
  snprintf(path, sizeof path, "%s/stderr.txt", dir);
  snprintf(cmd, sizeof cmd, "%s %s </dev/null >/dev/null 2>%s", DLC_EXE, args, path);
  int ws = system(cmd);
  FILE *f = fopen(path, "r");
  size_t got = f ? fread(err, 1, n - 1, f) : 0;
  err[got] = 0;
  if (f) fclose(f);
  unlink(path);
  rmdir(dir);
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

Test(threads, bad_thread_counts_are_refused, .timeout = 120) {
  static const char *const values[] = {"0", "-2", "257", "100000000000000000000", "two", "2x", "''", "' 2'"};
  static const char *const commands[] = {
      "train " DLC_SOURCE_DIR "/samples/mlp.dl --threads %s",
      "run " DLC_SOURCE_DIR "/samples/mlp.dl --backend=jit --threads %s",
      "repl --threads %s " DLC_SOURCE_DIR "/samples/mlp.dl",
  };
  char args[1024], err[4096];
  for (size_t c = 0; c < sizeof commands / sizeof *commands; c++)
    for (size_t v = 0; v < sizeof values / sizeof *values; v++) {
      snprintf(args, sizeof args, commands[c], values[v]);
      int rc = dlc_shell(args, err, sizeof err);
      cr_expect_eq(rc, 2, "dlc %s: exit %d\n%s", args, rc, err);
      cr_expect(strstr(err, "--threads") && strstr(err, "expected an integer in [1, 256]"), "dlc %s:\n%s", args, err);
    }
  snprintf(args, sizeof args, "train %s/samples/mlp.dl --backend=interp --threads 2", DLC_SOURCE_DIR);
  cr_expect_eq(dlc_shell(args, err, sizeof err), 2, "%s", err);
  cr_expect(strstr(err, "reference interpreter runs on one thread"), "%s", err);
  snprintf(args, sizeof args, "run %s/samples/mlp.dl --threads 2", DLC_SOURCE_DIR);
  cr_expect_eq(dlc_shell(args, err, sizeof err), 2, "%s", err);
  cr_expect(strstr(err, "reference interpreter runs on one thread"), "%s", err);
  cr_expect_eq(dlc_shell("repl --threads", err, sizeof err), 2, "%s", err);
  cr_expect(strstr(err, "needs a value"), "%s", err);
}

/* dlc train on 1, 2 and 3 threads ends with the same checkpoint, byte for
 * byte: the batches (gathered on the pool) and every step are the same
 * bits.  150 rows at batch 64: the last batch is short. */
Test(threads, training_on_any_thread_count_saves_the_same_weights, .timeout = 300) {
  const char *scratch = tu_scratch_dir();
  cr_assert(scratch);
  char dir[512];
  snprintf(dir, sizeof dir, "%s", scratch); /* dlc_shell makes a scratch directory of its own */
  RtError err;
  RtTensor x, y;
  cr_assert_eq(rt_tensor_alloc(&x, DT_F32, 2, (int64_t[]){150, 784}, &err), RT_OK);
  cr_assert_eq(rt_tensor_alloc(&y, DT_I64, 1, (int64_t[]){150}, &err), RT_OK);
  for (int i = 0; i < 150; i++) {
    ((int64_t *)y.data)[i] = i % 10;
    for (int k = 0; k < 784; k++) ((float *)x.data)[i * 784 + k] = (float)((i * 7 + k * 3) % 17) / 17.0f + (k % 10 == i % 10);
  }
  char path[700], args[2400], log[4096];
  snprintf(path, sizeof path, "%s/x.npy", dir);
  cr_assert_eq(rt_npy_write(path, &x, &err), RT_OK, "%s", err.msg);
  snprintf(path, sizeof path, "%s/y.npy", dir);
  cr_assert_eq(rt_npy_write(path, &y, &err), RT_OK, "%s", err.msg);
  rt_tensor_free(&x);
  rt_tensor_free(&y);
  char *first = NULL;
  size_t first_len = 0;
  for (int t = 1; t <= 3; t++) {
    snprintf(args, sizeof args, "train %s/samples/mlp.dl --batch 64 --epochs 2 --val-split 0 --threads %d "
             "--data npy:%s/x.npy,%s/y.npy --save %s/w%d.safetensors", DLC_SOURCE_DIR, t, dir, dir, dir, t);
    cr_assert_eq(dlc_shell(args, log, sizeof log), 0, "dlc %s\n%s", args, log);
    snprintf(path, sizeof path, "%s/w%d.safetensors", dir, t);
    size_t len;
    char *w = tu_read_file(path, &len);
    cr_assert_not_null(w, "%s", path);
    if (!first) first = w, first_len = len;
    else {
      cr_expect(len == first_len && !memcmp(w, first, len), "%d threads: other weights than one thread's", t);
      free(w);
    }
  }
  free(first);
  snprintf(args, sizeof args, "rm -rf %s", dir);
  cr_expect_eq(system(args), 0);
}

/* A module built with OpenMP, run on 2 threads and freed: the OpenMP
 * runtime's idle threads must not be left running unloaded code (the
 * process would die a moment later). */
Test(threads, c_module_with_openmp_can_be_freed, .timeout = 300) {
  Build b;
  build_open(&b, "mlp", PIPE_INFER);
  RtError err;
  RtPool *pool;
  cr_assert_eq(rt_pool_new(2, &pool, &err), RT_OK, "%s", err.msg);
  for (int round = 0; round < 2; round++) {
    CModule *m = cg_c_build(&b.p, CG_C_THREADS_FLAGS " -O1", &err);
    cr_assert_not_null(m, "%s", err.msg);
    Result r;
    call(m, &b, &b.p.funcs[0], MAXN, pool, &r, "mlp forward");
    result_free(&r);
    cg_c_free(m);
    usleep(300 * 1000); /* the runtime's threads spin, then sleep */
  }
  rt_pool_free(pool);
  build_close(&b);
}

/* A module says whether it runs its loops on threads of its own: emitted
 * C built with OpenMP does, and `dlc train` then copies the batch's rows
 * on the calling thread instead of on the pool, whose spinning workers
 * would take the cores from OpenMP's team.  The JIT and serial C do not. */
Test(threads, modules_with_threads_of_their_own_say_so, .timeout = 300) {
  Build b;
  build_open(&b, "logreg", PIPE_TRAIN);
  RtError err;
  RtPool *pool = NULL;
  cr_assert_eq(rt_pool_new(2, &pool, &err), RT_OK, "%s", err.msg);
  CModule *jit = cg_jit_build(&b.p, &err);
  cr_assert_not_null(jit, "%s", err.msg);
  CModule *serial = cg_c_build(&b.p, "-O1", &err);
  cr_assert_not_null(serial, "%s", err.msg);
  CModule *threaded = cg_c_build(&b.p, CG_C_THREADS_FLAGS " -O1", &err);
  cr_assert_not_null(threaded, "%s", err.msg);
  cr_expect_eq(cg_c_set_pool(jit, pool), 0);
  cr_expect_eq(cg_c_set_pool(serial, pool), 0);
  cr_expect_eq(cg_c_set_pool(threaded, pool), 1);
  cr_expect_eq(cg_c_set_pool(threaded, NULL), 0, "no pool: one thread, OpenMP's team of one");
  cg_c_set_pool(jit, NULL);
  cg_c_set_pool(serial, NULL);
  cg_c_free(jit);
  cg_c_free(serial);
  cg_c_free(threaded);
  rt_pool_free(pool);
  build_close(&b);
}
