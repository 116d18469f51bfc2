/* Augmentation and normalisation: reproducible from a seed, flips and rot90
 * are the exact permutations they claim, an identity affine changes nothing,
 * image / labels / multi-labels stay aligned under random spatial
 * transforms, labels keep their value set, intensity transforms leave the
 * labels alone, and the z-score gives mean 0 / std 1 (constant images stay
 * finite, percentile clipping interpolates like numpy). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/augment.h"
#include "testutil.h"

enum { C = 2, K = 4, OUTSIDE = 99 };

/* All probabilities zero: the identity, to switch transforms on one by one. */
static rl_augment_config nothing(void) {
    rl_augment_config cfg = rl_augment_default();
    cfg.p_flip_x = cfg.p_flip_y = cfg.p_rot90 = cfg.p_affine = 0.0f;
    cfg.p_scale = cfg.p_shift = cfg.p_gamma = cfg.p_noise = 0.0f;
    cfg.label_outside = OUTSIDE;
    return cfg;
}

/* A sample: labels in large blocks, image channels = label * 10 (+ channel
 * offset when `distinct`, so that a permutation is visible everywhere),
 * multi-labels the one-hot of the labels. */
typedef struct sample {
    int h, w;
    float *image;
    int32_t *labels;
    float *multi;
    void *scratch;
} sample;

static sample sample_new(int h, int w, int distinct) {
    sample s = {h, w, malloc(sizeof(float) * C * h * w), malloc(sizeof(int32_t) * h * w),
                malloc(sizeof(float) * K * h * w), malloc(rl_augment_scratch_bytes(h, w))};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const int i = y * w + x;
            /* Blocks of 16 x 14 pixels cycling through the K labels. */
            s.labels[i] = ((y / 16) * 3 + (x / 14)) % K;
            for (int ch = 0; ch < C; ch++)
                s.image[ch * h * w + i] =
                    distinct ? (float)(i + 1000 * ch) : 10.0f * (float)s.labels[i];
            for (int j = 0; j < K; j++) s.multi[j * h * w + i] = s.labels[i] == j ? 1.0f : 0.0f;
        }
    return s;
}

static sample sample_copy(const sample *a) {
    sample s = sample_new(a->h, a->w, 0);
    memcpy(s.image, a->image, sizeof(float) * C * a->h * a->w);
    memcpy(s.labels, a->labels, sizeof(int32_t) * a->h * a->w);
    memcpy(s.multi, a->multi, sizeof(float) * K * a->h * a->w);
    return s;
}

static void sample_free(sample *s) {
    free(s->image);
    free(s->labels);
    free(s->multi);
    free(s->scratch);
}

static int augment(const rl_augment_config *cfg, uint64_t seed, sample *s) {
    rl_rng rng;
    rl_rng_seed(&rng, seed, 11);
    rl_error err = {0, ""};
    const int rc = rl_augment_apply(cfg, &rng, s->image, C, s->h, s->w, s->labels, s->multi, K,
                                    s->scratch, &err);
    if (rc) fprintf(stderr, "augment: %s\n", err.msg);
    return rc;
}

/* Does every array of `out` equal `in` read through src(y, x)? */
typedef void (*index_map)(int h, int w, int y, int x, int *sy, int *sx);

static int permuted_by(const sample *out, const sample *in, index_map map) {
    const int h = out->h, w = out->w, n = h * w;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sy, sx;
            map(h, w, y, x, &sy, &sx);
            const int o = y * w + x, i = sy * w + sx;
            if (out->labels[o] != in->labels[i]) return 0;
            for (int ch = 0; ch < C; ch++)
                if (out->image[ch * n + o] != in->image[ch * n + i]) return 0;
            for (int j = 0; j < K; j++)
                if (out->multi[j * n + o] != in->multi[j * n + i]) return 0;
        }
    return 1;
}

static void map_flip_x(int h, int w, int y, int x, int *sy, int *sx) {
    (void)h;
    *sy = y;
    *sx = w - 1 - x;
}
static void map_flip_y(int h, int w, int y, int x, int *sy, int *sx) {
    (void)w;
    *sy = h - 1 - y;
    *sx = x;
}
/* numpy.rot90(a, k)[y, x] for a square (n, n) array. */
static void map_rot1(int h, int w, int y, int x, int *sy, int *sx) {
    (void)h;
    *sy = x;
    *sx = w - 1 - y;
}
static void map_rot2(int h, int w, int y, int x, int *sy, int *sx) {
    *sy = h - 1 - y;
    *sx = w - 1 - x;
}
static void map_rot3(int h, int w, int y, int x, int *sy, int *sx) {
    (void)w;
    *sy = h - 1 - x;
    *sx = y;
}
static void map_identity(int h, int w, int y, int x, int *sy, int *sx) {
    (void)h;
    (void)w;
    *sy = y;
    *sx = x;
}

