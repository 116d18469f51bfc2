/* The training loop: create / free, and the step: batch (sampler.c),
 * forward, supervised loss, the semi-supervised method's unlabeled targets
 * and loss (semi.h, one file per method), backward, clip, update, and the
 * handling of non-finite batches. Labels and logits go through the
 * trainer's encoding (encoding.h), classes or bit sets alike. Every buffer
 * comes from one arena, measured then allocated by layout() in
 * rl_trainer_create; a step calls no allocator. The resumable state file is
 * train_state.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "semi.h"

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
    rl_semi_config *s = &c.semi;
    s->method = RL_METHOD_SUPERVISED;
    s->unlabeled_batch = 0;
    s->warmup_fraction = 0.3;
    s->ramp_fraction = 0.2;
    s->lambda = 1.0f;
    s->pl_dice_weight = 0.0f;
    /* Proportional, not per-class: a per-class cap makes a rare class as
     * frequent among the references as the background, matches drift towards
     * it and the loop feeds on its own drift; with the per-class cap refpl
     * collapsed on the brain atlas and on the stripes data (docs/TRAINING.md,
     * "Status of the defaults"). */
    s->refs.sampling = RL_SAMPLE_PROPORTIONAL;
    s->refs.per_class_cap = 256;
    s->refs.sample_count = 4096;
    s->refs.class_floor = 32;
    s->refs.features = RL_FEATURES_LAST;
    s->memory_batches = 1;
    s->refs.top_k = 1;
    s->refs.match_mode = RL_MATCH_POOLED;
    s->refs.similarity = RL_SIM_COSINE;
    s->refs.min_margin = 0.0f;
    s->keep_fraction = 1.0;
    /* A margin threshold learned each step from the labeled half, stated as
     * the accuracy those matches must reach. A fixed margin of 0.1 was ahead
     * of supervised training on the brain atlas (5% labeled) but kept 1% of
     * the pixels on other data; with 0.9, refpl was ahead there in each of 3
     * seeds, by 0.024-0.039 (docs/TRAINING.md, "Status of the defaults"). */
    s->margin_accuracy = 0.9;
    s->min_confidence = 0.9f;
    s->ema_decay = 0.99f;
    s->strong_views = -1;
    s->strong = rl_strong_default();
    s->strong_confidence = 0.95f;
    s->consistency_weight = 0.0f;
    s->ref_images = 0;
    s->feature_dropout = 0.5f;
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

/* Floats of batch-norm running statistics and int64 counters in net. */
static void count_norm_state(rl_unet *net, size_t *stats, size_t *counters) {
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(net, &count);
    for (int i = 0; i < count; i++) {
        if (t[i].kind == RL_UNET_BUFFER) *stats += t[i].numel;
        if (t[i].kind == RL_UNET_COUNTER) *counters += t[i].numel;
    }
}

/* Copies the batch-norm state out of the network (save != 0) or back in. */
static void copy_norm_state(rl_trainer *tr, int save) {
    int count;
    const rl_unet_tensor *t = rl_unet_tensors(tr->net, &count);
    size_t stats = 0, counters = 0;
    for (int i = 0; i < count; i++) {
        if (t[i].kind == RL_UNET_PARAM) continue;
        int is_counter = t[i].kind == RL_UNET_COUNTER;
        void *kept = is_counter ? (void *)(tr->counters_before + counters)
                                : (void *)(tr->norm_stats_before + stats);
        size_t bytes = t[i].numel * (is_counter ? sizeof(int64_t) : sizeof(float));
        void *live = rl_unet_tensor_data(tr->net, &t[i]);
        if (save) memcpy(kept, live, bytes);
        else memcpy(live, kept, bytes);
        if (is_counter) counters += t[i].numel;
        else stats += t[i].numel;
    }
}

/* Assigns every buffer of the trainer from arena a (the sampler's, the
 * encoding's and the method's included); with a measuring arena the
 * pointers are NULL and only a->used matters. */
