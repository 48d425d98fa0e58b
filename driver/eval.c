/*
 * eval.c — `dlc eval MODEL.dl --params W.safetensors`: how well trained
 * weights do on the test set, through the code a user would ship.
 *
 * The model's inference graph is compiled as dependency-free C with the
 * weights embedded as constants (batch norms folded into the layers
 * before them, as `dlc MODEL.dl --embed-params` does), loaded, and run
 * over the test set of the model's data; its accuracy (or mean loss, for
 * models without classes) is printed next to what the training graph's
 * evaluation step gives for the same weights, so the two can be compared.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "driver/driver.h"
#include "driver/numbers.h"
#include "driver/trainer.h"

static const char *usage_eval =
    "usage: dlc eval MODEL.dl --params W.safetensors [--data SPEC] [--batch N]\n"
    "                [--no-fuse] [--no-tile] [-O0]\n"
    "Test-set accuracy of the weights through the inference C that\n"
    "`dlc MODEL.dl --embed-params W.safetensors` emits (batch norms folded),\n"
    "and through the training graph's evaluation step, side by side; both\n"
    "built with the optimisation flags given (as dlc and dlc train take them).\n";

typedef struct EvalFlags {
  const char *model, *params, *data, *batch;
  int no_fuse, no_tile;
} EvalFlags;

static int parse(int argc, char **argv, EvalFlags *f, Diags *d) {
  memset(f, 0, sizeof *f);
  for (int i = 1; i < argc; i++) {
    int miss = 0;
    const char *v;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    if (dlc_opt_flag(argv[i], &f->no_fuse, &f->no_tile)) continue;
    if ((v = dlc_flag(argc, argv, &i, "--params", &miss))) f->params = v;
    else if ((v = dlc_flag(argc, argv, &i, "--data", &miss))) f->data = v;
    else if ((v = dlc_flag(argc, argv, &i, "--batch", &miss))) f->batch = v;
    else if (miss) return diag_plain(d, argv[i], "needs a value"), -1;
    else if (argv[i][0] == '-') return diag_plain(d, argv[i], "unknown option (see dlc eval --help)"), -1;
    else if (f->model) return diag_plain(d, argv[i], "only one model file"), -1;
    else f->model = argv[i];
  }
  if (!f->model || !f->params) return diag_plain(d, "dlc eval", "needs a model and --params (see dlc eval --help)"), -1;
  return 0;
}

/* Accuracy (or mean of the first output's squared error against the
 * target, for autoencoders) of the emitted C on t's test set. */
