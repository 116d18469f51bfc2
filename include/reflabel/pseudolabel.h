/* reflabel/pseudolabel.h - offline reference-guided pseudo-labels (Seibold et
 * al., AAAI 2022): every pixel of an unlabeled case takes the label of its
 * most similar labeled reference pixel, compared in the feature space of a
 * trained U-Net (include/reflabel/features.h, include/reflabel/match.h).
 *
 * At the call site (src/cli/cmd_pseudolabel.c):
 *
 *   rl_pseudolabeler *pl;
 *   rl_pseudolabeler_create(&pl, net, &cfg, reference_slices, max_slice_pixels, &err);
 *   for each reference case:  rl_pseudolabeler_add_reference(pl, images, C, labels, &err);
 *   for each query case:      rl_pseudolabeler_label_case(pl, images, C, labels, margin, &err);
 *   rl_pseudolabeler_free(pl);
 *
 * Cases are handled exactly as rl_predict_case handles them: every channel is
 * normalised over the whole case (rl_normalize_volume), the case is cut into
 * 2D slices along the configured axis (2D cases: the one slice), each slice
 * is zero-padded to a multiple of 2^depth, run through the network alone
 * (batch 1, inference mode), and its features are cropped back to the slice.
 * Every reference slice is one batch of the bank (so the sampling caps of
 * rl_bank_config apply per reference slice, and a "reference image" of the
 * per-image vote is a reference slice).
 */
#ifndef REFLABEL_PSEUDOLABEL_H
#define REFLABEL_PSEUDOLABEL_H

#include <stdint.h>

#include "reflabel/core.h"
#include "reflabel/dataset.h"
#include "reflabel/features.h"
#include "reflabel/image.h"
#include "reflabel/match.h"
#include "reflabel/unet.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which training cases of ds keep their labels, the rule shared by
 * `reflabel train --labeled` and `reflabel pseudolabel --labeled`:
 * spec NULL keeps every available label; otherwise rl_select_labeled(spec,
 * mode, seed) picks among the cases that have a label file, in id order.
 * keep[i] (ds->num_train entries) = 1 for a case whose label is kept, 0 for
 * one that has none or whose label is hidden. Fails when ds has no labeled
 * training case. */
int rl_choose_labeled(const rl_dataset *ds, const char *spec, rl_select_mode mode,
                      uint64_t seed, uint8_t *keep, rl_error *err);

/* How reference pseudo-labels are made: which feature map is compared,
 * which labeled pixels become references, and how a query pixel picks its
 * label. One config for both uses, so that an option means the same in
 * each: refpl online (rl_semi_config.refs, references from the labeled
 * images of each step) and offline (rl_pseudolabel_config.refs, references
 * from every slice of the labeled cases; `pseudolabel` and `train
 * --rounds`). The sampling caps apply per labeled image of a step online,
 * per reference slice offline. */
typedef struct rl_reference_config {
    rl_feature_source features; /* RL_FEATURES_LAST (the paper's) or hypercolumn */
    rl_similarity similarity;   /* RL_SIM_COSINE (the paper's) or dot */
    rl_bank_sampling sampling;  /* which labeled pixels become references */
    int per_class_cap;          /* RL_SAMPLE_PER_CLASS: pixels per label */
    int sample_count;           /* RL_SAMPLE_PROPORTIONAL: pixels in all */
    int class_floor;            /* RL_SAMPLE_PROPORTIONAL: floor per label */
    int top_k;                  /* 1: the single best reference (the paper's rule);
                                   > 1: similarity-weighted vote (pooled only) */
    rl_match_mode match_mode;   /* pooled, or best per reference image then a vote */
    float min_margin;           /* pixels whose margin is below get no label */
} rl_reference_config;

/* The bank and matcher settings that the reference config decides; the
 * caller fills in the rest (sizes, memory, multi-label, threading). */
rl_bank_config rl_reference_bank_config(const rl_reference_config *refs, int dim,
                                        int num_labels);
rl_match_config rl_reference_match_config(const rl_reference_config *refs);

typedef struct rl_pseudolabel_config {
    rl_reference_config refs;   /* refs.min_margin is applied by the caller
                                   (rl_pseudolabel_apply_min_margin) */
    int axis;                   /* slicing axis of 3D cases (0, 1, 2) */
    int ignore_label;           /* reference label value that carries no
                                   supervision (the dataset's "ignore"); -1: none */
    uint64_t seed;              /* sampling of the bank */
    int multilabel;             /* 1: a multi-label network (one output per
                                   structure); labels are bit sets, each
                                   pixel copies its match's whole bit set */
} rl_pseudolabel_config;

/* The paper's rule: last-decoder features, cosine, every reference pixel,
 * top-1; axis 2, no ignore label, seed 0; per-class 1024, proportional
 * 4096 pixels with a floor of 64. */
rl_pseudolabel_config rl_pseudolabel_default_config(void);

typedef struct rl_pseudolabeler rl_pseudolabeler;

/* net: a network for the cases' channels and classes (not owned; it is
 * re-planned for each slice shape). reference_slices: the number of
 * reference slices that will be added (the bank holds all of them);
 * max_slice_pixels: the largest h * w among them. Allocates the bank and the
 * matcher; the bank needs reference_slices x (vectors per slice) x D floats
 * (rl_pseudolabeler_bank_bytes). */
int rl_pseudolabeler_create(rl_pseudolabeler **out, rl_unet *net,
                            const rl_pseudolabel_config *cfg, int reference_slices,
                            int max_slice_pixels, rl_error *err);
