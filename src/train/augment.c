/* Per-image z-score normalisation and random 2D augmentation.
 *
 * Spatial transforms are drawn once per call and applied to the image, the
 * label map and the multi-label masks alike, so they stay aligned: flips and
 * rot90 are exact pixel permutations; the affine resamples (bilinear for the
 * image, nearest for labels, which keeps labels in their original value
 * set). Intensity transforms touch the image only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/augment.h"

/* M_PI is not part of C11. */
static const double PI = 3.14159265358979323846;

/* ---- z-score ------------------------------------------------------------- */

static void swap_floats(float *a, float *b) {
    const float t = *a;
    *a = *b;
    *b = t;
}

/* Rearranges v so that v[k] is the k-th smallest, everything before it is
 * <= v[k] and everything after it >= v[k] (quickselect, Hoare partition
 * around a median of three); O(n) on average. */
static float select_kth(float *v, ptrdiff_t n, ptrdiff_t k) {
    ptrdiff_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const ptrdiff_t mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo]) swap_floats(&v[mid], &v[lo]);
        if (v[hi] < v[lo]) swap_floats(&v[hi], &v[lo]);
        if (v[hi] < v[mid]) swap_floats(&v[hi], &v[mid]);
        const float pivot = v[mid];
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                swap_floats(&v[i], &v[j]);
                i++;
                j--;
            }
        }
        /* Now v[lo..j] <= pivot <= v[i..hi], and v[j+1..i-1] == pivot. */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* numpy.percentile(v, pct) with the default 'linear' method; reorders v. */
static double percentile_linear(float *v, size_t n, double pct) {
    const double index = pct / 100.0 * (double)(n - 1);
    const size_t lo = (size_t)floor(index);
    const double a = select_kth(v, (ptrdiff_t)n, (ptrdiff_t)lo);
    const double t = index - (double)lo;
    if (t == 0.0 || lo + 1 >= n) return a;
    /* select_kth left only values >= v[lo] after lo: the next order
     * statistic is their minimum. */
    float b = v[lo + 1];
    for (size_t i = lo + 2; i < n; i++)
        if (v[i] < b) b = v[i];
    const double diff = (double)b - a;
    return t >= 0.5 ? (double)b - diff * (1.0 - t) : a + diff * t;
}

