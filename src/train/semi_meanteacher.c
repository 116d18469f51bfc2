/* Mean teacher: an exponential moving average of the student (parameters
 * and batch-norm statistics alike) predicts the unlabeled half; the loss is
 * the squared distance between the student's and the teacher's softmax
 * distributions, so it needs class outputs (classes_only). The teacher's
 * argmax stands in for pseudo-labels in the statistics. The teacher's
 * tensors are the state the state file keeps (teacher.*). */
#include <stdlib.h>
#include <string.h>

#include "reflabel/loss.h"
#include "semi.h"

typedef struct meanteacher {
    rl_unet *teacher;
    float *probs; /* (nu, K, h, w) the teacher's softmax */
} meanteacher;

static void meanteacher_free(void *state) {
    meanteacher *m = state;
    if (!m) return;
    rl_unet_free(m->teacher);
    free(m);
}

static int meanteacher_create(rl_trainer *tr, void **state, rl_error *err) {
    if (!(tr->cfg.semi.ema_decay >= 0 && tr->cfg.semi.ema_decay < 1))
        return rl_error_set(err, RL_EINVAL, "EMA decay must be in [0, 1)");
    meanteacher *m = calloc(1, sizeof *m);
    if (!m) return rl_error_set(err, RL_ENOMEM, "out of memory for the teacher");
    *state = m;
    int rc = rl_unet_create(&m->teacher, rl_unet_get_config(tr->net), tr->cfg.seed, err);
    if (!rc) rc = rl_unet_plan(m->teacher, tr->nu, tr->h, tr->w, 0, err);
    if (rc) return rc;
    /* The teacher starts as a copy of the student, buffers included. */
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(tr->net, &count);
    for (int i = 0; i < count; i++) {
        size_t bytes =
            t[i].numel * (t[i].kind == RL_UNET_COUNTER ? sizeof(int64_t) : sizeof(float));
        memcpy(rl_unet_tensor_data(m->teacher, &t[i]), rl_unet_tensor_data(tr->net, &t[i]),
               bytes);
    }
    return RL_OK;
}

static void meanteacher_layout(rl_trainer *tr, void *state, rl_arena *a) {
    meanteacher *m = state;
    m->probs = rl_arena_floats(a, (size_t)tr->nu * tr->enc.outputs * tr->h * tr->w);
}

static int meanteacher_targets(rl_trainer *tr, void *state, rl_train_step_info *info,
                               rl_error *err) {
    (void)info;
    meanteacher *m = state;
    int k = tr->enc.outputs;
    size_t hw = (size_t)tr->h * tr->w, count = (size_t)tr->nu * hw;
    const float *xu = tr->x + (size_t)tr->nl * tr->set->channels * hw;
    int rc = rl_unet_forward(m->teacher, xu, 0, err);
    if (rc) return rc;
    rl_softmax(m->probs, rl_unet_logits(m->teacher).data, tr->nu, k, (int)hw);
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

/* teacher = decay * teacher + (1 - decay) * student, parameters and
 * batch-norm statistics alike. */
static void meanteacher_after_update(rl_trainer *tr, void *state) {
    meanteacher *m = state;
    float a = tr->cfg.semi.ema_decay;
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(tr->net, &count);
    for (int i = 0; i < count; i++) {
        if (t[i].kind == RL_UNET_COUNTER) continue;
        float *dst = rl_unet_tensor_data(m->teacher, &t[i]);
        const float *src = rl_unet_tensor_data(tr->net, &t[i]);
        for (size_t j = 0; j < t[i].numel; j++) dst[j] = a * dst[j] + (1.0f - a) * src[j];
    }
}

static int meanteacher_save(rl_trainer *tr, void *state, rl_state_list *l, rl_state_part part,
                            rl_error *err) {
    (void)tr, (void)err;
    meanteacher *m = state;
    if (part == RL_STATE_NETWORKS) rl_state_add_unet(l, "teacher.", m->teacher);
    return RL_OK;
}

static int meanteacher_restore(rl_trainer *tr, void *state, const rl_safetensors *st,
                               const char *path, rl_state_part part, int apply, rl_error *err) {
    (void)tr;
    meanteacher *m = state;
    if (part != RL_STATE_NETWORKS) return RL_OK;
    return rl_state_restore_unet(m->teacher, "teacher.", st, path, apply, err);
}

const rl_semi_method rl_semi_meanteacher = {
    .id = RL_METHOD_MEANTEACHER,
    .name = "meanteacher",
    .classes_only = 1,
    .create = meanteacher_create,
    .layout = meanteacher_layout,
    .targets = meanteacher_targets,
    .loss = meanteacher_loss,
    .after_update = meanteacher_after_update,
    .save = meanteacher_save,
    .restore = meanteacher_restore,
    .free = meanteacher_free,
};
