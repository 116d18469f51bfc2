/* reflabel/loss.h - training losses on logits (N, K, H, W).
 *
 * Each returns the loss value and, if dlogits is not NULL, ACCUMULATES
 * scale * d(loss)/d(logits) into it (scale carries a loss weight such as the
 * pseudo-label lambda, so that several losses can share one gradient buffer).
 * Softmax is computed stably (max subtracted). Sums are reduced in a fixed
 * block order, so results do not depend on the thread count.
 */
#ifndef REFLABEL_LOSS_H
#define REFLABEL_LOSS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Softmax cross-entropy. labels (N, H, W) in [0, K) or == ignore_index;
 * pixel_weights (N, H, W) or NULL (all 1).
 * loss = sum_i w_i * CE_i / (number of non-ignored pixels), i.e. PyTorch's
 * (F.cross_entropy(reduction='none', ignore_index=ii) * w).sum() / valid.sum().
 * Returns 0 when every pixel is ignored. Labels outside [0, K) that are not
 * ignore_index are treated as ignored (the data layer rejects them earlier). */
float rl_softmax_ce_loss(float *dlogits, const float *logits, const int32_t *labels,
                         const float *pixel_weights, int n, int k, int hw,
                         int ignore_index, float scale);

/* Soft Dice on softmax probabilities p, one-hot targets g, over all
 * non-ignored pixels of the batch (batch Dice, as nnU-Net):
 *   D_c = (2 sum p_c g_c + smooth) / (sum p_c + sum g_c + smooth)
 *   loss = 1 - mean over classes c in [first_class, K) of D_c.
 * first_class = 1 leaves the background out.
 * Returns 0 (no gradient) when every pixel is ignored or first_class >= K,
 * and NaN (dlogits untouched) if its O(K) scratch cannot be allocated. */
float rl_soft_dice_loss(float *dlogits, const float *logits, const int32_t *labels, int n,
                        int k, int hw, int ignore_index, int first_class, float smooth,
                        float scale);

/* Sigmoid binary cross-entropy for multi-label data. targets (N, K, H, W) in
 * {0, 1}; valid (N, H, W) or NULL: pixels with valid == 0 are ignored.
 * loss = sum over valid pixels and classes of BCE / (valid pixels * K),
 * with BCE(x, t) = max(x, 0) - x t + log1p(exp(-|x|)). Returns 0 when no
 * pixel is valid. */
float rl_sigmoid_bce_loss(float *dlogits, const float *logits, const float *targets,
                          const uint8_t *valid, int n, int k, int hw, float scale);

/* Soft Dice on sigmoid probabilities, per class over the batch, as above,
 * with every class in the mean (sum g uses the targets as given). Returns 0
 * when no pixel is valid, NaN if its O(K) scratch cannot be allocated. */
float rl_sigmoid_dice_loss(float *dlogits, const float *logits, const float *targets,
                           const uint8_t *valid, int n, int k, int hw, float smooth,
                           float scale);

/* Consistency loss of mean teacher: squared error between the softmax of
 * logits and target probabilities (N, K, H, W) (the teacher's softmax),
 * averaged over the valid pixels and the K classes; valid (N, H, W) or NULL.
 * The targets receive no gradient. Returns 0 when no pixel is valid. */
float rl_softmax_mse_loss(float *dlogits, const float *logits, const float *target_probs,
                          const uint8_t *valid, int n, int k, int hw, float scale);

/* probs (N, K, H, W) = softmax over K of logits, computed stably. */
void rl_softmax(float *probs, const float *logits, int n, int k, int hw);

#ifdef __cplusplus
}
#endif
#endif
