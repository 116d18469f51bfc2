/* Segmentation losses on logits (N, K, HW).
 *
 * Reductions are deterministic: the N * HW pixels are cut into a fixed
 * number of blocks (independent of the thread count), each block sums in
 * double into its own slot, and the slots are added in block order. The same
 * inputs therefore give bit-identical losses and gradients with any number of
 * threads, which keeps training runs reproducible.
 */
#include "reflabel/loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOSS_BLOCKS 64
/* Below this many pixels (or BCE elements) a parallel region costs more
 * than it saves; the block order, and so the result, is the same either way. */
#define LOSS_PARALLEL_MIN 4096

/* First pixel of block b when total pixels are cut into LOSS_BLOCKS blocks. */
static size_t block_begin(size_t total, int b) {
    return total * (size_t)b / LOSS_BLOCKS;
}

static int label_is_valid(int32_t label, int k, int ignore_index) {
    return label != ignore_index && label >= 0 && label < k;
}

/* Numerically stable softmax over the k logits of one pixel, which lie hw
 * floats apart: probs[j] = exp(z_j - max) / sum. */
static void softmax_pixel(float *probs, const float *z, int k, size_t hw) {
    float zmax = z[0];
    for (int j = 1; j < k; j++) zmax = fmaxf(zmax, z[(size_t)j * hw]);
    float sum = 0.0f;
    for (int j = 0; j < k; j++) {
        probs[j] = expf(z[(size_t)j * hw] - zmax);
        sum += probs[j];
    }
    const float inv = 1.0f / sum;
    for (int j = 0; j < k; j++) probs[j] *= inv;
}

/* The pixels that a loss with a valid mask (sigmoid BCE and Dice, softmax
 * MSE) averages over: those flagged non-zero, or all total without a mask. */
static size_t count_valid(const uint8_t *valid, size_t total) {
    if (!valid) return total;
    size_t count = 0;
    for (size_t i = 0; i < total; i++) count += valid[i] != 0;
    return count;
}

/* Sigmoid that never overflows: exp of a non-positive number only. */
static float sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

/* ---- softmax cross-entropy ----------------------------------------------------- */

/* CE_i = logsumexp(z_i) - z_i[label]; d CE_i / d z_i = softmax(z_i) - onehot. */
float rl_softmax_ce_loss(float *dlogits, const float *logits, const int32_t *labels,
                         const float *pixel_weights, int n, int k, int hw,
                         int ignore_index, float scale) {
    const size_t total = (size_t)n * (size_t)hw;
    size_t valid = 0;
    for (size_t i = 0; i < total; i++) valid += (size_t)label_is_valid(labels[i], k, ignore_index);
    if (valid == 0) return 0.0f;
    const float grad_scale = scale / (float)valid;
    double partial[LOSS_BLOCKS] = {0};
#pragma omp parallel for schedule(static) if (total >= LOSS_PARALLEL_MIN)
    for (int b = 0; b < LOSS_BLOCKS; b++) {
        double loss = 0.0;
        for (size_t i = block_begin(total, b); i < block_begin(total, b + 1); i++) {
            const int32_t label = labels[i];
            if (!label_is_valid(label, k, ignore_index)) continue;
            const size_t s = i / (size_t)hw, p = i % (size_t)hw;
            const size_t base = s * (size_t)k * (size_t)hw + p;
            const float *z = logits + base;
            const float w = pixel_weights ? pixel_weights[i] : 1.0f;
            /* the log-sum-exp without storing probabilities; they are
             * recomputed below only when a gradient is wanted */
            float zmax = z[0];
            for (int j = 1; j < k; j++) zmax = fmaxf(zmax, z[(size_t)j * (size_t)hw]);
            float sum = 0.0f;
            for (int j = 0; j < k; j++) sum += expf(z[(size_t)j * (size_t)hw] - zmax);
            loss += (double)w * (double)(logf(sum) + zmax - z[(size_t)label * (size_t)hw]);
            if (!dlogits) continue;
            const float coef = grad_scale * w, inv_sum = 1.0f / sum;
            float *g = dlogits + base;
            for (int j = 0; j < k; j++) {
                const float pj = expf(z[(size_t)j * (size_t)hw] - zmax) * inv_sum;
                g[(size_t)j * (size_t)hw] += coef * (pj - (j == label ? 1.0f : 0.0f));
            }
        }
        partial[b] = loss;
    }
    double loss = 0.0;
    for (int b = 0; b < LOSS_BLOCKS; b++) loss += partial[b];
    return (float)(loss / (double)valid);
}

