/* Internal to src/train: refpl's margin calibration (margin_calibration.c). */
#ifndef RL_TRAIN_MARGIN_CALIBRATION_H
#define RL_TRAIN_MARGIN_CALIBRATION_H

#include "trainer_impl.h"

typedef struct rl_margin_calibration rl_margin_calibration;

/* A bank and a matcher configured as refpl's (bank_cfg, match_cfg) but for
 * the nl - 1 other labeled images of a batch and with no memory (a
 * remembered batch may hold the very image being matched). */
int rl_margin_calibration_create(rl_margin_calibration **out, const rl_trainer *tr,
                                 const rl_bank_config *bank_cfg, const rl_match_config *match_cfg,
                                 rl_error *err);
void rl_margin_calibration_layout(rl_margin_calibration *c, rl_arena *a);
/* The smallest margin at which the labeled half's matches among themselves
 * reach cfg.semi.margin_accuracy; features (n, D, h, w) of this step.
 * Collective under several ranks (shard.c). */
int rl_margin_calibration_run(rl_margin_calibration *c, rl_trainer *tr, const float *features,
                              float *threshold, rl_error *err);
void rl_margin_calibration_free(rl_margin_calibration *c);

#endif