static void layout(rl_trainer *tr, rl_arena *a) {
    const rl_sample_set *set = tr->set;
    size_t n = (size_t)tr->n, hw = (size_t)tr->h * tr->w, k = (size_t)set->num_classes;
    rl_sampler_layout(tr, a);
    rl_shard_layout(tr, a);
    tr->x = rl_arena_floats(a, n * (size_t)set->channels * hw);
    tr->y = rl_arena_alloc(a, n * hw * sizeof *tr->y);
    tr->dlogits = rl_arena_floats(a, n * k * hw);
    tr->augment_scratch = rl_arena_alloc(a, rl_augment_scratch_bytes(tr->h, tr->w));
    tr->norm_stats_before = rl_arena_floats(a, tr->norm_stats + 1);
    tr->counters_before = rl_arena_alloc(a, (tr->norm_counters + 1) * sizeof(int64_t));
    rl_encoding_layout(&tr->enc, a, tr->n, hw);
    tr->pseudo = tr->matched = tr->hidden = NULL;
    tr->confidence = NULL;
    tr->valid = NULL;
    memset(&tr->stats, 0, sizeof tr->stats);
    if (tr->nu > 0) {
        size_t count = (size_t)tr->nu * hw;
        tr->pseudo = rl_arena_alloc(a, count * sizeof *tr->pseudo);
        tr->matched = rl_arena_alloc(a, count * sizeof *tr->matched);
        tr->hidden = rl_arena_alloc(a, count * sizeof *tr->hidden);
        tr->confidence = rl_arena_floats(a, count);
        tr->valid = rl_arena_alloc(a, count);
        tr->stats.labeled_share = rl_arena_alloc(a, k * sizeof(double));
        tr->stats.pl_share = rl_arena_alloc(a, k * sizeof(double));
        tr->stats.pl_dice = rl_arena_alloc(a, k * sizeof(double));
        tr->stats.counts = rl_arena_alloc(a, 3 * k * sizeof(int64_t));
    }
    rl_views_layout(tr, a);
    if (tr->method->layout) tr->method->layout(tr, tr->semi, a);
}

void rl_trainer_free(rl_trainer *tr) {
    if (!tr) return;
    if (tr->ranks > 1) rl_unet_set_batch_reducer(tr->net, NULL, NULL); /* shard.c's */
    rl_optim_free(tr->opt);
    rl_teacher_free(tr);
    if (tr->method && tr->method->free) tr->method->free(tr->semi);
    rl_arena_free(&tr->arena);
    free(tr);
}

/* What every semi-supervised method needs: unlabeled images and a sane
 * weight schedule; then the method's own checks and objects. */
static int create_semi(rl_trainer *tr, rl_error *err) {
    const rl_semi_config *sc = &tr->cfg.semi;
    if (tr->unlabeled.size == 0)
        return rl_error_set(err, RL_EINVAL, "method %s needs unlabeled images; all %d are labeled",
                            tr->method->name, tr->set->count);
    if (!(sc->lambda >= 0) || !(sc->warmup_fraction >= 0) || !(sc->ramp_fraction >= 0) ||
        sc->warmup_fraction + sc->ramp_fraction > 1.0)
        return rl_error_set(err, RL_EINVAL,
                            "lambda, warm-up and ramp must be >= 0, warm-up + ramp <= 1");
    return tr->method->create ? tr->method->create(tr, &tr->semi, err) : RL_OK;
}

/* The views of a step (trainer_impl.h): how many of each, and whether the
 * method and its options allow them. */
