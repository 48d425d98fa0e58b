/*
 * verify.c — the IR checker run after every pass in tests and debug runs.
 *
 * It re-establishes what ir_op guarantees when a graph is built, so a pass
 * that rewrites nodes by hand cannot leave a malformed graph behind:
 * operands come before their users (the array is a schedule), every
 * node's attributes are of its op's family (the live member of the Attrs
 * union), every computed node's recorded type equals what its shape rule
 * infers now, sources have names that are unique per kind, and outputs point at nodes.
 */
#include <string.h>

#include "ir/ir.h"

static int check_node(const Graph *g, int id, Diags *d) {
  const Node *n = &g->nodes[id];
  int bad = 0;
  if ((int)n->op < 0 || n->op >= OP_COUNT) {
    diag_error(d, n->loc, "verify: node %%%d has no valid op", id);
    return 1;
  }
  for (int i = 0; i < n->nin; i++)
    if (n->in[i] < 0 || n->in[i] >= id) {
      diag_error(d, n->loc, "verify: node %%%d (%s) uses %%%d, which is not before it", id,
                 ir_ops[n->op].name, n->in[i]);
      bad++;
    }
  if (n->attr.kind != ir_op_family(n->op)) {
    diag_error(d, n->loc, "verify: node %%%d (%s) holds %s attributes, not its op's %s ones", id, ir_ops[n->op].name,
               ir_attr_family_name(n->attr.kind), ir_attr_family_name(ir_op_family(n->op)));
    return 1;
  }
  if (bad || (ir_ops[n->op].flags & OPF_SOURCE)) return bad;
  char msg[512], b1[128], b2[128];
  DType dt;
  Shape s;
  Attrs a = n->attr;
  if (ir_infer(g, n->op, n->in, n->nin, &a, &dt, &s, msg, sizeof msg) != 0) {
    diag_error(d, n->loc, "verify: node %%%d (%s): %s", id, ir_ops[n->op].name, msg);
    return 1;
  }
  if (dt != n->dtype || !ir_shape_eq(&s, &n->shape)) {
    diag_error(d, n->loc, "verify: node %%%d (%s) has type %s but its operands give %s", id,
               ir_ops[n->op].name, ir_type_str(g, n->dtype, &n->shape, b1, sizeof b1),
               ir_type_str(g, dt, &s, b2, sizeof b2));
    return 1;
  }
  return 0;
}

static int check_names(const Graph *g, Diags *d) {
  int bad = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const Node *n = &g->nodes[i];
    if (n->op != OP_INPUT && n->op != OP_PARAM) continue;
    if (!n->name || !*n->name) {
      diag_error(d, n->loc, "verify: %s %%%d has no name", ir_ops[n->op].name, i);
      bad++;
      continue;
    }
    for (int j = 0; j < i; j++)
      if (g->nodes[j].op == n->op && strcmp(g->nodes[j].name, n->name) == 0) {
        diag_error(d, n->loc, "verify: two %ss are named '%s'", ir_ops[n->op].name, n->name);
        bad++;
      }
  }
  return bad;
}

/* A scan's body checks as a graph of its own, and only scan_out reads a
 * scan (it holds no value of its own). */
static int check_scan_uses(const Graph *g, int id, Diags *d) {
  const Node *n = &g->nodes[id];
  int bad = 0;
  for (int k = 0; k < n->nin; k++)
    if (g->nodes[n->in[k]].op == OP_SCAN && n->op != OP_SCAN_OUT) {
      diag_error(d, n->loc, "verify: node %%%d (%s) reads scan %%%d, which only scan_out may project", id,
                 ir_ops[n->op].name, n->in[k]);
      bad++;
    }
  for (int o = 0; o < g->noutputs && n->op == OP_SCAN; o++)
    if (g->outputs[o].id == id) {
      diag_error(d, n->loc, "verify: output '%s' is a scan, not one of its results", g->outputs[o].name);
      bad++;
    }
  if (n->op == OP_SCAN && n->attr.kind == AK_SCAN && n->attr.scan.body) bad += ir_verify(n->attr.scan.body, d);
  return bad;
}

int ir_verify(const Graph *g, Diags *d) {
  int bad = 0;
  for (int i = 0; i < g->nnodes; i++) bad += check_node(g, i, d);
  for (int i = 0; i < g->nnodes && !bad; i++) bad += check_scan_uses(g, i, d);
  bad += check_names(g, d);
  for (int i = 0; i < g->noutputs; i++)
    if (g->outputs[i].id < 0 || g->outputs[i].id >= g->nnodes) {
      diag_error(d, (SrcLoc){0}, "verify: output '%s' points at no node", g->outputs[i].name);
      bad++;
    }
  return bad;
}
