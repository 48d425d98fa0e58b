/*
 * plot.h — training curves from a metrics table, as SVG or PNG
 * (driver/plot.c), and image grids (`dlc grid`, driver/grid.c).
 */
#ifndef DLC_PLOT_H
#define DLC_PLOT_H

#include "runtime/rt.h"

#define PLOT_MAX_COLS 64

/* Named columns of doubles, one row per line of a CSV (NaN where a value
 * is missing or not a number). */
typedef struct PlotTable {
  int ncols;
  char *names[PLOT_MAX_COLS]; /* malloc'd */
  int64_t nrows, cap;
  double *vals;               /* nrows * ncols, row-major; malloc'd */
} PlotTable;

/* Splits header ("epoch,batch,train_loss") into the column names. */
RtStatus plot_table_init(PlotTable *t, const char *header, RtError *err);
RtStatus plot_table_add(PlotTable *t, const double *row, RtError *err);
void plot_table_free(PlotTable *t);
/* Reads a CSV with a header line, as dlc train --metrics writes it. */
RtStatus plot_read_csv(const char *path, PlotTable *t, RtError *err);

/* Draws the curves of t into path, SVG or PNG by its extension (.svg,
 * .png), written atomically.  Columns whose name holds "loss" go to the
 * loss panel, those holding "acc" to the accuracy panel; a table with
 * neither plots every other numeric column in one panel.  The x axis is
 * the epoch when there is an "epoch" column (rows with batch 0 are the
 * epochs, other rows the batches of epoch e, drawn at e - 1 + batch / B
 * in a lighter colour), else "step", else the row number. */
RtStatus plot_write(const PlotTable *t, const char *path, RtError *err);

int dlc_cmd_plot(int argc, char **argv);
int dlc_cmd_grid(int argc, char **argv);

#endif
