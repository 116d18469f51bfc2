/* Weak and strong views: the images a step derives from the ones it drew,
 * and the unlabeled loss over every view that carries one.
 *
 * The caption of the paper's Figure 2: "In parallel, we use the predictions
 * of a weakly augmented sample to act as supervision for a strongly
 * augmented version of the image." FixMatch (Sohn et al. 2020) and UniMatch
 * (Yang et al. 2023) are built on the same rule. The drawn unlabeled images
 * are the weak views; their forward pass gives the targets (the method's:
 * reference matches, or confident predictions), and once strong views exist
 * the weak view's logits get no gradient at all: a target is a constant.
 *
 * Every image of a step goes through one forward pass, so that the
 * gradients of all views sum in one backward pass: labeled, weak,
 * references, strong views, perturbed copies (trainer_impl.h). The weak
 * view and the references only cost their backward pass's arithmetic on a
 * zero gradient; with group norm (the default) an image's activations do
 * not depend on the others in the batch.
 *
 * Strong view j of unlabeled image i is the weak view with stronger
 * photometric perturbation (rl_strong_apply: no pixel moves), then with
 * probability p_cutmix a box of view j of image i + 1 (mod nu) pasted in,
 * its targets with the same box (rl_box_paste). UniMatch draws the pasted
 * image from a second unlabeled loader and predicts it in a second pass;
 * the next image of the same batch is already predicted by this pass, and
 * costs nothing. With one unlabeled image per step it pastes into itself,
 * which changes nothing.
 *
 * UniMatch's feature perturbation: a copy of each weak view whose encoder
 * features are dropped channel-wise (Dropout2d) where the decoder reads
 * them, trained towards the weak view's targets. The copy's encoder pass
 * repeats the weak view's exactly, and the parameter gradients of the two
 * uses of the same activations add, as they do in UniMatch's shared pass.
 *
 * The loss weights follow UniMatch: the strong views share 1 (0.5 with the
 * perturbed copies, which take the other 0.5), so FixMatch's single view
 * weighs 1 and UniMatch's weigh 0.25, 0.25 and 0.5. refpl's consistency
 * adds the weak view's confident predictions as second targets of the same
 * views, weighted by consistency_weight. */
#include <math.h>
#include <string.h>

#include "semi.h"

void rl_views_layout(rl_trainer *tr, rl_arena *a) {
    size_t hw = (size_t)tr->h * tr->w, nu = (size_t)tr->nu, ns = (size_t)tr->ns;
    tr->pred = NULL;
    tr->pred_confidence = NULL;
    tr->consistency = tr->strong_targets = tr->strong_consistency = NULL;
    tr->boxes = NULL;
    tr->mix_scratch = tr->feature_scale = NULL;
    if (tr->nu == 0) return;
    tr->pred = rl_arena_alloc(a, nu * hw * sizeof *tr->pred);
    tr->pred_confidence = rl_arena_floats(a, nu * hw);
    /* Conditions on the configuration, never on a pointer: the measuring
     * pass's are NULL. */
    int consistency = tr->cfg.semi.consistency_weight > 0;
    if (consistency) tr->consistency = rl_arena_alloc(a, nu * hw * sizeof *tr->consistency);
    if (tr->ns > 0) {
        tr->strong_targets = rl_arena_alloc(a, ns * nu * hw * sizeof *tr->strong_targets);
        if (consistency)
            tr->strong_consistency =
                rl_arena_alloc(a, ns * nu * hw * sizeof *tr->strong_consistency);
        tr->boxes = rl_arena_alloc(a, ns * nu * sizeof *tr->boxes);
        tr->mix_scratch = rl_arena_floats(a, nu * (size_t)tr->set->channels * hw);
    }
    if (tr->nfp > 0)
        tr->feature_scale =
            rl_arena_floats(a, (size_t)tr->n * (size_t)rl_unet_feature_scale_count(tr->net));
}

