/* Weak and strong views in the training step (src/train/views.c): a strong
 * view moves no pixel of its weak view; CutMix pastes the same box into the
 * image and into its targets; no gradient reaches the weak view (the target
 * branch) or the reference images; unimatch's perturbed copy is the weak
 * view itself; bad view options are refused by name. The losses against
 * PyTorch: tests/oracle/test_torch_views.py; resuming: test_trainer.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/synthetic.h"
#include "reflabel/train.h"
#include "testutil.h"

enum { H = 32, W = 32, CASES = 8 };

/* CASES shapes images, the odd ones unlabeled (their labels hidden). */
static void make_set(rl_sample_set *set, uint64_t seed) {
    memset(set, 0, sizeof *set);
    set->count = set->num_cases = CASES;
    set->channels = 1;
    set->num_classes = RL_SHAPES_CLASSES;
    set->axis = 2;
    set->samples = calloc(CASES, sizeof *set->samples);
    set->case_ids = calloc(CASES, sizeof *set->case_ids);
    rl_rng rng;
    rl_rng_seed(&rng, seed, 0);
    for (int i = 0; i < CASES; i++) {
        rl_sample *s = &set->samples[i];
        s->case_index = i;
        s->h = H;
        s->w = W;
        s->image = malloc(H * W * sizeof(float));
        int32_t *labels = malloc(H * W * sizeof(int32_t));
        rl_synth_shapes(&rng, H, W, s->image, labels);
        snprintf(set->case_ids[i], RL_CASE_ID_MAX, "case%d", i);
        if (i % 2) {
            s->hidden_labels = labels;
            set->hidden_count++;
        } else {
            s->labels = labels;
            set->labeled_count++;
        }
    }
}

static rl_unet *make_net(void) {
    rl_unet_config c = rl_unet_default_config();
    c.num_classes = RL_SHAPES_CLASSES;
    c.depth = 2;
    c.base_width = 4;
    c.groups = 2;
    rl_unet *net = NULL;
    CHECK_OK(rl_unet_create(&net, &c, 3, NULL));
    return net;
}

/* The unlabeled loss at full weight from the first step, with every weak
 * pixel a target (threshold 0), so that each view carries a gradient. */
static rl_train_config views_config(rl_method method) {
    rl_train_config cfg = rl_train_default_config(10, 2);
    cfg.patch_h = H;
    cfg.patch_w = W;
    cfg.seed = 5;
    cfg.semi.method = method;
    cfg.semi.unlabeled_batch = 3;
    cfg.semi.warmup_fraction = 0;
    cfg.semi.ramp_fraction = 0;
    cfg.semi.strong_confidence = 0;
    cfg.semi.min_confidence = 0;
    cfg.semi.margin_accuracy = 0;
    return cfg;
}

/* Runs `steps` steps and hands the last batch to check(). */
static void with_batch(const rl_train_config *cfg, int steps,
                       void (*check)(const rl_trainer_batch *, const char *), const char *what) {
    rl_sample_set set;
    make_set(&set, 2);
    rl_unet *net = make_net();
    rl_trainer *tr = NULL;
    rl_error err = {0, ""};
    CHECK_OK(rl_trainer_create(&tr, net, cfg, &set, &err));
    if (!tr) CHECK_MSG(0, "%s: %s", what, err.msg);
    for (int s = 0; tr && s < steps; s++) CHECK_OK(rl_trainer_step(tr, NULL, &err));
    if (tr) {
        rl_trainer_batch b;
        rl_trainer_last_batch(tr, &b);
        check(&b, what);
    }
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_sample_set_free(&set);
}

static size_t plane(const rl_trainer_batch *b) { return (size_t)b->h * b->w; }
static const float *image(const rl_trainer_batch *b, int i) {
    return b->x + (size_t)i * b->channels * plane(b);
}
static int strong_index(const rl_trainer_batch *b, int j, int i) {
    return b->labeled + b->unlabeled + b->references + j * b->unlabeled + i;
}

/* Photometric only: each strong pixel is a non-decreasing function of its
 * weak pixel's value, checked on every pixel in the weak view's value order:
 * equal weak values stay equal, larger ones never become smaller. A moved
 * pixel would break the order somewhere. */