static int clip_to_percentiles(float *x, size_t n, float low_pct, float high_pct, rl_error *err) {
    float *copy = malloc(sizeof(float) * n);
    if (!copy)
        return rl_error_set(err, RL_ENOMEM, "z-score: out of memory for a %zu-value copy", n);
    memcpy(copy, x, sizeof(float) * n);
    const float lo = (float)percentile_linear(copy, n, low_pct);
    const float hi = (float)percentile_linear(copy, n, high_pct);
    free(copy);
    for (size_t i = 0; i < n; i++) x[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
    return 0;
}

int rl_zscore_normalize(float *x, size_t n, float clip_low_pct, float clip_high_pct,
                        rl_error *err) {
    if (!(clip_low_pct >= 0.0f && clip_low_pct < clip_high_pct && clip_high_pct <= 100.0f))
        return rl_error_set(err, RL_EINVAL,
                            "z-score: clip percentiles %g, %g must satisfy 0 <= low < high <= 100",
                            clip_low_pct, clip_high_pct);
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return rl_error_set(err, RL_ENONFINITE, "z-score: value %zu of %zu is %g", i, n,
                                x[i]);
    if (clip_low_pct > 0.0f || clip_high_pct < 100.0f) {
        const int rc = clip_to_percentiles(x, n, clip_low_pct, clip_high_pct, err);
        if (rc) return rc;
    }
    double sum = 0, magnitude = 0;
    for (size_t i = 0; i < n; i++) {
        sum += x[i];
        if (fabs(x[i]) > magnitude) magnitude = fabs(x[i]);
    }
    const double mean = sum / (double)n;
    double sq = 0;
    for (size_t i = 0; i < n; i++) sq += ((double)x[i] - mean) * ((double)x[i] - mean);
    const double std = sqrt(sq / (double)n);
    /* Float inputs carry ~1e-7 relative precision: a spread below 1e-6 of
     * the largest value is rounding noise of a constant image, and dividing
     * by it would blow the noise up (or give NaN at std == 0). */
    if (std <= 1e-6 * magnitude || std == 0.0) {
        for (size_t i = 0; i < n; i++) x[i] = 0.0f;
        return 0;
    }
    for (size_t i = 0; i < n; i++) x[i] = (float)(((double)x[i] - mean) / std);
    return 0;
}

/* ---- configuration ------------------------------------------------------- */

rl_augment_config rl_augment_default(void) {
    rl_augment_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.p_flip_x = 0.5f;
    cfg.p_flip_y = 0.5f;
    cfg.p_rot90 = 0.0f;
    cfg.p_affine = 0.3f;
    cfg.max_rotation_deg = 15.0f;
    cfg.scale_min = 0.85f;
    cfg.scale_max = 1.15f;
    cfg.max_translate = 0.05f;
    cfg.label_outside = 0;
    cfg.p_scale = 0.15f;
    cfg.scale_lo = 0.75f;
    cfg.scale_hi = 1.25f;
    cfg.p_shift = 0.15f;
    cfg.max_shift = 0.1f;
    cfg.p_gamma = 0.3f;
    cfg.gamma_lo = 0.7f;
    cfg.gamma_hi = 1.5f;
    cfg.p_noise = 0.15f;
    cfg.max_noise_std = 0.1f;
    return cfg;
}

int rl_augment_check(const rl_augment_config *cfg, rl_error *err) {
    const struct {
        const char *name;
        float value;
    } probabilities[] = {{"p_flip_x", cfg->p_flip_x}, {"p_flip_y", cfg->p_flip_y},
                         {"p_rot90", cfg->p_rot90},   {"p_affine", cfg->p_affine},
                         {"p_scale", cfg->p_scale},   {"p_shift", cfg->p_shift},
                         {"p_gamma", cfg->p_gamma},   {"p_noise", cfg->p_noise}};
    for (size_t i = 0; i < sizeof probabilities / sizeof probabilities[0]; i++)
        if (!(probabilities[i].value >= 0.0f && probabilities[i].value <= 1.0f))
            return rl_error_set(err, RL_EINVAL, "augment: %s = %g is not a probability",
                                probabilities[i].name, probabilities[i].value);
    const struct {
        const char *name;
        float value;
    } non_negative[] = {{"max_rotation_deg", cfg->max_rotation_deg},
                        {"max_translate", cfg->max_translate},
                        {"max_shift", cfg->max_shift},
                        {"max_noise_std", cfg->max_noise_std}};
    for (size_t i = 0; i < sizeof non_negative / sizeof non_negative[0]; i++)
        if (!(non_negative[i].value >= 0.0f) || !isfinite(non_negative[i].value))
            return rl_error_set(err, RL_EINVAL, "augment: %s = %g must be finite and >= 0",
                                non_negative[i].name, non_negative[i].value);
    const struct {
        const char *name;
        float lo, hi;
    } ranges[] = {{"scale_min..scale_max", cfg->scale_min, cfg->scale_max},
                  {"scale_lo..scale_hi", cfg->scale_lo, cfg->scale_hi},
                  {"gamma_lo..gamma_hi", cfg->gamma_lo, cfg->gamma_hi}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (!(ranges[i].lo > 0.0f && ranges[i].lo <= ranges[i].hi) || !isfinite(ranges[i].hi))
            return rl_error_set(err, RL_EINVAL,
                                "augment: %s = %g..%g must be finite with 0 < low <= high",
                                ranges[i].name, ranges[i].lo, ranges[i].hi);
    if (cfg->gamma_lo > 1.0f || cfg->gamma_hi < 1.0f)
        return rl_error_set(err, RL_EINVAL, "augment: gamma range %g..%g must contain 1",
                            cfg->gamma_lo, cfg->gamma_hi);
    return 0;
}

size_t rl_augment_scratch_bytes(int h, int w) {
    if (h <= 0 || w <= 0 || (size_t)h > SIZE_MAX / 4 / (size_t)w) return 0;
    return (size_t)h * (size_t)w * 4;
}

/* ---- the random draw ------------------------------------------------------ */

static int coin(rl_rng *rng, float p) {
    return rl_rng_uniform(rng) < p;
}

static double uniform_in(rl_rng *rng, double lo, double hi) {
    return lo + (hi - lo) * rl_rng_uniform(rng);
}

/* Output pixel (x, y) reads input pixel permute(x, y): flips, then rot90. */
typedef struct spatial_plan {
    int flip_x, flip_y;
    int quarter_turns; /* counter-clockwise, as numpy.rot90 on (H, W) */
    int affine;
    /* Affine: source = centre + m * (dest - centre - shift). */
    double m[2][2], shift_x, shift_y;
} spatial_plan;

static spatial_plan draw_spatial(const rl_augment_config *cfg, rl_rng *rng, int h, int w) {
    spatial_plan p;
    memset(&p, 0, sizeof p);
    p.flip_x = coin(rng, cfg->p_flip_x);
    p.flip_y = coin(rng, cfg->p_flip_y);
    if (h == w && coin(rng, cfg->p_rot90)) p.quarter_turns = 1 + (int)rl_rng_below(rng, 3);
    p.affine = coin(rng, cfg->p_affine);
    if (p.affine) {
        const double angle =
            uniform_in(rng, -cfg->max_rotation_deg, cfg->max_rotation_deg) * (PI / 180.0);
        const double scale = uniform_in(rng, cfg->scale_min, cfg->scale_max);
        p.shift_x = uniform_in(rng, -cfg->max_translate, cfg->max_translate) * w;
        p.shift_y = uniform_in(rng, -cfg->max_translate, cfg->max_translate) * h;
        /* The content turns by +angle and grows by scale, so each output
         * pixel reads from the inverse map: R(-angle) / scale. */
        const double cs = cos(angle) / scale, sn = sin(angle) / scale;
        p.m[0][0] = cs;
        p.m[0][1] = sn;
        p.m[1][0] = -sn;
        p.m[1][1] = cs;
    }
    return p;
}

/* ---- spatial transforms ---------------------------------------------------- */

/* Index of the input pixel that the flips + rot90 move to output (x, y). */
static size_t permuted_source(const spatial_plan *p, int h, int w, int x, int y) {
    int sx = x, sy = y;
    /* Undo the rotation first (it was applied last). For h == w == n,
     * numpy.rot90(a, k)[i, j] = a[j, n-1-i] (k=1), a[n-1-i, n-1-j] (k=2),
     * a[n-1-j, i] (k=3), with i the row. */
    switch (p->quarter_turns) {
    case 1: sy = x; sx = w - 1 - y; break;
    case 2: sy = h - 1 - y; sx = w - 1 - x; break;
    case 3: sy = h - 1 - x; sx = y; break;
    default: break;
    }
    if (p->flip_x) sx = w - 1 - sx;
    if (p->flip_y) sy = h - 1 - sy;
    return (size_t)sy * (size_t)w + (size_t)sx;
}

/* Source coordinates of output pixel (x, y) under the affine. */
static void affine_source(const spatial_plan *p, int h, int w, int x, int y, double *sx,
                          double *sy) {
    const double cx = 0.5 * (w - 1), cy = 0.5 * (h - 1);
    const double dx = x - cx - p->shift_x, dy = y - cy - p->shift_y;
    *sx = cx + p->m[0][0] * dx + p->m[0][1] * dy;
    *sy = cy + p->m[1][0] * dx + p->m[1][1] * dy;
}

/* The permutation and the nearest-neighbour affine for 4-byte pixels,
 * written once for float and once for int32 planes. `fill` is the value of
 * pixels pulled in from outside. */
#define DEFINE_NEAREST_PLANE(NAME, T)                                                      \
    static void NAME(const spatial_plan *p, T *plane, T *tmp, int h, int w, T fill) {     \
        const size_t n = (size_t)h * (size_t)w;                                           \
        if (p->flip_x || p->flip_y || p->quarter_turns) {                                 \
            memcpy(tmp, plane, n * sizeof(T));                                            \
            for (int y = 0; y < h; y++)                                                   \
                for (int x = 0; x < w; x++)                                               \
                    plane[(size_t)y * w + x] = tmp[permuted_source(p, h, w, x, y)];       \
        }                                                                                 \
        if (!p->affine) return;                                                           \
        memcpy(tmp, plane, n * sizeof(T));                                                \
        for (int y = 0; y < h; y++)                                                       \
            for (int x = 0; x < w; x++) {                                                 \
                double sx, sy;                                                            \
                affine_source(p, h, w, x, y, &sx, &sy);                                   \
                const double rx = floor(sx + 0.5), ry = floor(sy + 0.5);                  \
                const int inside = rx >= 0 && rx < w && ry >= 0 && ry < h;                \
                plane[(size_t)y * w + x] =                                                \
                    inside ? tmp[(size_t)ry * (size_t)w + (size_t)rx] : fill;             \
            }                                                                             \
    }

DEFINE_NEAREST_PLANE(nearest_plane_f32, float)
DEFINE_NEAREST_PLANE(nearest_plane_i32, int32_t)

/* Image plane: the same permutation, then a bilinear affine with 0 outside
 * (each of the four taps outside the image reads 0). */
static void bilinear_plane(const spatial_plan *p, float *plane, float *tmp, int h, int w) {
    const spatial_plan permute_only = {p->flip_x, p->flip_y, p->quarter_turns, 0, {{0}}, 0, 0};
    nearest_plane_f32(&permute_only, plane, tmp, h, w, 0.0f);
    if (!p->affine) return;
    memcpy(tmp, plane, (size_t)h * (size_t)w * sizeof(float));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double sx, sy;
            affine_source(p, h, w, x, y, &sx, &sy);
            const double fx0 = floor(sx), fy0 = floor(sy);
            const double tx = sx - fx0, ty = sy - fy0;
            double acc = 0.0;
            /* Out-of-range taps are skipped, which is reading 0 there; the
             * range test on doubles keeps huge coordinates from wrapping. */
            for (int j = 0; j < 2; j++) {
                const double yy = fy0 + j;
                if (yy < 0 || yy >= h) continue;
                const double wy = j ? ty : 1.0 - ty;
                for (int i = 0; i < 2; i++) {
                    const double xx = fx0 + i;
                    if (xx < 0 || xx >= w) continue;
                    const double wx = i ? tx : 1.0 - tx;
                    acc += wy * wx * tmp[(size_t)yy * (size_t)w + (size_t)xx];
                }
            }
            plane[(size_t)y * w + x] = (float)acc;
        }
}

/* ---- intensity transforms -------------------------------------------------- */

/* x <- min + range * ((x - min) / range)^gamma: reshapes the histogram while
 * keeping the channel's range, as nnU-Net's gamma augmentation does. */
static void gamma_plane(float *x, size_t n, double gamma) {
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    const double range = (double)hi - lo;
    if (!(range > 0)) return; /* constant channel: nothing to reshape */
    for (size_t i = 0; i < n; i++) {
        double u = ((double)x[i] - lo) / range;
        u = u < 0 ? 0 : u > 1 ? 1 : u;
        x[i] = (float)(lo + range * pow(u, gamma));
    }
}

static void intensity_channel(const rl_augment_config *cfg, rl_rng *rng, float *x, size_t n) {
    if (coin(rng, cfg->p_scale)) {
        const float s = (float)uniform_in(rng, cfg->scale_lo, cfg->scale_hi);
        for (size_t i = 0; i < n; i++) x[i] *= s;
    }
    if (coin(rng, cfg->p_shift)) {
        const float b = (float)uniform_in(rng, -cfg->max_shift, cfg->max_shift);
        for (size_t i = 0; i < n; i++) x[i] += b;
    }
    if (coin(rng, cfg->p_gamma)) {
        /* Half of the draws darken, half brighten, whatever the asymmetry of
         * [gamma_lo, gamma_hi] around 1. */
        const double gamma = coin(rng, 0.5f) ? uniform_in(rng, cfg->gamma_lo, 1.0)
                                             : uniform_in(rng, 1.0, cfg->gamma_hi);
        gamma_plane(x, n, gamma);
    }
    if (coin(rng, cfg->p_noise)) {
        const float sigma = (float)uniform_in(rng, 0.0, cfg->max_noise_std);
        for (size_t i = 0; i < n; i++) x[i] += sigma * rl_rng_normal(rng);
    }
}

/* ---- entry point ------------------------------------------------------------ */

int rl_augment_apply(const rl_augment_config *cfg, rl_rng *rng, float *image, int c, int h,
                     int w, int32_t *labels, float *multilabel, int k, void *scratch,
                     rl_error *err) {
    int rc = rl_augment_check(cfg, err);
    if (rc) return rc;
    if (!image || c <= 0 || !scratch || rl_augment_scratch_bytes(h, w) == 0)
        return rl_error_set(err, RL_EINVAL,
                            "augment: need an image (got %s), c = %d >= 1, h x w = %d x %d "
                            "positive, and scratch (got %s)",
                            image ? "one" : "NULL", c, h, w, scratch ? "some" : "NULL");
    if (multilabel && k <= 0)
        return rl_error_set(err, RL_EINVAL, "augment: multi-label masks with k = %d", k);

    const size_t plane = (size_t)h * (size_t)w;
    const spatial_plan p = draw_spatial(cfg, rng, h, w);
    for (int ch = 0; ch < c; ch++) bilinear_plane(&p, image + ch * plane, scratch, h, w);
    if (labels) nearest_plane_i32(&p, labels, scratch, h, w, cfg->label_outside);
    if (multilabel)
        for (int j = 0; j < k; j++) nearest_plane_f32(&p, multilabel + j * plane, scratch, h, w, 0.0f);
    for (int ch = 0; ch < c; ch++) intensity_channel(cfg, rng, image + ch * plane, plane);
    return 0;
}
