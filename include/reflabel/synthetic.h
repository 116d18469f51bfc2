/* reflabel/synthetic.h - generated segmentation data with a known answer, for
 * tests and quick experiments: shapes of distinct classes on a noisy,
 * unevenly lit background. */
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

#ifdef __cplusplus
}
#endif
#endif
