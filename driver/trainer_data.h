/*
 * trainer_data.h — internal to the trainer: what trainer.c and
 * named_data.c (the data bound by name) share.
 */
#ifndef DLC_TRAINER_DATA_H
#define DLC_TRAINER_DATA_H

#include "driver/trainer.h"

/* Feeds model node `node` from column `source` of the batches. */
void trainer_add_feed(Trainer *t, int node, int source);
/* Each NAME=PATH of the named form feeds its input or label (0 or -1). */
int trainer_named_feeds(Trainer *t);
/* An integer column into input n's integer type (i32 or i64), exactly. */
int trainer_widen_ints(Trainer *t, const Node *n, const char *path, RtTensor *col);
/* Loads every file of the named form, checked against its input. */
int trainer_load_named(Trainer *t);
/* Whether the fixed forms' f32 samples fit the model's data input. */
int trainer_check_fixed_form(Trainer *t);

#endif
