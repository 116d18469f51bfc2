/* Internal to src/train: the trainer object, shared by the loop
 * (trainer.c), the batch sampler (sampler.c), the semi-supervised methods
 * (semi_*.c, behind semi.h) and the resumable state file (train_state.c).
 *
 * Memory: every buffer below is carved out of one arena, measured then
 * allocated once by trainer.c's layout() (as rl_unet's layout()); a
 * method's buffers come from the same arena through its layout hook. Only
 * objects with allocators of their own (optimizer, EMA teacher,
 * reference bank, matcher) are separate. */
#ifndef RL_TRAIN_TRAINER_IMPL_H
#define RL_TRAIN_TRAINER_IMPL_H

#include "encoding.h"
#include "reflabel/train.h"

/* Random streams, one per purpose, so that changing e.g. augmentation does
 * not change which samples are drawn. */
enum { STREAM_SAMPLING = 1, STREAM_AUGMENT = 2, STREAM_BANK = 3, STREAM_TEACHER = 4 };
/* The strong views' and the feature perturbation's streams are seeded from
 * (seed, STREAM_STRONG or STREAM_PERTURB + step): a pure function of the
 * step, as the sampler's epochs, so a resumed run needs no saved state. */
#define STREAM_STRONG (UINT64_C(1) << 62)
#define STREAM_PERTURB (UINT64_C(3) << 61)

/* The labeled or the unlabeled samples, walked in epochs (sampler.c). */
typedef struct rl_sample_pool {
    int *members;  /* (size) sample indices, in set order */
    int *order;    /* (size) the members in the order of epoch `epoch` */
    int size;
    int which;     /* 0 labeled, 1 unlabeled, 2 references (labeled, own walk) */
    int64_t epoch; /* of `order`; -1 before the first draw */
} rl_sample_pool;

struct rl_semi_method;

struct rl_trainer {
    rl_unet *net;
    rl_train_config cfg;
    const rl_sample_set *set;
    rl_encoding enc;
    rl_optimizer *opt;
    const struct rl_semi_method *method;
    void *semi;         /* the method's state; NULL for supervised */
    rl_arena arena;     /* every buffer below */
    /* Images per step, in the order of the batch: nl labeled, nu unlabeled
     * (weak views), nr references (refpl's ref_images), ns strong views of
     * each unlabeled image (view j of image i at s0 + j nu + i), nfp
     * feature-perturbed copies of the unlabeled images (at fp0); n in all,
     * of which the first `drawn` are samples and the rest derived. */
    int nl, nu, nr, ns, nfp, n, drawn;
    int s0, fp0;
    int ref_first, ref_count; /* the images whose features are references */
    int h, w;           /* the patch */
    /* teacher.c: the EMA teacher (NULL: the student predicts the weak views
     * itself), whose pass covers the images [t0, drawn) of the batch. */
    rl_unet *teacher;
    int t0;
    /* shard.c: the images [lo, hi) of the n that this rank's network pass
     * computes, of `ranks` ranks (lo 0, hi n in one process); the logits of
     * the whole batch, (n, K, h, w): the network's own in one process, else
     * gathered into gathered_logits; shard_counts (ranks), the gather's
     * counts. */
    int ranks, lo, hi;
    const float *logits;
    float *gathered_logits;
    size_t *shard_counts;
    rl_sample_pool labeled, unlabeled, references;
    int *batch_samples; /* (n) the sample of each image, for error messages */
    float *x;           /* (n, C, h, w) */
    int32_t *y;         /* (n, h, w); RL_IGNORE on the derived images */
    float *dlogits;     /* (n, K, h, w) */
    void *augment_scratch;
    rl_rng sampling_rng, augment_rng, bank_rng;
    int64_t steps_done;
    /* The unlabeled half's targets, (nu, h, w) each; NULL for supervised. */
    int32_t *pseudo;    /* pseudo-labels, RL_IGNORE where none */
    /* the labels before the confidence threshold (RL_IGNORE on padding):
     * their class shares are what drifts when the loop collapses, whereas
     * the kept pixels lean towards the easy classes by design of the
     * threshold. */
    int32_t *matched;
    int32_t *hidden;    /* hidden labels, RL_IGNORE where unknown */
    float *confidence;  /* margin (refpl) or decoded confidence (predpl) */
    uint8_t *valid;     /* pixel of an unlabeled image, not padding */
    rl_pl_stats stats;
    /* views.c: the weak view's decoded predictions and their confidence
     * (nu, h, w), the strong views' targets and, for refpl's consistency,
     * second targets (ns nu, h, w), their CutMix boxes (ns nu), one view's
     * images before mixing (nu, C, h, w), and the feature scale of the
     * perturbed copies (n, rl_unet_feature_scale_count). */
    int32_t *pred;
    float *pred_confidence;
    int32_t *consistency;  /* (nu, h, w) confident predictions, refpl's consistency */
    int32_t *strong_targets, *strong_consistency;
    rl_box *boxes;
    float *mix_scratch;
    float *feature_scale;
    /* Batch-norm running statistics and counters as they were before this
     * step's forward pass, to undo it when the batch turns out non-finite. */
    float *norm_stats_before;
    int64_t *counters_before;
    size_t norm_stats, norm_counters;
    int64_t skipped;    /* batches skipped as non-finite (skip_nonfinite) */
    char skip_reason[RL_ERROR_MSG_MAX];
};