/* ---- Dice, shared by the softmax and sigmoid variants --------------------------- *
 * Per class c over the counted pixels: I = sum p g, P = sum p, G = sum g,
 * D = (2 I + smooth) / (P + G + smooth). With C the number of classes in the
 * mean, loss = 1 - sum D / C and
 *   d loss / d p_c(i) = -(2 g_c(i) - D_c) / (C (P + G + smooth)) = alpha_c (2 g - D_c). */
typedef struct dice_sums {
    double *inter, *pred, *target; /* (K) each */
} dice_sums;

/* Per-block sums: LOSS_BLOCKS slots of 3K doubles, then the K-class result. */
static double *dice_alloc(int k) {
    return calloc((size_t)(LOSS_BLOCKS + 1) * 3u * (size_t)k, sizeof(double));
}

static dice_sums dice_slot(double *buf, int k, int slot) {
    double *base = buf + (size_t)slot * 3u * (size_t)k;
    dice_sums s = {base, base + k, base + 2 * k};
    return s;
}

/* Adds the block slots in order into the final slot (index LOSS_BLOCKS). */
static dice_sums dice_reduce(double *buf, int k) {
    dice_sums total = dice_slot(buf, k, LOSS_BLOCKS);
    for (int b = 0; b < LOSS_BLOCKS; b++) {
        dice_sums part = dice_slot(buf, k, b);
        for (int c = 0; c < k; c++) {
            total.inter[c] += part.inter[c];
            total.pred[c] += part.pred[c];
            total.target[c] += part.target[c];
        }
    }
    return total;
}

/* Fills dice[c] = D_c and alpha[c] for classes [first, k) (alpha 0 below
 * first) and returns the loss 1 - mean D. */
static double dice_finish(const dice_sums *s, int k, int first, float smooth, float *dice,
                          float *alpha) {
    const double classes = (double)(k - first);
    double sum_dice = 0.0;
    for (int c = 0; c < k; c++) {
        const double denom = s->pred[c] + s->target[c] + smooth;
        const double d = (2.0 * s->inter[c] + smooth) / denom;
        dice[c] = (float)d;
        alpha[c] = c >= first ? (float)(-1.0 / (classes * denom)) : 0.0f;
        if (c >= first) sum_dice += d;
    }
    return 1.0 - sum_dice / classes;
}

/* Scratch of the Dice losses: the block sums plus, per block, k floats of
 * probabilities, and k floats each of dice and alpha. Up to
 * DICE_STACK_CLASSES classes it lives on the caller's stack (about 29 KiB),
 * so that a training step with a Dice loss never calls the allocator; more
 * classes fall back to the heap. */
#define DICE_STACK_CLASSES 16

typedef struct dice_work {
    double *sums;
    float *probs, *dice, *alpha;
    int on_heap;
} dice_work;

typedef struct dice_stack {
    double sums[(LOSS_BLOCKS + 1) * 3 * DICE_STACK_CLASSES];
    float probs[(LOSS_BLOCKS + 2) * DICE_STACK_CLASSES];
} dice_stack;

