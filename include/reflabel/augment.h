/* reflabel/augment.h - intensity normalisation and random 2D augmentation.
 *
 * Images are float (C, H, W), labels int32 (H, W), multi-label masks float
 * (K, H, W) with values 0/1, all contiguous, W fastest. Augmentation works in
 * place and draws every random number from the rl_rng passed in, so a seed
 * reproduces a run exactly.
 */
#ifndef REFLABEL_AUGMENT_H
#define REFLABEL_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-image z-score: x <- (x - mean) / std. When 0 <= clip_low_pct <
 * clip_high_pct <= 100 and not (0, 100), values are first clipped to those
 * percentiles of x (numpy's linear-interpolation percentile; e.g. 0.5 and
 * 99.5 tame outliers as nnU-Net does for CT). mean and std (population) are
 * taken after clipping. A constant image (std at most 1e-6 of its largest
 * magnitude, i.e. float rounding noise) becomes all zeros instead of NaN. Errors: non-finite input
 * (RL_ENONFINITE), bad percentiles (RL_EINVAL), no memory for the
 * percentile copy (RL_ENOMEM). */
int rl_zscore_normalize(float *x, size_t n, float clip_low_pct, float clip_high_pct,
                        rl_error *err);

/* Each transform fires independently with its probability p_*. */
typedef struct rl_augment_config {
    /* Spatial: the same transform moves image, labels and multi-labels. */
    float p_flip_x;        /* mirror along W */
    float p_flip_y;        /* mirror along H */
    float p_rot90;         /* rotate by 90, 180 or 270 degrees (uniform); only
                              when H == W, since buffers keep their shape */
    float p_affine;        /* rotation + isotropic scale + translation */
    float max_rotation_deg;        /* angle uniform in [-max, max] */
    float scale_min, scale_max;    /* zoom factor uniform in [min, max] */
    float max_translate;           /* shift uniform in [-max, max] * side, per axis */
    int32_t label_outside; /* label for pixels the affine pulls in from
                              outside the image (background or ignore) */
    /* Intensity: image only, per channel. */
    float p_scale;                 /* x <- x * s */
    float scale_lo, scale_hi;      /* s uniform in [lo, hi] */
    float p_shift;                 /* x <- x + b */
    float max_shift;               /* b uniform in [-max, max] */
    float p_gamma;                 /* gamma on the channel's min-max range */
    float gamma_lo, gamma_hi;      /* half the time in [lo, 1), else [1, hi] */
    float p_noise;                 /* additive Gaussian noise */
    float max_noise_std;           /* sigma uniform in [0, max] */
} rl_augment_config;

/* nnU-Net-like defaults for z-scored MR/CT slices: flips 0.5 each, no
 * rot90 (anatomy has a canonical orientation), affine 0.3 (+-15 deg, scale
 * 0.85..1.15, shift +-5%), scale 0.15 (0.75..1.25), shift 0.15 (+-0.1),
 * gamma 0.3 (0.7..1.5), noise 0.15 (sigma up to 0.1); label_outside 0. */
rl_augment_config rl_augment_default(void);

/* Checks ranges (probabilities in [0, 1], lo <= hi, finite values, scale
 * > 0, gamma > 0); RL_EINVAL naming the field otherwise. */
int rl_augment_check(const rl_augment_config *cfg, rl_error *err);

/* Bytes of scratch rl_augment_apply needs: one (H, W) plane of 4-byte
 * values. Returns 0 when h * w overflows. */
size_t rl_augment_scratch_bytes(int h, int w);

/* Applies one random augmentation in place, in this order: flips, rot90,
 * affine (bilinear for the image with 0 outside, nearest for labels with
 * cfg->label_outside and for multi-labels with 0), then the intensity
 * transforms to the image only: scale, shift, gamma, noise.
 *   image      (c, h, w)
 *   labels     (h, w) or NULL
 *   multilabel (k, h, w) or NULL (k ignored then)
 *   scratch    rl_augment_scratch_bytes(h, w) bytes from malloc (it holds
 *              a float or an int32 plane in turn); contents are clobbered.
 * The random numbers drawn depend only on cfg, h, w and c (not on the pixel
 * values), so the same rng state gives the same transform for any image of
 * the same shape. */
