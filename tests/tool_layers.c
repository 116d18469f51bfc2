/* Runs every layer and loss on seeded random inputs and writes inputs,
 * parameters, upstream gradients, outputs and all gradients as .npy files
 * into the folder argv[1], for tests/oracle/test_torch_layers.py to
 * recompute with PyTorch. <folder>/cases.txt lists one case per line:
 *   <name> <kind> key=value ...
 * and the tensors of case <name> are <folder>/<name>.<tensor>.npy.
 * $RL_CONV picks the convolution backend (exit 77: not in this build). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/layers.h"
#include "reflabel/loss.h"
#include "testutil.h"

#define IGNORE_INDEX 255
#define LOSS_SCALE 0.7f

typedef struct writer {
    const char *dir;
    FILE *cases;
    int failed;
} writer;

/* Writes <dir>/<name>.<tensor>.npy; ndim dimensions follow as ints. */
static void save(writer *wr, const char *name, const char *tensor, const void *data,
                 const char *dtype, int ndim, ...) {
    int shape[8];
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim; i++) shape[i] = va_arg(ap, int);
    va_end(ap);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s.npy", wr->dir, name, tensor);
    if (rl_npy_write(path, data, dtype, shape, ndim) != 0) {
        fprintf(stderr, "tool_layers: cannot write %s\n", path);
        wr->failed = 1;
    }
}

static float *zeros(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "tool_layers: out of memory\n");
        exit(1);
    }
    return p;
}

static float *uniform(size_t n, rl_rng *rng, float lo, float hi) {
    float *p = zeros(n);
    rl_fill_uniform(p, n, rng, lo, hi);
    return p;
}

static void conv_case(writer *wr, const char *name, rl_conv2d_dims d, int with_bias,
                      rl_rng *rng) {
    const int ho = rl_conv2d_out_h(&d), wo = rl_conv2d_out_w(&d);
    size_t nx = (size_t)d.n * d.cin * d.h * d.w, nw = (size_t)d.cout * d.cin * d.kh * d.kw;
    size_t ny = (size_t)d.n * d.cout * ho * wo;
    float *x = uniform(nx, rng, -1, 1), *w = uniform(nw, rng, -0.5f, 0.5f);
    float *b = with_bias ? uniform((size_t)d.cout, rng, -1, 1) : NULL;
    float *dy = uniform(ny, rng, -1, 1), *y = zeros(ny);
    float *dx = zeros(nx), *dw = zeros(nw), *db = zeros((size_t)d.cout);
    float *scratch = zeros(rl_conv2d_scratch_floats(&d));
    rl_conv2d_forward(y, x, w, b, &d, scratch);
    rl_conv2d_backward(dx, dw, with_bias ? db : NULL, dy, x, w, &d, scratch);
    fprintf(wr->cases, "%s conv2d stride=%d pad=%d bias=%d\n", name, d.stride, d.pad, with_bias);
    save(wr, name, "x", x, "<f4", 4, d.n, d.cin, d.h, d.w);
    save(wr, name, "weight", w, "<f4", 4, d.cout, d.cin, d.kh, d.kw);
    if (with_bias) save(wr, name, "bias", b, "<f4", 1, d.cout);
    save(wr, name, "dy", dy, "<f4", 4, d.n, d.cout, ho, wo);
    save(wr, name, "y", y, "<f4", 4, d.n, d.cout, ho, wo);
    save(wr, name, "dx", dx, "<f4", 4, d.n, d.cin, d.h, d.w);
    save(wr, name, "dweight", dw, "<f4", 4, d.cout, d.cin, d.kh, d.kw);
    if (with_bias) save(wr, name, "dbias", db, "<f4", 1, d.cout);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db), free(scratch);
}

