/* Losses: values against direct double-precision formulas, gradients against
 * central finite differences of the loss itself, the accumulate-with-scale
 * contract, ignored pixels (which must get exactly zero gradient), extreme
 * logits (no overflow), and results independent of the thread count.
 *
 * Tolerance: a loss is a mean over P pixels, so each logit's gradient is
 * O(1 / P); rl_gradcheck measures errors relative to max(1, |g|), so the
 * check runs on P * loss, whose gradients are O(1). Its float rounding
 * noise is ~1e-7 * P ~ 3e-6, over 2 eps = 2e-2 that is ~2e-4; the truncation
 * error eps^2 |L'''| / 6 is ~1e-5. FD_TOL = 2e-3 keeps a 10x margin, and
 * still catches a gradient term that is off by 1% (tried by mutation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/loss.h"
#include "testutil.h"

#define FD_EPS 1e-2
#define FD_TOL 2e-3
#define IGNORE 255

static double worst_fd_error = 0.0;

typedef enum { LOSS_CE, LOSS_DICE, LOSS_BCE, LOSS_SIGMOID_DICE } loss_kind;

typedef struct loss_case {
    loss_kind kind;
    int n, k, hw;
    float *logits;
    int32_t *labels;   /* CE, Dice */
    float *weights;    /* CE, or NULL */
    float *targets;    /* BCE, sigmoid Dice */
    uint8_t *valid;    /* BCE, sigmoid Dice, or NULL */
    int first_class;
    float smooth;
    float fd_scale; /* the finite-difference check runs on fd_scale * loss */
} loss_case;

static float run_loss(const loss_case *c, float *dlogits, float scale) {
    switch (c->kind) {
    case LOSS_CE:
        return rl_softmax_ce_loss(dlogits, c->logits, c->labels, c->weights, c->n, c->k, c->hw,
                                  IGNORE, scale);
    case LOSS_DICE:
        return rl_soft_dice_loss(dlogits, c->logits, c->labels, c->n, c->k, c->hw, IGNORE,
                                 c->first_class, c->smooth, scale);
    case LOSS_BCE:
        return rl_sigmoid_bce_loss(dlogits, c->logits, c->targets, c->valid, c->n, c->k, c->hw,
                                   scale);
    case LOSS_SIGMOID_DICE:
        return rl_sigmoid_dice_loss(dlogits, c->logits, c->targets, c->valid, c->n, c->k,
                                    c->hw, c->smooth, scale);
    }
    return NAN;
}

static double loss_value(void *ctx) { return run_loss(ctx, NULL, 1.0f); }

static double scaled_loss_value(void *ctx) {
    const loss_case *c = ctx;
    return (double)c->fd_scale * run_loss(c, NULL, 1.0f);
}

/* Reference values, straight from the formulas in loss.h, in double. */
static double reference_loss(const loss_case *c) {
    const int n = c->n, k = c->k, hw = c->hw;
    double *inter = calloc((size_t)k, sizeof(double)), *pred = calloc((size_t)k, sizeof(double)),
           *target = calloc((size_t)k, sizeof(double));
    double total = 0.0, count = 0.0;
    for (int s = 0; s < n; s++)
        for (int p = 0; p < hw; p++) {
            const float *z = c->logits + (size_t)s * k * hw + p;
            size_t i = (size_t)s * hw + p;
            if (c->kind == LOSS_CE || c->kind == LOSS_DICE) {
                int32_t label = c->labels[i];
                if (label == IGNORE || label < 0 || label >= k) continue;
                double zmax = z[0], sum = 0.0;
                for (int j = 1; j < k; j++) zmax = fmax(zmax, z[(size_t)j * hw]);
                for (int j = 0; j < k; j++) sum += exp(z[(size_t)j * hw] - zmax);
                double w = c->weights ? c->weights[i] : 1.0;
                total += w * (log(sum) + zmax - z[(size_t)label * hw]);
                count += 1.0;
                for (int j = 0; j < k; j++) {
                    double pj = exp(z[(size_t)j * hw] - zmax) / sum;
                    pred[j] += pj;
                    if (j == label) inter[j] += pj, target[j] += 1.0;
                }
            } else {
                if (c->valid && !c->valid[i]) continue;
                count += 1.0;
                for (int j = 0; j < k; j++) {
                    double x = z[(size_t)j * hw], t = c->targets[(size_t)s * k * hw + p + (size_t)j * hw];
                    double pj = 1.0 / (1.0 + exp(-x));
                    total += fmax(x, 0.0) - x * t + log1p(exp(-fabs(x)));
                    pred[j] += pj;
                    inter[j] += pj * t;
                    target[j] += t;
                }
            }
        }
    double result = 0.0;
    if (c->kind == LOSS_CE) result = total / count;
    if (c->kind == LOSS_BCE) result = total / (count * k);
    if (c->kind == LOSS_DICE || c->kind == LOSS_SIGMOID_DICE) {
        int first = c->kind == LOSS_DICE ? c->first_class : 0;
        double sum = 0.0;
        for (int j = first; j < k; j++)
            sum += (2 * inter[j] + c->smooth) / (pred[j] + target[j] + c->smooth);
        result = 1.0 - sum / (k - first);
    }
    free(inter), free(pred), free(target);
    return result;
}

