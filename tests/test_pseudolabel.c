/* Feature extraction and offline pseudo-labels: shapes, the hypercolumn's
 * upsampling and per-level normalisation (against a naive double-precision
 * reimplementation), exact recovery of the labels when the query images are
 * the reference images, the min-confidence rule, the labeled-case selection
 * and the agreement counts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/features.h"
#include "reflabel/pseudolabel.h"
#include "testutil.h"

static rl_unet *make_net(int in_channels, int classes, int depth, int base, uint64_t seed) {
    rl_unet_config c = rl_unet_default_config();
    c.in_channels = in_channels;
    c.num_classes = classes;
    c.depth = depth;
    c.base_width = base;
    c.max_width = 64;
    c.groups = 2;
    rl_unet *net = NULL;
    CHECK_OK(rl_unet_create(&net, &c, seed, NULL));
    return net;
}

/* Bilinear sample (align_corners = False) of channel ch at output pixel
 * (y, x) for a map (c, h, w) upsampled by 2^level, in double. */
static double naive_bilinear(const float *map, int h, int w, int ch, int level, int y, int x) {
    double s = (double)(1 << level);
    double sy = (y + 0.5) / s - 0.5, sx = (x + 0.5) / s - 0.5;
    if (sy < 0) sy = 0;
    if (sx < 0) sx = 0;
    int y0 = (int)floor(sy), x0 = (int)floor(sx);
    int y1 = y0 + 1 < h ? y0 + 1 : h - 1, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
    double fy = sy - y0, fx = sx - x0;
    const float *m = map + (size_t)ch * h * w;
    double top = m[y0 * w + x0] * (1 - fx) + m[y0 * w + x1] * fx;
    double bottom = m[y1 * w + x0] * (1 - fx) + m[y1 * w + x1] * fx;
    return top * (1 - fy) + bottom * fy;
}

static void test_features(void) {
    rl_error err = {0, ""};
    rl_unet *net = make_net(2, 3, 3, 4, 11);
    const rl_unet_config *cfg = rl_unet_get_config(net);
    CHECK(rl_feature_dim(cfg, RL_FEATURES_LAST) == 4);
    CHECK(rl_feature_dim(cfg, RL_FEATURES_HYPERCOLUMN) == 4 + 8 + 16);
    CHECK(rl_feature_source_from_name("hypercolumn") == RL_FEATURES_HYPERCOLUMN);
    CHECK(rl_feature_source_from_name("last") == RL_FEATURES_LAST);
    CHECK(rl_feature_source_from_name("first") == -1);

    float dummy[4];
    CHECK(rl_unet_extract_features(net, RL_FEATURES_LAST, dummy, &err) == RL_EINVAL);

    const int N = 2, H = 16, W = 24;
    CHECK_OK(rl_unet_plan(net, N, H, W, 0, NULL));
    size_t plane = (size_t)H * W;
    float *x = malloc((size_t)N * 2 * plane * sizeof *x);
    rl_rng rng;
    rl_rng_seed(&rng, 5, 0);
    rl_fill_uniform(x, (size_t)N * 2 * plane, &rng, -1, 1);
    CHECK_OK(rl_unet_forward(net, x, 0, NULL));

    int dl = 4, dh = 28;
    float *last = malloc((size_t)N * dl * plane * sizeof *last);
    float *hyper = malloc((size_t)N * dh * plane * sizeof *hyper);
    CHECK_OK(rl_unet_extract_features(net, RL_FEATURES_LAST, last, NULL));
    rl_tensor top = rl_unet_features(net);
    CHECK(top.n == N && top.c == dl && top.h == H && top.w == W);
    CHECK(memcmp(last, top.data, rl_tensor_numel(&top) * sizeof(float)) == 0);

    CHECK_OK(rl_unet_extract_features(net, RL_FEATURES_HYPERCOLUMN, hyper, NULL));
    /* every level block of every pixel: the naive upsampled vector divided by
     * its norm, and therefore a unit vector */
    double worst = 0, worst_norm = 0;
    int base = 0;
    for (int l = 0; l < cfg->depth; l++) {
        rl_tensor t = rl_unet_decoder_output(net, l);
        CHECK(t.h == H >> l && t.w == W >> l);
        for (int n = 0; n < N; n++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    const float *map = t.data + (size_t)n * t.c * t.h * t.w;
                    double ref[64], norm = 0, got_norm = 0;
                    for (int c = 0; c < t.c; c++) {
                        ref[c] = naive_bilinear(map, t.h, t.w, c, l, y, xx);
                        norm += ref[c] * ref[c];
                    }
                    norm = sqrt(norm);
                    for (int c = 0; c < t.c; c++) {
                        double got = hyper[((size_t)n * dh + base + c) * plane + (size_t)y * W + xx];
                        double want = norm > 0 ? ref[c] / norm : 0;
                        if (fabs(got - want) > worst) worst = fabs(got - want);
                        got_norm += got * got;
                    }
                    if (norm > 0 && fabs(sqrt(got_norm) - 1) > worst_norm)
                        worst_norm = fabs(sqrt(got_norm) - 1);
                }
        base += t.c;
    }
    CHECK_MSG(worst < 1e-5, "hypercolumn differs from the naive bilinear by %g", worst);
    CHECK_MSG(worst_norm < 1e-5, "a level block has norm 1 +- %g", worst_norm);
    /* level 0 is the last decoder map itself, normalised */
    double n0 = 0;
    for (int c = 0; c < dl; c++) n0 += (double)last[(size_t)c * plane] * last[(size_t)c * plane];
    CHECK(fabs(hyper[0] - last[0] / sqrt(n0)) < 1e-6);
    free(x);
    free(last);
    free(hyper);
    rl_unet_free(net);
}

