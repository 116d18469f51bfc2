/* predpl: pseudo-labels from the network's own predictions on the
 * unlabeled half (the encoding's decision: argmax, or every structure whose
 * sigmoid exceeds 0.5), kept where their confidence (softmax maximum, or
 * the probability of the least certain structure's decision) reaches
 * min_confidence. No state across steps. */
#include "semi.h"

static int predpl_create(rl_trainer *tr, void **state, rl_error *err) {
    (void)state;
    float t = tr->cfg.semi.min_confidence;
    if (!(t >= 0 && t <= 1))
        return rl_error_set(err, RL_EINVAL, "the confidence threshold must be in [0, 1]");
    return RL_OK;
}

static int predpl_targets(rl_trainer *tr, void *state, rl_train_step_info *info, rl_error *err) {
    (void)state, (void)info, (void)err;
    rl_semi_predict_targets(tr, tr->cfg.semi.min_confidence);
    return RL_OK;
}

const rl_semi_method rl_semi_predpl = {
    .id = RL_METHOD_PREDPL,
    .name = "predpl",
    .create = predpl_create,
    .targets = predpl_targets,
};
