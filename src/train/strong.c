/* Strong views for weak-to-strong consistency (FixMatch, UniMatch): stronger
 * photometric perturbation than the weak view's, and CutMix boxes.
 *
 * The weak view is what rl_augment_apply makes (flips, affine, mild
 * intensity changes); the targets of the unlabeled loss come from it. The
 * strong view starts from the weak one and may not move a pixel, or the
 * targets would no longer sit on the structures they describe: every
 * transform here is a function of a pixel's own value (brightness,
 * contrast, gamma, noise) or a symmetric average around it (blur). CutMix
 * does move content, but it pastes the same box into the image and into
 * every target map (rl_box_paste), so they stay aligned.
 *
 * Brightness and contrast act on the channel's min-max range mapped to
 * [0, 1] and clamp there, as torchvision's ColorJitter does on the [0, 1]
 * images UniMatch feeds it: our images are z-scored, and a brightness
 * factor applied to z-scores would only rescale them around the mean.
 */
#include <math.h>
#include <string.h>

#include "reflabel/augment.h"

rl_strong_config rl_strong_default(void) {
    rl_strong_config c;
    memset(&c, 0, sizeof c);
    c.p_jitter = 0.8f;
    c.brightness = 0.5f;
    c.contrast = 0.5f;
    c.p_gamma = 0.5f;
    c.gamma_lo = 0.5f;
    c.gamma_hi = 2.0f;
    c.p_blur = 0.5f;
    c.blur_sigma_lo = 0.1f;
    c.blur_sigma_hi = 2.0f;
    c.p_noise = 0.5f;
    c.max_noise_std = 0.2f;
    c.p_cutmix = 0.5f;
    c.cutmix_area_lo = 0.02f;
    c.cutmix_area_hi = 0.4f;
    c.cutmix_ratio_lo = 0.3f;
    c.cutmix_ratio_hi = 1.0f / 0.3f;
    return c;
}

static int in_closed(float v, float lo, float hi) { return v >= lo && v <= hi; }

int rl_strong_check(const rl_strong_config *c, rl_error *err) {
    const struct {
        const char *name;
        float value;
    } probabilities[] = {{"p_jitter", c->p_jitter}, {"p_gamma", c->p_gamma},
                         {"p_blur", c->p_blur},     {"p_noise", c->p_noise},
                         {"p_cutmix", c->p_cutmix}};
    for (size_t i = 0; i < sizeof probabilities / sizeof probabilities[0]; i++)
        if (!in_closed(probabilities[i].value, 0.0f, 1.0f))
            return rl_error_set(err, RL_EINVAL, "strong view: %s = %g is not a probability",
                                probabilities[i].name, probabilities[i].value);
    if (!(c->brightness >= 0 && c->brightness < 1) || !(c->contrast >= 0 && c->contrast < 1))
        return rl_error_set(err, RL_EINVAL,
                            "strong view: brightness %g and contrast %g must be in [0, 1)",
                            c->brightness, c->contrast);
    const struct {
        const char *name;
        float lo, hi;
    } ranges[] = {{"gamma_lo..gamma_hi", c->gamma_lo, c->gamma_hi},
                  {"blur_sigma_lo..blur_sigma_hi", c->blur_sigma_lo, c->blur_sigma_hi},
                  {"cutmix_area_lo..cutmix_area_hi", c->cutmix_area_lo, c->cutmix_area_hi},
                  {"cutmix_ratio_lo..cutmix_ratio_hi", c->cutmix_ratio_lo, c->cutmix_ratio_hi}};
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (!(ranges[i].lo > 0.0f && ranges[i].lo <= ranges[i].hi) || !isfinite(ranges[i].hi))
            return rl_error_set(err, RL_EINVAL,
                                "strong view: %s = %g..%g must be finite with 0 < low <= high",
                                ranges[i].name, ranges[i].lo, ranges[i].hi);
    if (c->gamma_lo > 1.0f || c->gamma_hi < 1.0f)
        return rl_error_set(err, RL_EINVAL, "strong view: gamma range %g..%g must contain 1",
                            c->gamma_lo, c->gamma_hi);
    if (c->cutmix_area_hi > 1.0f)
        return rl_error_set(err, RL_EINVAL, "strong view: a CutMix box of %g of the image",
                            c->cutmix_area_hi);
    if (!(c->max_noise_std >= 0) || !isfinite(c->max_noise_std))
        return rl_error_set(err, RL_EINVAL, "strong view: max_noise_std = %g must be >= 0",
                            c->max_noise_std);
    return RL_OK;
}

