/*
 * test_attrs.c — node attributes as a tagged union, one family per op.
 *
 * Every op's defaults carry its family's tag and every attribute it
 * declares formats under that family; names that several families share
 * (alpha, p, value, mode) land in the field of the op's own family; the
 * union stays within its documented bound; and a node whose tag is not its
 * op's family is refused by the shape rule and reported by ir_verify.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "ir/ir.h"

Test(ir_attrs, every_op_defaults_to_its_family) {
  for (int op = 0; op < OP_COUNT; op++) {
    Attrs a = ir_attrs_default((OpKind)op);
    cr_expect_eq(a.kind, ir_op_family((OpKind)op), "%s", ir_ops[op].name);
    cr_expect_str_neq(ir_attr_family_name(a.kind), "invalid", "%s", ir_ops[op].name);
    AttrSpec specs[8];
    int n = ir_attr_specs((OpKind)op, specs, 8);
    for (int k = 0; k < n; k++) {
      char buf[128];
      cr_expect_not_null(ir_attr_format(NULL, &a, (OpKind)op, specs[k].name, buf, sizeof buf), "%s %s",
                         ir_ops[op].name, specs[k].name);
    }
  }
}

Test(ir_attrs, shared_names_land_in_the_ops_family) {
  char buf[64];
  Attrs r = ir_attrs_default(OP_RMSPROP_STEP);
  cr_assert_eq(ir_attr_set_float(&r, OP_RMSPROP_STEP, "alpha", 0.5), 0);
  cr_expect_float_eq(r.hyper.alpha, 0.5, 0);
  cr_expect_str_eq(ir_attr_format(NULL, &r, OP_RMSPROP_STEP, "alpha", buf, sizeof buf), "0.5");
  Attrs e = ir_attrs_default(OP_ELU);
  cr_assert_eq(ir_attr_set_float(&e, OP_ELU, "alpha", 0.25), 0);
  cr_expect_float_eq(e.scalar.f, 0.25, 0);
  Attrs d = ir_attrs_default(OP_DROPOUT_TRAIN);
  cr_assert_eq(ir_attr_set_float(&d, OP_DROPOUT_TRAIN, "p", 0.125), 0);
  cr_expect_float_eq(d.random.p, 0.125, 0);
  Attrs p = ir_attrs_default(OP_PAD);
  cr_assert_eq(ir_attr_set_float(&p, OP_PAD, "value", 3), 0);
  cr_assert_eq(ir_attr_set_enum(&p, OP_PAD, "mode", "replicate"), 0);
  cr_expect_float_eq(p.pad.value, 3, 0);
  cr_expect_eq(p.pad.mode, PAD_REPLICATE);
  Attrs u = ir_attrs_default(OP_UPSAMPLE);
  cr_expect_neq(ir_attr_set_enum(&u, OP_UPSAMPLE, "mode", "replicate"), 0, "upsample's mode has its own choices");
  cr_assert_eq(ir_attr_set_enum(&u, OP_UPSAMPLE, "mode", "bilinear"), 0);
  cr_expect_eq(u.upsample.mode, UP_BILINEAR);
  /* the optimizer settings ask for hyperparameters by name: alpha is not one */
  cr_expect_eq(ir_attr_hp_index("alpha"), -1);
  cr_expect_eq(ir_attr_hp_index("momentum"), HP_MOMENTUM);
}

Test(ir_attrs, union_stays_within_its_bound) {
  cr_expect_leq(sizeof(Attrs), IR_ATTRS_MAX_BYTES);
  cr_expect_leq(sizeof(Node), IR_ATTRS_MAX_BYTES + 160, "Node is its attributes plus a small header");
}

/* softmax over x, then its attributes replaced by those of another family. */
static int mislabelled(Graph *g, Diags *d) {
  ir_graph_init(g, "m", d);
  Shape s = {2, {2, 3}};
  int x = ir_input(g, "x", DT_F32, &s, (SrcLoc){0});
  int y = ir_op(g, OP_SOFTMAX, &x, 1, NULL, (SrcLoc){0});
  cr_assert_geq(y, 0);
  ir_output(g, "y", y);
  cr_assert_eq(ir_verify(g, d), 0);
  g->nodes[y].attr = ir_attrs_default(OP_MSE_LOSS);
  return y;
}

Test(ir_attrs, verify_reports_a_node_of_the_wrong_family) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  Diags d;
  diag_init(&d, f);
  Graph g;
  mislabelled(&g, &d);
  cr_expect_eq(ir_verify(&g, &d), 1);
  fclose(f);
  cr_expect(strstr(text, "verify: node %1 (softmax) holds loss attributes, not its op's axis ones") != NULL, "%s",
            text);
  free(text);
  ir_graph_free(&g);
}

Test(ir_attrs, shape_rule_refuses_the_wrong_family) {
  Diags d;
  diag_init(&d, stderr);
  Graph g;
  int y = mislabelled(&g, &d);
  char msg[256];
  DType dt;
  Shape s;
  const Node *n = &g.nodes[y];
  cr_expect_eq(ir_infer(&g, n->op, n->in, n->nin, &n->attr, &dt, &s, msg, sizeof msg), -1);
  cr_expect_str_eq(msg, "has loss attributes, not its own axis ones");
  ir_graph_free(&g);
}
