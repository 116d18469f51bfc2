/* Metrics: hand-computed Dice / HD95 / ASSD on small shapes (2D, 3D,
 * anisotropic), the empty-mask rules, ignored voxels, errors, cropping
 * invariance, aggregation, and the distance transform against brute force. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/metrics.h"
#include "testutil.h"

#define NEAR(a, b) (fabs((a) - (b)) <= 1e-12 * (1.0 + fabs(b)))

static const double UNIT[3] = {1, 1, 1};

/* Sets label `value` on the box [x0,x1] x [y0,y1] x [z0,z1] (inclusive). */
static void paint(int32_t *map, int nx, int ny, int x0, int x1, int y0, int y1, int z0, int z1,
                  int32_t value) {
    for (int z = z0; z <= z1; z++)
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) map[((size_t)z * ny + y) * nx + x] = value;
}

static void test_identical(void) {
    enum { NX = 20, NY = 16 };
    int32_t a[NX * NY] = {0};
    paint(a, NX, NY, 3, 9, 4, 12, 0, 0, 1);
    paint(a, NX, NY, 12, 17, 2, 5, 0, 0, 2);
    rl_case_metrics m[3];
    CHECK_OK(rl_compute_metrics(a, a, NX, NY, 1, UNIT, 3, RL_METRICS_NO_IGNORE, m, NULL));
    for (int c = 0; c < 3; c++) {
        CHECK(m[c].dice == 1.0 && m[c].iou == 1.0);
        CHECK(m[c].hd95 == 0.0 && m[c].assd == 0.0);
        CHECK(m[c].flags == 0);
        CHECK(m[c].gt_voxels == m[c].pred_voxels && m[c].gt_voxels == m[c].intersection_voxels);
    }
    CHECK(m[1].gt_voxels == 7 * 9);
}

/* Two 10x10 squares, the second shifted by 3 pixels in x. Surface distances
 * from A's 36 boundary pixels to B's boundary (and, by mirror symmetry, the
 * same multiset back): left column 10 x 3; top and bottom rows 2, 1 and
 * 7 x 0 each; right column (interior rows, inside B) min(3 to B's right
 * column, distance to B's top or bottom row) = 1 2 3 3 3 3 2 1. Sorted:
 * 14 x 0, 4 x 1, 4 x 2, 14 x 3. P95 index 0.95 * 35 = 33.25 lies between
 * two 3s: HD95 = 3. ASSD = 54 / 36 = 1.5. */
static void test_shifted_squares(void) {
    enum { NX = 32, NY = 30 };
    int32_t a[NX * NY] = {0}, b[NX * NY] = {0};
    paint(a, NX, NY, 10, 19, 10, 19, 0, 0, 1);
    paint(b, NX, NY, 13, 22, 10, 19, 0, 0, 1);
    rl_case_metrics m[2];
    CHECK_OK(rl_compute_metrics(a, b, NX, NY, 1, UNIT, 2, RL_METRICS_NO_IGNORE, m, NULL));
    CHECK_MSG(NEAR(m[1].dice, 0.7), "dice %.17g", m[1].dice);
    CHECK_MSG(NEAR(m[1].iou, 70.0 / 130.0), "iou %.17g", m[1].iou);
    CHECK_MSG(NEAR(m[1].hd95, 3.0), "hd95 %.17g", m[1].hd95);
    CHECK_MSG(NEAR(m[1].assd, 1.5), "assd %.17g", m[1].assd);

    /* Same pixels, spacing 0.5 mm in x: left column 10 x 1.5 mm; top and
     * bottom rows 1, 0.5, 7 x 0; right column min(1.5, dy) = 1 1.5 x 6 1.
     * Sorted: 14 x 0, 2 x 0.5, 4 x 1, 16 x 1.5 (sum 29), HD95 = 1.5. */
    const double sp[3] = {0.5, 1.0, 1.0};
    CHECK_OK(rl_compute_metrics(a, b, NX, NY, 1, sp, 2, RL_METRICS_NO_IGNORE, m, NULL));
    CHECK_MSG(NEAR(m[1].assd, 29.0 / 36.0), "assd %.17g", m[1].assd);
    CHECK_MSG(NEAR(m[1].hd95, 1.5), "hd95 %.17g", m[1].hd95);
}

/* A 3x3 square against its centre pixel: only the ring is surface (the
 * centre is interior in 2D), distances 4 x 1 and 4 x sqrt 2; the centre's
 * nearest ring pixel is 1 away. A 3x3x3 cube likewise: 6 x 1, 12 x sqrt 2,
 * 8 x sqrt 3, and the centre voxel 1 away. */
