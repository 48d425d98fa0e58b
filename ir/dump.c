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

/* Attributes of n that differ from the defaults (or are required), as
 * " key=value". */
static void dump_attrs(FILE *f, const Graph *g, const Node *n) {
  Attrs d = ir_attrs_default(n->op);
  AttrSpec specs[8];
  int ns = ir_attr_specs(n->op, specs, 8);
  for (int k = 0; k < ns; k++) {
    char v[256], dv[256];
    ir_attr_format(g, &n->attr, n->op, specs[k].name, v, sizeof v);
    ir_attr_format(g, &d, n->op, specs[k].name, dv, sizeof dv);
    if (specs[k].required || strcmp(v, dv) != 0) fprintf(f, " %s=%s", specs[k].name, v);
  }
}

static void dump_nodes(const Graph *g, FILE *f, int indent);

/* A scan's counts, then its body nested below its line. */
static void dump_scan_attrs(FILE *f, const Node *n) {
  const AttrScan *a = &n->attr.scan;
  if (n->op == OP_SCAN_OUT) {
    fprintf(f, " index=%d", a->index);
    return;
  }
  fprintf(f, " seqs=%d states=%d axis=%lld%s", a->nseq, a->nstate, (long long)a->axis, a->reverse ? " reverse" : "");
}

static void dump_body(const Graph *body, FILE *f, int indent) {
  fprintf(f, "%*sbody {\n", indent + 2, "");
  dump_nodes(body, f, indent + 4);
  fprintf(f, "%*s}\n", indent + 2, "");
}

void ir_dump(const Graph *g, FILE *f) {
  fprintf(f, "graph %s", g->name);
  for (int s = 0; s < g->nsyms; s++)
    fprintf(f, "%s%s<=%lld", s ? ", " : " (", g->syms[s].name, (long long)g->syms[s].max);
  fputs(g->nsyms ? ") {\n" : " {\n", f);
  dump_nodes(g, f, 0);
  fputs("}\n", f);
}

static void dump_nodes(const Graph *g, FILE *f, int indent) {
  char buf[128];
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    fprintf(f, "%*s  %%%d = %s", indent, "", i, ir_ops[n->op].name);
    if (n->op == OP_INPUT || n->op == OP_PARAM) fprintf(f, " \"%s\"", n->name);
    for (int k = 0; k < n->nin; k++) fprintf(f, "%s%%%d", k ? ", " : " ", n->in[k]);
    if (n->attr.kind == AK_SCAN) dump_scan_attrs(f, n);
    dump_attrs(f, g, n);
    if (n->op == OP_PARAM) fprintf(f, " init=%s%s", rt_init_name(n->init.kind), n->frozen ? " frozen" : "");
    fprintf(f, " : %s", ir_type_str(g, n->dtype, &n->shape, buf, sizeof buf));
    if (n->loc.src) fprintf(f, "    # %s:%d", n->loc.src->path, n->loc.line);
    if (n->name && n->op != OP_INPUT && n->op != OP_PARAM) fprintf(f, " %s", n->name);
    fputc('\n', f);
    if (n->op == OP_SCAN) dump_body(n->attr.scan.body, f, indent);
  }
  for (int i = 0; i < g->noutputs; i++)
    fprintf(f, "%*s  output \"%s\" = %%%d\n", indent, "", g->outputs[i].name, g->outputs[i].id);
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
