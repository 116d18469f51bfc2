/* reflabel/features.h - per-pixel feature vectors of a U-Net, the space in
 * which reference matching compares pixels (Seibold et al., AAAI 2022).
 *
 * Two sources, both read from the activations of the last rl_unet_forward:
 *
 *   RL_FEATURES_LAST         the output of the last decoder block, before the
 *                            head: D = w_0 channels (the paper's choice);
 *   RL_FEATURES_HYPERCOLUMN  the decoder outputs of levels 0..depth-1, each
 *                            upsampled to full resolution, L2-normalised per
 *                            pixel, and concatenated: D = w_0 + ... + w_{depth-1}.
 *
 * Hypercolumn details (docs/PSEUDOLABELS.md):
 *  - upsampling is bilinear with half-pixel centres (PyTorch's
 *    F.interpolate(mode="bilinear", align_corners=False)): output pixel y of
 *    level l samples the level at (y + 0.5) / 2^l - 0.5, clamped to the map;
 *  - each level's upsampled vector is divided by its own L2 norm at every
 *    output pixel (a zero vector stays zero), so every level contributes a
 *    unit vector whatever its width or activation scale, and none dominates a
 *    dot product or cosine; the concatenation then has norm sqrt(levels).
 *
 * Both functions write into a caller buffer and never allocate, so they can
 * run inside a training step.
 */
#ifndef REFLABEL_FEATURES_H
#define REFLABEL_FEATURES_H

#include "reflabel/core.h"
#include "reflabel/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rl_feature_source {
    RL_FEATURES_LAST = 0,
    RL_FEATURES_HYPERCOLUMN = 1
} rl_feature_source;

/* "last" / "hypercolumn" -> source; -1 for anything else. */
int rl_feature_source_from_name(const char *name);
const char *rl_feature_source_name(rl_feature_source source);

/* D, the feature dimension of a source for a network config; 0 if the
 * source is unknown. */
int rl_feature_dim(const rl_unet_config *cfg, rl_feature_source source);

/* After rl_unet_forward on a planned (N, C, H, W) input:
 * out (N, D, H, W) float32 with D = rl_feature_dim(config, source).
 * Fails (RL_EINVAL) when the network holds no forward pass. */
int rl_unet_extract_features(const rl_unet *net, rl_feature_source source, float *out,
                             rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
