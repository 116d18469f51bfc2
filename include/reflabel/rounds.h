/* reflabel/rounds.h - offline reference pseudo-labels of whole cases of a
 * dataset, as `reflabel pseudolabel` makes them and as `reflabel train
 * --rounds` makes them between rounds: one implementation for both.
 *
 * A trained network and the reference config (rl_pseudolabel_config) make
 * an rl_pseudolabeler; every reference case is added (its images and label
 * read from the dataset); every query case is labelled, the pixels whose
 * margin is below the minimum abstain, and the result is compared with the
 * case's hidden label when it has one.
 *
 * At the call site (src/cli/cmd_pseudolabel.c):
 *
 *   rl_offline_measure_references(refs, n, axis, &slices, &max_pixels, &err);
 *   rl_pseudolabeler_create(&pl, net, &cfg, slices, max_pixels, &err);
 *   for each reference:  rl_offline_add_reference(pl, ds, c, &err);
 *   rl_offline_stats_init(&stats, ds->num_classes, &err);
 *   for each query:      rl_offline_label_case(pl, ds, c, min_margin, &stats, &oc, &err);
 *                        ... write oc.labels, oc.margin like oc.images[0] ...
 *                        rl_offline_case_free(ds, &oc);
 *
 * and (src/cli/cmd_train.c, between rounds) all of it in one call:
 *
 *   rl_rounds_pseudolabel(net, &cfg, ds, keep, &set, &stats, &err);
 */
#ifndef REFLABEL_ROUNDS_H
#define REFLABEL_ROUNDS_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"
#include "reflabel/dataset.h"
#include "reflabel/image.h"
#include "reflabel/pseudolabel.h"
#include "reflabel/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the pseudo-labels of a set of query cases amount to. */
typedef struct rl_offline_stats {
    int references;            /* reference slices in the bank */
    int cases;                 /* query cases labelled */
    int scored_cases;          /* of them, those with a hidden label */
    int64_t voxels;            /* voxels labelled */
    int64_t abstained;         /* of them, below the minimum margin */
    rl_label_agreement all;    /* every pseudo-label vs the hidden labels */
    rl_label_agreement kept;   /* the pseudo-labels kept above the minimum margin vs the
                                  hidden labels; the others count as abstained */
} rl_offline_stats;

int rl_offline_stats_init(rl_offline_stats *s, int num_classes, rl_error *err);
void rl_offline_stats_free(rl_offline_stats *s);

/* Collective under MPI (reflabel/dist.h), in place: every count of s
 * becomes its sum over the ranks, so that ranks that labelled disjoint
 * shares of the query cases hold the counts of all of them (integers: the
 * same as one process labelling them all, in any order). `references`
 * describes the shared bank, not a share, and is left as it is. Every rank
 * must call it with stats of the same num_classes. One process: does
 * nothing. */
int rl_offline_stats_sum(rl_offline_stats *s, rl_error *err);

/* The share of the voxels kept above the minimum margin (NaN: none labelled). */
double rl_offline_stats_kept(const rl_offline_stats *s);

/* Reference slices along axis (2D cases: one each) and the largest slice's
 * pixels of the given labeled cases, read from their label files: the
 * sizes rl_pseudolabeler_create needs. */
int rl_offline_measure_references(const rl_case *const *cases, int count, int axis, int *slices,
                                  int *max_pixels, rl_error *err);

/* Adds a labeled case of ds (its images and its label) to the bank. */
int rl_offline_add_reference(rl_pseudolabeler *pl, const rl_dataset *ds, const rl_case *c,
                             rl_error *err);

/* One query case, loaded and pseudo-labelled. */
typedef struct rl_offline_case {
    rl_volume *images; /* (ds->num_channels) the case's images; images[0] gives the
                          geometry for writing its labels */
    int32_t *labels;   /* (n) classes; ds->num_classes where the margin fell below the
                          minimum (multi-class only); multi-label: bit sets */
    float *margin;     /* (n) the matcher's margin */
    size_t n;
} rl_offline_case;

/* Loads query case c of ds and pseudo-labels it. Multi-class: voxels whose
 * margin is below min_margin get ds->num_classes (-INFINITY keeps all; a
 * bit set has no spare value, so multi-label labels keep every voxel).
 * With a hidden label, stats->all counts the labels before min_margin,
 * stats->kept after it. On success out holds the case until
 * rl_offline_case_free. */
int rl_offline_label_case(rl_pseudolabeler *pl, const rl_dataset *ds, const rl_case *c,
                          float min_margin, rl_offline_stats *stats, rl_offline_case *out,
                          rl_error *err);
void rl_offline_case_free(const rl_dataset *ds, rl_offline_case *oc);

/* The pseudo-labels between two rounds of training: the training cases of
 * ds with keep[i] set and a label are the references (each slice of set
 * one reference slice); every other training case is labelled with cfg
 * (voxels below cfg->refs.min_margin become RL_IGNORE) and its samples in
 * set take those labels (rl_sample_set_set_case_labels), so that they train
 * as labeled in the next round. stats must be initialised for
 * ds->num_classes; it receives the counts of this round. */
int rl_rounds_pseudolabel(rl_unet *net, const rl_pseudolabel_config *cfg, const rl_dataset *ds,
                          const uint8_t *keep, rl_sample_set *set, rl_offline_stats *stats,
                          rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
