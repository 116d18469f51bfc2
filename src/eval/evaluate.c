/* Folder-level evaluation: pairs files by case id, computes per-class
 * metrics (metrics.c) and writes the JSON report. */
#include "reflabel/evaluate.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reflabel/folder.h"
#include "reflabel/image.h"

void rl_eval_result_free(rl_eval_result *r) {
    free(r->case_ids);
    free(r->metrics);
    free(r->per_class);
    memset(r, 0, sizeof *r);
}

static int read_labels(const char *path, rl_volume *vol, int32_t **labels, rl_error *err) {
    int rc = rl_volume_read_labels(path, vol, err);
    if (rc) return rc;
    *labels = malloc(rl_volume_numel(vol) * sizeof **labels);
    if (!*labels) rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    else rc = rl_labels_from_volume(vol, *labels, err);
    if (rc) {
        free(*labels);
        *labels = NULL;
        rl_volume_free(vol);
        if (err && !strstr(err->msg, path)) rl_error_prefix(err, "%s", path);
    }
    return rc;
}

/* 1 + the largest label of every file in both folders. */
static int count_classes(const rl_folder *pred, const rl_folder *gt, int *num_classes,
                         rl_error *err) {
    int32_t max_label = 0;
    for (int i = 0; i < gt->count; i++) {
        const rl_folder_entry *pe = rl_folder_find(pred, gt->entries[i].id);
        const char *paths[2] = {gt->entries[i].paths[0], pe ? pe->paths[0] : NULL};
        for (int j = 0; j < 2 && paths[j]; j++) {
            rl_volume v = {0};
            int32_t *lab = NULL;
            int rc = read_labels(paths[j], &v, &lab, err);
            if (rc) return rc;
            for (size_t k = 0; k < rl_volume_numel(&v); k++)
                if (lab[k] > max_label) max_label = lab[k];
            free(lab);
            rl_volume_free(&v);
        }
    }
    *num_classes = max_label + 1;
    return RL_OK;
}

/* The reference and the predicted label map of a case, of the same shape.
 * The caller frees all four, whether this fails or not (zeroed beforehand). */
static int read_case(const char *pred_path, const char *gt_path, rl_volume *pv, int32_t **pl,
                     rl_volume *gv, int32_t **gl, rl_error *err) {
    int rc = read_labels(gt_path, gv, gl, err);
    if (!rc) rc = read_labels(pred_path, pv, pl, err);
    if (!rc && (pv->nx != gv->nx || pv->ny != gv->ny || pv->nz != gv->nz))
        rc = rl_error_set(err, RL_EFORMAT, "%s: shape %dx%dx%d differs from %s (%dx%dx%d)",
                          pred_path, pv->nx, pv->ny, pv->nz, gt_path, gv->nx, gv->ny, gv->nz);
    return rc;
}

static int evaluate_case(const char *pred_path, const char *gt_path, int num_classes,
                         int32_t ignore_label, rl_case_metrics *out, rl_error *err) {
    rl_volume pv = {0}, gv = {0};
    int32_t *pl = NULL, *gl = NULL;
    int rc = read_case(pred_path, gt_path, &pv, &pl, &gv, &gl, err);
    if (!rc) {
        rc = rl_compute_metrics(pl, gl, gv.nx, gv.ny, gv.nz, gv.spacing, num_classes,
                                ignore_label, out, err);
        if (rc) rl_error_prefix(err, "%s", pred_path);
    }
    free(pl);
    free(gl);
    rl_volume_free(&pv);
    rl_volume_free(&gv);
    return rc;
}

/* Multi-label: every structure c of a case is scored as its own binary mask
 * (bit c-1 of both bit sets), background as the mask of "no bit"; each goes
 * through rl_compute_metrics as a two-class problem whose class 1 it is. */
