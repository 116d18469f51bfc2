/* The reference bank: feature vectors of labeled pixels with their labels,
 * drawn from each labeled batch and kept for the last M batches.
 *
 * Memory is a ring of M equal slots, one per batch, allocated at init; adding
 * a batch overwrites the oldest slot, so steady-state training never
 * allocates. Inside a slot vectors are stored grouped by (image, label), in
 * runs: the matcher reduces over a run without looking labels up per
 * reference, which is what keeps its inner loop a plain vectorised max. */
#include "bank_impl.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int rl_bank_slot_capacity(const rl_bank_config *cfg) {
    int64_t batch_pixels = (int64_t)cfg->max_images * cfg->max_image_pixels;
    int64_t cap = batch_pixels;
    if (cfg->sampling == RL_SAMPLE_PER_CLASS)
        cap = (int64_t)cfg->per_class_cap * cfg->num_labels;
    else if (cfg->sampling == RL_SAMPLE_PROPORTIONAL)
        cap = (int64_t)cfg->sample_count + (int64_t)cfg->class_floor * cfg->num_labels;
    if (cap > batch_pixels) cap = batch_pixels;
    return cap > INT_MAX ? -1 : (int)cap;
}

static int check_config(const rl_bank_config *c, rl_error *err) {
    if (c->dim < 1) return rl_error_set(err, RL_EINVAL, "bank: dim must be >= 1, got %d", c->dim);
    if (c->num_labels < 1)
        return rl_error_set(err, RL_EINVAL, "bank: num_labels must be >= 1, got %d", c->num_labels);
    if (c->max_images < 1 || c->max_image_pixels < 1)
        return rl_error_set(err, RL_EINVAL,
                            "bank: max_images and max_image_pixels must be >= 1 (got %d, %d)",
                            c->max_images, c->max_image_pixels);
    if (c->memory_batches < 1)
        return rl_error_set(err, RL_EINVAL, "bank: memory_batches must be >= 1, got %d",
                            c->memory_batches);
    if (c->similarity != RL_SIM_COSINE && c->similarity != RL_SIM_DOT)
        return rl_error_set(err, RL_EINVAL, "bank: unknown similarity %d", (int)c->similarity);
    switch (c->sampling) {
    case RL_SAMPLE_ALL: break;
    case RL_SAMPLE_PER_CLASS:
        if (c->per_class_cap < 1)
            return rl_error_set(err, RL_EINVAL, "bank: per_class_cap must be >= 1, got %d",
                                c->per_class_cap);
        break;
    case RL_SAMPLE_PROPORTIONAL:
        if (c->sample_count < 1 || c->class_floor < 0)
            return rl_error_set(err, RL_EINVAL,
                                "bank: sample_count must be >= 1 and class_floor >= 0 (got %d, %d)",
                                c->sample_count, c->class_floor);
        break;
    default: return rl_error_set(err, RL_EINVAL, "bank: unknown sampling %d", (int)c->sampling);
    }
    int64_t batch_pixels = (int64_t)c->max_images * c->max_image_pixels;
    if (batch_pixels > INT_MAX)
        return rl_error_set(err, RL_ERANGE, "bank: a batch of %d images of %d pixels is too large",
                            c->max_images, c->max_image_pixels);
    int cap = rl_bank_slot_capacity(c);
    /* Reference indices are int32 in the matcher's output. */
    if (cap < 0 || (int64_t)cap * c->memory_batches > INT_MAX)
        return rl_error_set(err, RL_ERANGE, "bank: %d batches of up to %d vectors exceed 2^31",
                            c->memory_batches, cap);
    return RL_OK;
}

static void release(rl_bank *bank);