static void check_no_pixel_moves(const rl_trainer_batch *b, const char *what) {
    size_t hw = plane(b);
    CHECK(b->strong_views == 2 && b->unlabeled == 3);
    float *pairs = malloc(2 * hw * sizeof *pairs);
    int changed = 0;
    for (int j = 0; j < b->strong_views; j++)
        for (int i = 0; i < b->unlabeled; i++) {
            const float *weak = image(b, b->labeled + i), *strong = image(b, strong_index(b, j, i));
            /* insertion of (weak, strong) pairs sorted by weak value */
            size_t n = 0;
            for (size_t p = 0; p < hw; p++) {
                size_t at = n++;
                while (at > 0 && pairs[2 * (at - 1)] > weak[p]) {
                    pairs[2 * at] = pairs[2 * (at - 1)];
                    pairs[2 * at + 1] = pairs[2 * (at - 1) + 1];
                    at--;
                }
                pairs[2 * at] = weak[p];
                pairs[2 * at + 1] = strong[p];
                changed += weak[p] != strong[p];
            }
            int broken = 0;
            for (size_t p = 1; p < hw; p++) {
                if (pairs[2 * p] == pairs[2 * (p - 1)])
                    broken += pairs[2 * p + 1] != pairs[2 * (p - 1) + 1];
                else
                    broken += pairs[2 * p + 1] < pairs[2 * (p - 1) + 1];
            }
            CHECK_MSG(broken == 0, "%s: view %d of image %d: %d pixels out of order", what, j, i,
                      broken);
            CHECK(b->boxes[j * b->unlabeled + i].h == 0); /* no CutMix here */
        }
    CHECK_MSG(changed > 0, "%s: the strong views equal the weak ones", what);
    free(pairs);
}

static void test_strong_view_moves_no_pixel(void) {
    rl_train_config cfg = views_config(RL_METHOD_UNIMATCH);
    rl_strong_config *s = &cfg.semi.strong;
    s->p_jitter = s->p_gamma = 1.0f;
    s->p_blur = s->p_noise = s->p_cutmix = 0.0f;
    with_batch(&cfg, 3, check_no_pixel_moves, "unimatch photometric");
}

/* CutMix only: inside its box, strong view (j, i) is the next unlabeled
 * image's weak view and carries that image's targets; outside, its own. */
static void check_cutmix(const rl_trainer_batch *b, const char *what) {
    size_t hw = plane(b);
    int boxes = 0;
    for (int j = 0; j < b->strong_views; j++)
        for (int i = 0; i < b->unlabeled; i++) {
            rl_box box = b->boxes[j * b->unlabeled + i];
            boxes += box.h > 0 && box.w > 0;
            int next = (i + 1) % b->unlabeled;
            const float *own = image(b, b->labeled + i), *other = image(b, b->labeled + next);
            const float *strong = image(b, strong_index(b, j, i));
            const int32_t *targets = b->strong_targets + (size_t)(j * b->unlabeled + i) * hw;
            const int32_t *own_t = b->pseudo + (size_t)i * hw, *other_t = b->pseudo + next * hw;
            int wrong_pixels = 0, wrong_targets = 0;
            for (int y = 0; y < b->h; y++)
                for (int x = 0; x < b->w; x++) {
                    size_t p = (size_t)y * b->w + x;
                    int in = y >= box.y && y < box.y + box.h && x >= box.x && x < box.x + box.w;
                    wrong_pixels += strong[p] != (in ? other[p] : own[p]);
                    wrong_targets += targets[p] != (in ? other_t[p] : own_t[p]);
                }
            CHECK_MSG(!wrong_pixels && !wrong_targets,
                      "%s: view %d of image %d: %d pixels, %d targets off the box", what, j, i,
                      wrong_pixels, wrong_targets);
        }
    CHECK_MSG(boxes == b->strong_views * b->unlabeled, "%s: %d boxes", what, boxes);
}

static void test_cutmix_mixes_images_and_targets_alike(void) {
    rl_train_config cfg = views_config(RL_METHOD_FIXMATCH);
    rl_strong_config *s = &cfg.semi.strong;
    s->p_jitter = s->p_gamma = s->p_blur = s->p_noise = 0.0f;
    s->p_cutmix = 1.0f;
    cfg.semi.strong_views = 2;
    with_batch(&cfg, 2, check_cutmix, "fixmatch cutmix");
}

/* The weak views and the reference images get no gradient; every strong
 * view and perturbed copy does. */