static float *image_at(const rl_trainer *tr, int b) {
    return tr->x + (size_t)b * tr->set->channels * tr->h * tr->w;
}

/* Strong views: all photometric draws of view j, then its boxes, from one
 * stream per step. */
static int fill_strong(rl_trainer *tr, rl_rng *rng, rl_error *err) {
    const rl_strong_config *sc = &tr->cfg.semi.strong;
    int c = tr->set->channels, h = tr->h, w = tr->w;
    size_t bytes = (size_t)c * h * w * sizeof(float);
    for (int j = 0; j < tr->ns; j++) {
        for (int i = 0; i < tr->nu; i++) {
            float *view = image_at(tr, tr->s0 + j * tr->nu + i);
            memcpy(view, image_at(tr, tr->nl + i), bytes);
            int rc = rl_strong_apply(sc, rng, view, c, h, w, tr->augment_scratch, err);
            if (rc) return rc;
        }
        memcpy(tr->mix_scratch, image_at(tr, tr->s0 + j * tr->nu), (size_t)tr->nu * bytes);
        for (int i = 0; i < tr->nu; i++) {
            rl_box box = rl_cutmix_draw(sc, rng, h, w);
            tr->boxes[j * tr->nu + i] = box;
            const float *src = tr->mix_scratch + (size_t)((i + 1) % tr->nu) * c * h * w;
            rl_box_paste(box, image_at(tr, tr->s0 + j * tr->nu + i), src, c, h, w,
                         sizeof(float));
        }
    }
    return RL_OK;
}

/* Dropout2d(p) on the perturbed copies' channels: 0, or 1 / (1 - p) so
 * that the expected feature stays; 1 for every other image. */
static void fill_feature_scale(rl_trainer *tr, rl_rng *rng) {
    size_t count = (size_t)rl_unet_feature_scale_count(tr->net);
    float p = tr->cfg.semi.feature_dropout, keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < (size_t)tr->n * count; i++) tr->feature_scale[i] = 1.0f;
    float *perturbed = tr->feature_scale + (size_t)tr->fp0 * count;
    for (size_t i = 0; i < (size_t)tr->nu * count; i++)
        perturbed[i] = rl_rng_uniform(rng) < p ? 0.0f : keep;
}

int rl_views_fill(rl_trainer *tr, rl_error *err) {
    size_t hw = (size_t)tr->h * tr->w;
    for (int b = tr->drawn; b < tr->n; b++) {
        int source = b < tr->fp0 ? (b - tr->s0) % tr->nu : b - tr->fp0;
        tr->batch_samples[b] = tr->batch_samples[tr->nl + source];
        for (size_t i = 0; i < hw; i++) tr->y[(size_t)b * hw + i] = RL_IGNORE;
    }
    if (tr->ns > 0) {
        rl_rng rng;
        rl_rng_seed(&rng, tr->cfg.seed, STREAM_STRONG + (uint64_t)tr->steps_done);
        int rc = fill_strong(tr, &rng, err);
        if (rc) return rc;
    }
    if (tr->nfp > 0) {
        size_t bytes = (size_t)tr->set->channels * hw * sizeof(float);
        memcpy(image_at(tr, tr->fp0), image_at(tr, tr->nl), (size_t)tr->nu * bytes);
        rl_rng rng;
        rl_rng_seed(&rng, tr->cfg.seed, STREAM_PERTURB + (uint64_t)tr->steps_done);
        fill_feature_scale(tr, &rng);
    }
    return RL_OK;
}

/* Accuracy of labels against the hidden ones over the unlabeled pixels
 * whose truth is known; NaN without any. */
static double accuracy(const rl_trainer *tr, const int32_t *labels) {
    size_t count = (size_t)tr->nu * tr->h * tr->w;
    int64_t known = 0, right = 0;
    for (size_t i = 0; i < count; i++) {
        if (!tr->valid[i] || !rl_encoding_known(&tr->enc, tr->hidden[i])) continue;
        known++;
        right += labels[i] == tr->hidden[i];
    }
    return known ? (double)right / (double)known : NAN;
}