static int plan_views(rl_trainer *tr, rl_error *err) {
    const rl_semi_config *sc = &tr->cfg.semi;
    const rl_semi_method *m = tr->method;
    int refpl = m->id == RL_METHOD_REFPL;
    /* supervised training: what would otherwise be ignored without a word */
    if (!m->targets && (sc->strong_views > 0 || sc->ref_images != 0 || sc->consistency_weight != 0))
        return rl_error_set(err, RL_EINVAL,
                            "strong views, reference images and the consistency loss act on "
                            "unlabeled images; %s training has none",
                            m->name);
    tr->ns = sc->strong_views < 0 ? m->strong_views : sc->strong_views;
    tr->nfp = m->perturb ? tr->nu : 0;
    tr->nr = refpl ? sc->ref_images : 0;
    if (tr->ns > 8)
        return rl_error_set(err, RL_EINVAL, "%d strong views per image; at most 8", tr->ns);
    if (sc->ref_images < 0 || (sc->ref_images > 0 && !refpl))
        return rl_error_set(err, RL_EINVAL, "reference images are refpl's (%s got %d)", m->name,
                            sc->ref_images);
    if (!(sc->consistency_weight >= 0) || (sc->consistency_weight > 0 && !refpl))
        return rl_error_set(err, RL_EINVAL,
                            "the consistency weight is refpl's and must be >= 0 (%s got %g)",
                            m->name, sc->consistency_weight);
    if (m->loss && tr->ns > 0)
        return rl_error_set(err, RL_EUNSUPPORTED,
                            "method %s compares distributions on the weak view; it takes no "
                            "strong views",
                            m->name);
    if (!(sc->strong_confidence >= 0 && sc->strong_confidence <= 1))
        return rl_error_set(err, RL_EINVAL, "the strong-view confidence must be in [0, 1], not %g",
                            sc->strong_confidence);
    if (m->perturb && !(sc->feature_dropout >= 0 && sc->feature_dropout < 1))
        return rl_error_set(err, RL_EINVAL, "feature dropout must be in [0, 1), not %g",
                            sc->feature_dropout);
    if (tr->ns > 0) {
        int rc = rl_strong_check(&sc->strong, err);
        if (rc) return rc;
    }
    if (tr->ns > 0 && !tr->cfg.augment)
        return rl_error_set(err, RL_EINVAL,
                            "strong views perturb the augmented weak view; they need "
                            "augmentation on");
    return RL_OK;
}