int rl_augment_apply(const rl_augment_config *cfg, rl_rng *rng, float *image, int c, int h,
                     int w, int32_t *labels, float *multilabel, int k, void *scratch,
                     rl_error *err);

/* ---- strong views (weak-to-strong consistency: FixMatch, UniMatch) ---------
 *
 * A strong view is the weak view (rl_augment_apply's output) with stronger
 * photometric perturbation and, across the images of a batch, CutMix. The
 * photometric part never moves a pixel, so the targets made from the weak
 * view stay aligned with the strong one; CutMix pastes the same box into the
 * image and into its targets (rl_box_paste). Ranges follow UniMatch's
 * medical setting (ColorJitter 0.5 with p 0.8, Gaussian blur sigma 0.1-2 px
 * with p 0.5, CutMix with p 0.5 of 2-40% of the image), plus gamma and
 * noise wider than rl_augment_default's. */
typedef struct rl_strong_config {
    float p_jitter;              /* brightness and contrast, in random order */
    float brightness, contrast;  /* factor uniform in [1 - v, 1 + v], v in [0, 1) */
    float p_gamma;               /* gamma on the channel's min-max range */
    float gamma_lo, gamma_hi;    /* half the time in [lo, 1), else [1, hi] */
    float p_blur;                /* Gaussian blur */
    float blur_sigma_lo, blur_sigma_hi; /* sigma in pixels, uniform */
    float p_noise;               /* additive Gaussian noise */
    float max_noise_std;         /* sigma uniform in [0, max] (z-score units) */
    float p_cutmix;              /* rl_cutmix_draw gives a box */
    float cutmix_area_lo, cutmix_area_hi;   /* box area / image area, uniform */
    float cutmix_ratio_lo, cutmix_ratio_hi; /* box height / width, uniform */
} rl_strong_config;

/* jitter 0.8 (brightness 0.5, contrast 0.5), gamma 0.5 (0.5..2), blur 0.5
 * (sigma 0.1..2 px), noise 0.5 (sigma up to 0.2), CutMix 0.5 (area 0.02..0.4,
 * height/width 0.3..3.33). */
rl_strong_config rl_strong_default(void);

/* Probabilities in [0, 1], factors in [0, 1), ordered finite positive
 * ranges, gamma range containing 1, areas in (0, 1]; RL_EINVAL naming the
 * field otherwise. */
int rl_strong_check(const rl_strong_config *cfg, rl_error *err);

/* The photometric part of a strong view, in place, per channel: on the
 * channel's min-max range [lo, hi], u = (x - lo) / (hi - lo) takes brightness
 * (u * b) and contrast (c u + (1 - c) mean(u)) in random order, each clamped
 * to [0, 1], then gamma (u^g), and x = lo + (hi - lo) u; then blur, then
 * noise. Each output pixel depends on the same input pixel alone (and, with
 * blur, on its neighbours symmetrically): no pixel moves. scratch:
 * rl_augment_scratch_bytes(h, w) bytes. As for rl_augment_apply, the random
 * numbers drawn depend only on cfg, c, h and w. */
int rl_strong_apply(const rl_strong_config *cfg, rl_rng *rng, float *image, int c, int h, int w,
                    void *scratch, rl_error *err);

/* A rectangle of an (h, w) image; h == 0 (or w == 0) is no box. */
typedef struct rl_box {
    int y, x, h, w;
} rl_box;

/* With probability p_cutmix, a box of area uniform in [area_lo, area_hi] of
 * the image and height/width ratio uniform in [ratio_lo, ratio_hi], placed
 * uniformly where it fits (redrawn until it does, as UniMatch does, at most
 * 64 times, then shrunk to fit); else no box. Always draws the same number
 * of random numbers for one cfg, h and w, whether a box comes out or not,
 * so that the draws after it do not depend on the outcome. */
rl_box rl_cutmix_draw(const rl_strong_config *cfg, rl_rng *rng, int h, int w);

/* dst[p, y, x] = src[p, y, x] inside the box, for `planes` planes of (h, w)
 * elements of elem_size bytes: one call for an image (C float planes), one
 * for each of its targets (a class map, a confidence map, K probability
 * planes), so that image and targets are mixed with the same box. */
void rl_box_paste(rl_box box, void *dst, const void *src, int planes, int h, int w,
                  size_t elem_size);

#ifdef __cplusplus
}
#endif
#endif
