/* U-Net: tensor table and shapes, plan errors, seeded determinism, a stable
 * arena across training steps, finite-difference gradients, and a small
 * overfit (the loss on one batch falls) with AdamW. The exact match with
 * PyTorch is tests/oracle/test_torch_unet.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/loss.h"
#include "reflabel/optim.h"
#include "reflabel/unet.h"
#include "testutil.h"

static rl_unet_config small_config(rl_norm_kind norm) {
    rl_unet_config c = rl_unet_default_config();
    c.in_channels = 2;
    c.num_classes = 3;
    c.depth = 2;
    c.base_width = 4;
    c.max_width = 6;
    c.norm = norm;
    c.groups = 2;
    return c;
}

static int has_shape(const rl_unet *net, const char *name, int d0, int d1, int d2, int d3) {
    const rl_unet_tensor *t = rl_unet_find_tensor(net, name);
    if (!t) return 0;
    int want[4] = {d0, d1, d2, d3};
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != want[i]) return 0;
    return 1;
}

static void test_table(void) {
    rl_unet_config c = small_config(RL_NORM_BATCH);
    rl_unet *net = NULL;
    CHECK_OK(rl_unet_create(&net, &c, 1, NULL));
    if (!net) return;
    CHECK(rl_unet_width(&c, 0) == 4 && rl_unet_width(&c, 1) == 6 && rl_unet_width(&c, 2) == 6);
    CHECK(has_shape(net, "enc.0.conv1.weight", 4, 2, 3, 3));
    CHECK(has_shape(net, "enc.2.conv2.weight", 6, 6, 3, 3));
    CHECK(has_shape(net, "up.0.weight", 6, 4, 2, 2));
    CHECK(has_shape(net, "up.1.bias", 6, 0, 0, 0));
    CHECK(has_shape(net, "dec.0.conv1.weight", 4, 8, 3, 3));
    CHECK(has_shape(net, "dec.1.norm2.bias", 6, 0, 0, 0));
    CHECK(has_shape(net, "head.weight", 3, 4, 1, 1));
    CHECK(rl_unet_find_tensor(net, "enc.0.conv1.bias") == NULL); /* a norm follows */
    const rl_unet_tensor *rv = rl_unet_find_tensor(net, "dec.0.norm1.running_var");
    CHECK(rv && rv->kind == RL_UNET_BUFFER && ((float *)rl_unet_tensor_data(net, rv))[0] == 1);
    const rl_unet_tensor *nb = rl_unet_find_tensor(net, "enc.1.norm2.num_batches_tracked");
    CHECK(nb && nb->kind == RL_UNET_COUNTER && nb->ndim == 0);
    /* Parameters tile the flat array; decay only on conv weights. */
    int count = 0;
    const rl_unet_tensor *table = rl_unet_tensors(net, &count);
    size_t next = 0;
    for (int i = 0; i < count; i++) {
        if (table[i].kind != RL_UNET_PARAM) continue;
        CHECK_MSG(table[i].offset == next, "%s", table[i].name);
        CHECK_MSG(table[i].weight_decay == (table[i].ndim == 4), "%s", table[i].name);
        next += table[i].numel;
    }
    CHECK(next == rl_unet_param_count(net));
    /* Norm weights start at 1, Kaiming weights have the right spread. */
    const rl_unet_tensor *gw = rl_unet_find_tensor(net, "enc.0.norm1.weight");
    CHECK(gw && ((float *)rl_unet_tensor_data(net, gw))[3] == 1.0f);
    rl_unet_free(net);

    c.norm = RL_NORM_NONE;
    CHECK_OK(rl_unet_create(&net, &c, 1, NULL));
    if (!net) return;
    CHECK(has_shape(net, "enc.0.conv1.bias", 4, 0, 0, 0));
    CHECK(rl_unet_find_tensor(net, "enc.0.norm1.weight") == NULL);
    rl_unet_free(net);

    /* A large conv weight's standard deviation follows gain / sqrt(fan_in). */
    c = rl_unet_default_config();
    c.depth = 1;
    c.base_width = 64;
    CHECK_OK(rl_unet_create(&net, &c, 3, NULL));
    if (!net) return;
    const rl_unet_tensor *w = rl_unet_find_tensor(net, "dec.0.conv1.weight");
    const float *v = rl_unet_tensor_data(net, w);
    double sq = 0;
    for (size_t i = 0; i < w->numel; i++) sq += (double)v[i] * v[i];
    double want = sqrt(2.0 / (1 + 0.01 * 0.01)) / sqrt(128.0 * 9);
    CHECK_MSG(fabs(sqrt(sq / (double)w->numel) / want - 1) < 0.02, "std %g want %g",
              sqrt(sq / (double)w->numel), want);
    rl_unet_free(net);
}

