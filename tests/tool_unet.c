/* Oracle driver for tests/oracle/test_torch_unet.py: builds one U-Net, saves
 * its checkpoint, runs forward + softmax CE + backward on seeded data and
 * writes every tensor the oracle compares as .npy.
 *
 * $RL_CONV picks the convolution backend (exit 77: not in this build).
 * usage: tool_unet OUTDIR NORM(none|group|batch) DEPTH BASE_WIDTH CLASSES
 *                  MODE(train|eval) [MAX_WIDTH]
 * Batch 2 of 3 x 32 x 48; labels use ignore index 255 for about 10% of pixels.
 * Files: checkpoint.safetensors (the state BEFORE the forward pass), x.npy,
 * labels.npy, loss.npy, logits.npy, features.npy, dec.<l>.npy,
 * grad.<name>.npy per parameter, after.<name>.npy per batch-norm buffer and
 * num_batches_tracked counter (their values after the step). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/checkpoint.h"
#include "reflabel/loss.h"
#include "reflabel/unet.h"
#include "testutil.h"

enum { BATCH = 2, CIN = 3, H = 32, W = 48, IGNORE = 255 };

static int fail(const char *what, const rl_error *err) {
    fprintf(stderr, "tool_unet: %s: %s\n", what, err ? err->msg : "failed");
    return 1;
}

static int write_npy(const char *dir, const char *name, const void *data, const char *dtype,
                     const int *shape, int ndim) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (rl_npy_write(path, data, dtype, shape, ndim) != 0) {
        fprintf(stderr, "tool_unet: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

/* Moves norm parameters, biases and running statistics away from their
 * trivial initial values so that the comparison exercises them. */
static void perturb(rl_unet *net, rl_rng *rng) {
    int count = 0;
    const rl_unet_tensor *table = rl_unet_tensors(net, &count);
    for (int i = 0; i < count; i++) {
        const rl_unet_tensor *t = &table[i];
        if (t->kind == RL_UNET_COUNTER) continue;
        float *v = rl_unet_tensor_data(net, t);
        int is_norm = strstr(t->name, ".norm") != NULL;
        const char *leaf = strrchr(t->name, '.') + 1;
        if (t->kind == RL_UNET_BUFFER && !strcmp(leaf, "running_var"))
            rl_fill_uniform(v, t->numel, rng, 0.5f, 1.5f);
        else if (t->kind == RL_UNET_BUFFER)
            rl_fill_uniform(v, t->numel, rng, -0.3f, 0.3f);
        else if (is_norm && !strcmp(leaf, "weight"))
            rl_fill_uniform(v, t->numel, rng, 0.5f, 1.5f);
        else if (!t->weight_decay)
            rl_fill_uniform(v, t->numel, rng, -0.2f, 0.2f);
    }
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: tool_unet OUTDIR NORM DEPTH BASE_WIDTH CLASSES train|eval "
                        "[MAX_WIDTH]\n");
        return 2;
    }
    int conv_rc = rl_test_conv_backend_from_env("tool_unet");
    if (conv_rc) return conv_rc;
    const char *dir = argv[1];
    rl_unet_config cfg = rl_unet_default_config();
    cfg.in_channels = CIN;
    cfg.norm = (rl_norm_kind)rl_norm_from_name(argv[2]);
    cfg.depth = atoi(argv[3]);
    cfg.base_width = atoi(argv[4]);
    cfg.num_classes = atoi(argv[5]);
    cfg.groups = 4;
    int training = !strcmp(argv[6], "train");
    if (argc > 7) cfg.max_width = atoi(argv[7]);
    rl_error err = {0, ""};
    rl_unet *net = NULL;
    if (rl_unet_create(&net, &cfg, 1234, &err)) return fail("create", &err);
    rl_rng rng;
    rl_rng_seed(&rng, 99, 1);
    perturb(net, &rng);
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    if (rl_unet_save(net, path, NULL, 0, &err)) return fail("save", &err);
    if (rl_unet_plan(net, BATCH, H, W, 1, &err)) return fail("plan", &err);

    const int K = cfg.num_classes;
    const size_t hw = (size_t)H * W;
    float *x = malloc(sizeof(float) * BATCH * CIN * hw);
    int32_t *labels = malloc(sizeof(int32_t) * BATCH * hw);
    float *dlogits = calloc((size_t)BATCH * K * hw, sizeof(float));
    rl_fill_uniform(x, (size_t)BATCH * CIN * hw, &rng, -1.0f, 1.0f);
    for (size_t i = 0; i < BATCH * hw; i++)
        labels[i] = rl_rng_below(&rng, 10) == 0 ? IGNORE : (int32_t)rl_rng_below(&rng, (uint32_t)K);

    if (rl_unet_forward(net, x, training, &err)) return fail("forward", &err);
    rl_tensor logits = rl_unet_logits(net);
    float loss = rl_softmax_ce_loss(dlogits, logits.data, labels, NULL, BATCH, K, (int)hw,
                                    IGNORE, 1.0f);
    rl_unet_zero_grad(net);
    if (rl_unet_backward(net, dlogits, &err)) return fail("backward", &err);

    int rc = 0;
    int xs[4] = {BATCH, CIN, H, W}, ls[3] = {BATCH, H, W}, one[1] = {1};
    rc |= write_npy(dir, "x", x, "<f4", xs, 4);
    rc |= write_npy(dir, "labels", labels, "<i4", ls, 3);
    rc |= write_npy(dir, "loss", &loss, "<f4", one, 1);
    int lg[4] = {logits.n, logits.c, logits.h, logits.w};
    rc |= write_npy(dir, "logits", logits.data, "<f4", lg, 4);
    rl_tensor f = rl_unet_features(net);
    int fs[4] = {f.n, f.c, f.h, f.w};
    rc |= write_npy(dir, "features", f.data, "<f4", fs, 4);
    for (int l = 0; l < cfg.depth; l++) {
        rl_tensor d = rl_unet_decoder_output(net, l);
        int ds[4] = {d.n, d.c, d.h, d.w};
        char name[32];
        snprintf(name, sizeof name, "dec.%d", l);
        rc |= write_npy(dir, name, d.data, "<f4", ds, 4);
    }
    int count = 0;
    const rl_unet_tensor *table = rl_unet_tensors(net, &count);
    for (int i = 0; i < count; i++) {
        const rl_unet_tensor *t = &table[i];
        char name[64];
        if (t->kind == RL_UNET_PARAM) {
            snprintf(name, sizeof name, "grad.%s", t->name);
            rc |= write_npy(dir, name, rl_unet_tensor_grad(net, t), "<f4", t->shape, t->ndim);
        } else {
            snprintf(name, sizeof name, "after.%s", t->name);
            rc |= write_npy(dir, name, rl_unet_tensor_data(net, t),
                            t->kind == RL_UNET_BUFFER ? "<f4" : "<i8", t->shape, t->ndim);
        }
    }
    free(x);
    free(labels);
    free(dlogits);
    rl_unet_free(net);
    return rc;
}
