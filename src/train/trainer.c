/* The supervised training step: sample, augment, forward, loss, backward,
 * clip, update. Every buffer is allocated in rl_trainer_create. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/loss.h"
#include "reflabel/train.h"

/* Random streams, one per purpose, so that changing e.g. augmentation does
 * not change which samples are drawn. */
enum { STREAM_SAMPLING = 1, STREAM_AUGMENT = 2 };

struct rl_trainer {
    rl_unet *net;
    rl_train_config cfg;
    const rl_sample_set *set;
    rl_optimizer *opt;
    int *labeled;       /* indices of the labeled samples */
    int num_labeled;
    int *batch_samples; /* the samples of the current batch, for error messages */
    float *x;           /* (N, C, P_h, P_w) */
    int32_t *y;         /* (N, P_h, P_w) */
    float *dlogits;     /* (N, K, P_h, P_w) */
    void *augment_scratch;
    rl_rng sampling_rng, augment_rng;
    int64_t steps_done;
};

rl_train_config rl_train_default_config(int64_t steps, int batch) {
    rl_train_config c;
    memset(&c, 0, sizeof c);
    c.steps = steps;
    c.batch = batch;
    c.optim = rl_optim_default_config(RL_OPTIM_ADAMW);
    c.optim.weight_decay = 1e-4f;
    c.schedule.kind = RL_SCHEDULE_POLY;
    c.schedule.base_lr = 1e-3;
    c.schedule.min_lr = 0;
    c.schedule.power = 0.9;
    c.schedule.warmup_steps = steps / 20;
    c.schedule.total_steps = steps;
    c.clip_norm = 12.0;
    c.dice_weight = 1.0f;
    c.augment = 1;
    c.augment_config = rl_augment_default();
    c.seed = 0;
    return c;
}

static int round_up(int v, int m) { return (v + m - 1) / m * m; }

void rl_train_auto_patch(const rl_sample_set *set, int depth, int max_edge, int *patch_h,
                         int *patch_w) {
    int h = 1, w = 1, m = 1 << depth;
    for (int i = 0; i < set->count; i++) {
        if (set->samples[i].h > h) h = set->samples[i].h;
        if (set->samples[i].w > w) w = set->samples[i].w;
    }
    int cap = max_edge / m * m;
    if (cap < m) cap = m;
    *patch_h = round_up(h, m) < cap ? round_up(h, m) : cap;
    *patch_w = round_up(w, m) < cap ? round_up(w, m) : cap;
}

void rl_trainer_free(rl_trainer *tr) {
    if (!tr) return;
    rl_optim_free(tr->opt);
    free(tr->labeled);
    free(tr->batch_samples);
    free(tr->x);
    free(tr->y);
    free(tr->dlogits);
    free(tr->augment_scratch);
    free(tr);
}

int rl_trainer_create(rl_trainer **out, rl_unet *net, const rl_train_config *cfg,
                      const rl_sample_set *set, rl_error *err) {
    *out = NULL;
    const rl_unet_config *nc = rl_unet_get_config(net);
    int m = 1 << nc->depth;
    if (nc->in_channels != set->channels || nc->num_classes != set->num_classes)
        return rl_error_set(err, RL_EINVAL,
                            "network has %d input channels and %d classes, data has %d and %d",
                            nc->in_channels, nc->num_classes, set->channels, set->num_classes);
    if (cfg->batch < 1 || cfg->steps < 1)
        return rl_error_set(err, RL_EINVAL, "steps and batch must be positive");
    if (cfg->patch_h <= 0 || cfg->patch_w <= 0 || cfg->patch_h % m || cfg->patch_w % m)
        return rl_error_set(err, RL_EINVAL, "patch %dx%d is not a multiple of %d (2^depth)",
                            cfg->patch_h, cfg->patch_w, m);
    if (set->labeled_count == 0)
        return rl_error_set(err, RL_EINVAL, "no labeled training slices");
    if (cfg->augment) {
        int rc = rl_augment_check(&cfg->augment_config, err);
        if (rc) return rc;
    }
    rl_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return rl_error_set(err, RL_ENOMEM, "out of memory");
    tr->net = net;
    tr->cfg = *cfg;
    tr->cfg.schedule.total_steps = cfg->steps;
    tr->set = set;
    size_t n = (size_t)cfg->batch, hw = (size_t)cfg->patch_h * (size_t)cfg->patch_w;
    size_t nparams = rl_unet_param_count(net);
    tr->labeled = malloc((size_t)set->labeled_count * sizeof *tr->labeled);
    tr->batch_samples = malloc(n * sizeof *tr->batch_samples);
    tr->x = malloc(n * (size_t)set->channels * hw * sizeof *tr->x);
    tr->y = malloc(n * hw * sizeof *tr->y);
    tr->dlogits = malloc(n * (size_t)set->num_classes * hw * sizeof *tr->dlogits);
    tr->augment_scratch = malloc(rl_augment_scratch_bytes(cfg->patch_h, cfg->patch_w));
    if (!tr->labeled || !tr->batch_samples || !tr->x || !tr->y || !tr->dlogits ||
        !tr->augment_scratch) {
        rl_trainer_free(tr);
        return rl_error_set(err, RL_ENOMEM, "out of memory for the training buffers");
    }
    for (int i = 0; i < set->count; i++)
        if (set->samples[i].labels) tr->labeled[tr->num_labeled++] = i;

    rl_optim_span *spans = NULL;
    int span_count = 0;
    int rc = rl_optim_spans_from_unet(net, &spans, &span_count, err);
    if (!rc) rc = rl_optim_create(&tr->opt, &cfg->optim, nparams, spans, span_count, err);
    free(spans);
    if (!rc) rc = rl_unet_plan(net, cfg->batch, cfg->patch_h, cfg->patch_w, 1, err);
    if (rc) {
        rl_trainer_free(tr);
        return rc;
    }
    rl_rng_seed(&tr->sampling_rng, cfg->seed, STREAM_SAMPLING);
    rl_rng_seed(&tr->augment_rng, cfg->seed, STREAM_AUGMENT);
    *out = tr;
    return RL_OK;
}