int rl_trainer_create(rl_trainer **out, rl_unet *net, const rl_train_config *cfg,
                      const rl_sample_set *set, rl_error *err) {
    *out = NULL;
    const rl_unet_config *nc = rl_unet_get_config(net);
    int m = 1 << nc->depth;
    const rl_semi_method *method = rl_semi_method_of(cfg->semi.method);
    if (nc->in_channels != set->channels || nc->num_classes != rl_sample_set_outputs(set))
        return rl_error_set(err, RL_EINVAL,
                            "network has %d input channels and %d outputs, data has %d and %d%s",
                            nc->in_channels, nc->num_classes, set->channels,
                            rl_sample_set_outputs(set),
                            set->multilabel ? " (one per structure, multi-label)" : "");
    if (cfg->batch < 1 || cfg->steps < 1 || cfg->semi.unlabeled_batch < 0)
        return rl_error_set(err, RL_EINVAL, "steps and batch must be positive");
    if (!method)
        return rl_error_set(err, RL_EINVAL, "unknown training method %d", (int)cfg->semi.method);
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
    int semi = method->targets != NULL;
    tr->net = net;
    tr->cfg = *cfg;
    tr->cfg.schedule.total_steps = cfg->steps;
    tr->set = set;
    tr->method = method;
    rl_encoding_init(&tr->enc, set->multilabel, set->num_classes);
    tr->nl = cfg->batch;
    tr->nu = semi ? (cfg->semi.unlabeled_batch ? cfg->semi.unlabeled_batch : cfg->batch) : 0;
    int rc = plan_views(tr, err);
    if (rc) {
        free(tr);
        return rc;
    }
    tr->drawn = tr->nl + tr->nu + tr->nr;
    tr->s0 = tr->drawn;
    tr->fp0 = tr->s0 + tr->ns * tr->nu;
    tr->n = tr->fp0 + tr->nfp;
    tr->ref_first = tr->nr > 0 ? tr->nl + tr->nu : 0;
    tr->ref_count = tr->nr > 0 ? tr->nr : tr->nl;
    tr->h = cfg->patch_h;
    tr->w = cfg->patch_w;
    count_norm_state(net, &tr->norm_stats, &tr->norm_counters);
    /* The pools' sizes decide create_semi's first check; their members are
     * written once the arena exists. */
    for (int i = 0; i < set->count; i++) {
        if (set->samples[i].labels) tr->labeled.size++;
        else tr->unlabeled.size++;
    }

    rl_optim_span *spans = NULL;
    int span_count = 0;
    rc = rl_optim_spans_from_unet(net, &spans, &span_count, err);
    if (!rc)
        rc = rl_optim_create(&tr->opt, &cfg->optim, rl_unet_param_count(net), spans, span_count,
                             err);
    free(spans);
    if (!rc) rc = rl_shard_plan(tr, err);
    if (!rc) rc = rl_unet_plan(net, tr->hi - tr->lo, cfg->patch_h, cfg->patch_w, 1, err);
    if (!rc) rc = rl_teacher_create(tr, err);
    /* Mean teacher's consistency loss compares softmax distributions, which
     * multi-label outputs are not. */
    if (!rc && set->multilabel && method->classes_only)
        rc = rl_error_set(err, RL_EUNSUPPORTED,
                          "method %s does not support multi-label data (use refpl, predpl or "
                          "supervised)",
                          method->name);
    if (!rc && semi) rc = create_semi(tr, err);
    if (!rc) {
        rl_arena measure;
        rl_arena_measure(&measure);
        layout(tr, &measure);
        rc = rl_arena_init(&tr->arena, measure.used, err);
        if (rc) rl_error_prefix(err, "the training buffers");
    }
    if (rc) {
        rl_trainer_free(tr);
        return rc;
    }
    layout(tr, &tr->arena);
    rl_sampler_init(tr);
    if (semi) rl_encoding_label_shares(&tr->enc, set, tr->stats.labeled_share);
    rl_rng_seed(&tr->sampling_rng, cfg->seed, STREAM_SAMPLING);
    rl_rng_seed(&tr->augment_rng, cfg->seed, STREAM_AUGMENT);
    rl_rng_seed(&tr->bank_rng, cfg->seed, STREAM_BANK);
    *out = tr;
    return RL_OK;
}

int64_t rl_trainer_steps_done(const rl_trainer *tr) { return tr->steps_done; }

void rl_trainer_last_batch(const rl_trainer *tr, rl_trainer_batch *out) {
    out->labeled = tr->nl;
    out->unlabeled = tr->nu;
    out->references = tr->nr;
    out->strong_views = tr->ns;
    out->perturbed = tr->nfp;
    out->images = tr->n;
    out->channels = tr->set->channels;
    out->h = tr->h;
    out->w = tr->w;
    out->x = tr->x;
    out->labels = tr->y;
    out->pseudo = tr->pseudo;
    out->boxes = tr->boxes;
    out->strong_targets = tr->strong_targets;
    out->dlogits = tr->dlogits;
}

/* "step N: <what> not finite (batch: case/slice ...)"; what ends in "is" or
 * "are". */
static int nonfinite_error(const rl_trainer *tr, const char *what, rl_error *err) {
    char cases[RL_ERROR_MSG_MAX / 2];
    size_t len = 0;
    cases[0] = '\0';
    for (int b = 0; b < tr->drawn && len + 2 < sizeof cases; b++) {
        const rl_sample *s = &tr->set->samples[tr->batch_samples[b]];
        int n = snprintf(cases + len, sizeof cases - len, "%s%s/%d", b ? " " : "",
                         tr->set->case_ids[s->case_index], s->slice_index);
        if (n < 0) break;
        len += (size_t)n;
    }
    return rl_error_set(err, RL_ENONFINITE, "step %lld: %s not finite (batch: %s)",
                        (long long)tr->steps_done + 1, what, cases);
}

