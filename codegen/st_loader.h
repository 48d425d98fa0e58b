/*
 * st_loader.h — the parameter table every compiled model carries, and the
 * safetensors reader and accessors both backends compile into each model
 * (st_loader_impl.c).
 *
 * CgParamInfo has the layout of the P_param_info struct in the header
 * cg_emit_c writes, so one generic implementation serves every model: the
 * LLVM backend links st_loader_impl.c, compiled to IR ahead of time, into
 * each module, and the C emitter prints this file and st_loader_impl.c
 * into each C file, with DLC_ST_FN defined as static and
 * DLC_ST_PARAM_INFO defined after a typedef of P_param_info as
 * CgParamInfo.  Small per-model wrappers P_load, P_set_param and P_param
 * pass the model's table and the scratch storage the reader needs (it
 * never mallocs).  This file and st_loader_impl.c are C99.
 */
#ifndef DLC_ST_LOADER_H
#define DLC_ST_LOADER_H

#include <stdint.h>

#define CG_PARAM_MAX_RANK 6   /* IR_MAX_RANK; the emitted header's shape[] */
#define CG_ST_MAX_RANK 8      /* dimensions the reader accepts in a file */
#define CG_ST_ERRLEN 256      /* P_error's buffer */

/* The linkage of the functions below: extern for the LLVM backend's IR,
 * static in emitted C (two models link into one program). */
#ifndef DLC_ST_FN
#define DLC_ST_FN
#endif

#ifndef DLC_ST_PARAM_INFO
typedef struct CgParamInfo {
  const char *name;
  int rank;
  int64_t shape[CG_PARAM_MAX_RANK];
  int64_t numel;
  const float *data;
  int is_state;
} CgParamInfo;
#endif

/* What the reader learns of one tensor of the file's header. */
typedef struct CgStEntry {
  int found, dtype_ok, rank;
  long long shape[CG_ST_MAX_RANK], begin, end;
} CgStEntry;

/* &table[i], or NULL when i is outside [0, n). */
DLC_ST_FN const CgParamInfo *dlc_st_param_impl(const CgParamInfo *table, int n, int i);
/* Copies numel floats into tensor i; -1 (and a message) when i is out of
 * range or the parameters are embedded constants. */
DLC_ST_FN int dlc_st_set_param_impl(const CgParamInfo *table, int n, int i, const float *values, int embedded, char *err,
                          int errlen);
/* Loads the table's tensors from a safetensors file.  entries holds n
 * zeroed-or-not CgStEntry, key keylen bytes (longest name + 2).  0, or -1
 * with the reason in err. */
DLC_ST_FN int dlc_st_load_impl(const char *path, const CgParamInfo *table, int n, CgStEntry *entries, char *key, int keylen,
                     int embedded, char *err, int errlen);

#endif