static int emitted_accuracy(Trainer *t, const RtTensorSet *weights, double *acc, int *folded) {
  Model m;
  RtError err;
  if (fe_load_string(&m, t->m->src.path, t->m->src.text, t->d)) return -1;
  for (int s = 0; s < m.g.nsyms; s++) m.g.syms[s].max = t->cfg.batch;
  if (t->acc_output >= 0 && ir_find_output(&m.g, t->m->g.outputs[t->acc_output].name) < 0)
    ir_output(&m.g, t->m->g.outputs[t->acc_output].name, m.g.nodes[m.train.loss].in[0]);
  RtTensorSet w;
  rt_set_init(&w);
  for (int i = 0; i < weights->count; i++) { /* a copy: folding changes values */
    if (rt_set_add_copy(&w, weights->items[i].name, &weights->items[i].t, &err)) rt_oom(); /* names are unique */
  }
  int rc = -1;
  Graph *g = &m.g;
  Program p;
  PassCtx pc;
  pass_ctx_init(&pc, PIPE_INFER_EMBED, g, -1, &g, &p, t->cfg.pass, t->d);
  pc.params = &w;
  if (pass_run(&pc) == 0) {
    *folded = pc.nfolded;
    CModule *mod = cg_c_build_embedded(&p, NULL, &w, &err);
    if (!mod) diag_plain(t->d, "dlc eval", "%s", err.msg);
    else {
      const RtDataset *ds = &t->test;
      int64_t b = t->cfg.batch, feat = rt_dataset_features(ds), correct = 0, idx[4096];
      const Func *f = &p.funcs[0];
      int oi = t->acc_output >= 0 ? ir_find_output(g, t->m->g.outputs[t->acc_output].name) : 0;
      const Node *on = &g->nodes[g->outputs[oi].id];
      int64_t per = ir_numel_max(g, &on->shape) / b;
      float *x = rt_xmalloc(sizeof(float) * (size_t)(b * feat)), **outs = rt_xcalloc((size_t)g->noutputs, sizeof *outs);
      for (int o = 0; o < g->noutputs; o++) outs[o] = rt_xmalloc(sizeof(float) * (size_t)ir_numel_max(g, &g->nodes[g->outputs[o].id].shape));
      double se = 0;
      rc = 0;
      for (int64_t start = 0; start < ds->n && !rc; start += b) {
        int64_t n = ds->n - start < b ? ds->n - start : b, sym[IR_MAX_SYMS];
        for (int64_t i = 0; i < n; i++) idx[i] = start + i;
        for (int s = 0; s < IR_MAX_SYMS; s++) sym[s] = n;
        rt_batch_gather(ds, idx, n, x, NULL);
        void *args[64];
        for (int a = 0; a < f->nargs && a < 64; a++) {
          const Buffer *buf = &p.bufs[f->args[a]];
          args[a] = buf->kind == BUF_INPUT ? (void *)x : outs[ir_find_output(g, buf->name)];
        }
        if (cg_c_call(mod, "forward", sym, args, &err)) rc = -1, diag_plain(t->d, "dlc eval", "%s", err.msg);
        if (t->acc_output >= 0) correct += rt_topk_correct(outs[oi], (const int64_t *)ds->y.data + start, n, per, 1);
        else
          for (int64_t i = 0; i < n * per; i++) se += (outs[oi][i] - x[i]) * (double)(outs[oi][i] - x[i]);
      }
      *acc = t->acc_output >= 0 ? (double)correct / (double)ds->n : se / (double)(ds->n * per);
      for (int o = 0; o < g->noutputs; o++) rt_xfree(outs[o]);
      rt_xfree(outs);
      rt_xfree(x);
      cg_c_free(mod);
    }
    kir_program_free(&p);
  }
  pass_ctx_free(&pc);
  rt_set_free(&w);
  fe_model_free(&m);
  return rc;
}

int dlc_cmd_eval(int argc, char **argv) {
  Diags d;
  diag_init(&d, stderr);
  EvalFlags f;
  int rc = parse(argc, argv, &f, &d);
  if (rc) return rc > 0 ? dlc_usage(usage_eval, 0) : 2;
  Model m;
  if (dlc_load_trainable(&m, f.model, "evaluate", &d)) return 1;
  TrainConfig cfg;
  RtTensorSet w;
  RtError err;
  rt_set_init(&w);
  int status = 1;
  Trainer t;
  if (trainer_config(&m, &cfg, &d)) goto out;
  cfg.backend = BACKEND_C;
  PassOpts po = {.no_fuse = f.no_fuse, .no_tiles = f.no_tile};
  cfg.pass = &po;
  if (f.batch && dlc_parse_int("--batch", f.batch, 1, 4096, &cfg.batch, &d)) goto out;
  if (cfg.batch > 4096) cfg.batch = 4096;
  if (f.data && dlc_parse_data_spec(f.data, &cfg, &d)) goto out;
  if (rt_safetensors_read(f.params, &w, &err)) {
    diag_plain(&d, f.params, "%s", err.msg);
    goto out;
  }
  if (ir_params_check(&m.g, &w, f.params, &err)) {
    diag_plain(&d, f.params, "%s", err.msg);
    goto out;
  }
  if (trainer_init(&t, &m, &cfg, &w, &d)) goto out_t;
  if (trainer_load_data(&t)) goto out_t;
  if (!t.test.n) {
    diag_plain(&d, "dlc eval", "the data set has no test part");
    goto out_t;
  }
  double loss, acc, emitted;
  int folded;
  if (trainer_evaluate(&t, &t.test, &loss, &acc) || emitted_accuracy(&t, &w, &emitted, &folded)) goto out_t;
  if (t.acc_output >= 0)
    printf("%s on %lld test samples: emitted C (weights embedded, %d batch norms folded) %.2f%%, "
           "training graph %.2f%%\n",
           m.g.name, (long long)t.test.n, folded, 100 * emitted, 100 * acc);
  else
    printf("%s on %lld test samples: emitted C reconstruction MSE of the clean inputs %.5f; training graph test loss %.5f\n",
           m.g.name, (long long)t.test.n, emitted, loss);
  status = 0;
out_t:
  trainer_free(&t);
out:
  rt_set_free(&w);
  fe_model_free(&m);
  return status;
}
