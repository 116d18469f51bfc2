/* Dice, IoU, HD95 and ASSD per class, with MONAI's definitions
 * (docs/METRICS.md), and their aggregation over cases.
 *
 * The surface distances of a class only involve voxels inside the bounding
 * box of pred | gt for that class, so each class works on that crop: every
 * surface voxel lies in it, the nearest surface voxel of the other mask
 * lies in it, and the erosion sees background outside it exactly as it
 * would in the full volume. The result is identical to the uncropped
 * computation and a small organ in a large volume costs little.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/metrics.h"

typedef struct box3 {
    int lo[3], hi[3]; /* inclusive; lo > hi when empty */
} box3;

static void box_reset(box3 *b) {
    for (int a = 0; a < 3; a++) {
        b->lo[a] = INT32_MAX;
        b->hi[a] = -1;
    }
}

static void box_add(box3 *b, int x, int y, int z) {
    const int p[3] = {x, y, z};
    for (int a = 0; a < 3; a++) {
        if (p[a] < b->lo[a]) b->lo[a] = p[a];
        if (p[a] > b->hi[a]) b->hi[a] = p[a];
    }
}

static size_t box_voxels(const box3 *b) {
    size_t n = 1;
    for (int a = 0; a < 3; a++) n *= (size_t)(b->hi[a] - b->lo[a] + 1);
    return n;
}

/* Per-class voxel counts and bounding boxes of pred | gt, in one sweep. */
typedef struct class_census {
    int64_t *gt, *pred, *both;
    box3 *box;
} class_census;

static int is_ignored(int32_t p, int32_t g, int32_t ignore_label) {
    return ignore_label != RL_METRICS_NO_IGNORE && (p == ignore_label || g == ignore_label);
}

/* Rejects labels outside [0, K) that are not the ignore label. */
static int check_labels(const int32_t *labels, size_t n, int num_classes, int32_t ignore_label,
                        const char *which, rl_error *err) {
    for (size_t i = 0; i < n; i++) {
        const int32_t v = labels[i];
        if ((v < 0 || v >= num_classes) &&
            (ignore_label == RL_METRICS_NO_IGNORE || v != ignore_label))
            return rl_error_set(err, RL_ERANGE,
                                "metrics: %s label %d at voxel %zu is outside [0, %d)%s", which,
                                (int)v, i, num_classes,
                                ignore_label == RL_METRICS_NO_IGNORE ? ""
                                                                     : " and not the ignore label");
    }
    return 0;
}

static void take_census(const int32_t *pred, const int32_t *gt, int nx, int ny, int nz,
                        int32_t ignore_label, class_census *cs) {
    size_t i = 0;
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++, i++) {
                const int32_t p = pred[i], g = gt[i];
                if (is_ignored(p, g, ignore_label)) continue;
                cs->pred[p]++;
                cs->gt[g]++;
                box_add(&cs->box[p], x, y, z);
                if (p == g)
                    cs->both[p]++;
                else
                    box_add(&cs->box[g], x, y, z);
            }
}

/* Scratch for the surface distances of one class, sized for the largest
 * crop of any class. */
typedef struct surface_work {
    uint8_t *mask_pred, *mask_gt, *edge_pred, *edge_gt;
    double *dist;              /* distance transform over the crop */
    double *d_pred, *d_gt;     /* directed distances pred->gt, gt->pred */
} surface_work;

static void surface_work_free(surface_work *w) {
    free(w->mask_pred);
    free(w->mask_gt);
    free(w->edge_pred);
    free(w->edge_gt);
    free(w->dist);
    free(w->d_pred);
    free(w->d_gt);
}

static int surface_work_init(surface_work *w, size_t voxels) {
    memset(w, 0, sizeof *w);
    w->mask_pred = malloc(voxels);
    w->mask_gt = malloc(voxels);
    w->edge_pred = malloc(voxels);
    w->edge_gt = malloc(voxels);
    w->dist = malloc(sizeof(double) * voxels);
    w->d_pred = malloc(sizeof(double) * voxels);
    w->d_gt = malloc(sizeof(double) * voxels);
    if (w->mask_pred && w->mask_gt && w->edge_pred && w->edge_gt && w->dist && w->d_pred &&
        w->d_gt)
        return 0;
    surface_work_free(w);
    return RL_ENOMEM;
}

