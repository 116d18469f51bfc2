/* The batch sampler: which samples a step trains on, where each lands in
 * the training patch, and its augmentation.
 *
 * The labeled and the unlabeled samples are two pools, each walked in
 * epochs: each epoch visits every member once, in an order shuffled from
 * (seed, pool, epoch). Drawing with replacement instead left one batch in
 * eight of a 2-image labeled set holding a single image, whose classes were
 * then the only references the unlabeled half could match. The draw is a
 * pure function of the position in the walk (pool_draw), so a resumed run
 * draws the same samples without saving anything but the step counter. */
#include <stdlib.h>
#include <string.h>

#include "trainer_impl.h"

/* Epoch e of pool p (0 labeled, 1 unlabeled) is shuffled by the stream
 * STREAM_EPOCHS + 2 e + p, apart from the trainer's other streams; refpl's
 * reference images walk the labeled samples in an order of their own,
 * STREAM_REFERENCE_EPOCHS + e. */
#define STREAM_EPOCHS 16u
#define STREAM_REFERENCE_EPOCHS (UINT64_C(1) << 60)

/* Codes of the unlabeled half of the target map, chosen so that nearest-
 * neighbour augmentation carries them along with the image: a pixel of an
 * unlabeled image is UNLABELED, or HIDDEN(v) when its hidden label v is known
 * (for measuring pseudo-labels only). RL_IGNORE marks padding. */
#define UNLABELED (-2)
#define HIDDEN_BASE (-1000)
#define HIDDEN(v) (HIDDEN_BASE - (v))

void rl_sampler_layout(rl_trainer *tr, rl_arena *a) {
    rl_sample_pool *pools[3] = {&tr->labeled, &tr->unlabeled, &tr->references};
    for (int p = 0; p < 3; p++) {
        pools[p]->members = rl_arena_alloc(a, (size_t)tr->set->count * sizeof(int));
        pools[p]->order = rl_arena_alloc(a, (size_t)tr->set->count * sizeof(int));
    }
    tr->batch_samples = rl_arena_alloc(a, (size_t)tr->n * sizeof *tr->batch_samples);
}

void rl_sampler_init(rl_trainer *tr) {
    rl_sample_pool *pools[3] = {&tr->labeled, &tr->unlabeled, &tr->references};
    for (int p = 0; p < 3; p++) {
        pools[p]->which = p;
        pools[p]->epoch = -1;
        pools[p]->size = 0;
    }
    for (int i = 0; i < tr->set->count; i++) {
        rl_sample_pool *pool = tr->set->samples[i].labels ? &tr->labeled : &tr->unlabeled;
        pool->members[pool->size++] = i;
        if (tr->set->samples[i].labels) tr->references.members[tr->references.size++] = i;
    }
}

/* The sample at `position` of the pool's walk (pool->size > 0). */
static int pool_draw(rl_sample_pool *pool, uint64_t seed, int64_t position) {
    int64_t epoch = position / pool->size;
    if (epoch != pool->epoch) {
        rl_rng rng;
        uint64_t stream = pool->which == 2 ? STREAM_REFERENCE_EPOCHS + (uint64_t)epoch
                                           : STREAM_EPOCHS + 2u * (uint64_t)epoch + (uint64_t)pool->which;
        rl_rng_seed(&rng, seed, stream);
        memcpy(pool->order, pool->members, (size_t)pool->size * sizeof *pool->order);
        rl_rng_shuffle(&rng, pool->order, pool->size);
        pool->epoch = epoch;
    }
    return pool->order[position % pool->size];
}

/* Copies a sample into a (C, ph, pw) patch at a random placement: a larger
 * sample is cropped at a random offset, a smaller one lands at a random
 * offset inside the patch, whose rest is image 0 (the normalised mean) and
 * label RL_IGNORE (no supervision from padding). An unlabeled sample's
 * pixels get the UNLABELED / HIDDEN(v) codes. */
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
                size_t at = (size_t)sy * s->w + sx;
                dst[(size_t)py * pw + px] = inside ? src[at] : 0.0f;
                if (c > 0) continue;
                int32_t v = RL_IGNORE;
                if (inside && s->labels) v = s->labels[at];
                else if (inside && s->hidden_labels && s->hidden_labels[at] >= 0)
                    v = HIDDEN(s->hidden_labels[at]);
                else if (inside) v = UNLABELED;
                y[(size_t)py * pw + px] = v;
            }
        }
    }
}

int rl_sampler_fill(rl_trainer *tr, rl_error *err) {
    const rl_train_config *cfg = &tr->cfg;
    const rl_sample_set *set = tr->set;
    int ph = tr->h, pw = tr->w;
    size_t hw = (size_t)ph * pw;
    int nlu = tr->nl + tr->nu;
    for (int b = 0; b < tr->drawn; b++) {
        int idx = b < tr->nl ? pool_draw(&tr->labeled, cfg->seed, tr->steps_done * tr->nl + b)
                  : b < nlu  ? pool_draw(&tr->unlabeled, cfg->seed,
                                         tr->steps_done * tr->nu + b - tr->nl)
                             : pool_draw(&tr->references, cfg->seed,
                                         tr->steps_done * tr->nr + b - nlu);
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
    return RL_OK;
}

void rl_sampler_decode_unlabeled(rl_trainer *tr) {
    size_t count = (size_t)tr->nu * tr->h * tr->w;
    const int32_t *y = tr->y + (size_t)tr->nl * tr->h * tr->w;
    for (size_t i = 0; i < count; i++) {
        tr->valid[i] = y[i] == UNLABELED || y[i] <= HIDDEN_BASE;
        tr->hidden[i] = y[i] <= HIDDEN_BASE ? HIDDEN_BASE - y[i] : RL_IGNORE;
    }
}
