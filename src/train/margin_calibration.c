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

#include "reflabel/dist.h"
#include "reflabel/pseudolabel.h"

/* XORed into the seed of the calibration's streams, one per step. */
#define CALIBRATION_SEED 0x63616c6962726174ull /* "calibrat" */

struct rl_margin_calibration {
    rl_bank *bank;           /* the other labeled images of the batch */
    rl_matcher matcher;
    int dim;
    float *features;         /* (nl - 1, D, h, w) those images' features */
    int32_t *labels;         /* (nl - 1, h, w) and labels */
    int32_t *matched;        /* (nl, h, w) the labels each image's pixels matched */
    float *margin;           /* (nl, h, w) and their margins */
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
    c->matched = rl_arena_alloc(a, (size_t)c->nl * hw * sizeof *c->matched);
    c->margin = rl_arena_floats(a, (size_t)c->nl * hw);
    c->right = rl_arena_floats(a, (size_t)c->nl * hw);
    c->wrong = rl_arena_floats(a, (size_t)c->nl * hw);
}

void rl_margin_calibration_free(rl_margin_calibration *c) {
    if (!c) return;
    rl_matcher_free(&c->matcher);
    rl_bank_free(c->bank);
    free(c);
}

/* The other labeled images of the step, image b's references: how many,
 * 0 when none is another sample; with features, their features and labels
 * copied into the calibration's buffers. */
static int gather_others(rl_margin_calibration *c, const rl_trainer *tr, const float *features,
                         int b) {
    size_t hw = c->hw, stride = (size_t)c->dim * hw;
    int others = 0;
    for (int j = c->first; j < c->first + c->nl; j++) {
        if (tr->batch_samples[j] == tr->batch_samples[b]) continue;
        if (features) {
            memcpy(c->features + others * stride, features + j * stride,
                   stride * sizeof *features);
            memcpy(c->labels + others * hw, tr->y + j * hw, hw * sizeof *tr->y);
        }
        others++;
    }
    return others;
}

/* No image with another sample to match against (an epoch boundary can
 * repeat one): +INFINITY, no pseudo-label this step. The bank's draws use a
 * stream of their own, seeded from the step, so that the main bank's stream
 * and the trainer state are those of a run without calibration.
 *
 * Under several ranks (shard.c) every rank fills every image's bank, in
 * order, so that the stream's draws are those of one process, but matches
 * only its share of the images; the labels and margins are gathered, and
 * every rank splits them in the order of one process. */
int rl_margin_calibration_run(rl_margin_calibration *c, rl_trainer *tr, const float *features,
                              float *threshold, rl_error *err) {
    int h = tr->h, w = tr->w, lo, hi;
    size_t hw = c->hw, stride = (size_t)c->dim * hw;
    rl_shard_range(tr, c->nl, &lo, &hi);
    rl_rng rng;
    rl_rng_seed(&rng, tr->cfg.seed ^ CALIBRATION_SEED, (uint64_t)tr->steps_done);
    int rc = RL_OK;
    for (int i = 0; i < c->nl && !rc; i++) {
        int b = c->first + i, others = gather_others(c, tr, features, b);
        if (others == 0) continue;
        rc = rl_bank_add(c->bank, c->features, c->labels, NULL, others, h, w, &rng, err);
        if (rc || i < lo || i >= hi) continue;
        rl_match_out out;
        memset(&out, 0, sizeof out);
        out.label = c->matched + (size_t)i * hw;
        out.margin = c->margin + (size_t)i * hw;
        rc = rl_match(&c->matcher, c->bank, features + b * stride, 1, h, w, &out, err);
    }
    if (tr->ranks > 1) {
        rc = rl_dist_agree(rc, err);
        if (!rc) rc = rl_shard_gather(tr, c->matched, NULL, hw * sizeof *c->matched, c->nl, err);
        if (!rc) rc = rl_shard_gather(tr, c->margin, NULL, hw * sizeof *c->margin, c->nl, err);
    }
    if (rc) return rc;
    int64_t n_right = 0, n_wrong = 0;
    for (int i = 0; i < c->nl; i++) {
        int b = c->first + i;
        if (gather_others(c, tr, NULL, b) == 0) continue; /* not matched */
        const int32_t *truth = tr->y + b * hw, *matched = c->matched + (size_t)i * hw;
        const float *margin = c->margin + (size_t)i * hw;
        for (size_t p = 0; p < hw; p++) {
            if (truth[p] < 0) continue; /* padding */
            if (matched[p] == truth[p]) c->right[n_right++] = margin[p];
            else c->wrong[n_wrong++] = margin[p];
        }
    }
    float t = rl_pseudolabel_margin_for_accuracy(c->right, n_right, c->wrong, n_wrong,
                                                 tr->cfg.semi.margin_accuracy);
    *threshold = isnan(t) ? INFINITY : t;
    return RL_OK;
}
