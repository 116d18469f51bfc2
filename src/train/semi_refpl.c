/* refpl: reference-guided pseudo-labels (Seibold et al., AAAI 2022). The
 * per-pixel features of the labeled half, or of ref_images labeled images
 * drawn apart from it (the paper's "pool of sampled annotated images"),
 * taken after the forward pass (no gradient flows through them; with an
 * EMA teacher, teacher.c, the teacher's features), and their
 * labels become the references of a bank
 * (src/match) that also keeps the last memory_batches - 1 batches; every
 * unlabeled pixel takes its best match's label (bit sets: its whole mask).
 * A pixel is kept where its margin (similarity to the chosen label minus
 * that of any other) reaches the step's threshold (refs.min_margin, or the
 * calibrated one, margin_calibration.c) and, with keep_fraction < 1, is
 * among that share of the batch's highest margins. The bank is the state
 * the state file keeps. */
#include <stdlib.h>
#include <string.h>

#include "margin_calibration.h"
#include "reflabel/dist.h"
#include "reflabel/pseudolabel.h"
#include "semi.h"

/* The bit mask under which the bank skips multi-label pixels (padding):
 * no bit set can equal it, since labels hold at most 16 structures. */
#define IGNORE_MASK UINT64_MAX

typedef struct refpl {
    rl_bank *bank;
    rl_matcher matcher;
    int has_matcher;
    int dim;
    rl_margin_calibration *calib; /* NULL: margin_accuracy 0 */
    float min_margin;             /* the threshold of the current step */
    /* with hypercolumn features: (n, D, h, w), written after each forward
     * pass; NULL for the last decoder map, which the bank and the matcher
     * read in place from the network's activations in one process, and
     * from `gathered` (n, D, h, w) under several ranks (shard.c). */
    float *hypercolumn, *gathered;
    const float *features; /* the step's (n, D, h, w) */
    float *rank_scratch;    /* (nu, h, w) margins being ranked, keep_fraction < 1 */
    uint64_t *ref_masks;    /* (nl, h, w) bit sets: the labeled half for the bank */
    uint64_t *match_masks;  /* (nu, h, w) bit sets: the matched references' masks */
} refpl;

static void refpl_free(void *state) {
    refpl *r = state;
    if (!r) return;
    rl_margin_calibration_free(r->calib);
    if (r->has_matcher) rl_matcher_free(&r->matcher);
    rl_bank_free(r->bank);
    free(r);
}

static int refpl_create(rl_trainer *tr, void **state, rl_error *err) {
    const rl_semi_config *sc = &tr->cfg.semi;
    if (!(sc->margin_accuracy >= 0 && sc->margin_accuracy <= 1))
        return rl_error_set(err, RL_EINVAL, "margin accuracy must be in [0, 1], not %g",
                            sc->margin_accuracy);
    if (!(sc->keep_fraction > 0 && sc->keep_fraction <= 1))
        return rl_error_set(err, RL_EINVAL, "keep fraction must be in (0, 1], not %g",
                            sc->keep_fraction);
    int dim = rl_feature_dim(rl_unet_get_config(tr->net), sc->refs.features);
    if (dim < 1)
        return rl_error_set(err, RL_EINVAL, "unknown refpl feature source %d",
                            (int)sc->refs.features);
    refpl *r = calloc(1, sizeof *r);
    if (!r) return rl_error_set(err, RL_ENOMEM, "out of memory for refpl");
    *state = r;
    r->dim = dim;
    rl_bank_config bc = rl_reference_bank_config(&sc->refs, dim, tr->set->num_classes);
    bc.ignore_label = RL_IGNORE;
    if (tr->enc.multilabel) {
        /* Label ids are the distinct bit sets seen during training. */
        bc.multilabel = 1;
        bc.num_labels = rl_encoding_bank_labels(1, tr->enc.outputs);
        bc.ignore_mask = IGNORE_MASK;
    }
    bc.max_images = tr->ref_count;
    bc.max_image_pixels = tr->h * tr->w;
    bc.memory_batches = sc->memory_batches > 0 ? sc->memory_batches : 1;
    rl_match_config mc = rl_reference_match_config(&sc->refs);
    int rc = rl_bank_create(&r->bank, &bc, err);
    if (rc) return rc;
    rc = rl_matcher_init(&r->matcher, &mc, &bc, err);
    if (rc) return rc;
    r->has_matcher = 1;
    if (sc->margin_accuracy > 0) return rl_margin_calibration_create(&r->calib, tr, &bc, &mc, err);
    return RL_OK;
}