/* A case of random intensities: every pixel sees a different neighbourhood,
 * so the features of a random network separate the pixels. Labels are
 * stripes of 3 classes. */
static void make_case(rl_volume *img, int32_t *labels, int nx, int ny, int nz, uint64_t seed) {
    CHECK_OK(rl_volume_create(img, nx, ny, nz, NULL));
    rl_rng rng;
    rl_rng_seed(&rng, seed, 1);
    rl_fill_uniform(img->data, rl_volume_numel(img), &rng, 0, 100);
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) labels[((size_t)z * ny + y) * nx + x] = (x + 2 * y + z) / 3 % 3;
}

/* Identical reference and query: each query pixel's own reference has cosine
 * 1, the maximum, so top-1 must return its label unless another reference of
 * ANOTHER label is just as similar, and then the margin is 0 (a tie). */
static void check_identity(rl_feature_source src, int nx, int ny, int nz, int axis) {
    rl_unet *net = make_net(1, 3, 2, 4, 3);
    rl_volume img;
    size_t n = (size_t)nx * ny * nz;
    int32_t *truth = malloc(n * sizeof *truth), *pseudo = malloc(n * sizeof *pseudo);
    float *margin = malloc(n * sizeof *margin);
    make_case(&img, truth, nx, ny, nz, 7);
    rl_pseudolabel_config cfg = rl_pseudolabel_default_config();
    cfg.refs.features = src;
    cfg.axis = axis;
    int a = nz == 1 ? 2 : axis, h, w;
    rl_slice_shape(nx, ny, nz, a, &h, &w);
    rl_pseudolabeler *pl = NULL;
    CHECK_OK(rl_pseudolabeler_create(&pl, net, &cfg, rl_volume_num_slices(&img, a), h * w, NULL));
    CHECK_OK(rl_pseudolabeler_add_reference(pl, &img, 1, truth, NULL));
    CHECK(rl_pseudolabeler_references(pl) == (int)n);
    CHECK_OK(rl_pseudolabeler_label_case(pl, &img, 1, pseudo, margin, NULL));
    size_t exact = 0, unexplained = 0, negative = 0;
    for (size_t i = 0; i < n; i++) {
        exact += pseudo[i] == truth[i];
        unexplained += pseudo[i] != truth[i] && margin[i] > 1e-5f;
        negative += margin[i] < 0;
    }
    CHECK_MSG(unexplained == 0, "%s %dx%dx%d axis %d: %zu pixels lost their label with margin > 0",
              rl_feature_source_name(src), nx, ny, nz, axis, unexplained);
    CHECK_MSG(exact == n, "%s %dx%dx%d axis %d: %zu of %zu labels recovered",
              rl_feature_source_name(src), nx, ny, nz, axis, exact, n);
    CHECK(negative == 0); /* top-1: the winner is the best, margin >= 0 */
    rl_pseudolabeler_free(pl);
    rl_volume_free(&img);
    free(truth);
    free(pseudo);
    free(margin);
    rl_unet_free(net);
}