static void test_determinism(void) {
    rl_augment_config cfg = rl_augment_default();
    cfg.p_flip_x = cfg.p_flip_y = cfg.p_rot90 = cfg.p_affine = 1.0f;
    cfg.p_scale = cfg.p_shift = cfg.p_gamma = cfg.p_noise = 1.0f;
    sample base = sample_new(24, 24, 1);
    sample a = sample_copy(&base), b = sample_copy(&base), c = sample_copy(&base);
    CHECK_OK(augment(&cfg, 5, &a));
    CHECK_OK(augment(&cfg, 5, &b));
    CHECK_OK(augment(&cfg, 6, &c));
    const size_t n = (size_t)24 * 24;
    CHECK(memcmp(a.image, b.image, sizeof(float) * C * n) == 0);
    CHECK(memcmp(a.labels, b.labels, sizeof(int32_t) * n) == 0);
    CHECK(memcmp(a.multi, b.multi, sizeof(float) * K * n) == 0);
    CHECK(memcmp(a.image, c.image, sizeof(float) * C * n) != 0);
    CHECK(memcmp(a.image, base.image, sizeof(float) * C * n) != 0);
    sample_free(&base);
    sample_free(&a);
    sample_free(&b);
    sample_free(&c);
}

static void test_permutations(void) {
    sample base = sample_new(20, 20, 1);
    rl_augment_config cfg = nothing();

    sample s = sample_copy(&base);
    CHECK_OK(augment(&cfg, 1, &s));
    CHECK(permuted_by(&s, &base, map_identity));
    sample_free(&s);

    cfg.p_flip_x = 1.0f;
    s = sample_copy(&base);
    CHECK_OK(augment(&cfg, 1, &s));
    CHECK(permuted_by(&s, &base, map_flip_x));
    sample_free(&s);

    cfg = nothing();
    cfg.p_flip_y = 1.0f;
    s = sample_copy(&base);
    CHECK_OK(augment(&cfg, 1, &s));
    CHECK(permuted_by(&s, &base, map_flip_y));
    sample_free(&s);

    /* rot90: each seed turns by some k in 1..3; every k must show up over
     * 30 seeds, and each result must be exactly one of the three maps. */
    cfg = nothing();
    cfg.p_rot90 = 1.0f;
    const index_map rots[3] = {map_rot1, map_rot2, map_rot3};
    int seen[3] = {0, 0, 0}, unmatched = 0;
    for (uint64_t seed = 0; seed < 30; seed++) {
        s = sample_copy(&base);
        CHECK_OK(augment(&cfg, seed, &s));
        int matched = 0;
        for (int r = 0; r < 3; r++)
            if (permuted_by(&s, &base, rots[r])) {
                seen[r]++;
                matched = 1;
            }
        unmatched += !matched;
        sample_free(&s);
    }
    CHECK(unmatched == 0);
    CHECK_MSG(seen[0] > 0 && seen[1] > 0 && seen[2] > 0, "rot90 k counts %d %d %d", seen[0],
              seen[1], seen[2]);
    sample_free(&base);

    /* Not square: rot90 is skipped (the buffers keep their shape). */
    sample rect = sample_new(12, 18, 1);
    s = sample_copy(&rect);
    CHECK_OK(augment(&cfg, 3, &s));
    CHECK(permuted_by(&s, &rect, map_identity));
    sample_free(&s);
    sample_free(&rect);
}

static void test_affine_identity(void) {
    rl_augment_config cfg = nothing();
    cfg.p_affine = 1.0f;
    cfg.max_rotation_deg = 0.0f;
    cfg.scale_min = cfg.scale_max = 1.0f;
    cfg.max_translate = 0.0f;
    sample base = sample_new(17, 23, 1);
    sample s = sample_copy(&base);
    CHECK_OK(augment(&cfg, 9, &s));
    CHECK(permuted_by(&s, &base, map_identity));
    sample_free(&s);
    sample_free(&base);
}

/* Random flips, rot90 and strong affines with intensity off: wherever the
 * output labels are uniform over a 7 x 7 window, the bilinear image must
 * still read label * 10 (nearest and bilinear sample the same place);
 * labels stay in {0..K-1, OUTSIDE}; multi-labels stay 0/1 and one-hot of
 * the labels (all zero outside). */