static void refpl_layout(rl_trainer *tr, void *state, rl_arena *a) {
    refpl *r = state;
    const rl_semi_config *sc = &tr->cfg.semi;
    size_t hw = (size_t)tr->h * tr->w;
    r->hypercolumn = sc->refs.features == RL_FEATURES_HYPERCOLUMN
                         ? rl_arena_floats(a, (size_t)tr->n * (size_t)r->dim * hw)
                         : NULL;
    r->gathered = !r->hypercolumn && tr->ranks > 1 && !tr->teacher
                      ? rl_arena_floats(a, (size_t)tr->n * (size_t)r->dim * hw)
                      : NULL;
    r->rank_scratch = sc->keep_fraction < 1 ? rl_arena_floats(a, (size_t)tr->nu * hw) : NULL;
    r->ref_masks = r->match_masks = NULL;
    if (tr->enc.multilabel) {
        r->ref_masks = rl_arena_alloc(a, (size_t)tr->ref_count * hw * sizeof *r->ref_masks);
        r->match_masks = rl_arena_alloc(a, (size_t)tr->nu * hw * sizeof *r->match_masks);
    }
    if (r->calib) rl_margin_calibration_layout(r->calib, a);
}

/* With an EMA teacher, the features of the images [0, drawn) are the
 * teacher's, its whole pass on every rank (teacher.c). */
static int teacher_features(rl_trainer *tr, refpl *r, size_t stride, const char **nonfinite,
                            rl_error *err) {
    if (!r->hypercolumn) {
        r->features = rl_unet_features(tr->teacher).data;
        return RL_OK;
    }
    int rc = rl_unet_extract_features(tr->teacher, RL_FEATURES_HYPERCOLUMN, r->hypercolumn, err);
    if (rc) return rc;
    r->features = r->hypercolumn;
    if (!rl_trainer_all_finite(r->hypercolumn, (size_t)tr->drawn * stride))
        *nonfinite = "the EMA teacher's hypercolumn features are";
    return RL_OK;
}

/* The features of the whole batch (each rank computed its own images',
 * shard.c). A non-finite value in a deeper decoder level need not reach the
 * output (a ReLU computed with fmaxf turns NaN into 0), so the hypercolumn
 * is checked itself, before the bank refuses it. */
static int refpl_after_forward(rl_trainer *tr, void *state, const char **nonfinite,
                               rl_error *err) {
    refpl *r = state;
    size_t stride = (size_t)r->dim * tr->h * tr->w;
    if (tr->teacher) return teacher_features(tr, r, stride, nonfinite, err);
    const float *mine = rl_unet_features(tr->net).data;
    if (r->hypercolumn) {
        int rc = rl_unet_extract_features(tr->net, RL_FEATURES_HYPERCOLUMN,
                                          r->hypercolumn + (size_t)tr->lo * stride, err);
        if (tr->ranks > 1) rc = rl_dist_agree(rc, err);
        if (!rc) rc = rl_shard_gather(tr, r->hypercolumn, NULL, stride * sizeof(float), tr->n, err);
        if (rc) return rc;
        r->features = r->hypercolumn;
        if (!rl_trainer_all_finite(r->hypercolumn, (size_t)tr->n * stride))
            *nonfinite = "the hypercolumn features are";
        return RL_OK;
    }
    r->features = r->gathered ? r->gathered : mine;
    return r->gathered
               ? rl_shard_gather(tr, r->gathered, mine, stride * sizeof(float), tr->n, err)
               : RL_OK;
}

/* The unlabeled images' matches against the bank: labels (bit sets) and
 * margins. Under several ranks each matches its share of the images and
 * gets the others' (shard.c); a pixel's match depends on it and the bank
 * alone, so they are those of one process. */