static void test_config_errors(void) {
    rl_unet *net = NULL;
    rl_error err = {0, ""};
    rl_unet_config c = small_config(RL_NORM_GROUP);
    c.depth = 7;
    CHECK(rl_unet_create(&net, &c, 1, &err) == RL_EINVAL && net == NULL);
    CHECK(strstr(err.msg, "depth") != NULL);
    c = small_config(RL_NORM_GROUP);
    c.max_width = 2;
    CHECK(rl_unet_create(&net, &c, 1, &err) == RL_EINVAL);
    CHECK(strstr(err.msg, "max_width") != NULL);
    CHECK(rl_norm_from_name("group") == RL_NORM_GROUP && rl_norm_from_name("layer") == -1);
}

static void test_plan_and_shapes(void) {
    rl_unet_config c = small_config(RL_NORM_GROUP);
    rl_unet *net = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_unet_create(&net, &c, 1, NULL));
    if (!net) return;
    CHECK(rl_unet_plan(net, 2, 18, 16, 1, &err) == RL_EINVAL);
    CHECK_MSG(strstr(err.msg, "multiple of 4") != NULL, "%s", err.msg);
    CHECK(rl_unet_plan(net, 0, 16, 16, 1, &err) == RL_EINVAL);
    CHECK(rl_unet_arena_bytes(net) == 0);
    float x[2 * 2 * 8 * 12] = {0};
    CHECK(rl_unet_forward(net, x, 1, &err) == RL_EINVAL); /* no plan yet */

    CHECK_OK(rl_unet_plan(net, 2, 8, 12, 0, &err));
    size_t inference_bytes = rl_unet_arena_bytes(net);
    CHECK_OK(rl_unet_forward(net, x, 0, &err));
    float dlogits[2 * 3 * 8 * 12] = {0};
    CHECK(rl_unet_backward(net, dlogits, &err) == RL_EINVAL); /* inference plan */
    CHECK_OK(rl_unet_plan(net, 2, 8, 12, 1, &err));
    size_t training_bytes = rl_unet_arena_bytes(net);
    CHECK(training_bytes > inference_bytes);
    CHECK(rl_unet_backward(net, dlogits, &err) == RL_EINVAL); /* no forward since the plan */
    CHECK_OK(rl_unet_forward(net, x, 1, &err));
    CHECK_OK(rl_unet_backward(net, dlogits, &err));
    rl_tensor lg = rl_unet_logits(net);
    CHECK(lg.n == 2 && lg.c == 3 && lg.h == 8 && lg.w == 12 && lg.data);
    rl_tensor f = rl_unet_features(net);
    CHECK(f.n == 2 && f.c == 4 && f.h == 8 && f.w == 12);
    rl_tensor d1 = rl_unet_decoder_output(net, 1);
    CHECK(d1.c == 6 && d1.h == 4 && d1.w == 6 && d1.data);
    rl_tensor b = rl_unet_decoder_output(net, 2);
    CHECK(b.c == 6 && b.h == 2 && b.w == 3 && b.data);
    CHECK(rl_unet_decoder_output(net, 3).data == NULL);
    /* Same shape again: the arena is kept (no allocation); a new shape re-plans. */
    float *before = lg.data;
    CHECK_OK(rl_unet_plan(net, 2, 8, 12, 1, &err));
    CHECK(rl_unet_logits(net).data == before && rl_unet_arena_bytes(net) == training_bytes);
    CHECK_OK(rl_unet_plan(net, 1, 16, 16, 1, &err));
    CHECK(rl_unet_logits(net).h == 16 && rl_unet_logits(net).n == 1);
    rl_unet_free(net);

    /* Batch norm cannot train on one value per channel at the bottleneck. */
    c = small_config(RL_NORM_BATCH);
    CHECK_OK(rl_unet_create(&net, &c, 1, NULL));
    if (!net) return;
    CHECK_OK(rl_unet_plan(net, 1, 4, 4, 1, &err));
    float one[2 * 4 * 4] = {0};
    CHECK(rl_unet_forward(net, one, 1, &err) == RL_EINVAL);
    CHECK_MSG(strstr(err.msg, "bottleneck") != NULL, "%s", err.msg);
    CHECK_OK(rl_unet_forward(net, one, 0, &err)); /* eval mode uses running statistics */
    rl_unet_free(net);
}

