/* The training step: sample, augment, forward, loss, backward, clip,
 * update; and for the semi-supervised methods, an unlabeled batch through
 * the same forward pass with its own loss. Every buffer is allocated in
 * rl_trainer_create. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/loss.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/train.h"

/* Random streams, one per purpose, so that changing e.g. augmentation does
 * not change which samples are drawn. */
enum { STREAM_SAMPLING = 1, STREAM_AUGMENT = 2, STREAM_BANK = 3, STREAM_TEACHER = 4 };
/* XORed into the seed of the margin calibration's streams, one per step. */
#define CALIBRATION_SEED 0x63616c6962726174ull /* "calibrat" */
/* Epoch e of pool p (0 labeled, 1 unlabeled) is shuffled by the stream
 * STREAM_EPOCHS + 2 e + p, apart from the streams above. */
#define STREAM_EPOCHS 16u

/* Codes of the unlabeled half of the target map, chosen so that nearest-
 * neighbour augmentation carries them along with the image: a pixel of an
 * unlabeled image is UNLABELED, or HIDDEN(v) when its hidden label v is known
 * (for measuring pseudo-labels only). RL_IGNORE marks padding. */
#define UNLABELED (-2)
#define HIDDEN_BASE (-1000)
#define HIDDEN(v) (HIDDEN_BASE - (v))

/* The labeled or the unlabeled samples, walked in epochs: each epoch visits
 * every member once, in an order shuffled from (seed, pool, epoch). Drawing
 * with replacement instead left one batch in eight of a 2-image labeled set
 * holding a single image, whose classes were then the only references the
 * unlabeled half could match. The order is a function of the position in the
 * walk alone, so a resumed run draws the same samples without saving it. */
typedef struct sample_pool {
    int *members;  /* (size) sample indices, in set order */
    int *order;    /* (size) the members in the order of epoch `epoch` */
    int size;
    int which;     /* 0 labeled, 1 unlabeled */
    int64_t epoch; /* of `order`; -1 before the first draw */
} sample_pool;

struct rl_trainer {
    rl_unet *net;
    rl_train_config cfg;
    const rl_sample_set *set;
    rl_optimizer *opt;
    int nl, nu, n;      /* labeled, unlabeled and total images per step */
    sample_pool labeled, unlabeled;
    int *batch_samples; /* the samples of the current batch, for error messages */
    float *x;           /* (n, C, P_h, P_w) */
    int32_t *y;         /* (n, P_h, P_w) */
    float *dlogits;     /* (n, K, P_h, P_w) */
    void *augment_scratch;
    rl_rng sampling_rng, augment_rng, bank_rng;
    int64_t steps_done;
    /* semi-supervised state (NULL / unused for supervised) */
    int32_t *pseudo;    /* (nu, P_h, P_w) pseudo-labels, RL_IGNORE where none */
    float *rank_scratch; /* (nu, P_h, P_w) margins being ranked, refpl keep_fraction < 1 */
    /* (nu, P_h, P_w) the labels before the confidence threshold (RL_IGNORE
     * on padding): their class shares are what drifts when the loop
     * collapses, whereas the kept pixels lean towards the easy classes by
     * design of the threshold. */
    int32_t *matched;
    int32_t *hidden;    /* (nu, P_h, P_w) hidden labels, RL_IGNORE where unknown */
    float *confidence;  /* (nu, P_h, P_w) margin (refpl) or softmax maximum (predpl) */
    uint8_t *valid;     /* (nu, P_h, P_w) pixel of an unlabeled image, not padding */
    float *teacher_probs; /* (nu, K, P_h, P_w), mean teacher */
    rl_unet *teacher;
    rl_bank bank;
    rl_matcher matcher;
    int has_bank;
    /* refpl margin_accuracy > 0: the labeled half matched against itself,
     * image by image, to calibrate the margin threshold of each step. */
    rl_bank calib_bank;      /* the other labeled images of the batch */
    rl_matcher calib_matcher;
    int has_calib;
    float *calib_features;   /* (nl - 1, D, P_h, P_w) those images' features */
    int32_t *calib_labels;   /* (nl - 1, P_h, P_w) and labels */
    int32_t *calib_matched;  /* (P_h, P_w) the labels one image's pixels matched */
    float *calib_margin;     /* (P_h, P_w) and their margins */
    float *calib_right, *calib_wrong; /* (nl, P_h, P_w) margins, by outcome */
    float min_margin;        /* the threshold of the current step */
    /* refpl with hypercolumn features: (n, D, P_h, P_w), written after each
     * forward pass. NULL for the last decoder map, which the bank and the
     * matcher read in place from the network's activations. */
    float *hypercolumn;
    double *labeled_share, *pl_share, *pl_dice; /* (K) each */
    int64_t *confusion; /* (K, K) pseudo-label vs hidden label, per step */
    /* Batch-norm running statistics and counters as they were before this
     * step's forward pass, to undo it when the batch turns out non-finite. */
    float *norm_stats_before;
    int64_t *counters_before;
    int64_t skipped;    /* batches skipped as non-finite (skip_nonfinite) */
    char skip_reason[RL_ERROR_MSG_MAX];
    /* multi-label sets: S = K - 1 sigmoid outputs, targets from bit sets */
    int structures;         /* S */
    float *targets;         /* (n, S, P_h, P_w) bit c of each label as 0 / 1 */
    uint8_t *target_valid;  /* (n, P_h, P_w) the pixel has a target */
    uint64_t *ref_masks;    /* (nl, P_h, P_w) refpl: the labeled half for the bank */
    uint64_t *match_masks;  /* (nu, P_h, P_w) refpl: the matched references' masks */
};

/* The bit mask under which the bank skips multi-label pixels (padding):
 * no bit set can equal it, since labels hold at most 16 structures. */
#define IGNORE_MASK UINT64_MAX
/* Most distinct bit sets a multi-label refpl bank tells apart (the matcher's
 * scratch grows with it); every combination of up to 8 structures fits. */
#define MULTILABEL_BANK_MASKS 256

const char *rl_method_name(rl_method method) {
    switch (method) {
    case RL_METHOD_SUPERVISED: return "supervised";
    case RL_METHOD_REFPL: return "refpl";
    case RL_METHOD_PREDPL: return "predpl";
    case RL_METHOD_MEANTEACHER: return "meanteacher";
    }
    return "unknown";
}

int rl_method_from_name(const char *name) {
    for (int m = RL_METHOD_SUPERVISED; m <= RL_METHOD_MEANTEACHER; m++)
        if (name && strcmp(name, rl_method_name((rl_method)m)) == 0) return m;
    return -1;
}

rl_train_config rl_train_default_config(int64_t steps, int batch) {
    rl_train_config c;
    memset(&c, 0, sizeof c);
    c.steps = steps;
    c.batch = batch;
    c.optim = rl_optim_default_config(RL_OPTIM_ADAMW);
    c.optim.weight_decay = 1e-4f;
    c.schedule.kind = RL_SCHEDULE_POLY;
    c.schedule.base_lr = 1e-3;
    c.schedule.min_lr = 0;
    c.schedule.power = 0.9;
    c.schedule.warmup_steps = steps / 20;
    c.schedule.total_steps = steps;
    c.clip_norm = 12.0;
    c.dice_weight = 1.0f;
    c.augment = 1;
    c.augment_config = rl_augment_default();
    c.seed = 0;
    rl_semi_config *s = &c.semi;
    s->method = RL_METHOD_SUPERVISED;
    s->unlabeled_batch = 0;
    s->warmup_fraction = 0.3;
    s->ramp_fraction = 0.2;
    s->lambda = 1.0f;
    s->pl_dice_weight = 0.0f;
    /* Proportional, not per-class: a per-class cap makes a rare class as
     * frequent among the references as the background, matches drift towards
     * it and the loop feeds on its own drift; with the per-class cap refpl
     * collapsed on the brain atlas and on the stripes data (docs/TRAINING.md,
     * "Status of the defaults"). */
    s->refs.sampling = RL_SAMPLE_PROPORTIONAL;
    s->refs.per_class_cap = 256;
    s->refs.sample_count = 4096;
    s->refs.class_floor = 32;
    s->refs.features = RL_FEATURES_LAST;
    s->memory_batches = 1;
    s->refs.top_k = 1;
    s->refs.match_mode = RL_MATCH_POOLED;
    s->refs.similarity = RL_SIM_COSINE;
    s->refs.min_margin = 0.0f;
    s->keep_fraction = 1.0;
    /* A margin threshold learned each step from the labeled half, stated as
     * the accuracy those matches must reach. A fixed margin of 0.1 was ahead
     * of supervised training on the brain atlas (5% labeled) but kept 1% of
     * the pixels on other data; with 0.9, refpl was ahead there in each of 3
     * seeds, by 0.024-0.039 (docs/TRAINING.md, "Status of the defaults"). */
    s->margin_accuracy = 0.9;
    s->min_confidence = 0.9f;
    s->ema_decay = 0.99f;
    return c;
}

static int round_up(int v, int m) { return (v + m - 1) / m * m; }

void rl_train_auto_patch(const rl_sample_set *set, int depth, int max_edge, int *patch_h,
                         int *patch_w) {
    int h = 1, w = 1, m = 1 << depth;
    for (int i = 0; i < set->count; i++) {
        if (set->samples[i].h > h) h = set->samples[i].h;
        if (set->samples[i].w > w) w = set->samples[i].w;
    }
    int cap = max_edge / m * m;
    if (cap < m) cap = m;
    *patch_h = round_up(h, m) < cap ? round_up(h, m) : cap;
    *patch_w = round_up(w, m) < cap ? round_up(w, m) : cap;
}

