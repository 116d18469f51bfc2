/* Data-parallel training: the images of a step shared among the ranks of
 * an MPI launch (reflabel/dist.h; docs/DISTRIBUTED.md).
 *
 * Every rank draws and augments the whole global batch, with the streams
 * of a one-process run, and runs the network on its own contiguous share
 * of the images, [lo, hi). The logits of the whole batch (and refpl's
 * features) are then gathered, so that every rank computes the losses and
 * the targets of the whole batch exactly as one process does: no loss
 * needs a second, distributed normalisation (batch Dice, the
 * confident-pixel counts, the calibration's quantile), and every method
 * runs unchanged. refpl shares out its matching too, the costly part of
 * its targets (semi_refpl.c, margin_calibration.c): each rank matches its
 * share of the query images against the same bank, and the labels and
 * margins are gathered. Each rank backpropagates
 * its images' rows of the batch's loss gradient, and the parameter
 * gradients are summed, bit for bit the same on every rank
 * (rl_dist_sum_f32), so every rank's update and weights are the same.
 *
 * What every rank computes whole: the drawing, augmentation and views of the
 * batch (cheap next to the network: bench/bench_train_mpi.sh), the losses,
 * refpl's banks, and mean teacher's teacher pass. What differs
 * from one process, within rounding: the order in which the weight
 * gradients are summed over the images, and, with batch norm, the way
 * its statistics are summed (the network's batch reducer). */
#include <string.h>

#include "reflabel/dist.h"
#include "trainer_impl.h"

/* Rank r's images are [n r / R, n (r + 1) / R): contiguous, sizes within one. */
static int shard_first(int n, int rank, int ranks) {
    return (int)((int64_t)n * rank / ranks);
}

static int sum_norm_stats(double *buf, size_t n, void *ctx, rl_error *err) {
    (void)ctx;
    return rl_dist_sum_f64(buf, n, err);
}

int rl_shard_plan(rl_trainer *tr, rl_error *err) {
    int ranks = rl_dist_size();
    tr->ranks = ranks;
    rl_shard_range(tr, tr->n, &tr->lo, &tr->hi);
    if (ranks > tr->n)
        return rl_error_set(err, RL_EINVAL,
                            "%d ranks for a step of %d image%s: at most one rank per image",
                            ranks, tr->n, tr->n == 1 ? "" : "s");
    /* batch norm's statistics are the global batch's, as in one process */
    if (ranks > 1) rl_unet_set_batch_reducer(tr->net, sum_norm_stats, NULL);
    return RL_OK;
}

void rl_shard_layout(rl_trainer *tr, rl_arena *a) {
    size_t outputs = (size_t)tr->n * tr->enc.outputs * tr->h * tr->w;
    tr->shard_counts = rl_arena_alloc(a, (size_t)tr->ranks * sizeof *tr->shard_counts);
    /* one rank reads the network's own logits */
    tr->gathered_logits = tr->ranks > 1 ? rl_arena_floats(a, outputs) : NULL;
}

void rl_shard_range(const rl_trainer *tr, int items, int *lo, int *hi) {
    int rank = rl_dist_rank();
    *lo = shard_first(items, rank, tr->ranks);
    *hi = shard_first(items, rank + 1, tr->ranks);
}

int rl_shard_gather(rl_trainer *tr, void *full, const void *mine, size_t item_bytes, int items,
                    rl_error *err) {
    int lo, hi;
    rl_shard_range(tr, items, &lo, &hi);
    if (mine) memcpy((char *)full + (size_t)lo * item_bytes, mine, (size_t)(hi - lo) * item_bytes);
    for (int r = 0; r < tr->ranks; r++)
        tr->shard_counts[r] = (size_t)(shard_first(items, r + 1, tr->ranks) -
                                       shard_first(items, r, tr->ranks)) *
                              item_bytes;
    return rl_dist_gather(full, tr->shard_counts, err);
}

int rl_shard_forward(rl_trainer *tr, rl_error *err) {
    size_t hw = (size_t)tr->h * tr->w;
    int rc = rl_unet_forward(tr->net, tr->x + (size_t)tr->lo * tr->set->channels * hw, 1, err);
    if (tr->ranks == 1) {
        tr->logits = rl_unet_logits(tr->net).data;
        return rc;
    }
    /* a rank whose pass failed still reaches the gather's agreement */
    rc = rl_dist_agree(rc, err);
    if (rc) return rc;
    tr->logits = tr->gathered_logits;
    return rl_shard_gather(tr, tr->gathered_logits, rl_unet_logits(tr->net).data,
                           (size_t)tr->enc.outputs * hw * sizeof(float), tr->n, err);
}

int rl_shard_backward(rl_trainer *tr, rl_error *err) {
    size_t hw = (size_t)tr->h * tr->w;
    rl_unet_zero_grad(tr->net);
    int rc = rl_unet_backward(tr->net, tr->dlogits + (size_t)tr->lo * tr->enc.outputs * hw, err);
    if (tr->ranks == 1) return rc;
    rc = rl_dist_agree(rc, err);
    if (rc) return rc;
    return rl_dist_sum_f32(rl_unet_grads(tr->net), rl_unet_param_count(tr->net), err);
}