static void test_identity(void) {
    check_identity(RL_FEATURES_LAST, 13, 10, 1, 2);       /* 2D, padded to 16x12 */
    check_identity(RL_FEATURES_HYPERCOLUMN, 13, 10, 1, 2);
    for (int axis = 0; axis < 3; axis++) check_identity(RL_FEATURES_LAST, 9, 7, 5, axis);
    check_identity(RL_FEATURES_HYPERCOLUMN, 9, 7, 5, 1);
}

/* The matcher is given a different image than the references: margins vary,
 * and the min-confidence rule replaces exactly those below the threshold. */
static void test_min_confidence(void) {
    float m[5] = {0.5f, 0.01f, INFINITY, 0.1f, 0.0f};
    int32_t l[5] = {1, 2, 0, 1, 2};
    CHECK(rl_pseudolabel_apply_min_margin(l, m, 5, 0.1f, 3) == 2);
    CHECK(l[0] == 1 && l[1] == 3 && l[2] == 0 && l[3] == 1 && l[4] == 3);

    rl_unet *net = make_net(1, 3, 2, 4, 9);
    int nx = 16, ny = 16;
    size_t n = (size_t)nx * ny;
    rl_volume ref, query;
    int32_t *truth = malloc(n * sizeof *truth), *q_truth = malloc(n * sizeof *q_truth);
    int32_t *pseudo = malloc(n * sizeof *pseudo), *raw = malloc(n * sizeof *raw);
    float *margin = malloc(n * sizeof *margin);
    make_case(&ref, truth, nx, ny, 1, 1);
    make_case(&query, q_truth, nx, ny, 1, 2);
    rl_pseudolabel_config cfg = rl_pseudolabel_default_config();
    rl_pseudolabeler *pl = NULL;
    CHECK_OK(rl_pseudolabeler_create(&pl, net, &cfg, 1, (int)n, NULL));
    CHECK_OK(rl_pseudolabeler_add_reference(pl, &ref, 1, truth, NULL));
    CHECK_OK(rl_pseudolabeler_label_case(pl, &query, 1, pseudo, margin, NULL));
    memcpy(raw, pseudo, n * sizeof *raw);
    /* the median margin as threshold: about half the pixels go */
    float *sorted = malloc(n * sizeof *sorted);
    memcpy(sorted, margin, n * sizeof *sorted);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            float t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    float threshold = sorted[n / 2];
    CHECK(sorted[0] >= 0 && sorted[n - 1] <= 2.0f + 1e-6f); /* cosine top-1 range */
    CHECK(sorted[0] < sorted[n - 1]);
    int64_t changed = rl_pseudolabel_apply_min_margin(pseudo, margin, (int64_t)n, threshold, 3);
    int64_t expect = 0, wrong = 0;
    for (size_t i = 0; i < n; i++) {
        int low = margin[i] < threshold;
        expect += low;
        wrong += low ? pseudo[i] != 3 : pseudo[i] != raw[i];
    }
    CHECK(changed == expect && expect > 0 && expect < (int64_t)n);
    CHECK(wrong == 0);
    free(sorted);
    rl_pseudolabeler_free(pl);
    rl_volume_free(&ref);
    rl_volume_free(&query);
    free(truth);
    free(q_truth);
    free(pseudo);
    free(raw);
    free(margin);
    rl_unet_free(net);
}

static int compare_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* rl_pseudolabel_keep_fraction against its definition, by sorting: of the
 * pixels not ignored, those whose confidence reaches the ceil(F m)-th largest
 * keep their label, whatever it is. Confidences drawn from 8 values make ties
 * at the cut common; continuous ones make the kept count exact. */
