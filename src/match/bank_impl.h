/* Internal to src/match: the reference bank's layout, shared by bank.c,
 * bank_state.c and matcher.c (whose inner loop walks the runs directly).
 * Everyone else goes through include/reflabel/match.h. */
#ifndef RL_MATCH_BANK_IMPL_H
#define RL_MATCH_BANK_IMPL_H

#include "reflabel/match.h"

struct rl_bank {
    rl_bank_config cfg;
    int slot_capacity;
    /* M slots of slot_capacity vectors each; slot s starts at s * slot_capacity. */
    float *vectors;      /* (M * slot_capacity, D) */
    int32_t *labels;     /* label id per vector */
    int32_t *pixels;     /* pixel index inside its image */
    int32_t *images;     /* image index inside its batch */
    int *slot_count;     /* vectors held by each slot */
    int *slot_images;    /* images of the batch held by each slot */
    long *slot_batch;    /* serial number of the batch held by each slot */
    /* Runs of equal (image, label) inside each slot, in storage order:
     * slot s owns run entries [s * max_runs, s * max_runs + slot_runs[s]). */
    int max_runs;
    int *run_start;
    int *run_label;
    int *run_image;
    int *slot_runs;
    int oldest;          /* physical slot of the oldest batch */
    int filled;          /* slots in use (<= M) */
    long batches_added;
    /* multi-label: masks[id] is the class bit mask of label id */
    uint64_t *masks;
    int num_masks;
    /* sampling scratch, sized for one full batch */
    int32_t *pixel_label; /* label id of every pixel of the batch (-1: ignored) */
    int32_t *order;       /* pixels grouped by label */
    int32_t *picked;      /* the sample, grouped by image */
    int *label_count;
    int *label_take;
    int *image_next;
};

#endif
