/* refpl --margin-accuracy: the margin threshold of each step, learned from
 * the labeled half matched against itself.
 *
 * Each labeled image is matched against the batch's labeled images of other
 * samples (a copy of the same slice, augmented apart, would match it too
 * well); its pixels' margins are split by whether the match was right, and
 * the threshold is the smallest margin at which the right ones reach the
 * target accuracy (rl_pseudolabel_margin_for_accuracy). A fixed threshold
 * means different things for different networks and data (0.1 keeps a
 * third of the atlas's pixels and 1% of the stripes', docs/TRAINING.md); an
 * accuracy does not. */
#include "margin_calibration.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/pseudolabel.h"

/* XORed into the seed of the calibration's streams, one per step. */
#define CALIBRATION_SEED 0x63616c6962726174ull /* "calibrat" */

struct rl_margin_calibration {
    rl_bank *bank;           /* the other labeled images of the batch */
    rl_matcher matcher;
    int dim;
    float *features;         /* (nl - 1, D, h, w) those images' features */
    int32_t *labels;         /* (nl - 1, h, w) and labels */
    int32_t *matched;        /* (h, w) the labels one image's pixels matched */
    float *margin;           /* (h, w) and their margins */
    float *right, *wrong;    /* (nl, h, w) margins, by outcome */
    int nl;                  /* the reference images, from image `first` of the batch */
    int first;
    size_t hw;
};

const char *rl_margin_calibration_obstacle(const rl_sample_set *set, int batch) {
    if (set->multilabel) return "the labels are multi-label bit sets";
    if (batch < 2) return "it needs 2 labeled images per step, and the batch holds 1";
    if (set->labeled_count < 2) return "it needs 2 labeled samples, and there is 1";
    return NULL;
}

int rl_margin_calibration_create(rl_margin_calibration **out, const rl_trainer *tr,
                                 const rl_bank_config *bank_cfg, const rl_match_config *match_cfg,
                                 rl_error *err) {
    *out = NULL;
    const char *obstacle = rl_margin_calibration_obstacle(tr->set, tr->ref_count);
    if (obstacle)
        return rl_error_set(err, RL_EINVAL, "margin accuracy cannot be calibrated: %s", obstacle);
    rl_margin_calibration *c = calloc(1, sizeof *c);
    if (!c) return rl_error_set(err, RL_ENOMEM, "out of memory for the margin calibration");
    c->nl = tr->ref_count;
    c->first = tr->ref_first;
    c->hw = (size_t)tr->h * tr->w;
    c->dim = bank_cfg->dim;
    rl_bank_config bc = *bank_cfg;
    bc.max_images = c->nl - 1;
    bc.memory_batches = 1;
    int rc = rl_bank_create(&c->bank, &bc, err);
    if (!rc) {
        rc = rl_matcher_init(&c->matcher, match_cfg, &bc, err);
        if (rc) rl_bank_free(c->bank);
    }
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return RL_OK;
}

void rl_margin_calibration_layout(rl_margin_calibration *c, rl_arena *a) {
    size_t others = (size_t)c->nl - 1, hw = c->hw;
    c->features = rl_arena_floats(a, others * (size_t)c->dim * hw);
    c->labels = rl_arena_alloc(a, others * hw * sizeof *c->labels);
    c->matched = rl_arena_alloc(a, hw * sizeof *c->matched);
    c->margin = rl_arena_floats(a, hw);
    c->right = rl_arena_floats(a, (size_t)c->nl * hw);
    c->wrong = rl_arena_floats(a, (size_t)c->nl * hw);
}

void rl_margin_calibration_free(rl_margin_calibration *c) {
    if (!c) return;
    rl_matcher_free(&c->matcher);
    rl_bank_free(c->bank);
    free(c);
}

/* No image with another sample to match against (an epoch boundary can
 * repeat one): +INFINITY, no pseudo-label this step. The bank's draws use a
 * stream of their own, seeded from the step, so that the main bank's stream
 * and the trainer state are those of a run without calibration. */
int rl_margin_calibration_run(rl_margin_calibration *c, const rl_trainer *tr,
                              const float *features, float *threshold, rl_error *err) {
    int h = tr->h, w = tr->w;
    size_t hw = c->hw, stride = (size_t)c->dim * hw;
    int64_t n_right = 0, n_wrong = 0;
    rl_rng rng;
    rl_rng_seed(&rng, tr->cfg.seed ^ CALIBRATION_SEED, (uint64_t)tr->steps_done);
    for (int b = c->first; b < c->first + c->nl; b++) {
        int others = 0;
        for (int j = c->first; j < c->first + c->nl; j++) {
            if (tr->batch_samples[j] == tr->batch_samples[b]) continue;
            memcpy(c->features + others * stride, features + j * stride,
                   stride * sizeof *features);
            memcpy(c->labels + others * hw, tr->y + j * hw, hw * sizeof *tr->y);
            others++;
        }
        if (others == 0) continue;
        int rc = rl_bank_add(c->bank, c->features, c->labels, NULL, others, h, w, &rng, err);
        if (rc) return rc;
        rl_match_out out;
        memset(&out, 0, sizeof out);
        out.label = c->matched;
        out.margin = c->margin;
        rc = rl_match(&c->matcher, c->bank, features + b * stride, 1, h, w, &out, err);
        if (rc) return rc;
        const int32_t *truth = tr->y + b * hw;
        for (size_t i = 0; i < hw; i++) {
            if (truth[i] < 0) continue; /* padding */
            if (c->matched[i] == truth[i]) c->right[n_right++] = c->margin[i];
            else c->wrong[n_wrong++] = c->margin[i];
        }
    }
    float t = rl_pseudolabel_margin_for_accuracy(c->right, n_right, c->wrong, n_wrong,
                                                 tr->cfg.semi.margin_accuracy);
    *threshold = isnan(t) ? INFINITY : t;
    return RL_OK;
}