static void check_keep_fraction(int ties, double fraction, uint64_t seed) {
    enum { N = 3001, IGNORE = -1 };
    static int32_t labels[N], expect[N];
    static float confidence[N], scratch[N], sorted[N];
    rl_rng rng;
    rl_rng_seed(&rng, seed, 0);
    int m = 0;
    for (int i = 0; i < N; i++) {
        /* class 0 common, some ignored, labels up to 63 (bit sets) */
        uint32_t r = rl_rng_below(&rng, 100);
        labels[i] = r < 10 ? IGNORE : r < 60 ? 0 : (int32_t)(1 + rl_rng_below(&rng, 63));
        confidence[i] = ties ? (float)rl_rng_below(&rng, 8) / 8 : rl_rng_uniform(&rng) * 2 - 0.5f;
        if (labels[i] != IGNORE) sorted[m++] = confidence[i];
    }
    qsort(sorted, (size_t)m, sizeof *sorted, compare_desc);
    int k = (int)ceil(fraction * m);
    float cut = sorted[(k < 1 ? 1 : k > m ? m : k) - 1];
    int64_t expect_changed = 0, kept = 0;
    for (int i = 0; i < N; i++) {
        int keep = labels[i] != IGNORE && (fraction >= 1 || confidence[i] >= cut);
        expect[i] = keep ? labels[i] : IGNORE;
        expect_changed += labels[i] != IGNORE && !keep;
        kept += keep;
    }
    int64_t changed = rl_pseudolabel_keep_fraction(labels, confidence, N, fraction, IGNORE, scratch);
    CHECK_MSG(changed == expect_changed, "ties %d F %g: changed %lld, expected %lld", ties,
              fraction, (long long)changed, (long long)expect_changed);
    CHECK_MSG(memcmp(labels, expect, sizeof labels) == 0, "ties %d F %g", ties, fraction);
    if (fraction < 1) CHECK(ties ? kept >= k : kept == (k < 1 ? 1 : k));
    CHECK(fraction >= 1 ? changed == 0 : fraction < 0.9 ? changed > 0 : 1);
}

static void test_keep_fraction(void) {
    const double fractions[] = {1e-4, 0.1, 0.3, 0.5, 0.75, 0.999, 1.0};
    for (int f = 0; f < (int)(sizeof fractions / sizeof *fractions); f++)
        for (int ties = 0; ties < 2; ties++) check_keep_fraction(ties, fractions[f], 10 + (uint64_t)f);
    /* equal confidences cannot be told apart: all are kept */
    int32_t l[4] = {1, 1, 0, 1};
    float c[4] = {0.2f, 0.2f, 0.2f, 0.2f}, scratch[5];
    CHECK(rl_pseudolabel_keep_fraction(l, c, 4, 0.3, -1, scratch) == 0);
    /* classes are ranked together, ignored pixels neither count nor change */
    int32_t l2[5] = {0, 1, -1, 0, 2};
    float c2[5] = {0.4f, -1.0f, 9.0f, 0.1f, 0.3f};
    CHECK(rl_pseudolabel_keep_fraction(l2, c2, 5, 0.5, -1, scratch) == 2);
    CHECK(l2[0] == 0 && l2[1] == -1 && l2[2] == -1 && l2[3] == -1 && l2[4] == 2);
}

/* rl_pseudolabel_margin_for_accuracy against its definition, by trying every
 * margin that occurs as the threshold: the answer is the smallest t whose
 * kept set {margin >= t} is right in at least the share A; -INFINITY when
 * that t is the lowest margin (all kept), +INFINITY when no t qualifies.
 * Margins drawn from 6 values make ties common; continuous ones do not. */
static float margin_for_accuracy_by_definition(const float *right, int nr, const float *wrong,
                                               int nw, double accuracy) {
    float best = INFINITY, lowest = INFINITY;
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < (s ? nw : nr); c++) {
            float t = s ? wrong[c] : right[c];
            int kr = 0, kw = 0;
            for (int i = 0; i < nr; i++) kr += right[i] >= t;
            for (int i = 0; i < nw; i++) kw += wrong[i] >= t;
            if ((double)kr >= accuracy * (kr + kw) && t < best) best = t;
            if (t < lowest) lowest = t;
        }
    return best == lowest ? -INFINITY : best;
}