static float uniform_in(rl_rng *rng, float lo, float hi) {
    return lo + (hi - lo) * rl_rng_uniform(rng);
}

static float clamp01(float u) { return u < 0.0f ? 0.0f : u > 1.0f ? 1.0f : u; }

/* What one channel's draw decided; factors of 1 and sigmas of 0 are "off". */
typedef struct photometric_plan {
    int contrast_first;
    float brightness, contrast, gamma, blur_sigma, noise_sigma;
} photometric_plan;

static photometric_plan draw_photometric(const rl_strong_config *c, rl_rng *rng) {
    photometric_plan p = {0, 1.0f, 1.0f, 1.0f, 0.0f, 0.0f};
    if (rl_rng_uniform(rng) < c->p_jitter) {
        /* torchvision draws the order of its jitters, then their factors */
        p.contrast_first = rl_rng_uniform(rng) < 0.5f;
        p.brightness = uniform_in(rng, 1.0f - c->brightness, 1.0f + c->brightness);
        p.contrast = uniform_in(rng, 1.0f - c->contrast, 1.0f + c->contrast);
    }
    if (rl_rng_uniform(rng) < c->p_gamma)
        p.gamma = rl_rng_uniform(rng) < 0.5f ? uniform_in(rng, c->gamma_lo, 1.0f)
                                             : uniform_in(rng, 1.0f, c->gamma_hi);
    if (rl_rng_uniform(rng) < c->p_blur)
        p.blur_sigma = uniform_in(rng, c->blur_sigma_lo, c->blur_sigma_hi);
    if (rl_rng_uniform(rng) < c->p_noise) p.noise_sigma = uniform_in(rng, 0.0f, c->max_noise_std);
    return p;
}

static float mean_of(const float *u, size_t n) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += u[i];
    return n ? (float)(sum / (double)n) : 0.0f;
}

static void brightness_plane(float *u, size_t n, float b) {
    for (size_t i = 0; i < n; i++) u[i] = clamp01(u[i] * b);
}

/* torchvision's adjust_contrast: blend with the image's mean grey level. */
static void contrast_plane(float *u, size_t n, float c) {
    const float m = mean_of(u, n);
    for (size_t i = 0; i < n; i++) u[i] = clamp01(c * u[i] + (1.0f - c) * m);
}

/* Brightness, contrast and gamma on the channel's [lo, hi] range: each is a
 * non-decreasing function of the pixel's value (contrast's mean is one
 * number for the whole plane), so the order of the pixels' values survives. */
static void jitter_plane(const photometric_plan *p, float *x, size_t n) {
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    const float range = hi - lo;
    if (!(range > 0)) return; /* a constant channel has no range to reshape */
    for (size_t i = 0; i < n; i++) x[i] = (x[i] - lo) / range;
    if (p->contrast_first) contrast_plane(x, n, p->contrast);
    brightness_plane(x, n, p->brightness);
    if (!p->contrast_first) contrast_plane(x, n, p->contrast);
    if (p->gamma != 1.0f)
        for (size_t i = 0; i < n; i++) x[i] = powf(x[i], p->gamma);
    for (size_t i = 0; i < n; i++) x[i] = lo + range * x[i];
}

/* Kernel taps of a Gaussian of this sigma, radius ceil(3 sigma), at most
 * BLUR_MAX_RADIUS (sigma <= 2 gives 6). */
#define BLUR_MAX_RADIUS 15

static int gaussian_taps(float sigma, float *taps) {
    int r = (int)ceilf(3.0f * sigma);
    if (r > BLUR_MAX_RADIUS) r = BLUR_MAX_RADIUS;
    double sum = 0;
    for (int i = -r; i <= r; i++) sum += exp(-0.5 * (double)i * i / ((double)sigma * sigma));
    for (int i = -r; i <= r; i++)
        taps[i + r] = (float)(exp(-0.5 * (double)i * i / ((double)sigma * sigma)) / sum);
    return r;
}