static void test_alignment(void) {
    rl_augment_config cfg = nothing();
    cfg.p_flip_x = cfg.p_flip_y = cfg.p_rot90 = 0.5f;
    cfg.p_affine = 1.0f;
    cfg.max_rotation_deg = 30.0f;
    cfg.scale_min = 0.8f;
    cfg.scale_max = 1.25f;
    cfg.max_translate = 0.15f;
    const int h = 48, w = 48, n = h * w;
    int bad_image = 0, bad_label = 0, bad_multi = 0, checked = 0, outside = 0;
    for (uint64_t seed = 0; seed < 40; seed++) {
        sample s = sample_new(h, w, 0);
        CHECK_OK(augment(&cfg, seed, &s));
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const int i = y * w + x;
                const int32_t l = s.labels[i];
                if (l == OUTSIDE) {
                    outside++;
                    for (int j = 0; j < K; j++) bad_multi += s.multi[j * n + i] != 0.0f;
                    continue;
                }
                if (l < 0 || l >= K) {
                    bad_label++;
                    continue;
                }
                for (int j = 0; j < K; j++)
                    bad_multi += s.multi[j * n + i] != (j == l ? 1.0f : 0.0f);
                int uniform = y >= 3 && y < h - 3 && x >= 3 && x < w - 3;
                for (int dy = -3; dy <= 3 && uniform; dy++)
                    for (int dx = -3; dx <= 3 && uniform; dx++)
                        uniform = s.labels[i + dy * w + dx] == l;
                if (!uniform) continue;
                checked++;
                for (int ch = 0; ch < C; ch++)
                    bad_image += fabsf(s.image[ch * n + i] - 10.0f * (float)l) > 1e-4f;
            }
        sample_free(&s);
    }
    CHECK(bad_label == 0);
    CHECK(bad_multi == 0);
    CHECK_MSG(bad_image == 0, "%d of %d interior pixels misaligned", bad_image, checked);
    CHECK_MSG(checked > 40 * n / 8, "only %d interior pixels checked", checked);
    CHECK_MSG(outside > 0, "no affine pulled in outside pixels");
}

/* Intensity transforms change the image, never labels or multi-labels;
 * gamma alone keeps each channel's min and max. */
static void test_intensity_only(void) {
    rl_augment_config cfg = nothing();
    cfg.p_scale = cfg.p_shift = cfg.p_gamma = cfg.p_noise = 1.0f;
    sample base = sample_new(16, 20, 1);
    sample s = sample_copy(&base);
    CHECK_OK(augment(&cfg, 4, &s));
    const int n = 16 * 20;
    CHECK(memcmp(s.labels, base.labels, sizeof(int32_t) * n) == 0);
    CHECK(memcmp(s.multi, base.multi, sizeof(float) * K * n) == 0);
    CHECK(memcmp(s.image, base.image, sizeof(float) * C * n) != 0);
    sample_free(&s);

    cfg = nothing();
    cfg.p_gamma = 1.0f;
    s = sample_copy(&base);
    CHECK_OK(augment(&cfg, 8, &s));
    for (int ch = 0; ch < C; ch++) {
        float lo = INFINITY, hi = -INFINITY, lo0 = INFINITY, hi0 = -INFINITY;
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float v = s.image[ch * n + i], v0 = base.image[ch * n + i];
            lo = fminf(lo, v);
            hi = fmaxf(hi, v);
            lo0 = fminf(lo0, v0);
            hi0 = fmaxf(hi0, v0);
            changed += fabsf(v - v0) > 1e-3f;
        }
        CHECK(fabsf(lo - lo0) <= 1e-3f && fabsf(hi - hi0) <= 1e-3f);
        CHECK(changed > n / 2);
    }
    sample_free(&s);
    sample_free(&base);
}

