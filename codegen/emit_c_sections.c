/*
 * emit_c_sections.c — the functions that drive named train sections in
 * emitted training C.
 *
 * A model with named sections emits one train step per section
 * (PREFIX_train_step_NAME), all with the same arguments: the symbols, the
 * inputs (among them "step", the section's own step count from 1, and
 * "lr"), then the outputs.  What `dlc train` does between them — whose
 * turn it is, each section's own step count — is printed here too, so a
 * program built on the C needs no copy of it:
 *
 *   PREFIX_section_of(k, &nth)   optimizer step k (from 0) of the run is
 *                                section s's nth own step (from 0): rounds
 *                                of each section's repeat steps in turn
 *   PREFIX_train_next(&step, lr, &section, <the steps' arguments less
 *                     step and lr>)
 *                                runs step *step of the run: the section
 *                                whose turn it is, with rate lr[s] and
 *                                step count nth + 1, then *step += 1
 *   PREFIX_section_name(s), PREFIX_section_lr(s), PREFIX_NUM_SECTIONS,
 *   PREFIX_ROUND_STEPS
 *
 * The step's position in the rounds follows from the run's step count
 * alone, as in dlc train (trainer_section_of), so a program that saves
 * *step resumes in the right place.
 */
#include <string.h>

#include "codegen/emit_common.h"

/* The argument buffers of section 0's step, checked against the others'. */
static const Func *step_func(const Program *p, const char *name) {
  for (int i = 0; i < p->nfuncs; i++)
    if (!strcmp(p->funcs[i].name, name)) return &p->funcs[i];
  return NULL;
}

static int same_args(const Program *p, const Func *a, const Func *b) {
  if (a->nargs != b->nargs) return 0;
  for (int i = 0; i < a->nargs; i++)
    if (a->args[i] != b->args[i] && strcmp(p->bufs[a->args[i]].name, p->bufs[b->args[i]].name)) return 0;
  return 1;
}

static const char *ctype(DType t) {
  return t == DT_F32 ? "float" : t == DT_I64 ? "int64_t" : t == DT_I32 ? "int32_t" : t == DT_U8 ? "uint8_t" : "int";
}

/* "step" or "lr": an argument train_next supplies itself. */
static int is_driven(const Buffer *b) { return b->kind == BUF_INPUT && (!strcmp(b->name, "step") || !strcmp(b->name, "lr")); }

/* The parameters of train_next after step, lr and section. */
static void params(Arena *a, const Program *p, const Func *f, FILE *out) {
  for (int s = 0; s < p->g->nsyms; s++) fprintf(out, ", int64_t %s", cg_symbol_name(a, p, s));
  for (int i = 0; i < f->nargs; i++) {
    const Buffer *b = &p->bufs[f->args[i]];
    if (!is_driven(b))
      fprintf(out, ", %s%s *%s", b->kind == BUF_INPUT ? "const " : "", ctype(b->dtype), cg_buffer_name(a, p, f->args[i]));
  }
}

/* The call of section step f, with the driven arguments from st and lr[s]. */
static void call(Arena *a, const Program *p, const char *pre, const Func *f, int s, FILE *c) {
  fprintf(c, "  case %d: rc = %s_%s(", s, pre, f->name);
  int first = 1;
  for (int k = 0; k < p->g->nsyms; k++, first = 0) fprintf(c, "%s%s", first ? "" : ", ", cg_symbol_name(a, p, k));
  for (int i = 0; i < f->nargs; i++, first = 0) {
    const Buffer *b = &p->bufs[f->args[i]];
    const char *v = !is_driven(b) ? cg_buffer_name(a, p, f->args[i]) : !strcmp(b->name, "step") ? "&st" : NULL;
    if (v) fprintf(c, "%s%s", first ? "" : ", ", v);
    else fprintf(c, "%s&lr[%d]", first ? "" : ", ", s);
  }
  fprintf(c, "); break;\n");
}

