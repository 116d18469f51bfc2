/* reflabel/metrics.h - segmentation metrics: Dice, IoU, HD95, ASSD.
 *
 * Label maps are int32 volumes (nx, ny, nz), x fastest (index = x + nx*(y +
 * ny*z)); a 2D image is nz = 1. spacing[3] is the voxel size in mm along
 * x, y, z, so distances come out in mm.
 *
 * The definitions follow MONAI (DiceMetric, HausdorffDistanceMetric with
 * percentile=95, SurfaceDistanceMetric with symmetric=True); docs/METRICS.md
 * spells them out, with the rules for empty masks:
 *   - surface of a mask M = M XOR erode(M), face-connected structuring
 *     element, voxels outside the volume count as background;
 *   - d(A->B) = for each surface voxel of A, the Euclidean distance (with
 *     spacing) to the nearest surface voxel of B;
 *   - HD95 = max(P95(d(A->B)), P95(d(B->A))), P95 = numpy's default
 *     linear-interpolation percentile;
 *   - ASSD = mean of d(A->B) and d(B->A) concatenated.
 */
#ifndef REFLABEL_METRICS_H
#define REFLABEL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "reflabel/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pass as ignore_label when no value is to be ignored. */
#define RL_METRICS_NO_IGNORE INT32_MIN

/* rl_case_metrics.flags: which masks were empty (after removing ignored
 * voxels). With exactly one of the two empty, HD95 and ASSD are NaN. */
enum {
    RL_METRIC_GT_EMPTY = 1u << 0,
    RL_METRIC_PRED_EMPTY = 1u << 1
};

/* One class of one case. */
typedef struct rl_case_metrics {
    double dice;     /* 2|P&G| / (|P| + |G|); 1 when both empty */
    double iou;      /* |P&G| / |P or G|; 1 when both empty */
    double hd95;     /* mm; 0 when both empty, NaN when exactly one is */
    double assd;     /* mm; 0 when both empty, NaN when exactly one is */
    int64_t gt_voxels;
    int64_t pred_voxels;
    int64_t intersection_voxels;
    unsigned flags;  /* RL_METRIC_GT_EMPTY | RL_METRIC_PRED_EMPTY */
} rl_case_metrics;

/* Metrics of classes 0..num_classes-1 into out_per_class[num_classes].
 * Voxels where gt or pred equals ignore_label (RL_METRICS_NO_IGNORE: none)
 * belong to no class in either map. Any other label outside
 * [0, num_classes) is an error (RL_ERANGE), as are non-positive sizes or
 * non-finite / non-positive spacing (RL_EINVAL). pred and gt have the same
 * shape by construction of the call; the caller checks the file shapes. */
int rl_compute_metrics(const int32_t *pred, const int32_t *gt, int nx, int ny, int nz,
                       const double spacing[3], int num_classes, int32_t ignore_label,
                       rl_case_metrics *out_per_class, rl_error *err);

/* Mean and (population) standard deviation of one metric over the cases
 * where it is finite; nan_count counts the cases where it was NaN. With
 * count == 0, mean and std are NaN. */
typedef struct rl_metric_stats {
    double mean;
    double std;
    int count;
    int nan_count;
} rl_metric_stats;

typedef struct rl_class_summary {
    rl_metric_stats dice, iou, hd95, assd;
    int cases;
    int gt_empty_cases;   /* gt empty, pred not */
    int pred_empty_cases; /* pred empty, gt not */
    int both_empty_cases;
} rl_class_summary;

/* cases: num_cases x num_classes, case-major (cases[i*num_classes + c]).
 * Fills per_class[num_classes] and foreground: the mean over classes
 * 1..num_classes-1 of the per-class means (classes whose count is 0 are
 * skipped; foreground.*.count is the number of classes averaged, std is the
 * spread across those class means). */
int rl_aggregate_metrics(const rl_case_metrics *cases, int num_cases, int num_classes,
                         rl_class_summary *per_class, rl_class_summary *foreground,
                         rl_error *err);

/* Exact Euclidean distance transform: dist[i] = distance in mm from voxel i
 * to the nearest voxel with feature[i] != 0, +INFINITY when there is none.
 * Separable lower-envelope algorithm (Felzenszwalb & Huttenlocher), O(voxels),
 * in double. dist has nx*ny*nz entries. */
int rl_distance_transform(const uint8_t *feature, int nx, int ny, int nz,
                          const double spacing[3], double *dist, rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