void rl_trainer_free(rl_trainer *tr) {
    if (!tr) return;
    rl_optim_free(tr->opt);
    free(tr->labeled.members);
    free(tr->labeled.order);
    free(tr->unlabeled.members);
    free(tr->unlabeled.order);
    free(tr->batch_samples);
    free(tr->x);
    free(tr->y);
    free(tr->dlogits);
    free(tr->augment_scratch);
    free(tr->pseudo);
    free(tr->matched);
    free(tr->hidden);
    free(tr->confidence);
    free(tr->rank_scratch);
    free(tr->valid);
    free(tr->teacher_probs);
    free(tr->hypercolumn);
    rl_unet_free(tr->teacher);
    if (tr->has_bank) {
        rl_matcher_free(&tr->matcher);
        rl_bank_free(&tr->bank);
    }
    if (tr->has_calib) {
        rl_matcher_free(&tr->calib_matcher);
        rl_bank_free(&tr->calib_bank);
    }
    free(tr->calib_features);
    free(tr->calib_labels);
    free(tr->calib_matched);
    free(tr->calib_margin);
    free(tr->calib_right);
    free(tr->calib_wrong);
    free(tr->labeled_share);
    free(tr->pl_share);
    free(tr->pl_dice);
    free(tr->confusion);
    free(tr->norm_stats_before);
    free(tr->counters_before);
    free(tr->targets);
    free(tr->target_valid);
    free(tr->ref_masks);
    free(tr->match_masks);
    free(tr);
}

/* Multi-label sets: share[c] (c >= 1) is the fraction of labeled pixels that
 * structure c covers, share[0] the fraction that no structure covers. These
 * need not sum to 1, since structures overlap. */
static void compute_labeled_coverage(const rl_sample_set *set, double *share) {
    int k = set->num_classes;
    double total = 0;
    for (int c = 0; c < k; c++) share[c] = 0;
    for (int i = 0; i < set->count; i++) {
        const rl_sample *s = &set->samples[i];
        if (!s->labels) continue;
        for (size_t p = 0; p < (size_t)s->h * s->w; p++) {
            int32_t v = s->labels[p];
            if (v < 0) continue;
            total += 1;
            share[0] += v == 0;
            for (int c = 1; c < k; c++) share[c] += (v >> (c - 1)) & 1;
        }
    }
    for (int c = 0; c < k; c++) share[c] = total > 0 ? share[c] / total : 0;
}

/* Class shares over every labeled pixel of the set: the reference against
 * which pseudo-label drift (collapse) is measured. */
static void compute_labeled_share(const rl_sample_set *set, double *share) {
    int k = set->num_classes;
    double total = 0;
    if (set->multilabel) {
        compute_labeled_coverage(set, share);
        return;
    }
    for (int c = 0; c < k; c++) share[c] = 0;
    for (int i = 0; i < set->count; i++) {
        const rl_sample *s = &set->samples[i];
        if (!s->labels) continue;
        for (size_t p = 0; p < (size_t)s->h * s->w; p++)
            if (s->labels[p] >= 0 && s->labels[p] < k) {
                share[s->labels[p]] += 1;
                total += 1;
            }
    }
    for (int c = 0; c < k; c++) share[c] = total > 0 ? share[c] / total : 0;
}

const char *rl_margin_calibration_obstacle(const rl_sample_set *set, int batch) {
    if (set->multilabel) return "the labels are multi-label bit sets";
    if (batch < 2) return "it needs 2 labeled images per step, and the batch holds 1";
    if (set->labeled_count < 2) return "it needs 2 labeled samples, and there is 1";
    return NULL;
}

/* refpl --margin-accuracy: a second bank and matcher, configured as the
 * main ones but for the nl - 1 other labeled images and with no memory (a
 * remembered batch may hold the very image being matched). */
static int create_calibration(rl_trainer *tr, const rl_bank_config *bank_cfg,
                              const rl_match_config *match_cfg, rl_error *err) {
    const char *obstacle = rl_margin_calibration_obstacle(tr->set, tr->nl);
    if (obstacle)
        return rl_error_set(err, RL_EINVAL, "margin accuracy cannot be calibrated: %s", obstacle);
    size_t hw = (size_t)tr->cfg.patch_h * tr->cfg.patch_w, dim = (size_t)bank_cfg->dim;
    size_t others = (size_t)tr->nl - 1;
    tr->calib_features = malloc(others * dim * hw * sizeof *tr->calib_features);
    tr->calib_labels = malloc(others * hw * sizeof *tr->calib_labels);
    tr->calib_matched = malloc(hw * sizeof *tr->calib_matched);
    tr->calib_margin = malloc(hw * sizeof *tr->calib_margin);
    tr->calib_right = malloc((size_t)tr->nl * hw * sizeof *tr->calib_right);
    tr->calib_wrong = malloc((size_t)tr->nl * hw * sizeof *tr->calib_wrong);
    if (!tr->calib_features || !tr->calib_labels || !tr->calib_matched || !tr->calib_margin ||
        !tr->calib_right || !tr->calib_wrong)
        return rl_error_set(err, RL_ENOMEM, "out of memory for the margin calibration");
    rl_bank_config bc = *bank_cfg;
    bc.max_images = (int)others;
    bc.memory_batches = 1;
    int rc = rl_bank_init(&tr->calib_bank, &bc, err);
    if (rc) return rc;
    rc = rl_matcher_init(&tr->calib_matcher, match_cfg, &bc, err);
    if (rc) {
        rl_bank_free(&tr->calib_bank);
        return rc;
    }
    tr->has_calib = 1;
    return RL_OK;
}

static int create_semi(rl_trainer *tr, rl_error *err) {
    const rl_train_config *cfg = &tr->cfg;
    const rl_semi_config *sc = &cfg->semi;
    const rl_sample_set *set = tr->set;
    size_t hw = (size_t)cfg->patch_h * cfg->patch_w, k = (size_t)set->num_classes;
    if (tr->unlabeled.size == 0)
        return rl_error_set(err, RL_EINVAL, "method %s needs unlabeled images; all %d are labeled",
                            rl_method_name(sc->method), set->count);
    if (!(sc->lambda >= 0) || !(sc->warmup_fraction >= 0) || !(sc->ramp_fraction >= 0) ||
        sc->warmup_fraction + sc->ramp_fraction > 1.0)
        return rl_error_set(err, RL_EINVAL,
                            "lambda, warm-up and ramp must be >= 0, warm-up + ramp <= 1");
    tr->pseudo = malloc((size_t)tr->nu * hw * sizeof *tr->pseudo);
    tr->matched = malloc((size_t)tr->nu * hw * sizeof *tr->matched);
    tr->hidden = malloc((size_t)tr->nu * hw * sizeof *tr->hidden);
    tr->confidence = malloc((size_t)tr->nu * hw * sizeof *tr->confidence);
    tr->valid = malloc((size_t)tr->nu * hw);
    tr->labeled_share = calloc(k, sizeof(double));
    tr->pl_share = calloc(k, sizeof(double));
    tr->pl_dice = calloc(k, sizeof(double));
    /* (K, K), or (K, 3) per-structure counts for multi-label data */
    tr->confusion = calloc(k * (k > 3 ? k : 3), sizeof(int64_t));
    if (!tr->pseudo || !tr->matched || !tr->hidden || !tr->confidence || !tr->valid ||
        !tr->labeled_share || !tr->pl_share || !tr->pl_dice || !tr->confusion)
        return rl_error_set(err, RL_ENOMEM, "out of memory for the unlabeled batch");
    compute_labeled_share(set, tr->labeled_share);
    if (sc->method == RL_METHOD_REFPL) {
        if (!(sc->margin_accuracy >= 0 && sc->margin_accuracy <= 1))
            return rl_error_set(err, RL_EINVAL, "margin accuracy must be in [0, 1], not %g",
                                sc->margin_accuracy);
        if (!(sc->keep_fraction > 0 && sc->keep_fraction <= 1))
            return rl_error_set(err, RL_EINVAL, "keep fraction must be in (0, 1], not %g",
                                sc->keep_fraction);
        if (sc->keep_fraction < 1) {
            tr->rank_scratch = malloc((size_t)tr->nu * hw * sizeof *tr->rank_scratch);
            if (!tr->rank_scratch)
                return rl_error_set(err, RL_ENOMEM, "out of memory for the unlabeled batch");
        }
        int dim = rl_feature_dim(rl_unet_get_config(tr->net), sc->refs.features);
        if (dim < 1)
            return rl_error_set(err, RL_EINVAL, "unknown refpl feature source %d",
                                (int)sc->refs.features);
        if (sc->refs.features == RL_FEATURES_HYPERCOLUMN) {
            tr->hypercolumn = malloc((size_t)tr->n * (size_t)dim * hw * sizeof *tr->hypercolumn);
            if (!tr->hypercolumn)
                return rl_error_set(err, RL_ENOMEM, "out of memory for the hypercolumn features");
        }
        rl_bank_config bc = rl_reference_bank_config(&sc->refs, dim, set->num_classes);
        bc.ignore_label = RL_IGNORE;
        if (set->multilabel) {
            /* Label ids are the distinct bit sets seen during training. */
            bc.multilabel = 1;
            bc.num_labels = tr->structures <= 8 ? 1 << tr->structures : MULTILABEL_BANK_MASKS;
            bc.ignore_mask = IGNORE_MASK;
        }
        bc.max_images = tr->nl;
        bc.max_image_pixels = (int)hw;
        bc.memory_batches = sc->memory_batches > 0 ? sc->memory_batches : 1;
        rl_match_config mc = rl_reference_match_config(&sc->refs);
        int rc = rl_bank_init(&tr->bank, &bc, err);
        if (rc) return rc;
        rc = rl_matcher_init(&tr->matcher, &mc, &bc, err);
        if (rc) {
            rl_bank_free(&tr->bank);
            return rc;
        }
        tr->has_bank = 1;
        if (sc->margin_accuracy > 0) {
            rc = create_calibration(tr, &bc, &mc, err);
            if (rc) return rc;
        }
    } else if (sc->method == RL_METHOD_MEANTEACHER) {
        if (!(sc->ema_decay >= 0 && sc->ema_decay < 1))
            return rl_error_set(err, RL_EINVAL, "EMA decay must be in [0, 1)");
        tr->teacher_probs = malloc((size_t)tr->nu * k * hw * sizeof *tr->teacher_probs);
        if (!tr->teacher_probs) return rl_error_set(err, RL_ENOMEM, "out of memory for the teacher");
        int rc = rl_unet_create(&tr->teacher, rl_unet_get_config(tr->net), cfg->seed, err);
        if (!rc) rc = rl_unet_plan(tr->teacher, tr->nu, cfg->patch_h, cfg->patch_w, 0, err);
        if (rc) return rc;
        /* The teacher starts as a copy of the student, buffers included. */
        int count;
        const rl_unet_tensor *t = rl_unet_tensors(tr->net, &count);
        for (int i = 0; i < count; i++) {
            size_t bytes = t[i].numel * (t[i].kind == RL_UNET_COUNTER ? sizeof(int64_t) : sizeof(float));
            memcpy(rl_unet_tensor_data(tr->teacher, &t[i]), rl_unet_tensor_data(tr->net, &t[i]), bytes);
        }
    } else if (sc->method == RL_METHOD_PREDPL) {
        if (!(sc->min_confidence >= 0 && sc->min_confidence <= 1))
            return rl_error_set(err, RL_EINVAL, "the confidence threshold must be in [0, 1]");
    }
    return RL_OK;
}

