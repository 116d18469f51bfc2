/* reflabel/train.h - 2D training samples in memory, the supervised training
 * step, and slice-by-slice prediction of whole cases.
 *
 * At the call site:
 *
 *   rl_sample_set data;
 *   rl_sample_set_load(&data, &ds, ds.train, ds.num_train, keep_label, 2, &err);
 *   rl_trainer *tr;
 *   rl_trainer_create(&tr, net, &cfg, &data, &err);
 *   for (int s = 0; s < cfg.steps; s++) rl_trainer_step(tr, &info, &err);
 *   rl_trainer_free(tr);
 *
 * The trainer allocates every buffer in rl_trainer_create; a step calls no
 * allocator.
 */
#ifndef REFLABEL_TRAIN_H
#define REFLABEL_TRAIN_H

#include <stdint.h>

#include "reflabel/augment.h"
#include "reflabel/checkpoint.h"
#include "reflabel/core.h"
#include "reflabel/dataset.h"
#include "reflabel/features.h"
#include "reflabel/match.h"
#include "reflabel/optim.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The label of pixels that carry no supervision inside the engine: the
 * dataset's "ignore" label, and padding added around small slices. */
#define RL_IGNORE (-1)

/* Intensity normalisation applied to every case, per channel, before
 * slicing: z-score after clipping to these percentiles of the volume. */
#define RL_NORM_CLIP_LOW_PCT 0.5f
#define RL_NORM_CLIP_HIGH_PCT 99.5f

/* One 2D sample: a slice of a case, normalised, in memory. */
typedef struct rl_sample {
    int case_index;  /* index into the case list the set was loaded from */
    int slice_index; /* along the set's axis (0 for 2D cases) */
    int h, w;
    float *image;    /* (C, h, w) */
    int32_t *labels; /* (h, w), values in [0, K) or RL_IGNORE; NULL if unlabeled.
                        Multi-label sets: bit sets, bit c-1 = structure c */
    /* The label of a case whose label exists but was hidden by --labeled:
     * never trained on, only used to measure pseudo-label quality. */
    int32_t *hidden_labels;
} rl_sample;

typedef struct rl_sample_set {
    rl_sample *samples;
    int count;
    int labeled_count;
    int hidden_count; /* unlabeled samples with a hidden label */
    int channels;
    int num_classes;
    int axis;
    int num_cases;
    char (*case_ids)[RL_CASE_ID_MAX]; /* case_ids[case_index] */
    int multilabel; /* labels are bit sets of num_classes - 1 structures */
} rl_sample_set;

/* Output channels of a network trained on the set: one softmax logit per
 * class, or one sigmoid logit per structure (background is "no bit"). */
static inline int rl_sample_set_outputs(const rl_sample_set *set) {
    return set->multilabel ? set->num_classes - 1 : set->num_classes;
}

/* Loads every slice along axis (0 sagittal, 1 coronal, 2 axial; ignored for
 * 2D cases) of the given cases. keep_label[i] == 0 hides the label of case i
 * (NULL keeps every available label): it is kept as hidden_labels. Each channel of a case is normalised
 * over the whole case (rl_normalize_volume) before slicing, exactly as
 * rl_predict_case does. */
int rl_sample_set_load(rl_sample_set *set, const rl_dataset *ds, const rl_case *cases,
                       int num_cases, const uint8_t *keep_label, int axis, rl_error *err);
void rl_sample_set_free(rl_sample_set *set);

/* Gives every sample of case case_index the labels of a volume in that
 * case's geometry (nx * ny * nz int32, x fastest; values in [0, K) or
 * RL_IGNORE), as offline pseudo-label rounds do: the samples then train like
 * labeled ones. Their hidden labels stay for measurement. */
int rl_sample_set_set_case_labels(rl_sample_set *set, int case_index, int nx, int ny, int nz,
                                  const int32_t *labels, rl_error *err);

/* z-score of a whole volume after percentile clipping (the constants above). */
int rl_normalize_volume(rl_volume *vol, rl_error *err);

/* How the unlabeled images are used. */
typedef enum rl_method {
    RL_METHOD_SUPERVISED = 0, /* labeled images only */
    RL_METHOD_REFPL,          /* reference-guided pseudo-labels (the paper) */
    RL_METHOD_PREDPL,         /* pseudo-labels from the network's own predictions */
    RL_METHOD_MEANTEACHER,    /* EMA teacher, consistency loss */
    RL_METHOD_FIXMATCH,       /* weak view's confident predictions -> strong view */
    RL_METHOD_UNIMATCH        /* FixMatch with two strong views and feature dropout */
} rl_method;