static void convt_case(writer *wr, const char *name, rl_convt2x2_dims d, int with_bias,
                       rl_rng *rng) {
    size_t nx = (size_t)d.n * d.cin * d.h * d.w, nw = (size_t)d.cin * d.cout * 4;
    size_t ny = (size_t)d.n * d.cout * 4 * d.h * d.w;
    float *x = uniform(nx, rng, -1, 1), *w = uniform(nw, rng, -0.5f, 0.5f);
    float *b = with_bias ? uniform((size_t)d.cout, rng, -1, 1) : NULL;
    float *dy = uniform(ny, rng, -1, 1), *y = zeros(ny);
    float *dx = zeros(nx), *dw = zeros(nw), *db = zeros((size_t)d.cout);
    float *scratch = zeros(rl_convt2x2_scratch_floats(&d));
    rl_convt2x2_forward(y, x, w, b, &d, scratch);
    rl_convt2x2_backward(dx, dw, with_bias ? db : NULL, dy, x, w, &d, scratch);
    fprintf(wr->cases, "%s convt2x2 bias=%d\n", name, with_bias);
    save(wr, name, "x", x, "<f4", 4, d.n, d.cin, d.h, d.w);
    save(wr, name, "weight", w, "<f4", 4, d.cin, d.cout, 2, 2);
    if (with_bias) save(wr, name, "bias", b, "<f4", 1, d.cout);
    save(wr, name, "dy", dy, "<f4", 4, d.n, d.cout, 2 * d.h, 2 * d.w);
    save(wr, name, "y", y, "<f4", 4, d.n, d.cout, 2 * d.h, 2 * d.w);
    save(wr, name, "dx", dx, "<f4", 4, d.n, d.cin, d.h, d.w);
    save(wr, name, "dweight", dw, "<f4", 4, d.cin, d.cout, 2, 2);
    if (with_bias) save(wr, name, "dbias", db, "<f4", 1, d.cout);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db), free(scratch);
}

/* quantise > 0 rounds inputs to multiples of it, which creates ties. */
static void maxpool_case(writer *wr, const char *name, int n, int c, int h, int w,
                         float quantise, rl_rng *rng) {
    size_t nx = (size_t)n * c * h * w, ny = nx / 4;
    float *x = uniform(nx, rng, -1, 1), *dy = uniform(ny, rng, -1, 1);
    if (quantise > 0)
        for (size_t i = 0; i < nx; i++) x[i] = quantise * (float)(int)(x[i] / quantise);
    float *y = zeros(ny), *dx = zeros(nx);
    uint8_t *argmax = calloc(ny, 1);
    rl_maxpool2x2_forward(y, argmax, x, n, c, h, w);
    rl_maxpool2x2_backward(dx, dy, argmax, n, c, h, w);
    fprintf(wr->cases, "%s maxpool\n", name);
    save(wr, name, "x", x, "<f4", 4, n, c, h, w);
    save(wr, name, "dy", dy, "<f4", 4, n, c, h / 2, w / 2);
    save(wr, name, "y", y, "<f4", 4, n, c, h / 2, w / 2);
    save(wr, name, "argmax", argmax, "|u1", 4, n, c, h / 2, w / 2);
    save(wr, name, "dx", dx, "<f4", 4, n, c, h, w);
    free(x), free(dy), free(y), free(dx), free(argmax);
}

static void groupnorm_case(writer *wr, const char *name, int n, int c, int h, int w,
                           int groups, rl_rng *rng) {
    const int hw = h * w;
    const float eps = 1e-5f;
    size_t nx = (size_t)n * c * hw;
    float *x = uniform(nx, rng, -1, 3), *gamma = uniform((size_t)c, rng, 0.5f, 1.5f);
    float *beta = uniform((size_t)c, rng, -1, 1), *dy = uniform(nx, rng, -1, 1);
    float *y = zeros(nx), *mean = zeros((size_t)n * groups), *rstd = zeros((size_t)n * groups);
    float *dx = zeros(nx), *dgamma = zeros((size_t)c), *dbeta = zeros((size_t)c);
    rl_groupnorm_forward(y, mean, rstd, x, gamma, beta, n, c, hw, groups, eps);
    rl_groupnorm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c, hw, groups);
    fprintf(wr->cases, "%s groupnorm groups=%d eps=%.9g\n", name, groups, (double)eps);
    save(wr, name, "x", x, "<f4", 4, n, c, h, w);
    save(wr, name, "gamma", gamma, "<f4", 1, c);
    save(wr, name, "beta", beta, "<f4", 1, c);
    save(wr, name, "dy", dy, "<f4", 4, n, c, h, w);
    save(wr, name, "y", y, "<f4", 4, n, c, h, w);
    save(wr, name, "mean", mean, "<f4", 2, n, groups);
    save(wr, name, "rstd", rstd, "<f4", 2, n, groups);
    save(wr, name, "dx", dx, "<f4", 4, n, c, h, w);
    save(wr, name, "dgamma", dgamma, "<f4", 1, c);
    save(wr, name, "dbeta", dbeta, "<f4", 1, c);
    free(x), free(gamma), free(beta), free(dy), free(y), free(mean), free(rstd), free(dx);
    free(dgamma), free(dbeta);
}

