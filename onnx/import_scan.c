/*
 * import_scan.c — ONNX Scan as dlc's scan.
 *
 * A Scan (opset 9 and later) carries N states and M scan inputs through
 * its body, a GraphProto whose inputs are the N states then one step of
 * each scan input, and whose outputs are the N new states then K per-step
 * values.  dlc's scan runs a body graph whose inputs are the step of its
 * one sequence then the states, and whose outputs are the per-step values
 * then the new states, stacked along the sequence's own axis, all in one
 * direction: so a Scan imports when it has one scan input, its output axes
 * are its input axis, and its directions are all forward or all reverse.
 * Anything else is an error naming the node and the attribute.
 *
 * The body is imported by a nested importer (im_subgraph) into a graph of
 * its own, adopted by the model's: dlc's shape rules check it against the
 * call.  Values the body reads from outside must be constants (the
 * weights, as dlc export writes them): they become the body's params,
 * named in the .dl text under the scan statement's name (a block's
 * params), and the scan's constant operands.  The results are scan_out
 * nodes, one per ONNX output: the final states and the stacked values.
 */
#include <string.h>

#include "onnx/import_ops.h"

#define S(s) ((s) ? (s) : "")


typedef struct ScanForm {
  int nstate, ny;
  int64_t axis;
  int reverse;
  const Onnx__GraphProto *body;
} ScanForm;

/* The list attribute name: every entry v (or absent) after normalising
 * by rank; -1 after an error naming it. */
static int uniform(Importer *im, const char *name, int n, int64_t want, int rank, int64_t *got) {
  int64_t v[64];
  int nv;
  if (im_attr_ints(im, name, v, 64, &nv)) return -1;
  *got = want;
  if (nv < 0) return 0;
  if (nv != n) return im_error(im, "attribute '%s' has %d entries; the node has %d", name, nv, n);
  for (int k = 0; k < nv; k++) {
    int64_t x = v[k];
    if (rank > 0 && x < 0) x += rank;
    if (k == 0) *got = x;
    if (x != *got) return im_error(im, "attribute '%s' is not the same for every entry, which dlc's scan needs", name);
  }
  return 0;
}

/* The attributes of the node as a ScanForm; -1 after an error. */
static int scan_form(Importer *im, ScanForm *f, int seq_rank) {
  int64_t m, dir_in, dir_out;
  if (im->opset < 9) return im_error(im, "Scan of opset %lld (with sequence_lens) is not supported; opset 9 and later are", (long long)im->opset);
  const Onnx__AttributeProto *b = im_attr(im, "body");
  if (!b || b->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH || !b->g)
    return im_error(im, "attribute 'body' must be a graph");
  f->body = b->g;
  if (im_attr_int(im, "num_scan_inputs", -1, &m)) return -1;
  int nin = (int)im->np->n_input;
  if (m < 1 || m > nin) return im_error(im, "attribute 'num_scan_inputs' is %lld; the node has %d inputs", (long long)m, nin);
  if (m != 1) return im_error(im, "attribute 'num_scan_inputs' is %lld: dlc's scan runs over one sequence", (long long)m);
  f->nstate = nin - 1;
  for (int k = 0; k < nin; k++)
    if (!*S(im->np->input[k])) return im_error(im, "input %d is absent; a Scan reads every input", k);
  if (f->nstate > 31) return im_error(im, "%d states; dlc's scan carries at most 31", f->nstate);
  f->ny = (int)im->np->n_output - f->nstate;
  if (f->ny < 0) return im_error(im, "%zu outputs for %d states", im->np->n_output, f->nstate);
  if (uniform(im, "scan_input_axes", 1, 0, seq_rank, &f->axis)) return -1;
  if (f->axis < 0 || f->axis >= seq_rank)
    return im_error(im, "attribute 'scan_input_axes' is out of range for a sequence of rank %d", seq_rank);
  if (uniform(im, "scan_input_directions", 1, 0, 0, &dir_in) ||
      uniform(im, "scan_output_directions", f->ny, 0, 0, &dir_out))
    return -1;
  if (f->ny == 0) dir_out = dir_in; /* no output to stack */
  if ((dir_in != 0 && dir_in != 1) || dir_out != dir_in)
    return im_error(im, "attribute 'scan_output_directions' differs from 'scan_input_directions': dlc's scan "
                        "stacks each step's output at its own step");
  f->reverse = (int)dir_in;
  return 0; /* an output axis counts in the stacked output's rank, which the body decides: output_axes_ok */
}