static void test_interior_is_not_surface(void) {
    int32_t sq[25] = {0}, dot[25] = {0};
    paint(sq, 5, 5, 1, 3, 1, 3, 0, 0, 1);
    paint(dot, 5, 5, 2, 2, 2, 2, 0, 0, 1);
    rl_case_metrics m[2];
    CHECK_OK(rl_compute_metrics(sq, dot, 5, 5, 1, UNIT, 2, RL_METRICS_NO_IGNORE, m, NULL));
    CHECK_MSG(NEAR(m[1].assd, (4 + 4 * sqrt(2.0) + 1) / 9), "assd %.17g", m[1].assd);
    CHECK_MSG(NEAR(m[1].hd95, sqrt(2.0)), "hd95 %.17g", m[1].hd95);
    CHECK(NEAR(m[1].dice, 2.0 / 10.0));

    int32_t cube[125] = {0}, centre[125] = {0};
    paint(cube, 5, 5, 1, 3, 1, 3, 1, 3, 1);
    paint(centre, 5, 5, 2, 2, 2, 2, 2, 2, 1);
    CHECK_OK(rl_compute_metrics(cube, centre, 5, 5, 5, UNIT, 2, RL_METRICS_NO_IGNORE, m, NULL));
    const double want = (6 + 12 * sqrt(2.0) + 8 * sqrt(3.0) + 1) / 27;
    CHECK_MSG(NEAR(m[1].assd, want), "assd %.17g want %.17g", m[1].assd, want);
    CHECK_MSG(NEAR(m[1].hd95, sqrt(3.0)), "hd95 %.17g", m[1].hd95);
}

/* Single voxels: every distance is the one offset, in mm. */
static void test_anisotropic_points(void) {
    int32_t a[12 * 10] = {0}, b[12 * 10] = {0};
    a[2 * 12 + 1] = 1; /* (1, 2) */
    b[6 * 12 + 4] = 1; /* (4, 6): offset (3, 4) */
    rl_case_metrics m[2];
    const double sp[3] = {2.0, 0.5, 7.0};
    CHECK_OK(rl_compute_metrics(a, b, 12, 10, 1, UNIT, 2, RL_METRICS_NO_IGNORE, m, NULL));
    CHECK(NEAR(m[1].hd95, 5.0) && NEAR(m[1].assd, 5.0));
    CHECK(m[1].dice == 0.0 && m[1].iou == 0.0 && m[1].flags == 0);
    CHECK_OK(rl_compute_metrics(a, b, 12, 10, 1, sp, 2, RL_METRICS_NO_IGNORE, m, NULL));
    CHECK_MSG(NEAR(m[1].hd95, sqrt(36.0 + 4.0)), "hd95 %.17g", m[1].hd95); /* z unused in 2D */

    int32_t p[4 * 5 * 6] = {0}, g[4 * 5 * 6] = {0};
    p[(0 * 5 + 1) * 4 + 0] = 1; /* (0, 1, 0) */
    g[(5 * 5 + 3) * 4 + 3] = 1; /* (3, 3, 5): offset (3, 2, 5) */
    const double sp3[3] = {0.7, 1.3, 2.5};
    CHECK_OK(rl_compute_metrics(p, g, 4, 5, 6, sp3, 2, RL_METRICS_NO_IGNORE, m, NULL));
    const double d = sqrt(2.1 * 2.1 + 2.6 * 2.6 + 12.5 * 12.5);
    CHECK_MSG(NEAR(m[1].hd95, d) && NEAR(m[1].assd, d), "hd95 %.17g assd %.17g want %.17g",
              m[1].hd95, m[1].assd, d);
}

/* Parallel rows 3 pixels apart, 2 mm in y: every distance is 6 mm. */
static void test_parallel_lines(void) {
    enum { NX = 15, NY = 12 };
    int32_t a[NX * NY] = {0}, b[NX * NY] = {0};
    paint(a, NX, NY, 0, NX - 1, 4, 4, 0, 0, 1);
    paint(b, NX, NY, 0, NX - 1, 7, 7, 0, 0, 1);
    const double sp[3] = {1.0, 2.0, 1.0};
    rl_case_metrics m[2];
    CHECK_OK(rl_compute_metrics(a, b, NX, NY, 1, sp, 2, RL_METRICS_NO_IGNORE, m, NULL));
    CHECK(NEAR(m[1].hd95, 6.0) && NEAR(m[1].assd, 6.0));
    /* Background: the whole image minus two rows, both masks equal except
     * rows 4 and 7 swapping roles. */
    CHECK(m[0].gt_voxels == NX * (NY - 1) && m[0].intersection_voxels == NX * (NY - 2));
}