static int match_queries(rl_trainer *tr, refpl *r, const float *queries, rl_error *err) {
    size_t hw = (size_t)tr->h * tr->w;
    int lo, hi;
    rl_shard_range(tr, tr->nu, &lo, &hi);
    rl_match_out out;
    memset(&out, 0, sizeof out);
    if (r->match_masks) out.mask = r->match_masks + (size_t)lo * hw;
    else out.label = tr->matched + (size_t)lo * hw;
    out.margin = tr->confidence + (size_t)lo * hw;
    int rc = hi > lo ? rl_match(&r->matcher, r->bank, queries + (size_t)lo * r->dim * hw, hi - lo,
                                tr->h, tr->w, &out, err)
                     : RL_OK;
    if (tr->ranks == 1) return rc;
    if ((rc = rl_dist_agree(rc, err))) return rc;
    if (r->match_masks)
        rc = rl_shard_gather(tr, r->match_masks, NULL, hw * sizeof *r->match_masks, tr->nu, err);
    else rc = rl_shard_gather(tr, tr->matched, NULL, hw * sizeof *tr->matched, tr->nu, err);
    if (!rc) rc = rl_shard_gather(tr, tr->confidence, NULL, hw * sizeof *tr->confidence, tr->nu, err);
    return rc;
}

/* The margin must reach min_margin, and be among the keep_fraction highest
 * of the batch's unlabeled pixels, all classes ranked together. (Ranking
 * each class apart keeps a class the matches drifted into as much as any
 * other; on the atlas that collapsed, docs/TRAINING.md.) */
static int refpl_targets(rl_trainer *tr, void *state, rl_train_step_info *info, rl_error *err) {
    refpl *r = state;
    const rl_semi_config *sc = &tr->cfg.semi;
    int h = tr->h, w = tr->w;
    size_t hw = (size_t)h * w, count = (size_t)tr->nu * hw;
    const float *features = r->features;
    r->min_margin = sc->refs.min_margin;
    if (r->calib) { /* classes only (rl_margin_calibration_obstacle) */
        float calibrated;
        int rc = rl_margin_calibration_run(r->calib, tr, features, &calibrated, err);
        if (rc) return rc;
        if (calibrated > r->min_margin) r->min_margin = calibrated;
    }
    const int32_t *labels = tr->y + (size_t)tr->ref_first * hw;
    if (r->ref_masks) {
        for (size_t i = 0; i < (size_t)tr->ref_count * hw; i++)
            r->ref_masks[i] = labels[i] >= 0 ? (uint64_t)labels[i] : IGNORE_MASK;
        labels = NULL;
    }
    const float *references = features + (size_t)tr->ref_first * r->dim * hw;
    int rc = rl_bank_add(r->bank, references, labels, r->ref_masks, tr->ref_count, h, w,
                         &tr->bank_rng, err);
    if (rc) return rc;
    rc = match_queries(tr, r, features + (size_t)tr->nl * r->dim * hw, err);
    if (rc) return rc;
    for (size_t i = 0; r->match_masks && i < count; i++)
        tr->matched[i] = (int32_t)r->match_masks[i];
    rl_semi_keep_confident(tr, r->min_margin);
    if (sc->keep_fraction < 1)
        rl_pseudolabel_keep_fraction(tr->pseudo, tr->confidence, (int64_t)count,
                                     sc->keep_fraction, RL_IGNORE, r->rank_scratch);
    info->pl_min_margin = r->min_margin;
    return RL_OK;
}

static int refpl_save(rl_trainer *tr, void *state, rl_state_list *l, rl_state_part part,
                      rl_error *err) {
    (void)tr;
    refpl *r = state;
    if (part != RL_STATE_MEMORY) return RL_OK;
    rl_bank_state bs;
    int rc = rl_bank_export(r->bank, &bs, err);
    if (rc) return rc;
    rl_state_add_bank(l, &bs);
    return RL_OK;
}

static int refpl_restore(rl_trainer *tr, void *state, const rl_safetensors *st, const char *path,
                         rl_state_part part, int apply, rl_error *err) {
    (void)tr;
    refpl *r = state;
    return part == RL_STATE_MEMORY ? rl_state_restore_bank(r->bank, st, path, apply, err) : RL_OK;
}

static void refpl_describe(const rl_trainer *tr, const void *state, const char **features,
                           int bank[3]) {
    const refpl *r = state;
    const rl_bank_config *bc = rl_bank_get_config(r->bank);
    *features = rl_feature_source_name(tr->cfg.semi.refs.features);
    bank[0] = bc->memory_batches;
    bank[1] = rl_bank_slot_capacity(bc);
    bank[2] = bc->dim;
}

const rl_semi_method rl_semi_refpl = {
    .id = RL_METHOD_REFPL,
    .name = "refpl",
    .teacher_labeled = 1,
    .create = refpl_create,
    .layout = refpl_layout,
    .after_forward = refpl_after_forward,
    .targets = refpl_targets,
    .save = refpl_save,
    .restore = refpl_restore,
    .describe = refpl_describe,
    .free = refpl_free,
};