/* Floats of batch-norm running statistics and int64 counters in net. */
static void count_norm_state(rl_unet *net, size_t *stats, size_t *counters) {
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(net, &count);
    for (int i = 0; i < count; i++) {
        if (t[i].kind == RL_UNET_BUFFER) *stats += t[i].numel;
        if (t[i].kind == RL_UNET_COUNTER) *counters += t[i].numel;
    }
}

/* Copies the batch-norm state out of the network (save != 0) or back in. */
static void copy_norm_state(rl_trainer *tr, int save) {
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(tr->net, &count);
    size_t stats = 0, counters = 0;
    for (int i = 0; i < count; i++) {
        if (t[i].kind == RL_UNET_PARAM) continue;
        int is_counter = t[i].kind == RL_UNET_COUNTER;
        void *kept = is_counter ? (void *)(tr->counters_before + counters)
                                : (void *)(tr->norm_stats_before + stats);
        size_t bytes = t[i].numel * (is_counter ? sizeof(int64_t) : sizeof(float));
        void *live = rl_unet_tensor_data(tr->net, &t[i]);
        if (save) memcpy(kept, live, bytes);
        else memcpy(live, kept, bytes);
        if (is_counter) counters += t[i].numel;
        else stats += t[i].numel;
    }
}

/* Buffers of the sigmoid targets. Mean teacher is refused: its consistency
 * loss compares softmax distributions, which multi-label outputs are not. */
static int create_multilabel(rl_trainer *tr, rl_error *err) {
    const rl_sample_set *set = tr->set;
    size_t hw = (size_t)tr->cfg.patch_h * tr->cfg.patch_w;
    tr->structures = set->num_classes - 1;
    if (tr->cfg.semi.method == RL_METHOD_MEANTEACHER)
        return rl_error_set(err, RL_EUNSUPPORTED,
                            "method meanteacher does not support multi-label data (use refpl, "
                            "predpl or supervised)");
    tr->targets = malloc((size_t)tr->n * tr->structures * hw * sizeof *tr->targets);
    tr->target_valid = malloc((size_t)tr->n * hw);
    if (tr->cfg.semi.method == RL_METHOD_REFPL) {
        tr->ref_masks = malloc((size_t)tr->nl * hw * sizeof *tr->ref_masks);
        tr->match_masks = malloc((size_t)tr->nu * hw * sizeof *tr->match_masks);
        if (!tr->ref_masks || !tr->match_masks)
            return rl_error_set(err, RL_ENOMEM, "out of memory for the reference masks");
    }
    if (!tr->targets || !tr->target_valid)
        return rl_error_set(err, RL_ENOMEM, "out of memory for the multi-label targets");
    return RL_OK;
}

int rl_trainer_create(rl_trainer **out, rl_unet *net, const rl_train_config *cfg,
                      const rl_sample_set *set, rl_error *err) {
    *out = NULL;
    const rl_unet_config *nc = rl_unet_get_config(net);
    int m = 1 << nc->depth;
    int semi = cfg->semi.method != RL_METHOD_SUPERVISED;
    if (nc->in_channels != set->channels || nc->num_classes != rl_sample_set_outputs(set))
        return rl_error_set(err, RL_EINVAL,
                            "network has %d input channels and %d outputs, data has %d and %d%s",
                            nc->in_channels, nc->num_classes, set->channels,
                            rl_sample_set_outputs(set),
                            set->multilabel ? " (one per structure, multi-label)" : "");
    if (cfg->batch < 1 || cfg->steps < 1 || cfg->semi.unlabeled_batch < 0)
        return rl_error_set(err, RL_EINVAL, "steps and batch must be positive");
    if (cfg->semi.method < RL_METHOD_SUPERVISED || cfg->semi.method > RL_METHOD_MEANTEACHER)
        return rl_error_set(err, RL_EINVAL, "unknown training method %d", (int)cfg->semi.method);
    if (cfg->patch_h <= 0 || cfg->patch_w <= 0 || cfg->patch_h % m || cfg->patch_w % m)
        return rl_error_set(err, RL_EINVAL, "patch %dx%d is not a multiple of %d (2^depth)",
                            cfg->patch_h, cfg->patch_w, m);
    if (set->labeled_count == 0)
        return rl_error_set(err, RL_EINVAL, "no labeled training slices");
    if (cfg->augment) {
        int rc = rl_augment_check(&cfg->augment_config, err);
        if (rc) return rc;
    }
    rl_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return rl_error_set(err, RL_ENOMEM, "out of memory");
    tr->net = net;
    tr->cfg = *cfg;
    tr->cfg.schedule.total_steps = cfg->steps;
    tr->set = set;
    tr->nl = cfg->batch;
    tr->nu = semi ? (cfg->semi.unlabeled_batch ? cfg->semi.unlabeled_batch : cfg->batch) : 0;
    tr->n = tr->nl + tr->nu;
    size_t n = (size_t)tr->n, hw = (size_t)cfg->patch_h * (size_t)cfg->patch_w;
    size_t nparams = rl_unet_param_count(net);
    sample_pool *pools[2] = {&tr->labeled, &tr->unlabeled};
    int pools_ok = 1;
    for (int p = 0; p < 2; p++) {
        pools[p]->members = malloc((size_t)set->count * sizeof *pools[p]->members);
        pools[p]->order = malloc((size_t)set->count * sizeof *pools[p]->order);
        pools[p]->which = p;
        pools[p]->epoch = -1;
        pools_ok = pools_ok && pools[p]->members && pools[p]->order;
    }
    tr->batch_samples = malloc(n * sizeof *tr->batch_samples);
    tr->x = malloc(n * (size_t)set->channels * hw * sizeof *tr->x);
    tr->y = malloc(n * hw * sizeof *tr->y);
    tr->dlogits = malloc(n * (size_t)set->num_classes * hw * sizeof *tr->dlogits);
    tr->augment_scratch = malloc(rl_augment_scratch_bytes(cfg->patch_h, cfg->patch_w));
    size_t stats = 0, counters = 0;
    count_norm_state(net, &stats, &counters);
    tr->norm_stats_before = malloc((stats + 1) * sizeof *tr->norm_stats_before);
    tr->counters_before = malloc((counters + 1) * sizeof *tr->counters_before);
    if (!pools_ok || !tr->batch_samples || !tr->x || !tr->y ||
        !tr->dlogits || !tr->augment_scratch || !tr->norm_stats_before || !tr->counters_before) {
        rl_trainer_free(tr);
        return rl_error_set(err, RL_ENOMEM, "out of memory for the training buffers");
    }
    for (int i = 0; i < set->count; i++) {
        sample_pool *pool = set->samples[i].labels ? &tr->labeled : &tr->unlabeled;
        pool->members[pool->size++] = i;
    }

    rl_optim_span *spans = NULL;
    int span_count = 0;
    int rc = rl_optim_spans_from_unet(net, &spans, &span_count, err);
    if (!rc) rc = rl_optim_create(&tr->opt, &cfg->optim, nparams, spans, span_count, err);
    free(spans);
    if (!rc) rc = rl_unet_plan(net, tr->n, cfg->patch_h, cfg->patch_w, 1, err);
    if (!rc && set->multilabel) rc = create_multilabel(tr, err);
    if (!rc && semi) rc = create_semi(tr, err);
    if (rc) {
        rl_trainer_free(tr);
        return rc;
    }
    rl_rng_seed(&tr->sampling_rng, cfg->seed, STREAM_SAMPLING);
    rl_rng_seed(&tr->augment_rng, cfg->seed, STREAM_AUGMENT);
    rl_rng_seed(&tr->bank_rng, cfg->seed, STREAM_BANK);
    *out = tr;
    return RL_OK;
}

int64_t rl_trainer_steps_done(const rl_trainer *tr) { return tr->steps_done; }

void rl_trainer_last_batch(const rl_trainer *tr, rl_trainer_batch *out) {
    out->labeled = tr->nl;
    out->unlabeled = tr->nu;
    out->channels = tr->set->channels;
    out->h = tr->cfg.patch_h;
    out->w = tr->cfg.patch_w;
    out->x = tr->x;
    out->labels = tr->y;
    out->pseudo = tr->pseudo;
}

/* Copies a sample into a (C, ph, pw) patch at a random placement: a larger
 * sample is cropped at a random offset, a smaller one lands at a random
 * offset inside the patch, whose rest is image 0 (the normalised mean) and
 * label RL_IGNORE (no supervision from padding). An unlabeled sample's
 * pixels get the UNLABELED / HIDDEN(v) codes. */