static void tables(const char *pre, const CgSections *s, FILE *c) {
  int round = 0;
  fprintf(c, "\n/* --- named train sections, in the order of a round --- */\n");
  fprintf(c, "static const char *const %s_sec_names[%d] = {", pre, s->n);
  for (int i = 0; i < s->n; i++) fprintf(c, "%s\"%s\"", i ? ", " : "", s->names[i]);
  fprintf(c, "};\nstatic const int %s_sec_repeat[%d] = {", pre, s->n);
  for (int i = 0; i < s->n; i++) fprintf(c, "%s%d", i ? ", " : "", s->repeat[i]), round += s->repeat[i];
  fprintf(c, "};\nstatic const double %s_sec_lr[%d] = {", pre, s->n);
  for (int i = 0; i < s->n; i++) fprintf(c, "%s%.17g", i ? ", " : "", s->lr[i]);
  fprintf(c, "};\n\n");
  fprintf(c, "const char *%s_section_name(int s) { return s >= 0 && s < %d ? %s_sec_names[s] : NULL; }\n", pre, s->n, pre);
  fprintf(c, "double %s_section_lr(int s) { return s >= 0 && s < %d ? %s_sec_lr[s] : 0; }\n\n", pre, s->n, pre);
  fprintf(c, "int %s_section_of(int64_t k, int64_t *nth) {\n"
             "  int64_t q = k / %d, r = k %% %d;\n  int s = 0;\n"
             "  while (r >= %s_sec_repeat[s]) r -= %s_sec_repeat[s++];\n"
             "  *nth = q * %s_sec_repeat[s] + r;\n  return s;\n}\n\n",
          pre, round, round, pre, pre, pre);
}

static void declarations(Arena *a, const Program *p, const char *pre, const CgSections *s, const Func *f, FILE *h) {
  const char *PRE = arena_strdup(a, pre);
  for (char *q = (char *)PRE; *q; q++) *q = (char)(*q >= 'a' && *q <= 'z' ? *q - 32 : *q);
  int round = 0;
  for (int i = 0; i < s->n; i++) round += s->repeat[i];
  fprintf(h, "\n/* Named train sections, in the order of a round (order = alternate(...)):\n"
             "   %s_ROUND_STEPS optimizer steps, each section's repeat in a row. */\n"
             "#define %s_NUM_SECTIONS %d\n#define %s_ROUND_STEPS %d\n",
          PRE, PRE, s->n, PRE, round);
  fprintf(h, "const char *%s_section_name(int s);\n/* Section s's learning rate in the model file. */\n"
             "double %s_section_lr(int s);\n", pre, pre);
  fprintf(h, "/* Optimizer step k (from 0) of the run is section s's (returned), its\n"
             "   *nth own step (from 0; Adam's t is *nth + 1). */\nint %s_section_of(int64_t k, int64_t *nth);\n", pre);
  fprintf(h, "/* Step *step of the run: the train step of the section whose turn it is,\n"
             "   at learning rate lr[s] (one rate per section) and its own step count;\n"
             "   then *step += 1 and *section = s (when not NULL).  The other arguments\n"
             "   are the train steps', without step and lr.  Returns the step's status. */\n"
             "int %s_train_next(int64_t *step, const float *lr, int *section", pre);
  params(a, p, f, h);
  fprintf(h, ");\n");
}

int cg_emit_c_sections(const Program *p, const char *pre, const CgSections *s, FILE *c, FILE *h, Diags *d) {
  const Func *f = step_func(p, s->funcs[0]);
  for (int i = 0; i < s->n; i++) {
    const Func *g = step_func(p, s->funcs[i]);
    if (!f || !g || !same_args(p, f, g)) {
      diag_plain(d, "dlc", "internal error: the train steps of the sections have different arguments");
      return -1;
    }
  }
  Arena a;
  arena_init(&a);
  tables(pre, s, c);
  fprintf(c, "int %s_train_next(int64_t *step, const float *lr, int *section", pre);
  params(&a, p, f, c);
  fprintf(c, ") {\n  int64_t nth;\n  int s = %s_section_of(*step, &nth), rc = -1;\n  float st = (float)(nth + 1);\n"
             "  switch (s) {\n", pre);
  for (int i = 0; i < s->n; i++) call(&a, p, pre, step_func(p, s->funcs[i]), i, c);
  fprintf(c, "  default: break;\n  }\n  if (rc == 0) {\n    *step += 1;\n    if (section) *section = s;\n  }\n"
             "  return rc;\n}\n");
  if (h) declarations(&a, p, pre, s, f, h);
  arena_free(&a);
  return 0;
}