typedef struct loss_ctx {
    rl_unet *net;
    const float *x;
    const int32_t *labels;
    int n, k, hw;
} loss_ctx;

static double forward_loss(void *p) {
    loss_ctx *c = p;
    rl_unet_forward(c->net, c->x, 1, NULL);
    return rl_softmax_ce_loss(NULL, rl_unet_logits(c->net).data, c->labels, NULL, c->n, c->k,
                              c->hw, -1, 1.0f);
}

/* One training step; returns the loss. */
static float train_step(rl_unet *net, rl_optimizer *opt, const float *x, const int32_t *labels,
                        float *dlogits, int n, int k, int hw, float lr) {
    rl_unet_forward(net, x, 1, NULL);
    memset(dlogits, 0, sizeof(float) * (size_t)n * k * hw);
    float loss = rl_softmax_ce_loss(dlogits, rl_unet_logits(net).data, labels, NULL, n, k, hw,
                                    -1, 1.0f);
    rl_unet_zero_grad(net);
    rl_unet_backward(net, dlogits, NULL);
    rl_optim_step(opt, rl_unet_params(net), rl_unet_grads(net), lr);
    return loss;
}

static void test_determinism_gradients_overfit(rl_norm_kind norm) {
    enum { N = 2, H = 8, W = 8 };
    rl_unet_config c = small_config(norm);
    const int K = c.num_classes, HW = H * W;
    rl_unet *a = NULL, *b = NULL;
    CHECK_OK(rl_unet_create(&a, &c, 11, NULL));
    CHECK_OK(rl_unet_create(&b, &c, 11, NULL));
    if (!a || !b) return;
    CHECK(!memcmp(rl_unet_params(a), rl_unet_params(b), rl_unet_param_count(a) * sizeof(float)));
    rl_rng rng;
    rl_rng_seed(&rng, 4, 0);
    float x[N * 2 * HW], dlogits[N * 3 * HW];
    int32_t labels[N * HW];
    rl_fill_uniform(x, sizeof x / sizeof *x, &rng, -1, 1);
    /* Labels that depend on the input, so that there is something to learn. */
    for (int i = 0; i < N * HW; i++) {
        int s = i / HW, p = i % HW;
        float v = x[(s * 2) * HW + p] + x[(s * 2 + 1) * HW + p];
        labels[i] = v < -0.3f ? 0 : v < 0.3f ? 1 : 2;
    }
    CHECK_OK(rl_unet_plan(a, N, H, W, 1, NULL));
    CHECK_OK(rl_unet_plan(b, N, H, W, 1, NULL));
    CHECK_OK(rl_unet_forward(a, x, 1, NULL));
    CHECK_OK(rl_unet_forward(b, x, 1, NULL));
    CHECK(!memcmp(rl_unet_logits(a).data, rl_unet_logits(b).data, sizeof dlogits));

    /* Analytic gradients against central differences on a few coordinates. */
    memset(dlogits, 0, sizeof dlogits);
    rl_softmax_ce_loss(dlogits, rl_unet_logits(a).data, labels, NULL, N, K, HW, -1, 1.0f);
    rl_unet_zero_grad(a);
    CHECK_OK(rl_unet_backward(a, dlogits, NULL));
    size_t np = rl_unet_param_count(a);
    float *analytic = malloc(np * sizeof(float));
    memcpy(analytic, rl_unet_grads(a), np * sizeof(float));
    loss_ctx ctx = {a, x, labels, N, K, HW};
    double worst = rl_gradcheck(forward_loss, &ctx, rl_unet_params(a), analytic, np, 24, 1e-2,
                                &rng);
    CHECK_MSG(worst < 2e-2, "%s: gradcheck worst %g", rl_norm_name(norm), worst);
    free(analytic);

    /* Overfit one batch: the loss must fall clearly, with no re-allocation. */
    rl_optim_config oc = rl_optim_default_config(RL_OPTIM_ADAMW);
    rl_optim_span *spans = NULL;
    int span_count = 0;
    rl_optimizer *opt = NULL;
    CHECK_OK(rl_optim_spans_from_unet(b, &spans, &span_count, NULL));
    CHECK_OK(rl_optim_create(&opt, &oc, rl_unet_param_count(b), spans, span_count, NULL));
    size_t arena = rl_unet_arena_bytes(b);
    float *logits_before = rl_unet_logits(b).data;
    float first = 0, last = 0;
    for (int step = 0; step < 40; step++) {
        last = train_step(b, opt, x, labels, dlogits, N, K, HW, 1e-2f);
        if (step == 0) first = last;
    }
    CHECK_MSG(last < 0.5f * first, "%s: loss %g -> %g", rl_norm_name(norm), first, last);
    CHECK(rl_unet_arena_bytes(b) == arena && rl_unet_logits(b).data == logits_before);
    free(spans);
    rl_optim_free(opt);
    rl_unet_free(a);
    rl_unet_free(b);
}