static void test_empty_rules(void) {
    enum { N = 8 };
    int32_t zero[N * N] = {0}, one[N * N] = {0};
    paint(one, N, N, 2, 4, 2, 4, 0, 0, 1);
    rl_case_metrics m[3];
    /* class 2 absent from both, class 1 only in pred, then only in gt. */
    CHECK_OK(rl_compute_metrics(one, zero, N, N, 1, UNIT, 3, RL_METRICS_NO_IGNORE, m, NULL));
    CHECK(m[2].dice == 1.0 && m[2].iou == 1.0 && m[2].hd95 == 0.0 && m[2].assd == 0.0);
    CHECK(m[2].flags == (RL_METRIC_GT_EMPTY | RL_METRIC_PRED_EMPTY));
    CHECK(m[1].dice == 0.0 && m[1].iou == 0.0 && isnan(m[1].hd95) && isnan(m[1].assd));
    CHECK(m[1].flags == RL_METRIC_GT_EMPTY && m[1].pred_voxels == 9);
    CHECK_OK(rl_compute_metrics(zero, one, N, N, 1, UNIT, 3, RL_METRICS_NO_IGNORE, m, NULL));
    CHECK(m[1].dice == 0.0 && isnan(m[1].hd95) && m[1].flags == RL_METRIC_PRED_EMPTY);
    CHECK(isfinite(m[0].hd95) && m[0].flags == 0);
}

/* Ignored voxels leave both maps: a prediction that differs from the
 * reference only where the reference is ignored scores perfectly. */
static void test_ignore(void) {
    enum { N = 10 };
    int32_t gt[N * N] = {0}, pred[N * N] = {0};
    paint(gt, N, N, 2, 6, 2, 6, 0, 0, 1);
    paint(pred, N, N, 2, 6, 2, 6, 0, 0, 1);
    paint(gt, N, N, 0, 9, 8, 9, 0, 0, 255);
    paint(pred, N, N, 0, 3, 8, 9, 0, 0, 1);
    rl_case_metrics m[2];
    CHECK_OK(rl_compute_metrics(pred, gt, N, N, 1, UNIT, 2, 255, m, NULL));
    CHECK(m[1].dice == 1.0 && m[1].hd95 == 0.0);
    CHECK(m[0].dice == 1.0 && m[0].gt_voxels == N * N - 20 - 25);
    rl_error err = {0, ""};
    CHECK(rl_compute_metrics(pred, gt, N, N, 1, UNIT, 2, RL_METRICS_NO_IGNORE, m, &err) ==
          RL_ERANGE);
    CHECK(strstr(err.msg, "255") != NULL);
}

static void test_errors(void) {
    int32_t a[4] = {0, 1, 2, 3};
    rl_case_metrics m[4];
    rl_error err = {0, ""};
    CHECK(rl_compute_metrics(a, a, 2, 2, 1, UNIT, 3, RL_METRICS_NO_IGNORE, m, &err) == RL_ERANGE);
    int32_t neg[4] = {0, -1, 0, 0};
    CHECK(rl_compute_metrics(a, neg, 2, 2, 1, UNIT, 4, RL_METRICS_NO_IGNORE, m, &err) ==
          RL_ERANGE);
    CHECK(strstr(err.msg, "reference") != NULL);
    CHECK(rl_compute_metrics(a, a, 2, 2, 1, UNIT, 4, 1, m, &err) == RL_EINVAL);
    const double bad[3] = {1, 0, 1};
    CHECK(rl_compute_metrics(a, a, 2, 2, 1, bad, 4, RL_METRICS_NO_IGNORE, m, &err) == RL_EINVAL);
    const double nan_sp[3] = {1, 1, NAN};
    CHECK(rl_compute_metrics(a, a, 2, 2, 1, nan_sp, 4, RL_METRICS_NO_IGNORE, m, &err) ==
          RL_EINVAL);
    CHECK(rl_compute_metrics(a, a, 0, 2, 1, UNIT, 4, RL_METRICS_NO_IGNORE, m, &err) == RL_EINVAL);
    CHECK(rl_compute_metrics(a, a, 2, 2, 1, UNIT, 0, RL_METRICS_NO_IGNORE, m, &err) == RL_EINVAL);
}

