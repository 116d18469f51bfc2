/* Internal to src/train: how labels map onto network outputs. Two
 * encodings, chosen by the sample set:
 *
 *   classes   K softmax outputs, a label is a class in [0, K); a pixel's
 *             decision is the argmax, its confidence the softmax maximum;
 *             loss CE + soft Dice.
 *   bit sets  S = K - 1 sigmoid outputs, a label is a bit set (bit c-1 =
 *             structure c, 0 = background); a pixel's decision is every
 *             structure whose logit is > 0, its confidence that of the least
 *             certain structure; loss BCE + sigmoid Dice.
 *
 * Everything that reads logits or labels goes through here: the supervised
 * loss, every semi-supervised method's targets and loss, the pseudo-label
 * statistics, and prediction. In the statistics "class c" means label ==
 * c for classes and "structure c present" (c >= 1) or "no structure" (c ==
 * 0) for bit sets (rl_encoding_has), so one function serves both. */
#ifndef RL_TRAIN_ENCODING_H
#define RL_TRAIN_ENCODING_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"
#include "reflabel/match.h"
#include "reflabel/train.h"

typedef struct rl_encoding {
    int multilabel; /* 0: classes; 1: bit sets */
    int classes;    /* K: classes, or 1 + structures (index 0: no structure) */
    int outputs;    /* network outputs: K, or S = K - 1 */
    /* bit sets: the loss's sigmoid targets, laid out by rl_encoding_layout */
    float *targets;         /* (images, S, hw) bit c of each label as 0 / 1 */
    uint8_t *target_valid;  /* (images, hw) the pixel has a target */
} rl_encoding;

/* Most distinct bit sets a multi-label reference bank tells apart (the
 * matcher's scratch grows with it); every combination of up to 8 structures
 * fits. */
#define RL_MULTILABEL_BANK_MASKS 256

void rl_encoding_init(rl_encoding *e, int multilabel, int num_classes);
/* Assigns the loss scratch of `images` images of hw pixels from a (nothing
 * for classes); measuring arenas as in rl_unet's layout. */
void rl_encoding_layout(rl_encoding *e, rl_arena *a, int images, size_t hw);

/* The argmax of k values z[0], z[stride], ... (ties: the lowest index);
 * *confidence (if not NULL) is its softmax probability. */
int32_t rl_argmax_confidence(const float *z, int k, size_t stride, float *confidence);
/* One pixel's label from its logits z[0], z[stride], ...; confidence as
 * above (may be NULL). */
int32_t rl_encoding_decode(const rl_encoding *e, const float *z, size_t stride, float *confidence);
/* The pixels of `images` images of hw pixels: logits (images, outputs, hw)
 * -> labels, confidence (images * hw each; confidence may be NULL). */
void rl_encoding_decode_images(const rl_encoding *e, const float *logits, int images, size_t hw,
                               int32_t *labels, float *confidence);

/* A label that means something (not padding, unlabeled or ignored). */
static inline int rl_encoding_known(const rl_encoding *e, int32_t v) {
    return v >= 0 && (e->multilabel || v < e->classes);
}
/* Whether known label v holds class c (bit sets: structure c, or none for c == 0). */
static inline int rl_encoding_has(const rl_encoding *e, int32_t v, int c) {
    if (!e->multilabel) return v == c;
    return c == 0 ? v == 0 : (v >> (c - 1)) & 1;
}

/* Loss of images [first, first + images) of the batch against labels
 * (images, hw) (negative: no target), gradient accumulated into dlogits
 * (may be NULL): CE (BCE) with weight w into *ce, and when dice_weight > 0
 * the soft (sigmoid) Dice with weight w * dice_weight into *dice. logits
 * and dlogits point at image `first`. */
void rl_encoding_loss(const rl_encoding *e, float *dlogits, const float *logits,
                      const int32_t *labels, int first, int images, int hw, double w,
                      float dice_weight, float *ce, float *dice);

/* Label ids a reference bank needs for this encoding: K classes, or the
 * distinct bit sets of S structures. */
int rl_encoding_bank_labels(int multilabel, int outputs);

/* Class shares (coverages for bit sets: they overlap) of every known label
 * of the set's labeled samples into share (K). */
void rl_encoding_label_shares(const rl_encoding *e, const rl_sample_set *set, double *share);

/* Pseudo-label statistics of one step over count pixels (valid: a pixel
 * of an unlabeled image; matched: labels before the threshold; pseudo: kept
 * ones, negative where dropped; hidden: truth, negative where unknown):
 * kept share, class shares of matched and their drift (half the L1
 * distance) from labeled_share, accuracy and per-class Dice of the kept
 * ones against the hidden labels. counts: (K, 3) scratch. */
typedef struct rl_pl_stats {
    double *labeled_share, *pl_share, *pl_dice; /* (K) each */
    int64_t *counts;                            /* (K, 3) */
} rl_pl_stats;
void rl_pseudo_label_stats(const rl_encoding *e, size_t count, const uint8_t *valid,
                           const int32_t *matched, const int32_t *pseudo, const int32_t *hidden,
                           rl_pl_stats *stats, rl_train_step_info *info);

#endif