int rl_bank_create(rl_bank **out, const rl_bank_config *cfg, rl_error *err) {
    *out = NULL;
    int rc = check_config(cfg, err);
    if (rc) return rc;
    rl_bank *bank = calloc(1, sizeof *bank);
    if (!bank) return rl_error_set(err, RL_ENOMEM, "bank: out of memory");
    bank->cfg = *cfg;
    bank->slot_capacity = rl_bank_slot_capacity(cfg);
    size_t slots = (size_t)cfg->memory_batches;
    size_t total = slots * (size_t)bank->slot_capacity;
    size_t batch_pixels = (size_t)cfg->max_images * (size_t)cfg->max_image_pixels;
    /* A run per (image, label) pair present in the batch, at most one per vector. */
    int64_t runs = (int64_t)cfg->max_images * cfg->num_labels;
    if (runs > bank->slot_capacity) runs = bank->slot_capacity;
    bank->max_runs = (int)runs;
    bank->vectors = malloc(total * (size_t)cfg->dim * sizeof(float));
    bank->labels = malloc(total * sizeof(int32_t));
    bank->pixels = malloc(total * sizeof(int32_t));
    bank->images = malloc(total * sizeof(int32_t));
    bank->slot_count = calloc(slots, sizeof(int));
    bank->slot_images = calloc(slots, sizeof(int));
    bank->slot_batch = calloc(slots, sizeof(long));
    bank->slot_runs = calloc(slots, sizeof(int));
    bank->run_start = malloc(slots * runs * sizeof(int));
    bank->run_label = malloc(slots * runs * sizeof(int));
    bank->run_image = malloc(slots * runs * sizeof(int));
    bank->masks = calloc((size_t)cfg->num_labels, sizeof(uint64_t));
    bank->pixel_label = malloc(batch_pixels * sizeof(int32_t));
    bank->order = malloc(batch_pixels * sizeof(int32_t));
    bank->picked = malloc(batch_pixels * sizeof(int32_t));
    bank->label_count = calloc((size_t)cfg->num_labels + 1, sizeof(int));
    bank->label_take = calloc((size_t)cfg->num_labels + 1, sizeof(int));
    bank->image_next = calloc((size_t)cfg->max_images + 1, sizeof(int));
    if (!bank->vectors || !bank->labels || !bank->pixels || !bank->images || !bank->slot_count ||
        !bank->slot_images || !bank->slot_batch || !bank->slot_runs || !bank->run_start ||
        !bank->run_label || !bank->run_image || !bank->masks || !bank->pixel_label ||
        !bank->order || !bank->picked || !bank->label_count || !bank->label_take ||
        !bank->image_next) {
        rl_bank_free(bank);
        return rl_error_set(err, RL_ENOMEM, "bank: cannot allocate %zu vectors of dimension %d",
                            total, cfg->dim);
    }
    *out = bank;
    return RL_OK;
}

void rl_bank_free(rl_bank *bank) {
    if (!bank) return;
    release(bank);
    free(bank);
}

const rl_bank_config *rl_bank_get_config(const rl_bank *bank) { return &bank->cfg; }

int64_t rl_bank_capacity(const rl_bank *bank) {
    return (int64_t)bank->cfg.memory_batches * bank->slot_capacity;
}

static void release(rl_bank *bank) {
    free(bank->vectors);
    free(bank->labels);
    free(bank->pixels);
    free(bank->images);
    free(bank->slot_count);
    free(bank->slot_images);
    free(bank->slot_batch);
    free(bank->slot_runs);
    free(bank->run_start);
    free(bank->run_label);
    free(bank->run_image);
    free(bank->masks);
    free(bank->pixel_label);
    free(bank->order);
    free(bank->picked);
    free(bank->label_count);
    free(bank->label_take);
    free(bank->image_next);
}

void rl_bank_clear(rl_bank *bank) {
    bank->filled = 0;
    bank->oldest = 0;
}

int rl_bank_label_count(const rl_bank *bank) {
    return bank->cfg.multilabel ? bank->num_masks : bank->cfg.num_labels;
}

uint64_t rl_bank_label_mask(const rl_bank *bank, int label) {
    if (!bank->cfg.multilabel || label < 0 || label >= bank->num_masks) return 0;
    return bank->masks[label];
}

static int physical_slot(const rl_bank *bank, int logical) {
    return (bank->oldest + logical) % bank->cfg.memory_batches;
}

int rl_bank_count(const rl_bank *bank) {
    int count = 0;
    for (int i = 0; i < bank->filled; i++) count += bank->slot_count[physical_slot(bank, i)];
    return count;
}

int rl_bank_images(const rl_bank *bank) {
    int count = 0;
    for (int i = 0; i < bank->filled; i++) count += bank->slot_images[physical_slot(bank, i)];
    return count;
}

rl_bank_entry rl_bank_get(const rl_bank *bank, int index) {
    rl_bank_entry e = {NULL, -1, 0, -1, -1, -1};
    int image_base = 0;
    for (int i = 0; i < bank->filled && index >= 0; i++) {
        int s = physical_slot(bank, i);
        if (index < bank->slot_count[s]) {
            size_t at = (size_t)s * (size_t)bank->slot_capacity + (size_t)index;
            e.vector = bank->vectors + at * (size_t)bank->cfg.dim;
            e.label = bank->labels[at];
            e.mask = bank->cfg.multilabel ? bank->masks[e.label] : 0;
            e.image = image_base + bank->images[at];
            e.pixel = bank->pixels[at];
            e.batch = bank->slot_batch[s];
            return e;
        }
        index -= bank->slot_count[s];
        image_base += bank->slot_images[s];
    }
    return e;
}

/* ---- adding a batch ------------------------------------------------------ */

