/* reflabel/synthetic.h - generated segmentation data with a known answer, for
 * tests and quick experiments: shapes of distinct classes on a noisy,
 * unevenly lit background, and striped blobs told apart by their pattern. */
#ifndef REFLABEL_SYNTHETIC_H
#define REFLABEL_SYNTHETIC_H

#include <stdint.h>

#include "reflabel/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of classes of the shapes data, background included:
 * 0 background, 1 disk, 2 square, 3 triangle. */
#define RL_SHAPES_CLASSES 4

/* Fills image (H, W) and labels (H, W) with 1-3 instances of each shape
 * class at random positions, sizes and intensities. Shapes never overlap
 * (a shape that finds no free place is left out), so the right answer is
 * always decidable from the image.
 * Each class has its own brightness band overlapping its neighbours' by
 * half, so shape matters, not only brightness; noise and a smooth
 * illumination gradient make it non-trivial. */
void rl_synth_shapes(rl_rng *rng, int h, int w, float *image, int32_t *labels);

/* Structures of the multi-label shapes data, background excluded:
 * 1 disc, 2 bar; labels are bit sets (1 disc, 2 bar, 3 both). */
#define RL_SHAPES_ML_STRUCTURES 2

/* Fills image (H, W) and labels (H, W) with one large disc and one bar that
 * crosses it, so that every image has pixels of both structures at once.
 * Intensities add up where they overlap, as attenuation does in a
 * radiograph: disc and bar have their own brightness, their overlap the sum,
 * which keeps each structure decidable from the image; noise and an
 * illumination gradient as in rl_synth_shapes. */
void rl_synth_shapes_multilabel(rl_rng *rng, int h, int w, float *image, int32_t *labels);

/* Number of classes of the stripes data, background included:
 * 0 background, 1 horizontal, 2 vertical, 3 diagonal stripes. */
#define RL_STRIPES_CLASSES 4

/* Fills image (H, W) and labels (H, W) with 1-2 striped ellipses of each
 * class on a flat noisy background. A blob's class is the orientation of its
 * stripes; their period, phase and contrast vary, and every blob has the
 * background's mean brightness. Each pixel's class is therefore decided by
 * its neighbourhood's pattern alone: visually similar regions share their
 * label, the premise of reference matching. tests/cli/test_refpl_stripes.py
 * holds refpl's defaults to account on it (docs/TRAINING.md). */
void rl_synth_stripes(rl_rng *rng, int h, int w, float *image, int32_t *labels);

#ifdef __cplusplus
}
#endif
#endif
