/* Oracle driver for tests/oracle/test_torch_views.py: one training step's
 * views, targets and loss gradient for PyTorch to recompute.
 *
 * usage: tool_views OUTDIR fixmatch|unimatch|refpl PL_DICE
 * Trains 3 steps on generated shapes (4 labeled, 4 unlabeled samples; batch
 * 2 labeled + 3 unlabeled; refpl: a strong view, 2 reference images and
 * consistency weight 0.7), with the unlabeled loss at full weight from the
 * first step and PL_DICE as the pseudo-label Dice weight, and writes the
 * last step's logits.npy (images, K, h, w), dlogits.npy (same), labels.npy
 * (labeled + unlabeled + references, h, w: an unlabeled image's pixel is
 * RL_IGNORE where the augmentation moved padding in), pseudo.npy (unlabeled, h, w), strong_targets.npy (views *
 * unlabeled, h, w; absent without strong views), boxes.npy (views *
 * unlabeled, 4: y x h w) and layout.npy (labeled, unlabeled, references,
 * strong views, perturbed copies, K), all float32 or int32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/synthetic.h"
#include "reflabel/train.h"
#include "testutil.h"

enum { H = 16, W = 16, CASES = 8 };

static int save(const char *dir, const char *name, const void *data, const char *dtype,
                const int *shape, int ndim) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return rl_npy_write(path, data, dtype, shape, ndim);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: tool_views OUTDIR fixmatch|unimatch|refpl PL_DICE\n");
        return 2;
    }
    const char *dir = argv[1];
    int method = rl_method_from_name(argv[2]);
    if (method < 0) return 2;
    rl_set_threads(1);
    rl_sample_set set;
    memset(&set, 0, sizeof set);
    set.count = set.num_cases = CASES;
    set.channels = 1;
    set.num_classes = RL_SHAPES_CLASSES;
    set.axis = 2;
    set.samples = calloc(CASES, sizeof *set.samples);
    set.case_ids = calloc(CASES, sizeof *set.case_ids);
    rl_rng rng;
    rl_rng_seed(&rng, 6, 0);
    for (int i = 0; i < CASES; i++) {
        rl_sample *s = &set.samples[i];
        s->case_index = i;
        s->h = H;
        s->w = W;
        s->image = malloc(H * W * sizeof(float));
        s->labels = malloc(H * W * sizeof(int32_t));
        rl_synth_shapes(&rng, H, W, s->image, s->labels);
        snprintf(set.case_ids[i], RL_CASE_ID_MAX, "case%d", i);
        if (i % 2) { /* unlabeled */
            free(s->labels);
            s->labels = NULL;
        } else {
            set.labeled_count++;
        }
    }
    rl_unet_config nc = rl_unet_default_config();
    nc.num_classes = RL_SHAPES_CLASSES;
    nc.depth = 2;
    nc.base_width = 4;
    nc.groups = 2;
    rl_unet *net = NULL;
    rl_error err = {0, ""};
    rl_train_config cfg = rl_train_default_config(10, 2);
    cfg.patch_h = H;
    cfg.patch_w = W;
    cfg.seed = 8;
    cfg.semi.method = (rl_method)method;
    cfg.semi.unlabeled_batch = 3;
    cfg.semi.warmup_fraction = cfg.semi.ramp_fraction = 0;
    cfg.semi.strong_confidence = 0.4f; /* some pixels kept, some not, at this age */
    cfg.semi.margin_accuracy = 0;
    cfg.semi.pl_dice_weight = (float)atof(argv[3]);
    if (method == RL_METHOD_REFPL) {
        cfg.semi.strong_views = 1;
        cfg.semi.ref_images = 2;
        cfg.semi.consistency_weight = 0.7f;
    }
    rl_trainer *tr = NULL;
    int rc = rl_unet_create(&net, &nc, 4, &err);
    if (!rc) rc = rl_trainer_create(&tr, net, &cfg, &set, &err);
    for (int s = 0; !rc && s < 3; s++) rc = rl_trainer_step(tr, NULL, &err);
    if (rc) {
        fprintf(stderr, "tool_views: %s\n", err.msg);
        return 1;
    }
    rl_trainer_batch b;
    rl_trainer_last_batch(tr, &b);
    int k = RL_SHAPES_CLASSES, views = b.strong_views * b.unlabeled;
    int layout[6] = {b.labeled, b.unlabeled, b.references, b.strong_views, b.perturbed, k};
    int s_layout[1] = {6}, s_logits[4] = {b.images, k, H, W}, s_labels[3] = {b.labeled + b.unlabeled + b.references, H, W};
    int s_pseudo[3] = {b.unlabeled, H, W}, s_strong[3] = {views, H, W}, s_boxes[2] = {views, 4};
    int *boxes = calloc((size_t)views * 4 + 1, sizeof *boxes);
    for (int i = 0; i < views; i++) {
        boxes[4 * i] = b.boxes[i].y;
        boxes[4 * i + 1] = b.boxes[i].x;
        boxes[4 * i + 2] = b.boxes[i].h;
        boxes[4 * i + 3] = b.boxes[i].w;
    }
    rc = save(dir, "layout.npy", layout, "<i4", s_layout, 1) ||
         save(dir, "logits.npy", rl_unet_logits(net).data, "<f4", s_logits, 4) ||
         save(dir, "dlogits.npy", b.dlogits, "<f4", s_logits, 4) ||
         save(dir, "labels.npy", b.labels, "<i4", s_labels, 3) ||
         save(dir, "pseudo.npy", b.pseudo, "<i4", s_pseudo, 3) ||
         (views && save(dir, "strong_targets.npy", b.strong_targets, "<i4", s_strong, 3)) ||
         (views && save(dir, "boxes.npy", boxes, "<i4", s_boxes, 2));
    free(boxes);
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_sample_set_free(&set);
    return rc ? 1 : 0;
}
