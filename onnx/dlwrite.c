/*
 * dlwrite.c — an imported graph as .dl source, one line per node.
 *
 * Inputs and params are declarations with their types (params take their
 * values from the weights file, so their initialisers are the defaults);
 * params made from Constant nodes are frozen.  Every computed node is
 * `NAME = op(operands, key=value ...)` with the attributes that differ
 * from the op's defaults, written by ir_attr_format exactly as the parser
 * reads them back (window lists as the importer set them, in their
 * shortest form, not the canonical four entries); scalar constants are written inline as numbers.  The
 * names are the importer's sanitised, unique identifiers, so the text
 * parses back into the same graph.  Each line ends with a comment that
 * names the ONNX node it came from.
 */
#include <stdarg.h>
#include <string.h>

#include "onnx/importer.h"

typedef struct Buf {
  char *s;
  size_t len, cap;
} Buf;

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (b->len + (size_t)n + 1 > b->cap) {
    while (b->len + (size_t)n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
    b->s = rt_xrealloc(b->s, b->cap);
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* The line of n's source (the ONNX node it came from), without the newline. */
static void write_origin(Buf *b, const Node *n) {
  if (!n->loc.src) return buf_printf(b, "\n");
  const char *p = n->loc.src->text;
  for (int l = 1; l < n->loc.line && p; l++) p = strchr(p, '\n'), p = p ? p + 1 : NULL;
  if (!p) return buf_printf(b, "\n");
  buf_printf(b, "    # %.*s\n", (int)strcspn(p, "\n"), p);
}

static void write_operand(Buf *b, const Graph *g, int id) {
  const Node *n = &g->nodes[id];
  if (n->op == OP_CONST) buf_printf(b, "%.9g", n->attr.scalar.f);
  else buf_printf(b, "%s", n->name);
}

static void write_attrs(Buf *b, const Graph *g, const Node *n, const Attrs *given) {
  Attrs d = ir_attrs_default(n->op);
  const Attrs *at = given ? given : &n->attr;
  AttrSpec specs[8];
  int ns = ir_attr_specs(n->op, specs, 8);
  for (int k = 0; k < ns; k++) {
    char v[256], dv[256];
    ir_attr_format(g, at, n->op, specs[k].name, v, sizeof v);
    ir_attr_format(g, &d, n->op, specs[k].name, dv, sizeof dv);
    if (specs[k].required || strcmp(v, dv) != 0) buf_printf(b, ", %s=%s", specs[k].name, v);
  }
}

static void write_scan(Buf *b, const Graph *g, int id, const char *indent);

/* Node n of g, on a line of its own after indent. */
static void write_node(Buf *b, const Graph *g, const Node *n, const Attrs *given, const char *indent) {
  char ty[128];
  if (n->op == OP_CONST || n->op == OP_SCAN_OUT) return; /* inline; with its scan */
  if (n->op == OP_INPUT) {
    buf_printf(b, "input %s: %s\n", n->name, ir_type_str(g, n->dtype, &n->shape, ty, sizeof ty));
    return;
  }
  if (n->op == OP_PARAM && strchr(n->name, '.')) { /* a scan body's, declared in its block */
    if (n->frozen) buf_printf(b, "%sfreeze %s    # a Constant\n", indent, n->name);
    return;
  }
  if (n->op == OP_PARAM) {
    buf_printf(b, "%sparam %s: %s\n", indent, n->name, ir_type_str(g, n->dtype, &n->shape, ty, sizeof ty));
    if (n->frozen && !*indent) buf_printf(b, "freeze %s    # a Constant\n", n->name);
    return;
  }
  if (n->op == OP_SCAN) return write_scan(b, g, (int)(n - g->nodes), indent);
  buf_printf(b, "%s%s = %s(", indent, n->name, ir_ops[n->op].name);
  for (int k = 0; k < n->nin; k++) {
    if (k) buf_printf(b, ", ");
    write_operand(b, g, n->in[k]);
  }
  write_attrs(b, g, n, given);
  buf_printf(b, ")");
  write_origin(b, n);
}

/* The block of a scan's body (named as the body graph), after the blocks
 * of the scans it holds: blocks are defined at top level. */
static void write_block(Buf *b, const Graph *body) {
  for (int i = 0; i < body->nnodes; i++)
    if (body->nodes[i].op == OP_SCAN) write_block(b, body->nodes[i].attr.scan.body);
  buf_printf(b, "\nblock %s(", body->name);
  for (int i = 0, k = 0; i < body->nnodes; i++)
    if (body->nodes[i].op == OP_INPUT) buf_printf(b, "%s%s", k++ ? ", " : "", body->nodes[i].name);
  buf_printf(b, ") {\n");
  for (int i = 0; i < body->nnodes; i++)
    if (body->nodes[i].op != OP_INPUT) write_node(b, body, &body->nodes[i], NULL, "  ");
  buf_printf(b, "  return ");
  for (int o = 0; o < body->noutputs; o++) {
    if (o) buf_printf(b, ", ");
    write_operand(b, body, body->outputs[o].id);
  }
  buf_printf(b, "\n}\n");
}

/* RESULTS = scan(BLOCK, SEQ, STATES..., axis=A, reverse=true) as NAME: the
 * results are the scan_out nodes (stacked values, then final states); the
 * block's params are NAME.PARAM. */
static void write_scan(Buf *b, const Graph *g, int id, const char *indent) {
  const Node *n = &g->nodes[id];
  const AttrScan *a = &n->attr.scan;
  int nres = a->body->noutputs;
  if (!*indent) write_block(b, a->body), buf_printf(b, "\n");
  buf_printf(b, "%s", indent);
  for (int j = 0; j < nres; j++) {
    const char *name = NULL;
    for (int i = id + 1; i < g->nnodes && !name; i++)
      if (g->nodes[i].op == OP_SCAN_OUT && g->nodes[i].in[0] == id && g->nodes[i].attr.scan.index == j) name = g->nodes[i].name;
    buf_printf(b, "%s%s", j ? ", " : "", name ? name : "_");
  }
  buf_printf(b, " = scan(%s", a->body->name);
  for (int k = 0; k < a->nseq + a->nstate; k++) {
    buf_printf(b, ", ");
    write_operand(b, g, n->in[k]);
  }
  buf_printf(b, ", axis=%lld%s) as %s", (long long)a->axis, a->reverse ? ", reverse=true" : "", n->name);
  write_origin(b, n);
}

char *im_write_dl(const Graph *g, const Attrs *const *given, const char *header) {
  Buf b = {0};
  buf_printf(&b, "%s\nmodel %s\n\n", header, g->name);
  for (int i = 0; i < g->nnodes; i++) write_node(&b, g, &g->nodes[i], given ? given[i] : NULL, "");
  buf_printf(&b, "\n");
  for (int i = 0; i < g->noutputs; i++) {
    const Node *n = &g->nodes[g->outputs[i].id];
    if (!strcmp(n->name, g->outputs[i].name)) buf_printf(&b, "output %s\n", n->name);
    else buf_printf(&b, "output %s = %s\n", g->outputs[i].name, n->name);
  }
  return b.s;
}