/* lambda(t): 0 during the warm-up, then a linear ramp to lambda. */
static double unlabeled_weight(const rl_trainer *tr) {
    const rl_semi_config *sc = &tr->cfg.semi;
    double t = (double)tr->steps_done / (double)tr->cfg.steps;
    if (t < sc->warmup_fraction) return 0.0;
    if (sc->ramp_fraction <= 0) return sc->lambda;
    double r = (t - sc->warmup_fraction) / sc->ramp_fraction;
    return sc->lambda * (r < 1.0 ? r : 1.0);
}

/* The unlabeled half: the method's targets and loss, accumulated into
 * dlogits with weight lambda, then the pseudo-label statistics. */
static int unlabeled_loss(rl_trainer *tr, double lambda, rl_train_step_info *info,
                          rl_error *err) {
    size_t hw = (size_t)tr->h * tr->w, offset = (size_t)tr->nl * tr->enc.outputs * hw;
    const float *logits = tr->logits + offset;
    float *dlogits = lambda > 0 ? tr->dlogits + offset : NULL;
    rl_sampler_decode_unlabeled(tr);
    rl_views_predict(tr);
    int rc = tr->method->targets(tr, tr->semi, info, err);
    if (rc) return rc;
    rl_views_accuracy(tr, info);
    if (tr->method->loss)
        info->unsup_loss = tr->method->loss(tr, tr->semi, dlogits, logits, lambda);
    else
        info->unsup_loss = rl_views_loss(tr, lambda > 0 ? tr->dlogits : NULL, tr->logits, lambda);
    rl_pseudo_label_stats(&tr->enc, (size_t)tr->nu * hw, tr->valid, tr->matched, tr->pseudo,
                          tr->hidden, &tr->stats, info);
    return RL_OK;
}

int rl_trainer_all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* A batch whose output, loss or gradient is not finite: undoes what its
 * forward pass did to the batch-norm statistics, then either fails, or with
 * skip_nonfinite counts the step as done without an update. */
static int nonfinite_batch(rl_trainer *tr, const char *what, rl_train_step_info *info,
                           rl_train_step_info *info_out, rl_error *err) {
    copy_norm_state(tr, 0);
    rl_error why = {0, ""};
    nonfinite_error(tr, what, &why);
    if (!tr->cfg.skip_nonfinite) {
        if (err) *err = why;
        return RL_ENONFINITE;
    }
    memcpy(tr->skip_reason, why.msg, sizeof tr->skip_reason);
    info->lr = rl_lr_at(&tr->cfg.schedule, tr->steps_done);
    tr->steps_done++;
    tr->skipped++;
    info->step = tr->steps_done;
    info->skipped = 1;
    info->skip_reason = tr->skip_reason;
    info->skipped_total = tr->skipped;
    if (info_out) *info_out = *info;
    return RL_OK;
}

static int step(rl_trainer *tr, rl_train_step_info *info_out, rl_error *err);

/* The feature scale of unimatch's perturbed copies points into the
 * trainer's arena and fits its batch (this rank's images of it): it is on
 * the network for this step's forward and backward passes only. */
int rl_trainer_step(rl_trainer *tr, rl_train_step_info *info_out, rl_error *err) {
    if (tr->feature_scale)
        rl_unet_set_feature_scale(tr->net, tr->feature_scale +
                                               (size_t)tr->lo *
                                                   (size_t)rl_unet_feature_scale_count(tr->net));
    int rc = step(tr, info_out, err);
    rl_unet_set_feature_scale(tr->net, NULL);
    return rc;
}