/* Whether every scan_output_axes entry is axis once normalised by the
 * stacked outputs' ranks. */
static int output_axes_ok(Importer *im, const ScanForm *f, const Graph *body) {
  int64_t v[64];
  int nv;
  if (im_attr_ints(im, "scan_output_axes", v, 64, &nv)) return -1;
  if (nv >= 0 && nv != f->ny) return im_error(im, "attribute 'scan_output_axes' has %d entries; the node has %d scan outputs", nv, f->ny);
  for (int k = 0; k < f->ny; k++) {
    int64_t x = nv < 0 ? 0 : v[k];
    int rank = body->nodes[body->outputs[k].id].shape.rank + 1;
    if (x < 0) x += rank;
    if (x != f->axis)
      return im_error(im, "attribute 'scan_output_axes' stacks output %d along axis %lld, not the scan axis %lld: "
                          "dlc's scan stacks along the sequence's axis", k, (long long)x, (long long)f->axis);
  }
  return 0;
}

/* The body's graph inputs: the step of the sequence, then the states (dlc's
 * order), made in body; their ONNX names in names[]. */
static int body_inputs(Importer *im, const ScanForm *f, const int *outer, Graph *body, const char **names, int *ids) {
  const Onnx__GraphProto *gp = f->body;
  if ((int)gp->n_input != f->nstate + 1)
    return im_error(im, "the body has %zu inputs; a Scan with %d states and one scan input needs %d", gp->n_input,
                    f->nstate, f->nstate + 1);
  if ((int)gp->n_output != f->nstate + f->ny)
    return im_error(im, "the body has %zu outputs; the node has %zu", gp->n_output, im->np->n_output);
  for (int k = 0; k <= f->nstate; k++) {
    int onnx_k = k == 0 ? f->nstate : k - 1; /* ONNX: the states, then the step */
    const Onnx__ValueInfoProto *vi = gp->input[onnx_k];
    const Node *o = &im->g->nodes[outer[k]];
    if (!*S(vi->name)) return im_error(im, "body input %d has no name", onnx_k);
    if (o->dtype != DT_F32)
      return im_error(im, "%s '%s' is not float: dlc's scan carries f32 tensors", k ? "state" : "scan input",
                      im->np->input[onnx_k]);
    Shape s = o->shape;
    if (k == 0) {
      for (int d = (int)f->axis; d + 1 < s.rank; d++) s.d[d] = s.d[d + 1];
      s.rank--;
    }
    names[k] = vi->name;
    ids[k] = ir_input(body, im_dl_name(im, vi->name), DT_F32, &s, im->loc);
    if (ids[k] < 0) return -1;
  }
  return 0;
}

/* The body's outputs in dlc's order: the per-step values, then the new states. */
static int body_outputs(Importer *sub, Importer *im, const ScanForm *f) {
  for (int k = 0; k < f->ny + f->nstate; k++) {
    int onnx_k = k < f->ny ? f->nstate + k : k - f->ny;
    const char *name = S(f->body->output[onnx_k]->name);
    int v = *name ? im_map_get(&sub->byname, name) : -1;
    int id = v >= 0 ? sub->vals[v].id : -1;
    if (id < 0)
      return im_error(im, "body output '%s' is %s", name, v < 0 ? "not defined in the body" : "not a value dlc computes in the body (a constant or a second output)");
    if (ir_output(sub->g, k < f->ny ? arena_printf(im->a, "y%d", k) : arena_printf(im->a, "state%d", k - f->ny), id) < 0)
      return -1;
  }
  return 0;
}