static int evaluate_case_bitsets(const char *pred_path, const char *gt_path, int num_classes,
                                 rl_case_metrics *out, rl_error *err) {
    rl_volume pv = {0}, gv = {0};
    int32_t *pl = NULL, *gl = NULL, *pb = NULL, *gb = NULL;
    int structures = num_classes - 1;
    int rc = read_case(pred_path, gt_path, &pv, &pl, &gv, &gl, err);
    size_t n = rl_volume_numel(&gv);
    for (size_t i = 0; !rc && i < n; i++)
        if (gl[i] >> structures || pl[i] >> structures)
            rc = rl_error_set(err, RL_ERANGE, "%s: value %d is not a bit set of %d structures",
                              gl[i] >> structures ? gt_path : pred_path,
                              (int)(gl[i] >> structures ? gl[i] : pl[i]), structures);
    if (!rc) {
        pb = malloc(n * sizeof *pb);
        gb = malloc(n * sizeof *gb);
        if (!pb || !gb) rc = rl_error_set(err, RL_ENOMEM, "%s: out of memory", pred_path);
    }
    for (int c = 0; !rc && c < num_classes; c++) {
        for (size_t i = 0; i < n; i++) {
            pb[i] = c == 0 ? pl[i] == 0 : (pl[i] >> (c - 1)) & 1;
            gb[i] = c == 0 ? gl[i] == 0 : (gl[i] >> (c - 1)) & 1;
        }
        rl_case_metrics binary[2];
        rc = rl_compute_metrics(pb, gb, gv.nx, gv.ny, gv.nz, gv.spacing, 2, RL_METRICS_NO_IGNORE,
                                binary, err);
        if (rc) rl_error_prefix(err, "%s", pred_path);
        else out[c] = binary[1];
    }
    free(pb);
    free(gb);
    free(pl);
    free(gl);
    rl_volume_free(&pv);
    rl_volume_free(&gv);
    return rc;
}

/* Pairs the folders' cases and scores each, as classes or as bit sets. */
static int evaluate_folders(const char *pred_dir, const char *gt_dir, int num_classes,
                            int32_t ignore_label, int multilabel, rl_eval_result *out,
                            rl_error *err) {
    memset(out, 0, sizeof *out);
    rl_folder pred = {0}, gt = {0};
    int rc = rl_folder_list_labels(gt_dir, &gt, err);
    if (!rc) rc = rl_folder_list_labels(pred_dir, &pred, err);
    for (int i = 0; !rc && i < gt.count; i++)
        if (!rl_folder_find(&pred, gt.entries[i].id))
            rc = rl_error_set(err, RL_EIO, "%s: no prediction for case %s (reference %s)",
                              pred_dir, gt.entries[i].id, gt.entries[i].paths[0]);
    if (!rc && num_classes <= 0) rc = count_classes(&pred, &gt, &num_classes, err);
    if (!rc) {
        out->num_cases = gt.count;
        out->num_classes = num_classes;
        out->case_ids = calloc((size_t)gt.count, sizeof *out->case_ids);
        out->metrics = calloc((size_t)gt.count * (size_t)num_classes, sizeof *out->metrics);
        out->per_class = calloc((size_t)num_classes, sizeof *out->per_class);
        if (!out->case_ids || !out->metrics || !out->per_class)
            rc = rl_error_set(err, RL_ENOMEM, "out of memory");
    }
    for (int i = 0; !rc && i < gt.count; i++) {
        const rl_folder_entry *g = &gt.entries[i];
        memcpy(out->case_ids[i], g->id, RL_CASE_ID_MAX);
        const char *pred_path = rl_folder_find(&pred, g->id)->paths[0];
        rl_case_metrics *metrics = out->metrics + (size_t)i * num_classes;
        rc = multilabel ? evaluate_case_bitsets(pred_path, g->paths[0], num_classes, metrics, err)
                        : evaluate_case(pred_path, g->paths[0], num_classes, ignore_label, metrics,
                                        err);
    }
    if (!rc)
        rc = rl_aggregate_metrics(out->metrics, out->num_cases, num_classes, out->per_class,
                                  &out->foreground, err);
    rl_folder_free(&pred);
    rl_folder_free(&gt);
    if (rc) rl_eval_result_free(out);
    return rc;
}

int rl_evaluate_folders(const char *pred_dir, const char *gt_dir, int num_classes,
                        int32_t ignore_label, rl_eval_result *out, rl_error *err) {
    return evaluate_folders(pred_dir, gt_dir, num_classes, ignore_label, 0, out, err);
}