static void place_in_patch(const rl_sample *s, int channels, int ph, int pw, rl_rng *rng,
                           float *x, int32_t *y) {
    int dy = ph - s->h, dx = pw - s->w; /* > 0: pad, < 0: crop */
    int oy = dy == 0 ? 0 : (int)rl_rng_below(rng, (uint32_t)abs(dy) + 1);
    int ox = dx == 0 ? 0 : (int)rl_rng_below(rng, (uint32_t)abs(dx) + 1);
    for (int c = 0; c < channels; c++) {
        const float *src = s->image + (size_t)c * s->h * s->w;
        float *dst = x + (size_t)c * ph * pw;
        for (int py = 0; py < ph; py++) {
            int sy = dy >= 0 ? py - oy : py + oy;
            for (int px = 0; px < pw; px++) {
                int sx = dx >= 0 ? px - ox : px + ox;
                int inside = sy >= 0 && sy < s->h && sx >= 0 && sx < s->w;
                size_t at = (size_t)sy * s->w + sx;
                dst[(size_t)py * pw + px] = inside ? src[at] : 0.0f;
                if (c > 0) continue;
                int32_t v = RL_IGNORE;
                if (inside && s->labels) v = s->labels[at];
                else if (inside && s->hidden_labels && s->hidden_labels[at] >= 0)
                    v = HIDDEN(s->hidden_labels[at]);
                else if (inside) v = UNLABELED;
                y[(size_t)py * pw + px] = v;
            }
        }
    }
}

/* "step N: <what> not finite (batch: case/slice ...)"; what ends in "is" or
 * "are". */
static int nonfinite_error(const rl_trainer *tr, const char *what, rl_error *err) {
    char cases[RL_ERROR_MSG_MAX / 2];
    size_t len = 0;
    cases[0] = '\0';
    for (int b = 0; b < tr->n && len + 2 < sizeof cases; b++) {
        const rl_sample *s = &tr->set->samples[tr->batch_samples[b]];
        int n = snprintf(cases + len, sizeof cases - len, "%s%s/%d", b ? " " : "",
                         tr->set->case_ids[s->case_index], s->slice_index);
        if (n < 0) break;
        len += (size_t)n;
    }
    return rl_error_set(err, RL_ENONFINITE, "step %lld: %s not finite (batch: %s)",
                        (long long)tr->steps_done + 1, what, cases);
}

/* The sample at `position` of the pool's walk (pool->size > 0). */
static int pool_draw(sample_pool *pool, uint64_t seed, int64_t position) {
    int64_t epoch = position / pool->size;
    if (epoch != pool->epoch) {
        rl_rng rng;
        rl_rng_seed(&rng, seed, STREAM_EPOCHS + 2u * (uint64_t)epoch + (uint64_t)pool->which);
        memcpy(pool->order, pool->members, (size_t)pool->size * sizeof *pool->order);
        rl_rng_shuffle(&rng, pool->order, pool->size);
        pool->epoch = epoch;
    }
    return pool->order[position % pool->size];
}

static int fill_batch(rl_trainer *tr, rl_error *err) {
    const rl_train_config *cfg = &tr->cfg;
    const rl_sample_set *set = tr->set;
    int ph = cfg->patch_h, pw = cfg->patch_w;
    size_t hw = (size_t)ph * pw;
    for (int b = 0; b < tr->n; b++) {
        int idx = b < tr->nl
                      ? pool_draw(&tr->labeled, cfg->seed, tr->steps_done * tr->nl + b)
                      : pool_draw(&tr->unlabeled, cfg->seed, tr->steps_done * tr->nu + b - tr->nl);
        tr->batch_samples[b] = idx;
        float *x = tr->x + (size_t)b * set->channels * hw;
        int32_t *y = tr->y + (size_t)b * hw;
        place_in_patch(&set->samples[idx], set->channels, ph, pw, &tr->sampling_rng, x, y);
        if (cfg->augment) {
            rl_augment_config aug = cfg->augment_config;
            aug.label_outside = RL_IGNORE;
            int rc = rl_augment_apply(&aug, &tr->augment_rng, x, set->channels, ph, pw, y,
                                      NULL, 0, tr->augment_scratch, err);
            if (rc) return rc;
        }
    }
    return RL_OK;
}

/* lambda(t): 0 during the warm-up, then a linear ramp to lambda. */
static double unlabeled_weight(const rl_trainer *tr) {
    const rl_semi_config *sc = &tr->cfg.semi;
    double t = (double)tr->steps_done / (double)tr->cfg.steps;
    if (t < sc->warmup_fraction) return 0.0;
    if (sc->ramp_fraction <= 0) return sc->lambda;
    double r = (t - sc->warmup_fraction) / sc->ramp_fraction;
    return sc->lambda * (r < 1.0 ? r : 1.0);
}

/* Splits the unlabeled targets into valid pixels and hidden labels. */
static void decode_unlabeled(rl_trainer *tr, size_t count) {
    const int32_t *y = tr->y + (size_t)tr->nl * tr->cfg.patch_h * tr->cfg.patch_w;
    for (size_t i = 0; i < count; i++) {
        tr->valid[i] = y[i] == UNLABELED || y[i] <= HIDDEN_BASE;
        tr->hidden[i] = y[i] <= HIDDEN_BASE ? HIDDEN_BASE - y[i] : RL_IGNORE;
    }
}

/* pseudo = matched where the pixel is an unlabeled image's and its
 * confidence reaches the threshold, RL_IGNORE elsewhere; matched is set to
 * RL_IGNORE on padding. */
static void keep_confident(rl_trainer *tr, size_t count, float threshold) {
    for (size_t i = 0; i < count; i++) {
        if (!tr->valid[i]) tr->matched[i] = RL_IGNORE;
        tr->pseudo[i] = tr->valid[i] && tr->confidence[i] >= threshold ? tr->matched[i] : RL_IGNORE;
    }
}

/* refpl's two thresholds: the margin must reach min_margin, and be among the
 * keep_fraction highest of the batch's unlabeled pixels, all classes ranked
 * together. (Ranking each class apart keeps a class the matches drifted into
 * as much as any other; on the atlas that collapsed, docs/TRAINING.md.) */
static void keep_most_confident(rl_trainer *tr, size_t count) {
    const rl_semi_config *sc = &tr->cfg.semi;
    keep_confident(tr, count, tr->min_margin);
    if (sc->keep_fraction < 1)
        rl_pseudolabel_keep_fraction(tr->pseudo, tr->confidence, (int64_t)count,
                                     sc->keep_fraction, RL_IGNORE, tr->rank_scratch);
}

/* refpl --margin-accuracy: the smallest margin at which the labeled half's
 * matches among themselves reach the target accuracy. Each labeled image is
 * matched against the batch's labeled images of other samples (a copy of
 * the same slice, augmented apart, would match it too well); its pixels'
 * margins are split by whether the match was right. A fixed threshold
 * means different things for different networks and data (0.1 keeps a third
 * of the atlas's pixels and 1% of the stripes', docs/TRAINING.md); an
 * accuracy does not. No image with another sample to match against (an
 * epoch boundary can repeat one): +INFINITY, no pseudo-label this step.
 * The bank's draws use a stream of their own, seeded from the step, so that
 * the main bank's stream and the trainer state are those of a run without
 * calibration. */
static int calibrate_min_margin(rl_trainer *tr, const float *features, float *threshold,
                                rl_error *err) {
    int h = tr->cfg.patch_h, w = tr->cfg.patch_w;
    size_t hw = (size_t)h * w, stride = (size_t)tr->calib_bank.cfg.dim * hw;
    int64_t n_right = 0, n_wrong = 0;
    rl_rng rng;
    rl_rng_seed(&rng, tr->cfg.seed ^ CALIBRATION_SEED, (uint64_t)tr->steps_done);
    for (int b = 0; b < tr->nl; b++) {
        int others = 0;
        for (int j = 0; j < tr->nl; j++) {
            if (tr->batch_samples[j] == tr->batch_samples[b]) continue;
            memcpy(tr->calib_features + others * stride, features + j * stride,
                   stride * sizeof *features);
            memcpy(tr->calib_labels + others * hw, tr->y + j * hw, hw * sizeof *tr->y);
            others++;
        }
        if (others == 0) continue;
        int rc = rl_bank_add(&tr->calib_bank, tr->calib_features, tr->calib_labels, NULL, others,
                             h, w, &rng, err);
        if (rc) return rc;
        rl_match_out out;
        memset(&out, 0, sizeof out);
        out.label = tr->calib_matched;
        out.margin = tr->calib_margin;
        rc = rl_match(&tr->calib_matcher, &tr->calib_bank, features + b * stride, 1, h, w, &out,
                      err);
        if (rc) return rc;
        const int32_t *truth = tr->y + b * hw;
        for (size_t i = 0; i < hw; i++) {
            if (truth[i] < 0) continue; /* padding */
            if (tr->calib_matched[i] == truth[i]) tr->calib_right[n_right++] = tr->calib_margin[i];
            else tr->calib_wrong[n_wrong++] = tr->calib_margin[i];
        }
    }
    float t = rl_pseudolabel_margin_for_accuracy(tr->calib_right, n_right, tr->calib_wrong,
                                                 n_wrong, tr->cfg.semi.margin_accuracy);
    *threshold = isnan(t) ? INFINITY : t;
    return RL_OK;
}

/* refpl: the labeled half's features (n, D, P_h, P_w) and labels become the
 * references, every unlabeled pixel takes its best match's label; pixels
 * whose margin is below the threshold are ignored. */
static int refpl_labels(rl_trainer *tr, size_t count, rl_error *err) {
    int h = tr->cfg.patch_h, w = tr->cfg.patch_w, dim = tr->bank.cfg.dim;
    const float *features = tr->hypercolumn ? tr->hypercolumn : rl_unet_features(tr->net).data;
    tr->min_margin = tr->cfg.semi.refs.min_margin;
    if (tr->has_calib) {
        float calibrated;
        int rc = calibrate_min_margin(tr, features, &calibrated, err);
        if (rc) return rc;
        if (calibrated > tr->min_margin) tr->min_margin = calibrated;
    }
    int rc = rl_bank_add(&tr->bank, features, tr->y, NULL, tr->nl, h, w, &tr->bank_rng, err);
    if (rc) return rc;
    rl_match_out out;
    memset(&out, 0, sizeof out);
    out.label = tr->matched;
    out.margin = tr->confidence;
    const float *queries = features + (size_t)tr->nl * dim * h * w;
    rc = rl_match(&tr->matcher, &tr->bank, queries, tr->nu, h, w, &out, err);
    if (rc) return rc;
    keep_most_confident(tr, count);
    return RL_OK;
}