static int step(rl_trainer *tr, rl_train_step_info *info_out, rl_error *err) {
    const rl_train_config *cfg = &tr->cfg;
    int k = tr->set->num_classes, nl = tr->nl;
    int hw = tr->h * tr->w;
    rl_train_step_info info;
    memset(&info, 0, sizeof info);
    /* NaN until computed, so that a skipped step logs none of them as 0. */
    info.loss = info.ce = info.grad_norm = NAN;
    info.dice = cfg->dice_weight > 0 ? NAN : 0.0;
    info.pl_accuracy = info.pl_drift = info.pl_min_margin = NAN;
    info.matched_accuracy = info.pred_accuracy = NAN;
    info.skipped_total = tr->skipped;
    int rc = rl_sampler_fill(tr, err);
    if (!rc) rc = rl_views_fill(tr, err);
    if (rc) return rc;
    copy_norm_state(tr, 1);
    rc = rl_shard_forward(tr, err);
    if (rc) return rc;
    const float *logits = tr->logits;
    /* Checked first, for the clearest message, and because a finite output
     * implies finite decoder features (a NaN or infinity there reaches every
     * logit through the 1x1 head), which the refpl bank would refuse. */
    if (!rl_trainer_all_finite(logits, (size_t)tr->n * tr->enc.outputs * hw))
        return nonfinite_batch(tr, "the network output is", &info, info_out, err);
    const char *nonfinite = NULL;
    if (tr->teacher) {
        rc = rl_teacher_forward(tr, &nonfinite, err);
        if (rc) return rc;
        if (nonfinite) return nonfinite_batch(tr, nonfinite, &info, info_out, err);
    }
    if (tr->method->after_forward) {
        rc = tr->method->after_forward(tr, tr->semi, &nonfinite, err);
        if (rc) return rc;
        if (nonfinite) return nonfinite_batch(tr, nonfinite, &info, info_out, err);
    }
    memset(tr->dlogits, 0, (size_t)tr->n * k * hw * sizeof *tr->dlogits);
    float ce, dice = 0;
    rl_encoding_loss(&tr->enc, tr->dlogits, logits, tr->y, 0, nl, hw, 1.0, cfg->dice_weight, &ce,
                     &dice);
    info.ce = ce;
    if (cfg->dice_weight > 0) info.dice = dice;
    info.loss = info.ce + cfg->dice_weight * info.dice;
    if (tr->nu > 0) {
        info.lambda = unlabeled_weight(tr);
        rc = unlabeled_loss(tr, info.lambda, &info, err);
        if (rc) return rc;
        info.loss += info.lambda * info.unsup_loss;
    }
    if (!isfinite(info.loss)) return nonfinite_batch(tr, "the loss is", &info, info_out, err);

    rc = rl_shard_backward(tr, err);
    if (rc) return rc;
    float *params = rl_unet_params(tr->net);
    float *grads = rl_unet_grads(tr->net);
    size_t count = rl_unet_param_count(tr->net);
    info.grad_norm = rl_clip_grad_norm(grads, count, cfg->clip_norm > 0 ? cfg->clip_norm : INFINITY);
    if (!isfinite(info.grad_norm))
        return nonfinite_batch(tr, "the gradient is", &info, info_out, err);
    info.lr = rl_lr_at(&cfg->schedule, tr->steps_done);
    rl_optim_step(tr->opt, params, grads, (float)info.lr);
    /* Finite gradients can still carry weights past the float range when the
     * learning rate is absurd; nothing can be skipped once they have moved. */
    if (!rl_trainer_all_finite(params, count)) {
        char what[96];
        snprintf(what, sizeof what, "the weights after the update (learning rate %g) are",
                 info.lr);
        return nonfinite_error(tr, what, err);
    }
    if (tr->teacher) rl_teacher_update(tr);
    tr->steps_done++;
    info.step = tr->steps_done;
    if (info_out) *info_out = info;
    return RL_OK;
}