static void test_bad_arguments(void) {
    sample s = sample_new(8, 8, 0);
    rl_augment_config cfg = nothing();
    rl_rng rng;
    rl_rng_seed(&rng, 1, 1);
    rl_error err = {0, ""};
    cfg.p_noise = 1.5f;
    CHECK(rl_augment_apply(&cfg, &rng, s.image, C, 8, 8, s.labels, s.multi, K, s.scratch, &err) ==
          RL_EINVAL);
    CHECK(strstr(err.msg, "p_noise") != NULL);
    cfg = nothing();
    cfg.scale_min = 1.2f;
    cfg.scale_max = 1.1f;
    CHECK(rl_augment_check(&cfg, &err) == RL_EINVAL);
    cfg = nothing();
    CHECK(rl_augment_apply(&cfg, &rng, s.image, C, 8, 8, s.labels, s.multi, K, NULL, &err) ==
          RL_EINVAL);
    CHECK(rl_augment_apply(&cfg, &rng, s.image, C, 0, 8, NULL, NULL, 0, s.scratch, &err) ==
          RL_EINVAL);
    CHECK(rl_augment_apply(&cfg, &rng, s.image, C, 8, 8, NULL, s.multi, 0, s.scratch, &err) ==
          RL_EINVAL);
    rl_augment_config def = rl_augment_default();
    CHECK_OK(rl_augment_check(&def, NULL));
    sample_free(&s);
}

static void moments(const float *x, size_t n, double *mean, double *std) {
    double s = 0, q = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (size_t i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *std = sqrt(q / n);
}

static void test_zscore(void) {
    enum { N = 5000 };
    static float x[N];
    rl_rng rng;
    rl_rng_seed(&rng, 77, 2);
    for (int i = 0; i < N; i++) x[i] = 300.0f + 40.0f * rl_rng_normal(&rng);
    CHECK_OK(rl_zscore_normalize(x, N, 0.0f, 100.0f, NULL));
    double mean, std;
    moments(x, N, &mean, &std);
    CHECK_MSG(fabs(mean) < 1e-5 && fabs(std - 1) < 1e-5, "mean %g std %g", mean, std);

    /* Values 0..999 shuffled, clipped to the 10th / 90th percentiles, which
     * numpy puts at 99.9 and 899.1. The z-score is affine, so the ratio
     * (z(v) - z_min) / (z_max - z_min) recovers (v - 99.9) / 799.2. */
    static float v[1000];
    int order[1000];
    for (int i = 0; i < 1000; i++) order[i] = i;
    rl_rng_shuffle(&rng, order, 1000);
    for (int i = 0; i < 1000; i++) v[i] = (float)order[i];
    CHECK_OK(rl_zscore_normalize(v, 1000, 10.0f, 90.0f, NULL));
    moments(v, 1000, &mean, &std);
    CHECK(fabs(mean) < 1e-5 && fabs(std - 1) < 1e-5);
    float zmin = INFINITY, zmax = -INFINITY;
    for (int i = 0; i < 1000; i++) {
        zmin = fminf(zmin, v[i]);
        zmax = fmaxf(zmax, v[i]);
    }
    int at_min = 0, at_max = 0, bad_ratio = 0;
    for (int i = 0; i < 1000; i++) {
        at_min += v[i] == zmin;
        at_max += v[i] == zmax;
        if (order[i] >= 100 && order[i] <= 899) {
            const double want = (order[i] - 99.9) / 799.2;
            bad_ratio += fabs((v[i] - zmin) / (zmax - zmin) - want) > 1e-5;
        }
    }
    CHECK_MSG(at_min == 100 && at_max == 100, "clipped %d low, %d high", at_min, at_max);
    CHECK(bad_ratio == 0);

    /* Constant images, zero or not, stay finite (all zeros). */
    for (int i = 0; i < 64; i++) x[i] = 7.25f;
    CHECK_OK(rl_zscore_normalize(x, 64, 0.5f, 99.5f, NULL));
    int finite_zero = 1;
    for (int i = 0; i < 64; i++) finite_zero &= x[i] == 0.0f;
    CHECK(finite_zero);
    for (int i = 0; i < 64; i++) x[i] = 0.0f;
    CHECK_OK(rl_zscore_normalize(x, 64, 0.0f, 100.0f, NULL));
    CHECK(x[0] == 0.0f && x[63] == 0.0f);

    rl_error err = {0, ""};
    x[3] = NAN;
    CHECK(rl_zscore_normalize(x, 64, 0.0f, 100.0f, &err) == RL_ENONFINITE);
    x[3] = 0.0f;
    CHECK(rl_zscore_normalize(x, 64, 60.0f, 40.0f, &err) == RL_EINVAL);
    CHECK(rl_zscore_normalize(x, 64, -1.0f, 100.0f, &err) == RL_EINVAL);
}

int main(void) {
    test_determinism();
    test_permutations();
    test_affine_identity();
    test_alignment();
    test_intensity_only();
    test_bad_arguments();
    test_zscore();
    return rl_test_report("test_augment");
}