static int pixel_ignored(const loss_case *c, size_t i) {
    if (c->kind == LOSS_CE || c->kind == LOSS_DICE)
        return c->labels[i] == IGNORE || c->labels[i] < 0 || c->labels[i] >= c->k;
    return c->valid && !c->valid[i];
}

static void check_case(const char *name, loss_case *c) {
    size_t nl = (size_t)c->n * c->k * c->hw;
    float *grad = calloc(nl, sizeof(float)), *grad2 = calloc(nl, sizeof(float));

    float value = run_loss(c, grad, 1.0f);
    double want = reference_loss(c);
    CHECK_MSG(fabs(value - want) <= 1e-5 * fmax(1.0, fabs(want)), "%s: loss %.8g, expected %.8g",
              name, (double)value, want);
    CHECK_MSG(value == (float)loss_value(c), "%s: the loss depends on dlogits", name);

    c->fd_scale = (float)(c->n * c->hw);
    for (size_t i = 0; i < nl; i++) grad2[i] = c->fd_scale * grad[i];
    rl_rng rng;
    rl_rng_seed(&rng, 5, 5);
    double e = rl_gradcheck(scaled_loss_value, c, c->logits, grad2, nl, nl, FD_EPS, &rng);
    if (e > worst_fd_error) worst_fd_error = e;
    CHECK_MSG(e <= FD_TOL, "%s: finite-difference error %.3g > %.3g", name, e, FD_TOL);

    /* ignored pixels receive exactly nothing */
    int ignored_zero = 1;
    for (int s = 0; s < c->n; s++)
        for (int p = 0; p < c->hw; p++)
            if (pixel_ignored(c, (size_t)s * c->hw + p))
                for (int j = 0; j < c->k; j++)
                    ignored_zero &= grad[((size_t)s * c->k + j) * c->hw + p] == 0.0f;
    CHECK_MSG(ignored_zero, "%s: gradient on an ignored pixel", name);

    /* dlogits += scale * gradient */
    for (size_t i = 0; i < nl; i++) grad2[i] = 0.5f;
    run_loss(c, grad2, -0.3f);
    double worst = 0.0;
    for (size_t i = 0; i < nl; i++)
        worst = fmax(worst, fabs(grad2[i] - (0.5 - 0.3 * grad[i])));
    CHECK_MSG(worst <= 1e-6, "%s: scaled gradient not accumulated (off by %.3g)", name, worst);

    free(grad), free(grad2);
}

/* The block reductions make every loss bit-identical for any thread count;
 * the case is large enough to take the OpenMP path. */
static void check_thread_independence(const char *name, loss_case *c) {
    size_t nl = (size_t)c->n * c->k * c->hw;
    float *grad1 = calloc(nl, sizeof(float)), *grad3 = calloc(nl, sizeof(float));
    int threads = rl_get_threads();
    rl_set_threads(1);
    float one = run_loss(c, grad1, 1.0f);
    rl_set_threads(3);
    float three = run_loss(c, grad3, 1.0f);
    rl_set_threads(threads);
    CHECK_MSG(one == three && memcmp(grad1, grad3, nl * sizeof *grad1) == 0,
              "%s: result depends on the thread count", name);
    free(grad1), free(grad3);
}

