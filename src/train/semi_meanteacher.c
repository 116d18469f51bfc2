/* Mean teacher (Tarvainen and Valpola, 2017): the EMA teacher (teacher.c)
 * predicts the unlabeled half; the loss is the squared distance between the
 * student's and the teacher's softmax distributions, so it needs class
 * outputs (classes_only). The teacher's argmax stands in for pseudo-labels
 * in the statistics. */
#include <stdlib.h>

#include "reflabel/loss.h"
#include "semi.h"

typedef struct meanteacher {
    float *probs; /* (nu, K, h, w) the teacher's softmax */
} meanteacher;

static int meanteacher_create(rl_trainer *tr, void **state, rl_error *err) {
    (void)tr;
    *state = calloc(1, sizeof(meanteacher));
    return *state ? RL_OK : rl_error_set(err, RL_ENOMEM, "out of memory for meanteacher");
}

static void meanteacher_layout(rl_trainer *tr, void *state, rl_arena *a) {
    meanteacher *m = state;
    m->probs = rl_arena_floats(a, (size_t)tr->nu * tr->enc.outputs * tr->h * tr->w);
}

static int meanteacher_targets(rl_trainer *tr, void *state, rl_train_step_info *info,
                               rl_error *err) {
    (void)info, (void)err;
    meanteacher *m = state;
    int k = tr->enc.outputs;
    size_t hw = (size_t)tr->h * tr->w, count = (size_t)tr->nu * hw;
    rl_softmax(m->probs, rl_teacher_logits(tr, tr->nl), tr->nu, k, (int)hw);
    for (size_t i = 0; i < count; i++) {
        const float *p = m->probs + (i / hw) * k * hw + i % hw;
        int32_t best = rl_argmax_confidence(p, k, hw, NULL);
        tr->pseudo[i] = tr->matched[i] = tr->valid[i] ? best : RL_IGNORE;
    }
    return RL_OK;
}

static double meanteacher_loss(rl_trainer *tr, void *state, float *dlogits, const float *logits,
                               double w) {
    meanteacher *m = state;
    return rl_softmax_mse_loss(dlogits, logits, m->probs, tr->valid, tr->nu, tr->enc.outputs,
                               tr->h * tr->w, (float)w);
}

const rl_semi_method rl_semi_meanteacher = {
    .id = RL_METHOD_MEANTEACHER,
    .name = "meanteacher",
    .classes_only = 1,
    .teacher = 1,
    .create = meanteacher_create,
    .layout = meanteacher_layout,
    .targets = meanteacher_targets,
    .loss = meanteacher_loss,
    .free = free,
};