static void batchnorm_case(writer *wr, const char *name, int n, int c, int h, int w,
                           int train, rl_rng *rng) {
    const int hw = h * w;
    const float eps = 1e-5f, momentum = 0.1f;
    size_t nx = (size_t)n * c * hw;
    float *x = uniform(nx, rng, -2, 1), *gamma = uniform((size_t)c, rng, 0.5f, 1.5f);
    float *beta = uniform((size_t)c, rng, -1, 1), *dy = uniform(nx, rng, -1, 1);
    float *rmean0 = uniform((size_t)c, rng, -0.5f, 0.5f), *rvar0 = uniform((size_t)c, rng, 0.5f, 2);
    float *rmean = zeros((size_t)c), *rvar = zeros((size_t)c);
    memcpy(rmean, rmean0, (size_t)c * sizeof *rmean);
    memcpy(rvar, rvar0, (size_t)c * sizeof *rvar);
    float *y = zeros(nx), *mean = zeros((size_t)c), *rstd = zeros((size_t)c);
    float *dx = zeros(nx), *dgamma = zeros((size_t)c), *dbeta = zeros((size_t)c);
    if (train) {
        rl_batchnorm_forward_train(y, mean, rstd, rmean, rvar, x, gamma, beta, n, c, hw,
                                   momentum, eps);
        rl_batchnorm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, n, c, hw);
    } else {
        rl_batchnorm_forward_eval(y, x, gamma, beta, rmean, rvar, n, c, hw, eps);
        rl_batchnorm_backward_eval(dx, dgamma, dbeta, dy, x, gamma, rmean, rvar, n, c, hw, eps);
    }
    fprintf(wr->cases, "%s batchnorm training=%d momentum=%.9g eps=%.9g\n", name, train,
            (double)momentum, (double)eps);
    save(wr, name, "x", x, "<f4", 4, n, c, h, w);
    save(wr, name, "gamma", gamma, "<f4", 1, c);
    save(wr, name, "beta", beta, "<f4", 1, c);
    save(wr, name, "running_mean_before", rmean0, "<f4", 1, c);
    save(wr, name, "running_var_before", rvar0, "<f4", 1, c);
    save(wr, name, "running_mean", rmean, "<f4", 1, c);
    save(wr, name, "running_var", rvar, "<f4", 1, c);
    save(wr, name, "dy", dy, "<f4", 4, n, c, h, w);
    save(wr, name, "y", y, "<f4", 4, n, c, h, w);
    save(wr, name, "dx", dx, "<f4", 4, n, c, h, w);
    save(wr, name, "dgamma", dgamma, "<f4", 1, c);
    save(wr, name, "dbeta", dbeta, "<f4", 1, c);
    free(x), free(gamma), free(beta), free(dy), free(rmean0), free(rvar0), free(rmean);
    free(rvar), free(y), free(mean), free(rstd), free(dx), free(dgamma), free(dbeta);
}