int64_t rl_trainer_steps_done(const rl_trainer *tr) { return tr->steps_done; }

/* Copies a sample into a (C, ph, pw) patch at a random placement: a larger
 * sample is cropped at a random offset, a smaller one lands at a random
 * offset inside the patch, whose rest is image 0 (the normalised mean) and
 * label RL_IGNORE (no supervision from padding). */
static void place_in_patch(const rl_sample *s, int channels, int ph, int pw, rl_rng *rng,
                           float *x, int32_t *y) {
    int dy = ph - s->h, dx = pw - s->w; /* > 0: pad, < 0: crop */
    int oy = dy == 0 ? 0 : (int)rl_rng_below(rng, (uint32_t)abs(dy) + 1);
    int ox = dx == 0 ? 0 : (int)rl_rng_below(rng, (uint32_t)abs(dx) + 1);
    for (int c = 0; c < channels; c++) {
        const float *src = s->image + (size_t)c * s->h * s->w;
        float *dst = x + (size_t)c * ph * pw;
        for (int py = 0; py < ph; py++) {
            int sy = dy >= 0 ? py - oy : py + oy;
            for (int px = 0; px < pw; px++) {
                int sx = dx >= 0 ? px - ox : px + ox;
                int inside = sy >= 0 && sy < s->h && sx >= 0 && sx < s->w;
                dst[(size_t)py * pw + px] = inside ? src[(size_t)sy * s->w + sx] : 0.0f;
                if (c == 0)
                    y[(size_t)py * pw + px] =
                        inside && s->labels ? s->labels[(size_t)sy * s->w + sx] : RL_IGNORE;
            }
        }
    }
}

static int nonfinite_error(const rl_trainer *tr, const char *what, rl_error *err) {
    char cases[RL_ERROR_MSG_MAX / 2];
    size_t len = 0;
    cases[0] = '\0';
    for (int b = 0; b < tr->cfg.batch && len + 2 < sizeof cases; b++) {
        const rl_sample *s = &tr->set->samples[tr->batch_samples[b]];
        int n = snprintf(cases + len, sizeof cases - len, "%s%s/%d", b ? " " : "",
                         tr->set->case_ids[s->case_index], s->slice_index);
        if (n < 0) break;
        len += (size_t)n;
    }
    return rl_error_set(err, RL_ENONFINITE, "step %lld: %s is not finite (batch: %s)",
                        (long long)tr->steps_done + 1, what, cases);
}

int rl_trainer_step(rl_trainer *tr, rl_train_step_info *info, rl_error *err) {
    const rl_train_config *cfg = &tr->cfg;
    const rl_sample_set *set = tr->set;
    int n = cfg->batch, ph = cfg->patch_h, pw = cfg->patch_w, k = set->num_classes;
    size_t hw = (size_t)ph * pw;
    for (int b = 0; b < n; b++) {
        int idx = tr->labeled[rl_rng_below(&tr->sampling_rng, (uint32_t)tr->num_labeled)];
        tr->batch_samples[b] = idx;
        float *x = tr->x + (size_t)b * set->channels * hw;
        int32_t *y = tr->y + (size_t)b * hw;
        place_in_patch(&set->samples[idx], set->channels, ph, pw, &tr->sampling_rng, x, y);
        if (cfg->augment) {
            rl_augment_config aug = cfg->augment_config;
            aug.label_outside = RL_IGNORE;
            int rc = rl_augment_apply(&aug, &tr->augment_rng, x, set->channels, ph, pw, y,
                                      NULL, 0, tr->augment_scratch, err);
            if (rc) return rc;
        }
    }
    int rc = rl_unet_forward(tr->net, tr->x, 1, err);
    if (rc) return rc;
    const float *logits = rl_unet_logits(tr->net).data;
    memset(tr->dlogits, 0, (size_t)n * k * hw * sizeof *tr->dlogits);
    double ce = rl_softmax_ce_loss(tr->dlogits, logits, tr->y, NULL, n, k, (int)hw, RL_IGNORE,
                                   1.0f);
    double dice = 0;
    if (cfg->dice_weight > 0)
        dice = rl_soft_dice_loss(tr->dlogits, logits, tr->y, n, k, (int)hw, RL_IGNORE, 0,
                                 1e-5f, cfg->dice_weight);
    double loss = ce + cfg->dice_weight * dice;
    if (!isfinite(loss)) return nonfinite_error(tr, "the loss", err);

    rl_unet_zero_grad(tr->net);
    rc = rl_unet_backward(tr->net, tr->dlogits, err);
    if (rc) return rc;
    float *params = rl_unet_params(tr->net);
    float *grads = rl_unet_grads(tr->net);
    size_t count = rl_unet_param_count(tr->net);
    double norm = rl_clip_grad_norm(grads, count, cfg->clip_norm > 0 ? cfg->clip_norm : INFINITY);
    if (!isfinite(norm)) return nonfinite_error(tr, "the gradient", err);
    double lr = rl_lr_at(&cfg->schedule, tr->steps_done);
    rl_optim_step(tr->opt, params, grads, (float)lr);
    tr->steps_done++;
    if (info) {
        info->step = tr->steps_done;
        info->loss = loss;
        info->ce = ce;
        info->dice = dice;
        info->lr = lr;
        info->grad_norm = norm;
    }
    return RL_OK;
}
