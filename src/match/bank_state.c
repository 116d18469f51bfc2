/* Saving and restoring a reference bank, for resumable training: the
 * bank's filled part as a few named int64 / float32 arrays, slot by slot in
 * physical order, so that a restored ring is the same memory layout, not
 * just the same contents. The format is the caller's (the trainer maps the
 * arrays to safetensors tensors of the same names); nothing here knows it.
 *
 *   bank.ring    (3)          oldest slot, slots filled, batches added
 *   bank.slots   (M, 4)       per slot: vectors, images, batch serial, runs
 *   bank.vectors (rows, D)    the stored vectors
 *   bank.refs    (rows, 3)    per vector: label id, pixel, image
 *   bank.runs    (runs, 3)    per run: start, label id, image
 *   bank.masks   (masks)      multi-label: the bit mask of each label id */
#include "bank_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void set_array(rl_array *a, const char *name, rl_array_type type, int64_t rows,
                      int64_t cols, void *data) {
    a->name = name;
    a->type = type;
    a->ndim = cols ? 2 : 1;
    a->shape[0] = rows;
    a->shape[1] = cols;
    a->data = data;
}

void rl_bank_state_free(rl_bank_state *s) {
    for (int i = 0; i < s->count; i++) free(s->arrays[i].data);
    s->count = 0;
}

int rl_bank_export(const rl_bank *b, rl_bank_state *out, rl_error *err) {
    int slots = b->cfg.memory_batches, dim = b->cfg.dim;
    int64_t rows = 0, runs = 0;
    for (int s = 0; s < slots; s++) {
        rows += b->slot_count[s];
        runs += b->slot_runs[s];
    }
    memset(out, 0, sizeof *out);
    /* + 1: no array is an allocation of 0 bytes */
    int64_t *ring = malloc(3 * sizeof *ring);
    int64_t *slot_info = malloc((size_t)slots * 4 * sizeof *slot_info);
    float *vectors = malloc(((size_t)rows * dim + 1) * sizeof *vectors);
    int64_t *refs = malloc(((size_t)rows * 3 + 1) * sizeof *refs);
    int64_t *run_info = malloc(((size_t)runs * 3 + 1) * sizeof *run_info);
    int64_t *masks = b->cfg.multilabel ? malloc(((size_t)b->num_masks + 1) * sizeof *masks) : NULL;
    set_array(&out->arrays[0], "bank.ring", RL_ARRAY_I64, 3, 0, ring);
    set_array(&out->arrays[1], "bank.slots", RL_ARRAY_I64, slots, 4, slot_info);
    set_array(&out->arrays[2], "bank.vectors", RL_ARRAY_F32, rows, dim, vectors);
    set_array(&out->arrays[3], "bank.refs", RL_ARRAY_I64, rows, 3, refs);
    set_array(&out->arrays[4], "bank.runs", RL_ARRAY_I64, runs, 3, run_info);
    set_array(&out->arrays[5], "bank.masks", RL_ARRAY_I64, b->num_masks, 0, masks);
    out->count = b->cfg.multilabel ? 6 : 5;
    if (!ring || !slot_info || !refs || !run_info || !vectors || (b->cfg.multilabel && !masks)) {
        rl_bank_state_free(out);
        return rl_error_set(err, RL_ENOMEM, "bank: out of memory for its state");
    }
    ring[0] = b->oldest;
    ring[1] = b->filled;
    ring[2] = b->batches_added;
    int64_t row = 0, run = 0;
    for (int s = 0; s < slots; s++) {
        slot_info[4 * s + 0] = b->slot_count[s];
        slot_info[4 * s + 1] = b->slot_images[s];
        slot_info[4 * s + 2] = b->slot_batch[s];
        slot_info[4 * s + 3] = b->slot_runs[s];
        size_t base = (size_t)s * (size_t)b->slot_capacity;
        for (int i = 0; i < b->slot_count[s]; i++, row++) {
            refs[3 * row + 0] = b->labels[base + i];
            refs[3 * row + 1] = b->pixels[base + i];
            refs[3 * row + 2] = b->images[base + i];
            memcpy(vectors + (size_t)row * dim, b->vectors + (base + i) * dim, dim * sizeof(float));
        }
        size_t run_base = (size_t)s * (size_t)b->max_runs;
        for (int i = 0; i < b->slot_runs[s]; i++, run++) {
            run_info[3 * run + 0] = b->run_start[run_base + i];
            run_info[3 * run + 1] = b->run_label[run_base + i];
            run_info[3 * run + 2] = b->run_image[run_base + i];
        }
    }
    /* label ids of a multi-label bank mean the bit masks of this table */
    for (int i = 0; masks && i < b->num_masks; i++) memcpy(&masks[i], &b->masks[i], sizeof *masks);
    return RL_OK;
}

static int in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