/* Which network's pass on the weak views gives the unlabeled targets
 * (refpl's features, the weak view's predictions). */
typedef enum rl_teacher {
    RL_TEACHER_SELF = 0, /* the student's own forward pass, the weak view in its batch */
    RL_TEACHER_EMA       /* an exponential moving average of the student (mean teacher's) */
} rl_teacher;

const char *rl_method_name(rl_method method);
/* "supervised", "refpl", "predpl", "meanteacher", "fixmatch", "unimatch"
 * -> method; -1 otherwise. */
int rl_method_from_name(const char *name);

/* The semi-supervised part of a training step. Each step draws a labeled
 * and an unlabeled batch through the same network; the unlabeled loss is
 * weighted by lambda(t): 0 during the first warmup_fraction of the steps,
 * then a linear ramp over ramp_fraction of the steps up to lambda. */
typedef struct rl_semi_config {
    rl_method method;
    int unlabeled_batch;    /* unlabeled images per step (0: same as batch) */
    double warmup_fraction; /* supervised-only share of the steps */
    double ramp_fraction;   /* share of the steps over which lambda ramps up */
    float lambda;           /* weight of the unlabeled loss after the ramp */
    float pl_dice_weight;   /* pseudo-label loss = CE + pl_dice_weight * Dice */
    /* refpl: references are the labeled batch's per-pixel features, taken
     * after the forward pass (no gradient flows through them), matched as
     * offline pseudo-labels are (rl_reference_config: one set of names for
     * both). refs.min_margin: pixels whose margin is below become ignored. */
    rl_reference_config refs;
    int memory_batches;        /* M: the bank also keeps the last M-1 batches */
    /* refpl: only this share of a batch's unlabeled pixels, those of highest
     * margin, is kept (1: all; in (0, 1]) */
    double keep_fraction;
    /* refpl: > 0 calibrates the margin threshold in every step. Each labeled
     * image of the batch is matched against the batch's other labeled
     * images (those of other samples); the threshold is the smallest margin
     * at which those matches reach this accuracy
     * (rl_pseudolabel_margin_for_accuracy), and refs.min_margin, if larger,
     * still applies. 0: off. Multi-class data; needs 2 labeled images per
     * step and 2 labeled samples. */
    double margin_accuracy;
    float min_confidence; /* predpl: pixels whose softmax maximum is below are ignored */
    /* RL_TEACHER_EMA: a second network, teacher = ema_decay teacher +
     * (1 - ema_decay) student after every update (parameters and batch-norm
     * statistics), starting as a copy of the student, predicts the weak views
     * (and, for refpl, gives the features of the references and the queries)
     * in inference mode, with no gradient. meanteacher always has one. Not
     * for supervised training. */
    rl_teacher teacher;
    float ema_decay;      /* meanteacher, RL_TEACHER_EMA: the teacher's decay */
    /* Weak and strong views (docs/TRAINING.md, "Weak and strong views").
     * The images drawn are the weak views (the augmentation above); the
     * unlabeled targets always come from the weak view's forward pass, and
     * never receive a gradient once strong views exist. With S =
     * strong_views > 0, the unlabeled loss acts on S strong views of each
     * unlabeled image instead (rl_strong_config: photometric perturbation,
     * and CutMix with the next unlabeled image of the batch, whose targets
     * are mixed with the same box). -1: the method's own count (fixmatch 1,
     * unimatch 2, the others 0). Not for meanteacher. */
    int strong_views;
    rl_strong_config strong;
    /* fixmatch, unimatch and refpl's consistency: a weak-view pixel is a
     * target where its confidence reaches this (FixMatch's 0.95). */
    float strong_confidence;
    /* refpl: in parallel to the reference pseudo-labels, the weak view's
     * confident predictions are targets of the same view(s) with this
     * weight (0: off). */
    float consistency_weight;
    /* refpl: > 0 draws this many labeled images per step apart from the
     * labeled batch (their own walk through the labeled samples), passes
     * them through the same forward pass with no loss, and takes the
     * references (and the margin calibration) from them alone; 0: the
     * references are the labeled batch. */
    int ref_images;
    /* unimatch: each unlabeled image also goes through the network once
     * more with Dropout2d of this rate on every encoder feature the decoder
     * reads (rl_unet_set_feature_scale), supervised by the weak targets. */
    float feature_dropout;
} rl_semi_config;