static int clamp_index(int i, int n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

/* Separable Gaussian blur, edges replicated: rows into tmp, columns back. A
 * symmetric kernel centred on each pixel: an impulse stays where it was. */
static void blur_plane(float *x, float *tmp, int h, int w, float sigma) {
    float taps[2 * BLUR_MAX_RADIUS + 1];
    const int r = gaussian_taps(sigma, taps);
    for (int y = 0; y < h; y++)
        for (int xx = 0; xx < w; xx++) {
            float acc = 0;
            for (int k = -r; k <= r; k++) acc += taps[k + r] * x[(size_t)y * w + clamp_index(xx + k, w)];
            tmp[(size_t)y * w + xx] = acc;
        }
    for (int y = 0; y < h; y++)
        for (int xx = 0; xx < w; xx++) {
            float acc = 0;
            for (int k = -r; k <= r; k++)
                acc += taps[k + r] * tmp[(size_t)clamp_index(y + k, h) * w + xx];
            x[(size_t)y * w + xx] = acc;
        }
}

int rl_strong_apply(const rl_strong_config *cfg, rl_rng *rng, float *image, int c, int h, int w,
                    void *scratch, rl_error *err) {
    int rc = rl_strong_check(cfg, err);
    if (rc) return rc;
    if (!image || c <= 0 || !scratch || rl_augment_scratch_bytes(h, w) == 0)
        return rl_error_set(err, RL_EINVAL,
                            "strong view: need an image, c = %d >= 1, h x w = %d x %d positive "
                            "and scratch",
                            c, h, w);
    const size_t plane = (size_t)h * (size_t)w;
    for (int ch = 0; ch < c; ch++) {
        float *x = image + (size_t)ch * plane;
        photometric_plan p = draw_photometric(cfg, rng);
        if (p.brightness != 1.0f || p.contrast != 1.0f || p.gamma != 1.0f) jitter_plane(&p, x, plane);
        if (p.blur_sigma > 0) blur_plane(x, scratch, h, w, p.blur_sigma);
        if (p.noise_sigma > 0)
            for (size_t i = 0; i < plane; i++) x[i] += p.noise_sigma * rl_rng_normal(rng);
    }
    return RL_OK;
}

rl_box rl_cutmix_draw(const rl_strong_config *cfg, rl_rng *rng, int h, int w) {
    rl_box box = {0, 0, 0, 0};
    /* Five draws whatever comes out (see the header). */
    const int fires = rl_rng_uniform(rng) < cfg->p_cutmix;
    const double area = uniform_in(rng, cfg->cutmix_area_lo, cfg->cutmix_area_hi) * h * w;
    const double ratio = uniform_in(rng, cfg->cutmix_ratio_lo, cfg->cutmix_ratio_hi);
    const float fy = rl_rng_uniform(rng), fx = rl_rng_uniform(rng);
    if (!fires || h <= 0 || w <= 0) return box;
    /* UniMatch redraws the placement and ratio until the box fits; clamping
     * the sides and placing the box uniformly among the positions where it
     * fits gives the same kind of box in a fixed number of draws. */
    int bh = (int)sqrt(area * ratio), bw = (int)sqrt(area / ratio);
    bh = bh < 1 ? 1 : bh > h ? h : bh;
    bw = bw < 1 ? 1 : bw > w ? w : bw;
    box.h = bh;
    box.w = bw;
    box.y = (int)(fy * (float)(h - bh + 1));
    box.x = (int)(fx * (float)(w - bw + 1));
    if (box.y > h - bh) box.y = h - bh; /* fy * n rounds to n when fy is just below 1 */
    if (box.x > w - bw) box.x = w - bw;
    return box;
}

void rl_box_paste(rl_box box, void *dst, const void *src, int planes, int h, int w,
                  size_t elem_size) {
    if (box.h <= 0 || box.w <= 0) return;
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (int p = 0; p < planes; p++)
        for (int y = box.y; y < box.y + box.h; y++) {
            size_t at = (((size_t)p * h + y) * w + box.x) * elem_size;
            memcpy(d + at, s + at, (size_t)box.w * elem_size);
        }
}