static void check_margin_for_accuracy(int ties, double accuracy, double wrong_share,
                                      uint64_t seed) {
    enum { N = 700 };
    static float right[N], wrong[N], right2[N], wrong2[N];
    rl_rng rng;
    rl_rng_seed(&rng, seed, 0);
    int nr = 0, nw = 0;
    for (int i = 0; i < N; i++) {
        /* wrong matches lean to small margins, as in the matcher's output */
        int is_wrong = rl_rng_uniform(&rng) < wrong_share;
        float m = ties ? (float)rl_rng_below(&rng, 6) / 8 : rl_rng_uniform(&rng);
        if (is_wrong) wrong[nw++] = m * m;
        else right[nr++] = m;
    }
    memcpy(right2, right, sizeof right);
    memcpy(wrong2, wrong, sizeof wrong);
    float expect = margin_for_accuracy_by_definition(right, nr, wrong, nw, accuracy);
    float got = rl_pseudolabel_margin_for_accuracy(right2, nr, wrong2, nw, accuracy);
    CHECK_MSG(got == expect, "ties %d A %g wrong %g: %g, expected %g", ties, accuracy,
              wrong_share, got, expect);
}

static void test_margin_for_accuracy(void) {
    const double accuracies[] = {0.5, 0.8, 0.9, 0.95, 0.99, 1.0};
    const double wrong_shares[] = {0.0, 0.05, 0.3, 0.9};
    uint64_t seed = 40;
    for (int a = 0; a < 6; a++)
        for (int w = 0; w < 4; w++)
            for (int ties = 0; ties < 2; ties++)
                check_margin_for_accuracy(ties, accuracies[a], wrong_shares[w], seed++);
    /* the cases by hand: 3 right at 0.5, 0.4, 0.1, 1 wrong at 0.3 */
    float r[3] = {0.1f, 0.5f, 0.4f}, w[1] = {0.3f};
    CHECK(rl_pseudolabel_margin_for_accuracy(r, 3, w, 1, 0.75) == -INFINITY); /* 3/4 */
    CHECK(rl_pseudolabel_margin_for_accuracy(r, 3, w, 1, 0.8) == 0.4f);       /* 2/2 */
    float r2[1] = {0.2f}, w2[2] = {0.9f, 0.1f};
    CHECK(rl_pseudolabel_margin_for_accuracy(r2, 1, w2, 2, 0.9) == INFINITY); /* none */
    CHECK(rl_pseudolabel_margin_for_accuracy(r2, 1, w2, 2, 0.5) == 0.2f);     /* 1/2 */
    /* a tie of a right and a wrong pixel is kept or dropped as one */
    float r3[2] = {0.6f, 0.3f}, w3[1] = {0.6f};
    CHECK(rl_pseudolabel_margin_for_accuracy(r3, 2, w3, 1, 0.6) == -INFINITY); /* 2/3 */
    CHECK(rl_pseudolabel_margin_for_accuracy(r3, 2, w3, 1, 0.7) == INFINITY);  /* 1/2, 2/3 */
    CHECK(isnan(rl_pseudolabel_margin_for_accuracy(r3, 0, w3, 0, 0.9)));
    float only[2] = {0.2f, 0.7f};
    CHECK(rl_pseudolabel_margin_for_accuracy(only, 2, NULL, 0, 0.99) == -INFINITY);
}

/* Reference labels equal to the ignore label are left out of the bank, and
 * more reference slices than planned are refused. */
static void test_bank_limits(void) {
    rl_error err = {0, ""};
    rl_unet *net = make_net(1, 3, 2, 4, 4);
    rl_volume img;
    int32_t labels[8 * 8 * 3];
    make_case(&img, labels, 8, 8, 3, 5);
    for (int i = 0; i < 64; i++) labels[i] = 3; /* slice z = 0: all ignored */
    rl_pseudolabel_config cfg = rl_pseudolabel_default_config();
    cfg.ignore_label = 3;
    rl_pseudolabeler *pl = NULL;
    CHECK_OK(rl_pseudolabeler_create(&pl, net, &cfg, 3, 64, NULL));
    CHECK_OK(rl_pseudolabeler_add_reference(pl, &img, 1, labels, NULL));
    CHECK(rl_pseudolabeler_references(pl) == 128);
    CHECK(rl_pseudolabeler_add_reference(pl, &img, 1, labels, &err) == RL_ERANGE);
    CHECK(strstr(err.msg, "reference slices") != NULL);
    CHECK(rl_pseudolabeler_add_reference(pl, &img, 2, labels, &err) == RL_EINVAL);
    rl_pseudolabeler_free(pl);
    rl_volume_free(&img);
    rl_unet_free(net);
}