/* Label id of every pixel (-1 for ignored ones) into bank->pixel_label.
 * Multi-label masks get ids in order of first appearance; on failure the id
 * table is restored, so a rejected batch leaves the bank as it was. */
static int assign_labels(rl_bank *bank, const int32_t *labels, const uint64_t *masks,
                         size_t pixels, rl_error *err) {
    const rl_bank_config *c = &bank->cfg;
    if (!c->multilabel) {
        for (size_t i = 0; i < pixels; i++) {
            int32_t l = labels[i];
            if (l == c->ignore_label) {
                bank->pixel_label[i] = -1;
            } else if (l < 0 || l >= c->num_labels) {
                return rl_error_set(err, RL_ERANGE,
                                    "bank: label %d at pixel %zu is outside [0, %d) and is not "
                                    "the ignore label %d",
                                    (int)l, i, c->num_labels, c->ignore_label);
            } else {
                bank->pixel_label[i] = l;
            }
        }
        return RL_OK;
    }
    int known = bank->num_masks;
    int last_id = -1;
    uint64_t last_mask = 0;
    for (size_t i = 0; i < pixels; i++) {
        uint64_t m = masks[i];
        if (c->ignore_mask != 0 && m == c->ignore_mask) {
            bank->pixel_label[i] = -1;
            continue;
        }
        if (last_id < 0 || m != last_mask) { /* neighbours usually share a mask */
            last_id = -1;
            for (int id = 0; id < bank->num_masks; id++)
                if (bank->masks[id] == m) {
                    last_id = id;
                    break;
                }
            if (last_id < 0) {
                if (bank->num_masks == c->num_labels) {
                    bank->num_masks = known;
                    return rl_error_set(err, RL_ERANGE,
                                        "bank: more than %d distinct label masks (num_labels)",
                                        c->num_labels);
                }
                last_id = bank->num_masks++;
                bank->masks[last_id] = m;
            }
            last_mask = m;
        }
        bank->pixel_label[i] = last_id;
    }
    return RL_OK;
}

/* How many pixels of each label to keep (label_take), from label_count. */
static void choose_counts(rl_bank *bank, int labels) {
    const rl_bank_config *c = &bank->cfg;
    int *count = bank->label_count, *take = bank->label_take;
    int64_t valid = 0;
    for (int l = 0; l < labels; l++) valid += count[l];
    for (int l = 0; l < labels; l++) take[l] = count[l];
    if (c->sampling == RL_SAMPLE_PER_CLASS) {
        for (int l = 0; l < labels; l++)
            if (take[l] > c->per_class_cap) take[l] = c->per_class_cap;
    } else if (c->sampling == RL_SAMPLE_PROPORTIONAL && valid > c->sample_count) {
        /* Largest-remainder apportionment of sample_count to the labels'
         * shares (ties: lower label), then each label raised to the floor. */
        int64_t n = c->sample_count, given = 0;
        for (int l = 0; l < labels; l++) {
            take[l] = (int)(n * count[l] / valid);
            given += take[l];
        }
        for (; given < n; given++) {
            int best = -1;
            int64_t best_rem = -1;
            for (int l = 0; l < labels; l++) {
                int64_t rem = n * count[l] % valid;
                if (take[l] < count[l] && take[l] == (int)(n * count[l] / valid) && rem > best_rem) {
                    best = l;
                    best_rem = rem;
                }
            }
            if (best < 0) break;
            take[best]++;
        }
        for (int l = 0; l < labels; l++) {
            int floor = c->class_floor < count[l] ? c->class_floor : count[l];
            if (take[l] < floor) take[l] = floor;
        }
    }
}