void rl_pseudolabeler_free(rl_pseudolabeler *pl);

/* Adds every slice of a labeled case: images[channels] volumes of one shape,
 * labels (nx*ny*nz, x fastest) with values in [0, num_classes) or the
 * configured ignore label (multi-label: bit sets of the structures). */
int rl_pseudolabeler_add_reference(rl_pseudolabeler *pl, const rl_volume *images, int channels,
                                   const int32_t *labels, rl_error *err);

/* Pseudo-labels a case: labels_out (nx*ny*nz) receives classes in
 * [0, num_classes) (multi-label: the best match's bit set); margin_out
 * (optional, same size) the matcher's margin: best similarity minus the
 * best similarity of any other label, or other bit set (cosine, top-1: in
 * [0, 2]; a vote can make it negative; +INFINITY when the bank holds a
 * single label). */
int rl_pseudolabeler_label_case(rl_pseudolabeler *pl, const rl_volume *images, int channels,
                                int32_t *labels_out, float *margin_out, rl_error *err);

/* Collective under MPI (reflabel/dist.h): every rank's bank becomes a copy
 * of root's, so that the references are read and run through the network
 * once, on root, and every rank matches against the same vectors bit for
 * bit. Every rank's pl must have been created with the same network, config
 * and sizes; root's has had all its references added, the others none (they
 * can add none afterwards). The bank travels as one buffer of its exported
 * arrays (rl_bank_export / rl_bank_import, checked before it is applied).
 * Every rank returns the same result: a failure on any rank (memory, a
 * damaged buffer) is every rank's. One process: does nothing. */
int rl_pseudolabeler_broadcast_bank(rl_pseudolabeler *pl, int root, rl_error *err);

/* References held, and the bytes of bank memory allocated for them. */
int rl_pseudolabeler_references(const rl_pseudolabeler *pl);
size_t rl_pseudolabeler_bank_bytes(const rl_pseudolabeler *pl);

/* Pixels with margin < min_margin get ignore_value (nnU-Net's ignore label,
 * the highest value). n values; returns how many were changed. */
int64_t rl_pseudolabel_apply_min_margin(int32_t *labels, const float *margin, int64_t n,
                                        float min_margin, int32_t ignore_value);

/* Keeps the ceil(fraction * m) labels of highest confidence among the m
 * pixels whose label is not ignore_value, and gives the others ignore_value:
 * a threshold relative to the batch, so that it means the same whatever the
 * scale of the confidence. All labels are ranked together; ties at the cut
 * are all kept. fraction >= 1 changes nothing; fraction must be > 0.
 * scratch holds n floats. Returns how many labels were changed. */
int64_t rl_pseudolabel_keep_fraction(int32_t *labels, const float *confidence, int64_t n,
                                     double fraction, int32_t ignore_value, float *scratch);

/* The margin threshold at which matches of known label reach a target
 * accuracy: the smallest t such that, of the pixels with margin >= t, at
 * least the share `accuracy` was matched to its right label. right[] holds
 * the margins of the n_right rightly matched pixels, wrong[] those of the
 * n_wrong others; both are sorted in place (descending). Returns -INFINITY
 * when all pixels together reach the accuracy (keep every pixel),
 * +INFINITY when no threshold does (keep none), NAN when there are no
 * pixels. Margins must not be NaN. Used by refpl's --margin-accuracy: the
 * labeled half of a batch is matched against itself, image against the
 * other images, and the threshold found there is applied to the unlabeled
 * half (docs/TRAINING.md). */
float rl_pseudolabel_margin_for_accuracy(float *right, int64_t n_right, float *wrong,
                                         int64_t n_wrong, double accuracy);

/* Agreement of pseudo-labels with the labels they stand in for: a confusion
 * count over voxels whose reference label is not ignore_label (-1: none) and
 * whose prediction is not pred_ignore (-1: none; the ignored predictions are
 * counted in `abstained`). */
typedef struct rl_label_agreement {
    int num_classes;
    int64_t voxels;    /* compared voxels */
    int64_t correct;
    int64_t abstained; /* voxels whose prediction was pred_ignore */
    int64_t *pred;     /* per class: predicted voxels */
    int64_t *truth;    /* per class: reference voxels */
    int64_t *both;     /* per class: voxels where both say the class */
} rl_label_agreement;

int rl_label_agreement_init(rl_label_agreement *a, int num_classes, rl_error *err);
void rl_label_agreement_free(rl_label_agreement *a);
/* Adds n voxels; labels outside [0, num_classes) (other than the ignored
 * values) are an RL_ERANGE error. */
int rl_label_agreement_add(rl_label_agreement *a, const int32_t *pred, const int32_t *truth,
                           int64_t n, int32_t truth_ignore, int32_t pred_ignore, rl_error *err);
/* The same for multi-label bit sets (num_classes - 1 structures): index 0
 * of pred/truth/both counts voxels without any structure, index c >= 1
 * voxels of structure c; correct counts voxels whose whole bit set agrees.
 * A value with a bit beyond the structures is an RL_ERANGE error. */
int rl_label_agreement_add_bitsets(rl_label_agreement *a, const int32_t *pred,
                                   const int32_t *truth, int64_t n, rl_error *err);
/* correct / voxels (NaN when nothing was compared). */
double rl_label_agreement_accuracy(const rl_label_agreement *a);
/* 2|P&T| / (|P| + |T|) of class c; 1 when both are empty. */
double rl_label_agreement_dice(const rl_label_agreement *a, int c);

#ifdef __cplusplus
}
#endif
#endif
