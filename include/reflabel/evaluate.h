/* reflabel/evaluate.h - scoring a folder of predicted label maps against a
 * folder of reference label maps (matched by case id), and the JSON report. */
#ifndef REFLABEL_EVALUATE_H
#define REFLABEL_EVALUATE_H

#include "reflabel/core.h"
#include "reflabel/dataset.h"
#include "reflabel/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_eval_result {
    int num_cases;
    int num_classes;
    char (*case_ids)[RL_CASE_ID_MAX];
    rl_case_metrics *metrics; /* num_cases x num_classes, case-major */
    rl_class_summary *per_class;
    rl_class_summary foreground; /* mean over classes 1..K-1 */
} rl_eval_result;

/* Every reference in gt_dir needs a prediction of the same id in pred_dir
 * (a missing one is an error naming it; extra predictions are ignored).
 * Shapes must agree. Spacing comes from the reference file's header.
 * num_classes <= 0 takes 1 + the largest label found in either folder. */
int rl_evaluate_folders(const char *pred_dir, const char *gt_dir, int num_classes,
                        int32_t ignore_label, rl_eval_result *out, rl_error *err);
/* Multi-label folders (bit sets, bit c-1 = structure c, of num_classes - 1
 * structures): each structure's binary mask is scored on its own, so the
 * result's class c >= 1 is structure c and class 0 is "no structure".
 * A value with a bit beyond the structures is an error naming its file. */
int rl_evaluate_folders_multilabel(const char *pred_dir, const char *gt_dir, int num_classes,
                                   rl_eval_result *out, rl_error *err);
void rl_eval_result_free(rl_eval_result *r);

/* JSON with "per_case" (id -> class -> metrics), "per_class" (mean/std/counts),
 * "foreground_mean" and the definitions used; NaN is written as null.
 * class_names may be NULL (classes are then named by their value). */
int rl_eval_write_json(const rl_eval_result *r, const char *const *class_names,
                       const char *path, rl_error *err);

#ifdef __cplusplus
}
#endif
#endif
