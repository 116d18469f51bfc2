/* The EMA teacher: a second network whose weights are an exponential moving
 * average of the student's, and which predicts the weak views in place of
 * the student's own pass (rl_semi_config.teacher; mean teacher always has
 * one).
 *
 * Why a method would want one: a weak view's targets from the student's own
 * pass follow every update, noise included, so a wrong target can train
 * itself in within a few steps (confirmation bias, the paper's motivation).
 * The average of about the last 1 / (1 - decay) students moves slowly and,
 * as Tarvainen and Valpola (2017) measured, predicts better than the student
 * it averages. For refpl the teacher also gives the features of the
 * references and of the queries, so the bank and the matches change as
 * slowly.
 *
 * The teacher runs once per step after the student's forward pass, in
 * inference mode (batch norm reads its running statistics; no activations
 * kept for a backward pass), on the images [t0, drawn) of the batch: the
 * weak views, and the labeled and reference images where the method reads
 * their features (teacher_labeled, refpl: t0 = 0, so that its features are
 * indexed as the student's batch). No gradient reaches it. Under several
 * ranks every rank runs the teacher's whole pass, as it computes the losses
 * whole (shard.c); its weights are the same on every rank, as the
 * student's are.
 *
 * After each update: teacher = decay teacher + (1 - decay) student, over the
 * parameters and the batch-norm running statistics alike; the counters stay
 * the copy's. The teacher's tensors are part of the state file
 * ("teacher.*", right after the model's), so --resume continues it bit for
 * bit. */
#include <string.h>

#include "reflabel/dist.h"
#include "semi.h"

void rl_teacher_free(rl_trainer *tr) {
    rl_unet_free(tr->teacher);
    tr->teacher = NULL;
}

int rl_teacher_create(rl_trainer *tr, rl_error *err) {
    const rl_semi_config *sc = &tr->cfg.semi;
    tr->teacher = NULL;
    if (sc->teacher != RL_TEACHER_SELF && sc->teacher != RL_TEACHER_EMA)
        return rl_error_set(err, RL_EINVAL, "unknown teacher %d", (int)sc->teacher);
    if (!tr->method->teacher && sc->teacher == RL_TEACHER_SELF) return RL_OK;
    if (!tr->method->targets)
        return rl_error_set(err, RL_EINVAL,
                            "an EMA teacher predicts unlabeled images; %s training has none",
                            tr->method->name);
    if (!(sc->ema_decay >= 0 && sc->ema_decay < 1))
        return rl_error_set(err, RL_EINVAL, "EMA decay must be in [0, 1), not %g",
                            sc->ema_decay);
    tr->t0 = tr->method->teacher_labeled ? 0 : tr->nl;
    int rc = rl_unet_create(&tr->teacher, rl_unet_get_config(tr->net), tr->cfg.seed, err);
    if (!rc) rc = rl_unet_plan(tr->teacher, tr->drawn - tr->t0, tr->h, tr->w, 0, err);
    if (rc) {
        rl_error_prefix(err, "the EMA teacher");
        return rc;
    }
    /* The teacher starts as a copy of the student, buffers included. */
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(tr->net, &count);
    for (int i = 0; i < count; i++) {
        size_t bytes =
            t[i].numel * (t[i].kind == RL_UNET_COUNTER ? sizeof(int64_t) : sizeof(float));
        memcpy(rl_unet_tensor_data(tr->teacher, &t[i]), rl_unet_tensor_data(tr->net, &t[i]),
               bytes);
    }
    return RL_OK;
}

int rl_teacher_forward(rl_trainer *tr, const char **nonfinite, rl_error *err) {
    size_t hw = (size_t)tr->h * tr->w;
    int rc = rl_unet_forward(tr->teacher, tr->x + (size_t)tr->t0 * tr->set->channels * hw, 0,
                             err);
    /* a rank whose pass failed must not leave the others in a collective */
    if (tr->ranks > 1) rc = rl_dist_agree(rc, err);
    if (rc) return rc;
    rl_tensor logits = rl_unet_logits(tr->teacher);
    if (!rl_trainer_all_finite(logits.data, rl_tensor_numel(&logits)))
        *nonfinite = "the EMA teacher's output is";
    return RL_OK;
}

const float *rl_teacher_logits(const rl_trainer *tr, int image) {
    size_t stride = (size_t)tr->enc.outputs * tr->h * tr->w;
    return rl_unet_logits(tr->teacher).data + (size_t)(image - tr->t0) * stride;
}

void rl_teacher_update(rl_trainer *tr) {
    float a = tr->cfg.semi.ema_decay;
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(tr->net, &count);
    for (int i = 0; i < count; i++) {
        if (t[i].kind == RL_UNET_COUNTER) continue;
        float *dst = rl_unet_tensor_data(tr->teacher, &t[i]);
        const float *src = rl_unet_tensor_data(tr->net, &t[i]);
        for (size_t j = 0; j < t[i].numel; j++) dst[j] = a * dst[j] + (1.0f - a) * src[j];
    }
}