static int dice_work_init(dice_work *w, dice_stack *stack, int k) {
    w->on_heap = k > DICE_STACK_CLASSES;
    if (w->on_heap) {
        w->sums = dice_alloc(k);
        w->probs = malloc(((size_t)LOSS_BLOCKS + 2u) * (size_t)k * sizeof(float));
        if (!w->sums || !w->probs) {
            free(w->sums);
            free(w->probs);
            return -1;
        }
    } else {
        memset(stack->sums, 0, sizeof stack->sums);
        w->sums = stack->sums;
        w->probs = stack->probs;
    }
    w->dice = w->probs + (size_t)LOSS_BLOCKS * (size_t)k;
    w->alpha = w->dice + k;
    return 0;
}

static void dice_work_free(dice_work *w) {
    if (!w->on_heap) return;
    free(w->sums);
    free(w->probs);
}

/* ---- softmax soft Dice ----------------------------------------------------------- *
 * Through the softmax, d loss / d z_j = p_j (a_j - sum_c p_c a_c) with
 * a_c = d loss / d p_c. */
float rl_soft_dice_loss(float *dlogits, const float *logits, const int32_t *labels, int n,
                        int k, int hw, int ignore_index, int first_class, float smooth,
                        float scale) {
    if (first_class < 0) first_class = 0;
    if (first_class >= k) return 0.0f;
    const size_t total = (size_t)n * (size_t)hw;
    size_t valid = 0;
    for (size_t i = 0; i < total; i++) valid += (size_t)label_is_valid(labels[i], k, ignore_index);
    if (valid == 0) return 0.0f;
    dice_work w;
    dice_stack stack;
    if (dice_work_init(&w, &stack, k) != 0) return NAN;

#pragma omp parallel for schedule(static) if (total >= LOSS_PARALLEL_MIN)
    for (int b = 0; b < LOSS_BLOCKS; b++) {
        dice_sums s = dice_slot(w.sums, k, b);
        float *probs = w.probs + (size_t)b * (size_t)k;
        for (size_t i = block_begin(total, b); i < block_begin(total, b + 1); i++) {
            const int32_t label = labels[i];
            if (!label_is_valid(label, k, ignore_index)) continue;
            const size_t sample = i / (size_t)hw, p = i % (size_t)hw;
            softmax_pixel(probs, logits + sample * (size_t)k * (size_t)hw + p, k, (size_t)hw);
            for (int c = 0; c < k; c++) s.pred[c] += probs[c];
            s.inter[label] += probs[label];
            s.target[label] += 1.0;
        }
    }
    dice_sums sums = dice_reduce(w.sums, k);
    const double loss = dice_finish(&sums, k, first_class, smooth, w.dice, w.alpha);

    if (dlogits) {
#pragma omp parallel for schedule(static) if (total >= LOSS_PARALLEL_MIN)
        for (int b = 0; b < LOSS_BLOCKS; b++) {
            float *probs = w.probs + (size_t)b * (size_t)k;
            for (size_t i = block_begin(total, b); i < block_begin(total, b + 1); i++) {
                const int32_t label = labels[i];
                if (!label_is_valid(label, k, ignore_index)) continue;
                const size_t sample = i / (size_t)hw, p = i % (size_t)hw;
                const size_t base = sample * (size_t)k * (size_t)hw + p;
                softmax_pixel(probs, logits + base, k, (size_t)hw);
                /* a_c = alpha_c (2 g_c - D_c); dot = sum_c p_c a_c */
                float dot = 0.0f;
                for (int c = first_class; c < k; c++) {
                    const float a = w.alpha[c] * ((c == label ? 2.0f : 0.0f) - w.dice[c]);
                    dot += probs[c] * a;
                }
                float *g = dlogits + base;
                for (int c = 0; c < k; c++) {
                    const float a =
                        c >= first_class ? w.alpha[c] * ((c == label ? 2.0f : 0.0f) - w.dice[c])
                                         : 0.0f;
                    g[(size_t)c * (size_t)hw] += scale * probs[c] * (a - dot);
                }
            }
        }
    }
    dice_work_free(&w);
    return (float)loss;
}

