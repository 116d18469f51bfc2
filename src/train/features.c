/* Per-pixel feature vectors of a U-Net for reference matching. */
#include <math.h>
#include <string.h>

#include "reflabel/features.h"

int rl_feature_source_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "last")) return RL_FEATURES_LAST;
    if (!strcmp(name, "hypercolumn")) return RL_FEATURES_HYPERCOLUMN;
    return -1;
}

const char *rl_feature_source_name(rl_feature_source source) {
    return source == RL_FEATURES_HYPERCOLUMN ? "hypercolumn" : "last";
}

int rl_feature_dim(const rl_unet_config *cfg, rl_feature_source source) {
    if (source == RL_FEATURES_LAST) return rl_unet_width(cfg, 0);
    if (source != RL_FEATURES_HYPERCOLUMN) return 0;
    int d = 0;
    for (int l = 0; l < cfg->depth; l++) d += rl_unet_width(cfg, l);
    return d;
}

/* Pixels whose squared norms are accumulated together: one row is processed
 * in chunks of this many columns so that the norms live on the stack (the
 * functions must not allocate) and each channel is read as a contiguous run. */
#define ROW_CHUNK 256

/* One image row y of one level, upsampled and normalised:
 *   level (C, h, w) of one image  ->  out (C, H, W) of the same image, row y.
 * Bilinear with half-pixel centres (align_corners = False) for a scale of
 * 2^level; level 0 is a plain copy. */
static void hypercolumn_row(const float *level_map, int c, int h, int w, int level,
                            float *out, int H, int W, int y) {
    size_t in_plane = (size_t)h * w, out_plane = (size_t)H * W;
    float scale = 1.0f / (float)(1 << level);
    /* source row pair and weight */
    float sy = level ? ((float)y + 0.5f) * scale - 0.5f : (float)y;
    if (sy < 0) sy = 0;
    int y0 = (int)sy;
    if (y0 > h - 1) y0 = h - 1;
    int y1 = y0 < h - 1 ? y0 + 1 : y0;
    float fy = sy - (float)y0;
    int x_start = 0;
    while (x_start < W) {
        int n = W - x_start < ROW_CHUNK ? W - x_start : ROW_CHUNK;
        int x0s[ROW_CHUNK], x1s[ROW_CHUNK];
        float fxs[ROW_CHUNK], sq[ROW_CHUNK];
        for (int i = 0; i < n; i++) {
            int x = x_start + i;
            float sx = level ? ((float)x + 0.5f) * scale - 0.5f : (float)x;
            if (sx < 0) sx = 0;
            int x0 = (int)sx;
            if (x0 > w - 1) x0 = w - 1;
            x0s[i] = x0;
            x1s[i] = x0 < w - 1 ? x0 + 1 : x0;
            fxs[i] = sx - (float)x0;
            sq[i] = 0;
        }
        for (int ch = 0; ch < c; ch++) {
            const float *r0 = level_map + (size_t)ch * in_plane + (size_t)y0 * w;
            const float *r1 = level_map + (size_t)ch * in_plane + (size_t)y1 * w;
            float *o = out + (size_t)ch * out_plane + (size_t)y * W + x_start;
            for (int i = 0; i < n; i++) {
                float top = r0[x0s[i]] + fxs[i] * (r0[x1s[i]] - r0[x0s[i]]);
                float bottom = r1[x0s[i]] + fxs[i] * (r1[x1s[i]] - r1[x0s[i]]);
                float v = top + fy * (bottom - top);
                o[i] = v;
                sq[i] += v * v;
            }
        }
        for (int i = 0; i < n; i++) sq[i] = sq[i] > 0 ? 1.0f / sqrtf(sq[i]) : 0.0f;
        for (int ch = 0; ch < c; ch++) {
            float *o = out + (size_t)ch * out_plane + (size_t)y * W + x_start;
            for (int i = 0; i < n; i++) o[i] *= sq[i];
        }
        x_start += n;
    }
}

int rl_unet_extract_features(const rl_unet *net, rl_feature_source source, float *out,
                             rl_error *err) {
    const rl_unet_config *cfg = rl_unet_get_config(net);
    rl_tensor top = rl_unet_features(net);
    if (!top.data) return rl_error_set(err, RL_EINVAL, "features: the network holds no forward pass");
    if (source == RL_FEATURES_LAST) {
        memcpy(out, top.data, rl_tensor_numel(&top) * sizeof *out);
        return RL_OK;
    }
    if (source != RL_FEATURES_HYPERCOLUMN)
        return rl_error_set(err, RL_EINVAL, "features: unknown source %d", (int)source);
    int N = top.n, H = top.h, W = top.w, D = rl_feature_dim(cfg, source);
    size_t plane = (size_t)H * W;
    int channel_base = 0;
    for (int l = 0; l < cfg->depth; l++) {
        rl_tensor t = rl_unet_decoder_output(net, l);
        /* one (image, row) per iteration: rows are independent */
#pragma omp parallel for schedule(static)
        for (int row = 0; row < N * H; row++) {
            int n = row / H, y = row % H;
            const float *map = t.data + (size_t)n * t.c * t.h * t.w;
            float *o = out + ((size_t)n * D + (size_t)channel_base) * plane;
            hypercolumn_row(map, t.c, t.h, t.w, l, o, H, W, y);
        }
        channel_base += t.c;
    }
    return RL_OK;
}
