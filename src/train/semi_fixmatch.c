/* FixMatch (Sohn et al., NeurIPS 2020) and UniMatch (Yang et al., CVPR
 * 2023), the strongest weak-to-strong peers, in reflabel's loop: the weak
 * view's own predictions, kept where the softmax maximum (for bit sets, the
 * least certain structure's probability) reaches strong_confidence (0.95 in
 * both papers), are the targets of the strong views. FixMatch has one
 * strong view; UniMatch two, plus a copy of the weak view whose encoder
 * features pass through Dropout2d (feature_dropout, 0.5 in UniMatch) on
 * their way into the decoder. views.c makes the views and the loss; no
 * state across steps. */
#include "semi.h"

static int fixmatch_create(rl_trainer *tr, void **state, rl_error *err) {
    (void)state;
    float t = tr->cfg.semi.strong_confidence;
    if (!(t >= 0 && t <= 1))
        return rl_error_set(err, RL_EINVAL, "the strong-view confidence must be in [0, 1], not %g",
                            t);
    return RL_OK;
}

static int fixmatch_targets(rl_trainer *tr, void *state, rl_train_step_info *info,
                            rl_error *err) {
    (void)state, (void)info, (void)err;
    rl_semi_predict_targets(tr, tr->cfg.semi.strong_confidence);
    return RL_OK;
}

const rl_semi_method rl_semi_fixmatch = {
    .id = RL_METHOD_FIXMATCH,
    .name = "fixmatch",
    .strong_views = 1,
    .create = fixmatch_create,
    .targets = fixmatch_targets,
};

const rl_semi_method rl_semi_unimatch = {
    .id = RL_METHOD_UNIMATCH,
    .name = "unimatch",
    .strong_views = 2,
    .perturb = 1,
    .create = fixmatch_create,
    .targets = fixmatch_targets,
};