int rl_evaluate_folders_multilabel(const char *pred_dir, const char *gt_dir, int num_classes,
                                   rl_eval_result *out, rl_error *err) {
    memset(out, 0, sizeof *out);
    if (num_classes < 2 || num_classes - 1 > RL_MULTILABEL_MAX_STRUCTURES)
        return rl_error_set(err, RL_EINVAL, "multi-label evaluation needs 1..%d structures, not %d",
                            RL_MULTILABEL_MAX_STRUCTURES, num_classes - 1);
    return evaluate_folders(pred_dir, gt_dir, num_classes, RL_METRICS_NO_IGNORE, 1, out, err);
}

static void add_number(cJSON *obj, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(obj, key, v);
    else cJSON_AddNullToObject(obj, key);
}

static cJSON *stats_json(const rl_metric_stats *s) {
    cJSON *o = cJSON_CreateObject();
    add_number(o, "mean", s->mean);
    add_number(o, "std", s->std);
    cJSON_AddNumberToObject(o, "count", s->count);
    cJSON_AddNumberToObject(o, "nan_count", s->nan_count);
    return o;
}

static cJSON *summary_json(const rl_class_summary *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "dice", stats_json(&s->dice));
    cJSON_AddItemToObject(o, "iou", stats_json(&s->iou));
    cJSON_AddItemToObject(o, "hd95_mm", stats_json(&s->hd95));
    cJSON_AddItemToObject(o, "assd_mm", stats_json(&s->assd));
    cJSON_AddNumberToObject(o, "cases", s->cases);
    cJSON_AddNumberToObject(o, "gt_empty_cases", s->gt_empty_cases);
    cJSON_AddNumberToObject(o, "pred_empty_cases", s->pred_empty_cases);
    cJSON_AddNumberToObject(o, "both_empty_cases", s->both_empty_cases);
    return o;
}

int rl_eval_write_json(const rl_eval_result *r, const char *const *class_names,
                       const char *path, rl_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "definitions",
                            "MONAI DiceMetric, HausdorffDistanceMetric(percentile=95), "
                            "SurfaceDistanceMetric(symmetric=True); distances in mm; empty "
                            "masks: see docs/METRICS.md");
    cJSON *names = cJSON_AddArrayToObject(root, "classes");
    char buf[32];
    for (int c = 0; c < r->num_classes; c++) {
        snprintf(buf, sizeof buf, "%d", c);
        cJSON_AddItemToArray(names, cJSON_CreateString(class_names ? class_names[c] : buf));
    }
    cJSON_AddItemToObject(root, "foreground_mean", summary_json(&r->foreground));
    cJSON *pc = cJSON_AddObjectToObject(root, "per_class");
    for (int c = 0; c < r->num_classes; c++) {
        snprintf(buf, sizeof buf, "%d", c);
        cJSON_AddItemToObject(pc, class_names ? class_names[c] : buf,
                              summary_json(&r->per_class[c]));
    }
    cJSON *cases = cJSON_AddObjectToObject(root, "per_case");
    for (int i = 0; i < r->num_cases; i++) {
        cJSON *co = cJSON_AddObjectToObject(cases, r->case_ids[i]);
        for (int c = 0; c < r->num_classes; c++) {
            const rl_case_metrics *m = &r->metrics[(size_t)i * r->num_classes + c];
            snprintf(buf, sizeof buf, "%d", c);
            cJSON *mo = cJSON_AddObjectToObject(co, class_names ? class_names[c] : buf);
            add_number(mo, "dice", m->dice);
            add_number(mo, "iou", m->iou);
            add_number(mo, "hd95_mm", m->hd95);
            add_number(mo, "assd_mm", m->assd);
            cJSON_AddNumberToObject(mo, "gt_voxels", (double)m->gt_voxels);
            cJSON_AddNumberToObject(mo, "pred_voxels", (double)m->pred_voxels);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return rl_error_set(err, RL_ENOMEM, "%s: out of memory", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON_Print's buffer has the NUL there; replace it */
    int rc = rl_write_file_atomic(path, text, len + 1, err);
    free(text);
    return rc;
}