/* Random blobs embedded in a larger volume give the same metrics: what lies
 * outside the shapes' bounding boxes is background either way. */
static void test_crop_invariance(void) {
    rl_rng rng;
    rl_rng_seed(&rng, 7, 1);
    enum { NX = 9, NY = 8, NZ = 6, PAD = 3, K = 4 };
    enum { BX = NX + 2 * PAD, BY = NY + 2 * PAD, BZ = NZ + 2 * PAD };
    int32_t p[NX * NY * NZ], g[NX * NY * NZ];
    static int32_t pb[BX * BY * BZ], gb[BX * BY * BZ];
    for (int i = 0; i < NX * NY * NZ; i++) {
        p[i] = (int32_t)rl_rng_below(&rng, K);
        g[i] = (int32_t)rl_rng_below(&rng, K);
    }
    memset(pb, 0, sizeof pb);
    memset(gb, 0, sizeof gb);
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++) {
                const size_t big = ((size_t)(z + PAD) * BY + (y + PAD)) * BX + (x + PAD);
                pb[big] = p[(z * NY + y) * NX + x];
                gb[big] = g[(z * NY + y) * NX + x];
            }
    const double sp[3] = {0.8, 1.1, 2.3};
    rl_case_metrics small[K], big[K];
    CHECK_OK(rl_compute_metrics(p, g, NX, NY, NZ, sp, K, RL_METRICS_NO_IGNORE, small, NULL));
    CHECK_OK(rl_compute_metrics(pb, gb, BX, BY, BZ, sp, K, RL_METRICS_NO_IGNORE, big, NULL));
    for (int c = 1; c < K; c++) {
        CHECK_MSG(NEAR(small[c].hd95, big[c].hd95), "class %d hd95 %g vs %g", c, small[c].hd95,
                  big[c].hd95);
        CHECK_MSG(NEAR(small[c].assd, big[c].assd), "class %d assd %g vs %g", c, small[c].assd,
                  big[c].assd);
        CHECK(small[c].dice == big[c].dice);
        CHECK(small[c].hd95 > 0);
    }
}

static void test_aggregate(void) {
    /* 3 cases x 2 classes; class 1 has a NaN distance in case 2. */
    rl_case_metrics cases[6];
    memset(cases, 0, sizeof cases);
    const double dice1[3] = {0.5, 0.7, 0.0};
    const double hd1[3] = {2.0, 4.0, NAN};
    for (int i = 0; i < 3; i++) {
        cases[i * 2 + 0].dice = cases[i * 2 + 0].iou = 1.0;
        cases[i * 2 + 1].dice = dice1[i];
        cases[i * 2 + 1].iou = dice1[i] / (2 - dice1[i]);
        cases[i * 2 + 1].hd95 = hd1[i];
        cases[i * 2 + 1].assd = hd1[i] / 2;
    }
    cases[2 * 2 + 1].flags = RL_METRIC_PRED_EMPTY;
    rl_class_summary per[2], fg;
    CHECK_OK(rl_aggregate_metrics(cases, 3, 2, per, &fg, NULL));
    CHECK(NEAR(per[1].dice.mean, 0.4) && per[1].dice.count == 3 && per[1].dice.nan_count == 0);
    const double var = ((0.1 * 0.1) + (0.3 * 0.3) + (0.4 * 0.4)) / 3;
    CHECK(NEAR(per[1].dice.std, sqrt(var)));
    CHECK(NEAR(per[1].hd95.mean, 3.0) && NEAR(per[1].hd95.std, 1.0));
    CHECK(per[1].hd95.count == 2 && per[1].hd95.nan_count == 1);
    CHECK(per[1].pred_empty_cases == 1 && per[1].gt_empty_cases == 0);
    CHECK(per[0].dice.mean == 1.0 && per[0].dice.std == 0.0);
    CHECK(NEAR(fg.dice.mean, 0.4) && fg.dice.count == 1 && NEAR(fg.hd95.mean, 3.0));
    CHECK(fg.pred_empty_cases == 1);
    /* No case at all: means are NaN, counts 0. */
    CHECK_OK(rl_aggregate_metrics(cases, 0, 2, per, &fg, NULL));
    CHECK(isnan(per[1].dice.mean) && per[1].dice.count == 0 && isnan(fg.dice.mean));
}

