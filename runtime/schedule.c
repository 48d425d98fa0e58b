/*
 * schedule.c — learning-rate schedules, with torch.optim.lr_scheduler's
 * formulas in closed form.
 *
 * Epoch-based schedules (step, exponential, cosine) give the rate of epoch
 * e counting from 0; the cyclic schedule, like torch's CyclicLR, moves
 * every iteration (mini-batch), counting from 0.  Closed forms agree with
 * torch's recursive updates to rounding (about 1e-17); cosine keeps
 * following the cosine past t_max, as torch's CosineAnnealingLR does.
 */
#include <math.h>

#include "runtime/rt.h"

double rt_schedule_lr(const RtSchedule *s, int64_t epoch, int64_t iteration) {
  switch (s->kind) {
  case SCHED_CONSTANT: return s->base_lr;
  case SCHED_STEP: return s->base_lr * pow(s->gamma, (double)(epoch / (s->step_size > 0 ? s->step_size : 1)));
  case SCHED_EXPONENTIAL: return s->base_lr * pow(s->gamma, (double)epoch);
  case SCHED_COSINE:
    return s->eta_min + (s->base_lr - s->eta_min) * (1 + cos(M_PI * (double)epoch / s->t_max)) / 2;
  case SCHED_CYCLIC: {
    double up = s->step_size_up > 0 ? s->step_size_up : 1;
    double cycle = floor(1 + (double)iteration / (2 * up));
    double x = fabs((double)iteration / up - 2 * cycle + 1);
    return s->min_lr + (s->max_lr - s->min_lr) * fmax(0.0, 1 - x);
  }
  case SCHED_COUNT: break;
  }
  return s->base_lr;
}