static void test_choose_labeled(void) {
    rl_error err = {0, ""};
    rl_case cases[6];
    memset(cases, 0, sizeof cases);
    char lab[] = "x.png";
    for (int i = 0; i < 6; i++) {
        snprintf(cases[i].id, sizeof cases[i].id, "c%d", i);
        cases[i].label_path = i == 2 ? NULL : lab; /* c2 has no label */
    }
    rl_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.root = "ds";
    ds.train = cases;
    ds.num_train = 6;
    uint8_t keep[6];
    CHECK_OK(rl_choose_labeled(&ds, NULL, RL_SELECT_EVEN, 0, keep, NULL));
    CHECK(keep[0] && keep[1] && !keep[2] && keep[3] && keep[4] && keep[5]);
    /* "2" evenly among the 5 labeled c0 c1 c3 c4 c5: indices floor((i+0.5)*5/2) = 1, 3 */
    CHECK_OK(rl_choose_labeled(&ds, "2", RL_SELECT_EVEN, 0, keep, NULL));
    CHECK(!keep[0] && keep[1] && !keep[2] && !keep[3] && keep[4] && !keep[5]);
    /* the same call as rl_select_labeled on the labeled ids, for random too */
    const char *ids[5] = {"c0", "c1", "c3", "c4", "c5"};
    uint8_t mask[5];
    CHECK_OK(rl_select_labeled("3", 5, ids, RL_SELECT_RANDOM, 42, mask, NULL));
    CHECK_OK(rl_choose_labeled(&ds, "3", RL_SELECT_RANDOM, 42, keep, NULL));
    CHECK(keep[0] == mask[0] && keep[1] == mask[1] && keep[2] == 0 && keep[3] == mask[2] &&
          keep[4] == mask[3] && keep[5] == mask[4]);
    for (int i = 0; i < 6; i++) cases[i].label_path = NULL;
    CHECK(rl_choose_labeled(&ds, "2", RL_SELECT_EVEN, 0, keep, &err) == RL_EINVAL);
}

static void test_agreement(void) {
    rl_error err = {0, ""};
    rl_label_agreement a;
    CHECK_OK(rl_label_agreement_init(&a, 3, NULL));
    int32_t pred[8] = {0, 1, 1, 2, 3, 0, 2, 1};
    int32_t truth[8] = {0, 1, 2, 2, 1, 3, 2, 0};
    /* truth 3 ignored (voxel 5); pred 3 abstains (voxel 4) */
    CHECK_OK(rl_label_agreement_add(&a, pred, truth, 8, 3, 3, NULL));
    CHECK(a.voxels == 6 && a.abstained == 1 && a.correct == 4);
    CHECK(fabs(rl_label_agreement_accuracy(&a) - 4.0 / 6.0) < 1e-12);
    /* class 1: pred {1,2,7}, truth {1}: Dice 2*1/4 */
    CHECK(fabs(rl_label_agreement_dice(&a, 1) - 0.5) < 1e-12);
    /* class 2: pred {3,6}, truth {2,3,6}: 2*2/5 */
    CHECK(fabs(rl_label_agreement_dice(&a, 2) - 0.8) < 1e-12);
    int32_t bad[1] = {5}, ok[1] = {0};
    CHECK(rl_label_agreement_add(&a, ok, bad, 1, -1, -1, &err) == RL_ERANGE);
    rl_label_agreement_free(&a);
}

int main(void) {
    rl_set_threads(2);
    test_features();
    test_identity();
    test_min_confidence();
    test_keep_fraction();
    test_margin_for_accuracy();
    test_bank_limits();
    test_choose_labeled();
    test_agreement();
    return rl_test_report("test_pseudolabel");
}