typedef struct rl_train_config {
    int64_t steps;
    int batch;
    int patch_h, patch_w;   /* multiples of 2^depth; 0 = from the data (rl_train_auto_patch) */
    rl_optim_config optim;
    rl_lr_schedule schedule; /* total_steps is set from steps */
    double clip_norm;       /* <= 0: no clipping */
    float dice_weight;      /* loss = CE + dice_weight * soft Dice (0: CE only) */
    int augment;            /* 0: no augmentation */
    rl_augment_config augment_config;
    uint64_t seed;
    rl_semi_config semi;
    /* 0: a batch whose network output, loss or gradient is not finite stops
     * training with RL_ENONFINITE. 1: that step is counted as done without
     * an update (see rl_trainer_step) and training goes on. */
    int skip_nonfinite;
} rl_train_config;

/* AdamW lr 1e-3, weight decay 1e-4, poly schedule with 5% warm-up, clip 12,
 * Dice weight 1, augmentation on with rl_augment_default(), seed 0, method
 * supervised; the semi-supervised fields hold the documented defaults of
 * docs/TRAINING.md, used when semi.method is set to another method. */
rl_train_config rl_train_default_config(int64_t steps, int batch);

/* The smallest patch that holds the largest sample, rounded up to a multiple
 * of 2^depth and capped at max_edge (larger samples are then cropped). */
void rl_train_auto_patch(const rl_sample_set *set, int depth, int max_edge, int *patch_h,
                         int *patch_w);

typedef struct rl_train_step_info {
    int64_t step; /* steps done, this one included */
    double loss, ce, dice, lr, grad_norm;
    /* Semi-supervised methods (0 / NaN for supervised): */
    double unsup_loss;    /* the unlabeled loss before weighting */
    double lambda;        /* its weight at this step */
    double pl_kept;       /* share of unlabeled pixels that got a pseudo-label */
    double pl_accuracy;   /* pixel accuracy against hidden labels; NaN if none */
    double pl_drift;      /* total variation distance between the pseudo-label
                             class shares and the labeled images' shares */
    double pl_min_margin; /* refpl: the margin threshold of this step (min_margin,
                             or the calibrated one); NaN for other methods */
    /* Against hidden labels, over every unlabeled pixel (NaN if none): the
     * method's labels before any threshold (refpl: the matches), and the
     * weak view's own predictions. */
    double matched_accuracy, pred_accuracy;
    const double *pl_dice;       /* (K) Dice per class vs hidden labels; NaN if none */
    const double *pl_share;      /* (K) class shares of this step's pseudo-labels */
    const double *labeled_share; /* (K) class shares of the labeled images */
    /* skip_nonfinite: this step's batch was skipped (no update), why (one
     * line naming the step and the cases of the batch; valid until the next
     * step), and the batches skipped so far, this one included. */
    int skipped;
    const char *skip_reason;
    int64_t skipped_total;
} rl_train_step_info;

typedef struct rl_trainer rl_trainer;

/* Why refpl's margin calibration (rl_semi_config.margin_accuracy) cannot run
 * on `set` with `batch` labeled images per step, as a phrase for a message,
 * or NULL when it can: it needs class maps, not bit sets, and two labeled
 * samples, two of them in each step, to match against each other. */
const char *rl_margin_calibration_obstacle(const rl_sample_set *set, int batch);

/* net must be configured for set->channels inputs and set->num_classes
 * outputs; the set needs at least one labeled sample. Plans the network
 * for (batch, patch_h, patch_w). */
int rl_trainer_create(rl_trainer **out, rl_unet *net, const rl_train_config *cfg,
                      const rl_sample_set *set, rl_error *err);
void rl_trainer_free(rl_trainer *tr);
/* One step: sample a batch, augment, forward, loss, backward, clip, update.
 * A non-finite network output, loss or gradient is detected before the
 * update and leaves the network, its batch-norm running statistics and the
 * optimizer as they were. Without cfg.skip_nonfinite it is an RL_ENONFINITE
 * error naming the step and the cases of the batch (the step is not
 * counted). With it, the step counts as done without an update, info says
 * so, and the next step draws the next batch; the random streams and, for
 * refpl, the reference bank (which may already hold the skipped batch's
 * finite references) move on as in any step. An update that makes a weight
 * non-finite (a learning rate far too large) is always an error: the weights
 * in memory are then unusable, and the caller should keep its last saved
 * state. */