/* predpl: the network's own argmax on the unlabeled half, kept where its
 * softmax probability reaches the threshold. */
static void predpl_labels(rl_trainer *tr, size_t count) {
    int k = tr->set->num_classes;
    size_t hw = (size_t)tr->cfg.patch_h * tr->cfg.patch_w;
    const float *logits = rl_unet_logits(tr->net).data + (size_t)tr->nl * k * hw;
    for (size_t i = 0; i < count; i++) {
        const float *z = logits + (i / hw) * k * hw + i % hw;
        int best = 0;
        for (int c = 1; c < k; c++)
            if (z[(size_t)c * hw] > z[(size_t)best * hw]) best = c;
        double sum = 0;
        for (int c = 0; c < k; c++) sum += exp((double)z[(size_t)c * hw] - z[(size_t)best * hw]);
        tr->confidence[i] = (float)(1.0 / sum);
        tr->matched[i] = best;
    }
    keep_confident(tr, count, tr->cfg.semi.min_confidence);
}

/* The step's pseudo-label summary into info, from the counts of either
 * kind of labels (classes or bit sets): kept share, accuracy against the
 * hidden labels, drift (total variation) of the class shares before the
 * threshold. */
static void report_pl_stats(rl_trainer *tr, rl_train_step_info *info, int64_t valid,
                            int64_t kept, int64_t known, int64_t correct, double drift) {
    info->pl_kept = valid ? (double)kept / (double)valid : 0;
    info->pl_accuracy = known ? (double)correct / (double)known : NAN;
    info->pl_drift = valid ? 0.5 * drift : NAN;
    info->pl_dice = tr->pl_dice;
    info->pl_share = tr->pl_share;
    info->labeled_share = tr->labeled_share;
}

/* Pseudo-label statistics of this step: kept share; class shares of the
 * labels before the threshold (matched) and their drift from the labeled
 * shares; accuracy / Dice of the kept ones against hidden labels. */
static void pseudo_label_stats(rl_trainer *tr, size_t count, rl_train_step_info *info) {
    int k = tr->set->num_classes;
    int64_t valid = 0, kept = 0, known = 0, correct = 0;
    memset(tr->confusion, 0, (size_t)k * k * sizeof *tr->confusion);
    for (int c = 0; c < k; c++) tr->pl_share[c] = 0;
    for (size_t i = 0; i < count; i++) {
        if (!tr->valid[i]) continue;
        valid++;
        if (tr->matched[i] >= 0 && tr->matched[i] < k) tr->pl_share[tr->matched[i]] += 1;
        int p = tr->pseudo[i];
        if (p < 0) continue;
        kept++;
        if (tr->hidden[i] >= 0 && tr->hidden[i] < k) {
            known++;
            correct += p == tr->hidden[i];
            tr->confusion[(size_t)tr->hidden[i] * k + p]++;
        }
    }
    double drift = 0;
    for (int c = 0; c < k; c++) {
        tr->pl_share[c] = valid ? tr->pl_share[c] / (double)valid : 0;
        drift += fabs(tr->pl_share[c] - tr->labeled_share[c]);
    }
    for (int c = 0; c < k; c++) {
        int64_t tp = tr->confusion[(size_t)c * k + c], gt = 0, pr = 0;
        for (int j = 0; j < k; j++) {
            gt += tr->confusion[(size_t)c * k + j];
            pr += tr->confusion[(size_t)j * k + c];
        }
        tr->pl_dice[c] = known == 0 ? NAN : gt + pr == 0 ? 1.0 : 2.0 * (double)tp / (double)(gt + pr);
    }
    report_pl_stats(tr, info, valid, kept, known, correct, drift);
}

/* The unlabeled half's loss, accumulated into dlogits with weight lambda. */
static int unlabeled_loss(rl_trainer *tr, double lambda, rl_train_step_info *info,
                          rl_error *err) {
    const rl_semi_config *sc = &tr->cfg.semi;
    int k = tr->set->num_classes, nu = tr->nu;
    int hw = tr->cfg.patch_h * tr->cfg.patch_w;
    size_t count = (size_t)nu * hw, offset = (size_t)tr->nl * k * hw;
    const float *logits = rl_unet_logits(tr->net).data + offset;
    float *dlogits = lambda > 0 ? tr->dlogits + offset : NULL;
    decode_unlabeled(tr, count);
    if (sc->method == RL_METHOD_MEANTEACHER) {
        const float *xu = tr->x + (size_t)tr->nl * tr->set->channels * hw;
        int rc = rl_unet_forward(tr->teacher, xu, 0, err);
        if (rc) return rc;
        rl_softmax(tr->teacher_probs, rl_unet_logits(tr->teacher).data, nu, k, hw);
        info->unsup_loss = rl_softmax_mse_loss(dlogits, logits, tr->teacher_probs, tr->valid, nu,
                                               k, hw, (float)lambda);
        /* The teacher's argmax stands in for pseudo-labels in the statistics. */
        const float *tp = tr->teacher_probs;
        for (size_t i = 0; i < count; i++) {
            const float *p = tp + (i / (size_t)hw) * k * hw + i % (size_t)hw;
            int best = 0;
            for (int c = 1; c < k; c++)
                if (p[(size_t)c * hw] > p[(size_t)best * hw]) best = c;
            tr->pseudo[i] = tr->matched[i] = tr->valid[i] ? best : RL_IGNORE;
        }
    } else {
        if (sc->method == RL_METHOD_REFPL) {
            int rc = refpl_labels(tr, count, err);
            if (rc) return rc;
            info->pl_min_margin = tr->min_margin;
        } else {
            predpl_labels(tr, count);
        }
        info->unsup_loss = rl_softmax_ce_loss(dlogits, logits, tr->pseudo, NULL, nu, k, hw,
                                              RL_IGNORE, (float)lambda);
        if (sc->pl_dice_weight > 0)
            info->unsup_loss += sc->pl_dice_weight *
                                rl_soft_dice_loss(dlogits, logits, tr->pseudo, nu, k, hw, RL_IGNORE,
                                                  0, 1e-5f, (float)(lambda * sc->pl_dice_weight));
    }
    pseudo_label_stats(tr, count, info);
    return RL_OK;
}

/* teacher = decay * teacher + (1 - decay) * student, parameters and
 * batch-norm statistics alike. */
