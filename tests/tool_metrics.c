/* Helper for tests/oracle/test_scipy_metrics.py: computes the C metrics of
 * cases written as .npy files and writes them back as .npy.
 *
 *   tool_metrics CASE_DIR NUM_CASES NUM_CLASSES IGNORE|none OUT_DIR
 *
 * Case i is CASE_DIR/case<i>_pred.npy and case<i>_gt.npy (int32, shape
 * (ny, nx) or (nz, ny, nx), C order, so x is fastest) and case<i>_spacing.npy
 * (float64 (3,): x, y, z in mm). Writes OUT_DIR/case<i>_metrics.npy, float64
 * (K, 8): dice, iou, hd95, assd, gt_voxels, pred_voxels, intersection, flags;
 * and OUT_DIR/summary.npy, float64 (K + 1, 20): per class then the
 * foreground, for dice, iou, hd95, assd in turn: mean, std, count, nan_count;
 * then cases, gt_empty_cases, pred_empty_cases, both_empty_cases.
 * Exits 1 with one line on stderr on any error (shape mismatch included). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/metrics.h"
#include "testutil.h"

enum { CASE_COLUMNS = 8, SUMMARY_COLUMNS = 20 };

static int fail(const char *fmt, const char *arg) {
    fprintf(stderr, "tool_metrics: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 1;
}

/* Reads an int32 label map; fills nx, ny, nz from its 2D or 3D shape. */
static int32_t *read_labels(const char *path, int dims[3]) {
    char dtype[16];
    int shape[8], ndim;
    int32_t *data = rl_npy_read(path, dtype, shape, &ndim);
    if (!data) return NULL;
    if (strcmp(dtype, "<i4") != 0 || (ndim != 2 && ndim != 3)) {
        free(data);
        return NULL;
    }
    dims[0] = shape[ndim - 1];
    dims[1] = shape[ndim - 2];
    dims[2] = ndim == 3 ? shape[0] : 1;
    return data;
}

static void put_stats(double *row, const rl_metric_stats *s) {
    row[0] = s->mean;
    row[1] = s->std;
    row[2] = s->count;
    row[3] = s->nan_count;
}

static void put_summary(double *row, const rl_class_summary *s) {
    put_stats(row + 0, &s->dice);
    put_stats(row + 4, &s->iou);
    put_stats(row + 8, &s->hd95);
    put_stats(row + 12, &s->assd);
    row[16] = s->cases;
    row[17] = s->gt_empty_cases;
    row[18] = s->pred_empty_cases;
    row[19] = s->both_empty_cases;
}

/* Metrics of case i into m[num_classes]; 0 or 1 after printing why. */
static int run_case(const char *dir, int i, int num_classes, int32_t ignore, rl_case_metrics *m) {
    char path[4096];
    int pd[3], gd[3];
    snprintf(path, sizeof path, "%s/case%d_pred.npy", dir, i);
    int32_t *pred = read_labels(path, pd);
    if (!pred) return fail("cannot read int32 2D/3D labels from %s", path);
    snprintf(path, sizeof path, "%s/case%d_gt.npy", dir, i);
    int32_t *gt = read_labels(path, gd);
    if (!gt) {
        free(pred);
        return fail("cannot read int32 2D/3D labels from %s", path);
    }
    snprintf(path, sizeof path, "%s/case%d_spacing.npy", dir, i);
    char dtype[16];
    int shape[8], ndim;
    double *spacing = rl_npy_read(path, dtype, shape, &ndim);
    int rc = 0;
    if (!spacing || strcmp(dtype, "<f8") != 0 || ndim != 1 || shape[0] != 3) {
        rc = fail("cannot read float64 (3,) spacing from %s", path);
    } else if (memcmp(pd, gd, sizeof pd) != 0) {
        snprintf(path, sizeof path, "case %d: prediction %dx%dx%d vs reference %dx%dx%d", i,
                 pd[0], pd[1], pd[2], gd[0], gd[1], gd[2]);
        rc = fail("shape mismatch: %s", path);
    } else {
        rl_error err = {0, ""};
        if (rl_compute_metrics(pred, gt, pd[0], pd[1], pd[2], spacing, num_classes, ignore, m,
                               &err))
            rc = fail("%s", err.msg);
    }
    free(pred);
    free(gt);
    free(spacing);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: tool_metrics CASE_DIR NUM_CASES NUM_CLASSES IGNORE|none OUT_DIR\n");
        return 2;
    }
    const char *case_dir = argv[1], *out_dir = argv[5];
    const int num_cases = atoi(argv[2]), num_classes = atoi(argv[3]);
    const int32_t ignore =
        strcmp(argv[4], "none") == 0 ? RL_METRICS_NO_IGNORE : (int32_t)atoi(argv[4]);
    if (num_cases <= 0 || num_classes <= 0)
        return fail("%s", "NUM_CASES and NUM_CLASSES must be positive integers");

    rl_case_metrics *all = calloc((size_t)num_cases * (size_t)num_classes, sizeof *all);
    double *table = malloc(sizeof(double) * (size_t)(num_classes + 1) * SUMMARY_COLUMNS);
    rl_class_summary *per = malloc(sizeof(rl_class_summary) * (size_t)num_classes);
    if (!all || !table || !per) return fail("%s", "out of memory");

    int rc = 0;
    char path[4096];
    for (int i = 0; i < num_cases && !rc; i++) {
        rl_case_metrics *m = all + (size_t)i * num_classes;
        rc = run_case(case_dir, i, num_classes, ignore, m);
        if (rc) break;
        for (int c = 0; c < num_classes; c++) {
            double *row = table + (size_t)c * CASE_COLUMNS;
            row[0] = m[c].dice;
            row[1] = m[c].iou;
            row[2] = m[c].hd95;
            row[3] = m[c].assd;
            row[4] = (double)m[c].gt_voxels;
            row[5] = (double)m[c].pred_voxels;
            row[6] = (double)m[c].intersection_voxels;
            row[7] = m[c].flags;
        }
        snprintf(path, sizeof path, "%s/case%d_metrics.npy", out_dir, i);
        const int shape[2] = {num_classes, CASE_COLUMNS};
        if (rl_npy_write(path, table, "<f8", shape, 2) != 0) rc = fail("cannot write %s", path);
    }
    if (!rc) {
        rl_class_summary fg;
        rl_error err = {0, ""};
        if (rl_aggregate_metrics(all, num_cases, num_classes, per, &fg, &err)) {
            rc = fail("%s", err.msg);
        } else {
            for (int c = 0; c < num_classes; c++)
                put_summary(table + (size_t)c * SUMMARY_COLUMNS, &per[c]);
            put_summary(table + (size_t)num_classes * SUMMARY_COLUMNS, &fg);
            snprintf(path, sizeof path, "%s/summary.npy", out_dir);
            const int shape[2] = {num_classes + 1, SUMMARY_COLUMNS};
            if (rl_npy_write(path, table, "<f8", shape, 2) != 0)
                rc = fail("cannot write %s", path);
        }
    }
    free(all);
    free(table);
    free(per);
    return rc;
}