static const void *get(rl_array_source source, void *ctx, const char *name, rl_array_type type,
                       int64_t rows, int64_t cols, int64_t *length, rl_error *err) {
    int64_t shape[2] = {rows, cols};
    const void *data = source(ctx, name, type, cols ? 2 : 1, shape, err);
    if (length) *length = shape[0];
    return data;
}

int rl_bank_import(rl_bank *b, rl_array_source source, void *ctx, const char *where, int apply,
                   rl_error *err) {
    int slots = b->cfg.memory_batches, dim = b->cfg.dim;
    const int64_t *ring = get(source, ctx, "bank.ring", RL_ARRAY_I64, 3, 0, NULL, err);
    const int64_t *slot_info =
        ring ? get(source, ctx, "bank.slots", RL_ARRAY_I64, slots, 4, NULL, err) : NULL;
    if (!slot_info) return RL_EFORMAT;
    if (!in_range(ring[0], 0, slots - 1) || !in_range(ring[1], 0, slots) ||
        !in_range(ring[2], ring[1], INT32_MAX))
        return rl_error_set(err, RL_EFORMAT, "%s: bank.ring is inconsistent", where);
    int64_t rows = 0, runs = 0;
    for (int s = 0; s < slots; s++) {
        const int64_t *si = slot_info + 4 * s;
        if (!in_range(si[0], 0, b->slot_capacity) || !in_range(si[1], 0, b->cfg.max_images) ||
            !in_range(si[2], 0, ring[2]) || !in_range(si[3], 0, b->max_runs))
            return rl_error_set(err, RL_EFORMAT, "%s: bank.slots row %d is out of range", where, s);
        rows += si[0];
        runs += si[3];
    }
    const float *vectors = get(source, ctx, "bank.vectors", RL_ARRAY_F32, rows, dim, NULL, err);
    const int64_t *refs =
        vectors ? get(source, ctx, "bank.refs", RL_ARRAY_I64, rows, 3, NULL, err) : NULL;
    const int64_t *run_info =
        refs ? get(source, ctx, "bank.runs", RL_ARRAY_I64, runs, 3, NULL, err) : NULL;
    if (!run_info) return RL_EFORMAT;
    int num_labels = b->cfg.num_labels;
    if (b->cfg.multilabel) {
        int64_t count;
        const int64_t *masks = get(source, ctx, "bank.masks", RL_ARRAY_I64, -1, 0, &count, err);
        if (!masks) return RL_EFORMAT;
        if (count > b->cfg.num_labels)
            return rl_error_set(err, RL_EFORMAT, "%s: bank.masks has too many entries", where);
        num_labels = (int)count;
        if (apply) {
            for (int i = 0; i < num_labels; i++) memcpy(&b->masks[i], &masks[i], sizeof *masks);
            b->num_masks = num_labels;
        }
    }
    for (size_t i = 0; i < (size_t)rows * dim; i++)
        if (!isfinite(vectors[i]))
            return rl_error_set(err, RL_EFORMAT, "%s: bank.vectors holds non-finite values", where);
    int64_t row = 0, run = 0;
    for (int s = 0; s < slots; s++) {
        const int64_t *si = slot_info + 4 * s;
        size_t base = (size_t)s * (size_t)b->slot_capacity;
        for (int i = 0; i < si[0]; i++, row++) {
            const int64_t *r = refs + 3 * row;
            if (!in_range(r[0], 0, num_labels - 1) ||
                !in_range(r[1], 0, b->cfg.max_image_pixels - 1) || !in_range(r[2], 0, si[1] - 1))
                return rl_error_set(err, RL_EFORMAT, "%s: bank.refs row %lld is out of range",
                                    where, (long long)row);
            if (!apply) continue;
            b->labels[base + i] = (int32_t)r[0];
            b->pixels[base + i] = (int32_t)r[1];
            b->images[base + i] = (int32_t)r[2];
            memcpy(b->vectors + (base + i) * dim, vectors + (size_t)row * dim, dim * sizeof(float));
        }
        size_t run_base = (size_t)s * (size_t)b->max_runs;
        for (int i = 0; i < si[3]; i++, run++) {
            const int64_t *r = run_info + 3 * run;
            if (!in_range(r[0], 0, si[0] - 1) || !in_range(r[1], 0, num_labels - 1) ||
                !in_range(r[2], 0, si[1] - 1))
                return rl_error_set(err, RL_EFORMAT, "%s: bank.runs row %lld is out of range",
                                    where, (long long)run);
            if (!apply) continue;
            b->run_start[run_base + i] = (int)r[0];
            b->run_label[run_base + i] = (int)r[1];
            b->run_image[run_base + i] = (int)r[2];
        }
        if (!apply) continue;
        b->slot_count[s] = (int)si[0];
        b->slot_images[s] = (int)si[1];
        b->slot_batch[s] = (long)si[2];
        b->slot_runs[s] = (int)si[3];
    }
    if (apply) {
        b->oldest = (int)ring[0];
        b->filled = (int)ring[1];
        b->batches_added = (long)ring[2];
    }
    return RL_OK;
}