/* ---- sampler.c ---- */
/* The pools' members, from the set (pools laid out by rl_sampler_layout). */
void rl_sampler_layout(rl_trainer *tr, rl_arena *a);
void rl_sampler_init(rl_trainer *tr);
/* Draws the images of step steps_done (the first tr->drawn of the batch)
 * into x and y, augmented. */
int rl_sampler_fill(rl_trainer *tr, rl_error *err);
/* From the unlabeled half of y: valid pixels and hidden labels. */
void rl_sampler_decode_unlabeled(rl_trainer *tr);

/* ---- views.c ---- */
void rl_views_layout(rl_trainer *tr, rl_arena *a);
/* The derived images of the step from the drawn ones: strong views
 * (photometric perturbation, then CutMix within each view) and perturbed
 * copies, and the feature scale of the perturbed copies. */
int rl_views_fill(rl_trainer *tr, rl_error *err);
/* Before the method's targets: the weak view's decoded predictions and
 * their confidence (tr->pred, tr->pred_confidence), which the prediction
 * methods' targets and refpl's consistency read, decoded once per step. */
void rl_views_predict(rl_trainer *tr);
/* After the targets: the accuracies of tr->pred and tr->matched in info. */
void rl_views_accuracy(const rl_trainer *tr, rl_train_step_info *info);
/* After the method's targets (tr->pseudo, from the weak view): the targets
 * of every view the loss acts on, and that loss, gradient with weight
 * lambda into dlogits (full batch; NULL: none). Returns the unlabeled loss
 * before lambda. */
double rl_views_loss(rl_trainer *tr, float *dlogits, const float *logits, double lambda);

/* ---- teacher.c ---- */
/* The EMA teacher of the configuration (rl_semi_config.teacher, or the
 * method's own): a copy of the student planned for images [t0, drawn) in
 * inference mode; tr->teacher stays NULL without one. After plan_views. */
int rl_teacher_create(rl_trainer *tr, rl_error *err);
void rl_teacher_free(rl_trainer *tr);
/* The teacher's pass on this step's images [t0, drawn); *nonfinite is set
 * where its output is not finite (as a method's after_forward). */
int rl_teacher_forward(rl_trainer *tr, const char **nonfinite, rl_error *err);
/* The teacher's logits of batch image `image` (t0 <= image < drawn), then
 * those of the following images. */
const float *rl_teacher_logits(const rl_trainer *tr, int image);
/* teacher = decay teacher + (1 - decay) student, after the update. */
void rl_teacher_update(rl_trainer *tr);

/* ---- shard.c ---- */
/* This rank's images of the batch; with batch norm, the network's
 * statistics reduced over the ranks. Before the network is planned. */
int rl_shard_plan(rl_trainer *tr, rl_error *err);
void rl_shard_layout(rl_trainer *tr, rl_arena *a);
/* This rank's share [lo, hi) of `items` things (images of the batch, query
 * images, ...), contiguous, the sizes within one of each other. */
void rl_shard_range(const rl_trainer *tr, int items, int *lo, int *hi);
/* Collective. full holds item_bytes for each of `items` things shared as
 * rl_shard_range shares them; this rank's are copied in from mine (NULL:
 * already there), then every rank gets every rank's. */
int rl_shard_gather(rl_trainer *tr, void *full, const void *mine, size_t item_bytes, int items,
                    rl_error *err);
/* Collective. The network's pass on this rank's images, then tr->logits of
 * the whole batch. */
int rl_shard_forward(rl_trainer *tr, rl_error *err);
/* Collective. The parameter gradients of the whole batch's dlogits: this
 * rank's images' rows backpropagated, then summed over the ranks. */
int rl_shard_backward(rl_trainer *tr, rl_error *err);

/* ---- trainer.c ---- */
int rl_trainer_all_finite(const float *x, size_t n);

#endif