static int compare_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int rl_bank_add(rl_bank *bank, const float *features, const int32_t *labels,
                const uint64_t *masks, int n, int h, int w, rl_rng *rng, rl_error *err) {
    const rl_bank_config *c = &bank->cfg;
    if (!features) return rl_error_set(err, RL_EINVAL, "bank: features are NULL");
    if (c->multilabel ? (!masks || labels) : (!labels || masks))
        return rl_error_set(err, RL_EINVAL, "bank: a %s bank takes %s (and NULL for the other)",
                            c->multilabel ? "multi-label" : "multi-class",
                            c->multilabel ? "uint64 masks" : "int32 labels");
    if (n < 1 || h < 1 || w < 1 || n > c->max_images || (int64_t)h * w > c->max_image_pixels)
        return rl_error_set(err, RL_ERANGE,
                            "bank: batch of %d images of %dx%d exceeds the config (%d images of "
                            "%d pixels)",
                            n, h, w, c->max_images, c->max_image_pixels);
    if (c->sampling != RL_SAMPLE_ALL && !rng)
        return rl_error_set(err, RL_EINVAL, "bank: sampling needs an rng");
    const size_t hw = (size_t)h * (size_t)w, dim = (size_t)c->dim;
    const size_t pixels = (size_t)n * hw;
    for (size_t i = 0; i < pixels * dim; i++)
        if (!isfinite(features[i]))
            return rl_error_set(err, RL_ENONFINITE, "bank: feature %zu is not finite", i);
    int rc = assign_labels(bank, labels, masks, pixels, err);
    if (rc) return rc;
    const int nl = c->num_labels;

    /* Counting sort of the labeled pixels by label, pixel order kept. */
    int *count = bank->label_count, *next = bank->label_take;
    memset(count, 0, (size_t)nl * sizeof(int));
    for (size_t i = 0; i < pixels; i++)
        if (bank->pixel_label[i] >= 0) count[bank->pixel_label[i]]++;
    next[0] = 0;
    for (int l = 0; l < nl; l++) next[l + 1] = next[l] + count[l];
    for (size_t i = 0; i < pixels; i++)
        if (bank->pixel_label[i] >= 0) bank->order[next[bank->pixel_label[i]]++] = (int32_t)i;

    choose_counts(bank, nl);

    /* Draw each label's sample uniformly without replacement (partial
     * Fisher-Yates inside its run of `order`), then put it back in pixel
     * order so that the result does not depend on the draw order. */
    int picked = 0, label_start = 0;
    for (int l = 0; l < nl; l++) {
        int32_t *run = bank->order + label_start;
        int have = count[l], take = bank->label_take[l];
        if (take < have) {
            for (int i = 0; i < take; i++) {
                int j = i + (int)rl_rng_below(rng, (uint32_t)(have - i));
                int32_t t = run[i];
                run[i] = run[j];
                run[j] = t;
            }
            qsort(run, (size_t)take, sizeof *run, compare_int32);
        }
        memcpy(bank->picked + picked, run, (size_t)take * sizeof *run);
        picked += take;
        label_start += have;
    }

    /* Evict the oldest batch when the ring is full. */
    int slot;
    if (bank->filled < c->memory_batches) {
        slot = physical_slot(bank, bank->filled);
        bank->filled++;
    } else {
        slot = bank->oldest;
        bank->oldest = (bank->oldest + 1) % c->memory_batches;
    }

    /* Counting sort of the sample by image into `order` (free again). It is
     * stable and the sample is label-major with pixel order inside each label,
     * so each image comes out grouped by label, pixels ascending. */
    int *image_next = bank->image_next;
    memset(image_next, 0, (size_t)(n + 1) * sizeof(int));
    for (int i = 0; i < picked; i++) image_next[(size_t)bank->picked[i] / hw + 1]++;
    for (int img = 0; img < n; img++) image_next[img + 1] += image_next[img];
    for (int i = 0; i < picked; i++)
        bank->order[image_next[(size_t)bank->picked[i] / hw]++] = bank->picked[i];

    size_t base = (size_t)slot * (size_t)bank->slot_capacity;
    int *runs_start = bank->run_start + (size_t)slot * bank->max_runs;
    int *runs_label = bank->run_label + (size_t)slot * bank->max_runs;
    int *runs_image = bank->run_image + (size_t)slot * bank->max_runs;
    int runs = 0;
    for (int stored = 0; stored < picked; stored++) {
        int32_t p = bank->order[stored];
        int img = (int)((size_t)p / hw);
        int32_t label = bank->pixel_label[p];
        size_t at = base + (size_t)stored;
        if (runs == 0 || runs_label[runs - 1] != label || runs_image[runs - 1] != img) {
            runs_start[runs] = stored;
            runs_label[runs] = label;
            runs_image[runs] = img;
            runs++;
        }
        bank->labels[at] = label;
        bank->images[at] = img;
        bank->pixels[at] = (int32_t)((size_t)p % hw);
        /* Gather the D channels of pixel p (stride hw in NCHW). */
        const float *src = features + (size_t)img * dim * hw + (size_t)p % hw;
        float *dst = bank->vectors + at * dim;
        double norm2 = 0.0;
        for (size_t d = 0; d < dim; d++) {
            dst[d] = src[d * hw];
            norm2 += (double)dst[d] * dst[d];
        }
        /* Cosine: store unit vectors; a zero vector stays zero, so its
         * similarity to every query is 0. */
        if (c->similarity == RL_SIM_COSINE && norm2 > 0.0) {
            float inv = (float)(1.0 / sqrt(norm2));
            for (size_t d = 0; d < dim; d++) dst[d] *= inv;
        }
    }
    bank->slot_count[slot] = picked;
    bank->slot_images[slot] = n;
    bank->slot_batch[slot] = bank->batches_added++;
    bank->slot_runs[slot] = runs;
    return RL_OK;
}