static void update_teacher(rl_trainer *tr) {
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

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* A batch whose output, loss or gradient is not finite: undoes what its
 * forward pass did to the batch-norm statistics, then either fails, or with
 * skip_nonfinite counts the step as done without an update. */
static int nonfinite_batch(rl_trainer *tr, const char *what, rl_train_step_info *info,
                           rl_train_step_info *info_out, rl_error *err) {
    copy_norm_state(tr, 0);
    rl_error why = {0, ""};
    nonfinite_error(tr, what, &why);
    if (!tr->cfg.skip_nonfinite) {
        if (err) *err = why;
        return RL_ENONFINITE;
    }
    memcpy(tr->skip_reason, why.msg, sizeof tr->skip_reason);
    info->lr = rl_lr_at(&tr->cfg.schedule, tr->steps_done);
    tr->steps_done++;
    tr->skipped++;
    info->step = tr->steps_done;
    info->skipped = 1;
    info->skip_reason = tr->skip_reason;
    info->skipped_total = tr->skipped;
    if (info_out) *info_out = *info;
    return RL_OK;
}

/* ---- multi-label: sigmoid outputs, one per structure ------------------- */

/* Bit sets (images, hw) -> targets (images, S, hw) in {0, 1} and valid
 * (images, hw); negative codes (padding, unlabeled, no pseudo-label) are
 * invalid and get all-zero targets. */
static void bits_to_targets(const int32_t *bits, int images, int structures, size_t hw,
                            float *targets, uint8_t *valid) {
    for (int b = 0; b < images; b++)
        for (size_t p = 0; p < hw; p++) {
            int32_t v = bits[(size_t)b * hw + p];
            float *t = targets + (size_t)b * structures * hw + p;
            valid[(size_t)b * hw + p] = v >= 0;
            for (int c = 0; c < structures; c++)
                t[(size_t)c * hw] = v >= 0 ? (float)((v >> c) & 1) : 0.0f;
        }
}

/* refpl: the labeled half's decoder features and bit masks become the
 * references; every unlabeled pixel copies its best match's whole mask.
 * Pixels whose margin (against references of any other mask) is below the
 * threshold are ignored. */
static int refpl_masks(rl_trainer *tr, size_t count, rl_error *err) {
    rl_tensor f = rl_unet_features(tr->net);
    size_t hw = (size_t)f.h * f.w;
    for (size_t i = 0; i < (size_t)tr->nl * hw; i++)
        tr->ref_masks[i] = tr->y[i] >= 0 ? (uint64_t)tr->y[i] : IGNORE_MASK;
    int rc = rl_bank_add(&tr->bank, f.data, NULL, tr->ref_masks, tr->nl, f.h, f.w, &tr->bank_rng,
                         err);
    if (rc) return rc;
    rl_match_out out;
    memset(&out, 0, sizeof out);
    out.mask = tr->match_masks;
    out.margin = tr->confidence;
    rc = rl_match(&tr->matcher, &tr->bank, f.data + (size_t)tr->nl * f.c * hw, tr->nu, f.h, f.w,
                  &out, err);
    if (rc) return rc;
    for (size_t i = 0; i < count; i++) tr->matched[i] = (int32_t)tr->match_masks[i];
    tr->min_margin = tr->cfg.semi.refs.min_margin; /* no calibration on multi-label data */
    keep_most_confident(tr, count);
    return RL_OK;
}

/* predpl: structure c is present where its sigmoid exceeds 0.5 (logit > 0).
 * The confidence of a pixel is that of its least certain structure,
 * min_c max(p_c, 1 - p_c) = sigmoid(min_c |z_c|); the whole mask is kept
 * where it reaches the threshold. */
static void predpl_masks(rl_trainer *tr, size_t count) {
    int s = tr->structures;
    size_t hw = (size_t)tr->cfg.patch_h * tr->cfg.patch_w;
    const float *logits = rl_unet_logits(tr->net).data + (size_t)tr->nl * s * hw;
    for (size_t i = 0; i < count; i++) {
        const float *z = logits + (i / hw) * s * hw + i % hw;
        tr->matched[i] = rl_bitset_from_logits(z, s, hw, &tr->confidence[i]);
    }
    keep_confident(tr, count, tr->cfg.semi.min_confidence);
}

/* Multi-label pseudo-label statistics: index 0 stands for "no structure",
 * c >= 1 for structure c. Shares are coverages (they overlap), drift is half
 * the L1 distance between the coverage vectors, accuracy counts pixels whose
 * whole bit set is right, Dice is per structure over the known pixels. */
static void pseudo_mask_stats(rl_trainer *tr, size_t count, rl_train_step_info *info) {
    int k = tr->set->num_classes;
    int64_t valid = 0, kept = 0, known = 0, correct = 0;
    /* confusion (K, K) is reused as (K, 3): true positives, truth, predicted */
    int64_t *counts = tr->confusion;
    memset(counts, 0, (size_t)k * k * sizeof *counts);
    for (int c = 0; c < k; c++) tr->pl_share[c] = 0;
    for (size_t i = 0; i < count; i++) {
        if (!tr->valid[i]) continue;
        valid++;
        int32_t m = tr->matched[i];
        tr->pl_share[0] += m == 0;
        for (int c = 1; c < k; c++) tr->pl_share[c] += (m >> (c - 1)) & 1;
        int32_t p = tr->pseudo[i];
        if (p < 0) continue;
        kept++;
        int32_t h = tr->hidden[i];
        if (h < 0) continue;
        known++;
        correct += p == h;
        for (int c = 0; c < k; c++) {
            int in_p = c == 0 ? p == 0 : (p >> (c - 1)) & 1;
            int in_h = c == 0 ? h == 0 : (h >> (c - 1)) & 1;
            counts[3 * c] += in_p && in_h;
            counts[3 * c + 1] += in_h;
            counts[3 * c + 2] += in_p;
        }
    }
    double drift = 0;
    for (int c = 0; c < k; c++) {
        tr->pl_share[c] = valid ? tr->pl_share[c] / (double)valid : 0;
        drift += fabs(tr->pl_share[c] - tr->labeled_share[c]);
        int64_t both = counts[3 * c + 1] + counts[3 * c + 2];
        tr->pl_dice[c] = known == 0  ? NAN
                         : both == 0 ? 1.0
                                     : 2.0 * (double)counts[3 * c] / (double)both;
    }
    report_pl_stats(tr, info, valid, kept, known, correct, drift);
}

/* The unlabeled half's loss on multi-label data: BCE (+ Dice) against the
 * pseudo bit sets, accumulated into dlogits with weight lambda. */
static int unlabeled_mask_loss(rl_trainer *tr, double lambda, rl_train_step_info *info,
                               rl_error *err) {
    const rl_semi_config *sc = &tr->cfg.semi;
    int s = tr->structures, nu = tr->nu;
    int hw = tr->cfg.patch_h * tr->cfg.patch_w;
    size_t count = (size_t)nu * hw, offset = (size_t)tr->nl * s * hw;
    const float *logits = rl_unet_logits(tr->net).data + offset;
    float *dlogits = lambda > 0 ? tr->dlogits + offset : NULL;
    float *targets = tr->targets + offset;
    uint8_t *valid = tr->target_valid + (size_t)tr->nl * hw;
    decode_unlabeled(tr, count);
    if (sc->method == RL_METHOD_REFPL) {
        int rc = refpl_masks(tr, count, err);
        if (rc) return rc;
        info->pl_min_margin = tr->min_margin;
    } else {
        predpl_masks(tr, count);
    }
    bits_to_targets(tr->pseudo, nu, s, (size_t)hw, targets, valid);
    info->unsup_loss =
        rl_sigmoid_bce_loss(dlogits, logits, targets, valid, nu, s, hw, (float)lambda);
    if (sc->pl_dice_weight > 0)
        info->unsup_loss += sc->pl_dice_weight *
                            rl_sigmoid_dice_loss(dlogits, logits, targets, valid, nu, s, hw, 1e-5f,
                                                 (float)(lambda * sc->pl_dice_weight));
    pseudo_mask_stats(tr, count, info);
    return RL_OK;
}

/* The losses of a multi-label step: BCE + dice_weight * sigmoid Dice on the
 * labeled half, plus the weighted unlabeled loss; gradients into dlogits. */
static int multilabel_losses(rl_trainer *tr, rl_train_step_info *info, rl_error *err) {
    const rl_train_config *cfg = &tr->cfg;
    int s = tr->structures, nl = tr->nl;
    int hw = cfg->patch_h * cfg->patch_w;
    const float *logits = rl_unet_logits(tr->net).data;
    bits_to_targets(tr->y, nl, s, (size_t)hw, tr->targets, tr->target_valid);
    info->ce = rl_sigmoid_bce_loss(tr->dlogits, logits, tr->targets, tr->target_valid, nl, s, hw,
                                   1.0f);
    if (cfg->dice_weight > 0)
        info->dice = rl_sigmoid_dice_loss(tr->dlogits, logits, tr->targets, tr->target_valid, nl,
                                          s, hw, 1e-5f, cfg->dice_weight);
    info->loss = info->ce + cfg->dice_weight * info->dice;
    if (tr->nu > 0) {
        info->lambda = unlabeled_weight(tr);
        int rc = unlabeled_mask_loss(tr, info->lambda, info, err);
        if (rc) return rc;
        info->loss += info->lambda * info->unsup_loss;
    }
    return RL_OK;
}

int rl_trainer_step(rl_trainer *tr, rl_train_step_info *info_out, rl_error *err) {
    const rl_train_config *cfg = &tr->cfg;
    int k = tr->set->num_classes, nl = tr->nl;
    int hw = cfg->patch_h * cfg->patch_w;
    rl_train_step_info info;
    memset(&info, 0, sizeof info);
    /* NaN until computed, so that a skipped step logs none of them as 0. */
    info.loss = info.ce = info.grad_norm = NAN;
    info.dice = cfg->dice_weight > 0 ? NAN : 0.0;
    info.pl_accuracy = info.pl_drift = info.pl_min_margin = NAN;
    info.skipped_total = tr->skipped;
    int rc = fill_batch(tr, err);
    if (rc) return rc;
    copy_norm_state(tr, 1);
    rc = rl_unet_forward(tr->net, tr->x, 1, err);
    if (rc) return rc;
    const float *logits = rl_unet_logits(tr->net).data;
    /* Checked first, for the clearest message, and because a finite output
     * implies finite decoder features (a NaN or infinity there reaches every
     * logit through the 1x1 head), which the refpl bank would refuse. */
    /* K softmax outputs, or K - 1 sigmoid outputs on multi-label sets */
    if (!all_finite(logits, (size_t)tr->n * rl_sample_set_outputs(tr->set) * hw))
        return nonfinite_batch(tr, "the network output is", &info, info_out, err);
    if (tr->hypercolumn) {
        /* A non-finite value in a deeper decoder level need not reach the
         * output (a ReLU computed with fmaxf turns NaN into 0), so the
         * hypercolumn is checked itself, before the bank refuses it. */
        size_t numel = (size_t)tr->n * tr->bank.cfg.dim * hw;
        rc = rl_unet_extract_features(tr->net, RL_FEATURES_HYPERCOLUMN, tr->hypercolumn, err);
        if (rc) return rc;
        if (!all_finite(tr->hypercolumn, numel))
            return nonfinite_batch(tr, "the hypercolumn features are", &info, info_out, err);
    }
    memset(tr->dlogits, 0, (size_t)tr->n * k * hw * sizeof *tr->dlogits);
    if (tr->set->multilabel) {
        rc = multilabel_losses(tr, &info, err);
        if (rc) return rc;
    } else {
        info.ce = rl_softmax_ce_loss(tr->dlogits, logits, tr->y, NULL, nl, k, hw, RL_IGNORE, 1.0f);
        if (cfg->dice_weight > 0)
            info.dice = rl_soft_dice_loss(tr->dlogits, logits, tr->y, nl, k, hw, RL_IGNORE, 0,
                                          1e-5f, cfg->dice_weight);
        info.loss = info.ce + cfg->dice_weight * info.dice;
        if (tr->nu > 0) {
            info.lambda = unlabeled_weight(tr);
            rc = unlabeled_loss(tr, info.lambda, &info, err);
            if (rc) return rc;
            info.loss += info.lambda * info.unsup_loss;
        }
    }
    if (!isfinite(info.loss)) return nonfinite_batch(tr, "the loss is", &info, info_out, err);

    rl_unet_zero_grad(tr->net);
    rc = rl_unet_backward(tr->net, tr->dlogits, err);
    if (rc) return rc;
    float *params = rl_unet_params(tr->net);
    float *grads = rl_unet_grads(tr->net);
    size_t count = rl_unet_param_count(tr->net);
    info.grad_norm = rl_clip_grad_norm(grads, count, cfg->clip_norm > 0 ? cfg->clip_norm : INFINITY);
    if (!isfinite(info.grad_norm))
        return nonfinite_batch(tr, "the gradient is", &info, info_out, err);
    info.lr = rl_lr_at(&cfg->schedule, tr->steps_done);
    rl_optim_step(tr->opt, params, grads, (float)info.lr);
    /* Finite gradients can still carry weights past the float range when the
     * learning rate is absurd; nothing can be skipped once they have moved. */
    if (!all_finite(params, count)) {
        char what[96];
        snprintf(what, sizeof what, "the weights after the update (learning rate %g) are",
                 info.lr);
        return nonfinite_error(tr, what, err);
    }
    if (tr->teacher) update_teacher(tr);
    tr->steps_done++;
    info.step = tr->steps_done;
    if (info_out) *info_out = info;
    return RL_OK;
}

/* ---- resumable state ------------------------------------------------------ *
 * One safetensors file (layout in docs/TRAINING.md). Integer state goes
 * into I64 tensors, the only integer dtype of the format; random streams are
 * stored as the bit patterns of their uint64 state and increment. */

#define STATE_NAME_MAX (RL_UNET_NAME_MAX + 16)

/* The tensors of a state file being written; names and converted data
 * belong to the list. */
typedef struct state_list {
    rl_st_tensor *tensors;
    char (*names)[STATE_NAME_MAX];
    void **owned; /* per tensor: data allocated for it, or NULL */
    int count, cap;
} state_list;

static void state_add(state_list *l, const char *prefix, const char *name, rl_dtype dtype,
                      int ndim, const int64_t *shape, void *data, void *owned) {
    rl_st_tensor *t = &l->tensors[l->count];
    snprintf(l->names[l->count], STATE_NAME_MAX, "%s%s", prefix, name);
    t->name = l->names[l->count];
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->data = data;
    l->owned[l->count] = owned;
    l->count++;
}

static void state_add_unet(state_list *l, const char *prefix, rl_unet *net) {
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(net, &count);
    for (int i = 0; i < count; i++) {
        int64_t shape[4];
        for (int d = 0; d < t[i].ndim; d++) shape[d] = t[i].shape[d];
        state_add(l, prefix, t[i].name, t[i].kind == RL_UNET_COUNTER ? RL_DTYPE_I64 : RL_DTYPE_F32,
                  t[i].ndim, shape, rl_unet_tensor_data(net, &t[i]), NULL);
    }
}

static uint64_t bits_of(int64_t v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static int64_t int64_of(uint64_t u) {
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* What must be equal between the trainer that saved a state and the one
 * that restores it, beyond the tensor shapes: written as metadata, compared
 * as a string so that a mismatch can be shown whole. */
static void trainer_signature(const rl_trainer *tr, char *buf, size_t size) {
    const rl_train_config *c = &tr->cfg;
    snprintf(buf, size,
             "method=%s batch=%d unlabeled_batch=%d patch=%dx%d steps=%lld optimizer=%s "
             "optimizer_arrays=%d samples=%d labeled=%d channels=%d classes=%d features=%s "
             "bank=%dx%dx%d",
             rl_method_name(c->semi.method), tr->nl, tr->nu, c->patch_h, c->patch_w,
             (long long)c->steps, rl_optim_name(c->optim.kind), rl_optim_state_count(tr->opt),
             tr->set->count, tr->labeled.size, tr->set->channels, tr->set->num_classes,
             tr->has_bank ? rl_feature_source_name(c->semi.refs.features) : "none",
             tr->has_bank ? tr->bank.cfg.memory_batches : 0,
             tr->has_bank ? tr->bank.slot_capacity : 0, tr->has_bank ? tr->bank.cfg.dim : 0);
}

/* The reference bank's filled part, slot by slot in physical order, so that
 * the restored ring is the same memory layout, not just the same contents. */
static int state_add_bank(state_list *l, const rl_bank *b) {
    int slots = b->cfg.memory_batches, dim = b->cfg.dim;
    int64_t rows = 0, runs = 0;
    for (int s = 0; s < slots; s++) {
        rows += b->slot_count[s];
        runs += b->slot_runs[s];
    }
    int64_t *ring = malloc(3 * sizeof *ring);
    int64_t *slot_info = malloc((size_t)slots * 4 * sizeof *slot_info);
    int64_t *refs = malloc(((size_t)rows * 3 + 1) * sizeof *refs);
    int64_t *run_info = malloc(((size_t)runs * 3 + 1) * sizeof *run_info);
    float *vectors = malloc(((size_t)rows * dim + 1) * sizeof *vectors);
    if (!ring || !slot_info || !refs || !run_info || !vectors) {
        free(ring);
        free(slot_info);
        free(refs);
        free(run_info);
        free(vectors);
        return -1;
    }
    ring[0] = b->oldest;
    ring[1] = b->filled;
    ring[2] = b->batches_added;
    int64_t row = 0, run = 0;
    for (int s = 0; s < slots; s++) {
        slot_info[4 * s + 0] = b->slot_count[s];
        slot_info[4 * s + 1] = b->slot_images[s];
        slot_info[4 * s + 2] = b->slot_batch[s];
        slot_info[4 * s + 3] = b->slot_runs[s];
        size_t base = (size_t)s * (size_t)b->slot_capacity;
        for (int i = 0; i < b->slot_count[s]; i++, row++) {
            refs[3 * row + 0] = b->labels[base + i];
            refs[3 * row + 1] = b->pixels[base + i];
            refs[3 * row + 2] = b->images[base + i];
            memcpy(vectors + (size_t)row * dim, b->vectors + (base + i) * dim, dim * sizeof(float));
        }
        size_t run_base = (size_t)s * (size_t)b->max_runs;
        for (int i = 0; i < b->slot_runs[s]; i++, run++) {
            run_info[3 * run + 0] = b->run_start[run_base + i];
            run_info[3 * run + 1] = b->run_label[run_base + i];
            run_info[3 * run + 2] = b->run_image[run_base + i];
        }
    }
    state_add(l, "", "bank.ring", RL_DTYPE_I64, 1, (int64_t[]){3}, ring, ring);
    state_add(l, "", "bank.slots", RL_DTYPE_I64, 2, (int64_t[]){slots, 4}, slot_info, slot_info);
    state_add(l, "", "bank.vectors", RL_DTYPE_F32, 2, (int64_t[]){rows, dim}, vectors, vectors);
    state_add(l, "", "bank.refs", RL_DTYPE_I64, 2, (int64_t[]){rows, 3}, refs, refs);
    state_add(l, "", "bank.runs", RL_DTYPE_I64, 2, (int64_t[]){runs, 3}, run_info, run_info);
    if (b->cfg.multilabel) {
        /* label ids of a multi-label bank mean the bit masks of this table */
        int64_t *masks = malloc(((size_t)b->num_masks + 1) * sizeof *masks);
        if (!masks) return -1;
        for (int i = 0; i < b->num_masks; i++) masks[i] = int64_of(b->masks[i]);
        state_add(l, "", "bank.masks", RL_DTYPE_I64, 1, (int64_t[]){b->num_masks}, masks, masks);
    }
    return 0;
}

int rl_trainer_save(const rl_trainer *tr, const char *path, const rl_kv *extra, int extra_count,
                    rl_error *err) {
    if (extra_count < 0 || (extra_count > 0 && !extra))
        return rl_error_set(err, RL_EINVAL, "%s: invalid metadata list", path);
    int net_tensors;
    rl_unet_tensors(tr->net, &net_tensors);
    state_list l;
    memset(&l, 0, sizeof l);
    l.cap = 2 * net_tensors + 16;
    l.tensors = calloc((size_t)l.cap, sizeof *l.tensors);
    l.names = calloc((size_t)l.cap, sizeof *l.names);
    l.owned = calloc((size_t)l.cap, sizeof *l.owned);
    int64_t *counters = malloc(3 * sizeof *counters);
    int64_t *streams = malloc(6 * sizeof *streams);
    rl_kv *meta = calloc((size_t)extra_count + 3, sizeof *meta);
    char *config = rl_unet_config_to_json(rl_unet_get_config(tr->net));
    char signature[512];
    trainer_signature(tr, signature, sizeof signature);
    int rc = RL_OK;
    if (!l.tensors || !l.names || !l.owned || !counters || !streams || !meta || !config) {
        free(counters);
        free(streams);
        rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    } else {
        /* The writer only reads; the accessors take mutable pointers. */
        rl_trainer *mtr = (rl_trainer *)tr;
        state_add_unet(&l, "model.", mtr->net);
        if (tr->teacher) state_add_unet(&l, "teacher.", mtr->teacher);
        for (int i = 0; i < rl_optim_state_count(tr->opt); i++) {
            const char *name;
            float *data = rl_optim_state(mtr->opt, i, &name);
            state_add(&l, "optim.", name, RL_DTYPE_F32, 1,
                      (int64_t[]){(int64_t)rl_unet_param_count(tr->net)}, data, NULL);
        }
        counters[0] = tr->steps_done;
        counters[1] = tr->skipped;
        counters[2] = rl_optim_steps(tr->opt);
        state_add(&l, "", "trainer.counters", RL_DTYPE_I64, 1, (int64_t[]){3}, counters, counters);
        const rl_rng *rngs[3] = {&tr->sampling_rng, &tr->augment_rng, &tr->bank_rng};
        for (int i = 0; i < 3; i++) {
            streams[2 * i] = int64_of(rngs[i]->state);
            streams[2 * i + 1] = int64_of(rngs[i]->inc);
        }
        state_add(&l, "", "trainer.rng", RL_DTYPE_I64, 2, (int64_t[]){3, 2}, streams, streams);
        if (tr->has_bank && state_add_bank(&l, &tr->bank))
            rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory for the reference bank", path);
        meta[0] = (rl_kv){"reflabel.format", RL_TRAIN_STATE_FORMAT};
        meta[1] = (rl_kv){"reflabel.config", config};
        meta[2] = (rl_kv){"reflabel.trainer", signature};
        for (int i = 0; i < extra_count; i++) meta[3 + i] = extra[i];
        if (!rc) rc = rl_safetensors_write(path, l.tensors, l.count, meta, extra_count + 3, err);
    }
    for (int i = 0; l.owned && i < l.count; i++) free(l.owned[i]);
    free(l.tensors);
    free(l.names);
    free(l.owned);
    free(meta);
    free(config);
    return rc;
}

/* The tensor `name` of st, which must have this dtype and shape (a negative
 * entry of shape: any length); NULL with err filled otherwise. */
static const rl_st_tensor *state_tensor(const rl_safetensors *st, const char *path,
                                        const char *name, rl_dtype dtype, int ndim,
                                        const int64_t *shape, rl_error *err) {
    const rl_st_tensor *t = rl_safetensors_find(st, name);
    if (!t) {
        rl_error_set(err, RL_EFORMAT, "%s: tensor '%s' is missing", path, name);
        return NULL;
    }
    int same = t->dtype == dtype && t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] < 0 || t->shape[d] == shape[d];
    if (!same) {
        rl_error_set(err, RL_EFORMAT, "%s: tensor '%s' has another dtype or shape than this run's",
                     path, name);
        return NULL;
    }
    return t;
}

static int restore_unet(rl_unet *net, const char *prefix, const rl_safetensors *st,
                        const char *path, int apply, rl_error *err) {
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(net, &count);
    for (int i = 0; i < count; i++) {
        char name[STATE_NAME_MAX];
        int64_t shape[4];
        snprintf(name, sizeof name, "%s%s", prefix, t[i].name);
        for (int d = 0; d < t[i].ndim; d++) shape[d] = t[i].shape[d];
        int counter = t[i].kind == RL_UNET_COUNTER;
        const rl_st_tensor *s = state_tensor(st, path, name, counter ? RL_DTYPE_I64 : RL_DTYPE_F32,
                                             t[i].ndim, shape, err);
        if (!s) return RL_EFORMAT;
        if (apply)
            memcpy(rl_unet_tensor_data(net, &t[i]), s->data,
                   t[i].numel * (counter ? sizeof(int64_t) : sizeof(float)));
    }
    return RL_OK;
}

static int in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

/* Checks every index the bank's readers follow, so that a damaged file is an
 * error here rather than an out-of-bounds access in a later step. */
static int restore_bank(rl_bank *b, const rl_safetensors *st, const char *path, int apply,
                        rl_error *err) {
    int slots = b->cfg.memory_batches, dim = b->cfg.dim;
    const rl_st_tensor *ring_t = state_tensor(st, path, "bank.ring", RL_DTYPE_I64, 1,
                                              (int64_t[]){3}, err);
    const rl_st_tensor *slots_t = ring_t ? state_tensor(st, path, "bank.slots", RL_DTYPE_I64, 2,
                                                        (int64_t[]){slots, 4}, err)
                                         : NULL;
    if (!slots_t) return RL_EFORMAT;
    const int64_t *ring = ring_t->data, *slot_info = slots_t->data;
    if (!in_range(ring[0], 0, slots - 1) || !in_range(ring[1], 0, slots) ||
        !in_range(ring[2], ring[1], INT32_MAX))
        return rl_error_set(err, RL_EFORMAT, "%s: bank.ring is inconsistent", path);
    int64_t rows = 0, runs = 0;
    for (int s = 0; s < slots; s++) {
        const int64_t *si = slot_info + 4 * s;
        if (!in_range(si[0], 0, b->slot_capacity) || !in_range(si[1], 0, b->cfg.max_images) ||
            !in_range(si[2], 0, ring[2]) || !in_range(si[3], 0, b->max_runs))
            return rl_error_set(err, RL_EFORMAT, "%s: bank.slots row %d is out of range", path, s);
        rows += si[0];
        runs += si[3];
    }
    const rl_st_tensor *vec_t = state_tensor(st, path, "bank.vectors", RL_DTYPE_F32, 2,
                                             (int64_t[]){rows, dim}, err);
    const rl_st_tensor *refs_t = vec_t ? state_tensor(st, path, "bank.refs", RL_DTYPE_I64, 2,
                                                      (int64_t[]){rows, 3}, err)
                                       : NULL;
    const rl_st_tensor *runs_t = refs_t ? state_tensor(st, path, "bank.runs", RL_DTYPE_I64, 2,
                                                       (int64_t[]){runs, 3}, err)
                                        : NULL;
    if (!runs_t) return RL_EFORMAT;
    int num_labels = b->cfg.num_labels;
    if (b->cfg.multilabel) {
        const rl_st_tensor *masks_t = state_tensor(st, path, "bank.masks", RL_DTYPE_I64, 1,
                                                   (int64_t[]){-1}, err);
        if (!masks_t) return RL_EFORMAT;
        if (masks_t->shape[0] > b->cfg.num_labels)
            return rl_error_set(err, RL_EFORMAT, "%s: bank.masks has too many entries", path);
        num_labels = (int)masks_t->shape[0];
        if (apply) {
            const int64_t *masks = masks_t->data;
            for (int i = 0; i < num_labels; i++) b->masks[i] = bits_of(masks[i]);
            b->num_masks = num_labels;
        }
    }
    const float *vectors = vec_t->data;
    const int64_t *refs = refs_t->data, *run_info = runs_t->data;
    if (!all_finite(vectors, (size_t)rows * dim))
        return rl_error_set(err, RL_EFORMAT, "%s: bank.vectors holds non-finite values", path);
    int64_t row = 0, run = 0;
    for (int s = 0; s < slots; s++) {
        const int64_t *si = slot_info + 4 * s;
        size_t base = (size_t)s * (size_t)b->slot_capacity;
        for (int i = 0; i < si[0]; i++, row++) {
            const int64_t *r = refs + 3 * row;
            if (!in_range(r[0], 0, num_labels - 1) ||
                !in_range(r[1], 0, b->cfg.max_image_pixels - 1) || !in_range(r[2], 0, si[1] - 1))
                return rl_error_set(err, RL_EFORMAT, "%s: bank.refs row %lld is out of range",
                                    path, (long long)row);
            if (!apply) continue;
            b->labels[base + i] = (int32_t)r[0];
            b->pixels[base + i] = (int32_t)r[1];
            b->images[base + i] = (int32_t)r[2];
            memcpy(b->vectors + (base + i) * dim, vectors + (size_t)row * dim, dim * sizeof(float));
        }
        size_t run_base = (size_t)s * (size_t)b->max_runs;
        for (int i = 0; i < si[3]; i++, run++) {
            const int64_t *r = run_info + 3 * run;
            if (!in_range(r[0], 0, si[0] - 1) || !in_range(r[1], 0, num_labels - 1) ||
                !in_range(r[2], 0, si[1] - 1))
                return rl_error_set(err, RL_EFORMAT, "%s: bank.runs row %lld is out of range",
                                    path, (long long)run);
            if (!apply) continue;
            b->run_start[run_base + i] = (int)r[0];
            b->run_label[run_base + i] = (int)r[1];
            b->run_image[run_base + i] = (int)r[2];
        }
        if (!apply) continue;
        b->slot_count[s] = (int)si[0];
        b->slot_images[s] = (int)si[1];
        b->slot_batch[s] = (long)si[2];
        b->slot_runs[s] = (int)si[3];
    }
    if (apply) {
        b->oldest = (int)ring[0];
        b->filled = (int)ring[1];
        b->batches_added = (long)ring[2];
    }
    return RL_OK;
}

/* Run twice by rl_trainer_restore: apply == 0 only checks, apply == 1 copies
 * what the first pass checked. */
static int restore_pass(rl_trainer *tr, const rl_safetensors *st, const char *path, int apply,
                        rl_error *err) {
    int rc = restore_unet(tr->net, "model.", st, path, apply, err);
    if (!rc && tr->teacher) rc = restore_unet(tr->teacher, "teacher.", st, path, apply, err);
    for (int i = 0; !rc && i < rl_optim_state_count(tr->opt); i++) {
        const char *name;
        float *data = rl_optim_state(tr->opt, i, &name);
        char full[STATE_NAME_MAX];
        snprintf(full, sizeof full, "optim.%s", name);
        size_t n = rl_unet_param_count(tr->net);
        const rl_st_tensor *t = state_tensor(st, path, full, RL_DTYPE_F32, 1,
                                             (int64_t[]){(int64_t)n}, err);
        if (!t) rc = RL_EFORMAT;
        else if (apply) memcpy(data, t->data, n * sizeof(float));
    }
    const rl_st_tensor *counters_t =
        rc ? NULL
           : state_tensor(st, path, "trainer.counters", RL_DTYPE_I64, 1, (int64_t[]){3}, err);
    const rl_st_tensor *rng_t =
        counters_t ? state_tensor(st, path, "trainer.rng", RL_DTYPE_I64, 2, (int64_t[]){3, 2}, err)
                   : NULL;
    if (!rng_t) return rc ? rc : RL_EFORMAT;
    const int64_t *counters = counters_t->data, *streams = rng_t->data;
    if (!in_range(counters[0], 0, tr->cfg.steps) || !in_range(counters[1], 0, counters[0]) ||
        !in_range(counters[2], 0, counters[0]))
        return rl_error_set(err, RL_EFORMAT,
                            "%s: step counters %lld, %lld, %lld do not fit a run of %lld steps",
                            path, (long long)counters[0], (long long)counters[1],
                            (long long)counters[2], (long long)tr->cfg.steps);
    if (tr->has_bank) rc = restore_bank(&tr->bank, st, path, apply, err);
    if (rc || !apply) return rc;
    tr->steps_done = counters[0];
    tr->skipped = counters[1];
    rl_optim_set_steps(tr->opt, counters[2]);
    rl_rng *rngs[3] = {&tr->sampling_rng, &tr->augment_rng, &tr->bank_rng};
    for (int i = 0; i < 3; i++) {
        rngs[i]->state = bits_of(streams[2 * i]);
        rngs[i]->inc = bits_of(streams[2 * i + 1]);
    }
    return RL_OK;
}

int rl_trainer_restore(rl_trainer *tr, const rl_safetensors *st, const char *path,
                       rl_error *err) {
    const char *format = rl_safetensors_metadata(st, "reflabel.format");
    if (!format || strcmp(format, RL_TRAIN_STATE_FORMAT))
        return rl_error_set(err, RL_EFORMAT, "%s: not a reflabel training state (format '%s')",
                            path, format ? format : "missing");
    char mine[512];
    trainer_signature(tr, mine, sizeof mine);
    const char *saved = rl_safetensors_metadata(st, "reflabel.trainer");
    if (!saved || strcmp(saved, mine))
        return rl_error_set(err, RL_EINVAL,
                            "%s: saved by a different training setup (%s; this one: %s)", path,
                            saved ? saved : "no signature", mine);
    int rc = restore_pass(tr, st, path, 0, err);
    return rc ? rc : restore_pass(tr, st, path, 1, err);
}