static void leaky_relu_case(writer *wr, const char *name, float slope, rl_rng *rng) {
    const int n = 2, c = 3, h = 5, w = 7;
    size_t nx = (size_t)n * c * h * w;
    float *x = uniform(nx, rng, -1, 1), *dy = uniform(nx, rng, -1, 1);
    float *y = zeros(nx), *dx = zeros(nx);
    rl_leaky_relu_forward(y, x, nx, slope);
    rl_leaky_relu_backward(dx, dy, y, nx, slope);
    fprintf(wr->cases, "%s leaky_relu slope=%.9g\n", name, (double)slope);
    save(wr, name, "x", x, "<f4", 4, n, c, h, w);
    save(wr, name, "dy", dy, "<f4", 4, n, c, h, w);
    save(wr, name, "y", y, "<f4", 4, n, c, h, w);
    save(wr, name, "dx", dx, "<f4", 4, n, c, h, w);
    free(x), free(dy), free(y), free(dx);
}

static void concat_case(writer *wr, const char *name, rl_rng *rng) {
    const int n = 2, ca = 3, cb = 5, h = 4, w = 6, hw = h * w;
    size_t na = (size_t)n * ca * hw, nb = (size_t)n * cb * hw, ny = na + nb;
    float *a = uniform(na, rng, -1, 1), *b = uniform(nb, rng, -1, 1);
    float *dy = uniform(ny, rng, -1, 1), *y = zeros(ny), *da = zeros(na), *db = zeros(nb);
    rl_concat_forward(y, a, ca, b, cb, n, hw);
    rl_concat_backward(da, db, dy, ca, cb, n, hw);
    fprintf(wr->cases, "%s concat\n", name);
    save(wr, name, "a", a, "<f4", 4, n, ca, h, w);
    save(wr, name, "b", b, "<f4", 4, n, cb, h, w);
    save(wr, name, "dy", dy, "<f4", 4, n, ca + cb, h, w);
    save(wr, name, "y", y, "<f4", 4, n, ca + cb, h, w);
    save(wr, name, "da", da, "<f4", 4, n, ca, h, w);
    save(wr, name, "db", db, "<f4", 4, n, cb, h, w);
    free(a), free(b), free(dy), free(y), free(da), free(db);
}

/* Labels uniform in [0, k), every ignore_every-th pixel ignored (0: none). */
static int32_t *random_labels(size_t count, int k, int ignore_every, rl_rng *rng) {
    int32_t *labels = malloc(count * sizeof *labels);
    for (size_t i = 0; i < count; i++) {
        labels[i] = (int32_t)rl_rng_below(rng, (uint32_t)k);
        if (ignore_every > 0 && i % (size_t)ignore_every == 1) labels[i] = IGNORE_INDEX;
    }
    return labels;
}

static void softmax_loss_case(writer *wr, const char *name, int dice, int first_class,
                              float smooth, int with_weights, rl_rng *rng) {
    const int n = 2, k = 4, h = 6, w = 5, hw = h * w;
    size_t nl = (size_t)n * k * hw, np = (size_t)n * hw;
    float *logits = uniform(nl, rng, -4, 4), *grad = zeros(nl);
    int32_t *labels = random_labels(np, k, 5, rng);
    float *weights = with_weights ? uniform(np, rng, 0, 2) : NULL;
    float loss;
    if (dice) {
        loss = rl_soft_dice_loss(grad, logits, labels, n, k, hw, IGNORE_INDEX, first_class,
                                 smooth, LOSS_SCALE);
        fprintf(wr->cases, "%s soft_dice ignore_index=%d first_class=%d smooth=%.9g scale=%.9g\n",
                name, IGNORE_INDEX, first_class, (double)smooth, (double)LOSS_SCALE);
    } else {
        loss = rl_softmax_ce_loss(grad, logits, labels, weights, n, k, hw, IGNORE_INDEX,
                                  LOSS_SCALE);
        fprintf(wr->cases, "%s softmax_ce ignore_index=%d weights=%d scale=%.9g\n", name,
                IGNORE_INDEX, with_weights, (double)LOSS_SCALE);
    }
    save(wr, name, "logits", logits, "<f4", 4, n, k, h, w);
    save(wr, name, "labels", labels, "<i4", 3, n, h, w);
    if (weights) save(wr, name, "weights", weights, "<f4", 3, n, h, w);
    save(wr, name, "loss", &loss, "<f4", 1, 1);
    save(wr, name, "dlogits", grad, "<f4", 4, n, k, h, w);
    free(logits), free(grad), free(labels), free(weights);
}