/* ---- sigmoid binary cross-entropy ------------------------------------------------ *
 * BCE(x, t) = max(x, 0) - x t + log1p(exp(-|x|)) (never overflows);
 * d BCE / d x = sigmoid(x) - t. */
float rl_sigmoid_bce_loss(float *dlogits, const float *logits, const float *targets,
                          const uint8_t *valid, int n, int k, int hw, float scale) {
    const size_t total = (size_t)n * (size_t)hw;
    const size_t count = count_valid(valid, total);
    if (count == 0) return 0.0f;
    const double denom = (double)count * (double)k;
    const float grad_scale = (float)(scale / denom);
    /* blocks over the flat (N, K, HW) elements keep every access contiguous */
    const size_t elements = total * (size_t)k;
    const size_t plane = (size_t)k * (size_t)hw;
    double partial[LOSS_BLOCKS] = {0};
#pragma omp parallel for schedule(static) if (elements >= LOSS_PARALLEL_MIN)
    for (int b = 0; b < LOSS_BLOCKS; b++) {
        double loss = 0.0;
        for (size_t e = block_begin(elements, b); e < block_begin(elements, b + 1); e++) {
            if (valid && !valid[(e / plane) * (size_t)hw + e % (size_t)hw]) continue;
            const float x = logits[e], t = targets[e];
            loss += (double)(fmaxf(x, 0.0f) - x * t + log1pf(expf(-fabsf(x))));
            if (dlogits) dlogits[e] += grad_scale * (sigmoid(x) - t);
        }
        partial[b] = loss;
    }
    double loss = 0.0;
    for (int b = 0; b < LOSS_BLOCKS; b++) loss += partial[b];
    return (float)(loss / denom);
}

/* ---- sigmoid soft Dice ----------------------------------------------------------- *
 * Every class in the mean; through the sigmoid, d p / d x = p (1 - p). */
float rl_sigmoid_dice_loss(float *dlogits, const float *logits, const float *targets,
                           const uint8_t *valid, int n, int k, int hw, float smooth,
                           float scale) {
    const size_t total = (size_t)n * (size_t)hw;
    const size_t count = count_valid(valid, total);
    if (count == 0 || k <= 0) return 0.0f;
    dice_work w;
    dice_stack stack;
    if (dice_work_init(&w, &stack, k) != 0) return NAN;

#pragma omp parallel for schedule(static) if (total >= LOSS_PARALLEL_MIN)
    for (int b = 0; b < LOSS_BLOCKS; b++) {
        dice_sums s = dice_slot(w.sums, k, b);
        for (size_t i = block_begin(total, b); i < block_begin(total, b + 1); i++) {
            if (valid && !valid[i]) continue;
            const size_t sample = i / (size_t)hw, p = i % (size_t)hw;
            const size_t base = sample * (size_t)k * (size_t)hw + p;
            for (int c = 0; c < k; c++) {
                const size_t e = base + (size_t)c * (size_t)hw;
                const float prob = sigmoid(logits[e]);
                s.pred[c] += prob;
                s.inter[c] += prob * targets[e];
                s.target[c] += targets[e];
            }
        }
    }
    dice_sums sums = dice_reduce(w.sums, k);
    const double loss = dice_finish(&sums, k, 0, smooth, w.dice, w.alpha);

    if (dlogits) {
#pragma omp parallel for schedule(static) if (total >= LOSS_PARALLEL_MIN)
        for (int b = 0; b < LOSS_BLOCKS; b++) {
            for (size_t i = block_begin(total, b); i < block_begin(total, b + 1); i++) {
                if (valid && !valid[i]) continue;
                const size_t sample = i / (size_t)hw, p = i % (size_t)hw;
                const size_t base = sample * (size_t)k * (size_t)hw + p;
                for (int c = 0; c < k; c++) {
                    const size_t e = base + (size_t)c * (size_t)hw;
                    const float prob = sigmoid(logits[e]);
                    const float a = w.alpha[c] * (2.0f * targets[e] - w.dice[c]);
                    dlogits[e] += scale * a * prob * (1.0f - prob);
                }
            }
        }
    }
    dice_work_free(&w);
    return (float)loss;
}