static void check_gradients(const rl_trainer_batch *b, const char *what) {
    size_t per_image = (size_t)RL_SHAPES_CLASSES * plane(b);
    int first_derived = b->labeled + b->unlabeled + b->references;
    for (int i = b->labeled; i < b->images; i++) {
        const float *d = b->dlogits + (size_t)i * per_image;
        int nonzero = 0;
        for (size_t p = 0; p < per_image; p++) nonzero += d[p] != 0.0f;
        if (i < first_derived)
            CHECK_MSG(nonzero == 0, "%s: image %d (weak or reference) has %d gradients", what, i,
                      nonzero);
        else
            CHECK_MSG(nonzero > 0, "%s: derived image %d has no gradient", what, i);
    }
    /* unimatch's perturbed copies are the weak views themselves */
    for (int i = 0; i < b->perturbed; i++)
        CHECK(!memcmp(image(b, first_derived + b->strong_views * b->unlabeled + i),
                      image(b, b->labeled + i), b->channels * plane(b) * sizeof(float)));
}

static void test_no_gradient_reaches_the_targets(void) {
    rl_train_config cfg = views_config(RL_METHOD_FIXMATCH);
    with_batch(&cfg, 2, check_gradients, "fixmatch");
    cfg = views_config(RL_METHOD_UNIMATCH);
    with_batch(&cfg, 2, check_gradients, "unimatch");
    cfg = views_config(RL_METHOD_REFPL);
    cfg.semi.strong_views = 1;
    cfg.semi.ref_images = 3;
    cfg.semi.consistency_weight = 1.0f;
    with_batch(&cfg, 2, check_gradients, "refpl with references and a strong view");
    cfg.semi.teacher = RL_TEACHER_EMA; /* targets from the teacher: still none here */
    with_batch(&cfg, 2, check_gradients, "refpl with an EMA teacher");
    cfg = views_config(RL_METHOD_UNIMATCH);
    cfg.semi.teacher = RL_TEACHER_EMA;
    with_batch(&cfg, 2, check_gradients, "unimatch with an EMA teacher");
}

static void expect_refused(rl_train_config cfg, const char *needle) {
    rl_sample_set set;
    make_set(&set, 2);
    rl_unet *net = make_net();
    rl_trainer *tr = NULL;
    rl_error err = {0, ""};
    CHECK(rl_trainer_create(&tr, net, &cfg, &set, &err) != RL_OK && !tr);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "wanted \"%s\" in: %s", needle, err.msg);
    rl_trainer_free(tr);
    rl_unet_free(net);
    rl_sample_set_free(&set);
}

static void test_bad_view_options_are_refused(void) {
    rl_train_config cfg = views_config(RL_METHOD_MEANTEACHER);
    cfg.semi.strong_views = 1;
    expect_refused(cfg, "no strong views");
    cfg = views_config(RL_METHOD_PREDPL);
    cfg.semi.ref_images = 2;
    expect_refused(cfg, "refpl's");
    cfg = views_config(RL_METHOD_FIXMATCH);
    cfg.semi.consistency_weight = 1;
    expect_refused(cfg, "refpl's");
    cfg = views_config(RL_METHOD_FIXMATCH);
    cfg.semi.strong.p_cutmix = 2;
    expect_refused(cfg, "p_cutmix");
    cfg = views_config(RL_METHOD_UNIMATCH);
    cfg.semi.feature_dropout = 1;
    expect_refused(cfg, "feature dropout");
    cfg = views_config(RL_METHOD_FIXMATCH);
    cfg.augment = 0;
    expect_refused(cfg, "augmentation");
    cfg = views_config(RL_METHOD_SUPERVISED);
    cfg.semi.teacher = RL_TEACHER_EMA;
    expect_refused(cfg, "supervised training has none");
    cfg = views_config(RL_METHOD_SUPERVISED);
    cfg.semi.strong_views = 1;
    expect_refused(cfg, "act on unlabeled images; supervised training has none");
    cfg = views_config(RL_METHOD_SUPERVISED);
    cfg.semi.ref_images = 2;
    expect_refused(cfg, "act on unlabeled images");
    cfg = views_config(RL_METHOD_REFPL);
    cfg.semi.teacher = RL_TEACHER_EMA;
    cfg.semi.ema_decay = 1;
    expect_refused(cfg, "EMA decay");
    cfg.semi.teacher = (rl_teacher)7;
    expect_refused(cfg, "unknown teacher");
}

int main(void) {
    rl_set_threads(1);
    test_strong_view_moves_no_pixel();
    test_cutmix_mixes_images_and_targets_alike();
    test_no_gradient_reaches_the_targets();
    test_bad_view_options_are_refused();
    return rl_test_report("test_views");
}