/* Brute force: distance to every feature voxel. */
static void brute_edt(const uint8_t *f, int nx, int ny, int nz, const double *sp, double *out) {
    const int n = nx * ny * nz;
    for (int i = 0; i < n; i++) {
        const int x = i % nx, y = (i / nx) % ny, z = i / (nx * ny);
        double best = INFINITY;
        for (int j = 0; j < n; j++) {
            if (!f[j]) continue;
            const double dx = (x - j % nx) * sp[0], dy = (y - (j / nx) % ny) * sp[1],
                         dz = (z - j / (nx * ny)) * sp[2];
            const double d = dx * dx + dy * dy + dz * dz;
            if (d < best) best = d;
        }
        out[i] = sqrt(best);
    }
}

static void test_edt_brute_force(void) {
    rl_rng rng;
    rl_rng_seed(&rng, 2024, 3);
    const int shapes[][3] = {{1, 1, 1}, {7, 1, 1}, {1, 9, 1}, {13, 11, 1}, {9, 8, 7},
                             {5, 12, 3}, {16, 4, 9}, {6, 6, 6}};
    const float densities[] = {0.0f, 0.003f, 0.05f, 0.3f, 1.0f};
    double worst = 0;
    int mismatched_inf = 0, cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t d = 0; d < sizeof densities / sizeof densities[0]; d++) {
            const int nx = shapes[s][0], ny = shapes[s][1], nz = shapes[s][2];
            const int n = nx * ny * nz;
            uint8_t *f = malloc((size_t)n);
            double *fast = malloc(sizeof(double) * (size_t)n);
            double *slow = malloc(sizeof(double) * (size_t)n);
            for (int i = 0; i < n; i++) f[i] = rl_rng_uniform(&rng) < densities[d];
            if (d == 1) f[rl_rng_below(&rng, (uint32_t)n)] = 1; /* sparse, not empty */
            const double sp[3] = {0.3 + 2.5 * rl_rng_uniform(&rng),
                                  0.3 + 2.5 * rl_rng_uniform(&rng),
                                  0.3 + 2.5 * rl_rng_uniform(&rng)};
            CHECK_OK(rl_distance_transform(f, nx, ny, nz, sp, fast, NULL));
            brute_edt(f, nx, ny, nz, sp, slow);
            for (int i = 0; i < n; i++) {
                if (isinf(slow[i]) || isinf(fast[i])) {
                    mismatched_inf += isinf(slow[i]) != isinf(fast[i]);
                    continue;
                }
                const double e = fabs(fast[i] - slow[i]) / (1.0 + slow[i]);
                if (e > worst) worst = e;
            }
            cases++;
            free(f);
            free(fast);
            free(slow);
        }
    CHECK_MSG(worst < 1e-12, "EDT vs brute force: worst relative error %g", worst);
    CHECK(mismatched_inf == 0);
    CHECK(cases == 40);
}

/* A volume large enough for the threaded passes (the small cases above run
 * single-threaded), with few features so that brute force stays cheap. */
static void test_edt_threaded(void) {
    enum { NX = 48, NY = 40, NZ = 36, N = NX * NY * NZ, FEATURES = 12 };
    uint8_t *f = calloc(N, 1);
    double *fast = malloc(sizeof(double) * N);
    int where[FEATURES];
    rl_rng rng;
    rl_rng_seed(&rng, 99, 5);
    for (int j = 0; j < FEATURES; j++) {
        where[j] = (int)rl_rng_below(&rng, N);
        f[where[j]] = 1;
    }
    const double sp[3] = {0.9, 1.7, 3.1};
    CHECK_OK(rl_distance_transform(f, NX, NY, NZ, sp, fast, NULL));
    double worst = 0;
    for (int i = 0; i < N; i++) {
        const int x = i % NX, y = (i / NX) % NY, z = i / (NX * NY);
        double best = INFINITY;
        for (int j = 0; j < FEATURES; j++) {
            const int q = where[j];
            const double dx = (x - q % NX) * sp[0], dy = (y - (q / NX) % NY) * sp[1],
                         dz = (z - q / (NX * NY)) * sp[2];
            best = fmin(best, dx * dx + dy * dy + dz * dz);
        }
        worst = fmax(worst, fabs(fast[i] - sqrt(best)) / (1.0 + sqrt(best)));
    }
    CHECK_MSG(worst < 1e-12, "threaded EDT: worst relative error %g", worst);
    free(f);
    free(fast);
}

int main(void) {
    test_identical();
    test_shifted_squares();
    test_interior_is_not_surface();
    test_anisotropic_points();
    test_parallel_lines();
    test_empty_rules();
    test_ignore();
    test_errors();
    test_crop_invariance();
    test_aggregate();
    test_edt_brute_force();
    test_edt_threaded();
    return rl_test_report("test_metrics");
}