/* edge = mask AND NOT erode(mask): a mask voxel is on the surface when one
 * of its face neighbours is background or outside the crop (which is
 * background: the crop holds all of the mask). z neighbours exist only in a
 * 3D volume, so a 2D image is eroded with the 2D cross as scipy does. */
static void mask_edges(const uint8_t *mask, uint8_t *edge, int cx, int cy, int cz, int volume_3d) {
    const size_t plane = (size_t)cx * (size_t)cy;
    size_t i = 0;
    for (int z = 0; z < cz; z++)
        for (int y = 0; y < cy; y++)
            for (int x = 0; x < cx; x++, i++) {
                if (!mask[i]) {
                    edge[i] = 0;
                    continue;
                }
                int interior = x > 0 && mask[i - 1] && x + 1 < cx && mask[i + 1] && y > 0 &&
                               mask[i - (size_t)cx] && y + 1 < cy && mask[i + (size_t)cx];
                if (volume_3d)
                    interior = interior && z > 0 && mask[i - plane] && z + 1 < cz &&
                               mask[i + plane];
                edge[i] = (uint8_t)!interior;
            }
}

/* Distances from every `from` surface voxel to the nearest `to` surface
 * voxel, written to out; returns how many. */
static int directed_distances(const uint8_t *from, const uint8_t *to, int cx, int cy, int cz,
                              const double spacing[3], double *dist, double *out, size_t *count,
                              rl_error *err) {
    int rc = rl_distance_transform(to, cx, cy, cz, spacing, dist, err);
    if (rc) return rc;
    const size_t n = (size_t)cx * (size_t)cy * (size_t)cz;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (from[i]) out[m++] = dist[i];
    *count = m;
    return 0;
}

static int compare_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy.percentile(values, pct) with the default 'linear' method, including
 * its two-sided interpolation formula; sorts values. n > 0. */
