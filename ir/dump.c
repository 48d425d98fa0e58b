/*
 * dump.c — the graph as text (--emit=ir, --dump-after) and as Graphviz DOT.
 *
 * The text form prints one node a line in schedule order:
 *
 *   %3 = linear %0, %1, %2 : f32[N, 256]    # mlp.dl:7 fc1
 *
 * with the attributes that differ from the op's defaults, so two dumps
 * of the same graph are identical and a dump can be diffed after a pass.
 */
#include <string.h>

#include "ir/ir.h"

static void dump_list(FILE *f, const Graph *g, const char *key, const Attrs *a) {
  fprintf(f, " %s=[", key);
  for (int i = 0; i < a->nlist; i++) {
    Dim d = a->list[i];
    if (i) fputs(", ", f);
    if (DIM_IS_SYM(d) && d != DIM_INFER)
      fputs(g->syms[DIM_SYM_ID(d)].name, f);
    else
      fprintf(f, "%lld", (long long)d);
  }
  fputc(']', f);
}

/* Attributes of n that differ from the defaults, as " key=value". */
static void dump_attrs(FILE *f, const Graph *g, const Node *n) {
  Attrs d = ir_attrs_default(n->op);
  const Attrs *a = &n->attr;
  AttrSpec specs[8];
  int ns = ir_attr_specs(n->op, specs, 8);
  for (int k = 0; k < ns; k++) {
    const char *nm = specs[k].name;
    switch (specs[k].kind) {
    case ATTR_FLOAT:
      if (a->f != d.f || specs[k].required) fprintf(f, " %s=%.9g", nm, a->f);
      break;
    case ATTR_BOOL:
      if (a->keepdim != d.keepdim) fprintf(f, " %s=%d", nm, a->keepdim);
      break;
    case ATTR_ENUM:
      if (a->reduction != d.reduction) fprintf(f, " %s=%s", nm, a->reduction == RED_SUM ? "sum" : "none");
      break;
    case ATTR_LIST:
      if (a->nlist >= 0) dump_list(f, g, nm, a);
      break;
    case ATTR_INT: {
      int64_t v = !strcmp(nm, "axis") ? a->axis : !strcmp(nm, "start") ? a->start
                : !strcmp(nm, "end") ? a->end : !strcmp(nm, "step") ? a->step : a->pieces;
      int64_t dv = !strcmp(nm, "axis") ? d.axis : !strcmp(nm, "start") ? d.start
                 : !strcmp(nm, "end") ? d.end : !strcmp(nm, "step") ? d.step : d.pieces;
      if (v != dv || specs[k].required) fprintf(f, " %s=%lld", nm, (long long)v);
      break;
    }
    }
  }
}

void ir_dump(const Graph *g, FILE *f) {
  char buf[128];
  fprintf(f, "graph %s", g->name);
  for (int s = 0; s < g->nsyms; s++)
    fprintf(f, "%s%s<=%lld", s ? ", " : " (", g->syms[s].name, (long long)g->syms[s].max);
  fputs(g->nsyms ? ") {\n" : " {\n", f);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    fprintf(f, "  %%%d = %s", i, ir_ops[n->op].name);
    if (n->op == OP_INPUT || n->op == OP_PARAM) fprintf(f, " \"%s\"", n->name);
    for (int k = 0; k < n->nin; k++) fprintf(f, "%s%%%d", k ? ", " : " ", n->in[k]);
    dump_attrs(f, g, n);
    if (n->op == OP_PARAM) fprintf(f, " init=%s%s", rt_init_name(n->init.kind), n->frozen ? " frozen" : "");
    fprintf(f, " : %s", ir_type_str(g, n->dtype, &n->shape, buf, sizeof buf));
    if (n->loc.src) fprintf(f, "    # %s:%d", n->loc.src->path, n->loc.line);
    if (n->name && n->op != OP_INPUT && n->op != OP_PARAM) fprintf(f, " %s", n->name);
    fputc('\n', f);
  }
  for (int i = 0; i < g->noutputs; i++)
    fprintf(f, "  output \"%s\" = %%%d\n", g->outputs[i].name, g->outputs[i].id);
  fputs("}\n", f);
}

void ir_dump_dot(const Graph *g, FILE *f) {
  char buf[128];
  fprintf(f, "digraph \"%s\" {\n  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=10];\n", g->name);
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    const char *shape = n->op == OP_INPUT ? "invhouse" : n->op == OP_PARAM ? "note" : "box";
    fprintf(f, "  n%d [shape=%s, label=\"%s", i, shape, ir_ops[n->op].name);
    if (n->name) fprintf(f, "\\n%s", n->name);
    fprintf(f, "\\n%s\"];\n", ir_type_str(g, n->dtype, &n->shape, buf, sizeof buf));
    for (int k = 0; k < n->nin; k++) fprintf(f, "  n%d -> n%d;\n", n->in[k], i);
  }
  for (int i = 0; i < g->noutputs; i++) {
    fprintf(f, "  out%d [shape=house, label=\"%s\"];\n", i, g->outputs[i].name);
    fprintf(f, "  n%d -> out%d;\n", g->outputs[i].id, i);
  }
  fputs("}\n", f);
}
