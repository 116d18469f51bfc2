/* U-Net: tensor table and shapes, plan errors, seeded determinism, a stable
 * arena across training steps, finite-difference gradients, and a small
 * overfit (the loss on one batch falls) with AdamW. The exact match with
 * PyTorch is tests/oracle/test_torch_unet.py. */
#include <math.h>
#include <pthread.h>
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

/* rl_unet_conv_flops against a count by hand: depth 1, widths 2 and 4, one
 * input channel, 3 classes, one 4x4 image. 2 flops per multiply-add:
 * enc 1->2 and 2->2 at 4x4 (576 + 1152), bottom 2->4 and 4->4 at 2x2
 * (576 + 1152), up 4->2 (each of 4 input pixels to 2x2 outputs: 256),
 * dec 4->2 and 2->2 at 4x4 (2304 + 1152), head 1x1 2->3 (192). */
static void test_conv_flops(void) {
    rl_unet_config c = rl_unet_default_config();
    c.in_channels = 1;
    c.num_classes = 3;
    c.depth = 1;
    c.base_width = 2;
    c.groups = 1;
    rl_unet *net = NULL;
    CHECK_OK(rl_unet_create(&net, &c, 1, NULL));
    if (!net) return;
    CHECK(rl_unet_conv_flops(net) == 0.0); /* not planned */
    CHECK_OK(rl_unet_plan(net, 1, 4, 4, 0, NULL));
    CHECK_MSG(rl_unet_conv_flops(net) == 7360.0, "%.0f flops, want 7360",
              rl_unet_conv_flops(net));
    CHECK_OK(rl_unet_plan(net, 3, 4, 4, 0, NULL));
    CHECK(rl_unet_conv_flops(net) == 3 * 7360.0);
    rl_unet_free(net);
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

/* ---- synchronised batch norm ----------------------------------------------- */

/* Two processes of a data-parallel job, simulated by two threads with a
 * network each. In the reducer each peer publishes its buffer, waits for the
 * other, sums both in a fixed order (so that both get the same sums, bit for
 * bit, as every rank does from MPI's allreduce) and waits again before
 * writing its own buffer, which the other has read by then. */
typedef struct peer_group {
    pthread_barrier_t barrier;
    double *slot[2];
    size_t n[2];
} peer_group;

typedef struct peer {
    peer_group *group;
    int rank, calls, rc;
    int mismatch; /* the peers reduced different lengths: their passes differ */
    rl_unet *net;
    const float *x, *dlogits;
} peer;

static int peer_reduce(double *buf, size_t n, void *ctx, rl_error *err) {
    peer *p = ctx;
    peer_group *g = p->group;
    (void)err;
    p->calls++;
    g->slot[p->rank] = buf;
    g->n[p->rank] = n;
    pthread_barrier_wait(&g->barrier);
    double *sum = malloc(n * sizeof *sum);
    if (g->n[0] != g->n[1]) p->mismatch = 1;
    for (size_t i = 0; i < n && !p->mismatch; i++) sum[i] = g->slot[0][i] + g->slot[1][i];
    pthread_barrier_wait(&g->barrier);
    if (!p->mismatch) memcpy(buf, sum, n * sizeof *sum);
    free(sum);
    return RL_OK;
}

static void *peer_step(void *arg) {
    peer *p = arg;
    rl_error err = {0, ""};
    rl_set_threads(1); /* OpenMP's thread count is per thread */
    p->rc = rl_unet_forward(p->net, p->x, 1, &err);
    if (!p->rc) p->rc = rl_unet_backward(p->net, p->dlogits, &err);
    if (p->rc) fprintf(stderr, "peer %d: %s\n", p->rank, err.msg);
    return NULL;
}

/* Worst over the tensors of one kind of max |a - b| / max |b|, each tensor
 * on its own scale; a and b are that kind's flat arrays. */
static double worst_tensor_diff(const rl_unet *net, rl_unet_tensor_kind kind, const float *a,
                                const float *b) {
    int count = 0;
    const rl_unet_tensor *table = rl_unet_tensors(net, &count);
    double worst = 0.0;
    for (int t = 0; t < count; t++) {
        if (table[t].kind != kind) continue;
        double diff = 0.0, scale = 0.0;
        for (size_t i = table[t].offset; i < table[t].offset + table[t].numel; i++) {
            diff = fmax(diff, fabs((double)a[i] - b[i]));
            scale = fmax(scale, fabs((double)b[i]));
        }
        worst = fmax(worst, diff / (scale > 0 ? scale : 1.0));
    }
    return worst;
}

/* The running statistics (RL_UNET_BUFFER) as one flat array. */
static const float *unet_buffers(rl_unet *net) {
    const rl_unet_tensor *t = rl_unet_find_tensor(net, "enc.0.norm1.running_mean");
    return (const float *)rl_unet_tensor_data(net, t) - t->offset;
}

/* A batch of 4 split between two "processes" of 2 images each, with batch
 * norm reduced between them, against one network on the whole batch: the
 * logits, the running statistics and the parameter gradients (the two
 * shares summed, as the trainer sums them over the ranks) agree. Measured
 * (small_config, 8x8, one thread): logits and running statistics equal bit
 * for bit, gradients within 1.4e-7 of each tensor's largest; the float
 * rounding of the same sums taken in another order. */
static void test_batch_reducer_two_processes(void) {
    enum { N = 4, H = 8, W = 8, HALF = N / 2 };
    rl_unet_config c = small_config(RL_NORM_BATCH);
    const int K = c.num_classes, HW = H * W, CIN = c.in_channels;
    rl_unet *whole = NULL, *plain = NULL, *share[2] = {NULL, NULL};
    CHECK_OK(rl_unet_create(&whole, &c, 21, NULL));
    CHECK_OK(rl_unet_create(&plain, &c, 21, NULL));
    for (int r = 0; r < 2; r++) CHECK_OK(rl_unet_create(&share[r], &c, 21, NULL));
    if (!whole || !plain || !share[0] || !share[1]) return;
    rl_rng rng;
    rl_rng_seed(&rng, 33, 0);
    float x[N * 2 * HW], dlogits[N * 3 * HW];
    int32_t labels[N * HW];
    rl_fill_uniform(x, sizeof x / sizeof *x, &rng, -1, 2);
    for (int i = 0; i < N * HW; i++) labels[i] = (int32_t)rl_rng_below(&rng, 3);

    /* One process, the whole batch; the loss is a mean over it, and its
     * dlogits, cut in two, are each share's. */
    CHECK_OK(rl_unet_plan(whole, N, H, W, 1, NULL));
    CHECK_OK(rl_unet_forward(whole, x, 1, NULL));
    memset(dlogits, 0, sizeof dlogits);
    rl_softmax_ce_loss(dlogits, rl_unet_logits(whole).data, labels, NULL, N, K, HW, -1, 1.0f);
    rl_unet_zero_grad(whole);
    CHECK_OK(rl_unet_backward(whole, dlogits, NULL));

    /* A reducer set and then removed changes nothing, bit for bit. */
    peer_group group;
    peer peers[2];
    rl_unet_set_batch_reducer(plain, peer_reduce, &peers[0]);
    rl_unet_set_batch_reducer(plain, NULL, NULL);
    CHECK_OK(rl_unet_plan(plain, N, H, W, 1, NULL));
    CHECK_OK(rl_unet_forward(plain, x, 1, NULL));
    rl_unet_zero_grad(plain);
    CHECK_OK(rl_unet_backward(plain, dlogits, NULL));
    size_t np = rl_unet_param_count(whole);
    CHECK(!memcmp(rl_unet_logits(plain).data, rl_unet_logits(whole).data, sizeof dlogits));
    CHECK(!memcmp(rl_unet_grads(plain), rl_unet_grads(whole), np * sizeof(float)));

    /* Two processes, two images each. */
    pthread_barrier_init(&group.barrier, NULL, 2);
    pthread_t threads[2];
    for (int r = 0; r < 2; r++) {
        peers[r] = (peer){.group = &group, .rank = r, .net = share[r],
                          .x = x + (size_t)r * HALF * CIN * HW,
                          .dlogits = dlogits + (size_t)r * HALF * K * HW};
        CHECK_OK(rl_unet_plan(share[r], HALF, H, W, 1, NULL));
        rl_unet_set_batch_reducer(share[r], peer_reduce, &peers[r]);
        rl_unet_zero_grad(share[r]);
    }
    for (int r = 0; r < 2; r++) pthread_create(&threads[r], NULL, peer_step, &peers[r]);
    for (int r = 0; r < 2; r++) pthread_join(threads[r], NULL);
    pthread_barrier_destroy(&group.barrier);
    CHECK(peers[0].rc == RL_OK && peers[1].rc == RL_OK);
    CHECK(!peers[0].mismatch && !peers[1].mismatch);
    /* 10 batch-norm units (3 encoder levels, 2 decoder levels, 2 units
     * each): 2 reductions forward and 1 backward per unit. */
    CHECK_MSG(peers[0].calls == 30 && peers[1].calls == 30, "%d and %d reductions",
              peers[0].calls, peers[1].calls);

    double logits_err = 0.0;
    for (int r = 0; r < 2; r++) {
        const float *got = rl_unet_logits(share[r]).data;
        const float *want = rl_unet_logits(whole).data + (size_t)r * HALF * K * HW;
        double diff = 0.0, scale = 0.0;
        for (int i = 0; i < HALF * K * HW; i++) {
            diff = fmax(diff, fabs((double)got[i] - want[i]));
            scale = fmax(scale, fabs((double)want[i]));
        }
        logits_err = fmax(logits_err, diff / scale);
    }
    const float *buffers[2] = {unet_buffers(share[0]), unet_buffers(share[1])};
    size_t nb = 0;
    int count = 0;
    const rl_unet_tensor *table = rl_unet_tensors(whole, &count);
    for (int t = 0; t < count; t++) {
        if (table[t].kind == RL_UNET_BUFFER) nb += table[t].numel;
        if (table[t].kind != RL_UNET_COUNTER) continue;
        for (int r = 0; r < 2; r++)
            CHECK(*(int64_t *)rl_unet_tensor_data(share[r], &table[t]) ==
                  *(int64_t *)rl_unet_tensor_data(whole, &table[t]));
    }
    /* The running statistics are the same on both processes, bit for bit. */
    CHECK(!memcmp(buffers[0], buffers[1], nb * sizeof(float)));
    double running_err =
        worst_tensor_diff(whole, RL_UNET_BUFFER, buffers[0], unet_buffers(whole));
    float *grad_sum = malloc(np * sizeof *grad_sum);
    for (size_t i = 0; i < np; i++)
        grad_sum[i] = rl_unet_grads(share[0])[i] + rl_unet_grads(share[1])[i];
    double grad_err = worst_tensor_diff(whole, RL_UNET_PARAM, grad_sum, rl_unet_grads(whole));
    CHECK_MSG(logits_err < 1e-5, "logits differ by %.3g", logits_err);
    CHECK_MSG(running_err < 1e-5, "running statistics differ by %.3g", running_err);
    CHECK_MSG(grad_err < 1e-5, "summed gradients differ by %.3g", grad_err);
    printf("batch norm over 2 processes against one: logits %.3g, running statistics %.3g, "
           "gradients %.3g (max relative difference)\n",
           logits_err, running_err, grad_err);
    free(grad_sum);
    rl_unet_free(whole);
    rl_unet_free(plain);
    for (int r = 0; r < 2; r++) rl_unet_free(share[r]);
}

/* Fails at call fail_at (1-based); scale multiplies the sums otherwise. */
typedef struct fake_reducer {
    int calls, fail_at;
    double scale;
} fake_reducer;

static int fake_reduce(double *buf, size_t n, void *ctx, rl_error *err) {
    fake_reducer *f = ctx;
    if (++f->calls == f->fail_at) return rl_error_set(err, RL_EIO, "peer lost");
    for (size_t i = 0; i < n; i++) buf[i] *= f->scale;
    return RL_OK;
}

/* A failing reduction is the forward's or backward's error, and the check
 * for one value per channel counts the global batch. */
static void test_batch_reducer_errors(void) {
    enum { N = 2, H = 8, W = 8 };
    rl_unet_config c = small_config(RL_NORM_BATCH);
    rl_unet *net = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_unet_create(&net, &c, 3, NULL));
    if (!net) return;
    float x[N * 2 * H * W] = {0}, dlogits[N * 3 * H * W] = {0};
    CHECK_OK(rl_unet_plan(net, N, H, W, 1, NULL));
    fake_reducer f = {0, 0, 1.0};
    rl_unet_set_batch_reducer(net, fake_reduce, &f);
    for (int fail_at = 1; fail_at <= 7; fail_at += 6) { /* a unit's first and second reduction */
        f = (fake_reducer){0, fail_at, 1.0};
        CHECK(rl_unet_forward(net, x, 1, &err) == RL_EIO && f.calls == fail_at);
        CHECK_MSG(strstr(err.msg, "U-Net forward") && strstr(err.msg, "peer lost"), "%s",
                  err.msg);
    }
    f = (fake_reducer){0, 1, 1.0};
    CHECK(rl_unet_forward(net, x, 1, NULL) == RL_EIO); /* the code, without an rl_error too */
    f = (fake_reducer){0, 21, 1.0};                    /* the backward's first: 10 units */
    CHECK_OK(rl_unet_forward(net, x, 1, &err));
    CHECK(rl_unet_backward(net, dlogits, &err) == RL_EIO && f.calls == 21);
    CHECK_MSG(strstr(err.msg, "U-Net backward") && strstr(err.msg, "peer lost"), "%s", err.msg);
    f = (fake_reducer){0, 1, 1.0}; /* eval mode reduces nothing */
    CHECK_OK(rl_unet_forward(net, x, 0, &err));
    CHECK_OK(rl_unet_backward(net, dlogits, &err));
    CHECK(f.calls == 0);
    rl_unet_free(net);

    /* One image of 4x4 at depth 2: one value per channel at the bottleneck.
     * Alone it cannot train; with an identical peer (the reducer doubles
     * every sum) the global batch has two; with no peer (sums unchanged)
     * the units find the global batch as small as the local one. */
    CHECK_OK(rl_unet_create(&net, &c, 3, NULL));
    if (!net) return;
    float one[2 * 4 * 4] = {0};
    CHECK_OK(rl_unet_plan(net, 1, 4, 4, 1, NULL));
    CHECK(rl_unet_forward(net, one, 1, &err) == RL_EINVAL);
    rl_unet_set_batch_reducer(net, fake_reduce, &f);
    f = (fake_reducer){0, 0, 2.0};
    CHECK_OK(rl_unet_forward(net, one, 1, &err));
    f = (fake_reducer){0, 0, 1.0};
    CHECK(rl_unet_forward(net, one, 1, &err) == RL_EINVAL);
    CHECK_MSG(strstr(err.msg, "global batch") != NULL, "%s", err.msg);
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
    test_conv_flops();
    test_determinism_gradients_overfit(RL_NORM_GROUP);
    test_determinism_gradients_overfit(RL_NORM_NONE);
    test_determinism_gradients_overfit(RL_NORM_BATCH);
    test_feature_scale();
    test_batch_reducer_two_processes();
    test_batch_reducer_errors();
    return rl_test_report("test_unet");
}