static loss_case make_case(loss_kind kind, int n, int k, int hw, rl_rng *rng) {
    loss_case c = {.kind = kind, .n = n, .k = k, .hw = hw, .smooth = 1.0f};
    size_t nl = (size_t)n * k * hw, np = (size_t)n * hw;
    c.logits = malloc(nl * sizeof(float));
    rl_fill_uniform(c.logits, nl, rng, -3, 3);
    c.labels = malloc(np * sizeof(int32_t));
    c.targets = malloc(nl * sizeof(float));
    for (size_t i = 0; i < np; i++) c.labels[i] = (int32_t)rl_rng_below(rng, (uint32_t)k);
    for (size_t i = 0; i < nl; i++) c.targets[i] = (float)rl_rng_below(rng, 2);
    return c;
}

static void free_case(loss_case *c) {
    free(c->logits), free(c->labels), free(c->weights), free(c->targets), free(c->valid);
}

static void test_cross_entropy(rl_rng *rng) {
    loss_case c = make_case(LOSS_CE, 2, 4, 15, rng);
    check_case("CE plain", &c);
    /* ignored pixels (and an out-of-range label, also ignored) and weights */
    for (int i = 0; i < 30; i += 4) c.labels[i] = IGNORE;
    c.labels[3] = 7;
    c.weights = malloc(30 * sizeof(float));
    rl_fill_uniform(c.weights, 30, rng, 0.0f, 2.0f);
    check_case("CE ignore+weights", &c);
    /* every pixel ignored: 0, and no gradient */
    for (int i = 0; i < 30; i++) c.labels[i] = IGNORE;
    float g[120] = {0};
    CHECK(rl_softmax_ce_loss(g, c.logits, c.labels, NULL, 2, 4, 15, IGNORE, 1.0f) == 0.0f);
    int untouched = 1;
    for (int i = 0; i < 120; i++) untouched &= g[i] == 0.0f;
    CHECK(untouched);
    free_case(&c);

    /* huge logits: finite loss, exact gradient signs */
    float z[2] = {1000.0f, -1000.0f}, dz[2] = {0, 0};
    int32_t label = 1;
    float loss = rl_softmax_ce_loss(dz, z, &label, NULL, 1, 2, 1, IGNORE, 1.0f);
    CHECK_MSG(fabsf(loss - 2000.0f) < 1e-2f, "CE of extreme logits %g", (double)loss);
    CHECK(dz[0] == 1.0f && dz[1] == -1.0f);
}

static void test_soft_dice(rl_rng *rng) {
    loss_case c = make_case(LOSS_DICE, 2, 3, 12, rng);
    check_case("Dice all classes", &c);
    c.first_class = 1;
    for (int i = 1; i < 24; i += 5) c.labels[i] = IGNORE;
    check_case("Dice first_class 1 + ignore", &c);
    c.smooth = 1e-5f;
    check_case("Dice smooth 1e-5", &c);
    c.first_class = 3;
    CHECK(rl_soft_dice_loss(NULL, c.logits, c.labels, 2, 3, 12, IGNORE, 3, 1.0f, 1.0f) == 0.0f);
    free_case(&c);
    loss_case two = make_case(LOSS_DICE, 1, 2, 20, rng);
    two.first_class = 1;
    check_case("Dice binary first_class 1", &two);
    free_case(&two);
}

static void test_sigmoid(rl_rng *rng) {
    loss_case c = make_case(LOSS_BCE, 2, 3, 10, rng);
    check_case("BCE plain", &c);
    c.valid = malloc(20);
    for (int i = 0; i < 20; i++) c.valid[i] = (uint8_t)(i % 3 != 0);
    check_case("BCE valid mask", &c);
    c.kind = LOSS_SIGMOID_DICE;
    check_case("sigmoid Dice valid mask", &c);
    free(c.valid);
    c.valid = NULL;
    c.smooth = 0.1f;
    check_case("sigmoid Dice smooth 0.1", &c);
    free_case(&c);

    /* huge logits: the stable form neither overflows nor loses the margin */
    float z[4] = {200.0f, -200.0f, 200.0f, -200.0f}, t[4] = {1, 0, 0, 1}, dz[4] = {0};
    float loss = rl_sigmoid_bce_loss(dz, z, t, NULL, 1, 4, 1, 1.0f);
    CHECK_MSG(fabsf(loss - 100.0f) < 1e-3f, "BCE of extreme logits %g", (double)loss);
    CHECK(dz[0] == 0.0f && dz[1] == 0.0f && dz[2] == 0.25f && dz[3] == -0.25f);
}