static double percentile_linear(double *values, size_t n, double pct) {
    qsort(values, n, sizeof(double), compare_double);
    const double index = pct / 100.0 * (double)(n - 1);
    const size_t lo = (size_t)floor(index);
    if (lo + 1 >= n) return values[n - 1];
    const double t = index - (double)lo;
    const double a = values[lo], b = values[lo + 1], diff = b - a;
    return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

static double sum_of(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s;
}

/* HD95 and ASSD of class c, both masks non-empty, on the crop box. */
static int class_surface_metrics(const int32_t *pred, const int32_t *gt, int nx, int ny, int nz,
                                 const double spacing[3], int32_t c, int32_t ignore_label,
                                 const box3 *box, surface_work *w, rl_case_metrics *out,
                                 rl_error *err) {
    const int cx = box->hi[0] - box->lo[0] + 1;
    const int cy = box->hi[1] - box->lo[1] + 1;
    const int cz = box->hi[2] - box->lo[2] + 1;
    size_t j = 0;
    for (int z = box->lo[2]; z <= box->hi[2]; z++)
        for (int y = box->lo[1]; y <= box->hi[1]; y++) {
            const size_t row = ((size_t)z * (size_t)ny + (size_t)y) * (size_t)nx;
            for (int x = box->lo[0]; x <= box->hi[0]; x++, j++) {
                const int32_t p = pred[row + (size_t)x], g = gt[row + (size_t)x];
                const int keep = !is_ignored(p, g, ignore_label);
                w->mask_pred[j] = (uint8_t)(keep && p == c);
                w->mask_gt[j] = (uint8_t)(keep && g == c);
            }
        }
    mask_edges(w->mask_pred, w->edge_pred, cx, cy, cz, nz > 1);
    mask_edges(w->mask_gt, w->edge_gt, cx, cy, cz, nz > 1);

    size_t n_pred, n_gt;
    int rc = directed_distances(w->edge_pred, w->edge_gt, cx, cy, cz, spacing, w->dist, w->d_pred,
                                &n_pred, err);
    if (!rc)
        rc = directed_distances(w->edge_gt, w->edge_pred, cx, cy, cz, spacing, w->dist, w->d_gt,
                                &n_gt, err);
    if (rc) return rc;
    /* Non-empty masks always have a surface voxel: erosion of a finite mask
     * removes at least its extreme voxels. */
    out->assd = (sum_of(w->d_pred, n_pred) + sum_of(w->d_gt, n_gt)) / (double)(n_pred + n_gt);
    const double p_pred = percentile_linear(w->d_pred, n_pred, 95.0);
    const double p_gt = percentile_linear(w->d_gt, n_gt, 95.0);
    out->hd95 = p_pred > p_gt ? p_pred : p_gt;
    return 0;
}

/* Dice, IoU and the empty-mask rules (docs/METRICS.md) from the counts. */
static void overlap_metrics(int64_t gt, int64_t pred, int64_t both, rl_case_metrics *m) {
    memset(m, 0, sizeof *m);
    m->gt_voxels = gt;
    m->pred_voxels = pred;
    m->intersection_voxels = both;
    if (gt == 0) m->flags |= RL_METRIC_GT_EMPTY;
    if (pred == 0) m->flags |= RL_METRIC_PRED_EMPTY;
    if (gt == 0 && pred == 0) {
        m->dice = m->iou = 1.0;
        m->hd95 = m->assd = 0.0;
        return;
    }
    m->dice = 2.0 * (double)both / (double)(gt + pred);
    m->iou = (double)both / (double)(gt + pred - both);
    if (gt == 0 || pred == 0) m->hd95 = m->assd = NAN;
}

int rl_compute_metrics(const int32_t *pred, const int32_t *gt, int nx, int ny, int nz,
                       const double spacing[3], int num_classes, int32_t ignore_label,
                       rl_case_metrics *out_per_class, rl_error *err) {
    if (nx <= 0 || ny <= 0 || nz <= 0)
        return rl_error_set(err, RL_EINVAL, "metrics: invalid volume size %dx%dx%d", nx, ny, nz);
    if (num_classes <= 0)
        return rl_error_set(err, RL_EINVAL, "metrics: num_classes = %d must be positive",
                            num_classes);
    if (ignore_label != RL_METRICS_NO_IGNORE && ignore_label >= 0 && ignore_label < num_classes)
        return rl_error_set(err, RL_EINVAL,
                            "metrics: ignore label %d is one of the classes [0, %d)",
                            (int)ignore_label, num_classes);
    for (int a = 0; a < 3; a++)
        if (!(spacing[a] > 0) || !isfinite(spacing[a]))
            return rl_error_set(err, RL_EINVAL,
                                "metrics: spacing[%d] = %g must be positive and finite", a,
                                spacing[a]);
    const size_t n = (size_t)nx * (size_t)ny * (size_t)nz;
    int rc = check_labels(pred, n, num_classes, ignore_label, "prediction", err);
    if (!rc) rc = check_labels(gt, n, num_classes, ignore_label, "reference", err);
    if (rc) return rc;

    const size_t k = (size_t)num_classes;
    class_census cs = {calloc(k, sizeof(int64_t)), calloc(k, sizeof(int64_t)),
                       calloc(k, sizeof(int64_t)), malloc(k * sizeof(box3))};
    surface_work work;
    memset(&work, 0, sizeof work);
    if (!cs.gt || !cs.pred || !cs.both || !cs.box) {
        rc = rl_error_set(err, RL_ENOMEM, "metrics: out of memory for %d classes", num_classes);
        goto done;
    }
    for (size_t c = 0; c < k; c++) box_reset(&cs.box[c]);
    take_census(pred, gt, nx, ny, nz, ignore_label, &cs);

    size_t largest_crop = 0;
    for (size_t c = 0; c < k; c++) {
        overlap_metrics(cs.gt[c], cs.pred[c], cs.both[c], &out_per_class[c]);
        if (cs.gt[c] > 0 && cs.pred[c] > 0 && box_voxels(&cs.box[c]) > largest_crop)
            largest_crop = box_voxels(&cs.box[c]);
    }
    if (largest_crop == 0) goto done; /* no class needs surface distances */
    if (surface_work_init(&work, largest_crop)) {
        rc = rl_error_set(err, RL_ENOMEM, "metrics: out of memory for a %zu-voxel crop",
                          largest_crop);
        goto done;
    }
    for (size_t c = 0; c < k && !rc; c++) {
        if (cs.gt[c] == 0 || cs.pred[c] == 0) continue;
        rc = class_surface_metrics(pred, gt, nx, ny, nz, spacing, (int32_t)c, ignore_label,
                                   &cs.box[c], &work, &out_per_class[c], err);
        if (rc) rl_error_prefix(err, "metrics: class %zu", c);
    }
    surface_work_free(&work);
done:
    free(cs.gt);
    free(cs.pred);
    free(cs.both);
    free(cs.box);
    return rc;
}

/* ---- aggregation -------------------------------------------------------- */

/* Two passes (mean, then squared deviations): exact enough and the
 * inputs are a few hundred values at most. */
static rl_metric_stats stats_of(const double *values, int n) {
    rl_metric_stats s = {NAN, NAN, 0, 0};
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(values[i])) {
            s.nan_count++;
            continue;
        }
        sum += values[i];
        s.count++;
    }
    if (s.count == 0) return s;
    s.mean = sum / s.count;
    double sq = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(values[i])) sq += (values[i] - s.mean) * (values[i] - s.mean);
    s.std = sqrt(sq / s.count);
    return s;
}