static void sigmoid_loss_case(writer *wr, const char *name, int dice, int with_valid,
                              rl_rng *rng) {
    const int n = 2, k = 3, h = 5, w = 6, hw = h * w;
    const float smooth = 1.0f;
    size_t nl = (size_t)n * k * hw, np = (size_t)n * hw;
    float *logits = uniform(nl, rng, -4, 4), *grad = zeros(nl), *targets = zeros(nl);
    for (size_t i = 0; i < nl; i++) targets[i] = (float)rl_rng_below(rng, 2);
    uint8_t *valid = NULL;
    if (with_valid) {
        valid = malloc(np);
        for (size_t i = 0; i < np; i++) valid[i] = (uint8_t)(rl_rng_below(rng, 4) != 0);
    }
    float loss;
    if (dice) {
        loss = rl_sigmoid_dice_loss(grad, logits, targets, valid, n, k, hw, smooth, LOSS_SCALE);
        fprintf(wr->cases, "%s sigmoid_dice valid=%d smooth=%.9g scale=%.9g\n", name,
                with_valid, (double)smooth, (double)LOSS_SCALE);
    } else {
        loss = rl_sigmoid_bce_loss(grad, logits, targets, valid, n, k, hw, LOSS_SCALE);
        fprintf(wr->cases, "%s sigmoid_bce valid=%d scale=%.9g\n", name, with_valid,
                (double)LOSS_SCALE);
    }
    save(wr, name, "logits", logits, "<f4", 4, n, k, h, w);
    save(wr, name, "targets", targets, "<f4", 4, n, k, h, w);
    if (valid) save(wr, name, "valid", valid, "|u1", 3, n, h, w);
    save(wr, name, "loss", &loss, "<f4", 1, 1);
    save(wr, name, "dlogits", grad, "<f4", 4, n, k, h, w);
    free(logits), free(grad), free(targets), free(valid);
}

/* Mean-teacher consistency: the student's softmax against fixed target
 * probabilities (another softmax), with a valid mask. */
