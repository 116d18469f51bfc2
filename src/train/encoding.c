/* Label encodings: classes (softmax) and bit sets (sigmoid), see
 * encoding.h. The loss, decoding and statistics of both live here so that
 * a method, the supervised loss and prediction never branch on the kind. */
#include "encoding.h"

#include <math.h>
#include <string.h>

#include "reflabel/loss.h"

void rl_encoding_init(rl_encoding *e, int multilabel, int num_classes) {
    memset(e, 0, sizeof *e);
    e->multilabel = multilabel != 0;
    e->classes = num_classes;
    e->outputs = multilabel ? num_classes - 1 : num_classes;
}

void rl_encoding_layout(rl_encoding *e, rl_arena *a, int images, size_t hw) {
    e->targets = NULL;
    e->target_valid = NULL;
    if (!e->multilabel) return;
    e->targets = rl_arena_floats(a, (size_t)images * e->outputs * hw);
    e->target_valid = rl_arena_alloc(a, (size_t)images * hw);
}

int32_t rl_argmax_confidence(const float *z, int k, size_t stride, float *confidence) {
    int best = 0;
    float best_v = z[0];
    for (int c = 1; c < k; c++) {
        float v = z[(size_t)c * stride];
        if (v > best_v) {
            best_v = v;
            best = c;
        }
    }
    if (confidence) {
        double sum = 0;
        for (int c = 0; c < k; c++) sum += exp((double)z[(size_t)c * stride] - best_v);
        *confidence = (float)(1.0 / sum);
    }
    return best;
}

int32_t rl_bitset_from_logits(const float *z, int structures, size_t stride,
                              float *confidence) {
    int32_t bits = 0;
    float least = INFINITY;
    for (int c = 0; c < structures; c++) {
        float v = z[(size_t)c * stride];
        if (v > 0) bits |= (int32_t)1 << c;
        if (fabsf(v) < least) least = fabsf(v);
    }
    if (confidence) *confidence = (float)(1.0 / (1.0 + exp(-(double)least)));
    return bits;
}

int32_t rl_encoding_decode(const rl_encoding *e, const float *z, size_t stride,
                           float *confidence) {
    return e->multilabel ? rl_bitset_from_logits(z, e->outputs, stride, confidence)
                         : rl_argmax_confidence(z, e->outputs, stride, confidence);
}

void rl_encoding_decode_images(const rl_encoding *e, const float *logits, int images, size_t hw,
                               int32_t *labels, float *confidence) {
    size_t count = (size_t)images * hw;
    for (size_t i = 0; i < count; i++) {
        const float *z = logits + (i / hw) * e->outputs * hw + i % hw;
        labels[i] = rl_encoding_decode(e, z, hw, confidence ? &confidence[i] : NULL);
    }
}

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

void rl_encoding_loss(const rl_encoding *e, float *dlogits, const float *logits,
                      const int32_t *labels, int first, int images, int hw, double w,
                      float dice_weight, float *ce, float *dice) {
    int k = e->outputs;
    if (!e->multilabel) {
        *ce = rl_softmax_ce_loss(dlogits, logits, labels, NULL, images, k, hw, RL_IGNORE,
                                 (float)w);
        if (dice_weight > 0)
            *dice = rl_soft_dice_loss(dlogits, logits, labels, images, k, hw, RL_IGNORE, 0, 1e-5f,
                                      (float)(w * dice_weight));
        return;
    }
    float *targets = e->targets + (size_t)first * k * hw;
    uint8_t *valid = e->target_valid + (size_t)first * hw;
    bits_to_targets(labels, images, k, (size_t)hw, targets, valid);
    *ce = rl_sigmoid_bce_loss(dlogits, logits, targets, valid, images, k, hw, (float)w);
    if (dice_weight > 0)
        *dice = rl_sigmoid_dice_loss(dlogits, logits, targets, valid, images, k, hw, 1e-5f,
                                     (float)(w * dice_weight));
}

int rl_encoding_bank_labels(int multilabel, int outputs) {
    if (!multilabel) return outputs;
    return outputs <= 8 ? 1 << outputs : RL_MULTILABEL_BANK_MASKS;
}

void rl_encoding_label_shares(const rl_encoding *e, const rl_sample_set *set, double *share) {
    int k = e->classes;
    double total = 0;
    for (int c = 0; c < k; c++) share[c] = 0;
    for (int i = 0; i < set->count; i++) {
        const rl_sample *s = &set->samples[i];
        if (!s->labels) continue;
        for (size_t p = 0; p < (size_t)s->h * s->w; p++) {
            int32_t v = s->labels[p];
            if (!rl_encoding_known(e, v)) continue;
            total += 1;
            for (int c = 0; c < k; c++) share[c] += rl_encoding_has(e, v, c);
        }
    }
    for (int c = 0; c < k; c++) share[c] = total > 0 ? share[c] / total : 0;
}

void rl_pseudo_label_stats(const rl_encoding *e, size_t count, const uint8_t *valid,
                           const int32_t *matched, const int32_t *pseudo, const int32_t *hidden,
                           rl_pl_stats *stats, rl_train_step_info *info) {
    int k = e->classes;
    int64_t n_valid = 0, kept = 0, known = 0, correct = 0;
    int64_t *counts = stats->counts; /* per class: true positives, truth, predicted */
    double *share = stats->pl_share;
    memset(counts, 0, (size_t)k * 3 * sizeof *counts);
    for (int c = 0; c < k; c++) share[c] = 0;
    for (size_t i = 0; i < count; i++) {
        if (!valid[i]) continue;
        n_valid++;
        if (rl_encoding_known(e, matched[i]))
            for (int c = 0; c < k; c++) share[c] += rl_encoding_has(e, matched[i], c);
        int32_t p = pseudo[i], h = hidden[i];
        if (p < 0) continue;
        kept++;
        if (!rl_encoding_known(e, h)) continue;
        known++;
        correct += p == h;
        for (int c = 0; c < k; c++) {
            int in_p = rl_encoding_has(e, p, c), in_h = rl_encoding_has(e, h, c);
            counts[3 * c] += in_p && in_h;
            counts[3 * c + 1] += in_h;
            counts[3 * c + 2] += in_p;
        }
    }
    double drift = 0;
    for (int c = 0; c < k; c++) {
        share[c] = n_valid ? share[c] / (double)n_valid : 0;
        drift += fabs(share[c] - stats->labeled_share[c]);
        int64_t both = counts[3 * c + 1] + counts[3 * c + 2];
        stats->pl_dice[c] = known == 0  ? NAN
                            : both == 0 ? 1.0
                                        : 2.0 * (double)counts[3 * c] / (double)both;
    }
    info->pl_kept = n_valid ? (double)kept / (double)n_valid : 0;
    info->pl_accuracy = known ? (double)correct / (double)known : NAN;
    info->pl_drift = n_valid ? 0.5 * drift : NAN;
    info->pl_dice = stats->pl_dice;
    info->pl_share = stats->pl_share;
    info->labeled_share = stats->labeled_share;
}