enum { METRIC_DICE, METRIC_IOU, METRIC_HD95, METRIC_ASSD, METRIC_COUNT };

static double metric_value(const rl_case_metrics *m, int which) {
    switch (which) {
    case METRIC_DICE: return m->dice;
    case METRIC_IOU: return m->iou;
    case METRIC_HD95: return m->hd95;
    default: return m->assd;
    }
}

static rl_metric_stats *summary_field(rl_class_summary *s, int which) {
    switch (which) {
    case METRIC_DICE: return &s->dice;
    case METRIC_IOU: return &s->iou;
    case METRIC_HD95: return &s->hd95;
    default: return &s->assd;
    }
}

int rl_aggregate_metrics(const rl_case_metrics *cases, int num_cases, int num_classes,
                         rl_class_summary *per_class, rl_class_summary *foreground,
                         rl_error *err) {
    if (num_cases < 0 || num_classes <= 0)
        return rl_error_set(err, RL_EINVAL, "aggregate metrics: %d cases, %d classes", num_cases,
                            num_classes);
    /* One value per case (or per class for the foreground); at least one
     * slot so that malloc(0) never decides the outcome. */
    const int slots = (num_cases > num_classes ? num_cases : num_classes) + 1;
    double *values = malloc(sizeof(double) * (size_t)slots);
    if (!values) return rl_error_set(err, RL_ENOMEM, "aggregate metrics: out of memory");

    for (int c = 0; c < num_classes; c++) {
        rl_class_summary *s = &per_class[c];
        memset(s, 0, sizeof *s);
        s->cases = num_cases;
        for (int i = 0; i < num_cases; i++) {
            const unsigned f = cases[(size_t)i * num_classes + c].flags;
            const int gt_empty = (f & RL_METRIC_GT_EMPTY) != 0;
            const int pred_empty = (f & RL_METRIC_PRED_EMPTY) != 0;
            s->both_empty_cases += gt_empty && pred_empty;
            s->gt_empty_cases += gt_empty && !pred_empty;
            s->pred_empty_cases += pred_empty && !gt_empty;
        }
        for (int m = 0; m < METRIC_COUNT; m++) {
            for (int i = 0; i < num_cases; i++)
                values[i] = metric_value(&cases[(size_t)i * num_classes + c], m);
            *summary_field(s, m) = stats_of(values, num_cases);
        }
    }

    memset(foreground, 0, sizeof *foreground);
    foreground->cases = num_cases;
    for (int c = 1; c < num_classes; c++) {
        foreground->gt_empty_cases += per_class[c].gt_empty_cases;
        foreground->pred_empty_cases += per_class[c].pred_empty_cases;
        foreground->both_empty_cases += per_class[c].both_empty_cases;
    }
    for (int m = 0; m < METRIC_COUNT; m++) {
        for (int c = 1; c < num_classes; c++) {
            const rl_metric_stats *cls = summary_field(&per_class[c], m);
            values[c - 1] = cls->count > 0 ? cls->mean : NAN;
        }
        *summary_field(foreground, m) = stats_of(values, num_classes - 1);
    }
    free(values);
    return 0;
}