static void softmax_mse_case(writer *wr, const char *name, rl_rng *rng) {
    const int n = 2, k = 4, h = 5, w = 6, hw = h * w;
    size_t nl = (size_t)n * k * hw, np = (size_t)n * hw;
    float *logits = uniform(nl, rng, -4, 4), *grad = zeros(nl);
    float *teacher = uniform(nl, rng, -4, 4), *targets = zeros(nl);
    rl_softmax(targets, teacher, n, k, hw);
    uint8_t *valid = malloc(np);
    for (size_t i = 0; i < np; i++) valid[i] = (uint8_t)(rl_rng_below(rng, 4) != 0);
    float loss = rl_softmax_mse_loss(grad, logits, targets, valid, n, k, hw, LOSS_SCALE);
    fprintf(wr->cases, "%s softmax_mse valid=1 scale=%.9g\n", name, (double)LOSS_SCALE);
    save(wr, name, "logits", logits, "<f4", 4, n, k, h, w);
    save(wr, name, "teacher", teacher, "<f4", 4, n, k, h, w);
    save(wr, name, "targets", targets, "<f4", 4, n, k, h, w);
    save(wr, name, "valid", valid, "|u1", 3, n, h, w);
    save(wr, name, "loss", &loss, "<f4", 1, 1);
    save(wr, name, "dlogits", grad, "<f4", 4, n, k, h, w);
    free(logits), free(grad), free(teacher), free(targets), free(valid);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: tool_layers OUTPUT_FOLDER\n");
        return 2;
    }
    int conv_rc = rl_test_conv_backend_from_env("tool_layers");
    if (conv_rc) return conv_rc;
    writer wr = {argv[1], NULL, 0};
    char path[4096];
    snprintf(path, sizeof path, "%s/cases.txt", argv[1]);
    wr.cases = fopen(path, "w");
    if (!wr.cases) {
        fprintf(stderr, "tool_layers: cannot write %s\n", path);
        return 1;
    }
    rl_rng rng;
    rl_rng_seed(&rng, 1234, 99);
    /* n, cin, h, w, cout, kh, kw, stride, pad */
    conv_case(&wr, "conv3x3_s1_p1", (rl_conv2d_dims){2, 3, 9, 8, 5, 3, 3, 1, 1}, 1, &rng);
    conv_case(&wr, "conv3x3_s2_p1", (rl_conv2d_dims){2, 4, 9, 10, 3, 3, 3, 2, 1}, 1, &rng);
    conv_case(&wr, "conv1x1", (rl_conv2d_dims){2, 5, 6, 7, 3, 1, 1, 1, 0}, 1, &rng);
    conv_case(&wr, "conv1x1_nobias", (rl_conv2d_dims){3, 4, 5, 5, 7, 1, 1, 1, 0}, 0, &rng);
    conv_case(&wr, "conv5x3_p2", (rl_conv2d_dims){2, 3, 10, 7, 4, 5, 3, 1, 2}, 1, &rng);
    conv_case(&wr, "conv3x5_s2_p0", (rl_conv2d_dims){1, 2, 11, 12, 3, 3, 5, 2, 0}, 0, &rng);
    conv_case(&wr, "conv3x3_p0", (rl_conv2d_dims){2, 3, 8, 7, 4, 3, 3, 1, 0}, 1, &rng);
    conv_case(&wr, "conv3x3_p3", (rl_conv2d_dims){1, 2, 5, 6, 3, 3, 3, 1, 3}, 1, &rng);
    convt_case(&wr, "convt_bias", (rl_convt2x2_dims){2, 4, 5, 6, 3}, 1, &rng);
    convt_case(&wr, "convt_nobias", (rl_convt2x2_dims){1, 3, 4, 4, 5}, 0, &rng);
    maxpool_case(&wr, "maxpool", 2, 3, 8, 6, 0.0f, &rng);
    maxpool_case(&wr, "maxpool_ties", 2, 3, 8, 10, 0.5f, &rng);
    groupnorm_case(&wr, "groupnorm_g1", 2, 6, 5, 4, 1, &rng);
    groupnorm_case(&wr, "groupnorm_g2", 2, 6, 5, 4, 2, &rng);
    groupnorm_case(&wr, "groupnorm_g3", 2, 6, 5, 4, 3, &rng);
    groupnorm_case(&wr, "groupnorm_g5_c5", 3, 5, 3, 4, 5, &rng);
    batchnorm_case(&wr, "batchnorm_train", 3, 5, 4, 3, 1, &rng);
    batchnorm_case(&wr, "batchnorm_eval", 3, 5, 4, 3, 0, &rng);
    leaky_relu_case(&wr, "relu", 0.0f, &rng);
    leaky_relu_case(&wr, "leaky_relu", 0.01f, &rng);
    concat_case(&wr, "concat", &rng);
    softmax_loss_case(&wr, "ce", 0, 0, 0.0f, 0, &rng);
    softmax_loss_case(&wr, "ce_weights", 0, 0, 0.0f, 1, &rng);
    softmax_loss_case(&wr, "dice_all", 1, 0, 1.0f, 0, &rng);
    softmax_loss_case(&wr, "dice_fg", 1, 1, 1e-5f, 0, &rng);
    sigmoid_loss_case(&wr, "bce", 0, 0, &rng);
    sigmoid_loss_case(&wr, "bce_valid", 0, 1, &rng);
    sigmoid_loss_case(&wr, "sigmoid_dice_valid", 1, 1, &rng);
    softmax_mse_case(&wr, "softmax_mse_valid", &rng);
    if (fclose(wr.cases) != 0) wr.failed = 1;
    return wr.failed;
}