/* UniMatch's feature perturbation: a scale of ones changes nothing, a
 * dropout on one image's encoder features leaves the other image (group
 * norm: no statistics across the batch) as it was, and the gradient with
 * the scale in place matches central differences. */
static void test_feature_scale(void) {
    enum { N = 2, H = 8, W = 8 };
    rl_unet_config c = small_config(RL_NORM_GROUP);
    const int K = c.num_classes, HW = H * W;
    rl_unet *net = NULL;
    CHECK_OK(rl_unet_create(&net, &c, 5, NULL));
    if (!net) return;
    CHECK_OK(rl_unet_plan(net, N, H, W, 1, NULL));
    int count = rl_unet_feature_scale_count(net);
    CHECK(count == rl_unet_width(&c, 0) + rl_unet_width(&c, 1) + rl_unet_width(&c, 2));
    rl_rng rng;
    rl_rng_seed(&rng, 9, 0);
    float x[N * 2 * HW], plain[N * 3 * HW], dlogits[N * 3 * HW];
    int32_t labels[N * HW];
    rl_fill_uniform(x, sizeof x / sizeof *x, &rng, -1, 1);
    for (int i = 0; i < N * HW; i++) labels[i] = (int32_t)rl_rng_below(&rng, 3);
    float *scale = malloc((size_t)N * count * sizeof *scale);
    for (int i = 0; i < N * count; i++) scale[i] = 1.0f;
    CHECK_OK(rl_unet_forward(net, x, 1, NULL));
    memcpy(plain, rl_unet_logits(net).data, sizeof plain);
    rl_unet_set_feature_scale(net, scale);
    CHECK_OK(rl_unet_forward(net, x, 1, NULL));
    CHECK(!memcmp(plain, rl_unet_logits(net).data, sizeof plain));
    for (int i = count; i < N * count; i++) scale[i] = rl_rng_below(&rng, 2) ? 2.0f : 0.0f;
    CHECK_OK(rl_unet_forward(net, x, 1, NULL));
    const float *logits = rl_unet_logits(net).data;
    CHECK(!memcmp(plain, logits, sizeof(float) * K * HW));
    CHECK(memcmp(plain + K * HW, logits + K * HW, sizeof(float) * K * HW) != 0);

    memset(dlogits, 0, sizeof dlogits);
    rl_softmax_ce_loss(dlogits, logits, labels, NULL, N, K, HW, -1, 1.0f);
    rl_unet_zero_grad(net);
    CHECK_OK(rl_unet_backward(net, dlogits, NULL));
    size_t np = rl_unet_param_count(net);
    float *analytic = malloc(np * sizeof(float));
    memcpy(analytic, rl_unet_grads(net), np * sizeof(float));
    loss_ctx ctx = {net, x, labels, N, K, HW};
    double worst = rl_gradcheck(forward_loss, &ctx, rl_unet_params(net), analytic, np, 32, 1e-2,
                                &rng);
    CHECK_MSG(worst < 2e-2, "feature scale: gradcheck worst %g", worst);
    free(analytic);
    free(scale);
    rl_unet_free(net);
}

int main(void) {
    /* Tiny tensors: thread start-up would dominate, and on a shared machine
     * spinning workers make it slower still. The multi-threaded layers are
     * exercised by tests/oracle/test_torch_unet.py. */
    rl_set_threads(1);
    test_table();
    test_config_errors();
    test_plan_and_shapes();
    test_determinism_gradients_overfit(RL_NORM_GROUP);
    test_determinism_gradients_overfit(RL_NORM_NONE);
    test_determinism_gradients_overfit(RL_NORM_BATCH);
    test_feature_scale();
    return rl_test_report("test_unet");
}