/* The body imported into a graph of its own (adopted by the model's). */
static const Graph *import_body(Importer *im, const ScanForm *f, const int *outer, const char *prefix) {
  Graph body;
  ir_graph_init(&body, "step", im->d);
  ir_clone_header(&body, im->g);
  body.name = im_dl_name(im, arena_printf(im->a, "%s_step", prefix)); /* the block's name */
  const char *names[33];
  int ids[33];
  int before = im->d->nerrors;
  int rc = body_inputs(im, f, outer, &body, names, ids);
  /* the nested importer lives in the arena: the body's nodes point at its source lines */
  Importer *sub = arena_alloc(im->a, sizeof *sub);
  *sub = (Importer){.a = im->a, .g = &body, .d = im->d, .path = im->path, .dir = im->dir, .opset = im->opset,
                    .gp = (Onnx__GraphProto *)f->body, .dlnames = im->dlnames, .weights = im->weights, .outer = im,
                    .param_prefix = prefix, .depth = im->depth + 1};
  sub->src.path = arena_printf(im->a, "%s: the body of node %d '%s' (Scan)", im->path, im->ni, S(im->np->name));
  if (!rc) rc = im_subgraph(sub, names, ids, f->nstate + 1);
  im->dlnames = sub->dlnames; /* the names the body took stay taken */
  if (!rc) rc = body_outputs(sub, im, f);
  if (rc || im->d->nerrors > before) {
    ir_graph_free(&body);
    return NULL;
  }
  return ir_scan_body_adopt(im->g, &body);
}

int im_cv_scan(Importer *im) {
  ScanForm f;
  int nin = (int)im->np->n_input, in[64 + 33];
  if (im->depth > 0) return im_error(im, "a Scan inside a Scan body is not supported");
  if (nin < 1 || !*S(im->np->input[nin - 1])) return im_error(im, "has no scan input");
  int seq = im_tensor(im, nin - 1);
  if (seq < 0 || scan_form(im, &f, im->g->nodes[seq].shape.rank)) return -1;
  in[0] = seq;
  for (int k = 0; k < f.nstate; k++)
    if ((in[1 + k] = im_tensor(im, k)) < 0) return -1;
  const char *prefix = im_dl_name(im, *S(im->np->name) ? im->np->name : "scan");
  const Graph *body = import_body(im, &f, in, prefix);
  if (!body || output_axes_ok(im, &f, body)) return -1;
  /* the body's params: the scan's constant operands, named as the .dl names them */
  int bp[64], np = ir_scan_params(body, bp, 64);
  if (np > 64) return im_error(im, "the body reads %d constants; dlc's scan takes at most 64", np);
  for (int k = 0; k < np; k++) {
    const Node *p = &body->nodes[bp[k]];
    in[1 + f.nstate + k] = ir_param(im->g, arena_printf(im->a, "%s.%s", prefix, p->name), DT_F32, &p->shape,
                                    (ParamInit){INIT_ZEROS, 0, 0}, im->loc);
    if (in[1 + f.nstate + k] < 0) return -1;
    im->g->nodes[in[1 + f.nstate + k]].frozen = p->frozen;
  }
  Attrs at = ir_attrs_default(OP_SCAN);
  at.scan = (AttrScan){body, 1, f.nstate, f.axis, f.reverse, 0};
  int scan = ir_op(im->g, OP_SCAN, in, 1 + f.nstate + np, &at, im->loc);
  if (scan < 0) return -1;
  im->g->nodes[scan].name = prefix;
  /* ONNX outputs: the final states, then the stacked values */
  for (int k = 0; k < f.nstate + f.ny; k++) {
    Attrs ao = ir_attrs_default(OP_SCAN_OUT);
    ao.scan.index = k < f.nstate ? f.ny + k : k - f.nstate;
    if (im_set_out(im, k, im_op(im, OP_SCAN_OUT, &scan, 1, &ao, k))) return -1;
  }
  return 0;
}
