/* reflabel/health.h - warnings about a training run, step by step: batches
 * skipped as not finite, pseudo-label class shares drifting from the
 * labeled images', a class the pseudo-labels are losing, and refpl keeping
 * too few pixels. The checks read only rl_train_step_info, so they can be
 * replayed on synthetic steps (tests/test_health.c).
 *
 * At the call site (src/cli/cmd_train.c):
 *
 *   rl_health *h;
 *   rl_health_create(&h, &cfg, ds.num_classes, ds.class_names, "RUN/log.csv", &err);
 *   each step:  int n = rl_health_step(h, &info);
 *               for (int i = 0; i < n; i++) fprintf(stderr, "...: warning: %s\n",
 *                                                   rl_health_warning(h, i));
 *   rl_health_free(h);
 *
 * The library does not print: the warnings are one line of text each, valid
 * until the next rl_health_step. They name the options of `reflabel train`
 * that change what they warn about.
 */
#ifndef REFLABEL_HEALTH_H
#define REFLABEL_HEALTH_H

#include "reflabel/core.h"
#include "reflabel/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Total variation distance above which the class shares of the pseudo-labels
 * are reported as drifting from the labeled images' (at most 10 times a run). */
#define RL_HEALTH_DRIFT 0.25

/* The scale of --min-margin depends on the data and the network: 0.1 keeps
 * 20-53% of the pixels on the 2 mm brain atlas with width 8, 0-5% with the
 * demo's width 16, and 1% on the stripes data (docs/TRAINING.md). So the
 * share kept over the first RL_HEALTH_KEPT_STEPS steps of the unlabeled loss
 * is checked once (refpl), and a share below RL_HEALTH_KEPT_MIN is reported. */
#define RL_HEALTH_KEPT_STEPS 50
#define RL_HEALTH_KEPT_MIN 0.05

/* A class the pseudo-labels lose, the network loses, and the drift can miss
 * it: on the atlas, --keep-fraction 0.5 (seed 2) matched the cerebellum on
 * 2.9% of the unlabeled pixels over steps 1002-1101 against 5.9% of the
 * labeled ones, ended with test Dice 0 for it and for the temporal lobe, and
 * its drift stayed at 0.12, under RL_HEALTH_DRIFT (docs/RESULTS.md). So each
 * class's share of the pseudo-labels is averaged over windows of
 * RL_HEALTH_SHARE_STEPS steps of the unlabeled loss; a class that holds at
 * least RL_HEALTH_SHARE_FLOOR of the labeled pixels and whose mean share falls
 * under RL_HEALTH_SHARE_RATIO times that is reported, once per class.
 * Replayed on the logs of that benchmark, this fired for the two runs that
 * lost classes and for none of the seven that did not. It cannot tell a loss
 * from unlabeled images that hold less of the class, hence the wording. */
#define RL_HEALTH_SHARE_STEPS 100
#define RL_HEALTH_SHARE_RATIO 0.5
#define RL_HEALTH_SHARE_FLOOR 0.01

/* Skipped batches (--skip-nonfinite) are reported one warning each up to
 * this many; the total is in the log and in rl_health_skipped. */
#define RL_HEALTH_SKIP_REPORTS 10

typedef struct rl_health rl_health;

/* cfg: the run's training config (steps, semi.method and the refpl
 * thresholds named in the warnings); class_names: num_classes names, copied;
 * log_name: the log the warnings point to (copied; NULL: none). */
int rl_health_create(rl_health **out, const rl_train_config *cfg, int num_classes,
                     char *const *class_names, const char *log_name, rl_error *err);
void rl_health_free(rl_health *h);

/* Checks one step; returns how many warnings it raised (0 for most steps). */
int rl_health_step(rl_health *h, const rl_train_step_info *info);
/* Warning i of the last step, one line without a trailing newline. */
const char *rl_health_warning(const rl_health *h, int i);
/* Batches skipped so far (info->skipped_total of the last step). */
int64_t rl_health_skipped(const rl_health *h);

#ifdef __cplusplus
}
#endif
#endif