void rl_views_predict(rl_trainer *tr) {
    size_t hw = (size_t)tr->h * tr->w;
    const float *logits = tr->teacher ? rl_teacher_logits(tr, tr->nl)
                                      : tr->logits + (size_t)tr->nl * tr->enc.outputs * hw;
    rl_encoding_decode_images(&tr->enc, logits, tr->nu, hw, tr->pred, tr->pred_confidence);
}

void rl_views_accuracy(const rl_trainer *tr, rl_train_step_info *info) {
    info->pred_accuracy = accuracy(tr, tr->pred);
    info->matched_accuracy = accuracy(tr, tr->matched);
}

/* The targets of strong view j from the weak ones: a copy with view j's
 * boxes pasted from the next image's targets. */
static void mix_targets(const rl_trainer *tr, int32_t *out, const int32_t *weak) {
    size_t hw = (size_t)tr->h * tr->w;
    for (int j = 0; j < tr->ns; j++) {
        int32_t *view = out + (size_t)j * tr->nu * hw;
        memcpy(view, weak, (size_t)tr->nu * hw * sizeof *weak);
        for (int i = 0; i < tr->nu; i++)
            rl_box_paste(tr->boxes[j * tr->nu + i], view + (size_t)i * hw,
                         weak + (size_t)((i + 1) % tr->nu) * hw, 1, tr->h, tr->w,
                         sizeof *weak);
    }
}

/* weight * (CE + pl_dice_weight * Dice) of images [first, first + nu)
 * against targets, gradient with weight lambda * weight. */
static double view_loss(rl_trainer *tr, float *dlogits, const float *logits,
                        const int32_t *targets, int first, double lambda, double weight) {
    size_t offset = (size_t)first * tr->enc.outputs * tr->h * tr->w;
    float pl_dice = tr->cfg.semi.pl_dice_weight, ce, dice = 0;
    rl_encoding_loss(&tr->enc, dlogits ? dlogits + offset : NULL, logits + offset, targets, first,
                     tr->nu, tr->h * tr->w, lambda * weight, pl_dice, &ce, &dice);
    double loss = ce;
    if (pl_dice > 0) loss += pl_dice * dice;
    return weight * loss;
}

double rl_views_loss(rl_trainer *tr, float *dlogits, const float *logits, double lambda) {
    const rl_semi_config *sc = &tr->cfg.semi;
    size_t hw = (size_t)tr->h * tr->w, count = (size_t)tr->nu * hw;
    if (tr->consistency)
        for (size_t i = 0; i < count; i++)
            tr->consistency[i] = tr->valid[i] && tr->pred_confidence[i] >= sc->strong_confidence
                                     ? tr->pred[i]
                                     : RL_IGNORE;
    double share = tr->nfp > 0 ? 0.5 : 1.0, loss = 0;
    if (tr->ns == 0) {
        loss += view_loss(tr, dlogits, logits, tr->pseudo, tr->nl, lambda, share);
        if (tr->consistency)
            loss += view_loss(tr, dlogits, logits, tr->consistency, tr->nl, lambda,
                              share * sc->consistency_weight);
    } else {
        double w = share / tr->ns;
        mix_targets(tr, tr->strong_targets, tr->pseudo);
        if (tr->consistency) mix_targets(tr, tr->strong_consistency, tr->consistency);
        for (int j = 0; j < tr->ns; j++) {
            int first = tr->s0 + j * tr->nu;
            loss += view_loss(tr, dlogits, logits, tr->strong_targets + j * count, first, lambda,
                              w);
            if (tr->consistency)
                loss += view_loss(tr, dlogits, logits, tr->strong_consistency + j * count, first,
                                  lambda, w * sc->consistency_weight);
        }
    }
    if (tr->nfp > 0) loss += view_loss(tr, dlogits, logits, tr->pseudo, tr->fp0, lambda, 0.5);
    return loss;
}
