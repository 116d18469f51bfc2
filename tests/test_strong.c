/* Strong views (src/train/strong.c): the photometric part never moves a
 * pixel, CutMix boxes fit and paste image and targets alike, and the random
 * draws do not depend on the pixels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/augment.h"
#include "testutil.h"

enum { H = 24, W = 20, C = 2 };

static rl_strong_config photometric_only(void) {
    rl_strong_config c = rl_strong_default();
    c.p_cutmix = 0;
    return c;
}

/* Without blur and noise each channel goes through one non-decreasing map of
 * its values: sorting the input's pixels must sort the output's. A moved
 * pixel (a flip, a shift) breaks that at once on an image of random values. */
static void test_order_kept(void) {
    rl_strong_config cfg = photometric_only();
    cfg.p_blur = 0;
    cfg.p_noise = 0;
    cfg.p_jitter = 1;
    cfg.p_gamma = 1;
    float *x = malloc(sizeof(float) * C * H * W), *y = malloc(sizeof(float) * C * H * W);
    void *scratch = malloc(rl_augment_scratch_bytes(H, W));
    int changed = 0, broken = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        rl_rng data, rng;
        rl_rng_seed(&data, seed, 1);
        rl_rng_seed(&rng, seed, 2);
        rl_fill_uniform(x, (size_t)C * H * W, &data, -2.0f, 3.0f);
        memcpy(y, x, sizeof(float) * C * H * W);
        CHECK_OK(rl_strong_apply(&cfg, &rng, y, C, H, W, scratch, &check_ok_err_));
        for (size_t i = 0; i < (size_t)C * H * W; i++) changed += fabsf(y[i] - x[i]) > 1e-4f;
        for (int ch = 0; ch < C; ch++) {
            const float *a = x + (size_t)ch * H * W, *b = y + (size_t)ch * H * W;
            for (int i = 0; i < H * W; i++)
                for (int j = 0; j < H * W; j += 7) /* a sample of the pairs */
                    if (a[i] < a[j] && b[i] > b[j] + 1e-6f) broken++;
        }
    }
    CHECK_MSG(changed > 20 * C * H * W / 2, "the strong view changed %d pixel values", changed);
    CHECK_MSG(broken == 0, "%d pixel pairs swapped their order", broken);
    free(x);
    free(y);
    free(scratch);
}

/* Blur alone: an impulse stays centred, spreads symmetrically and keeps its
 * mass away from the border. */
static void test_blur_centred(void) {
    rl_strong_config cfg = photometric_only();
    cfg.p_jitter = 0;
    cfg.p_gamma = 0;
    cfg.p_noise = 0;
    cfg.p_blur = 1;
    cfg.blur_sigma_lo = 1.5f;
    cfg.blur_sigma_hi = 2.0f;
    float x[H * W];
    void *scratch = malloc(rl_augment_scratch_bytes(H, W));
    memset(x, 0, sizeof x);
    const int cy = 11, cx = 9;
    x[cy * W + cx] = 1.0f;
    rl_rng rng;
    rl_rng_seed(&rng, 5, 0);
    CHECK_OK(rl_strong_apply(&cfg, &rng, x, 1, H, W, scratch, &check_ok_err_));
    double sum = 0, my = 0, mx = 0;
    int argmax = 0, asymmetric = 0;
    for (int i = 0; i < H * W; i++) {
        sum += x[i];
        my += x[i] * (i / W);
        mx += x[i] * (i % W);
        if (x[i] > x[argmax]) argmax = i;
    }
    for (int d = 1; d <= 6; d++)
        asymmetric += fabsf(x[(cy + d) * W + cx] - x[(cy - d) * W + cx]) > 1e-7f ||
                      fabsf(x[cy * W + cx + d] - x[cy * W + cx - d]) > 1e-7f;
    CHECK(argmax == cy * W + cx);
    CHECK_MSG(fabs(sum - 1.0) < 1e-5, "mass %g", sum);
    CHECK_MSG(fabs(my / sum - cy) < 1e-4 && fabs(mx / sum - cx) < 1e-4, "centre %g %g", my / sum,
              mx / sum);
    CHECK(asymmetric == 0);
    CHECK(x[cy * W + cx] < 0.2f); /* it did blur */
    free(scratch);
}

/* The draws depend on cfg and the shape only: two different images leave
 * the stream in the same state, and the same state gives the same result
 * for the same image. */