int rl_trainer_step(rl_trainer *tr, rl_train_step_info *info, rl_error *err);
int64_t rl_trainer_steps_done(const rl_trainer *tr);

/* ---- resumable state ------------------------------------------------------ *
 * Everything a step depends on besides the constant inputs (config, sample
 * set, network architecture): the network's tensors (weights, batch-norm
 * statistics and counters), the optimizer state and step count, the step
 * counter (which is also the schedule position), every random stream, the
 * skipped-batch count, the mean-teacher weights and the refpl reference
 * bank. Restoring it into a trainer created with the same inputs makes every
 * later step bit for bit the same as in the trainer that saved it (same
 * thread count). The file layout is in docs/TRAINING.md, "Resuming and
 * interruptions".
 *
 * rl_trainer_save writes one safetensors file atomically, with the caller's
 * extra metadata (e.g. the command line). */
#define RL_TRAIN_STATE_FORMAT "train-state-v1"
int rl_trainer_save(const rl_trainer *tr, const char *path, const rl_kv *extra, int extra_count,
                    rl_error *err);
/* Restores a file read with rl_safetensors_read (path names it in errors).
 * Everything is checked before anything is changed: the format, a trainer
 * signature (method, batch sizes, patch, steps, optimizer, sample counts,
 * refpl feature source, bank size), and every tensor's name, dtype and
 * shape; on failure the trainer and its network are untouched. */
int rl_trainer_restore(rl_trainer *tr, const rl_safetensors *st, const char *path,
                       rl_error *err);

/* The last step's batch as the network saw it, for inspection and tests;
 * the pointers stay valid until the next step or rl_trainer_free. */
typedef struct rl_trainer_batch {
    /* The images of the forward pass, in this order: labeled, unlabeled
     * (weak views), references (refpl's ref_images), strong views (view j
     * of unlabeled image i at j * unlabeled + i), feature-perturbed copies
     * of the unlabeled images (unimatch). */
    int labeled, unlabeled, references, strong_views, perturbed;
    int images;             /* all of them */
    int channels, h, w;     /* (h, w): the training patch */
    const float *x;         /* (images, channels, h, w) network input */
    /* (labeled + unlabeled + references, h, w): labels in [0, K) or
     * RL_IGNORE for the labeled and reference images (the unlabeled ones'
     * hold internal codes) */
    const int32_t *labels;
    /* (strong_views * unlabeled) CutMix boxes (h == 0: none), the strong
     * views' targets (strong_views * unlabeled, h, w), and the gradient of
     * the loss with respect to every image's logits (images, outputs, h, w) */
    const rl_box *boxes;
    const int32_t *strong_targets;
    const float *dlogits;
    /* (unlabeled, h, w) this step's pseudo-labels (for meanteacher, the
     * teacher's argmax) in [0, K) or RL_IGNORE; NULL for supervised */
    const int32_t *pseudo;
} rl_trainer_batch;

void rl_trainer_last_batch(const rl_trainer *tr, rl_trainer_batch *out);

/* One multi-label pixel from its S logits z[0], z[stride], ...: bit c-1 is
 * set where structure c's sigmoid exceeds 0.5 (logit > 0); *confidence is
 * the sigmoid of the least certain structure, sigmoid(min_c |z_c|). */
int32_t rl_bitset_from_logits(const float *z, int structures, size_t stride, float *confidence);

/* Segments a case slice by slice along axis: images are the case's channel
 * volumes (same shape; copied and normalised inside), labels_out receives
 * nx*ny*nz class indices, confidence_out (optional) the softmax probability
 * of the chosen class. Each slice is zero-padded to a multiple of 2^depth. */
int rl_predict_case(rl_unet *net, const rl_volume *images, int channels, int axis,
                    int32_t *labels_out, float *confidence_out, rl_error *err);
/* The same for a multi-label network (one sigmoid output per structure):
 * labels_out receives bit sets (bit c-1 where structure c's probability
 * exceeds 0.5), confidence_out the probability of the decision of the least
 * certain structure at each pixel. */
int rl_predict_case_multilabel(rl_unet *net, const rl_volume *images, int channels, int axis,
                               int32_t *labels_out, float *confidence_out, rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