static void test_threads(rl_rng *rng) {
    loss_case c = make_case(LOSS_CE, 2, 4, 64 * 64, rng);
    for (int i = 0; i < 2 * 64 * 64; i += 7) c.labels[i] = IGNORE;
    check_thread_independence("CE 2x4x64x64", &c);
    c.kind = LOSS_DICE;
    check_thread_independence("Dice 2x4x64x64", &c);
    c.kind = LOSS_BCE;
    check_thread_independence("BCE 2x4x64x64", &c);
    c.kind = LOSS_SIGMOID_DICE;
    check_thread_independence("sigmoid Dice 2x4x64x64", &c);
    free_case(&c);
}

/* Mean-teacher consistency: value against the formula, gradient against
 * finite differences (run on P * loss, as above), valid mask respected. */
typedef struct mse_case {
    float *logits, *targets;
    uint8_t *valid;
    int n, k, hw;
    float fd_scale;
} mse_case;

static double mse_value(void *ctx) {
    const mse_case *c = ctx;
    return (double)c->fd_scale *
           rl_softmax_mse_loss(NULL, c->logits, c->targets, c->valid, c->n, c->k, c->hw, 1.0f);
}

static void test_softmax_mse(rl_rng *rng) {
    enum { N = 2, K = 3, HW = 10 };
    float logits[N * K * HW], targets[N * K * HW], probs[N * K * HW], grad[N * K * HW] = {0};
    uint8_t valid[N * HW];
    rl_fill_uniform(logits, N * K * HW, rng, -3, 3);
    for (int i = 0; i < N * HW; i++) valid[i] = (uint8_t)(i % 4 != 0);
    rl_softmax(targets, logits, N, K, HW); /* targets: another softmax */
    for (int i = 0; i < N * K * HW; i++) targets[i] = 0.5f * targets[i] + 0.5f / K;
    rl_softmax(probs, logits, N, K, HW);
    double ref = 0, count = 0;
    for (int s = 0; s < N; s++)
        for (int p = 0; p < HW; p++) {
            if (!valid[s * HW + p]) continue;
            count++;
            for (int c = 0; c < K; c++) {
                double d = probs[(s * K + c) * HW + p] - targets[(s * K + c) * HW + p];
                ref += d * d;
            }
        }
    ref /= count * K;
    float loss = rl_softmax_mse_loss(grad, logits, targets, valid, N, K, HW, 1.0f);
    CHECK_MSG(fabs(loss - ref) < 1e-6, "softmax MSE %g, expected %g", (double)loss, ref);
    mse_case c = {logits, targets, valid, N, K, HW, (float)count};
    for (int i = 0; i < N * K * HW; i++) grad[i] *= (float)count;
    double err = rl_gradcheck(mse_value, &c, logits, grad, N * K * HW, N * K * HW, FD_EPS, rng);
    if (err > worst_fd_error) worst_fd_error = err;
    CHECK_MSG(err <= FD_TOL, "softmax MSE gradient error %.3g", err);
    int masked_zero = 1;
    for (int i = 0; i < N * HW; i += 4)
        for (int k = 0; k < K; k++) masked_zero &= grad[((i / HW) * K + k) * HW + i % HW] == 0.0f;
    CHECK(masked_zero);
}

/* More classes than the Dice losses keep on the stack: the heap path. */
static void test_many_class_dice(rl_rng *rng) {
    loss_case c = make_case(LOSS_DICE, 1, 20, 16, rng);
    check_case("Dice 20 classes (heap scratch)", &c);
    c.kind = LOSS_SIGMOID_DICE;
    check_case("sigmoid Dice 20 classes (heap scratch)", &c);
    free_case(&c);
}

int main(void) {
    rl_rng rng;
    rl_rng_seed(&rng, 31337, 11);
    test_cross_entropy(&rng);
    test_soft_dice(&rng);
    test_sigmoid(&rng);
    test_threads(&rng);
    test_softmax_mse(&rng);
    test_many_class_dice(&rng);
    printf("worst finite-difference error %.3g (tolerance %.3g)\n", worst_fd_error, FD_TOL);
    return rl_test_report("test_loss");
}