static void test_draws_independent_of_pixels(void) {
    rl_strong_config cfg = rl_strong_default();
    float a[C * H * W], b[C * H * W], a2[C * H * W];
    void *scratch = malloc(rl_augment_scratch_bytes(H, W));
    for (uint64_t seed = 0; seed < 10; seed++) {
        rl_rng data, r1, r2, r3;
        rl_rng_seed(&data, seed, 9);
        rl_fill_uniform(a, C * H * W, &data, 0, 1);
        rl_fill_uniform(b, C * H * W, &data, -5, 5);
        b[3] = b[4] = b[5]; /* and a flat patch */
        memcpy(a2, a, sizeof a);
        rl_rng_seed(&r1, seed, 3);
        r2 = r3 = r1;
        CHECK_OK(rl_strong_apply(&cfg, &r1, a, C, H, W, scratch, &check_ok_err_));
        CHECK_OK(rl_strong_apply(&cfg, &r2, b, C, H, W, scratch, &check_ok_err_));
        CHECK_OK(rl_strong_apply(&cfg, &r3, a2, C, H, W, scratch, &check_ok_err_));
        CHECK(r1.state == r2.state && r1.inc == r2.inc);
        CHECK(memcmp(a, a2, sizeof a) == 0);
    }
    free(scratch);
}

static void test_cutmix_boxes(void) {
    rl_strong_config cfg = rl_strong_default();
    int fired = 0, outside = 0, too_big = 0;
    rl_rng rng;
    rl_rng_seed(&rng, 11, 0);
    for (int i = 0; i < 4000; i++) {
        rl_rng expect = rng;
        for (int k = 0; k < 5; k++) rl_rng_uniform(&expect);
        rl_box b = rl_cutmix_draw(&cfg, &rng, H, W);
        CHECK(rng.state == expect.state); /* five draws, box or not */
        if (b.h == 0) continue;
        fired++;
        outside += b.y < 0 || b.x < 0 || b.y + b.h > H || b.x + b.w > W || b.w < 1;
        too_big += b.h * b.w > cfg.cutmix_area_hi * H * W + 1e-3;
    }
    CHECK_MSG(fired > 1800 && fired < 2200, "%d of 4000 draws gave a box (p 0.5)", fired);
    CHECK(outside == 0);
    CHECK(too_big == 0);
    cfg.p_cutmix = 0;
    CHECK(rl_cutmix_draw(&cfg, &rng, H, W).h == 0);
}

/* One box mixes an image and its targets alike: inside the box everything
 * comes from the other image, outside nothing changes. */
static void test_box_paste(void) {
    float dst[C * H * W], src[C * H * W];
    int32_t dlab[H * W], slab[H * W];
    for (int i = 0; i < C * H * W; i++) {
        dst[i] = (float)i;
        src[i] = -(float)i - 1;
    }
    for (int i = 0; i < H * W; i++) {
        dlab[i] = 1;
        slab[i] = 2;
    }
    rl_box box = {3, 4, 5, 6};
    rl_box_paste(box, dst, src, C, H, W, sizeof(float));
    rl_box_paste(box, dlab, slab, 1, H, W, sizeof(int32_t));
    int wrong = 0;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                int in = y >= 3 && y < 8 && x >= 4 && x < 10;
                size_t i = ((size_t)c * H + y) * W + x;
                wrong += dst[i] != (in ? -(float)i - 1 : (float)i);
                if (c == 0) wrong += dlab[y * W + x] != (in ? 2 : 1);
            }
    CHECK(wrong == 0);
    rl_box none = {0, 0, 0, 0};
    rl_box_paste(none, dlab, slab, 1, H, W, sizeof(int32_t));
    CHECK(dlab[0] == 1);
}

static void test_bad_config(void) {
    rl_error err = {0, ""};
    rl_strong_config c = rl_strong_default();
    c.p_blur = 1.5f;
    CHECK(rl_strong_check(&c, &err) == RL_EINVAL && strstr(err.msg, "p_blur"));
    c = rl_strong_default();
    c.gamma_lo = 1.2f;
    CHECK(rl_strong_check(&c, &err) == RL_EINVAL && strstr(err.msg, "gamma"));
    c = rl_strong_default();
    c.brightness = 1.0f;
    CHECK(rl_strong_check(&c, &err) == RL_EINVAL);
    c = rl_strong_default();
    c.cutmix_area_hi = 1.5f;
    CHECK(rl_strong_check(&c, &err) == RL_EINVAL);
    c = rl_strong_default();
    CHECK(rl_strong_check(&c, &err) == RL_OK);
    float x[4] = {0};
    rl_rng rng;
    rl_rng_seed(&rng, 0, 0);
    CHECK(rl_strong_apply(&c, &rng, x, 1, 2, 2, NULL, &err) == RL_EINVAL);
}

int main(void) {
    test_order_kept();
    test_blur_centred();
    test_draws_independent_of_pixels();
    test_cutmix_boxes();
    test_box_paste();
    test_bad_config();
    return rl_test_report("test_strong");
}