/* ---- softmax MSE (mean-teacher consistency) ------------------------------------ *
 * loss = sum_i sum_c (p_c(i) - t_c(i))^2 / (valid * K); with a_c = 2 (p_c - t_c) /
 * (valid K), d loss / d z_j = p_j (a_j - sum_c p_c a_c) through the softmax. */
void rl_softmax(float *probs, const float *logits, int n, int k, int hw) {
    const size_t total = (size_t)n * (size_t)hw;
#pragma omp parallel for schedule(static) if (total >= LOSS_PARALLEL_MIN)
    for (size_t i = 0; i < total; i++) {
        const size_t base = (i / (size_t)hw) * (size_t)k * (size_t)hw + i % (size_t)hw;
        float zmax = logits[base];
        for (int c = 1; c < k; c++) zmax = fmaxf(zmax, logits[base + (size_t)c * hw]);
        double sum = 0.0;
        for (int c = 0; c < k; c++) sum += exp((double)(logits[base + (size_t)c * hw] - zmax));
        for (int c = 0; c < k; c++)
            probs[base + (size_t)c * hw] =
                (float)(exp((double)(logits[base + (size_t)c * hw] - zmax)) / sum);
    }
}

float rl_softmax_mse_loss(float *dlogits, const float *logits, const float *target_probs,
                          const uint8_t *valid, int n, int k, int hw, float scale) {
    const size_t total = (size_t)n * (size_t)hw;
    const size_t count = count_valid(valid, total);
    if (count == 0) return 0.0f;
    const double norm = 1.0 / ((double)count * (double)k);
    /* The gradient pass is parallel (pixels are independent); the loss is
     * summed serially so that its value does not depend on the thread count. */
    if (dlogits) {
#pragma omp parallel for schedule(static) if (total >= LOSS_PARALLEL_MIN)
        for (size_t i = 0; i < total; i++) {
            if (valid && !valid[i]) continue;
            const size_t base = (i / (size_t)hw) * (size_t)k * (size_t)hw + i % (size_t)hw;
            float zmax = logits[base];
            for (int c = 1; c < k; c++) zmax = fmaxf(zmax, logits[base + (size_t)c * hw]);
            double sum = 0.0;
            for (int c = 0; c < k; c++) sum += exp((double)(logits[base + (size_t)c * hw] - zmax));
            double pa = 0.0; /* sum_c p_c a_c */
            for (int c = 0; c < k; c++) {
                const size_t at = base + (size_t)c * hw;
                const double p = exp((double)(logits[at] - zmax)) / sum;
                pa += p * 2.0 * (p - (double)target_probs[at]) * norm;
            }
            for (int c = 0; c < k; c++) {
                const size_t at = base + (size_t)c * hw;
                const double p = exp((double)(logits[at] - zmax)) / sum;
                const double a = 2.0 * (p - (double)target_probs[at]) * norm;
                dlogits[at] += scale * (float)(p * (a - pa));
            }
        }
    }
    double loss = 0.0;
    for (size_t i = 0; i < total; i++) {
        if (valid && !valid[i]) continue;
        const size_t base = (i / (size_t)hw) * (size_t)k * (size_t)hw + i % (size_t)hw;
        float zmax = logits[base];
        for (int c = 1; c < k; c++) zmax = fmaxf(zmax, logits[base + (size_t)c * hw]);
        double sum = 0.0;
        for (int c = 0; c < k; c++) sum += exp((double)(logits[base + (size_t)c * hw] - zmax));
        for (int c = 0; c < k; c++) {
            const size_t at = base + (size_t)c * hw;
            const double d = exp((double)(logits[at] - zmax)) / sum - (double)target_probs[at];
            loss += d * d;
        }
    }
    return (float)(loss * norm);
}
