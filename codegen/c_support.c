/*
 * c_support.c — the fixed part of every emitted C file: the safetensors
 * reader, the parameter accessors and the error string.
 *
 * The reader is not written here: it is codegen/st_loader_impl.c (with
 * st_loader.h), the same source the LLVM backend links into its modules
 * as IR, printed from the text the build embeds into dlc.  It is printed
 * with its functions static (DLC_ST_FN), so two models link into one
 * program, and with CgParamInfo a typedef of the model's P_param_info
 * (DLC_ST_PARAM_INFO), the type of the table emit_c.c prints before it.
 * After it come the per-model wrappers, which pass the table, static
 * scratch storage (the entries and the key buffer; the reader never
 * mallocs) and whether the parameters are embedded constants; P_set_param
 * and P_load mark the derived buffers stale when the program has any.
 */
#include <ctype.h>
#include <string.h>

#include "codegen/cg.h"
#include "codegen/emit_common.h"

/* The text of the wrappers, printed with '@' replaced by the model's
 * prefix, '$' by the prefix in upper case (for macros), '#KEY' by the key
 * buffer's length, '#EMB' by 1 for embedded parameters and '#STALE' by the
 * statement that marks derived buffers stale (or nothing). */
static const char *const wrappers =
    "static char err_msg[CG_ST_ERRLEN];\n"
    "static CgStEntry st_entries[$_NUM_TENSORS + 1];\n"
    "static char st_key[#KEY];\n\n"
    "const char *@_error(void) { return err_msg; }\n\n"
    "const @_param_info *@_param(int i) { return dlc_st_param_impl(params, $_NUM_TENSORS, i); }\n\n"
    "int @_set_param(int i, const float *values) {\n"
    "#STALE"
    "  return dlc_st_set_param_impl(params, $_NUM_TENSORS, i, values, #EMB, err_msg, (int)sizeof err_msg);\n"
    "}\n\n"
    "int @_load(const char *path) {\n"
    "#STALE"
    "  return dlc_st_load_impl(path, params, $_NUM_TENSORS, st_entries, st_key, (int)sizeof st_key, #EMB, err_msg,\n"
    "                          (int)sizeof err_msg);\n"
    "}\n\n";

static void print_wrappers(FILE *f, const char *pre, int keylen, int embedded, int derived) {
  for (const char *t = wrappers; *t; t++) {
    if (strncmp(t, "#STALE", 6) == 0)
      fputs(derived && !embedded ? "  derived_stale = 1; /* the parameters change */\n" : "", f), t += 5;
    else if (strncmp(t, "#KEY", 4) == 0)
      fprintf(f, "%d", keylen), t += 3;
    else if (strncmp(t, "#EMB", 4) == 0)
      fprintf(f, "%d", embedded), t += 3;
    else if (*t == '$')
      for (const char *c = pre; *c; c++) fputc(toupper((unsigned char)*c), f);
    else if (*t == '@')
      fputs(pre, f);
    else
      fputc(*t, f);
  }
}

void cg_c_support(FILE *f, const Program *p, const char *pre, const CgTable *t, int embedded) {
  fprintf(f, "/* The safetensors reader and the parameter accessors: dlc's\n"
             "   codegen/st_loader.h and codegen/st_loader_impl.c over this model's table. */\n"
             "#define DLC_ST_FN static\n#define DLC_ST_PARAM_INFO\ntypedef %s_param_info CgParamInfo;\n",
          pre);
  cg_print_source(f, cg_text_st_loader_h);
  cg_print_source(f, cg_text_st_loader_impl_c);
  fputc('\n', f);
  print_wrappers(f, pre, t->keylen, embedded, p->prepare != NULL);
}
